/**
 * libchatstore: the node's RocksDB (DESIGN section 5).
 *
 * One database, column families created in a fixed order (so that a replica
 * fed shipped WAL batches has the same ids): default, devices, users,
 * prekeys, mailbox, dedupe, groups, media, history, meta, push, gmsg. New column
 * families are only ever appended.
 *
 * Reads (cn_store_*_get, cn_store_mailbox_read, the media and history
 * reads, the listings, the checkpoint) are synchronous and safe from any
 * thread. Every write goes through one writer thread that does group
 * commit: it takes all queued operations (up to a batch limit), applies
 * them to one WriteBatch and writes it once, with fsync according to the
 * sync policy; only then does it call each operation's done callback. A
 * Send is therefore acknowledged only once durable.
 */
#ifndef CN_STORE_H
#define CN_STORE_H

#include "common/cn_common.h"
#include "proto/cn_proto.h"

typedef struct cn_store cn_store_t;

#define CN_STORE_META_NAME_MAX 255

/**
 * An invite record (a meta value consumed by CN_OP_REGISTER): u32be uses
 * left, u64be expiry in ms since the epoch (0: never).
 */
#define CN_INVITE_RECORD_LEN 12

enum cn_sync {
    CN_SYNC_BATCH = 0, /* one fsync per group-commit batch (default) */
    CN_SYNC_ALWAYS,    /* one fsync per operation (batches of one) */
    CN_SYNC_NONE,      /* WAL write without fsync: survives a process crash, not a power cut */
};

/** Parses "always|batch|none". */
CN_MUST_USE int cn_sync_parse(const char *s, enum cn_sync *out);
const char *cn_sync_name(enum cn_sync s);

typedef struct cn_store_options {
    const char *path;           /* data directory; created if missing */
    enum cn_sync sync;          /* default CN_SYNC_BATCH */
    uint64_t mailbox_ttl_ms;    /* default 30 days; 0 = default */
    uint64_t dedupe_ttl_ms;     /* default 7 days; 0 = default */
    size_t block_cache_bytes;   /* default 64 MiB; 0 = default */
    uint64_t wal_ttl_seconds;   /* WAL kept for replicas; default 3600 */
    uint64_t wal_size_limit_mb; /* default 1024 */
    uint32_t max_batch_ops;     /* group-commit batch limit; default 4096 */
    /*
     * Encryption at rest (DESIGN section 5). With encrypt (the default)
     * every record holding user data is sealed under the key ring, which
     * the master key wraps. The master key comes from the environment
     * variable CN_STORE_MASTER_KEY_ENV (64 hex digits) when set, else from
     * master_key_file; NULL means "<path>/master.key". A key file next to
     * the data only protects copies of the data directory made without
     * it (a backup, a checkpoint): operators should point it elsewhere.
     * create_master_key (default on) creates a missing file (mode 0600,
     * random) but only for a database that has no key ring yet: a missing
     * key for an encrypted database fails the open. encrypt off stores
     * plaintext (tests, benchmarks) and refuses an encrypted database.
     */
    bool encrypt;                /* default true */
    const char *master_key_file; /* borrowed during cn_store_open; default NULL */
    bool create_master_key;      /* default true */
} cn_store_options_t;

/** The environment variable holding the master key (hex); wins over the file. */
#define CN_STORE_MASTER_KEY_ENV "CHATNODE_MASTER_KEY"

/** Fills opts with the defaults (path NULL). */
void cn_store_options_default(cn_store_options_t *opts);

/**
 * Opens (or creates) the database and starts the writer thread (and, when
 * records under old keys or plaintext records remain, the re-seal pass).
 * Returns owned; free with cn_store_free. CN_EIO with a logged reason when
 * RocksDB refuses (locked, corrupt, unwritable). With encryption: CN_EAUTH
 * (logged, never the key) when the master key does not open the key ring;
 * CN_ENOTFOUND (logged) when the master key file is missing and may not be
 * created; CN_EINVAL for a malformed key (file size, hex) and for encrypt
 * off on an encrypted database.
 */
CN_MUST_USE int cn_store_open(const cn_store_options_t *opts, cn_store_t **out);

/**
 * Stops accepting operations, lets the writer finish and call back every
 * queued one, joins it and closes RocksDB cleanly. Accepts NULL.
 */
void cn_store_free(cn_store_t *s);

/* ---------------------------------------------------------------- reads */

/** CN_ENOTFOUND when absent. */
CN_MUST_USE int cn_store_device_get(cn_store_t *s, const uint8_t id[CN_DEVICE_ID_LEN],
                                    cn_rec_device_t *out);
/** handle must be normalized. CN_ENOTFOUND when absent. */
CN_MUST_USE int cn_store_user_get(cn_store_t *s, const char *handle, cn_rec_user_t *out);
/** One-time prekeys still held for a device. */
CN_MUST_USE int cn_store_prekey_count(cn_store_t *s, const uint8_t id[CN_DEVICE_ID_LEN],
                                      uint32_t *out);

