/* api_envelope: decoding is up to two passes over a payload that rt_mp_validate has already
 * bounded (every count and length fits the bytes present, nesting is at most
 * RT_MP_DEPTH_MAX):
 *   1. the strict pass: each key is looked up in one table of the eight fields, checked for
 *      repetition, and its value read with the one type the field takes and checked against
 *      the field's bounds. Missing fields are found at the end, in table order.
 *   2. only if the strict pass failed, a lenient scan for "v" and "id", so that a version
 *      mismatch is reported as such and the error can echo the client's id. (A request that
 *      passes has both, and v is 1: the strict pass checked them.)
 * Both passes are linear in the payload and allocate nothing.
 *
 * Signatures are verified without building the signing string where the algorithm allows
 * (HMAC and RSA hash it in pieces); Ed25519 needs it whole, in a caller's scratch buffer.
 */
#include "api_envelope.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "api_frame.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"

/* ---- Field table ---- */

enum api_field {
    API_F_V,
    API_F_ID,
    API_F_OP,
    API_F_APP,
    API_F_TS,
    API_F_NONCE,
    API_F_BODY,
    API_F_SIG,
    API_F_COUNT,
};

struct api_field_spec {
    const char *name;     /* The key, exactly. */
    uint32_t name_len;    /* strlen(name): looked up for every key of every request. */
    enum rt_mp_type type; /* The only type its value may have. */
    const char *expected; /* The reason given when the value has another type. */
};

/* A literal and its length, for api_fields. */
#define API_FIELD_NAME(lit) lit, sizeof(lit) - 1

static const struct api_field_spec api_fields[API_F_COUNT] = {
    [API_F_V] = {API_FIELD_NAME("v"), RT_MP_UINT, "expected a uint (the protocol version, 1)"},
    [API_F_ID] = {API_FIELD_NAME("id"), RT_MP_UINT, "expected a uint"},
    [API_F_OP] = {API_FIELD_NAME("op"), RT_MP_STR, "expected a str"},
    [API_F_APP] = {API_FIELD_NAME("app"), RT_MP_STR, "expected a str"},
    [API_F_TS] = {API_FIELD_NAME("ts"), RT_MP_UINT, "expected a uint (unix milliseconds)"},
    [API_F_NONCE] = {API_FIELD_NAME("nonce"), RT_MP_STR, "expected a str"},
    [API_F_BODY] = {API_FIELD_NAME("body"), RT_MP_BIN, "expected a bin holding a msgpack map"},
    [API_F_SIG] = {API_FIELD_NAME("sig"), RT_MP_STR, "expected a str"},
};

/* The field named by @key, or API_F_COUNT if none is. */
static enum api_field api_field_lookup(const char *key, uint32_t key_len)
{
    assert(key != NULL || key_len == 0);
    for (enum api_field f = 0; f < API_F_COUNT; f++) {
        if (key_len == api_fields[f].name_len && memcmp(key, api_fields[f].name, key_len) == 0) {
            return f;
        }
    }
    return API_F_COUNT;
}

/* ---- Character classes ---- */

static bool api_is_op_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || c == '_' || c == '.';
}

static bool api_is_app_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static bool api_is_nonce_char(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e;
}

