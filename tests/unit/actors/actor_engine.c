/* actor_engine: see actor_engine.h. */
#include "actor_engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "act_registry.h"

#define ACTOR_ENGINE_NOW_MS 1700000000000ull

void actor_engine_open(struct actor_engine *a)
{
    memset(a, 0, sizeof(*a));
    a->mem = mem_store_new();
    assert_non_null(a->mem);
    assert_int_equal(act_registry_init(&a->registry), 0);
    struct rt_engine_config c = {0, 1, &a->registry, mem_store_store(a->mem), NULL};
    assert_int_equal(rt_engine_init(&a->engine, &c), 0);
    rt_batch_builder_init(&a->builder, RT_BATCH_BYTES_MAX);
}

void actor_engine_close(struct actor_engine *a)
{
    rt_batch_builder_free(&a->builder);
    rt_engine_free(&a->engine);
    mem_store_free(a->mem);
}

int actor_engine_setup(void **state)
{
    static struct actor_engine a;
    actor_engine_open(&a);
    *state = &a;
    return 0;
}

int actor_engine_teardown(void **state)
{
    actor_engine_close(*state);
    return 0;
}

int actor_engine_run(struct actor_engine *a, const struct rt_command *cmd)
{
    assert_int_equal(rt_batch_builder_begin(&a->builder, ACTOR_ENGINE_NOW_MS), 0);
    assert_int_equal(rt_batch_builder_add(&a->builder, cmd), 0);
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(&a->builder, &len);
    assert_int_equal(rt_engine_apply(&a->engine, ++a->index, data, len), 0);
    return rt_engine_reply(&a->engine, 0)->code;
}
