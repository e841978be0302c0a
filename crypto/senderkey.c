/*
 * Group sender keys (Signal's "sender keys"): each member has a chain key
 * and an Ed25519 signing key, distributed to the other members over the
 * pairwise Double Ratchet sessions. Each group message uses the next
 * message key of the chain (KDF_CK as in the ratchet) and is signed, so a
 * member who knows the chain key still cannot forge another's messages.
 *
 * Distribution message, version 1: ver u8 = 1 ‖ key_id u32 ‖ iteration u32
 *   ‖ chain key (32) ‖ signing public key (32)
 * Group message, version 1: ver u8 = 1 ‖ key_id u32 ‖ iteration u32
 *   ‖ XChaCha20-Poly1305 ciphertext ‖ tag (AD = the 9 header bytes)
 *   ‖ Ed25519 signature (64) over everything before it
 * State, version 1: "CNSK" ‖ ver u8 = 1 ‖ own u8 ‖ reserved u16 = 0
 *   ‖ key_id u32 ‖ iteration u32 ‖ chain key ‖ signing pk ‖ [signing sk (64)
 *   when own] ‖ nskipped u32 ‖ nskipped × (iteration u32 ‖ message key)
 */
#include "crypto/ratchet_int.h"

#include <sodium.h>
#include <string.h>

#define SK_INFO    "chatnode sender key v1"
#define DIST_VER   1
#define DIST_LEN   (1 + 4 + 4 + 32 + 32)
#define MSG_HDR    (1 + 4 + 4)
#define STATE_MAG  "CNSK"
#define SK_ENTRY   (4 + 32)
#define SIG_SK_LEN crypto_sign_SECRETKEYBYTES

typedef struct sk_skipped {
    uint32_t it;
    uint8_t mk[CN__KEY];
} sk_skipped_t;

struct cn_senderkey {
    uint32_t key_id, iteration;
    uint8_t ck[CN__KEY];
    uint8_t sig_pk[crypto_sign_PUBLICKEYBYTES];
    bool own;
    uint8_t sig_sk[SIG_SK_LEN];
    uint32_t nskipped;
    sk_skipped_t skipped[CN_SENDERKEY_MAX_SKIP];
};

static int sk_alloc(cn_senderkey_t **out)
{
    *out = sodium_malloc(sizeof(**out));
    CN_ENSURE(*out != NULL, CN_ENOMEM);
    memset(*out, 0, sizeof(**out));
    return CN_OK;
}

void cn_senderkey_free(cn_senderkey_t *k)
{
    sodium_free(k);
}

int cn_senderkey_generate(uint32_t key_id, cn_senderkey_t **out)
{
    CN_TRY(sk_alloc(out));
    cn_senderkey_t *k = *out;
    k->key_id = key_id;
    k->own = true;
    randombytes_buf(k->ck, sizeof(k->ck));
    crypto_sign_keypair(k->sig_pk, k->sig_sk);
    return CN_OK;
}

int cn_senderkey_distribution(const cn_senderkey_t *k, cn_buf_t *out)
{
    CN_ENSURE(k != NULL && out != NULL, CN_EINVAL);
    CN_TRY(cn_buf_reserve(out, DIST_LEN));
    CN_TRY(cn_buf_put_u8(out, DIST_VER));
    CN_TRY(cn_buf_put_u32be(out, k->key_id));
    CN_TRY(cn_buf_put_u32be(out, k->iteration));
    CN_TRY(cn_buf_append(out, k->ck, CN__KEY));
    return cn_buf_append(out, k->sig_pk, sizeof(k->sig_pk));
}

