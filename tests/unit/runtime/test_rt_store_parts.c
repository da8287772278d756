/* Unit tests for the write set, the applied record, the LRU cache and the batch codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_batch.h"
#include "rt_cache.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"
#include "rt_store.h"

/* ---- write set ---- */

static void put_str(struct rt_writeset *ws, enum rt_cf cf, const char *k, const char *v)
{
    assert_int_equal(
        rt_writeset_put(ws, cf, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v)), 0);
}

static enum rt_lookup get_str(struct rt_writeset *ws, enum rt_cf cf, const char *k, char *out)
{
    const uint8_t *val = NULL;
    size_t len = 0;
    enum rt_lookup l = rt_writeset_lookup(ws, cf, (const uint8_t *)k, strlen(k), &val, &len);
    if (l == RT_LOOKUP_PUT) {
        memcpy(out, val, len);
        out[len] = '\0';
    }
    return l;
}

static void writeset_latest_write_wins(void **state)
{
    (void)state;
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 3, 7);
    char out[64];
    assert_int_equal(get_str(&ws, RT_CF_STATE, "a", out), RT_LOOKUP_ABSENT);
    put_str(&ws, RT_CF_STATE, "a", "1");
    put_str(&ws, RT_CF_INDEX, "a", "other-cf");
    put_str(&ws, RT_CF_STATE, "a", "2");
    assert_int_equal(get_str(&ws, RT_CF_STATE, "a", out), RT_LOOKUP_PUT);
    assert_string_equal(out, "2");
    assert_int_equal(get_str(&ws, RT_CF_INDEX, "a", out), RT_LOOKUP_PUT);
    assert_string_equal(out, "other-cf");
    assert_int_equal(rt_writeset_del(&ws, RT_CF_STATE, (const uint8_t *)"a", 1), 0);
    assert_int_equal(get_str(&ws, RT_CF_STATE, "a", out), RT_LOOKUP_DELETED);
    assert_int_equal(ws.count, 4);
    assert_int_equal(ws.shard, 3);
    assert_int_equal(ws.applied_index, 7);
    rt_writeset_reset(&ws, 3, 8);
    assert_int_equal(get_str(&ws, RT_CF_STATE, "a", out), RT_LOOKUP_ABSENT);
    rt_writeset_free(&ws);
}

static void writeset_rollback_restores_lookups(void **state)
{
    (void)state;
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 0, 1);
    char key[32], val[32], out[64];
    /* Enough keys to grow the table several times and create collision clusters. */
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "k%d", i % 700);
        snprintf(val, sizeof(val), "v%d", i);
        put_str(&ws, RT_CF_STATE, key, val);
    }
    uint32_t mark = rt_writeset_mark(&ws);
    size_t arena = ws.arena.len;
    for (int i = 0; i < 900; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "new%d", i);
        put_str(&ws, RT_CF_STATE, key, val);
        if (i % 3 == 0) {
            assert_int_equal(rt_writeset_del(&ws, RT_CF_STATE, (uint8_t *)key, strlen(key)), 0);
        }
    }
    rt_writeset_rollback(&ws, mark);
    assert_int_equal(ws.count, mark);
    assert_int_equal(ws.arena.len, arena);
    for (int i = 0; i < 900; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (i < 700) {
            /* The last write before the mark of key i%700 was at the largest j < 2000 with
             * j % 700 == i. */
            int last = i + 700 * ((1999 - i) / 700);
            snprintf(val, sizeof(val), "v%d", last);
            assert_int_equal(get_str(&ws, RT_CF_STATE, key, out), RT_LOOKUP_PUT);
            assert_string_equal(out, val);
        } else {
            assert_int_equal(get_str(&ws, RT_CF_STATE, key, out), RT_LOOKUP_ABSENT);
        }
    }
    rt_writeset_free(&ws);
}

