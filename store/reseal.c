/*
 * The re-seal pass: a background thread that walks every sealed column
 * family and moves the records sealed under an old key (or plaintext
 * records of a legacy database, key id 0) to the current key. It walks
 * dedupe too, which is plain now (seal.c): a dedupe record sealed before
 * is written back in the clear, so that its key can drain.
 *
 * It never writes itself. It reads committed data in slices (a fresh
 * iterator per slice, so no snapshot is held for long) and hands each
 * slice of at most CN__RESEAL_SLICE records to the writer as one internal
 * op, which re-reads every record through the batch and re-seals it only
 * if it is still sealed under the key the pass saw (compare-and-swap: a
 * value written meanwhile is newer and stays). A slice costs the writer
 * about CN__RESEAL_SLICE opens and seals (a few hundred microseconds), and
 * the pass sleeps PACE_MS between slices, so sends never wait long.
 *
 * It counts the records under each key id as it goes (cn_store_keys_stats).
 * A rotation restarts it. When a pass completes, the old keys it left no
 * record under become DRAINED (retirable), and a legacy database whose
 * plaintext records are all converted leaves legacy mode.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PACE_MS        2    /* pause between slices */
#define SCAN_PER_SLICE 4096 /* records looked at per slice at most */

static const enum cn__cf pass_cfs[] = {
    CN__CF_DEVICES, CN__CF_USERS, CN__CF_PREKEYS, CN__CF_MAILBOX, CN__CF_DEDUPE,
    CN__CF_GROUPS,  CN__CF_MEDIA, CN__CF_HISTORY, CN__CF_PUSH,    CN__CF_GMSG};

/** Adds d to the count of key id (creating it). Called with mu held. */
static void count_add(cn__pass_t *p, uint32_t id, int64_t d)
{
    size_t i = 0;
    while (i < p->nids && p->ids[i] != id)
        i++;
    if (i == p->nids) {
        if (p->nids == CN_ARRAY_LEN(p->ids))
            return;
        p->ids[p->nids] = id;
        p->counts[p->nids++] = 0;
    }
    if (d < 0 && p->counts[i] < (uint64_t)-d)
        p->counts[i] = 0;
    else
        p->counts[i] += (uint64_t)d;
}

static uint64_t estimate(cn_store_t *s)
{
    uint64_t total = 0, v;
    for (size_t i = 0; i < CN_ARRAY_LEN(pass_cfs); i++) {
        if (rocksdb_property_int_cf(s->db, s->cf[pass_cfs[i]], "rocksdb.estimate-num-keys", &v) ==
            0)
            total += v;
    }
    return total;
}

