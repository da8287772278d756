/* cl_node: groups, batching, acknowledgement, forwarding, reports, watchdog, timers.
 * The contract and the reasons are in cl_node.h and docs/raft.md. */
#include "cl_node.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "act_cluster.h"
#include "act_registry.h"
#include "cl_durable.h"
#include "cl_fsm.h"
#include "cl_link.h"
#include "cl_raftlog.h"
#include "cl_raftwire.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_log.h"
#include "store_rocks.h"

/* Link message types (persistent wire format between nodes of one version). */
enum {
    MSG_REQUEST = 1, /* [1, req_id, kind, actor_type, op, key, args, target_kind, shard,
                        index_key | nil] */
    MSG_REPLY = 2,   /* [2, req_id, code, body, msg] */
    MSG_REPORT = 3,  /* [3, shard, applied_index, history_hash, durable_index, durable_term,
                        raft_applied] */
    MSG_RAFT = 4,    /* [4, shard, raft message (cl_raftwire.h)] */
};
enum { KIND_WRITE = 0, KIND_READ_LINEARIZABLE = 1, KIND_READ_STALE = 2 };

#define NODE_TICK_MS          10u
#define NODE_RECONNECT_MS     500u
#define NODE_STOP_TRANSFER_MS 2000u
#define NODE_FORWARDS_SLOTS   131072u /* Power of two, > 2 x CL_INFLIGHT_MAX. */
#define NODE_TIMERS_PER_ENTRY 256u    /* Timer handlers one entry runs (collect_due_timers). */
#define NODE_EXPIRY_SCAN_MS   250u
/* How long raft hears of its io's close after raft_uv reports it (group_io_closed). */
#define NODE_IO_CLOSE_GRACE_MS      50u
#define NODE_MEMTABLE_STAGGER_BYTES (2u * 1024u * 1024u) /* A step of node_memtable_stagger. */

struct waiter {
    cl_reply_cb cb;
    void *arg;
};

struct group;

/* One raft entry proposed by this leader. */
struct proposal {
    struct raft_apply req;
    struct group *group;
    bool timers; /* A due-timer batch: no waiters. */
    uint32_t count;
    struct waiter waiters[];
};

struct reply_rec {
    int code;
    uint32_t body_off, body_len, msg_off;
};

/* Applied on this leader, waiting until a majority holds the entry on disk (cl_durable.h). */
struct pending_ack {
    struct pending_ack *next;
    uint64_t index;
    raft_term term;
    uint64_t deadline_ms;
    uint32_t count;
    struct waiter *waiters; /* Points into the same allocation. */
    struct reply_rec *recs; /* Likewise. */
    uint8_t *blob;          /* Bodies and messages. */
};

/* A linearizable read waiting for its barrier, then run on this leader. */
struct read_req {
    struct read_req *next;
    struct waiter waiter;
    struct rt_command cmd; /* key/args point into bytes. */
    uint8_t bytes[];
};

/* One raft barrier for the linearizable reads that arrived before it was proposed. */
struct read_barrier {
    struct raft_barrier req;
    struct group *group;
    struct read_req *reads;
};

struct group {
    struct cl_node *node;
    uint16_t shard;    /* Index in node->groups: a shard, or shard_count for the meta group. */
    uint32_t group_id; /* On the peer port: the shard id, or CL_PEER_GROUP_META. */
    char dir[PATH_MAX + 32];
    struct raft raft;
    /* raft_uv's, with send, start and close replaced (Raft messages on the links), and load,
     * append, truncate and snapshot_put going through the node's log (cl_raftlog.h). */
    struct raft_io io;
    struct raft_uv_transport transport;
    /* raft_uv's own methods that ours wrap: send for what the links cannot carry, load and
     * snapshot_put for the term, vote and snapshots (group_io_hook). */
    int (*uv_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
                   raft_io_send_cb cb);
    int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    void (*uv_close)(struct raft_io *io, raft_io_close_cb cb);
    int (*uv_load)(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry *entries[], size_t *n_entries);
    int (*uv_snapshot_put)(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb);
    /* The snapshot put in flight (raft has at most one per group). */
    struct raft_io_snapshot_put snapshot_put_inner;  /* What raft_uv sees. */
    struct raft_io_snapshot_put *snapshot_put_outer; /* raft's. */
    raft_index snapshot_put_index;
    unsigned snapshot_put_trailing;
    raft_io_recv_cb recv;           /* raft's, between start and close: where link messages go. */
    raft_io_close_cb raft_close_cb; /* Until called, NODE_IO_CLOSE_GRACE_MS after ... */
    uint64_t io_close_reported_ms;  /* ...raft_uv first reported its close (0: not yet). */
    struct cl_fsm fsm;
    bool started;
    bool closed;
    /* Group commit. */
    struct rt_batch_builder builder;
    struct waiter *batch_waiters; /* RT_BATCH_COMMANDS_MAX */
    uint32_t batch_count;
    bool batch_open;
    uint32_t entries_in_flight; /* Proposed and not yet applied here (CL_ENTRIES_IN_FLIGHT_MAX). */
    /* Linearizable reads: those waiting for the next barrier (group_read_flush), and whether
     * a barrier is in flight (one at a time, as entries: load makes barriers serve more). */
    struct read_req *reads_head, *reads_tail;
    bool read_barrier_in_flight;
    /* Acknowledgement. */
    struct pending_ack *acks_head, *acks_tail;
    struct cl_durable durable; /* Wraps io: what this replica holds on disk (cl_durable.h). */
    /* What each member reported (indexed like node->config.members). */
    uint64_t report_applied[CL_MEMBERS_MAX];
    uint64_t report_hash[CL_MEMBERS_MAX];
    uint64_t report_ms[CL_MEMBERS_MAX];
    uint64_t report_raft_applied[CL_MEMBERS_MAX]; /* Raft's count: with config entries. */
    uint64_t report_durable_index[CL_MEMBERS_MAX];
    uint64_t report_durable_term[CL_MEMBERS_MAX];
    uint64_t history_mismatches; /* Reports whose history hash differed from ours. */
    uint64_t stuck_since_ms[CL_MEMBERS_MAX];
    uint64_t stuck_applied[CL_MEMBERS_MAX]; /* Its raft applied index when that began. */
    struct raft_transfer transfer;
    bool transferring;
    /* Follower side: what this node last reported, to whom. */
    uint64_t reported_applied;
    uint64_t reported_durable;
    uint64_t reported_raft_applied;
    uint64_t reported_leader;
    uint64_t reported_ms;
    uint64_t logged_leader; /* The leader last logged (group_log_leader); 0: none known. */
    /* Leader side. */
    bool timers_in_flight;
    struct rt_batch_builder timer_builder;
    uint64_t acked_commands;
};

struct forward {
    uint64_t req_id; /* 0 = free slot */
    struct waiter waiter;
    uint64_t deadline_ms;
};

/* A request that came from another node, answered over our link to it. */
struct remote_req {
    struct cl_node *node;
    unsigned member;
    uint64_t req_id;
};

struct out_link {
    struct cl_link *link;
    struct cl_peer_connect connect;
    bool connecting;
    uint64_t next_try_ms;
};

/* A raft send whose message left on a link (or could not): raft hears of it from the loop,
 * never inside its own send call. */
struct raft_sent {
    struct raft_io_send *req;
    int status;
};

/* Linearizable reads and the barriers that served them (cluster.status "reads"). */
struct read_stats {
    uint64_t linearizable; /* Answered after their barrier (OK or not). */
    uint64_t barriers;     /* Proposed for them. */
    uint64_t failed;       /* Answered UNAVAILABLE: leadership lost before the barrier. */
};

/* How raft messages travelled (cluster.status "raft_messages"). */
struct raft_message_stats {
    uint64_t sent_on_links;
    uint64_t sent_by_raft_uv; /* Too large for a link, or to a node not in the member list. */
    uint64_t send_failures;   /* No link to the peer, or its queue was full. */
    uint64_t received;
    uint64_t dropped; /* For a group that is not running, or no memory to decode. */
};

struct deferred {
    struct deferred *next;
    struct waiter waiter;
    int code;
    size_t body_len;
    char msg[160];
    uint8_t body[];
};

