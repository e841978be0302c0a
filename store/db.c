/*
 * Opening and closing the database: options, column families, TTL
 * compaction filters, the sync policy names.
 *
 * Expiry: envelopes older than mailbox_ttl_ms and dedupe records older than
 * dedupe_ttl_ms are dropped by compaction filters, so expiry costs nothing
 * on the hot path but happens only when RocksDB compacts the file holding
 * the record. periodic_compaction_seconds on those two column families
 * makes every file older than a day go through compaction, so an expired
 * record lingers at most about a day past its TTL. Readers may see it until
 * then. The media column family has its own filter (each upload's expiry
 * is in its records, see cn__media_expired) and the same periodic
 * compaction; its readers check the expiry themselves.
 */
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MAILBOX_TTL_DEFAULT_MS   (30ull * 24 * 3600 * 1000)
#define DEDUPE_TTL_DEFAULT_MS    (7ull * 24 * 3600 * 1000)
#define BLOCK_CACHE_DEFAULT      (64u * 1024 * 1024)
#define WAL_TTL_DEFAULT_S        3600
#define WAL_SIZE_DEFAULT_MB      1024
#define MAX_BATCH_DEFAULT        4096
#define BLOOM_BITS_PER_KEY       10
#define MEDIA_MIN_BLOB_SIZE      4096 /* smaller media values (state, index) stay in the tables */
#define MEMTABLE_BLOOM_RATIO     0.02 /* of the memtable size, for whole-key filters */
#define DEDUPE_MEMTABLE_BYTES    (4u * 1024 * 1024)
#define MAILBOX_MEMTABLE_BYTES   (8u * 1024 * 1024)
#define MAILBOX_MEMTABLES_MERGED 2            /* flushed as one: see make_cf_options */
#define TABLE_BLOCK_BYTES        4096         /* RocksDB's default */
#define QUEUE_BLOCK_BYTES        (16u * 1024) /* mailbox and gmsg tables */

/*
 * The order is the column family ids, which replicas fed shipped WAL
 * batches depend on: never reorder or remove an entry, only append (and
 * append to enum cn__cf in the same place). "push" was appended after
 * "meta"; opening an older database creates it (create_missing_column_
 * families) with the next id, which matches.
 */
static const char *const cf_names[CN__CF_COUNT] = {
    "default", "devices", "users",   "prekeys", "mailbox", "dedupe",
    "groups",  "media",   "history", "meta",    "push",    "gmsg",
};

int cn__rdb_err(char *err, const char *what)
{
    if (err == NULL)
        return CN_OK;
    /* RocksDB messages name files and statuses, never our values. */
    cn_log_error("store_error", "op=%s reason=\"%s\"", what, err);
    rocksdb_free(err);
    return CN_EIO;
}

void cn_store_options_default(cn_store_options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->sync = CN_SYNC_BATCH;
    opts->mailbox_ttl_ms = MAILBOX_TTL_DEFAULT_MS;
    opts->dedupe_ttl_ms = DEDUPE_TTL_DEFAULT_MS;
    opts->block_cache_bytes = BLOCK_CACHE_DEFAULT;
    opts->wal_ttl_seconds = WAL_TTL_DEFAULT_S;
    opts->wal_size_limit_mb = WAL_SIZE_DEFAULT_MB;
    opts->max_batch_ops = MAX_BATCH_DEFAULT;
    opts->encrypt = true;
    opts->master_key_file = NULL; /* <path>/master.key */
    opts->create_master_key = true;
}

int cn_sync_parse(const char *s, enum cn_sync *out)
{
    CN_ENSURE(s != NULL, CN_EINVAL);
    if (strcmp(s, "batch") == 0)
        *out = CN_SYNC_BATCH;
    else if (strcmp(s, "always") == 0)
        *out = CN_SYNC_ALWAYS;
    else if (strcmp(s, "none") == 0)
        *out = CN_SYNC_NONE;
    else
        return CN_EINVAL;
    return CN_OK;
}

const char *cn_sync_name(enum cn_sync s)
{
    switch (s) {
    case CN_SYNC_BATCH:
        return "batch";
    case CN_SYNC_ALWAYS:
        return "always";
    case CN_SYNC_NONE:
        return "none";
    }
    return "unknown";
}

