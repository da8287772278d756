/* Tests for rt_mp: round trips at every size boundary, a cross-check against msgpack-c in both
 * directions, and hostile input (truncation at every offset, lying counts and lengths, deep
 * nesting, the reserved byte, wrong types, invalid UTF-8), plus the writer's sticky error.
 *
 * Inputs that must fail are copied into a malloc'd buffer of exactly their length, so that
 * ASan reports any read past the end that the bounds checks should have prevented. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rt_buf.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"

#define TEST_BUF_MAX (16u * 1024u * 1024u)

/* ---- Helpers ---- */

/* A malloc'd copy of exactly @len bytes (at least one byte is allocated, none readable). */
static uint8_t *dup_exact(const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len == 0 ? 1 : len);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, data, len);
    }
    return copy;
}

static void writer_open(struct rt_buf *buf, struct rt_mp_writer *w)
{
    rt_buf_init(buf, TEST_BUF_MAX);
    rt_mp_writer_init(w, buf);
}

/* Bytes the writer produced for one value, as an exact-size copy. */
static uint8_t *writer_take(struct rt_buf *buf, struct rt_mp_writer *w, size_t *len)
{
    assert_int_equal(rt_mp_writer_error(w), 0);
    *len = buf->len;
    return dup_exact(buf->data, buf->len);
}

/* Decode exactly one object from @data with msgpack-c; the whole input must be consumed. */
static void mpc_unpack(msgpack_unpacked *u, const uint8_t *data, size_t len)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    msgpack_unpack_return ret = msgpack_unpack_next(u, (const char *)data, len, &off);
    assert_int_equal(ret, MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
}

static void mpc_open(msgpack_sbuffer *sbuf, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sbuf);
    msgpack_packer_init(pk, sbuf, msgpack_sbuffer_write);
}

/* Our writer and msgpack-c's packer must have produced the same bytes. */
static void assert_same_bytes(const struct rt_buf *buf, const msgpack_sbuffer *sbuf)
{
    assert_int_equal(buf->len, sbuf->size);
    assert_memory_equal(buf->data, sbuf->data, buf->len);
}

/* Read ops, for the wrong-type matrix. */
enum op { OP_NIL, OP_BOOL, OP_UINT, OP_INT, OP_STR, OP_BIN, OP_ARRAY, OP_MAP, OP_COUNT };

static int do_op(enum op op, struct rt_mp_reader *r)
{
    bool b;
    uint64_t u;
    int64_t i;
    const char *s;
    const uint8_t *p;
    uint32_t n;
    switch (op) {
    case OP_NIL:
        return rt_mp_read_nil(r);
    case OP_BOOL:
        return rt_mp_read_bool(r, &b);
    case OP_UINT:
        return rt_mp_read_uint(r, &u);
    case OP_INT:
        return rt_mp_read_int(r, &i);
    case OP_STR:
        return rt_mp_read_str(r, &s, &n);
    case OP_BIN:
        return rt_mp_read_bin(r, &p, &n);
    case OP_ARRAY:
        return rt_mp_read_array(r, &n);
    case OP_MAP:
        return rt_mp_read_map(r, &n);
    default:
        fail();
        return 0;
    }
}

/* The op that reads @type (OP_COUNT if none does: floats, exts). */
static enum op op_for(enum rt_mp_type type)
{
    switch (type) {
    case RT_MP_NIL:
        return OP_NIL;
    case RT_MP_BOOL:
        return OP_BOOL;
    case RT_MP_UINT:
        return OP_UINT;
    case RT_MP_INT:
        return OP_INT;
    case RT_MP_STR:
        return OP_STR;
    case RT_MP_BIN:
        return OP_BIN;
    case RT_MP_ARRAY:
        return OP_ARRAY;
    case RT_MP_MAP:
        return OP_MAP;
    default:
        return OP_COUNT;
    }
}

/* Run @op expecting RT_EMALFORMED and an unmoved reader. */
static void assert_op_fails(enum op op, struct rt_mp_reader *r)
{
    const uint8_t *pos = r->pos;
    const uint8_t *end = r->end;
    assert_int_equal(do_op(op, r), RT_EMALFORMED);
    assert_ptr_equal(r->pos, pos);
    assert_ptr_equal(r->end, end);
}

static void assert_skip_fails(struct rt_mp_reader *r)
{
    const uint8_t *pos = r->pos;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(rt_mp_skip(r), RT_EMALFORMED);
    assert_ptr_equal(r->pos, pos);
    assert_int_equal(rt_mp_read_raw(r, &raw, &raw_len), RT_EMALFORMED);
    assert_ptr_equal(r->pos, pos);
}

/* ---- Samples: one hand-encoded value of every format ---- */

struct sample {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    enum rt_mp_type type;
};

#define SAMPLE(name, type, ...)                                                                    \
    {                                                                                              \
        name, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), type         \
    }