struct cl_node {
    uv_loop_t *loop;
    struct cl_node_config config;
    struct cl_member members[CL_MEMBERS_MAX];
    unsigned self; /* Index of this node in members. */
    char data_dir[PATH_MAX];
    uint8_t secret[CL_PEER_SECRET_BYTES_MAX];
    const struct rt_registry *registry;
    struct rt_clock clock;
    struct store_rocks *db;
    struct store_rocks *meta_db; /* The meta group's own store: its keys never mix with shards'. */
    struct cl_raftlog *raftlog;  /* Every group's raft log (cl_raftlog.h). */
    bool map_ready;              /* The cluster map is initialised in the meta group. */
    bool map_init_in_flight;
    struct rt_cache cache;
    /* The meta group's states (apps, the cluster map): every request reads its app's keys, so
     * they are kept in memory rather than read from meta-db each time. Few and small. */
    struct rt_cache meta_cache;
    struct cl_peer *peer;
    struct group *groups;
    uint16_t groups_started;
    struct out_link out[CL_MEMBERS_MAX];
    struct cl_link *in[CL_MEMBERS_MAX * 4];
    struct forward *forwards;
    uint32_t forwards_count; /* Occupied slots of forwards. */
    uint64_t last_expiry_ms; /* When forwards were last scanned for timeouts. */
    uint64_t next_req_id;
    unsigned inflight;
    struct deferred *deferred_head, *deferred_tail;
    struct cl_flusher flusher; /* Writes of every link leave once per loop turn. */
    uv_check_t check;
    uv_idle_t idle;
    uv_timer_t tick;
    uint64_t last_timer_scan_ms;
    struct rt_buf msg;      /* Scratch for encoding link messages. */
    struct rt_buf raft_msg; /* The same for raft's messages, which raft may send at any time. */
    struct raft_sent *sent; /* Completed raft sends whose callbacks are due. */
    size_t sent_count, sent_cap;
    struct raft_message_stats raft_stats;
    struct read_stats read_stats;
    uint64_t forwarded; /* Requests sent on to a shard's leader (cluster.status "forwarded"). */
    /* Stopping. */
    bool stopping;
    unsigned stop_pending; /* Transfers or closes not yet done. */
    uv_timer_t stop_timer;
    unsigned handles_open;
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

static uint64_t node_now(struct cl_node *node)
{
    return rt_clock_now_ms(&node->clock);
}

static unsigned node_member_index(const struct cl_node *node, uint64_t id)
{
    for (unsigned i = 0; i < node->config.member_count; i++) {
        if (node->members[i].id == id) {
            return i;
        }
    }
    return CL_MEMBERS_MAX;
}

/* ---- Deferred completions: callbacks never run inside submit/query ---- */

static void node_idle_cb(uv_idle_t *idle);

static void node_defer(struct cl_node *node, struct waiter w, int code, const uint8_t *body,
                       size_t body_len, const char *msg)
{
    struct deferred *d = malloc(sizeof(*d) + body_len);
    if (d == NULL) {
        /* Out of memory: answer now rather than never. */
        w.cb(w.arg, RT_ENOMEM, NULL, 0, "out of memory");
        return;
    }
    d->next = NULL;
    d->waiter = w;
    d->code = code;
    d->body_len = body_len;
    if (body_len > 0) {
        memcpy(d->body, body, body_len);
    }
    snprintf(d->msg, sizeof(d->msg), "%s", msg != NULL ? msg : "");
    if (node->deferred_tail != NULL) {
        node->deferred_tail->next = d;
    } else {
        node->deferred_head = d;
        uv_idle_start(&node->idle, node_idle_cb); /* The loop must turn to deliver it. */
    }
    node->deferred_tail = d;
}

static void node_run_deferred(struct cl_node *node)
{
    while (node->deferred_head != NULL) {
        struct deferred *d = node->deferred_head;
        node->deferred_head = d->next;
        if (node->deferred_head == NULL) {
            node->deferred_tail = NULL;
        }
        d->waiter.cb(d->waiter.arg, d->code, d->body, d->body_len, d->msg);
        free(d);
    }
}

static void waiter_done(struct cl_node *node, struct waiter w, int code, const uint8_t *body,
                        size_t body_len, const char *msg)
{
    assert(node->inflight > 0);
    node->inflight--;
    w.cb(w.arg, code, body, body_len, msg);
}

/* ---- Links ---- */

static void node_on_message(struct cl_link *link, const uint8_t *msg, size_t len);

static void in_link_closed(struct cl_link *link)
{
    struct cl_node *node = cl_link_data(link);
    for (unsigned i = 0; i < sizeof(node->in) / sizeof(node->in[0]); i++) {
        if (node->in[i] == link) {
            node->in[i] = NULL;
        }
    }
}

static void node_on_forward_stream(void *arg, uint64_t node_id, uv_stream_t *stream)
{
    struct cl_node *node = arg;
    unsigned slot = 0;
    while (slot < sizeof(node->in) / sizeof(node->in[0]) && node->in[slot] != NULL) {
        slot++;
    }
    if (node->stopping || slot == sizeof(node->in) / sizeof(node->in[0]) ||
        node_member_index(node, node_id) == CL_MEMBERS_MAX) {
        RT_WARN("refusing a link from node %llu", (unsigned long long)node_id);
        struct cl_link *link;
        if (cl_link_open(stream, &node->flusher, node_id, node_on_message, NULL, node, &link) ==
            0) {
            cl_link_close(link);
        }
        return;
    }
    if (cl_link_open(stream, &node->flusher, node_id, node_on_message, in_link_closed, node,
                     &node->in[slot]) != 0) {
        node->in[slot] = NULL;
    }
}

static void out_link_closed(struct cl_link *link)
{
    struct cl_node *node = cl_link_data(link);
    unsigned m = node_member_index(node, cl_link_remote(link));
    if (m < CL_MEMBERS_MAX && node->out[m].link == link) {
        node->out[m].link = NULL;
        node->out[m].next_try_ms = node_now(node) + NODE_RECONNECT_MS;
    }
}

static void out_connect_cb(struct cl_peer_connect *req, uv_stream_t *stream, int status)
{
    struct cl_node *node = req->data;
    unsigned m = CL_MEMBERS_MAX;
    for (unsigned i = 0; i < CL_MEMBERS_MAX; i++) {
        if (&node->out[i].connect == req) {
            m = i;
        }
    }
    assert(m < CL_MEMBERS_MAX);
    struct out_link *out = &node->out[m];
    out->connecting = false;
    if (status != 0 || node->stopping) {
        if (stream != NULL) {
            struct cl_link *link;
            if (cl_link_open(stream, &node->flusher, node->members[m].id, node_on_message, NULL,
                             node, &link) == 0) {
                cl_link_close(link);
            }
        }
        out->next_try_ms = node_now(node) + NODE_RECONNECT_MS;
        return;
    }
    if (cl_link_open(stream, &node->flusher, node->members[m].id, node_on_message, out_link_closed,
                     node, &out->link) != 0) {
        out->link = NULL;
        out->next_try_ms = node_now(node) + NODE_RECONNECT_MS;
    } else {
        RT_INFO("link to node %llu up", (unsigned long long)node->members[m].id);
    }
}

static void node_maintain_links(struct cl_node *node)
{
    uint64_t now = node_now(node);
    for (unsigned m = 0; m < node->config.member_count; m++) {
        struct out_link *out = &node->out[m];
        if (m == node->self || out->link != NULL || out->connecting || now < out->next_try_ms) {
            continue;
        }
        out->connect.data = node;
        int rv = cl_peer_connect_forward(node->peer, &out->connect, node->members[m].id,
                                         node->members[m].peer_addr, out_connect_cb);
        if (rv == 0) {
            out->connecting = true;
        } else {
            out->next_try_ms = now + NODE_RECONNECT_MS;
        }
    }
}

/* The link to member @m: the one this node opened, or while that one is down (the peer
 * restarted, and we reconnect only every NODE_RECONNECT_MS) one the peer opened to us, which
 * carries messages both ways. NULL if there is none. */
static struct cl_link *node_link_to(struct cl_node *node, unsigned m)
{
    if (node->out[m].link != NULL) {
        return node->out[m].link;
    }
    for (unsigned i = 0; i < sizeof(node->in) / sizeof(node->in[0]); i++) {
        if (node->in[i] != NULL && cl_link_remote(node->in[i]) == node->members[m].id) {
            return node->in[i];
        }
    }
    return NULL;
}

/* Send the message encoded in node->msg to member @m. */
static int node_send(struct cl_node *node, unsigned m)
{
    assert(m < node->config.member_count);
    struct cl_link *link = node_link_to(node, m);
    if (link == NULL) {
        return RT_EUNAVAIL;
    }
    return cl_link_send(link, node->msg.data, node->msg.len);
}

static struct rt_mp_writer node_msg_begin(struct cl_node *node)
{
    rt_buf_reset(&node->msg);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &node->msg);
    return w;
}

/* ---- Raft messages on the links ----
 *
 * raft_uv would open a connection per group to every peer and read each message in two or
 * three syscalls; instead a group's raft_io sends on the node's one link per peer, where
 * every group's messages of a loop turn leave in one write (cl_raftwire.h,
 * docs/architecture.md).
 * Of raft_uv's transport side only send, start (to learn raft's receive callback) and close
 * (to finish our sends first) are ours; its log side is the next section's. A message that does not
 * fit on a link (a large snapshot, a long catch-up) or goes to a node outside the member list
 * still goes through raft_uv's own transport. */

static struct group *group_of_io(struct raft_io *io)
{
    return (struct group *)((char *)io - offsetof(struct group, io));
}

static void raft_sent_push(struct cl_node *node, struct raft_io_send *req, int status)
{
    if (node->sent_count == node->sent_cap) {
        size_t cap = node->sent_cap != 0 ? 2 * node->sent_cap : 64;
        struct raft_sent *grown = realloc(node->sent, cap * sizeof(*grown));
        if (grown == NULL) {
            /* Out of memory: tell raft now rather than never (its callbacks tolerate it). */
            if (req->cb != NULL) {
                req->cb(req, status);
            }
            return;
        }
        node->sent = grown;
        node->sent_cap = cap;
    }
    node->sent[node->sent_count++] = (struct raft_sent){req, status};
    uv_idle_start(&node->idle, node_idle_cb); /* Due in this loop turn, even if it is idle. */
}

/* Call the callbacks of the completed sends. A callback may send again; what it sends is due
 * in a later call. */
static void raft_sent_run(struct cl_node *node)
{
    size_t due = node->sent_count;
    for (size_t i = 0; i < due; i++) {
        struct raft_sent s = node->sent[i];
        if (s.req->cb != NULL) {        /* raft sends some messages without a callback. */
            s.req->cb(s.req, s.status); /* May append to node->sent (and move it). */
        }
    }
    size_t later = node->sent_count - due; /* Pushed by the callbacks above. */
    if (later > 0) {
        memmove(node->sent, node->sent + due, later * sizeof(*node->sent));
    }
    node->sent_count = later;
}

static int group_io_send(struct raft_io *io, struct raft_io_send *req,
                         const struct raft_message *msg, raft_io_send_cb cb)
{
    struct group *g = group_of_io(io);
    struct cl_node *node = g->node;
    unsigned m = node_member_index(node, msg->server_id);
    if (m == CL_MEMBERS_MAX || m == node->self) {
        node->raft_stats.sent_by_raft_uv++;
        return g->uv_send(io, req, msg, cb);
    }
    rt_buf_reset(&node->raft_msg);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &node->raft_msg);
    rt_mp_write_array(&w, 3);
    rt_mp_write_uint(&w, MSG_RAFT);
    rt_mp_write_uint(&w, g->shard);
    if (cl_raftwire_encode(&w, msg) != 0 || rt_mp_writer_error(&w) != 0 ||
        node->raft_msg.len > node->config.raft_link_bytes_max) {
        node->raft_stats.sent_by_raft_uv++;
        return g->uv_send(io, req, msg, cb);
    }
    req->cb = cb;
    int status = 0;
    struct cl_link *link = node_link_to(node, m);
    if (link == NULL || cl_link_send(link, node->raft_msg.data, node->raft_msg.len) != 0) {
        status = RAFT_NOCONNECTION; /* raft treats it as a lost message, as raft_uv's would be. */
        node->raft_stats.send_failures++;
    } else {
        node->raft_stats.sent_on_links++;
    }
    raft_sent_push(node, req, status);
    return 0;
}

static int group_io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                          raft_io_recv_cb recv)
{
    struct group *g = group_of_io(io);
    g->recv = recv;
    return g->uv_start(io, msecs, tick, recv);
}

/* raft_uv 0.15 may report its close twice. Its close callback fires once every handle it
 * tracks is closed, but it does not track the writer of the open log segment it finalizes on
 * close, whose close callback checks again and fires it a second time. Handed straight to
 * raft, the first report frees raft's log and lets us free raft_uv's memory, which the second
 * report then reads (a crash at shutdown, seen in the kernel log as a segfault in libraft).
 * So raft hears of the close from the tick, NODE_IO_CLOSE_GRACE_MS after the first report;
 * the writer's close needs one loop turn, and a repeated report finds the time already noted.
 * Timed by the loop's monotonic clock (uv_now: milliseconds since boot, never 0 here). */
static void group_io_closed(struct raft_io *io)
{
    struct group *g = group_of_io(io);
    if (g->io_close_reported_ms == 0) {
        g->io_close_reported_ms = uv_now(g->node->loop);
    }
}

/* From the tick: tell raft of the closes that have had their grace, once the node's raft log
 * holds no append of the group (raft frees its log in the close callback: an append callback
 * after it would find it gone). */
static void node_deliver_io_closes(struct cl_node *node, uint64_t now)
{
    for (uint16_t s = 0; s < node->groups_started; s++) {
        struct group *g = &node->groups[s];
        if (g->raft_close_cb != NULL && g->io_close_reported_ms != 0 &&
            now - g->io_close_reported_ms >= NODE_IO_CLOSE_GRACE_MS &&
            cl_raftlog_outstanding(node->raftlog, s) == 0) {
            raft_io_close_cb cb = g->raft_close_cb;
            g->raft_close_cb = NULL;
            cb(&g->io); /* raft's: ends in group_closed_cb. */
        }
    }
}

static void group_io_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct group *g = group_of_io(io);
    g->recv = NULL;         /* Nothing more reaches raft from the links. */
    raft_sent_run(g->node); /* Every completed send, this group's among them. */
    g->raft_close_cb = cb;
    g->uv_close(io, group_io_closed);
}

/* ---- The raft log: one per node (cl_raftlog.h) ---- */

/* Fail-stop: a node whose log cannot write would keep its leaderships (its heartbeats go on)
 * while refusing every write. Its owner stops it, handing the leaderships over. */
static void node_raftlog_failed(void *arg)
{
    struct cl_node *node = arg;
    RT_ERROR("raft log write failed: this node must stop (restart it once its disk is fixed)");
    if (node->config.on_fatal != NULL) {
        node->config.on_fatal(node->config.fatal_arg);
    }
}

/* raft_uv loads the term, the vote and the snapshot; the node's log has the entries. */
static int group_io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                         struct raft_snapshot **snapshot, raft_index *start_index,
                         struct raft_entry *entries[], size_t *n_entries)
{
    struct group *g = group_of_io(io);
    int rv = g->uv_load(io, term, voted_for, snapshot, start_index, entries, n_entries);
    if (rv != 0) {
        return rv;
    }
    rv = cl_raftlog_load(g->node->raftlog, g->shard, *snapshot, start_index, entries, n_entries);
    if (rv != 0 && *snapshot != NULL) {
        cl_durable_snapshot_free(*snapshot);
        *snapshot = NULL;
    }
    return rv;
}

static int group_io_append(struct raft_io *io, struct raft_io_append *req,
                           const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    struct group *g = group_of_io(io);
    return cl_raftlog_append(g->node->raftlog, g->shard, req, entries, n, cb);
}

static int group_io_truncate(struct raft_io *io, raft_index index)
{
    struct group *g = group_of_io(io);
    cl_raftlog_truncate(g->node->raftlog, g->shard, index);
    return 0;
}

