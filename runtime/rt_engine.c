/* The apply engine. One call of rt_engine_apply = one raft entry = one store commit.
 *
 * Per command: remember the write set's undo mark, run the handler (and, depth-first, the
 * same-shard messages it sends), and on failure roll the write set back to the mark so the
 * command leaves no trace. Replies are collected in an arena and resolved to pointers once
 * the entry is done (the arena may move while it grows). */
#include "rt_engine.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_error.h"
#include "rt_key.h"
#include "rt_log.h"
#include "rt_mp.h"

/* Reply bodies and messages of one entry: every command's reply is <= RT_REPLY_BYTES_MAX but
 * in practice a few hundred bytes; the arena stops a pathological entry from taking more. */
#define ENGINE_REPLY_ARENA_BYTES_MAX (64u * 1024u * 1024u)
/* Queued same-shard messages of one command (type, key, op, args). */
#define ENGINE_MESSAGE_QUEUE_BYTES_MAX                                                             \
    (RT_EFFECTS_PER_COMMAND_MAX * RT_MESSAGE_DEPTH_MAX *                                           \
     (RT_ACTOR_KEY_BYTES_MAX + RT_COMMAND_ARGS_BYTES_MAX + 16u))
#define ENGINE_FAIL_MSG_BYTES 256u
/* Positions within an entry feed rt_seq_make and rt_id_make, which keep 16 bits of them. */
#define ENGINE_POSITIONS_MAX 0xffffu
/* The timers an entry's commands set that are alike (due time, actor type, op, args) are
 * stored as one record listing their actors: an entry of order.create commands sets one
 * expiry per order, all alike, and one key instead of one per order is a large share of what
 * the store writes, flushes and merges (docs/benchmarks.md, optimisation log). Bounded so
 * that a record stays small. */
#define ENGINE_TIMER_TARGETS_MAX 64u
/* The keys and args of an entry's timers, held until its end. */
#define ENGINE_TIMER_BYTES_MAX (64u * 1024u * 1024u)
/* The id index (rt_ctx_index_id): the ids an entry made and indexed under one prefix are
 * stored in one record per 64 positions of the entry, written at its end, instead of one
 * index key per id (docs/storage.md). */
#define ENGINE_ID_BUCKET_SHIFT 6u
#define ENGINE_ID_BUCKET_MAX   (1u << ENGINE_ID_BUCKET_SHIFT)
/* The prefixes and actor keys of an entry's indexed ids, held until its end. */
#define ENGINE_ID_BYTES_MAX (16u * 1024u * 1024u)
/* An id index record's key: 0 · prefix · raft index(8) · bucket(2). The leading 0 keeps it
 * apart from the index keys actors choose, which may not start with it. */
#define ENGINE_ID_KEY_EXTRA 11u

struct rt_actor_ctx {
    struct rt_engine *engine;
    const struct rt_actor_type *type;
    const uint8_t *key; /* Actor key view (command bytes or message queue). */
    uint32_t key_len;
    uint8_t state_key[RT_KEY_BYTES_MAX];
    size_t state_key_len;
    uint8_t origin;
    uint32_t depth;   /* 0 for the command itself, 1.. for messages it caused. */
    uint32_t effects; /* Effects produced by this handler, <= RT_EFFECTS_PER_COMMAND_MAX. */
    bool readonly;
    char fail_msg[ENGINE_FAIL_MSG_BYTES];
};

/* A timer set by one of the entry's commands; its key and args are in timer_bytes. */
struct engine_timer {
    uint64_t due_ms;
    uint32_t position; /* Its sequence within the entry (the record's key takes the first's). */
    uint32_t bytes_off;
    uint32_t key_len;
    uint32_t args_len;
    uint8_t type;
    uint8_t op;
};

/* An id indexed by one of the entry's commands; its prefix and actor key are in id_bytes. */
struct engine_id {
    uint32_t position; /* The id's position in the entry. */
    uint32_t bytes_off;
    uint8_t prefix_len;
    uint8_t key_len;
};

/* Engine-private per-entry state kept outside the public struct. */
struct rt_engine_entry {
    uint64_t index;
    uint64_t now_ms;
    uint32_t position;           /* Next position for ids, timers, outbox records. */
    int fatal;                   /* A store error: the whole entry fails. */
    struct rt_buf handler_reply; /* The running handler's reply. */
    struct rt_buf state_scratch; /* rt_ctx_state_buf: a state being encoded (no malloc each). */
    struct rt_buf messages;      /* Same-shard message queue of the running command. */
    struct rt_buf state_copy;    /* The running handler's view of its own state. */
    struct rt_buf record;        /* Encoding scratch for timers and outbox records. */
    struct rt_buf message_args;  /* The running message's args, copied out of the queue. */
    /* The entry's batched read of its actors' states (engine_prefetch_states): the keys, in
     * one arena, and the ones the store did not hold, as deletions in a write set (its hash
     * table is the lookup needed). Empty outside rt_engine_apply. */
    struct rt_buf prefetch_arena;
    const uint8_t **prefetch_keys; /* RT_BATCH_COMMANDS_MAX each. */
    size_t *prefetch_key_lens;
    struct rt_writeset store_absent;
    /* The timers the entry's commands set, written as records at its end (engine_put_timers)
     * so that alike ones share one; a failed command's are dropped with its writes. */
    struct engine_timer *timers;
    uint32_t timer_count;
    uint32_t timer_cap;
    struct rt_buf timer_bytes;
    struct rt_buf fired; /* The record of the TIMER command being applied. */
    /* The ids the entry's commands indexed, written as records at its end (engine_put_ids). */
    struct engine_id *ids;
    uint32_t id_count;
    uint32_t id_cap;
    struct rt_buf id_bytes;
    struct rt_buf id_record; /* An id index record being read. */
};

/* Where a command's effects start: its writes, the timers it set and the ids it indexed
 * (engine_rollback). */
struct engine_mark {
    uint32_t writes;
    uint32_t timers;
    uint32_t ids;
};

static struct rt_engine_entry *entry_of(struct rt_engine *engine)
{
    return engine->entry;
}

/* ---- Reading through the layers: this entry's writes, the cache, the store ---- */

/* Append the value of (cf, key) to @out. RT_ENOTFOUND, or a store error (fatal). */
static int engine_read(struct rt_engine *engine, enum rt_cf cf, const uint8_t *key, size_t key_len,
                       struct rt_buf *out)
{
    const uint8_t *val;
    size_t val_len;
    switch (rt_writeset_lookup(&engine->ws, cf, key, key_len, &val, &val_len)) {
    case RT_LOOKUP_PUT:
        return rt_buf_append(out, val, val_len);
    case RT_LOOKUP_DELETED:
        return RT_ENOTFOUND;
    case RT_LOOKUP_ABSENT:
        break;
    }
    /* Known absent from the store by the entry's batched read (and so not in the cache, which
     * changes only after a commit). */
    if (cf == RT_CF_STATE && rt_writeset_lookup(&entry_of(engine)->store_absent, cf, key, key_len,
                                                &val, &val_len) == RT_LOOKUP_DELETED) {
        return RT_ENOTFOUND;
    }
    struct rt_cache *cache = cf == RT_CF_STATE ? engine->config.cache : NULL;
    if (cache != NULL && rt_cache_get(cache, key, key_len, &val, &val_len) == 0) {
        return rt_buf_append(out, val, val_len);
    }
    struct rt_store *store = engine->config.store;
    size_t mark = out->len;
    int rv = store->ops->get(store, cf, key, key_len, out);
    if (rv == 0 && cache != NULL) {
        rt_cache_put(cache, key, key_len, out->data + mark, out->len - mark);
    }
    if (rv != 0 && rv != RT_ENOTFOUND) {
        RT_ERROR("store read failed in %s: %s", rt_cf_name(cf), rt_strerror(rv));
        entry_of(engine)->fatal = rv;
    }
    return rv;
}

/* ---- Handler context ---- */

uint64_t rt_ctx_now_ms(const struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    return entry_of(ctx->engine)->now_ms;
}

uint16_t rt_ctx_shard(const struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    return ctx->engine->config.shard;
}

uint16_t rt_ctx_shard_count(const struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    return ctx->engine->config.shard_count;
}

const uint8_t *rt_ctx_key(const struct rt_actor_ctx *ctx, size_t *len)
{
    assert(ctx != NULL && len != NULL);
    *len = ctx->key_len;
    return ctx->key;
}

uint8_t rt_ctx_origin(const struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    return ctx->origin;
}

