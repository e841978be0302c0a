/*
 * The writer thread: group commit (DESIGN section 5). It takes everything
 * queued (up to max_batch_ops, or one op under sync=always), applies each op
 * to one indexed WriteBatch, writes it once (fsync unless sync=none), and
 * only then sets results and calls the done callbacks. An op that fails its
 * checks gets its own result and writes nothing; an internal failure or a
 * failed write fails every op of the batch with CN_EIO.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cn_store_submit(cn_store_t *s, cn_store_op_t *op)
{
    CN_ENSURE(s != NULL && op != NULL, CN_EINVAL);
    op->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        return CN_ECLOSED;
    }
    if (s->tail)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->stats.queue_depth++;
    /* Lazy ops wake the writer once, which then waits for company for a
     * while: at a reconnect storm's pace a wake-up per disconnect (two
     * context switches) cost more than the write itself. */
    if (!op->lazy) {
        s->urgent = true;
        pthread_cond_signal(&s->cv);
    } else if (!s->lazy_waiting) {
        s->lazy_waiting = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return CN_OK;
}

size_t cn__batch_bucket(uint64_t n)
{
    static const uint64_t bounds[] = CN_STORE_BATCH_BUCKETS_OPS;
    size_t i = 0;
    while (i < CN_ARRAY_LEN(bounds) && n > bounds[i])
        i++;
    return i;
}

size_t cn__fsync_bucket(uint64_t ns)
{
    static const double bounds_ms[] = CN_STORE_FSYNC_BUCKETS_MS;
    size_t i = 0;
    /* Compared in ns: 0.1 ms is 100000 ns exactly once rounded. */
    while (i < CN_ARRAY_LEN(bounds_ms) && ns > (uint64_t)(bounds_ms[i] * 1e6 + 0.5))
        i++;
    return i;
}

