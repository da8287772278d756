#include "cl_link.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rt_buf.h"
#include "rt_error.h"
#include "rt_log.h"

#define LINK_HEADER_BYTES 4u

struct cl_link {
    uv_tcp_t *tcp;   /* Owned; malloc'd by cl_peer. */
    uint64_t remote; /* Node id at the other end. */
    cl_link_message_cb on_message;
    cl_link_closed_cb on_closed;
    void *data;
    struct rt_buf in; /* Bytes read and not yet delivered. */
    struct cl_sendq out;
    bool closing;
};

static void link_free_handle(uv_handle_t *handle)
{
    free(handle);
}

static void link_tcp_closed(uv_handle_t *handle)
{
    struct cl_link *link = handle->data;
    assert(link != NULL);
    assert(link->closing);
    free(link->tcp);
    link->tcp = NULL;
    rt_buf_free(&link->in);
    cl_sendq_free(&link->out);
    if (link->on_closed != NULL) {
        link->on_closed(link);
    }
    free(link);
}

void cl_link_close(struct cl_link *link)
{
    assert(link != NULL);
    if (link->closing) {
        return;
    }
    link->closing = true;
    cl_sendq_cancel(&link->out);
    uv_close((uv_handle_t *)link->tcp, link_tcp_closed);
}

static void link_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct cl_link *link = handle->data;
    (void)suggested;
    /* Read at most what completes the largest message: a peer cannot make us buffer more. */
    size_t want = 64u * 1024u;
    if (rt_buf_reserve(&link->in, want) != 0) {
        size_t room = link->in.max - link->in.len;
        if (room == 0 || rt_buf_reserve(&link->in, room) != 0) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        want = room;
    }
    buf->base = (char *)link->in.data + link->in.len;
    buf->len = want;
}

/* Deliver every complete message in the input buffer. false if the peer broke the format. */
static bool link_deliver(struct cl_link *link)
{
    size_t offset = 0;
    while (!link->closing && link->in.len - offset >= LINK_HEADER_BYTES) {
        uint32_t len = rt_get_be32(link->in.data + offset);
        if (len == 0 || len > CL_LINK_MESSAGE_BYTES_MAX) {
            RT_WARN("link to node %llu: bad message length %u: closing",
                    (unsigned long long)link->remote, len);
            return false;
        }
        if (link->in.len - offset - LINK_HEADER_BYTES < len) {
            break;
        }
        link->on_message(link, link->in.data + offset + LINK_HEADER_BYTES, len);
        offset += LINK_HEADER_BYTES + len;
    }
    if (offset > 0 && !link->closing) {
        memmove(link->in.data, link->in.data + offset, link->in.len - offset);
        link->in.len -= offset;
    }
    return true;
}

static void link_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct cl_link *link = stream->data;
    (void)buf;
    assert(link != NULL);
    if (nread < 0) {
        if (nread != UV_EOF) {
            RT_INFO("link to node %llu: %s", (unsigned long long)link->remote,
                    uv_strerror((int)nread));
        }
        cl_link_close(link);
        return;
    }
    if (nread == 0 && buf->base == NULL) {
        RT_WARN("link to node %llu: input buffer full: closing", (unsigned long long)link->remote);
        cl_link_close(link);
        return;
    }
    link->in.len += (size_t)nread;
    if (!link_deliver(link)) {
        cl_link_close(link);
    }
}

static void link_drained(struct cl_sendq *q, int status)
{
    if (status != 0) {
        cl_link_close(q->data);
    }
}

int cl_link_open(uv_stream_t *stream, struct cl_flusher *flusher, uint64_t remote_node,
                 cl_link_message_cb on_message, cl_link_closed_cb on_closed, void *data,
                 struct cl_link **out)
{
    assert(stream != NULL && flusher != NULL && on_message != NULL && out != NULL);
    struct cl_link *link = calloc(1, sizeof(*link));
    if (link == NULL) {
        stream->data = NULL;
        uv_close((uv_handle_t *)stream, link_free_handle);
        return RT_ENOMEM;
    }
    link->tcp = (uv_tcp_t *)stream;
    link->remote = remote_node;
    link->on_message = on_message;
    link->on_closed = on_closed;
    link->data = data;
    rt_buf_init(&link->in, CL_LINK_MESSAGE_BYTES_MAX + LINK_HEADER_BYTES);
    cl_sendq_init(&link->out, flusher, stream, CL_LINK_QUEUE_BYTES_MAX, link_drained, link);
    stream->data = link;
    int rv = uv_read_start(stream, link_alloc, link_read);
    if (rv != 0) {
        link->on_closed = NULL;
        cl_link_close(link);
        return RT_EUNAVAIL;
    }
    *out = link;
    return 0;
}

int cl_link_send(struct cl_link *link, const uint8_t *msg, size_t len)
{
    assert(link != NULL);
    assert(msg != NULL && len > 0);
    if (len > CL_LINK_MESSAGE_BYTES_MAX) {
        return RT_ETOOLARGE;
    }
    if (link->closing) {
        return RT_EUNAVAIL;
    }
    uint8_t header[LINK_HEADER_BYTES];
    rt_put_be32(header, (uint32_t)len);
    return cl_sendq_push2(&link->out, header, sizeof(header), msg, len);
}

void *cl_link_data(const struct cl_link *link)
{
    assert(link != NULL);
    return link->data;
}

uint64_t cl_link_remote(const struct cl_link *link)
{
    assert(link != NULL);
    return link->remote;
}
