/**
 * libchatclient: the reference client of chatnode.
 *
 * A cn_client_t owns one home directory (identity key, handle, prekeys,
 * outbox, device-list cache, seen-set) and at most one connection to a
 * node: TLS 1.3 -> WebSocket -> protobuf frames (proto/chat.proto). The
 * design is synchronous: every call blocks until it is done or its
 * deadline passes, and reconnects with jittered exponential backoff
 * whenever the connection drops.
 *
 * Sending is durable: cn_client_queue_text() writes the message to the
 * outbox (fsync'd) before anything goes on the wire, and cn_client_flush()
 * resends the outbox in order with the same message ids until the node
 * answers OK (it dedupes retries). Receiving is at-least-once from the
 * node and exactly-once to the caller: deliveries are deduplicated by
 * (sender device, message id) against a persistent seen-set and acked
 * only after the callback returned.
 *
 * Thread-safety: a cn_client_t is used by one thread at a time; distinct
 * clients are independent. Call cn_crypto_init() (or cn_client_new, which
 * does) before anything else.
 *
 * Message content format (version 1): the plaintext that the per-device
 * `seal` step encrypts is a CBOR map with unsigned integer keys:
 *   { 0: version (uint, = 1),
 *     1: type    (uint: 0 = text; other values reserved),
 *     2: text    (text string, valid UTF-8, at most CN_CLIENT_TEXT_MAX bytes),
 *     3: sent_at (uint, sender's clock, ms since the epoch) }
 * Definite lengths only. Decoders reject unknown versions (CN_EVERSION),
 * duplicate keys, nested items and trailing bytes, and skip unknown keys
 * whose values are integers, strings or booleans. Further types (docs/E2E.md):
 *   type 1 = receipt: 4: status (uint: 1 delivered, 2 read),
 *                     5: message ids (byte string, n × 16 bytes, n >= 1)
 *   type 2 = typing:  6: state (uint: 0 stopped, 1 typing)
 *   type 3 = sender key: 7: group id (16 bytes), 9: sender key distribution
 *                     message (bytes), 10: group name (text, optional)
 *   type 4 = file:    11: media id (16), 12: media key (32), 13: digest of
 *                     the ciphertext (32), 14: ciphertext size (uint),
 *                     15: content type, 16: file name (text), 19: SHA-256 of
 *                     the plaintext (32)
 *   type 5 = keys:    17: history key (32), 18: archive key (32), sent by a
 *                     user's device to its own new device
 *   type 6 = sender key request (kind CONTROL, docs/E2E.md): 7: group id
 *                     (16), 21: key id (uint32) and 22: iteration (uint32)
 *                     of the first group message that could not be opened,
 *                     23: the sender device whose key is asked for (32)
 * Optional on any type: 7: group id (a group message carries its group),
 *   8: peer (text, a handle: the conversation partner, set in the "sync"
 *   copies a device sends to its user's other devices), 20: from (text, a
 *   handle; history entries only).
 * Every envelope is this map encrypted end to end per recipient device
 * (X3DH + Double Ratchet, crypto/cn_crypto.h and docs/E2E.md).
 */
#ifndef CN_CLIENT_H
#define CN_CLIENT_H

#include "common/cn_common.h"
#include "proto/cn_proto.h"

