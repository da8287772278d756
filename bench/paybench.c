/* paybench: a load generator that speaks the real wire protocol with signed requests.
 *
 *   paybench --servers H:P[,H:P..] --app ID --secret-file F [--connections N] [--depth D]
 *            [--seconds S] [--warmup S] [--op create|create-get|pay] [--json] [--route]
 *            [--stale]
 *            [--rate R] [--slow-ms M] [--key-file PEM]
 *
 * --key-file PEM: sign every request with this Ed25519 or RSA private key ("ed25519=" or
 * "rsa-sha256="), as an app that registered its public half at app.create does, instead of
 * with the secret (still read: --secret-file stays required).
 *
 * --route: ask the cluster where each shard's leader is (cluster.shards) and have each
 * connection create only orders whose shard its node leads, so that no request is forwarded
 * (what a client that routes by key achieves). The order numbers stay unique and spread over
 * every shard whose leader takes connections.
 *
 * --rate R: send at most R requests per second in all (0 = as fast as replies come): a steady
 * load for latency at a given throughput and for long runs (memory over time).
 *
 * --slow-ms M: also print to stderr each measured reply that took more than M ms, as
 * "slow <UTC time of the reply> <ms> conn <n> server <host:port>", at most PB_SLOW_LINES_MAX
 * lines: to see when a tail happens and line it up with the servers' logs (docs/benchmarks.md,
 * optimisation log, "where the tail came from").
 *
 * Errors are counted by code; for each code the report gives when it was first and last seen
 * (the servers' log stamps), the server the first came from and its message, so that a burst
 * can be matched to the servers' logs (a leader change, say).
 *
 * --op create-get: every other request of a connection is an order.get of the newest order
 * whose order.create that connection has seen answered OK (a create until there is one), so that
 * a get never asks for an order still being created: replies may come back in any order
 * (CONTRACT.md), and a get sent before its create's reply may rightly find nothing. Latency is
 * also reported for each op. --stale: the gets ask for consistency "stale" (the receiving
 * node's own copy, no raft barrier; with --route that node leads the order's shard).
 *
 * N connections (spread over the servers) each keep D requests in flight. Each request in flight
 * holds a slot of its connection (its id carries the slot), so that its latency is measured from
 * its own send to its own reply however the replies are ordered; a reply that names no request
 * in flight is ignored. Latency is kept in log-linear histograms (no averages), throughput
 * counts replies after the warm-up. Every order number is unique to the run, so runs never
 * collide. Client CPU time is printed so that a saturated client is visible. Prints figures;
 * asserts nothing; exits 0 unless it could not run at all.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api_envelope.h"
#include "api_frame.h"
#include "cl_sendq.h"
#include "payraft_client.h"
#include "rt_buf.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_log.h"
#include "rt_mp.h"
#include "rt_secret.h"

#define PB_CONNECTIONS_MAX 1024u
#define PB_DEPTH_MAX       1024u
#define PB_SERVERS_MAX     16u
#define PB_SECONDS_MAX     3600u
#define PB_RATE_MAX        10000000u
#define PB_SLOW_MS_MAX     3600000u
#define PB_SLOW_LINES_MAX  1000000u
/* Histogram: 64 octaves of microseconds x 32 linear sub-buckets (~3% resolution). */
#define PB_SUB       32u
#define PB_BUCKETS   (64u * PB_SUB)
#define PB_CODES_MAX 16u
/* An error code's count, and when, where and why it was first and last seen: a burst of
 * errors can then be matched to the servers' logs (their stamps are rt_log_timestamp's). */
struct pb_code {
    char name[32];
    uint64_t count;
    struct timespec first_at, last_at; /* Formatted for the report only (rt_log_format_time). */
    unsigned first_server;             /* Index into server_names. */
    char first_msg[160];
};

enum pb_op { PB_CREATE, PB_CREATE_GET, PB_PAY };

/* What one request asks: the ops a mix is made of, reported each on its own line. */
enum pb_req { PB_REQ_CREATE, PB_REQ_GET, PB_REQS };
static const char *const pb_req_names[PB_REQS] = {"order.create", "order.get"};

/* Replies and their latencies: the whole run's, and each op's. */
struct pb_stats {
    uint64_t hist[PB_BUCKETS];
    uint64_t ops; /* Replies counted (after warm-up). */
    uint64_t ok;
};

/* A request id is (a connection's count of requests << PB_SLOT_BITS) | its slot: unique on the
 * connection (its nonce is made from it), and the reply's id finds the slot at once. */
#define PB_SLOT_BITS 10u
#define PB_SLOT_MASK ((1u << PB_SLOT_BITS) - 1u)
_Static_assert((1u << PB_SLOT_BITS) >= PB_DEPTH_MAX, "a slot per request in flight");

