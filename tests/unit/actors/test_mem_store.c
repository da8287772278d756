/* Unit tests for the in-memory rt_store the actor tests run on: it must behave like
 * store_rocks (atomic commit with the applied index, byte-ordered prefix scans). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mem_store.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_store.h"
#include "test_support.h"

static void put(struct rt_writeset *ws, enum rt_cf cf, const char *k, const char *v)
{
    assert_int_equal(
        rt_writeset_put(ws, cf, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v)), 0);
}

static void del(struct rt_writeset *ws, enum rt_cf cf, const char *k)
{
    assert_int_equal(rt_writeset_del(ws, cf, (const uint8_t *)k, strlen(k)), 0);
}

/* The value of @k as a C string in @out, or NULL if absent. */
static const char *get(struct rt_store *s, enum rt_cf cf, const char *k, char out[64])
{
    struct rt_buf buf;
    rt_buf_init(&buf, 63);
    int rv = s->ops->get(s, cf, (const uint8_t *)k, strlen(k), &buf);
    if (rv == RT_ENOTFOUND) {
        rt_buf_free(&buf);
        return NULL;
    }
    assert_int_equal(rv, 0);
    if (buf.len > 0) {
        memcpy(out, buf.data, buf.len);
    }
    out[buf.len] = '\0';
    rt_buf_free(&buf);
    return out;
}

struct scan_log {
    char text[512];
    int stop_after; /* Return 1 after this many keys; 0 = never. */
    int fail_after; /* Return RT_EIO after this many keys; 0 = never. */
    int seen;
};

static int scan_collect(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    struct scan_log *log = arg;
    size_t n = strlen(log->text);
    snprintf(log->text + n, sizeof(log->text) - n, "%.*s=%.*s,", (int)key_len, (const char *)key,
             (int)val_len, (const char *)val);
    log->seen++;
    if (log->fail_after > 0 && log->seen == log->fail_after) {
        return RT_EIO;
    }
    return log->stop_after > 0 && log->seen == log->stop_after ? 1 : 0;
}

static const char *scan(struct rt_store *s, enum rt_cf cf, const char *prefix, const char *start,
                        struct scan_log *log, int *rv)
{
    int r = s->ops->scan(s, cf, (const uint8_t *)prefix, strlen(prefix), (const uint8_t *)start,
                         start == NULL ? 0 : strlen(start), scan_collect, log);
    if (rv != NULL) {
        *rv = r;
    } else {
        assert_int_equal(r, 0);
    }
    return log->text;
}

static void put_get_delete_and_order(void **state)
{
    (void)state;
    struct mem_store *ms = mem_store_new();
    struct rt_store *s = mem_store_store(ms);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 0, 1);
    put(&ws, RT_CF_STATE, "b", "2");
    put(&ws, RT_CF_STATE, "a", "1");
    put(&ws, RT_CF_STATE, "ab", "x");
    put(&ws, RT_CF_STATE, "c", "3");
    put(&ws, RT_CF_INDEX, "a", "other cf");
    put(&ws, RT_CF_STATE, "ab", "12"); /* Later write to the same key wins. */
    put(&ws, RT_CF_STATE, "e", "");    /* Empty values are values. */
    assert_int_equal(s->ops->commit(s, &ws), 0);
    char out[64];
    assert_string_equal(get(s, RT_CF_STATE, "ab", out), "12");
    assert_string_equal(get(s, RT_CF_INDEX, "a", out), "other cf");
    assert_string_equal(get(s, RT_CF_STATE, "e", out), "");
    assert_null(get(s, RT_CF_STATE, "d", out));
    assert_null(get(s, RT_CF_OUTBOX, "a", out));
    struct scan_log log = {0};
    assert_string_equal(scan(s, RT_CF_STATE, "", NULL, &log, NULL), "a=1,ab=12,b=2,c=3,e=,");
    /* Delete, re-put, delete a missing key: all in one batch, applied in order. */
    rt_writeset_reset(&ws, 0, 2);
    del(&ws, RT_CF_STATE, "b");
    del(&ws, RT_CF_STATE, "zz");
    del(&ws, RT_CF_STATE, "c");
    put(&ws, RT_CF_STATE, "c", "33");
    put(&ws, RT_CF_STATE, "a", "gone");
    del(&ws, RT_CF_STATE, "a");
    assert_int_equal(s->ops->commit(s, &ws), 0);
    memset(&log, 0, sizeof(log));
    assert_string_equal(scan(s, RT_CF_STATE, "", NULL, &log, NULL), "ab=12,c=33,e=,");
    struct rt_applied applied;
    assert_int_equal(s->ops->applied(s, 0, &applied), 0);
    assert_int_equal(applied.index, 2);
    /* Appending: get adds to what @out holds. */
    struct rt_buf buf;
    rt_buf_init(&buf, 64);
    assert_int_equal(rt_buf_append(&buf, "pre:", 4), 0);
    assert_int_equal(s->ops->get(s, RT_CF_STATE, (const uint8_t *)"c", 1, &buf), 0);
    assert_int_equal(buf.len, 6);
    assert_memory_equal(buf.data, "pre:33", 6);
    rt_buf_free(&buf);
    rt_writeset_free(&ws);
    mem_store_free(ms);
}

