/* Tests for cl_raftlog: the raft log of every group of a node, in one RocksDB database.
 *
 * Why: this is where raft's entries become durable, and load decides what log a restarted
 * group believes; a lost, misplaced or resurrected entry breaks raft's safety. So the tests
 * write through the public API, close, reopen the database and compare what load returns
 * (start index, count, and each entry's term, type and data bytes) with what went in:
 *   - a fresh database; the one-time migration of raft_uv's entries, then its marker;
 *   - appends of several groups in one loop turn: one synced write, callbacks in append order;
 *     appends made meanwhile (from a callback, while a write is in flight) go in the next one;
 *   - truncate, forget and reset, and what load keeps against a snapshot: stale entries are
 *     dropped (and stay dropped), a gap is RAFT_CORRUPT;
 *   - outstanding counts, close waiting for the write in flight, a failed open;
 *   - crashes: a separate process (raftlog_child) writes and is SIGKILLed, and what it had
 *     acknowledged must load back: with its database's WAL emptied (a machine's crash may
 *     lose what the kernel had not written back: only the journal made those writes durable),
 *     with the WAL whole (the journal's records replayed over writes the database already
 *     holds, a truncation among them), and with a journal so small that it lapped and one
 *     write did not fit in it.
 *
 * Leaks (load must free the legacy entries it is handed; a failed open must free all) are
 * ASan's to find. The module's prepare handle is unref'd, and libuv runs no prepare handle of
 * a loop with nothing alive: each test keeps a 1 ms timer running, and every wait has a
 * deadline. The thread pool has one thread, so a work item waiting on a semaphore holds the
 * module's write back while a test needs it in flight. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <raft.h>
#include <uv.h>

#include "cl_journal.h"
#include "cl_raftlog.h"
#include "raftlog_entries.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "test_support.h"

#define TEST_WAIT_MS 10000u
#define GROUPS       300 /* Past 255: group 256 shares a byte with groups 0 and 1. */
#define REQS_MAX     16
#define PER_REQ_MAX  16      /* Entries per append. */
#define PENDING      INT_MIN /* Status of an append whose callback has not run. */

/* ---- Entries ---- */

/* @es are entries @first.. of @group with @seed. */
static void entries_check(const struct raft_entry *es, size_t n, uint16_t group, raft_index first,
                          unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        struct raft_entry want;
        uint8_t data[DATA_MAX];
        entry_make(&want, data, group, first + i, seed);
        assert_int_equal(es[i].term, want.term);
        assert_int_equal(es[i].type, want.type);
        assert_int_equal(es[i].buf.len, want.buf.len);
        if (want.buf.len > 0) {
            assert_memory_equal(es[i].buf.base, data, want.buf.len);
        }
        assert_non_null(es[i].batch);
    }
}

/* What raft_uv loads: one raft_malloc'd array, all the data in one raft_malloc'd batch. */
static struct raft_entry *legacy_make(uint16_t group, raft_index first, size_t n, unsigned seed)
{
    struct raft_entry *es = raft_malloc(n * sizeof(*es));
    uint8_t *batch = raft_malloc(n * DATA_MAX);
    assert_true(es != NULL && batch != NULL);
    for (size_t i = 0; i < n; i++) {
        entry_make(&es[i], batch + i * DATA_MAX, group, first + i, seed);
        es[i].batch = batch;
    }
    return es;
}

/* Free what load returned as raft would: each distinct batch once, then the array. */
static void entries_release(struct raft_entry *es, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = es[j].batch == es[i].batch;
        }
        if (!seen) {
            raft_free(es[i].batch);
        }
    }
    raft_free(es);
}

/* ---- Fixture: a loop, a temp directory, the log ---- */