/* raft_uv stores the snapshot; once it is durable, the log lets go of what it covers. */
static void group_snapshot_put_cb(struct raft_io_snapshot_put *inner, int status)
{
    struct group *g = inner->data;
    if (g->snapshot_put_trailing == 0) { /* Installed from the leader: the log restarts. */
        cl_raftlog_install_end(g->node->raftlog, g->shard, status);
    } else if (status == 0 && g->snapshot_put_index > g->snapshot_put_trailing) {
        cl_raftlog_forget(g->node->raftlog, g->shard,
                          g->snapshot_put_index - g->snapshot_put_trailing + 1);
    }
    struct raft_io_snapshot_put *req = g->snapshot_put_outer;
    g->snapshot_put_outer = NULL;
    req->cb(req, status);
}

static int group_io_snapshot_put(struct raft_io *io, unsigned trailing,
                                 struct raft_io_snapshot_put *req,
                                 const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct group *g = group_of_io(io);
    assert(g->snapshot_put_outer == NULL); /* raft puts one snapshot at a time. */
    req->cb = cb;
    g->snapshot_put_outer = req;
    g->snapshot_put_index = snapshot->index;
    g->snapshot_put_trailing = trailing;
    g->snapshot_put_inner.data = g;
    if (trailing == 0) {
        /* raft has dropped its log already, and may append (as a leader elected meanwhile)
         * before the snapshot is durable: those appends wait in the log (cl_raftlog.h). */
        cl_raftlog_install_begin(g->node->raftlog, g->shard, snapshot->index + 1);
    }
    int rv =
        g->uv_snapshot_put(io, trailing, &g->snapshot_put_inner, snapshot, group_snapshot_put_cb);
    if (rv != 0) {
        g->snapshot_put_outer = NULL;
        if (trailing == 0) {
            cl_raftlog_install_end(g->node->raftlog, g->shard, rv);
        }
    }
    return rv;
}

/* Take over raft_uv's send, start and close (raft messages on the links), and its load,
 * append, truncate and snapshot_put (the node's log), in g->io, which raft_uv_init has filled
 * in. raft_uv keeps the term and vote, the snapshots, the clock and the large messages. */
static void group_io_hook(struct group *g)
{
    g->uv_send = g->io.send;
    g->uv_start = g->io.start;
    g->uv_close = g->io.close;
    g->uv_load = g->io.load;
    g->uv_snapshot_put = g->io.snapshot_put;
    g->io.send = group_io_send;
    g->io.start = group_io_start;
    g->io.close = group_io_close;
    g->io.load = group_io_load;
    g->io.append = group_io_append;
    g->io.truncate = group_io_truncate;
    g->io.snapshot_put = group_io_snapshot_put;
}

/* A raft message from member @member: hand it to its group's raft. */
static int node_on_raft(struct cl_node *node, unsigned member, struct rt_mp_reader *r)
{
    uint64_t shard;
    struct raft_message msg;
    if (rt_mp_read_uint(r, &shard) != 0 || shard > node->config.shard_count) {
        return RT_EMALFORMED;
    }
    int rv = cl_raftwire_decode(r, &msg);
    if (rv == RT_ENOMEM) {
        node->raft_stats.dropped++; /* Lost, as far as raft can tell: it sends again. */
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    struct group *g = &node->groups[shard];
    if (shard >= node->groups_started || !g->started || g->closed || g->recv == NULL) {
        node->raft_stats.dropped++;
        cl_raftwire_release(&msg);
        return 0;
    }
    node->raft_stats.received++;
    msg.server_id = node->members[member].id;
    msg.server_address = node->members[member].peer_addr;
    g->recv(&g->io, &msg); /* raft owns what the message holds from here. */
    return 0;
}

/* ---- Forwarded requests (this node waits for another's reply) ---- */

static struct forward *forward_slot(struct cl_node *node, uint64_t req_id, bool insert)
{
    uint32_t mask = NODE_FORWARDS_SLOTS - 1;
    for (uint32_t i = (uint32_t)(req_id * 0x9e3779b97f4a7c15ull >> 40) & mask;;
         i = (i + 1) & mask) {
        struct forward *f = &node->forwards[i];
        if (f->req_id == req_id || (f->req_id == 0 && insert)) {
            return f;
        }
        if (f->req_id == 0) {
            return NULL;
        }
    }
}

static void forward_remove(struct cl_node *node, struct forward *f)
{
    /* Backward-shift deletion keeps the probe chains intact. */
    uint32_t mask = NODE_FORWARDS_SLOTS - 1;
    uint32_t i = (uint32_t)(f - node->forwards);
    assert(node->forwards_count > 0);
    node->forwards_count--;
    node->forwards[i].req_id = 0;
    for (uint32_t j = (i + 1) & mask; node->forwards[j].req_id != 0; j = (j + 1) & mask) {
        struct forward moved = node->forwards[j];
        node->forwards[j].req_id = 0;
        *forward_slot(node, moved.req_id, true) = moved;
    }
}

static int node_forward(struct cl_node *node, unsigned leader, int kind,
                        const struct cl_target *target, const struct rt_command *cmd,
                        struct waiter w)
{
    uint64_t req_id = ++node->next_req_id;
    struct rt_mp_writer mw = node_msg_begin(node);
    rt_mp_write_array(&mw, 9);
    rt_mp_write_uint(&mw, MSG_REQUEST);
    rt_mp_write_uint(&mw, req_id);
    rt_mp_write_uint(&mw, (uint64_t)kind);
    rt_mp_write_uint(&mw, cmd->actor_type);
    rt_mp_write_uint(&mw, cmd->op);
    rt_mp_write_bin(&mw, cmd->key, cmd->key_len);
    rt_mp_write_bin(&mw, cmd->args, cmd->args_len);
    rt_mp_write_uint(&mw, (uint64_t)target->kind);
    if (target->kind == CL_TARGET_INDEX) {
        rt_mp_write_uint(&mw, target->shard);
        rt_mp_write_bin(&mw, target->index_key, target->index_key_len);
    } else {
        rt_mp_write_uint(&mw, 0);
        rt_mp_write_nil(&mw);
    }
    int rv = rt_mp_writer_error(&mw);
    if (rv == 0) {
        rv = node_send(node, leader);
    }
    if (rv != 0) {
        return rv == RT_ETOOLARGE ? rv : RT_EUNAVAIL;
    }
    struct forward *f = forward_slot(node, req_id, true);
    f->req_id = req_id;
    node->forwards_count++;
    node->forwarded++;
    f->waiter = w;
    f->deadline_ms = node_now(node) + CL_FORWARD_TIMEOUT_MS;
    node->inflight++;
    return 0;
}

/* Answer forwards past their deadline (or all of them, when stopping). The table is large, so
 * it is scanned only when it holds something, and at most every NODE_EXPIRY_SCAN_MS: a timeout
 * reported up to that much late is fine, a full scan every tick is not. */
static void node_expire_forwards(struct cl_node *node, bool all)
{
    uint64_t now = node_now(node);
    if (node->forwards_count == 0 || (!all && now - node->last_expiry_ms < NODE_EXPIRY_SCAN_MS)) {
        return;
    }
    node->last_expiry_ms = now;
    for (uint32_t i = 0; i < NODE_FORWARDS_SLOTS && node->forwards_count > 0; i++) {
        struct forward *f = &node->forwards[i];
        if (f->req_id != 0 && (all || now >= f->deadline_ms)) {
            struct waiter w = f->waiter;
            forward_remove(node, f);
            waiter_done(node, w, all ? RT_EUNAVAIL : RT_ETIMEOUT, NULL, 0,
                        all ? "node stopping" : "the shard leader did not answer in time");
            i--; /* The shift may have moved another entry into this slot. */
        }
    }
}

/* ---- Group commit and acknowledgement ---- */

static void group_fail_acks(struct group *g, int code, const char *msg)
{
    while (g->acks_head != NULL) {
        struct pending_ack *a = g->acks_head;
        g->acks_head = a->next;
        for (uint32_t i = 0; i < a->count; i++) {
            waiter_done(g->node, a->waiters[i], code, NULL, 0, msg);
        }
        free(a);
    }
    g->acks_tail = NULL;
}

static unsigned group_voters(const struct group *g)
{
    unsigned n = g->node->config.member_count;
    return n < CL_VOTERS_MAX ? n : CL_VOTERS_MAX;
}

/* Does member @m hold entry @index of this leader's term @term on disk (cl_durable.h)? */
static bool group_member_confirms(struct group *g, unsigned m, uint64_t index, raft_term term)
{
    if (m == g->node->self) {
        raft_index durable;
        raft_term durable_term;
        cl_durable_get(&g->durable, &durable, &durable_term);
        return cl_durable_confirms(durable, durable_term, index, term);
    }
    return cl_durable_confirms(g->report_durable_index[m], g->report_durable_term[m], index, term);
}

static void group_release(struct group *g, struct pending_ack *a)
{
    for (uint32_t i = 0; i < a->count; i++) {
        const struct reply_rec *r = &a->recs[i];
        waiter_done(g->node, a->waiters[i], r->code, r->code == 0 ? a->blob + r->body_off : NULL,
                    r->code == 0 ? r->body_len : 0, (const char *)a->blob + r->msg_off);
    }
    g->acked_commands += a->count;
    free(a);
}

static void group_confirm(struct group *g)
{
    uint64_t now = node_now(g->node);
    while (g->acks_head != NULL) {
        struct pending_ack *a = g->acks_head;
        if (raft_state(&g->raft) != RAFT_LEADER || g->raft.current_term != a->term) {
            group_fail_acks(g, RT_EUNAVAIL,
                            "leadership lost before a majority confirmed; "
                            "retry with the same key");
            return;
        }
        unsigned votes = 0;
        for (unsigned m = 0; m < group_voters(g); m++) {
            votes += group_member_confirms(g, m, a->index, a->term);
        }
        if (votes <= group_voters(g) / 2) {
            if (now < a->deadline_ms) {
                return;
            }
            g->acks_head = a->next;
            for (uint32_t i = 0; i < a->count; i++) {
                waiter_done(g->node, a->waiters[i], RT_ETIMEOUT, NULL, 0,
                            "a majority did not confirm in time; retry with the same key");
            }
            free(a);
        } else {
            g->acks_head = a->next;
            group_release(g, a);
        }
        if (g->acks_head == NULL) {
            g->acks_tail = NULL;
        }
    }
}

static void group_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = req->data;
    struct group *g = p->group;
    if (p->timers) {
        g->timers_in_flight = false;
        free(p);
        return;
    }
    assert(g->entries_in_flight > 0);
    g->entries_in_flight--;
    struct cl_fsm *fsm = result;
    if (status != 0 || fsm == NULL) {
        const char *msg = status != 0 ? "leadership lost; outcome unknown, retry with the same key"
                                      : "entry not applied";
        for (uint32_t i = 0; i < p->count; i++) {
            waiter_done(g->node, p->waiters[i], status != 0 ? RT_EUNAVAIL : RT_EINTERNAL, NULL, 0,
                        msg);
        }
        free(p);
        return;
    }
    assert(rt_engine_reply_count(&fsm->engine) == p->count);
    /* Copy the replies: they live until the next apply. */
    size_t blob = 0;
    for (uint32_t i = 0; i < p->count; i++) {
        const struct rt_reply *r = rt_engine_reply(&fsm->engine, i);
        blob += r->body_len + strlen(r->msg) + 1;
    }
    struct pending_ack *a = malloc(sizeof(*a) + p->count * sizeof(struct waiter) +
                                   p->count * sizeof(struct reply_rec) + blob);
    if (a == NULL) {
        for (uint32_t i = 0; i < p->count; i++) {
            waiter_done(g->node, p->waiters[i], RT_ENOMEM, NULL, 0, "out of memory");
        }
        free(p);
        return;
    }
    a->next = NULL;
    a->index = rt_engine_applied_index(&fsm->engine);
    a->term = g->raft.current_term;
    a->deadline_ms = node_now(g->node) + CL_ACK_TIMEOUT_MS;
    a->count = p->count;
    a->waiters = (struct waiter *)(a + 1);
    a->recs = (struct reply_rec *)(a->waiters + p->count);
    a->blob = (uint8_t *)(a->recs + p->count);
    size_t off = 0;
    for (uint32_t i = 0; i < p->count; i++) {
        const struct rt_reply *r = rt_engine_reply(&fsm->engine, i);
        a->waiters[i] = p->waiters[i];
        a->recs[i].code = r->code;
        a->recs[i].body_off = (uint32_t)off;
        a->recs[i].body_len = r->body_len;
        memcpy(a->blob + off, r->body, r->body_len);
        off += r->body_len;
        size_t msg_len = strlen(r->msg) + 1;
        a->recs[i].msg_off = (uint32_t)off;
        memcpy(a->blob + off, r->msg, msg_len);
        off += msg_len;
    }
    free(p);
    if (g->acks_tail != NULL) {
        g->acks_tail->next = a;
    } else {
        g->acks_head = a;
    }
    g->acks_tail = a;
    group_confirm(g);
}

