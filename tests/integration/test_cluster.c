/* Integration: a real 3-node cluster (payd processes on 127.0.0.1, started by
 * scripts/cluster.sh). Orders are written through every node (forwarding to shard leaders),
 * then the leader of a shard is SIGKILLed while a client writes: the test measures how long
 * until that shard serves again, checks that every acknowledged order is readable afterwards,
 * restarts the killed node and measures how long until it has caught up. Then a shard's leader
 * is cut off from both followers (SIGSTOP) while linearizable reads wait on it: every one is
 * answered UNAVAILABLE, none from its own copy. Last, a client of the C library that routes
 * each order to its shard's leader writes through the SIGKILL of one of them, and loses nothing.
 *
 * PAYRAFT_ITEST_KILLS=N repeats the kill/restart round N times (default 1) and prints the
 * median failover and catch-up times.
 *
 * A second cluster (two shards, the smallest --snapshot-bytes) takes many raft snapshots: a node
 * stopped cleanly restarts from its own store rather than from its last snapshot, and a node
 * SIGKILLed while the others write catches up through snapshots; both serve every order from
 * their own replica afterwards. Its nodes also send raft messages above 4 KiB through raft_uv's
 * own connections (the smallest --raft-link-bytes), the rest on the node links. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include "act_order.h"
#include "itest.h"
#include "payraft_client.h"
#include "rt_key.h"
#include "rt_mp.h"

#define NODES       3
#define SHARDS      16
#define PORT_OFFSET 50
#define CALL_MS     10000
#define ORDERS_MAX  4096

static struct itest_cluster cluster;
static char acked[ORDERS_MAX][40]; /* Acknowledged merchant order numbers. */
static unsigned acked_count;

/* Replicas at the same applied index must have the same history hash: they applied the same
 * entries. Returns how many shards were compared on every node at the same index. */
static unsigned histories_agree(const struct itest_cluster *cl)
{
    struct itest_shard v[NODES][ITEST_SHARDS];
    for (unsigned n = 0; n < NODES; n++) {
        assert_true(itest_shard_views(cl, n + 1, v[n]));
    }
    unsigned compared = 0;
    for (unsigned s = 0; s < cl->shards; s++) {
        bool same_index = true;
        for (unsigned n = 1; n < NODES; n++) {
            same_index = same_index && v[n][s].applied == v[0][s].applied;
        }
        if (!same_index) {
            continue;
        }
        for (unsigned n = 1; n < NODES; n++) {
            if (v[n][s].history != v[0][s].history) {
                fprintf(stderr, "shard %u: node %u history %llx != node 1 history %llx at %llu\n",
                        s, n + 1, (unsigned long long)v[n][s].history,
                        (unsigned long long)v[0][s].history, (unsigned long long)v[0][s].applied);
                fail();
            }
        }
        compared++;
    }
    return compared;
}

static uint16_t shard_of_mono(const char *mono)
{
    uint8_t key[RT_ACTOR_KEY_BYTES_MAX];
    size_t n = act_order_key(key, "itest", 5, mono, strlen(mono));
    return rt_shard_of(key, n, SHARDS);
}

/* Create order @mono through @c, retrying UNAVAILABLE/TIMEOUT (same key: idempotent) until
 * @deadline. Returns true once acknowledged. */
static bool create_until_ok(struct itest_client *c, const char *mono, uint64_t deadline,
                            char *order_id)
{
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    bool ok = false;
    while (!ok && itest_now_ms() < deadline) {
        size_t len = itest_order_create_body(&body, "itest", mono, 990);
        if (!itest_call(c, "order.create", body.data, len, &reply, CALL_MS)) {
            break;
        }
        if (strcmp(reply.code, "OK") == 0) {
            ok = itest_body_str(&reply, "order_id", order_id, 40);
        } else if (strcmp(reply.code, "UNAVAILABLE") == 0 || strcmp(reply.code, "TIMEOUT") == 0) {
            usleep(20 * 1000);
        } else {
            fprintf(stderr, "create %s: %s %s\n", mono, reply.code, reply.msg);
            break;
        }
    }
    itest_reply_free(&reply);
    rt_buf_free(&body);
    return ok;
}

static bool read_order(unsigned node, const char *mono, const char *consistency, char *order_id)
{
    struct itest_client c;
    if (!itest_connect(&c, &cluster, node, 2000)) {
        return false;
    }
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    size_t len = itest_order_key_body(&body, "itest", mono, consistency);
    bool ok = itest_call(&c, "order.get", body.data, len, &reply, CALL_MS) &&
              strcmp(reply.code, "OK") == 0 && itest_body_str(&reply, "order_id", order_id, 40);
    if (!ok) {
        fprintf(stderr, "get %s on node %u: %s %s\n", mono, node, reply.code, reply.msg);
    }
    itest_reply_free(&reply);
    rt_buf_free(&body);
    itest_close(&c);
    return ok;
}

/* Start @cl (NODES nodes, @shards shards, payd --snapshot-bytes @snapshot_bytes and
 * --raft-link-bytes @raft_link_bytes or their defaults for 0), wait until every node knows every
 * shard's leader and the cluster map, and create the app "itest" the orders belong to. 0, or -1
 * with a message. */