/* True if @s holds @min..@max bytes, each accepted by @accept. */
static bool api_text_ok(const char *s, uint32_t len, uint32_t min, uint32_t max,
                        bool (*accept)(unsigned char))
{
    assert(s != NULL || len == 0);
    assert(min >= 1 && min <= max && accept != NULL);
    if (len < min || len > max) {
        return false;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (!accept((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* ---- Signature text ---- */

/* Value of a lowercase hex digit, or -1. Uppercase is refused: one spelling per signature. */
static int api_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Value of a standard base64 character (RFC 4648 table 1), or -1 (including '='). */
static int api_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Decode padded, canonical base64 @s (@len bytes) into @out (room for @out_max bytes).
 * Every size is checked before a byte is written. */
static int api_b64_decode(const char *s, size_t len, uint8_t *out, size_t out_max, size_t *out_len,
                          const char **reason)
{
    assert(s != NULL && out != NULL && out_len != NULL);
    assert(reason != NULL);
    if (len == 0 || len % 4 != 0) {
        *reason = "base64 must be padded to a multiple of 4 characters";
        return RT_EINVAL;
    }
    size_t pad = 0;
    if (s[len - 1] == '=') {
        pad = s[len - 2] == '=' ? 2 : 1;
    }
    const size_t n = len / 4 * 3 - pad;
    if (n > out_max) {
        *reason = "signature is too long for its scheme";
        return RT_EINVAL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        const bool last = i + 4 == len;
        int v[4];
        for (size_t k = 0; k < 4; k++) {
            /* '=' is only allowed as the last pad characters of the last group. */
            if (last && k >= 4 - pad) {
                v[k] = 0;
                continue;
            }
            v[k] = api_b64_value((unsigned char)s[i + k]);
            if (v[k] < 0) {
                *reason = "base64 holds a character outside A-Z a-z 0-9 + / (or misplaced '=')";
                return RT_EINVAL;
            }
        }
        const uint32_t bits =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        const size_t bytes = last ? 3 - pad : 3;
        /* Canonical: the bits a shorter last group leaves over must be zero. */
        if (bytes < 3 && (bits & ((1u << (8 * (3 - bytes))) - 1u)) != 0) {
            *reason = "base64 has non-zero unused bits (not the canonical spelling)";
            return RT_EINVAL;
        }
        for (size_t k = 0; k < bytes; k++) {
            assert(o < n);
            out[o++] = (uint8_t)(bits >> (16 - 8 * k));
        }
    }
    assert(o == n);
    *out_len = n;
    return 0;
}

struct api_sig_prefix {
    const char *text;
    enum api_sig_scheme scheme;
};

static const struct api_sig_prefix api_sig_prefixes[] = {
    {"hmac-sha256=", API_SIG_HMAC_SHA256},
    {"ed25519=", API_SIG_ED25519},
    {"rsa-sha256=", API_SIG_RSA_SHA256},
};

int api_sig_parse(const char *text, size_t len, struct api_sig *sig, const char **reason)
{
    assert(text != NULL || len == 0);
    assert(sig != NULL);
    const char *unused;
    if (reason == NULL) {
        reason = &unused;
    }
    memset(sig, 0, sizeof(*sig));
    if (len > API_SIG_TEXT_BYTES_MAX) {
        *reason = "signature text is longer than any scheme's";
        return RT_EINVAL;
    }
    size_t prefix_len = 0;
    for (size_t i = 0; i < sizeof(api_sig_prefixes) / sizeof(api_sig_prefixes[0]); i++) {
        const size_t n = strlen(api_sig_prefixes[i].text);
        if (len >= n && memcmp(text, api_sig_prefixes[i].text, n) == 0) {
            sig->scheme = api_sig_prefixes[i].scheme;
            prefix_len = n;
            break;
        }
    }
    if (sig->scheme == API_SIG_NONE) {
        *reason = "unknown scheme (expected hmac-sha256=, ed25519= or rsa-sha256=)";
        return RT_EINVAL;
    }
    const char *value = text + prefix_len;
    const size_t value_len = len - prefix_len;

    if (sig->scheme == API_SIG_HMAC_SHA256) {
        if (value_len != 2 * API_SIG_HMAC_BYTES) {
            *reason = "hmac-sha256 takes exactly 64 hex digits";
            return RT_EINVAL;
        }
        for (size_t i = 0; i < API_SIG_HMAC_BYTES; i++) {
            const int hi = api_hex_value((unsigned char)value[2 * i]);
            const int lo = api_hex_value((unsigned char)value[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                *reason = "hmac-sha256 takes lowercase hex digits only (0-9 a-f)";
                return RT_EINVAL;
            }
            sig->bytes[i] = (uint8_t)(hi << 4 | lo);
        }
        sig->len = API_SIG_HMAC_BYTES;
        return 0;
    }

    const size_t want_min =
        sig->scheme == API_SIG_ED25519 ? API_SIG_ED25519_BYTES : API_SIG_RSA_BYTES_MIN;
    const size_t want_max =
        sig->scheme == API_SIG_ED25519 ? API_SIG_ED25519_BYTES : API_SIG_RSA_BYTES_MAX;
    size_t n = 0;
    int rv = api_b64_decode(value, value_len, sig->bytes, want_max, &n, reason);
    if (rv != 0) {
        return rv;
    }
    if (n < want_min) {
        *reason = sig->scheme == API_SIG_ED25519
                      ? "ed25519 signatures are exactly 64 bytes"
                      : "rsa-sha256 signatures are 256..512 bytes (2048..4096-bit keys)";
        return RT_EINVAL;
    }
    assert(n <= want_max && n <= API_SIG_BYTES_MAX);
    sig->len = (uint32_t)n;
    return 0;
}

/* ---- Request decoding ---- */

/* Set @err's reason from a literal format naming @field; returns @code for tail calls. */
static int api_reject(struct api_envelope_error *err, int code, enum api_field field,
                      const char *what)
{
    assert(err != NULL && what != NULL);
    assert(code < 0 && field < API_F_COUNT);
    snprintf(err->reason, sizeof(err->reason), "%s: %s", api_fields[field].name, what);
    return code;
}

static int api_reject_plain(struct api_envelope_error *err, int code, const char *what)
{
    assert(err != NULL && what != NULL);
    assert(code < 0);
    snprintf(err->reason, sizeof(err->reason), "%s", what);
    return code;
}

/* Pass 2 over a validated map that pass 1 refused: the first "v" and "id" whose values are
 * uints. Never fails: anything unexpected is what pass 1 reported. */
static void api_scan_header(const uint8_t *payload, size_t len, bool *v_found, uint64_t *v,
                            bool *id_found, uint64_t *id)
{
    assert(payload != NULL && len > 0);
    assert(v_found != NULL && v != NULL && id_found != NULL && id != NULL);
    struct rt_mp_reader r;
    uint32_t count = 0;
    rt_mp_reader_init(&r, payload, len);
    int rv = rt_mp_read_map(&r, &count);
    assert(rv == 0); /* The caller checked that the payload is a map. */
    for (uint32_t i = 0; i < count && rv == 0; i++) {
        const char *key = NULL;
        uint32_t key_len = 0;
        enum api_field f = API_F_COUNT;
        if (rt_mp_read_str(&r, &key, &key_len) == 0) {
            f = api_field_lookup(key, key_len);
        } else {
            rv = rt_mp_skip(&r);
        }
        uint64_t value = 0;
        if ((f == API_F_V && !*v_found) || (f == API_F_ID && !*id_found)) {
            if (rt_mp_read_uint(&r, &value) == 0) {
                *(f == API_F_V ? v_found : id_found) = true;
                *(f == API_F_V ? v : id) = value;
                continue;
            }
        }
        if (rv == 0) {
            rv = rt_mp_skip(&r);
        }
    }
    assert(rv == 0); /* Validated: every value can be skipped. */
    (void)rv;
}

/* Read the value of @field from @r into @req, checking its type and bounds. */
static int api_decode_field(enum api_field field, struct rt_mp_reader *r, struct api_request *req,
                            struct api_envelope_error *err)
{
    assert(field < API_F_COUNT);
    assert(r != NULL && req != NULL && err != NULL);
    if (rt_mp_peek(r) != api_fields[field].type) {
        return api_reject(err, RT_EINVAL, field, api_fields[field].expected);
    }
    uint64_t u = 0;
    const char *s = NULL;
    const uint8_t *b = NULL;
    uint32_t n = 0;
    int rv;
    switch (api_fields[field].type) {
    case RT_MP_UINT:
        rv = rt_mp_read_uint(r, &u);
        break;
    case RT_MP_STR:
        rv = rt_mp_read_str(r, &s, &n);
        break;
    default:
        assert(api_fields[field].type == RT_MP_BIN);
        rv = rt_mp_read_bin(r, &b, &n);
        break;
    }
    assert(rv == 0); /* peek said the type matches, and the payload is validated. */
    (void)rv;

    switch (field) {
    case API_F_V:
        if (u != API_PROTOCOL_VERSION) {
            return api_reject(err, RT_EVERSION, field,
                              "unsupported protocol version (this server speaks 1)");
        }
        return 0;
    case API_F_ID:
        req->id = u;
        return 0;
    case API_F_TS:
        req->ts_ms = u;
        return 0;
    case API_F_OP:
        if (!api_text_ok(s, n, 1, API_OP_BYTES_MAX, api_is_op_char)) {
            return api_reject(err, RT_EINVAL, field, "must be 1..48 characters of [a-z_.]");
        }
        req->op = s;
        req->op_len = n;
        return 0;
    case API_F_APP:
        if (!api_text_ok(s, n, 1, API_APP_BYTES_MAX, api_is_app_char)) {
            return api_reject(err, RT_EINVAL, field, "must be 1..32 characters of [A-Za-z0-9_-]");
        }
        req->app = s;
        req->app_len = n;
        return 0;
    case API_F_NONCE:
        if (!api_text_ok(s, n, API_NONCE_BYTES_MIN, API_NONCE_BYTES_MAX, api_is_nonce_char)) {
            return api_reject(err, RT_EINVAL, field,
                              "must be 8..64 printable ASCII characters (0x20..0x7e)");
        }
        req->nonce = s;
        req->nonce_len = n;
        return 0;
    case API_F_BODY: {
        /* The body gets the same structural bounds as the frame, and must be a map. */
        if (rt_mp_validate(b, n) != 0) {
            return api_reject(err, RT_EINVAL, field,
                              "not exactly one well-formed msgpack value (or nested too deep)");
        }
        struct rt_mp_reader body;
        rt_mp_reader_init(&body, b, n);
        if (rt_mp_peek(&body) != RT_MP_MAP) {
            return api_reject(err, RT_EINVAL, field, "must hold a msgpack map");
        }
        req->body = b;
        req->body_len = n;
        return 0;
    }
    case API_F_SIG: {
        const char *why = NULL;
        if (api_sig_parse(s, n, &req->sig, &why) != 0) {
            assert(why != NULL);
            return api_reject(err, RT_EINVAL, field, why);
        }
        return 0;
    }
    default:
        assert(false);
        return RT_EINTERNAL;
    }
}

/* Pass 1 over the validated map at @r: every key a known field, once, each value of its
 * type and within its bounds, none missing. */
static int api_decode_fields(struct rt_mp_reader *r, struct api_request *req,
                             struct api_envelope_error *err)
{
    assert(r != NULL && req != NULL && err != NULL);
    uint32_t count = 0;
    int rv = rt_mp_read_map(r, &count);
    assert(rv == 0);   /* The caller checked that the payload is a map. */
    unsigned seen = 0; /* Bit f set once field f was read. */
    for (uint32_t i = 0; i < count; i++) {
        const char *key = NULL;
        uint32_t key_len = 0;
        if (rt_mp_read_str(r, &key, &key_len) != 0) {
            return api_reject_plain(err, RT_EINVAL, "request: every key must be a str");
        }
        const enum api_field f = api_field_lookup(key, key_len);
        if (f == API_F_COUNT) {
            return api_reject_plain(err, RT_EINVAL,
                                    "request: unknown key (the keys are v, id, op, app, ts, "
                                    "nonce, body, sig)");
        }
        if (seen & (1u << f)) {
            return api_reject(err, RT_EINVAL, f, "duplicate key");
        }
        seen |= 1u << f;
        rv = api_decode_field(f, r, req, err);
        if (rv != 0) {
            return rv;
        }
    }
    assert(rt_mp_remaining(r) == 0); /* Validated as exactly one value. */
    for (enum api_field f = 0; f < API_F_COUNT; f++) {
        if (!(seen & (1u << f))) {
            return api_reject(err, RT_EINVAL, f, "missing");
        }
    }
    assert(req->sig.scheme != API_SIG_NONE && req->op_len > 0);
    return 0;
}

int api_envelope_decode(const uint8_t *payload, size_t len, struct api_request *req,
                        struct api_envelope_error *err)
{
    assert(payload != NULL || len == 0);
    assert(req != NULL && err != NULL);
    memset(req, 0, sizeof(*req));
    err->id = 0;
    err->id_known = false;
    err->reason[0] = '\0';

    /* Structure first: after this every count and length is known to fit, and nothing below
     * can read past the end. */
    if (rt_mp_validate(payload, len) != 0) {
        return api_reject_plain(err, RT_EMALFORMED,
                                "request: not exactly one well-formed msgpack value "
                                "(or nested too deep)");
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, payload, len);
    if (rt_mp_peek(&r) != RT_MP_MAP) {
        return api_reject_plain(err, RT_EMALFORMED, "request: not a msgpack map");
    }

    int rv = api_decode_fields(&r, req, err);
    if (rv != 0) {
        /* Only a request that fails needs pass 2: for the id its error echoes, and so that a
         * version mismatch is reported as such whatever else pass 1 tripped on first. */
        bool v_found = false;
        uint64_t v = 0;
        api_scan_header(payload, len, &v_found, &v, &err->id_known, &err->id);
        if (v_found && v != API_PROTOCOL_VERSION) {
            return api_reject(err, RT_EVERSION, API_F_V,
                              "unsupported protocol version (this server speaks 1)");
        }
        return rv;
    }
    /* Pass 1 accepted "v" (1) and "id": pass 2 would find the same. */
    err->id_known = true;
    err->id = req->id;
    return 0;
}

/* ---- Signing string ---- */

/* The signing string's pieces, in order (the bytes of decimal(ts) live in @digits). */
#define API_SIGNING_PIECES 9u
struct api_piece {
    const void *data;
    size_t len;
};

static void api_signing_pieces(const struct api_request *req, char digits[RT_U64_DIGITS_MAX],
                               struct api_piece pieces[API_SIGNING_PIECES])
{
    assert(req != NULL && digits != NULL && pieces != NULL);
    assert(req->op != NULL && req->app != NULL && req->nonce != NULL && req->body != NULL);
    size_t digit_count = rt_u64_decimal(digits, req->ts_ms);
    static const char nl = '\n';
    pieces[0] = (struct api_piece){req->op, req->op_len};
    pieces[1] = (struct api_piece){&nl, 1};
    pieces[2] = (struct api_piece){req->app, req->app_len};
    pieces[3] = (struct api_piece){&nl, 1};
    pieces[4] = (struct api_piece){digits, digit_count};
    pieces[5] = (struct api_piece){&nl, 1};
    pieces[6] = (struct api_piece){req->nonce, req->nonce_len};
    pieces[7] = (struct api_piece){&nl, 1};
    pieces[8] = (struct api_piece){req->body, req->body_len};
}

int api_signing_string(const struct api_request *req, struct rt_buf *out)
{
    assert(req != NULL && out != NULL);
    char digits[RT_U64_DIGITS_MAX];
    struct api_piece pieces[API_SIGNING_PIECES];
    api_signing_pieces(req, digits, pieces);
    size_t total = 0;
    for (size_t i = 0; i < API_SIGNING_PIECES; i++) {
        total += pieces[i].len; /* Each is below 4 GiB; nine cannot wrap a size_t. */
    }
    int rv = rt_buf_reserve(out, total); /* All or nothing: @out unchanged on failure. */
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < API_SIGNING_PIECES; i++) {
        rv = rt_buf_append(out, pieces[i].data, pieces[i].len);
        assert(rv == 0); /* Reserved above. */
    }
    return 0;
}

/* OpenSSL's HMAC, fetched once for the process: a fetch looks the algorithm up in the
 * provider's tables under a lock, and cost more than a request's MAC. Never freed: it lives
 * as long as the library. */
static pthread_once_t api_hmac_fetched = PTHREAD_ONCE_INIT;
static EVP_MAC *api_hmac_algorithm;

static void api_hmac_fetch(void)
{
    api_hmac_algorithm = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

int api_hmac_init(struct api_hmac *hmac, const uint8_t *key, size_t key_len)
{
    assert(hmac != NULL);
    assert(key != NULL || key_len == 0);
    hmac->ctx = NULL;
    if (key_len == 0) {
        return RT_EINVAL; /* No app has an empty secret; HMAC under one proves nothing. */
    }
    (void)pthread_once(&api_hmac_fetched, api_hmac_fetch);
    if (api_hmac_algorithm == NULL) {
        ERR_clear_error();
        return RT_EINTERNAL;
    }
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(api_hmac_algorithm);
    if (ctx == NULL) {
        ERR_clear_error();
        return RT_ENOMEM;
    }
    char digest[] = "SHA256"; /* OSSL_PARAM wants a mutable string. */
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        ERR_clear_error(); /* Reported as RT_EINTERNAL; leave no stale queue for others. */
        EVP_MAC_CTX_free(ctx);
        return RT_EINTERNAL;
    }
    hmac->ctx = ctx;
    return 0;
}

void api_hmac_free(struct api_hmac *hmac)
{
    assert(hmac != NULL);
    EVP_MAC_CTX_free(hmac->ctx); /* Wipes the key's state (OpenSSL cleanses on free). */
    hmac->ctx = NULL;
}

int api_hmac_request(struct api_hmac *hmac, const struct api_request *req,
                     uint8_t mac[API_SIG_HMAC_BYTES])
{
    assert(hmac != NULL && hmac->ctx != NULL && req != NULL && mac != NULL);
    char digits[RT_U64_DIGITS_MAX];
    struct api_piece pieces[API_SIGNING_PIECES];
    api_signing_pieces(req, digits, pieces);
    /* A NULL key restarts the MAC from the pads hashed at api_hmac_init. */
    if (EVP_MAC_init(hmac->ctx, NULL, 0, NULL) != 1) {
        goto fail;
    }
    for (size_t i = 0; i < API_SIGNING_PIECES; i++) {
        if (EVP_MAC_update(hmac->ctx, pieces[i].data, pieces[i].len) != 1) {
            goto fail;
        }
    }
    size_t mac_len = 0;
    if (EVP_MAC_final(hmac->ctx, mac, &mac_len, API_SIG_HMAC_BYTES) != 1) {
        goto fail;
    }
    assert(mac_len == API_SIG_HMAC_BYTES);
    return 0;
fail:
    ERR_clear_error();
    return RT_EINTERNAL;
}

int api_request_hmac(const struct api_request *req, const uint8_t *key, size_t key_len,
                     uint8_t mac[API_SIG_HMAC_BYTES])
{
    assert(req != NULL && mac != NULL);
    struct api_hmac hmac;
    int rv = api_hmac_init(&hmac, key, key_len);
    if (rv != 0) {
        return rv;
    }
    rv = api_hmac_request(&hmac, req, mac);
    api_hmac_free(&hmac);
    return rv;
}

int api_envelope_verify_hmac(const struct api_request *req, struct api_hmac *hmac)
{
    assert(req != NULL && hmac != NULL);
    assert(req->sig.len <= API_SIG_BYTES_MAX);
    if (req->sig.scheme != API_SIG_HMAC_SHA256) {
        return RT_EUNAUTH; /* The app has a secret; a public-key signature proves nothing. */
    }
    assert(req->sig.len == API_SIG_HMAC_BYTES);
    uint8_t mac[API_SIG_HMAC_BYTES];
    int rv = api_hmac_request(hmac, req, mac);
    if (rv != 0) {
        return rv;
    }
    /* Constant time: a timing difference would let a client find the MAC byte by byte. */
    rv = CRYPTO_memcmp(mac, req->sig.bytes, API_SIG_HMAC_BYTES) == 0 ? 0 : RT_EUNAUTH;
    OPENSSL_cleanse(mac, sizeof(mac));
    return rv;
}

/* RSA key sizes we verify with, in bits (see API_SIG_RSA_BYTES_MIN/MAX). */
#define API_RSA_BITS_MIN (8 * API_SIG_RSA_BYTES_MIN)
#define API_RSA_BITS_MAX (8 * API_SIG_RSA_BYTES_MAX)

bool api_pubkey_usable(const EVP_PKEY *key)
{
    assert(key != NULL);
    const int type = EVP_PKEY_get_base_id(key);
    const int bits = EVP_PKEY_get_bits(key);
    return type == EVP_PKEY_ED25519 ||
           (type == EVP_PKEY_RSA && bits >= (int)API_RSA_BITS_MIN && bits <= (int)API_RSA_BITS_MAX);
}

int api_envelope_verify_pubkey(const struct api_request *req, EVP_PKEY *key, struct rt_buf *scratch)
{
    assert(req != NULL && key != NULL && scratch != NULL);
    assert(req->sig.len <= API_SIG_BYTES_MAX);
    const int key_type = EVP_PKEY_get_base_id(key);
    if (!api_pubkey_usable(key)) {
        return RT_EUNAUTH; /* An RSA-PSS or EC key, an RSA key of another size. */
    }
    if (req->sig.scheme == API_SIG_ED25519) {
        if (key_type != EVP_PKEY_ED25519) {
            return RT_EUNAUTH;
        }
    } else if (req->sig.scheme == API_SIG_RSA_SHA256) {
        /* The size must match exactly: a shorter signature is not left-padded for the client. */
        if (key_type != EVP_PKEY_RSA || EVP_PKEY_get_size(key) != (int)req->sig.len) {
            return RT_EUNAUTH;
        }
    } else {
        return RT_EUNAUTH; /* HMAC-signed: this app verifies with its public key only. */
    }

    int rv = RT_EINTERNAL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) {
        goto out_free;
    }
    int ok;
    if (req->sig.scheme == API_SIG_ED25519) {
        rt_buf_reset(scratch);
        rv = api_signing_string(req, scratch);
        if (rv != 0) {
            goto out_free;
        }
        rv = RT_EINTERNAL;
        if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) != 1) {
            goto out_free;
        }
        ok = EVP_DigestVerify(md, req->sig.bytes, req->sig.len, scratch->data, scratch->len);
    } else {
        EVP_PKEY_CTX *pctx = NULL;
        char digest[] = "SHA256";
        if (EVP_DigestVerifyInit_ex(md, &pctx, digest, NULL, NULL, key, NULL) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
            goto out_free;
        }
        char digits[RT_U64_DIGITS_MAX];
        struct api_piece pieces[API_SIGNING_PIECES];
        api_signing_pieces(req, digits, pieces);
        for (size_t i = 0; i < API_SIGNING_PIECES; i++) {
            if (EVP_DigestVerifyUpdate(md, pieces[i].data, pieces[i].len) != 1) {
                goto out_free;
            }
        }
        ok = EVP_DigestVerifyFinal(md, req->sig.bytes, req->sig.len);
    }
    /* 1 is a good signature. 0 is a bad one; a negative value is also what a malformed one
     * (wrong length, bad padding) gives, so anything but 1 is UNAUTHENTICATED. */
    rv = ok == 1 ? 0 : RT_EUNAUTH;
out_free:
    if (rv != 0) {
        ERR_clear_error();
    }
    EVP_MD_CTX_free(md);
    return rv;
}

int api_envelope_check_time(const struct api_request *req, uint64_t now_ms)
{
    assert(req != NULL);
    /* Subtract the smaller from the larger: no wrap for any pair. */
    const uint64_t skew_ms = req->ts_ms > now_ms ? req->ts_ms - now_ms : now_ms - req->ts_ms;
    assert((skew_ms == 0) == (req->ts_ms == now_ms));
    return skew_ms > API_TIME_WINDOW_MS ? RT_EUNAUTH : 0; /* Exactly the window still passes. */
}

/* ---- Responses ---- */

/* Length of @msg cut to at most @max bytes without splitting a UTF-8 sequence. */
static size_t api_msg_cut(const char *msg, size_t max)
{
    assert(msg != NULL);
    assert(max > 0);
    size_t len = strnlen(msg, max + 1);
    if (len <= max) {
        return len;
    }
    len = max;
    /* Back off continuation bytes (10xxxxxx) so the cut falls before a lead byte. */
    while (len > 0 && ((unsigned char)msg[len] & 0xc0u) == 0x80u) {
        len--;
    }
    return len;
}

int api_response_encode(struct rt_buf *out, uint64_t id, int code, const char *msg,
                        const uint8_t *body, size_t body_len)
{
    assert(out != NULL);
    assert(code <= 0);
    assert(body != NULL || body_len == 0);
    const bool ok = strcmp(rt_wire_code(code), "OK") == 0;
    if (ok && body != NULL && rt_mp_validate(body, body_len) != 0) {
        return RT_EINVAL;
    }
    if (ok && body != NULL) {
        struct rt_mp_reader r;
        rt_mp_reader_init(&r, body, body_len);
        if (rt_mp_peek(&r) != RT_MP_MAP) {
            return RT_EINVAL;
        }
    }
    if (msg == NULL) {
        msg = rt_strerror(code);
    }
    const size_t before = out->len;
    size_t start = 0;
    int rv = api_frame_begin(out, &start);
    if (rv != 0) {
        return rv;
    }
    assert(start == before);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, ok ? 5 : 4);
    rt_mp_write_str(&w, "id", 2);
    rt_mp_write_uint(&w, id);
    rt_mp_write_str(&w, "ok", 2);
    rt_mp_write_bool(&w, ok);
    rt_mp_write_str(&w, "code", 4);
    rt_mp_write_cstr(&w, rt_wire_code(code));
    rt_mp_write_str(&w, "msg", 3);
    rt_mp_write_str(&w, msg, api_msg_cut(msg, API_RESPONSE_MSG_BYTES_MAX));
    if (ok) {
        static const uint8_t empty_map = 0x80;
        rt_mp_write_str(&w, "body", 4);
        if (body != NULL) {
            rt_mp_write_raw(&w, body, body_len);
        } else {
            rt_mp_write_raw(&w, &empty_map, 1);
        }
    }
    rv = rt_mp_writer_error(&w);
    if (rv != 0) {
        rt_buf_truncate(out, before);
        return rv;
    }
    rv = api_frame_finish(out, start); /* Truncates back to @before itself on failure. */
    assert(rv != 0 || out->len > before + API_FRAME_HEADER_BYTES);
    return rv;
}

/* ---- SipHash-2-4 (Aumasson and Bernstein, the reference algorithm) ---- */

static uint64_t api_rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t api_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static void api_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = api_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = api_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = api_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = api_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = api_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = api_rotl(v[2], 32);
}

