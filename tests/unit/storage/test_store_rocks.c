/* test_store_rocks: store_rocks.h's contract against a real RocksDB in a temp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_log.h"
#include "storage_helpers.h"
#include "store_rocks.h"
#include "test_support.h"

/* ---- Helpers ---- */

struct fixture {
    char *dir;
    struct store_rocks *db;
    struct rt_store *store;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_tmpdir("store-rocks");
    f->db = helper_open(f->dir, 0);
    f->store = store_rocks_store(f->db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_rocks_close(f->db);
    test_rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(struct fixture *f)
{
    store_rocks_close(f->db);
    f->db = helper_open(f->dir, 0);
    f->store = store_rocks_store(f->db);
}

/* Expect (cf, key) to hold exactly @val. */
static void expect_stored(struct rt_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len,
                          const void *val, size_t val_len)
{
    struct rt_buf buf;
    rt_buf_init(&buf, 1u << 20);
    assert_int_equal(store->ops->get(store, cf, key, key_len, &buf), 0);
    assert_int_equal(buf.len, val_len);
    if (val_len > 0) {
        assert_memory_equal(buf.data, val, val_len);
    }
    rt_buf_free(&buf);
}

static void expect_absent(struct rt_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len)
{
    struct rt_buf buf;
    rt_buf_init(&buf, 64);
    assert_int_equal(store->ops->get(store, cf, key, key_len, &buf), RT_ENOTFOUND);
    assert_int_equal(buf.len, 0);
    rt_buf_free(&buf);
}

/* A key of @shard with a free-form tail. */
static size_t make_key(uint8_t *out, uint16_t shard, const char *tail)
{
    rt_put_be16(out, shard);
    size_t n = strlen(tail);
    memcpy(out + 2, tail, n);
    return 2 + n;
}

/* Scans collect keys (tails after the 2-byte shard) as a comma-separated string. */
struct collect {
    char text[4096];
    size_t count;
    size_t stop_after; /* Return 1 once this many keys are seen (0 = never). */
    int fail_with;     /* Return this on the first key when nonzero. */
};

static int collect_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                         size_t val_len)
{
    struct collect *c = arg;
    (void)val;
    (void)val_len;
    if (c->fail_with != 0) {
        return c->fail_with;
    }
    size_t used = strlen(c->text);
    char hex[8];
    snprintf(hex, sizeof(hex), "%02x%02x:", key[0], key[1]);
    strncat(c->text, used > 0 ? "," : "", sizeof(c->text) - used - 1);
    strncat(c->text, hex, sizeof(c->text) - strlen(c->text) - 1);
    size_t tail = key_len - 2;
    size_t room = sizeof(c->text) - strlen(c->text) - 1;
    strncat(c->text, (const char *)key + 2, tail < room ? tail : room);
    c->count++;
    return c->stop_after != 0 && c->count >= c->stop_after ? 1 : 0;
}

static int scan_collect(struct rt_store *store, enum rt_cf cf, const uint8_t *prefix,
                        size_t prefix_len, const uint8_t *start, size_t start_len,
                        struct collect *c)
{
    c->text[0] = '\0';
    c->count = 0;
    return store->ops->scan(store, cf, prefix, prefix_len, start, start_len, collect_visit, c);
}

/* Spawn store_child in "hold" mode on @dir; returns once it holds the database. */
static pid_t spawn_holder(const char *dir)
{
    const char *argv[] = {STORE_CHILD_PATH, "hold", dir, TEST_SPAWN_FD, NULL};
    int fd;
    pid_t pid = test_spawn(STORE_CHILD_PATH, argv, &fd);
    char c = 0;
    assert_int_equal(read(fd, &c, 1), 1);
    assert_int_equal(c, '!');
    close(fd);
    return pid;
}

/* Run store_rocks_open on @path with logging captured; expect RT_EIO and an ERROR line. */
static void expect_open_refused(const char *path, int create_if_missing)
{
    test_log_collect();
    struct store_rocks_options options;
    store_rocks_options_default(&options);
    options.create_if_missing = create_if_missing;
    struct store_rocks *db = (struct store_rocks *)&options; /* Must be reset to NULL. */
    int rv = store_rocks_open(path, &options, &db);
    char *logged = test_log_collected();
    assert_int_equal(rv, RT_EIO);
    assert_null(db);
    assert_non_null(strstr(logged, "ERROR"));
    fprintf(stderr, "  refused as expected: %s", logged);
    free(logged);
}

/* ---- Tests ---- */

static void test_open_create(void **state)
{
    (void)state;
    char *dir = test_tmpdir("store-open");
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/db", dir);
    /* Nothing there and no permission to create: refused. */
    expect_open_refused(sub, 0);
    /* Created when allowed, and an empty directory counts as nothing. */
    struct store_rocks *db = helper_open(sub, 0);
    assert_int_equal(helper_applied(store_rocks_store(db), 3), 0);
    store_rocks_close(db);
    char *empty = test_tmpdir("store-empty");
    db = helper_open(empty, 0);
    store_rocks_close(db);
    test_rmdir(empty);
    /* Existing databases open with create_if_missing off. */
    struct store_rocks_options options;
    store_rocks_options_default(&options);
    options.create_if_missing = 0;
    assert_int_equal(store_rocks_open(sub, &options, &db), 0);
    store_rocks_close(db);
    store_rocks_close(NULL); /* A no-op. */
    test_rmdir(dir);
}

static void test_put_get_delete_every_cf(void **state)
{
    struct fixture *f = *state;
    uint64_t index = 1;
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        uint8_t key[64];
        size_t key_len = make_key(key, 5, rt_cf_name((enum rt_cf)cf));
        char val[64];
        snprintf(val, sizeof(val), "value of %s", rt_cf_name((enum rt_cf)cf));
        expect_absent(f->store, (enum rt_cf)cf, key, key_len);
        helper_put(f->store, 5, index++, (enum rt_cf)cf, key, key_len, val, strlen(val));
        expect_stored(f->store, (enum rt_cf)cf, key, key_len, val, strlen(val));
    }
    /* Families are separate key spaces: the state key is not in index. */
    uint8_t key[64];
    size_t key_len = make_key(key, 5, "state");
    expect_absent(f->store, RT_CF_INDEX, key, key_len);
    /* Empty values are values. */
    helper_put(f->store, 5, index++, RT_CF_INDEX, key, key_len, "", 0);
    expect_stored(f->store, RT_CF_INDEX, key, key_len, "", 0);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        key_len = make_key(key, 5, rt_cf_name((enum rt_cf)cf));
        helper_del(f->store, 5, index++, (enum rt_cf)cf, key, key_len);
        expect_absent(f->store, (enum rt_cf)cf, key, key_len);
    }
    struct store_rocks_stats stats;
    store_rocks_stats(f->db, &stats);
    assert_int_equal(stats.commits, index - 1);
    assert_true(stats.commit_bytes > 0);
    assert_true(stats.gets >= 2 * RT_CF_COUNT);
    /* RocksDB's memory accounting: the memtables hold what was written (no flush yet), and a
     * second call adds to what the first gave (a node sums its databases). */
    struct store_rocks_memory memory = {0};
    store_rocks_memory(f->db, &memory);
    assert_true(memory.memtables > 0);
    struct store_rocks_memory twice = memory;
    store_rocks_memory(f->db, &twice);
    assert_int_equal(twice.memtables, 2 * memory.memtables);
    assert_int_equal(twice.block_cache, 2 * memory.block_cache);
}

