/* Tests for pr_json (payctl's JSON <-> msgpack): exact bytes for every JSON type, key order,
 * the refusals (floats, too big integers, nesting past 16, text past 1 MiB, invalid JSON,
 * repeated keys, NUL in strings, output past its bound), and the printer: exact text for every
 * msgpack type, escapes, invalid UTF-8, base64, non-str keys, pretty and compact forms, and
 * malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pr_json.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

#define TEST_OUT_MAX (4u * 1024u * 1024u)

/* JSON @text must convert to exactly the msgpack in @want. */
static void expect_mp(const char *text, const struct rt_buf *want)
{
    struct rt_buf out;
    rt_buf_init(&out, TEST_OUT_MAX);
    char err[PR_JSON_ERR_BYTES];
    int rv = pr_json_to_msgpack(text, strlen(text), &out, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "%s -> %d: %s\n", text, rv, err);
    }
    assert_int_equal(rv, 0);
    assert_string_equal(err, "");
    assert_int_equal(out.len, want->len);
    assert_memory_equal(out.data, want->data, want->len);
    rt_buf_free(&out);
}

/* JSON @text must be refused with @code, a message containing @needle, and @out untouched. */
static void expect_refused(const char *text, size_t len, int code, const char *needle)
{
    struct rt_buf out;
    rt_buf_init(&out, TEST_OUT_MAX);
    static const uint8_t before[] = {0x93};
    assert_int_equal(rt_buf_append(&out, before, 1), 0);
    char err[PR_JSON_ERR_BYTES];
    int rv = pr_json_to_msgpack(text, len, &out, err, sizeof(err));
    assert_int_equal(rv, code);
    if (strstr(err, needle) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err, needle);
        fail();
    }
    assert_int_equal(out.len, 1);
    rt_buf_free(&out);
}

static void test_types_exact(void **state)
{
    (void)state;
    struct rt_buf want;
    rt_buf_init(&want, 4096);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &want);
    rt_mp_write_map(&w, 9);
    rt_mp_write_cstr(&w, "z");
    rt_mp_write_uint(&w, 1);
    rt_mp_write_cstr(&w, "a");
    rt_mp_write_array(&w, 3);
    rt_mp_write_bool(&w, true);
    rt_mp_write_bool(&w, false);
    rt_mp_write_nil(&w);
    rt_mp_write_cstr(&w, "s");
    rt_mp_write_cstr(&w, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \"q\"\n");
    rt_mp_write_cstr(&w, "neg");
    rt_mp_write_int(&w, -5);
    rt_mp_write_cstr(&w, "max");
    rt_mp_write_uint(&w, INT64_MAX);
    rt_mp_write_cstr(&w, "min");
    rt_mp_write_int(&w, INT64_MIN);
    rt_mp_write_cstr(&w, "obj");
    rt_mp_write_map(&w, 0);
    rt_mp_write_cstr(&w, "arr");
    rt_mp_write_array(&w, 0);
    rt_mp_write_cstr(&w, "big");
    rt_mp_write_uint(&w, 1000000000);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    expect_mp("{\"z\": 1, \"a\": [true, false, null], "
              "\"s\": \"caf\\u00e9 \\u20ac \\ud83d\\ude00 \\\"q\\\"\\n\", \"neg\": -5, "
              "\"max\": 9223372036854775807, \"min\": -9223372036854775808, \"obj\": {}, "
              "\"arr\": [], \"big\": 1000000000}",
              &want);
    /* A top-level array, and white space anywhere. */
    rt_buf_reset(&want);
    rt_mp_writer_init(&w, &want);
    rt_mp_write_array(&w, 2);
    rt_mp_write_uint(&w, 0);
    rt_mp_write_cstr(&w, "");
    expect_mp(" [ 0 ,\n\t\"\" ] ", &want);
    rt_buf_free(&want);
}