static int cluster_up(struct itest_cluster *cl, unsigned offset, unsigned shards,
                      unsigned snapshot_bytes, unsigned raft_link_bytes)
{
    if (!itest_cluster_start_with(cl, NODES, offset, shards, snapshot_bytes, raft_link_bytes)) {
        return -1;
    }
    uint64_t t0 = itest_now_ms();
    if (!itest_wait_all_leaders(cl, 30000)) {
        return -1;
    }
    /* The app the orders belong to (admin acts for it). */
    struct itest_client c;
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &body);
    rt_mp_write_map(&w, 4);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "itest");
    rt_mp_write_cstr(&w, "name");
    rt_mp_write_cstr(&w, "Failover drill");
    rt_mp_write_cstr(&w, "notify_url");
    rt_mp_write_cstr(&w, "https://itest.example/notify");
    rt_mp_write_cstr(&w, "channels");
    rt_mp_write_array(&w, 1);
    rt_mp_write_cstr(&w, "alipay");
    bool created = itest_connect(&c, cl, 1, 5000);
    while (created && itest_call(&c, "app.create", body.data, body.len, &reply, CALL_MS) &&
           strcmp(reply.code, "UNAVAILABLE") == 0) {
        usleep(100 * 1000);
    }
    created = created && strcmp(reply.code, "OK") == 0;
    itest_close(&c);
    itest_reply_free(&reply);
    rt_buf_free(&body);
    if (!created) {
        fprintf(stderr, "itest: could not create the app\n");
        return -1;
    }
    /* Admin requests check the app on the receiving node's replica, and ask the meta leader
     * when it is not there yet: right after the create, every node knows the app (an order
     * lookup says "no such order", never "no such app"; only UNAVAILABLE is retried). */
    for (unsigned n = 1; n <= NODES; n++) {
        uint64_t t1 = itest_now_ms();
        for (;;) {
            struct itest_client q;
            struct rt_buf kb;
            rt_buf_init(&kb, 1024);
            struct itest_reply kr;
            itest_reply_init(&kr);
            bool ready = itest_connect(&q, cl, n, 2000);
            size_t klen = itest_order_key_body(&kb, "itest", "probe", "stale");
            ready = ready && itest_call(&q, "order.get", kb.data, klen, &kr, CALL_MS) &&
                    strcmp(kr.code, "UNAVAILABLE") != 0;
            bool unknown = ready && strstr(kr.msg, "no such app") != NULL;
            itest_close(&q);
            itest_reply_free(&kr);
            rt_buf_free(&kb);
            if (unknown) {
                fprintf(stderr, "itest: node %u: no such app right after app.create\n", n);
                return -1;
            }
            if (ready) {
                break;
            }
            if (itest_now_ms() - t1 > 10000) {
                fprintf(stderr, "itest: node %u never learned the app\n", n);
                return -1;
            }
            usleep(50 * 1000);
        }
    }
    printf("itest: all %u shards have leaders and every node has the cluster map %llu ms "
           "after start\n",
           cl->shards, (unsigned long long)(itest_now_ms() - t0));
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return cluster_up(&cluster, PORT_OFFSET, SHARDS, 0, 0);
}

static int teardown(void **state)
{
    (void)state;
    return itest_cluster_stop(&cluster) ? 0 : -1;
}

static void writes_through_every_node(void **state)
{
    (void)state;
    char ids[NODES][20][40];
    for (unsigned node = 1; node <= NODES; node++) {
        struct itest_client c;
        assert_true(itest_connect(&c, &cluster, node, 5000));
        for (unsigned k = 0; k < 20; k++) {
            char mono[40];
            snprintf(mono, sizeof(mono), "via%u-%u", node, k);
            assert_true(create_until_ok(&c, mono, itest_now_ms() + 10000, ids[node - 1][k]));
            snprintf(acked[acked_count++], 40, "%s", mono);
        }
        itest_close(&c);
    }
    /* Read every order through another node than the one that wrote it. */
    for (unsigned node = 1; node <= NODES; node++) {
        for (unsigned k = 0; k < 20; k++) {
            char mono[40], id[40];
            snprintf(mono, sizeof(mono), "via%u-%u", node, k);
            assert_true(read_order(node % NODES + 1, mono, NULL, id));
            assert_string_equal(id, ids[node - 1][k]);
        }
    }
    usleep(500 * 1000); /* Let followers apply the last entries. */
    printf("itest: %u shards compared: same history on every node\n", histories_agree(&cluster));
    /* Raft's messages travelled on the node links (cl_raftwire.h), none through raft_uv's own
     * transport: every one of them is small here. */
    for (unsigned node = 1; node <= NODES; node++) {
        struct itest_shard views[ITEST_SHARDS];
        assert_true(itest_shard_views(&cluster, node, views));
        printf("itest: node %u raft messages: %llu sent on links, %llu by raft_uv, %llu received\n",
               node, (unsigned long long)itest_raft_messages.sent_on_links,
               (unsigned long long)itest_raft_messages.sent_by_raft_uv,
               (unsigned long long)itest_raft_messages.received);
        assert_true(itest_raft_messages.sent_on_links > 0);
        assert_true(itest_raft_messages.received > 0);
        assert_int_equal(itest_raft_messages.sent_by_raft_uv, 0);
        /* Every group's entries went to the node's one log (cl_raftlog.h). Here one request
         * at a time: one entry per write (several groups' per write under load,
         * docs/benchmarks.md). */
        printf("itest: node %u raft log: %llu entries in %llu writes, %llu bytes\n", node,
               (unsigned long long)itest_raft_log.entries,
               (unsigned long long)itest_raft_log.writes, (unsigned long long)itest_raft_log.bytes);
        assert_true(itest_raft_log.entries > 0);
        assert_true(itest_raft_log.writes > 0);
        assert_int_equal(itest_raft_log.failures, 0);
        /* What holds the node's memory (cluster.status "memory"): each part has something
         * after the writes above, the state cache within its budget. (Allocated is not
         * resident: a memtable's arena blocks count in full from their first key.) */
        const struct itest_memory *m = &itest_memory;
        printf("itest: node %u memory: rss %llu, malloc %llu, state cache %llu, memtables %llu + "
               "%llu (raft log), raft entries %llu\n",
               node, (unsigned long long)m->rss, (unsigned long long)m->malloc_in_use,
               (unsigned long long)m->state_cache, (unsigned long long)m->store_memtables,
               (unsigned long long)m->raft_log_memtables, (unsigned long long)m->raft_entries);
        /* state_cache_bytes counts the shards' cache and the meta group's. */
        assert_true(m->state_cache > 0 &&
                    m->state_cache <= RT_CACHE_BYTES_DEFAULT + RT_META_CACHE_BYTES);
        assert_true(m->store_memtables > 0 && m->raft_log_memtables > 0);
        assert_true(m->raft_entries > 0);
        assert_true(m->rss > 0);
#if !ITEST_SANITIZED /* A sanitizer's allocator leaves glibc's mallinfo2 at zero. */
        assert_true(m->malloc_in_use > m->state_cache);
#endif
    }
    /* Idempotency and conflicts across nodes. */
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, 2, 5000));
    char id[40];
    assert_true(create_until_ok(&c, "via1-0", itest_now_ms() + 10000, id));
    assert_string_equal(id, ids[0][0]);
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct itest_reply reply;
    itest_reply_init(&reply);
    size_t len = itest_order_create_body(&body, "itest", "via1-0", 991);
    assert_true(itest_call(&c, "order.create", body.data, len, &reply, CALL_MS));
    assert_string_equal(reply.code, "CONFLICT");
    itest_reply_free(&reply);
    rt_buf_free(&body);
    itest_close(&c);
}

