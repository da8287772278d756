#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_envelope.h"
#include "api_frame.h"
#include "payraft_client.h"
#include "rt_mp.h"

#ifndef ITEST_PAYD
#error "ITEST_PAYD must name the payd binary under test"
#endif
#ifndef ITEST_SOURCE_DIR
#error "ITEST_SOURCE_DIR must name the source tree"
#endif

bool itest_map_ready;
struct itest_raft_messages itest_raft_messages;
struct itest_reads itest_reads;
uint64_t itest_forwarded;
struct itest_raft_log itest_raft_log;
struct itest_memory itest_memory;

uint64_t itest_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool run(const struct itest_cluster *c, const char *verb)
{
    char cmd[2048], snapshot[64] = "", link[64] = "";
    if (c->snapshot_bytes != 0) {
        snprintf(snapshot, sizeof(snapshot), "PAYRAFT_SNAPSHOT_BYTES=%u ", c->snapshot_bytes);
    }
    if (c->raft_link_bytes != 0) {
        snprintf(link, sizeof(link), "PAYRAFT_RAFT_LINK_BYTES=%u ", c->raft_link_bytes);
    }
    /* The shard count is read at the first start only (cluster.sh keeps it in the cluster's
     * dir); the snapshot size at every start, so a restarted node keeps it too. */
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && PAYRAFT_PAYD='%s' PAYRAFT_PORT_BASE=%u PAYRAFT_SHARDS=%u %s%s"
             "scripts/cluster.sh %s --dir '%s'",
             c->root, ITEST_PAYD, c->base, c->shards, snapshot, link, verb, c->dir);
    int rv = system(cmd);
    if (rv != 0) {
        fprintf(stderr, "itest: '%s' failed (%d)\n", cmd, rv);
        return false;
    }
    return true;
}

bool itest_cluster_start(struct itest_cluster *c, unsigned nodes, unsigned offset)
{
    return itest_cluster_start_with(c, nodes, offset, 0, 0, 0);
}

bool itest_cluster_start_with(struct itest_cluster *c, unsigned nodes, unsigned offset,
                              unsigned shards, unsigned snapshot_bytes, unsigned raft_link_bytes)
{
    memset(c, 0, sizeof(*c));
    if (shards > ITEST_SHARDS) {
        fprintf(stderr, "itest: at most %u shards (struct itest_shard views)\n", ITEST_SHARDS);
        return false;
    }
    const char *base = getenv("PAYRAFT_PORT_BASE");
    c->base = (base != NULL ? (unsigned)atoi(base) : 7000u) + offset;
    c->nodes = nodes;
    c->shards = shards != 0 ? shards : ITEST_SHARDS;
    c->snapshot_bytes = snapshot_bytes;
    c->raft_link_bytes = raft_link_bytes;
    snprintf(c->root, sizeof(c->root), "%s", ITEST_SOURCE_DIR);
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof(c->dir), "%s/payraft-itest-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(c->dir) == NULL) {
        perror("mkdtemp");
        return false;
    }
    char verb[64];
    snprintf(verb, sizeof(verb), "start --nodes %u --no-sandbox", nodes);
    if (!run(c, verb)) {
        return false;
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/admin.secret", c->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[256] = {0};
    if (fgets(line, sizeof(line), f) == NULL) {
        fclose(f);
        return false;
    }
    fclose(f);
    line[strcspn(line, " \r\n")] = '\0';
    c->admin_secret_len = strlen(line);
    memcpy(c->admin_secret, line, c->admin_secret_len);
    return true;
}

/* Did node @id's last run end cleanly? payd's last log line is "node N stopped", written after
 * every raft group has closed and the stores have synced; a crash or a SIGKILL skips it. */
