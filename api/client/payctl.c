/* payctl: Payraft's command-line client.
 *
 *   payctl [--server H:P[,H:P..]] [--app ID --secret-file F | --admin-secret-file F] [--json]
 *          [--timeout-ms N] <op> [--field value ...]
 *   payctl ... call OP 'JSON body'
 *
 * Exit codes (CONTRACT): 0 the server answered OK; 1 it answered with an error code; 2 usage
 * error, or no answer could be had (connection, timeout). Errors go to stderr.
 *
 * Every argument is checked here against the same rules the server applies (lengths, character
 * sets, integer ranges), so a typo fails at once with a message naming the flag; the server stays
 * the authority and checks everything again.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payraft_client.h"
#include "pr_json.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_mp.h"
#include "rt_secret.h"

#define EXIT_OK       0
#define EXIT_RESPONSE 1 /* The server answered with an error code. */
#define EXIT_USAGE    2 /* Bad arguments, or no answer (connection, timeout). */

/* File paths given on the command line. */
#define CTL_PATH_BYTES_MAX 4096u
/* The longest `--flag` name we print in help. */
#define CTL_FLAG_BYTES_MAX 32u
/* JSON printed for one response: a 1 MiB body of control characters escapes to 6 MiB. */
#define CTL_OUT_BYTES_MAX (8u * 1024u * 1024u)
/* Printed indent of response JSON. */
#define CTL_JSON_INDENT 2u
/* Field values: no v1 field is longer than a 4 KiB public key. */
#define CTL_VALUE_BYTES_MAX 4096u
/* act_app.h: ACT_APP_PUBLIC_KEY_BYTES_MAX. A file field's contents are read into a value
 * buffer, so no file field may be longer than a value. */
#define CTL_PUBLIC_KEY_BYTES_MAX 4096u
static_assert(CTL_PUBLIC_KEY_BYTES_MAX <= CTL_VALUE_BYTES_MAX, "a public key fits a value");
/* Fields one verb takes. */
#define CTL_FIELDS_MAX 12u
/* PAYRAFT_PORT_BASE bounds, as scripts/cluster.sh checks them. */
#define CTL_PORT_BASE_MIN     1024u
#define CTL_PORT_BASE_MAX     64000u
#define CTL_PORT_BASE_DEFAULT 7000u
/* Node 1's API port: BASE + 100 + 1 (CONTRACT.md, local cluster). */
#define CTL_API_PORT_OFFSET 101u
/* --timeout-ms bounds: the library's request_timeout_ms range. */
#define CTL_TIMEOUT_MS_MAX 3600000u
/* Amount bounds: 1 fen .. RT_ORDER_AMOUNT_MAX (10 million yuan). */
#define CTL_AMOUNT_MAX 1000000000LL
/* Order expiry bounds (rt_limits.h: RT_ORDER_EXPIRE_S_MIN..MAX). */
#define CTL_EXPIRE_S_MIN 60LL
#define CTL_EXPIRE_S_MAX (7LL * 24 * 3600)

/* ---- Field rules ---- */

static bool is_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* CONTRACT.md: app_id is 1-32 of [A-Za-z0-9_-]; ids handed out by the platform use the same
 * alphabet. */
static bool check_id(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(v[i]) && v[i] != '_' && v[i] != '-') {
            return false;
        }
    }
    return len >= 1;
}

/* act_order.h: merchant_order_no is WeChat's out_trade_no alphabet plus '.'. */
static bool check_mono(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(v[i]) && strchr("_-|*@.", v[i]) == NULL) {
            return false;
        }
    }
    return len >= 1;
}

/* Free text (subject, name, attach): UTF-8 without control characters. */
static bool check_text(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            return false;
        }
    }
    return rt_utf8_valid(v, len);
}

/* act_order.h: printable ASCII without spaces, http:// or https:// and at least a host byte. */
static bool check_url(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (v[i] <= 0x20 || v[i] >= 0x7f) {
            return false;
        }
    }
    return (len > 7 && strncmp(v, "http://", 7) == 0) ||
           (len > 8 && strncmp(v, "https://", 8) == 0);
}

static bool check_channel(const char *v, size_t len)
{
    return (len == 6 && memcmp(v, "wechat", 6) == 0) || (len == 6 && memcmp(v, "alipay", 6) == 0);
}

