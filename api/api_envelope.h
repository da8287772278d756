/* api_envelope: the request map of the API port, its signature, time window and replay cache,
 * and the response map (CONTRACT.md "Wire protocol", DESIGN.md "The life of a command" 1).
 *
 * Pure code: no sockets, no loop, no clock (callers pass now_ms), no randomness (callers pass
 * the replay cache's hash key). The order a server applies the checks in matters:
 *   1. api_envelope_decode     the frame's payload -> struct api_request (views, no copies);
 *   2. api_envelope_verify_hmac / api_envelope_verify_pubkey   with the app's key (meta group);
 *   3. api_envelope_check_time against the server's clock;
 *   4. api_nonce_cache_insert  only now, so unauthenticated junk can never fill the cache;
 *   5. decode req->body into the operation's typed command (not here: per operation).
 * Any failure is answered with api_response_encode(id = err.id or req.id, the code, a reason).
 *
 * Request map (CONTRACT.md): exactly the eight keys below, each once, each of its type:
 *   v      uint  protocol version; only 1 is spoken            -> else RT_EVERSION
 *   id     uint  any value, echoed in the response
 *   op     str   1..48 bytes of [a-z_.]                         e.g. "order.create"
 *   app    str   1..32 bytes of [A-Za-z0-9_-]                   "admin" for admin ops
 *   ts     uint  client clock, unix ms
 *   nonce  str   8..64 bytes of printable ASCII (0x20..0x7e)
 *   body   bin   holding exactly one msgpack map (depth-bounded like the frame)
 *   sig    str   "hmac-sha256=<64 lowercase hex>" | "ed25519=<base64>" | "rsa-sha256=<base64>"
 * Every character set above is ASCII, so checking it also rejects any invalid UTF-8.
 * Strictness is deliberate: a key we do not know may be a field a newer client relies on, and
 * silently ignoring it would be worse than saying so.
 *
 * Decoding errors, and what the server does with them (all are INVALID_ARGUMENT on the wire):
 *   RT_EMALFORMED  the frame cannot be read: not exactly one well-formed msgpack value (this
 *                  includes trailing bytes, counts or lengths past the end, nesting deeper than
 *                  RT_MP_DEPTH_MAX), or not a map. CONTRACT: answer with id 0 and close the
 *                  connection. err->id is 0.
 *   RT_EVERSION    v is a uint other than 1 (checked before anything else in the map, so that
 *                  a client speaking a later version learns that, not that a key is unknown).
 *   RT_EINVAL      the map is readable but a field is missing, repeated, unknown, of the wrong
 *                  type or out of its bounds, or a key is not a str. The connection stays open.
 * For RT_EVERSION and RT_EINVAL, err->id holds the request's id when one could be read (the
 * first "id" key whose value is a uint), and err->id_known says whether it could; otherwise 0.
 * err->reason names the field and the rule it broke; it never echoes the client's bytes.
 */
#ifndef API_ENVELOPE_H
#define API_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "rt_buf.h"

/* ---- Limits (CONTRACT.md "Wire protocol"; each is part of the wire format) ---- */

#define API_PROTOCOL_VERSION 1u
/* Operation names: the longest v1 op is "cluster.remove_node" (19); 48 leaves room. */
#define API_OP_BYTES_MAX 48u
/* App ids: CONTRACT.md "app_id 1-32 of [A-Za-z0-9_-]". */
#define API_APP_BYTES_MAX 32u
/* Nonces: CONTRACT.md "8-64 chars". 8 printable characters are too few to be unguessable,
 * but a nonce only has to be unique per app within the window, not secret. */
#define API_NONCE_BYTES_MIN 8u
#define API_NONCE_BYTES_MAX 64u
/* CONTRACT.md: a ts more than 300 s from the server's clock is UNAUTHENTICATED. Exactly
 * 300 000 ms away is still accepted. */
#define API_TIME_WINDOW_MS 300000u

/* Signature sizes. HMAC-SHA256 and Ed25519 have fixed sizes. An RSA signature is as long as
 * the modulus: 2048-bit keys at least (shorter ones are within reach of factoring), 4096-bit at
 * most (verification cost grows with the modulus; a bound keeps every request's cost known). */
