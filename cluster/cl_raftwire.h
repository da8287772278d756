/* cl_raftwire: raft's messages as msgpack, to travel on the node's links (cl_link).
 *
 * Why: raft_uv gives every raft group its own TCP connection to every peer and reads each
 * message in two or three read(2) calls (preamble, header, payload), each into its own
 * allocation. With 17 groups per node that is most of a loaded node's network syscalls, and no
 * coalescing can merge them across groups. Instead, cl_node sends a group's raft messages on
 * the one link it already keeps to each peer, where a loop turn's messages for every group
 * leave in one write and arrive in one read (docs/raft.md, Transport). This module is only the
 * encoding: bounded, validated, and allocation-compatible with what raft expects to own.
 *
 * Encoding (persistent wire format between nodes of one version): one msgpack array
 *   [type, term, ...]  with, after the term,
 *   APPEND_ENTRIES         prev_log_index, prev_log_term, leader_commit,
 *                          [[entry_term, entry_type, bin data], ...]
 *   APPEND_ENTRIES_RESULT  rejected, last_log_index
 *   REQUEST_VOTE           candidate_id, last_log_index, last_log_term, disrupt_leader (bool),
 *                          pre_vote (bool)
 *   REQUEST_VOTE_RESULT    vote_granted (bool), pre_vote (raft_tribool: 0 unknown, 1 true, 2 false)
 *   INSTALL_SNAPSHOT       last_index, last_term, conf_index, [[id, address str, role], ...],
 *                          bin data
 *   TIMEOUT_NOW            last_log_index, last_log_term
 * The sender's id and address are not encoded: the link knows who sent it.
 *
 * Ownership, as raft_uv hands messages to raft: a decoded APPEND_ENTRIES has its entries array
 * and one batch holding every entry's data allocated with raft_malloc (each entry's batch
 * points at it); a decoded INSTALL_SNAPSHOT has its configuration and its data likewise. Raft
 * takes them over in its recv callback; a message that is not delivered is freed with
 * cl_raftwire_release.
 */
#ifndef CL_RAFTWIRE_H
#define CL_RAFTWIRE_H

#include <raft.h>
#include <stddef.h>

#include "rt_mp.h"

/* Entries in one APPEND_ENTRIES; the encoder refuses more (the caller sends it another way). */
#define CL_RAFTWIRE_ENTRIES_MAX 65536u
/* Servers in an INSTALL_SNAPSHOT's configuration. */
#define CL_RAFTWIRE_SERVERS_MAX 64u
/* A server address, as raft_uv's own limit on an address string. */
#define CL_RAFTWIRE_ADDRESS_BYTES_MAX 255u

/* Append @msg to @w (its sticky error reports failure). RT_ETOOLARGE, without writing
 * anything, if @msg has more entries or servers than the limits above, or an unknown type. */
int cl_raftwire_encode(struct rt_mp_writer *w, const struct raft_message *msg);

/* Read one encoded message from @r into @msg (server_id and server_address are left 0/NULL for
 * the caller). 0, RT_EMALFORMED (bad structure, a value out of range, a limit exceeded:
 * nothing is allocated then) or RT_ENOMEM. On success the caller owns what was allocated (see
 * above). */
int cl_raftwire_decode(struct rt_mp_reader *r, struct raft_message *msg);

/* Free what cl_raftwire_decode allocated for @msg, for a message raft did not take. */
void cl_raftwire_release(struct raft_message *msg);

#endif /* CL_RAFTWIRE_H */
