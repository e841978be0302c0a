/*
 * libchatclient internals shared between its files (and its unit tests):
 * the home directory's stores (outbox, seen-set, device cache, prekeys),
 * small file helpers and the connection (TLS + WebSocket) layer.
 */
#ifndef CN_CLIENT_INT_H
#define CN_CLIENT_INT_H

#include "client/cn_client.h"
#include "crypto/cn_crypto.h"

#define CN__PATH_MAX 4096

#include <string.h>

/* protobuf-c's message structs take char * for strings they never write;
 * this lends them a const string without a qualifier-dropping cast. */
static inline char *cn__str_mut(const char *s)
{
    char *p;
    memcpy(&p, &s, sizeof(p));
    return p;
}

/** A protobuf bytes field borrowing n bytes at p (never written through). */
static inline ProtobufCBinaryData cn__bin(const void *p, size_t n)
{
    ProtobufCBinaryData b;
    b.len = n;
    memcpy(&b.data, &p, sizeof(b.data));
    return b;
}

/* ---------------------------------------------------------------- files */

/** Writes p to path atomically: tmp file (mode), fsync, rename, fsync dir. */
CN_MUST_USE int cn__file_write_atomic(const char *path, const void *p, size_t n, int mode);
/**
 * Creates a new file from tmpl (ending in XXXXXX, rewritten with the name
 * chosen), writes p and fsyncs it; the directory is not synced.
 */
CN_MUST_USE int cn__file_write_new(char *tmpl, const void *p, size_t n, int mode);
/** Reads a whole file (at most max bytes) into out (reset first). */
CN_MUST_USE int cn__file_read(const char *path, size_t max, cn_buf_t *out);
/** fsyncs a directory. */
CN_MUST_USE int cn__dir_sync(const char *dir);
/** mkdir mode unless it exists as a directory. */
CN_MUST_USE int cn__mkdir(const char *dir, int mode);

/* --------------------------------------------------------------- outbox */

/* Outbox entries that are not Sends of a Chat__Kind: a HistoryAppend
 * (content: thread tag ‖ entry id ‖ time u64 ‖ sealed entry) and a group
 * send (content: group id ‖ encoded content). */
#define CN__KIND_HISTORY       16
#define CN__KIND_GROUP         17
#define CN__OUTBOX_CONTENT_MAX (CN_CLIENT_CONTENT_MAX + 1024u)
#define CN__OUTBOX_MAX_FILE    (CN__OUTBOX_CONTENT_MAX + 128u)

/** One queued message (owned content). */
typedef struct cn__outbox_entry {
    uint64_t seq; /* from the file name: directory order = send order */
    uint8_t kind; /* Chat__Kind */
    uint8_t message_id[CN_MESSAGE_ID_LEN];
    char to[CN_HANDLE_MAX + 1];
    uint64_t created;
    cn_buf_t content; /* encoded cn_content */
} cn__outbox_entry_t;

/**
 * Appends an entry as DIR/<%020llu seq>.msg, durably (file and directory
 * fsync'd). *next_seq is the sequence to try (0: one above the largest
 * queued); a name taken by a concurrent writer moves on to the next one.
 * Sets e->seq and advances *next_seq past it.
 */
CN_MUST_USE int cn__outbox_put(const char *dir, uint64_t *next_seq, cn__outbox_entry_t *e);
/**
 * Lists the outbox in send order: *out is an owned array of *n entries;
 * free with cn__outbox_list_free. Unreadable files are skipped and logged.
 */
CN_MUST_USE int cn__outbox_list(const char *dir, cn__outbox_entry_t **out, size_t *n);
void cn__outbox_list_free(cn__outbox_entry_t *v, size_t n);
/** Removes an entry (durably); a missing file is not an error. */
CN_MUST_USE int cn__outbox_remove(const char *dir, uint64_t seq);
/** Encodes / decodes one outbox file's bytes. */
CN_MUST_USE int cn__outbox_encode(const cn__outbox_entry_t *e, cn_buf_t *out);
CN_MUST_USE int cn__outbox_decode(const uint8_t *p, size_t n, cn__outbox_entry_t *e);

/* ------------------------------------------------------------- seen-set */