#define API_SIG_HMAC_BYTES    32u
#define API_SIG_ED25519_BYTES 64u
#define API_SIG_RSA_BYTES_MIN 256u
#define API_SIG_RSA_BYTES_MAX 512u
#define API_SIG_BYTES_MAX     API_SIG_RSA_BYTES_MAX
/* The longest sig text: "rsa-sha256=" and padded base64 of 512 bytes (4 x 171 = 684). */
#define API_SIG_TEXT_BYTES_MAX (11u + 684u)

/* Room for a decoding error's reason, NUL included. */
#define API_REASON_BYTES 128u
/* A response's msg is cut to this many bytes (at a character boundary): messages are for
 * humans and must not let a response outgrow its frame. */
#define API_RESPONSE_MSG_BYTES_MAX 256u

/* ---- Decoding ---- */

enum api_sig_scheme {
    API_SIG_NONE = 0,    /* Never in a decoded request. */
    API_SIG_HMAC_SHA256, /* "hmac-sha256=": 32 bytes from 64 lowercase hex digits. */
    API_SIG_ED25519,     /* "ed25519=": 64 bytes, padded standard base64 (RFC 4648 section 4). */
    API_SIG_RSA_SHA256,  /* "rsa-sha256=": PKCS#1 v1.5 over SHA-256, 256..512 bytes, base64. */
};

/* A parsed signature: the raw bytes, copied out of the text (decoding hex or base64 needs a
 * copy; 512 bytes of stack or struct beat an allocation per request). */
struct api_sig {
    enum api_sig_scheme scheme;
    uint32_t len;                     /* Bytes of @bytes in use; fixed by scheme, see above. */
    uint8_t bytes[API_SIG_BYTES_MAX]; /* The signature. */
};

/* A decoded request. Every pointer is a view into the payload given to api_envelope_decode
 * (not NUL-terminated, owned by whoever owns the payload: valid exactly as long as it is). Only
 * @sig is a copy. A client library may also fill the view fields itself to sign a request. */
struct api_request {
    uint64_t id;    /* Correlation id, echoed. */
    uint64_t ts_ms; /* Client clock, unix ms. */
    const char *op; /* 1..API_OP_BYTES_MAX of [a-z_.]. */
    uint32_t op_len;
    const char *app; /* 1..API_APP_BYTES_MAX of [A-Za-z0-9_-]. */
    uint32_t app_len;
    const char *nonce; /* API_NONCE_BYTES_MIN..MAX of 0x20..0x7e. */
    uint32_t nonce_len;
    const uint8_t *body; /* Exactly one msgpack map, validated (rt_mp_validate). */
    uint32_t body_len;
    struct api_sig sig; /* Parsed "sig". */
};

struct api_envelope_error {
    uint64_t id;                   /* The request's id if id_known, else 0. */
    bool id_known;                 /* Whether an "id" with a uint value was found. */
    char reason[API_REASON_BYTES]; /* "<field>: <rule broken>", NUL-terminated; "" on success. */
};

/* Decode one frame's @payload (@len bytes) into @req. On success returns 0, fills every field
 * of @req and sets err->id/id_known to req->id/true. On failure returns RT_EMALFORMED,
 * RT_EVERSION or RT_EINVAL as described at the top of this file, @req is unspecified and @err
 * is filled. Allocates nothing; linear in @len. */
int api_envelope_decode(const uint8_t *payload, size_t len, struct api_request *req,
                        struct api_envelope_error *err);

/* Parse the signature text @text (@len bytes, not NUL-terminated) into @sig: the scheme prefix
 * exactly as in the table above, then hex (lowercase only, exactly 64 digits) or base64 (the
 * standard alphabet, padding required, unused bits zero, so each signature has one spelling)
 * of exactly the size its scheme takes. RT_EINVAL otherwise, with *reason (if @reason is not
 * NULL) set to a static string naming the rule broken; @sig is then unspecified. */
int api_sig_parse(const char *text, size_t len, struct api_sig *sig, const char **reason);

/* ---- Signatures ---- */

/* Append the signing string of @req to @out:
 *   op "\n" app "\n" decimal(ts) "\n" nonce "\n" body
 * (decimal without leading zeros; "0" for 0). Errors from rt_buf (RT_ETOOLARGE past out->max,
 * RT_ENOMEM); @out is unchanged on failure. The verifiers below do not need it (HMAC and RSA
 * hash the pieces as they are): it is for Ed25519, whose signature covers the whole message at
 * once, for clients and for tests. */
