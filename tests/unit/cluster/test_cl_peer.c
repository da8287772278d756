/* Tests for cl_peer: the authenticated peer port and its raft_uv_transport.
 *
 * Real sockets on 127.0.0.1. Ports are PAYRAFT_PORT_BASE (default 7000) + 900 + k, where k is
 * unique per test (TEST_PORTS apart), so parallel runs with different bases never collide.
 * Every wait drives the uv loop with a deadline: a test fails, it never hangs.
 *
 * The transport is exercised the way raft_uv uses it (init, listen, connect, close; streams
 * closed with uv_close and released with raft_free), and the wire format is checked against
 * a second, independent implementation written here with raw sockets and OpenSSL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cl_peer.h"
#include "rt_error.h"
#include "test_support.h"

#define TEST_CLUSTER_ID 42u
#define TEST_GROUP      5u
#define TEST_WAIT_MS    10000u /* Watchdog of every wait. */
#define TEST_PORTS      6      /* Ports reserved per test. */
#define TEST_NODES_MAX  3
#define TEST_READ_BYTES 256u
#define TEST_RAW_CONNS  ((int)CL_PEER_PENDING_MAX + 36)

static const uint8_t test_secret[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t other_secret[32] = "fedcba9876543210fedcba9876543210";

/* ---- Loop driving ---- */

struct world {
    uv_loop_t loop;
    uv_timer_t tick; /* Keeps uv_run(UV_RUN_ONCE) returning so deadlines are checked. */
    int port_first;
};

static int port_base(void)
{
    const char *env = getenv("PAYRAFT_PORT_BASE");
    int base = env != NULL ? atoi(env) : 7000;
    assert_true(base > 0 && base < 65535 - 1000);
    return base;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void world_init(struct world *w, int test_index)
{
    assert_int_equal(uv_loop_init(&w->loop), 0);
    assert_int_equal(uv_timer_init(&w->loop, &w->tick), 0);
    assert_int_equal(uv_timer_start(&w->tick, tick_cb, 2, 2), 0);
    w->port_first = port_base() + 900 + test_index * TEST_PORTS;
    assert_true(test_index * TEST_PORTS + TEST_PORTS <= 100);
}

static void world_addr(const struct world *w, int k, char *out, size_t len)
{
    assert_true(k < TEST_PORTS);
    snprintf(out, len, "127.0.0.1:%d", w->port_first + k);
}

typedef bool (*pred_fn)(void *arg);

static bool run_until(struct world *w, pred_fn pred, void *arg, unsigned timeout_ms)
{
    return test_run_until(&w->loop, pred, arg, timeout_ms);
}

struct int_at_least {
    const int *value;
    int target;
};

static bool pred_int_at_least(void *arg)
{
    struct int_at_least *p = arg;
    return *p->value >= p->target;
}

static void wait_int(struct world *w, const int *value, int target)
{
    struct int_at_least p = {value, target};
    assert_true(run_until(w, pred_int_at_least, &p, TEST_WAIT_MS));
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

static void world_fini(struct world *w)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)TEST_WAIT_MS * 1000000u;
    uv_close((uv_handle_t *)&w->tick, NULL);
    while (uv_loop_alive(&w->loop) && uv_hrtime() < deadline) {
        uv_run(&w->loop, UV_RUN_NOWAIT);
    }
    assert_false(uv_loop_alive(&w->loop));
    assert_int_equal(uv_loop_close(&w->loop), 0); /* Every handle was closed. */
}

/* ---- Nodes ---- */

struct node {
    struct cl_peer *peer;
    char addr[64];
    uint64_t id;
    int destroyed;
};

static void node_destroyed_cb(void *arg)
{
    struct node *n = arg;
    n->destroyed++;
}

static void node_start_with(struct world *w, struct node *n, uint64_t id, int port_k,
                            uint64_t cluster_id, const uint8_t *secret, bool listen)
{
    struct cl_peer_config config;

    memset(n, 0, sizeof(*n));
    n->id = id;
    world_addr(w, port_k, n->addr, sizeof(n->addr));
    config.cluster_id = cluster_id;
    config.node_id = id;
    config.addr = n->addr;
    config.secret = secret;
    config.secret_len = 32;
    assert_int_equal(cl_peer_create(&w->loop, &config, &n->peer), 0);
    if (listen) {
        assert_int_equal(cl_peer_listen(n->peer), 0);
    }
}

static void node_start(struct world *w, struct node *n, uint64_t id)
{
    node_start_with(w, n, id, (int)id, TEST_CLUSTER_ID, test_secret, true);
}

static void node_stop(struct world *w, struct node *n)
{
    cl_peer_destroy(n->peer, node_destroyed_cb, n);
    assert_int_equal(n->destroyed, 0); /* Always asynchronous. */
    wait_int(w, &n->destroyed, 1);
    n->peer = NULL;
}

static struct cl_peer_stats node_stats(const struct node *n)
{
    struct cl_peer_stats s;
    cl_peer_stats(n->peer, &s);
    return s;
}

/* ---- Streams: a reader that collects bytes, and closing the way each owner must ---- */

struct reader {
    char buf[TEST_READ_BYTES];
    int len;
    int eof;
};

static void reader_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct reader *r = h->data;
    (void)suggested;
    *buf = uv_buf_init(r->buf + r->len, (unsigned)(sizeof(r->buf) - (size_t)r->len));
}

