/* cl_link: length-prefixed messages between two nodes over an authenticated stream.
 *
 * A link wraps a forwarding stream from cl_peer (already authenticated) and carries whole
 * messages: 4-byte big-endian length (1..CL_LINK_MESSAGE_BYTES_MAX) then that many bytes, an
 * msgpack array whose first element is the message type (cl_node.c defines them). Lengths are
 * checked before anything is allocated; a peer that sends a bad length is disconnected.
 * Outgoing messages are copied into the link's cl_sendq and leave together at the end of the
 * loop turn; when more than CL_LINK_QUEUE_BYTES_MAX are waiting for the socket, cl_link_send
 * refuses (RT_EUNAVAIL) instead of growing without bound.
 *
 * Loop thread only.
 */
#ifndef CL_LINK_H
#define CL_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cl_sendq.h"

/* One forwarded command carries at most a batch's worth of bytes. */
#define CL_LINK_MESSAGE_BYTES_MAX (4u * 1024u * 1024u)
/* Bytes queued for one peer before senders are refused (they answer UNAVAILABLE). */
#define CL_LINK_QUEUE_BYTES_MAX (64u * 1024u * 1024u)

struct cl_link;

/* A whole message; the view is valid during the call only. */
typedef void (*cl_link_message_cb)(struct cl_link *link, const uint8_t *msg, size_t len);
/* The link is gone (peer closed, error, or cl_link_close); its memory is freed after this. */
typedef void (*cl_link_closed_cb)(struct cl_link *link);

/* Take ownership of @stream (a malloc'd uv_tcp_t, as cl_peer hands out) and start reading;
 * writes are flushed by @flusher. RT_ENOMEM (the stream is closed and freed). */
int cl_link_open(uv_stream_t *stream, struct cl_flusher *flusher, uint64_t remote_node,
                 cl_link_message_cb on_message, cl_link_closed_cb on_closed, void *data,
                 struct cl_link **out);
/* Queue @msg (copied). RT_ETOOLARGE, RT_EUNAVAIL (closing or queue full), RT_ENOMEM. */
int cl_link_send(struct cl_link *link, const uint8_t *msg, size_t len);
/* Close; on_closed fires later, from the loop. Idempotent. */
void cl_link_close(struct cl_link *link);
void *cl_link_data(const struct cl_link *link);
uint64_t cl_link_remote(const struct cl_link *link);

#endif /* CL_LINK_H */
