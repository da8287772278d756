/* Integration: the API of a real 3-node cluster, as an app sees it: apps and their secrets,
 * app-signed orders through every node, idempotency and conflicts, authentication and replay
 * errors, isolation between apps, pipelining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "act_order.h"
#include "itest.h"
#include "payraft_client.h"
#include "rt_key.h"
#include "rt_mp.h"

#define NODES       3
#define PORT_OFFSET 60
#define CALL_MS     10000
#define PIPELINED   1000

static struct itest_cluster cluster;

struct app {
    char id[40];
    char secret[80];
    struct itest_sign sign;
};

static struct app app_a, app_b;

/* app.create's body, with @public_key (PEM) when it is not NULL. */
static size_t app_body_keyed(struct rt_buf *out, const char *app_id, const char *public_key)
{
    rt_buf_reset(out);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, public_key != NULL ? 5 : 4);
    if (public_key != NULL) {
        rt_mp_write_cstr(&w, "public_key");
        rt_mp_write_cstr(&w, public_key);
    }
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, app_id);
    rt_mp_write_cstr(&w, "name");
    rt_mp_write_cstr(&w, "Integration shop");
    rt_mp_write_cstr(&w, "notify_url");
    rt_mp_write_cstr(&w, "https://shop.example/notify");
    rt_mp_write_cstr(&w, "channels");
    rt_mp_write_array(&w, 2);
    rt_mp_write_cstr(&w, "wechat");
    rt_mp_write_cstr(&w, "alipay");
    return out->len;
}

static size_t app_body(struct rt_buf *out, const char *app_id)
{
    return app_body_keyed(out, app_id, NULL);
}

/* An order body without app_id (an app acts for itself). */
static size_t order_body(struct rt_buf *out, const char *mono, uint64_t amount)
{
    rt_buf_reset(out);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, 4);
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, amount);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "Pipelined tea");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, "wechat");
    return out->len;
}

/* A body map of @count pairs from @pairs: a key, then a string value, or NULL for the uint 7. */
static size_t pairs_body(struct rt_buf *out, const char *const *pairs, size_t count)
{
    rt_buf_reset(out);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        rt_mp_write_cstr(&w, pairs[2 * i]);
        if (pairs[2 * i + 1] != NULL) {
            rt_mp_write_cstr(&w, pairs[2 * i + 1]);
        } else {
            rt_mp_write_uint(&w, 7);
        }
    }
    return out->len;
}

static size_t one_str_body(struct rt_buf *out, const char *key, const char *value)
{
    const char *pair[] = {key, value};
    return pairs_body(out, pair, 1);
}

/* Call, retrying UNAVAILABLE while leaders settle. */
static void call(struct itest_client *c, const struct itest_sign *sign, const char *op,
                 const struct rt_buf *body, struct itest_reply *reply)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        assert_true(itest_call_as(c, sign, op, body->data, body->len, reply, CALL_MS));
        if (strcmp(reply->code, "UNAVAILABLE") != 0) {
            return;
        }
        usleep(100 * 1000);
    }
}

static void create_app_keyed(struct itest_client *c, struct app *app, const char *id,
                             const char *public_key)
{
    struct rt_buf body;
    rt_buf_init(&body, 8192);
    struct itest_reply reply;
    itest_reply_init(&reply);
    app_body_keyed(&body, id, public_key);
    call(c, NULL, "app.create", &body, &reply);
    assert_string_equal(reply.code, "OK");
    snprintf(app->id, sizeof(app->id), "%s", id);
    assert_true(itest_body_str(&reply, "secret", app->secret, sizeof(app->secret)));
    assert_int_equal(strlen(app->secret), 64);
    app->sign = (struct itest_sign){
        .app = app->id, .secret = (const uint8_t *)app->secret, .secret_len = strlen(app->secret)};
    /* Shown once: a second create is a conflict and never returns the secret. */
    call(c, NULL, "app.create", &body, &reply);
    assert_string_equal(reply.code, "CONFLICT");
    itest_reply_free(&reply);
    rt_buf_free(&body);
}

static void create_app(struct itest_client *c, struct app *app, const char *id)
{
    create_app_keyed(c, app, id, NULL);
}

/* Low enough to reach in a test, high enough for the pipelining test's 1000 requests. */
#define APP_RATE 2000