/* --------------------------------------------------------- TTL filters */

/* Returns 1 (drop) for a record whose server_time is older than the TTL.
 * A sealed record carries its server_time in the clear header (its
 * expires_hint, see store/seal.c), so no key is needed here. A record we
 * cannot decode is kept: expiry never destroys what it does not
 * understand. */
static unsigned char ttl_filter(void *state, int level, const char *key, size_t klen,
                                const char *val, size_t vlen, char **new_val, size_t *new_len,
                                unsigned char *changed)
{
    const cn__ttl_t *t = state;
    uint64_t server_time;
    (void)level, (void)key, (void)klen, (void)new_val, (void)new_len;
    *changed = 0;
    if (cn_atrest_header((const uint8_t *)val, vlen, NULL, &server_time) == CN_OK) {
        /* sealed: the hint is the server_time */
    } else if (t->cf == CN__CF_GMSG && klen == CN__KEY_GMSG_REFS) {
        if (vlen != CN__GMSG_REFS_VAL)
            return 0;
        server_time = cn_load_u64be((const uint8_t *)val + 8);
    } else if (t->cf == CN__CF_MAILBOX || t->cf == CN__CF_GMSG) {
        cn_rec_envelope_t env;
        if (cn_rec_envelope_decode((const uint8_t *)val, vlen, &env) != CN_OK)
            return 0;
        server_time = env.server_time;
    } else {
        cn_rec_dedupe_t d;
        if (cn_rec_dedupe_decode((const uint8_t *)val, vlen, &d) != CN_OK)
            return 0;
        server_time = d.server_time;
    }
    uint64_t now = cn_now_coarse_ms();
    return now > server_time && now - server_time > t->ttl_ms;
}

static const char *ttl_filter_name(void *state)
{
    const cn__ttl_t *t = state;
    if (t->cf == CN__CF_GMSG)
        return "cn.gmsg_ttl";
    return t->cf == CN__CF_MAILBOX ? "cn.mailbox_ttl" : "cn.dedupe_ttl";
}

/* Each media record carries its own expiry; what it cannot read it keeps. */
static unsigned char media_filter(void *state, int level, const char *key, size_t klen,
                                  const char *val, size_t vlen, char **new_val, size_t *new_len,
                                  unsigned char *changed)
{
    uint64_t expires, now = cn_now_coarse_ms();
    (void)state, (void)level, (void)new_val, (void)new_len;
    *changed = 0;
    if (cn_atrest_header((const uint8_t *)val, vlen, NULL, &expires) == CN_OK)
        return expires != 0 && expires <= now; /* sealed: the hint is the expiry */
    return cn__media_expired((const uint8_t *)key, klen, (const uint8_t *)val, vlen, now);
}

static const char *media_filter_name(void *state)
{
    (void)state;
    return "cn.media_ttl";
}

static void ttl_filter_destroy(void *state)
{
    (void)state; /* the state lives in cn_store_t */
}

/* ------------------------------------------------------------- options */

/* Block-based tables sharing one block cache. Point lookups (devices,
 * users, dedupe) skip files with a bloom filter; the table options take
 * ownership of the policy. */
static void set_table(rocksdb_options_t *opt, rocksdb_cache_t *cache, size_t block_size)
{
    rocksdb_block_based_table_options_t *bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(bbto, cache);
    rocksdb_block_based_options_set_block_size(bbto, block_size);
    rocksdb_block_based_options_set_filter_policy(
        bbto, rocksdb_filterpolicy_create_bloom_full(BLOOM_BITS_PER_KEY));
    rocksdb_options_set_block_based_table_factory(opt, bbto);
    rocksdb_block_based_options_destroy(bbto); /* the options hold a reference */
}

static rocksdb_options_t *base_options(cn_store_t *s)
{
    const cn_store_options_t *o = &s->opts;
    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opt, 1);
    rocksdb_options_set_create_missing_column_families(opt, 1);
    /* WAL kept for replicas (DESIGN section 6). */
    rocksdb_options_set_WAL_ttl_seconds(opt, o->wal_ttl_seconds);
    rocksdb_options_set_WAL_size_limit_MB(opt, o->wal_size_limit_mb);
    s->block_cache = rocksdb_cache_create_lru(o->block_cache_bytes);
    set_table(opt, s->block_cache, TABLE_BLOCK_BYTES);
    return opt;
}

