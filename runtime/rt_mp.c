/* rt_mp: a bounded msgpack reader and a smallest-encoding msgpack writer.
 *
 * Reader: every value starts with a header (tag byte plus an optional big-endian field holding
 * a value, a length or a count). mp_head() decodes one header and checks every length and
 * count against the bytes left before anything else looks at it; every read and the skipper
 * are built on it, and work on local copies of the position so that a failure leaves the
 * reader where it was. The one-byte heads most values use (positive fixints, fixstr, fixmap;
 * in the skipper also nil and booleans) are decoded in place first, with mp_head's bounds: a
 * third of a request's decoding went to mp_head before (docs/benchmarks.md). Skipping uses
 * an explicit stack bounded by RT_MP_DEPTH_MAX instead of recursion, so hostile nesting
 * cannot exhaust the C stack, and visits each byte once.
 *
 * Writer: every value is reserved in one rt_buf_reserve() call before any byte is appended,
 * so a value lands whole or not at all and a failed write leaves the buffer as it was.
 */
#include "rt_mp.h"

#include <assert.h>
#include <string.h>

#include "rt_error.h"
#include "rt_limits.h"

/* ---- Reader ---- */

/* What the big-endian field after a tag byte holds. */
enum mp_field {
    MP_FIELD_NONE,  /* No field (nil, bool, floats, fixext). */
    MP_FIELD_UINT,  /* An unsigned integer value. */
    MP_FIELD_INT,   /* A two's complement integer value. */
    MP_FIELD_LEN,   /* Payload bytes of a str, bin or ext. */
    MP_FIELD_COUNT, /* Elements of an array, entries of a map. */
};

/* The shape of the tags 0xc0..0xdf (the tags without a value packed into the byte). */
struct mp_tag {
    uint8_t type;  /* enum rt_mp_type. */
    uint8_t width; /* Bytes of the big-endian field after the tag: 0, 1, 2, 4 or 8. */
    uint8_t field; /* enum mp_field. */
    uint8_t body;  /* Payload bytes after the field that the field does not count: the type
                    * byte of an ext, the data of a fixext, the bytes of a float. */
};

#define MP_TAG_FIRST 0xc0u
#define MP_TAG_LAST  0xdfu