static int group_propose(struct group *g, struct rt_batch_builder *b, struct proposal *p)
{
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(b, &len);
    size_t padded = (len + CL_FSM_PAD - 1) / CL_FSM_PAD * CL_FSM_PAD; /* cl_fsm.h, Padding. */
    struct raft_buffer buf = {.base = raft_malloc(padded), .len = padded};
    if (buf.base == NULL) {
        return RT_ENOMEM;
    }
    memcpy(buf.base, data, len);
    memset((uint8_t *)buf.base + len, 0, padded - len);
    p->group = g;
    p->req.data = p;
    int rv = raft_apply(&g->raft, &p->req, &buf, 1, group_apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
        return RT_EUNAVAIL;
    }
    return 0;
}

/* Propose the batch of this loop turn. */
static void group_flush(struct group *g)
{
    if (!g->batch_open) {
        return;
    }
    g->batch_open = false;
    uint32_t count = g->batch_count;
    g->batch_count = 0;
    struct proposal *p = malloc(sizeof(*p) + count * sizeof(struct waiter));
    if (p == NULL) {
        for (uint32_t i = 0; i < count; i++) {
            waiter_done(g->node, g->batch_waiters[i], RT_ENOMEM, NULL, 0, "out of memory");
        }
        return;
    }
    p->timers = false;
    p->count = count;
    memcpy(p->waiters, g->batch_waiters, count * sizeof(struct waiter));
    int rv = group_propose(g, &g->builder, p);
    if (rv == 0) {
        g->entries_in_flight++;
    } else {
        for (uint32_t i = 0; i < count; i++) {
            waiter_done(g->node, p->waiters[i], rv, NULL, 0, "not the leader any more; retry");
        }
        free(p);
    }
}

static int group_enqueue(struct group *g, const struct rt_command *cmd, struct waiter w)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!g->batch_open) {
            int rv = rt_batch_builder_begin(&g->builder, node_now(g->node));
            if (rv != 0) {
                return rv;
            }
            g->batch_open = true;
        }
        int rv = rt_batch_builder_add(&g->builder, cmd);
        if (rv == 0) {
            g->batch_waiters[g->batch_count++] = w;
            g->node->inflight++;
            return 0;
        }
        if (rv != RT_ETOOLARGE || g->batch_count == 0) {
            return rv;
        }
        group_flush(g); /* Full: propose it and start the next. */
    }
    return RT_ETOOLARGE;
}

/* ---- Reads ----
 *
 * A linearizable read runs on the shard's leader once a raft barrier proposed after the read
 * arrived is applied there: that barrier committed in this leader's term, so no other leader
 * acknowledged a write the read could miss, and every write acknowledged before the read was
 * sent has been applied here (a write is answered only once applied on its leader).
 *
 * A barrier is a raft entry, replicated and synced like any. The reads of a loop turn share one,
 * proposed after the turn's write entry (group_read_flush, from node_check_cb); while it is in
 * flight new reads wait for the next. A barrier costs an entry per round trip instead of an
 * entry per read: under load one serves as many reads as arrive meanwhile (docs/benchmarks.md,
 * optimisation log). */

/* Answer every read of @list with @code and free it. */
static void reads_fail(struct cl_node *node, struct read_req *list, int code, const char *msg)
{
    while (list != NULL) {
        struct read_req *next = list->next;
        node->read_stats.failed += code == RT_EUNAVAIL;
        waiter_done(node, list->waiter, code, NULL, 0, msg);
        free(list);
        list = next;
    }
}

static void read_barrier_cb(struct raft_barrier *req, int status)
{
    struct read_barrier *b = req->data;
    struct group *g = b->group;
    struct cl_node *node = g->node;
    g->read_barrier_in_flight = false;
    if (status != 0) {
        /* Leadership lost, or raft closing: the reads waiting behind would fail the same. */
        struct read_req *waiting = g->reads_head;
        g->reads_head = g->reads_tail = NULL;
        reads_fail(node, b->reads, RT_EUNAVAIL, "leadership lost; retry");
        reads_fail(node, waiting, RT_EUNAVAIL, "leadership lost; retry");
        free(b);
        return;
    }
    for (struct read_req *r = b->reads, *next; r != NULL; r = next) {
        next = r->next;
        struct rt_reply reply;
        int rv = rt_engine_query(&g->fsm.engine, &r->cmd, node_now(node), &reply);
        node->read_stats.linearizable++;
        waiter_done(node, r->waiter, rv, rv == 0 ? reply.body : NULL, rv == 0 ? reply.body_len : 0,
                    reply.msg);
        free(r);
    }
    free(b);
    if (g->reads_head != NULL) {
        uv_idle_start(&node->idle, node_idle_cb); /* The next barrier, in this loop's next turn. */
    }
}

/* Propose one barrier for the reads waiting, unless one is in flight. */
static void group_read_flush(struct group *g)
{
    if (g->reads_head == NULL || g->read_barrier_in_flight) {
        return;
    }
    struct read_req *reads = g->reads_head;
    g->reads_head = g->reads_tail = NULL;
    struct read_barrier *b = malloc(sizeof(*b));
    if (b == NULL) {
        reads_fail(g->node, reads, RT_ENOMEM, "out of memory");
        return;
    }
    b->group = g;
    b->reads = reads;
    b->req.data = b;
    if (raft_barrier(&g->raft, &b->req, read_barrier_cb) != 0) {
        free(b);
        reads_fail(g->node, reads, RT_EUNAVAIL, "not the leader any more; retry");
        return;
    }
    g->read_barrier_in_flight = true;
    g->node->read_stats.barriers++;
}

static int group_read_linearizable(struct group *g, const struct rt_command *cmd, struct waiter w)
{
    struct read_req *r = malloc(sizeof(*r) + cmd->key_len + cmd->args_len);
    if (r == NULL) {
        return RT_ENOMEM;
    }
    r->next = NULL;
    r->waiter = w;
    r->cmd = *cmd;
    memcpy(r->bytes, cmd->key, cmd->key_len);
    if (cmd->args_len > 0) {
        memcpy(r->bytes + cmd->key_len, cmd->args, cmd->args_len);
    }
    r->cmd.key = r->bytes;
    r->cmd.args = cmd->args_len > 0 ? r->bytes + cmd->key_len : NULL;
    if (g->reads_tail != NULL) {
        g->reads_tail->next = r;
    } else {
        g->reads_head = r;
    }
    g->reads_tail = r;
    g->node->inflight++;
    return 0;
}

/* ---- Routing ---- */

static uint64_t group_leader(struct group *g)
{
    raft_id id = 0;
    const char *address = NULL;
    raft_leader(&g->raft, &id, &address);
    return id;
}

/* The group a target lives in, or NULL for a bad target. */
static struct group *node_target_group(struct cl_node *node, const struct cl_target *t,
                                       const struct rt_command *cmd)
{
    switch (t->kind) {
    case CL_TARGET_KEY:
        return &node->groups[rt_shard_of(cmd->key, cmd->key_len, node->config.shard_count)];
    case CL_TARGET_META:
        return &node->groups[node->config.shard_count];
    case CL_TARGET_INDEX:
        if (t->shard >= node->config.shard_count || t->index_key == NULL || t->index_key_len == 0 ||
            t->index_key_len > RT_INDEX_KEY_BYTES_MAX) {
            return NULL;
        }
        return &node->groups[t->shard];
    }
    return NULL;
}

static int node_route(struct cl_node *node, int kind, const struct cl_target *target,
                      const struct rt_command *cmd, struct waiter w)
{
    if (node->stopping) {
        return RT_EUNAVAIL;
    }
    int rv = rt_command_check(cmd);
    if (rv != 0 || cmd->origin != RT_ORIGIN_CLIENT) {
        return rv != 0 ? rv : RT_EINVAL;
    }
    if (node->inflight >= CL_INFLIGHT_MAX) {
        return RT_EUNAVAIL;
    }
    struct group *g = node_target_group(node, target, cmd);
    if (g == NULL) {
        return RT_EINVAL;
    }
    bool local = kind == KIND_READ_STALE || raft_state(&g->raft) == RAFT_LEADER;
    struct rt_command resolved = *cmd;
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    if (local && target->kind == CL_TARGET_INDEX) {
        /* The index entry names the actor; it never changes once written. */
        struct rt_buf out = {.data = key, .len = 0, .cap = sizeof(key), .max = sizeof(key)};
        rv = rt_engine_index_get(&g->fsm.engine, target->index_key, target->index_key_len, &out);
        if (rv != 0) {
            if (rv == RT_ENOTFOUND || rv == RT_ETOOLARGE) {
                node_defer(node, w, RT_ENOTFOUND, NULL, 0, "no such object");
                return 0;
            }
            return rv;
        }
        resolved.key = key;
        resolved.key_len = (uint32_t)out.len;
    }
    if (kind == KIND_READ_STALE) {
        struct rt_reply reply;
        rv = rt_engine_query(&g->fsm.engine, &resolved, node_now(node), &reply);
        node_defer(node, w, rv, rv == 0 ? reply.body : NULL, rv == 0 ? reply.body_len : 0,
                   reply.msg);
        return 0;
    }
    if (local) {
        return kind == KIND_WRITE ? group_enqueue(g, &resolved, w)
                                  : group_read_linearizable(g, &resolved, w);
    }
    uint64_t leader = group_leader(g);
    unsigned m = node_member_index(node, leader);
    if (leader == 0 || m == CL_MEMBERS_MAX || m == node->self) {
        return RT_EUNAVAIL;
    }
    return node_forward(node, m, kind, target, cmd, w);
}

static const struct cl_target target_by_key = {CL_TARGET_KEY, 0, NULL, 0};

int cl_node_submit(struct cl_node *node, const struct rt_command *cmd, cl_reply_cb cb, void *arg)
{
    assert(node != NULL && cmd != NULL && cb != NULL);
    return node_route(node, KIND_WRITE, &target_by_key, cmd, (struct waiter){cb, arg});
}

int cl_node_query(struct cl_node *node, const struct rt_command *cmd, enum cl_read read,
                  cl_reply_cb cb, void *arg)
{
    assert(node != NULL && cmd != NULL && cb != NULL);
    return node_route(node, read == CL_READ_STALE ? KIND_READ_STALE : KIND_READ_LINEARIZABLE,
                      &target_by_key, cmd, (struct waiter){cb, arg});
}

int cl_node_submit_to(struct cl_node *node, const struct cl_target *target,
                      const struct rt_command *cmd, cl_reply_cb cb, void *arg)
{
    assert(node != NULL && target != NULL && cmd != NULL && cb != NULL);
    return node_route(node, KIND_WRITE, target, cmd, (struct waiter){cb, arg});
}

int cl_node_query_to(struct cl_node *node, const struct cl_target *target,
                     const struct rt_command *cmd, enum cl_read read, cl_reply_cb cb, void *arg)
{
    assert(node != NULL && target != NULL && cmd != NULL && cb != NULL);
    return node_route(node, read == CL_READ_STALE ? KIND_READ_STALE : KIND_READ_LINEARIZABLE,
                      target, cmd, (struct waiter){cb, arg});
}

int cl_node_meta_read(struct cl_node *node, const struct rt_command *cmd, struct rt_reply *reply)
{
    assert(node != NULL && cmd != NULL && reply != NULL);
    struct group *meta = &node->groups[node->config.shard_count];
    return rt_engine_query(&meta->fsm.engine, cmd, node_now(node), reply);
}

struct cl_meta_state cl_node_meta_state(struct cl_node *node)
{
    assert(node != NULL);
    const struct rt_engine *engine = &node->groups[node->config.shard_count].fsm.engine;
    return (struct cl_meta_state){rt_engine_applied_index(engine), rt_engine_history_hash(engine)};
}

/* ---- Requests from other nodes ---- */

