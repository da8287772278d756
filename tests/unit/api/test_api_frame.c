/* Tests for api_frame: hostile lengths (0, max + 1, 4 GiB) refused before any allocation,
 * frames cut at every byte and at every pair of split points, many frames in one chunk (and
 * handed out without a copy), random chunkings of random streams, memory that follows the
 * bytes received, the sticky error, and the encoder round trip.
 *
 * Chunks are malloc'd copies of exactly their length, so that ASan reports any read past a
 * chunk's end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "api_frame.h"
#include "rt_buf.h"
#include "rt_error.h"

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

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

static size_t rng_range(uint64_t *state, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(state) % (uint64_t)(hi - lo + 1));
}

/* Append a frame with @len payload bytes, payload byte i = (seed + i) mod 251. */
static void stream_add(struct rt_buf *stream, uint32_t len, uint8_t seed)
{
    uint8_t header[API_FRAME_HEADER_BYTES];
    rt_put_be32(header, len);
    assert_int_equal(rt_buf_append(stream, header, sizeof(header)), 0);
    assert_int_equal(rt_buf_reserve(stream, len), 0);
    for (uint32_t i = 0; i < len; i++) {
        stream->data[stream->len++] = (uint8_t)((seed + i) % 251u);
    }
}

static void assert_payload(const struct api_frame *frame, uint32_t len, uint8_t seed)
{
    assert_non_null(frame->data);
    assert_int_equal(frame->len, len);
    for (uint32_t i = 0; i < len; i++) {
        if (frame->data[i] != (uint8_t)((seed + i) % 251u)) {
            fail_msg("payload byte %u differs", (unsigned)i);
        }
    }
}

/* Frames expected from a stream, in order. */
struct expect {
    uint32_t len[512];
    uint8_t seed[512];
    size_t count;
    size_t next; /* Frames seen so far. */
};

/* Feed one chunk (copied to an exact-size allocation), looping over the frames it completes;
 * every frame must be the next expected one. */
static void feed_chunk(struct api_frame_decoder *dec, const uint8_t *bytes, size_t len,
                       struct expect *ex)
{
    uint8_t *chunk = dup_exact(bytes, len);
    size_t off = 0;
    for (;;) {
        size_t consumed = 0;
        struct api_frame frame;
        int rv = api_frame_feed(dec, chunk + off, len - off, &consumed, &frame);
        assert_true(consumed <= len - off);
        if (rv == API_FRAME_NEED_MORE) {
            assert_int_equal(consumed, len - off);
            assert_null(frame.data);
            break;
        }
        assert_int_equal(rv, API_FRAME_READY);
        assert_true(ex->next < ex->count);
        assert_payload(&frame, ex->len[ex->next], ex->seed[ex->next]);
        ex->next++;
        off += consumed;
        if (off == len) {
            break;
        }
    }
    free(chunk);
}

/* ---- Hostile lengths ---- */

static void feed_header(struct api_frame_decoder *dec, uint32_t len, int want)
{
    uint8_t header[API_FRAME_HEADER_BYTES];
    rt_put_be32(header, len);
    uint8_t *chunk = dup_exact(header, sizeof(header));
    size_t consumed = 99;
    struct api_frame frame;
    assert_int_equal(api_frame_feed(dec, chunk, sizeof(header), &consumed, &frame), want);
    assert_int_equal(consumed, API_FRAME_HEADER_BYTES);
    assert_null(frame.data);
    free(chunk);
}

/* Once failed, the decoder ignores whatever comes next and repeats the error. */
static void assert_stuck(struct api_frame_decoder *dec, int error)
{
    static const uint8_t good[] = {0, 0, 0, 1, 'x'};
    size_t consumed = 99;
    struct api_frame frame;
    assert_false(api_frame_decoder_idle(dec));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(api_frame_feed(dec, good, sizeof(good), &consumed, &frame), error);
        assert_int_equal(consumed, 0);
        assert_null(frame.data);
    }
    assert_int_equal(api_frame_feed(dec, NULL, 0, &consumed, &frame), error);
}

static void test_length_zero(void **state)
{
    (void)state;
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    feed_header(&dec, 0, RT_EMALFORMED);
    assert_stuck(&dec, RT_EMALFORMED);
    assert_null(dec.body.data);
    api_frame_decoder_free(&dec);
}

