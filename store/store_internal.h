/**
 * Internal to libchatstore: the store object, key layouts, the writer's
 * batch context and the helpers shared by db.c, writer.c, ops*.c, read.c
 * and counters.c. Nothing outside store/ (except the store's own unit
 * tests) includes this header.
 */
#ifndef CN_STORE_INTERNAL_H
#define CN_STORE_INTERNAL_H

#include "crypto/cn_crypto.h"
#include "store/cn_store.h"

#include <pthread.h>
#include <rocksdb/c.h>

/** Column families, in the fixed creation order (their ids). */
enum cn__cf {
    CN__CF_DEFAULT = 0,
    CN__CF_DEVICES,
    CN__CF_USERS,
    CN__CF_PREKEYS,
    CN__CF_MAILBOX,
    CN__CF_DEDUPE,
    CN__CF_GROUPS,
    CN__CF_MEDIA,
    CN__CF_HISTORY,
    CN__CF_META,
    CN__CF_PUSH, /* appended later: new column families only ever go last */
    CN__CF_GMSG, /* group message bodies stored once, with their reference counts */
    CN__CF_COUNT
};

/* Key layouts (DESIGN section 5; big-endian integers sort in order). */
#define CN__PK_SIGNED             1 /* prekeys: device ‖ 1 ‖ u64be 0 */
#define CN__PK_ONETIME            2 /* prekeys: device ‖ 2 ‖ u64be upload order */
#define CN__KEY_MAILBOX           (CN_DEVICE_ID_LEN + 8)
#define CN__KEY_PREKEY            (CN_DEVICE_ID_LEN + 1 + 8)
#define CN__KEY_DEDUPE            (CN_DEVICE_ID_LEN + CN_MESSAGE_ID_LEN)
#define CN__KEY_MAX               (CN__META_NAME_MAX + 9) /* meta names with their scan bound */
#define CN__META_MSEQ             "mseq/" /* meta: mseq/ ‖ device → u64be next mailbox seq */
#define CN__META_OSEQ             "oseq/" /* meta: oseq/ ‖ device → u64be next one-time prekey order */
#define CN__META_QBYTES           "qbytes/" /* meta: no longer written (counters.c), reserved */
#define CN__META_PUSHSEQ          "pushseq" /* meta: u64be next push event seq */
#define CN__META_MBYTES           "mbytes/" /* meta: mbytes/ ‖ user key → u64be media bytes */
#define CN__META_KEYRING          "keyring" /* meta: the key ring, sealed under the master key */
#define CN__META_CJOUR            "cjour/" /* meta: cjour/ ‖ u64be n → a counter journal record */
#define CN__META_RJOUR            "rjour/" /* meta: rjour/ ‖ u64be n → a reference journal record */
#define CN__META_CTR_LEN          (5 + CN_DEVICE_ID_LEN)
#define CN__META_CTR_MAX          (7 + CN_DEVICE_ID_LEN) /* the longest counter key */
#define CN__META_NAME_MAX         255
#define CN__PERIODIC_COMPACTION_S 86400 /* TTL filters run at least daily */
#define CN__BATCH_ROTATE_MAX      8     /* key rotations one batch takes (more: CN_ELIMIT) */

/* The counter journal (counters.c): a batch that changes at least
 * CN__CJOUR_MIN seq counters writes them as one record; the records are
 * folded into the per-device keys once the writer has been idle for
 * CN__CJOUR_IDLE_MS, or by the batch that takes them past
 * CN__CJOUR_FOLD_BYTES. */
#define CN__CJOUR_KEY_LEN    (6 + 8)
#define CN__CJOUR_ENTRY_MAX  (4 + CN_DEVICE_ID_LEN + 9) /* one entry, CBOR-encoded */
#define CN__CJOUR_MIN        8
#define CN__CJOUR_IDLE_MS    100
#define CN__CJOUR_FOLD_BYTES (1u << 20)

/* The reference journal (refjour.c): a group send's mailbox references
 * are written as one sealed record, and put into the mailbox by the
 * writer's next batch (or after CN__CJOUR_IDLE_MS of idleness). */
#define CN__RJOUR_KEY_LEN (6 + 8)

/* push CF: events under u64be(event seq) (8 bytes), one pending marker per
 * device under 0xff ‖ device → u64be(its event seq). Event seqs stay below
 * 0xff << 56, so every marker sorts after every event. */
#define CN__KEY_PUSH_EVENT   8
#define CN__PUSH_PENDING     0xff
#define CN__KEY_PUSH_PENDING (1 + CN_DEVICE_ID_LEN)
#define CN__PUSH_SEQ_LIMIT   (0xffull << 56)

/* gmsg CF: a group message's envelope (with its ciphertext) under
 * from_device ‖ message_id; its count of mailbox references that are not
 * acked yet under the same key ‖ 'r' (u64be count ‖ u64be server_time).
 * Mailbox entries of the members are references (cn_rec_envelope_t.shared).
 * Bodies expire with the mailbox TTL, like the references. */
#define CN__KEY_GMSG           (CN_DEVICE_ID_LEN + CN_MESSAGE_ID_LEN)
#define CN__KEY_GMSG_REFS      (CN__KEY_GMSG + 1)
#define CN__GMSG_REFS          'r'
#define CN__GMSG_REFS_VAL      16
#define CN__SHARED_MIN_DEVICES 2 /* a group send to fewer devices stores copies */

/* A user as a fixed-width key part: the handle zero-padded to 32 bytes
 * (as wide as a device id, so the per-device counters serve users too). */
#define CN__USER_KEY_LEN CN_HANDLE_MAX