static bool node_stopped_cleanly(const struct itest_cluster *c, unsigned id)
{
    char path[600], line[1024], last[1024] = "";
    snprintf(path, sizeof(path), "%s/node%u/payd.log", c->dir, id);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] != '\n') {
            memcpy(last, line, sizeof(last));
        }
    }
    fclose(f);
    char want[64];
    snprintf(want, sizeof(want), "node %u stopped", id);
    if (strstr(last, want) == NULL) {
        fprintf(stderr, "itest: node %u did not stop cleanly; its log (%s) ends with: %s", id, path,
                last);
        return false;
    }
    return true;
}

bool itest_cluster_stop(struct itest_cluster *c)
{
    bool ok = run(c, "stop");
    for (unsigned id = 1; ok && id <= c->nodes; id++) {
        ok = node_stopped_cleanly(c, id); /* On failure the directory is kept for a look. */
    }
    if (ok && getenv("PAYRAFT_KEEP_ITEST") == NULL) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        ok = system(cmd) == 0;
    }
    return ok;
}

bool itest_cluster_kill(struct itest_cluster *c, unsigned id)
{
    char verb[32];
    snprintf(verb, sizeof(verb), "kill %u", id);
    return run(c, verb);
}

bool itest_cluster_restart(struct itest_cluster *c, unsigned id)
{
    char verb[32];
    snprintf(verb, sizeof(verb), "restart %u", id);
    return run(c, verb);
}

unsigned itest_api_port(const struct itest_cluster *c, unsigned id)
{
    return c->base + 100 + id;
}

struct pr_client *itest_library_client(const struct itest_cluster *c, const char *app,
                                       const char *secret, bool route, unsigned request_timeout_ms)
{
    char servers[PR_SERVERS_BYTES_MAX];
    size_t len = 0;
    for (unsigned n = 1; n <= c->nodes && len < sizeof(servers); n++) {
        len += (size_t)snprintf(servers + len, sizeof(servers) - len, "%s127.0.0.1:%u",
                                n > 1 ? "," : "", itest_api_port(c, n));
    }
    struct pr_client_options o;
    pr_client_options_init(&o);
    o.route = route;
    if (request_timeout_ms != 0) {
        o.request_timeout_ms = request_timeout_ms;
    }
    const uint8_t *key = app != NULL ? (const uint8_t *)secret : c->admin_secret;
    size_t key_len = app != NULL ? strlen(secret) : c->admin_secret_len;
    struct pr_client *client = NULL;
    if (len >= sizeof(servers) ||
        pr_client_new(servers, app != NULL ? app : "admin", key, key_len, &o, &client) != 0) {
        return NULL;
    }
    return client;
}

long itest_node_pid(const struct itest_cluster *c, unsigned id)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/node%u/payd.pid", c->dir, id);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        pid = 0;
    }
    fclose(f);
    return pid;
}

bool itest_connect(struct itest_client *client, const struct itest_cluster *c, unsigned id,
                   unsigned timeout_ms)
{
    uint64_t deadline = itest_now_ms() + timeout_ms;
    client->cluster = c;
    client->next_id = 1;
    do {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)itest_api_port(c, id)),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            client->fd = fd;
            return true;
        }
        if (fd >= 0) {
            close(fd);
        }
        usleep(50 * 1000);
    } while (itest_now_ms() < deadline);
    client->fd = -1;
    return false;
}

void itest_close(struct itest_client *client)
{
    if (client->fd >= 0) {
        close(client->fd);
        client->fd = -1;
    }
}

void itest_reply_init(struct itest_reply *reply)
{
    memset(reply, 0, sizeof(*reply));
    rt_buf_init(&reply->body, API_FRAME_BYTES_MAX);
}

void itest_reply_free(struct itest_reply *reply)
{
    rt_buf_free(&reply->body);
}

