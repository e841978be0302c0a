/**
 * libchatproto: the client wire format (generated from proto/chat.proto),
 * the shared limits, the signed-transcript constants and the CBOR codecs
 * of every stored record.
 *
 * Record codecs are pure functions over bytes: encoders append to a
 * caller-owned cn_buf_t; decoders validate every field against the limits
 * below and never allocate (variable-length payloads are returned as
 * slices borrowing the input). Thread-safe.
 */
#ifndef CN_PROTO_H
#define CN_PROTO_H

#include "common/cn_common.h"
#include "proto/chat.pb-c.h"

/* ----------------------------------------------------------------- limits */

#define CN_DEVICE_ID_LEN   32 /* Ed25519 public key */
#define CN_SIGNATURE_LEN   64 /* Ed25519 signature */
#define CN_NONCE_LEN       32 /* auth challenge nonce */
#define CN_EXPORTER_LEN    32 /* TLS exporter channel binding */
#define CN_MESSAGE_ID_LEN  16
#define CN_GROUP_ID_LEN    16
#define CN_MEDIA_ID_LEN    16
#define CN_THREAD_TAG_LEN  32
#define CN_PREKEY_LEN      32 /* X25519 public key */
#define CN_HANDLE_MIN      3
#define CN_HANDLE_MAX      32
#define CN_DEVICE_NAME_MAX 64
#define CN_DETAIL_MAX      256

#define CN_WS_MESSAGE_MAX    (512u * 1024u) /* one ClientFrame, reassembled */
#define CN_CIPHERTEXT_MAX    (64u * 1024u)  /* one envelope's ciphertext */
#define CN_RECIPIENTS_MAX    64             /* envelopes in one Send */
#define CN_SEND_FANOUT_MAX   (1000u * 16u)  /* mailboxes of one group send: members x devices */
#define CN_ACK_SEQS_MAX      1024           /* seqs in one Ack */
#define CN_OTPK_UPLOAD_MAX   100            /* one-time prekeys per upload */
#define CN_OTPK_STORED_MAX   200            /* one-time prekeys held per device */
#define CN_OTPK_LOW_MARK     10             /* PrekeysLow below this */
#define CN_DEVICES_HARD_MAX  16             /* devices per user, whatever the config */
#define CN_FETCH_DEVICES_MAX CN_DEVICES_HARD_MAX
#define CN_MEDIA_CHUNK_MAX   (256u * 1024u)
#define CN_HISTORY_PAGE_MAX  500

/* ---------------------------------------------------- signed transcripts */

/*
 * Transcripts a device signs with its Ed25519 key (built by libchatcrypto):
 *   auth:     CN_AUTH_CONTEXT     ‖ nonce(32) ‖ node_id(32) ‖ device_id(32)
 *             ‖ server_time(u64be) ‖ exporter(32)
 *   register: CN_REGISTER_CONTEXT ‖ same fields ‖ len(u8) ‖ handle
 *   link:     CN_LINK_CONTEXT     ‖ same fields ‖ len(u8) ‖ handle
 * Certificates and prekey signatures:
 *   link certificate: CN_LINK_CERT_CONTEXT ‖ len(u8) ‖ handle ‖ new device_id(32)
 *   signed prekey:    CN_PREKEY_CONTEXT ‖ key_id(u32be) ‖ public_key(32)
 * Each context string includes its terminating NUL so no context is a
 * prefix of another. The handle is always the normalized (lower-case) form
 * of cn_handle_normalize.
 */
#define CN_AUTH_CONTEXT      "chatnode auth v1"
#define CN_REGISTER_CONTEXT  "chatnode register v1"
#define CN_LINK_CONTEXT      "chatnode link v1"
#define CN_LINK_CERT_CONTEXT "chatnode link certificate v1"
#define CN_PREKEY_CONTEXT    "chatnode signed prekey v1"
/** RFC 9266 exporter label used for channel binding. */
#define CN_EXPORTER_LABEL "EXPORTER-Channel-Binding"

/** Checks a handle: [a-z0-9._-]{3,32} after case folding; folds into out. */
CN_MUST_USE int cn_handle_normalize(const char *in, char out[CN_HANDLE_MAX + 1]);