static const struct sample samples[] = {
    SAMPLE("nil", RT_MP_NIL, 0xc0),
    SAMPLE("false", RT_MP_BOOL, 0xc2),
    SAMPLE("true", RT_MP_BOOL, 0xc3),
    SAMPLE("fixint", RT_MP_UINT, 0x05),
    SAMPLE("uint8", RT_MP_UINT, 0xcc, 0xff),
    SAMPLE("uint16", RT_MP_UINT, 0xcd, 0x01, 0x00),
    SAMPLE("uint32", RT_MP_UINT, 0xce, 0x00, 0x01, 0x00, 0x00),
    SAMPLE("uint64", RT_MP_UINT, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    SAMPLE("negfixint", RT_MP_INT, 0xff),
    SAMPLE("int8", RT_MP_INT, 0xd0, 0x80),
    SAMPLE("int16", RT_MP_INT, 0xd1, 0x80, 0x00),
    SAMPLE("int32", RT_MP_INT, 0xd2, 0x80, 0x00, 0x00, 0x00),
    SAMPLE("int64", RT_MP_INT, 0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
    SAMPLE("int8 >= 0", RT_MP_UINT, 0xd0, 0x05),
    SAMPLE("int64 >= 0", RT_MP_UINT, 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    SAMPLE("float32", RT_MP_FLOAT, 0xca, 0x3f, 0x80, 0x00, 0x00),
    SAMPLE("float64", RT_MP_FLOAT, 0xcb, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00),
    SAMPLE("fixstr", RT_MP_STR, 0xa3, 'a', 'b', 'c'),
    SAMPLE("fixstr empty", RT_MP_STR, 0xa0),
    SAMPLE("str8", RT_MP_STR, 0xd9, 0x03, 'a', 'b', 'c'),
    SAMPLE("str16", RT_MP_STR, 0xda, 0x00, 0x03, 'a', 'b', 'c'),
    SAMPLE("str32", RT_MP_STR, 0xdb, 0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c'),
    SAMPLE("bin8", RT_MP_BIN, 0xc4, 0x02, 0x00, 0xff),
    SAMPLE("bin8 empty", RT_MP_BIN, 0xc4, 0x00),
    SAMPLE("bin16", RT_MP_BIN, 0xc5, 0x00, 0x02, 0x00, 0xff),
    SAMPLE("bin32", RT_MP_BIN, 0xc6, 0x00, 0x00, 0x00, 0x02, 0x00, 0xff),
    SAMPLE("fixarray", RT_MP_ARRAY, 0x92, 0x01, 0x02),
    SAMPLE("fixarray empty", RT_MP_ARRAY, 0x90),
    SAMPLE("array16", RT_MP_ARRAY, 0xdc, 0x00, 0x02, 0x01, 0x02),
    SAMPLE("array32", RT_MP_ARRAY, 0xdd, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02),
    SAMPLE("fixmap", RT_MP_MAP, 0x81, 0xa1, 'k', 0x01),
    SAMPLE("fixmap empty", RT_MP_MAP, 0x80),
    SAMPLE("map16", RT_MP_MAP, 0xde, 0x00, 0x01, 0xa1, 'k', 0x01),
    SAMPLE("map32", RT_MP_MAP, 0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 'k', 0x01),
    SAMPLE("fixext1", RT_MP_EXT, 0xd4, 0x01, 0xaa),
    SAMPLE("fixext2", RT_MP_EXT, 0xd5, 0x01, 0xaa, 0xbb),
    SAMPLE("fixext4", RT_MP_EXT, 0xd6, 0x01, 1, 2, 3, 4),
    SAMPLE("fixext8", RT_MP_EXT, 0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7, 8),
    SAMPLE("fixext16", RT_MP_EXT, 0xd8, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
           16),
    SAMPLE("ext8", RT_MP_EXT, 0xc7, 0x03, 0x05, 1, 2, 3),
    SAMPLE("ext8 empty", RT_MP_EXT, 0xc7, 0x00, 0x05),
    SAMPLE("ext16", RT_MP_EXT, 0xc8, 0x00, 0x02, 0x05, 1, 2),
    SAMPLE("ext32", RT_MP_EXT, 0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 9),
    /* {"a": [1, nil, [false, true]], "b": {}} */
    SAMPLE("nested", RT_MP_MAP, 0x82, 0xa1, 'a', 0x93, 0x01, 0xc0, 0x92, 0xc2, 0xc3, 0xa1, 'b',
           0x80),
};

#define SAMPLES_COUNT (sizeof(samples) / sizeof(samples[0]))

/* Whether @op may succeed on @s (read_int rejects a uint64 above INT64_MAX). */
static bool op_accepts(enum op op, const struct sample *s)
{
    if (op == OP_INT && s->type == RT_MP_UINT) {
        return s->bytes[0] != 0xcf || s->bytes[1] < 0x80;
    }
    return op == op_for(s->type);
}

/* ---- Round trips ---- */

static void test_nil_bool(void **state)
{
    (void)state;
    struct rt_buf buf;
    struct rt_mp_writer w;
    writer_open(&buf, &w);
    rt_mp_write_nil(&w);
    rt_mp_write_bool(&w, true);
    rt_mp_write_bool(&w, false);
    size_t len;
    uint8_t *data = writer_take(&buf, &w, &len);
    const uint8_t expect[] = {0xc0, 0xc3, 0xc2};
    assert_int_equal(len, sizeof(expect));
    assert_memory_equal(data, expect, len);

    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    bool v;
    assert_int_equal(rt_mp_peek(&r), RT_MP_NIL);
    assert_int_equal(rt_mp_read_nil(&r), 0);
    assert_int_equal(rt_mp_peek(&r), RT_MP_BOOL);
    assert_int_equal(rt_mp_read_bool(&r, &v), 0);
    assert_true(v);
    assert_int_equal(rt_mp_read_bool(&r, &v), 0);
    assert_false(v);
    assert_int_equal(rt_mp_remaining(&r), 0);
    assert_int_equal(rt_mp_peek(&r), RT_MP_INVALID);
    assert_op_fails(OP_NIL, &r);
    free(data);
    rt_buf_free(&buf);
}

static void test_uint_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t bytes;
        uint8_t tag;
    } cases[] = {
        {0, 1, 0x00},
        {1, 1, 0x01},
        {127, 1, 0x7f},
        {128, 2, 0xcc},
        {255, 2, 0xcc},
        {256, 3, 0xcd},
        {65535, 3, 0xcd},
        {65536, 5, 0xce},
        {UINT32_MAX, 5, 0xce},
        {(uint64_t)UINT32_MAX + 1, 9, 0xcf},
        {(uint64_t)INT64_MAX, 9, 0xcf},
        {(uint64_t)INT64_MAX + 1, 9, 0xcf},
        {UINT64_MAX, 9, 0xcf},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct rt_buf buf;
        struct rt_mp_writer w;
        writer_open(&buf, &w);
        rt_mp_write_uint(&w, cases[c].v);
        size_t len;
        uint8_t *data = writer_take(&buf, &w, &len);
        assert_int_equal(len, cases[c].bytes);
        assert_int_equal(data[0], cases[c].tag);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, len);
        assert_int_equal(rt_mp_peek(&r), RT_MP_UINT);
        uint64_t u = 0;
        assert_int_equal(rt_mp_read_uint(&r, &u), 0);
        assert_true(u == cases[c].v);
        assert_int_equal(rt_mp_remaining(&r), 0);

        rt_mp_reader_init(&r, data, len);
        int64_t i = 0;
        if (cases[c].v <= (uint64_t)INT64_MAX) {
            assert_int_equal(rt_mp_read_int(&r, &i), 0);
            assert_true(i == (int64_t)cases[c].v);
            assert_int_equal(rt_mp_remaining(&r), 0);
        } else {
            assert_op_fails(OP_INT, &r);
        }
        assert_int_equal(rt_mp_validate(data, len), 0);
        free(data);
        rt_buf_free(&buf);
    }
}

static void test_int_boundaries(void **state)
{
    (void)state;
    static const struct {
        int64_t v;
        size_t bytes;
        uint8_t tag;
    } cases[] = {
        {-1, 1, 0xff},
        {-32, 1, 0xe0},
        {-33, 2, 0xd0},
        {-128, 2, 0xd0},
        {-129, 3, 0xd1},
        {-32768, 3, 0xd1},
        {-32769, 5, 0xd2},
        {INT32_MIN, 5, 0xd2},
        {(int64_t)INT32_MIN - 1, 9, 0xd3},
        {INT64_MIN + 1, 9, 0xd3},
        {INT64_MIN, 9, 0xd3},
        /* Non-negative values take the unsigned forms. */
        {0, 1, 0x00},
        {127, 1, 0x7f},
        {128, 2, 0xcc},
        {255, 2, 0xcc},
        {256, 3, 0xcd},
        {65536, 5, 0xce},
        {INT64_MAX, 9, 0xcf},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct rt_buf buf;
        struct rt_mp_writer w;
        writer_open(&buf, &w);
        rt_mp_write_int(&w, cases[c].v);
        size_t len;
        uint8_t *data = writer_take(&buf, &w, &len);
        assert_int_equal(len, cases[c].bytes);
        assert_int_equal(data[0], cases[c].tag);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, len);
        assert_int_equal(rt_mp_peek(&r), cases[c].v < 0 ? RT_MP_INT : RT_MP_UINT);
        int64_t i = 0;
        assert_int_equal(rt_mp_read_int(&r, &i), 0);
        assert_true(i == cases[c].v);
        assert_int_equal(rt_mp_remaining(&r), 0);

        rt_mp_reader_init(&r, data, len);
        if (cases[c].v < 0) {
            assert_op_fails(OP_UINT, &r);
        } else {
            uint64_t u = 0;
            assert_int_equal(rt_mp_read_uint(&r, &u), 0);
            assert_true(u == (uint64_t)cases[c].v);
        }
        free(data);
        rt_buf_free(&buf);
    }
}

/* Encodings a smallest-form writer never makes are still accepted by value. */
static void test_int_any_encoding(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[9];
        size_t len;
        enum rt_mp_type type;
        int64_t v;
    } cases[] = {
        {{0xd0, 0x05}, 2, RT_MP_UINT, 5},
        {{0xd0, 0x7f}, 2, RT_MP_UINT, 127},
        {{0xd0, 0x80}, 2, RT_MP_INT, -128},
        {{0xd0, 0xff}, 2, RT_MP_INT, -1},
        {{0xd1, 0x7f, 0xff}, 3, RT_MP_UINT, 32767},
        {{0xd1, 0xff, 0xff}, 3, RT_MP_INT, -1},
        {{0xd2, 0x00, 0x00, 0x00, 0x00}, 5, RT_MP_UINT, 0},
        {{0xd2, 0x80, 0x00, 0x00, 0x00}, 5, RT_MP_INT, INT32_MIN},
        {{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, RT_MP_UINT, INT64_MAX},
        {{0xd3, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a}, 9, RT_MP_UINT, 42},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, 9, RT_MP_INT, -2},
        {{0xcc, 0x01}, 2, RT_MP_UINT, 1},
        {{0xcd, 0x00, 0x00}, 3, RT_MP_UINT, 0},
        {{0xce, 0x00, 0x00, 0x00, 0x07}, 5, RT_MP_UINT, 7},
        {{0xcf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a}, 9, RT_MP_UINT, 42},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint8_t *data = dup_exact(cases[c].bytes, cases[c].len);
        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, cases[c].len);
        assert_int_equal(rt_mp_peek(&r), cases[c].type);
        int64_t i = 0;
        assert_int_equal(rt_mp_read_int(&r, &i), 0);
        assert_true(i == cases[c].v);
        assert_int_equal(rt_mp_remaining(&r), 0);
        rt_mp_reader_init(&r, data, cases[c].len);
        if (cases[c].type == RT_MP_UINT) {
            uint64_t u = 0;
            assert_int_equal(rt_mp_read_uint(&r, &u), 0);
            assert_true(u == (uint64_t)cases[c].v);
        } else {
            assert_op_fails(OP_UINT, &r);
        }
        free(data);
    }
}

