/* The write set: an append-only list of writes plus an open-addressing table from (cf, key)
 * to the latest write, with a per-write back link so that rollback can restore the table
 * without rebuilding it. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "rt_error.h"
#include "rt_limits.h"
#include "rt_store.h"

/* One entry's writes: commands x (state + index + outbox + timers), with headroom. The arena
 * is bounded by the batch size times a small factor. */
#define WRITESET_ARENA_BYTES_MAX (64u * 1024u * 1024u)
#define WRITESET_WRITES_MAX      (RT_BATCH_COMMANDS_MAX * (RT_EFFECTS_PER_COMMAND_MAX + 4u))
#define WRITESET_WRITES_INITIAL  256u

const char *rt_cf_name(enum rt_cf cf)
{
    static const char *names[RT_CF_COUNT] = {"state", "index", "outbox", "timers", "meta"};
    assert(cf >= 0 && cf < RT_CF_COUNT);
    return names[cf];
}

void rt_applied_encode(uint8_t out[RT_APPLIED_BYTES], uint64_t index, uint64_t history_hash)
{
    assert(out != NULL);
    rt_put_be64(out, index);
    rt_put_be64(out + 8, history_hash);
}

int rt_applied_decode(const uint8_t *val, size_t len, struct rt_applied *out)
{
    assert(val != NULL || len == 0);
    assert(out != NULL);
    memset(out, 0, sizeof(*out));
    if (len != RT_APPLIED_BYTES && len != RT_APPLIED_BYTES_LEGACY) {
        return RT_ECORRUPT;
    }
    out->index = rt_get_be64(val);
    out->has_history = len == RT_APPLIED_BYTES;
    if (out->has_history) {
        out->history_hash = rt_get_be64(val + 8);
    }
    return 0;
}

static uint32_t writeset_hash(enum rt_cf cf, const uint8_t *key, size_t key_len)
{
    uint32_t h = 2166136261u ^ (uint32_t)cf;
    for (size_t i = 0; i < key_len; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    return h;
}

void rt_writeset_init(struct rt_writeset *ws)
{
    assert(ws != NULL);
    memset(ws, 0, sizeof(*ws));
    rt_buf_init(&ws->arena, WRITESET_ARENA_BYTES_MAX);
}

void rt_writeset_free(struct rt_writeset *ws)
{
    assert(ws != NULL);
    rt_buf_free(&ws->arena);
    free(ws->writes);
    free(ws->table);
    memset(ws, 0, sizeof(*ws));
}

static void writeset_clear_table(struct rt_writeset *ws)
{
    /* -1 in every slot: all bytes 0xff. A loop of stores took ~2,500 instructions per entry
     * for the initial 512 slots; memset writes them a vector at a time. */
    static_assert((int32_t)0xffffffffu == -1, "an empty slot is all ones");
    memset(ws->table, 0xff, (size_t)ws->table_slots * sizeof(*ws->table));
}

void rt_writeset_reset(struct rt_writeset *ws, uint16_t shard, uint64_t applied_index)
{
    assert(ws != NULL);
    ws->shard = shard;
    ws->applied_index = applied_index;
    ws->history_hash = 0;
    /* Clearing only the used slots would need a list; the table is small relative to the work
     * of an entry, and a reset happens once per entry. */
    if (ws->count > 0) {
        writeset_clear_table(ws);
    }
    ws->count = 0;
    rt_buf_reset(&ws->arena);
}

/* Slot holding the latest write of (cf, key), or the empty slot where it would go. */
static uint32_t writeset_find_slot(const struct rt_writeset *ws, uint32_t hash, enum rt_cf cf,
                                   const uint8_t *key, size_t key_len)
{
    assert(ws->table_slots > 0);
    uint32_t mask = ws->table_slots - 1;
    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        int32_t w = ws->table[i];
        if (w < 0) {
            return i;
        }
        const struct rt_write *write = &ws->writes[w];
        if (write->hash == hash && write->cf == cf && write->key_len == key_len &&
            memcmp(rt_write_key(ws, write), key, key_len) == 0) {
            return i;
        }
    }
}

