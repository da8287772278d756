/* test_store_crash: kill -9 in the middle of a stream of commits, then recover.
 *
 * A child process (store_child, a separate program: see store_child.c) commits the
 * deterministic crash_stream 1..N with small memtables, so RocksDB flushes (atomically,
 * across column families) many times; every other round instead syncs (store_rocks_sync,
 * what the FSM does before each raft snapshot) every CRASH_SYNC_EVERY commits, with memtables
 * large enough that no switch writes the WAL's buffer out: only the sync puts it in a file (a
 * sync that did nothing fails these rounds). The parent SIGKILLs it at a random point, reopens
 * the database and checks what DESIGN.md promises:
 *   - the recovered applied index A is at most the last commit the child had started, and at
 *     least the last one it reported synced (a raft snapshot relies on that);
 *   - the recovered shard is exactly the state after commits 1..A (a consistent prefix), as
 *     built by a reference database that never crashed;
 *   - re-applying A+1..N (what raft does after a restart) gives exactly the clean run's state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crash_stream.h"
#include "rt_buf.h"
#include "rt_log.h"
#include "storage_helpers.h"
#include "store_rocks.h"
#include "test_support.h"

#define CRASH_ROUNDS 5

static uint64_t seed;
static uint8_t clean_digest[32];

/* Commit crash_stream from..to into @store. */
static void apply_range(struct rt_store *store, uint64_t from, uint64_t to)
{
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    for (uint64_t i = from; i <= to; i++) {
        crash_stream_commit(store, &ws, i);
    }
    rt_writeset_free(&ws);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The reference: all N commits without a crash (and across a clean close). */
static int group_setup(void **state)
{
    (void)state;
    seed = helper_seed("test_store_crash");
    char *dir = test_tmpdir("crash-clean");
    struct store_rocks *db = helper_open(dir, CRASH_WRITE_BUFFER_BYTES);
    double t0 = now_s();
    apply_range(store_rocks_store(db), 1, CRASH_COMMITS);
    fprintf(stderr, "  clean run: %u commits in %.2f s\n", CRASH_COMMITS, now_s() - t0);
    store_rocks_close(db);
    db = helper_open(dir, 0);
    struct rt_store *store = store_rocks_store(db);
    assert_int_equal(helper_applied(store, CRASH_SHARD), CRASH_COMMITS);
    test_store_digest(store, CRASH_SHARD, clean_digest);
    store_rocks_close(db);
    test_rmdir(dir);
    return 0;
}

/* Start store_child committing into @dir (syncing every @sync_every commits, 0 = never);
 * returns its pid and the read end of its reports. */
static pid_t spawn_committer(const char *dir, unsigned sync_every, int *report_fd)
{
    char count[24];
    char sync_arg[16];
    snprintf(count, sizeof(count), "%u", CRASH_COMMITS);
    snprintf(sync_arg, sizeof(sync_arg), "%u", sync_every);
    const char *argv[] = {STORE_CHILD_PATH, "commit", dir, count, TEST_SPAWN_FD, sync_arg, NULL};
    return test_spawn(STORE_CHILD_PATH, argv, report_fd);
}

/* Read the child's reports (be64 indexes, each sent before that commit starts, or with
 * CRASH_SYNCED_BIT once synced) until one is >= @target, or to EOF when @target is 0.
 * Returns the last index reported started; *synced is the last reported synced. */
static uint64_t read_reports(int fd, uint64_t last, uint64_t target, uint64_t *synced)
{
    static uint8_t partial[8];
    static size_t partial_len;
    uint8_t buf[4096];
    while (target == 0 || last < target) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n >= 0);
        if (n == 0) {
            break; /* EOF: the child is gone. */
        }
        for (ssize_t i = 0; i < n; i++) {
            partial[partial_len++] = buf[i];
            if (partial_len == 8) {
                uint64_t report = rt_get_be64(partial);
                if ((report & CRASH_SYNCED_BIT) != 0) {
                    *synced = report & ~CRASH_SYNCED_BIT;
                } else {
                    last = report;
                }
                partial_len = 0;
            }
        }
    }
    return last;
}

static void crash_round(int round)
{
    uint64_t r = helper_mix(seed + (uint64_t)round);
    /* Kill somewhere between 10% and 90% of the stream, plus up to 20 ms of drift so the
     * kill lands at an arbitrary point of a commit or a flush. */
    uint64_t target = CRASH_COMMITS / 10 + r % (CRASH_COMMITS * 8 / 10);
    useconds_t drift_us = (useconds_t)((r >> 32) % 20000);
    unsigned sync_every = round % 2 == 1 ? CRASH_SYNC_EVERY : 0;
    char *dir = test_tmpdir("crash");
    int fd = -1;
    double t0 = now_s();
    pid_t pid = spawn_committer(dir, sync_every, &fd);
    uint64_t synced = 0;
    uint64_t started = read_reports(fd, 0, target, &synced);
    assert_true(started >= target); /* Else the child died early: see its stderr. */
    usleep(drift_us);
    test_kill(pid);
    started = read_reports(fd, started, 0, &synced);
    close(fd);
    double killed_at = now_s() - t0;

    struct store_rocks *db = helper_open(dir, CRASH_WRITE_BUFFER_BYTES);
    struct rt_store *store = store_rocks_store(db);
    uint64_t applied = helper_applied(store, CRASH_SHARD);
    fprintf(stderr,
            "  round %d: killed after %.3f s, %llu commits started, %llu synced, recovered "
            "applied index %llu\n",
            round, killed_at, (unsigned long long)started, (unsigned long long)synced,
            (unsigned long long)applied);
    assert_true(applied <= started);
    assert_true(applied >= synced);
    assert_true(sync_every == 0 || synced > 0); /* Else the sync rounds test nothing. */
    /* Memtables of 64 KiB and ~400 bytes per commit: thousands of commits mean many
     * flushes (in the sync rounds, many syncs), so a crash test that recovered nothing would
     * test nothing. */
    assert_true(applied > 0);

    /* A consistent prefix: exactly the state after commits 1..applied. */
    uint8_t recovered[32];
    test_store_digest(store, CRASH_SHARD, recovered);
    char *ref_dir = test_tmpdir("crash-ref");
    struct store_rocks *ref = helper_open(ref_dir, 0);
    apply_range(store_rocks_store(ref), 1, applied);
    uint8_t expected[32];
    test_store_digest(store_rocks_store(ref), CRASH_SHARD, expected);
    store_rocks_close(ref);
    test_rmdir(ref_dir);
    assert_memory_equal(recovered, expected, 32);

    /* What raft does after the restart: re-apply what is above the applied index. */
    apply_range(store, applied + 1, CRASH_COMMITS);
    assert_int_equal(helper_applied(store, CRASH_SHARD), CRASH_COMMITS);
    uint8_t final[32];
    test_store_digest(store, CRASH_SHARD, final);
    assert_memory_equal(final, clean_digest, 32);
    store_rocks_close(db);
    test_rmdir(dir);
}

static void test_crash_and_recover(void **state)
{
    (void)state;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        crash_round(round);
    }
}

int main(void)
{
    rt_log_set_level(RT_LOG_WARN);
    rt_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_and_recover),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
