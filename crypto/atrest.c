/*
 * Sealing secrets at rest (the client's home): XChaCha20-Poly1305 under a
 * 32-byte key that comes from a key file or from Argon2id over a
 * passphrase. Blob, version 1:
 *   "CNSL" ‖ version u8 = 1 ‖ reserved (3 zero bytes) ‖ nonce (24)
 *   ‖ ciphertext ‖ tag (16)
 * associated data: "CNSL" ‖ version ‖ label ‖ NUL, so that a blob sealed for
 * one purpose (one file name) does not open as another.
 */
#include "crypto/cn_crypto.h"

#include <sodium.h>
#include <string.h>

#define BLOB_MAGIC "CNSL"
#define BLOB_VER   1
#define BLOB_HDR   8
#define NONCE      crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define LABEL_MAX  256

int cn_pwhash_derive(uint8_t key[CN_SEAL_KEY_LEN], const char *pass, size_t plen,
                     const uint8_t salt[CN_PWHASH_SALT_LEN], uint64_t opslimit, size_t memlimit)
{
    CN_ENSURE(key != NULL && pass != NULL && salt != NULL, CN_EINVAL);
    CN_ENSURE(opslimit >= crypto_pwhash_OPSLIMIT_MIN && opslimit <= crypto_pwhash_OPSLIMIT_MAX,
              CN_EINVAL);
    CN_ENSURE(memlimit >= crypto_pwhash_MEMLIMIT_MIN, CN_EINVAL);
    CN_ENSURE(memlimit <= crypto_pwhash_MEMLIMIT_SENSITIVE * 4ull, CN_EINVAL);
    if (crypto_pwhash(key, CN_SEAL_KEY_LEN, pass, plen, salt, opslimit, memlimit,
                      crypto_pwhash_ALG_ARGON2ID13) != 0)
        return CN_ENOMEM; /* libsodium's only failure: not enough memory */
    return CN_OK;
}

static int blob_ad(const char *label, uint8_t *ad, size_t *adlen)
{
    size_t l = strnlen(label, LABEL_MAX + 1);
    CN_ENSURE(l <= LABEL_MAX, CN_EINVAL);
    memcpy(ad, BLOB_MAGIC, 4);
    ad[4] = BLOB_VER;
    memcpy(ad + 5, label, l);
    ad[5 + l] = 0;
    *adlen = 6 + l;
    return CN_OK;
}

int cn_seal_blob(const uint8_t key[CN_SEAL_KEY_LEN], const char *label, const void *pt, size_t n,
                 cn_buf_t *out)
{
    uint8_t ad[6 + LABEL_MAX];
    size_t adlen;
    CN_ENSURE(key != NULL && label != NULL && out != NULL && (pt != NULL || n == 0), CN_EINVAL);
    CN_ENSURE(n <= (1u << 30), CN_ETOOBIG);
    CN_TRY(blob_ad(label, ad, &adlen));
    CN_TRY(cn_buf_reserve(out, BLOB_HDR + NONCE + n + crypto_aead_xchacha20poly1305_ietf_ABYTES));
    uint8_t *w = out->data + out->len;
    memcpy(w, BLOB_MAGIC, 4);
    w[4] = BLOB_VER;
    w[5] = w[6] = w[7] = 0;
    randombytes_buf(w + BLOB_HDR, NONCE);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(w + BLOB_HDR + NONCE, &clen, pt, n, ad, adlen, NULL,
                                               w + BLOB_HDR, key);
    out->len += BLOB_HDR + NONCE + (size_t)clen;
    return CN_OK;
}

int cn_open_blob(const uint8_t key[CN_SEAL_KEY_LEN], const char *label, const uint8_t *p, size_t n,
                 cn_buf_t *out)
{
    uint8_t ad[6 + LABEL_MAX];
    size_t adlen;
    CN_ENSURE(key != NULL && label != NULL && p != NULL && out != NULL, CN_EINVAL);
    CN_ENSURE(n >= BLOB_HDR + NONCE + crypto_aead_xchacha20poly1305_ietf_ABYTES, CN_EINVAL);
    CN_ENSURE(memcmp(p, BLOB_MAGIC, 4) == 0, CN_EINVAL);
    CN_ENSURE(p[4] == BLOB_VER, CN_EVERSION);
    CN_ENSURE(p[5] == 0 && p[6] == 0 && p[7] == 0, CN_EINVAL);
    CN_TRY(blob_ad(label, ad, &adlen));
    cn_buf_reset(out);
    size_t clen = n - BLOB_HDR - NONCE;
    CN_TRY(cn_buf_reserve(out, clen));
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out->data, &plen, NULL, p + BLOB_HDR + NONCE,
                                                   clen, ad, adlen, p + BLOB_HDR, key) != 0)
        return CN_EAUTH;
    out->len = (size_t)plen;
    return CN_OK;
}
