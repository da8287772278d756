/* Unit tests for the order actor, driven through the apply engine over an in-memory store:
 * batches are encoded with rt_batch_builder and applied with rt_engine_apply exactly as a
 * raft entry would be, reads go through rt_engine_query, expiry through the engine's due
 * timer collection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_order.h"
#include "act_registry.h"
#include "mem_store.h"
#include "rt_batch.h"
#include "rt_cache.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_mp.h"
#include "test_orders.h"
#include "test_support.h"

#define T0_MS 1700000000000ull /* An arbitrary wall-clock start. */
#define APP   "app_1"

/* ---- Fixture: one shard engine over a mem_store ---- */

struct fx {
    struct mem_store *ms;
    struct rt_store *store;
    struct rt_registry reg;
    struct rt_cache cache;
    bool use_cache;
    struct rt_engine engine;
    struct rt_batch_builder bb;
    uint16_t shard;
    uint16_t shard_count;
    uint64_t index; /* Last raft index handed to the engine. */
    uint64_t now_ms;
};

static void fx_engine_open(struct fx *f)
{
    struct rt_engine_config config = {
        .shard = f->shard,
        .shard_count = f->shard_count,
        .registry = &f->reg,
        .store = f->store,
        .cache = f->use_cache ? &f->cache : NULL,
    };
    assert_int_equal(rt_engine_init(&f->engine, &config), 0);
}

static struct fx *fx_new(uint16_t shard, uint16_t shard_count, bool use_cache)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->ms = mem_store_new();
    assert_non_null(f->ms);
    f->store = mem_store_store(f->ms);
    assert_int_equal(act_registry_init(&f->reg), 0);
    f->use_cache = use_cache;
    if (use_cache) {
        assert_int_equal(rt_cache_init(&f->cache, 1u << 20), 0);
    }
    f->shard = shard;
    f->shard_count = shard_count;
    f->now_ms = T0_MS;
    fx_engine_open(f);
    rt_batch_builder_init(&f->bb, RT_BATCH_BYTES_MAX);
    return f;
}

static int fx_setup(void **state)
{
    /* One shard: every key belongs to it, so any set of orders fits one batch. */
    *state = fx_new(0, 1, false);
    return 0;
}

static int fx_setup_cached(void **state)
{
    *state = fx_new(0, 1, true);
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    rt_batch_builder_free(&f->bb);
    rt_engine_free(&f->engine);
    if (f->use_cache) {
        rt_cache_free(&f->cache);
    }
    mem_store_free(f->ms);
    free(f);
    return 0;
}

/* ---- Building args ---- */

enum kv_kind { KV_STR, KV_INT, KV_NIL, KV_BOOL, KV_RAW, KV_BIN };

struct kv {
    const char *key;
    enum kv_kind kind;
    const char *s; /* KV_STR / KV_RAW / KV_BIN bytes. */
    size_t len;    /* Length of @s; 0 means strlen(s) for KV_STR. */
    int64_t i;
};

#define S(k, v)                                                                                    \
    {                                                                                              \
        .key = (k), .kind = KV_STR, .s = (v)                                                       \
    }
#define SL(k, v, l)                                                                                \
    {                                                                                              \
        .key = (k), .kind = KV_STR, .s = (v), .len = (l)                                           \
    }
#define I(k, v)                                                                                    \
    {                                                                                              \
        .key = (k), .kind = KV_INT, .i = (v)                                                       \
    }
#define NIL(k)                                                                                     \
    {                                                                                              \
        .key = (k), .kind = KV_NIL                                                                 \
    }
#define BOOL(k)                                                                                    \
    {                                                                                              \
        .key = (k), .kind = KV_BOOL                                                                \
    }
#define RAW(k, v, l)                                                                               \
    {                                                                                              \
        .key = (k), .kind = KV_RAW, .s = (v), .len = (l)                                           \
    }
#define BIN(k, v, l)                                                                               \
    {                                                                                              \
        .key = (k), .kind = KV_BIN, .s = (v), .len = (l)                                           \
    }

static void kv_write(struct rt_mp_writer *w, const struct kv *kv)
{
    rt_mp_write_cstr(w, kv->key);
    switch (kv->kind) {
    case KV_STR:
        rt_mp_write_str(w, kv->s, kv->len > 0 ? kv->len : strlen(kv->s));
        break;
    case KV_INT:
        rt_mp_write_int(w, kv->i);
        break;
    case KV_NIL:
        rt_mp_write_nil(w);
        break;
    case KV_BOOL:
        rt_mp_write_bool(w, true);
        break;
    case KV_RAW:
        rt_mp_write_raw(w, (const uint8_t *)kv->s, kv->len);
        break;
    case KV_BIN:
        rt_mp_write_bin(w, (const uint8_t *)kv->s, kv->len);
        break;
    }
}