/* The scheduling state of process @pid: the letter after the command in /proc/PID/stat ('T'
 * stopped, 'S' sleeping, ...), '?' if it cannot be read. */
static char process_state(long pid)
{
    char path[64], text[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    itest_read_text(path, text, sizeof(text));
    const char *paren = strrchr(text, ')'); /* The command may hold spaces and parens. */
    return paren != NULL && paren[1] == ' ' ? paren[2] : '?';
}

/* SIGSTOP node @id (@stop) or SIGCONT it, and wait until the kernel shows it stopped or running
 * again. false if it has no process or the state did not change within 5 s. */
static bool node_set_stopped(unsigned id, bool stop)
{
    long pid = itest_node_pid(&cluster, id);
    if (pid <= 0 || kill((pid_t)pid, stop ? SIGSTOP : SIGCONT) != 0) {
        return false;
    }
    uint64_t t0 = itest_now_ms();
    while ((process_state(pid) == 'T') != stop) {
        if (itest_now_ms() > t0 + 5000) {
            return false;
        }
        usleep(1000);
    }
    return true;
}

#define CUT_READS 64

/* A shard's leader cut off from both its followers (SIGSTOP: the process and its sockets stay,
 * nothing answers) must not serve a linearizable read from its own copy, where a new leader on
 * the other side could already have acknowledged writes it lacks. Its read barrier cannot
 * commit; raft steps it down after an election timeout without a majority, and the reads
 * carried by the barrier or queued behind it are answered UNAVAILABLE: none OK, none left
 * unanswered (cl_node.c, Reads). Once the followers run again, the same reads are served. */
static void cut_off_leader_refuses_reads(void **state)
{
    (void)state;
    assert_true(itest_wait_all_leaders(&cluster, 30000));
    struct itest_shard views[SHARDS];
    assert_true(itest_shard_views(&cluster, 1, views));
    unsigned leader = (unsigned)views[0].leader;
    assert_true(leader >= 1 && leader <= NODES);
    /* Orders on shards that node leads (by its own view). */
    assert_true(itest_shard_views(&cluster, leader, views));
    static char monos[CUT_READS][40], ids[CUT_READS][40];
    struct itest_client c;
    assert_true(itest_connect(&c, &cluster, leader, 5000));
    unsigned made = 0;
    for (unsigned k = 0; made < CUT_READS && k < 100000; k++) {
        snprintf(monos[made], sizeof(monos[made]), "cut-%u", k);
        if (views[shard_of_mono(monos[made])].leader == leader) {
            assert_true(create_until_ok(&c, monos[made], itest_now_ms() + 10000, ids[made]));
            made++;
        }
    }
    assert_int_equal(made, CUT_READS);
    /* Every get is encoded before the stop, in two halves: the first leaves in one write right
     * after the stop, the second 100 ms later, while the first half's barrier is in flight. */
    struct rt_buf body, gets;
    rt_buf_init(&body, 4096);
    rt_buf_init(&gets, 64u * 1024u);
    size_t half_bytes = 0;
    for (unsigned i = 0; i < CUT_READS; i++) {
        size_t len = itest_order_key_body(&body, "itest", monos[i], NULL);
        assert_true(itest_encode(&c, NULL, "order.get", body.data, len, &gets) != 0);
        half_bytes = i + 1 == CUT_READS / 2 ? gets.len : half_bytes;
    }
    /* Leadership still where it was (a quiet cluster keeps it), and the read counters. */
    assert_true(itest_shard_views(&cluster, leader, views));
    for (unsigned i = 0; i < CUT_READS; i++) {
        assert_int_equal(views[shard_of_mono(monos[i])].leader, leader);
    }
    const struct itest_reads before = itest_reads;
    unsigned followers[NODES - 1], nf = 0;
    for (unsigned n = 1; n <= NODES; n++) {
        if (n != leader) {
            followers[nf++] = n;
        }
    }
    /* Cut off; send; collect. Nothing is asserted until the followers run again: a failed
     * assertion here would leave them stopped for the teardown. */
    bool stopped = node_set_stopped(followers[0], true) && node_set_stopped(followers[1], true);
    uint64_t t0 = itest_now_ms();
    bool sent = stopped && itest_send_raw(&c, gets.data, half_bytes);
    usleep(100 * 1000);
    sent = sent && itest_send_raw(&c, gets.data + half_bytes, gets.len - half_bytes);
    unsigned answered = 0, ok = 0, unavailable = 0;
    char other[32] = "";
    struct itest_reply reply;
    itest_reply_init(&reply);
    while (sent && answered < CUT_READS) {
        uint64_t id;
        if (!itest_read_reply(&c, &reply, &id, 15000)) {
            break;
        }
        answered++;
        if (strcmp(reply.code, "OK") == 0) {
            ok++;
        } else if (strcmp(reply.code, "UNAVAILABLE") == 0) {
            unavailable++;
        } else {
            snprintf(other, sizeof(other), "%s", reply.code);
        }
    }
    uint64_t took_ms = itest_now_ms() - t0;
    bool status = itest_shard_views(&cluster, leader, views);
    const struct itest_reads after = itest_reads;
    bool resumed = node_set_stopped(followers[0], false);
    resumed = node_set_stopped(followers[1], false) && resumed;
    printf("itest: node %u cut off from nodes %u and %u: %u of %u linearizable reads answered "
           "in %llu ms: %u OK, %u UNAVAILABLE%s%s; reads failed on it: %llu\n",
           leader, followers[0], followers[1], answered, CUT_READS, (unsigned long long)took_ms, ok,
           unavailable, other[0] != '\0' ? ", other: " : "", other,
           (unsigned long long)(after.failed - before.failed));
    assert_true(stopped);
    assert_true(resumed);
    assert_true(sent);
    assert_int_equal(answered, CUT_READS);
    assert_int_equal(ok, 0);
    assert_int_equal(unavailable, CUT_READS);
    assert_true(status);
    /* The reads reached the leader before it stepped down (an election timeout is 1 s): its
     * barrier's failure answered them. */
    assert_true(after.failed > before.failed);
    /* Joined again: the shards elect leaders, and every read is served with its order. */
    assert_true(itest_wait_all_leaders(&cluster, 30000));
    for (unsigned i = 0; i < CUT_READS; i++) {
        char id[40];
        assert_true(read_order(leader, monos[i], NULL, id));
        assert_string_equal(id, ids[i]);
    }
    itest_reply_free(&reply);
    rt_buf_free(&gets);
    rt_buf_free(&body);
    itest_close(&c);
}

#define ROUTED_BATCHES    20u
#define ROUTED_BATCH      100u
#define ROUTED_KILL_AFTER 5u

struct routed_tally {
    unsigned ok, retried;
    char other[64]; /* The first outcome that was not OK. */
};

static void routed_done(void *arg, int status, struct pr_response *resp)
{
    struct routed_tally *t = arg;
    if (status == 0 && resp->ok) {
        t->ok++;
        t->retried += resp->attempts > 1;
    } else if (t->other[0] == '\0') {
        snprintf(t->other, sizeof(t->other), "%s", status != 0 ? pr_strerror(status) : resp->code);
    }
}

/* A client of the C library with the route option (acting as admin for the app "itest", so it
 * routes by the body's app_id) writes in pipelined batches to every shard's leader while one
 * of those leaders is SIGKILLed: every order is answered OK, its failed routed attempts retried
 * through node 1 until the shard has a new leader, and every one is readable afterwards. */
static void routed_client_rides_a_leader_kill(void **state)
{
    (void)state;
    assert_true(itest_wait_all_leaders(&cluster, 30000));
    struct itest_shard views[SHARDS];
    assert_true(itest_shard_views(&cluster, 1, views));
    unsigned victim = 0; /* Not node 1: the client's first server stays up. */
    for (unsigned s = 0; s < SHARDS && victim == 0; s++) {
        victim = views[s].leader != 1 ? (unsigned)views[s].leader : 0;
    }
    assert_true(victim >= 2 && victim <= NODES);
    struct pr_client *c = itest_library_client(&cluster, NULL, NULL, true, 20000);
    assert_non_null(c);
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    struct routed_tally t = {0};
    uint64_t kill_batch_ms = 0;
    uint64_t forwarded_from = 0, forwarded_to = 0; /* Over batches 2 to the kill. */
    for (unsigned b = 0; b < ROUTED_BATCHES; b++) {
        if (b == 2) {
            assert_true(itest_forwarded_total(&cluster, &forwarded_from));
        }
        if (b == ROUTED_KILL_AFTER) {
            assert_true(itest_forwarded_total(&cluster, &forwarded_to));
            assert_true(itest_cluster_kill(&cluster, victim));
        }
        uint64_t t0 = itest_now_ms();
        for (unsigned i = 0; i < ROUTED_BATCH; i++) {
            char mono[40];
            snprintf(mono, sizeof(mono), "routed-%u-%u", b, i);
            size_t len = itest_order_create_body(&body, "itest", mono, 700);
            assert_int_equal(pr_client_send(c, "order.create", body.data, len, routed_done, &t), 0);
        }
        while (pr_client_pending(c) > 0) {
            assert_true(pr_client_poll(c, 30000) > 0); /* Past the 20 s request timeout. */
        }
        if (b == ROUTED_KILL_AFTER) {
            kill_batch_ms = itest_now_ms() - t0;
        }
    }
    pr_client_free(c);
    uint64_t forwarded = forwarded_to - forwarded_from;
    printf("itest: routed client, node %u killed before batch %u: %u of %u orders OK (%u "
           "retried), the batch after the kill took %llu ms, %llu forwarded in batches 2-%u%s%s\n",
           victim, ROUTED_KILL_AFTER, t.ok, ROUTED_BATCHES * ROUTED_BATCH, t.retried,
           (unsigned long long)kill_batch_ms, (unsigned long long)forwarded, ROUTED_KILL_AFTER - 1,
           t.other[0] != '\0' ? "; first failure: " : "", t.other);
    assert_int_equal(t.ok, ROUTED_BATCHES * ROUTED_BATCH);
    /* Routed: the map comes during batch 0 and the leaders' connections are made during batch 1
     * (whose requests take node 1 meanwhile); from then on the nodes forward next to nothing
     * (without routing, about two orders in three would be). */
    assert_true(forwarded * 10 < (uint64_t)(ROUTED_KILL_AFTER - 2) * ROUTED_BATCH);
    assert_true(t.retried > 0); /* The kill was seen: some attempts went to the dead leader. */
    assert_true(itest_cluster_restart(&cluster, victim));
    assert_true(itest_wait_all_leaders(&cluster, 30000));
    for (unsigned b = 0; b < ROUTED_BATCHES; b++) {
        for (unsigned i = 0; i < ROUTED_BATCH; i++) {
            char mono[40], id[40];
            snprintf(mono, sizeof(mono), "routed-%u-%u", b, i);
            assert_true(read_order(1, mono, NULL, id));
        }
    }
    rt_buf_free(&body);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void leader_kill_loses_no_acknowledged_write(void **state)
{
    (void)state;
    const char *env = getenv("PAYRAFT_ITEST_KILLS");
    unsigned rounds = env != NULL ? (unsigned)atoi(env) : 1;
    rounds = rounds < 1 ? 1 : rounds > 9 ? 9 : rounds;
    uint64_t failover_ms[9], catchup_ms[9];
    for (unsigned round = 0; round < rounds; round++) {
        struct itest_shard before[SHARDS];
        assert_true(itest_shard_views(&cluster, 1, before));
        unsigned victim = (unsigned)before[round % SHARDS].leader;
        uint16_t watched = (uint16_t)(round % SHARDS);
        unsigned writer = victim % NODES + 1;
        struct itest_client c;
        assert_true(itest_connect(&c, &cluster, writer, 5000));
        uint64_t killed_at = 0, recovered_at = 0;
        unsigned written = 0;
        for (unsigned k = 0; acked_count < ORDERS_MAX && (recovered_at == 0 || written < 400);
             k++) {
            char mono[40], id[40];
            snprintf(mono, sizeof(mono), "r%u-%u", round, k);
            if (k == 150) {
                /* Leadership may have moved since: kill whoever leads the watched shard now
                 * (as the writer's node sees it), unless that is the writer's own node. */
                struct itest_shard now_view[SHARDS];
                assert_true(itest_shard_views(&cluster, writer, now_view));
                if (now_view[watched].leader != 0 && now_view[watched].leader != writer) {
                    victim = (unsigned)now_view[watched].leader;
                }
                assert_true(itest_cluster_kill(&cluster, victim));
                killed_at = itest_now_ms();
            }
            assert_true(create_until_ok(&c, mono, itest_now_ms() + 20000, id));
            snprintf(acked[acked_count++], 40, "%s", mono);
            written++;
            if (killed_at != 0 && recovered_at == 0 && shard_of_mono(mono) == watched) {
                recovered_at = itest_now_ms();
            }
            /* One reading of the clock: with two, the order in which C evaluates them is
             * unspecified, and a millisecond passing between them wrapped the difference. */
            uint64_t now = itest_now_ms();
            assert_true(killed_at == 0 || now < killed_at + 60000);
        }
        itest_close(&c);
        failover_ms[round] = recovered_at - killed_at;
        printf("itest: round %u: killed node %u (leader of shard %u); shard %u served again "
               "after %llu ms\n",
               round, victim, watched, watched, (unsigned long long)failover_ms[round]);
        /* Every acknowledged order so far is readable through the survivors. */
        for (unsigned i = 0; i < acked_count; i++) {
            char id[40];
            assert_true(read_order(writer, acked[i], NULL, id));
        }
        /* Bring the victim back; it catches up with the leaders. */
        struct itest_shard leader_view[SHARDS];
        assert_true(itest_shard_views(&cluster, writer, leader_view));
        uint64_t restart_at = itest_now_ms();
        assert_true(itest_cluster_restart(&cluster, victim));
        for (;;) {
            struct itest_shard mine[SHARDS];
            bool caught_up = itest_shard_views(&cluster, victim, mine);
            for (unsigned s = 0; caught_up && s < SHARDS; s++) {
                caught_up = mine[s].applied >= leader_view[s].applied;
            }
            if (caught_up) {
                break;
            }
            assert_true(itest_now_ms() - restart_at < 60000);
            usleep(50 * 1000);
        }
        catchup_ms[round] = itest_now_ms() - restart_at;
        printf("itest: round %u: node %u restarted and caught up after %llu ms\n", round, victim,
               (unsigned long long)catchup_ms[round]);
        /* The restarted node serves: stale reads on it see every acknowledged order. */
        for (unsigned i = 0; i < acked_count; i++) {
            char id[40];
            assert_true(read_order(victim, acked[i], "stale", id));
        }
        printf("itest: round %u: %u shards compared: same history on every node\n", round,
               histories_agree(&cluster));
        /* Let every shard settle on a leader again before the next round. */
        uint64_t t0 = itest_now_ms();
        while (!itest_all_leaders(&cluster, victim)) {
            assert_true(itest_now_ms() - t0 < 30000);
            usleep(100 * 1000);
        }
    }
    qsort(failover_ms, rounds, sizeof(uint64_t), compare_u64);
    qsort(catchup_ms, rounds, sizeof(uint64_t), compare_u64);
    printf("itest: %u kill rounds, %u acknowledged orders all readable: median failover %llu ms "
           "(max %llu), median catch-up %llu ms\n",
           rounds, acked_count, (unsigned long long)failover_ms[rounds / 2],
           (unsigned long long)failover_ms[rounds - 1], (unsigned long long)catchup_ms[rounds / 2]);
    assert_true(failover_ms[rounds / 2] <= 3000);
}

/* ---- Snapshots: a second cluster, two shards, a snapshot every 64 KiB of raft log ---- */

/* payd's smallest --snapshot-bytes, and few shards so that each takes many snapshots. */
#define SNAP_OFFSET 70 /* test_api uses 60: ports BASE+170.., +270.., +370... */
#define SNAP_SHARDS 2
#define SNAP_BYTES  65536
/* payd's smallest --raft-link-bytes: raft messages above 4 KiB (the full copies sent to node 3,
 * catch-ups of many entries, some busy appends) leave through raft_uv's own connections, the
 * rest on the node links, so both paths and their interleaving carry this case. */
#define SNAP_LINK_BYTES 4096
/* An order is ~90 bytes of raft log (group commit packs several in one entry): each shard takes
 * a snapshot about every 750 orders. */
#define SNAP_FIRST 6000 /* Orders before the restarts: 4 snapshots per shard. */
/* Orders while node 3 is down, in rounds of SNAP_ROUND (a snapshot per shard) until the running
 * nodes' logs no longer reach back to where node 3 stopped, and then again past where they
 * ended at that point: usually two rounds per cut, as raft keeps CL_FSM_TRAILING_MIN entries
 * before each snapshot, most of what one covers here. */
#define SNAP_ROUND    1500
#define SNAP_MORE_MAX 15000
#define SNAP_DEPTH    32 /* Requests in flight on one connection. */
/* Lines matched by their text, which names the shard: "marker snapshot of shard S at index"
 * (a snapshot taken) and store_snapshot's "snapshot [restore] of shard S at index" (a full
 * stream made for a follower, or restored from one). */
#define SNAP_TAKEN  "marker snapshot of shard"
#define SNAP_KEPT   "not restored: the store already holds index"
#define SNAP_LOADED "snapshot restored: applied index"

static struct itest_cluster snap;

struct snap_order {
    char mono[24];
    uint64_t amount; /* Every order its own: a read that finds another order shows. */
    char id[40];     /* As order.create answered. */
};
static struct snap_order snap_orders[SNAP_FIRST + SNAP_MORE_MAX];

enum snap_op { SNAP_CREATE, SNAP_GET_STALE };

static int snap_setup(void **state)
{
    (void)state;
    return cluster_up(&snap, SNAP_OFFSET, SNAP_SHARDS, SNAP_BYTES, SNAP_LINK_BYTES);
}

static int snap_teardown(void **state)
{
    (void)state;
    return itest_cluster_stop(&snap) ? 0 : -1;
}

/* Send @op for snap_orders[@order] on @c; the request id, or 0. */
static uint64_t snap_send(struct itest_client *c, enum snap_op op, unsigned order,
                          struct rt_buf *body, struct rt_buf *frame)
{
    const struct snap_order *o = &snap_orders[order];
    size_t len = op == SNAP_CREATE ? itest_order_create_body(body, "itest", o->mono, o->amount)
                                   : itest_order_key_body(body, "itest", o->mono, "stale");
    rt_buf_reset(frame);
    uint64_t id = len != 0 ? itest_encode(c, NULL, op == SNAP_CREATE ? "order.create" : "order.get",
                                          body->data, len, frame)
                           : 0;
    return id != 0 && itest_send_raw(c, frame->data, frame->len) ? id : 0;
}

/* @op for snap_orders[from..to) through node @node, SNAP_DEPTH requests in flight on one
 * connection, all done by @deadline. Creates retry UNAVAILABLE and TIMEOUT (a leader moving;
 * the same order number and amount again is idempotent) and keep the order id. Stale reads are
 * answered by @node's own replica: each must find its order with the id and amount it was
 * created with. false, with a message, otherwise. */
static bool snap_run(unsigned node, enum snap_op op, unsigned from, unsigned to, uint64_t deadline)
{
    const char *what = op == SNAP_CREATE ? "create" : "stale read";
    struct itest_client c;
    if (!itest_connect(&c, &snap, node, 5000)) {
        fprintf(stderr, "snapshots: cannot connect to node %u\n", node);
        return false;
    }
    struct rt_buf body, frame;
    rt_buf_init(&body, 4096);
    rt_buf_init(&frame, 65536);
    struct itest_reply reply;
    itest_reply_init(&reply);
    struct {
        uint64_t id;
        unsigned order;
    } slot[SNAP_DEPTH];
    unsigned busy = 0, next = from, done = 0, retries = 0;
    bool ok = true;
    while (ok && busy < SNAP_DEPTH && next < to) {
        slot[busy].order = next++;
        slot[busy].id = snap_send(&c, op, slot[busy].order, &body, &frame);
        ok = slot[busy++].id != 0;
    }
    while (ok && done < to - from) {
        uint64_t now = itest_now_ms(), got;
        if (now >= deadline ||
            !itest_read_reply(&c, &reply, &got,
                              (unsigned)(deadline - now < CALL_MS ? deadline - now : CALL_MS))) {
            fprintf(stderr, "snapshots: node %u: %s: no reply (%u of %u done, %u retries)\n", node,
                    what, done, to - from, retries);
            ok = false;
            break;
        }
        unsigned k = 0;
        while (k < busy && slot[k].id != got) {
            k++;
        }
        if (k == busy) {
            continue; /* Not a request this loop waits for. */
        }
        struct snap_order *o = &snap_orders[slot[k].order];
        if (strcmp(reply.code, "UNAVAILABLE") == 0 || strcmp(reply.code, "TIMEOUT") == 0) {
            retries++;
            usleep(20 * 1000);
            slot[k].id = snap_send(&c, op, slot[k].order, &body, &frame);
            ok = slot[k].id != 0;
            continue;
        }
        if (strcmp(reply.code, "OK") != 0) {
            fprintf(stderr, "snapshots: node %u: %s %s: %s %s\n", node, what, o->mono, reply.code,
                    reply.msg);
            ok = false;
            break;
        }
        if (op == SNAP_CREATE) {
            ok = itest_body_str(&reply, "order_id", o->id, sizeof(o->id));
        } else {
            char id[40] = "";
            uint64_t amount = 0;
            ok = itest_body_str(&reply, "order_id", id, sizeof(id)) &&
                 itest_body_uint(&reply, "amount", &amount) && strcmp(id, o->id) == 0 &&
                 amount == o->amount;
            if (!ok) {
                fprintf(stderr,
                        "snapshots: node %u: %s read back as %s amount %llu, created as %s "
                        "amount %llu\n",
                        node, o->mono, id, (unsigned long long)amount, o->id,
                        (unsigned long long)o->amount);
            }
        }
        done++;
        if (ok && next < to) {
            slot[k].order = next++;
            slot[k].id = snap_send(&c, op, slot[k].order, &body, &frame);
            ok = slot[k].id != 0;
        } else {
            slot[k] = slot[--busy];
        }
    }
    itest_reply_free(&reply);
    rt_buf_free(&frame);
    rt_buf_free(&body);
    itest_close(&c);
    return ok;
}

static void log_path(const struct itest_cluster *cl, unsigned id, char *path, size_t cap)
{
    snprintf(path, cap, "%s/node%u/payd.log", cl->dir, id);
}

/* Where node @id's log ends now: checks after a restart look only at what follows. */
static long log_end(const struct itest_cluster *cl, unsigned id)
{
    char path[600];
    log_path(cl, id, path, sizeof(path));
    FILE *f = fopen(path, "r");
    long end = 0;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0) {
        end = ftell(f);
    }
    if (f != NULL) {
        fclose(f);
    }
    return end < 0 ? 0 : end;
}

/* Lines of node @id's log from byte @from on that contain @needle. */
static unsigned log_count(const struct itest_cluster *cl, unsigned id, long from,
                          const char *needle)
{
    char path[600];
    log_path(cl, id, path, sizeof(path));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fseek(f, from, SEEK_SET), 0);
    unsigned count = 0;
    char line[1100]; /* rt_log lines are at most 1024 bytes. */
    while (fgets(line, sizeof(line), f) != NULL) {
        count += strstr(line, needle) != NULL;
    }
    fclose(f);
    return count;
}

