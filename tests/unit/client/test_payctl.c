/* Tests for payctl, run as a program against fake_server: exit codes (0 OK, 1 error response,
 * 2 usage or connection error), what goes to stdout and stderr, the bodies the verbs build
 * (fields, key order, integer types), `call` with JSON from the argument and from stdin, secret
 * files, help texts, and argument checks.
 *
 * Ports: PAYRAFT_PORT_BASE (default 7000) + 870 for the fake, + 897 where nothing listens. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"

#ifndef PAYCTL_PATH
#error "PAYCTL_PATH must name the payctl binary under test"
#endif

#define PORT_FAKE    870u
#define PORT_REFUSED 897u
#define OUT_MAX      (256u * 1024u)

static struct fake *fake;
static char dir[64];
static char secret_path[128], admin_path[128], server[64];

static int setup(void **state)
{
    (void)state;
    fake = calloc(1, sizeof(*fake));
    snprintf(dir, sizeof(dir), "/tmp/payctl-test-XXXXXX");
    if (fake == NULL || mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(secret_path, sizeof(secret_path), "%s/app.secret", dir);
    snprintf(admin_path, sizeof(admin_path), "%s/admin.secret", dir);
    /* Surrounding white space is part of what secret files may hold. */
    FILE *f = fopen(secret_path, "w");
    fprintf(f, "  %s\n\n", FAKE_SECRET);
    fclose(f);
    f = fopen(admin_path, "w");
    fprintf(f, "%s\n", FAKE_SECRET);
    fclose(f);
    snprintf(server, sizeof(server), "127.0.0.1:%u", fake_port(PORT_FAKE));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    int rv = system(cmd);
    free(fake);
    return rv == 0 ? 0 : -1;
}

struct run {
    int exit_code;
    char out[OUT_MAX];
    char err[OUT_MAX];
};

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Run payctl with @argv (NULL-terminated, without argv[0]) and @input on stdin. */
static void run_payctl(struct run *r, const char *input, const char *const *argv)
{
    char out_path[128], err_path[128], in_path[128];
    snprintf(out_path, sizeof(out_path), "%s/out", dir);
    snprintf(err_path, sizeof(err_path), "%s/err", dir);
    snprintf(in_path, sizeof(in_path), "%s/in", dir);
    FILE *f = fopen(in_path, "w");
    assert_non_null(f);
    fputs(input != NULL ? input : "", f);
    fclose(f);
    const char *args[64];
    size_t n = 0;
    args[n++] = PAYCTL_PATH;
    for (; argv[n - 1] != NULL; n++) {
        assert_true(n < 63);
        args[n] = argv[n - 1];
    }
    args[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(in_path, O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(err, 2) < 0) {
            _exit(127);
        }
        execv(PAYCTL_PATH, (char *const *)args);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    r->exit_code = WEXITSTATUS(status);
    slurp(out_path, r->out, sizeof(r->out));
    slurp(err_path, r->err, sizeof(r->err));
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fprintf(stderr, "expected to find '%s' in:\n%s\n", needle, hay);
        fail();
    }
}

/* The body the fake saw for request @i, as msgpack to compare with @want. */
static void assert_seen_body(unsigned i, const struct rt_buf *want)
{
    assert_true(fake->seen_count > i);
    assert_int_equal(fake->seen[i].body_len, want->len);
    assert_memory_equal(fake->seen[i].body, want->data, want->len);
}