static int setup(void **state)
{
    (void)state;
    char rate[16];
    snprintf(rate, sizeof(rate), "%d", APP_RATE);
    setenv("PAYRAFT_APP_RATE", rate, 1); /* Read by scripts/cluster.sh start. */
    if (!itest_cluster_start(&cluster, NODES, PORT_OFFSET)) {
        return -1;
    }
    if (!itest_wait_all_leaders(&cluster, 30000)) {
        return -1;
    }
    struct itest_client c;
    if (!itest_connect(&c, &cluster, 1, 10000)) {
        return -1;
    }
    create_app(&c, &app_a, "shop_a");
    create_app(&c, &app_b, "shop-b");
    itest_close(&c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return itest_cluster_stop(&cluster) ? 0 : -1;
}

static void apps_see_themselves_only(void **state)
{
    (void)state;
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 2, 5000));
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    one_str_body(&body, "app_id", "shop_a");
    call(&c, &app_a.sign, "app.get", &body, &reply);
    assert_string_equal(reply.code, "OK");
    char name[80];
    assert_true(itest_body_str(&reply, "name", name, sizeof(name)));
    assert_string_equal(name, "Integration shop");
    assert_false(itest_body_str(&reply, "secret", name, sizeof(name))); /* Never again. */
    call(&c, &app_b.sign, "app.get", &body, &reply);
    assert_string_equal(reply.code, "FORBIDDEN");
    const uint8_t empty[] = {0x80};
    assert_true(itest_call_as(&c, &app_a.sign, "cluster.status", empty, 1, &reply, CALL_MS));
    assert_string_equal(reply.code, "FORBIDDEN");
    /* The shard map is for every signed caller: smart clients route with it. */
    assert_true(itest_call_as(&c, &app_a.sign, "cluster.shards", empty, 1, &reply, CALL_MS));
    assert_string_equal(reply.code, "OK");
    assert_true(memmem(reply.body.data, reply.body.len, "leader_api", 10) != NULL);
    itest_reply_free(&reply);
    rt_buf_free(&body);
    itest_close(&c);
}

static void orders_through_every_node(void **state)
{
    (void)state;
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    for (unsigned node = 1; node <= NODES; node++) {
        struct itest_client c;
        assert_true(itest_connect(&c, &cluster, node, 5000));
        char mono[40], order_id[40], again[40], status[40];
        snprintf(mono, sizeof(mono), "api-%u", node);
        order_body(&body, mono, 1200);
        call(&c, &app_a.sign, "order.create", &body, &reply);
        assert_string_equal(reply.code, "OK");
        assert_true(itest_body_str(&reply, "order_id", order_id, sizeof(order_id)));
        assert_true(itest_body_str(&reply, "status", status, sizeof(status)));
        assert_string_equal(status, "WAITING");
        /* The same request again: the original order. */
        call(&c, &app_a.sign, "order.create", &body, &reply);
        assert_string_equal(reply.code, "OK");
        assert_true(itest_body_str(&reply, "order_id", again, sizeof(again)));
        assert_string_equal(again, order_id);
        /* The same key with another amount: CONFLICT. */
        order_body(&body, mono, 1201);
        call(&c, &app_a.sign, "order.create", &body, &reply);
        assert_string_equal(reply.code, "CONFLICT");
        itest_close(&c);
        /* Read it by order_id through the next node, then close it there. */
        assert_true(itest_connect(&c, &cluster, node % NODES + 1, 5000));
        one_str_body(&body, "order_id", order_id);
        call(&c, &app_a.sign, "order.get", &body, &reply);
        assert_string_equal(reply.code, "OK");
        assert_true(itest_body_str(&reply, "order_id", again, sizeof(again)));
        assert_string_equal(again, order_id);
        /* Another app cannot read or close it. */
        call(&c, &app_b.sign, "order.get", &body, &reply);
        assert_string_equal(reply.code, "FORBIDDEN");
        call(&c, &app_b.sign, "order.close", &body, &reply);
        assert_string_equal(reply.code, "FORBIDDEN");
        one_str_body(&body, "merchant_order_no", mono);
        call(&c, &app_b.sign, "order.get", &body, &reply);
        assert_string_equal(reply.code, "NOT_FOUND"); /* B's own namespace has no such order. */
        call(&c, &app_a.sign, "order.close", &body, &reply);
        assert_string_equal(reply.code, "OK");
        assert_true(itest_body_str(&reply, "status", status, sizeof(status)));
        assert_string_equal(status, "CLOSED");
        itest_close(&c);
    }
    itest_reply_free(&reply);
    rt_buf_free(&body);
}

/* Admin acts for an app by naming it in the body. The receiving node looks the app up in its
 * meta replica and asks the meta leader when it is not there, so an app created through one
 * node is at once usable through the others; an app the cluster does not have is NOT_FOUND
 * on every node. */
