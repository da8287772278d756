/* Tests for cl_raftwire: raft's messages as msgpack on the node's links.
 *
 * Why: these bytes come from a peer and what they decode to goes straight to raft, which
 * trusts it (asserts on ids, owns and frees the buffers). So the decoder is a trust boundary
 * and the encoding is a persistent format between nodes. Covered here:
 *   - every message type round-trips with every field compared (extreme uint64 values, both
 *     bools, each tribool), and the re-encoding of what was decoded is byte-identical;
 *   - the ownership contract: an APPEND_ENTRIES gets one entries array and one batch (entry
 *     data at 8-byte offsets in it), an INSTALL_SNAPSHOT its configuration and data, all from
 *     raft's heap, and release frees exactly that;
 *   - the decoder consumes exactly one message, refuses every truncation, and leaves the
 *     reader unmoved and nothing allocated when it fails (also when an allocation fails);
 *   - each structural and range rule of the decoder, and the encoder's refusals.
 *
 * raft's heap is replaced (raft_heap_set) by one that records every live allocation and can
 * fail the n-th: each test must end with nothing of raft's allocated, so leaks fail the plain
 * build too, not only ASan's. Every input is decoded from a private malloc'd copy of exactly
 * its length, so ASan catches a read past the end; the copy is wiped and freed before the
 * decoded message is looked at, so the message cannot point into the input. Every reject is
 * paired with a control that differs only in the rejected value and decodes: a reject cannot
 * pass because the hand-built bytes are wrong somewhere else. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "cl_raftwire.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

#define TEST_BUF_MAX    (64u * 1024u * 1024u)
#define TEST_BIG_BYTES  70000u /* Past 65535: the entry's data is a bin32. */
#define TEST_POOL_BYTES (TEST_BIG_BYTES + 1024u)
#define HEAP_TRACK_MAX  1024u

/* ---- raft's heap, tracked ---- */

static struct {
    void *ptrs[HEAP_TRACK_MAX]; /* Live allocations. */
    size_t live;
    unsigned long attempts; /* Allocation calls so far. */
    unsigned long fail_at;  /* This attempt returns NULL; ULONG_MAX: none. */
    unsigned foreign;       /* Frees of pointers this heap did not hand out. */
} heap;

static bool heap_fail_now(void)
{
    return heap.attempts++ == heap.fail_at;
}

static void heap_track(void *p)
{
    if (heap.live == HEAP_TRACK_MAX) {
        fprintf(stderr, "test heap: more than %u live allocations\n", HEAP_TRACK_MAX);
        abort();
    }
    heap.ptrs[heap.live++] = p;
}

/* Forget @p; false if it is not live. */
static bool heap_untrack(void *p)
{
    for (size_t i = 0; i < heap.live; i++) {
        if (heap.ptrs[i] == p) {
            heap.ptrs[i] = heap.ptrs[--heap.live];
            return true;
        }
    }
    return false;
}

static bool heap_owns(const void *p)
{
    for (size_t i = 0; i < heap.live; i++) {
        if (heap.ptrs[i] == p) {
            return true;
        }
    }
    return false;
}

static void *heap_malloc(void *data, size_t size)
{
    (void)data;
    if (heap_fail_now()) {
        return NULL;
    }
    void *p = malloc(size > 0 ? size : 1);
    if (p != NULL) {
        heap_track(p);
    }
    return p;
}

static void heap_free(void *data, void *ptr)
{
    (void)data;
    if (ptr == NULL) {
        return;
    }
    if (!heap_untrack(ptr)) {
        heap.foreign++;
    }
    free(ptr);
}

static void *heap_calloc(void *data, size_t nmemb, size_t size)
{
    (void)data;
    if (heap_fail_now()) {
        return NULL;
    }
    void *p = calloc(nmemb > 0 ? nmemb : 1, size > 0 ? size : 1);
    if (p != NULL) {
        heap_track(p);
    }
    return p;
}

static void *heap_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    if (heap_fail_now()) {
        return NULL;
    }
    if (ptr != NULL && !heap_untrack(ptr)) {
        heap.foreign++;
        return NULL;
    }
    void *p = realloc(ptr, size > 0 ? size : 1);
    if (p != NULL) {
        heap_track(p);
    } else if (ptr != NULL) {
        heap_track(ptr); /* Still the caller's. */
    }
    return p;
}

static void *heap_aligned_alloc(void *data, size_t alignment, size_t size)
{
    (void)data;
    if (heap_fail_now()) {
        return NULL;
    }
    void *p = aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    if (p != NULL) {
        heap_track(p);
    }
    return p;
}

static void heap_aligned_free(void *data, size_t alignment, void *ptr)
{
    (void)alignment;
    heap_free(data, ptr);
}

static struct raft_heap tracked_heap = {
    NULL, heap_malloc, heap_free, heap_calloc, heap_realloc, heap_aligned_alloc, heap_aligned_free};

static int heap_setup(void **state)
{
    (void)state;
    memset(&heap, 0, sizeof(heap));
    heap.fail_at = ULONG_MAX;
    raft_heap_set(&tracked_heap);
    return 0;
}

static int heap_teardown(void **state)
{
    (void)state;
    size_t live = heap.live;
    unsigned foreign = heap.foreign;
    raft_heap_set_default();
    if (live != 0 || foreign != 0) {
        fprintf(stderr, "raft heap at the end of the test: %zu live, %u foreign frees\n", live,
                foreign);
        return -1;
    }
    return 0;
}

/* ---- Sample messages ---- */

static uint8_t pool[TEST_POOL_BYTES]; /* Entry and snapshot data are slices of this pattern. */
static char addr_v4[] = "10.0.0.1:7001";
static char addr_v6[] = "[fd00::17]:7002";
static char addr_local[] = "127.0.0.1:9001";
static char addr_long[CL_RAFTWIRE_ADDRESS_BYTES_MAX + 1]; /* The longest address allowed. */
static char sender[] = "sender:1";

enum {
    S_AE,             /* Six entries: every type, data of 0, 1, 3, 8, 255 (bin8) and 300 (bin16). */
    S_AE_EMPTY,       /* No entries (a heartbeat). */
    S_AE_ZERO,        /* One entry of zero length. */
    S_AE_BIG,         /* An entry of TEST_BIG_BYTES (bin32) and a small one. */
    S_AER,            /* Large values. */
    S_AER_ZERO,       /* All zero. */
    S_RV,             /* Four: every (disrupt_leader, pre_vote). */
    S_RVR = S_RV + 4, /* Six: every (vote_granted, pre_vote tribool). */
    S_IS = S_RVR + 6, /* Three servers, one per role, 1000 bytes of data. */
    S_IS_EMPTY,       /* One server, empty data. */
    S_IS_NO_SERVERS,  /* An empty configuration. */
    S_TN,             /* Large values. */
    S_TN_ZERO,        /* All zero. */
    S_COUNT
};

