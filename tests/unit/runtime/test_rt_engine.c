/* Unit tests for the apply engine, with a toy "counter" actor on the in-memory store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem_store.h"
#include "rt_clock.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_mp.h"
#include "test_support.h"

#define SHARDS         4
#define KEYS_PER_SHARD 3
#define T0             1700000000000ull

/* ---- The counter actor: state = be64 value ---- */

enum {
    OP_ADD,
    OP_GET,
    OP_RELAY,
    OP_LATER,
    OP_NOTIFY,
    OP_LOOP,
    OP_NEWID,
    OP_INDEXID,
    OP_LOOKUP,
    OP_COUNT
};

#define ID_PREFIX "cid:"

static uint64_t counter_value(struct rt_actor_ctx *ctx)
{
    size_t len;
    const uint8_t *s = rt_ctx_state(ctx, &len);
    return s != NULL && len == 8 ? rt_get_be64(s) : 0;
}

static int counter_reply(struct rt_actor_ctx *ctx, uint64_t value)
{
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, rt_ctx_reply(ctx));
    rt_mp_write_map(&w, 1);
    rt_mp_write_cstr(&w, "value");
    rt_mp_write_uint(&w, value);
    return rt_mp_writer_error(&w);
}

static int counter_store(struct rt_actor_ctx *ctx, uint64_t value)
{
    uint8_t s[8];
    rt_put_be64(s, value);
    return rt_ctx_set_state(ctx, s, sizeof(s));
}

/* add n: n == 0 writes first and then fails, to prove rollback. */
static int op_add(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, args, len);
    uint64_t n;
    if (rt_mp_read_uint(&r, &n) != 0) {
        rt_ctx_fail(ctx, "add wants a uint");
        return RT_EINVAL;
    }
    uint64_t v = counter_value(ctx) + n;
    if (v < n) {
        rt_ctx_fail(ctx, "the counter would wrap");
        return RT_EINVAL;
    }
    int rv = counter_store(ctx, v);
    if (rv != 0) {
        return rv;
    }
    if (n == 0) {
        rt_ctx_fail(ctx, "zero is not allowed");
        return RT_EINVAL;
    }
    return counter_reply(ctx, v);
}

static int op_get(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    (void)args;
    (void)len;
    size_t n;
    if (rt_ctx_state(ctx, &n) == NULL) {
        return RT_ENOTFOUND;
    }
    return counter_reply(ctx, counter_value(ctx));
}

/* relay [target key, n]: add 1 here and send add n to the target. */
static int op_relay(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, args, len);
    uint32_t fields, key_len;
    const uint8_t *key;
    const uint8_t *n_raw;
    size_t n_len;
    if (rt_mp_read_array(&r, &fields) != 0 || fields != 2 ||
        rt_mp_read_bin(&r, &key, &key_len) != 0 || rt_mp_read_raw(&r, &n_raw, &n_len) != 0) {
        return RT_EINVAL;
    }
    int rv = counter_store(ctx, counter_value(ctx) + 1);
    if (rv != 0) {
        return rv;
    }
    return rt_ctx_send(ctx, 1, key, key_len, OP_ADD, n_raw, n_len);
}

/* later [n]: add n (5 without args) in a second. later 0 sets the timer and then fails. */
static int op_later(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    const uint8_t five = 5;
    int rv = rt_ctx_timer_set(ctx, rt_ctx_now_ms(ctx) + 1000, OP_ADD, len > 0 ? args : &five,
                              len > 0 ? len : 1);
    if (rv == 0 && len == 1 && args[0] == 0) {
        rt_ctx_fail(ctx, "later 0 fails after setting its timer");
        return RT_EINVAL;
    }
    return rv;
}

static int op_notify(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    return rt_ctx_external(ctx, "callback", args, len);
}

static int op_loop(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    size_t key_len;
    const uint8_t *key = rt_ctx_key(ctx, &key_len);
    int rv = counter_store(ctx, counter_value(ctx) + 1);
    return rv != 0 ? rv : rt_ctx_send(ctx, 1, key, key_len, OP_LOOP, args, len);
}

static int op_newid(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    (void)args;
    (void)len;
    char id[RT_ID_BYTES_MAX + 1];
    size_t n = rt_ctx_new_id(ctx, 'T', id);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, rt_ctx_reply(ctx));
    rt_mp_write_str(&w, id, n);
    return rt_mp_writer_error(&w);
}

/* indexid [mode]: make an id, index this counter under ID_PREFIX + id, reply the id. Mode 1
 * fails afterwards; mode 2 indexes an id this entry did not make instead. indexid "<id>":
 * index that id (made earlier in the entry) instead of a new one. */
static int op_indexid(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    uint8_t mode = len == 1 ? args[0] : 0;
    char id[RT_ID_BYTES_MAX + 1];
    size_t n;
    if (len == RT_ID_LEN + 1) {
        memcpy(id, args + 1, RT_ID_LEN); /* A fixstr header, then the id. */
        n = RT_ID_LEN;
    } else {
        n = rt_ctx_new_id(ctx, 'T', id);
    }
    if (mode == 2) {
        id[4] = id[4] == '0' ? '1' : '0'; /* Another raft index. */
    }
    int rv = rt_ctx_index_id(ctx, (const uint8_t *)ID_PREFIX, strlen(ID_PREFIX), id, n);
    if (rv != 0) {
        return rv;
    }
    if (mode == 1) {
        rt_ctx_fail(ctx, "indexid 1 fails after indexing");
        return RT_EINVAL;
    }
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, rt_ctx_reply(ctx));
    rt_mp_write_str(&w, id, n);
    return rt_mp_writer_error(&w);
}

