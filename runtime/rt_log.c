#include "rt_log.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum rt_log_level log_level = RT_LOG_INFO;
static unsigned log_node_id;
static FILE *log_file;
static _Thread_local int log_shard = -1;

void rt_log_set_level(enum rt_log_level level)
{
    assert(level >= RT_LOG_DEBUG && level <= RT_LOG_ERROR);
    log_level = level;
}

enum rt_log_level rt_log_get_level(void)
{
    return log_level;
}

void rt_log_set_node(unsigned node_id)
{
    log_node_id = node_id;
}

void rt_log_set_shard(int shard)
{
    assert(shard >= -1);
    log_shard = shard;
}

void rt_log_set_file(FILE *file)
{
    log_file = file;
}

void rt_log_init(void)
{
    const char *env = getenv("PAYRAFT_LOG_LEVEL");
    if (env == NULL) {
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(env, names[i]) == 0) {
            log_level = (enum rt_log_level)i;
        }
    }
}

void rt_log_format_time(const struct timespec *ts, char out[RT_LOG_TIMESTAMP_BYTES])
{
    assert(ts != NULL && out != NULL);
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    size_t n = strftime(out, RT_LOG_TIMESTAMP_BYTES, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, RT_LOG_TIMESTAMP_BYTES - n, ".%03uZ", (unsigned)(ts->tv_nsec / 1000000));
}

void rt_log_timestamp(char out[RT_LOG_TIMESTAMP_BYTES])
{
    assert(out != NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rt_log_format_time(&ts, out);
}

void rt_log(enum rt_log_level level, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    assert(level >= RT_LOG_DEBUG && level <= RT_LOG_ERROR);
    assert(fmt != NULL);
    if (level < log_level) {
        return;
    }
    FILE *out = log_file != NULL ? log_file : stderr;
    char stamp[RT_LOG_TIMESTAMP_BYTES];
    rt_log_timestamp(stamp);
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s %-5s node=%u shard=", stamp, tags[level], log_node_id);
    if (log_shard >= 0) {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%d ", log_shard);
    } else {
        n += snprintf(line + n, sizeof(line) - (size_t)n, "- ");
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) {
        m = 0;
    }
    size_t len = (size_t)n + (size_t)m;
    if (len >= sizeof(line) - 1) {
        len = sizeof(line) - 2; /* Truncated: a log line is not the place for bulk data. */
    }
    line[len] = '\n';
    fwrite(line, 1, len + 1, out);
    fflush(out);
}
