#include "act_app.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "act_order.h"
#include "act_registry.h"
#include "rt_error.h"
#include "rt_mp.h"

struct app {
    char app_id[ACT_APP_ID_BYTES_MAX + 1];
    char name[ACT_APP_NAME_BYTES_MAX + 1];
    char notify_url[ACT_ORDER_NOTIFY_URL_BYTES_MAX + 1];
    bool channels[ACT_CHANNEL_COUNT];
    char public_key[ACT_APP_PUBLIC_KEY_BYTES_MAX + 1];
    char secret[ACT_APP_SECRET_HEX_BYTES + 1];
    uint64_t created_at;
};

/* A text field's bytes: @min..@max of UTF-8 without NUL. */
static bool app_text_valid(const char *s, uint32_t len, size_t min, size_t max)
{
    return len >= min && len <= max && memchr(s, '\0', len) == NULL && rt_utf8_valid(s, len);
}

/* Copy a validated str into @dst (cap includes the NUL). */
static bool app_read_str(struct rt_mp_reader *r, char *dst, size_t cap, size_t min)
{
    const char *s;
    uint32_t len;
    if (rt_mp_read_str(r, &s, &len) != 0 || !app_text_valid(s, len, min, cap - 1)) {
        return false;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

static bool app_secret_valid(const char *s, size_t len)
{
    if (len != ACT_APP_SECRET_HEX_BYTES) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

#define APP_PEM_HEADER "-----BEGIN PUBLIC KEY-----"

static bool app_pem_header(const char *s, size_t len)
{
    return len >= strlen(APP_PEM_HEADER) && memcmp(s, APP_PEM_HEADER, strlen(APP_PEM_HEADER)) == 0;
}

static bool app_read_channels(struct rt_mp_reader *r, bool channels[ACT_CHANNEL_COUNT])
{
    uint32_t n;
    if (rt_mp_read_array(r, &n) != 0 || n == 0 || n > ACT_CHANNEL_COUNT) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t len;
        if (rt_mp_read_str(r, &s, &len) != 0) {
            return false;
        }
        int c = -1;
        for (int k = 0; k < ACT_CHANNEL_COUNT; k++) {
            const char *name = act_channel_name((enum act_channel)k);
            if (strlen(name) == len && memcmp(name, s, len) == 0) {
                c = k;
            }
        }
        if (c < 0 || channels[c]) {
            return false; /* Unknown or repeated. */
        }
        channels[c] = true;
    }
    return true;
}

/* Decode create args (@stored false) or stored state (@stored true). */
static int app_decode(const uint8_t *data, size_t len, bool stored, struct app *a, const char **why)
{
    memset(a, 0, sizeof(*a));
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    uint32_t n;
    *why = "args must be a map";
    if (rt_mp_read_map(&r, &n) != 0) {
        return RT_EINVAL;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (rt_mp_read_str(&r, &k, &kl) != 0) {
            return RT_EINVAL;
        }
        bool ok;
        unsigned bit;
        if (rt_mp_key_is(k, kl, "app_id")) {
            bit = 1u;
            ok = app_read_str(&r, a->app_id, sizeof(a->app_id), 1) &&
                 act_app_id_valid(a->app_id, strlen(a->app_id)) && strcmp(a->app_id, "admin") != 0;
            *why = "app_id: 1-32 of [A-Za-z0-9_-], not \"admin\"";
        } else if (rt_mp_key_is(k, kl, "name")) {
            bit = 2u;
            ok = app_read_str(&r, a->name, sizeof(a->name), 1);
            *why = "name: 1-64 bytes of UTF-8";
        } else if (rt_mp_key_is(k, kl, "notify_url")) {
            bit = 4u;
            ok = app_read_str(&r, a->notify_url, sizeof(a->notify_url), 1) &&
                 act_notify_url_valid(a->notify_url, strlen(a->notify_url));
            *why = "notify_url: an http:// or https:// URL of at most 256 bytes";
        } else if (rt_mp_key_is(k, kl, "channels")) {
            bit = 8u;
            ok = app_read_channels(&r, a->channels);
            *why = "channels: 1-2 of \"wechat\", \"alipay\", each once";
        } else if (rt_mp_key_is(k, kl, "public_key")) {
            bit = 16u;
            ok = rt_mp_peek(&r) == RT_MP_NIL
                     ? rt_mp_read_nil(&r) == 0
                     : app_read_str(&r, a->public_key, sizeof(a->public_key), 1) &&
                           app_pem_header(a->public_key, strlen(a->public_key));
            *why = "public_key: a PEM public key (-----BEGIN PUBLIC KEY-----) of at most 4096 "
                   "bytes";
        } else if (rt_mp_key_is(k, kl, "secret")) {
            bit = 32u;
            ok = app_read_str(&r, a->secret, sizeof(a->secret), 1) &&
                 app_secret_valid(a->secret, strlen(a->secret));
            *why = "secret: 64 lowercase hex characters";
        } else if (stored && rt_mp_key_is(k, kl, "created_at")) {
            bit = 64u;
            ok = rt_mp_read_uint(&r, &a->created_at) == 0;
        } else if (stored && rt_mp_key_is(k, kl, "v")) {
            uint64_t v;
            bit = 128u;
            ok = rt_mp_read_uint(&r, &v) == 0 && v == 1;
        } else {
            *why = "unknown key";
            return stored ? RT_ECORRUPT : RT_EINVAL;
        }
        if (!ok || (seen & bit) != 0) {
            return stored ? RT_ECORRUPT : RT_EINVAL;
        }
        seen |= bit;
    }
    unsigned required = stored ? 0xffu : (1u | 2u | 4u | 8u | 32u);
    *why = "app_id, name, notify_url and channels are required";
    if ((seen & required) != required || rt_mp_remaining(&r) != 0) {
        return stored ? RT_ECORRUPT : RT_EINVAL;
    }
    return 0;
}

static void app_write_channels(struct rt_mp_writer *w, const struct app *a)
{
    uint32_t n = 0;
    for (int k = 0; k < ACT_CHANNEL_COUNT; k++) {
        n += a->channels[k];
    }
    rt_mp_write_array(w, n);
    for (int k = 0; k < ACT_CHANNEL_COUNT; k++) {
        if (a->channels[k]) {
            rt_mp_write_cstr(w, act_channel_name((enum act_channel)k));
        }
    }
}

/* The app object (@with_secret false) or the stored state (true). */
static int app_encode(const struct app *a, bool stored, struct rt_mp_writer *w)
{
    rt_mp_write_map(w, stored ? 8 : 6);
    if (stored) {
        rt_mp_write_cstr(w, "v");
        rt_mp_write_uint(w, 1);
    }
    rt_mp_write_cstr(w, "app_id");
    rt_mp_write_cstr(w, a->app_id);
    rt_mp_write_cstr(w, "name");
    rt_mp_write_cstr(w, a->name);
    rt_mp_write_cstr(w, "notify_url");
    rt_mp_write_cstr(w, a->notify_url);
    rt_mp_write_cstr(w, "channels");
    app_write_channels(w, a);
    rt_mp_write_cstr(w, "public_key");
    rt_mp_write_cstr(w, a->public_key[0] != '\0' ? a->public_key : NULL);
    if (stored) {
        rt_mp_write_cstr(w, "secret");
        rt_mp_write_cstr(w, a->secret);
    }
    rt_mp_write_cstr(w, "created_at");
    rt_mp_write_uint(w, a->created_at);
    return rt_mp_writer_error(w);
}

static int app_load(struct rt_actor_ctx *ctx, struct app *a)
{
    size_t len;
    const uint8_t *state = rt_ctx_state(ctx, &len);
    if (state == NULL) {
        return RT_ENOTFOUND;
    }
    const char *why;
    return app_decode(state, len, true, a, &why);
}

static int app_create(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    struct app a;
    const char *why;
    if (app_decode(args, args_len, false, &a, &why) != 0) {
        rt_ctx_fail(ctx, "%s", why);
        return RT_EINVAL;
    }
    size_t key_len;
    const uint8_t *key = rt_ctx_key(ctx, &key_len);
    if (key_len != strlen(a.app_id) || memcmp(key, a.app_id, key_len) != 0) {
        rt_ctx_fail(ctx, "app_id does not match the actor key");
        return RT_EINVAL;
    }
    size_t len;
    if (rt_ctx_state(ctx, &len) != NULL) {
        rt_ctx_fail(ctx, "app %s exists (its secret was shown when it was created)", a.app_id);
        return RT_ECONFLICT;
    }
    a.created_at = rt_ctx_now_ms(ctx);
    struct rt_buf *state = rt_ctx_state_buf(ctx);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, state);
    int rv = app_encode(&a, true, &w);
    if (rv == 0) {
        rv = rt_ctx_set_state(ctx, state->data, state->len);
    }
    if (rv != 0) {
        return rv;
    }
    rt_mp_writer_init(&w, rt_ctx_reply(ctx));
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, a.app_id);
    rt_mp_write_cstr(&w, "secret");
    rt_mp_write_cstr(&w, a.secret);
    return rt_mp_writer_error(&w);
}

