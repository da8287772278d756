/* libFuzzer target: cl_journal's scan, fed a journal file's bytes as a disk might hold them.
 *
 * After a crash the file may hold anything: torn records, records of older laps, damaged
 * header slots. The scan must accept only whole records of the current generation, in seq
 * order from the records' start, without reading past the buffer (ASan) or crashing. Checks:
 * the records it hands back lie end to end from CL_JOURNAL_RECORDS_START to the end it
 * reports, inside the buffer; and the scan of the bytes up to that end finds the same records
 * (what follows the last record has no say in what came before).
 *
 * Valid records carry a CRC that random bytes never match, so an input whose first byte is
 * odd is a recipe instead: the rest is payloads, each a length byte and its bytes, that the
 * target writes as a valid journal (slot 0, records of its generation). Then, by the first
 * byte's top bits: one byte damaged at the offset the last two input bytes name (the scan
 * must stop at the record holding it: a CRC-32C sees every change of one byte; nothing if it
 * is in slot 0; every record if it is in the unused rest of the header), or one record
 * written whole, with a valid CRC, but the seq after the one it should have (the scan must
 * stop there). Else the scan must find every record. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cl_journal.h"
#include "rt_buf.h"

#define RECIPE_BYTES_MAX (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct walk {
    const uint8_t *buf;
    size_t len;
    size_t next; /* Where the next record's payload must start. */
    uint64_t count;
};

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void on_record(void *arg, const uint8_t *payload, size_t len)
{
    struct walk *w = arg;
    size_t at = (size_t)(payload - w->buf);
    check(payload >= w->buf && at == w->next + CL_JOURNAL_HEAD_BYTES && len <= w->len - at);
    w->next = at + len;
    w->count++;
}

/* Write the journal the recipe @data describes into @out, with record @gap_at's seq one too
 * high (none if past the last); returns its length and how many records it holds. */
static size_t recipe_build(const uint8_t *data, size_t size, uint64_t gap_at, uint8_t *out,
                           uint64_t *records)
{
    uint64_t generation = 1 + ((data[0] >> 1) & 3);
    memset(out, 0, CL_JOURNAL_RECORDS_START);
    memcpy(out, "PRJH", 4);
    rt_put_be64(out + 4, generation);
    rt_put_be32(out + 12, cl_crc32c(0, out, 12));
    size_t at = CL_JOURNAL_RECORDS_START;
    *records = 0;
    for (size_t i = 1; i < size;) {
        size_t len = data[i++];
        if (len > size - i) {
            len = size - i;
        }
        uint8_t *head = out + at;
        memcpy(head, "PRJ1", 4);
        rt_put_be64(head + 4, generation);
        rt_put_be64(head + 12, *records + (*records == gap_at ? 1 : 0));
        rt_put_be32(head + 20, (uint32_t)len);
        memcpy(head + CL_JOURNAL_HEAD_BYTES, data + i, len);
        uint32_t crc = cl_crc32c(0, head, 24);
        rt_put_be32(head + 24, cl_crc32c(crc, data + i, len));
        at += CL_JOURNAL_HEAD_BYTES + len;
        i += len;
        (*records)++;
    }
    return at;
}

static void scan_checked(const uint8_t *data, size_t size, uint64_t *count_out)
{
    struct walk w = {data, size, CL_JOURNAL_RECORDS_START, 0};
    uint64_t generation;
    size_t end;
    uint64_t count = cl_journal_scan(data, size, on_record, &w, &generation, &end);
    check(count == w.count && end == w.next);
    check(count == 0 || (generation > 0 && end <= size));
    uint64_t generation2;
    size_t end2;
    if (count > 0) {
        check(cl_journal_scan(data, end, NULL, NULL, &generation2, &end2) == count);
        check(generation2 == generation && end2 == end);
    }
    *count_out = count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t count;
    if (size == 0 || (data[0] & 1) == 0 || size > RECIPE_BYTES_MAX) {
        scan_checked(data, size, &count);
        return 0;
    }
    /* Each input byte becomes at most a byte of payload or a 28-byte head. */
    uint8_t *built = malloc(CL_JOURNAL_RECORDS_START + size * (CL_JOURNAL_HEAD_BYTES + 1));
    check(built != NULL);
    bool damaged = (data[0] & 0x80) != 0 && size >= 3;
    bool gap = !damaged && (data[0] & 0x40) != 0 && size >= 2;
    uint64_t gap_at = gap ? data[size - 1] % 8u : UINT64_MAX;
    uint64_t records;
    size_t len = recipe_build(data, size, gap_at, built, &records);
    uint64_t expected = gap && gap_at < records ? gap_at : records;
    if (damaged) {
        size_t at = (((size_t)data[size - 2] << 8) | data[size - 1]) % len;
        built[at] ^= 0x5a;
        if (at < 16) {
            expected = 0; /* Slot 0: no valid slot, no generation. */
        } else if (at >= CL_JOURNAL_RECORDS_START) {
            /* The record holding the byte, and none after it. */
            size_t start = CL_JOURNAL_RECORDS_START;
            expected = 0;
            for (;;) {
                size_t next = start + CL_JOURNAL_HEAD_BYTES + rt_get_be32(built + start + 20);
                if (at < next) {
                    break;
                }
                start = next;
                expected++;
            }
        }
    }
    scan_checked(built, len, &count);
    check(count == expected);
    free(built);
    return 0;
}
