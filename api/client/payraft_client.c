/* payraft_client: see payraft_client.h for the contract.
 *
 * Shape. Every request lives in one slot of a fixed table allocated at pr_client_new
 * (max_inflight slots), so sending never allocates more than the body copy. A slot is in one of
 * four states:
 *   QUEUED  waiting to be written: new, waiting for its backoff, or waiting for a connection;
 *           on c->queue;
 *   SENT    its frame is in the output buffer or on the wire; found by id when the answer comes
 *           (the id carries the slot number, so no lookup table is needed);
 *   DONE    outcome known, callback not yet run; on c->done;
 *   FREE    on the free stack.
 * Every QUEUED or SENT slot is also on c->order, in the order requests were queued. Deadlines are
 * queue time + one fixed timeout on a monotonic clock, so that order is deadline order and the
 * head of c->order is always the next request to time out.
 *
 * Callbacks run only from dispatch(), never while a list is being walked: code that finds an
 * outcome moves the slot to c->done, and dispatch() runs the callbacks once the step is over. A
 * callback may then queue new requests without disturbing anything.
 *
 * Connections. The client has one connection slot per server in its list (c->conns[i] for
 * servers[i]), each DOWN, CONNECTING (non-blocking connect under connect_timeout_ms) or UP. The
 * primary, conns[server_cur], carries every request that is not routed; its connect failures
 * walk the server list, and a whole round of failures costs every waiting request one attempt
 * and backs the next round off. Without the route option it is the only connection used.
 *
 * Routing (opts.route). The client keeps the cluster's shard map (cluster.shards, fetched
 * through the primary by a request of its own in a slot kept for it, refreshed every
 * ROUTE_REFRESH_MS and soon after a routed attempt failed). A request on an order
 * (op "order.*" with merchant_order_no or order_id) goes to the connection of its shard's
 * leader when the map names one of the client's own servers other than the primary's, that
 * server has not failed in the last ROUTE_DOWN_MS and its connection is up (until it is, the
 * request takes the primary while the connection is made). The map is a hint: a request that
 * reaches a node which no longer leads its shard is forwarded by the node, so a stale map costs a
 * hop, never a wrong answer. An attempt that went routed and failed (lost connection, UNAVAILABLE,
 * no answer) marks its server down for a while and the map stale, and the request's later attempts
 * take the primary, with its failover.
 */
#include "payraft_client.h"
#ifdef PAYRAFT_FUZZ_HOOKS
#include "payraft_client_fuzz.h"
#endif

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_envelope.h"
#include "api_frame.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_mp.h"

/* The public limits restate the wire's: keep them equal. */
_Static_assert(PR_OP_BYTES_MAX == API_OP_BYTES_MAX, "op limit differs from the wire's");
_Static_assert(PR_APP_BYTES_MAX == API_APP_BYTES_MAX, "app limit differs from the wire's");
_Static_assert(PR_MSG_BYTES == API_RESPONSE_MSG_BYTES_MAX + 1, "msg size differs from the wire's");
_Static_assert(PR_BODY_BYTES_MAX + 1024u <= API_FRAME_BYTES_MAX, "no room for the envelope");
/* The id is (sequence << 32) | slot: slots must fit 32 bits. */
_Static_assert(PR_INFLIGHT_MAX <= UINT32_MAX, "slot numbers must fit the id's low half");
_Static_assert(PR_SHARDS_MAX == RT_SHARDS_MAX, "shard limit differs from the runtime's");

/* Output buffered beyond this is not added to until the socket takes some: bounds memory when
 * the server reads slowly. One more frame may always be added, hence the buffer's max. */
#define CLIENT_OUT_HIGH_WATER_BYTES (256u * 1024u)
#define CLIENT_OUT_BYTES_MAX                                                                       \
    (CLIENT_OUT_HIGH_WATER_BYTES + API_FRAME_HEADER_BYTES + API_FRAME_BYTES_MAX)
/* One recv; also the most read per call before the decoder runs. */
#define CLIENT_READ_BYTES 65536u
/* Reads per readable event: 4 MiB, then the loop runs timers and writes before reading more. */
#define CLIENT_READS_PER_EVENT 64u
/* Nonces: 16 hex digits of a random per-client prefix and 16 of a counter: unique per client,
 * and across clients with overwhelming probability. */
#define CLIENT_NONCE_BYTES 32u
/* "hmac-sha256=" and 64 hex digits, NUL. */
#define CLIENT_SIG_TEXT_BYTES (12u + 2u * API_SIG_HMAC_BYTES + 1u)

/* Routing: the map is asked for again after this long, and after a routed attempt failed at
 * most once per ROUTE_RETRY_MS; a server a routed attempt failed on is avoided this long. */
#define ROUTE_REFRESH_MS 10000u
#define ROUTE_RETRY_MS   1000u
#define ROUTE_DOWN_MS    1000u

/* Option bounds (payraft_client.h). */
#define OPT_CONNECT_TIMEOUT_MS_MAX 600000u
#define OPT_REQUEST_TIMEOUT_MS_MAX 3600000u
#define OPT_RETRIES_MAX            100u
#define OPT_BACKOFF_INITIAL_MS_MAX 60000u
#define OPT_BACKOFF_MAX_MS_MAX     600000u

enum req_state { REQ_FREE = 0, REQ_QUEUED, REQ_SENT, REQ_DONE };

struct pr_req;

/* Links of a doubly linked list threaded through the slots. */
struct req_link {
    struct pr_req *prev, *next;
};

struct req_list {
    struct pr_req *head, *tail;
    uint32_t count;
};

/* Which link of a slot a list uses: c->order uses order_link; c->queue and c->done use
 * state_link (a slot is on at most one of them). */
enum req_link_kind { LINK_ORDER, LINK_STATE };

/* How a request finds its shard (routing). */
enum req_route {
    ROUTE_NONE = 0, /* Not an order request, or no key in its body: the primary. */
    ROUTE_KEY,      /* merchant_order_no: the shard of app_id "/" merchant_order_no. */
    ROUTE_ID        /* order_id: the shard the id carries. */
};

struct pr_req {
    enum req_state state;
    uint64_t id;          /* Id of the current attempt while SENT; stale ids never match. */
    uint64_t deadline_ms; /* Monotonic: the request fails with PR_ETIMEOUT then. */
    uint64_t due_ms;      /* Monotonic: not written before this (backoff). */
    unsigned failures;    /* Attempts that ended in a retryable failure. */
    unsigned tries;       /* Times written (reported as pr_response.attempts). */
    int last_err;         /* PR_E* of the last connection failure, 0 if none: reported instead
                           * of PR_ETIMEOUT when the deadline passes while waiting to retry. */
    int status;           /* Outcome once DONE. */
    unsigned conn;        /* While SENT: the connection (index into c->conns) it went on. */
    bool routed;          /* While SENT: this attempt went to its shard leader's connection. */
    bool unrouted;        /* A routed attempt failed: the later ones take the primary. */
    enum req_route route;
    uint16_t id_shard; /* ROUTE_ID: the shard in the order id. */
    uint64_t key_hash; /* ROUTE_KEY: rt_key_hash of app "/" merchant_order_no. */
    char op[PR_OP_BYTES_MAX + 1];
    uint32_t op_len;
    uint8_t *body; /* Owned copy (at least 1 byte), re-sent unchanged on every attempt. */
    uint32_t body_len;
    pr_callback cb;
    void *arg;
    struct pr_response resp; /* The answer once DONE with status 0. */
    struct req_link order_link;
    struct req_link state_link;
};

struct pr_server {
    char host[PR_HOST_BYTES_MAX + 1]; /* Without the brackets of an IPv6 literal. */
    char port[6];                     /* Decimal 1..65535. */
    /* "host:port" or "[v6]:port" as the list gave it, which is how the nodes spell their API
     * addresses in cluster.shards (no port has two spellings: server_parse refuses zeros). */
    char spelled[PR_HOST_BYTES_MAX + 9];
    uint32_t spelled_len;
};

enum conn_state { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP };

/* The connection to one server. */
struct pr_conn {
    enum conn_state state;
    int fd;                       /* -1 when DOWN. */
    uint64_t connect_deadline_ms; /* While CONNECTING. */
    uint64_t down_until_ms;       /* Routing avoids this server until then (it failed). */
    uint32_t sent_count;          /* Requests SENT on it. */
    struct api_frame_decoder dec; /* Frames from the server, length-checked. */
    struct rt_buf out;            /* Frames not yet written; out_off of them already are. */
    size_t out_off;
};