/* Deterministic filler so a misplaced byte shows up. */
static uint8_t *pattern(size_t len, uint8_t base, uint8_t mod)
{
    uint8_t *p = malloc(len == 0 ? 1 : len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(base + i % mod);
    }
    return p;
}

static void test_str_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        size_t head;
        uint8_t tag;
    } cases[] = {
        {0, 1, 0xa0},   {1, 1, 0xa1},     {31, 1, 0xbf},    {32, 2, 0xd9},    {255, 2, 0xd9},
        {256, 3, 0xda}, {65535, 3, 0xda}, {65536, 5, 0xdb}, {70000, 5, 0xdb},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char *text = (char *)pattern(cases[c].len, 'a', 26);
        struct rt_buf buf;
        struct rt_mp_writer w;
        writer_open(&buf, &w);
        rt_mp_write_str(&w, text, cases[c].len);
        size_t len;
        uint8_t *data = writer_take(&buf, &w, &len);
        assert_int_equal(len, cases[c].head + cases[c].len);
        assert_int_equal(data[0], cases[c].tag);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, len);
        assert_int_equal(rt_mp_peek(&r), RT_MP_STR);
        const char *s = NULL;
        uint32_t n = 0;
        assert_int_equal(rt_mp_read_str(&r, &s, &n), 0);
        assert_int_equal(n, cases[c].len);
        assert_ptr_equal(s, (const char *)data + cases[c].head); /* A view, not a copy. */
        assert_memory_equal(s, text, n);
        assert_true(rt_utf8_valid(s, n));
        assert_int_equal(rt_mp_remaining(&r), 0);
        assert_int_equal(rt_mp_validate(data, len), 0);

        /* One byte short of the payload must be refused. */
        rt_mp_reader_init(&r, data, len - 1);
        assert_op_fails(OP_STR, &r);
        free(data);
        free(text);
        rt_buf_free(&buf);
    }
}

static void test_cstr(void **state)
{
    (void)state;
    struct rt_buf buf;
    struct rt_mp_writer w;
    writer_open(&buf, &w);
    rt_mp_write_cstr(&w, "hello");
    rt_mp_write_cstr(&w, NULL);
    rt_mp_write_cstr(&w, "");
    const uint8_t expect[] = {0xa5, 'h', 'e', 'l', 'l', 'o', 0xc0, 0xa0};
    assert_int_equal(rt_mp_writer_error(&w), 0);
    assert_int_equal(buf.len, sizeof(expect));
    assert_memory_equal(buf.data, expect, sizeof(expect));
    rt_buf_free(&buf);
}

static void test_bin_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        size_t head;
        uint8_t tag;
    } cases[] = {
        {0, 2, 0xc4},     {1, 2, 0xc4},     {255, 2, 0xc4},   {256, 3, 0xc5},
        {65535, 3, 0xc5}, {65536, 5, 0xc6}, {70001, 5, 0xc6},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint8_t *bytes = pattern(cases[c].len, 0, 251);
        struct rt_buf buf;
        struct rt_mp_writer w;
        writer_open(&buf, &w);
        rt_mp_write_bin(&w, bytes, cases[c].len);
        size_t len;
        uint8_t *data = writer_take(&buf, &w, &len);
        assert_int_equal(len, cases[c].head + cases[c].len);
        assert_int_equal(data[0], cases[c].tag);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, len);
        assert_int_equal(rt_mp_peek(&r), RT_MP_BIN);
        const uint8_t *b = NULL;
        uint32_t n = 0;
        assert_int_equal(rt_mp_read_bin(&r, &b, &n), 0);
        assert_int_equal(n, cases[c].len);
        assert_ptr_equal(b, data + cases[c].head);
        assert_memory_equal(b, bytes, n);
        assert_int_equal(rt_mp_remaining(&r), 0);

        rt_mp_reader_init(&r, data, len - 1);
        assert_op_fails(OP_BIN, &r);
        free(data);
        free(bytes);
        rt_buf_free(&buf);
    }
}

static const struct {
    uint32_t count;
    size_t head;
    uint8_t array_tag;
    uint8_t map_tag;
} container_cases[] = {
    {0, 1, 0x90, 0x80},     {1, 1, 0x91, 0x81},     {15, 1, 0x9f, 0x8f},     {16, 3, 0xdc, 0xde},
    {65535, 3, 0xdc, 0xde}, {65536, 5, 0xdd, 0xdf}, {100000, 5, 0xdd, 0xdf},
};

static void test_array_boundaries(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(container_cases) / sizeof(container_cases[0]); c++) {
        const uint32_t count = container_cases[c].count;
        struct rt_buf buf;
        struct rt_mp_writer w;
        writer_open(&buf, &w);
        rt_mp_write_array(&w, count);
        for (uint32_t i = 0; i < count; i++) {
            rt_mp_write_uint(&w, i % 128);
        }
        size_t len;
        uint8_t *data = writer_take(&buf, &w, &len);
        assert_int_equal(len, container_cases[c].head + count);
        assert_int_equal(data[0], container_cases[c].array_tag);
        assert_int_equal(rt_mp_validate(data, len), 0);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, len);
        assert_int_equal(rt_mp_peek(&r), RT_MP_ARRAY);
        uint32_t n = 0;
        assert_int_equal(rt_mp_read_array(&r, &n), 0);
        assert_int_equal(n, count);
        for (uint32_t i = 0; i < count; i++) {
            uint64_t u;
            assert_int_equal(rt_mp_read_uint(&r, &u), 0);
            assert_int_equal(u, i % 128);
        }
        assert_int_equal(rt_mp_remaining(&r), 0);

        /* One element short: the header's count no longer fits (count <= bytes left). */
        if (count > 0) {
            rt_mp_reader_init(&r, data, len - 1);
            assert_op_fails(OP_ARRAY, &r);
            assert_int_equal(rt_mp_validate(data, len - 1), RT_EMALFORMED);
        }
        free(data);
        rt_buf_free(&buf);
    }
}

static void test_map_boundaries(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(container_cases) / sizeof(container_cases[0]); c++) {
        const uint32_t count = container_cases[c].count;
        struct rt_buf buf;
        struct rt_mp_writer w;
        writer_open(&buf, &w);
        rt_mp_write_map(&w, count);
        for (uint32_t i = 0; i < count; i++) {
            rt_mp_write_uint(&w, i % 100);
            rt_mp_write_bool(&w, i % 2 == 0);
        }
        size_t len;
        uint8_t *data = writer_take(&buf, &w, &len);
        assert_int_equal(len, container_cases[c].head + 2u * (size_t)count);
        assert_int_equal(data[0], container_cases[c].map_tag);
        assert_int_equal(rt_mp_validate(data, len), 0);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, len);
        assert_int_equal(rt_mp_peek(&r), RT_MP_MAP);
        uint32_t n = 0;
        assert_int_equal(rt_mp_read_map(&r, &n), 0);
        assert_int_equal(n, count);
        for (uint32_t i = 0; i < count; i++) {
            uint64_t k;
            bool v;
            assert_int_equal(rt_mp_read_uint(&r, &k), 0);
            assert_int_equal(k, i % 100);
            assert_int_equal(rt_mp_read_bool(&r, &v), 0);
            assert_int_equal(v, i % 2 == 0);
        }
        assert_int_equal(rt_mp_remaining(&r), 0);

        if (count > 0) {
            /* count entries need 2 x count bytes: one byte short must fail. */
            rt_mp_reader_init(&r, data, len - 1);
            assert_op_fails(OP_MAP, &r);
        }
        free(data);
        rt_buf_free(&buf);
    }
}