/* Encode the map @kvs[0..n) into @buf (reset first). */
static void args_encode(struct rt_buf *buf, const struct kv *kvs, size_t n)
{
    rt_buf_reset(buf);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    rt_mp_write_map(&w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        kv_write(&w, &kvs[i]);
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
}

/* The base create args of order (APP, @mono, @amount). */
static size_t create_kvs(struct kv *out, const char *mono, int64_t amount)
{
    struct kv base[] = {
        S("app_id", APP),       S("merchant_order_no", mono),
        I("amount", amount),    S("subject", "Coffee \xe5\x92\x96\xe5\x95\xa1"),
        S("channel", "wechat"),
    };
    memcpy(out, base, sizeof(base));
    return sizeof(base) / sizeof(base[0]);
}

static void create_args(struct rt_buf *buf, const char *mono, int64_t amount)
{
    struct kv kvs[16];
    size_t n = create_kvs(kvs, mono, amount);
    args_encode(buf, kvs, n);
}

static void app_args(struct rt_buf *buf, const char *app)
{
    struct kv kv[] = {S("app_id", app)};
    args_encode(buf, kv, 1);
}

/* ---- Driving the engine ---- */

struct cmd {
    uint8_t origin;
    uint8_t op;
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    size_t key_len;
    const uint8_t *args;
    size_t args_len;
};

static void cmd_init(struct cmd *c, uint8_t op, const char *mono, const struct rt_buf *args)
{
    memset(c, 0, sizeof(*c));
    c->origin = RT_ORIGIN_CLIENT;
    c->op = op;
    c->key_len = act_order_key(c->key, APP, strlen(APP), mono, strlen(mono));
    assert_true(c->key_len > 0);
    c->args = args->data;
    c->args_len = args->len;
}

static void batch_begin(struct fx *f)
{
    assert_int_equal(rt_batch_builder_begin(&f->bb, f->now_ms), 0);
}

static void batch_add(struct fx *f, const struct cmd *c)
{
    struct rt_command rc = {
        .origin = c->origin,
        .actor_type = ACT_TYPE_ORDER,
        .op = c->op,
        .key = c->key,
        .key_len = (uint32_t)c->key_len,
        .args = c->args,
        .args_len = (uint32_t)c->args_len,
    };
    assert_int_equal(rt_batch_builder_add(&f->bb, &rc), 0);
}

/* Finish the batch and apply it as the next raft entry. */
static int batch_apply(struct fx *f)
{
    size_t len = 0;
    const uint8_t *data = rt_batch_builder_finish(&f->bb, &len);
    assert_non_null(data);
    f->index++;
    return rt_engine_apply(&f->engine, f->index, data, len);
}

/* Apply one command in its own entry; returns the command's reply code. */
static int apply_one(struct fx *f, uint8_t op, const char *mono, const struct rt_buf *args,
                     const struct rt_reply **reply)
{
    struct cmd c;
    cmd_init(&c, op, mono, args);
    batch_begin(f);
    batch_add(f, &c);
    assert_int_equal(batch_apply(f), 0);
    assert_int_equal(rt_engine_reply_count(&f->engine), 1);
    const struct rt_reply *r = rt_engine_reply(&f->engine, 0);
    if (reply != NULL) {
        *reply = r;
    }
    return r->code;
}

static int query_get(struct fx *f, const char *app, const char *mono, struct rt_reply *reply)
{
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    app_args(&args, app);
    struct cmd c;
    cmd_init(&c, ACT_ORDER_GET, mono, &args);
    struct rt_command rc = {
        .origin = RT_ORIGIN_CLIENT,
        .actor_type = ACT_TYPE_ORDER,
        .op = ACT_ORDER_GET,
        .key = c.key,
        .key_len = (uint32_t)c.key_len,
        .args = args.data,
        .args_len = (uint32_t)args.len,
    };
    int rv = rt_engine_query(&f->engine, &rc, f->now_ms, reply);
    rt_buf_free(&args);
    return rv;
}

/* Collect due timers at f->now_ms into a batch; apply it if any. Returns how many. */
static uint32_t fire_due_timers(struct fx *f)
{
    batch_begin(f);
    uint32_t added = 0;
    assert_int_equal(rt_engine_collect_due_timers(&f->engine, f->now_ms, &f->bb, 100, &added), 0);
    if (added > 0) {
        assert_int_equal(batch_apply(f), 0);
        assert_int_equal(rt_engine_reply_count(&f->engine), added);
    }
    return added;
}

/* The data column families of the shard (everything but meta, whose applied index moves
 * with every entry), as one comparable byte string. */
static int snap_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    struct rt_buf *buf = arg;
    uint8_t lens[8];
    rt_put_be32(lens, (uint32_t)key_len);
    rt_put_be32(lens + 4, (uint32_t)val_len);
    assert_int_equal(rt_buf_append(buf, lens, sizeof(lens)), 0);
    assert_int_equal(rt_buf_append(buf, key, key_len), 0);
    assert_int_equal(rt_buf_append(buf, val, val_len), 0);
    return 0;
}

static void data_snapshot(struct fx *f, struct rt_buf *out)
{
    rt_buf_init(out, 64u << 20);
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, f->shard);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        if (cf == RT_CF_META) {
            continue;
        }
        uint8_t tag = (uint8_t)cf;
        assert_int_equal(rt_buf_append(out, &tag, 1), 0);
        assert_int_equal(f->store->ops->scan(f->store, (enum rt_cf)cf, prefix, sizeof(prefix), NULL,
                                             0, snap_visit, out),
                         0);
    }
}

static void assert_same_data(struct fx *f, const struct rt_buf *before)
{
    struct rt_buf now;
    data_snapshot(f, &now);
    assert_int_equal(now.len, before->len);
    assert_memory_equal(now.data, before->data, before->len);
    rt_buf_free(&now);
}

static void decode_reply(const struct rt_reply *r, struct act_order *o)
{
    assert_int_equal(r->code, 0);
    assert_int_equal(act_order_decode_object(r->body, r->body_len, o), 0);
}

/* ---- Tests ---- */

/* Every CONTRACT key present exactly once (nil where absent), the extras, and no "v". */
static void assert_order_object_keys(const uint8_t *body, size_t len)
{
    static const char *const keys[] = {
        "order_id", "app_id",           "merchant_order_no", "amount",
        "currency", "subject",          "channel",           "status",
        "pay_url",  "channel_trade_no", "refunded_amount",   "created_at",
        "paid_at",  "expire_at",        "product",           "notify_url",
        "attach",   "closed_at",
    };
    const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, body, len);
    uint32_t count = 0;
    assert_int_equal(rt_mp_read_map(&r, &count), 0);
    assert_int_equal(count, nkeys);
    uint32_t seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t k_len;
        assert_int_equal(rt_mp_read_str(&r, &k, &k_len), 0);
        bool known = false;
        for (size_t j = 0; j < nkeys; j++) {
            if (rt_mp_key_is(k, k_len, keys[j])) {
                assert_int_equal(seen & (1u << j), 0);
                seen |= 1u << j;
                known = true;
            }
        }
        assert_true(known);
        if (rt_mp_key_is(k, k_len, "pay_url") || rt_mp_key_is(k, k_len, "channel_trade_no") ||
            rt_mp_key_is(k, k_len, "paid_at") || rt_mp_key_is(k, k_len, "closed_at")) {
            assert_int_equal(rt_mp_peek(&r), RT_MP_NIL);
        }
        assert_int_equal(rt_mp_skip(&r), 0);
    }
    assert_int_equal(rt_mp_remaining(&r), 0);
}

static void create_new_order(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0001", 1999);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0001", &args, &r), 0);
    assert_order_object_keys(r->body, r->body_len);
    struct act_order o;
    decode_reply(r, &o);
    assert_int_equal(strlen(o.order_id), 19);
    assert_int_equal(o.order_id[0], 'P');
    uint16_t shard = 99;
    assert_true(rt_id_shard(o.order_id, strlen(o.order_id), 'P', &shard));
    assert_int_equal(shard, f->shard);
    assert_string_equal(o.app_id, APP);
    assert_string_equal(o.merchant_order_no, "M-0001");
    assert_int_equal(o.amount, 1999);
    assert_string_equal(o.currency, "CNY");
    assert_string_equal(o.subject, "Coffee \xe5\x92\x96\xe5\x95\xa1");
    assert_int_equal(o.channel, ACT_CHANNEL_WECHAT);
    assert_int_equal(o.product, ACT_PRODUCT_NATIVE);
    assert_int_equal(o.status, ACT_ORDER_WAITING);
    assert_string_equal(o.pay_url, "");
    assert_string_equal(o.channel_trade_no, "");
    assert_int_equal(o.refunded_amount, 0);
    assert_int_equal(o.created_at_ms, T0_MS);
    assert_false(o.has_paid_at);
    assert_int_equal(o.expire_at_ms, T0_MS + RT_ORDER_EXPIRE_S_DEFAULT * 1000ull);
    assert_false(o.has_closed_at);
    assert_string_equal(o.notify_url, "");
    assert_string_equal(o.attach, "");
    /* One state, one index entry, one timer; applied index committed with them. */
    assert_int_equal(test_store_count(f->store, RT_CF_STATE, f->shard), 1);
    assert_int_equal(test_store_count(f->store, RT_CF_INDEX, f->shard), 1);
    assert_int_equal(test_store_count(f->store, RT_CF_TIMERS, f->shard), 1);
    assert_int_equal(test_store_count(f->store, RT_CF_OUTBOX, f->shard), 0);
    struct rt_applied applied;
    assert_int_equal(f->store->ops->applied(f->store, f->shard, &applied), 0);
    assert_int_equal(applied.index, f->index);
    /* The stored state decodes to the same order and carries "v". */
    uint8_t skey[RT_KEY_BYTES_MAX];
    uint8_t akey[RT_ACTOR_KEY_BYTES_MAX];
    size_t akey_len = act_order_key(akey, APP, strlen(APP), "M-0001", 6);
    size_t skey_len = rt_key_state(skey, f->shard, ACT_TYPE_ORDER, akey, akey_len);
    struct rt_buf stored;
    rt_buf_init(&stored, RT_ACTOR_STATE_BYTES_MAX);
    assert_int_equal(f->store->ops->get(f->store, RT_CF_STATE, skey, skey_len, &stored), 0);
    struct act_order s;
    assert_int_equal(act_order_decode(stored.data, stored.len, &s), 0);
    assert_memory_equal(&s, &o, sizeof(o));
    assert_int_not_equal(act_order_decode_object(stored.data, stored.len, &s), 0);
    rt_buf_free(&stored);
    rt_buf_free(&args);
}

