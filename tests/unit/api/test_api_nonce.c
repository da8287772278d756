/* Tests for the replay cache of api_envelope: SipHash-2-4 against the reference vectors, replay
 * and expiry at the window's exact edges, eviction (the documented hole) and its counter,
 * entries superseded in the middle of the ring, and a long random run checked step by step
 * against a simple model of the documented behaviour. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_envelope.h"
#include "rt_error.h"

#define T0 UINT64_C(1700000000000)
#define W  ((uint64_t)API_TIME_WINDOW_MS)

static const uint8_t test_key[API_NONCE_KEY_BYTES] = {0, 1, 2,  3,  4,  5,  6,  7,
                                                      8, 9, 10, 11, 12, 13, 14, 15};

/* A request with just what the cache reads. */
static struct api_request req_of(const char *app, const char *nonce, uint64_t ts_ms)
{
    struct api_request r;
    memset(&r, 0, sizeof(r));
    r.app = app;
    r.app_len = (uint32_t)strlen(app);
    r.nonce = nonce;
    r.nonce_len = (uint32_t)strlen(nonce);
    r.ts_ms = ts_ms;
    return r;
}

static int insert(struct api_nonce_cache *c, const char *app, const char *nonce, uint64_t ts_ms,
                  uint64_t now_ms)
{
    const struct api_request r = req_of(app, nonce, ts_ms);
    return api_nonce_cache_insert(c, &r, now_ms);
}

/* ---- SipHash ---- */

static void test_siphash_vectors(void **state)
{
    (void)state;
    /* The reference implementation's vectors: key 00..0f, message 00..n-1. */
    static const uint64_t want[] = {
        0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
        0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
        0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
        0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
        0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
        0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
        0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad,
        0xde4daaaca71dc9a5,
    };
    uint8_t msg[64];
    for (size_t i = 0; i < sizeof(msg); i++) {
        msg[i] = (uint8_t)i;
    }
    for (size_t n = 0; n < sizeof(want) / sizeof(want[0]); n++) {
        assert_true(api_siphash24(test_key, n == 0 ? NULL : msg, n) == want[n]);
    }
    static const uint8_t zero_key[API_NONCE_KEY_BYTES] = {0};
    assert_true(api_siphash24(zero_key, NULL, 0) == 0x1e924b9d737700d7);
}

/* ---- Cache ---- */

static void test_init_bounds(void **state)
{
    (void)state;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, 0, test_key), RT_EINVAL);
    assert_int_equal(api_nonce_cache_init(&c, API_NONCE_CACHE_ENTRIES_MAX + 1, test_key),
                     RT_EINVAL);
    assert_int_equal(api_nonce_cache_init(&c, 1, test_key), 0);
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0), 0);
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0), RT_EREPLAYED);
    assert_int_equal(insert(&c, "a", "nonce-02", T0, T0), 0); /* Evicts the only entry. */
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0), 0);
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 2);
    api_nonce_cache_free(&c);
    assert_int_equal(api_nonce_cache_init(&c, API_NONCE_CACHE_ENTRIES_DEFAULT, test_key), 0);
    api_nonce_cache_free(&c);
}

static void test_replay(void **state)
{
    (void)state;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, 64, test_key), 0);
    assert_int_equal(insert(&c, "shop_1", "nonce-0001", T0, T0), 0);
    assert_int_equal(insert(&c, "shop_1", "nonce-0001", T0, T0), RT_EREPLAYED);
    /* Same nonce, later ts (a new signature, same nonce): still a reuse within the window. */
    assert_int_equal(insert(&c, "shop_1", "nonce-0001", T0 + 1000, T0 + 10), RT_EREPLAYED);
    /* Per app: the same nonce from another app is new. */
    assert_int_equal(insert(&c, "shop_2", "nonce-0001", T0, T0), 0);
    assert_int_equal(insert(&c, "shop_1", "nonce-0002", T0, T0), 0);
    /* The app/nonce boundary is part of the key. */
    assert_int_equal(insert(&c, "ab", "cdefghij", T0, T0), 0);
    assert_int_equal(insert(&c, "abc", "defghij", T0, T0), 0);
    assert_int_equal(insert(&c, "abc", "defghij", T0, T0), RT_EREPLAYED);
    const struct api_nonce_stats st = api_nonce_cache_stats(&c);
    assert_int_equal(st.inserted, 5);
    assert_int_equal(st.replayed, 3);
    assert_int_equal(st.evicted_live, 0);
    api_nonce_cache_free(&c);
}

