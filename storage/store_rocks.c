/* store_rocks: RocksDB behind rt_store (see store_rocks.h for the contract).
 *
 * Durability model: every batch goes to RocksDB's WAL, which RocksDB buffers in memory
 * (manual_wal_flush) and writes out when the buffer fills, at a memtable switch, or when
 * store_rocks_sync asks. Nothing is fsync'd per batch: the raft log is what makes a command
 * durable. store_rocks_sync is what lets raft drop its log: the FSM syncs before each raft
 * snapshot, whose file then only names the applied index (cl_fsm.h, Snapshots). WAL records
 * are whole batches and recovery stops at the first torn one (point-in-time recovery), and
 * the database runs with atomic_flush, so whatever survives a crash is the state after some
 * prefix of the committed batches, across every column family at once. Each batch carries
 * its shard's applied index, so after a crash the engine knows exactly where to resume.
 *
 * Every RocksDB error string (errptr) is converted here to RT_EIO with one RT_ERROR line.
 */
#include "store_rocks.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_limits.h"
#include "rt_log.h"
#include "store_internal.h"

/* Defaults when the options say 0. The block cache (with the index and filter blocks in it)
 * and the memtables are most of a node's memory, so both are bounded: 32 MiB of block cache,
 * 16 MiB memtables per column family (smaller ones flushed so often that they cost
 * throughput), and at most STORE_MEMTABLES_BYTES_MAX of memtables in all, past which RocksDB
 * flushes early. docs/benchmarks.md (Memory) has the budget. */
#define STORE_BLOCK_CACHE_BYTES_DEFAULT  (32u * 1024u * 1024u)
#define STORE_WRITE_BUFFER_BYTES_DEFAULT (16u * 1024u * 1024u)
#define STORE_MEMTABLES_BYTES_MAX        (48u * 1024u * 1024u)
/* Bloom filter bits per key: ~1% false positives, so a get of an absent actor (every new
 * order) rarely touches a data block. */
#define STORE_BLOOM_BITS_PER_KEY 10.0
/* Flush and compaction threads: the node's loop thread does the writes; two background jobs
 * keep up with one writer without competing with raft and the loop for cores. */
#define STORE_BACKGROUND_JOBS 2
/* Sorted runs (universal compaction) that trigger a merge; see store_options_create. */
#define STORE_SORTED_RUNS_TRIGGER 8
/* RocksDB's own LOG files in the database directory: bounded so they cannot fill the disk. */
#define STORE_LOG_FILES_KEPT     4u
#define STORE_LOG_FILE_BYTES_MAX (16u * 1024u * 1024u)
/* commit() reuses one write batch; one that grew past this for a huge entry is replaced so
 * that it does not keep the memory forever (entries are usually a few KiB). */
#define STORE_BATCH_KEEP_BYTES_MAX (4u * 1024u * 1024u)
/* Column families as RocksDB sees them: "default" (unused but always present) + ours. */
#define STORE_CF_TOTAL (RT_CF_COUNT + 1)

struct store_rocks {
    struct rt_store store; /* First member: store_rocks_store() hands out &db->store. */
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf_default; /* Unused, but RocksDB needs it open. */
    rocksdb_column_family_handle_t *cfs[RT_CF_COUNT];
    rocksdb_writeoptions_t *write_options; /* WAL, no sync: raft's log is the durable log. */
    rocksdb_readoptions_t *get_options;    /* Point reads: latest state, no bounds. */
    rocksdb_writebatch_t *batch;           /* Reused by commit and drop_shard (no malloc each). */
    struct store_rocks_stats stats;
    /* get_many's arguments and results, reused (a call reads at most RT_BATCH_COMMANDS_MAX). */
    const char *many_keys[RT_BATCH_COMMANDS_MAX];
    size_t many_key_lens[RT_BATCH_COMMANDS_MAX];
    rocksdb_pinnableslice_t *many_values[RT_BATCH_COMMANDS_MAX];
    char *many_errs[RT_BATCH_COMMANDS_MAX];
};

/* Convert a RocksDB error to RT_EIO, logging it once with what failed. Frees @err. */
static int store_error(char *err, const char *what, const char *path)
{
    assert(err != NULL);
    assert(what != NULL);
    if (path != NULL) {
        RT_ERROR("rocksdb %s %s: %s", what, path, err);
    } else {
        RT_ERROR("rocksdb %s: %s", what, err);
    }
    rocksdb_free(err);
    return RT_EIO;
}

static struct store_rocks *store_from(struct rt_store *store)
{
    assert(store != NULL);
    struct store_rocks *db = (struct store_rocks *)store; /* rt_store is the first member. */
    assert(db->db != NULL);
    return db;
}

/* The exclusive end of the range of keys that start with @prefix, written to @out: @prefix
 * with its last byte below 0xff incremented and the bytes after it dropped (so 00 ff -> 01).
 * When @prefix is all 0xff no such key exists; the end is then 0xff repeated past the longest
 * key we store, which is above every stored key that starts with @prefix. Returns its length. */
