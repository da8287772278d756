/* act_registry: the one place that lists every business actor type.
 *
 * Actor type ids are a persistent format: the id is the third byte of every stored state key
 * (rt_key_state), so an id, once used, keeps its meaning forever. New types take the next
 * reserved number; a retired type's id is never reused.
 */
#ifndef ACT_REGISTRY_H
#define ACT_REGISTRY_H

#include "rt_actor.h"

enum act_type_id {
    ACT_TYPE_ORDER = 1, /* act_order: a pay order, keyed app_id "/" merchant_order_no. */
    /* Reserved for later issues (not registered yet; do not reuse for anything else): */
    ACT_TYPE_PAYMENT = 2,  /* Channel payment session of an order. */
    ACT_TYPE_REFUND = 3,   /* A refund, keyed by (app, refund_no). */
    ACT_TYPE_TRANSFER = 4, /* A corporate bank transfer, keyed by (app, transfer_no). */
    ACT_TYPE_INVOICE = 5,  /* A fapiao, keyed by (app, invoice_no). */
    ACT_TYPE_APP = 6,      /* act_app: an app and its keys (meta group). */
    ACT_TYPE_LEDGER = 7,   /* Double-entry ledger accounts. */
    ACT_TYPE_RECON = 8,    /* A reconciliation report, keyed by (date, source). */
    ACT_TYPE_CLUSTER = 9,  /* act_cluster: the cluster map, in the meta group. */
};

/* Initialise @reg (rt_registry_init) and add every business actor type to it. Call once at
 * start-up, before any engine uses @reg. Returns 0, or RT_EINVAL if a type table is bad (a
 * bug: the node must not start). */
int act_registry_init(struct rt_registry *reg);

#endif /* ACT_REGISTRY_H */