const uint8_t *rt_ctx_state(struct rt_actor_ctx *ctx, size_t *len)
{
    assert(ctx != NULL && len != NULL);
    struct rt_buf *copy = &entry_of(ctx->engine)->state_copy;
    rt_buf_reset(copy);
    *len = 0;
    int rv = engine_read(ctx->engine, RT_CF_STATE, ctx->state_key, ctx->state_key_len, copy);
    if (rv != 0) {
        return NULL; /* Absent (or a store error, which fails the entry anyway). */
    }
    *len = copy->len;
    /* An empty value is a valid state; return a non-NULL pointer for it. */
    return copy->data != NULL ? copy->data : (const uint8_t *)"";
}

int rt_ctx_peek(struct rt_actor_ctx *ctx, uint8_t type, const uint8_t *key, size_t key_len,
                struct rt_buf *out)
{
    assert(ctx != NULL && out != NULL);
    struct rt_engine *engine = ctx->engine;
    if (key_len == 0 || key_len > RT_ACTOR_KEY_BYTES_MAX || type == 0 ||
        type >= RT_ACTOR_TYPES_MAX) {
        return RT_EINVAL;
    }
    if (rt_shard_of(key, key_len, engine->config.shard_count) != engine->config.shard) {
        return RT_EFORBIDDEN;
    }
    uint8_t state_key[RT_KEY_BYTES_MAX];
    size_t n = rt_key_state(state_key, engine->config.shard, type, key, key_len);
    return engine_read(engine, RT_CF_STATE, state_key, n, out);
}

static int engine_index_read(struct rt_engine *engine, const uint8_t *index_key,
                             size_t index_key_len, struct rt_buf *out, bool in_entry);

int rt_ctx_index_get(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len,
                     struct rt_buf *out)
{
    assert(ctx != NULL && out != NULL);
    return engine_index_read(ctx->engine, index_key, index_key_len, out, true);
}

/* Count one effect against the handler's budget. */
static int ctx_effect(struct rt_actor_ctx *ctx)
{
    assert(!ctx->readonly); /* A read-only op that writes is a bug in the actor. */
    if (ctx->readonly) {
        return RT_EINTERNAL;
    }
    if (ctx->effects >= RT_EFFECTS_PER_COMMAND_MAX) {
        return RT_ETOOLARGE;
    }
    ctx->effects++;
    return 0;
}

/* The next position of the entry, for ids and sequence numbers. */
static int ctx_position(struct rt_actor_ctx *ctx, uint32_t *position)
{
    struct rt_engine_entry *entry = entry_of(ctx->engine);
    if (entry->position >= ENGINE_POSITIONS_MAX) {
        return RT_ETOOLARGE;
    }
    *position = entry->position++;
    return 0;
}

int rt_ctx_set_state(struct rt_actor_ctx *ctx, const uint8_t *state, size_t len)
{
    assert(ctx != NULL);
    assert(state != NULL || len == 0);
    assert(!ctx->readonly);
    if (ctx->readonly) {
        return RT_EINTERNAL;
    }
    if (len > RT_ACTOR_STATE_BYTES_MAX) {
        return RT_ETOOLARGE;
    }
    return rt_writeset_put(&ctx->engine->ws, RT_CF_STATE, ctx->state_key, ctx->state_key_len, state,
                           len);
}

int rt_ctx_delete_state(struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    assert(!ctx->readonly);
    if (ctx->readonly) {
        return RT_EINTERNAL;
    }
    return rt_writeset_del(&ctx->engine->ws, RT_CF_STATE, ctx->state_key, ctx->state_key_len);
}

struct rt_buf *rt_ctx_reply(struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    return &entry_of(ctx->engine)->handler_reply;
}

bool rt_ctx_reply_wanted(struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    return ctx->readonly || ctx->engine->replies_wanted;
}

struct rt_buf *rt_ctx_state_buf(struct rt_actor_ctx *ctx)
{
    assert(ctx != NULL);
    struct rt_buf *buf = &entry_of(ctx->engine)->state_scratch;
    rt_buf_reset(buf);
    return buf;
}

void rt_ctx_fail(struct rt_actor_ctx *ctx, const char *fmt, ...)
{
    assert(ctx != NULL && fmt != NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->fail_msg, sizeof(ctx->fail_msg), fmt, ap);
    va_end(ap);
}

size_t rt_ctx_new_id(struct rt_actor_ctx *ctx, char kind, char *out)
{
    assert(ctx != NULL && out != NULL);
    assert(!ctx->readonly);
    uint32_t position;
    if (ctx_position(ctx, &position) != 0) {
        out[0] = '\0';
        return 0;
    }
    struct rt_engine *engine = ctx->engine;
    return rt_id_make(out, kind, engine->config.shard, entry_of(engine)->index, position);
}

/* Validate an index key, count the effect and build the stored key into @key. */
static int ctx_index_key(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len,
                         uint8_t *key, size_t *key_len)
{
    assert(ctx != NULL && key != NULL);
    if (index_key == NULL || index_key_len == 0 || index_key_len > RT_INDEX_KEY_BYTES_MAX ||
        index_key[0] == 0) {
        return RT_EINVAL; /* A leading 0 is the id index's (rt_ctx_index_id). */
    }
    int rv = ctx_effect(ctx);
    if (rv != 0) {
        return rv;
    }
    *key_len = rt_key_index(key, ctx->engine->config.shard, index_key, index_key_len);
    return 0;
}

int rt_ctx_index_put(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len,
                     const uint8_t *val, size_t val_len)
{
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t n;
    int rv = ctx_index_key(ctx, index_key, index_key_len, key, &n);
    return rv != 0 ? rv : rt_writeset_put(&ctx->engine->ws, RT_CF_INDEX, key, n, val, val_len);
}

int rt_ctx_index_del(struct rt_actor_ctx *ctx, const uint8_t *index_key, size_t index_key_len)
{
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t n;
    int rv = ctx_index_key(ctx, index_key, index_key_len, key, &n);
    return rv != 0 ? rv : rt_writeset_del(&ctx->engine->ws, RT_CF_INDEX, key, n);
}

/* Make room for one more item in @items (@cap of @item_size bytes, @count used): doubled, from
 * 64. Every timer and every indexed id takes a position, so ENGINE_POSITIONS_MAX bounds it. */
static int grow_items(void **items, uint32_t *cap, uint32_t count, size_t item_size)
{
    if (count < *cap) {
        return 0;
    }
    uint32_t more = *cap == 0 ? 64u : *cap * 2u;
    void *grown = realloc(*items, (size_t)more * item_size);
    if (grown == NULL) {
        return RT_ENOMEM;
    }
    *items = grown;
    *cap = more;
    return 0;
}

int rt_ctx_timer_set(struct rt_actor_ctx *ctx, uint64_t due_ms, uint8_t op, const uint8_t *args,
                     size_t args_len)
{
    assert(ctx != NULL);
    assert(args != NULL || args_len == 0);
    if (op >= ctx->type->op_count || args_len > RT_COMMAND_ARGS_BYTES_MAX) {
        return RT_EINVAL;
    }
    uint32_t position;
    int rv = ctx_effect(ctx);
    if (rv != 0 || (rv = ctx_position(ctx, &position)) != 0) {
        return rv;
    }
    struct rt_engine_entry *entry = entry_of(ctx->engine);
    if (grow_items((void **)&entry->timers, &entry->timer_cap, entry->timer_count,
                   sizeof(*entry->timers)) != 0) {
        return RT_ENOMEM;
    }
    size_t bytes_off = entry->timer_bytes.len;
    rv = rt_buf_append(&entry->timer_bytes, ctx->key, ctx->key_len);
    if (rv == 0 && args_len > 0) {
        rv = rt_buf_append(&entry->timer_bytes, args, args_len);
    }
    if (rv != 0) {
        rt_buf_truncate(&entry->timer_bytes, bytes_off);
        return rv == RT_ENOMEM ? RT_ENOMEM : RT_ETOOLARGE;
    }
    entry->timers[entry->timer_count++] = (struct engine_timer){
        .due_ms = due_ms,
        .position = position,
        .bytes_off = (uint32_t)bytes_off,
        .key_len = ctx->key_len,
        .args_len = (uint32_t)args_len,
        .type = ctx->type->id,
        .op = op,
    };
    return 0;
}

/* Put entry->record, just encoded by @w (whose error, if any, is returned instead), under
 * store key @key of @cf in the entry's writes. */