int api_signing_string(const struct api_request *req, struct rt_buf *out);

/* A key for HMAC-SHA256, prepared once and then used for any number of requests: the key's
 * inner and outer pads are hashed at api_hmac_init, so each request costs only its own bytes.
 * Preparing a key for every request (fetching the algorithm, hashing the pads) took about three
 * times as long as the MAC itself. One api_hmac serves one thread at a time. */
struct api_hmac {
    EVP_MAC_CTX *ctx; /* NULL before api_hmac_init and after api_hmac_free. */
};

/* Prepare @hmac for @key (@key_len >= 1 bytes: the app secret's ASCII bytes exactly as
 * app.create returned it). RT_EINVAL for an empty key (no app has one; an HMAC under it proves
 * nothing), RT_ENOMEM or RT_EINTERNAL if OpenSSL fails; @hmac is then left empty. */
int api_hmac_init(struct api_hmac *hmac, const uint8_t *key, size_t key_len);

/* Free what api_hmac_init made (the key's pads are wiped); safe on an empty @hmac. */
void api_hmac_free(struct api_hmac *hmac);

/* HMAC-SHA256 of the signing string of @req under @hmac's key into @mac. @req's sig is
 * ignored: this is how a client signs. RT_EINTERNAL if OpenSSL fails. */
int api_hmac_request(struct api_hmac *hmac, const struct api_request *req,
                     uint8_t mac[API_SIG_HMAC_BYTES]);

/* api_hmac_request with a key prepared for this one call: for tests and one-off requests.
 * RT_EINVAL for an empty key, RT_EINTERNAL if OpenSSL fails. */
int api_request_hmac(const struct api_request *req, const uint8_t *key, size_t key_len,
                     uint8_t mac[API_SIG_HMAC_BYTES]);

/* Append to @out one complete request frame for @req (its id, ts_ms, op, app, nonce and body
 * as given; req->sig is ignored) with @sig (@sig_len bytes) as its "sig", written as given: a
 * scheme prefix and the signature's text (see api_sig_parse). The keys are written in the order
 * v, id, op, app, ts, nonce, body, sig. RT_ETOOLARGE past out->max or API_FRAME_BYTES_MAX,
 * RT_ENOMEM; @out is unchanged on failure. */
int api_request_encode_signed(struct rt_buf *out, const struct api_request *req, const char *sig,
                              size_t sig_len);

/* api_request_encode_signed for @req signed "hmac-sha256=" under @hmac's key: what every client
 * sends. Its errors, and RT_EINTERNAL if OpenSSL fails. */
int api_request_encode_hmac(struct rt_buf *out, const struct api_request *req,
                            struct api_hmac *hmac);

/* api_request_encode_signed for @req signed with the private key @key: "ed25519=" for an Ed25519
 * key (pure Ed25519 over the signing string), "rsa-sha256=" for an RSA key (PKCS#1 v1.5 over
 * SHA-256), both in base64. What an app that registered a public key sends. The signing string
 * is built in @scratch (reset here; API_FRAME_BYTES_MAX + 256 holds any request's). RT_EINVAL
 * for a key api_pubkey_usable refuses (another type, an RSA key outside 2048..4096 bits);
 * rt_buf's errors; RT_EINTERNAL if OpenSSL fails. */
int api_request_encode_pkey(struct rt_buf *out, const struct api_request *req, EVP_PKEY *key,
                            struct rt_buf *scratch);

/* Check @req's signature against the app secret @hmac was prepared with. 0 if it is an
 * hmac-sha256 signature and it matches (compared in constant time); RT_EUNAUTH if it does not
 * match or the request is signed with another scheme; RT_EINTERNAL if OpenSSL fails. */
int api_envelope_verify_hmac(const struct api_request *req, struct api_hmac *hmac);

/* Whether @key is of a kind api_envelope_verify_pubkey verifies with: Ed25519, or RSA of
 * 2048..4096 bits (API_SIG_RSA_BYTES_MIN..MAX). The one rule app.create, the verifier and the
 * load generator apply. */
bool api_pubkey_usable(const EVP_PKEY *key);