static void admin_acts_for_new_and_unknown_apps(void **state)
{
    (void)state;
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    struct itest_client c[NODES + 1];
    for (unsigned n = 1; n <= NODES; n++) {
        assert_true(itest_connect(&c[n], &cluster, n, 5000));
    }
    for (unsigned round = 0; round < 5; round++) {
        char id[32], mono[32];
        snprintf(id, sizeof(id), "fresh-%u", round);
        /* Right after the create is acknowledged (no other round trip first), a follower of
         * the meta group has usually not applied it yet. */
        app_body(&body, id);
        call(&c[1 + round % NODES], NULL, "app.create", &body, &reply);
        assert_string_equal(reply.code, "OK");
        for (unsigned n = 1; n <= NODES; n++) {
            snprintf(mono, sizeof(mono), "admin-%u-%u", round, n);
            assert_int_not_equal(itest_order_key_body(&body, id, mono, NULL), 0);
            call(&c[n], NULL, "order.get", &body, &reply);
            assert_string_equal(reply.code, "NOT_FOUND");
            assert_string_equal(reply.msg, "no such order"); /* Not "app_id: no such app". */
        }
    }
    assert_int_not_equal(itest_order_key_body(&body, "never-created", "x", NULL), 0);
    for (unsigned n = 1; n <= NODES; n++) {
        call(&c[n], NULL, "order.get", &body, &reply);
        assert_string_equal(reply.code, "NOT_FOUND");
        assert_string_equal(reply.msg, "app_id: no such app");
        itest_close(&c[n]);
    }
    itest_reply_free(&reply);
    rt_buf_free(&body);
}

/* The fields the API itself reads from an order's body (app_id, merchant_order_no, order_id,
 * consistency), found in one pass: wrong types are refused by name, and a repeated key counts
 * at its first occurrence. */
static void order_body_fields(void **state)
{
    (void)state;
    const char *const strings = "merchant_order_no and order_id must be strings";
    /* A body of two pairs (a NULL value is the uint 7; a NULL second key means one pair), the
     * op, and the answer: its code, and its msg when not NULL. */
    const struct {
        const char *pairs[4];
        const char *op, *code, *msg;
    } cases[] = {
        {{"merchant_order_no", "fields-1", "app_id", NULL},
         "order.get",
         "INVALID_ARGUMENT",
         "app_id: must be a string"},
        {{"merchant_order_no", NULL}, "order.get", "INVALID_ARGUMENT", strings},
        {{"merchant_order_no", "fields-1", "order_id", NULL},
         "order.get",
         "INVALID_ARGUMENT",
         strings},
        /* First occurrence wins: the string, then a uint under the same key, reads the order... */
        {{"merchant_order_no", "fields-1", "merchant_order_no", NULL}, "order.get", "OK", NULL},
        /* ...and the uint first is refused whatever follows. */
        {{"merchant_order_no", NULL, "merchant_order_no", "fields-1"},
         "order.get",
         "INVALID_ARGUMENT",
         strings},
        /* consistency is read for order.get only, and only "stale". */
        {{"consistency", "stale", "merchant_order_no", "fields-1"},
         "order.close",
         "INVALID_ARGUMENT",
         "consistency: only \"stale\", and only for order.get"},
        {{"merchant_order_no", "fields-1", "app_id", "shop_b"}, "order.get", "FORBIDDEN", NULL},
        {{"app_id", "shop_a", "merchant_order_no", "fields-1"}, "order.get", "OK", NULL},
    };
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 1, 5000));
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    order_body(&body, "fields-1", 300);
    call(&c, &app_a.sign, "order.create", &body, &reply);
    assert_string_equal(reply.code, "OK");
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        pairs_body(&body, cases[k].pairs, cases[k].pairs[2] != NULL ? 2 : 1);
        call(&c, &app_a.sign, cases[k].op, &body, &reply);
        assert_string_equal(reply.code, cases[k].code);
        if (cases[k].msg != NULL) {
            assert_string_equal(reply.msg, cases[k].msg);
        }
        if (strcmp(cases[k].code, "OK") == 0) {
            char mono[80];
            assert_true(itest_body_str(&reply, "merchant_order_no", mono, sizeof(mono)));
            assert_string_equal(mono, "fields-1");
        }
    }
    itest_reply_free(&reply);
    rt_buf_free(&body);
    itest_close(&c);
}