static struct raft_message samples[S_COUNT];
static struct raft_entry ae_entries[6];
static struct raft_entry ae_zero[1];
static struct raft_entry ae_big[2];
static struct raft_server is_servers[3];
static struct raft_server is_one[1];

static void samples_init(void)
{
    for (size_t i = 0; i < sizeof(pool); i++) {
        pool[i] = (uint8_t)((i * 131u + (i >> 8) * 7u + 3u) % 251u);
    }
    memset(addr_long, 'h', CL_RAFTWIRE_ADDRESS_BYTES_MAX);
    memcpy(addr_long + CL_RAFTWIRE_ADDRESS_BYTES_MAX - 5, ":7003", 5);
    addr_long[CL_RAFTWIRE_ADDRESS_BYTES_MAX] = '\0';
    memset(samples, 0, sizeof(samples));
    for (unsigned i = 0; i < S_COUNT; i++) {
        /* Not encoded: the decoder must leave them 0/NULL. */
        samples[i].server_id = 77;
        samples[i].server_address = sender;
    }

    struct raft_entry entries[6] = {
        {UINT64_MAX, RAFT_COMMAND, {pool, 3}, NULL},
        {1, RAFT_BARRIER, {NULL, 0}, NULL},
        {1ull << 32, RAFT_CHANGE, {pool + 3, 300}, NULL},
        {0x7f, RAFT_COMMAND, {pool + 303, 8}, NULL},
        {0x80, RAFT_COMMAND, {pool + 311, 255}, NULL},
        {0, RAFT_COMMAND, {pool + 566, 1}, NULL},
    };
    memcpy(ae_entries, entries, sizeof(entries));
    struct raft_message *m = &samples[S_AE];
    m->type = RAFT_IO_APPEND_ENTRIES;
    m->append_entries.term = UINT64_MAX;
    m->append_entries.prev_log_index = UINT64_MAX - 1;
    m->append_entries.prev_log_term = 1ull << 63;
    m->append_entries.leader_commit = 0x0123456789abcdefull;
    m->append_entries.entries = ae_entries;
    m->append_entries.n_entries = 6;

    m = &samples[S_AE_EMPTY];
    m->type = RAFT_IO_APPEND_ENTRIES;
    m->append_entries.term = 3;
    m->append_entries.leader_commit = 2;

    ae_zero[0] = (struct raft_entry){65535, RAFT_BARRIER, {NULL, 0}, NULL};
    m = &samples[S_AE_ZERO];
    m->type = RAFT_IO_APPEND_ENTRIES;
    m->append_entries.term = 256;
    m->append_entries.prev_log_index = 255;
    m->append_entries.prev_log_term = 65536;
    m->append_entries.leader_commit = 0xffffffffull;
    m->append_entries.entries = ae_zero;
    m->append_entries.n_entries = 1;

    ae_big[0] = (struct raft_entry){65536, RAFT_COMMAND, {pool, TEST_BIG_BYTES}, NULL};
    ae_big[1] = (struct raft_entry){65536, RAFT_CHANGE, {pool + 1, 5}, NULL};
    m = &samples[S_AE_BIG];
    m->type = RAFT_IO_APPEND_ENTRIES;
    m->append_entries.term = 0x100000000ull;
    m->append_entries.prev_log_index = 1;
    m->append_entries.prev_log_term = 1;
    m->append_entries.leader_commit = 1;
    m->append_entries.entries = ae_big;
    m->append_entries.n_entries = 2;

    m = &samples[S_AER];
    m->type = RAFT_IO_APPEND_ENTRIES_RESULT;
    m->append_entries_result.term = UINT64_MAX;
    m->append_entries_result.rejected = UINT64_MAX - 7;
    m->append_entries_result.last_log_index = 1ull << 40;
    m = &samples[S_AER_ZERO];
    m->type = RAFT_IO_APPEND_ENTRIES_RESULT;

    for (unsigned i = 0; i < 4; i++) {
        m = &samples[S_RV + i];
        m->type = RAFT_IO_REQUEST_VOTE;
        m->request_vote.term = 0x100000000ull + i;
        m->request_vote.candidate_id = UINT64_MAX - i;
        m->request_vote.last_log_index = 65535 + i;
        m->request_vote.last_log_term = 255 + i;
        m->request_vote.disrupt_leader = (i & 1) != 0;
        m->request_vote.pre_vote = (i & 2) != 0;
    }
    for (unsigned i = 0; i < 6; i++) {
        m = &samples[S_RVR + i];
        m->type = RAFT_IO_REQUEST_VOTE_RESULT;
        m->request_vote_result.term = 0xfffffffffull + i;
        m->request_vote_result.vote_granted = (i & 1) != 0;
        m->request_vote_result.pre_vote = (raft_tribool)(i / 2);
    }

    is_servers[0] = (struct raft_server){1, addr_v4, RAFT_VOTER};
    is_servers[1] = (struct raft_server){UINT64_MAX, addr_long, RAFT_STANDBY};
    is_servers[2] = (struct raft_server){12345, addr_v6, RAFT_SPARE};
    m = &samples[S_IS];
    m->type = RAFT_IO_INSTALL_SNAPSHOT;
    m->install_snapshot.term = UINT64_MAX;
    m->install_snapshot.last_index = UINT64_MAX - 1;
    m->install_snapshot.last_term = 1ull << 33;
    m->install_snapshot.conf_index = 0xffffffffull;
    m->install_snapshot.conf.servers = is_servers;
    m->install_snapshot.conf.n = 3;
    m->install_snapshot.data.base = pool + 7;
    m->install_snapshot.data.len = 1000;

    is_one[0] = (struct raft_server){2, addr_local, RAFT_VOTER};
    m = &samples[S_IS_EMPTY];
    m->type = RAFT_IO_INSTALL_SNAPSHOT;
    m->install_snapshot.term = 9;
    m->install_snapshot.last_index = 1000;
    m->install_snapshot.last_term = 8;
    m->install_snapshot.conf_index = 999;
    m->install_snapshot.conf.servers = is_one;
    m->install_snapshot.conf.n = 1;

    m = &samples[S_IS_NO_SERVERS];
    m->type = RAFT_IO_INSTALL_SNAPSHOT;
    m->install_snapshot.term = 1;
    m->install_snapshot.last_index = 2;
    m->install_snapshot.last_term = 1;
    m->install_snapshot.data.base = pool + 11;
    m->install_snapshot.data.len = 17;

    m = &samples[S_TN];
    m->type = RAFT_IO_TIMEOUT_NOW;
    m->timeout_now.term = UINT64_MAX;
    m->timeout_now.last_log_index = UINT64_MAX;
    m->timeout_now.last_log_term = UINT64_MAX - 1;
    m = &samples[S_TN_ZERO];
    m->type = RAFT_IO_TIMEOUT_NOW;
}

