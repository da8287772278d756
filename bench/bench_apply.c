/* bench_apply: how many commands per second the apply engine pushes through RocksDB on one
 * core. It builds order.create batches up front (the leader's work, not timed), then times
 * rt_engine_apply over them: decode, handler, write set, one RocksDB write batch per entry
 * (WAL buffered and not synced, as in a node). Prints figures; asserts nothing. Not a test.
 *
 *   bench_apply [--commands N] [--batch B] [--dir PATH] [--cache-mib M] [--keys sequential|random]
 *               [--follower]
 *
 * --keys: merchant order numbers in the order they are made ("bench-1", "bench-2", ...: each
 * memtable insert lands next to the last one, which RocksDB's skip list makes cheap), or
 * scattered as many clients' numbers arrive at a node (a full skip-list search per insert).
 * --follower: apply as a shard's follower does (no reply bodies; written states do not enter
 * the cache: rt_engine.h, replies_wanted), which is two of every three applies in a cluster.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_order.h"
#include "act_registry.h"
#include "rt_batch.h"
#include "rt_buf.h"
#include "rt_clock.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_mp.h"
#include "store_rocks.h"

#define BENCH_COMMANDS_MAX 10000000u

struct bench_options {
    unsigned commands;
    unsigned batch;
    const char *dir;
    unsigned cache_mib;
    bool random_keys;
    bool follower;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_apply [--commands N (1..%u)] [--batch B (1..%u)] "
            "[--dir PATH] [--cache-mib M] [--keys sequential|random] [--follower]\n",
            BENCH_COMMANDS_MAX, RT_BATCH_COMMANDS_MAX);
}

static int parse_args(int argc, char **argv, struct bench_options *o)
{
    o->commands = 200000;
    o->batch = 256;
    o->dir = NULL;
    o->cache_mib = 64;
    o->random_keys = false;
    o->follower = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--follower") == 0) {
            o->follower = true;
            continue;
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int rv = -1;
        if (strcmp(argv[i], "--commands") == 0 && value != NULL) {
            rv = rt_uint_parse(value, 1, BENCH_COMMANDS_MAX, &o->commands);
        } else if (strcmp(argv[i], "--batch") == 0 && value != NULL) {
            rv = rt_uint_parse(value, 1, RT_BATCH_COMMANDS_MAX, &o->batch);
        } else if (strcmp(argv[i], "--dir") == 0 && value != NULL) {
            o->dir = value;
            rv = 0;
        } else if (strcmp(argv[i], "--cache-mib") == 0 && value != NULL) {
            rv = rt_uint_parse(value, 0, 65536, &o->cache_mib);
        } else if (strcmp(argv[i], "--keys") == 0 && value != NULL) {
            o->random_keys = strcmp(value, "random") == 0;
            rv = o->random_keys || strcmp(value, "sequential") == 0 ? 0 : -1;
        }
        if (rv != 0) {
            usage();
            return -1;
        }
        i++;
    }
    return 0;
}

/* splitmix64's finaliser: a bijection on 64 bits, so scattered numbers stay unique. */
static uint64_t scatter(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Encode the create args of order number @n into @buf. */
static int encode_create(struct rt_buf *buf, const char *app, const char *mono)
{
    struct rt_mp_writer w;
    rt_buf_reset(buf);
    rt_mp_writer_init(&w, buf);
    rt_mp_write_map(&w, 6);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, app);
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, 1999);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "Benchmark order");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, "wechat");
    rt_mp_write_cstr(&w, "expire_s");
    rt_mp_write_uint(&w, 1800);
    return rt_mp_writer_error(&w);
}

