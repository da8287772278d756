/* Tests for the small runtime modules: rt_error, rt_buf, rt_clock (clock and PRNG), rt_key,
 * rt_secret.
 *
 * Values pinned here (shard placement, PRNG output) were computed with an independent
 * implementation; they are persistent or replayed formats and must never change. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_buf.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_limits.h"
#include "rt_secret.h"
#include "test_support.h"

/* ---- rt_error ---- */

struct error_row {
    int code;
    const char *name;
    const char *wire;
    const char *msg;
};

static const struct error_row error_rows[] = {
#define ERROR_ROW(name, value, wire, msg) {name, #name, wire, msg},
    RT_ERRORS(ERROR_ROW)
#undef ERROR_ROW
};

#define ERROR_ROWS (sizeof(error_rows) / sizeof(error_rows[0]))

static void test_error_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ERROR_ROWS; i++) {
        const struct error_row *row = &error_rows[i];
        assert_true(row->code < 0);
        assert_string_equal(rt_strerror(row->code), row->msg);
        assert_string_equal(rt_wire_code(row->code), row->wire);
        /* Codes are distinct. */
        for (size_t j = i + 1; j < ERROR_ROWS; j++) {
            assert_int_not_equal(row->code, error_rows[j].code);
        }

        /* Back from the wire: the first code with this wire name is the canonical one. */
        const int back = rt_error_from_wire(row->wire, (unsigned)strlen(row->wire));
        int canonical = 0; /* "OK" maps to success, not to a code. */
        if (strcmp(row->wire, "OK") != 0) {
            for (size_t j = 0; j < ERROR_ROWS; j++) {
                if (strcmp(error_rows[j].wire, row->wire) == 0) {
                    canonical = error_rows[j].code;
                    break;
                }
            }
        }
        assert_int_equal(back, canonical);
        assert_string_equal(rt_wire_code(back), row->wire);
    }
}

static void test_error_specials(void **state)
{
    (void)state;
    assert_string_equal(rt_strerror(0), "ok");
    assert_string_equal(rt_wire_code(0), "OK");
    assert_string_equal(rt_strerror(-9999), "unknown error");
    assert_string_equal(rt_wire_code(-9999), "INTERNAL");
    assert_string_equal(rt_strerror(1), "unknown error");
    assert_string_equal(rt_wire_code(1), "INTERNAL");

    assert_int_equal(rt_error_from_wire("OK", 2), 0);
    assert_int_equal(rt_error_from_wire("INVALID_ARGUMENT", 16), RT_EINVAL);
    assert_int_equal(rt_error_from_wire("INTERNAL", 8), RT_EINTERNAL);
    assert_int_equal(rt_error_from_wire("NOPE", 4), RT_EINTERNAL);
    assert_int_equal(rt_error_from_wire("", 0), RT_EINTERNAL);
    /* Pointer + length: neither a longer buffer nor a prefix is confused for a name. */
    assert_int_equal(rt_error_from_wire("NOT_FOUND, trailing", 9), RT_ENOTFOUND);
    assert_int_equal(rt_error_from_wire("NOT_FOUN", 8), RT_EINTERNAL);
    assert_int_equal(rt_error_from_wire("NOT_FOUND_", 10), RT_EINTERNAL);
    assert_int_equal(rt_error_from_wire("not_found", 9), RT_EINTERNAL);
    assert_int_equal(rt_error_from_wire("OKAY", 4), RT_EINTERNAL);
}

/* ---- rt_buf ---- */

static void test_buf_limits(void **state)
{
    (void)state;
    struct rt_buf buf;
    rt_buf_init(&buf, 10);
    assert_null(buf.data);
    assert_int_equal(buf.len, 0);
    assert_int_equal(rt_buf_append(&buf, NULL, 0), 0);

    assert_int_equal(rt_buf_append(&buf, "0123456789", 10), 0);
    assert_int_equal(buf.len, 10);
    assert_true(buf.cap <= buf.max); /* Growth never allocates past the limit. */
    assert_int_equal(rt_buf_append(&buf, "x", 1), RT_ETOOLARGE);
    assert_int_equal(buf.len, 10);
    assert_memory_equal(buf.data, "0123456789", 10);

    rt_buf_truncate(&buf, 4);
    assert_int_equal(buf.len, 4);
    assert_int_equal(rt_buf_append(&buf, "abc", 3), 0);
    assert_memory_equal(buf.data, "0123abc", 7);
    rt_buf_truncate(&buf, 7); /* To its own length: a no-op. */
    assert_int_equal(buf.len, 7);

    rt_buf_reset(&buf);
    assert_int_equal(buf.len, 0);
    assert_non_null(buf.data); /* The allocation is kept for reuse. */
    rt_buf_free(&buf);
    assert_null(buf.data);
    assert_int_equal(buf.len, 0);
    assert_int_equal(buf.cap, 0);
}

