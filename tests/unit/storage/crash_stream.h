/* crash_stream: the deterministic stream of commits of the crash test.
 *
 * Commit i (1-based) writes keys derived from i in every column family, deletes some keys of
 * earlier commits, and updates a running sum in meta read back from the store
 * (read-modify-write): replaying a commit over state that already holds it would count it
 * twice, so a recovery that is not an exact prefix shows up in the final digest. */
#ifndef CRASH_STREAM_H
#define CRASH_STREAM_H

#include <stdint.h>

#include "rt_store.h"

#define CRASH_SHARD   7u
#define CRASH_COMMITS 20000u
/* Small memtables: the child's writes get flushed (atomically) many times before the kill. */
#define CRASH_WRITE_BUFFER_BYTES (64u * 1024u)
/* Set in a report of store_child that says "everything up to this index is synced". */
#define CRASH_SYNCED_BIT (1ull << 63)
/* Rounds with syncs sync after every this many commits. */
#define CRASH_SYNC_EVERY 97u

/* Build commit @index into @ws (reset here) and commit it to @store; asserts success. */
void crash_stream_commit(struct rt_store *store, struct rt_writeset *ws, uint64_t index);

#endif /* CRASH_STREAM_H */
