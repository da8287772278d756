#include "api_server.h"

#include <assert.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_app.h"
#include "act_order.h"
#include "rt_key.h"
#include "act_registry.h"
#include "api_envelope.h"
#include "api_frame.h"
#include "cl_sendq.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_log.h"
#include "rt_mp.h"

#define API_READ_BYTES (64u * 1024u)
/* The full 300 s window at about 3,500 requests/s per node (api_envelope.h); beyond that the
 * oldest entries are evicted early and counted. */
#define API_NONCE_ENTRIES API_NONCE_CACHE_ENTRIES_DEFAULT

struct api_conn {
    struct api_server *server;
    struct cl_sendq out; /* Responses, written once per loop turn. */
    uv_tcp_t tcp;
    struct api_frame_decoder dec;
    struct api_conn *prev, *next;
    unsigned inflight;
    bool closing;
    bool paused;
    uint64_t last_active_ms;
};

struct api_call {
    struct api_conn *conn;
    uint64_t id;
};

/* A cache of what verifying an app's signatures needs, made from its secret or its public key:
 * the prepared HMAC key (api_hmac) and the parsed key (reading PEM for every request cost more
 * than checking the signature). Indexed by a SipHash of the app id, one slot per index: a
 * colliding app takes the slot over.
 *
 * A slot mirrors the app's secret and key as this node's replica of the meta group last
 * returned them, and remembers the meta group's state then (applied index, history hash).
 * While that state is unchanged the replica would return the same bytes (equal pairs mean the
 * same entries applied, rt_engine.h), so the slot answers without reading the app again (a
 * read and its decoding were 7% of a node's instructions per order). Any meta entry applied or
 * snapshot installed changes the pair; the next request then reads the app again and compares
 * what it gets with the slot's bytes, so a changed secret or key takes effect with it. */
#define API_APP_KEY_SLOTS 64u

struct api_app_key {
    uint64_t fp; /* SipHash of the app id; 0 = empty slot. */
    char app[ACT_APP_ID_BYTES_MAX + 1];
    char secret[ACT_APP_SECRET_HEX_BYTES]; /* hmac's key (secret_len bytes). */
    uint32_t secret_len;                   /* 0 when the app has no secret (no hmac). */
    struct api_hmac hmac;
    char *pem; /* The app's public key as text (pem_len bytes); NULL when it has none. */
    uint32_t pem_len;
    EVP_PKEY *pkey; /* pem read, once pkey_read; NULL if it does not read as a key. */
    bool pkey_read; /* pem was given to the parser (lazily: only public-key requests). */
    bool current;   /* Mirrors the replica at meta_state (below). */
    struct cl_meta_state meta_state;
};

/* One app's token bucket (tokens in millirequests to stay in integers). */
struct api_rate {
    uint64_t fp; /* SipHash of the app id; 0 = free slot. */
    uint64_t tokens_milli;
    uint64_t last_ms;
};

struct api_server {
    uv_loop_t *loop;
    uint32_t app_rate;
    struct api_rate rates[API_RATE_APPS_MAX];
    uint32_t rate_apps;
    struct cl_node *node;
    uv_tcp_t listener;
    uv_timer_t idle_timer;
    struct cl_flusher flusher;
    bool flusher_open, flusher_closing;
    struct api_hmac admin_hmac; /* The admin secret, prepared. */
    struct api_app_key app_keys[API_APP_KEY_SLOTS];
    struct api_nonce_cache nonces;
    struct rt_clock clock;
    struct api_conn *conns;
    unsigned conn_count;
    bool stopping;
    unsigned handles_open;
    void (*stop_cb)(void *arg);
    void *stop_arg;
    uint8_t read_buf[API_READ_BYTES];
    struct rt_buf out;     /* Response scratch. */
    struct rt_buf scratch; /* Bodies built here (status, args). */
    struct rt_buf signing; /* Signing strings for Ed25519 verification. */
};

static void flusher_closed(uv_handle_t *handle);

static void app_key_clear(struct api_app_key *slot)
{
    api_hmac_free(&slot->hmac);
    EVP_PKEY_free(slot->pkey);
    free(slot->pem);
    OPENSSL_cleanse(slot, sizeof(*slot));
}

/* The SipHash of @app (its slot in app_keys and in the rate limiter); never 0. */
static uint64_t app_fp(const struct api_server *server, const char *app)
{
    return api_siphash24(server->nonces.key, (const uint8_t *)app, strlen(app)) | 1u;
}

/* The slot of @app (whose app_fp is @fp), taken over (emptied and named for @app) if it held
 * another app. */
static struct api_app_key *app_key_slot(struct api_server *server, const char *app, uint64_t fp)
{
    struct api_app_key *slot = &server->app_keys[fp % API_APP_KEY_SLOTS];
    if (slot->fp != fp || strcmp(slot->app, app) != 0) {
        app_key_clear(slot);
        slot->fp = fp;
        /* The envelope bounded it to ACT_APP_ID_BYTES_MAX. */
        memcpy(slot->app, app, strlen(app) + 1);
    }
    return slot;
}

/* The public key in @pem (@len bytes; at most ACT_APP_PUBLIC_KEY_BYTES_MAX), or NULL if it
 * does not read as one. About half a millisecond: callers keep what it returns. */
static EVP_PKEY *pem_public_key(const char *pem, size_t len)
{
    assert(len <= ACT_APP_PUBLIC_KEY_BYTES_MAX);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (key == NULL) {
        ERR_clear_error();
    }
    return key;
}