static void make_cf_options(cn_store_t *s)
{
    s->mailbox_ttl = (cn__ttl_t){CN__CF_MAILBOX, s->opts.mailbox_ttl_ms};
    s->dedupe_ttl = (cn__ttl_t){CN__CF_DEDUPE, s->opts.dedupe_ttl_ms};
    s->mailbox_filter = rocksdb_compactionfilter_create(&s->mailbox_ttl, ttl_filter_destroy,
                                                        ttl_filter, ttl_filter_name);
    s->dedupe_filter = rocksdb_compactionfilter_create(&s->dedupe_ttl, ttl_filter_destroy,
                                                       ttl_filter, ttl_filter_name);
    /* Bodies live as long as the references pointing at them. */
    s->gmsg_ttl = (cn__ttl_t){CN__CF_GMSG, s->opts.mailbox_ttl_ms};
    s->gmsg_filter = rocksdb_compactionfilter_create(&s->gmsg_ttl, ttl_filter_destroy, ttl_filter,
                                                     ttl_filter_name);
    s->media_ttl = (cn__ttl_t){CN__CF_MEDIA, 0};
    s->media_filter = rocksdb_compactionfilter_create(&s->media_ttl, ttl_filter_destroy,
                                                      media_filter, media_filter_name);
    for (int i = 0; i < CN__CF_COUNT; i++) {
        s->cfopts[i] = rocksdb_options_create_copy(s->dbopts);
        /* A sealed value is random bytes to a compressor: snappy would
         * only spend flush and compaction CPU finding that out (3 % of the
         * node's samples at relay-80k, mostly dedupe's). meta and default
         * stay plaintext and compressed. */
        if (s->opts.encrypt && i != CN__CF_DEFAULT && i != CN__CF_META)
            rocksdb_options_set_compression(s->cfopts[i], rocksdb_no_compression);
    }
    rocksdb_options_set_compaction_filter(s->cfopts[CN__CF_MAILBOX], s->mailbox_filter);
    /* Queued envelopes are read in order by a drain and once more by its
     * ack: larger blocks mean fewer block reads and cache inserts per
     * entry. They are large and random even unsealed, so never compressed. */
    enum cn__cf queues[] = {CN__CF_MAILBOX, CN__CF_GMSG};
    for (size_t i = 0; i < CN_ARRAY_LEN(queues); i++) {
        set_table(s->cfopts[queues[i]], s->block_cache, QUEUE_BLOCK_BYTES);
        rocksdb_options_set_compression(s->cfopts[queues[i]], rocksdb_no_compression);
    }
    rocksdb_options_set_write_buffer_size(s->cfopts[CN__CF_MAILBOX], MAILBOX_MEMTABLE_BYTES);
    /* A message's put and the delete of its ack cancel when a flush sees
     * both; flushing two memtables as one doubles the time an ack has for
     * that, without the deeper skip list of a memtable twice the size.
     * relay-80k (100 pairs, saturated): puts dropped by flushes 230,000 ->
     * 290,000 of 390,000, RocksDB's threads 1.9 -> 1.6 us per message. At
     * most 4 x 8 MiB of memtables (merged pair, one being filled, one
     * spare so that writes do not stall while the pair is flushed). */
    rocksdb_options_set_min_write_buffer_number_to_merge(s->cfopts[CN__CF_MAILBOX],
                                                         MAILBOX_MEMTABLES_MERGED);
    rocksdb_options_set_max_write_buffer_number(s->cfopts[CN__CF_MAILBOX],
                                                MAILBOX_MEMTABLES_MERGED + 2);
    rocksdb_options_set_compaction_filter(s->cfopts[CN__CF_DEDUPE], s->dedupe_filter);
    rocksdb_options_set_compaction_filter(s->cfopts[CN__CF_GMSG], s->gmsg_filter);
    /* Every Send looks its (device, message id) up in dedupe, and almost
     * always misses: a bloom filter in the memtable answers that without a
     * skip-list descent (the SST files have theirs already). */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(s->cfopts[CN__CF_DEDUPE],
                                                         MEMTABLE_BLOOM_RATIO);
    rocksdb_options_set_memtable_whole_key_filtering(s->cfopts[CN__CF_DEDUPE], 1);
    /* Dedupe records are never deleted before their TTL, and each Send
     * inserts one at a random place: in a 64 MiB memtable (400,000 of them)
     * every insert walks a skip list far larger than the caches. A small
     * memtable keeps that walk in cache; the flushed files answer lookups
     * through their bloom filters. */
    rocksdb_options_set_write_buffer_size(s->cfopts[CN__CF_DEDUPE], DEDUPE_MEMTABLE_BYTES);
    rocksdb_options_set_compaction_filter(s->cfopts[CN__CF_MEDIA], s->media_filter);
    rocksdb_options_set_enable_blob_files(s->cfopts[CN__CF_MEDIA], 1);
    /* Chunks go to blob files; the small records stay in the tables, and
     * blob GC relocates what still lives in old blob files so that the
     * space of expired chunks comes back. */
    rocksdb_options_set_min_blob_size(s->cfopts[CN__CF_MEDIA], MEDIA_MIN_BLOB_SIZE);
    rocksdb_options_set_enable_blob_gc(s->cfopts[CN__CF_MEDIA], 1);
}

