/* libFuzzer target for the C client library's decoders of what a server sends it
 * (api/client/payraft_client_fuzz.h): a response frame's payload, a cluster.shards map (which
 * decides where the client connects), and the routing key it reads from a request body.
 *
 * Input: the first byte picks the decoder and how its input is made: the rest of the bytes
 * as they are, or (so that the fuzzer reaches the decoders' far ends without first having to
 * learn msgpack and the field names) a msgpack map built from them: a response whose fields
 * come from small tables and the input, a shard map whose entries name our servers, others or
 * nothing, a request body whose keys are the ones routing reads. Each decoder checks its own
 * postconditions (response fields within bounds, map leaders only among the client's
 * servers, key bytes inside the body). Nothing may crash, leak, or read outside the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "payraft_client.h"
#include "payraft_client_fuzz.h"
#include "rt_buf.h"
#include "rt_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Clients made once (making one per input would spend the run on OpenSSL): an app's and the
 * admin's (whose route key comes from the body's app_id), over two servers that map entries
 * may name. Never connected. */
static struct pr_client *fuzz_clients[2];

static struct pr_client *client(unsigned which)
{
    if (fuzz_clients[which] == NULL) {
        struct pr_client_options o;
        pr_client_options_init(&o);
        o.route = true;
        const char *app = which == 0 ? "shop_1" : "admin";
        const uint8_t secret[] = "fuzz-secret";
        if (pr_client_new("127.0.0.1:7101,[::1]:7102", app, secret, sizeof(secret) - 1, &o,
                          &fuzz_clients[which]) != 0) {
            abort();
        }
    }
    return fuzz_clients[which];
}

/* The input, consumed a byte or a slice at a time (zeros and empty slices once it runs out). */
struct input {
    const uint8_t *p;
    size_t left;
};

static uint8_t take_byte(struct input *in)
{
    if (in->left == 0) {
        return 0;
    }
    in->left--;
    return *in->p++;
}

/* A slice of up to @max bytes, its length drawn from the input. */
static const uint8_t *take_slice(struct input *in, size_t max, size_t *len)
{
    size_t n = take_byte(in) % (max + 1);
    n = n < in->left ? n : in->left;
    const uint8_t *s = in->p;
    in->p += n;
    in->left -= n;
    *len = n;
    return s;
}

/* A string: one from @table, or a slice of the input. */
static void write_pick(struct rt_mp_writer *w, struct input *in, const char *const *table,
                       size_t count)
{
    uint8_t b = take_byte(in);
    if (b % (count + 1) < count) {
        rt_mp_write_cstr(w, table[b % (count + 1)]);
    } else {
        size_t len;
        const uint8_t *s = take_slice(in, 300, &len);
        rt_mp_write_str(w, (const char *)s, (uint32_t)len);
    }
}

static void build_response(struct rt_mp_writer *w, struct input *in)
{
    static const char *const codes[] = {"OK", "UNAVAILABLE", "NOT_FOUND", "ok", "", "TIMEOUT"};
    uint8_t fields = take_byte(in);
    rt_mp_write_map(w, fields % 7);
    for (unsigned f = 0; f < fields % 7u; f++) {
        switch (take_byte(in) % 6) {
        case 0:
            rt_mp_write_cstr(w, "id");
            rt_mp_write_uint(w, take_byte(in));
            break;
        case 1:
            rt_mp_write_cstr(w, "ok");
            rt_mp_write_bool(w, take_byte(in) & 1);
            break;
        case 2:
            rt_mp_write_cstr(w, "code");
            write_pick(w, in, codes, sizeof(codes) / sizeof(codes[0]));
            break;
        case 3:
            rt_mp_write_cstr(w, "msg");
            write_pick(w, in, codes, 0);
            break;
        case 4: {
            rt_mp_write_cstr(w, "body");
            rt_mp_write_map(w, take_byte(in) % 2);
            break;
        }
        default:
            rt_mp_write_cstr(w, "later");
            rt_mp_write_nil(w);
            break;
        }
    }
}

