/*
 * Reads and writes through the writer's indexed batch, so that every op of
 * a batch sees the effects of the ops before it. Every write also goes to
 * the batch that is written (b->final), in the same order.
 */
#include "store/store_internal.h"

#include <string.h>

int cn__batch_get_raw(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen, char **val,
                      size_t *vlen)
{
    char *err = NULL;
    *vlen = 0;
    *val = rocksdb_writebatch_wi_get_from_batch_and_db_cf(b->wb, b->s->db, b->s->ro, b->s->cf[cf],
                                                          (const char *)key, klen, vlen, &err);
    if (err != NULL) {
        *val = NULL;
        return cn__rdb_err(err, "batch_get");
    }
    return *val != NULL ? CN_OK : CN_ENOTFOUND;
}

/* Opened in place: the plaintext is shorter than the sealed value, and the
 * caller frees the same allocation. */
int cn__batch_get(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen, char **val,
                  size_t *vlen)
{
    CN_TRY(cn__batch_get_raw(b, cf, key, klen, val, vlen));
    int rc = cn__open_inplace(b->s, cf, key, klen, (uint8_t *)*val, vlen);
    if (rc < 0) {
        rocksdb_free(*val);
        *val = NULL;
    }
    return rc;
}

void cn__batch_put(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                   const cn_buf_t *val)
{
    cn_slice_t v = cn_buf_unread(val);
    cn__batch_put_raw(b, cf, key, klen, v.base, v.len);
}

/* A value that cannot be sealed (no memory) poisons the batch: the op
 * goes on, but nothing of the batch is written. */
void cn__batch_put_raw(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                       const void *val, size_t vlen)
{
    if (cn__cf_sealed(b->s, cf)) {
        cn_buf_reset(&b->seal);
        int rc = cn__seal_value(b->s, cf, key, klen, val, vlen, &b->seal);
        if (rc < 0) {
            if (b->fatal == CN_OK)
                b->fatal = rc;
            return;
        }
        val = b->seal.data;
        vlen = b->seal.len;
    }
    const char *v = val != NULL ? (const char *)val : "";
    rocksdb_writebatch_wi_put_cf(b->wb, b->s->cf[cf], (const char *)key, klen, v, vlen);
    rocksdb_writebatch_put_cf(b->final, b->s->cf[cf], (const char *)key, klen, v, vlen);
}

void cn__batch_delete(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen)
{
    rocksdb_writebatch_wi_delete_cf(b->wb, b->s->cf[cf], (const char *)key, klen);
    rocksdb_writebatch_delete_cf(b->final, b->s->cf[cf], (const char *)key, klen);
}

int cn__batch_device(cn__batch_t *b, const uint8_t *id, cn_rec_device_t *out)
{
    char *v;
    size_t vlen;
    CN_TRY(cn__batch_get(b, CN__CF_DEVICES, id, CN_DEVICE_ID_LEN, &v, &vlen));
    int rc = cn_rec_device_decode((const uint8_t *)v, vlen, out);
    rocksdb_free(v);
    if (rc < 0) {
        cn_log_error("store_corrupt", "what=device rc=%s", cn_strerror(rc));
        return CN_EIO;
    }
    return CN_OK;
}

int cn__batch_user(cn__batch_t *b, const char *handle, cn_rec_user_t *out)
{
    char *v;
    size_t vlen;
    CN_TRY(cn__batch_get(b, CN__CF_USERS, handle, strlen(handle), &v, &vlen));
    int rc = cn_rec_user_decode((const uint8_t *)v, vlen, out);
    rocksdb_free(v);
    if (rc < 0) {
        cn_log_error("store_corrupt", "what=user rc=%s", cn_strerror(rc));
        return CN_EIO;
    }
    return CN_OK;
}

bool cn__batch_revoked(const cn__batch_t *b, const uint8_t *device)
{
    for (size_t i = 0; i < b->nrevoked; i++) {
        if (memcmp(b->revoked[i], device, CN_DEVICE_ID_LEN) == 0)
            return true;
    }
    return false;
}
