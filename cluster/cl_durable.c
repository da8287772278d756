#include "cl_durable.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct durable_append {
    struct raft_io_append inner; /* What the real io sees. */
    struct raft_io_append *outer;
    raft_io_append_cb cb;
    struct cl_durable *d;
    uint64_t generation;
    raft_index first_index, last_index;
    raft_term last_term;
};

struct durable_put {
    struct raft_io_snapshot_put inner;
    struct raft_io_snapshot_put *outer;
    raft_io_snapshot_put_cb cb;
    struct cl_durable *d;
    uint64_t generation;
    raft_index index;
    raft_term term;
    int install; /* trailing == 0: the snapshot replaces the whole log. */
};

struct durable_get {
    struct raft_io_snapshot_get inner;
    struct raft_io_async_work work; /* Runs the fill hook on a worker, when the io has them. */
    struct raft_io_snapshot_get *outer;
    raft_io_snapshot_get_cb cb;
    struct cl_durable *d;
    struct raft_snapshot *snapshot; /* As loaded, then as filled. */
    int status;
    int loaded; /* The inner get succeeded: *snapshot is whole and ours to free. */
};

/* raft hands our io to every call; its callbacks come back through the inner io, whose data
 * must therefore be raft's too. */
static struct cl_durable *durable_of(struct raft_io *io)
{
    struct cl_durable *d = (struct cl_durable *)io;
    assert(&d->io == io);
    if (io->data != NULL) {
        d->inner->data = io->data;
    }
    return d;
}

/* raft reads io->errmsg after a failed call: hand over the real io's message. */
static int durable_rv(struct cl_durable *d, int rv)
{
    if (rv != 0) {
        memcpy(d->io.errmsg, d->inner->errmsg, sizeof(d->io.errmsg));
    }
    return rv;
}

/* A request could not be allocated: what raft reads back as the io's error. */
static int durable_nomem(struct cl_durable *d)
{
    snprintf(d->io.errmsg, sizeof(d->io.errmsg), "out of memory");
    return RAFT_NOMEM;
}

static void durable_remember_term(struct cl_durable *d, raft_index index, raft_term term)
{
    d->term_index[index % CL_DURABLE_TERMS] = index;
    d->term_of[index % CL_DURABLE_TERMS] = term;
}

static raft_term durable_term_at(const struct cl_durable *d, raft_index index)
{
    if (index == 0 || d->term_index[index % CL_DURABLE_TERMS] != index) {
        return 0;
    }
    return d->term_of[index % CL_DURABLE_TERMS];
}

/* The log from here on is no longer the one in flight: lower what we claim and ignore the
 * completions of older appends. */
static void durable_cut(struct cl_durable *d, raft_index first_gone)
{
    d->generation++;
    /* From here on next_index is set explicitly; a failure is forgotten only if every index it
     * left uncertain is cut away. */
    if (d->failed && first_gone <= d->failed_from) {
        d->failed = 0;
    }
    d->next_index = first_gone;
    if (d->durable_index >= first_gone) {
        d->durable_index = first_gone > 0 ? first_gone - 1 : 0;
        d->durable_term = durable_term_at(d, d->durable_index);
    }
}

static int durable_init_io(struct raft_io *io, raft_id id, const char *address)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->init(d->inner, id, address));
}

static void durable_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct cl_durable *d = durable_of(io);
    d->closing = 1; /* raft_uv refuses (asserts on) new async work from here on. */
    d->inner->close(d->inner, cb);
}

static int durable_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                        struct raft_snapshot **snapshot, raft_index *start_index,
                        struct raft_entry *entries[], size_t *n_entries)
{
    struct cl_durable *d = durable_of(io);
    int rv = d->inner->load(d->inner, term, voted_for, snapshot, start_index, entries, n_entries);
    if (rv != 0) {
        return durable_rv(d, rv);
    }
    /* Everything loaded is on disk. */
    d->generation++;
    d->failed = 0; /* The log on disk is all there is. */
    d->durable_index = 0;
    d->durable_term = 0;
    if (*snapshot != NULL) {
        d->durable_index = (*snapshot)->index;
        d->durable_term = (*snapshot)->term;
        durable_remember_term(d, d->durable_index, d->durable_term);
    }
    for (size_t i = 0; i < *n_entries; i++) {
        raft_index index = *start_index + i;
        durable_remember_term(d, index, (*entries)[i].term);
        if (index > d->durable_index) {
            d->durable_index = index;
            d->durable_term = (*entries)[i].term;
        }
    }
    d->next_index = d->durable_index + 1;
    return 0;
}

static int durable_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                         raft_io_recv_cb recv)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->start(d->inner, msecs, tick, recv));
}

static int durable_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->bootstrap(d->inner, conf));
}

static int durable_recover(struct raft_io *io, const struct raft_configuration *conf)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->recover(d->inner, conf));
}

static int durable_set_term(struct raft_io *io, raft_term term)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->set_term(d->inner, term));
}