/* media CF: the upload state under media_id (16 bytes); chunks under
 * media_id ‖ u64be(offset) (24) → u64be(expires) ‖ data; the owner index
 * under 'O' ‖ user ‖ media_id (49) → u64be(expires) ‖ u64be(size). Keys
 * are told apart by their length. */
#define CN__KEY_MEDIA_INFO  CN_MEDIA_ID_LEN
#define CN__KEY_MEDIA_CHUNK (CN_MEDIA_ID_LEN + 8)
#define CN__MEDIA_OWNER     'O'
#define CN__KEY_MEDIA_OWNER (1 + CN__USER_KEY_LEN + CN_MEDIA_ID_LEN)
#define CN__MEDIA_OWNER_VAL 16

/* history CF: 'T' ‖ user ‖ tag ‖ u64be(time) ‖ id → sealed bytes;
 * 'U' ‖ user ‖ u64be(time) ‖ id → tag; 'L' ‖ user ‖ tag → u64be(last). */
#define CN__HIST_THREAD 'T'
#define CN__HIST_TIME   'U'
#define CN__HIST_LAST   'L'
#define CN__HIST_SUFFIX (8 + CN_HISTORY_ID_LEN)
#define CN__KEY_HIST_T  (1 + CN__USER_KEY_LEN + CN_THREAD_TAG_LEN + CN__HIST_SUFFIX)
#define CN__KEY_HIST_U  (1 + CN__USER_KEY_LEN + CN__HIST_SUFFIX)
#define CN__KEY_HIST_L  (1 + CN__USER_KEY_LEN + CN_THREAD_TAG_LEN)

/** Which per-device counter. QBYTES is a level (queued value bytes, an
 * upper bound), the others hand out the next value. MBYTES is per user
 * (keyed by the user key): the declared bytes of its unexpired uploads, an
 * upper bound like QBYTES. */
enum cn__ctr {
    CN__CTR_MAILBOX = 0,
    CN__CTR_OTPK = 1,
    CN__CTR_QBYTES = 2,
    CN__CTR_MBYTES = 3,
    CN__CTR_COUNT
};
/* The counters below this only ever grow (seqs): the journal's kind. */
#define CN__CTR_SEQS 2

/** One device's cached counters (writer thread only). */
typedef struct cn__counter {
    uint8_t id[CN_DEVICE_ID_LEN];
    uint64_t next[CN__CTR_COUNT]; /* next value to hand out */
    bool valid[CN__CTR_COUNT];    /* loaded from disk (or set by this batch) */
    bool dirty[CN__CTR_COUNT];    /* changed by the current batch */
    bool touched;                 /* listed in touched[] */
    /* QBYTES changes of the current batch: its mailbox writes are not
     * seen by iterators through the batch (overlay.c), so a recount adds
     * them. */
    int64_t qbytes_delta;
    /* Seq counters: the value the newest committed journal record holds
     * (0: in no record since the last fold), and whether the entry is
     * listed in unfolded[]. */
    uint64_t journaled[CN__CTR_SEQS];
    bool unfolded;
} cn__counter_t;

/** Open-addressing table of counters; entries never move once allocated. */
typedef struct cn__counters {
    cn__counter_t **slots;
    size_t cap, count;
    cn__counter_t *last;     /* the entry found last: one op asks for one device several times */
    cn__counter_t **touched; /* entries changed by the current batch */
    size_t ntouched, touched_cap;
    uint64_t push_next; /* the global push event seq, like the entries' */
    bool push_valid, push_dirty;
    /* The journal: records jfirst .. jnext-1 are on disk (jbytes in all),
     * their counters listed in unfolded[]. */
    cn__counter_t **unfolded;
    size_t nunfolded, unfolded_cap, jbytes;
    uint64_t jfirst, jnext;
    size_t batch_jbytes; /* the current batch writes record jnext, this long */
    bool fold_requested; /* the next batch folds (writer.c, when idle) */
    bool folding;        /* the current batch folds */
} cn__counters_t;

/** The reference counts a batch changed (store/refs.c): open addressing. */
typedef struct cn__ref cn__ref_t;
typedef struct cn__refs {
    cn__ref_t *slots;
    bool *used;
    size_t cap, count;
} cn__refs_t;

/** A record of the overlay's log and its sort prefix (its replay order). */
typedef struct cn__overlay_item {
    uint64_t prefix;
    const uint8_t *rec;
} cn__overlay_item_t;

/** The unindexed part of a batch (store/overlay.c): a log of records and
 * the newest record per key (slots hold the key hash's top 32 bits above
 * log offset + 1; 0: empty). */
typedef struct cn__overlay {
    uint64_t *slots;
    size_t cap, count, nrecords;
    cn_buf_t log;
    cn__overlay_item_t *order; /* scratch of the replay: 2 x order_cap items */
    size_t order_cap;
} cn__overlay_t;

/** One group send's mailbox references (store/refjour.c). */
typedef struct cn__rjour_ent {
    uint8_t device[CN_DEVICE_ID_LEN];
    uint64_t seq;
} cn__rjour_ent_t;
typedef struct cn__rjour_rec {
    struct cn__rjour_rec *next;
    uint64_t n;                 /* its record: meta rjour/ ‖ u64be n */
    uint8_t body[CN__KEY_GMSG]; /* the group message's gmsg key */
    uint64_t server_time;
    cn_buf_t ref; /* the reference every entry gets, encoded */
    cn__rjour_ent_t *ents;
    size_t count, cap;
} cn__rjour_rec_t;

/**
 * The references written as journal records and not yet put into the
 * mailbox (published: readers merge them, under lock), and those the
 * current batch writes (building: writer thread only).
 */
