/*
 * Mailbox ops: SEND (dedupe, the queued-bytes cap, then one envelope per
 * recipient mailbox under the device's next seq, and notification events
 * for offline recipients) and ACK (delete delivered entries). A group send
 * stores its envelope once in the gmsg column family with a count of
 * references, and each mailbox gets a reference (an envelope record with
 * shared set and no ciphertext); the ack of the last reference deletes
 * the body. References dropped otherwise (revoke, TTL) leave the body to
 * its TTL, which is the mailbox TTL. Both keep
 * the per-device queued-bytes counter (quota.c); it is read before the
 * mailbox changes, since a counter loaded for the first time is computed
 * from the mailbox through the batch.
 */
#include "store/store_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define ACK_SCAN_MIN 8 /* ascending seqs from which an ack walks an iterator */

static int cmp_device(const void *a, const void *b)
{
    return memcmp(*(const uint8_t *const *)a, *(const uint8_t *const *)b, CN_DEVICE_ID_LEN);
}

/* A shared send names each device once: the references' seqs and byte
 * counts assume it. Sorted copy, O(n log n). */
static int devices_distinct(const cn_store_op_t *op)
{
    uint32_t n = op->u.send.n;
    const uint8_t **ids = malloc(n * sizeof(*ids));
    CN_ENSURE(ids != NULL, CN_ENOMEM);
    for (uint32_t i = 0; i < n; i++)
        ids[i] = op->u.send.recipients[i].device_id;
    qsort(ids, n, sizeof(*ids), cmp_device);
    int rc = CN_OK;
    for (uint32_t i = 1; i < n && rc == CN_OK; i++)
        if (memcmp(ids[i - 1], ids[i], CN_DEVICE_ID_LEN) == 0)
            rc = CN_EINVAL;
    free(ids);
    return rc;
}

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
        CN_ENSURE(!op->u.send.shared || (r[i].ciphertext.base == r[0].ciphertext.base &&
                                         r[i].ciphertext.len == r[0].ciphertext.len),
                  CN_EINVAL);
    }
    if (cn__send_is_shared(op))
        CN_TRY(devices_distinct(op));
    /* Checks the header (handle, kind) once, with an empty ciphertext. */
    cn_rec_envelope_t env = op->u.send.env;
    env.ciphertext = cn_slice(NULL, 0);
    env.shared = false;
    cn_buf_reset(&b->v1);
    return cn_rec_envelope_encode(&env, &b->v1);
}

/**
 * CN_OK with *dup set when (from_device, message_id) was stored before:
 * by this batch (its unindexed part) or committed. Only sends write
 * dedupe records, always through the unindexed part, so the indexed one
 * need not be searched.
 */
static int dedupe_lookup(cn__batch_t *b, const cn_store_op_t *op, const uint8_t key[CN__KEY_DEDUPE],
                         bool *dup, cn_rec_dedupe_t *rec)
{
    const uint8_t *sealed, *plain;
    char *v = NULL;
    size_t vlen, plen;
    *dup = false;
    int rc = cn__overlay_get(&b->overlay, CN__CF_DEDUPE, key, CN__KEY_DEDUPE, &sealed, &vlen);
    if (rc == CN_OK) {
        CN_TRY(cn__open_copy(b->s, CN__CF_DEDUPE, key, CN__KEY_DEDUPE, sealed, vlen, &b->v2, &plain,
                             &plen));
    } else if (op->dedupe_absent) {
        return CN_OK; /* not committed (writer.c prefetch_dedupe), not in this batch */
    } else {
        rc = cn__db_get(b->s, CN__CF_DEDUPE, key, CN__KEY_DEDUPE, &v, &plen);
        if (rc == CN_ENOTFOUND)
            return CN_OK;
        CN_TRY(rc);
        plain = (const uint8_t *)v;
    }
    rc = cn_rec_dedupe_decode(plain, plen, rec);
    rocksdb_free(v);
    if (rc < 0) {
        cn_log_error("store_corrupt", "what=dedupe rc=%s", cn_strerror(rc));
        return CN_EIO;
    }
    *dup = true;
    return CN_OK;
}

bool cn__send_is_shared(const cn_store_op_t *op)
{
    return op->u.send.shared && op->u.send.n >= CN__SHARED_MIN_DEVICES;
}

