/* test_cl_fsm: cl_fsm's snapshots without a raft cluster.
 *
 * The FSM's callbacks are called directly, as raft would, on a real RocksDB store: a marker
 * carries the store's applied index (not the engine's, which also counts entries it skipped
 * without writing), a restart keeps a store that holds its marker and refuses one that does
 * not, and the fill hook turns a marker into a full stream that restores elsewhere, refusing
 * what is not a stream or claims more than the store holds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_registry.h"
#include "cl_fsm.h"
#include "rt_batch.h"
#include "rt_error.h"
#include "rt_log.h"
#include "storage_helpers.h"
#include "store_rocks.h"
#include "store_snapshot.h"
#include "test_raft.h"
#include "test_support.h"

#define SHARD 3u

struct replica {
    char *dir;
    struct store_rocks *db;
    struct cl_fsm fsm;
    struct raft raft; /* Only last_applied and the log's snapshot index are read. */
};

static struct rt_registry registry;

static void replica_open(struct replica *r, char *dir)
{
    memset(r, 0, sizeof(*r));
    r->dir = dir;
    r->db = helper_open(r->dir, 1u << 20);
    struct rt_engine_config config = {SHARD, 16, &registry, store_rocks_store(r->db), NULL};
    assert_int_equal(cl_fsm_init(&r->fsm, r->db, &config), 0);
    cl_fsm_snapshot_sync_inline(&r->fsm);
    cl_fsm_bind(&r->fsm, &r->raft);
}

static void replica_close(struct replica *r)
{
    cl_fsm_close(&r->fsm);
    store_rocks_close(r->db);
}

/* Apply @data as raft entry @index. */
static void apply(struct replica *r, uint64_t index, const uint8_t *data, size_t len)
{
    r->raft.last_applied = index - 1;
    struct raft_buffer buf = {.base = (void *)data, .len = len};
    void *result = NULL;
    assert_int_equal(r->fsm.raft_fsm.apply(&r->fsm.raft_fsm, &buf, &result), 0);
}

/* A valid batch with no commands: the store records the applied index and nothing else. */
static void apply_empty_batch(struct replica *r, uint64_t index)
{
    struct rt_batch_builder b;
    rt_batch_builder_init(&b, 1024);
    assert_int_equal(rt_batch_builder_begin(&b, 1700000000000ull), 0);
    size_t len = 0;
    const uint8_t *data = rt_batch_builder_finish(&b, &len);
    apply(r, index, data, len);
    rt_batch_builder_free(&b);
}

/* Take a snapshot as raft does; returns the marker's applied index. */
static uint64_t take_marker(struct replica *r)
{
    struct raft_buffer *bufs = NULL;
    unsigned n = 0;
    assert_int_equal(r->fsm.raft_fsm.snapshot(&r->fsm.raft_fsm, &bufs, &n), 0);
    assert_int_equal(n, 1);
    uint16_t shard = 0;
    uint64_t index = 0;
    int marker = 0;
    assert_int_equal(store_snapshot_peek(bufs[0].base, bufs[0].len, &shard, &index, &marker), 0);
    assert_true(marker);
    assert_int_equal(shard, SHARD);
    assert_int_equal(r->fsm.raft_fsm.snapshot_finalize(&r->fsm.raft_fsm, &bufs, &n), 0);
    assert_null(bufs);
    return index;
}

/* Hand @data to @r's restore as raft does at start; raft owns the buffer until success. */
static int restore(struct replica *r, const uint8_t *data, size_t len)
{
    struct raft_buffer buf = {.base = raft_malloc(len), .len = len};
    assert_non_null(buf.base);
    memcpy(buf.base, data, len);
    int rv = r->fsm.raft_fsm.restore(&r->fsm.raft_fsm, &buf);
    if (rv != 0) {
        raft_free(buf.base);
    }
    return rv;
}

