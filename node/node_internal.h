/**
 * Internal to node/: the server, its I/O loops, connections, the device
 * registry and the request handlers.
 *
 * Threads: one control thread (signals, metrics, admin socket), N loop
 * threads that own their connections, and the store's writer thread. A
 * connection is touched only by its loop; other threads talk to a loop by
 * posting a cn_msg to its inbox (mutex + list, woken by uv_async).
 */
#ifndef CN_NODE_INTERNAL_H
#define CN_NODE_INTERNAL_H

#include "crypto/cn_crypto.h"
#include "node/cn_node.h"
#include "node/jwt.h"
#include "node/ratelimit.h"
#include "node/transport.h"
#include "proto/cn_proto.h"
#include "store/cn_store.h"

#include <stdatomic.h>
#include <string.h>
#include <uv.h>

typedef struct cn_loop cn_loop_t;
typedef struct cn_conn cn_conn_t;
typedef struct cn_registry cn_registry_t;
typedef struct cn_push cn_push_t;
typedef struct cn_presence cn_presence_t;
typedef struct cn_links cn_links_t;
typedef struct cn_usercache cn_usercache_t;

/* protobuf-c's message structs take non-const pointers even when only
 * packing from them; these helpers make that one cast in one place. */
static inline char *cn__pb_str(const char *s)
{
    char *out;
    memcpy(&out, &s, sizeof(out));
    return out;
}

static inline ProtobufCBinaryData cn__pb_bytes(const void *p, size_t n)
{
    ProtobufCBinaryData b;
    memcpy(&b.data, &p, sizeof(b.data));
    b.len = n;
    return b;
}

/* --------------------------------------------------------- inter-thread */

enum cn_msg_type {
    CN_MSG_STORE_DONE = 1, /* a store op finished; op->ctx is a cn_pending */
    CN_MSG_DELIVER,        /* an envelope for a device connected to this loop */
    CN_MSG_PUSH,           /* a pre-encoded ServerFrame for a device */
    CN_MSG_KICK,           /* close a connection (replaced or revoked) */
    CN_MSG_LINKED,         /* a waiting new device was approved: data is LinkComplete */
    CN_MSG_DRAIN,          /* shutdown 1: stop accepting and reading requests */
    CN_MSG_GOAWAY,         /* shutdown 2: GoingAway and a close frame to everyone */
    CN_MSG_STOP,           /* close everything and leave the loop */
};

/** A message between threads. Owned by the inbox until handled, then freed. */
typedef struct cn_msg {
    struct cn_msg *next;
    enum cn_msg_type type;
    uint64_t conn_id; /* target connection (0: none) */
    uint8_t device_id[CN_DEVICE_ID_LEN];
    uint64_t seq;     /* CN_MSG_DELIVER: mailbox seq (0 for ephemeral) */
    uint64_t sent_ns; /* CN_MSG_DELIVER: when the Send arrived (cn_mono_ns) */
    void *ptr;        /* CN_MSG_STORE_DONE: the pending request */
    size_t len;       /* bytes in data */
    uint8_t data[];   /* DELIVER, PUSH: an encoded ServerFrame */
} cn_msg_t;

/** Allocates a message with room for len data bytes; NULL on ENOMEM. */
cn_msg_t *cn__msg_new(enum cn_msg_type type, size_t len);

/** Posts msg to loop's inbox (takes ownership); thread-safe. */
void cn__loop_post(cn_loop_t *loop, cn_msg_t *msg);

/* ------------------------------------------------------------- metrics */

/** Latency histogram buckets (upper bounds, ms) of the node's own histograms. */
#define CN_LATENCY_BUCKETS_MS                                                                      \
    {                                                                                              \
        0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000                                           \
    }
#define CN_LATENCY_BUCKETS 11