static void test_order_create_ok(void **state)
{
    (void)state;
    assert_true(fake_start(fake, fake_port(PORT_FAKE), fake_h_echo));
    struct run *r = malloc(sizeof(*r));
    const char *argv[] = {"--server",
                          server,
                          "--admin-secret-file",
                          admin_path,
                          "order.create",
                          "--app-id",
                          "shop_1",
                          "--merchant-order-no",
                          "A-1001",
                          "--amount",
                          "1999",
                          "--subject=Coffee beans",
                          "--channel",
                          "wechat",
                          "--expire-s",
                          "600",
                          NULL};
    run_payctl(r, NULL, argv);
    fake_stop(fake);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->err, "");
    assert_string_equal(r->out,
                        "{\n  \"app_id\": \"shop_1\",\n  \"merchant_order_no\": \"A-1001\",\n"
                        "  \"amount\": 1999,\n  \"subject\": \"Coffee beans\",\n"
                        "  \"channel\": \"wechat\",\n  \"expire_s\": 600\n}\n");
    assert_int_equal(fake->seen_count, 1);
    assert_true(fake->seen[0].sig_ok);
    assert_string_equal(fake->seen[0].app, "admin");
    assert_string_equal(fake->seen[0].op, "order.create");
    struct rt_buf want;
    rt_buf_init(&want, 512);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &want);
    rt_mp_write_map(&w, 6);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "shop_1");
    rt_mp_write_cstr(&w, "merchant_order_no");
    rt_mp_write_cstr(&w, "A-1001");
    rt_mp_write_cstr(&w, "amount");
    rt_mp_write_int(&w, 1999);
    rt_mp_write_cstr(&w, "subject");
    rt_mp_write_cstr(&w, "Coffee beans");
    rt_mp_write_cstr(&w, "channel");
    rt_mp_write_cstr(&w, "wechat");
    rt_mp_write_cstr(&w, "expire_s");
    rt_mp_write_int(&w, 600);
    assert_seen_body(0, &want);
    rt_buf_free(&want);
    free(r);
}

static void test_app_signing_and_json_flag(void **state)
{
    (void)state;
    assert_true(fake_start(fake, fake_port(PORT_FAKE), fake_h_echo));
    struct run *r = malloc(sizeof(*r));
    const char *argv[] = {"--server",
                          server,
                          "--app",
                          FAKE_APP,
                          "--secret-file",
                          secret_path,
                          "order.get",
                          "--merchant-order-no",
                          "A-1001",
                          "--consistency",
                          "stale",
                          "--json",
                          NULL};
    run_payctl(r, NULL, argv);
    fake_stop(fake);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->out, "{\n  \"ok\": true,\n  \"code\": \"OK\",\n  \"msg\": \"ok\",\n"
                                "  \"body\": {\n    \"merchant_order_no\": \"A-1001\",\n"
                                "    \"consistency\": \"stale\"\n  }\n}\n");
    assert_true(fake->seen[0].sig_ok); /* The secret file's white space was trimmed. */
    assert_string_equal(fake->seen[0].app, FAKE_APP);
    free(r);
}

/* app.create --public-key-file sends the file's bytes as public_key; a file that is missing,
 * not a public key or too large is a usage error and nothing is sent. */