/* One request in flight. */
struct pb_slot {
    uint64_t id; /* 0 when free. */
    uint64_t sent_us;
    uint64_t seq; /* The order it creates or reads. */
    enum pb_req req;
};

struct pb_conn;

#define PB_ROUTE_TRIES 4096u
/* Request bytes one connection may have queued (depth x a request is far less). */
#define PB_SENDQ_BYTES (4u * 1024u * 1024u)

struct pb {
    uv_loop_t *loop;
    struct cl_flusher flusher;
    struct sockaddr_in servers[PB_SERVERS_MAX];
    char server_names[PB_SERVERS_MAX][64];
    unsigned server_count;
    bool route;
    bool stale; /* --stale: gets carry consistency "stale" (served by the receiving node). */
    unsigned shard_count;
    int shard_server[RT_SHARDS_MAX];       /* Index into servers of each shard's leader, or -1. */
    unsigned server_leads[PB_SERVERS_MAX]; /* Shards each server leads. */
    const char *app;
    struct api_hmac hmac;  /* The app secret, prepared once for every request's signature. */
    EVP_PKEY *sign_key;    /* --key-file: sign with this private key instead. */
    struct rt_buf signing; /* The signing string, for sign_key. */
    unsigned connections, depth, seconds, warmup, rate;
    unsigned slow_ms;                  /* --slow-ms; 0 = off. */
    uint64_t slow_lines, slow_dropped; /* Printed, and past PB_SLOW_LINES_MAX. */
    uint64_t start_us, sent;           /* For --rate: requests sent since start_us. */
    uv_timer_t pacer;                  /* --rate: sends what connections owe, every millisecond. */
    enum pb_op op;
    bool json;
    char run_id[17];
    uint64_t start_ms, measure_ms, end_ms;
    bool stopping;
    struct pb_stats all, by_req[PB_REQS];
    struct pb_code codes[PB_CODES_MAX]; /* Error codes in the order first seen. */
    unsigned connected, closed;
    struct pb_conn *conns;
    uv_timer_t timer;
};

struct pb_conn {
    struct pb *pb;
    unsigned index;
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct cl_sendq out; /* Requests of one loop turn leave in one write, as in payd. */
    struct api_frame_decoder dec;
    uint64_t requests;  /* Sent by this connection; the high bits of the next id. */
    uint64_t seq;       /* Orders created by this connection. */
    uint64_t acked_seq; /* The newest order whose create this connection saw answered OK, */
    bool acked_any;     /* if any. */
    /* "<app>/pb<run>-<index>-", formatted once: an order's actor key is this and the order's
     * number; its merchant order number and a request's nonce start at name_at. */
    char key_prefix[96];
    size_t key_prefix_len, name_at;
    unsigned owed;         /* --rate: requests to send when the rate allows. */
    struct pb_slot *slots; /* depth of them, */
    uint16_t *free_slots;  /* and a stack of the free ones' indexes. */
    unsigned free_count;
    uint8_t read_buf[65536];
    bool dead;
};

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000u;
}

/* --slow-ms: one line for a reply that took @took_us, stamped with the wall clock (now). */
static void pb_print_slow(struct pb *pb, const struct pb_conn *c, uint64_t took_us)
{
    if (pb->slow_lines == PB_SLOW_LINES_MAX) {
        pb->slow_dropped++;
        return;
    }
    pb->slow_lines++;
    char stamp[RT_LOG_TIMESTAMP_BYTES];
    rt_log_timestamp(stamp); /* The servers' log stamps, to line the two up. */
    fprintf(stderr, "slow %s %.3f conn %u server %s\n", stamp, (double)took_us / 1000.0, c->index,
            pb->server_names[c->index % pb->server_count]);
}

static unsigned hist_bucket(uint64_t us)
{
    if (us < PB_SUB) {
        return (unsigned)us;
    }
    unsigned octave = 63u - (unsigned)__builtin_clzll(us); /* >= 5 */
    unsigned sub = (unsigned)((us >> (octave - 5)) & (PB_SUB - 1));
    unsigned b = (octave - 4) * PB_SUB + sub;
    return b < PB_BUCKETS ? b : PB_BUCKETS - 1;
}

/* Lower bound of bucket @b in microseconds. */
static double hist_value(unsigned b)
{
    if (b < PB_SUB) {
        return b;
    }
    unsigned octave = b / PB_SUB + 4, sub = b % PB_SUB;
    return (double)((uint64_t)(PB_SUB + sub) << (octave - 5));
}

