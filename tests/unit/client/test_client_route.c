/* Tests for payraft_client's routing (the route option) against three fake servers that each
 * answer cluster.shards with the same map (fake_h_shards): every order request reaches the fake
 * its shard's leader is at, by merchant_order_no (the app's, or the app_id the admin acts for)
 * or by order_id; nothing else is routed; without the option one connection carries everything;
 * a leader that cannot be reached costs no attempt; a leader answering UNAVAILABLE makes the
 * retry take the primary; a map that does not parse routes nothing.
 *
 * Ports: PAYRAFT_PORT_BASE (default 7000) + 860..862 for fakes, + 863 where nothing listens,
 * + 864 where connects hang. */
#include "payraft_client.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_server.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_key.h"
#include "rt_mp.h"

#define PORT_A    860u
#define PORT_B    861u
#define PORT_C    862u
#define PORT_DOWN 863u
#define PORT_HOLE 864u /* A listener whose backlog is full: connects to it hang. */
#define ORDERS    300u

static struct fake *fakes[3];
static const unsigned fake_offsets[3] = {PORT_A, PORT_B, PORT_C};

static int setup(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 3; i++) {
        fakes[i] = calloc(1, sizeof(*fakes[i]));
        if (fakes[i] == NULL) {
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 3; i++) {
        free(fakes[i]);
    }
    return 0;
}

/* Start the first @n fakes with fake_h_shards, each telling the map @ports (FAKE_MAP_SHARDS
 * shards) and answering other requests with @codes[i] (0: echo). */
static void start_fakes(unsigned n, const uint16_t *ports, const int *codes)
{
    for (unsigned i = 0; i < n; i++) {
        assert_true(fake_start(fakes[i], fake_port(fake_offsets[i]), fake_h_shards));
        fakes[i]->map_shards = FAKE_MAP_SHARDS;
        memcpy(fakes[i]->map_ports, ports, sizeof(fakes[i]->map_ports));
        fakes[i]->code = codes != NULL ? codes[i] : 0;
    }
}

static void stop_fakes(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        fake_stop(fakes[i]);
    }
}

/* A client of @app with options @o for 127.0.0.1 at the port offsets @offsets. */
static struct pr_client *client_with(const char *app, const unsigned *offsets, unsigned n,
                                     const struct pr_client_options *o)
{
    char servers[256];
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(servers + len, sizeof(servers) - len, "%s127.0.0.1:%u",
                                i > 0 ? "," : "", fake_port(offsets[i]));
    }
    struct pr_client *c = NULL;
    assert_int_equal(
        pr_client_new(servers, app, (const uint8_t *)FAKE_SECRET, strlen(FAKE_SECRET), o, &c), 0);
    return c;
}

/* client_with short backoffs and a 5 s request timeout, routing when @route. */
static struct pr_client *client_of(const char *app, const unsigned *offsets, unsigned n, bool route)
{
    struct pr_client_options o;
    pr_client_options_init(&o);
    o.backoff_initial_ms = 5;
    o.backoff_max_ms = 40;
    o.request_timeout_ms = 5000;
    o.route = route;
    return client_with(app, offsets, n, &o);
}

static void key_body(struct rt_buf *b, const char *field, const char *value, const char *app);

static void ok_call(struct pr_client *c, const char *op, const struct rt_buf *body)
{
    struct pr_response resp;
    assert_int_equal(pr_client_call(c, op, body != NULL ? body->data : NULL,
                                    body != NULL ? body->len : 0, &resp),
                     0);
    assert_true(resp.ok);
    pr_response_free(&resp);
}

/* Two calls that are not routed: the client asks for the map with the first, on the same
 * connection, so the map's answer comes before the second's and routing is on after it. Then
 * an order.close by order_id for every shard: each starts its leader's connection and, while
 * that is being made, goes through the primary (the tests count only creates and gets). On
 * 127.0.0.1 a connect is made before the answers come, so routing is at full strength after. */
static void warm_up(struct pr_client *c)
{
    ok_call(c, "app.get", NULL);
    ok_call(c, "app.get", NULL);
    struct rt_buf b;
    rt_buf_init(&b, 1024);
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        char id[RT_ID_BYTES_MAX + 1];
        rt_id_make(id, 'P', (uint16_t)s, 1, 0);
        key_body(&b, "order_id", id, NULL);
        ok_call(c, "order.close", &b);
    }
    rt_buf_free(&b);
}