static void test_get_appends(void **state)
{
    struct fixture *f = *state;
    uint8_t key[64];
    size_t key_len = make_key(key, 1, "k");
    helper_put(f->store, 1, 1, RT_CF_STATE, key, key_len, "hello", 5);
    struct rt_buf buf;
    rt_buf_init(&buf, 8);
    assert_int_equal(rt_buf_append(&buf, "ab", 2), 0);
    assert_int_equal(f->store->ops->get(f->store, RT_CF_STATE, key, key_len, &buf), 0);
    assert_int_equal(buf.len, 7);
    assert_memory_equal(buf.data, "abhello", 7);
    /* Past the buffer's limit: the buffer's error, and the buffer as it was. */
    assert_int_equal(f->store->ops->get(f->store, RT_CF_STATE, key, key_len, &buf), RT_ETOOLARGE);
    assert_int_equal(buf.len, 7);
    rt_buf_free(&buf);
}

/* What get_many reported, key by key. */
struct many_result {
    int calls[4];
    char val[4][16];
    size_t val_len[4];
    bool found[4];
};

static void many_cb(void *arg, uint32_t i, const uint8_t *val, size_t val_len)
{
    struct many_result *r = arg;
    assert_true(i < 4 && val_len < sizeof(r->val[0]));
    r->calls[i]++;
    r->found[i] = val != NULL;
    if (val != NULL) {
        memcpy(r->val[i], val, val_len);
        r->val_len[i] = val_len;
    }
}

