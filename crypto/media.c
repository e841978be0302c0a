/*
 * Media encryption: crypto_secretstream_xchacha20poly1305 under a fresh
 * random key, CN_MEDIA_CHUNK plaintext bytes per stream message, the last
 * one tagged FINAL (so truncation is detected), and a SHA-256 digest over
 * the whole ciphertext, which the node checks at MediaEnd and the
 * receiver checks before decrypting.
 *
 * Ciphertext: secretstream header (24) ‖ chunk_1 ‖ ... ‖ chunk_k, each
 * chunk = its plaintext length + 17 bytes; an empty file is one empty
 * FINAL chunk.
 */
#include "crypto/cn_crypto.h"

#include <sodium.h>
#include <string.h>

#define HDR   crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYTE crypto_secretstream_xchacha20poly1305_ABYTES

int cn_media_encrypt(const void *pt, size_t n, uint8_t key[CN_MEDIA_KEY_LEN],
                     uint8_t digest[CN_MEDIA_DIGEST_LEN], cn_buf_t *out)
{
    CN_ENSURE(key != NULL && digest != NULL && out != NULL && (pt != NULL || n == 0), CN_EINVAL);
    CN_ENSURE(n <= CN_MEDIA_MAX, CN_ETOOBIG);
    size_t chunks = n == 0 ? 1 : (n + CN_MEDIA_CHUNK - 1) / CN_MEDIA_CHUNK;
    size_t start = out->len;
    CN_TRY(cn_buf_reserve(out, HDR + n + chunks * ABYTE));
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_secretstream_xchacha20poly1305_keygen(key);
    uint8_t *w = out->data + start;
    crypto_secretstream_xchacha20poly1305_init_push(&st, w, key);
    w += HDR;
    const uint8_t *p = pt;
    for (size_t i = 0; i < chunks; i++) {
        size_t len = CN_MIN((size_t)CN_MEDIA_CHUNK, n - i * CN_MEDIA_CHUNK);
        uint8_t tag = i + 1 == chunks ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(&st, w, &clen, len ? p + i * CN_MEDIA_CHUNK : p,
                                                   len, NULL, 0, tag);
        w += clen;
    }
    sodium_memzero(&st, sizeof(st));
    out->len = (size_t)(w - out->data);
    crypto_hash_sha256(digest, out->data + start, out->len - start);
    return CN_OK;
}

int cn_media_decrypt(const uint8_t *ct, size_t n, const uint8_t key[CN_MEDIA_KEY_LEN],
                     const uint8_t digest[CN_MEDIA_DIGEST_LEN], cn_buf_t *out)
{
    CN_ENSURE(ct != NULL && key != NULL && digest != NULL && out != NULL, CN_EINVAL);
    CN_ENSURE(n >= HDR + ABYTE, CN_EINVAL);
    CN_ENSURE(n <= HDR + CN_MEDIA_MAX + (CN_MEDIA_MAX / CN_MEDIA_CHUNK + 1) * ABYTE, CN_ETOOBIG);
    uint8_t h[CN_MEDIA_DIGEST_LEN];
    crypto_hash_sha256(h, ct, n);
    CN_ENSURE(sodium_memcmp(h, digest, sizeof(h)) == 0, CN_EAUTH);
    crypto_secretstream_xchacha20poly1305_state st;
    CN_ENSURE(crypto_secretstream_xchacha20poly1305_init_pull(&st, ct, key) == 0, CN_EAUTH);
    size_t at = HDR, mark = out->len;
    int rc = cn_buf_reserve(out, n);
    bool final = false;
    while (rc == CN_OK && at < n) {
        size_t len = CN_MIN((size_t)CN_MEDIA_CHUNK + ABYTE, n - at);
        unsigned long long plen = 0;
        uint8_t tag = 0;
        if (final || len < ABYTE ||
            crypto_secretstream_xchacha20poly1305_pull(&st, out->data + out->len, &plen, &tag,
                                                       ct + at, len, NULL, 0) != 0) {
            rc = CN_EAUTH;
            break;
        }
        /* Only the last chunk may be short or FINAL. */
        final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        if (tag != 0 && !final)
            rc = CN_EAUTH;
        out->len += (size_t)plen;
        at += len;
    }
    if (rc == CN_OK && !final)
        rc = CN_EAUTH; /* truncated: the FINAL chunk is missing */
    sodium_memzero(&st, sizeof(st));
    if (rc < 0) {
        sodium_memzero(out->data + mark, out->cap - mark);
        out->len = mark;
    }
    return rc;
}
