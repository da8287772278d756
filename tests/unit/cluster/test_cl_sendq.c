/* Tests for cl_sendq: coalesced writes to a libuv stream, flushed once per loop turn.
 *
 * No network: every queue writes into one end of a socketpair(AF_UNIX, SOCK_STREAM) opened
 * with uv_pipe_open, and the other end (also a uv_pipe) reads everything into a buffer that is
 * compared byte for byte with what was pushed. Every wait drives the uv loop with a deadline: a
 * test fails, it never hangs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "cl_sendq.h"
#include "rt_error.h"
#include "test_support.h"

#define TEST_WAIT_MS    10000u /* Watchdog of every wait. */
#define TEST_CHANS_MAX  3
#define TEST_READ_CHUNK (64u * 1024u)
#define TEST_BIG_BYTES  (8u * 1024u * 1024u) /* Far more than a socket buffer. */
#define TEST_KEEP_BYTES (256u * 1024u)       /* SENDQ_KEEP_BYTES in cl_sendq.c. */

struct world;

/* One queue, the socketpair it writes into, and what its reader received. */
struct chan {
    struct world *w;
    uv_pipe_t writer;
    uv_pipe_t reader;
    bool writer_closed;
    bool reader_closed;
    struct cl_sendq q;
    uint8_t chunk[TEST_READ_CHUNK];
    uint8_t *got;
    size_t got_len;
    size_t got_cap;
    int read_status; /* First negative nread (UV_EOF, an error), 0 while none. */
    int drained_calls;
    int drained_status;    /* Of the last call. */
    bool in_drained;       /* The callback is running (it must not be re-entered). */
    int drained_at_close;  /* drained_calls when the writer's close callback ran. */
    bool busy_at_close;    /* cl_sendq_busy() when the writer's close callback ran. */
    int repush_left;       /* Pushes the drained callback still makes (test_push_from_drained). */
    const uint8_t *repush; /* Source of those pushes. */
    size_t repush_len;     /* Bytes per push. */
    size_t repush_done;    /* Bytes pushed by the callback so far. */
};

struct world {
    uv_loop_t loop;
    uv_timer_t tick; /* Keeps uv_run(UV_RUN_ONCE) returning so deadlines are checked. */
    struct cl_flusher flusher;
    bool flusher_closed;
    int nchans;
    struct chan chans[TEST_CHANS_MAX];
};

/* ---- Data ---- */

/* A pattern without short periods (251 is prime), different per @seed. */
static uint8_t pattern_byte(size_t i, unsigned seed)
{
    return (uint8_t)((i * 131u + (i >> 16) * 7u + seed * 17u) % 251u);
}

static void pattern_fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = pattern_byte(i, seed);
    }
}

/* ---- Loop driving ---- */

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

typedef bool (*pred_fn)(void *arg);

static bool run_until(struct world *w, pred_fn pred, void *arg, unsigned timeout_ms)
{
    return test_run_until(&w->loop, pred, arg, timeout_ms);
}

static bool pred_false(void *arg)
{
    (void)arg;
    return false;
}

/* Run the loop for about @ms (for "nothing else happens" checks). */
static void run_for(struct world *w, unsigned ms)
{
    assert_false(run_until(w, pred_false, NULL, ms));
}

struct got_and_drained {
    const struct chan *c;
    size_t bytes;
    int drained;
};

static bool pred_got_and_drained(void *arg)
{
    const struct got_and_drained *p = arg;
    return p->c->got_len >= p->bytes && p->c->drained_calls >= p->drained;
}

/* Wait until @c's reader has at least @bytes and its drained callback ran @drained times. */
static void wait_got(struct world *w, const struct chan *c, size_t bytes, int drained)
{
    struct got_and_drained p = {c, bytes, drained};
    assert_true(run_until(w, pred_got_and_drained, &p, TEST_WAIT_MS));
}

static bool pred_bool(void *arg)
{
    return *(const bool *)arg;
}

static void wait_bool(struct world *w, const bool *flag)
{
    assert_true(run_until(w, pred_bool, (void *)flag, TEST_WAIT_MS));
}

/* ---- Callbacks ---- */

