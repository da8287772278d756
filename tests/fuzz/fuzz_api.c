/* libFuzzer target for api_frame and api_envelope: the bytes a client can put on the API port.
 *
 * Input: the first byte picks the chunking and the decoder's max, the rest is the stream.
 * - The stream is decoded twice: once as one chunk (the reference: every frame a view into the
 *   input) and once cut into chunks whose sizes a small PRNG seeded by the first byte draws
 *   (each chunk copied to an allocation of exactly its size, so ASan sees any over-read). Both
 *   must give the same frames and the same final error; a failed decoder must stay failed.
 * - Every frame, and the whole stream taken as one payload (so the envelope is reached without
 *   the fuzzer first having to learn the framing), goes through api_envelope_decode; a decoded
 *   request must satisfy every documented bound and survive signing, HMAC, Ed25519 and RSA
 *   verification, the time check, the replay cache and a response round trip. The payload is
 *   also parsed as signature text.
 * Nothing may crash, leak, or break a documented postcondition.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "api_envelope.h"
#include "api_frame.h"
#include "fuzz_check.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Frames remembered from the reference pass, to compare the chunked pass against. */
#define FUZZ_FRAMES_MAX 4096u

struct fuzz_run {
    struct api_frame frames[FUZZ_FRAMES_MAX];
    size_t count;
    int error; /* How the stream ended: 0, or the decoder's error. */
};

static const uint8_t fuzz_hmac_key[] = "fuzz-secret";
static EVP_PKEY *fuzz_ed25519;
static EVP_PKEY *fuzz_rsa;

static bool fuzz_op_char(char c)
{
    return (c >= 'a' && c <= 'z') || c == '_' || c == '.';
}

/* A decoded request holds what api_envelope.h promises. */
static void check_request(const struct api_request *req)
{
    FUZZ_CHECK(req->op_len >= 1 && req->op_len <= API_OP_BYTES_MAX);
    for (uint32_t i = 0; i < req->op_len; i++) {
        FUZZ_CHECK(fuzz_op_char(req->op[i]));
    }
    FUZZ_CHECK(req->app_len >= 1 && req->app_len <= API_APP_BYTES_MAX);
    FUZZ_CHECK(rt_utf8_valid(req->app, req->app_len));
    FUZZ_CHECK(req->nonce_len >= API_NONCE_BYTES_MIN && req->nonce_len <= API_NONCE_BYTES_MAX);
    FUZZ_CHECK(rt_utf8_valid(req->nonce, req->nonce_len));
    FUZZ_CHECK(rt_mp_validate(req->body, req->body_len) == 0);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, req->body, req->body_len);
    FUZZ_CHECK(rt_mp_peek(&r) == RT_MP_MAP);
    switch (req->sig.scheme) {
    case API_SIG_HMAC_SHA256:
        FUZZ_CHECK(req->sig.len == API_SIG_HMAC_BYTES);
        break;
    case API_SIG_ED25519:
        FUZZ_CHECK(req->sig.len == API_SIG_ED25519_BYTES);
        break;
    case API_SIG_RSA_SHA256:
        FUZZ_CHECK(req->sig.len >= API_SIG_RSA_BYTES_MIN && req->sig.len <= API_SIG_RSA_BYTES_MAX);
        break;
    default:
        FUZZ_CHECK(false);
    }
}

