/*
 * Synchronous reads of groups and media (any thread, committed data only).
 */
#include "store/store_internal.h"

#include <string.h>

static int corrupt(const char *what, int rc)
{
    cn_log_error("store_corrupt", "what=%s rc=%s", what, cn_strerror(rc));
    return CN_EIO;
}

static int group_get_unlocked(cn_store_t *s, const uint8_t group_id[CN_GROUP_ID_LEN],
                              cn_rec_group_t *out)
{
    char *v;
    size_t vlen;
    CN_ENSURE(s != NULL && group_id != NULL && out != NULL, CN_EINVAL);
    CN_TRY(cn__db_get(s, CN__CF_GROUPS, group_id, CN_GROUP_ID_LEN, &v, &vlen));
    int rc = cn_rec_group_decode((const uint8_t *)v, vlen, out);
    rocksdb_free(v);
    return rc < 0 ? corrupt("group", rc) : CN_OK;
}

int cn_store_group_get(cn_store_t *s, const uint8_t group_id[CN_GROUP_ID_LEN], cn_rec_group_t *out)
{
    cn__db_read_lock(s);
    int rc = group_get_unlocked(s, group_id, out);
    cn__db_read_unlock(s);
    return rc;
}

static int media_info_unlocked(cn_store_t *s, const uint8_t media_id[CN_MEDIA_ID_LEN],
                               cn_rec_media_t *out)
{
    char *v;
    size_t vlen;
    CN_ENSURE(s != NULL && media_id != NULL && out != NULL, CN_EINVAL);
    CN_TRY(cn__db_get(s, CN__CF_MEDIA, media_id, CN__KEY_MEDIA_INFO, &v, &vlen));
    int rc = cn_rec_media_decode((const uint8_t *)v, vlen, out);
    rocksdb_free(v);
    if (rc < 0)
        return corrupt("media", rc);
    /* Expired: gone for readers even before compaction drops it. */
    CN_ENSURE(out->expires == 0 || out->expires > cn_now_ms(), CN_ENOTFOUND);
    return CN_OK;
}

int cn_store_media_info(cn_store_t *s, const uint8_t media_id[CN_MEDIA_ID_LEN], cn_rec_media_t *out)
{
    cn__db_read_lock(s);
    int rc = media_info_unlocked(s, media_id, out);
    cn__db_read_unlock(s);
    return rc;
}

/**
 * Copies [pos, end) from the chunks, starting at the chunk that holds pos
 * (the last one at or below it). Chunks tile the upload, so each must
 * start where the previous one ended; a gap is a missing chunk (CN_EIO).
 */
static int copy_range(cn_store_t *s, const uint8_t *id, uint64_t pos, uint64_t end, cn_buf_t *out)
{
    uint8_t seek[CN__KEY_MEDIA_CHUNK];
    cn__iter_t it;
    int rc = CN_OK;
    cn__key_media_chunk(seek, id, pos);
    CN_TRY(cn__iter_open_rev(s, CN__CF_MEDIA, id, CN_MEDIA_ID_LEN, 8, seek, sizeof(seek), &it));
    /* Back on the chunk that holds pos; forward from there. */
    for (bool first = true; pos < end && rc == CN_OK; first = false) {
        size_t klen, vlen;
        if (!first)
            cn__iter_next(&it);
        if (!cn__iter_valid(&it)) {
            rc = CN_EIO;
            break;
        }
        const uint8_t *k = cn__iter_key(&it, &klen);
        if (klen != CN__KEY_MEDIA_CHUNK)
            continue;
        const uint8_t *v = cn__iter_value(&it, &vlen);
        if (v == NULL) {
            rc = CN_EAUTH; /* logged by the open */
            break;
        }
        uint64_t off = cn_load_u64be(k + CN_MEDIA_ID_LEN), len = vlen >= 8 ? vlen - 8 : 0;
        if (off > pos || off + len <= pos) {
            rc = CN_EIO; /* a gap: the chunk holding pos is missing */
            break;
        }
        size_t n = (size_t)(CN_MIN(end, off + len) - pos);
        rc = cn_buf_append(out, v + 8 + (pos - off), n);
        pos += n;
    }
    int crc = cn__iter_close(&it);
    if (rc == CN_EIO)
        cn_log_error("store_corrupt", "what=media_chunk");
    return rc < 0 ? rc : crc;
}

static int media_read_unlocked(cn_store_t *s, const uint8_t media_id[CN_MEDIA_ID_LEN],
                               uint64_t offset, uint32_t len, cn_buf_t *out)
{
    cn_rec_media_t m;
    CN_ENSURE(out != NULL, CN_EINVAL);
    CN_TRY(cn_store_media_info(s, media_id, &m));
    CN_ENSURE(m.complete, CN_EAGAIN);
    CN_ENSURE(offset <= m.size, CN_EINVAL);
    CN_ENSURE(len <= CN_MEDIA_READ_MAX, CN_ETOOBIG);
    uint64_t end = offset + CN_MIN((uint64_t)len, m.size - offset);
    if (end == offset)
        return 0;
    size_t kept = out->len - out->rpos;
    int rc = copy_range(s, media_id, offset, end, out);
    if (rc < 0) {
        out->len = out->rpos + kept; /* as it was (appends may compact) */
        return rc;
    }
    return (int)(end - offset);
}

int cn_store_media_read(cn_store_t *s, const uint8_t media_id[CN_MEDIA_ID_LEN], uint64_t offset,
                        uint32_t len, cn_buf_t *out)
{
    cn__db_read_lock(s);
    int rc = media_read_unlocked(s, media_id, offset, len, out);
    cn__db_read_unlock(s);
    return rc;
}