static void reader_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct reader *r = s->data;
    (void)buf;
    if (nread > 0) {
        r->len += (int)nread;
    } else if (nread < 0) {
        r->eof = 1;
        uv_read_stop(s);
    }
}

static void reader_start(uv_stream_t *s, struct reader *r)
{
    memset(r, 0, sizeof(*r));
    s->data = r;
    assert_int_equal(uv_read_start(s, reader_alloc_cb, reader_read_cb), 0);
}

static void stream_write(uv_stream_t *s, const char *text)
{
    uv_buf_t buf = uv_buf_init((char *)text, (unsigned)strlen(text));
    assert_int_equal(uv_try_write(s, &buf, 1), (int)strlen(text));
}

static int streams_freed;

/* raft_uv releases a transport's stream with raft_free after uv_close (uv_recv.c, uv_send.c). */
static void close_raft_stream_cb(uv_handle_t *h)
{
    raft_free(h);
    streams_freed++;
}

/* cl_peer.h: a forwarding stream is malloc'd; its owner frees it. */
static void close_malloc_stream_cb(uv_handle_t *h)
{
    free(h);
    streams_freed++;
}

static void assert_nodelay(uv_stream_t *s)
{
    uv_os_fd_t fd;
    int on = 0;
    socklen_t len = sizeof(on);
    assert_int_equal(uv_fileno((uv_handle_t *)s, &fd), 0);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_int_not_equal(on, 0);
}

/* ---- A raft group as raft_uv drives it ---- */

struct rgroup {
    struct raft_uv_transport t;
    struct world *w;
    /* accept_cb */
    int accepted;
    raft_id accept_id;
    char accept_addr[64];
    uv_stream_t *accept_stream;
    /* connect_cb */
    struct raft_uv_connect req;
    int connected;
    int connect_status;
    uv_stream_t *connect_stream;
    int connect_seq;
    /* close */
    int closed;
    int close_seq;
};

static int event_seq; /* Orders callbacks across objects. */

static void rgroup_accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                             uv_stream_t *stream)
{
    struct rgroup *g = t->data;
    assert_non_null(stream);
    g->accepted++;
    g->accept_id = id;
    snprintf(g->accept_addr, sizeof(g->accept_addr), "%s", address); /* Not kept by raft. */
    g->accept_stream = stream;
}

static void rgroup_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    struct rgroup *g = req->data;
    g->connected++;
    g->connect_status = status;
    g->connect_stream = stream;
    g->connect_seq = ++event_seq;
    if (status == 0) {
        assert_non_null(stream);
    } else {
        assert_null(stream);
    }
}

static void rgroup_close_cb(struct raft_uv_transport *t)
{
    struct rgroup *g = t->data;
    g->closed++;
    g->close_seq = ++event_seq;
}

static void rgroup_start(struct world *w, struct rgroup *g, struct node *n, uint32_t group_id)
{
    memset(g, 0, sizeof(*g));
    g->w = w;
    assert_int_equal(cl_peer_transport_init(n->peer, group_id, &g->t), 0);
    g->t.data = g;
    assert_int_equal(g->t.init(&g->t, n->id, n->addr), 0);
    assert_int_equal(g->t.listen(&g->t, rgroup_accept_cb), 0);
}

static void rgroup_connect(struct rgroup *g, raft_id id, const char *addr)
{
    g->req.data = g;
    assert_int_equal(g->t.connect(&g->t, &g->req, id, addr, rgroup_connect_cb), 0);
}

static void rgroup_stop(struct world *w, struct rgroup *g)
{
    g->t.close(&g->t, rgroup_close_cb);
    wait_int(w, &g->closed, 1);
    cl_peer_transport_close(&g->t);
}

/* ---- Raw sockets: an independent implementation of the handshake ---- */

static int raw_connect(const struct world *w, int port_k)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)(w->port_first + port_k));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Completes in the kernel (listen backlog) without the loop running. */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int raw_listen(const struct world *w, int port_k)
{
    struct sockaddr_in sa;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)(w->port_first + port_k));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static int raw_accept(struct world *w, int listen_fd)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)TEST_WAIT_MS * 1000000u;
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            return fd;
        }
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        assert_true(uv_hrtime() < deadline);
        uv_run(&w->loop, UV_RUN_ONCE);
    }
}

static void raw_send(int fd, const void *bytes, size_t len)
{
    assert_int_equal(send(fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Receive exactly @len bytes while the loop runs; false if the peer closed first. */
static bool raw_recv(struct world *w, int fd, uint8_t *buf, size_t len)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)TEST_WAIT_MS * 1000000u;
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            return false;
        }
        assert_true(uv_hrtime() < deadline);
        uv_run(&w->loop, UV_RUN_ONCE);
    }
    return true;
}

/* Wait until the other side closes @fd; returns the bytes that arrived before. */
static size_t raw_wait_closed(struct world *w, int fd, unsigned timeout_ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
    uint8_t buf[256];
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            return total;
        }
        assert_true(uv_hrtime() < deadline);
        uv_run(&w->loop, UV_RUN_ONCE);
    }
}

static bool raw_is_open(int fd)
{
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    }
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* A HELLO as cl_peer.h specifies it. */
static void make_hello(uint8_t hello[128], uint64_t cluster, uint32_t group, uint64_t node,
                       const char *addr)
{
    memset(hello, 0, 128);
    memcpy(hello, "PRPEER01", 8);
    put_be(hello + 8, 1, 2);
    put_be(hello + 12, cluster, 8);
    put_be(hello + 20, group, 4);
    put_be(hello + 24, node, 8);
    for (int i = 0; i < 32; i++) {
        hello[32 + i] = (uint8_t)(i * 7 + 1);
    }
    hello[64] = (uint8_t)strlen(addr);
    memcpy(hello + 65, addr, strlen(addr));
}