/* ---- Encoding and decoding ---- */

/* A buffer and its writer. */
struct out {
    struct rt_buf buf;
    struct rt_mp_writer w;
};

static void out_open(struct out *o)
{
    rt_buf_init(&o->buf, TEST_BUF_MAX);
    rt_mp_writer_init(&o->w, &o->buf);
}

static void out_close(struct out *o)
{
    rt_buf_free(&o->buf);
}

static void encode_into(struct out *o, const struct raft_message *m)
{
    size_t before = o->buf.len;
    assert_int_equal(cl_raftwire_encode(&o->w, m), 0);
    assert_int_equal(rt_mp_writer_error(&o->w), 0);
    assert_true(o->buf.len > before);
}

/* Decode @len bytes from a private copy of exactly that size. On success the reader must be
 * at the end, on failure unmoved. The copy is wiped and freed before returning. */
static int decode_copy(const uint8_t *data, size_t len, struct raft_message *m)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, data, len);
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, copy, len);
    int rv = cl_raftwire_decode(&r, m);
    assert_ptr_equal(r.end, copy + len);
    if (rv == 0) {
        assert_int_equal(rt_mp_remaining(&r), 0);
    } else {
        assert_ptr_equal(r.pos, copy);
    }
    memset(copy, 0xee, len);
    free(copy);
    return rv;
}

/* Every field of @got equals @want's; @got also has the shape raft expects of a received
 * message (see the header comment). */
static void assert_msg_equal(const struct raft_message *want, const struct raft_message *got)
{
    assert_int_equal(got->type, want->type);
    assert_int_equal(got->server_id, 0);
    assert_null(got->server_address);
    switch (want->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &want->append_entries;
        const struct raft_append_entries *b = &got->append_entries;
        assert_int_equal(b->term, a->term);
        assert_int_equal(b->prev_log_index, a->prev_log_index);
        assert_int_equal(b->prev_log_term, a->prev_log_term);
        assert_int_equal(b->leader_commit, a->leader_commit);
        assert_int_equal(b->n_entries, a->n_entries);
        if (b->n_entries == 0) {
            assert_null(b->entries);
            break;
        }
        assert_non_null(b->entries);
        assert_true(heap_owns(b->entries));
        const uint8_t *batch = b->entries[0].batch;
        assert_non_null(batch);
        assert_true(heap_owns(batch));
        for (unsigned i = 0; i < b->n_entries; i++) {
            const struct raft_entry *x = &a->entries[i];
            const struct raft_entry *y = &b->entries[i];
            assert_int_equal(y->term, x->term);
            assert_int_equal(y->type, x->type);
            assert_int_equal(y->buf.len, x->buf.len);
            assert_ptr_equal(y->batch, batch);
            const uint8_t *base = y->buf.base;
            assert_non_null(base);
            assert_true(base >= batch);
            assert_int_equal((size_t)(base - batch) % 8u, 0);
            if (i > 0) { /* In order, not overlapping. */
                const struct raft_entry *prev = &b->entries[i - 1];
                assert_true(base >= (const uint8_t *)prev->buf.base + prev->buf.len);
            }
            if (x->buf.len > 0) {
                assert_memory_equal(base, x->buf.base, x->buf.len);
            }
        }
        break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        assert_int_equal(got->append_entries_result.term, want->append_entries_result.term);
        assert_int_equal(got->append_entries_result.rejected, want->append_entries_result.rejected);
        assert_int_equal(got->append_entries_result.last_log_index,
                         want->append_entries_result.last_log_index);
        break;
    case RAFT_IO_REQUEST_VOTE:
        assert_int_equal(got->request_vote.term, want->request_vote.term);
        assert_int_equal(got->request_vote.candidate_id, want->request_vote.candidate_id);
        assert_int_equal(got->request_vote.last_log_index, want->request_vote.last_log_index);
        assert_int_equal(got->request_vote.last_log_term, want->request_vote.last_log_term);
        assert_int_equal(got->request_vote.disrupt_leader, want->request_vote.disrupt_leader);
        assert_int_equal(got->request_vote.pre_vote, want->request_vote.pre_vote);
        break;
    case RAFT_IO_REQUEST_VOTE_RESULT:
        assert_int_equal(got->request_vote_result.term, want->request_vote_result.term);
        assert_int_equal(got->request_vote_result.vote_granted,
                         want->request_vote_result.vote_granted);
        assert_int_equal(got->request_vote_result.pre_vote, want->request_vote_result.pre_vote);
        break;
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *a = &want->install_snapshot;
        const struct raft_install_snapshot *b = &got->install_snapshot;
        assert_int_equal(b->term, a->term);
        assert_int_equal(b->last_index, a->last_index);
        assert_int_equal(b->last_term, a->last_term);
        assert_int_equal(b->conf_index, a->conf_index);
        assert_int_equal(b->conf.n, a->conf.n);
        for (unsigned i = 0; i < b->conf.n; i++) {
            assert_int_equal(b->conf.servers[i].id, a->conf.servers[i].id);
            assert_string_equal(b->conf.servers[i].address, a->conf.servers[i].address);
            assert_int_equal(b->conf.servers[i].role, a->conf.servers[i].role);
            assert_true(heap_owns(b->conf.servers[i].address));
        }
        if (b->conf.n > 0) {
            assert_true(heap_owns(b->conf.servers));
        }
        assert_int_equal(b->data.len, a->data.len);
        assert_non_null(b->data.base);
        assert_true(heap_owns(b->data.base));
        if (a->data.len > 0) {
            assert_memory_equal(b->data.base, a->data.base, a->data.len);
        }
        break;
    }
    case RAFT_IO_TIMEOUT_NOW:
        assert_int_equal(got->timeout_now.term, want->timeout_now.term);
        assert_int_equal(got->timeout_now.last_log_index, want->timeout_now.last_log_index);
        assert_int_equal(got->timeout_now.last_log_term, want->timeout_now.last_log_term);
        break;
    default:
        fail_msg("unexpected type %u", want->type);
    }
}