uint64_t api_siphash24(const uint8_t key[API_NONCE_KEY_BYTES], const uint8_t *data, size_t len)
{
    assert(key != NULL);
    assert(data != NULL || len == 0);
    const uint64_t k0 = api_le64(key);
    const uint64_t k1 = api_le64(key + 8);
    uint64_t v[4] = {
        k0 ^ UINT64_C(0x736f6d6570736575),
        k1 ^ UINT64_C(0x646f72616e646f6d),
        k0 ^ UINT64_C(0x6c7967656e657261),
        k1 ^ UINT64_C(0x7465646279746573),
    };
    const size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        const uint64_t m = api_le64(data + i);
        v[3] ^= m;
        api_sipround(v);
        api_sipround(v);
        v[0] ^= m;
    }
    /* Last block: the remaining bytes, little-endian, with len mod 256 in the top byte. */
    uint64_t b = (uint64_t)(len & 0xffu) << 56;
    for (size_t i = 0; i < len % 8; i++) {
        b |= (uint64_t)data[full + i] << (8 * i);
    }
    v[3] ^= b;
    api_sipround(v);
    api_sipround(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for (unsigned i = 0; i < 4; i++) {
        api_sipround(v);
    }
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---- Replay cache ---- */

/* An empty index slot. Ring positions are < API_NONCE_CACHE_ENTRIES_MAX, far below it. */
#define API_NONCE_SLOT_EMPTY UINT32_MAX

int api_nonce_cache_init(struct api_nonce_cache *cache, uint32_t capacity,
                         const uint8_t key[API_NONCE_KEY_BYTES])
{
    assert(cache != NULL);
    assert(key != NULL);
    memset(cache, 0, sizeof(*cache));
    if (capacity < API_NONCE_CACHE_ENTRIES_MIN || capacity > API_NONCE_CACHE_ENTRIES_MAX) {
        return RT_EINVAL;
    }
    /* At most half full: linear probing stays short (about 1.5 probes per hit). */
    uint32_t slots = 2;
    while (slots < 2 * capacity) {
        slots *= 2;
    }
    cache->ring = calloc(capacity, sizeof(*cache->ring));
    cache->index = malloc((size_t)slots * sizeof(*cache->index));
    if (cache->ring == NULL || cache->index == NULL) {
        free(cache->ring);
        free(cache->index);
        memset(cache, 0, sizeof(*cache));
        return RT_ENOMEM;
    }
    memset(cache->index, 0xff, (size_t)slots * sizeof(*cache->index)); /* All EMPTY. */
    cache->capacity = capacity;
    cache->index_mask = slots - 1;
    memcpy(cache->key, key, API_NONCE_KEY_BYTES);
    return 0;
}

void api_nonce_cache_free(struct api_nonce_cache *cache)
{
    assert(cache != NULL);
    assert(cache->count <= cache->capacity);
    free(cache->ring);
    free(cache->index);
    OPENSSL_cleanse(cache->key, sizeof(cache->key)); /* The key keeps chains unpredictable. */
    memset(cache, 0, sizeof(*cache));
}

/* The index slot holding the entry with fingerprint @fp, or API_NONCE_SLOT_EMPTY. The index
 * holds each fingerprint at most once. */
static uint32_t api_nonce_find(const struct api_nonce_cache *cache, uint64_t fp)
{
    assert(cache->index != NULL);
    assert(cache->count < cache->index_mask + 1); /* An EMPTY slot ends every probe. */
    for (uint32_t i = (uint32_t)fp & cache->index_mask;; i = (i + 1) & cache->index_mask) {
        const uint32_t pos = cache->index[i];
        if (pos == API_NONCE_SLOT_EMPTY) {
            return API_NONCE_SLOT_EMPTY;
        }
        assert(pos < cache->capacity);
        if (cache->ring[pos].fp == fp) {
            return i;
        }
    }
}

static void api_nonce_index_add(struct api_nonce_cache *cache, uint64_t fp, uint32_t pos)
{
    assert(pos < cache->capacity);
    assert(api_nonce_find(cache, fp) == API_NONCE_SLOT_EMPTY);
    uint32_t i = (uint32_t)fp & cache->index_mask;
    while (cache->index[i] != API_NONCE_SLOT_EMPTY) {
        i = (i + 1) & cache->index_mask;
    }
    cache->index[i] = pos;
}

/* Empty index slot @i, shifting later members of its probe run back so that no lookup meets a
 * hole before its entry (backward-shift deletion: no tombstones to accumulate). */
static void api_nonce_index_remove(struct api_nonce_cache *cache, uint32_t i)
{
    assert(i <= cache->index_mask);
    assert(cache->index[i] != API_NONCE_SLOT_EMPTY);
    const uint32_t mask = cache->index_mask;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        const uint32_t pos = cache->index[j];
        if (pos == API_NONCE_SLOT_EMPTY) {
            break;
        }
        const uint32_t home = (uint32_t)cache->ring[pos].fp & mask;
        /* The entry at j may move to i unless its home lies cyclically in (i, j]. */
        const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            cache->index[i] = pos;
            i = j;
        }
    }
    cache->index[i] = API_NONCE_SLOT_EMPTY;
}

