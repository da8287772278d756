/* Simulation: one shard replicated by 3 or 5 canonical/raft servers (raft/fixture.h: in-memory
 * I/O, virtual clock) running the real apply engine, the real order actor and real RocksDB
 * stores, under faults driven by a seed: message loss (saturated links), disconnects, server
 * kills and revives, while clients propose order batches. Low snapshot thresholds make
 * snapshots and snapshot installs part of every run.
 *
 * Acknowledgements follow the node's rule (cl_durable.h, docs/raft.md): an entry applied on
 * the leader is acknowledged once a majority of voters report it durable in the leader's term,
 * each server's raft_io being wrapped by cl_durable exactly as in a node.
 *
 * After healing every fault the test checks:
 *   - every replica applied the same entries: the shard's digest (every column family) is
 *     byte-identical on all servers;
 *   - every order whose create was acknowledged (apply callback with code OK, then confirmed
 *     durable on a majority) is readable on every replica.
 *
 * PAYRAFT_SIM_SEEDS=N runs seeds 1..N (default 100); PAYRAFT_SIM_SEED=S runs only seed S.
 * A failure prints its seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <raft.h>
#include <raft/fixture.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "act_order.h"
#include "act_registry.h"
#include "cl_durable.h"
#include "cl_fsm.h"
#include "rt_clock.h"
#include "rt_error.h"
#include "rt_log.h"
#include "rt_mp.h"
#include "store_rocks.h"
#include "test_support.h"

#define SIM_SERVERS_MAX 5
#define SIM_STEPS       3000
#define SIM_ORDERS_MAX  4096
#define SIM_PENDING_MAX 1024
#define SIM_BATCH_MAX   4
#define SIM_T0_MS       1700000000000ull
#define SIM_HEAL_MS     60000u
/* How long a follower may look caught up to the leader (match index at the commit index)
 * while applying nothing before the watchdog moves leadership away; see docs/raft.md. */
#define SIM_STUCK_MS 5000u

static unsigned long long sim_seed; /* Printed by SIM_CHECK on failure. */

#define SIM_CHECK(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "sim: seed %llu failed: %s (%s:%d)\n", sim_seed, #cond, __FILE__,      \
                    __LINE__);                                                                     \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

struct sim;

struct sim_server {
    char *dir;
    struct store_rocks *db;
    struct rt_cache cache;
    struct cl_fsm fsm;
    struct cl_durable durable; /* Wraps the fixture's raft_io, as cl_node wraps raft_uv. */
};

/* An entry applied on the leader whose acknowledgement waits for a majority of replicas to
 * hold it on disk in the leader's term (cl_durable.h). */
struct sim_pending {
    unsigned leader; /* Server that applied it as leader... */
    raft_term term;  /* ...in this term. */
    raft_index index;
    unsigned first_order;
    unsigned count;
    bool ok[SIM_BATCH_MAX]; /* Which creates succeeded in the apply. */
};

struct sim {
    struct raft_fixture fixture;
    unsigned n;
    struct sim_server servers[SIM_SERVERS_MAX];
    struct rt_registry registry;
    struct rt_prng prng;
    unsigned next_order;        /* Orders proposed so far. */
    bool acked[SIM_ORDERS_MAX]; /* Create acknowledged with OK. */
    unsigned acked_count;
    unsigned in_flight;                          /* Proposals whose callback has not fired. */
    struct sim_pending pending[SIM_PENDING_MAX]; /* Applied on the leader, not yet confirmed. */
    unsigned pending_count;
    unsigned long long unconfirmed;         /* Applied on a leader but never confirmed. */
    raft_time stuck_since[SIM_SERVERS_MAX]; /* Watchdog: when a follower was first seen stuck. */
    struct raft_transfer transfer;          /* Watchdog: the leadership transfer in flight. */
    bool transferring;
    unsigned watchdog_transfers;
};

/* A proposal in flight: which orders it creates. */
struct sim_proposal {
    struct raft_apply req;
    struct sim *sim;
    unsigned first_order;
    unsigned count;
};

