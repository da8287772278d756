/* Tests for cl_journal: the file that makes the raft log's writes durable.
 *
 * Why: a record the scan wrongly accepts is a write replayed that should not be (a stale one
 * from an earlier lap, over newer state), and a record it wrongly refuses is an acknowledged
 * write lost. So each test writes through the public API, damages or laps the file the way a
 * crash or a long run would, reopens it and compares what the replay hands back, payload by
 * payload, with what must be there:
 *   - a new file is filled to its capacity and holds nothing; records come back in order;
 *   - a restart makes every earlier record stale, also where a new lap's record ends exactly
 *     where an old one began;
 *   - a torn or damaged record ends the scan, keeping the ones before it;
 *   - a damaged header slot leaves the other; a generation is never used twice, even then;
 *   - capacity bounds and what fits; CRC-32C's check value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_journal.h"
#include "rt_error.h"
#include "test_support.h"

#define CAPACITY    (64u * 1024u)
#define RECORDS_MAX 64

struct fx {
    char *dir;
    char path[PATH_MAX];
    struct cl_journal *journal;
    /* What the last replay handed back. */
    size_t n;
    uint8_t payloads[RECORDS_MAX][512];
    size_t lens[RECORDS_MAX];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->dir = test_tmpdir("journal");
    snprintf(fx->path, sizeof(fx->path), "%s/journal", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    cl_journal_close(fx->journal);
    test_rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Payload @i of @seed: its length varies, and payload 0 of seed 0 is empty. */
static size_t payload_make(uint8_t *out, unsigned i, unsigned seed)
{
    size_t len = (i * 37u + seed * 11u) % 300u;
    for (size_t k = 0; k < len; k++) {
        out[k] = (uint8_t)(i * 7u + seed * 13u + k);
    }
    return len;
}

static int collect(void *arg, const uint8_t *payload, size_t len)
{
    struct fx *fx = arg;
    assert_true(fx->n < RECORDS_MAX && len <= sizeof(fx->payloads[0]));
    memcpy(fx->payloads[fx->n], payload, len);
    fx->lens[fx->n++] = len;
    return 0;
}

/* Close the fixture's journal, if open, as a stop would. */
static void journal_close(struct fx *fx)
{
    cl_journal_close(fx->journal);
    fx->journal = NULL;
}

/* (Re)open, replay, and check the records are payloads @first.. of @seed, @count of them;
 * then restart, as cl_raftlog does, unless @keep. */
static void reopen_expect(struct fx *fx, unsigned first, size_t count, unsigned seed, bool keep)
{
    journal_close(fx);
    fx->n = 0;
    uint64_t replayed;
    assert_int_equal(cl_journal_open(fx->path, CAPACITY, collect, fx, &replayed, &fx->journal), 0);
    assert_int_equal(replayed, count);
    assert_int_equal(fx->n, count);
    for (size_t i = 0; i < count; i++) {
        uint8_t want[512];
        size_t len = payload_make(want, first + (unsigned)i, seed);
        assert_int_equal(fx->lens[i], len);
        if (len > 0) {
            assert_memory_equal(fx->payloads[i], want, len);
        }
    }
    if (!keep) {
        assert_int_equal(cl_journal_restart(fx->journal), 0);
    }
}

static void append_n(struct fx *fx, unsigned first, unsigned count, unsigned seed)
{
    for (unsigned i = first; i < first + count; i++) {
        uint8_t p[512];
        size_t len = payload_make(p, i, seed);
        assert_true(cl_journal_fits(fx->journal, len));
        assert_int_equal(cl_journal_append(fx->journal, p, len), 0);
    }
}

/* Overwrite @len bytes at @offset of the file with @byte, as a crash or a bad disk might. */
static void damage(struct fx *fx, size_t offset, size_t len, uint8_t byte)
{
    int fd = open(fx->path, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t buf[64];
    assert_true(len <= sizeof(buf));
    memset(buf, byte, len);
    assert_int_equal(pwrite(fd, buf, len, (off_t)offset), (ssize_t)len);
    close(fd);
}

/* Where record @i starts, for payloads 0.. of @seed. */
static size_t record_offset(unsigned i, unsigned seed)
{
    size_t at = CL_JOURNAL_RECORDS_START;
    for (unsigned k = 0; k < i; k++) {
        uint8_t p[512];
        at += CL_JOURNAL_HEAD_BYTES + payload_make(p, k, seed);
    }
    return at;
}

/* ---- Tests ---- */

static void test_new_file_is_filled_and_empty(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_size, CAPACITY); /* Written to its capacity: no size to sync. */
    append_n(fx, 0, 5, 0);                  /* Payload 0 of seed 0 is empty. */
    reopen_expect(fx, 0, 5, 0, true);
    /* Not restarted: the same records are found again. */
    reopen_expect(fx, 0, 5, 0, false);
    /* Restarted: none. */
    reopen_expect(fx, 0, 0, 0, false);
}

static void test_restart_makes_records_stale(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false);
    append_n(fx, 0, 6, 1);
    assert_int_equal(cl_journal_restart(fx->journal), 0);
    append_n(fx, 0, 2, 2);
    reopen_expect(fx, 0, 2, 2, false);
    /* Laps with both header slots in turn. */
    for (unsigned seed = 3; seed < 8; seed++) {
        append_n(fx, 0, seed, seed);
        reopen_expect(fx, 0, seed, seed, false);
    }
}