/* {"merchant_order_no": mono} (and "app_id" when @app is set), or {"order_id": id}. */
static void key_body(struct rt_buf *b, const char *field, const char *value, const char *app)
{
    rt_buf_reset(b);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, b);
    rt_mp_write_map(&w, app != NULL ? 2 : 1);
    if (app != NULL) {
        rt_mp_write_cstr(&w, "app_id");
        rt_mp_write_cstr(&w, app);
    }
    rt_mp_write_cstr(&w, field);
    rt_mp_write_cstr(&w, value);
    assert_int_equal(rt_mp_writer_error(&w), 0);
}

struct tally {
    unsigned ok, failed, attempts_max, attempts_min;
};

static void tally_cb(void *arg, int status, struct pr_response *resp)
{
    struct tally *t = arg;
    if (status == 0 && resp->ok) {
        t->ok++;
        t->attempts_max = resp->attempts > t->attempts_max ? resp->attempts : t->attempts_max;
        t->attempts_min = resp->attempts < t->attempts_min ? resp->attempts : t->attempts_min;
    } else {
        t->failed++;
    }
}

/* Send ORDERS order.create as @app (app_id in the body when @body_app), pipelined, and wait. */
static struct tally create_orders(struct pr_client *c, const char *prefix, const char *body_app)
{
    struct tally t = {.attempts_min = UINT32_MAX};
    struct rt_buf b;
    rt_buf_init(&b, 1024);
    for (unsigned i = 0; i < ORDERS; i++) {
        char mono[40];
        snprintf(mono, sizeof(mono), "%s-%u", prefix, i);
        key_body(&b, "merchant_order_no", mono, body_app);
        assert_int_equal(pr_client_send(c, "order.create", b.data, b.len, tally_cb, &t), 0);
    }
    while (pr_client_pending(c) > 0) {
        assert_true(pr_client_poll(c, 5000) > 0);
    }
    rt_buf_free(&b);
    return t;
}

/* The string field @field of a recorded body, or false. */
static bool seen_field(const struct fake_seen *s, const char *field, char *out, size_t cap)
{
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, s->body, s->body_len < FAKE_BODY_KEEP ? s->body_len : FAKE_BODY_KEEP);
    uint32_t count;
    if (rt_mp_read_map(&r, &count) != 0) {
        return false;
    }
    for (uint32_t i = 0; i < count; i++) {
        const char *key, *value;
        uint32_t key_len, value_len;
        if (rt_mp_read_str(&r, &key, &key_len) != 0 || rt_mp_read_str(&r, &value, &value_len)) {
            return false;
        }
        if (rt_mp_key_is(key, key_len, field) && value_len < cap) {
            memcpy(out, value, value_len);
            out[value_len] = '\0';
            return true;
        }
    }
    return false;
}

/* The shard of a request a fake recorded (-1: not an order request with a key). */
static int seen_shard(const struct fake_seen *s, const char *client_app)
{
    char mono[64], app[64], id[64];
    if (strcmp(s->op, "order.create") != 0 && strcmp(s->op, "order.get") != 0) {
        return -1; /* warm_up's order.close went wherever the connections allowed. */
    }
    if (seen_field(s, "merchant_order_no", mono, sizeof(mono))) {
        const char *owner = seen_field(s, "app_id", app, sizeof(app)) ? app : client_app;
        char key[160];
        int n = snprintf(key, sizeof(key), "%s/%s", owner, mono);
        return rt_shard_of((const uint8_t *)key, (size_t)n, FAKE_MAP_SHARDS);
    }
    uint16_t shard;
    if (seen_field(s, "order_id", id, sizeof(id)) && rt_id_shard(id, strlen(id), 'P', &shard)) {
        return shard;
    }
    return -1;
}

/* Of the order requests fake @i recorded: how many, and how many belong to a shard whose
 * leader (by @ports) is elsewhere. */
