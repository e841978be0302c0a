/*
 * HISTORY_APPEND: one sealed entry of a user's archive (DESIGN section 4),
 * written under three keys of the history CF in one op: by thread
 * ('T' ‖ user ‖ tag ‖ time ‖ id → sealed), by time ('U' ‖ user ‖ time ‖
 * id → tag) and the thread's last activity ('L' ‖ user ‖ tag → u64be, the
 * largest time appended). Entries are never rewritten: a retry finds the
 * 'T' key and stores nothing.
 */
#include "store/store_internal.h"

#include <string.h>

static int append_check(cn__batch_t *b, const cn_store_op_t *op)
{
    const char *handle = op->u.history_append.handle;
    cn_slice_t sealed = op->u.history_append.sealed;
    char *v;
    size_t vlen;
    CN_ENSURE(cn__handle_ok(handle), CN_EINVAL);
    CN_ENSURE(sealed.base != NULL || sealed.len == 0, CN_EINVAL);
    CN_ENSURE(sealed.len <= CN_CIPHERTEXT_MAX, CN_ETOOBIG);
    CN_TRY(cn__batch_get(b, CN__CF_USERS, handle, strlen(handle), &v, &vlen));
    rocksdb_free(v);
    return CN_OK;
}

/** Raises the thread's last activity to time (never lowers it). */
static int last_raise(cn__batch_t *b, const uint8_t *user, const uint8_t *tag, uint64_t time)
{
    uint8_t key[CN__KEY_HIST_L], val[8];
    char *v;
    size_t vlen;
    cn__key_hist_l(key, user, tag);
    int rc = cn__batch_get(b, CN__CF_HISTORY, key, sizeof(key), &v, &vlen);
    if (rc == CN_OK) {
        bool newer = vlen == 8 && cn_load_u64be((const uint8_t *)v) >= time;
        rocksdb_free(v);
        if (newer)
            return CN_OK;
    } else if (rc != CN_ENOTFOUND) {
        return rc;
    }
    cn_store_u64be(val, time);
    cn__batch_put_raw(b, CN__CF_HISTORY, key, sizeof(key), val, sizeof(val));
    return CN_OK;
}

int cn__op_history_append(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *tag = op->u.history_append.thread_tag, *id = op->u.history_append.entry_id;
    uint64_t time = op->u.history_append.time;
    uint8_t user[CN__USER_KEY_LEN], tkey[CN__KEY_HIST_T], ukey[CN__KEY_HIST_U];
    char *v;
    size_t vlen;
    op->u.history_append.duplicate = false;
    CN_TRY(append_check(b, op));
    cn__key_user(user, op->u.history_append.handle);
    cn__key_hist_t(tkey, user, tag, time, id);
    int rc = cn__batch_get(b, CN__CF_HISTORY, tkey, sizeof(tkey), &v, &vlen);
    if (rc == CN_OK) {
        rocksdb_free(v);
        op->u.history_append.duplicate = true;
        return CN_OK;
    }
    CN_ENSURE(rc == CN_ENOTFOUND, rc);

    cn__key_hist_u(ukey, user, time, id);
    cn__batch_put_raw(b, CN__CF_HISTORY, tkey, sizeof(tkey), op->u.history_append.sealed.base,
                      op->u.history_append.sealed.len);
    cn__batch_put_raw(b, CN__CF_HISTORY, ukey, sizeof(ukey), tag, CN_THREAD_TAG_LEN);
    CN__APPLY(b, last_raise(b, user, tag, time));
    return CN_OK;
}
