/* Tests for cl_durable: the raft_io wrapper that tracks which log entries are on disk.
 *
 * The inner io is a fake written here: every method records that it was called and with which
 * io pointer and arguments; append and snapshot_put keep their request and callback so each
 * test decides when, and with which status, each one completes; load hands out what the test
 * chose. Every case checks the exact (index, term) reported by cl_durable_get. Outstanding
 * requests are completed before a test ends (the teardown cancels any left over), so the ASan
 * build sees no leak. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "cl_durable.h"
#include "test_raft.h"

#define TEST_REQS_MAX 32

enum fake_method {
    M_INIT,
    M_CLOSE,
    M_LOAD,
    M_START,
    M_BOOTSTRAP,
    M_RECOVER,
    M_SET_TERM,
    M_SET_VOTE,
    M_SEND,
    M_APPEND,
    M_TRUNCATE,
    M_SNAPSHOT_PUT,
    M_SNAPSHOT_GET,
    M_TIME,
    M_RANDOM,
    M_ASYNC_WORK,
    M_COUNT
};

static const char *const method_names[M_COUNT] = {
    "init",         "close",    "load",   "start",      "bootstrap", "recover",
    "set_term",     "set_vote", "send",   "append",     "truncate",  "snapshot_put",
    "snapshot_get", "time",     "random", "async_work",
};

/* An append or snapshot put the fake holds until the test completes it. */
struct fake_append {
    struct raft_io_append *req;
    raft_io_append_cb cb;
    const struct raft_entry *entries;
    unsigned n;
    bool done;
};

struct fake_put {
    struct raft_io_snapshot_put *req;
    raft_io_snapshot_put_cb cb;
    const struct raft_snapshot *snapshot;
    unsigned trailing;
    bool done;
};

struct fake {
    struct raft_io io;
    int fail_rv; /* Every method that can fail returns this (0: succeed). */
    unsigned calls[M_COUNT];
    struct raft_io *seen_io[M_COUNT]; /* io pointer of the last call. */
    void *seen_data[M_COUNT];         /* io.data when the last call came in. */

    /* Arguments of the last call. */
    raft_id init_id;
    const char *init_address;
    raft_io_close_cb close_cb;
    unsigned start_msecs;
    raft_io_tick_cb start_tick;
    raft_io_recv_cb start_recv;
    const struct raft_configuration *conf;
    raft_term term;
    raft_id vote;
    struct raft_io_send *send_req;
    const struct raft_message *send_message;
    raft_io_send_cb send_cb;
    raft_index truncated;
    struct raft_io_snapshot_get *get_req;
    raft_io_snapshot_get_cb get_cb;
    int random_min;
    int random_max;
    struct raft_io_async_work *work_req;
    raft_io_async_work_cb work_cb;

    /* What load returns. */
    raft_term load_term;
    raft_id load_vote;
    struct raft_snapshot *load_snapshot;
    raft_index load_start;
    struct raft_entry *load_entries;
    size_t load_n;

    struct fake_append appends[TEST_REQS_MAX];
    unsigned n_appends;
    struct fake_put puts[TEST_REQS_MAX];
    unsigned n_puts;
};

/* The requests raft would own, and what their callbacks saw. */
struct outer_append {
    struct raft_io_append req;
    int calls;
    int status;
};

struct outer_put {
    struct raft_io_snapshot_put req;
    int calls;
    int status;
};

struct t {
    struct fake f;
    struct cl_durable d;
    struct outer_append oa[TEST_REQS_MAX]; /* oa[k] is the outer request of f.appends[k]. */
    struct outer_put op[TEST_REQS_MAX];    /* op[k] is the outer request of f.puts[k]. */
    int stray_append_cbs;                  /* Outer callbacks with a request that is not ours. */
    int stray_put_cbs;
};

static struct t *g; /* The running test (the fake's methods do not trust their io argument). */

static int fake_enter(struct raft_io *io, enum fake_method m)
{
    g->f.calls[m]++;
    g->f.seen_io[m] = io;
    g->f.seen_data[m] = g->f.io.data;
    if (g->f.fail_rv != 0) {
        snprintf(g->f.io.errmsg, sizeof(g->f.io.errmsg), "fake %s failed", method_names[m]);
    }
    return g->f.fail_rv;
}

static int fake_init(struct raft_io *io, raft_id id, const char *address)
{
    g->f.init_id = id;
    g->f.init_address = address;
    return fake_enter(io, M_INIT);
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
    g->f.close_cb = cb;
    (void)fake_enter(io, M_CLOSE);
}

static int fake_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                     struct raft_snapshot **snapshot, raft_index *start_index,
                     struct raft_entry *entries[], size_t *n_entries)
{
    int rv = fake_enter(io, M_LOAD);
    if (rv != 0) {
        return rv;
    }
    *term = g->f.load_term;
    *voted_for = g->f.load_vote;
    *snapshot = g->f.load_snapshot;
    *start_index = g->f.load_start;
    *entries = g->f.load_entries;
    *n_entries = g->f.load_n;
    return 0;
}

static int fake_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                      raft_io_recv_cb recv)
{
    g->f.start_msecs = msecs;
    g->f.start_tick = tick;
    g->f.start_recv = recv;
    return fake_enter(io, M_START);
}

static int fake_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    g->f.conf = conf;
    return fake_enter(io, M_BOOTSTRAP);
}

static int fake_recover(struct raft_io *io, const struct raft_configuration *conf)
{
    g->f.conf = conf;
    return fake_enter(io, M_RECOVER);
}

static int fake_set_term(struct raft_io *io, raft_term term)
{
    g->f.term = term;
    return fake_enter(io, M_SET_TERM);
}

static int fake_set_vote(struct raft_io *io, raft_id server_id)
{
    g->f.vote = server_id;
    return fake_enter(io, M_SET_VOTE);
}

static int fake_send(struct raft_io *io, struct raft_io_send *req,
                     const struct raft_message *message, raft_io_send_cb cb)
{
    g->f.send_req = req;
    g->f.send_message = message;
    g->f.send_cb = cb;
    return fake_enter(io, M_SEND);
}

static int fake_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    int rv = fake_enter(io, M_APPEND);
    if (rv != 0) {
        return rv;
    }
    assert_true(g->f.n_appends < TEST_REQS_MAX);
    struct fake_append *a = &g->f.appends[g->f.n_appends++];
    a->req = req;
    a->cb = cb;
    a->entries = entries;
    a->n = n;
    a->done = false;
    return 0;
}