static void create_all_fields(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    struct kv kvs[16];
    size_t n = create_kvs(kvs, "M.all|x*y@z_1", RT_ORDER_AMOUNT_MAX);
    kvs[n++] = (struct kv)S("currency", "USD");
    kvs[n++] = (struct kv)S("product", "native");
    kvs[n++] = (struct kv)I("expire_s", RT_ORDER_EXPIRE_S_MAX);
    kvs[n++] = (struct kv)S("notify_url", "https://merchant.example/cb?x=1");
    kvs[n++] = (struct kv)S("attach", "memo \xe2\x82\xac");
    kvs[3] = (struct kv)S("channel", "alipay"); /* Keys may come in any order. */
    kvs[4] = (struct kv)S("subject", "s");
    args_encode(&args, kvs, n);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M.all|x*y@z_1", &args, &r), 0);
    struct act_order o;
    decode_reply(r, &o);
    assert_int_equal(o.amount, RT_ORDER_AMOUNT_MAX);
    assert_string_equal(o.currency, "USD");
    assert_int_equal(o.channel, ACT_CHANNEL_ALIPAY);
    assert_string_equal(o.subject, "s");
    assert_int_equal(o.expire_at_ms, T0_MS + RT_ORDER_EXPIRE_S_MAX * 1000ull);
    assert_string_equal(o.notify_url, "https://merchant.example/cb?x=1");
    assert_string_equal(o.attach, "memo \xe2\x82\xac");
    /* Repeating it in full is idempotent too. */
    char id[RT_ID_BYTES_MAX + 1];
    strcpy(id, o.order_id);
    f->now_ms += 5000;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M.all|x*y@z_1", &args, &r), 0);
    decode_reply(r, &o);
    assert_string_equal(o.order_id, id);
    assert_int_equal(o.created_at_ms, T0_MS);
    rt_buf_free(&args);
}

static void create_is_idempotent(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0002", 500);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0002", &args, &r), 0);
    struct act_order first;
    decode_reply(r, &first);
    struct rt_buf before;
    data_snapshot(f, &before);
    /* Later, same parameters; defaults given explicitly count as the same. */
    f->now_ms += 60000;
    struct kv kvs[16];
    size_t n = create_kvs(kvs, "M-0002", 500);
    kvs[n++] = (struct kv)S("currency", "CNY");
    kvs[n++] = (struct kv)I("expire_s", RT_ORDER_EXPIRE_S_DEFAULT);
    kvs[n++] = (struct kv)S("product", "native");
    kvs[n++] = (struct kv)S("attach", ""); /* "" is the same as absent. */
    struct rt_buf args2;
    rt_buf_init(&args2, 4096);
    args_encode(&args2, kvs, n);
    const struct rt_buf *variants[] = {&args, &args2};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0002", variants[i], &r), 0);
        struct act_order again;
        decode_reply(r, &again);
        assert_memory_equal(&again, &first, sizeof(first));
        assert_same_data(f, &before); /* No new state, index entry or timer. */
    }
    rt_buf_free(&before);
    rt_buf_free(&args2);
    rt_buf_free(&args);
}

static void create_conflict(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0003", 500);
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0003", &args, NULL), 0);
    struct rt_buf before;
    data_snapshot(f, &before);
    struct {
        struct kv kv;
        const char *field;
    } diffs[] = {
        {I("amount", 501), "amount"},     {S("currency", "USD"), "currency"},
        {S("subject", "Tea"), "subject"}, {S("channel", "alipay"), "channel"},
        {I("expire_s", 600), "expire_s"}, {S("notify_url", "http://x.example/n"), "notify_url"},
        {S("attach", "a"), "attach"},
    };
    for (size_t i = 0; i < sizeof(diffs) / sizeof(diffs[0]); i++) {
        struct kv kvs[16];
        size_t n = create_kvs(kvs, "M-0003", 500);
        bool replaced = false;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(kvs[j].key, diffs[i].kv.key) == 0) {
                kvs[j] = diffs[i].kv;
                replaced = true;
            }
        }
        if (!replaced) {
            kvs[n++] = diffs[i].kv;
        }
        args_encode(&args, kvs, n);
        const struct rt_reply *r;
        assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0003", &args, &r), RT_ECONFLICT);
        assert_non_null(strstr(r->msg, diffs[i].field));
        assert_int_equal(r->body_len, 0);
        assert_same_data(f, &before);
    }
    rt_buf_free(&before);
    rt_buf_free(&args);
}

/* One invalid-args case: base create args with @kv replacing the field of the same key
 * (appended if absent), or that field removed when @remove. */
struct bad_case {
    struct kv kv;
    bool remove;
    const char *msg_part; /* Must appear in the failure message. */
};

