/*
 * Prekey ops. Keys: device ‖ 1 ‖ 0 holds the signed prekey; device ‖ 2 ‖
 * upload order holds the one-time prekeys, so iterating the prefix yields
 * them oldest first and a fetch consumes the first one (FIFO). Reads go
 * through the batch, so two fetches in one batch never hand out the same
 * key.
 */
#include "store/store_internal.h"

#include <string.h>

/** A device that exists and is not revoked (also not earlier in this batch). */
static int device_active(cn__batch_t *b, const uint8_t *id)
{
    cn_rec_device_t dev;
    CN_TRY(cn__batch_device(b, id, &dev));
    CN_ENSURE(dev.revoked == 0 && !cn__batch_revoked(b, id), CN_ENOTFOUND);
    return CN_OK;
}

/** The oldest one-time prekey found by otpk_scan. */
typedef struct otpk_first {
    bool found;   /* key holds its key */
    bool decoded; /* rec holds its record */
    uint8_t key[CN__KEY_PREKEY];
    cn_rec_prekey_t rec;
} otpk_first_t;

/** Counts a device's one-time prekeys; with first, also finds the oldest. */
static int otpk_scan(cn__batch_t *b, const uint8_t *id, uint32_t *count, otpk_first_t *first)
{
    uint8_t prefix[CN_DEVICE_ID_LEN + 1];
    cn__iter_t it;
    memcpy(prefix, id, CN_DEVICE_ID_LEN);
    prefix[CN_DEVICE_ID_LEN] = CN__PK_ONETIME;
    *count = 0;
    if (first != NULL)
        memset(first, 0, sizeof(*first));
    CN_TRY(cn__iter_open(b->s, b->wb, CN__CF_PREKEYS, prefix, sizeof(prefix), 8, NULL, 0, &it));
    for (; cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen;
        const uint8_t *k = cn__iter_key(&it, &klen);
        if (first != NULL && !first->found && klen == CN__KEY_PREKEY) {
            const uint8_t *v = cn__iter_value(&it, &vlen);
            if (v == NULL)
                break; /* did not open: cn__iter_close reports it */
            memcpy(first->key, k, CN__KEY_PREKEY);
            first->found = true;
            /* An undecodable key is still consumed, just not handed out. */
            first->decoded = cn_rec_prekey_decode(v, vlen, &first->rec) == CN_OK;
            if (!first->decoded)
                cn_log_error("store_corrupt", "what=prekey");
        }
        (*count)++;
    }
    return cn__iter_close(&it);
}

static int upload_check(cn__batch_t *b, cn_store_op_t *op, uint32_t *count)
{
    const uint8_t *id = op->u.upload.device_id;
    CN_ENSURE(op->u.upload.n_otpks <= CN_OTPK_UPLOAD_MAX, CN_ETOOBIG);
    CN_ENSURE(op->u.upload.n_otpks == 0 || op->u.upload.otpks != NULL, CN_EINVAL);
    /* A signed prekey is useless to peers without its signature. */
    CN_ENSURE(!op->u.upload.has_signed || op->u.upload.signed_prekey.has_signature, CN_EINVAL);
    CN_TRY(device_active(b, id));
    CN_TRY(otpk_scan(b, id, count, NULL));
    CN_ENSURE(*count + op->u.upload.n_otpks <= CN_OTPK_STORED_MAX, CN_ELIMIT);
    return CN_OK;
}

int cn__op_upload(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.upload.device_id;
    uint8_t key[CN__KEY_PREKEY];
    uint32_t count;
    CN_TRY(upload_check(b, op, &count));

    if (op->u.upload.has_signed) {
        cn_buf_reset(&b->v1);
        CN__APPLY(b, cn_rec_prekey_encode(&op->u.upload.signed_prekey, &b->v1));
        cn__key_prekey(key, id, CN__PK_SIGNED, 0);
        cn__batch_put(b, CN__CF_PREKEYS, key, sizeof(key), &b->v1);
    }
    for (uint32_t i = 0; i < op->u.upload.n_otpks; i++) {
        uint64_t order;
        cn_buf_reset(&b->v1);
        CN__APPLY(b, cn_rec_prekey_encode(&op->u.upload.otpks[i], &b->v1));
        CN__APPLY(b, cn__counter_take(b, id, CN__CTR_OTPK, &order));
        cn__key_prekey(key, id, CN__PK_ONETIME, order);
        cn__batch_put(b, CN__CF_PREKEYS, key, sizeof(key), &b->v1);
    }
    op->u.upload.remaining = count + op->u.upload.n_otpks;
    return CN_OK;
}

static int fetch_signed(cn__batch_t *b, cn_store_bundle_t *bu)
{
    uint8_t key[CN__KEY_PREKEY];
    char *v;
    size_t vlen;
    cn__key_prekey(key, bu->device_id, CN__PK_SIGNED, 0);
    int rc = cn__batch_get(b, CN__CF_PREKEYS, key, sizeof(key), &v, &vlen);
    if (rc == CN_ENOTFOUND)
        return CN_OK;
    CN_TRY(rc);
    rc = cn_rec_prekey_decode((const uint8_t *)v, vlen, &bu->signed_prekey);
    rocksdb_free(v);
    if (rc == CN_OK)
        bu->has_signed = true;
    else
        cn_log_error("store_corrupt", "what=signed_prekey");
    return CN_OK;
}

/** Fills one bundle: signed prekey, the oldest one-time prekey (consumed). */
static int fetch_one(cn__batch_t *b, cn_store_bundle_t *bu)
{
    otpk_first_t first;
    uint32_t count;
    bu->has_signed = bu->has_otpk = false;
    bu->remaining = 0;
    memset(&bu->signed_prekey, 0, sizeof(bu->signed_prekey));
    memset(&bu->otpk, 0, sizeof(bu->otpk));

    int rc = device_active(b, bu->device_id);
    if (rc == CN_ENOTFOUND)
        return CN_OK; /* an empty bundle: nothing to hand out */
    CN_TRY(rc);
    CN_TRY(fetch_signed(b, bu));
    CN_TRY(otpk_scan(b, bu->device_id, &count, &first));
    if (first.found) {
        cn__batch_delete(b, CN__CF_PREKEYS, first.key, sizeof(first.key));
        bu->has_otpk = first.decoded;
        bu->otpk = first.rec;
        count--;
    }
    bu->remaining = count;
    return CN_OK;
}

int cn__op_fetch(cn__batch_t *b, cn_store_op_t *op)
{
    CN_ENSURE(op->u.fetch.n <= CN_FETCH_DEVICES_MAX, CN_ETOOBIG);
    CN_ENSURE(op->u.fetch.n == 0 || op->u.fetch.bundles != NULL, CN_EINVAL);
    for (uint32_t i = 0; i < op->u.fetch.n; i++)
        CN__APPLY(b, fetch_one(b, &op->u.fetch.bundles[i]));
    return CN_OK;
}