/* The shard map, as the last cluster.shards said (routing). */
struct route_map {
    uint16_t shard_count;         /* 0: none yet. */
    int8_t leader[RT_SHARDS_MAX]; /* Index into servers of each shard's leader, or -1. */
};

struct pr_client {
    struct pr_client_options opt;
    struct pr_server servers[PR_SERVERS_MAX];
    unsigned server_count; /* 1..PR_SERVERS_MAX. */
    unsigned server_cur;   /* The primary: connected to, or tried next. */
    char app[PR_APP_BYTES_MAX + 1];
    uint32_t app_len;
    struct api_hmac hmac; /* The app secret, prepared for signing; wiped by pr_client_free. */

    /* Connections: conns[i] to servers[i]. The primary's failover state: */
    struct pr_conn conns[PR_SERVERS_MAX];
    uint64_t reconnect_ms;    /* While the primary is DOWN: no connect before this (backoff). */
    unsigned failed_in_round; /* Consecutive connect failures, 0..server_count - 1. */
    unsigned rounds_failed;   /* Consecutive rounds in which every server failed. */
    bool rotate;              /* Move the primary to the next server once it is idle. */
    uint8_t *rbuf;            /* CLIENT_READ_BYTES, shared: one recv at a time. */

    /* Routing (opt.route). */
    struct route_map map;
    bool map_stale;        /* A routed attempt failed since the map request was queued. */
    uint64_t map_asked_ms; /* When the last map request was queued. */
    uint64_t map_next_ms;  /* The next map request is due then. */

    /* Requests. */
    struct pr_req *reqs;  /* opt.max_inflight slots, then one for the map request. */
    uint32_t *free_slots; /* Stack of free slot numbers (the map's slot is never on it). */
    uint32_t free_count;
    struct req_list order; /* QUEUED and SENT, by deadline. */
    struct req_list queue; /* QUEUED. */
    struct req_list done;  /* DONE, callbacks pending. */
    uint32_t seq;          /* High half of the next id; never 0, so no id is 0. */
    uint64_t nonce_prefix;
    uint64_t nonce_counter;
    uint64_t rng; /* splitmix64 state for jitter. */
    bool dispatching;
    bool freeing; /* In pr_client_free: callbacks may no longer send. */
};

/* ---- Errors ---- */

const char *pr_strerror(int code)
{
    if (code == 0) {
        return "ok";
    }
#define PR_ERROR_TEXT(name, value, msg)                                                            \
    if (code == value) {                                                                           \
        return msg;                                                                                \
    }
    PR_ERRORS(PR_ERROR_TEXT)
#undef PR_ERROR_TEXT
    return "unknown error";
}

/* Convert a runtime/wire error (RT_E*) at the boundary. */
static int pr_from_rt(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RT_ENOMEM:
        return PR_ENOMEM;
    case RT_ETOOLARGE:
        return PR_ETOOLARGE;
    case RT_EINVAL:
    case RT_EMALFORMED:
        return PR_EINVAL;
    default:
        return PR_EINTERNAL;
    }
}

/* ---- Time and randomness ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    int rv = clock_gettime(CLOCK_MONOTONIC, &ts);
    assert(rv == 0);
    (void)rv;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    int rv = clock_gettime(CLOCK_REALTIME, &ts);
    assert(rv == 0);
    (void)rv;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Delay before retry number @n (1 for the first): backoff_initial_ms << (n - 1), capped at
 * backoff_max_ms, then drawn from [d/2, d] so that clients that failed together do not retry
 * together. */
static uint64_t backoff_ms(struct pr_client *c, unsigned n)
{
    assert(n >= 1);
    assert(c->opt.backoff_initial_ms <= c->opt.backoff_max_ms);
    uint64_t d = c->opt.backoff_initial_ms;
    for (unsigned i = 1; i < n && d < c->opt.backoff_max_ms; i++) {
        d *= 2; /* d <= 600000 before doubling: no overflow. */
    }
    if (d > c->opt.backoff_max_ms) {
        d = c->opt.backoff_max_ms;
    }
    uint64_t half = d / 2;
    return half + splitmix64(&c->rng) % (d - half + 1);
}

/* ---- Lists ---- */

static struct req_link *req_link(struct pr_req *r, enum req_link_kind kind)
{
    return kind == LINK_ORDER ? &r->order_link : &r->state_link;
}

static void list_append(struct req_list *l, struct pr_req *r, enum req_link_kind kind)
{
    struct req_link *link = req_link(r, kind);
    assert(link->prev == NULL && link->next == NULL && l->head != r);
    link->prev = l->tail;
    if (l->tail != NULL) {
        req_link(l->tail, kind)->next = r;
    } else {
        l->head = r;
    }
    l->tail = r;
    l->count++;
}

static void list_remove(struct req_list *l, struct pr_req *r, enum req_link_kind kind)
{
    struct req_link *link = req_link(r, kind);
    assert(l->count > 0);
    if (link->prev != NULL) {
        req_link(link->prev, kind)->next = link->next;
    } else {
        assert(l->head == r);
        l->head = link->next;
    }
    if (link->next != NULL) {
        req_link(link->next, kind)->prev = link->prev;
    } else {
        assert(l->tail == r);
        l->tail = link->prev;
    }
    link->prev = link->next = NULL;
    l->count--;
}

/* ---- Responses ---- */

void pr_response_free(struct pr_response *resp)
{
    if (resp == NULL) {
        return;
    }
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

void pr_response_move(struct pr_response *dst, struct pr_response *src)
{
    assert(dst != NULL && src != NULL);
    assert(dst->body == NULL); /* dst must hold nothing, or its body would leak. */
    *dst = *src;
    memset(src, 0, sizeof(*src));
}

/* ---- Options and arguments ---- */

void pr_client_options_init(struct pr_client_options *opts)
{
    assert(opts != NULL);
    memset(opts, 0, sizeof(*opts));
    opts->connect_timeout_ms = 2000;
    opts->request_timeout_ms = 10000;
    /* Enough backoff to outlast a leader election (1-2 s; docs/protocol.md 13.2): ten retries
     * wait at least 5.6 s in all, so the request's deadline is what usually ends them. Five
     * waited at most 1.55 s, and a request sent just after a leader died failed. */
    opts->retries = 10;
    opts->backoff_initial_ms = 50;
    opts->backoff_max_ms = 2000;
    opts->max_inflight = 1024;
}

static bool options_valid(const struct pr_client_options *o)
{
    return o->connect_timeout_ms >= 1 && o->connect_timeout_ms <= OPT_CONNECT_TIMEOUT_MS_MAX &&
           o->request_timeout_ms >= 1 && o->request_timeout_ms <= OPT_REQUEST_TIMEOUT_MS_MAX &&
           o->retries <= OPT_RETRIES_MAX && o->backoff_initial_ms >= 1 &&
           o->backoff_initial_ms <= OPT_BACKOFF_INITIAL_MS_MAX &&
           o->backoff_max_ms >= o->backoff_initial_ms &&
           o->backoff_max_ms <= OPT_BACKOFF_MAX_MS_MAX && o->max_inflight >= 1 &&
           o->max_inflight <= PR_INFLIGHT_MAX;
}

static bool is_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* CONTRACT.md: app ids are 1..32 of [A-Za-z0-9_-]. @s is NUL-terminated; read at most 33. */
static bool app_valid(const char *s, uint32_t *len)
{
    uint32_t n = 0;
    for (; n <= PR_APP_BYTES_MAX && s[n] != '\0'; n++) {
        if (!is_alnum(s[n]) && s[n] != '_' && s[n] != '-') {
            return false;
        }
    }
    *len = n;
    return n >= 1 && n <= PR_APP_BYTES_MAX;
}

/* api_envelope.h: ops are 1..48 of [a-z_.]. @s is NUL-terminated; read at most 49. */
static bool op_valid(const char *s, uint32_t *len)
{
    uint32_t n = 0;
    for (; n <= PR_OP_BYTES_MAX && s[n] != '\0'; n++) {
        if (!((s[n] >= 'a' && s[n] <= 'z') || s[n] == '_' || s[n] == '.')) {
            return false;
        }
    }
    *len = n;
    return n >= 1 && n <= PR_OP_BYTES_MAX;
}

/* One "host:port" or "[v6]:port" of @len bytes into @srv. */
static bool server_parse(const char *s, size_t len, struct pr_server *srv)
{
    const char *host = s, *colon;
    size_t host_len;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || (size_t)(close - s) + 1 >= len || close[1] != ':') {
            return false;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
        for (size_t i = 0; i < host_len; i++) {
            char ch = host[i];
            if (!(is_alnum(ch) || ch == ':' || ch == '.' || ch == '%')) {
                return false;
            }
        }
    } else {
        colon = memrchr(s, ':', len);
        if (colon == NULL) {
            return false;
        }
        host_len = (size_t)(colon - s);
        for (size_t i = 0; i < host_len; i++) {
            if (!is_alnum(host[i]) && host[i] != '.' && host[i] != '-' && host[i] != '_') {
                return false; /* A bare IPv6 address needs its brackets. */
            }
        }
    }
    size_t port_len = len - (size_t)(colon + 1 - s);
    if (host_len < 1 || host_len > PR_HOST_BYTES_MAX || port_len < 1 || port_len > 5) {
        return false;
    }
    unsigned port = 0;
    for (size_t i = 0; i < port_len; i++) {
        char ch = colon[1 + i];
        if (ch < '0' || ch > '9') {
            return false;
        }
        port = port * 10u + (unsigned)(ch - '0');
    }
    if (port < 1 || port > 65535 || colon[1] == '0') {
        return false; /* No port 0, no leading zeros: one spelling per port. */
    }
    memcpy(srv->host, host, host_len);
    srv->host[host_len] = '\0';
    memcpy(srv->port, colon + 1, port_len);
    srv->port[port_len] = '\0';
    assert(len < sizeof(srv->spelled));
    memcpy(srv->spelled, s, len);
    srv->spelled_len = (uint32_t)len;
    return true;
}

