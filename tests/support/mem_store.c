/* mem_store: an in-memory rt_store for unit tests.
 *
 * Each column family is a sorted array of (key, value) records with binary search. Commit is
 * two-phase so that it is all or nothing like a RocksDB write batch: phase one allocates
 * every copy and reserves every array slot the write set can need; phase two only moves
 * pointers and cannot fail. Insertion is O(n) (memmove), which is fine for the sizes tests
 * use and keeps the structure obviously correct. */
#include "mem_store.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_limits.h"

struct mem_record {
    uint8_t *key; /* Owned. */
    size_t key_len;
    uint8_t *val; /* Owned; NULL when val_len is 0. */
    size_t val_len;
};

struct mem_cf {
    struct mem_record *records; /* Sorted by key, byte order, no duplicates. */
    size_t count;
    size_t cap;
};

struct mem_store {
    struct rt_store base; /* First member: an rt_store * is a mem_store *. */
    struct mem_cf cfs[RT_CF_COUNT];
    unsigned fail_commits; /* Commits left to fail with RT_EIO. */
    struct mem_store_reads reads;
};

/* Index of the first record whose key is >= @key (count if none); *found if equal. */
static size_t mem_lower_bound(const struct mem_cf *cf, const uint8_t *key, size_t key_len,
                              bool *found)
{
    assert(cf != NULL);
    assert(cf->count <= cf->cap);
    size_t lo = 0;
    size_t hi = cf->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct mem_record *r = &cf->records[mid];
        if (rt_bytes_compare(r->key, r->key_len, key, key_len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (found != NULL) {
        *found = lo < cf->count &&
                 rt_bytes_compare(cf->records[lo].key, cf->records[lo].key_len, key, key_len) == 0;
    }
    return lo;
}

static struct mem_store *mem_store_of(struct rt_store *store)
{
    assert(store != NULL);
    struct mem_store *m = (struct mem_store *)store;
    assert(m->base.ops == store->ops);
    return m;
}

static int mem_get(struct rt_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len,
                   struct rt_buf *out)
{
    struct mem_store *m = mem_store_of(store);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    assert(out != NULL);
    bool found = false;
    size_t i = mem_lower_bound(&m->cfs[cf], key, key_len, &found);
    if (!found) {
        return RT_ENOTFOUND;
    }
    const struct mem_record *r = &m->cfs[cf].records[i];
    return rt_buf_append(out, r->val, r->val_len);
}

static int mem_get_counted(struct rt_store *store, enum rt_cf cf, const uint8_t *key,
                           size_t key_len, struct rt_buf *out)
{
    mem_store_of(store)->reads.gets[cf]++;
    return mem_get(store, cf, key, key_len, out);
}

static int mem_get_many(struct rt_store *store, enum rt_cf cf, uint32_t count,
                        const uint8_t *const *keys, const size_t *key_lens, rt_get_many_cb cb,
                        void *arg)
{
    struct mem_store *m = mem_store_of(store);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    assert(keys != NULL && key_lens != NULL && cb != NULL);
    if (count == 0 || count > RT_BATCH_COMMANDS_MAX) {
        return count == 0 ? 0 : RT_EINVAL;
    }
    m->reads.many_calls[cf]++;
    m->reads.many_keys[cf] += count;
    for (uint32_t i = 0; i < count; i++) {
        bool found = false;
        size_t at = mem_lower_bound(&m->cfs[cf], keys[i], key_lens[i], &found);
        const struct mem_record *r = found ? &m->cfs[cf].records[at] : NULL;
        cb(arg, i,
           r == NULL        ? NULL
           : r->val != NULL ? r->val
                            : (const uint8_t *)"",
           r == NULL ? 0 : r->val_len);
    }
    return 0;
}

static int mem_applied(struct rt_store *store, uint16_t shard, struct rt_applied *applied)
{
    struct mem_store *m = mem_store_of(store);
    assert(applied != NULL);
    memset(applied, 0, sizeof(*applied));
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = rt_key_meta(key, shard, "applied");
    bool found = false;
    size_t i = mem_lower_bound(&m->cfs[RT_CF_META], key, key_len, &found);
    if (!found) {
        return 0; /* Nothing ever applied to this shard. */
    }
    const struct mem_record *r = &m->cfs[RT_CF_META].records[i];
    return rt_applied_decode(r->val, r->val_len, applied);
}

/* One write of a commit, prepared in phase one. */
struct mem_pending {
    uint8_t cf;
    uint8_t op;
    struct mem_record rec; /* Owned copies until phase two hands them to the array. */
};

static void mem_record_free(struct mem_record *r)
{
    assert(r != NULL);
    free(r->key);
    free(r->val);
    r->key = NULL;
    r->val = NULL;
}

static int mem_record_copy(struct mem_record *r, const uint8_t *key, size_t key_len,
                           const uint8_t *val, size_t val_len)
{
    assert(key != NULL && key_len > 0);
    assert(val != NULL || val_len == 0);
    r->key = malloc(key_len);
    r->val = val_len > 0 ? malloc(val_len) : NULL;
    if (r->key == NULL || (val_len > 0 && r->val == NULL)) {
        mem_record_free(r);
        return RT_ENOMEM;
    }
    memcpy(r->key, key, key_len);
    if (val_len > 0) {
        memcpy(r->val, val, val_len);
    }
    r->key_len = key_len;
    r->val_len = val_len;
    return 0;
}

static int mem_cf_reserve(struct mem_cf *cf, size_t extra)
{
    assert(cf != NULL);
    assert(cf->count <= cf->cap);
    if (cf->cap - cf->count >= extra) {
        return 0;
    }
    size_t cap = cf->cap == 0 ? 64 : cf->cap;
    while (cap - cf->count < extra) {
        cap *= 2;
    }
    struct mem_record *records = realloc(cf->records, cap * sizeof(*records));
    if (records == NULL) {
        return RT_ENOMEM;
    }
    cf->records = records;
    cf->cap = cap;
    return 0;
}

/* Phase two: cannot fail (capacity reserved, copies made). Takes ownership of @p->rec. */
static void mem_cf_apply(struct mem_cf *cf, struct mem_pending *p)
{
    assert(cf != NULL && p != NULL);
    bool found = false;
    size_t i = mem_lower_bound(cf, p->rec.key, p->rec.key_len, &found);
    if (p->op == RT_WRITE_DEL) {
        mem_record_free(&p->rec);
        if (found) {
            mem_record_free(&cf->records[i]);
            memmove(&cf->records[i], &cf->records[i + 1],
                    (cf->count - i - 1) * sizeof(cf->records[0]));
            cf->count--;
        }
        return;
    }
    assert(p->op == RT_WRITE_PUT);
    if (found) {
        mem_record_free(&cf->records[i]);
        cf->records[i] = p->rec;
    } else {
        assert(cf->count < cf->cap);
        memmove(&cf->records[i + 1], &cf->records[i], (cf->count - i) * sizeof(cf->records[0]));
        cf->records[i] = p->rec;
        cf->count++;
    }
    memset(&p->rec, 0, sizeof(p->rec));
}

static int mem_commit(struct rt_store *store, const struct rt_writeset *ws)
{
    struct mem_store *m = mem_store_of(store);
    assert(ws != NULL);
    assert(ws->count <= ws->cap);
    if (m->fail_commits > 0) {
        m->fail_commits--;
        return RT_EIO; /* Injected before anything is touched: nothing written. */
    }
    /* Phase one: copies of every write plus the applied record (the last pending write). */
    size_t n = (size_t)ws->count + 1;
    struct mem_pending *pending = calloc(n, sizeof(*pending));
    if (pending == NULL) {
        return RT_ENOMEM;
    }
    size_t per_cf[RT_CF_COUNT] = {0};
    int rv = 0;
    size_t made = 0;
    for (; made < ws->count; made++) {
        const struct rt_write *w = &ws->writes[made];
        assert(w->cf < RT_CF_COUNT);
        assert(w->op == RT_WRITE_PUT || w->op == RT_WRITE_DEL);
        pending[made].cf = w->cf;
        pending[made].op = w->op;
        size_t val_len = w->op == RT_WRITE_PUT ? w->val_len : 0;
        rv = mem_record_copy(&pending[made].rec, rt_write_key(ws, w), w->key_len,
                             val_len > 0 ? rt_write_val(ws, w) : NULL, val_len);
        if (rv != 0) {
            goto free_pending;
        }
        per_cf[w->cf]++;
    }
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = rt_key_meta(key, ws->shard, "applied");
    uint8_t applied[RT_APPLIED_BYTES];
    rt_applied_encode(applied, ws->applied_index, ws->history_hash);
    pending[made].cf = RT_CF_META;
    pending[made].op = RT_WRITE_PUT;
    rv = mem_record_copy(&pending[made].rec, key, key_len, applied, sizeof(applied));
    if (rv != 0) {
        goto free_pending;
    }
    made++;
    per_cf[RT_CF_META]++;
    /* Worst case every put is a new key: reserve for that so phase two cannot fail. */
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        rv = mem_cf_reserve(&m->cfs[cf], per_cf[cf]);
        if (rv != 0) {
            goto free_pending; /* Extra capacity is harmless; no record changed. */
        }
    }
    /* Phase two: in order, so a later write to the same key wins. */
    for (size_t i = 0; i < made; i++) {
        mem_cf_apply(&m->cfs[pending[i].cf], &pending[i]);
    }
    free(pending);
    return 0;

free_pending:
    for (size_t i = 0; i < made; i++) {
        mem_record_free(&pending[i].rec);
    }
    free(pending);
    return rv;
}

static int mem_scan(struct rt_store *store, enum rt_cf cf, const uint8_t *prefix, size_t prefix_len,
                    const uint8_t *start, size_t start_len, rt_scan_cb cb, void *arg)
{
    struct mem_store *m = mem_store_of(store);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    assert(cb != NULL);
    assert(prefix != NULL || prefix_len == 0);
    const struct mem_cf *c = &m->cfs[cf];
    /* Begin at max(prefix, start): every key >= both bounds, in byte order. */
    const uint8_t *from = prefix;
    size_t from_len = prefix_len;
    if (start != NULL && rt_bytes_compare(start, start_len, prefix, prefix_len) > 0) {
        from = start;
        from_len = start_len;
    }
    for (size_t i = mem_lower_bound(c, from, from_len, NULL); i < c->count; i++) {
        const struct mem_record *r = &c->records[i];
        if (r->key_len < prefix_len ||
            (prefix_len > 0 && memcmp(r->key, prefix, prefix_len) != 0)) {
            break; /* Sorted: past the prefix range, nothing further matches. */
        }
        int rv = cb(arg, r->key, r->key_len, r->val, r->val_len);
        if (rv != 0) {
            return rv < 0 ? rv : 0; /* 1 stops early without error. */
        }
    }
    return 0;
}

static const struct rt_store_ops mem_store_ops = {
    .get = mem_get_counted,
    .get_many = mem_get_many,
    .applied = mem_applied,
    .commit = mem_commit,
    .scan = mem_scan,
};

/* The same store without get_many, as a store that only reads key by key. */
static const struct rt_store_ops mem_store_ops_single = {
    .get = mem_get_counted,
    .applied = mem_applied,
    .commit = mem_commit,
    .scan = mem_scan,
};

struct mem_store *mem_store_new(void)
{
    struct mem_store *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    m->base.ops = &mem_store_ops;
    assert(m->fail_commits == 0);
    return m;
}

void mem_store_free(struct mem_store *store)
{
    if (store == NULL) {
        return;
    }
    assert(store->base.ops == &mem_store_ops || store->base.ops == &mem_store_ops_single);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        struct mem_cf *c = &store->cfs[cf];
        for (size_t i = 0; i < c->count; i++) {
            mem_record_free(&c->records[i]);
        }
        free(c->records);
    }
    free(store);
}

