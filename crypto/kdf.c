/*
 * Primitives of the E2E protocol: X25519 with the all-zero check,
 * HMAC-SHA256 and HKDF (RFC 5869) on libsodium's crypto_auth_hmacsha256,
 * and the Ed25519 -> X25519 maps used for the X3DH identity DH.
 */
#include "crypto/cn_crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int cn_x25519(uint8_t out[CN_X25519_LEN], const uint8_t sk[CN_X25519_LEN],
              const uint8_t pk[CN_X25519_LEN])
{
    CN_ENSURE(out != NULL && sk != NULL && pk != NULL, CN_EINVAL);
    /* libsodium fails on an all-zero output (RFC 7748 6.1 check). */
    CN_ENSURE(crypto_scalarmult(out, sk, pk) == 0, CN_EAUTH);
    return CN_OK;
}

int cn_hmac_sha256(uint8_t out[CN_SHA256_LEN], const void *key, size_t klen, const void *msg,
                   size_t mlen)
{
    crypto_auth_hmacsha256_state st;
    CN_ENSURE(out != NULL && (key != NULL || klen == 0) && (msg != NULL || mlen == 0), CN_EINVAL);
    static const uint8_t empty[1] = {0};
    if (crypto_auth_hmacsha256_init(&st, key ? key : empty, klen) != 0 ||
        crypto_auth_hmacsha256_update(&st, msg ? msg : empty, mlen) != 0 ||
        crypto_auth_hmacsha256_final(&st, out) != 0) {
        sodium_memzero(&st, sizeof(st));
        return CN_EINTERNAL;
    }
    sodium_memzero(&st, sizeof(st));
    return CN_OK;
}

int cn_hkdf_extract(uint8_t prk[CN_SHA256_LEN], const void *salt, size_t slen, const void *ikm,
                    size_t ilen)
{
    /* RFC 5869 2.2: a missing salt is HashLen zero bytes. */
    static const uint8_t zeros[CN_SHA256_LEN] = {0};
    if (salt == NULL || slen == 0) {
        salt = zeros;
        slen = sizeof(zeros);
    }
    return cn_hmac_sha256(prk, salt, slen, ikm, ilen);
}

int cn_hkdf_expand(void *out, size_t olen, const uint8_t *prk, size_t prk_len, const void *info,
                   size_t ilen)
{
    CN_ENSURE(out != NULL && prk != NULL && prk_len >= CN_SHA256_LEN, CN_EINVAL);
    CN_ENSURE(olen <= CN_HKDF_MAX, CN_ETOOBIG);
    CN_ENSURE(info != NULL || ilen == 0, CN_EINVAL);
    static const uint8_t empty[1] = {0};
    uint8_t t[CN_SHA256_LEN];
    size_t tlen = 0, done = 0;
    int rc = CN_OK;
    /* RFC 5869 2.3: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i). */
    for (uint8_t i = 1; done < olen; i++) {
        crypto_auth_hmacsha256_state st;
        if (crypto_auth_hmacsha256_init(&st, prk, prk_len) != 0 ||
            crypto_auth_hmacsha256_update(&st, t, tlen) != 0 ||
            crypto_auth_hmacsha256_update(&st, info ? info : empty, ilen) != 0 ||
            crypto_auth_hmacsha256_update(&st, &i, 1) != 0 ||
            crypto_auth_hmacsha256_final(&st, t) != 0)
            rc = CN_EINTERNAL;
        sodium_memzero(&st, sizeof(st));
        if (rc < 0)
            break;
        tlen = CN_SHA256_LEN;
        size_t n = CN_MIN(olen - done, (size_t)CN_SHA256_LEN);
        memcpy((uint8_t *)out + done, t, n);
        done += n;
    }
    sodium_memzero(t, sizeof(t));
    return rc;
}

int cn_hkdf(void *out, size_t olen, const void *salt, size_t slen, const void *ikm, size_t ilen,
            const void *info, size_t info_len)
{
    uint8_t prk[CN_SHA256_LEN];
    int rc = cn_hkdf_extract(prk, salt, slen, ikm, ilen);
    if (rc == CN_OK)
        rc = cn_hkdf_expand(out, olen, prk, sizeof(prk), info, info_len);
    sodium_memzero(prk, sizeof(prk));
    return rc;
}

int cn_ed25519_pk_to_x25519(uint8_t out[CN_X25519_LEN], const uint8_t pk[CN_DEVICE_ID_LEN])
{
    CN_ENSURE(out != NULL && pk != NULL, CN_EINVAL);
    CN_ENSURE(crypto_sign_ed25519_pk_to_curve25519(out, pk) == 0, CN_EINVAL);
    return CN_OK;
}

int cn_identity_x25519_sk(const cn_identity_t *id, uint8_t sk[CN_X25519_LEN])
{
    CN_ENSURE(id != NULL && id->sk != NULL && sk != NULL, CN_EINVAL);
    CN_ENSURE(crypto_sign_ed25519_sk_to_curve25519(sk, id->sk) == 0, CN_EINTERNAL);
    return CN_OK;
}

void cn_buf_wipe(cn_buf_t *b)
{
    if (b == NULL)
        return;
    if (b->data != NULL)
        sodium_memzero(b->data, b->cap);
    cn_buf_dispose(b);
}

void cn_table_key_new(uint8_t key[CN_TABLE_KEY_LEN])
{
    _Static_assert(CN_TABLE_KEY_LEN == crypto_shorthash_KEYBYTES, "SipHash key size");
    crypto_shorthash_keygen(key);
}

uint64_t cn_table_hash(const uint8_t key[CN_TABLE_KEY_LEN], const void *p, size_t n)
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, p, n, key);
    memcpy(&h, out, sizeof(h));
    return h;
}