/* Whether @pem (@len bytes) reads as a public key requests can be verified with
 * (api_pubkey_usable). */
static bool public_key_usable(const char *pem, uint32_t len)
{
    if (len > ACT_APP_PUBLIC_KEY_BYTES_MAX) {
        return true; /* Not read: the meta group refuses it, saying how long it may be. */
    }
    EVP_PKEY *key = pem_public_key(pem, len);
    bool usable = key != NULL && api_pubkey_usable(key);
    EVP_PKEY_free(key);
    return usable;
}

/* Make @slot mirror the app's @secret and @pem (views into a keys reply, each NULL when the app
 * has none; lengths checked by the reply's reader): what is unchanged is kept, a changed secret
 * is prepared again, and a changed PEM is kept to be read at the next public-key request. 0, or
 * RT_ENOMEM: the slot is then emptied (app_key_clear), and the next request fills it again. */
static int app_key_mirror(struct api_app_key *slot, const char *secret, uint32_t secret_len,
                          const char *pem, uint32_t pem_len)
{
    assert(secret == NULL || (secret_len >= 1 && secret_len <= ACT_APP_SECRET_HEX_BYTES));
    assert(pem == NULL || (pem_len >= 1 && pem_len <= ACT_APP_PUBLIC_KEY_BYTES_MAX));
    bool secret_same = secret != NULL ? slot->secret_len == secret_len &&
                                            CRYPTO_memcmp(slot->secret, secret, secret_len) == 0
                                      : slot->secret_len == 0;
    if (!secret_same) {
        api_hmac_free(&slot->hmac);
        slot->secret_len = 0;
        if (secret != NULL) {
            if (api_hmac_init(&slot->hmac, (const uint8_t *)secret, secret_len) != 0) {
                app_key_clear(slot);
                return RT_ENOMEM;
            }
            memcpy(slot->secret, secret, secret_len);
            slot->secret_len = secret_len;
        }
    }
    bool pem_same = pem != NULL ? slot->pem != NULL && slot->pem_len == pem_len &&
                                      memcmp(slot->pem, pem, pem_len) == 0
                                : slot->pem == NULL;
    if (!pem_same) {
        EVP_PKEY_free(slot->pkey);
        free(slot->pem);
        slot->pkey = NULL;
        slot->pkey_read = false;
        slot->pem = NULL;
        slot->pem_len = 0;
        if (pem != NULL) {
            if ((slot->pem = malloc(pem_len)) == NULL) {
                app_key_clear(slot);
                return RT_ENOMEM;
            }
            memcpy(slot->pem, pem, pem_len);
            slot->pem_len = pem_len;
        }
    }
    return 0;
}

/* The public key of the app in @slot, read from its PEM at the first call (about half a
 * millisecond; an unreadable PEM, which only an app created before app.create read its key
 * can hold, is remembered as such), or NULL if it has none or it does not read. */
static EVP_PKEY *app_key_pkey(struct api_app_key *slot)
{
    if (slot->pem != NULL && !slot->pkey_read) {
        slot->pkey = pem_public_key(slot->pem, slot->pem_len);
        slot->pkey_read = true;
    }
    return slot->pkey;
}

/* The flusher outlives every connection (their last responses go through it); the server
 * outlives the flusher. */
static void server_maybe_free(struct api_server *server)
{
    if (!server->stopping || server->conn_count > 0) {
        return;
    }
    if (server->flusher_open) {
        if (!server->flusher_closing) {
            server->flusher_closing = true;
            cl_flusher_close(&server->flusher, flusher_closed);
        }
        return;
    }
    if (server->handles_open == 0) {
        api_hmac_free(&server->admin_hmac);
        for (unsigned i = 0; i < API_APP_KEY_SLOTS; i++) {
            app_key_clear(&server->app_keys[i]);
        }
        api_nonce_cache_free(&server->nonces);
        rt_buf_free(&server->out);
        rt_buf_free(&server->scratch);
        rt_buf_free(&server->signing);
        free(server);
    }
}

static void flusher_closed(uv_handle_t *handle)
{
    struct api_server *server = handle->data;
    server->flusher_open = false;
    server_maybe_free(server);
}

/* ---- Writing ---- */

static void conn_release(struct api_conn *conn);
static void conn_resume(struct api_conn *conn);
static void conn_close(struct api_conn *conn);

static void conn_drained(struct cl_sendq *q, int status)
{
    struct api_conn *conn = q->data;
    if (status != 0) {
        conn_close(conn); /* Does nothing if it was closing already... */
    }
    conn_release(conn); /* ...so this is what closes it. */
}

/* Queue @bytes for the client. A response that cannot be queued (a client that has not read
 * API_CONN_WRITE_BYTES_HARD bytes of answers) closes the connection: the client sees a broken
 * connection and retries, rather than waiting for an answer that never comes. */
static void conn_send(struct api_conn *conn, const uint8_t *bytes, size_t len)
{
    if (conn->closing) {
        return;
    }
    if (cl_sendq_push(&conn->out, bytes, len) != 0) {
        RT_WARN("api: a client is %zu response bytes behind: closing its connection",
                cl_sendq_bytes(&conn->out));
        cl_sendq_cancel(&conn->out); /* It is not reading: do not wait for it to. */
        conn_close(conn);
    }
}

static void conn_respond(struct api_conn *conn, uint64_t id, int code, const char *msg,
                         const uint8_t *body, size_t body_len)
{
    struct api_server *server = conn->server;
    rt_buf_reset(&server->out);
    if (api_response_encode(&server->out, id, code, msg, body, body_len) != 0) {
        rt_buf_reset(&server->out);
        if (api_response_encode(&server->out, id, RT_EINTERNAL, "response too large", NULL, 0) !=
            0) {
            conn_close(conn); /* Not even an error fits (out of memory): do not go silent. */
            return;
        }
    }
    conn_send(conn, server->out.data, server->out.len);
}