struct fx {
    uv_loop_t loop;
    uv_timer_t tick; /* Keeps the loop alive, so the module's prepare handle runs. */
    char *dir;
    char path[PATH_MAX]; /* dir/log: open creates it. */
    struct cl_raftlog *log;
    bool closing, closed;
    int done_at_close;                    /* Appends completed when the close callback ran. */
    struct raft_io_append reqs[REQS_MAX]; /* The id of an append is its slot here. */
    int n_reqs;
    int status[REQS_MAX]; /* By append id; PENDING until its callback. */
    int order[REQS_MAX];  /* Ids in callback order. */
    uint64_t writes_at_cb[REQS_MAX];
    int n_done, want_done;
    /* The callback of append @re_after appends @re_n entries from @re_first to group 0. */
    int re_after, re_id;
    int close_after; /* The callback of this append closes the log (-1: none). */
    raft_index re_first;
    unsigned re_n;
    /* The thread pool's only thread, held by a work item. */
    uv_work_t block;
    uv_sem_t block_sem;
    bool unblocked;
};

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_timer_init(&fx->loop, &fx->tick), 0);
    assert_int_equal(uv_timer_start(&fx->tick, tick_cb, 1, 1), 0);
    fx->dir = test_tmpdir("raftlog");
    snprintf(fx->path, sizeof(fx->path), "%s/log", fx->dir);
    fx->re_after = -1;
    fx->close_after = -1;
    fx->unblocked = true;
    *state = fx;
    return 0;
}

static bool pred_flag(void *arg)
{
    return *(const bool *)arg;
}

static bool pred_done(void *arg)
{
    const struct fx *fx = arg;
    return fx->n_done >= fx->want_done;
}

/* Run the loop for about @ms: for "nothing happens meanwhile". */
static void run_for(struct fx *fx, unsigned ms)
{
    static const bool never = false;
    assert_false(test_run_until(&fx->loop, pred_flag, (void *)&never, ms));
}

static void on_closed(void *arg)
{
    struct fx *fx = arg;
    fx->closed = true;
    fx->done_at_close = fx->n_done;
}

static void log_open(struct fx *fx)
{
    fx->log = NULL;
    assert_int_equal(cl_raftlog_open(&fx->loop, fx->path, GROUPS, 0, 0, &fx->log), 0);
    assert_non_null(fx->log);
}

static void close_begin(struct fx *fx)
{
    fx->closing = true;
    fx->closed = false;
    cl_raftlog_close(fx->log, on_closed, fx);
}

static void close_end(struct fx *fx)
{
    assert_true(test_run_until(&fx->loop, pred_flag, &fx->closed, TEST_WAIT_MS));
    fx->log = NULL;
    fx->closing = false;
}

static void log_close(struct fx *fx)
{
    close_begin(fx);
    close_end(fx);
}

static void log_reopen(struct fx *fx)
{
    log_close(fx);
    log_open(fx);
}

static void block_work(uv_work_t *w)
{
    uv_sem_wait(&((struct fx *)w->data)->block_sem);
}

static void block_done(uv_work_t *w, int status)
{
    (void)status;
    ((struct fx *)w->data)->unblocked = true;
}

/* Hold the pool's thread: a write queued from now on waits for unblock_pool(). */
static void block_pool(struct fx *fx)
{
    assert_int_equal(uv_sem_init(&fx->block_sem, 0), 0);
    fx->unblocked = false;
    fx->block.data = fx;
    assert_int_equal(uv_queue_work(&fx->loop, &fx->block, block_work, block_done), 0);
}

static void unblock_pool(struct fx *fx)
{
    uv_sem_post(&fx->block_sem);
    assert_true(test_run_until(&fx->loop, pred_flag, &fx->unblocked, TEST_WAIT_MS));
    uv_sem_destroy(&fx->block_sem);
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    if (!fx->unblocked) {
        unblock_pool(fx);
    }
    if (fx->log != NULL && !fx->closing) {
        log_close(fx);
    }
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    int loop_rv = uv_loop_close(&fx->loop); /* UV_EBUSY: a handle of the module left open. */
    test_rmdir(fx->dir);
    free(fx);
    return loop_rv == 0 ? 0 : -1;
}

/* ---- Appending and loading ---- */

static int append(struct fx *fx, uint16_t group, raft_index first, unsigned n, unsigned seed);

static void append_cb(struct raft_io_append *req, int status)
{
    struct fx *fx = req->data;
    int id = (int)(req - fx->reqs);
    assert_int_equal(fx->status[id], PENDING); /* Called once. */
    fx->status[id] = status;
    fx->order[fx->n_done++] = id;
    struct cl_raftlog_stats stats;
    cl_raftlog_get_stats(fx->log, &stats);
    fx->writes_at_cb[id] = stats.writes;
    if (id == fx->re_after) {
        /* As raft does: the next append comes from the callback of the last. */
        fx->re_id = append(fx, 0, fx->re_first, fx->re_n, 0);
        assert_int_equal(fx->status[fx->re_id], PENDING); /* Not completed inside append. */
    }
    if (id == fx->close_after) {
        close_begin(fx);
    }
}

