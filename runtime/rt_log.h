/* rt_log: one logging call for the whole node.
 *
 * Every line carries time, level, node id and shard (DESIGN.md: "node id and shard in every
 * line"). The node id is process-wide, the shard is per thread (set while a shard's work runs).
 * Lines go to stderr unless rt_log_set_file() says otherwise. Log an error once, where it is
 * handled.
 */
#ifndef RT_LOG_H
#define RT_LOG_H

#include <stdio.h>
#include <time.h>

enum rt_log_level { RT_LOG_DEBUG = 0, RT_LOG_INFO = 1, RT_LOG_WARN = 2, RT_LOG_ERROR = 3 };

/* Lines below @level are dropped. Default RT_LOG_INFO, or PAYRAFT_LOG_LEVEL from the environment
 * (debug|info|warn|error) read by rt_log_init(). */
void rt_log_set_level(enum rt_log_level level);
enum rt_log_level rt_log_get_level(void);

/* Set the process-wide node id printed on every line (0 = not yet known). */
void rt_log_set_node(unsigned node_id);
/* Set the shard printed on this thread's lines; -1 means "no shard". */
void rt_log_set_shard(int shard);
/* Send lines to @file (not owned; NULL restores stderr). */
void rt_log_set_file(FILE *file);
/* Read PAYRAFT_LOG_LEVEL. Safe to call more than once. */
void rt_log_init(void);

/* Now as the log stamps its lines (UTC, "2026-11-26T21:53:58.044Z"), for other output that
 * must line up with the logs (paybench --slow-ms). */
#define RT_LOG_TIMESTAMP_BYTES 64u
void rt_log_timestamp(char out[RT_LOG_TIMESTAMP_BYTES]);
/* The same for a time taken earlier (CLOCK_REALTIME), so that a caller that notes times on a
 * hot path formats only the ones it reports. */
void rt_log_format_time(const struct timespec *ts, char out[RT_LOG_TIMESTAMP_BYTES]);
void rt_log(enum rt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define RT_DEBUG(...) rt_log(RT_LOG_DEBUG, __VA_ARGS__)
#define RT_INFO(...)  rt_log(RT_LOG_INFO, __VA_ARGS__)
#define RT_WARN(...)  rt_log(RT_LOG_WARN, __VA_ARGS__)
#define RT_ERROR(...) rt_log(RT_LOG_ERROR, __VA_ARGS__)

#endif /* RT_LOG_H */