static void remote_reply(void *arg, int code, const uint8_t *body, size_t body_len, const char *msg)
{
    struct remote_req *r = arg;
    struct cl_node *node = r->node;
    struct rt_mp_writer w = node_msg_begin(node);
    rt_mp_write_array(&w, 5);
    rt_mp_write_uint(&w, MSG_REPLY);
    rt_mp_write_uint(&w, r->req_id);
    rt_mp_write_int(&w, code);
    rt_mp_write_bin(&w, body, body_len);
    rt_mp_write_cstr(&w, msg != NULL ? msg : "");
    if (rt_mp_writer_error(&w) == 0 && node_send(node, r->member) != 0) {
        RT_DEBUG("reply to node %llu dropped (no link)",
                 (unsigned long long)node->members[r->member].id);
    }
    free(r);
}

static void node_on_request(struct cl_node *node, unsigned member, struct rt_mp_reader *r)
{
    uint64_t req_id, kind, type, op;
    const uint8_t *key, *args;
    uint32_t key_len, args_len;
    uint64_t target_kind, target_shard;
    const uint8_t *index_key = NULL;
    uint32_t index_key_len = 0;
    if (rt_mp_read_uint(r, &req_id) != 0 || rt_mp_read_uint(r, &kind) != 0 ||
        rt_mp_read_uint(r, &type) != 0 || rt_mp_read_uint(r, &op) != 0 ||
        rt_mp_read_bin(r, &key, &key_len) != 0 || rt_mp_read_bin(r, &args, &args_len) != 0 ||
        rt_mp_read_uint(r, &target_kind) != 0 || rt_mp_read_uint(r, &target_shard) != 0 ||
        (rt_mp_peek(r) == RT_MP_NIL ? rt_mp_read_nil(r)
                                    : rt_mp_read_bin(r, &index_key, &index_key_len)) != 0 ||
        kind > KIND_READ_STALE || type > UINT8_MAX || op > UINT8_MAX ||
        target_kind > CL_TARGET_INDEX || target_shard >= node->config.shard_count) {
        RT_WARN("malformed request from node %llu", (unsigned long long)node->members[member].id);
        return;
    }
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = (uint8_t)type,
                             .op = (uint8_t)op,
                             .key = key,
                             .key_len = key_len,
                             .args = args_len > 0 ? args : NULL,
                             .args_len = args_len};
    struct remote_req *rr = malloc(sizeof(*rr));
    if (rr == NULL) {
        return;
    }
    *rr = (struct remote_req){node, member, req_id};
    /* Forwarded once at most: if this node is not the leader either, answer UNAVAILABLE
     * rather than bounce the request around a changing cluster. */
    struct cl_target target = {(enum cl_target_kind)target_kind, (uint16_t)target_shard, index_key,
                               index_key_len};
    struct group *g = node_target_group(node, &target, &cmd);
    int rv;
    if (g == NULL) {
        rv = RT_EINVAL;
    } else if ((int)kind != KIND_READ_STALE && raft_state(&g->raft) != RAFT_LEADER) {
        rv = RT_EUNAVAIL;
    } else {
        rv = node_route(node, (int)kind, &target, &cmd, (struct waiter){remote_reply, rr});
    }
    if (rv != 0) {
        remote_reply(rr, rv, NULL, 0,
                     rv == RT_EUNAVAIL ? "no leader for the shard on this node" : rt_strerror(rv));
    }
}

static void node_on_reply(struct cl_node *node, struct rt_mp_reader *r)
{
    uint64_t req_id;
    int64_t code;
    const uint8_t *body;
    uint32_t body_len, msg_len;
    const char *msg;
    if (rt_mp_read_uint(r, &req_id) != 0 || rt_mp_read_int(r, &code) != 0 ||
        rt_mp_read_bin(r, &body, &body_len) != 0 || rt_mp_read_str(r, &msg, &msg_len) != 0 ||
        code > 0 || code < -1000) {
        return;
    }
    struct forward *f = forward_slot(node, req_id, false);
    if (f == NULL) {
        return; /* Timed out already. */
    }
    struct waiter w = f->waiter;
    forward_remove(node, f);
    char text[256];
    snprintf(text, sizeof(text), "%.*s", (int)msg_len, msg);
    waiter_done(node, w, (int)code, body_len > 0 ? body : NULL, body_len, text);
}

static void node_on_report(struct cl_node *node, unsigned member, struct rt_mp_reader *r)
{
    uint64_t shard, applied, hash, durable, durable_term, raft_applied, mine;
    if (rt_mp_read_uint(r, &shard) != 0 || rt_mp_read_uint(r, &applied) != 0 ||
        rt_mp_read_uint(r, &hash) != 0 || rt_mp_read_uint(r, &durable) != 0 ||
        rt_mp_read_uint(r, &durable_term) != 0 || rt_mp_read_uint(r, &raft_applied) != 0 ||
        shard > node->config.shard_count) {
        return;
    }
    struct group *g = &node->groups[shard];
    g->report_applied[member] = applied;
    g->report_hash[member] = hash;
    g->report_ms[member] = node_now(node);
    g->report_durable_index[member] = durable;
    g->report_durable_term[member] = durable_term;
    g->report_raft_applied[member] = raft_applied;
    /* Same entries applied must give the same history: a difference means a replica diverged
     * (a bug or a corrupted log), which operators must see. */
    if (cl_fsm_history_at(&g->fsm, applied, &mine) && mine != hash) {
        if (g->history_mismatches++ == 0) {
            RT_ERROR("node %llu applied a different history at index %llu than this node",
                     (unsigned long long)node->members[member].id, (unsigned long long)applied);
        }
    }
    if (g->acks_head != NULL) {
        group_confirm(g);
    }
}

static void node_on_message(struct cl_link *link, const uint8_t *msg, size_t len)
{
    struct cl_node *node = cl_link_data(link);
    unsigned member = node_member_index(node, cl_link_remote(link));
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, msg, len);
    uint32_t fields;
    uint64_t type;
    if (member == CL_MEMBERS_MAX || rt_mp_read_array(&r, &fields) != 0 || fields < 1 ||
        rt_mp_read_uint(&r, &type) != 0) {
        RT_WARN("malformed message from node %llu", (unsigned long long)cl_link_remote(link));
        cl_link_close(link);
        return;
    }
    switch (type) {
    case MSG_REQUEST:
        node_on_request(node, member, &r);
        break;
    case MSG_REPLY:
        node_on_reply(node, &r);
        break;
    case MSG_REPORT:
        node_on_report(node, member, &r);
        break;
    case MSG_RAFT:
        if (fields != 3 || node_on_raft(node, member, &r) != 0) {
            RT_WARN("malformed raft message from node %llu",
                    (unsigned long long)cl_link_remote(link));
            cl_link_close(link);
        }
        break;
    default:
        RT_WARN("unknown message type %llu from node %llu", (unsigned long long)type,
                (unsigned long long)cl_link_remote(link));
    }
}

/* ---- Per loop turn and per tick ---- */

static void group_report(struct group *g, uint64_t now)
{
    struct cl_node *node = g->node;
    if (raft_state(&g->raft) != RAFT_FOLLOWER) {
        return;
    }
    uint64_t leader = group_leader(g);
    unsigned m = node_member_index(node, leader);
    uint64_t applied = rt_engine_applied_index(&g->fsm.engine);
    raft_index durable;
    raft_term durable_term;
    cl_durable_get(&g->durable, &durable, &durable_term);
    uint64_t raft_applied = raft_last_applied(&g->raft);
    if (m == CL_MEMBERS_MAX || m == node->self ||
        (applied == g->reported_applied && durable == g->reported_durable &&
         raft_applied == g->reported_raft_applied && leader == g->reported_leader &&
         now - g->reported_ms < CL_REPORT_MS)) {
        return;
    }
    struct rt_mp_writer w = node_msg_begin(node);
    rt_mp_write_array(&w, 7);
    rt_mp_write_uint(&w, MSG_REPORT);
    rt_mp_write_uint(&w, g->shard);
    rt_mp_write_uint(&w, applied);
    rt_mp_write_uint(&w, rt_engine_history_hash(&g->fsm.engine));
    rt_mp_write_uint(&w, durable);
    rt_mp_write_uint(&w, durable_term);
    rt_mp_write_uint(&w, raft_applied);
    if (rt_mp_writer_error(&w) == 0 && node_send(node, m) == 0) {
        g->reported_applied = applied;
        g->reported_durable = durable;
        g->reported_raft_applied = raft_applied;
        g->reported_leader = leader;
        g->reported_ms = now;
    }
}

static void transfer_cb(struct raft_transfer *req)
{
    struct group *g = req->data;
    g->transferring = false;
}

/* The stuck-follower watchdog (cl_node.h, docs/raft.md). */
static void group_watchdog(struct group *g, uint64_t now)
{
    struct cl_node *node = g->node;
    if (raft_state(&g->raft) != RAFT_LEADER || g->transferring) {
        return;
    }
    struct raft *r = &g->raft;
    for (unsigned k = 0; k < r->configuration.n; k++) {
        unsigned m = node_member_index(node, r->configuration.servers[k].id);
        if (m == CL_MEMBERS_MAX || m == node->self) {
            continue;
        }
        bool reporting = now - g->report_ms[m] < 2 * CL_REPORT_MS;
        /* Raft's applied index, not the engine's: the engine does not count configuration
         * and barrier entries, so it can sit below the commit index for good. */
        bool stuck = reporting && r->leader_state.progress[k].match_index >= r->commit_index &&
                     g->report_raft_applied[m] < r->commit_index;
        if (!stuck) {
            g->stuck_since_ms[m] = 0;
            continue;
        }
        /* Followers learn the commit index from the next message, so under a steady trickle
         * of writes one is always a little behind; stuck means it does not move at all. */
        if (g->stuck_since_ms[m] == 0 || g->stuck_applied[m] != g->report_raft_applied[m]) {
            g->stuck_since_ms[m] = now;
            g->stuck_applied[m] = g->report_raft_applied[m];
            continue;
        }
        if (now - g->stuck_since_ms[m] < CL_STUCK_MS) {
            continue;
        }
        raft_id target = 0;
        for (unsigned j = 0; j < r->configuration.n; j++) {
            unsigned t = node_member_index(node, r->configuration.servers[j].id);
            if (t < CL_MEMBERS_MAX && t != node->self && t != m &&
                g->report_raft_applied[t] >= r->commit_index &&
                r->leader_state.progress[j].match_index == raft_last_index(r)) {
                target = r->configuration.servers[j].id;
            }
        }
        char to[32] = "a voter raft picks"; /* No follower is verified healthy. */
        if (target != 0) {
            snprintf(to, sizeof(to), "node %llu", (unsigned long long)target);
        }
        RT_WARN("shard %u: node %llu is stuck at applied %llu below commit %llu; handing "
                "leadership to %s (docs/raft.md)",
                g->shard, (unsigned long long)node->members[m].id,
                (unsigned long long)g->report_raft_applied[m], (unsigned long long)r->commit_index,
                to);
        g->transfer.data = g;
        if (raft_transfer(r, &g->transfer, target, transfer_cb) == 0) {
            g->transferring = true;
        }
        memset(g->stuck_since_ms, 0, sizeof(g->stuck_since_ms));
        return;
    }
}

/* Log each change of the group's leader as this node sees it (none known during an election),
 * so that the logs show when requests in flight on a shard were answered UNAVAILABLE
 * ("leadership lost"), and which node took over. Quiet while the leader stays. */
static void group_log_leader(struct group *g)
{
    uint64_t leader = group_leader(g);
    if (leader == g->logged_leader) {
        return; /* No change (or, at start, no leader yet: nothing to say). */
    }
    char group[16] = "meta group";
    if (g->shard < g->node->config.shard_count) {
        snprintf(group, sizeof(group), "shard %u", (unsigned)g->shard);
    }
    if (leader == 0) {
        RT_INFO("%s: no leader known (term %llu)", group, (unsigned long long)g->raft.current_term);
    } else {
        RT_INFO("%s: leader is node %llu (term %llu)", group, (unsigned long long)leader,
                (unsigned long long)g->raft.current_term);
    }
    g->logged_leader = leader;
}