static int app_get(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    (void)args;
    (void)args_len;
    struct app a;
    int rv = app_load(ctx, &a);
    if (rv != 0) {
        return rv;
    }
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, rt_ctx_reply(ctx));
    return app_encode(&a, false, &w);
}

/* One of the stored state's two keys, as app_decode accepts it: the secret (64 lowercase hex)
 * or the public key (nil, or a PEM of at most ACT_APP_PUBLIC_KEY_BYTES_MAX). A view: no copy. */
static bool app_read_key_field(struct rt_mp_reader *r, bool secret, const char **s, uint32_t *len)
{
    if (!secret && rt_mp_peek(r) == RT_MP_NIL) {
        *s = NULL;
        *len = 0;
        return rt_mp_read_nil(r) == 0;
    }
    if (rt_mp_read_str(r, s, len) != 0) {
        return false;
    }
    /* Hex digits are ASCII without NUL: the secret needs no text check of its own. */
    return secret ? app_secret_valid(*s, *len)
                  : app_text_valid(*s, *len, 1, ACT_APP_PUBLIC_KEY_BYTES_MAX) &&
                        app_pem_header(*s, *len);
}

/* keys: what the node checks every request's signature with. Run once per request, so it reads
 * only the two fields it returns (each checked as app_decode would) and skips the others:
 * decoding the whole record into a struct app (4.5 KB, every text field copied and checked)
 * cost ~5,400 instructions per request. */
