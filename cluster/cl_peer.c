/* cl_peer: the node's authenticated peer port (contract and wire format in cl_peer.h).
 *
 * Shape: one listener per node; every connection in handshake, server or client side, is a
 * struct cl_conn on the peer's list until its last uv handle has closed. A connection reads
 * into exactly the buffer of the message it expects (the alloc callback offers only the bytes
 * still missing), so when the handshake ends nothing of the application's bytes has been
 * consumed and the uv_tcp_t can be handed over as a raw stream.
 *
 * Memory of handed-over streams (checked against canonical/raft's src/uv_recv.c, uv_send.c and
 * uv_tcp_connect.c): raft closes a stream it was given with uv_close() and then frees the
 * handle pointer itself with raft_free()/RaftHeapFree() (uv_close(stream, raft_free) on
 * errors, RaftHeapFree(s->stream) when a server connection ends, raft_free(handle) in the
 * client's close callback). So every stream for a raft group is a uv_tcp_t allocated on its
 * own with raft_malloc(), never embedded in a larger struct. Forwarding streams are
 * malloc()'d as cl_peer.h promises.
 *
 * Cancellation (mirrors raft's stock TCP transport, uv_tcp.c / uv_tcp_connect.c): close()
 * aborts pending connects, each connect callback fires with RAFT_CANCELED and a NULL stream
 * from the close callback of its handle, and the transport's close callback fires only after
 * all of them. raft_uv asserts that a connect completing after close() reports RAFT_CANCELED.
 */
#include "cl_peer.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_log.h"

/* ---- Wire format (persistent: see cl_peer.h) ---- */

#define CL_MAGIC               "PRPEER01"
#define CL_MAGIC_BYTES         8u
#define CL_VERSION             1u
#define CL_NONCE_BYTES         32u
#define CL_MAC_BYTES           32u
#define CL_HELLO_BYTES         128u
#define CL_CHALLENGE_BYTES     72u
#define CL_PROOF_BYTES         CL_MAC_BYTES
#define CL_VERDICT_BYTES       1u
#define CL_VERDICT_ACCEPTED    1u
#define CL_HELLO_OFF_VERSION   8u
#define CL_HELLO_OFF_RESERVED  10u
#define CL_HELLO_OFF_CLUSTER   12u
#define CL_HELLO_OFF_GROUP     20u
#define CL_HELLO_OFF_NODE      24u
#define CL_HELLO_OFF_NONCE     32u
#define CL_HELLO_OFF_ADDR_LEN  64u
#define CL_HELLO_OFF_ADDR      65u
#define CL_CHALLENGE_OFF_NONCE 8u
#define CL_CHALLENGE_OFF_MAC   (CL_CHALLENGE_OFF_NONCE + CL_NONCE_BYTES)
/* The MAC input: a one-byte direction tag ("S" or "C"), HELLO, nonce_s. */
#define CL_MAC_INPUT_BYTES (1u + CL_HELLO_BYTES + CL_NONCE_BYTES)

_Static_assert(CL_HELLO_OFF_ADDR + CL_PEER_ADDR_BYTES_MAX == CL_HELLO_BYTES,
               "HELLO is exactly 128 bytes");
_Static_assert(CL_CHALLENGE_OFF_MAC + CL_MAC_BYTES == CL_CHALLENGE_BYTES,
               "CHALLENGE is exactly 72 bytes");
_Static_assert(CL_PEER_ADDR_BYTES_MAX <= 255u, "addr_len is one byte");

/* ---- Local limits ---- */

/* Kernel queue of connections not yet accepted: above CL_PEER_PENDING_MAX so a burst of
 * legitimate connects at startup waits in the kernel instead of being reset. */
#define CL_LISTEN_BACKLOG 256
/* Refusals for lack of a handshake slot are logged at most once per interval with a count:
 * a flood must not turn into a flood of log lines. Other refusals are logged one by one. */
#define CL_REFUSAL_LOG_INTERVAL_MS 1000u
/* Group slots: shards 0..RT_SHARDS_MAX-1 map to their own index, the meta group to the next. */
#define CL_GROUP_SLOT_META RT_SHARDS_MAX
_Static_assert(RT_SHARDS_MAX + 1u <= CL_PEER_GROUPS_MAX, "every shard and the meta group fit");

/* ---- Types ---- */

/* The state behind one raft_uv_transport (one raft group). */
struct cl_peer_group {
    struct cl_peer *peer;                /* NULL once the peer has been destroyed. */
    struct raft_uv_transport *transport; /* The interface object we implement. */
    uint32_t group_id;                   /* A shard id or CL_PEER_GROUP_META. */
    raft_uv_accept_cb accept_cb;         /* Set by listen; NULL when not accepting. */
    raft_uv_transport_close_cb close_cb; /* Set by close. */
    bool closing;                        /* close() was called. */
    bool closed;                         /* close_cb has fired. */
    unsigned connects;                   /* Client handshakes of this group not yet called back. */
};

enum cl_role { CL_ROLE_SERVER = 1, CL_ROLE_CLIENT = 2 };

enum cl_step {
    CL_STEP_CONNECT = 1, /* Client: TCP connect in flight. */
    CL_STEP_HELLO,       /* Server: reading HELLO. */
    CL_STEP_CHALLENGE,   /* Client: HELLO sent, reading CHALLENGE. */
    CL_STEP_PROOF,       /* Server: CHALLENGE sent, reading PROOF. */
    CL_STEP_VERDICT,     /* Client: PROOF sent, reading VERDICT. */
    CL_STEP_READY,       /* Handshake done, reading stopped; waiting for our writes. */
    CL_STEP_HANDED,      /* Stream handed over; only the timer is still ours. */
    CL_STEP_CLOSING,     /* Failed or aborted; our handles are closing. */
};

/* One connection in handshake. Lives until its last handle has closed. */
struct cl_conn {
    struct cl_peer *peer;
    struct cl_conn *prev; /* Peer's list of connections. */
    struct cl_conn *next;
    enum cl_role role;
    enum cl_step step;
    uv_tcp_t *tcp;      /* Allocated on its own: it outlives us once handed over. */
    bool tcp_raft_heap; /* tcp came from raft_malloc (raft stream) rather than malloc. */
    uv_timer_t timer;   /* CL_PEER_HANDSHAKE_TIMEOUT_MS for the whole handshake. */
    uv_connect_t connect_req;
    uv_write_t write_first;  /* HELLO (client) or CHALLENGE (server). */
    uv_write_t write_second; /* PROOF (client) or VERDICT (server). */
    unsigned writes;         /* Writes in flight: the stream is handed over only at zero. */
    unsigned handles;        /* Our handles not yet closed (tcp, timer, a replaced tcp). */
    uint8_t *rbuf;           /* The message being read, rwant bytes, rgot so far. */
    size_t rwant;
    size_t rgot;
    uint8_t hello[CL_HELLO_BYTES];
    uint8_t challenge[CL_CHALLENGE_BYTES];
    uint8_t proof[CL_PROOF_BYTES];      /* Received (server) or sent (client). */
    uint8_t mac_expected[CL_MAC_BYTES]; /* mac_c the server expects. */
    uint8_t verdict;
    uint32_t group_id;                            /* From HELLO (server) or our group (client). */
    uint64_t remote_node_id;                      /* From HELLO (server) or the target (client). */
    char remote_addr[CL_PEER_ADDR_BYTES_MAX + 1]; /* HELLO's addr (server), target (client). */
    char remote_ip[64];                           /* Socket peer, for logs (server). */
    bool named;                                   /* HELLO's node and group are parsed (logs). */
    /* Client side: who gets the result. group != NULL: a raft connect, else forwarding. */
    struct cl_peer_group *group;
    struct raft_uv_connect *raft_req;
    struct cl_peer_connect *fwd_req;
    bool notify;     /* Call the requester back when closed (false after a sync error). */
    int fail_status; /* Status for the requester: RAFT_* for raft, RT_E* for forwarding. */
};