static void group_collect_timers(struct group *g, uint64_t now)
{
    if (raft_state(&g->raft) != RAFT_LEADER || g->timers_in_flight) {
        return;
    }
    uint32_t added = 0;
    if (rt_batch_builder_begin(&g->timer_builder, now) != 0 ||
        rt_engine_collect_due_timers(&g->fsm.engine, now, &g->timer_builder, NODE_TIMERS_PER_ENTRY,
                                     &added) != 0 ||
        added == 0) {
        return;
    }
    struct proposal *p = malloc(sizeof(*p));
    if (p == NULL) {
        return;
    }
    p->timers = true;
    p->count = 0;
    if (group_propose(g, &g->timer_builder, p) == 0) {
        g->timers_in_flight = true;
    } else {
        free(p);
    }
}

/* ---- The cluster map in the meta group ---- */

static void map_init_done(void *arg, int code, const uint8_t *body, size_t body_len,
                          const char *msg)
{
    struct cl_node *node = arg;
    (void)body;
    (void)body_len;
    node->map_init_in_flight = false;
    if (code == 0) {
        node->map_ready = true;
        RT_INFO("cluster map initialised: %u members, %u shards", node->config.member_count,
                (unsigned)node->config.shard_count);
    } else if (code == RT_ECONFLICT) {
        RT_ERROR("the cluster map holds other members than this node's --member list: %s", msg);
    }
}

/* Until the map is known: read it locally; the meta leader proposes it from the bootstrap
 * membership if it is missing (an identical init is idempotent, so every node may try). */
static void node_ensure_map(struct cl_node *node)
{
    struct group *meta = &node->groups[node->config.shard_count];
    if (node->map_ready || meta->closed || !meta->started) {
        return;
    }
    const uint8_t key[] = ACT_CLUSTER_KEY;
    struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                             .actor_type = ACT_TYPE_CLUSTER,
                             .op = ACT_CLUSTER_GET,
                             .key = key,
                             .key_len = sizeof(key) - 1};
    struct rt_reply reply;
    if (rt_engine_query(&meta->fsm.engine, &cmd, node_now(node), &reply) == 0) {
        node->map_ready = true;
        return;
    }
    if (node->map_init_in_flight || raft_state(&meta->raft) != RAFT_LEADER) {
        return;
    }
    struct rt_buf args;
    rt_buf_init(&args, RT_COMMAND_ARGS_BYTES_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &args);
    rt_mp_write_map(&w, 2);
    rt_mp_write_cstr(&w, "shard_count");
    rt_mp_write_uint(&w, node->config.shard_count);
    rt_mp_write_cstr(&w, "nodes");
    rt_mp_write_array(&w, node->config.member_count);
    for (unsigned m = 0; m < node->config.member_count; m++) {
        rt_mp_write_map(&w, 4);
        rt_mp_write_cstr(&w, "node_id");
        rt_mp_write_uint(&w, node->members[m].id);
        rt_mp_write_cstr(&w, "peer_addr");
        rt_mp_write_cstr(&w, node->members[m].peer_addr);
        rt_mp_write_cstr(&w, "api_addr");
        rt_mp_write_cstr(&w, node->members[m].api_addr);
        rt_mp_write_cstr(&w, "http_addr");
        rt_mp_write_cstr(&w, node->members[m].http_addr);
    }
    cmd.op = ACT_CLUSTER_INIT;
    cmd.args = args.data;
    cmd.args_len = (uint32_t)args.len;
    if (rt_mp_writer_error(&w) == 0 &&
        group_enqueue(meta, &cmd, (struct waiter){map_init_done, node}) == 0) {
        node->map_init_in_flight = true;
    }
    rt_buf_free(&args);
}

static void node_check_cb(uv_check_t *check)
{
    struct cl_node *node = check->data;
    uint64_t now = node_now(node);
    for (uint16_t s = 0; s < node->groups_started; s++) {
        struct group *g = &node->groups[s];
        if (g->closed) {
            continue;
        }
        /* Adaptive group commit: while entries are in flight, commands gather into the next
         * one, so load makes entries larger rather than more numerous. */
        if (g->entries_in_flight < CL_ENTRIES_IN_FLIGHT_MAX) {
            group_flush(g);
        }
        group_read_flush(g); /* After the turn's write entry, when one was proposed. */
        if (g->acks_head != NULL) {
            group_confirm(g); /* This leader's own append may have completed. */
        }
        group_report(g, now);
    }
    node_run_deferred(node);
}

static void node_idle_cb(uv_idle_t *idle)
{
    struct cl_node *node = idle->data;
    raft_sent_run(node);
    node_run_deferred(node);
    if (node->deferred_head == NULL && node->sent_count == 0) {
        uv_idle_stop(idle);
    }
}

static void node_tick_cb(uv_timer_t *timer)
{
    struct cl_node *node = timer->data;
    if (node->stopping) {
        node_deliver_io_closes(node, uv_now(node->loop));
        return;
    }
    uint64_t now = node_now(node);
    node_maintain_links(node);
    node_expire_forwards(node, false);
    node_ensure_map(node);
    bool scan_timers = now - node->last_timer_scan_ms >= CL_TIMER_SCAN_MS;
    if (scan_timers) {
        node->last_timer_scan_ms = now;
    }
    for (uint16_t s = 0; s < node->groups_started; s++) {
        struct group *g = &node->groups[s];
        if (g->closed) {
            continue;
        }
        group_confirm(g); /* Deadlines. */
        group_watchdog(g, now);
        group_log_leader(g);
        if (scan_timers) {
            group_collect_timers(g, now);
        }
    }
}

/* ---- Start ---- */

/* The identity file ties a data dir to one cluster and node: starting with another cluster's
 * or node's data is refused rather than mixed. */
static int node_check_identity(struct cl_node *node)
{
    char path[PATH_MAX + 16], expected[160], found[160] = {0};
    snprintf(path, sizeof(path), "%s/node.id", node->data_dir);
    snprintf(expected, sizeof(expected),
             "payraft-node v1 cluster=%016" PRIx64 " node=%" PRIu64 " shards=%u\n",
             node->config.cluster_id, node->config.node_id, (unsigned)node->config.shard_count);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        size_t n = fread(found, 1, sizeof(found) - 1, f);
        fclose(f);
        found[n] = '\0';
        if (strcmp(found, expected) != 0) {
            RT_ERROR("%s belongs to another cluster, node or shard count: it says '%.*s', this "
                     "node is '%.*s'",
                     node->data_dir, (int)strcspn(found, "\n"), found, (int)strcspn(expected, "\n"),
                     expected);
            return RT_EIO;
        }
        return 0;
    }
    char db[PATH_MAX + 8];
    snprintf(db, sizeof(db), "%s/db", node->data_dir);
    struct stat st;
    if (stat(db, &st) == 0) {
        RT_ERROR("%s holds a database but no node.id: not a Payraft data dir, refusing",
                 node->data_dir);
        return RT_EIO;
    }
    f = fopen(path, "w");
    if (f == NULL || fputs(expected, f) == EOF || fclose(f) != 0) {
        RT_ERROR("cannot write %s: %s", path, strerror(errno));
        return RT_EIO;
    }
    return 0;
}

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        return 0;
    }
    RT_ERROR("cannot create %s: %s", path, strerror(errno));
    return RT_EIO;
}

/* How much larger this node's memtables are than the default: 2 MiB per step of its id mod 4
 * (+0 to +6 MiB). Replicas apply the same entries, so equal memtables would fill, flush and
 * then compact at the same moment on every node, and each flush's CPU and disk burst would
 * slow every replica of every shard at once, quorum included. Staggered, one node flushes at a
 * time and the other two still commit (docs/benchmarks.md, optimisation log). */
static size_t node_memtable_stagger(uint64_t node_id)
{
    return (size_t)(node_id % 4) * NODE_MEMTABLE_STAGGER_BYTES;
}

/* Open the node's raft log (cl_raftlog.h). Once a data dir has one, raft/NODE_LOG says so, and
 * a start without it is refused: a new empty log would let raft_uv's entries from before the
 * move come back as the log, without the entries written since. */
static int node_open_raftlog(struct cl_node *node)
{
    char log_dir[PATH_MAX + 16], current[PATH_MAX + 32], moved[PATH_MAX + 32];
    snprintf(log_dir, sizeof(log_dir), "%s/raftlog", node->data_dir);
    snprintf(current, sizeof(current), "%s/CURRENT", log_dir);
    snprintf(moved, sizeof(moved), "%s/raft/NODE_LOG", node->data_dir);
    struct stat st;
    bool has_moved = stat(moved, &st) == 0;
    if (has_moved && stat(current, &st) != 0) {
        RT_ERROR("%s is missing, but %s says the raft log is there: refusing to start (restore "
                 "it, or remove the node's data dir and add the node again)",
                 log_dir, moved);
        return RT_EIO;
    }
    size_t memtable_bytes =
        CL_RAFTLOG_WRITE_BUFFER_BYTES + node_memtable_stagger(node->config.node_id);
    int rv = cl_raftlog_open(node->loop, log_dir, (uint16_t)(node->config.shard_count + 1),
                             memtable_bytes, 0, &node->raftlog);
    if (rv != 0) {
        return rv;
    }
    cl_raftlog_set_failure_cb(node->raftlog, node_raftlog_failed, node);
    if (!has_moved) {
        FILE *f = fopen(moved, "w");
        bool written = f != NULL && fputs("raft logs are in ../raftlog (cl_raftlog.h)\n", f) != EOF;
        if (f == NULL || fclose(f) != 0 || !written) {
            RT_ERROR("cannot write %s: %s", moved, strerror(errno));
            return RT_EIO;
        }
    }
    return 0;
}

/* Start group @index: a shard (index < shard_count) over the node's store, or the meta group
 * (index == shard_count) over its own store as a one-shard engine. */
static int group_start(struct cl_node *node, struct group *g, uint16_t index)
{
    bool meta = index == node->config.shard_count;
    g->node = node;
    g->shard = index;
    g->group_id = meta ? CL_PEER_GROUP_META : index;
    if (meta) {
        snprintf(g->dir, sizeof(g->dir), "%s/raft/meta", node->data_dir);
    } else {
        snprintf(g->dir, sizeof(g->dir), "%s/raft/%u", node->data_dir, (unsigned)index);
    }
    int rv = mkdir_p(g->dir);
    if (rv != 0) {
        return rv;
    }
    g->batch_waiters = calloc(RT_BATCH_COMMANDS_MAX, sizeof(*g->batch_waiters));
    if (g->batch_waiters == NULL) {
        return RT_ENOMEM;
    }
    rt_batch_builder_init(&g->builder, RT_BATCH_BYTES_MAX);
    rt_batch_builder_init(&g->timer_builder, RT_BATCH_BYTES_MAX);
    struct store_rocks *db = meta ? node->meta_db : node->db;
    struct rt_engine_config ec = {meta ? 0 : index, meta ? 1 : node->config.shard_count,
                                  node->registry, store_rocks_store(db),
                                  meta ? &node->meta_cache : &node->cache};
    rv = cl_fsm_init(&g->fsm, db, &ec);
    if (rv != 0) {
        return rv;
    }
    if (node->config.snapshot_log_bytes != 0) {
        g->fsm.log_bytes_max = node->config.snapshot_log_bytes;
    }
    rv = cl_peer_transport_init(node->peer, g->group_id, &g->transport);
    if (rv != 0) {
        return rv;
    }
    const struct cl_member *self = &node->members[node->self];
    if (raft_uv_init(&g->io, node->loop, g->dir, &g->transport) != 0) {
        RT_ERROR("group %s: raft_uv_init: %s", g->dir, g->transport.errmsg);
        return RT_EIO;
    }
    raft_uv_set_snapshot_compression(&g->io, false); /* Our chunks are zstd already. */
    group_io_hook(g);
    cl_durable_init(&g->durable, &g->io);
    cl_durable_set_fill(&g->durable, cl_fsm_snapshot_fill, &g->fsm);
    if (raft_init(&g->raft, &g->durable.io, &g->fsm.raft_fsm, node->config.node_id,
                  self->peer_addr) != 0) {
        RT_ERROR("group %s: raft_init: %s", g->dir, raft_errmsg(&g->raft));
        return RT_EIO;
    }
    g->raft.data = g;
    g->durable.io.data = &g->raft; /* raft's io callbacks find it there. */
    cl_fsm_bind(&g->fsm, &g->raft);
    raft_set_election_timeout(&g->raft, CL_ELECTION_TIMEOUT_MS);
    raft_set_heartbeat_timeout(&g->raft, CL_HEARTBEAT_TIMEOUT_MS);
    raft_set_pre_vote(&g->raft, true);
    raft_set_snapshot_threshold(&g->raft, CL_SNAPSHOT_THRESHOLD);
    raft_set_snapshot_trailing(&g->raft, CL_SNAPSHOT_TRAILING);
    raft_set_install_snapshot_timeout(&g->raft, CL_INSTALL_SNAPSHOT_TIMEOUT_MS);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (unsigned m = 0; m < node->config.member_count; m++) {
        int role = m < CL_VOTERS_MAX ? RAFT_VOTER : RAFT_STANDBY;
        if (raft_configuration_add(&conf, node->members[m].id, node->members[m].peer_addr, role) !=
            0) {
            raft_configuration_close(&conf);
            return RT_ENOMEM;
        }
    }
    rv = raft_bootstrap(&g->raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
        RT_ERROR("group %s: raft_bootstrap: %s", g->dir, raft_errmsg(&g->raft));
        return RT_EIO;
    }
    if (raft_start(&g->raft) != 0) {
        RT_ERROR("group %s: raft_start: %s", g->dir, raft_errmsg(&g->raft));
        return RT_EIO;
    }
    g->started = true;
    return 0;
}