static size_t store_prefix_end(const uint8_t *prefix, size_t prefix_len, uint8_t *out,
                               size_t out_cap)
{
    assert(prefix != NULL || prefix_len == 0);
    assert(out_cap > RT_STORED_KEY_BYTES_MAX && prefix_len <= out_cap);
    for (size_t n = prefix_len; n > 0; n--) {
        if (prefix[n - 1] != 0xff) {
            memcpy(out, prefix, n - 1);
            out[n - 1] = (uint8_t)(prefix[n - 1] + 1);
            return n;
        }
    }
    memset(out, 0xff, RT_STORED_KEY_BYTES_MAX + 1);
    return RT_STORED_KEY_BYTES_MAX + 1;
}

size_t store_rocks_applied_key(uint8_t *out, uint16_t shard)
{
    assert(out != NULL);
    size_t n = rt_key_meta(out, shard, "applied");
    assert(n > RT_KEY_SHARD_BYTES && n <= RT_KEY_BYTES_MAX);
    return n;
}

rocksdb_column_family_handle_t *store_rocks_cf(struct store_rocks *db, enum rt_cf cf)
{
    assert(db != NULL);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    return db->cfs[cf];
}

const rocksdb_snapshot_t *store_rocks_snapshot_acquire(struct store_rocks *db)
{
    assert(db != NULL && db->db != NULL);
    const rocksdb_snapshot_t *snapshot = rocksdb_create_snapshot(db->db);
    assert(snapshot != NULL); /* RocksDB allocates with new: it throws rather than fail. */
    return snapshot;
}

void store_rocks_snapshot_release(struct store_rocks *db, const rocksdb_snapshot_t *snapshot)
{
    assert(db != NULL && db->db != NULL);
    assert(snapshot != NULL);
    rocksdb_release_snapshot(db->db, snapshot);
}

int store_rocks_write(struct store_rocks *db, rocksdb_writebatch_t *batch, const char *what)
{
    assert(db != NULL && db->db != NULL);
    assert(batch != NULL && what != NULL);
    char *err = NULL;
    rocksdb_write(db->db, db->write_options, batch, &err);
    if (err != NULL) {
        return store_error(err, what, NULL);
    }
    return 0;
}

/* Empty db->batch for the next use. Clearing keeps its allocation (no malloc per commit);
 * a batch swollen by a huge entry is replaced instead. */
static void store_batch_recycle(struct store_rocks *db)
{
    assert(db != NULL && db->batch != NULL);
    size_t size = 0;
    (void)rocksdb_writebatch_data(db->batch, &size);
    if (size > STORE_BATCH_KEEP_BYTES_MAX) {
        rocksdb_writebatch_destroy(db->batch);
        db->batch = rocksdb_writebatch_create();
    } else {
        rocksdb_writebatch_clear(db->batch);
    }
    assert(db->batch != NULL);
}

/* ---- Reads ---- */

/* Point read of (cf, key) with @read_options. 0 with *slice set (NULL when absent), RT_EIO. */
static int store_read(struct store_rocks *db, const rocksdb_readoptions_t *read_options,
                      enum rt_cf cf, const uint8_t *key, size_t key_len,
                      rocksdb_pinnableslice_t **slice)
{
    assert(db != NULL && read_options != NULL);
    assert(cf >= 0 && cf < RT_CF_COUNT && slice != NULL);
    assert(key != NULL && key_len > 0);
    char *err = NULL;
    /* Pinned: the value stays in the block cache or memtable, copied once into the caller's
     * buffer instead of twice through a malloc'd std::string. */
    *slice =
        rocksdb_get_pinned_cf(db->db, read_options, db->cfs[cf], (const char *)key, key_len, &err);
    if (err != NULL) {
        assert(*slice == NULL);
        return store_error(err, "get", NULL);
    }
    return 0;
}

/* A stored value longer than any we write means a damaged or foreign database. */
static int store_value_check(enum rt_cf cf, size_t val_len)
{
    if (val_len > RT_STORED_VALUE_BYTES_MAX) {
        RT_ERROR("store get: %s value of %zu bytes is over the stored limit", rt_cf_name(cf),
                 val_len);
        return RT_ECORRUPT;
    }
    return 0;
}

static int store_get(struct rt_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len,
                     struct rt_buf *out)
{
    struct store_rocks *db = store_from(store);
    assert(out != NULL);
    db->stats.gets++;
    rocksdb_pinnableslice_t *slice;
    int rv = store_read(db, db->get_options, cf, key, key_len, &slice);
    if (rv != 0) {
        return rv;
    }
    if (slice == NULL) {
        return RT_ENOTFOUND;
    }
    size_t val_len = 0;
    const char *val = rocksdb_pinnableslice_value(slice, &val_len);
    rv = store_value_check(cf, val_len);
    if (rv == 0) {
        rv = rt_buf_append(out, val, val_len);
    }
    rocksdb_pinnableslice_destroy(slice);
    return rv;
}

/* RocksDB's batched MultiGet: one pass through the memtables and each table file for all the
 * keys, with their filter probes prefetched together, where @count gets would each walk the
 * whole read path and wait on each probe's cache miss in turn. */