static bool servers_parse(struct pr_client *c, const char *list)
{
    size_t len = strnlen(list, PR_SERVERS_BYTES_MAX + 1);
    if (len < 1 || len > PR_SERVERS_BYTES_MAX) {
        return false;
    }
    c->server_count = 0;
    const char *p = list, *end = list + len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma != NULL ? comma : end;
        if (c->server_count == PR_SERVERS_MAX ||
            !server_parse(p, (size_t)(item_end - p), &c->servers[c->server_count])) {
            return false;
        }
        c->server_count++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    assert(c->server_count >= 1 && c->server_count <= PR_SERVERS_MAX);
    return true;
}

/* ---- Creation ---- */

int pr_client_new(const char *servers, const char *app, const uint8_t *secret, size_t secret_len,
                  const struct pr_client_options *opts, struct pr_client **out)
{
    if (out == NULL) {
        return PR_EINVAL;
    }
    *out = NULL;
    struct pr_client_options o;
    if (opts != NULL) {
        o = *opts;
    } else {
        pr_client_options_init(&o);
    }
    if (servers == NULL || app == NULL || secret == NULL || secret_len < 1 ||
        secret_len > PR_SECRET_BYTES_MAX || !options_valid(&o)) {
        return PR_EINVAL;
    }
    struct pr_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return PR_ENOMEM;
    }
    c->opt = o;
    if (!servers_parse(c, servers) || !app_valid(app, &c->app_len)) {
        free(c);
        return PR_EINVAL;
    }
    memcpy(c->app, app, c->app_len);
    uint64_t seed[2];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        free(c);
        return PR_ESYS;
    }
    if (api_hmac_init(&c->hmac, secret, secret_len) != 0) {
        free(c);
        return PR_ENOMEM; /* The secret's length was checked: only OpenSSL can fail here. */
    }
    c->nonce_prefix = seed[0];
    c->rng = seed[1];
    c->seq = 1;
    c->reqs = calloc((size_t)o.max_inflight + 1u, sizeof(*c->reqs)); /* + the map's. */
    c->free_slots = calloc(o.max_inflight, sizeof(*c->free_slots));
    c->rbuf = malloc(CLIENT_READ_BYTES);
    if (c->reqs == NULL || c->free_slots == NULL || c->rbuf == NULL) {
        goto err_free;
    }
    /* Pushed in reverse so that slot 0 is used first (nicer ids to read in a trace). */
    for (uint32_t i = 0; i < o.max_inflight; i++) {
        c->free_slots[i] = o.max_inflight - 1 - i;
    }
    c->free_count = o.max_inflight;
    for (unsigned i = 0; i < PR_SERVERS_MAX; i++) {
        struct pr_conn *k = &c->conns[i];
        k->fd = -1;
        api_frame_decoder_init(&k->dec, API_FRAME_BYTES_MAX); /* Allocate at first use. */
        rt_buf_init(&k->out, CLIENT_OUT_BYTES_MAX);
    }
    *out = c;
    return 0;

err_free:
    free(c->rbuf);
    free(c->free_slots);
    free(c->reqs);
    api_hmac_free(&c->hmac);
    free(c);
    return PR_ENOMEM;
}

/* ---- Outcomes ---- */

static void route_down(struct pr_client *c, unsigned i, uint64_t now);
static void route_map_stale(struct pr_client *c);

/* The request's outcome is known: take it off the in-flight lists and queue its callback.
 * @resp (may be NULL) is moved into the slot. */
static void req_finish(struct pr_client *c, struct pr_req *r, int status, struct pr_response *resp)
{
    assert(r->state == REQ_QUEUED || r->state == REQ_SENT);
    assert(status <= 0 && (status == 0) == (resp != NULL));
    if (r->state == REQ_QUEUED) {
        list_remove(&c->queue, r, LINK_STATE);
    } else {
        assert(c->conns[r->conn].sent_count > 0);
        c->conns[r->conn].sent_count--;
    }
    list_remove(&c->order, r, LINK_ORDER);
    r->state = REQ_DONE;
    r->status = status;
    if (resp != NULL) {
        resp->attempts = r->tries;
        pr_response_move(&r->resp, resp);
    }
    list_append(&c->done, r, LINK_STATE);
}

/* Whether @r may be sent again after an attempt that ended with @resp (NULL: a connection
 * failure). Every write is idempotent under the app's own key except app.create, whose secret
 * is shown once: a retry of a create that did succeed would answer CONFLICT and the secret would
 * be lost (docs/protocol.md 10.4). So app.create is retried only when it was never written
 * (every connect failed) or was refused as REPLAYED (not run); otherwise its caller gets the
 * outcome-unknown answer and checks with app.get. */
static bool req_retry_safe(const struct pr_req *r, const struct pr_response *resp)
{
    if (r->tries == 0 || !rt_mp_key_is(r->op, r->op_len, "app.create")) {
        return true;
    }
    return resp != NULL && strcmp(resp->code, "REPLAYED") == 0;
}

/* An attempt of @r (QUEUED or SENT) failed in a way worth retrying: with @err (a connection
 * failure; @resp NULL) or with the answer @resp (UNAVAILABLE and friends). Schedule the next
 * attempt, or finish with this outcome if the retries or the time are used up. A routed attempt
 * that failed sends the later ones through the primary. */
static void req_retry(struct pr_client *c, struct pr_req *r, int err, struct pr_response *resp,
                      uint64_t now)
{
    assert(r->state == REQ_QUEUED || r->state == REQ_SENT);
    assert((err < 0) != (resp != NULL));
    if (r->state == REQ_SENT && r->routed) {
        r->unrouted = true;
        route_down(c, r->conn, now); /* Lost, or UNAVAILABLE (an election), or TIMEOUT. */
    }
    if (!req_retry_safe(r, resp)) {
        req_finish(c, r, resp != NULL ? 0 : err, resp);
        return;
    }
    r->failures++;
    uint64_t delay = r->failures <= c->opt.retries ? backoff_ms(c, r->failures) : 0;
    if (r->failures > c->opt.retries || now + delay >= r->deadline_ms) {
        req_finish(c, r, resp != NULL ? 0 : err, resp);
        return;
    }
    pr_response_free(resp); /* Not the final answer: the next attempt's will be. */
    r->last_err = err;
    r->due_ms = now + delay;
    if (r->state == REQ_SENT) {
        assert(c->conns[r->conn].sent_count > 0);
        c->conns[r->conn].sent_count--;
        r->state = REQ_QUEUED;
        list_append(&c->queue, r, LINK_STATE);
    }
}

static void route_map_done(struct pr_client *c, int status, const struct pr_response *resp);

/* Run the callbacks of finished requests; returns how many of the caller's ran (the client's
 * own map request is handled here too, and not counted). */
