/* act_order: the pay order actor.
 *
 * One actor per (app, merchant_order_no). Actor key (persistent format, it is in every
 * stored key and decides the shard):
 *
 *   app_id "/" merchant_order_no
 *
 *   app_id             1..32 bytes of [A-Za-z0-9_-]         (never contains '/')
 *   merchant_order_no  1..64 bytes of [A-Za-z0-9] and _ - | * @ .   (WeChat's out_trade_no
 *                      alphabet plus '.'; never contains '/')
 *
 * Secondary index (persistent format, index column family of the order's shard):
 *
 *   "oid:" order_id  ->  actor key
 *
 * order_id is an rt_id with kind 'P', so rt_id_shard() tells which shard holds the index
 * entry: order.get {order_id} reads the index there, then runs "get" on the actor key.
 *
 * Operations (index = op number in commands and timers; persistent format):
 *
 *   ACT_ORDER_CREATE  args: msgpack map
 *       app_id: str              must equal the key's app part           (required)
 *       merchant_order_no: str   must equal the key's order-number part  (required)
 *       amount: int              1..RT_ORDER_AMOUNT_MAX fen              (required)
 *       currency: str            3 uppercase letters, default "CNY"
 *       subject: str             1..128 bytes of UTF-8, no NUL           (required)
 *       channel: str             "wechat" | "alipay"                     (required)
 *       product: str             "native" (the only v1 product, the default)
 *       expire_s: uint           RT_ORDER_EXPIRE_S_MIN..MAX, default RT_ORDER_EXPIRE_S_DEFAULT
 *       notify_url: str          1..256 bytes of printable ASCII without spaces, starting
 *                                with "http://" or "https://"; default nil (the app's URL)
 *       attach: str              0..127 bytes of UTF-8, no NUL; "" is the same as absent
 *     Any other key, a repeated key, a wrong type, a missing required field or a value out of
 *     range is RT_EINVAL with a message naming the field. On a new actor: creates the order
 *     (WAITING) and its index entry, and sets the expiry timer. On an existing actor: the
 *     same parameters (defaults applied) reply the stored order unchanged (idempotent, no
 *     write); any difference is RT_ECONFLICT naming the first differing field.
 *     Reply: the order object.
 *
 *   ACT_ORDER_GET     (read-only) args: {app_id: str}
 *       app_id must equal the key's app part (else RT_EFORBIDDEN). RT_ENOTFOUND if no order.
 *       Reply: the order object.
 *
 *   ACT_ORDER_CLOSE   args: {app_id: str}
 *       WAITING -> CLOSED (closed_at = now); CLOSED replies as is (idempotent); any other
 *       status is RT_ESTATE. RT_EFORBIDDEN / RT_ENOTFOUND as for get. Reply: the order object.
 *
 *   ACT_ORDER_EXPIRE  (timer only: any other origin is RT_EFORBIDDEN) args: {} or empty
 *       bytes, or {app_id: str} (checked as for get)
 *       WAITING and now >= expire_at -> CLOSED (closed_at = now); anything else is left as
 *       it is. Reply: the order object.
 *
 * Order object (reply body of create/get/close/expire; never contains "v"): a msgpack map with
 * the CONTRACT keys, always present, nil for absent values:
 *   order_id, app_id, merchant_order_no, amount, currency, subject, channel, status, pay_url,
 *   channel_trade_no, refunded_amount, created_at, paid_at, expire_at
 * followed by the extra keys product, notify_url, attach, closed_at. Times are unix ms.
 *
 * Stored state (persistent format), version 2: a msgpack array [2, then the object's values
 * in the order above], the enums by name as in the object. The field names were more than
 * half of every stored order, written again by every flush and compaction. Version 1, the
 * object's map with "v": 1 as its first key, is still decoded. Encoding is deterministic
 * (fixed order) so every replica stores the same bytes.
 */
#ifndef ACT_ORDER_H
#define ACT_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_actor.h"
#include "rt_limits.h"
#include "rt_mp.h"

/* CONTRACT.md: app_id is 1-32 of [A-Za-z0-9_-]. */
#define ACT_APP_ID_BYTES_MAX 32u
/* WeChat Pay's out_trade_no takes at most 32, Alipay's 64: the larger keeps both apps' own
 * numbering usable; the payment session maps it to the channel through order_id anyway. */
#define ACT_ORDER_MONO_BYTES_MAX 64u
/* The v1 API's limit. Alipay's "subject" takes 256 characters; WeChat v3's "description"
 * takes only 127 bytes, so the WeChat adapter must cut a 128-byte subject at a UTF-8
 * boundary. */
#define ACT_ORDER_SUBJECT_BYTES_MAX 128u
/* WeChat v3 "attach" takes 128 bytes, Alipay "passback_params" 512: 127 fits both. */
#define ACT_ORDER_ATTACH_BYTES_MAX 127u
/* Merchant callback URL; WeChat's notify_url takes 256. */
#define ACT_ORDER_NOTIFY_URL_BYTES_MAX 256u
/* QR-code URL returned by the channel (WeChat code_url, Alipay qr_code are well under this). */
#define ACT_ORDER_PAY_URL_BYTES_MAX 512u
/* The channel's transaction id (WeChat transaction_id is 32, Alipay trade_no at most 64). */
#define ACT_ORDER_CHANNEL_TRADE_NO_BYTES_MAX 64u
/* ISO 4217 alphabetic code. */
#define ACT_ORDER_CURRENCY_BYTES 3u
/* "oid:" + order_id. */
#define ACT_ORDER_INDEX_PREFIX        "oid:"
#define ACT_ORDER_INDEX_KEY_BYTES_MAX (4u + RT_ID_BYTES_MAX)
/* Stored state format: version 2 is positional (written now); version 1, the named map, is
 * still read. */
