/* Tests for payraft_client against fake_server (an in-process server thread that decodes and
 * verifies every request as payd does): signatures, pipelining with answers out of order,
 * retries of UNAVAILABLE / TIMEOUT / REPLAYED with the same body and fresh nonces, no retry of
 * other codes, fail-over past a refused server and away from an UNAVAILABLE one, lost
 * connections, timeouts, hostile server frames, argument checks, the in-flight bound and
 * cancellation at free.
 *
 * The public header comes first, alone: it must compile without any other include.
 * Ports: PAYRAFT_PORT_BASE (default 7000) + 850..859 for fakes, + 898 and 899 for ports where
 * nothing listens (connection refused). */
#include "payraft_client.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "fake_server.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

#define PORT_A        850u
#define PORT_B        851u
#define PORT_HOLE     852u /* A listener that never accepts, its backlog full. */
#define PORT_REFUSED  899u
#define PORT_REFUSED2 898u

static struct fake *fake_a, *fake_b;

static int setup(void **state)
{
    (void)state;
    fake_a = calloc(1, sizeof(*fake_a));
    fake_b = calloc(1, sizeof(*fake_b));
    return fake_a != NULL && fake_b != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(fake_a);
    free(fake_b);
    return 0;
}

static char *server_list(char *buf, size_t cap, const unsigned *offsets, unsigned n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "%s127.0.0.1:%u", i > 0 ? "," : "",
                                fake_port(offsets[i]));
        assert_true(len < cap);
    }
    return buf;
}

static struct pr_client *client_for(const unsigned *offsets, unsigned n,
                                    const struct pr_client_options *opts)
{
    char servers[256];
    struct pr_client *c = NULL;
    assert_int_equal(pr_client_new(server_list(servers, sizeof(servers), offsets, n), FAKE_APP,
                                   (const uint8_t *)FAKE_SECRET, strlen(FAKE_SECRET), opts, &c),
                     0);
    assert_non_null(c);
    return c;
}

/* A small body {"merchant_order_no": @mono, "amount": @amount}. */
static void order_body(struct rt_buf *b, const char *mono, uint64_t amount)
{
    rt_buf_reset(b);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, b);
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, amount);
    assert_int_equal(rt_mp_writer_error(&w), 0);
}

static void assert_body(const struct pr_response *resp, const struct rt_buf *b)
{
    assert_true(resp->ok);
    assert_string_equal(resp->code, "OK");
    assert_non_null(resp->body);
    assert_int_equal(resp->body_len, b->len);
    assert_memory_equal(resp->body, b->data, b->len);
}

static uint64_t mono_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Options that keep failing tests short. */
static struct pr_client_options quick_options(void)
{
    struct pr_client_options o;
    pr_client_options_init(&o);
    o.backoff_initial_ms = 5;
    o.backoff_max_ms = 40;
    o.request_timeout_ms = 5000;
    return o;
}

/* ---- Signing and the happy path ---- */

static void test_signed_request_round_trip(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    struct rt_buf b;
    rt_buf_init(&b, 4096);
    order_body(&b, "M-0001", 1999);
    struct pr_response resp;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pr_client_call(c, "order.create", b.data, b.len, &resp), 0);
        assert_body(&resp, &b);
        assert_int_equal(resp.attempts, 1);
        assert_string_equal(resp.msg, "ok");
        pr_response_free(&resp);
        assert_null(resp.body);
    }
    /* An empty body is sent as {}. */
    assert_int_equal(pr_client_call(c, "cluster.status", NULL, 0, &resp), 0);
    assert_true(resp.ok);
    assert_int_equal(resp.body_len, 1);
    assert_int_equal(resp.body[0], 0x80);
    pr_response_free(&resp);
    assert_int_equal(pr_client_pending(c), 0);
    pr_client_free(c);
    fake_stop(fake_a);

    assert_int_equal(fake_a->seen_count, 4);
    assert_int_equal(fake_a->conns, 1); /* One connection for everything. */
    assert_int_equal(fake_a->bad_frames, 0);
    for (unsigned i = 0; i < 4; i++) {
        const struct fake_seen *s = &fake_a->seen[i];
        assert_true(s->sig_ok);
        assert_true(s->time_ok);
        assert_string_equal(s->app, FAKE_APP);
        assert_string_equal(s->op, i < 3 ? "order.create" : "cluster.status");
        assert_true(strlen(s->nonce) >= 8 && strlen(s->nonce) <= 64);
        assert_int_not_equal(s->id, 0);
        for (unsigned j = 0; j < i; j++) {
            assert_string_not_equal(s->nonce, fake_a->seen[j].nonce);
            assert_int_not_equal(s->id, fake_a->seen[j].id);
        }
    }
    assert_int_equal(fake_a->seen[0].body_len, b.len);
    assert_memory_equal(fake_a->seen[0].body, b.data, b.len);
    rt_buf_free(&b);
}

