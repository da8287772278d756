/* test_store_snapshot: snapshot streams written from one database and restored into another,
 * and every kind of damaged stream refused with the shard left as it was. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_limits.h"
#include "rt_log.h"
#include "storage_helpers.h"
#include "store_rocks.h"
#include "store_snapshot.h"
#include "test_support.h"

#define HDR       STORE_SNAPSHOT_HEADER_BYTES
#define SRC_SHARD 5u
#define SRC_INDEX 4242u
/* Raw bytes of the source shard: enough for several 1 MiB chunks. */
#define SRC_BYTES (3u * 1024u * 1024u)

/* ---- A stream of chunks (owned copies) ---- */

struct stream {
    uint8_t **chunks;
    size_t *lens;
    size_t count;
    size_t cap;
    int fail_at;                /* Sink returns -99 for chunk number fail_at (>= 0). */
    struct rt_store *commit_to; /* When set, the first sink call commits to the shard. */
};

static void stream_init(struct stream *s)
{
    memset(s, 0, sizeof(*s));
    s->fail_at = -1;
}

static void stream_free(struct stream *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->chunks[i]);
    }
    free(s->chunks);
    free(s->lens);
    memset(s, 0, sizeof(*s));
}

static void stream_push(struct stream *s, uint8_t *chunk, size_t len)
{
    if (s->count == s->cap) {
        s->cap = s->cap == 0 ? 8 : s->cap * 2;
        s->chunks = realloc(s->chunks, s->cap * sizeof(*s->chunks));
        s->lens = realloc(s->lens, s->cap * sizeof(*s->lens));
        assert_non_null(s->chunks);
        assert_non_null(s->lens);
    }
    s->chunks[s->count] = chunk;
    s->lens[s->count] = len;
    s->count++;
}

static int sink(void *arg, uint8_t *chunk, size_t len)
{
    struct stream *s = arg;
    if ((int)s->count == s->fail_at) {
        return -99;
    }
    if (s->commit_to != NULL) {
        /* A commit while the snapshot is being written: it must not show in the stream. */
        uint8_t key[RT_KEY_BYTES_MAX];
        size_t key_len = rt_key_meta(key, SRC_SHARD, "late");
        helper_put(s->commit_to, SRC_SHARD, SRC_INDEX + 1, RT_CF_META, key, key_len, "x", 1);
        s->commit_to = NULL;
    }
    stream_push(s, chunk, len);
    return 0;
}

/* A deep copy, for mutation. */
static void stream_copy(struct stream *dst, const struct stream *src)
{
    stream_init(dst);
    for (size_t i = 0; i < src->count; i++) {
        uint8_t *c = malloc(src->lens[i] + 1);
        assert_non_null(c);
        memcpy(c, src->chunks[i], src->lens[i]);
        stream_push(dst, c, src->lens[i]);
    }
}

static int restore(struct store_rocks *db, uint16_t shard, const struct stream *s)
{
    return store_snapshot_restore(db, shard, (const uint8_t *const *)s->chunks, s->lens, s->count);
}

/* ---- Hand-made chunks ---- */

static uint8_t *make_chunk(uint16_t shard, uint16_t flags, uint32_t chunk_no, uint64_t applied,
                           const uint8_t *raw, size_t raw_len, int checksum, size_t *len)
{
    size_t bound = ZSTD_compressBound(raw_len);
    uint8_t *chunk = malloc(HDR + bound);
    assert_non_null(chunk);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, checksum);
    size_t comp =
        ZSTD_compress2(cctx, chunk + HDR, bound, raw_len > 0 ? raw : (const void *)"", raw_len);
    assert_false(ZSTD_isError(comp));
    ZSTD_freeCCtx(cctx);
    memcpy(chunk, "PRSNAP01", 8);
    rt_put_be16(chunk + 8, shard);
    rt_put_be16(chunk + 10, flags);
    rt_put_be32(chunk + 12, chunk_no);
    rt_put_be64(chunk + 16, applied);
    rt_put_be32(chunk + 24, (uint32_t)raw_len);
    rt_put_be32(chunk + 28, (uint32_t)comp);
    *len = HDR + comp;
    return chunk;
}