/* Check @req's signature against the app's public key @key (not owned; only read):
 * - API_SIG_ED25519 with an Ed25519 key: pure Ed25519 over the signing string, which is built
 *   in @scratch first (Ed25519 signs the whole message, it cannot be fed in pieces). @scratch is
 *   caller-owned, reset here, and reusable across calls; its max must hold the signing string:
 *   API_FRAME_BYTES_MAX + 256 holds any request's.
 * - API_SIG_RSA_SHA256 with an RSA key of 2048..4096 bits whose size equals the signature's:
 *   PKCS#1 v1.5 over SHA-256, fed in pieces (@scratch unused).
 * 0 if the signature is good; RT_EUNAUTH if it is bad, or the scheme does not match the key's
 * type (an HMAC-signed request, an RSA-PSS key...) or size; RT_ETOOLARGE/RT_ENOMEM if @scratch
 * cannot hold the signing string; RT_EINTERNAL if OpenSSL fails. */
int api_envelope_verify_pubkey(const struct api_request *req, EVP_PKEY *key,
                               struct rt_buf *scratch);

/* 0 if |req->ts_ms - now_ms| <= API_TIME_WINDOW_MS (edges inclusive), RT_EUNAUTH otherwise.
 * No overflow for any pair of values. */
int api_envelope_check_time(const struct api_request *req, uint64_t now_ms);

/* ---- Responses ---- */

/* Append one complete response frame to @out (after whatever it holds: responses to pipelined
 * requests can share one write). The payload is the map
 *   {id: @id, ok: bool, code: rt_wire_code(@code), msg: str, body: map}
 * with keys in that order, where ok is true iff the wire code is "OK" (0, and RT_EDUPLICATE
 * which tells a retrying client its command was already applied), and body is present iff ok:
 * @body (@body_len bytes holding exactly one msgpack map, copied), or {} when @body is NULL.
 * For errors @body is ignored. @msg (NUL-terminated) defaults to rt_strerror(@code) when NULL
 * and is cut to API_RESPONSE_MSG_BYTES_MAX bytes at a UTF-8 character boundary.
 * Returns 0; RT_EINVAL if ok and @body is not exactly one msgpack map; RT_ETOOLARGE if the
 * frame would exceed API_FRAME_BYTES_MAX or out->max; RT_ENOMEM. On failure @out is unchanged,
 * so the caller can encode a smaller error response instead. */
int api_response_encode(struct rt_buf *out, uint64_t id, int code, const char *msg,
                        const uint8_t *body, size_t body_len);

/* ---- Body fields ----
 *
 * The string fields of a request body that route it (app_id, merchant_order_no, order_id, ...),
 * read the one way the server and the client library both read them. */

/* One field to look up: set @name; api_body_strs fills the rest. */
struct api_body_field {
    const char *name;
    const char *value; /* When found == 0: a view into the body. */
    uint32_t len;
    int found; /* 0, RT_ENOTFOUND, or RT_EINVAL (not a string, or the body is not readable). */
};

/* Look up @count string fields of the body map (@body, @len) in one pass over it: each field's
 * first occurrence counts, as if it were looked up alone. */
void api_body_strs(const uint8_t *body, size_t len, struct api_body_field *fields, size_t count);

/* ---- Replay cache ----
 *
 * Remembers the (app, nonce) pairs of accepted requests for as long as they could be replayed:
 * a request with ts can pass api_envelope_check_time until now = ts + API_TIME_WINDOW_MS, so
 * its entry lives exactly that long (by the request's ts, not by arrival: a client whose clock
 * runs ahead gets a correspondingly longer memory). Per node: DESIGN.md step 1.
 *
 * Fixed memory, chosen at init: @capacity entries in a ring in arrival order (16 bytes each:
 * a 64-bit fingerprint and the expiry), indexed by an open-addressing table of 4-byte slots at
 * most half full (so 24 to 32 bytes per entry in all; API_NONCE_CACHE_ENTRIES_DEFAULT = 2^20
 * entries is 24 MiB). The fingerprint is SipHash-2-4 of (app, nonce) under a secret 16-byte
 * key the caller draws at start-up (RAND_bytes): clients cannot aim nonces at one hash chain,
 * and two different pairs are confused with probability about capacity / 2^64 per insert
 * (a false REPLAYED, which a client answers by retrying with a new nonce).
 *
 * When the ring is full, the oldest entry is evicted even though it has not expired. This is
 * a deliberate hole, stated here rather than hidden: a request whose entry was evicted can be
 * replayed once more, until its ts leaves the window. How big the hole is:
 * - the cache covers the whole window while the accepted request rate stays under
 *   capacity / 300 s (with clients' clocks right; capacity / 600 s if they run 5 minutes fast):
 *   about 3 500 req/s per node with the default capacity, no hole at all below that;
 * - above it, the cache still catches any replay that comes within capacity / rate seconds of
 *   the original (21 s at 50 000 req/s): the last `capacity` requests are always remembered;
 * - expired entries leave the ring only from its oldest end, so an entry with a far-future
 *   expiry (a client clock running up to 5 minutes ahead) holds back the reclaiming of the
 *   entries after it until it expires; at worst this halves the rates above;
 * - api_nonce_cache_stats' evicted_live counts evictions of live entries: export it; when it
 *   grows, the node is past the rate above and capacity should grow with it.
 * Why not refuse new requests (RT_ERATE) when full instead: the cache is shared by every app,
 * so a burst from one app (or one attacker with one valid key) would lock every app out of
 * the node for up to ten minutes. And the hole is no worse than what exists anyway: the cache
 * is per node, so a replay sent to another node is not caught by this one; both are bounded by
 * every write being idempotent under the app's own business number (a replay repeats the
 * original result) and by TLS keeping requests from being captured in the first place
 * (DESIGN.md step 1, docs/security.md).
 */

