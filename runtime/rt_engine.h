/* rt_engine: the deterministic apply engine of one shard.
 *
 * Given a raft entry (an encoded rt_batch) and its index, rt_engine_apply runs every command
 * against its actor and commits the resulting state writes, index writes, outbox records and
 * timers in one store commit together with the applied index. It is pure with respect to its
 * inputs: same store contents + same entries => byte-identical store contents on every
 * replica. It reads no clock (now = the batch timestamp) and no randomness (ids and sequence
 * numbers come from (shard, index, position)).
 *
 * Idempotent re-apply: entries at or below the store's applied index are skipped
 * (RT_EDUPLICATE), which is what raft needs after a restart (it re-applies the log tail).
 *
 * Outbox record (persistent format, value in the outbox column family, key = shard | seq):
 *   ["msg", target_shard: uint, actor_type: uint, key: bin, op: uint, args: bin]
 *   ["ext", kind: str, payload: bin]
 * Timer record (value in the timers column family, key = shard | due_ms | seq):
 *   [actor_type: uint, [key: bin, ...], op: uint, args: bin]
 * The timers one entry sets that are alike (due_ms, actor type, op, args) share a record, up
 * to 64 actors, under the seq of the first; firing it runs the op for each actor, each rolled
 * back alone on failure. Stores written before that hold [actor_type, key: bin, op, args]
 * (one actor), still read.
 * Id index record (rt_ctx_index_id; value in the index column family, key = shard | 0 |
 * prefix | be64 raft index | be16 position / 64):
 *   [[position: uint, actor key: bin], ...]
 * the ids one entry made and indexed under one prefix, one record per 64 positions. Index
 * key prefix + id reads this record first, then a key of its own (ids indexed one key each,
 * before this record existed).
 * History: the history hash at the applied index (rt_engine_history_hash) is committed with
 * every entry as part of the shard's applied record (rt_store.h). Stores from before
 * 2026-11-27 hold it under meta "history" (be64 applied index | be64 history hash), still
 * read; the first entry committed after such a load deletes that key.
 * Inbox high-water mark (meta "inbox" | source shard -> be64 seq): a message from a source
 * shard whose seq is not above the mark was applied already and is skipped. The outbox
 * forwarder must therefore deliver one source's messages to a target in sequence order.
 */
#ifndef RT_ENGINE_H
#define RT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_actor.h"
#include "rt_batch.h"
#include "rt_buf.h"
#include "rt_cache.h"
#include "rt_store.h"

struct rt_engine_config {
    uint16_t shard;                     /* The shard this engine applies. */
    uint16_t shard_count;               /* Shards in the cluster (for message routing). */
    const struct rt_registry *registry; /* Not owned; outlives the engine. */
    struct rt_store *store;             /* Not owned. */
    struct rt_cache *cache;             /* Not owned; may be NULL (no caching). */
};

/* The outcome of one command of the last applied entry (or of a query). */
struct rt_reply {
    int code;            /* 0 or a negative RT_E* code. */
    const uint8_t *body; /* msgpack reply body (code == 0), view into the engine. */
    uint32_t body_len;
    const char *msg; /* Human-readable reason, "" when none. */
};

struct rt_engine_stats {
    uint64_t entries_applied;  /* Entries committed by this engine. */
    uint64_t entries_skipped;  /* Entries at or below the applied index. */
    uint64_t entries_rejected; /* Entries that failed to decode. */
    uint64_t commands_ok;
    uint64_t commands_failed;
};

struct rt_engine_entry;