#define ACT_ORDER_STATE_VERSION     2u
#define ACT_ORDER_STATE_VERSION_MAP 1u
/* The id kind letter of pay orders (rt_id_make). */
#define ACT_ORDER_ID_KIND 'P'

enum act_order_op {
    ACT_ORDER_CREATE = 0,
    ACT_ORDER_GET = 1, /* Read-only. */
    ACT_ORDER_CLOSE = 2,
    ACT_ORDER_EXPIRE = 3, /* Timer only. */
    ACT_ORDER_OP_COUNT = 4,
};

/* Persistent only through their names ("WAITING", ...): the numbers are in-memory. */
enum act_order_status {
    ACT_ORDER_WAITING = 0,
    ACT_ORDER_PAID = 1,
    ACT_ORDER_PARTIALLY_REFUNDED = 2,
    ACT_ORDER_REFUNDED = 3,
    ACT_ORDER_CLOSED = 4,
    ACT_ORDER_FAILED = 5,
    ACT_ORDER_STATUS_COUNT = 6,
};

enum act_channel {
    ACT_CHANNEL_WECHAT = 0,
    ACT_CHANNEL_ALIPAY = 1,
    ACT_CHANNEL_COUNT = 2,
};

enum act_product {
    ACT_PRODUCT_NATIVE = 0, /* QR code shown by the merchant, scanned by the payer. */
    ACT_PRODUCT_COUNT = 1,
};

/* A decoded order. Every string is NUL-terminated, validated and fits its array; an empty
 * string means nil for the optional ones (pay_url, channel_trade_no, notify_url, attach). */
struct act_order {
    char order_id[RT_ID_BYTES_MAX + 1];
    char app_id[ACT_APP_ID_BYTES_MAX + 1];
    char merchant_order_no[ACT_ORDER_MONO_BYTES_MAX + 1];
    int64_t amount; /* fen, 1..RT_ORDER_AMOUNT_MAX */
    char currency[ACT_ORDER_CURRENCY_BYTES + 1];
    char subject[ACT_ORDER_SUBJECT_BYTES_MAX + 1];
    uint8_t channel; /* enum act_channel */
    uint8_t product; /* enum act_product */
    uint8_t status;  /* enum act_order_status */
    char pay_url[ACT_ORDER_PAY_URL_BYTES_MAX + 1];
    char channel_trade_no[ACT_ORDER_CHANNEL_TRADE_NO_BYTES_MAX + 1];
    int64_t refunded_amount; /* fen, 0..amount */
    uint64_t created_at_ms;
    bool has_paid_at;
    uint64_t paid_at_ms; /* Valid when has_paid_at. */
    uint64_t expire_at_ms;
    bool has_closed_at;
    uint64_t closed_at_ms; /* Valid when has_closed_at. */
    char notify_url[ACT_ORDER_NOTIFY_URL_BYTES_MAX + 1];
    char attach[ACT_ORDER_ATTACH_BYTES_MAX + 1];
};

extern const struct rt_actor_type act_order_type;

/* True if @s[0..len) is a valid app_id / merchant_order_no (bytes off the network). */
bool act_app_id_valid(const char *s, size_t len);
bool act_order_mono_valid(const char *s, size_t len);
/* A merchant callback URL: 1..ACT_ORDER_NOTIFY_URL_BYTES_MAX printable ASCII bytes without
 * spaces, "http://" or "https://" and something after it (orders and apps share the rule). */
bool act_notify_url_valid(const char *s, size_t len);

/* Build the actor key app "/" mono into @out (RT_ACTOR_KEY_BYTES_MAX bytes). Returns its
 * length, or 0 if @app or @mono is not valid (nothing useful written). */
size_t act_order_key(uint8_t *out, const char *app, size_t app_len, const char *mono,
                     size_t mono_len);
/* Split a valid actor key into views of its parts. false if @key is not a valid order key. */
bool act_order_key_split(const uint8_t *key, size_t key_len, const char **app, size_t *app_len,
                         const char **mono, size_t *mono_len);

/* Build the index key "oid:" order_id into @out (ACT_ORDER_INDEX_KEY_BYTES_MAX bytes).
 * Returns its length, or 0 if @order_id is not a pay order id (rt_id_shard with kind 'P'). */
size_t act_order_index_key(uint8_t *out, const char *order_id, size_t order_id_len);

/* Text of a status / channel / product, as stored and sent ("WAITING", "wechat", ...). */
const char *act_order_status_name(enum act_order_status status);
const char *act_channel_name(enum act_channel channel);
const char *act_product_name(enum act_product product);

/* Decode stored state (version 2, or a version-1 map with "v": 1 and every field) into @order.
 * RT_ECORRUPT if it is not exactly that (wrong length, unknown or missing key, wrong type,
 * value out of range, inconsistent status), RT_EVERSION for another version. @order is
 * unspecified on error. */
int act_order_decode(const uint8_t *data, size_t len, struct act_order *order);
/* Decode an order object (a reply body: no "v") with the same checks. For clients/tests. */
int act_order_decode_object(const uint8_t *data, size_t len, struct act_order *order);

/* Append the order object (reply body) / the stored state to @w. @order must be valid (as
 * act_order_decode leaves it). Returns the writer's sticky error (0, RT_ETOOLARGE, RT_ENOMEM). */
int act_order_encode_object(const struct act_order *order, struct rt_mp_writer *w);
int act_order_encode_state(const struct act_order *order, struct rt_mp_writer *w);

#endif /* ACT_ORDER_H */