static void test_floats_refused(void **state)
{
    (void)state;
    const char *const floats[] = {"{\"amount\": 1.5}", "{\"amount\": 1e3}", "{\"amount\": 1.0}",
                                  "{\"amount\": -0.0}", "{\"amount\": 2E-2}"};
    for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++) {
        expect_refused(floats[i], strlen(floats[i]), RT_EINVAL, "amount: ");
        expect_refused(floats[i], strlen(floats[i]), RT_EINVAL, "not an integer");
    }
    const char *nested = "{\"items\": [{\"a\": 1}, {\"amount\": 0.5}]}";
    expect_refused(nested, strlen(nested), RT_EINVAL, "items[1].amount: 0.5");
    expect_refused("[1.25]", 6, RT_EINVAL, "[0]: 1.25");
    expect_refused("[[1,2,3.5]]", 11, RT_EINVAL, "[0][2]");
}

static void test_integers_bounded(void **state)
{
    (void)state;
    expect_refused("[9223372036854775808]", 21, RT_EINVAL, "invalid JSON");
    expect_refused("[-9223372036854775809]", 22, RT_EINVAL, "invalid JSON");
    expect_refused("[18446744073709551615]", 22, RT_EINVAL, "invalid JSON");
}

/* Nesting: 16 levels pass, 17 do not, and a flood of brackets is refused without trouble. */
static void test_depth(void **state)
{
    (void)state;
    char text[64];
    struct rt_buf want;
    rt_buf_init(&want, 256);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &want);
    for (int i = 0; i < 15; i++) {
        rt_mp_write_array(&w, 1);
    }
    rt_mp_write_array(&w, 0);
    memset(text, 0, sizeof(text));
    memset(text, '[', 16);
    memset(text + 16, ']', 16);
    expect_mp(text, &want);
    memset(text, 0, sizeof(text));
    memset(text, '[', 17);
    memset(text + 17, ']', 17);
    expect_refused(text, strlen(text), RT_EINVAL, "nested deeper than 16");
    /* Objects count too. */
    const char *objs = "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{"
                       "\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}}}";
    expect_refused(objs, strlen(objs), RT_EINVAL, "a.a.a.a");
    size_t flood_len = 200000;
    char *flood = malloc(flood_len);
    assert_non_null(flood);
    memset(flood, '[', flood_len);
    expect_refused(flood, flood_len, RT_EINVAL, "");
    free(flood);
    rt_buf_free(&want);
}

static void test_size_limits(void **state)
{
    (void)state;
    /* Exactly 1 MiB of JSON passes (a string of 1 MiB - 4 bytes), one byte more does not. */
    size_t len = PR_JSON_BYTES_MAX;
    char *text = malloc(len + 1);
    assert_non_null(text);
    text[0] = '[';
    text[1] = '"';
    memset(text + 2, 'x', len - 4);
    text[len - 2] = '"';
    text[len - 1] = ']';
    text[len] = ' ';
    struct rt_buf out;
    rt_buf_init(&out, TEST_OUT_MAX);
    char err[PR_JSON_ERR_BYTES];
    assert_int_equal(pr_json_to_msgpack(text, len, &out, err, sizeof(err)), 0);
    assert_int_equal(out.len, 1 + 5 + (len - 4));
    expect_refused(text, len + 1, RT_ETOOLARGE, "above the limit");
    /* The output bound: the same text into a buffer of 1000 bytes. */
    struct rt_buf small;
    rt_buf_init(&small, 1000);
    assert_int_equal(pr_json_to_msgpack(text, len, &small, err, sizeof(err)), RT_ETOOLARGE);
    assert_non_null(strstr(err, "above the limit of 1000"));
    assert_int_equal(small.len, 0);
    rt_buf_free(&small);
    rt_buf_free(&out);
    free(text);
}

static void test_invalid_json(void **state)
{
    (void)state;
    const char *const bad[] = {"",           "{",       "{\"a\" 1}",     "[1,]",
                               "{\"a\":1}x", "nul",     "[\"\\u0000\"]", "{\"\\u0000\": 1}",
                               "[01]",       "['a']",   "[\"\xff\"]",    "{\"a\":1,\"a\":2}",
                               "1",          "\"top\"", "[NaN]",         "[Infinity]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_refused(bad[i], strlen(bad[i]), RT_EINVAL, "invalid JSON");
    }
    /* Embedded NUL byte in the text itself. */
    expect_refused("[1]\0", 4, RT_EINVAL, "invalid JSON");
    /* NULL err is allowed. */
    struct rt_buf out;
    rt_buf_init(&out, 64);
    assert_int_equal(pr_json_to_msgpack("[1.5]", 5, &out, NULL, 0), RT_EINVAL);
    rt_buf_free(&out);
}

