/* libFuzzer target for rt_mp.
 *
 * Every input: walk it value by value with rt_mp_skip (a failed skip must leave the reader
 * where it was) and run rt_utf8_valid over it. Inputs that rt_mp_validate accepts are then:
 * - decoded by msgpack-c too (it must agree that this is exactly one value; it is safe to run
 *   here because our validation has bounded every count by the input size and the depth by
 *   RT_MP_DEPTH_MAX);
 * - walked with rt_mp_peek and the typed reads, trying every read of the wrong type first
 *   (each must fail without moving), and re-encoded through the writer into a buffer whose max
 *   is the input size: smallest encodings never need more room than the input had;
 * - checked for a fixed point: re-encoding the re-encoding gives the same bytes, and msgpack-c
 *   packs the input and our re-encoding to the same bytes (same values).
 */
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
        abort();
    }
}

/* Whether @op reads a value of @type (read_int also takes a UINT, checked by the caller). */
static bool op_reads(enum op op, enum rt_mp_type type)
{
    static const enum rt_mp_type reads[OP_COUNT] = {
        [OP_NIL] = RT_MP_NIL,     [OP_BOOL] = RT_MP_BOOL, [OP_UINT] = RT_MP_UINT,
        [OP_INT] = RT_MP_INT,     [OP_STR] = RT_MP_STR,   [OP_BIN] = RT_MP_BIN,
        [OP_ARRAY] = RT_MP_ARRAY, [OP_MAP] = RT_MP_MAP,
    };
    return reads[op] == type || (op == OP_INT && type == RT_MP_UINT);
}

/* Every read of another type must refuse the next value and leave the reader alone. */
static void probe_wrong_reads(struct rt_mp_reader *r, enum rt_mp_type type)
{
    const uint8_t *pos = r->pos;
    for (enum op op = 0; op < OP_COUNT; op++) {
        if (op_reads(op, type)) {
            continue;
        }
        FUZZ_CHECK(do_op(op, r) == RT_EMALFORMED);
        FUZZ_CHECK(r->pos == pos);
    }
}

/* Consume one value from @r and write it to @w. @depth containers are open around it. */
static void reencode(struct rt_mp_reader *r, struct rt_mp_writer *w, unsigned depth)
{
    const enum rt_mp_type type = rt_mp_peek(r);
    probe_wrong_reads(r, type);
    bool b;
    uint64_t u;
    int64_t i;
    const char *s;
    const uint8_t *p;
    size_t len;
    uint32_t n;
    switch (type) {
    case RT_MP_NIL:
        FUZZ_CHECK(rt_mp_read_nil(r) == 0);
        rt_mp_write_nil(w);
        break;
    case RT_MP_BOOL:
        FUZZ_CHECK(rt_mp_read_bool(r, &b) == 0);
        rt_mp_write_bool(w, b);
        break;
    case RT_MP_UINT: {
        struct rt_mp_reader copy = *r;
        const int rv = rt_mp_read_int(&copy, &i);
        FUZZ_CHECK(rt_mp_read_uint(r, &u) == 0);
        FUZZ_CHECK(rv == (u <= (uint64_t)INT64_MAX ? 0 : RT_EMALFORMED));
        FUZZ_CHECK(rv != 0 || ((uint64_t)i == u && copy.pos == r->pos));
        rt_mp_write_uint(w, u);
        break;
    }
    case RT_MP_INT:
        FUZZ_CHECK(rt_mp_read_int(r, &i) == 0);
        FUZZ_CHECK(i < 0);
        rt_mp_write_int(w, i);
        break;
    case RT_MP_STR:
        FUZZ_CHECK(rt_mp_read_str(r, &s, &n) == 0);
        FUZZ_CHECK(rt_mp_key_is(s, n, "amount") == (n == 6 && memcmp(s, "amount", 6) == 0));
        (void)rt_utf8_valid(s, n);
        rt_mp_write_str(w, s, n);
        break;
    case RT_MP_BIN:
        FUZZ_CHECK(rt_mp_read_bin(r, &p, &n) == 0);
        rt_mp_write_bin(w, p, n);
        break;
    case RT_MP_ARRAY:
    case RT_MP_MAP: {
        FUZZ_CHECK(depth < RT_MP_DEPTH_MAX); /* rt_mp_validate bounded the depth. */
        const bool map = type == RT_MP_MAP;
        FUZZ_CHECK((map ? rt_mp_read_map(r, &n) : rt_mp_read_array(r, &n)) == 0);
        FUZZ_CHECK((uint64_t)n * (map ? 2u : 1u) <= rt_mp_remaining(r));
        if (map) {
            rt_mp_write_map(w, n);
        } else {
            rt_mp_write_array(w, n);
        }
        for (uint64_t k = 0; k < (uint64_t)n * (map ? 2u : 1u); k++) {
            reencode(r, w, depth + 1);
        }
        break;
    }
    case RT_MP_FLOAT:
    case RT_MP_EXT:
        /* The writer has no call for these: copy them through. */
        FUZZ_CHECK(rt_mp_read_raw(r, &p, &len) == 0);
        rt_mp_write_raw(w, p, len);
        break;
    default:
        FUZZ_CHECK(false); /* A validated value never peeks RT_MP_INVALID. */
    }
}