static size_t order_mono(char *out, size_t cap, unsigned n)
{
    return (size_t)snprintf(out, cap, "sim-%u", n);
}

static size_t order_key(uint8_t *out, unsigned n)
{
    char mono[32];
    size_t len = order_mono(mono, sizeof(mono), n);
    return act_order_key(out, "simapp", 6, mono, len);
}

static void encode_create(struct rt_buf *buf, unsigned n)
{
    char mono[32];
    order_mono(mono, sizeof(mono), n);
    rt_buf_reset(buf);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, buf);
    rt_mp_write_map(&w, 5);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "simapp");
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, 100 + n);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "sim");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, "wechat");
    assert_int_equal(rt_mp_writer_error(&w), 0);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct sim_proposal *p = req->data;
    struct sim *sim = p->sim;
    sim->in_flight--;
    if (status == 0 && result != NULL && sim->pending_count < SIM_PENDING_MAX) {
        struct cl_fsm *fsm = result;
        SIM_CHECK(rt_engine_reply_count(&fsm->engine) == p->count);
        struct sim_pending *pending = &sim->pending[sim->pending_count++];
        pending->leader = (unsigned)(fsm->raft->id - 1);
        pending->term = fsm->raft->current_term;
        pending->index = rt_engine_applied_index(&fsm->engine);
        pending->first_order = p->first_order;
        pending->count = p->count;
        for (unsigned i = 0; i < p->count; i++) {
            pending->ok[i] = rt_engine_reply(&fsm->engine, i)->code == 0;
        }
    }
    free(p);
}

/* Acknowledge the pending entries that a majority of replicas hold on disk in the leader's
 * term; drop those whose leader lost its term (the client sees an unknown outcome and retries
 * with the same merchant_order_no). */
static void sim_confirm(struct sim *sim)
{
    struct raft_fixture *f = &sim->fixture;
    unsigned kept = 0;
    for (unsigned k = 0; k < sim->pending_count; k++) {
        struct sim_pending *p = &sim->pending[k];
        struct raft *lr = raft_fixture_get(f, p->leader);
        if (raft_state(lr) != RAFT_LEADER || lr->current_term != p->term) {
            sim->unconfirmed++;
            continue;
        }
        unsigned votes = 0;
        for (unsigned r = 0; r < sim->n; r++) {
            raft_index durable;
            raft_term term;
            cl_durable_get(&sim->servers[r].durable, &durable, &term);
            votes += cl_durable_confirms(durable, term, p->index, p->term);
        }
        if (votes <= sim->n / 2) {
            sim->pending[kept++] = *p;
            continue;
        }
        for (unsigned i = 0; i < p->count; i++) {
            if (p->ok[i]) {
                sim->acked[p->first_order + i] = true;
                sim->acked_count++;
            }
        }
    }
    sim->pending_count = kept;
}

