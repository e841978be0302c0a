/*
 * Account ops: REGISTER, LINK, REVOKE. Each checks everything first (only
 * reads), then writes to the batch; see CN__APPLY.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

/** CN_EEXIST when key exists in cf, CN_OK when absent. */
static int ensure_absent(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen)
{
    char *v;
    size_t vlen;
    int rc = cn__batch_get(b, cf, key, klen, &v, &vlen);
    if (rc == CN_OK) {
        rocksdb_free(v);
        return CN_EEXIST;
    }
    return rc == CN_ENOTFOUND ? CN_OK : rc;
}

/** The device record as stored: owned by handle, active, created now if unset. */
static void device_prepare(cn_store_op_t *op, cn_rec_device_t *dev, uint64_t now)
{
    *dev = op->u.reg.device;
    memcpy(dev->user, op->u.reg.handle, sizeof(dev->user));
    dev->revoked = 0;
    if (dev->created == 0)
        dev->created = now;
}

/** Encodes the device into b->v1 and the user into b->v2 (both checked). */
static int encode_pair(cn__batch_t *b, const cn_rec_device_t *dev, const cn_rec_user_t *user)
{
    cn_buf_reset(&b->v1);
    cn_buf_reset(&b->v2);
    CN_TRY(cn_rec_device_encode(dev, &b->v1));
    return cn_rec_user_encode(user, &b->v2);
}

static void put_pair(cn__batch_t *b, const uint8_t *id, const char *handle)
{
    cn__batch_put(b, CN__CF_DEVICES, id, CN_DEVICE_ID_LEN, &b->v1);
    cn__batch_put(b, CN__CF_USERS, handle, strlen(handle), &b->v2);
}

/* Reads an invite record (CN_INVITE_RECORD_LEN bytes: uses left, expiry);
 * CN_EAUTH when it is missing, malformed, used up or expired. */
static int invite_check(cn__batch_t *b, const char *name, size_t len, uint64_t now,
                        uint8_t rec[CN_INVITE_RECORD_LEN], uint32_t *uses)
{
    CN_ENSURE(len <= CN_STORE_META_NAME_MAX, CN_EINVAL);
    char *v;
    size_t vlen;
    int rc = cn__batch_get(b, CN__CF_META, name, len, &v, &vlen);
    if (rc == CN_ENOTFOUND)
        return CN_EAUTH;
    CN_TRY(rc);
    bool ok = vlen == CN_INVITE_RECORD_LEN;
    if (ok)
        memcpy(rec, v, CN_INVITE_RECORD_LEN);
    rocksdb_free(v);
    CN_ENSURE(ok, CN_EAUTH);
    *uses = cn_load_u32be(rec);
    uint64_t expires = cn_load_u64be(rec + 4);
    CN_ENSURE(*uses > 0 && (expires == 0 || expires >= now), CN_EAUTH);
    return CN_OK;
}

int cn__op_register(cn__batch_t *b, cn_store_op_t *op)
{
    const char *handle = op->u.reg.handle;
    const uint8_t *id = op->u.reg.device_id;
    uint64_t now = cn_now_ms();
    CN_ENSURE(cn__handle_ok(handle), CN_EINVAL);
    CN_TRY(ensure_absent(b, CN__CF_USERS, handle, strlen(handle)));
    CN_TRY(ensure_absent(b, CN__CF_DEVICES, id, CN_DEVICE_ID_LEN));
    const char *invite = op->u.reg.consume_meta;
    size_t ilen = strnlen(invite, sizeof(op->u.reg.consume_meta));
    uint8_t left[CN_INVITE_RECORD_LEN];
    uint32_t uses = 0;
    /* Never a writer-owned record (a counter, the key ring). */
    CN_ENSURE(!cn__meta_reserved(invite, ilen), CN_EINVAL);
    if (ilen > 0)
        CN_TRY(invite_check(b, invite, ilen, now, left, &uses));
    const char *claim = op->u.reg.claim_meta;
    size_t clen = strnlen(claim, sizeof(op->u.reg.claim_meta));
    if (clen > 0) {
        CN_ENSURE(clen <= CN_STORE_META_NAME_MAX && !cn__meta_reserved(claim, clen), CN_EINVAL);
        int rc = ensure_absent(b, CN__CF_META, claim, clen);
        CN_ENSURE(rc != CN_EEXIST, CN_EAUTH); /* a replayed token */
        CN_TRY(rc);
    }

    cn_rec_device_t dev;
    cn_rec_user_t user;
    memset(&user, 0, sizeof(user));
    device_prepare(op, &dev, now);
    user.created = now;
    user.ndevices = 1;
    memcpy(user.devices[0], id, CN_DEVICE_ID_LEN);
    CN_TRY(encode_pair(b, &dev, &user));
    if (ilen > 0 && uses > 1) { /* one use fewer */
        cn_store_u32be(left, uses - 1);
        cn__batch_put_raw(b, CN__CF_META, invite, ilen, left, sizeof(left));
    } else if (ilen > 0) {
        cn__batch_delete(b, CN__CF_META, invite, ilen); /* the last use */
    }
    if (clen > 0) {
        uint8_t exp[8];
        cn_store_u64be(exp, op->u.reg.claim_expires);
        cn__batch_put_raw(b, CN__CF_META, claim, clen, exp, sizeof(exp));
    }
    put_pair(b, id, handle);
    return CN_OK;
}

