/* api_frame: the decoder is a three-state machine over the stream.
 *
 *   HEADER --4 bytes, 1 <= L <= max--> BODY --L bytes--> DELIVERED --next feed--> HEADER
 *      \______________ L bytes already in the chunk: a view, straight back to HEADER ___/
 *   HEADER --L == 0 or L > max--> FAILED (for good)
 *
 * Only BODY buffers, and only when the frame does not arrive whole in one chunk: the common
 * case (small requests read in one go, many of them per read when pipelined) copies nothing.
 */
#include "api_frame.h"

#include <assert.h>
#include <string.h>

#include "rt_error.h"

enum api_frame_state {
    API_FRAME_STATE_HEADER,    /* Collecting the length prefix of the next frame. */
    API_FRAME_STATE_BODY,      /* Collecting frame_len payload bytes into body. */
    API_FRAME_STATE_DELIVERED, /* body holds the frame last returned; recycled on next feed. */
    API_FRAME_STATE_FAILED,    /* A bad length was seen: error is returned forever. */
};

void api_frame_decoder_init(struct api_frame_decoder *dec, uint32_t max)
{
    assert(dec != NULL);
    assert(max >= 1); /* An empty frame is never valid, so max 0 would accept nothing. */
    memset(dec, 0, sizeof(*dec));
    dec->max = max;
    dec->state = API_FRAME_STATE_HEADER;
    rt_buf_init(&dec->body, max);
}

void api_frame_decoder_free(struct api_frame_decoder *dec)
{
    assert(dec != NULL);
    assert(dec->max >= 1);
    rt_buf_free(&dec->body);
}

/* Enter FAILED with @error; it is what every later feed returns. */
static int api_frame_fail(struct api_frame_decoder *dec, int error)
{
    assert(dec != NULL);
    assert(error < 0);
    dec->state = API_FRAME_STATE_FAILED;
    dec->error = error;
    return error;
}

/* Forget the frame handed over last time; free a large buffer rather than keep it. */
static void api_frame_recycle(struct api_frame_decoder *dec)
{
    assert(dec->state == API_FRAME_STATE_DELIVERED);
    assert(dec->body.len == dec->frame_len);
    if (dec->body.cap > API_FRAME_KEEP_BYTES) {
        rt_buf_free(&dec->body);
    } else {
        rt_buf_reset(&dec->body);
    }
    dec->frame_len = 0;
    dec->state = API_FRAME_STATE_HEADER;
}

int api_frame_feed(struct api_frame_decoder *dec, const uint8_t *bytes, size_t len,
                   size_t *consumed, struct api_frame *frame)
{
    assert(dec != NULL && dec->max >= 1);
    assert(bytes != NULL || len == 0);
    assert(consumed != NULL && frame != NULL);
    *consumed = 0;
    frame->data = NULL;
    frame->len = 0;

    if (dec->state == API_FRAME_STATE_FAILED) {
        assert(dec->error < 0);
        return dec->error;
    }
    if (dec->state == API_FRAME_STATE_DELIVERED) {
        api_frame_recycle(dec);
    }

    size_t off = 0;
    if (dec->state == API_FRAME_STATE_HEADER) {
        assert(dec->header_len < API_FRAME_HEADER_BYTES);
        assert(dec->body.len == 0);
        size_t take = API_FRAME_HEADER_BYTES - dec->header_len;
        if (take > len) {
            take = len;
        }
        if (take > 0) { /* memcpy from NULL is undefined even for 0 bytes. */
            memcpy(dec->header + dec->header_len, bytes, take);
        }
        dec->header_len = (uint8_t)(dec->header_len + take);
        off = take;
        *consumed = off;
        if (dec->header_len < API_FRAME_HEADER_BYTES) {
            return API_FRAME_NEED_MORE;
        }
        /* The length is judged here, before anything is buffered for it. */
        const uint32_t frame_len = rt_get_be32(dec->header);
        dec->header_len = 0;
        if (frame_len == 0) {
            return api_frame_fail(dec, RT_EMALFORMED);
        }
        if (frame_len > dec->max) {
            return api_frame_fail(dec, RT_ETOOLARGE);
        }
        dec->frame_len = frame_len;
        if (len - off >= frame_len) {
            /* The whole payload is in this chunk: hand out a view, copy nothing. */
            frame->data = bytes + off;
            frame->len = frame_len;
            *consumed = off + frame_len;
            return API_FRAME_READY;
        }
        dec->state = API_FRAME_STATE_BODY;
    }

    assert(dec->state == API_FRAME_STATE_BODY);
    assert(dec->body.len < dec->frame_len);
    size_t take = dec->frame_len - dec->body.len;
    if (take > len - off) {
        take = len - off;
    }
    if (take > 0) {
        /* Grows by doubling up to frame_len <= max: memory follows the bytes received. */
        int rv = rt_buf_append(&dec->body, bytes + off, take);
        if (rv != 0) {
            assert(rv == RT_ENOMEM); /* frame_len <= max == body.max: never RT_ETOOLARGE. */
            return api_frame_fail(dec, rv);
        }
    }
    off += take;
    *consumed = off;
    if (dec->body.len < dec->frame_len) {
        assert(off == len);
        return API_FRAME_NEED_MORE;
    }
    dec->state = API_FRAME_STATE_DELIVERED;
    frame->data = dec->body.data;
    frame->len = dec->frame_len;
    return API_FRAME_READY;
}

bool api_frame_decoder_idle(const struct api_frame_decoder *dec)
{
    assert(dec != NULL);
    assert(dec->header_len < API_FRAME_HEADER_BYTES);
    return (dec->state == API_FRAME_STATE_HEADER && dec->header_len == 0) ||
           dec->state == API_FRAME_STATE_DELIVERED;
}

int api_frame_begin(struct rt_buf *out, size_t *start)
{
    assert(out != NULL);
    assert(start != NULL);
    static const uint8_t placeholder[API_FRAME_HEADER_BYTES] = {0};
    const size_t at = out->len;
    int rv = rt_buf_append(out, placeholder, sizeof(placeholder));
    if (rv != 0) {
        return rv; /* rt_buf_append leaves @out as it was. */
    }
    *start = at;
    return 0;
}

int api_frame_finish(struct rt_buf *out, size_t start)
{
    assert(out != NULL);
    assert(start <= out->len && out->len - start >= API_FRAME_HEADER_BYTES);
    const size_t payload = out->len - start - API_FRAME_HEADER_BYTES;
    if (payload == 0 || payload > API_FRAME_BYTES_MAX) {
        rt_buf_truncate(out, start);
        return payload == 0 ? RT_EINVAL : RT_ETOOLARGE;
    }
    rt_put_be32(out->data + start, (uint32_t)payload);
    return 0;
}