static int fake_truncate(struct raft_io *io, raft_index index)
{
    g->f.truncated = index;
    return fake_enter(io, M_TRUNCATE);
}

static int fake_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
                             raft_io_snapshot_put_cb cb)
{
    int rv = fake_enter(io, M_SNAPSHOT_PUT);
    if (rv != 0) {
        return rv;
    }
    assert_true(g->f.n_puts < TEST_REQS_MAX);
    struct fake_put *p = &g->f.puts[g->f.n_puts++];
    p->req = req;
    p->cb = cb;
    p->snapshot = snapshot;
    p->trailing = trailing;
    p->done = false;
    return 0;
}

static int fake_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                             raft_io_snapshot_get_cb cb)
{
    g->f.get_req = req;
    g->f.get_cb = cb;
    return fake_enter(io, M_SNAPSHOT_GET);
}

static raft_time fake_time(struct raft_io *io)
{
    (void)fake_enter(io, M_TIME);
    return 4242;
}

static int fake_random(struct raft_io *io, int min, int max)
{
    g->f.random_min = min;
    g->f.random_max = max;
    (void)fake_enter(io, M_RANDOM);
    return min + 7;
}

static int fake_async_work(struct raft_io *io, struct raft_io_async_work *req,
                           raft_io_async_work_cb cb)
{
    g->f.work_req = req;
    g->f.work_cb = cb;
    return fake_enter(io, M_ASYNC_WORK);
}

static void fake_setup(struct fake *f, int version)
{
    memset(f, 0, sizeof(*f));
    f->io.version = version;
    f->io.impl = f;
    f->io.init = fake_init;
    f->io.close = fake_close;
    f->io.load = fake_load;
    f->io.start = fake_start;
    f->io.bootstrap = fake_bootstrap;
    f->io.recover = fake_recover;
    f->io.set_term = fake_set_term;
    f->io.set_vote = fake_set_vote;
    f->io.send = fake_send;
    f->io.append = fake_append;
    f->io.truncate = fake_truncate;
    f->io.snapshot_put = fake_snapshot_put;
    f->io.snapshot_get = fake_snapshot_get;
    f->io.time = fake_time;
    f->io.random = fake_random;
    f->io.async_work = version >= 2 ? fake_async_work : NULL;
    f->load_start = 1;
}

/* Outer callbacks: find which of our requests came back. */
static void outer_append_cb(struct raft_io_append *req, int status)
{
    for (unsigned k = 0; k < TEST_REQS_MAX; k++) {
        if (req == &g->oa[k].req) {
            g->oa[k].calls++;
            g->oa[k].status = status;
            return;
        }
    }
    g->stray_append_cbs++;
}

static void outer_put_cb(struct raft_io_snapshot_put *req, int status)
{
    for (unsigned k = 0; k < TEST_REQS_MAX; k++) {
        if (req == &g->op[k].req) {
            g->op[k].calls++;
            g->op[k].status = status;
            return;
        }
    }
    g->stray_put_cbs++;
}

static int setup(void **state)
{
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return -1;
    }
    fake_setup(&g->f, 2);
    cl_durable_init(&g->d, &g->f.io);
    *state = g;
    return 0;
}

/* Complete whatever a failed test left in flight (so nothing leaks), then check none was. */
static int teardown(void **state)
{
    struct t *t = *state;
    unsigned left = 0;
    for (unsigned k = 0; k < t->f.n_appends; k++) {
        if (!t->f.appends[k].done) {
            t->f.appends[k].done = true;
            t->f.appends[k].cb(t->f.appends[k].req, RAFT_CANCELED);
            left++;
        }
    }
    for (unsigned k = 0; k < t->f.n_puts; k++) {
        if (!t->f.puts[k].done) {
            t->f.puts[k].done = true;
            t->f.puts[k].cb(t->f.puts[k].req, RAFT_CANCELED);
            left++;
        }
    }
    int stray = t->stray_append_cbs + t->stray_put_cbs;
    free(t);
    g = NULL;
    return left == 0 && stray == 0 ? 0 : -1;
}

#define assert_durable(t, want_index, want_term)                                                   \
    do {                                                                                           \
        raft_index got_index_ = 99999;                                                             \
        raft_term got_term_ = 99999;                                                               \
        cl_durable_get(&(t)->d, &got_index_, &got_term_);                                          \
        assert_int_equal(got_index_, (want_index));                                                \
        assert_int_equal(got_term_, (want_term));                                                  \
    } while (0)

/* Load what the fake is set to return; must succeed. */
static void load(struct t *t)
{
    raft_term term = 0;
    raft_id vote = 0;
    struct raft_snapshot *snapshot = NULL;
    raft_index start = 0;
    struct raft_entry *entries = NULL;
    size_t n = 0;
    assert_int_equal(t->d.io.load(&t->d.io, &term, &vote, &snapshot, &start, &entries, &n), 0);
    assert_int_equal(term, t->f.load_term);
    assert_int_equal(vote, t->f.load_vote);
    assert_ptr_equal(snapshot, t->f.load_snapshot);
    assert_int_equal(start, t->f.load_start);
    assert_ptr_equal(entries, t->f.load_entries);
    assert_int_equal(n, t->f.load_n);
}

/* Append entries with these terms; returns the request number (f.appends / oa). */
static unsigned append_terms(struct t *t, const raft_term *terms, unsigned n)
{
    struct raft_entry entries[16];
    assert_true(n > 0 && n <= 16);
    memset(entries, 0, sizeof(entries));
    for (unsigned i = 0; i < n; i++) {
        entries[i].term = terms[i];
        entries[i].type = RAFT_COMMAND;
    }
    unsigned k = t->f.n_appends;
    assert_true(k < TEST_REQS_MAX);
    t->oa[k].req.data = &t->oa[k];
    assert_int_equal(t->d.io.append(&t->d.io, &t->oa[k].req, entries, n, outer_append_cb), 0);
    assert_int_equal(t->f.n_appends, k + 1);
    assert_int_equal(t->f.appends[k].n, n);
    assert_ptr_equal(t->f.appends[k].entries, entries);
    /* raft's request stays raft's: the inner io gets its own. */
    assert_ptr_not_equal(t->f.appends[k].req, &t->oa[k].req);
    return k;
}

static unsigned append(struct t *t, unsigned n, raft_term term)
{
    raft_term terms[16];
    assert_true(n <= 16);
    for (unsigned i = 0; i < n; i++) {
        terms[i] = term;
    }
    return append_terms(t, terms, n);
}