static int store_get_many(struct rt_store *store, enum rt_cf cf, uint32_t count,
                          const uint8_t *const *keys, const size_t *key_lens, rt_get_many_cb cb,
                          void *arg)
{
    struct store_rocks *db = store_from(store);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    assert(keys != NULL && key_lens != NULL && cb != NULL);
    if (count == 0 || count > RT_BATCH_COMMANDS_MAX) {
        return count == 0 ? 0 : RT_EINVAL;
    }
    db->stats.gets += count;
    for (uint32_t i = 0; i < count; i++) {
        assert(keys[i] != NULL && key_lens[i] > 0);
        db->many_keys[i] = (const char *)keys[i];
        db->many_key_lens[i] = key_lens[i];
    }
    rocksdb_batched_multi_get_cf(db->db, db->get_options, db->cfs[cf], count, db->many_keys,
                                 db->many_key_lens, db->many_values, db->many_errs, false);
    int rv = 0;
    for (uint32_t i = 0; i < count; i++) {
        rocksdb_pinnableslice_t *slice = db->many_values[i];
        if (db->many_errs[i] != NULL) {
            assert(slice == NULL);
            int err = store_error(db->many_errs[i], "multi-get", NULL);
            rv = rv != 0 ? rv : err;
            continue;
        }
        if (slice == NULL) {
            cb(arg, i, NULL, 0);
            continue;
        }
        size_t val_len = 0;
        const char *val = rocksdb_pinnableslice_value(slice, &val_len);
        int checked = store_value_check(cf, val_len);
        if (checked == 0) {
            cb(arg, i, (const uint8_t *)(val_len > 0 ? val : ""), val_len);
        }
        rv = rv != 0 ? rv : checked;
        rocksdb_pinnableslice_destroy(slice);
    }
    return rv;
}

/* Applied record of @shard read with @read_options (latest, or a snapshot). */
static int store_applied_read(struct store_rocks *db, const rocksdb_readoptions_t *read_options,
                              uint16_t shard, struct rt_applied *applied)
{
    assert(db != NULL && read_options != NULL);
    assert(applied != NULL);
    memset(applied, 0, sizeof(*applied));
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = store_rocks_applied_key(key, shard);
    rocksdb_pinnableslice_t *slice;
    int rv = store_read(db, read_options, RT_CF_META, key, key_len, &slice);
    if (rv != 0) {
        return rv;
    }
    if (slice == NULL) {
        return 0; /* Nothing ever applied (or the shard was dropped). */
    }
    size_t val_len = 0;
    const char *val = rocksdb_pinnableslice_value(slice, &val_len);
    rv = rt_applied_decode((const uint8_t *)val, val_len, applied);
    if (rv != 0) {
        RT_ERROR("store: applied record of shard %u is %zu bytes, not 16 (or 8)", (unsigned)shard,
                 val_len);
    }
    rocksdb_pinnableslice_destroy(slice);
    return rv;
}

static int store_applied(struct rt_store *store, uint16_t shard, struct rt_applied *applied)
{
    struct store_rocks *db = store_from(store);
    return store_applied_read(db, db->get_options, shard, applied);
}

int store_rocks_applied_index_at(struct store_rocks *db, const rocksdb_snapshot_t *snapshot,
                                 uint16_t shard, uint64_t *index)
{
    assert(db != NULL && snapshot != NULL);
    assert(index != NULL);
    rocksdb_readoptions_t *read_options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(read_options, snapshot);
    struct rt_applied applied;
    int rv = store_applied_read(db, read_options, shard, &applied);
    rocksdb_readoptions_destroy(read_options);
    *index = applied.index;
    return rv;
}

int store_rocks_scan_at(struct store_rocks *db, const rocksdb_snapshot_t *snapshot, enum rt_cf cf,
                        const uint8_t *prefix, size_t prefix_len, const uint8_t *start,
                        size_t start_len, rt_scan_cb cb, void *arg)
{
    assert(db != NULL && cb != NULL);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    assert(prefix != NULL || prefix_len == 0);
    assert(prefix_len <= RT_STORED_KEY_BYTES_MAX);
    assert(start != NULL || start_len == 0);
    /* RocksDB keeps a pointer to the bound, not a copy: it lives here until the iterator is
     * destroyed. */
    uint8_t end[RT_STORED_KEY_BYTES_MAX + 1];
    size_t end_len = store_prefix_end(prefix, prefix_len, end, sizeof(end));
    /* Read options per call, not shared: a callback may itself scan, and a nested call must
     * not move this iterator's bound. */
    rocksdb_readoptions_t *read_options = rocksdb_readoptions_create();
    if (prefix_len > 0) {
        rocksdb_readoptions_set_iterate_upper_bound(read_options, (const char *)end, end_len);
    }
    if (snapshot != NULL) {
        rocksdb_readoptions_set_snapshot(read_options, snapshot);
        /* A snapshot reads a whole shard once: keep it from evicting the hot blocks. */
        rocksdb_readoptions_set_fill_cache(read_options, 0);
    }
    rocksdb_iterator_t *iter = rocksdb_create_iterator_cf(db->db, read_options, db->cfs[cf]);
    if (start != NULL && rt_bytes_compare(start, start_len, prefix, prefix_len) > 0) {
        rocksdb_iter_seek(iter, (const char *)start, start_len);
    } else {
        rocksdb_iter_seek(iter, (const char *)prefix, prefix_len);
    }
    int rv = 0;
    for (; rocksdb_iter_valid(iter); rocksdb_iter_next(iter)) {
        size_t key_len = 0;
        size_t val_len = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(iter, &key_len);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(iter, &val_len);
        /* The upper bound ends the range; the prefix check is a cheap guard on it. */
        assert(key_len >= prefix_len && (prefix_len == 0 || memcmp(key, prefix, prefix_len) == 0));
        if (key_len > RT_STORED_KEY_BYTES_MAX || val_len > RT_STORED_VALUE_BYTES_MAX) {
            RT_ERROR("store scan %s: key of %zu or value of %zu bytes is over the stored limits",
                     rt_cf_name(cf), key_len, val_len);
            rv = RT_ECORRUPT;
            break;
        }
        rv = cb(arg, key, key_len, val, val_len);
        assert(rv <= 1);
        if (rv != 0) {
            rv = rv == 1 ? 0 : rv; /* 1 = stop here, not an error. */
            break;
        }
    }
    if (rv == 0) {
        char *err = NULL;
        rocksdb_iter_get_error(iter, &err);
        if (err != NULL) {
            rv = store_error(err, "scan", rt_cf_name(cf));
        }
    }
    rocksdb_iter_destroy(iter);
    rocksdb_readoptions_destroy(read_options);
    return rv;
}