/* msgpack @mp must print as @want with @indent. */
static void expect_json(const struct rt_buf *mp, unsigned indent, const char *want)
{
    struct rt_buf out;
    rt_buf_init(&out, TEST_OUT_MAX);
    assert_int_equal(pr_json_from_msgpack(mp->data, mp->len, indent, &out), 0);
    assert_int_equal(out.data[out.len], '\0');
    assert_string_equal((const char *)out.data, want);
    assert_int_equal(strlen(want), out.len);
    rt_buf_free(&out);
}

static void test_print_types(void **state)
{
    (void)state;
    struct rt_buf mp;
    rt_buf_init(&mp, 4096);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &mp);
    rt_mp_write_map(&w, 10);
    rt_mp_write_cstr(&w, "u");
    rt_mp_write_uint(&w, UINT64_MAX);
    rt_mp_write_cstr(&w, "i");
    rt_mp_write_int(&w, INT64_MIN);
    rt_mp_write_cstr(&w, "n");
    rt_mp_write_nil(&w);
    rt_mp_write_cstr(&w, "b");
    rt_mp_write_array(&w, 2);
    rt_mp_write_bool(&w, true);
    rt_mp_write_bool(&w, false);
    rt_mp_write_cstr(&w, "s");
    rt_mp_write_str(&w, "\"\\\n\r\t\x01\x1f\x7f/caf\xc3\xa9", 14);
    rt_mp_write_cstr(&w, "bad");
    rt_mp_write_str(&w, "a\xff\xc3(\xed\xa0\x80z", 8); /* Stray byte, cut sequence, surrogate. */
    rt_mp_write_cstr(&w, "bin");
    rt_mp_write_bin(&w, (const uint8_t *)"foob", 4);
    rt_mp_write_cstr(&w, "e");
    rt_mp_write_map(&w, 0);
    rt_mp_write_uint(&w, 7); /* A non-str key. */
    rt_mp_write_cstr(&w, "seven");
    rt_mp_write_array(&w, 1); /* A container key. */
    rt_mp_write_cstr(&w, "k");
    rt_mp_write_array(&w, 0);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    expect_json(&mp, 0,
                "{\"u\":18446744073709551615,\"i\":-9223372036854775808,\"n\":null,"
                "\"b\":[true,false],\"s\":\"\\\"\\\\\\n\\r\\t\\u0001\\u001f\\u007f/caf\xc3\xa9\","
                "\"bad\":\"a\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz\","
                "\"bin\":\"Zm9vYg==\",\"e\":{},\"7\":\"seven\",\"[\\\"k\\\"]\":[]}");
    rt_buf_reset(&mp);
    rt_mp_writer_init(&w, &mp);
    rt_mp_write_map(&w, 3);
    rt_mp_write_cstr(&w, "a");
    rt_mp_write_array(&w, 2);
    rt_mp_write_uint(&w, 1);
    rt_mp_write_map(&w, 1);
    rt_mp_write_cstr(&w, "b");
    rt_mp_write_cstr(&w, "c");
    rt_mp_write_cstr(&w, "d");
    rt_mp_write_array(&w, 0);
    rt_mp_write_cstr(&w, "e");
    rt_mp_write_int(&w, -1);
    assert_int_equal(rt_mp_writer_error(&w), 0);
    expect_json(&mp, 2,
                "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"c\"\n    }\n  ],\n  \"d\": [],\n"
                "  \"e\": -1\n}");
    rt_buf_free(&mp);
}