static int node_validate(const struct cl_node_config *c, unsigned *self)
{
    if (c->node_id == 0 || c->data_dir == NULL || c->shard_count == 0 ||
        c->shard_count > RT_SHARDS_MAX || c->member_count == 0 ||
        c->member_count > CL_MEMBERS_MAX || c->secret_len < CL_PEER_SECRET_BYTES_MIN ||
        c->secret_len > CL_PEER_SECRET_BYTES_MAX || strlen(c->data_dir) > PATH_MAX - 32) {
        return RT_EINVAL;
    }
    *self = CL_MEMBERS_MAX;
    for (unsigned i = 0; i < c->member_count; i++) {
        if (c->members[i].id == 0) {
            return RT_EINVAL;
        }
        for (unsigned j = 0; j < i; j++) {
            if (c->members[j].id == c->members[i].id) {
                return RT_EINVAL;
            }
        }
        if (c->members[i].id == c->node_id) {
            *self = i;
        }
    }
    return *self == CL_MEMBERS_MAX ? RT_EINVAL : 0;
}

static void node_handle_closed(uv_handle_t *handle);

int cl_node_start(uv_loop_t *loop, const struct cl_node_config *config,
                  const struct rt_registry *registry, struct cl_node **out)
{
    assert(loop != NULL && config != NULL && registry != NULL && out != NULL);
    unsigned self;
    if (node_validate(config, &self) != 0) {
        RT_ERROR("invalid node configuration (node id, members, shards or secret)");
        return RT_EINVAL;
    }
    struct cl_node *node = calloc(1, sizeof(*node));
    if (node == NULL) {
        return RT_ENOMEM;
    }
    node->loop = loop;
    node->config = *config;
    node->registry = registry;
    node->self = self;
    memcpy(node->members, config->members, config->member_count * sizeof(struct cl_member));
    node->config.members = node->members;
    memcpy(node->secret, config->secret, config->secret_len);
    node->config.secret = node->secret;
    snprintf(node->data_dir, sizeof(node->data_dir), "%s", config->data_dir);
    node->config.data_dir = node->data_dir;
    if (node->config.raft_link_bytes_max == 0 ||
        node->config.raft_link_bytes_max > CL_LINK_MESSAGE_BYTES_MAX) {
        node->config.raft_link_bytes_max = CL_LINK_MESSAGE_BYTES_MAX;
    }
    rt_clock_init_system(&node->clock);
    rt_buf_init(&node->msg, CL_LINK_MESSAGE_BYTES_MAX);
    rt_buf_init(&node->raft_msg, CL_LINK_MESSAGE_BYTES_MAX);
    uv_idle_init(loop, &node->idle); /* Before any group: raft's sends may start it. */
    node->idle.data = node;
    node->forwards = calloc(NODE_FORWARDS_SLOTS, sizeof(*node->forwards));
    node->groups = calloc(config->shard_count + 1u, sizeof(*node->groups)); /* + meta */
    int rv = node->forwards != NULL && node->groups != NULL ? 0 : RT_ENOMEM;
    char path[PATH_MAX + 16];
    if (rv == 0) {
        rv = mkdir_p(node->data_dir);
    }
    if (rv == 0) {
        rv = node_check_identity(node);
    }
    if (rv == 0) {
        snprintf(path, sizeof(path), "%s/raft", node->data_dir);
        rv = mkdir_p(path);
    }
    if (rv == 0) {
        struct store_rocks_options so;
        store_rocks_options_default(&so);
        so.create_if_missing = 1;
        so.write_buffer_bytes += node_memtable_stagger(config->node_id);
        snprintf(path, sizeof(path), "%s/db", node->data_dir);
        rv = store_rocks_open(path, &so, &node->db);
    }
    if (rv == 0) {
        struct store_rocks_options so;
        store_rocks_options_default(&so);
        so.create_if_missing = 1;
        so.block_cache_bytes = 8u << 20; /* One small map. */
        so.write_buffer_bytes = 1u << 20;
        snprintf(path, sizeof(path), "%s/meta-db", node->data_dir);
        rv = store_rocks_open(path, &so, &node->meta_db);
    }
    if (rv == 0) {
        rv = node_open_raftlog(node);
    }
    if (rv == 0) {
        rv = rt_cache_init(&node->cache,
                           config->cache_bytes != 0 ? config->cache_bytes : RT_CACHE_BYTES_DEFAULT);
    }
    if (rv == 0) {
        rv = rt_cache_init(&node->meta_cache, RT_META_CACHE_BYTES);
    }
    struct cl_peer_config pc = {config->cluster_id, config->node_id, node->members[self].peer_addr,
                                node->secret, config->secret_len};
    if (rv == 0) {
        rv = cl_peer_create(loop, &pc, &node->peer);
    }
    if (rv == 0) {
        rv = cl_peer_listen(node->peer);
    }
    if (rv != 0) {
        goto fail;
    }
    cl_peer_set_forward_handler(node->peer, node_on_forward_stream, node);
    for (uint16_t s = 0; s <= config->shard_count; s++) { /* The shards, then the meta group. */
        rv = group_start(node, &node->groups[s], s);
        node->groups_started = (uint16_t)(s + 1);
        if (rv != 0) {
            goto fail;
        }
    }
    cl_flusher_init(&node->flusher, loop);
    node->flusher.prepare.data = node;
    uv_check_init(loop, &node->check);
    node->check.data = node;
    uv_check_start(&node->check, node_check_cb);
    uv_timer_init(loop, &node->tick);
    node->tick.data = node;
    uv_timer_start(&node->tick, node_tick_cb, NODE_TICK_MS, NODE_TICK_MS);
    uv_timer_init(loop, &node->stop_timer);
    node->stop_timer.data = node;
    node->handles_open = 6; /* With the raft log's. */
    node_maintain_links(node);
    RT_INFO("node %llu started: %u shards, %u members, data in %s",
            (unsigned long long)config->node_id, (unsigned)config->shard_count,
            config->member_count, node->data_dir);
    *out = node;
    return 0;

fail:
    /* Start-up failures end the process (payd exits with the logged reason); free what is
     * simple to free and let the OS reclaim the rest of a half-started raft. */
    if (rv == RT_ENOMEM) {
        RT_ERROR("node %llu failed to start: out of memory", (unsigned long long)config->node_id);
    } /* Every other failure was logged where it happened, with its reason. */
    return rv;
}

/* ---- Status ---- */

static bool node_member_alive(const struct cl_node *node, unsigned m)
{
    return m == node->self || node->out[m].link != NULL;
}

/* @name, then a map of @count counters (@names[i] -> @values[i]): how cluster.status reports
 * counters (tests/integration/itest.c reads them back with read_counters). */
static void node_write_counters(struct rt_mp_writer *w, const char *name, const char *const names[],
                                const uint64_t values[], uint32_t count)
{
    rt_mp_write_cstr(w, name);
    rt_mp_write_map(w, count);
    for (uint32_t i = 0; i < count; i++) {
        rt_mp_write_cstr(w, names[i]);
        rt_mp_write_uint(w, values[i]);
    }
}

/* The process's resident set (/proc/self/statm), 0 if it cannot be read. */
static uint64_t node_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) {
        return 0;
    }
    unsigned long long size_pages = 0, resident_pages = 0;
    int n = fscanf(f, "%llu %llu", &size_pages, &resident_pages);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)resident_pages * (uint64_t)page : 0;
}

/* The process's anonymous memory in transparent huge pages (AnonHugePages in
 * /proc/self/smaps_rollup), 0 if it cannot be read: whether malloc's huge pages
 * (config.malloc_huge_pages) are really given. The kernel walks the mappings to answer: fine
 * for cluster.status, which is read now and then. */
static uint64_t node_anon_huge_pages_bytes(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (f == NULL) {
        return 0;
    }
    char line[128];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = sscanf(line, "AnonHugePages: %llu kB", &kib) == 1;
    }
    fclose(f);
    return found ? (uint64_t)kib * 1024u : 0;
}

/* Bytes of the entries raft holds in memory: every group's log since its last snapshot (raft
 * 0.15 keeps them all; --snapshot-bytes bounds them). Entries received in one message share
 * its buffer, so this is what the entries take, not what their buffers were allocated for. */
static uint64_t node_raft_entries_bytes(const struct cl_node *node)
{
    uint64_t bytes = 0;
    for (unsigned g = 0; g <= node->config.shard_count; g++) {
        const struct group *group = &node->groups[g];
        if (!group->started || group->closed) {
            continue;
        }
        const struct raft_log *log = &group->raft.log;
        for (size_t i = log->front; i != log->back; i = (i + 1) % log->size) {
            bytes += log->entries[i].buf.len;
        }
    }
    return bytes;
}

/* cluster.status "memory": the resident set and what holds it, so that an operator can tell
 * caches filling up to their budgets from growth (docs/operations.md). */
static void node_write_memory(const struct cl_node *node, struct rt_mp_writer *w)
{
    struct store_rocks_memory store = {0}, log = {0};
    store_rocks_memory(node->db, &store);
    store_rocks_memory(node->meta_db, &store);
    cl_raftlog_memory(node->raftlog, &log);
    /* Every arena's figures (glibc walks their free lists: a few ms at worst, admin only). */
    struct mallinfo2 heap = mallinfo2();
    static const char *const names[] = {"rss_bytes",
                                        "malloc_in_use_bytes",
                                        "malloc_free_bytes",
                                        "state_cache_bytes",
                                        "store_memtables_bytes",
                                        "store_table_readers_bytes",
                                        "store_block_cache_bytes",
                                        "raft_log_memtables_bytes",
                                        "raft_log_table_readers_bytes",
                                        "raft_log_block_cache_bytes",
                                        "raft_entries_bytes",
                                        "anon_huge_pages_bytes",
                                        "malloc_huge_pages"};
    const uint64_t values[] = {node_rss_bytes(),
                               (uint64_t)heap.uordblks + (uint64_t)heap.hblkhd,
                               (uint64_t)heap.fordblks,
                               node->cache.bytes + node->meta_cache.bytes,
                               store.memtables,
                               store.table_readers,
                               store.block_cache,
                               log.memtables,
                               log.table_readers,
                               log.block_cache,
                               node_raft_entries_bytes(node),
                               node_anon_huge_pages_bytes(),
                               node->config.malloc_huge_pages ? 1u : 0u};
    static_assert(sizeof(values) / sizeof(values[0]) == sizeof(names) / sizeof(names[0]),
                  "a value per name");
    node_write_counters(w, "memory", names, values, (uint32_t)(sizeof(names) / sizeof(names[0])));
}