#define API_NONCE_CACHE_ENTRIES_MIN     1u
#define API_NONCE_CACHE_ENTRIES_MAX     (1u << 24)
#define API_NONCE_CACHE_ENTRIES_DEFAULT (1u << 20)
#define API_NONCE_KEY_BYTES             16u

/* One remembered request (private). */
struct api_nonce_entry {
    uint64_t fp;        /* Keyed fingerprint of (app, nonce). */
    uint64_t expire_ms; /* ts + API_TIME_WINDOW_MS (saturating): live while now <= this. */
};

struct api_nonce_stats {
    uint64_t inserted;     /* Requests remembered. */
    uint64_t replayed;     /* Inserts refused with RT_EREPLAYED. */
    uint64_t evicted_live; /* Unexpired entries evicted because the ring was full. */
};

/* Caller-allocated, initialised in place; the fields are private. */
struct api_nonce_cache {
    struct api_nonce_entry *ring; /* capacity entries, oldest at head. Owned. */
    uint32_t *index;              /* index_mask + 1 slots holding ring positions. Owned. */
    uint32_t capacity;
    uint32_t index_mask; /* Slots - 1; slots is a power of two >= 2 x capacity. */
    uint32_t head;       /* Ring position of the oldest entry. */
    uint32_t count;      /* Entries in the ring (live, expired, or superseded). */
    uint8_t key[API_NONCE_KEY_BYTES];
    struct api_nonce_stats stats;
};

/* Allocate a cache of @capacity (API_NONCE_CACHE_ENTRIES_MIN..MAX) entries, fingerprinting
 * under @key (copied). RT_EINVAL for a capacity out of range, RT_ENOMEM. On failure nothing
 * is allocated. */
int api_nonce_cache_init(struct api_nonce_cache *cache, uint32_t capacity,
                         const uint8_t key[API_NONCE_KEY_BYTES]);
void api_nonce_cache_free(struct api_nonce_cache *cache);

/* Remember (req->app, req->nonce) until req->ts_ms + API_TIME_WINDOW_MS. Returns 0 if the pair
 * is new (or its previous entry has expired); RT_EREPLAYED if a live entry has it (nothing is
 * changed); RT_EUNAUTH if req->ts_ms is outside the window around @now_ms (the same check as
 * api_envelope_check_time, repeated so that the cache can never accept a request whose entry
 * would already be expired); RT_EINVAL if app or nonce is outside its bounds. Expired entries at
 * the oldest end are dropped first; if the ring is still full, the oldest is evicted (see above).
 * Amortised O(1); never allocates. Call it only for authenticated requests. */
int api_nonce_cache_insert(struct api_nonce_cache *cache, const struct api_request *req,
                           uint64_t now_ms);

/* Counters since init. */
struct api_nonce_stats api_nonce_cache_stats(const struct api_nonce_cache *cache);

/* SipHash-2-4 of @len bytes under @key (the reference algorithm; exposed for its test vectors
 * and for other bounded tables keyed against flooding). */
uint64_t api_siphash24(const uint8_t key[API_NONCE_KEY_BYTES], const uint8_t *data, size_t len);

#endif /* API_ENVELOPE_H */