typedef struct cn__rjour {
    pthread_mutex_t lock;
    bool lock_ready;
    cn__rjour_rec_t *published;
    size_t npublished; /* also read without the lock (atomic): 0 is the fast path */
    cn__rjour_rec_t *building, *building_last;
    uint64_t next_n;
    bool materializing; /* the current batch puts the published ones into the mailbox */
} cn__rjour_t;

/** The mailbox entries the writer wrote last (store/recent.c). */
#define CN__RECENT_MAX 32768 /* entries remembered (a power of two) */
typedef struct cn__recent_entry cn__recent_entry_t;
typedef struct cn__recent {
    cn__recent_entry_t *entries; /* CN__RECENT_MAX, also the eviction order */
    uint32_t *buckets;
    size_t nbuckets;
    uint32_t next_slot;
    cn__recent_entry_t *pending; /* added by the current batch, or the last written one */
    size_t npending;
    bool written; /* pending holds a written batch's additions, not yet linked */
} cn__recent_t;

/** What mailbox reads handed out lately (store/readhint.c). */
#define CN__READHINT_SLOTS 32768 /* a power of two */
typedef struct cn__readhint_slot cn__readhint_slot_t;
typedef struct cn__readhints {
    pthread_mutex_t lock;
    cn__readhint_slot_t *slots;
} cn__readhints_t;
/** One entry as a read found it. */
typedef struct cn__readhint {
    const uint8_t *device;
    uint64_t seq;
    uint32_t size; /* the stored value's plaintext bytes */
    bool shared;
    uint8_t body[CN__KEY_GMSG]; /* when shared */
} cn__readhint_t;

/** The WAL file whose synced pages the writer drops from the page cache (wal_drop.c). */
typedef struct cn__wal_drop {
    int fd;           /* the newest WAL, read-only; -1: none followed yet */
    uint64_t number;  /* its file number */
    uint64_t dropped; /* its bytes before this offset are out of the cache */
    uint64_t size;    /* its size after the last synced batch */
} cn__wal_drop_t;

void cn__wal_drop_init(cn__wal_drop_t *w);
void cn__wal_drop_dispose(cn__wal_drop_t *w);
/** After a synced batch: drops what is synced and old enough (see wal_drop.c). */
void cn__wal_drop_after_sync(cn__wal_drop_t *w, const char *dir);

/** The writer's per-batch state, reused from batch to batch. */
/** Scratch of the batched dedupe lookup: room for cap keys. */
typedef struct cn__prefetch {
    uint8_t (*keys)[CN__KEY_DEDUPE]; /* in op order */
    const char **ptrs;               /* into keys, sorted */
    bool *absent;                    /* by key (op order) */
    size_t *lens;
    rocksdb_pinnableslice_t **values;
    char **errs;
    size_t cap;
} cn__prefetch_t;

typedef struct cn__batch {
    cn_store_t *s;
    rocksdb_writebatch_wi_t *wb; /* indexed: later ops read earlier ops' writes */
    /* What is written: wb's ops as they are made, then the overlay and the
     * range deletes (writer.c). Kept from batch to batch, so appends reuse
     * its grown buffer. */
    rocksdb_writebatch_t *final;
    cn_buf_t v1, v2; /* scratch for encoded values */
    uint8_t (*revoked)[CN_DEVICE_ID_LEN];
    size_t nrevoked, revoked_cap; /* devices whose ranges are dropped at commit */
    int fatal;                    /* an internal failure: the whole batch fails */
    cn_rec_group_t *group;        /* scratch of the group ops (heap, lazily) */
    cn_buf_t seal;                /* scratch of the sealed values */
    cn__refs_t refs;              /* group message bodies' counts changed by this batch */
    cn__recent_t recent;          /* mailbox entries written lately: acks skip the read */
    cn__overlay_t overlay;        /* mailbox and dedupe writes, not indexed */
    cn__prefetch_t prefetch;      /* the batch's dedupe lookups (writer.c) */
    /* Key ring changes of this batch (store/ops_keys.c), settled by
     * cn__keys_end once the batch is written or failed. */
    uint32_t rotated[CN__BATCH_ROTATE_MAX]; /* keys added, in order */
    uint32_t rotated_prev[CN__BATCH_ROTATE_MAX];
    size_t nrotated;
    uint32_t retired[CN_KEYRING_MAX]; /* keys to drop from the ring */
    size_t nretired;
} cn__batch_t;

/** The re-seal pass (store/reseal.c); mu guards every field but thread. */
typedef struct cn__pass {
    pthread_t thread;
    bool started, inited; /* inited: mu and cv exist (owner thread only) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;      /* the store is closing */
    bool requested; /* (re)start from the beginning */
    bool running, counted, op_done;
    uint64_t resealed, scanned, total, passes;
    /* Records per key id (0: plaintext) counted by the running or last pass. */
    uint32_t ids[CN_KEYRING_MAX + 1];
    uint64_t counts[CN_KEYRING_MAX + 1];
    size_t nids;
} cn__pass_t;

/** Per-CF TTL for the compaction filters. */
typedef struct cn__ttl {
    enum cn__cf cf;
    uint64_t ttl_ms;
} cn__ttl_t;

