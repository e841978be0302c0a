/**
 * libchatstore: the node's RocksDB (DESIGN section 5).
 *
 * One database, column families created in a fixed order (so that a replica
 * fed shipped WAL batches has the same ids): default, devices, users,
 * prekeys, mailbox, dedupe, groups, media, history, meta.
 *
 * Reads (cn_store_*_get, cn_store_mailbox_read) are synchronous and safe
 * from any thread. Every write goes through one writer thread that does
 * group commit: it takes all queued operations (up to a batch limit),
 * applies them to one WriteBatch and writes it once, with fsync according
 * to the sync policy; only then does it call each operation's done
 * callback. A Send is therefore acknowledged only once durable.
 */
#ifndef CN_STORE_H
#define CN_STORE_H

#include "common/cn_common.h"
#include "proto/cn_proto.h"

typedef struct cn_store cn_store_t;

#define CN_STORE_META_NAME_MAX 255

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
} cn_store_options_t;

/** Fills opts with the defaults (path NULL). */
void cn_store_options_default(cn_store_options_t *opts);

/**
 * Opens (or creates) the database and starts the writer thread.
 * Returns owned; free with cn_store_free. CN_EIO with a logged reason when
 * RocksDB refuses (locked, corrupt, unwritable).
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
 * Returns the number of entries passed, or a negative error.
 */
typedef int (*cn_store_mailbox_cb)(void *ctx, uint64_t seq, const uint8_t *value, size_t len);
CN_MUST_USE int cn_store_mailbox_read(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                      uint64_t from_seq, size_t max_entries, size_t max_bytes,
                                      cn_store_mailbox_cb cb, void *ctx, uint64_t *next_seq);

/** Number of queued entries for a device (counts at most limit). */
CN_MUST_USE int cn_store_mailbox_depth(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                       uint64_t limit, uint64_t *out);

/** meta CF: synchronous get (into out, appended) and durable put. */
CN_MUST_USE int cn_store_meta_get(cn_store_t *s, const char *name, cn_buf_t *out);
CN_MUST_USE int cn_store_meta_put(cn_store_t *s, const char *name, const void *value, size_t len);

/* --------------------------------------------------------------- writes */

enum cn_store_op_type {
    CN_OP_REGISTER = 1, /* new user with its first device */
    CN_OP_LINK,         /* add a device to an existing user */
    CN_OP_REVOKE,       /* revoke a device: drop mailbox and prekeys */
    CN_OP_PREKEYS_UPLOAD,
    CN_OP_PREKEYS_FETCH, /* consume one one-time prekey per device, FIFO */
    CN_OP_SEND,          /* append one envelope per recipient mailbox */
    CN_OP_ACK,           /* delete delivered mailbox entries */
};

typedef struct cn_store_recipient {
    uint8_t device_id[CN_DEVICE_ID_LEN];
    cn_slice_t ciphertext; /* borrowed until done is called */
    uint64_t seq;          /* result: the mailbox seq assigned */
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
            /* REGISTER only: when non-empty, this meta record (an invite)
             * must exist and is deleted in the same batch; CN_EAUTH if not. */
            char consume_meta[CN_STORE_META_NAME_MAX + 1];
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
         * duplicate=true and the first server_time, and stores nothing. */
        struct {
            cn_rec_envelope_t env; /* header; env.server_time is set by the caller */
            uint32_t n;
            cn_store_recipient_t *recipients; /* borrowed array of n */
            bool duplicate;                   /* result */
        } send;
        struct {
            uint8_t device_id[CN_DEVICE_ID_LEN];
            uint32_t n;
            const uint64_t *seqs; /* borrowed */
            uint32_t deleted;     /* result */
        } ack;
    } u;
} cn_store_op_t;

/**
 * Queues an op for the writer; thread-safe. CN_ECLOSED once cn_store_free
 * began (done is then not called).
 */
CN_MUST_USE int cn_store_submit(cn_store_t *s, cn_store_op_t *op);

/** Writer statistics, for metrics. */
typedef struct cn_store_stats {
    uint64_t batches;
    uint64_t ops;
    uint64_t fsync_ns_total;
    uint64_t last_batch_ops;
    uint64_t write_errors;
    uint64_t queue_depth; /* submitted and not yet called back */
} cn_store_stats_t;

void cn_store_stats_get(cn_store_t *s, cn_store_stats_t *out);

#endif /* CN_STORE_H */
