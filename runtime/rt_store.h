/* rt_store: the state-store interface the apply engine runs against, and the write set.
 *
 * The engine never talks to RocksDB directly: storage/ implements struct rt_store_ops over
 * RocksDB, tests may implement it in memory. Every key starts with the 2-byte big-endian shard
 * id (rt_key.h), so one store holds many shards and a shard's data is a prefix.
 *
 * Column families (persistent format: names are stored in the RocksDB manifest):
 *   state   actor state           shard | actor type | actor key          -> state bytes
 *   index   secondary indexes     shard | index key (chosen by the actor)  -> value
 *   outbox  effects to perform    shard | seq (be64)                       -> effect
 *   timers  durable timers        shard | due_ms (be64) | seq (be64)       -> command
 *   meta    per-shard bookkeeping shard | name                             -> value
 *
 * The applied record of a shard is stored in meta under rt_key_meta(shard, "applied"): the
 * applied index and the history hash at it (rt_engine.h), both big-endian uint64, written by
 * commit() in the same atomic batch as the data. Stores written before 2026-11-27 hold the
 * index alone (8 bytes) and the hash under meta "history"; both forms are read.
 *
 * The write set collects one raft entry's writes in order; the store commits it atomically
 * together with the shard's applied index (rt_store_ops.commit).
 */
#ifndef RT_STORE_H
#define RT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_buf.h"

enum rt_cf {
    RT_CF_STATE = 0,
    RT_CF_INDEX = 1,
    RT_CF_OUTBOX = 2,
    RT_CF_TIMERS = 3,
    RT_CF_META = 4,
    RT_CF_COUNT = 5,
};

/* "state", "index", "outbox", "timers", "meta". */
const char *rt_cf_name(enum rt_cf cf);

enum rt_write_op { RT_WRITE_PUT = 1, RT_WRITE_DEL = 2 };

/* One pending write. Key and value live in the write set's byte arena. */
struct rt_write {
    uint8_t cf;       /* enum rt_cf */
    uint8_t op;       /* enum rt_write_op */
    uint32_t key_off; /* Offset of the key in rt_writeset.arena. */
    uint32_t key_len;
    uint32_t val_off; /* Offset of the value (PUT only). */
    uint32_t val_len;
    int32_t prev;  /* Index of the previous write to the same (cf, key), or -1. */
    uint32_t hash; /* Hash of (cf, key), cached for the lookup table. */
};

/* The writes of one raft entry, with an undo mark per command so that a failed command
 * leaves no trace. Lookups see the latest pending write of a key (reads within an entry see
 * earlier commands' writes). */
struct rt_writeset {
    uint16_t shard;         /* Shard whose applied record commits with these writes. */
    uint64_t applied_index; /* The raft index being applied. */
    uint64_t history_hash;  /* The history hash at applied_index; reset to 0. */
    struct rt_buf arena;    /* Keys and values. */
    struct rt_write *writes;
    uint32_t count;
    uint32_t cap;
    int32_t *table;       /* Open-addressing table: latest write per (cf, key), -1 = empty. */
    uint32_t table_slots; /* Power of two, at least 2 x cap. */
};

/* A shard's applied record, as stored (the meta "applied" value). */
struct rt_applied {
    uint64_t index;        /* 0 when nothing was ever applied. */
    uint64_t history_hash; /* Valid only when has_history. */
    bool has_history;      /* false for the 8-byte record of older stores. */
};
#define RT_APPLIED_BYTES        16u /* index | history hash */
#define RT_APPLIED_BYTES_LEGACY 8u  /* index alone, before 2026-11-27 */

/* The stored applied record of (@index, @history_hash). */
void rt_applied_encode(uint8_t out[RT_APPLIED_BYTES], uint64_t index, uint64_t history_hash);
/* Decode a stored applied record, either form: 0, or RT_ECORRUPT for any other length. */
int rt_applied_decode(const uint8_t *val, size_t len, struct rt_applied *out);