#define CN_CLIENT_TEXT_MAX        (32u * 1024u) /* bytes of UTF-8 text in one message */
#define CN_CLIENT_CONTENT_MAX     (CN_CLIENT_TEXT_MAX + 512u)
#define CN_CLIENT_WINDOW          64    /* sends in flight on one connection */
#define CN_CLIENT_SEEN_MAX        10000 /* remembered (device, message id) pairs */
#define CN_CLIENT_BACKOFF_MIN     100   /* ms, first reconnect delay bound */
#define CN_CLIENT_BACKOFF_MAX     5000  /* ms, largest reconnect delay bound */
#define CN_CLIENT_HOST_MAX        253
#define CN_CLIENT_PATH_MAX        256
#define CN_CLIENT_DEFAULT_URL     "wss://127.0.0.1:8443"
#define CN_CLIENT_DEFAULT_PATH    "/ws"
#define CN_CLIENT_CONTENT_VER     1
#define CN_CLIENT_NAME_MAX        255 /* bytes of a group or file name, a content type */
#define CN_CLIENT_SKDIST_MAX      256 /* bytes of a sender key distribution message */
#define CN_CLIENT_MEDIA_KEY_LEN   32
#define CN_CLIENT_DIGEST_LEN      32
#define CN_CLIENT_HISTORY_KEY_LEN 32
#define CN_CLIENT_FILE_MAX        (100u * 1024u * 1024u) /* largest file send-file takes */
/* Sender key requests (docs/E2E.md): group messages kept until their key
 * comes, per (group, sender device) and in total, and how often one
 * (group, sender device) is asked. A sender answers requests for up to
 * CN_CLIENT_SKREQ_WINDOW of its latest messages. */
#define CN_CLIENT_PENDING_PER_SENDER_MAX 64
#define CN_CLIENT_PENDING_MAX            256
#define CN_CLIENT_PENDING_BYTES_MAX      (4u * 1024u * 1024u)
#define CN_CLIENT_SKREQ_INTERVAL_MS      30000
#define CN_CLIENT_SKREQ_WINDOW           1000

/* ------------------------------------------------------------ pure parts */

/** A parsed server URL: wss://HOST[:PORT][/path]; IPv6 hosts in brackets. */
typedef struct cn_client_url {
    char host[CN_CLIENT_HOST_MAX + 1]; /* without brackets */
    uint16_t port;                     /* 443 when absent */
    char path[CN_CLIENT_PATH_MAX + 1]; /* CN_CLIENT_DEFAULT_PATH when absent */
    bool host_is_ip;                   /* literal IPv4 / IPv6 address */
} cn_client_url_t;

/** Parses url into out. CN_EINVAL for anything but a well-formed wss:// URL. */
CN_MUST_USE int cn_client_url_parse(const char *url, cn_client_url_t *out);

enum cn_content_type {
    CN_CONTENT_TEXT = 0,
    CN_CONTENT_RECEIPT = 1,
    CN_CONTENT_TYPING = 2,
    CN_CONTENT_SENDER_KEY = 3,
    CN_CONTENT_FILE = 4,
    CN_CONTENT_KEYS = 5,
    CN_CONTENT_SENDER_KEY_REQUEST = 6,
};

enum cn_receipt_status { CN_RECEIPT_DELIVERED = 1, CN_RECEIPT_READ = 2 };

#define CN_CLIENT_RECEIPT_IDS_MAX 256 /* message ids in one receipt */

/** Decoded message content; text and ids borrow the decoder's input. */
typedef struct cn_content {
    uint32_t version;
    uint32_t type;    /* enum cn_content_type; others are reserved */
    const char *text; /* not NUL-terminated; NULL when absent */
    size_t text_len;
    uint64_t sent_at;        /* ms since the epoch, sender's clock */
    uint32_t receipt_status; /* receipt: enum cn_receipt_status */
    const uint8_t *ids;      /* receipt: n_ids × CN_MESSAGE_ID_LEN bytes */
    size_t n_ids;
    uint32_t typing;         /* typing: 0 stopped, 1 typing */
    const uint8_t *group_id; /* CN_GROUP_ID_LEN bytes or NULL */
    const char *peer;        /* sync copies: the conversation partner; NULL if absent */
    size_t peer_len;
    const char *from; /* history entries: the sender's handle */
    size_t from_len;
    const uint8_t *skdist; /* sender key: the distribution message */
    size_t skdist_len;
    const char *group_name;
    size_t group_name_len;
    const uint8_t *media_id, *media_key, *media_digest, *file_sha256; /* file */
    uint64_t file_size;
    const char *file_type, *file_name;
    size_t file_type_len, file_name_len;
    const uint8_t *history_key, *archive_key; /* keys */
    /* sender key request: the key id and iteration seen, and the sender
     * device (CN_DEVICE_ID_LEN bytes) whose key is asked for */
    uint32_t skreq_key_id, skreq_iteration;
    const uint8_t *skreq_device;
} cn_content_t;