#define CN__SEEN_KEY_LEN (CN_DEVICE_ID_LEN + CN_MESSAGE_ID_LEN)

/** A bounded FIFO set of (device, message id), persisted as an append log. */
typedef struct cn__seen cn__seen_t;

/** Opens (or creates) the set stored at path, keeping the newest cap keys. */
CN_MUST_USE int cn__seen_open(const char *path, size_t cap, cn__seen_t **out);
void cn__seen_close(cn__seen_t *s);
bool cn__seen_has(const cn__seen_t *s, const uint8_t dev[CN_DEVICE_ID_LEN],
                  const uint8_t id[CN_MESSAGE_ID_LEN]);
/** Adds a key (a no-op when present), appending it to the log (not synced). */
CN_MUST_USE int cn__seen_add(cn__seen_t *s, const uint8_t dev[CN_DEVICE_ID_LEN],
                             const uint8_t id[CN_MESSAGE_ID_LEN]);
/** Makes every added key durable (fdatasync); compacts an oversized log. */
CN_MUST_USE int cn__seen_sync(cn__seen_t *s);
size_t cn__seen_count(const cn__seen_t *s);

/* ---------------------------------------------------------- device cache */

/** A recipient's device ids as last learned from CONFLICT answers. */
typedef struct cn__devices {
    uint32_t n;
    uint8_t ids[CN_DEVICES_HARD_MAX][CN_DEVICE_ID_LEN];
} cn__devices_t;

/** Loads HOME/devices/<handle>; an empty list when missing. */
CN_MUST_USE int cn__devices_load(const char *home, const char *handle, cn__devices_t *out);
CN_MUST_USE int cn__devices_save(const char *home, const char *handle, const cn__devices_t *d);
/** Applies a Conflict: drops stale ids, adds missing ones. */
CN_MUST_USE int cn__devices_apply(cn__devices_t *d, const ProtobufCBinaryData *missing,
                                  size_t nmissing, const ProtobufCBinaryData *stale, size_t nstale);

/* --------------------------------------------------------------- prekeys */

/** Private prekeys kept for the E2E layer (X3DH). Keys in sodium memory. */
typedef struct cn__prekeys {
    uint32_t next_key_id;
    uint32_t signed_id;
    cn_x25519_t signed_kp;
    uint32_t n; /* one-time prekeys held */
    uint32_t *ids;
    cn_x25519_t *otpk;
} cn__prekeys_t;

#define CN__PREKEYS_HELD_MAX 1000

/** Loads / saves HOME/prekeys sealed under the home key (label "prekeys").
 * A plaintext file of the first format is still read (and sealed when saved). */
CN_MUST_USE int cn__prekeys_load(const char *path, const uint8_t *home_key, cn__prekeys_t *pk);
CN_MUST_USE int cn__prekeys_save(const char *path, const uint8_t *home_key,
                                 const cn__prekeys_t *pk);
/** Deletes the one-time prekey key_id (private half wiped); false if absent. */
bool cn__prekeys_remove(cn__prekeys_t *pk, uint32_t key_id);
/** Generates a signed prekey when missing and count new one-time prekeys. */
CN_MUST_USE int cn__prekeys_generate(cn__prekeys_t *pk, bool new_signed, uint32_t count);
void cn__prekeys_dispose(cn__prekeys_t *pk);

/* ------------------------------------------------------------ connection */

typedef struct cn__conn cn__conn_t;

typedef struct cn__tls_opts {
    const char *ca_file;
    bool insecure;
} cn__tls_opts_t;

/**
 * Connects to url, completes TLS and the WebSocket upgrade before
 * deadline_ms (cn_mono_ns()/1e6 clock). CN_ETIMEDOUT, CN_ECLOSED (refused /
 * reset), CN_EAUTH (certificate verification failed), CN_EPROTO (bad
 * upgrade answer). Returns owned; free with cn__conn_free.
 */
CN_MUST_USE int cn__conn_open(const cn_client_url_t *url, const cn__tls_opts_t *tls,
                              uint64_t deadline_ms, cn__conn_t **out);