static void count_orders(unsigned i, const uint16_t *ports, const char *client_app,
                         unsigned *orders, unsigned *misplaced)
{
    *orders = *misplaced = 0;
    for (unsigned k = 0; k < fakes[i]->seen_count; k++) {
        int shard = seen_shard(&fakes[i]->seen[k], client_app);
        if (shard < 0) {
            continue;
        }
        (*orders)++;
        *misplaced += ports[shard] != fake_port(fake_offsets[i]);
    }
}

/* Shards spread over the three fakes, round robin. */
static void spread_map(uint16_t *ports)
{
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        ports[s] = fake_port(fake_offsets[s % 3]);
    }
}

/* Three fakes telling the map @ports (spread_map's), and a client of @app for the three that
 * has learnt the map (unless @garbled: the map it is told does not parse). */
static struct pr_client *spread_client(const char *app, bool route, bool garbled, uint16_t *ports)
{
    spread_map(ports);
    start_fakes(3, ports, NULL);
    atomic_store(&fakes[0]->map_garbled, garbled);
    struct pr_client *c = client_of(app, fake_offsets, 3, route);
    warm_up(c);
    return c;
}

/* Two fakes (A, B), the one at @leader_offset leading every shard (@ports: the map),
 * answering with @codes as start_fakes; a routing client of both, A first, that has learnt the
 * map. */
static struct pr_client *one_leads_all(unsigned leader_offset, const int *codes, uint16_t *ports)
{
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        ports[s] = fake_port(leader_offset);
    }
    start_fakes(2, ports, codes);
    const unsigned servers[] = {PORT_A, PORT_B};
    struct pr_client *c = client_of(FAKE_APP, servers, 2, true);
    warm_up(c);
    return c;
}

/* Every create and every get by order_id lands on its shard's leader; app.get stays on the
 * primary; one connection per server; the map was asked for once. */
static void test_route_orders_to_their_leaders(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    struct pr_client *c = spread_client(FAKE_APP, true, false, ports);
    struct tally t = create_orders(c, "route", NULL);
    assert_int_equal(t.ok, ORDERS);
    assert_int_equal(t.attempts_max, 1);
    /* A get by order_id for every shard: the id carries it. */
    struct rt_buf b;
    rt_buf_init(&b, 1024);
    struct tally gets = {.attempts_min = UINT32_MAX};
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        char id[RT_ID_BYTES_MAX + 1];
        rt_id_make(id, 'P', (uint16_t)s, 7, 0);
        key_body(&b, "order_id", id, NULL);
        assert_int_equal(pr_client_send(c, "order.get", b.data, b.len, tally_cb, &gets), 0);
    }
    while (pr_client_pending(c) > 0) {
        assert_true(pr_client_poll(c, 5000) > 0);
    }
    assert_int_equal(gets.ok, FAKE_MAP_SHARDS);
    rt_buf_free(&b);
    pr_client_free(c);
    stop_fakes(3);
    unsigned total = 0;
    for (unsigned i = 0; i < 3; i++) {
        unsigned orders, misplaced;
        count_orders(i, ports, FAKE_APP, &orders, &misplaced);
        printf("route: fake %u: %u order requests, %u not its shards', %u connections\n", i, orders,
               misplaced, fakes[i]->conns);
        assert_int_equal(misplaced, 0);
        assert_true(orders > ORDERS / 6); /* Five or six of the 16 shards each. */
        assert_int_equal(fakes[i]->conns, 1);
        total += orders;
    }
    assert_int_equal(total, ORDERS + FAKE_MAP_SHARDS);
    assert_int_equal(fakes[0]->maps_asked, 1);
    assert_int_equal(fakes[1]->maps_asked + fakes[2]->maps_asked, 0);
    for (unsigned i = 0; i < 3; i++) {
        assert_true(fakes[i]->seen_count > 0);
        for (unsigned k = 0; k < fakes[i]->seen_count; k++) {
            assert_true(fakes[i]->seen[k].sig_ok);
        }
    }
}

/* The admin routes by the app_id it acts for, not by its own name; a body that names app_id
 * twice is routed by the first, as the server reads it (api_body_strs). */