static void test_mac(const uint8_t *secret, char tag, const uint8_t hello[128],
                     const uint8_t nonce_s[32], uint8_t out[32])
{
    uint8_t input[1 + 128 + 32];
    unsigned len = 0;
    input[0] = (uint8_t)tag;
    memcpy(input + 1, hello, 128);
    memcpy(input + 129, nonce_s, 32);
    assert_non_null(HMAC(EVP_sha256(), secret, 32, input, sizeof(input), out, &len));
    assert_int_equal(len, 32);
}

/* ---- Tests ---- */

/* For calls that must fail synchronously: cl_peer then never calls back. */
static void never_connect_cb(struct cl_peer_connect *req, uv_stream_t *stream, int status)
{
    (void)req;
    (void)stream;
    (void)status;
    fail_msg("callback after a synchronous failure");
}

static void test_config_invalid(void **state)
{
    struct world w;
    struct node n;
    struct node twin;
    struct cl_peer *peer = NULL;
    struct cl_peer_config c = {.cluster_id = 1, .node_id = 1, .secret = test_secret};
    struct raft_uv_transport t1;
    struct raft_uv_transport t2;
    struct cl_peer_connect req;
    char addr[64];
    (void)state;

    world_init(&w, 0);
    world_addr(&w, 0, addr, sizeof(addr));
    c.addr = addr;
    c.secret_len = CL_PEER_SECRET_BYTES_MIN - 1;
    assert_int_equal(cl_peer_create(&w.loop, &c, &peer), RT_EINVAL);
    c.secret_len = CL_PEER_SECRET_BYTES_MAX + 1;
    assert_int_equal(cl_peer_create(&w.loop, &c, &peer), RT_EINVAL);
    c.secret_len = 32;
    c.node_id = 0;
    assert_int_equal(cl_peer_create(&w.loop, &c, &peer), RT_EINVAL);
    c.node_id = 1;
    const char *bad_addrs[] = {"localhost:7000",
                               "127.0.0.1",
                               "127.0.0.1:",
                               "127.0.0.1:0",
                               "127.0.0.1:65536",
                               "127.0.0.1:7x",
                               ":7000",
                               "",
                               "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:7000"};
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        c.addr = bad_addrs[i];
        assert_int_equal(cl_peer_create(&w.loop, &c, &peer), RT_EINVAL);
    }
    assert_null(peer);
    c.addr = "[::1]:7000"; /* IPv6 literals are accepted (not bound here). */
    assert_int_equal(cl_peer_create(&w.loop, &c, &peer), 0);
    cl_peer_destroy(peer, NULL, NULL);

    /* Group ids: taken, forwarding channel, out of range. */
    node_start(&w, &n, 1);
    assert_int_equal(cl_peer_transport_init(n.peer, TEST_GROUP, &t1), 0);
    assert_int_equal(cl_peer_transport_init(n.peer, TEST_GROUP, &t2), RT_EINVAL);
    assert_int_equal(cl_peer_transport_init(n.peer, CL_PEER_GROUP_FORWARD, &t2), RT_EINVAL);
    assert_int_equal(cl_peer_transport_init(n.peer, 100000, &t2), RT_EINVAL);
    assert_int_equal(cl_peer_transport_init(n.peer, CL_PEER_GROUP_META, &t2), 0);
    /* init refuses a raft id that is not the node's. */
    assert_int_not_equal(t1.init(&t1, 9, n.addr), 0);
    cl_peer_transport_close(&t2); /* Never used: may be freed without close. */
    cl_peer_transport_close(&t1);
    /* The group id is free again. */
    assert_int_equal(cl_peer_transport_init(n.peer, TEST_GROUP, &t1), 0);
    cl_peer_transport_close(&t1);

    /* Names are not resolved; self and node 0 are not forwarding targets. */
    assert_int_equal(cl_peer_connect_forward(n.peer, &req, 2, "localhost:1", never_connect_cb),
                     RT_EINVAL);
    assert_int_equal(cl_peer_connect_forward(n.peer, &req, 1, n.addr, never_connect_cb), RT_EINVAL);
    assert_int_equal(cl_peer_connect_forward(n.peer, &req, 0, n.addr, never_connect_cb), RT_EINVAL);

    /* A port in use. */
    node_start_with(&w, &twin, 2, 1, TEST_CLUSTER_ID, test_secret, false);
    assert_int_equal(cl_peer_listen(twin.peer), RT_EIO);
    node_stop(&w, &twin);
    node_stop(&w, &n);
    world_fini(&w);
}

/* Two nodes, one group, connected as raft would: bytes flow raw in both directions, written
 * immediately after the hand-over, and nothing is swallowed by the handshake. */