static bool check_currency(const char *v, size_t len)
{
    return len == 3 && v[0] >= 'A' && v[0] <= 'Z' && v[1] >= 'A' && v[1] <= 'Z' && v[2] >= 'A' &&
           v[2] <= 'Z';
}

/* A public key in PEM (act_app.h: the node parses it; this only catches the wrong file):
 * "-----BEGIN PUBLIC KEY-----", then printable ASCII and line breaks only. */
static bool check_public_key_pem(const char *v, size_t len)
{
    static const char head[] = "-----BEGIN PUBLIC KEY-----";
    if (len < sizeof(head) - 1 || memcmp(v, head, sizeof(head) - 1) != 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((v[i] < 0x20 || v[i] > 0x7e) && v[i] != '\n' && v[i] != '\r') {
            return false;
        }
    }
    return true;
}

static bool check_consistency(const char *v, size_t len)
{
    return len == 5 && memcmp(v, "stale", 5) == 0;
}

/* ---- Verbs ---- */

enum field_kind {
    FK_STR,  /* A str. */
    FK_INT,  /* An integer in [min, max]. */
    FK_LIST, /* Comma-separated strs, each passing check, 1..len_max items, no repeats. */
    FK_FILE, /* A file's path; its contents (1..len_max bytes, passing check) are the str. */
};

/* Field flags. */
#define F_REQUIRED       1u /* Always required. */
#define F_ADMIN_REQUIRED 2u /* Required when signing as admin (admin acts for this app). */
#define F_KEY            4u /* One of the order's keys: exactly one of them is required. */

struct field {
    const char *flag; /* "--merchant-order-no" */
    const char *key;  /* "merchant_order_no" in the body. */
    enum field_kind kind;
    uint32_t len_max; /* FK_STR, FK_FILE: bytes (min 1, or 0 where empty is allowed); FK_LIST:
                         items. */
    int64_t min, max; /* FK_INT. */
    bool (*check)(const char *v, size_t len); /* FK_STR and FK_LIST items. */
    const char *rule;                         /* For help and errors. */
    unsigned flags;
    const char *list_default; /* FK_LIST: used when the flag is absent (NULL: none). */
};

struct verb {
    const char *op;
    const char *summary;
    const char *usage;    /* After "payctl [options] ". */
    const char *examples; /* Lines, each ending in '\n'. */
    const struct field *fields;
    unsigned field_count;
};

#define F_APP_ID_FOR_ADMIN                                                                         \
    {                                                                                              \
        "--app-id", "app_id", FK_STR, 32, 0, 0, check_id,                                          \
            "1-32 of [A-Za-z0-9_-]; the app an admin acts for", F_ADMIN_REQUIRED, NULL             \
    }
#define F_ORDER_ID                                                                                 \
    {                                                                                              \
        "--order-id", "order_id", FK_STR, 32, 0, 0, check_id, "1-32 of [A-Za-z0-9_-]", F_KEY, NULL \
    }
#define F_MONO_KEY                                                                                 \
    {                                                                                              \
        "--merchant-order-no", "merchant_order_no", FK_STR, 64, 0, 0, check_mono,                  \
            "1-64 of [A-Za-z0-9] and _-|*@.", F_KEY, NULL                                          \
    }

static const struct field fields_app_create[] = {
    {"--app-id", "app_id", FK_STR, 32, 0, 0, check_id, "1-32 of [A-Za-z0-9_-], not admin",
     F_REQUIRED, NULL},
    {"--name", "name", FK_STR, 64, 0, 0, check_text, "1-64 bytes of text", F_REQUIRED, NULL},
    {"--notify-url", "notify_url", FK_STR, 256, 0, 0, check_url,
     "http:// or https:// URL, at most 256 bytes", F_REQUIRED, NULL},
    {"--channels", "channels", FK_LIST, 2, 0, 0, check_channel,
     "comma-separated wechat,alipay (default both)", 0, "wechat,alipay"},
    {"--public-key-file", "public_key", FK_FILE, CTL_PUBLIC_KEY_BYTES_MAX, 0, 0,
     check_public_key_pem,
     "a public key's PEM file (Ed25519, or RSA of 2048-4096 bits), at most 4096 bytes", 0, NULL},
};

static const struct field fields_app_get[] = {
    {"--app-id", "app_id", FK_STR, 32, 0, 0, check_id, "1-32 of [A-Za-z0-9_-]", F_REQUIRED, NULL},
};