static void test_route_admin_by_app_id(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    struct pr_client *c = spread_client("admin", true, false, ports);
    struct tally t = create_orders(c, "adm", "shop_9");
    assert_int_equal(t.ok, ORDERS);
    struct rt_buf b;
    rt_buf_init(&b, 1024);
    struct tally twice = {.attempts_min = UINT32_MAX};
    for (unsigned i = 0; i < ORDERS; i++) {
        char mono[40];
        snprintf(mono, sizeof(mono), "adm2-%u", i);
        rt_buf_reset(&b);
        struct rt_mp_writer w;
        rt_mp_writer_init(&w, &b);
        rt_mp_write_map(&w, 3);
        rt_mp_write_cstr(&w, "app_id");
        rt_mp_write_cstr(&w, "shop_9");
        rt_mp_write_cstr(&w, "merchant_order_no");
        rt_mp_write_cstr(&w, mono);
        rt_mp_write_cstr(&w, "app_id");
        rt_mp_write_cstr(&w, "shop_other");
        assert_int_equal(rt_mp_writer_error(&w), 0);
        assert_int_equal(pr_client_send(c, "order.create", b.data, b.len, tally_cb, &twice), 0);
    }
    while (pr_client_pending(c) > 0) {
        assert_true(pr_client_poll(c, 5000) > 0);
    }
    rt_buf_free(&b);
    assert_int_equal(twice.ok, ORDERS);
    pr_client_free(c);
    stop_fakes(3);
    for (unsigned i = 0; i < 3; i++) {
        unsigned orders, misplaced;
        count_orders(i, ports, "admin", &orders, &misplaced);
        assert_int_equal(misplaced, 0);
        assert_true(orders > 0);
    }
}

/* Without the option: one connection, no map request, everything on the first server. */
static void test_route_off_uses_one_connection(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    struct pr_client *c = spread_client(FAKE_APP, false, false, ports);
    struct tally t = create_orders(c, "off", NULL);
    assert_int_equal(t.ok, ORDERS);
    pr_client_free(c);
    stop_fakes(3);
    assert_int_equal(fakes[0]->conns, 1);
    assert_int_equal(fakes[1]->conns + fakes[2]->conns, 0);
    assert_int_equal(fakes[0]->maps_asked, 0);
    assert_int_equal(fakes[0]->seen_count, ORDERS + 2 + FAKE_MAP_SHARDS); /* + warm_up. */
}

/* Shards led at a server nobody listens on: their requests take the primary, and the refused
 * connection costs them no attempt. */
static void test_route_unreachable_leader_costs_nothing(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        ports[s] = fake_port(s % 2 == 0 ? PORT_A : PORT_DOWN);
    }
    start_fakes(1, ports, NULL);
    const unsigned servers[] = {PORT_A, PORT_DOWN};
    struct pr_client *c = client_of(FAKE_APP, servers, 2, true);
    warm_up(c);
    struct tally t = create_orders(c, "down", NULL);
    assert_int_equal(t.ok, ORDERS);
    assert_int_equal(t.failed, 0);
    assert_int_equal(t.attempts_max, 1);
    pr_client_free(c);
    stop_fakes(1);
    unsigned orders, misplaced;
    count_orders(0, ports, FAKE_APP, &orders, &misplaced);
    assert_int_equal(orders, ORDERS);
    assert_true(misplaced > 0); /* The down server's shards came through A. */
}

/* Shards led at a server whose connect hangs: their requests take the primary at once instead
 * of waiting for the connect (here longer than a request may take). */
static void test_route_hanging_connect_costs_nothing(void **state)
{
    (void)state;
    struct fake_hole hole;
    assert_true(fake_hole_open(&hole, fake_port(PORT_HOLE)));
    uint16_t ports[FAKE_MAP_SHARDS];
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        ports[s] = fake_port(PORT_HOLE);
    }
    start_fakes(1, ports, NULL);
    const unsigned servers[] = {PORT_A, PORT_HOLE};
    struct pr_client_options o;
    pr_client_options_init(&o);
    o.route = true;
    o.connect_timeout_ms = 3000;
    o.request_timeout_ms = 2000;
    struct pr_client *c = client_with(FAKE_APP, servers, 2, &o);
    uint64_t t0 = fake_now_ms();
    warm_up(c);
    struct tally t = create_orders(c, "hole", NULL);
    uint64_t took = fake_now_ms() - t0;
    pr_client_free(c);
    stop_fakes(1);
    fake_hole_close(&hole);
    assert_int_equal(t.ok, ORDERS);
    assert_int_equal(t.attempts_max, 1);
    assert_true(took < 1500);
}

