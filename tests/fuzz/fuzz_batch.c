/* libFuzzer target: the batch decoder and the apply engine with the business actors.
 *
 * The first input byte picks what the rest is:
 *   0      a raw raft entry, decoded and applied as is;
 *   1..4   the args of one order operation (op = byte - 1) inside a valid batch, twice, so
 *          create/conflict/close paths and the args decoders all see hostile bytes.
 * Whatever happens, the engine must answer with a code, never crash, and leave the store
 * consistent: a replayed entry is a no-op. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "act_order.h"
#include "act_registry.h"
#include "mem_store.h"
#include "rt_engine.h"
#include "rt_error.h"
#include "rt_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rt_registry registry;
static int initialised;

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!initialised) {
        check(act_registry_init(&registry) == 0);
        rt_log_set_level(RT_LOG_ERROR); /* Rejected entries are expected here. */
        initialised = 1;
    }
    if (size < 1 || size > RT_BATCH_BYTES_MAX) {
        return 0;
    }
    struct mem_store *mem = mem_store_new();
    struct rt_engine engine;
    struct rt_engine_config config = {0, 1, &registry, mem_store_store(mem), NULL};
    check(rt_engine_init(&engine, &config) == 0);
    struct rt_batch_builder builder;
    rt_batch_builder_init(&builder, RT_BATCH_BYTES_MAX);
    if (data[0] == 0) {
        int rv = rt_engine_apply(&engine, 1, data + 1, size - 1);
        check(rv == 0 || rv == RT_EMALFORMED || rv == RT_EVERSION || rv == RT_ETOOLARGE);
        if (rv == 0) {
            check(rt_engine_reply_count(&engine) <= RT_BATCH_COMMANDS_MAX);
            check(rt_engine_apply(&engine, 1, data + 1, size - 1) == RT_EDUPLICATE);
        }
    } else if (data[0] <= ACT_ORDER_OP_COUNT && size - 1 <= RT_COMMAND_ARGS_BYTES_MAX) {
        uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
        size_t key_len = act_order_key(key, "fuzzapp", 7, "order-1", 7);
        check(key_len > 0);
        struct rt_command cmd = {.origin = RT_ORIGIN_CLIENT,
                                 .actor_type = ACT_TYPE_ORDER,
                                 .op = (uint8_t)(data[0] - 1),
                                 .key = key,
                                 .key_len = (uint32_t)key_len,
                                 .args = size > 1 ? data + 1 : NULL,
                                 .args_len = (uint32_t)(size - 1)};
        check(rt_batch_builder_begin(&builder, 1700000000000ull) == 0);
        check(rt_batch_builder_add(&builder, &cmd) == 0);
        check(rt_batch_builder_add(&builder, &cmd) == 0);
        size_t len;
        const uint8_t *entry = rt_batch_builder_finish(&builder, &len);
        check(rt_engine_apply(&engine, 1, entry, len) == 0);
        check(rt_engine_reply_count(&engine) == 2);
        for (uint32_t i = 0; i < 2; i++) {
            const struct rt_reply *reply = rt_engine_reply(&engine, i);
            check(reply->code <= 0 && reply->msg != NULL);
            check(reply->code != 0 || reply->body_len > 0);
        }
    }
    rt_batch_builder_free(&builder);
    rt_engine_free(&engine);
    mem_store_free(mem);
    return 0;
}
