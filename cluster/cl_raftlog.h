/* cl_raftlog: one raft log for every raft group of a node, in a RocksDB database of its own.
 *
 * Why: raft_uv gives each group its own log files and writes each group's entries with its own
 * durable write. On a disk without FUA (this VM's virtio disk, like most cloud disks) each such
 * write is a data write plus a cache flush, each a VM exit and a kernel worker's wake-up; with
 * 17 groups per node and small batches (64 clients at depth 1 put one or two orders in each
 * entry) that was over a quarter of the machine. Here a loop turn's entries of every group go
 * to disk in one synced write (docs/raft.md, One log per node).
 *
 * What stays with raft_uv: the term and vote (rare, synchronous), snapshots, the clock and the
 * transport. cl_node replaces load, append and truncate of each group's raft_uv io with this
 * module's, and tells it what a snapshot lets go (cl_raftlog_forget).
 *
 * Layout: keys 'e' group(2 bytes, big-endian) index(8, big-endian) hold entries, as
 * term(8, big-endian) type(1) data; key 'm' group marks a group whose log lives here. A
 * group's entries are contiguous from its first kept index to its last appended one.
 *
 * Writes: appends, truncations and forgets gather in one write batch during a loop turn; just
 * before the loop waits, the batch goes to a worker, which makes it durable in the journal
 * beside the database (cl_journal.h: a record synced in a file that is written over, not
 * grown, so the sync writes no file size) and then writes it to the database without a sync.
 * One write is in flight at a time; what arrives meanwhile forms the next (group commit
 * across groups). Open replays the journal; a clean close leaves it empty. A database that has
 * had a journal refuses to open without it.
 * Append callbacks fire on the loop thread in the order the appends were made, once their
 * write is durable, with 0 or RAFT_IOERR. A truncation or forget is ordered with the appends
 * around it: RocksDB applies a batch in order and the batches one after another.
 *
 * Upgrading: a group whose directory holds a raft_uv log from before this module, and no
 * marker here, has raft_uv's entries copied here at its first load (with the marker, in one
 * synced write); from then on raft_uv's entries are ignored. Downgrading is not supported, nor
 * losing the database (cl_node refuses to start without it once it existed).
 *
 * Loop thread only (the worker touches only the batch in flight, the database and the
 * journal). Load every group before the loop runs: a group's first load may write.
 */
#ifndef CL_RAFTLOG_H
#define CL_RAFTLOG_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cl_raftlog;

struct cl_raftlog_stats {
    uint64_t writes;               /* Synced writes done. */
    uint64_t entries;              /* Entries appended. */
    uint64_t bytes;                /* Entry bytes appended. */
    uint64_t failures;             /* Writes that failed (their appends got RAFT_IOERR). */
    uint64_t journal_restarts;     /* Laps of the journal, and writes too large for it. */
    uint64_t journal_large_writes; /* Writes too large for it: synced in RocksDB's WAL. */
};

/* Memtable size when cl_raftlog_open is given 0 (two memtables at most: RocksDB's default).
 * 32 MiB cost ~25 MiB of RSS per node for no throughput we could tell from the noise
 * (docs/benchmarks.md, optimisation log). */
#define CL_RAFTLOG_WRITE_BUFFER_BYTES (16u * 1024u * 1024u)

/* The journal's file name, in the log database's directory (RocksDB leaves files it did not
 * name alone, and a copy of the directory takes it along). */
#define CL_RAFTLOG_JOURNAL_FILE "payraft-journal"

/* Open (creating if missing) the log database in directory @path, and its journal, file
 * CL_RAFTLOG_JOURNAL_FILE there, of @journal_bytes (0 = CL_JOURNAL_BYTES_DEFAULT), for groups 0 to
 * @group_count - 1, with memtables of @write_buffer_bytes (0 = CL_RAFTLOG_WRITE_BUFFER_BYTES);
 * 0 or an RT_ code. */
int cl_raftlog_open(uv_loop_t *loop, const char *path, uint16_t group_count,
                    size_t write_buffer_bytes, size_t journal_bytes, struct cl_raftlog **out);

/* Close once nothing is outstanding in any group (the write in flight, if any, is waited for);
 * @cb(@arg) runs when the database is closed and @log freed. */
void cl_raftlog_close(struct cl_raftlog *log, void (*cb)(void *arg), void *arg);

/* Complete raft_uv's load for @group. On entry *start_index, *entries and *n_entries are what
 * raft_uv loaded (its log from before this module, or the bootstrap entry); on return they are
 * this log's entries for the group, raft_malloc'd as raft expects, and raft_uv's are freed or
 * taken over. @snapshot is raft_uv's (may be NULL). 0 or a RAFT_ code (raft_uv's entries are
 * freed either way). */
int cl_raftlog_load(struct cl_raftlog *log, uint16_t group, const struct raft_snapshot *snapshot,
                    raft_index *start_index, struct raft_entry *entries[], size_t *n_entries);

/* raft_io's append for @group: the entries follow the last one appended (or loaded). */
int cl_raftlog_append(struct cl_raftlog *log, uint16_t group, struct raft_io_append *req,
                      const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);

/* raft_io's truncate: drop @group's entries from @index on. */
void cl_raftlog_truncate(struct cl_raftlog *log, uint16_t group, raft_index index);

/* A snapshot made them unneeded: drop @group's entries below @index. Not synced on its own:
 * a crash may keep them, which load tolerates. */
void cl_raftlog_forget(struct cl_raftlog *log, uint16_t group, raft_index index);

/* Drop all of @group's entries; the next append gets @next_index (load uses it for entries a
 * snapshot replaced). */
void cl_raftlog_reset(struct cl_raftlog *log, uint16_t group, raft_index next_index);

/* A snapshot at @next_index - 1 is being installed from the leader (raft_uv's snapshot_put
 * with no trailing entries; raft has already dropped its log). Until install_end, @group's
 * appends get indexes from @next_index on and are held in memory: the old entries must stay
 * on disk until the snapshot is. install_end with status 0 (the snapshot is durable) drops
 * them and queues the held appends after that; with an error, the held appends fail and so
 * do the group's later ones, until the node restarts (raft's log no longer matches what is on
 * disk). The callbacks of failed appends run inside install_end. */
void cl_raftlog_install_begin(struct cl_raftlog *log, uint16_t group, raft_index next_index);
void cl_raftlog_install_end(struct cl_raftlog *log, uint16_t group, int status);

/* Appends of @group not yet completed: its raft_uv close must wait for them. */
unsigned cl_raftlog_outstanding(const struct cl_raftlog *log, uint16_t group);

void cl_raftlog_get_stats(const struct cl_raftlog *log, struct cl_raftlog_stats *out);

struct store_rocks_memory;
/* Adds the log database's memory (memtables, table readers, block cache) to @out. */
void cl_raftlog_memory(const struct cl_raftlog *log, struct store_rocks_memory *out);

/* @cb(@arg) runs once, on the loop thread, after the first failed write (its appends have
 * failed; the log refuses every later one). */
void cl_raftlog_set_failure_cb(struct cl_raftlog *log, void (*cb)(void *arg), void *arg);

#endif