static void writeset_rejects_oversized(void **state)
{
    (void)state;
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 0, 1);
    uint8_t *big = calloc(1, RT_STORED_VALUE_BYTES_MAX + 1);
    assert_non_null(big);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, (const uint8_t *)"k", 1, big,
                                     RT_STORED_VALUE_BYTES_MAX + 1),
                     RT_ETOOLARGE);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, big, RT_STORED_KEY_BYTES_MAX + 1, big, 1),
                     RT_ETOOLARGE);
    assert_int_equal(ws.count, 0);
    free(big);
    rt_writeset_free(&ws);
}

/* ---- cache ---- */

/* The applied record: 16 bytes now, 8 from older stores, nothing else. */
static void applied_record_forms(void **state)
{
    (void)state;
    uint8_t rec[RT_APPLIED_BYTES + 1] = {0};
    rt_applied_encode(rec, 0x0102030405060708ull, 0xa1a2a3a4a5a6a7a8ull);
    struct rt_applied a;
    assert_int_equal(rt_applied_decode(rec, RT_APPLIED_BYTES, &a), 0);
    assert_true(a.has_history);
    assert_int_equal(a.index, 0x0102030405060708ull);
    assert_int_equal(a.history_hash, 0xa1a2a3a4a5a6a7a8ull);
    assert_int_equal(rt_applied_decode(rec, RT_APPLIED_BYTES_LEGACY, &a), 0);
    assert_false(a.has_history);
    assert_int_equal(a.index, 0x0102030405060708ull);
    assert_int_equal(a.history_hash, 0);
    const size_t bad[] = {0, 1, 7, 9, 12, 15, 17};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rt_applied_decode(rec, bad[i], &a), RT_ECORRUPT);
        assert_int_equal(a.index, 0);
    }
}

static void cache_evicts_least_recently_used(void **state)
{
    (void)state;
    struct rt_cache cache;
    uint8_t val[100] = {0};
    /* Room for about three entries of 100 value bytes. */
    assert_int_equal(rt_cache_init(&cache, 3 * (100 + 2 + 64)), 0);
    assert_int_equal(rt_cache_put(&cache, (const uint8_t *)"k1", 2, val, sizeof(val)), 0);
    assert_int_equal(rt_cache_put(&cache, (const uint8_t *)"k2", 2, val, sizeof(val)), 0);
    assert_int_equal(rt_cache_put(&cache, (const uint8_t *)"k3", 2, val, sizeof(val)), 0);
    const uint8_t *v;
    size_t n;
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"k1", 2, &v, &n), 0); /* k1 fresh */
    assert_int_equal(n, sizeof(val));
    assert_int_equal(rt_cache_put(&cache, (const uint8_t *)"k4", 2, val, sizeof(val)), 0);
    assert_true(cache.bytes <= cache.bytes_max);
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"k2", 2, &v, &n), RT_ENOTFOUND);
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"k1", 2, &v, &n), 0);
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"k4", 2, &v, &n), 0);
    assert_true(cache.evictions >= 1);
    rt_cache_del(&cache, (const uint8_t *)"k4", 2);
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"k4", 2, &v, &n), RT_ENOTFOUND);
    rt_cache_free(&cache);
}

/* Refresh replaces a held key's value and leaves an absent key absent. */
static void cache_refresh_touches_only_held_keys(void **state)
{
    (void)state;
    struct rt_cache cache;
    assert_int_equal(rt_cache_init(&cache, 4096), 0);
    const uint8_t old_val[] = {1, 2, 3}, new_val[] = {9, 9};
    assert_int_equal(rt_cache_put(&cache, (const uint8_t *)"held", 4, old_val, 3), 0);
    assert_int_equal(rt_cache_refresh(&cache, (const uint8_t *)"held", 4, new_val, 2), 0);
    assert_int_equal(rt_cache_refresh(&cache, (const uint8_t *)"absent", 6, new_val, 2), 0);
    const uint8_t *v;
    size_t n;
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"held", 4, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(v, new_val, 2);
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"absent", 6, &v, &n), RT_ENOTFOUND);
    assert_int_equal(cache.entries, 1);
    rt_cache_free(&cache);
}