/* A new lap's record that ends exactly where an old lap's next record begins, with the seq
 * that record would follow with: only the generation tells them apart. */
static void test_old_lap_aligned_record_is_stale(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false);
    append_n(fx, 0, 4, 1);
    assert_int_equal(cl_journal_restart(fx->journal), 0);
    append_n(fx, 0, 2, 1); /* Same sizes as the old lap's first two: record 2 follows. */
    reopen_expect(fx, 0, 2, 1, false);
}

static void test_torn_record_ends_the_scan(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false);
    append_n(fx, 0, 5, 4);
    reopen_expect(fx, 0, 5, 4, true);
    /* A payload byte of record 3: records 0..2 stay. */
    damage(fx, record_offset(3, 4) + CL_JOURNAL_HEAD_BYTES + 1, 1, 0xff);
    reopen_expect(fx, 0, 3, 4, true);
    /* Record 1's length cut to zero (its head no longer matches its crc). */
    damage(fx, record_offset(1, 4) + 20, 4, 0);
    reopen_expect(fx, 0, 1, 4, true);
    /* Record 0's magic: nothing. */
    damage(fx, record_offset(0, 4), 1, 'X');
    reopen_expect(fx, 0, 0, 4, false);
}

/* A file cut short (a crash while the first lap was filling it in an older build, or a copy)
 * is filled again; records past the cut are gone, those before it stay. */
static void test_short_file_is_filled_again(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false);
    append_n(fx, 0, 4, 5);
    journal_close(fx);
    assert_int_equal(truncate(fx->path, (off_t)(record_offset(3, 5) + 10)), 0);
    reopen_expect(fx, 0, 3, 5, true);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_size, CAPACITY);
}

/* The slot of the current generation damaged after records of it were written: the other
 * slot's older generation is current, those records are not found, and the next restart
 * takes a generation above theirs, so that they never count again. */
static void test_damaged_slot_keeps_the_other(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false); /* Generation 1, slot 0. */
    append_n(fx, 0, 3, 6);
    assert_int_equal(cl_journal_restart(fx->journal), 0); /* Generation 2, slot 1. */
    append_n(fx, 0, 3, 7);
    reopen_expect(fx, 0, 3, 7, true);
    damage(fx, 512 + 5, 1, 0xee); /* Slot 1's generation. */
    reopen_expect(fx, 0, 0, 0, false);
    /* One record of the new generation, then generation 2's stale records from record 1 on. */
    append_n(fx, 0, 1, 7);
    reopen_expect(fx, 0, 1, 7, false);
}