int cn_senderkey_from_distribution(const uint8_t *p, size_t n, cn_senderkey_t **out)
{
    cn_cursor_t c;
    uint8_t ver;
    CN_ENSURE(p != NULL && out != NULL, CN_EINVAL);
    *out = NULL;
    CN_ENSURE(n == DIST_LEN, CN_EINVAL);
    cn_cursor_init(&c, p, n);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == DIST_VER, CN_EVERSION);
    cn_senderkey_t *k;
    CN_TRY(sk_alloc(&k));
    if (cn_cursor_u32be(&c, &k->key_id) != CN_OK || cn_cursor_u32be(&c, &k->iteration) != CN_OK ||
        cn_cursor_copy(&c, k->ck, CN__KEY) != CN_OK ||
        cn_cursor_copy(&c, k->sig_pk, sizeof(k->sig_pk)) != CN_OK) {
        cn_senderkey_free(k);
        return CN_EINVAL;
    }
    *out = k;
    return CN_OK;
}

typedef struct sk_keys {
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
} sk_keys_t;

static int expand(const uint8_t mk[CN__KEY], sk_keys_t *o)
{
    return cn_hkdf(o, sizeof(*o), NULL, 0, mk, CN__KEY, SK_INFO, strlen(SK_INFO));
}

int cn_senderkey_encrypt(cn_senderkey_t *k, const void *pt, size_t n, cn_buf_t *out)
{
    CN_ENSURE(k != NULL && out != NULL && (pt != NULL || n == 0), CN_EINVAL);
    CN_ENSURE(k->own, CN_EINVAL);
    CN_ENSURE(n <= CN_E2E_PLAINTEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(k->iteration < UINT32_MAX, CN_ELIMIT);
    size_t start = out->len;
    size_t total = MSG_HDR + n + CN_E2E_TAG_LEN + crypto_sign_BYTES;
    CN_TRY(cn_buf_reserve(out, total));
    uint8_t *h = out->data + start;
    h[0] = DIST_VER;
    cn_store_u32be(h + 1, k->key_id);
    cn_store_u32be(h + 5, k->iteration);
    uint8_t mk[CN__KEY];
    sk_keys_t ks;
    int rc = cn__kdf_ck(k->ck, mk);
    if (rc == CN_OK)
        rc = expand(mk, &ks);
    if (rc == CN_OK) {
        k->iteration++;
        unsigned long long clen = 0;
        crypto_aead_xchacha20poly1305_ietf_encrypt(h + MSG_HDR, &clen, pt, n, h, MSG_HDR, NULL,
                                                   ks.nonce, ks.key);
        size_t body = MSG_HDR + (size_t)clen;
        crypto_sign_detached(h + body, NULL, h, body, k->sig_sk);
        out->len = start + body + crypto_sign_BYTES;
    }
    sodium_memzero(mk, sizeof(mk));
    sodium_memzero(&ks, sizeof(ks));
    return rc;
}

static void sk_store(cn_senderkey_t *k, uint32_t it, const uint8_t mk[CN__KEY])
{
    if (k->nskipped == CN_SENDERKEY_MAX_SKIP) {
        memmove(k->skipped, k->skipped + 1, (k->nskipped - 1) * sizeof(k->skipped[0]));
        k->nskipped--;
    }
    k->skipped[k->nskipped].it = it;
    memcpy(k->skipped[k->nskipped].mk, mk, CN__KEY);
    k->nskipped++;
}

/* The message key for iteration it (on the working copy t). */
static int sk_message_key(cn_senderkey_t *t, uint32_t it, uint8_t mk[CN__KEY])
{
    if (it < t->iteration) {
        for (uint32_t i = 0; i < t->nskipped; i++) {
            if (t->skipped[i].it != it)
                continue;
            memcpy(mk, t->skipped[i].mk, CN__KEY);
            memmove(&t->skipped[i], &t->skipped[i + 1],
                    (t->nskipped - i - 1) * sizeof(t->skipped[0]));
            t->nskipped--;
            return CN_OK;
        }
        return CN_EEXIST;
    }
    CN_ENSURE(it - t->iteration <= CN_SENDERKEY_MAX_SKIP, CN_ELIMIT);
    while (t->iteration < it) {
        CN_TRY(cn__kdf_ck(t->ck, mk));
        sk_store(t, t->iteration++, mk);
    }
    CN_TRY(cn__kdf_ck(t->ck, mk));
    t->iteration++;
    return CN_OK;
}

int cn_senderkey_decrypt(cn_senderkey_t *k, const uint8_t *msg, size_t n, cn_buf_t *pt)
{
    CN_ENSURE(k != NULL && msg != NULL && pt != NULL, CN_EINVAL);
    CN_ENSURE(n >= MSG_HDR + CN_E2E_TAG_LEN + crypto_sign_BYTES, CN_EINVAL);
    CN_ENSURE(n <= MSG_HDR + CN_E2E_PLAINTEXT_MAX + CN_E2E_TAG_LEN + crypto_sign_BYTES, CN_ETOOBIG);
    CN_ENSURE(msg[0] == DIST_VER, CN_EVERSION);
    CN_ENSURE(cn_load_u32be(msg + 1) == k->key_id, CN_ENOTFOUND);
    size_t body = n - crypto_sign_BYTES;
    CN_ENSURE(crypto_sign_verify_detached(msg + body, msg, body, k->sig_pk) == 0, CN_EAUTH);
    cn_senderkey_t *t;
    CN_TRY(sk_alloc(&t));
    memcpy(t, k, sizeof(*t));
    uint8_t mk[CN__KEY];
    sk_keys_t ks;
    int rc = sk_message_key(t, cn_load_u32be(msg + 5), mk);
    if (rc == CN_OK)
        rc = expand(mk, &ks);
    if (rc == CN_OK)
        rc = cn_buf_reserve(pt, body - MSG_HDR);
    unsigned long long plen = 0;
    if (rc == CN_OK && crypto_aead_xchacha20poly1305_ietf_decrypt(
                           pt->data + pt->len, &plen, NULL, msg + MSG_HDR, body - MSG_HDR, msg,
                           MSG_HDR, ks.nonce, ks.key) != 0)
        rc = CN_EAUTH;
    if (rc == CN_OK) {
        pt->len += (size_t)plen;
        memcpy(k, t, sizeof(*k));
    }
    sodium_memzero(mk, sizeof(mk));
    sodium_memzero(&ks, sizeof(ks));
    cn_senderkey_free(t);
    return rc;
}

int cn_senderkey_encode(const cn_senderkey_t *k, cn_buf_t *out)
{
    CN_ENSURE(k != NULL && out != NULL, CN_EINVAL);
    CN_TRY(cn_buf_reserve(out, 8 + 8 + 64 + SIG_SK_LEN + 4 + (size_t)k->nskipped * SK_ENTRY));
    CN_TRY(cn_buf_append(out, STATE_MAG, 4));
    CN_TRY(cn_buf_put_u8(out, 1));
    CN_TRY(cn_buf_put_u8(out, k->own ? 1 : 0));
    CN_TRY(cn_buf_put_u16be(out, 0));
    CN_TRY(cn_buf_put_u32be(out, k->key_id));
    CN_TRY(cn_buf_put_u32be(out, k->iteration));
    CN_TRY(cn_buf_append(out, k->ck, CN__KEY));
    CN_TRY(cn_buf_append(out, k->sig_pk, sizeof(k->sig_pk)));
    if (k->own)
        CN_TRY(cn_buf_append(out, k->sig_sk, SIG_SK_LEN));
    CN_TRY(cn_buf_put_u32be(out, k->nskipped));
    for (uint32_t i = 0; i < k->nskipped; i++) {
        CN_TRY(cn_buf_put_u32be(out, k->skipped[i].it));
        CN_TRY(cn_buf_append(out, k->skipped[i].mk, CN__KEY));
    }
    return CN_OK;
}

static int sk_decode_body(cn_cursor_t *c, cn_senderkey_t *k)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    CN_ENSURE(cn_cursor_u32be(c, &k->key_id) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(c, &k->iteration) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(c, k->ck, CN__KEY) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(c, k->sig_pk, sizeof(k->sig_pk)) == CN_OK, CN_EINVAL);
    if (k->own) {
        CN_ENSURE(cn_cursor_copy(c, k->sig_sk, SIG_SK_LEN) == CN_OK, CN_EINVAL);
        CN_ENSURE(crypto_sign_ed25519_sk_to_pk(pk, k->sig_sk) == 0, CN_EINVAL);
        CN_ENSURE(sodium_memcmp(pk, k->sig_pk, sizeof(pk)) == 0, CN_EINVAL);
    }
    CN_ENSURE(cn_cursor_u32be(c, &k->nskipped) == CN_OK, CN_EINVAL);
    CN_ENSURE(k->nskipped <= CN_SENDERKEY_MAX_SKIP, CN_EINVAL);
    CN_ENSURE(cn_cursor_left(c) == (size_t)k->nskipped * SK_ENTRY, CN_EINVAL);
    for (uint32_t i = 0; i < k->nskipped; i++) {
        CN_ENSURE(cn_cursor_u32be(c, &k->skipped[i].it) == CN_OK, CN_EINVAL);
        CN_ENSURE(k->skipped[i].it < k->iteration, CN_EINVAL);
        CN_ENSURE(cn_cursor_copy(c, k->skipped[i].mk, CN__KEY) == CN_OK, CN_EINVAL);
    }
    return CN_OK;
}

