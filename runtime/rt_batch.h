/* rt_batch: the command batch, the payload of one raft entry.
 *
 * Persistent format (it is what the raft log holds), msgpack-encoded:
 *
 *   batch   = [version: uint (=1), timestamp_ms: uint, commands: array32 of command]
 *   command = [origin: uint, actor_type: uint, op: uint, key: bin, args: bin,
 *              source_shard: uint, source_seq: uint, timer_due_ms: uint]
 *
 * The leader picks timestamp_ms from its clock; every replica uses it as "now" for every
 * command of the entry (determinism). @args is the operation's own msgpack, opaque here and
 * validated by the handler. Decoding is strict: exact types, exact array sizes, every limit of
 * rt_limits.h, no trailing bytes. A decoded batch points into the encoded bytes (no copy).
 */
#ifndef RT_BATCH_H
#define RT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "rt_buf.h"

enum rt_origin {
    RT_ORIGIN_CLIENT = 0,  /* From the API, through the leader. */
    RT_ORIGIN_MESSAGE = 1, /* From another shard's outbox: deduplicated by (source shard, seq). */
    RT_ORIGIN_TIMER = 2,   /* A durable timer fired: the timer (due, seq) is consumed once. */
};

struct rt_command {
    uint8_t origin;        /* enum rt_origin */
    uint8_t actor_type;    /* Registered actor type id. */
    uint8_t op;            /* Operation index within the type. */
    uint16_t source_shard; /* MESSAGE: the sending shard; otherwise 0. */
    uint64_t source_seq;   /* MESSAGE: the sender's sequence; TIMER: the timer's seq. */
    uint64_t timer_due_ms; /* TIMER: the timer's due time; otherwise 0. */
    const uint8_t *key;    /* Actor key, 1..RT_ACTOR_KEY_BYTES_MAX bytes. */
    uint32_t key_len;
    const uint8_t *args; /* Operation arguments (msgpack), 0..RT_COMMAND_ARGS_BYTES_MAX. */
    uint32_t args_len;
};

struct rt_batch {
    uint32_t version;
    uint64_t timestamp_ms;
    uint32_t count;              /* Commands decoded into @commands. */
    struct rt_command *commands; /* Caller-provided array. */
};

/* Decode @data into @batch, whose @commands array holds @commands_cap entries.
 * RT_EMALFORMED (not our encoding), RT_EVERSION, RT_ETOOLARGE (a limit exceeded). On error
 * @batch->count is 0. */
int rt_batch_decode(const uint8_t *data, size_t len, struct rt_batch *batch,
                    struct rt_command *commands, uint32_t commands_cap);

/* Incremental encoder used by the leader: begin, add commands as they arrive, finish. */
struct rt_batch_builder {
    struct rt_buf buf;   /* The encoding so far; max = the byte limit. */
    uint32_t count;      /* Commands added. */
    size_t count_offset; /* Where the array32 header of the commands starts. */
};

/* @bytes_max <= RT_BATCH_BYTES_MAX. */
void rt_batch_builder_init(struct rt_batch_builder *b, size_t bytes_max);
void rt_batch_builder_free(struct rt_batch_builder *b);
int rt_batch_builder_begin(struct rt_batch_builder *b, uint64_t timestamp_ms);
/* Validates @cmd against the limits (RT_EINVAL, RT_ETOOLARGE). RT_ETOOLARGE also when the
 * batch is full (count or bytes): the builder is unchanged and the caller starts a new one. */
int rt_batch_builder_add(struct rt_batch_builder *b, const struct rt_command *cmd);
/* The finished encoding; valid until the next begin. */
const uint8_t *rt_batch_builder_finish(struct rt_batch_builder *b, size_t *len);

/* Encode one command's fields (shared by the builder and the timer records). */
int rt_command_check(const struct rt_command *cmd);

#endif /* RT_BATCH_H */