static void create_invalid_args(void **state)
{
    struct fx *f = *state;
    static const char bad_utf8[] = "caf\xc3";        /* Truncated sequence. */
    static const char overlong[] = "\xc0\xaf";       /* Overlong '/'. */
    static const char surrogate[] = "\xed\xa0\x80";  /* U+D800. */
    static const char with_nul[] = {'a', '\0', 'b'}; /* NUL inside. */
    static const char float_1[] = {(char)0xcb, 0x3f, (char)0xf0, 0, 0, 0, 0, 0, 0}; /* 1.0 */
    static const char array_1[] = {(char)0x91, 0x01};
    char long_subject[ACT_ORDER_SUBJECT_BYTES_MAX + 2];
    memset(long_subject, 's', sizeof(long_subject) - 1);
    long_subject[sizeof(long_subject) - 1] = '\0';
    char long_attach[ACT_ORDER_ATTACH_BYTES_MAX + 2];
    memset(long_attach, 'a', sizeof(long_attach) - 1);
    long_attach[sizeof(long_attach) - 1] = '\0';
    char long_url[ACT_ORDER_NOTIFY_URL_BYTES_MAX + 2];
    memset(long_url, 'u', sizeof(long_url) - 1);
    memcpy(long_url, "https://", 8);
    long_url[sizeof(long_url) - 1] = '\0';
    const struct bad_case cases[] = {
        /* Missing required fields. */
        {S("app_id", ""), true, "app_id"},
        {S("merchant_order_no", ""), true, "merchant_order_no"},
        {S("amount", ""), true, "amount"},
        {S("subject", ""), true, "subject"},
        {S("channel", ""), true, "channel"},
        /* Wrong types. */
        {I("app_id", 1), false, "app_id"},
        {NIL("merchant_order_no"), false, "merchant_order_no"},
        {S("amount", "100"), false, "amount"},
        {RAW("amount", float_1, sizeof(float_1)), false, "amount"},
        {NIL("amount"), false, "amount"},
        {I("currency", 156), false, "currency"},
        {BIN("subject", "Coffee", 6), false, "subject"},
        {BOOL("channel"), false, "channel"},
        {I("product", 0), false, "product"},
        {S("expire_s", "60"), false, "expire_s"},
        {RAW("notify_url", array_1, sizeof(array_1)), false, "notify_url"},
        {I("attach", 7), false, "attach"},
        /* Out of range. */
        {I("amount", 0), false, "amount"},
        {I("amount", -1), false, "amount"},
        {I("amount", RT_ORDER_AMOUNT_MAX + 1), false, "amount"},
        {RAW("amount", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9), false, "amount"},
        {I("expire_s", RT_ORDER_EXPIRE_S_MIN - 1), false, "expire_s"},
        {I("expire_s", RT_ORDER_EXPIRE_S_MAX + 1), false, "expire_s"},
        {I("expire_s", -60), false, "expire_s"},
        /* Bad values. */
        {S("channel", "paypal"), false, "channel"},
        {S("channel", "WECHAT"), false, "channel"},
        {S("product", "jsapi"), false, "product"},
        {S("currency", "cny"), false, "currency"},
        {S("currency", "CNYY"), false, "currency"},
        {S("currency", "CN"), false, "currency"},
        {SL("subject", bad_utf8, sizeof(bad_utf8) - 1), false, "subject"},
        {SL("subject", overlong, sizeof(overlong) - 1), false, "subject"},
        {SL("subject", surrogate, sizeof(surrogate) - 1), false, "subject"},
        {SL("subject", with_nul, sizeof(with_nul)), false, "subject"},
        {RAW("subject", "\xa0", 1), false, "subject"}, /* "" */
        {S("subject", long_subject), false, "subject"},
        {S("attach", long_attach), false, "attach"},
        {SL("attach", bad_utf8, sizeof(bad_utf8) - 1), false, "attach"},
        {S("notify_url", "ftp://x.example/"), false, "notify_url"},
        {S("notify_url", "https://"), false, "notify_url"},
        {S("notify_url", "https://a b"), false, "notify_url"},
        {S("notify_url", long_url), false, "notify_url"},
        {S("app_id", "app/1"), false, "app_id"},
        {S("merchant_order_no", "M 0004"), false, "merchant_order_no"},
        /* Not this actor's key. */
        {S("app_id", "other_app"), false, "match"},
        {S("merchant_order_no", "M-0005"), false, "match"},
        /* Unknown key. */
        {I("amount_fen", 1), false, "amount_fen"},
        {S("order_id", "P00"), false, "order_id"},
    };
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    uint8_t digest_before[32], digest_after[32];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        struct kv kvs[16];
        size_t n = create_kvs(kvs, "M-0004", 100);
        size_t m = 0;
        bool replaced = false;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(kvs[j].key, c->kv.key) == 0) {
                replaced = true;
                if (c->remove) {
                    continue;
                }
                kvs[m++] = c->kv;
            } else {
                kvs[m++] = kvs[j];
            }
        }
        if (!replaced) {
            kvs[m++] = c->kv;
        }
        args_encode(&args, kvs, m);
        test_store_digest(f->store, f->shard, digest_before);
        struct rt_buf before;
        data_snapshot(f, &before);
        const struct rt_reply *r;
        int code = apply_one(f, ACT_ORDER_CREATE, "M-0004", &args, &r);
        if (code != RT_EINVAL || strstr(r->msg, c->msg_part) == NULL) {
            print_error("case %zu (%s): code %d msg \"%s\"\n", i, c->kv.key, code, r->msg);
        }
        assert_int_equal(code, RT_EINVAL);
        assert_non_null(strstr(r->msg, c->msg_part));
        assert_int_equal(r->body_len, 0);
        assert_same_data(f, &before); /* Nothing written but the applied index. */
        rt_buf_free(&before);
        test_store_digest(f->store, f->shard, digest_after);
        assert_memory_not_equal(digest_before, digest_after, 32); /* The index moved. */
    }
    assert_int_equal(test_store_count(f->store, RT_CF_STATE, f->shard), 0);
    rt_buf_free(&args);
}

static void create_garbage_args(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *bytes;
        size_t len;
    } garbage[] = {
        {"", 0},             /* No args at all. */
        {"\xc1", 1},         /* Reserved byte. */
        {"\x92\x01\x02", 3}, /* An array, not a map. */
        {"\xa3"
         "abc",
         4}, /* A string. */
        {"\x81\xa6"
         "amount",
         8},                         /* Map missing its value. */
        {"\x81\x01\x02", 3},         /* Non-string key. */
        {"\xdf\xff\xff\xff\xff", 5}, /* map32 claiming 4G entries. */
        {"\x80\x80", 2},             /* Trailing bytes after the map. */
        {"\x85\xa6"
         "app_id\xdb\xff\xff\xff\xff",
         12}, /* str32 longer than the input. */
    };
    struct rt_buf before;
    data_snapshot(f, &before);
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        struct rt_buf args;
        rt_buf_init(&args, 64);
        assert_int_equal(rt_buf_append(&args, garbage[i].bytes, garbage[i].len), 0);
        const struct rt_reply *r;
        assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0006", &args, &r), RT_EINVAL);
        assert_true(strlen(r->msg) > 0);
        rt_buf_free(&args);
        assert_same_data(f, &before);
    }
    rt_buf_free(&before);
}

/* Every single-byte mutation of valid args, many per entry: the handler must answer each
 * with success, INVALID_ARGUMENT or CONFLICT, never crash or read out of bounds (run under
 * ASan), and the store must end up holding at most the one order. */
