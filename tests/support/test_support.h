/* test_support: helpers shared by Payraft's tests.
 *
 * Include after <cmocka.h>'s prerequisites (stdarg, stddef, stdint, setjmp). */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "rt_store.h"

/* Run @loop until @pred(@arg) holds; false if @timeout_ms pass first. Each turn blocks for at
 * most as long as the loop's next timer: tests keep a short repeating timer running. */
bool test_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, unsigned timeout_ms);

/* Make a fresh directory under $TMPDIR (or /tmp) named payraft-<tag>-XXXXXX; aborts on
 * failure. Returns a malloc'd path. */
char *test_tmpdir(const char *tag);
/* rm -rf @path (best effort) and free it. */
void test_rmdir(char *path);

/* Start program @path with @argv (argv[0] first, NULL last), in which an argument equal to
 * TEST_SPAWN_FD is replaced by the number of the write end of a pipe whose read end goes to
 * *@report_fd: how a child program (a process to SIGKILL) reports to its test. Aborts on
 * failure; returns the child's pid. */
#define TEST_SPAWN_FD "{report-fd}"
pid_t test_spawn(const char *path, const char *const argv[], int *report_fd);
/* SIGKILL child @pid and reap it; aborts unless it died of that signal. */
void test_kill(pid_t pid);

/* Send rt_log's lines to memory until test_log_collected(), which returns them (malloc'd,
 * NUL-terminated: the caller frees) and sends the lines to stderr again. Aborts on failure. */
void test_log_collect(void);
char *test_log_collected(void);

/* SHA-256 over every (cf, key, value) of @shard in every column family of @store, in order:
 * two stores with the same digest hold the same bytes for the shard. */
void test_store_digest(struct rt_store *store, uint16_t shard, uint8_t digest[32]);
/* Number of keys of @shard in @cf. */
size_t test_store_count(struct rt_store *store, enum rt_cf cf, uint16_t shard);

#endif /* TEST_SUPPORT_H */