static const struct mp_tag mp_tags[MP_TAG_LAST - MP_TAG_FIRST + 1] = {
    [0xc0 - MP_TAG_FIRST] = {RT_MP_NIL, 0, MP_FIELD_NONE, 0},
    [0xc1 - MP_TAG_FIRST] = {RT_MP_INVALID, 0, MP_FIELD_NONE, 0},  /* Never used by msgpack. */
    [0xc2 - MP_TAG_FIRST] = {RT_MP_BOOL, 0, MP_FIELD_NONE, 0},     /* false */
    [0xc3 - MP_TAG_FIRST] = {RT_MP_BOOL, 0, MP_FIELD_NONE, 0},     /* true */
    [0xc4 - MP_TAG_FIRST] = {RT_MP_BIN, 1, MP_FIELD_LEN, 0},       /* bin8 */
    [0xc5 - MP_TAG_FIRST] = {RT_MP_BIN, 2, MP_FIELD_LEN, 0},       /* bin16 */
    [0xc6 - MP_TAG_FIRST] = {RT_MP_BIN, 4, MP_FIELD_LEN, 0},       /* bin32 */
    [0xc7 - MP_TAG_FIRST] = {RT_MP_EXT, 1, MP_FIELD_LEN, 1},       /* ext8: len, type, data */
    [0xc8 - MP_TAG_FIRST] = {RT_MP_EXT, 2, MP_FIELD_LEN, 1},       /* ext16 */
    [0xc9 - MP_TAG_FIRST] = {RT_MP_EXT, 4, MP_FIELD_LEN, 1},       /* ext32 */
    [0xca - MP_TAG_FIRST] = {RT_MP_FLOAT, 0, MP_FIELD_NONE, 4},    /* float32 */
    [0xcb - MP_TAG_FIRST] = {RT_MP_FLOAT, 0, MP_FIELD_NONE, 8},    /* float64 */
    [0xcc - MP_TAG_FIRST] = {RT_MP_UINT, 1, MP_FIELD_UINT, 0},     /* uint8 */
    [0xcd - MP_TAG_FIRST] = {RT_MP_UINT, 2, MP_FIELD_UINT, 0},     /* uint16 */
    [0xce - MP_TAG_FIRST] = {RT_MP_UINT, 4, MP_FIELD_UINT, 0},     /* uint32 */
    [0xcf - MP_TAG_FIRST] = {RT_MP_UINT, 8, MP_FIELD_UINT, 0},     /* uint64 */
    [0xd0 - MP_TAG_FIRST] = {RT_MP_INT, 1, MP_FIELD_INT, 0},       /* int8 */
    [0xd1 - MP_TAG_FIRST] = {RT_MP_INT, 2, MP_FIELD_INT, 0},       /* int16 */
    [0xd2 - MP_TAG_FIRST] = {RT_MP_INT, 4, MP_FIELD_INT, 0},       /* int32 */
    [0xd3 - MP_TAG_FIRST] = {RT_MP_INT, 8, MP_FIELD_INT, 0},       /* int64 */
    [0xd4 - MP_TAG_FIRST] = {RT_MP_EXT, 0, MP_FIELD_NONE, 1 + 1},  /* fixext1: type, data */
    [0xd5 - MP_TAG_FIRST] = {RT_MP_EXT, 0, MP_FIELD_NONE, 1 + 2},  /* fixext2 */
    [0xd6 - MP_TAG_FIRST] = {RT_MP_EXT, 0, MP_FIELD_NONE, 1 + 4},  /* fixext4 */
    [0xd7 - MP_TAG_FIRST] = {RT_MP_EXT, 0, MP_FIELD_NONE, 1 + 8},  /* fixext8 */
    [0xd8 - MP_TAG_FIRST] = {RT_MP_EXT, 0, MP_FIELD_NONE, 1 + 16}, /* fixext16 */
    [0xd9 - MP_TAG_FIRST] = {RT_MP_STR, 1, MP_FIELD_LEN, 0},       /* str8 */
    [0xda - MP_TAG_FIRST] = {RT_MP_STR, 2, MP_FIELD_LEN, 0},       /* str16 */
    [0xdb - MP_TAG_FIRST] = {RT_MP_STR, 4, MP_FIELD_LEN, 0},       /* str32 */
    [0xdc - MP_TAG_FIRST] = {RT_MP_ARRAY, 2, MP_FIELD_COUNT, 0},   /* array16 */
    [0xdd - MP_TAG_FIRST] = {RT_MP_ARRAY, 4, MP_FIELD_COUNT, 0},   /* array32 */
    [0xde - MP_TAG_FIRST] = {RT_MP_MAP, 2, MP_FIELD_COUNT, 0},     /* map16 */
    [0xdf - MP_TAG_FIRST] = {RT_MP_MAP, 4, MP_FIELD_COUNT, 0},     /* map32 */
};

/* One decoded header. Only the members that belong to @type are set. */
struct mp_head {
    enum rt_mp_type type;
    size_t head_bytes; /* Tag plus field. */
    size_t body_bytes; /* Payload after the header: str/bin/ext/float bytes; 0 otherwise. */
    uint64_t elements; /* Values that follow a container header: array count, map 2 x count. */
    uint64_t u;        /* RT_MP_UINT: the value. */
    int64_t i;         /* RT_MP_INT: the value (< 0). */
    uint32_t len;      /* RT_MP_STR, RT_MP_BIN: payload bytes; RT_MP_ARRAY, RT_MP_MAP: count. */
    bool b;            /* RT_MP_BOOL: the value. */
};

