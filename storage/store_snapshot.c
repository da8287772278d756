/* store_snapshot: a shard as a stream of compressed chunks, and back (see store_snapshot.h).
 *
 * Each chunk's payload is one zstd frame with the content size and a content checksum in it:
 * the checksum is what turns a flipped bit inside the compressed bytes into RT_ECORRUPT
 * instead of silently different records. Records appear in (cf, key) order, as the scans
 * produce them; restore insists on that order, which also rules out duplicate keys.
 */
#include "store_snapshot.h"

#include <assert.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_limits.h"
#include "rt_log.h"
#include "store_internal.h"

/* Persistent format (it travels between nodes): see store_snapshot.h. */
#define SNAP_MAGIC       "PRSNAP01"
#define SNAP_MAGIC_BYTES 8u
#define SNAP_FLAG_LAST   0x0001u
#define SNAP_FLAG_MARKER 0x0002u
/* Record framing: cf (1) + key_len (4) + val_len (4). */
#define SNAP_RECORD_OVERHEAD 9u
/* Level 1: snapshots are made on the loop thread while the shard keeps serving; the fastest
 * level already shrinks msgpack states several times. */
#define SNAP_ZSTD_LEVEL 1
/* zstd frame format (RFC 8878): 4-byte magic, then the frame header descriptor whose bit 2
 * says the frame ends with a content checksum. */
#define SNAP_ZSTD_FRAME_MIN     5u
#define SNAP_ZSTD_CHECKSUM_FLAG 0x04u
/* Every chunk has at least a header, so a stream within RT_SNAPSHOT_BYTES_MAX has at most
 * this many chunks. */
#define SNAP_CHUNKS_MAX (RT_SNAPSHOT_BYTES_MAX / STORE_SNAPSHOT_HEADER_BYTES)
/* Bytes of records per restore write batch: large enough that a batch's fixed cost is
 * noise, small enough that one write does not hold the memtable (and the loop) for long. */
#define SNAP_RESTORE_BATCH_BYTES (4u * 1024u * 1024u)

static const uint8_t snap_zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

struct snap_header {
    uint16_t shard;
    uint16_t flags; /* SNAP_FLAG_LAST on the final chunk only. */
    uint32_t chunk_no;
    uint64_t applied_index;
    uint32_t raw_len;  /* Bytes of records once decompressed. */
    uint32_t comp_len; /* Bytes of the zstd frame after the header. */
};

static void snap_header_encode(uint8_t *out, const struct snap_header *h)
{
    assert(out != NULL && h != NULL);
    assert(h->raw_len <= RT_SNAPSHOT_CHUNK_BYTES);
    memcpy(out, SNAP_MAGIC, SNAP_MAGIC_BYTES);
    rt_put_be16(out + 8, h->shard);
    rt_put_be16(out + 10, h->flags);
    rt_put_be32(out + 12, h->chunk_no);
    rt_put_be64(out + 16, h->applied_index);
    rt_put_be32(out + 24, h->raw_len);
    rt_put_be32(out + 28, h->comp_len);
}

static void snap_header_decode(const uint8_t *in, struct snap_header *h)
{
    assert(in != NULL && h != NULL);
    h->shard = rt_get_be16(in + 8);
    h->flags = rt_get_be16(in + 10);
    h->chunk_no = rt_get_be32(in + 12);
    h->applied_index = rt_get_be64(in + 16);
    h->raw_len = rt_get_be32(in + 24);
    h->comp_len = rt_get_be32(in + 28);
}

void store_snapshot_marker(uint16_t shard, uint64_t applied_index,
                           uint8_t out[STORE_SNAPSHOT_HEADER_BYTES])
{
    assert(out != NULL);
    struct snap_header h = {
        .shard = shard,
        .flags = SNAP_FLAG_MARKER | SNAP_FLAG_LAST,
        .applied_index = applied_index,
    };
    snap_header_encode(out, &h);
}

