#include "act_cluster.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "act_registry.h"
#include "rt_error.h"
#include "rt_mp.h"

struct cluster_node {
    uint64_t id;
    char addrs[3][ACT_CLUSTER_ADDR_BYTES_MAX + 1]; /* peer, api, http */
};

struct cluster_map {
    uint64_t shard_count;
    uint32_t count;
    struct cluster_node nodes[ACT_CLUSTER_NODES_MAX];
};

static const char *const addr_names[3] = {"peer_addr", "api_addr", "http_addr"};

static bool addr_valid(const char *s, uint32_t len)
{
    if (len == 0 || len > ACT_CLUSTER_ADDR_BYTES_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static int decode_node(struct rt_mp_reader *r, struct cluster_node *node)
{
    uint32_t fields;
    if (rt_mp_read_map(r, &fields) != 0 || fields != 4) {
        return RT_EINVAL;
    }
    unsigned seen = 0;
    for (uint32_t f = 0; f < fields; f++) {
        const char *key, *s;
        uint32_t key_len, len;
        if (rt_mp_read_str(r, &key, &key_len) != 0) {
            return RT_EINVAL;
        }
        if (rt_mp_key_is(key, key_len, "node_id")) {
            if (rt_mp_read_uint(r, &node->id) != 0 || node->id == 0 || node->id > UINT32_MAX) {
                return RT_EINVAL;
            }
            seen |= 1u;
            continue;
        }
        unsigned k = 0;
        while (k < 3 && !rt_mp_key_is(key, key_len, addr_names[k])) {
            k++;
        }
        if (k == 3 || rt_mp_read_str(r, &s, &len) != 0 || !addr_valid(s, len)) {
            return RT_EINVAL;
        }
        memcpy(node->addrs[k], s, len);
        node->addrs[k][len] = '\0';
        seen |= 2u << k;
    }
    return seen == 0xfu ? 0 : RT_EINVAL;
}

static int compare_nodes(const void *a, const void *b)
{
    const struct cluster_node *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Decode init args (or stored state, which has "v" and "replicas" too). */
static int decode_map(const uint8_t *data, size_t len, struct cluster_map *map)
{
    assert(map != NULL);
    memset(map, 0, sizeof(*map));
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, data, len);
    uint32_t fields;
    if (rt_mp_read_map(&r, &fields) != 0) {
        return RT_EINVAL;
    }
    bool have_nodes = false;
    for (uint32_t f = 0; f < fields; f++) {
        const char *key;
        uint32_t key_len;
        if (rt_mp_read_str(&r, &key, &key_len) != 0) {
            return RT_EINVAL;
        }
        if (rt_mp_key_is(key, key_len, "shard_count")) {
            if (rt_mp_read_uint(&r, &map->shard_count) != 0 || map->shard_count == 0 ||
                map->shard_count > RT_SHARDS_MAX) {
                return RT_EINVAL;
            }
        } else if (rt_mp_key_is(key, key_len, "nodes")) {
            if (rt_mp_read_array(&r, &map->count) != 0 || map->count == 0 ||
                map->count > ACT_CLUSTER_NODES_MAX) {
                return RT_EINVAL;
            }
            for (uint32_t i = 0; i < map->count; i++) {
                if (decode_node(&r, &map->nodes[i]) != 0) {
                    return RT_EINVAL;
                }
            }
            have_nodes = true;
        } else if (rt_mp_key_is(key, key_len, "v") || rt_mp_key_is(key, key_len, "replicas")) {
            if (rt_mp_skip(&r) != 0) { /* Derived: rebuilt when encoding. */
                return RT_EINVAL;
            }
        } else {
            return RT_EINVAL;
        }
    }
    if (!have_nodes || map->shard_count == 0 || rt_mp_remaining(&r) != 0) {
        return RT_EINVAL;
    }
    qsort(map->nodes, map->count, sizeof(map->nodes[0]), compare_nodes);
    for (uint32_t i = 1; i < map->count; i++) {
        if (map->nodes[i].id == map->nodes[i - 1].id) {
            return RT_EINVAL;
        }
    }
    return 0;
}

static int encode_map(const struct cluster_map *map, struct rt_buf *out)
{
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, out);
    rt_mp_write_map(&w, 4);
    rt_mp_write_cstr(&w, "v");
    rt_mp_write_uint(&w, 1);
    rt_mp_write_cstr(&w, "shard_count");
    rt_mp_write_uint(&w, map->shard_count);
    rt_mp_write_cstr(&w, "nodes");
    rt_mp_write_array(&w, map->count);
    for (uint32_t i = 0; i < map->count; i++) {
        rt_mp_write_map(&w, 4);
        rt_mp_write_cstr(&w, "node_id");
        rt_mp_write_uint(&w, map->nodes[i].id);
        for (unsigned k = 0; k < 3; k++) {
            rt_mp_write_cstr(&w, addr_names[k]);
            rt_mp_write_cstr(&w, map->nodes[i].addrs[k]);
        }
    }
    rt_mp_write_cstr(&w, "replicas");
    rt_mp_write_array(&w, map->count);
    for (uint32_t i = 0; i < map->count; i++) {
        rt_mp_write_uint(&w, map->nodes[i].id);
    }
    return rt_mp_writer_error(&w);
}

static int cluster_init(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    struct cluster_map map;
    if (decode_map(args, args_len, &map) != 0) {
        rt_ctx_fail(ctx, "init wants {shard_count, nodes: [{node_id, peer_addr, api_addr, "
                         "http_addr}]} with unique node ids");
        return RT_EINVAL;
    }
    struct rt_buf *encoded = rt_ctx_state_buf(ctx);
    int rv = encode_map(&map, encoded);
    size_t len;
    const uint8_t *state = rv == 0 ? rt_ctx_state(ctx, &len) : NULL;
    if (rv == 0 && state != NULL &&
        (len != encoded->len || memcmp(state, encoded->data, len) != 0)) {
        rt_ctx_fail(ctx, "the cluster map was initialised with other members");
        rv = RT_ECONFLICT;
    } else if (rv == 0 && state == NULL) {
        rv = rt_ctx_set_state(ctx, encoded->data, encoded->len);
    }
    if (rv == 0) {
        rv = rt_buf_append(rt_ctx_reply(ctx), encoded->data, encoded->len);
    }
    return rv;
}

static int cluster_get(struct rt_actor_ctx *ctx, const uint8_t *args, size_t args_len)
{
    (void)args;
    (void)args_len;
    size_t len;
    const uint8_t *state = rt_ctx_state(ctx, &len);
    if (state == NULL) {
        return RT_ENOTFOUND;
    }
    return rt_buf_append(rt_ctx_reply(ctx), state, len);
}

static const struct rt_actor_op cluster_ops[ACT_CLUSTER_OP_COUNT] = {
    [ACT_CLUSTER_INIT] = {"init", cluster_init, false},
    [ACT_CLUSTER_GET] = {"get", cluster_get, true},
};

const struct rt_actor_type act_cluster_type = {ACT_TYPE_CLUSTER, "cluster", cluster_ops,
                                               ACT_CLUSTER_OP_COUNT};
