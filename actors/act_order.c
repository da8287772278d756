/* The pay order actor: see act_order.h for keys, operations, argument and state formats.
 *
 * Everything a handler reads comes from the network (args) or the disk (state), so both are
 * decoded with the bounded rt_mp reader into a fixed-size struct and validated field by
 * field before anything is compared or written. Handlers are deterministic: the only inputs
 * are the state, the args, rt_ctx_now_ms and the ids rt_ctx_new_id hands out. */
#include "act_order.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "act_registry.h"
#include "rt_batch.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"

/* Fields of the order object / stored state, in encoding order (which is a persistent format:
 * replicas must write the same bytes). ORDER_F_V is only in stored state: the key "v" of the
 * version-1 map, which stores still written by older builds may hold. */
enum order_field {
    ORDER_F_ORDER_ID,
    ORDER_F_APP_ID,
    ORDER_F_MONO,
    ORDER_F_AMOUNT,
    ORDER_F_CURRENCY,
    ORDER_F_SUBJECT,
    ORDER_F_CHANNEL,
    ORDER_F_STATUS,
    ORDER_F_PAY_URL,
    ORDER_F_CHANNEL_TRADE_NO,
    ORDER_F_REFUNDED_AMOUNT,
    ORDER_F_CREATED_AT,
    ORDER_F_PAID_AT,
    ORDER_F_EXPIRE_AT,
    ORDER_F_PRODUCT,
    ORDER_F_NOTIFY_URL,
    ORDER_F_ATTACH,
    ORDER_F_CLOSED_AT,
    ORDER_F_COUNT,             /* Keys of the order object. */
    ORDER_F_V = ORDER_F_COUNT, /* Stored state only. */
    ORDER_F_ALL,
};

static const char *const order_field_names[ORDER_F_ALL] = {
    "order_id",
    "app_id",
    "merchant_order_no",
    "amount",
    "currency",
    "subject",
    "channel",
    "status",
    "pay_url",
    "channel_trade_no",
    "refunded_amount",
    "created_at",
    "paid_at",
    "expire_at",
    "product",
    "notify_url",
    "attach",
    "closed_at",
    "v",
};

static const char *const order_status_names[ACT_ORDER_STATUS_COUNT] = {
    "WAITING", "PAID", "PARTIALLY_REFUNDED", "REFUNDED", "CLOSED", "FAILED",
};
static const char *const channel_names[ACT_CHANNEL_COUNT] = {"wechat", "alipay"};
static const char *const product_names[ACT_PRODUCT_COUNT] = {"native"};

/* The timer's args: an empty msgpack map (fixmap 0). */
static const uint8_t order_expire_args[1] = {0x80};

/* ---- Names ---- */

const char *act_order_status_name(enum act_order_status status)
{
    assert(status >= 0 && status < ACT_ORDER_STATUS_COUNT);
    assert(order_status_names[status] != NULL);
    return order_status_names[status];
}

const char *act_channel_name(enum act_channel channel)
{
    assert(channel >= 0 && channel < ACT_CHANNEL_COUNT);
    assert(channel_names[channel] != NULL);
    return channel_names[channel];
}

const char *act_product_name(enum act_product product)
{
    assert(product >= 0 && product < ACT_PRODUCT_COUNT);
    assert(product_names[product] != NULL);
    return product_names[product];
}

/* Index of the view @s in @names[0..count), or -1. */
static int order_name_lookup(const char *const *names, int count, const char *s, uint32_t len)
{
    assert(names != NULL);
    assert(count > 0);
    for (int i = 0; i < count; i++) {
        if (rt_mp_key_is(s, len, names[i])) {
            return i;
        }
    }
    return -1;
}

/* ---- Character classes (bytes off the network: pointer + length) ---- */

static bool order_is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool act_app_id_valid(const char *s, size_t len)
{
    assert(s != NULL || len == 0);
    if (len < 1 || len > ACT_APP_ID_BYTES_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!order_is_alnum(s[i]) && s[i] != '_' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

bool act_order_mono_valid(const char *s, size_t len)
{
    assert(s != NULL || len == 0);
    if (len < 1 || len > ACT_ORDER_MONO_BYTES_MAX) {
        return false;
    }
    /* WeChat's out_trade_no alphabet plus '.': [0-9A-Za-z_|*@.-], one bit per byte value.
     * '/' is excluded, so it splits the key. A bitmap, not a chain of comparisons: every order
     * is checked four times on its way in (~350 instructions each for 20 bytes before). */
    static const uint64_t allowed[4] = {0x03ff640000000000ull, 0x17fffffe87ffffffull, 0, 0};
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (((allowed[c >> 6] >> (c & 63u)) & 1u) == 0) {
            return false;
        }
    }
    return true;
}

static bool order_currency_valid(const char *s, size_t len)
{
    assert(s != NULL || len == 0);
    if (len != ACT_ORDER_CURRENCY_BYTES) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 'A' || s[i] > 'Z') {
            return false;
        }
    }
    return true;
}

/* Free text (subject, attach): UTF-8 and no NUL, so that it fits a C string and a channel's
 * form field unchanged. */
static bool order_text_valid(const char *s, size_t len, size_t min, size_t max)
{
    assert(s != NULL || len == 0);
    assert(min <= max);
    if (len < min || len > max) {
        return false;
    }
    return memchr(s, '\0', len) == NULL && rt_utf8_valid(s, len);
}

