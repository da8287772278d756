/* cl_raftwire: raft's messages as msgpack. The contract is in cl_raftwire.h. */
#include "cl_raftwire.h"

#include <string.h>

#include "rt_error.h"

/* Entry data starts at 8-byte offsets inside the batch, as in raft_uv's own batches. */
#define ENTRY_ALIGN 8u

static size_t entry_padded(size_t len)
{
    return (len + ENTRY_ALIGN - 1) & ~(size_t)(ENTRY_ALIGN - 1);
}

/* Fields after [type, term] for each type; also the check that a type is known. */
static uint32_t fields_after_term(unsigned type)
{
    switch (type) {
    case RAFT_IO_APPEND_ENTRIES:
        return 4;
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        return 2;
    case RAFT_IO_REQUEST_VOTE:
        return 5;
    case RAFT_IO_REQUEST_VOTE_RESULT:
        return 2;
    case RAFT_IO_INSTALL_SNAPSHOT:
        return 5;
    case RAFT_IO_TIMEOUT_NOW:
        return 2;
    default:
        return 0;
    }
}

int cl_raftwire_encode(struct rt_mp_writer *w, const struct raft_message *msg)
{
    uint32_t fields = fields_after_term(msg->type);
    if (fields == 0 || (msg->type == RAFT_IO_APPEND_ENTRIES &&
                        msg->append_entries.n_entries > CL_RAFTWIRE_ENTRIES_MAX)) {
        return RT_ETOOLARGE;
    }
    if (msg->type == RAFT_IO_INSTALL_SNAPSHOT) {
        const struct raft_configuration *conf = &msg->install_snapshot.conf;
        if (conf->n > CL_RAFTWIRE_SERVERS_MAX) {
            return RT_ETOOLARGE;
        }
        for (unsigned i = 0; i < conf->n; i++) {
            if (strlen(conf->servers[i].address) > CL_RAFTWIRE_ADDRESS_BYTES_MAX) {
                return RT_ETOOLARGE;
            }
        }
    }
    rt_mp_write_array(w, 2 + fields);
    rt_mp_write_uint(w, msg->type);
    switch (msg->type) {
    case RAFT_IO_APPEND_ENTRIES: {
        const struct raft_append_entries *ae = &msg->append_entries;
        rt_mp_write_uint(w, ae->term);
        rt_mp_write_uint(w, ae->prev_log_index);
        rt_mp_write_uint(w, ae->prev_log_term);
        rt_mp_write_uint(w, ae->leader_commit);
        rt_mp_write_array(w, ae->n_entries);
        for (unsigned i = 0; i < ae->n_entries; i++) {
            const struct raft_entry *e = &ae->entries[i];
            rt_mp_write_array(w, 3);
            rt_mp_write_uint(w, e->term);
            rt_mp_write_uint(w, e->type);
            rt_mp_write_bin(w, e->buf.base, e->buf.len);
        }
        break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        rt_mp_write_uint(w, msg->append_entries_result.term);
        rt_mp_write_uint(w, msg->append_entries_result.rejected);
        rt_mp_write_uint(w, msg->append_entries_result.last_log_index);
        break;
    case RAFT_IO_REQUEST_VOTE:
        rt_mp_write_uint(w, msg->request_vote.term);
        rt_mp_write_uint(w, msg->request_vote.candidate_id);
        rt_mp_write_uint(w, msg->request_vote.last_log_index);
        rt_mp_write_uint(w, msg->request_vote.last_log_term);
        rt_mp_write_bool(w, msg->request_vote.disrupt_leader);
        rt_mp_write_bool(w, msg->request_vote.pre_vote);
        break;
    case RAFT_IO_REQUEST_VOTE_RESULT:
        rt_mp_write_uint(w, msg->request_vote_result.term);
        rt_mp_write_bool(w, msg->request_vote_result.vote_granted);
        rt_mp_write_uint(w, (uint64_t)msg->request_vote_result.pre_vote);
        break;
    case RAFT_IO_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *is = &msg->install_snapshot;
        rt_mp_write_uint(w, is->term);
        rt_mp_write_uint(w, is->last_index);
        rt_mp_write_uint(w, is->last_term);
        rt_mp_write_uint(w, is->conf_index);
        rt_mp_write_array(w, is->conf.n);
        for (unsigned i = 0; i < is->conf.n; i++) {
            rt_mp_write_array(w, 3);
            rt_mp_write_uint(w, is->conf.servers[i].id);
            rt_mp_write_cstr(w, is->conf.servers[i].address);
            rt_mp_write_uint(w, (uint64_t)is->conf.servers[i].role);
        }
        rt_mp_write_bin(w, is->data.base, is->data.len);
        break;
    }
    case RAFT_IO_TIMEOUT_NOW:
        rt_mp_write_uint(w, msg->timeout_now.term);
        rt_mp_write_uint(w, msg->timeout_now.last_log_index);
        rt_mp_write_uint(w, msg->timeout_now.last_log_term);
        break;
    }
    return 0;
}

