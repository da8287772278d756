/* cl_raftlog: one raft log for every raft group of a node. See cl_raftlog.h. */

#include "cl_raftlog.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_journal.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_log.h"
#include "store_rocks.h"

#define RAFTLOG_LOG_FILES_KEPT     4
#define RAFTLOG_LOG_FILE_BYTES_MAX (4u * 1024u * 1024u)

#define RAFTLOG_KEY_BYTES  11 /* 'e' group(2) index(8) */
#define RAFTLOG_HEAD_BYTES 9  /* term(8) type(1) */
/* A RocksDB write batch's own header: sequence number(8) count(4). */
#define RAFTLOG_BATCH_HEAD_BYTES 12
/* Key of the record that says the journal exists (so that losing it is noticed). */
#define RAFTLOG_JOURNAL_MARKER "j"

/* What a durable write did (raftlog_write_durably): its result, and whether the journal
 * lapped first and whether the write was too large for it. Counted into the stats on the loop
 * thread (raftlog_count), so that the stats change only there. */
struct raftlog_outcome {
    int rv;
    bool lapped;
    bool large;
};

/* An append whose write has not completed. */
struct raftlog_append {
    struct raft_io_append *req;
    uint16_t group;
};

struct raftlog_appends {
    struct raftlog_append *items;
    size_t count, cap;
};

/* An append made while its group installs a snapshot: written once the install is durable. */
struct raftlog_held {
    struct raft_io_append *req;
    const struct raft_entry *entries; /* raft keeps them until the callback. */
    unsigned n;
    raft_index index;
    uint16_t group;
};