static void chan_drained(struct cl_sendq *q, int status)
{
    struct chan *c = q->data;
    assert_ptr_equal(q, &c->q);
    assert_false(c->in_drained);
    c->in_drained = true;
    c->drained_calls++;
    c->drained_status = status;
    if (status == 0 && c->repush_left > 0) {
        c->repush_left--;
        /* A push from the callback is queued, never written (or called back) inside push. */
        int calls = c->drained_calls;
        assert_int_equal(cl_sendq_push(q, c->repush + c->repush_done, c->repush_len), 0);
        assert_int_equal(c->drained_calls, calls);
        c->repush_done += c->repush_len;
    }
    c->in_drained = false;
}

static void reader_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct chan *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init((char *)c->chunk, sizeof(c->chunk));
}

static void reader_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct chan *c = stream->data;
    if (nread < 0) {
        if (c->read_status == 0) {
            c->read_status = (int)nread;
        }
        uv_read_stop(stream);
        return;
    }
    size_t n = (size_t)nread;
    if (c->got_len + n > c->got_cap) {
        size_t cap = c->got_cap == 0 ? 4096 : c->got_cap;
        while (cap < c->got_len + n) {
            cap *= 2;
        }
        uint8_t *got = realloc(c->got, cap);
        assert_non_null(got);
        c->got = got;
        c->got_cap = cap;
    }
    memcpy(c->got + c->got_len, buf->base, n);
    c->got_len += n;
}

static void reader_closed_cb(uv_handle_t *handle)
{
    struct chan *c = handle->data;
    c->reader_closed = true;
}

static void writer_closed_cb(uv_handle_t *handle)
{
    struct chan *c = handle->data;
    c->writer_closed = true;
    c->drained_at_close = c->drained_calls;
    c->busy_at_close = cl_sendq_busy(&c->q);
}

static void flusher_closed_cb(uv_handle_t *handle)
{
    struct world *w = handle->data;
    w->flusher_closed = true;
}

/* ---- World ---- */

static struct world *world_open(int nchans, size_t max_bytes)
{
    assert_true(nchans >= 1 && nchans <= TEST_CHANS_MAX);
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->nchans = nchans;
    assert_int_equal(uv_loop_init(&w->loop), 0);
    assert_int_equal(uv_timer_init(&w->loop, &w->tick), 0);
    assert_int_equal(uv_timer_start(&w->tick, tick_cb, 2, 2), 0);
    cl_flusher_init(&w->flusher, &w->loop);
    assert_false(uv_is_active((uv_handle_t *)&w->flusher.prepare)); /* Idle until a push. */
    w->flusher.prepare.data = w;
    assert_null(w->flusher.head);
    for (int i = 0; i < nchans; i++) {
        struct chan *c = &w->chans[i];
        int fds[2];
        c->w = w;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        assert_int_equal(uv_pipe_init(&w->loop, &c->writer, 0), 0);
        assert_int_equal(uv_pipe_open(&c->writer, fds[0]), 0);
        assert_int_equal(uv_pipe_init(&w->loop, &c->reader, 0), 0);
        assert_int_equal(uv_pipe_open(&c->reader, fds[1]), 0);
        c->writer.data = c;
        c->reader.data = c;
        cl_sendq_init(&c->q, &w->flusher, (uv_stream_t *)&c->writer, max_bytes, chan_drained, c);
        assert_false(cl_sendq_busy(&c->q));
        assert_int_equal(cl_sendq_bytes(&c->q), 0);
    }
    return w;
}

static void reader_start(struct chan *c)
{
    assert_int_equal(uv_read_start((uv_stream_t *)&c->reader, reader_alloc, reader_read), 0);
}

static void reader_close(struct world *w, struct chan *c)
{
    uv_close((uv_handle_t *)&c->reader, reader_closed_cb);
    wait_bool(w, &c->reader_closed);
}

/* Cancel every queue, close every handle, and check the loop closes (nothing leaked). */
static void world_close(struct world *w)
{
    for (int i = 0; i < w->nchans; i++) {
        struct chan *c = &w->chans[i];
        cl_sendq_cancel(&c->q);
        if (!uv_is_closing((uv_handle_t *)&c->writer)) {
            uv_close((uv_handle_t *)&c->writer, writer_closed_cb);
        }
        if (!uv_is_closing((uv_handle_t *)&c->reader)) {
            uv_close((uv_handle_t *)&c->reader, reader_closed_cb);
        }
    }
    if (!uv_is_closing((uv_handle_t *)&w->flusher.prepare)) {
        cl_flusher_close(&w->flusher, flusher_closed_cb);
    }
    uv_close((uv_handle_t *)&w->tick, NULL);
    uint64_t deadline = uv_hrtime() + (uint64_t)TEST_WAIT_MS * 1000000u;
    while (uv_loop_alive(&w->loop) && uv_hrtime() < deadline) {
        uv_run(&w->loop, UV_RUN_NOWAIT);
    }
    assert_false(uv_loop_alive(&w->loop));
    assert_int_equal(uv_loop_close(&w->loop), 0); /* Every handle was closed. */
    assert_true(w->flusher_closed);
    for (int i = 0; i < w->nchans; i++) {
        struct chan *c = &w->chans[i];
        assert_true(c->writer_closed);
        assert_true(c->reader_closed);
        assert_false(cl_sendq_busy(&c->q));
        cl_sendq_free(&c->q);
        free(c->got);
    }
    free(w);
}