static double hist_percentile(const struct pb_stats *st, double p)
{
    uint64_t total = 0;
    for (unsigned b = 0; b < PB_BUCKETS; b++) {
        total += st->hist[b];
    }
    if (total == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)(p * (double)total);
    uint64_t seen = 0;
    for (unsigned b = 0; b < PB_BUCKETS; b++) {
        seen += st->hist[b];
        if (seen > rank) {
            return hist_value(b) / 1000.0;
        }
    }
    return hist_value(PB_BUCKETS - 1) / 1000.0;
}

/* When @e was first and last seen, as the servers' logs stamp their lines. */
static void pb_code_times(const struct pb_code *e, char first_at[RT_LOG_TIMESTAMP_BYTES],
                          char last_at[RT_LOG_TIMESTAMP_BYTES])
{
    rt_log_format_time(&e->first_at, first_at);
    rt_log_format_time(&e->last_at, last_at);
}

static void pb_count_code(struct pb *pb, const struct pb_conn *c, const char *code, uint32_t len,
                          const char *msg, uint32_t msg_len)
{
    for (unsigned i = 0; i < PB_CODES_MAX; i++) {
        struct pb_code *e = &pb->codes[i];
        bool first = e->name[0] == '\0';
        if (first) {
            snprintf(e->name, sizeof(e->name), "%.*s", (int)len, code);
        }
        if (strlen(e->name) == len && memcmp(e->name, code, len) == 0) {
            e->count++;
            clock_gettime(CLOCK_REALTIME, &e->last_at);
            if (first) {
                e->first_at = e->last_at;
                e->first_server = c->index % pb->server_count;
                /* The server's words, printable ASCII only (they go into JSON and a terminal). */
                size_t n = 0;
                for (uint32_t k = 0; k < msg_len && n + 1 < sizeof(e->first_msg); k++) {
                    char ch = msg[k];
                    e->first_msg[n++] =
                        ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? ch : '?';
                }
                e->first_msg[n] = '\0';
            }
            return;
        }
    }
}

static void pb_drained(struct cl_sendq *q, int status)
{
    struct pb_conn *c = q->data;
    if (status != 0) {
        c->dead = true;
    }
}

/* @req's frame, signed as the app: with --key-file's private key, else with its secret. */
static int pb_encode(struct pb *pb, struct rt_buf *out, const struct api_request *req)
{
    return pb->sign_key != NULL ? api_request_encode_pkey(out, req, pb->sign_key, &pb->signing)
                                : api_request_encode_hmac(out, req, &pb->hmac);
}

/* @prefix followed by @n in decimal and a NUL, into @out (room for @prefix_len +
 * RT_U64_DIGITS_MAX + 1 bytes); returns the length. Not snprintf: three names per request
 * that way were 1% of the machine. */
static size_t pb_numbered(char *out, const char *prefix, size_t prefix_len, uint64_t n)
{
    memcpy(out, prefix, prefix_len);
    size_t len = prefix_len + rt_u64_decimal(out + prefix_len, n);
    out[len] = '\0';
    return len;
}