int cn__op_link(cn__batch_t *b, cn_store_op_t *op)
{
    const char *handle = op->u.reg.handle;
    const uint8_t *id = op->u.reg.device_id;
    uint32_t limit = op->u.reg.max_devices;
    CN_ENSURE(cn__handle_ok(handle), CN_EINVAL);
    if (limit == 0 || limit > CN_DEVICES_HARD_MAX)
        limit = CN_DEVICES_HARD_MAX;

    cn_rec_user_t user;
    CN_TRY(cn__batch_user(b, handle, &user));
    CN_TRY(ensure_absent(b, CN__CF_DEVICES, id, CN_DEVICE_ID_LEN));
    CN_ENSURE(user.ndevices < limit, CN_ELIMIT);

    cn_rec_device_t dev;
    device_prepare(op, &dev, cn_now_ms());
    memcpy(user.devices[user.ndevices++], id, CN_DEVICE_ID_LEN);
    CN_TRY(encode_pair(b, &dev, &user));
    put_pair(b, id, handle);
    return CN_OK;
}

/** Makes room for one more revoked device in the batch. */
static int revoked_reserve(cn__batch_t *b)
{
    if (b->nrevoked < b->revoked_cap)
        return CN_OK;
    size_t ncap = b->revoked_cap ? b->revoked_cap * 2 : 8;
    void *p = realloc(b->revoked, ncap * sizeof(*b->revoked));
    CN_ENSURE(p != NULL, CN_ENOMEM);
    b->revoked = p;
    b->revoked_cap = ncap;
    return CN_OK;
}

/** Drops id from the user's device list; false when it was not listed. */
static bool user_remove(cn_rec_user_t *user, const uint8_t *id)
{
    for (uint32_t i = 0; i < user->ndevices; i++) {
        if (memcmp(user->devices[i], id, CN_DEVICE_ID_LEN) != 0)
            continue;
        memmove(user->devices[i], user->devices[i + 1],
                (size_t)(user->ndevices - i - 1) * CN_DEVICE_ID_LEN);
        user->ndevices--;
        return true;
    }
    return false;
}

/*
 * The device record stays (revoked = time), so the id can never be
 * registered again. Its queued-bytes counter is reset and its pending
 * notification event dropped; its mailbox is deleted entry by entry
 * (ops_mail.c cn__mailbox_drop) and its prekeys with a range delete that the
 * writer appends when it commits the batch (an indexed batch cannot hold
 * range deletes); later ops of the same batch treat the device as revoked
 * already.
 */
int cn__op_revoke(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.revoke.device_id;
    cn_rec_device_t dev;
    cn_rec_user_t user;
    int rc = cn__batch_device(b, id, &dev);
    CN_TRY(rc);
    CN_ENSURE(dev.revoked == 0, CN_ENOTFOUND);
    rc = cn__batch_user(b, dev.user, &user);
    CN_ENSURE(rc == CN_OK || rc == CN_ENOTFOUND, rc);
    bool has_user = rc == CN_OK && user_remove(&user, id);
    CN_TRY(revoked_reserve(b));

    /* Its mailbox goes now, its prekeys at commit, and so does any
     * pending wake-up. */
    CN__APPLY(b, cn__mailbox_drop(b, id));
    cn__rjour_drop_device(b, id); /* a group send earlier in this batch */
    CN__APPLY(b, cn__counter_set(b, id, CN__CTR_QBYTES, 0));
    CN__APPLY(b, cn__push_drop_device(b, id));
    dev.revoked = cn_now_ms();
    cn_buf_reset(&b->v1);
    cn_buf_reset(&b->v2);
    CN__APPLY(b, cn_rec_device_encode(&dev, &b->v1));
    if (has_user)
        CN__APPLY(b, cn_rec_user_encode(&user, &b->v2));
    cn__batch_put(b, CN__CF_DEVICES, id, CN_DEVICE_ID_LEN, &b->v1);
    if (has_user)
        cn__batch_put(b, CN__CF_USERS, dev.user, strlen(dev.user), &b->v2);
    memcpy(b->revoked[b->nrevoked++], id, CN_DEVICE_ID_LEN);
    return CN_OK;
}