static int store_scan(struct rt_store *store, enum rt_cf cf, const uint8_t *prefix,
                      size_t prefix_len, const uint8_t *start, size_t start_len, rt_scan_cb cb,
                      void *arg)
{
    struct store_rocks *db = store_from(store);
    assert(cb != NULL);
    db->stats.scans++;
    return store_rocks_scan_at(db, NULL, cf, prefix, prefix_len, start, start_len, cb, arg);
}

/* ---- Writes ---- */

static int store_commit(struct rt_store *store, const struct rt_writeset *ws)
{
    struct store_rocks *db = store_from(store);
    assert(ws != NULL);
    assert(ws->count == 0 || ws->writes != NULL);
    rocksdb_writebatch_clear(db->batch);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < ws->count; i++) {
        const struct rt_write *w = &ws->writes[i];
        assert(w->cf < RT_CF_COUNT);
        assert(w->key_len > 0 && (size_t)w->key_off + w->key_len <= ws->arena.len);
        const char *key = (const char *)rt_write_key(ws, w);
        /* Every key of an entry belongs to its shard: a foreign key would escape the shard's
         * snapshots and range deletes. A bug upstream, so refuse the whole entry. */
        if (w->key_len < RT_KEY_SHARD_BYTES || rt_get_be16((const uint8_t *)key) != ws->shard) {
            RT_ERROR("commit: a key outside shard %u", (unsigned)ws->shard);
            return RT_EINTERNAL;
        }
        if (w->op == RT_WRITE_PUT) {
            assert((size_t)w->val_off + w->val_len <= ws->arena.len);
            rocksdb_writebatch_put_cf(db->batch, db->cfs[w->cf], key, w->key_len,
                                      (const char *)rt_write_val(ws, w), w->val_len);
            bytes += (uint64_t)w->key_len + w->val_len;
        } else {
            assert(w->op == RT_WRITE_DEL);
            rocksdb_writebatch_delete_cf(db->batch, db->cfs[w->cf], key, w->key_len);
            bytes += w->key_len;
        }
    }
    /* The applied record goes last, in the same batch: recovery sees it with exactly the data
     * it describes. One record for the index and the history hash: each meta key costs a
     * memtable insert per entry, among the dearest of an entry's writes (docs/benchmarks.md). */
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = store_rocks_applied_key(key, ws->shard);
    uint8_t val[RT_APPLIED_BYTES];
    rt_applied_encode(val, ws->applied_index, ws->history_hash);
    rocksdb_writebatch_put_cf(db->batch, db->cfs[RT_CF_META], (const char *)key, key_len,
                              (const char *)val, sizeof(val));
    int rv = store_rocks_write(db, db->batch, "commit");
    store_batch_recycle(db);
    if (rv != 0) {
        return rv;
    }
    db->stats.commits++;
    db->stats.commit_bytes += bytes + key_len + sizeof(val);
    return 0;
}

static const struct rt_store_ops store_rocks_ops = {
    .get = store_get,
    .get_many = store_get_many,
    .applied = store_applied,
    .commit = store_commit,
    .scan = store_scan,
};

/* ---- Opening ---- */

void store_rocks_options_default(struct store_rocks_options *options)
{
    assert(options != NULL);
    memset(options, 0, sizeof(*options));
    options->block_cache_bytes = STORE_BLOCK_CACHE_BYTES_DEFAULT;
    options->write_buffer_bytes = STORE_WRITE_BUFFER_BYTES_DEFAULT;
    options->create_if_missing = 1;
    assert(options->block_cache_bytes > 0 && options->write_buffer_bytes > 0);
}

enum store_path_kind {
    STORE_PATH_NEW, /* Nothing there (or an empty directory): create a database. */
    STORE_PATH_DB,  /* A RocksDB database: open it if it has our column families. */
};