/* Append entries @first.. of @group with @seed, as one request; returns its id. */
static int append(struct fx *fx, uint16_t group, raft_index first, unsigned n, unsigned seed)
{
    assert_true(n > 0 && n <= PER_REQ_MAX && fx->n_reqs < REQS_MAX);
    struct raft_entry es[PER_REQ_MAX];
    uint8_t data[PER_REQ_MAX][DATA_MAX];
    for (unsigned i = 0; i < n; i++) {
        entry_make(&es[i], data[i], group, first + i, seed);
    }
    int id = fx->n_reqs++;
    fx->reqs[id].data = fx;
    fx->status[id] = PENDING;
    assert_int_equal(cl_raftlog_append(fx->log, group, &fx->reqs[id], es, n, append_cb), 0);
    memset(data, 0xa5, sizeof(data)); /* The module copied them: what it writes is not this. */
    return id;
}

/* Run the loop until @count appends have completed, all with status 0. */
static void wait_done(struct fx *fx, int count)
{
    fx->want_done = count;
    assert_true(test_run_until(&fx->loop, pred_done, fx, TEST_WAIT_MS));
    assert_int_equal(fx->n_done, count);
    for (int i = 0; i < count; i++) {
        assert_int_equal(fx->status[fx->order[i]], 0);
    }
}

struct loaded {
    raft_index start;
    struct raft_entry *entries;
    size_t n;
};

/* Load @group as cl_node does: handed @legacy_n raft_uv entries from @legacy_start (seed
 * @legacy_seed) and raft_uv's snapshot at @snap_index, @snap_term (none if the index is 0). */
static int load(struct fx *fx, uint16_t group, raft_index snap_index, raft_term snap_term,
                raft_index legacy_start, size_t legacy_n, unsigned legacy_seed, struct loaded *out)
{
    struct raft_snapshot snap = {.index = snap_index, .term = snap_term};
    out->start = legacy_n > 0 ? legacy_start : snap_index + 1;
    out->entries = legacy_n > 0 ? legacy_make(group, legacy_start, legacy_n, legacy_seed) : NULL;
    out->n = legacy_n;
    return cl_raftlog_load(fx->log, group, snap_index > 0 ? &snap : NULL, &out->start,
                           &out->entries, &out->n);
}

/* What @group's load returned: it starts at @start and holds @n entries of @seed. */
static void loaded_check(struct loaded *l, uint16_t group, raft_index start, size_t n,
                         unsigned seed)
{
    assert_int_equal(l->start, start);
    assert_int_equal(l->n, n);
    entries_check(l->entries, l->n, group, start, seed);
    entries_release(l->entries, l->n);
}

/* Load @group (no legacy entries): it must start at @start and hold @n entries of @seed. */
static void expect_log(struct fx *fx, uint16_t group, raft_index snap_index, raft_term snap_term,
                       raft_index start, size_t n, unsigned seed)
{
    struct loaded l;
    assert_int_equal(load(fx, group, snap_index, snap_term, 1, 0, 0, &l), 0);
    loaded_check(&l, group, start, n, seed);
}

/* Open, load @group (empty), append @n entries from 1 and wait for them. */
static void fill(struct fx *fx, uint16_t group, unsigned n)
{
    if (fx->log == NULL) {
        log_open(fx);
    }
    expect_log(fx, group, 0, 0, 1, 0, 0);
    append(fx, group, 1, n, 0);
    wait_done(fx, fx->n_reqs);
}

/* ---- Tests ---- */

static void test_fresh_database_is_empty(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 0, 0);
    /* With raft_uv's snapshot and no entries, the log starts right after it. */
    expect_log(fx, GROUPS - 1, 7, 3, 8, 0, 0);
}

/* The log's memtable is RocksDB's vector (cl_raftlog.c: nothing reads the log at run time, and
 * a skip list's search cost most of a write): the options file RocksDB keeps says so. */
static void test_memtable_is_a_vector(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    DIR *dir = opendir(fx->path);
    assert_non_null(dir);
    int files = 0, vectors = 0;
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        if (strncmp(e->d_name, "OPTIONS-", 8) != 0) {
            continue;
        }
        char name[PATH_MAX + 256];
        snprintf(name, sizeof(name), "%s/%s", fx->path, e->d_name);
        FILE *f = fopen(name, "r");
        assert_non_null(f);
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            vectors += strstr(line, "memtable_factory={id=VectorRepFactory;") != NULL;
        }
        fclose(f);
        files++;
    }
    closedir(dir);
    assert_true(files > 0);
    assert_int_equal(vectors, files); /* One family ("default"), in every options file. */
}

