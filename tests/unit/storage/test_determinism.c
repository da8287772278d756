/* Determinism: the same raft entries applied on three independent RocksDB stores (as three
 * replicas would) leave byte-identical shards, including after a reopen. The entries mix
 * order creates (new, repeated, conflicting, invalid), closes, and expiry timers collected by
 * a "leader" replica, across several shards. */
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
#include "rt_clock.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_mp.h"
#include "store_rocks.h"
#include "test_support.h"

#define REPLICAS 3
#define SHARDS   4
#define ENTRIES  300
#define T0       1700000000000ull

struct replica {
    char *dir;
    struct store_rocks *db;
    struct rt_cache cache;
    struct rt_engine engine[SHARDS];
};

static struct rt_registry registry;

static void replica_open(struct replica *r, int create)
{
    struct store_rocks_options o;
    store_rocks_options_default(&o);
    o.create_if_missing = create;
    assert_int_equal(store_rocks_open(r->dir, &o, &r->db), 0);
    assert_int_equal(rt_cache_init(&r->cache, 1 << 20), 0);
    for (uint16_t s = 0; s < SHARDS; s++) {
        struct rt_engine_config c = {s, SHARDS, &registry, store_rocks_store(r->db), &r->cache};
        assert_int_equal(rt_engine_init(&r->engine[s], &c), 0);
    }
}

static void replica_close(struct replica *r)
{
    for (int s = 0; s < SHARDS; s++) {
        rt_engine_free(&r->engine[s]);
    }
    rt_cache_free(&r->cache);
    store_rocks_close(r->db);
    r->db = NULL;
}

static size_t create_args(struct rt_buf *buf, const char *mono, uint64_t amount, int invalid)
{
    rt_buf_reset(buf);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    rt_mp_write_map(&w, 6);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "shop");
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, amount);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "Coffee");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, invalid ? "paypal" : "alipay");
    rt_mp_write_cstr(&w, "expire_s");
    rt_mp_write_uint(&w, 60 + amount % 120);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    return buf->len;
}

static size_t app_args(struct rt_buf *buf)
{
    rt_buf_reset(buf);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    rt_mp_write_map(&w, 1);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "shop");
    return buf->len;
}

/* The last replica applies as a follower does (rt_engine.h, replies_wanted): its handlers may
 * leave reply bodies empty, and its store must come out the same. */
#define FOLLOWER (REPLICAS - 1)

/* Apply @data as the next entry of @shard on every replica; all must agree on every reply's
 * code, and those that want replies on every body. */
static void apply_everywhere(struct replica *reps, uint16_t shard, const uint8_t *data, size_t len,
                             size_t *bodies_skipped)
{
    uint64_t index = rt_engine_applied_index(&reps[0].engine[shard]) + 1;
    for (int i = 0; i < REPLICAS; i++) {
        reps[i].engine[shard].replies_wanted = i != FOLLOWER;
        assert_int_equal(rt_engine_apply(&reps[i].engine[shard], index, data, len), 0);
    }
    uint32_t n = rt_engine_reply_count(&reps[0].engine[shard]);
    for (int i = 1; i < REPLICAS; i++) {
        assert_int_equal(rt_engine_reply_count(&reps[i].engine[shard]), n);
        for (uint32_t k = 0; k < n; k++) {
            const struct rt_reply *a = rt_engine_reply(&reps[0].engine[shard], k);
            const struct rt_reply *b = rt_engine_reply(&reps[i].engine[shard], k);
            assert_int_equal(a->code, b->code);
            if (i == FOLLOWER) {
                *bodies_skipped += a->body_len > 0 && b->body_len == 0;
                continue;
            }
            assert_int_equal(a->body_len, b->body_len);
            assert_memory_equal(a->body, b->body, a->body_len);
        }
    }
}