void cn_store_stats_get(cn_store_t *s, cn_store_stats_t *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

static int apply_op(cn__batch_t *b, cn_store_op_t *op)
{
    /* int: the internal op types are outside the public enum. */
    switch ((int)op->type) {
    case CN_OP_REGISTER:
        return cn__op_register(b, op);
    case CN_OP_LINK:
        return cn__op_link(b, op);
    case CN_OP_REVOKE:
        return cn__op_revoke(b, op);
    case CN_OP_PREKEYS_UPLOAD:
        return cn__op_upload(b, op);
    case CN_OP_PREKEYS_FETCH:
        return cn__op_fetch(b, op);
    case CN_OP_SEND:
        return cn__op_send(b, op);
    case CN_OP_ACK:
        return cn__op_ack(b, op);
    case CN_OP_USER_UPDATE:
        return cn__op_user_update(b, op);
    case CN_OP_PUSH_CLEAR:
        return cn__op_push_clear(b, op);
    case CN_OP_PUSH_DONE:
        return cn__op_push_done(b, op);
    case CN_OP_META_PUT:
        return cn__op_meta_put(b, op);
    case CN_OP_META_DELETE:
        return cn__op_meta_delete(b, op);
    case CN_OP_GROUP_CREATE:
        return cn__op_group_create(b, op);
    case CN_OP_GROUP_UPDATE:
        return cn__op_group_update(b, op);
    case CN_OP_MEDIA_BEGIN:
        return cn__op_media_begin(b, op);
    case CN_OP_MEDIA_CHUNK:
        return cn__op_media_chunk(b, op);
    case CN_OP_MEDIA_END:
        return cn__op_media_end(b, op);
    case CN_OP_HISTORY_APPEND:
        return cn__op_history_append(b, op);
    case CN_OP_KEYS_ROTATE:
        return cn__op_keys_rotate(b, op);
    case CN_OP_KEYS_RETIRE:
        return cn__op_keys_retire(b, op);
    case CN__OP_RESEAL:
        return cn__op_reseal(b, op);
    case CN__OP_DRAINED:
        return cn__op_drained(b, op);
    }
    return CN_EINVAL;
}

/* The final batch: the indexed part's ops (copied as they were made,
 * ops_util.c), the unindexed records (overlay.c), then the range deletes of
 * revoked devices' prekeys (an indexed batch cannot carry those; later ops
 * of this batch cannot have written anything there that must survive).
 * Never a range delete on a family with memtable insert hints (meta,
 * mailbox: db.c): RocksDB 7.8 would insert through the wrong list. A
 * revoked device's mailbox goes with point deletes (cn__mailbox_drop). */
static void finish_final(cn_store_t *s, cn__batch_t *b)
{
    cn__overlay_replay(&b->overlay, s, b->final);
    for (size_t i = 0; i < b->nrevoked; i++) {
        uint8_t lo[CN_DEVICE_ID_LEN], hi[CN_DEVICE_ID_LEN + 10];
        memcpy(lo, b->revoked[i], CN_DEVICE_ID_LEN);
        memcpy(hi, b->revoked[i], CN_DEVICE_ID_LEN);
        /* device ‖ 0xff × (suffix + 1) is above every key of the device. */
        memset(hi + CN_DEVICE_ID_LEN, 0xff, 10);
        rocksdb_writebatch_delete_range_cf(b->final, s->cf[CN__CF_PREKEYS], (const char *)lo,
                                           sizeof(lo), (const char *)hi, CN_DEVICE_ID_LEN + 10);
    }
}

/**
 * Writes the batch (without an fsync when lazy: every op in it is lazy);
 * returns the write duration in *ns and whether anything was synced in
 * *synced.
 */
static int write_batch(cn_store_t *s, cn__batch_t *b, bool lazy, uint64_t *ns, bool *synced)
{
    char *err = NULL;
    uint64_t t0 = cn_mono_ns();
    const rocksdb_writeoptions_t *wo = lazy ? s->wo_lazy : s->wo;
    *ns = 0;
    *synced = false;
    if (rocksdb_writebatch_wi_count(b->wb) == 0 && b->overlay.nrecords == 0 && b->nrevoked == 0)
        return CN_OK;
    *synced = !lazy && s->opts.sync != CN_SYNC_NONE;
    finish_final(s, b);
    rocksdb_write(s->db, wo, b->final, &err);
    *ns = cn_mono_ns() - t0;
    return cn__rdb_err(err, "write");
}

/* A batch that grew the final batch's buffer past this gives it back. */
#define FINAL_KEEP_BYTES (4u << 20)

static void final_reset(cn__batch_t *b)
{
    size_t size;
    rocksdb_writebatch_data(b->final, &size);
    if (size > FINAL_KEEP_BYTES) {
        rocksdb_writebatch_destroy(b->final);
        b->final = rocksdb_writebatch_create();
    } else {
        rocksdb_writebatch_clear(b->final);
    }
}

static void count_batch(cn_store_t *s, size_t n, uint64_t ns, bool synced, bool failed)
{
    pthread_mutex_lock(&s->mu);
    if (n > 0) { /* not a fold of the counter journal alone */
        s->stats.batches++;
        s->stats.ops += n;
        s->stats.last_batch_ops = n;
        s->stats.batch_ops_hist[cn__batch_bucket(n)]++;
    }
    if (synced) {
        s->stats.fsync_ns_total += ns;
        s->stats.fsync_hist[cn__fsync_bucket(ns)]++;
    }
    if (failed)
        s->stats.write_errors++;
    /* RocksDB keeps failing after a background error (disk full, fsync
     * failure) until reopened: readiness reports it (the node's /readyz). */
    s->stats.write_failing = failed;
    if (failed)
        s->need_reopen = true;
    pthread_mutex_unlock(&s->mu);
}

static bool prefetch_room(cn__prefetch_t *p, size_t n)
{
    if (n <= p->cap)
        return true;
    free(p->keys), free(p->ptrs), free(p->absent), free(p->lens), free(p->values), free(p->errs);
    p->keys = malloc(n * sizeof(*p->keys));
    p->ptrs = malloc(n * sizeof(*p->ptrs));
    p->absent = malloc(n * sizeof(*p->absent));
    p->lens = malloc(n * sizeof(*p->lens));
    p->values = malloc(n * sizeof(*p->values));
    p->errs = malloc(n * sizeof(*p->errs));
    p->cap = p->keys && p->ptrs && p->absent && p->lens && p->values && p->errs ? n : 0;
    return p->cap != 0;
}

static int dedupe_key_cmp(const void *a, const void *b)
{
    return memcmp(*(const char *const *)a, *(const char *const *)b, CN__KEY_DEDUPE);
}

/*
 * Sorts the key pointers in RocksDB's (bytewise) order, so that MultiGet
 * need not sort them itself (std::sort through its comparator: 1 % of the
 * node's samples at relay-80k). Message ids are time-ordered as clients
 * make them, so the keys arrive nearly sorted and an insertion sort costs
 * about n; ids a client chose otherwise exhaust its budget of moves and
 * qsort finishes the job.
 */
static void sort_dedupe_keys(const char **a, size_t n)
{
    size_t budget = 8 * n;
    for (size_t k = 1; k < n; k++) {
        const char *x = a[k];
        size_t j = k;
        while (j > 0 && memcmp(a[j - 1], x, CN__KEY_DEDUPE) > 0 && budget > 0) {
            a[j] = a[j - 1];
            j--;
            budget--;
        }
        a[j] = x;
        if (budget == 0) {
            qsort(a, n, sizeof(*a), dedupe_key_cmp);
            return;
        }
    }
}

/*
 * Every Send looks its (sender device, message id) up in dedupe, and
 * almost always finds nothing. One batched MultiGet for all the Sends of
 * a batch (one superversion, the filters of each table probed together)
 * replaces a Get each; it reads committed data, which nothing changes
 * until this batch is written, so an op marked absent needs only its
 * batch's own records checked (ops_mail.c). Without room, or on any
 * error, ops stay unmarked and look up as before.
 */
static void prefetch_dedupe(cn_store_t *s, cn__prefetch_t *p, cn_store_op_t *ops, size_t n)
{
    size_t k = 0;
    for (cn_store_op_t *op = ops; op != NULL; op = op->next)
        op->dedupe_absent = false;
    if (n < 2 || !prefetch_room(p, n))
        return;
    for (cn_store_op_t *op = ops; op != NULL; op = op->next) {
        if (op->type != CN_OP_SEND)
            continue;
        cn__key_dedupe(p->keys[k], op->u.send.env.from_device, op->u.send.env.message_id);
        p->ptrs[k] = (const char *)p->keys[k];
        p->lens[k] = CN__KEY_DEDUPE;
        k++;
    }
    if (k < 2)
        return;
    sort_dedupe_keys(p->ptrs, k);
    rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf[CN__CF_DEDUPE], k, p->ptrs, p->lens, p->values,
                                 p->errs, true);
    for (size_t i = 0; i < k; i++) {
        size_t op_index = (size_t)((const uint8_t *)p->ptrs[i] - p->keys[0]) / CN__KEY_DEDUPE;
        p->absent[op_index] = p->values[i] == NULL && p->errs[i] == NULL;
        if (p->values[i])
            rocksdb_pinnableslice_destroy(p->values[i]);
        if (p->errs[i])
            rocksdb_free(p->errs[i]);
    }
    k = 0;
    for (cn_store_op_t *op = ops; op != NULL; op = op->next) {
        if (op->type == CN_OP_SEND)
            op->dedupe_absent = p->absent[k++];
    }
}

