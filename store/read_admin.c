/*
 * Synchronous listings for the admin CLI and the node's background work
 * (any thread): users, devices, meta records, pending notification events,
 * and exact mailbox statistics. They read committed data only and cost a
 * scan of what they list; none of them belongs on the hot path.
 */
#include "store/store_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* What a visitor tells walk() about one entry. */
enum { V_NEXT = 0, V_STOP = 1, V_SKIP = 2 };

/** Looks at one entry: V_NEXT / V_STOP (passed to the caller) or V_SKIP, or < 0. */
typedef int (*visit_fn)(void *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen);

typedef struct walk {
    enum cn__cf cf;
    const uint8_t *prefix; /* never NULL */
    size_t plen, suffix_len;
    const uint8_t *seek; /* NULL: the prefix */
    size_t seeklen;
    uint32_t limit;
} walk_t;

/** Visits the entries of w in key order; returns how many were passed, or < 0. */
static int walk(cn_store_t *s, const walk_t *w, visit_fn fn, void *st)
{
    cn__iter_t it;
    int n = 0, rc = CN_OK;
    uint32_t limit = CN_MIN(w->limit, (uint32_t)INT_MAX);
    CN_TRY(
        cn__iter_open(s, NULL, w->cf, w->prefix, w->plen, w->suffix_len, w->seek, w->seeklen, &it));
    for (; (uint32_t)n < limit && cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen;
        const uint8_t *k = cn__iter_key(&it, &klen);
        const uint8_t *v = cn__iter_value(&it, &vlen);
        if (v == NULL)
            break; /* did not open: cn__iter_close reports it */
        rc = fn(st, k, klen, v, vlen);
        if (rc < 0)
            break;
        if (rc == V_SKIP)
            continue;
        n++;
        if (rc == V_STOP)
            break;
    }
    int crc = cn__iter_close(&it);
    if (rc < 0)
        return rc;
    CN_TRY(crc);
    return n;
}

static int corrupt(const char *what, int rc)
{
    cn_log_error("store_corrupt", "what=%s rc=%s", what, cn_strerror(rc));
    return CN_EIO;
}

/* ---------------------------------------------------------------- users */

typedef struct user_walk {
    const char *after;
    size_t alen;
    cn_store_user_cb cb;
    void *ctx;
} user_walk_t;

static int user_visit(void *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    user_walk_t *w = st;
    char handle[CN_HANDLE_MAX + 1];
    cn_rec_user_t user;
    if (klen > CN_HANDLE_MAX || (klen == w->alen && memcmp(k, w->after, klen) == 0))
        return V_SKIP; /* not a handle, or the cursor itself */
    memcpy(handle, k, klen);
    handle[klen] = '\0';
    int rc = cn_rec_user_decode(v, vlen, &user);
    if (rc < 0)
        return corrupt("user", rc);
    return w->cb(w->ctx, handle, &user) != 0 ? V_STOP : V_NEXT;
}

static int user_list_unlocked(cn_store_t *s, const char *after, uint32_t limit, cn_store_user_cb cb,
                              void *ctx)
{
    CN_ENSURE(s != NULL && cb != NULL, CN_EINVAL);
    user_walk_t uw = {after ? after : "", 0, cb, ctx};
    uw.alen = strnlen(uw.after, CN_HANDLE_MAX + 1);
    CN_ENSURE(uw.alen <= CN_HANDLE_MAX, CN_EINVAL);
    walk_t w = {.cf = CN__CF_USERS,
                .prefix = (const uint8_t *)"",
                .suffix_len = CN_HANDLE_MAX,
                .seek = uw.alen ? (const uint8_t *)uw.after : NULL,
                .seeklen = uw.alen,
                .limit = limit};
    return walk(s, &w, user_visit, &uw);
}