int cn__ref_encode(const cn_store_op_t *op, cn_buf_t *out)
{
    cn_rec_envelope_t ref = op->u.send.env;
    ref.ciphertext = cn_slice(NULL, 0);
    ref.shared = true;
    cn_buf_reset(out);
    return cn_rec_envelope_encode(&ref, out);
}

/* The body once (under from_device ‖ message_id), then one reference per
 * mailbox: as one journal record, which the next batch puts into the
 * mailboxes (refjour.c). */
static int send_store_shared(cn__batch_t *b, cn_store_op_t *op)
{
    cn_rec_envelope_t env = op->u.send.env;
    uint8_t body[CN__KEY_GMSG];
    memcpy(body, env.from_device, CN_DEVICE_ID_LEN);
    memcpy(body + CN_DEVICE_ID_LEN, env.message_id, CN_MESSAGE_ID_LEN);
    env.ciphertext = op->u.send.recipients[0].ciphertext;
    env.shared = false;
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_envelope_encode(&env, &b->v1));
    cn__batch_put(b, CN__CF_GMSG, body, CN__KEY_GMSG, &b->v1);
    CN_TRY(cn__refs_set(b, body, op->u.send.n, env.server_time));
    CN_TRY(cn__ref_encode(op, &b->v1));
    size_t vlen = cn_buf_unread(&b->v1).len;
    CN_TRY(cn__rjour_begin(b, body, cn_buf_unread(&b->v1), env.server_time, op->u.send.n));
    for (uint32_t i = 0; i < op->u.send.n; i++) {
        cn_store_recipient_t *r = &op->u.send.recipients[i];
        CN_TRY(cn__counter_take(b, r->device_id, CN__CTR_MAILBOX, &r->seq));
        if (cn__batch_revoked(b, r->device_id))
            continue; /* revoked earlier in this batch: its mailbox is gone */
        CN_TRY(cn__quota_adjust(b, r->device_id, vlen, true));
        CN_TRY(cn__rjour_add(b, r->device_id, r->seq));
        cn__recent_add(&b->recent, r->device_id, r->seq, vlen, body);
    }
    return CN_OK;
}

static int store_dedupe(cn__batch_t *b, const cn_store_op_t *op, const uint8_t dkey[CN__KEY_DEDUPE])
{
    cn_rec_dedupe_t d = {.server_time = op->u.send.env.server_time};
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_dedupe_encode(&d, &b->v1));
    cn__overlay_put(b, CN__CF_DEDUPE, dkey, CN__KEY_DEDUPE, &b->v1, d.server_time);
    return CN_OK;
}

/* header: the envelope without ciphertext (send_check's encoding, in v1);
 * each recipient's envelope is built from it in v2. */
static int send_store(cn__batch_t *b, cn_store_op_t *op, const uint8_t dkey[CN__KEY_DEDUPE],
                      cn_slice_t header)
{
    uint8_t key[CN__KEY_MAILBOX];
    if (cn__send_is_shared(op)) {
        CN_TRY(send_store_shared(b, op));
        return store_dedupe(b, op, dkey);
    }
    for (uint32_t i = 0; i < op->u.send.n; i++) {
        cn_store_recipient_t *r = &op->u.send.recipients[i];
        cn_buf_reset(&b->v2);
        CN_TRY(cn_rec_envelope_encode_with(header, r->ciphertext, &b->v2));
        size_t vlen = cn_buf_unread(&b->v2).len;
        /* The cap was checked with the predicted size. */
        assert(vlen == cn__envelope_size(header.len, r->ciphertext.len));
        CN_TRY(cn__counter_take(b, r->device_id, CN__CTR_MAILBOX, &r->seq));
        if (cn__batch_revoked(b, r->device_id))
            continue; /* revoked earlier in this batch: its mailbox is gone */
        CN_TRY(cn__quota_adjust(b, r->device_id, vlen, true));
        cn__key_mailbox(key, r->device_id, r->seq);
        cn__overlay_put(b, CN__CF_MAILBOX, key, sizeof(key), &b->v2, op->u.send.env.server_time);
        cn__recent_add(&b->recent, r->device_id, r->seq, vlen, NULL);
    }
    return store_dedupe(b, op, dkey);
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
    /* v1 keeps the header until send_store: the lookup and the cap check
     * below use v2 only. */
    cn_slice_t header = cn_buf_unread(&b->v1);
    cn__key_dedupe(dkey, op->u.send.env.from_device, op->u.send.env.message_id);
    CN_TRY(dedupe_lookup(b, op, dkey, &dup, &first));
    if (dup) {
        /* A retry: answer with the first result, store nothing. */
        op->u.send.duplicate = true;
        op->u.send.env.server_time = first.server_time;
        for (uint32_t i = 0; i < op->u.send.n; i++)
            op->u.send.recipients[i].seq = 0;
        return CN_OK;
    }
    CN_TRY(cn__quota_check(b, op, header.len));
    CN__APPLY(b, send_store(b, op, dkey, header));
    CN__APPLY(b, cn__push_notify(b, op));
    return CN_OK;
}

