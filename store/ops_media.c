/*
 * Media ops: BEGIN, CHUNK, END of a resumable upload (DESIGN section 4).
 * The upload state (cn_rec_media_t) sits under media_id; chunks under
 * media_id ‖ u64be(offset), each value u64be(expires) ‖ bytes, appended
 * strictly in order (offset == stored), so the chunks of an upload tile
 * [0, stored) and a ranged read finds any offset with one SeekForPrev.
 *
 * The SHA-256 of the upload is kept as chunks arrive: the running
 * libsodium crypto_hash_sha256 state travels in the upload record
 * (serialized field by field, big-endian), so END only finalizes a copy
 * and the writer thread never hashes a whole upload at once. libsodium is
 * called directly: crypto/cn_crypto.h has no streaming SHA-256 wrapper.
 */
#include "store/store_internal.h"

#include <sodium.h>
#include <string.h>

/* The serialized state: state[8] as u32be, count as u64be, buf. */
_Static_assert(sizeof(((crypto_hash_sha256_state *)0)->state) == 32, "sha256 state words");
_Static_assert(sizeof(((crypto_hash_sha256_state *)0)->buf) == 64, "sha256 block buffer");
_Static_assert(32 + 8 + 64 == CN_MEDIA_HASH_STATE_LEN, "sha256 state size");

static void hash_save(const crypto_hash_sha256_state *st, uint8_t out[CN_MEDIA_HASH_STATE_LEN])
{
    for (size_t i = 0; i < 8; i++)
        cn_store_u32be(out + 4 * i, st->state[i]);
    cn_store_u64be(out + 32, st->count);
    memcpy(out + 40, st->buf, 64);
}

static void hash_load(crypto_hash_sha256_state *st, const uint8_t in[CN_MEDIA_HASH_STATE_LEN])
{
    for (size_t i = 0; i < 8; i++)
        st->state[i] = cn_load_u32be(in + 4 * i);
    st->count = cn_load_u64be(in + 32);
    memcpy(st->buf, in + 40, 64);
}

/** Reads an upload record through the batch: CN_OK, CN_ENOTFOUND or CN_EIO. */
static int media_load(cn__batch_t *b, const uint8_t *id, cn_rec_media_t *m)
{
    char *v;
    size_t vlen;
    CN_TRY(cn__batch_get(b, CN__CF_MEDIA, id, CN__KEY_MEDIA_INFO, &v, &vlen));
    int rc = cn_rec_media_decode((const uint8_t *)v, vlen, m);
    rocksdb_free(v);
    if (rc < 0) {
        cn_log_error("store_corrupt", "what=media rc=%s", cn_strerror(rc));
        return CN_EIO;
    }
    return CN_OK;
}

static bool expired(const cn_rec_media_t *m)
{
    return m->expires != 0 && m->expires <= cn_now_ms();
}

/** An upload the owner may write to: CN_ENOTFOUND (also expired) or CN_EAUTH. */
static int media_open(cn__batch_t *b, const uint8_t *id, const char *owner, cn_rec_media_t *m)
{
    CN_TRY(media_load(b, id, m));
    CN_ENSURE(!expired(m), CN_ENOTFOUND);
    CN_ENSURE(strcmp(m->owner, owner) == 0, CN_EAUTH);
    return CN_OK;
}

static int media_put(cn__batch_t *b, const uint8_t *id, const cn_rec_media_t *m)
{
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_media_encode(m, &b->v1));
    cn__batch_put(b, CN__CF_MEDIA, id, CN__KEY_MEDIA_INFO, &b->v1);
    return CN_OK;
}

/*
 * Chunks of an earlier upload under the same id can outlive its record
 * when compaction dropped the record first; a new upload must not read
 * them as its own. Normally there are none and this is one seek.
 */
static int drop_stale_chunks(cn__batch_t *b, const uint8_t *id)
{
    cn__iter_t it;
    CN_TRY(cn__iter_open(b->s, b->wb, CN__CF_MEDIA, id, CN_MEDIA_ID_LEN, 8, NULL, 0, &it));
    for (; cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen;
        const uint8_t *k = cn__iter_key(&it, &klen);
        if (klen == CN__KEY_MEDIA_CHUNK)
            cn__batch_delete(b, CN__CF_MEDIA, k, klen);
    }
    return cn__iter_close(&it);
}

static int begin_check(const cn_store_op_t *op)
{
    CN_ENSURE(cn__handle_ok(op->u.media_begin.owner), CN_EINVAL);
    CN_ENSURE(strnlen(op->u.media_begin.content_type, CN_MEDIA_TYPE_MAX + 1) <= CN_MEDIA_TYPE_MAX,
              CN_ETOOBIG);
    CN_ENSURE(op->u.media_begin.max_size == 0 ||
                  op->u.media_begin.size <= op->u.media_begin.max_size,
              CN_ETOOBIG);
    return CN_OK;
}

/** A known id: the same owner and size resume, anything else is taken. */
static int begin_resume(cn_store_op_t *op, const cn_rec_media_t *m)
{
    CN_ENSURE(!expired(m), CN_EEXIST);
    CN_ENSURE(strcmp(m->owner, op->u.media_begin.owner) == 0, CN_EEXIST);
    CN_ENSURE(m->size == op->u.media_begin.size, CN_EEXIST);
    op->u.media_begin.resumed = true;
    op->u.media_begin.stored = m->stored;
    op->u.media_begin.complete = m->complete;
    return CN_OK;
}

