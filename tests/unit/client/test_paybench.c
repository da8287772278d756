/* Tests for paybench, run as a program against fake_server (fake_h_orders: a batch of requests
 * held, then answered out of order). What paybench reports is what docs/benchmarks.md is made
 * of, so its accounting is checked here rather than trusted:
 * - each reply's latency is measured from its own request's send, whatever the replies' order;
 * - --op create-get reads only orders whose create was answered (a get sent earlier may rightly
 *   find nothing: replies come in any order);
 * - a reply naming no request in flight is neither counted nor answered with a new request.
 *
 * Ports: PAYRAFT_PORT_BASE (default 7000) + 880 for the fake. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "fake_server.h"
#include "test_support.h"

#ifndef PAYBENCH_PATH
#error "PAYBENCH_PATH must name the paybench binary under test"
#endif

#define PORT_FAKE 880u
#define OUT_MAX   (64u * 1024u)

static struct fake *fake;
static char *dir;
static char secret_path[256];

static int setup(void **state)
{
    (void)state;
    fake = calloc(1, sizeof(*fake));
    dir = test_tmpdir("paybench");
    snprintf(secret_path, sizeof(secret_path), "%s/app.secret", dir);
    FILE *f = fopen(secret_path, "w");
    if (fake == NULL || f == NULL) {
        return -1;
    }
    fprintf(f, "%s\n", FAKE_SECRET);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_rmdir(dir);
    free(fake);
    return 0;
}

/* Start the fake with @handler (fake_h_orders: batches of 8 requests held @hold_ms each), run
 * paybench --json for one second against it with @flags, stop the fake. Asserts that paybench
 * exits 0; returns its stdout, malloc'd. */
static char *run_against(fake_handler handler, unsigned hold_ms, const char *flags)
{
    assert_true(fake_start(fake, fake_port(PORT_FAKE), handler));
    fake->param = 8; /* After fake_start, which clears the knobs; before paybench connects. */
    fake->hold_ms = hold_ms;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s --servers 127.0.0.1:%u --app %s --secret-file %s --connections 1 --seconds 1 "
             "--warmup 0 --json %s",
             PAYBENCH_PATH, fake_port(PORT_FAKE), FAKE_APP, secret_path, flags);
    char *out = malloc(OUT_MAX);
    assert_non_null(out);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, OUT_MAX - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    fake_stop(fake);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return out;
}

/* The number after the last "@name": in @json (the whole run's figure; each op's come first). */
static double json_last(const char *json, const char *name)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\": ", name);
    const char *at = NULL;
    for (const char *p = strstr(json, pattern); p != NULL; p = strstr(p + 1, pattern)) {
        at = p;
    }
    if (at == NULL) {
        fprintf(stderr, "no %s in: %s\n", name, json);
        fail();
    }
    return strtod(at + strlen(pattern), NULL);
}

/* Every request the fake saw was signed with the app's secret and on time. */
static void assert_all_signed(void)
{
    pthread_mutex_lock(&fake->mu);
    unsigned n = fake->seen_count;
    for (unsigned i = 0; i < n; i++) {
        assert_true(fake->seen[i].sig_ok);
        assert_true(fake->seen[i].time_ok);
    }
    pthread_mutex_unlock(&fake->mu);
    assert_true(n > 0);
}

/* Eight requests in flight, each held 30 ms, answered with the newest first: the seven older
 * ones come back after a newer request has been sent. Every request took 30 ms or more, so
 * even the median must say so (keyed by id % depth, seven in eight measured ~0 ms). */
static void latency_is_each_requests_own(void **state)
{
    (void)state;
    char *out = run_against(fake_h_orders, 30, "--depth 8");
    double ops = json_last(out, "ops");
    assert_true(ops >= 64); /* Up to ~33 batches of 8 in the second. */
    assert_true(json_last(out, "ok") == ops);
    assert_true(json_last(out, "p50_ms") >= 29.0);
    assert_true(json_last(out, "p99_ms") < 1000.0);
    assert_all_signed();
    free(out);
}

/* create-get: the gets name only orders the fake has answered as created, and none is missing;
 * each op has its own figures. */
static void create_get_reads_only_created_orders(void **state)
{
    (void)state;
    char *out = run_against(fake_h_orders, 5, "--depth 8 --op create-get");
    assert_int_equal(fake->gets_missing, 0);
    assert_true(fake->gets_found >= 64);
    assert_true(fake->order_count >= 64);
    double ops = json_last(out, "ops");
    assert_true(json_last(out, "ok") == ops);
    assert_non_null(strstr(out, "\"errors\": {}"));
    assert_non_null(strstr(out, "\"op\": \"create-get\""));
    const char *get = strstr(out, "\"order.get\": {\"ops\": ");
    const char *create = strstr(out, "\"order.create\": {\"ops\": ");
    assert_non_null(get);
    assert_non_null(create);
    double gets = strtod(get + strlen("\"order.get\": {\"ops\": "), NULL);
    double creates = strtod(create + strlen("\"order.create\": {\"ops\": "), NULL);
    assert_true(gets > 0 && creates > 0);
    assert_true(gets + creates == ops);
    assert_all_signed();
    free(out);
}

/* --stale: every get the fake saw asks for consistency "stale"; a plain create-get's never do. */
static void stale_gets_say_so(void **state)
{
    (void)state;
    const char *runs[] = {"--depth 8 --op create-get --stale", "--depth 8 --op create-get"};
    for (unsigned k = 0; k < 2; k++) {
        free(run_against(fake_h_orders, 1, runs[k]));
        unsigned gets = 0;
        for (unsigned i = 0; i < fake->seen_count; i++) {
            const struct fake_seen *seen = &fake->seen[i];
            if (strcmp(seen->op, "order.get") != 0) {
                continue;
            }
            gets++;
            bool stale = memmem(seen->body, seen->body_len,
                                "\xab"
                                "consistency"
                                "\xa5"
                                "stale",
                                18) != NULL;
            assert_true(stale == (k == 0));
        }
        assert_true(gets > 0);
    }
}

/* Two answers to ids never sent before each real one: not replies of ours, so not counted, and
 * no new request goes out for them (the requests in flight stay at the depth). */
static void replies_to_unknown_ids_are_ignored(void **state)
{
    (void)state;
    char *out = run_against(fake_h_wrong_id, 0, "--depth 4");
    double ops = json_last(out, "ops");
    assert_true(ops > 0);
    assert_true(ops <= (double)fake->requests);
    assert_true(json_last(out, "ok") == ops);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(latency_is_each_requests_own, setup, teardown),
        cmocka_unit_test_setup_teardown(create_get_reads_only_created_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_gets_say_so, setup, teardown),
        cmocka_unit_test_setup_teardown(replies_to_unknown_ids_are_ignored, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
