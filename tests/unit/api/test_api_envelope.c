/* Tests for api_envelope: request decoding against the hostile list (every field missing,
 * repeated, of every wrong type, out of bounds, invalid UTF-8; unknown and non-str keys; lying
 * counts, deep nesting, trailing bytes, truncation and mutation at every offset), signature text
 * parsing, HMAC / Ed25519 / RSA verification with keys made here, the time window's edges, and
 * the response map read back with msgpack-c.
 *
 * Payloads are decoded from malloc'd copies of exactly their length, so that ASan reports any
 * read past the end that a bounds check should have prevented. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_envelope.h"
#include "api_frame.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"

#define TEST_BUF_MAX (8u * 1024u * 1024u)
#define TEST_KEY     "s3cr3t-app-key"
#define TEST_TS      UINT64_C(1700000000000)

/* ---- Helpers ---- */

static uint8_t *dup_exact(const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len == 0 ? 1 : len);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, data, len);
    }
    return copy;
}

/* The request fields in wire order; the test's own copy of the key names. */
enum field { F_V, F_ID, F_OP, F_APP, F_TS, F_NONCE, F_BODY, F_SIG, F_COUNT };
static const char *const field_names[F_COUNT] = {"v",  "id",    "op",   "app",
                                                 "ts", "nonce", "body", "sig"};
static const enum rt_mp_type field_types[F_COUNT] = {
    RT_MP_UINT, RT_MP_UINT, RT_MP_STR, RT_MP_STR, RT_MP_UINT, RT_MP_STR, RT_MP_BIN, RT_MP_STR,
};

enum mode {
    M_NORMAL,  /* The field with its spec value. */
    M_MISSING, /* Left out. */
    M_DUP,     /* Written twice, same value. */
    M_RAW,     /* Key, then raw[f] as the value. */
};

/* One request to encode, good by default; tests break one thing at a time. */
struct spec {
    uint64_t v, id, ts;
    const char *op, *app, *nonce, *sig; /* NUL-terminated (tests need no embedded NULs). */
    const uint8_t *body;
    size_t body_len;
    enum mode mode[F_COUNT];
    const uint8_t *raw[F_COUNT];
    size_t raw_len[F_COUNT];
    int unknown_at; /* Write an unknown key before field unknown_at (F_COUNT: at the end);
                     * -1 for none. */
    bool int_key;   /* Add an entry whose key is the uint 1. */
    char sig_buf[API_SIG_TEXT_BYTES_MAX + 1];
};

static const uint8_t default_body[] = {0x81, 0xa6, 'a', 'm', 'o', 'u', 'n', 't', 0x64};

/* Fill @r's signed fields from @s. */
static void spec_view(const struct spec *s, struct api_request *r)
{
    memset(r, 0, sizeof(*r));
    r->id = s->id;
    r->ts_ms = s->ts;
    r->op = s->op;
    r->op_len = (uint32_t)strlen(s->op);
    r->app = s->app;
    r->app_len = (uint32_t)strlen(s->app);
    r->nonce = s->nonce;
    r->nonce_len = (uint32_t)strlen(s->nonce);
    r->body = s->body;
    r->body_len = (uint32_t)s->body_len;
}

/* Sign @s with HMAC under @key: sig = "hmac-sha256=<hex>". */
static void spec_sign(struct spec *s, const char *key)
{
    struct api_request r;
    spec_view(s, &r);
    uint8_t mac[API_SIG_HMAC_BYTES];
    assert_int_equal(api_request_hmac(&r, (const uint8_t *)key, strlen(key), mac), 0);
    int n = snprintf(s->sig_buf, sizeof(s->sig_buf), "hmac-sha256=");
    for (size_t i = 0; i < sizeof(mac); i++) {
        n += snprintf(s->sig_buf + n, sizeof(s->sig_buf) - (size_t)n, "%02x", mac[i]);
    }
    s->sig = s->sig_buf;
}

static void spec_init(struct spec *s)
{
    memset(s, 0, sizeof(*s));
    s->v = 1;
    s->id = 42;
    s->ts = TEST_TS;
    s->op = "order.create";
    s->app = "shop_1";
    s->nonce = "nonce-0001";
    s->body = default_body;
    s->body_len = sizeof(default_body);
    s->unknown_at = -1;
    spec_sign(s, TEST_KEY);
}

static void write_value(struct rt_mp_writer *w, const struct spec *s, enum field f)
{
    switch (f) {
    case F_V:
        rt_mp_write_uint(w, s->v);
        break;
    case F_ID:
        rt_mp_write_uint(w, s->id);
        break;
    case F_OP:
        rt_mp_write_cstr(w, s->op);
        break;
    case F_APP:
        rt_mp_write_cstr(w, s->app);
        break;
    case F_TS:
        rt_mp_write_uint(w, s->ts);
        break;
    case F_NONCE:
        rt_mp_write_cstr(w, s->nonce);
        break;
    case F_BODY:
        rt_mp_write_bin(w, s->body, s->body_len);
        break;
    default:
        rt_mp_write_cstr(w, s->sig);
        break;
    }
}

