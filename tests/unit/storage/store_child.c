/* store_child: a separate program the storage tests fork and exec, because a forked copy of
 * a process that already ran RocksDB inherits its background thread pool's bookkeeping but
 * not its threads (flushes would never run) nor a consistent state of its mutexes.
 *
 *   store_child commit <dir> <count> <fd> [<sync_every>]
 *                                           commit crash_stream 1..count into <dir>, writing
 *                                           each index (be64) to <fd> before committing it;
 *                                           with sync_every > 0, store_rocks_sync after every
 *                                           sync_every commits and then report the synced
 *                                           index with CRASH_SYNCED_BIT set; then wait to be
 *                                           killed (never close cleanly)
 *   store_child hold <dir> <fd>             open <dir>, write one byte to <fd>, wait
 *
 * Either mode exits by itself after CHILD_WAIT_S so that a failed test leaves no orphan. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crash_stream.h"
#include "rt_buf.h"
#include "rt_log.h"
#include "storage_helpers.h"

#define CHILD_WAIT_S 60u

static void child_report(int fd, const void *bytes, size_t len)
{
    if (write(fd, bytes, len) != (ssize_t)len) {
        _exit(4); /* The parent is gone. */
    }
}

int main(int argc, char **argv)
{
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "commit") == 0) {
        uint64_t count = strtoull(argv[3], NULL, 10);
        int fd = atoi(argv[4]);
        uint64_t sync_every = argc == 6 ? strtoull(argv[5], NULL, 10) : 0;
        rt_log_set_level(RT_LOG_WARN);
        /* With syncs, default (16 MiB) memtables: no memtable switch writes the WAL's buffer
         * out, so only store_rocks_sync can have put the synced commits in a file. */
        struct store_rocks *db =
            helper_open(argv[2], sync_every != 0 ? 0 : CRASH_WRITE_BUFFER_BYTES);
        struct rt_store *store = store_rocks_store(db);
        struct rt_writeset ws;
        rt_writeset_init(&ws);
        for (uint64_t i = 1; i <= count; i++) {
            uint8_t report[8];
            rt_put_be64(report, i);
            child_report(fd, report, sizeof(report));
            crash_stream_commit(store, &ws, i);
            if (sync_every != 0 && i % sync_every == 0) {
                if (store_rocks_sync(db) != 0) {
                    _exit(5);
                }
                rt_put_be64(report, i | CRASH_SYNCED_BIT);
                child_report(fd, report, sizeof(report));
            }
        }
        sleep(CHILD_WAIT_S);
        _exit(3); /* Not a clean close: that is the point. */
    }
    if (argc == 4 && strcmp(argv[1], "hold") == 0) {
        int fd = atoi(argv[3]);
        rt_log_set_level(RT_LOG_WARN);
        struct store_rocks *db = helper_open(argv[2], 0);
        child_report(fd, "!", 1);
        sleep(CHILD_WAIT_S);
        store_rocks_close(db);
        return 3;
    }
    fprintf(stderr,
            "usage: store_child commit <dir> <count> <fd> [<sync_every>] | hold <dir> <fd>\n");
    return 2;
}