/* Printable ASCII without spaces: URLs and channel-side ids are sent on as they are. */
static bool order_token_valid(const char *s, size_t len, size_t max)
{
    assert(s != NULL || len == 0);
    assert(max > 0);
    if (len < 1 || len > max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

bool act_notify_url_valid(const char *s, size_t len)
{
    assert(s != NULL || len == 0);
    static const char http[] = "http://";
    static const char https[] = "https://";
    if (!order_token_valid(s, len, ACT_ORDER_NOTIFY_URL_BYTES_MAX)) {
        return false;
    }
    /* A scheme alone is not a URL: at least one byte of host must follow. */
    if (len > sizeof(http) - 1 && memcmp(s, http, sizeof(http) - 1) == 0) {
        return true;
    }
    return len > sizeof(https) - 1 && memcmp(s, https, sizeof(https) - 1) == 0;
}

/* Copy a view into a NUL-terminated array of @cap bytes (caller checked len < cap). */
static void order_copy_str(char *dst, size_t cap, const char *s, size_t len)
{
    assert(dst != NULL);
    assert(len < cap);
    if (len > 0) {
        memcpy(dst, s, len);
    }
    dst[len] = '\0';
}

static bool order_str_eq(const char *cstr, const char *s, size_t len)
{
    assert(cstr != NULL);
    assert(s != NULL || len == 0);
    return strlen(cstr) == len && (len == 0 || memcmp(cstr, s, len) == 0);
}

/* ---- Keys ---- */

size_t act_order_key(uint8_t *out, const char *app, size_t app_len, const char *mono,
                     size_t mono_len)
{
    assert(out != NULL);
    static_assert(ACT_APP_ID_BYTES_MAX + 1 + ACT_ORDER_MONO_BYTES_MAX <= RT_ACTOR_KEY_BYTES_MAX,
                  "an order key must fit an actor key");
    if (!act_app_id_valid(app, app_len) || !act_order_mono_valid(mono, mono_len)) {
        return 0;
    }
    memcpy(out, app, app_len);
    out[app_len] = '/';
    memcpy(out + app_len + 1, mono, mono_len);
    return app_len + 1 + mono_len;
}

bool act_order_key_split(const uint8_t *key, size_t key_len, const char **app, size_t *app_len,
                         const char **mono, size_t *mono_len)
{
    assert(app != NULL && app_len != NULL);
    assert(mono != NULL && mono_len != NULL);
    if (key == NULL || key_len < 3 || key_len > RT_ACTOR_KEY_BYTES_MAX) {
        return false;
    }
    const uint8_t *slash = memchr(key, '/', key_len);
    if (slash == NULL) {
        return false;
    }
    size_t a = (size_t)(slash - key);
    const char *k = (const char *)key;
    if (!act_app_id_valid(k, a) || !act_order_mono_valid(k + a + 1, key_len - a - 1)) {
        return false;
    }
    *app = k;
    *app_len = a;
    *mono = k + a + 1;
    *mono_len = key_len - a - 1;
    return true;
}

size_t act_order_index_key(uint8_t *out, const char *order_id, size_t order_id_len)
{
    assert(out != NULL);
    static_assert(sizeof(ACT_ORDER_INDEX_PREFIX) - 1 + RT_ID_BYTES_MAX ==
                      ACT_ORDER_INDEX_KEY_BYTES_MAX,
                  "index key size");
    static_assert(ACT_ORDER_INDEX_KEY_BYTES_MAX <= RT_INDEX_KEY_BYTES_MAX, "index key limit");
    uint16_t shard = 0;
    if (order_id == NULL || order_id_len > RT_ID_BYTES_MAX ||
        !rt_id_shard(order_id, order_id_len, ACT_ORDER_ID_KIND, &shard)) {
        return 0;
    }
    size_t prefix_len = sizeof(ACT_ORDER_INDEX_PREFIX) - 1;
    memcpy(out, ACT_ORDER_INDEX_PREFIX, prefix_len);
    memcpy(out + prefix_len, order_id, order_id_len);
    return prefix_len + order_id_len;
}

/* Start a reader over @data. Empty args may come as (NULL, 0) (the engine passes timer args
 * that way), and rt_mp's reads assert a non-NULL position, so empty input gets a real empty
 * array: the first read then fails cleanly with RT_EMALFORMED. */
static void order_reader_init(struct rt_mp_reader *r, const uint8_t *data, size_t len)
{
    static const uint8_t empty[1];
    assert(r != NULL);
    assert(data != NULL || len == 0);
    rt_mp_reader_init(r, data != NULL ? data : empty, len);
}

/* ---- Encoding ---- */

/* The object names every field; stored state (version 2) is positional. */
static void order_write_key(struct rt_mp_writer *w, bool named, enum order_field f)
{
    assert(f >= 0 && f < ORDER_F_ALL);
    if (named) {
        rt_mp_write_cstr(w, order_field_names[f]);
    }
}

/* Optional string: nil when empty. */
static void order_write_opt_str(struct rt_mp_writer *w, const char *s)
{
    assert(s != NULL);
    if (s[0] == '\0') {
        rt_mp_write_nil(w);
    } else {
        rt_mp_write_cstr(w, s);
    }
}

static void order_write_opt_time(struct rt_mp_writer *w, bool has, uint64_t ms)
{
    assert(w != NULL);
    assert(has || ms == 0);
    if (has) {
        rt_mp_write_uint(w, ms);
    } else {
        rt_mp_write_nil(w);
    }
}

/* The ORDER_F_COUNT fields in field order: key/value pairs if @named, else values only. */
static void order_write_fields(const struct act_order *o, bool named, struct rt_mp_writer *w)
{
    assert(o != NULL && w != NULL);
    assert(o->status < ACT_ORDER_STATUS_COUNT && o->channel < ACT_CHANNEL_COUNT);
    assert(o->product < ACT_PRODUCT_COUNT);
    assert(o->amount >= 1 && o->refunded_amount >= 0);
    order_write_key(w, named, ORDER_F_ORDER_ID);
    rt_mp_write_cstr(w, o->order_id);
    order_write_key(w, named, ORDER_F_APP_ID);
    rt_mp_write_cstr(w, o->app_id);
    order_write_key(w, named, ORDER_F_MONO);
    rt_mp_write_cstr(w, o->merchant_order_no);
    order_write_key(w, named, ORDER_F_AMOUNT);
    rt_mp_write_uint(w, (uint64_t)o->amount);
    order_write_key(w, named, ORDER_F_CURRENCY);
    rt_mp_write_cstr(w, o->currency);
    order_write_key(w, named, ORDER_F_SUBJECT);
    rt_mp_write_cstr(w, o->subject);
    order_write_key(w, named, ORDER_F_CHANNEL);
    rt_mp_write_cstr(w, act_channel_name((enum act_channel)o->channel));
    order_write_key(w, named, ORDER_F_STATUS);
    rt_mp_write_cstr(w, act_order_status_name((enum act_order_status)o->status));
    order_write_key(w, named, ORDER_F_PAY_URL);
    order_write_opt_str(w, o->pay_url);
    order_write_key(w, named, ORDER_F_CHANNEL_TRADE_NO);
    order_write_opt_str(w, o->channel_trade_no);
    order_write_key(w, named, ORDER_F_REFUNDED_AMOUNT);
    rt_mp_write_uint(w, (uint64_t)o->refunded_amount);
    order_write_key(w, named, ORDER_F_CREATED_AT);
    rt_mp_write_uint(w, o->created_at_ms);
    order_write_key(w, named, ORDER_F_PAID_AT);
    order_write_opt_time(w, o->has_paid_at, o->paid_at_ms);
    order_write_key(w, named, ORDER_F_EXPIRE_AT);
    rt_mp_write_uint(w, o->expire_at_ms);
    order_write_key(w, named, ORDER_F_PRODUCT);
    rt_mp_write_cstr(w, act_product_name((enum act_product)o->product));
    order_write_key(w, named, ORDER_F_NOTIFY_URL);
    order_write_opt_str(w, o->notify_url);
    order_write_key(w, named, ORDER_F_ATTACH);
    order_write_opt_str(w, o->attach);
    order_write_key(w, named, ORDER_F_CLOSED_AT);
    order_write_opt_time(w, o->has_closed_at, o->closed_at_ms);
}

int act_order_encode_object(const struct act_order *order, struct rt_mp_writer *w)
{
    assert(order != NULL);
    assert(w != NULL);
    rt_mp_write_map(w, ORDER_F_COUNT);
    order_write_fields(order, true, w);
    return rt_mp_writer_error(w);
}

int act_order_encode_state(const struct act_order *order, struct rt_mp_writer *w)
{
    assert(order != NULL);
    assert(w != NULL);
    rt_mp_write_array(w, ORDER_F_COUNT + 1);
    /* Version first so that a reader can tell the format before the fields. */
    rt_mp_write_uint(w, ACT_ORDER_STATE_VERSION);
    order_write_fields(order, false, w);
    return rt_mp_writer_error(w);
}

/* ---- Decoding stored state / objects ---- */

/* Read a str of 0..cap-1 bytes into @dst (NUL-terminated); with @nullable, nil gives "". A
 * non-nullable or nullable field never holds "" in our encoding, so "" is rejected. */
static bool order_read_str(struct rt_mp_reader *r, char *dst, size_t cap, bool nullable)
{
    assert(r != NULL && dst != NULL);
    assert(cap > 1);
    if (nullable && rt_mp_peek(r) == RT_MP_NIL) {
        dst[0] = '\0';
        return rt_mp_read_nil(r) == 0;
    }
    const char *s = NULL;
    uint32_t len = 0;
    if (rt_mp_read_str(r, &s, &len) != 0 || len == 0 || len >= cap) {
        return false;
    }
    if (memchr(s, '\0', len) != NULL) {
        return false;
    }
    order_copy_str(dst, cap, s, len);
    return true;
}

static bool order_read_enum(struct rt_mp_reader *r, const char *const *names, int count,
                            uint8_t *out)
{
    assert(r != NULL && out != NULL);
    assert(count > 0 && count <= UINT8_MAX);
    const char *s = NULL;
    uint32_t len = 0;
    if (rt_mp_read_str(r, &s, &len) != 0) {
        return false;
    }
    int i = order_name_lookup(names, count, s, len);
    if (i < 0) {
        return false;
    }
    *out = (uint8_t)i;
    return true;
}

static bool order_read_opt_time(struct rt_mp_reader *r, bool *has, uint64_t *ms)
{
    assert(r != NULL);
    assert(has != NULL && ms != NULL);
    *has = false;
    *ms = 0;
    if (rt_mp_peek(r) == RT_MP_NIL) {
        return rt_mp_read_nil(r) == 0;
    }
    *has = true;
    return rt_mp_read_uint(r, ms) == 0;
}

/* Read the value of field @f into @o. false on a wrong type or a value that does not fit. */
static bool order_read_field(struct rt_mp_reader *r, enum order_field f, struct act_order *o)
{
    assert(r != NULL && o != NULL);
    assert(f >= 0 && f < ORDER_F_COUNT);
    switch (f) {
    case ORDER_F_ORDER_ID:
        return order_read_str(r, o->order_id, sizeof(o->order_id), false);
    case ORDER_F_APP_ID:
        return order_read_str(r, o->app_id, sizeof(o->app_id), false);
    case ORDER_F_MONO:
        return order_read_str(r, o->merchant_order_no, sizeof(o->merchant_order_no), false);
    case ORDER_F_AMOUNT:
        return rt_mp_read_int(r, &o->amount) == 0;
    case ORDER_F_CURRENCY:
        return order_read_str(r, o->currency, sizeof(o->currency), false);
    case ORDER_F_SUBJECT:
        return order_read_str(r, o->subject, sizeof(o->subject), false);
    case ORDER_F_CHANNEL:
        return order_read_enum(r, channel_names, ACT_CHANNEL_COUNT, &o->channel);
    case ORDER_F_STATUS:
        return order_read_enum(r, order_status_names, ACT_ORDER_STATUS_COUNT, &o->status);
    case ORDER_F_PAY_URL:
        return order_read_str(r, o->pay_url, sizeof(o->pay_url), true);
    case ORDER_F_CHANNEL_TRADE_NO:
        return order_read_str(r, o->channel_trade_no, sizeof(o->channel_trade_no), true);
    case ORDER_F_REFUNDED_AMOUNT:
        return rt_mp_read_int(r, &o->refunded_amount) == 0;
    case ORDER_F_CREATED_AT:
        return rt_mp_read_uint(r, &o->created_at_ms) == 0;
    case ORDER_F_PAID_AT:
        return order_read_opt_time(r, &o->has_paid_at, &o->paid_at_ms);
    case ORDER_F_EXPIRE_AT:
        return rt_mp_read_uint(r, &o->expire_at_ms) == 0;
    case ORDER_F_PRODUCT:
        return order_read_enum(r, product_names, ACT_PRODUCT_COUNT, &o->product);
    case ORDER_F_NOTIFY_URL:
        return order_read_str(r, o->notify_url, sizeof(o->notify_url), true);
    case ORDER_F_ATTACH:
        return order_read_str(r, o->attach, sizeof(o->attach), true);
    case ORDER_F_CLOSED_AT:
        return order_read_opt_time(r, &o->has_closed_at, &o->closed_at_ms);
    default:
        assert(0 && "not an object field");
        return false;
    }
}

/* Every invariant a stored order keeps. Whatever passes can be encoded and handled safely. */
static bool order_valid(const struct act_order *o)
{
    assert(o != NULL);
    uint16_t shard = 0;
    if (!rt_id_shard(o->order_id, strlen(o->order_id), ACT_ORDER_ID_KIND, &shard) ||
        !act_app_id_valid(o->app_id, strlen(o->app_id)) ||
        !act_order_mono_valid(o->merchant_order_no, strlen(o->merchant_order_no)) ||
        !order_currency_valid(o->currency, strlen(o->currency)) ||
        !order_text_valid(o->subject, strlen(o->subject), 1, ACT_ORDER_SUBJECT_BYTES_MAX) ||
        !order_text_valid(o->attach, strlen(o->attach), 0, ACT_ORDER_ATTACH_BYTES_MAX)) {
        return false;
    }
    if ((o->pay_url[0] != '\0' &&
         !order_text_valid(o->pay_url, strlen(o->pay_url), 1, ACT_ORDER_PAY_URL_BYTES_MAX)) ||
        (o->channel_trade_no[0] != '\0' &&
         !order_token_valid(o->channel_trade_no, strlen(o->channel_trade_no),
                            ACT_ORDER_CHANNEL_TRADE_NO_BYTES_MAX)) ||
        (o->notify_url[0] != '\0' && !act_notify_url_valid(o->notify_url, strlen(o->notify_url)))) {
        return false;
    }
    if (o->amount < 1 || o->amount > RT_ORDER_AMOUNT_MAX || o->refunded_amount < 0 ||
        o->refunded_amount > o->amount) {
        return false;
    }
    /* expire_at = created_at + expire_s * 1000 with expire_s in range (create's rule). */
    if (o->expire_at_ms < o->created_at_ms) {
        return false;
    }
    uint64_t life_ms = o->expire_at_ms - o->created_at_ms;
    if (life_ms % 1000 != 0 || life_ms / 1000 < RT_ORDER_EXPIRE_S_MIN ||
        life_ms / 1000 > RT_ORDER_EXPIRE_S_MAX) {
        return false;
    }
    switch ((enum act_order_status)o->status) {
    case ACT_ORDER_WAITING:
        return !o->has_paid_at && !o->has_closed_at && o->refunded_amount == 0;
    case ACT_ORDER_PAID:
        return o->has_paid_at && !o->has_closed_at && o->refunded_amount == 0;
    case ACT_ORDER_PARTIALLY_REFUNDED:
        return o->has_paid_at && o->refunded_amount > 0 && o->refunded_amount < o->amount;
    case ACT_ORDER_REFUNDED:
        return o->has_paid_at && o->refunded_amount == o->amount;
    case ACT_ORDER_CLOSED:
        return o->has_closed_at && !o->has_paid_at && o->refunded_amount == 0;
    case ACT_ORDER_FAILED:
        return !o->has_paid_at && o->refunded_amount == 0;
    default:
        return false;
    }
}

/* Stored state, version 2: [2, the ORDER_F_COUNT values in field order]. The version is read
 * before the length so that another version is told apart from damage. */
static int order_decode_positional(struct rt_mp_reader *r, struct act_order *o)
{
    uint32_t count = 0;
    uint64_t v = 0;
    if (rt_mp_read_array(r, &count) != 0 || count == 0 || rt_mp_read_uint(r, &v) != 0) {
        return RT_ECORRUPT;
    }
    if (v != ACT_ORDER_STATE_VERSION) {
        return RT_EVERSION;
    }
    if (count != ORDER_F_COUNT + 1) {
        return RT_ECORRUPT;
    }
    for (int f = 0; f < ORDER_F_COUNT; f++) {
        if (!order_read_field(r, (enum order_field)f, o)) {
            return RT_ECORRUPT;
        }
    }
    return 0;
}

/* The object, or (@state) stored state version 1: the object's map with "v": 1 first. */
static int order_decode_named(struct rt_mp_reader *r, struct act_order *o, bool state)
{
    uint32_t count = 0;
    uint32_t want = state ? ORDER_F_COUNT + 1 : ORDER_F_COUNT;
    if (rt_mp_read_map(r, &count) != 0 || count != want) {
        return RT_ECORRUPT;
    }
    uint32_t seen = 0;
    static_assert(ORDER_F_ALL <= 32, "seen is a 32-bit mask");
    for (uint32_t i = 0; i < count; i++) {
        const char *k = NULL;
        uint32_t k_len = 0;
        if (rt_mp_read_str(r, &k, &k_len) != 0) {
            return RT_ECORRUPT;
        }
        int f = order_name_lookup(order_field_names, state ? ORDER_F_ALL : ORDER_F_COUNT, k, k_len);
        if (f < 0 || (seen & (1u << f)) != 0) {
            return RT_ECORRUPT; /* Unknown or repeated key. */
        }
        seen |= 1u << f;
        if (f == ORDER_F_V) {
            uint64_t v = 0;
            if (rt_mp_read_uint(r, &v) != 0) {
                return RT_ECORRUPT;
            }
            if (v != ACT_ORDER_STATE_VERSION_MAP) {
                return RT_EVERSION;
            }
            continue;
        }
        if (!order_read_field(r, (enum order_field)f, o)) {
            return RT_ECORRUPT;
        }
    }
    /* count == want and no repeats: every key was present. */
    assert(seen == (1u << want) - 1);
    return 0;
}

static int order_decode(const uint8_t *data, size_t len, struct act_order *o, bool state)
{
    assert(o != NULL);
    assert(data != NULL || len == 0);
    memset(o, 0, sizeof(*o));
    struct rt_mp_reader r;
    order_reader_init(&r, data, len);
    int rv = state && len > 0 && rt_mp_peek(&r) == RT_MP_ARRAY ? order_decode_positional(&r, o)
                                                               : order_decode_named(&r, o, state);
    if (rv != 0) {
        return rv;
    }
    /* Nothing may follow the order. */
    return rt_mp_remaining(&r) == 0 && order_valid(o) ? 0 : RT_ECORRUPT;
}

int act_order_decode(const uint8_t *data, size_t len, struct act_order *order)
{
    assert(order != NULL);
    assert(data != NULL || len == 0);
    return order_decode(data, len, order, true);
}

int act_order_decode_object(const uint8_t *data, size_t len, struct act_order *order)
{
    assert(order != NULL);
    assert(data != NULL || len == 0);
    return order_decode(data, len, order, false);
}

/* ---- Arguments ---- */

/* A key off the network, made safe to quote in a message: printable ASCII, truncated. */
static void order_quote(char out[48], const char *s, size_t len)
{
    assert(out != NULL);
    assert(s != NULL || len == 0);
    size_t n = len < 40 ? len : 40;
    for (size_t i = 0; i < n; i++) {
        out[i] = (s[i] >= 0x20 && s[i] <= 0x7e) ? s[i] : '?';
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

enum create_arg {
    CREATE_A_APP_ID,
    CREATE_A_MONO,
    CREATE_A_AMOUNT,
    CREATE_A_CURRENCY,
    CREATE_A_SUBJECT,
    CREATE_A_CHANNEL,
    CREATE_A_PRODUCT,
    CREATE_A_EXPIRE_S,
    CREATE_A_NOTIFY_URL,
    CREATE_A_ATTACH,
    CREATE_A_COUNT,
};

static const char *const create_arg_names[CREATE_A_COUNT] = {
    "app_id",  "merchant_order_no", "amount",   "currency",   "subject",
    "channel", "product",           "expire_s", "notify_url", "attach",
};

/* Fields every create must carry; the others have defaults. */
#define CREATE_REQUIRED                                                                            \
    ((1u << CREATE_A_APP_ID) | (1u << CREATE_A_MONO) | (1u << CREATE_A_AMOUNT) |                   \
     (1u << CREATE_A_SUBJECT) | (1u << CREATE_A_CHANNEL))

/* Validated create arguments with defaults applied. Views point into the args bytes. */
struct create_args {
    const char *app;
    uint32_t app_len;
    const char *mono;
    uint32_t mono_len;
    int64_t amount;
    char currency[ACT_ORDER_CURRENCY_BYTES + 1];
    const char *subject;
    uint32_t subject_len;
    uint8_t channel; /* enum act_channel */
    uint8_t product; /* enum act_product */
    uint64_t expire_s;
    const char *notify_url; /* NULL when absent. */
    uint32_t notify_url_len;
    const char *attach; /* NULL when absent or "". */
    uint32_t attach_len;
};

/* Read a str value of field @name, failing with a message that names it. */
static int order_arg_str(struct rt_actor_ctx *ctx, struct rt_mp_reader *r, const char *name,
                         const char **s, uint32_t *len)
{
    assert(ctx != NULL && r != NULL);
    assert(name != NULL);
    if (rt_mp_read_str(r, s, len) != 0) {
        rt_ctx_fail(ctx, "%s must be a string", name);
        return RT_EINVAL;
    }
    return 0;
}

/* Read an integer value of field @name (any msgpack int encoding) into [min, max]. */
static int order_arg_int(struct rt_actor_ctx *ctx, struct rt_mp_reader *r, const char *name,
                         int64_t min, int64_t max, int64_t *out)
{
    assert(ctx != NULL && r != NULL);
    assert(min <= max);
    enum rt_mp_type t = rt_mp_peek(r);
    if (t != RT_MP_UINT && t != RT_MP_INT) {
        rt_ctx_fail(ctx, "%s must be an integer", name);
        return RT_EINVAL;
    }
    int64_t v = 0;
    if (rt_mp_read_int(r, &v) != 0 || v < min || v > max) {
        /* A uint above INT64_MAX fails read_int: it is out of range all the same. */
        rt_ctx_fail(ctx, "%s must be between %lld and %lld", name, (long long)min, (long long)max);
        return RT_EINVAL;
    }
    *out = v;
    return 0;
}

static int create_arg_read(struct rt_actor_ctx *ctx, struct rt_mp_reader *r, enum create_arg a,
                           struct create_args *args)
{
    assert(ctx != NULL && r != NULL && args != NULL);
    assert(a >= 0 && a < CREATE_A_COUNT);
    const char *name = create_arg_names[a];
    const char *s = NULL;
    uint32_t len = 0;
    int64_t v = 0;
    int rv = 0;
    switch (a) {
    case CREATE_A_APP_ID:
        if ((rv = order_arg_str(ctx, r, name, &args->app, &args->app_len)) != 0) {
            return rv;
        }
        if (!act_app_id_valid(args->app, args->app_len)) {
            rt_ctx_fail(ctx, "app_id must be 1-%u characters of [A-Za-z0-9_-]",
                        ACT_APP_ID_BYTES_MAX);
            return RT_EINVAL;
        }
        return 0;
    case CREATE_A_MONO:
        if ((rv = order_arg_str(ctx, r, name, &args->mono, &args->mono_len)) != 0) {
            return rv;
        }
        if (!act_order_mono_valid(args->mono, args->mono_len)) {
            rt_ctx_fail(ctx, "merchant_order_no must be 1-%u characters of [A-Za-z0-9_-|*@.]",
                        ACT_ORDER_MONO_BYTES_MAX);
            return RT_EINVAL;
        }
        return 0;
    case CREATE_A_AMOUNT:
        return order_arg_int(ctx, r, name, 1, RT_ORDER_AMOUNT_MAX, &args->amount);
    case CREATE_A_CURRENCY:
        if ((rv = order_arg_str(ctx, r, name, &s, &len)) != 0) {
            return rv;
        }
        if (!order_currency_valid(s, len)) {
            rt_ctx_fail(ctx, "currency must be 3 uppercase letters (ISO 4217)");
            return RT_EINVAL;
        }
        order_copy_str(args->currency, sizeof(args->currency), s, len);
        return 0;
    case CREATE_A_SUBJECT:
        if ((rv = order_arg_str(ctx, r, name, &args->subject, &args->subject_len)) != 0) {
            return rv;
        }
        if (!order_text_valid(args->subject, args->subject_len, 1, ACT_ORDER_SUBJECT_BYTES_MAX)) {
            rt_ctx_fail(ctx, "subject must be 1-%u bytes of UTF-8 without NUL",
                        ACT_ORDER_SUBJECT_BYTES_MAX);
            return RT_EINVAL;
        }
        return 0;
    case CREATE_A_CHANNEL:
        if ((rv = order_arg_str(ctx, r, name, &s, &len)) != 0) {
            return rv;
        }
        v = order_name_lookup(channel_names, ACT_CHANNEL_COUNT, s, len);
        if (v < 0) {
            rt_ctx_fail(ctx, "channel must be \"wechat\" or \"alipay\"");
            return RT_EINVAL;
        }
        args->channel = (uint8_t)v;
        return 0;
    case CREATE_A_PRODUCT:
        if ((rv = order_arg_str(ctx, r, name, &s, &len)) != 0) {
            return rv;
        }
        v = order_name_lookup(product_names, ACT_PRODUCT_COUNT, s, len);
        if (v < 0) {
            rt_ctx_fail(ctx, "product must be \"native\"");
            return RT_EINVAL;
        }
        args->product = (uint8_t)v;
        return 0;
    case CREATE_A_EXPIRE_S:
        if ((rv = order_arg_int(ctx, r, name, RT_ORDER_EXPIRE_S_MIN, RT_ORDER_EXPIRE_S_MAX, &v)) !=
            0) {
            return rv;
        }
        args->expire_s = (uint64_t)v;
        return 0;
    case CREATE_A_NOTIFY_URL:
        if ((rv = order_arg_str(ctx, r, name, &args->notify_url, &args->notify_url_len)) != 0) {
            return rv;
        }
        if (!act_notify_url_valid(args->notify_url, args->notify_url_len)) {
            rt_ctx_fail(ctx,
                        "notify_url must be an http:// or https:// URL of at most %u printable "
                        "characters",
                        ACT_ORDER_NOTIFY_URL_BYTES_MAX);
            return RT_EINVAL;
        }
        return 0;
    case CREATE_A_ATTACH:
        if ((rv = order_arg_str(ctx, r, name, &args->attach, &args->attach_len)) != 0) {
            return rv;
        }
        if (!order_text_valid(args->attach, args->attach_len, 0, ACT_ORDER_ATTACH_BYTES_MAX)) {
            rt_ctx_fail(ctx, "attach must be at most %u bytes of UTF-8 without NUL",
                        ACT_ORDER_ATTACH_BYTES_MAX);
            return RT_EINVAL;
        }
        if (args->attach_len == 0) {
            args->attach = NULL; /* "" is the same as absent: one canonical form. */
        }
        return 0;
    default:
        assert(0 && "unhandled create argument");
        return RT_EINTERNAL;
    }
}

/* Parse and validate create's args; fills @args with defaults applied. */
static int create_args_parse(struct rt_actor_ctx *ctx, const uint8_t *data, size_t len,
                             struct create_args *args)
{
    assert(ctx != NULL && args != NULL);
    assert(data != NULL || len == 0);
    memset(args, 0, sizeof(*args));
    memcpy(args->currency, "CNY", sizeof(args->currency));
    args->product = ACT_PRODUCT_NATIVE;
    args->expire_s = RT_ORDER_EXPIRE_S_DEFAULT;
    struct rt_mp_reader r;
    order_reader_init(&r, data, len);
    uint32_t count = 0;
    if (rt_mp_read_map(&r, &count) != 0) {
        rt_ctx_fail(ctx, "args must be a msgpack map");
        return RT_EINVAL;
    }
    uint32_t seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *k = NULL;
        uint32_t k_len = 0;
        if (rt_mp_read_str(&r, &k, &k_len) != 0) {
            rt_ctx_fail(ctx, "args keys must be strings");
            return RT_EINVAL;
        }
        int a = order_name_lookup(create_arg_names, CREATE_A_COUNT, k, k_len);
        char quoted[48];
        if (a < 0) {
            order_quote(quoted, k, k_len);
            rt_ctx_fail(ctx, "unknown field \"%s\"", quoted);
            return RT_EINVAL;
        }
        if ((seen & (1u << a)) != 0) {
            rt_ctx_fail(ctx, "field %s given twice", create_arg_names[a]);
            return RT_EINVAL;
        }
        seen |= 1u << a;
        int rv = create_arg_read(ctx, &r, (enum create_arg)a, args);
        if (rv != 0) {
            return rv;
        }
    }
    if (rt_mp_remaining(&r) != 0) {
        rt_ctx_fail(ctx, "args: bytes after the map");
        return RT_EINVAL;
    }
    for (int a = 0; a < CREATE_A_COUNT; a++) {
        if ((CREATE_REQUIRED & (1u << a)) != 0 && (seen & (1u << a)) == 0) {
            rt_ctx_fail(ctx, "missing required field %s", create_arg_names[a]);
            return RT_EINVAL;
        }
    }
    return 0;
}

/* Parse {app_id} (get/close/expire) and check it against the key's app part. With
 * @optional, empty bytes, {} and a map without app_id are accepted (expire's timer args). */
static int app_args_check(struct rt_actor_ctx *ctx, const uint8_t *data, size_t len,
                          const char *key_app, size_t key_app_len, bool optional)
{
    assert(ctx != NULL && key_app != NULL);
    assert(data != NULL || len == 0);
    if (len == 0 && optional) {
        return 0;
    }
    struct rt_mp_reader r;
    order_reader_init(&r, data, len);
    uint32_t count = 0;
    if (rt_mp_read_map(&r, &count) != 0) {
        rt_ctx_fail(ctx, "args must be a msgpack map");
        return RT_EINVAL;
    }
    const char *app = NULL;
    uint32_t app_len = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *k = NULL;
        uint32_t k_len = 0;
        if (rt_mp_read_str(&r, &k, &k_len) != 0) {
            rt_ctx_fail(ctx, "args keys must be strings");
            return RT_EINVAL;
        }
        if (!rt_mp_key_is(k, k_len, "app_id")) {
            char quoted[48];
            order_quote(quoted, k, k_len);
            rt_ctx_fail(ctx, "unknown field \"%s\"", quoted);
            return RT_EINVAL;
        }
        if (app != NULL) {
            rt_ctx_fail(ctx, "field app_id given twice");
            return RT_EINVAL;
        }
        int rv = order_arg_str(ctx, &r, "app_id", &app, &app_len);
        if (rv != 0) {
            return rv;
        }
        if (!act_app_id_valid(app, app_len)) {
            rt_ctx_fail(ctx, "app_id must be 1-%u characters of [A-Za-z0-9_-]",
                        ACT_APP_ID_BYTES_MAX);
            return RT_EINVAL;
        }
    }
    if (rt_mp_remaining(&r) != 0) {
        rt_ctx_fail(ctx, "args: bytes after the map");
        return RT_EINVAL;
    }
    if (app == NULL) {
        if (optional) {
            return 0;
        }
        rt_ctx_fail(ctx, "missing required field app_id");
        return RT_EINVAL;
    }
    if (app_len != key_app_len || memcmp(app, key_app, app_len) != 0) {
        rt_ctx_fail(ctx, "the order belongs to another app");
        return RT_EFORBIDDEN;
    }
    return 0;
}

/* ---- Handler helpers ---- */

/* The actor's key split into app and order number; RT_EINVAL if it is not an order key
 * (the API builds keys, but a command is still bytes off the wire). */
static int order_ctx_key(struct rt_actor_ctx *ctx, const char **app, size_t *app_len,
                         const char **mono, size_t *mono_len)
{
    assert(ctx != NULL);
    assert(app != NULL && mono != NULL);
    size_t key_len = 0;
    const uint8_t *key = rt_ctx_key(ctx, &key_len);
    if (!act_order_key_split(key, key_len, app, app_len, mono, mono_len)) {
        rt_ctx_fail(ctx, "not an order key: want app_id/merchant_order_no");
        return RT_EINVAL;
    }
    return 0;
}

/* Load the actor's order. *exists false (and 0) when there is none. */
static int order_load(struct rt_actor_ctx *ctx, struct act_order *o, bool *exists)
{
    assert(ctx != NULL && o != NULL);
    assert(exists != NULL);
    size_t len = 0;
    const uint8_t *state = rt_ctx_state(ctx, &len);
    *exists = state != NULL;
    if (state == NULL) {
        return 0;
    }
    int rv = act_order_decode(state, len, o);
    if (rv != 0) {
        /* Never "fix" it here: every replica would have to agree on the fix. Surface it. */
        rt_ctx_fail(ctx, "stored order state is unreadable (%s)", rt_strerror(rv));
        return RT_ECORRUPT;
    }
    return 0;
}

static int order_save(struct rt_actor_ctx *ctx, const struct act_order *o)
{
    assert(ctx != NULL && o != NULL);
    assert(order_valid(o));
    struct rt_buf *buf = rt_ctx_state_buf(ctx);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    int rv = act_order_encode_state(o, &w);
    return rv == 0 ? rt_ctx_set_state(ctx, buf->data, buf->len) : rv;
}

static int order_reply(struct rt_actor_ctx *ctx, const struct act_order *o)
{
    assert(ctx != NULL && o != NULL);
    if (!rt_ctx_reply_wanted(ctx)) {
        return 0; /* A follower: the leader's reply is the one sent (~11% of bench_apply). */
    }
    struct rt_buf *reply = rt_ctx_reply(ctx);
    assert(reply != NULL && reply->len == 0);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, reply);
    return act_order_encode_object(o, &w);
}

/* First field where an existing order differs from create args, or NULL if none. */
static const char *order_create_diff(const struct act_order *o, const struct create_args *a)
{
    assert(o != NULL && a != NULL);
    assert(a->app != NULL && a->mono != NULL && a->subject != NULL);
    if (!order_str_eq(o->app_id, a->app, a->app_len)) {
        return "app_id";
    }
    if (!order_str_eq(o->merchant_order_no, a->mono, a->mono_len)) {
        return "merchant_order_no";
    }
    if (o->amount != a->amount) {
        return "amount";
    }
    if (strcmp(o->currency, a->currency) != 0) {
        return "currency";
    }
    if (!order_str_eq(o->subject, a->subject, a->subject_len)) {
        return "subject";
    }
    if (o->channel != a->channel) {
        return "channel";
    }
    if (o->product != a->product) {
        return "product";
    }
    if ((o->expire_at_ms - o->created_at_ms) / 1000 != a->expire_s) {
        return "expire_s";
    }
    if (!order_str_eq(o->notify_url, a->notify_url,
                      a->notify_url == NULL ? 0 : a->notify_url_len)) {
        return "notify_url";
    }
    if (!order_str_eq(o->attach, a->attach, a->attach == NULL ? 0 : a->attach_len)) {
        return "attach";
    }
    return NULL;
}

/* ---- Handlers ---- */

static int order_create(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    assert(ctx != NULL);
    assert(args != NULL || args_len == 0);
    struct create_args a;
    int rv = create_args_parse(ctx, args, args_len, &a);
    if (rv != 0) {
        return rv;
    }
    const char *key_app = NULL;
    const char *key_mono = NULL;
    size_t key_app_len = 0;
    size_t key_mono_len = 0;
    if ((rv = order_ctx_key(ctx, &key_app, &key_app_len, &key_mono, &key_mono_len)) != 0) {
        return rv;
    }
    if (a.app_len != key_app_len || memcmp(a.app, key_app, key_app_len) != 0 ||
        a.mono_len != key_mono_len || memcmp(a.mono, key_mono, key_mono_len) != 0) {
        rt_ctx_fail(ctx, "app_id/merchant_order_no do not match the order's key");
        return RT_EINVAL;
    }
    struct act_order o;
    bool exists = false;
    if ((rv = order_load(ctx, &o, &exists)) != 0) {
        return rv;
    }
    if (exists) {
        /* Idempotency (DESIGN.md): same parameters -> the original order, untouched. */
        const char *diff = order_create_diff(&o, &a);
        if (diff != NULL) {
            rt_ctx_fail(ctx, "merchant_order_no already used with a different %s", diff);
            return RT_ECONFLICT;
        }
        return order_reply(ctx, &o);
    }
    uint64_t now_ms = rt_ctx_now_ms(ctx);
    uint64_t life_ms = a.expire_s * 1000u;
    if (now_ms > UINT64_MAX - life_ms) {
        /* Only a broken leader clock gets here; refuse rather than wrap. */
        rt_ctx_fail(ctx, "entry timestamp out of range");
        return RT_EINTERNAL;
    }
    memset(&o, 0, sizeof(o));
    size_t id_len = rt_ctx_new_id(ctx, ACT_ORDER_ID_KIND, o.order_id);
    if (id_len == 0) {
        /* The entry ran out of id positions (rt_actor.h): the batch limits make it
         * unreachable, but a client retry in the next entry would succeed. */
        rt_ctx_fail(ctx, "too many ids in one entry");
        return RT_ETOOLARGE;
    }
    assert(id_len <= RT_ID_BYTES_MAX && o.order_id[id_len] == '\0');
    order_copy_str(o.app_id, sizeof(o.app_id), a.app, a.app_len);
    order_copy_str(o.merchant_order_no, sizeof(o.merchant_order_no), a.mono, a.mono_len);
    o.amount = a.amount;
    memcpy(o.currency, a.currency, sizeof(o.currency));
    order_copy_str(o.subject, sizeof(o.subject), a.subject, a.subject_len);
    o.channel = a.channel;
    o.product = a.product;
    o.status = ACT_ORDER_WAITING;
    o.refunded_amount = 0;
    o.created_at_ms = now_ms;
    o.expire_at_ms = now_ms + life_ms;
    if (a.notify_url != NULL) {
        order_copy_str(o.notify_url, sizeof(o.notify_url), a.notify_url, a.notify_url_len);
    }
    if (a.attach != NULL) {
        order_copy_str(o.attach, sizeof(o.attach), a.attach, a.attach_len);
    }
    if ((rv = order_save(ctx, &o)) != 0) {
        return rv;
    }
    /* order.get by order_id reads index key ACT_ORDER_INDEX_PREFIX + order_id
     * (act_order_index_key); the engine stores it with the entry's other orders. */
    rv = rt_ctx_index_id(ctx, (const uint8_t *)ACT_ORDER_INDEX_PREFIX,
                         sizeof(ACT_ORDER_INDEX_PREFIX) - 1, o.order_id, id_len);
    if (rv != 0) {
        return rv;
    }
    rv = rt_ctx_timer_set(ctx, o.expire_at_ms, ACT_ORDER_EXPIRE, order_expire_args,
                          sizeof(order_expire_args));
    if (rv != 0) {
        return rv;
    }
    return order_reply(ctx, &o);
}

/* Common start of get/close/expire: key, args and the stored order (RT_ENOTFOUND if none). */
static int order_open(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len,
                      bool app_optional, struct act_order *o)
{
    assert(ctx != NULL && o != NULL);
    assert(args != NULL || args_len == 0);
    const char *key_app = NULL;
    const char *key_mono = NULL;
    size_t key_app_len = 0;
    size_t key_mono_len = 0;
    int rv = order_ctx_key(ctx, &key_app, &key_app_len, &key_mono, &key_mono_len);
    if (rv != 0) {
        return rv;
    }
    if ((rv = app_args_check(ctx, args, args_len, key_app, key_app_len, app_optional)) != 0) {
        return rv;
    }
    bool exists = false;
    if ((rv = order_load(ctx, o, &exists)) != 0) {
        return rv;
    }
    if (!exists) {
        rt_ctx_fail(ctx, "no such order");
        return RT_ENOTFOUND;
    }
    return 0;
}

static int order_get(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    assert(ctx != NULL);
    assert(args != NULL || args_len == 0);
    struct act_order o;
    int rv = order_open(ctx, args, args_len, false, &o);
    if (rv != 0) {
        return rv;
    }
    return order_reply(ctx, &o);
}

static int order_close(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    assert(ctx != NULL);
    assert(args != NULL || args_len == 0);
    struct act_order o;
    int rv = order_open(ctx, args, args_len, false, &o);
    if (rv != 0) {
        return rv;
    }
    switch ((enum act_order_status)o.status) {
    case ACT_ORDER_WAITING:
        break;
    case ACT_ORDER_CLOSED:
        return order_reply(ctx, &o); /* Closing twice is what a retrying client does. */
    default:
        rt_ctx_fail(ctx, "order is %s and can no longer be closed",
                    act_order_status_name((enum act_order_status)o.status));
        return RT_ESTATE;
    }
    /* The expiry timer stays: it finds the order CLOSED and leaves it alone. */
    o.status = ACT_ORDER_CLOSED;
    o.has_closed_at = true;
    o.closed_at_ms = rt_ctx_now_ms(ctx);
    if ((rv = order_save(ctx, &o)) != 0) {
        return rv;
    }
    return order_reply(ctx, &o);
}

static int order_expire(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    assert(ctx != NULL);
    assert(args != NULL || args_len == 0);
    if (rt_ctx_origin(ctx) != RT_ORIGIN_TIMER) {
        /* Only the order's own timer may expire it; a client must use close. */
        rt_ctx_fail(ctx, "expire is run by the order's timer only");
        return RT_EFORBIDDEN;
    }
    struct act_order o;
    int rv = order_open(ctx, args, args_len, true, &o);
    if (rv != 0) {
        return rv;
    }
    uint64_t now_ms = rt_ctx_now_ms(ctx);
    /* The timer fires once, at or after expire_at; the order may have moved on (paid,
     * closed) meanwhile, which leaves nothing to do. */
    if (o.status != ACT_ORDER_WAITING || now_ms < o.expire_at_ms) {
        return order_reply(ctx, &o);
    }
    o.status = ACT_ORDER_CLOSED;
    o.has_closed_at = true;
    o.closed_at_ms = now_ms;
    if ((rv = order_save(ctx, &o)) != 0) {
        return rv;
    }
    return order_reply(ctx, &o);
}

/* Indexed by enum act_order_op: the op number is in every command and timer record. */
static const struct rt_actor_op order_ops[ACT_ORDER_OP_COUNT] = {
    [ACT_ORDER_CREATE] = {.name = "create", .fn = order_create, .readonly = false},
    [ACT_ORDER_GET] = {.name = "get", .fn = order_get, .readonly = true},
    [ACT_ORDER_CLOSE] = {.name = "close", .fn = order_close, .readonly = false},
    [ACT_ORDER_EXPIRE] = {.name = "expire", .fn = order_expire, .readonly = false},
};

const struct rt_actor_type act_order_type = {
    .id = ACT_TYPE_ORDER,
    .name = "order",
    .ops = order_ops,
    .op_count = ACT_ORDER_OP_COUNT,
};
