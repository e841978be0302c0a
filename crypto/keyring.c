/*
 * The at-rest key ring and sealed records (formats in crypto/cn_crypto.h).
 *
 * Keys sit in one sodium_malloc region (guard pages, wiped on free), the
 * slots kept in id order.
 *
 * Record nonces: 16 random bytes drawn when the ring is made or opened,
 * then a 64-bit counter. A nonce never repeats within one ring instance,
 * and two instances (restarts, processes) share a prefix with probability
 * 2^-128 per pair, which XChaCha20's 192-bit nonce leaves room for. It
 * spares a getrandom() per record (about 0.5 us, 40% of a 256-byte seal). Readers from any thread
 * seal and open under a read lock; the rare changes (rotate, retire) take the write lock, so a key
 * is never wiped under a reader.
 */
#include "crypto/aead_int.h"
#include "crypto/cn_crypto.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ABYTES        crypto_aead_xchacha20poly1305_ietf_ABYTES
#define RING_MAGIC    "CNKR"
#define RING_VER      1
#define RING_FIXED    (4 + 1 + 1 + 4 + 4 + 4) /* magic ver flags current next n */
#define RING_ENTRY    5                       /* id u32be ‖ state u8 */
#define RING_LEGACY   0x01                    /* flags: plaintext records may remain */
#define REC_AD_PREFIX 13                      /* magic ‖ key_id ‖ expires_hint */

struct cn_keyring {
    pthread_rwlock_t lock;
    /* CN_KEYRING_MAX × CN_ATREST_KEY_LEN, then the subkey: sodium_malloc */
    uint8_t *keys;
    uint32_t subkey_for; /* the key id the subkey belongs to (0: none) */
    uint32_t ids[CN_KEYRING_MAX];
    uint8_t states[CN_KEYRING_MAX];
    size_t n;
    uint32_t current, next_id;
    bool legacy;
    uint8_t nonce_prefix[CN_ATREST_NONCE_LEN - 8];
    uint64_t nonce_ctr; /* atomic */
};

int cn_keyring_new(cn_keyring_t **out)
{
    *out = NULL;
    cn_keyring_t *kr = calloc(1, sizeof(*kr));
    CN_ENSURE(kr != NULL, CN_ENOMEM);
    kr->keys = sodium_malloc((CN_KEYRING_MAX + 1) * CN_ATREST_KEY_LEN);
    if (kr->keys == NULL || pthread_rwlock_init(&kr->lock, NULL) != 0) {
        if (kr->keys)
            sodium_free(kr->keys);
        free(kr);
        return CN_ENOMEM;
    }
    kr->next_id = 1;
    randombytes_buf(kr->nonce_prefix, sizeof(kr->nonce_prefix));
    *out = kr;
    return CN_OK;
}

void cn_keyring_free(cn_keyring_t *kr)
{
    if (kr == NULL)
        return;
    sodium_free(kr->keys);
    pthread_rwlock_destroy(&kr->lock);
    free(kr);
}

/** The slot of id, or -1. Called with the lock held. */
static int slot_of(const cn_keyring_t *kr, uint32_t id)
{
    for (size_t i = 0; i < kr->n; i++) {
        if (kr->ids[i] == id)
            return (int)i;
    }
    return -1;
}

static uint8_t *key_at(const cn_keyring_t *kr, size_t i)
{
    return kr->keys + i * CN_ATREST_KEY_LEN;
}

/** Makes id current (it must be in the ring); the old current becomes OLD. */
/*
 * XChaCha20-Poly1305 is HChaCha20(key, nonce[0..15]) as the key of
 * ChaCha20-Poly1305 (IETF) with nonce 0^4 ‖ nonce[16..23]. Our nonces are
 * this process's random prefix ‖ a counter, so for the current key the
 * first step is the same for every record: done once here (writer lock
 * held), it saves an HChaCha20 per seal and per open of a record sealed
 * since (1,200 of the store's 76,000 instructions per stored copy, twice).
 * The bytes are exactly XChaCha20-Poly1305's.
 */
static uint8_t *subkey(const cn_keyring_t *kr)
{
    return kr->keys + CN_KEYRING_MAX * CN_ATREST_KEY_LEN;
}

