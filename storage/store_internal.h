/* store_internal: storage/'s private interface between store_rocks.c and store_snapshot.c.
 * Not part of the public contract (store_rocks.h); nothing outside storage/ includes it. */
#ifndef STORE_INTERNAL_H
#define STORE_INTERNAL_H

#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_store.h"
#include "store_rocks.h"

/* The meta key holding @shard's applied record (rt_key_meta(shard, "applied")). */
size_t store_rocks_applied_key(uint8_t *out, uint16_t shard);
/* The handle of column family @cf. */
rocksdb_column_family_handle_t *store_rocks_cf(struct store_rocks *db, enum rt_cf cf);
/* A consistent read view; release with store_rocks_snapshot_release. */
const rocksdb_snapshot_t *store_rocks_snapshot_acquire(struct store_rocks *db);
void store_rocks_snapshot_release(struct store_rocks *db, const rocksdb_snapshot_t *snapshot);
/* Like rt_store_ops.applied (its index only) / scan, but reading from @snapshot. */
int store_rocks_applied_index_at(struct store_rocks *db, const rocksdb_snapshot_t *snapshot,
                                 uint16_t shard, uint64_t *index);
int store_rocks_scan_at(struct store_rocks *db, const rocksdb_snapshot_t *snapshot, enum rt_cf cf,
                        const uint8_t *prefix, size_t prefix_len, const uint8_t *start,
                        size_t start_len, rt_scan_cb cb, void *arg);
/* Write @batch (WAL off); RT_EIO with @what logged on failure. */
int store_rocks_write(struct store_rocks *db, rocksdb_writebatch_t *batch, const char *what);

#endif /* STORE_INTERNAL_H */