/* Decide what @path holds, refusing anything that is neither nothing nor a RocksDB database:
 * opening RocksDB with create_if_missing in a directory of someone else's files would
 * scatter a new database among them. */
static int store_path_classify(const char *path, int create_if_missing, enum store_path_kind *kind)
{
    assert(path != NULL);
    assert(kind != NULL);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) {
            RT_ERROR("store open %s: %s", path, strerror(errno));
            return RT_EIO;
        }
        if (!create_if_missing) {
            RT_ERROR("store open %s: no database there (and create_if_missing is off)", path);
            return RT_EIO;
        }
        *kind = STORE_PATH_NEW;
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        RT_ERROR("store open %s: not a directory, not a Payraft database", path);
        return RT_EIO;
    }
    char current[PATH_MAX];
    int n = snprintf(current, sizeof(current), "%s/CURRENT", path);
    if (n < 0 || (size_t)n >= sizeof(current)) {
        RT_ERROR("store open %s: path too long", path);
        return RT_EIO;
    }
    if (stat(current, &st) == 0) {
        *kind = STORE_PATH_DB;
        return 0;
    }
    DIR *dir = opendir(path);
    if (dir == NULL) {
        RT_ERROR("store open %s: %s", path, strerror(errno));
        return RT_EIO;
    }
    int empty = 1;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    }
    closedir(dir);
    if (!empty) {
        RT_ERROR("store open %s: directory holds files but no RocksDB database, "
                 "not a Payraft database",
                 path);
        return RT_EIO;
    }
    if (!create_if_missing) {
        RT_ERROR("store open %s: empty directory (and create_if_missing is off)", path);
        return RT_EIO;
    }
    *kind = STORE_PATH_NEW;
    return 0;
}

/* An existing database must have exactly our column families: a missing one means it is not
 * a Payraft database; an unknown one means a newer format (RocksDB would also refuse to open
 * without a handle for every family). */
static int store_check_column_families(const rocksdb_options_t *options, const char *path,
                                       const char *const *names)
{
    assert(options != NULL && path != NULL);
    assert(names != NULL);
    char *err = NULL;
    size_t count = 0;
    char **list = rocksdb_list_column_families(options, path, &count, &err);
    if (err != NULL) {
        return store_error(err, "list column families of", path);
    }
    int rv = 0;
    for (size_t i = 0; i < count && rv == 0; i++) {
        int known = 0;
        for (int j = 0; j < STORE_CF_TOTAL; j++) {
            known |= strcmp(list[i], names[j]) == 0;
        }
        if (!known) {
            RT_ERROR("store open %s: unknown column family '%s' (newer format, or not a "
                     "Payraft database)",
                     path, list[i]);
            rv = RT_EIO;
        }
    }
    for (int j = 0; j < STORE_CF_TOTAL && rv == 0; j++) {
        int found = 0;
        for (size_t i = 0; i < count; i++) {
            found |= strcmp(list[i], names[j]) == 0;
        }
        if (!found) {
            RT_ERROR("store open %s: no column family '%s', not a Payraft database", path,
                     names[j]);
            rv = RT_EIO;
        }
    }
    rocksdb_list_column_families_destroy(list, count);
    return rv;
}

/* Write-back step for every file RocksDB writes (SSTs, the WAL). */
#define STORE_WRITE_BACK_STEP_BYTES (1u << 20)

void store_rocks_background_options(rocksdb_options_t *options)
{
    assert(options != NULL);
    /* A flush wrote its SST, and the store's WAL (never synced per batch) sat in the page
     * cache, until one fsync sent tens of MB to the disk at once; every raft log fdatasync
     * behind it took 30-40 ms instead of ~0.2. Written back as they grow (sync_file_range per
     * step), they leave little for that fsync. */
    rocksdb_options_set_bytes_per_sync(options, STORE_WRITE_BACK_STEP_BYTES);
    rocksdb_options_set_wal_bytes_per_sync(options, STORE_WRITE_BACK_STEP_BYTES);
    /* A flush or compaction took a core from the loop threads, and with it the p99 of every
     * request in flight. At nice 19 they run on cycles the loops leave; when a memtable stays
     * full RocksDB stalls the writer, the loop then waits and the flush gets the core. 60 s
     * at saturation on the two-core bench machine logged no stall. Process-wide: the default
     * Env's thread pools, shared by every database; setting it again is harmless. */
    rocksdb_env_t *env = rocksdb_create_default_env();
    rocksdb_env_lower_thread_pool_cpu_priority(env);
    rocksdb_env_lower_high_priority_thread_pool_cpu_priority(env);
    rocksdb_env_destroy(env);
}

void store_rocks_memtable_options(rocksdb_options_t *options, size_t write_buffer_bytes)
{
    assert(options != NULL && write_buffer_bytes > 0);
    rocksdb_options_set_write_buffer_size(options, write_buffer_bytes);
    /* Page faults were 85% fewer with huge-page blocks, and a loaded cluster on the bench VM,
     * where a fault is dear, took 15-30% more orders/s (docs/benchmarks.md, optimisation log).
     * A smaller memtable (the meta group's, 1 MiB) keeps RocksDB's smaller blocks: a 2 MiB
     * block for each of its column families would be memory for nothing. */
    if (write_buffer_bytes >= 8u * (size_t)STORE_ARENA_BLOCK_BYTES) {
        rocksdb_options_set_arena_block_size(options, STORE_ARENA_BLOCK_BYTES);
    }
}