static void complete_append(struct t *t, unsigned k, int status)
{
    assert_true(k < t->f.n_appends);
    struct fake_append *a = &t->f.appends[k];
    assert_false(a->done);
    a->done = true;
    a->cb(a->req, status);
    assert_int_equal(t->oa[k].calls, 1);
    assert_int_equal(t->oa[k].status, status);
    assert_int_equal(t->stray_append_cbs, 0);
}

static unsigned snapshot_put(struct t *t, unsigned trailing, const struct raft_snapshot *snapshot)
{
    unsigned k = t->f.n_puts;
    assert_true(k < TEST_REQS_MAX);
    t->op[k].req.data = &t->op[k];
    assert_int_equal(
        t->d.io.snapshot_put(&t->d.io, trailing, &t->op[k].req, snapshot, outer_put_cb), 0);
    assert_int_equal(t->f.n_puts, k + 1);
    assert_int_equal(t->f.puts[k].trailing, trailing);
    assert_ptr_equal(t->f.puts[k].snapshot, snapshot);
    assert_ptr_not_equal(t->f.puts[k].req, &t->op[k].req);
    return k;
}

static void complete_put(struct t *t, unsigned k, int status)
{
    assert_true(k < t->f.n_puts);
    struct fake_put *p = &t->f.puts[k];
    assert_false(p->done);
    p->done = true;
    p->cb(p->req, status);
    assert_int_equal(t->op[k].calls, 1);
    assert_int_equal(t->op[k].status, status);
    assert_int_equal(t->stray_put_cbs, 0);
}

static void truncate_ok(struct t *t, raft_index index)
{
    assert_int_equal(t->d.io.truncate(&t->d.io, index), 0);
    assert_int_equal(t->f.truncated, index);
}

static void fill_entries(struct raft_entry *entries, size_t n, const raft_term *terms)
{
    memset(entries, 0, n * sizeof(*entries));
    for (size_t i = 0; i < n; i++) {
        entries[i].term = terms[i];
        entries[i].type = RAFT_COMMAND;
    }
}

/* Load a log of @n entries starting at 1, all of term @term. */
static void load_plain(struct t *t, size_t n, raft_term term, struct raft_entry *storage)
{
    for (size_t i = 0; i < n; i++) {
        memset(&storage[i], 0, sizeof(storage[i]));
        storage[i].term = term;
        storage[i].type = RAFT_COMMAND;
    }
    t->f.load_start = 1;
    t->f.load_entries = n > 0 ? storage : NULL;
    t->f.load_n = n;
    load(t);
}

/* ---- 1. Forwarding ------------------------------------------------------------------------- */

static void tick_cb(struct raft_io *io)
{
    (void)io;
}

static void recv_cb(struct raft_io *io, struct raft_message *msg)
{
    (void)io;
    (void)msg;
}

static void close_cb(struct raft_io *io)
{
    (void)io;
}

static void send_cb(struct raft_io_send *req, int status)
{
    (void)req;
    (void)status;
}

/* What the outer snapshot_get callback last saw. */
static struct {
    unsigned calls;
    struct raft_io_snapshot_get *req;
    struct raft_snapshot *snapshot;
    int status;
} got;

static void get_cb(struct raft_io_snapshot_get *req, struct raft_snapshot *snapshot, int status)
{
    got.calls++;
    got.req = req;
    got.snapshot = snapshot;
    got.status = status;
}

static void work_cb(struct raft_io_async_work *req, int status)
{
    (void)req;
    (void)status;
}

/* The last call of @m reached the inner io, once more than before, with raft's data set. */
static void assert_forwarded(struct t *t, enum fake_method m, unsigned calls_before, void *data)
{
    assert_int_equal(t->f.calls[m], calls_before + 1);
    assert_ptr_equal(t->f.seen_io[m], &t->f.io);
    assert_ptr_equal(t->f.seen_data[m], data);
}

static void test_init_copies_inner(void **state)
{
    struct t *t = *state;
    assert_int_equal(t->d.io.version, 2);
    assert_ptr_equal(t->d.io.impl, &t->f);
    assert_ptr_equal(t->d.inner, &t->f.io);
    assert_non_null(t->d.io.async_work);
    assert_durable(t, 0, 0);

    /* A version 1 io has no async_work: neither has the wrapper. */
    struct fake f1;
    struct cl_durable d1;
    fake_setup(&f1, 1);
    cl_durable_init(&d1, &f1.io);
    assert_int_equal(d1.io.version, 1);
    assert_null(d1.io.async_work);
    raft_index index = 1;
    raft_term term = 1;
    cl_durable_get(&d1, &index, &term);
    assert_int_equal(index, 0);
    assert_int_equal(term, 0);

    /* raft_uv 0.15: version 1, but with async_work. The wrapper forwards it and says 2, or
     * raft_init would refuse async snapshots. */
    struct fake f2;
    struct cl_durable d2;
    fake_setup(&f2, 1);
    f2.io.async_work = fake_async_work;
    cl_durable_init(&d2, &f2.io);
    assert_int_equal(d2.io.version, 2);
    assert_non_null(d2.io.async_work);
}