/*
 * Insert hints: the memtable keeps, per key prefix, where the prefix's last
 * insert went and starts the next one there instead of at the top of the
 * skip list (and, unlike the single position RocksDB keeps otherwise,
 * walks up only as far as the key needs). meta's per-device counters
 * (mseq/, oseq/ ‖ device: 37 bytes) are rewritten batch after batch, and a
 * group send rewrites one mseq/ per member device. Instructions per stored
 * copy (scripts/callgrind.sh, repeatable to about 1 %): group of 999
 * 71,700 -> 64,100; one-to-one over 100 devices 79,700 -> 78,200; over
 * 100,000 devices, each new to the memtable, 163,000 -> 166,200 (a new
 * prefix pays for its hint: about 250 bytes of the memtable's arena).
 *
 * The mailbox (device ‖ seq) is hinted by its first byte only: at most
 * 256 hints per memtable, whatever the number of devices. Without a hint
 * every ack's delete descended from the top (it sorts just before its
 * put, so it never lands right after the previous insert), as did every
 * put that did not follow its device's previous one. A hint per device
 * (a 33-byte prefix) gained where devices repeat but lost 14-23 % where
 * they do not: on a node with many devices most prefixes are new to a
 * memtable, and each costs its hint. One byte: one-to-one over 100
 * devices 72,778 -> 64,848 instructions per copy, group of 999 54,056 ->
 * 45,119, over 100,000 devices 159,992 -> 147,742.
 *
 * RocksDB before 9.2 shares hints between a family's point and
 * range-deletion tables (facebook/rocksdb#5118, fixed by #12558): no range
 * delete ever goes to a hinted family (writer.c; a revoke deletes a
 * mailbox entry by entry, ops_mail.c cn__mailbox_drop).
 *
 * The 7.8 C API has no setter; the option is parsed from its string form.
 * RocksDB uses hints on its single-writer path, which is ours.
 */
static int set_insert_hints(cn_store_t *s)
{
    static const struct {
        enum cn__cf cf;
        int prefix;
    } hints[] = {
        {CN__CF_META, CN__META_CTR_LEN}, /* mseq/ ‖ device, oseq/ ‖ device */
        {CN__CF_MAILBOX, 1},             /* device ‖ seq: 256 hints at most */
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(hints); i++) {
        char option[80], *err = NULL;
        snprintf(option, sizeof(option), "memtable_insert_with_hint_prefix_extractor=fixed:%d",
                 hints[i].prefix);
        rocksdb_options_t *o = rocksdb_options_create();
        rocksdb_get_options_from_string(s->cfopts[hints[i].cf], option, o, &err);
        if (err) {
            rocksdb_options_destroy(o);
            return cn__rdb_err(err, "insert_hints");
        }
        rocksdb_options_destroy(s->cfopts[hints[i].cf]);
        s->cfopts[hints[i].cf] = o;
    }
    return CN_OK;
}

