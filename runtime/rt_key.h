/* rt_key: the layout of stored keys, shard placement and id generation.
 *
 * Persistent format. Every stored key starts with the shard id as 2 big-endian bytes so a
 * shard's data is one contiguous prefix in every column family (snapshot = prefix scan,
 * dropping a replica = range delete). Integers in keys are big-endian so that byte order is
 * numeric order (timers sort by due time, outbox by sequence).
 */
#ifndef RT_KEY_H
#define RT_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_limits.h"

#define RT_KEY_SHARD_BYTES 2u
/* Largest key built by this module: shard + type + actor key, or shard + index key. */
#define RT_KEY_BYTES_MAX (RT_KEY_SHARD_BYTES + 1u + RT_INDEX_KEY_BYTES_MAX)

/* The shard that owns actor (type, key): FNV-1a 64 of the key mod @shard_count. Stable
 * forever: it decides where data lives. The type is not hashed, so that actors sharing a key
 * (e.g. an order and its payment session) share a shard and message each other atomically. */
uint16_t rt_shard_of(const uint8_t *key, size_t key_len, uint16_t shard_count);
/* The two halves of rt_shard_of, for a caller that learns the shard count after the key (the
 * client library hashes a request's key once, when it is sent). */
uint64_t rt_key_hash(const uint8_t *key, size_t key_len);
static inline uint16_t rt_shard_of_hash(uint64_t hash, uint16_t shard_count)
{
    return (uint16_t)(hash % shard_count);
}

/* Builders return the key length written to @out (which holds RT_KEY_BYTES_MAX bytes). */
size_t rt_key_state(uint8_t *out, uint16_t shard, uint8_t actor_type, const uint8_t *key,
                    size_t key_len);
size_t rt_key_index(uint8_t *out, uint16_t shard, const uint8_t *index_key, size_t index_key_len);
size_t rt_key_outbox(uint8_t *out, uint16_t shard, uint64_t seq);
size_t rt_key_timer(uint8_t *out, uint16_t shard, uint64_t due_ms, uint64_t seq);
/* Meta keys: shard | name. */
size_t rt_key_meta(uint8_t *out, uint16_t shard, const char *name);
size_t rt_key_meta_inbox(uint8_t *out, uint16_t shard, uint16_t source_shard);
/* The 2-byte prefix of every key of @shard. */
void rt_key_shard_prefix(uint8_t out[RT_KEY_SHARD_BYTES], uint16_t shard);

/* Sequence numbers for outbox entries, timers and inter-shard messages, derived from the raft
 * index and a position within the entry: unique, increasing in apply order, and the same on
 * every replica. The position is < 2^16 (RT_BATCH_COMMANDS_MAX x RT_EFFECTS_PER_COMMAND_MAX). */
static inline uint64_t rt_seq_make(uint64_t raft_index, uint32_t position)
{
    return (raft_index << 16) | (position & 0xffffu);
}

/* Ids: kind letter + shard (2 hex) + raft index (12 hex) + position (4 hex) = 19 chars of
 * [0-9A-Za-z], well under RT_ID_BYTES_MAX, unique cluster-wide, and routable: the shard can be
 * read back without a lookup. @out holds RT_ID_BYTES_MAX + 1 bytes; returns the length. */
#define RT_ID_LEN 19u
size_t rt_id_make(char *out, char kind, uint16_t shard, uint64_t raft_index, uint32_t position);
/* An id read back into what it was made of. */
struct rt_id {
    char kind;
    uint16_t shard;
    uint64_t raft_index;
    uint32_t position;
};
/* Parse @id; false if it is not one of ours (any kind letter). */
bool rt_id_parse(const char *id, size_t id_len, struct rt_id *out);
/* Parse the shard out of an id of @kind; false if @id is not one of ours. */
bool rt_id_shard(const char *id, size_t id_len, char kind, uint16_t *shard);

#endif /* RT_KEY_H */