/** True when the pass must stop (closing) or restart (a rotation). */
static bool interrupted(cn__pass_t *p)
{
    pthread_mutex_lock(&p->mu);
    bool r = p->stop || p->requested;
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void op_done(cn_store_op_t *op)
{
    cn__reseal_t *r = op->ctx;
    cn__pass_t *p = &r->s->pass;
    pthread_mutex_lock(&p->mu);
    p->op_done = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/** Runs one internal op through the writer and waits for it. */
static int submit_wait(cn_store_t *s, cn_store_op_t *op, enum cn_store_op_type type,
                       cn__reseal_t *r)
{
    memset(op, 0, sizeof(*op));
    op->type = type;
    op->ctx = r;
    op->done = op_done;
    pthread_mutex_lock(&s->pass.mu);
    s->pass.op_done = false;
    pthread_mutex_unlock(&s->pass.mu);
    CN_TRY(cn_store_submit(s, op));
    pthread_mutex_lock(&s->pass.mu);
    while (!s->pass.op_done)
        pthread_cond_wait(&s->pass.cv, &s->pass.mu);
    pthread_mutex_unlock(&s->pass.mu);
    return op->result;
}

/** Where a column family's walk stands. */
typedef struct cursor {
    enum cn__cf cf;
    uint8_t last[CN__KEY_MAX];
    size_t lastlen;
    bool started;
} cursor_t;

/** Looks at one record: counts it, queues it when not under current. */
static void scan_one(cn_store_t *s, cn__reseal_t *r, enum cn__cf cf, const char *k, size_t klen,
                     const uint8_t *v, size_t vlen)
{
    uint32_t id;
    bool sealed = cn__value_needs_open(s, cf, v, vlen); /* else plain dedupe: under no key */
    if (sealed && cn__value_key_id(s, v, vlen, &id) < 0)
        id = 0; /* plaintext where none may be: the writer reports it */
    pthread_mutex_lock(&s->pass.mu);
    if (sealed)
        count_add(&s->pass, id, 1);
    s->pass.scanned++;
    pthread_mutex_unlock(&s->pass.mu);
    if (!sealed)
        return;
    if (id == r->current || klen > CN__KEY_MAX)
        return;
    size_t i = r->n++;
    r->cf[i] = cf;
    memcpy(r->key[i], k, klen);
    r->klen[i] = klen;
    r->old_id[i] = id;
}

/**
 * Fills r with the next records of c's column family that are not under
 * the current key; *more is false once the family is done.
 */
static int scan_slice_unlocked(cn_store_t *s, cursor_t *c, cn__reseal_t *r, bool *more)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0); /* a full walk must not evict the hot set */
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[c->cf]);
    size_t looked = 0;
    r->n = 0;
    *more = false;
    if (!c->started) {
        rocksdb_iter_seek_to_first(it);
        c->started = true;
    } else {
        rocksdb_iter_seek(it, (const char *)c->last, c->lastlen);
        size_t klen;
        if (rocksdb_iter_valid(it)) {
            const char *k = rocksdb_iter_key(it, &klen);
            if (klen == c->lastlen && memcmp(k, c->last, klen) == 0)
                rocksdb_iter_next(it);
        }
    }
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        if (r->n == CN__RESEAL_SLICE || looked == SCAN_PER_SLICE) {
            *more = true;
            break;
        }
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        scan_one(s, r, c->cf, k, klen, (const uint8_t *)v, vlen);
        looked++;
        c->lastlen = CN_MIN(klen, (size_t)CN__KEY_MAX);
        memcpy(c->last, k, c->lastlen);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return cn__rdb_err(err, "reseal_scan");
}

static int scan_slice(cn_store_t *s, cursor_t *c, cn__reseal_t *r, bool *more)
{
    cn__db_read_lock(s);
    int rc = scan_slice_unlocked(s, c, r, more);
    cn__db_read_unlock(s);
    return rc;
}

/** Books the writer's outcomes into the counts. */
static void settle(cn_store_t *s, const cn__reseal_t *r)
{
    cn__pass_t *p = &s->pass;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < r->n; i++) {
        enum cn__reseal_outcome o = r->outcome[i];
        if (o == CN__RESEAL_FAILED)
            continue; /* still under its key: that key stays in use */
        if (o == CN__RESEAL_MOVED)
            p->resealed++;
        if ((o == CN__RESEAL_MOVED || o == CN__RESEAL_NEWER) && cn__cf_sealed(s, r->cf[i]))
            count_add(p, r->new_id[i], 1);
        count_add(p, r->old_id[i], -1);
    }
    pthread_mutex_unlock(&p->mu);
}

/** Sleeps PACE_MS unless the pass is interrupted first. */
static void pace(cn__pass_t *p)
{
    struct timespec ts;
    cn_deadline(&ts, CLOCK_REALTIME, PACE_MS);
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !p->requested) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&p->mu);
}

/** After a complete walk: the start's candidates that no record uses. */
static int finish(cn_store_t *s, cn__reseal_t *r, cn_store_op_t *op)
{
    cn__pass_t *p = &s->pass;
    r->n = 0;
    r->ndrained = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < r->ncands; i++) {
        size_t j = 0;
        while (j < p->nids && p->ids[j] != r->cands[i])
            j++;
        if (j == p->nids || p->counts[j] == 0)
            r->drained[r->ndrained++] = r->cands[i];
    }
    size_t z = 0;
    while (z < p->nids && p->ids[z] != 0)
        z++;
    r->clear_legacy = cn__legacy(s) && (z == p->nids || p->counts[z] == 0);
    pthread_mutex_unlock(&p->mu);
    if (r->ndrained == 0 && !r->clear_legacy)
        return CN_OK;
    return submit_wait(s, op, CN__OP_DRAINED, r);
}