/* ------------------------------------------------------- stored records */

#define CN_RECORD_VERSION 1

/** devices CF value. */
typedef struct cn_rec_device {
    char user[CN_HANDLE_MAX + 1];
    char name[CN_DEVICE_NAME_MAX + 1];
    uint64_t created; /* ms since epoch */
    uint64_t revoked; /* 0 while active */
    bool has_cert;    /* linked devices carry the approving certificate */
    uint8_t cert[CN_SIGNATURE_LEN];
    uint8_t approved_by[CN_DEVICE_ID_LEN];
} cn_rec_device_t;

/** users CF value. */
typedef struct cn_rec_user {
    uint64_t created;
    bool presence_hidden;
    bool disabled;
    uint32_t ndevices;
    uint8_t devices[CN_DEVICES_HARD_MAX][CN_DEVICE_ID_LEN];
    /* Presence: ms since epoch the user was last seen online; 0 = unknown.
     * An optional key: records written before it existed decode with 0,
     * and it is written only when non-zero. */
    uint64_t last_seen;
} cn_rec_user_t;

/** mailbox CF value: a CBOR header and the opaque ciphertext. */
typedef struct cn_rec_envelope {
    uint64_t server_time; /* also the TTL clock */
    uint8_t message_id[CN_MESSAGE_ID_LEN];
    char from[CN_HANDLE_MAX + 1];
    uint8_t from_device[CN_DEVICE_ID_LEN];
    uint32_t kind; /* Chat__Kind */
    bool has_group;
    uint8_t group_id[CN_GROUP_ID_LEN];
    cn_slice_t ciphertext; /* decode: borrows the input */
    /* A mailbox reference to a group message stored once (store gmsg CF,
     * keyed by from_device ‖ message_id): no ciphertext of its own. */
    bool shared;
} cn_rec_envelope_t;

/* ------------------------------------------------ hot ServerFrames */

/*
 * The frames every message costs, encoded without protobuf-c (frames.c):
 * the same bytes as chat__server_frame__pack of the equivalent
 * Chat__ServerFrame. ServerFrame{deliver} of env (its ciphertext) under
 * seq (0: an ephemeral, unstored envelope, sent with ephemeral = true):
 * size, then write (out has room for size bytes; returns the bytes
 * written).
 */
size_t cn_pb_deliver_frame_size(const cn_rec_envelope_t *env, uint64_t seq);
size_t cn_pb_deliver_frame_write(const cn_rec_envelope_t *env, uint64_t seq, uint8_t *out);

/** Room for either response frame below. */
#define CN_PB_RESPONSE_FRAME_MAX 64
/** ServerFrame{response: {request_id, send_ok}} and {request_id, ack_ok}
 * (status OK); each returns the frame's length. */
size_t cn_pb_send_ok_frame(uint8_t out[CN_PB_RESPONSE_FRAME_MAX], uint64_t request_id,
                           uint64_t server_time, bool duplicate, uint32_t delivered_online);
size_t cn_pb_ack_ok_frame(uint8_t out[CN_PB_RESPONSE_FRAME_MAX], uint64_t request_id,
                          uint32_t deleted);

/** dedupe CF value: the first result of a send, returned to retries.
 * Stored in the clear (store/seal.c): it holds only the time, which a
 * sealed record's header showed in the clear too. Records from before
 * 2026-11-29 also hold the number of mailboxes written; it is read past. */
typedef struct cn_rec_dedupe {
    uint64_t server_time; /* when the first copy was stored */
} cn_rec_dedupe_t;

/** prekeys CF value (signed or one-time). */
typedef struct cn_rec_prekey {
    uint32_t key_id;
    uint8_t public_key[CN_PREKEY_LEN];
    bool has_signature; /* signed prekeys only */
    uint8_t signature[CN_SIGNATURE_LEN];
} cn_rec_prekey_t;

/** push CF value: one pending wake-up for an offline device (never content). */
typedef struct cn_rec_push {
    uint8_t device_id[CN_DEVICE_ID_LEN];
    uint64_t server_time; /* when the envelope that caused it was stored */
} cn_rec_push_t;

