/* fake_server: see fake_server.h. */
#include "fake_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_frame.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

#define FAKE_READ_BYTES 65536u

uint64_t fake_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint16_t fake_port(unsigned offset)
{
    const char *env = getenv("PAYRAFT_PORT_BASE");
    unsigned base = env != NULL ? (unsigned)atoi(env) : 7000u;
    return (uint16_t)(base + offset);
}

void fake_write(int fd, const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return; /* The client went away: nothing to do about it here. */
        }
        p += w;
        len -= (size_t)w;
    }
}

void fake_respond(int fd, uint64_t id, int code, const char *msg, const uint8_t *body,
                  size_t body_len)
{
    struct rt_buf out;
    rt_buf_init(&out, API_FRAME_BYTES_MAX + 64);
    if (api_response_encode(&out, id, code, msg, body, body_len) == 0) {
        fake_write(fd, out.data, out.len);
    }
    rt_buf_free(&out);
}

enum fake_action fake_h_echo(struct fake *f, int fd, const struct api_request *req, unsigned index)
{
    (void)f;
    (void)index;
    fake_respond(fd, req->id, 0, NULL, req->body, req->body_len);
    return FAKE_KEEP;
}

enum fake_action fake_h_unavailable(struct fake *f, int fd, const struct api_request *req,
                                    unsigned index)
{
    if (index < f->param) {
        fake_respond(fd, req->id, f->code != 0 ? f->code : RT_EUNAVAIL, "no leader yet", NULL, 0);
        return FAKE_KEEP;
    }
    return fake_h_echo(f, fd, req, index);
}

enum fake_action fake_h_unavailable_for(struct fake *f, int fd, const struct api_request *req,
                                        unsigned index)
{
    if (index == 0) {
        f->first_ms = fake_now_ms();
    }
    if (fake_now_ms() - f->first_ms < f->param) {
        fake_respond(fd, req->id, RT_EUNAVAIL, "no leader yet", NULL, 0);
        return FAKE_KEEP;
    }
    return fake_h_echo(f, fd, req, index);
}

enum fake_action fake_h_code(struct fake *f, int fd, const struct api_request *req, unsigned index)
{
    (void)index;
    fake_respond(fd, req->id, f->code, "amount: must be 1..1000000000", NULL, 0);
    return FAKE_KEEP;
}

enum fake_action fake_h_shards(struct fake *f, int fd, const struct api_request *req,
                               unsigned index)
{
    if (!rt_mp_key_is(req->op, req->op_len, "cluster.shards")) {
        if (f->code != 0 && rt_mp_key_is(req->op, req->op_len, "order.create")) {
            fake_respond(fd, req->id, f->code, "not now", NULL, 0);
        } else {
            fake_h_echo(f, fd, req, index);
        }
        return atomic_exchange(&f->close_next, false) ? FAKE_CLOSE : FAKE_KEEP;
    }
    struct rt_buf body;
    rt_buf_init(&body, 64u * 1024u);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &body);
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "shard_count");
    rt_mp_write_uint(&w, f->map_shards);
    rt_mp_write_cstr(&w, "shards");
    int map_code = atomic_load(&f->map_code);
    if (map_code != 0) {
        fake_respond(fd, req->id, map_code, "not for you", NULL, 0);
    } else if (atomic_load(&f->map_garbled)) {
        rt_mp_write_cstr(&w, "not an array"); /* The client must keep routing off. */
    } else {
        rt_mp_write_array(&w, f->map_shards);
        for (unsigned s = 0; s < f->map_shards; s++) {
            char addr[32];
            snprintf(addr, sizeof(addr), "127.0.0.1:%u", f->map_ports[s]);
            rt_mp_write_map(&w, 3);
            rt_mp_write_cstr(&w, "shard_id");
            rt_mp_write_uint(&w, s);
            rt_mp_write_cstr(&w, "leader");
            rt_mp_write_uint(&w, s + 1u); /* A node id: the client does not use it. */
            rt_mp_write_cstr(&w, "leader_api");
            if (f->map_ports[s] != 0) {
                rt_mp_write_cstr(&w, addr);
            } else {
                rt_mp_write_nil(&w);
            }
        }
    }
    if (map_code == 0 && rt_mp_writer_error(&w) == 0) {
        fake_respond(fd, req->id, 0, NULL, body.data, body.len);
    }
    rt_buf_free(&body);
    pthread_mutex_lock(&f->mu);
    f->maps_asked++;
    pthread_mutex_unlock(&f->mu);
    return FAKE_KEEP;
}