static void test_refusals(void **state)
{
    (void)state;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, 8, test_key), 0);
    /* Outside the window: refused, and nothing remembered. */
    assert_int_equal(insert(&c, "a", "nonce-01", T0 - W - 1, T0), RT_EUNAUTH);
    assert_int_equal(insert(&c, "a", "nonce-01", T0 + W + 1, T0), RT_EUNAUTH);
    /* Out-of-bounds views (the decoder never produces them). */
    char long_app[API_APP_BYTES_MAX + 2];
    memset(long_app, 'a', sizeof(long_app) - 1);
    long_app[sizeof(long_app) - 1] = '\0';
    char long_nonce[API_NONCE_BYTES_MAX + 2];
    memset(long_nonce, 'n', sizeof(long_nonce) - 1);
    long_nonce[sizeof(long_nonce) - 1] = '\0';
    assert_int_equal(insert(&c, long_app, "nonce-01", T0, T0), RT_EINVAL);
    assert_int_equal(insert(&c, "", "nonce-01", T0, T0), RT_EINVAL);
    assert_int_equal(insert(&c, "a", long_nonce, T0, T0), RT_EINVAL);
    assert_int_equal(insert(&c, "a", "", T0, T0), RT_EINVAL);
    long_app[API_APP_BYTES_MAX] = '\0';
    long_nonce[API_NONCE_BYTES_MAX] = '\0';
    assert_int_equal(insert(&c, long_app, long_nonce, T0, T0), 0);
    assert_int_equal(insert(&c, long_app, long_nonce, T0, T0), RT_EREPLAYED);
    assert_int_equal(api_nonce_cache_stats(&c).inserted, 1);
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0), 0);
    api_nonce_cache_free(&c);
}

/* An entry lives while now <= ts + W: exactly as long as the request could pass the time
 * check again. */
static void test_expiry_edges(void **state)
{
    (void)state;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, 16, test_key), 0);
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0), 0);
    /* The very same request, at the last instant it passes the time check. */
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0 + W), RT_EREPLAYED);
    /* One ms later it fails the time check itself: the cache need not remember it. */
    assert_int_equal(insert(&c, "a", "nonce-01", T0, T0 + W + 1), RT_EUNAUTH);
    /* The nonce used again with a fresh ts: new once the old entry expired, not before. */
    assert_int_equal(insert(&c, "a", "nonce-01", T0 + W, T0 + W), RT_EREPLAYED);
    assert_int_equal(insert(&c, "a", "nonce-01", T0 + W + 1, T0 + W + 1), 0);
    assert_int_equal(insert(&c, "a", "nonce-01", T0 + W + 1, T0 + W + 1), RT_EREPLAYED);

    /* A client clock 5 minutes fast: ts = now + W passes, and is remembered until ts + W. */
    const uint64_t now = T0 + 10 * W;
    assert_int_equal(insert(&c, "b", "nonce-02", now + W, now), 0);
    assert_int_equal(insert(&c, "b", "nonce-02", now + W, now + 2 * W), RT_EREPLAYED);
    assert_int_equal(insert(&c, "b", "nonce-02", now + W, now + 2 * W + 1), RT_EUNAUTH);
    assert_int_equal(insert(&c, "b", "nonce-02", now + 2 * W + 1, now + 2 * W + 1), 0);

    /* Expired entries leave from the old end without counting as evictions. */
    for (int i = 0; i < 16; i++) {
        char nonce[24];
        snprintf(nonce, sizeof(nonce), "fill-%04d", i);
        assert_int_equal(insert(&c, "c", nonce, now + 4 * W, now + 4 * W), 0);
    }
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 0);
    api_nonce_cache_free(&c);
}