static void test_forward_all(void **state)
{
    struct t *t = *state;
    int raft_token;
    void *data = &raft_token;
    t->d.io.data = data;
    unsigned c;

    c = t->f.calls[M_INIT];
    assert_int_equal(t->d.io.init(&t->d.io, 7, "127.0.0.1:9000"), 0);
    assert_forwarded(t, M_INIT, c, data);
    assert_int_equal(t->f.init_id, 7);
    assert_string_equal(t->f.init_address, "127.0.0.1:9000");

    c = t->f.calls[M_LOAD];
    t->f.load_term = 3;
    t->f.load_vote = 2;
    load(t);
    assert_forwarded(t, M_LOAD, c, data);

    c = t->f.calls[M_START];
    assert_int_equal(t->d.io.start(&t->d.io, 100, tick_cb, recv_cb), 0);
    assert_forwarded(t, M_START, c, data);
    assert_int_equal(t->f.start_msecs, 100);
    assert_true(t->f.start_tick == tick_cb);
    assert_true(t->f.start_recv == recv_cb);

    struct raft_configuration conf;
    memset(&conf, 0, sizeof(conf));
    c = t->f.calls[M_BOOTSTRAP];
    assert_int_equal(t->d.io.bootstrap(&t->d.io, &conf), 0);
    assert_forwarded(t, M_BOOTSTRAP, c, data);
    assert_ptr_equal(t->f.conf, &conf);

    t->f.conf = NULL;
    c = t->f.calls[M_RECOVER];
    assert_int_equal(t->d.io.recover(&t->d.io, &conf), 0);
    assert_forwarded(t, M_RECOVER, c, data);
    assert_ptr_equal(t->f.conf, &conf);

    c = t->f.calls[M_SET_TERM];
    assert_int_equal(t->d.io.set_term(&t->d.io, 11), 0);
    assert_forwarded(t, M_SET_TERM, c, data);
    assert_int_equal(t->f.term, 11);

    c = t->f.calls[M_SET_VOTE];
    assert_int_equal(t->d.io.set_vote(&t->d.io, 3), 0);
    assert_forwarded(t, M_SET_VOTE, c, data);
    assert_int_equal(t->f.vote, 3);

    struct raft_io_send send_req;
    struct raft_message message;
    memset(&send_req, 0, sizeof(send_req));
    memset(&message, 0, sizeof(message));
    c = t->f.calls[M_SEND];
    assert_int_equal(t->d.io.send(&t->d.io, &send_req, &message, send_cb), 0);
    assert_forwarded(t, M_SEND, c, data);
    assert_ptr_equal(t->f.send_req, &send_req);
    assert_ptr_equal(t->f.send_message, &message);
    assert_true(t->f.send_cb == send_cb);

    c = t->f.calls[M_APPEND];
    unsigned a0 = append(t, 2, 1);
    assert_forwarded(t, M_APPEND, c, data);
    assert_true(t->oa[a0].req.cb == outer_append_cb);
    unsigned a1 = append(t, 1, 1);
    complete_append(t, a0, 0); /* Outer callback: outer request, same status. */
    complete_append(t, a1, RAFT_IOERR);
    assert_int_equal(t->oa[a1].status, RAFT_IOERR);

    c = t->f.calls[M_TRUNCATE];
    truncate_ok(t, 3);
    assert_forwarded(t, M_TRUNCATE, c, data);

    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 2;
    snap.term = 1;
    c = t->f.calls[M_SNAPSHOT_PUT];
    unsigned p0 = snapshot_put(t, 1, &snap);
    assert_forwarded(t, M_SNAPSHOT_PUT, c, data);
    assert_true(t->op[p0].req.cb == outer_put_cb);
    unsigned p1 = snapshot_put(t, 1, &snap);
    complete_put(t, p0, 0);
    complete_put(t, p1, RAFT_NOSPACE);
    assert_int_equal(t->op[p1].status, RAFT_NOSPACE);

    struct raft_io_snapshot_get get_req;
    memset(&get_req, 0, sizeof(get_req));
    c = t->f.calls[M_SNAPSHOT_GET];
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    assert_forwarded(t, M_SNAPSHOT_GET, c, data);
    /* Without a fill hook the inner completion reaches raft's callback unchanged. */
    struct raft_snapshot got_snap;
    memset(&got, 0, sizeof(got));
    t->f.get_cb(t->f.get_req, &got_snap, 0);
    assert_int_equal(got.calls, 1);
    assert_ptr_equal(got.req, &get_req);
    assert_ptr_equal(got.snapshot, &got_snap);
    assert_int_equal(got.status, 0);

    c = t->f.calls[M_TIME];
    assert_int_equal(t->d.io.time(&t->d.io), 4242);
    assert_forwarded(t, M_TIME, c, data);

    c = t->f.calls[M_RANDOM];
    assert_int_equal(t->d.io.random(&t->d.io, 150, 300), 157);
    assert_forwarded(t, M_RANDOM, c, data);
    assert_int_equal(t->f.random_min, 150);
    assert_int_equal(t->f.random_max, 300);

    struct raft_io_async_work work_req;
    memset(&work_req, 0, sizeof(work_req));
    c = t->f.calls[M_ASYNC_WORK];
    assert_int_equal(t->d.io.async_work(&t->d.io, &work_req, work_cb), 0);
    assert_forwarded(t, M_ASYNC_WORK, c, data);
    assert_ptr_equal(t->f.work_req, &work_req);
    assert_true(t->f.work_cb == work_cb);

    c = t->f.calls[M_CLOSE];
    t->d.io.close(&t->d.io, close_cb);
    assert_forwarded(t, M_CLOSE, c, data);
    assert_true(t->f.close_cb == close_cb);

    /* A later change of raft's data is propagated too. */
    int other_token;
    t->d.io.data = &other_token;
    c = t->f.calls[M_SET_TERM];
    assert_int_equal(t->d.io.set_term(&t->d.io, 12), 0);
    assert_forwarded(t, M_SET_TERM, c, &other_token);
}

/* Before the wrapper's errmsg is checked, fill it with something else. */
static void clear_errmsg(struct t *t)
{
    memset(t->d.io.errmsg, 0, sizeof(t->d.io.errmsg));
    strcpy(t->d.io.errmsg, "stale");
}

static void assert_failed(struct t *t, enum fake_method m, int rv, unsigned calls_before)
{
    char want[RAFT_ERRMSG_BUF_SIZE];
    snprintf(want, sizeof(want), "fake %s failed", method_names[m]);
    assert_int_equal(rv, t->f.fail_rv);
    assert_int_equal(t->f.calls[m], calls_before + 1);
    assert_ptr_equal(t->f.seen_io[m], &t->f.io);
    assert_string_equal(t->d.io.errmsg, want);
}

