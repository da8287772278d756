/* test_cl_node: a node's linearizable reads, in process, on a one-node cluster (real RocksDB,
 * real raft, its peer port on 127.0.0.1).
 *
 * Reads queued in one loop turn are served after one raft barrier; reads waiting for a barrier
 * when the node stops are each answered UNAVAILABLE, both those the barrier carried and those
 * queued behind it (the path a leadership loss takes too). A node of one member never hands its
 * leadership over, so its stop closes raft at the next loop turn, before the queued barrier can
 * complete: the failure is certain, not a race.
 *
 * Port: PAYRAFT_PORT_BASE (default 7000) + 990. */
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

static struct rt_registry registry;

struct fixture {
    uv_loop_t loop;
    char *dir;
    struct cl_node *node;
    bool stopped;
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
    struct fixture *f = arg;
    f->stopped = true;
}

static bool is_stopped(void *arg)
{
    return ((struct fixture *)arg)->stopped;
}

static int node_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(act_registry_init(&registry), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->dir = test_tmpdir("cl-node");
    const char *env = getenv("PAYRAFT_PORT_BASE");
    unsigned port = (env != NULL ? (unsigned)atoi(env) : 7000u) + PORT_OFFSET;
    struct cl_member member = {.id = 1};
    snprintf(member.peer_addr, sizeof(member.peer_addr), "127.0.0.1:%u", port);
    snprintf(member.api_addr, sizeof(member.api_addr), "127.0.0.1:%u", port + 1);
    snprintf(member.http_addr, sizeof(member.http_addr), "127.0.0.1:%u", port + 2);
    static const uint8_t secret[] = "test-cl-node-cluster-secret-0123";
    struct cl_node_config config = {.node_id = 1,
                                    .data_dir = f->dir,
                                    .cluster_id = 0x5eed,
                                    .secret = secret,
                                    .secret_len = sizeof(secret) - 1,
                                    .shard_count = 1,
                                    .members = &member,
                                    .member_count = 1};
    assert_int_equal(cl_node_start(&f->loop, &config, &registry, &f->node), 0);
    *state = f;
    return 0;
}

static int node_teardown(void **state)
{
    struct fixture *f = *state;
    if (!f->stopped) {
        cl_node_stop(f->node, on_stopped, f);
        assert_true(test_run_until(&f->loop, is_stopped, f, 20000));
    }
    uv_run(&f->loop, UV_RUN_DEFAULT); /* Let every handle close. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    test_rmdir(f->dir);
    free(f);
    return 0;
}

/* Queue a linearizable order.get of an order that does not exist; its answer goes to @slot. */
static void query(struct fixture *f, int *slot)
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
    assert_int_equal(cl_node_query(f->node, &cmd, CL_READ_LINEARIZABLE, on_answer, slot), 0);
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
static void read_counters(struct fixture *f, uint64_t out[3])
{
    struct rt_buf buf;
    rt_buf_init(&buf, 1u << 20);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    cl_node_status(f->node, &w);
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

/* Until one read is answered other than UNAVAILABLE: the node leads its shard. */
static void wait_leader(struct fixture *f)
{
    for (int tries = 0; tries < 200; tries++) {
        int code;
        query(f, &code);
        struct wait_answers w = {&code, 1};
        assert_true(test_run_until(&f->loop, all_answered, &w, 5000));
        if (code != RT_EUNAVAIL) {
            assert_int_equal(code, RT_ENOTFOUND);
            return;
        }
        uv_sleep(50);
    }
    fail_msg("the node never led its shard");
}

/* A turn's reads share one barrier, and each is answered. */
static void reads_of_a_turn_share_one_barrier(void **state)
{
    struct fixture *f = *state;
    wait_leader(f);
    uint64_t before[3], after[3];
    read_counters(f, before);
    static int code[READS_MAX];
    for (unsigned i = 0; i < READS_MAX; i++) {
        query(f, &code[i]);
    }
    struct wait_answers w = {code, READS_MAX};
    assert_true(test_run_until(&f->loop, all_answered, &w, 10000));
    for (unsigned i = 0; i < READS_MAX; i++) {
        assert_int_equal(code[i], RT_ENOTFOUND);
    }
    read_counters(f, after);
    assert_int_equal(after[0] - before[0], READS_MAX);
    assert_int_equal(after[1] - before[1], 1);
    assert_int_equal(after[2], before[2]);
}

/* Reads in a barrier and reads queued behind it, then the node stops: all UNAVAILABLE. */
static void reads_waiting_when_the_node_stops_are_answered_unavailable(void **state)
{
    struct fixture *f = *state;
    wait_leader(f);
    static int code[READS_MAX];
    const unsigned carried = READS_MAX / 2;
    for (unsigned i = 0; i < carried; i++) {
        query(f, &code[i]);
    }
    uint64_t counters[3];
    read_counters(f, counters);
    uint64_t barriers = counters[1];
    uv_run(&f->loop, UV_RUN_NOWAIT); /* Its check phase proposes their barrier. */
    read_counters(f, counters);
    assert_int_equal(counters[1], barriers + 1);
    for (unsigned i = carried; i < READS_MAX; i++) {
        query(f, &code[i]); /* Behind the barrier in flight. */
    }
    cl_node_stop(f->node, on_stopped, f);
    assert_true(test_run_until(&f->loop, is_stopped, f, 20000));
    for (unsigned i = 0; i < READS_MAX; i++) {
        assert_int_equal(code[i], RT_EUNAVAIL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_of_a_turn_share_one_barrier, node_setup,
                                        node_teardown),
        cmocka_unit_test_setup_teardown(reads_waiting_when_the_node_stops_are_answered_unavailable,
                                        node_setup, node_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