int main(int argc, char **argv)
{
    struct bench_options o;
    if (parse_args(argc, argv, &o) != 0) {
        return 2;
    }
    char dir[256];
    if (o.dir != NULL) {
        snprintf(dir, sizeof(dir), "%s", o.dir);
    } else {
        snprintf(dir, sizeof(dir), "/tmp/payraft-bench-apply-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            return 2;
        }
    }
    struct store_rocks_options so;
    store_rocks_options_default(&so);
    so.create_if_missing = 1;
    struct store_rocks *db;
    if (store_rocks_open(dir, &so, &db) != 0) {
        fprintf(stderr, "bench_apply: cannot open %s\n", dir);
        return 2;
    }
    struct rt_registry registry;
    struct rt_cache cache;
    struct rt_engine engine;
    if (act_registry_init(&registry) != 0 ||
        rt_cache_init(&cache, (size_t)o.cache_mib << 20) != 0) {
        return 2;
    }
    /* One shard: every key lands in the engine under test. */
    struct rt_engine_config config = {0, 1, &registry, store_rocks_store(db), &cache};
    if (rt_engine_init(&engine, &config) != 0) {
        return 2;
    }
    engine.replies_wanted = !o.follower;

    /* Build every entry first; the timed loop only applies. */
    unsigned long entries = ((unsigned long)o.commands + o.batch - 1) / o.batch;
    uint8_t **data = calloc(entries, sizeof(*data));
    size_t *lens = calloc(entries, sizeof(*lens));
    struct rt_batch_builder builder;
    rt_batch_builder_init(&builder, RT_BATCH_BYTES_MAX);
    struct rt_buf args;
    rt_buf_init(&args, RT_COMMAND_ARGS_BYTES_MAX);
    uint64_t now_ms = 1700000000000ull;
    unsigned long made = 0;
    for (unsigned long e = 0; e < entries; e++) {
        rt_batch_builder_begin(&builder, now_ms + e);
        for (unsigned long i = 0; i < o.batch && made < o.commands; i++, made++) {
            char mono[32];
            uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
            if (o.random_keys) {
                snprintf(mono, sizeof(mono), "bench-%016" PRIx64, scatter(made));
            } else {
                snprintf(mono, sizeof(mono), "bench-%lu", made);
            }
            size_t key_len = act_order_key(key, "benchapp", 8, mono, strlen(mono));
            if (key_len == 0 || encode_create(&args, "benchapp", mono) != 0) {
                return 2;
            }
            struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                                     .actor_type = ACT_TYPE_ORDER,
                                     .op = ACT_ORDER_CREATE,
                                     .key = key,
                                     .key_len = (uint32_t)key_len,
                                     .args = args.data,
                                     .args_len = (uint32_t)args.len};
            if (rt_batch_builder_add(&builder, &cmd) != 0) {
                return 2;
            }
        }
        size_t len;
        const uint8_t *bytes = rt_batch_builder_finish(&builder, &len);
        data[e] = malloc(len);
        memcpy(data[e], bytes, len);
        lens[e] = len;
    }

    uint64_t failed = 0;
    double cpu0 = rt_process_cpu_seconds();
    uint64_t t0 = rt_monotonic_ms();
    for (unsigned long e = 0; e < entries; e++) {
        int rv = rt_engine_apply(&engine, rt_engine_applied_index(&engine) + 1, data[e], lens[e]);
        if (rv != 0) {
            fprintf(stderr, "bench_apply: apply failed: %s\n", rt_strerror(rv));
            return 1;
        }
        for (uint32_t i = 0; i < rt_engine_reply_count(&engine); i++) {
            failed += rt_engine_reply(&engine, i)->code != 0;
        }
    }
    uint64_t t1 = rt_monotonic_ms();
    double cpu = rt_process_cpu_seconds() - cpu0;
    double seconds = (double)(t1 - t0) / 1000.0;
    if (seconds <= 0) {
        seconds = 0.001;
    }
    printf("bench_apply: %u order.create commands in %lu entries of %u%s\n", o.commands, entries,
           o.batch, o.follower ? ", as a follower" : "");
    printf("  wall %.3f s, cpu %.3f s\n", seconds, cpu);
    printf("  %.0f commands/s, %.0f entries/s, %.1f us/command\n", (double)o.commands / seconds,
           (double)entries / seconds, seconds * 1e6 / (double)o.commands);
    printf("  failed commands: %llu, cache hits %llu misses %llu\n", (unsigned long long)failed,
           (unsigned long long)cache.hits, (unsigned long long)cache.misses);

    for (unsigned long e = 0; e < entries; e++) {
        free(data[e]);
    }
    free(data);
    free(lens);
    rt_buf_free(&args);
    rt_batch_builder_free(&builder);
    rt_engine_free(&engine);
    rt_cache_free(&cache);
    store_rocks_close(db);
    if (o.dir == NULL) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_apply: could not remove %s\n", dir);
        }
    }
    return failed == 0 ? 0 : 1;
}