static int dispatch(struct pr_client *c)
{
    assert(!c->dispatching);
    int fired = 0;
    while (c->done.head != NULL) {
        struct pr_req *r = c->done.head;
        assert(r->state == REQ_DONE);
        list_remove(&c->done, r, LINK_STATE);
        pr_callback cb = r->cb;
        void *arg = r->arg;
        int status = r->status;
        struct pr_response resp = r->resp;
        free(r->body);
        uint32_t slot = (uint32_t)(r - c->reqs);
        memset(r, 0, sizeof(*r)); /* REQ_FREE, links cleared. */
        if (slot == c->opt.max_inflight) {
            /* The slot past the caller's: the client's own map request, no user callback. */
            route_map_done(c, status, &resp);
            pr_response_free(&resp);
            continue;
        }
        assert(c->free_count < c->opt.max_inflight);
        c->free_slots[c->free_count++] = slot;
        /* The slot is free before the callback runs: the callback may send again at once. */
        c->dispatching = true;
        cb(arg, status, &resp);
        c->dispatching = false;
        pr_response_free(&resp);
        fired++;
    }
    return fired;
}

/* ---- Connections ---- */

static void conn_close(struct pr_conn *k)
{
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    k->state = CONN_DOWN;
    api_frame_decoder_free(&k->dec);
    api_frame_decoder_init(&k->dec, API_FRAME_BYTES_MAX);
    rt_buf_reset(&k->out);
    k->out_off = 0;
}

/* The primary moves to the next server in the list, at once. */
static void primary_next(struct pr_client *c, uint64_t now)
{
    c->rotate = false;
    c->server_cur = (c->server_cur + 1) % c->server_count;
    c->reconnect_ms = now;
    if (c->conns[c->server_cur].state == CONN_UP) {
        c->failed_in_round = 0; /* Routing had connected it: a connection that works. */
        c->rounds_failed = 0;
    }
}

/* Routing avoids server @i for a while: an attempt routed to it failed. */
static void route_down(struct pr_client *c, unsigned i, uint64_t now)
{
    c->conns[i].down_until_ms = now + ROUTE_DOWN_MS;
    route_map_stale(c);
}

/* The established connection @i failed (@err: PR_ECLOSED or PR_EPROTO). Every request on it may
 * or may not have been applied: all are retried (safe: see the top of payraft_client.h). The
 * primary moves to the next server; a routed connection's server is avoided for a while, unless
 * the server only closed a connection that carried nothing (its idle limit): nothing was lost,
 * the next request for that server connects again, and if the server is gone that connect's
 * failure marks it down then. */
static void conn_lost(struct pr_client *c, unsigned i, int err, uint64_t now)
{
    assert(c->conns[i].state == CONN_UP);
    assert(err == PR_ECLOSED || err == PR_EPROTO);
    bool carried = c->conns[i].sent_count > 0;
    conn_close(&c->conns[i]);
    if (i == c->server_cur) {
        primary_next(c, now);
        c->failed_in_round = 0;
    } else if (carried || err == PR_EPROTO) {
        route_down(c, i, now);
    }
    struct pr_req *next;
    for (struct pr_req *r = c->order.head; r != NULL; r = next) {
        next = r->order_link.next; /* req_retry may take r off c->order. */
        if (r->state == REQ_SENT && r->conn == i) {
            req_retry(c, r, err, NULL, now);
        }
    }
    assert(c->conns[i].sent_count == 0);
}

/* A connect attempt to server @i failed. For the primary: try the next server at once, unless
 * every server has now failed in a row; then every request waiting to be written loses an
 * attempt and the next round waits for a backoff. For a routed connection: its requests wait
 * for the primary instead, and lose nothing. */
static void connect_failed(struct pr_client *c, unsigned i, uint64_t now)
{
    assert(c->conns[i].state != CONN_UP);
    conn_close(&c->conns[i]);
    if (i != c->server_cur) {
        route_down(c, i, now);
        return;
    }
    primary_next(c, now);
    c->failed_in_round++;
    if (c->failed_in_round < c->server_count) {
        return;
    }
    c->failed_in_round = 0;
    c->rounds_failed++;
    c->reconnect_ms = now + backoff_ms(c, c->rounds_failed);
    struct pr_req *next;
    for (struct pr_req *r = c->queue.head; r != NULL; r = next) {
        next = r->state_link.next; /* req_retry may finish r. */
        if (r->due_ms <= now) {
            req_retry(c, r, PR_ECONNECT, NULL, now);
        }
    }
}

static void connect_succeeded(struct pr_client *c, unsigned i)
{
    struct pr_conn *k = &c->conns[i];
    assert(k->fd >= 0);
    k->state = CONN_UP;
    if (i == c->server_cur) {
        c->failed_in_round = 0;
        c->rounds_failed = 0;
    }
    int one = 1;
    /* Requests are small and latency matters more than packet count. Best effort. */
    (void)setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Start connecting to server @i. */
static void connect_start(struct pr_client *c, unsigned i, uint64_t now)
{
    struct pr_conn *k = &c->conns[i];
    assert(k->state == CONN_DOWN && k->fd < 0);
    const struct pr_server *srv = &c->servers[i];
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(srv->host, srv->port, &hints, &ai) != 0 || ai == NULL) {
        connect_failed(c, i, now);
        return;
    }
    /* The first address only: a server in the list is one node; a name that resolves to several
     * addresses is not how a cluster is listed (list each node). */
    k->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        freeaddrinfo(ai);
        connect_failed(c, i, now);
        return;
    }
    int rv = connect(k->fd, ai->ai_addr, ai->ai_addrlen);
    int saved = errno;
    freeaddrinfo(ai);
    if (rv == 0) {
        connect_succeeded(c, i);
    } else if (saved == EINPROGRESS) {
        k->state = CONN_CONNECTING;
        k->connect_deadline_ms = now + c->opt.connect_timeout_ms;
    } else {
        connect_failed(c, i, now);
    }
}

/* The non-blocking connect to server @i reported (writable or error): did it succeed? */
static void connect_check(struct pr_client *c, unsigned i, uint64_t now)
{
    assert(c->conns[i].state == CONN_CONNECTING);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->conns[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        connect_failed(c, i, now);
        return;
    }
    connect_succeeded(c, i);
}

/* ---- Routing ---- */

/* Whether the map request (the slot past the caller's) is queued, sent or not yet dispatched. */
static bool map_in_flight(const struct pr_client *c)
{
    return c->reqs[c->opt.max_inflight].state != REQ_FREE;
}

/* A routed attempt failed: ask for the map again soon (at most once per ROUTE_RETRY_MS), also
 * when a map request is in flight (its answer may predate the failure). */
static void route_map_stale(struct pr_client *c)
{
    c->map_stale = true;
    uint64_t soon = c->map_asked_ms + ROUTE_RETRY_MS;
    if (soon < c->map_next_ms) {
        c->map_next_ms = soon;
    }
}

/* Where a request's routing key is, read from its body at send with the server's own reader
 * (api_body_strs: a field's first occurrence counts): for an order op, the merchant_order_no
 * (and, for the admin, the app_id it acts for), else the order_id, as the server picks them
 * (docs/protocol.md, order.get). A body without them is not routed, nor is a key longer than
 * an actor key may be (RT_ACTOR_KEY_BYTES_MAX: the server refuses it). */
static void route_key(const struct pr_client *c, struct pr_req *r)
{
    r->route = ROUTE_NONE;
    if (!c->opt.route || r->op_len < 6 || memcmp(r->op, "order.", 6) != 0) {
        return;
    }
    enum { F_APP, F_MONO, F_ORDER_ID, F_COUNT };
    struct api_body_field fields[F_COUNT] = {[F_APP] = {.name = "app_id"},
                                             [F_MONO] = {.name = "merchant_order_no"},
                                             [F_ORDER_ID] = {.name = "order_id"}};
    api_body_strs(r->body, r->body_len, fields, F_COUNT);
    const struct api_body_field *mono = &fields[F_MONO], *order_id = &fields[F_ORDER_ID];
    const char *app = c->app;
    uint32_t app_len = c->app_len;
    if (rt_mp_key_is(c->app, c->app_len, "admin")) {
        /* Only the admin acts for the body's app_id. */
        app = fields[F_APP].found == 0 ? fields[F_APP].value : NULL;
        app_len = fields[F_APP].found == 0 ? fields[F_APP].len : 0;
    }
    if (mono->found == 0 && mono->len > 0 && app_len > 0 &&
        app_len + 1u + mono->len <= RT_ACTOR_KEY_BYTES_MAX) {
        uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
        memcpy(key, app, app_len);
        key[app_len] = '/';
        memcpy(key + app_len + 1, mono->value, mono->len);
        r->route = ROUTE_KEY;
        r->key_hash = rt_key_hash(key, app_len + 1u + mono->len);
    } else if (mono->found == RT_ENOTFOUND && order_id->found == 0 &&
               rt_id_shard(order_id->value, order_id->len, 'P', &r->id_shard)) {
        r->route = ROUTE_ID; /* 'P': order ids' kind letter (actors/act_order.h). */
    }
}