/* Drop the oldest entry; returns whether it was still live at @now_ms and indexed (an entry
 * superseded after expiring has already left the index). */
static bool api_nonce_pop(struct api_nonce_cache *cache, uint64_t now_ms)
{
    assert(cache->count > 0);
    assert(cache->head < cache->capacity);
    const struct api_nonce_entry *e = &cache->ring[cache->head];
    const uint32_t slot = api_nonce_find(cache, e->fp);
    bool live = false;
    if (slot != API_NONCE_SLOT_EMPTY && cache->index[slot] == cache->head) {
        live = e->expire_ms >= now_ms;
        api_nonce_index_remove(cache, slot);
    }
    cache->head = cache->head + 1 == cache->capacity ? 0 : cache->head + 1;
    cache->count--;
    return live;
}

int api_nonce_cache_insert(struct api_nonce_cache *cache, const struct api_request *req,
                           uint64_t now_ms)
{
    assert(cache != NULL && cache->ring != NULL);
    assert(req != NULL);
    if (req->app_len < 1 || req->app_len > API_APP_BYTES_MAX || req->nonce_len < 1 ||
        req->nonce_len > API_NONCE_BYTES_MAX) {
        return RT_EINVAL;
    }
    if (api_envelope_check_time(req, now_ms) != 0) {
        return RT_EUNAUTH;
    }
    /* Fingerprint input: the app's length first, so ("ab", "c...") and ("a", "bc...") differ. */
    uint8_t input[1 + API_APP_BYTES_MAX + API_NONCE_BYTES_MAX];
    input[0] = (uint8_t)req->app_len;
    memcpy(input + 1, req->app, req->app_len);
    memcpy(input + 1 + req->app_len, req->nonce, req->nonce_len);
    const uint64_t fp = api_siphash24(cache->key, input, 1 + req->app_len + req->nonce_len);
    const uint64_t expire_ms =
        req->ts_ms > UINT64_MAX - API_TIME_WINDOW_MS ? UINT64_MAX : req->ts_ms + API_TIME_WINDOW_MS;

    while (cache->count > 0 && cache->ring[cache->head].expire_ms < now_ms) {
        (void)api_nonce_pop(cache, now_ms);
    }
    const uint32_t slot = api_nonce_find(cache, fp);
    if (slot != API_NONCE_SLOT_EMPTY) {
        if (cache->ring[cache->index[slot]].expire_ms >= now_ms) {
            cache->stats.replayed++;
            return RT_EREPLAYED;
        }
        /* Expired but not yet at the head: forget it; its ring entry leaves with the head. */
        api_nonce_index_remove(cache, slot);
    }
    if (cache->count == cache->capacity) {
        if (api_nonce_pop(cache, now_ms)) {
            cache->stats.evicted_live++; /* The documented hole; see the header. */
        }
    }
    assert(cache->count < cache->capacity);
    const uint32_t pos = (uint32_t)(((uint64_t)cache->head + cache->count) % cache->capacity);
    cache->ring[pos].fp = fp;
    cache->ring[pos].expire_ms = expire_ms;
    api_nonce_index_add(cache, fp, pos);
    cache->count++;
    cache->stats.inserted++;
    return 0;
}