static void test_migration_happens_once(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    /* Entry 1 is a RAFT_CHANGE, as raft_uv's bootstrap entry (entries_check checks types). */
    struct loaded l;
    assert_int_equal(load(fx, 1, 0, 0, 1, 3, 0, &l), 0);
    loaded_check(&l, 1, 1, 3, 0);
    /* raft_uv's log from after a snapshot starts past 1: the indexes are kept. */
    assert_int_equal(load(fx, 2, 3, entry_term(3, 0), 4, 2, 0, &l), 0);
    loaded_check(&l, 2, 4, 2, 0);
    append(fx, 1, 4, 1, 0); /* Follows the migrated entries. */
    wait_done(fx, 1);
    log_reopen(fx);
    /* The marker: raft_uv's entries, different now, are ignored (and still freed). */
    assert_int_equal(load(fx, 1, 0, 0, 1, 5, 7, &l), 0);
    loaded_check(&l, 1, 1, 4, 0);
    assert_int_equal(load(fx, 2, 3, entry_term(3, 0), 1, 6, 7, &l), 0);
    loaded_check(&l, 2, 4, 2, 0);
}

static void test_appends_of_one_turn_are_one_write(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    for (uint16_t g = 0; g < 2; g++) {
        expect_log(fx, g, 0, 0, 1, 0, 0);
    }
    expect_log(fx, 256, 0, 0, 1, 0, 0);
    append(fx, 0, 1, 3, 0);
    append(fx, 1, 1, 2, 0);
    append(fx, 0, 4, 2, 0);
    append(fx, 256, 1, 4, 0); /* Its key differs from groups 0 and 1 in one byte only. */
    wait_done(fx, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fx->order[i], i);
        assert_int_equal(fx->writes_at_cb[i], 1); /* Durable before its callback. */
    }
    size_t bytes = 0;
    for (raft_index i = 1; i <= 5; i++) {
        bytes += entry_len(i, 0) + (i <= 2 ? entry_len(i, 0) : 0) + (i <= 4 ? entry_len(i, 0) : 0);
    }
    struct cl_raftlog_stats stats;
    cl_raftlog_get_stats(fx->log, &stats);
    assert_int_equal(stats.writes, 1);
    assert_int_equal(stats.entries, 11);
    assert_int_equal(stats.bytes, bytes);
    assert_int_equal(stats.failures, 0);
    log_reopen(fx);
    expect_log(fx, 0, 0, 0, 1, 5, 0);
    expect_log(fx, 1, 0, 0, 1, 2, 0);
    expect_log(fx, 256, 0, 0, 1, 4, 0);
    expect_log(fx, 2, 0, 0, 1, 0, 0);
}

static void test_truncate_then_append(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 5);
    cl_raftlog_truncate(fx->log, 0, 3);
    append(fx, 0, 3, 2, 1);
    /* Group 1: the entries, the truncation and the new ones all in one write batch. */
    expect_log(fx, 1, 0, 0, 1, 0, 0);
    append(fx, 1, 1, 5, 0);
    cl_raftlog_truncate(fx->log, 1, 3);
    append(fx, 1, 3, 2, 1);
    /* Group 2: a truncation alone is written too, and drops the entry at its index. */
    expect_log(fx, 2, 0, 0, 1, 0, 0);
    append(fx, 2, 1, 5, 0);
    wait_done(fx, 5);
    cl_raftlog_truncate(fx->log, 2, 3);
    log_reopen(fx);
    expect_log(fx, 2, 0, 0, 1, 2, 0);
    for (uint16_t g = 0; g < 2; g++) {
        struct loaded l;
        assert_int_equal(load(fx, g, 0, 0, 1, 0, 0, &l), 0);
        assert_int_equal(l.start, 1);
        assert_int_equal(l.n, 4); /* Nothing at 5. */
        entries_check(l.entries, 2, g, 1, 0);
        entries_check(l.entries + 2, 2, g, 3, 1);
        entries_release(l.entries, l.n);
    }
}

