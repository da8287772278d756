#include "cl_fsm.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_limits.h"
#include "rt_log.h"
#include "rt_mp.h"
#include "store_snapshot.h"

/* Fills running in this process, on any thread (CL_FSM_FILLS_MAX). */
static unsigned fsm_fills_running;

/* A full snapshot stream being gathered into one raft buffer (cl_fsm_snapshot_fill). */
struct fsm_stream {
    uint8_t *data; /* raft_malloc'd: raft frees it with the snapshot. */
    size_t len;
    size_t cap;
};

static struct cl_fsm *fsm_of(struct raft_fsm *raft_fsm)
{
    struct cl_fsm *fsm = raft_fsm->data;
    assert(fsm != NULL);
    assert(&fsm->raft_fsm == raft_fsm);
    return fsm;
}

static void fsm_remember(struct cl_fsm *fsm)
{
    uint64_t index = rt_engine_applied_index(&fsm->engine);
    unsigned slot = (unsigned)(index % CL_FSM_HISTORY_RING);
    fsm->ring_index[slot] = index;
    fsm->ring_hash[slot] = rt_engine_history_hash(&fsm->engine);
}

bool cl_fsm_history_at(const struct cl_fsm *fsm, uint64_t index, uint64_t *hash)
{
    assert(fsm != NULL && hash != NULL);
    unsigned slot = (unsigned)(index % CL_FSM_HISTORY_RING);
    if (index == 0 || fsm->ring_index[slot] != index) {
        return false;
    }
    *hash = fsm->ring_hash[slot];
    return true;
}

/* Proposals are padded with zeros to a multiple of 8 bytes (cl_fsm.h says why); strip the
 * padding (at most 7 zero bytes after the one msgpack value) so that every replica, live or
 * replaying its log after a restart, hands the engine exactly the proposed batch. */
static size_t fsm_unpadded_len(const uint8_t *data, size_t len)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    if (len == 0 || rt_mp_skip(&r) != 0 || rt_mp_remaining(&r) > 7) {
        return len; /* Not ours to judge: the engine rejects it as it is. */
    }
    size_t value_len = len - rt_mp_remaining(&r);
    for (size_t i = value_len; i < len; i++) {
        if (data[i] != 0) {
            return len;
        }
    }
    return value_len;
}

/* The byte trigger (cl_fsm.h, Snapshots): raft 0.15 counts entries only, so once the log
 * since the last snapshot holds CL_FSM_LOG_BYTES_MAX, lower raft's entry threshold to what it
 * already holds (raft checks right after this apply), and size the trailing entries kept after
 * the snapshot by bytes too (never above the configured count). fsm_snapshot_finalize puts the
 * threshold back. */
static void fsm_count_log_bytes(struct cl_fsm *fsm, uint64_t index, size_t len)
{
    struct raft *r = fsm->raft;
    fsm->log_bytes += len;
    fsm->log_entries++;
    if (fsm->log_bytes < fsm->log_bytes_max || fsm->threshold_saved != 0 ||
        index <= r->log.snapshot.last_index) {
        return;
    }
    uint64_t per_entry = fsm->log_bytes / fsm->log_entries + 1;
    uint64_t trailing_bytes = fsm->log_bytes_max / 2;
    trailing_bytes =
        trailing_bytes > CL_FSM_TRAILING_BYTES_MAX ? CL_FSM_TRAILING_BYTES_MAX : trailing_bytes;
    uint64_t trailing = trailing_bytes / per_entry;
    trailing = trailing < CL_FSM_TRAILING_MIN ? CL_FSM_TRAILING_MIN : trailing;
    if (fsm->trailing_max == 0) {
        fsm->trailing_max = r->snapshot.trailing; /* As the node configured it. */
    }
    trailing = trailing > fsm->trailing_max ? fsm->trailing_max : trailing;
    fsm->threshold_saved = r->snapshot.threshold;
    raft_set_snapshot_trailing(r, (unsigned)trailing);
    raft_set_snapshot_threshold(r, (unsigned)(index - r->log.snapshot.last_index));
}