static void test_raft_transport_roundtrip(void **state)
{
    struct world w;
    struct node n1;
    struct node n2;
    struct rgroup g1;
    struct rgroup g2;
    struct reader r1;
    struct reader r2;
    (void)state;

    world_init(&w, 1);
    node_start(&w, &n1, 1);
    node_start(&w, &n2, 2);
    rgroup_start(&w, &g1, &n1, TEST_GROUP);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);

    rgroup_connect(&g1, 2, n2.addr);
    wait_int(&w, &g1.connected, 1);
    assert_int_equal(g1.connect_status, 0);
    stream_write(g1.connect_stream, "append-entries-1");
    reader_start(g1.connect_stream, &r1);
    assert_nodelay(g1.connect_stream);

    wait_int(&w, &g2.accepted, 1);
    assert_int_equal(g2.accept_id, 1);
    assert_string_equal(g2.accept_addr, n1.addr);
    stream_write(g2.accept_stream, "reply-2");
    reader_start(g2.accept_stream, &r2);
    assert_nodelay(g2.accept_stream);

    wait_int(&w, &r2.len, (int)strlen("append-entries-1"));
    wait_int(&w, &r1.len, (int)strlen("reply-2"));
    run_for(&w, 50);
    assert_int_equal(r2.len, (int)strlen("append-entries-1"));
    assert_memory_equal(r2.buf, "append-entries-1", (size_t)r2.len);
    assert_int_equal(r1.len, (int)strlen("reply-2"));
    assert_memory_equal(r1.buf, "reply-2", (size_t)r1.len);
    assert_int_equal(g1.accepted, 0);
    assert_int_equal(g2.connected, 0);

    assert_int_equal(node_stats(&n2).accepted, 1);
    assert_int_equal(node_stats(&n2).rejected, 0);
    assert_int_equal(node_stats(&n1).connected, 1);
    assert_int_equal(node_stats(&n1).connect_failures, 0);

    /* raft closes and frees its streams, then the transports. */
    streams_freed = 0;
    uv_close((uv_handle_t *)g1.connect_stream, close_raft_stream_cb);
    uv_close((uv_handle_t *)g2.accept_stream, close_raft_stream_cb);
    wait_int(&w, &streams_freed, 2);
    rgroup_stop(&w, &g1);
    rgroup_stop(&w, &g2);
    node_stop(&w, &n1);
    node_stop(&w, &n2);
    world_fini(&w);
}

/* A client with another secret: the server's proof fails on the client, the server counts a
 * refusal, and raft on the server side never sees a stream. */
static void test_wrong_secret(void **state)
{
    struct world w;
    struct node n1;
    struct node n2;
    struct rgroup g1;
    struct rgroup g2;
    (void)state;

    world_init(&w, 2);
    node_start_with(&w, &n1, 1, 1, TEST_CLUSTER_ID, other_secret, true);
    node_start(&w, &n2, 2);
    rgroup_start(&w, &g1, &n1, TEST_GROUP);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);

    rgroup_connect(&g1, 2, n2.addr);
    wait_int(&w, &g1.connected, 1);
    assert_int_equal(g1.connect_status, RAFT_NOCONNECTION);
    run_for(&w, 100);
    assert_int_equal(g2.accepted, 0);
    assert_int_equal(node_stats(&n2).rejected, 1);
    assert_int_equal(node_stats(&n2).accepted, 0);
    assert_int_equal(node_stats(&n1).connect_failures, 1);
    assert_int_equal(node_stats(&n1).connected, 0);

    rgroup_stop(&w, &g1);
    rgroup_stop(&w, &g2);
    node_stop(&w, &n1);
    node_stop(&w, &n2);
    world_fini(&w);
}

/* Another cluster, and a group the server does not carry: both refused at HELLO. */
static void test_wrong_cluster_and_group(void **state)
{
    struct world w;
    struct node n1;
    struct node n2;
    struct node n3;
    struct rgroup g1;
    struct rgroup g2;
    struct rgroup g3;
    (void)state;

    world_init(&w, 3);
    node_start_with(&w, &n1, 1, 1, TEST_CLUSTER_ID + 1, test_secret, true);
    node_start(&w, &n2, 2);
    node_start(&w, &n3, 3);
    rgroup_start(&w, &g1, &n1, TEST_GROUP);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);
    rgroup_start(&w, &g3, &n3, TEST_GROUP + 1); /* Node 3 asks node 2 for group 6. */

    rgroup_connect(&g1, 2, n2.addr);
    rgroup_connect(&g3, 2, n2.addr);
    wait_int(&w, &g1.connected, 1);
    wait_int(&w, &g3.connected, 1);
    assert_int_equal(g1.connect_status, RAFT_NOCONNECTION);
    assert_int_equal(g3.connect_status, RAFT_NOCONNECTION);
    assert_int_equal(g2.accepted, 0);
    assert_int_equal(node_stats(&n2).rejected, 2);

    rgroup_stop(&w, &g1);
    rgroup_stop(&w, &g2);
    rgroup_stop(&w, &g3);
    node_stop(&w, &n1);
    node_stop(&w, &n2);
    node_stop(&w, &n3);
    world_fini(&w);
}

struct fwd {
    int handled;
    uint64_t from;
    uv_stream_t *in;
    struct cl_peer_connect req;
    int done;
    int status;
    uv_stream_t *out;
    int seq;
};

static void fwd_handler(void *arg, uint64_t node_id, uv_stream_t *stream)
{
    struct fwd *f = arg;
    assert_non_null(stream);
    f->handled++;
    f->from = node_id;
    f->in = stream;
}

static void fwd_connect_cb(struct cl_peer_connect *req, uv_stream_t *stream, int status)
{
    struct fwd *f = req->data;
    f->done++;
    f->status = status;
    f->out = stream;
    f->seq = ++event_seq;
    if (status == 0) {
        assert_non_null(stream);
    } else {
        assert_null(stream);
    }
}