static int flusher_list_len(const struct cl_flusher *f)
{
    int n = 0;
    const struct cl_sendq *prev = NULL;
    for (const struct cl_sendq *q = f->head; q != NULL; q = q->next) {
        assert_true(q->scheduled);
        assert_ptr_equal(q->prev, prev); /* Doubly linked both ways. */
        prev = q;
        n++;
    }
    return n;
}

static bool flusher_has(const struct cl_flusher *f, const struct cl_sendq *target)
{
    for (const struct cl_sendq *q = f->head; q != NULL; q = q->next) {
        if (q == target) {
            return true;
        }
    }
    return false;
}

static bool flusher_active(struct world *w)
{
    return uv_is_active((uv_handle_t *)&w->flusher.prepare) != 0;
}

/* Push @big (TEST_BIG_BYTES) and run one loop turn: the socket takes part of it, the rest
 * goes into one uv_write that stays in flight (nobody reads). Returns the bytes in flight. */
static size_t push_big_one_turn(struct world *w, struct chan *c, const uint8_t *big)
{
    assert_int_equal(cl_sendq_push(&c->q, big, TEST_BIG_BYTES), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), TEST_BIG_BYTES);
    assert_true(cl_sendq_busy(&c->q));
    uv_run(&w->loop, UV_RUN_NOWAIT);
    size_t in_flight = cl_sendq_bytes(&c->q);
    assert_true(in_flight > 0);
    assert_true(in_flight < TEST_BIG_BYTES); /* uv_try_write took a part. */
    assert_int_equal(c->q.writing, in_flight);
    assert_int_equal(c->q.queued.len, 0);
    assert_true(cl_sendq_busy(&c->q));
    assert_int_equal(c->drained_calls, 0);
    assert_null(w->flusher.head); /* A queue with a write in flight is not on the list. */
    assert_false(flusher_active(w));
    return in_flight;
}

/* ---- Tests ---- */

/* Many pushes in one loop turn leave in one flush, in order, byte for byte. */
static void test_many_pushes_one_turn(void **state)
{
    (void)state;
    struct world *w = world_open(1, 1024u * 1024u);
    struct chan *c = &w->chans[0];
    reader_start(c);

    enum { PUSHES = 1000 };
    size_t cap = PUSHES * 64u;
    uint8_t *expect = malloc(cap);
    assert_non_null(expect);
    size_t n = 0;
    for (int i = 0; i < PUSHES; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof(msg), "message %d of %d%s;", i, PUSHES,
                           i % 3 == 0 ? "" : (i % 3 == 1 ? " (x)" : " (yy)"));
        assert_true(len > 0 && (size_t)len < sizeof(msg));
        assert_int_equal(cl_sendq_push(&c->q, msg, (size_t)len), 0);
        memcpy(expect + n, msg, (size_t)len);
        n += (size_t)len;
        assert_int_equal(cl_sendq_bytes(&c->q), n);
    }
    /* Nothing left yet: the flush happens in the loop, and push never calls back. */
    assert_true(cl_sendq_busy(&c->q));
    assert_int_equal(c->drained_calls, 0);
    assert_ptr_equal(w->flusher.head, &c->q);
    assert_int_equal(flusher_list_len(&w->flusher), 1);
    assert_true(flusher_active(w));

    wait_got(w, c, n, 1);
    assert_int_equal(c->got_len, n);
    assert_memory_equal(c->got, expect, n);
    assert_int_equal(c->drained_calls, 1); /* One flush for all of them. */
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    assert_null(w->flusher.head);
    assert_false(flusher_active(w));

    /* Nothing else arrives, and the queue is reusable. */
    run_for(w, 30);
    assert_int_equal(c->got_len, n);
    assert_int_equal(c->drained_calls, 1);
    assert_int_equal(cl_sendq_push(&c->q, "again", 5), 0);
    assert_true(cl_sendq_busy(&c->q));
    wait_got(w, c, n + 5, 2);
    assert_int_equal(c->got_len, n + 5);
    assert_memory_equal(c->got + n, "again", 5);
    assert_int_equal(c->drained_calls, 2);
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));

    free(expect);
    world_close(w);
}