/* A block-based table factory for @options over @cache, with bloom filters in its files or
 * without. */
static void store_table_options(rocksdb_options_t *options, rocksdb_cache_t *cache, bool filters)
{
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(table, cache);
    if (filters) {
        /* The table options take ownership of the filter policy. */
        rocksdb_block_based_options_set_filter_policy(
            table, rocksdb_filterpolicy_create_bloom_full(STORE_BLOOM_BITS_PER_KEY));
    }
    /* Index and filter blocks stay outside the block cache (RocksDB's default): in it, a
     * 32 MiB cache lost them to data blocks as the data grew, and every lookup of a new key
     * read a filter block back (a third of the throughput after 500k orders; docs/benchmarks.md
     * optimisation log). Their memory grows with the data, about 1.5 bytes per key. */
    rocksdb_options_set_block_based_table_factory(options, table);
    /* The factory holds its own references to the cache and filter: drop our wrapper. */
    rocksdb_block_based_options_destroy(table);
}

/* True for the column families read by key for keys that are often absent, where bloom filters
 * answer without a search: state (every new order) and index (a lookup that misses the id records
 * falls back to a key of its own, and an unknown id misses both). The others are scanned, or read
 * rarely and mostly for keys that exist (a due timer, a shard's inbox mark, the applied record at
 * start), where a filter answers "maybe" and saves nothing; without one they save a memtable filter
 * each (STORE_MEMTABLE_BLOOM_RATIO of the write buffer, zeroed at every memtable switch, and atomic
 * flush switches every family's at once) and the filter blocks of their files. */
static bool store_cf_filtered(enum rt_cf cf)
{
    return cf == RT_CF_STATE || cf == RT_CF_INDEX;
}

/* The database options, which are also the column family options of the filtered families
 * (store_cf_filtered); *@unfiltered gets a copy without filters for the others. Both are
 * the caller's to destroy. */
static rocksdb_options_t *store_options_create(const struct store_rocks_options *o,
                                               enum store_path_kind kind,
                                               rocksdb_options_t **unfiltered)
{
    assert(o != NULL);
    assert(kind == STORE_PATH_NEW || kind == STORE_PATH_DB);
    size_t cache_bytes =
        o->block_cache_bytes != 0 ? o->block_cache_bytes : STORE_BLOCK_CACHE_BYTES_DEFAULT;
    size_t buffer_bytes =
        o->write_buffer_bytes != 0 ? o->write_buffer_bytes : STORE_WRITE_BUFFER_BYTES_DEFAULT;
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, kind == STORE_PATH_NEW);
    rocksdb_options_set_error_if_exists(options, kind == STORE_PATH_NEW);
    /* Only a new database gets its column families created: an existing one was checked to
     * have them all. */
    rocksdb_options_set_create_missing_column_families(options, kind == STORE_PATH_NEW);
    /* Recovery must be a consistent prefix across families: memtables flush together, and the
     * WAL replays whole batches up to the first torn one. */
    rocksdb_options_set_atomic_flush(options, 1);
    rocksdb_options_set_wal_recovery_mode(options, rocksdb_point_in_time_recovery);
    /* The WAL is written from an in-memory buffer, not with a write() per batch (~0.4 us per
     * command in bench_apply); store_rocks_sync writes and syncs it when it must be durable. */
    rocksdb_options_set_manual_wal_flush(options, 1);
    rocksdb_options_set_max_background_jobs(options, STORE_BACKGROUND_JOBS);
    store_rocks_memtable_options(options, buffer_bytes);
    rocksdb_options_set_db_write_buffer_size(options, buffer_bytes * 3 < STORE_MEMTABLES_BYTES_MAX
                                                          ? buffer_bytes * 3
                                                          : STORE_MEMTABLES_BYTES_MAX);
    /* Most point reads in apply look for keys that do not exist yet (a new order, a new
     * merchant order number): a bloom filter over the memtable's whole keys answers them
     * without walking the skip list. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(options, STORE_MEMTABLE_BLOOM_RATIO);
    rocksdb_options_set_memtable_whole_key_filtering(options, 1);
    /* LZ4 on every level: compaction shares the node's cores with apply, and zstd on the
     * bottommost level cost ~5% of a loaded node's CPU for a smaller disk footprint we do not
     * need (docs/benchmarks.md, optimisation log). */
    rocksdb_options_set_compression(options, rocksdb_lz4_compression);
    rocksdb_options_set_bottommost_compression(options, rocksdb_lz4_compression);
    /* Universal (tiered) compaction: order keys arrive in no particular order, so with
     * leveled compaction every flush overlapped all of level 1 and rewrote it, and compaction
     * took 42% of a loaded node's CPU after ~2M orders; universal merges sorted runs of
     * similar size and took 29% (docs/benchmarks.md, optimisation log). The price is disk
     * space: up to twice the data while a full merge runs. A database made with leveled
     * compaction opens as it is. */
    rocksdb_options_set_compaction_style(options, rocksdb_universal_compaction);
    /* Merge once 8 sorted runs pile up, not RocksDB's 4: fewer, larger merges (compaction
     * 29% -> 19% of a loaded node's CPU). Still well below the 20 runs at which RocksDB starts
     * slowing writes down. */
    rocksdb_options_set_level0_file_num_compaction_trigger(options, STORE_SORTED_RUNS_TRIGGER);
    rocksdb_options_set_keep_log_file_num(options, STORE_LOG_FILES_KEPT);
    rocksdb_options_set_max_log_file_size(options, STORE_LOG_FILE_BYTES_MAX);
    store_rocks_background_options(options);

    /* One block cache for every family: the factories hold their own references to it. */
    rocksdb_cache_t *cache = rocksdb_cache_create_lru(cache_bytes);
    *unfiltered = rocksdb_options_create_copy(options);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(*unfiltered, 0.0);
    store_table_options(*unfiltered, cache, false);
    store_table_options(options, cache, true);
    rocksdb_cache_destroy(cache);
    return options;
}