static const struct field fields_order_create[] = {
    F_APP_ID_FOR_ADMIN,
    {"--merchant-order-no", "merchant_order_no", FK_STR, 64, 0, 0, check_mono,
     "1-64 of [A-Za-z0-9] and _-|*@.; your idempotency key", F_REQUIRED, NULL},
    {"--amount", "amount", FK_INT, 0, 1, CTL_AMOUNT_MAX, NULL, "integer fen, 1..1000000000",
     F_REQUIRED, NULL},
    {"--currency", "currency", FK_STR, 3, 0, 0, check_currency, "3 uppercase letters (CNY)", 0,
     NULL},
    {"--subject", "subject", FK_STR, 128, 0, 0, check_text, "1-128 bytes of text", F_REQUIRED,
     NULL},
    {"--channel", "channel", FK_STR, 6, 0, 0, check_channel, "wechat | alipay", F_REQUIRED, NULL},
    {"--expire-s", "expire_s", FK_INT, 0, CTL_EXPIRE_S_MIN, CTL_EXPIRE_S_MAX, NULL,
     "seconds, 60..604800 (default 1800)", 0, NULL},
    {"--notify-url", "notify_url", FK_STR, 256, 0, 0, check_url,
     "http:// or https:// URL (default: the app's)", 0, NULL},
    {"--attach", "attach", FK_STR, 127, 0, 0, check_text, "up to 127 bytes of text, echoed back", 0,
     NULL},
};

static const struct field fields_order_get[] = {
    F_APP_ID_FOR_ADMIN,
    F_ORDER_ID,
    F_MONO_KEY,
    {"--consistency", "consistency", FK_STR, 5, 0, 0, check_consistency,
     "stale: read a follower's copy (faster, may lag)", 0, NULL},
};

static const struct field fields_order_close[] = {
    F_APP_ID_FOR_ADMIN,
    F_ORDER_ID,
    F_MONO_KEY,
};

#define VERB_FIELDS(a) a, (unsigned)(sizeof(a) / sizeof((a)[0]))

static const struct verb verbs[] = {
    {"cluster.status", "the cluster's nodes and shards (admin)", "cluster.status",
     "  payctl --admin-secret-file run/cluster/admin.secret cluster.status\n", NULL, 0},
    {"app.create", "register an app; prints its secret once (admin)",
     "app.create --app-id ID --name NAME --notify-url URL [--channels wechat,alipay]\n"
     "       [--public-key-file PEM]",
     "  payctl --admin-secret-file run/cluster/admin.secret app.create --app-id shop1 \\\n"
     "      --name 'Shop One' --notify-url https://shop1.example/notify\n",
     VERB_FIELDS(fields_app_create)},
    {"app.get", "an app, without its secret (admin, or the app itself)", "app.get --app-id ID",
     "  payctl --admin-secret-file run/cluster/admin.secret app.get --app-id shop1\n",
     VERB_FIELDS(fields_app_get)},
    {"order.create", "create a pay order (idempotent by --merchant-order-no)",
     "order.create --merchant-order-no N --amount FEN --subject S --channel wechat|alipay\n"
     "       [--currency CNY] [--expire-s S] [--notify-url URL] [--attach S] [--app-id ID]",
     "  payctl --app shop1 --secret-file shop1.secret order.create --merchant-order-no A1001 \\\n"
     "      --amount 1999 --subject 'Coffee beans' --channel wechat\n"
     "  payctl --admin-secret-file run/cluster/admin.secret order.create --app-id shop1 \\\n"
     "      --merchant-order-no A1002 --amount 500 --subject Tea --channel alipay\n",
     VERB_FIELDS(fields_order_create)},
    {"order.get", "read an order",
     "order.get (--order-id ID | --merchant-order-no N) [--consistency stale] [--app-id ID]",
     "  payctl --app shop1 --secret-file shop1.secret order.get --merchant-order-no A1001\n"
     "  payctl --app shop1 --secret-file shop1.secret order.get --order-id P0a1b2c3 \\\n"
     "      --consistency stale\n",
     VERB_FIELDS(fields_order_get)},
    {"order.close", "close an order that is still WAITING (idempotent)",
     "order.close (--order-id ID | --merchant-order-no N) [--app-id ID]",
     "  payctl --app shop1 --secret-file shop1.secret order.close --merchant-order-no A1001\n",
     VERB_FIELDS(fields_order_close)},
};