/* lookup [index key as raw bytes]: reply the key the index names (bin). */
static int op_lookup(struct rt_actor_ctx *ctx, const uint8_t *args, size_t len)
{
    struct rt_buf out;
    rt_buf_init(&out, RT_ACTOR_KEY_BYTES_MAX);
    int rv = rt_ctx_index_get(ctx, args, len, &out);
    if (rv == 0) {
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, rt_ctx_reply(ctx));
        rt_mp_write_bin(&w, out.data, out.len);
        rv = rt_mp_writer_error(&w);
    }
    rt_buf_free(&out);
    return rv;
}

static const struct rt_actor_op counter_ops[OP_COUNT] = {
    [OP_ADD] = {"add", op_add, false},          [OP_GET] = {"get", op_get, true},
    [OP_RELAY] = {"relay", op_relay, false},    [OP_LATER] = {"later", op_later, false},
    [OP_NOTIFY] = {"notify", op_notify, false}, [OP_LOOP] = {"loop", op_loop, false},
    [OP_NEWID] = {"newid", op_newid, false},    [OP_INDEXID] = {"indexid", op_indexid, false},
    [OP_LOOKUP] = {"lookup", op_lookup, false},
};
static const struct rt_actor_type counter_type = {1, "counter", counter_ops, OP_COUNT};

/* ---- Fixture ---- */

struct fixture {
    struct mem_store *mem;
    struct rt_registry registry;
    struct rt_cache cache;
    struct rt_engine engine[SHARDS];
    struct rt_batch_builder builder;
    char keys[SHARDS][KEYS_PER_SHARD][16]; /* Keys that hash to each shard. */
};

static void find_keys(struct fixture *f)
{
    int found[SHARDS] = {0};
    for (int i = 0, done = 0; done < SHARDS * KEYS_PER_SHARD; i++) {
        char key[16];
        snprintf(key, sizeof(key), "c%d", i);
        uint16_t s = rt_shard_of((const uint8_t *)key, strlen(key), SHARDS);
        if (found[s] < KEYS_PER_SHARD) {
            strcpy(f->keys[s][found[s]++], key);
            done++;
        }
    }
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->mem = mem_store_new();
    rt_registry_init(&f->registry);
    assert_int_equal(rt_registry_add(&f->registry, &counter_type), 0);
    assert_int_equal(rt_cache_init(&f->cache, 1 << 20), 0);
    for (uint16_t s = 0; s < SHARDS; s++) {
        struct rt_engine_config config = {s, SHARDS, &f->registry, mem_store_store(f->mem),
                                          &f->cache};
        assert_int_equal(rt_engine_init(&f->engine[s], &config), 0);
    }
    rt_batch_builder_init(&f->builder, RT_BATCH_BYTES_MAX);
    find_keys(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int s = 0; s < SHARDS; s++) {
        rt_engine_free(&f->engine[s]);
    }
    rt_batch_builder_free(&f->builder);
    rt_cache_free(&f->cache);
    mem_store_free(f->mem);
    free(f);
    return 0;
}

static struct rt_command cmd(const char *key, uint8_t op, const uint8_t *args, size_t args_len)
{
    struct rt_command c = {.origin = RT_ORIGIN_CLIENT,
                           .actor_type = 1,
                           .op = op,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key),
                           .args = args,
                           .args_len = (uint32_t)args_len};
    return c;
}

/* Apply @n commands as entry @index of @shard at time @now. */
static int apply(struct fixture *f, uint16_t shard, uint64_t index, uint64_t now,
                 const struct rt_command *cmds, int n)
{
    assert_int_equal(rt_batch_builder_begin(&f->builder, now), 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(rt_batch_builder_add(&f->builder, &cmds[i]), 0);
    }
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(&f->builder, &len);
    return rt_engine_apply(&f->engine[shard], index, data, len);
}

/* The value of counter @key through a read-only query; -1 if it does not exist. */
static int64_t value_of(struct fixture *f, uint16_t shard, const char *key)
{
    struct rt_command c = cmd(key, OP_GET, NULL, 0);
    struct rt_reply reply;
    int rv = rt_engine_query(&f->engine[shard], &c, T0, &reply);
    if (rv == RT_ENOTFOUND) {
        return -1;
    }
    assert_int_equal(rv, 0);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, reply.body, reply.body_len);
    uint32_t n;
    const char *k;
    uint32_t k_len;
    uint64_t v;
    assert_int_equal(rt_mp_read_map(&r, &n), 0);
    assert_int_equal(rt_mp_read_str(&r, &k, &k_len), 0);
    assert_int_equal(rt_mp_read_uint(&r, &v), 0);
    return (int64_t)v;
}

static uint64_t stored_applied(struct fixture *f, uint16_t shard)
{
    struct rt_applied applied;
    struct rt_store *store = mem_store_store(f->mem);
    assert_int_equal(store->ops->applied(store, shard, &applied), 0);
    return applied.index;
}

/* ---- Tests ---- */

static void apply_runs_commands_and_replies(void **state)
{
    struct fixture *f = *state;
    const char *k = f->keys[0][0];
    const uint8_t three = 3, four = 4;
    struct rt_command c[2] = {cmd(k, OP_ADD, &three, 1), cmd(k, OP_ADD, &four, 1)};
    assert_int_equal(apply(f, 0, 1, T0, c, 2), 0);
    assert_int_equal(rt_engine_reply_count(&f->engine[0]), 2);
    const struct rt_reply *r1 = rt_engine_reply(&f->engine[0], 1);
    assert_int_equal(r1->code, 0);
    assert_true(r1->body_len > 0);
    assert_int_equal(value_of(f, 0, k), 7); /* The second command saw the first's write. */
    assert_int_equal(stored_applied(f, 0), 1);
    assert_int_equal(rt_engine_applied_index(&f->engine[0]), 1);
    /* Re-applying the same index does nothing. */
    assert_int_equal(apply(f, 0, 1, T0, c, 2), RT_EDUPLICATE);
    assert_int_equal(rt_engine_reply_count(&f->engine[0]), 0);
    assert_int_equal(value_of(f, 0, k), 7);
    /* A new engine on the same store resumes from the stored applied index. */
    struct rt_engine again;
    struct rt_engine_config config = {0, SHARDS, &f->registry, mem_store_store(f->mem), NULL};
    assert_int_equal(rt_engine_init(&again, &config), 0);
    assert_int_equal(rt_engine_applied_index(&again), 1);
    rt_engine_free(&again);
}