struct cl_peer {
    uv_loop_t *loop;
    uint64_t cluster_id;
    uint64_t node_id;
    char addr[CL_PEER_ADDR_BYTES_MAX + 1]; /* NUL-terminated copy of config->addr. */
    uint8_t addr_len;
    struct sockaddr_storage bind_addr;
    uint8_t secret[CL_PEER_SECRET_BYTES_MAX];
    size_t secret_len;
    uv_tcp_t listener; /* Initialised at create so destroy always has a handle to wait for. */
    bool listening;
    struct cl_peer_group *groups[CL_PEER_GROUPS_MAX];
    cl_peer_forward_cb forward_cb;
    void *forward_arg;
    struct cl_conn *conns;   /* Every connection object, both roles. */
    unsigned server_pending; /* Server handshakes in progress, <= CL_PEER_PENDING_MAX. */
    unsigned handles;        /* Every uv handle we own that has not finished closing. */
    uint64_t refusals_unlogged;
    uint64_t refusal_logged_ms;
    bool refusal_logged_once;
    struct cl_peer_stats stats;
    bool destroying;
    void (*destroy_cb)(void *arg);
    void *destroy_arg;
};

static void cl_conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void cl_conn_deliver(struct cl_conn *c);

/* ---- Small helpers ---- */

/* Address bytes travel in HELLO and come back to raft as a C string: visible ASCII only, so a
 * hostile peer cannot smuggle NULs, control characters or log-forging newlines. */
static bool cl_addr_bytes_ok(const uint8_t *p, size_t len)
{
    assert(p != NULL);
    assert(len <= CL_PEER_ADDR_BYTES_MAX);
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/* Parse a numeric "host:port" ("1.2.3.4:7000", "[::1]:7000"). Names are refused: resolving
 * would block the loop or need a getaddrinfo request per connect, and peer addresses are
 * written by operators who can write numbers. */
static int cl_addr_parse(const char *addr, struct sockaddr_storage *out)
{
    char host[CL_PEER_ADDR_BYTES_MAX + 1];
    const char *colon;
    const char *h;
    size_t len;
    size_t host_len;
    unsigned long port = 0;

    assert(addr != NULL);
    assert(out != NULL);
    len = strnlen(addr, CL_PEER_ADDR_BYTES_MAX + 1);
    if (len == 0 || len > CL_PEER_ADDR_BYTES_MAX || !cl_addr_bytes_ok((const uint8_t *)addr, len)) {
        return RT_EINVAL;
    }
    colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) > 5) {
        return RT_EINVAL;
    }
    for (const char *d = colon + 1; *d != '\0'; d++) {
        if (*d < '0' || *d > '9') {
            return RT_EINVAL;
        }
        port = port * 10 + (unsigned long)(*d - '0');
    }
    if (port == 0 || port > 65535) {
        return RT_EINVAL;
    }
    h = addr;
    host_len = (size_t)(colon - addr);
    if (host_len >= 2 && h[0] == '[' && h[host_len - 1] == ']') {
        h++;
        host_len -= 2;
    }
    if (host_len == 0) {
        return RT_EINVAL;
    }
    memcpy(host, h, host_len);
    host[host_len] = '\0';
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) {
        return 0;
    }
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0) {
        return 0;
    }
    return RT_EINVAL; /* Not a numeric address: a host name, or garbage. */
}

/* HMAC-SHA256(secret, tag | HELLO | nonce_s). */
static int cl_mac(const struct cl_peer *peer, char tag, const uint8_t *hello,
                  const uint8_t *nonce_s, uint8_t *out)
{
    uint8_t input[CL_MAC_INPUT_BYTES];
    unsigned out_len = 0;

    assert(peer->secret_len >= CL_PEER_SECRET_BYTES_MIN);
    assert(tag == 'S' || tag == 'C');
    input[0] = (uint8_t)tag;
    memcpy(input + 1, hello, CL_HELLO_BYTES);
    memcpy(input + 1 + CL_HELLO_BYTES, nonce_s, CL_NONCE_BYTES);
    if (HMAC(EVP_sha256(), peer->secret, (int)peer->secret_len, input, sizeof(input), out,
             &out_len) == NULL ||
        out_len != CL_MAC_BYTES) {
        return RT_EINTERNAL;
    }
    return 0;
}

static int cl_random(uint8_t *out, size_t len)
{
    assert(out != NULL);
    assert(len > 0 && len <= CL_NONCE_BYTES);
    return RAND_bytes(out, (int)len) == 1 ? 0 : RT_EINTERNAL;
}

static unsigned cl_peer_group_slot(uint32_t group_id)
{
    assert(group_id < RT_SHARDS_MAX || group_id == CL_PEER_GROUP_META);
    return group_id == CL_PEER_GROUP_META ? CL_GROUP_SLOT_META : group_id;
}

static bool cl_peer_group_id_valid(uint32_t group_id)
{
    return group_id < RT_SHARDS_MAX || group_id == CL_PEER_GROUP_META;
}

/* The group that accepts incoming raft connections for @group_id, or NULL. */
static struct cl_peer_group *cl_peer_group_listening(const struct cl_peer *peer, uint32_t group_id)
{
    struct cl_peer_group *g;

    assert(peer != NULL);
    if (!cl_peer_group_id_valid(group_id)) {
        return NULL;
    }
    g = peer->groups[cl_peer_group_slot(group_id)];
    assert(g == NULL || g->group_id == group_id);
    if (g == NULL || g->closing || g->accept_cb == NULL) {
        return NULL;
    }
    return g;
}

/* Fire the group's close callback once nothing of it is pending. The callback may free the
 * group (raft_uv's close chain ends in cl_peer_transport_close), so @g is not touched after. */
static void cl_peer_group_maybe_closed(struct cl_peer_group *g)
{
    raft_uv_transport_close_cb cb;

    assert(g != NULL);
    assert(g->transport != NULL);
    if (!g->closing || g->closed || g->connects > 0) {
        return;
    }
    g->closed = true;
    cb = g->close_cb;
    if (cb != NULL) {
        cb(g->transport);
    }
}

/* ---- Peer lifetime ---- */

