#include "test_support.h"

#include <assert.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_buf.h"
#include "rt_key.h"
#include "rt_log.h"

char *test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    size_t n = strlen(base) + strlen(tag) + 32;
    char *path = malloc(n);
    assert(path != NULL);
    snprintf(path, n, "%s/payraft-%s-XXXXXX", base, tag);
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void test_rmdir(char *path)
{
    if (path == NULL) {
        return;
    }
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

struct digest_state {
    EVP_MD_CTX *md;
    uint8_t cf;
    size_t count;
};

static int digest_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    struct digest_state *d = arg;
    uint8_t lens[9];
    lens[0] = d->cf;
    rt_put_be32(lens + 1, (uint32_t)key_len);
    rt_put_be32(lens + 5, (uint32_t)val_len);
    EVP_DigestUpdate(d->md, lens, sizeof(lens));
    EVP_DigestUpdate(d->md, key, key_len);
    EVP_DigestUpdate(d->md, val, val_len);
    d->count++;
    return 0;
}

void test_store_digest(struct rt_store *store, uint16_t shard, uint8_t digest[32])
{
    struct digest_state d = {.md = EVP_MD_CTX_new(), .cf = 0, .count = 0};
    assert(d.md != NULL);
    EVP_DigestInit_ex(d.md, EVP_sha256(), NULL);
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, shard);
    for (int cf = 0; cf < RT_CF_COUNT; cf++) {
        d.cf = (uint8_t)cf;
        int rv = store->ops->scan(store, (enum rt_cf)cf, prefix, sizeof(prefix), NULL, 0,
                                  digest_visit, &d);
        assert(rv == 0);
        (void)rv;
    }
    unsigned len = 32;
    EVP_DigestFinal_ex(d.md, digest, &len);
    EVP_MD_CTX_free(d.md);
}

static int count_visit(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                       size_t val_len)
{
    (void)key;
    (void)key_len;
    (void)val;
    (void)val_len;
    (*(size_t *)arg)++;
    return 0;
}

size_t test_store_count(struct rt_store *store, enum rt_cf cf, uint16_t shard)
{
    uint8_t prefix[RT_KEY_SHARD_BYTES];
    rt_key_shard_prefix(prefix, shard);
    size_t count = 0;
    int rv = store->ops->scan(store, cf, prefix, sizeof(prefix), NULL, 0, count_visit, &count);
    assert(rv == 0);
    (void)rv;
    return count;
}

bool test_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
    while (!pred(arg)) {
        if (uv_hrtime() > deadline) {
            return false;
        }
        uv_run(loop, UV_RUN_ONCE);
    }
    return true;
}

pid_t test_spawn(const char *path, const char *const argv[], int *report_fd)
{
    enum { ARGS_MAX = 16 };
    int fds[2];
    if (pipe(fds) != 0) {
        abort();
    }
    char fd_arg[16];
    snprintf(fd_arg, sizeof(fd_arg), "%d", fds[1]);
    char *args[ARGS_MAX + 1];
    size_t n = 0;
    for (; argv[n] != NULL; n++) {
        assert(n < ARGS_MAX);
        args[n] = strcmp(argv[n], TEST_SPAWN_FD) == 0 ? fd_arg : (char *)argv[n];
    }
    args[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        abort();
    }
    if (pid == 0) {
        close(fds[0]);
        execv(path, args);
        _exit(127);
    }
    close(fds[1]);
    *report_fd = fds[0];
    return pid;
}

void test_kill(pid_t pid)
{
    int status = 0;
    if (kill(pid, SIGKILL) != 0 || waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) ||
        WTERMSIG(status) != SIGKILL) {
        abort();
    }
}

static FILE *log_collecting;
static char *log_collected;
static size_t log_collected_len;

void test_log_collect(void)
{
    assert(log_collecting == NULL);
    log_collecting = open_memstream(&log_collected, &log_collected_len);
    if (log_collecting == NULL) {
        abort();
    }
    rt_log_set_file(log_collecting);
}

char *test_log_collected(void)
{
    assert(log_collecting != NULL);
    rt_log_set_file(NULL);
    if (fclose(log_collecting) != 0) {
        abort();
    }
    log_collecting = NULL;
    char *lines = log_collected;
    log_collected = NULL;
    return lines;
}