/* Groups. The record is large (about 34 KiB at CN_GROUP_MEMBERS_HARD_MAX
 * members): allocate it on the heap, never on a thread's stack. */
#define CN_GROUP_MEMBERS_HARD_MAX 1000 /* members of one group, whatever the config */

enum cn_group_role {
    CN_GROUP_ROLE_MEMBER = 0,
    CN_GROUP_ROLE_ADMIN = 1,
};

/** One member of a group (also the element of group op inputs). */
typedef struct cn_rec_group_member {
    char handle[CN_HANDLE_MAX + 1]; /* normalized */
    uint8_t role;                   /* enum cn_group_role */
} cn_rec_group_member_t;

/** groups CF value (key: group_id). Heap only, see above. */
typedef struct cn_rec_group {
    uint64_t version; /* 1 at creation, +1 per update that changed it */
    uint64_t created; /* ms since epoch */
    uint32_t n;
    cn_rec_group_member_t members[CN_GROUP_MEMBERS_HARD_MAX]; /* join order: oldest first */
} cn_rec_group_t;

/*
 * meta value of the store's counter journal (store/counters.c): the seq
 * counters one batch changed, {0: version, 1: [[which, device, next], ...]}.
 * The entries come from the writer's own table, so the record is written
 * in steps: cn_rec_cjour_begin with their number, then each entry; and
 * read back entry by entry through a callback (which may see entries of a
 * record that then turns out malformed: its error is returned after).
 */
#define CN_REC_CJOUR_ENTRIES_MAX (1u << 22)
#define CN_REC_CJOUR_WHICH_MAX   1 /* 0: a mailbox seq, 1: a one-time prekey order */

typedef struct cn_rec_cjour_entry {
    uint8_t which; /* <= CN_REC_CJOUR_WHICH_MAX */
    uint8_t device[CN_DEVICE_ID_LEN];
    uint64_t next; /* the counter's next value, >= 1 */
} cn_rec_cjour_entry_t;

typedef int (*cn_rec_cjour_fn)(void *ctx, const cn_rec_cjour_entry_t *e);

/** Starts a record of n entries (CN_ETOOBIG past CN_REC_CJOUR_ENTRIES_MAX). */
CN_MUST_USE int cn_rec_cjour_begin(size_t n, cn_buf_t *out);
/** Appends one entry (CN_EINVAL for a which or next out of range). */
CN_MUST_USE int cn_rec_cjour_add(const cn_rec_cjour_entry_t *e, cn_buf_t *out);
/** Calls fn per entry; CN_EINVAL, CN_ETOOBIG, CN_EVERSION, or fn's error. */
CN_MUST_USE int cn_rec_cjour_decode(const uint8_t *p, size_t n, cn_rec_cjour_fn fn, void *ctx);

/*
 * meta value of the store's reference journal (store/refjour.c): the
 * mailbox references one group send added, {0: version, 1: ref,
 * 2: [[device, seq], ...]}. ref is the reference's encoded envelope record
 * (opaque here). Written in steps like the counter journal's; read back
 * entry by entry through a callback after the ref is handed out.
 */
#define CN_REC_RJOUR_ENTRIES_MAX CN_SEND_FANOUT_MAX
#define CN_REC_RJOUR_REF_MAX     1024 /* bytes of the encoded reference */

typedef int (*cn_rec_rjour_fn)(void *ctx, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq);

/** Starts a record: ref (borrowed, copied into out) of 1..CN_REC_RJOUR_REF_MAX
 * bytes (CN_EINVAL for 0, CN_ETOOBIG above) and n entries (CN_ETOOBIG past
 * CN_REC_RJOUR_ENTRIES_MAX). On error out is left as it was. */
CN_MUST_USE int cn_rec_rjour_begin(cn_slice_t ref, size_t n, cn_buf_t *out);
/** Appends one entry (CN_EINVAL for seq 0). */
CN_MUST_USE int cn_rec_rjour_add(const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq,
                                 cn_buf_t *out);