struct cn_store {
    rocksdb_t *db;
    /* Readers hold it shared for the length of one public read; the writer
     * takes it exclusively to reopen the database after a storage fault. */
    pthread_rwlock_t db_lock;
    bool lock_ready;
    bool need_reopen;      /* writer thread only: the last batch failed */
    uint64_t reopen_after; /* writer thread only: next attempt (cn_mono_ns) */
    rocksdb_column_family_handle_t *cf[CN__CF_COUNT];
    rocksdb_options_t *dbopts;
    rocksdb_cache_t *block_cache; /* shared by every column family's tables */
    cn__readhints_t readhints;    /* mailbox entries handed out lately */
    rocksdb_options_t *cfopts[CN__CF_COUNT];
    rocksdb_compactionfilter_t *mailbox_filter, *dedupe_filter, *media_filter, *gmsg_filter;
    cn__ttl_t mailbox_ttl, dedupe_ttl, media_ttl, gmsg_ttl;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;      /* the writer's, per the sync policy */
    rocksdb_writeoptions_t *wo_sync; /* meta_put: always durable */
    rocksdb_writeoptions_t *wo_lazy; /* batches of lazy ops only: no fsync */
    cn_store_options_t opts;
    char *path;

    pthread_mutex_t mu; /* guards the queue, closing and stats */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    pthread_t thread;
    bool thread_started;
    bool closing;
    bool urgent;       /* a queued op is not lazy: someone waits for the batch */
    bool lazy_waiting; /* lazy ops are queued and the writer knows it */
    cn_store_op_t *head, *tail;
    cn_store_stats_t stats;

    cn__rjour_t rjour;       /* the reference journal: the writer's, readers merge it */
    cn__batch_t batch;       /* writer thread only */
    cn__counters_t counters; /* writer thread only */
    cn__wal_drop_t wal_drop; /* writer thread only */

    /* Encryption at rest: ring NULL when encrypt is off. The ring locks
     * itself; legacy (a copy of its flag) and auth_failures are atomics. */
    cn_master_key_t mk;
    cn_keyring_t *ring;
    bool legacy;
    uint64_t auth_failures;
    cn__pass_t pass;
};

/** An iterator over the keys with one prefix (optionally through a batch). */
typedef struct cn__iter {
    cn_store_t *s;
    enum cn__cf cf;
    int rc;         /* a value that did not open: the iteration ends */
    cn_buf_t plain; /* the current value, opened */
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    uint8_t prefix[CN__KEY_MAX];
    size_t plen;
    uint8_t bound[CN__KEY_MAX]; /* prefix ‖ 0xff × (suffix + 1) */
    size_t blen;
} cn__iter_t;

/* db.c */
/** Logs and frees a RocksDB error string; returns CN_EIO (CN_OK for NULL). */
int cn__rdb_err(char *err, const char *what);
/** Shared hold on the database for one public read (see db_lock). */
void cn__db_read_lock(cn_store_t *s);
void cn__db_read_unlock(cn_store_t *s);
/**
 * Writer thread, after a failed batch: when the data directory accepts a
 * synced write again, closes and reopens RocksDB (which keeps a background
 * error until reopened). CN_OK when reopened, CN_EAGAIN when it is too
 * early or the fault persists.
 */
CN_MUST_USE int cn__db_try_reopen(cn_store_t *s);
/** Test hook: flushes and compacts one column family (runs the TTL filters). */
CN_MUST_USE int cn__store_compact(cn_store_t *s, enum cn__cf cf);

/* iter.c */
/**
 * Opens an iterator over the keys prefix ‖ suffix (suffix_len bytes),
 * reading through wb when not NULL, positioned at seek (or the prefix when
 * seek is NULL). Close with cn__iter_close, always.
 */
CN_MUST_USE int cn__iter_open(cn_store_t *s, rocksdb_writebatch_wi_t *wb, enum cn__cf cf,
                              const uint8_t *prefix, size_t plen, size_t suffix_len,
                              const uint8_t *seek, size_t seeklen, cn__iter_t *it);
/**
 * Opens an iterator (committed data only) for reverse iteration over the
 * keys prefix ‖ suffix, positioned at the last key <= seek (SeekForPrev),
 * or at the last key of the prefix when seek is NULL. Close with
 * cn__iter_close, always.
 */
CN_MUST_USE int cn__iter_open_rev(cn_store_t *s, enum cn__cf cf, const uint8_t *prefix, size_t plen,
                                  size_t suffix_len, const uint8_t *seek, size_t seeklen,
                                  cn__iter_t *it);
bool cn__iter_valid(const cn__iter_t *it);
const uint8_t *cn__iter_key(const cn__iter_t *it, size_t *len);
/**
 * The current value, opened (plaintext; valid until the next move or
 * value call). NULL when it does not open (CN_EAUTH): the iterator is then
 * no longer valid and cn__iter_close returns the error.
 */
const uint8_t *cn__iter_value(cn__iter_t *it, size_t *len);
/** The plaintext length of the current value, without opening it. */
size_t cn__iter_value_len(const cn__iter_t *it);
void cn__iter_next(cn__iter_t *it);
void cn__iter_prev(cn__iter_t *it);
/** Frees the iterator; CN_EIO when it had failed. */
CN_MUST_USE int cn__iter_close(cn__iter_t *it);

/* keys (iter.c) */
void cn__key_mailbox(uint8_t out[CN__KEY_MAILBOX], const uint8_t *device, uint64_t seq);
void cn__key_prekey(uint8_t out[CN__KEY_PREKEY], const uint8_t *device, uint8_t kind,
                    uint64_t order);
void cn__key_dedupe(uint8_t out[CN__KEY_DEDUPE], const uint8_t *from_device,
                    const uint8_t *message_id);
/** The meta key of a mailbox or prekey-order counter (not QBYTES). */
void cn__key_counter(uint8_t out[CN__META_CTR_LEN], enum cn__ctr which, const uint8_t *device);
/** The meta key of any counter; returns its length. */
size_t cn__key_counter_any(uint8_t out[CN__META_CTR_MAX], enum cn__ctr which,
                           const uint8_t *device);