static void authentication_errors(void **state)
{
    (void)state;
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 3, 5000));
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    order_body(&body, "auth-1", 500);
    struct itest_sign s = app_a.sign;
    s.bad_sig = true;
    assert_true(itest_call_as(&c, &s, "order.create", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "UNAUTHENTICATED");
    s = app_a.sign;
    s.ts_offset_ms = -301000;
    assert_true(itest_call_as(&c, &s, "order.create", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "UNAUTHENTICATED");
    s = app_a.sign;
    s.secret = (const uint8_t *)app_b.secret; /* B's secret under A's name. */
    assert_true(itest_call_as(&c, &s, "order.create", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "UNAUTHENTICATED");
    struct itest_sign nobody = {.app = "nobody", .secret = (const uint8_t *)"x", .secret_len = 1};
    assert_true(itest_call_as(&c, &nobody, "order.create", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "UNAUTHENTICATED");
    s = app_a.sign;
    s.nonce = "replayed-nonce-1";
    call(&c, &s, "order.create", &body, &reply);
    assert_string_equal(reply.code, "OK");
    assert_true(itest_call_as(&c, &s, "order.create", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "REPLAYED");
    assert_true(
        itest_call_as(&c, &app_a.sign, "refund.teleport", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "INVALID_ARGUMENT");
    one_str_body(&body, "order_id", "P00nonsense");
    assert_true(itest_call_as(&c, &app_a.sign, "order.get", body.data, body.len, &reply, CALL_MS));
    assert_string_equal(reply.code, "NOT_FOUND");
    /* A frame that is not msgpack: answered with id 0, then the connection is closed. */
    const uint8_t garbage[] = {0, 0, 0, 3, 0xc1, 0xc1, 0xc1};
    assert_true(itest_send_raw(&c, garbage, sizeof(garbage)));
    uint64_t id = 99;
    assert_true(itest_read_reply(&c, &reply, &id, CALL_MS));
    assert_int_equal(id, 0);
    assert_string_equal(reply.code, "INVALID_ARGUMENT");
    assert_false(itest_read_reply(&c, &reply, &id, 2000)); /* Closed. */
    itest_close(&c);
    itest_reply_free(&reply);
    rt_buf_free(&body);
}

/* More apps than a node keeps verification keys for (API_APP_KEY_SLOTS, 64), so that apps share
 * slots and take them over from each other, while the meta group stands still between rounds
 * (a slot then answers without reading the app again). Through every node, each app's own
 * secret is accepted and its neighbour's, under its name, refused: a slot never verifies one
 * app's request with another's key, however the apps interleave. */
#define MANY_APPS 80

static void many_apps_share_key_slots(void **state)
{
    (void)state;
    static struct app apps[MANY_APPS];
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 1, 5000));
    for (unsigned i = 0; i < MANY_APPS; i++) {
        char id[32];
        snprintf(id, sizeof(id), "slot-app-%u", i);
        create_app(&c, &apps[i], id);
    }
    itest_close(&c);
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    one_str_body(&body, "merchant_order_no", "never-made");
    for (unsigned node = 1; node <= NODES; node++) {
        assert_true(itest_connect(&c, &cluster, node, 5000));
        for (unsigned round = 0; round < 2; round++) {
            for (unsigned i = 0; i < MANY_APPS; i++) {
                /* Signed right: through to the order's shard, which has no such order. */
                call(&c, &apps[i].sign, "order.get", &body, &reply);
                assert_string_equal(reply.code, "NOT_FOUND");
                struct itest_sign wrong = apps[i].sign;
                wrong.secret = (const uint8_t *)apps[(i + 1) % MANY_APPS].secret;
                assert_true(
                    itest_call_as(&c, &wrong, "order.get", body.data, body.len, &reply, CALL_MS));
                assert_string_equal(reply.code, "UNAUTHENTICATED");
            }
        }
        itest_close(&c);
    }
    itest_reply_free(&reply);
    rt_buf_free(&body);
}

/* /proc/@pid/@what, which a running process always has, into @out as itest_read_text does. */
static size_t proc_read(long pid, const char *what, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, what);
    size_t n = itest_read_text(path, out, cap);
    assert_true(n > 0);
    return n;
}

/* payd starts itself again with malloc's huge pages asked for when the kernel gives them
 * (docs/operations.md). Every node runs under its own name, and its cluster.status ("memory")
 * says it asked for them exactly when the kernel's mode is "always" or "madvise" and this
 * test's own environment does not turn them off (glibc.malloc.hugetlb=0). When it asked, the
 * kernel gave some: RocksDB's memtable blocks are in huge pages from the first write (not
 * under a sanitizer, whose allocator is not glibc's). */
static void nodes_run_with_huge_pages(void **state)
{
    (void)state;
    char mode[128];
    itest_read_text("/sys/kernel/mm/transparent_hugepage/enabled", mode, sizeof(mode));
    bool expected = strstr(mode, "[always]") != NULL || strstr(mode, "[madvise]") != NULL;
    const char *own = getenv("GLIBC_TUNABLES");
    const char *own_value = own != NULL ? strstr(own, "glibc.malloc.hugetlb=") : NULL;
    if (own_value != NULL) {
        expected = expected && own_value[strlen("glibc.malloc.hugetlb=")] != '0';
    }
    printf("itest: transparent huge pages: %s", mode[0] != '\0' ? mode : "(no such file)\n");
    for (unsigned node = 1; node <= NODES; node++) {
        char text[64];
        long pid = itest_node_pid(&cluster, node);
        assert_true(pid > 0);
        proc_read(pid, "comm", text, sizeof(text));
        assert_string_equal(text, "payd\n");
        struct itest_shard views[ITEST_SHARDS];
        assert_true(itest_shard_views(&cluster, node, views));
        printf("itest: node %u: malloc_huge_pages %llu, %llu bytes in huge pages\n", node,
               (unsigned long long)itest_memory.malloc_huge_pages,
               (unsigned long long)itest_memory.anon_huge_pages);
        assert_int_equal(itest_memory.malloc_huge_pages, expected ? 1 : 0);
#if !ITEST_SANITIZED
        if (expected) {
            assert_true(itest_memory.anon_huge_pages > 0);
        }
#endif
    }
}

/* The public half of @key as PEM, into @pem (whole: a PEM cut short by @cap fails here). */
static void public_pem(EVP_PKEY *key, char *pem, size_t cap)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    int n = BIO_read(bio, pem, (int)cap - 1);
    assert_true(n > 0);
    assert_int_equal(BIO_pending(bio), 0);
    pem[n] = '\0';
    BIO_free(bio);
}

/* A fresh Ed25519 key pair, and its public half as PEM in @pem. */
static EVP_PKEY *ed25519_key(char *pem, size_t cap)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(key);
    public_pem(key, pem, cap);
    return key;
}