static void cl_peer_maybe_done(struct cl_peer *peer)
{
    void (*cb)(void *arg);
    void *arg;

    assert(peer != NULL);
    if (!peer->destroying || peer->handles > 0) {
        return;
    }
    assert(peer->conns == NULL);
    assert(peer->server_pending == 0);
    cb = peer->destroy_cb;
    arg = peer->destroy_arg;
    /* Do not leave the secret in freed memory. */
    OPENSSL_cleanse(peer->secret, sizeof(peer->secret));
    free(peer);
    if (cb != NULL) {
        cb(arg);
    }
}

static void cl_peer_handle_closed(struct cl_peer *peer)
{
    assert(peer != NULL);
    assert(peer->handles > 0);
    peer->handles--;
}

/* A handshake slot was freed: report refusals suppressed by the log interval, so a flood's
 * full size reaches the log even when it stops between two intervals. */
static void cl_peer_slot_freed(struct cl_peer *peer)
{
    assert(peer != NULL);
    assert(peer->server_pending > 0);
    peer->server_pending--;
    if (peer->refusals_unlogged > 0) {
        RT_WARN("peer %" PRIu64 ": refused %" PRIu64 " more connection(s) since the last report",
                peer->node_id, peer->refusals_unlogged);
        peer->refusals_unlogged = 0;
    }
}

/* ---- Connection lifetime ---- */

static void cl_conn_unlink(struct cl_conn *c)
{
    struct cl_peer *peer = c->peer;

    assert(peer != NULL);
    assert(peer->conns != NULL);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        assert(peer->conns == c);
        peer->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = NULL;
    c->next = NULL;
}

/* The last handle of @c has closed: free it, and call a client requester back with the
 * failure. The callback runs after the free, so it may start a new connect. The peer outlives
 * this function: either destroy has not been called and the listener (closed only by
 * destroy) keeps it alive, or destroy is under way and only cl_peer_maybe_done, which the
 * caller runs after us, frees it. */
static void cl_conn_finish(struct cl_conn *c)
{
    struct cl_peer_group *g = c->group;
    struct raft_uv_connect *raft_req = c->raft_req;
    struct cl_peer_connect *fwd_req = c->fwd_req;
    bool notify = c->role == CL_ROLE_CLIENT && c->step == CL_STEP_CLOSING && c->notify;
    int status = c->fail_status;

    assert(c->handles == 0);
    assert(c->writes == 0);
    assert(c->tcp == NULL);
    cl_conn_unlink(c);
    OPENSSL_cleanse(c, sizeof(*c)); /* Nonces and expected MACs die with the connection. */
    free(c);

    if (!notify) {
        return;
    }
    assert(status != 0);
    if (g != NULL) {
        assert(g->connects > 0);
        g->connects--;
        raft_req->cb(raft_req, NULL, status);
        cl_peer_group_maybe_closed(g);
    } else {
        fwd_req->impl = NULL;
        fwd_req->cb(fwd_req, NULL, status);
    }
}

static void cl_conn_handle_closed(struct cl_conn *c)
{
    struct cl_peer *peer = c->peer;

    assert(c->handles > 0);
    c->handles--;
    cl_peer_handle_closed(peer);
    if (c->handles > 0) {
        return;
    }
    cl_conn_finish(c);
    cl_peer_maybe_done(peer);
}

static void cl_conn_timer_close_cb(uv_handle_t *handle)
{
    struct cl_conn *c = handle->data;

    assert(c != NULL);
    assert(handle == (uv_handle_t *)&c->timer);
    cl_conn_handle_closed(c);
}

static void cl_conn_tcp_close_cb(uv_handle_t *handle)
{
    struct cl_conn *c = handle->data;

    assert(c != NULL);
    assert(handle == (uv_handle_t *)c->tcp);
    if (c->tcp_raft_heap) {
        raft_free(handle);
    } else {
        free(handle);
    }
    c->tcp = NULL;
    cl_conn_handle_closed(c);
}

/* Close callback of a tcp handle that was replaced (cl_conn_rehome): from raft_malloc. */
static void cl_conn_old_tcp_close_cb(uv_handle_t *handle)
{
    struct cl_conn *c = handle->data;

    assert(c != NULL);
    assert(handle != (uv_handle_t *)c->tcp);
    raft_free(handle);
    cl_conn_handle_closed(c);
}

/* Close callback of a handle whose uv_tcp_open failed during cl_conn_rehome: from malloc. */
static void cl_conn_spare_tcp_close_cb(uv_handle_t *handle)
{
    struct cl_conn *c = handle->data;

    assert(c != NULL);
    assert(handle != (uv_handle_t *)c->tcp);
    free(handle);
    cl_conn_handle_closed(c);
}

/* Stop the handshake: close the socket and the timer. Everything else happens in the close
 * callbacks (pending write and connect callbacks run first, with UV_ECANCELED). */
static void cl_conn_close(struct cl_conn *c)
{
    assert(c->step != CL_STEP_CLOSING && c->step != CL_STEP_HANDED);
    assert(c->tcp != NULL);
    if (c->role == CL_ROLE_SERVER) {
        cl_peer_slot_freed(c->peer);
    }
    c->step = CL_STEP_CLOSING;
    uv_close((uv_handle_t *)c->tcp, cl_conn_tcp_close_cb);
    uv_close((uv_handle_t *)&c->timer, cl_conn_timer_close_cb);
}

/* Server side: refuse the peer, log why (once: this is where it is handled), count it. */
static void cl_conn_reject(struct cl_conn *c, const char *reason)
{
    struct cl_peer *peer = c->peer;

    assert(c->role == CL_ROLE_SERVER);
    assert(reason != NULL);
    peer->stats.rejected++;
    if (!c->named) {
        RT_WARN("peer %" PRIu64 ": refused connection from %s: %s", peer->node_id, c->remote_ip,
                reason);
    } else {
        RT_WARN("peer %" PRIu64 ": refused connection from %s (node %" PRIu64 ", group %" PRIu32
                "): %s",
                peer->node_id, c->remote_ip, c->remote_node_id, c->group_id, reason);
    }
    cl_conn_close(c);
}

/* Client side: give up. @raft_status goes to raft, @rt_status to a forwarding requester.
 * Network errors are expected while a peer is down (raft retries every second) and are
 * logged at debug level; protocol and authentication failures are worth a warning. */
static void cl_conn_fail(struct cl_conn *c, int raft_status, int rt_status, bool loud,
                         const char *reason)
{
    struct cl_peer *peer = c->peer;

    assert(c->role == CL_ROLE_CLIENT);
    assert(raft_status > 0 && rt_status < 0);
    c->fail_status = c->group != NULL ? raft_status : rt_status;
    if (raft_status != RAFT_CANCELED) {
        peer->stats.connect_failures++;
        rt_log(loud ? RT_LOG_WARN : RT_LOG_DEBUG,
               "peer %" PRIu64 ": connect to node %" PRIu64 " at %s (group %" PRIu32 ") failed: %s",
               peer->node_id, c->remote_node_id, c->remote_addr, c->group_id, reason);
    }
    cl_conn_close(c);
}