/* Encode @s as a request payload into @buf (initialised here). */
static void spec_encode(const struct spec *s, struct rt_buf *buf)
{
    rt_buf_init(buf, TEST_BUF_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    uint32_t count = (s->unknown_at >= 0) + s->int_key;
    for (int f = 0; f < F_COUNT; f++) {
        count += s->mode[f] == M_MISSING ? 0 : s->mode[f] == M_DUP ? 2 : 1;
    }
    rt_mp_write_map(&w, count);
    if (s->int_key) {
        rt_mp_write_uint(&w, 1);
        rt_mp_write_uint(&w, 1);
    }
    for (int f = 0; f <= F_COUNT; f++) {
        if (s->unknown_at == f) {
            rt_mp_write_cstr(&w, "extra");
            rt_mp_write_uint(&w, 7);
        }
        if (f == F_COUNT || s->mode[f] == M_MISSING) {
            continue;
        }
        for (int k = 0; k < (s->mode[f] == M_DUP ? 2 : 1); k++) {
            rt_mp_write_cstr(&w, field_names[f]);
            if (s->mode[f] == M_RAW) {
                rt_mp_write_raw(&w, s->raw[f], s->raw_len[f]);
            } else {
                write_value(&w, s, (enum field)f);
            }
        }
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
}

/* Decode @len bytes from an exact-size copy; the copy is returned in *copy (caller frees) so
 * that views stay valid, or freed here if @copy is NULL. */
static int decode_bytes(const uint8_t *data, size_t len, struct api_request *req,
                        struct api_envelope_error *err, uint8_t **copy)
{
    uint8_t *c = dup_exact(data, len);
    int rv = api_envelope_decode(c, len, req, err);
    assert_true(strlen(err->reason) < sizeof(err->reason));
    assert_true(rv == 0 || err->reason[0] != '\0');
    if (copy != NULL) {
        *copy = c;
    } else {
        free(c);
    }
    return rv;
}

static int decode_spec(const struct spec *s, struct api_request *req,
                       struct api_envelope_error *err)
{
    struct rt_buf buf;
    spec_encode(s, &buf);
    int rv = decode_bytes(buf.data, buf.len, req, err, NULL);
    rt_buf_free(&buf);
    return rv;
}

/* The reason starts with "<prefix>: ". */
static void assert_reason(const struct api_envelope_error *err, const char *prefix)
{
    const size_t n = strlen(prefix);
    if (strncmp(err->reason, prefix, n) != 0 || err->reason[n] != ':') {
        fail_msg("reason \"%s\" does not name \"%s\"", err->reason, prefix);
    }
}

/* @s must fail with @code, the reason naming @field, and the id echoed (42) if readable. */
static void expect_reject(const struct spec *s, int code, const char *field, bool id_known)
{
    struct api_request req;
    struct api_envelope_error err;
    int rv = decode_spec(s, &req, &err);
    if (rv != code) {
        fail_msg("expected %s, got %s (%s)", rt_strerror(code), rt_strerror(rv), err.reason);
    }
    assert_reason(&err, field);
    assert_int_equal(err.id_known, id_known);
    assert_int_equal(err.id, id_known ? 42 : 0);
}

/* ---- Decoding: the good request ---- */

/* api_envelope_verify_hmac with @key prepared for this one call (api_hmac_init's error if it
 * cannot be: RT_EINVAL for an empty key). */
static int verify_hmac_key(const struct api_request *req, const char *key)
{
    struct api_hmac hmac;
    int rv = api_hmac_init(&hmac, (const uint8_t *)key, strlen(key));
    if (rv != 0) {
        return rv;
    }
    rv = api_envelope_verify_hmac(req, &hmac);
    api_hmac_free(&hmac);
    return rv;
}

static void test_decode_good(void **state)
{
    (void)state;
    struct spec s;
    spec_init(&s);
    struct rt_buf buf;
    spec_encode(&s, &buf);
    struct api_request req;
    struct api_envelope_error err;
    uint8_t *copy = NULL;
    assert_int_equal(decode_bytes(buf.data, buf.len, &req, &err, &copy), 0);
    assert_string_equal(err.reason, "");
    assert_true(err.id_known);
    assert_int_equal(err.id, 42);
    assert_int_equal(req.id, 42);
    assert_int_equal(req.ts_ms, TEST_TS);
    /* Views into the payload, not copies. */
    assert_true((const uint8_t *)req.op > copy && (const uint8_t *)req.op < copy + buf.len);
    assert_true(req.body > copy && req.body + req.body_len <= copy + buf.len);
    assert_int_equal(req.op_len, 12);
    assert_memory_equal(req.op, "order.create", 12);
    assert_int_equal(req.app_len, 6);
    assert_memory_equal(req.app, "shop_1", 6);
    assert_int_equal(req.nonce_len, 10);
    assert_memory_equal(req.nonce, "nonce-0001", 10);
    assert_int_equal(req.body_len, sizeof(default_body));
    assert_memory_equal(req.body, default_body, sizeof(default_body));
    assert_int_equal(req.sig.scheme, API_SIG_HMAC_SHA256);
    assert_int_equal(req.sig.len, API_SIG_HMAC_BYTES);
    assert_int_equal(verify_hmac_key(&req, TEST_KEY), 0);
    free(copy);
    rt_buf_free(&buf);
}

/* Key order does not matter; id 0, ts 0 and the largest uints are values like any other. */
static void test_decode_order_and_extremes(void **state)
{
    (void)state;
    struct spec s;
    spec_init(&s);
    s.id = 0;
    s.ts = 0;
    spec_sign(&s, TEST_KEY);
    struct rt_buf buf;
    rt_buf_init(&buf, TEST_BUF_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_map(&w, F_COUNT);
    for (int f = F_COUNT - 1; f >= 0; f--) { /* Reversed. */
        rt_mp_write_cstr(&w, field_names[f]);
        write_value(&w, &s, (enum field)f);
    }
    struct api_request req;
    struct api_envelope_error err;
    assert_int_equal(decode_bytes(buf.data, buf.len, &req, &err, NULL), 0);
    assert_int_equal(req.id, 0);
    assert_true(err.id_known);
    rt_buf_free(&buf);

    s.id = UINT64_MAX;
    s.ts = UINT64_MAX;
    assert_int_equal(decode_spec(&s, &req, &err), 0);
    assert_int_equal(req.id, UINT64_MAX);
    assert_int_equal(req.ts_ms, UINT64_MAX);
}

/* ---- Decoding: structure of the map ---- */

static void test_missing_each(void **state)
{
    (void)state;
    for (int f = 0; f < F_COUNT; f++) {
        struct spec s;
        spec_init(&s);
        s.mode[f] = M_MISSING;
        expect_reject(&s, RT_EINVAL, field_names[f], f != F_ID);
    }
    /* The empty map: the first field of the table is reported. */
    static const uint8_t empty[] = {0x80};
    struct api_request req;
    struct api_envelope_error err;
    assert_int_equal(decode_bytes(empty, sizeof(empty), &req, &err, NULL), RT_EINVAL);
    assert_string_equal(err.reason, "v: missing");
    assert_false(err.id_known);
}

static void test_duplicate_each(void **state)
{
    (void)state;
    for (int f = 0; f < F_COUNT; f++) {
        struct spec s;
        spec_init(&s);
        s.mode[f] = M_DUP;
        expect_reject(&s, RT_EINVAL, field_names[f], true);
        struct api_request req;
        struct api_envelope_error err;
        assert_int_equal(decode_spec(&s, &req, &err), RT_EINVAL);
        assert_non_null(strstr(err.reason, "duplicate"));
    }
}

static void test_unknown_and_bad_keys(void **state)
{
    (void)state;
    for (int at = 0; at <= F_COUNT; at++) {
        struct spec s;
        spec_init(&s);
        s.unknown_at = at;
        expect_reject(&s, RT_EINVAL, "request", true);
    }
    struct spec s;
    spec_init(&s);
    s.int_key = true;
    expect_reject(&s, RT_EINVAL, "request", true);

    /* Keys that are near misses of real ones. */
    static const char *const near[] = {"V", "ID", "op ", "", "nonce\0", "bodyx", "si"};
    for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
        struct rt_buf buf;
        spec_init(&s);
        s.mode[F_SIG] = M_MISSING;
        spec_encode(&s, &buf);
        /* Append one more entry and bump the fixmap count. */
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, &buf);
        rt_mp_write_str(&w, near[i], i == 4 ? 6 : strlen(near[i]));
        rt_mp_write_cstr(&w, s.sig);
        buf.data[0] = (uint8_t)(0x80 | F_COUNT);
        struct api_request req;
        struct api_envelope_error err;
        assert_int_equal(decode_bytes(buf.data, buf.len, &req, &err, NULL), RT_EINVAL);
        assert_reason(&err, "request");
        rt_buf_free(&buf);
    }
}

/* One sample of every msgpack type, to put where a field's value goes. */
struct sample {
    enum rt_mp_type type;
    const uint8_t *bytes;
    size_t len;
};
#define SAMPLE(type, ...)                                                                          \
    {                                                                                              \
        type, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})               \
    }
static const struct sample samples[] = {
    SAMPLE(RT_MP_NIL, 0xc0),
    SAMPLE(RT_MP_BOOL, 0xc3),
    SAMPLE(RT_MP_BOOL, 0xc2),
    SAMPLE(RT_MP_UINT, 0x05),
    SAMPLE(RT_MP_UINT, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1),
    SAMPLE(RT_MP_INT, 0xff),
    SAMPLE(RT_MP_INT, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
    SAMPLE(RT_MP_FLOAT, 0xca, 0x3f, 0x80, 0x00, 0x00),
    SAMPLE(RT_MP_FLOAT, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0),
    SAMPLE(RT_MP_STR, 0xa1, 'x'),
    SAMPLE(RT_MP_STR, 0xa0),
    SAMPLE(RT_MP_BIN, 0xc4, 0x01, 0x00),
    SAMPLE(RT_MP_ARRAY, 0x91, 0x01),
    SAMPLE(RT_MP_ARRAY, 0x90),
    SAMPLE(RT_MP_MAP, 0x81, 0xa1, 'k', 0x01),
    SAMPLE(RT_MP_MAP, 0x80),
    SAMPLE(RT_MP_EXT, 0xd4, 0x01, 0x00),
};

static void test_wrong_types_every_field(void **state)
{
    (void)state;
    size_t checked = 0;
    for (int f = 0; f < F_COUNT; f++) {
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
            if (samples[i].type == field_types[f]) {
                continue;
            }
            struct spec s;
            spec_init(&s);
            s.mode[f] = M_RAW;
            s.raw[f] = samples[i].bytes;
            s.raw_len[f] = samples[i].len;
            /* A wrong-typed v is not a version: it is a bad argument. */
            expect_reject(&s, RT_EINVAL, field_names[f], f != F_ID);
            struct api_request req;
            struct api_envelope_error err;
            assert_int_equal(decode_spec(&s, &req, &err), RT_EINVAL);
            assert_non_null(strstr(err.reason, "expected"));
            checked++;
        }
    }
    assert_true(checked > 8 * 10);
}

