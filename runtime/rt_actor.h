/* rt_actor: actor types and the context a handler runs in.
 *
 * An actor type is a name, a persistent one-byte id and a table of operations. An actor is
 * (type, key) -> state bytes. A handler is a deterministic function of (state, args, now):
 * it may read its own state, other actors' state in the same shard, and secondary indexes;
 * it may set its state, write a reply, create ids, set durable timers, send messages to
 * actors and queue external effects. It must not read clocks, random numbers, files or the
 * network: the same entry must give the same result on every replica.
 *
 * Handlers return 0 or a negative RT_E* code. On error every write the command made is
 * undone and the client gets the code (and the message set with rt_ctx_fail, if any).
 */
#ifndef RT_ACTOR_H
#define RT_ACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_buf.h"
#include "rt_limits.h"

struct rt_actor_ctx; /* Owned by the engine; valid only during the handler call. */

typedef int (*rt_handler_fn)(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len);

struct rt_actor_op {
    const char *name; /* e.g. "create"; unique within the type. */
    rt_handler_fn fn;
    bool readonly; /* May run outside raft (rt_engine_query); must not write. */
};

struct rt_actor_type {
    uint8_t id;       /* Persistent: in every stored key. 1..RT_ACTOR_TYPES_MAX-1. */
    const char *name; /* e.g. "order". */
    const struct rt_actor_op *ops;
    uint8_t op_count; /* <= RT_ACTOR_OPS_MAX */
};

/* The set of actor types a node runs; built once at start-up, read-only afterwards. */
struct rt_registry {
    const struct rt_actor_type *types[RT_ACTOR_TYPES_MAX]; /* Indexed by id; NULL if unused. */
};

void rt_registry_init(struct rt_registry *reg);
/* RT_EINVAL for a bad id/op table, or an id already taken. */
int rt_registry_add(struct rt_registry *reg, const struct rt_actor_type *type);
const struct rt_actor_type *rt_registry_type(const struct rt_registry *reg, uint8_t id);
/* Operation index of @name in @type, or -1. */
int rt_actor_op_index(const struct rt_actor_type *type, const char *name);

/* ---- What a handler can see ---- */

uint64_t rt_ctx_now_ms(const struct rt_actor_ctx *ctx);
uint16_t rt_ctx_shard(const struct rt_actor_ctx *ctx);
uint16_t rt_ctx_shard_count(const struct rt_actor_ctx *ctx);
const uint8_t *rt_ctx_key(const struct rt_actor_ctx *ctx, size_t *len);
uint8_t rt_ctx_origin(const struct rt_actor_ctx *ctx); /* enum rt_origin */
/* The actor's current state, or NULL with *len = 0 if it does not exist yet. The view is
 * valid until the handler's next write. */
const uint8_t *rt_ctx_state(struct rt_actor_ctx *ctx, size_t *len);
/* Read another actor's state in this shard into @out (appended). RT_ENOTFOUND,
 * RT_EFORBIDDEN if (type, key) belongs to another shard. */
int rt_ctx_peek(struct rt_actor_ctx *ctx, uint8_t type, const uint8_t *key, size_t key_len,
                struct rt_buf *out);
/* Read secondary index @index_key of this shard into @out (appended). RT_ENOTFOUND. */
int rt_ctx_index_get(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len,
                     struct rt_buf *out);

/* ---- What a handler can do ---- */

/* Replace the actor's state (copied; <= RT_ACTOR_STATE_BYTES_MAX). */
int rt_ctx_set_state(struct rt_actor_ctx *ctx, const uint8_t *state, size_t len);
/* An empty buffer (at most RT_ACTOR_STATE_BYTES_MAX) to encode a state in before
 * rt_ctx_set_state copies it: the engine keeps it, so saving a state costs no malloc. Each
 * call empties it; the same buffer for every actor, so use it for one state at a time. */
struct rt_buf *rt_ctx_state_buf(struct rt_actor_ctx *ctx);
int rt_ctx_delete_state(struct rt_actor_ctx *ctx);
/* The reply body buffer (msgpack map, <= RT_REPLY_BYTES_MAX), empty when the handler starts. */
struct rt_buf *rt_ctx_reply(struct rt_actor_ctx *ctx);
/* False when no one will read this command's reply body: a follower applying its leader's
 * entry (rt_engine.h, replies_wanted). A handler may then leave the body empty and save
 * encoding it; its return code and rt_ctx_fail message count as before. What a handler
 * writes must not depend on it (replicas stay identical). Always true for reads. */
bool rt_ctx_reply_wanted(struct rt_actor_ctx *ctx);
/* A human-readable reason to go with the error code the handler returns. */
void rt_ctx_fail(struct rt_actor_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A fresh id (see rt_id_make), NUL-terminated in @out[RT_ID_BYTES_MAX + 1]. Returns its
 * length, or 0 when the entry has used up its positions (fail the command with
 * RT_ETOOLARGE: the batch limits make this unreachable in practice). */
size_t rt_ctx_new_id(struct rt_actor_ctx *ctx, char kind, char *out);
/* Secondary index: @index_key (1..RT_INDEX_KEY_BYTES_MAX bytes, not starting with a 0 byte,
 * which is the id index's) -> @val. */
int rt_ctx_index_put(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len,
                     const uint8_t *val, size_t val_len);
/* Index this actor under @prefix + @id, for an id this command made (rt_ctx_new_id): reading
 * index key prefix + id (rt_ctx_index_get, rt_engine_index_get) then gives this actor's key,
 * as rt_ctx_index_put(prefix + id, key) would. Cheaper: the entry's ids under one prefix are
 * stored together, one record per 64 positions (docs/storage.md); an id indexed twice under
 * one prefix keeps the first. RT_EINVAL for an empty
 * prefix, one starting with a 0 byte or too long for the index key, or an id this entry did
 * not make. */
int rt_ctx_index_id(struct rt_actor_ctx *ctx, const uint8_t *prefix, size_t prefix_len,
                    const char *id, size_t id_len);
int rt_ctx_index_del(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len);
/* Run op @op of this actor with @args at @due_ms (durable; fires once, on the leader, at or
 * after due_ms; the handler must cope with a state that moved on meanwhile). */
int rt_ctx_timer_set(struct rt_actor_ctx *ctx, uint64_t due_ms, uint8_t op, const uint8_t *args,
                     size_t args_len);
/* Send op @op to actor (type, key). Same shard: applied within this entry, after this handler,
 * and the whole chain commits or fails together. Other shard: queued in the outbox with a
 * sequence number and applied there exactly once. */
int rt_ctx_send(struct rt_actor_ctx *ctx, uint8_t type, const uint8_t *key, size_t key_len,
                uint8_t op, const uint8_t *args, size_t args_len);
/* Queue an external effect (channel call, merchant callback...) for the leader's executor. */
int rt_ctx_external(struct rt_actor_ctx *ctx, const char *kind, const uint8_t *payload,
                    size_t payload_len);

#endif /* RT_ACTOR_H */