static void test_marker_is_the_stores_index(void **state)
{
    (void)state;
    struct replica r;
    replica_open(&r, test_tmpdir("cl-fsm"));
    apply_empty_batch(&r, 1);
    apply_empty_batch(&r, 2);
    assert_int_equal(take_marker(&r), 2);
    /* A malformed entry moves the engine on, and writes nothing: the marker stays at 2. */
    const uint8_t junk[8] = {0xc1, 0, 0, 0, 0, 0, 0, 0};
    apply(&r, 3, junk, sizeof(junk));
    assert_int_equal(rt_engine_applied_index(&r.fsm.engine), 3);
    assert_int_equal(take_marker(&r), 2);
    assert_int_equal(r.fsm.stats.snapshots_taken, 2);

    /* A restart: raft restores the marker, which the store holds, so the store is kept. */
    uint8_t m[STORE_SNAPSHOT_HEADER_BYTES];
    store_snapshot_marker(SHARD, 2, m);
    replica_close(&r);
    replica_open(&r, r.dir);
    assert_int_equal(restore(&r, m, sizeof(m)), 0);
    assert_int_equal(r.fsm.stats.snapshots_kept, 1);
    assert_int_equal(rt_engine_applied_index(&r.fsm.engine), 2);

    /* A marker the store is behind: lost synced writes. The node must not start. */
    FILE *log = tmpfile();
    rt_log_set_file(log);
    store_snapshot_marker(SHARD, 3, m);
    assert_int_equal(restore(&r, m, sizeof(m)), RAFT_CORRUPT);
    rt_log_set_file(NULL);
    fclose(log);
    assert_int_equal(rt_engine_applied_index(&r.fsm.engine), 2);
    replica_close(&r);
    test_rmdir(r.dir);
}

static void test_fill(void **state)
{
    (void)state;
    struct replica leader, follower;
    leader.dir = NULL;
    replica_open(&leader, test_tmpdir("cl-fsm-leader"));
    replica_open(&follower, test_tmpdir("cl-fsm-follower"));
    for (uint64_t i = 1; i <= 5; i++) {
        apply_empty_batch(&leader, i);
    }
    uint8_t m[STORE_SNAPSHOT_HEADER_BYTES];
    store_snapshot_marker(SHARD, take_marker(&leader), m);

    /* The marker becomes the full stream at the store's applied index; it restores. */
    struct raft_snapshot *s = test_raft_snapshot_loaded(m, sizeof(m));
    assert_int_equal(cl_fsm_snapshot_fill(&leader.fsm, s), 0);
    uint16_t shard = 0;
    uint64_t index = 0;
    int marker = 1;
    assert_int_equal(store_snapshot_peek(s->bufs[0].base, s->bufs[0].len, &shard, &index, &marker),
                     0);
    assert_false(marker);
    assert_int_equal(shard, SHARD);
    assert_int_equal(index, 5);
    assert_int_equal(s->index, 40); /* raft's metadata is left alone. */
    assert_int_equal(leader.fsm.stats.snapshots_sent, 1);
    assert_int_equal(restore(&follower, s->bufs[0].base, s->bufs[0].len), 0);
    assert_int_equal(rt_engine_applied_index(&follower.fsm.engine), 5);
    assert_int_equal(follower.fsm.stats.snapshots_restored, 1);

    /* A full stream (a follower that installed one and now leads) is sent as it is. */
    size_t full_len = s->bufs[0].len;
    uint8_t *full = malloc(full_len);
    assert_non_null(full);
    memcpy(full, s->bufs[0].base, full_len);
    test_raft_snapshot_free(s);
    s = test_raft_snapshot_loaded(full, full_len);
    assert_int_equal(cl_fsm_snapshot_fill(&follower.fsm, s), 0);
    assert_int_equal(s->bufs[0].len, full_len);
    assert_memory_equal(s->bufs[0].base, full, full_len);
    test_raft_snapshot_free(s);
    free(full);

    /* Refused, and the snapshot left for cl_durable to free: a marker the store is behind,
     * another shard's marker, and bytes that are not a stream at all. */
    FILE *log = tmpfile();
    rt_log_set_file(log);
    store_snapshot_marker(SHARD, 6, m);
    s = test_raft_snapshot_loaded(m, sizeof(m));
    assert_int_equal(cl_fsm_snapshot_fill(&leader.fsm, s), RAFT_CORRUPT);
    test_raft_snapshot_free(s);
    store_snapshot_marker(SHARD + 1, 1, m);
    s = test_raft_snapshot_loaded(m, sizeof(m));
    assert_int_equal(cl_fsm_snapshot_fill(&leader.fsm, s), RAFT_CORRUPT);
    test_raft_snapshot_free(s);
    s = test_raft_snapshot_loaded((const uint8_t *)"not a snapshot at all, not even a header", 40);
    assert_int_equal(cl_fsm_snapshot_fill(&leader.fsm, s), RAFT_CORRUPT);
    test_raft_snapshot_free(s);
    rt_log_set_file(NULL);
    fclose(log);
    assert_int_equal(leader.fsm.stats.snapshots_sent, 1);

    replica_close(&leader);
    replica_close(&follower);
    test_rmdir(leader.dir);
    test_rmdir(follower.dir);
}

int main(void)
{
    rt_log_set_level(RT_LOG_WARN);
    rt_log_init();
    assert_int_equal(act_registry_init(&registry), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marker_is_the_stores_index),
        cmocka_unit_test(test_fill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