/* ---- Connection lifetime ---- */

static void conn_closed_cb(uv_handle_t *handle)
{
    struct api_conn *conn = handle->data;
    struct api_server *server = conn->server;
    api_frame_decoder_free(&conn->dec);
    cl_sendq_free(&conn->out);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        server->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    server->conn_count--;
    free(conn);
    server_maybe_free(server);
}

static void conn_release(struct api_conn *conn)
{
    if (conn->closing && conn->inflight == 0 && !cl_sendq_busy(&conn->out)) {
        if (!uv_is_closing((uv_handle_t *)&conn->tcp)) {
            uv_close((uv_handle_t *)&conn->tcp, conn_closed_cb);
        }
    } else if (conn->paused && !conn->closing && conn->inflight < API_CONN_INFLIGHT_MAX / 2 &&
               cl_sendq_bytes(&conn->out) < API_CONN_WRITE_BYTES_MAX / 2) {
        conn->paused = false;
        conn_resume(conn);
    }
}

static void conn_close(struct api_conn *conn)
{
    if (conn->closing) {
        return;
    }
    conn->closing = true;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    conn_release(conn); /* Closes now, or when the last reply or write is done. */
}

/* ---- Requests ---- */

static void call_done(void *arg, int code, const uint8_t *body, size_t body_len, const char *msg)
{
    struct api_call *call = arg;
    struct api_conn *conn = call->conn;
    conn_respond(conn, call->id, code, msg, body, body_len);
    free(call);
    conn->inflight--;
    conn_release(conn);
}

/* Read a string field of the body map; RT_ENOTFOUND if absent. */
static int body_str(const uint8_t *body, size_t len, const char *name, const char **out,
                    uint32_t *out_len)
{
    struct api_body_field field = {.name = name};
    api_body_strs(body, len, &field, 1);
    *out = field.value;
    *out_len = field.len;
    return field.found;
}

static void server_status(struct api_conn *conn, uint64_t id)
{
    struct api_server *server = conn->server;
    rt_buf_reset(&server->scratch);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &server->scratch);
    cl_node_status(server->node, &w);
    int rv = rt_mp_writer_error(&w);
    conn_respond(conn, id, rv, rv == 0 ? NULL : "status too large", server->scratch.data,
                 server->scratch.len);
}

/* cluster.shards (any authenticated caller): where each shard's leader takes requests, so
 * that a client can send a command straight to the leader of its key's shard
 * (shard = FNV-1a-64(actor key) mod shard_count, docs/storage.md) and save the forwarding. */
static void server_shards(struct api_conn *conn, uint64_t id)
{
    struct api_server *server = conn->server;
    uint16_t count = cl_node_shard_count(server->node);
    rt_buf_reset(&server->scratch);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &server->scratch);
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "shard_count");
    rt_mp_write_uint(&w, count);
    rt_mp_write_cstr(&w, "shards");
    rt_mp_write_array(&w, count);
    for (uint16_t s = 0; s < count; s++) {
        const char *api_addr;
        uint64_t leader = cl_node_shard_leader(server->node, s, &api_addr);
        rt_mp_write_map(&w, 3);
        rt_mp_write_cstr(&w, "shard_id");
        rt_mp_write_uint(&w, s);
        rt_mp_write_cstr(&w, "leader");
        if (leader != 0) {
            rt_mp_write_uint(&w, leader);
        } else {
            rt_mp_write_nil(&w);
        }
        rt_mp_write_cstr(&w, "leader_api");
        rt_mp_write_cstr(&w, api_addr); /* nil when unknown */
    }
    int rv = rt_mp_writer_error(&w);
    conn_respond(conn, id, rv, NULL, server->scratch.data, server->scratch.len);
}

/* Who signed a request. */
struct api_auth {
    bool admin;
    /* The meta leader answered for the app this request names (its keys for an app's request,
     * its record for an admin's order request): this replica may not have it yet. */
    bool app_from_leader;
    char app[ACT_APP_ID_BYTES_MAX + 1]; /* The app (empty for admin). */
    uint64_t app_fp;                    /* app_fp of app; 0 for admin. */
};

static bool op_is(const struct api_request *req, const char *op)
{
    size_t n = strlen(op);
    return req->op_len == n && memcmp(req->op, op, n) == 0;
}

/* Make @slot mirror the keys of @req's app: @keys (the meta leader's app.keys reply) or, when
 * NULL, this node's replica's. RT_ENOTFOUND when the replica does not have the app,
 * RT_EINTERNAL for a reply that does not read, RT_ENOMEM. */