static void test_forget_keeps_what_the_snapshot_needs(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 10);
    cl_raftlog_forget(fx->log, 0, 6); /* A snapshot at 8 keeping 3 trailing entries. */
    log_reopen(fx);
    expect_log(fx, 0, 8, entry_term(8, 0), 6, 5, 0);
}

static void test_reset_restarts_the_log(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 5);
    cl_raftlog_reset(fx->log, 0, 21); /* A snapshot at 20 was installed. */
    append(fx, 0, 21, 2, 1);
    wait_done(fx, 2);
    log_reopen(fx);
    expect_log(fx, 0, 20, 77, 21, 2, 1); /* Nothing at 20: the snapshot's term is not checked. */
}

/* Append entries @first.. of @group from storage that outlives the call, as raft's does (the
 * module keeps pointers to a held append's entries until it writes them). */
static int append_kept(struct fx *fx, uint16_t group, raft_index first, unsigned n, unsigned seed)
{
    static struct raft_entry es[PER_REQ_MAX];
    static uint8_t data[PER_REQ_MAX][DATA_MAX];
    assert_true(n > 0 && n <= PER_REQ_MAX && fx->n_reqs < REQS_MAX);
    for (unsigned i = 0; i < n; i++) {
        entry_make(&es[i], data[i], group, first + i, seed);
    }
    int id = fx->n_reqs++;
    fx->reqs[id].data = fx;
    fx->status[id] = PENDING;
    assert_int_equal(cl_raftlog_append(fx->log, group, &fx->reqs[id], es, n, append_cb), 0);
    return id;
}

/* A snapshot install: the old entries stay on disk until it is durable, and what raft appends
 * meanwhile (a leader elected during the install) waits, numbered after the snapshot. */
static void test_install_holds_appends_until_durable(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 5);
    cl_raftlog_install_begin(fx->log, 0, 21); /* Installing a snapshot at 20. */
    int id = append_kept(fx, 0, 21, 2, 1);
    run_for(fx, 20);
    assert_int_equal(fx->status[id], PENDING); /* Held: not written, not completed. */
    assert_int_equal(cl_raftlog_outstanding(fx->log, 0), 1);
    struct cl_raftlog_stats before;
    cl_raftlog_get_stats(fx->log, &before);
    cl_raftlog_install_end(fx->log, 0, 0);
    wait_done(fx, 2);
    assert_true(fx->writes_at_cb[id] > before.writes);
    log_reopen(fx);
    expect_log(fx, 0, 20, 77, 21, 2, 1);
}

/* A failed install: raft's log no longer follows what is on disk, so the held append fails
 * and so does every later one of the group (other groups go on); the old entries stay. */
static void test_failed_install_stops_the_group(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 5);
    expect_log(fx, 1, 0, 0, 1, 0, 0);
    cl_raftlog_install_begin(fx->log, 0, 21);
    int id = append_kept(fx, 0, 21, 1, 1);
    cl_raftlog_install_end(fx->log, 0, RAFT_IOERR);
    assert_int_equal(fx->status[id], RAFT_IOERR); /* Failed inside install_end. */
    assert_int_equal(cl_raftlog_outstanding(fx->log, 0), 0);
    struct raft_entry e;
    uint8_t data[DATA_MAX];
    entry_make(&e, data, 0, 22, 1);
    struct raft_io_append req = {.data = fx};
    assert_int_equal(cl_raftlog_append(fx->log, 0, &req, &e, 1, append_cb), RAFT_IOERR);
    int other = append(fx, 1, 1, 1, 2);
    fx->want_done = 3; /* fill's append, the failed one and group 1's. */
    assert_true(test_run_until(&fx->loop, pred_done, fx, TEST_WAIT_MS));
    assert_int_equal(fx->status[other], 0);
    log_reopen(fx);
    expect_log(fx, 0, 0, 0, 1, 5, 0);
    expect_log(fx, 1, 0, 0, 1, 1, 2);
}

static void test_stale_entries_are_dropped(void **state)
{
    struct fx *fx = *state;
    for (uint16_t g = 0; g < 3; g++) {
        fill(fx, g, 5);
    }
    log_reopen(fx);
    /* All before the snapshot: left by an install that a crash cut short. */
    expect_log(fx, 0, 10, 4, 11, 0, 0);
    /* The snapshot's entry has another term: not the log the snapshot came from. */
    expect_log(fx, 1, 3, entry_term(3, 0) + 1, 4, 0, 0);
    /* Control: the same with the right term keeps everything. */
    expect_log(fx, 2, 3, entry_term(3, 0), 1, 5, 0);
    /* The drop is written: an append goes after the snapshot, and no gap is left behind. */
    int id = append(fx, 0, 11, 1, 1);
    wait_done(fx, id + 1);
    log_reopen(fx);
    expect_log(fx, 0, 10, 4, 11, 1, 1);
    expect_log(fx, 1, 0, 0, 1, 0, 0);
}

