#include "rt_key.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "rt_buf.h"

uint64_t rt_key_hash(const uint8_t *key, size_t key_len)
{
    assert(key != NULL || key_len == 0);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis. */
    for (size_t i = 0; i < key_len; i++) {
        h ^= key[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint16_t rt_shard_of(const uint8_t *key, size_t key_len, uint16_t shard_count)
{
    assert(shard_count >= 1 && shard_count <= RT_SHARDS_MAX);
    return rt_shard_of_hash(rt_key_hash(key, key_len), shard_count);
}

void rt_key_shard_prefix(uint8_t out[RT_KEY_SHARD_BYTES], uint16_t shard)
{
    rt_put_be16(out, shard);
}

size_t rt_key_state(uint8_t *out, uint16_t shard, uint8_t actor_type, const uint8_t *key,
                    size_t key_len)
{
    assert(key_len >= 1 && key_len <= RT_ACTOR_KEY_BYTES_MAX);
    assert(actor_type > 0 && actor_type < RT_ACTOR_TYPES_MAX);
    rt_put_be16(out, shard);
    out[2] = actor_type;
    memcpy(out + 3, key, key_len);
    return 3 + key_len;
}

size_t rt_key_index(uint8_t *out, uint16_t shard, const uint8_t *index_key, size_t index_key_len)
{
    assert(index_key_len >= 1 && index_key_len <= RT_INDEX_KEY_BYTES_MAX);
    rt_put_be16(out, shard);
    memcpy(out + 2, index_key, index_key_len);
    return 2 + index_key_len;
}

size_t rt_key_outbox(uint8_t *out, uint16_t shard, uint64_t seq)
{
    rt_put_be16(out, shard);
    rt_put_be64(out + 2, seq);
    return 10;
}

size_t rt_key_timer(uint8_t *out, uint16_t shard, uint64_t due_ms, uint64_t seq)
{
    rt_put_be16(out, shard);
    rt_put_be64(out + 2, due_ms);
    rt_put_be64(out + 10, seq);
    return 18;
}

size_t rt_key_meta(uint8_t *out, uint16_t shard, const char *name)
{
    size_t n = strlen(name);
    assert(n >= 1 && n <= RT_INDEX_KEY_BYTES_MAX);
    rt_put_be16(out, shard);
    memcpy(out + 2, name, n);
    return 2 + n;
}

size_t rt_key_meta_inbox(uint8_t *out, uint16_t shard, uint16_t source_shard)
{
    size_t n = rt_key_meta(out, shard, "inbox");
    rt_put_be16(out + n, source_shard);
    return n + 2;
}

size_t rt_id_make(char *out, char kind, uint16_t shard, uint64_t raft_index, uint32_t position)
{
    assert((kind >= 'A' && kind <= 'Z'));
    assert(shard < RT_SHARDS_MAX);
    assert(raft_index < (1ull << 48));
    assert(position <= 0xffffu);
    /* By hand rather than snprintf: every replica formats one per created object, and printf
     * was a visible share of apply. Layout: kind, 2 hex shard, 12 hex index, 4 hex position. */
    static const char digits[] = "0123456789abcdef";
    out[0] = kind;
    for (int i = 0; i < 2; i++) {
        out[1 + i] = digits[(shard >> (4 * (1 - i))) & 0xf];
    }
    for (int i = 0; i < 12; i++) {
        out[3 + i] = digits[(raft_index >> (4 * (11 - i))) & 0xf];
    }
    for (int i = 0; i < 4; i++) {
        out[15 + i] = digits[(position >> (4 * (3 - i))) & 0xf];
    }
    out[RT_ID_LEN] = '\0';
    return RT_ID_LEN;
}

/* A lowercase hex digit's value plus one; 0 for any other byte. A table, because every replica
 * parses each id it indexes, and a test per byte cost several times the table's load. */
static const uint8_t id_hex[256] = {
    ['0'] = 1, ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* The value of the @n hex digits at @p; false if one is not a lowercase hex digit. */
static bool id_hex_field(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t d = id_hex[(unsigned char)p[i]];
        if (d == 0) {
            return false;
        }
        v = v << 4 | (uint64_t)(d - 1);
    }
    *out = v;
    return true;
}

bool rt_id_parse(const char *id, size_t id_len, struct rt_id *out)
{
    assert(out != NULL);
    if (id == NULL || id_len != RT_ID_LEN || !(id[0] >= 'A' && id[0] <= 'Z')) {
        return false;
    }
    /* The layout rt_id_make writes: kind, 2 hex shard, 12 hex index, 4 hex position. */
    uint64_t shard, index, position;
    if (!id_hex_field(id + 1, 2, &shard) || !id_hex_field(id + 3, 12, &index) ||
        !id_hex_field(id + 15, 4, &position)) {
        return false;
    }
    *out = (struct rt_id){.kind = id[0],
                          .shard = (uint16_t)shard,
                          .raft_index = index,
                          .position = (uint32_t)position};
    return true;
}

bool rt_id_shard(const char *id, size_t id_len, char kind, uint16_t *shard)
{
    assert(shard != NULL);
    struct rt_id parsed;
    if (!rt_id_parse(id, id_len, &parsed) || parsed.kind != kind) {
        return false;
    }
    *shard = parsed.shard;
    return true;
}
