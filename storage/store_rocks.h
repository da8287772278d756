/* store_rocks: the node's RocksDB database behind the rt_store interface.
 *
 * One database per node holds every shard (keys are shard-prefixed, see rt_key.h) in the
 * column families of rt_store.h plus "default" (unused). Writes go to a buffered WAL that is
 * not synced per batch: the raft log is the durable log. RocksDB recovers a consistent prefix
 * of committed batches (atomic_flush, point-in-time WAL recovery), and each batch carries its
 * shard's applied index (meta "applied" key), so after a crash raft re-applies the entries
 * above the recovered applied index. store_rocks_sync makes everything written so far
 * durable; it is what lets raft compact its log (cl_fsm.h, Snapshots). A clean close syncs.
 *
 * Single-threaded use from the node's loop thread (RocksDB's own threads flush and compact),
 * except store_rocks_sync, which any thread may call while the loop writes.
 */
#ifndef STORE_ROCKS_H
#define STORE_ROCKS_H

#include <stddef.h>
#include <stdint.h>

#include "rt_store.h"

struct store_rocks_options {
    size_t block_cache_bytes;  /* Shared LRU block cache; 0 = default (32 MiB). */
    size_t write_buffer_bytes; /* Memtable size per column family; 0 = default (16 MiB). */
    int create_if_missing;     /* Create a new database if @path holds none. */
};

struct store_rocks; /* Opaque; its first member is a struct rt_store. */
struct rocksdb_options_t;
struct rocksdb_t;
struct rocksdb_column_family_handle_t;

/* What every RocksDB database of a node sets, whoever opens it (this module, cl_raftlog):
 * background work that does not get in the loops' way. Files are written back in 1 MiB steps
 * as they grow, not in one burst at their fsync; and RocksDB's flush and compaction threads,
 * which every database of the process shares, run at the lowest CPU priority. Why, and what
 * it measured: store_rocks.c. */
void store_rocks_background_options(struct rocksdb_options_t *options);

/* Write @cf's memtables (NULL: the "default" family's) of @db, a database of this module or
 * not (cl_raftlog), to table files and wait for it. NULL, or RocksDB's message of why not (the
 * caller frees it with rocksdb_free). */
char *store_rocks_flush_cf(struct rocksdb_t *db, struct rocksdb_column_family_handle_t *cf);

/* Memtable arena blocks of this size, for memtables of at least 8 blocks: malloc maps each as
 * exactly 2 MiB (the block, its 16-byte header, rounded up to a page; payd keeps malloc's mmap
 * threshold below it), which Linux places on a 2 MiB boundary. With transparent huge pages
 * asked for (payd starts with glibc.malloc.hugetlb=1, docs/operations.md) a block is then one
 * huge page, faulted in once instead of 512 times. RocksDB's own choice (1 MiB) maps 1 MiB and
 * a page, which no huge page fits. */
#define STORE_ARENA_BLOCK_BYTES (2u * 1024u * 1024u - 4096u)

/* Share of a memtable's write buffer given to its bloom filter, in the two column families
 * that have one (state and index: the ones read for keys that are often absent). */
#define STORE_MEMTABLE_BLOOM_RATIO 0.05

/* Memtables of @write_buffer_bytes, in blocks of STORE_ARENA_BLOCK_BYTES when they are large
 * enough (otherwise RocksDB's block size: an eighth of the memtable, at most 1 MiB). For every
 * RocksDB database of a node (this module, cl_raftlog). */
void store_rocks_memtable_options(struct rocksdb_options_t *options, size_t write_buffer_bytes);

void store_rocks_options_default(struct store_rocks_options *options);
/* Open (or create) the database at @path. RT_EIO with the reason logged (a path that is not
 * a Payraft database, a database another process holds, a disk error). */
int store_rocks_open(const char *path, const struct store_rocks_options *options,
                     struct store_rocks **out);
/* Make every batch written so far durable (writes and fsyncs the WAL). Thread-safe; blocks
 * for the fsync, so the node calls it from a worker. RT_EIO. */
int store_rocks_sync(struct store_rocks *db);
/* Sync and close. NULL is a no-op. */
void store_rocks_close(struct store_rocks *db);
/* The rt_store view of @db, for the engine. */
struct rt_store *store_rocks_store(struct store_rocks *db);
/* Delete every key of @shard in every column family (dropping a replica, or before a
 * snapshot restore). RT_EIO. */
int store_rocks_drop_shard(struct store_rocks *db, uint16_t shard);
/* Hard-linked checkpoint of the whole database into @dir (which must not exist). RT_EIO. */
int store_rocks_checkpoint(struct store_rocks *db, const char *dir);

/* Approximate figures for status and metrics. */
struct store_rocks_stats {
    uint64_t commits;      /* Write batches committed. */
    uint64_t commit_bytes; /* Bytes of keys and values committed. */
    uint64_t gets;
    uint64_t scans;
};
void store_rocks_stats(const struct store_rocks *db, struct store_rocks_stats *stats);

/* The memory a RocksDB database holds, by RocksDB's own accounting (cluster.status "memory",
 * docs/operations.md): what the memtables hold (the active ones and those waiting for their
 * flush), the index and filter blocks of the open SST files (they stay outside the block cache,
 * so they grow with the data: about 6 bytes per stored order in a soak), and the block
 * cache's use. */
struct store_rocks_memory {
    uint64_t memtables;
    uint64_t table_readers;
    uint64_t block_cache;
};
/* Adds @db's figures to @out (so that a node can sum its databases). */
void store_rocks_memory(const struct store_rocks *db, struct store_rocks_memory *out);
/* The same for a database opened elsewhere (cl_raftlog): @cfs[0..@count) are its column
 * families that share one block cache; @count 0 means "default" alone. Adds to @out. */
void store_rocks_memory_of(struct rocksdb_t *db, struct rocksdb_column_family_handle_t *const *cfs,
                           size_t count, struct store_rocks_memory *out);

#endif /* STORE_ROCKS_H */
