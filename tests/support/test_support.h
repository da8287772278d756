/* test_support: helpers shared by Payraft's tests.
 *
 * Include after <cmocka.h>'s prerequisites (stdarg, stddef, stdint, setjmp). */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "rt_store.h"

/* Make a fresh directory under $TMPDIR (or /tmp) named payraft-<tag>-XXXXXX; aborts on
 * failure. Returns a malloc'd path. */
/* Run @loop until @pred(@arg) holds; false if @timeout_ms pass first. Each turn blocks for at
 * most as long as the loop's next timer: tests keep a short repeating timer running. */
bool test_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, unsigned timeout_ms);

char *test_tmpdir(const char *tag);
/* rm -rf @path (best effort) and free it. */
void test_rmdir(char *path);

/* SHA-256 over every (cf, key, value) of @shard in every column family of @store, in order:
 * two stores with the same digest hold the same bytes for the shard. */
void test_store_digest(struct rt_store *store, uint16_t shard, uint8_t digest[32]);
/* Number of keys of @shard in @cf. */
size_t test_store_count(struct rt_store *store, enum rt_cf cf, uint16_t shard);

#endif /* TEST_SUPPORT_H */
