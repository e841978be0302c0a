/*
 * Synchronous reads (any thread) and the meta put. Reads see what the
 * writer has committed, never a batch in progress.
 */
#include "store/store_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/** Reads a key into a pinned slice: CN_OK, CN_ENOTFOUND or CN_EIO (meta: never sealed). */
static int get_pinned(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                      rocksdb_pinnableslice_t **out)
{
    char *err = NULL;
    *out = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[cf], (const char *)key, klen, &err);
    if (err != NULL) {
        *out = NULL;
        return cn__rdb_err(err, "get");
    }
    return *out != NULL ? CN_OK : CN_ENOTFOUND;
}

static int corrupt(const char *what, int rc)
{
    cn_log_error("store_corrupt", "what=%s rc=%s", what, cn_strerror(rc));
    return CN_EIO;
}

static int device_get_unlocked(cn_store_t *s, const uint8_t id[CN_DEVICE_ID_LEN],
                               cn_rec_device_t *out)
{
    char *v;
    size_t vlen;
    CN_TRY(cn__db_get(s, CN__CF_DEVICES, id, CN_DEVICE_ID_LEN, &v, &vlen));
    int rc = cn_rec_device_decode((const uint8_t *)v, vlen, out);
    rocksdb_free(v);
    return rc < 0 ? corrupt("device", rc) : CN_OK;
}

int cn_store_device_get(cn_store_t *s, const uint8_t id[CN_DEVICE_ID_LEN], cn_rec_device_t *out)
{
    cn__db_read_lock(s);
    int rc = device_get_unlocked(s, id, out);
    cn__db_read_unlock(s);
    return rc;
}

static int user_get_unlocked(cn_store_t *s, const char *handle, cn_rec_user_t *out)
{
    char *v;
    size_t vlen;
    CN_ENSURE(cn__handle_ok(handle), CN_EINVAL);
    CN_TRY(cn__db_get(s, CN__CF_USERS, handle, strlen(handle), &v, &vlen));
    int rc = cn_rec_user_decode((const uint8_t *)v, vlen, out);
    rocksdb_free(v);
    return rc < 0 ? corrupt("user", rc) : CN_OK;
}

int cn_store_user_get(cn_store_t *s, const char *handle, cn_rec_user_t *out)
{
    cn__db_read_lock(s);
    int rc = user_get_unlocked(s, handle, out);
    cn__db_read_unlock(s);
    return rc;
}

static int prekey_count_unlocked(cn_store_t *s, const uint8_t id[CN_DEVICE_ID_LEN], uint32_t *out)
{
    uint8_t prefix[CN_DEVICE_ID_LEN + 1];
    cn__iter_t it;
    uint32_t n = 0;
    memcpy(prefix, id, CN_DEVICE_ID_LEN);
    prefix[CN_DEVICE_ID_LEN] = CN__PK_ONETIME;
    CN_TRY(cn__iter_open(s, NULL, CN__CF_PREKEYS, prefix, sizeof(prefix), 8, NULL, 0, &it));
    for (; cn__iter_valid(&it); cn__iter_next(&it))
        n++;
    CN_TRY(cn__iter_close(&it));
    *out = n;
    return CN_OK;
}

int cn_store_prekey_count(cn_store_t *s, const uint8_t id[CN_DEVICE_ID_LEN], uint32_t *out)
{
    cn__db_read_lock(s);
    int rc = prekey_count_unlocked(s, id, out);
    cn__db_read_unlock(s);
    return rc;
}

/*
 * A reference (a group message stored once) is replaced by its body, the
 * whole envelope: *body is set to a value to free (rocksdb_free) and *v,
 * *vlen point into it. A reference whose body is gone (expired: bodies and
 * references share the mailbox TTL) is passed on as it is, shared set and
 * no ciphertext, for the caller to skip. hint learns whether the value
 * was a reference, and its body key, for the entry's ack (readhint.c).
 */
static int resolve_ref(cn_store_t *s, const uint8_t **v, size_t *vlen, char **body,
                       cn__readhint_t *hint)
{
    cn_rec_envelope_t env;
    *body = NULL;
    hint->shared = false;
    if (cn_rec_envelope_decode(*v, *vlen, &env) != CN_OK || !env.shared)
        return CN_OK; /* the caller decodes (and reports) it */
    hint->shared = true;
    memcpy(hint->body, env.from_device, CN_DEVICE_ID_LEN);
    memcpy(hint->body + CN_DEVICE_ID_LEN, env.message_id, CN_MESSAGE_ID_LEN);
    size_t n;
    int rc = cn__db_get(s, CN__CF_GMSG, hint->body, sizeof(hint->body), body, &n);
    if (rc == CN_ENOTFOUND)
        return CN_OK;
    CN_TRY(rc);
    *v = (const uint8_t *)*body;
    *vlen = n;
    return CN_OK;
}