static void test_capacity_bounds_and_fit(void **state)
{
    struct fx *fx = *state;
    struct cl_journal *j = (struct cl_journal *)fx; /* Must be overwritten. */
    uint64_t replayed;
    assert_int_equal(
        cl_journal_open(fx->path, CL_JOURNAL_BYTES_MIN - 1, collect, fx, &replayed, &j), RT_EINVAL);
    assert_null(j);
    assert_int_equal(
        cl_journal_open(fx->path, (size_t)CL_JOURNAL_BYTES_MAX + 1, collect, fx, &replayed, &j),
        RT_EINVAL);
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof(missing), "%s/no/such/dir", fx->dir);
    assert_int_equal(cl_journal_open(missing, 0, collect, fx, &replayed, &j), RT_EIO);
    assert_null(j);
    assert_int_equal(
        cl_journal_open(fx->path, CL_JOURNAL_BYTES_MIN, collect, fx, &replayed, &fx->journal), 0);
    assert_int_equal(cl_journal_restart(fx->journal), 0);
    /* Empty: a record of the whole room fits, one byte more never will, nor any length that
     * would wrap around an addition. */
    size_t room = CL_JOURNAL_BYTES_MIN - CL_JOURNAL_RECORDS_START - CL_JOURNAL_HEAD_BYTES;
    assert_true(cl_journal_fits(fx->journal, room));
    assert_false(cl_journal_fits(fx->journal, room + 1));
    assert_false(cl_journal_fits(fx->journal, SIZE_MAX));
    static uint8_t big[CL_JOURNAL_BYTES_MIN];
    assert_int_equal(cl_journal_append(fx->journal, big, 100), 0);
    assert_false(cl_journal_fits(fx->journal, room));
    assert_true(cl_journal_fits(fx->journal, room - 100 - CL_JOURNAL_HEAD_BYTES));
    assert_false(cl_journal_fits(fx->journal, room - 100 - CL_JOURNAL_HEAD_BYTES + 1));
}

static int refuse_second(void *arg, const uint8_t *payload, size_t len)
{
    (void)payload;
    (void)len;
    int *calls = arg;
    return ++*calls == 2 ? RT_EIO : 0;
}

static void test_replay_stops_at_apply_error(void **state)
{
    struct fx *fx = *state;
    reopen_expect(fx, 0, 0, 0, false);
    append_n(fx, 0, 4, 8);
    journal_close(fx);
    int calls = 0;
    uint64_t replayed;
    assert_int_equal(
        cl_journal_open(fx->path, CAPACITY, refuse_second, &calls, &replayed, &fx->journal),
        RT_EIO);
    assert_int_equal(calls, 2);
    assert_null(fx->journal);
}

static void test_crc32c_check_value(void **state)
{
    (void)state;
    assert_int_equal(cl_crc32c(0, "123456789", 9), 0xe3069283u);
    /* In pieces, across the 8-byte steps. */
    uint32_t crc = cl_crc32c(0, "1234", 4);
    assert_int_equal(cl_crc32c(crc, "56789", 5), 0xe3069283u);
    assert_int_equal(cl_crc32c(0, "", 0), 0);
    /* The table, which this machine's CPU may never use, gives the same as the instruction. */
    assert_int_equal(cl_crc32c_portable(0, "123456789", 9), 0xe3069283u);
    uint8_t bytes[300];
    for (size_t i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (uint8_t)(i * 151u + 7u);
    }
    for (size_t len = 0; len <= sizeof(bytes); len += 13) {
        assert_int_equal(cl_crc32c(5, bytes, len), cl_crc32c_portable(5, bytes, len));
    }
}

int main(void)
{
#define CASE(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_new_file_is_filled_and_empty),
        CASE(test_restart_makes_records_stale),
        CASE(test_old_lap_aligned_record_is_stale),
        CASE(test_torn_record_ends_the_scan),
        CASE(test_short_file_is_filled_again),
        CASE(test_damaged_slot_keeps_the_other),
        CASE(test_capacity_bounds_and_fit),
        CASE(test_replay_stops_at_apply_error),
        CASE(test_crc32c_check_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