/* cl_sendq_push2 puts both pieces back to back, between what was pushed before and after. */
static void test_push2(void **state)
{
    (void)state;
    struct world *w = world_open(1, 4096);
    struct chan *c = &w->chans[0];
    reader_start(c);

    const uint8_t header[8] = {0x00, 0x00, 0x00, 0x05, 0xff, 0x00, 0x01, 0x02};
    assert_int_equal(cl_sendq_push2(&c->q, "HDR1", 4, "first message", 13), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), 17);
    assert_int_equal(cl_sendq_push(&c->q, "|", 1), 0);
    assert_int_equal(cl_sendq_push2(&c->q, header, sizeof(header), "hello", 5), 0);
    assert_int_equal(cl_sendq_push2(&c->q, "H2", 2, "", 0), 0);
    assert_int_equal(cl_sendq_push2(&c->q, NULL, 0, "only-b", 6), 0);
    assert_int_equal(cl_sendq_push(&c->q, "|end", 4), 0);

    uint8_t expect[64];
    size_t n = 0;
    memcpy(expect + n, "HDR1first message|", 18);
    n += 18;
    memcpy(expect + n, header, sizeof(header));
    n += sizeof(header);
    memcpy(expect + n, "helloH2only-b|end", 17);
    n += 17;
    assert_int_equal(n, 43);
    assert_int_equal(cl_sendq_bytes(&c->q), n);
    assert_int_equal(c->drained_calls, 0);

    wait_got(w, c, n, 1);
    assert_int_equal(c->got_len, n);
    assert_memory_equal(c->got, expect, n);
    assert_int_equal(c->drained_calls, 1);
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    world_close(w);
}

/* A push past max_bytes is refused whole (RT_EUNAVAIL) and queues nothing. */
static void test_limit(void **state)
{
    (void)state;
    struct world *w = world_open(1, 100);
    struct chan *c = &w->chans[0];

    uint8_t a[101], b[101], d[101];
    pattern_fill(a, sizeof(a), 1);
    pattern_fill(b, sizeof(b), 2);
    pattern_fill(d, sizeof(d), 3);

    assert_int_equal(cl_sendq_push(&c->q, a, 101), RT_EUNAVAIL); /* Never fits. */
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    assert_false(cl_sendq_busy(&c->q));

    assert_int_equal(cl_sendq_push2(&c->q, a, 30, b, 30), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), 60);
    /* The first piece alone would fit: both or neither. */
    assert_int_equal(cl_sendq_push2(&c->q, a + 30, 30, b + 30, 11), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_bytes(&c->q), 60);
    assert_int_equal(cl_sendq_push(&c->q, a, 41), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_bytes(&c->q), 60);
    assert_int_equal(cl_sendq_push(&c->q, d, 40), 0); /* Exactly full. */
    assert_int_equal(cl_sendq_bytes(&c->q), 100);
    assert_int_equal(cl_sendq_push(&c->q, d, 1), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_push2(&c->q, NULL, 0, d, 1), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_push2(&c->q, d, 1, NULL, 0), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_bytes(&c->q), 100);
    assert_int_equal(c->q.queued.len, 100);
    assert_int_equal(c->drained_calls, 0);

    uint8_t expect[200];
    memcpy(expect, a, 30);
    memcpy(expect + 30, b, 30);
    memcpy(expect + 60, d, 40);

    reader_start(c);
    wait_got(w, c, 100, 1);
    assert_int_equal(c->got_len, 100);
    assert_memory_equal(c->got, expect, 100);
    assert_int_equal(c->drained_calls, 1);
    assert_int_equal(c->drained_status, 0);
    assert_int_equal(cl_sendq_bytes(&c->q), 0);

    /* Written bytes no longer count: the whole limit is available again. */
    assert_int_equal(cl_sendq_push(&c->q, b, 100), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), 100);
    assert_int_equal(cl_sendq_push(&c->q, b, 1), RT_EUNAVAIL);
    memcpy(expect + 100, b, 100);
    wait_got(w, c, 200, 2);
    assert_int_equal(c->got_len, 200);
    assert_memory_equal(c->got, expect, 200);
    assert_int_equal(c->drained_calls, 2);
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));
    world_close(w);
}