static void test_get_many(void **state)
{
    struct fixture *f = *state;
    uint8_t k1[64], k2[64], absent[64];
    size_t k1_len = make_key(k1, 3, "one");
    size_t k2_len = make_key(k2, 3, "empty");
    size_t absent_len = make_key(absent, 3, "none");
    helper_put(f->store, 3, 1, RT_CF_STATE, k1, k1_len, "hello", 5);
    helper_put(f->store, 3, 2, RT_CF_STATE, k2, k2_len, "", 0);
    /* Unsorted, with a duplicate: the order of the callbacks' @i is the caller's. */
    const uint8_t *keys[4] = {k2, absent, k1, k1};
    size_t lens[4] = {k2_len, absent_len, k1_len, k1_len};
    struct many_result r = {0};
    assert_int_equal(f->store->ops->get_many(f->store, RT_CF_STATE, 4, keys, lens, many_cb, &r), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r.calls[i], 1);
    }
    assert_true(r.found[0]);
    assert_int_equal(r.val_len[0], 0); /* An empty value is a value. */
    assert_false(r.found[1]);
    assert_true(r.found[2] && r.found[3]);
    assert_int_equal(r.val_len[2], 5);
    assert_memory_equal(r.val[2], "hello", 5);
    assert_memory_equal(r.val[3], "hello", 5);
    /* Families are separate key spaces. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(
        f->store->ops->get_many(f->store, RT_CF_INDEX, 1, keys + 2, lens + 2, many_cb, &r), 0);
    assert_int_equal(r.calls[0], 1);
    assert_false(r.found[0]);
    /* Counts out of range. */
    assert_int_equal(f->store->ops->get_many(f->store, RT_CF_STATE, 0, keys, lens, many_cb, &r), 0);
    assert_int_equal(f->store->ops->get_many(f->store, RT_CF_STATE, RT_BATCH_COMMANDS_MAX + 1, keys,
                                             lens, many_cb, &r),
                     RT_EINVAL);
    assert_int_equal(r.calls[0], 1);
}

static void test_commit_order_and_applied_index(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(helper_applied(f->store, 2), 0);
    uint8_t a[64];
    uint8_t b[64];
    uint8_t c[64];
    size_t a_len = make_key(a, 2, "a");
    size_t b_len = make_key(b, 2, "b");
    size_t c_len = make_key(c, 2, "c");
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 2, 7);
    ws.history_hash = 0xa1a2a3a4a5a6a7a8ull;
    /* Writes apply in order: the last write of a key wins. */
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, a, a_len, (const uint8_t *)"1", 1), 0);
    assert_int_equal(rt_writeset_del(&ws, RT_CF_STATE, a, a_len), 0);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, a, a_len, (const uint8_t *)"3", 1), 0);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, b, b_len, (const uint8_t *)"1", 1), 0);
    assert_int_equal(rt_writeset_del(&ws, RT_CF_STATE, b, b_len), 0);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_OUTBOX, c, c_len, (const uint8_t *)"x", 1), 0);
    assert_int_equal(f->store->ops->commit(f->store, &ws), 0);
    expect_stored(f->store, RT_CF_STATE, a, a_len, "3", 1);
    expect_absent(f->store, RT_CF_STATE, b, b_len);
    expect_stored(f->store, RT_CF_OUTBOX, c, c_len, "x", 1);
    assert_int_equal(helper_applied(f->store, 2), 7);
    assert_int_equal(helper_applied(f->store, 3), 0); /* Per shard. */

    /* The applied record is the meta "applied" key, index and history hash big-endian, in the
     * same batch. */
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = rt_key_meta(key, 2, "applied");
    uint8_t be[16];
    rt_put_be64(be, 7);
    rt_put_be64(be + 8, 0xa1a2a3a4a5a6a7a8ull);
    expect_stored(f->store, RT_CF_META, key, key_len, be, 16);
    struct rt_applied applied;
    assert_int_equal(f->store->ops->applied(f->store, 2, &applied), 0);
    assert_true(applied.has_history);
    assert_int_equal(applied.history_hash, 0xa1a2a3a4a5a6a7a8ull);

    /* An entry with no writes still moves the applied index. */
    rt_writeset_reset(&ws, 2, 8);
    assert_int_equal(f->store->ops->commit(f->store, &ws), 0);
    assert_int_equal(helper_applied(f->store, 2), 8);
    expect_stored(f->store, RT_CF_STATE, a, a_len, "3", 1);

    /* A rolled-back write never reaches the store. */
    rt_writeset_reset(&ws, 2, 9);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, c, c_len, (const uint8_t *)"y", 1), 0);
    uint32_t mark = rt_writeset_mark(&ws);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, a, a_len, (const uint8_t *)"9", 1), 0);
    rt_writeset_rollback(&ws, mark);
    assert_int_equal(f->store->ops->commit(f->store, &ws), 0);
    expect_stored(f->store, RT_CF_STATE, a, a_len, "3", 1);
    expect_stored(f->store, RT_CF_STATE, c, c_len, "y", 1);

    /* A key of another shard is refused and the whole entry is written nowhere. */
    uint8_t foreign[64];
    size_t foreign_len = make_key(foreign, 4, "x");
    rt_writeset_reset(&ws, 2, 10);
    assert_int_equal(rt_writeset_put(&ws, RT_CF_STATE, c, c_len, (const uint8_t *)"z", 1), 0);
    assert_int_equal(
        rt_writeset_put(&ws, RT_CF_STATE, foreign, foreign_len, (const uint8_t *)"z", 1), 0);
    assert_int_equal(f->store->ops->commit(f->store, &ws), RT_EINTERNAL);
    expect_stored(f->store, RT_CF_STATE, c, c_len, "y", 1);
    expect_absent(f->store, RT_CF_STATE, foreign, foreign_len);
    assert_int_equal(helper_applied(f->store, 2), 9);
    rt_writeset_free(&ws);
}