/* Full of live entries: the oldest goes, and can then be replayed (the documented hole). */
static void test_eviction(void **state)
{
    (void)state;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, 4, test_key), 0);
    static const char *const n[] = {"nonce-01", "nonce-02", "nonce-03", "nonce-04", "nonce-05"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(insert(&c, "a", n[i], T0, T0 + (uint64_t)i), 0);
    }
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 1);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(insert(&c, "a", n[i], T0, T0 + 10), RT_EREPLAYED);
    }
    assert_int_equal(insert(&c, "a", n[0], T0, T0 + 10), 0); /* The hole. */
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 2);
    assert_int_equal(insert(&c, "a", n[1], T0, T0 + 10), 0); /* Evicted by the line above. */
    /* Ring now n3 n4 n0 n1; n2 went to make room for n1. */
    static const int live[] = {3, 4, 0, 1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(insert(&c, "a", n[live[i]], T0, T0 + 10), RT_EREPLAYED);
    }
    assert_int_equal(insert(&c, "a", n[2], T0, T0 + 10), 0);
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 4);
    api_nonce_cache_free(&c);
}

/* An expired entry found behind a live one is superseded in place: the old ring entry stays
 * until it reaches the old end, and popping it must not forget the new one. */
static void test_superseded(void **state)
{
    (void)state;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, 4, test_key), 0);
    assert_int_equal(insert(&c, "a", "long-lived", T0 + W, T0), 0); /* Expires T0 + 2W. */
    assert_int_equal(insert(&c, "a", "nonce-bbb", T0, T0), 0);      /* Expires T0 + W. */
    const uint64_t now = T0 + W + 1;
    assert_int_equal(insert(&c, "a", "nonce-bbb", now, now), 0); /* Supersedes. */
    assert_int_equal(insert(&c, "a", "nonce-bbb", now, now), RT_EREPLAYED);
    assert_int_equal(insert(&c, "a", "nonce-ccc", now, now), 0); /* Ring full now. */
    assert_int_equal(insert(&c, "a", "nonce-ddd", now, now), 0); /* Evicts long-lived. */
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 1);
    /* The next insert pops the dead "nonce-bbb" entry first (expired): the live one stays. */
    assert_int_equal(insert(&c, "a", "nonce-eee", now, now), 0);
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, 1);
    assert_int_equal(insert(&c, "a", "nonce-bbb", now, now), RT_EREPLAYED);
    assert_int_equal(insert(&c, "a", "nonce-ccc", now, now), RT_EREPLAYED);
    assert_int_equal(insert(&c, "a", "nonce-ddd", now, now), RT_EREPLAYED);
    assert_int_equal(insert(&c, "a", "nonce-eee", now, now), RT_EREPLAYED);
    api_nonce_cache_free(&c);
}

/* ---- Against a model ---- */

struct model_entry {
    int app;
    int nonce;
    uint64_t expire_ms;
    bool indexed; /* False once superseded. */
};

struct model {
    struct model_entry *e; /* FIFO, oldest first. */
    size_t count;
    size_t capacity;
    struct api_nonce_stats stats;
};

static void model_pop(struct model *m)
{
    memmove(m->e, m->e + 1, (m->count - 1) * sizeof(*m->e));
    m->count--;
}