struct rt_engine {
    struct rt_engine_config config;
    uint64_t applied_index;      /* Last index committed to the store. */
    uint64_t history_hash;       /* Chained hash of every entry up to applied_index. */
    bool history_key_legacy;     /* Loaded from meta "history": delete it with the next commit. */
    struct rt_writeset ws;       /* Writes of the entry being applied. */
    struct rt_command *commands; /* Decoded commands, RT_BATCH_COMMANDS_MAX. */
    struct rt_reply *replies;    /* One per command of the last entry. */
    uint32_t reply_count;
    struct rt_buf reply_arena; /* Reply bodies and messages of the last entry. */
    /* Whether anyone reads the reply bodies of the entries applied next (rt_ctx_reply_wanted).
     * True after init; a node clears it on a shard's followers, whose replies go nowhere.
     * Never changes what is written. While it is false the states an entry writes only
     * refresh the cache (rt_cache_refresh), never enter it: a follower would otherwise copy
     * every new order into its cache, evicting another, for reads only a leader serves (a
     * follower's cache still holds what its entries read from the store, and stale reads). */
    bool replies_wanted;
    struct rt_engine_entry *entry; /* Private state of the entry being applied. */
    struct rt_engine_stats stats;
};

/* Reads the store's applied index for the shard. RT_ENOMEM, RT_EIO. */
int rt_engine_init(struct rt_engine *engine, const struct rt_engine_config *config);
void rt_engine_free(struct rt_engine *engine);

/* Apply entry @index holding @data. Returns:
 *   0              committed; rt_engine_reply() has one reply per command;
 *   RT_EDUPLICATE  index <= applied index: nothing done (no replies);
 *   RT_EMALFORMED, RT_EVERSION, RT_ETOOLARGE: the entry is not a valid batch. Nothing is
 *                  written and there are no replies; the in-memory applied index moves on so
 *                  the shard does not stall (every replica decides the same way);
 *   RT_EIO, RT_ENOMEM: the store failed; nothing is committed and the engine must not be used
 *                  for this shard again until reopened (the node stops the shard).
 * @index must be applied_index + 1 or lower (raft applies in order). */
int rt_engine_apply(struct rt_engine *engine, uint64_t index, const uint8_t *data, size_t len);

/* Read secondary index @index_key of this engine's shard from committed state (appended to
 * @out). RT_ENOTFOUND, RT_EINVAL for a bad key, RT_EIO. */
int rt_engine_index_get(struct rt_engine *engine, const uint8_t *index_key, size_t index_key_len,
                        struct rt_buf *out);

/* Re-read the applied index from the store after the shard's data was replaced underneath
 * the engine (a snapshot restore). The caller clears the cache: it may hold the old data. */
int rt_engine_reload(struct rt_engine *engine);

uint32_t rt_engine_reply_count(const struct rt_engine *engine);
const struct rt_reply *rt_engine_reply(const struct rt_engine *engine, uint32_t i);
static inline uint64_t rt_engine_applied_index(const struct rt_engine *engine)
{
    return engine->applied_index;
}

/* The history hash: h(i) = H(h(i-1), i, bytes of entry i), over every entry the engine has
 * consumed (applied or rejected alike), stored with the data (the applied record) and carried by
 * snapshots. Two replicas with the same (applied index, history hash) applied the same
 * entries in the same order. The leader acknowledges a write only once a majority of
 * replicas report its entry's hash (docs/raft.md: this guards acknowledged writes against a
 * canonical/raft 0.15 bug that can commit entries a follower does not really hold). */
static inline uint64_t rt_engine_history_hash(const struct rt_engine *engine)
{
    return engine->history_hash;
}

/* Run a read-only operation against committed state, outside raft (linearizable when the
 * caller has confirmed leadership; "stale" otherwise). @cmd->origin must be CLIENT. The reply
 * is valid until the next apply or query. RT_EINVAL if the op is not read-only. */
int rt_engine_query(struct rt_engine *engine, const struct rt_command *cmd, uint64_t now_ms,
                    struct rt_reply *reply);

/* Leader side: append a TIMER command for every timer record due at @now_ms (oldest first) to
 * @builder, which the caller has begun, as long as the actors they run stay within @max (a
 * record of alike timers runs one handler per actor; the first record goes regardless).
 * *@added says how many commands. Stops early without error when the builder is full. */
int rt_engine_collect_due_timers(struct rt_engine *engine, uint64_t now_ms,
                                 struct rt_batch_builder *builder, uint32_t max, uint32_t *added);

#endif /* RT_ENGINE_H */
