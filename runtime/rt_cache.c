/* LRU cache: a chained hash table for lookup plus a doubly linked list for recency. Each entry
 * is one allocation holding the key and value bytes after the header. */
#include "rt_cache.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "rt_error.h"

struct rt_cache_entry {
    struct rt_cache_entry *chain; /* Next in the hash bucket. */
    struct rt_cache_entry *newer; /* Towards lru_head. */
    struct rt_cache_entry *older; /* Towards lru_tail. */
    uint32_t hash;
    uint32_t key_len;
    uint32_t val_len;
    uint8_t bytes[]; /* key, then value. */
};

#define CACHE_SLOTS_INITIAL 1024u

static size_t entry_cost(size_t key_len, size_t val_len)
{
    return sizeof(struct rt_cache_entry) + key_len + val_len;
}

static uint32_t cache_hash(const uint8_t *key, size_t key_len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < key_len; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    return h;
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

static struct rt_cache_entry **cache_find(struct rt_cache *cache, uint32_t hash, const uint8_t *key,
                                          size_t key_len)
{
    struct rt_cache_entry **link = &cache->table[hash & (cache->table_slots - 1)];
    while (*link != NULL) {
        struct rt_cache_entry *e = *link;
        if (e->hash == hash && e->key_len == key_len && memcmp(e->bytes, key, key_len) == 0) {
            return link;
        }
        link = &e->chain;
    }
    return link;
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

/* Remove the entry at *link from table, list and accounting. */
static void cache_remove(struct rt_cache *cache, struct rt_cache_entry **link)
{
    struct rt_cache_entry *e = *link;
    assert(e != NULL);
    *link = e->chain;
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
    struct rt_cache_entry **link = cache_find(cache, cache_hash(key, key_len), key, key_len);
    if (*link == NULL) {
        cache->misses++;
        return RT_ENOTFOUND;
    }
    struct rt_cache_entry *e = *link;
    lru_unlink(cache, e);
    lru_push_head(cache, e);
    cache->hits++;
    *val = e->bytes + e->key_len;
    *val_len = e->val_len;
    return 0;
}

/* Double the table when the average chain passes 1; failure just keeps longer chains. */
static void cache_maybe_grow(struct rt_cache *cache)
{
    if (cache->entries < cache->table_slots || cache->table_slots >= (1u << 26)) {
        return;
    }
    uint32_t slots = cache->table_slots * 2;
    struct rt_cache_entry **table = calloc(slots, sizeof(*table));
    if (table == NULL) {
        return;
    }
    for (uint32_t i = 0; i < cache->table_slots; i++) {
        struct rt_cache_entry *e = cache->table[i];
        while (e != NULL) {
            struct rt_cache_entry *next = e->chain;
            e->chain = table[e->hash & (slots - 1)];
            table[e->hash & (slots - 1)] = e;
            e = next;
        }
    }
    free(cache->table);
    cache->table = table;
    cache->table_slots = slots;
}

int rt_cache_put(struct rt_cache *cache, const uint8_t *key, size_t key_len, const uint8_t *val,
                 size_t val_len)
{
    assert(cache != NULL);
    assert(key != NULL && key_len > 0);
    assert(val != NULL || val_len == 0);
    uint32_t hash = cache_hash(key, key_len);
    struct rt_cache_entry **link = cache_find(cache, hash, key, key_len);
    if (*link != NULL) {
        cache_remove(cache, link);
    }
    size_t cost = entry_cost(key_len, val_len);
    if (cost > cache->bytes_max) {
        return 0; /* Larger than the whole budget: not cached, which is always allowed. */
    }
    while (cache->bytes + cost > cache->bytes_max) {
        struct rt_cache_entry *victim = cache->lru_tail;
        assert(victim != NULL);
        cache_remove(cache, cache_find(cache, victim->hash, victim->bytes, victim->key_len));
        cache->evictions++;
    }
    struct rt_cache_entry *e = malloc(cost);
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
    link = cache_find(cache, hash, key, key_len); /* Evictions may have moved the slot's chain. */
    assert(*link == NULL);
    e->chain = NULL;
    *link = e;
    lru_push_head(cache, e);
    cache->bytes += cost;
    cache->entries++;
    cache_maybe_grow(cache);
    return 0;
}

void rt_cache_del(struct rt_cache *cache, const uint8_t *key, size_t key_len)
{
    assert(cache != NULL);
    assert(key != NULL);
    struct rt_cache_entry **link = cache_find(cache, cache_hash(key, key_len), key, key_len);
    if (*link != NULL) {
        cache_remove(cache, link);
    }
}
