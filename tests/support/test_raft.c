#include "test_raft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *test_raft_check(void *p)
{
    if (p == NULL) {
        fprintf(stderr, "test_raft: out of memory\n");
        abort();
    }
    return p;
}

struct raft_snapshot *test_raft_snapshot_loaded(const void *data, size_t len)
{
    struct raft_snapshot *s = test_raft_check(raft_calloc(1, sizeof(*s)));
    s->index = 40;
    s->term = 3;
    raft_configuration_init(&s->configuration);
    if (raft_configuration_add(&s->configuration, 1, "a", RAFT_VOTER) != 0) {
        test_raft_check(NULL);
    }
    s->bufs = test_raft_check(raft_malloc(sizeof(*s->bufs)));
    s->n_bufs = 1;
    s->bufs[0].base = test_raft_check(raft_malloc(len > 0 ? len : 1));
    memcpy(s->bufs[0].base, data, len);
    s->bufs[0].len = len;
    return s;
}

void test_raft_snapshot_free(struct raft_snapshot *snapshot)
{
    raft_configuration_close(&snapshot->configuration);
    for (unsigned i = 0; i < snapshot->n_bufs; i++) {
        raft_free(snapshot->bufs[i].base);
    }
    raft_free(snapshot->bufs);
    raft_free(snapshot);
}
