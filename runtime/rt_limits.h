/* rt_limits: every limit in Payraft, in one place, each with the reason it has its value.
 *
 * In the manner of SQLite's sqliteLimit.h: a limit protects memory, latency or a format.
 * Code checks a value against its limit before allocating or looping. Limits that are part of
 * a persistent or wire format say so: changing them needs a format version bump.
 */
#ifndef RT_LIMITS_H
#define RT_LIMITS_H

/* ---- Cluster shape ---- */

/* Shards per cluster, fixed at bootstrap. Each shard is a raft group with its own log, timers
 * and snapshot; 256 keeps per-node memory for groups bounded (~256 x raft state) and fits the
 * 2-byte shard prefix of every key with room to spare. */
#define RT_SHARDS_MAX 256u
/* DESIGN.md: default 16, enough to spread leaders over a handful of nodes and cores. */
#define RT_SHARDS_DEFAULT 16u

/* ---- Command batches (one raft entry) ---- */

/* Commands in one batch. Group commit gains little past a few hundred commands per entry,
 * and one entry is applied in one RocksDB write batch which must stay small for latency. */
#define RT_BATCH_COMMANDS_MAX 1024u
/* Bytes of one encoded batch: raft keeps entries in memory until applied and sends them in
 * AppendEntries messages; 4 MiB bounds both. */
#define RT_BATCH_BYTES_MAX (4u * 1024u * 1024u)
/* Batch format versions this build can read. Persistent format: in every raft log. */
#define RT_BATCH_VERSION 1u

/* ---- Actors ---- */

/* An actor key: app id (32) + '/' + business number (64) with headroom. Persistent format. */
#define RT_ACTOR_KEY_BYTES_MAX 128u
/* Actor types are numbered by one byte in every stored key. Persistent format. */
#define RT_ACTOR_TYPES_MAX 64u
/* Handlers (operations) per actor type. */
#define RT_ACTOR_OPS_MAX 32u
/* Arguments of one command: a request body is at most 1 MiB on the wire, but no v1 operation
 * needs more than a few KiB; 256 KiB leaves room for invoices listing many orders. */
#define RT_COMMAND_ARGS_BYTES_MAX (256u * 1024u)
/* The state of one actor. Loaded on every command, so it must stay small. */
#define RT_ACTOR_STATE_BYTES_MAX (64u * 1024u)
/* A reply body produced by a handler. */
#define RT_REPLY_BYTES_MAX (64u * 1024u)
/* Messages, timers, outbox effects and index writes one handler may produce: an actor that
 * needs more is doing a scan's work in a command. */
#define RT_EFFECTS_PER_COMMAND_MAX 32u
/* Same-shard messages are applied inline, depth-first; a chain longer than this is a bug
 * (a message loop) and fails the originating command. */
#define RT_MESSAGE_DEPTH_MAX 8u
/* Ids handed out to channels as out_trade_no: WeChat and Alipay take at most 32 chars. */
#define RT_ID_BYTES_MAX 32u
/* Secondary index keys (name + value). */
#define RT_INDEX_KEY_BYTES_MAX 192u

/* ---- msgpack decoding (rt_mp) ---- */

/* Nesting depth of maps/arrays our decoder descends into; v1 bodies nest at most 3 deep. */
#define RT_MP_DEPTH_MAX 16u

/* ---- Caches ---- */

/* Default byte budget of the actor-state LRU cache per node. Part of the node's memory budget
 * (docs/benchmarks.md, Memory): with the block cache, memtables and raft logs it keeps a
 * loaded node under 300 MiB. */
#define RT_CACHE_BYTES_DEFAULT (32u * 1024u * 1024u)

/* Byte budget of the meta group's own state cache (apps, the cluster map): every request reads
 * its app's keys there. About a thousand apps with 4 KiB public keys. */
#define RT_META_CACHE_BYTES (4u * 1024u * 1024u)

/* ---- Storage ---- */

/* Uncompressed bytes of one snapshot chunk. raft sends a snapshot as one message made of
 * these buffers; chunks keep each compression call and allocation small. */
#define RT_SNAPSHOT_CHUNK_BYTES (1024u * 1024u)
/* A shard's snapshot: raft 0.15 holds a whole snapshot in memory while sending and installing
 * it, so a shard larger than this must be split (more shards) rather than snapshotted. */
#define RT_SNAPSHOT_BYTES_MAX (512u * 1024u * 1024u)
/* Stored keys and values read back from disk are checked against these; larger means corrupt. */
#define RT_STORED_KEY_BYTES_MAX 512u
/* A value must fit one snapshot chunk with its key and framing: half a chunk, far above any
 * actor state (RT_ACTOR_STATE_BYTES_MAX) or outbox record. */
#define RT_STORED_VALUE_BYTES_MAX (RT_SNAPSHOT_CHUNK_BYTES / 2u)

/* ---- Business ---- */

/* Order expiry: WeChat allows up to 30 days via time_expire; we cap at 7 days. */
#define RT_ORDER_EXPIRE_S_DEFAULT 1800u
#define RT_ORDER_EXPIRE_S_MIN     60u
#define RT_ORDER_EXPIRE_S_MAX     (7u * 24u * 3600u)
/* Amount of one order in fen: 10 million yuan, above any single consumer payment. */
#define RT_ORDER_AMOUNT_MAX 1000000000LL

#endif /* RT_LIMITS_H */