static int app_key_refresh(struct api_server *server, struct api_app_key *slot,
                           const struct api_request *req, const uint8_t *keys, size_t keys_len)
{
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_APP,
                             .op = ACT_APP_KEYS,
                             .key = (const uint8_t *)req->app,
                             .key_len = req->app_len};
    struct rt_reply reply = {.body = keys, .body_len = (uint32_t)keys_len};
    if (keys == NULL && cl_node_meta_read(server->node, &cmd, &reply) != 0) {
        return RT_ENOTFOUND;
    }
    /* Views into the reply (app.keys checked both against the stored record's rules): no copy,
     * the slot compares them with what it holds. */
    const char *secret = NULL, *pem = NULL;
    uint32_t secret_len = 0, pem_len = 0;
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, reply.body, reply.body_len);
    uint32_t n;
    if (rt_mp_read_map(&r, &n) != 0) {
        return RT_EINTERNAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        if (rt_mp_read_str(&r, &k, &kl) != 0) {
            return RT_EINTERNAL;
        }
        if (rt_mp_peek(&r) == RT_MP_NIL) {
            rt_mp_read_nil(&r);
            continue;
        }
        if (rt_mp_read_str(&r, &v, &vl) != 0) {
            return RT_EINTERNAL;
        }
        if (rt_mp_key_is(k, kl, "secret") && vl >= 1 && vl <= ACT_APP_SECRET_HEX_BYTES) {
            secret = v;
            secret_len = vl;
        } else if (rt_mp_key_is(k, kl, "public_key") && vl >= 1 &&
                   vl <= ACT_APP_PUBLIC_KEY_BYTES_MAX) {
            pem = v;
            pem_len = vl;
        }
    }
    return app_key_mirror(slot, secret, secret_len, pem, pem_len);
}

/* Verify the signature: admin with the admin secret; an app with its secret (HMAC) or its
 * registered public key (Ed25519, RSA-SHA256), as this node's replica of the meta group has
 * them (no hop; the app's key slot, when the replica has not changed since it was filled).
 * @keys: the meta leader's app.keys answer for the request's app when already fetched, or NULL
 * to use this node's replica. Returns RT_ENOTFOUND when the app is unknown here and the caller
 * should ask the meta leader (an app created a moment ago through another node may not have
 * reached this replica yet), RT_EUNAUTH with *reason, or RT_EINTERNAL or RT_ENOMEM with a
 * NULL *reason. */
static int server_authenticate(struct api_server *server, const struct api_request *req,
                               struct api_auth *auth, const char **reason, const uint8_t *keys,
                               size_t keys_len)
{
    memset(auth, 0, sizeof(*auth));
    auth->app_from_leader = keys != NULL;
    *reason = "signature does not match";
    if (req->app_len == 5 && memcmp(req->app, "admin", 5) == 0) {
        auth->admin = true;
        return api_envelope_verify_hmac(req, &server->admin_hmac) == 0 ? 0 : RT_EUNAUTH;
    }
    memcpy(auth->app, req->app, req->app_len); /* The envelope bounded it to 32. */
    auth->app_fp = app_fp(server, auth->app);
    struct api_app_key *slot = app_key_slot(server, auth->app, auth->app_fp);
    struct cl_meta_state meta = cl_node_meta_state(server->node);
    if (keys != NULL || !slot->current || !cl_meta_state_equal(&slot->meta_state, &meta)) {
        slot->current = false;
        int rv = app_key_refresh(server, slot, req, keys, keys_len);
        if (rv != 0) {
            *reason = NULL; /* Not the signature's fault. */
            return rv;
        }
        /* Only this replica's own answer is known to hold while its state stays: the meta
         * leader's may be ahead of it. */
        slot->current = keys == NULL;
        slot->meta_state = meta;
    }
    if (req->sig.scheme == API_SIG_HMAC_SHA256) {
        return slot->secret_len > 0 && api_envelope_verify_hmac(req, &slot->hmac) == 0 ? 0
                                                                                       : RT_EUNAUTH;
    }
    if (slot->pem == NULL) {
        *reason = "this app has no public key: sign with hmac-sha256";
        return RT_EUNAUTH;
    }
    EVP_PKEY *key = app_key_pkey(slot);
    if (key == NULL) {
        *reason = "the app's public key cannot be read";
        return RT_EUNAUTH;
    }
    return api_envelope_verify_pubkey(req, key, &server->signing) == 0 ? 0 : RT_EUNAUTH;
}

/* Build in server->scratch a copy of the map @body with @key: @value appended (the body's
 * own entries are copied as they are). */
static int args_with(struct api_server *server, const uint8_t *body, size_t len, const char *key,
                     const char *value, size_t value_len)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, body, len);
    uint32_t n;
    if (rt_mp_read_map(&r, &n) != 0 || n >= UINT32_MAX - 1) {
        return RT_EINVAL;
    }
    rt_buf_reset(&server->scratch);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &server->scratch);
    rt_mp_write_map(&w, n + 1);
    rt_mp_write_raw(&w, r.pos, rt_mp_remaining(&r));
    rt_mp_write_cstr(&w, key);
    rt_mp_write_str(&w, value, value_len);
    return rt_mp_writer_error(&w);
}

/* Submit or query @cmd for @conn; the reply goes back with @id. */
static int server_dispatch(struct api_conn *conn, uint64_t id, const struct cl_target *target,
                           const struct rt_command *cmd, bool write, enum cl_read read)
{
    struct api_call *call = malloc(sizeof(*call));
    if (call == NULL) {
        return RT_ENOMEM;
    }
    *call = (struct api_call){conn, id};
    struct cl_node *node = conn->server->node;
    int rv = write ? cl_node_submit_to(node, target, cmd, call_done, call)
                   : cl_node_query_to(node, target, cmd, read, call_done, call);
    if (rv != 0) {
        free(call);
        return rv;
    }
    conn->inflight++;
    return 0;
}