int store_rocks_open(const char *path, const struct store_rocks_options *options,
                     struct store_rocks **out)
{
    assert(path != NULL && options != NULL);
    assert(out != NULL);
    *out = NULL;
    const char *names[STORE_CF_TOTAL];
    names[0] = "default";
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        names[cf + 1] = rt_cf_name((enum rt_cf)cf);
    }

    enum store_path_kind kind;
    int rv = store_path_classify(path, options->create_if_missing, &kind);
    if (rv != 0) {
        return rv;
    }
    struct store_rocks *db = calloc(1, sizeof(*db));
    if (db == NULL) {
        return RT_ENOMEM;
    }
    rocksdb_options_t *unfiltered = NULL;
    rocksdb_options_t *db_options = store_options_create(options, kind, &unfiltered);
    if (kind == STORE_PATH_DB) {
        rv = store_check_column_families(db_options, path, names);
        if (rv != 0) {
            goto err_free_options;
        }
    }
    const rocksdb_options_t *cf_options[STORE_CF_TOTAL];
    rocksdb_column_family_handle_t *handles[STORE_CF_TOTAL];
    for (int i = 0; i < STORE_CF_TOTAL; i++) {
        /* Opened in the order of names: "default" first, then ours. */
        cf_options[i] = i > 0 && store_cf_filtered((enum rt_cf)(i - 1)) ? db_options : unfiltered;
        handles[i] = NULL;
    }
    char *err = NULL;
    /* A database held by another process fails here ("lock ... Resource temporarily
     * unavailable"), as does a second open within this process. */
    db->db = rocksdb_open_column_families(db_options, path, STORE_CF_TOTAL, names, cf_options,
                                          handles, &err);
    if (err != NULL) {
        rv = store_error(err, "open", path);
        goto err_free_options;
    }
    assert(db->db != NULL);
    db->cf_default = handles[0];
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        db->cfs[cf] = handles[cf + 1];
        assert(db->cfs[cf] != NULL);
    }
    /* The database copied what it needs from the options. */
    rocksdb_options_destroy(unfiltered);
    rocksdb_options_destroy(db_options);

    /* RocksDB counts every operation in thread-local perf counters by default; nothing reads
     * them, and they cost ~1% of a loaded node. The level is per thread: this is the thread
     * that opens the store and uses it (the node's loop). */
    rocksdb_set_perf_level(rocksdb_disable);
    db->write_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(db->write_options, 0);
    rocksdb_writeoptions_set_sync(db->write_options, 0);
    db->get_options = rocksdb_readoptions_create();
    db->batch = rocksdb_writebatch_create();
    db->store.ops = &store_rocks_ops;
    RT_INFO("store open %s (%s)", path, kind == STORE_PATH_NEW ? "created" : "existing");
    *out = db;
    return 0;

err_free_options:
    rocksdb_options_destroy(unfiltered);
    rocksdb_options_destroy(db_options);
    free(db);
    return rv;
}

int store_rocks_sync(struct store_rocks *db)
{
    assert(db != NULL && db->db != NULL);
    char *err = NULL;
    /* FlushWAL takes RocksDB's log-writer mutex, as every WAL append with manual_wal_flush
     * does, so this is safe from a worker thread while the loop keeps writing. */
    rocksdb_flush_wal(db->db, 1, &err);
    if (err != NULL) {
        return store_error(err, "sync", "WAL");
    }
    return 0;
}

/* Write the memtables out, so that the next open has no WAL to replay: replaying re-inserts
 * every key into a memtable (up to STORE_MEMTABLES_BYTES_MAX of them, 0.3 s of a restart's
 * 1.8 s on the bench VM), while the flush costs here what the open would otherwise spend
 * flushing what it replayed. Whatever a crash or a failed flush leaves in memtables, the WAL
 * (synced first) still holds for the next open to replay. */