static void test_public_key_file(void **state)
{
    (void)state;
    static const char pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
                              "-----END PUBLIC KEY-----\n";
    char good[160], wrong[160], big[160], missing[160];
    snprintf(good, sizeof(good), "%s/app.pub", dir);
    snprintf(wrong, sizeof(wrong), "%s/app.key", dir);
    snprintf(big, sizeof(big), "%s/big.pub", dir);
    snprintf(missing, sizeof(missing), "%s/none.pub", dir);
    FILE *f = fopen(good, "w");
    fputs(pem, f);
    fclose(f);
    f = fopen(wrong, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    f = fopen(big, "w");
    fputs("-----BEGIN PUBLIC KEY-----\n", f);
    for (int i = 0; i < 4100; i++) {
        fputc('A', f);
    }
    fclose(f);

    assert_true(fake_start(fake, fake_port(PORT_FAKE), fake_h_echo));
    struct run *r = malloc(sizeof(*r));
    const char *argv[] = {"--server",
                          server,
                          "--admin-secret-file",
                          admin_path,
                          "app.create",
                          "--app-id",
                          "shop_k",
                          "--name",
                          "Keyed shop",
                          "--notify-url",
                          "https://k.example/n",
                          "--public-key-file",
                          good,
                          NULL};
    run_payctl(r, NULL, argv);
    assert_int_equal(r->exit_code, 0);
    assert_int_equal(fake->seen_count, 1);
    struct rt_buf want;
    rt_buf_init(&want, 1024);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &want);
    rt_mp_write_map(&w, 5);
    rt_mp_write_cstr(&w, "app_id");
    rt_mp_write_cstr(&w, "shop_k");
    rt_mp_write_cstr(&w, "name");
    rt_mp_write_cstr(&w, "Keyed shop");
    rt_mp_write_cstr(&w, "notify_url");
    rt_mp_write_cstr(&w, "https://k.example/n");
    rt_mp_write_cstr(&w, "channels");
    rt_mp_write_array(&w, 2);
    rt_mp_write_cstr(&w, "wechat");
    rt_mp_write_cstr(&w, "alipay");
    rt_mp_write_cstr(&w, "public_key");
    rt_mp_write_cstr(&w, pem);
    assert_seen_body(0, &want);
    rt_buf_free(&want);

    const char *const bad[][2] = {{missing, "No such file"},
                                  {wrong, "a public key's PEM file"},
                                  {big, "larger than the limit"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        argv[12] = bad[i][0];
        run_payctl(r, NULL, argv);
        assert_int_equal(r->exit_code, 2);
        assert_contains(r->err, "--public-key-file");
        assert_contains(r->err, bad[i][1]);
    }
    fake_stop(fake);
    assert_int_equal(fake->seen_count, 1); /* None of the bad ones was sent. */
    free(r);
}

static void test_error_response_exit_1(void **state)
{
    (void)state;
    assert_true(fake_start(fake, fake_port(PORT_FAKE), fake_h_code));
    fake->code = RT_EINVAL;
    struct run *r = malloc(sizeof(*r));
    const char *argv[] = {"--server", server,           "--admin-secret-file",
                          admin_path, "cluster.status", NULL};
    run_payctl(r, NULL, argv);
    assert_int_equal(r->exit_code, 1);
    assert_string_equal(r->out, "");
    assert_string_equal(r->err, "INVALID_ARGUMENT: amount: must be 1..1000000000\n");
    /* With --json the response goes to stdout as well. */
    const char *argv_json[] = {"--json",   "--server",       server, "--admin-secret-file",
                               admin_path, "cluster.status", NULL};
    run_payctl(r, NULL, argv_json);
    fake_stop(fake);
    assert_int_equal(r->exit_code, 1);
    assert_string_equal(r->out, "{\n  \"ok\": false,\n  \"code\": \"INVALID_ARGUMENT\",\n"
                                "  \"msg\": \"amount: must be 1..1000000000\"\n}\n");
    assert_contains(r->err, "INVALID_ARGUMENT: ");
    free(r);
}

static void test_connection_error_exit_2(void **state)
{
    (void)state;
    struct run *r = malloc(sizeof(*r));
    char refused[64];
    snprintf(refused, sizeof(refused), "127.0.0.1:%u", fake_port(PORT_REFUSED));
    /* A short deadline: the default one (10 s) would be spent retrying, as it should be. */
    const char *argv[] = {"--server",     refused, "--admin-secret-file", admin_path,
                          "--timeout-ms", "1000",  "cluster.status",      NULL};
    run_payctl(r, NULL, argv);
    assert_int_equal(r->exit_code, 2);
    assert_string_equal(r->out, "");
    assert_contains(r->err, "could not connect to any server");
    free(r);
}

static void test_call(void **state)
{
    (void)state;
    assert_true(fake_start(fake, fake_port(PORT_FAKE), fake_h_echo));
    struct run *r = malloc(sizeof(*r));
    const char *argv[] = {"--server",
                          server,
                          "--app",
                          FAKE_APP,
                          "--secret-file",
                          secret_path,
                          "call",
                          "invoice.apply",
                          "{\"invoice_no\": \"I1\", \"order_ids\": [\"P1\", \"P2\"], "
                          "\"amount\": -3, \"title\": null, \"paper\": false}",
                          NULL};
    run_payctl(r, NULL, argv);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->out, "{\n  \"invoice_no\": \"I1\",\n  \"order_ids\": [\n    \"P1\",\n"
                                "    \"P2\"\n  ],\n  \"amount\": -3,\n  \"title\": null,\n"
                                "  \"paper\": false\n}\n");
    const char *argv_stdin[] = {"--server",  server, "--app",      FAKE_APP, "--secret-file",
                                secret_path, "call", "refund.get", "-",      NULL};
    run_payctl(r, "{\"refund_no\": \"R1\"}\n", argv_stdin);
    fake_stop(fake);
    assert_int_equal(r->exit_code, 0);
    assert_string_equal(r->out, "{\n  \"refund_no\": \"R1\"\n}\n");
    assert_int_equal(fake->seen_count, 2);
    assert_string_equal(fake->seen[0].op, "invoice.apply");
    assert_string_equal(fake->seen[1].op, "refund.get");
    free(r);
}