/** Appends the CBOR encoding of every field set in c (pointers borrowed). */
CN_MUST_USE int cn_content_encode(cn_buf_t *out, const cn_content_t *c);

/** Appends the CBOR encoding of a receipt (ids: n × 16 bytes, 1..MAX). */
CN_MUST_USE int cn_content_encode_receipt(cn_buf_t *out, uint32_t status, const uint8_t *ids,
                                          size_t n, uint64_t sent_at);
/** Appends the CBOR encoding of a typing notice. */
CN_MUST_USE int cn_content_encode_typing(cn_buf_t *out, bool typing, uint64_t sent_at);
/** Appends the CBOR encoding of a text message to out. */
CN_MUST_USE int cn_content_encode_text(cn_buf_t *out, const char *text, size_t len,
                                       uint64_t sent_at);
/**
 * Decodes content. CN_EVERSION for an unknown version, CN_ETOOBIG above
 * the limits, CN_EINVAL for anything else malformed (including invalid
 * UTF-8 and a text message without text). out->text borrows p.
 */
CN_MUST_USE int cn_content_decode(const uint8_t *p, size_t n, cn_content_t *out);

/** Appends s (n bytes) as a quoted JSON string, escaping per RFC 8259 section 7. */
CN_MUST_USE int cn_json_append_string(cn_buf_t *out, const char *s, size_t n);

/** True when p[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool cn_utf8_valid(const uint8_t *p, size_t n);

/** Full-jitter backoff: a uniform delay in [0, min(MAX, MIN * 2^attempt)] ms. */
uint32_t cn_client_backoff_ms(uint32_t attempt);

/* ---------------------------------------------------------------- client */

typedef struct cn_client cn_client_t;

typedef struct cn_client_options {
    const char *server_url; /* NULL: CN_CLIENT_DEFAULT_URL */
    const char *ca_file;    /* PEM bundle to verify the node against */
    bool insecure;          /* skip certificate verification (tests only) */
    const char *home;       /* created 0700 when missing; required */
    uint32_t timeout_ms;    /* overall budget of one operation; 0: 60 s */
    /* At-rest sealing of the home (docs/E2E.md). A new home uses Argon2id
     * over passphrase when one is given, else a random key file
     * HOME/home.key (0600); an existing home says which it needs. */
    const char *passphrase;   /* NULL: none */
    uint64_t pwhash_opslimit; /* 0: crypto_pwhash_OPSLIMIT_MODERATE (new homes only) */
    size_t pwhash_memlimit;   /* 0: crypto_pwhash_MEMLIMIT_MODERATE (new homes only) */
} cn_client_options_t;

/** Receives warnings meant for the user (a peer's identity key changed). */
typedef void (*cn_client_warn_cb)(void *ud, const char *msg);

/**
 * Opens the home directory (creating it 0700, and its outbox) and loads the
 * identity and handle when present. Does not connect.
 * Returns owned; free with cn_client_free.
 */
CN_MUST_USE int cn_client_new(const cn_client_options_t *opt, cn_client_t **out);
/** Closes the connection and frees the client. Accepts NULL. */
void cn_client_free(cn_client_t *c);
/** Sets where warnings go (default: the log at warn level). */
void cn_client_set_warn_cb(cn_client_t *c, cn_client_warn_cb cb, void *ud);

/**
 * After a call failed because the node refused it: the status (Chat__Status)
 * and its detail (borrowed, valid until the next call). Returns false when
 * the last failure was not a refusal (timeout, I/O, local error).
 */