/* Encode @m, decode it, compare every field, encode what was decoded (same bytes), release
 * (nothing of raft's left). */
static void round_trip(const struct raft_message *m)
{
    size_t live = heap.live;
    struct out first, again;
    out_open(&first);
    out_open(&again);
    encode_into(&first, m);
    struct raft_message got;
    assert_int_equal(decode_copy(first.buf.data, first.buf.len, &got), 0);
    assert_msg_equal(m, &got);
    if (m->type == RAFT_IO_APPEND_ENTRIES) {
        /* The entries array and one batch, or nothing for no entries. */
        assert_int_equal(heap.live, live + (m->append_entries.n_entries > 0 ? 2 : 0));
    } else if (m->type != RAFT_IO_INSTALL_SNAPSHOT) {
        assert_int_equal(heap.live, live);
    }
    encode_into(&again, &got);
    assert_int_equal(again.buf.len, first.buf.len);
    assert_memory_equal(again.buf.data, first.buf.data, first.buf.len);
    cl_raftwire_release(&got);
    assert_int_equal(heap.live, live);
    out_close(&again);
    out_close(&first);
}

static void round_trip_range(unsigned from, unsigned to)
{
    samples_init();
    for (unsigned i = from; i < to; i++) {
        round_trip(&samples[i]);
    }
}

/* ---- Hand-built messages ---- */

/* A value of a chosen msgpack kind, for the places that want a uint or a bool. */
enum val { V_FALSE, V_TRUE, V_UINT0, V_UINT1, V_NEG, V_NIL, V_STR, V_BIN, V_NONE };

static void put_val(struct rt_mp_writer *w, enum val v)
{
    switch (v) {
    case V_FALSE:
    case V_TRUE:
        rt_mp_write_bool(w, v == V_TRUE);
        break;
    case V_UINT0:
    case V_UINT1:
        rt_mp_write_uint(w, v == V_UINT1);
        break;
    case V_NEG:
        rt_mp_write_int(w, -1);
        break;
    case V_NIL:
        rt_mp_write_nil(w);
        break;
    case V_STR:
        rt_mp_write_str(w, "1", 1);
        break;
    case V_BIN:
        rt_mp_write_bin(w, (const uint8_t *)"1", 1);
        break;
    case V_NONE: /* Nothing at all. */
        break;
    }
}

/* TIMEOUT_NOW [@type, @term, 11, 12]. */
static void put_tn(struct rt_mp_writer *w, uint64_t type, enum val term)
{
    rt_mp_write_array(w, 4);
    rt_mp_write_uint(w, type);
    put_val(w, term);
    rt_mp_write_uint(w, 11);
    rt_mp_write_uint(w, 12);
}

/* APPEND_ENTRIES [1, 9, 8, 7, 6, ...] up to the entries array header. */
static void put_ae_head(struct rt_mp_writer *w)
{
    rt_mp_write_array(w, 6);
    rt_mp_write_uint(w, RAFT_IO_APPEND_ENTRIES);
    rt_mp_write_uint(w, 9);
    rt_mp_write_uint(w, 8);
    rt_mp_write_uint(w, 7);
    rt_mp_write_uint(w, 6);
}

/* An APPEND_ENTRIES with one entry of @fields elements: term 5, @type, data "abc" as @data
 * (V_BIN or V_STR), then nils. */
static void put_ae_one(struct rt_mp_writer *w, uint32_t fields, uint64_t type, enum val data)
{
    put_ae_head(w);
    rt_mp_write_array(w, 1);
    rt_mp_write_array(w, fields);
    for (uint32_t i = 0; i < fields; i++) {
        if (i == 0) {
            rt_mp_write_uint(w, 5);
        } else if (i == 1) {
            rt_mp_write_uint(w, type);
        } else if (i == 2 && data == V_BIN) {
            rt_mp_write_bin(w, (const uint8_t *)"abc", 3);
        } else if (i == 2) {
            rt_mp_write_str(w, "abc", 3);
        } else {
            rt_mp_write_nil(w);
        }
    }
}

/* An APPEND_ENTRIES declaring @n zero-length entries with an array32 header; returns the
 * header's offset. */
static size_t put_ae_many(struct rt_mp_writer *w, uint32_t n)
{
    put_ae_head(w);
    size_t at = rt_mp_write_array32(w, n);
    for (uint32_t i = 0; i < n; i++) {
        rt_mp_write_array(w, 3);
        rt_mp_write_uint(w, 1);
        rt_mp_write_uint(w, RAFT_COMMAND);
        rt_mp_write_bin(w, NULL, 0);
    }
    return at;
}

/* One server of a hand-built INSTALL_SNAPSHOT. */
struct wire_server {
    uint32_t fields; /* Elements of its array: id, address, role, then bins "snap". */
    uint64_t id;
    const char *address;
    size_t address_len;
    bool address_bin; /* The address as a bin instead of a str. */
    uint64_t role;
};

static void put_is(struct rt_mp_writer *w, const struct wire_server *s, unsigned n, enum val data)
{
    rt_mp_write_array(w, 7);
    rt_mp_write_uint(w, RAFT_IO_INSTALL_SNAPSHOT);
    rt_mp_write_uint(w, 20);
    rt_mp_write_uint(w, 19);
    rt_mp_write_uint(w, 18);
    rt_mp_write_uint(w, 17);
    rt_mp_write_array(w, n);
    for (unsigned i = 0; i < n; i++) {
        rt_mp_write_array(w, s[i].fields);
        for (uint32_t f = 0; f < s[i].fields; f++) {
            if (f == 0) {
                rt_mp_write_uint(w, s[i].id);
            } else if (f == 1 && s[i].address_bin) {
                rt_mp_write_bin(w, (const uint8_t *)s[i].address, s[i].address_len);
            } else if (f == 1) {
                rt_mp_write_str(w, s[i].address, s[i].address_len);
            } else if (f == 2) {
                rt_mp_write_uint(w, s[i].role);
            } else {
                rt_mp_write_bin(w, (const uint8_t *)"snap", 4);
            }
        }
    }
    if (data == V_BIN) {
        rt_mp_write_bin(w, (const uint8_t *)"snap", 4);
    } else if (data != V_NONE) {
        put_val(w, data);
    }
}