/* Entry 2 of batched_read_matches_key_by_key: @a exists (1), @b does not. */
static void apply_mixed_entry(struct fixture *f, uint64_t index, const char *a, const char *b)
{
    const uint8_t zero = 0, one = 1, two = 2;
    struct rt_command c[4] = {cmd(a, OP_ADD, &two, 1), cmd(b, OP_ADD, &zero, 1),
                              cmd(b, OP_ADD, &one, 1), cmd(b, OP_ADD, &two, 1)};
    assert_int_equal(apply(f, 0, index, T0, c, 4), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 1)->code, RT_EINVAL); /* Rolled back. */
    assert_int_equal(rt_engine_reply(&f->engine[0], 2)->code, 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 3)->code, 0);
    /* The absent-key answers lasted only for the entry: queries see what it created. */
    assert_int_equal(value_of(f, 0, a), 3);
    assert_int_equal(value_of(f, 0, b), 3); /* 1, then 2 more: the last saw the third's write. */
}

/* The @skip-th key of the form "s<n>" that belongs to @shard (fresh keys for a test). */
static void key_in_shard(char out[16], uint16_t shard, int skip)
{
    for (int i = 0;; i++) {
        snprintf(out, 16, "s%d", i);
        if (rt_shard_of((const uint8_t *)out, strlen(out), SHARDS) == shard && skip-- == 0) {
            return;
        }
    }
}

/* An entry's states come from one batched read when the store offers it (found ones through
 * the cache, absent ones without a get each), with the same results as reading key by key. */
static void batched_read_matches_key_by_key(void **state)
{
    struct fixture *f = *state;
    const uint8_t one = 1;
    for (int batched = 1; batched >= 0; batched--) {
        mem_store_batched_reads(f->mem, batched);
        char a[16], b[16];
        key_in_shard(a, 0, batched ? 0 : 2);
        key_in_shard(b, 0, batched ? 1 : 3);
        uint64_t index = batched ? 1 : 3;
        (void)mem_store_take_reads(f->mem);
        struct rt_command create_a = cmd(a, OP_ADD, &one, 1);
        assert_int_equal(apply(f, 0, index, T0, &create_a, 1), 0);
        /* One key is read on its own either way. */
        struct mem_store_reads reads = mem_store_take_reads(f->mem);
        assert_int_equal(reads.many_calls[RT_CF_STATE], 0);
        assert_int_equal(reads.gets[RT_CF_STATE], 1);
        rt_cache_clear(&f->cache); /* a's state now comes from the store. */
        apply_mixed_entry(f, index + 1, a, b);
        reads = mem_store_take_reads(f->mem);
        if (batched) {
            /* One read of the four commands' states; the queries hit the cache. */
            assert_int_equal(reads.many_calls[RT_CF_STATE], 1);
            assert_int_equal(reads.many_keys[RT_CF_STATE], 4);
            assert_int_equal(reads.gets[RT_CF_STATE], 0);
        } else {
            /* a, b, and b again after the rollback; the fourth command sees the third's
             * write. */
            assert_int_equal(reads.many_calls[RT_CF_STATE], 0);
            assert_int_equal(reads.gets[RT_CF_STATE], 3);
        }
    }
}

/* A shard's follower (replies_wanted false) keeps its cache to what it read: the states its
 * entries create stay out, while a state it holds is refreshed with each committed write (a
 * stale value there would be served to the next read). A leader caches what it writes. */
static void follower_cache_refreshes_only_what_it_holds(void **state)
{
    struct fixture *f = *state;
    const char *k = f->keys[0][0], *k2 = f->keys[0][1];
    const uint8_t one = 1;
    struct rt_command add_k = cmd(k, OP_ADD, &one, 1);
    f->engine[0].replies_wanted = false;
    assert_int_equal(apply(f, 0, 1, T0, &add_k, 1), 0);
    assert_int_equal(f->cache.entries, 0);
    /* A read fills the cache from the store... */
    assert_int_equal(value_of(f, 0, k), 1);
    assert_int_equal(f->cache.entries, 1);
    /* ...and the next write refreshes it there. */
    assert_int_equal(apply(f, 0, 2, T0, &add_k, 1), 0);
    uint64_t hits = f->cache.hits, misses = f->cache.misses;
    assert_int_equal(value_of(f, 0, k), 2);
    assert_true(f->cache.hits > hits);
    assert_int_equal(f->cache.misses, misses);
    /* As leader, a new state enters the cache. */
    f->engine[0].replies_wanted = true;
    struct rt_command add_k2 = cmd(k2, OP_ADD, &one, 1);
    assert_int_equal(apply(f, 0, 3, T0, &add_k2, 1), 0);
    assert_int_equal(f->cache.entries, 2);
}