void cn__conn_free(cn__conn_t *c);
/** The RFC 9266 exporter of this TLS connection. */
CN_MUST_USE int cn__conn_exporter(cn__conn_t *c, uint8_t out[CN_EXPORTER_LEN]);
/** Packs and sends one frame (queued in wslay and written out). */
CN_MUST_USE int cn__conn_send(cn__conn_t *c, const Chat__ClientFrame *f, uint64_t deadline_ms);
/**
 * Waits for the next ServerFrame until deadline_ms. Returns owned;
 * free with chat__server_frame__free_unpacked(f, NULL). CN_ETIMEDOUT when
 * nothing came, CN_ECLOSED when the connection is gone.
 */
CN_MUST_USE int cn__conn_recv(cn__conn_t *c, uint64_t deadline_ms, Chat__ServerFrame **out);
/** Sends a WebSocket ping (keep-alive). */
CN_MUST_USE int cn__conn_ping(cn__conn_t *c, uint64_t deadline_ms);

/** Monotonic milliseconds. */
uint64_t cn__now_ms(void);

/* ------------------------------------------------------------- home key */

/**
 * Opens (or, for a new home, creates) the key that seals the home at rest
 * (client/keystore.c): HOME/home.params says how it is made, from the key
 * file HOME/home.key or from Argon2id over a passphrase. Returns the key
 * in sodium memory (free with sodium_free). CN_EAUTH for a wrong or
 * missing passphrase.
 */
CN_MUST_USE int cn__home_key_open(const char *home, const cn_client_options_t *opt,
                                  uint8_t **key_out);
/** Reads HOME-relative sealed file path into out (reset, wipe after use). */
CN_MUST_USE int cn__sealed_read(const uint8_t *key, const char *path, const char *label, size_t max,
                                cn_buf_t *out);
/** Seals p and writes it atomically to path (mode 0600). */
CN_MUST_USE int cn__sealed_write(const uint8_t *key, const char *path, const char *label,
                                 const void *p, size_t n);
/** Loads the identity (sealed HOME/identity, or a legacy identity.key that
 * is then sealed and removed); CN_ENOTFOUND when there is none. */
CN_MUST_USE int cn__identity_load(const char *home, const uint8_t *key, cn_identity_t *id);
CN_MUST_USE int cn__identity_save(const char *home, const uint8_t *key, const cn_identity_t *id);

/* ------------------------------------------------------------------ E2E */

/** One peer device's session, cached in memory (client/e2e.c). */
typedef struct cn__peer {
    uint8_t dev[CN_DEVICE_ID_LEN];
    cn_session_t *s;
    bool dirty; /* changed since it was last written */
} cn__peer_t;

/** Test-only delivery faults (CHATCLIENT_TEST_FAULTS, docs/E2E.md). */
typedef struct cn__faults {
    bool on;
    uint32_t drop, reorder, dup, corrupt; /* per mille */
    uint8_t *held;                        /* a packed Deliver held back for reordering */
    size_t held_len;
} cn__faults_t;

/** Encrypts content for one device of handle (its session must exist). */
CN_MUST_USE int cn__e2e_seal(cn_client_t *c, const uint8_t dev[CN_DEVICE_ID_LEN], const uint8_t *pt,
                             size_t n, cn_buf_t *out);
/** True when a session with the device exists (loading it if needed). */
bool cn__e2e_has_session(cn_client_t *c, const uint8_t dev[CN_DEVICE_ID_LEN]);
/**
 * Decrypts an envelope from (handle, dev) into pt, creating the session
 * from an X3DH initial message (and deleting the one-time prekey it
 * used). *why names a failure for the user (static string).
 */
CN_MUST_USE int cn__e2e_open(cn_client_t *c, const char *handle,
                             const uint8_t dev[CN_DEVICE_ID_LEN], const uint8_t *ct, size_t n,
                             cn_buf_t *pt, const char **why);
/**
 * Fetches prekey bundles for the devices of handle that have no session,
 * verifies them and runs X3DH. Devices without a usable bundle are listed
 * in bad (their count in *nbad).
 */
CN_MUST_USE int cn__e2e_ensure_sessions(cn_client_t *c, const char *handle,
                                        const cn__devices_t *dev, uint64_t deadline_ms,
                                        cn__devices_t *bad);