/* Three valid servers, one per role. */
static void trio(struct wire_server s[3])
{
    static const char *const addresses[3] = {"a:1", "b:2", "c:3"};
    static const int roles[3] = {RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE};
    for (unsigned i = 0; i < 3; i++) {
        s[i] = (struct wire_server){3, i + 1, addresses[i], 3, false, (uint64_t)roles[i]};
    }
}

/* REQUEST_VOTE [3, 30, 31, 32, 33, @disrupt, @pre_vote]. */
static void put_rv(struct rt_mp_writer *w, enum val disrupt, enum val pre_vote)
{
    rt_mp_write_array(w, 7);
    rt_mp_write_uint(w, RAFT_IO_REQUEST_VOTE);
    rt_mp_write_uint(w, 30);
    rt_mp_write_uint(w, 31);
    rt_mp_write_uint(w, 32);
    rt_mp_write_uint(w, 33);
    put_val(w, disrupt);
    put_val(w, pre_vote);
}

/* REQUEST_VOTE_RESULT [4, 40, @granted, @pre_vote]. */
static void put_rvr(struct rt_mp_writer *w, enum val granted, uint64_t pre_vote)
{
    rt_mp_write_array(w, 4);
    rt_mp_write_uint(w, RAFT_IO_REQUEST_VOTE_RESULT);
    rt_mp_write_uint(w, 40);
    put_val(w, granted);
    rt_mp_write_uint(w, pre_vote);
}

/* What @o holds is refused as malformed, nothing allocated; @o is emptied. */
static void expect_malformed(struct out *o)
{
    assert_int_equal(rt_mp_writer_error(&o->w), 0);
    assert_true(o->buf.len > 0);
    size_t live = heap.live;
    struct raft_message m;
    assert_int_equal(decode_copy(o->buf.data, o->buf.len, &m), RT_EMALFORMED);
    assert_int_equal(heap.live, live);
    rt_buf_reset(&o->buf);
}

/* What @o holds decodes into @m (the caller releases it); @o is emptied. */
static void expect_decodes(struct out *o, struct raft_message *m)
{
    assert_int_equal(rt_mp_writer_error(&o->w), 0);
    assert_int_equal(decode_copy(o->buf.data, o->buf.len, m), 0);
    rt_buf_reset(&o->buf);
}

/* ---- Round trips ---- */

static void test_round_trip_append_entries(void **state)
{
    (void)state;
    round_trip_range(S_AE, S_AE_BIG + 1);
}

static void test_round_trip_append_entries_result(void **state)
{
    (void)state;
    round_trip_range(S_AER, S_AER_ZERO + 1);
}

static void test_round_trip_request_vote(void **state)
{
    (void)state;
    round_trip_range(S_RV, S_RV + 4);
}

static void test_round_trip_request_vote_result(void **state)
{
    (void)state;
    round_trip_range(S_RVR, S_RVR + 6);
}

static void test_round_trip_install_snapshot(void **state)
{
    (void)state;
    round_trip_range(S_IS, S_IS_NO_SERVERS + 1);
}

static void test_round_trip_timeout_now(void **state)
{
    (void)state;
    round_trip_range(S_TN, S_TN_ZERO + 1);
}

/* ---- The reader ---- */

/* Messages back to back are read one at a time, each ending exactly where the next begins;
 * at the end, and on an empty input, decoding fails without moving the reader. */
static void test_decode_consumes_exactly(void **state)
{
    (void)state;
    samples_init();
    struct out o;
    out_open(&o);
    size_t ends[S_COUNT];
    for (unsigned i = 0; i < S_COUNT; i++) {
        encode_into(&o, &samples[i]);
        ends[i] = o.buf.len;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, o.buf.data, o.buf.len);
    for (unsigned i = 0; i < S_COUNT; i++) {
        struct raft_message got;
        assert_int_equal(cl_raftwire_decode(&r, &got), 0);
        assert_ptr_equal(r.pos, o.buf.data + ends[i]);
        assert_msg_equal(&samples[i], &got);
        cl_raftwire_release(&got);
    }
    assert_int_equal(rt_mp_remaining(&r), 0);
    struct raft_message got;
    assert_int_equal(cl_raftwire_decode(&r, &got), RT_EMALFORMED);
    assert_ptr_equal(r.pos, o.buf.data + o.buf.len);
    assert_int_equal(decode_copy(o.buf.data, 0, &got), RT_EMALFORMED);
    out_close(&o);
}

/* Every proper prefix of every sample's encoding is refused, with nothing allocated. */
static void test_decode_truncated(void **state)
{
    (void)state;
    samples_init();
    struct out o;
    out_open(&o);
    for (unsigned i = 0; i < S_COUNT; i++) {
        rt_buf_reset(&o.buf);
        encode_into(&o, &samples[i]);
        const size_t n = o.buf.len;
        /* Each prefix is placed at the end of an allocation of the whole length, so that a
         * read past the prefix is a read past the allocation. */
        uint8_t *area = malloc(n);
        assert_non_null(area);
        for (size_t len = 0; len < n; len++) {
            uint8_t *at = area + (n - len);
            memcpy(at, o.buf.data, len);
            struct rt_mp_reader r;
            rt_mp_reader_init(&r, at, len);
            struct raft_message got;
            int rv = cl_raftwire_decode(&r, &got);
            if (rv != RT_EMALFORMED) {
                fail_msg("sample %u cut to %zu of %zu bytes: %d", i, len, n, rv);
            }
            assert_ptr_equal(r.pos, at);
            assert_int_equal(heap.live, 0);
        }
        free(area);
    }
    out_close(&o);
}

/* Each allocation of a decode fails in turn: RT_ENOMEM, reader unmoved, nothing left
 * allocated; once past them all the decode succeeds. */
static void test_decode_enomem(void **state)
{
    (void)state;
    samples_init();
    static const struct {
        unsigned sample;
        unsigned min_failures; /* Allocations the decode must at least make. */
        unsigned max_failures;
    } cases[] = {
        {S_AE, 2, 2},         /* Entries array, batch. */
        {S_AE_ZERO, 2, 2},    /* Likewise, the batch is 1 byte. */
        {S_AE_EMPTY, 0, 0},   /* Nothing. */
        {S_IS, 4, 100},       /* Three addresses (raft copies them), the data, ... */
        {S_IS_EMPTY, 2, 100}, /* One address, the (empty) data. */
        {S_TN, 0, 0},
    };
    struct out o;
    out_open(&o);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct raft_message *m = &samples[cases[c].sample];
        rt_buf_reset(&o.buf);
        encode_into(&o, m);
        unsigned failures = 0;
        struct raft_message got;
        for (;;) {
            heap.fail_at = heap.attempts + failures;
            int rv = decode_copy(o.buf.data, o.buf.len, &got);
            if (rv == 0) {
                break;
            }
            assert_int_equal(rv, RT_ENOMEM);
            assert_int_equal(heap.live, 0);
            failures++;
            assert_true(failures <= cases[c].max_failures);
        }
        heap.fail_at = ULONG_MAX;
        assert_true(failures >= cases[c].min_failures);
        assert_msg_equal(m, &got);
        cl_raftwire_release(&got);
        assert_int_equal(heap.live, 0);
    }
    out_close(&o);
}

