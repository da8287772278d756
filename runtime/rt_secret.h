/* rt_secret: reading a secret file, the one way every program here does it.
 *
 * A secret file holds the secret on one line; white space around it (spaces, tabs, line ends)
 * is ignored (CONTRACT.md, "Local cluster"). The secret itself is printable ASCII without spaces
 * (0x21..0x7e): app secrets are hex, cluster and admin secrets are what scripts/cluster.sh
 * generates, and anything else in such a file (a second line, a NUL, a stray control byte) is
 * a mistake worth refusing before it becomes a signature that never matches.
 *
 * Bounded: the path is at most RT_SECRET_PATH_BYTES_MAX bytes and the file at most
 * RT_SECRET_FILE_BYTES_MAX (a larger file is not a secret file, whatever it holds). A pipe or
 * terminal may be named (`--secret-file <(vault read ...)`): what it has not delivered within
 * RT_SECRET_WAIT_MS is an error, not a wait without end. The read buffer is wiped before
 * returning.
 */
#ifndef RT_SECRET_H
#define RT_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define RT_SECRET_FILE_BYTES_MAX 4096u
#define RT_SECRET_PATH_BYTES_MAX 4096u
#define RT_SECRET_WAIT_MS        5000u
/* Room for rt_secret_file_read's reason, path included. */
#define RT_SECRET_WHY_BYTES (RT_SECRET_PATH_BYTES_MAX + 128u)

/* Read the secret in @path into @out (at least @max bytes; no NUL added) and its length into
 * @len. The secret must be @min..@max bytes (1 <= @min <= @max <= RT_SECRET_FILE_BYTES_MAX).
 * Returns 0, or -1 with a one-line reason in @why (@why_cap >= 1; cut to fit), which starts
 * with the path ("run/admin.secret: No such file or directory") unless the path itself is
 * missing or too long; nothing is printed. */
int rt_secret_file_read(const char *path, size_t min, size_t max, uint8_t *out, size_t *len,
                        char *why, size_t why_cap);

#endif