bool cn_client_last_refusal(const cn_client_t *c, int *status, const char **detail);
/** A static name for a Chat__Status ("CONFLICT"). */
const char *cn_client_status_name(int status);

/** The registered handle (NULL before register) and the device id. */
const char *cn_client_handle(const cn_client_t *c);
/** Copies the device id; CN_ENOTFOUND when the home has no identity yet. */
CN_MUST_USE int cn_client_device_id(const cn_client_t *c, uint8_t out[CN_DEVICE_ID_LEN]);

/**
 * Creates the identity if missing, registers handle, uploads a signed
 * prekey and CN_OTPK_UPLOAD_MAX one-time prekeys, and remembers the handle.
 * invite and device_name may be NULL. Re-running it for the handle the home
 * already holds only completes a missing prekey upload.
 * Returns CN_OK; CN_ECONFLICT etc. when refused (see cn_client_last_refusal);
 * CN_ETIMEDOUT when the node could not be reached within the budget;
 * CN_EEXIST when the home is registered under another handle.
 */
/**
 * Sets the identity provider's JWT sent with the next registration
 * (registration policy jwt); copies token. CN_ETOOBIG above 4 KiB.
 */
CN_MUST_USE int cn_client_set_jwt(cn_client_t *c, const char *token);

CN_MUST_USE int cn_client_register(cn_client_t *c, const char *handle, const char *invite,
                                   const char *device_name);

/**
 * Writes a text message for handle to the outbox (durably) without sending
 * it. message_id (may be NULL) receives the id it will be sent with.
 */
CN_MUST_USE int cn_client_queue_text(cn_client_t *c, const char *handle, const char *text,
                                     uint8_t message_id[CN_MESSAGE_ID_LEN]);

/** Called once per outbox entry that reached a final state. */
typedef void (*cn_client_sent_cb)(void *ud, const uint8_t message_id[CN_MESSAGE_ID_LEN],
                                  const char *to, int status, const char *detail);

/**
 * Connects (reconnecting as needed) and sends every outbox entry, oldest
 * first, up to CN_CLIENT_WINDOW in flight. An entry leaves the outbox on OK
 * or on a final refusal (NOT_FOUND, BAD_REQUEST, TOO_LARGE, FORBIDDEN),
 * reported through cb (may be NULL) with its status. Returns CN_OK when the
 * outbox is empty and every entry was accepted, CN_ENOTFOUND (etc.) when
 * at least one was refused, CN_ETIMEDOUT when the budget ran out (the rest
 * stays queued), CN_ELIMIT when it gave up because of rate limiting.
 */
CN_MUST_USE int cn_client_flush(cn_client_t *c, cn_client_sent_cb cb, void *ud);

/** cn_client_queue_text + cn_client_flush. */
CN_MUST_USE int cn_client_send_text(cn_client_t *c, const char *handle, const char *text,
                                    uint8_t message_id[CN_MESSAGE_ID_LEN]);

/** One received message, borrowed for the duration of the callback. */
typedef struct cn_client_message {
    uint64_t seq;
    uint8_t message_id[CN_MESSAGE_ID_LEN];
    const char *from;
    uint8_t from_device[CN_DEVICE_ID_LEN];
    int kind; /* Chat__Kind */
    uint64_t server_time;
    bool ephemeral;
    bool decoded;         /* content below is valid */
    cn_content_t content; /* the opened and decoded payload */
    const char *error;    /* why it is not decoded (static string), else NULL */
    bool has_group;       /* a group message (or a sender key) of group_id */
    uint8_t group_id[CN_GROUP_ID_LEN];
    const char *group_name; /* the group's name when known, else NULL */
    /* A copy of a message this user sent from another device: from is this
     * user and peer the conversation partner (NULL otherwise). */
    const char *peer;
    /* File messages: where the verified plaintext was saved (NULL if not),
     * its SHA-256, or why the download failed (static string). */
    const char *file_path;
    uint8_t file_sha256[CN_CLIENT_DIGEST_LEN];
    const char *file_error;
} cn_client_message_t;