static void cache_stays_within_budget_under_churn(void **state)
{
    (void)state;
    struct rt_cache cache;
    size_t budget = 256 * 1024;
    assert_int_equal(rt_cache_init(&cache, budget), 0);
    uint8_t val[700];
    char key[32];
    for (int i = 0; i < 50000; i++) {
        memset(val, i & 0xff, sizeof(val));
        int n = snprintf(key, sizeof(key), "key-%d", i);
        size_t len = (size_t)(i % 7) * 100;
        assert_int_equal(rt_cache_put(&cache, (uint8_t *)key, (size_t)n, val, len), 0);
        assert_true(cache.bytes <= budget);
    }
    /* The newest entry is present with the right bytes. */
    const uint8_t *v;
    size_t n;
    int k = snprintf(key, sizeof(key), "key-%d", 49999);
    assert_int_equal(rt_cache_get(&cache, (uint8_t *)key, (size_t)k, &v, &n), 0);
    assert_int_equal(n, (49999 % 7) * 100);
    assert_int_equal(v[0], 49999 & 0xff);
    /* Too big for the whole budget: silently not cached. */
    uint8_t *huge = calloc(1, budget);
    assert_int_equal(rt_cache_put(&cache, (const uint8_t *)"huge", 4, huge, budget), 0);
    assert_int_equal(rt_cache_get(&cache, (const uint8_t *)"huge", 4, &v, &n), RT_ENOTFOUND);
    free(huge);
    rt_cache_clear(&cache);
    assert_int_equal(cache.bytes, 0);
    assert_int_equal(cache.entries, 0);
    rt_cache_free(&cache);
}

/* ---- batch codec ---- */

static struct rt_command make_command(const char *key, const char *args, uint8_t op)
{
    struct rt_command c = {
        .origin = RT_ORIGIN_CLIENT,
        .actor_type = 1,
        .op = op,
        .key = (const uint8_t *)key,
        .key_len = (uint32_t)strlen(key),
        .args = (const uint8_t *)args,
        .args_len = (uint32_t)strlen(args),
    };
    return c;
}

static void batch_round_trip(void **state)
{
    (void)state;
    struct rt_batch_builder b;
    rt_batch_builder_init(&b, RT_BATCH_BYTES_MAX);
    assert_int_equal(rt_batch_builder_begin(&b, 1700000000123ull), 0);
    struct rt_command c1 = make_command("app/1", "\x80", 0);
    struct rt_command c2 = make_command("app/2", "", 3);
    c2.origin = RT_ORIGIN_TIMER;
    c2.timer_due_ms = 1700000001000ull;
    c2.source_seq = 99;
    c2.args = NULL;
    struct rt_command c3 = make_command("k", "xyz", 1);
    c3.origin = RT_ORIGIN_MESSAGE;
    c3.source_shard = 17;
    c3.source_seq = UINT64_MAX;
    assert_int_equal(rt_batch_builder_add(&b, &c1), 0);
    assert_int_equal(rt_batch_builder_add(&b, &c2), 0);
    assert_int_equal(rt_batch_builder_add(&b, &c3), 0);
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(&b, &len);
    struct rt_command cmds[8];
    struct rt_batch batch;
    assert_int_equal(rt_batch_decode(data, len, &batch, cmds, 8), 0);
    assert_int_equal(batch.version, RT_BATCH_VERSION);
    assert_int_equal(batch.timestamp_ms, 1700000000123ull);
    assert_int_equal(batch.count, 3);
    assert_memory_equal(cmds[0].key, "app/1", 5);
    assert_int_equal(cmds[0].args_len, 1);
    assert_int_equal(cmds[1].origin, RT_ORIGIN_TIMER);
    assert_int_equal(cmds[1].op, 3);
    assert_int_equal(cmds[1].timer_due_ms, 1700000001000ull);
    assert_int_equal(cmds[1].source_seq, 99);
    assert_int_equal(cmds[1].args_len, 0);
    assert_int_equal(cmds[2].origin, RT_ORIGIN_MESSAGE);
    assert_int_equal(cmds[2].source_shard, 17);
    assert_true(cmds[2].source_seq == UINT64_MAX);
    /* Every proper prefix is rejected, and so is a trailing byte. */
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_not_equal(rt_batch_decode(data, cut, &batch, cmds, 8), 0);
        assert_int_equal(batch.count, 0);
    }
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, data, len);
    longer[len] = 0xc0;
    assert_int_equal(rt_batch_decode(longer, len + 1, &batch, cmds, 8), RT_EMALFORMED);
    /* The caller's array is too small. */
    assert_int_equal(rt_batch_decode(data, len, &batch, cmds, 2), RT_ETOOLARGE);
    free(longer);
    rt_batch_builder_free(&b);
}