static void test_length_max_plus_one(void **state)
{
    (void)state;
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    feed_header(&dec, API_FRAME_BYTES_MAX + 1, RT_ETOOLARGE);
    assert_null(dec.body.data); /* Refused before a byte was allocated. */
    assert_int_equal(dec.body.cap, 0);
    assert_stuck(&dec, RT_ETOOLARGE);
    api_frame_decoder_free(&dec);
}

static void test_length_4gib(void **state)
{
    (void)state;
    /* 0xffffffff, header cut byte by byte, with payload-looking bytes after it. */
    static const uint8_t stream[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    for (size_t i = 0; i < 3; i++) {
        size_t consumed = 0;
        struct api_frame frame;
        assert_int_equal(api_frame_feed(&dec, stream + i, 1, &consumed, &frame),
                         API_FRAME_NEED_MORE);
        assert_int_equal(consumed, 1);
        assert_false(api_frame_decoder_idle(&dec));
    }
    size_t consumed = 0;
    struct api_frame frame;
    assert_int_equal(api_frame_feed(&dec, stream + 3, 4, &consumed, &frame), RT_ETOOLARGE);
    assert_int_equal(consumed, 1);
    assert_null(dec.body.data);
    assert_int_equal(dec.body.cap, 0);
    assert_stuck(&dec, RT_ETOOLARGE);
    api_frame_decoder_free(&dec);

    /* Also with the largest max a decoder can have: 4 GiB - 1 is accepted as a length, and
     * still nothing is allocated until bytes arrive. */
    api_frame_decoder_init(&dec, UINT32_MAX);
    uint8_t header[] = {0xff, 0xff, 0xff, 0xff, 7};
    assert_int_equal(api_frame_feed(&dec, header, sizeof(header), &consumed, &frame),
                     API_FRAME_NEED_MORE);
    assert_int_equal(consumed, sizeof(header));
    assert_true(dec.body.cap <= 256);
    api_frame_decoder_free(&dec);
}

static void test_length_one_and_max(void **state)
{
    (void)state;
    struct expect ex = {.count = 2, .len = {1, API_FRAME_BYTES_MAX}, .seed = {7, 9}};
    struct rt_buf stream;
    rt_buf_init(&stream, 2 * API_FRAME_BYTES_MAX);
    stream_add(&stream, 1, 7);
    stream_add(&stream, API_FRAME_BYTES_MAX, 9);
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    /* In three chunks, the big frame spanning all of them. */
    const size_t cut1 = 100;
    const size_t cut2 = stream.len / 2;
    feed_chunk(&dec, stream.data, cut1, &ex);
    feed_chunk(&dec, stream.data + cut1, cut2 - cut1, &ex);
    assert_int_equal(ex.next, 1);
    feed_chunk(&dec, stream.data + cut2, stream.len - cut2, &ex);
    assert_int_equal(ex.next, 2);
    assert_true(api_frame_decoder_idle(&dec));
    /* The 1 MiB buffer is above API_FRAME_KEEP_BYTES: freed on the next feed. */
    assert_non_null(dec.body.data);
    size_t consumed = 0;
    struct api_frame frame;
    assert_int_equal(api_frame_feed(&dec, NULL, 0, &consumed, &frame), API_FRAME_NEED_MORE);
    assert_null(dec.body.data);
    assert_true(api_frame_decoder_idle(&dec));
    api_frame_decoder_free(&dec);
    rt_buf_free(&stream);
}

static void test_custom_max(void **state)
{
    (void)state;
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, 10);
    struct rt_buf stream;
    rt_buf_init(&stream, 1024);
    stream_add(&stream, 10, 1);
    struct expect ex = {.count = 1, .len = {10}, .seed = {1}};
    feed_chunk(&dec, stream.data, stream.len, &ex);
    assert_int_equal(ex.next, 1);
    feed_header(&dec, 11, RT_ETOOLARGE);
    api_frame_decoder_free(&dec);
    rt_buf_free(&stream);
}

/* ---- Chunking ---- */