/* A wrong secret is caught by the server's verification: the signature is real. */
static void test_wrong_secret_fails_verification(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", fake_port(PORT_A));
    struct pr_client *c = NULL;
    const char *other = "not-the-secret";
    assert_int_equal(
        pr_client_new(servers, FAKE_APP, (const uint8_t *)other, strlen(other), NULL, &c), 0);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), 0);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 1);
    assert_false(fake_a->seen[0].sig_ok);
}

/* ---- Pipelining ---- */

#define PIPELINE_N 1000u

struct pipe_ctx {
    struct rt_buf bodies[PIPELINE_N];
    bool done[PIPELINE_N];
    unsigned completed;
    unsigned completion_order[PIPELINE_N];
    int bad;
};

struct pipe_arg {
    struct pipe_ctx *ctx;
    unsigned index;
};

static struct pipe_arg pipe_args[PIPELINE_N];

static void pipe_cb(void *arg, int status, struct pr_response *resp)
{
    struct pipe_arg *a = arg;
    struct pipe_ctx *ctx = a->ctx;
    /* Counted, not asserted: a failed assert would longjmp out of the library's loop. */
    if (status != 0 || !resp->ok || ctx->done[a->index] ||
        resp->body_len != ctx->bodies[a->index].len ||
        memcmp(resp->body, ctx->bodies[a->index].data, resp->body_len) != 0) {
        ctx->bad++;
    }
    ctx->done[a->index] = true;
    ctx->completion_order[ctx->completed++] = a->index;
}

static void test_pipeline_1000_out_of_order(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_shuffle));
    fake_a->param = PIPELINE_N; /* Answer nothing until all 1000 arrived, then shuffled. */
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    struct pipe_ctx *ctx = calloc(1, sizeof(*ctx));
    assert_non_null(ctx);
    for (unsigned i = 0; i < PIPELINE_N; i++) {
        char mono[32];
        snprintf(mono, sizeof(mono), "P-%u", i);
        rt_buf_init(&ctx->bodies[i], 256);
        order_body(&ctx->bodies[i], mono, i + 1);
        pipe_args[i] = (struct pipe_arg){ctx, i};
        assert_int_equal(pr_client_send(c, "order.create", ctx->bodies[i].data, ctx->bodies[i].len,
                                        pipe_cb, &pipe_args[i]),
                         0);
    }
    assert_int_equal(pr_client_pending(c), PIPELINE_N);
    uint64_t until = mono_now_ms() + 20000;
    while (pr_client_pending(c) > 0 && mono_now_ms() < until) {
        assert_true(pr_client_poll(c, 1000) >= 0);
    }
    assert_int_equal(ctx->completed, PIPELINE_N);
    assert_int_equal(ctx->bad, 0);
    /* They did come back out of order. */
    unsigned in_order = 0;
    for (unsigned i = 0; i < PIPELINE_N; i++) {
        in_order += ctx->completion_order[i] == i;
    }
    assert_true(in_order < PIPELINE_N / 2);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, PIPELINE_N);
    assert_int_equal(fake_a->conns, 1);
    for (unsigned i = 0; i < PIPELINE_N; i++) {
        assert_true(fake_a->seen[i].sig_ok);
        rt_buf_free(&ctx->bodies[i]);
    }
    free(ctx);
}

/* ---- Retries ---- */

static void check_retried(const struct fake *f, unsigned n, const struct rt_buf *b)
{
    assert_int_equal(f->seen_count, n);
    for (unsigned i = 0; i < n; i++) {
        const struct fake_seen *s = &f->seen[i];
        assert_true(s->sig_ok);
        assert_int_equal(s->body_len, b->len); /* The same body every time... */
        assert_memory_equal(s->body, b->data, b->len);
        for (unsigned j = 0; j < i; j++) {
            assert_string_not_equal(s->nonce, f->seen[j].nonce); /* ...newly signed. */
            assert_int_not_equal(s->id, f->seen[j].id);
        }
    }
}

static void retry_then_ok(int code)
{
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_unavailable));
    fake_a->param = 2;
    fake_a->code = code;
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    struct pr_client *c = client_for(a, 1, &o);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "RETRY-1", 500);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.create", b.data, b.len, &resp), 0);
    assert_body(&resp, &b);
    assert_int_equal(resp.attempts, 3);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    check_retried(fake_a, 3, &b);
    assert_int_equal(fake_a->conns, 1); /* One server: no reason to reconnect. */
    rt_buf_free(&b);
}

static void test_unavailable_retried_then_ok(void **state)
{
    (void)state;
    retry_then_ok(RT_EUNAVAIL);
}

static void test_timeout_code_retried_then_ok(void **state)
{
    (void)state;
    retry_then_ok(RT_ETIMEOUT);
}

