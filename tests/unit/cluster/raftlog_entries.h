/* raftlog_entries: the entries the raft log's tests write and check, shared by
 * test_cl_raftlog and raftlog_child (the process those tests kill). */
#ifndef RAFTLOG_ENTRIES_H
#define RAFTLOG_ENTRIES_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

#define DATA_MAX 48 /* Bytes of an entry's data at most. */

/* Entry @index of @group; @seed tells apart two logs with the same indexes. Terms only grow;
 * entry 1 is a RAFT_CHANGE like a bootstrap entry; some entries have no data at all. */
static inline raft_term entry_term(raft_index index, unsigned seed)
{
    return seed * 1000u + 1u + index / 3u;
}

static inline size_t entry_len(raft_index index, unsigned seed)
{
    return index % 5 == 2 ? 0 : 3 + (index * 7 + seed) % (DATA_MAX - 3);
}

static inline void entry_make(struct raft_entry *e, uint8_t *data, uint16_t group, raft_index index,
                              unsigned seed)
{
    size_t len = entry_len(index, seed);
    for (size_t i = 0; i < len; i++) {
        data[i] = (uint8_t)((group * 31u + index * 131u + seed * 17u + i * 7u) % 251u);
    }
    *e = (struct raft_entry){.term = entry_term(index, seed),
                             .type = index == 1       ? RAFT_CHANGE
                                     : index % 4 == 0 ? RAFT_BARRIER
                                                      : RAFT_COMMAND,
                             .buf = {.base = data, .len = len}};
}

/* What raftlog_child writes, each write waited for, before it waits to be killed:
 *   group 0: entries 1..12 of seed 0 in writes of 4; a truncation from 6; entries 6..15 of
 *            seed 1 in a write of 5 and one of 5 with a forget below 3 (a raft snapshot at 2);
 *   groups 2..9: CHILD_WIDE_ENTRIES entries each of seed 3, all in one loop turn: one write
 *            larger than a journal of CL_JOURNAL_BYTES_MIN (~5.3 KB, room for 4,068);
 *   group 1: CHILD_NARROW_WRITES writes of one entry each, of seed 2: laps of such a journal. */
#define CHILD_G0_KEPT_FROM     3
#define CHILD_G0_TRUNCATED_AT  6
#define CHILD_G0_LAST          15
#define CHILD_WIDE_FIRST_GROUP 2
#define CHILD_WIDE_GROUPS      8
#define CHILD_WIDE_ENTRIES     16
#define CHILD_NARROW_WRITES    150

#endif