static void failed_command_leaves_no_trace(void **state)
{
    struct fixture *f = *state;
    const char *k = f->keys[0][0], *k2 = f->keys[0][1];
    const uint8_t one = 1, zero = 0, bad = 0xc1;
    struct rt_command c[4] = {cmd(k, OP_ADD, &one, 1), cmd(k2, OP_ADD, &zero, 1),
                              cmd(k, OP_ADD, &bad, 1), cmd(k, OP_ADD, &one, 1)};
    assert_int_equal(apply(f, 0, 1, T0, c, 4), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 1)->code, RT_EINVAL);
    assert_string_equal(rt_engine_reply(&f->engine[0], 1)->msg, "zero is not allowed");
    assert_int_equal(rt_engine_reply(&f->engine[0], 2)->code, RT_EINVAL);
    assert_int_equal(rt_engine_reply(&f->engine[0], 3)->code, 0);
    assert_int_equal(value_of(f, 0, k), 2);
    assert_int_equal(value_of(f, 0, k2), -1); /* k2's write was rolled back. */
    assert_int_equal(f->engine[0].stats.commands_failed, 2);
    /* Unknown op and unknown type fail only their command. */
    struct rt_command u[2] = {cmd(k, 20, &one, 1), cmd(k, OP_ADD, &one, 1)};
    u[1].actor_type = 9;
    assert_int_equal(apply(f, 0, 2, T0, u, 2), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, RT_EINVAL);
    assert_int_equal(rt_engine_reply(&f->engine[0], 1)->code, RT_EINVAL);
}

static void wrong_shard_is_refused(void **state)
{
    struct fixture *f = *state;
    const uint8_t one = 1;
    struct rt_command c = cmd(f->keys[1][0], OP_ADD, &one, 1);
    assert_int_equal(apply(f, 0, 1, T0, &c, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, RT_EINVAL);
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_STATE, 0), 0);
}

static uint8_t relay_args[64];

static size_t make_relay_args(const char *target, uint8_t n)
{
    struct rt_buf buf;
    rt_buf_init(&buf, sizeof(relay_args));
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_array(&w, 2);
    rt_mp_write_bin(&w, (const uint8_t *)target, strlen(target));
    rt_mp_write_uint(&w, n);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    size_t len = buf.len;
    memcpy(relay_args, buf.data, len);
    rt_buf_free(&buf);
    return len;
}

static void same_shard_message_is_atomic(void **state)
{
    struct fixture *f = *state;
    const char *a = f->keys[0][0], *b = f->keys[0][1];
    size_t n = make_relay_args(b, 10);
    struct rt_command c = cmd(a, OP_RELAY, relay_args, n);
    assert_int_equal(apply(f, 0, 1, T0, &c, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, 0);
    assert_int_equal(value_of(f, 0, a), 1);
    assert_int_equal(value_of(f, 0, b), 10);
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_OUTBOX, 0), 0);
    /* The message fails (add 0): the sender's write is undone too. */
    n = make_relay_args(b, 0);
    c = cmd(a, OP_RELAY, relay_args, n);
    assert_int_equal(apply(f, 0, 2, T0, &c, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, RT_EINVAL);
    assert_int_equal(value_of(f, 0, a), 1);
    assert_int_equal(value_of(f, 0, b), 10);
    /* A message loop is cut at the depth limit and leaves nothing. */
    c = cmd(a, OP_LOOP, NULL, 0);
    assert_int_equal(apply(f, 0, 3, T0, &c, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[0], 0)->code, RT_ETOOLARGE);
    assert_int_equal(value_of(f, 0, a), 1);
}

/* Decode the only outbox record of @shard. */
struct outbox_seen {
    uint64_t seq;
    uint8_t record[512];
    size_t len;
    int count;
};

static int outbox_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    struct outbox_seen *seen = arg;
    assert_int_equal(key_len, 10);
    assert_true(val_len <= sizeof(seen->record));
    seen->seq = rt_get_be64(key + 2);
    memcpy(seen->record, val, val_len);
    seen->len = val_len;
    seen->count++;
    return 0;
}

static void cross_shard_message_goes_through_outbox_once(void **state)
{
    struct fixture *f = *state;
    const char *a = f->keys[0][0], *remote = f->keys[2][0];
    size_t n = make_relay_args(remote, 6);
    struct rt_command c = cmd(a, OP_RELAY, relay_args, n);
    assert_int_equal(apply(f, 0, 5, T0, &c, 1), 0);
    assert_int_equal(value_of(f, 0, a), 1);
    assert_int_equal(value_of(f, 2, remote), -1); /* Not applied here: other shard. */
    struct outbox_seen seen = {0};
    uint8_t prefix[2];
    rt_key_shard_prefix(prefix, 0);
    struct rt_store *store = mem_store_store(f->mem);
    assert_int_equal(store->ops->scan(store, RT_CF_OUTBOX, prefix, 2, NULL, 0, outbox_visit, &seen),
                     0);
    assert_int_equal(seen.count, 1);
    assert_true(seen.seq == rt_seq_make(5, 0));
    /* ["msg", target_shard, type, key, op, args] */
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, seen.record, seen.len);
    uint32_t fields, len;
    const char *tag;
    uint64_t target, type, op;
    const uint8_t *key, *args;
    assert_int_equal(rt_mp_read_array(&r, &fields), 0);
    assert_int_equal(fields, 6);
    assert_int_equal(rt_mp_read_str(&r, &tag, &len), 0);
    assert_memory_equal(tag, "msg", 3);
    assert_int_equal(rt_mp_read_uint(&r, &target), 0);
    assert_int_equal(target, 2);
    assert_int_equal(rt_mp_read_uint(&r, &type), 0);
    assert_int_equal(rt_mp_read_bin(&r, &key, &len), 0);
    assert_int_equal(rt_mp_read_uint(&r, &op), 0);
    assert_int_equal(rt_mp_read_bin(&r, &args, &len), 0);
    /* Deliver it to shard 2 as the forwarder would, twice: applied once. */
    struct rt_command m = cmd(remote, (uint8_t)op, args, len);
    m.origin = RT_ORIGIN_MESSAGE;
    m.source_shard = 0;
    m.source_seq = seen.seq;
    assert_int_equal(apply(f, 2, 1, T0, &m, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[2], 0)->code, 0);
    assert_int_equal(value_of(f, 2, remote), 6);
    assert_int_equal(apply(f, 2, 2, T0, &m, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[2], 0)->code, RT_EDUPLICATE);
    assert_int_equal(value_of(f, 2, remote), 6);
    /* An older sequence from the same source is a duplicate too; a newer one applies. */
    m.source_seq = seen.seq - 1;
    assert_int_equal(apply(f, 2, 3, T0, &m, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[2], 0)->code, RT_EDUPLICATE);
    m.source_seq = seen.seq + 1;
    assert_int_equal(apply(f, 2, 4, T0, &m, 1), 0);
    assert_int_equal(value_of(f, 2, remote), 12);
}