static void test_version(void **state)
{
    (void)state;
    static const uint64_t bad[] = {0, 2, 255, UINT64_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct spec s;
        spec_init(&s);
        s.v = bad[i];
        expect_reject(&s, RT_EVERSION, "v", true);
        /* A later version may have other keys: the version is what gets reported. */
        s.unknown_at = 0;
        s.mode[F_NONCE] = M_MISSING;
        expect_reject(&s, RT_EVERSION, "v", true);
        /* Even after the field that would fail first. */
        spec_init(&s);
        s.v = bad[i];
        s.mode[F_ID] = M_RAW;
        s.raw[F_ID] = (const uint8_t *)"\xc0";
        s.raw_len[F_ID] = 1;
        expect_reject(&s, RT_EVERSION, "v", false);
    }
}

/* ---- Decoding: bounds of each str ---- */

static void expect_field_value(enum field f, const char *value, int code)
{
    struct spec s;
    spec_init(&s);
    if (f == F_OP) {
        s.op = value;
    } else if (f == F_APP) {
        s.app = value;
    } else if (f == F_NONCE) {
        s.nonce = value;
    } else {
        s.sig = value;
    }
    struct api_request req;
    struct api_envelope_error err;
    const int rv = decode_spec(&s, &req, &err);
    if (rv != code) {
        fail_msg("%s \"%s\": expected %d, got %d (%s)", field_names[f], value, code, rv,
                 err.reason);
    }
    if (code != 0) {
        assert_reason(&err, field_names[f]);
        assert_true(err.id_known);
        assert_int_equal(err.id, 42);
    }
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_op_bounds(void **state)
{
    (void)state;
    expect_field_value(F_OP, "a", 0);
    expect_field_value(F_OP, "cluster.remove_node", 0);
    expect_field_value(F_OP, "", RT_EINVAL);
    expect_field_value(F_OP, "Order.create", RT_EINVAL);
    expect_field_value(F_OP, "order.create2", RT_EINVAL);
    expect_field_value(F_OP, "order-create", RT_EINVAL);
    expect_field_value(F_OP, "order create", RT_EINVAL);
    expect_field_value(F_OP,
                       "order.cr\xc3\xa9"
                       "ate",
                       RT_EINVAL); /* Valid UTF-8, not ASCII. */
    char *s = repeat('a', API_OP_BYTES_MAX);
    expect_field_value(F_OP, s, 0);
    free(s);
    s = repeat('a', API_OP_BYTES_MAX + 1);
    expect_field_value(F_OP, s, RT_EINVAL);
    free(s);
    s = repeat('a', 512 * 1024); /* Huge: a str32 well inside the frame. */
    expect_field_value(F_OP, s, RT_EINVAL);
    free(s);
}

static void test_app_bounds(void **state)
{
    (void)state;
    expect_field_value(F_APP, "admin", 0);
    expect_field_value(F_APP, "A", 0);
    expect_field_value(F_APP, "Shop-1_x", 0);
    expect_field_value(F_APP, "", RT_EINVAL);
    expect_field_value(F_APP, "shop 1", RT_EINVAL);
    expect_field_value(F_APP, "shop/1", RT_EINVAL);
    expect_field_value(F_APP, "shop.1", RT_EINVAL);
    char *s = repeat('z', API_APP_BYTES_MAX);
    expect_field_value(F_APP, s, 0);
    free(s);
    s = repeat('z', API_APP_BYTES_MAX + 1);
    expect_field_value(F_APP, s, RT_EINVAL);
    free(s);
    s = repeat('z', 100000);
    expect_field_value(F_APP, s, RT_EINVAL);
    free(s);
}

static void test_nonce_bounds(void **state)
{
    (void)state;
    expect_field_value(F_NONCE, "12345678", 0);
    expect_field_value(F_NONCE, "with space ~!", 0);
    expect_field_value(F_NONCE, "1234567", RT_EINVAL);
    expect_field_value(F_NONCE,
                       "abc\x01"
                       "defgh",
                       RT_EINVAL);
    expect_field_value(F_NONCE,
                       "abc\x7f"
                       "defgh",
                       RT_EINVAL);
    expect_field_value(F_NONCE, "abc\ndefgh", RT_EINVAL); /* Would forge a signing line. */
    char *s = repeat('n', API_NONCE_BYTES_MAX);
    expect_field_value(F_NONCE, s, 0);
    free(s);
    s = repeat('n', API_NONCE_BYTES_MAX + 1);
    expect_field_value(F_NONCE, s, RT_EINVAL);
    free(s);
    s = repeat('n', 300000);
    expect_field_value(F_NONCE, s, RT_EINVAL);
    free(s);
    s = repeat('s', 200000); /* A huge sig. */
    expect_field_value(F_SIG, s, RT_EINVAL);
    free(s);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", /* Never valid. */
        "abcdefg\xc3",                      /* Truncated sequence. */
        "abc\xc0\xafxyzw",                  /* Overlong '/'. */
        "abc\xed\xa0\x80xyzw",              /* Surrogate. */
        "abcd\xf4\x90\x80\x80xyz",          /* Above U+10FFFF. */
        "abcdefg\x80",                      /* Lone continuation byte. */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_field_value(F_OP, bad[i], RT_EINVAL);
        expect_field_value(F_APP, bad[i], RT_EINVAL);
        expect_field_value(F_NONCE, bad[i], RT_EINVAL);
        char sig[200];
        snprintf(sig, sizeof(sig), "hmac-sha256=%.60s%s",
                 "0000000000000000000000000000000000000000000000000000000000000000", bad[i]);
        expect_field_value(F_SIG, sig, RT_EINVAL);
        snprintf(sig, sizeof(sig), "ed25519=%s", bad[i]);
        expect_field_value(F_SIG, sig, RT_EINVAL);
    }
}

/* ---- Decoding: the body ---- */

static void expect_body(const uint8_t *body, size_t len, int code)
{
    struct spec s;
    spec_init(&s);
    s.body = body;
    s.body_len = len;
    struct api_request req;
    struct api_envelope_error err;
    const int rv = decode_spec(&s, &req, &err);
    if (rv != code) {
        fail_msg("body of %zu bytes: expected %d, got %d (%s)", len, code, rv, err.reason);
    }
    if (code != 0) {
        assert_reason(&err, "body");
        assert_int_equal(err.id, 42);
    }
}

/* A body map holding "a": arrays nested so that @depth containers are open in all. */
static size_t nested_body(uint8_t *out, size_t depth)
{
    size_t n = 0;
    out[n++] = 0x81;
    out[n++] = 0xa1;
    out[n++] = 'a';
    for (size_t d = 1; d < depth; d++) {
        out[n++] = d + 1 == depth ? 0x90 : 0x91;
    }
    if (depth == 1) {
        out[n++] = 0x01;
    }
    return n;
}