int cn_senderkey_decode(const uint8_t *p, size_t n, cn_senderkey_t **out)
{
    cn_cursor_t c;
    uint8_t magic[4], ver, own;
    uint16_t reserved;
    CN_ENSURE(p != NULL && out != NULL, CN_EINVAL);
    *out = NULL;
    cn_cursor_init(&c, p, n);
    CN_ENSURE(cn_cursor_copy(&c, magic, 4) == CN_OK && memcmp(magic, STATE_MAG, 4) == 0, CN_EINVAL);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == 1, CN_EVERSION);
    CN_ENSURE(cn_cursor_u8(&c, &own) == CN_OK && own <= 1, CN_EINVAL);
    CN_ENSURE(cn_cursor_u16be(&c, &reserved) == CN_OK && reserved == 0, CN_EINVAL);
    cn_senderkey_t *k;
    CN_TRY(sk_alloc(&k));
    k->own = own == 1;
    int rc = sk_decode_body(&c, k);
    if (rc < 0) {
        cn_senderkey_free(k);
        return rc;
    }
    *out = k;
    return CN_OK;
}

void cn_senderkey_info(const cn_senderkey_t *k, uint32_t *key_id, uint32_t *iteration)
{
    *key_id = k->key_id;
    *iteration = k->iteration;
}

