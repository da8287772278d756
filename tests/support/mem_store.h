/* mem_store: an in-memory rt_store for unit tests (sorted arrays per column family).
 * Same semantics as store_rocks: atomic commit with the applied index, ordered scans. */
#ifndef MEM_STORE_H
#define MEM_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "rt_store.h"

struct mem_store;

struct mem_store *mem_store_new(void);
void mem_store_free(struct mem_store *store);
struct rt_store *mem_store_store(struct mem_store *store);
/* Make the next @n commits fail with RT_EIO (fault injection); 0 turns it off. */
void mem_store_fail_commits(struct mem_store *store, unsigned n);
/* Offer get_many (the default) or not, so that tests can run both read paths. */
void mem_store_batched_reads(struct mem_store *store, bool on);
/* Put one record as it is, outside any commit: how a test lays out what an older build
 * wrote. 0 or RT_ENOMEM. */
int mem_store_put_raw(struct mem_store *store, enum rt_cf cf, const uint8_t *key, size_t key_len,
                      const uint8_t *val, size_t val_len);
/* Reads per column family since the last call. */
struct mem_store_reads {
    uint64_t gets[RT_CF_COUNT];
    uint64_t many_calls[RT_CF_COUNT];
    uint64_t many_keys[RT_CF_COUNT];
};
struct mem_store_reads mem_store_take_reads(struct mem_store *store);

#endif /* MEM_STORE_H */