static void test_body(void **state)
{
    (void)state;
    static const uint8_t empty_map[] = {0x80};
    expect_body(empty_map, sizeof(empty_map), 0);
    static const uint8_t array[] = {0x91, 0x01};
    expect_body(array, sizeof(array), RT_EINVAL);
    static const uint8_t uint[] = {0x05};
    expect_body(uint, sizeof(uint), RT_EINVAL);
    static const uint8_t str[] = {0xa1, 'x'};
    expect_body(str, sizeof(str), RT_EINVAL);
    expect_body(empty_map, 0, RT_EINVAL); /* An empty bin. */
    static const uint8_t trailing[] = {0x80, 0x80};
    expect_body(trailing, sizeof(trailing), RT_EINVAL);
    static const uint8_t truncated[] = {0x81, 0xa1, 'a'};
    expect_body(truncated, sizeof(truncated), RT_EINVAL);
    static const uint8_t reserved[] = {0x81, 0xa1, 'a', 0xc1};
    expect_body(reserved, sizeof(reserved), RT_EINVAL);
    /* Counts larger than the bytes left. */
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01};
    expect_body(map32, sizeof(map32), RT_EINVAL);
    static const uint8_t array32[] = {0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_body(array32, sizeof(array32), RT_EINVAL);
    static const uint8_t str32[] = {0x81, 0xa1, 'a', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    expect_body(str32, sizeof(str32), RT_EINVAL);

    uint8_t deep[64];
    expect_body(deep, nested_body(deep, 1), 0);
    expect_body(deep, nested_body(deep, RT_MP_DEPTH_MAX), 0);
    expect_body(deep, nested_body(deep, RT_MP_DEPTH_MAX + 1), RT_EINVAL);
    expect_body(deep, nested_body(deep, 40), RT_EINVAL);
}

/* ---- Decoding: frames that cannot be read ---- */

static void expect_malformed(const uint8_t *data, size_t len)
{
    struct api_request req;
    struct api_envelope_error err;
    assert_int_equal(decode_bytes(data, len, &req, &err, NULL), RT_EMALFORMED);
    assert_reason(&err, "request");
    assert_false(err.id_known); /* CONTRACT: answered with id 0. */
    assert_int_equal(err.id, 0);
}

static void test_unreadable(void **state)
{
    (void)state;
    expect_malformed(NULL, 0);
    static const uint8_t array[] = {0x92, 0xa1, 'v', 0x01};
    expect_malformed(array, sizeof(array));
    static const uint8_t uint[] = {0x05};
    expect_malformed(uint, sizeof(uint));
    static const uint8_t nil[] = {0xc0};
    expect_malformed(nil, sizeof(nil));
    static const uint8_t reserved[] = {0xc1};
    expect_malformed(reserved, sizeof(reserved));
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
    expect_malformed(map32, sizeof(map32));
    static const uint8_t map16[] = {0xde, 0x00, 0x09, 0xa1, 'v', 0x01};
    expect_malformed(map16, sizeof(map16));
    static const uint8_t str32[] = {0x81, 0xa2, 'o', 'p', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    expect_malformed(str32, sizeof(str32));
    static const uint8_t bin32[] = {0x81, 0xa4, 'b', 'o', 'd', 'y', 0xc6, 0x7f, 0xff, 0xff, 0xff};
    expect_malformed(bin32, sizeof(bin32));

    /* A good request with bytes after it. */
    struct spec s;
    spec_init(&s);
    struct rt_buf buf;
    spec_encode(&s, &buf);
    assert_int_equal(rt_buf_append(&buf, "\x80", 1), 0);
    expect_malformed(buf.data, buf.len);
    rt_buf_free(&buf);

    /* A value nested 40 deep inside the request map itself. */
    uint8_t deep[64];
    size_t n = 0;
    deep[n++] = 0x81;
    deep[n++] = 0xa2;
    deep[n++] = 'o';
    deep[n++] = 'p';
    for (int d = 0; d < 40; d++) {
        deep[n++] = d == 39 ? 0x90 : 0x91;
    }
    expect_malformed(deep, n);
}

/* Every proper prefix of a good request is unreadable (a map cut short). */
static void test_truncated_everywhere(void **state)
{
    (void)state;
    struct spec s;
    spec_init(&s);
    struct rt_buf buf;
    spec_encode(&s, &buf);
    for (size_t len = 0; len < buf.len; len++) {
        expect_malformed(buf.data, len);
    }
    rt_buf_free(&buf);
}

/* Every byte of a good request replaced by a few values: whatever comes back is one of the
 * documented results, and a success is a consistent request. Under ASan this is a small,
 * deterministic fuzz. */
static void test_mutated_everywhere(void **state)
{
    (void)state;
    struct spec s;
    spec_init(&s);
    struct rt_buf buf;
    spec_encode(&s, &buf);
    static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xbf, 0xc0,
                                     0xc1, 0xc4, 0xcf, 0xd9, 0xdb, 0xdc, 0xdf, 0xe0, 0xff};
    size_t ok = 0;
    for (size_t i = 0; i < buf.len; i++) {
        const uint8_t orig = buf.data[i];
        for (size_t k = 0; k <= sizeof(values); k++) {
            buf.data[i] = k == sizeof(values) ? (uint8_t)(orig ^ 0x01) : values[k];
            struct api_request req;
            struct api_envelope_error err;
            uint8_t *copy = NULL;
            const int rv = decode_bytes(buf.data, buf.len, &req, &err, &copy);
            assert_true(rv == 0 || rv == RT_EMALFORMED || rv == RT_EINVAL || rv == RT_EVERSION);
            if (rv == 0) {
                ok++;
                assert_true(req.op_len >= 1 && req.op_len <= API_OP_BYTES_MAX);
                assert_true(req.app_len >= 1 && req.app_len <= API_APP_BYTES_MAX);
                assert_true(req.nonce_len >= API_NONCE_BYTES_MIN);
                assert_int_equal(rt_mp_validate(req.body, req.body_len), 0);
                assert_true(req.sig.scheme != API_SIG_NONE);
                const int v = verify_hmac_key(&req, TEST_KEY);
                assert_true(v == 0 || v == RT_EUNAUTH);
            } else if (rv == RT_EMALFORMED) {
                assert_false(err.id_known);
            }
            free(copy);
        }
        buf.data[i] = orig;
    }
    assert_true(ok > 0); /* Some mutations stay valid (a different id, a different op...). */
    rt_buf_free(&buf);
}

/* ---- Signature text ---- */

static void sig_text(char *out, size_t out_len, const char *scheme, const uint8_t *raw,
                     size_t raw_len)
{
    assert_true(out_len > strlen(scheme) + 4 * ((raw_len + 2) / 3));
    const int n = snprintf(out, out_len, "%s", scheme);
    const int b = EVP_EncodeBlock((unsigned char *)out + n, raw, (int)raw_len);
    assert_int_equal(b, 4 * (int)((raw_len + 2) / 3));
}

static int parse(const char *text, struct api_sig *sig)
{
    const size_t len = strlen(text);
    uint8_t *copy = dup_exact((const uint8_t *)text, len);
    const char *reason = NULL;
    int rv = api_sig_parse((const char *)copy, len, sig, &reason);
    assert_true(rv == 0 ? reason == NULL : reason != NULL);
    free(copy);
    return rv;
}

static void test_sig_hmac_text(void **state)
{
    (void)state;
    struct api_sig sig;
    char text[128];
    char hex[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", (unsigned)(i * 7 + 0xa0) & 0xffu);
    }
    snprintf(text, sizeof(text), "hmac-sha256=%s", hex);
    assert_int_equal(parse(text, &sig), 0);
    assert_int_equal(sig.scheme, API_SIG_HMAC_SHA256);
    assert_int_equal(sig.len, 32);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(sig.bytes[i], (uint8_t)(i * 7 + 0xa0));
    }
    /* NULL reason is allowed. */
    assert_int_equal(api_sig_parse(text, strlen(text), &sig, NULL), 0);

    char bad[128];
    snprintf(bad, sizeof(bad), "hmac-sha256=%s", hex);
    bad[12] = 'A'; /* Uppercase hex: one spelling per signature. */
    assert_int_equal(parse(bad, &sig), RT_EINVAL);
    bad[12] = 'g';
    assert_int_equal(parse(bad, &sig), RT_EINVAL);
    bad[12] = ' ';
    assert_int_equal(parse(bad, &sig), RT_EINVAL);
    snprintf(bad, sizeof(bad), "hmac-sha256=%.63s", hex);
    assert_int_equal(parse(bad, &sig), RT_EINVAL);
    snprintf(bad, sizeof(bad), "hmac-sha256=%s0", hex);
    assert_int_equal(parse(bad, &sig), RT_EINVAL);
    snprintf(bad, sizeof(bad), "hmac-sha256=%s00", hex);
    assert_int_equal(parse(bad, &sig), RT_EINVAL);
    assert_int_equal(parse("hmac-sha256=", &sig), RT_EINVAL);

    /* Unknown or misspelt schemes. */
    static const char *const schemes[] = {
        "hmac-sha1=", "HMAC-SHA256=", "hmac-sha256:", "hmac-sha256 =", "sha256=", "",
        "=",          "ed448=",       "hmac-sha256"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        snprintf(bad, sizeof(bad), "%s%s", schemes[i], hex);
        assert_int_equal(parse(bad, &sig), RT_EINVAL);
    }
    assert_int_equal(parse("", &sig), RT_EINVAL);
}