/* ---- Rejects ---- */

static void test_reject_type(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    put_tn(&o.w, RAFT_IO_TIMEOUT_NOW, V_UINT1); /* Control. */
    expect_decodes(&o, &m);
    assert_int_equal(m.type, RAFT_IO_TIMEOUT_NOW);
    assert_int_equal(m.timeout_now.term, 1);
    assert_int_equal(m.timeout_now.last_log_index, 11);
    assert_int_equal(m.timeout_now.last_log_term, 12);
    cl_raftwire_release(&m);
    /* Unknown, and values that a narrowing cast would turn into TIMEOUT_NOW. */
    static const uint64_t bad[] = {0, 7, 0x10000u + RAFT_IO_TIMEOUT_NOW,
                                   0x100000000ull + RAFT_IO_TIMEOUT_NOW, UINT64_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_tn(&o.w, bad[i], V_UINT1);
        expect_malformed(&o);
    }
    /* [0, 1]: type 0 with no fields. */
    rt_mp_write_array(&o.w, 2);
    rt_mp_write_uint(&o.w, 0);
    rt_mp_write_uint(&o.w, 1);
    expect_malformed(&o);
    /* The type of every sample replaced by 0 and by 7, all else valid. */
    samples_init();
    for (unsigned i = 0; i < S_COUNT; i++) {
        encode_into(&o, &samples[i]);
        assert_int_equal(o.buf.data[1], samples[i].type); /* A fixint after a fixarray. */
        for (uint8_t t = 0; t <= 7; t += 7) {
            o.buf.data[1] = t;
            size_t live = heap.live;
            assert_int_equal(decode_copy(o.buf.data, o.buf.len, &m), RT_EMALFORMED);
            assert_int_equal(heap.live, live);
        }
        rt_buf_reset(&o.buf);
    }
    out_close(&o);
}

/* The top-level array one short or one long, not an array, and an entry's or a server's
 * array of the wrong size. */
static void test_reject_count(void **state)
{
    (void)state;
    samples_init();
    struct out o;
    out_open(&o);
    struct raft_message m;
    for (unsigned i = 0; i < S_COUNT; i++) {
        encode_into(&o, &samples[i]);
        const uint8_t head = o.buf.data[0];
        assert_int_equal(head & 0xf0, 0x90); /* A fixarray. */
        /* Control: one nil after the message is left unread. */
        rt_mp_write_nil(&o.w);
        struct rt_mp_reader r;
        rt_mp_reader_init(&r, o.buf.data, o.buf.len);
        assert_int_equal(cl_raftwire_decode(&r, &m), 0);
        assert_int_equal(rt_mp_remaining(&r), 1);
        assert_msg_equal(&samples[i], &m);
        cl_raftwire_release(&m);
        /* One long: the nil becomes the extra element. */
        o.buf.data[0] = (uint8_t)(head + 1);
        assert_int_equal(decode_copy(o.buf.data, o.buf.len, &m), RT_EMALFORMED);
        /* One short, on the message alone. */
        o.buf.data[0] = (uint8_t)(head - 1);
        assert_int_equal(decode_copy(o.buf.data, o.buf.len - 1, &m), RT_EMALFORMED);
        /* A map of as many elements. */
        o.buf.data[0] = (uint8_t)(0x80 | (head & 0x0f));
        assert_int_equal(decode_copy(o.buf.data, o.buf.len - 1, &m), RT_EMALFORMED);
        assert_int_equal(heap.live, 0);
        rt_buf_reset(&o.buf);
    }
    /* An entry: three elements (control), two, four. */
    put_ae_one(&o.w, 3, RAFT_COMMAND, V_BIN);
    expect_decodes(&o, &m);
    assert_int_equal(m.append_entries.n_entries, 1);
    assert_int_equal(m.append_entries.entries[0].term, 5);
    assert_int_equal(m.append_entries.entries[0].buf.len, 3);
    assert_memory_equal(m.append_entries.entries[0].buf.base, "abc", 3);
    cl_raftwire_release(&m);
    put_ae_one(&o.w, 2, RAFT_COMMAND, V_BIN);
    expect_malformed(&o);
    put_ae_one(&o.w, 4, RAFT_COMMAND, V_BIN);
    expect_malformed(&o);
    /* A server: three elements (control), two, four. */
    struct wire_server s[3];
    trio(s);
    put_is(&o.w, s, 3, V_BIN);
    expect_decodes(&o, &m);
    assert_int_equal(m.install_snapshot.conf.n, 3);
    cl_raftwire_release(&m);
    s[1].fields = 2;
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    s[1].fields = 4;
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    /* The last server's fourth element could pass for the data, which is left out: only the
     * server's count tells. */
    trio(s);
    s[2].fields = 4;
    put_is(&o.w, s, 3, V_NONE);
    expect_malformed(&o);
    out_close(&o);
}

static void test_reject_entry_type(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    static const uint64_t good[] = {RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE};
    for (size_t i = 0; i < 3; i++) {
        put_ae_one(&o.w, 3, good[i], V_BIN);
        expect_decodes(&o, &m);
        assert_int_equal(m.append_entries.n_entries, 1);
        assert_int_equal(m.append_entries.entries[0].type, good[i]);
        cl_raftwire_release(&m);
    }
    /* 0x10001 would be RAFT_COMMAND once cast to the entry's unsigned short. */
    static const uint64_t bad[] = {0, RAFT_CHANGE + 1, 0x10000u + RAFT_COMMAND, UINT64_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_ae_one(&o.w, 3, bad[i], V_BIN);
        expect_malformed(&o);
    }
    out_close(&o);
}

/* More entries than CL_RAFTWIRE_ENTRIES_MAX declared (and present), with an array32 header:
 * refused; exactly the limit is accepted. */
