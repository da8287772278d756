/* cl_journal: the raft log's journal. See cl_journal.h. */
#include "cl_journal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_log.h"

#define SLOT_BYTES    16u /* magic(4) generation(8) crc(4) */
#define SLOT_STRIDE   512u
#define SLOT_COUNT    2u
#define RECORD_MAGIC  "PRJ1"
#define SLOT_MAGIC    "PRJH"
#define RECORD_CRC_AT 24u /* The crc follows magic, generation, seq and length. */
#define RECORD_LEN_AT 20u
#define RECORD_SEQ_AT 12u
#define RECORD_GEN_AT 4u

struct cl_journal {
    char *path;
    int fd;
    size_t capacity;
    uint64_t generation; /* Current; 0 until the first restart of a new file. */
    uint64_t taken;      /* The largest generation the file shows sign of (restart: above). */
    unsigned slot;       /* The header slot holding the current generation. */
    uint64_t seq;        /* The next record's. */
    size_t offset;       /* Where the next record goes. */
    bool failed;         /* A write or sync failed: no more appends. */
};

/* ---- CRC-32C ---- */

static uint32_t crc_table[256];

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) != 0 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        }
        crc_table[i] = c;
    }
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>
/* SSE 4.2's crc32 instruction computes CRC-32C: ~8 bytes a cycle instead of ~1. */
__attribute__((target("sse4.2"))) static uint32_t crc_hard(uint32_t crc, const uint8_t *p,
                                                           size_t len)
{
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof(word));
        c = _mm_crc32_u64(c, word);
    }
    uint32_t c32 = (uint32_t)c;
    for (; len > 0; p++, len--) {
        c32 = _mm_crc32_u8(c32, *p);
    }
    return c32;
}
#endif

static bool crc_use_hard;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    crc_table_init();
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_use_hard = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t cl_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (crc_use_hard) {
        return ~crc_hard(~crc, data, len);
    }
#endif
    return ~crc_soft(~crc, data, len);
}

uint32_t cl_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    return ~crc_soft(~crc, data, len);
}

/* ---- The scan ---- */

/* The generation in header slot @slot of @buf, or 0 if the slot is not valid. */
static uint64_t slot_generation(const uint8_t *buf, size_t len, unsigned slot)
{
    size_t at = (size_t)slot * SLOT_STRIDE;
    if (len < at + SLOT_BYTES || memcmp(buf + at, SLOT_MAGIC, 4) != 0 ||
        cl_crc32c(0, buf + at, SLOT_BYTES - 4) != rt_get_be32(buf + at + SLOT_BYTES - 4)) {
        return 0;
    }
    return rt_get_be64(buf + at + 4);
}

/* The current generation and its slot (0 and slot 0 if neither is valid). */
static uint64_t scan_header(const uint8_t *buf, size_t len, unsigned *slot)
{
    uint64_t best = 0;
    *slot = 0;
    for (unsigned s = 0; s < SLOT_COUNT; s++) {
        uint64_t g = slot_generation(buf, len, s);
        if (g > best) {
            best = g;
            *slot = s;
        }
    }
    return best;
}

/* cl_journal_scan, also telling the current generation's slot. */
static uint64_t journal_scan(const uint8_t *buf, size_t len,
                             void (*record)(void *arg, const uint8_t *payload, size_t len),
                             void *arg, uint64_t *generation, unsigned *slot, size_t *end)
{
    uint64_t gen = scan_header(buf, len, slot);
    *generation = gen;
    *end = CL_JOURNAL_RECORDS_START;
    if (gen == 0) {
        return 0;
    }
    uint64_t count = 0;
    size_t at = CL_JOURNAL_RECORDS_START;
    while (at <= len && len - at >= CL_JOURNAL_HEAD_BYTES) {
        const uint8_t *head = buf + at;
        uint32_t payload_len = rt_get_be32(head + RECORD_LEN_AT);
        if (memcmp(head, RECORD_MAGIC, 4) != 0 || rt_get_be64(head + RECORD_GEN_AT) != gen ||
            rt_get_be64(head + RECORD_SEQ_AT) != count ||
            payload_len > len - at - CL_JOURNAL_HEAD_BYTES) {
            break;
        }
        uint32_t crc = cl_crc32c(0, head, RECORD_CRC_AT);
        crc = cl_crc32c(crc, head + CL_JOURNAL_HEAD_BYTES, payload_len);
        if (crc != rt_get_be32(head + RECORD_CRC_AT)) {
            break;
        }
        if (record != NULL) {
            record(arg, head + CL_JOURNAL_HEAD_BYTES, payload_len);
        }
        count++;
        at += CL_JOURNAL_HEAD_BYTES + payload_len;
        *end = at;
    }
    return count;
}

