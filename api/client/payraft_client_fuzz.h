/* payraft_client_fuzz: the client library's decoders of server input, reachable on their own
 * for tests/fuzz/fuzz_client.c. Compiled into the library only in fuzz builds
 * (PAYRAFT_FUZZ_HOOKS, set by tests/fuzz/CMakeLists.txt); not installed.
 *
 * Each runs one decoder of payraft_client.c over bytes a server could send (or, for the route
 * key, a body the caller could pass) and checks the decoder's postconditions: the fuzzer's
 * oracle. Each returns 0 when they hold (whether or not the input decoded), or -1 after
 * printing the one that broke. */
#ifndef PAYRAFT_CLIENT_FUZZ_H
#define PAYRAFT_CLIENT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "payraft_client.h"

/* A response frame's payload, parsed as the client parses it and, when it parses, turned into
 * a struct pr_response (its fields within bounds) and freed. */
int pr_fuzz_response(const uint8_t *data, size_t len);

/* A cluster.shards result body, read into a shard map as @c reads it: when it parses, every
 * shard below the count names -1 or one of @c's servers, and none above it names any. */
int pr_fuzz_shard_map(const struct pr_client *c, const uint8_t *body, size_t len);

/* The routing key of a request @op with @body (which must be one valid msgpack map, as
 * pr_client_send checks first), as @c (made with the route option) finds it; its shard, in a
 * map of 16 shards led by none of @c's servers (set on @c if it has no map), routes nothing. */
int pr_fuzz_route_key(struct pr_client *c, const char *op, const uint8_t *body, size_t len);

#endif /* PAYRAFT_CLIENT_FUZZ_H */
