/* storage_helpers: shared by the storage tests (test_store_rocks, test_store_snapshot,
 * test_store_crash and the store_child helper program).
 *
 * Every helper asserts on failure (assert stays on in every build type), so that the tests
 * read as the steps they take. */
#ifndef STORAGE_HELPERS_H
#define STORAGE_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "rt_store.h"
#include "store_rocks.h"

/* Open (creating) the database at @path with @write_buffer_bytes memtables (0 = default);
 * asserts success. */
struct store_rocks *helper_open(const char *path, size_t write_buffer_bytes);

/* Deterministic pseudo-random numbers (splitmix64). */
uint64_t helper_mix(uint64_t x);
/* Fill @out[0..len) with bytes derived from @seed; @compressible makes half of them
 * repeat so that zstd has something to do. */
void helper_bytes(uint8_t *out, size_t len, uint64_t seed, int compressible);

/* Commit one write set for @shard at @index with a single write. */
void helper_put(struct rt_store *store, uint16_t shard, uint64_t index, enum rt_cf cf,
                const uint8_t *key, size_t key_len, const void *val, size_t val_len);
void helper_del(struct rt_store *store, uint16_t shard, uint64_t index, enum rt_cf cf,
                const uint8_t *key, size_t key_len);

/* Write about @raw_bytes of records (keys + values) for @shard across every column family,
 * in commits of up to 100 writes ending at applied index @last_index. Different @seed values
 * give different (and partly overlapping) keys and values. */
void helper_fill_shard(struct rt_store *store, uint16_t shard, uint64_t seed, size_t raw_bytes,
                       uint64_t last_index);

/* Digest of @shard (test_store_digest) compared between two stores. */
int helper_same_shard(struct rt_store *a, struct rt_store *b, uint16_t shard);
uint64_t helper_applied(struct rt_store *store, uint16_t shard);
/* Keys of @shard over every column family. */
size_t helper_count_all(struct rt_store *store, uint16_t shard);

/* Seed for randomized tests: PAYRAFT_TEST_SEED if set, else time and pid. Printed. */
uint64_t helper_seed(const char *test);

#endif /* STORAGE_HELPERS_H */