static void test_large_entry(void **state)
{
    struct fixture *f = *state;
    /* An entry of several MiB (the commit batch is then replaced, not kept), then a small
     * one through the same store. */
    uint8_t *val = malloc(RT_STORED_VALUE_BYTES_MAX);
    assert_non_null(val);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 8, 1);
    for (int i = 0; i < 6; i++) {
        uint8_t key[64];
        char tail[8];
        snprintf(tail, sizeof(tail), "big%d", i);
        size_t key_len = make_key(key, 8, tail);
        memset(val, 'a' + i, RT_STORED_VALUE_BYTES_MAX);
        assert_int_equal(
            rt_writeset_put(&ws, RT_CF_STATE, key, key_len, val, RT_STORED_VALUE_BYTES_MAX), 0);
    }
    assert_int_equal(f->store->ops->commit(f->store, &ws), 0);
    rt_writeset_free(&ws);
    uint8_t key[64];
    size_t key_len = make_key(key, 8, "big5");
    memset(val, 'f', RT_STORED_VALUE_BYTES_MAX);
    expect_stored(f->store, RT_CF_STATE, key, key_len, val, RT_STORED_VALUE_BYTES_MAX);
    key_len = make_key(key, 8, "small");
    helper_put(f->store, 8, 2, RT_CF_STATE, key, key_len, "s", 1);
    expect_stored(f->store, RT_CF_STATE, key, key_len, "s", 1);
    assert_int_equal(helper_applied(f->store, 8), 2);
    assert_int_equal(test_store_count(f->store, RT_CF_STATE, 8), 7);
    free(val);
}

