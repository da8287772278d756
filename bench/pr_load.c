/* pr_load: order.create load through the C client library (api/client/payraft_client.h), as an
 * application that links it sends it: one client, N requests in flight, with or without the
 * library's routing. paybench measures the cluster with its own connections; this measures
 * what a user of the library gets, and what its route option changes.
 *
 *   pr_load --servers H:P[,H:P..] --app ID --secret-file F [--inflight N] [--seconds S]
 *           [--warmup S] [--route]
 *
 * Every order number is unique to the run (a random prefix). Prints orders/s (answered OK per
 * second after the warm-up), the answers that were not OK (the first one's code), the requests
 * still in flight at the end, the mean attempts per order and the client's CPU time. Prints
 * figures, asserts nothing; exits 0 unless it could not run at all. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "payraft_client.h"
#include "rt_buf.h"
#include "rt_clock.h"
#include "rt_mp.h"
#include "rt_secret.h"

#define LOAD_INFLIGHT_MAX 65536u
#define LOAD_SECONDS_MAX  3600u

struct load {
    struct pr_client *client;
    uint64_t measure_from_ms, end_ms;
    bool stopping;       /* Past the end: what is still in flight is canceled, not counted. */
    uint64_t next_order; /* Orders sent so far: the number of the next. */
    char prefix[24];     /* The run's merchant order number prefix. */
    uint64_t ok, not_ok, attempts, failures;
    char first_failure[64];
};

static void load_done(void *arg, int status, struct pr_response *resp)
{
    struct load *l = arg;
    uint64_t now = rt_monotonic_ms();
    if (l->stopping || now < l->measure_from_ms || now >= l->end_ms) {
        return; /* Warm-up, the last poll's overrun, or canceled at the end. */
    }
    if (status == 0 && resp->ok) {
        l->ok++;
        l->attempts += resp->attempts;
        return;
    }
    if (status != 0) {
        l->failures++;
    } else {
        l->not_ok++;
    }
    if (l->first_failure[0] == '\0') {
        snprintf(l->first_failure, sizeof(l->first_failure), "%s",
                 status != 0 ? pr_strerror(status) : resp->code);
    }
}

/* Queue one order.create. 0, or the library's error. */
static int load_send(struct load *l, struct rt_buf *body)
{
    char mono[64];
    snprintf(mono, sizeof(mono), "%s-%" PRIu64, l->prefix, l->next_order++);
    rt_buf_reset(body);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, body);
    rt_mp_write_map(&w, 4);
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, mono);
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_uint(&w, 1000 + l->next_order % 1000);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "pr_load");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, "alipay");
    if (rt_mp_writer_error(&w) != 0) {
        return PR_EINTERNAL;
    }
    return pr_client_send(l->client, "order.create", body->data, body->len, load_done, l);
}

static int usage(void)
{
    fprintf(stderr, "usage: pr_load --servers H:P[,H:P..] --app ID --secret-file F "
                    "[--inflight N (1..65536, 512)] [--seconds S (1..3600, 10)] "
                    "[--warmup S (0..3600, 1)] [--route]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *servers = NULL, *app = NULL, *secret_file = NULL;
    unsigned inflight = 512, seconds = 10, warmup = 1;
    bool route = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--route") == 0) {
            route = true;
            continue;
        }
        if (value == NULL) {
            return usage();
        }
        i++;
        if (strcmp(arg, "--servers") == 0) {
            servers = value;
        } else if (strcmp(arg, "--app") == 0) {
            app = value;
        } else if (strcmp(arg, "--secret-file") == 0) {
            secret_file = value;
        } else if (strcmp(arg, "--inflight") == 0) {
            if (rt_uint_parse(value, 1, LOAD_INFLIGHT_MAX, &inflight) != 0) {
                return usage();
            }
        } else if (strcmp(arg, "--seconds") == 0) {
            if (rt_uint_parse(value, 1, LOAD_SECONDS_MAX, &seconds) != 0) {
                return usage();
            }
        } else if (strcmp(arg, "--warmup") == 0) {
            if (rt_uint_parse(value, 0, LOAD_SECONDS_MAX, &warmup) != 0) {
                return usage();
            }
        } else {
            return usage();
        }
    }
    if (servers == NULL || app == NULL || secret_file == NULL) {
        fprintf(stderr, "pr_load: need --servers, --app and --secret-file\n");
        return usage();
    }
    uint8_t secret[PR_SECRET_BYTES_MAX];
    size_t secret_len = 0;
    char why[RT_SECRET_WHY_BYTES];
    if (rt_secret_file_read(secret_file, 1, sizeof(secret), secret, &secret_len, why,
                            sizeof(why)) != 0) {
        fprintf(stderr, "pr_load: %s\n", why);
        return 2;
    }
    struct pr_client_options opts;
    pr_client_options_init(&opts);
    opts.max_inflight = inflight;
    opts.route = route;
    struct load l = {0};
    int rv = pr_client_new(servers, app, secret, secret_len, &opts, &l.client);
    explicit_bzero(secret, sizeof(secret));
    if (rv != 0) {
        fprintf(stderr, "pr_load: %s\n", pr_strerror(rv));
        return 1;
    }
    uint32_t run;
    if (getrandom(&run, sizeof(run), 0) != (ssize_t)sizeof(run)) {
        fprintf(stderr, "pr_load: no random run id\n");
        return 1;
    }
    snprintf(l.prefix, sizeof(l.prefix), "prl%08" PRIx32, run);
    struct rt_buf body;
    rt_buf_init(&body, 4096);
    uint64_t start = rt_monotonic_ms();
    l.measure_from_ms = start + (uint64_t)warmup * 1000u;
    l.end_ms = l.measure_from_ms + (uint64_t)seconds * 1000u;
    double cpu_at_measure = -1;
    while (rt_monotonic_ms() < l.end_ms) {
        while (pr_client_pending(l.client) < inflight) {
            rv = load_send(&l, &body);
            if (rv != 0) {
                fprintf(stderr, "pr_load: send: %s\n", pr_strerror(rv));
                return 1;
            }
        }
        if (cpu_at_measure < 0 && rt_monotonic_ms() >= l.measure_from_ms) {
            cpu_at_measure = rt_process_cpu_seconds();
        }
        rv = pr_client_poll(l.client, 100);
        if (rv < 0) {
            fprintf(stderr, "pr_load: poll: %s\n", pr_strerror(rv));
            return 1;
        }
    }
    double cpu = rt_process_cpu_seconds() - (cpu_at_measure < 0 ? 0 : cpu_at_measure);
    unsigned unfinished = pr_client_pending(l.client);
    l.stopping = true;
    pr_client_free(l.client); /* Requests still in flight are canceled: not counted. */
    rt_buf_free(&body);
    printf("pr_load: %u in flight, %s, %u s after %u s of warm-up\n", inflight,
           route ? "routed" : "not routed", seconds, warmup);
    printf("  %.0f orders/s (%" PRIu64 " OK), %.3f attempts per order\n",
           (double)l.ok / (double)seconds, l.ok,
           l.ok > 0 ? (double)l.attempts / (double)l.ok : 0.0);
    printf("  not OK: %" PRIu64 " answered, %" PRIu64 " failed%s%s; %u still in flight at the end "
           "(canceled, not counted)\n",
           l.not_ok, l.failures, l.first_failure[0] != '\0' ? "; first: " : "", l.first_failure,
           unfinished);
    printf("  client cpu: %.2f s (%.0f%% of one core)\n", cpu, 100.0 * cpu / (double)seconds);
    return 0;
}