static void test_sig_base64_text(void **state)
{
    (void)state;
    uint8_t raw[600];
    for (size_t i = 0; i < sizeof(raw); i++) {
        raw[i] = (uint8_t)(i * 131 + 17);
    }
    struct api_sig sig;
    char text[1024];

    /* Ed25519: exactly 64 bytes. */
    sig_text(text, sizeof(text), "ed25519=", raw, 64);
    assert_int_equal(parse(text, &sig), 0);
    assert_int_equal(sig.scheme, API_SIG_ED25519);
    assert_int_equal(sig.len, 64);
    assert_memory_equal(sig.bytes, raw, 64);
    sig_text(text, sizeof(text), "ed25519=", raw, 63);
    assert_int_equal(parse(text, &sig), RT_EINVAL);
    sig_text(text, sizeof(text), "ed25519=", raw, 65);
    assert_int_equal(parse(text, &sig), RT_EINVAL);
    sig_text(text, sizeof(text), "ed25519=", raw, 66);
    assert_int_equal(parse(text, &sig), RT_EINVAL);

    /* RSA: every size from 2048 to 4096 bits, and just outside. */
    for (size_t n = API_SIG_RSA_BYTES_MIN - 1; n <= API_SIG_RSA_BYTES_MAX + 1; n++) {
        sig_text(text, sizeof(text), "rsa-sha256=", raw + n % 7, n);
        const int want = n >= API_SIG_RSA_BYTES_MIN && n <= API_SIG_RSA_BYTES_MAX ? 0 : RT_EINVAL;
        assert_int_equal(parse(text, &sig), want);
        if (want == 0) {
            assert_int_equal(sig.scheme, API_SIG_RSA_SHA256);
            assert_int_equal(sig.len, n);
            assert_memory_equal(sig.bytes, raw + n % 7, n);
        }
    }
    sig_text(text, sizeof(text), "rsa-sha256=", raw, 128); /* A 1024-bit key's. */
    assert_int_equal(parse(text, &sig), RT_EINVAL);
    sig_text(text, sizeof(text), "rsa-sha256=", raw, 600);
    assert_int_equal(parse(text, &sig), RT_EINVAL); /* Longer than the text limit. */

    /* Bad base64, on a good Ed25519 text (88 characters, ending "=="). */
    char good[128];
    sig_text(good, sizeof(good), "ed25519=", raw, 64);
    const size_t len = strlen(good);
    assert_int_equal(len, 8 + 88);
    assert_string_equal(good + len - 2, "==");
    struct {
        size_t at;
        char c;
    } edits[] = {
        {8, '-'},                  /* URL-safe alphabet. */
        {9, '_'},       {10, '='}, /* Padding in the middle. */
        {11, ' '},      {12, '\n'},     {13, '\0'},
        {14, '\xff'},   {len - 3, '='}, /* "===": too much padding. */
        {len - 1, 'A'},                 /* "=A": padding then data. */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char t[128];
        memcpy(t, good, len + 1);
        t[edits[i].at] = edits[i].c;
        uint8_t *copy = dup_exact((const uint8_t *)t, len);
        assert_int_equal(api_sig_parse((const char *)copy, len, &sig, NULL), RT_EINVAL);
        free(copy);
    }
    /* Non-canonical: the last data character before "==" carries 4 unused bits; set one. */
    {
        char t[128];
        memcpy(t, good, len + 1);
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const size_t v = (size_t)(strchr(alphabet, t[len - 3]) - alphabet);
        assert_int_equal(v & 0x0f, 0);
        t[len - 3] = alphabet[v | 1];
        assert_int_equal(parse(t, &sig), RT_EINVAL);
    }
    /* Unpadded, or padding cut short. */
    good[len - 2] = '\0';
    assert_int_equal(parse(good, &sig), RT_EINVAL);
    good[len - 1 - 2] = '\0';
    assert_int_equal(parse(good, &sig), RT_EINVAL);
    assert_int_equal(parse("ed25519=", &sig), RT_EINVAL);
    assert_int_equal(parse("ed25519====", &sig), RT_EINVAL);
    /* All-zero signature: 86 'A' and "==". */
    char zeros[8 + 88 + 1];
    memcpy(zeros, "ed25519=", 8);
    memset(zeros + 8, 'A', 86);
    memcpy(zeros + 94, "==", 3);
    assert_int_equal(parse(zeros, &sig), 0);
    assert_int_equal(sig.len, 64);
    for (size_t i = 0; i < 64; i++) {
        assert_int_equal(sig.bytes[i], 0);
    }
}

/* Our base64 reader against OpenSSL's, over random signatures of every RSA size. */
static void test_sig_base64_cross(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252u;
    for (size_t n = API_SIG_RSA_BYTES_MIN; n <= API_SIG_RSA_BYTES_MAX; n++) {
        uint8_t raw[API_SIG_RSA_BYTES_MAX];
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            raw[i] = (uint8_t)x;
        }
        char text[API_SIG_TEXT_BYTES_MAX + 1];
        sig_text(text, sizeof(text), "rsa-sha256=", raw, n);
        assert_true(strlen(text) <= API_SIG_TEXT_BYTES_MAX);
        struct api_sig sig;
        assert_int_equal(parse(text, &sig), 0);
        uint8_t back[API_SIG_RSA_BYTES_MAX + 3];
        const int m =
            EVP_DecodeBlock(back, (const unsigned char *)text + 11, (int)strlen(text) - 11);
        assert_true(m >= (int)n); /* EVP_DecodeBlock keeps the pad bytes as zeros. */
        assert_memory_equal(sig.bytes, back, n);
        assert_int_equal(sig.len, n);
    }
}

/* ---- Signatures ---- */

static void test_signing_string(void **state)
{
    (void)state;
    struct spec s;
    spec_init(&s);
    struct api_request r;
    spec_view(&s, &r);
    struct rt_buf buf;
    rt_buf_init(&buf, TEST_BUF_MAX);
    assert_int_equal(api_signing_string(&r, &buf), 0);
    static const char head[] = "order.create\nshop_1\n1700000000000\nnonce-0001\n";
    assert_int_equal(buf.len, sizeof(head) - 1 + sizeof(default_body));
    assert_memory_equal(buf.data, head, sizeof(head) - 1);
    assert_memory_equal(buf.data + sizeof(head) - 1, default_body, sizeof(default_body));

    /* decimal(ts) at both ends of its range. */
    r.ts_ms = 0;
    rt_buf_reset(&buf);
    assert_int_equal(api_signing_string(&r, &buf), 0);
    assert_memory_equal(buf.data, "order.create\nshop_1\n0\nnonce-0001\n", 33);
    r.ts_ms = UINT64_MAX;
    rt_buf_reset(&buf);
    assert_int_equal(api_signing_string(&r, &buf), 0);
    assert_memory_equal(buf.data, "order.create\nshop_1\n18446744073709551615\nnonce-0001\n", 52);

    /* HMAC over the pieces equals HMAC over the string. */
    uint8_t ours[API_SIG_HMAC_BYTES];
    assert_int_equal(api_request_hmac(&r, (const uint8_t *)TEST_KEY, strlen(TEST_KEY), ours), 0);
    uint8_t theirs[EVP_MAX_MD_SIZE];
    unsigned theirs_len = 0;
    assert_non_null(HMAC(EVP_sha256(), TEST_KEY, (int)strlen(TEST_KEY), buf.data, buf.len, theirs,
                         &theirs_len));
    assert_int_equal(theirs_len, API_SIG_HMAC_BYTES);
    assert_memory_equal(ours, theirs, API_SIG_HMAC_BYTES);
    assert_int_equal(api_request_hmac(&r, (const uint8_t *)"", 0, ours), RT_EINVAL);

    /* A prepared key serves request after request and carries nothing from one to the next:
     * each MAC equals OpenSSL's one-shot HMAC over that request's signing string alone. */
    struct api_hmac hmac;
    assert_int_equal(api_hmac_init(&hmac, (const uint8_t *)TEST_KEY, strlen(TEST_KEY)), 0);
    static const char *const nonces[] = {"nonce-0001", "another-nonce", "nonce-0001"};
    for (unsigned i = 0; i < 3; i++) {
        r.ts_ms = 1700000000000u + i;
        r.nonce = nonces[i];
        r.nonce_len = (uint32_t)strlen(nonces[i]);
        rt_buf_reset(&buf);
        assert_int_equal(api_signing_string(&r, &buf), 0);
        assert_int_equal(api_hmac_request(&hmac, &r, ours), 0);
        assert_non_null(HMAC(EVP_sha256(), TEST_KEY, (int)strlen(TEST_KEY), buf.data, buf.len,
                             theirs, &theirs_len));
        assert_memory_equal(ours, theirs, API_SIG_HMAC_BYTES);
    }
    api_hmac_free(&hmac);
    api_hmac_free(&hmac); /* Safe twice: freeing empties it. */
    assert_int_equal(api_hmac_init(&hmac, (const uint8_t *)"", 0), RT_EINVAL);
    assert_null(hmac.ctx);
    api_hmac_free(&hmac);

    /* No room: the buffer is left as it was. */
    struct rt_buf tiny;
    rt_buf_init(&tiny, 20);
    assert_int_equal(rt_buf_append(&tiny, "ab", 2), 0);
    assert_int_equal(api_signing_string(&r, &tiny), RT_ETOOLARGE);
    assert_int_equal(tiny.len, 2);
    rt_buf_free(&tiny);
    rt_buf_free(&buf);
}