enum fake_action fake_h_silent(struct fake *f, int fd, const struct api_request *req,
                               unsigned index)
{
    (void)f;
    (void)fd;
    (void)req;
    (void)index;
    return FAKE_KEEP;
}

enum fake_action fake_h_close_first(struct fake *f, int fd, const struct api_request *req,
                                    unsigned index)
{
    pthread_mutex_lock(&f->mu);
    unsigned conns = f->conns;
    pthread_mutex_unlock(&f->mu);
    if (conns == 1) {
        return FAKE_CLOSE;
    }
    return fake_h_echo(f, fd, req, index);
}

enum fake_action fake_h_raw(struct fake *f, int fd, const struct api_request *req, unsigned index)
{
    (void)req;
    (void)index;
    fake_write(fd, f->raw, f->raw_len);
    return FAKE_CLOSE;
}

enum fake_action fake_h_wrong_id(struct fake *f, int fd, const struct api_request *req,
                                 unsigned index)
{
    static const uint8_t body[] = {0x81, 0xa5, 's', 't', 'a', 'l', 'e', 0xc3};
    fake_respond(fd, req->id + 12345u, 0, NULL, body, sizeof(body));
    fake_respond(fd, req->id ^ (UINT64_C(1) << 40), 0, NULL, body, sizeof(body));
    return fake_h_echo(f, fd, req, index);
}

/* Remember request @req of a batch (fake_h_shuffle, fake_h_orders); false when full. */
static bool hold(struct fake *f, const struct api_request *req)
{
    if (f->pending_count == FAKE_PENDING_MAX) {
        return false;
    }
    unsigned k = f->pending_count++;
    f->pending_id[k] = req->id;
    f->pending_body[k] = malloc(req->body_len);
    if (f->pending_body[k] != NULL) {
        memcpy(f->pending_body[k], req->body, req->body_len);
    }
    f->pending_len[k] = req->body_len;
    f->pending_get[k] = req->op_len == 9 && memcmp(req->op, "order.get", 9) == 0;
    return true;
}

/* The merchant_order_no of a body, into @out (NUL-terminated); false if it has none. */
static bool body_order_no(const uint8_t *body, size_t len, char out[FAKE_ORDER_BYTES])
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, body, len);
    uint32_t n;
    if (body == NULL || rt_mp_read_map(&r, &n) != 0) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        if (rt_mp_read_str(&r, &k, &kl) != 0) {
            return false;
        }
        if (rt_mp_key_is(k, kl, "merchant_order_no")) {
            if (rt_mp_read_str(&r, &v, &vl) != 0 || vl >= FAKE_ORDER_BYTES) {
                return false;
            }
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        if (rt_mp_skip(&r) != 0) {
            return false;
        }
    }
    return false;
}

/* Answer held request @k as fake_h_orders does. A body that is no map with a
 * merchant_order_no is answered INVALID_ARGUMENT. */
static void answer_order(struct fake *f, int fd, unsigned k)
{
    char no[FAKE_ORDER_BYTES];
    if (!body_order_no(f->pending_body[k], f->pending_len[k], no)) {
        fake_respond(fd, f->pending_id[k], RT_EINVAL, "merchant_order_no: required", NULL, 0);
        return;
    }
    bool is_get = f->pending_get[k];
    pthread_mutex_lock(&f->mu);
    bool created = false;
    for (unsigned i = 0; i < f->order_count && !created; i++) {
        created = strcmp(f->orders[i], no) == 0;
    }
    if (!is_get && !created && f->order_count < FAKE_ORDERS_MAX) {
        memcpy(f->orders[f->order_count++], no, sizeof(no));
    }
    if (is_get) {
        created ? f->gets_found++ : f->gets_missing++;
    }
    pthread_mutex_unlock(&f->mu);
    if (is_get && !created) {
        fake_respond(fd, f->pending_id[k], RT_ENOTFOUND, "no such order", NULL, 0);
    } else {
        fake_respond(fd, f->pending_id[k], 0, NULL, f->pending_body[k], f->pending_len[k]);
    }
}