void cn__key_push_pending(uint8_t out[CN__KEY_PUSH_PENDING], const uint8_t *device);
/** The user key of a handle (at most CN_HANDLE_MAX bytes): zero-padded. */
void cn__key_user(uint8_t out[CN__USER_KEY_LEN], const char *handle);
void cn__key_media_chunk(uint8_t out[CN__KEY_MEDIA_CHUNK], const uint8_t *media_id,
                         uint64_t offset);
void cn__key_media_owner(uint8_t out[CN__KEY_MEDIA_OWNER], const uint8_t *user,
                         const uint8_t *media_id);
void cn__key_hist_t(uint8_t out[CN__KEY_HIST_T], const uint8_t *user, const uint8_t *tag,
                    uint64_t time, const uint8_t *id);
void cn__key_hist_u(uint8_t out[CN__KEY_HIST_U], const uint8_t *user, uint64_t time,
                    const uint8_t *id);
void cn__key_hist_l(uint8_t out[CN__KEY_HIST_L], const uint8_t *user, const uint8_t *tag);
/** True when name (len bytes) starts with one of the writer's meta prefixes. */
bool cn__meta_reserved(const char *name, size_t len);
/** A meta name usable by callers: 1..255 bytes, not reserved; else CN_EINVAL. */
CN_MUST_USE int cn__meta_name_ok(const char *name);
/** True for a handle already in normal form. */
bool cn__handle_ok(const char *handle);

/* hash.c */
/** Sets the process's random hash key (cn_store_open; idempotent). */
void cn__hash_init(void);
/** Keyed hash of n bytes (SipHash-2-4), mixed with tweak. */
uint64_t cn__hash(const void *p, size_t n, uint64_t tweak);

/* counters.c (writer thread only) */
/** Hands out the next value of a device's counter, loading it on first use. */
CN_MUST_USE int cn__counter_take(cn__batch_t *b, const uint8_t *device, enum cn__ctr which,
                                 uint64_t *out);
/**
 * The current value of a counter (loading it on first use; a QBYTES
 * counter missing on disk is computed from the mailbox through the batch).
 */
CN_MUST_USE int cn__counter_get(cn__batch_t *b, const uint8_t *device, enum cn__ctr which,
                                uint64_t *out);
/** Sets a counter; it is written with the batch. */
CN_MUST_USE int cn__counter_set(cn__batch_t *b, const uint8_t *device, enum cn__ctr which,
                                uint64_t v);
/** Adds to the batch's QBYTES change of a device (cn__quota_adjust). */
CN_MUST_USE int cn__qbytes_delta_add(cn__batch_t *b, const uint8_t *device, int64_t d);
/** The queued bytes the current batch added to (or took off) a device. */
CN_MUST_USE int cn__qbytes_batch_delta(cn__batch_t *b, const uint8_t *device, int64_t *out);
/** Hands out the next push event seq. */
CN_MUST_USE int cn__push_seq_take(cn__batch_t *b, uint64_t *out);
/**
 * Puts every counter the batch changed into the batch: as one journal
 * record when it changed CN__CJOUR_MIN seq counters or more, else under
 * their own keys; and folds the journal when asked or when it is large.
 */
CN_MUST_USE int cn__counters_flush(cn__batch_t *b);
/** Whether journal records wait to be folded. */
bool cn__counters_fold_pending(const cn__counters_t *c);
/**
 * At open, before the writer starts: reads the journal a crash left and
 * takes each counter in it to the larger of its key's and the journal's
 * value; the writer's first idle moment folds it. CN_EIO on a record that
 * is not a journal record.
 */
CN_MUST_USE int cn__counters_recover(cn_store_t *s);
/** Ends the batch: ok keeps the cached values, otherwise they reload from disk. */
void cn__counters_end(cn__counters_t *c, bool ok);
void cn__counters_dispose(cn__counters_t *c);

/* seal.c: the record layer of encryption at rest */
/** True when the values of cf are sealed (encryption on, not meta, dedupe or default). */
bool cn__cf_sealed(const cn_store_t *s, enum cn__cf cf);
/** True when v (n bytes of cf) must be opened: any value of a sealed family,
 * and a dedupe value sealed before dedupe became plain. */
bool cn__value_needs_open(const cn_store_t *s, enum cn__cf cf, const uint8_t *v, size_t n);
/** The store's legacy flag: plaintext values still read (as key id 0). */
static inline bool cn__legacy(cn_store_t *s)
{
    return __atomic_load_n(&s->legacy, __ATOMIC_RELAXED);
}
/** The expires_hint of a plaintext value (what the TTL filters need). */
uint64_t cn__expires_hint(enum cn__cf cf, const uint8_t *key, size_t klen, const uint8_t *v,
                          size_t n);
/** Seals a value of cf under the current key, appended to out. */
CN_MUST_USE int cn__seal_value(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                               const void *v, size_t n, cn_buf_t *out);
/** The same, with the value's expires_hint from a caller that encoded it. */
CN_MUST_USE int cn__seal_value_hinted(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                                      const void *v, size_t n, uint64_t hint, cn_buf_t *out);
/**
 * A writer record of meta that holds user data (the reference journal):
 * sealed like the values of the sealed families whenever the store
 * encrypts (associated data meta's id ‖ key), else appended as it is.
 */
CN_MUST_USE int cn__seal_meta(cn_store_t *s, const void *key, size_t klen, const void *v, size_t n,
                              cn_buf_t *out);
