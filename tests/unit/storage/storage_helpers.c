#include "storage_helpers.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt_error.h"
#include "rt_key.h"
#include "test_support.h"

struct store_rocks *helper_open(const char *path, size_t write_buffer_bytes)
{
    struct store_rocks_options options;
    store_rocks_options_default(&options);
    options.create_if_missing = 1;
    if (write_buffer_bytes != 0) {
        options.write_buffer_bytes = write_buffer_bytes;
    }
    struct store_rocks *db = NULL;
    int rv = store_rocks_open(path, &options, &db);
    if (rv != 0) {
        fprintf(stderr, "helper_open %s: %s\n", path, rt_strerror(rv));
        abort();
    }
    return db;
}

uint64_t helper_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void helper_bytes(uint8_t *out, size_t len, uint64_t seed, int compressible)
{
    uint64_t x = helper_mix(seed);
    for (size_t i = 0; i < len; i++) {
        if (compressible && (i / 16) % 2 == 1) {
            out[i] = (uint8_t)('a' + i % 7);
            continue;
        }
        if (i % 8 == 0) {
            x = helper_mix(x);
        }
        out[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

void helper_put(struct rt_store *store, uint16_t shard, uint64_t index, enum rt_cf cf,
                const uint8_t *key, size_t key_len, const void *val, size_t val_len)
{
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, shard, index);
    int rv = rt_writeset_put(&ws, cf, key, key_len, val, val_len);
    assert(rv == 0);
    rv = store->ops->commit(store, &ws);
    assert(rv == 0);
    rt_writeset_free(&ws);
}

void helper_del(struct rt_store *store, uint16_t shard, uint64_t index, enum rt_cf cf,
                const uint8_t *key, size_t key_len)
{
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, shard, index);
    int rv = rt_writeset_del(&ws, cf, key, key_len);
    assert(rv == 0);
    rv = store->ops->commit(store, &ws);
    assert(rv == 0);
    rt_writeset_free(&ws);
}

/* One record of helper_fill_shard, number @n: its family, key and value size follow from n
 * so that the mix over families is fixed (about 60% state, the rest spread). */
static void fill_one(struct rt_writeset *ws, uint16_t shard, uint64_t seed, uint64_t n,
                     size_t *bytes)
{
    uint8_t key[RT_KEY_BYTES_MAX];
    uint8_t val[1024];
    char name[64];
    size_t key_len;
    size_t val_len;
    enum rt_cf cf;
    uint64_t r = helper_mix(seed * 1000003u + n);
    switch (n % 10) {
    case 0:
    case 1:
        cf = RT_CF_INDEX;
        snprintf(name, sizeof(name), "ix/%llu/%llu", (unsigned long long)(r % 100000),
                 (unsigned long long)n);
        key_len = rt_key_index(key, shard, (const uint8_t *)name, strlen(name));
        val_len = 8 + r % 24;
        break;
    case 2:
        cf = RT_CF_OUTBOX;
        key_len = rt_key_outbox(key, shard, rt_seq_make(n, (uint32_t)(seed & 0xff)));
        val_len = 200 + r % 600;
        break;
    case 3:
        cf = RT_CF_TIMERS;
        key_len = rt_key_timer(key, shard, r % 86400000u, n);
        val_len = 40 + r % 80;
        break;
    default:
        cf = RT_CF_STATE;
        /* The same keys for every seed (so fills of one shard with different seeds
         * overlap), values differ. */
        snprintf(name, sizeof(name), "app%llu/order%llu", (unsigned long long)(n % 7),
                 (unsigned long long)n);
        key_len =
            rt_key_state(key, shard, (uint8_t)(1 + n % 5), (const uint8_t *)name, strlen(name));
        val_len = 300 + r % 700;
        break;
    }
    assert(val_len <= sizeof(val));
    helper_bytes(val, val_len, r, 1);
    int rv = rt_writeset_put(ws, cf, key, key_len, val, val_len);
    assert(rv == 0);
    *bytes += key_len + val_len;
}

void helper_fill_shard(struct rt_store *store, uint16_t shard, uint64_t seed, size_t raw_bytes,
                       uint64_t last_index)
{
    assert(store != NULL);
    assert(last_index > 0);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    size_t bytes = 0;
    uint64_t n = 0;
    uint64_t index = last_index > 1000 ? last_index - 1000 : 1;
    while (bytes < raw_bytes) {
        rt_writeset_reset(&ws, shard, index < last_index ? index++ : last_index);
        for (int i = 0; i < 100 && bytes < raw_bytes; i++) {
            fill_one(&ws, shard, seed, n++, &bytes);
        }
        /* A few meta keys besides the applied index. */
        uint8_t key[RT_KEY_BYTES_MAX];
        size_t key_len = rt_key_meta_inbox(key, shard, (uint16_t)(n % 16));
        uint8_t val[8];
        rt_put_be64(val, n);
        int rv = rt_writeset_put(&ws, RT_CF_META, key, key_len, val, sizeof(val));
        assert(rv == 0);
        rv = store->ops->commit(store, &ws);
        assert(rv == 0);
    }
    /* End exactly at last_index whatever the number of commits. */
    rt_writeset_reset(&ws, shard, last_index);
    int rv = store->ops->commit(store, &ws);
    assert(rv == 0);
    rt_writeset_free(&ws);
}

int helper_same_shard(struct rt_store *a, struct rt_store *b, uint16_t shard)
{
    uint8_t da[32];
    uint8_t db[32];
    test_store_digest(a, shard, da);
    test_store_digest(b, shard, db);
    return memcmp(da, db, sizeof(da)) == 0;
}

uint64_t helper_applied(struct rt_store *store, uint16_t shard)
{
    struct rt_applied applied = {.index = ~0ull};
    int rv = store->ops->applied(store, shard, &applied);
    assert(rv == 0);
    (void)rv;
    return applied.index;
}

size_t helper_count_all(struct rt_store *store, uint16_t shard)
{
    size_t n = 0;
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        n += test_store_count(store, (enum rt_cf)cf, shard);
    }
    return n;
}

uint64_t helper_seed(const char *test)
{
    const char *env = getenv("PAYRAFT_TEST_SEED");
    uint64_t seed;
    if (env != NULL && env[0] != '\0') {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = helper_mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid());
    }
    fprintf(stderr, "%s: seed %llu (set PAYRAFT_TEST_SEED to repeat)\n", test,
            (unsigned long long)seed);
    return seed;
}