struct cl_raftlog {
    uv_loop_t *loop;
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_writeoptions_t *sync_write;
    rocksdb_writeoptions_t *plain_write; /* Not synced: the journal made the write durable. */
    struct cl_journal *journal;
    rocksdb_readoptions_t *read;
    uint16_t group_count;
    raft_index *next_index; /* Per group: the index the next appended entry gets. */
    unsigned *outstanding;  /* Per group: appends not yet completed. */
    bool *installing;       /* Per group: between install_begin and install_end. */
    bool *broken;           /* Per group: an install failed; appends fail until a restart. */
    struct raftlog_held *held;
    size_t held_count, held_cap;
    /* The batch of this loop turn, and the one being written. */
    rocksdb_writebatch_t *pending;
    struct raftlog_appends pending_appends;
    bool pending_dirty; /* pending holds something (an append, a truncation or a forget). */
    rocksdb_writebatch_t *flying;
    struct raftlog_appends flying_appends;
    bool writing;
    bool failed; /* A write failed: the log is no longer contiguous on disk; refuse more. */
    struct raftlog_outcome written; /* Set by the worker; read after it is done. */
    uv_work_t work;
    uv_prepare_t prepare;
    struct cl_raftlog_stats stats;
    void (*failure_cb)(void *arg);
    void *failure_arg;
    /* Closing. */
    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void raftlog_key(uint8_t key[RAFTLOG_KEY_BYTES], uint16_t group, raft_index index)
{
    key[0] = 'e';
    rt_put_be16(key + 1, group);
    rt_put_be64(key + 3, index);
}

static void raftlog_marker_key(uint8_t key[3], uint16_t group)
{
    key[0] = 'm';
    rt_put_be16(key + 1, group);
}

/* Put @entry at @index into @batch. */
static void raftlog_put(rocksdb_writebatch_t *batch, uint16_t group, raft_index index,
                        const struct raft_entry *entry)
{
    uint8_t key[RAFTLOG_KEY_BYTES];
    raftlog_key(key, group, index);
    uint8_t head[RAFTLOG_HEAD_BYTES];
    rt_put_be64(head, entry->term);
    head[8] = (uint8_t)entry->type;
    const char *parts[2] = {(const char *)head, entry->buf.base};
    size_t sizes[2] = {sizeof(head), entry->buf.len};
    const char *key_parts[1] = {(const char *)key};
    size_t key_sizes[1] = {sizeof(key)};
    rocksdb_writebatch_putv(batch, 1, key_parts, key_sizes, 2, parts, sizes);
}

/* Drop @group's entries in [@from, @to). */
static void raftlog_delete(rocksdb_writebatch_t *batch, uint16_t group, raft_index from,
                           raft_index to)
{
    uint8_t start[RAFTLOG_KEY_BYTES], end[RAFTLOG_KEY_BYTES];
    raftlog_key(start, group, from);
    raftlog_key(end, group, to);
    rocksdb_writebatch_delete_range(batch, (const char *)start, sizeof(start), (const char *)end,
                                    sizeof(end));
}

/* Room for one more item in an array of @count items of @size bytes with room for *@cap
 * (doubling, from @first): the array, moved or not, or NULL (out of memory; @items and *@cap
 * unchanged). */
static void *raftlog_reserve(void *items, size_t count, size_t *cap, size_t size, size_t first)
{
    if (count < *cap) {
        return items;
    }
    size_t grown_cap = *cap != 0 ? *cap * 2 : first;
    void *grown = realloc(items, grown_cap * size);
    if (grown != NULL) {
        *cap = grown_cap;
    }
    return grown;
}

static int appends_push(struct raftlog_appends *a, struct raft_io_append *req, uint16_t group)
{
    struct raftlog_append *items = raftlog_reserve(a->items, a->count, &a->cap, sizeof(*items), 64);
    if (items == NULL) {
        return RAFT_NOMEM;
    }
    a->items = items;
    a->items[a->count++] = (struct raftlog_append){req, group};
    return 0;
}

/* ---- Writing ---- */

static void raftlog_kick(struct cl_raftlog *log);
static void raftlog_close_now(struct cl_raftlog *log);
static void raftlog_finish_close(struct cl_raftlog *log);

/* Fire the callbacks of @appends with @status, in order, and empty the list. */
static void raftlog_complete(struct cl_raftlog *log, struct raftlog_appends *appends, int status)
{
    for (size_t i = 0; i < appends->count; i++) {
        assert(log->outstanding[appends->items[i].group] > 0);
        log->outstanding[appends->items[i].group]--;
    }
    /* Callbacks may push to the other list only: iterate over a copy of the count. */
    size_t count = appends->count;
    for (size_t i = 0; i < count; i++) {
        struct raft_io_append *req = appends->items[i].req;
        req->cb(req, status);
    }
    assert(appends->count == count);
    appends->count = 0;
}

/* 0, or RT_EIO with RocksDB's message @err (freed) logged under @what. */
static int raftlog_error(char *err, const char *what)
{
    if (err == NULL) {
        return 0;
    }
    RT_ERROR("raft log: %s: %s", what, err);
    rocksdb_free(err);
    return RT_EIO;
}

/* Make @batch durable and write it to the database: a journal record, synced, then a RocksDB
 * write without a sync (cl_journal.h: the contract; every write of the log goes through here).
 * The outcome's rv is 0 or RT_EIO (logged). Touches the journal and the database only. */
static struct raftlog_outcome raftlog_write_durably(struct cl_raftlog *log,
                                                    rocksdb_writebatch_t *batch)
{
    struct raftlog_outcome o = {0, false, false};
    char *err = NULL;
    size_t len;
    const char *rep = rocksdb_writebatch_data(batch, &len);
    if (!cl_journal_fits(log->journal, len)) {
        /* A lap is done: every earlier write becomes durable in RocksDB, then the journal
         * starts again (syncing the WAL of one lap, which RocksDB has been writing back as it
         * went: store_rocks_background_options). */
        rocksdb_flush_wal(log->db, 1, &err);
        if (raftlog_error(err, "WAL sync") != 0 || cl_journal_restart(log->journal) != 0) {
            o.rv = RT_EIO;
            return o;
        }
        o.lapped = true;
        if (!cl_journal_fits(log->journal, len)) {
            /* Larger than the whole journal: made durable by RocksDB's own sync, while the
             * journal holds no record that a replay could apply over it. */
            o.large = true;
            rocksdb_write(log->db, log->sync_write, batch, &err);
            o.rv = raftlog_error(err, "write");
            return o;
        }
    }
    if (cl_journal_append(log->journal, rep, len) != 0) {
        o.rv = RT_EIO;
        return o;
    }
    rocksdb_write(log->db, log->plain_write, batch, &err);
    o.rv = raftlog_error(err, "write");
    return o;
}

/* Count what a write did into the stats (loop thread). */
static void raftlog_count(struct cl_raftlog *log, const struct raftlog_outcome *o)
{
    log->stats.journal_restarts += o->lapped;
    log->stats.journal_large_writes += o->large;
}

static void raftlog_work(uv_work_t *work)
{
    struct cl_raftlog *log = work->data;
    log->written = raftlog_write_durably(log, log->flying);
}

static void raftlog_written(uv_work_t *work, int status)
{
    struct cl_raftlog *log = work->data;
    assert(status == 0); /* Never cancelled. */
    (void)status;
    int rv = 0;
    raftlog_count(log, &log->written);
    if (log->written.rv != 0) {
        log->stats.failures++;
        log->failed = true;
        rv = RAFT_IOERR;
    } else {
        log->stats.writes++;
    }
    rocksdb_writebatch_clear(log->flying);
    /* The callbacks may append again (to the pending batch) or close the log (which then
     * waits for the end of this function, as the write is still in flight). */
    raftlog_complete(log, &log->flying_appends, rv);
    log->writing = false;
    if (rv != 0 && log->stats.failures == 1 && log->failure_cb != NULL) {
        log->failure_cb(log->failure_arg);
    }
    if (log->closing) {
        raftlog_close_now(log);
        return;
    }
    raftlog_kick(log);
}

/* Start writing the pending batch, unless a write is in flight (it starts when that ends). */
static void raftlog_kick(struct cl_raftlog *log)
{
    if (log->writing || !log->pending_dirty) {
        return;
    }
    if (log->failed) {
        /* What follows a failed write would leave a hole: fail it instead. The node stops
         * (cl_raftlog_set_failure_cb); a restart loads what is durable. */
        rocksdb_writebatch_clear(log->pending);
        log->pending_dirty = false;
        raftlog_complete(log, &log->pending_appends, RAFT_IOERR);
        return;
    }
    rocksdb_writebatch_t *batch = log->flying;
    log->flying = log->pending;
    log->pending = batch;
    struct raftlog_appends appends = log->flying_appends;
    log->flying_appends = log->pending_appends;
    log->pending_appends = appends;
    log->pending_dirty = false;
    log->writing = true;
    log->work.data = log;
    int rv = uv_queue_work(log->loop, &log->work, raftlog_work, raftlog_written);
    assert(rv == 0); /* Fails only for a NULL callback. */
    (void)rv;
}

/* Just before the loop waits: this turn's entries of every group go to disk together. */
static void raftlog_prepare_cb(uv_prepare_t *prepare)
{
    raftlog_kick(prepare->data);
}

/* ---- Open and close ---- */

/* Replay one journal record into the database (not synced: the caller flushes). */
static int raftlog_replay_record(void *arg, const uint8_t *payload, size_t len)
{
    struct cl_raftlog *log = arg;
    if (len < RAFTLOG_BATCH_HEAD_BYTES) {
        RT_ERROR("raft log: journal record of %zu bytes is not a write batch", len);
        return RT_ECORRUPT;
    }
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create_from((const char *)payload, len);
    char *err = NULL;
    rocksdb_write(log->db, log->plain_write, batch, &err);
    rocksdb_writebatch_destroy(batch);
    return raftlog_error(err, "journal replay");
}

/* Open the journal in the database's directory, replay what it holds into the database, make
 * that durable (a flush: the loads that follow then read sorted files, not the vector
 * memtable) and start the journal's next generation. A database that has had a journal
 * refuses to open without it: the journal may hold acknowledged writes the database lacks.
 * 0 or an RT_ code. */
static int raftlog_journal_open(struct cl_raftlog *log, const char *path, size_t journal_bytes)
{
    char journal_path[PATH_MAX];
    if ((size_t)snprintf(journal_path, sizeof(journal_path), "%s/%s", path,
                         CL_RAFTLOG_JOURNAL_FILE) >= sizeof(journal_path)) {
        return RT_EINVAL;
    }
    char *err = NULL;
    size_t marker_len = 0;
    char *marker = rocksdb_get(log->db, log->read, RAFTLOG_JOURNAL_MARKER,
                               strlen(RAFTLOG_JOURNAL_MARKER), &marker_len, &err);
    bool had_journal = marker != NULL;
    rocksdb_free(marker);
    if (raftlog_error(err, "reading the journal's marker") != 0) {
        return RT_EIO;
    }
    if (had_journal && access(journal_path, F_OK) != 0) {
        if (errno != ENOENT) {
            RT_ERROR("raft log: cannot reach its journal %s: %s", journal_path, strerror(errno));
            return RT_EIO;
        }
        RT_ERROR("raft log: %s is missing, but the raft log has had it; it may hold its latest "
                 "acknowledged writes: refusing to start (restore it together with the rest of "
                 "%s, or remove the node's data dir and add the node again)",
                 journal_path, path);
        return RT_EIO;
    }
    uint64_t found;
    int rv = cl_journal_open(journal_path, journal_bytes, raftlog_replay_record, log, &found,
                             &log->journal);
    if (rv != 0) {
        RT_ERROR("raft log journal %s: %s", journal_path, rt_strerror(rv));
        return rv;
    }
    if (found > 0) {
        rv = raftlog_error(store_rocks_flush_cf(log->db, NULL), "flush after the journal's replay");
        RT_INFO("raft log: replayed %llu writes from the journal", (unsigned long long)found);
    }
    if (rv == 0) {
        rv = cl_journal_restart(log->journal);
    }
    if (rv == 0 && !had_journal) {
        /* Synced on its own: the journal holds no record now that a replay could put over it. */
        rocksdb_put(log->db, log->sync_write, RAFTLOG_JOURNAL_MARKER,
                    strlen(RAFTLOG_JOURNAL_MARKER), "", 0, &err);
        rv = raftlog_error(err, "writing the journal's marker");
    }
    return rv;
}

int cl_raftlog_open(uv_loop_t *loop, const char *path, uint16_t group_count,
                    size_t write_buffer_bytes, size_t journal_bytes, struct cl_raftlog **out)
{
    assert(loop != NULL && path != NULL && out != NULL && group_count > 0);
    *out = NULL;
    struct cl_raftlog *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        return RT_ENOMEM;
    }
    log->loop = loop;
    log->group_count = group_count;
    log->next_index = calloc(group_count, sizeof(*log->next_index));
    log->outstanding = calloc(group_count, sizeof(*log->outstanding));
    log->installing = calloc(group_count, sizeof(*log->installing));
    log->broken = calloc(group_count, sizeof(*log->broken));
    log->pending = rocksdb_writebatch_create();
    log->flying = rocksdb_writebatch_create();
    log->options = rocksdb_options_create();
    log->sync_write = rocksdb_writeoptions_create();
    log->plain_write = rocksdb_writeoptions_create();
    log->read = rocksdb_readoptions_create();
    if (log->next_index == NULL || log->outstanding == NULL || log->installing == NULL ||
        log->broken == NULL) {
        log->closing = true;
        raftlog_finish_close(log); /* No database yet: frees everything, the struct too. */
        return RT_ENOMEM;
    }
    for (uint16_t g = 0; g < group_count; g++) {
        log->next_index[g] = 1;
    }
    rocksdb_options_set_create_if_missing(log->options, 1);
    /* The WAL is synced once per lap of the journal (cl_journal.h); after a crash of the
     * machine, what the kernel had not written back of the lap since may be missing or damaged
     * anywhere in the WAL's tail, not only at its end. Point-in-time recovery (RocksDB's
     * default, said here because it matters) keeps what it can read of it without failing the
     * open, and the journal's replay brings back every write since the last sync. */
    rocksdb_options_set_wal_recovery_mode(log->options, rocksdb_point_in_time_recovery);
    store_rocks_memtable_options(
        log->options, write_buffer_bytes != 0 ? write_buffer_bytes : CL_RAFTLOG_WRITE_BUFFER_BYTES);
    /* The memtable is a vector, appended to and sorted once when it is flushed, instead of a
     * skip list searched at every insert: nothing reads this database while the node runs
     * (entries are read only by cl_raftlog_load, after the open has flushed whatever the WAL
     * replayed), and the skip list's search was most of a write's cost (4.5k instructions of
     * 5.9k per order; 5% less CPU per order for a loaded cluster, docs/benchmarks.md). A
     * vector takes one writer at a time, which is how this module writes. */
    rocksdb_options_set_allow_concurrent_memtable_write(log->options, 0);
    rocksdb_options_set_memtable_vector_rep(log->options);
    /* Entries are small msgpack batches that live a few seconds: not worth compressing. */
    rocksdb_options_set_compression(log->options, rocksdb_no_compression);
    rocksdb_options_set_keep_log_file_num(log->options, RAFTLOG_LOG_FILES_KEPT);
    rocksdb_options_set_max_log_file_size(log->options, RAFTLOG_LOG_FILE_BYTES_MAX);
    store_rocks_background_options(log->options);
    rocksdb_writeoptions_set_sync(log->sync_write, 1);
    char *err = NULL;
    log->db = rocksdb_open(log->options, path, &err);
    if (log->db == NULL) {
        RT_ERROR("raft log %s: %s", path, err != NULL ? err : "cannot open");
        rocksdb_free(err);
        log->closing = true;
        raftlog_finish_close(log);
        return RT_EIO;
    }
    int rv = raftlog_journal_open(log, path, journal_bytes);
    if (rv != 0) {
        rocksdb_close(log->db);
        log->db = NULL; /* So that the close frees all now: the handle is not initialised. */
        log->closing = true;
        raftlog_finish_close(log);
        return rv;
    }
    uv_prepare_init(loop, &log->prepare);
    log->prepare.data = log;
    uv_prepare_start(&log->prepare, raftlog_prepare_cb);
    /* The prepare handle alone does not keep the loop running: the node's handles do. */
    uv_unref((uv_handle_t *)&log->prepare);
    *out = log;
    return 0;
}

