/*
 * Key builders, meta name rules and prefix iterators.
 */
#include "store/store_internal.h"

#include <string.h>

void cn__key_mailbox(uint8_t out[CN__KEY_MAILBOX], const uint8_t *device, uint64_t seq)
{
    memcpy(out, device, CN_DEVICE_ID_LEN);
    cn_store_u64be(out + CN_DEVICE_ID_LEN, seq);
}

void cn__key_prekey(uint8_t out[CN__KEY_PREKEY], const uint8_t *device, uint8_t kind,
                    uint64_t order)
{
    memcpy(out, device, CN_DEVICE_ID_LEN);
    out[CN_DEVICE_ID_LEN] = kind;
    cn_store_u64be(out + CN_DEVICE_ID_LEN + 1, order);
}

/* The message id first: ids are random, so the memtable's key comparisons
 * end within the first bytes, where device first meant comparing the
 * sender's 32 bytes on every step of every insert (half of what a Send cost
 * the store, measured with storebench). Nothing iterates dedupe by sender. */
void cn__key_dedupe(uint8_t out[CN__KEY_DEDUPE], const uint8_t *from_device,
                    const uint8_t *message_id)
{
    memcpy(out, message_id, CN_MESSAGE_ID_LEN);
    memcpy(out + CN_MESSAGE_ID_LEN, from_device, CN_DEVICE_ID_LEN);
}

void cn__key_counter(uint8_t out[CN__META_CTR_LEN], enum cn__ctr which, const uint8_t *device)
{
    memcpy(out, which == CN__CTR_MAILBOX ? CN__META_MSEQ : CN__META_OSEQ, 5);
    memcpy(out + 5, device, CN_DEVICE_ID_LEN);
}

size_t cn__key_counter_any(uint8_t out[CN__META_CTR_MAX], enum cn__ctr which, const uint8_t *device)
{
    static const char *const prefixes[CN__CTR_COUNT] = {CN__META_MSEQ, CN__META_OSEQ,
                                                        CN__META_QBYTES, CN__META_MBYTES};
    size_t plen = strlen(prefixes[which]);
    memcpy(out, prefixes[which], plen);
    memcpy(out + plen, device, CN_DEVICE_ID_LEN);
    return plen + CN_DEVICE_ID_LEN;
}

void cn__key_push_pending(uint8_t out[CN__KEY_PUSH_PENDING], const uint8_t *device)
{
    out[0] = CN__PUSH_PENDING;
    memcpy(out + 1, device, CN_DEVICE_ID_LEN);
}

void cn__key_user(uint8_t out[CN__USER_KEY_LEN], const char *handle)
{
    size_t n = strnlen(handle, CN__USER_KEY_LEN);
    memset(out, 0, CN__USER_KEY_LEN);
    memcpy(out, handle, n);
}

void cn__key_media_chunk(uint8_t out[CN__KEY_MEDIA_CHUNK], const uint8_t *media_id, uint64_t offset)
{
    memcpy(out, media_id, CN_MEDIA_ID_LEN);
    cn_store_u64be(out + CN_MEDIA_ID_LEN, offset);
}

void cn__key_media_owner(uint8_t out[CN__KEY_MEDIA_OWNER], const uint8_t *user,
                         const uint8_t *media_id)
{
    out[0] = CN__MEDIA_OWNER;
    memcpy(out + 1, user, CN__USER_KEY_LEN);
    memcpy(out + 1 + CN__USER_KEY_LEN, media_id, CN_MEDIA_ID_LEN);
}

void cn__key_hist_t(uint8_t out[CN__KEY_HIST_T], const uint8_t *user, const uint8_t *tag,
                    uint64_t time, const uint8_t *id)
{
    out[0] = CN__HIST_THREAD;
    memcpy(out + 1, user, CN__USER_KEY_LEN);
    memcpy(out + 1 + CN__USER_KEY_LEN, tag, CN_THREAD_TAG_LEN);
    cn_store_u64be(out + 1 + CN__USER_KEY_LEN + CN_THREAD_TAG_LEN, time);
    memcpy(out + CN__KEY_HIST_T - CN_HISTORY_ID_LEN, id, CN_HISTORY_ID_LEN);
}