static void test_gap_is_corrupt(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 5);
    cl_raftlog_forget(fx->log, 0, 4);
    log_reopen(fx);
    /* 4 and 5 remain: without a snapshot (or with one at 2) 1..3 are missing. */
    raft_index snaps[] = {0, 2};
    for (size_t i = 0; i < 2; i++) {
        struct loaded l;
        assert_int_equal(load(fx, 0, snaps[i], 1, 1, 0, 0, &l), RAFT_CORRUPT);
        assert_null(l.entries);
        assert_int_equal(l.n, 0);
    }
    expect_log(fx, 0, 3, entry_term(3, 0), 4, 2, 0); /* Control: a snapshot at 3 fills it. */
}

static void test_append_from_callback_goes_in_next_write(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 0, 0);
    /* raft appends from an append's callback: that must not join the write just done (nor
     * complete inside append), but go in the next, and follow on the index. */
    fx->re_after = 0;
    fx->re_first = 3;
    fx->re_n = 2;
    append(fx, 0, 1, 2, 0);
    wait_done(fx, 2);
    assert_int_equal(fx->order[1], fx->re_id);
    assert_int_equal(fx->writes_at_cb[0], 1);
    assert_int_equal(fx->writes_at_cb[fx->re_id], 2);
    log_reopen(fx);
    expect_log(fx, 0, 0, 0, 1, 4, 0);
}

static void test_outstanding_until_callback(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 0, 0);
    expect_log(fx, 1, 0, 0, 1, 0, 0);
    block_pool(fx);
    append(fx, 0, 1, 1, 0);
    append(fx, 1, 1, 1, 0);
    append(fx, 0, 2, 1, 0);
    assert_int_equal(cl_raftlog_outstanding(fx->log, 0), 2);
    assert_int_equal(cl_raftlog_outstanding(fx->log, 1), 1);
    assert_int_equal(cl_raftlog_outstanding(fx->log, 2), 0);
    run_for(fx, 20); /* The write is queued, behind the blocker. */
    assert_int_equal(fx->n_done, 0);
    append(fx, 0, 3, 1, 0); /* Arrives while a write is in flight: waits for the next. */
    assert_int_equal(cl_raftlog_outstanding(fx->log, 0), 3);
    unblock_pool(fx);
    wait_done(fx, 4);
    assert_int_equal(fx->writes_at_cb[2], 1);
    assert_int_equal(fx->writes_at_cb[3], 2);
    assert_int_equal(cl_raftlog_outstanding(fx->log, 0), 0);
    assert_int_equal(cl_raftlog_outstanding(fx->log, 1), 0);
    log_reopen(fx);
    expect_log(fx, 0, 0, 0, 1, 3, 0);
}

static void test_close_waits_for_the_write_in_flight(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 0, 0);
    block_pool(fx);
    append(fx, 0, 1, 3, 0);
    run_for(fx, 20);
    close_begin(fx);
    run_for(fx, 20);
    assert_false(fx->closed);
    assert_int_equal(fx->n_done, 0);
    unblock_pool(fx);
    close_end(fx);
    assert_int_equal(fx->done_at_close, 1); /* Its callback ran before the close's. */
    assert_int_equal(fx->status[0], 0);
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 3, 0);
}

/* The header allows close once nothing is outstanding, which is so inside the last append
 * callback: the close must wait for the end of the write's completion (it once closed the
 * database twice there). */
static void test_close_from_append_callback(void **state)
{
    struct fx *fx = *state;
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 0, 0);
    fx->close_after = 0;
    append(fx, 0, 1, 2, 0);
    wait_done(fx, 1);
    close_end(fx);
    log_open(fx);
    expect_log(fx, 0, 0, 0, 1, 2, 0);
}

/* A close while a write is in flight still writes what is pending after it (here a forget),
 * as a close with nothing in flight does. */