/** Writes every changed session, then the prekeys if changed. */
CN_MUST_USE int cn__e2e_save(cn_client_t *c);
/** Trust on first use: records handle's devices, warning about new keys. */
CN_MUST_USE int cn__trust_check(cn_client_t *c, const char *handle, const uint8_t *devs, size_t n);
void cn__e2e_dispose(cn_client_t *c);
/** Parses CHATCLIENT_TEST_FAULTS. */
void cn__faults_init(cn__faults_t *f);

/* ------------------------------------------------- groups, media, history */

/** Processes a sender key distribution (from a pairwise message). */
CN_MUST_USE int cn__group_on_skdist(cn_client_t *c, const char *from,
                                    const uint8_t dev[CN_DEVICE_ID_LEN], const cn_content_t *ct);
/** Decrypts a group message from dev with its sender key (group.c). */
CN_MUST_USE int cn__group_open(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN],
                               const uint8_t dev[CN_DEVICE_ID_LEN], const uint8_t *ct, size_t n,
                               cn_buf_t *pt, const char **why);
/** Encrypts pt with this device's sender key of gid (saved before return). */
CN_MUST_USE int cn__group_seal(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN],
                               const uint8_t *pt, size_t n, cn_buf_t *out);
/** The known name of a group into out (empty when unknown). */
void cn__group_name(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], char *out, size_t cap);

/** Downloads, verifies, decrypts and saves the file of m's content. */
void cn__media_fetch(cn_client_t *c, cn_client_message_t *m, char *path, size_t cap);

/** This user's history key and archive key (created when create). */
CN_MUST_USE int cn__history_keys(cn_client_t *c, bool create, const uint8_t **hk,
                                 const uint8_t **ak);
/** Adopts keys received from another device of this user (if none yet). */
CN_MUST_USE int cn__history_adopt(cn_client_t *c, const uint8_t *hk, const uint8_t *ak);
/** The thread tag of a 1:1 conversation (peer) or of a group (gid). */
CN_MUST_USE int cn__history_tag(cn_client_t *c, const char *peer, const uint8_t *gid,
                                uint8_t tag[CN_THREAD_TAG_LEN]);
/**
 * Queues (outbox) a sealed history entry of a message: content (encoded),
 * sent by from, in the conversation with peer or group gid, at time. The
 * entry id is derived from (from_dev, message_id), so every device of the
 * user appends the same entry and the node stores it once.
 */
CN_MUST_USE int cn__history_queue(cn_client_t *c, const char *from,
                                  const uint8_t from_dev[CN_DEVICE_ID_LEN],
                                  const uint8_t message_id[CN_MESSAGE_ID_LEN], const char *peer,
                                  const uint8_t *gid, const uint8_t *content, size_t n,
                                  uint64_t time);

/* ------------------------------------------- sender key requests (pending) */

#define CN__SKREQ_SENT_MAX  64 /* (group, device) pairs whose last request is remembered */
#define CN__SKREQ_INBOX_MAX 16 /* requests to answer, collected while receiving */

/** A group message waiting for its sender key (client/pending.c). */
typedef struct cn__pending_msg {
    uint8_t gid[CN_GROUP_ID_LEN];
    uint8_t dev[CN_DEVICE_ID_LEN];
    uint8_t message_id[CN_MESSAGE_ID_LEN];
    char from[CN_HANDLE_MAX + 1];
    uint8_t kind;
    uint64_t seq, server_time;
    uint32_t key_id, iteration; /* from the message header */
    uint8_t *ct;                /* owned by the set */
    size_t ct_len;
} cn__pending_msg_t;

typedef struct cn__skreq_sent {
    uint8_t gid[CN_GROUP_ID_LEN];
    uint8_t dev[CN_DEVICE_ID_LEN];
    uint64_t at_ms; /* wall clock of the last request */
} cn__skreq_sent_t;

/** The pending set, in arrival order, and the requests' rate-limit records. */
typedef struct cn__pending {
    cn__pending_msg_t *v;
    size_t n, cap, bytes;
    cn__skreq_sent_t sent[CN__SKREQ_SENT_MAX];
    size_t nsent;
    uint64_t dropped; /* entries dropped by a bound since init */
    bool dirty;       /* changed since loaded or saved */
} cn__pending_t;