/**
 * Calls cb for each mailbox entry of device with seq >= from_seq, in seq
 * order, until max_entries or max_bytes (of values) were passed or cb
 * returns non-zero. value borrows store memory valid during the call only.
 * *next_seq is set to the seq after the last entry passed (or from_seq).
 * Returns the number of entries passed, or a negative error. An entry of a
 * shared (group) send is passed as its whole envelope; one whose stored
 * body expired is passed as the reference itself (cn_rec_envelope_t.shared
 * set, no ciphertext): skip it, do not deliver it.
 */
typedef int (*cn_store_mailbox_cb)(void *ctx, uint64_t seq, const uint8_t *value, size_t len);
CN_MUST_USE int cn_store_mailbox_read(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                      uint64_t from_seq, size_t max_entries, size_t max_bytes,
                                      cn_store_mailbox_cb cb, void *ctx, uint64_t *next_seq);

/** Number of queued entries for a device (counts at most limit). */
CN_MUST_USE int cn_store_mailbox_depth(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                       uint64_t limit, uint64_t *out);

/**
 * meta CF: synchronous get (into out, appended) and durable put, from any
 * thread. Names are 1..CN_STORE_META_NAME_MAX bytes; the writer's own
 * names (prefixes mseq/, oseq/, qbytes/, mbytes/, pushseq, keyring, cjour/) are
 * CN_EINVAL. Meta values are node-internal (counters, policies, invites)
 * and stored unsealed; only the key ring is sealed (under the master key).
 * A put bypasses the writer; use CN_OP_META_PUT to order it with other ops.
 */
CN_MUST_USE int cn_store_meta_get(cn_store_t *s, const char *name, cn_buf_t *out);
CN_MUST_USE int cn_store_meta_put(cn_store_t *s, const char *name, const void *value, size_t len);

/* ------------------------------------- groups, media, history (any thread) */

/**
 * Reads a group record into out (caller-owned; heap memory, see
 * cn_rec_group_t). Synchronous, committed data only, thread-safe.
 * CN_ENOTFOUND for an unknown group, CN_EIO on a read failure or a corrupt
 * record.
 */
CN_MUST_USE int cn_store_group_get(cn_store_t *s, const uint8_t group_id[CN_GROUP_ID_LEN],
                                   cn_rec_group_t *out);

/** The largest piece one cn_store_media_read hands out. */
#define CN_MEDIA_READ_MAX (1024u * 1024u)

/**
 * Reads the state of an upload into out (caller-owned). out->hash_state is
 * internal: ignore it. Synchronous, thread-safe. CN_ENOTFOUND for an
 * unknown media id or one whose TTL has passed (expires != 0 and <= now;
 * the record itself goes at the next compaction), CN_EIO on a read failure
 * or a corrupt record.
 */
CN_MUST_USE int cn_store_media_info(cn_store_t *s, const uint8_t media_id[CN_MEDIA_ID_LEN],
                                    cn_rec_media_t *out);

/**
 * Ranged download of a complete upload: appends the bytes [offset, offset +
 * len) to out (caller-owned), clamped to the upload's size, reading across
 * chunk boundaries. Synchronous, thread-safe. Returns the number of bytes
 * appended (0 when offset == size), or: CN_ENOTFOUND (unknown or expired),
 * CN_EAGAIN while the upload is not complete, CN_EINVAL for offset > size,
 * CN_ETOOBIG for len > CN_MEDIA_READ_MAX, CN_ENOMEM, or CN_EIO (a read
 * failure, a missing or corrupt chunk). On error out is left as it was.
 */
CN_MUST_USE int cn_store_media_read(cn_store_t *s, const uint8_t media_id[CN_MEDIA_ID_LEN],
                                    uint64_t offset, uint32_t len, cn_buf_t *out);

#define CN_HISTORY_ID_LEN 16    /* a history entry id (client-made) */
#define CN_THREADS_MAX    10000 /* threads cn_store_thread_list considers per user */

/**
 * Called once per history entry by cn_store_history_query, newest first.
 * thread_tag, entry_id and sealed borrow store memory valid during the call
 * only. Return non-zero to stop after this entry.
 */
typedef int (*cn_store_history_cb)(void *ctx, const uint8_t thread_tag[CN_THREAD_TAG_LEN],
                                   uint64_t time, const uint8_t entry_id[CN_HISTORY_ID_LEN],
                                   const uint8_t *sealed, size_t len);