struct rt_store *mem_store_store(struct mem_store *store)
{
    assert(store != NULL);
    assert(store->base.ops == &mem_store_ops || store->base.ops == &mem_store_ops_single);
    return &store->base;
}

int mem_store_put_raw(struct mem_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len,
                      const uint8_t *val, size_t val_len)
{
    assert(store != NULL);
    assert(cf >= 0 && cf < RT_CF_COUNT);
    struct mem_pending p = {.cf = (uint8_t)cf, .op = RT_WRITE_PUT};
    int rv = mem_record_copy(&p.rec, key, key_len, val, val_len);
    if (rv == 0) {
        rv = mem_cf_reserve(&store->cfs[cf], 1);
        if (rv != 0) {
            mem_record_free(&p.rec);
        }
    }
    if (rv == 0) {
        mem_cf_apply(&store->cfs[cf], &p);
    }
    return rv;
}

void mem_store_fail_commits(struct mem_store *store, unsigned n)
{
    assert(store != NULL);
    assert(store->base.ops == &mem_store_ops || store->base.ops == &mem_store_ops_single);
    store->fail_commits = n;
}

void mem_store_batched_reads(struct mem_store *store, bool on)
{
    assert(store != NULL);
    store->base.ops = on ? &mem_store_ops : &mem_store_ops_single;
}

struct mem_store_reads mem_store_take_reads(struct mem_store *store)
{
    assert(store != NULL);
    struct mem_store_reads reads = store->reads;
    memset(&store->reads, 0, sizeof(store->reads));
    return reads;
}