static void test_replayed_retried_then_ok(void **state)
{
    (void)state;
    retry_then_ok(RT_EREPLAYED);
}

static void test_unavailable_retries_exhausted(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_unavailable));
    fake_a->param = 1000;
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    o.retries = 3;
    struct pr_client *c = client_for(a, 1, &o);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), 0);
    assert_false(resp.ok);
    assert_string_equal(resp.code, "UNAVAILABLE");
    assert_string_equal(resp.msg, "no leader yet");
    assert_null(resp.body);
    assert_int_equal(resp.attempts, 4);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 4);
}

/* With the default options a request outlasts a leader election: UNAVAILABLE for 3 s (an
 * election takes 1-2 s, more on a loaded host) and then the answer, within the 10 s deadline.
 * (With 5 retries the backoff used them up in at most 1.55 s.) */
static void test_default_retries_outlast_an_election(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_unavailable_for));
    fake_a->param = 3000;
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "ELECTION-1", 700);
    uint64_t t0 = mono_now_ms();
    struct pr_response resp;
    int rv = pr_client_call(c, "order.create", b.data, b.len, &resp);
    uint64_t took = mono_now_ms() - t0;
    pr_client_free(c);
    fake_stop(fake_a); /* Before any assertion, so that a failure here does not hold the port. */
    assert_int_equal(rv, 0);
    assert_body(&resp, &b);
    assert_true(resp.attempts > 1);
    assert_true(took >= 3000 && took < 10000);
    pr_response_free(&resp);
    rt_buf_free(&b);
}

/* app.create is not idempotent (its secret is shown once): once written, an outcome-unknown
 * answer is returned, not retried; a create that never reached a server is still retried, and
 * REPLAYED (not run) too. */
static void test_app_create_not_retried_once_sent(void **state)
{
    (void)state;
    static const struct {
        int code;
        unsigned attempts;
        const char *wire;
    } cases[] = {
        {RT_EUNAVAIL, 1, "UNAVAILABLE"}, {RT_ETIMEOUT, 1, "TIMEOUT"}, {RT_EREPLAYED, 2, "OK"}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_unavailable));
        fake_a->param = 1;
        fake_a->code = cases[k].code;
        const unsigned list[] = {PORT_REFUSED, PORT_A};
        struct pr_client_options o = quick_options();
        struct pr_client *c = client_for(list, 2, &o);
        struct pr_response resp;
        int rv = pr_client_call(c, "app.create", NULL, 0, &resp);
        pr_client_free(c);
        fake_stop(fake_a);
        assert_int_equal(rv, 0);
        assert_string_equal(resp.code, cases[k].wire);
        assert_int_equal(resp.attempts, cases[k].attempts);
        assert_int_equal(fake_a->seen_count, cases[k].attempts);
        pr_response_free(&resp);
    }
}

static void test_other_codes_not_retried(void **state)
{
    (void)state;
    static const int codes[] = {RT_EINVAL, RT_EUNAUTH,   RT_EFORBIDDEN, RT_ENOTFOUND, RT_ECONFLICT,
                                RT_ESTATE, RT_ETOOLARGE, RT_ERATE,      RT_EINTERNAL};
    for (size_t k = 0; k < sizeof(codes) / sizeof(codes[0]); k++) {
        assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_code));
        fake_a->code = codes[k];
        const unsigned a[] = {PORT_A};
        struct pr_client_options o = quick_options();
        struct pr_client *c = client_for(a, 1, &o);
        struct pr_response resp;
        assert_int_equal(pr_client_call(c, "order.create", NULL, 0, &resp), 0);
        assert_false(resp.ok);
        assert_string_equal(resp.code, rt_wire_code(codes[k]));
        assert_string_equal(resp.msg, "amount: must be 1..1000000000");
        assert_int_equal(resp.attempts, 1);
        pr_response_free(&resp);
        pr_client_free(c);
        fake_stop(fake_a);
        assert_int_equal(fake_a->seen_count, 1);
    }
}

/* ---- Servers ---- */

static void test_refused_first_server_then_second(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    const unsigned list[] = {PORT_REFUSED, PORT_A};
    struct pr_client *c = client_for(list, 2, NULL);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "FAILOVER", 1);
    uint64_t t0 = mono_now_ms();
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.create", b.data, b.len, &resp), 0);
    assert_body(&resp, &b);
    assert_int_equal(resp.attempts, 1); /* Refused connects are not sends. */
    assert_true(mono_now_ms() - t0 < 1000);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 1);
    rt_buf_free(&b);
}