/* An app that registered a public key signs with it, request after request (the node keeps the
 * parsed key), and with its secret too; a signature by another app's key is refused each
 * time. */
static void public_key_apps(void **state)
{
    (void)state;
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 2, 5000));
    char pem[512], other_pem[512];
    EVP_PKEY *key = ed25519_key(pem, sizeof(pem));
    EVP_PKEY *other = ed25519_key(other_pem, sizeof(other_pem));
    struct app keyed, other_app;
    create_app_keyed(&c, &keyed, "shop_keyed", pem);
    create_app_keyed(&c, &other_app, "shop_keyed_2", other_pem);
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    struct itest_sign by_key = keyed.sign;
    by_key.key = key;
    struct itest_sign by_other = keyed.sign;
    by_other.key = other; /* Another app's key under this app's name. */
    char mono[32];
    for (unsigned round = 0; round < 3; round++) {
        snprintf(mono, sizeof(mono), "keyed-%u", round);
        order_body(&body, mono, 100 + round);
        call(&c, &by_key, "order.create", &body, &reply);
        assert_string_equal(reply.code, "OK");
        call(&c, &by_other, "order.create", &body, &reply);
        assert_string_equal(reply.code, "UNAUTHENTICATED");
        snprintf(mono, sizeof(mono), "keyed-hmac-%u", round);
        order_body(&body, mono, 100 + round);
        call(&c, &keyed.sign, "order.create", &body, &reply);
        assert_string_equal(reply.code, "OK");
    }
    /* The other app's own key works for it, and an app without a key cannot sign with one. */
    struct itest_sign other_own = other_app.sign;
    other_own.key = other;
    order_body(&body, "other-keyed", 300);
    call(&c, &other_own, "order.create", &body, &reply);
    assert_string_equal(reply.code, "OK");
    struct itest_sign keyless = app_a.sign;
    keyless.key = key;
    call(&c, &keyless, "order.create", &body, &reply);
    assert_string_equal(reply.code, "UNAUTHENTICATED");
    assert_string_equal(reply.msg, "this app has no public key: sign with hmac-sha256");

    /* A key no request could be verified with is refused at app.create: text that only looks
     * like PEM, a key of a type the platform does not verify with (EC P-256), and an RSA key a
     * bit short of 2048 bits (256 bytes, as a 2048-bit key: the verifier counts bits). */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa_short = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2047);
    assert_non_null(ec);
    assert_non_null(rsa_short);
    char ec_pem[512], rsa_short_pem[1024];
    public_pem(ec, ec_pem, sizeof(ec_pem));
    public_pem(rsa_short, rsa_short_pem, sizeof(rsa_short_pem));
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa_short);
    const char *const unusable[] = {"-----BEGIN PUBLIC KEY-----\nnot base64\n", ec_pem,
                                    rsa_short_pem};
    for (unsigned i = 0; i < sizeof(unusable) / sizeof(unusable[0]); i++) {
        app_body_keyed(&body, "shop_unusable", unusable[i]);
        call(&c, NULL, "app.create", &body, &reply);
        assert_string_equal(reply.code, "INVALID_ARGUMENT");
        assert_string_equal(reply.msg,
                            "public_key: not an Ed25519 or RSA (2048-4096 bits) public key in PEM");
    }
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    itest_reply_free(&reply);
    rt_buf_free(&body);
    itest_close(&c);
}

