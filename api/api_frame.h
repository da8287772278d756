/* api_frame: the length-prefixed frames of the API port (CONTRACT.md "Wire protocol").
 *
 * A frame is a 4-byte big-endian unsigned length L, then L bytes of payload, with
 * 1 <= L <= max (API_FRAME_BYTES_MAX on the API port). Both halves are pure code: no sockets,
 * no loop, no clock. The server's read callback hands whatever bytes arrived to the decoder;
 * responses are built in an rt_buf by api_frame_begin/api_frame_finish around the payload.
 *
 * Decoder guarantees, for arbitrary (hostile) input cut into arbitrary chunks:
 * - the length is checked against max before a single byte is buffered or allocated: L == 0 is
 *   RT_EMALFORMED, L > max is RT_ETOOLARGE, and a claimed 4 GiB allocates nothing;
 * - memory follows the bytes that actually arrived, not the length claimed: a peer that sends
 *   a header promising 1 MiB and then 10 bytes costs a few hundred bytes, not 1 MiB (the
 *   buffer grows by doubling, so it holds at most twice what arrived, and never more than max);
 * - a frame that arrives whole inside one chunk is returned as a view into that chunk (no copy);
 *   only a frame that spans chunks is assembled in the decoder's own buffer;
 * - several frames in one chunk (pipelining) all come out: feed returns after each complete
 *   frame and says how many bytes it consumed; the caller feeds the rest again;
 * - after an error the decoder is stuck: every later feed returns the same error without
 *   looking at the bytes. The stream has lost its framing, so nothing after the bad header can
 *   be trusted; CONTRACT: answer with id 0 and close the connection.
 */
#ifndef API_FRAME_H
#define API_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_buf.h"

/* Bytes of the length prefix. Wire format. */
#define API_FRAME_HEADER_BYTES 4u
/* Largest payload on the API port: CONTRACT.md, "1 <= L <= 1 MiB". Wire format: clients size
 * their requests by it. */
#define API_FRAME_BYTES_MAX (1024u * 1024u)
/* A frame assembled across chunks leaves its buffer behind. Buffers up to this size are kept for
 * the next frame (no malloc per request); larger ones are freed once the frame has been handed
 * over, so an idle connection that once sent a 1 MiB frame does not hold 1 MiB forever. */
#define API_FRAME_KEEP_BYTES (64u * 1024u)

/* What api_frame_feed returns when it does not fail (failures are negative RT_E* codes). */
enum api_frame_result {
    API_FRAME_NEED_MORE = 0, /* Every byte given was consumed; the frame is not complete. */
    API_FRAME_READY = 1,     /* A complete frame is in *frame; *consumed may be < len. */
};

/* A complete frame's payload: a view, never NUL-terminated. */
struct api_frame {
    const uint8_t *data;
    uint32_t len; /* 1..max. */
};

/* Decoder state; the caller allocates the struct (on its connection object), initialises it in
 * place and frees it with api_frame_decoder_free. Fields are private. */
struct api_frame_decoder {
    uint32_t max;       /* Largest payload accepted, 1..UINT32_MAX. */
    uint8_t state;      /* enum in api_frame.c. */
    uint8_t header_len; /* Length-prefix bytes collected so far, 0..API_FRAME_HEADER_BYTES. */
    uint8_t header[API_FRAME_HEADER_BYTES]; /* The length prefix, possibly split over chunks. */
    uint32_t frame_len;                     /* L of the frame being assembled. */
    int error;                              /* The sticky error once failed; 0 before. */
    struct rt_buf body; /* Payload of a frame that spans chunks. Owned by the decoder. */
};

/* Initialise @dec to accept payloads of 1..@max bytes (API_FRAME_BYTES_MAX on the API port).
 * Allocates nothing. */
void api_frame_decoder_init(struct api_frame_decoder *dec, uint32_t max);
/* Release the decoder's buffer. Any frame view that pointed into it dies. @dec may be
 * re-initialised afterwards. */
void api_frame_decoder_free(struct api_frame_decoder *dec);

/* Feed @len bytes that arrived off the stream (@bytes may be NULL when @len is 0).
 *
 * Returns:
 * - API_FRAME_NEED_MORE: all @len bytes were taken (*consumed == len), no complete frame yet;
 * - API_FRAME_READY: a complete frame is in *frame, and *consumed (<= len) bytes of @bytes were
 *   taken; the caller hands the frame on, then feeds @bytes + *consumed again (a chunk may hold
 *   more frames);
 * - RT_EMALFORMED (a length of 0) or RT_ETOOLARGE (a length above max): the stream is broken;
 *   the decoder is failed for good (see the top of this file);
 * - RT_ENOMEM: the buffer could not grow; also sticky, since bytes were lost.
 * *consumed is always set (to how far the decoder read, on failure too); *frame is zeroed
 * unless the result is API_FRAME_READY.
 *
 * The frame view points either into @bytes (the frame arrived whole in this chunk) or into the
 * decoder's buffer. It is valid until the next api_frame_feed or api_frame_decoder_free on
 * @dec, and, in the first case, only while the caller keeps @bytes unchanged: a caller that
 * needs the payload longer (for example across a raft round trip) copies it. */
int api_frame_feed(struct api_frame_decoder *dec, const uint8_t *bytes, size_t len,
                   size_t *consumed, struct api_frame *frame);

/* True when @dec is between frames (nothing of a next frame received yet). A peer that closes
 * the connection while this is false cut a frame short. False once failed. */
bool api_frame_decoder_idle(const struct api_frame_decoder *dec);

/* Encoder. Start a frame at the end of @out: appends the 4-byte length prefix (patched later)
 * and sets *start to its offset. RT_ETOOLARGE if @out's max leaves no room, RT_ENOMEM; on
 * failure @out is unchanged. The caller then appends the payload (for example with an
 * rt_mp_writer on @out). */
int api_frame_begin(struct rt_buf *out, size_t *start);
/* Finish the frame begun at @start: patch the length prefix with the payload written since.
 * RT_EINVAL for an empty payload (no frame may be empty), RT_ETOOLARGE above
 * API_FRAME_BYTES_MAX; on failure @out is truncated back to @start, as if the frame had never
 * been begun, so the caller can encode an error response in its place. */
int api_frame_finish(struct rt_buf *out, size_t start);

#endif /* API_FRAME_H */