/* Encode and send @c's next request, in a free slot. */
static void pb_send(struct pb_conn *c)
{
    struct pb *pb = c->pb;
    if (pb->stopping || c->dead || c->free_count == 0) {
        return;
    }
    unsigned slot_index = c->free_slots[--c->free_count];
    struct pb_slot *slot = &c->slots[slot_index];
    uint64_t id = (++c->requests << PB_SLOT_BITS) | slot_index;
    const char *name_prefix = c->key_prefix + c->name_at;
    size_t name_prefix_len = c->key_prefix_len - c->name_at;
    char mono[sizeof(c->key_prefix) + RT_U64_DIGITS_MAX + 1],
        nonce[sizeof(c->key_prefix) + RT_U64_DIGITS_MAX + 1];
    enum pb_req req_kind = PB_REQ_CREATE;
    uint64_t seq = c->seq;
    if (pb->op == PB_CREATE_GET && c->requests % 2 == 0 && c->acked_any) {
        req_kind = PB_REQ_GET;
        seq = c->acked_seq;
    } else {
        /* With --route, skip numbers whose shard another node leads (bounded: a node that
         * leads no shard sends whatever comes next, and the cluster forwards it). */
        for (unsigned tries = 0;; tries++) {
            seq = c->seq++;
            if (!pb->route || tries == PB_ROUTE_TRIES ||
                pb->server_leads[c->index % pb->server_count] == 0) {
                break;
            }
            char key[sizeof(c->key_prefix) + RT_U64_DIGITS_MAX + 1];
            size_t n = pb_numbered(key, c->key_prefix, c->key_prefix_len, seq);
            uint16_t shard = rt_shard_of((const uint8_t *)key, n, (uint16_t)pb->shard_count);
            if (pb->shard_server[shard] == (int)(c->index % pb->server_count)) {
                break;
            }
        }
    }
    pb_numbered(mono, name_prefix, name_prefix_len, seq);
    size_t nonce_len = pb_numbered(nonce, name_prefix, name_prefix_len, id);
    uint8_t body_bytes[256];
    struct rt_buf body = {
        .data = body_bytes, .len = 0, .cap = sizeof(body_bytes), .max = sizeof(body_bytes)};
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &body);
    if (req_kind == PB_REQ_GET) {
        rt_mp_write_map(&w, pb->stale ? 2 : 1);
        rt_mp_write_cstr(&w, "merchant_order_no");
        rt_mp_write_cstr(&w, mono);
        if (pb->stale) {
            rt_mp_write_cstr(&w, "consistency");
            rt_mp_write_cstr(&w, "stale");
        }
    } else {
        rt_mp_write_map(&w, 4);
        rt_mp_write_cstr(&w, "merchant_order_no");
        rt_mp_write_cstr(&w, mono);
        rt_mp_write_cstr(&w, "amount");
        rt_mp_write_uint(&w, 1000 + seq % 1000);
        rt_mp_write_cstr(&w, "subject");
        rt_mp_write_cstr(&w, "paybench");
        rt_mp_write_cstr(&w, "channel");
        rt_mp_write_cstr(&w, seq % 2 ? "wechat" : "alipay");
    }
    struct rt_clock clock;
    rt_clock_init_system(&clock);
    uint64_t ts = rt_clock_now_ms(&clock);
    const char *op = pb_req_names[req_kind];
    struct api_request req = {.id = id,
                              .ts_ms = ts,
                              .op = op,
                              .op_len = (uint32_t)strlen(op),
                              .app = pb->app,
                              .app_len = (uint32_t)strlen(pb->app),
                              .nonce = nonce,
                              .nonce_len = (uint32_t)nonce_len,
                              .body = body.data,
                              .body_len = (uint32_t)body.len};
    uint8_t frame[2048];
    struct rt_buf out = {.data = frame, .len = 0, .cap = sizeof(frame), .max = sizeof(frame)};
    if (pb_encode(pb, &out, &req) != 0 || cl_sendq_push(&c->out, out.data, out.len) != 0) {
        c->dead = true; /* Cannot happen with these sizes; the connection stops, loudly. */
        c->free_slots[c->free_count++] = (uint16_t)slot_index;
        fprintf(stderr, "paybench: connection %u: cannot queue a request\n", c->index);
        return;
    }
    *slot = (struct pb_slot){.id = id, .sent_us = now_us(), .seq = seq, .req = req_kind};
}

/* Requests --rate allows to have been sent by now. */
static uint64_t pb_allowed(const struct pb *pb)
{
    return (uv_hrtime() / 1000u - pb->start_us) * (uint64_t)pb->rate / 1000000u;
}

/* Send the next request of @c now, or when --rate allows. */
static void pb_next(struct pb_conn *c)
{
    struct pb *pb = c->pb;
    if (pb->rate != 0 && pb->sent >= pb_allowed(pb)) {
        c->owed++;
        return;
    }
    pb->sent++;
    pb_send(c);
}

static void pb_pace(uv_timer_t *t)
{
    struct pb *pb = t->data;
    uint64_t allowed = pb_allowed(pb);
    for (unsigned i = 0; i < pb->connections && pb->sent < allowed; i++) {
        struct pb_conn *c = &pb->conns[(pb->sent + i) % pb->connections];
        while (c->owed > 0 && pb->sent < allowed) {
            c->owed--;
            pb->sent++;
            pb_send(c);
        }
    }
}