static void timers_fire_once(void **state)
{
    struct fixture *f = *state;
    const char *k = f->keys[1][0];
    struct rt_command c = cmd(k, OP_LATER, NULL, 0);
    assert_int_equal(apply(f, 1, 1, T0, &c, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[1], 0)->code, 0);
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_TIMERS, 1), 1);
    uint32_t added = 99;
    assert_int_equal(rt_batch_builder_begin(&f->builder, T0 + 999), 0);
    assert_int_equal(rt_engine_collect_due_timers(&f->engine[1], T0 + 999, &f->builder, 10, &added),
                     0);
    assert_int_equal(added, 0);
    assert_int_equal(rt_batch_builder_begin(&f->builder, T0 + 1000), 0);
    assert_int_equal(
        rt_engine_collect_due_timers(&f->engine[1], T0 + 1000, &f->builder, 10, &added), 0);
    assert_int_equal(added, 1);
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(&f->builder, &len);
    uint8_t *copy = malloc(len);
    memcpy(copy, data, len);
    assert_int_equal(rt_engine_apply(&f->engine[1], 2, copy, len), 0);
    assert_int_equal(rt_engine_reply(&f->engine[1], 0)->code, 0);
    assert_int_equal(value_of(f, 1, k), 5);
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_TIMERS, 1), 0);
    /* The same timer proposed again (a new leader re-proposing) is skipped. */
    assert_int_equal(rt_engine_apply(&f->engine[1], 3, copy, len), 0);
    assert_int_equal(rt_engine_reply(&f->engine[1], 0)->code, RT_EDUPLICATE);
    assert_int_equal(value_of(f, 1, k), 5);
    free(copy);
}

/* Collect what is due at @now on @shard, for at most @max actors, into one batch (a copy the
 * caller frees); how many commands. */
static uint8_t *collect_due(struct fixture *f, uint16_t shard, uint64_t now, uint32_t max,
                            uint32_t *added, size_t *len)
{
    assert_int_equal(rt_batch_builder_begin(&f->builder, now), 0);
    assert_int_equal(rt_engine_collect_due_timers(&f->engine[shard], now, &f->builder, max, added),
                     0);
    const uint8_t *data = rt_batch_builder_finish(&f->builder, len);
    uint8_t *copy = malloc(*len);
    memcpy(copy, data, *len);
    return copy;
}

static void alike_timers_share_a_record(void **state)
{
    struct fixture *f = *state;
    const char *k0 = f->keys[1][0], *k1 = f->keys[1][1], *k2 = f->keys[1][2];
    /* k2 at the top of its range: its timer's add will fail. */
    uint8_t top[9] = {0xcf};
    rt_put_be64(top + 1, UINT64_MAX - 1);
    struct rt_command c0 = cmd(k2, OP_ADD, top, sizeof(top));
    assert_int_equal(apply(f, 1, 1, T0, &c0, 1), 0);
    assert_int_equal(rt_engine_reply(&f->engine[1], 0)->code, 0);
    const uint8_t seven = 7, nine = 9, zero = 0;
    struct rt_command c[6] = {
        cmd(k0, OP_LATER, &nine, 1),  cmd(k0, OP_LATER, &seven, 1),
        cmd(k1, OP_LATER, &seven, 1), cmd(k1, OP_LATER, &zero, 1), /* Fails: its timer too. */
        cmd(k2, OP_LATER, &seven, 1), cmd(k0, OP_LATER, NULL, 0),  /* add 5 */
    };
    assert_int_equal(apply(f, 1, 2, T0, c, 6), 0);
    const int want[6] = {0, 0, 0, RT_EINVAL, 0, 0};
    for (uint32_t i = 0; i < 6; i++) {
        assert_int_equal(rt_engine_reply(&f->engine[1], i)->code, want[i]);
    }
    /* add 9 to k0; add 7 to k0, k1, k2 in one record; add 5 to k0 (in position order). */
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_TIMERS, 1), 3);
    uint32_t added = 0;
    size_t len;
    /* The collector's bound counts actors: in two, add 9 (one) leaves no room for the record
     * of three; in four it does, and add 5 no longer fits. */
    free(collect_due(f, 1, T0 + 1000, 2, &added, &len));
    assert_int_equal(added, 1);
    free(collect_due(f, 1, T0 + 1000, 4, &added, &len));
    assert_int_equal(added, 2);
    uint8_t *batch = collect_due(f, 1, T0 + 1000, 10, &added, &len);
    assert_int_equal(added, 3);
    assert_int_equal(rt_engine_apply(&f->engine[1], 3, batch, len), 0);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(rt_engine_reply(&f->engine[1], i)->code, 0);
    }
    assert_int_equal(value_of(f, 1, k0), 7 + 9 + 5);
    assert_int_equal(value_of(f, 1, k1), 7);
    assert_int_equal((uint64_t)value_of(f, 1, k2), UINT64_MAX - 1); /* Its add failed alone. */
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_TIMERS, 1), 0);
    /* Proposed again (a new leader re-proposing): every record is gone, nothing runs twice. */
    assert_int_equal(rt_engine_apply(&f->engine[1], 4, batch, len), 0);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(rt_engine_reply(&f->engine[1], i)->code, RT_EDUPLICATE);
    }
    assert_int_equal(value_of(f, 1, k0), 7 + 9 + 5);
    assert_int_equal(value_of(f, 1, k1), 7);
    free(batch);
}