static void create_mutated_args(void **state)
{
    struct fx *f = *state;
    struct kv kvs[16];
    size_t n = create_kvs(kvs, "M-FZ", 777);
    kvs[n++] = (struct kv)S("notify_url", "https://n.example/x");
    kvs[n++] = (struct kv)S("attach", "a");
    kvs[n++] = (struct kv)I("expire_s", 3600);
    struct rt_buf base;
    rt_buf_init(&base, 4096);
    args_encode(&base, kvs, n);
    static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0x90, 0xa0, 0xc0, 0xc1,
                                     0xcc, 0xcf, 0xd0, 0xd9, 0xdb, 0xde, 0xdf, 0xff};
    size_t variants = base.len * sizeof(values) + base.len; /* Plus every truncation. */
    uint8_t *bufs = malloc(variants * base.len);
    assert_non_null(bufs);
    struct cmd *cmds = calloc(RT_BATCH_COMMANDS_MAX, sizeof(*cmds));
    assert_non_null(cmds);
    uint32_t ok = 0, invalid = 0, conflict = 0;
    size_t v = 0;
    while (v < variants) {
        batch_begin(f);
        uint32_t in_batch = 0;
        for (; v < variants && in_batch < RT_BATCH_COMMANDS_MAX; v++, in_batch++) {
            uint8_t *b = bufs + v * base.len;
            memcpy(b, base.data, base.len);
            size_t len = base.len;
            if (v < base.len * sizeof(values)) {
                b[v / sizeof(values)] = values[v % sizeof(values)];
            } else {
                len = v - base.len * sizeof(values); /* Truncated copy. */
            }
            struct rt_buf view = {.data = b, .len = len, .cap = base.len, .max = base.len};
            cmd_init(&cmds[in_batch], ACT_ORDER_CREATE, "M-FZ", &view);
            batch_add(f, &cmds[in_batch]);
        }
        assert_int_equal(batch_apply(f), 0);
        assert_int_equal(rt_engine_reply_count(&f->engine), in_batch);
        for (uint32_t i = 0; i < in_batch; i++) {
            const struct rt_reply *r = rt_engine_reply(&f->engine, i);
            if (r->code == 0) {
                struct act_order o;
                decode_reply(r, &o);
                ok++;
            } else if (r->code == RT_EINVAL) {
                assert_true(strlen(r->msg) > 0);
                invalid++;
            } else {
                assert_int_equal(r->code, RT_ECONFLICT);
                conflict++;
            }
        }
    }
    assert_true(ok > 0 && invalid > 0 && conflict > 0);
    assert_true(test_store_count(f->store, RT_CF_STATE, f->shard) <= 1);
    assert_int_equal(test_store_count(f->store, RT_CF_INDEX, f->shard),
                     test_store_count(f->store, RT_CF_STATE, f->shard));
    free(cmds);
    free(bufs);
    rt_buf_free(&base);
}

static void get_and_close(void **state)
{
    struct fx *f = *state;
    struct rt_reply q;
    /* Unknown order. */
    assert_int_equal(query_get(f, APP, "M-0007", &q), RT_ENOTFOUND);
    assert_int_equal(q.code, RT_ENOTFOUND);
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    app_args(&args, APP);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_GET, "M-0007", &args, &r), RT_ENOTFOUND);
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &args, &r), RT_ENOTFOUND);
    /* Create, then get through the read-only query path. */
    struct rt_buf cargs;
    rt_buf_init(&cargs, 4096);
    create_args(&cargs, "M-0007", 42);
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0007", &cargs, &r), 0);
    struct act_order created;
    decode_reply(r, &created);
    f->now_ms += 1000;
    assert_int_equal(query_get(f, APP, "M-0007", &q), 0);
    assert_order_object_keys(q.body, q.body_len);
    struct act_order got;
    decode_reply(&q, &got);
    assert_memory_equal(&got, &created, sizeof(got));
    /* Another app's id: forbidden, for get and close alike. */
    assert_int_equal(query_get(f, "intruder", "M-0007", &q), RT_EFORBIDDEN);
    struct rt_buf other;
    rt_buf_init(&other, 4096);
    app_args(&other, "intruder");
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &other, &r), RT_EFORBIDDEN);
    /* Malformed get/close args. */
    struct kv bad1[] = {S("app_id", APP), S("order_id", "x")};
    args_encode(&other, bad1, 2);
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &other, &r), RT_EINVAL);
    assert_non_null(strstr(r->msg, "order_id"));
    args_encode(&other, NULL, 0);
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &other, &r), RT_EINVAL);
    assert_non_null(strstr(r->msg, "app_id"));
    struct kv bad2[] = {I("app_id", 5)};
    args_encode(&other, bad2, 1);
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &other, &r), RT_EINVAL);
    /* Close: WAITING -> CLOSED at now. */
    f->now_ms += 1000;
    uint64_t close_ms = f->now_ms;
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &args, &r), 0);
    struct act_order closed;
    decode_reply(r, &closed);
    assert_int_equal(closed.status, ACT_ORDER_CLOSED);
    assert_true(closed.has_closed_at);
    assert_int_equal(closed.closed_at_ms, close_ms);
    assert_string_equal(closed.order_id, created.order_id);
    /* Close again: idempotent, nothing changes. */
    struct rt_buf before;
    data_snapshot(f, &before);
    f->now_ms += 1000;
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0007", &args, &r), 0);
    struct act_order again;
    decode_reply(r, &again);
    assert_memory_equal(&again, &closed, sizeof(again));
    assert_same_data(f, &before);
    rt_buf_free(&before);
    /* Get (query and through raft) sees the closed order. */
    assert_int_equal(query_get(f, APP, "M-0007", &q), 0);
    decode_reply(&q, &got);
    assert_memory_equal(&got, &closed, sizeof(got));
    assert_int_equal(apply_one(f, ACT_ORDER_GET, "M-0007", &args, &r), 0);
    decode_reply(r, &got);
    assert_memory_equal(&got, &closed, sizeof(got));
    /* A create with the same parameters still returns the (closed) order. */
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0007", &cargs, &r), 0);
    decode_reply(r, &got);
    assert_int_equal(got.status, ACT_ORDER_CLOSED);
    rt_buf_free(&other);
    rt_buf_free(&cargs);
    rt_buf_free(&args);
}