char *store_rocks_flush_cf(rocksdb_t *db, rocksdb_column_family_handle_t *cf)
{
    assert(db != NULL);
    rocksdb_flushoptions_t *options = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(options, 1);
    char *err = NULL;
    if (cf != NULL) {
        rocksdb_flush_cf(db, options, cf, &err);
    } else {
        rocksdb_flush(db, options, &err);
    }
    rocksdb_flushoptions_destroy(options);
    return err;
}

static void store_flush_memtables(struct store_rocks *db)
{
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        char *err = store_rocks_flush_cf(db->db, db->cfs[cf]);
        if (err != NULL) {
            RT_WARN("store close: flushing %s: %s (the next open replays the WAL)",
                    rt_cf_name((enum rt_cf)cf), err);
            rocksdb_free(err);
            break;
        }
    }
}

void store_rocks_close(struct store_rocks *db)
{
    if (db == NULL) {
        return;
    }
    assert(db->db != NULL);
    assert(db->batch != NULL);
    /* The WAL buffer holds the newest batches: write and sync it, so that the next open
     * replays everything applied (raft then has nothing to re-apply). A failure loses nothing
     * committed: the raft log still has those entries. */
    if (store_rocks_sync(db) != 0) {
        RT_ERROR("store close: the newest writes may be lost; entries will be re-applied from "
                 "the raft log");
    } else {
        store_flush_memtables(db);
    }
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        rocksdb_column_family_handle_destroy(db->cfs[cf]);
    }
    rocksdb_column_family_handle_destroy(db->cf_default);
    rocksdb_close(db->db);
    rocksdb_writebatch_destroy(db->batch);
    rocksdb_readoptions_destroy(db->get_options);
    rocksdb_writeoptions_destroy(db->write_options);
    free(db);
}

struct rt_store *store_rocks_store(struct store_rocks *db)
{
    assert(db != NULL);
    assert(db->store.ops == &store_rocks_ops);
    return &db->store;
}

int store_rocks_drop_shard(struct store_rocks *db, uint16_t shard)
{
    assert(db != NULL && db->db != NULL);
    assert(db->batch != NULL);
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, shard);
    uint8_t end[RT_STORED_KEY_BYTES_MAX + 1];
    size_t end_len = store_prefix_end(prefix, sizeof(prefix), end, sizeof(end));
    /* One batch: the shard disappears from every family at once, applied index included. */
    rocksdb_writebatch_clear(db->batch);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        rocksdb_writebatch_delete_range_cf(db->batch, db->cfs[cf], (const char *)prefix,
                                           sizeof(prefix), (const char *)end, end_len);
    }
    int rv = store_rocks_write(db, db->batch, "drop shard");
    store_batch_recycle(db);
    if (rv == 0) {
        RT_INFO("store: dropped shard %u", (unsigned)shard);
    }
    return rv;
}

int store_rocks_checkpoint(struct store_rocks *db, const char *dir)
{
    assert(db != NULL && db->db != NULL);
    assert(dir != NULL);
    char *err = NULL;
    rocksdb_checkpoint_t *checkpoint = rocksdb_checkpoint_object_create(db->db, &err);
    if (err != NULL) {
        return store_error(err, "checkpoint", dir);
    }
    /* log_size_for_flush 0 = always flush first: the memtables' newest batches may still be
     * in the WAL's in-memory buffer, in no file a checkpoint could link. That flush is atomic
     * across families (atomic_flush), so the checkpoint is a consistent prefix like any
     * crash recovery. */
    rocksdb_checkpoint_create(checkpoint, dir, 0, &err);
    rocksdb_checkpoint_object_destroy(checkpoint);
    if (err != NULL) {
        return store_error(err, "checkpoint", dir);
    }
    return 0;
}

void store_rocks_stats(const struct store_rocks *db, struct store_rocks_stats *stats)
{
    assert(db != NULL);
    assert(stats != NULL);
    *stats = db->stats;
}

/* A property of @cf (NULL: the default family); 0 if RocksDB does not know it. */
static uint64_t store_property(rocksdb_t *db, rocksdb_column_family_handle_t *cf, const char *name)
{
    uint64_t value = 0;
    int rv = cf != NULL ? rocksdb_property_int_cf(db, cf, name, &value)
                        : rocksdb_property_int(db, name, &value);
    return rv == 0 ? value : 0;
}

void store_rocks_memory_of(rocksdb_t *db, rocksdb_column_family_handle_t *const *cfs, size_t count,
                           struct store_rocks_memory *out)
{
    assert(db != NULL && out != NULL);
    assert(count == 0 || cfs != NULL);
    /* The block cache is shared by the families: counted once. */
    out->block_cache += store_property(db, count > 0 ? cfs[0] : NULL, "rocksdb.block-cache-usage");
    for (size_t i = 0; i < (count > 0 ? count : 1); i++) {
        rocksdb_column_family_handle_t *cf = count > 0 ? cfs[i] : NULL;
        out->memtables += store_property(db, cf, "rocksdb.cur-size-all-mem-tables");
        out->table_readers += store_property(db, cf, "rocksdb.estimate-table-readers-mem");
    }
}

void store_rocks_memory(const struct store_rocks *db, struct store_rocks_memory *out)
{
    assert(db != NULL && out != NULL);
    store_rocks_memory_of(db->db, db->cfs, RT_CF_COUNT, out);
}