static int durable_set_vote(struct raft_io *io, raft_id server_id)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->set_vote(d->inner, server_id));
}

static int durable_send(struct raft_io *io, struct raft_io_send *req,
                        const struct raft_message *message, raft_io_send_cb cb)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->send(d->inner, req, message, cb));
}

static void durable_append_cb(struct raft_io_append *inner, int status)
{
    struct durable_append *a = inner->data;
    struct cl_durable *d = a->d;
    if (status != 0) {
        /* raft may keep or reuse the failed indexes without telling us: our count is not to
         * be trusted until the log is set again at or below them (truncate, install, load). */
        if (!d->failed || a->first_index < d->failed_from) {
            d->failed_from = a->first_index;
        }
        d->failed = 1;
        memcpy(d->io.errmsg, d->inner->errmsg, sizeof(d->io.errmsg));
    } else if (!d->failed && a->generation == d->generation && a->last_index > d->durable_index) {
        d->durable_index = a->last_index;
        d->durable_term = a->last_term;
    }
    struct raft_io_append *outer = a->outer;
    raft_io_append_cb cb = a->cb;
    free(a);
    cb(outer, status);
}

static int durable_append(struct raft_io *io, struct raft_io_append *req,
                          const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    struct cl_durable *d = durable_of(io);
    assert(n > 0);
    struct durable_append *a = malloc(sizeof(*a));
    if (a == NULL) {
        return durable_nomem(d);
    }
    a->inner.data = a;
    a->outer = req;
    a->cb = cb;
    a->d = d;
    a->generation = d->generation;
    a->first_index = d->next_index;
    a->last_index = d->next_index + n - 1;
    a->last_term = entries[n - 1].term;
    req->cb = cb;
    int rv = d->inner->append(d->inner, &a->inner, entries, n, durable_append_cb);
    if (rv != 0) {
        free(a);
        return durable_rv(d, rv);
    }
    for (unsigned i = 0; i < n; i++) {
        durable_remember_term(d, d->next_index + i, entries[i].term);
    }
    d->next_index += n;
    return 0;
}

static int durable_truncate(struct raft_io *io, raft_index index)
{
    struct cl_durable *d = durable_of(io);
    int rv = d->inner->truncate(d->inner, index);
    if (rv == 0) {
        durable_cut(d, index);
    }
    return durable_rv(d, rv);
}

static void durable_put_cb(struct raft_io_snapshot_put *inner, int status)
{
    struct durable_put *p = inner->data;
    struct cl_durable *d = p->d;
    if (status != 0) {
        memcpy(d->io.errmsg, d->inner->errmsg, sizeof(d->io.errmsg));
        if (p->install) {
            d->failed = 1; /* raft keeps its old log: our next_index no longer matches it. */
            d->failed_from = 1;
        }
    }
    if (p->install && status == 0 && p->generation == d->generation) {
        /* The log is now exactly the snapshot. */
        d->durable_index = p->index;
        d->durable_term = p->term;
        durable_remember_term(d, p->index, p->term);
    }
    struct raft_io_snapshot_put *outer = p->outer;
    raft_io_snapshot_put_cb cb = p->cb;
    free(p);
    cb(outer, status);
}

static int durable_snapshot_put(struct raft_io *io, unsigned trailing,
                                struct raft_io_snapshot_put *req,
                                const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct cl_durable *d = durable_of(io);
    struct durable_put *p = malloc(sizeof(*p));
    if (p == NULL) {
        return durable_nomem(d);
    }
    p->inner.data = p;
    p->outer = req;
    p->cb = cb;
    p->d = d;
    p->index = snapshot->index;
    p->term = snapshot->term;
    p->install = trailing == 0;
    req->cb = cb;
    if (p->install) {
        /* Nothing of the old log counts any more; the snapshot will, once stored. */
        d->failed = 0;
        durable_cut(d, 1);
        d->next_index = snapshot->index + 1;
    }
    p->generation = d->generation;
    int rv = d->inner->snapshot_put(d->inner, trailing, &p->inner, snapshot, durable_put_cb);
    if (rv != 0) {
        free(p);
        if (trailing == 0) {
            d->failed = 1; /* As in durable_put_cb: raft keeps its old log. */
            d->failed_from = 1;
        }
    }
    return durable_rv(d, rv);
}

void cl_durable_snapshot_free(struct raft_snapshot *snapshot)
{
    raft_configuration_close(&snapshot->configuration);
    for (unsigned i = 0; i < snapshot->n_bufs; i++) {
        raft_free(snapshot->bufs[i].base);
    }
    raft_free(snapshot->bufs);
    raft_free(snapshot);
}

