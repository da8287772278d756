/* LRU cache: an open-addressing hash table of (hash, entry) slots for lookup plus a doubly
 * linked list for recency. Each entry is one allocation holding the key and value bytes after
 * the header.
 *
 * Why open addressing with the hash in the slot: under a create-heavy load nearly every
 * lookup misses and every put evicts the coldest entry. With chained buckets each of those
 * walked cold entries (a cache miss apiece) just to compare hashes; here the probe compares
 * hashes inside the table (contiguous, one miss) and touches an entry only when its hash
 * matches. Removal finds the slot by entry pointer the same way, and deletes with backward
 * shifting so that probe sequences stay intact without tombstones.
 */
#include "rt_cache.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rt_error.h"

struct rt_cache_entry {
    struct rt_cache_entry *newer; /* Towards lru_head. */
    struct rt_cache_entry *older; /* Towards lru_tail. */
    uint32_t hash;
    uint32_t key_len;
    uint32_t val_len;
    uint8_t bytes[]; /* key, then value. */
};

struct rt_cache_slot {
    uint32_t hash;
    struct rt_cache_entry *entry; /* NULL = empty. */
};

#define CACHE_SLOTS_INITIAL 1024u
/* The table doubles when more than half full: probes stay short. */
#define CACHE_SLOTS_MAX (1u << 27)

static size_t entry_cost(size_t key_len, size_t val_len)
{
    return sizeof(struct rt_cache_entry) + sizeof(struct rt_cache_slot) * 2 + key_len + val_len;
}

/* A multiply-xorshift hash over 8-byte words: keys are tens of bytes, and a byte-at-a-time
 * hash was a visible share of a lookup. Only this process sees the values. */