static int engine_put_record(struct rt_engine *engine, const struct rt_mp_writer *w, enum rt_cf cf,
                             const uint8_t *key, size_t key_len)
{
    if (rt_mp_writer_error(w) != 0) {
        return rt_mp_writer_error(w);
    }
    const struct rt_buf *record = &entry_of(engine)->record;
    return rt_writeset_put(&engine->ws, cf, key, key_len, record->data, record->len);
}

/* 0 when timers @a and @b are alike (due time, actor type, op, args) and may share a record;
 * otherwise their order. */
static int timers_order(const struct engine_timer *a, const struct engine_timer *b,
                        const uint8_t *bytes)
{
    if (a->due_ms != b->due_ms) {
        return a->due_ms < b->due_ms ? -1 : 1;
    }
    uint64_t ka = (uint64_t)a->type << 40 | (uint64_t)a->op << 32 | a->args_len;
    uint64_t kb = (uint64_t)b->type << 40 | (uint64_t)b->op << 32 | b->args_len;
    if (ka != kb) {
        return ka < kb ? -1 : 1;
    }
    return a->args_len == 0 ? 0
                            : memcmp(bytes + a->bytes_off + a->key_len,
                                     bytes + b->bytes_off + b->key_len, a->args_len);
}

/* engine_put_timers' sort: alike timers together, each group by position. */
static int timers_compare(const void *pa, const void *pb, void *bytes)
{
    const struct engine_timer *a = pa, *b = pb;
    int c = timers_order(a, b, bytes);
    return c != 0 ? c : (a->position < b->position ? -1 : a->position > b->position);
}

/* Write the entry's timers: alike ones in one record of up to ENGINE_TIMER_TARGETS_MAX actors
 * by position, under the key of the first of them (positions are unique, so are the keys). */
static int engine_put_timers(struct rt_engine *engine)
{
    struct rt_engine_entry *entry = entry_of(engine);
    const uint8_t *bytes = entry->timer_bytes.data;
    if (entry->timer_count > 1) {
        qsort_r(entry->timers, entry->timer_count, sizeof(*entry->timers), timers_compare,
                (void *)bytes);
    }
    uint32_t i = 0;
    while (i < entry->timer_count) {
        const struct engine_timer *first = &entry->timers[i];
        uint32_t end = i + 1;
        while (end < entry->timer_count && end - i < ENGINE_TIMER_TARGETS_MAX &&
               timers_order(first, &entry->timers[end], bytes) == 0) {
            end++;
        }
        rt_buf_reset(&entry->record);
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, &entry->record);
        rt_mp_write_array(&w, 4);
        rt_mp_write_uint(&w, first->type);
        rt_mp_write_array(&w, end - i);
        for (uint32_t m = i; m < end; m++) {
            const struct engine_timer *t = &entry->timers[m];
            rt_mp_write_bin(&w, bytes + t->bytes_off, t->key_len);
        }
        rt_mp_write_uint(&w, first->op);
        rt_mp_write_bin(&w, bytes + first->bytes_off + first->key_len, first->args_len);
        uint8_t key[RT_KEY_BYTES_MAX];
        size_t n = rt_key_timer(key, engine->config.shard, first->due_ms,
                                rt_seq_make(entry->index, first->position));
        int rv = engine_put_record(engine, &w, RT_CF_TIMERS, key, n);
        if (rv != 0) {
            return rv;
        }
        i = end;
    }
    return 0;
}

static void engine_drop_timers(struct rt_engine_entry *entry, uint32_t count)
{
    if (count < entry->timer_count) {
        rt_buf_truncate(&entry->timer_bytes, entry->timers[count].bytes_off);
        entry->timer_count = count;
    }
}

static void engine_drop_ids(struct rt_engine_entry *entry, uint32_t count)
{
    if (count < entry->id_count) {
        rt_buf_truncate(&entry->id_bytes, entry->ids[count].bytes_off);
        entry->id_count = count;
    }
}

static struct engine_mark engine_mark(struct rt_engine *engine)
{
    const struct rt_engine_entry *entry = entry_of(engine);
    return (struct engine_mark){.writes = rt_writeset_mark(&engine->ws),
                                .timers = entry->timer_count,
                                .ids = entry->id_count};
}

/* Forget what a failed command did since @mark: its writes, its timers, its indexed ids. */
static void engine_rollback(struct rt_engine *engine, struct engine_mark mark)
{
    rt_writeset_rollback(&engine->ws, mark.writes);
    engine_drop_timers(entry_of(engine), mark.timers);
    engine_drop_ids(entry_of(engine), mark.ids);
}

/* ---- The id index ---- */

/* The store key of the id index record holding (@prefix, @raft_index, @position). */
static size_t id_record_key(uint8_t *out, uint16_t shard, const uint8_t *prefix, size_t prefix_len,
                            uint64_t raft_index, uint32_t position)
{
    uint8_t index_key[RT_INDEX_KEY_BYTES_MAX];
    assert(prefix_len + ENGINE_ID_KEY_EXTRA <= sizeof(index_key));
    index_key[0] = 0;
    memcpy(index_key + 1, prefix, prefix_len);
    rt_put_be64(index_key + 1 + prefix_len, raft_index);
    rt_put_be16(index_key + 9 + prefix_len, (uint16_t)(position >> ENGINE_ID_BUCKET_SHIFT));
    return rt_key_index(out, shard, index_key, prefix_len + ENGINE_ID_KEY_EXTRA);
}

int rt_ctx_index_id(struct rt_actor_ctx *ctx, const uint8_t *prefix, size_t prefix_len,
                    const char *id, size_t id_len)
{
    assert(ctx != NULL);
    struct rt_engine *engine = ctx->engine;
    struct rt_engine_entry *entry = entry_of(engine);
    struct rt_id parsed;
    if (prefix == NULL || prefix_len == 0 || prefix[0] == 0 ||
        prefix_len + RT_ID_LEN > RT_INDEX_KEY_BYTES_MAX || !rt_id_parse(id, id_len, &parsed) ||
        parsed.shard != engine->config.shard || parsed.raft_index != entry->index ||
        ctx->key_len > UINT8_MAX) {
        return RT_EINVAL; /* Only an id this entry made can go in its records. */
    }
    int rv = ctx_effect(ctx);
    if (rv != 0) {
        return rv;
    }
    if (grow_items((void **)&entry->ids, &entry->id_cap, entry->id_count, sizeof(*entry->ids)) !=
        0) {
        return RT_ENOMEM;
    }
    size_t bytes_off = entry->id_bytes.len;
    rv = rt_buf_append(&entry->id_bytes, prefix, prefix_len);
    if (rv == 0) {
        rv = rt_buf_append(&entry->id_bytes, ctx->key, ctx->key_len);
    }
    if (rv != 0) {
        rt_buf_truncate(&entry->id_bytes, bytes_off);
        return rv == RT_ENOMEM ? RT_ENOMEM : RT_ETOOLARGE;
    }
    entry->ids[entry->id_count++] = (struct engine_id){
        .position = parsed.position,
        .bytes_off = (uint32_t)bytes_off,
        .prefix_len = (uint8_t)prefix_len,
        .key_len = (uint8_t)ctx->key_len,
    };
    return 0;
}

/* 0 when ids @a and @b go in one record (one prefix, one range of 64 positions); otherwise
 * their order. */
static int ids_order(const struct engine_id *a, const struct engine_id *b, const uint8_t *bytes)
{
    size_t common = a->prefix_len < b->prefix_len ? a->prefix_len : b->prefix_len;
    int c = memcmp(bytes + a->bytes_off, bytes + b->bytes_off, common);
    if (c != 0 || a->prefix_len != b->prefix_len) {
        return c != 0 ? c : (a->prefix_len < b->prefix_len ? -1 : 1);
    }
    uint32_t bucket_a = a->position >> ENGINE_ID_BUCKET_SHIFT;
    uint32_t bucket_b = b->position >> ENGINE_ID_BUCKET_SHIFT;
    return bucket_a < bucket_b ? -1 : bucket_a > bucket_b;
}

/* engine_put_ids' sort: a record's ids together, by position, then in the order they were
 * indexed (bytes_off grows with it). */
static int ids_compare(const void *pa, const void *pb, void *bytes)
{
    const struct engine_id *a = pa, *b = pb;
    int c = ids_order(a, b, bytes);
    if (c != 0 || a->position != b->position) {
        return c != 0 ? c : (a->position < b->position ? -1 : 1);
    }
    return a->bytes_off < b->bytes_off ? -1 : a->bytes_off > b->bytes_off;
}

