/* The actor type registry. The handler context functions live in rt_engine.c, next to the
 * engine state they touch. */
#include "rt_actor.h"

#include <assert.h>
#include <string.h>

#include "rt_error.h"

void rt_registry_init(struct rt_registry *reg)
{
    assert(reg != NULL);
    memset(reg, 0, sizeof(*reg));
}

int rt_registry_add(struct rt_registry *reg, const struct rt_actor_type *type)
{
    assert(reg != NULL);
    assert(type != NULL);
    if (type->id == 0 || type->id >= RT_ACTOR_TYPES_MAX || type->name == NULL ||
        type->ops == NULL || type->op_count == 0 || type->op_count > RT_ACTOR_OPS_MAX) {
        return RT_EINVAL;
    }
    if (reg->types[type->id] != NULL) {
        return RT_EINVAL; /* Ids are persistent: two types must never share one. */
    }
    for (uint8_t i = 0; i < type->op_count; i++) {
        if (type->ops[i].name == NULL || type->ops[i].fn == NULL) {
            return RT_EINVAL;
        }
        for (uint8_t j = 0; j < i; j++) {
            if (strcmp(type->ops[i].name, type->ops[j].name) == 0) {
                return RT_EINVAL;
            }
        }
    }
    reg->types[type->id] = type;
    return 0;
}

const struct rt_actor_type *rt_registry_type(const struct rt_registry *reg, uint8_t id)
{
    assert(reg != NULL);
    return id < RT_ACTOR_TYPES_MAX ? reg->types[id] : NULL;
}

int rt_actor_op_index(const struct rt_actor_type *type, const char *name)
{
    assert(type != NULL);
    assert(name != NULL);
    for (uint8_t i = 0; i < type->op_count; i++) {
        if (strcmp(type->ops[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}
