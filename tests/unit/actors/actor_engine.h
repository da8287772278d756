/* actor_engine: the way the actor tests drive an actor. One shard's apply engine over the
 * in-memory store with every actor type of act_registry; each command applied alone as the
 * next raft entry, queries run outside raft as a node runs them. */
#ifndef ACTOR_ENGINE_H
#define ACTOR_ENGINE_H

#include <stdint.h>

#include "mem_store.h"
#include "rt_batch.h"
#include "rt_engine.h"

struct actor_engine {
    struct mem_store *mem;
    struct rt_registry registry;
    struct rt_engine engine;
    struct rt_batch_builder builder;
    uint64_t index; /* Of the last entry applied. */
};

/* Open on a new empty store (asserts on failure: a test fixture). */
void actor_engine_open(struct actor_engine *a);
void actor_engine_close(struct actor_engine *a);
/* The same as cmocka setup and teardown: *state is a struct actor_engine (one at a time). */
int actor_engine_setup(void **state);
int actor_engine_teardown(void **state);
/* Apply @cmd alone as the next entry, stamped 2023-11-14 22:13:20 UTC: its reply's code (0 or
 * a negative RT_E*). The entry itself must apply (asserted). */
int actor_engine_run(struct actor_engine *a, const struct rt_command *cmd);

#endif /* ACTOR_ENGINE_H */
