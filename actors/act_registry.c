#include "act_registry.h"

#include <assert.h>
#include <stddef.h>

#include "act_app.h"
#include "act_cluster.h"
#include "act_order.h"
#include "rt_error.h"

/* Every registered type, in id order. Adding an actor type means adding it here and giving it
 * the next reserved id in act_registry.h. */
static const struct rt_actor_type *const act_types[] = {
    &act_order_type,
    &act_app_type,
    &act_cluster_type,
};

int act_registry_init(struct rt_registry *reg)
{
    assert(reg != NULL);
    assert(sizeof(act_types) / sizeof(act_types[0]) < RT_ACTOR_TYPES_MAX);
    rt_registry_init(reg);
    for (size_t i = 0; i < sizeof(act_types) / sizeof(act_types[0]); i++) {
        int rv = rt_registry_add(reg, act_types[i]);
        if (rv != 0) {
            return rv;
        }
        assert(rt_registry_type(reg, act_types[i]->id) == act_types[i]);
    }
    return 0;
}