/* Abandon @c because its owner (transport or peer) is closing. */
static void cl_conn_abort(struct cl_conn *c)
{
    assert(c->step != CL_STEP_CLOSING && c->step != CL_STEP_HANDED);
    assert(c->peer != NULL);
    if (c->role == CL_ROLE_CLIENT) {
        cl_conn_fail(c, RAFT_CANCELED, RT_EUNAVAIL, false, "canceled");
    } else {
        cl_conn_close(c);
    }
}

static void cl_conn_expect(struct cl_conn *c, uint8_t *buf, size_t len)
{
    assert(buf != NULL);
    assert(len > 0 && len <= CL_HELLO_BYTES);
    c->rbuf = buf;
    c->rwant = len;
    c->rgot = 0;
}

/* Offer libuv only the bytes still missing from the message being read: a read never takes
 * bytes beyond the handshake, which belong to raft or the router. */
static void cl_conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct cl_conn *c = handle->data;

    (void)suggested;
    assert(c != NULL);
    assert(c->rbuf != NULL && c->rgot < c->rwant);
    *buf = uv_buf_init((char *)c->rbuf + c->rgot, (unsigned)(c->rwant - c->rgot));
}

static void cl_conn_write_cb(uv_write_t *req, int status)
{
    struct cl_conn *c = req->data;

    assert(c != NULL);
    assert(c->writes > 0);
    c->writes--;
    if (c->step == CL_STEP_CLOSING) {
        return; /* Canceled by our own close. */
    }
    if (status != 0) {
        if (c->role == CL_ROLE_SERVER) {
            cl_conn_reject(c, uv_strerror(status));
        } else {
            cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, false, uv_strerror(status));
        }
        return;
    }
    if (c->step == CL_STEP_READY && c->writes == 0) {
        cl_conn_deliver(c);
    }
}

static int cl_conn_write(struct cl_conn *c, uv_write_t *req, const uint8_t *bytes, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)bytes, (unsigned)len);
    int rv;

    assert(req == &c->write_first || req == &c->write_second);
    assert(len > 0 && len <= CL_HELLO_BYTES);
    req->data = c;
    rv = uv_write(req, (uv_stream_t *)c->tcp, &buf, 1, cl_conn_write_cb);
    if (rv != 0) {
        return rv;
    }
    c->writes++;
    return 0;
}

static void cl_conn_timer_cb(uv_timer_t *timer)
{
    struct cl_conn *c = timer->data;

    assert(c != NULL);
    assert(c->step != CL_STEP_CLOSING && c->step != CL_STEP_HANDED);
    if (c->role == CL_ROLE_SERVER) {
        cl_conn_reject(c, "handshake timed out");
    } else {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_ETIMEOUT, true, "handshake timed out");
    }
}

/* Allocate and link a connection with its timer initialised (not started). */
static struct cl_conn *cl_conn_new(struct cl_peer *peer, enum cl_role role)
{
    struct cl_conn *c = calloc(1, sizeof(*c));
    int rv;

    assert(peer != NULL);
    assert(!peer->destroying);
    if (c == NULL) {
        return NULL;
    }
    c->peer = peer;
    c->role = role;
    c->notify = true;
    rv = uv_timer_init(peer->loop, &c->timer);
    assert(rv == 0); /* Cannot fail: no system resources involved. */
    (void)rv;
    c->timer.data = c;
    c->handles = 1;
    peer->handles++;
    c->next = peer->conns;
    if (peer->conns != NULL) {
        peer->conns->prev = c;
    }
    peer->conns = c;
    return c;
}

/* Set TCP_NODELAY: raft's heartbeats and appends are small writes that must not wait for
 * Nagle. A failure costs latency, not correctness. */
static void cl_tcp_nodelay(const struct cl_peer *peer, uv_tcp_t *tcp)
{
    int rv;

    assert(peer != NULL);
    assert(tcp != NULL);
    rv = uv_tcp_nodelay(tcp, 1);
    if (rv != 0) {
        RT_DEBUG("peer %" PRIu64 ": TCP_NODELAY: %s", peer->node_id, uv_strerror(rv));
    }
}

/* ---- Server side ---- */

/* Why a HELLO is refused, or NULL if it is acceptable. Every field is checked before use. */
static const char *cl_hello_check(struct cl_conn *c)
{
    const struct cl_peer *peer = c->peer;
    const uint8_t *h = c->hello;
    uint8_t addr_len;

    assert(c->role == CL_ROLE_SERVER);
    assert(c->rgot == CL_HELLO_BYTES);
    if (memcmp(h, CL_MAGIC, CL_MAGIC_BYTES) != 0) {
        return "not a Payraft peer (bad magic)";
    }
    if (rt_get_be16(h + CL_HELLO_OFF_VERSION) != CL_VERSION) {
        return "unsupported handshake version";
    }
    if (rt_get_be16(h + CL_HELLO_OFF_RESERVED) != 0) {
        return "reserved field not zero";
    }
    c->group_id = rt_get_be32(h + CL_HELLO_OFF_GROUP);
    c->remote_node_id = rt_get_be64(h + CL_HELLO_OFF_NODE);
    c->named = true;
    if (rt_get_be64(h + CL_HELLO_OFF_CLUSTER) != peer->cluster_id) {
        return "wrong cluster id";
    }
    if (c->remote_node_id == 0) {
        return "node id 0";
    }
    if (c->remote_node_id == peer->node_id) {
        return "peer claims our own node id";
    }
    addr_len = h[CL_HELLO_OFF_ADDR_LEN];
    if (addr_len == 0 || addr_len > CL_PEER_ADDR_BYTES_MAX) {
        return "address length out of range";
    }
    if (!cl_addr_bytes_ok(h + CL_HELLO_OFF_ADDR, addr_len)) {
        return "address has non-printable bytes";
    }
    for (size_t i = CL_HELLO_OFF_ADDR + addr_len; i < CL_HELLO_BYTES; i++) {
        if (h[i] != 0) {
            return "address padding not zero";
        }
    }
    memcpy(c->remote_addr, h + CL_HELLO_OFF_ADDR, addr_len);
    c->remote_addr[addr_len] = '\0';
    if (c->group_id == CL_PEER_GROUP_FORWARD) {
        return peer->forward_cb != NULL ? NULL : "forwarding not accepted here";
    }
    if (cl_peer_group_listening(peer, c->group_id) == NULL) {
        return "unknown group";
    }
    return NULL;
}

/* Move a server connection onto a malloc'd handle. Accepted handles come from raft_malloc
 * because raft streams are the common case and raft frees them with raft_free; a forwarding
 * stream must be malloc'd (cl_peer.h). A live uv handle cannot be moved in memory, so the
 * socket is dup'd onto a fresh handle and the old one closed. No byte is lost: nothing past
 * HELLO has been read, and the socket (one open file description) is unchanged. */