/* More than the socket takes: the rest goes in a uv_write, pushes meanwhile wait and follow
 * in order, and count against the limit together with the bytes in flight. */
static void test_big_write_in_flight(void **state)
{
    (void)state;
    const size_t max = TEST_BIG_BYTES + 64u * 1024u;
    struct world *w = world_open(1, max);
    struct chan *c = &w->chans[0];

    uint8_t *big = malloc(TEST_BIG_BYTES);
    assert_non_null(big);
    pattern_fill(big, TEST_BIG_BYTES, 4);
    uint8_t tail[1377];
    pattern_fill(tail, sizeof(tail), 5);

    size_t in_flight = push_big_one_turn(w, c, big);

    /* Pushed while the write is in flight: queued, not scheduled, counted. */
    assert_int_equal(cl_sendq_push(&c->q, tail, 1000), 0);
    assert_int_equal(cl_sendq_push2(&c->q, tail + 1000, 300, tail + 1300, 77), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), in_flight + sizeof(tail));
    assert_int_equal(c->q.queued.len, sizeof(tail));
    assert_null(w->flusher.head);
    size_t room = max - cl_sendq_bytes(&c->q);
    assert_true(room + 1 <= TEST_BIG_BYTES);
    assert_int_equal(cl_sendq_push(&c->q, big, room + 1), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_bytes(&c->q), in_flight + sizeof(tail));

    /* Nobody reads: nothing moves. */
    run_for(w, 30);
    assert_int_equal(c->got_len, 0);
    assert_int_equal(c->drained_calls, 0);
    assert_int_equal(cl_sendq_bytes(&c->q), in_flight + sizeof(tail));

    reader_start(c);
    const size_t total = TEST_BIG_BYTES + sizeof(tail);
    wait_got(w, c, total, 1);
    assert_int_equal(c->got_len, total);
    assert_memory_equal(c->got, big, TEST_BIG_BYTES);
    assert_memory_equal(c->got + TEST_BIG_BYTES, tail, sizeof(tail));
    assert_int_equal(c->drained_calls, 1); /* Only once everything was written. */
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    assert_int_equal(c->q.writing, 0);
    assert_true(c->q.queued.cap <= TEST_KEEP_BYTES); /* The burst's memory was given back. */
    assert_null(w->flusher.head);
    assert_false(flusher_active(w));

    run_for(w, 20);
    assert_int_equal(c->got_len, total);
    assert_int_equal(c->drained_calls, 1);

    free(big);
    world_close(w);
}

/* The reader goes away: the next flush fails, the callback says so, later pushes are refused. */
static void test_peer_closed(void **state)
{
    (void)state;
    struct world *w = world_open(1, 4096);
    struct chan *c = &w->chans[0];
    reader_start(c);

    assert_int_equal(cl_sendq_push(&c->q, "hello", 5), 0);
    wait_got(w, c, 5, 1);
    assert_int_equal(c->got_len, 5);
    assert_memory_equal(c->got, "hello", 5);
    assert_int_equal(c->drained_status, 0);

    reader_close(w, c);
    /* The failure is found by the flush, never inside push. */
    assert_int_equal(cl_sendq_push(&c->q, "after close", 11), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), 11);
    assert_int_equal(c->drained_calls, 1);
    wait_got(w, c, 5, 2);
    assert_int_equal(c->drained_calls, 2);
    assert_int_equal(c->drained_status, UV_EPIPE);
    assert_false(cl_sendq_busy(&c->q));
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    assert_null(w->flusher.head);
    assert_false(flusher_active(w));

    assert_int_equal(cl_sendq_push(&c->q, "again", 5), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_push2(&c->q, "a", 1, "b", 1), RT_EUNAVAIL);
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    assert_false(cl_sendq_busy(&c->q));
    run_for(w, 20);
    assert_int_equal(c->drained_calls, 2);
    assert_int_equal(c->got_len, 5);
    world_close(w);
}

/* The reader goes away while a uv_write is in flight: the write fails, what waited behind it
 * is dropped, and the callback reports the failure once. */