/* The 7.8 C API has no setter for periodic_compaction_seconds; it is a
 * mutable column family option, so set it by name right after open. */
static int set_periodic_compaction(cn_store_t *s)
{
    static const char *const keys[] = {"periodic_compaction_seconds"};
    char value[24];
    const char *values[] = {value};
    snprintf(value, sizeof(value), "%u", (unsigned)CN__PERIODIC_COMPACTION_S);
    enum cn__cf cfs[] = {CN__CF_MAILBOX, CN__CF_DEDUPE, CN__CF_MEDIA, CN__CF_GMSG};
    for (size_t i = 0; i < CN_ARRAY_LEN(cfs); i++) {
        char *err = NULL;
        rocksdb_set_options_cf(s->db, s->cf[cfs[i]], 1, keys, values, &err);
        CN_TRY(cn__rdb_err(err, "set_options"));
    }
    return CN_OK;
}

static void fill_defaults(cn_store_options_t *o, const cn_store_options_t *in)
{
    cn_store_options_t d;
    cn_store_options_default(&d);
    *o = *in;
    if (!o->mailbox_ttl_ms)
        o->mailbox_ttl_ms = d.mailbox_ttl_ms;
    if (!o->dedupe_ttl_ms)
        o->dedupe_ttl_ms = d.dedupe_ttl_ms;
    if (!o->block_cache_bytes)
        o->block_cache_bytes = d.block_cache_bytes;
    if (!o->wal_ttl_seconds)
        o->wal_ttl_seconds = d.wal_ttl_seconds;
    if (!o->wal_size_limit_mb)
        o->wal_size_limit_mb = d.wal_size_limit_mb;
    if (!o->max_batch_ops)
        o->max_batch_ops = d.max_batch_ops;
}

static int open_db(cn_store_t *s)
{
    char *err = NULL;
    s->dbopts = base_options(s);
    make_cf_options(s);
    CN_TRY(set_insert_hints(s));
    s->db = rocksdb_open_column_families(s->dbopts, s->path, CN__CF_COUNT, cf_names,
                                         (const rocksdb_options_t *const *)s->cfopts, s->cf, &err);
    CN_TRY(cn__rdb_err(err, "open"));
    CN_TRY(set_periodic_compaction(s));
    s->ro = rocksdb_readoptions_create();
    s->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo, s->opts.sync != CN_SYNC_NONE);
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_lazy = rocksdb_writeoptions_create();
    return CN_OK;
}

/** Records may remain under an old key, or in plaintext: start the pass. */
static bool needs_pass(cn_store_t *s)
{
    cn_keyring_entry_t ents[CN_KEYRING_MAX];
    size_t n = CN_MIN(cn_keyring_list(s->ring, ents, CN_KEYRING_MAX), (size_t)CN_KEYRING_MAX);
    bool any = cn__legacy(s);
    for (size_t i = 0; i < n; i++)
        any = any || ents[i].state == CN_KEY_OLD;
    return any;
}

int cn_store_open(const cn_store_options_t *opts, cn_store_t **out)
{
    int rc;
    *out = NULL;
    CN_ENSURE(opts != NULL && opts->path != NULL && opts->path[0] != '\0', CN_EINVAL);
    CN_ENSURE(opts->sync <= CN_SYNC_NONE, CN_EINVAL);
    /* The media digests use libsodium's SHA-256. */
    CN_ENSURE(sodium_init() >= 0, CN_EINTERNAL);
    cn__hash_init();
    cn_store_t *s = calloc(1, sizeof(*s));
    CN_ENSURE(s != NULL, CN_ENOMEM);
    cn__wal_drop_init(&s->wal_drop); /* fd -1 before anything can dispose it */
    fill_defaults(&s->opts, opts);
    s->path = strdup(opts->path);
    CN_ENSURE_OUT(s->path != NULL, CN_ENOMEM);
    s->opts.path = s->path;
    CN_ENSURE_OUT(pthread_rwlock_init(&s->db_lock, NULL) == 0, CN_EINTERNAL);
    s->lock_ready = true;
    CN_TRY_OUT(cn__readhints_init(&s->readhints));
    CN_TRY_OUT(cn__rjour_init(&s->rjour));
    CN_TRY_OUT(open_db(s));
    CN_TRY_OUT(cn__keys_open(s));
    CN_TRY_OUT(cn__counters_recover(s));
    CN_TRY_OUT(cn__rjour_recover(s));
    CN_TRY_OUT(cn__writer_start(s));
    if (s->ring != NULL) {
        CN_TRY_OUT(cn__pass_start(s));
        if (needs_pass(s))
            cn__pass_request(s);
    }
    *out = s;
    return CN_OK;
out:
    cn_store_free(s);
    return rc;
}