static void scan_prefix_start_and_stop(void **state)
{
    (void)state;
    struct mem_store *ms = mem_store_new();
    struct rt_store *s = mem_store_store(ms);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 0, 1);
    const char *keys[] = {"p", "pa", "pb", "pc", "q", "o", "pz", "p\xff"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        put(&ws, RT_CF_TIMERS, keys[i], "v");
    }
    assert_int_equal(s->ops->commit(s, &ws), 0);
    struct scan_log log = {0};
    assert_string_equal(scan(s, RT_CF_TIMERS, "p", NULL, &log, NULL),
                        "p=v,pa=v,pb=v,pc=v,pz=v,p\xff=v,");
    memset(&log, 0, sizeof(log));
    assert_string_equal(scan(s, RT_CF_TIMERS, "p", "pb", &log, NULL), "pb=v,pc=v,pz=v,p\xff=v,");
    memset(&log, 0, sizeof(log));
    assert_string_equal(scan(s, RT_CF_TIMERS, "p", "pbb", &log, NULL), "pc=v,pz=v,p\xff=v,");
    /* A start below the prefix begins at the prefix; one above it visits nothing. */
    memset(&log, 0, sizeof(log));
    assert_string_equal(scan(s, RT_CF_TIMERS, "p", "a", &log, NULL),
                        "p=v,pa=v,pb=v,pc=v,pz=v,p\xff=v,");
    memset(&log, 0, sizeof(log));
    assert_string_equal(scan(s, RT_CF_TIMERS, "p", "q", &log, NULL), "");
    memset(&log, 0, sizeof(log));
    assert_string_equal(scan(s, RT_CF_TIMERS, "x", NULL, &log, NULL), "");
    /* Callback 1 stops without error; a negative code stops with it. */
    memset(&log, 0, sizeof(log));
    log.stop_after = 2;
    assert_string_equal(scan(s, RT_CF_TIMERS, "p", NULL, &log, NULL), "p=v,pa=v,");
    memset(&log, 0, sizeof(log));
    log.fail_after = 3;
    int rv = 0;
    scan(s, RT_CF_TIMERS, "", NULL, &log, &rv);
    assert_int_equal(rv, RT_EIO);
    assert_string_equal(log.text, "o=v,p=v,pa=v,");
    rt_writeset_free(&ws);
    mem_store_free(ms);
}