static void fwd_connect(struct node *n, struct fwd *f, uint64_t to, const char *addr)
{
    f->req.data = f;
    assert_int_equal(cl_peer_connect_forward(n->peer, &f->req, to, addr, fwd_connect_cb), 0);
}

static void test_forward(void **state)
{
    struct world w;
    struct node n1;
    struct node n2;
    struct node n3;
    struct fwd f;
    struct fwd f3;
    struct reader r1;
    struct reader r2;
    (void)state;

    world_init(&w, 4);
    node_start(&w, &n1, 1);
    node_start(&w, &n2, 2);
    node_start(&w, &n3, 3); /* No forwarding handler: refuses. */
    memset(&f, 0, sizeof(f));
    memset(&f3, 0, sizeof(f3));
    cl_peer_set_forward_handler(n2.peer, fwd_handler, &f);

    fwd_connect(&n1, &f, 2, n2.addr);
    wait_int(&w, &f.done, 1);
    assert_int_equal(f.status, 0);
    stream_write(f.out, "forwarded-request");
    reader_start(f.out, &r1);
    wait_int(&w, &f.handled, 1);
    assert_int_equal(f.from, 1);
    assert_nodelay(f.in);
    stream_write(f.in, "forwarded-reply");
    reader_start(f.in, &r2);
    wait_int(&w, &r2.len, (int)strlen("forwarded-request"));
    wait_int(&w, &r1.len, (int)strlen("forwarded-reply"));
    assert_memory_equal(r2.buf, "forwarded-request", strlen("forwarded-request"));
    assert_memory_equal(r1.buf, "forwarded-reply", strlen("forwarded-reply"));

    fwd_connect(&n1, &f3, 3, n3.addr);
    wait_int(&w, &f3.done, 1);
    assert_int_equal(f3.status, RT_EUNAVAIL);
    assert_int_equal(node_stats(&n3).rejected, 1);

    streams_freed = 0;
    uv_close((uv_handle_t *)f.out, close_malloc_stream_cb);
    uv_close((uv_handle_t *)f.in, close_malloc_stream_cb);
    wait_int(&w, &streams_freed, 2);
    node_stop(&w, &n1);
    node_stop(&w, &n2);
    node_stop(&w, &n3);
    world_fini(&w);
}

/* The server against a hand-written client: the wire format matches cl_peer.h byte for byte,
 * and raft bytes sent in the same segment as PROOF reach raft intact. */
static void test_raw_client_exact_bytes(void **state)
{
    struct world w;
    struct node n2;
    struct rgroup g2;
    struct reader r2;
    uint8_t hello[128];
    uint8_t challenge[72];
    uint8_t mac[32];
    uint8_t proof_and_data[32 + 9];
    uint8_t verdict = 0;
    int fd;
    (void)state;

    world_init(&w, 5);
    node_start(&w, &n2, 2);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);

    fd = raw_connect(&w, 2);
    make_hello(hello, TEST_CLUSTER_ID, TEST_GROUP, 7, "10.0.0.7:7007");
    raw_send(fd, hello, sizeof(hello));
    assert_true(raw_recv(&w, fd, challenge, sizeof(challenge)));
    assert_memory_equal(challenge, "PRPEER01", 8);
    test_mac(test_secret, 'S', hello, challenge + 8, mac);
    assert_memory_equal(challenge + 40, mac, 32);
    test_mac(test_secret, 'C', hello, challenge + 8, proof_and_data);
    memcpy(proof_and_data + 32, "RAFTBYTES", 9);
    raw_send(fd, proof_and_data, sizeof(proof_and_data));
    assert_true(raw_recv(&w, fd, &verdict, 1));
    assert_int_equal(verdict, 1);

    wait_int(&w, &g2.accepted, 1);
    assert_int_equal(g2.accept_id, 7);
    assert_string_equal(g2.accept_addr, "10.0.0.7:7007");
    reader_start(g2.accept_stream, &r2);
    wait_int(&w, &r2.len, 9);
    assert_memory_equal(r2.buf, "RAFTBYTES", 9);
    raw_send(fd, "MORE", 4);
    wait_int(&w, &r2.len, 13);
    assert_memory_equal(r2.buf + 9, "MORE", 4);

    close(fd);
    wait_int(&w, &r2.eof, 1);
    streams_freed = 0;
    uv_close((uv_handle_t *)g2.accept_stream, close_raft_stream_cb);
    wait_int(&w, &streams_freed, 1);
    rgroup_stop(&w, &g2);
    node_stop(&w, &n2);
    world_fini(&w);
}

/* The client against a hand-written server that sends VERDICT and raft bytes in one segment:
 * the client reads exactly one verdict byte and raft gets the rest. */