/* The server leading @r's shard by the map, when it is one of ours, not the primary (whose
 * connection takes unrouted requests anyway, under the primary's failover rules) and has not
 * failed lately; else -1. */
static int req_leader(const struct pr_client *c, const struct pr_req *r, uint64_t now)
{
    if (r->route == ROUTE_NONE || r->unrouted || c->map.shard_count == 0) {
        return -1;
    }
    uint16_t shard =
        r->route == ROUTE_ID ? r->id_shard : rt_shard_of_hash(r->key_hash, c->map.shard_count);
    if (shard >= c->map.shard_count) {
        return -1; /* An id of a shard this map does not have. */
    }
    int leader = c->map.leader[shard];
    if (leader < 0 || (unsigned)leader == c->server_cur || c->conns[leader].down_until_ms > now) {
        return -1;
    }
    return leader;
}

/* The connection a request's next attempt takes: its shard leader's (@leader, req_leader's
 * answer) once that connection is up, else the primary: a request never waits for a routed connect,
 * which may take up to connect_timeout_ms to fail (fill_output starts it). *routed says which. */
static unsigned req_target(const struct pr_client *c, int leader, bool *routed)
{
    *routed = leader >= 0 && c->conns[leader].state == CONN_UP;
    return *routed ? (unsigned)leader : c->server_cur;
}

/* The index of the server spelled @addr ("host:port", "[v6]:port") in our list, or -1: the
 * client connects only where it was told to. */
