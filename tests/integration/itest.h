/* itest: helpers for integration tests against real payd processes on 127.0.0.1.
 *
 * A blocking client that speaks the CONTRACT wire protocol (admin-signed, since app keys come
 * with the API issue), and control of a local cluster through scripts/cluster.sh. Ports come
 * from PAYRAFT_PORT_BASE plus a per-test offset so parallel runs do not collide. */
#ifndef ITEST_H
#define ITEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "rt_buf.h"

struct pr_client;

struct itest_cluster {
    char dir[512];  /* The cluster's home (secrets, data, logs). */
    char root[512]; /* The source tree (for scripts/cluster.sh). */
    unsigned base;  /* PAYRAFT_PORT_BASE for this cluster. */
    unsigned nodes;
    unsigned shards;          /* PAYRAFT_SHARDS: ITEST_SHARDS unless started with options. */
    unsigned snapshot_bytes;  /* PAYRAFT_SNAPSHOT_BYTES (payd --snapshot-bytes); 0: default. */
    unsigned raft_link_bytes; /* PAYRAFT_RAFT_LINK_BYTES (payd --raft-link-bytes); 0: default. */
    uint8_t admin_secret[128];
    size_t admin_secret_len;
};

struct itest_client {
    int fd;
    uint64_t next_id;
    const struct itest_cluster *cluster;
};

struct itest_reply {
    char code[32]; /* Wire code, "OK" on success. */
    char msg[256];
    struct rt_buf body; /* The body map (msgpack), empty on error. */
};

/* Start an @nodes-node cluster in a fresh temp dir with ports from PAYRAFT_PORT_BASE + @offset.
 * Aborts the test (returns false) with a message on failure. */
bool itest_cluster_start(struct itest_cluster *c, unsigned nodes, unsigned offset);
/* The same with @shards shards (1..ITEST_SHARDS; 0: ITEST_SHARDS), payd --snapshot-bytes
 * @snapshot_bytes and --raft-link-bytes @raft_link_bytes (0: payd's defaults), kept for every
 * later restart of the cluster's nodes. */
bool itest_cluster_start_with(struct itest_cluster *c, unsigned nodes, unsigned offset,
                              unsigned shards, unsigned snapshot_bytes, unsigned raft_link_bytes);
/* scripts/cluster.sh stop; false unless every node's log ends with its clean-stop line. The
 * directory is removed unless PAYRAFT_KEEP_ITEST is set or the stop was not clean. */
bool itest_cluster_stop(struct itest_cluster *c);
/* scripts/cluster.sh kill/restart ID. */
bool itest_cluster_kill(struct itest_cluster *c, unsigned id);
bool itest_cluster_restart(struct itest_cluster *c, unsigned id);
unsigned itest_api_port(const struct itest_cluster *c, unsigned id);
/* A client of the C library (payraft_client.h) for every node of @c, node 1 first, signing as
 * @app (NULL: admin with the cluster's admin secret) with @secret, routing when @route, with
 * requests given @request_timeout_ms (0: the library's default). NULL if it cannot be made. */
struct pr_client *itest_library_client(const struct itest_cluster *c, const char *app,
                                       const char *secret, bool route, unsigned request_timeout_ms);
/* Wait up to @timeout_ms until every node of @c knows every shard's leader (itest_all_leaders,
 * node 1 first). false on timeout. */
bool itest_wait_all_leaders(const struct itest_cluster *c, unsigned timeout_ms);
/* The requests all nodes of @c forwarded to a shard's leader so far (cluster.status
 * "forwarded", summed) into *sum. false if a node's status cannot be read. */
bool itest_forwarded_total(const struct itest_cluster *c, uint64_t *sum);
/* Read up to @cap - 1 bytes of the file @path into @out, NUL-terminated. Returns the length;
 * a file that is not there reads as empty. */
size_t itest_read_text(const char *path, char *out, size_t cap);
/* Node @id's process id (scripts/cluster.sh's pid file), 0 when it is not running. */
long itest_node_pid(const struct itest_cluster *c, unsigned id);

/* Connect to node @id's API port (retrying up to @timeout_ms). */
bool itest_connect(struct itest_client *client, const struct itest_cluster *c, unsigned id,
                   unsigned timeout_ms);
void itest_close(struct itest_client *client);
/* How to sign a request: as @app with @secret (NULL app: admin with the cluster's admin
 * secret), or with the private key @key instead when it is set (Ed25519 or RSA), shifting ts by
 * @ts_offset_ms, with @nonce (NULL: a fresh one), and with a corrupted HMAC signature when
 * @bad_sig. */