int store_snapshot_peek(const uint8_t *chunk, size_t len, uint16_t *shard, uint64_t *applied_index,
                        int *is_marker)
{
    assert(shard != NULL && applied_index != NULL && is_marker != NULL);
    if (chunk == NULL || len < STORE_SNAPSHOT_HEADER_BYTES ||
        memcmp(chunk, SNAP_MAGIC, SNAP_MAGIC_BYTES) != 0) {
        return RT_ECORRUPT;
    }
    struct snap_header h;
    snap_header_decode(chunk, &h);
    *is_marker = (h.flags & SNAP_FLAG_MARKER) != 0;
    if (*is_marker &&
        (len != STORE_SNAPSHOT_HEADER_BYTES || h.flags != (SNAP_FLAG_MARKER | SNAP_FLAG_LAST) ||
         h.chunk_no != 0 || h.raw_len != 0 || h.comp_len != 0)) {
        return RT_ECORRUPT; /* A marker is exactly one header and nothing else. */
    }
    *shard = h.shard;
    *applied_index = h.applied_index;
    return 0;
}

/* ---- Writing ---- */

struct snap_writer {
    uint16_t shard;
    uint64_t applied_index; /* Read from the same RocksDB snapshot as the records. */
    store_snapshot_sink sink;
    void *arg;
    ZSTD_CCtx *cctx;       /* Reused for every chunk. */
    struct rt_buf raw;     /* Records of the chunk being filled; max RT_SNAPSHOT_CHUNK_BYTES. */
    uint32_t chunk_no;     /* Number of the next chunk. */
    uint64_t stream_bytes; /* Headers and frames handed to the sink so far. */
    uint64_t records;
    uint8_t cf; /* Family being scanned. */
};

/* Compress the pending records into one chunk and hand it to the sink. */
static int snap_emit(struct snap_writer *w, int last)
{
    assert(w != NULL && w->cctx != NULL);
    assert(w->raw.len <= RT_SNAPSHOT_CHUNK_BYTES);
    size_t bound = ZSTD_compressBound(w->raw.len);
    uint8_t *chunk = malloc(STORE_SNAPSHOT_HEADER_BYTES + bound);
    if (chunk == NULL) {
        return RT_ENOMEM;
    }
    /* An empty chunk still gets a (tiny) frame: restore need not special-case it. */
    const void *src = w->raw.data != NULL ? (const void *)w->raw.data : (const void *)"";
    size_t comp_len =
        ZSTD_compress2(w->cctx, chunk + STORE_SNAPSHOT_HEADER_BYTES, bound, src, w->raw.len);
    if (ZSTD_isError(comp_len)) {
        RT_ERROR("snapshot of shard %u: zstd: %s", (unsigned)w->shard, ZSTD_getErrorName(comp_len));
        free(chunk);
        return RT_EINTERNAL;
    }
    assert(comp_len <= bound);
    size_t len = STORE_SNAPSHOT_HEADER_BYTES + comp_len;
    if (w->stream_bytes + len > RT_SNAPSHOT_BYTES_MAX) {
        RT_ERROR("snapshot of shard %u: over %u bytes; the shard must be split into more "
                 "shards",
                 (unsigned)w->shard, RT_SNAPSHOT_BYTES_MAX);
        free(chunk);
        return RT_ETOOLARGE;
    }
    struct snap_header h = {
        .shard = w->shard,
        .flags = last ? SNAP_FLAG_LAST : 0,
        .chunk_no = w->chunk_no,
        .applied_index = w->applied_index,
        .raw_len = (uint32_t)w->raw.len,
        .comp_len = (uint32_t)comp_len,
    };
    snap_header_encode(chunk, &h);
    /* raft holds every chunk until the snapshot is sent: give back the compression slack. */
    uint8_t *shrunk = realloc(chunk, len);
    if (shrunk != NULL) {
        chunk = shrunk;
    }
    int rv = w->sink(w->arg, chunk, len);
    assert(rv <= 0);
    if (rv != 0) {
        free(chunk); /* The sink did not take it. */
        return rv;
    }
    w->chunk_no++;
    w->stream_bytes += len;
    rt_buf_reset(&w->raw);
    return 0;
}