static size_t add_record(uint8_t *raw, size_t pos, uint8_t cf, const uint8_t *key, size_t key_len,
                         const void *val, size_t val_len)
{
    raw[pos] = cf;
    rt_put_be32(raw + pos + 1, (uint32_t)key_len);
    memcpy(raw + pos + 5, key, key_len);
    rt_put_be32(raw + pos + 5 + key_len, (uint32_t)val_len);
    memcpy(raw + pos + 9 + key_len, val, val_len);
    return pos + 9 + key_len + val_len;
}

/* Records of a small valid stream of shard @shard at index 9: a state key and the applied
 * index. @bad picks one defect to build in instead. */
enum craft_defect {
    CRAFT_NONE,
    CRAFT_FOREIGN_KEY,     /* A key with another shard's prefix. */
    CRAFT_BAD_CF,          /* Column family 5 (there are 5: 0..4). */
    CRAFT_KEY_LEN_PAST,    /* key_len points past the raw bytes. */
    CRAFT_VAL_LEN_PAST,    /* val_len points past the raw bytes. */
    CRAFT_TRAILING_BYTE,   /* A stray byte after the last record. */
    CRAFT_APPLIED_WRONG,   /* The applied record says 10, the header 9. */
    CRAFT_APPLIED_SHORT,   /* The applied record is 4 bytes. */
    CRAFT_APPLIED_12,      /* The applied record is 12 bytes (neither form). */
    CRAFT_APPLIED_HISTORY, /* Not a defect: the 16-byte record (index | history hash). */
    CRAFT_APPLIED_MISSING, /* Header says 9, no applied record. */
    CRAFT_OUT_OF_ORDER,    /* Two state keys in descending order. */
    CRAFT_DUPLICATE,       /* The same key twice. */
    CRAFT_NO_CHECKSUM,     /* A zstd frame without its content checksum. */
    CRAFT_SHORT_KEY,       /* A 1-byte key (shorter than the shard prefix). */
};

static void craft_stream(struct stream *s, uint16_t shard, enum craft_defect defect)
{
    uint8_t raw[4096];
    size_t pos = 0;
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = rt_key_state(key, shard, 1, (const uint8_t *)"alpha", 5);
    uint8_t key2[RT_KEY_BYTES_MAX];
    size_t key2_len = rt_key_state(key2, shard, 1, (const uint8_t *)"beta", 4);
    uint8_t applied[RT_APPLIED_BYTES];
    rt_applied_encode(applied, defect == CRAFT_APPLIED_WRONG ? 10 : 9, 0x0123456789abcdefull);
    size_t applied_len = defect == CRAFT_APPLIED_SHORT     ? 4
                         : defect == CRAFT_APPLIED_12      ? 12
                         : defect == CRAFT_APPLIED_HISTORY ? RT_APPLIED_BYTES
                                                           : RT_APPLIED_BYTES_LEGACY;
    uint8_t meta[RT_KEY_BYTES_MAX];
    size_t meta_len = rt_key_meta(meta, shard, "applied");

    switch (defect) {
    case CRAFT_FOREIGN_KEY: {
        uint8_t foreign[RT_KEY_BYTES_MAX];
        size_t foreign_len =
            rt_key_state(foreign, (uint16_t)(shard + 1), 1, (const uint8_t *)"zz", 2);
        pos = add_record(raw, pos, RT_CF_STATE, key, key_len, "A", 1);
        pos = add_record(raw, pos, RT_CF_STATE, foreign, foreign_len, "F", 1);
        break;
    }
    case CRAFT_BAD_CF:
        pos = add_record(raw, pos, RT_CF_COUNT, key, key_len, "A", 1);
        break;
    case CRAFT_OUT_OF_ORDER:
        pos = add_record(raw, pos, RT_CF_STATE, key2, key2_len, "B", 1);
        pos = add_record(raw, pos, RT_CF_STATE, key, key_len, "A", 1);
        break;
    case CRAFT_DUPLICATE:
        pos = add_record(raw, pos, RT_CF_STATE, key, key_len, "A", 1);
        pos = add_record(raw, pos, RT_CF_STATE, key, key_len, "A", 1);
        break;
    case CRAFT_SHORT_KEY:
        pos = add_record(raw, pos, RT_CF_STATE, key, 1, "A", 1);
        break;
    default:
        pos = add_record(raw, pos, RT_CF_STATE, key, key_len, "A", 1);
        pos = add_record(raw, pos, RT_CF_STATE, key2, key2_len, "B", 1);
        break;
    }
    if (defect == CRAFT_KEY_LEN_PAST) {
        rt_put_be32(raw + 1, 4000);
    }
    if (defect == CRAFT_VAL_LEN_PAST) {
        rt_put_be32(raw + 5 + key_len, 4000);
    }
    if (defect != CRAFT_APPLIED_MISSING) {
        pos = add_record(raw, pos, RT_CF_META, meta, meta_len, applied, applied_len);
    }
    if (defect == CRAFT_TRAILING_BYTE) {
        raw[pos++] = 0;
    }
    stream_init(s);
    /* Two chunks: the records, then an empty last one. */
    size_t len = 0;
    uint8_t *c = make_chunk(shard, 0, 0, 9, raw, pos, defect != CRAFT_NO_CHECKSUM, &len);
    stream_push(s, c, len);
    c = make_chunk(shard, 1, 1, 9, NULL, 0, 1, &len);
    stream_push(s, c, len);
}