/* Re-encode the single value in @data into @buf (max @max); fails the run on any error. */
static void reencode_all(const uint8_t *data, size_t size, struct rt_buf *buf, size_t max)
{
    struct rt_mp_writer w;
    struct rt_mp_reader r;
    rt_buf_init(buf, max);
    rt_mp_writer_init(&w, buf);
    rt_mp_reader_init(&r, data, size);
    reencode(&r, &w, 0);
    FUZZ_CHECK(rt_mp_remaining(&r) == 0);
    FUZZ_CHECK(rt_mp_writer_error(&w) == 0);
    FUZZ_CHECK(buf->len <= size);
}

/* msgpack-c decodes @data as exactly one value and packs it back into @sbuf. */
static void mpc_canonical(const uint8_t *data, size_t size, msgpack_sbuffer *sbuf)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    FUZZ_CHECK(msgpack_unpack_next(&u, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK(off == size);
    msgpack_packer pk;
    msgpack_sbuffer_init(sbuf);
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    FUZZ_CHECK(msgpack_pack_object(&pk, u.data) == 0);
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)rt_utf8_valid((const char *)data, size);

    /* Any input: a sequence of values, as far as they go. */
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, size);
    while (rt_mp_remaining(&r) > 0) {
        const uint8_t *before = r.pos;
        const enum rt_mp_type type = rt_mp_peek(&r);
        if (rt_mp_skip(&r) != 0) {
            FUZZ_CHECK(r.pos == before);
            break;
        }
        FUZZ_CHECK(type != RT_MP_INVALID);
        FUZZ_CHECK(r.pos > before);
    }

    if (rt_mp_validate(data, size) != 0) {
        return 0;
    }
    FUZZ_CHECK(size > 0);

    struct rt_buf once;
    struct rt_buf twice;
    reencode_all(data, size, &once, size);
    FUZZ_CHECK(rt_mp_validate(once.data, once.len) == 0);
    reencode_all(once.data, once.len, &twice, once.len);
    FUZZ_CHECK(twice.len == once.len && memcmp(twice.data, once.data, once.len) == 0);

    msgpack_sbuffer from_input;
    msgpack_sbuffer from_ours;
    mpc_canonical(data, size, &from_input);
    mpc_canonical(once.data, once.len, &from_ours);
    FUZZ_CHECK(from_input.size == from_ours.size);
    FUZZ_CHECK(memcmp(from_input.data, from_ours.data, from_input.size) == 0);

    msgpack_sbuffer_destroy(&from_input);
    msgpack_sbuffer_destroy(&from_ours);
    rt_buf_free(&once);
    rt_buf_free(&twice);
    return 0;
}