static void test_array32_patch(void **state)
{
    (void)state;
    struct rt_buf buf;
    struct rt_mp_writer w;
    writer_open(&buf, &w);
    rt_mp_write_array(&w, 2);
    rt_mp_write_nil(&w);
    size_t offset = rt_mp_write_array32(&w, 0);
    assert_int_equal(offset, 2);
    assert_int_equal(buf.len, offset + 5);
    assert_int_equal(buf.data[offset], 0xdd); /* Always array32, even for a count of 0. */
    rt_mp_write_uint(&w, 7);
    rt_mp_write_cstr(&w, "x");
    rt_mp_write_int(&w, -7);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    rt_put_be32(buf.data + offset + 1, 3);
    assert_int_equal(rt_mp_validate(buf.data, buf.len), 0);

    struct rt_mp_reader r;
    rt_mp_reader_init(&r, buf.data, buf.len);
    uint32_t n;
    assert_int_equal(rt_mp_read_array(&r, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rt_mp_read_nil(&r), 0);
    assert_int_equal(rt_mp_read_array(&r, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rt_mp_skip(&r), 0);
    assert_int_equal(rt_mp_skip(&r), 0);
    assert_int_equal(rt_mp_skip(&r), 0);
    assert_int_equal(rt_mp_remaining(&r), 0);
    rt_buf_free(&buf);
}

static void test_raw(void **state)
{
    (void)state;
    const struct sample *nested = &samples[SAMPLES_COUNT - 1];
    struct rt_buf buf;
    struct rt_mp_writer w;
    writer_open(&buf, &w);
    rt_mp_write_array(&w, 3);
    rt_mp_write_raw(&w, nested->bytes, nested->len);
    rt_mp_write_raw(&w, NULL, 0); /* Nothing: allowed and a no-op. */
    rt_mp_write_uint(&w, 1);
    rt_mp_write_raw(&w, nested->bytes, nested->len);
    size_t len;
    uint8_t *data = writer_take(&buf, &w, &len);
    assert_int_equal(len, 1 + 2 * nested->len + 1);
    assert_int_equal(rt_mp_validate(data, len), 0);

    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    uint32_t n;
    assert_int_equal(rt_mp_read_array(&r, &n), 0);
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    assert_int_equal(rt_mp_read_raw(&r, &raw, &raw_len), 0);
    assert_ptr_equal(raw, data + 1);
    assert_int_equal(raw_len, nested->len);
    assert_memory_equal(raw, nested->bytes, raw_len);
    assert_int_equal(rt_mp_read_raw(&r, &raw, &raw_len), 0);
    assert_int_equal(raw_len, 1);
    assert_int_equal(rt_mp_read_raw(&r, &raw, &raw_len), 0);
    assert_memory_equal(raw, nested->bytes, nested->len);
    assert_int_equal(rt_mp_remaining(&r), 0);
    free(data);
    rt_buf_free(&buf);
}

static void test_key_is(void **state)
{
    (void)state;
    assert_true(rt_mp_key_is("amount", 6, "amount"));
    assert_true(rt_mp_key_is("amount_fen", 6, "amount")); /* The view ends at key_len. */
    assert_false(rt_mp_key_is("amoun", 5, "amount"));
    assert_false(rt_mp_key_is("amount", 6, "amoun"));
    assert_false(rt_mp_key_is("Amount", 6, "amount"));
    assert_true(rt_mp_key_is(NULL, 0, ""));
    assert_false(rt_mp_key_is("a", 1, ""));
    assert_false(rt_mp_key_is("a\0b", 3, "a"));
}

/* ---- Every sample: types, skip, validate, wrong-type reads ---- */

static void test_samples(void **state)
{
    (void)state;
    for (size_t s = 0; s < SAMPLES_COUNT; s++) {
        const struct sample *sm = &samples[s];
        uint8_t *data = dup_exact(sm->bytes, sm->len);
        assert_int_equal(rt_mp_validate(data, sm->len), 0);

        struct rt_mp_reader r;
        rt_mp_reader_init(&r, data, sm->len);
        assert_int_equal(rt_mp_peek(&r), sm->type);
        assert_int_equal(rt_mp_skip(&r), 0);
        assert_int_equal(rt_mp_remaining(&r), 0);

        rt_mp_reader_init(&r, data, sm->len);
        const uint8_t *raw = NULL;
        size_t raw_len = 0;
        assert_int_equal(rt_mp_read_raw(&r, &raw, &raw_len), 0);
        assert_ptr_equal(raw, data);
        assert_int_equal(raw_len, sm->len);

        for (enum op op = 0; op < OP_COUNT; op++) {
            rt_mp_reader_init(&r, data, sm->len);
            if (!op_accepts(op, sm)) {
                assert_op_fails(op, &r);
                continue;
            }
            assert_int_equal(do_op(op, &r), 0);
            if (op == OP_ARRAY || op == OP_MAP) {
                assert_true(r.pos > data); /* Past the header, before the elements. */
            } else {
                assert_int_equal(rt_mp_remaining(&r), 0);
            }
        }

        /* Trailing bytes make it not exactly one value. */
        uint8_t *longer = malloc(sm->len + 1);
        assert_non_null(longer);
        memcpy(longer, sm->bytes, sm->len);
        longer[sm->len] = 0xc0;
        assert_int_equal(rt_mp_validate(longer, sm->len + 1), RT_EMALFORMED);
        free(longer);
        free(data);
    }
}

static void test_sample_values(void **state)
{
    (void)state;
    /* Spot-check values decoded from the hand-made samples (each sample's index by name). */
    struct rt_mp_reader r;
    uint64_t u;
    int64_t i;
    const char *s;
    const uint8_t *b;
    uint32_t n;
    for (size_t k = 0; k < SAMPLES_COUNT; k++) {
        const struct sample *sm = &samples[k];
        rt_mp_reader_init(&r, sm->bytes, sm->len);
        if (strcmp(sm->name, "uint16") == 0) {
            assert_int_equal(rt_mp_read_uint(&r, &u), 0);
            assert_int_equal(u, 256);
        } else if (strcmp(sm->name, "uint64") == 0) {
            assert_int_equal(rt_mp_read_uint(&r, &u), 0);
            assert_true(u == UINT64_MAX);
        } else if (strcmp(sm->name, "int64") == 0) {
            assert_int_equal(rt_mp_read_int(&r, &i), 0);
            assert_true(i == INT64_MIN);
        } else if (strcmp(sm->name, "int16") == 0) {
            assert_int_equal(rt_mp_read_int(&r, &i), 0);
            assert_true(i == INT16_MIN);
        } else if (strcmp(sm->name, "str32") == 0) {
            assert_int_equal(rt_mp_read_str(&r, &s, &n), 0);
            assert_int_equal(n, 3);
            assert_memory_equal(s, "abc", 3);
        } else if (strcmp(sm->name, "bin16") == 0) {
            assert_int_equal(rt_mp_read_bin(&r, &b, &n), 0);
            assert_int_equal(n, 2);
            assert_int_equal(b[1], 0xff);
        } else if (strcmp(sm->name, "map32") == 0) {
            assert_int_equal(rt_mp_read_map(&r, &n), 0);
            assert_int_equal(n, 1);
            assert_int_equal(rt_mp_read_str(&r, &s, &n), 0);
            assert_true(rt_mp_key_is(s, n, "k"));
        }
    }
}

/* ---- Hostile input ---- */

static void test_truncated_everywhere(void **state)
{
    (void)state;
    /* Each sample, and one array holding all of them, cut at every byte offset. */
    struct rt_buf buf;
    struct rt_mp_writer w;
    writer_open(&buf, &w);
    rt_mp_write_array(&w, (uint32_t)SAMPLES_COUNT);
    for (size_t s = 0; s < SAMPLES_COUNT; s++) {
        rt_mp_write_raw(&w, samples[s].bytes, samples[s].len);
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
    assert_int_equal(rt_mp_validate(buf.data, buf.len), 0);

    for (size_t s = 0; s <= SAMPLES_COUNT; s++) {
        const uint8_t *full = s < SAMPLES_COUNT ? samples[s].bytes : buf.data;
        const size_t full_len = s < SAMPLES_COUNT ? samples[s].len : buf.len;
        const enum rt_mp_type type = s < SAMPLES_COUNT ? samples[s].type : RT_MP_ARRAY;
        for (size_t cut = 0; cut < full_len; cut++) {
            uint8_t *data = dup_exact(full, cut);
            struct rt_mp_reader r;
            rt_mp_reader_init(&r, cut == 0 ? NULL : data, cut);
            assert_int_equal(rt_mp_validate(cut == 0 ? NULL : data, cut), RT_EMALFORMED);
            assert_skip_fails(&r);
            if (cut == 0) {
                assert_int_equal(rt_mp_peek(&r), RT_MP_INVALID);
            }
            /* A scalar's own read fails; a container header may be whole while an element is
             * missing, which only skip/validate can see. */
            enum op op = op_for(type);
            if (op != OP_COUNT && op != OP_ARRAY && op != OP_MAP) {
                assert_op_fails(op, &r);
            }
            free(data);
        }
    }
    rt_buf_free(&buf);
}

/* Run every read on @bytes expecting each to fail unmoved, and validate to fail. */
static void assert_all_fail(const uint8_t *bytes, size_t len)
{
    uint8_t *data = dup_exact(bytes, len);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    for (enum op op = 0; op < OP_COUNT; op++) {
        assert_op_fails(op, &r);
    }
    assert_skip_fails(&r);
    assert_int_equal(rt_mp_peek(&r), RT_MP_INVALID);
    assert_int_equal(rt_mp_validate(data, len), RT_EMALFORMED);
    free(data);
}

static void test_lying_counts(void **state)
{
    (void)state;
    /* Counts and lengths far beyond the input: must fail before anything trusts them. */
    const uint8_t array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0};
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0};
    const uint8_t array16[] = {0xdc, 0xff, 0xff, 0xc0};
    const uint8_t map16[] = {0xde, 0xff, 0xff, 0xc0, 0xc0};
    const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b'};
    const uint8_t str8[] = {0xd9, 0x05, 'a', 'b', 'c', 'd'};
    const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    const uint8_t ext32[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00};
    const uint8_t ext8[] = {0xc7, 0x02, 0x05, 0x01}; /* Type byte plus 2 data: 3 needed. */
    const uint8_t fixext16[] = {0xd8, 0x01, 1, 2, 3};
    const uint8_t fixmap[] = {0x82, 0x01, 0x02, 0x03}; /* count 2 <= 3 left, but 4 needed. */
    const uint8_t fixarray[] = {0x93, 0x01, 0x02};
    const uint8_t fixstr[] = {0xa3, 'a', 'b'}; /* Three bytes claimed, two left. */
    assert_all_fail(array32, sizeof(array32));
    assert_all_fail(map32, sizeof(map32));
    assert_all_fail(array16, sizeof(array16));
    assert_all_fail(map16, sizeof(map16));
    assert_all_fail(str32, sizeof(str32));
    assert_all_fail(str8, sizeof(str8));
    assert_all_fail(bin32, sizeof(bin32));
    assert_all_fail(ext32, sizeof(ext32));
    assert_all_fail(ext8, sizeof(ext8));
    assert_all_fail(fixext16, sizeof(fixext16));
    assert_all_fail(fixmap, sizeof(fixmap));
    assert_all_fail(fixarray, sizeof(fixarray));
    assert_all_fail(fixstr, sizeof(fixstr));

    /* The checks are exactly at the limit: one more byte makes each header acceptable. */
    const uint8_t fixmap_ok[] = {0x82, 0x01, 0x02, 0x03, 0x04};
    const uint8_t fixarray_ok[] = {0x93, 0x01, 0x02, 0x03};
    struct rt_mp_reader r;
    uint32_t n;
    rt_mp_reader_init(&r, fixmap_ok, sizeof(fixmap_ok));
    assert_int_equal(rt_mp_read_map(&r, &n), 0);
    assert_int_equal(n, 2);
    rt_mp_reader_init(&r, fixarray_ok, sizeof(fixarray_ok));
    assert_int_equal(rt_mp_read_array(&r, &n), 0);
    assert_int_equal(n, 3);
    const uint8_t fixstr_ok[] = {0xa3, 'a', 'b', 'c'};
    const char *text = NULL;
    rt_mp_reader_init(&r, fixstr_ok, sizeof(fixstr_ok));
    assert_int_equal(rt_mp_peek(&r), RT_MP_STR);
    assert_int_equal(rt_mp_read_str(&r, &text, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(text, "abc", 3);
    assert_int_equal(rt_mp_remaining(&r), 0);
    /* A count that fits the bytes left is taken at its word by read_array (the caller reads
     * the elements); only skip and validate see that the elements are not all there. */
    const uint8_t short_elements[] = {0x92, 0xa5, 'a', 'b'};
    rt_mp_reader_init(&r, short_elements, sizeof(short_elements));
    assert_int_equal(rt_mp_read_array(&r, &n), 0);
    rt_mp_reader_init(&r, short_elements, sizeof(short_elements));
    assert_skip_fails(&r);

    /* array32 of 4 Gi elements in a 1 MiB buffer of nils: refused at the header, at once. */
    const size_t big = 1024u * 1024u;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    memset(data, 0xc0, big);
    const uint8_t head[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    memcpy(data, head, sizeof(head));
    rt_mp_reader_init(&r, data, big);
    assert_op_fails(OP_ARRAY, &r);
    assert_skip_fails(&r);
    assert_int_equal(rt_mp_validate(data, big), RT_EMALFORMED);
    /* And str32 of 4 GiB - 1 in the same buffer. */
    data[0] = 0xdb;
    assert_op_fails(OP_STR, &r);
    assert_skip_fails(&r);
    free(data);
}

/* @levels nested containers around a nil: arrays [[[nil]]] or maps {nil: {nil: nil}}. */
static uint8_t *nested(size_t levels, bool maps, bool empty_inner, size_t *len)
{
    const size_t per = maps ? 2 : 1;
    uint8_t *data = malloc(levels * per + 1);
    assert_non_null(data);
    size_t n = 0;
    for (size_t i = 0; i < levels; i++) {
        if (empty_inner && i == levels - 1) {
            data[n++] = maps ? 0x80 : 0x90;
            break;
        }
        data[n++] = maps ? 0x81 : 0x91;
        if (maps) {
            data[n++] = 0xc0; /* The key; the value is the next level. */
        }
    }
    if (!empty_inner) {
        data[n++] = 0xc0;
    }
    *len = n;
    return data;
}

static void test_depth(void **state)
{
    (void)state;
    for (int maps = 0; maps <= 1; maps++) {
        for (int empty = 0; empty <= 1; empty++) {
            size_t len;
            uint8_t *ok = nested(RT_MP_DEPTH_MAX, maps, empty, &len);
            assert_int_equal(rt_mp_validate(ok, len), 0);
            struct rt_mp_reader r;
            rt_mp_reader_init(&r, ok, len);
            assert_int_equal(rt_mp_skip(&r), 0);
            assert_int_equal(rt_mp_remaining(&r), 0);
            free(ok);

            uint8_t *deep = nested(RT_MP_DEPTH_MAX + 1, maps, empty, &len);
            assert_int_equal(rt_mp_validate(deep, len), RT_EMALFORMED);
            rt_mp_reader_init(&r, deep, len);
            assert_skip_fails(&r);
            /* The caller descending by hand one level in sees a legal depth again. */
            uint32_t n;
            assert_int_equal(maps ? rt_mp_read_map(&r, &n) : rt_mp_read_array(&r, &n), 0);
            if (maps) {
                assert_int_equal(rt_mp_read_nil(&r), 0);
            }
            assert_int_equal(rt_mp_skip(&r), 0);
            free(deep);
        }
    }

    /* A million levels: refused after RT_MP_DEPTH_MAX + 1 headers, no stack growth. */
    size_t len;
    uint8_t *abyss = nested(1000000, false, false, &len);
    assert_int_equal(rt_mp_validate(abyss, len), RT_EMALFORMED);
    free(abyss);
}

static void test_wide_and_deep(void **state)
{
    (void)state;
    /* 65535 siblings, each 15 levels deep: 1 MiB that validates in linear time. */
    const size_t per = (RT_MP_DEPTH_MAX - 1) + 1;
    const size_t len = 3 + 65535u * per;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    data[0] = 0xdc;
    rt_put_be16(data + 1, 65535);
    for (size_t i = 0; i < 65535u; i++) {
        memset(data + 3 + i * per, 0x91, per - 1);
        data[3 + i * per + per - 1] = (uint8_t)(i % 128);
    }
    assert_int_equal(rt_mp_validate(data, len), 0);
    /* One sibling with a 17th level, even an empty one, makes the whole value too deep. */
    data[len - 1] = 0x90;
    assert_int_equal(rt_mp_validate(data, len), RT_EMALFORMED);
    free(data);
}

static void test_reserved_byte(void **state)
{
    (void)state;
    const uint8_t c1[] = {0xc1};
    const uint8_t c1_after[] = {0xc1, 0xc0};
    assert_all_fail(c1, sizeof(c1));
    assert_all_fail(c1_after, sizeof(c1_after));
    const uint8_t in_array[] = {0x92, 0xc0, 0xc1};
    const uint8_t as_key[] = {0x81, 0xc1, 0xc0};
    assert_int_equal(rt_mp_validate(in_array, sizeof(in_array)), RT_EMALFORMED);
    assert_int_equal(rt_mp_validate(as_key, sizeof(as_key)), RT_EMALFORMED);
}

static void test_validate_exactly_one(void **state)
{
    (void)state;
    const uint8_t two[] = {0xc0, 0xc0};
    const uint8_t array_then_more[] = {0x91, 0xc0, 0xc0};
    const uint8_t array[] = {0x91, 0xc0};
    assert_int_equal(rt_mp_validate(NULL, 0), RT_EMALFORMED);
    assert_int_equal(rt_mp_validate(two, sizeof(two)), RT_EMALFORMED);
    assert_int_equal(rt_mp_validate(two, 1), 0);
    assert_int_equal(rt_mp_validate(array_then_more, sizeof(array_then_more)), RT_EMALFORMED);
    assert_int_equal(rt_mp_validate(array, sizeof(array)), 0);

    struct rt_mp_reader r;
    rt_mp_reader_init(&r, NULL, 0);
    assert_int_equal(rt_mp_remaining(&r), 0);
    assert_int_equal(rt_mp_peek(&r), RT_MP_INVALID);
    for (enum op op = 0; op < OP_COUNT; op++) {
        assert_op_fails(op, &r);
    }
    assert_skip_fails(&r);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        bool valid;
    } cases[] = {
        {"", 0, true},
        {"plain ascii", 11, true},
        {"a\0b", 3, true},             /* NUL is a code point; length is explicit. */
        {"\xc2\x80", 2, true},         /* U+0080, smallest 2-byte. */
        {"\xdf\xbf", 2, true},         /* U+07FF */
        {"\xe0\xa0\x80", 3, true},     /* U+0800, smallest 3-byte. */
        {"\xe2\x82\xac", 3, true},     /* U+20AC euro sign. */
        {"\xed\x9f\xbf", 3, true},     /* U+D7FF, just below the surrogates. */
        {"\xee\x80\x80", 3, true},     /* U+E000, just above them. */
        {"\xef\xbf\xbf", 3, true},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, true}, /* U+10000, smallest 4-byte. */
        {"\xf0\x9f\x98\x80", 4, true}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, true}, /* U+10FFFF, the last code point. */
        {"\xe4\xbd\xa0\xe5\xa5\xbd", 6, true},
        {"\xc0\xaf", 2, false},         /* Overlong '/'. */
        {"\xc1\xbf", 2, false},         /* Overlong U+007F. */
        {"\xc0\x80", 2, false},         /* Overlong NUL. */
        {"\xe0\x80\xaf", 3, false},     /* Overlong 3-byte. */
        {"\xe0\x9f\xbf", 3, false},     /* Overlong U+07FF. */
        {"\xf0\x80\x80\xaf", 4, false}, /* Overlong 4-byte. */
        {"\xf0\x8f\xbf\xbf", 4, false}, /* Overlong U+FFFF. */
        {"\xed\xa0\x80", 3, false},     /* U+D800, first surrogate. */
        {"\xed\xbf\xbf", 3, false},     /* U+DFFF, last surrogate. */
        {"\xf4\x90\x80\x80", 4, false}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, false}, /* Lead byte past F4. */
        {"\xff", 1, false},
        {"\xfe", 1, false},
        {"\x80", 1, false},             /* Lone continuation byte. */
        {"\xe2\x82", 2, false},         /* Truncated 3-byte. */
        {"a\xe2\x82", 3, false},        /* Truncated at the end of the input. */
        {"\xf0\x9f\x98", 3, false},     /* Truncated 4-byte. */
        {"\xc2", 1, false},             /* Truncated 2-byte. */
        {"\xe2\x28\xa1", 3, false},     /* Bad second byte. */
        {"\xe2\x82\x28", 3, false},     /* Bad third byte. */
        {"\xf0\x9f\x98\x28", 4, false}, /* Bad fourth byte. */
        {"\xc2\x80\x80", 3, false},     /* Continuation after a complete sequence. */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        /* Exact-size copy: a check that reads one byte too far trips ASan. */
        uint8_t *data = dup_exact((const uint8_t *)cases[c].s, cases[c].len);
        assert_int_equal(rt_utf8_valid((const char *)data, cases[c].len), cases[c].valid);
        free(data);
    }
    assert_true(rt_utf8_valid(NULL, 0));
}

