/* fake_server: an in-process API server for the client's tests.
 *
 * One thread, one listening socket on 127.0.0.1, one connection served at a time (the client
 * holds one at a time). Every frame is decoded with api_envelope_decode and its signature and
 * time checked with api_envelope_verify_hmac / api_envelope_check_time, exactly as payd does;
 * what was seen is recorded for the test to inspect. What is answered is up to a handler the
 * test picks, which writes responses with api_response_encode (or raw bytes, to misbehave).
 *
 * The thread never calls cmocka (its asserts longjmp, which must happen on the test's thread):
 * tests read the record after fake_wait / fake_stop and assert there. */
#ifndef FAKE_SERVER_H
#define FAKE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api_envelope.h"

#define FAKE_SEEN_MAX    2048u
#define FAKE_BODY_KEEP   256u /* Bytes of each body kept for comparison. */
#define FAKE_SECRET      "fake-secret-0123456789abcdef"
#define FAKE_APP         "shop_1"
#define FAKE_PENDING_MAX 1024u
#define FAKE_ORDERS_MAX  8192u /* Orders fake_h_orders remembers as created. */
#define FAKE_ORDER_BYTES 64u
#define FAKE_MAP_SHARDS  16u /* Shards in the map fake_h_shards answers cluster.shards with. */

struct fake_seen {
    uint64_t id;
    char op[API_OP_BYTES_MAX + 1];
    char app[API_APP_BYTES_MAX + 1];
    char nonce[API_NONCE_BYTES_MAX + 1];
    uint8_t body[FAKE_BODY_KEEP]; /* The first FAKE_BODY_KEEP bytes. */
    size_t body_len;              /* The whole length. */
    bool sig_ok;                  /* api_envelope_verify_hmac with FAKE_SECRET. */
    bool time_ok;                 /* api_envelope_check_time against the clock. */
    unsigned conn;                /* 1 for the first connection accepted, ... */
};

struct fake;

/* What a handler tells the server to do with the connection afterwards. */
enum fake_action { FAKE_KEEP, FAKE_CLOSE };

/* Called for each request that decoded (@index counts from 0 across connections). */
typedef enum fake_action (*fake_handler)(struct fake *f, int fd, const struct api_request *req,
                                         unsigned index);

struct fake {
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_int stop; /* Set by fake_stop; read by the thread every 20 ms. */
    pthread_mutex_t mu;
    fake_handler handler;
    /* Knobs for the handlers below. */
    unsigned param;     /* E.g. how many UNAVAILABLE answers before echoing. */
    uint64_t first_ms;  /* fake_h_unavailable_for: when the first request came (fake_now_ms). */
    int code;           /* The RT_E* code fake_h_code answers. */
    const uint8_t *raw; /* fake_h_raw writes these bytes, then closes. */
    size_t raw_len;
    /* Record, under mu. */
    struct fake_seen seen[FAKE_SEEN_MAX];
    unsigned seen_count;
    uint64_t requests;   /* Every request decoded, past FAKE_SEEN_MAX too. */
    unsigned conns;      /* Connections accepted. */
    unsigned closes;     /* Connections the fake has closed (under mu). */
    unsigned bad_frames; /* Frames that did not decode as requests. */
    /* fake_h_shuffle: requests held back until param of them arrived. */
    uint64_t pending_id[FAKE_PENDING_MAX];
    uint8_t *pending_body[FAKE_PENDING_MAX];
    size_t pending_len[FAKE_PENDING_MAX];
    bool pending_get[FAKE_PENDING_MAX]; /* An order.get (fake_h_orders answers it as one). */
    unsigned pending_count;
    /* fake_h_orders: how long a batch is held, the merchant order numbers of the creates
     * answered, and the gets answered (under mu: tests read them). */
    unsigned hold_ms;
    char (*orders)[FAKE_ORDER_BYTES]; /* FAKE_ORDERS_MAX of them, allocated at first use. */
    unsigned order_count;
    unsigned gets_found, gets_missing;
    /* fake_h_shards: the shard map it tells (each shard's leader's port on 127.0.0.1, 0: no
     * leader known), or a body that is not a map of shards when map_garbled, or the RT_E*
     * code map_code instead of a map. The atomics may be set while the fake serves. */
    unsigned map_shards; /* 1..FAKE_MAP_SHARDS */
    uint16_t map_ports[FAKE_MAP_SHARDS];
    atomic_bool map_garbled;
    atomic_int map_code;
    unsigned maps_asked;    /* cluster.shards requests answered (under mu). */
    atomic_bool close_next; /* fake_h_shards: answer the next request, then close (as an idle
                             * limit would). */
};