/* Decode @s and verify it with HMAC under @key. */
static int verify_spec_hmac(const struct spec *s, const char *key)
{
    struct rt_buf buf;
    spec_encode(s, &buf);
    struct api_request req;
    struct api_envelope_error err;
    uint8_t *copy = NULL;
    assert_int_equal(decode_bytes(buf.data, buf.len, &req, &err, &copy), 0);
    int rv = verify_hmac_key(&req, key);
    free(copy);
    rt_buf_free(&buf);
    return rv;
}

static void test_verify_hmac(void **state)
{
    (void)state;
    struct spec s;
    spec_init(&s);
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), 0);
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY "x"), RT_EUNAUTH);
    assert_int_equal(verify_spec_hmac(&s, "s3cr3t-app-kez"), RT_EUNAUTH);
    assert_int_equal(verify_spec_hmac(&s, ""), RT_EINVAL);

    /* Each signed field changed after signing: one byte of the body, op, app, nonce; ts + 1. */
    uint8_t body[sizeof(default_body)];
    memcpy(body, default_body, sizeof(body));
    body[sizeof(body) - 1] ^= 0x01; /* amount 100 -> 101 */
    spec_init(&s);
    s.body = body;
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    spec_init(&s);
    s.op = "order.creatf";
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    spec_init(&s);
    s.app = "shop_2";
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    spec_init(&s);
    s.nonce = "nonce-0002";
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    spec_init(&s);
    s.ts = TEST_TS + 1;
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    /* Moving bytes between fields changes the string: "ab"+"c" is not "a"+"bc". */
    spec_init(&s);
    s.op = "order.creat";
    s.app = "eshop_1";
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    /* id and v are not signed: changing id keeps the signature good. */
    spec_init(&s);
    s.id = 43;
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), 0);
    /* Every single bit of the MAC matters. */
    for (size_t i = 12; i < 12 + 64; i++) {
        spec_init(&s);
        s.sig_buf[i] = s.sig_buf[i] == '0' ? '1' : '0';
        assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);
    }
}

/* Sign the signing string of @s with @key (Ed25519: @md NULL; RSA: SHA-256, PKCS#1 v1.5 or
 * PSS) and put the sig text in @s. */
static void spec_sign_pkey(struct spec *s, EVP_PKEY *key, const char *scheme, bool pss)
{
    struct api_request r;
    spec_view(s, &r);
    struct rt_buf msg;
    rt_buf_init(&msg, TEST_BUF_MAX);
    assert_int_equal(api_signing_string(&r, &msg), 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    const bool ed = strcmp(scheme, "ed25519=") == 0;
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestSignInit(md, &pctx, ed ? NULL : EVP_sha256(), NULL, key), 1);
    if (pss) {
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
    }
    uint8_t sig[API_SIG_BYTES_MAX + 64];
    size_t sig_len = sizeof(sig);
    assert_int_equal(EVP_DigestSign(md, sig, &sig_len, msg.data, msg.len), 1);
    EVP_MD_CTX_free(md);
    rt_buf_free(&msg);
    sig_text(s->sig_buf, sizeof(s->sig_buf), scheme, sig, sig_len);
    s->sig = s->sig_buf;
}

static int verify_spec_pkey(const struct spec *s, EVP_PKEY *key, size_t scratch_max)
{
    struct rt_buf buf;
    spec_encode(s, &buf);
    struct api_request req;
    struct api_envelope_error err;
    uint8_t *copy = NULL;
    const int d = decode_bytes(buf.data, buf.len, &req, &err, &copy);
    if (d != 0) {
        fail_msg("decode: %s", err.reason);
    }
    struct rt_buf scratch;
    rt_buf_init(&scratch, scratch_max);
    int rv = api_envelope_verify_pubkey(&req, key, &scratch);
    /* Reused scratch gives the same answer. */
    if (rv == 0 || rv == RT_EUNAUTH) {
        assert_int_equal(api_envelope_verify_pubkey(&req, key, &scratch), rv);
    }
    rt_buf_free(&scratch);
    free(copy);
    rt_buf_free(&buf);
    return rv;
}

/* A public-key-only copy of @key through PEM, as app.create stores it. */
static EVP_PKEY *public_only(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    assert_non_null(pub);
    BIO_free(bio);
    return pub;
}

/* What api_request_encode_pkey writes decodes, and verifies under the public half of the key
 * it signed with, for both key types; other keys are refused. */
static void test_encode_pkey(void **state)
{
    (void)state;
    EVP_PKEY *keys[2] = {EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"),
                         EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)};
    static const enum api_sig_scheme schemes[2] = {API_SIG_ED25519, API_SIG_RSA_SHA256};
    struct spec s;
    spec_init(&s);
    struct api_request r;
    spec_view(&s, &r);
    struct rt_buf out, scratch;
    rt_buf_init(&out, TEST_BUF_MAX);
    rt_buf_init(&scratch, TEST_BUF_MAX);
    for (unsigned k = 0; k < 2; k++) {
        assert_non_null(keys[k]);
        rt_buf_reset(&out);
        assert_int_equal(api_request_encode_pkey(&out, &r, keys[k], &scratch), 0);
        struct api_request req;
        struct api_envelope_error err;
        uint8_t *copy = NULL;
        assert_true(out.len > 4);
        assert_int_equal(decode_bytes(out.data + 4, out.len - 4, &req, &err, &copy), 0);
        assert_int_equal(req.sig.scheme, schemes[k]);
        EVP_PKEY *pub = public_only(keys[k]);
        assert_int_equal(api_envelope_verify_pubkey(&req, pub, &scratch), 0);
        assert_int_equal(api_envelope_verify_pubkey(&req, keys[1 - k], &scratch), RT_EUNAUTH);
        EVP_PKEY_free(pub);
        free(copy);
    }
    /* Not a key type the platform verifies with: nothing is written. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    rt_buf_reset(&out);
    assert_int_equal(api_request_encode_pkey(&out, &r, ec, &scratch), RT_EINVAL);
    assert_int_equal(out.len, 0);
    EVP_PKEY_free(ec);
    /* Nor an RSA key the verifier would refuse (api_pubkey_usable: 2048..4096 bits). */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(small);
    assert_int_equal(api_request_encode_pkey(&out, &r, small, &scratch), RT_EINVAL);
    assert_int_equal(out.len, 0);
    EVP_PKEY_free(small);
    EVP_PKEY_free(keys[0]);
    EVP_PKEY_free(keys[1]);
    rt_buf_free(&scratch);
    rt_buf_free(&out);
}