static void test_close_in_flight_keeps_pending_forget(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 5);
    block_pool(fx);
    append(fx, 0, 6, 1, 0);
    run_for(fx, 20);
    cl_raftlog_forget(fx->log, 0, 4);
    close_begin(fx);
    unblock_pool(fx);
    close_end(fx);
    log_open(fx);
    expect_log(fx, 0, 3, entry_term(3, 0), 4, 3, 0);
}

static void test_open_failure_leaks_nothing(void **state)
{
    struct fx *fx = *state;
    char file[PATH_MAX];
    snprintf(file, sizeof(file), "%s/file", fx->dir);
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(fx->path, sizeof(fx->path), "%s/file/log", fx->dir);
    struct cl_raftlog *log = (struct cl_raftlog *)fx; /* Must be overwritten. */
    assert_int_equal(cl_raftlog_open(&fx->loop, fx->path, GROUPS, 0, 0, &log), RT_EIO);
    assert_null(log);
    /* The teardown's uv_loop_close fails if a handle was left behind; ASan sees the rest. */
}

/* ---- Crashes (raftlog_child) ---- */

/* Run raftlog_child on fx->path with a journal of @journal_bytes until it reports (all its
 * writes acknowledged; with @open_only, its open done), then SIGKILL it. Returns what it
 * reported: the journal's restarts << 32 | its large writes. */
static uint64_t child_run_then_dies(struct fx *fx, size_t journal_bytes, bool open_only)
{
    char bytes[24];
    snprintf(bytes, sizeof(bytes), "%zu", journal_bytes);
    const char *argv[] = {RAFTLOG_CHILD_PATH,        fx->path, bytes, TEST_SPAWN_FD,
                          open_only ? "open" : NULL, NULL};
    int fd;
    pid_t pid = test_spawn(RAFTLOG_CHILD_PATH, argv, &fd);
    uint8_t report[8];
    size_t got = 0;
    while (got < sizeof(report)) {
        ssize_t n = read(fd, report + got, sizeof(report) - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n > 0); /* EOF: the child failed; its stderr says why. */
        got += (size_t)n;
    }
    close(fd);
    test_kill(pid);
    return rt_get_be64(report);
}

/* The path of the raft log's journal in fx->path, into @out. */
static void journal_path_of(const struct fx *fx, char out[PATH_MAX + 32])
{
    snprintf(out, PATH_MAX + 32, "%s/%s", fx->path, CL_RAFTLOG_JOURNAL_FILE);
}

/* Empty the database's WAL files: what a crash of the machine may leave of writes that were
 * never synced there (the child's open synced nothing after creating its WAL). */
static void wal_lose(struct fx *fx)
{
    DIR *dir = opendir(fx->path);
    assert_non_null(dir);
    int emptied = 0;
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".log") == 0) {
            char name[PATH_MAX + 256];
            snprintf(name, sizeof(name), "%s/%s", fx->path, e->d_name);
            assert_int_equal(truncate(name, 0), 0);
            emptied++;
        }
    }
    closedir(dir);
    assert_true(emptied > 0);
}

/* What raftlog_child wrote (raftlog_entries.h), loaded back. */
static void expect_child_log(struct fx *fx)
{
    log_open(fx);
    struct loaded l;
    raft_index snap = CHILD_G0_KEPT_FROM - 1;
    assert_int_equal(load(fx, 0, snap, entry_term(snap, 0), 1, 0, 0, &l), 0);
    assert_int_equal(l.start, CHILD_G0_KEPT_FROM);
    assert_int_equal(l.n, CHILD_G0_LAST - CHILD_G0_KEPT_FROM + 1);
    size_t before = CHILD_G0_TRUNCATED_AT - CHILD_G0_KEPT_FROM;
    entries_check(l.entries, before, 0, CHILD_G0_KEPT_FROM, 0);
    entries_check(l.entries + before, l.n - before, 0, CHILD_G0_TRUNCATED_AT, 1);
    entries_release(l.entries, l.n);
    expect_log(fx, 1, 0, 0, 1, CHILD_NARROW_WRITES, 2);
    for (uint16_t g = CHILD_WIDE_FIRST_GROUP; g < CHILD_WIDE_FIRST_GROUP + CHILD_WIDE_GROUPS; g++) {
        expect_log(fx, g, 0, 0, 1, CHILD_WIDE_ENTRIES, 3);
    }
    expect_log(fx, CHILD_WIDE_FIRST_GROUP + CHILD_WIDE_GROUPS, 0, 0, 1, 0, 0);
}