/* Everything refused before the network: exit 2, a message naming the problem. */
static void test_usage_errors(void **state)
{
    (void)state;
    struct run *r = malloc(sizeof(*r));
    static const struct {
        const char *argv[16];
        const char *needle;
    } cases[] = {
        {{NULL}, "usage:"},
        {{"--bogus", NULL}, "unknown option"},
        {{"order.destroy", NULL}, "unknown op"},
        {{"--server", NULL}, "--server wants a value"},
        {{"--admin-secret-file", "/nonexistent/x", "cluster.status", NULL}, "/nonexistent/x"},
        {{"cluster.status", NULL}, "sign with --app ID --secret-file F"},
        {{"--app", "a", "cluster.status", NULL}, "sign with"},
        {{"--app", "a", "--secret-file", "f", "--admin-secret-file", "f", "cluster.status", NULL},
         "either"},
        {{"--admin-secret-file", "f", "order.create", "--merchant-order-no", "A", "--amount", "1",
          "--subject", "s", "--channel", "wechat", NULL},
         "--app-id is required when signing as admin"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a", "--merchant-order-no", "A",
          "--amount", "1.5", "--subject", "s", "--channel", "wechat", NULL},
         "--amount: integer fen"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a", "--merchant-order-no", "A",
          "--amount", "0", "--subject", "s", "--channel", "wechat", NULL},
         "--amount"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a", "--merchant-order-no", "A",
          "--amount", "1000000001", "--subject", "s", "--channel", "wechat", NULL},
         "--amount"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a", "--merchant-order-no", "A",
          "--amount", "99999999999999999999999", "--subject", "s", "--channel", "wechat", NULL},
         "--amount"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a", "--merchant-order-no", "A",
          "--amount", "5", "--subject", "s", "--channel", "paypal", NULL},
         "--channel: wechat | alipay"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a", "--merchant-order-no", "A/B",
          "--amount", "5", "--subject", "s", "--channel", "wechat", NULL},
         "--merchant-order-no"},
        {{"--admin-secret-file", "f", "order.create", "--app-id", "a b", "--merchant-order-no", "A",
          "--amount", "5", "--subject", "s", "--channel", "wechat", NULL},
         "--app-id"},
        {{"--admin-secret-file", "f", "order.get", "--app-id", "a", NULL}, "exactly one of"},
        {{"--admin-secret-file", "f", "order.get", "--app-id", "a", "--order-id", "P1",
          "--merchant-order-no", "A", NULL},
         "exactly one of"},
        {{"--admin-secret-file", "f", "order.get", "--app-id", "a", "--order-id", "P1",
          "--consistency", "strong", NULL},
         "--consistency"},
        {{"--admin-secret-file", "f", "order.get", "--app-id", "a", "--order-id", "P1",
          "--order-id", "P2", NULL},
         "given twice"},
        {{"--admin-secret-file", "f", "order.close", "--app-id", "a", "--order-id", "P1",
          "--amount", "5", NULL},
         "unknown argument"},
        {{"--admin-secret-file", "f", "app.create", "--app-id", "a", "--name", "n", "--notify-url",
          "ftp://x", NULL},
         "--notify-url"},
        {{"--admin-secret-file", "f", "app.create", "--app-id", "a", "--name", "n", "--notify-url",
          "https://x", "--channels", "wechat,wechat", NULL},
         "listed twice"},
        {{"--admin-secret-file", "f", "app.create", "--app-id", "a", "--name", "n", "--notify-url",
          "https://x", "--channels", "wechat,", NULL},
         "--channels"},
        {{"--admin-secret-file", "f", "call", "order.get", NULL}, "call wants OP and a JSON body"},
        {{"--admin-secret-file", "f", "call", "Order.Get", "{}", NULL}, "OP must be"},
        {{"--admin-secret-file", "f", "call", "order.get", "[1]", NULL}, "must be a JSON object"},
        {{"--admin-secret-file", "f", "call", "order.get", "{\"amount\": 1.5}", NULL},
         "amount: 1.5 is not an integer"},
        {{"--admin-secret-file", "f", "call", "order.get", "{\"a\":", NULL}, "invalid JSON"},
        {{"--timeout-ms", "0", "cluster.status", NULL}, "--timeout-ms"},
        {{"--server", "nonsense", "--admin-secret-file", "ADMIN", "cluster.status", NULL},
         "bad --server"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[16];
        for (size_t k = 0; k < 16; k++) {
            argv[k] = cases[i].argv[k] != NULL && strcmp(cases[i].argv[k], "ADMIN") == 0
                          ? admin_path
                          : cases[i].argv[k];
        }
        run_payctl(r, NULL, argv);
        if (r->exit_code != 2) {
            fprintf(stderr, "case %zu: exit %d, stderr: %s\n", i, r->exit_code, r->err);
        }
        assert_int_equal(r->exit_code, 2);
        assert_string_equal(r->out, "");
        assert_contains(r->err, cases[i].needle);
    }
    free(r);
}