static int app_keys(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    (void)args;
    (void)args_len;
    size_t len;
    const uint8_t *state = rt_ctx_state(ctx, &len);
    if (state == NULL) {
        return RT_ENOTFOUND;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, state, len);
    uint32_t n;
    if (rt_mp_read_map(&r, &n) != 0) {
        return RT_ECORRUPT;
    }
    const char *secret = NULL, *pem = NULL;
    uint32_t secret_len = 0, pem_len = 0;
    bool secret_seen = false, pem_seen = false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (rt_mp_read_str(&r, &k, &kl) != 0) {
            return RT_ECORRUPT;
        }
        bool ok;
        if (rt_mp_key_is(k, kl, "secret")) {
            ok = !secret_seen && app_read_key_field(&r, true, &secret, &secret_len);
            secret_seen = true;
        } else if (rt_mp_key_is(k, kl, "public_key")) {
            ok = !pem_seen && app_read_key_field(&r, false, &pem, &pem_len);
            pem_seen = true;
        } else {
            ok = rt_mp_skip(&r) == 0;
        }
        if (!ok) {
            return RT_ECORRUPT;
        }
    }
    if (!secret_seen || !pem_seen || rt_mp_remaining(&r) != 0) {
        return RT_ECORRUPT;
    }
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, rt_ctx_reply(ctx));
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "secret");
    rt_mp_write_str(&w, secret, secret_len);
    rt_mp_write_cstr(&w, "public_key");
    if (pem != NULL) {
        rt_mp_write_str(&w, pem, pem_len);
    } else {
        rt_mp_write_nil(&w);
    }
    return rt_mp_writer_error(&w);
}

static const struct rt_actor_op app_ops[ACT_APP_OP_COUNT] = {
    [ACT_APP_CREATE] = {"create", app_create, false},
    [ACT_APP_GET] = {"get", app_get, true},
    [ACT_APP_KEYS] = {"keys", app_keys, true},
};

const struct rt_actor_type act_app_type = {ACT_TYPE_APP, "app", app_ops, ACT_APP_OP_COUNT};