int cn_senderkey_message_info(const uint8_t *msg, size_t n, uint32_t *key_id, uint32_t *iteration)
{
    CN_ENSURE(msg != NULL && n >= MSG_HDR, CN_EINVAL);
    CN_ENSURE(msg[0] == DIST_VER, CN_EVERSION);
    *key_id = cn_load_u32be(msg + 1);
    *iteration = cn_load_u32be(msg + 5);
    return CN_OK;
}

int cn_senderkey_advance(cn_senderkey_t *k, uint32_t iteration)
{
    CN_ENSURE(k != NULL && iteration >= k->iteration, CN_EINVAL);
    uint8_t mk[CN__KEY];
    int rc = CN_OK;
    while (rc == CN_OK && k->iteration < iteration) {
        rc = cn__kdf_ck(k->ck, mk);
        k->iteration++;
    }
    sodium_memzero(mk, sizeof(mk));
    /* Skipped keys below the new position stay usable; none are added. */
    return rc;
}

int cn_senderkey_clone(const cn_senderkey_t *k, cn_senderkey_t **out)
{
    CN_ENSURE(k != NULL && out != NULL, CN_EINVAL);
    CN_TRY(sk_alloc(out));
    memcpy(*out, k, sizeof(**out));
    return CN_OK;
}
