#include "rt_buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "rt_error.h"

void rt_buf_init(struct rt_buf *buf, size_t max)
{
    assert(buf != NULL);
    assert(max > 0);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->max = max;
}

void rt_buf_free(struct rt_buf *buf)
{
    assert(buf != NULL);
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

int rt_buf_grow(struct rt_buf *buf, size_t extra)
{
    assert(buf != NULL);
    assert(buf->len <= buf->max);
    assert(buf->cap <= buf->max); /* So that fitting in cap means fitting in max. */
    if (extra > buf->max - buf->len) {
        return RT_ETOOLARGE;
    }
    size_t need = buf->len + extra;
    if (need <= buf->cap) {
        return 0;
    }
    size_t cap = buf->cap == 0 ? 256 : buf->cap;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    if (cap > buf->max) {
        cap = buf->max;
    }
    uint8_t *data = realloc(buf->data, cap);
    if (data == NULL) {
        return RT_ENOMEM;
    }
    buf->data = data;
    buf->cap = cap;
    return 0;
}

void rt_buf_truncate(struct rt_buf *buf, size_t len)
{
    assert(buf != NULL);
    assert(len <= buf->len);
    buf->len = len;
}

int rt_bytes_compare(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    assert(a != NULL || a_len == 0);
    assert(b != NULL || b_len == 0);
    size_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return a_len < b_len ? -1 : (a_len > b_len ? 1 : 0);
}

int rt_u64_parse(const char *s, int base, uint64_t min, uint64_t max, uint64_t *out)
{
    assert(s != NULL && out != NULL && (base == 10 || base == 16));
    /* By hand rather than strtoull, which would take a sign, white space and "0x". */
    uint64_t v = 0;
    const char *p = s;
    for (; *p != '\0'; p++) {
        unsigned digit;
        if (*p >= '0' && *p <= '9') {
            digit = (unsigned)(*p - '0');
        } else if (base == 16 && *p >= 'a' && *p <= 'f') {
            digit = (unsigned)(*p - 'a') + 10u;
        } else if (base == 16 && *p >= 'A' && *p <= 'F') {
            digit = (unsigned)(*p - 'A') + 10u;
        } else {
            return RT_EINVAL;
        }
        if (v > (UINT64_MAX - digit) / (uint64_t)base) {
            return RT_EINVAL; /* Past UINT64_MAX. */
        }
        v = v * (uint64_t)base + digit;
    }
    if (p == s || v < min || v > max) {
        return RT_EINVAL;
    }
    *out = v;
    return 0;
}

int rt_uint_parse(const char *s, unsigned min, unsigned max, unsigned *out)
{
    uint64_t v;
    int rv = rt_u64_parse(s, 10, min, max, &v);
    if (rv == 0) {
        *out = (unsigned)v;
    }
    return rv;
}
