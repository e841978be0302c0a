/*
 * The per-recipient queued-bytes cap. Each device has a counter of the
 * bytes of its stored mailbox values (kept by the writer in memory only,
 * computed from the mailbox on first use, see counters.c): a send adds each appended value's size,
 * an ACK subtracts the deleted values' sizes, a REVOKE resets it. The TTL
 * compaction filter drops entries without touching it, so the counter is
 * an upper bound; before a send is refused for passing the cap, the exact
 * bytes are recomputed from the mailbox (through the batch) and the
 * counter corrected. Only sends that would pass the cap pay for that scan.
 */
#include "store/store_internal.h"

#include <string.h>

int cn__mailbox_bytes(cn__batch_t *b, const uint8_t *device, uint64_t *out)
{
    cn__iter_t it;
    uint64_t sum = 0;
    CN_TRY(cn__iter_open(b->s, b->wb, CN__CF_MAILBOX, device, CN_DEVICE_ID_LEN, 8, NULL, 0, &it));
    for (; cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen;
        (void)cn__iter_key(&it, &klen);
        if (klen != CN__KEY_MAILBOX)
            continue;
        /* Plaintext bytes, as counted when appended: no need to open. */
        sum += cn__iter_value_len(&it);
    }
    CN_TRY(cn__iter_close(&it));
    *out = sum;
    return CN_OK;
}

/** RFC 8949 3.1: the size of a CBOR item head carrying argument v. */
static size_t cbor_head_len(uint64_t v)
{
    if (v < 24)
        return 1;
    if (v <= UINT8_MAX)
        return 2;
    if (v <= UINT16_MAX)
        return 3;
    if (v <= UINT32_MAX)
        return 5;
    return 9;
}

/* The ciphertext is the last field, a byte string: only its head and its
 * payload differ from the empty form (whose head is one byte). */
size_t cn__envelope_size(size_t header_len, size_t len)
{
    return header_len - 1 + cbor_head_len(len) + len;
}

/**
 * Bytes that recipients 0..i of the op append to recipient i's device:
 * whole envelopes, or for a shared send references of ref_len bytes.
 */
static uint64_t bytes_for_device(const cn_store_op_t *op, uint32_t i, size_t header_len,
                                 size_t ref_len)
{
    const cn_store_recipient_t *r = op->u.send.recipients;
    uint64_t sum = 0;
    /* The devices of a shared send are distinct (checked by the send). */
    if (ref_len)
        return ref_len;
    for (uint32_t j = 0; j <= i; j++) {
        if (memcmp(r[j].device_id, r[i].device_id, CN_DEVICE_ID_LEN) == 0)
            sum += cn__envelope_size(header_len, r[j].ciphertext.len);
    }
    return sum;
}

/** *fits: the device's mailbox can take add more bytes under cap. */
static int device_fits(cn__batch_t *b, const uint8_t *device, uint64_t add, uint64_t cap,
                       bool *fits)
{
    uint64_t q;
    CN_TRY(cn__counter_get(b, device, CN__CTR_QBYTES, &q));
    *fits = add <= cap && q <= cap - add;
    if (*fits || add > cap)
        return CN_OK;
    /* The counter may still count entries that expired: recount. The
     * iterator does not see this batch's mailbox writes (overlay.c): add
     * what they changed. */
    int64_t delta;
    CN_TRY(cn__mailbox_bytes(b, device, &q));
    CN_TRY(cn__qbytes_batch_delta(b, device, &delta));
    q = delta < 0 && (uint64_t)-delta > q ? 0 : (uint64_t)((int64_t)q + delta);
    CN_TRY(cn__counter_set(b, device, CN__CTR_QBYTES, q));
    *fits = q <= cap - add;
    return CN_OK;
}

int cn__quota_check(cn__batch_t *b, cn_store_op_t *op, size_t header_len)
{
    uint64_t cap = op->u.send.max_queued_bytes;
    const cn_store_recipient_t *r = op->u.send.recipients;
    size_t ref_len = 0;
    if (cap == 0)
        return CN_OK;
    if (cn__send_is_shared(op)) {
        CN_TRY(cn__ref_encode(op, &b->v2));
        ref_len = cn_buf_unread(&b->v2).len;
    }
    for (uint32_t i = 0; i < op->u.send.n; i++) {
        bool fits;
        /* Nothing is appended to a device revoked earlier in the batch. */
        if (cn__batch_revoked(b, r[i].device_id))
            continue;
        uint64_t add = bytes_for_device(op, i, header_len, ref_len);
        CN_TRY(device_fits(b, r[i].device_id, add, cap, &fits));
        if (!fits) {
            op->u.send.limited_index = i;
            return CN_ELIMIT;
        }
    }
    return CN_OK;
}

int cn__quota_adjust(cn__batch_t *b, const uint8_t *device, uint64_t n, bool add)
{
    uint64_t q;
    CN_TRY(cn__counter_get(b, device, CN__CTR_QBYTES, &q));
    if (add)
        q = q > UINT64_MAX - n ? UINT64_MAX : q + n;
    else
        q = q > n ? q - n : 0;
    CN_TRY(cn__counter_set(b, device, CN__CTR_QBYTES, q));
    /* counter_set listed the entry as touched: the delta resets with it. */
    return cn__qbytes_delta_add(b, device, add ? (int64_t)n : -(int64_t)n);
}