/* Write the entry's indexed ids: a record per prefix and 64 positions, listing
 * [position, actor key] pairs by position. Sorted first, so that each record is written once
 * with all its ids, wherever in the entry they were indexed; an id indexed twice under one
 * prefix keeps the first. */
static int engine_put_ids(struct rt_engine *engine)
{
    struct rt_engine_entry *entry = entry_of(engine);
    const uint8_t *bytes = entry->id_bytes.data;
    if (entry->id_count > 1) {
        qsort_r(entry->ids, entry->id_count, sizeof(*entry->ids), ids_compare, (void *)bytes);
    }
    uint32_t i = 0;
    while (i < entry->id_count) {
        const struct engine_id *first = &entry->ids[i];
        uint32_t members[ENGINE_ID_BUCKET_MAX];
        uint32_t count = 0;
        uint32_t j = i;
        for (; j < entry->id_count && ids_order(first, &entry->ids[j], bytes) == 0; j++) {
            const struct engine_id *d = &entry->ids[j];
            if (count == 0 || entry->ids[members[count - 1]].position != d->position) {
                assert(count < ENGINE_ID_BUCKET_MAX); /* 64 distinct positions per record. */
                members[count++] = j;
            }
        }
        rt_buf_reset(&entry->record);
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, &entry->record);
        rt_mp_write_array(&w, count);
        for (uint32_t m = 0; m < count; m++) {
            const struct engine_id *d = &entry->ids[members[m]];
            rt_mp_write_array(&w, 2);
            rt_mp_write_uint(&w, d->position);
            rt_mp_write_bin(&w, bytes + d->bytes_off + d->prefix_len, d->key_len);
        }
        uint8_t key[RT_KEY_BYTES_MAX];
        size_t n = id_record_key(key, engine->config.shard, bytes + first->bytes_off,
                                 first->prefix_len, entry->index, first->position);
        int rv = engine_put_record(engine, &w, RT_CF_INDEX, key, n);
        if (rv != 0) {
            return rv;
        }
        i = j;
    }
    return 0;
}

/* Append to @out the actor key that id index record @record lists at @position. */
static int id_record_find(const struct rt_buf *record, uint32_t position, struct rt_buf *out)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, record->data, record->len);
    uint32_t count;
    if (rt_mp_read_array(&r, &count) != 0 || count == 0 || count > ENGINE_ID_BUCKET_MAX) {
        return RT_ECORRUPT;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t fields, key_len;
        uint64_t at;
        const uint8_t *key;
        if (rt_mp_read_array(&r, &fields) != 0 || fields != 2 || rt_mp_read_uint(&r, &at) != 0 ||
            rt_mp_read_bin(&r, &key, &key_len) != 0 || key_len == 0 ||
            key_len > RT_ACTOR_KEY_BYTES_MAX) {
            return RT_ECORRUPT;
        }
        if (at == position) {
            return rt_buf_append(out, key, key_len);
        }
    }
    return RT_ENOTFOUND;
}

/* Read store key @key of the index family into @out: through the entry's writes when
 * @in_entry, else committed state only. */
static int index_family_get(struct rt_engine *engine, const uint8_t *key, size_t key_len,
                            struct rt_buf *out, bool in_entry)
{
    struct rt_store *store = engine->config.store;
    return in_entry ? engine_read(engine, RT_CF_INDEX, key, key_len, out)
                    : store->ops->get(store, RT_CF_INDEX, key, key_len, out);
}

/* Read index @index_key into @out. When it is a prefix followed by an id of this shard, the id
 * index first (the ids this entry indexed, when @in_entry, then the records), then a key of its
 * own (ids indexed one key each, before the id index); otherwise its own key. @in_entry:
 * inside rt_engine_apply (this entry's writes and indexed ids count); otherwise committed state
 * only. */
static int engine_index_read(struct rt_engine *engine, const uint8_t *index_key,
                             size_t index_key_len, struct rt_buf *out, bool in_entry)
{
    if (index_key == NULL || index_key_len == 0 || index_key_len > RT_INDEX_KEY_BYTES_MAX ||
        index_key[0] == 0) {
        return RT_EINVAL;
    }
    uint16_t shard = engine->config.shard;
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t prefix_len = index_key_len - RT_ID_LEN;
    struct rt_id id;
    if (index_key_len > RT_ID_LEN &&
        rt_id_parse((const char *)index_key + prefix_len, RT_ID_LEN, &id) && id.shard == shard) {
        struct rt_engine_entry *entry = entry_of(engine);
        for (uint32_t i = 0; in_entry && id.raft_index == entry->index && i < entry->id_count;
             i++) {
            /* Indexed by this entry: not in a record until its end. */
            const struct engine_id *d = &entry->ids[i];
            const uint8_t *bytes = entry->id_bytes.data + d->bytes_off;
            if (d->position == id.position && d->prefix_len == prefix_len &&
                memcmp(bytes, index_key, prefix_len) == 0) {
                return rt_buf_append(out, bytes + prefix_len, d->key_len);
            }
        }
        size_t n = id_record_key(key, shard, index_key, prefix_len, id.raft_index, id.position);
        struct rt_buf *record = &entry->id_record;
        rt_buf_reset(record);
        int rv = index_family_get(engine, key, n, record, in_entry);
        if (rv == 0) {
            rv = id_record_find(record, id.position, out);
        }
        if (rv != RT_ENOTFOUND) {
            return rv;
        }
    }
    size_t n = rt_key_index(key, shard, index_key, index_key_len);
    return index_family_get(engine, key, n, out, in_entry);
}

/* A timer record, decoded and checked: its actor type, op, args, and its actors' keys (one,
 * or a list when alike timers were stored together), read in turn with timer_record_key. */
struct timer_record {
    uint8_t type;
    uint8_t op;
    const uint8_t *args;
    uint32_t args_len;
    uint32_t key_count;
    struct rt_mp_reader keys; /* At the first key. */
};

static int timer_record_decode(const uint8_t *val, size_t len, struct timer_record *rec)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, val, len);
    uint32_t fields;
    uint64_t type, op;
    if (rt_mp_read_array(&r, &fields) != 0 || fields != 4 || rt_mp_read_uint(&r, &type) != 0 ||
        type > UINT8_MAX) {
        return RT_ECORRUPT;
    }
    rec->key_count = 1; /* A record of one timer has the key itself, not a list. */
    if (rt_mp_peek(&r) == RT_MP_ARRAY &&
        (rt_mp_read_array(&r, &rec->key_count) != 0 || rec->key_count == 0 ||
         rec->key_count > ENGINE_TIMER_TARGETS_MAX)) {
        return RT_ECORRUPT;
    }
    rec->keys = r;
    for (uint32_t i = 0; i < rec->key_count; i++) {
        const uint8_t *key;
        uint32_t key_len;
        if (rt_mp_read_bin(&r, &key, &key_len) != 0 || key_len == 0 ||
            key_len > RT_ACTOR_KEY_BYTES_MAX) {
            return RT_ECORRUPT;
        }
    }
    const uint8_t *args;
    uint32_t args_len;
    if (rt_mp_read_uint(&r, &op) != 0 || op > UINT8_MAX ||
        rt_mp_read_bin(&r, &args, &args_len) != 0 || args_len > RT_COMMAND_ARGS_BYTES_MAX) {
        return RT_ECORRUPT;
    }
    rec->type = (uint8_t)type;
    rec->op = (uint8_t)op;
    rec->args = args_len > 0 ? args : NULL;
    rec->args_len = args_len;
    return 0;
}

/* The next of the record's keys (timer_record_decode checked them all). */
static void timer_record_key(struct timer_record *rec, const uint8_t **key, uint32_t *key_len)
{
    int rv = rt_mp_read_bin(&rec->keys, key, key_len);
    assert(rv == 0);
    (void)rv;
}

/* Put an outbox record (already encoded in entry->record) under the next sequence. */
static int ctx_outbox_put(struct rt_actor_ctx *ctx, uint32_t position)
{
    struct rt_engine *engine = ctx->engine;
    struct rt_engine_entry *entry = entry_of(engine);
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t n = rt_key_outbox(key, engine->config.shard, rt_seq_make(entry->index, position));
    return rt_writeset_put(&engine->ws, RT_CF_OUTBOX, key, n, entry->record.data,
                           entry->record.len);
}