/* Deletes one stored mailbox entry (raw: its stored, sealed bytes) and
 * takes its plaintext bytes off the device's queued bytes, before the
 * mailbox changes (a counter loaded for the first time is computed from
 * it). A reference also releases its body. An entry that does not open or
 * decode is deleted all the same (nobody can read it; the failure is
 * logged and counted where it happens). */
static int ack_raw(cn__batch_t *b, const uint8_t *device, uint64_t seq,
                   const uint8_t key[CN__KEY_MAILBOX], const uint8_t *raw, size_t vlen)
{
    const uint8_t *plain;
    size_t plen;
    uint8_t body[CN__KEY_GMSG];
    bool shared;
    size_t size = cn__plain_len(b->s, CN__CF_MAILBOX, raw, vlen);
    CN_TRY(cn__quota_adjust(b, device, size, false));
    /* Delivered by a mailbox read: what it learned from opening it. */
    if (cn__readhints_take(&b->s->readhints, device, seq, size, &shared, body)) {
        if (shared)
            CN_TRY(cn__refs_release(b, body));
        cn__overlay_delete(b, CN__CF_MAILBOX, key, CN__KEY_MAILBOX);
        return CN_OK;
    }
    cn_rec_envelope_t env;
    int rc =
        cn__open_copy(b->s, CN__CF_MAILBOX, key, CN__KEY_MAILBOX, raw, vlen, &b->v2, &plain, &plen);
    if (rc == CN_OK)
        rc = cn_rec_envelope_decode(plain, plen, &env);
    if (rc == CN_OK && env.shared) {
        memcpy(body, env.from_device, CN_DEVICE_ID_LEN);
        memcpy(body + CN_DEVICE_ID_LEN, env.message_id, CN_MESSAGE_ID_LEN);
        CN_TRY(cn__refs_release(b, body));
    } else if (rc < 0) {
        cn_log_error("store_corrupt", "what=mailbox_ack rc=%s", cn_strerror(rc));
    }
    cn__overlay_delete(b, CN__CF_MAILBOX, key, CN__KEY_MAILBOX);
    return CN_OK;
}

/* What this batch knows of an entry without reading the database: the
 * writer's recent hint (handled here), or the batch's own write of it.
 * CN_OK: acked; CN_ENOTFOUND: deleted in this batch; CN_EAGAIN: read it. */
static int ack_known(cn__batch_t *b, const uint8_t *device, uint64_t seq,
                     const uint8_t key[CN__KEY_MAILBOX])
{
    size_t size, vlen;
    bool shared;
    uint8_t body[CN__KEY_GMSG];
    const uint8_t *raw;
    if (cn__recent_take(&b->recent, device, seq, &size, &shared, body)) {
        CN_TRY(cn__quota_adjust(b, device, size, false));
        if (shared)
            CN_TRY(cn__refs_release(b, body));
        cn__overlay_delete(b, CN__CF_MAILBOX, key, CN__KEY_MAILBOX);
        return CN_OK;
    }
    int rc = cn__overlay_get(&b->overlay, CN__CF_MAILBOX, key, CN__KEY_MAILBOX, &raw, &vlen);
    if (rc == CN_OK)
        return ack_raw(b, device, seq, key, raw, vlen);
    return rc;
}