/**
 * Called once per new message, in mailbox order. The message is acked
 * after the callback returns, so a callback that printed it must have
 * flushed its output first. Return CN_OK, or a negative code to stop
 * (the message is then neither remembered nor acked).
 */
typedef int (*cn_client_message_cb)(void *ud, const cn_client_message_t *m);

/**
 * Connects, flushes the outbox, drains the mailbox (until MailboxDrained)
 * and then stays connected for wait_ms more for live messages, acking
 * everything handed to cb. Duplicates are acked without calling cb.
 */
CN_MUST_USE int cn_client_recv(cn_client_t *c, uint32_t wait_ms, cn_client_message_cb cb, void *ud);

/**
 * Like cn_client_recv but for interactive use: connects when needed,
 * flushes the outbox, hands out messages for wait_ms and returns still
 * connected (so the next call continues the session). Acks are sent.
 */
CN_MUST_USE int cn_client_poll(cn_client_t *c, uint32_t wait_ms, cn_client_message_cb cb, void *ud);

/** Queues an E2E receipt (kind RECEIPT) for n message ids (n × 16 bytes). */
CN_MUST_USE int cn_client_queue_receipt(cn_client_t *c, const char *handle, uint32_t status,
                                        const uint8_t *ids, size_t n);
/** Queues an E2E typing notice (kind TYPING: ephemeral, online devices only). */
CN_MUST_USE int cn_client_queue_typing(cn_client_t *c, const char *handle, bool typing);

/**
 * The safety number (CN_SAFETY_NUMBER_DIGITS digits) of this user and
 * handle from both users' current device keys (GetDevices), the same on
 * both sides. Also records the keys (trust on first use).
 */
CN_MUST_USE int cn_client_fingerprint(cn_client_t *c, const char *handle, char *out,
                                      size_t out_len);

/* ------------------------------------------------------- several devices */

/** Receives the link code to show while cn_client_link waits. */
typedef void (*cn_client_code_cb)(void *ud, const char *code);

/**
 * Links this (new, unregistered) home as another device of handle:
 * LinkDevice, code_cb with the code to approve on an existing device, then
 * waits (up to the link's expiry) for LinkComplete, authenticates, uploads
 * prekeys and waits (up to the client timeout) for the history keys an
 * approving device sends. Messages that arrive meanwhile go to msg_cb
 * (may be NULL: left for the next recv). CN_ETIMEDOUT when nobody approved.
 */
CN_MUST_USE int cn_client_link(cn_client_t *c, const char *handle, const char *device_name,
                               cn_client_code_cb code_cb, cn_client_message_cb msg_cb, void *ud);

/** One device of a user, borrowed during the callback. */
typedef struct cn_client_device {
    uint8_t id[CN_DEVICE_ID_LEN];
    const char *name;
    uint64_t created; /* ms since the epoch, 0 when unknown */
    bool self;        /* this device */
} cn_client_device_t;

typedef void (*cn_client_device_cb)(void *ud, const cn_client_device_t *d);

/**
 * Approves a waiting device with its code: shows it through show (may be
 * NULL) before signing its certificate, then sends this user's history
 * keys to it once it has uploaded prekeys.
 */
CN_MUST_USE int cn_client_approve(cn_client_t *c, const char *code, cn_client_device_cb show,
                                  void *ud);
/** Lists this user's devices (GetDevices) and refreshes the device cache. */
CN_MUST_USE int cn_client_devices(cn_client_t *c, cn_client_device_cb cb, void *ud);
/** Revokes one of this user's devices. */
CN_MUST_USE int cn_client_revoke(cn_client_t *c, const uint8_t id[CN_DEVICE_ID_LEN]);

/* ----------------------------------------------------------------- groups */

/**
 * Creates a group with a fresh random id (written to group_id) and the
 * given members (this user becomes its admin); the name stays on the
 * clients: it travels inside the E2E sender key messages.
 */