static bool send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool recv_all(int fd, uint8_t *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        uint64_t now = itest_now_ms(); /* Read once: a second reading may pass the deadline. */
        int left = (int)(deadline > now ? deadline - now : 0);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left == 0 || poll(&pfd, 1, left) <= 0) {
            return false;
        }
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) {
            return false;
        }
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* Copy a str field into a C string. */
static void copy_str(struct rt_mp_reader *r, char *out, size_t cap)
{
    const char *s;
    uint32_t n;
    if (rt_mp_read_str(r, &s, &n) != 0) {
        rt_mp_skip(r);
        out[0] = '\0';
        return;
    }
    snprintf(out, cap, "%.*s", (int)n, s);
}

uint64_t itest_encode(struct itest_client *client, const struct itest_sign *sign, const char *op,
                      const uint8_t *body, size_t body_len, struct rt_buf *out)
{
    static const struct itest_sign admin = {0};
    if (sign == NULL) {
        sign = &admin;
    }
    const char *app = sign->app != NULL ? sign->app : "admin";
    const uint8_t *secret = sign->app != NULL ? sign->secret : client->cluster->admin_secret;
    size_t secret_len = sign->app != NULL ? sign->secret_len : client->cluster->admin_secret_len;
    uint64_t id = client->next_id++;
    char nonce[40];
    if (sign->nonce != NULL) {
        snprintf(nonce, sizeof(nonce), "%s", sign->nonce);
    } else {
        snprintf(nonce, sizeof(nonce), "n%016llx%08x%04x", (unsigned long long)itest_now_ms(),
                 (unsigned)rand(), (unsigned)(id & 0xffff));
    }
    struct api_request req = {.id = id,
                              .ts_ms = (uint64_t)((int64_t)itest_now_ms() + sign->ts_offset_ms),
                              .op = op,
                              .op_len = (uint32_t)strlen(op),
                              .app = app,
                              .app_len = (uint32_t)strlen(app),
                              .nonce = nonce,
                              .nonce_len = (uint32_t)strlen(nonce),
                              .body = body,
                              .body_len = (uint32_t)body_len};
    /* A bad signature: the right bytes signed with a key one byte longer. */
    uint8_t wrong[sizeof(client->cluster->admin_secret) + 1];
    if (sign->bad_sig && secret_len < sizeof(wrong)) {
        memcpy(wrong, secret, secret_len);
        wrong[secret_len++] = 'x';
        secret = wrong;
    }
    if (sign->key != NULL) {
        struct rt_buf signing;
        rt_buf_init(&signing, API_FRAME_BYTES_MAX + 1024);
        int rv = api_request_encode_pkey(out, &req, sign->key, &signing);
        rt_buf_free(&signing);
        return rv == 0 ? id : 0;
    }
    struct api_hmac hmac;
    if (api_hmac_init(&hmac, secret, secret_len) != 0) {
        return 0;
    }
    int rv = api_request_encode_hmac(out, &req, &hmac);
    api_hmac_free(&hmac);
    return rv == 0 ? id : 0;
}

bool itest_send_raw(struct itest_client *client, const uint8_t *bytes, size_t len)
{
    return client->fd >= 0 && send_all(client->fd, bytes, len);
}

bool itest_read_reply(struct itest_client *client, struct itest_reply *reply, uint64_t *id,
                      unsigned timeout_ms)
{
    uint64_t deadline = itest_now_ms() + timeout_ms;
    uint8_t head[4];
    if (!recv_all(client->fd, head, 4, deadline)) {
        return false;
    }
    uint32_t len = rt_get_be32(head);
    if (len == 0 || len > API_FRAME_BYTES_MAX) {
        return false;
    }
    uint8_t *payload = malloc(len);
    if (payload == NULL || !recv_all(client->fd, payload, len, deadline)) {
        free(payload);
        return false;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, payload, len);
    uint32_t fields;
    *id = 0;
    rt_buf_reset(&reply->body);
    reply->code[0] = reply->msg[0] = '\0';
    bool ok = rt_mp_read_map(&r, &fields) == 0;
    for (uint32_t i = 0; ok && i < fields; i++) {
        const char *k;
        uint32_t kl;
        if (rt_mp_read_str(&r, &k, &kl) != 0) {
            ok = false;
        } else if (rt_mp_key_is(k, kl, "id")) {
            ok = rt_mp_read_uint(&r, id) == 0;
        } else if (rt_mp_key_is(k, kl, "code")) {
            copy_str(&r, reply->code, sizeof(reply->code));
        } else if (rt_mp_key_is(k, kl, "msg")) {
            copy_str(&r, reply->msg, sizeof(reply->msg));
        } else if (rt_mp_key_is(k, kl, "body")) {
            const uint8_t *raw;
            size_t raw_len;
            ok = rt_mp_read_raw(&r, &raw, &raw_len) == 0 &&
                 rt_buf_append(&reply->body, raw, raw_len) == 0;
        } else {
            ok = rt_mp_skip(&r) == 0;
        }
    }
    free(payload);
    return ok;
}