static void test_scan_order_and_prefix_bounds(void **state)
{
    struct fixture *f = *state;
    /* Shards 0x00fe, 0x00ff, 0x0100 and 0xffff: the prefix end of 0x00ff carries into 0x01. */
    static const struct {
        uint16_t shard;
        const char *tail;
    } keys[] = {
        {0x00ff, "m"},        {0x0100, "a"},    {0x00ff, "b"},  {0x00fe, "z"},
        {0x00ff, "\xff\xff"}, {0x00ff, "a"},    {0x00ff, "ab"}, {0x0100, ""},
        {0xffff, "q"},        {0x00ff, "\xff"}, {0xfffe, "q"},
    };
    uint64_t index = 1;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        uint8_t key[64];
        size_t key_len = make_key(key, keys[i].shard, keys[i].tail);
        helper_put(f->store, keys[i].shard, index++, RT_CF_INDEX, key, key_len, "v", 1);
    }
    struct collect c;
    memset(&c, 0, sizeof(c));
    uint8_t prefix[8];
    rt_key_shard_prefix(prefix, 0x00ff);
    assert_int_equal(scan_collect(f->store, RT_CF_INDEX, prefix, 2, NULL, 0, &c), 0);
    assert_string_equal(c.text, "00ff:a,00ff:ab,00ff:b,00ff:m,00ff:\xff,00ff:\xff\xff");

    rt_key_shard_prefix(prefix, 0x0100);
    assert_int_equal(scan_collect(f->store, RT_CF_INDEX, prefix, 2, NULL, 0, &c), 0);
    assert_string_equal(c.text, "0100:,0100:a");

    /* All-0xff prefixes have no end key: scan to the end of the family. */
    rt_key_shard_prefix(prefix, 0xffff);
    assert_int_equal(scan_collect(f->store, RT_CF_INDEX, prefix, 2, NULL, 0, &c), 0);
    assert_string_equal(c.text, "ffff:q");

    /* A longer prefix ending in 0xff: 00 ff ff carries to 01. */
    uint8_t longer[3] = {0x00, 0xff, 0xff};
    assert_int_equal(scan_collect(f->store, RT_CF_INDEX, longer, 3, NULL, 0, &c), 0);
    assert_string_equal(c.text, "00ff:\xff,00ff:\xff\xff");

    /* Other families hold none of these. */
    rt_key_shard_prefix(prefix, 0x00ff);
    assert_int_equal(scan_collect(f->store, RT_CF_STATE, prefix, 2, NULL, 0, &c), 0);
    assert_int_equal(c.count, 0);

    /* An empty prefix visits the whole family in byte order. */
    assert_int_equal(scan_collect(f->store, RT_CF_INDEX, NULL, 0, NULL, 0, &c), 0);
    assert_int_equal(c.count, sizeof(keys) / sizeof(keys[0]));
    assert_true(strncmp(c.text, "00fe:z,00ff:a,", 14) == 0);

    struct store_rocks_stats stats;
    store_rocks_stats(f->db, &stats);
    assert_int_equal(stats.scans, 6);
}

static void test_scan_start_stop_and_error(void **state)
{
    struct fixture *f = *state;
    const char *tails[] = {"k1", "k2", "k3", "k4", "k5"};
    for (size_t i = 0; i < 5; i++) {
        uint8_t key[64];
        size_t key_len = make_key(key, 9, tails[i]);
        helper_put(f->store, 9, i + 1, RT_CF_TIMERS, key, key_len, "v", 1);
    }
    uint8_t other[64];
    size_t other_len = make_key(other, 10, "k0");
    helper_put(f->store, 10, 1, RT_CF_TIMERS, other, other_len, "v", 1);

    struct collect c;
    memset(&c, 0, sizeof(c));
    uint8_t prefix[2];
    rt_key_shard_prefix(prefix, 9);
    uint8_t start[64];
    /* Start inside the range, between keys. */
    size_t start_len = make_key(start, 9, "k25");
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, start, start_len, &c), 0);
    assert_string_equal(c.text, "0009:k3,0009:k4,0009:k5");
    /* Start on a key: included. */
    start_len = make_key(start, 9, "k4");
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, start, start_len, &c), 0);
    assert_string_equal(c.text, "0009:k4,0009:k5");
    /* Start before the prefix: from the prefix. */
    start_len = make_key(start, 8, "zzz");
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, start, start_len, &c), 0);
    assert_int_equal(c.count, 5);
    /* Start past the prefix: nothing, and nothing of the next shard. */
    start_len = make_key(start, 9, "z");
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, start, start_len, &c), 0);
    assert_int_equal(c.count, 0);

    /* Returning 1 stops early without error. */
    c.stop_after = 2;
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, NULL, 0, &c), 0);
    assert_string_equal(c.text, "0009:k1,0009:k2");
    /* A negative return stops the scan with that code. */
    c.stop_after = 0;
    c.fail_with = RT_ECONFLICT;
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, NULL, 0, &c), RT_ECONFLICT);
    c.fail_with = -1000;
    assert_int_equal(scan_collect(f->store, RT_CF_TIMERS, prefix, 2, NULL, 0, &c), -1000);
}

