/* cl_durable: which raft log entries this replica holds on disk, for acknowledgements.
 *
 * Why: canonical/raft 0.15 can count a follower's stale entries towards a quorum
 * (docs/raft.md), so a leader must not answer a client on raft's commit alone. It answers
 * when a majority of voters prove they hold the entry. A replica proves it with
 * (durable index D, term of D): every entry up to D is on its disk, and entry D carries term T.
 * If T is the leader's current term, entry D came from this leader (one leader per term), and
 * by raft's log matching the replica's log up to D is the leader's; so it holds every entry
 * X <= D durably. That is raft's commit rule, computed from what the replicas themselves
 * wrote instead of from the leader's bookkeeping, and it needs no follower to apply anything:
 * followers' apply stays off the path of an acknowledgement.
 *
 * How: a struct raft_io that forwards every call to the real one (raft_uv in a node, the
 * fixture's in the simulation) and watches load, append, truncate and snapshot_put to keep
 * (durable index, term). Appends complete in order; an append's entries become durable in its
 * callback. A truncate or a snapshot install lowers the durable index at once and starts a new
 * generation: appends issued before it do not raise the durable index when they complete (a
 * later append of the new generation does), which can only under-report, never over-report.
 * After a failed append raft may keep or reuse indexes without telling the io, and after a
 * failed install it keeps its old log while our count moved on; either way the durable index
 * stays frozen until a truncate at or below the first uncertain index, an install or a load
 * sets the log explicitly. A frozen replica confirms nothing new: safe, but a leader whose own
 * disk write failed needs two followers' confirmations until then (its writes may time out).
 *
 * It also hosts one hook that has nothing to do with durability but sits where it must: the
 * fill hook (cl_durable_set_fill) sees every snapshot raft loads to send to a follower, and
 * may replace its data. A node's own raft snapshots are markers (cl_fsm.h, Snapshots); the
 * hook turns one into the shard's full data on its way to a follower. That can take a while,
 * so the hook runs on a worker through the real io's async_work when it has one (raft_uv),
 * and on the loop thread otherwise.
 *
 * Loop thread only, but for the fill hook. Allocates one small request per append and per
 * snapshot put or get.
 */
#ifndef CL_DURABLE_H
#define CL_DURABLE_H

#include <raft.h>
#include <stdint.h>

/* Terms of the most recent indexes, to know the term at a truncation point. */
#define CL_DURABLE_TERMS 4096u

/* Replace @snapshot's data (one buffer, raft_malloc'd) before it is sent; 0 or a RAFT_ code,
 * in which case the snapshot is freed and raft's get fails (it tries the follower again).
 * May run on a worker thread, concurrently with the loop: it must touch nothing the loop
 * writes without synchronisation. */
typedef int (*cl_durable_fill_fn)(void *arg, struct raft_snapshot *snapshot);

struct cl_durable {
    struct raft_io io;     /* Hand this to raft_init. */
    struct raft_io *inner; /* Not owned. */
    raft_index next_index; /* Index the next appended entry gets. */
    raft_index durable_index;
    raft_term durable_term; /* 0 when unknown (after a truncation to an old index). */
    uint64_t generation;    /* Bumped by truncate and snapshot install. */
    int failed;             /* An append or install failed: frozen until the log is set again... */
    raft_index failed_from; /* ...at or below this index (truncate), or by an install or load. */
    raft_index term_index[CL_DURABLE_TERMS];
    raft_term term_of[CL_DURABLE_TERMS];
    cl_durable_fill_fn fill; /* NULL: snapshots are sent as raft's io loaded them. */
    void *fill_arg;
    int closing; /* raft closed the io: snapshots still loading are dropped, not filled. */
};

/* Wrap @inner (already initialised, e.g. by raft_uv_init). */
void cl_durable_init(struct cl_durable *d, struct raft_io *inner);

/* Set (or clear, with NULL) the fill hook. */
void cl_durable_set_fill(struct cl_durable *d, cl_durable_fill_fn fill, void *arg);

/* What this replica holds on disk: every entry up to *index, the last of term *term
 * (0, 0 before the log is loaded). */
void cl_durable_get(const struct cl_durable *d, raft_index *index, raft_term *term);

/* Does a replica that reported (@index, @term) hold entry @entry of leader term @leader_term? */
static inline int cl_durable_confirms(raft_index index, raft_term term, raft_index entry,
                                      raft_term leader_term)
{
    return term == leader_term && leader_term != 0 && index >= entry;
}

/* Free a snapshot the way raft frees one it loaded (raft_io's load and snapshot_get allocate
 * it): its configuration, each buffer, the buffer array, the struct. */
void cl_durable_snapshot_free(struct raft_snapshot *snapshot);

#endif /* CL_DURABLE_H */