#define VERB_COUNT (sizeof(verbs) / sizeof(verbs[0]))

/* ---- Help ---- */

static void print_main_help(FILE *f)
{
    fprintf(
        f,
        "payctl: Payraft's command-line client.\n"
        "\n"
        "usage: payctl [options] <op> [--field value ...]\n"
        "       payctl [options] call OP 'JSON body'    (any operation; '-' reads stdin)\n"
        "       payctl <op> --help\n"
        "\n"
        "options (before or after the op):\n"
        "  --server H:P[,H:P..]    nodes to try in turn (default 127.0.0.1:PAYRAFT_PORT_BASE+101,\n"
        "                          127.0.0.1:7101 when PAYRAFT_PORT_BASE is unset)\n"
        "  --app ID --secret-file F   sign as app ID with the secret in file F\n"
        "  --admin-secret-file F   sign as the admin (app \"admin\")\n"
        "  --json                  print the whole response {ok, code, msg, body} as JSON\n"
        "  --timeout-ms N          give up after N ms, retries included (default 10000)\n"
        "  -h, --help              this text\n"
        "A secret file holds the secret on one line (printable ASCII, no spaces, 1..1024\n"
        "characters); surrounding white space is ignored.\n"
        "\n"
        "ops:\n");
    fprintf(f, "  %-16s %s\n", "call", "send any operation with a JSON body");
    for (size_t i = 0; i < VERB_COUNT; i++) {
        fprintf(f, "  %-16s %s\n", verbs[i].op, verbs[i].summary);
    }
    fprintf(f,
            "\n"
            "output: the response body as JSON on stdout; on an error response, CODE: message\n"
            "on stderr. Exit status: 0 OK, 1 error response, 2 usage or connection error.\n"
            "\n"
            "examples:\n"
            "  payctl --admin-secret-file run/cluster/admin.secret cluster.status\n"
            "  payctl --app shop1 --secret-file shop1.secret order.get --merchant-order-no A1001\n"
            "  payctl --app shop1 --secret-file shop1.secret call refund.get '{\"refund_no\": "
            "\"R1\"}'\n");
}

static void print_call_help(FILE *f)
{
    fprintf(f,
            "usage: payctl [options] call OP 'JSON body'\n"
            "\n"
            "Send operation OP (1-48 of [a-z_.]) with the JSON object as its body: objects become\n"
            "maps, arrays arrays, strings strings, integers integers (-2^63..2^63-1), true, false\n"
            "and null themselves. Numbers with a fraction or an exponent are refused (amounts are\n"
            "integers in fen). At most 1 MiB of JSON, nested at most 16 deep. '-' reads the body\n"
            "from stdin.\n"
            "\n"
            "examples:\n"
            "  payctl --app shop1 --secret-file shop1.secret call order.refund \\\n"
            "      '{\"merchant_order_no\": \"A1001\", \"refund_no\": \"R1\", \"amount\": 500}'\n"
            "  echo '{}' | payctl --admin-secret-file run/cluster/admin.secret call cluster.status "
            "-\n");
}

static void print_verb_help(FILE *f, const struct verb *v)
{
    fprintf(f, "payctl %s: %s\n\nusage: payctl [options] %s\n", v->op, v->summary, v->usage);
    if (v->field_count > 0) {
        fprintf(f, "\nfields:\n");
    }
    for (unsigned i = 0; i < v->field_count; i++) {
        const struct field *fd = &v->fields[i];
        const char *req = (fd->flags & F_REQUIRED)         ? " (required)"
                          : (fd->flags & F_ADMIN_REQUIRED) ? " (required when signing as admin)"
                          : (fd->flags & F_KEY)            ? " (this or the other key)"
                                                           : "";
        fprintf(f, "  %-22s %s%s\n", fd->flag, fd->rule, req);
    }
    fprintf(f, "\nexamples:\n%s", v->examples);
}

/* ---- Small helpers ---- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("payctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (payctl --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* Parse a decimal integer in [min, max]: an optional '-', digits, nothing else. */
static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    size_t len = strnlen(s, 24);
    if (len == 0 || len > 20) {
        return false;
    }
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == len) {
        return false;
    }
    for (size_t j = i; j < len; j++) {
        if (s[j] < '0' || s[j] > '9') {
            return false;
        }
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end != s + len || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Print @s to @f with control characters shown as '?': server text must not steer the
 * terminal. */
static void print_sanitized(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        fputc(ch < 0x20 || ch == 0x7f ? '?' : ch, f);
    }
}

