/* chatadmin keys list|rotate|retire: the at-rest key ring of the store. */
#include "node/node_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- keys at rest */

static const char *key_state(enum cn_store_key_state st)
{
    return st == CN_STORE_KEY_CURRENT ? "current" : st == CN_STORE_KEY_OLD ? "old" : "retired";
}

void cn__cmd_keys_list(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    cn_store_keys_stats_t *k = calloc(1, sizeof(*k));
    if (!k || cn_store_keys_stats(s->store, k) < 0 || !k->encrypted) {
        cn__admin_fail(resp, CN_ADMIN_FAILED, k ? "the store is not encrypted" : "out of memory");
        free(k);
        return;
    }
    int rc = 0;
    for (uint32_t i = 0; i < k->n; i++) {
        cn_admin_row_t *r = cn__admin_add_row(resp);
        if (!r)
            break;
        const cn_store_key_info_t *ki = &k->keys[i];
        rc |= cn_admin_row_set(r, "id", "%u", ki->id);
        rc |= cn_admin_row_set(r, "state", "%s", ki->id == 0 ? "plaintext" : key_state(ki->state));
        if (k->counted)
            rc |= cn_admin_row_set(r, "records", "%llu", (unsigned long long)ki->records);
        else
            rc |= cn_admin_row_set(r, "records", "unknown");
        rc |= cn_admin_row_set(r, "retirable", "%s", ki->retirable ? "yes" : "no");
    }
    cn__admin_check_rows(resp, rc);
    free(k);
}

void cn__cmd_keys_rotate(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_KEYS_ROTATE;
    int rc = cn__admin_submit_wait(s, &op);
    if (rc < 0) {
        cn__admin_fail(resp, rc == CN_ELIMIT ? CN_ADMIN_REFUSED : CN_ADMIN_FAILED,
                       rc == CN_ELIMIT   ? "the key ring is full: retire old keys first"
                       : rc == CN_EINVAL ? "the store is not encrypted"
                                         : "storage unavailable");
        return;
    }
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (r)
        cn__admin_check_rows(resp, cn_admin_row_set(r, "current", "%u", op.u.keys.key_id));
    cn_log_info("keys_rotated", "current=%u", op.u.keys.key_id);
}

void cn__cmd_keys_retire(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    const char *v = cn__admin_arg(req, "id");
    unsigned id;
    if (!v || sscanf(v, "%u", &id) != 1 || id == 0) {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "id must be a key id (keys list)");
        return;
    }
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_KEYS_RETIRE;
    op.u.keys.key_id = id;
    int rc = cn__admin_submit_wait(s, &op);
    if (rc == CN_ECONFLICT)
        cn__admin_fail(resp, CN_ADMIN_REFUSED,
                       "key %u is current or records may still use it (see keys list)", id);
    else if (rc < 0)
        cn__admin_fail(resp, cn__admin_status_of(rc),
                       rc == CN_ENOTFOUND ? "no such key" : "storage unavailable");
    else
        cn_log_info("key_retired", "id=%u", id);
}