CN_MUST_USE int cn_client_group_create(cn_client_t *c, const char *name, const char *const *handles,
                                       size_t n, uint8_t group_id[CN_GROUP_ID_LEN]);
/** Adds (add = true) or removes a member; admins only. */
CN_MUST_USE int cn_client_group_update(cn_client_t *c, const uint8_t group_id[CN_GROUP_ID_LEN],
                                       const char *handle, bool add);
/**
 * Sends text to a group: distributes this device's sender key (over the
 * pairwise sessions) to members that lack it, rotating it when members
 * left, then one sender-key ciphertext that the node fans out.
 */
CN_MUST_USE int cn_client_group_send_text(cn_client_t *c, const uint8_t group_id[CN_GROUP_ID_LEN],
                                          const char *text, uint8_t message_id[CN_MESSAGE_ID_LEN]);
/** The locally known name of a group into out (empty when unknown). */
void cn_client_group_name(cn_client_t *c, const uint8_t group_id[CN_GROUP_ID_LEN], char *out,
                          size_t cap);

/* ------------------------------------------------------------------ media */

/** Upload progress: bytes of ciphertext the node holds out of size. */
typedef void (*cn_client_progress_cb)(void *ud, const uint8_t media_id[CN_MEDIA_ID_LEN],
                                      uint64_t stored, uint64_t size);

/**
 * Encrypts the file at path (random key), uploads the ciphertext in
 * chunks and sends {media id, key, digest, size, type, name} end to end
 * to handle. The upload state is kept in HOME/uploads until done, so
 * running it again for the same file and recipient resumes at the offset
 * the node holds.
 */
CN_MUST_USE int cn_client_send_file(cn_client_t *c, const char *handle, const char *path,
                                    cn_client_progress_cb progress, void *ud);

/* ---------------------------------------------------------------- history */

/** One decrypted history entry, borrowed during the callback. */
typedef struct cn_client_history_entry {
    uint64_t time;
    const char *from; /* sender handle */
    const char *peer; /* 1:1: the conversation partner; NULL for a group */
    bool has_group;
    uint8_t group_id[CN_GROUP_ID_LEN];
    cn_content_t content;
} cn_client_history_entry_t;

typedef int (*cn_client_history_cb)(void *ud, const cn_client_history_entry_t *e);

/**
 * Pages through this user's archive (HistoryQuery), newest first, and
 * hands out up to limit entries (of the thread with handle when not NULL)
 * in chronological order. Entries that do not open are skipped.
 */
CN_MUST_USE int cn_client_history(cn_client_t *c, const char *with, uint32_t limit,
                                  cn_client_history_cb cb, void *ud);

/** One thread: its peer handle or group (hex), or unknown. */
typedef struct cn_client_thread {
    const char *name; /* handle, "group:<hex> NAME", or NULL when the tag is unknown */
    uint8_t tag[CN_THREAD_TAG_LEN];
    uint64_t last_time;
} cn_client_thread_t;

typedef void (*cn_client_thread_cb)(void *ud, const cn_client_thread_t *t);

/** Lists threads by most recent activity (ListThreads), resolving tags. */
CN_MUST_USE int cn_client_conversations(cn_client_t *c, cn_client_thread_cb cb, void *ud);

/* --------------------------------------------------------------- presence */

typedef void (*cn_client_presence_cb)(void *ud, const char *handle, bool online,
                                      uint64_t last_seen);

/** Where PresenceEvents go; handle is subscribed on every (re)connect. */
CN_MUST_USE int cn_client_subscribe(cn_client_t *c, const char *handle, cn_client_presence_cb cb,
                                    void *ud);
/** Hides (or shows) this user's presence from everyone (SetPresence). */
CN_MUST_USE int cn_client_set_presence_hidden(cn_client_t *c, bool hidden);

#endif /* CN_CLIENT_H */