/** One complete pass; CN_EAGAIN when interrupted (restart or stop). */
static int run_pass(cn_store_t *s, cn__reseal_t *r, cn_store_op_t *op)
{
    /* An empty slice through the writer: the ring as of a batch boundary. */
    r->n = 0;
    CN_TRY(submit_wait(s, op, CN__OP_RESEAL, r));
    uint32_t cands[CN_KEYRING_MAX];
    size_t ncands = r->ncands;
    uint32_t current = r->current;
    memcpy(cands, r->cands, ncands * sizeof(cands[0]));
    for (size_t i = 0; i < CN_ARRAY_LEN(pass_cfs); i++) {
        cursor_t c = {.cf = pass_cfs[i]};
        for (bool more = true; more;) {
            if (interrupted(&s->pass))
                return CN_EAGAIN;
            r->current = current;
            CN_TRY(scan_slice(s, &c, r, &more));
            if (r->n > 0) {
                CN_TRY(submit_wait(s, op, CN__OP_RESEAL, r));
                settle(s, r);
                pace(&s->pass);
            }
        }
    }
    r->current = current;
    r->ncands = ncands;
    memcpy(r->cands, cands, ncands * sizeof(cands[0]));
    return finish(s, r, op);
}

static void *pass_main(void *arg)
{
    cn_store_t *s = arg;
    cn__pass_t *p = &s->pass;
    cn_store_op_t op;
    cn_thread_name("cn-reseal");
    cn__reseal_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        cn_log_error("store_reseal_failed", "rc=%s", cn_strerror(CN_ENOMEM));
        return NULL;
    }
    r->s = s;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->requested && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->requested = false;
        p->running = p->counted = true;
        p->resealed = p->scanned = 0;
        p->nids = 0;
        pthread_mutex_unlock(&p->mu);
        uint64_t total = estimate(s);
        pthread_mutex_lock(&p->mu);
        p->total = total;
        pthread_mutex_unlock(&p->mu);

        int rc = run_pass(s, r, &op);
        pthread_mutex_lock(&p->mu);
        p->running = false;
        if (rc == CN_OK)
            p->passes++;
        unsigned long long resealed = p->resealed, scanned = p->scanned;
        pthread_mutex_unlock(&p->mu);
        if (rc == CN_OK)
            cn_log_info("store_reseal_done", "resealed=%llu scanned=%llu", resealed, scanned);
        else if (rc != CN_EAGAIN && rc != CN_ECLOSED)
            cn_log_error("store_reseal_failed", "rc=%s", cn_strerror(rc));
    }
    free(r);
    return NULL;
}

int cn__pass_start(cn_store_t *s)
{
    cn__pass_t *p = &s->pass;
    CN_ENSURE(pthread_mutex_init(&p->mu, NULL) == 0, CN_EINTERNAL);
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return CN_EINTERNAL;
    }
    p->inited = true;
    CN_ENSURE(pthread_create(&p->thread, NULL, pass_main, s) == 0, CN_EINTERNAL);
    p->started = true;
    return CN_OK;
}

void cn__pass_request(cn_store_t *s)
{
    cn__pass_t *p = &s->pass;
    if (!p->inited)
        return;
    pthread_mutex_lock(&p->mu);
    p->requested = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* The pass may be waiting for an op: the writer still runs and calls it
 * back, so the pass stops before the writer does. The writer may still
 * request a pass afterwards (a rotation): the mutex lives until dispose. */
void cn__pass_stop(cn_store_t *s)
{
    cn__pass_t *p = &s->pass;
    if (!p->started)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->started = false;
}

void cn__pass_dispose(cn_store_t *s)
{
    cn__pass_t *p = &s->pass;
    if (!p->inited)
        return;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    p->inited = false;
}