static int cl_conn_rehome(struct cl_conn *c)
{
    struct cl_peer *peer = c->peer;
    uv_tcp_t *fresh;
    uv_tcp_t *old = c->tcp;
    uv_os_fd_t fd;
    int dup_fd;

    assert(c->role == CL_ROLE_SERVER && c->tcp_raft_heap);
    assert(c->writes == 0);
    if (uv_fileno((uv_handle_t *)old, &fd) != 0) {
        return RT_EINTERNAL;
    }
    fresh = malloc(sizeof(*fresh));
    if (fresh == NULL) {
        return RT_ENOMEM;
    }
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) {
        goto free_fresh;
    }
    if (uv_tcp_init(peer->loop, fresh) != 0) {
        goto close_dup;
    }
    fresh->data = c;
    c->handles++;
    peer->handles++;
    if (uv_tcp_open(fresh, dup_fd) != 0) {
        goto close_fresh;
    }
    uv_read_stop((uv_stream_t *)old);
    uv_close((uv_handle_t *)old, cl_conn_old_tcp_close_cb);
    c->tcp = fresh;
    c->tcp_raft_heap = false;
    return 0;

close_fresh:
    /* uv_tcp_open failed before taking the descriptor: we still own dup_fd. */
    close(dup_fd);
    uv_close((uv_handle_t *)fresh, cl_conn_spare_tcp_close_cb); /* Frees fresh. */
    return RT_EUNAVAIL;
close_dup:
    close(dup_fd);
free_fresh:
    free(fresh);
    return RT_EUNAVAIL;
}

static void cl_conn_on_hello(struct cl_conn *c)
{
    const char *reason = cl_hello_check(c);
    uint8_t *nonce_s = c->challenge + CL_CHALLENGE_OFF_NONCE;
    int rv;

    assert(c->role == CL_ROLE_SERVER);
    assert(c->step == CL_STEP_HELLO);
    if (reason != NULL) {
        cl_conn_reject(c, reason);
        return;
    }
    c->step = CL_STEP_PROOF;
    if (c->group_id == CL_PEER_GROUP_FORWARD) {
        rv = cl_conn_rehome(c);
        if (rv != 0) {
            cl_conn_reject(c, "cannot set up the forwarding stream");
            return;
        }
    }
    memcpy(c->challenge, CL_MAGIC, CL_MAGIC_BYTES);
    if (cl_random(nonce_s, CL_NONCE_BYTES) != 0 ||
        cl_mac(c->peer, 'S', c->hello, nonce_s, c->challenge + CL_CHALLENGE_OFF_MAC) != 0 ||
        cl_mac(c->peer, 'C', c->hello, nonce_s, c->mac_expected) != 0) {
        cl_conn_reject(c, "crypto failure (RAND_bytes/HMAC)");
        return;
    }
    rv = cl_conn_write(c, &c->write_first, c->challenge, CL_CHALLENGE_BYTES);
    if (rv != 0) {
        cl_conn_reject(c, uv_strerror(rv));
        return;
    }
    cl_conn_expect(c, c->proof, CL_PROOF_BYTES);
    if (!c->tcp_raft_heap) {
        /* A rehomed handle is not reading yet. */
        rv = uv_read_start((uv_stream_t *)c->tcp, cl_conn_alloc_cb, cl_conn_read_cb);
        if (rv != 0) {
            cl_conn_reject(c, uv_strerror(rv));
            return;
        }
        cl_tcp_nodelay(c->peer, c->tcp);
    }
}

/* Whether the server side still has a taker for @c's group: a listening raft group (set in
 * @g) or the forwarding handler (@g left NULL). Either may go away during a handshake. */
static bool cl_conn_target(const struct cl_conn *c, struct cl_peer_group **g)
{
    assert(c->role == CL_ROLE_SERVER);
    assert(g != NULL);
    *g = NULL;
    if (c->group_id == CL_PEER_GROUP_FORWARD) {
        return c->peer->forward_cb != NULL;
    }
    *g = cl_peer_group_listening(c->peer, c->group_id);
    return *g != NULL;
}

static void cl_conn_on_proof(struct cl_conn *c)
{
    struct cl_peer_group *g;
    int rv;

    assert(c->role == CL_ROLE_SERVER);
    assert(c->step == CL_STEP_PROOF);
    if (CRYPTO_memcmp(c->proof, c->mac_expected, CL_MAC_BYTES) != 0) {
        cl_conn_reject(c, "bad proof (wrong cluster secret?)");
        return;
    }
    if (!cl_conn_target(c, &g)) {
        cl_conn_reject(c, "group closed during the handshake"); /* Before saying "accepted". */
        return;
    }
    /* Stop before the verdict goes out: whatever the peer sends after it is raft's. */
    uv_read_stop((uv_stream_t *)c->tcp);
    c->verdict = CL_VERDICT_ACCEPTED;
    rv = cl_conn_write(c, &c->write_second, &c->verdict, CL_VERDICT_BYTES);
    if (rv != 0) {
        cl_conn_reject(c, uv_strerror(rv));
        return;
    }
    c->step = CL_STEP_READY; /* Delivered from the write callback. */
}

static void cl_peer_refusal_closed_cb(uv_handle_t *handle)
{
    struct cl_peer *peer = handle->data;

    assert(peer != NULL);
    free(handle);
    cl_peer_handle_closed(peer);
    cl_peer_maybe_done(peer);
}

/* Accept and immediately close a connection we have no handshake slot (or no memory) for.
 * Accepting is required: libuv stops polling the listener until the pending connection is
 * taken. */
static void cl_peer_refuse(struct cl_peer *peer, uv_stream_t *server, const char *reason)
{
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    uint64_t now_ms = uv_now(peer->loop);
    int rv;

    assert(server == (uv_stream_t *)&peer->listener);
    assert(reason != NULL);
    if (tcp == NULL) {
        /* Out of memory: the listener stalls until the next accept; nothing better to do. */
        RT_ERROR("peer %" PRIu64 ": out of memory refusing a connection", peer->node_id);
        return;
    }
    rv = uv_tcp_init(peer->loop, tcp);
    if (rv != 0) {
        free(tcp);
        return;
    }
    tcp->data = peer;
    peer->handles++;
    (void)uv_accept(server, (uv_stream_t *)tcp); /* Guaranteed to succeed here (libuv). */
    peer->stats.rejected++;
    peer->refusals_unlogged++;
    if (!peer->refusal_logged_once ||
        now_ms - peer->refusal_logged_ms >= CL_REFUSAL_LOG_INTERVAL_MS) {
        RT_WARN("peer %" PRIu64 ": refused %" PRIu64 " connection(s): %s", peer->node_id,
                peer->refusals_unlogged, reason);
        peer->refusals_unlogged = 0;
        peer->refusal_logged_ms = now_ms;
        peer->refusal_logged_once = true;
    }
    uv_close((uv_handle_t *)tcp, cl_peer_refusal_closed_cb);
}

static void cl_peer_remote_ip(uv_tcp_t *tcp, char *out, size_t out_len)
{
    struct sockaddr_storage ss;
    int ss_len = (int)sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    assert(out != NULL);
    assert(out_len >= sizeof(ip) + 8);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &ss_len) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(out, out_len, "%s:%d", ip, port);
}