/* Resolve order_id as the cluster layer will: shard from the id, then the index there. */
static void order_id_index_resolves(void **state)
{
    (void)state;
    /* 16 shards; pick an order number that lands on shard 5 so the shard is visible in the id. */
    char mono[32];
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    size_t key_len = 0;
    for (int i = 0;; i++) {
        snprintf(mono, sizeof(mono), "IDX-%d", i);
        key_len = act_order_key(key, APP, strlen(APP), mono, strlen(mono));
        if (rt_shard_of(key, key_len, 16) == 5) {
            break;
        }
    }
    struct fx *f = fx_new(5, 16, false);
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, mono, 10);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, mono, &args, &r), 0);
    struct act_order o;
    decode_reply(r, &o);
    uint16_t shard = 0;
    assert_true(rt_id_shard(o.order_id, strlen(o.order_id), ACT_ORDER_ID_KIND, &shard));
    assert_int_equal(shard, 5);
    uint8_t ikey[ACT_ORDER_INDEX_KEY_BYTES_MAX];
    size_t ikey_len = act_order_index_key(ikey, o.order_id, strlen(o.order_id));
    assert_int_equal(ikey_len, 4 + strlen(o.order_id));
    assert_memory_equal(ikey, "oid:", 4);
    uint8_t skey[RT_KEY_BYTES_MAX];
    size_t skey_len = rt_key_index(skey, shard, ikey, ikey_len);
    struct rt_buf val;
    rt_buf_init(&val, 4096);
    /* The order is in the entry's id index record, not under a key of its own. */
    assert_int_equal(f->store->ops->get(f->store, RT_CF_INDEX, skey, skey_len, &val), RT_ENOTFOUND);
    assert_int_equal(test_store_count(f->store, RT_CF_INDEX, shard), 1);
    (void)mem_store_take_reads(f->ms);
    assert_int_equal(rt_engine_index_get(&f->engine, ikey, ikey_len, &val), 0);
    /* One read: the id index's record, not first a key of its own that new orders lack. */
    assert_int_equal(mem_store_take_reads(f->ms).gets[RT_CF_INDEX], 1);
    assert_int_equal(val.len, key_len);
    assert_memory_equal(val.data, key, key_len);
    /* The resolved key answers get with the same order. */
    const char *app, *m;
    size_t app_len, m_len;
    assert_true(act_order_key_split(val.data, val.len, &app, &app_len, &m, &m_len));
    assert_int_equal(m_len, strlen(mono));
    assert_memory_equal(m, mono, m_len);
    struct rt_reply q;
    assert_int_equal(query_get(f, APP, mono, &q), 0);
    struct act_order got;
    decode_reply(&q, &got);
    assert_string_equal(got.order_id, o.order_id);
    /* Ids that are not pay order ids build no index key. */
    assert_int_equal(act_order_index_key(ikey,
                                         "R05000000000001"
                                         "0000",
                                         19),
                     0);
    assert_int_equal(act_order_index_key(ikey, o.order_id, strlen(o.order_id) - 1), 0);
    /* An order created before the id index has an index key of its own: still found. */
    char old_id[RT_ID_BYTES_MAX + 1];
    rt_id_make(old_id, ACT_ORDER_ID_KIND, shard, f->index + 100, 7);
    ikey_len = act_order_index_key(ikey, old_id, strlen(old_id));
    skey_len = rt_key_index(skey, shard, ikey, ikey_len);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, shard, f->index);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_INDEX, skey, skey_len, key, key_len), 0);
    assert_int_equal(f->store->ops->commit(f->store, &ws), 0);
    rt_writeset_free(&ws);
    rt_buf_reset(&val);
    assert_int_equal(rt_engine_index_get(&f->engine, ikey, ikey_len, &val), 0);
    assert_int_equal(val.len, key_len);
    assert_memory_equal(val.data, key, key_len);
    rt_buf_free(&val);
    rt_buf_free(&args);
    void *fs = f;
    fx_teardown(&fs);
}

static void expiry_closes_waiting_order(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    struct kv kvs[16];
    size_t n = create_kvs(kvs, "M-0008", 300);
    kvs[n++] = (struct kv)I("expire_s", 60);
    args_encode(&args, kvs, n);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0008", &args, &r), 0);
    struct act_order o;
    decode_reply(r, &o);
    assert_int_equal(o.expire_at_ms, T0_MS + 60000);
    /* Not yet due. */
    f->now_ms = o.expire_at_ms - 1;
    assert_int_equal(fire_due_timers(f), 0);
    struct rt_reply q;
    assert_int_equal(query_get(f, APP, "M-0008", &q), 0);
    decode_reply(&q, &o);
    assert_int_equal(o.status, ACT_ORDER_WAITING);
    /* Due: the timer command closes the order. */
    f->now_ms = o.expire_at_ms + 250;
    assert_int_equal(fire_due_timers(f), 1);
    r = rt_engine_reply(&f->engine, 0);
    struct act_order expired;
    decode_reply(r, &expired);
    assert_int_equal(expired.status, ACT_ORDER_CLOSED);
    assert_true(expired.has_closed_at);
    assert_int_equal(expired.closed_at_ms, f->now_ms);
    assert_int_equal(test_store_count(f->store, RT_CF_TIMERS, f->shard), 0);
    /* The timer was consumed: nothing more fires, even much later. */
    f->now_ms += 24ull * 3600 * 1000;
    assert_int_equal(fire_due_timers(f), 0);
    assert_int_equal(query_get(f, APP, "M-0008", &q), 0);
    decode_reply(&q, &o);
    assert_memory_equal(&o, &expired, sizeof(o));
    rt_buf_free(&args);
}

static void close_before_expiry_wins(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0009", 300);
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0009", &args, NULL), 0);
    app_args(&args, APP);
    f->now_ms += 10000;
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CLOSE, "M-0009", &args, &r), 0);
    struct act_order closed;
    decode_reply(r, &closed);
    struct rt_buf before;
    data_snapshot(f, &before);
    assert_int_equal(test_store_count(f->store, RT_CF_TIMERS, f->shard), 1);
    /* The timer fires on a CLOSED order: replied as is, state untouched, timer consumed. */
    f->now_ms = closed.expire_at_ms;
    assert_int_equal(fire_due_timers(f), 1);
    r = rt_engine_reply(&f->engine, 0);
    struct act_order after;
    decode_reply(r, &after);
    assert_memory_equal(&after, &closed, sizeof(after));
    assert_int_equal(test_store_count(f->store, RT_CF_TIMERS, f->shard), 0);
    struct rt_reply q;
    assert_int_equal(query_get(f, APP, "M-0009", &q), 0);
    decode_reply(&q, &after);
    assert_memory_equal(&after, &closed, sizeof(after));
    assert_int_equal(fire_due_timers(f), 0);
    rt_buf_free(&before);
    rt_buf_free(&args);
}

static void expire_is_timer_only(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0010", 300);
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0010", &args, NULL), 0);
    /* A client cannot expire an order, even long after its expiry time. */
    f->now_ms += 2ull * RT_ORDER_EXPIRE_S_MAX * 1000;
    rt_buf_reset(&args);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_EXPIRE, "M-0010", &args, &r), RT_EFORBIDDEN);
    /* get is read-only, create is not: the query path refuses create. */
    struct cmd c;
    create_args(&args, "M-0010", 300);
    cmd_init(&c, ACT_ORDER_CREATE, "M-0010", &args);
    struct rt_command rc = {
        .origin = RT_ORIGIN_CLIENT,
        .actor_type = ACT_TYPE_ORDER,
        .op = ACT_ORDER_CREATE,
        .key = c.key,
        .key_len = (uint32_t)c.key_len,
        .args = c.args,
        .args_len = (uint32_t)c.args_len,
    };
    struct rt_reply q;
    assert_int_equal(rt_engine_query(&f->engine, &rc, f->now_ms, &q), RT_EINVAL);
    assert_int_equal(query_get(f, APP, "M-0010", &q), 0);
    struct act_order o;
    decode_reply(&q, &o);
    assert_int_equal(o.status, ACT_ORDER_WAITING);
    rt_buf_free(&args);
}