static void begin_record(const cn_store_op_t *op, cn_rec_media_t *m)
{
    crypto_hash_sha256_state st;
    uint64_t now = cn_now_ms(), ttl = op->u.media_begin.ttl_ms;
    memset(m, 0, sizeof(*m));
    memcpy(m->owner, op->u.media_begin.owner, sizeof(m->owner));
    memcpy(m->content_type, op->u.media_begin.content_type, sizeof(m->content_type));
    m->size = op->u.media_begin.size;
    m->created = now;
    m->expires = ttl == 0 ? 0 : (ttl > UINT64_MAX - now ? UINT64_MAX : now + ttl);
    crypto_hash_sha256_init(&st);
    hash_save(&st, m->hash_state);
}

int cn__op_media_begin(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.media_begin.media_id;
    uint8_t user[CN__USER_KEY_LEN];
    cn_rec_media_t m;
    char *v;
    size_t vlen;
    op->u.media_begin.stored = 0;
    op->u.media_begin.complete = op->u.media_begin.resumed = false;
    CN_TRY(begin_check(op));
    int rc = media_load(b, id, &m);
    if (rc == CN_OK)
        return begin_resume(op, &m);
    CN_ENSURE(rc == CN_ENOTFOUND, rc);
    const char *owner = op->u.media_begin.owner;
    CN_TRY(cn__batch_get(b, CN__CF_USERS, owner, strlen(owner), &v, &vlen));
    rocksdb_free(v);
    cn__key_user(user, owner);
    CN_TRY(cn__media_quota_check(b, user, op->u.media_begin.size, op->u.media_begin.quota_bytes));

    begin_record(op, &m);
    CN__APPLY(b, drop_stale_chunks(b, id));
    CN__APPLY(b, media_put(b, id, &m));
    CN__APPLY(b, cn__media_quota_add(b, user, id, m.size, m.expires));
    return CN_OK;
}

int cn__op_media_chunk(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.media_chunk.media_id;
    cn_slice_t d = op->u.media_chunk.data;
    uint8_t key[CN__KEY_MEDIA_CHUNK];
    crypto_hash_sha256_state st;
    cn_rec_media_t m;
    op->u.media_chunk.stored = 0;
    CN_ENSURE(cn__handle_ok(op->u.media_chunk.owner), CN_EINVAL);
    CN_ENSURE(d.len > 0 && d.base != NULL, CN_EINVAL);
    CN_ENSURE(d.len <= CN_MEDIA_CHUNK_MAX, CN_ETOOBIG);
    CN_TRY(media_open(b, id, op->u.media_chunk.owner, &m));
    op->u.media_chunk.stored = m.stored;
    CN_ENSURE(!m.complete && op->u.media_chunk.offset == m.stored, CN_ECONFLICT);
    CN_ENSURE(d.len <= m.size - m.stored, CN_ETOOBIG);

    hash_load(&st, m.hash_state);
    crypto_hash_sha256_update(&st, d.base, d.len);
    hash_save(&st, m.hash_state);
    cn_buf_reset(&b->v1);
    CN__APPLY(b, cn_buf_put_u64be(&b->v1, m.expires));
    CN__APPLY(b, cn_buf_append(&b->v1, d.base, d.len));
    cn__key_media_chunk(key, id, m.stored);
    cn__batch_put(b, CN__CF_MEDIA, key, sizeof(key), &b->v1);
    m.stored += d.len;
    CN__APPLY(b, media_put(b, id, &m));
    op->u.media_chunk.stored = m.stored;
    return CN_OK;
}

int cn__op_media_end(cn__batch_t *b, cn_store_op_t *op)
{
    const uint8_t *id = op->u.media_end.media_id;
    uint8_t digest[CN_MEDIA_SHA256_LEN];
    crypto_hash_sha256_state st;
    cn_rec_media_t m;
    op->u.media_end.stored = 0;
    CN_ENSURE(cn__handle_ok(op->u.media_end.owner), CN_EINVAL);
    CN_TRY(media_open(b, id, op->u.media_end.owner, &m));
    op->u.media_end.stored = m.stored;
    bool same = sodium_memcmp(m.sha256, op->u.media_end.sha256, CN_MEDIA_SHA256_LEN) == 0;
    if (m.complete) /* a retry: answered by the digest already checked */
        return same ? CN_OK : CN_EAUTH;
    CN_ENSURE(m.stored == m.size, CN_ECONFLICT);
    hash_load(&st, m.hash_state);
    crypto_hash_sha256_final(&st, digest);
    CN_ENSURE(sodium_memcmp(digest, op->u.media_end.sha256, CN_MEDIA_SHA256_LEN) == 0, CN_EAUTH);
    m.complete = true;
    memcpy(m.sha256, digest, sizeof(digest));
    memset(m.hash_state, 0, sizeof(m.hash_state));
    CN__APPLY(b, media_put(b, id, &m));
    return CN_OK;
}