bool itest_call_as(struct itest_client *client, const struct itest_sign *sign, const char *op,
                   const uint8_t *body, size_t body_len, struct itest_reply *reply,
                   unsigned timeout_ms)
{
    struct rt_buf out;
    rt_buf_init(&out, API_FRAME_BYTES_MAX + 64);
    uint64_t id = itest_encode(client, sign, op, body, body_len, &out);
    bool ok = id != 0 && itest_send_raw(client, out.data, out.len);
    rt_buf_free(&out);
    uint64_t deadline = itest_now_ms() + timeout_ms;
    while (ok) {
        uint64_t got;
        uint64_t now = itest_now_ms();
        if (now >= deadline || !itest_read_reply(client, reply, &got, (unsigned)(deadline - now))) {
            return false;
        }
        if (got == id) {
            return true;
        }
    }
    return false;
}

bool itest_call(struct itest_client *client, const char *op, const uint8_t *body, size_t body_len,
                struct itest_reply *reply, unsigned timeout_ms)
{
    return itest_call_as(client, NULL, op, body, body_len, reply, timeout_ms);
}

/* Position @r at the value of @key in the reply body's top-level map; false if absent. */
static bool body_find(const struct itest_reply *reply, const char *key, struct rt_mp_reader *r)
{
    rt_mp_reader_init(r, reply->body.data, reply->body.len);
    uint32_t n;
    if (rt_mp_read_map(r, &n) != 0) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (rt_mp_read_str(r, &k, &kl) != 0) {
            return false;
        }
        if (rt_mp_key_is(k, kl, key)) {
            return true;
        }
        if (rt_mp_skip(r) != 0) {
            return false;
        }
    }
    return false;
}

bool itest_body_str(const struct itest_reply *reply, const char *key, char *out, size_t cap)
{
    struct rt_mp_reader r;
    const char *s;
    uint32_t sl;
    if (!body_find(reply, key, &r) || rt_mp_read_str(&r, &s, &sl) != 0) {
        return false;
    }
    snprintf(out, cap, "%.*s", (int)sl, s);
    return true;
}

bool itest_body_uint(const struct itest_reply *reply, const char *key, uint64_t *out)
{
    struct rt_mp_reader r;
    return body_find(reply, key, &r) && rt_mp_peek(&r) == RT_MP_UINT &&
           rt_mp_read_uint(&r, out) == 0;
}

size_t itest_order_create_body(struct rt_buf *out, const char *app, const char *mono,
                               uint64_t amount)
{
    rt_buf_reset(out);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, 5);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, app);
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, amount);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "Integration test");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, "alipay");
    return rt_mp_writer_error(&w) == 0 ? out->len : 0;
}

size_t itest_order_key_body(struct rt_buf *out, const char *app, const char *mono,
                            const char *consistency)
{
    rt_buf_reset(out);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, consistency != NULL ? 3 : 2);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, app);
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    if (consistency != NULL) {
        rt_mp_write_cstr(&w, "consistency");
        rt_mp_write_cstr(&w, consistency);
    }
    return rt_mp_writer_error(&w) == 0 ? out->len : 0;
}