/* Propose a batch of new orders on the leader, if there is one. */
static void sim_propose(struct sim *sim)
{
    unsigned leader = raft_fixture_leader_index(&sim->fixture);
    if (leader >= sim->n || sim->next_order + SIM_BATCH_MAX > SIM_ORDERS_MAX) {
        return;
    }
    struct raft *r = raft_fixture_get(&sim->fixture, leader);
    struct rt_batch_builder b;
    rt_batch_builder_init(&b, RT_BATCH_BYTES_MAX);
    struct rt_buf args;
    rt_buf_init(&args, RT_COMMAND_ARGS_BYTES_MAX);
    unsigned count = 1 + (unsigned)rt_prng_below(&sim->prng, SIM_BATCH_MAX);
    assert_int_equal(rt_batch_builder_begin(&b, SIM_T0_MS + raft_fixture_time(&sim->fixture)), 0);
    for (unsigned i = 0; i < count; i++) {
        uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
        size_t key_len = order_key(key, sim->next_order + i);
        encode_create(&args, sim->next_order + i);
        struct rt_command c = {.origin = RT_ORIGIN_CLIENT,
                               .actor_type = ACT_TYPE_ORDER,
                               .op = ACT_ORDER_CREATE,
                               .key = key,
                               .key_len = (uint32_t)key_len,
                               .args = args.data,
                               .args_len = (uint32_t)args.len};
        assert_int_equal(rt_batch_builder_add(&b, &c), 0);
    }
    size_t len;
    const uint8_t *data = rt_batch_builder_finish(&b, &len);
    struct raft_buffer buf = {.base = raft_malloc(len), .len = len};
    assert_non_null(buf.base);
    memcpy(buf.base, data, len);
    struct sim_proposal *p = calloc(1, sizeof(*p));
    p->sim = sim;
    p->first_order = sim->next_order;
    p->count = count;
    p->req.data = p;
    if (raft_apply(r, &p->req, &buf, 1, apply_cb) == 0) {
        sim->next_order += count;
        sim->in_flight++;
    } else {
        raft_free(buf.base); /* Not the leader any more: nothing was taken. */
        free(p);
    }
    rt_buf_free(&args);
    rt_batch_builder_free(&b);
}

static void sim_open(struct sim *sim, unsigned n)
{
    memset(sim, 0, sizeof(*sim));
    sim->n = n;
    rt_prng_seed(&sim->prng, sim_seed);
    assert_int_equal(act_registry_init(&sim->registry), 0);
    assert_int_equal(raft_fixture_initialize(&sim->fixture), 0);
    for (unsigned i = 0; i < n; i++) {
        struct sim_server *s = &sim->servers[i];
        s->dir = test_tmpdir("sim");
        struct store_rocks_options o;
        store_rocks_options_default(&o);
        o.create_if_missing = 1;
        o.block_cache_bytes = 1u << 20;
        o.write_buffer_bytes = 1u << 20;
        assert_int_equal(store_rocks_open(s->dir, &o, &s->db), 0);
        assert_int_equal(rt_cache_init(&s->cache, 256u << 10), 0);
        struct rt_engine_config config = {0, 1, &sim->registry, store_rocks_store(s->db),
                                          &s->cache};
        assert_int_equal(cl_fsm_init(&s->fsm, s->db, &config), 0);
        cl_fsm_snapshot_sync_inline(&s->fsm); /* The fixture's io has no workers. */
        assert_int_equal(raft_fixture_grow(&sim->fixture, &s->fsm.raft_fsm), 0);
        struct raft *r = raft_fixture_get(&sim->fixture, i);
        cl_fsm_bind(&s->fsm, r);
        /* From here on raft talks to the fixture's io through the durable-log tracker. */
        cl_durable_init(&s->durable, r->io);
        cl_durable_set_fill(&s->durable, cl_fsm_snapshot_fill, &s->fsm);
        s->durable.io.data = r;
        r->io = &s->durable.io;
        /* Low thresholds: every run takes snapshots and installs some. */
        raft_set_snapshot_threshold(r, 16 + (unsigned)rt_prng_below(&sim->prng, 48));
        raft_set_snapshot_trailing(r, 8 + (unsigned)rt_prng_below(&sim->prng, 16));
        raft_set_pre_vote(r, true);
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&sim->fixture, n, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&sim->fixture, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&sim->fixture), 0);
}

static void sim_close(struct sim *sim)
{
    raft_fixture_close(&sim->fixture);
    for (unsigned i = 0; i < sim->n; i++) {
        struct sim_server *s = &sim->servers[i];
        cl_fsm_close(&s->fsm);
        rt_cache_free(&s->cache);
        store_rocks_close(s->db);
        test_rmdir(s->dir);
    }
}

static unsigned alive_count(struct sim *sim)
{
    unsigned alive = 0;
    for (unsigned i = 0; i < sim->n; i++) {
        alive += raft_fixture_alive(&sim->fixture, i);
    }
    return alive;
}

