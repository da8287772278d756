/* cl_peer: the node's one peer port, shared by every raft group and by request forwarding.
 *
 * canonical/raft's stock TCP transport has no authentication and no notion of a group, so
 * Payraft brings its own. Each node listens on one TCP port. Every connection starts with a
 * handshake that names the cluster, the group (a shard's raft group, the meta group, or the
 * forwarding channel) and the connecting node, and proves on both sides knowledge of the
 * cluster secret against fresh nonces (HMAC-SHA256), so a recorded handshake cannot be
 * replayed and a node without the secret can neither join nor inject raft traffic. After the
 * handshake the stream belongs to whoever asked for it: raft for a group, the router for the
 * forwarding channel.
 *
 * Handshake (persistent wire format, all integers big-endian):
 *   client -> server  HELLO  (fixed 128 bytes)
 *       magic "PRPEER01" (8) | version u16 (=1) | reserved u16 (=0) | cluster_id u64 |
 *       group_id u32 | node_id u64 | nonce_c (32) | addr_len u8 (1..CL_PEER_ADDR_BYTES_MAX) |
 *       addr (the client's own peer address, zero-padded to 63 bytes)
 *   server -> client  CHALLENGE (fixed 72 bytes)
 *       magic "PRPEER01" (8) | nonce_s (32) | mac_s (32) = HMAC(secret, "S" | HELLO | nonce_s)
 *   client -> server  PROOF (fixed 32 bytes)
 *       mac_c = HMAC(secret, "C" | HELLO | nonce_s)
 *   server -> client  VERDICT (1 byte): 1 = accepted. On any failure the server closes
 *       without a verdict, and logs why (wrong magic/version/cluster, unknown group, bad mac,
 *       timeout).
 * Nonces come from RAND_bytes. Each side reads exactly the bytes of the handshake and no more,
 * so the first bytes of raft's own traffic are never swallowed. A handshake that does not
 * finish within CL_PEER_HANDSHAKE_TIMEOUT_MS is abandoned.
 *
 * What the handshake proves is membership of the cluster (knowledge of the secret), not which
 * node id a member is: any holder of the secret can claim any id. The secret is per cluster
 * and only on its nodes' disks (mode 0600).
 *
 * Everything runs on the node's uv loop thread.
 */
#ifndef CL_PEER_H
#define CL_PEER_H

#include <raft.h>
#include <raft/uv.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* "host:port" of a peer port; 63 fits an IPv4/IPv6 literal and port with room. */
#define CL_PEER_ADDR_BYTES_MAX 63u
/* The cluster secret: at least 256 bits of entropy as hex or raw bytes. */
#define CL_PEER_SECRET_BYTES_MIN     16u
#define CL_PEER_SECRET_BYTES_MAX     256u
#define CL_PEER_HANDSHAKE_TIMEOUT_MS 5000u
/* Connections in handshake at once (the rest are refused, and raft retries a second later):
 * bounds what a port scanner or a flood of bad peers can make us hold, while leaving room for
 * a restarting 5-node cluster where every group of every peer connects at once
 * (17 groups x 4 peers with the default 16 shards). */
#define CL_PEER_PENDING_MAX 256u
/* Groups one node can carry: every shard plus the meta group. */
#define CL_PEER_GROUPS_MAX 320u
/* Group ids: shards use 0..RT_SHARDS_MAX-1; the meta group and the forwarding channel are
 * fixed ids above them. */
#define CL_PEER_GROUP_META    0x10000u
#define CL_PEER_GROUP_FORWARD 0x10001u

struct cl_peer_config {
    uint64_t cluster_id;   /* Chosen at bootstrap; a peer of another cluster is refused. */
    uint64_t node_id;      /* This node (raft id), > 0. */
    const char *addr;      /* This node's peer address "host:port" (bind and advertise). */
    const uint8_t *secret; /* Cluster secret (copied), CL_PEER_SECRET_BYTES_MIN..MAX bytes. */
    size_t secret_len;
};

/* An authenticated stream handed to the forwarding handler. The handler owns @stream (a
 * uv_tcp_t allocated with malloc): it must uv_close it and free it in the close callback.
 * (Streams handed to raft are allocated with raft_malloc, because raft frees them with
 * raft_free.) */
typedef void (*cl_peer_forward_cb)(void *arg, uint64_t node_id, uv_stream_t *stream);

/* Completion of cl_peer_connect_forward: @stream is NULL with @status < 0 (RT_E*) on failure. */
struct cl_peer_connect;
typedef void (*cl_peer_connect_cb)(struct cl_peer_connect *req, uv_stream_t *stream, int status);
struct cl_peer_connect {
    void *data;            /* For the caller. */
    cl_peer_connect_cb cb; /* Set by cl_peer_connect_forward. */
    void *impl;            /* Private. */
};

struct cl_peer_stats {
    uint64_t accepted;         /* Handshakes accepted as server. */
    uint64_t rejected;         /* Handshakes refused as server (any reason). */
    uint64_t connected;        /* Handshakes completed as client. */
    uint64_t connect_failures; /* Client handshakes that failed. */
};

struct cl_peer; /* Opaque. */

/* Create the endpoint (does not listen yet). RT_EINVAL for a bad config, RT_ENOMEM. */
int cl_peer_create(uv_loop_t *loop, const struct cl_peer_config *config, struct cl_peer **out);
/* Bind and listen on config->addr. RT_EIO with a logged reason (address in use...). */
int cl_peer_listen(struct cl_peer *peer);
/* Set the handler of incoming forwarding streams (NULL refuses them). */
void cl_peer_set_forward_handler(struct cl_peer *peer, cl_peer_forward_cb cb, void *arg);
/* Open an authenticated forwarding stream to node @node_id at @addr. As in libuv, a non-zero
 * return (RT_EINVAL for a non-numeric address, node 0 or this node; RT_ENOMEM; RT_EUNAVAIL when
 * the peer is being destroyed or the connect fails at once) means the callback never fires.
 * Otherwise it fires exactly once: with the stream, or with RT_EUNAVAIL / RT_ETIMEOUT, or with
 * RT_EUNAVAIL during cl_peer_destroy. */
int cl_peer_connect_forward(struct cl_peer *peer, struct cl_peer_connect *req, uint64_t node_id,
                            const char *addr, cl_peer_connect_cb cb);

/* Set up @t as the raft_uv_transport of group @group_id (a shard id, or CL_PEER_GROUP_META).
 * raft_uv calls its init/listen/connect/close as usual; listen registers the group so that
 * incoming connections for it are handed to raft, and close unregisters it. The transport
 * must be closed (by raft_uv) before the peer is destroyed. RT_EINVAL if @group_id is taken. */
int cl_peer_transport_init(struct cl_peer *peer, uint32_t group_id, struct raft_uv_transport *t);
/* Free what cl_peer_transport_init allocated, after raft_uv has closed @t. */
void cl_peer_transport_close(struct raft_uv_transport *t);

void cl_peer_stats(const struct cl_peer *peer, struct cl_peer_stats *stats);

/* Stop listening, abandon handshakes in progress (callbacks fire with RT_EUNAVAIL) and call
 * @cb once every handle is closed; then the peer's memory is freed. Group transports must
 * already be closed. */
void cl_peer_destroy(struct cl_peer *peer, void (*cb)(void *arg), void *arg);

#endif /* CL_PEER_H */