/** Applies, writes and completes one batch of n ops (a list via next). */
static void run_batch(cn_store_t *s, cn_store_op_t *ops, size_t n)
{
    cn__batch_t *b = &s->batch;
    uint64_t ns = 0;
    bool synced = false, lazy = true;
    rocksdb_writebatch_wi_clear(b->wb);
    final_reset(b);
    cn__refs_reset(&b->refs);
    cn__overlay_reset(&b->overlay);
    b->nrevoked = 0;
    b->fatal = CN_OK;
    /* The previous batches' group references go into the mailboxes before
     * any op of this batch reads or changes one. */
    int mrc = cn__rjour_materialize(b);
    if (mrc < 0 && b->fatal == CN_OK)
        b->fatal = mrc;
    prefetch_dedupe(s, &b->prefetch, ops, n);
    for (cn_store_op_t *op = ops; op != NULL && b->fatal == CN_OK; op = op->next) {
        lazy = lazy && op->lazy;
        op->result = apply_op(b, op);
    }
    /* The flushes' puts poison b->fatal themselves: keep what they set. */
    int rc = b->fatal == CN_OK ? cn__refs_flush(b) : CN_OK;
    if (rc == CN_OK && b->fatal == CN_OK)
        rc = cn__counters_flush(b);
    if (rc == CN_OK && b->fatal == CN_OK)
        rc = cn__rjour_flush(b);
    if (rc < 0 && b->fatal == CN_OK)
        b->fatal = rc;
    /* Nothing reaches RocksDB between a failed write and the reopen:
     * RocksDB 7.8 refuses most such writes, but one that reaches the WAL
     * after a failed WAL write trips an assertion (kept in Debian's build)
     * and aborts the process (fixed upstream in RocksDB 9.1, PR 12448). */
    if (b->fatal == CN_OK && s->need_reopen)
        b->fatal = CN_EIO;
    if (b->fatal == CN_OK)
        b->fatal = write_batch(s, b, lazy, &ns, &synced);
    if (b->fatal == CN_OK && synced)
        cn__wal_drop_after_sync(&s->wal_drop, s->path);
    cn__counters_end(&s->counters, b->fatal == CN_OK);
    cn__recent_end(&b->recent, b->fatal == CN_OK);
    cn__rjour_end(s, b->fatal == CN_OK);
    cn__keys_end(b, b->fatal == CN_OK);
    count_batch(s, n, ns, synced, b->fatal != CN_OK);

    for (cn_store_op_t *op = ops, *next; op != NULL; op = next) {
        next = op->next; /* done may free or resubmit the op */
        if (b->fatal != CN_OK)
            op->result = CN_EIO;
        if (op->done)
            op->done(op);
    }
    /* Counted out only after the callbacks: a drained queue means every
     * caller has been answered (the node's shutdown waits for that). */
    pthread_mutex_lock(&s->mu);
    s->stats.queue_depth -= n;
    pthread_mutex_unlock(&s->mu);
}