/**
 * Pages through a user's history archive, newest first (by time, then by
 * entry id, both descending). handle must be normalized (CN_EINVAL
 * otherwise). thread_tag (CN_THREAD_TAG_LEN bytes, borrowed) limits the
 * query to one thread; NULL queries all threads. Entries strictly older
 * than the cursor are passed: with before_id NULL the cursor is the time
 * `before` (0 = +inf: from the newest); with before_id (CN_HISTORY_ID_LEN
 * bytes, borrowed) it is the entry (before, before_id), so a page that
 * ended inside a run of equal times resumes exactly after its last entry.
 * At most limit entries (0: none; clamped to CN_HISTORY_PAGE_MAX). *more
 * (may be NULL) is set when at least one older entry exists after the last
 * one passed. An unknown user has an empty history. Synchronous, committed
 * data only, thread-safe. Returns the number of entries passed to cb (the
 * one that stopped the query included), or CN_EIO.
 */
CN_MUST_USE int cn_store_history_query(cn_store_t *s, const char *handle, const uint8_t *thread_tag,
                                       uint64_t before, const uint8_t *before_id, uint32_t limit,
                                       cn_store_history_cb cb, void *ctx, bool *more);

/** Called once per thread by cn_store_thread_list; thread_tag borrowed for the call. */
typedef int (*cn_store_thread_cb)(void *ctx, const uint8_t thread_tag[CN_THREAD_TAG_LEN],
                                  uint64_t last_time);

/**
 * Lists a user's threads by most recent activity (the largest entry time
 * appended to each thread; ties by tag, ascending), at most limit (0:
 * none). Only the first CN_THREADS_MAX threads in tag order are considered
 * (it sorts them in memory). handle must be normalized (CN_EINVAL). An
 * unknown user has none. Synchronous, thread-safe. Returns the number of
 * threads passed to cb (non-zero from cb stops after that one), CN_ENOMEM
 * or CN_EIO.
 */
CN_MUST_USE int cn_store_thread_list(cn_store_t *s, const char *handle, uint32_t limit,
                                     cn_store_thread_cb cb, void *ctx);

/* ------------------------------------------------ admin reads (any thread) */

/**
 * Called once per user by cn_store_user_list. handle (NUL-terminated) and
 * user borrow store memory valid during the call only. Return non-zero to
 * stop the listing after this user.
 */
typedef int (*cn_store_user_cb)(void *ctx, const char *handle, const cn_rec_user_t *user);

/**
 * Lists users in handle (byte) order, strictly after `after` ("" or NULL:
 * from the first), at most limit of them (limit 0 lists none). Borrows
 * after; cb must not be NULL. Synchronous, sees committed data only;
 * thread-safe. Returns the number of users passed to cb (the one that
 * stopped the listing included), CN_EINVAL for an `after` longer than
 * CN_HANDLE_MAX, or CN_EIO (a corrupt record included).
 */
CN_MUST_USE int cn_store_user_list(cn_store_t *s, const char *after, uint32_t limit,
                                   cn_store_user_cb cb, void *ctx);

/** Called once per device by cn_store_device_list; id and dev borrowed for the call. */
typedef int (*cn_store_device_cb)(void *ctx, const uint8_t id[CN_DEVICE_ID_LEN],
                                  const cn_rec_device_t *dev);

/**
 * Lists device records (revoked ones included) in id order, strictly after
 * `after` (CN_DEVICE_ID_LEN bytes, borrowed; NULL: from the first), at most
 * limit. Same callback, return and thread rules as cn_store_user_list.
 */
CN_MUST_USE int cn_store_device_list(cn_store_t *s, const uint8_t *after, uint32_t limit,
                                     cn_store_device_cb cb, void *ctx);

/**
 * Exact mailbox statistics of one device, by iterating its entries (admin
 * use; costs O(depth), never call it on the hot path): *depth entries,
 * *bytes of stored values, *oldest_server_time of the first (lowest seq)
 * entry, 0 when empty. Any out pointer may be NULL. Thread-safe; CN_EIO
 * on a read failure or an undecodable first entry.
 */
CN_MUST_USE int cn_store_mailbox_stats(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                       uint64_t *depth, uint64_t *bytes,
                                       uint64_t *oldest_server_time);

/**
 * Called once per meta record by cn_store_meta_scan: name is NUL-terminated,
 * value/len its bytes; both borrowed for the call. Non-zero stops the scan.
 */
typedef int (*cn_store_meta_cb)(void *ctx, const char *name, const uint8_t *value, size_t len);

/**
 * Calls cb for every meta record whose name starts with prefix ("" or NULL:
 * all), in name order. The writer's own records (the per-device counters,
 * the push sequence and the key ring) are never listed; a prefix inside them is
 * CN_EINVAL, as is one longer than CN_STORE_META_NAME_MAX. Borrows prefix.
 * Thread-safe. Returns the number of records passed to cb, or CN_EIO.
 */
CN_MUST_USE int cn_store_meta_scan(cn_store_t *s, const char *prefix, cn_store_meta_cb cb,
                                   void *ctx);