static void test_secret_files(void **state)
{
    (void)state;
    struct run *r = malloc(sizeof(*r));
    char path[160];
    snprintf(path, sizeof(path), "%s/bad.secret", dir);
    static const char *const bad[] = {"", "  \n\n", "two words\n", "one\ntwo\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        const char *argv[] = {"--server", server,           "--admin-secret-file",
                              path,       "cluster.status", NULL};
        run_payctl(r, NULL, argv);
        assert_int_equal(r->exit_code, 2);
        assert_contains(r->err, "bad.secret");
    }
    /* Too large to be a secret file. */
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 5000; i++) {
        fputc('a', f);
    }
    fclose(f);
    const char *argv[] = {"--server", server, "--admin-secret-file", path, "cluster.status", NULL};
    run_payctl(r, NULL, argv);
    assert_int_equal(r->exit_code, 2);
    assert_contains(r->err, "not a secret file");
    free(r);
}

static void test_help(void **state)
{
    (void)state;
    struct run *r = malloc(sizeof(*r));
    const char *main_help[] = {"--help", NULL};
    run_payctl(r, NULL, main_help);
    assert_int_equal(r->exit_code, 0);
    assert_contains(r->out, "usage: payctl");
    assert_contains(r->out, "order.create");
    assert_contains(r->out, "examples:");
    assert_contains(r->out, "Exit status: 0 OK, 1 error response, 2 usage or connection error");
    static const char *const verbs[] = {"cluster.status", "app.create", "app.get",
                                        "order.create",   "order.get",  "order.close"};
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        const char *argv[] = {verbs[i], "--help", NULL};
        run_payctl(r, NULL, argv);
        assert_int_equal(r->exit_code, 0);
        assert_contains(r->out, "usage: payctl [options] ");
        assert_contains(r->out, verbs[i]);
        assert_contains(r->out, "examples:");
    }
    const char *call_help[] = {"call", "--help", NULL};
    run_payctl(r, NULL, call_help);
    assert_int_equal(r->exit_code, 0);
    assert_contains(r->out, "Numbers with a fraction or an exponent are refused");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_create_ok),
        cmocka_unit_test(test_app_signing_and_json_flag),
        cmocka_unit_test(test_public_key_file),
        cmocka_unit_test(test_error_response_exit_1),
        cmocka_unit_test(test_connection_error_exit_2),
        cmocka_unit_test(test_call),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