static int server_app(struct api_conn *conn, const struct api_request *req,
                      const struct api_auth *auth, const char **reason)
{
    struct api_server *server = conn->server;
    const char *app;
    uint32_t app_len;
    if (body_str(req->body, req->body_len, "app_id", &app, &app_len) != 0 ||
        !act_app_id_valid(app, app_len) || (app_len == 5 && memcmp(app, "admin", 5) == 0)) {
        *reason = "app_id: required, 1-32 of [A-Za-z0-9_-], not \"admin\"";
        return RT_EINVAL;
    }
    struct cl_target meta = {CL_TARGET_META, 0, NULL, 0};
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_APP,
                             .key = (const uint8_t *)app,
                             .key_len = app_len};
    if (op_is(req, "app.get")) {
        if (!auth->admin && (strlen(auth->app) != app_len || memcmp(auth->app, app, app_len))) {
            *reason = "an app may read only itself";
            return RT_EFORBIDDEN;
        }
        cmd.op = ACT_APP_GET;
        return server_dispatch(conn, req->id, &meta, &cmd, false, CL_READ_LINEARIZABLE);
    }
    if (!auth->admin) {
        *reason = "app.create is an admin operation";
        return RT_EFORBIDDEN;
    }
    const char *pem;
    uint32_t pem_len;
    if (body_str(req->body, req->body_len, "public_key", &pem, &pem_len) == 0 &&
        !public_key_usable(pem, pem_len)) {
        /* Refused here, not at the first signed request: the meta group checks only the text. */
        *reason = "public_key: not an Ed25519 or RSA (2048-4096 bits) public key in PEM";
        return RT_EINVAL;
    }
    /* The secret is made here and travels in the raft entry: every replica stores the same. */
    uint8_t raw[ACT_APP_SECRET_HEX_BYTES / 2];
    char hex[ACT_APP_SECRET_HEX_BYTES + 1];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return RT_EINTERNAL;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    }
    int rv = args_with(server, req->body, req->body_len, "secret", hex, strlen(hex));
    if (rv != 0) {
        return rv;
    }
    cmd.op = ACT_APP_CREATE;
    cmd.args = server->scratch.data;
    cmd.args_len = (uint32_t)server->scratch.len;
    return server_dispatch(conn, req->id, &meta, &cmd, true, CL_READ_LINEARIZABLE);
}

static int server_ask_meta_leader(struct api_conn *conn, const uint8_t *payload, size_t len,
                                  uint8_t op, const char *app, uint32_t app_len);

/* order.create / order.get / order.close. An app acts on its own orders; admin acts for the
 * app named by body.app_id. */
static int server_order(struct api_conn *conn, const struct api_request *req,
                        const struct api_auth *auth, const uint8_t *payload, size_t len,
                        const char **reason)
{
    struct api_server *server = conn->server;
    enum { F_APP, F_MONO, F_ORDER_ID, F_CONSISTENCY, F_COUNT };
    struct api_body_field fields[F_COUNT] = {[F_APP] = {.name = "app_id"},
                                             [F_MONO] = {.name = "merchant_order_no"},
                                             [F_ORDER_ID] = {.name = "order_id"},
                                             [F_CONSISTENCY] = {.name = "consistency"}};
    api_body_strs(req->body, req->body_len, fields, F_COUNT);
    const char *app = fields[F_APP].value, *mono = fields[F_MONO].value;
    const char *order_id = fields[F_ORDER_ID].value, *consistency = fields[F_CONSISTENCY].value;
    uint32_t app_len = fields[F_APP].len, mono_len = fields[F_MONO].len;
    uint32_t order_id_len = fields[F_ORDER_ID].len, consistency_len = fields[F_CONSISTENCY].len;
    int has_app = fields[F_APP].found;
    if (has_app == RT_EINVAL) {
        *reason = "app_id: must be a string";
        return RT_EINVAL;
    }
    if (auth->admin) {
        if (has_app != 0 || !act_app_id_valid(app, app_len)) {
            *reason = "app_id: required when admin acts for an app";
            return RT_EINVAL;
        }
        /* Admin acts only for apps that exist: this replica of the meta group says so, or
         * else the meta leader (the app may be new, or this node just restarted and has not
         * replayed its meta log yet). */
        struct rt_command probe = {.origin = RT_ORIGIN_CLIENT,
                                   .actor_type = ACT_TYPE_APP,
                                   .op = ACT_APP_GET,
                                   .key = (const uint8_t *)app,
                                   .key_len = app_len};
        struct rt_reply exists;
        if (!auth->app_from_leader && cl_node_meta_read(server->node, &probe, &exists) != 0) {
            int rv = server_ask_meta_leader(conn, payload, len, ACT_APP_GET, app, app_len);
            *reason = rv == RT_EUNAVAIL ? "the meta group has no leader yet: retry" : NULL;
            return rv; /* 0: continues in pending_auth_done, as a dispatched request would. */
        }
    } else if (has_app == 0 &&
               (app_len != strlen(auth->app) || memcmp(app, auth->app, app_len) != 0)) {
        *reason = "app_id: an app acts only on its own orders";
        return RT_EFORBIDDEN;
    } else {
        app = auth->app;
        app_len = (uint32_t)strlen(auth->app);
    }
    bool is_create = op_is(req, "order.create"), is_get = op_is(req, "order.get");
    int has_mono = fields[F_MONO].found, has_id = fields[F_ORDER_ID].found;
    if (has_mono == RT_EINVAL || has_id == RT_EINVAL) {
        *reason = "merchant_order_no and order_id must be strings";
        return RT_EINVAL;
    }
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT, .actor_type = ACT_TYPE_ORDER};
    struct cl_target target = {CL_TARGET_KEY, 0, NULL, 0};
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    uint8_t index_key[ACT_ORDER_INDEX_KEY_BYTES_MAX];
    if (has_mono == 0) {
        size_t key_len = act_order_key(key, app, app_len, mono, mono_len);
        if (key_len == 0) {
            *reason = "merchant_order_no: 1-64 of [A-Za-z0-9_-|*@.]";
            return RT_EINVAL;
        }
        cmd.key = key;
        cmd.key_len = (uint32_t)key_len;
    } else if (!is_create && has_id == 0) {
        size_t n = act_order_index_key(index_key, order_id, order_id_len);
        uint16_t shard;
        if (n == 0 || !rt_id_shard(order_id, order_id_len, ACT_ORDER_ID_KIND, &shard) ||
            shard >= cl_node_shard_count(server->node)) {
            *reason = "order_id: not an order id of this cluster";
            return RT_ENOTFOUND;
        }
        target = (struct cl_target){CL_TARGET_INDEX, shard, index_key, n};
        cmd.key = index_key; /* Replaced by the resolved actor key. */
        cmd.key_len = (uint32_t)n;
    } else {
        *reason =
            is_create ? "merchant_order_no: required" : "order_id or merchant_order_no: required";
        return RT_EINVAL;
    }
    int rv;
    if (is_create) {
        cmd.op = ACT_ORDER_CREATE;
        if (has_app == 0) {
            cmd.args = req->body; /* Already names its app. */
            cmd.args_len = req->body_len;
        } else {
            rv = args_with(server, req->body, req->body_len, "app_id", app, app_len);
            if (rv != 0) {
                return rv;
            }
            cmd.args = server->scratch.data;
            cmd.args_len = (uint32_t)server->scratch.len;
        }
        return server_dispatch(conn, req->id, &target, &cmd, true, CL_READ_LINEARIZABLE);
    }
    int crv = fields[F_CONSISTENCY].found;
    if (crv == RT_EINVAL ||
        (crv == 0 && !(is_get && consistency_len == 5 && memcmp(consistency, "stale", 5) == 0))) {
        *reason = "consistency: only \"stale\", and only for order.get";
        return RT_EINVAL;
    }
    rt_buf_reset(&server->scratch);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &server->scratch);
    rt_mp_write_map(&w, 1);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_str(&w, app, app_len);
    cmd.args = server->scratch.data;
    cmd.args_len = (uint32_t)server->scratch.len;
    cmd.op = is_get ? ACT_ORDER_GET : ACT_ORDER_CLOSE;
    return server_dispatch(conn, req->id, &target, &cmd, !is_get,
                           crv == 0 ? CL_READ_STALE : CL_READ_LINEARIZABLE);
}