int cn_store_user_list(cn_store_t *s, const char *after, uint32_t limit, cn_store_user_cb cb,
                       void *ctx)
{
    cn__db_read_lock(s);
    int rc = user_list_unlocked(s, after, limit, cb, ctx);
    cn__db_read_unlock(s);
    return rc;
}

/* -------------------------------------------------------------- devices */

typedef struct device_walk {
    const uint8_t *after;
    cn_store_device_cb cb;
    void *ctx;
} device_walk_t;

static int device_visit(void *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    device_walk_t *w = st;
    cn_rec_device_t dev;
    if (klen != CN_DEVICE_ID_LEN ||
        (w->after != NULL && memcmp(k, w->after, CN_DEVICE_ID_LEN) == 0))
        return V_SKIP;
    int rc = cn_rec_device_decode(v, vlen, &dev);
    if (rc < 0)
        return corrupt("device", rc);
    return w->cb(w->ctx, k, &dev) != 0 ? V_STOP : V_NEXT;
}

static int device_list_unlocked(cn_store_t *s, const uint8_t *after, uint32_t limit,
                                cn_store_device_cb cb, void *ctx)
{
    CN_ENSURE(s != NULL && cb != NULL, CN_EINVAL);
    device_walk_t dw = {after, cb, ctx};
    walk_t w = {.cf = CN__CF_DEVICES,
                .prefix = (const uint8_t *)"",
                .suffix_len = CN_DEVICE_ID_LEN,
                .seek = after,
                .seeklen = after ? CN_DEVICE_ID_LEN : 0,
                .limit = limit};
    return walk(s, &w, device_visit, &dw);
}

int cn_store_device_list(cn_store_t *s, const uint8_t *after, uint32_t limit, cn_store_device_cb cb,
                         void *ctx)
{
    cn__db_read_lock(s);
    int rc = device_list_unlocked(s, after, limit, cb, ctx);
    cn__db_read_unlock(s);
    return rc;
}

/* ----------------------------------------------------------------- meta */

typedef struct meta_walk {
    cn_store_meta_cb cb;
    void *ctx;
} meta_walk_t;

static int meta_visit(void *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    meta_walk_t *w = st;
    char name[CN__META_NAME_MAX + 1];
    if (klen == 0 || klen > CN__META_NAME_MAX || cn__meta_reserved((const char *)k, klen))
        return V_SKIP;
    memcpy(name, k, klen);
    name[klen] = '\0';
    return w->cb(w->ctx, name, v, vlen) != 0 ? V_STOP : V_NEXT;
}

/* With a short prefix this steps over the writer's counters (one per device
 * and kind) without listing them: admin use only. */
static int meta_scan_unlocked(cn_store_t *s, const char *prefix, cn_store_meta_cb cb, void *ctx)
{
    CN_ENSURE(s != NULL && cb != NULL, CN_EINVAL);
    if (prefix == NULL)
        prefix = "";
    size_t plen = strnlen(prefix, CN__META_NAME_MAX + 1);
    CN_ENSURE(plen <= CN__META_NAME_MAX && !cn__meta_reserved(prefix, plen), CN_EINVAL);
    meta_walk_t mw = {cb, ctx};
    walk_t w = {.cf = CN__CF_META,
                .prefix = (const uint8_t *)prefix,
                .plen = plen,
                .suffix_len = CN__META_NAME_MAX - plen,
                .limit = UINT32_MAX};
    return walk(s, &w, meta_visit, &mw);
}

int cn_store_meta_scan(cn_store_t *s, const char *prefix, cn_store_meta_cb cb, void *ctx)
{
    cn__db_read_lock(s);
    int rc = meta_scan_unlocked(s, prefix, cb, ctx);
    cn__db_read_unlock(s);
    return rc;
}

/* ----------------------------------------------------------------- push */

typedef struct push_walk {
    cn_store_push_cb cb;
    void *ctx;
} push_walk_t;