static void raftlog_prepare_closed(uv_handle_t *handle)
{
    struct cl_raftlog *log = handle->data;
    void (*cb)(void *) = log->close_cb;
    void *arg = log->close_arg;
    free(log);
    if (cb != NULL) {
        cb(arg);
    }
}

/* Free everything but the prepare handle and the struct; then close the handle (if open). */
static void raftlog_finish_close(struct cl_raftlog *log)
{
    assert(log->closing && !log->writing);
    if (log->db != NULL && log->journal != NULL && !log->failed) {
        /* Everything in RocksDB durable, so that the next open has nothing to replay. Failing
         * that, the journal still holds what it holds, and the next open replays it. */
        char *err = NULL;
        rocksdb_flush_wal(log->db, 1, &err);
        if (raftlog_error(err, "WAL sync at close") == 0) {
            (void)cl_journal_restart(log->journal);
        }
    }
    if (log->db != NULL) {
        rocksdb_close(log->db);
    }
    cl_journal_close(log->journal);
    rocksdb_options_destroy(log->options);
    rocksdb_writeoptions_destroy(log->sync_write);
    rocksdb_writeoptions_destroy(log->plain_write);
    rocksdb_readoptions_destroy(log->read);
    rocksdb_writebatch_destroy(log->pending);
    rocksdb_writebatch_destroy(log->flying);
    free(log->pending_appends.items);
    free(log->flying_appends.items);
    free(log->next_index);
    free(log->outstanding);
    free(log->installing);
    free(log->broken);
    free(log->held);
    if (log->db == NULL) {
        free(log); /* Failed open: the handle was never initialised. */
        return;
    }
    uv_close((uv_handle_t *)&log->prepare, raftlog_prepare_closed);
}

