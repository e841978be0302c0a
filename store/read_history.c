/*
 * History reads (any thread, committed data only): pages of a user's
 * archive newest first, by reverse iteration (SeekForPrev under an
 * iterate_lower_bound) over the 'T' (one thread) or 'U' (all threads)
 * index, and the list of threads by last activity.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct hist_query {
    uint8_t prefix[1 + CN__USER_KEY_LEN + CN_THREAD_TAG_LEN];
    size_t plen;
    const uint8_t *tag; /* NULL: all threads, through the 'U' index */
    const uint8_t *user;
} hist_query_t;

/**
 * Passes one index entry to cb: the sealed bytes are the value of a 'T'
 * key, or found through the tag a 'U' key holds. Returns 1 when cb asked
 * to stop, 0 to go on, or < 0. *skip: not an entry.
 */
static int hist_emit(cn_store_t *s, const hist_query_t *q, cn__iter_t *it, cn_store_history_cb cb,
                     void *ctx, bool *skip)
{
    size_t klen, vlen;
    const uint8_t *k = cn__iter_key(it, &klen);
    *skip = klen != q->plen + CN__HIST_SUFFIX;
    if (*skip)
        return 0;
    const uint8_t *v = cn__iter_value(it, &vlen);
    if (v == NULL)
        return CN_EAUTH; /* logged by the open */
    uint64_t time = cn_load_u64be(k + q->plen);
    const uint8_t *id = k + q->plen + 8;
    if (q->tag != NULL)
        return cb(ctx, q->tag, time, id, v, vlen) != 0;
    *skip = vlen != CN_THREAD_TAG_LEN;
    if (*skip)
        return 0;
    uint8_t tkey[CN__KEY_HIST_T];
    char *sealed;
    size_t slen = 0;
    cn__key_hist_t(tkey, q->user, v, time, id);
    int rc = cn__db_get(s, CN__CF_HISTORY, tkey, sizeof(tkey), &sealed, &slen);
    *skip = rc == CN_ENOTFOUND; /* both keys are written in one batch: never apart */
    if (*skip)
        return 0;
    CN_TRY(rc);
    rc = cb(ctx, v, time, id, (const uint8_t *)sealed, slen) != 0;
    rocksdb_free(sealed);
    return rc;
}

/** Opens the iterator at the newest entry strictly older than the cursor. */
static int hist_seek(cn_store_t *s, const hist_query_t *q, uint64_t before,
                     const uint8_t *before_id, cn__iter_t *it)
{
    uint8_t seek[CN__KEY_HIST_T];
    size_t slen = q->plen + 8;
    if (before == 0)
        return cn__iter_open_rev(s, CN__CF_HISTORY, q->prefix, q->plen, CN__HIST_SUFFIX, NULL, 0,
                                 it);
    /* prefix ‖ time sorts below every key with that time: SeekForPrev lands
     * on an older one. With an id the cursor entry itself is skipped. */
    memcpy(seek, q->prefix, q->plen);
    cn_store_u64be(seek + q->plen, before);
    if (before_id != NULL) {
        memcpy(seek + slen, before_id, CN_HISTORY_ID_LEN);
        slen += CN_HISTORY_ID_LEN;
    }
    CN_TRY(
        cn__iter_open_rev(s, CN__CF_HISTORY, q->prefix, q->plen, CN__HIST_SUFFIX, seek, slen, it));
    if (before_id != NULL && cn__iter_valid(it)) {
        size_t klen;
        const uint8_t *k = cn__iter_key(it, &klen);
        if (klen == slen && memcmp(k, seek, slen) == 0)
            cn__iter_prev(it);
    }
    return CN_OK;
}

