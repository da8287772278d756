/* cl_node: one Payraft node: its RocksDB store, one canonical/raft group per shard, the peer
 * port, links to the other nodes, and the routing of commands to shard leaders.
 *
 * Every shard is replicated on every bootstrap member (up to CL_VOTERS_MAX voters). A command
 * goes to the shard of its actor key (rt_shard_of). If this node leads the shard, the command
 * joins the shard's next batch (group commit: while CL_ENTRIES_IN_FLIGHT_MAX entries are in
 * flight commands gather, then one raft entry, bounded by RT_BATCH_COMMANDS_MAX and
 * RT_BATCH_BYTES_MAX, takes them all); otherwise it is forwarded to the leader
 * over the peer link and the reply relayed back. A shard without a known leader answers
 * UNAVAILABLE at once: the client retries with backoff, so nothing waits without bound.
 *
 * Acknowledgement (docs/raft.md): a reply is released once the entry is applied on this leader
 * and a majority of the shard's voters, this leader included, hold it on disk in the leader's
 * term (cl_durable.h). Followers report (durable index, its term), (applied index, history
 * hash) and raft's applied index each loop turn in which they change. If the leader loses its
 * term first, or the confirmation does not come within CL_ACK_TIMEOUT_MS, the reply is
 * UNAVAILABLE / TIMEOUT: the outcome is unknown and the client retries with the same
 * idempotency key. A history hash that differs from the leader's at the same index is logged
 * and counted (history_mismatches).
 *
 * The stuck-follower watchdog (docs/raft.md) runs on every leader: a voter whose raft match
 * index reached the commit index but whose reported raft applied index stayed below it, without
 * moving, for CL_STUCK_MS makes the leader transfer leadership to a healthy voter.
 *
 * Loop thread only.
 */
#ifndef CL_NODE_H
#define CL_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cl_peer.h"
#include "rt_actor.h"
#include "rt_batch.h"
#include "rt_engine.h"
#include "rt_mp.h"

/* Bootstrap members. Raft's quorum cost grows with voters; 5 tolerate two failures. */
#define CL_MEMBERS_MAX    5u
#define CL_VOTERS_MAX     5u
#define CL_ADDR_BYTES_MAX CL_PEER_ADDR_BYTES_MAX
/* A confirmed reply arrives within a few round trips; past this the outcome is unknown. */
#define CL_ACK_TIMEOUT_MS 5000u
/* A forwarded command whose reply has not come back by then is answered TIMEOUT. */
#define CL_FORWARD_TIMEOUT_MS 8000u
/* See the watchdog above. */
#define CL_STUCK_MS 5000u
/* Leaders collect due timers this often. */
#define CL_TIMER_SCAN_MS 100u
/* Followers re-send their report at least this often (leader changes, lost messages). */
#define CL_REPORT_MS 500u
/* Commands waiting on this node (local or forwarded) at once; more answer UNAVAILABLE. */
#define CL_INFLIGHT_MAX 65536u
/* Entries one group leader keeps proposed and not yet applied. More commands wait for the next
 * loop turn that has room, and go into one entry together: fewer, larger entries under load
 * (fewer disk writes and messages per command), no added wait when idle. */
#define CL_ENTRIES_IN_FLIGHT_MAX 1u
/* raft settings, justified in docs/operations.md. */
#define CL_ELECTION_TIMEOUT_MS  1000u
#define CL_HEARTBEAT_TIMEOUT_MS 100u
#define CL_SNAPSHOT_THRESHOLD   8192u
#define CL_SNAPSHOT_TRAILING    4096u
/* A follower busy with its own snapshot refuses an InstallSnapshot (RAFT_BUSY) and raft 0.15
 * sends it again only after this long (its default is 30 s: a restarted replica would lag that
 * long). Loopback or LAN moves far more than RT_SNAPSHOT_BYTES_MAX in this time. */
#define CL_INSTALL_SNAPSHOT_TIMEOUT_MS 5000u

struct cl_member {
    uint64_t id;                           /* raft id, 1.. */
    char peer_addr[CL_ADDR_BYTES_MAX + 1]; /* "host:port" */
    char api_addr[CL_ADDR_BYTES_MAX + 1];
    char http_addr[CL_ADDR_BYTES_MAX + 1];
};