/* ---- Options ---- */

struct options {
    const char *server; /* NULL: the default. */
    const char *app;    /* With secret_file. */
    const char *secret_file;
    const char *admin_secret_file;
    bool json;
    bool help;
    int64_t timeout_ms; /* 0: the library's default. */
};

/* If argv[*i] is option @name, take its value ("--name value" or "--name=value") into *value and
 * advance *i past it. Returns 1 if it was, 0 if not, or EXIT_USAGE negated if the value is
 * missing. */
static int take_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        return -usage_error("%s wants a value", name);
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

/* Try argv[*i] as a global option. 1 if it was one, 0 if not, -EXIT_USAGE on a bad one. */
static int global_option(int argc, char **argv, int *i, struct options *o)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "--json") == 0) {
        o->json = true;
        return 1;
    }
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        o->help = true;
        return 1;
    }
    static const char *const names[] = {"--server", "--app", "--secret-file", "--admin-secret-file",
                                        "--timeout-ms"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        const char *value = NULL;
        int rv = take_value(argc, argv, i, names[k], &value);
        if (rv <= 0) {
            if (rv < 0) {
                return rv;
            }
            continue;
        }
        if (strnlen(value, CTL_PATH_BYTES_MAX + 1) > CTL_PATH_BYTES_MAX) {
            return -usage_error("%s: longer than %u bytes", names[k], CTL_PATH_BYTES_MAX);
        }
        switch (k) {
        case 0:
            o->server = value;
            break;
        case 1:
            o->app = value;
            break;
        case 2:
            o->secret_file = value;
            break;
        case 3:
            o->admin_secret_file = value;
            break;
        default:
            if (!parse_int(value, 1, CTL_TIMEOUT_MS_MAX, &o->timeout_ms)) {
                return -usage_error("--timeout-ms wants an integer from 1 to %u",
                                    CTL_TIMEOUT_MS_MAX);
            }
            break;
        }
        return 1;
    }
    return 0;
}

/* ---- Building bodies ---- */

/* Write list @value ("a,b") as an array of strs, each checked by @fd. */
static int write_list(struct rt_mp_writer *w, const struct field *fd, const char *value)
{
    const char *items[CTL_FIELDS_MAX];
    size_t lens[CTL_FIELDS_MAX];
    uint32_t n = 0;
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n == fd->len_max || n == CTL_FIELDS_MAX || !fd->check(p, len)) {
            return usage_error("%s: %s", fd->flag, fd->rule);
        }
        for (uint32_t k = 0; k < n; k++) {
            if (lens[k] == len && memcmp(items[k], p, len) == 0) {
                return usage_error("%s: %.*s is listed twice", fd->flag, (int)len, p);
            }
        }
        items[n] = p;
        lens[n++] = len;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    rt_mp_write_array(w, n);
    for (uint32_t k = 0; k < n; k++) {
        rt_mp_write_str(w, items[k], lens[k]);
    }
    return EXIT_OK;
}

/* Read the file @path into @buf (at most @max bytes, @buf holding max + 1). 0 and *len; an
 * errno if it cannot be read; -1 if it holds more than @max bytes. */
static int read_small_file(const char *path, char *buf, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return errno;
    }
    size_t n = fread(buf, 1, max + 1, f);
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    if (err != 0) {
        return err;
    }
    if (n > max) {
        return -1;
    }
    *len = n;
    return 0;
}

/* Parse the verb's fields from argv[*i..] (global options may be mixed in) and write its body
 * into @body. */