/* A store written before alike timers shared records holds one record per timer, naming its
 * actor's key itself rather than a list: it still fires. */
static void timer_record_of_one_actor_fires(void **state)
{
    struct fixture *f = *state;
    const char *k = f->keys[2][0];
    struct rt_buf record;
    rt_buf_init(&record, 1024);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &record);
    rt_mp_write_array(&w, 4);
    rt_mp_write_uint(&w, 1);
    rt_mp_write_bin(&w, (const uint8_t *)k, strlen(k));
    rt_mp_write_uint(&w, OP_ADD);
    const uint8_t three = 3;
    rt_mp_write_bin(&w, &three, 1);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    struct rt_writeset ws;
    rt_writeset_init(&ws);
    rt_writeset_reset(&ws, 2, 0); /* Applied index 0: the engine's view stays as it is. */
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t n = rt_key_timer(key, 2, T0 + 50, rt_seq_make(1, 0));
    assert_int_equal(rt_writeset_put(&ws, RT_CF_TIMERS, key, n, record.data, record.len), 0);
    struct rt_store *store = mem_store_store(f->mem);
    assert_int_equal(store->ops->commit(store, &ws), 0);
    rt_writeset_free(&ws);
    rt_buf_free(&record);
    uint32_t added = 0;
    size_t len;
    uint8_t *batch = collect_due(f, 2, T0 + 50, 10, &added, &len);
    assert_int_equal(added, 1);
    assert_int_equal(rt_engine_apply(&f->engine[2], 2, batch, len), 0);
    assert_int_equal(rt_engine_reply(&f->engine[2], 0)->code, 0);
    assert_int_equal(value_of(f, 2, k), 3);
    assert_int_equal(test_store_count(store, RT_CF_TIMERS, 2), 0);
    free(batch);
}

/* The id a reply of indexid carries, as index key ID_PREFIX + id in @ikey; its length. */
static size_t indexed_key(const struct rt_reply *reply, uint8_t *ikey)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, reply->body, reply->body_len);
    const char *id;
    uint32_t id_len;
    assert_int_equal(rt_mp_read_str(&r, &id, &id_len), 0);
    assert_int_equal(id_len, RT_ID_LEN);
    memcpy(ikey, ID_PREFIX, strlen(ID_PREFIX));
    memcpy(ikey + strlen(ID_PREFIX), id, id_len);
    return strlen(ID_PREFIX) + id_len;
}

static void ids_indexed_in_records(void **state)
{
    struct fixture *f = *state;
    struct rt_engine *engine = &f->engine[3];
    const char *k0 = f->keys[3][0], *k1 = f->keys[3][1];
    /* 70 commands, each taking one position: ids at positions 0..69, two records. One fails
     * after indexing, one indexes an id of another entry; a later command reads an id the
     * entry indexed before (not in a record yet). */
    enum { N = 70 };
    struct rt_command c[N + 2];
    const uint8_t fail = 1, foreign = 2;
    for (int i = 0; i < N; i++) {
        c[i] = cmd(i % 2 == 0 ? k0 : k1, OP_INDEXID, NULL, 0);
    }
    c[10] = cmd(k1, OP_INDEXID, &fail, 1);
    c[11] = cmd(k1, OP_INDEXID, &foreign, 1);
    uint8_t first[64];
    size_t first_len = strlen(ID_PREFIX) + RT_ID_LEN;
    char id0[RT_ID_BYTES_MAX + 1];
    rt_id_make(id0, 'T', 3, 1, 0);
    memcpy(first, ID_PREFIX, strlen(ID_PREFIX));
    memcpy(first + strlen(ID_PREFIX), id0, RT_ID_LEN);
    c[N] = cmd(k1, OP_LOOKUP, first, first_len);
    /* Position 0's id indexed again, by another actor, last in the entry: the first stays. */
    uint8_t again[1 + RT_ID_LEN] = {0xa0 | RT_ID_LEN};
    memcpy(again + 1, id0, RT_ID_LEN);
    c[N + 1] = cmd(k1, OP_INDEXID, again, sizeof(again));
    assert_int_equal(apply(f, 3, 1, T0, c, N + 2), 0);
    assert_int_equal(rt_engine_reply(engine, N + 1)->code, 0);
    assert_int_equal(rt_engine_reply(engine, 10)->code, RT_EINVAL);
    assert_int_equal(rt_engine_reply(engine, 11)->code, RT_EINVAL);
    const struct rt_reply *seen = rt_engine_reply(engine, N);
    assert_int_equal(seen->code, 0);
    assert_int_equal(seen->body_len, 1 + strlen(k0) + 1); /* bin8 header, length, key */
    assert_memory_equal(seen->body + 2, k0, strlen(k0));
    /* Committed: two records (positions 0..63 and 64..69) and nothing else in the index. */
    assert_int_equal(test_store_count(mem_store_store(f->mem), RT_CF_INDEX, 3), 2);
    struct rt_buf out;
    rt_buf_init(&out, RT_ACTOR_KEY_BYTES_MAX);
    uint8_t ikey[64];
    for (uint32_t i = 0; i < N; i++) {
        /* Replies were resolved by this apply; every successful one resolves to its actor. */
        const struct rt_reply *reply = rt_engine_reply(engine, i);
        if (i == 10 || i == 11) {
            continue;
        }
        size_t n = indexed_key(reply, ikey);
        rt_buf_reset(&out);
        assert_int_equal(rt_engine_index_get(engine, ikey, n, &out), 0);
        const char *want =
            c[i].key_len == strlen(k0) && memcmp(c[i].key, k0, strlen(k0)) == 0 ? k0 : k1;
        assert_int_equal(out.len, strlen(want));
        assert_memory_equal(out.data, want, out.len);
    }
    /* The failed command's id (position 10) is in no record. */
    char id10[RT_ID_BYTES_MAX + 1];
    rt_id_make(id10, 'T', 3, 1, 10);
    memcpy(ikey + strlen(ID_PREFIX), id10, RT_ID_LEN);
    rt_buf_reset(&out);
    assert_int_equal(rt_engine_index_get(engine, ikey, first_len, &out), RT_ENOTFOUND);
    /* Another prefix, another shard's id, the id index's own keys: not found or refused. */
    memcpy(ikey, "xid:", 4);
    memcpy(ikey + 4, id0, RT_ID_LEN);
    assert_int_equal(rt_engine_index_get(engine, ikey, first_len, &out), RT_ENOTFOUND);
    rt_id_make(id0, 'T', 2, 1, 0);
    memcpy(ikey + 4, id0, RT_ID_LEN);
    memcpy(ikey, ID_PREFIX, 4);
    assert_int_equal(rt_engine_index_get(engine, ikey, first_len, &out), RT_ENOTFOUND);
    ikey[0] = 0;
    assert_int_equal(rt_engine_index_get(engine, ikey, first_len, &out), RT_EINVAL);
    rt_buf_free(&out);
}