static void test_buf_reserve_failure(void **state)
{
    (void)state;
    struct rt_buf buf;
    rt_buf_init(&buf, 1000);
    assert_int_equal(rt_buf_append(&buf, "hello", 5), 0);
    uint8_t *data = buf.data;
    const size_t cap = buf.cap;

    /* Past max: refused, and the buffer is exactly as it was. */
    assert_int_equal(rt_buf_reserve(&buf, 996), RT_ETOOLARGE);
    assert_int_equal(rt_buf_reserve(&buf, SIZE_MAX), RT_ETOOLARGE);
    assert_ptr_equal(buf.data, data);
    assert_int_equal(buf.cap, cap);
    assert_int_equal(buf.len, 5);
    assert_memory_equal(buf.data, "hello", 5);

    /* Up to max exactly: granted, contents kept. */
    assert_int_equal(rt_buf_reserve(&buf, 995), 0);
    assert_true(buf.cap >= 1000 && buf.cap <= buf.max);
    assert_int_equal(buf.len, 5);
    assert_memory_equal(buf.data, "hello", 5);

    /* Large appends grow geometrically and keep earlier bytes. */
    uint8_t chunk[100];
    memset(chunk, 0x5a, sizeof(chunk));
    for (int i = 0; i < 9; i++) {
        assert_int_equal(rt_buf_append(&buf, chunk, sizeof(chunk)), 0);
    }
    assert_int_equal(buf.len, 905);
    assert_int_equal(rt_buf_append(&buf, chunk, sizeof(chunk)), RT_ETOOLARGE);
    assert_int_equal(buf.len, 905);
    assert_memory_equal(buf.data, "hello", 5);
    assert_int_equal(buf.data[904], 0x5a);
    rt_buf_free(&buf);
}

static void test_buf_big_endian(void **state)
{
    (void)state;
    uint8_t b[8];
    rt_put_be16(b, 0x1234);
    assert_int_equal(b[0], 0x12);
    assert_int_equal(b[1], 0x34);
    assert_int_equal(rt_get_be16(b), 0x1234);
    rt_put_be32(b, 0xdeadbeef);
    assert_int_equal(b[0], 0xde);
    assert_int_equal(b[3], 0xef);
    assert_int_equal(rt_get_be32(b), 0xdeadbeef);
    rt_put_be64(b, 0x0102030405060708ull);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(b[i], i + 1);
    }
    assert_true(rt_get_be64(b) == 0x0102030405060708ull);
    rt_put_be64(b, UINT64_MAX);
    assert_true(rt_get_be64(b) == UINT64_MAX);

    /* Byte order is numeric order: what stored keys rely on. */
    uint8_t lo[8];
    uint8_t hi[8];
    rt_put_be64(lo, 0x00000000000000ffull);
    rt_put_be64(hi, 0x0000000000000100ull);
    assert_true(memcmp(lo, hi, 8) < 0);
}

/* ---- rt_clock ---- */

static void test_clock_manual(void **state)
{
    (void)state;
    struct rt_clock clock;
    rt_clock_init_manual(&clock, 1000);
    assert_int_equal(rt_clock_now_ms(&clock), 1000);
    assert_int_equal(rt_clock_now_ms(&clock), 1000); /* Time stands still until moved. */
    rt_clock_advance(&clock, 500);
    assert_int_equal(rt_clock_now_ms(&clock), 1500);
    rt_clock_advance(&clock, 0);
    assert_int_equal(rt_clock_now_ms(&clock), 1500);

    struct rt_clock sys;
    rt_clock_init_system(&sys);
    /* 2020-01-01 in ms: the system clock is a real Unix time in milliseconds. */
    assert_true(rt_clock_now_ms(&sys) > 1577836800000ull);
    uint64_t a = rt_monotonic_ms();
    uint64_t b = rt_monotonic_ms();
    assert_true(b >= a);
}