/** Detaches up to max queued ops; called with mu held. */
static cn_store_op_t *take_batch(cn_store_t *s, size_t max, size_t *n)
{
    cn_store_op_t *first = s->head, *last = s->head;
    *n = 1;
    while (*n < max && last->next != NULL) {
        last = last->next;
        (*n)++;
    }
    s->head = last->next;
    if (s->head == NULL)
        s->tail = NULL;
    last->next = NULL;
    return first;
}

/* Work for an idle moment: the counter journal to fold, group references
 * to put into the mailboxes (both by a batch of no ops). */
static bool idle_work(cn_store_t *s)
{
    return cn__counters_fold_pending(&s->counters) || cn__rjour_pending(&s->rjour);
}

/**
 * Waits (mu held) until there is a batch to run: an op someone waits for,
 * lazy ops that waited CN_STORE_LAZY_DELAY_MS, or closing; or, with
 * nothing queued, until idle work (idle_work) has waited CN__CJOUR_IDLE_MS
 * (returns with head NULL).
 */
static void wait_for_work(cn_store_t *s)
{
    struct timespec deadline;
    bool timed = false;
    while (!s->closing && (s->head == NULL || !s->urgent)) {
        if (s->head == NULL) {
            timed = false;
            if (!idle_work(s)) {
                pthread_cond_wait(&s->cv, &s->mu);
                continue;
            }
            cn_deadline(&deadline, CLOCK_MONOTONIC, CN__CJOUR_IDLE_MS);
            if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT && s->head == NULL)
                return;
            continue;
        }
        if (!timed) { /* only lazy ops: give them company for a while */
            timed = true;
            cn_deadline(&deadline, CLOCK_MONOTONIC, CN_STORE_LAZY_DELAY_MS);
        }
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT)
            return;
    }
}

