/* rt_cache: an LRU cache of actor state with a byte budget.
 *
 * Keys are full state keys (shard | type | actor key); values are state bytes. The engine
 * fills it on read misses and updates it after each successful commit, so it only ever holds
 * committed state (on a shard's followers a commit only refreshes keys the cache holds:
 * rt_engine.h). Entry bytes (key + value + bookkeeping) are counted against @bytes_max and the
 * least recently used entries are evicted to stay under it. One cache may serve several engines
 * of the same node (all on one thread: not thread-safe).
 */
#ifndef RT_CACHE_H
#define RT_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct rt_cache_entry;
struct rt_cache_slot;

struct rt_cache {
    size_t bytes_max; /* Budget. */
    size_t bytes;     /* In use, including per-entry overhead. */
    uint32_t entries;
    struct rt_cache_slot *table;     /* Open addressing, linear probing (rt_cache.c). */
    uint32_t table_slots;            /* Power of two. */
    struct rt_cache_entry *lru_head; /* Most recently used. */
    struct rt_cache_entry *lru_tail; /* Next to evict. */
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
};

/* RT_ENOMEM. A @bytes_max of 0 makes a cache that stores nothing. */
int rt_cache_init(struct rt_cache *cache, size_t bytes_max);
void rt_cache_free(struct rt_cache *cache);
/* 0 with a view of the value (valid until the next put/del/clear), or RT_ENOTFOUND. A hit
 * makes the entry most recently used. */
int rt_cache_get(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t **val,
                 size_t *val_len);
/* Insert or replace (copies). An entry larger than the whole budget is not cached. RT_ENOMEM
 * leaves the key absent (a cache may always forget). */
int rt_cache_put(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t *val,
                 size_t val_len);
/* Replace the value of a key the cache holds (as rt_cache_put); a key it does not hold stays
 * out. For a replica that keeps what it reads up to date without filling up with what it
 * writes (rt_engine.h, replies_wanted). */
int rt_cache_refresh(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t *val,
                     size_t val_len);
void rt_cache_del(struct rt_cache *cache, const uint8_t *key, size_t key_len);
/* Forget everything (after a snapshot restore replaces a shard's data). */
void rt_cache_clear(struct rt_cache *cache);

#endif /* RT_CACHE_H */