static void test_verify_ed25519(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(key);
    assert_non_null(other);
    assert_non_null(rsa);
    EVP_PKEY *pub = public_only(key);

    struct spec s;
    spec_init(&s);
    spec_sign_pkey(&s, key, "ed25519=", false);
    assert_int_equal(verify_spec_pkey(&s, pub, TEST_BUF_MAX), 0);
    assert_int_equal(verify_spec_pkey(&s, key, TEST_BUF_MAX), 0);
    assert_int_equal(verify_spec_pkey(&s, other, TEST_BUF_MAX), RT_EUNAUTH);
    assert_int_equal(verify_spec_pkey(&s, rsa, TEST_BUF_MAX), RT_EUNAUTH);
    assert_int_equal(verify_spec_pkey(&s, pub, 16), RT_ETOOLARGE); /* Scratch too small. */
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);  /* Scheme mismatch. */

    /* Changed after signing. */
    uint8_t body[sizeof(default_body)];
    memcpy(body, default_body, sizeof(body));
    body[sizeof(body) - 1] ^= 0x01;
    struct spec t = s;
    t.sig = t.sig_buf;
    t.body = body;
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);
    t = s;
    t.sig = t.sig_buf;
    t.ts = TEST_TS - 1;
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);
    t = s;
    t.sig = t.sig_buf;
    t.op = "order.get";
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);
    /* A flipped signature byte (the first character of the base64). */
    t = s;
    t.sig = t.sig_buf;
    t.sig_buf[8] = t.sig_buf[8] == 'A' ? 'B' : 'A';
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);

    /* An HMAC-signed request never verifies with a public key. */
    spec_init(&s);
    assert_int_equal(verify_spec_pkey(&s, pub, TEST_BUF_MAX), RT_EUNAUTH);

    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(rsa);
}

static void test_verify_rsa(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *big = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(key);
    assert_non_null(other);
    assert_non_null(big);
    assert_non_null(ed);
    EVP_PKEY *pub = public_only(key);

    struct spec s;
    spec_init(&s);
    spec_sign_pkey(&s, key, "rsa-sha256=", false);
    assert_int_equal(verify_spec_pkey(&s, pub, 16), 0); /* RSA streams: no scratch needed. */
    assert_int_equal(verify_spec_pkey(&s, key, TEST_BUF_MAX), 0);
    assert_int_equal(verify_spec_pkey(&s, other, TEST_BUF_MAX), RT_EUNAUTH);
    assert_int_equal(verify_spec_pkey(&s, big, TEST_BUF_MAX), RT_EUNAUTH); /* Size mismatch. */
    assert_int_equal(verify_spec_pkey(&s, ed, TEST_BUF_MAX), RT_EUNAUTH);
    assert_int_equal(verify_spec_hmac(&s, TEST_KEY), RT_EUNAUTH);

    struct spec t = s;
    t.sig = t.sig_buf;
    t.nonce = "nonce-0003";
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);
    t = s;
    t.sig = t.sig_buf;
    t.ts = TEST_TS + 1;
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);
    t = s;
    t.sig = t.sig_buf;
    t.sig_buf[20] = t.sig_buf[20] == 'A' ? 'B' : 'A';
    assert_int_equal(verify_spec_pkey(&t, pub, TEST_BUF_MAX), RT_EUNAUTH);

    /* PSS padding with the same key is not what rsa-sha256 means. */
    spec_init(&s);
    spec_sign_pkey(&s, key, "rsa-sha256=", true);
    assert_int_equal(verify_spec_pkey(&s, pub, TEST_BUF_MAX), RT_EUNAUTH);

    /* A 3072-bit key works with its own signatures. */
    spec_init(&s);
    spec_sign_pkey(&s, big, "rsa-sha256=", false);
    assert_int_equal(verify_spec_pkey(&s, big, TEST_BUF_MAX), 0);
    assert_int_equal(verify_spec_pkey(&s, pub, TEST_BUF_MAX), RT_EUNAUTH);

    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(big);
    EVP_PKEY_free(ed);
}

/* ---- Time window ---- */

static void test_time_window(void **state)
{
    (void)state;
    struct api_request r;
    memset(&r, 0, sizeof(r));
    r.ts_ms = TEST_TS;
    /* Inclusive at exactly 300 000 ms either way, exclusive one ms further. */
    assert_int_equal(api_envelope_check_time(&r, TEST_TS), 0);
    assert_int_equal(api_envelope_check_time(&r, TEST_TS + API_TIME_WINDOW_MS), 0);
    assert_int_equal(api_envelope_check_time(&r, TEST_TS - API_TIME_WINDOW_MS), 0);
    assert_int_equal(api_envelope_check_time(&r, TEST_TS + API_TIME_WINDOW_MS + 1), RT_EUNAUTH);
    assert_int_equal(api_envelope_check_time(&r, TEST_TS - API_TIME_WINDOW_MS - 1), RT_EUNAUTH);
    assert_int_equal(api_envelope_check_time(&r, 0), RT_EUNAUTH);
    assert_int_equal(api_envelope_check_time(&r, UINT64_MAX), RT_EUNAUTH);
    /* Extremes: no wrap-around. */
    r.ts_ms = 0;
    assert_int_equal(api_envelope_check_time(&r, UINT64_MAX), RT_EUNAUTH);
    assert_int_equal(api_envelope_check_time(&r, API_TIME_WINDOW_MS), 0);
    assert_int_equal(api_envelope_check_time(&r, API_TIME_WINDOW_MS + 1), RT_EUNAUTH);
    r.ts_ms = UINT64_MAX;
    assert_int_equal(api_envelope_check_time(&r, 0), RT_EUNAUTH);
    assert_int_equal(api_envelope_check_time(&r, UINT64_MAX - API_TIME_WINDOW_MS), 0);
    assert_int_equal(api_envelope_check_time(&r, UINT64_MAX - API_TIME_WINDOW_MS - 1), RT_EUNAUTH);
}

/* ---- Responses ---- */

/* Read the frame at the start of @out: its length prefix must cover the rest exactly. */
static void unpack_response(const struct rt_buf *out, size_t at, msgpack_unpacked *u)
{
    assert_true(out->len - at > API_FRAME_HEADER_BYTES);
    const uint32_t len = rt_get_be32(out->data + at);
    assert_int_equal(at + API_FRAME_HEADER_BYTES + len, out->len);
    size_t off = 0;
    msgpack_unpacked_init(u);
    assert_int_equal(
        msgpack_unpack_next(u, (const char *)out->data + at + API_FRAME_HEADER_BYTES, len, &off),
        MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    assert_int_equal(u->data.type, MSGPACK_OBJECT_MAP);
}

static const msgpack_object *key_at(const msgpack_unpacked *u, uint32_t i, const char *name)
{
    const msgpack_object_map *m = &u->data.via.map;
    assert_true(i < m->size);
    const msgpack_object *k = &m->ptr[i].key;
    assert_int_equal(k->type, MSGPACK_OBJECT_STR);
    assert_int_equal(k->via.str.size, strlen(name));
    assert_memory_equal(k->via.str.ptr, name, strlen(name));
    return &m->ptr[i].val;
}

static void assert_str(const msgpack_object *o, const char *s)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_STR);
    assert_int_equal(o->via.str.size, strlen(s));
    assert_memory_equal(o->via.str.ptr, s, strlen(s));
}

