#include "crash_stream.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "storage_helpers.h"

static void crash_put(struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key, size_t key_len,
                      const uint8_t *val, size_t val_len)
{
    int rv = rt_writeset_put(ws, cf, key, key_len, val, val_len);
    assert(rv == 0);
    (void)rv;
}

static void crash_del(struct rt_writeset *ws, enum rt_cf cf, const uint8_t *key, size_t key_len)
{
    int rv = rt_writeset_del(ws, cf, key, key_len);
    assert(rv == 0);
    (void)rv;
}

static size_t index_key(uint8_t *key, uint64_t i)
{
    char name[32];
    int n = snprintf(name, sizeof(name), "ix/%08llu", (unsigned long long)i);
    assert(n > 0);
    return rt_key_index(key, CRASH_SHARD, (const uint8_t *)name, (size_t)n);
}

static size_t timer_key(uint8_t *key, uint64_t i)
{
    return rt_key_timer(key, CRASH_SHARD, (i * 2654435761u) % 1000000u, rt_seq_make(i, 1));
}

void crash_stream_commit(struct rt_store *store, struct rt_writeset *ws, uint64_t i)
{
    assert(store != NULL && ws != NULL);
    assert(i >= 1);
    uint64_t r = helper_mix(i);
    uint8_t key[RT_KEY_BYTES_MAX];
    uint8_t val[512];
    size_t key_len;
    rt_writeset_reset(ws, CRASH_SHARD, i);

    /* An actor's state, overwritten by later commits to the same actor. */
    char name[32];
    int n = snprintf(name, sizeof(name), "acct/%llu", (unsigned long long)((i * 7919u) % 997u));
    assert(n > 0);
    key_len = rt_key_state(key, CRASH_SHARD, 1, (const uint8_t *)name, (size_t)n);
    size_t val_len = 40 + r % 200;
    helper_bytes(val, val_len, r, 1);
    crash_put(ws, RT_CF_STATE, key, key_len, val, val_len);

    key_len = index_key(key, i);
    rt_put_be64(val, i);
    crash_put(ws, RT_CF_INDEX, key, key_len, val, 8);
    if (i % 3 == 0 && i > 37) {
        key_len = index_key(key, i - 37);
        crash_del(ws, RT_CF_INDEX, key, key_len);
    }

    key_len = rt_key_outbox(key, CRASH_SHARD, rt_seq_make(i, 0));
    helper_bytes(val, 100, r + 1, 1);
    crash_put(ws, RT_CF_OUTBOX, key, key_len, val, 100);
    if (i > 50) {
        key_len = rt_key_outbox(key, CRASH_SHARD, rt_seq_make(i - 50, 0));
        crash_del(ws, RT_CF_OUTBOX, key, key_len);
    }

    key_len = timer_key(key, i);
    helper_bytes(val, 24, r + 2, 0);
    crash_put(ws, RT_CF_TIMERS, key, key_len, val, 24);
    if (i > 200) {
        key_len = timer_key(key, i - 200);
        crash_del(ws, RT_CF_TIMERS, key, key_len);
    }

    /* Read-modify-write: sum += f(i). */
    key_len = rt_key_meta(key, CRASH_SHARD, "sum");
    struct rt_buf buf;
    rt_buf_init(&buf, 64);
    uint64_t sum = 0;
    int rv = store->ops->get(store, RT_CF_META, key, key_len, &buf);
    if (rv == 0) {
        assert(buf.len == 8);
        sum = rt_get_be64(buf.data);
    } else {
        assert(rv == RT_ENOTFOUND);
    }
    rt_buf_free(&buf);
    rt_put_be64(val, sum + (r & 0xffff));
    crash_put(ws, RT_CF_META, key, key_len, val, 8);

    rv = store->ops->commit(store, ws);
    assert(rv == 0);
    (void)rv;
}