void cl_raftlog_close(struct cl_raftlog *log, void (*cb)(void *arg), void *arg)
{
    assert(log != NULL && !log->closing);
    assert(log->pending_appends.count == 0);
    log->closing = true;
    log->close_cb = cb;
    log->close_arg = arg;
    if (!log->writing) { /* Else raftlog_written closes. */
        raftlog_close_now(log);
    }
}

/* Write what is pending (truncations, forgets, resets: no append is outstanding) on the loop
 * thread, as nothing else runs any more, and close. */
static void raftlog_close_now(struct cl_raftlog *log)
{
    assert(log->closing && !log->writing && log->pending_appends.count == 0);
    assert(log->held_count == 0);
    if (log->pending_dirty && !log->failed) {
        struct raftlog_outcome o = raftlog_write_durably(log, log->pending);
        raftlog_count(log, &o);
        log->failed = o.rv != 0; /* Logged; nothing more is written. */
    }
    raftlog_finish_close(log);
}

/* ---- raft_io ---- */

/* Put @n entries of @group from @index into the pending batch, for @req's write. */
static int raftlog_queue(struct cl_raftlog *log, uint16_t group, struct raft_io_append *req,
                         raft_index index, const struct raft_entry entries[], unsigned n)
{
    if (appends_push(&log->pending_appends, req, group) != 0) {
        return RAFT_NOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        raftlog_put(log->pending, group, index + i, &entries[i]);
        log->stats.bytes += entries[i].buf.len;
    }
    log->stats.entries += n;
    log->pending_dirty = true;
    return 0;
}