static void test_forward_errors(void **state)
{
    struct t *t = *state;
    struct raft_entry log[3];
    raft_term log_terms[3] = {1, 1, 2};
    fill_entries(log, 3, log_terms);
    t->f.load_entries = log;
    t->f.load_n = 3;
    load(t);
    assert_durable(t, 3, 2);

    t->f.fail_rv = RAFT_IOERR;
    unsigned c;
    int rv;

    clear_errmsg(t);
    c = t->f.calls[M_INIT];
    rv = t->d.io.init(&t->d.io, 1, "a");
    assert_failed(t, M_INIT, rv, c);

    /* A failed load changes nothing. */
    clear_errmsg(t);
    c = t->f.calls[M_LOAD];
    {
        raft_term term = 0;
        raft_id vote = 0;
        struct raft_snapshot *snapshot = NULL;
        raft_index start = 0;
        struct raft_entry *entries = NULL;
        size_t n = 0;
        rv = t->d.io.load(&t->d.io, &term, &vote, &snapshot, &start, &entries, &n);
    }
    assert_failed(t, M_LOAD, rv, c);
    assert_durable(t, 3, 2);

    clear_errmsg(t);
    c = t->f.calls[M_START];
    rv = t->d.io.start(&t->d.io, 100, tick_cb, recv_cb);
    assert_failed(t, M_START, rv, c);

    struct raft_configuration conf;
    memset(&conf, 0, sizeof(conf));
    clear_errmsg(t);
    c = t->f.calls[M_BOOTSTRAP];
    rv = t->d.io.bootstrap(&t->d.io, &conf);
    assert_failed(t, M_BOOTSTRAP, rv, c);

    clear_errmsg(t);
    c = t->f.calls[M_RECOVER];
    rv = t->d.io.recover(&t->d.io, &conf);
    assert_failed(t, M_RECOVER, rv, c);

    clear_errmsg(t);
    c = t->f.calls[M_SET_TERM];
    rv = t->d.io.set_term(&t->d.io, 5);
    assert_failed(t, M_SET_TERM, rv, c);

    clear_errmsg(t);
    c = t->f.calls[M_SET_VOTE];
    rv = t->d.io.set_vote(&t->d.io, 5);
    assert_failed(t, M_SET_VOTE, rv, c);

    struct raft_io_send send_req;
    struct raft_message message;
    memset(&send_req, 0, sizeof(send_req));
    memset(&message, 0, sizeof(message));
    clear_errmsg(t);
    c = t->f.calls[M_SEND];
    rv = t->d.io.send(&t->d.io, &send_req, &message, send_cb);
    assert_failed(t, M_SEND, rv, c);

    /* A failed append: no callback, nothing durable, and its indexes are not used up. */
    struct outer_append failed_append;
    memset(&failed_append, 0, sizeof(failed_append));
    struct raft_entry entries[2];
    raft_term entry_terms[2] = {3, 3};
    fill_entries(entries, 2, entry_terms);
    clear_errmsg(t);
    c = t->f.calls[M_APPEND];
    rv = t->d.io.append(&t->d.io, &failed_append.req, entries, 2, outer_append_cb);
    assert_failed(t, M_APPEND, rv, c);
    assert_int_equal(t->f.n_appends, 0);
    assert_durable(t, 3, 2);

    /* A failed truncate does not lower anything. */
    clear_errmsg(t);
    c = t->f.calls[M_TRUNCATE];
    rv = t->d.io.truncate(&t->d.io, 2);
    assert_failed(t, M_TRUNCATE, rv, c);
    assert_int_equal(t->f.truncated, 2);
    assert_durable(t, 3, 2);

    /* A failed local snapshot put. */
    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 3;
    snap.term = 2;
    struct outer_put failed_put;
    memset(&failed_put, 0, sizeof(failed_put));
    clear_errmsg(t);
    c = t->f.calls[M_SNAPSHOT_PUT];
    rv = t->d.io.snapshot_put(&t->d.io, 2, &failed_put.req, &snap, outer_put_cb);
    assert_failed(t, M_SNAPSHOT_PUT, rv, c);
    assert_int_equal(t->f.n_puts, 0);
    assert_durable(t, 3, 2);

    struct raft_io_snapshot_get get_req;
    memset(&get_req, 0, sizeof(get_req));
    clear_errmsg(t);
    c = t->f.calls[M_SNAPSHOT_GET];
    rv = t->d.io.snapshot_get(&t->d.io, &get_req, get_cb);
    assert_failed(t, M_SNAPSHOT_GET, rv, c);

    struct raft_io_async_work work_req;
    memset(&work_req, 0, sizeof(work_req));
    clear_errmsg(t);
    c = t->f.calls[M_ASYNC_WORK];
    rv = t->d.io.async_work(&t->d.io, &work_req, work_cb);
    assert_failed(t, M_ASYNC_WORK, rv, c);

    /* Another code is passed through as is. */
    t->f.fail_rv = RAFT_NOSPACE;
    clear_errmsg(t);
    c = t->f.calls[M_SET_TERM];
    rv = t->d.io.set_term(&t->d.io, 6);
    assert_failed(t, M_SET_TERM, rv, c);
    assert_int_equal(rv, RAFT_NOSPACE);

    /* A success leaves errmsg alone. */
    t->f.fail_rv = 0;
    clear_errmsg(t);
    assert_int_equal(t->d.io.set_term(&t->d.io, 7), 0);
    assert_string_equal(t->d.io.errmsg, "stale");

    /* The failed append used no index: the next one gets 4. */
    unsigned k = append(t, 1, 3);
    complete_append(t, k, 0);
    assert_durable(t, 4, 3);
    assert_int_equal(failed_append.calls, 0);
    assert_int_equal(failed_put.calls, 0);
}

/* ---- 2. load ------------------------------------------------------------------------------- */

static void test_load_entries_only(void **state)
{
    struct t *t = *state;
    struct raft_entry log[5];
    raft_term terms[5] = {1, 1, 2, 2, 3};
    fill_entries(log, 5, terms);
    t->f.load_term = 3;
    t->f.load_vote = 1;
    t->f.load_start = 1;
    t->f.load_entries = log;
    t->f.load_n = 5;
    load(t);
    assert_durable(t, 5, 3);

    /* Next entry is 6; its term comes from the append. */
    unsigned k = append(t, 1, 4);
    assert_durable(t, 5, 3);
    complete_append(t, k, 0);
    assert_durable(t, 6, 4);

    /* The loaded terms are known: truncating at 5 leaves (4, 2). */
    truncate_ok(t, 5);
    assert_durable(t, 4, 2);
}

static void test_load_snapshot_and_entries(void **state)
{
    struct t *t = *state;
    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 100;
    snap.term = 4;
    /* Trailing entries 90..110: 90..100 of term 4, 101..109 of term 5, 110 of term 6. */
    struct raft_entry log[21];
    raft_term terms[21];
    for (unsigned i = 0; i < 21; i++) {
        raft_index index = 90 + i;
        terms[i] = index <= 100 ? 4 : index < 110 ? 5 : 6;
    }
    fill_entries(log, 21, terms);
    t->f.load_term = 6;
    t->f.load_snapshot = &snap;
    t->f.load_start = 90;
    t->f.load_entries = log;
    t->f.load_n = 21;
    load(t);
    assert_durable(t, 110, 6);

    unsigned k = append(t, 2, 7);
    complete_append(t, k, 0);
    assert_durable(t, 112, 7);

    truncate_ok(t, 110);
    assert_durable(t, 109, 5);
    truncate_ok(t, 95);
    assert_durable(t, 94, 4);
}

static void test_load_snapshot_only(void **state)
{
    struct t *t = *state;
    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 100;
    snap.term = 4;
    t->f.load_term = 4;
    t->f.load_snapshot = &snap;
    t->f.load_start = 101;
    t->f.load_entries = NULL;
    t->f.load_n = 0;
    load(t);
    assert_durable(t, 100, 4);

    unsigned k = append(t, 3, 4);
    complete_append(t, k, 0);
    assert_durable(t, 103, 4);
}