struct cl_node_config {
    uint64_t node_id;
    const char *data_dir; /* Holds db/ (RocksDB), raft/<shard>/ and node.id. */
    uint64_t cluster_id;
    const uint8_t *secret; /* Cluster secret (peer authentication). */
    size_t secret_len;
    uint16_t shard_count;            /* 1..RT_SHARDS_MAX, fixed at bootstrap. */
    const struct cl_member *members; /* Bootstrap membership, including this node. */
    unsigned member_count;
    size_t cache_bytes; /* Actor-state cache; 0 = RT_CACHE_BYTES_DEFAULT. */
    /* Raft log bytes per group that trigger a snapshot (cl_fsm.h, Snapshots); 0 =
     * CL_FSM_LOG_BYTES_MAX. Smaller: less memory, more snapshots. */
    size_t snapshot_log_bytes;
    /* Raft messages whose encoding is larger go through raft_uv's own connection instead of
     * the node's link to the peer (docs/architecture.md, The cluster); 0 or more than
     * CL_LINK_MESSAGE_BYTES_MAX = CL_LINK_MESSAGE_BYTES_MAX. */
    size_t raft_link_bytes_max;
    /* Whether the owner asked malloc for transparent huge pages (payd: docs/operations.md);
     * reported by cluster.status ("memory"), nothing else changes with it here. */
    bool malloc_huge_pages;
    /* Called once if the node can no longer do its work (its raft log failed to write: every
     * group it leads stops taking writes, while it keeps sending heartbeats that stop other
     * nodes from taking over); the owner should stop the node. May be NULL. */
    void (*on_fatal)(void *arg);
    void *fatal_arg;
};

/* The outcome of a command or query; the views are valid during the call only. */
typedef void (*cl_reply_cb)(void *arg, int code, const uint8_t *body, size_t body_len,
                            const char *msg);

enum cl_read { CL_READ_LINEARIZABLE = 0, CL_READ_STALE = 1 };

/* Where a command goes. KEY (the default): the shard of the command's actor key. META: the
 * meta group (apps, the cluster map). INDEX: the actor named by secondary index entry
 * @index_key of shard @shard (an order by its order_id): resolved on the shard leader (or on
 * this replica for stale reads), then run against that actor; the command's own key is
 * ignored. */
enum cl_target_kind { CL_TARGET_KEY = 0, CL_TARGET_META = 1, CL_TARGET_INDEX = 2 };
struct cl_target {
    enum cl_target_kind kind;
    uint16_t shard;
    const uint8_t *index_key;
    size_t index_key_len;
};

struct cl_node;

/* Open the store (refusing a data dir of another cluster or node), start every group and the
 * peer port. RT_EINVAL (bad config), RT_EIO (with the reason logged: data dir, port in use). */
int cl_node_start(uv_loop_t *loop, const struct cl_node_config *config,
                  const struct rt_registry *registry, struct cl_node **out);
/* Submit a write. 0: @cb fires exactly once, later. Non-zero (RT_EINVAL, RT_EUNAVAIL when
 * stopping or too busy): @cb never fires. The command is copied. */
int cl_node_submit(struct cl_node *node, const struct rt_command *cmd, cl_reply_cb cb, void *arg);
/* Run a read-only operation: on the shard leader after a barrier (linearizable), or on this
 * replica as it stands (stale). Same callback rules as cl_node_submit. */
int cl_node_query(struct cl_node *node, const struct rt_command *cmd, enum cl_read read,
                  cl_reply_cb cb, void *arg);
/* cl_node_submit / cl_node_query with an explicit target. */
int cl_node_submit_to(struct cl_node *node, const struct cl_target *target,
                      const struct rt_command *cmd, cl_reply_cb cb, void *arg);
int cl_node_query_to(struct cl_node *node, const struct cl_target *target,
                     const struct rt_command *cmd, enum cl_read read, cl_reply_cb cb, void *arg);
/* Read the meta group on this replica, synchronously (apps' keys for request verification:
 * every node replicates the meta group). The reply is valid until the next meta apply. */
int cl_node_meta_read(struct cl_node *node, const struct rt_command *cmd, struct rt_reply *reply);

/* Where this replica of the meta group stands: its applied index and history hash. Equal
 * states mean the same entries applied (rt_engine.h, history), so what a cl_node_meta_read
 * answered holds for as long as the state is equal to the one it was read at; applying an
 * entry or installing a snapshot changes it. */
struct cl_meta_state {
    uint64_t applied_index;
    uint64_t history_hash;
};
struct cl_meta_state cl_node_meta_state(struct cl_node *node);

static inline bool cl_meta_state_equal(const struct cl_meta_state *a, const struct cl_meta_state *b)
{
    return a->applied_index == b->applied_index && a->history_hash == b->history_hash;
}

/* Append the status document (CONTRACT "GET /status": node_id, cluster_id, nodes, shards, and
 * more) to @w as one msgpack map. */
void cl_node_status(struct cl_node *node, struct rt_mp_writer *w);
uint16_t cl_node_shard_count(const struct cl_node *node);
uint64_t cl_node_id(const struct cl_node *node);
/* The leader of shard @shard as this node knows it: its id (0 if none) and API address (NULL
 * if none). The address belongs to the node and stays valid while it runs. */
uint64_t cl_node_shard_leader(struct cl_node *node, uint16_t shard, const char **api_addr);
/* Graceful stop: hand every leadership to another voter (bounded wait), close every group,
 * the links and the peer port, flush and close the store, then call @cb. Commands still
 * waiting are answered UNAVAILABLE. */
void cl_node_stop(struct cl_node *node, void (*cb)(void *arg), void *arg);

#endif /* CL_NODE_H */