/* Take one request from the bucket of the app whose app_fp is @fp: 0, or RT_ERATE when it is
 * empty. */
static int server_rate(struct api_server *server, uint64_t fp, uint64_t now)
{
    if (server->app_rate == 0) {
        return 0;
    }
    uint32_t mask = API_RATE_APPS_MAX - 1, i = (uint32_t)fp & mask;
    while (server->rates[i].fp != 0 && server->rates[i].fp != fp) {
        i = (i + 1) & mask;
    }
    struct api_rate *b = &server->rates[i];
    uint64_t capacity = (uint64_t)server->app_rate * 1000u; /* One second of burst. */
    if (b->fp == 0) {
        if (server->rate_apps >= API_RATE_APPS_MAX / 2) {
            /* More apps than the table holds at half load: start over (every app gets a full
             * bucket once) rather than refuse apps that did nothing wrong. */
            memset(server->rates, 0, sizeof(server->rates));
            server->rate_apps = 0;
            RT_WARN("api: rate limiter tracks more than %u apps: reset", API_RATE_APPS_MAX / 2);
            return server_rate(server, fp, now);
        }
        *b = (struct api_rate){fp, capacity, now};
        server->rate_apps++;
    }
    uint64_t refill = (now - b->last_ms) * server->app_rate; /* ms x req/s = millirequests. */
    b->tokens_milli = b->tokens_milli + refill > capacity ? capacity : b->tokens_milli + refill;
    b->last_ms = now;
    if (b->tokens_milli < 1000u) {
        return RT_ERATE;
    }
    b->tokens_milli -= 1000u;
    return 0;
}

static void server_request_keys(struct api_conn *conn, const uint8_t *payload, size_t len,
                                const uint8_t *keys, size_t keys_len);

/* A request whose app is unknown on this replica, waiting for the meta leader's answer: the
 * app's keys (ACT_APP_KEYS, to verify an app's request) or its record (ACT_APP_GET, for an
 * admin acting for it). */
struct api_pending_auth {
    struct api_conn *conn;
    uint8_t op;
    size_t len;
    uint8_t payload[]; /* A copy: the frame pointed into the shared read buffer. */
};

static void pending_auth_done(void *arg, int code, const uint8_t *body, size_t body_len,
                              const char *msg)
{
    struct api_pending_auth *p = arg;
    struct api_conn *conn = p->conn;
    (void)msg;
    if (!conn->closing) {
        if (code == 0) {
            server_request_keys(conn, p->payload, p->len, body, body_len);
        } else {
            struct api_request req;
            struct api_envelope_error err;
            api_envelope_decode(p->payload, p->len, &req, &err);
            if (code != RT_ENOTFOUND) {
                conn_respond(conn, err.id, code, NULL, NULL, 0);
            } else if (p->op == ACT_APP_KEYS) {
                conn_respond(conn, err.id, RT_EUNAUTH, "unknown app", NULL, 0);
            } else {
                conn_respond(conn, err.id, RT_ENOTFOUND, "app_id: no such app", NULL, 0);
            }
        }
    }
    free(p);
    conn->inflight--;
    conn_release(conn);
}