static int server_find(const struct pr_client *c, const char *addr, uint32_t len)
{
    for (unsigned i = 0; i < c->server_count; i++) {
        const struct pr_server *srv = &c->servers[i];
        if (srv->spelled_len == len && memcmp(srv->spelled, addr, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Read a cluster.shards body ({shard_count, shards: [{shard_id, leader, leader_api}]}) into
 * @map. Unknown keys are skipped; anything else off that shape fails (the old map stays). */
static bool route_map_parse(const struct pr_client *c, const uint8_t *body, size_t len,
                            struct route_map *map)
{
    struct rt_mp_reader rd;
    rt_mp_reader_init(&rd, body, len);
    uint32_t count;
    uint64_t shard_count = 0;
    bool have_shards = false;
    bool seen[RT_SHARDS_MAX] = {false};
    if (rt_mp_read_map(&rd, &count) != 0) {
        return false;
    }
    memset(map->leader, -1, sizeof(map->leader));
    for (uint32_t i = 0; i < count; i++) {
        const char *key;
        uint32_t key_len;
        if (rt_mp_read_str(&rd, &key, &key_len) != 0) {
            return false;
        }
        if (rt_mp_key_is(key, key_len, "shard_count")) {
            if (rt_mp_read_uint(&rd, &shard_count) != 0 || shard_count < 1 ||
                shard_count > RT_SHARDS_MAX) {
                return false;
            }
            continue;
        }
        if (!rt_mp_key_is(key, key_len, "shards")) {
            if (rt_mp_skip(&rd) != 0) {
                return false;
            }
            continue;
        }
        uint32_t shards;
        if (have_shards || rt_mp_read_array(&rd, &shards) != 0 || shards > RT_SHARDS_MAX) {
            return false;
        }
        have_shards = true;
        for (uint32_t s = 0; s < shards; s++) {
            uint32_t fields;
            uint64_t shard_id = UINT64_MAX;
            int leader = -1;
            if (rt_mp_read_map(&rd, &fields) != 0) {
                return false;
            }
            for (uint32_t f = 0; f < fields; f++) {
                const char *name, *addr;
                uint32_t name_len, addr_len;
                if (rt_mp_read_str(&rd, &name, &name_len) != 0) {
                    return false;
                }
                int rv;
                if (rt_mp_key_is(name, name_len, "shard_id")) {
                    rv = rt_mp_read_uint(&rd, &shard_id);
                } else if (rt_mp_key_is(name, name_len, "leader_api") &&
                           rt_mp_peek(&rd) == RT_MP_STR) {
                    rv = rt_mp_read_str(&rd, &addr, &addr_len);
                    leader = rv == 0 ? server_find(c, addr, addr_len) : -1;
                } else {
                    rv = rt_mp_skip(&rd); /* leader, a nil leader_api, newer fields. */
                }
                if (rv != 0) {
                    return false;
                }
            }
            if (shard_id >= RT_SHARDS_MAX || seen[shard_id]) {
                return false; /* Past any map, or a shard told twice. */
            }
            seen[shard_id] = true;
            map->leader[shard_id] = (int8_t)leader;
        }
    }
    if (!have_shards || shard_count == 0) {
        return false;
    }
    map->shard_count = (uint16_t)shard_count;
    for (unsigned s = map->shard_count; s < RT_SHARDS_MAX; s++) {
        if (seen[s]) {
            return false; /* A shard id past the count: not a map we understand. */
        }
    }
    return true;
}

/* The map request finished. A map that does not parse leaves the old one (and no map means
 * every request takes the primary, as without routing). */
static void route_map_done(struct pr_client *c, int status, const struct pr_response *resp)
{
    struct route_map map;
    if (status == 0 && !resp->ok && strcmp(resp->code, "UNAVAILABLE") != 0) {
        /* A refusal that asking again soon will not change (an older server, no permission):
         * ask at the usual interval, not every ROUTE_RETRY_MS. */
        c->map_next_ms = c->map_asked_ms + ROUTE_REFRESH_MS;
        return;
    }
    if (status != 0 || !resp->ok || !route_map_parse(c, resp->body, resp->body_len, &map)) {
        c->map_next_ms = c->map_asked_ms + ROUTE_RETRY_MS;
        return;
    }
    c->map = map;
    c->map_next_ms = c->map_asked_ms + (c->map_stale ? ROUTE_RETRY_MS : ROUTE_REFRESH_MS);
}

/* Queue the map request when it is due and the caller has requests in flight (an idle client
 * asks for nothing). It takes the slot kept for it, and the primary, like any request. */
static void route_map_ask(struct pr_client *c, uint64_t now)
{
    if (!c->opt.route || map_in_flight(c) || now < c->map_next_ms ||
        c->free_count == c->opt.max_inflight || c->freeing) {
        return;
    }
    struct pr_req *r = &c->reqs[c->opt.max_inflight];
    assert(r->state == REQ_FREE);
    r->body = malloc(1);
    if (r->body == NULL) {
        c->map_next_ms = now + ROUTE_RETRY_MS;
        return;
    }
    r->body[0] = 0x80; /* {} */
    r->body_len = 1;
    static const char op[] = "cluster.shards";
    memcpy(r->op, op, sizeof(op));
    r->op_len = (uint32_t)(sizeof(op) - 1);
    r->state = REQ_QUEUED;
    r->deadline_ms = now + c->opt.request_timeout_ms;
    r->due_ms = now;
    list_append(&c->order, r, LINK_ORDER);
    list_append(&c->queue, r, LINK_STATE);
    c->map_stale = false; /* Failures from now on are news to this request's answer. */
    c->map_asked_ms = now;
    c->map_next_ms = UINT64_MAX; /* Set when it finishes. */
}

/* ---- Writing ---- */

/* Append @r's next attempt to @out: a fresh id, ts and nonce, signed. */
static int encode_request(struct pr_client *c, struct pr_req *r, struct rt_buf *out)
{
    assert(r->state == REQ_QUEUED);
    uint32_t slot = (uint32_t)(r - c->reqs);
    uint64_t id = ((uint64_t)c->seq << 32) | slot;
    c->seq = c->seq == UINT32_MAX ? 1 : c->seq + 1;
    char nonce[CLIENT_NONCE_BYTES + 1];
    int n = snprintf(nonce, sizeof(nonce), "%016llx%016llx", (unsigned long long)c->nonce_prefix,
                     (unsigned long long)c->nonce_counter++);
    assert(n == (int)CLIENT_NONCE_BYTES);
    struct api_request req = {.id = id,
                              .ts_ms = wall_ms(),
                              .op = r->op,
                              .op_len = r->op_len,
                              .app = c->app,
                              .app_len = c->app_len,
                              .nonce = nonce,
                              .nonce_len = CLIENT_NONCE_BYTES,
                              .body = r->body,
                              .body_len = r->body_len};
    int rv = api_request_encode_hmac(out, &req, &c->hmac);
    if (rv != 0) {
        return pr_from_rt(rv);
    }
    r->id = id;
    r->tries++;
    return 0;
}

/* Whether connection @i takes more requests now: up, below its high-water mark, and not the
 * primary while it drains to move on. */
static bool conn_open_for_writes(const struct pr_client *c, unsigned i)
{
    const struct pr_conn *k = &c->conns[i];
    return k->state == CONN_UP && !(i == c->server_cur && c->rotate) &&
           k->out.len - k->out_off < CLIENT_OUT_HIGH_WATER_BYTES;
}

/* Whether any connection takes writes: when none does, the queue is not walked (it may hold
 * max_inflight requests) until a socket drains. */
static bool any_open_for_writes(const struct pr_client *c)
{
    for (unsigned i = 0; i < c->server_count; i++) {
        if (conn_open_for_writes(c, i)) {
            return true;
        }
    }
    return false;
}

/* Encode the requests that are due into their connections' buffers, up to each high-water
 * mark; start the routed connections they need. */
static void fill_output(struct pr_client *c, uint64_t now)
{
    for (unsigned i = 0; i < c->server_count; i++) {
        struct pr_conn *k = &c->conns[i];
        if (k->state == CONN_UP && k->out_off > 0) {
            /* Keep the pending bytes at the front so the buffer never grows past its max. */
            memmove(k->out.data, k->out.data + k->out_off, k->out.len - k->out_off);
            rt_buf_truncate(&k->out, k->out.len - k->out_off);
            k->out_off = 0;
        }
    }
    bool writable = any_open_for_writes(c);
    struct pr_req *next;
    for (struct pr_req *r = c->queue.head; r != NULL && writable; r = next) {
        next = r->state_link.next;
        if (r->due_ms > now) {
            continue;
        }
        int leader = req_leader(c, r, now);
        if (leader >= 0 && c->conns[leader].state == CONN_DOWN) {
            connect_start(c, (unsigned)leader, now); /* A failure marks it down for a while. */
        }
        bool routed;
        unsigned i = req_target(c, leader, &routed);
        if (!conn_open_for_writes(c, i)) {
            continue;
        }
        int rv = encode_request(c, r, &c->conns[i].out);
        if (rv != 0) {
            /* Sizes were checked at send, so only memory or OpenSSL can fail here: this
             * request fails; the others may still fit. */
            req_finish(c, r, rv, NULL);
            continue;
        }
        list_remove(&c->queue, r, LINK_STATE);
        r->state = REQ_SENT;
        r->conn = i;
        r->routed = routed;
        c->conns[i].sent_count++;
        if (!conn_open_for_writes(c, i)) {
            writable = any_open_for_writes(c); /* That buffer reached its high-water mark. */
        }
    }
}

/* Write what connection @i's socket takes. false if the connection failed (it has been
 * handled). */
static bool flush_output(struct pr_client *c, unsigned i, uint64_t now)
{
    struct pr_conn *k = &c->conns[i];
    assert(k->state == CONN_UP);
    while (k->out_off < k->out.len) {
        ssize_t w = send(k->fd, k->out.data + k->out_off, k->out.len - k->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            k->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        conn_lost(c, i, PR_ECLOSED, now);
        return false;
    }
    rt_buf_reset(&k->out);
    k->out_off = 0;
    return true;
}

/* ---- Reading ---- */

/* A response frame's fields, as views into the frame. */
struct wire_response {
    uint64_t id;
    bool ok;
    const char *code;
    uint32_t code_len;
    const char *msg;
    uint32_t msg_len;
    const uint8_t *body; /* One map, or NULL. */
    size_t body_len;
};

static bool code_valid(const char *s, uint32_t len)
{
    if (len < 1 || len >= PR_CODE_BYTES) {
        return false;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (!((s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}
/* Parse a response map (CONTRACT.md: id, ok, code, msg, body). Keys we do not know are skipped:
 * a newer server may add some, and ignoring them loses nothing. Anything else off the contract
 * (a wrong type, a repeated key, ok disagreeing with code) is PR_EPROTO. */
static int parse_response(const uint8_t *data, size_t len, struct wire_response *out)
{
    memset(out, 0, sizeof(*out));
    if (rt_mp_validate(data, len) != 0) {
        return PR_EPROTO; /* Also bounds nesting, so skipping below cannot recurse deeply. */
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    uint32_t count;
    if (rt_mp_read_map(&r, &count) != 0) {
        return PR_EPROTO;
    }
    bool have_id = false, have_ok = false, have_code = false, have_msg = false, have_body = false;
    for (uint32_t i = 0; i < count; i++) {
        const char *key;
        uint32_t key_len;
        if (rt_mp_read_str(&r, &key, &key_len) != 0) {
            return PR_EPROTO;
        }
        int rv;
        bool *seen;
        if (rt_mp_key_is(key, key_len, "id")) {
            seen = &have_id;
            rv = rt_mp_read_uint(&r, &out->id);
        } else if (rt_mp_key_is(key, key_len, "ok")) {
            seen = &have_ok;
            rv = rt_mp_read_bool(&r, &out->ok);
        } else if (rt_mp_key_is(key, key_len, "code")) {
            seen = &have_code;
            rv = rt_mp_read_str(&r, &out->code, &out->code_len);
        } else if (rt_mp_key_is(key, key_len, "msg")) {
            seen = &have_msg;
            rv = rt_mp_read_str(&r, &out->msg, &out->msg_len);
        } else if (rt_mp_key_is(key, key_len, "body")) {
            seen = &have_body;
            rv = rt_mp_peek(&r) == RT_MP_MAP ? rt_mp_read_raw(&r, &out->body, &out->body_len)
                                             : RT_EMALFORMED;
        } else {
            if (rt_mp_skip(&r) != 0) {
                return PR_EPROTO;
            }
            continue;
        }
        if (rv != 0 || *seen) {
            return PR_EPROTO;
        }
        *seen = true;
    }
    if (!have_id || !have_ok || !have_code || !code_valid(out->code, out->code_len)) {
        return PR_EPROTO;
    }
    bool code_ok = out->code_len == 2 && memcmp(out->code, "OK", 2) == 0;
    if (code_ok != out->ok || (have_body && !out->ok)) {
        return PR_EPROTO;
    }
    return 0;
}

/* The outcomes retried (payraft_client.h). */
static bool code_retryable(const char *code, uint32_t len)
{
    return (len == 11 && memcmp(code, "UNAVAILABLE", 11) == 0) ||
           (len == 7 && memcmp(code, "TIMEOUT", 7) == 0) ||
           (len == 8 && memcmp(code, "REPLAYED", 8) == 0);
}

/* Turn a parsed response into a struct pr_response (copies: the frame dies soon). */
static int response_fill(const struct wire_response *w, struct pr_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->ok = w->ok;
    assert(w->code_len < sizeof(resp->code));
    memcpy(resp->code, w->code, w->code_len);
    size_t msg_len = w->msg_len < PR_MSG_BYTES - 1 ? w->msg_len : PR_MSG_BYTES - 1;
    if (msg_len > 0) {
        memcpy(resp->msg, w->msg, msg_len);
    }
    resp->msg[msg_len] = '\0'; /* An embedded NUL cuts it short: documented. */
    if (w->ok) {
        static const uint8_t empty_map = 0x80;
        const uint8_t *body = w->body != NULL ? w->body : &empty_map;
        size_t body_len = w->body != NULL ? w->body_len : 1;
        resp->body = malloc(body_len);
        if (resp->body == NULL) {
            return PR_ENOMEM;
        }
        memcpy(resp->body, body, body_len);
        resp->body_len = body_len;
    }
    return 0;
}

/* One frame off connection @i. Returns 0, or PR_EPROTO when the connection must go. */
static int on_frame(struct pr_client *c, unsigned i, const uint8_t *data, size_t len, uint64_t now)
{
    struct wire_response w;
    int rv = parse_response(data, len, &w);
    if (rv != 0) {
        return rv;
    }
    if (w.id == 0) {
        /* CONTRACT: the server could not read a frame of ours and closes the connection. */
        return PR_EPROTO;
    }
    uint64_t slot = w.id & UINT32_MAX;
    if (slot > c->opt.max_inflight || c->reqs[slot].state != REQ_SENT || c->reqs[slot].id != w.id ||
        c->reqs[slot].conn != i) {
        return 0; /* The late answer to a request that timed out: nobody waits for it. */
    }
    struct pr_req *r = &c->reqs[slot];
    struct pr_response resp;
    rv = response_fill(&w, &resp);
    if (rv != 0) {
        req_finish(c, r, rv, NULL);
        return 0;
    }
    if (code_retryable(w.code, w.code_len)) {
        if (w.code_len == 11 && c->server_count > 1 && i == c->server_cur) {
            c->rotate = true; /* UNAVAILABLE: another node may have a leader in reach. */
        }
        if (w.code_len == 11 && c->opt.route) {
            route_down(c, i, now); /* Nor is it worth routing to while the map may be old. */
        }
        req_retry(c, r, 0, &resp, now);
        return 0;
    }
    req_finish(c, r, 0, &resp);
    return 0;
}

/* Read what arrived on connection @i and handle every complete frame. */
static void read_input(struct pr_client *c, unsigned i, uint64_t now)
{
    struct pr_conn *k = &c->conns[i];
    assert(k->state == CONN_UP);
    for (unsigned reads = 0; reads < CLIENT_READS_PER_EVENT && k->state == CONN_UP; reads++) {
        ssize_t n = recv(k->fd, c->rbuf, CLIENT_READ_BYTES, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n <= 0) {
            conn_lost(c, i, PR_ECLOSED, now);
            return;
        }
        const uint8_t *bytes = c->rbuf;
        size_t left = (size_t)n;
        while (left > 0) {
            size_t consumed = 0;
            struct api_frame frame;
            int rv = api_frame_feed(&k->dec, bytes, left, &consumed, &frame);
            if (rv < 0) {
                conn_lost(c, i, PR_EPROTO, now); /* Bad length: the stream lost its framing. */
                return;
            }
            assert(consumed <= left);
            bytes += consumed;
            left -= consumed;
            if (rv == API_FRAME_NEED_MORE) {
                break;
            }
            if (on_frame(c, i, frame.data, frame.len, now) != 0) {
                conn_lost(c, i, PR_EPROTO, now);
                return;
            }
        }
    }
}

/* ---- The loop ---- */

/* True if some queued request is due for the primary and it may connect for it. */
static bool want_connection(const struct pr_client *c, uint64_t now)
{
    if (now < c->reconnect_ms) {
        return false;
    }
    for (const struct pr_req *r = c->queue.head; r != NULL; r = r->state_link.next) {
        bool routed;
        if (r->due_ms <= now && req_target(c, req_leader(c, r, now), &routed) == c->server_cur) {
            return true;
        }
    }
    return false;
}

/* Everything that needs no waiting: deadlines, connection changes, writes. */
static void step(struct pr_client *c, uint64_t now)
{
    while (c->order.head != NULL && c->order.head->deadline_ms <= now) {
        struct pr_req *r = c->order.head;
        if (r->state == REQ_SENT && r->routed) {
            route_down(c, r->conn, now); /* Its shard's leader did not answer in time. */
        } else if (r->state == REQ_SENT && c->server_count > 1 && r->conn == c->server_cur) {
            /* No answer in time: the node may be hung. Move on once the others are answered
             * (or time out too). */
            c->rotate = true;
        }
        int err = r->state == REQ_QUEUED && r->last_err != 0 ? r->last_err : PR_ETIMEOUT;
        req_finish(c, r, err, NULL);
    }
    for (unsigned i = 0; i < c->server_count; i++) {
        if (c->conns[i].state == CONN_CONNECTING && now >= c->conns[i].connect_deadline_ms) {
            connect_failed(c, i, now);
        }
    }
    struct pr_conn *primary = &c->conns[c->server_cur];
    if (primary->state == CONN_UP && c->rotate && primary->sent_count == 0) {
        conn_close(primary); /* Nothing lost: every request on it has been answered. */
        primary_next(c, now);
        c->failed_in_round = 0;
    }
    route_map_ask(c, now);
    /* Each failure moves to the next server, so this tries each at most once per step. */
    for (unsigned i = 0; i < c->server_count && c->conns[c->server_cur].state == CONN_DOWN; i++) {
        if (!want_connection(c, now)) {
            break;
        }
        connect_start(c, c->server_cur, now);
    }
    fill_output(c, now);
    for (unsigned i = 0; i < c->server_count; i++) {
        if (c->conns[i].state == CONN_UP) {
            (void)flush_output(c, i, now);
        }
    }
}

/* How long poll may sleep: until the next deadline, due retry, reconnect, connect timeout or
 * map request. */
static uint64_t next_timer_ms(const struct pr_client *c, uint64_t now)
{
    uint64_t t = UINT64_MAX;
    if (c->order.head != NULL) {
        t = c->order.head->deadline_ms;
    }
    for (unsigned i = 0; i < c->server_count; i++) {
        if (c->conns[i].state == CONN_CONNECTING && c->conns[i].connect_deadline_ms < t) {
            t = c->conns[i].connect_deadline_ms;
        }
    }
    if (c->opt.route && !map_in_flight(c) && c->free_count < c->opt.max_inflight &&
        c->map_next_ms < t) {
        t = c->map_next_ms;
    }
    /* Queued requests wake the loop only when they could be written (or connected for) then:
     * behind a full output buffer, a connect in progress or a draining connection they wait for
     * the socket instead. A request's target is the primary unless its leader's connection is
     * up, so with the primary not down and no connection taking writes, none could. */
    bool movable = c->conns[c->server_cur].state == CONN_DOWN || any_open_for_writes(c);
    for (const struct pr_req *r = movable ? c->queue.head : NULL; r != NULL;
         r = r->state_link.next) {
        bool routed;
        unsigned i = req_target(c, req_leader(c, r, now), &routed);
        uint64_t due = r->due_ms;
        if (c->conns[i].state == CONN_DOWN) {
            if (i == c->server_cur && c->reconnect_ms > due) {
                due = c->reconnect_ms;
            }
        } else if (!conn_open_for_writes(c, i)) {
            continue;
        }
        if (due < t) {
            t = due;
        }
    }
    return t < now ? now : t;
}

/* Wait up to @wait_ms for the sockets, then handle what they say. */
static int wait_io(struct pr_client *c, uint64_t wait_ms)
{
    struct pollfd pfds[PR_SERVERS_MAX];
    unsigned which[PR_SERVERS_MAX];
    nfds_t nfds = 0;
    for (unsigned i = 0; i < c->server_count; i++) {
        const struct pr_conn *k = &c->conns[i];
        if (k->state == CONN_DOWN) {
            continue;
        }
        pfds[nfds].fd = k->fd;
        pfds[nfds].events = k->state == CONN_CONNECTING
                                ? POLLOUT
                                : POLLIN | (k->out_off < k->out.len ? POLLOUT : 0);
        pfds[nfds].revents = 0;
        which[nfds++] = i;
    }
    int timeout = wait_ms > INT_MAX ? INT_MAX : (int)wait_ms;
    int n = poll(nfds > 0 ? pfds : NULL, nfds, timeout);
    if (n < 0) {
        return errno == EINTR ? 0 : PR_ESYS;
    }
    uint64_t now = mono_ms();
    for (nfds_t p = 0; p < nfds && n > 0; p++) {
        unsigned i = which[p];
        short revents = pfds[p].revents;
        if (revents == 0) {
            continue;
        }
        if (c->conns[i].state == CONN_CONNECTING) {
            connect_check(c, i, now);
            continue;
        }
        if (c->conns[i].state != CONN_UP) {
            continue; /* Closed meanwhile: a failure on another connection moved requests. */
        }
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
            read_input(c, i, now); /* Reads the error or EOF out of the socket too. */
        }
        if (c->conns[i].state == CONN_UP && (revents & POLLOUT)) {
            (void)flush_output(c, i, now);
        }
    }
    return 0;
}

int pr_client_poll(struct pr_client *c, int timeout_ms)
{
    if (c == NULL || timeout_ms < -1) {
        return PR_EINVAL;
    }
    if (c->dispatching) {
        return PR_EBUSY;
    }
    uint64_t start = mono_ms();
    uint64_t until = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms;
    int fired = 0;
    for (;;) {
        uint64_t now = mono_ms();
        step(c, now);
        fired += dispatch(c);
        if (fired > 0 || pr_client_pending(c) == 0) {
            return fired;
        }
        uint64_t timer = next_timer_ms(c, now);
        uint64_t wake = timer < until ? timer : until;
        int rv = wait_io(c, wake > now ? wake - now : 0);
        if (rv != 0) {
            return rv;
        }
        now = mono_ms();
        step(c, now); /* Write what the answers freed room for; apply what came due. */
        fired += dispatch(c);
        if (fired > 0 || pr_client_pending(c) == 0 || now >= until) {
            return fired;
        }
    }
}

unsigned pr_client_pending(const struct pr_client *c)
{
    assert(c != NULL);
    return c->opt.max_inflight - c->free_count;
}
/* ---- Requests ---- */

int pr_client_send(struct pr_client *c, const char *op, const uint8_t *body, size_t len,
                   pr_callback cb, void *arg)
{
    uint32_t op_len;
    if (c == NULL || op == NULL || cb == NULL || (body == NULL && len != 0) ||
        !op_valid(op, &op_len)) {
        return PR_EINVAL;
    }
    if (len > PR_BODY_BYTES_MAX) {
        return PR_ETOOLARGE;
    }
    static const uint8_t empty_map = 0x80;
    if (len == 0) {
        body = &empty_map; /* CONTRACT: body is always a map; {} for no fields. */
        len = 1;
    }
    struct rt_mp_reader rd;
    rt_mp_reader_init(&rd, body, len);
    if (rt_mp_peek(&rd) != RT_MP_MAP || rt_mp_validate(body, len) != 0) {
        return PR_EINVAL; /* The server would refuse it; say so before using the network. */
    }
    if (c->freeing) {
        return PR_ECANCELED;
    }
    if (c->free_count == 0) {
        return PR_EFULL;
    }
    uint8_t *copy = malloc(len);
    if (copy == NULL) {
        return PR_ENOMEM;
    }
    memcpy(copy, body, len);
    uint32_t slot = c->free_slots[--c->free_count];
    assert(slot < c->opt.max_inflight);
    struct pr_req *r = &c->reqs[slot];
    assert(r->state == REQ_FREE && r->body == NULL);
    uint64_t now = mono_ms();
    r->state = REQ_QUEUED;
    r->deadline_ms = now + c->opt.request_timeout_ms;
    r->due_ms = now;
    memcpy(r->op, op, op_len);
    r->op[op_len] = '\0';
    r->op_len = op_len;
    r->body = copy;
    r->body_len = (uint32_t)len;
    r->cb = cb;
    r->arg = arg;
    route_key(c, r);
    list_append(&c->order, r, LINK_ORDER);
    list_append(&c->queue, r, LINK_STATE);
    return 0;
}

/* pr_client_call's callback: the outcome goes to the caller's frame. */
struct call_result {
    bool done;
    int status;
    struct pr_response resp;
};

static void call_done(void *arg, int status, struct pr_response *resp)
{
    struct call_result *cr = arg;
    assert(!cr->done);
    cr->done = true;
    cr->status = status;
    pr_response_move(&cr->resp, resp);
}

int pr_client_call(struct pr_client *c, const char *op, const uint8_t *body, size_t len,
                   struct pr_response *resp)
{
    if (resp == NULL) {
        return PR_EINVAL;
    }
    memset(resp, 0, sizeof(*resp));
    if (c == NULL) {
        return PR_EINVAL;
    }
    if (c->dispatching) {
        return PR_EBUSY;
    }
    struct call_result cr = {0};
    int rv;
    while ((rv = pr_client_send(c, op, body, len, call_done, &cr)) == PR_EFULL) {
        /* Full of the caller's own pipelined requests: let some finish. Each has a deadline,
         * so this ends. */
        (void)pr_client_poll(c, -1);
    }
    if (rv != 0) {
        return rv;
    }
    while (!cr.done) {
        /* An error of poll(2) itself is retried: the request has a deadline, and step() runs
         * the deadlines whatever poll says, so this ends too. */
        (void)pr_client_poll(c, -1);
    }
    *resp = cr.resp;
    return cr.status;
}

void pr_client_free(struct pr_client *c)
{
    if (c == NULL) {
        return;
    }
    assert(!c->dispatching); /* Freeing the client from its own callback is a caller bug. */
    c->freeing = true;
    while (c->order.head != NULL) {
        req_finish(c, c->order.head, PR_ECANCELED, NULL);
    }
    for (unsigned i = 0; i < PR_SERVERS_MAX; i++) {
        conn_close(&c->conns[i]);
        api_frame_decoder_free(&c->conns[i].dec);
        rt_buf_free(&c->conns[i].out);
    }
    (void)dispatch(c);
    assert(c->free_count == c->opt.max_inflight);
    free(c->rbuf);
    free(c->free_slots);
    free(c->reqs);
    api_hmac_free(&c->hmac);
    free(c);
}

int pr_client_shard_map(struct pr_client *c, unsigned *shard_count, int *leaders, unsigned cap)
{
    if (c == NULL || shard_count == NULL || leaders == NULL) {
        return PR_EINVAL;
    }
    struct pr_response resp;
    int rv = pr_client_call(c, "cluster.shards", NULL, 0, &resp);
    if (rv != 0) {
        return rv;
    }
    struct route_map map;
    bool parsed = resp.ok && route_map_parse(c, resp.body, resp.body_len, &map);
    pr_response_free(&resp);
    if (!parsed) {
        return PR_EPROTO;
    }
    if (map.shard_count > cap) {
        return PR_ETOOLARGE;
    }
    *shard_count = map.shard_count;
    for (unsigned s = 0; s < map.shard_count; s++) {
        leaders[s] = map.leader[s];
    }
    return 0;
}

/* ---- Fuzzing hooks (payraft_client_fuzz.h; fuzz builds only) ---- */

#ifdef PAYRAFT_FUZZ_HOOKS

/* A postcondition the hook checks: say which broke and return -1 to the fuzz target. */
#define HOOK_EXPECT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: postcondition broken: %s\n", __FILE__, __LINE__, #cond);       \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

int pr_fuzz_response(const uint8_t *data, size_t len)
{
    struct wire_response w;
    if (parse_response(data, len, &w) != 0) {
        return 0;
    }
    HOOK_EXPECT(w.code_len >= 1 && w.code_len < PR_CODE_BYTES);
    HOOK_EXPECT(w.body == NULL || (w.body >= data && w.body + w.body_len <= data + len));
    struct pr_response resp;
    if (response_fill(&w, &resp) != 0) {
        return 0; /* Out of memory. */
    }
    bool fields = strlen(resp.code) == w.code_len && strlen(resp.msg) < PR_MSG_BYTES;
    bool body = resp.ok == (resp.body != NULL) && (!resp.ok || resp.body_len >= 1);
    pr_response_free(&resp);
    HOOK_EXPECT(fields && body);
    return 0;
}

int pr_fuzz_shard_map(const struct pr_client *c, const uint8_t *body, size_t len)
{
    struct route_map map;
    if (!route_map_parse(c, body, len, &map)) {
        return 0;
    }
    HOOK_EXPECT(map.shard_count >= 1 && map.shard_count <= RT_SHARDS_MAX);
    for (unsigned s = 0; s < RT_SHARDS_MAX; s++) {
        HOOK_EXPECT(map.leader[s] >= -1 && map.leader[s] < (int)c->server_count);
        HOOK_EXPECT(s < map.shard_count || map.leader[s] == -1);
    }
    return 0;
}

int pr_fuzz_route_key(struct pr_client *c, const char *op, const uint8_t *body, size_t len)
{
    uint32_t op_len;
    HOOK_EXPECT(c->opt.route && len >= 1 && len <= PR_BODY_BYTES_MAX && op_valid(op, &op_len));
    struct pr_req r = {0};
    memcpy(r.op, op, op_len);
    r.op_len = op_len;
    r.body = (uint8_t *)body; /* route_key only reads it. */
    r.body_len = (uint32_t)len;
    route_key(c, &r);
    HOOK_EXPECT(r.route == ROUTE_NONE || r.route == ROUTE_KEY || r.route == ROUTE_ID);
    if (c->map.shard_count == 0) {
        c->map.shard_count = 16; /* No leader known: the key's shard is found, none routed. */
        memset(c->map.leader, -1, sizeof(c->map.leader));
    }
    bool routed;
    HOOK_EXPECT(req_target(c, req_leader(c, &r, 0), &routed) == c->server_cur && !routed);
    return 0;
}

#endif /* PAYRAFT_FUZZ_HOOKS */