static int push_visit(void *st, const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen)
{
    push_walk_t *w = st;
    cn_rec_push_t ev;
    if (klen != CN__KEY_PUSH_EVENT)
        return V_SKIP;
    int rc = cn_rec_push_decode(v, vlen, &ev);
    if (rc < 0)
        return corrupt("push_event", rc);
    return w->cb(w->ctx, cn_load_u64be(k), ev.device_id, ev.server_time) != 0 ? V_STOP : V_NEXT;
}

/* Events are the 8-byte keys below 0xff; the upper bound of an empty prefix
 * with no suffix is the single byte 0xff, so the markers stay out. */
static int push_pending_unlocked(cn_store_t *s, uint64_t after_seq, uint32_t limit,
                                 cn_store_push_cb cb, void *ctx)
{
    uint8_t seek[CN__KEY_PUSH_EVENT];
    CN_ENSURE(s != NULL && cb != NULL, CN_EINVAL);
    if (after_seq >= CN__PUSH_SEQ_LIMIT - 1)
        return 0;
    cn_store_u64be(seek, after_seq + 1);
    push_walk_t pw = {cb, ctx};
    walk_t w = {.cf = CN__CF_PUSH,
                .prefix = (const uint8_t *)"",
                .seek = seek,
                .seeklen = sizeof(seek),
                .limit = limit};
    return walk(s, &w, push_visit, &pw);
}

int cn_store_push_pending(cn_store_t *s, uint64_t after_seq, uint32_t limit, cn_store_push_cb cb,
                          void *ctx)
{
    cn__db_read_lock(s);
    int rc = push_pending_unlocked(s, after_seq, limit, cb, ctx);
    cn__db_read_unlock(s);
    return rc;
}

/* -------------------------------------------------------------- mailbox */

static int mailbox_stats_unlocked(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                  uint64_t *depth, uint64_t *bytes, uint64_t *oldest_server_time)
{
    cn__iter_t it;
    cn__rjour_hit_t *pend;
    uint64_t n = 0, sum = 0, oldest = 0, pend_oldest = 0;
    int rc = CN_OK;
    CN_ENSURE(s != NULL && device != NULL, CN_EINVAL);
    /* Published group references (refjour.c) count as queued. */
    int npend = cn__rjour_lookup(s, device, 0, &pend);
    CN_TRY(npend);
    for (int i = 0; i < npend; i++) {
        sum += pend[i].ref_len;
        if (i == 0 || pend[i].server_time < pend_oldest)
            pend_oldest = pend[i].server_time;
    }
    free(pend);
    CN_TRY(cn__iter_open(s, NULL, CN__CF_MAILBOX, device, CN_DEVICE_ID_LEN, 8, NULL, 0, &it));
    for (; cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen;
        (void)cn__iter_key(&it, &klen);
        if (klen != CN__KEY_MAILBOX)
            continue;
        vlen = cn__iter_value_len(&it);
        if (n == 0) {
            cn_rec_envelope_t env;
            const uint8_t *v = cn__iter_value(&it, &vlen);
            if (v == NULL)
                break; /* did not open: cn__iter_close reports it */
            rc = cn_rec_envelope_decode(v, vlen, &env);
            if (rc < 0)
                break;
            oldest = env.server_time;
        }
        n++;
        sum += vlen;
    }
    int crc = cn__iter_close(&it);
    if (rc < 0)
        return corrupt("envelope", rc);
    CN_TRY(crc);
    if (npend > 0 && (n == 0 || pend_oldest < oldest))
        oldest = pend_oldest;
    n += (uint64_t)npend;
    if (depth)
        *depth = n;
    if (bytes)
        *bytes = sum;
    if (oldest_server_time)
        *oldest_server_time = oldest;
    return CN_OK;
}

int cn_store_mailbox_stats(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t *depth,
                           uint64_t *bytes, uint64_t *oldest_server_time)
{
    cn__db_read_lock(s);
    int rc = mailbox_stats_unlocked(s, device, depth, bytes, oldest_server_time);
    cn__db_read_unlock(s);
    return rc;
}
