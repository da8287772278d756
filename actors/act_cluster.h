/* act_cluster: the cluster map, the one actor of the meta group.
 *
 * The meta group is a raft group of its own, replicated on every member, over a store of its
 * own (so its keys never mix with the shards'). It holds the map every node needs: the shard
 * count and the members with their addresses, and which members replicate each shard (today
 * every member replicates every shard). Key: "map".
 *
 * Operations (persistent numbering):
 *   ACT_CLUSTER_INIT  args: {shard_count: uint, nodes: [{node_id, peer_addr, api_addr,
 *       http_addr}]} (1..ACT_CLUSTER_NODES_MAX nodes, unique ids, addresses 1..63 bytes of
 *       printable ASCII). The first init stores the map; an identical init replies it
 *       (idempotent: every node's first leader may propose it); a different one is
 *       RT_ECONFLICT. Reply: the map.
 *   ACT_CLUSTER_GET   (read-only) args: {} -> the map; RT_ENOTFOUND before init.
 *
 * Map (stored state and reply): {v: 1, shard_count, nodes: [...as given, sorted by node_id],
 * replicas: [node_id, ...]}.
 */
#ifndef ACT_CLUSTER_H
#define ACT_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "rt_actor.h"

#define ACT_CLUSTER_NODES_MAX      16u
#define ACT_CLUSTER_ADDR_BYTES_MAX 63u
#define ACT_CLUSTER_KEY            "map"

enum act_cluster_op {
    ACT_CLUSTER_INIT = 0,
    ACT_CLUSTER_GET = 1,
    ACT_CLUSTER_OP_COUNT = 2,
};

extern const struct rt_actor_type act_cluster_type;

#endif /* ACT_CLUSTER_H */