static void test_reopen_keeps_everything(void **state)
{
    struct fixture *f = *state;
    /* Small memtables so that part of the data is in SST files and part only in memtables
     * when the database closes. */
    store_rocks_close(f->db);
    f->db = helper_open(f->dir, 64 * 1024);
    f->store = store_rocks_store(f->db);
    helper_fill_shard(f->store, 1, 11, 600 * 1024, 500);
    helper_fill_shard(f->store, 2, 12, 100 * 1024, 42);
    uint8_t key[64];
    size_t key_len = make_key(key, 3, "last");
    helper_put(f->store, 3, 77, RT_CF_STATE, key, key_len, "tail", 4);
    uint8_t before[3][32];
    for (uint16_t s = 1; s <= 3; s++) {
        test_store_digest(f->store, s, before[s - 1]);
    }
    reopen(f);
    for (uint16_t s = 1; s <= 3; s++) {
        uint8_t after[32];
        test_store_digest(f->store, s, after);
        assert_memory_equal(before[s - 1], after, 32);
    }
    assert_int_equal(helper_applied(f->store, 1), 500);
    assert_int_equal(helper_applied(f->store, 2), 42);
    assert_int_equal(helper_applied(f->store, 3), 77);
    expect_stored(f->store, RT_CF_STATE, key, key_len, "tail", 4);
    assert_true(helper_count_all(f->store, 1) > 1000);
}

static void test_clean_close_keeps_every_write(void **state)
{
    struct fixture *f = *state;
    /* Default 16 MiB memtables: these writes are only in memtables and the WAL's in-memory
     * buffer until the close syncs it. */
    uint8_t key[64];
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        size_t key_len = make_key(key, 6, rt_cf_name((enum rt_cf)cf));
        helper_put(f->store, 6, 10 + (uint64_t)cf, (enum rt_cf)cf, key, key_len, "m", 1);
    }
    size_t key_len = make_key(key, 6, "gone");
    helper_put(f->store, 6, 20, RT_CF_STATE, key, key_len, "g", 1);
    helper_del(f->store, 6, 21, RT_CF_STATE, key, key_len);
    reopen(f);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        key_len = make_key(key, 6, rt_cf_name((enum rt_cf)cf));
        expect_stored(f->store, (enum rt_cf)cf, key, key_len, "m", 1);
    }
    key_len = make_key(key, 6, "gone");
    expect_absent(f->store, RT_CF_STATE, key, key_len);
    assert_int_equal(helper_applied(f->store, 6), 21);
    /* Twice in a row, with nothing written in between. */
    reopen(f);
    assert_int_equal(helper_applied(f->store, 6), 21);
}

/* The bytes of the write-ahead log files (*.log) in @dir. */
static off_t wal_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    off_t bytes = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".log") == 0) {
            char path[1024];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            struct stat st;
            assert_int_equal(stat(path, &st), 0);
            bytes += st.st_size;
        }
    }
    closedir(d);
    return bytes;
}

/* A clean close writes the memtables out, so that the next open has no WAL to replay (a
 * replay re-inserts every key: time a restart waits for). */
static void test_clean_close_leaves_no_wal(void **state)
{
    struct fixture *f = *state;
    uint8_t key[64];
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        size_t key_len = make_key(key, 9, rt_cf_name((enum rt_cf)cf));
        helper_put(f->store, 9, 30 + (uint64_t)cf, (enum rt_cf)cf, key, key_len, "w", 1);
    }
    assert_int_equal(store_rocks_sync(f->db), 0);
    assert_true(wal_bytes(f->dir) > 0); /* The writes are in the WAL... */
    store_rocks_close(f->db);
    f->db = NULL; /* Closed: teardown skips it if an assertion below fails. */
    assert_int_equal(wal_bytes(f->dir), 0); /* ...and no longer needed there. */
    f->db = helper_open(f->dir, 0);
    f->store = store_rocks_store(f->db);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        size_t key_len = make_key(key, 9, rt_cf_name((enum rt_cf)cf));
        expect_stored(f->store, (enum rt_cf)cf, key, key_len, "w", 1);
    }
    assert_int_equal(helper_applied(f->store, 9), 30 + RT_CF_COUNT - 1);
}