enum fake_action fake_h_orders(struct fake *f, int fd, const struct api_request *req,
                               unsigned index)
{
    (void)index;
    if (f->orders == NULL) {
        f->orders = calloc(FAKE_ORDERS_MAX, FAKE_ORDER_BYTES);
    }
    if (f->orders == NULL || !hold(f, req)) {
        return FAKE_CLOSE;
    }
    if (f->pending_count < f->param) {
        return FAKE_KEEP;
    }
    usleep(f->hold_ms * 1000u);
    unsigned last = f->pending_count - 1;
    answer_order(f, fd, last);
    for (unsigned k = 0; k < last; k++) {
        answer_order(f, fd, k);
    }
    for (unsigned k = 0; k < f->pending_count; k++) {
        free(f->pending_body[k]);
        f->pending_body[k] = NULL;
    }
    f->pending_count = 0;
    return FAKE_KEEP;
}

enum fake_action fake_h_shuffle(struct fake *f, int fd, const struct api_request *req,
                                unsigned index)
{
    (void)index;
    (void)hold(f, req); /* Full: answered in the shuffle below without it. */
    if (f->pending_count < f->param) {
        return FAKE_KEEP;
    }
    /* Fisher-Yates with a fixed seed: out of order, and the same order every run. */
    uint64_t x = 88172645463325252ull;
    for (unsigned i = f->pending_count - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned j = (unsigned)(x % (i + 1));
        uint64_t id = f->pending_id[i];
        uint8_t *b = f->pending_body[i];
        size_t l = f->pending_len[i];
        f->pending_id[i] = f->pending_id[j];
        f->pending_body[i] = f->pending_body[j];
        f->pending_len[i] = f->pending_len[j];
        f->pending_id[j] = id;
        f->pending_body[j] = b;
        f->pending_len[j] = l;
    }
    for (unsigned i = 0; i < f->pending_count; i++) {
        fake_respond(fd, f->pending_id[i], 0, NULL, f->pending_body[i], f->pending_len[i]);
        free(f->pending_body[i]);
        f->pending_body[i] = NULL;
    }
    f->pending_count = 0;
    return FAKE_KEEP;
}

static void record(struct fake *f, const struct api_request *req, unsigned conn, unsigned *index)
{
    struct api_hmac hmac;
    bool sig_ok = api_hmac_init(&hmac, (const uint8_t *)FAKE_SECRET, strlen(FAKE_SECRET)) == 0 &&
                  api_envelope_verify_hmac(req, &hmac) == 0;
    api_hmac_free(&hmac);
    bool time_ok = api_envelope_check_time(req, fake_now_ms()) == 0;
    pthread_mutex_lock(&f->mu);
    *index = f->seen_count;
    f->requests++;
    if (f->seen_count < FAKE_SEEN_MAX) {
        struct fake_seen *s = &f->seen[f->seen_count++];
        memset(s, 0, sizeof(*s));
        s->id = req->id;
        memcpy(s->op, req->op, req->op_len);
        memcpy(s->app, req->app, req->app_len);
        memcpy(s->nonce, req->nonce, req->nonce_len);
        s->body_len = req->body_len;
        memcpy(s->body, req->body, req->body_len < FAKE_BODY_KEEP ? req->body_len : FAKE_BODY_KEEP);
        s->sig_ok = sig_ok;
        s->time_ok = time_ok;
        s->conn = conn;
    }
    pthread_mutex_unlock(&f->mu);
}

