#include "api_server.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_order.h"
#include "act_registry.h"
#include "api_envelope.h"
#include "api_frame.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_log.h"
#include "rt_mp.h"

#define API_READ_BYTES    (64u * 1024u)
#define API_NONCE_ENTRIES (1u << 18)

struct api_conn {
    struct api_server *server;
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

struct api_server {
    uv_loop_t *loop;
    struct cl_node *node;
    uv_tcp_t listener;
    uv_timer_t idle_timer;
    uint8_t admin_secret[256];
    size_t admin_secret_len;
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
};

static void server_maybe_free(struct api_server *server)
{
    if (server->stopping && server->handles_open == 0 && server->conn_count == 0) {
        api_nonce_cache_free(&server->nonces);
        rt_buf_free(&server->out);
        rt_buf_free(&server->scratch);
        free(server);
    }
}

/* ---- Writing ---- */

struct api_write {
    uv_write_t req;
    struct api_conn *conn;
    uint8_t bytes[];
};

static void conn_release(struct api_conn *conn);
static void conn_resume(struct api_conn *conn);

static void write_cb(uv_write_t *req, int status)
{
    struct api_write *w = req->data;
    struct api_conn *conn = w->conn;
    (void)status;
    free(w);
    conn->inflight--; /* The write held the connection too. */
    conn_release(conn);
}

static void conn_send(struct api_conn *conn, const uint8_t *bytes, size_t len)
{
    if (conn->closing) {
        return;
    }
    struct api_write *w = malloc(sizeof(*w) + len);
    if (w == NULL) {
        return;
    }
    memcpy(w->bytes, bytes, len);
    w->conn = conn;
    w->req.data = w;
    uv_buf_t buf = uv_buf_init((char *)w->bytes, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &buf, 1, write_cb) != 0) {
        free(w);
        return;
    }
    conn->inflight++;
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
    if (conn->closing && conn->inflight == 0) {
        uv_close((uv_handle_t *)&conn->tcp, conn_closed_cb);
    } else if (conn->paused && !conn->closing && conn->inflight < API_CONN_INFLIGHT_MAX / 2) {
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
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, body, len);
    uint32_t n;
    if (rt_mp_read_map(&r, &n) != 0) {
        return RT_EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *key;
        uint32_t key_len;
        if (rt_mp_read_str(&r, &key, &key_len) != 0) {
            return RT_EINVAL;
        }
        if (rt_mp_key_is(key, key_len, name)) {
            return rt_mp_read_str(&r, out, out_len) == 0 ? 0 : RT_EINVAL;
        }
        if (rt_mp_skip(&r) != 0) {
            return RT_EINVAL;
        }
    }
    return RT_ENOTFOUND;
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

/* order.create / order.get / order.close on behalf of body.app_id (admin for now). */
static int server_order(struct api_conn *conn, const struct api_request *req, uint64_t id,
                        const char **reason)
{
    struct api_server *server = conn->server;
    const char *app, *mono, *consistency = NULL;
    uint32_t app_len, mono_len, consistency_len = 0;
    if (body_str(req->body, req->body_len, "app_id", &app, &app_len) != 0 ||
        !act_app_id_valid(app, app_len)) {
        *reason = "app_id: required, 1-32 of [A-Za-z0-9_-]";
        return RT_EINVAL;
    }
    if (body_str(req->body, req->body_len, "merchant_order_no", &mono, &mono_len) != 0 ||
        !act_order_mono_valid(mono, mono_len)) {
        *reason = "merchant_order_no: required (order_id lookups come with the API issue)";
        return RT_EINVAL;
    }
    int crv = body_str(req->body, req->body_len, "consistency", &consistency, &consistency_len);
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    size_t key_len = act_order_key(key, app, app_len, mono, mono_len);
    assert(key_len > 0);
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_ORDER,
                             .key = key,
                             .key_len = (uint32_t)key_len};
    bool is_create = req->op_len == 12 && memcmp(req->op, "order.create", 12) == 0;
    bool is_get = req->op_len == 9 && memcmp(req->op, "order.get", 9) == 0;
    if (is_create) {
        cmd.op = ACT_ORDER_CREATE;
        cmd.args = req->body; /* The create args are the body itself. */
        cmd.args_len = req->body_len;
    } else {
        cmd.op = is_get ? ACT_ORDER_GET : ACT_ORDER_CLOSE;
        rt_buf_reset(&server->scratch);
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, &server->scratch);
        rt_mp_write_map(&w, 1);
        rt_mp_write_cstr(&w, "app_id");
        rt_mp_write_str(&w, app, app_len);
        cmd.args = server->scratch.data;
        cmd.args_len = (uint32_t)server->scratch.len;
    }
    struct api_call *call = malloc(sizeof(*call));
    if (call == NULL) {
        return RT_ENOMEM;
    }
    *call = (struct api_call){conn, id};
    int rv;
    if (is_get) {
        bool stale = crv == 0 && consistency_len == 5 && memcmp(consistency, "stale", 5) == 0;
        rv = cl_node_query(server->node, &cmd, stale ? CL_READ_STALE : CL_READ_LINEARIZABLE,
                           call_done, call);
    } else {
        rv = cl_node_submit(server->node, &cmd, call_done, call);
    }
    if (rv != 0) {
        free(call);
        *reason = rv == RT_EUNAVAIL ? "no leader for the order's shard yet; retry" : NULL;
        return rv;
    }
    conn->inflight++;
    return 0;
}

