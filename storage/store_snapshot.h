/* store_snapshot: a shard's data as a bounded, compressed stream of buffers, and back.
 *
 * This is what raft's FSM snapshot carries. The stream is a sequence of chunks, each one
 * buffer handed to the caller's sink (the raft FSM turns them into struct raft_buffer):
 *
 *   chunk   = header (32 bytes) | zstd-compressed records
 *   header  = magic "PRSNAP01" (8) | shard be16 | flags be16 (bit 0: last chunk, bit 1:
 *             marker) | chunk_no be32 | applied_index be64 | raw_len be32 | comp_len be32
 *   records = { cf u8 | key_len be32 | key | val_len be32 | val }*    (raw_len bytes)
 *
 * A marker is a stream of one header alone (flags: marker and last; chunk 0; both lengths 0):
 * it says "the store itself holds this shard at applied_index", which is what a node keeps as
 * its own raft snapshot (cl_fsm.h, Snapshots). It has no records, so restore refuses it; only
 * store_snapshot_peek reads it.
 *
 * Every chunk decompresses to at most RT_SNAPSHOT_CHUNK_BYTES; the whole stream is bounded by
 * RT_SNAPSHOT_BYTES_MAX (a shard larger than that must be split into more shards). Keys in the
 * stream all start with the shard's prefix, and restore checks it. Restore validates the whole
 * stream (every header, length, record and the shard prefix) before it changes anything, so a
 * corrupt snapshot leaves the shard untouched. It then drops every key of the shard, writes the
 * records in bounded write batches, and writes the applied index last, so a crash during
 * restore leaves the shard at applied index 0 (raft then sends the snapshot again) rather than
 * half-restored.
 */
#ifndef STORE_SNAPSHOT_H
#define STORE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "store_rocks.h"

#define STORE_SNAPSHOT_HEADER_BYTES 32u

/* Called once per chunk; takes ownership of @chunk (malloc'd) on success (return 0). A
 * negative return aborts the snapshot with that code (and the chunk is freed by the caller of
 * the sink, i.e. store_snapshot_write). */
typedef int (*store_snapshot_sink)(void *arg, uint8_t *chunk, size_t len);

/* Stream shard @shard's data (every column family) at its current applied index, reading
 * from a consistent RocksDB snapshot. RT_ETOOLARGE past RT_SNAPSHOT_BYTES_MAX, RT_EIO, or the
 * sink's code. At least one chunk is always produced (an empty shard has one empty chunk). */
int store_snapshot_write(struct store_rocks *db, uint16_t shard, store_snapshot_sink sink,
                         void *arg);

/* Write the marker for @shard at @applied_index into @out. */
void store_snapshot_marker(uint16_t shard, uint64_t applied_index,
                           uint8_t out[STORE_SNAPSHOT_HEADER_BYTES]);

/* The shard and applied index a snapshot stream was taken at, from its first chunk's header,
 * and whether it is a marker. RT_ECORRUPT when the bytes do not start with a header, or claim
 * to be a marker and are anything more. Restore still checks everything of a full stream. */
int store_snapshot_peek(const uint8_t *chunk, size_t len, uint16_t *shard, uint64_t *applied_index,
                        int *is_marker);

/* Replace shard @shard's data with the snapshot held in @chunks[0..count). RT_ECORRUPT (the
 * shard is untouched), RT_EIO (the shard may be left empty at applied index 0). */
int store_snapshot_restore(struct store_rocks *db, uint16_t shard, const uint8_t *const *chunks,
                           const size_t *lens, size_t count);

#endif /* STORE_SNAPSHOT_H */