/* Every code point encoded by hand is valid exactly outside the surrogates. */
static void test_utf8_all_code_points(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        unsigned char b[4];
        size_t n;
        if (cp < 0x80) {
            b[0] = (unsigned char)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xc0 | (cp >> 6));
            b[1] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xe0 | (cp >> 12));
            b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            b[2] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xf0 | (cp >> 18));
            b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
            b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            b[3] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 4;
        }
        const bool surrogate = cp >= 0xd800 && cp <= 0xdfff;
        if (rt_utf8_valid((const char *)b, n) == surrogate) {
            fail_msg("code point U+%04X", (unsigned)cp);
        }
        /* Every proper prefix of a multi-byte sequence is truncated. */
        for (size_t k = 1; k < n; k++) {
            if (rt_utf8_valid((const char *)b, k)) {
                fail_msg("prefix %zu of U+%04X", k, (unsigned)cp);
            }
        }
    }
}

/* ---- Writer errors ---- */

static void test_writer_sticky(void **state)
{
    (void)state;
    struct rt_buf buf;
    struct rt_mp_writer w;
    rt_buf_init(&buf, 8);
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_uint(&w, 1);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    assert_int_equal(buf.len, 1);

    rt_mp_write_str(&w, "0123456789", 10); /* 11 bytes into 7 left. */
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 1);
    /* Later writes, even ones that would fit, are no-ops. */
    rt_mp_write_nil(&w);
    rt_mp_write_bool(&w, true);
    rt_mp_write_int(&w, -1);
    rt_mp_write_uint(&w, 2);
    rt_mp_write_cstr(&w, "a");
    rt_mp_write_bin(&w, (const uint8_t *)"a", 1);
    rt_mp_write_array(&w, 1);
    rt_mp_write_map(&w, 1);
    rt_mp_write_raw(&w, (const uint8_t *)"\xc0", 1);
    size_t offset = rt_mp_write_array32(&w, 1);
    assert_int_equal(offset, 1);
    assert_int_equal(buf.len, 1);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.data[0], 0x01);
    rt_buf_free(&buf);

    /* Exactly full is fine; one byte more is not. */
    rt_buf_init(&buf, 3);
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_uint(&w, 65535);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    assert_int_equal(buf.len, 3);
    rt_mp_write_nil(&w);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 3);
    rt_buf_free(&buf);

    /* A value is written whole or not at all: the header fits, the body does not. */
    rt_buf_init(&buf, 4);
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_str(&w, "abcd", 4);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 0);
    rt_buf_free(&buf);

    /* array32 that does not fit. */
    rt_buf_init(&buf, 4);
    rt_mp_writer_init(&w, &buf);
    offset = rt_mp_write_array32(&w, 0);
    assert_int_equal(offset, 0);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 0);
    rt_buf_free(&buf);
}