static void assert_replicas_equal(struct replica *reps)
{
    for (uint16_t s = 0; s < SHARDS; s++) {
        uint8_t first[32], other[32];
        test_store_digest(store_rocks_store(reps[0].db), s, first);
        for (int i = 1; i < REPLICAS; i++) {
            test_store_digest(store_rocks_store(reps[i].db), s, other);
            assert_memory_equal(first, other, 32);
        }
    }
}

static void same_entries_same_bytes(void **state)
{
    (void)state;
    assert_int_equal(act_registry_init(&registry), 0);
    struct replica reps[REPLICAS];
    memset(reps, 0, sizeof(reps));
    for (int i = 0; i < REPLICAS; i++) {
        reps[i].dir = test_tmpdir("determinism");
        replica_open(&reps[i], 1);
    }
    struct rt_prng prng;
    rt_prng_seed(&prng, 20261126);
    struct rt_batch_builder b;
    rt_batch_builder_init(&b, RT_BATCH_BYTES_MAX);
    struct rt_buf args;
    rt_buf_init(&args, RT_COMMAND_ARGS_BYTES_MAX);
    uint64_t now = T0;
    size_t timers_fired = 0, bodies_skipped = 0;
    for (int e = 0; e < ENTRIES; e++) {
        now += rt_prng_below(&prng, 2000);
        uint16_t shard = (uint16_t)rt_prng_below(&prng, SHARDS);
        assert_int_equal(rt_batch_builder_begin(&b, now), 0);
        if (e % 10 == 9) {
            /* The "leader" (replica 0) collects due timers for the shard. */
            uint32_t added;
            assert_int_equal(
                rt_engine_collect_due_timers(&reps[0].engine[shard], now, &b, 64, &added), 0);
            timers_fired += added;
        }
        int n = 1 + (int)rt_prng_below(&prng, 16);
        for (int i = 0; i < n; i++) {
            char mono[32];
            uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
            /* Draw order numbers until one lands in this shard. */
            size_t key_len;
            do {
                snprintf(mono, sizeof(mono), "o%llu",
                         (unsigned long long)rt_prng_below(&prng, 400));
                key_len = act_order_key(key, "shop", 4, mono, strlen(mono));
            } while (rt_shard_of(key, key_len, SHARDS) != shard);
            struct rt_command c = {.origin = RT_ORIGIN_CLIENT,
                                   .actor_type = ACT_TYPE_ORDER,
                                   .key = key,
                                   .key_len = (uint32_t)key_len};
            uint64_t roll = rt_prng_below(&prng, 10);
            if (roll < 6) {
                c.op = ACT_ORDER_CREATE;
                c.args_len =
                    (uint32_t)create_args(&args, mono, 100 + rt_prng_below(&prng, 3), roll == 0);
            } else {
                c.op = ACT_ORDER_CLOSE;
                c.args_len = (uint32_t)app_args(&args);
            }
            c.args = args.data;
            assert_int_equal(rt_batch_builder_add(&b, &c), 0);
        }
        size_t len;
        const uint8_t *data = rt_batch_builder_finish(&b, &len);
        apply_everywhere(reps, shard, data, len, &bodies_skipped);
    }
    assert_true(timers_fired > 0);
    assert_true(bodies_skipped > 0); /* The follower did skip order bodies, */
    assert_replicas_equal(reps);     /* and wrote the same bytes. */
    /* Reopen every replica (clean close flushes): still identical, nothing lost. */
    uint8_t before[32], after[32];
    test_store_digest(store_rocks_store(reps[0].db), 0, before);
    for (int i = 0; i < REPLICAS; i++) {
        replica_close(&reps[i]);
        replica_open(&reps[i], 0);
    }
    test_store_digest(store_rocks_store(reps[0].db), 0, after);
    assert_memory_equal(before, after, 32);
    assert_replicas_equal(reps);
    for (int i = 0; i < REPLICAS; i++) {
        replica_close(&reps[i]);
        test_rmdir(reps[i].dir);
    }
    rt_buf_free(&args);
    rt_batch_builder_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_entries_same_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