static void batch_with_failing_command(void **state)
{
    struct fx *f = *state;
    struct rt_buf a, b, c, d;
    rt_buf_init(&a, 4096);
    rt_buf_init(&b, 4096);
    rt_buf_init(&c, 4096);
    rt_buf_init(&d, 4096);
    create_args(&a, "B-1", 100);
    create_args(&b, "B-2", 0); /* Invalid amount. */
    create_args(&c, "B-3", 300);
    app_args(&d, APP);
    struct cmd cmds[5];
    cmd_init(&cmds[0], ACT_ORDER_CREATE, "B-1", &a);
    cmd_init(&cmds[1], ACT_ORDER_CREATE, "B-2", &b);
    cmd_init(&cmds[2], ACT_ORDER_CREATE, "B-3", &c);
    cmd_init(&cmds[3], ACT_ORDER_CLOSE, "B-1", &d);  /* Sees B-1 created earlier in the entry. */
    cmd_init(&cmds[4], ACT_ORDER_CREATE, "B-3", &c); /* Idempotent within the entry. */
    batch_begin(f);
    for (size_t i = 0; i < 5; i++) {
        batch_add(f, &cmds[i]);
    }
    assert_int_equal(batch_apply(f), 0);
    assert_int_equal(rt_engine_reply_count(&f->engine), 5);
    const int want[5] = {0, RT_EINVAL, 0, 0, 0};
    for (uint32_t i = 0; i < 5; i++) {
        assert_int_equal(rt_engine_reply(&f->engine, i)->code, want[i]);
    }
    assert_non_null(strstr(rt_engine_reply(&f->engine, 1)->msg, "amount"));
    struct act_order o1, o3, o3b, closed;
    decode_reply(rt_engine_reply(&f->engine, 0), &o1);
    decode_reply(rt_engine_reply(&f->engine, 2), &o3);
    decode_reply(rt_engine_reply(&f->engine, 3), &closed);
    decode_reply(rt_engine_reply(&f->engine, 4), &o3b);
    assert_memory_equal(&o3, &o3b, sizeof(o3));
    assert_int_equal(closed.status, ACT_ORDER_CLOSED);
    assert_string_equal(closed.order_id, o1.order_id);
    assert_string_not_equal(o1.order_id, o3.order_id);
    /* Two orders, their ids in the entry's one id index record, and their two expiry timers,
     * alike, in one record: the failed command left no trace. */
    assert_int_equal(test_store_count(f->store, RT_CF_STATE, f->shard), 2);
    assert_int_equal(test_store_count(f->store, RT_CF_INDEX, f->shard), 1);
    assert_int_equal(test_store_count(f->store, RT_CF_TIMERS, f->shard), 1);
    struct rt_reply q;
    assert_int_equal(query_get(f, APP, "B-2", &q), RT_ENOTFOUND);
    assert_int_equal(query_get(f, APP, "B-1", &q), 0);
    struct act_order got;
    decode_reply(&q, &got);
    assert_int_equal(got.status, ACT_ORDER_CLOSED);
    rt_buf_free(&a);
    rt_buf_free(&b);
    rt_buf_free(&c);
    rt_buf_free(&d);
}

static void failed_commit_is_eio(void **state)
{
    struct fx *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0011", 300);
    uint8_t before[32], after[32];
    test_store_digest(f->store, f->shard, before);
    mem_store_fail_commits(f->ms, 1);
    struct cmd c;
    cmd_init(&c, ACT_ORDER_CREATE, "M-0011", &args);
    batch_begin(f);
    batch_add(f, &c);
    assert_int_equal(batch_apply(f), RT_EIO);
    assert_int_equal(rt_engine_reply_count(&f->engine), 0);
    test_store_digest(f->store, f->shard, after);
    assert_memory_equal(before, after, 32);
    /* The node reopens the shard and raft applies the entry again: it goes through. */
    rt_engine_free(&f->engine);
    fx_engine_open(f);
    assert_int_equal(rt_engine_applied_index(&f->engine), f->index - 1);
    f->index--;
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0011", &args, &r), 0);
    struct act_order o;
    decode_reply(r, &o);
    assert_int_equal(o.status, ACT_ORDER_WAITING);
    rt_buf_free(&args);
}

static void corrupt_state_is_reported(void **state)
{
    struct fx *f = *state;
    /* Plant a bad state directly in the store, as a disk fault would. */
    uint8_t akey[RT_ACTOR_KEY_BYTES_MAX];
    size_t akey_len = act_order_key(akey, APP, strlen(APP), "M-0012", 6);
    uint8_t skey[RT_KEY_BYTES_MAX];
    size_t skey_len = rt_key_state(skey, f->shard, ACT_TYPE_ORDER, akey, akey_len);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, f->shard, f->index);
    assert_int_equal(
        rt_writeset_put(&ws, RT_CF_STATE, skey, skey_len, (const uint8_t *)"\x81\xa1v\x01", 4), 0);
    assert_int_equal(f->store->ops->commit(f->store, &ws), 0);
    rt_writeset_free(&ws);
    struct rt_reply q;
    assert_int_equal(query_get(f, APP, "M-0012", &q), RT_ECORRUPT);
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    create_args(&args, "M-0012", 300);
    const struct rt_reply *r;
    assert_int_equal(apply_one(f, ACT_ORDER_CREATE, "M-0012", &args, &r), RT_ECORRUPT);
    assert_non_null(strstr(r->msg, "unreadable"));
    rt_buf_free(&args);
}

/* ---- Codec and key helpers, without the engine ---- */

static void make_order(struct act_order *o)
{
    memset(o, 0, sizeof(*o));
    rt_id_make(o->order_id, 'P', 3, 77, 2);
    strcpy(o->app_id, APP);
    strcpy(o->merchant_order_no, "X-1");
    o->amount = 1000;
    strcpy(o->currency, "CNY");
    strcpy(o->subject, "subject");
    o->channel = ACT_CHANNEL_ALIPAY;
    o->status = ACT_ORDER_WAITING;
    o->created_at_ms = 5000;
    o->expire_at_ms = 5000 + 60000;
}