static void batch_builder_limits(void **state)
{
    (void)state;
    struct rt_batch_builder b;
    rt_batch_builder_init(&b, 4096);
    assert_int_equal(rt_batch_builder_begin(&b, 1), 0);
    struct rt_command c = make_command("key", "", 0);
    c.key_len = 0;
    assert_int_equal(rt_batch_builder_add(&b, &c), RT_EINVAL);
    c.key_len = RT_ACTOR_KEY_BYTES_MAX + 1;
    assert_int_equal(rt_batch_builder_add(&b, &c), RT_ETOOLARGE);
    c = make_command("key", "", 0);
    c.actor_type = 0;
    assert_int_equal(rt_batch_builder_add(&b, &c), RT_EINVAL);
    c.actor_type = RT_ACTOR_TYPES_MAX;
    assert_int_equal(rt_batch_builder_add(&b, &c), RT_EINVAL);
    c = make_command("key", "", 0);
    c.origin = 7;
    assert_int_equal(rt_batch_builder_add(&b, &c), RT_EINVAL);
    /* Fill the 4 KiB batch: the add that does not fit fails and leaves the batch valid. */
    char args[200];
    memset(args, 'a', sizeof(args) - 1);
    args[sizeof(args) - 1] = '\0';
    c = make_command("key", args, 0);
    int added = 0;
    while (rt_batch_builder_add(&b, &c) == 0) {
        added++;
    }
    assert_true(added > 10 && added < 25);
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(&b, &len);
    assert_true(len <= 4096);
    struct rt_command cmds[32];
    struct rt_batch batch;
    assert_int_equal(rt_batch_decode(data, len, &batch, cmds, 32), 0);
    assert_int_equal(batch.count, (uint32_t)added);
    rt_batch_builder_free(&b);
}

/* Encode a batch by hand with a msgpack writer, to craft hostile variants. */
static size_t craft(uint8_t *out, size_t cap, uint64_t version, int fields, int cmd_fields,
                    uint64_t type, uint64_t key_len)
{
    struct rt_buf buf;
    rt_buf_init(&buf, cap);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_array(&w, (uint32_t)fields);
    rt_mp_write_uint(&w, version);
    rt_mp_write_uint(&w, 5);
    rt_mp_write_array(&w, 1);
    rt_mp_write_array(&w, (uint32_t)cmd_fields);
    rt_mp_write_uint(&w, 0);
    rt_mp_write_uint(&w, type);
    rt_mp_write_uint(&w, 0);
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX + 1] = {0};
    rt_mp_write_bin(&w, key, key_len);
    rt_mp_write_bin(&w, NULL, 0);
    for (int i = 5; i < cmd_fields; i++) {
        rt_mp_write_uint(&w, 0);
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
    size_t len = buf.len;
    memcpy(out, buf.data, len);
    rt_buf_free(&buf);
    return len;
}