/** Opens what cn__seal_meta wrote (*out may point into v or scratch). */
CN_MUST_USE int cn__open_meta(cn_store_t *s, const void *key, size_t klen, const uint8_t *v,
                              size_t n, cn_buf_t *scratch, const uint8_t **out, size_t *outlen);
/**
 * The key id a stored value is sealed under: 0 for a plaintext value in a
 * legacy database; CN_EAUTH for a plaintext value otherwise.
 */
CN_MUST_USE int cn__value_key_id(cn_store_t *s, const uint8_t *v, size_t n, uint32_t *key_id);
/** Opens a value of cf in place (*vlen updated); plaintext CFs pass as they are. */
CN_MUST_USE int cn__open_inplace(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                                 uint8_t *v, size_t *vlen);
/** Opens a value into scratch; *out is scratch's data or v itself (plaintext). */
CN_MUST_USE int cn__open_copy(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                              const uint8_t *v, size_t n, cn_buf_t *scratch, const uint8_t **out,
                              size_t *outlen);
/** The plaintext length of a stored value, without opening it. */
size_t cn__plain_len(cn_store_t *s, enum cn__cf cf, const uint8_t *v, size_t n);
/** A committed read, opened: CN_OK with *val (free with rocksdb_free), CN_ENOTFOUND, CN_EIO,
 * CN_EAUTH. */
CN_MUST_USE int cn__db_get(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, char **val,
                           size_t *vlen);

/* batch helpers (ops_util.c) */
/** cn__batch_get without opening: the stored bytes. */
CN_MUST_USE int cn__batch_get_raw(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                                  char **val, size_t *vlen);
/**
 * Reads a key through the batch, opened: CN_OK with *val owned (free with
 * rocksdb_free), CN_ENOTFOUND, CN_EIO, or CN_EAUTH (a value that does not
 * open). The put helpers seal the values of sealed CFs (a sealing failure
 * poisons the batch).
 */
CN_MUST_USE int cn__batch_get(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                              char **val, size_t *vlen);
void cn__batch_put(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                   const cn_buf_t *val);
/** Puts borrowed bytes (val may be NULL when vlen is 0). */
void cn__batch_put_raw(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                       const void *val, size_t vlen);
void cn__batch_delete(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen);
/** Reads and decodes a device record through the batch. */
CN_MUST_USE int cn__batch_device(cn__batch_t *b, const uint8_t *id, cn_rec_device_t *out);
/** Reads and decodes a user record through the batch. */
CN_MUST_USE int cn__batch_user(cn__batch_t *b, const char *handle, cn_rec_user_t *out);
bool cn__batch_revoked(const cn__batch_t *b, const uint8_t *device);

/* ops_account.c, ops_prekeys.c, ops_mail.c: each returns the op's result. */
int cn__op_register(cn__batch_t *b, cn_store_op_t *op);
int cn__op_link(cn__batch_t *b, cn_store_op_t *op);
int cn__op_revoke(cn__batch_t *b, cn_store_op_t *op);
int cn__op_upload(cn__batch_t *b, cn_store_op_t *op);
int cn__op_fetch(cn__batch_t *b, cn_store_op_t *op);
int cn__op_send(cn__batch_t *b, cn_store_op_t *op);
int cn__op_ack(cn__batch_t *b, cn_store_op_t *op);
int cn__op_user_update(cn__batch_t *b, cn_store_op_t *op);
int cn__op_meta_put(cn__batch_t *b, cn_store_op_t *op);
int cn__op_meta_delete(cn__batch_t *b, cn_store_op_t *op);
int cn__op_push_clear(cn__batch_t *b, cn_store_op_t *op);
int cn__op_push_done(cn__batch_t *b, cn_store_op_t *op);
/* ops_group.c, ops_media.c, ops_history.c */
int cn__op_group_create(cn__batch_t *b, cn_store_op_t *op);
int cn__op_group_update(cn__batch_t *b, cn_store_op_t *op);
int cn__op_media_begin(cn__batch_t *b, cn_store_op_t *op);
int cn__op_media_chunk(cn__batch_t *b, cn_store_op_t *op);
int cn__op_media_end(cn__batch_t *b, cn_store_op_t *op);
int cn__op_history_append(cn__batch_t *b, cn_store_op_t *op);

/* media_quota.c (writer thread only, but cn__media_expired) */
/**
 * Exact declared bytes of a user's unexpired uploads (the owner index,
 * read through the batch); the value MBYTES is recomputed from.
 */
CN_MUST_USE int cn__media_owner_bytes(cn__batch_t *b, const uint8_t *user, uint64_t *out);
/** CN_ELIMIT when user's uploads cannot take size more bytes under quota (0: none). */
CN_MUST_USE int cn__media_quota_check(cn__batch_t *b, const uint8_t *user, uint64_t size,
                                      uint64_t quota);
/** Records a new upload of user: its owner index entry, the counter. */
CN_MUST_USE int cn__media_quota_add(cn__batch_t *b, const uint8_t *user, const uint8_t *media_id,
                                    uint64_t size, uint64_t expires);
/** The media CF compaction filter's decision: true to drop (expired). */
bool cn__media_expired(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                       uint64_t now);

/* quota.c: the per-device queued-bytes counter (writer thread only). */
/** Exact bytes of a device's mailbox values, read through the batch. */
CN_MUST_USE int cn__mailbox_bytes(cn__batch_t *b, const uint8_t *device, uint64_t *out);
/**
 * Checks a send against max_queued_bytes (header_len: the envelope encoded
 * with an empty ciphertext); CN_ELIMIT sets limited_index.
 */