#define READ_HINTS_BATCH 64 /* hints handed to the table at once */

/** One mailbox read in progress: its limits, what it handed out. */
typedef struct mailbox_read {
    cn_store_t *s;
    size_t max_entries, max_bytes, n, bytes, nhints;
    cn_store_mailbox_cb cb;
    void *ctx;
    uint64_t *next_seq;
    bool stop;
    cn__readhint_t hints[READ_HINTS_BATCH];
} mailbox_read_t;

/*
 * Hands one entry (its whole envelope) to the callback, unless the byte
 * limit stops the read before it. The byte limit never stops the first
 * entry (an envelope larger than max_bytes would otherwise block its
 * mailbox for good). A callback that returns non-zero stops the read
 * after its entry, which counts as passed.
 */
static void hand_out(mailbox_read_t *r, uint64_t seq, const uint8_t *v, size_t vlen)
{
    if (r->n > 0 && (vlen > r->max_bytes || r->bytes > r->max_bytes - vlen)) {
        r->stop = true;
        return;
    }
    r->n++;
    r->bytes += vlen;
    *r->next_seq = seq + 1;
    r->stop = r->cb(r->ctx, seq, v, vlen) != 0 || r->n >= r->max_entries;
}

/* A published group reference (refjour.c), replaced by its body like a
 * stored one (resolve_ref), or handed out as it is when the body is gone. */
static int hand_out_pending(mailbox_read_t *r, const cn__rjour_hit_t *h)
{
    char *body;
    size_t n;
    int rc = cn__db_get(r->s, CN__CF_GMSG, h->body, CN__KEY_GMSG, &body, &n);
    if (rc == CN_ENOTFOUND) {
        hand_out(r, h->seq, h->ref, h->ref_len);
        return CN_OK;
    }
    CN_TRY(rc);
    hand_out(r, h->seq, (const uint8_t *)body, n);
    rocksdb_free(body);
    return CN_OK;
}

/* Hands out the published references before seq (all: UINT64_MAX) and
 * skips one at seq, which the database holds as well. */
static int pending_before(mailbox_read_t *r, const cn__rjour_hit_t *pend, int npend, int *pi,
                          uint64_t seq)
{
    for (; *pi < npend && pend[*pi].seq < seq && !r->stop; (*pi)++)
        CN_TRY(hand_out_pending(r, &pend[*pi]));
    if (*pi < npend && pend[*pi].seq == seq)
        (*pi)++;
    return CN_OK;
}

/* The committed entry under the iterator (its reference resolved). */
static int hand_out_stored(mailbox_read_t *r, const uint8_t *device, uint64_t seq, cn__iter_t *it)
{
    size_t vlen;
    char *body;
    const uint8_t *v = cn__iter_value(it, &vlen);
    if (v == NULL) {
        r->stop = true; /* did not open: cn__iter_close reports it */
        return CN_OK;
    }
    cn__readhint_t *h = &r->hints[r->nhints];
    h->size = (uint32_t)vlen; /* a stored value is far below 4 GiB */
    CN_TRY(resolve_ref(r->s, &v, &vlen, &body, h));
    size_t before = r->n;
    hand_out(r, seq, v, vlen);
    rocksdb_free(body);
    if (r->n == before)
        return CN_OK;
    h->device = device;
    h->seq = seq;
    if (++r->nhints == READ_HINTS_BATCH) {
        cn__readhints_put(&r->s->readhints, r->hints, r->nhints);
        r->nhints = 0;
    }
    return CN_OK;
}

/*
 * The committed entries merged with the published group references
 * (refjour.c), whose copy is taken before the iterator opens: an entry
 * the writer put into the mailbox since is seen twice and handed out once.
 */
