/* rt_buf: a growable byte buffer with a hard size limit.
 *
 * Owns its bytes (malloc'd). Appends past @max fail with RT_ETOOLARGE and leave the buffer as
 * it was, so a caller can always report the error and keep what it had. Reusing one buffer
 * (rt_buf_reset) avoids a malloc per request on hot paths.
 */
#ifndef RT_BUF_H
#define RT_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct rt_buf {
    uint8_t *data; /* NULL until the first append. */
    size_t len;    /* Bytes in use. */
    size_t cap;    /* Bytes allocated. */
    size_t max;    /* Hard limit on len. */
};

void rt_buf_init(struct rt_buf *buf, size_t max);
void rt_buf_free(struct rt_buf *buf);
/* Forget the contents, keep the allocation. */
static inline void rt_buf_reset(struct rt_buf *buf)
{
    buf->len = 0;
}
/* The slow path of rt_buf_reserve: grow (or refuse). */
int rt_buf_grow(struct rt_buf *buf, size_t extra);
/* Make room for @extra more bytes. RT_ETOOLARGE past max, RT_ENOMEM. Inline: the msgpack
 * writer calls it for every value, and the room is almost always there already. */
static inline int rt_buf_reserve(struct rt_buf *buf, size_t extra)
{
    return extra <= buf->cap - buf->len ? 0 : rt_buf_grow(buf, extra);
}
static inline int rt_buf_append(struct rt_buf *buf, const void *bytes, size_t len)
{
    int rv = rt_buf_reserve(buf, len);
    if (rv != 0) {
        return rv;
    }
    if (len > 0) {
        memcpy(buf->data + buf->len, bytes, len);
    }
    buf->len += len;
    return 0;
}
/* Drop bytes past @len (len <= buf->len). */
void rt_buf_truncate(struct rt_buf *buf, size_t len);

/* Byte-wise order of two keys (memcmp, then the shorter first): RocksDB's default order, and
 * the order every store and scan in Payraft uses. */
int rt_bytes_compare(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* Big-endian integer helpers for stored keys (so that byte order equals numeric order). */
static inline void rt_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void rt_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void rt_put_be64(uint8_t *p, uint64_t v)
{
    rt_put_be32(p, (uint32_t)(v >> 32));
    rt_put_be32(p + 4, (uint32_t)v);
}
static inline uint16_t rt_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t rt_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t rt_get_be64(const uint8_t *p)
{
    return ((uint64_t)rt_get_be32(p) << 32) | rt_get_be32(p + 4);
}

/* Decimal digits of UINT64_MAX. */
#define RT_U64_DIGITS_MAX 20u

/* The unsigned number spelled by all of @s in @base (10 or 16), into *out if it is within
 * [@min, @max]. Digits only: no sign, no white space, no "0x", nothing after. 0, or
 * RT_EINVAL (empty, another character, out of range, or past UINT64_MAX). For command lines
 * and environment variables. */
int rt_u64_parse(const char *s, int base, uint64_t min, uint64_t max, uint64_t *out);
/* The same in decimal, for an unsigned int. */
int rt_uint_parse(const char *s, unsigned min, unsigned max, unsigned *out);

/* @n in decimal without leading zeros into @out (no NUL); returns the digit count. By hand:
 * snprintf's format parsing costs more than the digits on paths taken per request. */
static inline size_t rt_u64_decimal(char out[RT_U64_DIGITS_MAX], uint64_t n)
{
    char backwards[RT_U64_DIGITS_MAX];
    size_t len = 0;
    do {
        backwards[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    for (size_t i = 0; i < len; i++) {
        out[i] = backwards[len - 1 - i];
    }
    return len;
}

#endif /* RT_BUF_H */