/* One random fault or repair. Kills leave a majority alive most of the time but not always:
 * a stalled cluster must recover once healed. */
static void sim_disturb(struct sim *sim)
{
    struct raft_fixture *f = &sim->fixture;
    unsigned i = (unsigned)rt_prng_below(&sim->prng, sim->n);
    unsigned j = (unsigned)rt_prng_below(&sim->prng, sim->n);
    switch (rt_prng_below(&sim->prng, 8)) {
    case 0:
        if (raft_fixture_alive(f, i) && alive_count(sim) > sim->n / 2) {
            raft_fixture_kill(f, i);
        }
        break;
    case 1:
        if (!raft_fixture_alive(f, i)) {
            raft_fixture_revive(f, i);
        }
        break;
    case 2:
        if (i != j) {
            raft_fixture_disconnect(f, i, j);
        }
        break;
    case 3:
        if (i != j) {
            raft_fixture_reconnect(f, i, j);
        }
        break;
    case 4:
        if (i != j) {
            raft_fixture_saturate(f, i, j); /* Messages i -> j are lost. */
        }
        break;
    case 5:
        if (i != j) {
            raft_fixture_desaturate(f, i, j);
        }
        break;
    default: {
        /* A leader kill: the worst moment for acknowledged writes. */
        unsigned leader = raft_fixture_leader_index(f);
        if (leader < sim->n && alive_count(sim) > sim->n / 2 + 1) {
            raft_fixture_kill(f, leader);
        }
    }
    }
}

static void transfer_cb(struct raft_transfer *req)
{
    struct sim *sim = req->data;
    sim->transferring = false;
}

/* The stuck-follower watchdog (the workaround for a canonical/raft 0.15 bug, docs/raft.md):
 * a follower that reported entries up to the commit index (match_index) but has not applied
 * them for SIM_STUCK_MS holds stale entries the leader never repairs. A new leader probes from
 * scratch and truncates them, so the leader hands leadership over. */
static void sim_watchdog(struct sim *sim)
{
    struct raft_fixture *f = &sim->fixture;
    unsigned leader = raft_fixture_leader_index(f);
    raft_time now = raft_fixture_time(f);
    if (leader >= sim->n || sim->transferring) {
        return;
    }
    struct raft *lr = raft_fixture_get(f, leader);
    for (unsigned k = 0; k < lr->configuration.n; k++) {
        unsigned i = (unsigned)(lr->configuration.servers[k].id - 1);
        if (i == leader || i >= sim->n) {
            continue;
        }
        struct raft *fr = raft_fixture_get(f, i);
        bool stuck = raft_fixture_alive(f, i) &&
                     lr->leader_state.progress[k].match_index >= lr->commit_index &&
                     raft_last_applied(fr) < lr->commit_index;
        if (!stuck) {
            sim->stuck_since[i] = 0;
            continue;
        }
        if (sim->stuck_since[i] == 0) {
            sim->stuck_since[i] = now;
        } else if (now - sim->stuck_since[i] > SIM_STUCK_MS) {
            sim->transfer.data = sim;
            /* Hand over to a healthy voter: not the stuck one, whose stale log would lose. */
            raft_id target = 0;
            for (unsigned m = 0; m < lr->configuration.n; m++) {
                raft_id id = lr->configuration.servers[m].id;
                struct raft *candidate = raft_fixture_get(f, (unsigned)(id - 1));
                if (id - 1 != leader && raft_fixture_alive(f, (unsigned)(id - 1)) &&
                    raft_last_applied(candidate) >= lr->commit_index &&
                    lr->leader_state.progress[m].match_index == raft_last_index(lr)) {
                    target = id;
                }
            }
            if (target == 0) {
                target = lr->configuration.servers[k].id; /* Its election still deposes us. */
            }
            int trv = raft_transfer(lr, &sim->transfer, target, transfer_cb);
            if (trv == 0) {
                sim->transferring = true;
                sim->watchdog_transfers++;
            }
            memset(sim->stuck_since, 0, sizeof(sim->stuck_since));
            return;
        }
    }
}

