/*
 * Offline notifications (issue 5 item 8): a durable outbox in the push CF.
 * A send with notify set for a recipient queues an event {device,
 * server_time} under the next event seq, in the same batch as the
 * envelope, unless that device was already woken: a per-device marker
 * (0xff ‖ device) holds its event seq while the event is pending (8
 * bytes), and seq ‖ sent time once PUSH_DONE consumed the event (16
 * bytes). A device is woken once until it connects (PUSH_CLEAR deletes the
 * marker) or until CN_STORE_PUSH_RENOTIFY_MS passed without it connecting.
 */
#include "store/store_internal.h"

#include <string.h>

/** Queues an event for one device unless one is pending. */
static int queue_one(cn__batch_t *b, const uint8_t *device, uint64_t server_time)
{
    uint8_t mkey[CN__KEY_PUSH_PENDING], ekey[CN__KEY_PUSH_EVENT];
    char *v;
    size_t vlen;
    uint64_t seq;
    cn__key_push_pending(mkey, device);
    int rc = cn__batch_get(b, CN__CF_PUSH, mkey, sizeof(mkey), &v, &vlen);
    if (rc == CN_OK) {
        /* Pending, or sent recently: the device has been woken already. */
        bool woken =
            vlen != 16 ||
            cn_load_u64be((const uint8_t *)v + 8) + CN_STORE_PUSH_RENOTIFY_MS > cn_now_ms();
        rocksdb_free(v);
        if (woken)
            return CN_OK;
        rc = CN_ENOTFOUND;
    }
    CN_ENSURE(rc == CN_ENOTFOUND, rc);
    CN_TRY(cn__push_seq_take(b, &seq));
    cn_rec_push_t ev = {.server_time = server_time};
    memcpy(ev.device_id, device, CN_DEVICE_ID_LEN);
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_push_encode(&ev, &b->v1));
    cn_store_u64be(ekey, seq);
    cn__batch_put(b, CN__CF_PUSH, ekey, sizeof(ekey), &b->v1);
    cn_buf_reset(&b->v1);
    CN_TRY(cn_buf_put_u64be(&b->v1, seq));
    cn__batch_put(b, CN__CF_PUSH, mkey, sizeof(mkey), &b->v1);
    return CN_OK;
}

int cn__push_notify(cn__batch_t *b, cn_store_op_t *op)
{
    for (uint32_t i = 0; i < op->u.send.n; i++) {
        const cn_store_recipient_t *r = &op->u.send.recipients[i];
        if (!r->notify || cn__batch_revoked(b, r->device_id))
            continue;
        CN_TRY(queue_one(b, r->device_id, op->u.send.env.server_time));
    }
    return CN_OK;
}

/** Reads a device's pending marker: CN_OK with *seq, CN_ENOTFOUND, CN_EIO. */
static int marker_get(cn__batch_t *b, const uint8_t *device, uint64_t *seq)
{
    uint8_t mkey[CN__KEY_PUSH_PENDING];
    char *v;
    size_t vlen;
    cn__key_push_pending(mkey, device);
    CN_TRY(cn__batch_get(b, CN__CF_PUSH, mkey, sizeof(mkey), &v, &vlen));
    /* A marker we cannot read names no event; seq 0 is never handed out. */
    *seq = vlen == 8 || vlen == 16 ? cn_load_u64be((const uint8_t *)v) : 0;
    if (vlen != 8 && vlen != 16)
        cn_log_error("store_corrupt", "what=push_marker len=%zu", vlen);
    rocksdb_free(v);
    return CN_OK;
}

static void delete_event(cn__batch_t *b, uint64_t seq)
{
    uint8_t ekey[CN__KEY_PUSH_EVENT];
    cn_store_u64be(ekey, seq);
    cn__batch_delete(b, CN__CF_PUSH, ekey, sizeof(ekey));
}

static void delete_marker(cn__batch_t *b, const uint8_t *device)
{
    uint8_t mkey[CN__KEY_PUSH_PENDING];
    cn__key_push_pending(mkey, device);
    cn__batch_delete(b, CN__CF_PUSH, mkey, sizeof(mkey));
}

int cn__push_drop_device(cn__batch_t *b, const uint8_t *device)
{
    uint64_t seq;
    int rc = marker_get(b, device, &seq);
    if (rc == CN_ENOTFOUND)
        return CN_OK;
    CN_TRY(rc);
    if (seq != 0)
        delete_event(b, seq);
    delete_marker(b, device);
    return CN_OK;
}

/*
 * The marker goes only when it names this event: a repeated or late done
 * must not clear the marker of a newer event (that would let a second
 * event for the device queue up behind it).
 */
int cn__op_push_done(cn__batch_t *b, cn_store_op_t *op)
{
    uint64_t seq = op->u.push_done.event_seq, pending;
    const uint8_t *device = op->u.push_done.device_id;
    uint8_t ekey[CN__KEY_PUSH_EVENT];
    char *v;
    size_t vlen;
    cn_rec_push_t ev;
    CN_ENSURE(seq > 0 && seq < CN__PUSH_SEQ_LIMIT, CN_EINVAL);
    cn_store_u64be(ekey, seq);
    CN_TRY(cn__batch_get(b, CN__CF_PUSH, ekey, sizeof(ekey), &v, &vlen));
    int rc = cn_rec_push_decode((const uint8_t *)v, vlen, &ev);
    rocksdb_free(v);
    if (rc < 0) /* still deleted: a corrupt event must not block the outbox */
        cn_log_error("store_corrupt", "what=push_event rc=%s", cn_strerror(rc));
    else
        CN_ENSURE(memcmp(ev.device_id, device, CN_DEVICE_ID_LEN) == 0, CN_EINVAL);
    rc = marker_get(b, device, &pending);
    CN_ENSURE(rc == CN_OK || rc == CN_ENOTFOUND, rc);
    delete_event(b, seq);
    if (rc == CN_OK && pending == seq) { /* woken: remember when */
        uint8_t mkey[CN__KEY_PUSH_PENDING], sent[16];
        cn__key_push_pending(mkey, device);
        cn_store_u64be(sent, seq);
        cn_store_u64be(sent + 8, cn_now_ms());
        cn__batch_put_raw(b, CN__CF_PUSH, mkey, sizeof(mkey), sent, sizeof(sent));
    }
    return CN_OK;
}

/* The device connected: forget that it was woken, drop a pending wake-up. */
int cn__op_push_clear(cn__batch_t *b, cn_store_op_t *op)
{
    return cn__push_drop_device(b, op->u.push_clear.device_id);
}
