/* payraft_client: the C client library of Payraft's API port (CONTRACT.md "Wire protocol").
 *
 * Installed header: it includes only the C library and names only pr_ symbols. Link with
 * `pkg-config --libs payraft-client` (static archives: the client's, and the wire codec's and
 * runtime's it is built on, which also define Payraft's internal api_ and rt_ symbols: a program
 * linking the library must not define functions of those names; then libcrypto).
 *
 * A client holds one TCP connection at a time to one of the servers it was given, and pipelines
 * any number of requests on it (up to max_inflight); responses may come back in any order and
 * are matched to their request by id. Every attempt is signed afresh (new id, ts and nonce,
 * HMAC-SHA256 with the app secret) over the same body bytes.
 *
 * Retries. An attempt whose outcome is one of
 *   - the wire code UNAVAILABLE (no leader yet, node stopping), TIMEOUT (the platform did not
 *     finish in time) or REPLAYED (a nonce collision in the server's replay cache: every
 *     attempt carries a new nonce, so this is never a true replay of ours, and
 *     api_envelope.h tells clients to answer it with a retry);
 *   - a connection that could not be made (every server in the list tried in turn), was lost
 *     with the request in flight, or spoke something that is not a response frame;
 * is retried, up to `retries` more times, after an exponential backoff with jitter
 * (backoff_initial_ms doubling to backoff_max_ms, each delay drawn from [d/2, d]), as long as
 * the request's deadline (request_timeout_ms after it was queued) leaves room for it. The body
 * is re-sent unchanged: that is safe because every write of the platform is idempotent under
 * the app's own key (merchant_order_no, refund_no, ... : the same parameters return the same
 * result, they never apply twice), and reads have no effect. The exception is app.create, whose
 * secret is shown once: it is retried only if no attempt was written yet or the answer was
 * REPLAYED; after any other outcome-unknown answer the caller gets that answer and should check
 * with app.get (docs/protocol.md 10.4). Every other code (INVALID_ARGUMENT,
 * CONFLICT, NOT_FOUND, RATE_LIMITED, ...) is final at once. A lost connection moves the client to
 * the next server in the list; so do UNAVAILABLE and a request left unanswered until its
 * deadline, when there is more than one server (once the requests in flight on the connection
 * have been answered or timed out), since a node cut off from the others answers UNAVAILABLE
 * until it rejoins, and a hung node answers nothing.
 *
 * Routing (option route). A node that does not lead a request's shard forwards it to the leader:
 * a hop, and its CPU. With route set, the client asks the cluster where each shard's leader
 * takes requests (cluster.shards, its own request, at the first request and every 10 s; sooner
 * after a routed attempt failed, unless the server refused the last one with an answer other
 * than UNAVAILABLE) and sends each order request (an "order.*" op whose body has
 * merchant_order_no or order_id) straight to that leader, over a connection opened for it: one
 * per server at most, only to servers in the client's list (spelled as the nodes report their
 * API addresses, e.g. "127.0.0.1:7101"), and while it is being made requests take the usual
 * path. A leader the list does not name is reached through the usual connection. The map is a
 * hint: a request that reaches a node which no longer leads its shard is forwarded, never
 * refused. An attempt sent to a leader that then fails (lost connection, UNAVAILABLE, no answer
 * in time) makes the later attempts of that request take the usual path, and that server (or
 * any server that answered UNAVAILABLE) is not routed to for a second. A routed connection the
 * server closes while it carries nothing (the server's idle limit) costs nothing: the next
 * request for that server connects again. Everything else is as without routing: the same
 * retries, deadlines and outcomes.
 *
 * Threads: a client is not thread-safe; use one per thread (clients share nothing). The
 * library installs no signal handler and never raises SIGPIPE. It blocks only in pr_client_call,
 * in pr_client_poll (for at most the timeout given) and, when a server is named by host name,
 * in the system's name resolution at connect time.
 *
 * Errors: functions return 0 or a negative PR_E* code (pr_strerror names it). A response from
 * the server, whatever its code, is not an error of the library: it comes back as status 0 with
 * the code in struct pr_response.
 */
#ifndef PAYRAFT_CLIENT_H
#define PAYRAFT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Limits (checked by the library; the first three are the wire protocol's) ---- */

/* Operation names: 1..48 of [a-z_.]. */
#define PR_OP_BYTES_MAX 48u
/* App ids: 1..32 of [A-Za-z0-9_-]; admin operations use the app "admin". */
#define PR_APP_BYTES_MAX 32u
/* A request body: one msgpack map. A frame holds at most 1 MiB; 1 KiB of it is kept for the
 * envelope around the body (id, op, app, ts, nonce and sig take under 300 bytes). */
#define PR_BODY_BYTES_MAX (1024u * 1024u - 1024u)
/* The secret an app received from app.create (64 hex characters today); 1 KiB is far above any
 * key anyone would use. */