static void test_all_refused(void **state)
{
    (void)state;
    const unsigned list[] = {PORT_REFUSED, PORT_REFUSED2};
    struct pr_client_options o = quick_options();
    o.retries = 3;
    struct pr_client *c = client_for(list, 2, &o);
    uint64_t t0 = mono_now_ms();
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), PR_ECONNECT);
    assert_null(resp.body);
    assert_false(resp.ok);
    assert_true(mono_now_ms() - t0 < 2000);
    pr_client_free(c);
}

/* A listener whose backlog is full drops SYNs: connect hangs, the connect timeout moves on. */
static void test_connect_timeout_moves_on(void **state)
{
    (void)state;
    struct fake_hole hole;
    assert_true(fake_hole_open(&hole, fake_port(PORT_HOLE)));
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    const unsigned list[] = {PORT_HOLE, PORT_A};
    struct pr_client_options o = quick_options();
    o.connect_timeout_ms = 200;
    struct pr_client *c = client_for(list, 2, &o);
    uint64_t t0 = mono_now_ms();
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), 0);
    uint64_t took = mono_now_ms() - t0;
    assert_true(resp.ok);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    fake_hole_close(&hole);
    /* Either the hole held the connect (about 200 ms) or the kernel let it through and the
     * client moved on after the lost connection; both must end well within the timeout. */
    assert_true(took < 1500);
}

/* UNAVAILABLE from one node of several: the client moves to another. */
static void test_unavailable_moves_to_next_server(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_unavailable));
    fake_a->param = 1000;
    assert_true(fake_start(fake_b, fake_port(PORT_B), fake_h_echo));
    const unsigned list[] = {PORT_A, PORT_B};
    struct pr_client_options o = quick_options();
    struct pr_client *c = client_for(list, 2, &o);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "MOVE-ON", 7);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.create", b.data, b.len, &resp), 0);
    assert_body(&resp, &b);
    assert_int_equal(resp.attempts, 2);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    fake_stop(fake_b);
    assert_int_equal(fake_a->seen_count, 1);
    assert_int_equal(fake_b->seen_count, 1);
    assert_memory_equal(fake_b->seen[0].body, b.data, b.len);
    assert_string_not_equal(fake_a->seen[0].nonce, fake_b->seen[0].nonce);
    rt_buf_free(&b);
}

static void test_connection_lost_in_flight_retried(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_close_first));
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    struct pr_client *c = client_for(a, 1, &o);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "LOST-1", 42);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.create", b.data, b.len, &resp), 0);
    assert_body(&resp, &b);
    assert_int_equal(resp.attempts, 2);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->conns, 2);
    check_retried(fake_a, 2, &b);
    rt_buf_free(&b);
}

/* ---- Timeouts ---- */

static void test_request_timeout(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_silent));
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    o.request_timeout_ms = 300;
    struct pr_client *c = client_for(a, 1, &o);
    uint64_t t0 = mono_now_ms();
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), PR_ETIMEOUT);
    uint64_t took = mono_now_ms() - t0;
    assert_true(took >= 290 && took < 2000);
    assert_null(resp.body);
    /* The client stays usable; the next call times out too, on the same connection. */
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), PR_ETIMEOUT);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 2);
    assert_int_equal(fake_a->conns, 1);
}

/* pr_client_poll returns when its own timeout runs out, even with requests in flight. */
static int poll_cb_count;
static void count_cb(void *arg, int status, struct pr_response *resp)
{
    (void)resp;
    int *last = arg;
    *last = status;
    poll_cb_count++;
}

static void test_poll_timeout_and_zero(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_silent));
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    o.request_timeout_ms = 1000;
    struct pr_client *c = client_for(a, 1, &o);
    int last = 1;
    poll_cb_count = 0;
    assert_int_equal(pr_client_poll(c, -1), 0); /* Nothing in flight: at once. */
    assert_int_equal(pr_client_send(c, "order.get", NULL, 0, count_cb, &last), 0);
    assert_int_equal(pr_client_poll(c, 0), 0);
    uint64_t t0 = mono_now_ms();
    assert_int_equal(pr_client_poll(c, 100), 0);
    uint64_t took = mono_now_ms() - t0;
    assert_true(took >= 90 && took < 900);
    assert_int_equal(pr_client_pending(c), 1);
    assert_int_equal(pr_client_poll(c, -1), 1);
    assert_int_equal(last, PR_ETIMEOUT);
    assert_int_equal(poll_cb_count, 1);
    pr_client_free(c);
    fake_stop(fake_a);
}

/* ---- Hostile server frames ---- */

static void garbage_case(const uint8_t *raw, size_t raw_len, int expect)
{
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_raw));
    fake_a->raw = raw;
    fake_a->raw_len = raw_len;
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    o.retries = 1;
    struct pr_client *c = client_for(a, 1, &o);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", NULL, 0, &resp), expect);
    assert_null(resp.body);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 2); /* Tried, and retried once. */
}