static void pb_on_reply(struct pb_conn *c, const uint8_t *payload, size_t len)
{
    struct pb *pb = c->pb;
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, payload, len);
    uint32_t fields, code_len = 0, msg_len = 0;
    uint64_t id = 0;
    const char *code = NULL, *msg = NULL;
    if (rt_mp_read_map(&r, &fields) != 0) {
        return;
    }
    for (uint32_t i = 0; i < fields; i++) {
        const char *k;
        uint32_t kl;
        if (rt_mp_read_str(&r, &k, &kl) != 0) {
            return;
        }
        if (rt_mp_key_is(k, kl, "id")) {
            rt_mp_read_uint(&r, &id);
        } else if (rt_mp_key_is(k, kl, "code")) {
            rt_mp_read_str(&r, &code, &code_len);
        } else if (rt_mp_key_is(k, kl, "msg") && rt_mp_peek(&r) == RT_MP_STR) {
            rt_mp_read_str(&r, &msg, &msg_len);
        } else {
            rt_mp_skip(&r);
        }
    }
    unsigned slot_index = (unsigned)(id & PB_SLOT_MASK);
    if (id == 0 || slot_index >= pb->depth || c->slots[slot_index].id != id) {
        return; /* Not a request of ours in flight: nothing to measure, nothing freed. */
    }
    struct pb_slot done = c->slots[slot_index];
    c->slots[slot_index].id = 0;
    c->free_slots[c->free_count++] = (uint16_t)slot_index;
    bool ok = code != NULL && code_len == 2 && memcmp(code, "OK", 2) == 0;
    if (ok && done.req == PB_REQ_CREATE && (!c->acked_any || done.seq > c->acked_seq)) {
        c->acked_seq = done.seq;
        c->acked_any = true;
    }
    uint64_t took_us = now_us() - done.sent_us;
    if (rt_monotonic_ms() >= pb->measure_ms && !pb->stopping) {
        struct pb_stats *each[2] = {&pb->all, &pb->by_req[done.req]};
        for (unsigned k = 0; k < 2; k++) {
            each[k]->ops++;
            each[k]->hist[hist_bucket(took_us)]++;
            each[k]->ok += ok;
        }
        if (pb->slow_ms != 0 && took_us > (uint64_t)pb->slow_ms * 1000u) {
            pb_print_slow(pb, c, took_us);
        }
        if (!ok && code != NULL) {
            pb_count_code(pb, c, code, code_len, msg, msg_len);
        }
    }
    pb_next(c);
}

static void pb_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct pb_conn *c = h->data;
    (void)suggested;
    buf->base = (char *)c->read_buf;
    buf->len = sizeof(c->read_buf);
}

static void pb_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct pb_conn *c = s->data;
    if (nread < 0) {
        if (!c->pb->stopping) {
            fprintf(stderr, "paybench: connection %u: %s\n", c->index, uv_strerror((int)nread));
        }
        c->dead = true;
        uv_read_stop(s);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    for (;;) {
        size_t used;
        struct api_frame frame;
        int rv = api_frame_feed(&c->dec, p, left, &used, &frame);
        if (rv < 0) {
            c->dead = true;
            uv_read_stop(s);
            return;
        }
        p += used;
        left -= used;
        if (rv == API_FRAME_NEED_MORE) {
            return;
        }
        pb_on_reply(c, frame.data, frame.len);
    }
}

static void pb_connected(uv_connect_t *req, int status)
{
    struct pb_conn *c = req->data;
    if (status != 0) {
        fprintf(stderr, "paybench: connect: %s\n", uv_strerror(status));
        c->dead = true;
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, pb_alloc, pb_read);
    c->pb->connected++;
    for (unsigned i = 0; i < c->pb->depth; i++) {
        pb_next(c);
    }
}

static void pb_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void pb_timer(uv_timer_t *t)
{
    struct pb *pb = t->data;
    if (rt_monotonic_ms() >= pb->end_ms) {
        pb->stopping = true;
        uv_walk(pb->loop, pb_close_walk, NULL);
    }
}

static int parse_servers(struct pb *pb, const char *list)
{
    char copy[1024];
    if (strlen(list) >= sizeof(copy)) {
        return -1;
    }
    strcpy(copy, list);
    for (char *save, *tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        unsigned port;
        if (colon == NULL || pb->server_count == PB_SERVERS_MAX) {
            return -1;
        }
        *colon = '\0';
        snprintf(pb->server_names[pb->server_count], sizeof(pb->server_names[0]), "%s:%s", tok,
                 colon + 1);
        if (rt_uint_parse(colon + 1, 1, 65535, &port) != 0 ||
            uv_ip4_addr(tok, (int)port, &pb->servers[pb->server_count]) != 0) {
            return -1;
        }
        pb->server_count++;
    }
    return pb->server_count > 0 ? 0 : -1;
}

/* --route: where each shard's leader is, asked through the client library (which reads the
 * map as its own routing does; @secret signs the request). 0, or -1 with a message. */
static int pb_fetch_routes(struct pb *pb, const char *servers, const uint8_t *secret,
                           size_t secret_len)
{
    struct pr_client *client = NULL;
    int leaders[PR_SHARDS_MAX];
    unsigned shard_count = 0;
    int rv = pr_client_new(servers, pb->app, secret, secret_len, NULL, &client);
    if (rv == 0) {
        rv = pr_client_shard_map(client, &shard_count, leaders, PR_SHARDS_MAX);
    }
    pr_client_free(client);
    if (rv != 0) {
        fprintf(stderr, "paybench: --route: cannot read cluster.shards: %s\n", pr_strerror(rv));
        return -1;
    }
    pb->shard_count = shard_count;
    for (unsigned s = 0; s < RT_SHARDS_MAX; s++) {
        /* The library's server indexes follow --servers, as pb->servers do. */
        pb->shard_server[s] = s < shard_count ? leaders[s] : -1;
        if (pb->shard_server[s] >= 0) {
            pb->server_leads[pb->shard_server[s]]++;
        }
    }
    return 0;
}