static void test_prng_determinism(void **state)
{
    (void)state;
    struct rt_prng a;
    struct rt_prng b;
    rt_prng_seed(&a, 42);
    rt_prng_seed(&b, 42);
    for (int i = 0; i < 1000; i++) {
        assert_true(rt_prng_next(&a) == rt_prng_next(&b));
    }
    /* Pinned: simulations replay from a seed, so the sequence is a format. */
    rt_prng_seed(&a, 42);
    assert_true(rt_prng_next(&a) == 0x15780b2e0c2ec716ull);
    assert_true(rt_prng_next(&a) == 0x6104d9866d113a7eull);
    assert_true(rt_prng_next(&a) == 0xae17533239e499a1ull);
    rt_prng_seed(&a, 0);
    assert_true(rt_prng_next(&a) == 0x99ec5f36cb75f2b4ull);

    rt_prng_seed(&a, 1);
    rt_prng_seed(&b, 2);
    assert_true(rt_prng_next(&a) != rt_prng_next(&b));
}

static void test_prng_below(void **state)
{
    (void)state;
    static const uint64_t bounds[] = {1, 2, 3, 7, 10, 1000, (1ull << 63) + 1, UINT64_MAX};
    struct rt_prng p;
    rt_prng_seed(&p, 7);
    for (size_t k = 0; k < sizeof(bounds) / sizeof(bounds[0]); k++) {
        for (int i = 0; i < 2000; i++) {
            assert_true(rt_prng_below(&p, bounds[k]) < bounds[k]);
        }
    }
    /* Roughly uniform: each of 4 buckets gets a fair share of 4000 draws. */
    unsigned hits[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4000; i++) {
        hits[rt_prng_below(&p, 4)]++;
    }
    for (int i = 0; i < 4; i++) {
        assert_in_range(hits[i], 800, 1200);
    }
    /* Every value of a small bound shows up. */
    bool seen[7] = {false};
    for (int i = 0; i < 1000; i++) {
        seen[rt_prng_below(&p, 7)] = true;
    }
    for (int i = 0; i < 7; i++) {
        assert_true(seen[i]);
    }
}

/* ---- rt_key ---- */

static void test_shard_of_pinned(void **state)
{
    (void)state;
    /* FNV-1a 64 mod shard count. These decide where data lives: they may never change. */
    const uint8_t *order = (const uint8_t *)"app1/order-1";
    const uint8_t *long_key = (const uint8_t *)"wx1234567890/ORD20240101000001";
    assert_int_equal(rt_shard_of(NULL, 0, 16), 5); /* 0xcbf29ce484222325 % 16 */
    assert_int_equal(rt_shard_of((const uint8_t *)"a", 1, 16), 12);
    assert_int_equal(rt_shard_of((const uint8_t *)"a", 1, 256), 140);
    assert_int_equal(rt_shard_of(order, 12, 16), 2);
    assert_int_equal(rt_shard_of(order, 12, 256), 130);
    assert_int_equal(rt_shard_of(order, 12, 7), 3);
    assert_int_equal(rt_shard_of(long_key, 30, 16), 0);
    assert_int_equal(rt_shard_of(long_key, 30, 256), 240);
    assert_int_equal(rt_shard_of(order, 12, 1), 0);
    /* Same key, same shard, every time. */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(rt_shard_of(order, 12, RT_SHARDS_DEFAULT), 2);
    }
}

static void test_id_round_trip(void **state)
{
    (void)state;
    char id[RT_ID_BYTES_MAX + 1];
    size_t n = rt_id_make(id, 'O', 0x1f, 0x123456789abcull, 0x00ff);
    assert_int_equal(n, 19);
    assert_string_equal(id, "O1f123456789abc00ff");
    uint16_t shard = 0;
    assert_true(rt_id_shard(id, n, 'O', &shard));
    assert_int_equal(shard, 0x1f);
    struct rt_id parsed;
    assert_true(rt_id_parse(id, n, &parsed));
    assert_int_equal(parsed.kind, 'O');
    assert_int_equal(parsed.shard, 0x1f);
    assert_int_equal(parsed.raft_index, 0x123456789abcull);
    assert_int_equal(parsed.position, 0x00ff);

    static const uint16_t shards[] = {0, 1, 15, 16, 255};
    for (size_t k = 0; k < sizeof(shards) / sizeof(shards[0]); k++) {
        n = rt_id_make(id, 'P', shards[k], (1ull << 48) - 1, 0xffff);
        assert_int_equal(n, 19);
        assert_int_equal(strlen(id), 19);
        assert_true(rt_id_shard(id, n, 'P', &shard));
        assert_int_equal(shard, shards[k]);
    }
}