static int build_body(const struct verb *v, int argc, char **argv, int i, struct options *o,
                      struct rt_buf *body)
{
    assert(v->field_count <= CTL_FIELDS_MAX);
    const char *values[CTL_FIELDS_MAX] = {0};
    for (; i < argc; i++) {
        int g = global_option(argc, argv, &i, o);
        if (g < 0) {
            return -g;
        }
        if (g > 0) {
            continue;
        }
        unsigned k = 0;
        const char *value = NULL;
        for (; k < v->field_count; k++) {
            int rv = take_value(argc, argv, &i, v->fields[k].flag, &value);
            if (rv < 0) {
                return -rv;
            }
            if (rv > 0) {
                break;
            }
        }
        if (k == v->field_count) {
            return usage_error("%s: unknown argument '%.64s'", v->op, argv[i]);
        }
        if (values[k] != NULL) {
            return usage_error("%s given twice", v->fields[k].flag);
        }
        values[k] = value;
    }
    if (o->help) {
        return EXIT_OK;
    }
    bool admin = o->admin_secret_file != NULL;
    unsigned keys_given = 0, keys_known = 0, count = 0;
    for (unsigned k = 0; k < v->field_count; k++) {
        const struct field *fd = &v->fields[k];
        if (fd->flags & F_KEY) {
            keys_known++;
            keys_given += values[k] != NULL;
        }
        if (values[k] == NULL && fd->kind == FK_LIST && fd->list_default != NULL) {
            values[k] = fd->list_default;
        }
        if (values[k] == NULL &&
            ((fd->flags & F_REQUIRED) || ((fd->flags & F_ADMIN_REQUIRED) && admin))) {
            return usage_error("%s: %s is required%s", v->op, fd->flag,
                               (fd->flags & F_ADMIN_REQUIRED) ? " when signing as admin" : "");
        }
        count += values[k] != NULL;
    }
    if (keys_known > 0 && keys_given != 1) {
        return usage_error("%s: give exactly one of --order-id and --merchant-order-no", v->op);
    }
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, body);
    rt_mp_write_map(&w, count);
    for (unsigned k = 0; k < v->field_count; k++) {
        const struct field *fd = &v->fields[k];
        const char *value = values[k];
        if (value == NULL) {
            continue;
        }
        size_t len = strnlen(value, CTL_VALUE_BYTES_MAX + 1);
        if (len > CTL_VALUE_BYTES_MAX) {
            return usage_error("%s: longer than %u bytes", fd->flag, CTL_VALUE_BYTES_MAX);
        }
        rt_mp_write_cstr(&w, fd->key);
        if (fd->kind == FK_INT) {
            int64_t n;
            if (!parse_int(value, fd->min, fd->max, &n)) {
                return usage_error("%s: %s", fd->flag, fd->rule);
            }
            rt_mp_write_int(&w, n);
        } else if (fd->kind == FK_LIST) {
            int rv = write_list(&w, fd, value);
            if (rv != EXIT_OK) {
                return rv;
            }
        } else if (fd->kind == FK_FILE) {
            static char contents[CTL_VALUE_BYTES_MAX + 1];
            assert(fd->len_max <= CTL_VALUE_BYTES_MAX); /* read_small_file writes len_max + 1. */
            size_t n = 0;
            int rv = read_small_file(value, contents, fd->len_max, &n);
            if (rv != 0) {
                return usage_error("%s %.256s: %s", fd->flag, value,
                                   rv > 0 ? strerror(rv) : "larger than the limit");
            }
            if (n < 1 || !fd->check(contents, n)) {
                return usage_error("%s %.256s: %s", fd->flag, value, fd->rule);
            }
            rt_mp_write_str(&w, contents, n);
        } else {
            if (len < 1 || len > fd->len_max || !fd->check(value, len)) {
                return usage_error("%s: %s", fd->flag, fd->rule);
            }
            rt_mp_write_str(&w, value, len);
        }
    }
    if (rt_mp_writer_error(&w) != 0) {
        return usage_error("%s: arguments too large", v->op);
    }
    return EXIT_OK;
}

