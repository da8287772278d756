/* rt_secret: see rt_secret.h. */
#include "rt_secret.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rt_clock.h"

static int fail(char *why, size_t why_cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t why_cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_cap, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* The file's bytes, up to @cap of them (the caller asks for one more than a secret file may
 * hold, to tell "too large"). Non-blocking, so that a pipe (`--secret-file <(...)`) or a
 * terminal that nobody writes to costs at most RT_SECRET_WAIT_MS instead of a hang. */
static int read_bounded(const char *path, uint8_t *buf, size_t cap, size_t *got, char *why,
                        size_t why_cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return fail(why, why_cap, "%s: %s", path, strerror(errno));
    }
    uint64_t deadline = rt_monotonic_ms() + RT_SECRET_WAIT_MS;
    size_t n = 0;
    int rv = 0;
    while (n < cap && rv == 0) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r > 0) {
            n += (size_t)r;
        } else if (r == 0) {
            break;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            uint64_t now = rt_monotonic_ms();
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (now >= deadline || (poll(&p, 1, (int)(deadline - now)) == 0)) {
                rv =
                    fail(why, why_cap, "%s: nothing to read within %u ms", path, RT_SECRET_WAIT_MS);
            }
        } else if (errno != EINTR) {
            rv = fail(why, why_cap, "%s: %s", path, strerror(errno));
        }
    }
    close(fd);
    *got = n;
    return rv;
}

int rt_secret_file_read(const char *path, size_t min, size_t max, uint8_t *out, size_t *len,
                        char *why, size_t why_cap)
{
    assert(min >= 1 && min <= max && max <= RT_SECRET_FILE_BYTES_MAX);
    assert(why != NULL && why_cap >= 1);
    if (path == NULL || strnlen(path, RT_SECRET_PATH_BYTES_MAX + 1) > RT_SECRET_PATH_BYTES_MAX) {
        return fail(why, why_cap, "secret file path missing or longer than %u bytes",
                    RT_SECRET_PATH_BYTES_MAX);
    }
    uint8_t buf[RT_SECRET_FILE_BYTES_MAX + 1];
    size_t n = 0;
    int rv = read_bounded(path, buf, sizeof(buf), &n, why, why_cap);
    if (rv == 0 && n > RT_SECRET_FILE_BYTES_MAX) {
        rv = fail(why, why_cap, "%s: larger than %u bytes: not a secret file", path,
                  RT_SECRET_FILE_BYTES_MAX);
    }
    size_t start = 0, end = rv == 0 ? n : 0;
    while (start < end && is_space(buf[start])) {
        start++;
    }
    while (end > start && is_space(buf[end - 1])) {
        end--;
    }
    for (size_t i = start; rv == 0 && i < end; i++) {
        if (buf[i] < 0x21 || buf[i] > 0x7e) {
            rv = fail(why, why_cap,
                      "%s: the secret must be one line of printable ASCII without spaces", path);
        }
    }
    if (rv == 0 && (end - start < min || end - start > max)) {
        rv = fail(why, why_cap, "%s: the secret must be %zu..%zu characters, not %zu", path, min,
                  max, end - start);
    }
    if (rv == 0) {
        memcpy(out, buf + start, end - start);
        *len = end - start;
    }
    explicit_bzero(buf, sizeof(buf));
    return rv;
}