struct api_nonce_stats api_nonce_cache_stats(const struct api_nonce_cache *cache)
{
    assert(cache != NULL);
    assert(cache->count <= cache->capacity);
    return cache->stats;
}

int api_request_encode_signed(struct rt_buf *out, const struct api_request *req, const char *sig,
                              size_t sig_len)
{
    assert(out != NULL && req != NULL && sig != NULL);
    assert(req->op != NULL && req->app != NULL && req->nonce != NULL);
    size_t start;
    int rv = api_frame_begin(out, &start);
    if (rv != 0) {
        return rv;
    }
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, 8);
    rt_mp_write_str(&w, "v", 1);
    rt_mp_write_uint(&w, 1);
    rt_mp_write_str(&w, "id", 2);
    rt_mp_write_uint(&w, req->id);
    rt_mp_write_str(&w, "op", 2);
    rt_mp_write_str(&w, req->op, req->op_len);
    rt_mp_write_str(&w, "app", 3);
    rt_mp_write_str(&w, req->app, req->app_len);
    rt_mp_write_str(&w, "ts", 2);
    rt_mp_write_uint(&w, req->ts_ms);
    rt_mp_write_str(&w, "nonce", 5);
    rt_mp_write_str(&w, req->nonce, req->nonce_len);
    rt_mp_write_str(&w, "body", 4);
    rt_mp_write_bin(&w, req->body, req->body_len);
    rt_mp_write_str(&w, "sig", 3);
    rt_mp_write_str(&w, sig, sig_len);
    rv = rt_mp_writer_error(&w);
    if (rv != 0) {
        rt_buf_truncate(out, start);
        return rv;
    }
    return api_frame_finish(out, start); /* Truncates back to start on failure. */
}