static int history_query_unlocked(cn_store_t *s, const char *handle, const uint8_t *thread_tag,
                                  uint64_t before, const uint8_t *before_id, uint32_t limit,
                                  cn_store_history_cb cb, void *ctx, bool *more)
{
    uint8_t user[CN__USER_KEY_LEN];
    hist_query_t q = {.tag = thread_tag, .user = user};
    cn__iter_t it;
    int n = 0, rc = 0;
    CN_ENSURE(cb != NULL && cn__handle_ok(handle), CN_EINVAL);
    if (more != NULL)
        *more = false;
    limit = CN_MIN(limit, (uint32_t)CN_HISTORY_PAGE_MAX);
    if (limit == 0)
        return 0;
    cn__key_user(user, handle);
    q.prefix[0] = thread_tag != NULL ? CN__HIST_THREAD : CN__HIST_TIME;
    memcpy(q.prefix + 1, user, CN__USER_KEY_LEN);
    q.plen = 1 + CN__USER_KEY_LEN;
    if (thread_tag != NULL) {
        memcpy(q.prefix + q.plen, thread_tag, CN_THREAD_TAG_LEN);
        q.plen += CN_THREAD_TAG_LEN;
    }
    CN_TRY(hist_seek(s, &q, before, before_id, &it));
    for (; cn__iter_valid(&it); cn__iter_prev(&it)) {
        bool skip;
        if ((uint32_t)n == limit || rc != 0) {
            if (more != NULL)
                *more = true;
            break;
        }
        rc = hist_emit(s, &q, &it, cb, ctx, &skip);
        if (rc < 0)
            break;
        n += skip ? 0 : 1;
    }
    int crc = cn__iter_close(&it);
    CN_TRY(rc < 0 ? rc : crc);
    return n;
}

int cn_store_history_query(cn_store_t *s, const char *handle, const uint8_t *thread_tag,
                           uint64_t before, const uint8_t *before_id, uint32_t limit,
                           cn_store_history_cb cb, void *ctx, bool *more)
{
    cn__db_read_lock(s);
    int rc = history_query_unlocked(s, handle, thread_tag, before, before_id, limit, cb, ctx, more);
    cn__db_read_unlock(s);
    return rc;
}

/* ---------------------------------------------------------------- threads */

typedef struct thread_ent {
    uint8_t tag[CN_THREAD_TAG_LEN];
    uint64_t last;
} thread_ent_t;

/* Most recent first; equal times by tag, ascending. */
static int thread_cmp(const void *a, const void *b)
{
    const thread_ent_t *x = a, *y = b;
    if (x->last != y->last)
        return x->last > y->last ? -1 : 1;
    return memcmp(x->tag, y->tag, CN_THREAD_TAG_LEN);
}

/** Reads up to CN_THREADS_MAX 'L' entries of a user into ents. */
static int threads_load(cn_store_t *s, const char *handle, thread_ent_t *ents, size_t *n)
{
    uint8_t prefix[1 + CN__USER_KEY_LEN];
    cn__iter_t it;
    prefix[0] = CN__HIST_LAST;
    cn__key_user(prefix + 1, handle);
    *n = 0;
    CN_TRY(cn__iter_open(s, NULL, CN__CF_HISTORY, prefix, sizeof(prefix), CN_THREAD_TAG_LEN, NULL,
                         0, &it));
    for (; *n < CN_THREADS_MAX && cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen;
        const uint8_t *k = cn__iter_key(&it, &klen), *v = cn__iter_value(&it, &vlen);
        if (v == NULL)
            break; /* did not open: cn__iter_close reports it */
        if (klen != CN__KEY_HIST_L || vlen != 8)
            continue;
        memcpy(ents[*n].tag, k + sizeof(prefix), CN_THREAD_TAG_LEN);
        ents[*n].last = cn_load_u64be(v);
        (*n)++;
    }
    return cn__iter_close(&it);
}

static int thread_list_unlocked(cn_store_t *s, const char *handle, uint32_t limit,
                                cn_store_thread_cb cb, void *ctx)
{
    size_t n;
    int passed = 0;
    CN_ENSURE(cb != NULL && cn__handle_ok(handle), CN_EINVAL);
    if (limit == 0)
        return 0;
    thread_ent_t *ents = malloc(CN_THREADS_MAX * sizeof(*ents));
    CN_ENSURE(ents != NULL, CN_ENOMEM);
    int rc = threads_load(s, handle, ents, &n);
    if (rc == CN_OK) {
        qsort(ents, n, sizeof(*ents), thread_cmp);
        for (size_t i = 0; i < n && (uint32_t)passed < limit; i++) {
            passed++;
            if (cb(ctx, ents[i].tag, ents[i].last) != 0)
                break;
        }
    }
    free(ents);
    return rc < 0 ? rc : passed;
}

int cn_store_thread_list(cn_store_t *s, const char *handle, uint32_t limit, cn_store_thread_cb cb,
                         void *ctx)
{
    cn__db_read_lock(s);
    int rc = thread_list_unlocked(s, handle, limit, cb, ctx);
    cn__db_read_unlock(s);
    return rc;
}