static void derive_subkey(cn_keyring_t *kr)
{
    int slot = slot_of(kr, kr->current);
    kr->subkey_for = 0;
    if (slot >= 0 &&
        crypto_core_hchacha20(subkey(kr), kr->nonce_prefix, key_at(kr, (size_t)slot), NULL) == 0)
        kr->subkey_for = kr->current;
}

/* The IETF nonce that goes with the subkey: 0^4 ‖ the counter. */
static void subkey_nonce(uint8_t out[crypto_aead_chacha20poly1305_IETF_NPUBBYTES],
                         const uint8_t *nonce)
{
    memset(out, 0, 4);
    memcpy(out + 4, nonce + crypto_core_hchacha20_INPUTBYTES, 8);
}

static void make_current(cn_keyring_t *kr, int slot)
{
    int old = slot_of(kr, kr->current);
    if (old >= 0 && old != slot)
        kr->states[old] = CN_KEY_OLD;
    kr->states[slot] = CN_KEY_CURRENT;
    kr->current = kr->ids[slot];
    derive_subkey(kr);
}

int cn_keyring_rotate(cn_keyring_t *kr, uint32_t *id)
{
    int rc = CN_OK;
    pthread_rwlock_wrlock(&kr->lock);
    if (kr->n == CN_KEYRING_MAX || kr->next_id == UINT32_MAX) {
        rc = CN_ELIMIT;
    } else {
        /* Ids only grow, so appending keeps the slots in id order. */
        size_t i = kr->n++;
        kr->ids[i] = kr->next_id++;
        randombytes_buf(key_at(kr, i), CN_ATREST_KEY_LEN);
        make_current(kr, (int)i);
        if (id != NULL)
            *id = kr->ids[i];
    }
    pthread_rwlock_unlock(&kr->lock);
    return rc;
}

int cn_keyring_set_current(cn_keyring_t *kr, uint32_t id)
{
    pthread_rwlock_wrlock(&kr->lock);
    int slot = slot_of(kr, id);
    if (slot >= 0)
        make_current(kr, slot);
    pthread_rwlock_unlock(&kr->lock);
    return slot >= 0 ? CN_OK : CN_ENOTFOUND;
}

int cn_keyring_set_state(cn_keyring_t *kr, uint32_t id, enum cn_key_state state)
{
    int rc = CN_OK;
    CN_ENSURE(state == CN_KEY_OLD || state == CN_KEY_DRAINED, CN_EINVAL);
    pthread_rwlock_wrlock(&kr->lock);
    int slot = slot_of(kr, id);
    if (slot < 0)
        rc = CN_ENOTFOUND;
    else if (id == kr->current)
        rc = CN_ECONFLICT;
    else
        kr->states[slot] = (uint8_t)state;
    pthread_rwlock_unlock(&kr->lock);
    return rc;
}

int cn_keyring_remove(cn_keyring_t *kr, uint32_t id)
{
    int rc = CN_OK;
    pthread_rwlock_wrlock(&kr->lock);
    int slot = slot_of(kr, id);
    if (slot < 0) {
        rc = CN_ENOTFOUND;
    } else if (id == kr->current) {
        rc = CN_ECONFLICT;
    } else {
        size_t i = (size_t)slot, after = kr->n - i - 1;
        memmove(key_at(kr, i), key_at(kr, i + 1), after * CN_ATREST_KEY_LEN);
        memmove(&kr->ids[i], &kr->ids[i + 1], after * sizeof(kr->ids[0]));
        memmove(&kr->states[i], &kr->states[i + 1], after);
        kr->n--;
        sodium_memzero(key_at(kr, kr->n), CN_ATREST_KEY_LEN);
    }
    pthread_rwlock_unlock(&kr->lock);
    return rc;
}

uint32_t cn_keyring_current(cn_keyring_t *kr)
{
    pthread_rwlock_rdlock(&kr->lock);
    uint32_t id = kr->current;
    pthread_rwlock_unlock(&kr->lock);
    return id;
}

uint32_t cn_keyring_next_id(cn_keyring_t *kr)
{
    pthread_rwlock_rdlock(&kr->lock);
    uint32_t id = kr->next_id;
    pthread_rwlock_unlock(&kr->lock);
    return id;
}