void rt_writeset_init(struct rt_writeset *ws);
void rt_writeset_free(struct rt_writeset *ws);
/* Start a new entry: drop every pending write. */
void rt_writeset_reset(struct rt_writeset *ws, uint16_t shard, uint64_t applied_index);
/* Append a write; key and value are copied. RT_ENOMEM, RT_ETOOLARGE. */
int rt_writeset_put(struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key, size_t key_len,
                    const uint8_t *val, size_t val_len);
int rt_writeset_del(struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key, size_t key_len);

enum rt_lookup { RT_LOOKUP_ABSENT = 0, RT_LOOKUP_PUT = 1, RT_LOOKUP_DELETED = 2 };
/* Latest pending write of (cf, key): PUT with a view of the value (valid until the next write
 * or reset), DELETED, or ABSENT when this entry has not touched the key. */
enum rt_lookup rt_writeset_lookup(const struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key,
                                  size_t key_len, const uint8_t **val, size_t *val_len);
/* Undo marks: writes after the mark are forgotten by rt_writeset_rollback. */
static inline uint32_t rt_writeset_mark(const struct rt_writeset *ws)
{
    return ws->count;
}
void rt_writeset_rollback(struct rt_writeset *ws, uint32_t mark);

static inline const uint8_t *rt_write_key(const struct rt_writeset *ws, const struct rt_write *w)
{
    return ws->arena.data + w->key_off;
}
static inline const uint8_t *rt_write_val(const struct rt_writeset *ws, const struct rt_write *w)
{
    return ws->arena.data + w->val_off;
}

/* Scan callback: return 0 to go on, 1 to stop, a negative code to stop with that error.
 * Key and value views are valid only during the call. */
typedef int (*rt_scan_cb)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                          size_t val_len);

/* get_many callback: key @i's value (a view valid only during the call), or NULL when the key
 * is absent. */
typedef void (*rt_get_many_cb)(void *arg, uint32_t i, const uint8_t *val, size_t val_len);

struct rt_store;

struct rt_store_ops {
    /* Read (cf, key): 0 with the value appended to @out, RT_ENOTFOUND, RT_EIO. */
    int (*get)(struct rt_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len,
               struct rt_buf *out);
    /* Optional (NULL: readers go key by key). Read @count (1..RT_BATCH_COMMANDS_MAX) keys of
     * @cf in one call, which costs less than @count gets when many are absent (every new
     * order's). @cb is called once per key read, with its value or NULL. A key that failed is
     * left out and the call returns the first error (RT_EIO, RT_ECORRUPT); RT_EINVAL for a bad
     * @count. */
    int (*get_many)(struct rt_store *store, enum rt_cf cf, uint32_t count,
                    const uint8_t *const *keys, const size_t *key_lens, rt_get_many_cb cb,
                    void *arg);
    /* @shard's applied record: the last index committed for it (0, without a history hash,
     * when nothing was ever applied). RT_ECORRUPT for a record of the wrong size. */
    int (*applied)(struct rt_store *store, uint16_t shard, struct rt_applied *out);
    /* Write every write of @ws, in order, and @ws's applied record (applied index and history
     * hash) for @ws->shard, as one atomic batch. RT_EIO on failure (nothing written). */
    int (*commit)(struct rt_store *store, const struct rt_writeset *ws);
    /* Visit the keys of @cf that start with @prefix and are >= @start (start may be NULL), in
     * byte order. Returns 0, or the callback's negative code, or RT_EIO. */
    int (*scan)(struct rt_store *store, enum rt_cf cf, const uint8_t *prefix, size_t prefix_len,
                const uint8_t *start, size_t start_len, rt_scan_cb cb, void *arg);
};

/* Embed as the first member of an implementation. */
struct rt_store {
    const struct rt_store_ops *ops;
};

#endif /* RT_STORE_H */
