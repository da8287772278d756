/* libFuzzer target: the order's stored-state and object decoders.
 *
 * Stored state comes back from RocksDB, and from a leader's snapshot stream on a follower, so
 * its decoder must refuse anything it did not write without crashing. Whatever it accepts must
 * survive a round trip: encoded again (as version 2, whatever version it was read from) it
 * decodes to the same order, and the object form of it decodes to the same order too.
 *
 * Random bytes almost never make a valid order, so the first input byte picks what the rest
 * is: 0, the bytes to decode; 1, 2 and 3, edits ((position, byte) pairs) to a valid
 * encoding of a paid order as state version 2, state version 1 and object. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "act_order.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_limits.h"
#include "rt_mp.h"
#include "test_orders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

/* Encode @o as state (@state) or object and decode it back into @out. */
static void round_trip(const struct act_order *o, int state, struct act_order *out)
{
    struct rt_buf buf;
    rt_buf_init(&buf, RT_ACTOR_STATE_BYTES_MAX);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    check((state ? act_order_encode_state(o, &w) : act_order_encode_object(o, &w)) == 0);
    check((state ? act_order_decode(buf.data, buf.len, out)
                 : act_order_decode_object(buf.data, buf.len, out)) == 0);
    rt_buf_free(&buf);
}

/* The valid encodings that modes 1..3 edit, made once. */
static struct rt_buf bases[3];

static void make_bases(void)
{
    struct act_order o;
    memset(&o, 0, sizeof(o));
    check(rt_id_make(o.order_id, ACT_ORDER_ID_KIND, 3, 77, 2) > 0);
    strcpy(o.app_id, "shop");
    strcpy(o.merchant_order_no, "m-1");
    o.amount = 1000;
    strcpy(o.currency, "CNY");
    strcpy(o.subject, "tea");
    o.status = ACT_ORDER_PAID;
    o.has_paid_at = true;
    o.paid_at_ms = 1700000001000ull;
    o.created_at_ms = 1700000000000ull;
    o.expire_at_ms = o.created_at_ms + 1800000u;
    strcpy(o.pay_url, "https://pay.example/qr/1");
    strcpy(o.channel_trade_no, "4200001");
    strcpy(o.notify_url, "https://shop.example/notify");
    struct rt_mp_writer w;
    for (int i = 0; i < 3; i++) {
        rt_buf_init(&bases[i], RT_ACTOR_STATE_BYTES_MAX);
    }
    rt_mp_writer_init(&w, &bases[0]);
    check(act_order_encode_state(&o, &w) == 0);
    check(test_order_state_map(&o, ACT_ORDER_STATE_VERSION_MAP, &bases[1]) == 0);
    rt_mp_writer_init(&w, &bases[2]);
    check(act_order_encode_object(&o, &w) == 0);
    struct act_order d;
    check(act_order_decode(bases[0].data, bases[0].len, &d) == 0);
    check(act_order_decode(bases[1].data, bases[1].len, &d) == 0);
    check(act_order_decode_object(bases[2].data, bases[2].len, &d) == 0);
}

static void decode_checked(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        make_bases();
        initialised = 1;
    }
    if (size < 1 || size > RT_ACTOR_STATE_BYTES_MAX) {
        return 0;
    }
    if (data[0] == 0 || data[0] > 3) {
        decode_checked(data + 1, size - 1);
        return 0;
    }
    const struct rt_buf *base = &bases[data[0] - 1];
    uint8_t edited[1024];
    check(base->len <= sizeof(edited));
    memcpy(edited, base->data, base->len);
    for (size_t i = 1; i + 1 < size; i += 2) {
        edited[data[i] % base->len] = data[i + 1];
    }
    decode_checked(edited, base->len);
    return 0;
}

static void decode_checked(const uint8_t *data, size_t size)
{
    struct act_order o, again;
    int rv = act_order_decode(data, size, &o);
    check(rv == 0 || rv == RT_ECORRUPT || rv == RT_EVERSION);
    if (rv == 0) {
        round_trip(&o, 1, &again);
        check(memcmp(&o, &again, sizeof(o)) == 0);
        round_trip(&o, 0, &again);
        check(memcmp(&o, &again, sizeof(o)) == 0);
    }
    rv = act_order_decode_object(data, size, &o);
    check(rv == 0 || rv == RT_ECORRUPT || rv == RT_EVERSION);
    if (rv == 0) {
        round_trip(&o, 1, &again);
        check(memcmp(&o, &again, sizeof(o)) == 0);
    }
}