static void sim_heal(struct sim *sim)
{
    struct raft_fixture *f = &sim->fixture;
    for (unsigned i = 0; i < sim->n; i++) {
        if (!raft_fixture_alive(f, i)) {
            raft_fixture_revive(f, i);
        }
        for (unsigned j = 0; j < sim->n; j++) {
            if (i != j) {
                raft_fixture_reconnect(f, i, j);
                raft_fixture_desaturate(f, i, j);
            }
        }
    }
}

static void sim_check_converged(struct sim *sim)
{
    struct raft_fixture *f = &sim->fixture;
    SIM_CHECK(raft_fixture_step_until_has_leader(f, SIM_HEAL_MS));
    /* One more entry through the healed cluster; when every server applied it, every server
     * has applied everything before it. */
    unsigned before = sim->next_order;
    for (int tries = 0; tries < 20 && sim->next_order == before; tries++) {
        sim_propose(sim);
        if (sim->next_order == before) {
            raft_fixture_step_until_has_leader(f, SIM_HEAL_MS);
        }
    }
    SIM_CHECK(sim->next_order > before);
    unsigned leader = raft_fixture_leader_index(f);
    SIM_CHECK(leader < sim->n);
    raft_index last = raft_last_index(raft_fixture_get(f, leader));
    /* Step with the watchdog on until every server applied the last entry. */
    raft_time deadline = raft_fixture_time(f) + SIM_HEAL_MS;
    bool converged = false;
    while (!converged && raft_fixture_time(f) < deadline) {
        raft_fixture_step(f);
        sim_watchdog(sim);
        sim_confirm(sim);
        converged = true;
        for (unsigned i = 0; i < sim->n; i++) {
            converged = converged && raft_last_applied(raft_fixture_get(f, i)) >= last;
        }
    }
    if (!converged) {
        for (unsigned i = 0; i < sim->n; i++) {
            struct raft *r = raft_fixture_get(f, i);
            fprintf(stderr,
                    "server %u: state %d term %llu last %llu applied %llu commit %llu stored %llu "
                    "alive %d\n",
                    i, raft_state(r), (unsigned long long)r->current_term,
                    (unsigned long long)raft_last_index(r),
                    (unsigned long long)raft_last_applied(r), (unsigned long long)r->commit_index,
                    (unsigned long long)r->last_stored, raft_fixture_alive(f, i));
        }
        struct raft *lr = raft_fixture_get(f, raft_fixture_leader_index(f));
        for (unsigned k = 0; k < lr->configuration.n; k++) {
            fprintf(stderr, "progress id %llu: state %u next %llu match %llu role %d\n",
                    (unsigned long long)lr->configuration.servers[k].id,
                    lr->leader_state.progress[k].state,
                    (unsigned long long)lr->leader_state.progress[k].next_index,
                    (unsigned long long)lr->leader_state.progress[k].match_index,
                    lr->configuration.servers[k].role);
        }
    }
    SIM_CHECK(converged);
    raft_fixture_step_until_elapsed(f, 1000); /* Let the last callbacks fire. */

    uint8_t first[32], other[32];
    test_store_digest(store_rocks_store(sim->servers[0].db), 0, first);
    for (unsigned i = 1; i < sim->n; i++) {
        test_store_digest(store_rocks_store(sim->servers[i].db), 0, other);
        SIM_CHECK(memcmp(first, other, 32) == 0);
    }
    /* Every acknowledged order is there, on every replica. */
    uint8_t args[32];
    struct rt_buf buf = {.data = args, .len = 0, .cap = sizeof(args), .max = sizeof(args)};
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &buf);
    rt_mp_write_map(&w, 1);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "simapp");
    SIM_CHECK(rt_mp_writer_error(&w) == 0);
    for (unsigned i = 0; i < sim->n; i++) {
        for (unsigned o = 0; o < sim->next_order; o++) {
            if (!sim->acked[o]) {
                continue;
            }
            uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
            size_t key_len = order_key(key, o);
            struct rt_command c = {.origin = RT_ORIGIN_CLIENT,
                                   .actor_type = ACT_TYPE_ORDER,
                                   .op = ACT_ORDER_GET,
                                   .key = key,
                                   .key_len = (uint32_t)key_len,
                                   .args = args,
                                   .args_len = (uint32_t)buf.len};
            struct rt_reply reply;
            SIM_CHECK(rt_engine_query(&sim->servers[i].fsm.engine, &c, SIM_T0_MS, &reply) == 0);
        }
    }
}