static int snap_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    struct snap_writer *w = arg;
    assert(w != NULL && key != NULL);
    assert(key_len >= RT_KEY_SHARD_BYTES && rt_get_be16(key) == w->shard);
    /* The scan bounded both lengths by the stored limits, so this cannot overflow. */
    size_t record_len = SNAP_RECORD_OVERHEAD + key_len + val_len;
    if (record_len > RT_SNAPSHOT_CHUNK_BYTES) {
        /* A record never spans chunks (each chunk is self-contained). */
        RT_ERROR("snapshot of shard %u: a %s record of %zu bytes does not fit in a %u-byte "
                 "chunk",
                 (unsigned)w->shard, rt_cf_name((enum rt_cf)w->cf), record_len,
                 RT_SNAPSHOT_CHUNK_BYTES);
        return RT_ETOOLARGE;
    }
    if (w->raw.len + record_len > RT_SNAPSHOT_CHUNK_BYTES) {
        int rv = snap_emit(w, 0);
        if (rv != 0) {
            return rv;
        }
    }
    int rv = rt_buf_reserve(&w->raw, record_len);
    if (rv != 0) {
        return rv;
    }
    uint8_t *p = w->raw.data + w->raw.len;
    p[0] = w->cf;
    rt_put_be32(p + 1, (uint32_t)key_len);
    memcpy(p + 5, key, key_len);
    rt_put_be32(p + 5 + key_len, (uint32_t)val_len);
    if (val_len > 0) {
        memcpy(p + 9 + key_len, val, val_len);
    }
    w->raw.len += record_len;
    w->records++;
    return 0;
}

int store_snapshot_write(struct store_rocks *db, uint16_t shard, store_snapshot_sink sink,
                         void *arg)
{
    assert(db != NULL);
    assert(sink != NULL);
    struct snap_writer w;
    memset(&w, 0, sizeof(w));
    w.shard = shard;
    w.sink = sink;
    w.arg = arg;
    rt_buf_init(&w.raw, RT_SNAPSHOT_CHUNK_BYTES); /* Allocates on first use only. */
    w.cctx = ZSTD_createCCtx();
    if (w.cctx == NULL) {
        return RT_ENOMEM;
    }
    int rv = 0;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, SNAP_ZSTD_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_contentSizeFlag, 1))) {
        RT_ERROR("snapshot of shard %u: zstd refused its parameters", (unsigned)shard);
        rv = RT_EINTERNAL;
        goto err_free_cctx;
    }
    /* Records and the applied index come from one point in time, whatever commits next. */
    const rocksdb_snapshot_t *snapshot = store_rocks_snapshot_acquire(db);
    rv = store_rocks_applied_index_at(db, snapshot, shard, &w.applied_index);
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, shard);
    for (int cf = 0; cf < RT_CF_COUNT && rv == 0; cf++) {
        w.cf = (uint8_t)cf;
        rv = store_rocks_scan_at(db, snapshot, (enum rt_cf)cf, prefix, sizeof(prefix), NULL, 0,
                                 snap_visit, &w);
    }
    if (rv == 0) {
        rv = snap_emit(&w, 1);
    }
    store_rocks_snapshot_release(db, snapshot);
    if (rv == 0) {
        RT_INFO("snapshot of shard %u at index %llu: %llu records, %u chunks, %llu bytes",
                (unsigned)shard, (unsigned long long)w.applied_index, (unsigned long long)w.records,
                (unsigned)w.chunk_no, (unsigned long long)w.stream_bytes);
    }
err_free_cctx:
    rt_buf_free(&w.raw);
    ZSTD_freeCCtx(w.cctx);
    return rv;
}

/* ---- Restoring ---- */

struct snap_record {
    uint8_t cf;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *val;
    size_t val_len;
};

struct snap_reader {
    uint16_t shard;
    uint64_t applied_index; /* From chunk 0; every chunk must agree. */
    ZSTD_DCtx *dctx;
    uint8_t *raw; /* RT_SNAPSHOT_CHUNK_BYTES: one decompressed chunk. */
    uint8_t applied_key[RT_KEY_BYTES_MAX];
    size_t applied_key_len;
    /* Validation state: the previous record's (cf, key), to check the order. */
    int prev_cf; /* -1 before the first record. */
    uint8_t prev_key[RT_STORED_KEY_BYTES_MAX];
    size_t prev_key_len;
    int applied_seen;
    uint64_t records;
};

