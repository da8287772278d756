#include "cl_sendq.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rt_error.h"

/* A queue that grew past this for a burst gives the memory back once it drains. */
#define SENDQ_KEEP_BYTES (256u * 1024u)

/* The part of a flush the socket did not take at once. */
struct sendq_write {
    uv_write_t req;
    struct cl_sendq *q;
    size_t len;
    uint8_t bytes[];
};

static void flusher_prepare_cb(uv_prepare_t *prepare);

static void sendq_schedule(struct cl_sendq *q)
{
    struct cl_flusher *f = q->flusher;
    if (q->scheduled) {
        return;
    }
    q->scheduled = true;
    q->prev = NULL;
    q->next = f->head;
    if (f->head != NULL) {
        f->head->prev = q;
    } else {
        uv_prepare_start(&f->prepare, flusher_prepare_cb);
    }
    f->head = q;
}

static void sendq_unschedule(struct cl_sendq *q)
{
    struct cl_flusher *f = q->flusher;
    if (!q->scheduled) {
        return;
    }
    q->scheduled = false;
    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        f->head = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    }
    q->next = q->prev = NULL;
    if (f->head == NULL) {
        uv_prepare_stop(&f->prepare);
    }
}

static void sendq_fail(struct cl_sendq *q, int status)
{
    q->failed = true;
    rt_buf_reset(&q->queued);
    q->drained_cb(q, status);
}

static void sendq_write_cb(uv_write_t *req, int status)
{
    struct sendq_write *w = req->data;
    struct cl_sendq *q = w->q;
    assert(q->writing >= w->len);
    q->writing -= w->len;
    free(w);
    if (status != 0) {
        sendq_fail(q, status);
    } else if (q->queued.len > 0) {
        sendq_schedule(q);
    } else {
        q->drained_cb(q, 0);
    }
}

static void sendq_emptied(struct cl_sendq *q)
{
    rt_buf_reset(&q->queued);
    if (q->queued.cap > SENDQ_KEEP_BYTES) {
        rt_buf_free(&q->queued);
    }
}

static void sendq_flush(struct cl_sendq *q)
{
    assert(q->writing == 0 && q->queued.len > 0 && !q->failed);
    uv_buf_t buf = uv_buf_init((char *)q->queued.data, (unsigned)q->queued.len);
    int n = uv_try_write(q->stream, &buf, 1);
    if (n == UV_EAGAIN) {
        n = 0;
    } else if (n < 0) {
        sendq_fail(q, n);
        return;
    }
    size_t rest = q->queued.len - (size_t)n;
    if (rest == 0) {
        sendq_emptied(q);
        q->drained_cb(q, 0);
        return;
    }
    struct sendq_write *w = malloc(sizeof(*w) + rest);
    if (w == NULL) {
        sendq_fail(q, UV_ENOMEM);
        return;
    }
    memcpy(w->bytes, q->queued.data + n, rest);
    sendq_emptied(q);
    w->q = q;
    w->len = rest;
    w->req.data = w;
    buf = uv_buf_init((char *)w->bytes, (unsigned)rest);
    int rv = uv_write(&w->req, q->stream, &buf, 1, sendq_write_cb);
    if (rv != 0) {
        free(w);
        sendq_fail(q, rv);
        return;
    }
    q->writing = rest;
}

static void flusher_prepare_cb(uv_prepare_t *prepare)
{
    /* The handle's data belongs to the owner (its close callback reads it). */
    struct cl_flusher *f =
        (struct cl_flusher *)((char *)prepare - offsetof(struct cl_flusher, prepare));
    while (f->head != NULL) {
        struct cl_sendq *q = f->head;
        sendq_unschedule(q);
        if (q->writing == 0 && q->queued.len > 0 && !q->failed) {
            sendq_flush(q); /* May call back into the owner, which may push or cancel. */
        }
    }
}

void cl_flusher_init(struct cl_flusher *flusher, uv_loop_t *loop)
{
    assert(flusher != NULL && loop != NULL);
    flusher->head = NULL;
    int rv = uv_prepare_init(loop, &flusher->prepare); /* libuv: cannot fail. */
    assert(rv == 0);
    (void)rv;
}

void cl_flusher_close(struct cl_flusher *flusher, uv_close_cb close_cb)
{
    assert(flusher->head == NULL);
    uv_close((uv_handle_t *)&flusher->prepare, close_cb);
}

void cl_sendq_init(struct cl_sendq *q, struct cl_flusher *flusher, uv_stream_t *stream,
                   size_t max_bytes, cl_sendq_drained_cb drained_cb, void *data)
{
    assert(q != NULL && flusher != NULL && stream != NULL && drained_cb != NULL);
    assert(max_bytes > 0 && max_bytes <= UINT32_MAX); /* uv_buf_t lengths are unsigned. */
    memset(q, 0, sizeof(*q));
    q->stream = stream;
    q->flusher = flusher;
    q->max_bytes = max_bytes;
    q->drained_cb = drained_cb;
    q->data = data;
    rt_buf_init(&q->queued, max_bytes);
}

int cl_sendq_push2(struct cl_sendq *q, const void *a, size_t a_len, const void *b, size_t b_len)
{
    assert(q != NULL);
    size_t room = q->max_bytes - cl_sendq_bytes(q);
    if (q->failed || a_len > room || b_len > room - a_len) {
        return RT_EUNAVAIL;
    }
    if (a_len + b_len == 0) {
        return 0;
    }
    if (rt_buf_reserve(&q->queued, a_len + b_len) != 0) {
        return RT_EUNAVAIL;
    }
    int rv = rt_buf_append(&q->queued, a, a_len);
    rv = rv == 0 ? rt_buf_append(&q->queued, b, b_len) : rv;
    assert(rv == 0); /* Reserved above. */
    (void)rv;
    if (q->writing == 0) {
        sendq_schedule(q);
    }
    return 0;
}

int cl_sendq_push(struct cl_sendq *q, const void *bytes, size_t len)
{
    return cl_sendq_push2(q, bytes, len, NULL, 0);
}

size_t cl_sendq_bytes(const struct cl_sendq *q)
{
    return q->queued.len + q->writing;
}

bool cl_sendq_busy(const struct cl_sendq *q)
{
    /* A failed or cancelled queue owes nothing: its owner may close the stream now (uv_close
     * cancels a write still in flight, whose callback runs before the close callback). */
    return !q->failed && (q->scheduled || q->queued.len > 0 || q->writing > 0);
}

void cl_sendq_cancel(struct cl_sendq *q)
{
    sendq_unschedule(q);
    rt_buf_reset(&q->queued);
    q->failed = true;
}

void cl_sendq_free(struct cl_sendq *q)
{
    sendq_unschedule(q);
    rt_buf_free(&q->queued);
}