int cl_raftlog_append(struct cl_raftlog *log, uint16_t group, struct raft_io_append *req,
                      const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    assert(log != NULL && group < log->group_count && req != NULL && n > 0);
    assert(!log->closing);
    if (log->failed || log->broken[group]) {
        return RAFT_IOERR;
    }
    raft_index index = log->next_index[group];
    if (log->installing[group]) {
        struct raftlog_held *held =
            raftlog_reserve(log->held, log->held_count, &log->held_cap, sizeof(*held), 16);
        if (held == NULL) {
            return RAFT_NOMEM;
        }
        log->held = held;
        log->held[log->held_count++] = (struct raftlog_held){req, entries, n, index, group};
    } else if (raftlog_queue(log, group, req, index, entries, n) != 0) {
        return RAFT_NOMEM;
    }
    req->cb = cb;
    log->next_index[group] = index + n;
    log->outstanding[group]++;
    return 0;
}

void cl_raftlog_truncate(struct cl_raftlog *log, uint16_t group, raft_index index)
{
    assert(log != NULL && group < log->group_count && index > 0);
    raftlog_delete(log->pending, group, index, UINT64_MAX);
    log->next_index[group] = index;
    log->pending_dirty = true;
}

void cl_raftlog_forget(struct cl_raftlog *log, uint16_t group, raft_index index)
{
    assert(log != NULL && group < log->group_count);
    if (index <= 1) {
        return;
    }
    raftlog_delete(log->pending, group, 0, index);
    log->pending_dirty = true;
}