static uint32_t cache_hash(const uint8_t *key, size_t key_len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ key_len;
    size_t i = 0;
    for (; i + 8 <= key_len; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t tail = 0;
    memcpy(&tail, key + i, key_len - i);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

int rt_cache_init(struct rt_cache *cache, size_t bytes_max)
{
    assert(cache != NULL);
    memset(cache, 0, sizeof(*cache));
    cache->bytes_max = bytes_max;
    cache->table_slots = CACHE_SLOTS_INITIAL;
    cache->table = calloc(cache->table_slots, sizeof(*cache->table));
    return cache->table != NULL ? 0 : RT_ENOMEM;
}

void rt_cache_clear(struct rt_cache *cache)
{
    assert(cache != NULL);
    struct rt_cache_entry *e = cache->lru_head;
    while (e != NULL) {
        struct rt_cache_entry *next = e->older;
        free(e);
        e = next;
    }
    if (cache->table != NULL) {
        memset(cache->table, 0, cache->table_slots * sizeof(*cache->table));
    }
    cache->lru_head = NULL;
    cache->lru_tail = NULL;
    cache->bytes = 0;
    cache->entries = 0;
}

void rt_cache_free(struct rt_cache *cache)
{
    assert(cache != NULL);
    rt_cache_clear(cache);
    free(cache->table);
    cache->table = NULL;
}

/* The slot holding @key, or the empty slot where it would go. */
static uint32_t cache_find(const struct rt_cache *cache, uint32_t hash, const uint8_t *key,
                           size_t key_len)
{
    uint32_t mask = cache->table_slots - 1;
    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        const struct rt_cache_slot *s = &cache->table[i];
        if (s->entry == NULL || (s->hash == hash && s->entry->key_len == key_len &&
                                 memcmp(s->entry->bytes, key, key_len) == 0)) {
            return i;
        }
    }
}

/* The slot holding entry @e (which is in the table). */
static uint32_t cache_slot_of(const struct rt_cache *cache, const struct rt_cache_entry *e)
{
    uint32_t mask = cache->table_slots - 1;
    for (uint32_t i = e->hash & mask;; i = (i + 1) & mask) {
        assert(cache->table[i].entry != NULL);
        if (cache->table[i].entry == e) {
            return i;
        }
    }
}

/* Empty slot @i and move later members of its probe run back so none is cut off. */
static void cache_slot_clear(struct rt_cache *cache, uint32_t i)
{
    uint32_t mask = cache->table_slots - 1;
    cache->table[i].entry = NULL;
    for (uint32_t j = (i + 1) & mask; cache->table[j].entry != NULL; j = (j + 1) & mask) {
        uint32_t home = cache->table[j].hash & mask;
        /* Slot j may move to the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            cache->table[i] = cache->table[j];
            cache->table[j].entry = NULL;
            i = j;
        }
    }
}

static void lru_unlink(struct rt_cache *cache, struct rt_cache_entry *e)
{
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        cache->lru_head = e->older;
    }
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        cache->lru_tail = e->newer;
    }
    e->newer = NULL;
    e->older = NULL;
}

static void lru_push_head(struct rt_cache *cache, struct rt_cache_entry *e)
{
    e->newer = NULL;
    e->older = cache->lru_head;
    if (cache->lru_head != NULL) {
        cache->lru_head->newer = e;
    }
    cache->lru_head = e;
    if (cache->lru_tail == NULL) {
        cache->lru_tail = e;
    }
}

/* Remove the entry in slot @i from table, list and accounting. */
static void cache_remove(struct rt_cache *cache, uint32_t i)
{
    struct rt_cache_entry *e = cache->table[i].entry;
    assert(e != NULL);
    cache_slot_clear(cache, i);
    lru_unlink(cache, e);
    assert(cache->bytes >= entry_cost(e->key_len, e->val_len));
    cache->bytes -= entry_cost(e->key_len, e->val_len);
    cache->entries--;
    free(e);
}

int rt_cache_get(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t **val,
                 size_t *val_len)
{
    assert(cache != NULL);
    assert(val != NULL && val_len != NULL);
    struct rt_cache_entry *e =
        cache->table[cache_find(cache, cache_hash(key, key_len), key, key_len)].entry;
    if (e == NULL) {
        cache->misses++;
        return RT_ENOTFOUND;
    }
    lru_unlink(cache, e);
    lru_push_head(cache, e);
    cache->hits++;
    *val = e->bytes + e->key_len;
    *val_len = e->val_len;
    return 0;
}

/* Double the table when more than half full; failure keeps the table (probes get longer,
 * and at CACHE_SLOTS_MAX the budget, not the table, bounds the entries). */
static void cache_maybe_grow(struct rt_cache *cache)
{
    if (cache->entries * 2u < cache->table_slots || cache->table_slots >= CACHE_SLOTS_MAX) {
        return;
    }
    uint32_t slots = cache->table_slots * 2;
    struct rt_cache_slot *table = calloc(slots, sizeof(*table));
    if (table == NULL) {
        return;
    }
    for (uint32_t i = 0; i < cache->table_slots; i++) {
        if (cache->table[i].entry != NULL) {
            uint32_t j = cache->table[i].hash & (slots - 1);
            while (table[j].entry != NULL) {
                j = (j + 1) & (slots - 1);
            }
            table[j] = cache->table[i];
        }
    }
    free(cache->table);
    cache->table = table;
    cache->table_slots = slots;
}

/* Insert @key, or replace its value; with @held_only, only replace it (a key the cache does not
 * hold stays out). One hash and one probe either way. */
static int cache_store(struct rt_cache *cache, const uint8_t *key, size_t key_len,
                       const uint8_t *val, size_t val_len, bool held_only)
{
    assert(cache != NULL);
    assert(key != NULL && key_len > 0);
    assert(val != NULL || val_len == 0);
    uint32_t hash = cache_hash(key, key_len);
    uint32_t i = cache_find(cache, hash, key, key_len);
    if (cache->table[i].entry != NULL) {
        cache_remove(cache, i);
    } else if (held_only) {
        return 0;
    }
    size_t cost = entry_cost(key_len, val_len);
    if (cost > cache->bytes_max) {
        return 0; /* Larger than the whole budget: not cached, which is always allowed. */
    }
    /* A full table (at CACHE_SLOTS_MAX) evicts too: one slot must stay empty for probes. */
    while (cache->bytes + cost > cache->bytes_max ||
           (cache->entries + 1u >= cache->table_slots && cache->lru_tail != NULL)) {
        cache_remove(cache, cache_slot_of(cache, cache->lru_tail));
        cache->evictions++;
    }
    struct rt_cache_entry *e = malloc(sizeof(*e) + key_len + val_len);
    if (e == NULL) {
        return RT_ENOMEM;
    }
    e->hash = hash;
    e->key_len = (uint32_t)key_len;
    e->val_len = (uint32_t)val_len;
    memcpy(e->bytes, key, key_len);
    if (val_len > 0) {
        memcpy(e->bytes + key_len, val, val_len);
    }
    i = cache_find(cache, hash, key, key_len); /* Removals may have shifted the probe run. */
    assert(cache->table[i].entry == NULL);
    cache->table[i].hash = hash;
    cache->table[i].entry = e;
    lru_push_head(cache, e);
    cache->bytes += cost;
    cache->entries++;
    cache_maybe_grow(cache);
    return 0;
}

int rt_cache_put(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t *val,
                 size_t val_len)
{
    return cache_store(cache, key, key_len, val, val_len, false);
}

int rt_cache_refresh(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t *val,
                     size_t val_len)
{
    return cache_store(cache, key, key_len, val, val_len, true);
}

void rt_cache_del(struct rt_cache *cache, const uint8_t *key, size_t key_len)
{
    assert(cache != NULL);
    assert(key != NULL);
    uint32_t i = cache_find(cache, cache_hash(key, key_len), key, key_len);
    if (cache->table[i].entry != NULL) {
        cache_remove(cache, i);
    }
}