/* The documented behaviour, spelt out naively. */
static int model_insert(struct model *m, int app, int nonce, uint64_t ts_ms, uint64_t now_ms)
{
    const uint64_t skew = ts_ms > now_ms ? ts_ms - now_ms : now_ms - ts_ms;
    if (skew > W) {
        return RT_EUNAUTH;
    }
    while (m->count > 0 && m->e[0].expire_ms < now_ms) {
        model_pop(m);
    }
    for (size_t i = 0; i < m->count; i++) {
        struct model_entry *e = &m->e[i];
        if (e->indexed && e->app == app && e->nonce == nonce) {
            if (e->expire_ms >= now_ms) {
                m->stats.replayed++;
                return RT_EREPLAYED;
            }
            e->indexed = false;
        }
    }
    if (m->count == m->capacity) {
        if (m->e[0].indexed && m->e[0].expire_ms >= now_ms) {
            m->stats.evicted_live++;
        }
        model_pop(m);
    }
    m->e[m->count++] = (struct model_entry){app, nonce, ts_ms + W, true};
    m->stats.inserted++;
    return 0;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static void run_model(uint32_t capacity, int apps, int nonces, uint64_t seed, int steps)
{
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, capacity, test_key), 0);
    struct model m = {.capacity = capacity};
    m.e = calloc(capacity, sizeof(*m.e));
    assert_non_null(m.e);
    uint64_t rng = seed;
    uint64_t now = T0;
    static const char *const app_names[] = {"a", "b", "shop_1", "shop-2"};
    for (int step = 0; step < steps; step++) {
        /* Time mostly creeps, sometimes leaps past the window, rarely steps back. */
        const uint64_t pick = rng_next(&rng) % 100;
        if (pick < 80) {
            now += rng_next(&rng) % 2000;
        } else if (pick < 95) {
            now += rng_next(&rng) % (3 * W);
        } else {
            now -= rng_next(&rng) % 1000;
        }
        const int app = (int)(rng_next(&rng) % (uint64_t)apps);
        const int nonce = (int)(rng_next(&rng) % (uint64_t)nonces);
        /* Client clocks anywhere in the window, now and then outside it. */
        uint64_t ts = now - W + rng_next(&rng) % (2 * W + 1);
        if (rng_next(&rng) % 50 == 0) {
            ts = now + W + 1 + rng_next(&rng) % 10;
        }
        char nonce_text[32];
        snprintf(nonce_text, sizeof(nonce_text), "nonce-%04d", nonce);
        const int want = model_insert(&m, app, nonce, ts, now);
        const int got = insert(&c, app_names[app], nonce_text, ts, now);
        if (got != want) {
            fail_msg("step %d: cache %d, model %d", step, got, want);
        }
        const struct api_nonce_stats st = api_nonce_cache_stats(&c);
        assert_int_equal(st.inserted, m.stats.inserted);
        assert_int_equal(st.replayed, m.stats.replayed);
        assert_int_equal(st.evicted_live, m.stats.evicted_live);
        assert_int_equal(c.count, m.count);
    }
    free(m.e);
    api_nonce_cache_free(&c);
}

static void test_model(void **state)
{
    (void)state;
    run_model(1, 2, 3, 1, 20000);
    run_model(2, 2, 5, 2, 20000);
    run_model(5, 3, 8, 3, 50000);
    run_model(16, 4, 40, 4, 100000);
    run_model(100, 4, 300, 5, 100000);
    run_model(1000, 4, 5000, 6, 100000);
}

/* A large cache at a high rate: the last `capacity` requests are always caught. */
static void test_high_rate(void **state)
{
    (void)state;
    const uint32_t capacity = 1u << 16;
    struct api_nonce_cache c;
    assert_int_equal(api_nonce_cache_init(&c, capacity, test_key), 0);
    const uint32_t total = 4 * capacity;
    char nonce[32];
    for (uint32_t i = 0; i < total; i++) {
        snprintf(nonce, sizeof(nonce), "n-%010u", i);
        const uint64_t now = T0 + i / 50; /* 50 000 req/s. */
        assert_int_equal(insert(&c, "shop_1", nonce, now, now), 0);
    }
    const uint64_t now = T0 + total / 50;
    for (uint32_t i = total - capacity; i < total; i += 97) {
        snprintf(nonce, sizeof(nonce), "n-%010u", i);
        assert_int_equal(insert(&c, "shop_1", nonce, now, now), RT_EREPLAYED);
    }
    assert_int_equal(api_nonce_cache_stats(&c).evicted_live, total - capacity);
    api_nonce_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors), cmocka_unit_test(test_init_bounds),
        cmocka_unit_test(test_replay),          cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_expiry_edges),    cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_superseded),      cmocka_unit_test(test_model),
        cmocka_unit_test(test_high_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