void cl_raftlog_reset(struct cl_raftlog *log, uint16_t group, raft_index next_index)
{
    assert(log != NULL && group < log->group_count && next_index > 0);
    raftlog_delete(log->pending, group, 0, UINT64_MAX);
    log->next_index[group] = next_index;
    log->pending_dirty = true;
}

void cl_raftlog_install_begin(struct cl_raftlog *log, uint16_t group, raft_index next_index)
{
    assert(log != NULL && group < log->group_count && next_index > 0);
    assert(!log->installing[group]);
    log->installing[group] = true;
    log->next_index[group] = next_index;
}

void cl_raftlog_install_end(struct cl_raftlog *log, uint16_t group, int status)
{
    assert(log != NULL && group < log->group_count && log->installing[group]);
    log->installing[group] = false;
    if (status == 0) {
        raftlog_delete(log->pending, group, 0, UINT64_MAX);
        log->pending_dirty = true;
    } else {
        /* raft dropped its log for the snapshot it could not store: what it appends next does
         * not follow what is on disk. */
        RT_ERROR("raft log: group %u: snapshot install failed; the group stops appending "
                 "until the node restarts",
                 group);
        log->broken[group] = true;
    }
    /* The held appends, in order: written after the range delete, or failed. */
    size_t kept = 0;
    for (size_t i = 0; i < log->held_count; i++) {
        struct raftlog_held h = log->held[i];
        if (h.group != group) {
            log->held[kept++] = h;
            continue;
        }
        if (!log->broken[group] && raftlog_queue(log, group, h.req, h.index, h.entries, h.n) == 0) {
            continue;
        }
        log->broken[group] = true; /* No memory to queue it: the log cannot stay contiguous. */
        assert(log->outstanding[group] > 0);
        log->outstanding[group]--;
        h.req->cb(h.req, RAFT_IOERR);
    }
    log->held_count = kept;
}