static void test_drop_shard(void **state)
{
    struct fixture *f = *state;
    uint16_t shards[] = {0x00fe, 0x00ff, 0x0100, 0xfffe, 0xffff};
    uint8_t before[5][32];
    for (int i = 0; i < 5; i++) {
        helper_fill_shard(f->store, shards[i], (uint64_t)i + 1, 40 * 1024, 10 + (uint64_t)i);
        test_store_digest(f->store, shards[i], before[i]);
        assert_true(helper_count_all(f->store, shards[i]) > 50);
    }
    assert_int_equal(store_rocks_drop_shard(f->db, 0x00ff), 0);
    assert_int_equal(store_rocks_drop_shard(f->db, 0xffff), 0);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        assert_int_equal(test_store_count(f->store, (enum rt_cf)cf, 0x00ff), 0);
        assert_int_equal(test_store_count(f->store, (enum rt_cf)cf, 0xffff), 0);
    }
    assert_int_equal(helper_applied(f->store, 0x00ff), 0);
    assert_int_equal(helper_applied(f->store, 0xffff), 0);
    int kept[] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        uint8_t after[32];
        test_store_digest(f->store, shards[kept[k]], after);
        assert_memory_equal(before[kept[k]], after, 32);
    }
    /* Dropping an empty shard is fine, and the drop survives a reopen. */
    assert_int_equal(store_rocks_drop_shard(f->db, 0x00ff), 0);
    reopen(f);
    assert_int_equal(helper_count_all(f->store, 0x00ff), 0);
    assert_int_equal(helper_applied(f->store, 0x0100), 12);
    /* The shard can be written again after the drop. */
    uint8_t key[64];
    size_t key_len = make_key(key, 0x00ff, "again");
    helper_put(f->store, 0x00ff, 1, RT_CF_STATE, key, key_len, "v", 1);
    assert_int_equal(helper_count_all(f->store, 0x00ff), 2); /* The key and the index. */
}

static void test_checkpoint(void **state)
{
    struct fixture *f = *state;
    helper_fill_shard(f->store, 4, 4, 200 * 1024, 99);
    helper_fill_shard(f->store, 5, 5, 50 * 1024, 7);
    char *base = test_tmpdir("store-ckpt");
    char path[4096];
    snprintf(path, sizeof(path), "%s/ckpt", base);
    /* Data only in memtables must be in the checkpoint too. */
    assert_int_equal(store_rocks_checkpoint(f->db, path), 0);
    /* The original keeps working; later writes are not in the checkpoint. */
    uint8_t key[64];
    size_t key_len = make_key(key, 4, "after");
    uint8_t d4[32];
    test_store_digest(f->store, 4, d4);
    helper_put(f->store, 4, 100, RT_CF_STATE, key, key_len, "x", 1);

    struct store_rocks *copy = helper_open(path, 0);
    struct rt_store *cs = store_rocks_store(copy);
    uint8_t c4[32];
    test_store_digest(cs, 4, c4);
    assert_memory_equal(d4, c4, 32);
    assert_true(helper_same_shard(f->store, cs, 5));
    assert_int_equal(helper_applied(cs, 4), 99);
    assert_int_equal(helper_applied(cs, 5), 7);
    expect_absent(cs, RT_CF_STATE, key, key_len);
    store_rocks_close(copy);

    /* The target must not exist. */
    FILE *log = tmpfile();
    rt_log_set_file(log);
    assert_int_equal(store_rocks_checkpoint(f->db, path), RT_EIO);
    rt_log_set_file(NULL);
    fclose(log);
    test_rmdir(base);
}