static void cl_peer_connection_cb(uv_stream_t *server, int status)
{
    struct cl_peer *peer = server->data;
    struct cl_conn *c;
    uv_tcp_t *tcp;
    int rv;

    assert(peer != NULL);
    assert(server == (uv_stream_t *)&peer->listener);
    if (status != 0) {
        RT_WARN("peer %" PRIu64 ": accept: %s", peer->node_id, uv_strerror(status));
        return;
    }
    if (peer->server_pending >= CL_PEER_PENDING_MAX) {
        cl_peer_refuse(peer, server, "too many handshakes in progress");
        return;
    }
    c = cl_conn_new(peer, CL_ROLE_SERVER);
    tcp = raft_malloc(sizeof(*tcp));
    if (c == NULL || tcp == NULL) {
        raft_free(tcp);
        if (c != NULL) {
            uv_close((uv_handle_t *)&c->timer, cl_conn_timer_close_cb);
            c->step = CL_STEP_CLOSING;
            c->notify = false;
        }
        cl_peer_refuse(peer, server, "out of memory");
        return;
    }
    rv = uv_tcp_init(peer->loop, tcp);
    assert(rv == 0); /* AF_UNSPEC init creates no socket and cannot fail. */
    tcp->data = c;
    c->tcp = tcp;
    c->tcp_raft_heap = true;
    c->handles++;
    peer->handles++;
    peer->server_pending++;
    c->step = CL_STEP_HELLO;
    rv = uv_accept(server, (uv_stream_t *)tcp);
    if (rv != 0) {
        snprintf(c->remote_ip, sizeof(c->remote_ip), "?");
        cl_conn_reject(c, uv_strerror(rv));
        return;
    }
    cl_peer_remote_ip(tcp, c->remote_ip, sizeof(c->remote_ip));
    cl_tcp_nodelay(peer, tcp);
    rv = uv_timer_start(&c->timer, cl_conn_timer_cb, CL_PEER_HANDSHAKE_TIMEOUT_MS, 0);
    assert(rv == 0);
    cl_conn_expect(c, c->hello, CL_HELLO_BYTES);
    rv = uv_read_start((uv_stream_t *)tcp, cl_conn_alloc_cb, cl_conn_read_cb);
    if (rv != 0) {
        cl_conn_reject(c, uv_strerror(rv));
    }
}

/* ---- Client side ---- */

static void cl_conn_on_challenge(struct cl_conn *c)
{
    const uint8_t *nonce_s = c->challenge + CL_CHALLENGE_OFF_NONCE;
    uint8_t mac_s[CL_MAC_BYTES];
    int rv;

    assert(c->role == CL_ROLE_CLIENT);
    assert(c->step == CL_STEP_CHALLENGE);
    if (memcmp(c->challenge, CL_MAGIC, CL_MAGIC_BYTES) != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, true, "not a Payraft peer (bad magic)");
        return;
    }
    if (cl_mac(c->peer, 'S', c->hello, nonce_s, mac_s) != 0 ||
        cl_mac(c->peer, 'C', c->hello, nonce_s, c->proof) != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, true, "crypto failure (HMAC)");
        return;
    }
    if (CRYPTO_memcmp(mac_s, c->challenge + CL_CHALLENGE_OFF_MAC, CL_MAC_BYTES) != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, true,
                     "server failed to prove the cluster secret");
        return;
    }
    rv = cl_conn_write(c, &c->write_second, c->proof, CL_PROOF_BYTES);
    if (rv != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, false, uv_strerror(rv));
        return;
    }
    c->step = CL_STEP_VERDICT;
    cl_conn_expect(c, &c->verdict, CL_VERDICT_BYTES);
}

static void cl_conn_on_verdict(struct cl_conn *c)
{
    assert(c->role == CL_ROLE_CLIENT);
    assert(c->step == CL_STEP_VERDICT);
    if (c->verdict != CL_VERDICT_ACCEPTED) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, true, "bad verdict");
        return;
    }
    uv_read_stop((uv_stream_t *)c->tcp); /* What follows is the server's application data. */
    c->step = CL_STEP_READY;
    if (c->writes == 0) {
        cl_conn_deliver(c);
    }
}

static void cl_conn_connect_cb(uv_connect_t *req, int status)
{
    struct cl_conn *c = req->data;
    struct cl_peer *peer = c->peer;
    uint8_t *h = c->hello;
    int rv;

    assert(c->role == CL_ROLE_CLIENT);
    if (c->step == CL_STEP_CLOSING) {
        return; /* Canceled (UV_ECANCELED): the close callbacks take it from here. */
    }
    assert(c->step == CL_STEP_CONNECT);
    if (status != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, false, uv_strerror(status));
        return;
    }
    cl_tcp_nodelay(peer, c->tcp);
    memset(h, 0, CL_HELLO_BYTES);
    memcpy(h, CL_MAGIC, CL_MAGIC_BYTES);
    rt_put_be16(h + CL_HELLO_OFF_VERSION, CL_VERSION);
    rt_put_be16(h + CL_HELLO_OFF_RESERVED, 0);
    rt_put_be64(h + CL_HELLO_OFF_CLUSTER, peer->cluster_id);
    rt_put_be32(h + CL_HELLO_OFF_GROUP, c->group_id);
    rt_put_be64(h + CL_HELLO_OFF_NODE, peer->node_id);
    if (cl_random(h + CL_HELLO_OFF_NONCE, CL_NONCE_BYTES) != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, true, "RAND_bytes failed");
        return;
    }
    h[CL_HELLO_OFF_ADDR_LEN] = peer->addr_len;
    memcpy(h + CL_HELLO_OFF_ADDR, peer->addr, peer->addr_len);
    rv = cl_conn_write(c, &c->write_first, h, CL_HELLO_BYTES);
    if (rv == 0) {
        c->step = CL_STEP_CHALLENGE;
        cl_conn_expect(c, c->challenge, CL_CHALLENGE_BYTES);
        rv = uv_read_start((uv_stream_t *)c->tcp, cl_conn_alloc_cb, cl_conn_read_cb);
    }
    if (rv != 0) {
        cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, false, uv_strerror(rv));
    }
}

/* Start a client handshake to @addr for @g (raft) or forwarding (@g == NULL). On error
 * nothing is left behind that will call anyone back. */