static uint64_t mp_get_be(const uint8_t *p, size_t width)
{
    assert(p != NULL);
    assert(width == 1 || width == 2 || width == 4 || width == 8);
    switch (width) {
    case 1:
        return p[0];
    case 2:
        return rt_get_be16(p);
    case 4:
        return rt_get_be32(p);
    default:
        return rt_get_be64(p);
    }
}

/* The two's complement value of the @width-byte field @v, without an implementation-defined
 * unsigned-to-signed conversion of an out-of-range value. */
static int64_t mp_sign_extend(uint64_t v, size_t width)
{
    assert(width == 1 || width == 2 || width == 4 || width == 8);
    const uint64_t mask = width == 8 ? UINT64_MAX : (UINT64_C(1) << (width * 8)) - 1;
    assert((v & ~mask) == 0);
    if ((v >> (width * 8 - 1)) == 0) {
        return (int64_t)v; /* Sign bit clear: fits. */
    }
    /* Negative: v - 2^(8 x width) == -(~v & mask) - 1, and (~v & mask) < 2^63. */
    return -(int64_t)(~v & mask) - 1;
}

/* Decode the header of the value at @p and check it against the bytes up to @end: the header
 * itself, the payload of a str/bin/ext/float, and for containers one byte per element (the
 * smallest value takes one byte, so a larger count cannot be honest). RT_EMALFORMED if any
 * check fails, at end of input, or on 0xc1. */
static int mp_head(const uint8_t *p, const uint8_t *end, struct mp_head *h)
{
    /* An empty reader may hold NULL for both pointers (rt_mp_reader_init(r, NULL, 0)), so
     * end of input is tested by comparison before any arithmetic. */
    assert(p <= end);
    assert(h != NULL);
    if (p == end) {
        return RT_EMALFORMED;
    }
    const size_t avail = (size_t)(end - p);
    const uint8_t tag = p[0];
    memset(h, 0, sizeof(*h));
    h->head_bytes = 1;
    uint64_t elements = 0;
    uint64_t body = 0; /* 64 bits: a 32-bit length plus an ext type byte must not wrap. */

    if (tag <= 0x7f) { /* positive fixint */
        h->type = RT_MP_UINT;
        h->u = tag;
        return 0;
    }
    if (tag >= 0xe0) { /* negative fixint: 111xxxxx is -32..-1 */
        h->type = RT_MP_INT;
        h->i = (int64_t)tag - 256;
        return 0;
    }
    if (tag <= 0x8f) { /* fixmap */
        h->type = RT_MP_MAP;
        h->len = tag & 0x0fu;
        elements = 2u * (uint64_t)h->len;
    } else if (tag <= 0x9f) { /* fixarray */
        h->type = RT_MP_ARRAY;
        h->len = tag & 0x0fu;
        elements = h->len;
    } else if (tag <= 0xbf) { /* fixstr */
        h->type = RT_MP_STR;
        h->len = tag & 0x1fu;
        body = h->len;
    } else {
        const struct mp_tag *t = &mp_tags[tag - MP_TAG_FIRST];
        if (t->type == RT_MP_INVALID) {
            return RT_EMALFORMED;
        }
        h->type = (enum rt_mp_type)t->type;
        h->b = tag == 0xc3;
        body = t->body;
        if (t->width > 0) {
            if (avail - 1 < t->width) {
                return RT_EMALFORMED; /* Truncated inside the header. */
            }
            h->head_bytes += t->width;
            const uint64_t v = mp_get_be(p + 1, t->width);
            switch ((enum mp_field)t->field) {
            case MP_FIELD_UINT:
                h->u = v;
                break;
            case MP_FIELD_INT:
                h->i = mp_sign_extend(v, t->width);
                if (h->i >= 0) {
                    /* A signed encoding of a value >= 0 is an unsigned integer to callers. */
                    h->type = RT_MP_UINT;
                    h->u = (uint64_t)h->i;
                    h->i = 0;
                }
                break;
            case MP_FIELD_LEN:
                assert(t->width <= 4);
                h->len = (uint32_t)v;
                body += v;
                break;
            case MP_FIELD_COUNT:
                assert(t->width <= 4);
                h->len = (uint32_t)v;
                elements = h->type == RT_MP_MAP ? 2u * v : v;
                break;
            default:
                assert(false); /* Every table entry with a width names its field. */
                return RT_EMALFORMED;
            }
        }
    }

    const size_t rest = avail - h->head_bytes;
    if (body > rest || elements > rest) {
        return RT_EMALFORMED; /* Claims more than the input holds. */
    }
    h->body_bytes = (size_t)body;
    h->elements = elements;
    return 0;
}