static void batch_rejects_hostile_input(void **state)
{
    (void)state;
    uint8_t data[1024];
    struct rt_command cmds[4];
    struct rt_batch batch;
    size_t n = craft(data, sizeof(data), 1, 3, 8, 1, 3);
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), 0); /* The baseline is valid. */
    n = craft(data, sizeof(data), 2, 3, 8, 1, 3);
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), RT_EVERSION);
    n = craft(data, sizeof(data), 1, 4, 8, 1, 3);
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), RT_EMALFORMED);
    n = craft(data, sizeof(data), 1, 3, 7, 1, 3);
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), RT_EMALFORMED);
    n = craft(data, sizeof(data), 1, 3, 8, 300, 3); /* type does not fit a byte */
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), RT_EMALFORMED);
    n = craft(data, sizeof(data), 1, 3, 8, 1, 0); /* empty key */
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), RT_EMALFORMED);
    n = craft(data, sizeof(data), 1, 3, 8, 1, RT_ACTOR_KEY_BYTES_MAX + 1);
    assert_int_equal(rt_batch_decode(data, n, &batch, cmds, 4), RT_ETOOLARGE);
    /* A command count larger than the bytes could hold. */
    const uint8_t many[] = {0x93, 0x01, 0x05, 0xdd, 0x00, 0x00, 0x10, 0x00, 0x98};
    assert_int_equal(rt_batch_decode(many, sizeof(many), &batch, cmds, 4), RT_EMALFORMED);
    const uint8_t lie[] = {0x93, 0x01, 0x05, 0xdd, 0x00, 0x00, 0x00, 0x03, 0x98};
    assert_int_equal(rt_batch_decode(lie, sizeof(lie), &batch, cmds, 4), RT_EMALFORMED);
    /* Not an array at all; empty; garbage. */
    const uint8_t garbage[] = {0xc1, 0xff, 0x00};
    assert_int_equal(rt_batch_decode(garbage, sizeof(garbage), &batch, cmds, 4), RT_EMALFORMED);
    assert_int_equal(rt_batch_decode(garbage, 0, &batch, cmds, 4), RT_EMALFORMED);
    assert_int_equal(batch.count, 0);
    /* Oversized: rejected before looking at it. */
    assert_int_equal(rt_batch_decode(data, RT_BATCH_BYTES_MAX + 1, &batch, cmds, 4), RT_ETOOLARGE);
}

/* One command more than RT_BATCH_COMMANDS_MAX, each well-formed: rejected by the limit. */
static void batch_rejects_too_many_commands(void **state)
{
    (void)state;
    struct rt_buf buf;
    rt_buf_init(&buf, RT_BATCH_BYTES_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_array(&w, 3);
    rt_mp_write_uint(&w, RT_BATCH_VERSION);
    rt_mp_write_uint(&w, 5);
    rt_mp_write_array(&w, RT_BATCH_COMMANDS_MAX + 1);
    for (uint32_t i = 0; i < RT_BATCH_COMMANDS_MAX + 1; i++) {
        rt_mp_write_array(&w, 8);
        rt_mp_write_uint(&w, 0);
        rt_mp_write_uint(&w, 1);
        rt_mp_write_uint(&w, 0);
        rt_mp_write_bin(&w, (const uint8_t *)"k", 1);
        rt_mp_write_bin(&w, NULL, 0);
        rt_mp_write_uint(&w, 0);
        rt_mp_write_uint(&w, 0);
        rt_mp_write_uint(&w, 0);
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
    struct rt_command *cmds = calloc(RT_BATCH_COMMANDS_MAX + 1, sizeof(*cmds));
    struct rt_batch batch;
    assert_int_equal(rt_batch_decode(buf.data, buf.len, &batch, cmds, RT_BATCH_COMMANDS_MAX + 1),
                     RT_ETOOLARGE);
    assert_int_equal(batch.count, 0);
    free(cmds);
    rt_buf_free(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writeset_latest_write_wins),
        cmocka_unit_test(writeset_rollback_restores_lookups),
        cmocka_unit_test(writeset_rejects_oversized),
        cmocka_unit_test(applied_record_forms),
        cmocka_unit_test(cache_evicts_least_recently_used),
        cmocka_unit_test(cache_refresh_touches_only_held_keys),
        cmocka_unit_test(cache_stays_within_budget_under_churn),
        cmocka_unit_test(batch_round_trip),
        cmocka_unit_test(batch_builder_limits),
        cmocka_unit_test(batch_rejects_hostile_input),
        cmocka_unit_test(batch_rejects_too_many_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