/* @payload behind a correct length prefix. */
static void garbage_payload(const uint8_t *payload, size_t len, int expect)
{
    uint8_t frame[64];
    assert_true(len + 4 <= sizeof(frame));
    frame[0] = frame[1] = frame[2] = 0;
    frame[3] = (uint8_t)len;
    memcpy(frame + 4, payload, len);
    garbage_case(frame, len + 4, expect);
}

static void test_garbage_frames(void **state)
{
    (void)state;
    /* Lengths: 4 GiB, 1 MiB + 1, 0. */
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x80};
    static const uint8_t over[] = {0x00, 0x10, 0x00, 0x01, 0x80};
    static const uint8_t zero[] = {0x00, 0x00, 0x00, 0x00};
    garbage_case(huge, sizeof(huge), PR_EPROTO);
    garbage_case(over, sizeof(over), PR_EPROTO);
    garbage_case(zero, sizeof(zero), PR_EPROTO);
    /* Payloads that are not a response: reserved byte, an array, trailing bytes, a non-str key,
     * no ok, ok disagreeing with code, a code not of [A-Z_], a body that is not a map, a body
     * on an error, a repeated key, an id of the wrong type, an id of 0 (the server could not
     * read our frame), nesting too deep. */
    static const uint8_t c1[] = {0xc1};
    static const uint8_t arr[] = {0x90};
    static const uint8_t trailing[] = {0x80, 0x80};
    static const uint8_t intkey[] = {0x81, 0x01, 0x01};
#define ID1     0xa2, 'i', 'd', 0x01
#define OKT     0xa2, 'o', 'k', 0xc3
#define OKF     0xa2, 'o', 'k', 0xc2
#define CODE_OK 0xa4, 'c', 'o', 'd', 'e', 0xa2, 'O', 'K'
    static const uint8_t no_ok[] = {0x82, ID1, CODE_OK};
    static const uint8_t ok_bad[] = {0x83, ID1, OKT, 0xa4, 'c', 'o', 'd', 'e', 0xa3, 'B', 'A', 'D'};
    static const uint8_t ok_false[] = {0x83, ID1, OKF, CODE_OK};
    static const uint8_t lower[] = {0x83, ID1, OKF, 0xa4, 'c', 'o', 'd', 'e', 0xa3, 'b', 'a', 'd'};
    static const uint8_t body_arr[] = {0x84, ID1, OKT, CODE_OK, 0xa4, 'b', 'o', 'd', 'y', 0x90};
    static const uint8_t err_body[] = {0x84, ID1, OKF, 0xa4, 'c', 'o', 'd', 'e', 0xa3,
                                       'B',  'A', 'D', 0xa4, 'b', 'o', 'd', 'y', 0x80};
    static const uint8_t dup[] = {0x84, ID1, ID1, OKT, CODE_OK};
    static const uint8_t id_str[] = {0x83, 0xa2, 'i', 'd', 0xa1, 'x', OKT, CODE_OK};
    static const uint8_t id0[] = {0x83, 0xa2, 'i', 'd',  0x00, OKF, 0xa4, 'c',
                                  'o',  'd',  'e', 0xa3, 'B',  'A', 'D'};
    static const uint8_t msg_int[] = {0x84, ID1, OKT, CODE_OK, 0xa3, 'm', 's', 'g', 0x01};
#undef ID1
#undef OKT
#undef OKF
#undef CODE_OK
    uint8_t deep[20];
    memset(deep, 0x91, 19);
    deep[19] = 0x90;
    garbage_payload(c1, sizeof(c1), PR_EPROTO);
    garbage_payload(arr, sizeof(arr), PR_EPROTO);
    garbage_payload(trailing, sizeof(trailing), PR_EPROTO);
    garbage_payload(intkey, sizeof(intkey), PR_EPROTO);
    garbage_payload(no_ok, sizeof(no_ok), PR_EPROTO);
    garbage_payload(ok_bad, sizeof(ok_bad), PR_EPROTO);
    garbage_payload(ok_false, sizeof(ok_false), PR_EPROTO);
    garbage_payload(lower, sizeof(lower), PR_EPROTO);
    garbage_payload(body_arr, sizeof(body_arr), PR_EPROTO);
    garbage_payload(err_body, sizeof(err_body), PR_EPROTO);
    garbage_payload(dup, sizeof(dup), PR_EPROTO);
    garbage_payload(id_str, sizeof(id_str), PR_EPROTO);
    garbage_payload(id0, sizeof(id0), PR_EPROTO);
    garbage_payload(msg_int, sizeof(msg_int), PR_EPROTO);
    garbage_payload(deep, sizeof(deep), PR_EPROTO);
    /* A frame promising 1 MiB, then the connection closes: a lost connection. */
    static const uint8_t cut[] = {0x00, 0x10, 0x00, 0x00, 0x80, 0x01, 0x02};
    garbage_case(cut, sizeof(cut), PR_ECLOSED);
}