void cn__key_hist_u(uint8_t out[CN__KEY_HIST_U], const uint8_t *user, uint64_t time,
                    const uint8_t *id)
{
    out[0] = CN__HIST_TIME;
    memcpy(out + 1, user, CN__USER_KEY_LEN);
    cn_store_u64be(out + 1 + CN__USER_KEY_LEN, time);
    memcpy(out + 1 + CN__USER_KEY_LEN + 8, id, CN_HISTORY_ID_LEN);
}

void cn__key_hist_l(uint8_t out[CN__KEY_HIST_L], const uint8_t *user, const uint8_t *tag)
{
    out[0] = CN__HIST_LAST;
    memcpy(out + 1, user, CN__USER_KEY_LEN);
    memcpy(out + 1 + CN__USER_KEY_LEN, tag, CN_THREAD_TAG_LEN);
}

/* The names the writer owns in meta; callers can neither write nor list them. */
static const char *const meta_reserved[] = {CN__META_MSEQ,    CN__META_OSEQ,   CN__META_QBYTES,
                                            CN__META_PUSHSEQ, CN__META_MBYTES, CN__META_KEYRING,
                                            CN__META_CJOUR,   CN__META_RJOUR};

bool cn__meta_reserved(const char *name, size_t len)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(meta_reserved); i++) {
        size_t plen = strlen(meta_reserved[i]);
        if (len >= plen && memcmp(name, meta_reserved[i], plen) == 0)
            return true;
    }
    return false;
}

int cn__meta_name_ok(const char *name)
{
    CN_ENSURE(name != NULL, CN_EINVAL);
    size_t n = strnlen(name, CN__META_NAME_MAX + 1);
    CN_ENSURE(n > 0 && n <= CN__META_NAME_MAX, CN_EINVAL);
    CN_ENSURE(!cn__meta_reserved(name, n), CN_EINVAL);
    return CN_OK;
}

bool cn__handle_ok(const char *handle)
{
    char norm[CN_HANDLE_MAX + 1];
    if (handle == NULL || strnlen(handle, CN_HANDLE_MAX + 1) > CN_HANDLE_MAX)
        return false;
    return cn_handle_normalize(handle, norm) == CN_OK && strcmp(norm, handle) == 0;
}

/*
 * Both bounds are set: prefix ‖ suffix keys sort at or above the prefix and
 * below prefix ‖ 0xff × (suffix + 1), and every key with a greater prefix
 * sorts above that. The bounds live in *it, which must not move while open.
 */
static int iter_setup(cn_store_t *s, rocksdb_writebatch_wi_t *wb, enum cn__cf cf,
                      const uint8_t *prefix, size_t plen, size_t suffix_len, size_t seeklen,
                      cn__iter_t *it)
{
    memset(it, 0, sizeof(*it));
    CN_ENSURE(plen + suffix_len + 1 <= CN__KEY_MAX && seeklen <= CN__KEY_MAX, CN_EINVAL);
    it->s = s;
    it->cf = cf;
    cn_buf_init(&it->plain);
    memcpy(it->prefix, prefix, plen);
    it->plen = plen;
    memcpy(it->bound, prefix, plen);
    memset(it->bound + plen, 0xff, suffix_len + 1);
    it->blen = plen + suffix_len + 1;
    it->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(it->ro, (const char *)it->bound, it->blen);
    rocksdb_readoptions_set_iterate_lower_bound(it->ro, (const char *)it->prefix, plen);
    /* A mailbox is read once, in order, then acked and deleted: its
     * blocks would only push hot ones (devices, users, dedupe) out of the
     * block cache, and on a cache that still grows each new block costs
     * fresh pages (docs/PERFORMANCE-LOG.md, fifteenth session). */
    if (cf == CN__CF_MAILBOX)
        rocksdb_readoptions_set_fill_cache(it->ro, 0);
    it->it = rocksdb_create_iterator_cf(s->db, it->ro, s->cf[cf]);
    if (wb != NULL) {
        /* Takes over the base iterator (the C API frees its wrapper). */
        it->it = rocksdb_writebatch_wi_create_iterator_with_base_cf(wb, it->it, s->cf[cf]);
    }
    return CN_OK;
}