/* The primary leads every shard and answers UNAVAILABLE (an election): the primary's own rule
 * applies, as without routing: the client moves to the next server, where the retry is
 * answered (two attempts, not three). */
static void test_route_primary_leader_unavailable_moves_on(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    const int codes[] = {RT_EUNAVAIL, 0};
    struct pr_client *c = one_leads_all(PORT_A, codes, ports);
    struct tally t = create_orders(c, "primary", NULL);
    pr_client_free(c);
    stop_fakes(2);
    assert_int_equal(t.ok, ORDERS);
    assert_int_equal(t.attempts_max, 2);
}

/* A leader that answers UNAVAILABLE to creates (an election under way): each request's retry
 * takes the primary, which answers; for a second that server is avoided (the next batch goes
 * to the primary at once), and the client asks for the map again. */
static void test_route_unavailable_leader_retries_on_primary(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    const int codes[] = {0, RT_EUNAVAIL};
    struct pr_client *c = one_leads_all(PORT_B, codes, ports);
    struct tally t = create_orders(c, "unav", NULL);
    assert_int_equal(t.ok, ORDERS);
    assert_int_equal(t.attempts_min, 2);
    assert_int_equal(t.attempts_max, 2);
    struct tally after = create_orders(c, "after", NULL);
    assert_int_equal(after.ok, ORDERS);
    assert_int_equal(after.attempts_max, 1);
    usleep(1100 * 1000);
    ok_call(c, "app.get", NULL);
    ok_call(c, "app.get", NULL);
    pr_client_free(c);
    stop_fakes(2);
    unsigned on_a, on_b, misplaced;
    count_orders(0, ports, FAKE_APP, &on_a, &misplaced);
    count_orders(1, ports, FAKE_APP, &on_b, &misplaced);
    assert_int_equal(on_b, ORDERS);
    assert_int_equal(on_a, 2 * ORDERS);
    assert_true(fakes[0]->maps_asked >= 2);
}

/* A server closing a routed connection that carries nothing (its idle limit) loses nothing: the
 * next request for its shards reconnects, and routing to it goes on at once, with no second
 * avoided and no map asked for again. */
static void test_route_idle_close_costs_nothing(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    struct pr_client *c = one_leads_all(PORT_B, NULL, ports);
    struct tally t = create_orders(c, "before", NULL);
    assert_int_equal(t.ok, ORDERS);
    assert_int_equal(t.attempts_max, 1);
    /* The leader answers one more request, then closes; the client reads the close while it
     * waits for an answer from the primary. */
    struct rt_buf b;
    rt_buf_init(&b, 1024);
    char id[RT_ID_BYTES_MAX + 1];
    rt_id_make(id, 'P', 0, 1, 0);
    key_body(&b, "order_id", id, NULL);
    atomic_store(&fakes[1]->close_next, true);
    ok_call(c, "order.close", &b);
    assert_true(fake_wait_closes(fakes[1], 1, 5000));
    ok_call(c, "app.get", NULL);
    assert_false(atomic_load(&fakes[1]->close_next)); /* The close happened. */
    assert_int_equal(fake_conns(fakes[1]), 1);
    /* One more order.close goes through the primary while the connection is made again. */
    ok_call(c, "order.close", &b);
    rt_buf_free(&b);
    struct tally after = create_orders(c, "after", NULL);
    assert_int_equal(after.ok, ORDERS);
    assert_int_equal(after.attempts_max, 1);
    pr_client_free(c);
    stop_fakes(2);
    unsigned on_a, on_b, misplaced;
    count_orders(0, ports, FAKE_APP, &on_a, &misplaced);
    count_orders(1, ports, FAKE_APP, &on_b, &misplaced);
    printf("idle close: %u order requests on the primary, %u on the leader, %u connections\n", on_a,
           on_b, fakes[1]->conns);
    assert_int_equal(fakes[1]->conns, 2);
    assert_int_equal(on_b, 2 * ORDERS); /* Both batches, each whole, on the leader. */
    assert_int_equal(fakes[0]->maps_asked, 1);
}