/* Send @count (at most PIPELINED) requests @op of @app on one connection to node 1 before
 * reading any answer: an order.create of "<prefix><i>" each (amount 100 + i), or an order.get of
 * it. Asserts that each is answered once and OK (a get with its own order), and prints how long
 * it took. */
static void pipeline_orders(const struct app *app, const char *op, const char *prefix,
                            unsigned count)
{
    assert_true(count <= PIPELINED);
    bool get = strcmp(op, "order.get") == 0;
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 1, 5000));
    struct rt_buf body, out;
    rt_buf_init(&body, 4096);
    rt_buf_init(&out, 8u << 20);
    static bool answered[PIPELINED + 1];
    memset(answered, 0, sizeof(answered));
    uint64_t first = 0;
    for (unsigned i = 0; i < count; i++) {
        char mono[40];
        snprintf(mono, sizeof(mono), "%s%u", prefix, i);
        if (get) {
            rt_buf_reset(&body);
            struct rt_mp_writer w;
            rt_mp_writer_init(&w, &body);
            rt_mp_write_map(&w, 1);
            rt_mp_write_cstr(&w, "merchant_order_no");
            rt_mp_write_cstr(&w, mono);
        } else {
            order_body(&body, mono, 100 + i);
        }
        uint64_t id = itest_encode(&c, &app->sign, op, body.data, body.len, &out);
        assert_true(id != 0);
        first = first == 0 ? id : first;
    }
    uint64_t t0 = itest_now_ms();
    assert_true(itest_send_raw(&c, out.data, out.len)); /* All of them before reading any. */
    struct itest_reply reply;
    itest_reply_init(&reply);
    unsigned ok = 0, out_of_order = 0;
    uint64_t last = 0;
    for (unsigned i = 0; i < count; i++) {
        uint64_t id;
        assert_true(itest_read_reply(&c, &reply, &id, CALL_MS));
        assert_true(id >= first && id < first + count);
        assert_false(answered[id - first]);
        answered[id - first] = true;
        /* Its own order's number, as msgpack writes it (a fixstr: the head names the length). */
        char mono[40];
        int len = snprintf(mono + 1, sizeof(mono) - 1, "%s%u", prefix, (unsigned)(id - first));
        mono[0] = (char)(0xa0 | len);
        bool good = strcmp(reply.code, "OK") == 0 &&
                    memmem(reply.body.data, reply.body.len, mono, (size_t)len + 1) != NULL;
        ok += good;
        if (!good) {
            printf("itest: pipelined %s %s: %s %s\n", op, mono + 1, reply.code, reply.msg);
        }
        out_of_order += id < last;
        last = id;
    }
    printf("itest: %u pipelined %s on one connection: %u OK, %u answered out of order, %llu ms\n",
           count, op, ok, out_of_order, (unsigned long long)(itest_now_ms() - t0));
    assert_int_equal(ok, count);
    itest_reply_free(&reply);
    rt_buf_free(&out);
    rt_buf_free(&body);
    itest_close(&c);
}

static void pipelined_requests_all_answered(void **state)
{
    (void)state;
    pipeline_orders(&app_a, "order.create", "pipe-", PIPELINED);
}

/* The nodes' linearizable read counters, summed. */
static struct itest_reads cluster_reads(void)
{
    struct itest_reads sum = {0};
    static struct itest_shard views[ITEST_SHARDS];
    for (unsigned n = 1; n <= NODES; n++) {
        assert_true(itest_shard_views(&cluster, n, views));
        sum.linearizable += itest_reads.linearizable;
        sum.barriers += itest_reads.barriers;
        sum.failed += itest_reads.failed;
    }
    return sum;
}