/**
 * Called once per pending notification event by cn_store_push_pending;
 * device_id is borrowed for the call. Non-zero stops the listing.
 */
typedef int (*cn_store_push_cb)(void *ctx, uint64_t event_seq,
                                const uint8_t device_id[CN_DEVICE_ID_LEN], uint64_t server_time);

/**
 * Lists pending offline-notification events (push CF) in event order, with
 * event_seq > after_seq, at most limit (0: none). Events are created by
 * CN_OP_SEND for recipients with notify set: one per device until the
 * device connects (CN_OP_PUSH_CLEAR) or CN_STORE_PUSH_RENOTIFY_MS passed
 * since its wake-up; removed by CN_OP_PUSH_DONE (or a REVOKE, a PUSH_CLEAR).
 * Thread-safe, committed data only. Returns the number of events passed to
 * cb, or CN_EIO (a corrupt event included).
 */
CN_MUST_USE int cn_store_push_pending(cn_store_t *s, uint64_t after_seq, uint32_t limit,
                                      cn_store_push_cb cb, void *ctx);

/**
 * Writes a consistent RocksDB checkpoint (hard links where possible, the
 * memtables flushed first) into dir, which must not exist yet (its parent
 * must). The checkpoint opens with cn_store_open under the same master
 * key: its records and key ring are sealed, and it does not hold the key
 * (not even a key file kept in the data directory). Borrows dir. Safe from
 * any thread while the writer runs; it blocks the caller for the flush and
 * the copy. CN_EEXIST when dir exists, CN_EINVAL for an empty dir, CN_EIO
 * (logged) when RocksDB fails.
 */
CN_MUST_USE int cn_store_checkpoint(cn_store_t *s, const char *dir);

/* --------------------------------------------------------------- writes */

enum cn_store_op_type {
    CN_OP_REGISTER = 1, /* new user with its first device */
    CN_OP_LINK,         /* add a device to an existing user */
    CN_OP_REVOKE,       /* revoke a device: drop mailbox and prekeys */
    CN_OP_PREKEYS_UPLOAD,
    CN_OP_PREKEYS_FETCH,  /* consume one one-time prekey per device, FIFO */
    CN_OP_SEND,           /* append one envelope per recipient mailbox */
    CN_OP_ACK,            /* delete delivered mailbox entries */
    CN_OP_USER_UPDATE,    /* set the disabled / presence_hidden / last_seen of a user */
    CN_OP_PUSH_DONE,      /* a notification event was sent: delete it, remember the wake-up */
    CN_OP_META_PUT,       /* put one meta record through the writer */
    CN_OP_META_DELETE,    /* delete one meta record through the writer */
    CN_OP_PUSH_CLEAR,     /* the device connected: it may be woken again */
    CN_OP_GROUP_CREATE,   /* a new group: the creator (admin) and members */
    CN_OP_GROUP_UPDATE,   /* add / remove members, set roles (admins), or leave */
    CN_OP_MEDIA_BEGIN,    /* start (or resume) an upload */
    CN_OP_MEDIA_CHUNK,    /* append one chunk at the stored offset */
    CN_OP_MEDIA_END,      /* check the digest, mark the upload complete */
    CN_OP_HISTORY_APPEND, /* add one sealed entry to a user's archive */
    CN_OP_KEYS_ROTATE,    /* add a data key, make it current, start the re-seal pass */
    CN_OP_KEYS_RETIRE,    /* drop an old data key that no record uses */
};

/** A woken device that has not connected is woken again after this long. */
#define CN_STORE_PUSH_RENOTIFY_MS (15ull * 60 * 1000)

/** CN_OP_USER_UPDATE mask bits: which flags the op sets. */
#define CN_USER_SET_DISABLED        (1u << 0)
#define CN_USER_SET_PRESENCE_HIDDEN (1u << 1)
#define CN_USER_SET_LAST_SEEN       (1u << 2)

typedef struct cn_store_recipient {
    uint8_t device_id[CN_DEVICE_ID_LEN];
    cn_slice_t ciphertext; /* borrowed until done is called */
    uint64_t seq;          /* result: the mailbox seq assigned */
    /* Input: the device is offline; queue a notification event for it in
     * the same batch unless one is pending already (see
     * cn_store_push_pending). */
    bool notify;
} cn_store_recipient_t;

typedef struct cn_store_bundle {
    uint8_t device_id[CN_DEVICE_ID_LEN]; /* input */
    bool has_signed;                     /* results: */
    cn_rec_prekey_t signed_prekey;
    bool has_otpk;
    cn_rec_prekey_t otpk; /* consumed: never handed out again */
    uint32_t remaining;   /* one-time prekeys left after this fetch */
} cn_store_bundle_t;