int cn__iter_open(cn_store_t *s, rocksdb_writebatch_wi_t *wb, enum cn__cf cf, const uint8_t *prefix,
                  size_t plen, size_t suffix_len, const uint8_t *seek, size_t seeklen,
                  cn__iter_t *it)
{
    CN_TRY(iter_setup(s, wb, cf, prefix, plen, suffix_len, seeklen, it));
    if (seek != NULL)
        rocksdb_iter_seek(it->it, (const char *)seek, seeklen);
    else
        rocksdb_iter_seek(it->it, (const char *)prefix, plen);
    return CN_OK;
}

int cn__iter_open_rev(cn_store_t *s, enum cn__cf cf, const uint8_t *prefix, size_t plen,
                      size_t suffix_len, const uint8_t *seek, size_t seeklen, cn__iter_t *it)
{
    CN_TRY(iter_setup(s, NULL, cf, prefix, plen, suffix_len, seeklen, it));
    /* The upper bound itself sorts above every key of the prefix. */
    if (seek != NULL)
        rocksdb_iter_seek_for_prev(it->it, (const char *)seek, seeklen);
    else
        rocksdb_iter_seek_for_prev(it->it, (const char *)it->bound, it->blen);
    return CN_OK;
}

bool cn__iter_valid(const cn__iter_t *it)
{
    size_t klen;
    if (it->rc < 0 || !rocksdb_iter_valid(it->it))
        return false;
    /* The batch side of an iterator-with-base ignores the upper bound. */
    const char *k = rocksdb_iter_key(it->it, &klen);
    return klen >= it->plen && memcmp(k, it->prefix, it->plen) == 0;
}

const uint8_t *cn__iter_key(const cn__iter_t *it, size_t *len)
{
    return (const uint8_t *)rocksdb_iter_key(it->it, len);
}

/* Sealed values are opened into the iterator's own buffer, so the result
 * lives until the next call, like RocksDB's own value. */
const uint8_t *cn__iter_value(cn__iter_t *it, size_t *len)
{
    size_t klen, n;
    const uint8_t *out;
    const char *k = rocksdb_iter_key(it->it, &klen);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it->it, &n);
    int rc = cn__open_copy(it->s, it->cf, k, klen, v, n, &it->plain, &out, len);
    if (rc < 0) {
        it->rc = rc;
        *len = 0;
        return NULL;
    }
    return out;
}

size_t cn__iter_value_len(const cn__iter_t *it)
{
    size_t n;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it->it, &n);
    return cn__plain_len(it->s, it->cf, v, n);
}

void cn__iter_next(cn__iter_t *it)
{
    rocksdb_iter_next(it->it);
}

void cn__iter_prev(cn__iter_t *it)
{
    rocksdb_iter_prev(it->it);
}

int cn__iter_close(cn__iter_t *it)
{
    int rc = CN_OK;
    if (it->it) {
        char *err = NULL;
        rocksdb_iter_get_error(it->it, &err);
        rc = cn__rdb_err(err, "iterate");
        rocksdb_iter_destroy(it->it);
    }
    if (it->ro)
        rocksdb_readoptions_destroy(it->ro);
    cn_buf_dispose(&it->plain);
    if (rc == CN_OK)
        rc = it->rc; /* a value that did not open */
    memset(it, 0, sizeof(*it));
    return rc;
}