/* Everything a server does with a decoded request, none of which may fail unexpectedly. */
static void exercise_request(const struct api_request *req)
{
    struct rt_buf scratch;
    rt_buf_init(&scratch, API_FRAME_BYTES_MAX + 256);
    FUZZ_CHECK(api_signing_string(req, &scratch) == 0);
    FUZZ_CHECK(scratch.len > req->body_len);

    uint8_t mac[API_SIG_HMAC_BYTES];
    FUZZ_CHECK(api_request_hmac(req, fuzz_hmac_key, sizeof(fuzz_hmac_key) - 1, mac) == 0);
    /* Prepared once, as a server keeps an app's key: no request may leave state behind. */
    static struct api_hmac prepared;
    if (prepared.ctx == NULL) {
        FUZZ_CHECK(api_hmac_init(&prepared, fuzz_hmac_key, sizeof(fuzz_hmac_key) - 1) == 0);
    }
    const int hv = api_envelope_verify_hmac(req, &prepared);
    const bool hmac_match = req->sig.scheme == API_SIG_HMAC_SHA256 &&
                            memcmp(mac, req->sig.bytes, API_SIG_HMAC_BYTES) == 0;
    FUZZ_CHECK(hv == (hmac_match ? 0 : RT_EUNAUTH));
    /* Random signatures never verify against our keys (that would be a forgery). */
    FUZZ_CHECK(api_envelope_verify_pubkey(req, fuzz_ed25519, &scratch) == RT_EUNAUTH);
    FUZZ_CHECK(api_envelope_verify_pubkey(req, fuzz_rsa, &scratch) == RT_EUNAUTH);

    FUZZ_CHECK(api_envelope_check_time(req, req->ts_ms) == 0);
    const uint64_t far = req->ts_ms > UINT64_MAX / 2 ? 0 : UINT64_MAX;
    FUZZ_CHECK(api_envelope_check_time(req, far) == RT_EUNAUTH);

    static const uint8_t key[API_NONCE_KEY_BYTES] = {1};
    struct api_nonce_cache cache;
    FUZZ_CHECK(api_nonce_cache_init(&cache, 2, key) == 0);
    FUZZ_CHECK(api_nonce_cache_insert(&cache, req, req->ts_ms) == 0);
    FUZZ_CHECK(api_nonce_cache_insert(&cache, req, req->ts_ms) == RT_EREPLAYED);
    api_nonce_cache_free(&cache);

    /* The response carrying the body back is one frame holding one map (or, for a body too
     * large to wrap, nothing at all). */
    rt_buf_reset(&scratch);
    const int rv = api_response_encode(&scratch, req->id, 0, NULL, req->body, req->body_len);
    FUZZ_CHECK(rv == 0 || (rv == RT_ETOOLARGE && scratch.len == 0));
    if (rv == 0) {
        FUZZ_CHECK(scratch.len > API_FRAME_HEADER_BYTES);
        FUZZ_CHECK(rt_get_be32(scratch.data) == scratch.len - API_FRAME_HEADER_BYTES);
        const uint8_t *payload = scratch.data + API_FRAME_HEADER_BYTES;
        const size_t payload_len = scratch.len - API_FRAME_HEADER_BYTES;
        FUZZ_CHECK(rt_mp_validate(payload, payload_len) == 0);
        struct rt_mp_reader r;
        uint32_t count = 0;
        rt_mp_reader_init(&r, payload, payload_len);
        FUZZ_CHECK(rt_mp_read_map(&r, &count) == 0 && count == 5);
    }
    rt_buf_free(&scratch);
}

static void check_payload(const uint8_t *payload, size_t len)
{
    struct api_request req;
    struct api_envelope_error err;
    const int rv = api_envelope_decode(payload, len, &req, &err);
    FUZZ_CHECK(memchr(err.reason, '\0', sizeof(err.reason)) != NULL);
    if (rv == 0) {
        FUZZ_CHECK(err.id_known && err.id == req.id && err.reason[0] == '\0');
        check_request(&req);
        exercise_request(&req);
    } else {
        FUZZ_CHECK(rv == RT_EMALFORMED || rv == RT_EINVAL || rv == RT_EVERSION);
        FUZZ_CHECK(err.reason[0] != '\0');
        FUZZ_CHECK(err.id_known || err.id == 0);
        FUZZ_CHECK(rv != RT_EMALFORMED || !err.id_known);
    }

    struct api_sig sig;
    const char *reason = NULL;
    const int sv = api_sig_parse((const char *)payload, len, &sig, &reason);
    FUZZ_CHECK(sv == 0 ? sig.scheme != API_SIG_NONE && sig.len <= API_SIG_BYTES_MAX
                       : sv == RT_EINVAL && reason != NULL);
}