static void test_empty_feed(void **state)
{
    (void)state;
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    size_t consumed = 99;
    struct api_frame frame = {.data = (const uint8_t *)"x", .len = 1};
    assert_int_equal(api_frame_feed(&dec, NULL, 0, &consumed, &frame), API_FRAME_NEED_MORE);
    assert_int_equal(consumed, 0);
    assert_null(frame.data);
    assert_int_equal(frame.len, 0);
    assert_true(api_frame_decoder_idle(&dec));
    api_frame_decoder_free(&dec);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    struct rt_buf stream;
    rt_buf_init(&stream, 4096);
    stream_add(&stream, 300, 3);
    stream_add(&stream, 1, 4);
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    size_t frames = 0;
    for (size_t i = 0; i < stream.len; i++) {
        uint8_t *one = dup_exact(stream.data + i, 1);
        size_t consumed = 0;
        struct api_frame frame;
        const int rv = api_frame_feed(&dec, one, 1, &consumed, &frame);
        assert_int_equal(consumed, 1);
        if (i == 303 || i == 308) {
            assert_int_equal(rv, API_FRAME_READY);
            /* Assembled across chunks: the view is the decoder's buffer. */
            assert_ptr_equal(frame.data, dec.body.data);
            assert_payload(&frame, i == 303 ? 300 : 1, i == 303 ? 3 : 4);
            assert_true(api_frame_decoder_idle(&dec));
            frames++;
        } else {
            assert_int_equal(rv, API_FRAME_NEED_MORE);
            assert_false(api_frame_decoder_idle(&dec));
        }
        free(one);
    }
    assert_int_equal(frames, 2);
    api_frame_decoder_free(&dec);
    rt_buf_free(&stream);
}

static void test_pipelined_one_chunk(void **state)
{
    (void)state;
    struct rt_buf stream;
    rt_buf_init(&stream, 1u << 20);
    struct expect ex = {.count = 300};
    for (size_t i = 0; i < ex.count; i++) {
        ex.len[i] = (uint32_t)(i % 37 + 1);
        ex.seed[i] = (uint8_t)i;
        stream_add(&stream, ex.len[i], ex.seed[i]);
    }
    uint8_t *chunk = dup_exact(stream.data, stream.len);
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    size_t off = 0;
    while (off < stream.len) {
        size_t consumed = 0;
        struct api_frame frame;
        assert_int_equal(api_frame_feed(&dec, chunk + off, stream.len - off, &consumed, &frame),
                         API_FRAME_READY);
        /* Whole in the chunk: a view into it, nothing copied or allocated. */
        assert_true(frame.data == chunk + off + API_FRAME_HEADER_BYTES);
        assert_int_equal(consumed, API_FRAME_HEADER_BYTES + frame.len);
        assert_payload(&frame, ex.len[ex.next], ex.seed[ex.next]);
        ex.next++;
        off += consumed;
    }
    assert_int_equal(ex.next, ex.count);
    assert_null(dec.body.data);
    free(chunk);
    api_frame_decoder_free(&dec);
    rt_buf_free(&stream);
}

/* A stream of three frames, cut into three chunks at every pair of points. */
static void test_split_everywhere(void **state)
{
    (void)state;
    struct rt_buf stream;
    rt_buf_init(&stream, 4096);
    const struct expect proto = {.count = 3, .len = {1, 5, 200}, .seed = {10, 20, 30}};
    for (size_t i = 0; i < proto.count; i++) {
        stream_add(&stream, proto.len[i], proto.seed[i]);
    }
    for (size_t a = 0; a <= stream.len; a++) {
        for (size_t b = a; b <= stream.len; b += (b < 16 || stream.len - b < 16) ? 1 : 7) {
            struct expect ex = proto;
            struct api_frame_decoder dec;
            api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
            feed_chunk(&dec, stream.data, a, &ex);
            feed_chunk(&dec, stream.data + a, b - a, &ex);
            feed_chunk(&dec, stream.data + b, stream.len - b, &ex);
            assert_int_equal(ex.next, ex.count);
            assert_true(api_frame_decoder_idle(&dec));
            api_frame_decoder_free(&dec);
        }
    }
    rt_buf_free(&stream);
}