/* Listen on 127.0.0.1:@port and serve with @handler in a new thread. false if the port cannot
 * be had. @f is caller-allocated (it is large: allocate it, do not put it on the stack). */
bool fake_start(struct fake *f, uint16_t port, fake_handler handler);
/* Stop the thread, close everything, free what the handlers held. */
void fake_stop(struct fake *f);
/* Wait up to @timeout_ms until at least @count requests were seen. */
bool fake_wait(struct fake *f, unsigned count, unsigned timeout_ms);
/* Copy of the record's counters (under the lock). */
unsigned fake_seen_count(struct fake *f);
unsigned fake_conns(struct fake *f);
/* Wait up to @timeout_ms until the fake has closed at least @count connections. */
bool fake_wait_closes(struct fake *f, unsigned count, unsigned timeout_ms);

/* Write one response frame (api_response_encode) to @fd. */
void fake_respond(int fd, uint64_t id, int code, const char *msg, const uint8_t *body,
                  size_t body_len);
/* Write @len raw bytes to @fd. */
void fake_write(int fd, const void *bytes, size_t len);

/* Handlers. */
enum fake_action fake_h_echo(struct fake *f, int fd, const struct api_request *req,
                             unsigned index); /* OK with the request's body. */
enum fake_action fake_h_unavailable(struct fake *f, int fd, const struct api_request *req,
                                    unsigned index); /* f->code (UNAVAILABLE by default) for the
                                                      * first f->param requests, then echo. */
enum fake_action fake_h_unavailable_for(struct fake *f, int fd, const struct api_request *req,
                                        unsigned index); /* UNAVAILABLE for f->param ms from the
                                                          * first request (a leader election),
                                                          * then echo. */
enum fake_action fake_h_code(struct fake *f, int fd, const struct api_request *req,
                             unsigned index); /* Always f->code with a message. */
enum fake_action fake_h_silent(struct fake *f, int fd, const struct api_request *req,
                               unsigned index); /* Never answers. */
enum fake_action fake_h_close_first(struct fake *f, int fd, const struct api_request *req,
                                    unsigned index); /* Closes the first connection unanswered,
                                                      * echoes on later ones. */
enum fake_action fake_h_raw(struct fake *f, int fd, const struct api_request *req,
                            unsigned index); /* Writes f->raw, then closes. */
enum fake_action fake_h_shuffle(struct fake *f, int fd, const struct api_request *req,
                                unsigned index); /* Holds f->param requests, then echoes all
                                                  * in a shuffled order. */
enum fake_action fake_h_orders(struct fake *f, int fd, const struct api_request *req,
                               unsigned index); /* Holds f->param requests, sleeps f->hold_ms,
                                                 * then answers the last first and the rest in
                                                 * the order they came: an order.create OK (and
                                                 * remembered), an order.get OK if its
                                                 * merchant_order_no was created, NOT_FOUND if
                                                 * not. A load generator that keys latency by
                                                 * id % depth, or gets what it has not seen
                                                 * created, shows here. */
enum fake_action fake_h_shards(struct fake *f, int fd, const struct api_request *req,
                               unsigned index); /* cluster.shards: the map above; order.create:
                                                 * f->code if set (UNAVAILABLE, ...); anything
                                                 * else: echo. */
enum fake_action fake_h_wrong_id(struct fake *f, int fd, const struct api_request *req,
                                 unsigned index); /* An answer to an unknown id, then echo. */

/* A listener on 127.0.0.1:@port whose backlog is full, so that the kernel drops further SYNs:
 * a connect to it hangs, as to a node whose packets are lost. */
struct fake_hole {
    int listener;
    int fillers[4];
};
bool fake_hole_open(struct fake_hole *h, uint16_t port);
void fake_hole_close(struct fake_hole *h);

uint64_t fake_now_ms(void);
/* PAYRAFT_PORT_BASE (default 7000) + @offset. */
uint16_t fake_port(unsigned offset);

#endif /* FAKE_SERVER_H */