static void test_raw_server_exact_bytes(void **state)
{
    struct world w;
    struct node n1;
    struct rgroup g1;
    struct reader r1;
    uint8_t hello[128];
    uint8_t challenge[72];
    uint8_t proof[32];
    uint8_t mac[32];
    uint8_t verdict_and_data[1 + 5] = {1, 'E', 'X', 'T', 'R', 'A'};
    char server_addr[64];
    int lfd;
    int fd;
    (void)state;

    world_init(&w, 6);
    node_start(&w, &n1, 1);
    rgroup_start(&w, &g1, &n1, CL_PEER_GROUP_META);
    lfd = raw_listen(&w, 2);
    world_addr(&w, 2, server_addr, sizeof(server_addr));

    rgroup_connect(&g1, 2, server_addr);
    fd = raw_accept(&w, lfd);
    assert_true(raw_recv(&w, fd, hello, sizeof(hello)));
    assert_memory_equal(hello, "PRPEER01", 8);
    assert_int_equal(get_be(hello + 8, 2), 1);
    assert_int_equal(get_be(hello + 10, 2), 0);
    assert_int_equal(get_be(hello + 12, 8), TEST_CLUSTER_ID);
    assert_int_equal(get_be(hello + 20, 4), CL_PEER_GROUP_META);
    assert_int_equal(get_be(hello + 24, 8), 1);
    assert_int_equal(hello[64], strlen(n1.addr));
    assert_memory_equal(hello + 65, n1.addr, strlen(n1.addr));
    for (size_t i = 65 + strlen(n1.addr); i < 128; i++) {
        assert_int_equal(hello[i], 0);
    }

    memcpy(challenge, "PRPEER01", 8);
    for (int i = 0; i < 32; i++) {
        challenge[8 + i] = (uint8_t)(0xA0 + i);
    }
    test_mac(test_secret, 'S', hello, challenge + 8, challenge + 40);
    raw_send(fd, challenge, sizeof(challenge));
    assert_true(raw_recv(&w, fd, proof, sizeof(proof)));
    test_mac(test_secret, 'C', hello, challenge + 8, mac);
    assert_memory_equal(proof, mac, 32);
    raw_send(fd, verdict_and_data, sizeof(verdict_and_data));

    wait_int(&w, &g1.connected, 1);
    assert_int_equal(g1.connect_status, 0);
    reader_start(g1.connect_stream, &r1);
    wait_int(&w, &r1.len, 5);
    assert_memory_equal(r1.buf, "EXTRA", 5);
    assert_int_equal(node_stats(&n1).connected, 1);

    /* A second attempt whose server answers with a forged CHALLENGE (wrong secret). */
    memset(&g1.req, 0, sizeof(g1.req));
    g1.connected = 0;
    close(fd);
    streams_freed = 0;
    uv_close((uv_handle_t *)g1.connect_stream, close_raft_stream_cb);
    wait_int(&w, &streams_freed, 1);
    rgroup_connect(&g1, 2, server_addr);
    fd = raw_accept(&w, lfd);
    assert_true(raw_recv(&w, fd, hello, sizeof(hello)));
    test_mac(other_secret, 'S', hello, challenge + 8, challenge + 40);
    raw_send(fd, challenge, sizeof(challenge));
    wait_int(&w, &g1.connected, 1);
    assert_int_equal(g1.connect_status, RAFT_NOCONNECTION);
    assert_int_equal(raw_wait_closed(&w, fd, TEST_WAIT_MS), 0); /* No PROOF was sent. */
    assert_int_equal(node_stats(&n1).connect_failures, 1);

    close(fd);
    close(lfd);
    rgroup_stop(&w, &g1);
    node_stop(&w, &n1);
    world_fini(&w);
}

/* Hostile clients: each is dropped, counted, and never reaches raft. */
static void test_hostile_input(void **state)
{
    struct world w;
    struct node n2;
    struct rgroup g2;
    uint8_t buf[128];
    uint8_t hello[128];
    uint8_t challenge[72];
    uint8_t proof[32];
    int fd;
    (void)state;

    world_init(&w, 7);
    node_start(&w, &n2, 2);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);

    /* 128 bytes of garbage. */
    for (int i = 0; i < 128; i++) {
        buf[i] = (uint8_t)(i * 31 + 5);
    }
    fd = raw_connect(&w, 2);
    raw_send(fd, buf, sizeof(buf));
    assert_int_equal(raw_wait_closed(&w, fd, TEST_WAIT_MS), 0);
    close(fd);
    assert_int_equal(node_stats(&n2).rejected, 1);

    /* A valid-looking HELLO whose addr_len is 200. */
    make_hello(hello, TEST_CLUSTER_ID, TEST_GROUP, 7, "10.0.0.7:7007");
    hello[64] = 200;
    fd = raw_connect(&w, 2);
    raw_send(fd, hello, sizeof(hello));
    assert_int_equal(raw_wait_closed(&w, fd, TEST_WAIT_MS), 0);
    close(fd);
    assert_int_equal(node_stats(&n2).rejected, 2);

    /* Non-printable address, non-zero padding, node id 0, our own node id, bad version,
     * reserved bits, unknown group id. */
    struct {
        int offset;
        uint8_t value;
    } mutations[] = {{65, '\n'}, {127, 1}, {31, 0}, {31, 2}, {9, 2}, {11, 1}, {23, 9}};
    for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
        make_hello(hello, TEST_CLUSTER_ID, TEST_GROUP, 7, "10.0.0.7:7007");
        hello[mutations[i].offset] = mutations[i].value;
        fd = raw_connect(&w, 2);
        raw_send(fd, hello, sizeof(hello));
        assert_int_equal(raw_wait_closed(&w, fd, TEST_WAIT_MS), 0);
        close(fd);
        assert_int_equal(node_stats(&n2).rejected, 3 + i);
    }

    /* A correct HELLO and a wrong PROOF: no verdict. */
    make_hello(hello, TEST_CLUSTER_ID, TEST_GROUP, 7, "10.0.0.7:7007");
    fd = raw_connect(&w, 2);
    raw_send(fd, hello, sizeof(hello));
    assert_true(raw_recv(&w, fd, challenge, sizeof(challenge)));
    test_mac(other_secret, 'C', hello, challenge + 8, proof);
    raw_send(fd, proof, sizeof(proof));
    assert_int_equal(raw_wait_closed(&w, fd, TEST_WAIT_MS), 0);
    close(fd);
    assert_int_equal(node_stats(&n2).rejected, 10);

    /* A replayed PROOF from an earlier handshake does not fit a fresh nonce. */
    fd = raw_connect(&w, 2);
    raw_send(fd, hello, sizeof(hello));
    assert_true(raw_recv(&w, fd, challenge, sizeof(challenge)));
    test_mac(test_secret, 'C', hello, challenge + 8, proof);
    raw_send(fd, proof, sizeof(proof));
    uint8_t verdict = 0;
    assert_true(raw_recv(&w, fd, &verdict, 1));
    assert_int_equal(verdict, 1);
    wait_int(&w, &g2.accepted, 1);
    int fd2 = raw_connect(&w, 2);
    raw_send(fd2, hello, sizeof(hello));
    assert_true(raw_recv(&w, fd2, challenge, sizeof(challenge)));
    raw_send(fd2, proof, sizeof(proof)); /* The old proof. */
    assert_int_equal(raw_wait_closed(&w, fd2, TEST_WAIT_MS), 0);
    close(fd2);
    assert_int_equal(node_stats(&n2).rejected, 11);
    assert_int_equal(node_stats(&n2).accepted, 1);
    assert_int_equal(g2.accepted, 1);

    close(fd);
    streams_freed = 0;
    uv_close((uv_handle_t *)g2.accept_stream, close_raft_stream_cb);
    wait_int(&w, &streams_freed, 1);
    rgroup_stop(&w, &g2);
    node_stop(&w, &n2);
    world_fini(&w);
}