/* Linearizable reads that arrive together share raft barriers (a barrier per read was a raft
 * entry per read): every get is answered with its order, by far fewer barriers than gets. App b,
 * half as many: app a has spent its rate (APP_RATE) on the test before. */
static void pipelined_reads_share_barriers(void **state)
{
    (void)state;
    const unsigned count = PIPELINED / 2;
    pipeline_orders(&app_b, "order.create", "read-", count);
    struct itest_reads before = cluster_reads();
    pipeline_orders(&app_b, "order.get", "read-", count);
    struct itest_reads after = cluster_reads();
    uint64_t reads = after.linearizable - before.linearizable;
    uint64_t barriers = after.barriers - before.barriers;
    printf("itest: %u pipelined order.get: %llu linearizable reads served by %llu barriers\n",
           count, (unsigned long long)reads, (unsigned long long)barriers);
    assert_true(reads >= count);
    assert_true(barriers > 0);
    assert_true(barriers * 4 <= reads);
    assert_int_equal(after.failed, before.failed);
}

/* Requests the nodes forwarded to a shard's leader, summed. */
static uint64_t cluster_forwarded(void)
{
    uint64_t sum;
    assert_true(itest_forwarded_total(&cluster, &sum));
    return sum;
}

#define LIBRARY_ORDERS 150u

static void library_done(void *arg, int status, struct pr_response *resp)
{
    unsigned *ok = arg;
    *ok += status == 0 && resp->ok;
}

/* Counts answers NOT_FOUND at the first attempt. */
static void library_not_found(void *arg, int status, struct pr_response *resp)
{
    unsigned *not_found = arg;
    *not_found += status == 0 && strcmp(resp->code, "NOT_FOUND") == 0 && resp->attempts == 1;
}

/* Poll @c until nothing is pending; each poll must run a callback within 2 * CALL_MS (the
 * library's request timeout is CALL_MS). */
static void library_drain(struct pr_client *c)
{
    while (pr_client_pending(c) > 0) {
        assert_true(pr_client_poll(c, 2 * CALL_MS) > 0);
    }
}

/* LIBRARY_ORDERS order.create through the C client library (its first server is node 1),
 * pipelined, after two calls that let a routing client learn the shard map and 32 gets (of
 * orders that do not exist) that make it connect to every leader (until a connection is made,
 * routed requests take node 1). Returns how many creates were answered OK, and in *forwarded
 * how many requests the nodes forwarded meanwhile. */
static unsigned library_creates(bool route, const char *prefix, uint64_t *forwarded)
{
    struct pr_client *c = itest_library_client(&cluster, app_b.id, app_b.secret, route, 0);
    assert_non_null(c);
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    one_str_body(&body, "app_id", app_b.id);
    for (unsigned i = 0; i < 2; i++) {
        struct pr_response resp;
        assert_int_equal(pr_client_call(c, "app.get", body.data, body.len, &resp), 0);
        assert_true(resp.ok);
        pr_response_free(&resp);
    }
    unsigned ok = 0, not_found = 0;
    for (unsigned i = 0; i < 32; i++) {
        char mono[40];
        snprintf(mono, sizeof(mono), "%swarm-%u", prefix, i);
        one_str_body(&body, "merchant_order_no", mono);
        assert_int_equal(
            pr_client_send(c, "order.get", body.data, body.len, library_not_found, &not_found), 0);
    }
    library_drain(c);
    assert_int_equal(not_found, 32); /* Each answered NOT_FOUND, not retried. */
    uint64_t before = cluster_forwarded();
    for (unsigned i = 0; i < LIBRARY_ORDERS; i++) {
        char mono[40];
        snprintf(mono, sizeof(mono), "%s%u", prefix, i);
        order_body(&body, mono, 100 + i);
        assert_int_equal(pr_client_send(c, "order.create", body.data, body.len, library_done, &ok),
                         0);
    }
    library_drain(c);
    *forwarded = cluster_forwarded() - before;
    pr_client_free(c);
    rt_buf_free(&body);
    return ok;
}

/* Of LIBRARY_ORDERS orders numbered @prefix0.., how many belong to shards node 1 does not
 * lead (by its view). */