static void test_load_empty(void **state)
{
    struct t *t = *state;
    t->f.load_start = 1;
    t->f.load_entries = NULL;
    t->f.load_n = 0;
    load(t);
    assert_durable(t, 0, 0);

    unsigned k = append(t, 1, 1);
    complete_append(t, k, 0);
    assert_durable(t, 1, 1);
}

/* A second load (a restart of the same wrapper) starts over from what is on disk. */
static void test_load_twice(void **state)
{
    struct t *t = *state;
    struct raft_entry log[8];
    load_plain(t, 8, 2, log);
    assert_durable(t, 8, 2);
    unsigned k = append(t, 2, 3); /* 9..10, in flight across the reload. */

    load_plain(t, 3, 1, log);
    assert_durable(t, 3, 1);
    complete_append(t, k, 0);
    assert_durable(t, 3, 1);
    k = append(t, 1, 4);
    complete_append(t, k, 0);
    assert_durable(t, 4, 4);
}

/* ---- 3. append ----------------------------------------------------------------------------- */

static void test_append_durable_on_completion(void **state)
{
    struct t *t = *state;
    load_plain(t, 0, 0, NULL);

    unsigned a = append(t, 3, 1); /* 1..3 */
    assert_durable(t, 0, 0);
    complete_append(t, a, 0);
    assert_durable(t, 3, 1);

    raft_term terms[3] = {1, 2, 2};
    unsigned b = append_terms(t, terms, 3); /* 4..6, last of term 2 */
    unsigned c = append(t, 2, 3);           /* 7..8 */
    assert_durable(t, 3, 1);
    complete_append(t, b, 0);
    assert_durable(t, 6, 2);
    complete_append(t, c, 0);
    assert_durable(t, 8, 3);
}

static void test_append_failed(void **state)
{
    struct t *t = *state;
    struct raft_entry log[4];
    load_plain(t, 4, 1, log);
    assert_durable(t, 4, 1);

    unsigned a = append(t, 2, 2); /* 5..6 */
    complete_append(t, a, RAFT_IOERR);
    assert_durable(t, 4, 1);

    /* In flight behind a success: the failure keeps what the success made durable. */
    unsigned b = append(t, 1, 2); /* 7 */
    unsigned c = append(t, 1, 2); /* 8 */
    complete_append(t, b, RAFT_IOERR);
    assert_durable(t, 4, 1);
    complete_append(t, c, RAFT_CANCELED);
    assert_durable(t, 4, 1);

    /* After a failure raft may reuse indexes without a truncate: later successes must not
     * raise the durable index until the log is set explicitly again. */
    unsigned d = append(t, 1, 2);
    complete_append(t, d, 0);
    assert_durable(t, 4, 1);
    truncate_ok(t, 5);
    unsigned e = append(t, 2, 3); /* 5..6 */
    complete_append(t, e, 0);
    assert_durable(t, 6, 3);
}

/* A failure completing later copies the real io's message for raft to read. */
static void test_append_failed_errmsg(void **state)
{
    struct t *t = *state;
    load_plain(t, 0, 0, NULL);
    unsigned a = append(t, 1, 1);
    snprintf(t->f.io.errmsg, sizeof(t->f.io.errmsg), "write: disk on fire");
    complete_append(t, a, RAFT_IOERR);
    assert_string_equal(t->d.io.errmsg, "write: disk on fire");
}

/* ---- 4. truncate --------------------------------------------------------------------------- */

static void test_truncate_lowers_at_once(void **state)
{
    struct t *t = *state;
    load_plain(t, 0, 0, NULL);

    unsigned a = append(t, 3, 1); /* 1..3 term 1 */
    raft_term terms[3] = {2, 2, 3};
    unsigned b = append_terms(t, terms, 3); /* 4..6: 4, 5 term 2, 6 term 3 */
    complete_append(t, a, 0);
    complete_append(t, b, 0);
    assert_durable(t, 6, 3);

    unsigned c = append(t, 2, 3); /* 7..8 */
    unsigned d = append(t, 2, 3); /* 9..10 */

    truncate_ok(t, 6);
    assert_durable(t, 5, 2);

    /* Appends of before the truncate do not raise it. */
    complete_append(t, c, 0);
    assert_durable(t, 5, 2);
    complete_append(t, d, 0);
    assert_durable(t, 5, 2);

    /* A new append starts at the truncation index and does. */
    unsigned e = append(t, 2, 4); /* 6..7 */
    assert_durable(t, 5, 2);
    complete_append(t, e, 0);
    assert_durable(t, 7, 4);

    /* Truncating right after the term change: the term at 5 is 2, at 6 now 4. */
    truncate_ok(t, 7);
    assert_durable(t, 6, 4);
    truncate_ok(t, 6);
    assert_durable(t, 5, 2);
    truncate_ok(t, 1);
    assert_durable(t, 0, 0);
    unsigned f = append(t, 1, 5);
    complete_append(t, f, 0);
    assert_durable(t, 1, 5);
}

/* Truncating above the durable index keeps it, but older in-flight appends stop counting. */
static void test_truncate_above_durable(void **state)
{
    struct t *t = *state;
    struct raft_entry log[3];
    load_plain(t, 3, 1, log);

    unsigned a = append(t, 5, 2); /* 4..8 */
    truncate_ok(t, 6);
    assert_durable(t, 3, 1);
    complete_append(t, a, 0);
    assert_durable(t, 3, 1);

    unsigned b = append(t, 2, 3); /* 6..7 */
    unsigned c = append(t, 1, 3); /* 8 */
    complete_append(t, b, 0);
    assert_durable(t, 7, 3);
    complete_append(t, c, 0);
    assert_durable(t, 8, 3);
}

/* Two truncates with appends in between, all in flight. */
static void test_truncate_generations(void **state)
{
    struct t *t = *state;
    struct raft_entry log[10];
    load_plain(t, 10, 1, log);

    unsigned a = append(t, 2, 2); /* 11..12 */
    truncate_ok(t, 9);
    assert_durable(t, 8, 1);
    unsigned b = append(t, 3, 3); /* 9..11 */
    truncate_ok(t, 10);
    assert_durable(t, 8, 1);
    unsigned c = append(t, 1, 4); /* 10 */

    complete_append(t, a, 0);
    assert_durable(t, 8, 1);
    complete_append(t, b, 0);
    assert_durable(t, 8, 1);
    complete_append(t, c, 0);
    assert_durable(t, 10, 4);
    truncate_ok(t, 10);
    assert_durable(t, 9, 3);
}