#define PR_SECRET_BYTES_MAX 1024u
/* The server list "host:port,host:port,...": at most 16 servers (a cluster has at most 16
 * nodes), 4 KiB in all, host names of at most 255 bytes (DNS). IPv6 addresses in brackets:
 * "[::1]:7101". */
#define PR_SERVERS_MAX       16u
#define PR_SERVERS_BYTES_MAX 4096u
#define PR_HOST_BYTES_MAX    255u
/* Requests in flight (queued, sent, or waiting for a retry) on one client. */
#define PR_INFLIGHT_MAX 65536u
/* Shards of a cluster (fixed at its creation). */
#define PR_SHARDS_MAX 256u

/* Sizes of the text fields of a response, NUL included. The longest wire code is 16 bytes; the
 * server cuts messages to 256 bytes. */
#define PR_CODE_BYTES 32u
#define PR_MSG_BYTES  257u

/* ---- Errors ---- */

/* X(name, value, message) */
#define PR_ERRORS(X)                                                                               \
    X(PR_EINVAL, -1, "invalid argument")                                                           \
    X(PR_ENOMEM, -2, "out of memory")                                                              \
    X(PR_ETOOLARGE, -3, "request too large")                                                       \
    X(PR_EFULL, -4, "too many requests in flight")                                                 \
    X(PR_ECONNECT, -5, "could not connect to any server")                                          \
    X(PR_ECLOSED, -6, "connection lost")                                                           \
    X(PR_EPROTO, -7, "the server sent something that is not a response")                           \
    X(PR_ETIMEOUT, -8, "no response within the request timeout")                                   \
    X(PR_EBUSY, -9, "not allowed inside a callback")                                               \
    X(PR_ECANCELED, -10, "canceled: the client was freed")                                         \
    X(PR_ESYS, -11, "system call failed")                                                          \
    X(PR_EINTERNAL, -12, "internal error")

enum pr_error {
#define PR_ERROR_ENUM(name, value, msg) name = value,
    PR_ERRORS(PR_ERROR_ENUM)
#undef PR_ERROR_ENUM
};

/* Text for @code: "ok" for 0, "unknown error" for codes not in the table. Static storage. */
const char *pr_strerror(int code);

/* ---- Options ---- */

struct pr_client_options {
    /* One connection attempt to one server; then the next server is tried. 1..600000. */
    unsigned connect_timeout_ms;
    /* From pr_client_send (or pr_client_call) to the outcome, retries and backoff included:
     * a request never takes longer. 1..3600000. */
    unsigned request_timeout_ms;
    /* Attempts after the first, for the outcomes listed at the top of this file. 0..100. */
    unsigned retries;
    /* Backoff before the first retry, doubling for each retry up to backoff_max_ms; each delay
     * is drawn uniformly from [d/2, d]. 1..60000 and backoff_initial_ms..600000. */
    unsigned backoff_initial_ms;
    unsigned backoff_max_ms;
    /* Requests in flight at once; pr_client_send says PR_EFULL beyond. 1..PR_INFLIGHT_MAX. */
    unsigned max_inflight;
    /* Send each order request straight to its shard's leader (false: every request goes through
     * one connection, which forwards). See "Routing" above. */
    bool route;
};

/* Fill @opts with the defaults: connect 2 s, request 10 s, 10 retries, backoff 50 ms doubling
 * to 2 s (at least 5.6 s of waiting in all: a request outlasts a leader election), 1024 in
 * flight. Change fields afterwards. */
void pr_client_options_init(struct pr_client_options *opts);

/* ---- Responses ---- */

/* The outcome of a request that reached a server. */
struct pr_response {
    bool ok;                  /* True iff code is "OK". */
    char code[PR_CODE_BYTES]; /* The wire code, NUL-terminated: "OK" or CONTRACT's error code
                               * ("INVALID_ARGUMENT", ...): 1..31 of [A-Z_]. */
    char msg[PR_MSG_BYTES];   /* Human-readable text from the server, NUL-terminated (the bytes
                               * as sent, cut at an embedded NUL; may be empty; not guaranteed
                               * to be valid UTF-8 or free of control characters). */
    uint8_t *body;            /* When ok: the result, one msgpack map (at least {}), malloc'd and
                               * owned by this response. NULL when not ok. */
    size_t body_len;          /* Bytes of body. */
    unsigned attempts;        /* Times the request was sent, this answer's attempt included. */
};

/* Release @resp's body and zero @resp. Safe on a zeroed or already-freed response. */
void pr_response_free(struct pr_response *resp);
/* Move @src into @dst (which must hold nothing: zeroed or freed) and zero @src: how a callback
 * keeps a response beyond its return. */
