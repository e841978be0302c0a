/*
 * Media expiry and the per-owner media quota.
 *
 * Every media record carries its expiry: the upload state in its CBOR
 * record, chunks and owner-index entries as their first 8 value bytes. The
 * media CF compaction filter drops them once expired, so expiry costs
 * nothing on the hot path.
 *
 * Each owner has a counter of the declared bytes of its uploads (meta
 * mbytes/ ‖ user key, cached by the writer like the per-device counters):
 * a new upload adds its size. Expiry does not touch it, so it is an upper
 * bound; before an upload is refused for passing the quota, the exact sum
 * over the owner's unexpired uploads is recomputed from the owner index
 * (through the batch) and the counter corrected. Only uploads that would
 * pass the quota pay for that scan.
 */
#include "store/store_internal.h"

#include <string.h>

static bool past(uint64_t expires, uint64_t now)
{
    return expires != 0 && expires <= now;
}

bool cn__media_expired(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                       uint64_t now)
{
    if (klen == CN__KEY_MEDIA_INFO) {
        cn_rec_media_t m;
        return cn_rec_media_decode(val, vlen, &m) == CN_OK && past(m.expires, now);
    }
    bool chunk = klen == CN__KEY_MEDIA_CHUNK;
    bool index = klen == CN__KEY_MEDIA_OWNER && key[0] == CN__MEDIA_OWNER;
    if ((chunk || index) && vlen >= 8)
        return past(cn_load_u64be(val), now);
    return false; /* not ours: keep */
}

int cn__media_owner_bytes(cn__batch_t *b, const uint8_t *user, uint64_t *out)
{
    uint8_t prefix[1 + CN__USER_KEY_LEN];
    uint64_t sum = 0, now = cn_now_ms();
    cn__iter_t it;
    prefix[0] = CN__MEDIA_OWNER;
    memcpy(prefix + 1, user, CN__USER_KEY_LEN);
    CN_TRY(cn__iter_open(b->s, b->wb, CN__CF_MEDIA, prefix, sizeof(prefix), CN_MEDIA_ID_LEN, NULL,
                         0, &it));
    for (; cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen;
        (void)cn__iter_key(&it, &klen);
        const uint8_t *v = cn__iter_value(&it, &vlen);
        if (v == NULL)
            break; /* did not open: cn__iter_close reports it */
        if (klen != CN__KEY_MEDIA_OWNER || vlen != CN__MEDIA_OWNER_VAL ||
            past(cn_load_u64be(v), now))
            continue;
        uint64_t size = cn_load_u64be(v + 8);
        sum = sum > UINT64_MAX - size ? UINT64_MAX : sum + size;
    }
    CN_TRY(cn__iter_close(&it));
    *out = sum;
    return CN_OK;
}

/** CN_ELIMIT when the owner's uploads cannot take size more bytes under quota. */
int cn__media_quota_check(cn__batch_t *b, const uint8_t *user, uint64_t size, uint64_t quota)
{
    uint64_t used;
    if (quota == 0)
        return CN_OK;
    CN_ENSURE(size <= quota, CN_ELIMIT);
    CN_TRY(cn__counter_get(b, user, CN__CTR_MBYTES, &used));
    if (used <= quota - size)
        return CN_OK;
    /* The counter may still count uploads that expired: recount. */
    CN_TRY(cn__media_owner_bytes(b, user, &used));
    CN_TRY(cn__counter_set(b, user, CN__CTR_MBYTES, used));
    CN_ENSURE(used <= quota - size, CN_ELIMIT);
    return CN_OK;
}

/** Records a new upload: its owner index entry and the owner's counter. */
int cn__media_quota_add(cn__batch_t *b, const uint8_t *user, const uint8_t *media_id, uint64_t size,
                        uint64_t expires)
{
    uint8_t key[CN__KEY_MEDIA_OWNER], val[CN__MEDIA_OWNER_VAL];
    uint64_t used;
    CN_TRY(cn__counter_get(b, user, CN__CTR_MBYTES, &used));
    used = used > UINT64_MAX - size ? UINT64_MAX : used + size;
    CN_TRY(cn__counter_set(b, user, CN__CTR_MBYTES, used));
    cn__key_media_owner(key, user, media_id);
    cn_store_u64be(val, expires);
    cn_store_u64be(val + 8, size);
    cn__batch_put_raw(b, CN__CF_MEDIA, key, sizeof(key), val, sizeof(val));
    return CN_OK;
}