/* Ask the meta leader @op about @app, then process the request (@payload) again with its
 * answer. */
static int server_ask_meta_leader(struct api_conn *conn, const uint8_t *payload, size_t len,
                                  uint8_t op, const char *app, uint32_t app_len)
{
    struct api_pending_auth *p = malloc(sizeof(*p) + len);
    if (p == NULL) {
        return RT_ENOMEM;
    }
    p->conn = conn;
    p->op = op;
    p->len = len;
    memcpy(p->payload, payload, len);
    struct cl_target meta = {CL_TARGET_META, 0, NULL, 0};
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_APP,
                             .op = op,
                             .key = (const uint8_t *)app,
                             .key_len = app_len};
    int rv = cl_node_query_to(conn->server->node, &meta, &cmd, CL_READ_LINEARIZABLE,
                              pending_auth_done, p);
    if (rv != 0) {
        free(p);
        return rv;
    }
    conn->inflight++;
    return 0;
}

static void server_request(struct api_conn *conn, const uint8_t *payload, size_t len)
{
    server_request_keys(conn, payload, len, NULL, 0);
}

static void server_request_keys(struct api_conn *conn, const uint8_t *payload, size_t len,
                                const uint8_t *keys, size_t keys_len)
{
    struct api_server *server = conn->server;
    struct api_request req;
    struct api_envelope_error err;
    int rv = api_envelope_decode(payload, len, &req, &err);
    if (rv != 0) {
        conn_respond(conn, err.id_known ? err.id : 0, rv, err.reason, NULL, 0);
        if (rv == RT_EMALFORMED && !err.id_known) {
            conn_close(conn); /* Not a request at all (CONTRACT: id 0, then close). */
        }
        return;
    }
    uint64_t now = rt_clock_now_ms(&server->clock);
    const char *reason = NULL;
    struct api_auth auth;
    if ((rv = server_authenticate(server, &req, &auth, &reason, keys, keys_len)) == RT_ENOTFOUND) {
        rv = server_ask_meta_leader(conn, payload, len, ACT_APP_KEYS, req.app, req.app_len);
        if (rv == 0) {
            return; /* Continues in pending_auth_done. */
        }
        reason = rv == RT_EUNAVAIL ? "the meta group has no leader yet: retry" : NULL;
    } else if (rv != 0) {
        /* Signature first: an unsigned request learns nothing, not even about its clock. */
    } else if ((rv = api_envelope_check_time(&req, now)) != 0) {
        reason = "ts: more than 300 s from the server's clock";
    } else if (!(auth.admin && auth.app_from_leader) && /* Its nonce went in on the first pass. */
               (rv = api_nonce_cache_insert(&server->nonces, &req, now)) != 0) {
        reason = rv == RT_EREPLAYED ? "nonce already used within the window" : NULL;
    } else if (!auth.admin && (rv = server_rate(server, auth.app_fp, now)) != 0) {
        reason = "too many requests from this app on this node: slow down and retry";
    }
    if (rv != 0) {
        conn_respond(conn, req.id, rv, reason, NULL, 0);
        return;
    }
    reason = NULL;
    if (op_is(&req, "cluster.status")) {
        if (!auth.admin) {
            conn_respond(conn, req.id, RT_EFORBIDDEN, "cluster.status is an admin operation", NULL,
                         0);
        } else {
            server_status(conn, req.id);
        }
        return;
    }
    if (op_is(&req, "cluster.shards")) {
        server_shards(conn, req.id);
        return;
    }
    if (op_is(&req, "app.create") || op_is(&req, "app.get")) {
        rv = server_app(conn, &req, &auth, &reason);
    } else if (op_is(&req, "order.create") || op_is(&req, "order.get") ||
               op_is(&req, "order.close")) {
        rv = server_order(conn, &req, &auth, payload, len, &reason);
    } else {
        char text[96];
        snprintf(text, sizeof(text), "operation %.*s is not available", (int)req.op_len, req.op);
        conn_respond(conn, req.id, RT_EINVAL, text, NULL, 0);
        return;
    }
    if (rv != 0) {
        if (reason == NULL && rv == RT_EUNAVAIL) {
            reason = "no leader for this data yet, or the node is busy: retry";
        }
        conn_respond(conn, req.id, rv, reason, NULL, 0);
    }
}

/* ---- Reading ---- */

static void conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct api_conn *conn = handle->data;
    (void)suggested;
    buf->base = (char *)conn->server->read_buf;
    buf->len = sizeof(conn->server->read_buf);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct api_conn *conn = stream->data;
    if (nread < 0) {
        conn_close(conn);
        return;
    }
    conn->last_active_ms = rt_clock_now_ms(&conn->server->clock);
    const uint8_t *bytes = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    while (!conn->closing) {
        size_t consumed = 0;
        struct api_frame frame;
        int rv = api_frame_feed(&conn->dec, bytes, left, &consumed, &frame);
        if (rv < 0) {
            conn_respond(conn, 0, rv,
                         rv == RT_ETOOLARGE ? "frame length above 1 MiB"
                         : rv == RT_ENOMEM  ? "out of memory"
                                            : "frame length 0",
                         NULL, 0);
            conn_close(conn);
            return;
        }
        bytes += consumed;
        left -= consumed;
        if (rv == API_FRAME_NEED_MORE) {
            break;
        }
        server_request(conn, frame.data, frame.len);
    }
    if (!conn->closing && (conn->inflight >= API_CONN_INFLIGHT_MAX ||
                           cl_sendq_bytes(&conn->out) >= API_CONN_WRITE_BYTES_MAX)) {
        conn->paused = true; /* Backpressure: resumed when replies drain. */
        uv_read_stop(stream);
    }
}