/* One entry: CN_OK when deleted, CN_ENOTFOUND when there was none. */
static int ack_entry(cn__batch_t *b, const uint8_t *device, uint64_t seq,
                     const uint8_t key[CN__KEY_MAILBOX])
{
    char *v;
    size_t vlen;
    int rc = ack_known(b, device, seq, key);
    if (rc != CN_EAGAIN)
        return rc;
    CN_TRY(cn__batch_get_raw(b, CN__CF_MAILBOX, key, CN__KEY_MAILBOX, &v, &vlen));
    rc = ack_raw(b, device, seq, key, (const uint8_t *)v, vlen);
    rocksdb_free(v);
    return rc;
}

/* Many ascending seqs (a drain acks 256 at a time): one iterator walks the
 * committed mailbox alongside instead of a point read per seq. The batch's
 * own writes of these keys are in its unindexed part, seen by ack_known;
 * the indexed part only ever re-seals existing values. */
static int ack_scan(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.ack.device_id;
    uint8_t key[CN__KEY_MAILBOX];
    cn__iter_t it;
    bool open = false;
    int rc = CN_OK;
    for (uint32_t i = 0; i < op->u.ack.n && rc >= 0; i++) {
        uint64_t seq = op->u.ack.seqs[i];
        cn__key_mailbox(key, id, seq);
        rc = ack_known(b, id, seq, key);
        if (rc == CN_OK)
            op->u.ack.deleted++;
        if (rc != CN_EAGAIN) {
            rc = rc == CN_ENOTFOUND ? CN_OK : rc;
            continue;
        }
        if (!open) {
            rc = cn__iter_open(b->s, NULL, CN__CF_MAILBOX, id, CN_DEVICE_ID_LEN, 8, key,
                               sizeof(key), &it);
            if (rc < 0)
                break;
            open = true;
        }
        size_t klen = 0, vlen;
        const uint8_t *k = NULL;
        while (cn__iter_valid(&it) && (k = cn__iter_key(&it, &klen)) != NULL &&
               (klen != CN__KEY_MAILBOX || cn_load_u64be(k + CN_DEVICE_ID_LEN) < seq))
            cn__iter_next(&it);
        rc = CN_OK;
        if (!cn__iter_valid(&it) || klen != CN__KEY_MAILBOX ||
            cn_load_u64be(k + CN_DEVICE_ID_LEN) != seq)
            continue; /* not stored (acked before, expired) */
        const uint8_t *raw = (const uint8_t *)rocksdb_iter_value(it.it, &vlen);
        rc = ack_raw(b, id, seq, key, raw, vlen);
        if (rc == CN_OK)
            op->u.ack.deleted++;
    }
    if (open) {
        int crc = cn__iter_close(&it);
        rc = rc < 0 ? rc : crc;
    }
    return rc;
}

static bool ascending(const uint64_t *seqs, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++)
        if (seqs[i] <= seqs[i - 1])
            return false;
    return true;
}

/*
 * A revoke's mailbox: point deletes, not a range delete, because the
 * mailbox's memtable keeps insert hints (db.c) and RocksDB before 9.2
 * would insert a range deletion through a point key's hint. One delete
 * per queued entry: about 2 ms per 1,000 (OPERATIONS.md).
 */
int cn__mailbox_drop(cn__batch_t *b, const uint8_t *device)
{
    cn__iter_t it;
    CN_TRY(cn__iter_open(b->s, b->wb, CN__CF_MAILBOX, device, CN_DEVICE_ID_LEN, 8, NULL, 0, &it));
    for (; cn__iter_valid(&it) && b->fatal == CN_OK; cn__iter_next(&it)) {
        size_t klen;
        const uint8_t *key = cn__iter_key(&it, &klen);
        cn__overlay_delete(b, CN__CF_MAILBOX, key, klen);
    }
    CN_TRY(cn__iter_close(&it));
    cn__overlay_delete_prefix(b, CN__CF_MAILBOX, device, CN_DEVICE_ID_LEN);
    return b->fatal;
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
    if (op->u.ack.n >= ACK_SCAN_MIN && ascending(op->u.ack.seqs, op->u.ack.n)) {
        CN__APPLY(b, ack_scan(b, op));
        return CN_OK;
    }
    for (uint32_t i = 0; i < op->u.ack.n; i++) {
        cn__key_mailbox(key, id, op->u.ack.seqs[i]);
        int rc = ack_entry(b, id, op->u.ack.seqs[i], key);
        if (rc == CN_ENOTFOUND)
            continue;
        CN__APPLY(b, rc);
        op->u.ack.deleted++;
    }
    return CN_OK;
}