/* Reference pass: the whole stream as one chunk. */
static void decode_whole(const uint8_t *stream, size_t len, uint32_t max, struct fuzz_run *run)
{
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, max);
    size_t off = 0;
    run->count = 0;
    run->error = 0;
    while (off < len) {
        size_t consumed = 0;
        struct api_frame frame;
        const int rv = api_frame_feed(&dec, stream + off, len - off, &consumed, &frame);
        FUZZ_CHECK(consumed <= len - off);
        off += consumed;
        if (rv < 0) {
            run->error = rv;
            break;
        }
        if (rv == API_FRAME_NEED_MORE) {
            FUZZ_CHECK(off == len);
            break;
        }
        FUZZ_CHECK(rv == API_FRAME_READY);
        FUZZ_CHECK(frame.len >= 1 && frame.len <= max);
        /* One chunk: a whole frame is a view into it. */
        FUZZ_CHECK(frame.data >= stream && frame.data + frame.len <= stream + len);
        if (run->count == FUZZ_FRAMES_MAX) {
            break;
        }
        run->frames[run->count++] = frame;
        check_payload(frame.data, frame.len);
    }
    api_frame_decoder_free(&dec);
}

/* The same stream in PRNG-sized chunks must give the same frames and the same error. */
static void decode_chunked(const uint8_t *stream, size_t len, uint32_t max, uint8_t seed,
                           const struct fuzz_run *ref)
{
    static const size_t chunk_max[8] = {1, 2, 3, 5, 16, 300, 4096, 1u << 20};
    const size_t cmax = chunk_max[seed & 7u];
    uint32_t rng = 0x9e3779b9u ^ seed;
    struct api_frame_decoder dec;
    api_frame_decoder_init(&dec, max);
    size_t off = 0;
    size_t frames = 0;
    int error = 0;
    while (off < len && error == 0 && frames < ref->count + 1) {
        rng = rng * 1103515245u + 12345u;
        size_t n = 1 + (size_t)(rng >> 8) % cmax;
        if (n > len - off) {
            n = len - off;
        }
        uint8_t *chunk = malloc(n);
        FUZZ_CHECK(chunk != NULL);
        memcpy(chunk, stream + off, n);
        size_t at = 0;
        while (at < n) {
            size_t consumed = 0;
            struct api_frame frame;
            const int rv = api_frame_feed(&dec, chunk + at, n - at, &consumed, &frame);
            FUZZ_CHECK(consumed <= n - at);
            at += consumed;
            if (rv < 0) {
                error = rv;
                /* Failed for good: the same error, and nothing consumed, from now on. */
                FUZZ_CHECK(api_frame_feed(&dec, chunk, n, &consumed, &frame) == rv);
                FUZZ_CHECK(consumed == 0 && frame.data == NULL);
                FUZZ_CHECK(!api_frame_decoder_idle(&dec));
                break;
            }
            if (rv == API_FRAME_NEED_MORE) {
                FUZZ_CHECK(at == n);
                break;
            }
            if (frames < ref->count) {
                FUZZ_CHECK(frame.len == ref->frames[frames].len);
                FUZZ_CHECK(memcmp(frame.data, ref->frames[frames].data, frame.len) == 0);
            }
            frames++;
            if (frames > ref->count) {
                break; /* The reference stopped remembering (FUZZ_FRAMES_MAX). */
            }
        }
        free(chunk);
        off += n;
    }
    if (ref->count < FUZZ_FRAMES_MAX) {
        FUZZ_CHECK(frames == ref->count);
        FUZZ_CHECK(error == ref->error);
        FUZZ_CHECK(dec.body.cap <= max);
    }
    api_frame_decoder_free(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_ed25519 == NULL) {
        /* Kept for the whole run: verification against a key nobody signed with. */
        fuzz_ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        fuzz_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        FUZZ_CHECK(fuzz_ed25519 != NULL && fuzz_rsa != NULL);
    }
    if (size == 0) {
        return 0;
    }
    const uint8_t mode = data[0];
    const uint8_t *stream = data + 1;
    const size_t len = size - 1;
    /* Mostly the API port's limit; sometimes a tiny one, to reach RT_ETOOLARGE cheaply. */
    const uint32_t max = (mode & 0x80u) ? 1u + (mode & 0x3fu) : API_FRAME_BYTES_MAX;

    static struct fuzz_run ref; /* Large: kept off the stack. */
    decode_whole(stream, len, max, &ref);
    decode_chunked(stream, len, max, mode, &ref);
    if (len > 0) {
        check_payload(stream, len);
    }
    return 0;
}
