/* raftlog_child: a process the raft log's crash tests start and SIGKILL. A separate program,
 * because a forked copy of a test process that already ran RocksDB inherits its thread pool's
 * bookkeeping but not its threads.
 *
 *   raftlog_child <path> <journal_bytes> <fd> [open]
 *       open the raft log at <path> with a journal of <journal_bytes> (0: the default), write
 *       what raftlog_entries.h describes, waiting for each write; then write the journal's
 *       restarts << 32 | its large writes (be64) to <fd> and wait to be killed: it never
 *       closes the log. With "open", only open it (which replays its journal) and report 0.
 *
 * It exits by itself after CHILD_WAIT_S, so that a failed test leaves no orphan; any failure
 * exits with a non-zero status before the report, which the test sees as EOF. */
#include <raft.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cl_raftlog.h"
#include "raftlog_entries.h"
#include "rt_buf.h"

#define CHILD_WAIT_S 60u
#define REQS_MAX     CHILD_WIDE_GROUPS

struct child {
    uv_loop_t loop;
    uv_timer_t tick; /* Keeps the loop alive, so the log's prepare handle runs. */
    struct cl_raftlog *log;
    struct raft_io_append reqs[REQS_MAX];
    int pending;
};

static void fail(const char *what)
{
    fprintf(stderr, "raftlog_child: %s\n", what);
    _exit(3);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void append_cb(struct raft_io_append *req, int status)
{
    struct child *c = req->data;
    if (status != 0) {
        fail("append failed");
    }
    c->pending--;
}

/* Queue entries @first.. (@n of them) of @group with @seed, as request @slot. */
static void append(struct child *c, int slot, uint16_t group, raft_index first, unsigned n,
                   unsigned seed)
{
    struct raft_entry es[CHILD_WIDE_ENTRIES];
    uint8_t data[CHILD_WIDE_ENTRIES][DATA_MAX];
    if (n > CHILD_WIDE_ENTRIES) {
        fail("too many entries");
    }
    for (unsigned i = 0; i < n; i++) {
        entry_make(&es[i], data[i], group, first + i, seed);
    }
    c->reqs[slot].data = c;
    if (cl_raftlog_append(c->log, group, &c->reqs[slot], es, n, append_cb) != 0) {
        fail("append refused");
    }
    c->pending++;
}

/* Run the loop until every queued append has completed. */
static void wait_all(struct child *c)
{
    while (c->pending > 0) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

/* Write @value (be64) to @fd, then wait to be killed (or for the alarm). */
static _Noreturn void report(int fd, uint64_t value)
{
    uint8_t bytes[8];
    rt_put_be64(bytes, value);
    if (write(fd, bytes, sizeof(bytes)) != (ssize_t)sizeof(bytes)) {
        _exit(4); /* The parent is gone. */
    }
    for (;;) {
        pause();
    }
}

static void load_empty(struct child *c, uint16_t group)
{
    raft_index start = 1;
    struct raft_entry *entries = NULL;
    size_t n = 0;
    if (cl_raftlog_load(c->log, group, NULL, &start, &entries, &n) != 0 || n != 0) {
        fail("load");
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "open") == 0)) {
        fail("usage: raftlog_child <path> <journal_bytes> <fd> [open]");
    }
    bool open_only = argc == 5;
    alarm(CHILD_WAIT_S);
    size_t journal_bytes = strtoull(argv[2], NULL, 10);
    int fd = atoi(argv[3]);
    static struct child c;
    if (uv_loop_init(&c.loop) != 0 || uv_timer_init(&c.loop, &c.tick) != 0 ||
        uv_timer_start(&c.tick, tick_cb, 1, 1) != 0) {
        fail("loop");
    }
    if (cl_raftlog_open(&c.loop, argv[1], 16, 0, journal_bytes, &c.log) != 0) {
        fail("open");
    }
    if (open_only) {
        report(fd, 0);
    }
    for (uint16_t g = 0; g < CHILD_WIDE_FIRST_GROUP + CHILD_WIDE_GROUPS; g++) {
        load_empty(&c, g);
    }
    /* Group 0. */
    for (raft_index first = 1; first <= 12; first += 4) {
        append(&c, 0, 0, first, 4, 0);
        wait_all(&c);
    }
    cl_raftlog_truncate(c.log, 0, CHILD_G0_TRUNCATED_AT);
    append(&c, 0, 0, CHILD_G0_TRUNCATED_AT, 5, 1);
    wait_all(&c);
    append(&c, 0, 0, CHILD_G0_TRUNCATED_AT + 5, CHILD_G0_LAST - CHILD_G0_TRUNCATED_AT - 4, 1);
    cl_raftlog_forget(c.log, 0, CHILD_G0_KEPT_FROM);
    wait_all(&c);
    /* Groups 2..7 in one turn. */
    for (int i = 0; i < CHILD_WIDE_GROUPS; i++) {
        append(&c, i, (uint16_t)(CHILD_WIDE_FIRST_GROUP + i), 1, CHILD_WIDE_ENTRIES, 3);
    }
    wait_all(&c);
    /* Group 1, a write per entry. */
    for (raft_index i = 1; i <= CHILD_NARROW_WRITES; i++) {
        append(&c, 0, 1, i, 1, 2);
        wait_all(&c);
    }
    struct cl_raftlog_stats stats;
    cl_raftlog_get_stats(c.log, &stats);
    report(fd, stats.journal_restarts << 32 | stats.journal_large_writes);
}