void cl_node_status(struct cl_node *node, struct rt_mp_writer *w)
{
    assert(node != NULL && w != NULL);
    char cluster_id[17];
    snprintf(cluster_id, sizeof(cluster_id), "%016" PRIx64, node->config.cluster_id);
    struct group *meta = &node->groups[node->config.shard_count];
    rt_mp_write_map(w, 13);
    node_write_memory(node, w);
    struct cl_raftlog_stats ls;
    cl_raftlog_get_stats(node->raftlog, &ls);
    static const char *const log_names[] = {"writes",   "entries",          "bytes",
                                            "failures", "journal_restarts", "journal_large_writes"};
    const uint64_t log_values[] = {ls.writes,   ls.entries,          ls.bytes,
                                   ls.failures, ls.journal_restarts, ls.journal_large_writes};
    static_assert(sizeof(log_values) / sizeof(log_values[0]) ==
                      sizeof(log_names) / sizeof(log_names[0]),
                  "a value per name");
    node_write_counters(w, "raft_log", log_names, log_values,
                        (uint32_t)(sizeof(log_names) / sizeof(log_names[0])));
    const struct raft_message_stats *msgs = &node->raft_stats;
    static const char *const msg_names[] = {"sent_on_links", "sent_by_raft_uv", "send_failures",
                                            "received", "dropped"};
    const uint64_t msg_values[] = {msgs->sent_on_links, msgs->sent_by_raft_uv, msgs->send_failures,
                                   msgs->received, msgs->dropped};
    static_assert(sizeof(msg_values) / sizeof(msg_values[0]) ==
                      sizeof(msg_names) / sizeof(msg_names[0]),
                  "a value per name");
    node_write_counters(w, "raft_messages", msg_names, msg_values,
                        (uint32_t)(sizeof(msg_names) / sizeof(msg_names[0])));
    static const char *const read_names[] = {"linearizable", "barriers", "failed"};
    const uint64_t read_values[] = {node->read_stats.linearizable, node->read_stats.barriers,
                                    node->read_stats.failed};
    static_assert(sizeof(read_values) / sizeof(read_values[0]) ==
                      sizeof(read_names) / sizeof(read_names[0]),
                  "a value per name");
    node_write_counters(w, "reads", read_names, read_values,
                        (uint32_t)(sizeof(read_names) / sizeof(read_names[0])));
    rt_mp_write_cstr(w, "meta");
    rt_mp_write_map(w, 4);
    rt_mp_write_cstr(w, "leader");
    uint64_t meta_leader = meta->started && !meta->closed ? group_leader(meta) : 0;
    if (meta_leader != 0) {
        rt_mp_write_uint(w, meta_leader);
    } else {
        rt_mp_write_nil(w);
    }
    rt_mp_write_cstr(w, "term");
    rt_mp_write_uint(w, meta->raft.current_term);
    rt_mp_write_cstr(w, "applied_index");
    rt_mp_write_uint(w, rt_engine_applied_index(&meta->fsm.engine));
    rt_mp_write_cstr(w, "map_ready");
    rt_mp_write_bool(w, node->map_ready);
    rt_mp_write_cstr(w, "node_id");
    rt_mp_write_uint(w, node->config.node_id);
    rt_mp_write_cstr(w, "cluster_id");
    rt_mp_write_cstr(w, cluster_id);
    rt_mp_write_cstr(w, "shard_count");
    rt_mp_write_uint(w, node->config.shard_count);
    rt_mp_write_cstr(w, "inflight");
    rt_mp_write_uint(w, node->inflight);
    rt_mp_write_cstr(w, "forwarded");
    rt_mp_write_uint(w, node->forwarded);
    rt_mp_write_cstr(w, "stopping");
    rt_mp_write_bool(w, node->stopping);
    rt_mp_write_cstr(w, "nodes");
    rt_mp_write_array(w, node->config.member_count);
    for (unsigned m = 0; m < node->config.member_count; m++) {
        rt_mp_write_map(w, 5);
        rt_mp_write_cstr(w, "node_id");
        rt_mp_write_uint(w, node->members[m].id);
        rt_mp_write_cstr(w, "api_addr");
        rt_mp_write_cstr(w, node->members[m].api_addr);
        rt_mp_write_cstr(w, "peer_addr");
        rt_mp_write_cstr(w, node->members[m].peer_addr);
        rt_mp_write_cstr(w, "http_addr");
        rt_mp_write_cstr(w, node->members[m].http_addr);
        rt_mp_write_cstr(w, "alive");
        rt_mp_write_bool(w, node_member_alive(node, m));
    }
    rt_mp_write_cstr(w, "shards");
    uint16_t shards = node->groups_started < node->config.shard_count ? node->groups_started
                                                                      : node->config.shard_count;
    rt_mp_write_array(w, shards);
    for (uint16_t s = 0; s < shards; s++) {
        struct group *g = &node->groups[s];
        uint64_t leader = g->closed ? 0 : group_leader(g);
        rt_mp_write_map(w, 12);
        rt_mp_write_cstr(w, "shard_id");
        rt_mp_write_uint(w, s);
        rt_mp_write_cstr(w, "leader");
        if (leader != 0) {
            rt_mp_write_uint(w, leader);
        } else {
            rt_mp_write_nil(w);
        }
        rt_mp_write_cstr(w, "replicas");
        rt_mp_write_array(w, node->config.member_count);
        for (unsigned m = 0; m < node->config.member_count; m++) {
            rt_mp_write_uint(w, node->members[m].id);
        }
        rt_mp_write_cstr(w, "term");
        rt_mp_write_uint(w, g->raft.current_term);
        rt_mp_write_cstr(w, "commit_index");
        rt_mp_write_uint(w, g->raft.commit_index);
        rt_mp_write_cstr(w, "applied_index");
        rt_mp_write_uint(w, rt_engine_applied_index(&g->fsm.engine));
        rt_mp_write_cstr(w, "history_hash");
        rt_mp_write_uint(w, rt_engine_history_hash(&g->fsm.engine));
        rt_mp_write_cstr(w, "acked_commands");
        rt_mp_write_uint(w, g->acked_commands);
        raft_index durable;
        raft_term durable_term;
        cl_durable_get(&g->durable, &durable, &durable_term);
        rt_mp_write_cstr(w, "durable_index");
        rt_mp_write_uint(w, durable);
        rt_mp_write_cstr(w, "history_mismatches");
        rt_mp_write_uint(w, g->history_mismatches);
        /* How far back this replica's raft log reaches: as a leader it must send the whole
         * shard to a follower that lacks an entry before log_first_index. raft 0.15 has no
         * accessor; its log struct is public. */
        rt_mp_write_cstr(w, "snapshot_index");
        rt_mp_write_uint(w, g->raft.log.snapshot.last_index);
        rt_mp_write_cstr(w, "log_first_index");
        rt_mp_write_uint(w, g->raft.log.offset + 1);
    }
}

uint16_t cl_node_shard_count(const struct cl_node *node)
{
    assert(node != NULL);
    return node->config.shard_count;
}

uint64_t cl_node_shard_leader(struct cl_node *node, uint16_t shard, const char **api_addr)
{
    assert(node != NULL && api_addr != NULL);
    *api_addr = NULL;
    if (shard >= node->config.shard_count || node->groups[shard].closed) {
        return 0;
    }
    uint64_t leader = group_leader(&node->groups[shard]);
    unsigned m = node_member_index(node, leader);
    if (leader == 0 || m == CL_MEMBERS_MAX) {
        return 0;
    }
    *api_addr = node->members[m].api_addr;
    return leader;
}

uint64_t cl_node_id(const struct cl_node *node)
{
    assert(node != NULL);
    return node->config.node_id;
}

/* ---- Stop ---- */

static void node_finish(struct cl_node *node);

/* One of the node's handles (or its raft log) is closed; the last one finishes the stop. */
static void node_release(struct cl_node *node)
{
    assert(node->handles_open > 0);
    if (--node->handles_open == 0) {
        node_finish(node);
    }
}

static void node_handle_closed(uv_handle_t *handle)
{
    node_release(handle->data);
}

static void node_raftlog_closed(void *arg)
{
    struct cl_node *node = arg;
    node->raftlog = NULL;
    node_release(node);
}

static void node_peer_destroyed(void *arg)
{
    struct cl_node *node = arg;
    uv_close((uv_handle_t *)&node->check, node_handle_closed);
    uv_close((uv_handle_t *)&node->idle, node_handle_closed);
    uv_close((uv_handle_t *)&node->tick, node_handle_closed);
    uv_close((uv_handle_t *)&node->stop_timer, node_handle_closed);
    cl_flusher_close(&node->flusher, node_handle_closed);
    cl_raftlog_close(node->raftlog, node_raftlog_closed, node);
}

static void node_close_links_and_peer(struct cl_node *node)
{
    for (unsigned m = 0; m < CL_MEMBERS_MAX; m++) {
        if (node->out[m].link != NULL) {
            cl_link_close(node->out[m].link);
        }
    }
    for (unsigned i = 0; i < sizeof(node->in) / sizeof(node->in[0]); i++) {
        if (node->in[i] != NULL) {
            cl_link_close(node->in[i]);
        }
    }
    cl_peer_destroy(node->peer, node_peer_destroyed, node);
}

static void group_closed_cb(struct raft *raft)
{
    struct group *g = raft->data;
    struct cl_node *node = g->node;
    raft_uv_close(&g->io);
    cl_peer_transport_close(&g->transport);
    g->closed = true;
    assert(node->stop_pending > 0);
    if (--node->stop_pending == 0) {
        node_run_deferred(node);
        node_close_links_and_peer(node);
    }
}

static void node_close_groups(struct cl_node *node)
{
    uv_timer_stop(&node->stop_timer);
    node_expire_forwards(node, true);
    node->stop_pending = 0;
    for (uint16_t s = 0; s < node->groups_started; s++) {
        struct group *g = &node->groups[s];
        group_fail_acks(g, RT_EUNAVAIL, "node stopping");
        group_flush(g);      /* Fails at once: raft is closing; waiters get UNAVAILABLE. */
        group_read_flush(g); /* Likewise, through its barrier's callback. */
        if (g->started) {
            node->stop_pending++;
            raft_close(&g->raft, group_closed_cb);
        }
    }
    if (node->stop_pending == 0) {
        node_close_links_and_peer(node);
    }
}

static void stop_timer_cb(uv_timer_t *timer)
{
    struct cl_node *node = timer->data;
    bool moving = false;
    for (uint16_t s = 0; s < node->groups_started; s++) {
        moving = moving || node->groups[s].transferring;
    }
    if (!moving || node_now(node) >= node->last_timer_scan_ms) {
        node_close_groups(node);
    }
}

void cl_node_stop(struct cl_node *node, void (*cb)(void *arg), void *arg)
{
    assert(node != NULL);
    assert(!node->stopping);
    node->stopping = true;
    node->stop_cb = cb;
    node->stop_arg = arg;
    /* Hand leaderships over first, so that clients see a short election-free switch. */
    unsigned transfers = 0;
    for (uint16_t s = 0; s < node->groups_started; s++) {
        struct group *g = &node->groups[s];
        if (node->config.member_count > 1 && raft_state(&g->raft) == RAFT_LEADER &&
            !g->transferring) {
            g->transfer.data = g;
            if (raft_transfer(&g->raft, &g->transfer, 0, transfer_cb) == 0) {
                g->transferring = true;
                transfers++;
            }
        }
    }
    RT_INFO("stopping: handing over %u leaderships", transfers);
    /* Re-used as the deadline of the hand-over. */
    node->last_timer_scan_ms = node_now(node) + NODE_STOP_TRANSFER_MS;
    uv_timer_start(&node->stop_timer, stop_timer_cb, transfers > 0 ? 50 : 0, 50);
}

static void node_finish(struct cl_node *node)
{
    for (uint16_t s = 0; s < node->groups_started; s++) {
        struct group *g = &node->groups[s];
        cl_fsm_close(&g->fsm);
        rt_batch_builder_free(&g->builder);
        rt_batch_builder_free(&g->timer_builder);
        free(g->batch_waiters);
    }
    store_rocks_close(node->db);
    store_rocks_close(node->meta_db);
    rt_cache_free(&node->cache);
    rt_cache_free(&node->meta_cache);
    rt_buf_free(&node->msg);
    rt_buf_free(&node->raft_msg);
    free(node->sent);
    free(node->groups);
    free(node->forwards);
    void (*cb)(void *) = node->stop_cb;
    void *arg = node->stop_arg;
    RT_INFO("node %llu stopped", (unsigned long long)node->config.node_id);
    free(node);
    if (cb != NULL) {
        cb(arg);
    }
}
