/* cl_journal: makes the raft log's writes durable with a sync that writes data only.
 *
 * Why: cl_raftlog used to make each write durable with a RocksDB WAL sync. A WAL file grows
 * with every write, so each fdatasync also writes the file's inode (its new size): two device
 * writes and a cache flush per sync instead of one write and the flush. On this VM's disk a
 * 4 KiB write + fdatasync takes 0.26 ms appending to a file and 0.16 ms over blocks the file
 * already has (docs/benchmarks.md, optimisation log). The journal is one file of fixed
 * capacity written from its start again and again, so once it has reached that capacity its
 * syncs write data only, and RocksDB's WAL is synced once per lap instead of once per write.
 *
 * The contract with its one user (cl_raftlog.c):
 *   - every write of the log is first appended here as one record, synced, and then written
 *     to RocksDB without a sync; it is acknowledged after both;
 *   - when a record does not fit in the room left, the log syncs RocksDB's WAL first (every
 *     earlier write is then durable there), then calls cl_journal_restart: the next record
 *     goes at the start again, under a new generation;
 *   - at open, the log replays the current generation's records into RocksDB in order, makes
 *     RocksDB durable, and restarts the journal.
 * Why replaying is right whatever part of the records RocksDB already holds: RocksDB holds
 * every write before the generation's first record (synced before the restart), perhaps some
 * of the generation's own (its WAL reaches the disk when the kernel writes it back), and no
 * write after the last record that reached the disk (each write is journaled first). The
 * log's writes are blind (puts and range deletes of whole keys), so applying the records
 * again, in order, over any such state ends in the state after the last record. A write that
 * bypassed the journal while it holds records would break this: the log has none.
 *
 * File (persistent format, big-endian): two header slots, at offsets 0 and 512, each magic
 * "PRJH"(4) · generation(8) · crc32c(4) of the 12 bytes before it; then records from offset
 * 4096, each magic "PRJ1"(4) · generation(8) · seq(8) · length(4) · crc32c(4) of the 24
 * bytes before it and of the payload · payload(length). The current generation is the larger
 * of the valid slots'; a restart writes one above both it and the first record's (whose slot
 * may be the damaged one) into the other slot and syncs it before any record of it is written, so a
 * generation is never used twice, and a torn slot leaves the other. A scan reads records from
 * offset 4096 while each is whole, its checksum matches, its generation is the current one and its
 * seq the next from 0: a torn record (a crash inside its write) or one of an older generation (a
 * lap before) ends it.
 *
 * Not thread-safe: cl_raftlog calls it from one thread at a time (its worker while a write is
 * in flight, else the loop thread: open, loads, close).
 */
#ifndef CL_JOURNAL_H
#define CL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cl_journal;

/* The file's capacity when cl_journal_open is given 0: a lap is ~1 s of writes of a saturated
 * node, and the file is replayed whole after a crash at worst. */
#define CL_JOURNAL_BYTES_DEFAULT (16u * 1024u * 1024u)
/* Bounds of a capacity (and of what a scan reads of a file written with a larger one). */
#define CL_JOURNAL_BYTES_MIN     8192u
#define CL_JOURNAL_BYTES_MAX     (1024u * 1024u * 1024u)
#define CL_JOURNAL_HEAD_BYTES    28u   /* A record's, before its payload. */
#define CL_JOURNAL_RECORDS_START 4096u /* After the two header slots. */

/* Open (creating if missing) the journal file @path of @capacity bytes (0 =
 * CL_JOURNAL_BYTES_DEFAULT), fill it with zeros to that size if it is shorter, sync its
 * directory, and replay it: @apply (NULL: count only) each record of the current generation,
 * in order; their number goes to *@replayed. Then call cl_journal_restart once what was
 * applied is durable elsewhere. 0, RT_EINVAL (capacity out of bounds), RT_ENOMEM, RT_EIO, or
 * apply's first non-zero return (which ends the replay and fails the open). */
int cl_journal_open(const char *path, size_t capacity,
                    int (*apply)(void *arg, const uint8_t *payload, size_t len), void *arg,
                    uint64_t *replayed, struct cl_journal **out);
void cl_journal_close(struct cl_journal *journal);

/* Whether a record of @len payload bytes fits in the room left (false: sync what the journal
 * holds elsewhere, then restart; still false after a restart: larger than the journal). */
bool cl_journal_fits(const struct cl_journal *journal, size_t len);

/* Start a new generation, empty: its number is written to a header slot and synced, which
 * makes every record before it stale. Only once every record written or replayed before is
 * durable elsewhere. 0 or RT_EIO (the journal then refuses appends, as below). */
int cl_journal_restart(struct cl_journal *journal);

/* Append one record (cl_journal_fits must hold) and sync it. 0 or RT_EIO; after RT_EIO the
 * journal refuses every later append (the file's content past the last good record is
 * unknown). */
int cl_journal_append(struct cl_journal *journal, const void *payload, size_t len);

/* The scan, on a file's bytes in memory (the fuzz target's entry point): the current
 * generation goes to *@generation (0 if neither slot is valid); @record (may be NULL) is
 * called for each of its records, in order; returns how many there were, and the offset
 * after the last one goes to *@end. */
uint64_t cl_journal_scan(const uint8_t *buf, size_t len,
                         void (*record)(void *arg, const uint8_t *payload, size_t len), void *arg,
                         uint64_t *generation, size_t *end);

/* CRC-32C (Castagnoli) of @len bytes at @data, continuing @crc (0 to start): SSE 4.2's
 * instruction where the CPU has it, else a table; the table's alone for the tests. */
uint32_t cl_crc32c(uint32_t crc, const void *data, size_t len);
uint32_t cl_crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