static void test_peer_closed_during_write(void **state)
{
    (void)state;
    struct world *w = world_open(1, TEST_BIG_BYTES + 4096u);
    struct chan *c = &w->chans[0];
    uint8_t *big = malloc(TEST_BIG_BYTES);
    assert_non_null(big);
    pattern_fill(big, TEST_BIG_BYTES, 6);

    push_big_one_turn(w, c, big);
    assert_int_equal(cl_sendq_push(&c->q, "waiting", 7), 0);
    reader_close(w, c);
    wait_got(w, c, 0, 1);
    assert_int_equal(c->drained_calls, 1);
    assert_true(c->drained_status == UV_EPIPE || c->drained_status == UV_ECONNRESET);
    assert_false(cl_sendq_busy(&c->q));
    assert_int_equal(cl_sendq_bytes(&c->q), 0);
    assert_int_equal(c->q.writing, 0);
    assert_null(w->flusher.head);
    assert_int_equal(cl_sendq_push(&c->q, "later", 5), RT_EUNAVAIL);
    run_for(w, 20);
    assert_int_equal(c->drained_calls, 1);

    free(big);
    world_close(w);
}

/* cl_sendq_cancel drops what is queued (it never arrives), leaves the flusher's list wherever
 * it is on it, and a flusher whose queues are all cancelled can be closed. */
static void test_cancel(void **state)
{
    (void)state;
    struct world *w = world_open(3, 4096);
    struct chan *c0 = &w->chans[0], *c1 = &w->chans[1], *c2 = &w->chans[2];
    reader_start(c0);
    reader_start(c1);
    reader_start(c2);

    assert_int_equal(cl_sendq_push(&c0->q, "zero", 4), 0);
    assert_int_equal(cl_sendq_push(&c1->q, "one", 3), 0);
    assert_int_equal(cl_sendq_push(&c2->q, "two", 3), 0);
    assert_int_equal(cl_sendq_push(&c1->q, "-more", 5), 0);
    assert_int_equal(flusher_list_len(&w->flusher), 3);
    assert_int_equal(cl_sendq_bytes(&c1->q), 8);

    /* The middle of the list. */
    cl_sendq_cancel(&c1->q);
    assert_false(cl_sendq_busy(&c1->q));
    assert_int_equal(cl_sendq_bytes(&c1->q), 0);
    assert_int_equal(flusher_list_len(&w->flusher), 2);
    assert_false(flusher_has(&w->flusher, &c1->q));
    assert_true(flusher_has(&w->flusher, &c0->q));
    assert_true(flusher_has(&w->flusher, &c2->q));
    assert_int_equal(cl_sendq_push(&c1->q, "x", 1), RT_EUNAVAIL); /* Cancelled for good. */
    assert_int_equal(c1->drained_calls, 0);

    wait_got(w, c0, 4, 1);
    wait_got(w, c2, 3, 1);
    run_for(w, 30);
    assert_int_equal(c0->got_len, 4);
    assert_memory_equal(c0->got, "zero", 4);
    assert_int_equal(c2->got_len, 3);
    assert_memory_equal(c2->got, "two", 3);
    assert_int_equal(c1->got_len, 0);
    assert_int_equal(c1->drained_calls, 0);
    assert_int_equal(c0->drained_calls, 1);
    assert_int_equal(c2->drained_calls, 1);

    /* The head, then the last one: the list empties and the prepare handle stops. */
    assert_int_equal(cl_sendq_push(&c0->q, "dropped0", 8), 0);
    assert_int_equal(cl_sendq_push(&c2->q, "dropped2", 8), 0);
    assert_ptr_equal(w->flusher.head, &c2->q);
    assert_int_equal(flusher_list_len(&w->flusher), 2);
    cl_sendq_cancel(&c2->q);
    assert_ptr_equal(w->flusher.head, &c0->q);
    assert_null(c0->q.prev);
    assert_int_equal(flusher_list_len(&w->flusher), 1);
    cl_sendq_cancel(&c0->q);
    assert_null(w->flusher.head);
    assert_false(flusher_active(w));
    assert_false(cl_sendq_busy(&c0->q));
    assert_false(cl_sendq_busy(&c2->q));
    cl_sendq_cancel(&c0->q); /* Twice is harmless. */
    assert_null(w->flusher.head);

    run_for(w, 30);
    assert_int_equal(c0->got_len, 4);
    assert_int_equal(c2->got_len, 3);
    assert_int_equal(c1->got_len, 0);
    assert_int_equal(c0->drained_calls, 1);
    assert_int_equal(c2->drained_calls, 1);

    cl_flusher_close(&w->flusher, flusher_closed_cb);
    wait_bool(w, &w->flusher_closed);
    world_close(w);
}