/* Read @n unsigned integers into @out; a bool where @bools has bit i set. */
static int read_uints(struct rt_mp_reader *r, uint64_t *out, unsigned n, unsigned bools)
{
    for (unsigned i = 0; i < n; i++) {
        if (bools & (1u << i)) {
            bool b;
            if (rt_mp_read_bool(r, &b) != 0) {
                return RT_EMALFORMED;
            }
            out[i] = b;
        } else if (rt_mp_read_uint(r, &out[i]) != 0) {
            return RT_EMALFORMED;
        }
    }
    return 0;
}

/* The entries of an APPEND_ENTRIES: a first pass checks them and sums their sizes, so that
 * nothing is allocated for a bad message; the second copies them into one batch. */
static int decode_entries(struct rt_mp_reader *r, struct raft_append_entries *ae)
{
    uint32_t n;
    if (rt_mp_read_array(r, &n) != 0 || n > CL_RAFTWIRE_ENTRIES_MAX) {
        return RT_EMALFORMED;
    }
    struct rt_mp_reader first = *r;
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fields, len;
        uint64_t term, type;
        const uint8_t *data;
        if (rt_mp_read_array(&first, &fields) != 0 || fields != 3 ||
            rt_mp_read_uint(&first, &term) != 0 || rt_mp_read_uint(&first, &type) != 0 ||
            type < RAFT_COMMAND || type > RAFT_CHANGE || rt_mp_read_bin(&first, &data, &len) != 0) {
            return RT_EMALFORMED;
        }
        total += entry_padded(len); /* len < the message's size: no overflow. */
    }
    ae->entries = NULL;
    ae->n_entries = 0;
    if (n == 0) {
        *r = first;
        return 0;
    }
    struct raft_entry *entries = raft_malloc(n * sizeof(*entries));
    uint8_t *batch = raft_malloc(total > 0 ? total : 1);
    if (entries == NULL || batch == NULL) {
        raft_free(entries);
        raft_free(batch);
        return RT_ENOMEM;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fields, len;
        uint64_t term, type;
        const uint8_t *data;
        /* Checked in the first pass. */
        (void)rt_mp_read_array(r, &fields);
        (void)rt_mp_read_uint(r, &term);
        (void)rt_mp_read_uint(r, &type);
        (void)rt_mp_read_bin(r, &data, &len);
        if (len > 0) {
            memcpy(batch + off, data, len);
        }
        entries[i].term = term;
        entries[i].type = (unsigned short)type;
        entries[i].buf.base = batch + off;
        entries[i].buf.len = len;
        entries[i].batch = batch;
        off += entry_padded(len);
    }
    ae->entries = entries;
    ae->n_entries = n;
    return 0;
}

static int decode_install_snapshot(struct rt_mp_reader *r, struct raft_install_snapshot *is)
{
    uint64_t v[3];
    uint32_t servers;
    if (read_uints(r, v, 3, 0) != 0 || rt_mp_read_array(r, &servers) != 0 ||
        servers > CL_RAFTWIRE_SERVERS_MAX) {
        return RT_EMALFORMED;
    }
    is->last_index = v[0];
    is->last_term = v[1];
    is->conf_index = v[2];
    raft_configuration_init(&is->conf);
    int rv = 0;
    for (uint32_t i = 0; i < servers && rv == 0; i++) {
        uint32_t fields, len;
        uint64_t id, role;
        const char *address;
        char copy[CL_RAFTWIRE_ADDRESS_BYTES_MAX + 1];
        if (rt_mp_read_array(r, &fields) != 0 || fields != 3 || rt_mp_read_uint(r, &id) != 0 ||
            id == 0 || rt_mp_read_str(r, &address, &len) != 0 || len == 0 ||
            len > CL_RAFTWIRE_ADDRESS_BYTES_MAX || memchr(address, 0, len) != NULL ||
            rt_mp_read_uint(r, &role) != 0 || role > RAFT_SPARE) {
            rv = RT_EMALFORMED;
            break;
        }
        memcpy(copy, address, len);
        copy[len] = '\0';
        int add = raft_configuration_add(&is->conf, id, copy, (int)role);
        rv = add == 0 ? 0 : add == RAFT_NOMEM ? RT_ENOMEM : RT_EMALFORMED; /* Duplicates. */
    }
    const uint8_t *data;
    uint32_t len;
    if (rv == 0 && rt_mp_read_bin(r, &data, &len) != 0) {
        rv = RT_EMALFORMED;
    }
    if (rv == 0) {
        is->data.base = raft_malloc(len > 0 ? len : 1);
        is->data.len = len;
        if (is->data.base == NULL) {
            rv = RT_ENOMEM;
        } else if (len > 0) {
            memcpy(is->data.base, data, len);
        }
    }
    if (rv != 0) {
        raft_configuration_close(&is->conf);
        is->data.base = NULL;
    }
    return rv;
}