static int cl_conn_client_start(struct cl_peer *peer, struct cl_peer_group *g, uint64_t node_id,
                                const char *addr, struct cl_conn **out)
{
    struct sockaddr_storage sa;
    struct cl_conn *c;
    uv_tcp_t *tcp;
    int rv;

    assert(peer != NULL && addr != NULL);
    assert(!peer->destroying);
    rv = cl_addr_parse(addr, &sa);
    if (rv != 0) {
        RT_WARN("peer %" PRIu64 ": node %" PRIu64 " address '%.63s' is not a numeric host:port",
                peer->node_id, node_id, addr);
        return rv;
    }
    c = cl_conn_new(peer, CL_ROLE_CLIENT);
    if (c == NULL) {
        return RT_ENOMEM;
    }
    c->step = CL_STEP_CONNECT;
    c->group = g;
    c->group_id = g != NULL ? g->group_id : CL_PEER_GROUP_FORWARD;
    c->remote_node_id = node_id;
    snprintf(c->remote_addr, sizeof(c->remote_addr), "%s", addr);
    /* The handle goes to raft (raft_free) or the router (free): allocate to match. */
    c->tcp_raft_heap = g != NULL;
    tcp = g != NULL ? raft_malloc(sizeof(*tcp)) : malloc(sizeof(*tcp));
    if (tcp == NULL) {
        c->step = CL_STEP_CLOSING;
        c->notify = false;
        uv_close((uv_handle_t *)&c->timer, cl_conn_timer_close_cb);
        return RT_ENOMEM;
    }
    rv = uv_tcp_init(peer->loop, tcp);
    assert(rv == 0); /* AF_UNSPEC init creates no socket and cannot fail. */
    tcp->data = c;
    c->tcp = tcp;
    c->handles++;
    peer->handles++;
    c->connect_req.data = c;
    rv = uv_tcp_connect(&c->connect_req, tcp, (const struct sockaddr *)&sa, cl_conn_connect_cb);
    if (rv != 0) {
        RT_DEBUG("peer %" PRIu64 ": connect to %s: %s", peer->node_id, addr, uv_strerror(rv));
        c->notify = false;
        cl_conn_close(c);
        return RT_EUNAVAIL;
    }
    rv = uv_timer_start(&c->timer, cl_conn_timer_cb, CL_PEER_HANDSHAKE_TIMEOUT_MS, 0);
    assert(rv == 0);
    *out = c;
    return 0;
}

/* ---- Hand-over ---- */

/* The handshake is complete and our last write has left: give the stream away. The timer is
 * the only handle left to us; the object is freed when it has closed. */
static void cl_conn_deliver(struct cl_conn *c)
{
    struct cl_peer *peer = c->peer;
    uv_stream_t *stream = (uv_stream_t *)c->tcp;
    struct cl_peer_group *g = NULL;

    assert(c->step == CL_STEP_READY);
    assert(c->writes == 0 && stream != NULL);
    if (c->role == CL_ROLE_SERVER) {
        /* The group may have closed (or the handler gone) since the PROOF arrived. */
        if (!cl_conn_target(c, &g)) {
            cl_conn_reject(c, "group closed during the handshake");
            return;
        }
        cl_peer_slot_freed(peer);
        peer->stats.accepted++;
    } else {
        peer->stats.connected++;
    }
    assert(c->tcp_raft_heap == (c->group_id != CL_PEER_GROUP_FORWARD));
    c->step = CL_STEP_HANDED;
    c->tcp = NULL;
    stream->data = NULL;
    c->handles--;
    cl_peer_handle_closed(peer);
    uv_close((uv_handle_t *)&c->timer, cl_conn_timer_close_cb);

    if (c->role == CL_ROLE_SERVER) {
        if (g != NULL) {
            g->accept_cb(g->transport, c->remote_node_id, c->remote_addr, stream);
        } else {
            peer->forward_cb(peer->forward_arg, c->remote_node_id, stream);
        }
        return;
    }
    if (c->group != NULL) {
        assert(c->group->connects > 0);
        c->group->connects--;
        c->raft_req->cb(c->raft_req, stream, 0);
    } else {
        c->fwd_req->impl = NULL;
        c->fwd_req->cb(c->fwd_req, stream, 0);
    }
}

static void cl_conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct cl_conn *c = stream->data;

    (void)buf;
    assert(c != NULL);
    assert(c->step != CL_STEP_HANDED && c->step != CL_STEP_CLOSING);
    if (nread == 0) {
        return; /* EAGAIN. */
    }
    if (nread < 0) {
        const char *why = nread == UV_EOF ? "closed during the handshake" : uv_strerror((int)nread);
        if (c->role == CL_ROLE_SERVER) {
            cl_conn_reject(c, why);
        } else {
            cl_conn_fail(c, RAFT_NOCONNECTION, RT_EUNAVAIL, nread != UV_EOF, why);
        }
        return;
    }
    assert((size_t)nread <= c->rwant - c->rgot); /* The alloc callback offered no more. */
    c->rgot += (size_t)nread;
    if (c->rgot < c->rwant) {
        return;
    }
    switch (c->step) {
    case CL_STEP_HELLO:
        cl_conn_on_hello(c);
        break;
    case CL_STEP_PROOF:
        cl_conn_on_proof(c);
        break;
    case CL_STEP_CHALLENGE:
        cl_conn_on_challenge(c);
        break;
    case CL_STEP_VERDICT:
        cl_conn_on_verdict(c);
        break;
    default:
        assert(0 && "read completed in a step that does not read");
    }
}

/* ---- raft_uv_transport implementation ---- */

static int cl_transport_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct cl_peer_group *g = t->impl;

    assert(g != NULL && g->peer != NULL);
    assert(address != NULL);
    if (id != g->peer->node_id) {
        snprintf(t->errmsg, sizeof(t->errmsg), "raft id %llu is not this node's id %" PRIu64, id,
                 g->peer->node_id);
        return RAFT_INVALID;
    }
    if (strcmp(address, g->peer->addr) != 0) {
        /* We advertise the peer address; raft reports the sender's address from it. */
        RT_WARN("peer %" PRIu64 ": group %" PRIu32 " raft address '%.63s' differs from the peer "
                "address '%s'",
                g->peer->node_id, g->group_id, address, g->peer->addr);
    }
    return 0;
}

static int cl_transport_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct cl_peer_group *g = t->impl;

    assert(g != NULL && g->peer != NULL);
    assert(cb != NULL && !g->closing);
    g->accept_cb = cb;
    return 0;
}

static int cl_transport_connect(struct raft_uv_transport *t, struct raft_uv_connect *req,
                                raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct cl_peer_group *g = t->impl;
    struct cl_conn *c = NULL;
    int rv;

    assert(g != NULL && g->peer != NULL);
    assert(req != NULL && cb != NULL && address != NULL);
    assert(!g->closing); /* raft_uv never connects after closing the transport. */
    if (g->peer->destroying) {
        return RAFT_CANCELED;
    }
    req->cb = cb;
    rv = cl_conn_client_start(g->peer, g, id, address, &c);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "connect to %llu at %.63s: %s", id, address,
                 rt_strerror(rv));
        return rv == RT_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
    }
    c->raft_req = req;
    g->connects++;
    return 0;
}

static void cl_transport_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct cl_peer_group *g = t->impl;
    struct cl_conn *c;
    struct cl_conn *next;

    assert(g != NULL && g->peer != NULL);
    assert(!g->closing);
    g->closing = true;
    g->accept_cb = NULL; /* Incoming handshakes for this group now fail at hand-over. */
    g->close_cb = cb;
    for (c = g->peer->conns; c != NULL; c = next) {
        next = c->next;
        if (c->group == g && c->step != CL_STEP_CLOSING && c->step != CL_STEP_HANDED) {
            cl_conn_abort(c);
        }
    }
    cl_peer_group_maybe_closed(g); /* Now if nothing was pending, as raft's own transport does. */
}

