/* payd: one Payraft node.
 *
 *   payd --node-id N --data-dir DIR --api H:P --peer H:P --http H:P --cluster-id HEX
 *        --cluster-secret-file F --admin-secret-file F [--shards S]
 *        --member ID,PEER,API,HTTP [--member ...] [--app-rate N] [--snapshot-bytes N]
 *        [--raft-link-bytes N]
 *
 * Every member of the bootstrap membership is given with --member (this node included); the
 * same list on every node. The first start of a data dir bootstraps it; later starts find the
 * raft state and rejoin. SIGTERM/SIGINT stop cleanly: leaderships are handed over, every raft
 * group closed, RocksDB flushed. scripts/cluster.sh runs it; docs/operations.md explains it.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "act_registry.h"
#include "api_server.h"
#include "cl_fsm.h"
#include "cl_link.h"
#include "cl_node.h"
#include "rt_buf.h"
#include "rt_error.h"
#include "rt_log.h"
#include "rt_secret.h"

#define PAYD_TRIM_MS 10000u
/* Blocks from this size up are mmapped by malloc, and unmapped when freed. glibc's own
 * threshold moves up to the size of any mmapped block freed (up to 32 MiB), after which
 * RocksDB's 1 MiB memtable blocks come from the heap: a flushed memtable's blocks then stay
 * resident, scattered among small allocations, until reused or trimmed, which was 20-100 MiB
 * of RSS above what was in use in a soak. Fixed, they leave with the flush (RSS 35-70 MiB
 * lower, within 30 MiB of what is in use); the price is the page faults of each new memtable
 * block, about 4% of the throughput at saturation (docs/benchmarks.md). GLIBC_TUNABLES
 * glibc.malloc.mmap_threshold, if set, wins. */
#define PAYD_MMAP_THRESHOLD_BYTES (512u * 1024u)
/* The tunable that has malloc ask for transparent huge pages (madvise MADV_HUGEPAGE) on what
 * it maps, and the longest GLIBC_TUNABLES payd extends with it. */
#define PAYD_HUGE_PAGES_TUNABLE "glibc.malloc.hugetlb"
#define PAYD_TUNABLES_BYTES_MAX 1024u
/* The kernel's transparent huge page mode, e.g. "always [madvise] never" (read up to
 * PAYD_THP_MODE_BYTES_MAX - 1 bytes). */
#define PAYD_THP_MODE_FILE      "/sys/kernel/mm/transparent_hugepage/enabled"
#define PAYD_THP_MODE_BYTES_MAX 128u
/* --snapshot-bytes: raft log bytes per group before a snapshot (cl_fsm.h, Snapshots). Below
 * 64 KiB snapshots would run almost every entry; above 1 GiB the log alone could fill memory. */
#define PAYD_SNAPSHOT_BYTES_MIN (64u * 1024u)
#define PAYD_SNAPSHOT_BYTES_MAX (1024u * 1024u * 1024u)
/* --raft-link-bytes: raft messages larger than this leave through raft_uv's own connection
 * rather than the node link (cl_node.h). The default is everything a link message can hold;
 * smaller values exist to exercise that path (tests/integration/test_cluster.c). */
#define PAYD_RAFT_LINK_BYTES_MIN 4096u

