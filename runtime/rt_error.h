/* rt_error: the one table of error codes used by every Payraft module.
 *
 * Functions return 0 on success or a negative RT_E* code. Foreign errors (errno, RocksDB's
 * errptr, msgpack status, OpenSSL) are converted to one of these at the module boundary.
 * The wire names (CONTRACT.md "Error codes") are part of the user contract: the numeric
 * values are internal and may change, the names may not.
 */
#ifndef RT_ERROR_H
#define RT_ERROR_H

/* X(name, value, wire_code, message)
 * wire_code is what a client sees in a response's `code` field. */
#define RT_ERRORS(X)                                                                               \
    X(RT_EINVAL, -1, "INVALID_ARGUMENT", "invalid argument")                                       \
    X(RT_EUNAUTH, -2, "UNAUTHENTICATED", "unauthenticated")                                        \
    X(RT_EREPLAYED, -3, "REPLAYED", "nonce replayed")                                              \
    X(RT_EFORBIDDEN, -4, "FORBIDDEN", "forbidden")                                                 \
    X(RT_ENOTFOUND, -5, "NOT_FOUND", "not found")                                                  \
    X(RT_ECONFLICT, -6, "CONFLICT", "idempotency key reused with different parameters")            \
    X(RT_ESTATE, -7, "INVALID_STATE", "operation not allowed in the object's state")               \
    X(RT_ETOOLARGE, -8, "TOO_LARGE", "too large")                                                  \
    X(RT_ERATE, -9, "RATE_LIMITED", "rate limited")                                                \
    X(RT_EUNAVAIL, -10, "UNAVAILABLE", "unavailable, retry")                                       \
    X(RT_ETIMEOUT, -11, "TIMEOUT", "timed out")                                                    \
    X(RT_EINTERNAL, -12, "INTERNAL", "internal error")                                             \
    X(RT_ENOMEM, -13, "INTERNAL", "out of memory")                                                 \
    X(RT_EIO, -14, "INTERNAL", "storage i/o error")                                                \
    X(RT_ECORRUPT, -15, "INTERNAL", "stored data is corrupt")                                      \
    X(RT_EMALFORMED, -16, "INVALID_ARGUMENT", "malformed encoding")                                \
    X(RT_EVERSION, -17, "INVALID_ARGUMENT", "unsupported format version")                          \
    X(RT_EDUPLICATE, -18, "OK", "already applied")

enum rt_error {
#define RT_ERROR_ENUM(name, value, wire, msg) name = value,
    RT_ERRORS(RT_ERROR_ENUM)
#undef RT_ERROR_ENUM
};

/* Human-readable text for @code (0 gives "ok"; unknown codes give "unknown error"). */
const char *rt_strerror(int code);

/* Wire code for @code as listed in CONTRACT.md ("OK" for 0, "INTERNAL" for unknown codes). */
const char *rt_wire_code(int code);

/* Map a wire code name back to its RT_E* value; returns RT_EINTERNAL for unknown names and
 * 0 for "OK". @name is pointer + length (bytes off the network are not NUL-terminated). */
int rt_error_from_wire(const char *name, unsigned name_len);

#endif /* RT_ERROR_H */
