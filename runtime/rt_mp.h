/* rt_mp: a bounded msgpack reader and a msgpack writer.
 *
 * Why not msgpack-c's unpacker on the hot path: it has no input limits (an array32 header
 * allocates count x 24 bytes before any element arrives, a str32 waits for 4 GiB). This reader
 * works in place over a complete buffer, allocates nothing, checks every length and count
 * against the bytes remaining before trusting it, and bounds nesting by RT_MP_DEPTH_MAX.
 * Strings and bins are returned as views into the input (pointer + length, not NUL-terminated).
 *
 * The writer appends to an rt_buf with a sticky error: after the first failure every later
 * write is a no-op and rt_mp_writer_error() reports the first error, so encoders can write a
 * whole object and check once. Each value is written whole or not at all (a failed write
 * leaves buf->len unchanged). Lengths above UINT32_MAX, which msgpack cannot express, are
 * RT_ETOOLARGE.
 */
#ifndef RT_MP_H
#define RT_MP_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rt_buf.h"

enum rt_mp_type {
    RT_MP_NIL,
    RT_MP_BOOL,
    RT_MP_UINT, /* A non-negative integer (any msgpack int encoding). */
    RT_MP_INT,  /* A negative integer. */
    RT_MP_FLOAT,
    RT_MP_STR,
    RT_MP_BIN,
    RT_MP_ARRAY,
    RT_MP_MAP,
    RT_MP_EXT,
    RT_MP_INVALID, /* Reserved byte 0xc1, end of input, or a header cut short or claiming
                    * more bytes than are left. */
};

struct rt_mp_reader {
    const uint8_t *pos; /* Next byte to read. */
    const uint8_t *end; /* One past the last byte. */
};

void rt_mp_reader_init(struct rt_mp_reader *r, const uint8_t *data, size_t len);
static inline size_t rt_mp_remaining(const struct rt_mp_reader *r)
{
    return r->pos == r->end ? 0 : (size_t)(r->end - r->pos);
}
/* Type of the next value without consuming it (RT_MP_INVALID at end of input). */
enum rt_mp_type rt_mp_peek(const struct rt_mp_reader *r);

/* Each read consumes one value of the named type or fails with RT_EMALFORMED (wrong type,
 * truncated, or a length/count larger than the bytes left) and leaves the reader unmoved. */
int rt_mp_read_nil(struct rt_mp_reader *r);
int rt_mp_read_bool(struct rt_mp_reader *r, bool *v);
/* Any integer encoding whose value is >= 0. */
int rt_mp_read_uint(struct rt_mp_reader *r, uint64_t *v);
/* Any integer encoding whose value fits in int64. */
int rt_mp_read_int(struct rt_mp_reader *r, int64_t *v);
/* A str; the view points into the input. */
int rt_mp_read_str(struct rt_mp_reader *r, const char **s, uint32_t *len);
int rt_mp_read_bin(struct rt_mp_reader *r, const uint8_t **b, uint32_t *len);
/* Container headers: *count is already checked to be <= the bytes left (each element takes at
 * least one byte; a map entry two). */
int rt_mp_read_array(struct rt_mp_reader *r, uint32_t *count);
int rt_mp_read_map(struct rt_mp_reader *r, uint32_t *count);
/* Skip one whole value. At most RT_MP_DEPTH_MAX arrays/maps may be open at once, the
 * outermost counting as one; a deeper value (even an empty container) is RT_EMALFORMED. */
int rt_mp_skip(struct rt_mp_reader *r);
/* Skip one whole value and return its encoded bytes as a view. */
int rt_mp_read_raw(struct rt_mp_reader *r, const uint8_t **raw, size_t *len);
/* Check that @data holds exactly one well-formed value (depth-bounded as rt_mp_skip),
 * nothing after it. Structure only: callers check UTF-8 of the strings they accept. */
int rt_mp_validate(const uint8_t *data, size_t len);

/* True if the key view equals the NUL-terminated literal @lit. Inline, as rt_mp_write_cstr:
 * decoding a state or a command compares each key with literals. */
static inline bool rt_mp_key_is(const char *key, uint32_t key_len, const char *lit)
{
    assert(key != NULL || key_len == 0);
    assert(lit != NULL);
    size_t n = strlen(lit);
    /* memcmp with a NULL pointer is undefined even for 0 bytes. */
    return n == key_len && (n == 0 || memcmp(key, lit, n) == 0);
}
/* True if @s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool rt_utf8_valid(const char *s, size_t len);

struct rt_mp_writer {
    struct rt_buf *buf; /* Not owned. */
    int error;          /* First error, sticky; 0 if none. */
};

void rt_mp_writer_init(struct rt_mp_writer *w, struct rt_buf *buf);
static inline int rt_mp_writer_error(const struct rt_mp_writer *w)
{
    return w->error;
}
void rt_mp_write_nil(struct rt_mp_writer *w);
void rt_mp_write_bool(struct rt_mp_writer *w, bool v);
void rt_mp_write_uint(struct rt_mp_writer *w, uint64_t v);
void rt_mp_write_int(struct rt_mp_writer *w, int64_t v);
/* Every length, any state of @w (the slow path of rt_mp_write_str). */
void rt_mp_write_str_any(struct rt_mp_writer *w, const char *s, size_t len);
/* A str. Inline for the common case, a fixstr (up to 31 bytes) with room in the buffer: the
 * keys and most values of every state and reply, where a literal's copy then compiles to a few
 * moves. */
static inline void rt_mp_write_str(struct rt_mp_writer *w, const char *s, size_t len)
{
    assert(w != NULL && w->buf != NULL);
    assert(s != NULL || len == 0);
    struct rt_buf *buf = w->buf;
    if (len <= 31 && w->error == 0 && len < buf->cap - buf->len) {
        uint8_t *at = buf->data + buf->len;
        at[0] = (uint8_t)(0xa0u | len);
        if (len > 0) {
            memcpy(at + 1, s, len);
        }
        buf->len += 1 + len;
        return;
    }
    rt_mp_write_str_any(w, s, len);
}
/* NUL-terminated string; NULL writes nil. Inline so that a literal's length (most keys of
 * every state and reply are literals) is known when compiling, not counted at each write. */
static inline void rt_mp_write_cstr(struct rt_mp_writer *w, const char *s)
{
    assert(w != NULL);
    if (s == NULL) {
        rt_mp_write_nil(w);
        return;
    }
    rt_mp_write_str(w, s, strlen(s));
}
void rt_mp_write_bin(struct rt_mp_writer *w, const uint8_t *b, size_t len);
void rt_mp_write_array(struct rt_mp_writer *w, uint32_t count);
void rt_mp_write_map(struct rt_mp_writer *w, uint32_t count);
/* Always the 5-byte array32 form, so the count can be patched later with rt_put_be32 at
 * the returned offset + 1 (used by batch builders that do not know the count up front).
 * After an error the offset is meaningless: check rt_mp_writer_error before patching. */
size_t rt_mp_write_array32(struct rt_mp_writer *w, uint32_t count);
/* Bytes that already hold encoded msgpack. */
void rt_mp_write_raw(struct rt_mp_writer *w, const uint8_t *raw, size_t len);

#endif /* RT_MP_H */