static const char *pb_op_name(enum pb_op op)
{
    return op == PB_CREATE ? "create" : op == PB_CREATE_GET ? "create-get" : "pay";
}

/* "ops", throughput, "ok" and the percentiles of @st, as JSON members (no braces). */
static void pb_print_json_stats(const struct pb_stats *st, double secs)
{
    printf("\"ops\": %" PRIu64 ", \"seconds\": %.3f, \"throughput_ops_s\": %.1f, \"ok\": %" PRIu64
           ", \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f",
           st->ops, secs, (double)st->ops / secs, st->ok, hist_percentile(st, 0.50),
           hist_percentile(st, 0.90), hist_percentile(st, 0.99), hist_percentile(st, 0.999));
}

static void pb_print_latency(const char *label, const struct pb_stats *st)
{
    printf("%s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f\n", label, hist_percentile(st, 0.50),
           hist_percentile(st, 0.90), hist_percentile(st, 0.99), hist_percentile(st, 0.999));
}

static void usage(void)
{
    fprintf(stderr,
            "usage: paybench --servers H:P[,H:P..] --app ID --secret-file F\n"
            "                [--key-file PEM (sign with this Ed25519 or RSA private key; the app\n"
            "                 registered its public half)]\n"
            "                [--connections N (1..%u, default 16)] [--depth D (1..%u, "
            "default 16)]\n"
            "                [--seconds S (default 10)] [--warmup S (default 2)]\n"
            "                [--op create|create-get|pay] [--json] [--route]\n"
            "                [--stale (create-get: the gets read the receiving node's copy)]\n"
            "                [--rate R (requests/s in all, 0 = unlimited, default 0)]\n"
            "                [--slow-ms M (1..%u: print each reply slower than M ms to stderr)]\n",
            PB_CONNECTIONS_MAX, PB_DEPTH_MAX, PB_SLOW_MS_MAX);
}