size_t cn_keyring_list(cn_keyring_t *kr, cn_keyring_entry_t *out, size_t max)
{
    pthread_rwlock_rdlock(&kr->lock);
    size_t n = kr->n;
    for (size_t i = 0; i < n && i < max; i++) {
        out[i].id = kr->ids[i];
        out[i].state = (enum cn_key_state)kr->states[i];
    }
    pthread_rwlock_unlock(&kr->lock);
    return n;
}

bool cn_keyring_has(cn_keyring_t *kr, uint32_t id)
{
    pthread_rwlock_rdlock(&kr->lock);
    bool has = slot_of(kr, id) >= 0;
    pthread_rwlock_unlock(&kr->lock);
    return has;
}

bool cn_keyring_legacy(cn_keyring_t *kr)
{
    pthread_rwlock_rdlock(&kr->lock);
    bool legacy = kr->legacy;
    pthread_rwlock_unlock(&kr->lock);
    return legacy;
}

void cn_keyring_set_legacy(cn_keyring_t *kr, bool legacy)
{
    pthread_rwlock_wrlock(&kr->lock);
    kr->legacy = legacy;
    pthread_rwlock_unlock(&kr->lock);
}

/* ------------------------------------------------------------ the ring */

static bool excluded(uint32_t id, const uint32_t *exclude, size_t nexclude)
{
    for (size_t i = 0; i < nexclude; i++) {
        if (exclude[i] == id)
            return true;
    }
    return false;
}

/** Writes the clear part and gathers the kept keys into pt; returns its length. */
static size_t ring_clear(const cn_keyring_t *kr, const uint32_t *exclude, size_t nexclude,
                         uint8_t *w, uint8_t *pt, size_t *ptlen)
{
    uint32_t n = 0;
    uint8_t *p = w + RING_FIXED;
    *ptlen = 0;
    for (size_t i = 0; i < kr->n; i++) {
        if (excluded(kr->ids[i], exclude, nexclude))
            continue;
        cn_store_u32be(p, kr->ids[i]);
        p[4] = kr->states[i];
        p += RING_ENTRY;
        memcpy(pt + *ptlen, key_at(kr, i), CN_ATREST_KEY_LEN);
        *ptlen += CN_ATREST_KEY_LEN;
        n++;
    }
    memcpy(w, RING_MAGIC, 4);
    w[4] = RING_VER;
    w[5] = kr->legacy ? RING_LEGACY : 0;
    cn_store_u32be(w + 6, kr->current);
    cn_store_u32be(w + 10, kr->next_id);
    cn_store_u32be(w + 14, n);
    return (size_t)(p - w);
}

int cn_keyring_seal(cn_keyring_t *kr, const cn_master_key_t *mk, const uint32_t *exclude,
                    size_t nexclude, cn_buf_t *out)
{
    CN_ENSURE(kr != NULL && mk != NULL && mk->key != NULL && out != NULL, CN_EINVAL);
    size_t max = RING_FIXED + CN_KEYRING_MAX * RING_ENTRY + CN_ATREST_NONCE_LEN +
                 CN_KEYRING_MAX * CN_ATREST_KEY_LEN + ABYTES;
    CN_TRY(cn_buf_reserve(out, max));
    uint8_t *pt = sodium_malloc(CN_KEYRING_MAX * CN_ATREST_KEY_LEN);
    CN_ENSURE(pt != NULL, CN_ENOMEM);
    uint8_t *w = out->data + out->len;
    size_t ptlen;
    pthread_rwlock_rdlock(&kr->lock);
    size_t adlen = ring_clear(kr, exclude, nexclude, w, pt, &ptlen);
    pthread_rwlock_unlock(&kr->lock);
    uint8_t *nonce = w + adlen;
    randombytes_buf(nonce, CN_ATREST_NONCE_LEN);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + CN_ATREST_NONCE_LEN, &clen, pt, ptlen, w,
                                               adlen, NULL, nonce, mk->key);
    sodium_free(pt);
    out->len += adlen + CN_ATREST_NONCE_LEN + (size_t)clen;
    return CN_OK;
}