/* Check chunk @i of @count and decompress its records into r->raw. RT_ECORRUPT (logged). */
static int snap_chunk_open(struct snap_reader *r, size_t i, size_t count, const uint8_t *chunk,
                           size_t len, size_t *raw_len)
{
    assert(r != NULL && raw_len != NULL);
    assert(i < count && (chunk != NULL || len == 0));
    const char *why = NULL;
    struct snap_header h;
    if (len < STORE_SNAPSHOT_HEADER_BYTES) {
        why = "shorter than a header";
        goto corrupt;
    }
    if (memcmp(chunk, SNAP_MAGIC, SNAP_MAGIC_BYTES) != 0) {
        why = "bad magic";
        goto corrupt;
    }
    snap_header_decode(chunk, &h);
    if (h.shard != r->shard) {
        why = "chunk of another shard";
        goto corrupt;
    }
    if ((h.flags & SNAP_FLAG_MARKER) != 0) {
        why = "a marker snapshot carries no records to restore";
        goto corrupt;
    }
    if ((h.flags & ~SNAP_FLAG_LAST) != 0) {
        why = "unknown flags";
        goto corrupt;
    }
    if (((h.flags & SNAP_FLAG_LAST) != 0) != (i + 1 == count)) {
        why = (h.flags & SNAP_FLAG_LAST) != 0 ? "last-chunk flag before the end"
                                              : "stream ends without its last chunk";
        goto corrupt;
    }
    if (h.chunk_no != i) {
        why = "chunk out of sequence";
        goto corrupt;
    }
    if (i == 0) {
        r->applied_index = h.applied_index;
    } else if (h.applied_index != r->applied_index) {
        why = "chunks disagree on the applied index";
        goto corrupt;
    }
    if (h.raw_len > RT_SNAPSHOT_CHUNK_BYTES) {
        why = "raw length over the chunk limit";
        goto corrupt;
    }
    if (h.comp_len != len - STORE_SNAPSHOT_HEADER_BYTES) {
        why = "compressed length does not match the chunk";
        goto corrupt;
    }
    const uint8_t *frame = chunk + STORE_SNAPSHOT_HEADER_BYTES;
    if (h.comp_len < SNAP_ZSTD_FRAME_MIN || memcmp(frame, snap_zstd_magic, 4) != 0 ||
        (frame[4] & SNAP_ZSTD_CHECKSUM_FLAG) == 0) {
        why = "payload is not a checksummed zstd frame";
        goto corrupt;
    }
    unsigned long long content = ZSTD_getFrameContentSize(frame, h.comp_len);
    if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN ||
        content != h.raw_len) {
        why = "frame content size does not match the raw length";
        goto corrupt;
    }
    size_t frame_len = ZSTD_findFrameCompressedSize(frame, h.comp_len);
    if (ZSTD_isError(frame_len) || frame_len != h.comp_len) {
        why = "payload is not exactly one zstd frame";
        goto corrupt;
    }
    /* Single-shot decompression into a buffer of exactly raw_len: zstd stops at that bound
     * and verifies the checksum. */
    size_t n = ZSTD_decompressDCtx(r->dctx, r->raw, h.raw_len, frame, h.comp_len);
    if (ZSTD_isError(n) || n != h.raw_len) {
        why = ZSTD_isError(n) ? ZSTD_getErrorName(n) : "decompressed size differs";
        goto corrupt;
    }
    *raw_len = h.raw_len;
    return 0;

corrupt:
    RT_ERROR("snapshot restore of shard %u: chunk %zu of %zu: %s", (unsigned)r->shard, i, count,
             why);
    return RT_ECORRUPT;
}

/* Parse the record at *pos of raw[0..raw_len). 1 with @rec filled, 0 at the end, RT_ECORRUPT
 * with *why set. Every length is checked against its limit and the bytes left. */