/** A Prometheus histogram: per-bucket counts (+Inf last) and the sum. */
typedef struct cn_hist {
    atomic_uint_fast64_t counts[CN_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t sum_us;
} cn_hist_t;

/** Records one latency observation in microseconds; thread-safe. */
void cn__hist_observe(cn_hist_t *h, uint64_t us);

/** Why an authentication failed (label of chatnode_auth_failed_total). */
enum cn_auth_fail {
    CN_AUTHF_MALFORMED = 0,
    CN_AUTHF_EXPIRED,
    CN_AUTHF_BAD_SIGNATURE,
    CN_AUTHF_UNKNOWN_DEVICE,
    CN_AUTHF_REVOKED,
    CN_AUTHF_DISABLED,
    CN_AUTHF_INVITE,
    CN_AUTHF_OTHER,
    CN_AUTHF__COUNT,
};

/** Counters shared by every thread (relaxed atomics). */
typedef struct cn_counters {
    atomic_uint_fast64_t connections_accepted;
    atomic_uint_fast64_t connections_open;
    atomic_uint_fast64_t connections_rejected;
    atomic_uint_fast64_t handshakes_failed;
    atomic_uint_fast64_t auth_ok;
    atomic_uint_fast64_t auth_failed;
    atomic_uint_fast64_t registrations;
    atomic_uint_fast64_t messages_accepted;
    atomic_uint_fast64_t messages_duplicate;
    atomic_uint_fast64_t messages_delivered;
    atomic_uint_fast64_t messages_acked;
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
    atomic_uint_fast64_t protocol_errors;
    atomic_uint_fast64_t slow_reader_closes;
    atomic_uint_fast64_t read_pauses;      /* reading stopped at CN_CONN_PENDING_MAX */
    atomic_uint_fast64_t loop_read_pauses; /* a loop stopped reading at CN_LOOP_PENDING_MAX */
    atomic_uint_fast64_t buffers_released; /* by the buffer sweep, from quiet connections */
    atomic_uint_fast64_t timeouts;
    atomic_uint_fast64_t store_errors;
    atomic_uint_fast64_t auth_failed_by[CN_AUTHF__COUNT];
    cn_hist_t send_durable; /* Send received -> every copy durable */
    cn_hist_t send_deliver; /* Send received -> Deliver pushed to an online device */
} cn_counters_t;

/* -------------------------------------------------------------- server */

typedef struct cn_server {
    cn_node_config_t cfg;
    cn_store_t *store;
    SSL_CTX *tls;
    cn_identity_t identity; /* the node's Ed25519 key; pk is the node id */
    cn_registry_t *registry;
    cn_ratelimit_t *rl;
    cn_push_t *push; /* NULL without a push gateway */
    cn_presence_t *presence;
    cn_links_t *links;         /* devices waiting for approval */
    cn_usercache_t *usercache; /* user and group records read per request */
    cn_jwt_keys_t jwt;         /* registration policy jwt */
    cn_loop_t **loops;
    unsigned nloops;
    cn_counters_t counters;
    atomic_bool draining;
    atomic_uint_fast64_t next_conn_id;
    uint16_t bound_port; /* the port actually listened on */
} cn_server_t;

/* -------------------------------------------------- user and group cache */

/*
 * node/usercache.c: the user and group records that Send, group expansion,
 * prekey fetch and auth read per request, cached node-wide (all loops),
 * so that the loop thread does not do a synchronous RocksDB Get (and an
 * AEAD open) per message. Read through the cache with cn__user_get /
 * cn__group_get. Every change of a cached record must be followed, before
 * anyone is told about it, by cn__usercache_user_invalidate /
 * cn__usercache_group_invalidate: the rule and why it is enough are in
 * node/usercache.c.
 */

/* clang-format off */
#define CN_USERCACHE_USERS_MAX         65536u        /* cached users (≈ 80 B + 32 B per device each) */
#define CN_USERCACHE_GROUPS_MAX        4096u         /* cached groups */
#define CN_USERCACHE_GROUP_MEMBERS_MAX (256u * 1024) /* member handles held by cached groups (33 B each) */
#define CN_USERCACHE_SHARDS            16u           /* lock stripes (power of two) */
#define CN_USERCACHE_MAX_AGE_MS        60000u        /* an entry is reloaded this long after its load */
/* clang-format on */

/** What the hot paths need of a user record (not created, last_seen, presence_hidden). */
typedef struct cn_cached_user {
    bool disabled;
    uint32_t ndevices; /* <= CN_DEVICES_HARD_MAX */
    uint8_t devices[CN_DEVICES_HARD_MAX][CN_DEVICE_ID_LEN];
} cn_cached_user_t;

/** A cached group: its members' handles in join order (roles not kept). Read-only. */
typedef struct cn_cached_group {
    uint64_t version;
    uint32_t n;
    const char (*members)[CN_HANDLE_MAX + 1];
} cn_cached_group_t;

/** Bounds of a cache (0: the CN_USERCACHE_* default). */
typedef struct cn_usercache_limits {
    uint32_t users, groups, group_members;
    uint32_t max_age_ms;
} cn_usercache_limits_t;

/** Counters and sizes, summed over the shards (metrics, tests). */
typedef struct cn_usercache_stats {
    /* Evictions: dropped for room (least recently used) or for age. */
    uint64_t user_hits, user_misses, user_evictions, user_entries;
    uint64_t group_hits, group_misses, group_evictions, group_entries, group_members;
    uint64_t invalidations;   /* invalidate calls (users and groups) */
    uint64_t inserts_refused; /* loads not cached: an invalidation raced them */
} cn_usercache_stats_t;

/** Returns owned (free with cn__usercache_free); limits NULL: the defaults. NULL on ENOMEM. */
cn_usercache_t *cn__usercache_new(const cn_usercache_limits_t *limits);
/** Accepts NULL. No group reference may be held any more. */
void cn__usercache_free(cn_usercache_t *uc);
void cn__usercache_stats(cn_usercache_t *uc, cn_usercache_stats_t *out);

/*
 * The low-level steps, for cn__user_get and cn__group_get and the tests.
 * find: CN_OK with a copy (users) or a reference (groups: release it);
 * CN_ENOTFOUND on a miss, with *epoch set to what insert needs. insert
 * caches a value loaded from the store after that miss, unless an
 * invalidation of the shard came in between (then it returns false).
 * Handles must be normalized; everything is borrowed.
 */
CN_MUST_USE int cn__usercache_user_find(cn_usercache_t *uc, const char *handle,
                                        cn_cached_user_t *out, uint64_t *epoch);
bool cn__usercache_user_insert(cn_usercache_t *uc, const char *handle, const cn_rec_user_t *u,
                               uint64_t epoch);
CN_MUST_USE int cn__usercache_group_find(cn_usercache_t *uc, const uint8_t id[CN_GROUP_ID_LEN],
                                         const cn_cached_group_t **out, uint64_t *epoch);
/**
 * Builds the cached form of g and caches it (as for the user insert);
 * *out receives a reference to it either way (release it). CN_ENOMEM.
 */
CN_MUST_USE int cn__usercache_group_insert(cn_usercache_t *uc, const uint8_t id[CN_GROUP_ID_LEN],
                                           const cn_rec_group_t *g, uint64_t epoch,
                                           const cn_cached_group_t **out);
/** Drops a reference from find, insert or cn__group_get. Accepts NULL. */
void cn__usercache_group_release(const cn_cached_group_t *g);

/** Drops the entry and refuses every insert of its shard loaded before now. Any thread. */
void cn__usercache_user_invalidate(cn_usercache_t *uc, const char *handle);
void cn__usercache_group_invalidate(cn_usercache_t *uc, const uint8_t id[CN_GROUP_ID_LEN]);
/** The lock stripe of a handle, 0..CN_USERCACHE_SHARDS-1 (tests: LRU order is per stripe). */
unsigned cn__usercache_user_shard(cn_usercache_t *uc, const char *handle);
/** Invalidates every user (when the changed handle is unknown). */
void cn__usercache_users_clear(cn_usercache_t *uc);

/**
 * A user through the cache, loaded from the store on a miss: CN_OK,
 * CN_ENOTFOUND (not cached), CN_EINVAL or CN_EIO. Any thread.
 */
CN_MUST_USE int cn__user_get(cn_server_t *s, const char *handle, cn_cached_user_t *out);
/** A group through the cache: as cn__user_get; *out is a reference to release. */
CN_MUST_USE int cn__group_get(cn_server_t *s, const uint8_t id[CN_GROUP_ID_LEN],
                              const cn_cached_group_t **out);
/** True when handle is a member of g. */
bool cn__cached_group_has(const cn_cached_group_t *g, const char *handle);

/* ---------------------------------------------------------------- loop */

struct cn_loop {
    cn_server_t *server;
    unsigned index;
    uv_loop_t uv;
    uv_thread_t thread;
    uv_tcp_t listener;
    bool listening;
    uv_async_t wakeup;
    uv_mutex_t inbox_lock;
    cn_msg_t *inbox_head, *inbox_tail;
    /* Connections of this loop by id: chained buckets (cn_conn.hnext). */
    cn_conn_t **buckets;
    size_t nbuckets, nconns;
    uv_prepare_t flusher;    /* flushes dirty connections once per iteration */
    uv_timer_t sweeper;      /* releases the buffers of quiet connections */
    cn_conn_t *dirty;        /* connections with output to encrypt and write */
    unsigned pending_ops;    /* store ops in flight for all its connections */
    cn_conn_t *read_waiters; /* not read until pending_ops falls to half its limit */
    uint64_t event_ns;       /* cn_mono_ns() when the running read or inbox callback began */
    bool draining;           /* shutting down: no new connections */
    bool paused;             /* shutting down: no new requests read */
    bool stopping;
};

/**
 * The loop's clock for connection deadlines and rate limits: monotonic ms,
 * read once per iteration by libuv (uv_now), the same base on every loop.
 * Wall time (cn_now_ms) is for what clients and records see.
 */
static inline uint64_t cn__loop_now(const cn_loop_t *loop)
{
    return uv_now(&loop->uv);
}

/**
 * Microseconds from start_ns (cn_mono_ns) to the start of the callback the
 * loop is running, for the latency histograms: one clock read per socket
 * read or inbox wake-up instead of one per request and per answer.
 */
static inline uint64_t cn__loop_since_us(const cn_loop_t *loop, uint64_t start_ns)
{
    return loop->event_ns > start_ns ? (loop->event_ns - start_ns) / 1000 : 0;
}

CN_MUST_USE int cn__loop_init(cn_loop_t *loop, cn_server_t *server, unsigned index, int fd);
/** Runs the loop on its own thread. */
CN_MUST_USE int cn__loop_start(cn_loop_t *loop);
/** Joins the thread and releases everything; after CN_MSG_STOP. */
void cn__loop_join(cn_loop_t *loop);

void cn__loop_conn_add(cn_loop_t *loop, cn_conn_t *c);
void cn__loop_conn_remove(cn_loop_t *loop, cn_conn_t *c);
cn_conn_t *cn__loop_conn_find(cn_loop_t *loop, uint64_t id);

/* ------------------------------------------------------------ registry */

/** Where an authenticated device is connected. */
typedef struct cn_route {
    unsigned loop;
    uint64_t conn_id;
} cn_route_t;

cn_registry_t *cn__registry_new(void);
void cn__registry_free(cn_registry_t *r);
/** Sets the device's route; *old receives the replaced one (conn_id 0: none). */
CN_MUST_USE int cn__registry_set(cn_registry_t *r, const uint8_t dev[CN_DEVICE_ID_LEN],
                                 cn_route_t route, cn_route_t *old);
/** Removes the device's route only if it still points at conn_id. */
void cn__registry_remove(cn_registry_t *r, const uint8_t dev[CN_DEVICE_ID_LEN], uint64_t conn_id);
/** CN_ENOTFOUND when the device is not connected. */
CN_MUST_USE int cn__registry_get(cn_registry_t *r, const uint8_t dev[CN_DEVICE_ID_LEN],
                                 cn_route_t *out);
size_t cn__registry_size(cn_registry_t *r);

/* ---------------------------------------------------------- connection */

enum cn_conn_state {
    CN_CONN_TLS = 1, /* TLS handshake */
    CN_CONN_HTTP,    /* waiting for the upgrade request */
    CN_CONN_UNAUTH,  /* WebSocket open, challenge sent */
    CN_CONN_AUTHED,  /* a device is signed in */
    CN_CONN_CLOSING, /* close frame queued; flushing */
    CN_CONN_CLOSED,  /* uv_close called */
};

struct cn_conn {
    cn_loop_t *loop;
    cn_conn_t *hnext; /* loop bucket chain */
    uint64_t id;
    enum cn_conn_state state;
    uv_tcp_t tcp;
    uv_timer_t timer;
    char peer[64];  /* ip:port for logs */
    uint8_t ip[16]; /* source address (IPv4-mapped), the key of per-IP limits */
    cn_tls_t *tls;
    cn_ws_t *ws;
    cn_buf_t plain_in;     /* decrypted bytes not yet parsed (HTTP phase) */
    cn_buf_t plain_out;    /* WebSocket frames not yet encrypted (one TLS write per flush) */
    cn_conn_t *next_dirty; /* the loop's list of connections to flush */
    bool dirty;
    cn_buf_t out;      /* ciphertext waiting for the socket */
    cn_buf_t inflight; /* ciphertext of the write in flight */
    uv_write_t write_req;
    bool writing;
    bool reading;
    bool close_after_flush;
    bool lingering;         /* output done, FIN sent: dropping input until EOF */
    bool authed;            /* registered in the device registry */
    uint8_t handles_closed; /* tcp + timer; freed at 2 */
    bool io_recent;         /* read or flushed since the last buffer sweep */
    uint64_t linger_until_ms;
    uint64_t ws_opened_ms;
    uint64_t opened_ms;
    uint64_t last_activity_ms;
    uint64_t last_ping_ms;
    unsigned pending_ops;             /* store ops in flight for this connection */
    cn_conn_t *wait_prev, *wait_next; /* the loop's read_waiters */
    bool read_waiting;
    /* Authentication. */
    uint8_t nonce[CN_NONCE_LEN];
    uint64_t challenge_time;
    uint8_t device_id[CN_DEVICE_ID_LEN];
    char handle[CN_HANDLE_MAX + 1];
    /* Mailbox delivery: the next seq to push (0: unknown, pump first). */
    uint64_t next_seq;
    bool pumping;          /* reading the mailbox from the store */
    bool auth_pending;     /* a Register is being stored */
    bool drained_sent;     /* MailboxDrained pushed once */
    uint64_t link_expires; /* a LinkDevice waits for approval until then (0: none) */
    /* Presence subscriptions of this connection (handles), for cleanup. */
    char (*subs)[CN_HANDLE_MAX + 1];
    uint32_t nsubs;
};

/* Requests of one connection waiting for the store; at this many the node
 * stops reading the connection until half of them are answered, so that a
 * client pipelining faster than the disk commits holds a bounded amount of
 * the node's memory and feels it as TCP backpressure. */
#define CN_CONN_PENDING_MAX 256

/* Store ops in flight for one loop; at this many the loop stops reading
 * every connection until half of them are answered. The store answers in
 * order, so this bounds how long a request waits behind others: above
 * what one core commits, an Ack queued behind 25,600 Sends (100 clients at
 * CN_CONN_PENDING_MAX) waited about 350 ms, longer than a mailbox memtable
 * lives, so a message's put and its delete no longer met in one memtable
 * and both went to disk. Twice a full batch at saturation (about 2,000
 * ops) keeps the writer's batches as large as before. */
#define CN_LOOP_PENDING_MAX 4096

/* After our last bytes and a FIN, how long a closing connection may keep
 * sending before it is dropped (its input is discarded meanwhile). */
#define CN_LINGER_MS 2000

/** Accepts a connection on loop (called from the listener callback). */
void cn__conn_accept(cn_loop_t *loop);

/** Encodes and sends a ServerFrame on c (no-op when c is closing). */
void cn__conn_send_frame(cn_conn_t *c, const Chat__ServerFrame *frame);
/** Sends pre-encoded ServerFrame bytes. */
void cn__conn_send_bytes(cn_conn_t *c, const uint8_t *p, size_t n);
/** Encodes and sends the Deliver of env (its ciphertext) under seq (0: ephemeral). */
void cn__conn_send_deliver(cn_conn_t *c, const cn_rec_envelope_t *env, uint64_t seq);
/** Whether c may be read: its output backlog and store requests are below their limits. */
bool cn__conn_may_read(const cn_conn_t *c);
/** Starts the WebSocket closing handshake with code and reason. */
void cn__conn_close(cn_conn_t *c, uint16_t code, const char *reason);
/** Drops the connection at once (no close frame), e.g. a slow reader. */
void cn__conn_abort(cn_conn_t *c, const char *why);
/** Flushes every dirty connection of the loop (before it sleeps). */
void cn__loop_flush_dirty(cn_loop_t *loop);
/** Frees the loop thread's scratch buffers; last call on a loop thread. */
void cn__conn_thread_exit(void);
/**
 * The loop's buffer sweep (every CN_BUFFER_SWEEP_MS): a connection that
 * neither read nor flushed since the previous sweep gives back its empty
 * buffers, so idle connections hold none while busy ones keep theirs.
 */
#define CN_BUFFER_SWEEP_MS 500
void cn__conn_sweep_buffers(cn_conn_t *c);
/** (Re)arms the connection timer for its next deadline (after a state change). */
void cn__conn_arm_timer(cn_conn_t *c);
/** Starts reading from the socket, whatever the limits. */
void cn__conn_read_start(cn_conn_t *c);
/** Resumes reading after back-pressure, or waits for the loop's requests to fall. */
void cn__conn_read_resume(cn_conn_t *c);
/** Resumes the connections that waited for the loop's requests to fall. */
void cn__loop_resume_readers(cn_loop_t *loop);
/** True when the output backlog is above the soft limit. */
bool cn__conn_backlogged(const cn_conn_t *c);
/** Sends a Response with status and detail (and optional result set by caller). */
void cn__conn_respond(cn_conn_t *c, Chat__Response *resp);
void cn__conn_respond_status(cn_conn_t *c, uint64_t request_id, Chat__Status status,
                             const char *detail);
/**
 * Takes cost tokens of action for this connection (its device, or its IP
 * for per-IP actions). On refusal answers RATE_LIMITED with retry_after_ms
 * and returns false.
 */
bool cn__conn_rate_ok(cn_conn_t *c, uint64_t request_id, enum cn_rl_action a, const uint8_t *key,
                      size_t keylen, double cost);
/** A Send of an authenticated device: one send token and bytes send-bytes
 * tokens (cn__rl_take_send); on refusal answers like cn__conn_rate_ok. */
bool cn__conn_send_rate_ok(cn_conn_t *c, uint64_t request_id, double bytes);

/* ------------------------------------------------------------ handlers */

/**
 * A request waiting for a store op. Allocated by a handler with room for
 * the op's borrowed data; freed after its completion ran on the loop.
 */
typedef struct cn_pending cn_pending_t;
typedef void (*cn_pending_fn)(cn_conn_t *c, cn_pending_t *p);
struct cn_pending {
    cn_store_op_t op;
    cn_loop_t *loop;
    uint64_t conn_id;
    uint64_t request_id;
    uint64_t started_ns;
    cn_pending_fn complete; /* runs on the loop; c is NULL if the conn is gone */
    bool silent_ok;         /* the request asked for an answer only on failure */
    void *extra;            /* handler-owned allocation freed with the pending */
    cn_msg_t *done_msg;     /* CN_MSG_STORE_DONE, in the pending's own block */
    size_t size;            /* of the allocation: the struct and extra */
};

/** Allocates a pending request for c; extra_len bytes follow at ->extra. */
cn_pending_t *cn__pending_new(cn_conn_t *c, uint64_t request_id, enum cn_store_op_type type,
                              cn_pending_fn complete, size_t extra_len);
/**
 * The calling loop thread's pool of pending blocks: trim gives back the
 * blocks beyond a floor that stayed unused since the previous trim (the
 * loop's sweep), returns how many; size is how many it holds.
 */
size_t cn__pending_pool_trim(void);
size_t cn__pending_pool_size(void);
/** Frees a pending request that was never submitted. */
void cn__pending_free(cn_pending_t *p);
/** Frees a completed pending that no loop will finish (a stopped loop's
 * inbox), outside any pool. */
void cn__pending_discard(cn_pending_t *p);
/** Submits to the store; on refusal answers UNAVAILABLE and frees p. */
void cn__pending_submit(cn_conn_t *c, cn_pending_t *p);
/** Runs p->complete on its loop and frees p (CN_MSG_STORE_DONE). */
void cn__pending_finish(cn_loop_t *loop, cn_pending_t *p);

/** Dispatches one decoded ClientFrame (after the size and decode checks). */
void cn__dispatch(cn_conn_t *c, const uint8_t *p, size_t n);
/** Frees the loop thread's request arena and pending pool; last call on a loop thread. */
void cn__dispatch_thread_exit(void);

void cn__handle_auth(cn_conn_t *c, uint64_t rid, const Chat__Auth *m);
void cn__handle_register(cn_conn_t *c, uint64_t rid, const Chat__Register *m);
void cn__handle_upload_prekeys(cn_conn_t *c, uint64_t rid, const Chat__UploadPrekeys *m);
void cn__handle_fetch_prekeys(cn_conn_t *c, uint64_t rid, const Chat__FetchPrekeys *m);
void cn__handle_get_devices(cn_conn_t *c, uint64_t rid, const Chat__GetDevices *m);
void cn__handle_send(cn_conn_t *c, uint64_t rid, const Chat__Send *m);
void cn__handle_group_send(cn_conn_t *c, uint64_t rid, const Chat__Send *m);
void cn__handle_group_create(cn_conn_t *c, uint64_t rid, const Chat__GroupCreate *m);
void cn__handle_group_update(cn_conn_t *c, uint64_t rid, const Chat__GroupUpdate *m);
void cn__handle_group_get(cn_conn_t *c, uint64_t rid, const Chat__GroupGet *m);
void cn__handle_media_begin(cn_conn_t *c, uint64_t rid, const Chat__MediaBegin *m);
void cn__handle_media_chunk(cn_conn_t *c, uint64_t rid, const Chat__MediaChunk *m);
void cn__handle_media_end(cn_conn_t *c, uint64_t rid, const Chat__MediaEnd *m);
void cn__handle_media_get(cn_conn_t *c, uint64_t rid, const Chat__MediaGet *m);
void cn__handle_history_append(cn_conn_t *c, uint64_t rid, const Chat__HistoryAppend *m);
void cn__handle_history_query(cn_conn_t *c, uint64_t rid, const Chat__HistoryQuery *m);
void cn__handle_list_threads(cn_conn_t *c, uint64_t rid, const Chat__ListThreads *m);
/** True when handle is a member of g. */
bool cn__group_is_member(const cn_rec_group_t *g, const char *handle);
/** Answers a GroupInfo built from g with status and detail. */
void cn__respond_group(cn_conn_t *c, uint64_t rid, Chat__Status status, const char *detail,
                       const uint8_t *group_id, const cn_rec_group_t *g);
/**
 * A Send request for n recipients with data_bytes of room after the
 * recipient array (for ciphertext copies); the envelope header is filled
 * from m. Answers and returns NULL on ENOMEM.
 */
cn_pending_t *cn__send_pending_new(cn_conn_t *c, uint64_t rid, const Chat__Send *m, size_t n,
                                   size_t data_bytes);
/** Fills one recipient (marks it for a wake-up when offline). */
void cn__send_recipient(cn_conn_t *c, cn_store_recipient_t *r, const uint8_t *device,
                        cn_slice_t ciphertext);
/** Stores (or, ephemeral, only pushes) a prepared send; answers the client. */
void cn__send_submit(cn_conn_t *c, uint64_t rid, cn_pending_t *p, bool ephemeral);
void cn__handle_ack(cn_conn_t *c, uint64_t rid, const Chat__Ack *m);
void cn__handle_ping(cn_conn_t *c, uint64_t rid, const Chat__Ping *m);
void cn__handle_subscribe(cn_conn_t *c, uint64_t rid, const Chat__Subscribe *m);
void cn__handle_unsubscribe(cn_conn_t *c, uint64_t rid, const Chat__Unsubscribe *m);
void cn__handle_set_presence(cn_conn_t *c, uint64_t rid, const Chat__SetPresence *m);

/** Sends the Challenge push when the WebSocket opens. */
void cn__auth_send_challenge(cn_conn_t *c);

/* ------------------------------------------------------------ delivery */

/** The device signed in: register it and start draining its mailbox. */
void cn__delivery_start(cn_conn_t *c);
/** Continues a paused mailbox drain (output drained below the soft limit). */
void cn__delivery_resume(cn_conn_t *c);
/** A CN_MSG_DELIVER for c's device. */
void cn__delivery_on_msg(cn_conn_t *c, const cn_msg_t *msg);
/**
 * Routes the Deliver of a freshly stored (seq > 0) or ephemeral (seq 0)
 * envelope (env, with this device's ciphertext) to the loop the device is
 * connected to, if any. here is the calling loop (its thread only), or
 * NULL: a device on it gets the frame at once instead of through the inbox.
 */
void cn__delivery_route(cn_server_t *s, cn_loop_t *here, const uint8_t device[CN_DEVICE_ID_LEN],
                        uint64_t seq, const cn_rec_envelope_t *env, uint64_t sent_ns);
/** Encodes a mailbox record as a Deliver frame and sends it on c. */
CN_MUST_USE int cn__delivery_send_record(cn_conn_t *c, uint64_t seq, const uint8_t *value,
                                         size_t len);
/** Pushes pre-encoded ServerFrame bytes to a device if it is online. */
void cn__push_to_device(cn_server_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                        const Chat__ServerFrame *frame);

/* ------------------------------------------------------------ presence */

#define CN_SUBSCRIPTIONS_MAX 1000 /* watched handles per connection */

cn_presence_t *cn__presence_new(void);
void cn__presence_free(cn_presence_t *p);
/** A device of handle authenticated / went away (any thread). */
void cn__presence_online(cn_server_t *s, const char *handle);
void cn__presence_offline(cn_server_t *s, const char *handle);
/** Watches handle for c and pushes its current state; CN_ENOMEM. */
CN_MUST_USE int cn__presence_subscribe(cn_server_t *s, cn_conn_t *c, const char *handle);
void cn__presence_unsubscribe(cn_server_t *s, cn_conn_t *c, const char *handle);
/** Drops every subscription of a closing connection (its loop thread). */
void cn__presence_conn_gone(cn_conn_t *c);
/** The user changed its visibility (persisted already). */
void cn__presence_set_hidden(cn_server_t *s, const char *handle, bool hidden);

/** Pushes a ServerFrame to one connection of a loop (any thread). */
void cn__push_to_conn(cn_server_t *s, unsigned loop, uint64_t conn_id,
                      const Chat__ServerFrame *frame);
/** Closes the device's connection, if any, with 1008 and why (any thread). */
void cn__kick_device(cn_server_t *s, const uint8_t device[CN_DEVICE_ID_LEN], const char *why);
/** A store op done callback that frees a calloc'd, fire-and-forget op. */
void cn__free_op(cn_store_op_t *op);

/* --------------------------------------------------------------- links */

#define CN_LINKS_MAX     256             /* devices waiting for approval, node-wide */
#define CN_LINK_TTL_MS   (5 * 60 * 1000) /* a code is valid this long */
#define CN_LINK_CODE_LEN 9               /* "1234-5678" */

typedef struct cn_link {
    char code[CN_LINK_CODE_LEN + 1];
    char handle[CN_HANDLE_MAX + 1];
    uint8_t device_id[CN_DEVICE_ID_LEN];
    char name[CN_DEVICE_NAME_MAX + 1];
    unsigned loop;
    uint64_t conn_id;
    uint64_t expires; /* 0: free slot */
} cn_link_t;

cn_links_t *cn__links_new(void);
void cn__links_free(cn_links_t *l);
/** Adds a pending link (code chosen here); CN_ELIMIT when the table is full. */
CN_MUST_USE int cn__links_add(cn_links_t *l, const cn_link_t *in, char code[CN_LINK_CODE_LEN + 1]);
/** Finds (and with take, removes) the live link of code; CN_ENOTFOUND. */
CN_MUST_USE int cn__links_find(cn_links_t *l, const char *code, bool take, cn_link_t *out);

void cn__handle_link_device(cn_conn_t *c, uint64_t rid, const Chat__LinkDevice *m);
void cn__handle_link_approve(cn_conn_t *c, uint64_t rid, const Chat__LinkApprove *m);
void cn__handle_revoke_device(cn_conn_t *c, uint64_t rid, const Chat__RevokeDevice *m);
/** Tells every connected device of handle its current device list. */
void cn__devices_changed(cn_server_t *s, const char *handle);
/** CN_MSG_LINKED on the new device's loop: LinkComplete, then a fresh Challenge. */
void cn__link_completed(cn_conn_t *c, const uint8_t *frame, size_t len);

/* ------------------------------------------------------------- control */

/** Starts the metrics HTTP listener on the control loop. */
CN_MUST_USE int cn__metrics_start(cn_server_t *s, uv_loop_t *loop, uv_tcp_t *listener);

/** Runs one admin command (control thread); fills resp. */
void cn__admin_execute(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);
/* Helpers shared by the admin command files (node/admin_*.c). */
const char *cn__admin_arg(const cn_admin_msg_t *req, const char *key);
bool cn__admin_arg_device(const cn_admin_msg_t *req, cn_admin_msg_t *resp, const char *key,
                          uint8_t out[CN_DEVICE_ID_LEN]);
bool cn__admin_arg_handle(const cn_admin_msg_t *req, cn_admin_msg_t *resp,
                          char out[CN_HANDLE_MAX + 1]);
cn_admin_row_t *cn__admin_add_row(cn_admin_msg_t *resp);
void cn__admin_check_rows(cn_admin_msg_t *resp, int rc);
/** Submits op to the store and waits for its durable answer (control thread). */
int cn__admin_submit_wait(cn_server_t *s, cn_store_op_t *op);
uint32_t cn__admin_status_of(int rc);
void cn__cmd_ratelimit_list(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);
void cn__cmd_ratelimit_set(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);
void cn__cmd_ratelimit_reset(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);
void cn__cmd_keys_list(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);
void cn__cmd_keys_rotate(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);
void cn__cmd_keys_retire(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);

/** Sets an error status and printf-formatted message on resp. */
void cn__admin_fail(cn_admin_msg_t *resp, uint32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** Loads the identity provider's keys of policy jwt from the configuration. */
CN_MUST_USE int cn__jwt_keys_load(const cn_node_config_t *cfg, cn_jwt_keys_t *out, char *err,
                                  size_t errlen);
/** Loads the rate-limit policies persisted in meta ("ratelimit/..."). */
void cn__rl_load(cn_server_t *s);

/** Starts the offline wake-up sender for gateway url (http://host[:port]/path). */
CN_MUST_USE int cn__push_new(cn_server_t *s, const char *url, cn_push_t **out);
/** Wakes the sender: new events were stored. Thread-safe; accepts NULL. */
void cn__push_kick(cn_push_t *p);
/** Wake-ups delivered and failed attempts since start (0 without a gateway). */
void cn__push_stats(cn_push_t *p, uint64_t *sent, uint64_t *failed);
/** Stops the sender thread (events not yet sent stay stored). Accepts NULL. */
void cn__push_free(cn_push_t *p);

/** Starts the admin Unix socket (mode 0600) on the control loop. */
CN_MUST_USE int cn__admin_start(cn_server_t *s, uv_loop_t *loop, uv_pipe_t *listener);

#endif /* CN_NODE_INTERNAL_H */