struct payd {
    uv_loop_t *loop;
    struct cl_node *node;
    struct api_server *api;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_timer_t trim;
    bool stopping;
    int exit_code;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: payd --node-id N --data-dir DIR --api HOST:PORT --peer HOST:PORT\n"
            "            --http HOST:PORT --cluster-id HEX --cluster-secret-file FILE\n"
            "            --admin-secret-file FILE [--shards S (1..%u, default %u)]\n"
            "            --member ID,PEER,API,HTTP [--member ...]\n"
            "            [--app-rate N (requests/s per app on this node, 0 = no limit, "
            "default %u)]\n"
            "            [--snapshot-bytes N (raft log bytes per shard before a snapshot, "
            "%u..%u, default %u)]\n"
            "            [--raft-link-bytes N (raft messages larger than this use their own "
            "connection, %u..%u, default %u)]\n"
            "Every member of the cluster is listed with --member, this node included.\n",
            RT_SHARDS_MAX, RT_SHARDS_DEFAULT, API_RATE_DEFAULT, PAYD_SNAPSHOT_BYTES_MIN,
            PAYD_SNAPSHOT_BYTES_MAX, CL_FSM_LOG_BYTES_MAX, PAYD_RAFT_LINK_BYTES_MIN,
            CL_LINK_MESSAGE_BYTES_MAX, CL_LINK_MESSAGE_BYTES_MAX);
}

/* glibc keeps freed memory in its heaps; under a steady load of small allocations of every size
 * (entries, replies, cached states) that shows as RSS well above what is in use. Handing the
 * free pages back every PAYD_TRIM_MS keeps RSS near the memory budget; it takes a few ms.
 * Not when malloc's heaps are in huge pages (malloc_huge_pages): each trim split them, the
 * kernel merged them again in the background, and a loaded cluster lost 15-30% of its
 * throughput within a minute to that churn (docs/benchmarks.md, optimisation log). */
static void on_trim(uv_timer_t *timer)
{
    (void)timer;
    malloc_trim(0);
}

/* A secret file (rt_secret.h), with this node's bounds; 0, or -1 after saying why. */
static int read_secret(const char *path, uint8_t out[CL_PEER_SECRET_BYTES_MAX], size_t *len)
{
    char why[RT_SECRET_WHY_BYTES];
    if (rt_secret_file_read(path, CL_PEER_SECRET_BYTES_MIN, CL_PEER_SECRET_BYTES_MAX, out, len, why,
                            sizeof(why)) != 0) {
        fprintf(stderr, "payd: %s\n", why);
        return -1;
    }
    return 0;
}

static int copy_addr(char *out, const char *s, size_t len)
{
    if (len == 0 || len > CL_ADDR_BYTES_MAX) {
        return -1;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* ID,PEER,API,HTTP */
static int parse_member(const char *text, struct cl_member *m)
{
    const char *parts[4];
    size_t lens[4];
    const char *p = text;
    for (int i = 0; i < 4; i++) {
        const char *comma = strchr(p, ',');
        if ((comma == NULL) != (i == 3)) {
            return -1;
        }
        parts[i] = p;
        lens[i] = comma != NULL ? (size_t)(comma - p) : strlen(p);
        p = comma != NULL ? comma + 1 : p;
    }
    char id[24];
    if (lens[0] == 0 || lens[0] >= sizeof(id)) {
        return -1;
    }
    memcpy(id, parts[0], lens[0]);
    id[lens[0]] = '\0';
    if (rt_u64_parse(id, 10, 1, UINT32_MAX, &m->id) != 0 ||
        copy_addr(m->peer_addr, parts[1], lens[1]) != 0 ||
        copy_addr(m->api_addr, parts[2], lens[2]) != 0 ||
        copy_addr(m->http_addr, parts[3], lens[3]) != 0) {
        return -1;
    }
    return 0;
}

static void close_walk_cb(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle)) {
        uv_close(handle, NULL);
    }
}

static void node_stopped(void *arg)
{
    struct payd *payd = arg;
    uv_close((uv_handle_t *)&payd->sigterm, NULL);
    uv_close((uv_handle_t *)&payd->sigint, NULL);
}

static void api_stopped(void *arg)
{
    struct payd *payd = arg;
    cl_node_stop(payd->node, node_stopped, payd);
}

/* Stop the API, then the node (handing its leaderships over). */
static void payd_stop(struct payd *payd)
{
    assert(!payd->stopping);
    payd->stopping = true;
    api_server_stop(payd->api, api_stopped, payd);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    struct payd *payd = handle->data;
    if (payd->stopping) {
        RT_WARN("signal %d while stopping: still stopping", signum);
        return;
    }
    RT_INFO("signal %d: stopping", signum);
    payd_stop(payd);
}