static int snap_record_next(const struct snap_reader *r, const uint8_t *raw, size_t raw_len,
                            size_t *pos, struct snap_record *rec, const char **why)
{
    assert(raw != NULL && pos != NULL && rec != NULL);
    assert(*pos <= raw_len && why != NULL);
    size_t left = raw_len - *pos;
    if (left == 0) {
        return 0;
    }
    const uint8_t *p = raw + *pos;
    if (left < 5) {
        *why = "record header cut short";
        return RT_ECORRUPT;
    }
    rec->cf = p[0];
    rec->key_len = rt_get_be32(p + 1);
    if (rec->cf >= RT_CF_COUNT) {
        *why = "unknown column family";
        return RT_ECORRUPT;
    }
    if (rec->key_len < RT_KEY_SHARD_BYTES || rec->key_len > RT_STORED_KEY_BYTES_MAX ||
        rec->key_len + 4 > left - 5) {
        *why = "bad key length";
        return RT_ECORRUPT;
    }
    rec->key = p + 5;
    if (rt_get_be16(rec->key) != r->shard) {
        *why = "key outside the shard";
        return RT_ECORRUPT;
    }
    rec->val_len = rt_get_be32(p + 5 + rec->key_len);
    size_t after_key = left - 9 - rec->key_len;
    if (rec->val_len > RT_STORED_VALUE_BYTES_MAX || rec->val_len > after_key) {
        *why = "bad value length";
        return RT_ECORRUPT;
    }
    rec->val = p + 9 + rec->key_len;
    *pos += SNAP_RECORD_OVERHEAD + rec->key_len + rec->val_len;
    return 1;
}

static int snap_is_applied_key(const struct snap_reader *r, const struct snap_record *rec)
{
    assert(r != NULL && rec != NULL);
    assert(r->applied_key_len > 0);
    return rec->cf == RT_CF_META && rec->key_len == r->applied_key_len &&
           memcmp(rec->key, r->applied_key, rec->key_len) == 0;
}

/* Check one record in stream order. */
static int snap_record_check(struct snap_reader *r, const struct snap_record *rec, const char **why)
{
    assert(r != NULL && rec != NULL);
    assert(why != NULL);
    if ((int)rec->cf < r->prev_cf ||
        ((int)rec->cf == r->prev_cf &&
         rt_bytes_compare(rec->key, rec->key_len, r->prev_key, r->prev_key_len) <= 0)) {
        *why = "records out of order (or duplicated)";
        return RT_ECORRUPT;
    }
    r->prev_cf = rec->cf;
    memcpy(r->prev_key, rec->key, rec->key_len);
    r->prev_key_len = rec->key_len;
    if (snap_is_applied_key(r, rec)) {
        struct rt_applied applied;
        if (rt_applied_decode(rec->val, rec->val_len, &applied) != 0 ||
            applied.index != r->applied_index) {
            *why = "applied index record disagrees with the header";
            return RT_ECORRUPT;
        }
        r->applied_seen = 1;
    }
    r->records++;
    return 0;
}

/* Pass 1: every chunk, header and record, without touching the database. */
static int snap_validate(struct snap_reader *r, const uint8_t *const *chunks, const size_t *lens,
                         size_t count)
{
    assert(r != NULL && chunks != NULL);
    assert(lens != NULL && count > 0);
    r->prev_cf = -1;
    r->prev_key_len = 0;
    r->applied_seen = 0;
    r->records = 0;
    for (size_t i = 0; i < count; i++) {
        size_t raw_len = 0;
        int rv = snap_chunk_open(r, i, count, chunks[i], lens[i], &raw_len);
        if (rv != 0) {
            return rv;
        }
        size_t pos = 0;
        struct snap_record rec;
        const char *why = NULL;
        while ((rv = snap_record_next(r, r->raw, raw_len, &pos, &rec, &why)) == 1) {
            rv = snap_record_check(r, &rec, &why);
            if (rv != 0) {
                break;
            }
        }
        if (rv != 0) {
            RT_ERROR("snapshot restore of shard %u: chunk %zu at byte %zu: %s", (unsigned)r->shard,
                     i, pos, why);
            return RT_ECORRUPT;
        }
    }
    if (!r->applied_seen && r->applied_index != 0) {
        RT_ERROR("snapshot restore of shard %u: no applied index record for index %llu",
                 (unsigned)r->shard, (unsigned long long)r->applied_index);
        return RT_ECORRUPT;
    }
    return 0;
}

/* Pass 2: the stream is known good; replace the shard. The applied index record is held
 * back and written in the last batch, so a crash part-way leaves the shard at index 0. */
