/* Command batch encoding. The decoder is strict on purpose: a batch comes from our own leader,
 * so anything unexpected means corruption or a version we do not understand, and every
 * replica must reach the same verdict from the same bytes. */
#include "rt_batch.h"

#include <assert.h>
#include <string.h>

#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"

#define BATCH_FIELDS   3u
#define COMMAND_FIELDS 8u
/* Smallest encoded command: fixarray + 3 fixints + two empty bins (2 bytes each) + 3 fixints. */
#define COMMAND_BYTES_MIN 11u

int rt_command_check(const struct rt_command *cmd)
{
    assert(cmd != NULL);
    if (cmd->origin > RT_ORIGIN_TIMER) {
        return RT_EINVAL;
    }
    if (cmd->actor_type == 0 || cmd->actor_type >= RT_ACTOR_TYPES_MAX ||
        cmd->op >= RT_ACTOR_OPS_MAX) {
        return RT_EINVAL;
    }
    if (cmd->key_len == 0 || cmd->key_len > RT_ACTOR_KEY_BYTES_MAX || cmd->key == NULL) {
        return cmd->key_len > RT_ACTOR_KEY_BYTES_MAX ? RT_ETOOLARGE : RT_EINVAL;
    }
    if (cmd->args_len > RT_COMMAND_ARGS_BYTES_MAX) {
        return RT_ETOOLARGE;
    }
    if (cmd->args == NULL && cmd->args_len > 0) {
        return RT_EINVAL;
    }
    if (cmd->source_shard >= RT_SHARDS_MAX) {
        return RT_EINVAL;
    }
    return 0;
}

/* Read a uint that must fit @max. */
static int read_uint_max(struct rt_mp_reader *r, uint64_t max, uint64_t *v)
{
    int rv = rt_mp_read_uint(r, v);
    if (rv != 0) {
        return rv;
    }
    return *v <= max ? 0 : RT_EMALFORMED;
}

static int decode_command(struct rt_mp_reader *r, struct rt_command *cmd)
{
    uint32_t fields;
    uint64_t origin, type, op, source_shard, source_seq, due;
    const uint8_t *key, *args;
    uint32_t key_len, args_len;
    int rv = rt_mp_read_array(r, &fields);
    if (rv != 0 || fields != COMMAND_FIELDS) {
        return RT_EMALFORMED;
    }
    if ((rv = read_uint_max(r, UINT8_MAX, &origin)) != 0 ||
        (rv = read_uint_max(r, UINT8_MAX, &type)) != 0 ||
        (rv = read_uint_max(r, UINT8_MAX, &op)) != 0 ||
        (rv = rt_mp_read_bin(r, &key, &key_len)) != 0 ||
        (rv = rt_mp_read_bin(r, &args, &args_len)) != 0 ||
        (rv = read_uint_max(r, UINT16_MAX, &source_shard)) != 0 ||
        (rv = rt_mp_read_uint(r, &source_seq)) != 0 || (rv = rt_mp_read_uint(r, &due)) != 0) {
        return RT_EMALFORMED;
    }
    cmd->origin = (uint8_t)origin;
    cmd->actor_type = (uint8_t)type;
    cmd->op = (uint8_t)op;
    cmd->key = key;
    cmd->key_len = key_len;
    cmd->args = args_len > 0 ? args : NULL;
    cmd->args_len = args_len;
    cmd->source_shard = (uint16_t)source_shard;
    cmd->source_seq = source_seq;
    cmd->timer_due_ms = due;
    rv = rt_command_check(cmd);
    return rv == RT_ETOOLARGE ? RT_ETOOLARGE : (rv != 0 ? RT_EMALFORMED : 0);
}