int api_request_encode_pkey(struct rt_buf *out, const struct api_request *req, EVP_PKEY *key,
                            struct rt_buf *scratch)
{
    assert(out != NULL && req != NULL && key != NULL && scratch != NULL);
    /* The one rule the verifier applies (a key it would refuse signs nothing), which also
     * bounds the signature to the stack buffer below. */
    static_assert(API_SIG_RSA_BYTES_MAX <= API_SIG_BYTES_MAX, "an RSA signature fits");
    if (!api_pubkey_usable(key)) {
        return RT_EINVAL;
    }
    const int type = EVP_PKEY_get_base_id(key);
    const char *prefix = type == EVP_PKEY_ED25519 ? "ed25519=" : "rsa-sha256=";
    rt_buf_reset(scratch);
    int rv = api_signing_string(req, scratch);
    if (rv != 0) {
        return rv;
    }
    uint8_t signature[API_SIG_BYTES_MAX];
    size_t signature_len = sizeof(signature);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    /* Ed25519 hashes the message itself; RSA is PKCS#1 v1.5 over SHA-256, as the server checks. */
    bool signed_ok =
        md != NULL &&
        EVP_DigestSignInit(md, NULL, type == EVP_PKEY_RSA ? EVP_sha256() : NULL, NULL, key) == 1 &&
        EVP_DigestSign(md, signature, &signature_len, scratch->data, scratch->len) == 1;
    EVP_MD_CTX_free(md);
    if (!signed_ok) {
        ERR_clear_error();
        return RT_EINTERNAL;
    }
    char sig[16 + 4 * (API_SIG_BYTES_MAX + 2) / 3 + 1];
    size_t prefix_len = strlen(prefix);
    memcpy(sig, prefix, prefix_len);
    int b64 = EVP_EncodeBlock((unsigned char *)sig + prefix_len, signature, (int)signature_len);
    return api_request_encode_signed(out, req, sig, prefix_len + (size_t)b64);
}

