/* Unit tests for the app actor, through the engine on the in-memory store: the keys every
 * request is checked with, and stored records that are not what app.create writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "act_app.h"
#include "act_registry.h"
#include "actor_engine.h"
#include "mem_store.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_mp.h"

#define SECRET "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define PEM    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"

static struct rt_command app_command(const char *app, uint8_t op, const struct rt_buf *args)
{
    struct rt_command c = {.origin = RT_ORIGIN_CLIENT,
                           .actor_type = ACT_TYPE_APP,
                           .op = op,
                           .key = (const uint8_t *)app,
                           .key_len = (uint32_t)strlen(app),
                           .args = args != NULL ? args->data : NULL,
                           .args_len = args != NULL ? (uint32_t)args->len : 0};
    return c;
}

/* The four fields of an app besides its keys (and, stored, "v" and created_at). */
static void write_profile(struct rt_mp_writer *w, const char *app, const char *channel)
{
    rt_mp_write_cstr(w, "app_id");
    rt_mp_write_cstr(w, app);
    rt_mp_write_cstr(w, "name");
    rt_mp_write_cstr(w, "Shop");
    rt_mp_write_cstr(w, "notify_url");
    rt_mp_write_cstr(w, "https://shop.example/notify");
    rt_mp_write_cstr(w, "channels");
    rt_mp_write_array(w, 1);
    rt_mp_write_cstr(w, channel);
}

static int create(struct actor_engine *f, const char *app, const char *pem)
{
    struct rt_buf args;
    rt_buf_init(&args, 8192);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &args);
    rt_mp_write_map(&w, pem != NULL ? 6 : 5);
    write_profile(&w, app, "wechat");
    rt_mp_write_cstr(&w, "secret");
    rt_mp_write_cstr(&w, SECRET);
    if (pem != NULL) {
        rt_mp_write_cstr(&w, "public_key");
        rt_mp_write_cstr(&w, pem);
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
    struct rt_command c = app_command(app, ACT_APP_CREATE, &args);
    int code = actor_engine_run(f, &c);
    rt_buf_free(&args);
    return code;
}

/* Query keys of @app; on success check the reply is exactly {secret, public_key}. */
static int keys(struct actor_engine *f, const char *app, const char *want_pem)
{
    struct rt_command c = app_command(app, ACT_APP_KEYS, NULL);
    struct rt_reply reply;
    int rv = rt_engine_query(&f->engine, &c, 0, &reply);
    if (rv != 0) {
        return rv;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, reply.body, reply.body_len);
    uint32_t n;
    const char *s;
    uint32_t len;
    assert_int_equal(rt_mp_read_map(&r, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
    assert_true(rt_mp_key_is(s, len, "secret"));
    assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
    assert_int_equal(len, strlen(SECRET));
    assert_memory_equal(s, SECRET, len);
    assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
    assert_true(rt_mp_key_is(s, len, "public_key"));
    if (want_pem == NULL) {
        assert_int_equal(rt_mp_read_nil(&r), 0);
    } else {
        assert_int_equal(rt_mp_read_str(&r, &s, &len), 0);
        assert_int_equal(len, strlen(want_pem));
        assert_memory_equal(s, want_pem, len);
    }
    assert_int_equal(rt_mp_remaining(&r), 0);
    return 0;
}

static void keys_are_the_created_ones(void **state)
{
    struct actor_engine *f = *state;
    assert_int_equal(keys(f, "shop", NULL), RT_ENOTFOUND);
    assert_int_equal(create(f, "shop", NULL), 0);
    assert_int_equal(create(f, "pk-shop", PEM), 0);
    assert_int_equal(keys(f, "shop", NULL), 0);
    assert_int_equal(keys(f, "pk-shop", PEM), 0);
}

/* What a stored record holds, field by field; each case below breaks one thing. */
struct stored {
    const char *secret;     /* NULL: left out. */
    const char *public_key; /* NULL: nil. */
    bool secret_twice;
    bool trailing_byte;
    bool secret_as_uint;
};

static void put_stored(struct actor_engine *f, const char *app, const struct stored *st)
{
    struct rt_buf val;
    rt_buf_init(&val, 8192);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &val);
    rt_mp_write_map(&w, 7 + (st->secret != NULL) + st->secret_twice);
    rt_mp_write_cstr(&w, "v");
    rt_mp_write_uint(&w, 1);
    write_profile(&w, app, "alipay");
    rt_mp_write_cstr(&w, "public_key");
    rt_mp_write_cstr(&w, st->public_key);
    for (int i = 0; st->secret != NULL && i < 1 + st->secret_twice; i++) {
        rt_mp_write_cstr(&w, "secret");
        if (st->secret_as_uint) {
            rt_mp_write_uint(&w, 7);
        } else {
            rt_mp_write_cstr(&w, st->secret);
        }
    }
    rt_mp_write_cstr(&w, "created_at");
    rt_mp_write_uint(&w, 1700000000000ull);
    if (st->trailing_byte) {
        rt_mp_write_uint(&w, 0);
    }
    assert_int_equal(rt_mp_writer_error(&w), 0);
    uint8_t key[RT_KEY_BYTES_MAX];
    size_t key_len = rt_key_state(key, 0, ACT_TYPE_APP, (const uint8_t *)app, strlen(app));
    assert_int_equal(mem_store_put_raw(f->mem, RT_CF_STATE, key, key_len, val.data, val.len), 0);
    rt_buf_free(&val);
}

/* keys reads only the secret and the public key, but checks them as app.create does, and a
 * record that is not one map of one of each is corrupt. */
static void stored_records_are_checked(void **state)
{
    struct actor_engine *f = *state;
    struct stored good = {.secret = SECRET, .public_key = PEM};
    put_stored(f, "raw", &good); /* The layout app.create writes: read back as is. */
    assert_int_equal(keys(f, "raw", PEM), 0);
    good.public_key = NULL;
    put_stored(f, "raw", &good);
    assert_int_equal(keys(f, "raw", NULL), 0);

    const struct stored bad[] = {
        {.secret = NULL},
        {.secret = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"},
        {.secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef"},
        {.secret = SECRET "0"},
        {.secret = SECRET, .public_key = "not a PEM"},
        {.secret = SECRET, .secret_twice = true},
        {.secret = SECRET, .trailing_byte = true},
        {.secret = SECRET, .secret_as_uint = true},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_stored(f, "raw", &bad[i]);
        assert_int_equal(keys(f, "raw", NULL), RT_ECORRUPT);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(keys_are_the_created_ones, actor_engine_setup,
                                        actor_engine_teardown),
        cmocka_unit_test_setup_teardown(stored_records_are_checked, actor_engine_setup,
                                        actor_engine_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