/* `call OP JSON`: the op and body from argv[*i..]. */
static int build_call(int argc, char **argv, int i, struct options *o, const char **op,
                      struct rt_buf *body)
{
    const char *pos[2] = {NULL, NULL};
    unsigned npos = 0;
    for (; i < argc; i++) {
        int g = global_option(argc, argv, &i, o);
        if (g < 0) {
            return -g;
        }
        if (g > 0) {
            continue;
        }
        if (npos == 2) {
            return usage_error("call: too many arguments ('%.64s')", argv[i]);
        }
        pos[npos++] = argv[i];
    }
    if (o->help) {
        return EXIT_OK;
    }
    if (npos != 2) {
        return usage_error("call wants OP and a JSON body");
    }
    *op = pos[0];
    size_t op_len = strnlen(pos[0], PR_OP_BYTES_MAX + 1);
    for (size_t k = 0; k < op_len; k++) {
        char ch = pos[0][k];
        if (!((ch >= 'a' && ch <= 'z') || ch == '_' || ch == '.')) {
            op_len = 0;
            break;
        }
    }
    if (op_len < 1 || op_len > PR_OP_BYTES_MAX) {
        return usage_error("call: OP must be 1-%u of [a-z_.]", PR_OP_BYTES_MAX);
    }
    const char *text = pos[1];
    size_t len;
    struct rt_buf in;
    rt_buf_init(&in, PR_JSON_BYTES_MAX + 1);
    if (strcmp(text, "-") == 0) {
        uint8_t chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
            if (rt_buf_append(&in, chunk, n) != 0) {
                rt_buf_free(&in);
                return usage_error("call: the JSON body is above %u bytes", PR_JSON_BYTES_MAX);
            }
        }
        if (ferror(stdin)) {
            rt_buf_free(&in);
            return usage_error("call: reading stdin failed");
        }
        text = in.len > 0 ? (const char *)in.data : "";
        len = in.len;
    } else {
        len = strnlen(text, PR_JSON_BYTES_MAX + 1);
    }
    char err[PR_JSON_ERR_BYTES];
    int rv = pr_json_to_msgpack(text, len, body, err, sizeof(err));
    rt_buf_free(&in);
    if (rv != 0) {
        return usage_error("call: %s", err);
    }
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, body->data, body->len);
    if (rt_mp_peek(&r) != RT_MP_MAP) {
        return usage_error("call: the body must be a JSON object");
    }
    return EXIT_OK;
}

/* ---- Output ---- */

/* Print msgpack @mp as JSON on stdout. */
static int print_json(const uint8_t *mp, size_t len)
{
    struct rt_buf text;
    rt_buf_init(&text, CTL_OUT_BYTES_MAX);
    int rv = pr_json_from_msgpack(mp, len, CTL_JSON_INDENT, &text);
    if (rv != 0) {
        rt_buf_free(&text);
        fprintf(stderr, "payctl: cannot print the response: %s\n", rt_strerror(rv));
        return EXIT_USAGE;
    }
    fwrite(text.data, 1, text.len, stdout);
    fputc('\n', stdout);
    rt_buf_free(&text);
    return EXIT_OK;
}

/* --json: the whole response as {ok, code, msg, body}. */
static int print_response_json(const struct pr_response *resp)
{
    struct rt_buf mp;
    rt_buf_init(&mp, PR_BODY_BYTES_MAX + 1024u);
    struct rt_mp_writer w;
    rt_mp_writer_init(&w, &mp);
    rt_mp_write_map(&w, resp->ok ? 4 : 3);
    rt_mp_write_cstr(&w, "ok");
    rt_mp_write_bool(&w, resp->ok);
    rt_mp_write_cstr(&w, "code");
    rt_mp_write_cstr(&w, resp->code);
    rt_mp_write_cstr(&w, "msg");
    rt_mp_write_cstr(&w, resp->msg);
    if (resp->ok) {
        rt_mp_write_cstr(&w, "body");
        rt_mp_write_raw(&w, resp->body, resp->body_len);
    }
    int rv = rt_mp_writer_error(&w) == 0 ? print_json(mp.data, mp.len) : EXIT_USAGE;
    rt_buf_free(&mp);
    return rv;
}

/* ---- Main ---- */

static const struct verb *find_verb(const char *name)
{
    for (size_t i = 0; i < VERB_COUNT; i++) {
        if (strcmp(verbs[i].op, name) == 0) {
            return &verbs[i];
        }
    }
    return NULL;
}

/* The default server: node 1 of a local cluster (CONTRACT.md: API port BASE+100+i). */
static int default_server(char *out, size_t cap)
{
    const char *env = getenv("PAYRAFT_PORT_BASE");
    int64_t base = CTL_PORT_BASE_DEFAULT;
    if (env != NULL && !parse_int(env, CTL_PORT_BASE_MIN, CTL_PORT_BASE_MAX, &base)) {
        return usage_error("PAYRAFT_PORT_BASE must be a number from %u to %u", CTL_PORT_BASE_MIN,
                           CTL_PORT_BASE_MAX);
    }
    snprintf(out, cap, "127.0.0.1:%" PRId64, base + CTL_API_PORT_OFFSET);
    return EXIT_OK;
}