unsigned cl_raftlog_outstanding(const struct cl_raftlog *log, uint16_t group)
{
    assert(log != NULL && group < log->group_count);
    return log->outstanding[group];
}

void cl_raftlog_set_failure_cb(struct cl_raftlog *log, void (*cb)(void *arg), void *arg)
{
    assert(log != NULL);
    log->failure_cb = cb;
    log->failure_arg = arg;
}

void cl_raftlog_get_stats(const struct cl_raftlog *log, struct cl_raftlog_stats *out)
{
    assert(log != NULL && out != NULL);
    *out = log->stats;
}

void cl_raftlog_memory(const struct cl_raftlog *log, struct store_rocks_memory *out)
{
    assert(log != NULL && out != NULL);
    store_rocks_memory_of(log->db, NULL, 0, out);
}

/* ---- Load ---- */

static void entries_free(struct raft_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* Entries of one batch are contiguous: free each batch once. */
        if (entries[i].batch != NULL && (i == 0 || entries[i].batch != entries[i - 1].batch)) {
            raft_free(entries[i].batch);
        }
    }
    raft_free(entries);
}

/* Copy raft_uv's entries here, with the group's marker, in one synced write. */
static int raftlog_migrate(struct cl_raftlog *log, uint16_t group, raft_index start_index,
                           const struct raft_entry *entries, size_t n)
{
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++) {
        raftlog_put(batch, group, start_index + i, &entries[i]);
    }
    uint8_t marker[3];
    raftlog_marker_key(marker, group);
    rocksdb_writebatch_put(batch, (const char *)marker, sizeof(marker), "", 0);
    /* On the loop thread: load runs before the loop does, so no write is in flight. */
    assert(!log->writing);
    struct raftlog_outcome o = raftlog_write_durably(log, batch);
    rocksdb_writebatch_destroy(batch);
    raftlog_count(log, &o);
    if (o.rv != 0) {
        RT_ERROR("raft log: group %u: migrating raft_uv's entries failed", group);
        log->failed = true; /* What the journal holds no longer matches the database. */
        return RAFT_IOERR;
    }
    if (n > 0) {
        RT_INFO("raft log: group %u: took over %zu entries from raft_uv's log", group, n);
    }
    return 0;
}

static int raftlog_has_marker(struct cl_raftlog *log, uint16_t group, bool *has)
{
    uint8_t marker[3];
    raftlog_marker_key(marker, group);
    size_t len = 0;
    char *err = NULL;
    char *value = rocksdb_get(log->db, log->read, (const char *)marker, sizeof(marker), &len, &err);
    if (err != NULL) {
        RT_ERROR("raft log: group %u: %s", group, err);
        rocksdb_free(err);
        return RAFT_IOERR;
    }
    *has = value != NULL;
    rocksdb_free(value);
    return 0;
}