void rt_mp_reader_init(struct rt_mp_reader *r, const uint8_t *data, size_t len)
{
    assert(r != NULL);
    assert(data != NULL || len == 0);
    r->pos = data;
    /* NULL + 0 is undefined in C, so an empty input is spelt without pointer arithmetic. */
    r->end = len == 0 ? data : data + len;
}

/* The one-byte heads that keys, small numbers and maps almost always use, decoded in place
 * by the reads below before they fall back to mp_head; each applies mp_head's own bound (a
 * fixstr's bytes, and a fixmap's one byte per element, must fit in what follows the tag), so
 * a read answers the same either way, only sooner. */
static bool mp_is_fixstr(uint8_t tag)
{
    return (tag & 0xe0u) == 0xa0u;
}

/* The payload length of the fixstr at @p (before @end), or -1 when its payload does not fit
 * in what follows the tag. */
static int mp_fixstr_len(const uint8_t *p, const uint8_t *end)
{
    assert(p < end && mp_is_fixstr(*p));
    const uint32_t len = *p & 0x1fu;
    return len <= (size_t)(end - p) - 1 ? (int)len : -1;
}

static bool mp_is_fixmap(uint8_t tag)
{
    return (tag & 0xf0u) == 0x80u;
}

enum rt_mp_type rt_mp_peek(const struct rt_mp_reader *r)
{
    assert(r != NULL);
    assert(r->pos <= r->end);
    if (r->pos < r->end && *r->pos <= 0x7f) {
        return RT_MP_UINT; /* positive fixint */
    }
    if (r->pos < r->end && mp_is_fixstr(*r->pos)) {
        return mp_fixstr_len(r->pos, r->end) >= 0 ? RT_MP_STR : RT_MP_INVALID;
    }
    struct mp_head h;
    /* A header that does not decode (0xc1, end of input, truncated, or a length or count
     * larger than the input) has no type a read could honour. */
    if (mp_head(r->pos, r->end, &h) != 0) {
        return RT_MP_INVALID;
    }
    return h.type;
}

/* Decode the next header and require @type; the caller commits by advancing. */
static int mp_expect(const struct rt_mp_reader *r, enum rt_mp_type type, struct mp_head *h)
{
    assert(r != NULL && r->pos <= r->end);
    assert(type != RT_MP_INVALID);
    int rv = mp_head(r->pos, r->end, h);
    if (rv != 0) {
        return rv;
    }
    if (h->type != type) {
        return RT_EMALFORMED;
    }
    return 0;
}

int rt_mp_read_nil(struct rt_mp_reader *r)
{
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_NIL, &h);
    if (rv != 0) {
        return rv;
    }
    assert(h.head_bytes == 1 && h.body_bytes == 0);
    r->pos += h.head_bytes;
    return 0;
}

int rt_mp_read_bool(struct rt_mp_reader *r, bool *v)
{
    assert(v != NULL);
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_BOOL, &h);
    if (rv != 0) {
        return rv;
    }
    assert(h.head_bytes == 1 && h.body_bytes == 0);
    *v = h.b;
    r->pos += h.head_bytes;
    return 0;
}

int rt_mp_read_uint(struct rt_mp_reader *r, uint64_t *v)
{
    assert(v != NULL);
    assert(r != NULL && r->pos <= r->end);
    if (r->pos < r->end && *r->pos <= 0x7f) { /* positive fixint */
        *v = *r->pos;
        r->pos++;
        return 0;
    }
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_UINT, &h); /* A negative value is RT_MP_INT: rejected. */
    if (rv != 0) {
        return rv;
    }
    assert(h.body_bytes == 0);
    *v = h.u;
    r->pos += h.head_bytes;
    return 0;
}