static int run(const struct options *o, const char *op, const struct rt_buf *body)
{
    char server_default[32];
    const char *servers = o->server;
    if (servers == NULL) {
        int rv = default_server(server_default, sizeof(server_default));
        if (rv != EXIT_OK) {
            return rv;
        }
        servers = server_default;
    }
    const char *app = "admin";
    const char *secret_file = o->admin_secret_file;
    if (o->admin_secret_file != NULL && (o->app != NULL || o->secret_file != NULL)) {
        return usage_error("use either --app with --secret-file, or --admin-secret-file");
    }
    if (o->admin_secret_file == NULL) {
        if (o->app == NULL || o->secret_file == NULL) {
            return usage_error("sign with --app ID --secret-file F, or --admin-secret-file F");
        }
        app = o->app;
        secret_file = o->secret_file;
    }
    uint8_t secret[PR_SECRET_BYTES_MAX];
    size_t secret_len = 0;
    char why[RT_SECRET_WHY_BYTES];
    if (rt_secret_file_read(secret_file, 1, PR_SECRET_BYTES_MAX, secret, &secret_len, why,
                            sizeof(why)) != 0) {
        fprintf(stderr, "payctl: %s\n", why);
        return EXIT_USAGE;
    }
    struct pr_client_options opts;
    pr_client_options_init(&opts);
    if (o->timeout_ms > 0) {
        opts.request_timeout_ms = (unsigned)o->timeout_ms;
    }
    struct pr_client *c = NULL;
    int rv = pr_client_new(servers, app, secret, secret_len, &opts, &c);
    explicit_bzero(secret, sizeof(secret));
    if (rv != 0) {
        return usage_error("%s", rv == PR_EINVAL ? "bad --server (host:port[,host:port..]) or --app"
                                                 : pr_strerror(rv));
    }
    struct pr_response resp = {0};
    rv = pr_client_call(c, op, body->data, body->len, &resp);
    pr_client_free(c);
    if (rv != 0) {
        fprintf(stderr, "payctl: %s: %s\n", servers, pr_strerror(rv));
        return EXIT_USAGE;
    }
    int exit_code = resp.ok ? EXIT_OK : EXIT_RESPONSE;
    if (o->json) {
        int prv = print_response_json(&resp);
        exit_code = prv != EXIT_OK ? prv : exit_code;
    } else if (resp.ok) {
        int prv = print_json(resp.body, resp.body_len);
        exit_code = prv != EXIT_OK ? prv : exit_code;
    }
    if (!resp.ok) {
        fprintf(stderr, "%s: ", resp.code);
        print_sanitized(stderr, resp.msg);
        fputc('\n', stderr);
    }
    pr_response_free(&resp);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "payctl: writing stdout: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    return exit_code;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    int i = 1;
    for (; i < argc; i++) {
        int g = global_option(argc, argv, &i, &o);
        if (g < 0) {
            return -g;
        }
        if (g == 0) {
            break;
        }
    }
    if (i >= argc) {
        if (o.help) {
            print_main_help(stdout);
            return EXIT_OK;
        }
        print_main_help(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[i];
    if (strcmp(name, "help") == 0 ||
        (o.help && name[0] != '-' && find_verb(name) == NULL && strcmp(name, "call") != 0)) {
        print_main_help(stdout);
        return EXIT_OK;
    }
    if (name[0] == '-') {
        return usage_error("unknown option '%.64s'", name);
    }
    struct rt_buf body;
    rt_buf_init(&body, PR_BODY_BYTES_MAX);
    const char *op = name;
    int rv;
    if (strcmp(name, "call") == 0) {
        rv = build_call(argc, argv, i + 1, &o, &op, &body);
        if (rv == EXIT_OK && o.help) {
            print_call_help(stdout);
            rt_buf_free(&body);
            return EXIT_OK;
        }
    } else {
        const struct verb *v = find_verb(name);
        if (v == NULL) {
            rt_buf_free(&body);
            return usage_error("unknown op '%.64s' (for any operation: payctl call OP JSON)", name);
        }
        rv = build_body(v, argc, argv, i + 1, &o, &body);
        if (rv == EXIT_OK && o.help) {
            print_verb_help(stdout, v);
            rt_buf_free(&body);
            return EXIT_OK;
        }
    }
    if (rv == EXIT_OK) {
        rv = run(&o, op, &body);
    }
    rt_buf_free(&body);
    return rv;
}