void cn__pending_init(cn__pending_t *p);
void cn__pending_dispose(cn__pending_t *p);
/**
 * Adds a copy of m with ciphertext ct (copied), first dropping the oldest
 * entry of the same sender at CN_CLIENT_PENDING_PER_SENDER_MAX and the
 * oldest entries at CN_CLIENT_PENDING_MAX / CN_CLIENT_PENDING_BYTES_MAX
 * (each drop logged with its reason). m->ct is ignored.
 */
CN_MUST_USE int cn__pending_add(cn__pending_t *p, const cn__pending_msg_t *m, const uint8_t *ct,
                                size_t n);
/** Removes entry i (its ciphertext freed). */
void cn__pending_remove(cn__pending_t *p, size_t i);
/** Entries of (gid, dev). */
size_t cn__pending_count(const cn__pending_t *p, const uint8_t *gid, const uint8_t *dev);
/** True (and recorded) when no request went to (gid, dev) within
 * CN_CLIENT_SKREQ_INTERVAL_MS of now_ms. */
bool cn__pending_request_due(cn__pending_t *p, const uint8_t *gid, const uint8_t *dev,
                             uint64_t now_ms);
CN_MUST_USE int cn__pending_encode(const cn__pending_t *p, cn_buf_t *out);
/** Decodes into p (initialized here; disposed on failure). Strict, bounded. */
CN_MUST_USE int cn__pending_decode(const uint8_t *b, size_t n, cn__pending_t *p);

/** A sender key request received, to be answered after receiving (skreq.c). */
typedef struct cn__skreq_in {
    uint8_t gid[CN_GROUP_ID_LEN];
    uint8_t dev[CN_DEVICE_ID_LEN]; /* the requesting device */
    char from[CN_HANDLE_MAX + 1];
    uint32_t key_id, iteration;
} cn__skreq_in_t;

/**
 * A group message from (gid, dev) could not be opened for want of a key:
 * keeps it (bounded) and queues a sender key request to its sender
 * device unless one went out within CN_CLIENT_SKREQ_INTERVAL_MS.
 */
CN_MUST_USE int cn__skreq_pend(cn_client_t *c, const cn__pending_msg_t *m, const uint8_t *ct,
                               size_t n);
/**
 * Whether a sender key request from device dev of handle from may be
 * answered: from must be a member in the node's group record gi and dev
 * one of its current devices. Returns why not (a static string), or NULL.
 */
const char *cn__skreq_refusal(const char *from, const uint8_t dev[CN_DEVICE_ID_LEN],
                              const Chat__GroupInfo *gi, const cn__devices_t *devices);
/** The pending set (loaded from the home on first use). */
CN_MUST_USE int cn__skreq_pending(cn_client_t *c, cn__pending_t **out);
/** Writes the pending set when it changed (before acks go out). */
CN_MUST_USE int cn__skreq_save(cn_client_t *c);
/** Records a request received from (from, dev) for answering later. */
void cn__skreq_received(cn_client_t *c, const char *from, const uint8_t dev[CN_DEVICE_ID_LEN],
                        const cn_content_t *ct);
/**
 * Answers the requests received: for a current device of a current
 * member (GroupGet, GetDevices) queues this device's sender key at the
 * requested iteration; others are ignored with a log line. Returns the
 * number queued in *queued.
 */
CN_MUST_USE int cn__skreq_answer(cn_client_t *c, uint64_t deadline_ms, size_t *queued);
/**
 * The distribution of this device's sender key of gid for a request
 * (key_id, iteration) from member from: at the requested iteration when
 * it is within the window this device keeps, else the oldest it can give;
 * at the current one for a member this device has not sent its key to.
 * CN_ENOTFOUND when this device has no sender key for the group.
 */
CN_MUST_USE int cn__group_distribution_for(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN],
                                           const char *from, uint32_t key_id, uint32_t iteration,
                                           cn_buf_t *dist);
/** GroupGet: the node's record of gid. Returns owned (free_unpacked). */
CN_MUST_USE int cn__group_get(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN],
                              uint64_t deadline_ms, Chat__ServerFrame **out);
