/* libFuzzer target: cl_raftwire's decoder, fed raw bytes as a peer's link would feed it.
 *
 * What a peer sends is decoded before raft sees it, and raft trusts what it is given (it
 * asserts on ids, owns and frees the buffers), so the decoder must refuse anything it did not
 * write without crashing or leaking, and what it accepts must have the shape raft expects: one
 * batch for all entries, entry data at 8-byte offsets in it, entry types, roles and the
 * tribool in range, non-zero distinct ids, addresses within the limit. Whatever decodes must
 * survive a round trip: encoded again and decoded, it gives the same message field by field,
 * and that second message encodes to the same bytes as the first did (the encoding of a
 * decoded message is canonical). A failed decode leaves the reader where it was. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "cl_raftwire.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

#define FUZZ_INPUT_MAX (1u << 20)
#define FUZZ_BUF_MAX   (2u << 20) /* A re-encoding is never longer than its input. */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

/* What raft expects of a received message. */
static void check_shape(const struct raft_message *m)
{
    check(m->server_id == 0 && m->server_address == NULL);
    switch (m->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *ae = &m->append_entries;
        check(ae->n_entries <= CL_RAFTWIRE_ENTRIES_MAX);
        check((ae->n_entries == 0) == (ae->entries == NULL));
        const uint8_t *batch = ae->n_entries > 0 ? ae->entries[0].batch : NULL;
        const uint8_t *next = batch;
        for (unsigned i = 0; i < ae->n_entries; i++) {
            const struct raft_entry *e = &ae->entries[i];
            const uint8_t *base = e->buf.base;
            check(batch != NULL && e->batch == batch);
            check(e->type >= RAFT_COMMAND && e->type <= RAFT_CHANGE);
            check(base != NULL && base >= next && (size_t)(base - batch) % 8u == 0);
            next = base + e->buf.len;
        }
        break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
    case RAFT_IO_REQUEST_VOTE:
    case RAFT_IO_TIMEOUT_NOW:
        break;
    case RAFT_IO_REQUEST_VOTE_RESULT:
        check(m->request_vote_result.pre_vote == raft_tribool_unknown ||
              m->request_vote_result.pre_vote == raft_tribool_true ||
              m->request_vote_result.pre_vote == raft_tribool_false);
        break;
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_configuration *conf = &m->install_snapshot.conf;
        check(conf->n <= CL_RAFTWIRE_SERVERS_MAX);
        check(conf->n == 0 || conf->servers != NULL);
        for (unsigned i = 0; i < conf->n; i++) {
            const struct raft_server *s = &conf->servers[i];
            size_t len = strlen(s->address);
            check(s->id != 0 && len > 0 && len <= CL_RAFTWIRE_ADDRESS_BYTES_MAX);
            check(s->role == RAFT_STANDBY || s->role == RAFT_VOTER || s->role == RAFT_SPARE);
            for (unsigned j = 0; j < i; j++) {
                check(conf->servers[j].id != s->id);
                check(strcmp(conf->servers[j].address, s->address) != 0);
            }
        }
        check(m->install_snapshot.data.base != NULL);
        break;
    }
    default:
        check(0);
    }
}

static void check_equal(const struct raft_message *a, const struct raft_message *b)
{
    check(a->type == b->type);
    switch (a->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *x = &a->append_entries;
        const struct raft_append_entries *y = &b->append_entries;
        check(x->term == y->term && x->prev_log_index == y->prev_log_index &&
              x->prev_log_term == y->prev_log_term && x->leader_commit == y->leader_commit &&
              x->n_entries == y->n_entries);
        for (unsigned i = 0; i < x->n_entries; i++) {
            const struct raft_entry *e = &x->entries[i];
            const struct raft_entry *f = &y->entries[i];
            check(e->term == f->term && e->type == f->type && e->buf.len == f->buf.len);
            check(e->buf.len == 0 || memcmp(e->buf.base, f->buf.base, e->buf.len) == 0);
        }
        break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        check(a->append_entries_result.term == b->append_entries_result.term);
        check(a->append_entries_result.rejected == b->append_entries_result.rejected);
        check(a->append_entries_result.last_log_index == b->append_entries_result.last_log_index);
        break;
    case RAFT_IO_REQUEST_VOTE:
        check(a->request_vote.term == b->request_vote.term);
        check(a->request_vote.candidate_id == b->request_vote.candidate_id);
        check(a->request_vote.last_log_index == b->request_vote.last_log_index);
        check(a->request_vote.last_log_term == b->request_vote.last_log_term);
        check(a->request_vote.disrupt_leader == b->request_vote.disrupt_leader);
        check(a->request_vote.pre_vote == b->request_vote.pre_vote);
        break;
    case RAFT_IO_REQUEST_VOTE_RESULT:
        check(a->request_vote_result.term == b->request_vote_result.term);
        check(a->request_vote_result.vote_granted == b->request_vote_result.vote_granted);
        check(a->request_vote_result.pre_vote == b->request_vote_result.pre_vote);
        break;
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *x = &a->install_snapshot;
        const struct raft_install_snapshot *y = &b->install_snapshot;
        check(x->term == y->term && x->last_index == y->last_index &&
              x->last_term == y->last_term && x->conf_index == y->conf_index);
        check(x->conf.n == y->conf.n);
        for (unsigned i = 0; i < x->conf.n; i++) {
            check(x->conf.servers[i].id == y->conf.servers[i].id);
            check(strcmp(x->conf.servers[i].address, y->conf.servers[i].address) == 0);
            check(x->conf.servers[i].role == y->conf.servers[i].role);
        }
        check(x->data.len == y->data.len);
        check(x->data.len == 0 || memcmp(x->data.base, y->data.base, x->data.len) == 0);
        break;
    }
    case RAFT_IO_TIMEOUT_NOW:
        check(a->timeout_now.term == b->timeout_now.term);
        check(a->timeout_now.last_log_index == b->timeout_now.last_log_index);
        check(a->timeout_now.last_log_term == b->timeout_now.last_log_term);
        break;
    default:
        check(0);
    }
}

static void encode(const struct raft_message *m, struct rt_buf *buf)
{
    rt_buf_init(buf, FUZZ_BUF_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    check(cl_raftwire_encode(&w, m) == 0);
    check(rt_mp_writer_error(&w) == 0 && buf->len > 0);
}

/* Decode @buf whole (nothing may be left over). */
static void decode_whole(const struct rt_buf *buf, struct raft_message *m)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, buf->data, buf->len);
    check(cl_raftwire_decode(&r, m) == 0);
    check(rt_mp_remaining(&r) == 0);
    check_shape(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_INPUT_MAX) {
        return 0;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, size);
    struct raft_message first;
    int rv = cl_raftwire_decode(&r, &first);
    check(r.end == data + size);
    if (rv != 0) {
        check(rv == RT_EMALFORMED || rv == RT_ENOMEM);
        check(r.pos == data);
        return 0;
    }
    check(r.pos > data && r.pos <= data + size);
    const size_t consumed = (size_t)(r.pos - data);
    check_shape(&first);

    /* Every value is re-encoded in its shortest form: never longer than what was read. */
    struct rt_buf once;
    encode(&first, &once);
    check(once.len <= consumed);
    struct raft_message second;
    decode_whole(&once, &second);
    check_equal(&first, &second);

    struct rt_buf twice;
    encode(&second, &twice);
    check(twice.len == once.len && memcmp(twice.data, once.data, once.len) == 0);

    cl_raftwire_release(&second);
    cl_raftwire_release(&first);
    rt_buf_free(&twice);
    rt_buf_free(&once);
    return 0;
}