int rt_batch_decode(const uint8_t *data, size_t len, struct rt_batch *batch,
                    struct rt_command *commands, uint32_t commands_cap)
{
    assert(batch != NULL);
    assert(commands != NULL || commands_cap == 0);
    batch->count = 0;
    batch->commands = commands;
    if (data == NULL || len == 0) {
        return RT_EMALFORMED;
    }
    if (len > RT_BATCH_BYTES_MAX) {
        return RT_ETOOLARGE;
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    uint32_t fields, count;
    uint64_t version, timestamp_ms;
    if (rt_mp_read_array(&r, &fields) != 0 || fields != BATCH_FIELDS ||
        rt_mp_read_uint(&r, &version) != 0) {
        return RT_EMALFORMED;
    }
    if (version != RT_BATCH_VERSION) {
        return RT_EVERSION;
    }
    if (rt_mp_read_uint(&r, &timestamp_ms) != 0 || rt_mp_read_array(&r, &count) != 0) {
        return RT_EMALFORMED;
    }
    if (count > RT_BATCH_COMMANDS_MAX || count > commands_cap) {
        return RT_ETOOLARGE;
    }
    if ((uint64_t)count * COMMAND_BYTES_MIN > rt_mp_remaining(&r)) {
        return RT_EMALFORMED;
    }
    for (uint32_t i = 0; i < count; i++) {
        int rv = decode_command(&r, &commands[i]);
        if (rv != 0) {
            return rv;
        }
    }
    if (rt_mp_remaining(&r) != 0) {
        return RT_EMALFORMED;
    }
    batch->version = (uint32_t)version;
    batch->timestamp_ms = timestamp_ms;
    batch->count = count;
    return 0;
}

void rt_batch_builder_init(struct rt_batch_builder *b, size_t bytes_max)
{
    assert(b != NULL);
    assert(bytes_max > 0 && bytes_max <= RT_BATCH_BYTES_MAX);
    rt_buf_init(&b->buf, bytes_max);
    b->count = 0;
    b->count_offset = 0;
}

void rt_batch_builder_free(struct rt_batch_builder *b)
{
    assert(b != NULL);
    rt_buf_free(&b->buf);
}

int rt_batch_builder_begin(struct rt_batch_builder *b, uint64_t timestamp_ms)
{
    assert(b != NULL);
    rt_buf_reset(&b->buf);
    b->count = 0;
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &b->buf);
    rt_mp_write_array(&w, BATCH_FIELDS);
    rt_mp_write_uint(&w, RT_BATCH_VERSION);
    rt_mp_write_uint(&w, timestamp_ms);
    b->count_offset = rt_mp_write_array32(&w, 0);
    assert(rt_mp_writer_error(&w) != 0 || b->buf.len == b->count_offset + 5);
    return rt_mp_writer_error(&w);
}

int rt_batch_builder_add(struct rt_batch_builder *b, const struct rt_command *cmd)
{
    assert(b != NULL);
    assert(b->buf.len > b->count_offset); /* begin() was called. */
    int rv = rt_command_check(cmd);
    if (rv != 0) {
        return rv;
    }
    if (b->count == RT_BATCH_COMMANDS_MAX) {
        return RT_ETOOLARGE;
    }
    size_t mark = b->buf.len;
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &b->buf);
    rt_mp_write_array(&w, COMMAND_FIELDS);
    rt_mp_write_uint(&w, cmd->origin);
    rt_mp_write_uint(&w, cmd->actor_type);
    rt_mp_write_uint(&w, cmd->op);
    rt_mp_write_bin(&w, cmd->key, cmd->key_len);
    rt_mp_write_bin(&w, cmd->args, cmd->args_len);
    rt_mp_write_uint(&w, cmd->source_shard);
    rt_mp_write_uint(&w, cmd->source_seq);
    rt_mp_write_uint(&w, cmd->timer_due_ms);
    if (rt_mp_writer_error(&w) != 0) {
        rt_buf_truncate(&b->buf, mark); /* Full: leave the batch as it was. */
        return rt_mp_writer_error(&w);
    }
    b->count++;
    return 0;
}

const uint8_t *rt_batch_builder_finish(struct rt_batch_builder *b, size_t *len)
{
    assert(b != NULL && len != NULL);
    assert(b->buf.len >= b->count_offset + 5);
    rt_put_be32(b->buf.data + b->count_offset + 1, b->count);
    *len = b->buf.len;
    return b->buf.data;
}