static void close_db(cn_store_t *s)
{
    for (int i = 0; i < CN__CF_COUNT; i++) {
        if (s->cf[i])
            rocksdb_column_family_handle_destroy(s->cf[i]);
    }
    if (s->db)
        rocksdb_close(s->db);
    for (int i = 0; i < CN__CF_COUNT; i++) {
        if (s->cfopts[i])
            rocksdb_options_destroy(s->cfopts[i]);
    }
    /* The filters must outlive the database that calls them. */
    if (s->mailbox_filter)
        rocksdb_compactionfilter_destroy(s->mailbox_filter);
    if (s->dedupe_filter)
        rocksdb_compactionfilter_destroy(s->dedupe_filter);
    if (s->gmsg_filter)
        rocksdb_compactionfilter_destroy(s->gmsg_filter);
    if (s->media_filter)
        rocksdb_compactionfilter_destroy(s->media_filter);
    if (s->dbopts)
        rocksdb_options_destroy(s->dbopts);
    if (s->block_cache)
        rocksdb_cache_destroy(s->block_cache);
    if (s->ro)
        rocksdb_readoptions_destroy(s->ro);
    if (s->wo)
        rocksdb_writeoptions_destroy(s->wo);
    if (s->wo_sync)
        rocksdb_writeoptions_destroy(s->wo_sync);
    if (s->wo_lazy)
        rocksdb_writeoptions_destroy(s->wo_lazy);
    /* A reopen follows: every handle is gone, none may be freed twice. */
    memset(s->cf, 0, sizeof(s->cf));
    memset(s->cfopts, 0, sizeof(s->cfopts));
    s->db = NULL;
    s->dbopts = NULL;
    s->block_cache = NULL;
    s->ro = NULL;
    s->wo = s->wo_sync = s->wo_lazy = NULL;
    s->mailbox_filter = s->dedupe_filter = s->media_filter = s->gmsg_filter = NULL;
}

void cn__db_read_lock(cn_store_t *s)
{
    pthread_rwlock_rdlock(&s->db_lock);
}

void cn__db_read_unlock(cn_store_t *s)
{
    pthread_rwlock_unlock(&s->db_lock);
}

/* True when a small synced write into the data directory succeeds: the
 * disk has room again and fsync works, so a reopen has a chance. */
static bool disk_accepts_writes(const cn_store_t *s)
{
    char path[4096];
    static const char block[4096];
    snprintf(path, sizeof(path), "%s/.cn_write_probe", s->path);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    bool ok = write(fd, block, sizeof(block)) == (ssize_t)sizeof(block) && fsync(fd) == 0;
    close(fd);
    unlink(path);
    return ok;
}

/* Bytes a reopen may write besides recovering the WAL: a new MANIFEST,
 * OPTIONS file and WAL, with room to spare. */
#define REOPEN_FREE_MARGIN (8ull * 1024 * 1024)

/*
 * Whether the file system has room for a reopen to succeed. Opening
 * replays the live WAL files into memtables and flushes them into tables,
 * so it needs about their size on top of the margin; a 4 KiB probe alone
 * passes on a disk that then refuses the reopen, which closes a database
 * that still serves reads, holds every reader out while it retries, and
 * gives up by aborting the node.
 */