/* Hand the snapshot (or the failure) to raft. */
static void durable_get_finish(struct durable_get *g)
{
    struct raft_snapshot *snapshot = g->snapshot;
    if (g->status != 0 && g->loaded) {
        /* raft does not touch the snapshot of a failed get; it retries the follower. A failed
         * load is passed on as raft_uv made it (its fields may be unset: not ours to free). */
        cl_durable_snapshot_free(snapshot);
        snapshot = NULL;
    }
    struct raft_io_snapshot_get *outer = g->outer;
    raft_io_snapshot_get_cb cb = g->cb;
    int status = g->status;
    free(g);
    cb(outer, snapshot, status);
}

/* The request around @work. Not through work->data: raft's fixture io overwrites it. */
static struct durable_get *durable_get_of_work(struct raft_io_async_work *work)
{
    return (struct durable_get *)(void *)((char *)work - offsetof(struct durable_get, work));
}

/* On a worker thread: only the hook runs here, on a snapshot nobody else holds yet. */
static int durable_fill_work(struct raft_io_async_work *work)
{
    struct durable_get *g = durable_get_of_work(work);
    return g->d->fill(g->d->fill_arg, g->snapshot);
}

static void durable_fill_done(struct raft_io_async_work *work, int status)
{
    struct durable_get *g = durable_get_of_work(work);
    g->status = status;
    durable_get_finish(g);
}

static void durable_get_cb(struct raft_io_snapshot_get *inner, struct raft_snapshot *snapshot,
                           int status)
{
    struct durable_get *g = inner->data;
    struct cl_durable *d = g->d;
    g->snapshot = snapshot;
    g->loaded = status == 0;
    g->status = status == 0 && d->closing ? RAFT_CANCELED : status; /* Nobody to send it to. */
    if (g->status == 0 && d->fill != NULL) {
        /* Filling may copy a whole shard: off the loop when raft's io has workers (raft_uv;
         * the fixture defers the work to a later step), else here. */
        if (d->inner->async_work != NULL) {
            g->work.work = durable_fill_work;
            if (d->inner->async_work(d->inner, &g->work, durable_fill_done) == 0) {
                return;
            }
        }
        g->status = d->fill(d->fill_arg, snapshot);
    }
    durable_get_finish(g);
}

static int durable_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                                raft_io_snapshot_get_cb cb)
{
    struct cl_durable *d = durable_of(io);
    struct durable_get *g = malloc(sizeof(*g));
    if (g == NULL) {
        return durable_nomem(d);
    }
    g->inner.data = g;
    g->outer = req;
    g->cb = cb;
    g->d = d;
    g->snapshot = NULL;
    g->status = 0;
    g->loaded = 0;
    req->cb = cb;
    int rv = d->inner->snapshot_get(d->inner, &g->inner, durable_get_cb);
    if (rv != 0) {
        free(g);
    }
    return durable_rv(d, rv);
}

static raft_time durable_time(struct raft_io *io)
{
    struct cl_durable *d = durable_of(io);
    return d->inner->time(d->inner);
}

static int durable_random(struct raft_io *io, int min, int max)
{
    struct cl_durable *d = durable_of(io);
    return d->inner->random(d->inner, min, max);
}

static int durable_async_work(struct raft_io *io, struct raft_io_async_work *req,
                              raft_io_async_work_cb cb)
{
    struct cl_durable *d = durable_of(io);
    return durable_rv(d, d->inner->async_work(d->inner, req, cb));
}

void cl_durable_init(struct cl_durable *d, struct raft_io *inner)
{
    assert(d != NULL && inner != NULL);
    memset(d, 0, sizeof(*d));
    d->inner = inner;
    d->next_index = 1;
    /* raft_uv 0.15 fills in async_work but still says version 1, and raft_init refuses async
     * snapshots (cl_fsm) on a version 1 io: the wrapper says 2 whenever it forwards
     * async_work. (The field exists in every struct raft_io built against this raft.h.) */
    d->io.version = inner->async_work != NULL && inner->version < 2 ? 2 : inner->version;
    d->io.impl = inner->impl;
    d->io.init = durable_init_io;
    d->io.close = durable_close;
    d->io.load = durable_load;
    d->io.start = durable_start;
    d->io.bootstrap = durable_bootstrap;
    d->io.recover = durable_recover;
    d->io.set_term = durable_set_term;
    d->io.set_vote = durable_set_vote;
    d->io.send = durable_send;
    d->io.append = durable_append;
    d->io.truncate = durable_truncate;
    d->io.snapshot_put = durable_snapshot_put;
    d->io.snapshot_get = durable_snapshot_get;
    d->io.time = durable_time;
    d->io.random = durable_random;
    d->io.async_work = inner->async_work != NULL ? durable_async_work : NULL;
}

void cl_durable_set_fill(struct cl_durable *d, cl_durable_fill_fn fill, void *arg)
{
    assert(d != NULL);
    d->fill = fill;
    d->fill_arg = arg;
}

void cl_durable_get(const struct cl_durable *d, raft_index *index, raft_term *term)
{
    assert(d != NULL && index != NULL && term != NULL);
    *index = d->durable_index;
    *term = d->durable_term;
}