/* Lines of node @id's log from byte @from on that say "@what of shard @shard at index". */
static unsigned shard_log_count(const struct itest_cluster *cl, unsigned id, long from,
                                const char *what, unsigned shard)
{
    char needle[80];
    snprintf(needle, sizeof(needle), "%s of shard %u at index ", what, shard);
    return log_count(cl, id, from, needle);
}

/* What node @id has applied on each shard, retrying while it does not answer (a node just
 * restarted). */
static void snap_views(unsigned id, struct itest_shard views[ITEST_SHARDS])
{
    uint64_t t0 = itest_now_ms();
    while (!itest_shard_views(&snap, id, views)) {
        if (itest_now_ms() - t0 > 10000) {
            fprintf(stderr, "snapshots: node %u does not answer cluster.status\n", id);
            fail();
        }
        usleep(50 * 1000);
    }
}

/* Over the running nodes (all but @down, 0 for none), per shard: the most any has applied
 * (@most, if not NULL), and the furthest any raft log can reach while the cluster is idle
 * (@log_end, if not NULL): its commit or applied index, whichever is further, plus a few
 * entries of slack for a barrier in flight. */
static void snap_survey(unsigned down, struct itest_shard most[ITEST_SHARDS],
                        uint64_t log_end[ITEST_SHARDS])
{
    struct itest_shard most_seen[ITEST_SHARDS] = {0};
    uint64_t end_seen[ITEST_SHARDS] = {0};
    for (unsigned n = 1; n <= NODES; n++) {
        struct itest_shard v[ITEST_SHARDS];
        if (n == down) {
            continue;
        }
        snap_views(n, v);
        for (unsigned s = 0; s < SNAP_SHARDS; s++) {
            uint64_t end = (v[s].commit > v[s].applied ? v[s].commit : v[s].applied) + 8;
            end_seen[s] = end > end_seen[s] ? end : end_seen[s];
            if (v[s].applied > most_seen[s].applied) {
                most_seen[s].applied = v[s].applied;
            }
        }
    }
    if (most != NULL) {
        memcpy(most, most_seen, sizeof(most_seen));
    }
    if (log_end != NULL) {
        memcpy(log_end, end_seen, sizeof(end_seen));
    }
}