void pr_response_move(struct pr_response *dst, struct pr_response *src);

/* ---- Client ---- */

struct pr_client; /* Opaque. */

/* Create a client for @servers ("host:port,host:port"; copied) acting as @app (NUL-terminated,
 * copied) with the HMAC key @secret (@secret_len bytes: the secret's ASCII exactly as app.create
 * returned it or as the admin secret file holds it, surrounding white space removed; not kept:
 * the client keeps the HMAC state prepared from it, wiped from memory by pr_client_free).
 * @opts NULL means the defaults (pr_client_options_init); it is copied. Connects lazily, at the
 * first request.
 * Returns 0 and *out; PR_EINVAL for a malformed server list, app id, empty or too long secret,
 * or an option out of range; PR_ENOMEM; PR_ESYS if no random seed could be drawn. */
int pr_client_new(const char *servers, const char *app, const uint8_t *secret, size_t secret_len,
                  const struct pr_client_options *opts, struct pr_client **out);

/* Close the connection and release everything. The callbacks of requests still in flight are
 * called first, with PR_ECANCELED, so that their arguments can be released (pr_client_send from
 * those callbacks returns PR_ECANCELED). Must not be called from a callback. NULL is a no-op. */
void pr_client_free(struct pr_client *c);

/* ---- Blocking style ---- */

/* Send @op (NUL-terminated) with @body (@len bytes: one msgpack map; NULL with @len 0 means {})
 * and wait for the outcome, retrying as described at the top of this file.
 * Returns 0 when a server answered: *resp holds the answer (check resp->ok), and the caller
 * owns it (pr_response_free). Otherwise a negative code and *resp is zeroed: PR_EINVAL (bad op
 * or body), PR_ETOOLARGE (body above PR_BODY_BYTES_MAX), PR_ECONNECT / PR_ECLOSED / PR_EPROTO
 * (retries used up on connection failures, the last of which is named), PR_ETIMEOUT, PR_ENOMEM,
 * PR_EBUSY (called from a callback). *resp is overwritten without being freed first.
 * Requests queued with pr_client_send progress too, and their callbacks may run during the
 * call. */
int pr_client_call(struct pr_client *c, const char *op, const uint8_t *body, size_t len,
                   struct pr_response *resp);

/* ---- Callback style ---- */

/* Called exactly once per request sent with pr_client_send, from pr_client_poll (or from
 * pr_client_call or pr_client_free). @status is 0 when a server answered (@resp holds the answer)
 * or a negative PR_E* code as for pr_client_call (@resp is then zeroed). @resp belongs to the
 * library and is freed when the callback returns: keep it with pr_response_move. The callback
 * may call pr_client_send; it must not call pr_client_poll, pr_client_call or pr_client_free. */
typedef void (*pr_callback)(void *arg, int status, struct pr_response *resp);

/* Queue @op with @body (as for pr_client_call; both copied) and return at once; the request is
 * written at the next pr_client_poll, pipelined with the others. @cb (not NULL) is called with
 * @arg when the outcome is known. Returns 0, or PR_EINVAL / PR_ETOOLARGE (bad request, @cb not
 * called), PR_EFULL (max_inflight requests are in flight: poll, then send again), PR_ENOMEM,
 * PR_ECANCELED (from a callback run by pr_client_free). */
int pr_client_send(struct pr_client *c, const char *op, const uint8_t *body, size_t len,
                   pr_callback cb, void *arg);

/* Drive the connection: write queued requests, read responses, apply timeouts and retries, and
 * call the callbacks of requests that finished. Waits up to @timeout_ms (0: do what can be done
 * without waiting; -1: no limit) for at least one callback, and returns as soon as one or more
 * have run. Returns the number of callbacks run (0 when the time ran out, or at once when
 * nothing is in flight); PR_ESYS if poll(2) failed; PR_EBUSY from a callback. */
int pr_client_poll(struct pr_client *c, int timeout_ms);

/* Requests in flight: sent with pr_client_send (or pr_client_call) and not yet called back. */
unsigned pr_client_pending(const struct pr_client *c);

/* ---- Shard map ---- */

/* Ask the cluster where each shard's leader takes requests (cluster.shards, blocking, as
 * pr_client_call) and read the answer as the route option does: *shard_count shards, and for
 * each in @leaders[shard] the index in this client's server list of the server leading it, or
 * -1 (no leader known, or one the list does not name). For a program that spreads its own load
 * by shard (paybench --route). Returns 0; a code of pr_client_call; PR_EPROTO if the answer is
 * not an OK shard map; PR_ETOOLARGE if the cluster has more than @cap shards. */
int pr_client_shard_map(struct pr_client *c, unsigned *shard_count, int *leaders, unsigned cap);

#ifdef __cplusplus
}
#endif

#endif /* PAYRAFT_CLIENT_H */