/* When the term at the truncation point is no longer remembered, the term reported is 0. */
static void test_truncate_term_unknown(void **state)
{
    struct t *t = *state;
    const size_t n = CL_DURABLE_TERMS + 904;
    struct raft_entry *log = calloc(n, sizeof(*log));
    assert_non_null(log);
    load_plain(t, n, 2, log);
    free(log);
    assert_durable(t, n, 2);

    /* Index 4499 is still remembered. */
    truncate_ok(t, 4500);
    assert_durable(t, 4499, 2);
    /* Index 99's slot now holds index 99 + CL_DURABLE_TERMS. */
    truncate_ok(t, 100);
    assert_durable(t, 99, 0);
    truncate_ok(t, 1);
    assert_durable(t, 0, 0);

    unsigned a = append(t, 1, 3);
    complete_append(t, a, 0);
    assert_durable(t, 1, 3);
}

/* ---- 5. snapshot_put ----------------------------------------------------------------------- */

static void test_install_snapshot(void **state)
{
    struct t *t = *state;
    struct raft_entry log[10];
    load_plain(t, 10, 2, log);
    assert_durable(t, 10, 2);

    unsigned a = append(t, 2, 3); /* 11..12, issued before the install */

    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 100;
    snap.term = 4;
    unsigned p = snapshot_put(t, 0, &snap);
    assert_durable(t, 0, 0);

    complete_append(t, a, 0);
    assert_durable(t, 0, 0);

    complete_put(t, p, 0);
    assert_durable(t, 100, 4);

    unsigned b = append(t, 1, 5); /* 101 */
    assert_durable(t, 100, 4);
    complete_append(t, b, 0);
    assert_durable(t, 101, 5);

    /* The snapshot's term is remembered at its index. */
    truncate_ok(t, 101);
    assert_durable(t, 100, 4);
}

static void test_install_snapshot_failed(void **state)
{
    struct t *t = *state;
    struct raft_entry log[10];
    load_plain(t, 10, 2, log);

    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 50;
    snap.term = 3;
    unsigned p = snapshot_put(t, 0, &snap);
    assert_durable(t, 0, 0);
    complete_put(t, p, RAFT_IOERR);
    assert_durable(t, 0, 0);

    /* raft kept its old log (1..10): the next appends are 11.., not 51.., so nothing counts
     * until the log is set again. A truncate above the uncertain indexes does not do it. */
    unsigned a = append(t, 1, 3);
    complete_append(t, a, 0);
    assert_durable(t, 0, 0);
    truncate_ok(t, 11);
    unsigned b = append(t, 1, 3);
    complete_append(t, b, 0);
    assert_durable(t, 0, 0);
}

/* A truncate clears a failure only when it cuts every index the failure left uncertain. */
static void test_truncate_above_failure_keeps_frozen(void **state)
{
    struct t *t = *state;
    struct raft_entry log[4];
    load_plain(t, 4, 1, log);
    unsigned a = append(t, 4, 2); /* 5..8 */
    complete_append(t, a, RAFT_IOERR);
    truncate_ok(t, 7); /* Cuts 7..8 only: 5..6 may still be in raft's log, never written. */
    unsigned b = append(t, 1, 2); /* 7 */
    complete_append(t, b, 0);
    assert_durable(t, 4, 1);
    truncate_ok(t, 5);
    unsigned c = append(t, 2, 3); /* 5..6 */
    complete_append(t, c, 0);
    assert_durable(t, 6, 3);
}

/* An append issued after the install completes after it, as the io completes in order. */
static void test_install_snapshot_then_append_in_flight(void **state)
{
    struct t *t = *state;
    struct raft_entry log[3];
    load_plain(t, 3, 1, log);

    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 20;
    snap.term = 2;
    unsigned p = snapshot_put(t, 0, &snap);
    unsigned a = append(t, 2, 2); /* 21..22 */
    assert_durable(t, 0, 0);
    complete_put(t, p, 0);
    assert_durable(t, 20, 2);
    complete_append(t, a, 0);
    assert_durable(t, 22, 2);
}

static void test_local_snapshot(void **state)
{
    struct t *t = *state;
    struct raft_entry log[10];
    load_plain(t, 10, 2, log);

    unsigned a = append(t, 2, 3); /* 11..12 */

    struct raft_snapshot snap;
    memset(&snap, 0, sizeof(snap));
    snap.index = 10;
    snap.term = 2;
    unsigned p = snapshot_put(t, 5, &snap);
    assert_durable(t, 10, 2);
    complete_put(t, p, 0);
    assert_durable(t, 10, 2);

    /* The append issued before the snapshot still counts. */
    complete_append(t, a, 0);
    assert_durable(t, 12, 3);

    /* A failed local snapshot changes nothing either. */
    snap.index = 12;
    snap.term = 3;
    p = snapshot_put(t, 1, &snap);
    complete_put(t, p, RAFT_IOERR);
    assert_durable(t, 12, 3);

    unsigned b = append(t, 1, 3); /* 13 */
    complete_append(t, b, 0);
    assert_durable(t, 13, 3);
}

/* ---- 6. cl_durable_confirms ---------------------------------------------------------------- */

static void test_confirms(void **state)
{
    (void)state;
    /* Same term, index at or past the entry. */
    assert_true(cl_durable_confirms(10, 3, 10, 3));
    assert_true(cl_durable_confirms(11, 3, 10, 3));
    assert_true(cl_durable_confirms(10, 3, 1, 3));
    /* Index short of the entry. */
    assert_false(cl_durable_confirms(9, 3, 10, 3));
    assert_false(cl_durable_confirms(0, 3, 1, 3));
    /* Another term, either way, even with the index far ahead. */
    assert_false(cl_durable_confirms(100, 2, 10, 3));
    assert_false(cl_durable_confirms(100, 4, 10, 3));
    /* Unknown term (0) never confirms, not even against a leader term of 0. */
    assert_false(cl_durable_confirms(100, 0, 10, 3));
    assert_false(cl_durable_confirms(100, 0, 10, 0));
    assert_false(cl_durable_confirms(0, 0, 0, 0));
}

/* A snapshot as raft_io's snapshot_get hands one over. */
static struct raft_snapshot *loaded_snapshot(const char *data)
{
    return test_raft_snapshot_loaded(data, strlen(data));
}

static struct {
    unsigned calls;
    int rv; /* What the hook returns. */
} fill_log;