/* Whether, within @limit_ms, the raft logs of nodes 1 and 2 (node 3 is down) both start past
 * @last + 1 on every shard: a node whose log ends at @last can then only catch up through a
 * snapshot. A log is cut when raft has written the snapshot, a little after it is taken. */
static bool snap_logs_start_after(const uint64_t last[ITEST_SHARDS], uint64_t limit_ms)
{
    uint64_t t0 = itest_now_ms();
    for (;;) {
        bool cut = true;
        for (unsigned n = 1; n <= 2; n++) {
            struct itest_shard v[ITEST_SHARDS];
            snap_views(n, v);
            for (unsigned s = 0; s < SNAP_SHARDS; s++) {
                cut = cut && v[s].log_first > last[s] + 1;
            }
        }
        if (cut || itest_now_ms() - t0 > limit_ms) {
            return cut;
        }
        usleep(50 * 1000);
    }
}

/* Wait until node @id has applied @target on every shard; how long that took. */
static uint64_t snap_catch_up(unsigned id, const struct itest_shard target[ITEST_SHARDS],
                              uint64_t limit_ms)
{
    uint64_t t0 = itest_now_ms();
    for (;;) {
        struct itest_shard v[ITEST_SHARDS];
        snap_views(id, v);
        unsigned s = 0;
        while (s < SNAP_SHARDS && v[s].applied >= target[s].applied) {
            s++;
        }
        if (s == SNAP_SHARDS) {
            return itest_now_ms() - t0;
        }
        if (itest_now_ms() - t0 > limit_ms) {
            fprintf(stderr, "snapshots: node %u: shard %u applied %llu, not %llu, after %llu ms\n",
                    id, s, (unsigned long long)v[s].applied, (unsigned long long)target[s].applied,
                    (unsigned long long)limit_ms);
            fail();
        }
        usleep(50 * 1000);
    }
}