static void encode(const struct act_order *o, bool state, struct rt_buf *buf)
{
    rt_buf_init(buf, RT_ACTOR_STATE_BYTES_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    int rv = state ? act_order_encode_state(o, &w) : act_order_encode_object(o, &w);
    assert_int_equal(rv, 0);
}

static void codec_round_trip_and_checks(void **state)
{
    (void)state;
    struct act_order o, d;
    make_order(&o);
    o.status = ACT_ORDER_PARTIALLY_REFUNDED;
    o.has_paid_at = true;
    o.paid_at_ms = 9000;
    o.refunded_amount = 10;
    strcpy(o.pay_url, "https://qr.alipay.com/abc");
    strcpy(o.channel_trade_no, "2024010122001");
    struct rt_buf buf;
    encode(&o, true, &buf);
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), 0);
    assert_memory_equal(&o, &d, sizeof(o));
    /* Truncations at every length fail cleanly. */
    for (size_t n = 0; n < buf.len; n++) {
        assert_int_not_equal(act_order_decode(buf.data, n, &d), 0);
    }
    rt_buf_free(&buf);
    /* Inconsistent orders are rejected on decode. */
    struct act_order m;
    make_order(&m);
    m.refunded_amount = 5; /* WAITING with a refund. */
    encode(&m, true, &buf);
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), RT_ECORRUPT);
    rt_buf_free(&buf);
    make_order(&m);
    m.status = ACT_ORDER_PAID; /* PAID without paid_at. */
    encode(&m, true, &buf);
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), RT_ECORRUPT);
    rt_buf_free(&buf);
    make_order(&m);
    m.expire_at_ms = m.created_at_ms + 1500; /* Not a whole, in-range expire_s. */
    encode(&m, true, &buf);
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), RT_ECORRUPT);
    rt_buf_free(&buf);
    /* Another format version. */
    make_order(&m);
    encode(&m, true, &buf);
    /* Version 2: array16 header of 19 (3 bytes), then the version, then the values. */
    assert_int_equal(buf.data[0], 0xdc);
    assert_int_equal(buf.data[2], 19);
    assert_int_equal(buf.data[3], ACT_ORDER_STATE_VERSION);
    buf.data[3] = 3;
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), RT_EVERSION);
    buf.data[3] = ACT_ORDER_STATE_VERSION;
    buf.data[2] = 18; /* A length that is not version 2's. */
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), RT_ECORRUPT);
    rt_buf_free(&buf);
    /* Object form: no version; not accepted as state, and vice versa. */
    encode(&m, false, &buf);
    assert_int_equal(act_order_decode_object(buf.data, buf.len, &d), 0);
    assert_memory_equal(&m, &d, sizeof(m));
    assert_int_equal(act_order_decode(buf.data, buf.len, &d), RT_ECORRUPT);
    struct rt_buf state_buf;
    encode(&m, true, &state_buf);
    assert_int_equal(act_order_decode_object(state_buf.data, state_buf.len, &d), RT_ECORRUPT);
    /* Version 1 (stores written by older builds): the object's map with "v": 1 first. */
    struct rt_buf v1;
    rt_buf_init(&v1, RT_ACTOR_STATE_BYTES_MAX);
    assert_int_equal(test_order_state_map(&m, ACT_ORDER_STATE_VERSION_MAP, &v1), 0);
    assert_int_equal(act_order_decode(v1.data, v1.len, &d), 0);
    assert_memory_equal(&m, &d, sizeof(m));
    /* Version 2 is the smaller by the field names. */
    assert_true(state_buf.len + 150 < v1.len);
    rt_buf_reset(&v1);
    assert_int_equal(test_order_state_map(&m, 2, &v1), 0); /* "v": 2 in a map: no such version. */
    assert_int_equal(act_order_decode(v1.data, v1.len, &d), RT_EVERSION);
    rt_buf_free(&v1);
    rt_buf_free(&state_buf);
    rt_buf_free(&buf);
}

static void key_helpers(void **state)
{
    (void)state;
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    assert_int_equal(act_order_key(key, "a", 1, "b", 1), 3);
    assert_memory_equal(key, "a/b", 3);
    char app[ACT_APP_ID_BYTES_MAX + 1];
    char mono[ACT_ORDER_MONO_BYTES_MAX + 1];
    memset(app, 'A', sizeof(app));
    memset(mono, '9', sizeof(mono));
    assert_int_equal(act_order_key(key, app, ACT_APP_ID_BYTES_MAX, mono, ACT_ORDER_MONO_BYTES_MAX),
                     ACT_APP_ID_BYTES_MAX + 1 + ACT_ORDER_MONO_BYTES_MAX);
    assert_int_equal(act_order_key(key, app, ACT_APP_ID_BYTES_MAX + 1, mono, 1), 0);
    assert_int_equal(act_order_key(key, app, 1, mono, ACT_ORDER_MONO_BYTES_MAX + 1), 0);
    assert_int_equal(act_order_key(key, "", 0, "b", 1), 0);
    assert_int_equal(act_order_key(key, "a", 1, "", 0), 0);
    assert_int_equal(act_order_key(key, "a/", 2, "b", 1), 0);
    assert_int_equal(act_order_key(key, "a", 1, "b/c", 3), 0);
    assert_int_equal(act_order_key(key, "a", 1, "b c", 3), 0);
    assert_int_equal(act_order_key(key, "a", 1, "_-|*@.", 6), 8);
    const char *a, *m;
    size_t a_len, m_len;
    assert_true(act_order_key_split((const uint8_t *)"ab/cd", 5, &a, &a_len, &m, &m_len));
    assert_int_equal(a_len, 2);
    assert_int_equal(m_len, 2);
    assert_false(act_order_key_split((const uint8_t *)"abcd", 4, &a, &a_len, &m, &m_len));
    assert_false(act_order_key_split((const uint8_t *)"/abcd", 5, &a, &a_len, &m, &m_len));
    assert_false(act_order_key_split((const uint8_t *)"ab/", 3, &a, &a_len, &m, &m_len));
    assert_false(act_order_key_split((const uint8_t *)"a/b/c", 5, &a, &a_len, &m, &m_len));
    /* The registry has the order type under its persistent id, ops in enum order. */
    struct rt_registry reg;
    assert_int_equal(act_registry_init(&reg), 0);
    const struct rt_actor_type *t = rt_registry_type(&reg, ACT_TYPE_ORDER);
    assert_ptr_equal(t, &act_order_type);
    assert_int_equal(rt_actor_op_index(t, "create"), ACT_ORDER_CREATE);
    assert_int_equal(rt_actor_op_index(t, "get"), ACT_ORDER_GET);
    assert_int_equal(rt_actor_op_index(t, "close"), ACT_ORDER_CLOSE);
    assert_int_equal(rt_actor_op_index(t, "expire"), ACT_ORDER_EXPIRE);
    assert_true(t->ops[ACT_ORDER_GET].readonly);
    assert_false(t->ops[ACT_ORDER_CREATE].readonly);
}

/* The merchant order number alphabet, byte by byte against the rule written out: WeChat's
 * out_trade_no characters ([0-9A-Za-z_|*@-]) plus '.', nothing else (not '/', not NUL, no
 * byte >= 0x80); and the length bounds. */
static void mono_alphabet_is_exact(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char s[3] = {'a', (char)c, 'b'};
        bool want = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    c == '_' || c == '-' || c == '|' || c == '*' || c == '@' || c == '.';
        assert_int_equal(act_order_mono_valid(s, sizeof(s)), want);
    }
    char longest[ACT_ORDER_MONO_BYTES_MAX + 1];
    memset(longest, '7', sizeof(longest));
    assert_true(act_order_mono_valid(longest, ACT_ORDER_MONO_BYTES_MAX));
    assert_false(act_order_mono_valid(longest, ACT_ORDER_MONO_BYTES_MAX + 1));
    assert_false(act_order_mono_valid(longest, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mono_alphabet_is_exact),
        cmocka_unit_test_setup_teardown(create_new_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(create_all_fields, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(create_is_idempotent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(create_conflict, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(create_invalid_args, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(create_garbage_args, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(create_mutated_args, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(get_and_close, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(get_and_close, fx_setup_cached, fx_teardown),
        cmocka_unit_test(order_id_index_resolves),
        cmocka_unit_test_setup_teardown(expiry_closes_waiting_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(expiry_closes_waiting_order, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(close_before_expiry_wins, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(expire_is_timer_only, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(batch_with_failing_command, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(batch_with_failing_command, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(failed_commit_is_eio, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(corrupt_state_is_reported, fx_setup, fx_teardown),
        cmocka_unit_test(codec_round_trip_and_checks),
        cmocka_unit_test(key_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