uint64_t cl_journal_scan(const uint8_t *buf, size_t len,
                         void (*record)(void *arg, const uint8_t *payload, size_t len), void *arg,
                         uint64_t *generation, size_t *end)
{
    unsigned slot;
    return journal_scan(buf, len, record, arg, generation, &slot, end);
}

/* ---- Open and close ---- */

/* Write all of @iov's bytes at @offset. 0 or an errno. */
static int write_at(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    struct iovec rest[2];
    assert(iovcnt <= 2);
    memcpy(rest, iov, (size_t)iovcnt * sizeof(*iov));
    struct iovec *v = rest;
    while (iovcnt > 0) {
        ssize_t n = pwritev(fd, v, iovcnt, offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (n == 0) {
            return EIO; /* Nothing written and no error: do not spin. */
        }
        offset += n;
        while (iovcnt > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Read the file, bounded by CL_JOURNAL_BYTES_MAX, into a new buffer *@buf of *@len bytes (the
 * caller frees it, also on failure). 0, RT_ENOMEM or RT_EIO. */
static int read_all(const struct cl_journal *j, uint8_t **buf, size_t *len)
{
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        RT_ERROR("journal %s: %s", j->path, strerror(errno));
        return RT_EIO;
    }
    size_t size =
        (size_t)st.st_size < CL_JOURNAL_BYTES_MAX ? (size_t)st.st_size : CL_JOURNAL_BYTES_MAX;
    *len = 0;
    *buf = malloc(size > 0 ? size : 1);
    if (*buf == NULL) {
        return RT_ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(j->fd, *buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            RT_ERROR("journal %s: %s", j->path, strerror(errno));
            return RT_EIO;
        }
        if (n == 0) {
            break; /* Shorter than fstat said: scan what there is. */
        }
        got += (size_t)n;
    }
    *len = got;
    return 0;
}

/* Write zeros from the file's end (@size) to @capacity and sync: blocks the file already has are
 * what makes a record's sync write no metadata (cl_journal.h), from the first lap on. */
static int fill_to(int fd, size_t size, size_t capacity)
{
    static const uint8_t zeros[64 * 1024];
    while (size < capacity) {
        size_t n = capacity - size < sizeof(zeros) ? capacity - size : sizeof(zeros);
        struct iovec iov = {(void *)zeros, n};
        int err = write_at(fd, &iov, 1, (off_t)size);
        if (err != 0) {
            return err;
        }
        size += n;
    }
    return fdatasync(fd) == 0 ? 0 : errno;
}

/* fsync the directory holding @path, so that a file just created there stays after a crash. */
static int sync_parent(const char *path)
{
    char copy[PATH_MAX];
    if (strlen(path) >= sizeof(copy)) {
        return ENAMETOOLONG;
    }
    strcpy(copy, path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return errno;
    }
    int rv = fsync(dfd) == 0 ? 0 : errno;
    close(dfd);
    return rv;
}

struct replay_ctx {
    int (*apply)(void *arg, const uint8_t *payload, size_t len);
    void *arg;
    int rv;
};

static void replay_one(void *arg, const uint8_t *payload, size_t len)
{
    struct replay_ctx *ctx = arg;
    if (ctx->rv == 0 && ctx->apply != NULL) {
        ctx->rv = ctx->apply(ctx->arg, payload, len);
    }
}

int cl_journal_open(const char *path, size_t capacity,
                    int (*apply)(void *arg, const uint8_t *payload, size_t len), void *arg,
                    uint64_t *replayed, struct cl_journal **out)
{
    assert(path != NULL && replayed != NULL && out != NULL);
    *out = NULL;
    *replayed = 0;
    if (capacity == 0) {
        capacity = CL_JOURNAL_BYTES_DEFAULT;
    }
    if (capacity < CL_JOURNAL_BYTES_MIN || capacity > CL_JOURNAL_BYTES_MAX) {
        return RT_EINVAL;
    }
    struct cl_journal *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->path = strdup(path)) == NULL) {
        free(j);
        return RT_ENOMEM;
    }
    j->capacity = capacity;
    j->fd = open(path, O_RDWR | O_CLOEXEC);
    int rv = 0;
    if (j->fd < 0 && errno == ENOENT) {
        j->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (j->fd < 0) {
            RT_ERROR("journal %s: cannot create: %s", path, strerror(errno));
            rv = RT_EIO;
        }
    } else if (j->fd < 0) {
        RT_ERROR("journal %s: %s", path, strerror(errno));
        rv = RT_EIO;
    }
    uint8_t *file = NULL;
    size_t file_len = 0;
    if (rv == 0) {
        rv = read_all(j, &file, &file_len);
    }
    if (rv == 0) {
        /* A new file (or one cut short) is filled; and the directory is synced at every open,
         * so that the file's name is durable before any record in it is acknowledged, even
         * after an open that created it failed there. */
        int err = file_len < capacity ? fill_to(j->fd, file_len, capacity) : 0;
        if (err == 0) {
            err = sync_parent(path);
        }
        if (err != 0) {
            RT_ERROR("journal %s: cannot fill to %zu bytes and sync: %s", path, capacity,
                     strerror(err));
            rv = RT_EIO;
        }
    }
    struct replay_ctx ctx = {apply, arg, 0};
    size_t end = CL_JOURNAL_RECORDS_START;
    if (rv == 0) {
        j->seq = journal_scan(file, file_len, replay_one, &ctx, &j->generation, &j->slot, &end);
        rv = ctx.rv;
    }
    /* The first record's generation, valid or not: if the current generation's slot was
     * damaged after records of it were written, they must never match a later one. */
    j->taken = j->generation;
    if (rv == 0 && file_len >= CL_JOURNAL_RECORDS_START + CL_JOURNAL_HEAD_BYTES) {
        const uint8_t *first = file + CL_JOURNAL_RECORDS_START;
        uint64_t first_gen = rt_get_be64(first + RECORD_GEN_AT);
        if (memcmp(first, RECORD_MAGIC, 4) == 0 && first_gen > j->taken) {
            j->taken = first_gen;
        }
    }
    free(file);
    if (rv != 0) {
        cl_journal_close(j);
        return rv;
    }
    j->offset = end;
    *replayed = j->seq;
    *out = j;
    return 0;
}

void cl_journal_close(struct cl_journal *journal)
{
    if (journal == NULL) {
        return;
    }
    if (journal->fd >= 0) {
        close(journal->fd);
    }
    free(journal->path);
    free(journal);
}

/* ---- Restart, append ---- */

bool cl_journal_fits(const struct cl_journal *journal, size_t len)
{
    assert(journal != NULL);
    /* Subtractions from the capacity, so that no @len, however large, wraps around. (The
     * offset may be past the capacity after an open of a file written with a larger one.) */
    size_t room = journal->offset < journal->capacity ? journal->capacity - journal->offset : 0;
    return room >= CL_JOURNAL_HEAD_BYTES && len <= room - CL_JOURNAL_HEAD_BYTES;
}

/* Write @iov at @offset and sync. 0 or RT_EIO (and the journal refuses appends from then). */
static int write_synced(struct cl_journal *j, const struct iovec *iov, int iovcnt, size_t offset)
{
    if (j->failed) {
        return RT_EIO;
    }
    int err = write_at(j->fd, iov, iovcnt, (off_t)offset);
    if (err == 0 && fdatasync(j->fd) != 0) {
        err = errno;
    }
    if (err != 0) {
        RT_ERROR("journal %s: %s", j->path, strerror(err));
        j->failed = true;
        return RT_EIO;
    }
    return 0;
}

int cl_journal_restart(struct cl_journal *journal)
{
    assert(journal != NULL);
    if (journal->taken == UINT64_MAX) {
        RT_ERROR("journal %s: no generation left", journal->path); /* A forged first record. */
        journal->failed = true;
        return RT_EIO;
    }
    uint64_t next = journal->taken + 1;
    unsigned slot = journal->generation == 0 ? 0 : 1 - journal->slot;
    uint8_t head[SLOT_BYTES];
    memcpy(head, SLOT_MAGIC, 4);
    rt_put_be64(head + 4, next);
    rt_put_be32(head + SLOT_BYTES - 4, cl_crc32c(0, head, SLOT_BYTES - 4));
    struct iovec iov = {head, sizeof(head)};
    int rv = write_synced(journal, &iov, 1, (size_t)slot * SLOT_STRIDE);
    if (rv != 0) {
        return rv;
    }
    journal->generation = next;
    journal->taken = next;
    journal->slot = slot;
    journal->seq = 0;
    journal->offset = CL_JOURNAL_RECORDS_START;
    return 0;
}

int cl_journal_append(struct cl_journal *journal, const void *payload, size_t len)
{
    assert(journal != NULL && journal->generation > 0 && cl_journal_fits(journal, len));
    uint8_t head[CL_JOURNAL_HEAD_BYTES];
    memcpy(head, RECORD_MAGIC, 4);
    rt_put_be64(head + RECORD_GEN_AT, journal->generation);
    rt_put_be64(head + RECORD_SEQ_AT, journal->seq);
    rt_put_be32(head + RECORD_LEN_AT, (uint32_t)len);
    uint32_t crc = cl_crc32c(0, head, RECORD_CRC_AT);
    rt_put_be32(head + RECORD_CRC_AT, cl_crc32c(crc, payload, len));
    struct iovec iov[2] = {{head, sizeof(head)}, {(void *)payload, len}};
    int rv = write_synced(journal, iov, len > 0 ? 2 : 1, journal->offset);
    if (rv != 0) {
        return rv;
    }
    journal->seq++;
    journal->offset += sizeof(head) + len;
    return 0;
}