int api_request_encode_hmac(struct rt_buf *out, const struct api_request *req,
                            struct api_hmac *hmac)
{
    assert(out != NULL && req != NULL && hmac != NULL);
    assert(req->op != NULL && req->app != NULL && req->nonce != NULL);
    uint8_t mac[API_SIG_HMAC_BYTES];
    int rv = api_hmac_request(hmac, req, mac);
    if (rv != 0) {
        return rv;
    }
    static const char hex[] = "0123456789abcdef";
    char sig[12 + 2 * API_SIG_HMAC_BYTES];
    memcpy(sig, "hmac-sha256=", 12);
    for (unsigned i = 0; i < API_SIG_HMAC_BYTES; i++) {
        sig[12 + 2 * i] = hex[mac[i] >> 4];
        sig[12 + 2 * i + 1] = hex[mac[i] & 15];
    }
    return api_request_encode_signed(out, req, sig, sizeof(sig));
}

void api_body_strs(const uint8_t *body, size_t len, struct api_body_field *fields, size_t count)
{
    size_t left = count;
    for (size_t f = 0; f < count; f++) {
        fields[f].found = RT_ENOTFOUND;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, body, len);
    uint32_t n;
    int rv = rt_mp_read_map(&r, &n);
    for (uint32_t i = 0; rv == 0 && i < n && left > 0; i++) {
        const char *key;
        uint32_t key_len;
        rv = rt_mp_read_str(&r, &key, &key_len);
        size_t f = 0;
        while (rv == 0 && f < count &&
               !(fields[f].found == RT_ENOTFOUND && rt_mp_key_is(key, key_len, fields[f].name))) {
            f++;
        }
        if (rv == 0 && f < count) {
            fields[f].found =
                rt_mp_read_str(&r, &fields[f].value, &fields[f].len) == 0 ? 0 : RT_EINVAL;
            left--;
            rv = fields[f].found == 0 ? 0 : rt_mp_skip(&r);
        } else if (rv == 0) {
            rv = rt_mp_skip(&r);
        }
    }
    /* What a lookup alone would have said of the fields not found before the body turned out
     * unreadable. */
    for (size_t f = 0; rv != 0 && f < count; f++) {
        if (fields[f].found == RT_ENOTFOUND) {
            fields[f].found = RT_EINVAL;
        }
    }
}