static void test_random_garbage(void **state)
{
    (void)state;
    uint8_t *raw = malloc(4096);
    assert_non_null(raw);
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (int round = 0; round < 20; round++) {
        size_t len = 1 + (size_t)(x % 4096);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            raw[i] = (uint8_t)x;
        }
        if (round % 2 == 0 && len > 4) {
            /* Half the time a plausible length, so that the payload reaches the parser. */
            raw[0] = 0;
            raw[1] = 0;
            raw[2] = (uint8_t)((len - 4) >> 8);
            raw[3] = (uint8_t)(len - 4);
        }
        assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_raw));
        fake_a->raw = raw;
        fake_a->raw_len = len;
        const unsigned a[] = {PORT_A};
        struct pr_client_options o = quick_options();
        o.retries = 0;
        struct pr_client *c = client_for(a, 1, &o);
        struct pr_response resp;
        int rv = pr_client_call(c, "order.get", NULL, 0, &resp);
        assert_true(rv == PR_EPROTO || rv == PR_ECLOSED);
        pr_client_free(c);
        fake_stop(fake_a);
    }
    free(raw);
}

/* Answers to ids nobody waits for are dropped; the right one still arrives. */
static void test_unknown_ids_ignored(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_wrong_id));
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "IDS", 3);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.create", b.data, b.len, &resp), 0);
    assert_body(&resp, &b);
    pr_response_free(&resp);
    pr_client_free(c);
    fake_stop(fake_a);
    rt_buf_free(&b);
}

/* ---- The largest body ---- */

static void test_largest_body(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    struct rt_buf b;
    rt_buf_init(&b, PR_BODY_BYTES_MAX + 1);
    /* {"b": bin} of exactly PR_BODY_BYTES_MAX bytes: map 1 + str 2 + bin32 header 5. */
    size_t bin_len = PR_BODY_BYTES_MAX - 8;
    uint8_t *bin = malloc(bin_len);
    assert_non_null(bin);
    memset(bin, 0xab, bin_len);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &b);
    rt_mp_write_map(&w, 1);
    rt_mp_write_cstr(&w, "b");
    rt_mp_write_bin(&w, bin, bin_len);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    assert_int_equal(b.len, PR_BODY_BYTES_MAX);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "invoice.apply", b.data, b.len, &resp), 0);
    assert_body(&resp, &b);
    pr_response_free(&resp);
    /* One byte more is refused before anything is sent. */
    uint8_t extra = 0;
    assert_int_equal(rt_buf_append(&b, &extra, 1), 0);
    assert_int_equal(pr_client_call(c, "invoice.apply", b.data, b.len, &resp), PR_ETOOLARGE);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 1);
    assert_true(fake_a->seen[0].sig_ok);
    free(bin);
    rt_buf_free(&b);
}

/* ---- Arguments ---- */

static void noop_cb(void *arg, int status, struct pr_response *resp)
{
    (void)arg;
    (void)status;
    (void)resp;
}

