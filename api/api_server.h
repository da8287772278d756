/* api_server: the msgpack-over-TCP API (CONTRACT.md "Wire protocol") on the node's loop.
 *
 * Per connection: frames are cut by api_frame (length checked before any allocation), each
 * decoded by api_envelope, checked against the 300 s window, authenticated, checked against
 * the node's nonce cache, then routed to the cluster (cl_node_submit / cl_node_query).
 * Requests on one connection are pipelined and answered as they complete (out of order).
 * A frame that cannot be read at all is answered with id 0 and the connection is closed.
 *
 * Limits: API_SERVER_CONNS_MAX connections; API_CONN_INFLIGHT_MAX requests in flight per
 * connection (reading pauses above it: backpressure, nothing is dropped); a connection idle
 * for API_CONN_IDLE_MS is closed.
 *
 * What works today (the API issue completes it): admin-signed requests (app "admin", HMAC
 * with the admin secret) for cluster.status and, acting for the app named by the body's
 * app_id, order.create, order.get and order.close. App-signed requests need app.create, which
 * comes with the API issue: until then they are UNAUTHENTICATED.
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

struct api_server_config {
    const char *addr;            /* "host:port" to listen on. */
    const uint8_t *admin_secret; /* Copied. */
    size_t admin_secret_len;
};

struct api_server;

/* Listen on config->addr. RT_EINVAL (bad address), RT_EIO (port in use: logged). */
int api_server_start(uv_loop_t *loop, struct cl_node *node, const struct api_server_config *config,
                     struct api_server **out);
/* Stop accepting, close every connection (replies still owed are dropped), then call @cb. The
 * server frees itself once the node has answered everything it owed. */
void api_server_stop(struct api_server *server, void (*cb)(void *arg), void *arg);

#endif /* API_SERVER_H */