/* ---- Fixture: a source database with three shards, and its shard-5 snapshot ---- */

struct fixture {
    char *src_dir;
    char *dst_dir;
    struct store_rocks *src;
    struct store_rocks *dst;
    struct stream snap; /* Shard SRC_SHARD of src. */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->src_dir = test_tmpdir("snap-src");
    f->dst_dir = test_tmpdir("snap-dst");
    f->src = helper_open(f->src_dir, 0);
    f->dst = helper_open(f->dst_dir, 0);
    struct rt_store *s = store_rocks_store(f->src);
    helper_fill_shard(s, SRC_SHARD - 1, 41, 200 * 1024, 17);
    helper_fill_shard(s, SRC_SHARD, 51, SRC_BYTES, SRC_INDEX);
    helper_fill_shard(s, SRC_SHARD + 1, 61, 200 * 1024, 23);
    stream_init(&f->snap);
    assert_int_equal(store_snapshot_write(f->src, SRC_SHARD, sink, &f->snap), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stream_free(&f->snap);
    store_rocks_close(f->src);
    store_rocks_close(f->dst);
    test_rmdir(f->src_dir);
    test_rmdir(f->dst_dir);
    free(f);
    return 0;
}

/* ---- Tests ---- */

static void test_stream_shape(void **state)
{
    struct fixture *f = *state;
    const struct stream *s = &f->snap;
    assert_true(s->count >= 4); /* 3 MiB of records in chunks of at most 1 MiB. */
    size_t raw_total = 0;
    for (size_t i = 0; i < s->count; i++) {
        const uint8_t *c = s->chunks[i];
        assert_true(s->lens[i] >= HDR);
        assert_memory_equal(c, "PRSNAP01", 8);
        assert_int_equal(rt_get_be16(c + 8), SRC_SHARD);
        assert_int_equal(rt_get_be16(c + 10), i + 1 == s->count ? 1 : 0);
        assert_int_equal(rt_get_be32(c + 12), i);
        assert_int_equal(rt_get_be64(c + 16), SRC_INDEX);
        uint32_t raw_len = rt_get_be32(c + 24);
        assert_true(raw_len <= RT_SNAPSHOT_CHUNK_BYTES);
        assert_int_equal(rt_get_be32(c + 28), s->lens[i] - HDR);
        assert_int_equal(ZSTD_getFrameContentSize(c + HDR, s->lens[i] - HDR), raw_len);
        raw_total += raw_len;
    }
    assert_true(raw_total >= SRC_BYTES);
    fprintf(stderr, "  %zu chunks, %zu raw bytes\n", s->count, raw_total);
}

static void test_restore_into_fresh_database(void **state)
{
    struct fixture *f = *state;
    struct rt_store *src = store_rocks_store(f->src);
    struct rt_store *dst = store_rocks_store(f->dst);
    assert_int_equal(restore(f->dst, SRC_SHARD, &f->snap), 0);
    assert_true(helper_same_shard(src, dst, SRC_SHARD));
    assert_int_equal(helper_applied(dst, SRC_SHARD), SRC_INDEX);
    assert_int_equal(helper_count_all(dst, SRC_SHARD), helper_count_all(src, SRC_SHARD));
    /* Only that shard came across. */
    assert_int_equal(helper_count_all(dst, SRC_SHARD - 1), 0);
    assert_int_equal(helper_count_all(dst, SRC_SHARD + 1), 0);
    /* And it is durable like anything else. */
    store_rocks_close(f->dst);
    f->dst = helper_open(f->dst_dir, 0);
    assert_true(helper_same_shard(src, store_rocks_store(f->dst), SRC_SHARD));
    /* Restoring the same stream twice gives the same result. */
    assert_int_equal(restore(f->dst, SRC_SHARD, &f->snap), 0);
    assert_true(helper_same_shard(src, store_rocks_store(f->dst), SRC_SHARD));
}

static void test_restore_replaces_only_that_shard(void **state)
{
    struct fixture *f = *state;
    struct rt_store *src = store_rocks_store(f->src);
    struct rt_store *dst = store_rocks_store(f->dst);
    /* Different data of the same shard (overlapping state keys, other values, extra keys),
     * and neighbours. */
    helper_fill_shard(dst, SRC_SHARD, 99, 1024 * 1024, 9000);
    helper_fill_shard(dst, SRC_SHARD - 1, 98, 100 * 1024, 3);
    helper_fill_shard(dst, SRC_SHARD + 1, 97, 100 * 1024, 4);
    uint8_t before_low[32];
    uint8_t before_high[32];
    test_store_digest(dst, SRC_SHARD - 1, before_low);
    test_store_digest(dst, SRC_SHARD + 1, before_high);
    assert_false(helper_same_shard(src, dst, SRC_SHARD));

    assert_int_equal(restore(f->dst, SRC_SHARD, &f->snap), 0);
    assert_true(helper_same_shard(src, dst, SRC_SHARD));
    assert_int_equal(helper_applied(dst, SRC_SHARD), SRC_INDEX); /* Lower than before. */
    uint8_t after[32];
    test_store_digest(dst, SRC_SHARD - 1, after);
    assert_memory_equal(before_low, after, 32);
    test_store_digest(dst, SRC_SHARD + 1, after);
    assert_memory_equal(before_high, after, 32);
    assert_int_equal(helper_applied(dst, SRC_SHARD - 1), 3);
}

static void test_empty_shard(void **state)
{
    struct fixture *f = *state;
    struct stream s;
    stream_init(&s);
    assert_int_equal(store_snapshot_write(f->src, 9, sink, &s), 0);
    assert_int_equal(s.count, 1);
    assert_int_equal(rt_get_be16(s.chunks[0] + 10), 1); /* Last. */
    assert_int_equal(rt_get_be64(s.chunks[0] + 16), 0);
    assert_int_equal(rt_get_be32(s.chunks[0] + 24), 0);
    /* Restoring it over a shard with data empties the shard. */
    struct rt_store *dst = store_rocks_store(f->dst);
    helper_fill_shard(dst, 9, 9, 50 * 1024, 12);
    helper_fill_shard(dst, 10, 10, 50 * 1024, 13);
    uint8_t before[32];
    test_store_digest(dst, 10, before);
    assert_int_equal(restore(f->dst, 9, &s), 0);
    assert_int_equal(helper_count_all(dst, 9), 0);
    assert_int_equal(helper_applied(dst, 9), 0);
    uint8_t after[32];
    test_store_digest(dst, 10, after);
    assert_memory_equal(before, after, 32);
    stream_free(&s);
}

static void test_snapshot_is_consistent(void **state)
{
    struct fixture *f = *state;
    struct rt_store *src = store_rocks_store(f->src);
    uint8_t before[32];
    test_store_digest(src, SRC_SHARD, before);
    struct stream s;
    stream_init(&s);
    s.commit_to = src; /* Commits to the shard when the first chunk is handed over. */
    assert_int_equal(store_snapshot_write(f->src, SRC_SHARD, sink, &s), 0);
    assert_int_equal(helper_applied(src, SRC_SHARD), SRC_INDEX + 1);
    struct rt_store *dst = store_rocks_store(f->dst);
    assert_int_equal(restore(f->dst, SRC_SHARD, &s), 0);
    uint8_t restored[32];
    test_store_digest(dst, SRC_SHARD, restored);
    assert_memory_equal(before, restored, 32);
    assert_int_equal(helper_applied(dst, SRC_SHARD), SRC_INDEX);
    stream_free(&s);
}

static void test_sink_error_aborts(void **state)
{
    struct fixture *f = *state;
    struct stream s;
    stream_init(&s);
    s.fail_at = 1; /* The chunk refused is freed by store_snapshot_write (ASan checks). */
    assert_int_equal(store_snapshot_write(f->src, SRC_SHARD, sink, &s), -99);
    assert_int_equal(s.count, 1);
    stream_free(&s);
    stream_init(&s);
    s.fail_at = 0;
    assert_int_equal(store_snapshot_write(f->src, 9, sink, &s), -99); /* Empty shard too. */
    assert_int_equal(s.count, 0);
    stream_free(&s);
}

/* The largest value the store takes (RT_STORED_VALUE_BYTES_MAX) with the largest key still
 * fits one chunk, so every shard can be snapshotted and restored. */
static void test_largest_record_fits_a_chunk(void **state)
{
    struct fixture *f = *state;
    struct rt_store *src = store_rocks_store(f->src);
    uint8_t key[RT_STORED_KEY_BYTES_MAX];
    memset(key, 'k', sizeof(key));
    rt_put_be16(key, 12);
    uint8_t *val = calloc(1, RT_STORED_VALUE_BYTES_MAX);
    assert_non_null(val);
    helper_put(src, 12, 1, RT_CF_STATE, key, sizeof(key), val, RT_STORED_VALUE_BYTES_MAX);
    free(val);
    struct stream s;
    stream_init(&s);
    assert_int_equal(store_snapshot_write(f->src, 12, sink, &s), 0);
    assert_true(s.count >= 1);
    stream_free(&s);
}

/* The crafted streams themselves are right: without a defect they restore. */
static void test_crafted_stream_restores(void **state)
{
    struct fixture *f = *state;
    struct stream s;
    craft_stream(&s, 3, CRAFT_NONE); /* The applied index alone, as older nodes send it. */
    assert_int_equal(restore(f->dst, 3, &s), 0);
    struct rt_store *dst = store_rocks_store(f->dst);
    struct rt_applied applied;
    assert_int_equal(dst->ops->applied(dst, 3, &applied), 0);
    assert_int_equal(applied.index, 9);
    assert_false(applied.has_history);
    assert_int_equal(test_store_count(dst, RT_CF_STATE, 3), 2);
    stream_free(&s);
    /* The record with the history hash is restored as it came. */
    craft_stream(&s, 4, CRAFT_APPLIED_HISTORY);
    assert_int_equal(restore(f->dst, 4, &s), 0);
    assert_int_equal(dst->ops->applied(dst, 4, &applied), 0);
    assert_int_equal(applied.index, 9);
    assert_true(applied.has_history);
    assert_int_equal(applied.history_hash, 0x0123456789abcdefull);
    stream_free(&s);
}

/* Restore @s (damaged) into dst over shard @shard's existing data: RT_ECORRUPT, untouched. */
static void expect_corrupt(struct fixture *f, uint16_t shard, const struct stream *s,
                           const char *what)
{
    struct rt_store *dst = store_rocks_store(f->dst);
    uint8_t before[32];
    test_store_digest(dst, shard, before);
    uint64_t applied = helper_applied(dst, shard);
    if (getenv("PAYRAFT_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "  %s:\n", what);
    }
    int rv = restore(f->dst, shard, s);
    if (rv != RT_ECORRUPT) {
        fail_msg("%s: restore returned %d (%s), not RT_ECORRUPT", what, rv, rt_strerror(rv));
    }
    uint8_t after[32];
    test_store_digest(dst, shard, after);
    assert_memory_equal(before, after, 32);
    assert_int_equal(helper_applied(dst, shard), applied);
}

static void test_damaged_streams(void **state)
{
    struct fixture *f = *state;
    struct rt_store *dst = store_rocks_store(f->dst);
    helper_fill_shard(dst, SRC_SHARD, 77, 300 * 1024, 31);
    /* Each refusal logs its reason: kept out of the output unless PAYRAFT_TEST_VERBOSE. */
    FILE *log = getenv("PAYRAFT_TEST_VERBOSE") == NULL ? tmpfile() : NULL;
    rt_log_set_file(log);
    const struct stream *good = &f->snap;
    struct stream s;
    size_t last = good->count - 1;

#define DAMAGE(what, code)                                                                         \
    do {                                                                                           \
        stream_copy(&s, good);                                                                     \
        size_t all = s.count; /* Chunks dropped from the view are still freed. */                  \
        code;                                                                                      \
        expect_corrupt(f, SRC_SHARD, &s, what);                                                    \
        s.count = all;                                                                             \
        stream_free(&s);                                                                           \
    } while (0)

    DAMAGE("bad magic", s.chunks[0][0] ^= 0x20);
    DAMAGE("bad magic in a later chunk", s.chunks[2][7] = '2');
    DAMAGE("truncated chunk", s.lens[1] -= 7);
    DAMAGE("truncated to part of a header", s.lens[1] = HDR - 1);
    DAMAGE("chunk extended by a byte", s.lens[1] += 1);
    DAMAGE("header names another shard", rt_put_be16(s.chunks[2] + 8, SRC_SHARD + 1));
    DAMAGE("unknown flag", rt_put_be16(s.chunks[0] + 10, 0x8000));
    DAMAGE("last flag early", rt_put_be16(s.chunks[1] + 10, 1));
    DAMAGE("last flag missing", rt_put_be16(s.chunks[last] + 10, 0));
    DAMAGE("chunk number skips", rt_put_be32(s.chunks[1] + 12, 2));
    DAMAGE("applied index differs", rt_put_be64(s.chunks[1] + 16, SRC_INDEX + 1));
    DAMAGE("applied index lie in every header", {
        for (size_t i = 0; i < s.count; i++) {
            rt_put_be64(s.chunks[i] + 16, SRC_INDEX - 1);
        }
    });
    DAMAGE("raw_len lie up", rt_put_be32(s.chunks[0] + 24, rt_get_be32(s.chunks[0] + 24) + 1));
    DAMAGE("raw_len lie down", rt_put_be32(s.chunks[0] + 24, rt_get_be32(s.chunks[0] + 24) - 1));
    DAMAGE("raw_len over the chunk limit", rt_put_be32(s.chunks[0] + 24, 0xffffffffu));
    DAMAGE("comp_len lie", rt_put_be32(s.chunks[1] + 28, rt_get_be32(s.chunks[1] + 28) - 1));
    DAMAGE("flipped byte mid payload", s.chunks[1][HDR + (s.lens[1] - HDR) / 2] ^= 0x01);
    DAMAGE("flipped byte in frame checksum", s.chunks[1][s.lens[1] - 1] ^= 0x80);
    DAMAGE("flipped byte in frame header", s.chunks[1][HDR + 4] ^= 0x04);
    DAMAGE("missing last chunk", s.count--);
    DAMAGE("missing middle chunk", {
        uint8_t *c = s.chunks[1];
        size_t n = s.lens[1];
        memmove(&s.chunks[1], &s.chunks[2], (s.count - 2) * sizeof(*s.chunks));
        memmove(&s.lens[1], &s.lens[2], (s.count - 2) * sizeof(*s.lens));
        s.chunks[s.count - 1] = c; /* Out of view, still owned. */
        s.lens[s.count - 1] = n;
        s.count--;
    });
    DAMAGE("chunks swapped", {
        uint8_t *c = s.chunks[0];
        size_t n = s.lens[0];
        s.chunks[0] = s.chunks[1];
        s.lens[0] = s.lens[1];
        s.chunks[1] = c;
        s.lens[1] = n;
    });
    DAMAGE("empty stream", s.count = 0);
    DAMAGE("length over the snapshot limit", s.lens[0] = (size_t)RT_SNAPSHOT_BYTES_MAX + 1);
#undef DAMAGE

    /* A good stream restored as another shard. */
    helper_fill_shard(dst, SRC_SHARD + 1, 78, 50 * 1024, 32);
    expect_corrupt(f, SRC_SHARD + 1, good, "stream of another shard");

    /* Defects inside the records, in hand-made streams. */
    static const struct {
        enum craft_defect defect;
        const char *what;
    } crafted[] = {
        {CRAFT_FOREIGN_KEY, "key without the shard prefix"},
        {CRAFT_BAD_CF, "unknown column family"},
        {CRAFT_KEY_LEN_PAST, "key length past the chunk"},
        {CRAFT_VAL_LEN_PAST, "value length past the chunk"},
        {CRAFT_TRAILING_BYTE, "stray byte after the records"},
        {CRAFT_APPLIED_WRONG, "applied record disagrees with the header"},
        {CRAFT_APPLIED_SHORT, "applied record of 4 bytes"},
        {CRAFT_APPLIED_12, "applied record of 12 bytes"},
        {CRAFT_APPLIED_MISSING, "applied record missing"},
        {CRAFT_OUT_OF_ORDER, "records out of order"},
        {CRAFT_DUPLICATE, "duplicate record"},
        {CRAFT_NO_CHECKSUM, "frame without checksum"},
        {CRAFT_SHORT_KEY, "key shorter than the shard prefix"},
    };
    helper_fill_shard(dst, 3, 3, 20 * 1024, 5);
    for (size_t i = 0; i < sizeof(crafted) / sizeof(crafted[0]); i++) {
        craft_stream(&s, 3, crafted[i].defect);
        expect_corrupt(f, 3, &s, crafted[i].what);
        stream_free(&s);
    }
    rt_log_set_file(NULL);
    if (log != NULL) {
        fclose(log);
    }
    /* After all that, the good stream still restores. */
    assert_int_equal(restore(f->dst, SRC_SHARD, good), 0);
    assert_true(helper_same_shard(store_rocks_store(f->src), dst, SRC_SHARD));
}

/* store_snapshot_peek reads the shard and applied index from a stream's first header (what
 * cl_fsm's restore uses to skip a snapshot the store already holds) and refuses anything that
 * does not start with a header. */
static void test_peek(void **state)
{
    struct fixture *f = *state;
    const struct stream *s = &f->snap;
    uint16_t shard = 0;
    uint64_t applied = 0;
    int marker = -1;
    assert_int_equal(store_snapshot_peek(s->chunks[0], s->lens[0], &shard, &applied, &marker), 0);
    assert_int_equal(shard, SRC_SHARD);
    assert_int_equal(applied, SRC_INDEX);
    assert_int_equal(marker, 0);
    /* The header alone is enough: restore hands over the whole stream, peek reads 32 bytes. */
    shard = 0;
    applied = 0;
    assert_int_equal(store_snapshot_peek(s->chunks[0], HDR, &shard, &applied, &marker), 0);
    assert_int_equal(shard, SRC_SHARD);
    assert_int_equal(applied, SRC_INDEX);
    /* An empty shard's single chunk and a hand-made one peek the same way. */
    struct stream empty;
    stream_init(&empty);
    assert_int_equal(store_snapshot_write(f->dst, 7, sink, &empty), 0);
    assert_int_equal(store_snapshot_peek(empty.chunks[0], empty.lens[0], &shard, &applied, &marker),
                     0);
    assert_int_equal(shard, 7);
    assert_int_equal(applied, 0);
    stream_free(&empty);
    struct stream crafted;
    craft_stream(&crafted, 3, CRAFT_NONE);
    assert_int_equal(
        store_snapshot_peek(crafted.chunks[0], crafted.lens[0], &shard, &applied, &marker), 0);
    assert_int_equal(shard, 3);
    assert_int_equal(applied, 9);
    stream_free(&crafted);

    /* A buffer shorter than a header, even by one byte. */
    assert_int_equal(store_snapshot_peek(s->chunks[0], HDR - 1, &shard, &applied, &marker),
                     RT_ECORRUPT);
    assert_int_equal(store_snapshot_peek(s->chunks[0], 0, &shard, &applied, &marker), RT_ECORRUPT);
    /* A wrong magic: another byte anywhere in it, or another format version. */
    uint8_t head[HDR];
    for (size_t i = 0; i < 8; i++) {
        memcpy(head, s->chunks[0], HDR);
        head[i] ^= 0x20;
        assert_int_equal(store_snapshot_peek(head, HDR, &shard, &applied, &marker), RT_ECORRUPT);
    }
    memcpy(head, s->chunks[0], HDR);
    memcpy(head, "PRSNAP02", 8);
    assert_int_equal(store_snapshot_peek(head, HDR, &shard, &applied, &marker), RT_ECORRUPT);
    /* No buffer at all. */
    assert_int_equal(store_snapshot_peek(NULL, 0, &shard, &applied, &marker), RT_ECORRUPT);
    assert_int_equal(store_snapshot_peek(NULL, HDR, &shard, &applied, &marker), RT_ECORRUPT);
}

/* A marker (what a node keeps as its own raft snapshot) peeks as one, with its shard and
 * index; anything more than the bare header that claims to be a marker is refused, and
 * restore refuses every marker, leaving the shard as it was. */
static void test_marker(void **state)
{
    struct fixture *f = *state;
    uint8_t m[HDR + 1];
    store_snapshot_marker(SRC_SHARD, 123456789012ull, m);
    uint16_t shard = 0;
    uint64_t applied = 0;
    int marker = 0;
    assert_int_equal(store_snapshot_peek(m, HDR, &shard, &applied, &marker), 0);
    assert_int_equal(marker, 1);
    assert_int_equal(shard, SRC_SHARD);
    assert_int_equal(applied, 123456789012ull);
    /* A full stream's first chunk is not a marker. */
    assert_int_equal(
        store_snapshot_peek(f->snap.chunks[0], f->snap.lens[0], &shard, &applied, &marker), 0);
    assert_int_equal(marker, 0);

    /* Trailing bytes, and each header field a marker must leave at zero. */
    m[HDR] = 0;
    assert_int_equal(store_snapshot_peek(m, HDR + 1, &shard, &applied, &marker), RT_ECORRUPT);
    const size_t fields[] = {11 /* flags: last bit */, 15 /* chunk_no */, 27 /* raw_len */,
                             31 /* comp_len */, 10 /* unknown flag bit */};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uint8_t bad[HDR];
        memcpy(bad, m, HDR);
        bad[fields[i]] ^= fields[i] == 11 ? 0x01 : 0x80;
        assert_int_equal(store_snapshot_peek(bad, HDR, &shard, &applied, &marker), RT_ECORRUPT);
    }

    /* Restore: fill the shard first, so "untouched" means something. */
    assert_int_equal(restore(f->dst, SRC_SHARD, &f->snap), 0);
    uint8_t *chunk = malloc(HDR);
    assert_non_null(chunk);
    memcpy(chunk, m, HDR);
    struct stream s;
    stream_init(&s);
    stream_push(&s, chunk, HDR);
    expect_corrupt(f, SRC_SHARD, &s, "marker");
    stream_free(&s);
}

int main(void)
{
    rt_log_set_level(RT_LOG_WARN); /* PAYRAFT_LOG_LEVEL=info shows each snapshot. */
    rt_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_into_fresh_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_replaces_only_that_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_is_consistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_error_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_largest_record_fits_a_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crafted_stream_restores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