/* Timeouts: a server drops a truncated HELLO, a client gives up on a silent server. Both
 * take CL_PEER_HANDSHAKE_TIMEOUT_MS, so they run side by side. */
static void test_timeouts(void **state)
{
    struct world w;
    struct node n1;
    struct node n2;
    struct fwd f;
    uint8_t hello[128];
    char silent_addr[64];
    uint64_t start_ms;
    uint64_t closed_ms;
    int lfd;
    int fd;
    (void)state;

    world_init(&w, 8);
    node_start(&w, &n1, 1);
    node_start(&w, &n2, 2);
    memset(&f, 0, sizeof(f));
    lfd = raw_listen(&w, 3); /* Accepts in the kernel, never answers. */
    world_addr(&w, 3, silent_addr, sizeof(silent_addr));

    start_ms = uv_hrtime() / 1000000u;
    fwd_connect(&n1, &f, 3, silent_addr);
    make_hello(hello, TEST_CLUSTER_ID, TEST_GROUP, 7, "10.0.0.7:7007");
    fd = raw_connect(&w, 2);
    raw_send(fd, hello, 50);
    run_for(&w, 200);
    assert_true(raw_is_open(fd)); /* Still waiting for the rest. */
    assert_int_equal(raw_wait_closed(&w, fd, CL_PEER_HANDSHAKE_TIMEOUT_MS + 3000), 0);
    closed_ms = uv_hrtime() / 1000000u;
    assert_true(closed_ms - start_ms >= CL_PEER_HANDSHAKE_TIMEOUT_MS - 100);
    assert_int_equal(node_stats(&n2).rejected, 1);
    wait_int(&w, &f.done, 1);
    assert_int_equal(f.status, RT_ETIMEOUT);
    assert_int_equal(node_stats(&n1).connect_failures, 1);

    close(fd);
    close(lfd);
    node_stop(&w, &n1);
    node_stop(&w, &n2);
    world_fini(&w);
}

/* Many connections at once: those beyond CL_PEER_PENDING_MAX are closed at once, the node
 * keeps serving, and a real client gets through once the flood is gone. */
static void test_flood(void **state)
{
    struct world w;
    struct node n1;
    struct node n2;
    struct rgroup g1;
    struct rgroup g2;
    int fds[TEST_RAW_CONNS];
    int closed_by_server = 0;
    (void)state;

    world_init(&w, 9);
    node_start(&w, &n1, 1);
    node_start(&w, &n2, 2);
    rgroup_start(&w, &g1, &n1, TEST_GROUP);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);

    for (int i = 0; i < TEST_RAW_CONNS; i++) {
        fds[i] = raw_connect(&w, 2);
        /* Let node 2 accept as they come: the flood is larger than the listen backlog. */
        uv_run(&w.loop, UV_RUN_NOWAIT);
    }
    /* Let node 2 accept them all. */
    uint64_t deadline = uv_hrtime() + (uint64_t)TEST_WAIT_MS * 1000000u;
    while (node_stats(&n2).rejected < TEST_RAW_CONNS - CL_PEER_PENDING_MAX) {
        assert_true(uv_hrtime() < deadline);
        uv_run(&w.loop, UV_RUN_ONCE);
    }
    run_for(&w, 100);
    assert_int_equal(node_stats(&n2).rejected, TEST_RAW_CONNS - CL_PEER_PENDING_MAX);
    for (int i = 0; i < TEST_RAW_CONNS; i++) {
        if (!raw_is_open(fds[i])) {
            closed_by_server++;
        }
    }
    assert_int_equal(closed_by_server, TEST_RAW_CONNS - CL_PEER_PENDING_MAX);

    /* The flood leaves: its handshakes end, each counted once. */
    for (int i = 0; i < TEST_RAW_CONNS; i++) {
        close(fds[i]);
    }
    deadline = uv_hrtime() + (uint64_t)TEST_WAIT_MS * 1000000u;
    while (node_stats(&n2).rejected < TEST_RAW_CONNS) {
        assert_true(uv_hrtime() < deadline);
        uv_run(&w.loop, UV_RUN_ONCE);
    }
    run_for(&w, 50);
    assert_int_equal(node_stats(&n2).rejected, TEST_RAW_CONNS);

    rgroup_connect(&g1, 2, n2.addr);
    wait_int(&w, &g1.connected, 1);
    assert_int_equal(g1.connect_status, 0);
    wait_int(&w, &g2.accepted, 1);

    streams_freed = 0;
    uv_close((uv_handle_t *)g1.connect_stream, close_raft_stream_cb);
    uv_close((uv_handle_t *)g2.accept_stream, close_raft_stream_cb);
    wait_int(&w, &streams_freed, 2);
    rgroup_stop(&w, &g1);
    rgroup_stop(&w, &g2);
    node_stop(&w, &n1);
    node_stop(&w, &n2);
    world_fini(&w);
}