static void test_response_ok(void **state)
{
    (void)state;
    struct rt_buf out;
    rt_buf_init(&out, TEST_BUF_MAX);
    static const uint8_t body[] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x92, 0x02, 0x03};
    assert_int_equal(api_response_encode(&out, UINT64_MAX, 0, NULL, body, sizeof(body)), 0);
    msgpack_unpacked u;
    unpack_response(&out, 0, &u);
    assert_int_equal(u.data.via.map.size, 5);
    const msgpack_object *id = key_at(&u, 0, "id");
    assert_int_equal(id->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(id->via.u64 == UINT64_MAX);
    const msgpack_object *ok = key_at(&u, 1, "ok");
    assert_int_equal(ok->type, MSGPACK_OBJECT_BOOLEAN);
    assert_true(ok->via.boolean);
    assert_str(key_at(&u, 2, "code"), "OK");
    assert_str(key_at(&u, 3, "msg"), "ok");
    const msgpack_object *b = key_at(&u, 4, "body");
    assert_int_equal(b->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(b->via.map.size, 2);
    msgpack_unpacked_destroy(&u);

    /* No body given: {} (CONTRACT: body is present when ok). RT_EDUPLICATE is a success. */
    rt_buf_reset(&out);
    assert_int_equal(api_response_encode(&out, 7, RT_EDUPLICATE, "already applied", NULL, 0), 0);
    unpack_response(&out, 0, &u);
    assert_int_equal(u.data.via.map.size, 5);
    assert_true(key_at(&u, 1, "ok")->via.boolean);
    assert_str(key_at(&u, 2, "code"), "OK");
    assert_str(key_at(&u, 3, "msg"), "already applied");
    b = key_at(&u, 4, "body");
    assert_int_equal(b->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(b->via.map.size, 0);
    msgpack_unpacked_destroy(&u);
    rt_buf_free(&out);
}

static void test_response_errors(void **state)
{
    (void)state;
    static const int codes[] = {RT_EINVAL,    RT_EUNAUTH,    RT_EREPLAYED, RT_EFORBIDDEN,
                                RT_ENOTFOUND, RT_ECONFLICT,  RT_ESTATE,    RT_ETOOLARGE,
                                RT_ERATE,     RT_EUNAVAIL,   RT_ETIMEOUT,  RT_EINTERNAL,
                                RT_ENOMEM,    RT_EMALFORMED, RT_EVERSION};
    static const char *const wire[] = {
        "INVALID_ARGUMENT", "UNAUTHENTICATED", "REPLAYED",  "FORBIDDEN",        "NOT_FOUND",
        "CONFLICT",         "INVALID_STATE",   "TOO_LARGE", "RATE_LIMITED",     "UNAVAILABLE",
        "TIMEOUT",          "INTERNAL",        "INTERNAL",  "INVALID_ARGUMENT", "INVALID_ARGUMENT"};
    static const uint8_t body[] = {0x80};
    struct rt_buf out;
    rt_buf_init(&out, TEST_BUF_MAX);
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        rt_buf_reset(&out);
        /* A body given with an error is ignored. */
        assert_int_equal(api_response_encode(&out, i, codes[i], "nonce: missing", body, 1), 0);
        msgpack_unpacked u;
        unpack_response(&out, 0, &u);
        assert_int_equal(u.data.via.map.size, 4);
        assert_int_equal(key_at(&u, 0, "id")->via.u64, i);
        const msgpack_object *ok = key_at(&u, 1, "ok");
        assert_int_equal(ok->type, MSGPACK_OBJECT_BOOLEAN);
        assert_false(ok->via.boolean);
        assert_str(key_at(&u, 2, "code"), wire[i]);
        assert_str(key_at(&u, 3, "msg"), "nonce: missing");
        msgpack_unpacked_destroy(&u);
    }
    /* Default message. */
    rt_buf_reset(&out);
    assert_int_equal(api_response_encode(&out, 0, RT_EREPLAYED, NULL, NULL, 0), 0);
    msgpack_unpacked u;
    unpack_response(&out, 0, &u);
    assert_str(key_at(&u, 3, "msg"), rt_strerror(RT_EREPLAYED));
    msgpack_unpacked_destroy(&u);
    rt_buf_free(&out);
}

static void test_response_limits(void **state)
{
    (void)state;
    struct rt_buf out;
    rt_buf_init(&out, TEST_BUF_MAX);
    assert_int_equal(rt_buf_append(&out, "prev", 4), 0);

    /* A long message is cut at a character boundary: 255 'x' then a 2-byte character that
     * would straddle the limit. */
    char msg[400];
    memset(msg, 'x', 255);
    memcpy(msg + 255, "\xc3\xa9", 2);
    memset(msg + 257, 'y', 100);
    msg[357] = '\0';
    assert_int_equal(api_response_encode(&out, 1, RT_EINVAL, msg, NULL, 0), 0);
    msgpack_unpacked u;
    unpack_response(&out, 4, &u);
    const msgpack_object *m = key_at(&u, 3, "msg");
    assert_int_equal(m->type, MSGPACK_OBJECT_STR);
    assert_int_equal(m->via.str.size, 255);
    assert_true(rt_utf8_valid(m->via.str.ptr, m->via.str.size));
    msgpack_unpacked_destroy(&u);

    /* Refusals leave the buffer as it was. */
    const size_t before = out.len;
    static const uint8_t not_map[] = {0x91, 0x01};
    assert_int_equal(api_response_encode(&out, 1, 0, NULL, not_map, sizeof(not_map)), RT_EINVAL);
    static const uint8_t trailing[] = {0x80, 0x80};
    assert_int_equal(api_response_encode(&out, 1, 0, NULL, trailing, sizeof(trailing)), RT_EINVAL);
    assert_int_equal(api_response_encode(&out, 1, 0, NULL, not_map, 0), RT_EINVAL);
    /* A body as large as a whole frame: the response cannot fit. */
    uint8_t *big = malloc(API_FRAME_BYTES_MAX);
    assert_non_null(big);
    big[0] = 0x81;
    big[1] = 0xa1;
    big[2] = 'k';
    big[3] = 0xc6;
    rt_put_be32(big + 4, API_FRAME_BYTES_MAX - 8);
    memset(big + 8, 0, API_FRAME_BYTES_MAX - 8);
    assert_int_equal(api_response_encode(&out, 1, 0, NULL, big, API_FRAME_BYTES_MAX), RT_ETOOLARGE);
    assert_int_equal(out.len, before);
    /* The same body into a buffer whose own max is too small. */
    struct rt_buf small;
    rt_buf_init(&small, 64);
    assert_int_equal(api_response_encode(&small, 1, 0, NULL, big, API_FRAME_BYTES_MAX),
                     RT_ETOOLARGE);
    assert_int_equal(small.len, 0);
    /* A body that leaves room for the envelope fits. */
    rt_put_be32(big + 4, API_FRAME_BYTES_MAX - 100);
    assert_int_equal(api_response_encode(&out, 1, 0, NULL, big, API_FRAME_BYTES_MAX - 92), 0);
    free(big);
    rt_buf_free(&small);
    rt_buf_free(&out);
}

/* Responses written back to back in one buffer decode as separate frames. */
static void test_response_pipelined(void **state)
{
    (void)state;
    struct rt_buf out;
    rt_buf_init(&out, TEST_BUF_MAX);
    for (uint64_t id = 1; id <= 50; id++) {
        assert_int_equal(api_response_encode(&out, id, id % 2 ? 0 : RT_ENOTFOUND, NULL, NULL, 0),
                         0);
    }
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, API_FRAME_BYTES_MAX);
    size_t off = 0;
    for (uint64_t id = 1; id <= 50; id++) {
        size_t consumed = 0;
        struct api_frame frame;
        assert_int_equal(api_frame_feed(&dec, out.data + off, out.len - off, &consumed, &frame),
                         API_FRAME_READY);
        off += consumed;
        struct rt_mp_reader r;
        rt_mp_reader_init(&r, frame.data, frame.len);
        uint32_t count = 0;
        assert_int_equal(rt_mp_read_map(&r, &count), 0);
        assert_int_equal(count, id % 2 ? 5 : 4);
        const char *k = NULL;
        uint32_t k_len = 0;
        uint64_t got = 0;
        assert_int_equal(rt_mp_read_str(&r, &k, &k_len), 0);
        assert_true(rt_mp_key_is(k, k_len, "id"));
        assert_int_equal(rt_mp_read_uint(&r, &got), 0);
        assert_int_equal(got, id);
    }
    assert_int_equal(off, out.len);
    api_frame_decoder_free(&dec);
    rt_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_good),
        cmocka_unit_test(test_decode_order_and_extremes),
        cmocka_unit_test(test_missing_each),
        cmocka_unit_test(test_duplicate_each),
        cmocka_unit_test(test_unknown_and_bad_keys),
        cmocka_unit_test(test_wrong_types_every_field),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_op_bounds),
        cmocka_unit_test(test_app_bounds),
        cmocka_unit_test(test_nonce_bounds),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_mutated_everywhere),
        cmocka_unit_test(test_sig_hmac_text),
        cmocka_unit_test(test_sig_base64_text),
        cmocka_unit_test(test_sig_base64_cross),
        cmocka_unit_test(test_signing_string),
        cmocka_unit_test(test_verify_hmac),
        cmocka_unit_test(test_encode_pkey),
        cmocka_unit_test(test_verify_ed25519),
        cmocka_unit_test(test_verify_rsa),
        cmocka_unit_test(test_time_window),
        cmocka_unit_test(test_response_ok),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_response_limits),
        cmocka_unit_test(test_response_pipelined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