static void external_effect_is_queued(void **state)
{
    struct fixture *f = *state;
    struct rt_command c = cmd(f->keys[3][0], OP_NOTIFY, (const uint8_t *)"\xa2hi", 3);
    assert_int_equal(apply(f, 3, 1, T0, &c, 1), 0);
    struct outbox_seen seen = {0};
    uint8_t prefix[2];
    rt_key_shard_prefix(prefix, 3);
    struct rt_store *store = mem_store_store(f->mem);
    assert_int_equal(store->ops->scan(store, RT_CF_OUTBOX, prefix, 2, NULL, 0, outbox_visit, &seen),
                     0);
    assert_int_equal(seen.count, 1);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, seen.record, seen.len);
    uint32_t fields, len;
    const char *s;
    const uint8_t *payload;
    assert_int_equal(rt_mp_read_array(&r, &fields), 0);
    assert_int_equal(fields, 3);
    assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
    assert_memory_equal(s, "ext", 3);
    assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
    assert_memory_equal(s, "callback", 8);
    assert_int_equal(rt_mp_read_bin(&r, &payload, &len), 0);
    assert_memory_equal(payload, "\xa2hi", 3);
}

static void ids_are_unique_and_carry_the_shard(void **state)
{
    struct fixture *f = *state;
    const char *k = f->keys[2][1];
    struct rt_command c[2] = {cmd(k, OP_NEWID, NULL, 0), cmd(k, OP_NEWID, NULL, 0)};
    assert_int_equal(apply(f, 2, 7, T0, c, 2), 0);
    char ids[2][RT_ID_BYTES_MAX + 1];
    for (int i = 0; i < 2; i++) {
        const struct rt_reply *reply = rt_engine_reply(&f->engine[2], (uint32_t)i);
        struct rt_mp_reader r;
        rt_mp_reader_init(&r, reply->body, reply->body_len);
        const char *s;
        uint32_t len;
        assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
        assert_true(len <= RT_ID_BYTES_MAX);
        memcpy(ids[i], s, len);
        ids[i][len] = '\0';
        uint16_t shard;
        assert_true(rt_id_shard(s, len, 'T', &shard));
        assert_int_equal(shard, 2);
    }
    assert_string_not_equal(ids[0], ids[1]);
}

static void bad_entries_write_nothing(void **state)
{
    struct fixture *f = *state;
    uint8_t before[32], after[32];
    test_store_digest(mem_store_store(f->mem), 0, before);
    const uint8_t garbage[] = {0x93, 0x01, 0xff};
    assert_int_equal(rt_engine_apply(&f->engine[0], 1, garbage, sizeof(garbage)), RT_EMALFORMED);
    assert_int_equal(rt_engine_reply_count(&f->engine[0]), 0);
    test_store_digest(mem_store_store(f->mem), 0, after);
    assert_memory_equal(before, after, 32);
    /* The shard does not stall: the next entry applies. */
    assert_int_equal(rt_engine_applied_index(&f->engine[0]), 1);
    const uint8_t one = 1;
    struct rt_command c = cmd(f->keys[0][0], OP_ADD, &one, 1);
    assert_int_equal(apply(f, 0, 2, T0, &c, 1), 0);
    assert_int_equal(stored_applied(f, 0), 2);
}

static void store_failure_commits_nothing(void **state)
{
    struct fixture *f = *state;
    const uint8_t one = 1;
    struct rt_command c = cmd(f->keys[0][0], OP_ADD, &one, 1);
    mem_store_fail_commits(f->mem, 1);
    assert_int_equal(apply(f, 0, 1, T0, &c, 1), RT_EIO);
    assert_int_equal(rt_engine_reply_count(&f->engine[0]), 0);
    assert_int_equal(stored_applied(f, 0), 0);
    assert_int_equal(rt_engine_applied_index(&f->engine[0]), 0);
    /* The cache was not updated with the lost write. */
    assert_int_equal(value_of(f, 0, f->keys[0][0]), -1);
}

/* A store written before the applied record carried the history hash holds an 8-byte applied
 * index and the hash under meta "history". The engine reads the hash from there; its next
 * commit writes the 16-byte record and deletes the old key. A history that does not match
 * the index, or is missing, is refused. */