static void test_random_chunkings(void **state)
{
    (void)state;
    uint64_t rng = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 40; round++) {
        struct rt_buf stream;
        rt_buf_init(&stream, 64u << 20);
        struct expect ex = {.count = rng_range(&rng, 1, 512)};
        for (size_t i = 0; i < ex.count; i++) {
            /* Mostly small, sometimes large, now and then the largest. */
            const uint64_t pick = rng_next(&rng) % 100;
            ex.len[i] = pick < 80   ? (uint32_t)rng_range(&rng, 1, 200)
                        : pick < 98 ? (uint32_t)rng_range(&rng, 201, 70000)
                                    : API_FRAME_BYTES_MAX;
            ex.seed[i] = (uint8_t)rng_next(&rng);
            stream_add(&stream, ex.len[i], ex.seed[i]);
        }
        struct api_frame_decoder dec;
        api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
        const size_t chunk_max = rng_range(&rng, 1, 100000);
        size_t off = 0;
        while (off < stream.len) {
            size_t n = rng_range(&rng, 1, chunk_max);
            if (n > stream.len - off) {
                n = stream.len - off;
            }
            feed_chunk(&dec, stream.data + off, n, &ex);
            off += n;
            /* Memory never exceeds the frame being assembled. */
            assert_true(dec.body.cap <= API_FRAME_BYTES_MAX);
        }
        assert_int_equal(ex.next, ex.count);
        assert_true(api_frame_decoder_idle(&dec));
        api_frame_decoder_free(&dec);
        rt_buf_free(&stream);
    }
}

/* A header that promises 1 MiB costs what actually arrived, not what was promised. */
static void test_memory_follows_bytes(void **state)
{
    (void)state;
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    uint8_t head[API_FRAME_HEADER_BYTES + 10] = {0};
    rt_put_be32(head, API_FRAME_BYTES_MAX);
    size_t consumed = 0;
    struct api_frame frame;
    assert_int_equal(api_frame_feed(&dec, head, sizeof(head), &consumed, &frame),
                     API_FRAME_NEED_MORE);
    assert_int_equal(dec.body.len, 10);
    assert_true(dec.body.cap <= 256);
    static uint8_t more[100 * 1024];
    assert_int_equal(api_frame_feed(&dec, more, sizeof(more), &consumed, &frame),
                     API_FRAME_NEED_MORE);
    assert_int_equal(dec.body.len, 10 + sizeof(more));
    assert_true(dec.body.cap <= 2 * dec.body.len);
    api_frame_decoder_free(&dec);
}

/* A small frame assembled in the buffer leaves it allocated for the next one. */
static void test_keeps_small_buffer(void **state)
{
    (void)state;
    struct rt_buf stream;
    rt_buf_init(&stream, 4096);
    stream_add(&stream, 1000, 1);
    stream_add(&stream, 1000, 2);
    struct expect ex = {.count = 2, .len = {1000, 1000}, .seed = {1, 2}};
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    feed_chunk(&dec, stream.data, 500, &ex);
    feed_chunk(&dec, stream.data + 500, 504, &ex);
    assert_int_equal(ex.next, 1);
    const uint8_t *buffer = dec.body.data;
    const size_t cap = dec.body.cap;
    feed_chunk(&dec, stream.data + 1004, 600, &ex);
    assert_ptr_equal(dec.body.data, buffer);
    assert_int_equal(dec.body.cap, cap);
    feed_chunk(&dec, stream.data + 1604, stream.len - 1604, &ex);
    assert_int_equal(ex.next, 2);
    api_frame_decoder_free(&dec);
    rt_buf_free(&stream);
}

/* Good frames before a bad header in the same chunk all come out, then the error. */
static void test_error_after_frames(void **state)
{
    (void)state;
    struct rt_buf stream;
    rt_buf_init(&stream, 4096);
    stream_add(&stream, 3, 1);
    stream_add(&stream, 4, 2);
    static const uint8_t zero[API_FRAME_HEADER_BYTES] = {0};
    assert_int_equal(rt_buf_append(&stream, zero, sizeof(zero)), 0);
    stream_add(&stream, 5, 3); /* Never reached. */
    uint8_t *chunk = dup_exact(stream.data, stream.len);
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    size_t off = 0;
    size_t consumed = 0;
    struct api_frame frame;
    assert_int_equal(api_frame_feed(&dec, chunk, stream.len, &consumed, &frame), API_FRAME_READY);
    assert_payload(&frame, 3, 1);
    off += consumed;
    assert_int_equal(api_frame_feed(&dec, chunk + off, stream.len - off, &consumed, &frame),
                     API_FRAME_READY);
    assert_payload(&frame, 4, 2);
    off += consumed;
    assert_int_equal(api_frame_feed(&dec, chunk + off, stream.len - off, &consumed, &frame),
                     RT_EMALFORMED);
    assert_int_equal(consumed, API_FRAME_HEADER_BYTES);
    assert_stuck(&dec, RT_EMALFORMED);
    free(chunk);
    api_frame_decoder_free(&dec);
    rt_buf_free(&stream);
}

