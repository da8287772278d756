/* pr_json: JSON <-> msgpack for payctl (not part of the installed library, which speaks only
 * msgpack).
 *
 * JSON -> msgpack (what a user types becomes a request body):
 *   object -> map (keys in the order written; a repeated key is an error), array -> array,
 *   string -> str (UTF-8; "\u0000" is refused), true/false -> bool, null -> nil,
 *   integer -> int: the smallest msgpack encoding, uint for >= 0; -2^63..2^63-1 (jansson's
 *   json_int_t; larger integers are refused as too big, and no v1 field needs them).
 *   A number with a fraction or an exponent is refused: amounts are integers in fen, and a
 *   float that reached the server would either be refused there or, worse, be rounded here.
 * Bounded: at most PR_JSON_BYTES_MAX bytes of text, nesting at most PR_JSON_DEPTH_MAX deep
 * (the outermost container counts one, as in rt_mp), output at most out->max bytes.
 *
 * msgpack -> JSON (what the server answered, for people and scripts):
 *   map -> object (a key that is not a str is written as the JSON text of the key, quoted),
 *   array -> array, str -> string (invalid UTF-8 bytes become U+FFFD; control characters are
 *   escaped), bin and ext -> base64 string (RFC 4648, padded), ints exactly (uint64 too),
 *   float -> number (%.17g; NaN and infinities -> null), nil -> null.
 *   Pretty-printed with @indent spaces per level, or compact for @indent 0.
 */
#ifndef PR_JSON_H
#define PR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "rt_buf.h"

/* Largest JSON text accepted: a request body holds at most 1 MiB. */
#define PR_JSON_BYTES_MAX (1024u * 1024u)
/* Deepest nesting accepted: the same bound as the msgpack reader's (RT_MP_DEPTH_MAX). */
#define PR_JSON_DEPTH_MAX 16u
/* Room for an error message, NUL included. */
#define PR_JSON_ERR_BYTES 256u
/* Most spaces of indent per level when pretty-printing. */
#define PR_JSON_INDENT_MAX 8u

/* Convert the JSON text @text (@len bytes, need not be NUL-terminated) to one msgpack value
 * appended to @out (caller-owned; its max bounds the output). Returns 0; RT_EINVAL with a
 * message in @err (NUL-terminated, @err_cap bytes, may be NULL) naming the place and the rule
 * for text that is not valid JSON, a float, a too big integer, or nesting too deep;
 * RT_ETOOLARGE for text above PR_JSON_BYTES_MAX or output above out->max; RT_ENOMEM. On
 * failure @out is as it was. */
int pr_json_to_msgpack(const char *text, size_t len, struct rt_buf *out, char *err, size_t err_cap);

/* Convert the msgpack value @mp (@len bytes: exactly one well-formed value, nesting bounded as
 * rt_mp_validate) to JSON text appended to @out, followed by a NUL that out->len does not count
 * (so out->data is a C string). @indent 0..PR_JSON_INDENT_MAX. Returns 0; RT_EMALFORMED if @mp
 * is not one valid value; RT_ETOOLARGE past out->max; RT_ENOMEM. On failure @out is as it
 * was. */
int pr_json_from_msgpack(const uint8_t *mp, size_t len, unsigned indent, struct rt_buf *out);

#endif /* PR_JSON_H */