static void server_request(struct api_conn *conn, const uint8_t *payload, size_t len)
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
    if ((rv = api_envelope_check_time(&req, now)) != 0) {
        reason = "ts: more than 300 s from the server's clock";
    } else if (req.app_len != 5 || memcmp(req.app, "admin", 5) != 0) {
        rv = RT_EUNAUTH;
        reason = "app keys are not available yet: sign as admin";
    } else if ((rv = api_envelope_verify_hmac(&req, server->admin_secret,
                                              server->admin_secret_len)) != 0) {
        reason = "signature does not match";
        rv = RT_EUNAUTH;
    } else if ((rv = api_nonce_cache_insert(&server->nonces, &req, now)) != 0) {
        reason = rv == RT_EREPLAYED ? "nonce already used within the window" : NULL;
    }
    if (rv != 0) {
        conn_respond(conn, req.id, rv, reason, NULL, 0);
        return;
    }
    if (req.op_len == 14 && memcmp(req.op, "cluster.status", 14) == 0) {
        server_status(conn, req.id);
        return;
    }
    if ((req.op_len == 12 && memcmp(req.op, "order.create", 12) == 0) ||
        (req.op_len == 9 && memcmp(req.op, "order.get", 9) == 0) ||
        (req.op_len == 11 && memcmp(req.op, "order.close", 11) == 0)) {
        rv = server_order(conn, &req, req.id, &reason);
        if (rv != 0) {
            conn_respond(conn, req.id, rv, reason, NULL, 0);
        }
        return;
    }
    char text[96];
    snprintf(text, sizeof(text), "operation %.*s is not available", (int)req.op_len, req.op);
    conn_respond(conn, req.id, RT_EINVAL, text, NULL, 0);
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
    if (!conn->closing && conn->inflight >= API_CONN_INFLIGHT_MAX) {
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
    memcpy(server->admin_secret, config->admin_secret, config->admin_secret_len);
    server->admin_secret_len = config->admin_secret_len;
    rt_clock_init_system(&server->clock);
    rt_buf_init(&server->out, API_FRAME_BYTES_MAX + 1024);
    rt_buf_init(&server->scratch, API_FRAME_BYTES_MAX);
    uint8_t key[API_NONCE_KEY_BYTES];
    if (RAND_bytes(key, sizeof(key)) != 1 ||
        api_nonce_cache_init(&server->nonces, API_NONCE_ENTRIES, key) != 0) {
        free(server);
        return RT_ENOMEM;
    }
    uv_tcp_init(loop, &server->listener);
    server->listener.data = server;
    int rv = uv_tcp_bind(&server->listener, (const struct sockaddr *)&addr, 0);
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
        conn_close(c);
    }
    uv_close((uv_handle_t *)&server->listener, server_handle_closed);
    uv_close((uv_handle_t *)&server->idle_timer, server_handle_closed);
}