/**
 * Decodes: *ref points into p (valid as long as p); fn is called per entry
 * (possibly before a later part turns out malformed: that error is returned
 * after), and only once *ref is set (key 1 precedes key 2 in a well-formed
 * record; entries without a ref before them are CN_EINVAL before fn sees
 * any). CN_EINVAL, CN_ETOOBIG, CN_EVERSION, or fn's error.
 */
CN_MUST_USE int cn_rec_rjour_decode(const uint8_t *p, size_t n, cn_slice_t *ref, cn_rec_rjour_fn fn,
                                    void *ctx);

/* Media. */
#define CN_MEDIA_TYPE_MAX       64  /* content type bytes */
#define CN_MEDIA_SHA256_LEN     32  /* SHA-256 of the whole (encrypted) upload */
#define CN_MEDIA_HASH_STATE_LEN 104 /* opaque running digest state, defined by the store */

/** media CF value under media_id: the state of one upload. */
typedef struct cn_rec_media {
    char owner[CN_HANDLE_MAX + 1];
    char content_type[CN_MEDIA_TYPE_MAX + 1];
    uint64_t size;    /* declared total bytes */
    uint64_t stored;  /* bytes received, <= size */
    uint64_t created; /* ms since epoch */
    uint64_t expires; /* ms since epoch; 0 = never */
    bool complete;    /* digest checked: sha256 is set, hash_state is not */
    uint8_t sha256[CN_MEDIA_SHA256_LEN];
    /* While incomplete: the digest of the bytes stored so far, as a
     * resumable state (opaque here; libchatstore fills it). */
    uint8_t hash_state[CN_MEDIA_HASH_STATE_LEN];
} cn_rec_media_t;

/** Appends the CBOR encoding of a record to out. */
CN_MUST_USE int cn_rec_device_encode(const cn_rec_device_t *r, cn_buf_t *out);
CN_MUST_USE int cn_rec_user_encode(const cn_rec_user_t *r, cn_buf_t *out);
CN_MUST_USE int cn_rec_envelope_encode(const cn_rec_envelope_t *r, cn_buf_t *out);
/**
 * Appends the encoding of an envelope with ciphertext ct, given header:
 * what cn_rec_envelope_encode wrote for the same envelope with an empty
 * ciphertext and shared false (the ciphertext is its last field, so only
 * its head and bytes differ). One header serves every recipient of a
 * Send without encoding the other fields again; header must not lie in
 * out. CN_EINVAL for a header
 * that does not end in the empty ciphertext, CN_ETOOBIG above
 * CN_CIPHERTEXT_MAX.
 */
CN_MUST_USE int cn_rec_envelope_encode_with(cn_slice_t header, cn_slice_t ct, cn_buf_t *out);
CN_MUST_USE int cn_rec_dedupe_encode(const cn_rec_dedupe_t *r, cn_buf_t *out);
CN_MUST_USE int cn_rec_prekey_encode(const cn_rec_prekey_t *r, cn_buf_t *out);
CN_MUST_USE int cn_rec_push_encode(const cn_rec_push_t *r, cn_buf_t *out);
/** CN_ETOOBIG above CN_GROUP_MEMBERS_HARD_MAX members; CN_EINVAL for a
 * member that is not a normalized handle or has an unknown role. */
CN_MUST_USE int cn_rec_group_encode(const cn_rec_group_t *r, cn_buf_t *out);
/** CN_EINVAL for a bad owner, stored > size, or complete with stored !=
 * size; CN_ETOOBIG for a content type above CN_MEDIA_TYPE_MAX. */
CN_MUST_USE int cn_rec_media_encode(const cn_rec_media_t *r, cn_buf_t *out);

/**
 * Decodes a record. Returns CN_OK, CN_EVERSION for an unknown record
 * version, CN_ETOOBIG for a field above its limit, CN_EINVAL for anything
 * else malformed (truncated, wrong types, trailing bytes, missing fields).
 */