int rt_ctx_send(struct rt_actor_ctx *ctx, uint8_t type, const uint8_t *key, size_t key_len,
                uint8_t op, const uint8_t *args, size_t args_len)
{
    assert(ctx != NULL);
    assert(args != NULL || args_len == 0);
    struct rt_engine *engine = ctx->engine;
    const struct rt_actor_type *target = rt_registry_type(engine->config.registry, type);
    if (target == NULL || op >= target->op_count || key == NULL || key_len == 0 ||
        key_len > RT_ACTOR_KEY_BYTES_MAX || args_len > RT_COMMAND_ARGS_BYTES_MAX) {
        return RT_EINVAL;
    }
    int rv = ctx_effect(ctx);
    if (rv != 0) {
        return rv;
    }
    struct rt_engine_entry *entry = entry_of(engine);
    uint16_t target_shard = rt_shard_of(key, key_len, engine->config.shard_count);
    if (target_shard == engine->config.shard) {
        /* Queue: [depth u8][type u8][op u8][key_len be32][args_len be32][key][args]. */
        if (ctx->depth + 1 > RT_MESSAGE_DEPTH_MAX) {
            return RT_ETOOLARGE; /* A message loop; fail the whole chain. */
        }
        uint8_t head[11] = {(uint8_t)(ctx->depth + 1), type, op};
        rt_put_be32(head + 3, (uint32_t)key_len);
        rt_put_be32(head + 7, (uint32_t)args_len);
        size_t mark = entry->messages.len;
        if ((rv = rt_buf_append(&entry->messages, head, sizeof(head))) != 0 ||
            (rv = rt_buf_append(&entry->messages, key, key_len)) != 0 ||
            (rv = rt_buf_append(&entry->messages, args, args_len)) != 0) {
            rt_buf_truncate(&entry->messages, mark);
            return rv;
        }
        return 0;
    }
    uint32_t position;
    if ((rv = ctx_position(ctx, &position)) != 0) {
        return rv;
    }
    rt_buf_reset(&entry->record);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &entry->record);
    rt_mp_write_array(&w, 6);
    rt_mp_write_cstr(&w, "msg");
    rt_mp_write_uint(&w, target_shard);
    rt_mp_write_uint(&w, type);
    rt_mp_write_bin(&w, key, key_len);
    rt_mp_write_uint(&w, op);
    rt_mp_write_bin(&w, args, args_len);
    if (rt_mp_writer_error(&w) != 0) {
        return rt_mp_writer_error(&w);
    }
    return ctx_outbox_put(ctx, position);
}

int rt_ctx_external(struct rt_actor_ctx *ctx, const char *kind, const uint8_t *payload,
                    size_t payload_len)
{
    assert(ctx != NULL && kind != NULL);
    assert(payload != NULL || payload_len == 0);
    size_t kind_len = strlen(kind);
    if (kind_len == 0 || kind_len > 32 || payload_len > RT_COMMAND_ARGS_BYTES_MAX) {
        return RT_EINVAL;
    }
    uint32_t position;
    int rv = ctx_effect(ctx);
    if (rv != 0 || (rv = ctx_position(ctx, &position)) != 0) {
        return rv;
    }
    struct rt_engine_entry *entry = entry_of(ctx->engine);
    rt_buf_reset(&entry->record);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &entry->record);
    rt_mp_write_array(&w, 3);
    rt_mp_write_cstr(&w, "ext");
    rt_mp_write_str(&w, kind, kind_len);
    rt_mp_write_bin(&w, payload, payload_len);
    if (rt_mp_writer_error(&w) != 0) {
        return rt_mp_writer_error(&w);
    }
    return ctx_outbox_put(ctx, position);
}

/* ---- Running commands ---- */

/* Run one handler for actor (type, key). */
static int engine_run_handler(struct rt_engine *engine, struct rt_actor_ctx *ctx,
                              const struct rt_actor_type *type, uint8_t op, const uint8_t *key,
                              uint32_t key_len, const uint8_t *args, uint32_t args_len)
{
    assert(type != NULL);
    assert(key_len >= 1 && key_len <= RT_ACTOR_KEY_BYTES_MAX);
    if (op >= type->op_count) {
        rt_ctx_fail(ctx, "%s has no operation %u", type->name, (unsigned)op);
        return RT_EINVAL;
    }
    ctx->type = type;
    ctx->key = key;
    ctx->key_len = key_len;
    ctx->state_key_len = rt_key_state(ctx->state_key, engine->config.shard, type->id, key, key_len);
    ctx->effects = 0;
    rt_buf_reset(&entry_of(engine)->handler_reply);
    int rv = type->ops[op].fn(ctx, args, args_len);
    if (rv == 0 && entry_of(engine)->handler_reply.len > RT_REPLY_BYTES_MAX) {
        rv = RT_ETOOLARGE;
    }
    return entry_of(engine)->fatal != 0 ? entry_of(engine)->fatal : rv;
}