static void build_map(struct rt_mp_writer *w, struct input *in)
{
    static const char *const addrs[] = {"127.0.0.1:7101", "[::1]:7102", "127.0.0.1:7103",
                                        "::1:7102", "127.0.0.1:7101 "};
    uint8_t shards = take_byte(in);
    rt_mp_write_map(w, 2);
    rt_mp_write_cstr(w, "shards");
    rt_mp_write_array(w, shards % 20);
    for (unsigned s = 0; s < shards % 20u; s++) {
        uint8_t b = take_byte(in);
        rt_mp_write_map(w, 3);
        rt_mp_write_cstr(w, "shard_id");
        rt_mp_write_uint(w, b & 0x80 ? take_byte(in) : s);
        rt_mp_write_cstr(w, "leader");
        rt_mp_write_uint(w, b % 4);
        rt_mp_write_cstr(w, "leader_api");
        if (b & 0x40) {
            rt_mp_write_nil(w);
        } else {
            write_pick(w, in, addrs, sizeof(addrs) / sizeof(addrs[0]));
        }
    }
    rt_mp_write_cstr(w, "shard_count");
    uint8_t count = take_byte(in);
    rt_mp_write_uint(w, count & 0x80 ? 300u : count % 20u);
}

static void build_body(struct rt_mp_writer *w, struct input *in)
{
    static const char *const keys[] = {"merchant_order_no", "app_id", "order_id", "amount"};
    static const char *const ids[] = {"P0e0000000000020000", "P", "Pzz0000000000020000"};
    uint8_t fields = take_byte(in);
    rt_mp_write_map(w, fields % 5);
    for (unsigned f = 0; f < fields % 5u; f++) {
        uint8_t k = take_byte(in) % 4;
        rt_mp_write_cstr(w, keys[k]);
        if (k == 3) {
            rt_mp_write_uint(w, take_byte(in));
        } else {
            write_pick(w, in, ids, k == 2 ? sizeof(ids) / sizeof(ids[0]) : 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t pick = data[0];
    struct input in = {data + 1, size - 1};
    /* The decoder's input: the bytes as they are, or a map built from them. Either way a
     * buffer of exactly its size, so that ASan sees any read past it. */
    struct rt_buf built;
    rt_buf_init(&built, 64u * 1024u);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &built);
    bool structured = pick & 0x80;
    unsigned decoder = pick % 3;
    if (structured) {
        decoder == 0   ? build_response(&w, &in)
        : decoder == 1 ? build_map(&w, &in)
                       : build_body(&w, &in);
        if (rt_mp_writer_error(&w) != 0) {
            rt_buf_free(&built);
            return 0;
        }
    }
    const uint8_t *src = structured ? built.data : data + 1;
    size_t len = structured ? built.len : size - 1;
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        rt_buf_free(&built);
        return 0;
    }
    if (len > 0) {
        memcpy(copy, src, len);
    }
    rt_buf_free(&built);
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, copy, len);
    /* The client validates a response whole before it reads a map or a body from it, and
     * pr_client_send validates a body. */
    bool valid = rt_mp_validate(copy, len) == 0;
    unsigned which = pick / 3 % 2;
    if (decoder == 0) {
        FUZZ_CHECK(pr_fuzz_response(copy, len) == 0);
    } else if (decoder == 1 && valid) {
        FUZZ_CHECK(pr_fuzz_shard_map(client(which), copy, len) == 0);
    } else if (decoder == 2 && valid && len <= PR_BODY_BYTES_MAX && rt_mp_peek(&r) == RT_MP_MAP) {
        const char *op = pick / 6 % 3 == 0   ? "order.create"
                         : pick / 6 % 3 == 1 ? "order.get"
                                             : "app.get";
        FUZZ_CHECK(pr_fuzz_route_key(client(which), op, copy, len) == 0);
    }
    free(copy);
    return 0;
}