/* Totals over every seed run. */
static struct {
    unsigned long long acked;
    unsigned long long watchdog;
    unsigned long long taken;     /* Snapshots (markers) taken. */
    unsigned long long sent;      /* Full streams made for followers. */
    unsigned long long installed; /* Full streams restored. */
    unsigned long long kept;      /* Restores skipped: the store already held the index. */
} totals;

static void run_seed(unsigned long long seed)
{
    sim_seed = seed;
    struct sim *sim = calloc(1, sizeof(*sim));
    unsigned n = seed % 2 == 0 ? 3 : 5;
    sim_open(sim, n);
    for (unsigned step = 0; step < SIM_STEPS; step++) {
        uint64_t roll = rt_prng_below(&sim->prng, 100);
        if (roll < 25) {
            sim_propose(sim);
        } else if (roll < 28) {
            sim_disturb(sim);
        }
        raft_fixture_step(&sim->fixture);
        sim_watchdog(sim);
        sim_confirm(sim);
    }
    sim_heal(sim);
    sim_check_converged(sim);
    totals.acked += sim->acked_count;
    totals.watchdog += sim->watchdog_transfers;
    for (unsigned i = 0; i < n; i++) {
        const struct cl_fsm_stats *st = &sim->servers[i].fsm.stats;
        totals.taken += st->snapshots_taken;
        totals.sent += __atomic_load_n(&st->snapshots_sent, __ATOMIC_RELAXED);
        totals.installed += st->snapshots_restored;
        totals.kept += st->snapshots_kept;
    }
    sim_close(sim);
    free(sim);
}

/* A crash (inside libraft or ours) must still name its seed. */
static void sim_crash_handler(int sig)
{
    char line[96];
    int n = snprintf(line, sizeof(line), "sim: seed %llu crashed with signal %d\n", sim_seed, sig);
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nothing more to do while crashing. */
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void sim_seeds(void **state)
{
    (void)state;
    signal(SIGSEGV, sim_crash_handler);
    signal(SIGABRT, sim_crash_handler);
    signal(SIGBUS, sim_crash_handler);
    rt_log_set_level(RT_LOG_WARN); /* Snapshots log at INFO: hundreds of lines otherwise. */
    unsigned long long first = 1, last = 100;
    const char *one = getenv("PAYRAFT_SIM_SEED");
    const char *count = getenv("PAYRAFT_SIM_SEEDS");
    if (one != NULL) {
        first = last = strtoull(one, NULL, 10);
    } else if (count != NULL) {
        last = strtoull(count, NULL, 10);
    }
    for (unsigned long long seed = first; seed <= last; seed++) {
        run_seed(seed);
    }
    printf("sim: seeds %llu..%llu passed: %llu acknowledged orders checked; snapshots: %llu "
           "taken, %llu sent in full, %llu installed, %llu restores skipped (store ahead); %llu "
           "watchdog leadership transfers\n",
           first, last, totals.acked, totals.taken, totals.sent, totals.installed, totals.kept,
           totals.watchdog);
    /* Across a real run (not one seed replayed) the faults must have exercised acknowledged
     * writes, snapshots and installs from them, or the test proved nothing. */
    if (last - first >= 20) {
        assert_true(totals.acked > 0);
        assert_true(totals.taken > 0);
        assert_true(totals.sent > 0);
        assert_true(totals.installed > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sim_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