static int fsm_apply(struct raft_fsm *raft_fsm, const struct raft_buffer *buf, void **result)
{
    struct cl_fsm *fsm = fsm_of(raft_fsm);
    assert(fsm->raft != NULL); /* cl_fsm_bind was called. */
    uint64_t index = raft_last_applied(fsm->raft) + 1;
    fsm_count_log_bytes(fsm, index, buf->len);
    size_t len = fsm_unpadded_len(buf->base, buf->len);
    /* Only a leader has clients waiting on an entry (raft fails the requests of one that
     * steps down), so a follower's handlers need not encode reply bodies. */
    fsm->engine.replies_wanted = raft_state(fsm->raft) == RAFT_LEADER;
    int rv = rt_engine_apply(&fsm->engine, index, buf->base, len); /* Tags lines with the shard. */
    rt_log_set_shard(-1);
    *result = NULL;
    fsm_remember(fsm);
    switch (rv) {
    case 0:
        *result = fsm;
        return 0;
    case RT_EDUPLICATE: /* Re-applied after a restart: already in the store. */
    case RT_EMALFORMED:
    case RT_EVERSION:
    case RT_ETOOLARGE: /* Skipped by every replica alike; the engine logged it. */
        return 0;
    default:
        RT_ERROR("shard %u: apply of index %llu failed: %s; stopping so that this replica "
                 "cannot diverge (a restart replays the raft log)",
                 (unsigned)cl_fsm_shard(fsm), (unsigned long long)index, rt_strerror(rv));
        abort();
    }
}

/* The snapshot raft keeps is a marker: the store itself holds the shard (cl_fsm.h,
 * Snapshots). Made on the loop thread; the store is synced before raft writes the marker
 * and drops log entries, by fsm_snapshot_async on a worker when raft's io has one (a node),
 * else right here (an io without workers). */
static int fsm_snapshot_untagged(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    struct cl_fsm *fsm = fsm_of(raft_fsm);
    fsm->log_bytes = 0;
    fsm->log_entries = 0;
    /* The store's applied index, not the engine's: the engine also counts entries it skipped
     * (malformed, another batch version), which write nothing, and a marker must never claim
     * more than the store holds (fsm_restore refuses to start on such a marker). */
    struct rt_applied applied;
    struct rt_store *store = fsm->engine.config.store;
    if (store->ops->applied(store, cl_fsm_shard(fsm), &applied) != 0 ||
        (fsm->raft_fsm.snapshot_async == NULL && store_rocks_sync(fsm->db) != 0)) {
        return RAFT_IOERR; /* raft tries again after a later apply. */
    }
    struct raft_buffer *buf = malloc(sizeof(*buf));
    uint8_t *marker = malloc(STORE_SNAPSHOT_HEADER_BYTES);
    if (buf == NULL || marker == NULL) {
        free(buf);
        free(marker);
        return RAFT_NOMEM;
    }
    store_snapshot_marker(cl_fsm_shard(fsm), applied.index, marker);
    buf->base = marker;
    buf->len = STORE_SNAPSHOT_HEADER_BYTES;
    *bufs = buf;
    *n_bufs = 1;
    fsm->stats.snapshots_taken++;
    /* raft drops its log up to the snapshot but for the trailing entries set now: a follower
     * whose log ends before them will need the whole shard (cluster.status: log_first_index). */
    RT_INFO("marker snapshot of shard %u at index %llu (raft index %llu), keeping %u entries "
            "before it",
            (unsigned)cl_fsm_shard(fsm), (unsigned long long)applied.index,
            (unsigned long long)raft_last_applied(fsm->raft), fsm->raft->snapshot.trailing);
    return 0;
}

/* On a worker thread, between fsm_snapshot and raft writing the marker: make everything the
 * marker claims durable. Reads nothing of the FSM but its store handle. */
static int fsm_snapshot_async(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct cl_fsm *fsm = raft_fsm->data;
    (void)bufs;
    (void)n_bufs;
    return store_rocks_sync(fsm->db) == 0 ? 0 : RAFT_IOERR;
}