CN_MUST_USE int cn__quota_check(cn__batch_t *b, cn_store_op_t *op, size_t header_len);
/* refs.c (writer thread only) */
/** Sets the count of a body stored by this batch. */
CN_MUST_USE int cn__refs_set(cn__batch_t *b, const uint8_t *body, uint64_t refs,
                             uint64_t server_time);
/** Takes one reference off a body (none stored: nothing to do). */
CN_MUST_USE int cn__refs_release(cn__batch_t *b, const uint8_t *body);
/** Puts each changed count into the batch, or deletes body and count at zero. */
CN_MUST_USE int cn__refs_flush(cn__batch_t *b);
/** Forgets the batch's entries (start of a batch). */
void cn__refs_reset(cn__refs_t *t);
void cn__refs_dispose(cn__refs_t *t);

/* overlay.c (writer thread only) */
/** Puts a value (sealed here) into the unindexed part; failures poison the
 * batch. hint: the value's cn__expires_hint (its server time), which the
 * caller knows without decoding what it just encoded. */
void cn__overlay_put(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                     const cn_buf_t *val, uint64_t hint);
void cn__overlay_delete(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen);
/** Deletes every key of cf starting with prefix that this batch has put
 * through the overlay so far (a revoke drops what earlier ops queued). */
void cn__overlay_delete_prefix(cn__batch_t *b, enum cn__cf cf, const uint8_t *prefix, size_t plen);
/** Puts a plaintext value no later op of the batch reads back (the writer's
 * counters, written last): logged only, unseen by cn__overlay_get. */
void cn__overlay_put_blind(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                           const void *v, size_t vlen);
/**
 * The newest record of a key in the unindexed part: CN_OK with the stored
 * (sealed) value borrowed in *v, CN_ENOTFOUND when deleted in this batch,
 * CN_EAGAIN when this batch has not written it (read the database).
 */
int cn__overlay_get(const cn__overlay_t *o, enum cn__cf cf, const void *key, size_t klen,
                    const uint8_t **v, size_t *vlen);
/** Appends every record to wb in key order (one key's records in log order). */
void cn__overlay_replay(cn__overlay_t *o, cn_store_t *s, rocksdb_writebatch_t *wb);
void cn__overlay_reset(cn__overlay_t *o);
void cn__overlay_dispose(cn__overlay_t *o);

/* refjour.c: the writer's side (writer thread only) */
CN_MUST_USE int cn__rjour_init(cn__rjour_t *j);
void cn__rjour_dispose(cn__rjour_t *j);
/** Starts the journal entry of a group send whose reference is ref. */
CN_MUST_USE int cn__rjour_begin(cn__batch_t *b, const uint8_t body[CN__KEY_GMSG], cn_slice_t ref,
                                uint64_t server_time, size_t n);
/** One device's reference under seq, in the entry begun last. */
CN_MUST_USE int cn__rjour_add(cn__batch_t *b, const uint8_t *device, uint64_t seq);
/** A device revoked by the current batch: its references of this batch go. */
void cn__rjour_drop_device(cn__batch_t *b, const uint8_t *device);
/**
 * At the start of a batch: puts every published reference into the
 * mailbox and deletes their records, in this batch.
 */
CN_MUST_USE int cn__rjour_materialize(cn__batch_t *b);
/** Writes the current batch's entries as sealed records. */
CN_MUST_USE int cn__rjour_flush(cn__batch_t *b);
/** After the write: publishes the batch's entries, drops materialized ones. */
void cn__rjour_end(cn_store_t *s, bool ok);
/** Whether references wait to be put into the mailbox. */
bool cn__rjour_pending(const cn__rjour_t *j);
/** At open, before the writer starts: publishes the records a crash left. */
CN_MUST_USE int cn__rjour_recover(cn_store_t *s);

/* refjour.c: the readers' side (any thread) */
/** A published reference of one device. */
typedef struct cn__rjour_hit {
    uint64_t seq;
    uint64_t server_time;
    uint8_t body[CN__KEY_GMSG];
    const uint8_t *ref; /* the reference, encoded (in the block of the hits) */
    uint32_t ref_len;
} cn__rjour_hit_t;
/**
 * The published references of device with seq >= from_seq, in seq order,
 * in *out (malloc'd, free it; NULL when none): their number, or CN_ENOMEM.
 */
CN_MUST_USE int cn__rjour_lookup(cn_store_t *s, const uint8_t *device, uint64_t from_seq,
                                 cn__rjour_hit_t **out);

/* recent.c (writer thread only) */
CN_MUST_USE int cn__recent_init(cn__recent_t *r);
void cn__recent_dispose(cn__recent_t *r);
/** Remembers an entry of the current batch (body: a reference's, or NULL). */
void cn__recent_add(cn__recent_t *r, const uint8_t *device, uint64_t seq, size_t size,
                    const uint8_t *body);
/** Finds and forgets an entry: true with its size (and body when *shared). */
bool cn__recent_take(cn__recent_t *r, const uint8_t *device, uint64_t seq, size_t *size,
                     bool *shared, uint8_t body[CN__KEY_GMSG]);
/** Ends a batch: its additions are kept only when it was written (linked
 * at the next add or take, so that the batch's completion need not wait). */
void cn__recent_end(cn__recent_t *r, bool ok);

/* readhint.c (any thread) */
CN_MUST_USE int cn__readhints_init(cn__readhints_t *h);
void cn__readhints_dispose(cn__readhints_t *h);
/** Remembers n entries a read handed out. */
void cn__readhints_put(cn__readhints_t *h, const cn__readhint_t *in, size_t n);
/** Finds and forgets (device, seq): true when its recorded size is size,
 * with whether it is a reference and then its body key. */
