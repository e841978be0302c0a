/*
 * Ops the node runs for administration and runtime state: USER_UPDATE
 * (disable a user, hide presence, record last seen) and META_PUT / META_DELETE (rate-limit
 * policies, invites), ordered with every other write by the writer.
 */
#include "store/store_internal.h"

#include <string.h>

#define USER_SET_ALL (CN_USER_SET_DISABLED | CN_USER_SET_PRESENCE_HIDDEN | CN_USER_SET_LAST_SEEN)

int cn__op_user_update(cn__batch_t *b, cn_store_op_t *op)
{
    const char *handle = op->u.user_update.handle;
    uint32_t mask = op->u.user_update.mask;
    cn_rec_user_t user;
    CN_ENSURE(cn__handle_ok(handle), CN_EINVAL);
    CN_ENSURE(mask != 0 && (mask & ~USER_SET_ALL) == 0, CN_EINVAL);
    CN_TRY(cn__batch_user(b, handle, &user));
    if (mask & CN_USER_SET_DISABLED)
        user.disabled = op->u.user_update.disabled;
    if (mask & CN_USER_SET_PRESENCE_HIDDEN)
        user.presence_hidden = op->u.user_update.presence_hidden;
    if (mask & CN_USER_SET_LAST_SEEN)
        user.last_seen = op->u.user_update.last_seen;
    cn_buf_reset(&b->v1);
    CN__APPLY(b, cn_rec_user_encode(&user, &b->v1));
    cn__batch_put(b, CN__CF_USERS, handle, strlen(handle), &b->v1);
    return CN_OK;
}

int cn__op_meta_put(cn__batch_t *b, cn_store_op_t *op)
{
    const char *name = op->u.meta.name;
    CN_TRY(cn__meta_name_ok(name));
    CN_ENSURE(op->u.meta.value != NULL || op->u.meta.len == 0, CN_EINVAL);
    cn__batch_put_raw(b, CN__CF_META, name, strlen(name), op->u.meta.value, op->u.meta.len);
    return CN_OK;
}

int cn__op_meta_delete(cn__batch_t *b, cn_store_op_t *op)
{
    const char *name = op->u.meta.name;
    char *v;
    size_t vlen;
    CN_TRY(cn__meta_name_ok(name));
    CN_TRY(cn__batch_get(b, CN__CF_META, name, strlen(name), &v, &vlen));
    rocksdb_free(v);
    cn__batch_delete(b, CN__CF_META, name, strlen(name));
    return CN_OK;
}