/** Queues a sender key distribution message of gid to every device of to. */
CN_MUST_USE int cn__group_queue_distribution(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN],
                                             const char *to, const cn_buf_t *dist);
/** The device list of handle as the node has it now (GetDevices). */
CN_MUST_USE int cn__devices_get(cn_client_t *c, const char *handle, uint64_t deadline,
                                cn__devices_t *out);

/** Applies a DevicesChanged push to the device cache. */
CN_MUST_USE int cn__devices_on_changed(cn_client_t *c, const Chat__DevicesChanged *dc);

/* ---------------------------------------------------------------- client */

#define CN__ACKS_INFLIGHT_MAX 64
#define CN__BG_MAX            32 /* fire-and-forget requests in flight */
#define CN__SUBS_MAX          16 /* presence subscriptions */

/** How a connection authenticates after the Challenge. */
typedef struct cn__login {
    bool register_;     /* Register instead of Auth */
    const char *handle; /* normalized; register only */
    const char *invite; /* may be NULL */
    const char *name;   /* device name, may be NULL */
} cn__login_t;

struct cn_client {
    cn_client_url_t url;
    char *jwt; /* registration policy jwt: the identity provider's token (owned) */
    cn__tls_opts_t tls;
    char *ca_file;
    uint32_t timeout_ms;
    char home[CN__PATH_MAX];
    char outbox_dir[CN__PATH_MAX];
    uint64_t outbox_next;
    cn_identity_t id;
    bool has_id;
    char handle[CN_HANDLE_MAX + 1];
    uint8_t *home_key; /* seals the home at rest; sodium memory */

    /* E2E (client/e2e.c) */
    cn__prekeys_t prekeys; /* private prekeys, loaded on first use */
    bool prekeys_loaded, prekeys_dirty;
    cn__peer_t *peers;
    size_t npeers, peers_cap;
    cn__faults_t faults;
    cn_client_warn_cb warn_cb;
    void *warn_ud;

    cn__conn_t *conn;
    uint64_t next_rid;
    uint32_t reconnects;    /* consecutive failed attempts (backoff exponent) */
    uint64_t not_before_ms; /* GoingAway: reconnect no earlier than this */

    bool refused;
    int refusal_status;
    char refusal_detail[CN_DETAIL_MAX + 1];

    /* Receiving (cn_client_recv); cb is NULL otherwise and deliveries are
     * left unacked for the next recv. */
    cn_client_message_cb msg_cb;
    void *msg_ud;
    int msg_err;
    bool drained;
    cn__seen_t *seen;
    uint64_t *acks; /* seqs handed to the caller, not yet acked */
    size_t nacks, acks_cap;
    uint64_t ack_rids[CN__ACKS_INFLIGHT_MAX]; /* confirmed Acks not yet answered */
    size_t nack_rids;
    uint64_t last_ack_seq; /* the newest seq acked on this connection */
    bool acks_unconfirmed; /* silent Acks went out after the last confirmed one */
    uint64_t misc_rid;     /* a background UploadPrekeys (refill), 0 if none */
    bool poll_conn;        /* this connection was made by cn_client_poll */

    /* Fire-and-forget requests (Subscribe, ...): responses are dropped. */
    uint64_t bg_rids[CN__BG_MAX];
    size_t nbg;
    char subs[CN__SUBS_MAX][CN_HANDLE_MAX + 1];
    size_t nsubs;
    cn_client_presence_cb presence_cb;
    void *presence_ud;
    /* Pushes that arrived while a delivery was being handled (a download):
     * handled in order afterwards. Owned frames. */
    Chat__ServerFrame **stash;
    size_t nstash, stash_cap;
    int defer;
    uint8_t *hkeys;    /* history key ‖ archive key (sodium memory) or NULL */
    bool outbox_added; /* flush queued more entries (history): flush again */
    bool got_keys;     /* a keys message from another own device arrived */
    /* Sender key requests (client/skreq.c): group messages waiting for a
     * key (loaded on first use) and requests received, to be answered. */
    cn__pending_t *pending;
    cn__skreq_in_t skreq_in[CN__SKREQ_INBOX_MAX];
    size_t nskreq_in;
};