static void test_id_rejects(void **state)
{
    (void)state;
    char id[RT_ID_BYTES_MAX + 1];
    size_t n = rt_id_make(id, 'O', 3, 77, 5);
    assert_string_equal(id, "O0300000000004d0005");
    uint16_t shard = 0xbeef;
    assert_false(rt_id_shard(id, n, 'P', &shard));     /* Another kind. */
    assert_false(rt_id_shard(id, n - 1, 'O', &shard)); /* Too short. */
    assert_false(rt_id_shard(NULL, 0, 'O', &shard));
    assert_false(rt_id_shard("", 0, 'O', &shard));
    assert_false(rt_id_shard("O0300000000004d00050", 20, 'O', &shard)); /* Too long. */
    assert_false(rt_id_shard("O0A00000000004d0005", 19, 'O', &shard));  /* Upper hex. */
    assert_false(rt_id_shard("O0g00000000004d0005", 19, 'O', &shard));  /* Not hex. */
    assert_false(rt_id_shard("O03000000000-4d0005", 19, 'O', &shard));
    assert_false(rt_id_shard("o0300000000004d0005", 19, 'O', &shard)); /* Kind is case-exact. */
    assert_false(rt_id_shard("O0300000000004d000G", 19, 'O', &shard)); /* In the position. */
    assert_false(rt_id_shard("O0300000000004d"
                             "\0"
                             "005",
                             19, 'O', &shard)); /* A NUL inside. */
    assert_false(rt_id_shard("O03"
                             "\xff"
                             "0000000004d0005",
                             19, 'O', &shard));
    assert_int_equal(shard, 0xbeef); /* Untouched on rejection. */
}