static void test_open_refuses_what_is_not_ours(void **state)
{
    (void)state;
    char *dir = test_tmpdir("store-garbage");
    char path[4096];

    /* A directory of someone else's files. */
    snprintf(path, sizeof(path), "%s/files", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/files/notes.txt", dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("not a database\n", file);
    fclose(file);
    snprintf(path, sizeof(path), "%s/files", dir);
    expect_open_refused(path, 1);
    snprintf(path, sizeof(path), "%s/files/notes.txt", dir);
    assert_int_equal(access(path, F_OK), 0); /* Left alone. */

    /* A regular file. */
    expect_open_refused(path, 1);

    /* A RocksDB database without our column families. */
    snprintf(path, sizeof(path), "%s/other", dir);
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    char *err = NULL;
    rocksdb_t *other = rocksdb_open(options, path, &err);
    assert_null(err);
    rocksdb_close(other);
    expect_open_refused(path, 1);

    /* A RocksDB database with ours plus one we do not know. */
    snprintf(path, sizeof(path), "%s/newer", dir);
    struct store_rocks *db = helper_open(path, 0);
    store_rocks_close(db);
    const char *names[] = {"default", "state", "index", "outbox", "timers", "meta", "future"};
    const rocksdb_options_t *cf_options[7];
    rocksdb_column_family_handle_t *handles[7];
    for (int i = 0; i < 7; i++) {
        cf_options[i] = options;
    }
    rocksdb_options_set_create_missing_column_families(options, 1);
    other = rocksdb_open_column_families(options, path, 7, names, cf_options, handles, &err);
    assert_null(err);
    for (int i = 0; i < 7; i++) {
        rocksdb_column_family_handle_destroy(handles[i]);
    }
    rocksdb_close(other);
    rocksdb_options_destroy(options);
    expect_open_refused(path, 1);
    test_rmdir(dir);
}

static void test_open_locked(void **state)
{
    struct fixture *f = *state;
    /* Twice in this process. */
    expect_open_refused(f->dir, 1);
    /* Held by another process. */
    char *dir = test_tmpdir("store-lock");
    pid_t pid = spawn_holder(dir);
    expect_open_refused(dir, 1);
    test_kill(pid);
    /* Free again once the holder is gone (killed, not closed: the lock goes with it). */
    struct store_rocks *db = helper_open(dir, 0);
    store_rocks_close(db);
    test_rmdir(dir);
}

/* A memtable block, with glibc's 16-byte chunk header, rounded up to a page, is exactly one
 * 2 MiB huge page (store_rocks.h); only memtables of 8 blocks or more get such blocks. */
static void test_memtable_blocks_fit_a_huge_page(void **state)
{
    (void)state;
    const size_t page = 4096, huge = 2u * 1024u * 1024u, malloc_header = 16;
    assert_int_equal((STORE_ARENA_BLOCK_BYTES + malloc_header + page - 1) / page * page, huge);
    assert_int_equal(STORE_ARENA_BLOCK_BYTES % 16, 0); /* RocksDB keeps it as it is. */
    rocksdb_options_t *options = rocksdb_options_create();
    size_t rocksdb_default = rocksdb_options_get_arena_block_size(options);
    store_rocks_memtable_options(options, 1u << 20); /* The meta group's. */
    assert_int_equal(rocksdb_options_get_arena_block_size(options), rocksdb_default);
    store_rocks_memtable_options(options, 16u << 20); /* The shards' and the raft log's. */
    assert_int_equal(rocksdb_options_get_arena_block_size(options), STORE_ARENA_BLOCK_BYTES);
    rocksdb_options_destroy(options);
}

/* Only state and index, read for keys that are often absent, have memtable bloom filters
 * (store_rocks.c, store_cf_filtered): the database's own options file says so per family. */
static void test_memtable_filters_only_where_read(void **state)
{
    (void)state;
    char *dir = test_tmpdir("store-rocks-filters");
    store_rocks_close(helper_open(dir, 0));
    rocksdb_env_t *env = rocksdb_create_default_env();
    rocksdb_options_t *db_options = NULL, **cf_options = NULL;
    char **names = NULL, *err = NULL;
    size_t count = 0;
    rocksdb_load_latest_options(dir, env, false, NULL, &db_options, &count, &names, &cf_options,
                                &err);
    assert_null(err);
    assert_int_equal(count, RT_CF_COUNT + 1); /* Ours and "default". */
    int filtered = 0;
    for (size_t i = 0; i < count; i++) {
        bool read_by_key = strcmp(names[i], rt_cf_name(RT_CF_STATE)) == 0 ||
                           strcmp(names[i], rt_cf_name(RT_CF_INDEX)) == 0;
        double ratio = rocksdb_options_get_memtable_prefix_bloom_size_ratio(cf_options[i]);
        assert_true(ratio == (read_by_key ? STORE_MEMTABLE_BLOOM_RATIO : 0.0));
        filtered += read_by_key;
    }
    assert_int_equal(filtered, 2);
    rocksdb_load_latest_options_destroy(db_options, names, cf_options, count);
    rocksdb_env_destroy(env);
    test_rmdir(dir);
}

int main(void)
{
    rt_log_set_level(RT_LOG_WARN); /* PAYRAFT_LOG_LEVEL=info shows the opens and drops. */
    rt_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_create),
        cmocka_unit_test(test_memtable_blocks_fit_a_huge_page),
        cmocka_unit_test(test_memtable_filters_only_where_read),
        cmocka_unit_test_setup_teardown(test_put_get_delete_every_cf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_order_and_applied_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_order_and_prefix_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_start_stop_and_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_close_keeps_every_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_close_leaves_no_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
        cmocka_unit_test(test_open_refuses_what_is_not_ours),
        cmocka_unit_test_setup_teardown(test_open_locked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