static bool disk_has_room(const cn_store_t *s, uint64_t *free_bytes, uint64_t *needed)
{
    struct statvfs v;
    *needed = REOPEN_FREE_MARGIN;
    *free_bytes = 0;
    if (statvfs(s->path, &v) != 0)
        return false;
    *free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
    DIR *d = opendir(s->path);
    if (d == NULL)
        return false;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        struct stat st;
        if (n > 4 && strcmp(e->d_name + n - 4, ".log") == 0 &&
            fstatat(dirfd(d), e->d_name, &st, 0) == 0)
            *needed += (uint64_t)st.st_size;
    }
    closedir(d);
    return *free_bytes >= *needed;
}

#define REOPEN_INTERVAL_NS 1000000000ull /* one attempt per second at most */
#define REOPEN_TRIES       50            /* 100 ms apart, holding out readers */

int cn__db_try_reopen(cn_store_t *s)
{
    uint64_t now = cn_mono_ns();
    if (now < s->reopen_after)
        return CN_EAGAIN;
    s->reopen_after = now + REOPEN_INTERVAL_NS;
    uint64_t free_bytes, needed;
    if (!disk_has_room(s, &free_bytes, &needed)) {
        cn_log_debug("store_reopen_waiting", "free=%llu needed=%llu",
                     (unsigned long long)free_bytes, (unsigned long long)needed);
        return CN_EAGAIN;
    }
    if (!disk_accepts_writes(s))
        return CN_EAGAIN;
    pthread_rwlock_wrlock(&s->db_lock);
    close_db(s);
    int rc = CN_EIO;
    for (int i = 0; i < REOPEN_TRIES && rc != CN_OK; i++) {
        rc = open_db(s);
        if (rc != CN_OK) {
            close_db(s);
            nanosleep(&(struct timespec){0, 100000000}, NULL);
        }
    }
    pthread_rwlock_unlock(&s->db_lock);
    if (rc != CN_OK) {
        /* No database to serve from: stop, and let the supervisor restart
         * the node (the systemd unit restarts on failure). */
        cn_log_error("store_reopen_failed", "path=%s", s->path);
        abort();
    }
    cn_log_info("store_reopened", "path=%s", s->path);
    return CN_OK;
}

void cn_store_free(cn_store_t *s)
{
    if (s == NULL)
        return;
    cn__pass_stop(s);
    cn__writer_stop(s);
    cn__pass_dispose(s);
    cn__keys_close(s);
    close_db(s);
    if (s->lock_ready)
        pthread_rwlock_destroy(&s->db_lock);
    cn__readhints_dispose(&s->readhints);
    cn__rjour_dispose(&s->rjour);
    free(s->path);
    free(s);
}

int cn__store_compact(cn_store_t *s, enum cn__cf cf)
{
    CN_ENSURE(cf < CN__CF_COUNT, CN_EINVAL);
    rocksdb_compact_range_cf(s->db, s->cf[cf], NULL, 0, NULL, 0);
    return CN_OK;
}

/*
 * log_size_for_flush 0: always flush the memtables first, so the checkpoint
 * holds table files only and opens without replaying a WAL. RocksDB refuses
 * an existing directory too, but checking first gives callers CN_EEXIST.
 */
static int checkpoint_unlocked(cn_store_t *s, const char *dir)
{
    struct stat st;
    char *err = NULL;
    CN_ENSURE(s != NULL && dir != NULL && dir[0] != '\0', CN_EINVAL);
    if (stat(dir, &st) == 0)
        return CN_EEXIST;
    if (errno != ENOENT) {
        cn_log_error("store_error", "op=checkpoint reason=\"%s\"", strerror(errno));
        return CN_EIO;
    }
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(s->db, &err);
    CN_TRY(cn__rdb_err(err, "checkpoint"));
    rocksdb_checkpoint_create(cp, dir, 0, &err);
    rocksdb_checkpoint_object_destroy(cp);
    return cn__rdb_err(err, "checkpoint");
}

int cn_store_checkpoint(cn_store_t *s, const char *dir)
{
    cn__db_read_lock(s);
    int rc = checkpoint_unlocked(s, dir);
    cn__db_read_unlock(s);
    return rc;
}