/* A map of counters (str -> uint) from cluster.status: each of @names into its field (0 if
 * absent); other counters are read and ignored; a value that is not a uint fails. */
static bool read_counters(struct rt_mp_reader *r, const char *const names[],
                          uint64_t *const fields[], size_t count)
{
    for (size_t i = 0; i < count; i++) {
        *fields[i] = 0;
    }
    uint32_t pairs;
    if (rt_mp_read_map(r, &pairs) != 0) {
        return false;
    }
    for (uint32_t p = 0; p < pairs; p++) {
        const char *k;
        uint32_t kl;
        uint64_t v;
        if (rt_mp_read_str(r, &k, &kl) != 0 || rt_mp_read_uint(r, &v) != 0) {
            return false;
        }
        for (size_t i = 0; i < count; i++) {
            if (rt_mp_key_is(k, kl, names[i])) {
                *fields[i] = v;
            }
        }
    }
    return true;
}

bool itest_shard_views(const struct itest_cluster *cluster_, unsigned id,
                       struct itest_shard views[ITEST_SHARDS])
{
    struct itest_client c;
    if (!itest_connect(&c, cluster_, id, 2000)) {
        return false;
    }
    struct itest_reply reply;
    itest_reply_init(&reply);
    const uint8_t empty[] = {0x80};
    bool ok =
        itest_call(&c, "cluster.status", empty, 1, &reply, 10000) && strcmp(reply.code, "OK") == 0;
    itest_close(&c);
    memset(views, 0, sizeof(struct itest_shard) * ITEST_SHARDS);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, reply.body.data, reply.body.len);
    uint32_t n;
    ok = ok && rt_mp_read_map(&r, &n) == 0;
    for (uint32_t i = 0; ok && i < n; i++) {
        const char *k;
        uint32_t kl;
        ok = rt_mp_read_str(&r, &k, &kl) == 0;
        if (ok && rt_mp_key_is(k, kl, "meta")) {
            uint32_t mf;
            itest_map_ready = false;
            ok = rt_mp_read_map(&r, &mf) == 0;
            for (uint32_t f = 0; ok && f < mf; f++) {
                ok = rt_mp_read_str(&r, &k, &kl) == 0;
                if (ok && rt_mp_key_is(k, kl, "map_ready")) {
                    ok = rt_mp_read_bool(&r, &itest_map_ready) == 0;
                } else if (ok) {
                    ok = rt_mp_skip(&r) == 0;
                }
            }
            continue;
        }
        if (ok && rt_mp_key_is(k, kl, "raft_log")) {
            struct itest_raft_log *l = &itest_raft_log;
            static const char *const names[] = {"writes", "entries", "bytes", "failures"};
            uint64_t *fields[] = {&l->writes, &l->entries, &l->bytes, &l->failures};
            ok = read_counters(&r, names, fields, sizeof(fields) / sizeof(fields[0]));
            continue;
        }
        if (ok && rt_mp_key_is(k, kl, "raft_messages")) {
            struct itest_raft_messages *m = &itest_raft_messages;
            static const char *const names[] = {"sent_on_links", "sent_by_raft_uv", "send_failures",
                                                "received", "dropped"};
            uint64_t *fields[] = {&m->sent_on_links, &m->sent_by_raft_uv, &m->send_failures,
                                  &m->received, &m->dropped};
            ok = read_counters(&r, names, fields, sizeof(fields) / sizeof(fields[0]));
            continue;
        }
        if (ok && rt_mp_key_is(k, kl, "forwarded")) {
            ok = rt_mp_read_uint(&r, &itest_forwarded) == 0;
            continue;
        }
        if (ok && rt_mp_key_is(k, kl, "reads")) {
            static const char *const names[] = {"linearizable", "barriers", "failed"};
            uint64_t *fields[] = {&itest_reads.linearizable, &itest_reads.barriers,
                                  &itest_reads.failed};
            ok = read_counters(&r, names, fields, sizeof(fields) / sizeof(fields[0]));
            continue;
        }
        if (ok && rt_mp_key_is(k, kl, "memory")) {
            struct itest_memory *m = &itest_memory;
            static const char *const names[] = {"rss_bytes",
                                                "malloc_in_use_bytes",
                                                "state_cache_bytes",
                                                "store_memtables_bytes",
                                                "raft_log_memtables_bytes",
                                                "raft_entries_bytes",
                                                "anon_huge_pages_bytes",
                                                "malloc_huge_pages"};
            uint64_t *fields[] = {&m->rss,
                                  &m->malloc_in_use,
                                  &m->state_cache,
                                  &m->store_memtables,
                                  &m->raft_log_memtables,
                                  &m->raft_entries,
                                  &m->anon_huge_pages,
                                  &m->malloc_huge_pages};
            ok = read_counters(&r, names, fields, sizeof(fields) / sizeof(fields[0]));
            continue;
        }
        if (!ok || !rt_mp_key_is(k, kl, "shards")) {
            ok = ok && rt_mp_skip(&r) == 0;
            continue;
        }
        uint32_t shards;
        ok = rt_mp_read_array(&r, &shards) == 0 && shards == cluster_->shards;
        for (uint32_t s = 0; ok && s < shards; s++) {
            uint32_t fields;
            ok = rt_mp_read_map(&r, &fields) == 0;
            for (uint32_t f = 0; ok && f < fields; f++) {
                ok = rt_mp_read_str(&r, &k, &kl) == 0;
                uint64_t v = 0;
                if (ok && rt_mp_peek(&r) == RT_MP_UINT) {
                    ok = rt_mp_read_uint(&r, &v) == 0;
                    if (rt_mp_key_is(k, kl, "leader")) {
                        views[s].leader = v;
                    } else if (rt_mp_key_is(k, kl, "applied_index")) {
                        views[s].applied = v;
                    } else if (rt_mp_key_is(k, kl, "commit_index")) {
                        views[s].commit = v;
                    } else if (rt_mp_key_is(k, kl, "history_hash")) {
                        views[s].history = v;
                    } else if (rt_mp_key_is(k, kl, "log_first_index")) {
                        views[s].log_first = v;
                    }
                } else if (ok) {
                    ok = rt_mp_skip(&r) == 0;
                }
            }
        }
    }
    itest_reply_free(&reply);
    return ok;
}