/* Cancel with a write in flight: the write completes and calls back (status 0); only what
 * was queued behind it is dropped. */
static void test_cancel_write_in_flight(void **state)
{
    (void)state;
    struct world *w = world_open(1, TEST_BIG_BYTES + 4096u);
    struct chan *c = &w->chans[0];
    uint8_t *big = malloc(TEST_BIG_BYTES);
    assert_non_null(big);
    pattern_fill(big, TEST_BIG_BYTES, 7);

    size_t in_flight = push_big_one_turn(w, c, big);
    assert_int_equal(cl_sendq_push(&c->q, "dropped", 7), 0);
    assert_int_equal(cl_sendq_bytes(&c->q), in_flight + 7);
    cl_sendq_cancel(&c->q);
    assert_int_equal(cl_sendq_bytes(&c->q), in_flight);
    /* Cancelled: nothing is owed, the owner may close the stream (the memory must still
     * outlive the write's callback, which comes first). */
    assert_false(cl_sendq_busy(&c->q));
    assert_null(w->flusher.head);
    assert_int_equal(cl_sendq_push(&c->q, "refused", 7), RT_EUNAVAIL);

    reader_start(c);
    wait_got(w, c, TEST_BIG_BYTES, 1);
    run_for(w, 30);
    assert_int_equal(c->got_len, TEST_BIG_BYTES);
    assert_memory_equal(c->got, big, TEST_BIG_BYTES);
    assert_int_equal(c->drained_calls, 1);
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));
    assert_int_equal(cl_sendq_bytes(&c->q), 0);

    free(big);
    world_close(w);
}

/* Cancel then close the stream with a write in flight (how cl_link closes): uv_close cancels
 * the write, the callback reports UV_ECANCELED before the stream's close callback. */
static void test_cancel_then_close(void **state)
{
    (void)state;
    struct world *w = world_open(1, TEST_BIG_BYTES + 4096u);
    struct chan *c = &w->chans[0];
    uint8_t *big = malloc(TEST_BIG_BYTES);
    assert_non_null(big);
    pattern_fill(big, TEST_BIG_BYTES, 8);

    push_big_one_turn(w, c, big);
    cl_sendq_cancel(&c->q);
    assert_false(cl_sendq_busy(&c->q));
    uv_close((uv_handle_t *)&c->writer, writer_closed_cb);
    wait_bool(w, &c->writer_closed);
    assert_int_equal(c->drained_at_close, 1);
    assert_false(c->busy_at_close);
    assert_int_equal(c->drained_calls, 1);
    assert_int_equal(c->drained_status, UV_ECANCELED);
    assert_int_equal(cl_sendq_bytes(&c->q), 0);

    free(big);
    world_close(w);
}

/* The drained callback may push: what it pushes follows in order, and the callback is never
 * re-entered. */
static void test_push_from_drained(void **state)
{
    (void)state;
    struct world *w = world_open(1, 4096);
    struct chan *c = &w->chans[0];
    reader_start(c);

    uint8_t chunks[5 * 100];
    pattern_fill(chunks, sizeof(chunks), 9);
    c->repush = chunks + 100;
    c->repush_len = 100;
    c->repush_left = 4;
    assert_int_equal(cl_sendq_push(&c->q, chunks, 100), 0);

    wait_got(w, c, sizeof(chunks), 5);
    run_for(w, 20);
    assert_int_equal(c->got_len, sizeof(chunks));
    assert_memory_equal(c->got, chunks, sizeof(chunks));
    assert_int_equal(c->repush_left, 0);
    assert_int_equal(c->drained_calls, 5);
    assert_int_equal(c->drained_status, 0);
    assert_false(cl_sendq_busy(&c->q));
    world_close(w);
}

int main(void)
{
    /* A write to a closed socket must fail with EPIPE, not kill the process (payd does the
     * same). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_pushes_one_turn),
        cmocka_unit_test(test_push2),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_big_write_in_flight),
        cmocka_unit_test(test_peer_closed),
        cmocka_unit_test(test_peer_closed_during_write),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_cancel_write_in_flight),
        cmocka_unit_test(test_cancel_then_close),
        cmocka_unit_test(test_push_from_drained),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
