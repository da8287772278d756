/* test_cl_node: a node's linearizable reads, in process, on clusters of one and three nodes
 * sharing one loop (real RocksDB, real raft, peer ports on 127.0.0.1).
 *
 * - Reads queued in one loop turn are served after one raft barrier.
 * - Reads waiting for a barrier when a node stops are each answered UNAVAILABLE, both those the
 *   barrier carried and those queued behind it (a leadership lost mid-barrier takes the same
 *   path). A node of one member never hands its leadership over, so its stop closes raft at the
 *   next loop turn, before the barrier can complete: the failure is certain, not a race.
 * - Reads queued on a leader that starts handing its leadership over are answered UNAVAILABLE:
 *   raft refuses their barrier while it transfers.
 *
 * Ports: PAYRAFT_PORT_BASE (default 7000) + 990..992 (a node's peer port each). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "act_order.h"
#include "act_registry.h"
#include "cl_node.h"
#include "rt_error.h"
#include "rt_mp.h"
#include "test_support.h"

#define PORT_OFFSET 990u
#define READS_MAX   128u
#define NODES_MAX   3u

static struct rt_registry registry;

struct fixture {
    uv_loop_t loop;
    unsigned count;
    char *dir[NODES_MAX];
    struct cl_node *node[NODES_MAX];
    bool stopped[NODES_MAX];
};

/* A read's answer: its code into the int @arg points to (1 while unanswered). */
static void on_answer(void *arg, int code, const uint8_t *body, size_t body_len, const char *msg)
{
    (void)body;
    (void)body_len;
    (void)msg;
    int *slot = arg;
    *slot = code;
}

static void on_stopped(void *arg)
{
    *(bool *)arg = true;
}

static bool is_true(void *arg)
{
    return *(bool *)arg;
}

/* Start @count nodes of one cluster (one shard) on one loop. */
static int cluster_setup(void **state, unsigned count)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(act_registry_init(&registry), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->count = count;
    const char *env = getenv("PAYRAFT_PORT_BASE");
    unsigned port = (env != NULL ? (unsigned)atoi(env) : 7000u) + PORT_OFFSET;
    struct cl_member members[NODES_MAX];
    memset(members, 0, sizeof(members));
    for (unsigned i = 0; i < count; i++) {
        members[i].id = i + 1;
        /* Only the peer port is bound; the API and HTTP addresses are names here. */
        snprintf(members[i].peer_addr, sizeof(members[i].peer_addr), "127.0.0.1:%u", port + i);
        snprintf(members[i].api_addr, sizeof(members[i].api_addr), "127.0.0.1:%u", port + 10 + i);
        snprintf(members[i].http_addr, sizeof(members[i].http_addr), "127.0.0.1:%u", port + 20 + i);
    }
    static const uint8_t secret[] = "test-cl-node-cluster-secret-0123";
    for (unsigned i = 0; i < count; i++) {
        f->dir[i] = test_tmpdir("cl-node");
        struct cl_node_config config = {.node_id = i + 1,
                                        .data_dir = f->dir[i],
                                        .cluster_id = 0x5eed,
                                        .secret = secret,
                                        .secret_len = sizeof(secret) - 1,
                                        .shard_count = 1,
                                        .members = members,
                                        .member_count = count};
        assert_int_equal(cl_node_start(&f->loop, &config, &registry, &f->node[i]), 0);
    }
    *state = f;
    return 0;
}

static int one_node_setup(void **state)
{
    return cluster_setup(state, 1);
}

static int three_nodes_setup(void **state)
{
    return cluster_setup(state, 3);
}

static int cluster_teardown(void **state)
{
    struct fixture *f = *state;
    for (unsigned i = 0; i < f->count; i++) {
        if (!f->stopped[i]) {
            cl_node_stop(f->node[i], on_stopped, &f->stopped[i]);
            assert_true(test_run_until(&f->loop, is_true, &f->stopped[i], 20000));
        }
    }
    uv_run(&f->loop, UV_RUN_DEFAULT); /* Let every handle close. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (unsigned i = 0; i < f->count; i++) {
        test_rmdir(f->dir[i]);
    }
    free(f);
    return 0;
}

/* Queue on @node a linearizable order.get of an order that does not exist; its answer goes to
 * @slot (as does the code of a refusal at once). */
static void query(struct cl_node *node, int *slot)
{
    static const char key[] = "app_1/missing";
    static const uint8_t args[] = {0x81, 0xa6, 'a', 'p', 'p', '_', 'i',
                                   'd',  0xa5, 'a', 'p', 'p', '_', '1'}; /* {"app_id": "app_1"} */
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_ORDER,
                             .op = ACT_ORDER_GET,
                             .key = (const uint8_t *)key,
                             .key_len = sizeof(key) - 1,
                             .args = args,
                             .args_len = sizeof(args)};
    *slot = 1;
    int rv = cl_node_query(node, &cmd, CL_READ_LINEARIZABLE, on_answer, slot);
    if (rv != 0) {
        *slot = rv; /* Refused at once: no leader known yet. */
    }
}

struct wait_answers {
    const int *code;
    unsigned count;
};

static bool all_answered(void *arg)
{
    const struct wait_answers *w = arg;
    for (unsigned i = 0; i < w->count; i++) {
        if (w->code[i] == 1) {
            return false;
        }
    }
    return true;
}