static int fsm_stream_sink(void *arg, uint8_t *chunk, size_t len)
{
    struct fsm_stream *stream = arg;
    assert(chunk != NULL && len > 0);
    if (len > stream->cap - stream->len) {
        /* store_snapshot_write keeps the stream under RT_SNAPSHOT_BYTES_MAX: no overflow. */
        size_t cap = stream->cap == 0 ? 64u * 1024u : stream->cap;
        while (cap - stream->len < len) {
            cap *= 2;
        }
        uint8_t *data = raft_realloc(stream->data, cap);
        if (data == NULL) {
            return RT_ENOMEM; /* The chunk stays the writer's to free. */
        }
        stream->data = data;
        stream->cap = cap;
    }
    memcpy(stream->data + stream->len, chunk, len);
    stream->len += len;
    free(chunk);
    return 0;
}

static int fsm_fill_untagged(void *arg, struct raft_snapshot *snapshot)
{
    /* Often on a worker thread (cl_durable.h): reads only the shard number (set at init), the
     * store through a RocksDB snapshot of its own, and the snapshot raft handed over; the
     * statistics are updated atomically. */
    struct cl_fsm *fsm = arg;
    assert(fsm != NULL && snapshot != NULL);
    assert(snapshot->n_bufs == 1);
    uint16_t self = cl_fsm_shard(fsm);
    uint16_t shard;
    uint64_t marker_index;
    int marker = 0;
    if (store_snapshot_peek(snapshot->bufs[0].base, snapshot->bufs[0].len, &shard, &marker_index,
                            &marker) != 0) {
        /* raft_uv does not checksum snapshot files: a follower would store this, wipe its
         * log and fail to restore it. Send nothing. */
        RT_ERROR("shard %u: raft's snapshot file is not a snapshot stream: not sent",
                 (unsigned)self);
        return RAFT_CORRUPT;
    }
    if (!marker) {
        return 0; /* A full stream (this node installed it from a leader): send it as it is. */
    }
    if (__atomic_add_fetch(&fsm_fills_running, 1, __ATOMIC_ACQ_REL) > CL_FSM_FILLS_MAX) {
        __atomic_sub_fetch(&fsm_fills_running, 1, __ATOMIC_ACQ_REL);
        RT_INFO("shard %u: snapshot for a follower deferred: %u already being made", (unsigned)self,
                CL_FSM_FILLS_MAX);
        return RAFT_BUSY;
    }
    struct fsm_stream stream = {0};
    int rv =
        shard == self ? store_snapshot_write(fsm->db, self, fsm_stream_sink, &stream) : RT_ECORRUPT;
    __atomic_sub_fetch(&fsm_fills_running, 1, __ATOMIC_ACQ_REL);
    uint16_t stream_shard = 0;
    uint64_t stream_index = 0;
    int stream_marker = 0;
    if (rv == 0 && (store_snapshot_peek(stream.data, stream.len, &stream_shard, &stream_index,
                                        &stream_marker) != 0 ||
                    stream_index < marker_index)) {
        rv = RT_ECORRUPT;
    }
    if (rv != 0) {
        /* fsm_restore refuses a marker of another shard or ahead of the store at start, so a
         * damaged snapshot file or a failing store gets here. Sending nothing is safe. */
        RT_ERROR("shard %u: snapshot for a follower (raft's marker: shard %u, index %llu; the "
                 "store at %llu) not sent: %s",
                 (unsigned)self, (unsigned)shard, (unsigned long long)marker_index,
                 (unsigned long long)stream_index, rt_strerror(rv));
        raft_free(stream.data);
        return rv == RT_ENOMEM ? RAFT_NOMEM : rv == RT_ECORRUPT ? RAFT_CORRUPT : RAFT_IOERR;
    }
    raft_free(snapshot->bufs[0].base);
    snapshot->bufs[0].base = stream.data;
    snapshot->bufs[0].len = stream.len;
    __atomic_fetch_add(&fsm->stats.snapshots_sent, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&fsm->stats.snapshot_bytes, (uint64_t)stream.len, __ATOMIC_RELAXED);
    RT_INFO("shard %u: snapshot for a follower: raft index %llu, store at applied index %llu, "
            "%zu bytes",
            (unsigned)self, (unsigned long long)snapshot->index, (unsigned long long)stream_index,
            stream.len);
    return 0;
}

