/* test_orders: the order state's version-1 layout, for the tests that check it is still read.
 *
 * Production code writes version 2 only (act_order.h); stores written by older builds hold
 * version 1, the object's map with "v" first. This rebuilds it from the object encoding, so
 * the tests need not know the map's header bytes. Header-only: the unit tests and the fuzz
 * target both link the actors library, which the shared test_support library does not. */
#ifndef TEST_ORDERS_H
#define TEST_ORDERS_H

#include <stdint.h>

#include "act_order.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

/* Append @o as a state map with "v": @version first to @out (empty). 0 or an RT_ code. */
static inline int test_order_state_map(const struct act_order *o, uint64_t version,
                                       struct rt_buf *out)
{
    struct rt_buf object;
    rt_buf_init(&object, out->max);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &object);
    int rv = act_order_encode_object(o, &w);
    struct rt_mp_reader r;
    uint32_t fields = 0;
    if (rv == 0) {
        rt_mp_reader_init(&r, object.data, object.len);
        rv = rt_mp_read_map(&r, &fields);
    }
    if (rv == 0) {
        size_t rest = rt_mp_remaining(&r); /* The fields, after the map's header. */
        rt_mp_writer_init(&w, out);
        rt_mp_write_map(&w, fields + 1);
        rt_mp_write_cstr(&w, "v");
        rt_mp_write_uint(&w, version);
        rv = rt_mp_writer_error(&w);
        if (rv == 0) {
            rv = rt_buf_append(out, object.data + object.len - rest, rest);
        }
    }
    rt_buf_free(&object);
    return rv;
}

#endif /* TEST_ORDERS_H */