/* cluster.status "reads" of the node: linearizable, barriers, failed. */
static void read_counters(struct cl_node *node, uint64_t out[3])
{
    struct rt_buf buf;
    rt_buf_init(&buf, 1u << 20);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    cl_node_status(node, &w);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, buf.data, buf.len);
    uint32_t n;
    assert_int_equal(rt_mp_read_map(&r, &n), 0);
    bool found = false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        assert_int_equal(rt_mp_read_str(&r, &k, &kl), 0);
        if (!rt_mp_key_is(k, kl, "reads")) {
            assert_int_equal(rt_mp_skip(&r), 0);
            continue;
        }
        static const char *const names[3] = {"linearizable", "barriers", "failed"};
        uint32_t m;
        assert_int_equal(rt_mp_read_map(&r, &m), 0);
        assert_int_equal(m, 3);
        for (uint32_t j = 0; j < m; j++) {
            assert_int_equal(rt_mp_read_str(&r, &k, &kl), 0);
            assert_true(rt_mp_key_is(k, kl, names[j]));
            assert_int_equal(rt_mp_read_uint(&r, &out[j]), 0);
        }
        found = true;
    }
    assert_true(found);
    rt_buf_free(&buf);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Until a read on @node is answered other than UNAVAILABLE: it leads the shard, or knows the
 * node that does (and forwarded the read there). */
static void wait_leader(struct fixture *f, struct cl_node *node)
{
    for (int tries = 0; tries < 200; tries++) {
        int code;
        query(node, &code);
        struct wait_answers w = {&code, 1};
        assert_true(test_run_until(&f->loop, all_answered, &w, 5000));
        if (code != RT_EUNAVAIL) {
            assert_int_equal(code, RT_ENOTFOUND);
            return;
        }
        (void)test_run_until(&f->loop, never, NULL, 50); /* The nodes run meanwhile. */
    }
    fail_msg("the node never led its shard");
}

/* A turn's reads share one barrier, and each is answered. */
static void reads_of_a_turn_share_one_barrier(void **state)
{
    struct fixture *f = *state;
    struct cl_node *node = f->node[0];
    wait_leader(f, node);
    uint64_t before[3], after[3];
    read_counters(node, before);
    static int code[READS_MAX];
    for (unsigned i = 0; i < READS_MAX; i++) {
        query(node, &code[i]);
    }
    struct wait_answers w = {code, READS_MAX};
    assert_true(test_run_until(&f->loop, all_answered, &w, 10000));
    for (unsigned i = 0; i < READS_MAX; i++) {
        assert_int_equal(code[i], RT_ENOTFOUND);
    }
    read_counters(node, after);
    assert_int_equal(after[0] - before[0], READS_MAX);
    assert_int_equal(after[1] - before[1], 1);
    assert_int_equal(after[2], before[2]);
}

/* Reads in a barrier and reads queued behind it, then the node stops: all UNAVAILABLE. */
static void reads_waiting_when_the_node_stops_are_answered_unavailable(void **state)
{
    struct fixture *f = *state;
    struct cl_node *node = f->node[0];
    wait_leader(f, node);
    static int code[READS_MAX];
    const unsigned carried = READS_MAX / 2;
    for (unsigned i = 0; i < carried; i++) {
        query(node, &code[i]);
    }
    uint64_t counters[3];
    read_counters(node, counters);
    uint64_t barriers = counters[1];
    uv_run(&f->loop, UV_RUN_NOWAIT); /* Its check phase proposes their barrier. */
    read_counters(node, counters);
    assert_int_equal(counters[1], barriers + 1);
    for (unsigned i = carried; i < READS_MAX; i++) {
        query(node, &code[i]); /* Behind the barrier in flight. */
    }
    cl_node_stop(node, on_stopped, &f->stopped[0]);
    assert_true(test_run_until(&f->loop, is_true, &f->stopped[0], 20000));
    for (unsigned i = 0; i < READS_MAX; i++) {
        assert_int_equal(code[i], RT_EUNAVAIL);
    }
}

/* Three nodes: reads queued on the shard's leader as it starts handing its leadership over (a
 * stop does that first) are refused their barrier and answered UNAVAILABLE; the new leader then
 * serves reads. */
static void reads_queued_on_a_leader_handing_over_are_answered_unavailable(void **state)
{
    struct fixture *f = *state;
    wait_leader(f, f->node[0]);
    unsigned leader = NODES_MAX;
    for (unsigned i = 0; i < f->count; i++) {
        const char *api_addr;
        if (cl_node_shard_leader(f->node[i], 0, &api_addr) == cl_node_id(f->node[i])) {
            leader = i;
        }
    }
    assert_true(leader < f->count);
    struct cl_node *node = f->node[leader];
    wait_leader(f, node);
    static int code[READS_MAX];
    for (unsigned i = 0; i < READS_MAX; i++) {
        query(node, &code[i]);
    }
    cl_node_stop(node, on_stopped, &f->stopped[leader]);
    struct wait_answers w = {code, READS_MAX};
    assert_true(test_run_until(&f->loop, all_answered, &w, 10000));
    for (unsigned i = 0; i < READS_MAX; i++) {
        assert_int_equal(code[i], RT_EUNAVAIL);
    }
    assert_true(test_run_until(&f->loop, is_true, &f->stopped[leader], 20000));
    wait_leader(f, f->node[(leader + 1) % f->count]); /* A new leader serves. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_of_a_turn_share_one_barrier, one_node_setup,
                                        cluster_teardown),
        cmocka_unit_test_setup_teardown(reads_waiting_when_the_node_stops_are_answered_unavailable,
                                        one_node_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(
            reads_queued_on_a_leader_handing_over_are_answered_unavailable, three_nodes_setup,
            cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