/* The node cannot go on (cl_node_config.on_fatal): stop as for SIGTERM, exit with 1. */
static void on_node_fatal(void *arg)
{
    struct payd *payd = arg;
    payd->exit_code = 1;
    if (!payd->stopping) {
        RT_ERROR("the node failed: stopping");
        payd_stop(payd);
    }
}

/* libuv's worker threads (4 unless UV_THREADPOOL_SIZE says otherwise) serve raft_uv's disk
 * work for every group, the store syncs before snapshots, and the full snapshots made for
 * followers (at most CL_FSM_FILLS_MAX at a time, cl_fsm.h). Enough that those copies can never
 * take every thread from raft. */
#define PAYD_THREADPOOL_SIZE "8"

/* Whether the kernel gives transparent huge pages to memory that asks for them: its mode
 * (PAYD_THP_MODE_FILE) is "always" or "madvise", not "never", and the file is there at all.
 * Without them, asking is pointless and the periodic trim should stay. */
static bool kernel_huge_pages(void)
{
    char mode[PAYD_THP_MODE_BYTES_MAX];
    FILE *f = fopen(PAYD_THP_MODE_FILE, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(mode, 1, sizeof(mode) - 1, f);
    fclose(f);
    mode[n] = '\0';
    return strstr(mode, "[always]") != NULL || strstr(mode, "[madvise]") != NULL;
}

/* The value of the glibc tunable named exactly @name in GLIBC_TUNABLES ("name=value" entries
 * separated by ':'), or NULL when the variable does not name it. */
static const char *glibc_tunable(const char *name)
{
    const char *tunables = getenv("GLIBC_TUNABLES");
    const size_t name_len = strlen(name);
    for (const char *at = tunables; at != NULL && *at != '\0';) {
        if (strncmp(at, name, name_len) == 0 && at[name_len] == '=') {
            return at + name_len + 1;
        }
        at = strchr(at, ':');
        at = at != NULL ? at + 1 : NULL;
    }
    return NULL;
}

/* Start payd again with glibc.malloc.hugetlb=1 added to GLIBC_TUNABLES, which glibc reads
 * only when a program starts. RocksDB's memtable blocks are then huge pages
 * (STORE_ARENA_BLOCK_BYTES, store_rocks.h): 85% fewer page faults and 15-30% more orders/s
 * at saturation on the bench VM, for 10-30 MiB more RSS per node (docs/benchmarks.md,
 * optimisation log). A GLIBC_TUNABLES that already names the tunable is the operator's
 * choice, kept as it is (glibc.malloc.hugetlb=0 turns huge pages off); it is also what stops
 * a second start. Nothing is done when the kernel gives no huge pages (kernel_huge_pages). If
 * the start fails, payd carries on as it is. Returns when payd goes on in this process. */
static void payd_exec_with_huge_pages(char **argv)
{
    if (glibc_tunable(PAYD_HUGE_PAGES_TUNABLE) != NULL || !kernel_huge_pages()) {
        return;
    }
    const char *tunables = getenv("GLIBC_TUNABLES");
    const bool others = tunables != NULL && *tunables != '\0';
    char value[PAYD_TUNABLES_BYTES_MAX];
    int n = snprintf(value, sizeof(value), "%s%s" PAYD_HUGE_PAGES_TUNABLE "=1",
                     others ? tunables : "", others ? ":" : "");
    if (n < 0 || (size_t)n >= sizeof(value) || setenv("GLIBC_TUNABLES", value, 1) != 0) {
        return;
    }
    /* The binary's own path rather than /proc/self/exe, whose name ("exe") the process would
     * then show in ps and top. */
    char path[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (len > 0) {
        path[len] = '\0';
        execv(path, argv);
    }
    /* The variable stays extended: payd starts no other program. */
    fprintf(stderr, "payd: starting again with %s=1 failed (%s): going on without huge pages\n",
            PAYD_HUGE_PAGES_TUNABLE, strerror(errno));
}

/* Whether malloc's memory is in huge pages: GLIBC_TUNABLES names glibc.malloc.hugetlb with a
 * value other than 0, and the kernel gives them (kernel_huge_pages). */
static bool malloc_huge_pages(void)
{
    const char *value = glibc_tunable(PAYD_HUGE_PAGES_TUNABLE);
    return value != NULL && *value != '0' && kernel_huge_pages();
}

int main(int argc, char **argv)
{
    payd_exec_with_huge_pages(argv);
    /* Before anything touches libuv's thread pool; an operator's own setting wins. */
    setenv("UV_THREADPOOL_SIZE", PAYD_THREADPOOL_SIZE, 0);
    if (glibc_tunable("glibc.malloc.mmap_threshold") == NULL) {
        (void)mallopt(M_MMAP_THRESHOLD, (int)PAYD_MMAP_THRESHOLD_BYTES);
    }
    rt_log_init();
    struct cl_member members[CL_MEMBERS_MAX];
    unsigned member_count = 0;
    uint64_t node_id = 0, cluster_id = 0, shards = RT_SHARDS_DEFAULT, app_rate = API_RATE_DEFAULT;
    uint64_t snapshot_bytes = CL_FSM_LOG_BYTES_MAX, raft_link_bytes = CL_LINK_MESSAGE_BYTES_MAX;
    const char *data_dir = NULL, *api = NULL, *peer = NULL, *http = NULL;
    const char *cluster_secret_file = NULL, *admin_secret_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = value == NULL;
        if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0) {
            usage();
            return 0;
        } else if (bad) {
            /* Reported below. */
        } else if (strcmp(flag, "--node-id") == 0) {
            bad = rt_u64_parse(value, 10, 1, UINT32_MAX, &node_id);
        } else if (strcmp(flag, "--cluster-id") == 0) {
            bad = rt_u64_parse(value, 16, 1, UINT64_MAX, &cluster_id);
        } else if (strcmp(flag, "--shards") == 0) {
            bad = rt_u64_parse(value, 10, 1, RT_SHARDS_MAX, &shards);
        } else if (strcmp(flag, "--app-rate") == 0) {
            bad = rt_u64_parse(value, 10, 0, 10000000, &app_rate);
        } else if (strcmp(flag, "--snapshot-bytes") == 0) {
            bad = rt_u64_parse(value, 10, PAYD_SNAPSHOT_BYTES_MIN, PAYD_SNAPSHOT_BYTES_MAX,
                               &snapshot_bytes);
        } else if (strcmp(flag, "--raft-link-bytes") == 0) {
            bad = rt_u64_parse(value, 10, PAYD_RAFT_LINK_BYTES_MIN, CL_LINK_MESSAGE_BYTES_MAX,
                               &raft_link_bytes);
        } else if (strcmp(flag, "--data-dir") == 0) {
            data_dir = value;
        } else if (strcmp(flag, "--api") == 0) {
            api = value;
        } else if (strcmp(flag, "--peer") == 0) {
            peer = value;
        } else if (strcmp(flag, "--http") == 0) {
            http = value;
        } else if (strcmp(flag, "--cluster-secret-file") == 0) {
            cluster_secret_file = value;
        } else if (strcmp(flag, "--admin-secret-file") == 0) {
            admin_secret_file = value;
        } else if (strcmp(flag, "--member") == 0) {
            bad = member_count == CL_MEMBERS_MAX || parse_member(value, &members[member_count]);
            member_count += !bad;
        } else {
            fprintf(stderr, "payd: unknown option %s\n", flag);
            usage();
            return 2;
        }
        if (bad) {
            fprintf(stderr, "payd: bad or missing value for %s\n", flag);
            usage();
            return 2;
        }
        i++;
    }
    if (node_id == 0 || cluster_id == 0 || data_dir == NULL || api == NULL || peer == NULL ||
        http == NULL || cluster_secret_file == NULL || admin_secret_file == NULL ||
        member_count == 0) {
        fprintf(stderr, "payd: missing a required option\n");
        usage();
        return 2;
    }
    /* This node's own addresses must be the ones the cluster knows it by. */
    const struct cl_member *self = NULL;
    for (unsigned m = 0; m < member_count; m++) {
        if (members[m].id == node_id) {
            self = &members[m];
        }
    }
    if (self == NULL || strcmp(self->peer_addr, peer) != 0 || strcmp(self->api_addr, api) != 0) {
        fprintf(stderr,
                "payd: node %" PRIu64 " must be listed with --member with the same peer "
                "and api addresses\n",
                node_id);
        return 2;
    }
    uint8_t cluster_secret[CL_PEER_SECRET_BYTES_MAX], admin_secret[CL_PEER_SECRET_BYTES_MAX];
    size_t cluster_secret_len, admin_secret_len;
    if (read_secret(cluster_secret_file, cluster_secret, &cluster_secret_len) != 0 ||
        read_secret(admin_secret_file, admin_secret, &admin_secret_len) != 0) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    rt_log_set_node((unsigned)node_id);
    struct rt_registry registry;
    if (act_registry_init(&registry) != 0) {
        RT_ERROR("actor registry is inconsistent");
        return 1;
    }
    struct payd payd = {.loop = uv_default_loop()};
    const bool huge_pages = malloc_huge_pages();
    struct cl_node_config config = {
        .node_id = node_id,
        .data_dir = data_dir,
        .cluster_id = cluster_id,
        .secret = cluster_secret,
        .secret_len = cluster_secret_len,
        .shard_count = (uint16_t)shards,
        .members = members,
        .member_count = member_count,
        .snapshot_log_bytes = (size_t)snapshot_bytes,
        .raft_link_bytes_max = (size_t)raft_link_bytes,
        .malloc_huge_pages = huge_pages,
        .on_fatal = on_node_fatal,
        .fatal_arg = &payd,
    };
    if (cl_node_start(payd.loop, &config, &registry, &payd.node) != 0) {
        fprintf(stderr, "payd: node %" PRIu64 " could not start (see the log above)\n", node_id);
        return 1;
    }
    struct api_server_config ac = {api, admin_secret, admin_secret_len, (uint32_t)app_rate};
    if (api_server_start(payd.loop, payd.node, &ac, &payd.api) != 0) {
        fprintf(stderr, "payd: cannot serve the API on %s (see the log above)\n", api);
        return 1;
    }
    (void)http; /* The HTTP status endpoint comes with the Operations issue. */
    uv_signal_init(payd.loop, &payd.sigterm);
    uv_signal_init(payd.loop, &payd.sigint);
    payd.sigterm.data = &payd;
    payd.sigint.data = &payd;
    uv_signal_start(&payd.sigterm, on_signal, SIGTERM);
    uv_signal_start(&payd.sigint, on_signal, SIGINT);
    uv_timer_init(payd.loop, &payd.trim);
    if (!huge_pages) {
        uv_timer_start(&payd.trim, on_trim, PAYD_TRIM_MS, PAYD_TRIM_MS);
    }
    uv_unref((uv_handle_t *)&payd.trim); /* Never what keeps the process running. */
    RT_INFO("payd %" PRIu64 " serving: api %s, peer %s; malloc's huge pages %s", node_id, api, peer,
            huge_pages ? "on" : "off (and freed memory trimmed every 10 s)");
    uv_run(payd.loop, UV_RUN_DEFAULT);
    uv_walk(payd.loop, close_walk_cb, NULL);
    uv_run(payd.loop, UV_RUN_DEFAULT);
    uv_loop_close(payd.loop);
    return payd.exit_code;
}
