/* api_server: the msgpack-over-TCP API (CONTRACT.md "Wire protocol") on the node's loop.
 *
 * Per connection: frames are cut by api_frame (length checked before any allocation), each
 * decoded by api_envelope, checked against the 300 s window, authenticated, checked against
 * the node's nonce cache, then routed to the cluster (cl_node_submit / cl_node_query).
 * Requests on one connection are pipelined and answered as they complete (out of order).
 * A frame that cannot be read at all is answered with id 0 and the connection is closed.
 *
 * Limits: API_SERVER_CONNS_MAX connections; API_CONN_INFLIGHT_MAX requests in flight and
 * API_CONN_WRITE_BYTES_MAX response bytes queued per connection (above either, reading pauses:
 * backpressure, nothing is dropped; a client still API_CONN_WRITE_BYTES_HARD behind is
 * disconnected); responses leave once per loop turn, coalesced (cl_sendq); a connection idle for
 * API_CONN_IDLE_MS is closed; each app may send config->app_rate requests per second to one node
 * (token bucket, one second of burst), beyond which it gets RATE_LIMITED. Admin requests are not
 * rate limited.
 *
 * Operations: cluster.status (admin), cluster.shards (any signed caller: where each shard's
 * leader takes requests), app.create (admin), app.get (admin or the app itself),
 * order.create / order.get / order.close (an app on its own orders; admin for the app named by
 * body.app_id). docs/protocol.md documents them; other CONTRACT operations answer
 * INVALID_ARGUMENT until their issues land.
 */
#ifndef API_SERVER_H
#define API_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cl_node.h"

#define API_SERVER_CONNS_MAX  4096u
#define API_CONN_INFLIGHT_MAX 4096u
#define API_CONN_IDLE_MS      (10u * 60u * 1000u)
/* Response bytes queued for one connection before reading from it pauses: a client that
 * pipelines without reading answers cannot make the node buffer without bound. */
#define API_CONN_WRITE_BYTES_MAX (8u * 1024u * 1024u)
/* Response bytes one connection may owe at all (answers to requests already in flight when
 * reading paused): past this the connection is closed. */
#define API_CONN_WRITE_BYTES_HARD (4u * API_CONN_WRITE_BYTES_MAX)
/* Apps tracked by the per-app rate limiter on one node. */
#define API_RATE_APPS_MAX 4096u
/* Default per-app request rate on one node (requests/s; a burst of one second is allowed). */
#define API_RATE_DEFAULT 100000u

struct api_server_config {
    const char *addr;            /* "host:port" to listen on. */
    const uint8_t *admin_secret; /* Copied. */
    size_t admin_secret_len;
    uint32_t app_rate; /* Requests per second per app on this node; 0 = no limit. */
};

struct api_server;

/* Listen on config->addr. RT_EINVAL (bad address, or an empty admin secret), RT_EIO (port in
 * use: logged), RT_ENOMEM or RT_EINTERNAL. */
int api_server_start(uv_loop_t *loop, struct cl_node *node, const struct api_server_config *config,
                     struct api_server **out);
/* Stop accepting, close every connection (replies still owed are dropped), then call @cb. The
 * server frees itself once the node has answered everything it owed. */
void api_server_stop(struct api_server *server, void (*cb)(void *arg), void *arg);

#endif /* API_SERVER_H */