static void older_store_history_is_read_and_moved(void **state)
{
    struct fixture *f = *state;
    const uint16_t shard = 1;
    struct rt_engine *engine = &f->engine[shard];
    struct rt_store *store = mem_store_store(f->mem);
    uint8_t akey[RT_KEY_BYTES_MAX], hkey[RT_KEY_BYTES_MAX];
    size_t alen = rt_key_meta(akey, shard, "applied");
    size_t hlen = rt_key_meta(hkey, shard, "history");
    uint8_t index_be[8], history[16];
    rt_put_be64(index_be, 5);
    rt_put_be64(history, 5);
    rt_put_be64(history + 8, 0x1122334455667788ull);
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_META, akey, alen, index_be, 8), 0);
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_META, hkey, hlen, history, 16), 0);
    assert_int_equal(rt_engine_reload(engine), 0);
    assert_int_equal(rt_engine_applied_index(engine), 5);
    assert_int_equal(rt_engine_history_hash(engine), 0x1122334455667788ull);

    const uint8_t one = 1;
    struct rt_command c = cmd(f->keys[shard][0], OP_ADD, &one, 1);
    assert_int_equal(apply(f, shard, 6, T0, &c, 1), 0);
    uint64_t hash6 = rt_engine_history_hash(engine);
    assert_true(hash6 != 0x1122334455667788ull);
    struct rt_applied applied;
    assert_int_equal(store->ops->applied(store, shard, &applied), 0);
    assert_true(applied.has_history);
    assert_int_equal(applied.index, 6);
    assert_int_equal(applied.history_hash, hash6);
    struct rt_buf value;
    rt_buf_init(&value, 64);
    assert_int_equal(store->ops->get(store, RT_CF_META, hkey, hlen, &value), RT_ENOTFOUND);
    /* Reloaded, the engine takes both from the record alone. */
    assert_int_equal(rt_engine_reload(engine), 0);
    assert_int_equal(rt_engine_applied_index(engine), 6);
    assert_int_equal(rt_engine_history_hash(engine), hash6);
    assert_int_equal(apply(f, shard, 7, T0, &c, 1), 0);
    assert_int_equal(stored_applied(f, shard), 7);

    /* An older store whose history is at another index, or is missing, or a record of a size
     * no build wrote: corrupt, and the engine does not start on it. */
    rt_put_be64(index_be, 9);
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_META, akey, alen, index_be, 8), 0);
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_META, hkey, hlen, history, 16), 0);
    assert_int_equal(rt_engine_reload(engine), RT_ECORRUPT);
    const uint16_t other = 2;
    uint8_t okey[RT_KEY_BYTES_MAX];
    size_t olen = rt_key_meta(okey, other, "applied");
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_META, okey, olen, index_be, 8), 0);
    assert_int_equal(rt_engine_reload(&f->engine[other]), RT_ECORRUPT);
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_META, okey, olen, history, 12), 0);
    assert_int_equal(rt_engine_reload(&f->engine[other]), RT_ECORRUPT);
    rt_buf_free(&value);
}

static void query_refuses_writing_ops(void **state)
{
    struct fixture *f = *state;
    const uint8_t one = 1;
    struct rt_command c = cmd(f->keys[0][0], OP_ADD, &one, 1);
    struct rt_reply reply;
    assert_int_equal(rt_engine_query(&f->engine[0], &c, T0, &reply), RT_EINVAL);
    assert_int_equal(value_of(f, 0, f->keys[0][0]), -1);
}

/* Same entries on two independent stores give byte-identical shards. */
static void replicas_are_byte_identical(void **state)
{
    (void)state;
    struct fixture *a, *b;
    setup((void **)&a);
    setup((void **)&b);
    struct rt_prng prng;
    rt_prng_seed(&prng, 42);
    for (uint64_t index = 1; index <= 200; index++) {
        struct rt_command c[8];
        uint8_t args[8];
        int n = 1 + (int)rt_prng_below(&prng, 8);
        for (int i = 0; i < n; i++) {
            const char *key = a->keys[0][rt_prng_below(&prng, 2)];
            args[i] = (uint8_t)rt_prng_below(&prng, 5);
            switch (rt_prng_below(&prng, 4)) {
            case 0:
                c[i] = cmd(key, OP_LATER, NULL, 0);
                break;
            case 1:
                c[i] = cmd(key, OP_NEWID, NULL, 0);
                break;
            default:
                c[i] = cmd(key, OP_ADD, &args[i], 1);
            }
        }
        assert_int_equal(apply(a, 0, index, T0 + index, c, n), 0);
        assert_int_equal(apply(b, 0, index, T0 + index, c, n), 0);
    }
    uint8_t da[32], db[32];
    test_store_digest(mem_store_store(a->mem), 0, da);
    test_store_digest(mem_store_store(b->mem), 0, db);
    assert_memory_equal(da, db, 32);
    assert_true(test_store_count(mem_store_store(a->mem), RT_CF_TIMERS, 0) > 0);
    teardown((void **)&a);
    teardown((void **)&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(apply_runs_commands_and_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_command_leaves_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(follower_cache_refreshes_only_what_it_holds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(batched_read_matches_key_by_key, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_shard_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(same_shard_message_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(cross_shard_message_goes_through_outbox_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(timers_fire_once, setup, teardown),
        cmocka_unit_test_setup_teardown(alike_timers_share_a_record, setup, teardown),
        cmocka_unit_test_setup_teardown(timer_record_of_one_actor_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(ids_indexed_in_records, setup, teardown),
        cmocka_unit_test_setup_teardown(external_effect_is_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(ids_are_unique_and_carry_the_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_entries_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(store_failure_commits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(older_store_history_is_read_and_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(query_refuses_writing_ops, setup, teardown),
        cmocka_unit_test(replicas_are_byte_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
