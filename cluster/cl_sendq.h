/* cl_sendq: coalesced writes to a libuv stream.
 *
 * A node answers many requests per loop turn, and each used to be its own write(2): the
 * syscalls cost more than the work. Instead, bytes queued during one loop turn leave in one
 * write, just before the loop waits for I/O again (a uv_prepare handle of the owner's
 * cl_flusher). Nothing is delayed past the current loop turn.
 *
 * The common path allocates nothing: the socket usually takes everything at once
 * (uv_try_write). What it does not take is copied into one uv_write request, and while that
 * request is in flight later bytes wait in the queue, so order is kept.
 *
 * Limits: a queue holds at most @max_bytes (queued plus being written). A push past that is
 * refused with RT_EUNAVAIL and the owner decides (close the connection, answer UNAVAILABLE):
 * a reader that stops reading cannot make us buffer without bound.
 *
 * Lifetime: the owner must not free a queue while cl_sendq_busy(). @drained_cb tells it that
 * everything queued was written (status 0), or that the stream failed (status < 0: what was
 * queued is dropped, later pushes are refused, the owner closes the stream). The callback never
 * runs inside cl_sendq_push; it may push, but an owner that always pushes from it would keep
 * the flusher in one loop turn (none does). cl_sendq_cancel drops what is queued and detaches the
 * queue from its flusher, for a stream about to be closed.
 */
#ifndef CL_SENDQ_H
#define CL_SENDQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rt_buf.h"

struct cl_sendq;
typedef void (*cl_sendq_drained_cb)(struct cl_sendq *q, int status);

/* Flushes the queues that have bytes, once per loop turn. One per owner (node, API server);
 * prepare.data is the owner's (for its close callback). */
struct cl_flusher {
    uv_prepare_t prepare;
    struct cl_sendq *head; /* Queues with bytes to write (doubly linked). */
};

struct cl_sendq {
    uv_stream_t *stream;
    struct cl_flusher *flusher;
    struct rt_buf queued; /* Not yet handed to the socket. */
    size_t writing;       /* Handed to libuv in a uv_write, not yet confirmed. */
    size_t max_bytes;
    bool scheduled; /* On the flusher's list. */
    bool failed;
    struct cl_sendq *next, *prev;
    cl_sendq_drained_cb drained_cb;
    void *data;
};

void cl_flusher_init(struct cl_flusher *flusher, uv_loop_t *loop);
/* Stop flushing and close the prepare handle (@close_cb as for uv_close, may be NULL). Every
 * queue must have been cancelled or drained first. */
void cl_flusher_close(struct cl_flusher *flusher, uv_close_cb close_cb);

void cl_sendq_init(struct cl_sendq *q, struct cl_flusher *flusher, uv_stream_t *stream,
                   size_t max_bytes, cl_sendq_drained_cb drained_cb, void *data);
/* Queue @len bytes. RT_EUNAVAIL when full or failed (nothing queued). */
int cl_sendq_push(struct cl_sendq *q, const void *bytes, size_t len);
/* Queue two pieces as one (a header and its message): both or neither. */
int cl_sendq_push2(struct cl_sendq *q, const void *a, size_t a_len, const void *b, size_t b_len);
/* Bytes queued or being written: what a reader still owes us. */
size_t cl_sendq_bytes(const struct cl_sendq *q);
/* Queued bytes or a write in flight, on a queue that has not failed or been cancelled: the
 * owner must not close the stream yet. (The queue's memory must in any case outlive the
 * stream's close callback.) */
bool cl_sendq_busy(const struct cl_sendq *q);
/* Drop what is queued and leave the flusher's list; a write in flight still completes (or is
 * cancelled by uv_close) and calls @drained_cb. */
void cl_sendq_cancel(struct cl_sendq *q);
/* Release the buffer. Only when !cl_sendq_busy() or after the stream's close callback. */
void cl_sendq_free(struct cl_sendq *q);

#endif