bool cn__readhints_take(cn__readhints_t *h, const uint8_t *device, uint64_t seq, size_t size,
                        bool *shared, uint8_t body[CN__KEY_GMSG]);

/* ops_mail.c */
/**
 * Deletes a device's whole mailbox in this batch, one key at a time: the
 * committed entries and those earlier ops of the batch queued (revoke).
 */
CN_MUST_USE int cn__mailbox_drop(cn__batch_t *b, const uint8_t *device);
/** True when a send stores its envelope once (a group send to enough devices). */
bool cn__send_is_shared(const cn_store_op_t *op);
/** Encodes the mailbox reference of a shared send into out (reset first). */
CN_MUST_USE int cn__ref_encode(const cn_store_op_t *op, cn_buf_t *out);
/** Adds (or with add false, subtracts, saturating at 0) n bytes. */
CN_MUST_USE int cn__quota_adjust(cn__batch_t *b, const uint8_t *device, uint64_t n, bool add);
/** The encoded size of an envelope whose empty-ciphertext form is header_len
 * bytes, carrying a ciphertext of len bytes instead. */
size_t cn__envelope_size(size_t header_len, size_t len);

/* ops_push.c (writer thread only). */
/** Queues a notification for each notify recipient without a pending one. */
CN_MUST_USE int cn__push_notify(cn__batch_t *b, cn_store_op_t *op);
/** Drops a revoked device's pending event and marker. */
CN_MUST_USE int cn__push_drop_device(cn__batch_t *b, const uint8_t *device);

/**
 * Inside an op, after its checks: any failure from here on is internal
 * (allocation, RocksDB), poisons the batch and fails every op in it.
 */
#define CN__APPLY(b, expr)                                                                         \
    do {                                                                                           \
        int cn__arc = (expr);                                                                      \
        if (cn__arc < 0) {                                                                         \
            (b)->fatal = cn__arc;                                                                  \
            return cn__arc;                                                                        \
        }                                                                                          \
    } while (0)

/* keys.c: the master key and the ring at open and close, stats. */
/** Loads (or creates) the master key and the ring; starts nothing. */
CN_MUST_USE int cn__keys_open(cn_store_t *s);
void cn__keys_close(cn_store_t *s);
/** Puts the ring (minus the batch's retired keys), sealed, into the batch. */
CN_MUST_USE int cn__keys_put_ring(cn__batch_t *b);

/* ops_keys.c (writer thread) */
/** The internal op of the re-seal pass: ctx is a cn__reseal_t. */
#define CN__OP_RESEAL ((enum cn_store_op_type)0x100)
/** The internal op that marks keys drained when a pass completes. */
#define CN__OP_DRAINED ((enum cn_store_op_type)0x101)
int cn__op_keys_rotate(cn__batch_t *b, cn_store_op_t *op);
int cn__op_keys_retire(cn__batch_t *b, cn_store_op_t *op);
int cn__op_reseal(cn__batch_t *b, cn_store_op_t *op);
int cn__op_drained(cn__batch_t *b, cn_store_op_t *op);
/** Settles the batch's ring changes: undone when !ok, applied when ok. */
void cn__keys_end(cn__batch_t *b, bool ok);

/* reseal.c */
/** One slice of the pass: records to move to the current key. */
#define CN__RESEAL_SLICE 256
enum cn__reseal_outcome {
    CN__RESEAL_MOVED = 0, /* re-sealed under the current key */
    CN__RESEAL_GONE,      /* deleted meanwhile */
    CN__RESEAL_NEWER,     /* rewritten meanwhile (under new_id) */
    CN__RESEAL_FAILED,    /* did not open: left as it is */
};
typedef struct cn__reseal {
    cn_store_t *s;
    size_t n;
    enum cn__cf cf[CN__RESEAL_SLICE];
    uint8_t key[CN__RESEAL_SLICE][CN__KEY_MAX];
    size_t klen[CN__RESEAL_SLICE];
    uint32_t old_id[CN__RESEAL_SLICE];                 /* the key id the pass saw */
    uint32_t new_id[CN__RESEAL_SLICE];                 /* result */
    enum cn__reseal_outcome outcome[CN__RESEAL_SLICE]; /* result */
    /* Results of every CN__OP_RESEAL, taken inside the writer: the
     * current key and the other keys (candidates for DRAINED). Every
     * record sealed under a candidate is committed by the time the op is
     * called back, and no later write uses one. */
    uint32_t current;
    uint32_t cands[CN_KEYRING_MAX];
    size_t ncands;
    /* CN__OP_DRAINED: keys a complete pass found unused, legacy cleared. */
    uint32_t drained[CN_KEYRING_MAX];
    size_t ndrained;
    bool clear_legacy;
} cn__reseal_t;
CN_MUST_USE int cn__pass_start(cn_store_t *s);
/** Asks the pass to (re)start from the beginning. */
void cn__pass_request(cn_store_t *s);
/** Stops and joins the pass (before the writer stops). */
void cn__pass_stop(cn_store_t *s);
/** Frees the pass's mutex and condition (after the writer stopped). */
void cn__pass_dispose(cn_store_t *s);

/* writer.c */
/** Histogram bucket of a batch of n ops (CN_STORE_BATCH_BUCKETS_OPS). */
size_t cn__batch_bucket(uint64_t n);
/** Histogram bucket of a synced write of ns nanoseconds (CN_STORE_FSYNC_BUCKETS_MS). */
size_t cn__fsync_bucket(uint64_t ns);
CN_MUST_USE int cn__writer_start(cn_store_t *s);
/** Refuses new ops, drains the queue, joins the writer. */
void cn__writer_stop(cn_store_t *s);

#endif /* CN_STORE_INTERNAL_H */