int rt_mp_read_int(struct rt_mp_reader *r, int64_t *v)
{
    assert(r != NULL);
    assert(v != NULL);
    struct mp_head h;
    int rv = mp_head(r->pos, r->end, &h);
    if (rv != 0) {
        return rv;
    }
    if (h.type == RT_MP_UINT) {
        if (h.u > (uint64_t)INT64_MAX) {
            return RT_EMALFORMED; /* A uint64 above INT64_MAX does not fit. */
        }
        *v = (int64_t)h.u;
    } else if (h.type == RT_MP_INT) {
        assert(h.i < 0);
        *v = h.i;
    } else {
        return RT_EMALFORMED;
    }
    assert(h.body_bytes == 0);
    r->pos += h.head_bytes;
    return 0;
}

int rt_mp_read_str(struct rt_mp_reader *r, const char **s, uint32_t *len)
{
    assert(s != NULL && len != NULL);
    assert(r != NULL && r->pos <= r->end);
    if (r->pos < r->end && mp_is_fixstr(*r->pos)) {
        const int n = mp_fixstr_len(r->pos, r->end);
        if (n < 0) {
            return RT_EMALFORMED; /* Truncated inside the string. */
        }
        *s = (const char *)(r->pos + 1);
        *len = (uint32_t)n;
        r->pos += 1 + n;
        return 0;
    }
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_STR, &h);
    if (rv != 0) {
        return rv;
    }
    assert(h.body_bytes == h.len);
    *s = (const char *)(r->pos + h.head_bytes);
    *len = h.len;
    r->pos += h.head_bytes + h.body_bytes;
    return 0;
}

int rt_mp_read_bin(struct rt_mp_reader *r, const uint8_t **b, uint32_t *len)
{
    assert(b != NULL && len != NULL);
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_BIN, &h);
    if (rv != 0) {
        return rv;
    }
    assert(h.body_bytes == h.len);
    *b = r->pos + h.head_bytes;
    *len = h.len;
    r->pos += h.head_bytes + h.body_bytes;
    return 0;
}

int rt_mp_read_array(struct rt_mp_reader *r, uint32_t *count)
{
    assert(count != NULL);
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_ARRAY, &h);
    if (rv != 0) {
        return rv;
    }
    assert(h.elements == h.len && h.elements <= rt_mp_remaining(r) - h.head_bytes);
    *count = h.len;
    r->pos += h.head_bytes;
    return 0;
}

int rt_mp_read_map(struct rt_mp_reader *r, uint32_t *count)
{
    assert(count != NULL);
    assert(r != NULL && r->pos <= r->end);
    if (r->pos < r->end && mp_is_fixmap(*r->pos)) {
        const uint32_t n = *r->pos & 0x0fu;
        if (2u * n > (size_t)(r->end - r->pos) - 1) {
            return RT_EMALFORMED; /* Claims more elements than bytes left. */
        }
        *count = n;
        r->pos++;
        return 0;
    }
    struct mp_head h;
    int rv = mp_expect(r, RT_MP_MAP, &h);
    if (rv != 0) {
        return rv;
    }
    assert(h.elements == 2u * (uint64_t)h.len && h.elements <= rt_mp_remaining(r) - h.head_bytes);
    *count = h.len;
    r->pos += h.head_bytes;
    return 0;
}

/* Skip one whole value starting at @p, returning in @out the position after it. An explicit
 * stack holds the values still owed by each open container; each loop step consumes one
 * header, so the work is linear in the input and the stack is RT_MP_DEPTH_MAX entries. */