/* Apply the same-shard messages queued by the command, in order; each may queue more. */
static int engine_run_messages(struct rt_engine *engine, struct rt_actor_ctx *ctx)
{
    struct rt_engine_entry *entry = entry_of(engine);
    size_t offset = 0;
    while (offset < entry->messages.len) {
        const uint8_t *head = entry->messages.data + offset;
        uint32_t key_len = rt_get_be32(head + 3);
        uint32_t args_len = rt_get_be32(head + 7);
        /* Copy out: the handler may append to the queue and move it. */
        uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
        assert(key_len <= sizeof(key));
        memcpy(key, head + 11, key_len);
        struct rt_buf *args = &entry->message_args;
        rt_buf_reset(args);
        int rv = rt_buf_append(args, head + 11 + key_len, args_len);
        uint8_t type_id = head[1], op = head[2];
        ctx->depth = head[0];
        offset += 11u + key_len + args_len;
        if (rv == 0) {
            const struct rt_actor_type *type = rt_registry_type(engine->config.registry, type_id);
            assert(type != NULL); /* Checked by rt_ctx_send. */
            ctx->origin = RT_ORIGIN_MESSAGE;
            rv = engine_run_handler(engine, ctx, type, op, key, key_len, args->data, args_len);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* For MESSAGE and TIMER commands: 0 if it should run, RT_EDUPLICATE if it ran already.
 * Consuming it (moving the inbox mark, deleting the timer) is done by engine_consume. */
static int engine_check_fresh(struct rt_engine *engine, const struct rt_command *cmd)
{
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t n;
    struct rt_buf *copy = &entry_of(engine)->state_copy;
    rt_buf_reset(copy);
    if (cmd->origin == RT_ORIGIN_MESSAGE) {
        n = rt_key_meta_inbox(key, engine->config.shard, cmd->source_shard);
        int rv = engine_read(engine, RT_CF_META, key, n, copy);
        if (rv == RT_ENOTFOUND) {
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        if (copy->len != 8) {
            return RT_ECORRUPT;
        }
        return cmd->source_seq > rt_get_be64(copy->data) ? 0 : RT_EDUPLICATE;
    }
    if (cmd->origin == RT_ORIGIN_TIMER) {
        /* Kept for engine_run_timer, which runs the actors the record lists. */
        struct rt_buf *fired = &entry_of(engine)->fired;
        rt_buf_reset(fired);
        n = rt_key_timer(key, engine->config.shard, cmd->timer_due_ms, cmd->source_seq);
        int rv = engine_read(engine, RT_CF_TIMERS, key, n, fired);
        return rv == RT_ENOTFOUND ? RT_EDUPLICATE : rv;
    }
    return 0;
}

static int engine_consume(struct rt_engine *engine, const struct rt_command *cmd)
{
    uint8_t key[RT_KEY_BYTES_MAX];
    if (cmd->origin == RT_ORIGIN_MESSAGE) {
        uint8_t seq[8];
        rt_put_be64(seq, cmd->source_seq);
        size_t n = rt_key_meta_inbox(key, engine->config.shard, cmd->source_shard);
        return rt_writeset_put(&engine->ws, RT_CF_META, key, n, seq, sizeof(seq));
    }
    if (cmd->origin == RT_ORIGIN_TIMER) {
        size_t n = rt_key_timer(key, engine->config.shard, cmd->timer_due_ms, cmd->source_seq);
        return rt_writeset_del(&engine->ws, RT_CF_TIMERS, key, n);
    }
    return 0;
}

/* Run command @cmd and its message chain. On failure the caller rolls back. */
static int engine_run_command(struct rt_engine *engine, struct rt_actor_ctx *ctx,
                              const struct rt_command *cmd)
{
    const struct rt_actor_type *type = rt_registry_type(engine->config.registry, cmd->actor_type);
    if (type == NULL) {
        rt_ctx_fail(ctx, "unknown actor type %u", (unsigned)cmd->actor_type);
        return RT_EINVAL;
    }
    if (rt_shard_of(cmd->key, cmd->key_len, engine->config.shard_count) != engine->config.shard) {
        rt_ctx_fail(ctx, "actor key does not belong to shard %u", engine->config.shard);
        return RT_EINVAL; /* A routing bug upstream: never apply another shard's actor. */
    }
    rt_buf_reset(&entry_of(engine)->messages);
    ctx->origin = cmd->origin;
    ctx->depth = 0;
    int rv = engine_run_handler(engine, ctx, type, cmd->op, cmd->key, cmd->key_len, cmd->args,
                                cmd->args_len);
    if (rv != 0) {
        return rv;
    }
    /* The command's reply is what the client sees; messages' replies are dropped. */
    struct rt_engine_entry *entry = entry_of(engine);
    size_t reply_len = entry->handler_reply.len;
    size_t reply_off = engine->reply_arena.len;
    rv = rt_buf_append(&engine->reply_arena, entry->handler_reply.data, reply_len);
    if (rv == 0 && entry->messages.len > 0) {
        rv = engine_run_messages(engine, ctx);
    }
    if (rv != 0) {
        rt_buf_truncate(&engine->reply_arena, reply_off);
    }
    return rv;
}

/* ---- The entry's batched read ---- */

static void prefetch_result(void *arg, uint32_t i, const uint8_t *val, size_t val_len)
{
    struct rt_engine *engine = arg;
    struct rt_engine_entry *entry = entry_of(engine);
    const uint8_t *key = entry->prefetch_keys[i];
    size_t key_len = entry->prefetch_key_lens[i];
    /* Either may fail for memory; the key is then read on its own, as without this read. */
    if (val != NULL) {
        (void)rt_cache_put(engine->config.cache, key, key_len, val, val_len);
    } else {
        (void)rt_writeset_del(&entry->store_absent, RT_CF_STATE, key, key_len);
    }
}

/* Before an entry's commands run, read the state of every actor they address that the cache
 * lacks, in one batched store read: states found go into the cache, absent ones into
 * store_absent, so the handlers' own reads skip a store get each. Most of these reads are for
 * new orders, whose keys are absent, and one batched read costs much less than as many gets
 * (rt_store_ops.get_many; docs/benchmarks.md, optimisation log). Only a speed-up: a key it
 * leaves unsettled (a store error, no memory, a command engine_run_command will refuse) is
 * read by engine_read as before, and reads see the same committed state either way. */
static void engine_prefetch_states(struct rt_engine *engine, const struct rt_batch *batch)
{
    struct rt_engine_entry *entry = entry_of(engine);
    struct rt_store *store = engine->config.store;
    struct rt_cache *cache = engine->config.cache;
    assert(entry->store_absent.count == 0);
    if (store->ops->get_many == NULL || cache == NULL) {
        return;
    }
    rt_buf_reset(&entry->prefetch_arena);
    /* Room for every key up front, so that the keys do not move while the list is built. */
    if (rt_buf_reserve(&entry->prefetch_arena, (size_t)batch->count * RT_KEY_BYTES_MAX) != 0) {
        return;
    }
    uint32_t count = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        const struct rt_command *cmd = &batch->commands[i];
        /* What engine_run_command refuses (the decoder already bounded the key). */
        if (rt_registry_type(engine->config.registry, cmd->actor_type) == NULL ||
            rt_shard_of(cmd->key, cmd->key_len, engine->config.shard_count) !=
                engine->config.shard) {
            continue;
        }
        uint8_t key[RT_KEY_BYTES_MAX];
        size_t key_len =
            rt_key_state(key, engine->config.shard, cmd->actor_type, cmd->key, cmd->key_len);
        const uint8_t *val;
        size_t val_len;
        if (rt_cache_get(cache, key, key_len, &val, &val_len) == 0) {
            continue;
        }
        entry->prefetch_keys[count] = entry->prefetch_arena.data + entry->prefetch_arena.len;
        entry->prefetch_key_lens[count] = key_len;
        int rv = rt_buf_append(&entry->prefetch_arena, key, key_len);
        assert(rv == 0); /* Reserved above. */
        (void)rv;
        count++;
    }
    /* One key gains nothing from a batch, and the batched call costs a little more. */
    if (count >= 2) {
        /* An error leaves its keys to engine_read, which reports it. */
        (void)store->ops->get_many(store, RT_CF_STATE, count, entry->prefetch_keys,
                                   entry->prefetch_key_lens, prefetch_result, engine);
    }
}

/* FNV-1a 64 over (previous hash, index, entry bytes): not cryptographic, entries come from our
 * own leaders; it only has to make an accidental divergence visible. */
static uint64_t history_next(uint64_t prev, uint64_t index, const uint8_t *data, size_t len)
{
    uint8_t head[16];
    rt_put_be64(head, prev);
    rt_put_be64(head + 8, index);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof(head); i++) {
        h = (h ^ head[i]) * 0x100000001b3ull;
    }
    for (size_t i = 0; i < len; i++) {
        h = (h ^ data[i]) * 0x100000001b3ull;
    }
    return h;
}

/* Load applied index and history hash from the store (after open or a snapshot restore). */
static int engine_load(struct rt_engine *engine)
{
    struct rt_store *store = engine->config.store;
    struct rt_applied applied;
    int rv = store->ops->applied(store, engine->config.shard, &applied);
    if (rv != 0) {
        return rv;
    }
    engine->applied_index = applied.index;
    engine->history_hash = applied.history_hash;
    engine->history_key_legacy = false;
    if (applied.has_history || applied.index == 0) {
        return 0;
    }
    /* An older store's 8-byte record: the hash is under its own key, at the same index. */
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t n = rt_key_meta(key, engine->config.shard, "history");
    struct rt_buf value;
    rt_buf_init(&value, 64);
    rv = store->ops->get(store, RT_CF_META, key, n, &value);
    if (rv == 0 && value.len == 16 && rt_get_be64(value.data) == applied.index) {
        engine->history_hash = rt_get_be64(value.data + 8);
        engine->history_key_legacy = true;
    } else if (rv == 0 || rv == RT_ENOTFOUND) {
        rv = RT_ECORRUPT; /* Written with every commit: it must match the applied index. */
    }
    rt_buf_free(&value);
    return rv;
}

int rt_engine_init(struct rt_engine *engine, const struct rt_engine_config *config)
{
    assert(engine != NULL && config != NULL);
    assert(config->registry != NULL && config->store != NULL);
    assert(config->shard_count >= 1 && config->shard_count <= RT_SHARDS_MAX);
    assert(config->shard < config->shard_count);
    memset(engine, 0, sizeof(*engine));
    engine->config = *config;
    engine->replies_wanted = true;
    rt_writeset_init(&engine->ws);
    rt_buf_init(&engine->reply_arena, ENGINE_REPLY_ARENA_BYTES_MAX);
    engine->commands = calloc(RT_BATCH_COMMANDS_MAX, sizeof(*engine->commands));
    engine->replies = calloc(RT_BATCH_COMMANDS_MAX, sizeof(*engine->replies));
    engine->entry = calloc(1, sizeof(*engine->entry));
    if (engine->commands == NULL || engine->replies == NULL || engine->entry == NULL) {
        rt_engine_free(engine);
        return RT_ENOMEM;
    }
    struct rt_engine_entry *entry = entry_of(engine);
    rt_buf_init(&entry->handler_reply, RT_REPLY_BYTES_MAX + 1);
    rt_buf_init(&entry->state_scratch, RT_ACTOR_STATE_BYTES_MAX);
    rt_buf_init(&entry->messages, ENGINE_MESSAGE_QUEUE_BYTES_MAX);
    rt_buf_init(&entry->state_copy, RT_STORED_VALUE_BYTES_MAX);
    rt_buf_init(&entry->record, RT_COMMAND_ARGS_BYTES_MAX + (ENGINE_TIMER_TARGETS_MAX + 1u) *
                                                                (RT_ACTOR_KEY_BYTES_MAX + 8u));
    rt_buf_init(&entry->timer_bytes, ENGINE_TIMER_BYTES_MAX);
    rt_buf_init(&entry->fired, RT_STORED_VALUE_BYTES_MAX);
    rt_buf_init(&entry->id_bytes, ENGINE_ID_BYTES_MAX);
    rt_buf_init(&entry->id_record, RT_STORED_VALUE_BYTES_MAX);
    rt_buf_init(&entry->message_args, RT_COMMAND_ARGS_BYTES_MAX);
    rt_buf_init(&entry->prefetch_arena, RT_BATCH_COMMANDS_MAX * RT_KEY_BYTES_MAX);
    rt_writeset_init(&entry->store_absent);
    entry->prefetch_keys = calloc(RT_BATCH_COMMANDS_MAX, sizeof(*entry->prefetch_keys));
    entry->prefetch_key_lens = calloc(RT_BATCH_COMMANDS_MAX, sizeof(*entry->prefetch_key_lens));
    if (entry->prefetch_keys == NULL || entry->prefetch_key_lens == NULL) {
        rt_engine_free(engine);
        return RT_ENOMEM;
    }
    int rv = engine_load(engine);
    if (rv != 0) {
        rt_engine_free(engine);
        return rv;
    }
    return 0;
}

void rt_engine_free(struct rt_engine *engine)
{
    assert(engine != NULL);
    struct rt_engine_entry *entry = entry_of(engine);
    if (entry != NULL) {
        rt_buf_free(&entry->handler_reply);
        rt_buf_free(&entry->state_scratch);
        rt_buf_free(&entry->messages);
        rt_buf_free(&entry->state_copy);
        rt_buf_free(&entry->record);
        rt_buf_free(&entry->message_args);
        rt_buf_free(&entry->prefetch_arena);
        rt_writeset_free(&entry->store_absent);
        rt_buf_free(&entry->timer_bytes);
        rt_buf_free(&entry->fired);
        free(entry->timers);
        rt_buf_free(&entry->id_bytes);
        rt_buf_free(&entry->id_record);
        free(entry->ids);
        free(entry->prefetch_keys);
        free(entry->prefetch_key_lens);
        free(entry);
        engine->entry = NULL;
    }
    rt_writeset_free(&engine->ws);
    rt_buf_free(&engine->reply_arena);
    free(engine->commands);
    free(engine->replies);
    engine->commands = NULL;
    engine->replies = NULL;
}

/* Store a reply: bodies are arena offsets until the entry is done (see resolve_replies). */
static int engine_add_reply(struct rt_engine *engine, int code, size_t body_off, size_t body_len,
                            const char *msg)
{
    struct rt_reply *reply = &engine->replies[engine->reply_count++];
    reply->code = code;
    reply->body = (const uint8_t *)(uintptr_t)body_off;
    reply->body_len = (uint32_t)body_len;
    size_t msg_off = engine->reply_arena.len;
    int rv = rt_buf_append(&engine->reply_arena, msg, strlen(msg) + 1);
    reply->msg = (const char *)(uintptr_t)msg_off;
    return rv;
}

static void engine_resolve_replies(struct rt_engine *engine)
{
    static const uint8_t empty[1];
    for (uint32_t i = 0; i < engine->reply_count; i++) {
        struct rt_reply *reply = &engine->replies[i];
        uintptr_t body_off = (uintptr_t)reply->body;
        uintptr_t msg_off = (uintptr_t)reply->msg;
        assert(body_off + reply->body_len <= engine->reply_arena.len);
        assert(msg_off < engine->reply_arena.len);
        reply->body = reply->body_len > 0 ? engine->reply_arena.data + body_off : empty;
        reply->msg = (const char *)engine->reply_arena.data + msg_off;
    }
}

/* Commit the entry; then bring the cache up to date with what was committed. */
static int engine_commit(struct rt_engine *engine)
{
    struct rt_store *store = engine->config.store;
    int rv = store->ops->commit(store, &engine->ws);
    if (rv != 0) {
        RT_ERROR("commit of index %llu failed: %s", (unsigned long long)engine->ws.applied_index,
                 rt_strerror(rv));
        return rv;
    }
    struct rt_cache *cache = engine->config.cache;
    for (uint32_t i = 0; cache != NULL && i < engine->ws.count; i++) {
        const struct rt_write *w = &engine->ws.writes[i];
        if (w->cf != RT_CF_STATE) {
            continue;
        }
        const uint8_t *key = rt_write_key(&engine->ws, w);
        if (w->op == RT_WRITE_PUT && engine->replies_wanted) {
            rt_cache_put(cache, key, w->key_len, rt_write_val(&engine->ws, w), w->val_len);
        } else if (w->op == RT_WRITE_PUT) {
            rt_cache_refresh(cache, key, w->key_len, rt_write_val(&engine->ws, w), w->val_len);
        } else {
            rt_cache_del(cache, key, w->key_len);
        }
    }
    return 0;
}

/* A timer's reply goes to no one: its handler's failure is logged instead (a handler that
 * fails on a timer is a bug or a corrupt state; every replica logs the same). */
static void timer_log_failure(const struct timer_record *rec, uint32_t i, int rv,
                              const char *fail_msg)
{
    RT_WARN("timer op %u of actor type %u failed for actor %u of %u in its record: %s (%s)",
            (unsigned)rec->op, (unsigned)rec->type, (unsigned)i + 1, (unsigned)rec->key_count,
            rt_strerror(rv), fail_msg);
}

/* A fired timer (its record was read into entry->fired by engine_check_fresh). A record of
 * one timer runs as any command. A record of alike timers runs the op for each actor it lists,
 * each rolled back alone if its handler fails: a timer is consumed even when its handler
 * fails, and one actor's failure is no reason to skip the others. A timer's replies go to no
 * one, so only its store errors (fatal for the entry) are returned. */
static int engine_run_timer(struct rt_engine *engine, struct rt_actor_ctx *ctx,
                            const struct rt_command *cmd)
{
    struct rt_engine_entry *entry = entry_of(engine);
    struct timer_record rec;
    if (timer_record_decode(entry->fired.data, entry->fired.len, &rec) != 0) {
        rt_ctx_fail(ctx, "timer record is corrupt");
        return RT_ECORRUPT;
    }
    if (rec.key_count == 1) {
        int rv = engine_run_command(engine, ctx, cmd);
        if (rv != 0 && entry->fatal == 0 && rv != RT_ENOMEM) {
            timer_log_failure(&rec, 0, rv, ctx->fail_msg);
        }
        return rv;
    }
    size_t reply_off = engine->reply_arena.len;
    for (uint32_t i = 0; i < rec.key_count; i++) {
        struct rt_command target = *cmd;
        timer_record_key(&rec, &target.key, &target.key_len);
        target.actor_type = rec.type;
        target.op = rec.op;
        target.args = rec.args;
        target.args_len = rec.args_len;
        struct engine_mark mark = engine_mark(engine);
        ctx->fail_msg[0] = '\0';
        int rv = engine_run_command(engine, ctx, &target);
        rt_buf_truncate(&engine->reply_arena, reply_off);
        if (rv != 0) {
            engine_rollback(engine, mark);
            if (entry->fatal != 0 || rv == RT_ENOMEM) {
                return rv;
            }
            timer_log_failure(&rec, i, rv, ctx->fail_msg);
        }
    }
    ctx->fail_msg[0] = '\0';
    return 0;
}

/* What only lives while rt_engine_apply runs one entry: gone at both its exits, so that a
 * query between entries never sees it. */
static void engine_entry_done(struct rt_engine *engine)
{
    struct rt_engine_entry *entry = entry_of(engine);
    rt_writeset_reset(&entry->store_absent, engine->config.shard, engine->applied_index);
    engine_drop_timers(entry, 0);
    engine_drop_ids(entry, 0);
}

int rt_engine_apply(struct rt_engine *engine, uint64_t index, const uint8_t *data, size_t len)
{
    assert(engine != NULL);
    assert(index > 0);
    engine->reply_count = 0;
    rt_buf_reset(&engine->reply_arena);
    rt_log_set_shard(engine->config.shard);
    if (index <= engine->applied_index) {

        engine->stats.entries_skipped++;
        return RT_EDUPLICATE;
    }
    /* index may skip ahead of applied_index + 1: raft's barrier and configuration entries do not
     * reach the engine, and a snapshot install moves raft forward. */
    struct rt_batch batch;
    int rv = rt_batch_decode(data, len, &batch, engine->commands, RT_BATCH_COMMANDS_MAX);
    if (rv != 0) {
        RT_WARN("entry %llu is not a valid batch (%s): skipped", (unsigned long long)index,
                rt_strerror(rv));
        engine->applied_index = index;
        engine->history_hash = history_next(engine->history_hash, index, data, len);
        engine->stats.entries_rejected++;
        return rv;
    }
    struct rt_engine_entry *entry = entry_of(engine);
    entry->index = index;
    entry->now_ms = batch.timestamp_ms;
    entry->position = 0;
    entry->fatal = 0;
    rt_writeset_reset(&engine->ws, engine->config.shard, index);
    engine_prefetch_states(engine, &batch);
    struct rt_actor_ctx ctx = {.engine = engine};
    for (uint32_t i = 0; i < batch.count; i++) {
        const struct rt_command *cmd = &batch.commands[i];
        struct engine_mark mark = engine_mark(engine);
        size_t body_off = engine->reply_arena.len;
        ctx.fail_msg[0] = '\0';
        ctx.readonly = false;
        rv = engine_check_fresh(engine, cmd);
        if (rv == 0) {
            rv = cmd->origin == RT_ORIGIN_TIMER ? engine_run_timer(engine, &ctx, cmd)
                                                : engine_run_command(engine, &ctx, cmd);
            if (rv != 0) {
                engine_rollback(engine, mark);
            }
            /* A message or timer is consumed even when its handler fails: retrying the same
             * deterministic handler on the same state would fail the same way. */
            int consumed = engine_consume(engine, cmd);
            if (consumed != 0 && rv == 0) {
                rv = consumed;
                engine_rollback(engine, mark);
            }
        }
        if (entry->fatal != 0 || rv == RT_ENOMEM) {
            rv = entry->fatal != 0 ? entry->fatal : rv;
            goto fail;
        }
        size_t body_len = rv == 0 ? engine->reply_arena.len - body_off : 0;
        if (engine_add_reply(engine, rv, body_off, body_len, ctx.fail_msg) != 0) {
            rv = RT_ENOMEM;
            goto fail;
        }
        if (rv == 0) {
            engine->stats.commands_ok++;
        } else {
            engine->stats.commands_failed++;
        }
    }
    rv = engine_put_timers(engine);
    if (rv == 0) {
        rv = engine_put_ids(engine);
    }
    if (rv != 0) {
        goto fail;
    }
    uint64_t history = history_next(engine->history_hash, index, data, len);
    engine->ws.history_hash = history; /* Committed with the applied index, in one record. */
    if (engine->history_key_legacy) {
        uint8_t legacy_key[RT_KEY_BYTES_MAX];
        size_t legacy_key_len = rt_key_meta(legacy_key, engine->config.shard, "history");
        rv = rt_writeset_del(&engine->ws, RT_CF_META, legacy_key, legacy_key_len);
    }
    if (rv == 0) {
        rv = engine_commit(engine);
    }
    if (rv != 0) {
        goto fail;
    }
    engine->applied_index = index;
    engine->history_hash = history;
    engine->history_key_legacy = false;

    engine->stats.entries_applied++;
    engine_resolve_replies(engine);
    engine_entry_done(engine);
    return 0;

fail:
    engine->reply_count = 0;
    rt_writeset_reset(&engine->ws, engine->config.shard, engine->applied_index);
    engine_entry_done(engine);
    return rv;
}

int rt_engine_index_get(struct rt_engine *engine, const uint8_t *index_key, size_t index_key_len,
                        struct rt_buf *out)
{
    assert(engine != NULL && out != NULL);
    return engine_index_read(engine, index_key, index_key_len, out, false);
}

int rt_engine_reload(struct rt_engine *engine)
{
    assert(engine != NULL);
    assert(engine->entry != NULL);
    engine->reply_count = 0;
    rt_writeset_reset(&engine->ws, engine->config.shard, 0);
    return engine_load(engine);
}

uint32_t rt_engine_reply_count(const struct rt_engine *engine)
{
    assert(engine != NULL);
    return engine->reply_count;
}

const struct rt_reply *rt_engine_reply(const struct rt_engine *engine, uint32_t i)
{
    assert(engine != NULL);
    assert(i < engine->reply_count);
    return &engine->replies[i];
}

int rt_engine_query(struct rt_engine *engine, const struct rt_command *cmd, uint64_t now_ms,
                    struct rt_reply *reply)
{
    assert(engine != NULL && cmd != NULL && reply != NULL);
    assert(cmd->origin == RT_ORIGIN_CLIENT);
    memset(reply, 0, sizeof(*reply));
    reply->msg = "";
    int rv = rt_command_check(cmd);
    const struct rt_actor_type *type = rt_registry_type(engine->config.registry, cmd->actor_type);
    if (rv != 0 || type == NULL || cmd->op >= type->op_count || !type->ops[cmd->op].readonly) {
        reply->code = rv != 0 ? rv : RT_EINVAL;
        reply->msg = "not a read-only operation";
        return reply->code;
    }
    engine->reply_count = 0;
    rt_buf_reset(&engine->reply_arena);
    rt_writeset_reset(&engine->ws, engine->config.shard, engine->applied_index);
    struct rt_engine_entry *entry = entry_of(engine);
    entry->now_ms = now_ms;
    entry->fatal = 0;
    entry->index = engine->applied_index;
    entry->position = ENGINE_POSITIONS_MAX; /* A query creates nothing. */
    struct rt_actor_ctx ctx = {.engine = engine, .readonly = true, .origin = RT_ORIGIN_CLIENT};
    rv = engine_run_handler(engine, &ctx, type, cmd->op, cmd->key, cmd->key_len, cmd->args,
                            cmd->args_len);
    assert(engine->ws.count == 0);
    size_t msg_len = strlen(ctx.fail_msg) + 1;
    if (rt_buf_append(&engine->reply_arena, entry->handler_reply.data, entry->handler_reply.len) !=
            0 ||
        rt_buf_append(&engine->reply_arena, ctx.fail_msg, msg_len) != 0) {
        rv = RT_ENOMEM;
    }
    reply->code = rv;
    if (rv == 0 || rv == RT_ENOMEM) {
        reply->body = engine->reply_arena.data;
        reply->body_len = rv == 0 ? (uint32_t)entry->handler_reply.len : 0;
    }
    reply->msg = engine->reply_arena.data != NULL
                     ? (const char *)engine->reply_arena.data + engine->reply_arena.len - msg_len
                     : "";
    return rv;
}

/* ---- Timers (leader side) ---- */

struct due_scan {
    struct rt_engine *engine;
    struct rt_batch_builder *builder;
    uint64_t now_ms;
    uint32_t max;    /* Actors the commands may run in all. */
    uint32_t actors; /* ... and so far. */
    uint32_t added;  /* Commands, one per record. */
    int error;
};

static int due_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                     size_t val_len)
{
    struct due_scan *scan = arg;
    if (key_len != 18) {
        scan->error = RT_ECORRUPT;
        return RT_ECORRUPT;
    }
    uint64_t due_ms = rt_get_be64(key + 2);
    if (due_ms > scan->now_ms || scan->actors >= scan->max) {
        return 1; /* Timers are in due order: nothing later is due. */
    }
    struct timer_record rec;
    if (timer_record_decode(val, val_len, &rec) != 0) {
        scan->error = RT_ECORRUPT;
        return RT_ECORRUPT;
    }
    /* @max bounds the handlers the entry will run, not its commands: a record of alike timers
     * runs one per actor. A first record always goes, so that a small max still makes way. */
    if (scan->added > 0 && scan->actors + rec.key_count > scan->max) {
        return 1;
    }
    /* One command per record; a record of alike timers names its first actor, and the apply
     * runs them all (engine_run_timer). */
    struct rt_command cmd = {
        .origin = RT_ORIGIN_TIMER,
        .actor_type = rec.type,
        .op = rec.op,
        .source_seq = rt_get_be64(key + 10),
        .timer_due_ms = due_ms,
        .args = rec.args,
        .args_len = rec.args_len,
    };
    timer_record_key(&rec, &cmd.key, &cmd.key_len);
    int rv = rt_batch_builder_add(scan->builder, &cmd);
    if (rv == RT_ETOOLARGE) {
        return 1; /* The batch is full; the rest go in the next one. */
    }
    if (rv != 0) {
        scan->error = rv;
        return rv;
    }
    scan->added++;
    scan->actors += rec.key_count;
    return 0;
}

int rt_engine_collect_due_timers(struct rt_engine *engine, uint64_t now_ms,
                                 struct rt_batch_builder *builder, uint32_t max, uint32_t *added)
{
    assert(engine != NULL && builder != NULL && added != NULL);
    struct due_scan scan = {.engine = engine, .builder = builder, .now_ms = now_ms, .max = max};
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, engine->config.shard);
    struct rt_store *store = engine->config.store;
    int rv =
        store->ops->scan(store, RT_CF_TIMERS, prefix, sizeof(prefix), NULL, 0, due_visit, &scan);
    *added = scan.added;
    if (scan.error != 0) {
        RT_ERROR("timer scan failed: %s", rt_strerror(scan.error));
        return scan.error;
    }
    return rv < 0 ? rv : 0;
}