/* ---- Encoder ---- */

static void test_encode_round_trip(void **state)
{
    (void)state;
    struct rt_buf out;
    rt_buf_init(&out, 2 * API_FRAME_BYTES_MAX + 64);
    /* Something already in the buffer: frames are appended after it. */
    assert_int_equal(rt_buf_append(&out, "xyz", 3), 0);
    size_t start = 0;
    assert_int_equal(api_frame_begin(&out, &start), 0);
    assert_int_equal(start, 3);
    assert_int_equal(rt_buf_append(&out, "hello", 5), 0);
    assert_int_equal(api_frame_finish(&out, start), 0);
    assert_int_equal(out.len, 3 + 4 + 5);
    assert_int_equal(rt_get_be32(out.data + 3), 5);

    /* The largest payload is accepted. */
    assert_int_equal(api_frame_begin(&out, &start), 0);
    assert_int_equal(rt_buf_reserve(&out, API_FRAME_BYTES_MAX), 0);
    memset(out.data + out.len, 'a', API_FRAME_BYTES_MAX);
    out.len += API_FRAME_BYTES_MAX;
    assert_int_equal(api_frame_finish(&out, start), 0);
    assert_int_equal(rt_get_be32(out.data + start), API_FRAME_BYTES_MAX);

    /* Decoding gives the payloads back. */
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    size_t consumed = 0;
    struct api_frame frame;
    assert_int_equal(api_frame_feed(&dec, out.data + 3, out.len - 3, &consumed, &frame),
                     API_FRAME_READY);
    assert_int_equal(frame.len, 5);
    assert_memory_equal(frame.data, "hello", 5);
    const size_t off = 3 + consumed;
    assert_int_equal(api_frame_feed(&dec, out.data + off, out.len - off, &consumed, &frame),
                     API_FRAME_READY);
    assert_int_equal(frame.len, API_FRAME_BYTES_MAX);
    assert_int_equal(off + consumed, out.len);
    api_frame_decoder_free(&dec);
    rt_buf_free(&out);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct rt_buf out;
    rt_buf_init(&out, 2 * API_FRAME_BYTES_MAX + 64);
    assert_int_equal(rt_buf_append(&out, "ab", 2), 0);
    size_t start = 0;

    /* Empty payload: no frame may be empty; the prefix is taken back. */
    assert_int_equal(api_frame_begin(&out, &start), 0);
    assert_int_equal(api_frame_finish(&out, start), RT_EINVAL);
    assert_int_equal(out.len, 2);

    /* One byte too many. */
    assert_int_equal(api_frame_begin(&out, &start), 0);
    assert_int_equal(rt_buf_reserve(&out, API_FRAME_BYTES_MAX + 1), 0);
    memset(out.data + out.len, 'b', API_FRAME_BYTES_MAX + 1);
    out.len += API_FRAME_BYTES_MAX + 1;
    assert_int_equal(api_frame_finish(&out, start), RT_ETOOLARGE);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "ab", 2);
    rt_buf_free(&out);

    /* No room for the prefix: the buffer is left alone. */
    struct rt_buf tiny;
    rt_buf_init(&tiny, 5);
    assert_int_equal(rt_buf_append(&tiny, "abc", 3), 0);
    start = 77;
    assert_int_equal(api_frame_begin(&tiny, &start), RT_ETOOLARGE);
    assert_int_equal(tiny.len, 3);
    assert_int_equal(start, 77);
    rt_buf_free(&tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_zero),          cmocka_unit_test(test_length_max_plus_one),
        cmocka_unit_test(test_length_4gib),          cmocka_unit_test(test_length_one_and_max),
        cmocka_unit_test(test_custom_max),           cmocka_unit_test(test_empty_feed),
        cmocka_unit_test(test_byte_by_byte),         cmocka_unit_test(test_pipelined_one_chunk),
        cmocka_unit_test(test_split_everywhere),     cmocka_unit_test(test_random_chunkings),
        cmocka_unit_test(test_memory_follows_bytes), cmocka_unit_test(test_keeps_small_buffer),
        cmocka_unit_test(test_error_after_frames),   cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_encode_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
