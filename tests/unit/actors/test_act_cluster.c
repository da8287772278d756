/* Unit tests for the cluster map actor, through the engine on the in-memory store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "act_cluster.h"
#include "act_registry.h"
#include "actor_engine.h"
#include "mem_store.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_mp.h"

/* Encode init args for @n nodes starting at id @first; @dup repeats the first id. */
static void init_args(struct rt_buf *buf, unsigned shards, unsigned n, unsigned first, int dup)
{
    rt_buf_reset(buf);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "nodes");
    rt_mp_write_array(&w, n);
    for (unsigned i = n; i-- > 0;) { /* Reverse order: the map sorts by id. */
        char addr[32];
        rt_mp_write_map(&w, 4);
        rt_mp_write_cstr(&w, "node_id");
        rt_mp_write_uint(&w, dup && i == 1 ? first : first + i);
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", 7200 + first + i);
        rt_mp_write_cstr(&w, "peer_addr");
        rt_mp_write_cstr(&w, addr);
        rt_mp_write_cstr(&w, "api_addr");
        rt_mp_write_cstr(&w, addr);
        rt_mp_write_cstr(&w, "http_addr");
        rt_mp_write_cstr(&w, addr);
    }
    rt_mp_write_cstr(&w, "shard_count");
    rt_mp_write_uint(&w, shards);
    assert_int_equal(rt_mp_writer_error(&w), 0);
}

static int run(struct actor_engine *f, uint8_t op, const struct rt_buf *args)
{
    struct rt_command c = {.origin = RT_ORIGIN_CLIENT,
                           .actor_type = ACT_TYPE_CLUSTER,
                           .op = op,
                           .key = (const uint8_t *)ACT_CLUSTER_KEY,
                           .key_len = 3,
                           .args = args != NULL ? args->data : NULL,
                           .args_len = args != NULL ? (uint32_t)args->len : 0};
    return actor_engine_run(f, &c);
}

static void init_is_idempotent_and_conflicts_are_refused(void **state)
{
    struct actor_engine *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    struct rt_command get = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_CLUSTER,
                             .op = ACT_CLUSTER_GET,
                             .key = (const uint8_t *)ACT_CLUSTER_KEY,
                             .key_len = 3};
    struct rt_reply reply;
    assert_int_equal(rt_engine_query(&f->engine, &get, 0, &reply), RT_ENOTFOUND);
    init_args(&args, 16, 3, 1, 0);
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), 0);
    assert_int_equal(rt_engine_query(&f->engine, &get, 0, &reply), 0);
    /* The stored map is sorted by node id and lists the replicas. */
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, reply.body, reply.body_len);
    assert_int_equal(rt_mp_validate(reply.body, reply.body_len), 0);
    assert_true(memmem(reply.body, reply.body_len, "replicas", 8) != NULL);
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), 0); /* Same members: idempotent. */
    init_args(&args, 16, 2, 1, 0);
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_ECONFLICT);
    init_args(&args, 8, 3, 1, 0);
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_ECONFLICT);
    rt_buf_free(&args);
}

static void bad_maps_are_rejected(void **state)
{
    struct actor_engine *f = *state;
    struct rt_buf args;
    rt_buf_init(&args, 4096);
    init_args(&args, 16, 3, 1, 1); /* Duplicate node id. */
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_EINVAL);
    init_args(&args, 0, 3, 1, 0); /* No shards. */
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_EINVAL);
    init_args(&args, RT_SHARDS_MAX + 1, 3, 1, 0);
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_EINVAL);
    init_args(&args, 16, 0, 1, 0); /* No nodes. */
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_EINVAL);
    const uint8_t garbage[] = {0x81, 0xa1, 'x', 0xc0};
    rt_buf_reset(&args);
    rt_buf_append(&args, garbage, sizeof(garbage));
    assert_int_equal(run(f, ACT_CLUSTER_INIT, &args), RT_EINVAL);
    assert_int_equal(run(f, ACT_CLUSTER_INIT, NULL), RT_EINVAL);
    rt_buf_free(&args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(init_is_idempotent_and_conflicts_are_refused,
                                        actor_engine_setup, actor_engine_teardown),
        cmocka_unit_test_setup_teardown(bad_maps_are_rejected, actor_engine_setup,
                                        actor_engine_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