/**
 * One asynchronous write. The caller owns the op and everything it borrows
 * until done runs; it fills `type`, `done`, `ctx` and the matching member of
 * `u`. The writer sets `result` (CN_OK or CN_E*) and the result fields, then
 * calls done on the writer thread, after the batch holding it is durable
 * (or failed: result CN_EIO and nothing of it was written). done must not
 * block; it typically hands the op to an event loop.
 */
typedef struct cn_store_op {
    enum cn_store_op_type type;
    int result;
    void (*done)(struct cn_store_op *op);
    void *ctx;
    struct cn_store_op *next; /* internal: writer queue link */
    bool dedupe_absent;       /* internal: a SEND's dedupe key is not in committed data */
    /*
     * Nobody waits for this op to be durable (a last-seen time, a wake-up
     * marker cleared): it does not wake the writer, which takes it with
     * the next op someone waits for or after CN_STORE_LAZY_DELAY_MS, and
     * a batch made only of lazy ops is written to the WAL without an
     * fsync, under every sync mode, becoming durable with the next synced
     * batch. A process crash keeps it (the WAL is in the page cache); a
     * power loss may lose it.
     */
    bool lazy;
    union {
        /* CN_OP_REGISTER: CN_EEXIST when the handle or the device exists,
         * CN_EAUTH when consume_meta names a missing record.
         * CN_OP_LINK: CN_ENOTFOUND without the user, CN_EEXIST for a known
         * device, CN_ELIMIT at max_devices. */
        struct {
            char handle[CN_HANDLE_MAX + 1];
            uint8_t device_id[CN_DEVICE_ID_LEN];
            cn_rec_device_t device;
            uint32_t max_devices;
            /* REGISTER only: when non-empty, this meta record (an invite of
             * CN_INVITE_RECORD_LEN bytes) must exist, have uses left and not
             * be expired; the same batch takes one use (deleting the record
             * at the last). CN_EAUTH otherwise. */
            char consume_meta[CN_STORE_META_NAME_MAX + 1];
            /* REGISTER only: when non-empty, this meta record (a used JWT id)
             * must NOT exist and is written in the same batch (value: the
             * 8-byte big-endian expiry of the token); CN_EAUTH if it exists,
             * which makes a replayed token fail. */
            char claim_meta[CN_STORE_META_NAME_MAX + 1];
            uint64_t claim_expires;
        } reg;
        /* CN_ENOTFOUND for an unknown or already revoked device. */
        struct {
            uint8_t device_id[CN_DEVICE_ID_LEN];
        } revoke;
        /* CN_ELIMIT when the stored one-time prekeys would pass
         * CN_OTPK_STORED_MAX (nothing is stored then). */
        struct {
            uint8_t device_id[CN_DEVICE_ID_LEN];
            bool has_signed;
            cn_rec_prekey_t signed_prekey;
            uint32_t n_otpks;
            const cn_rec_prekey_t *otpks; /* borrowed */
            uint32_t remaining;           /* result */
        } upload;
        struct {
            uint32_t n;
            cn_store_bundle_t *bundles; /* borrowed array of n, filled in */
        } fetch;
        /* Dedupe by (env.from_device, env.message_id): a retry gets
         * duplicate=true and the first server_time, and stores nothing.
         * Queued-bytes cap: each device's mailbox holds at most
         * max_queued_bytes of stored values (0: unlimited). When an append
         * would pass it the whole op is CN_ELIMIT, stores nothing, and
         * limited_index names the (first) full recipient. The store keeps
         * a per-device byte counter that expiry can leave too high; it is
         * recomputed exactly before refusing, so expired entries never
         * count against the cap. */
        struct {
            cn_rec_envelope_t env; /* header; env.server_time is set by the caller */
            uint32_t n;
            cn_store_recipient_t *recipients; /* borrowed array of n */
            bool duplicate;                   /* result */
            uint64_t max_queued_bytes;        /* input; 0 = unlimited */
            uint32_t limited_index;           /* result, with CN_ELIMIT */
            /* Input: a group send, every recipient carries the same
             * ciphertext slice (else CN_EINVAL). With two or more
             * recipients the envelope is stored once and each mailbox
             * gets a small reference to it (the queued-bytes cap counts
             * the reference); mailbox reads return the whole envelope, and
             * the body is deleted with the last acked reference. */
            bool shared;
        } send;
        struct {
            uint8_t device_id[CN_DEVICE_ID_LEN];
            uint32_t n;
            const uint64_t *seqs; /* borrowed */
            uint32_t deleted;     /* result */
        } ack;
        /* CN_ENOTFOUND for an unknown user, CN_EINVAL for a mask of no or
         * unknown bits. Only the flags named by mask change. A disabled
         * user is a record flag only: the node refuses it. last_seen is
         * stored as given (0 = unknown). */
        struct {
            char handle[CN_HANDLE_MAX + 1]; /* normalized */
            uint32_t mask;                  /* CN_USER_SET_* */
            bool disabled;
            bool presence_hidden;
            uint64_t last_seen; /* CN_USER_SET_LAST_SEEN: ms since epoch */
        } user_update;
        /* Deletes the event; if the device's marker names this event, it
         * becomes "woken at <now>" (no new event until PUSH_CLEAR or the
         * renotify interval).
         * CN_ENOTFOUND when the event is gone already (a repeated done);
         * CN_EINVAL when the event belongs to another device. */
        struct {
            uint64_t event_seq;
            uint8_t device_id[CN_DEVICE_ID_LEN];
        } push_done;
        /* CN_OP_PUSH_CLEAR: drops the device's wake-up marker and any
         * pending event (always CN_OK). */
        struct {
            uint8_t device_id[CN_DEVICE_ID_LEN];
        } push_clear;
        /* CN_OP_META_PUT / CN_OP_META_DELETE: name as for
         * cn_store_meta_put (1..CN_STORE_META_NAME_MAX bytes, not a
         * writer-owned name: CN_EINVAL). DELETE: CN_ENOTFOUND when absent. */
        struct {
            char name[CN_STORE_META_NAME_MAX + 1];
            const void *value; /* PUT: borrowed until done */
            size_t len;
        } meta;
        /* CN_OP_GROUP_CREATE: creates the group with version 1: the
         * creator first, as admin, then members[] in order with their
         * roles; repeated handles (the creator's included) collapse into
         * one member, admin if any of them says admin. Results, in check
         * order: CN_EINVAL for a creator or member handle not in normal
         * form (index: the member, UINT32_MAX for the creator) or a role
         * other than CN_GROUP_ROLE_*; CN_ETOOBIG for n above
         * CN_GROUP_MEMBERS_HARD_MAX; CN_EEXIST for a known group id;
         * CN_EAUTH when the creator is unknown or disabled; CN_ENOTFOUND
         * when a member is unknown or disabled (index: the first such);
         * CN_ELIMIT when the members (creator included) outnumber
         * max_members. On CN_OK the stored record is copied into out. */
        struct {
            uint8_t group_id[CN_GROUP_ID_LEN];
            char creator[CN_HANDLE_MAX + 1]; /* normalized */
            uint32_t n;
            const cn_rec_group_member_t *members; /* borrowed array of n */
            uint32_t max_members; /* 0 or above the hard max: CN_GROUP_MEMBERS_HARD_MAX */
            cn_rec_group_t *out;  /* borrowed, heap, may be NULL: the new record */
            uint32_t index;       /* result, with CN_EINVAL / CN_ENOTFOUND */
        } group_create;
        /* CN_OP_GROUP_UPDATE, applied in this order: remove[] (only the
         * handle matters; non-members are ignored), add[] (known, not
         * disabled users, appended in join order; a handle already a
         * member is left as it is), set_role[] (each must name a member
         * after the removes and adds). An admin may do all of it; a
         * member that is not an admin may only leave: no add or set_role,
         * and remove[] naming itself alone. Leaving again once gone is
         * CN_OK with changed false (a retry). When the update leaves
         * members but no admin (the last admin left or demoted itself),
         * the oldest remaining member (the first in join order) becomes
         * admin. A group whose last
         * member left stays, empty, with no one able to change it (its id
         * is never reused). version grows by one when the record changed
         * (changed = true); an update that changes nothing (a retry)
         * stores nothing and keeps the version. Results, in check order:
         * CN_EINVAL for a bad handle or role (index as for create:
         * the position in its list, UINT32_MAX for the actor); CN_ETOOBIG
         * for a list above CN_GROUP_MEMBERS_HARD_MAX; CN_ENOTFOUND for an
         * unknown group; CN_ECONFLICT when expected_version is not 0 and
         * not the group's version (out then holds the current record);
         * CN_EAUTH when the actor is not a member or not allowed;
         * CN_ENOTFOUND for an unknown or disabled added user (index: its
         * position in add[]) or a set_role naming a non-member (index:
         * UINT32_MAX); CN_ELIMIT when the adds would take the members
         * above max_members (a group above a lowered limit can still lose
         * members). On CN_OK out holds the record as stored. */
        struct {
            uint8_t group_id[CN_GROUP_ID_LEN];
            char actor[CN_HANDLE_MAX + 1]; /* normalized */
            uint64_t expected_version;     /* 0: do not check */
            uint32_t n_add, n_remove, n_set_role;
            const cn_rec_group_member_t *add;      /* borrowed arrays */
            const cn_rec_group_member_t *remove;   /* role ignored */
            const cn_rec_group_member_t *set_role; /* handle, new role */
            uint32_t max_members;                  /* as for create */
            cn_rec_group_t *out;                   /* borrowed, heap, may be NULL */
            uint32_t index;                        /* result */
            bool changed;                          /* result */
        } group_update;
        /* CN_OP_MEDIA_BEGIN. A new media id stores the upload's state
         * (stored 0, expires = now + ttl_ms, 0 = never) and reserves size
         * bytes of the owner's quota. A known id of the same owner and
         * size resumes: CN_OK with resumed, stored and complete set, and
         * nothing written. Results: CN_EINVAL for an owner handle not in
         * normal form; CN_ETOOBIG for size above max_size (0: no limit)
         * or a content type above CN_MEDIA_TYPE_MAX; CN_EEXIST for an id of another owner, of
         * another size, or whose TTL has passed (a resume after expiry
         * needs a new id); CN_ENOTFOUND for an unknown owner; CN_ELIMIT
         * when the owner's quota (quota_bytes, 0: unlimited) cannot take
         * size more bytes.
         * The quota counts the declared size of each of the owner's
         * uploads from its BEGIN until its TTL passes, complete or not (a
         * per-owner counter in meta, written in the same batch). Expiry
         * does not lower the counter, so it is an upper bound; before an
         * upload is refused, the exact sum over the owner's unexpired
         * uploads is recomputed, so expired uploads never count against
         * the quota. */
        struct {
            uint8_t media_id[CN_MEDIA_ID_LEN];
            char owner[CN_HANDLE_MAX + 1]; /* normalized */
            uint64_t size;                 /* declared total bytes */
            char content_type[CN_MEDIA_TYPE_MAX + 1];
            uint64_t ttl_ms;      /* 0: never expires */
            uint64_t max_size;    /* 0: no limit */
            uint64_t quota_bytes; /* per owner; 0: unlimited */
            uint64_t stored;      /* result: bytes stored (the resume offset) */
            bool complete;        /* result */
            bool resumed;         /* result: the upload existed */
        } media_begin;
        /* CN_OP_MEDIA_CHUNK: appends data at offset, which must be the
         * stored length. Results: CN_EINVAL for a bad owner handle or
         * empty data; CN_ETOOBIG for data above CN_MEDIA_CHUNK_MAX or past
         * the declared size; CN_ENOTFOUND for an unknown or expired id;
         * CN_EAUTH when owner is not the uploader; CN_ECONFLICT when
         * offset is not the stored length or the upload is complete. The
         * result stored is set in every case past the lookup (the
         * offset to resume at). */
        struct {
            uint8_t media_id[CN_MEDIA_ID_LEN];
            char owner[CN_HANDLE_MAX + 1]; /* normalized */
            uint64_t offset;
            cn_slice_t data; /* borrowed until done */
            uint64_t stored; /* result */
        } media_chunk;
        /* CN_OP_MEDIA_END: requires stored == size and sha256 equal to the
         * SHA-256 of the stored bytes (kept as chunks arrive, so the end
         * costs nothing proportional to the size); marks the upload
         * complete. Ending a complete upload again with the same digest is
         * CN_OK (a retry). Results: CN_EINVAL for a bad owner handle;
         * CN_ENOTFOUND for an unknown or expired id; CN_EAUTH when owner
         * is not the uploader, or for a digest mismatch (the upload stays
         * incomplete: end again, or begin anew under another id);
         * CN_ECONFLICT while stored < size (result stored). */
        struct {
            uint8_t media_id[CN_MEDIA_ID_LEN];
            char owner[CN_HANDLE_MAX + 1]; /* normalized */
            uint8_t sha256[CN_MEDIA_SHA256_LEN];
            uint64_t stored; /* result */
        } media_end;
        /* CN_OP_HISTORY_APPEND: stores the entry under (user, thread_tag,
         * time, entry_id) and (user, time, entry_id) and raises the
         * thread's last activity to time. Idempotent: an entry already
         * stored under the same (thread_tag, time, entry_id) is CN_OK with
         * duplicate set, and the first sealed bytes stay. Entry ids should
         * be unique per user: the time index holds one entry per (time,
         * entry_id), the latest thread's. Results:
         * CN_EINVAL for a handle not in normal form or a sealed slice
         * with a NULL base; CN_ETOOBIG for sealed above CN_CIPHERTEXT_MAX;
         * CN_ENOTFOUND for an unknown user. */
        struct {
            char handle[CN_HANDLE_MAX + 1]; /* normalized */
            uint8_t thread_tag[CN_THREAD_TAG_LEN];
            uint64_t time; /* ms since epoch, client-given */
            uint8_t entry_id[CN_HISTORY_ID_LEN];
            cn_slice_t sealed; /* borrowed until done */
            bool duplicate;    /* result */
        } history_append;
        /* CN_OP_KEYS_ROTATE: a new random data key becomes current (its id
         * in key_id); records written after it are sealed under it and the
         * background re-seal pass moves older records to it. CN_ELIMIT
         * when the ring holds CN_STORE_KEYS_MAX keys (retire some),
         * CN_EINVAL when the store is not encrypted.
         * CN_OP_KEYS_RETIRE: deletes key_id from the ring. CN_ENOTFOUND
         * for an id not in the ring; CN_ECONFLICT for the current key or
         * while records may still use it (until a complete re-seal pass,
         * run after the key stopped being current, found none under it:
         * see cn_store_keys_stats). */
        struct {
            uint32_t key_id; /* ROTATE: result; RETIRE: input */
        } keys;
    } u;
} cn_store_op_t;