/** Checks and loads the clear part; *adlen is its length. */
static int ring_parse(cn_keyring_t *kr, const uint8_t *p, size_t n, size_t *adlen)
{
    CN_ENSURE(n >= RING_FIXED && memcmp(p, RING_MAGIC, 4) == 0, CN_EINVAL);
    CN_ENSURE(p[4] == RING_VER, CN_EVERSION);
    CN_ENSURE((p[5] & ~RING_LEGACY) == 0, CN_EINVAL);
    uint32_t count = cn_load_u32be(p + 14);
    CN_ENSURE(count <= CN_KEYRING_MAX, CN_EINVAL);
    *adlen = RING_FIXED + (size_t)count * RING_ENTRY;
    CN_ENSURE(n == *adlen + CN_ATREST_NONCE_LEN + count * CN_ATREST_KEY_LEN + ABYTES, CN_EINVAL);
    kr->legacy = (p[5] & RING_LEGACY) != 0;
    kr->current = cn_load_u32be(p + 6);
    kr->next_id = cn_load_u32be(p + 10);
    kr->n = count;
    bool has_current = false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = p + RING_FIXED + i * RING_ENTRY;
        kr->ids[i] = cn_load_u32be(e);
        kr->states[i] = e[4];
        CN_ENSURE(kr->ids[i] != 0 && kr->ids[i] < kr->next_id, CN_EINVAL);
        CN_ENSURE(i == 0 || kr->ids[i] > kr->ids[i - 1], CN_EINVAL);
        CN_ENSURE(e[4] >= CN_KEY_CURRENT && e[4] <= CN_KEY_DRAINED, CN_EINVAL);
        CN_ENSURE((e[4] == CN_KEY_CURRENT) == (kr->ids[i] == kr->current), CN_EINVAL);
        has_current = has_current || kr->ids[i] == kr->current;
    }
    CN_ENSURE(has_current, CN_EINVAL);
    return CN_OK;
}

int cn_keyring_open(const cn_master_key_t *mk, const uint8_t *p, size_t n, cn_keyring_t **out)
{
    size_t adlen;
    cn_keyring_t *kr;
    CN_ENSURE(mk != NULL && mk->key != NULL && p != NULL && out != NULL, CN_EINVAL);
    *out = NULL;
    CN_TRY(cn_keyring_new(&kr));
    int rc = ring_parse(kr, p, n, &adlen);
    if (rc == CN_OK) {
        const uint8_t *nonce = p + adlen;
        unsigned long long plen = 0;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(
                kr->keys, &plen, NULL, nonce + CN_ATREST_NONCE_LEN, n - adlen - CN_ATREST_NONCE_LEN,
                p, adlen, nonce, mk->key) != 0)
            rc = CN_EAUTH;
    }
    if (rc != CN_OK) {
        cn_keyring_free(kr);
        return rc;
    }
    derive_subkey(kr);
    *out = kr;
    return CN_OK;
}

/* ------------------------------------------------------------- records */

int cn_atrest_header(const uint8_t *p, size_t n, uint32_t *key_id, uint64_t *expires_hint)
{
    CN_ENSURE(p != NULL && n >= CN_ATREST_OVERHEAD && p[0] == CN_ATREST_MAGIC, CN_EINVAL);
    uint32_t id = cn_load_u32be(p + 1);
    CN_ENSURE(id != 0, CN_EINVAL);
    if (key_id != NULL)
        *key_id = id;
    if (expires_hint != NULL)
        *expires_hint = cn_load_u64be(p + 5);
    return CN_OK;
}

/** The associated data: the clear header fields, then the caller's. */
static void record_ad(uint8_t *ad, const uint8_t *hdr, const void *extra, size_t extralen)
{
    memcpy(ad, hdr, REC_AD_PREFIX);
    if (extralen > 0)
        memcpy(ad + REC_AD_PREFIX, extra, extralen);
}

