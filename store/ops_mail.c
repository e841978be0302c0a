/*
 * Mailbox ops: SEND (dedupe, the queued-bytes cap, then one envelope per
 * recipient mailbox under the device's next seq, and notification events
 * for offline recipients) and ACK (delete delivered entries). Both keep
 * the per-device queued-bytes counter (quota.c); it is read before the
 * mailbox changes, since a counter loaded for the first time is computed
 * from the mailbox through the batch.
 */
#include "store/store_internal.h"

#include <assert.h>
#include <string.h>

static int send_check(cn__batch_t *b, cn_store_op_t *op)
{
    const cn_store_recipient_t *r = op->u.send.recipients;
    CN_ENSURE(op->u.send.n > 0 && r != NULL, CN_EINVAL);
    /* A group send fans out to every member device; 1:1 sends are held to
     * CN_RECIPIENTS_MAX by the node. */
    CN_ENSURE(op->u.send.n <= CN_SEND_FANOUT_MAX, CN_ETOOBIG);
    for (uint32_t i = 0; i < op->u.send.n; i++) {
        CN_ENSURE(r[i].ciphertext.len <= CN_CIPHERTEXT_MAX, CN_ETOOBIG);
        CN_ENSURE(r[i].ciphertext.base != NULL || r[i].ciphertext.len == 0, CN_EINVAL);
    }
    /* Checks the header (handle, kind) once, with an empty ciphertext. */
    cn_rec_envelope_t env = op->u.send.env;
    env.ciphertext = cn_slice(NULL, 0);
    cn_buf_reset(&b->v1);
    return cn_rec_envelope_encode(&env, &b->v1);
}

/** CN_OK with *dup set when (from_device, message_id) was stored before. */
static int dedupe_lookup(cn__batch_t *b, const uint8_t key[CN__KEY_DEDUPE], bool *dup,
                         cn_rec_dedupe_t *rec)
{
    char *v;
    size_t vlen;
    *dup = false;
    int rc = cn__batch_get(b, CN__CF_DEDUPE, key, CN__KEY_DEDUPE, &v, &vlen);
    if (rc == CN_ENOTFOUND)
        return CN_OK;
    CN_TRY(rc);
    rc = cn_rec_dedupe_decode((const uint8_t *)v, vlen, rec);
    rocksdb_free(v);
    if (rc < 0) {
        cn_log_error("store_corrupt", "what=dedupe rc=%s", cn_strerror(rc));
        return CN_EIO;
    }
    *dup = true;
    return CN_OK;
}

static int send_store(cn__batch_t *b, cn_store_op_t *op, const uint8_t dkey[CN__KEY_DEDUPE],
                      size_t header_len)
{
    cn_rec_envelope_t env = op->u.send.env;
    uint8_t key[CN__KEY_MAILBOX];
    for (uint32_t i = 0; i < op->u.send.n; i++) {
        cn_store_recipient_t *r = &op->u.send.recipients[i];
        env.ciphertext = r->ciphertext;
        cn_buf_reset(&b->v1);
        CN_TRY(cn_rec_envelope_encode(&env, &b->v1));
        size_t vlen = cn_buf_unread(&b->v1).len;
        /* The cap was checked with the predicted size. */
        assert(vlen == cn__envelope_size(header_len, r->ciphertext.len));
        (void)header_len;
        CN_TRY(cn__counter_take(b, r->device_id, CN__CTR_MAILBOX, &r->seq));
        if (!cn__batch_revoked(b, r->device_id))
            CN_TRY(cn__quota_adjust(b, r->device_id, vlen, true));
        cn__key_mailbox(key, r->device_id, r->seq);
        cn__batch_put(b, CN__CF_MAILBOX, key, sizeof(key), &b->v1);
    }
    cn_rec_dedupe_t d = {.server_time = env.server_time, .recipients = op->u.send.n};
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_dedupe_encode(&d, &b->v1));
    cn__batch_put(b, CN__CF_DEDUPE, dkey, CN__KEY_DEDUPE, &b->v1);
    return CN_OK;
}

int cn__op_send(cn__batch_t *b, cn_store_op_t *op)
{
    uint8_t dkey[CN__KEY_DEDUPE];
    cn_rec_dedupe_t first;
    bool dup;
    op->u.send.duplicate = false;
    op->u.send.limited_index = 0;
    /* Before the check: the header it encodes sizes every envelope. */
    if (op->u.send.env.server_time == 0)
        op->u.send.env.server_time = cn_now_ms();
    CN_TRY(send_check(b, op));
    size_t header_len = cn_buf_unread(&b->v1).len;
    cn__key_dedupe(dkey, op->u.send.env.from_device, op->u.send.env.message_id);
    CN_TRY(dedupe_lookup(b, dkey, &dup, &first));
    if (dup) {
        /* A retry: answer with the first result, store nothing. */
        op->u.send.duplicate = true;
        op->u.send.env.server_time = first.server_time;
        for (uint32_t i = 0; i < op->u.send.n; i++)
            op->u.send.recipients[i].seq = 0;
        return CN_OK;
    }
    CN_TRY(cn__quota_check(b, op, header_len));
    CN__APPLY(b, send_store(b, op, dkey, header_len));
    CN__APPLY(b, cn__push_notify(b, op));
    return CN_OK;
}

int cn__op_ack(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.ack.device_id;
    uint8_t key[CN__KEY_MAILBOX];
    op->u.ack.deleted = 0;
    CN_ENSURE(op->u.ack.n <= CN_ACK_SEQS_MAX, CN_ETOOBIG);
    CN_ENSURE(op->u.ack.n == 0 || op->u.ack.seqs != NULL, CN_EINVAL);
    /* The mailbox of a device revoked earlier in this batch is gone. */
    if (cn__batch_revoked(b, id))
        return CN_OK;
    for (uint32_t i = 0; i < op->u.ack.n; i++) {
        char *v;
        size_t vlen;
        cn__key_mailbox(key, id, op->u.ack.seqs[i]);
        /* Only the size counts: the value is not opened. */
        int rc = cn__batch_get_raw(b, CN__CF_MAILBOX, key, sizeof(key), &v, &vlen);
        if (rc == CN_ENOTFOUND)
            continue;
        CN__APPLY(b, rc);
        vlen = cn__plain_len(b->s, CN__CF_MAILBOX, (const uint8_t *)v, vlen);
        rocksdb_free(v);
        CN__APPLY(b, cn__quota_adjust(b, id, vlen, false));
        cn__batch_delete(b, CN__CF_MAILBOX, key, sizeof(key));
        op->u.ack.deleted++;
    }
    return CN_OK;
}