static int mp_skip(const uint8_t *p, const uint8_t *end, const uint8_t **out)
{
    assert(p <= end);
    assert(out != NULL);
    uint64_t owed[RT_MP_DEPTH_MAX]; /* owed[d]: values left in the container open at depth d. */
    size_t depth = 0;               /* Containers open. */
    do {
        if (p == end) {
            return RT_EMALFORMED;
        }
        /* The one-byte heads (fixints, nil, booleans, fixstr) are most of what requests,
         * replies and states hold: handled here, they skip mp_head's general decoding. */
        const uint8_t tag = *p;
        if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3) {
            p++;
        } else if (mp_is_fixstr(tag)) {
            const int body = mp_fixstr_len(p, end);
            if (body < 0) {
                return RT_EMALFORMED; /* Truncated inside the string. */
            }
            p += 1 + body;
        } else {
            struct mp_head h;
            int rv = mp_head(p, end, &h);
            if (rv != 0) {
                return rv;
            }
            assert(h.head_bytes + h.body_bytes <= (size_t)(end - p));
            p += h.head_bytes + h.body_bytes;
            if (h.type == RT_MP_ARRAY || h.type == RT_MP_MAP) {
                if (depth == RT_MP_DEPTH_MAX) {
                    return RT_EMALFORMED; /* One container more than the limit, even if empty. */
                }
                if (h.elements > 0) {
                    owed[depth++] = h.elements;
                    continue; /* The value ends after its last element. */
                }
            }
        }
        /* One value is complete: it pays one element of the innermost open container, which
         * may complete that container and so on outwards. */
        while (depth > 0) {
            assert(owed[depth - 1] > 0);
            if (--owed[depth - 1] > 0) {
                break;
            }
            depth--;
        }
    } while (depth > 0);
    *out = p;
    return 0;
}

int rt_mp_skip(struct rt_mp_reader *r)
{
    assert(r != NULL);
    assert(r->pos <= r->end);
    const uint8_t *next;
    int rv = mp_skip(r->pos, r->end, &next);
    if (rv != 0) {
        return rv;
    }
    assert(next > r->pos && next <= r->end);
    r->pos = next;
    return 0;
}

int rt_mp_read_raw(struct rt_mp_reader *r, const uint8_t **raw, size_t *len)
{
    assert(r != NULL);
    assert(raw != NULL && len != NULL);
    const uint8_t *start = r->pos;
    int rv = rt_mp_skip(r);
    if (rv != 0) {
        return rv;
    }
    *raw = start;
    *len = (size_t)(r->pos - start);
    return 0;
}

int rt_mp_validate(const uint8_t *data, size_t len)
{
    assert(data != NULL || len == 0);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    int rv = rt_mp_skip(&r);
    if (rv != 0) {
        return rv;
    }
    if (rt_mp_remaining(&r) != 0) {
        return RT_EMALFORMED; /* Trailing bytes: exactly one value is expected. */
    }
    return 0;
}

bool rt_utf8_valid(const char *s, size_t len)
{
    assert(s != NULL || len == 0);
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        const unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* Unicode 15, table 3-7: the lead byte fixes the length and narrows the range of the
         * second byte, which is what rules out overlongs (E0, F0), surrogates (ED) and code
         * points past U+10FFFF (F4). C0, C1 and F5..FF never appear. */
        size_t more;
        unsigned lo = 0x80;
        unsigned hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
        } else if (c == 0xe0) {
            more = 2;
            lo = 0xa0;
        } else if (c == 0xed) {
            more = 2;
            hi = 0x9f;
        } else if (c >= 0xe1 && c <= 0xef) {
            more = 2;
        } else if (c == 0xf0) {
            more = 3;
            lo = 0x90;
        } else if (c == 0xf4) {
            more = 3;
            hi = 0x8f;
        } else if (c >= 0xf1 && c <= 0xf3) {
            more = 3;
        } else {
            return false;
        }
        if (len - i - 1 < more) {
            return false; /* Truncated sequence. */
        }
        if (p[i + 1] < lo || p[i + 1] > hi) {
            return false;
        }
        for (size_t k = 2; k <= more; k++) {
            if ((p[i + k] & 0xc0u) != 0x80u) {
                return false;
            }
        }
        i += 1 + more;
    }
    assert(i == len);
    return true;
}