/* A map request the server refuses with an answer that asking again will not change (here
 * FORBIDDEN) is asked again at the refresh interval, not every ROUTE_RETRY_MS; requests go on
 * through the primary meanwhile. */
static void test_route_map_refused_waits_for_refresh(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    spread_map(ports);
    start_fakes(1, ports, NULL);
    atomic_store(&fakes[0]->map_code, RT_EFORBIDDEN);
    const unsigned servers[] = {PORT_A};
    struct pr_client *c = client_of(FAKE_APP, servers, 1, true);
    struct rt_buf b;
    rt_buf_init(&b, 1024);
    key_body(&b, "merchant_order_no", "refused-1", NULL);
    uint64_t until = fake_now_ms() + 2500; /* Past two retry intervals, short of a refresh. */
    unsigned calls = 0;
    while (fake_now_ms() < until) {
        ok_call(c, "order.create", &b);
        calls++;
        usleep(20 * 1000);
    }
    rt_buf_free(&b);
    pr_client_free(c);
    stop_fakes(1);
    printf("map refused: %u calls, %u map requests\n", calls, fakes[0]->maps_asked);
    assert_true(calls > 20);
    assert_int_equal(fakes[0]->maps_asked, 1);
}

/* A map the client cannot read routes nothing: everything goes to the primary. */
static void test_route_garbled_map_routes_nothing(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    struct pr_client *c = spread_client(FAKE_APP, true, true, ports);
    struct tally t = create_orders(c, "garbled", NULL);
    assert_int_equal(t.ok, ORDERS);
    pr_client_free(c);
    stop_fakes(3);
    assert_true(fakes[0]->maps_asked >= 1);
    assert_int_equal(fakes[1]->conns + fakes[2]->conns, 0);
}

/* pr_client_shard_map reads the map as routing does: each shard's leader as an index into the
 * client's own list; a map larger than the caller's room, or one that does not parse, is an
 * error. */
static void test_shard_map_for_callers(void **state)
{
    (void)state;
    uint16_t ports[FAKE_MAP_SHARDS];
    spread_map(ports);
    ports[5] = 0;                    /* No leader known. */
    ports[6] = fake_port(PORT_DOWN); /* A leader the list does not name. */
    start_fakes(3, ports, NULL);
    struct pr_client *c = client_of(FAKE_APP, fake_offsets, 3, false);
    int leaders[PR_SHARDS_MAX];
    unsigned count = 0;
    assert_int_equal(pr_client_shard_map(c, &count, leaders, PR_SHARDS_MAX), 0);
    assert_int_equal(count, FAKE_MAP_SHARDS);
    for (unsigned s = 0; s < FAKE_MAP_SHARDS; s++) {
        assert_int_equal(leaders[s], s == 5 || s == 6 ? -1 : (int)(s % 3));
    }
    assert_int_equal(pr_client_shard_map(c, &count, leaders, FAKE_MAP_SHARDS - 1), PR_ETOOLARGE);
    atomic_store(&fakes[0]->map_garbled, true);
    assert_int_equal(pr_client_shard_map(c, &count, leaders, PR_SHARDS_MAX), PR_EPROTO);
    assert_int_equal(pr_client_shard_map(c, NULL, leaders, PR_SHARDS_MAX), PR_EINVAL);
    pr_client_free(c);
    stop_fakes(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_orders_to_their_leaders),
        cmocka_unit_test(test_route_admin_by_app_id),
        cmocka_unit_test(test_route_off_uses_one_connection),
        cmocka_unit_test(test_route_unreachable_leader_costs_nothing),
        cmocka_unit_test(test_route_unavailable_leader_retries_on_primary),
        cmocka_unit_test(test_route_hanging_connect_costs_nothing),
        cmocka_unit_test(test_route_primary_leader_unavailable_moves_on),
        cmocka_unit_test(test_route_idle_close_costs_nothing),
        cmocka_unit_test(test_route_map_refused_waits_for_refresh),
        cmocka_unit_test(test_route_garbled_map_routes_nothing),
        cmocka_unit_test(test_shard_map_for_callers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