static void test_crash_journal_brings_back_lost_wal(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(child_run_then_dies(fx, 0, false), 0); /* No lap: the WAL was never synced. */
    wal_lose(fx);
    expect_child_log(fx);
    /* A clean close leaves nothing to replay, and the log whole. */
    log_close(fx);
    char journal_path[PATH_MAX + 32];
    journal_path_of(fx, journal_path);
    struct cl_journal *journal;
    uint64_t replayed;
    assert_int_equal(cl_journal_open(journal_path, 0, NULL, NULL, &replayed, &journal), 0);
    assert_int_equal(replayed, 0);
    cl_journal_close(journal);
    log_open(fx);
    expect_log(fx, 1, 0, 0, 1, CHILD_NARROW_WRITES, 2);
}

/* A second crash right after an open that replayed the journal: what the replay brought back
 * must already be durable in the database (the open restarts the journal). */
static void test_crash_again_after_replay(void **state)
{
    struct fx *fx = *state;
    child_run_then_dies(fx, 0, false);
    wal_lose(fx);
    child_run_then_dies(fx, 0, true);
    wal_lose(fx);
    expect_child_log(fx);
}

/* Open the raft log expecting it to refuse with RT_EIO and log a line containing @says. */
static void expect_open_refused(struct fx *fx, const char *says)
{
    test_log_collect();
    struct cl_raftlog *log = (struct cl_raftlog *)fx; /* Must be overwritten. */
    int rv = cl_raftlog_open(&fx->loop, fx->path, GROUPS, 0, 0, &log);
    char *logged = test_log_collected();
    assert_int_equal(rv, RT_EIO);
    assert_null(log);
    assert_non_null(strstr(logged, says));
    free(logged);
}

/* Without its journal, a raft log that had one refuses to open: it may lack acknowledged
 * writes only the journal held. A journal that cannot be reached is refused as such. */
static void test_missing_journal_refuses_to_open(void **state)
{
    struct fx *fx = *state;
    fill(fx, 0, 3);
    log_close(fx);
    char journal_path[PATH_MAX + 32];
    journal_path_of(fx, journal_path);
    assert_int_equal(unlink(journal_path), 0);
    expect_open_refused(fx, "is missing");
    /* A link to itself: access() fails with ELOOP, not ENOENT. */
    assert_int_equal(symlink(CL_RAFTLOG_JOURNAL_FILE, journal_path), 0);
    expect_open_refused(fx, "cannot reach its journal");
}

static void test_crash_replay_over_whole_wal(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(child_run_then_dies(fx, 0, false), 0);
    expect_child_log(fx);
}

static void test_crash_after_laps_and_a_write_too_large(void **state)
{
    struct fx *fx = *state;
    uint64_t reported = child_run_then_dies(fx, CL_JOURNAL_BYTES_MIN, false);
    /* Group 1's writes lap the journal (~30 a lap); the wide write is larger than it. */
    assert_true((reported >> 32) >= 3);
    assert_int_equal(reported & 0xffffffffu, 1);
    expect_child_log(fx);
}

int main(void)
{
    /* One pool thread: block_pool() can then hold the module's write back. */
    setenv("UV_THREADPOOL_SIZE", "1", 1);
#define CASE(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_fresh_database_is_empty),
        CASE(test_memtable_is_a_vector),
        CASE(test_migration_happens_once),
        CASE(test_appends_of_one_turn_are_one_write),
        CASE(test_truncate_then_append),
        CASE(test_forget_keeps_what_the_snapshot_needs),
        CASE(test_reset_restarts_the_log),
        CASE(test_install_holds_appends_until_durable),
        CASE(test_failed_install_stops_the_group),
        CASE(test_stale_entries_are_dropped),
        CASE(test_gap_is_corrupt),
        CASE(test_append_from_callback_goes_in_next_write),
        CASE(test_outstanding_until_callback),
        CASE(test_close_waits_for_the_write_in_flight),
        CASE(test_open_failure_leaks_nothing),
        CASE(test_close_from_append_callback),
        CASE(test_close_in_flight_keeps_pending_forget),
        CASE(test_crash_journal_brings_back_lost_wal),
        CASE(test_crash_replay_over_whole_wal),
        CASE(test_crash_after_laps_and_a_write_too_large),
        CASE(test_crash_again_after_replay),
        CASE(test_missing_journal_refuses_to_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