/* ---- Writer ---- */

/* The longest header: a tag and an 8-byte field. */
#define MP_HEAD_BYTES_MAX 9u

void rt_mp_writer_init(struct rt_mp_writer *w, struct rt_buf *buf)
{
    assert(w != NULL);
    assert(buf != NULL);
    w->buf = buf;
    w->error = 0;
}

/* Append @head then @body as one value, or nothing: the room for both is reserved first, so a
 * value is never cut in half and a failed write leaves the buffer's length as it was. */
static inline void mp_emit(struct rt_mp_writer *w, const uint8_t *head, size_t head_len,
                           const void *body, size_t body_len)
{
    assert(w != NULL && w->buf != NULL);
    assert(head_len <= MP_HEAD_BYTES_MAX && (head != NULL || head_len == 0));
    assert(body != NULL || body_len == 0);
    if (w->error != 0) {
        return; /* Sticky: the value would follow a hole. */
    }
    if (body_len > SIZE_MAX - head_len) {
        w->error = RT_ETOOLARGE;
        return;
    }
    struct rt_buf *buf = w->buf;
    int rv = rt_buf_reserve(buf, head_len + body_len);
    if (rv != 0) {
        w->error = rv;
        return;
    }
    /* Written in place, not with two rt_buf_appends: this runs for every value of every state
     * and reply, and most heads are one byte (fixint, fixstr, fixmap, nil), too short to be
     * worth a call to memcpy. */
    uint8_t *at = buf->data + buf->len;
    for (size_t i = 0; i < head_len; i++) {
        at[i] = head[i];
    }
    if (body_len > 0) {
        memcpy(at + head_len, body, body_len);
    }
    buf->len += head_len + body_len;
}

/* Write @tag followed by @v as a big-endian field of @width bytes (0 for none). */
static inline void mp_emit_tag(struct rt_mp_writer *w, uint8_t tag, size_t width, uint64_t v)
{
    assert(width == 0 || width == 1 || width == 2 || width == 4 || width == 8);
    assert(width == 8 || (v >> (width * 8)) == 0); /* The field holds @v whole. */
    uint8_t head[MP_HEAD_BYTES_MAX];
    head[0] = tag;
    switch (width) {
    case 0:
        break;
    case 1:
        head[1] = (uint8_t)v;
        break;
    case 2:
        rt_put_be16(head + 1, (uint16_t)v);
        break;
    case 4:
        rt_put_be32(head + 1, (uint32_t)v);
        break;
    default:
        rt_put_be64(head + 1, v);
        break;
    }
    mp_emit(w, head, 1 + width, NULL, 0);
}

void rt_mp_write_nil(struct rt_mp_writer *w)
{
    mp_emit_tag(w, 0xc0, 0, 0);
}

void rt_mp_write_bool(struct rt_mp_writer *w, bool v)
{
    mp_emit_tag(w, v ? 0xc3 : 0xc2, 0, 0);
}

void rt_mp_write_uint(struct rt_mp_writer *w, uint64_t v)
{
    assert(w != NULL);
    if (v <= 0x7f) {
        mp_emit_tag(w, (uint8_t)v, 0, 0); /* positive fixint */
    } else if (v <= UINT8_MAX) {
        mp_emit_tag(w, 0xcc, 1, v);
    } else if (v <= UINT16_MAX) {
        mp_emit_tag(w, 0xcd, 2, v);
    } else if (v <= UINT32_MAX) {
        mp_emit_tag(w, 0xce, 4, v);
    } else {
        mp_emit_tag(w, 0xcf, 8, v);
    }
}