int main(int argc, char **argv)
{
    static struct pb pb;
    pb.connections = 16;
    pb.depth = 16;
    pb.seconds = 10;
    pb.warmup = 2;
    const char *secret_file = NULL, *servers = NULL, *key_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(argv[i], "--json") == 0) {
            pb.json = true;
            continue;
        } else if (strcmp(argv[i], "--route") == 0) {
            pb.route = true;
            continue;
        } else if (strcmp(argv[i], "--stale") == 0) {
            pb.stale = true;
            continue;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (v == NULL) {
            bad = 1;
        } else if (strcmp(argv[i], "--servers") == 0) {
            servers = v;
        } else if (strcmp(argv[i], "--app") == 0) {
            pb.app = v;
            bad = strlen(v) == 0 || strlen(v) > 32;
        } else if (strcmp(argv[i], "--secret-file") == 0) {
            secret_file = v;
        } else if (strcmp(argv[i], "--key-file") == 0) {
            key_file = v;
        } else if (strcmp(argv[i], "--connections") == 0) {
            bad = rt_uint_parse(v, 1, PB_CONNECTIONS_MAX, &pb.connections);
        } else if (strcmp(argv[i], "--depth") == 0) {
            bad = rt_uint_parse(v, 1, PB_DEPTH_MAX, &pb.depth);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            bad = rt_uint_parse(v, 1, PB_SECONDS_MAX, &pb.seconds);
        } else if (strcmp(argv[i], "--rate") == 0) {
            bad = rt_uint_parse(v, 0, PB_RATE_MAX, &pb.rate);
        } else if (strcmp(argv[i], "--slow-ms") == 0) {
            bad = rt_uint_parse(v, 1, PB_SLOW_MS_MAX, &pb.slow_ms);
        } else if (strcmp(argv[i], "--warmup") == 0) {
            bad = rt_uint_parse(v, 0, PB_SECONDS_MAX, &pb.warmup);
        } else if (strcmp(argv[i], "--op") == 0) {
            if (strcmp(v, "create") == 0) {
                pb.op = PB_CREATE;
            } else if (strcmp(v, "create-get") == 0) {
                pb.op = PB_CREATE_GET;
            } else if (strcmp(v, "pay") == 0) {
                fprintf(stderr, "paybench: --op pay needs the payments issue (paysim): not yet\n");
                return 2;
            } else {
                bad = 1;
            }
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "paybench: bad or missing value for %s\n", argv[i]);
            usage();
            return 2;
        }
        i++;
    }
    if (servers == NULL || pb.app == NULL || secret_file == NULL ||
        parse_servers(&pb, servers) != 0) {
        fprintf(stderr, "paybench: need --servers, --app and --secret-file\n");
        usage();
        return 2;
    }
    uint8_t secret[PR_SECRET_BYTES_MAX];
    size_t secret_len = 0;
    char why[RT_SECRET_WHY_BYTES];
    if (rt_secret_file_read(secret_file, 1, sizeof(secret), secret, &secret_len, why,
                            sizeof(why)) != 0) {
        fprintf(stderr, "paybench: %s\n", why);
        return 2;
    }
    uint8_t rnd[8];
    RAND_bytes(rnd, sizeof(rnd));
    for (int i = 0; i < 8; i++) {
        snprintf(pb.run_id + 2 * i, 3, "%02x", rnd[i]);
    }
    bool keyed = api_hmac_init(&pb.hmac, secret, secret_len) == 0;
    bool routed = keyed && (!pb.route || pb_fetch_routes(&pb, servers, secret, secret_len) == 0);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (!keyed) {
        fprintf(stderr, "paybench: cannot prepare the HMAC key\n");
    }
    if (!routed) {
        return 2;
    }
    if (key_file != NULL) {
        FILE *f = fopen(key_file, "r");
        pb.sign_key = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
        if (f != NULL) {
            fclose(f);
        }
        if (pb.sign_key == NULL || !api_pubkey_usable(pb.sign_key)) {
            fprintf(stderr,
                    "paybench: --key-file %s: not a readable Ed25519 or RSA (2048-4096 bits) "
                    "private key\n",
                    key_file);
            return 2;
        }
        rt_buf_init(&pb.signing, API_FRAME_BYTES_MAX + 1024);
    }
    pb.loop = uv_default_loop();
    pb.conns = calloc(pb.connections, sizeof(*pb.conns));
    if (pb.conns == NULL) {
        fprintf(stderr, "paybench: out of memory\n");
        return 1;
    }
    cl_flusher_init(&pb.flusher, pb.loop);
    pb.start_ms = rt_monotonic_ms();
    pb.measure_ms = pb.start_ms + pb.warmup * 1000u;
    pb.end_ms = pb.measure_ms + pb.seconds * 1000u;
    for (unsigned i = 0; i < pb.connections; i++) {
        struct pb_conn *c = &pb.conns[i];
        c->pb = &pb;
        c->index = i;
        /* Fits: --app is at most 32 bytes, the run id 16, the index 10 digits. */
        int n = snprintf(c->key_prefix, sizeof(c->key_prefix), "%s/pb%s-%u-", pb.app, pb.run_id, i);
        if (n <= 0 || (size_t)n >= sizeof(c->key_prefix)) {
            fprintf(stderr, "paybench: order names do not fit\n");
            return 2;
        }
        c->key_prefix_len = (size_t)n;
        c->name_at = strlen(pb.app) + 1;
        c->slots = calloc(pb.depth, sizeof(*c->slots));
        c->free_slots = calloc(pb.depth, sizeof(*c->free_slots));
        if (c->slots == NULL || c->free_slots == NULL) {
            fprintf(stderr, "paybench: out of memory\n");
            return 1;
        }
        for (unsigned k = 0; k < pb.depth; k++) {
            c->free_slots[c->free_count++] = (uint16_t)(pb.depth - 1u - k); /* 0 on top. */
        }
        api_frame_decoder_init(&c->dec, API_FRAME_BYTES_MAX);
        uv_tcp_init(pb.loop, &c->tcp);
        c->tcp.data = c;
        cl_sendq_init(&c->out, &pb.flusher, (uv_stream_t *)&c->tcp, PB_SENDQ_BYTES, pb_drained, c);
        c->connect.data = c;
        uv_tcp_connect(&c->connect, &c->tcp,
                       (const struct sockaddr *)&pb.servers[i % pb.server_count], pb_connected);
    }
    uv_timer_init(pb.loop, &pb.timer);
    pb.timer.data = &pb;
    uv_timer_start(&pb.timer, pb_timer, 100, 100);
    pb.start_us = uv_hrtime() / 1000u;
    if (pb.rate != 0) {
        uv_timer_init(pb.loop, &pb.pacer);
        pb.pacer.data = &pb;
        uv_timer_start(&pb.pacer, pb_pace, 1, 1);
    }
    if (pb.slow_ms != 0) {
        /* Slow lines may come by the thousand: buffered, not a write() each. Flushed at exit. */
        setvbuf(stderr, NULL, _IOFBF, 1u << 16);
    }
    double cpu0 = rt_process_cpu_seconds();
    uv_run(pb.loop, UV_RUN_DEFAULT);
    double cpu = rt_process_cpu_seconds() - cpu0;
    if (pb.slow_dropped != 0) {
        fprintf(stderr,
                "slow: %" PRIu64 " more replies over %u ms not printed (at most %u lines)\n",
                pb.slow_dropped, pb.slow_ms, PB_SLOW_LINES_MAX);
    }
    for (unsigned i = 0; i < pb.connections; i++) {
        cl_sendq_free(&pb.conns[i].out);
    }
    double secs = (double)pb.seconds;
    if (pb.json) {
        /* Each op's figures first, the whole run's after them: scripts that pick a field with
         * a greedy sed pattern (scripts/bench.sh) find the last one, the whole run's. */
        printf("{\"connections\": %u, \"depth\": %u, \"op\": \"%s\", \"by_op\": {", pb.connections,
               pb.depth, pb_op_name(pb.op));
        for (unsigned k = 0, shown = 0; k < PB_REQS; k++) {
            if (pb.by_req[k].ops != 0) {
                printf("%s\"%s\": {", shown++ == 0 ? "" : ", ", pb_req_names[k]);
                pb_print_json_stats(&pb.by_req[k], secs);
                printf("}");
            }
        }
        printf("}, ");
        pb_print_json_stats(&pb.all, secs);
        printf(", \"errors\": {");
        for (unsigned i = 0; i < PB_CODES_MAX && pb.codes[i].name[0] != '\0'; i++) {
            printf("%s\"%s\": %" PRIu64, i == 0 ? "" : ", ", pb.codes[i].name, pb.codes[i].count);
        }
        printf("}, \"error_details\": {");
        for (unsigned i = 0; i < PB_CODES_MAX && pb.codes[i].name[0] != '\0'; i++) {
            const struct pb_code *e = &pb.codes[i];
            char first_at[RT_LOG_TIMESTAMP_BYTES], last_at[RT_LOG_TIMESTAMP_BYTES];
            pb_code_times(e, first_at, last_at);
            printf("%s\"%s\": {\"first_at\": \"%s\", \"last_at\": \"%s\", \"first_server\": "
                   "\"%s\", \"first_msg\": \"%s\"}",
                   i == 0 ? "" : ", ", e->name, first_at, last_at, pb.server_names[e->first_server],
                   e->first_msg);
        }
        printf("}, \"client_cpu_s\": %.3f}\n", cpu);
    } else {
        printf("paybench: %u connections x depth %u, %u s (+%u s warm-up), op %s\n", pb.connections,
               pb.depth, pb.seconds, pb.warmup, pb_op_name(pb.op));
        printf("  %" PRIu64 " replies, %.0f ops/s, %" PRIu64 " errors\n", pb.all.ops,
               (double)pb.all.ops / secs, pb.all.ops - pb.all.ok);
        pb_print_latency("  latency ms:", &pb.all);
        for (unsigned k = 0; pb.op != PB_CREATE && k < PB_REQS; k++) {
            const struct pb_stats *st = &pb.by_req[k];
            printf("  %s: %" PRIu64 " replies, %.0f ops/s, %" PRIu64 " errors\n", pb_req_names[k],
                   st->ops, (double)st->ops / secs, st->ops - st->ok);
            pb_print_latency("    latency ms:", st);
        }
        for (unsigned i = 0; i < PB_CODES_MAX && pb.codes[i].name[0] != '\0'; i++) {
            const struct pb_code *e = &pb.codes[i];
            char first_at[RT_LOG_TIMESTAMP_BYTES], last_at[RT_LOG_TIMESTAMP_BYTES];
            pb_code_times(e, first_at, last_at);
            printf("  %s: %" PRIu64 " (first %s from %s: \"%s\"; last %s)\n", e->name, e->count,
                   first_at, pb.server_names[e->first_server], e->first_msg, last_at);
        }
        printf("  client cpu %.2f s (%.0f%% of one core)\n", cpu, 100.0 * cpu / secs);
    }
    for (unsigned i = 0; i < pb.connections; i++) {
        free(pb.conns[i].slots);
        free(pb.conns[i].free_slots);
    }
    free(pb.conns);
    api_hmac_free(&pb.hmac);
    EVP_PKEY_free(pb.sign_key);
    rt_buf_free(&pb.signing);
    return pb.connected == 0 ? 1 : 0;
}