int cl_raftwire_decode(struct rt_mp_reader *r, struct raft_message *msg)
{
    struct rt_mp_reader in = *r;
    uint32_t count;
    uint64_t type, term;
    memset(msg, 0, sizeof(*msg));
    if (rt_mp_read_array(&in, &count) != 0 || rt_mp_read_uint(&in, &type) != 0 ||
        type > RAFT_IO_TIMEOUT_NOW || fields_after_term((unsigned)type) == 0 ||
        count != 2 + fields_after_term((unsigned)type) || rt_mp_read_uint(&in, &term) != 0) {
        return RT_EMALFORMED;
    }
    msg->type = (unsigned short)type;
    uint64_t v[5];
    int rv = 0;
    switch (type) {
    case RAFT_IO_APPEND_ENTRIES:
        rv = read_uints(&in, v, 3, 0);
        msg->append_entries.term = term;
        msg->append_entries.prev_log_index = v[0];
        msg->append_entries.prev_log_term = v[1];
        msg->append_entries.leader_commit = v[2];
        if (rv == 0) {
            rv = decode_entries(&in, &msg->append_entries);
        }
        break;
    case RAFT_IO_APPEND_ENTRIES_RESULT:
        rv = read_uints(&in, v, 2, 0);
        msg->append_entries_result.term = term;
        msg->append_entries_result.rejected = v[0];
        msg->append_entries_result.last_log_index = v[1];
        break;
    case RAFT_IO_REQUEST_VOTE:
        rv = read_uints(&in, v, 5, 0x18u);
        msg->request_vote.term = term;
        msg->request_vote.candidate_id = v[0];
        msg->request_vote.last_log_index = v[1];
        msg->request_vote.last_log_term = v[2];
        msg->request_vote.disrupt_leader = v[3] != 0;
        msg->request_vote.pre_vote = v[4] != 0;
        break;
    case RAFT_IO_REQUEST_VOTE_RESULT:
        rv = read_uints(&in, v, 2, 0x1u);
        if (rv == 0 && v[1] > raft_tribool_false) {
            rv = RT_EMALFORMED;
        }
        msg->request_vote_result.term = term;
        msg->request_vote_result.vote_granted = v[0] != 0;
        msg->request_vote_result.pre_vote = (raft_tribool)v[1];
        break;
    case RAFT_IO_INSTALL_SNAPSHOT:
        msg->install_snapshot.term = term;
        rv = decode_install_snapshot(&in, &msg->install_snapshot);
        break;
    case RAFT_IO_TIMEOUT_NOW:
        rv = read_uints(&in, v, 2, 0);
        msg->timeout_now.term = term;
        msg->timeout_now.last_log_index = v[0];
        msg->timeout_now.last_log_term = v[1];
        break;
    }
    if (rv != 0) {
        memset(msg, 0, sizeof(*msg));
        return rv;
    }
    *r = in;
    return 0;
}

void cl_raftwire_release(struct raft_message *msg)
{
    switch (msg->type) {
    case RAFT_IO_APPEND_ENTRIES:
        if (msg->append_entries.n_entries > 0) {
            raft_free(msg->append_entries.entries[0].batch);
        }
        raft_free(msg->append_entries.entries);
        msg->append_entries.entries = NULL;
        msg->append_entries.n_entries = 0;
        break;
    case RAFT_IO_INSTALL_SNAPSHOT:
        raft_configuration_close(&msg->install_snapshot.conf);
        raft_free(msg->install_snapshot.data.base);
        msg->install_snapshot.data.base = NULL;
        break;
    default:
        break;
    }
}