static int fill_full(void *arg, struct raft_snapshot *snap)
{
    assert_ptr_equal(arg, &fill_log);
    fill_log.calls++;
    if (fill_log.rv != 0) {
        return fill_log.rv;
    }
    raft_free(snap->bufs[0].base);
    snap->bufs[0].len = 4;
    snap->bufs[0].base = raft_malloc(4);
    assert_non_null(snap->bufs[0].base);
    memcpy(snap->bufs[0].base, "full", 4);
    return 0;
}

/* Complete the pending snapshot_get with (@snap, @status) as the inner io would; if that
 * queued the fill on a worker, say so in *queued and run it (work, then its callback). */
static void complete_get(struct t *t, struct raft_snapshot *snap, int status, bool *queued)
{
    struct raft_io_async_work *before = t->f.work_req;
    t->f.work_req = NULL;
    t->f.get_cb(t->f.get_req, snap, status);
    *queued = t->f.work_req != NULL;
    if (*queued) {
        struct raft_io_async_work *work = t->f.work_req;
        unsigned calls = got.calls;
        assert_true(t->f.work_cb != NULL);
        int rv = work->work(work);          /* The worker's part... */
        assert_int_equal(got.calls, calls); /* ...does not answer raft yet. */
        t->f.work_cb(work, rv);
    }
    if (t->f.work_req == NULL) {
        t->f.work_req = before;
    }
}

/* The fill hook sees every loaded snapshot before raft does: what it puts in is what raft
 * sends; when it fails, the snapshot is freed (ASan and valgrind would see a leak) and raft's
 * get fails with the hook's code. A failed load never reaches the hook. The hook runs through
 * the real io's async_work when it has one, inline when it has none or refuses the work. */
static void test_snapshot_get_fill(void **state)
{
    struct t *t = *state;
    cl_durable_set_fill(&t->d, fill_full, &fill_log);
    struct raft_io_snapshot_get get_req;
    memset(&get_req, 0, sizeof(get_req));
    bool queued = false;

    memset(&fill_log, 0, sizeof(fill_log));
    memset(&got, 0, sizeof(got));
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    struct raft_snapshot *snap = loaded_snapshot("marker");
    complete_get(t, snap, 0, &queued);
    assert_true(queued);
    assert_int_equal(fill_log.calls, 1);
    assert_int_equal(got.calls, 1);
    assert_ptr_equal(got.req, &get_req);
    assert_ptr_equal(got.snapshot, snap);
    assert_int_equal(got.status, 0);
    assert_int_equal(snap->index, 40);
    assert_int_equal(snap->term, 3);
    assert_int_equal(snap->n_bufs, 1);
    assert_int_equal(snap->bufs[0].len, 4);
    assert_memory_equal(snap->bufs[0].base, "full", 4);
    test_raft_snapshot_free(snap);

    fill_log.rv = RAFT_IOERR;
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    complete_get(t, loaded_snapshot("marker"), 0, &queued);
    assert_true(queued);
    assert_int_equal(fill_log.calls, 2);
    assert_int_equal(got.calls, 2);
    assert_ptr_equal(got.req, &get_req);
    assert_null(got.snapshot);
    assert_int_equal(got.status, RAFT_IOERR);

    /* A failed load: raft_uv hands over a snapshot struct whose fields may never have been
     * set. It must reach raft as it is, untouched (freeing its garbage would crash). */
    fill_log.rv = 0;
    struct raft_snapshot garbage;
    memset(&garbage, 0xa5, sizeof(garbage));
    struct raft_snapshot before = garbage;
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    complete_get(t, &garbage, RAFT_IOERR, &queued);
    assert_false(queued);
    assert_int_equal(fill_log.calls, 2);
    assert_int_equal(got.calls, 3);
    assert_ptr_equal(got.snapshot, &garbage);
    assert_int_equal(got.status, RAFT_IOERR);
    assert_memory_equal(&garbage, &before, sizeof(garbage));

    /* The io refuses the work: filled inline. */
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    t->f.fail_rv = RAFT_NOMEM;
    snap = loaded_snapshot("marker");
    t->f.get_cb(t->f.get_req, snap, 0);
    t->f.fail_rv = 0;
    assert_int_equal(fill_log.calls, 3);
    assert_int_equal(got.calls, 4);
    assert_ptr_equal(got.snapshot, snap);
    assert_int_equal(got.status, 0);
    assert_memory_equal(snap->bufs[0].base, "full", 4);
    test_raft_snapshot_free(snap);

    /* An io without workers (raft's fixture): filled inline. */
    int (*async_work)(struct raft_io *, struct raft_io_async_work *, raft_io_async_work_cb) =
        t->f.io.async_work;
    t->f.io.async_work = NULL;
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    snap = loaded_snapshot("marker");
    complete_get(t, snap, 0, &queued);
    t->f.io.async_work = async_work;
    assert_false(queued);
    assert_int_equal(fill_log.calls, 4);
    assert_int_equal(got.calls, 5);
    assert_ptr_equal(got.snapshot, snap);
    assert_memory_equal(snap->bufs[0].base, "full", 4);
    test_raft_snapshot_free(snap);

    /* Cleared: snapshots pass untouched again. */
    cl_durable_set_fill(&t->d, NULL, NULL);
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    snap = loaded_snapshot("marker");
    complete_get(t, snap, 0, &queued);
    assert_false(queued);
    assert_int_equal(fill_log.calls, 4);
    assert_ptr_equal(got.snapshot, snap);
    assert_memory_equal(snap->bufs[0].base, "marker", 6);
    test_raft_snapshot_free(snap);

    /* A load that completes once raft has closed the io is dropped, not filled: raft_uv takes
     * no new work while it closes. */
    cl_durable_set_fill(&t->d, fill_full, &fill_log);
    assert_int_equal(t->d.io.snapshot_get(&t->d.io, &get_req, get_cb), 0);
    t->d.io.close(&t->d.io, close_cb);
    complete_get(t, loaded_snapshot("marker"), 0, &queued);
    assert_false(queued);
    assert_int_equal(fill_log.calls, 4);
    assert_int_equal(got.calls, 7);
    assert_null(got.snapshot);
    assert_int_equal(got.status, RAFT_CANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_copies_inner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_entries_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_snapshot_and_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_snapshot_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_durable_on_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_failed_errmsg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_lowers_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_above_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_term_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_snapshot_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_above_failure_keeps_frozen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_snapshot_then_append_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_local_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_get_fill, setup, teardown),
        cmocka_unit_test(test_confirms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