static void test_writer_length_overflow(void **state)
{
    (void)state;
    if (SIZE_MAX <= UINT32_MAX) {
        skip(); /* A length past 32 bits cannot be spelt on this platform. */
    }
    /* msgpack lengths are 32-bit: a longer str/bin is refused before its bytes are read (the
     * one-byte buffer would trip ASan otherwise). */
    struct rt_buf buf;
    struct rt_mp_writer w;
    rt_buf_init(&buf, SIZE_MAX);
    rt_mp_writer_init(&w, &buf);
    const uint8_t one = 0;
    rt_mp_write_bin(&w, &one, (size_t)UINT32_MAX + 1);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 0);
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_str(&w, (const char *)&one, SIZE_MAX);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 0);
    rt_buf_free(&buf);

    /* Raw bytes past the buffer's max: refused by rt_buf before anything is copied. */
    rt_buf_init(&buf, 1024);
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_raw(&w, &one, SIZE_MAX);
    assert_int_equal(rt_mp_writer_error(&w), RT_ETOOLARGE);
    assert_int_equal(buf.len, 0);
    rt_buf_free(&buf);
}

/* ---- Cross-check with msgpack-c ---- */

static const uint64_t uint_edges[] = {
    0,
    1,
    31,
    32,
    127,
    128,
    255,
    256,
    65535,
    65536,
    UINT32_MAX,
    (uint64_t)UINT32_MAX + 1,
    (uint64_t)INT64_MAX,
    (uint64_t)INT64_MAX + 1,
    UINT64_MAX,
};
static const int64_t int_edges[] = {
    -1,
    -31,
    -32,
    -33,
    -127,
    -128,
    -129,
    -32767,
    -32768,
    -32769,
    INT32_MIN + 1,
    INT32_MIN,
    (int64_t)INT32_MIN - 1,
    INT64_MIN + 1,
    INT64_MIN,
    0,
    1,
    127,
    128,
    INT64_MAX,
};
static const size_t len_edges[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 65537};