int cn_atrest_seal(cn_keyring_t *kr, const void *ad, size_t adlen, uint64_t expires_hint,
                   const void *pt, size_t n, cn_buf_t *out)
{
    uint8_t fullad[REC_AD_PREFIX + CN_ATREST_AD_MAX];
    CN_ENSURE(kr != NULL && out != NULL && (pt != NULL || n == 0), CN_EINVAL);
    CN_ENSURE(adlen <= CN_ATREST_AD_MAX && (ad != NULL || adlen == 0), CN_EINVAL);
    CN_ENSURE(n <= CN_ATREST_VALUE_MAX, CN_ETOOBIG);
    CN_TRY(cn_buf_reserve(out, CN_ATREST_OVERHEAD + n));
    uint8_t *w = out->data + out->len;
    int rc = CN_OK;
    pthread_rwlock_rdlock(&kr->lock);
    int slot = slot_of(kr, kr->current);
    if (slot < 0) {
        rc = CN_EINVAL;
    } else {
        w[0] = CN_ATREST_MAGIC;
        cn_store_u32be(w + 1, kr->current);
        cn_store_u64be(w + 5, expires_hint);
        uint64_t ctr = __atomic_fetch_add(&kr->nonce_ctr, 1, __ATOMIC_RELAXED);
        memcpy(w + REC_AD_PREFIX, kr->nonce_prefix, sizeof(kr->nonce_prefix));
        cn_store_u64be(w + REC_AD_PREFIX + sizeof(kr->nonce_prefix), ctr);
        record_ad(fullad, w, ad, adlen);
        if (kr->subkey_for == kr->current) {
            uint8_t npub[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
            subkey_nonce(npub, w + REC_AD_PREFIX);
            cn__aead_chacha20poly1305_ietf_seal(w + CN_ATREST_HDR_LEN, pt, n, fullad,
                                                REC_AD_PREFIX + adlen, npub, subkey(kr));
        } else {
            crypto_aead_xchacha20poly1305_ietf_encrypt(w + CN_ATREST_HDR_LEN, NULL, pt, n, fullad,
                                                       REC_AD_PREFIX + adlen, NULL,
                                                       w + REC_AD_PREFIX, key_at(kr, (size_t)slot));
        }
    }
    pthread_rwlock_unlock(&kr->lock);
    if (rc == CN_OK)
        out->len += CN_ATREST_OVERHEAD + n;
    return rc;
}

int cn_atrest_open(cn_keyring_t *kr, const void *ad, size_t adlen, const uint8_t *p, size_t n,
                   uint8_t *out, size_t *outlen)
{
    uint8_t fullad[REC_AD_PREFIX + CN_ATREST_AD_MAX];
    uint8_t nonce[CN_ATREST_NONCE_LEN];
    uint32_t id;
    CN_ENSURE(kr != NULL && out != NULL && outlen != NULL, CN_EINVAL);
    CN_ENSURE(adlen <= CN_ATREST_AD_MAX && (ad != NULL || adlen == 0), CN_EINVAL);
    CN_TRY(cn_atrest_header(p, n, &id, NULL));
    /* In place, the plaintext overwrites the ciphertext, never the header;
     * the nonce is copied anyway so that the call never reads what it wrote. */
    record_ad(fullad, p, ad, adlen);
    memcpy(nonce, p + REC_AD_PREFIX, CN_ATREST_NONCE_LEN);
    int rc = CN_OK;
    unsigned long long plen = 0;
    pthread_rwlock_rdlock(&kr->lock);
    int slot = slot_of(kr, id);
    if (slot < 0) {
        rc = CN_ENOTFOUND;
    } else if (id == kr->subkey_for &&
               memcmp(nonce, kr->nonce_prefix, sizeof(kr->nonce_prefix)) == 0) {
        uint8_t npub[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
        subkey_nonce(npub, nonce);
        if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, NULL, p + CN_ATREST_HDR_LEN,
                                                      n - CN_ATREST_HDR_LEN, fullad,
                                                      REC_AD_PREFIX + adlen, npub, subkey(kr)) != 0)
            rc = CN_EAUTH;
    } else if (crypto_aead_xchacha20poly1305_ietf_decrypt(
                   out, &plen, NULL, p + CN_ATREST_HDR_LEN, n - CN_ATREST_HDR_LEN, fullad,
                   REC_AD_PREFIX + adlen, nonce, key_at(kr, (size_t)slot)) != 0) {
        rc = CN_EAUTH;
    }
    pthread_rwlock_unlock(&kr->lock);
    *outlen = rc == CN_OK ? (size_t)plen : 0;
    return rc;
}