CN_MUST_USE int cn_rec_device_decode(const uint8_t *p, size_t n, cn_rec_device_t *out);
CN_MUST_USE int cn_rec_user_decode(const uint8_t *p, size_t n, cn_rec_user_t *out);
/** out->ciphertext borrows p. */
CN_MUST_USE int cn_rec_envelope_decode(const uint8_t *p, size_t n, cn_rec_envelope_t *out);
CN_MUST_USE int cn_rec_dedupe_decode(const uint8_t *p, size_t n, cn_rec_dedupe_t *out);
CN_MUST_USE int cn_rec_prekey_decode(const uint8_t *p, size_t n, cn_rec_prekey_t *out);
CN_MUST_USE int cn_rec_push_decode(const uint8_t *p, size_t n, cn_rec_push_t *out);
/** out must be heap memory (see cn_rec_group_t). */
CN_MUST_USE int cn_rec_group_decode(const uint8_t *p, size_t n, cn_rec_group_t *out);
CN_MUST_USE int cn_rec_media_decode(const uint8_t *p, size_t n, cn_rec_media_t *out);

/* ------------------------------------------------------- admin protocol */

/*
 * chatadmin <-> chatnode over the admin Unix socket (DESIGN section 7).
 * Each message is a u32be length followed by one CBOR map:
 *   request:  {"v": 1, "cmd": text, "args": {text: text}}
 *   response: {"v": 1, "status": uint, "error": text, "rows": [{text: text}]}
 * Every value is text so that tables and JSON render the same way; status
 * is CN_ADMIN_* (also chatadmin's exit code).
 */
#define CN_ADMIN_VERSION    1
#define CN_ADMIN_FRAME_MAX  (4u * 1024u * 1024u)
#define CN_ADMIN_KEY_MAX    32
#define CN_ADMIN_VALUE_MAX  1024
#define CN_ADMIN_FIELDS_MAX 32
#define CN_ADMIN_ROWS_MAX   10000

enum cn_admin_status {
    CN_ADMIN_OK = 0,
    CN_ADMIN_FAILED = 1,    /* the node could not do it (storage, internal) */
    CN_ADMIN_USAGE = 2,     /* unknown command or bad arguments */
    CN_ADMIN_NOT_FOUND = 3, /* no such device, user, key ... */
    CN_ADMIN_REFUSED = 4,   /* not allowed in the current state */
};

typedef struct cn_admin_field {
    char key[CN_ADMIN_KEY_MAX + 1];
    char *value; /* owned, NUL-terminated, at most CN_ADMIN_VALUE_MAX bytes */
} cn_admin_field_t;

typedef struct cn_admin_row {
    uint32_t n;
    cn_admin_field_t f[CN_ADMIN_FIELDS_MAX];
} cn_admin_row_t;

/** A request (cmd, args) or a response (status, error, rows). */
typedef struct cn_admin_msg {
    char cmd[CN_ADMIN_KEY_MAX + 1];
    uint32_t status;
    char error[CN_DETAIL_MAX + 1];
    cn_admin_row_t args;
    uint32_t nrows;
    cn_admin_row_t *rows; /* owned array */
} cn_admin_msg_t;

void cn_admin_msg_init(cn_admin_msg_t *m);
/** Frees every owned value and row. */
void cn_admin_msg_dispose(cn_admin_msg_t *m);
/** Sets (or replaces) key in row to a printf-formatted value. */
CN_MUST_USE int cn_admin_row_set(cn_admin_row_t *row, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** The value of key in row, or NULL. Borrowed. */
const char *cn_admin_row_get(const cn_admin_row_t *row, const char *key);
/** Appends an empty row to m; NULL at CN_ADMIN_ROWS_MAX or on ENOMEM. */
cn_admin_row_t *cn_admin_add_row(cn_admin_msg_t *m);

/** Appends the CBOR request/response (without the length prefix) to out. */
CN_MUST_USE int cn_admin_request_encode(const cn_admin_msg_t *m, cn_buf_t *out);
CN_MUST_USE int cn_admin_response_encode(const cn_admin_msg_t *m, cn_buf_t *out);
/** Decodes into m (initialised by the caller; dispose it even on error). */
CN_MUST_USE int cn_admin_request_decode(const uint8_t *p, size_t n, cn_admin_msg_t *m);
CN_MUST_USE int cn_admin_response_decode(const uint8_t *p, size_t n, cn_admin_msg_t *m);

#endif /* CN_PROTO_H */