static void test_cross_scalars(void **state)
{
    (void)state;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_unpacked u;
    struct rt_buf buf;
    struct rt_mp_writer w;
    struct rt_mp_reader r;

    for (size_t c = 0; c < sizeof(uint_edges) / sizeof(uint_edges[0]); c++) {
        const uint64_t v = uint_edges[c];
        mpc_open(&sbuf, &pk);
        writer_open(&buf, &w);
        msgpack_pack_uint64(&pk, v);
        rt_mp_write_uint(&w, v);
        assert_same_bytes(&buf, &sbuf);
        /* msgpack-c -> ours */
        uint64_t got;
        rt_mp_reader_init(&r, (const uint8_t *)sbuf.data, sbuf.size);
        assert_int_equal(rt_mp_read_uint(&r, &got), 0);
        assert_true(got == v);
        /* ours -> msgpack-c */
        mpc_unpack(&u, buf.data, buf.len);
        assert_int_equal(u.data.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        assert_true(u.data.via.u64 == v);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sbuf);
        rt_buf_free(&buf);
    }

    for (size_t c = 0; c < sizeof(int_edges) / sizeof(int_edges[0]); c++) {
        const int64_t v = int_edges[c];
        mpc_open(&sbuf, &pk);
        writer_open(&buf, &w);
        msgpack_pack_int64(&pk, v);
        rt_mp_write_int(&w, v);
        assert_same_bytes(&buf, &sbuf);
        int64_t got;
        rt_mp_reader_init(&r, (const uint8_t *)sbuf.data, sbuf.size);
        assert_int_equal(rt_mp_read_int(&r, &got), 0);
        assert_true(got == v);
        mpc_unpack(&u, buf.data, buf.len);
        if (v < 0) {
            assert_int_equal(u.data.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
            assert_true(u.data.via.i64 == v);
        } else {
            assert_int_equal(u.data.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            assert_true(u.data.via.u64 == (uint64_t)v);
        }
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sbuf);
        rt_buf_free(&buf);
    }

    /* nil, bools; then msgpack-c's non-minimal signed forms, which our reader must accept. */
    mpc_open(&sbuf, &pk);
    writer_open(&buf, &w);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    rt_mp_write_nil(&w);
    rt_mp_write_bool(&w, true);
    rt_mp_write_bool(&w, false);
    assert_same_bytes(&buf, &sbuf);
    msgpack_sbuffer_clear(&sbuf);
    msgpack_pack_fix_int8(&pk, 5);
    msgpack_pack_fix_int16(&pk, -300);
    msgpack_pack_fix_int32(&pk, 70000);
    msgpack_pack_fix_int64(&pk, INT64_MIN);
    msgpack_pack_fix_uint64(&pk, 3);
    rt_mp_reader_init(&r, (const uint8_t *)sbuf.data, sbuf.size);
    int64_t i;
    uint64_t uv;
    assert_int_equal(rt_mp_read_uint(&r, &uv), 0);
    assert_int_equal(uv, 5);
    assert_int_equal(rt_mp_read_int(&r, &i), 0);
    assert_int_equal(i, -300);
    assert_int_equal(rt_mp_read_int(&r, &i), 0);
    assert_int_equal(i, 70000);
    assert_int_equal(rt_mp_read_int(&r, &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(rt_mp_read_uint(&r, &uv), 0);
    assert_int_equal(uv, 3);
    assert_int_equal(rt_mp_remaining(&r), 0);
    msgpack_sbuffer_destroy(&sbuf);
    rt_buf_free(&buf);
}

static void test_cross_str_bin(void **state)
{
    (void)state;
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_unpacked u;
    struct rt_buf buf;
    struct rt_mp_writer w;
    struct rt_mp_reader r;
    for (size_t c = 0; c < sizeof(len_edges) / sizeof(len_edges[0]); c++) {
        const size_t len = len_edges[c];
        uint8_t *bytes = pattern(len, 'A', 58);
        for (int bin = 0; bin <= 1; bin++) {
            mpc_open(&sbuf, &pk);
            writer_open(&buf, &w);
            if (bin) {
                msgpack_pack_bin_with_body(&pk, bytes, len);
                rt_mp_write_bin(&w, bytes, len);
            } else {
                msgpack_pack_str_with_body(&pk, bytes, len);
                rt_mp_write_str(&w, (const char *)bytes, len);
            }
            assert_same_bytes(&buf, &sbuf);

            const uint8_t *view;
            uint32_t n;
            rt_mp_reader_init(&r, (const uint8_t *)sbuf.data, sbuf.size);
            if (bin) {
                assert_int_equal(rt_mp_read_bin(&r, &view, &n), 0);
            } else {
                const char *s;
                assert_int_equal(rt_mp_read_str(&r, &s, &n), 0);
                view = (const uint8_t *)s;
            }
            assert_int_equal(n, len);
            assert_memory_equal(view, bytes, len);

            mpc_unpack(&u, buf.data, buf.len);
            if (bin) {
                assert_int_equal(u.data.type, MSGPACK_OBJECT_BIN);
                assert_int_equal(u.data.via.bin.size, len);
                assert_memory_equal(u.data.via.bin.ptr, bytes, len);
            } else {
                assert_int_equal(u.data.type, MSGPACK_OBJECT_STR);
                assert_int_equal(u.data.via.str.size, len);
                assert_memory_equal(u.data.via.str.ptr, bytes, len);
            }
            msgpack_unpacked_destroy(&u);
            msgpack_sbuffer_destroy(&sbuf);
            rt_buf_free(&buf);
        }
        free(bytes);
    }
}

static void test_cross_containers(void **state)
{
    (void)state;
    static const uint32_t counts[] = {0, 1, 15, 16, 65535, 65536};
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_unpacked u;
    struct rt_buf buf;
    struct rt_mp_writer w;
    struct rt_mp_reader r;
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        for (int map = 0; map <= 1; map++) {
            const uint32_t count = counts[c];
            mpc_open(&sbuf, &pk);
            writer_open(&buf, &w);
            if (map) {
                msgpack_pack_map(&pk, count);
                rt_mp_write_map(&w, count);
            } else {
                msgpack_pack_array(&pk, count);
                rt_mp_write_array(&w, count);
            }
            for (uint32_t i = 0; i < count * (map ? 2u : 1u); i++) {
                msgpack_pack_uint32(&pk, i);
                rt_mp_write_uint(&w, i);
            }
            assert_same_bytes(&buf, &sbuf);

            uint32_t n;
            rt_mp_reader_init(&r, (const uint8_t *)sbuf.data, sbuf.size);
            assert_int_equal(map ? rt_mp_read_map(&r, &n) : rt_mp_read_array(&r, &n), 0);
            assert_int_equal(n, count);
            for (uint32_t i = 0; i < count * (map ? 2u : 1u); i++) {
                uint64_t v;
                assert_int_equal(rt_mp_read_uint(&r, &v), 0);
                assert_int_equal(v, i);
            }
            assert_int_equal(rt_mp_remaining(&r), 0);

            mpc_unpack(&u, buf.data, buf.len);
            if (map) {
                assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
                assert_int_equal(u.data.via.map.size, count);
                if (count > 0) {
                    assert_int_equal(u.data.via.map.ptr[count - 1].val.via.u64, 2 * count - 1);
                }
            } else {
                assert_int_equal(u.data.type, MSGPACK_OBJECT_ARRAY);
                assert_int_equal(u.data.via.array.size, count);
                if (count > 0) {
                    assert_int_equal(u.data.via.array.ptr[count - 1].via.u64, count - 1);
                }
            }
            msgpack_unpacked_destroy(&u);
            msgpack_sbuffer_destroy(&sbuf);
            rt_buf_free(&buf);
        }
    }
}

/* Emit one random value to msgpack-c and to our writer. Floats and exts, which our writer
 * has no call for, go through msgpack-c and rt_mp_write_raw. */
static void gen_value(struct rt_prng *p, unsigned depth, msgpack_packer *pk, struct rt_mp_writer *w)
{
    const unsigned kinds = depth < 4 ? 11 : 9; /* Containers only while shallow. */
    msgpack_sbuffer tmp;
    msgpack_packer tpk;
    switch (rt_prng_below(p, kinds)) {
    case 0:
        msgpack_pack_nil(pk);
        rt_mp_write_nil(w);
        break;
    case 1: {
        const bool v = rt_prng_below(p, 2) == 1;
        if (v) {
            msgpack_pack_true(pk);
        } else {
            msgpack_pack_false(pk);
        }
        rt_mp_write_bool(w, v);
        break;
    }
    case 2: {
        uint64_t v = uint_edges[rt_prng_below(p, sizeof(uint_edges) / sizeof(uint_edges[0]))];
        if (rt_prng_below(p, 2) == 0) {
            v = rt_prng_next(p) >> rt_prng_below(p, 64); /* Random magnitude. */
        }
        msgpack_pack_uint64(pk, v);
        rt_mp_write_uint(w, v);
        break;
    }
    case 3: {
        int64_t v = int_edges[rt_prng_below(p, sizeof(int_edges) / sizeof(int_edges[0]))];
        if (rt_prng_below(p, 2) == 0) {
            /* -(m) - 1 for m < 2^63 covers [INT64_MIN, -1]. */
            v = -(int64_t)(rt_prng_next(p) >> (1 + rt_prng_below(p, 63))) - 1;
        }
        msgpack_pack_int64(pk, v);
        rt_mp_write_int(w, v);
        break;
    }
    case 4:
    case 5: {
        static const size_t lens[] = {0, 1, 5, 31, 32, 33, 255, 256, 300};
        size_t len = lens[rt_prng_below(p, sizeof(lens) / sizeof(lens[0]))];
        uint8_t bytes[300];
        for (size_t i = 0; i < len; i++) {
            bytes[i] = (uint8_t)rt_prng_below(p, 256);
        }
        if (rt_prng_below(p, 2) == 0) {
            msgpack_pack_str_with_body(pk, bytes, len);
            rt_mp_write_str(w, (const char *)bytes, len);
        } else {
            msgpack_pack_bin_with_body(pk, bytes, len);
            rt_mp_write_bin(w, bytes, len);
        }
        break;
    }
    case 6:
    case 7:
    case 8: {
        mpc_open(&tmp, &tpk);
        uint8_t bytes[40];
        for (size_t i = 0; i < sizeof(bytes); i++) {
            bytes[i] = (uint8_t)rt_prng_next(p);
        }
        double d;
        memcpy(&d, bytes, sizeof(d));
        float f;
        memcpy(&f, bytes, sizeof(f));
        static const size_t ext_lens[] = {0, 1, 2, 3, 4, 8, 16, 17, 40};
        if (rt_prng_below(p, 3) == 0) {
            msgpack_pack_float(&tpk, f);
        } else if (rt_prng_below(p, 2) == 0) {
            msgpack_pack_double(&tpk, d);
        } else {
            size_t len = ext_lens[rt_prng_below(p, sizeof(ext_lens) / sizeof(ext_lens[0]))];
            msgpack_pack_ext_with_body(&tpk, bytes, len, (int8_t)bytes[0]);
        }
        msgpack_sbuffer_write(pk->data, tmp.data, tmp.size);
        rt_mp_write_raw(w, (const uint8_t *)tmp.data, tmp.size);
        msgpack_sbuffer_destroy(&tmp);
        break;
    }
    case 9:
    case 10: {
        const bool map = rt_prng_below(p, 2) == 1;
        const uint32_t count = (uint32_t)rt_prng_below(p, 18);
        if (map) {
            msgpack_pack_map(pk, count);
            rt_mp_write_map(w, count);
        } else {
            msgpack_pack_array(pk, count);
            rt_mp_write_array(w, count);
        }
        for (uint32_t i = 0; i < count * (map ? 2u : 1u); i++) {
            gen_value(p, depth + 1, pk, w);
        }
        break;
    }
    default:
        fail();
    }
}

/* Walk @obj (decoded by msgpack-c) and our reader side by side. */
static void compare_object(struct rt_mp_reader *r, const msgpack_object *obj)
{
    bool b;
    uint64_t u;
    int64_t i;
    const char *s;
    const uint8_t *bin;
    const uint8_t *raw;
    size_t raw_len;
    uint32_t n;
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        assert_int_equal(rt_mp_read_nil(r), 0);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        assert_int_equal(rt_mp_read_bool(r, &b), 0);
        assert_int_equal(b, obj->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        assert_int_equal(rt_mp_peek(r), RT_MP_UINT);
        assert_int_equal(rt_mp_read_uint(r, &u), 0);
        assert_true(u == obj->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        assert_int_equal(rt_mp_peek(r), RT_MP_INT);
        assert_int_equal(rt_mp_read_int(r, &i), 0);
        assert_true(i == obj->via.i64);
        break;
    case MSGPACK_OBJECT_STR:
        assert_int_equal(rt_mp_read_str(r, &s, &n), 0);
        assert_int_equal(n, obj->via.str.size);
        assert_memory_equal(s, obj->via.str.ptr, n);
        break;
    case MSGPACK_OBJECT_BIN:
        assert_int_equal(rt_mp_read_bin(r, &bin, &n), 0);
        assert_int_equal(n, obj->via.bin.size);
        assert_memory_equal(bin, obj->via.bin.ptr, n);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        assert_int_equal(rt_mp_peek(r), RT_MP_FLOAT);
        assert_int_equal(rt_mp_read_raw(r, &raw, &raw_len), 0);
        assert_int_equal(raw_len, obj->type == MSGPACK_OBJECT_FLOAT32 ? 5 : 9);
        break;
    case MSGPACK_OBJECT_EXT:
        assert_int_equal(rt_mp_peek(r), RT_MP_EXT);
        assert_int_equal(rt_mp_read_raw(r, &raw, &raw_len), 0);
        /* The payload is the last size bytes, after the type byte. */
        assert_true(raw_len >= 2u + obj->via.ext.size);
        assert_int_equal((int8_t)raw[raw_len - obj->via.ext.size - 1], obj->via.ext.type);
        assert_memory_equal(raw + raw_len - obj->via.ext.size, obj->via.ext.ptr, obj->via.ext.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        assert_int_equal(rt_mp_read_array(r, &n), 0);
        assert_int_equal(n, obj->via.array.size);
        for (uint32_t k = 0; k < n; k++) {
            compare_object(r, &obj->via.array.ptr[k]);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        assert_int_equal(rt_mp_read_map(r, &n), 0);
        assert_int_equal(n, obj->via.map.size);
        for (uint32_t k = 0; k < n; k++) {
            compare_object(r, &obj->via.map.ptr[k].key);
            compare_object(r, &obj->via.map.ptr[k].val);
        }
        break;
    default:
        fail_msg("unexpected msgpack-c type %d", (int)obj->type);
    }
}

static void test_cross_random_trees(void **state)
{
    (void)state;
    struct rt_prng p;
    rt_prng_seed(&p, 20240601);
    for (int iter = 0; iter < 500; iter++) {
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        struct rt_buf buf;
        struct rt_mp_writer w;
        mpc_open(&sbuf, &pk);
        writer_open(&buf, &w);
        /* Wrap in an array so that every tree starts with a container. */
        msgpack_pack_array(&pk, 3);
        rt_mp_write_array(&w, 3);
        for (int k = 0; k < 3; k++) {
            gen_value(&p, 1, &pk, &w);
        }
        assert_same_bytes(&buf, &sbuf);
        assert_int_equal(rt_mp_validate(buf.data, buf.len), 0);

        /* Ours decoded by msgpack-c, compared with ours decoding msgpack-c's bytes. */
        msgpack_unpacked u;
        mpc_unpack(&u, buf.data, buf.len);
        struct rt_mp_reader r;
        rt_mp_reader_init(&r, (const uint8_t *)sbuf.data, sbuf.size);
        compare_object(&r, &u.data);
        assert_int_equal(rt_mp_remaining(&r), 0);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sbuf);
        rt_buf_free(&buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nil_bool),
        cmocka_unit_test(test_uint_boundaries),
        cmocka_unit_test(test_int_boundaries),
        cmocka_unit_test(test_int_any_encoding),
        cmocka_unit_test(test_str_boundaries),
        cmocka_unit_test(test_cstr),
        cmocka_unit_test(test_bin_boundaries),
        cmocka_unit_test(test_array_boundaries),
        cmocka_unit_test(test_map_boundaries),
        cmocka_unit_test(test_array32_patch),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_key_is),
        cmocka_unit_test(test_samples),
        cmocka_unit_test(test_sample_values),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_lying_counts),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_wide_and_deep),
        cmocka_unit_test(test_reserved_byte),
        cmocka_unit_test(test_validate_exactly_one),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_utf8_all_code_points),
        cmocka_unit_test(test_writer_sticky),
        cmocka_unit_test(test_writer_length_overflow),
        cmocka_unit_test(test_cross_scalars),
        cmocka_unit_test(test_cross_str_bin),
        cmocka_unit_test(test_cross_containers),
        cmocka_unit_test(test_cross_random_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