static void test_print_base64_float_ext(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } b64[] = {{"", "\"\""},
               {"f", "\"Zg==\""},
               {"fo", "\"Zm8=\""},
               {"foo", "\"Zm9v\""},
               {"foob", "\"Zm9vYg==\""},
               {"fooba", "\"Zm9vYmE=\""},
               {"foobar", "\"Zm9vYmFy\""}};
    struct rt_buf mp;
    rt_buf_init(&mp, 256);
    for (size_t i = 0; i < sizeof(b64) / sizeof(b64[0]); i++) {
        rt_buf_reset(&mp);
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, &mp);
        rt_mp_write_bin(&w, (const uint8_t *)b64[i].in, strlen(b64[i].in));
        expect_json(&mp, 0, b64[i].out);
    }
    /* float64 1.5, float32 -2.0, float64 NaN, fixext4 type 1 "abcd", ext8 of 3 bytes. */
    static const uint8_t f64[] = {0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0};
    static const uint8_t f32[] = {0xca, 0xc0, 0x00, 0x00, 0x00};
    static const uint8_t nan[] = {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    static const uint8_t fixext[] = {0xd6, 0x01, 'a', 'b', 'c', 'd'};
    static const uint8_t ext8[] = {0xc7, 0x03, 0x05, 'f', 'o', 'o'};
    static const struct {
        const uint8_t *mp;
        size_t len;
        const char *out;
    } cases[] = {{f64, sizeof(f64), "1.5"},
                 {f32, sizeof(f32), "-2"},
                 {nan, sizeof(nan), "null"},
                 {fixext, sizeof(fixext), "\"YWJjZA==\""},
                 {ext8, sizeof(ext8), "\"Zm9v\""}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rt_buf_reset(&mp);
        assert_int_equal(rt_buf_append(&mp, cases[i].mp, cases[i].len), 0);
        expect_json(&mp, 2, cases[i].out);
    }
    rt_buf_free(&mp);
}

static void test_print_refusals(void **state)
{
    (void)state;
    struct rt_buf out;
    rt_buf_init(&out, 64);
    static const uint8_t c1[] = {0xc1};
    static const uint8_t cut[] = {0x82, 0xa1, 'a'};
    static const uint8_t two[] = {0x80, 0x80};
    assert_int_equal(pr_json_from_msgpack(c1, sizeof(c1), 0, &out), RT_EMALFORMED);
    assert_int_equal(pr_json_from_msgpack(cut, sizeof(cut), 0, &out), RT_EMALFORMED);
    assert_int_equal(pr_json_from_msgpack(two, sizeof(two), 0, &out), RT_EMALFORMED);
    assert_int_equal(pr_json_from_msgpack(NULL, 0, 0, &out), RT_EMALFORMED);
    uint8_t deep[17];
    memset(deep, 0x91, 16);
    deep[16] = 0x90;
    assert_int_equal(pr_json_from_msgpack(deep, sizeof(deep), 0, &out), RT_EMALFORMED);
    assert_int_equal(pr_json_from_msgpack(deep + 1, sizeof(deep) - 1, 0, &out), 0);
    rt_buf_reset(&out);
    /* Past the output bound: nothing kept. */
    uint8_t big[100];
    big[0] = 0xc4;
    big[1] = 98;
    memset(big + 2, 0, 98);
    assert_int_equal(pr_json_from_msgpack(big, sizeof(big), 0, &out), RT_ETOOLARGE);
    assert_int_equal(out.len, 0);
    rt_buf_free(&out);
}

/* JSON -> msgpack -> JSON gives the same text back (compact form). */
static void test_round_trip(void **state)
{
    (void)state;
    const char *text = "{\"merchant_order_no\":\"A1001\",\"amount\":1999,\"subject\":\"\xe5\x92\x96"
                       "\xe5\x95\xa1\",\"channels\":[\"wechat\",\"alipay\"],\"attach\":null,"
                       "\"nested\":{\"ok\":true,\"n\":-42}}";
    struct rt_buf mp, back;
    rt_buf_init(&mp, 4096);
    rt_buf_init(&back, 4096);
    char err[PR_JSON_ERR_BYTES];
    assert_int_equal(pr_json_to_msgpack(text, strlen(text), &mp, err, sizeof(err)), 0);
    assert_int_equal(rt_mp_validate(mp.data, mp.len), 0);
    assert_int_equal(pr_json_from_msgpack(mp.data, mp.len, 0, &back), 0);
    assert_string_equal((const char *)back.data, text);
    rt_buf_free(&mp);
    rt_buf_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_exact),      cmocka_unit_test(test_floats_refused),
        cmocka_unit_test(test_integers_bounded), cmocka_unit_test(test_depth),
        cmocka_unit_test(test_size_limits),      cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_print_types),      cmocka_unit_test(test_print_base64_float_ext),
        cmocka_unit_test(test_print_refusals),   cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