/* ---- Public API ---- */

int cl_peer_create(uv_loop_t *loop, const struct cl_peer_config *config, struct cl_peer **out)
{
    struct cl_peer *peer;
    size_t addr_len;
    int rv;

    assert(loop != NULL && config != NULL);
    assert(out != NULL);
    if (config->node_id == 0 || config->addr == NULL || config->secret == NULL ||
        config->secret_len < CL_PEER_SECRET_BYTES_MIN ||
        config->secret_len > CL_PEER_SECRET_BYTES_MAX) {
        return RT_EINVAL;
    }
    addr_len = strnlen(config->addr, CL_PEER_ADDR_BYTES_MAX + 1);
    peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        return RT_ENOMEM;
    }
    rv = cl_addr_parse(config->addr, &peer->bind_addr);
    if (rv != 0) {
        RT_ERROR("peer: address '%.63s' is not a numeric host:port of at most %u bytes",
                 config->addr, CL_PEER_ADDR_BYTES_MAX);
        goto free_peer;
    }
    assert(addr_len > 0 && addr_len <= CL_PEER_ADDR_BYTES_MAX);
    peer->loop = loop;
    peer->cluster_id = config->cluster_id;
    peer->node_id = config->node_id;
    memcpy(peer->addr, config->addr, addr_len);
    peer->addr_len = (uint8_t)addr_len;
    memcpy(peer->secret, config->secret, config->secret_len);
    peer->secret_len = config->secret_len;
    rv = uv_tcp_init(loop, &peer->listener);
    if (rv != 0) {
        rv = RT_EINTERNAL;
        goto free_peer;
    }
    peer->listener.data = peer;
    peer->handles = 1;
    *out = peer;
    return 0;

free_peer:
    OPENSSL_cleanse(peer, sizeof(*peer));
    free(peer);
    return rv;
}

int cl_peer_listen(struct cl_peer *peer)
{
    int rv;

    assert(peer != NULL);
    assert(!peer->listening && !peer->destroying);
    rv = uv_tcp_bind(&peer->listener, (const struct sockaddr *)&peer->bind_addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&peer->listener, CL_LISTEN_BACKLOG, cl_peer_connection_cb);
    }
    if (rv != 0) {
        RT_ERROR("peer %" PRIu64 ": cannot listen on %s: %s", peer->node_id, peer->addr,
                 uv_strerror(rv));
        return RT_EIO;
    }
    peer->listening = true;
    RT_INFO("peer %" PRIu64 ": listening on %s", peer->node_id, peer->addr);
    return 0;
}

void cl_peer_set_forward_handler(struct cl_peer *peer, cl_peer_forward_cb cb, void *arg)
{
    assert(peer != NULL);
    assert(!peer->destroying);
    peer->forward_cb = cb;
    peer->forward_arg = arg;
}

int cl_peer_connect_forward(struct cl_peer *peer, struct cl_peer_connect *req, uint64_t node_id,
                            const char *addr, cl_peer_connect_cb cb)
{
    struct cl_conn *c = NULL;
    int rv;

    assert(peer != NULL && req != NULL);
    assert(cb != NULL && addr != NULL);
    if (peer->destroying) {
        return RT_EUNAVAIL;
    }
    if (node_id == 0 || node_id == peer->node_id) {
        return RT_EINVAL;
    }
    req->cb = cb;
    rv = cl_conn_client_start(peer, NULL, node_id, addr, &c);
    if (rv != 0) {
        return rv;
    }
    c->fwd_req = req;
    req->impl = c;
    return 0;
}

int cl_peer_transport_init(struct cl_peer *peer, uint32_t group_id, struct raft_uv_transport *t)
{
    struct cl_peer_group *g;
    unsigned slot;
    void *data;

    assert(peer != NULL && t != NULL);
    assert(!peer->destroying);
    if (!cl_peer_group_id_valid(group_id)) {
        return RT_EINVAL;
    }
    slot = cl_peer_group_slot(group_id);
    if (peer->groups[slot] != NULL) {
        return RT_EINVAL;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return RT_ENOMEM;
    }
    g->peer = peer;
    g->transport = t;
    g->group_id = group_id;
    peer->groups[slot] = g;
    data = t->data; /* raft_uv_init sets it later; keep whatever the caller put there. */
    memset(t, 0, sizeof(*t));
    t->data = data;
    t->impl = g;
    t->init = cl_transport_init;
    t->listen = cl_transport_listen;
    t->connect = cl_transport_connect;
    t->close = cl_transport_close;
    return 0;
}

void cl_peer_transport_close(struct raft_uv_transport *t)
{
    struct cl_peer_group *g;

    assert(t != NULL);
    g = t->impl;
    assert(g != NULL);
    /* Closed by raft, or never used (raft_uv_init failed before any listen or connect). */
    assert(g->closed || (!g->closing && g->accept_cb == NULL && g->connects == 0));
    if (g->peer != NULL) {
        assert(g->peer->groups[cl_peer_group_slot(g->group_id)] == g);
        g->peer->groups[cl_peer_group_slot(g->group_id)] = NULL;
    }
    free(g);
    t->impl = NULL;
}

void cl_peer_stats(const struct cl_peer *peer, struct cl_peer_stats *stats)
{
    assert(peer != NULL);
    assert(stats != NULL);
    *stats = peer->stats;
}

static void cl_peer_listener_close_cb(uv_handle_t *handle)
{
    struct cl_peer *peer = handle->data;

    assert(peer != NULL);
    assert(peer->destroying);
    cl_peer_handle_closed(peer);
    cl_peer_maybe_done(peer);
}

void cl_peer_destroy(struct cl_peer *peer, void (*cb)(void *arg), void *arg)
{
    struct cl_conn *c;
    struct cl_conn *next;

    assert(peer != NULL);
    assert(!peer->destroying);
    peer->destroying = true;
    peer->destroy_cb = cb;
    peer->destroy_arg = arg;
    peer->forward_cb = NULL;
    for (unsigned i = 0; i < CL_PEER_GROUPS_MAX; i++) {
        struct cl_peer_group *g = peer->groups[i];
        if (g == NULL) {
            continue;
        }
        /* cl_peer.h: group transports are closed before the peer is destroyed. */
        assert(g->accept_cb == NULL && g->connects == 0);
        g->peer = NULL; /* cl_peer_transport_close may still come; it must not touch us. */
        peer->groups[i] = NULL;
    }
    /* Abort handshakes. Forwarding requesters are called back with RT_EUNAVAIL from the close
     * callbacks, never from inside this function. */
    for (c = peer->conns; c != NULL; c = next) {
        next = c->next;
        if (c->step != CL_STEP_CLOSING && c->step != CL_STEP_HANDED) {
            cl_conn_abort(c);
        }
    }
    peer->listening = false;
    uv_close((uv_handle_t *)&peer->listener, cl_peer_listener_close_cb);
}