static void conn_resume(struct api_conn *conn)
{
    uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc, conn_read);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct api_server *server = listener->data;
    if (status != 0 || server->stopping) {
        return;
    }
    struct api_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        return;
    }
    conn->server = server;
    uv_tcp_init(server->loop, &conn->tcp);
    conn->tcp.data = conn;
    cl_sendq_init(&conn->out, &server->flusher, (uv_stream_t *)&conn->tcp,
                  API_CONN_WRITE_BYTES_HARD, conn_drained, conn);
    api_frame_decoder_init(&conn->dec, API_FRAME_BYTES_MAX);
    conn->next = server->conns;
    if (server->conns != NULL) {
        server->conns->prev = conn;
    }
    server->conns = conn;
    server->conn_count++;
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0 ||
        server->conn_count > API_SERVER_CONNS_MAX) {
        if (server->conn_count > API_SERVER_CONNS_MAX) {
            RT_WARN("api: %u connections: refusing more", API_SERVER_CONNS_MAX);
        }
        conn->closing = true;
        uv_close((uv_handle_t *)&conn->tcp, conn_closed_cb);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    conn->last_active_ms = rt_clock_now_ms(&server->clock);
    uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc, conn_read);
}

static void idle_timer_cb(uv_timer_t *timer)
{
    struct api_server *server = timer->data;
    uint64_t now = rt_clock_now_ms(&server->clock);
    for (struct api_conn *c = server->conns; c != NULL; c = c->next) {
        if (!c->closing && c->inflight == 0 && now - c->last_active_ms > API_CONN_IDLE_MS) {
            conn_close(c);
        }
    }
}

int api_server_start(uv_loop_t *loop, struct cl_node *node, const struct api_server_config *config,
                     struct api_server **out)
{
    assert(loop != NULL && node != NULL && config != NULL && out != NULL);
    struct sockaddr_storage addr;
    char host[64];
    const char *colon = strrchr(config->addr, ':');
    if (colon == NULL || (size_t)(colon - config->addr) >= sizeof(host) ||
        config->admin_secret_len == 0 || config->admin_secret_len > 256) {
        return RT_EINVAL;
    }
    memcpy(host, config->addr, (size_t)(colon - config->addr));
    host[colon - config->addr] = '\0';
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535 ||
        (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
         uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)) {
        RT_ERROR("api: bad address %s", config->addr);
        return RT_EINVAL;
    }
    struct api_server *server = calloc(1, sizeof(*server));
    if (server == NULL) {
        return RT_ENOMEM;
    }
    server->loop = loop;
    server->node = node;
    int rv = api_hmac_init(&server->admin_hmac, config->admin_secret, config->admin_secret_len);
    if (rv != 0) {
        free(server);
        return rv; /* RT_EINVAL for an empty admin secret; OpenSSL's failures. */
    }
    server->app_rate = config->app_rate;
    rt_clock_init_system(&server->clock);
    rt_buf_init(&server->out, API_FRAME_BYTES_MAX + 1024);
    rt_buf_init(&server->scratch, API_FRAME_BYTES_MAX);
    rt_buf_init(&server->signing, API_FRAME_BYTES_MAX + 1024);
    uint8_t key[API_NONCE_KEY_BYTES];
    if (RAND_bytes(key, sizeof(key)) != 1 ||
        api_nonce_cache_init(&server->nonces, API_NONCE_ENTRIES, key) != 0) {
        api_hmac_free(&server->admin_hmac);
        free(server);
        return RT_ENOMEM;
    }
    uv_tcp_init(loop, &server->listener);
    server->listener.data = server;
    rv = uv_tcp_bind(&server->listener, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&server->listener, 511, on_connection);
    }
    if (rv != 0) {
        RT_ERROR("api: cannot listen on %s: %s", config->addr, uv_strerror(rv));
        uv_close((uv_handle_t *)&server->listener, NULL);
        return RT_EIO; /* The process exits; the loop is not run again. */
    }
    uv_timer_init(loop, &server->idle_timer);
    server->idle_timer.data = server;
    uv_timer_start(&server->idle_timer, idle_timer_cb, 10000, 10000);
    server->handles_open = 2;
    cl_flusher_init(&server->flusher, loop);
    server->flusher.prepare.data = server;
    server->flusher_open = true;
    RT_INFO("api: listening on %s", config->addr);
    *out = server;
    return 0;
}

static void server_handle_closed(uv_handle_t *handle)
{
    struct api_server *server = handle->data;
    if (--server->handles_open == 0) {
        if (server->stop_cb != NULL) {
            server->stop_cb(server->stop_arg);
        }
        server_maybe_free(server);
    }
}

void api_server_stop(struct api_server *server, void (*cb)(void *arg), void *arg)
{
    assert(server != NULL);
    server->stopping = true;
    server->stop_cb = cb;
    server->stop_arg = arg;
    for (struct api_conn *c = server->conns; c != NULL; c = c->next) {
        if (c->out.writing > 0) {
            cl_sendq_cancel(&c->out); /* A client this far behind would hold up the stop. */
        }
        conn_close(c);
    }
    uv_close((uv_handle_t *)&server->listener, server_handle_closed);
    uv_close((uv_handle_t *)&server->idle_timer, server_handle_closed);
    server_maybe_free(server); /* With no connection left, the flusher closes now. */
}