/* Read @group's entries: contiguous, each with its own raft_malloc'd batch. */
static int raftlog_read(struct cl_raftlog *log, uint16_t group, raft_index *first,
                        struct raft_entry **out, size_t *n_out)
{
    uint8_t lower[RAFTLOG_KEY_BYTES], upper[RAFTLOG_KEY_BYTES];
    raftlog_key(lower, group, 0);
    raftlog_key(upper, group, UINT64_MAX);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper, sizeof(upper));
    rocksdb_iterator_t *it = rocksdb_create_iterator(log->db, ro);
    struct raft_entry *entries = NULL;
    size_t n = 0, cap = 0;
    int rv = 0;
    *first = 0;
    for (rocksdb_iter_seek(it, (const char *)lower, sizeof(lower)); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *value = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != RAFTLOG_KEY_BYTES || vlen < RAFTLOG_HEAD_BYTES) {
            RT_ERROR("raft log: group %u: malformed record", group);
            rv = RAFT_CORRUPT;
            break;
        }
        raft_index index = rt_get_be64(key + 3);
        if (n == 0) {
            *first = index;
        } else if (index != *first + n) {
            RT_ERROR("raft log: group %u: entry %llu follows %llu", group,
                     (unsigned long long)index, (unsigned long long)(*first + n - 1));
            rv = RAFT_CORRUPT;
            break;
        }
        if (n == cap) {
            cap = cap != 0 ? cap * 2 : 256;
            struct raft_entry *grown = raft_realloc(entries, cap * sizeof(*grown));
            if (grown == NULL) {
                rv = RAFT_NOMEM;
                break;
            }
            entries = grown;
        }
        size_t len = vlen - RAFTLOG_HEAD_BYTES;
        void *data = raft_malloc(len > 0 ? len : 1);
        if (data == NULL) {
            rv = RAFT_NOMEM;
            break;
        }
        memcpy(data, value + RAFTLOG_HEAD_BYTES, len);
        entries[n] = (struct raft_entry){.term = rt_get_be64(value),
                                         .type = value[8],
                                         .buf = {.base = data, .len = len},
                                         .batch = data};
        n++;
    }
    if (rv == 0) {
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        if (err != NULL) {
            RT_ERROR("raft log: group %u: %s", group, err);
            rocksdb_free(err);
            rv = RAFT_IOERR;
        }
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rv != 0) {
        entries_free(entries, n);
        return rv;
    }
    *out = entries;
    *n_out = n;
    return 0;
}

int cl_raftlog_load(struct cl_raftlog *log, uint16_t group, const struct raft_snapshot *snapshot,
                    raft_index *start_index, struct raft_entry *entries[], size_t *n_entries)
{
    assert(log != NULL && group < log->group_count);
    assert(start_index != NULL && entries != NULL && n_entries != NULL);
    bool has_marker = false;
    int rv = raftlog_has_marker(log, group, &has_marker);
    if (rv == 0 && !has_marker) {
        /* First load with this module: raft_uv's entries are the log. */
        rv = raftlog_migrate(log, group, *start_index, *entries, *n_entries);
    }
    if (*entries != NULL) {
        entries_free(*entries, *n_entries);
    }
    *entries = NULL;
    *n_entries = 0;
    if (rv != 0) {
        return rv;
    }
    raft_index first;
    struct raft_entry *ours;
    size_t n;
    rv = raftlog_read(log, group, &first, &ours, &n);
    if (rv != 0) {
        return rv;
    }
    raft_index after_snapshot = snapshot != NULL ? snapshot->index + 1 : 1;
    if (n > 0 && snapshot != NULL) {
        raft_index last = first + n - 1;
        bool stale = last < snapshot->index; /* Left by an install the crash did not finish. */
        if (!stale && first <= snapshot->index &&
            ours[snapshot->index - first].term != snapshot->term) {
            stale = true; /* Not the log the snapshot came from. */
        }
        if (stale) {
            RT_WARN("raft log: group %u: dropping %zu entries the snapshot at %llu replaced", group,
                    n, (unsigned long long)snapshot->index);
            entries_free(ours, n);
            ours = NULL;
            n = 0;
            cl_raftlog_reset(log, group, after_snapshot);
        }
    }
    if (n > 0 && first > after_snapshot) {
        RT_ERROR("raft log: group %u: entries start at %llu, after a gap from %llu", group,
                 (unsigned long long)first, (unsigned long long)after_snapshot);
        entries_free(ours, n);
        return RAFT_CORRUPT;
    }
    *start_index = n > 0 ? first : after_snapshot;
    *entries = ours;
    *n_entries = n;
    log->next_index[group] = *start_index + n;
    return 0;
}