static int writeset_grow(struct rt_writeset *ws)
{
    if (ws->cap >= WRITESET_WRITES_MAX) {
        return RT_ETOOLARGE;
    }
    uint32_t cap = ws->cap == 0 ? WRITESET_WRITES_INITIAL : ws->cap * 2;
    struct rt_write *writes = realloc(ws->writes, cap * sizeof(*writes));
    if (writes == NULL) {
        return RT_ENOMEM;
    }
    ws->writes = writes;
    uint32_t slots = cap * 2;
    int32_t *table = malloc(slots * sizeof(*table));
    if (table == NULL) {
        return RT_ENOMEM; /* ws->writes grew but cap did not: still consistent. */
    }
    free(ws->table);
    ws->table = table;
    ws->table_slots = slots;
    ws->cap = cap;
    /* Re-insert the latest write of each key: walking in order, later writes overwrite. */
    writeset_clear_table(ws);
    for (uint32_t i = 0; i < ws->count; i++) {
        const struct rt_write *w = &ws->writes[i];
        uint32_t slot =
            writeset_find_slot(ws, w->hash, (enum rt_cf)w->cf, rt_write_key(ws, w), w->key_len);
        ws->table[slot] = (int32_t)i;
    }
    return 0;
}

static int writeset_add(struct rt_writeset *ws, enum rt_cf cf, enum rt_write_op op,
                        const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    assert(ws != NULL);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    assert(key != NULL && key_len > 0);
    if (key_len > RT_STORED_KEY_BYTES_MAX || val_len > RT_STORED_VALUE_BYTES_MAX) {
        return RT_ETOOLARGE;
    }
    if (ws->count == ws->cap) {
        int rv = writeset_grow(ws);
        if (rv != 0) {
            return rv;
        }
    }
    size_t mark = ws->arena.len;
    int rv = rt_buf_append(&ws->arena, key, key_len);
    if (rv == 0 && op == RT_WRITE_PUT) {
        rv = rt_buf_append(&ws->arena, val, val_len);
    }
    if (rv != 0) {
        rt_buf_truncate(&ws->arena, mark);
        return rv;
    }
    uint32_t hash = writeset_hash(cf, key, key_len);
    uint32_t slot = writeset_find_slot(ws, hash, cf, key, key_len);
    struct rt_write *w = &ws->writes[ws->count];
    w->cf = (uint8_t)cf;
    w->op = (uint8_t)op;
    w->key_off = (uint32_t)mark;
    w->key_len = (uint32_t)key_len;
    w->val_off = (uint32_t)(mark + key_len);
    w->val_len = op == RT_WRITE_PUT ? (uint32_t)val_len : 0;
    w->prev = ws->table[slot];
    w->hash = hash;
    ws->table[slot] = (int32_t)ws->count;
    ws->count++;
    return 0;
}

int rt_writeset_put(struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key, size_t key_len,
                    const uint8_t *val, size_t val_len)
{
    assert(val != NULL || val_len == 0);
    return writeset_add(ws, cf, RT_WRITE_PUT, key, key_len, val, val_len);
}

int rt_writeset_del(struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key, size_t key_len)
{
    return writeset_add(ws, cf, RT_WRITE_DEL, key, key_len, NULL, 0);
}

enum rt_lookup rt_writeset_lookup(const struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key,
                                  size_t key_len, const uint8_t **val, size_t *val_len)
{
    assert(ws != NULL);
    if (ws->count == 0) {
        return RT_LOOKUP_ABSENT;
    }
    uint32_t slot = writeset_find_slot(ws, writeset_hash(cf, key, key_len), cf, key, key_len);
    int32_t i = ws->table[slot];
    if (i < 0) {
        return RT_LOOKUP_ABSENT;
    }
    const struct rt_write *w = &ws->writes[i];
    if (w->op == RT_WRITE_DEL) {
        return RT_LOOKUP_DELETED;
    }
    *val = rt_write_val(ws, w);
    *val_len = w->val_len;
    return RT_LOOKUP_PUT;
}

void rt_writeset_rollback(struct rt_writeset *ws, uint32_t mark)
{
    assert(ws != NULL);
    assert(mark <= ws->count);
    while (ws->count > mark) {
        ws->count--;
        const struct rt_write *w = &ws->writes[ws->count];
        uint32_t slot =
            writeset_find_slot(ws, w->hash, (enum rt_cf)w->cf, rt_write_key(ws, w), w->key_len);
        assert(ws->table[slot] == (int32_t)ws->count);
        if (w->prev >= 0) {
            ws->table[slot] = w->prev;
        } else {
            /* Removing from open addressing: re-home the cluster that follows the slot. */
            uint32_t mask = ws->table_slots - 1;
            ws->table[slot] = -1;
            for (uint32_t i = (slot + 1) & mask; ws->table[i] >= 0; i = (i + 1) & mask) {
                int32_t moved = ws->table[i];
                ws->table[i] = -1;
                const struct rt_write *m = &ws->writes[moved];
                uint32_t home = writeset_find_slot(ws, m->hash, (enum rt_cf)m->cf,
                                                   rt_write_key(ws, m), m->key_len);
                ws->table[home] = moved;
            }
        }
        rt_buf_truncate(&ws->arena, ws->writes[ws->count].key_off);
    }
}