bool itest_all_leaders(const struct itest_cluster *cluster_, unsigned id)
{
    struct itest_shard v[ITEST_SHARDS];
    if (!itest_shard_views(cluster_, id, v)) {
        return false;
    }
    for (unsigned s = 0; s < cluster_->shards; s++) {
        if (v[s].leader == 0) {
            return false;
        }
    }
    return itest_map_ready; /* The meta group holds the cluster map too. */
}

bool itest_wait_all_leaders(const struct itest_cluster *c, unsigned timeout_ms)
{
    uint64_t t0 = itest_now_ms();
    for (unsigned n = 1; n <= c->nodes; n++) {
        while (!itest_all_leaders(c, n)) {
            if (itest_now_ms() - t0 > timeout_ms) {
                fprintf(stderr, "itest: node %u did not know every shard's leader within %u ms\n",
                        n, timeout_ms);
                return false;
            }
            usleep(100 * 1000);
        }
    }
    return true;
}

bool itest_forwarded_total(const struct itest_cluster *c, uint64_t *sum)
{
    static struct itest_shard views[ITEST_SHARDS];
    *sum = 0;
    for (unsigned n = 1; n <= c->nodes; n++) {
        if (!itest_shard_views(c, n, views)) {
            return false;
        }
        *sum += itest_forwarded;
    }
    return true;
}

size_t itest_read_text(const char *path, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    return n;
}