static void failed_commit_changes_nothing(void **state)
{
    (void)state;
    struct mem_store *ms = mem_store_new();
    struct rt_store *s = mem_store_store(ms);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = rt_key_meta(key, 7, "x");
    rt_writeset_reset(&ws, 7, 10);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_META, key, key_len, (const uint8_t *)"1", 1), 0);
    assert_int_equal(s->ops->commit(s, &ws), 0);
    uint8_t before[32], after[32];
    test_store_digest(s, 7, before);
    mem_store_fail_commits(ms, 2);
    rt_writeset_reset(&ws, 7, 11);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_META, key, key_len, (const uint8_t *)"2", 1), 0);
    assert_int_equal(rt_writeset_del(&ws, RT_CF_META, key, key_len), 0);
    assert_int_equal(s->ops->commit(s, &ws), RT_EIO);
    assert_int_equal(s->ops->commit(s, &ws), RT_EIO);
    test_store_digest(s, 7, after);
    assert_memory_equal(before, after, 32);
    struct rt_applied applied;
    assert_int_equal(s->ops->applied(s, 7, &applied), 0);
    assert_int_equal(applied.index, 10);
    /* Armed for two: the third goes through. */
    assert_int_equal(s->ops->commit(s, &ws), 0);
    assert_int_equal(s->ops->applied(s, 7, &applied), 0);
    assert_int_equal(applied.index, 11);
    assert_int_equal(test_store_count(s, RT_CF_META, 7), 1); /* Only "applied" is left. */
    /* Other shards are untouched and have applied nothing. */
    assert_int_equal(s->ops->applied(s, 6, &applied), 0);
    assert_int_equal(applied.index, 0);
    assert_int_equal(test_store_count(s, RT_CF_META, 8), 0);
    /* Disarming works too. */
    mem_store_fail_commits(ms, 5);
    mem_store_fail_commits(ms, 0);
    rt_writeset_reset(&ws, 7, 12);
    assert_int_equal(s->ops->commit(s, &ws), 0);
    rt_writeset_free(&ws);
    mem_store_free(ms);
}

struct order_check {
    uint8_t prev[RT_KEY_BYTES_MAX];
    size_t prev_len;
    size_t count;
};

/* Keys must arrive strictly increasing, and each value here equals its key. */
static int check_increasing(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                            size_t val_len)
{
    struct order_check *c = arg;
    assert_int_equal(key_len, 18);
    assert_int_equal(val_len, key_len);
    assert_memory_equal(key, val, key_len);
    if (c->count > 0) {
        assert_true(memcmp(c->prev, key, key_len) < 0);
    }
    memcpy(c->prev, key, key_len);
    c->prev_len = key_len;
    c->count++;
    return 0;
}

static void many_keys_stay_sorted(void **state)
{
    (void)state;
    struct mem_store *ms = mem_store_new();
    struct rt_store *s = mem_store_store(ms);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    /* Keys inserted in a scrambled order across several commits. */
    for (uint64_t round = 0; round < 4; round++) {
        rt_writeset_reset(&ws, 1, round + 1);
        for (uint32_t i = 0; i < 500; i++) {
            uint32_t k = (i * 7919u + (uint32_t)round * 131u) % 2000u;
            uint8_t key[RT_KEY_BYTES_MAX];
            size_t n = rt_key_timer(key, 1, k, 0);
            assert_int_equal(rt_writeset_put(&ws, RT_CF_TIMERS, key, n, key, n), 0);
        }
        assert_int_equal(s->ops->commit(s, &ws), 0);
    }
    size_t count = test_store_count(s, RT_CF_TIMERS, 1);
    assert_true(count > 500 && count <= 2000);
    struct order_check check = {0};
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, 1);
    assert_int_equal(
        s->ops->scan(s, RT_CF_TIMERS, prefix, sizeof(prefix), NULL, 0, check_increasing, &check),
        0);
    assert_int_equal(check.count, count);
    rt_writeset_free(&ws);
    mem_store_free(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_delete_and_order),
        cmocka_unit_test(scan_prefix_start_and_stop),
        cmocka_unit_test(failed_commit_changes_nothing),
        cmocka_unit_test(many_keys_stay_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