static void snapshots_restart_and_catch_up(void **state)
{
    (void)state;
    for (unsigned i = 0; i < SNAP_FIRST + SNAP_MORE_MAX; i++) {
        snprintf(snap_orders[i].mono, sizeof(snap_orders[i].mono), "snap-%u", i);
        snap_orders[i].amount = 100 + 7 * (uint64_t)i;
    }
    uint64_t t0 = itest_now_ms();
    assert_true(snap_run(1, SNAP_CREATE, 0, SNAP_FIRST, t0 + 60000));
    printf("itest: snapshots: %u orders created through node 1 in %llu ms\n", SNAP_FIRST,
           (unsigned long long)(itest_now_ms() - t0));
    /* Every replica applies the same log, so each passes the byte threshold as often as the
     * leader (snapshots are taken locally, never sent while everyone keeps up). */
    struct itest_shard most[ITEST_SHARDS];
    snap_survey(0, most, NULL);
    for (unsigned n = 1; n <= NODES; n++) {
        snap_catch_up(n, most, 30000);
    }
    for (unsigned n = 1; n <= NODES; n++) {
        printf("itest: snapshots: node %u took %u snapshots:", n,
               log_count(&snap, n, 0, SNAP_TAKEN));
        for (unsigned sh = 0; sh < SNAP_SHARDS; sh++) {
            unsigned taken = shard_log_count(&snap, n, 0, "marker snapshot", sh);
            printf(" %u of shard %u", taken, sh);
            if (taken < 3) {
                fprintf(stderr, "\nsnapshots: node %u took %u snapshots of shard %u, want 3\n", n,
                        taken, sh);
                fail();
            }
        }
        printf("\n");
    }

    /* (a) SIGTERM flushes node 2's store: on restart raft restores each shard's last snapshot,
     * which the store already holds, so it is kept (not rolled back to the snapshot) and the
     * node serves every order from its own replica at once. */
    struct itest_shard before[ITEST_SHARDS], after[ITEST_SHARDS];
    snap_views(2, before);
    long from = log_end(&snap, 2);
    uint64_t t1 = itest_now_ms();
    assert_true(itest_cluster_restart(&snap, 2));
    /* The stop was clean: payd logs this as its last line, after every raft group has closed
     * (a crash while closing, docs/raft.md, would skip it and the store's final sync). */
    assert_int_equal(log_count(&snap, 2, from, "node 2 stopped"), 1);
    snap_views(2, after);
    for (unsigned s = 0; s < SNAP_SHARDS; s++) {
        if (after[s].applied < before[s].applied) {
            fprintf(stderr,
                    "snapshots: node 2 shard %u restarted at applied %llu, stopped at %llu\n", s,
                    (unsigned long long)after[s].applied, (unsigned long long)before[s].applied);
            fail();
        }
    }
    /* Raft restores the snapshot at start; one "kept" line per shard (the meta group takes no
     * snapshots with this little data, and would only add one). */
    unsigned kept = log_count(&snap, 2, from, SNAP_KEPT);
    while (kept < SNAP_SHARDS && itest_now_ms() - t1 < 10000) {
        usleep(50 * 1000);
        kept = log_count(&snap, 2, from, SNAP_KEPT);
    }
    if (kept < SNAP_SHARDS) {
        fprintf(stderr, "snapshots: node 2 logged \"%s\" %u times after a clean restart, want %u\n",
                SNAP_KEPT, kept, SNAP_SHARDS);
        fail();
    }
    assert_int_equal(log_count(&snap, 2, from, SNAP_LOADED), 0);
    uint64_t t2 = itest_now_ms();
    assert_true(snap_run(2, SNAP_GET_STALE, 0, SNAP_FIRST, t2 + 30000));
    printf("itest: snapshots: node 2 restarted after SIGTERM kept its store (%u snapshots not "
           "restored) and read all %u orders from its replica in %llu ms (%llu ms after the "
           "restart)\n",
           kept, SNAP_FIRST, (unsigned long long)(itest_now_ms() - t2),
           (unsigned long long)(itest_now_ms() - t1));
    /* Node 2 is the quorum for every shard while node 3 is down: let it settle first. */
    while (!itest_all_leaders(&snap, 2)) {
        assert_true(itest_now_ms() - t1 < 30000);
        usleep(50 * 1000);
    }
    snap_survey(0, most, NULL);
    snap_catch_up(2, most, 30000);

    /* (b) SIGKILL node 3 (its store's WAL is synced only at its own snapshots: it may lose
     * what it applied since) while the others write on until their snapshots have dropped the
     * log past anything node 3 holds, so node 3 comes back through a full snapshot made for it
     * by the leader, then the log. Idle, every node's log ends at most at the commit index
     * (a few entries of slack for a barrier in flight). */
    uint64_t node3_last[ITEST_SHARDS];
    snap_survey(0, NULL, node3_last);
    from = log_end(&snap, 3);
    assert_true(itest_cluster_kill(&snap, 3));
    uint64_t t3 = itest_now_ms();
    unsigned total = SNAP_FIRST;
    /* raft_uv holds the last few messages to a peer it cannot reach and sends them when the
     * peer is back; heartbeats go on the links and do not push them out. A leader's probe sent
     * before its log was cut past node 3's end carries entries node 3 lacks, up to where the
     * log ended then, and a restarted node 3 legitimately catches up from it (seen once in
     * eighteen runs). Probes sent after the cut carry no entries (the leader sends a snapshot
     * only to a peer it has heard from). So the logs are cut twice: past node 3's end, then
     * past where they ended at the first cut, beyond anything a held probe can carry. */
    uint64_t cut_past[ITEST_SHARDS];
    memcpy(cut_past, node3_last, sizeof(cut_past));
    for (unsigned cuts = 0; cuts < 2; cuts++) {
        bool cut = false;
        while (!cut && total < SNAP_FIRST + SNAP_MORE_MAX) {
            assert_true(snap_run(1, SNAP_CREATE, total, total + SNAP_ROUND, t3 + 60000));
            total += SNAP_ROUND;
            cut = snap_logs_start_after(cut_past, 2000);
        }
        if (!cut) {
            fprintf(stderr,
                    "snapshots: after %u orders with node 3 down, a running node's raft log "
                    "still reaches back too far (cut %u of 2)\n",
                    total - SNAP_FIRST, cuts + 1);
            fail();
        }
        snap_survey(3, NULL, cut_past);
    }
    printf("itest: snapshots: %u more orders created with node 3 down in %llu ms; nodes 1 and "
           "2 then had dropped their logs past node 3's end on every shard, twice over\n",
           total - SNAP_FIRST, (unsigned long long)(itest_now_ms() - t3));
    snap_survey(3, most, NULL);
    assert_true(itest_cluster_restart(&snap, 3));
    /* Usually well under a second, but a restarted node that is taking a snapshot of its own
     * (it replays its log and crosses the byte trigger) when the leader's InstallSnapshot
     * arrives refuses it (raft: "already taking or installing snapshot"), and the leader sends
     * it again only after a leadership change or CL_INSTALL_SNAPSHOT_TIMEOUT_MS (5 s). */
    uint64_t catch_up = snap_catch_up(3, most, 60000);
    unsigned loaded = log_count(&snap, 3, from, SNAP_LOADED);
    unsigned kept3 = log_count(&snap, 3, from, SNAP_KEPT);
    printf("itest: snapshots: node 3 restarted after SIGKILL and caught up in %llu ms (%u "
           "snapshots restored, %u not restored)\n",
           (unsigned long long)catch_up, loaded, kept3);
    for (unsigned sh = 0; sh < SNAP_SHARDS; sh++) {
        if (shard_log_count(&snap, 3, from, "snapshot restore", sh) == 0) {
            fprintf(stderr,
                    "snapshots: node 3 caught up on shard %u without restoring a "
                    "snapshot, but the leader's log no longer reaches back to it\n",
                    sh);
            fail();
        }
    }
    /* Both ways of sending raft messages were used (SNAP_LINK_BYTES). */
    uint64_t on_links = 0, by_raft_uv = 0;
    for (unsigned n = 1; n <= NODES; n++) {
        struct itest_shard views[ITEST_SHARDS];
        assert_true(itest_shard_views(&snap, n, views));
        on_links += itest_raft_messages.sent_on_links;
        by_raft_uv += itest_raft_messages.sent_by_raft_uv;
    }
    printf("itest: snapshots: raft messages: %llu sent on links, %llu by raft_uv\n",
           (unsigned long long)on_links, (unsigned long long)by_raft_uv);
    assert_true(on_links > 0);
    assert_true(by_raft_uv > 0);
    uint64_t t4 = itest_now_ms();
    assert_true(snap_run(3, SNAP_GET_STALE, 0, total, t4 + 30000));
    printf("itest: snapshots: node 3 read all %u orders from its replica in %llu ms; %u shards "
           "compared: same history on every node; the case took %llu ms\n",
           total, (unsigned long long)(itest_now_ms() - t4), histories_agree(&snap),
           (unsigned long long)(itest_now_ms() - t0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writes_through_every_node),
        cmocka_unit_test(leader_kill_loses_no_acknowledged_write),
        cmocka_unit_test(cut_off_leader_refuses_reads),
        cmocka_unit_test(routed_client_rides_a_leader_kill),
    };
    const struct CMUnitTest snapshot_tests[] = {
        cmocka_unit_test(snapshots_restart_and_catch_up),
    };
    /* One cluster at a time: the two would share a 2-core machine. */
    int failed = cmocka_run_group_tests_name("cluster", tests, setup, teardown);
    failed +=
        cmocka_run_group_tests_name("cluster_snapshots", snapshot_tests, snap_setup, snap_teardown);
    return failed;
}