/* Serve one connection until the client closes it, a handler closes it, or stop. */
static void serve(struct fake *f, int fd, unsigned conn)
{
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    uint8_t *rbuf = malloc(FAKE_READ_BYTES); /* Per connection: two fakes may run at once. */
    bool open = rbuf != NULL;
    while (open && !atomic_load(&f->stop)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, rbuf, FAKE_READ_BYTES, 0);
        if (n <= 0) {
            break;
        }
        const uint8_t *p = rbuf;
        size_t left = (size_t)n;
        while (open && left > 0) {
            size_t consumed = 0;
            struct api_frame frame;
            int rv = api_frame_feed(&dec, p, left, &consumed, &frame);
            if (rv < 0) {
                pthread_mutex_lock(&f->mu);
                f->bad_frames++;
                pthread_mutex_unlock(&f->mu);
                open = false;
                break;
            }
            p += consumed;
            left -= consumed;
            if (rv == API_FRAME_NEED_MORE) {
                break;
            }
            struct api_request req;
            struct api_envelope_error err;
            if (api_envelope_decode(frame.data, frame.len, &req, &err) != 0) {
                pthread_mutex_lock(&f->mu);
                f->bad_frames++;
                pthread_mutex_unlock(&f->mu);
                continue;
            }
            unsigned index;
            record(f, &req, conn, &index);
            if (f->handler(f, fd, &req, index) == FAKE_CLOSE) {
                open = false;
            }
        }
    }
    free(rbuf);
    api_frame_decoder_free(&dec);
    close(fd);
    pthread_mutex_lock(&f->mu);
    f->closes++;
    pthread_mutex_unlock(&f->mu);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        pthread_mutex_lock(&f->mu);
        unsigned conn = ++f->conns;
        pthread_mutex_unlock(&f->mu);
        serve(f, fd, conn);
    }
    return NULL;
}

bool fake_start(struct fake *f, uint16_t port, fake_handler handler)
{
    memset(f, 0, sizeof(*f));
    f->port = port;
    f->handler = handler;
    pthread_mutex_init(&f->mu, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->lfd < 0) {
        return false;
    }
    int one = 1;
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(f->lfd, 16) != 0) {
        fprintf(stderr, "fake: 127.0.0.1:%u: %s\n", port, strerror(errno));
        close(f->lfd);
        return false;
    }
    if (pthread_create(&f->thread, NULL, fake_main, f) != 0) {
        close(f->lfd);
        return false;
    }
    return true;
}

void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    for (unsigned i = 0; i < f->pending_count; i++) {
        free(f->pending_body[i]);
    }
    f->pending_count = 0;
    free(f->orders);
    f->orders = NULL;
    pthread_mutex_destroy(&f->mu);
}

unsigned fake_seen_count(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    unsigned n = f->seen_count;
    pthread_mutex_unlock(&f->mu);
    return n;
}

unsigned fake_conns(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    unsigned n = f->conns;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static unsigned fake_closes(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    unsigned n = f->closes;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Wait up to @timeout_ms until @count_of(f) reaches @count. */
static bool wait_count(struct fake *f, unsigned (*count_of)(struct fake *), unsigned count,
                       unsigned timeout_ms)
{
    uint64_t until = fake_now_ms() + timeout_ms;
    while (count_of(f) < count) {
        if (fake_now_ms() >= until) {
            return false;
        }
        usleep(5000);
    }
    return true;
}

bool fake_wait(struct fake *f, unsigned count, unsigned timeout_ms)
{
    return wait_count(f, fake_seen_count, count, timeout_ms);
}

bool fake_wait_closes(struct fake *f, unsigned count, unsigned timeout_ms)
{
    return wait_count(f, fake_closes, count, timeout_ms);
}

bool fake_hole_open(struct fake_hole *h, uint16_t port)
{
    h->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->listener < 0) {
        return false;
    }
    int one = 1;
    setsockopt(h->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(h->listener, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(h->listener, 0) != 0) {
        close(h->listener);
        return false;
    }
    for (int i = 0; i < 4; i++) {
        h->fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        (void)connect(h->fillers[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    usleep(50000); /* Let the fillers take the backlog. */
    return true;
}

void fake_hole_close(struct fake_hole *h)
{
    for (int i = 0; i < 4; i++) {
        if (h->fillers[i] >= 0) {
            close(h->fillers[i]);
        }
    }
    close(h->listener);
}