static void test_new_arguments(void **state)
{
    (void)state;
    const uint8_t *key = (const uint8_t *)FAKE_SECRET;
    size_t key_len = strlen(FAKE_SECRET);
    struct pr_client *c = NULL;
    static const char *const good[] = {"127.0.0.1:7101", "localhost:1", "[::1]:7101",
                                       "a:1,b:2,c:65535", "node-1.example_x:80"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(pr_client_new(good[i], "admin", key, key_len, NULL, &c), 0);
        pr_client_free(c);
    }
    char long_host[300];
    memset(long_host, 'h', 256);
    strcpy(long_host + 256, ":80");
    char seventeen[400] = "";
    for (int i = 0; i < 17; i++) {
        strcat(seventeen, i > 0 ? ",h:1" : "h:1");
    }
    char *too_long = malloc(PR_SERVERS_BYTES_MAX + 2);
    assert_non_null(too_long);
    memset(too_long, 'a', PR_SERVERS_BYTES_MAX + 1);
    memcpy(too_long + PR_SERVERS_BYTES_MAX - 2, ":1", 3);
    too_long[PR_SERVERS_BYTES_MAX + 1] = '\0';
    const char *const bad[] = {
        "",     "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", ":80",     "h:65536", "h:080", "h:-1",
        "h:1,", ",h:1",      "h:1,,h:2",   "::1:80",      "[::1]80", "[::1]",   "[]:80", "h h:1",
        "h:1 ", "h/x:1",     long_host,    seventeen,     too_long,  "h:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = (struct pr_client *)1;
        assert_int_equal(pr_client_new(bad[i], "admin", key, key_len, NULL, &c), PR_EINVAL);
        assert_null(c);
    }
    free(too_long);
    const char *const bad_apps[] = {"", "a b", "a/b", "é", "abcdefghijabcdefghijabcdefghijabc"};
    for (size_t i = 0; i < sizeof(bad_apps) / sizeof(bad_apps[0]); i++) {
        assert_int_equal(pr_client_new("h:1", bad_apps[i], key, key_len, NULL, &c), PR_EINVAL);
    }
    assert_int_equal(
        pr_client_new("h:1", "abcdefghijabcdefghijabcdefghijab", key, key_len, NULL, &c), 0);
    pr_client_free(c);
    assert_int_equal(pr_client_new("h:1", "a", key, 0, NULL, &c), PR_EINVAL);
    assert_int_equal(pr_client_new("h:1", "a", key, PR_SECRET_BYTES_MAX + 1, NULL, &c), PR_EINVAL);
    assert_int_equal(pr_client_new(NULL, "a", key, key_len, NULL, &c), PR_EINVAL);
    assert_int_equal(pr_client_new("h:1", NULL, key, key_len, NULL, &c), PR_EINVAL);
    assert_int_equal(pr_client_new("h:1", "a", NULL, key_len, NULL, &c), PR_EINVAL);
    assert_int_equal(pr_client_new("h:1", "a", key, key_len, NULL, NULL), PR_EINVAL);
    struct pr_client_options o;
    struct {
        unsigned *field;
        unsigned value;
    } bad_opts[] = {
        {&o.connect_timeout_ms, 0},
        {&o.connect_timeout_ms, 600001},
        {&o.request_timeout_ms, 0},
        {&o.request_timeout_ms, 3600001},
        {&o.retries, 101},
        {&o.backoff_initial_ms, 0},
        {&o.backoff_initial_ms, 3000}, /* Above backoff_max_ms. */
        {&o.backoff_max_ms, 600001},
        {&o.max_inflight, 0},
        {&o.max_inflight, PR_INFLIGHT_MAX + 1},
    };
    for (size_t i = 0; i < sizeof(bad_opts) / sizeof(bad_opts[0]); i++) {
        pr_client_options_init(&o);
        *bad_opts[i].field = bad_opts[i].value;
        assert_int_equal(pr_client_new("h:1", "a", key, key_len, &o, &c), PR_EINVAL);
    }
    pr_client_options_init(&o);
    o.retries = 0;
    o.max_inflight = 1;
    assert_int_equal(pr_client_new("h:1", "a", key, key_len, &o, &c), 0);
    pr_client_free(c);
    pr_client_free(NULL);
}

static void test_send_arguments(void **state)
{
    (void)state;
    const unsigned list[] = {PORT_REFUSED};
    struct pr_client *c = client_for(list, 1, NULL);
    static const uint8_t map[] = {0x80};
    static const uint8_t arr[] = {0x90};
    static const uint8_t two[] = {0x80, 0x80};
    static const uint8_t cut[] = {0x81, 0xa1};
    static const uint8_t str[] = {0xa1, 'x'};
    const char *const bad_ops[] = {"", "Order.create", "order-create", "order create",
                                   "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghi"};
    for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
        assert_int_equal(pr_client_send(c, bad_ops[i], map, 1, noop_cb, NULL), PR_EINVAL);
    }
    assert_int_equal(pr_client_send(c, NULL, map, 1, noop_cb, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", map, 1, NULL, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", NULL, 1, noop_cb, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", arr, 1, noop_cb, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", two, 2, noop_cb, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", cut, 2, noop_cb, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", str, 2, noop_cb, NULL), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "order.get", map, PR_BODY_BYTES_MAX + 1, noop_cb, NULL),
                     PR_ETOOLARGE);
    assert_int_equal(pr_client_pending(c), 0);
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, "order.get", arr, 1, &resp), PR_EINVAL);
    assert_int_equal(pr_client_call(NULL, "order.get", map, 1, &resp), PR_EINVAL);
    assert_int_equal(pr_client_call(c, "order.get", map, 1, NULL), PR_EINVAL);
    assert_int_equal(pr_client_poll(c, -2), PR_EINVAL);
    assert_int_equal(pr_client_send(c, "abcdefghijabcdefghijabcdefghijabcdefghijabcdefgh", map, 1,
                                    noop_cb, NULL),
                     0); /* 48 bytes: the longest op. */
    pr_client_free(c);

    assert_string_equal(pr_strerror(0), "ok");
    assert_string_equal(pr_strerror(PR_ETIMEOUT), "no response within the request timeout");
    assert_string_equal(pr_strerror(-999), "unknown error");
}

/* ---- In-flight bound, callbacks, free ---- */