static void test_reject_entries_over_max(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    size_t at = put_ae_many(&o.w, CL_RAFTWIRE_ENTRIES_MAX);
    assert_int_equal(o.buf.data[at], 0xdd);
    assert_int_equal(rt_get_be32(o.buf.data + at + 1), CL_RAFTWIRE_ENTRIES_MAX);
    expect_decodes(&o, &m);
    assert_int_equal(m.append_entries.n_entries, CL_RAFTWIRE_ENTRIES_MAX);
    assert_int_equal(heap.live, 2);
    for (unsigned i = 0; i < CL_RAFTWIRE_ENTRIES_MAX; i++) {
        const struct raft_entry *e = &m.append_entries.entries[i];
        if (e->batch != m.append_entries.entries[0].batch || e->buf.len != 0 || e->term != 1 ||
            e->type != RAFT_COMMAND) {
            fail_msg("entry %u of %u", i, CL_RAFTWIRE_ENTRIES_MAX);
        }
    }
    cl_raftwire_release(&m);
    at = put_ae_many(&o.w, CL_RAFTWIRE_ENTRIES_MAX + 1);
    assert_int_equal(o.buf.data[at], 0xdd);
    assert_int_equal(rt_get_be32(o.buf.data + at + 1), CL_RAFTWIRE_ENTRIES_MAX + 1);
    expect_malformed(&o);
    out_close(&o);
}

static void test_reject_servers(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    struct wire_server s[CL_RAFTWIRE_SERVERS_MAX + 1];
    char long_address[CL_RAFTWIRE_ADDRESS_BYTES_MAX + 2];
    memset(long_address, 'x', sizeof(long_address));

    /* Controls: the trio; the longest address. */
    trio(s);
    put_is(&o.w, s, 3, V_BIN);
    expect_decodes(&o, &m);
    assert_int_equal(m.install_snapshot.term, 20);
    assert_int_equal(m.install_snapshot.last_index, 19);
    assert_int_equal(m.install_snapshot.last_term, 18);
    assert_int_equal(m.install_snapshot.conf_index, 17);
    assert_int_equal(m.install_snapshot.conf.n, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(m.install_snapshot.conf.servers[i].id, s[i].id);
        assert_string_equal(m.install_snapshot.conf.servers[i].address, s[i].address);
        assert_int_equal(m.install_snapshot.conf.servers[i].role, s[i].role);
    }
    assert_int_equal(m.install_snapshot.data.len, 4);
    assert_memory_equal(m.install_snapshot.data.base, "snap", 4);
    cl_raftwire_release(&m);
    s[1].address = long_address;
    s[1].address_len = CL_RAFTWIRE_ADDRESS_BYTES_MAX;
    put_is(&o.w, s, 3, V_BIN);
    expect_decodes(&o, &m);
    assert_int_equal(strlen(m.install_snapshot.conf.servers[1].address),
                     CL_RAFTWIRE_ADDRESS_BYTES_MAX);
    cl_raftwire_release(&m);

    /* One bad server among good ones. */
    trio(s);
    s[1].address_len = CL_RAFTWIRE_ADDRESS_BYTES_MAX + 1; /* Too long. */
    s[1].address = long_address;
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[2].role = RAFT_SPARE + 1;
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[2].role = 0x100000000ull + RAFT_VOTER; /* RAFT_VOTER once cast to int. */
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[1].id = 0;
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[1].address_len = 0; /* Empty. */
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[1].address = "b\0:2"; /* Embedded NUL. */
    s[1].address_len = 4;
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[2].id = s[0].id; /* Duplicate id. */
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[2].address = s[0].address; /* Duplicate address. */
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    s[0].address_bin = true; /* Address not a str. */
    put_is(&o.w, s, 3, V_BIN);
    expect_malformed(&o);
    trio(s);
    put_is(&o.w, s, 3, V_STR); /* Data not a bin. */
    expect_malformed(&o);

    /* CL_RAFTWIRE_SERVERS_MAX servers (control), one more. */
    static char names[CL_RAFTWIRE_SERVERS_MAX + 1][8];
    for (unsigned i = 0; i <= CL_RAFTWIRE_SERVERS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "s%u", i);
        s[i] = (struct wire_server){3, i + 1, names[i], strlen(names[i]), false, RAFT_VOTER};
    }
    put_is(&o.w, s, CL_RAFTWIRE_SERVERS_MAX, V_BIN);
    expect_decodes(&o, &m);
    assert_int_equal(m.install_snapshot.conf.n, CL_RAFTWIRE_SERVERS_MAX);
    assert_string_equal(m.install_snapshot.conf.servers[CL_RAFTWIRE_SERVERS_MAX - 1].address,
                        names[CL_RAFTWIRE_SERVERS_MAX - 1]);
    cl_raftwire_release(&m);
    put_is(&o.w, s, CL_RAFTWIRE_SERVERS_MAX + 1, V_BIN);
    expect_malformed(&o);
    out_close(&o);
}

static void test_reject_tribool(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    for (uint64_t t = raft_tribool_unknown; t <= raft_tribool_false; t++) {
        put_rvr(&o.w, V_TRUE, t);
        expect_decodes(&o, &m);
        assert_int_equal(m.request_vote_result.term, 40);
        assert_true(m.request_vote_result.vote_granted);
        assert_int_equal(m.request_vote_result.pre_vote, t);
        cl_raftwire_release(&m);
    }
    put_rvr(&o.w, V_TRUE, raft_tribool_false + 1);
    expect_malformed(&o);
    put_rvr(&o.w, V_TRUE, 0x100000000ull + raft_tribool_true);
    expect_malformed(&o);
    out_close(&o);
}

/* Where a bool is expected: true/false accepted, a uint 0/1, a nil, a negative int, a str
 * refused. */
static void test_reject_not_bool(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    for (unsigned i = 0; i < 4; i++) {
        enum val d = (i & 1) ? V_TRUE : V_FALSE;
        enum val p = (i & 2) ? V_TRUE : V_FALSE;
        put_rv(&o.w, d, p);
        expect_decodes(&o, &m);
        assert_int_equal(m.request_vote.term, 30);
        assert_int_equal(m.request_vote.candidate_id, 31);
        assert_int_equal(m.request_vote.last_log_index, 32);
        assert_int_equal(m.request_vote.last_log_term, 33);
        assert_int_equal(m.request_vote.disrupt_leader, d == V_TRUE);
        assert_int_equal(m.request_vote.pre_vote, p == V_TRUE);
        cl_raftwire_release(&m);
        put_rvr(&o.w, d, raft_tribool_unknown);
        expect_decodes(&o, &m);
        assert_int_equal(m.request_vote_result.vote_granted, d == V_TRUE);
        cl_raftwire_release(&m);
    }
    static const enum val bad[] = {V_UINT0, V_UINT1, V_NIL, V_NEG, V_STR};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_rv(&o.w, bad[i], V_FALSE);
        expect_malformed(&o);
        put_rv(&o.w, V_TRUE, bad[i]);
        expect_malformed(&o);
        put_rvr(&o.w, bad[i], raft_tribool_true);
        expect_malformed(&o);
    }
    out_close(&o);
}

