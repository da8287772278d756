/* test_raft: raft structures as canonical/raft's io hands them over, for the cluster tests.
 * Separate from test_support so that only tests that link raft depend on it. */
#ifndef TEST_RAFT_H
#define TEST_RAFT_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

/* A snapshot as raft_io's snapshot_get returns one (index 40, term 3, one voter, one buffer
 * holding a copy of @data): everything raft_malloc'd. Aborts if memory runs out. */
struct raft_snapshot *test_raft_snapshot_loaded(const void *data, size_t len);
/* Free it the way raft does. */
void test_raft_snapshot_free(struct raft_snapshot *snapshot);

#endif /* TEST_RAFT_H */