struct itest_sign {
    const char *app;
    const uint8_t *secret;
    size_t secret_len;
    EVP_PKEY *key;
    int64_t ts_offset_ms;
    const char *nonce;
    bool bad_sig;
};

/* Send one admin-signed request with @body (a msgpack map) and wait for its reply (up to
 * @timeout_ms). false on a connection error or timeout. */
bool itest_call(struct itest_client *client, const char *op, const uint8_t *body, size_t body_len,
                struct itest_reply *reply, unsigned timeout_ms);
/* The same, signed as @sign says. */
bool itest_call_as(struct itest_client *client, const struct itest_sign *sign, const char *op,
                   const uint8_t *body, size_t body_len, struct itest_reply *reply,
                   unsigned timeout_ms);
/* Encode a signed request frame into @out (for pipelining); returns its id. */
uint64_t itest_encode(struct itest_client *client, const struct itest_sign *sign, const char *op,
                      const uint8_t *body, size_t body_len, struct rt_buf *out);
/* Send raw bytes; read the next response frame (any id) into @reply and *id. */
bool itest_send_raw(struct itest_client *client, const uint8_t *bytes, size_t len);
bool itest_read_reply(struct itest_client *client, struct itest_reply *reply, uint64_t *id,
                      unsigned timeout_ms);
void itest_reply_init(struct itest_reply *reply);
void itest_reply_free(struct itest_reply *reply);

/* Field lookups in a reply body. */
bool itest_body_str(const struct itest_reply *reply, const char *key, char *out, size_t cap);
/* An unsigned integer field of the reply body; false if absent or not an unsigned integer. */
bool itest_body_uint(const struct itest_reply *reply, const char *key, uint64_t *out);

/* msgpack bodies for order operations. */
size_t itest_order_create_body(struct rt_buf *out, const char *app, const char *mono,
                               uint64_t amount);
size_t itest_order_key_body(struct rt_buf *out, const char *app, const char *mono,
                            const char *consistency);

uint64_t itest_now_ms(void);

/* Shards of a cluster started by itest_cluster_start (scripts/cluster.sh's default), and the
 * most that itest_cluster_start_with takes. */
#define ITEST_SHARDS 16

struct itest_shard {
    uint64_t leader;
    uint64_t applied;
    uint64_t commit;
    uint64_t history;
    uint64_t log_first; /* The first raft entry the node still holds. */
};

/* cluster.status of node @id into @views[0..cluster->shards) (and itest_map_ready); false if
 * it does not answer. */
bool itest_shard_views(const struct itest_cluster *cluster, unsigned id,
                       struct itest_shard views[ITEST_SHARDS]);
/* The node's raft message counters, as the last itest_shard_views read them. */
struct itest_raft_messages {
    uint64_t sent_on_links, sent_by_raft_uv, send_failures, received, dropped;
};
extern struct itest_raft_messages itest_raft_messages;
/* Requests the node forwarded to a shard's leader (cluster.status "forwarded"), likewise. */
extern uint64_t itest_forwarded;
/* The node's linearizable read counters (cluster.status "reads"), likewise. */
struct itest_reads {
    uint64_t linearizable, barriers, failed;
};
extern struct itest_reads itest_reads;
/* cluster.status raft_log of the node last asked (itest_shard_views). */
struct itest_raft_log {
    uint64_t writes, entries, bytes, failures;
};
extern struct itest_raft_log itest_raft_log;
/* Built with AddressSanitizer (gcc's macro, or clang's feature test). */
#if defined(__SANITIZE_ADDRESS__)
#define ITEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ITEST_SANITIZED 1
#endif
#endif
#ifndef ITEST_SANITIZED
#define ITEST_SANITIZED 0
#endif

/* cluster.status "memory", from the last itest_shard_views. */
struct itest_memory {
    uint64_t rss, malloc_in_use, state_cache, store_memtables, raft_log_memtables, raft_entries;
    uint64_t anon_huge_pages;   /* Bytes. */
    uint64_t malloc_huge_pages; /* 1 when payd asked malloc for huge pages. */
};
extern struct itest_memory itest_memory;
/* Every shard has a leader and the node has the cluster map. */
bool itest_all_leaders(const struct itest_cluster *cluster, unsigned id);
extern bool itest_map_ready;

#endif /* ITEST_H */