/**
 * Queues an op for the writer; thread-safe. CN_ECLOSED once cn_store_free
 * began (done is then not called).
 */
CN_MUST_USE int cn_store_submit(cn_store_t *s, cn_store_op_t *op);

/**
 * Histogram buckets of cn_store_stats_t. Counts are per bucket (not
 * cumulative); bucket i holds the observations v with bound[i-1] < v <=
 * bound[i], and the last bucket everything above the last bound (+Inf).
 * The bounds are initializers: `static const double b[] =
 * CN_STORE_FSYNC_BUCKETS_MS;`.
 */
/* clang-format off */
#define CN_STORE_LAZY_DELAY_MS     50 /* longest a lazy op waits for company */
#define CN_STORE_BATCH_HIST_N      8
#define CN_STORE_BATCH_BUCKETS_OPS {1, 4, 16, 64, 256, 1024, 4096} /* ops per batch */
#define CN_STORE_FSYNC_HIST_N      10
#define CN_STORE_FSYNC_BUCKETS_MS  {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100} /* ms */
/* clang-format on */

/** Writer statistics, for metrics. */
typedef struct cn_store_stats {
    uint64_t batches;
    uint64_t ops;
    uint64_t fsync_ns_total;
    uint64_t last_batch_ops;
    uint64_t write_errors;
    bool write_failing;   /* the last batch failed: the store cannot persist now */
    uint64_t queue_depth; /* submitted and not yet called back */
    /* Ops per batch, every batch; buckets CN_STORE_BATCH_BUCKETS_OPS. */
    uint64_t batch_ops_hist[CN_STORE_BATCH_HIST_N];
    /* Duration of each batch write issued with sync on (not under
     * CN_SYNC_NONE, not for batches that wrote nothing); buckets
     * CN_STORE_FSYNC_BUCKETS_MS. */
    uint64_t fsync_hist[CN_STORE_FSYNC_HIST_N];
} cn_store_stats_t;

