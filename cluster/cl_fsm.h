/* cl_fsm: one shard's apply engine as a canonical/raft state machine.
 *
 * apply    -> rt_engine_apply at index raft_last_applied(r) + 1 (raft 0.15 does not pass the
 *             index). The result handed to raft's apply callback is the cl_fsm itself, whose
 *             replies (cl_fsm_reply) are valid until the next entry is applied: raft calls a
 *             proposal's callback right after applying its entry, so the leader copies them
 *             out there.
 * snapshot -> a marker (store_snapshot_marker): 32 bytes naming the shard and the applied
 *             index, because the store itself holds the data (Snapshots below). Version 3
 *             FSM: snapshot_async syncs the store on a worker before raft writes the marker;
 *             snapshot_finalize frees the buffers, raft never owns them.
 * fill     -> cl_fsm_snapshot_fill, called by cl_durable (on a worker thread in a node) when
 *             raft loads its snapshot to send to a follower that is too far behind for the
 *             log: replaces the marker with the shard's full stream (store_snapshot_write,
 *             zstd chunks concatenated).
 * restore  -> store_snapshot_restore of a full stream (each chunk's header gives its length),
 *             then the engine re-reads its applied index and the node's cache is cleared.
 *             Skipped when the store already holds the snapshot's index (a restart: raft
 *             restores its last snapshot, but the store kept everything applied since, and
 *             committed history is unique). A marker is never restored: at a restart the
 *             store holds its index (it was synced first), and if it does not, the store lost
 *             synced data and the node refuses to start (RAFT_CORRUPT, logged with what to do).
 *
 * Padding: raft_uv 0.15 writes a batch of several entries with each entry's data padded to 8
 * bytes, but reads them back after a restart at unpadded offsets, so every entry after one
 * whose length is not a multiple of 8 comes back shifted (tests/integration/test_cluster.c
 * found it: a restarted replica saw garbage and diverged). Leaders therefore propose buffers
 * whose length is a multiple of 8 (CL_FSM_PAD), zero-filled after the batch, and apply strips
 * those zeros, so raft never has to pad.
 *
 * Snapshots: raft needs a snapshot to drop log entries, but every replica already keeps the
 * shard's state in RocksDB, written on every apply. Copying the whole shard out at every
 * snapshot cost time that grew with the data (a third of a loaded node's throughput once it
 * held a million orders; docs/benchmarks.md), so a snapshot is only a marker: "the store
 * holds this shard at applied index N, durably". Durably is the one obligation: the store's
 * WAL is not synced per write (store_rocks.h), so it is synced (store_rocks_sync) before raft
 * stores the marker and drops the entries up to N. Only a follower that needs an
 * InstallSnapshot gets the full data, made when it is sent (fill above). That stream is taken
 * at the leader's current applied index M >= N but travels under raft's index N: the
 * follower restores state M, and raft then re-sends entries N+1.., which the engine skips up
 * to M as already applied (the same rule as a restart). Entries up to M are committed (the
 * leader applied them), so the follower ends up exactly where the leader is.
 *
 * The trigger: canonical/raft 0.15 keeps every entry since the last snapshot (plus a trailing
 * count) in memory and triggers snapshots by entry count only. Group commit makes entries
 * anything from one command to a full batch, so a count alone bounds nothing: the FSM also
 * counts bytes, and once CL_FSM_LOG_BYTES_MAX have been applied since the last snapshot it
 * lowers raft's threshold so that the next check takes one, with the trailing entries sized so
 * that they hold about CL_FSM_TRAILING_BYTES_MAX (at least CL_FSM_TRAILING_MIN entries, so a
 * briefly lagging follower still catches up from the log). Memory per group is then about the
 * sum of the two, whatever the load.
 *
 * Entries that are not valid batches are skipped by the engine (every replica skips the same
 * ones). A storage failure during apply is fatal for the process: continuing would let this
 * replica diverge from the others, and a restart replays the raft log onto the last durable
 * state, so the node logs the error and aborts (crash-stop, as redis does on a failed write).
 */
#ifndef CL_FSM_H
#define CL_FSM_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "rt_engine.h"
#include "store_rocks.h"