static int snap_apply(struct store_rocks *db, struct snap_reader *r, rocksdb_writebatch_t *batch,
                      const uint8_t *const *chunks, const size_t *lens, size_t count)
{
    assert(db != NULL && r != NULL && batch != NULL);
    assert(chunks != NULL && lens != NULL);
    int rv = store_rocks_drop_shard(db, r->shard);
    if (rv != 0) {
        return rv;
    }
    uint8_t applied_val[RT_APPLIED_BYTES]; /* Either form (rt_store.h): as the sender had it. */
    size_t applied_len = 0;
    int applied_held = 0;
    size_t batch_bytes = 0;
    for (size_t i = 0; i < count; i++) {
        size_t raw_len = 0;
        rv = snap_chunk_open(r, i, count, chunks[i], lens[i], &raw_len);
        assert(rv == 0); /* Validated above; the caller's buffers are const. */
        if (rv != 0) {
            return rv;
        }
        size_t pos = 0;
        struct snap_record rec;
        const char *why = NULL;
        while ((rv = snap_record_next(r, r->raw, raw_len, &pos, &rec, &why)) == 1) {
            if (snap_is_applied_key(r, &rec)) {
                assert(rec.val_len <= sizeof(applied_val)); /* Checked in pass 1. */
                applied_len = rec.val_len;
                memcpy(applied_val, rec.val, applied_len);
                applied_held = 1;
                continue;
            }
            rocksdb_writebatch_put_cf(batch, store_rocks_cf(db, (enum rt_cf)rec.cf),
                                      (const char *)rec.key, rec.key_len, (const char *)rec.val,
                                      rec.val_len);
            batch_bytes += SNAP_RECORD_OVERHEAD + rec.key_len + rec.val_len;
            if (batch_bytes >= SNAP_RESTORE_BATCH_BYTES) {
                rv = store_rocks_write(db, batch, "snapshot restore");
                rocksdb_writebatch_clear(batch);
                batch_bytes = 0;
                if (rv != 0) {
                    return rv;
                }
            }
        }
        assert(rv == 0);
    }
    assert(applied_held || r->applied_index == 0);
    if (applied_held) {
        rocksdb_writebatch_put_cf(batch, store_rocks_cf(db, RT_CF_META),
                                  (const char *)r->applied_key, r->applied_key_len,
                                  (const char *)applied_val, applied_len);
    }
    rv = store_rocks_write(db, batch, "snapshot restore");
    rocksdb_writebatch_clear(batch);
    return rv;
}

int store_snapshot_restore(struct store_rocks *db, uint16_t shard, const uint8_t *const *chunks,
                           const size_t *lens, size_t count)
{
    assert(db != NULL);
    assert((chunks != NULL && lens != NULL) || count == 0);
    /* Bounded before anything else: a stream larger than any snapshot we write is not ours
     * (and the sum cannot wrap, since each step is checked against the limit). */
    uint64_t total = 0;
    int too_large = count > SNAP_CHUNKS_MAX;
    for (size_t i = 0; i < count && !too_large; i++) {
        assert(chunks[i] != NULL || lens[i] == 0);
        too_large = lens[i] > RT_SNAPSHOT_BYTES_MAX - total;
        total += too_large ? 0 : lens[i];
    }
    if (count == 0 || too_large) {
        RT_ERROR("snapshot restore of shard %u: %zu chunks, %llu bytes: not a valid stream",
                 (unsigned)shard, count, (unsigned long long)total);
        return RT_ECORRUPT;
    }
    struct snap_reader r;
    memset(&r, 0, sizeof(r));
    r.shard = shard;
    r.applied_key_len = store_rocks_applied_key(r.applied_key, shard);
    int rv = RT_ENOMEM;
    /* Everything restore needs is allocated before the shard is touched. */
    r.raw = malloc(RT_SNAPSHOT_CHUNK_BYTES);
    if (r.raw == NULL) {
        goto err;
    }
    r.dctx = ZSTD_createDCtx();
    if (r.dctx == NULL) {
        goto err_free_raw;
    }
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rv = snap_validate(&r, chunks, lens, count);
    if (rv == 0) {
        rv = snap_apply(db, &r, batch, chunks, lens, count);
    }
    if (rv == 0) {
        RT_INFO("snapshot restore of shard %u at index %llu: %llu records from %zu chunks",
                (unsigned)shard, (unsigned long long)r.applied_index, (unsigned long long)r.records,
                count);
    }
    rocksdb_writebatch_destroy(batch);
    ZSTD_freeDCtx(r.dctx);
err_free_raw:
    free(r.raw);
err:
    return rv;
}