/* Numbers from command lines: digits only, the whole string, within bounds. */
static void test_u64_parse(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(rt_u64_parse("0", 10, 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(rt_u64_parse("18446744073709551615", 10, 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(rt_u64_parse("18446744073709551616", 10, 0, UINT64_MAX, &v), RT_EINVAL);
    assert_int_equal(rt_u64_parse("ffffffffffffffff", 16, 0, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(rt_u64_parse("d16943E7", 16, 1, UINT64_MAX, &v), 0);
    assert_int_equal(v, 0xd16943e7u);
    v = 7;
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "0x10", "abc", "-0", "1.5", "\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rt_u64_parse(bad[i], 10, 0, UINT64_MAX, &v), RT_EINVAL);
    }
    assert_int_equal(rt_u64_parse("0x10", 16, 0, UINT64_MAX, &v), RT_EINVAL);
    assert_int_equal(rt_u64_parse("11", 10, 1, 10, &v), RT_EINVAL); /* Above max. */
    assert_int_equal(rt_u64_parse("0", 10, 1, 10, &v), RT_EINVAL);  /* Below min. */
    assert_int_equal(v, 7);                                         /* Untouched on error. */
    unsigned u = 3;
    assert_int_equal(rt_uint_parse("65535", 1, 65535, &u), 0);
    assert_int_equal(u, 65535);
    assert_int_equal(rt_uint_parse("65536", 1, 65535, &u), RT_EINVAL);
    assert_int_equal(rt_uint_parse("4294967296", 0, UINT32_MAX, &u), RT_EINVAL);
    assert_int_equal(u, 65535);
}

/* ---- rt_secret ---- */

/* Reads @text (@len bytes) as a secret file of 4..16 bytes, written to a fresh file in a
 * temporary directory (test_tmpdir: $TMPDIR) removed before anything is asserted: 0 or -1,
 * and the reason. */
static int read_text(const char *text, size_t len, uint8_t out[16], size_t *out_len,
                     char why[RT_SECRET_WHY_BYTES])
{
    why[0] = '\0';
    char *dir = test_tmpdir("rt-secret");
    char path[512];
    snprintf(path, sizeof(path), "%s/secret", dir);
    FILE *f = fopen(path, "wb");
    bool written = f != NULL && fwrite(text, 1, len, f) == len;
    written = f != NULL && fclose(f) == 0 && written;
    int rv =
        written ? rt_secret_file_read(path, 4, 16, out, out_len, why, RT_SECRET_WHY_BYTES) : -2;
    bool names_file = strstr(why, path) != NULL;
    test_rmdir(dir);
    assert_true(written);
    if (rv != 0) {
        assert_true(names_file); /* The reason names the file. */
    }
    return rv;
}

/* One line, white space around it ignored; anything else is refused with a reason. */
static void test_secret_file(void **state)
{
    (void)state;
    uint8_t out[16];
    size_t len = 0;
    char why[RT_SECRET_WHY_BYTES];
    static const char *const good[] = {"s3cr3t!~", "s3cr3t!~\n", "  s3cr3t!~\r\n\n",
                                       "\t\v\fs3cr3t!~ \t"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        memset(out, 0, sizeof(out));
        assert_int_equal(read_text(good[i], strlen(good[i]), out, &len, why), 0);
        assert_int_equal(len, 8);
        assert_memory_equal(out, "s3cr3t!~", 8);
    }
    /* Exactly min and max. */
    assert_int_equal(read_text("abcd\n", 5, out, &len, why), 0);
    assert_int_equal(len, 4);
    assert_int_equal(read_text("0123456789abcdef", 16, out, &len, why), 0);
    assert_int_equal(len, 16);

    struct {
        const char *text;
        size_t len;
        const char *why;
    } bad[] = {
        {"", 0, "must be 4..16 characters, not 0"},
        {" \n\n", 3, "must be 4..16 characters, not 0"},
        {"abc\n", 4, "must be 4..16 characters, not 3"},
        {"0123456789abcdefg", 17, "must be 4..16 characters, not 17"},
        {"two words\n", 10, "one line of printable ASCII"},
        {"one\ntwo\n", 8, "one line of printable ASCII"},
        {"abcd\0efg", 8, "one line of printable ASCII"},
        {"abcd\x7f", 5, "one line of printable ASCII"},
        {"caf\xc3\xa9s", 6, "one line of printable ASCII"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        len = 99;
        memset(out, 'x', sizeof(out));
        assert_int_equal(read_text(bad[i].text, bad[i].len, out, &len, why), -1);
        assert_non_null(strstr(why, bad[i].why));
        assert_int_equal(len, 99); /* Nothing written on failure. */
        assert_int_equal(out[0], 'x');
    }

    /* A file one byte over the bound is not a secret file, whatever it holds. */
    static char big[RT_SECRET_FILE_BYTES_MAX + 1];
    memset(big, ' ', sizeof(big));
    memcpy(big, "abcdef", 6);
    assert_int_equal(read_text(big, sizeof(big), out, &len, why), -1);
    assert_non_null(strstr(why, "not a secret file"));
    assert_int_equal(read_text(big, sizeof(big) - 1, out, &len, why), 0); /* At the bound. */
    assert_int_equal(len, 6);

    /* What the system says, after the path. */
    assert_int_equal(
        rt_secret_file_read("/nonexistent/rt-secret", 4, 16, out, &len, why, sizeof(why)), -1);
    assert_string_equal(why, "/nonexistent/rt-secret: No such file or directory");
    assert_int_equal(rt_secret_file_read("/tmp", 4, 16, out, &len, why, sizeof(why)), -1);
    assert_string_equal(why, "/tmp: Is a directory");
    static char long_path[RT_SECRET_PATH_BYTES_MAX + 2];
    memset(long_path, 'a', sizeof(long_path) - 1);
    assert_int_equal(rt_secret_file_read(long_path, 4, 16, out, &len, why, sizeof(why)), -1);
    char expected[64];
    snprintf(expected, sizeof(expected), "longer than %u bytes", RT_SECRET_PATH_BYTES_MAX);
    assert_non_null(strstr(why, expected));
    /* A pipe is read as a file (`--secret-file <(...)`); one whose writer says nothing is an
     * error after RT_SECRET_WAIT_MS, not a hang. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], " s3cr3t!~\n", 10), 10);
    close(fds[1]);
    char pipe_path[64];
    snprintf(pipe_path, sizeof(pipe_path), "/proc/self/fd/%d", fds[0]);
    assert_int_equal(rt_secret_file_read(pipe_path, 4, 16, out, &len, why, sizeof(why)), 0);
    assert_int_equal(len, 8);
    close(fds[0]);
    assert_int_equal(pipe(fds), 0);
    snprintf(pipe_path, sizeof(pipe_path), "/proc/self/fd/%d", fds[0]);
    assert_int_equal(rt_secret_file_read(pipe_path, 4, 16, out, &len, why, sizeof(why)), -1);
    snprintf(expected, sizeof(expected), "nothing to read within %u ms", RT_SECRET_WAIT_MS);
    assert_non_null(strstr(why, expected));
    close(fds[0]);
    close(fds[1]);
    /* A short reason buffer is cut, never overrun. */
    char tiny[8];
    assert_int_equal(
        rt_secret_file_read("/nonexistent/rt-secret", 4, 16, out, &len, tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "/nonexi");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table),      cmocka_unit_test(test_error_specials),
        cmocka_unit_test(test_buf_limits),       cmocka_unit_test(test_buf_reserve_failure),
        cmocka_unit_test(test_buf_big_endian),   cmocka_unit_test(test_clock_manual),
        cmocka_unit_test(test_prng_determinism), cmocka_unit_test(test_prng_below),
        cmocka_unit_test(test_shard_of_pinned),  cmocka_unit_test(test_id_round_trip),
        cmocka_unit_test(test_id_rejects),       cmocka_unit_test(test_u64_parse),
        cmocka_unit_test(test_secret_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