struct cl_fsm_stats {
    uint64_t snapshots_taken;
    uint64_t snapshots_restored;
    uint64_t snapshots_kept; /* Not restored: the store already held that index (restart). */
    /* Written by cl_fsm_snapshot_fill, possibly on a worker: read with __atomic_load_n. */
    uint64_t snapshots_sent; /* Full streams made for followers. */
    uint64_t snapshot_bytes; /* Of the last full stream sent or restored. */
};

/* Proposal buffers are a multiple of this many bytes (see Padding above). */
#define CL_FSM_PAD 8u

/* Recent (applied index -> history hash) pairs, to compare replicas' reports against: a
 * replica's report older than this window cannot confirm anything (it is far behind). */
#define CL_FSM_HISTORY_RING 8192u

/* Snapshot byte trigger (see Snapshots above). */
#define CL_FSM_LOG_BYTES_MAX      (2u * 1024u * 1024u) /* The default of log_bytes_max. */
#define CL_FSM_TRAILING_BYTES_MAX (2u * 1024u * 1024u)
#define CL_FSM_TRAILING_MIN       64u
/* Full snapshots being made for followers at once, in the whole process (each a worker thread
 * and up to RT_SNAPSHOT_BYTES_MAX of memory). Past it a fill answers RAFT_BUSY and raft sends
 * that follower its snapshot later. */
#define CL_FSM_FILLS_MAX 2

struct cl_fsm {
    struct raft_fsm raft_fsm; /* Handed to raft_init; raft_fsm.data points back here. */
    uint64_t ring_index[CL_FSM_HISTORY_RING]; /* 0 = empty slot. */
    uint64_t ring_hash[CL_FSM_HISTORY_RING];
    struct raft *raft;      /* Bound after raft_init (cl_fsm_bind). */
    struct store_rocks *db; /* Not owned. */
    struct rt_engine engine;
    struct cl_fsm_stats stats;
    /* Since the last snapshot, for the byte trigger. */
    uint64_t log_bytes;
    uint64_t log_entries;
    uint64_t log_bytes_max;   /* CL_FSM_LOG_BYTES_MAX unless the node configures another. */
    unsigned threshold_saved; /* Raft's threshold while a byte-triggered snapshot runs, or 0. */
    unsigned trailing_max;    /* The configured trailing count (read at the first trigger). */
};

/* @config->store must be store_rocks_store(@db). RT_ENOMEM, RT_EIO. */
int cl_fsm_init(struct cl_fsm *fsm, struct store_rocks *db, const struct rt_engine_config *config);
/* Sync the store inside fsm->snapshot on the loop instead of on a worker: for raft ios
 * without async_work (raft's fixture; raft_init refuses a version 3 FSM's async snapshots on
 * those). Call before raft_init. */
void cl_fsm_snapshot_sync_inline(struct cl_fsm *fsm);
/* Tell the FSM which raft instance drives it (needed to know the index being applied). */
void cl_fsm_bind(struct cl_fsm *fsm, struct raft *raft);
void cl_fsm_close(struct cl_fsm *fsm);

/* cl_durable's fill hook (@arg is the cl_fsm): if @snapshot (as raft loaded it to send to a
 * follower) is a marker, replace its buffer with the shard's full stream at the store's
 * current applied index. 0 (a full stream is left as it is), RAFT_BUSY (CL_FSM_FILLS_MAX
 * fills already running), RAFT_NOMEM, RAFT_CORRUPT, RAFT_IOERR (logged). Costs a copy of the shard,
 * which only a follower too far behind for the log needs, so a node runs it on a worker thread: it
 * reads only the store (through a RocksDB snapshot) and the shard number, and updates stats
 * atomically. */
int cl_fsm_snapshot_fill(void *arg, struct raft_snapshot *snapshot);

/* This replica's history hash at @index, if @index is recent enough to be remembered. */
bool cl_fsm_history_at(const struct cl_fsm *fsm, uint64_t index, uint64_t *hash);

static inline uint16_t cl_fsm_shard(const struct cl_fsm *fsm)
{
    return fsm->engine.config.shard;
}

#endif /* CL_FSM_H */