static void *writer_main(void *arg)
{
    cn_store_t *s = arg;
    cn_thread_name("cn-store");
    size_t max = s->opts.sync == CN_SYNC_ALWAYS ? 1 : s->opts.max_batch_ops;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        wait_for_work(s);
        if (s->head == NULL) {
            /* Idle, or closing and drained: fold the counter journal and
             * put the journaled group references into the mailboxes (a
             * batch of no ops, not synced: the records stay until it is
             * on disk). Not while the database refuses writes: the
             * records wait for the reopen. */
            bool closing = s->closing;
            if (idle_work(s)) {
                pthread_mutex_unlock(&s->mu);
                if (s->need_reopen && cn__db_try_reopen(s) == CN_OK)
                    s->need_reopen = false;
                if (!s->need_reopen) {
                    s->counters.fold_requested = true;
                    run_batch(s, NULL, 0);
                }
                pthread_mutex_lock(&s->mu);
            }
            if (closing)
                break;
            continue;
        }
        size_t n;
        cn_store_op_t *ops = take_batch(s, max, &n);
        /* What stays queued (past max) still counts as urgent. */
        s->urgent = s->head != NULL;
        s->lazy_waiting = false;
        pthread_mutex_unlock(&s->mu);
        /* After a storage fault RocksDB refuses every write until reopened. */
        if (s->need_reopen && cn__db_try_reopen(s) == CN_OK)
            s->need_reopen = false;
        run_batch(s, ops, n);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int cn__writer_start(cn_store_t *s)
{
    s->batch.s = s;
    cn_buf_init(&s->batch.v1);
    cn_buf_init(&s->batch.v2);
    cn_buf_init(&s->batch.seal);
    cn_buf_init(&s->batch.overlay.log);
    /* overwrite_key: reads through the batch see the latest write of a key. */
    s->batch.wb = rocksdb_writebatch_wi_create(0, 1);
    s->batch.final = rocksdb_writebatch_create();
    /* Without memory for it, acks read the mailbox back: only slower. */
    if (cn__recent_init(&s->batch.recent) < 0)
        cn_log_warn("store_recent_unavailable", "entries=%d", CN__RECENT_MAX);
    CN_ENSURE(pthread_mutex_init(&s->mu, NULL) == 0, CN_EINTERNAL);
    pthread_condattr_t ca;
    bool cv_ok = false;
    if (pthread_condattr_init(&ca) == 0) {
        cv_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                pthread_cond_init(&s->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!cv_ok) {
        pthread_mutex_destroy(&s->mu);
        return CN_EINTERNAL;
    }
    if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        return CN_EINTERNAL;
    }
    s->thread_started = true;
    return CN_OK;
}

void cn__writer_stop(cn_store_t *s)
{
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->closing = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        s->thread_started = false;
    }
    if (s->batch.wb)
        rocksdb_writebatch_wi_destroy(s->batch.wb);
    s->batch.wb = NULL;
    if (s->batch.final)
        rocksdb_writebatch_destroy(s->batch.final);
    s->batch.final = NULL;
    cn_buf_dispose(&s->batch.v1);
    cn_buf_dispose(&s->batch.v2);
    cn_buf_dispose(&s->batch.seal);
    free(s->batch.revoked);
    s->batch.revoked = NULL;
    free(s->batch.group);
    s->batch.group = NULL;
    cn__counters_dispose(&s->counters);
    cn__refs_dispose(&s->batch.refs);
    cn__recent_dispose(&s->batch.recent);
    cn__overlay_dispose(&s->batch.overlay);
    cn__wal_drop_dispose(&s->wal_drop);
    cn__prefetch_t *p = &s->batch.prefetch;
    free(p->keys), free(p->ptrs), free(p->absent), free(p->lens), free(p->values), free(p->errs);
    memset(p, 0, sizeof(*p));
}