/** A fresh non-zero request id. */
uint64_t cn__client_rid(cn_client_t *c);
/** Records a refusal (status + detail) for cn_client_last_refusal. */
void cn__client_refuse(cn_client_t *c, int status, const char *detail);
/** Maps a Chat__Status to an error code. */
int cn__status_err(int status);
/** Connects and authenticates, retrying with backoff until deadline_ms. */
CN_MUST_USE int cn__client_connect(cn_client_t *c, const cn__login_t *login, uint64_t deadline_ms);
/** Drops the connection (pending requests are the callers' to retry). */
void cn__client_disconnect(cn_client_t *c);
/** Sends one frame on the connection; CN_ECLOSED drops it. */
CN_MUST_USE int cn__client_send(cn_client_t *c, const Chat__ClientFrame *f, uint64_t deadline_ms);
/**
 * Waits for the next Response meant for the caller, handling pushes (and
 * responses to acks and background requests) on the way. Returns owned;
 * free with chat__server_frame__free_unpacked. CN_EAGAIN after a push was
 * handled (so callers can re-check their state), CN_ECLOSED when the
 * connection dropped, CN_ETIMEDOUT at the deadline.
 */
CN_MUST_USE int cn__client_next_response(cn_client_t *c, uint64_t deadline_ms,
                                         Chat__ServerFrame **out);
/**
 * Acks every delivered seq handed to the caller (seen-set synced first).
 * Unless confirm, the Acks are silent_ok: the node answers only a failure
 * (logged as a stray response), and entries whose Ack did not take come
 * again, where the seen-set drops them. With confirm, they ask for an AckOk
 * and are tracked in ack_rids until answered; if silent ones went out
 * since, the newest seq is acked again with confirm, so that its answer
 * also covers them (the node applies one connection's Acks in order).
 */
CN_MUST_USE int cn__client_send_acks(cn_client_t *c, uint64_t deadline_ms, bool confirm);
/** Handles one Deliver push (recv mode: hand out, remember, queue the ack). */
CN_MUST_USE int cn__client_on_deliver(cn_client_t *c, const Chat__Deliver *d, uint64_t deadline_ms);
/** Uploads fresh one-time prekeys after PrekeysLow (response not awaited). */
CN_MUST_USE int cn__client_refill_prekeys(cn_client_t *c, uint32_t remaining, uint64_t deadline_ms);
/** Drops the cached private prekeys when they are saved (reloaded on use). */
void cn__client_release_prekeys(cn_client_t *c);
/** The cached private prekeys (loaded on first use); CN_ENOTFOUND if none. */
CN_MUST_USE int cn__client_prekeys(cn_client_t *c, cn__prekeys_t **out);
/** Reports a warning through the warn callback (or the log). */
void cn__client_warn(cn_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Queues an entry of any kind with encoded content. */
CN_MUST_USE int cn__client_queue(cn_client_t *c, const char *handle, uint8_t kind,
                                 const cn_buf_t *content, uint8_t message_id[CN_MESSAGE_ID_LEN]);
/** cn_client_flush with an absolute deadline (refusal state kept). */
CN_MUST_USE int cn__client_flush_until(cn_client_t *c, uint64_t deadline_ms, cn_client_sent_cb cb,
                                       void *ud);
/** Sends a request whose response is not awaited (dropped when it comes). */
CN_MUST_USE int cn__client_send_bg(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline_ms);
/** Handles the stashed pushes (see defer), in order. */
CN_MUST_USE int cn__client_unstash(cn_client_t *c, uint64_t deadline_ms);
/** Connects as an existing device (Auth) and runs one request. */
CN_MUST_USE int cn__client_rpc(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline_ms,
                               Chat__ServerFrame **out);
/** Answers a non-OK response: records the refusal, returns its error. */
CN_MUST_USE int cn__client_check(cn_client_t *c, const Chat__ServerFrame *r, int want_result);
/** Sends one request and waits for its response (pushes handled). */
CN_MUST_USE int cn__client_call(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline_ms,
                                Chat__ServerFrame **out);
/** out = home directory ‖ "/" ‖ name; CN_EINVAL when it does not fit. */
CN_MUST_USE int cn__home_path(const cn_client_t *c, const char *name, char out[CN__PATH_MAX]);

#endif /* CN_CLIENT_INT_H */