static int mailbox_read_unlocked(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                 uint64_t from_seq, size_t max_entries, size_t max_bytes,
                                 cn_store_mailbox_cb cb, void *ctx, uint64_t *next_seq)
{
    uint8_t seek[CN__KEY_MAILBOX];
    cn__iter_t it;
    cn__rjour_hit_t *pend;
    int pi = 0, rc = CN_OK;
    CN_ENSURE(cb != NULL && next_seq != NULL, CN_EINVAL);
    *next_seq = from_seq;
    mailbox_read_t r = {.s = s,
                        .max_entries = max_entries > INT_MAX ? INT_MAX : max_entries,
                        .max_bytes = max_bytes,
                        .cb = cb,
                        .ctx = ctx,
                        .next_seq = next_seq,
                        .stop = max_entries == 0};
    int npend = cn__rjour_lookup(s, device, from_seq, &pend);
    CN_TRY(npend);
    cn__key_mailbox(seek, device, from_seq);
    rc = cn__iter_open(s, NULL, CN__CF_MAILBOX, device, CN_DEVICE_ID_LEN, 8, seek, sizeof(seek),
                       &it);
    if (rc < 0) {
        free(pend);
        return rc;
    }
    for (; !r.stop && rc == CN_OK && cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen;
        const uint8_t *k = cn__iter_key(&it, &klen);
        if (klen != CN__KEY_MAILBOX)
            continue;
        uint64_t seq = cn_load_u64be(k + CN_DEVICE_ID_LEN);
        rc = pending_before(&r, pend, npend, &pi, seq);
        if (rc == CN_OK && !r.stop)
            rc = hand_out_stored(&r, device, seq, &it);
    }
    if (rc == CN_OK && !r.stop && !cn__iter_valid(&it))
        rc = pending_before(&r, pend, npend, &pi, UINT64_MAX);
    free(pend);
    cn__readhints_put(&s->readhints, r.hints, r.nhints);
    int crc = cn__iter_close(&it);
    CN_TRY(rc);
    CN_TRY(crc);
    return (int)r.n;
}

int cn_store_mailbox_read(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t from_seq,
                          size_t max_entries, size_t max_bytes, cn_store_mailbox_cb cb, void *ctx,
                          uint64_t *next_seq)
{
    cn__db_read_lock(s);
    int rc = mailbox_read_unlocked(s, device, from_seq, max_entries, max_bytes, cb, ctx, next_seq);
    cn__db_read_unlock(s);
    return rc;
}

static int mailbox_depth_unlocked(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                                  uint64_t limit, uint64_t *out)
{
    cn__iter_t it;
    cn__rjour_hit_t *pend;
    /* Published group references count too (one the writer puts into the
     * mailbox meanwhile may count twice: the depth is a hint). */
    int npend = cn__rjour_lookup(s, device, 0, &pend);
    CN_TRY(npend);
    free(pend);
    uint64_t n = (uint64_t)npend;
    CN_TRY(cn__iter_open(s, NULL, CN__CF_MAILBOX, device, CN_DEVICE_ID_LEN, 8, NULL, 0, &it));
    for (; n < limit && cn__iter_valid(&it); cn__iter_next(&it))
        n++;
    CN_TRY(cn__iter_close(&it));
    *out = CN_MIN(n, limit);
    return CN_OK;
}

int cn_store_mailbox_depth(cn_store_t *s, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t limit,
                           uint64_t *out)
{
    cn__db_read_lock(s);
    int rc = mailbox_depth_unlocked(s, device, limit, out);
    cn__db_read_unlock(s);
    return rc;
}

static int meta_get_unlocked(cn_store_t *s, const char *name, cn_buf_t *out)
{
    rocksdb_pinnableslice_t *ps;
    size_t vlen;
    CN_TRY(cn__meta_name_ok(name));
    CN_TRY(get_pinned(s, CN__CF_META, name, strlen(name), &ps));
    const char *v = rocksdb_pinnableslice_value(ps, &vlen);
    int rc = cn_buf_append(out, v, vlen);
    rocksdb_pinnableslice_destroy(ps);
    return rc;
}

int cn_store_meta_get(cn_store_t *s, const char *name, cn_buf_t *out)
{
    cn__db_read_lock(s);
    int rc = meta_get_unlocked(s, name, out);
    cn__db_read_unlock(s);
    return rc;
}

static int meta_put_unlocked(cn_store_t *s, const char *name, const void *value, size_t len)
{
    char *err = NULL;
    CN_TRY(cn__meta_name_ok(name));
    CN_ENSURE(value != NULL || len == 0, CN_EINVAL);
    /* Not between a failed write and the reopen (see run_batch). */
    pthread_mutex_lock(&s->mu);
    bool failing = s->stats.write_failing;
    pthread_mutex_unlock(&s->mu);
    CN_ENSURE(!failing, CN_EIO);
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[CN__CF_META], name, strlen(name),
                   value ? (const char *)value : "", len, &err);
    return cn__rdb_err(err, "meta_put");
}

int cn_store_meta_put(cn_store_t *s, const char *name, const void *value, size_t len)
{
    cn__db_read_lock(s);
    int rc = meta_put_unlocked(s, name, value, len);
    cn__db_read_unlock(s);
    return rc;
}