/* Where a uint is expected: a negative int, a bool, a nil, a str refused; where a bin is
 * expected, a str. */
static void test_reject_not_uint(void **state)
{
    (void)state;
    struct out o;
    out_open(&o);
    struct raft_message m;
    put_tn(&o.w, RAFT_IO_TIMEOUT_NOW, V_UINT0); /* Control. */
    expect_decodes(&o, &m);
    assert_int_equal(m.timeout_now.term, 0);
    cl_raftwire_release(&m);
    static const enum val bad[] = {V_NEG, V_FALSE, V_TRUE, V_NIL, V_STR, V_BIN};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_tn(&o.w, RAFT_IO_TIMEOUT_NOW, bad[i]);
        expect_malformed(&o);
    }
    put_ae_one(&o.w, 3, RAFT_COMMAND, V_STR); /* Entry data a str. */
    expect_malformed(&o);
    out_close(&o);
}

/* ---- The encoder ---- */

/* Refusals write nothing: the buffer keeps exactly what it held. */
static void test_encode_refuses(void **state)
{
    (void)state;
    samples_init();
    struct out o;
    out_open(&o);
    encode_into(&o, &samples[S_TN]);
    const size_t held = o.buf.len;
    uint8_t copy[64];
    assert_true(held <= sizeof(copy));
    memcpy(copy, o.buf.data, held);

    struct raft_message m = samples[S_TN];
    m.type = 0;
    assert_int_equal(cl_raftwire_encode(&o.w, &m), RT_ETOOLARGE);
    assert_int_equal(o.buf.len, held);
    m.type = RAFT_IO_TIMEOUT_NOW + 1;
    assert_int_equal(cl_raftwire_encode(&o.w, &m), RT_ETOOLARGE);
    assert_int_equal(o.buf.len, held);

    struct raft_entry *zeros = calloc(CL_RAFTWIRE_ENTRIES_MAX + 1, sizeof(*zeros));
    assert_non_null(zeros);
    m = samples[S_AE];
    m.append_entries.entries = zeros;
    m.append_entries.n_entries = CL_RAFTWIRE_ENTRIES_MAX + 1;
    assert_int_equal(cl_raftwire_encode(&o.w, &m), RT_ETOOLARGE);
    assert_int_equal(o.buf.len, held);
    free(zeros);

    static struct raft_server many[CL_RAFTWIRE_SERVERS_MAX + 1];
    static char names[CL_RAFTWIRE_SERVERS_MAX + 1][8];
    for (unsigned i = 0; i <= CL_RAFTWIRE_SERVERS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "s%u", i);
        many[i] = (struct raft_server){i + 1, names[i], RAFT_VOTER};
    }
    m = samples[S_IS];
    m.install_snapshot.conf.servers = many;
    m.install_snapshot.conf.n = CL_RAFTWIRE_SERVERS_MAX + 1;
    assert_int_equal(cl_raftwire_encode(&o.w, &m), RT_ETOOLARGE);
    assert_int_equal(o.buf.len, held);
    m.install_snapshot.conf.n = CL_RAFTWIRE_SERVERS_MAX; /* Control. */
    encode_into(&o, &m);
    rt_buf_truncate(&o.buf, held);

    static char too_long[CL_RAFTWIRE_ADDRESS_BYTES_MAX + 2];
    memset(too_long, 'x', CL_RAFTWIRE_ADDRESS_BYTES_MAX + 1);
    struct raft_server one = {1, too_long, RAFT_VOTER};
    m.install_snapshot.conf.servers = &one;
    m.install_snapshot.conf.n = 1;
    assert_int_equal(cl_raftwire_encode(&o.w, &m), RT_ETOOLARGE);
    assert_int_equal(o.buf.len, held);
    too_long[CL_RAFTWIRE_ADDRESS_BYTES_MAX] = '\0'; /* Control: the longest allowed. */
    encode_into(&o, &m);
    rt_buf_truncate(&o.buf, held);

    assert_int_equal(rt_mp_writer_error(&o.w), 0);
    assert_memory_equal(o.buf.data, copy, held);
    out_close(&o);
}

/* Exactly CL_RAFTWIRE_ENTRIES_MAX entries encode and decode back. */
static void test_encode_entries_max(void **state)
{
    (void)state;
    samples_init();
    struct raft_entry *entries = calloc(CL_RAFTWIRE_ENTRIES_MAX, sizeof(*entries));
    assert_non_null(entries);
    for (unsigned i = 0; i < CL_RAFTWIRE_ENTRIES_MAX; i++) {
        entries[i].term = i;
        entries[i].type = RAFT_COMMAND + i % 3;
        entries[i].buf.base = pool + i % 1024;
        entries[i].buf.len = i % 13;
    }
    struct raft_message m = samples[S_AE];
    m.append_entries.entries = entries;
    m.append_entries.n_entries = CL_RAFTWIRE_ENTRIES_MAX;
    round_trip(&m);
    free(entries);
}

int main(void)
{
#define CASE(f) cmocka_unit_test_setup_teardown(f, heap_setup, heap_teardown)
    const struct CMUnitTest tests[] = {
        CASE(test_round_trip_append_entries),
        CASE(test_round_trip_append_entries_result),
        CASE(test_round_trip_request_vote),
        CASE(test_round_trip_request_vote_result),
        CASE(test_round_trip_install_snapshot),
        CASE(test_round_trip_timeout_now),
        CASE(test_decode_consumes_exactly),
        CASE(test_decode_truncated),
        CASE(test_decode_enomem),
        CASE(test_reject_type),
        CASE(test_reject_count),
        CASE(test_reject_entry_type),
        CASE(test_reject_entries_over_max),
        CASE(test_reject_servers),
        CASE(test_reject_tribool),
        CASE(test_reject_not_bool),
        CASE(test_reject_not_uint),
        CASE(test_encode_refuses),
        CASE(test_encode_entries_max),
    };
#undef CASE
    return cmocka_run_group_tests(tests, NULL, NULL);
}