/** Copies the current statistics into out. Thread-safe. */
void cn_store_stats_get(cn_store_t *s, cn_store_stats_t *out);

/* ------------------------------------------------ encryption at rest */

#define CN_STORE_KEYS_MAX 64 /* data keys one ring holds (CN_KEYRING_MAX) */

enum cn_store_key_state {
    CN_STORE_KEY_CURRENT = 1, /* new records are sealed under it */
    CN_STORE_KEY_OLD = 2,     /* not current; records may still use it */
    CN_STORE_KEY_RETIRED = 3, /* deleted from the ring (id never reused) */
};

/** One key id in cn_store_keys_stats_t. */
typedef struct cn_store_key_info {
    uint32_t id; /* 0: plaintext records of a database from before encryption */
    enum cn_store_key_state state;
    /* Records sealed under it as counted by the re-seal pass (the running
     * one: so far; else the last complete one); valid when `counted`.
     * Records written after a pass are not counted until the next one. */
    uint64_t records;
    bool retirable; /* CN_OP_KEYS_RETIRE would succeed now */
} cn_store_key_info_t;

/** The key ring and the re-seal pass, for `chatadmin keys list` and stats. */
typedef struct cn_store_keys_stats {
    bool encrypted;   /* false: encrypt was off; nothing else is set */
    uint32_t current; /* the current key id */
    bool counted;     /* a pass ran (or is running) since open: records are set */
    /* Keys in the ring in id order, then id 0 when plaintext records may
     * remain, then retired ids (newest first) while room is left. */
    uint32_t n;
    cn_store_key_info_t keys[2 * CN_STORE_KEYS_MAX];
    /* The running pass, or the last one. running is also set while a
     * pass is about to start (after a rotation, or at open). */
    bool running;
    uint64_t resealed;       /* records re-sealed under the current key */
    uint64_t scanned;        /* records looked at */
    uint64_t total_estimate; /* records in the sealed column families (RocksDB estimate) */
    uint64_t passes;         /* complete passes since open */
    /* Values that failed authentication since open (tampered, or moved to
     * another key or CF): each read of one fails with CN_EAUTH. */
    uint64_t auth_failures;
} cn_store_keys_stats_t;

/**
 * Fills out with the ring's keys, per-key record counts and the re-seal
 * pass progress. Thread-safe, cheap (no scan). CN_EINVAL for NULLs.
 */
CN_MUST_USE int cn_store_keys_stats(cn_store_t *s, cn_store_keys_stats_t *out);

#endif /* CN_STORE_H */