static int destroy_seq;

static void seq_destroyed_cb(void *arg)
{
    int *flag = arg;
    (*flag)++;
    destroy_seq = ++event_seq;
}

/* Closing the transport cancels its connects (RAFT_CANCELED before the close callback, as
 * raft_uv asserts); destroying the peer fails forwarding connects with RT_EUNAVAIL before
 * the destroy callback. Refused connects fail fast. */
static void test_close_cancels(void **state)
{
    struct world w;
    struct node n1;
    struct rgroup g1;
    struct fwd f;
    struct fwd refused;
    char silent_addr[64];
    char dead_addr[64];
    int destroyed = 0;
    int lfd;
    (void)state;

    world_init(&w, 10);
    node_start(&w, &n1, 1);
    rgroup_start(&w, &g1, &n1, TEST_GROUP);
    memset(&f, 0, sizeof(f));
    memset(&refused, 0, sizeof(refused));
    lfd = raw_listen(&w, 3);
    world_addr(&w, 3, silent_addr, sizeof(silent_addr));
    world_addr(&w, 4, dead_addr, sizeof(dead_addr)); /* Nobody listens. */

    fwd_connect(&n1, &refused, 4, dead_addr);
    wait_int(&w, &refused.done, 1);
    assert_int_equal(refused.status, RT_EUNAVAIL);

    rgroup_connect(&g1, 3, silent_addr);
    fwd_connect(&n1, &f, 3, silent_addr);
    run_for(&w, 100);
    assert_int_equal(g1.connected, 0);
    assert_int_equal(f.done, 0);

    event_seq = 0;
    g1.t.close(&g1.t, rgroup_close_cb);
    assert_int_equal(g1.connected, 0); /* Never from inside close(). */
    wait_int(&w, &g1.closed, 1);
    assert_int_equal(g1.connected, 1);
    assert_int_equal(g1.connect_status, RAFT_CANCELED);
    assert_true(g1.connect_seq < g1.close_seq);
    cl_peer_transport_close(&g1.t);

    cl_peer_destroy(n1.peer, seq_destroyed_cb, &destroyed);
    assert_int_equal(f.done, 0);
    wait_int(&w, &destroyed, 1);
    assert_int_equal(f.done, 1);
    assert_int_equal(f.status, RT_EUNAVAIL);
    assert_true(f.seq < destroy_seq);
    /* Cancellations are not failures. */

    close(lfd);
    world_fini(&w);
}

/* A server handshake in progress when the peer is destroyed, and when the group closes. */
static void test_server_abandon(void **state)
{
    struct world w;
    struct node n2;
    struct rgroup g2;
    uint8_t hello[128];
    uint8_t challenge[72];
    uint8_t proof[32];
    int fd;
    int fd2;
    (void)state;

    world_init(&w, 11);
    node_start(&w, &n2, 2);
    rgroup_start(&w, &g2, &n2, TEST_GROUP);

    /* The group closes between CHALLENGE and PROOF: refused, never accepted. */
    make_hello(hello, TEST_CLUSTER_ID, TEST_GROUP, 7, "10.0.0.7:7007");
    fd = raw_connect(&w, 2);
    raw_send(fd, hello, sizeof(hello));
    assert_true(raw_recv(&w, fd, challenge, sizeof(challenge)));
    rgroup_stop(&w, &g2);
    test_mac(test_secret, 'C', hello, challenge + 8, proof);
    raw_send(fd, proof, sizeof(proof));
    assert_int_equal(raw_wait_closed(&w, fd, TEST_WAIT_MS), 0); /* No verdict. */
    close(fd);
    assert_int_equal(g2.accepted, 0);
    assert_int_equal(node_stats(&n2).rejected, 1);

    /* Destroy with a handshake half done. */
    rgroup_start(&w, &g2, &n2, TEST_GROUP);
    fd2 = raw_connect(&w, 2);
    raw_send(fd2, hello, 64);
    run_for(&w, 100);
    rgroup_stop(&w, &g2);
    node_stop(&w, &n2);
    assert_int_equal(raw_wait_closed(&w, fd2, TEST_WAIT_MS), 0);
    close(fd2);
    world_fini(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_raft_transport_roundtrip),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_wrong_cluster_and_group),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_raw_client_exact_bytes),
        cmocka_unit_test(test_raw_server_exact_bytes),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_close_cancels),
        cmocka_unit_test(test_server_abandon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