static int cancel_count;
static struct pr_client *cancel_client;
static void cancel_cb(void *arg, int status, struct pr_response *resp)
{
    (void)arg;
    if (status == PR_ECANCELED && resp->body == NULL && !resp->ok) {
        cancel_count++;
    }
    /* Sending from a callback run by free is refused. */
    if (pr_client_send(cancel_client, "order.get", NULL, 0, cancel_cb, NULL) == PR_ECANCELED) {
        cancel_count += 100;
    }
}

static void test_inflight_bound_and_cancel(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_silent));
    const unsigned a[] = {PORT_A};
    struct pr_client_options o = quick_options();
    o.max_inflight = 4;
    struct pr_client *c = client_for(a, 1, &o);
    cancel_client = c;
    cancel_count = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pr_client_send(c, "order.get", NULL, 0, cancel_cb, NULL), 0);
    }
    assert_int_equal(pr_client_send(c, "order.get", NULL, 0, cancel_cb, NULL), PR_EFULL);
    assert_int_equal(pr_client_pending(c), 4);
    assert_int_equal(pr_client_poll(c, 100), 0); /* Written; never answered. */
    assert_true(fake_wait(fake_a, 4, 2000));
    pr_client_free(c);
    assert_int_equal(cancel_count, 4 * 101);
    fake_stop(fake_a);
}

/* A callback may send; it may not poll or call. */
static struct pr_client *reentry_client;
static int reentry_seen;
static void reentry_cb(void *arg, int status, struct pr_response *resp)
{
    (void)resp;
    int depth = (int)(intptr_t)arg;
    struct pr_response inner;
    if (status == 0 && pr_client_poll(reentry_client, 0) == PR_EBUSY &&
        pr_client_call(reentry_client, "order.get", NULL, 0, &inner) == PR_EBUSY) {
        reentry_seen++;
    }
    if (depth < 3) {
        int rv = pr_client_send(reentry_client, "order.get", NULL, 0, reentry_cb,
                                (void *)(intptr_t)(depth + 1));
        reentry_seen += rv == 0 ? 10 : 0;
    }
}

static void test_callback_reentry(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    reentry_client = c;
    reentry_seen = 0;
    assert_int_equal(pr_client_send(c, "order.get", NULL, 0, reentry_cb, (void *)(intptr_t)0), 0);
    while (pr_client_pending(c) > 0) {
        assert_true(pr_client_poll(c, 2000) > 0);
    }
    assert_int_equal(reentry_seen, 4 + 3 * 10);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_int_equal(fake_a->seen_count, 4);
}

/* A callback keeps its response with pr_response_move. */
static struct pr_response kept;
static void keep_cb(void *arg, int status, struct pr_response *resp)
{
    (void)arg;
    if (status == 0) {
        pr_response_move(&kept, resp);
    }
}

static void test_callback_keeps_response(void **state)
{
    (void)state;
    assert_true(fake_start(fake_a, fake_port(PORT_A), fake_h_echo));
    const unsigned a[] = {PORT_A};
    struct pr_client *c = client_for(a, 1, NULL);
    struct rt_buf b;
    rt_buf_init(&b, 256);
    order_body(&b, "KEEP", 9);
    memset(&kept, 0, sizeof(kept));
    assert_int_equal(pr_client_send(c, "order.create", b.data, b.len, keep_cb, NULL), 0);
    assert_int_equal(pr_client_poll(c, 5000), 1);
    pr_client_free(c);
    fake_stop(fake_a);
    assert_body(&kept, &b); /* Still there after the client is gone. */
    pr_response_free(&kept);
    rt_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_request_round_trip),
        cmocka_unit_test(test_wrong_secret_fails_verification),
        cmocka_unit_test(test_pipeline_1000_out_of_order),
        cmocka_unit_test(test_unavailable_retried_then_ok),
        cmocka_unit_test(test_timeout_code_retried_then_ok),
        cmocka_unit_test(test_replayed_retried_then_ok),
        cmocka_unit_test(test_unavailable_retries_exhausted),
        cmocka_unit_test(test_default_retries_outlast_an_election),
        cmocka_unit_test(test_app_create_not_retried_once_sent),
        cmocka_unit_test(test_other_codes_not_retried),
        cmocka_unit_test(test_refused_first_server_then_second),
        cmocka_unit_test(test_all_refused),
        cmocka_unit_test(test_connect_timeout_moves_on),
        cmocka_unit_test(test_unavailable_moves_to_next_server),
        cmocka_unit_test(test_connection_lost_in_flight_retried),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_poll_timeout_and_zero),
        cmocka_unit_test(test_garbage_frames),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_unknown_ids_ignored),
        cmocka_unit_test(test_largest_body),
        cmocka_unit_test(test_new_arguments),
        cmocka_unit_test(test_send_arguments),
        cmocka_unit_test(test_inflight_bound_and_cancel),
        cmocka_unit_test(test_callback_reentry),
        cmocka_unit_test(test_callback_keeps_response),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