void rt_mp_write_int(struct rt_mp_writer *w, int64_t v)
{
    assert(w != NULL);
    if (v >= 0) {
        /* msgpack's smallest form of a non-negative value is an unsigned one. */
        rt_mp_write_uint(w, (uint64_t)v);
        return;
    }
    /* Converting a negative value to an unsigned type is defined (modulo 2^n): that is the
     * two's complement field. */
    if (v >= -32) {
        mp_emit_tag(w, (uint8_t)v, 0, 0); /* negative fixint */
    } else if (v >= INT8_MIN) {
        mp_emit_tag(w, 0xd0, 1, (uint8_t)v);
    } else if (v >= INT16_MIN) {
        mp_emit_tag(w, 0xd1, 2, (uint16_t)v);
    } else if (v >= INT32_MIN) {
        mp_emit_tag(w, 0xd2, 4, (uint32_t)v);
    } else {
        mp_emit_tag(w, 0xd3, 8, (uint64_t)v);
    }
}

/* A str or bin: the smallest header for @len, then the bytes. @fix is the fixstr tag base, or
 * 0 for bin (which has no fix form); @tag8 is the 8-bit-length tag, followed by the 16- and
 * 32-bit ones. */
static inline void mp_emit_bytes(struct rt_mp_writer *w, uint8_t fix, uint8_t tag8,
                                 const void *bytes, size_t len)
{
    assert(w != NULL);
    assert(bytes != NULL || len == 0);
    uint8_t head[MP_HEAD_BYTES_MAX];
    size_t head_len;
    if (fix != 0 && len <= 31) {
        head[0] = (uint8_t)(fix | len);
        head_len = 1;
    } else if (len <= UINT8_MAX) {
        head[0] = tag8;
        head[1] = (uint8_t)len;
        head_len = 2;
    } else if (len <= UINT16_MAX) {
        head[0] = (uint8_t)(tag8 + 1);
        rt_put_be16(head + 1, (uint16_t)len);
        head_len = 3;
    } else if ((uint64_t)len <= UINT32_MAX) {
        head[0] = (uint8_t)(tag8 + 2);
        rt_put_be32(head + 1, (uint32_t)len);
        head_len = 5;
    } else {
        if (w->error == 0) {
            w->error = RT_ETOOLARGE; /* msgpack lengths are 32-bit. */
        }
        return;
    }
    mp_emit(w, head, head_len, bytes, len);
}

void rt_mp_write_str_any(struct rt_mp_writer *w, const char *s, size_t len)
{
    mp_emit_bytes(w, 0xa0, 0xd9, s, len);
}

void rt_mp_write_bin(struct rt_mp_writer *w, const uint8_t *b, size_t len)
{
    mp_emit_bytes(w, 0, 0xc4, b, len);
}

void rt_mp_write_array(struct rt_mp_writer *w, uint32_t count)
{
    assert(w != NULL);
    if (count <= 15) {
        mp_emit_tag(w, (uint8_t)(0x90 | count), 0, 0);
    } else if (count <= UINT16_MAX) {
        mp_emit_tag(w, 0xdc, 2, count);
    } else {
        mp_emit_tag(w, 0xdd, 4, count);
    }
}

void rt_mp_write_map(struct rt_mp_writer *w, uint32_t count)
{
    assert(w != NULL);
    if (count <= 15) {
        mp_emit_tag(w, (uint8_t)(0x80 | count), 0, 0);
    } else if (count <= UINT16_MAX) {
        mp_emit_tag(w, 0xde, 2, count);
    } else {
        mp_emit_tag(w, 0xdf, 4, count);
    }
}

size_t rt_mp_write_array32(struct rt_mp_writer *w, uint32_t count)
{
    assert(w != NULL && w->buf != NULL);
    /* The header's offset is where the buffer ends now. After an error nothing was written
     * there and the caller must not patch it (it checks rt_mp_writer_error first). */
    const size_t offset = w->buf->len;
    mp_emit_tag(w, 0xdd, 4, count);
    assert(w->error != 0 || w->buf->len == offset + 5);
    return offset;
}

void rt_mp_write_raw(struct rt_mp_writer *w, const uint8_t *raw, size_t len)
{
    assert(w != NULL);
    assert(raw != NULL || len == 0);
    mp_emit(w, NULL, 0, raw, len);
}