static unsigned led_elsewhere(const char *prefix)
{
    static struct itest_shard views[ITEST_SHARDS];
    assert_true(itest_shard_views(&cluster, 1, views));
    unsigned elsewhere = 0;
    for (unsigned i = 0; i < LIBRARY_ORDERS; i++) {
        char mono[40];
        uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
        snprintf(mono, sizeof(mono), "%s%u", prefix, i);
        size_t n = act_order_key(key, app_b.id, strlen(app_b.id), mono, strlen(mono));
        assert_true(n > 0);
        elsewhere += views[rt_shard_of(key, n, (uint16_t)cluster.shards)].leader != 1;
    }
    return elsewhere;
}

/* The C client library with the route option sends each order to its shard's leader: the nodes
 * forward none of them, where the same client without it has node 1 (its first server) forward
 * every order whose shard another node leads. */
static void library_client_routes_orders(void **state)
{
    (void)state;
    uint64_t plain, routed;
    unsigned plain_elsewhere = led_elsewhere("lib-plain-");
    unsigned routed_elsewhere = led_elsewhere("lib-routed-");
    assert_int_equal(library_creates(false, "lib-plain-", &plain), LIBRARY_ORDERS);
    assert_int_equal(library_creates(true, "lib-routed-", &routed), LIBRARY_ORDERS);
    printf("itest: %u orders through the client library, its first server node 1: without "
           "routing %llu forwarded (%u of their shards led elsewhere), with routing %llu (%u)\n",
           LIBRARY_ORDERS, (unsigned long long)plain, plain_elsewhere, (unsigned long long)routed,
           routed_elsewhere);
    /* Only meaningful if node 1 does not lead nearly every shard. */
    assert_true(plain_elsewhere >= LIBRARY_ORDERS / 10 && routed_elsewhere >= LIBRARY_ORDERS / 10);
    /* A leader that moved meanwhile would cost a few forwards either way, never most. */
    assert_true(plain * 10 >= plain_elsewhere * 9);
    assert_true(routed * 20 <= LIBRARY_ORDERS);
}

/* An app beyond its rate on a node gets RATE_LIMITED; every request is still answered. */
static void rate_limit(void **state)
{
    (void)state;
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 2, 5000));
    struct rt_buf body, out;
    rt_buf_init(&body, 4096);
    rt_buf_init(&out, 16u << 20);
    one_str_body(&body, "merchant_order_no", "pipe-1");
    unsigned n = APP_RATE * 2;
    for (unsigned i = 0; i < n; i++) {
        assert_true(itest_encode(&c, &app_b.sign, "order.get", body.data, body.len, &out) != 0);
    }
    assert_true(itest_send_raw(&c, out.data, out.len));
    struct itest_reply reply;
    itest_reply_init(&reply);
    unsigned limited = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t id;
        assert_true(itest_read_reply(&c, &reply, &id, CALL_MS));
        limited += strcmp(reply.code, "RATE_LIMITED") == 0;
    }
    printf("itest: %u requests at once from one app: %u RATE_LIMITED (rate %d/s)\n", n, limited,
           APP_RATE);
    assert_true(limited > 0 && limited < n);
    itest_reply_free(&reply);
    rt_buf_free(&out);
    rt_buf_free(&body);
    itest_close(&c);
}

/* A frame longer than 1 MiB: TOO_LARGE with id 0, and the connection is closed. */
static void oversized_frame(void **state)
{
    (void)state;
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 3, 5000));
    const uint8_t head[] = {0x00, 0x10, 0x00, 0x01}; /* 1 MiB + 1 */
    assert_true(itest_send_raw(&c, head, sizeof(head)));
    struct itest_reply reply;
    itest_reply_init(&reply);
    uint64_t id = 7;
    assert_true(itest_read_reply(&c, &reply, &id, CALL_MS));
    assert_int_equal(id, 0);
    assert_string_equal(reply.code, "TOO_LARGE");
    assert_false(itest_read_reply(&c, &reply, &id, 2000));
    itest_reply_free(&reply);
    itest_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(apps_see_themselves_only),
        cmocka_unit_test(orders_through_every_node),
        cmocka_unit_test(admin_acts_for_new_and_unknown_apps),
        cmocka_unit_test(authentication_errors),
        cmocka_unit_test(order_body_fields),
        cmocka_unit_test(public_key_apps),
        cmocka_unit_test(many_apps_share_key_slots),
        cmocka_unit_test(nodes_run_with_huge_pages),
        cmocka_unit_test(pipelined_requests_all_answered),
        cmocka_unit_test(pipelined_reads_share_barriers),
        cmocka_unit_test(library_client_routes_orders),
        cmocka_unit_test(rate_limit),
        cmocka_unit_test(oversized_frame),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