/* Version 2 and up: raft never owns the snapshot buffers; they are freed here. */
static int fsm_snapshot_finalize(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
                                 unsigned *n_bufs)
{
    struct cl_fsm *fsm = fsm_of(raft_fsm);
    /* Back to the entry-count threshold until the next byte trigger. The trailing count stays:
     * raft shifts its log after this call, with it. */
    if (fsm->threshold_saved != 0) {
        raft_set_snapshot_threshold(fsm->raft, fsm->threshold_saved);
        fsm->threshold_saved = 0;
    }
    assert(bufs != NULL && n_bufs != NULL);
    for (unsigned i = 0; i < *n_bufs; i++) {
        free((*bufs)[i].base);
    }
    free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

/* Split raft's single buffer back into chunks using each chunk's header. */
static int fsm_split_chunks(const uint8_t *data, size_t len, const uint8_t ***chunks_out,
                            size_t **lens_out, size_t *count_out)
{
    size_t count = 0, cap = 0, offset = 0;
    const uint8_t **chunks = NULL;
    size_t *lens = NULL;
    while (offset < len) {
        if (len - offset < STORE_SNAPSHOT_HEADER_BYTES) {
            goto corrupt;
        }
        /* comp_len is the last 4 header bytes (store_snapshot.h). */
        size_t comp_len = rt_get_be32(data + offset + STORE_SNAPSHOT_HEADER_BYTES - 4);
        if (comp_len > len - offset - STORE_SNAPSHOT_HEADER_BYTES) {
            goto corrupt;
        }
        if (count == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            const uint8_t **c = realloc(chunks, cap * sizeof(*c));
            if (c == NULL) {
                goto nomem;
            }
            chunks = c;
            size_t *l = realloc(lens, cap * sizeof(*l));
            if (l == NULL) {
                goto nomem;
            }
            lens = l;
        }
        chunks[count] = data + offset;
        lens[count] = STORE_SNAPSHOT_HEADER_BYTES + comp_len;
        offset += lens[count];
        count++;
    }
    *chunks_out = chunks;
    *lens_out = lens;
    *count_out = count;
    return 0;
corrupt:
    free(chunks);
    free(lens);
    return RT_ECORRUPT;
nomem:
    free(chunks);
    free(lens);
    return RT_ENOMEM;
}

static int fsm_restore_untagged(struct raft_fsm *raft_fsm, struct raft_buffer *buf)
{
    struct cl_fsm *fsm = fsm_of(raft_fsm);
    assert(buf != NULL);
    /* At startup raft restores its last snapshot and replays the entries after it. A node's
     * own snapshots are markers, synced before raft dropped any entry, so the store holds at
     * least their index. A full stream (installed from a leader) is restored unless the store
     * already holds its index too: the store is written on every apply, so after a restart it
     * is usually ahead, and a restore would only drop newer data for raft to re-apply. Either
     * way the engine skips the replayed entries it already holds. */
    uint16_t shard;
    uint64_t snapshot_index, held = rt_engine_applied_index(&fsm->engine);
    int marker = 0;
    int peeked = store_snapshot_peek(buf->base, buf->len, &shard, &snapshot_index, &marker) == 0 &&
                 shard == cl_fsm_shard(fsm);
    if (peeked && marker && snapshot_index > held) {
        RT_ERROR("shard %u: raft's snapshot says the store holds index %llu, but it holds "
                 "%llu: the store lost synced writes (a disk or filesystem fault, or a store "
                 "directory from elsewhere), and the raft log no longer has them. This replica "
                 "cannot repair itself: stop it, remove its data directory and start it again "
                 "so that it fetches the shard from the leader",
                 (unsigned)shard, (unsigned long long)snapshot_index, (unsigned long long)held);
        return RAFT_CORRUPT;
    }
    if (peeked && snapshot_index <= held && (marker || snapshot_index > 0)) {
        RT_INFO("shard %u: snapshot at index %llu not restored: the store already holds index "
                "%llu",
                (unsigned)shard, (unsigned long long)snapshot_index, (unsigned long long)held);
        fsm->stats.snapshots_kept++;
        raft_free(buf->base);
        return 0;
    }
    const uint8_t **chunks = NULL;
    size_t *lens = NULL;
    size_t count = 0;
    int rv = fsm_split_chunks(buf->base, buf->len, &chunks, &lens, &count);
    if (rv == 0) {
        rv = store_snapshot_restore(fsm->db, cl_fsm_shard(fsm), chunks, lens, count);
    }
    free(chunks);
    free(lens);
    if (rv == 0) {
        rv = rt_engine_reload(&fsm->engine);
    }
    if (fsm->engine.config.cache != NULL) {
        rt_cache_clear(fsm->engine.config.cache); /* It may hold the replaced data. */
    }
    if (rv != 0) {
        RT_ERROR("snapshot restore failed: %s", rt_strerror(rv));
        return rv == RT_ENOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
    }
    /* The old history is gone with the old data. */
    memset(fsm->ring_index, 0, sizeof(fsm->ring_index));
    fsm_remember(fsm);
    fsm->stats.snapshots_restored++;
    __atomic_store_n(&fsm->stats.snapshot_bytes, (uint64_t)buf->len, __ATOMIC_RELAXED);
    RT_INFO("shard %u: snapshot restored: applied index %llu, %zu bytes",
            (unsigned)cl_fsm_shard(fsm), (unsigned long long)rt_engine_applied_index(&fsm->engine),
            (size_t)buf->len);
    raft_free(buf->base); /* On success the FSM owns the restored buffer. */
    return 0;
}

/* The lines an FSM callback logs carry its shard (rt_log.h: the tag is per thread, and a fill
 * runs on a worker); the loop's other lines carry none rather than the shard it last served. */
static int fsm_snapshot(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    rt_log_set_shard(cl_fsm_shard(fsm_of(raft_fsm)));
    int rv = fsm_snapshot_untagged(raft_fsm, bufs, n_bufs);
    rt_log_set_shard(-1);
    return rv;
}

int cl_fsm_snapshot_fill(void *arg, struct raft_snapshot *snapshot)
{
    rt_log_set_shard(cl_fsm_shard(arg));
    int rv = fsm_fill_untagged(arg, snapshot);
    rt_log_set_shard(-1);
    return rv;
}

static int fsm_restore(struct raft_fsm *raft_fsm, struct raft_buffer *buf)
{
    rt_log_set_shard(cl_fsm_shard(fsm_of(raft_fsm)));
    int rv = fsm_restore_untagged(raft_fsm, buf);
    rt_log_set_shard(-1);
    return rv;
}

int cl_fsm_init(struct cl_fsm *fsm, struct store_rocks *db, const struct rt_engine_config *config)
{
    assert(fsm != NULL && db != NULL && config != NULL);
    assert(config->store == store_rocks_store(db));
    memset(fsm, 0, sizeof(*fsm));
    fsm->db = db;
    fsm->log_bytes_max = CL_FSM_LOG_BYTES_MAX;
    int rv = rt_engine_init(&fsm->engine, config);
    if (rv != 0) {
        return rv;
    }
    fsm->raft_fsm.version = 3;
    fsm->raft_fsm.data = fsm;
    fsm->raft_fsm.apply = fsm_apply;
    fsm->raft_fsm.snapshot = fsm_snapshot;
    fsm->raft_fsm.restore = fsm_restore;
    fsm->raft_fsm.snapshot_finalize = fsm_snapshot_finalize;
    fsm->raft_fsm.snapshot_async = fsm_snapshot_async;
    fsm_remember(fsm);
    return 0;
}

void cl_fsm_snapshot_sync_inline(struct cl_fsm *fsm)
{
    assert(fsm != NULL && fsm->raft == NULL);
    fsm->raft_fsm.snapshot_async = NULL;
}

void cl_fsm_bind(struct cl_fsm *fsm, struct raft *raft)
{
    assert(fsm != NULL && raft != NULL);
    assert(fsm->raft == NULL || fsm->raft == raft);
    fsm->raft = raft;
}

void cl_fsm_close(struct cl_fsm *fsm)
{
    assert(fsm != NULL);
    rt_engine_free(&fsm->engine);
    fsm->raft = NULL;
}
