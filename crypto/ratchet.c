/*
 * The Double Ratchet (Signal, "The Double Ratchet Algorithm", revision 1,
 * section 3 with the recommended primitives of 5.2), with
 * XChaCha20-Poly1305 as the AEAD: the message key is expanded by HKDF into
 * a key and a 24-byte nonce (5.2 does the same for AES-CBC + HMAC), and the
 * associated data is AD ‖ header, where AD = IK_A ‖ IK_B from X3DH and the
 * header is every byte of the wire message before the ciphertext.
 *
 * Decryption works on a copy of the state and commits it only when the
 * message authenticated (the spec's "if an exception is raised ... the
 * state is discarded"), so a forged or replayed message changes nothing.
 */
#include "crypto/ratchet_int.h"

#include <sodium.h>
#include <string.h>

#define RK_INFO  "chatnode ratchet v1"
#define MSG_INFO "chatnode message keys v1"

int cn__ratchet_alloc(uint32_t max_skip, cn_ratchet_t **out)
{
    *out = NULL;
    CN_ENSURE(max_skip >= 1 && max_skip <= CN_RATCHET_SKIP_HARD_MAX, CN_EINVAL);
    cn_ratchet_t *r = sodium_malloc(sizeof(*r));
    CN_ENSURE(r != NULL, CN_ENOMEM);
    memset(r, 0, sizeof(*r));
    r->skipped = sodium_malloc((size_t)max_skip * sizeof(cn__skipped_t));
    if (r->skipped == NULL) {
        sodium_free(r);
        return CN_ENOMEM;
    }
    r->max_skip = max_skip;
    *out = r;
    return CN_OK;
}

void cn_ratchet_free(cn_ratchet_t *r)
{
    if (r == NULL)
        return;
    sodium_free(r->skipped); /* wipes */
    sodium_free(r);
}

int cn_ratchet_set_max_skip(cn_ratchet_t *r, uint32_t max)
{
    CN_ENSURE(r != NULL && max >= 1 && max <= CN_RATCHET_SKIP_HARD_MAX, CN_EINVAL);
    cn__skipped_t *s = sodium_malloc((size_t)max * sizeof(*s));
    CN_ENSURE(s != NULL, CN_ENOMEM);
    /* Shrinking keeps the newest keys. */
    uint32_t keep = CN_MIN(r->nskipped, max);
    memcpy(s, r->skipped + (r->nskipped - keep), (size_t)keep * sizeof(*s));
    sodium_free(r->skipped);
    r->skipped = s;
    r->nskipped = keep;
    r->max_skip = max;
    return CN_OK;
}

uint32_t cn_ratchet_skipped(const cn_ratchet_t *r)
{
    return r ? r->nskipped : 0;
}

const uint8_t *cn_ratchet_remote_identity(const cn_ratchet_t *r)
{
    return r->remote_ik;
}

int cn__kdf_rk(uint8_t rk[CN__KEY], uint8_t ck[CN__KEY], const uint8_t dh_out[CN__KEY])
{
    uint8_t okm[2 * CN__KEY];
    int rc = cn_hkdf(okm, sizeof(okm), rk, CN__KEY, dh_out, CN__KEY, RK_INFO, strlen(RK_INFO));
    if (rc == CN_OK) {
        memcpy(rk, okm, CN__KEY);
        memcpy(ck, okm + CN__KEY, CN__KEY);
    }
    sodium_memzero(okm, sizeof(okm));
    return rc;
}

int cn__kdf_ck(uint8_t ck[CN__KEY], uint8_t mk[CN__KEY])
{
    static const uint8_t one = 0x01, two = 0x02;
    uint8_t next[CN__KEY];
    CN_TRY(cn_hmac_sha256(mk, ck, CN__KEY, &one, 1));
    CN_TRY(cn_hmac_sha256(next, ck, CN__KEY, &two, 1));
    memcpy(ck, next, CN__KEY);
    sodium_memzero(next, sizeof(next));
    return CN_OK;
}

void cn__ratchet_ad(const cn_ratchet_t *r, uint8_t ad[2 * CN__KEY])
{
    bool alice = (r->flags & CN__R_INITIATOR) != 0;
    memcpy(ad, alice ? r->local_ik : r->remote_ik, CN__KEY);
    memcpy(ad + CN__KEY, alice ? r->remote_ik : r->local_ik, CN__KEY);
}

size_t cn__ratchet_header(const cn_ratchet_t *r, uint32_t n, uint8_t *out)
{
    size_t at = 0;
    bool pending = (r->flags & CN__R_PENDING) != 0;
    out[at++] = CN_E2E_VERSION;
    out[at++] = pending ? CN_E2E_PREKEY_MSG : CN_E2E_RATCHET_MSG;
    if (pending) {
        memcpy(out + at, r->local_ik, CN__KEY);
        at += CN__KEY;
        memcpy(out + at, r->base_key, CN__KEY);
        at += CN__KEY;
        cn_store_u32be(out + at, r->spk_id);
        at += 4;
        out[at++] = (r->flags & CN__R_OPK) ? 1 : 0;
        cn_store_u32be(out + at, r->opk_id);
        at += 4;
    }
    memcpy(out + at, r->dhs_pk, CN__KEY);
    at += CN__KEY;
    cn_store_u32be(out + at, r->pn);
    at += 4;
    cn_store_u32be(out + at, n);
    at += 4;
    return at;
}

/* AEAD key and nonce from a message key. */
typedef struct msg_keys {
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
} msg_keys_t;

static int expand_mk(const uint8_t mk[CN__KEY], msg_keys_t *k)
{
    return cn_hkdf(k, sizeof(*k), NULL, 0, mk, CN__KEY, MSG_INFO, strlen(MSG_INFO));
}

/* AD ‖ header, the AEAD's associated data. */
static size_t build_ad(const cn_ratchet_t *r, const uint8_t *hdr, size_t hlen, uint8_t *ad)
{
    cn__ratchet_ad(r, ad);
    memcpy(ad + 2 * CN__KEY, hdr, hlen);
    return 2 * CN__KEY + hlen;
}

int cn_ratchet_encrypt(cn_ratchet_t *r, const void *pt, size_t n, cn_buf_t *out)
{
    CN_ENSURE(r != NULL && out != NULL && (pt != NULL || n == 0), CN_EINVAL);
    CN_ENSURE(n <= CN_E2E_PLAINTEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(r->flags & CN__R_CKS, CN_EINVAL);
    CN_ENSURE(r->ns < UINT32_MAX, CN_ELIMIT);
    uint8_t hdr[CN__HDR_MAX], ad[2 * CN__KEY + CN__HDR_MAX], mk[CN__KEY];
    msg_keys_t k;
    size_t hlen = cn__ratchet_header(r, r->ns, hdr);
    size_t adlen = build_ad(r, hdr, hlen, ad);
    CN_TRY(cn_buf_reserve(out, hlen + n + CN_E2E_TAG_LEN));
    int rc = cn__kdf_ck(r->cks, mk);
    if (rc == CN_OK)
        rc = expand_mk(mk, &k);
    if (rc == CN_OK) {
        r->ns++;
        memcpy(out->data + out->len, hdr, hlen);
        unsigned long long clen = 0;
        crypto_aead_xchacha20poly1305_ietf_encrypt(out->data + out->len + hlen, &clen, pt, n, ad,
                                                   adlen, NULL, k.nonce, k.key);
        out->len += hlen + (size_t)clen;
    }
    sodium_memzero(mk, sizeof(mk));
    sodium_memzero(&k, sizeof(k));
    return rc;
}

/* ----------------------------------------------------------- decrypt */

static int clone(const cn_ratchet_t *r, cn_ratchet_t **out)
{
    CN_TRY(cn__ratchet_alloc(r->max_skip, out));
    cn__skipped_t *sk = (*out)->skipped;
    memcpy(*out, r, sizeof(*r));
    (*out)->skipped = sk;
    memcpy(sk, r->skipped, (size_t)r->nskipped * sizeof(*sk));
    return CN_OK;
}

/* Replaces r's contents with t's (t is freed). */
static void commit(cn_ratchet_t *r, cn_ratchet_t *t)
{
    cn__skipped_t *old = r->skipped;
    memcpy(r, t, sizeof(*r));
    t->skipped = old;
    cn_ratchet_free(t);
}

static void store_skipped(cn_ratchet_t *r, const uint8_t mk[CN__KEY])
{
    /* Bounded: the oldest stored key is deleted to make room. */
    if (r->nskipped == r->max_skip) {
        sodium_memzero(&r->skipped[0], sizeof(r->skipped[0]));
        memmove(r->skipped, r->skipped + 1, (size_t)(r->nskipped - 1) * sizeof(*r->skipped));
        r->nskipped--;
    }
    cn__skipped_t *s = &r->skipped[r->nskipped++];
    memcpy(s->dh, r->dhr, CN__KEY);
    s->n = r->nr;
    memcpy(s->mk, mk, CN__KEY);
}

/* Double Ratchet 3.5 SkipMessageKeys. */
static int skip_keys(cn_ratchet_t *r, uint32_t until)
{
    if (!(r->flags & CN__R_CKR))
        return CN_OK;
    CN_ENSURE((uint64_t)r->nr + r->max_skip >= until, CN_ELIMIT);
    uint8_t mk[CN__KEY];
    while (r->nr < until) {
        CN_TRY(cn__kdf_ck(r->ckr, mk));
        store_skipped(r, mk);
        r->nr++;
    }
    sodium_memzero(mk, sizeof(mk));
    return CN_OK;
}

/* Double Ratchet 3.5 DHRatchet. */
static int dh_ratchet(cn_ratchet_t *r, const cn_e2e_msg_t *m)
{
    uint8_t dh[CN__KEY];
    cn_x25519_t kp;
    r->pn = r->ns;
    r->ns = 0;
    r->nr = 0;
    memcpy(r->dhr, m->dh, CN__KEY);
    r->flags |= CN__R_DHR;
    int rc = cn_x25519(dh, r->dhs_sk, r->dhr);
    if (rc == CN_OK)
        rc = cn__kdf_rk(r->rk, r->ckr, dh);
    if (rc == CN_OK)
        rc = cn_x25519_generate(&kp);
    if (rc == CN_OK) {
        memcpy(r->dhs_sk, kp.sk, CN__KEY);
        memcpy(r->dhs_pk, kp.pk, CN__KEY);
        cn_x25519_dispose(&kp);
        rc = cn_x25519(dh, r->dhs_sk, r->dhr);
    }
    if (rc == CN_OK)
        rc = cn__kdf_rk(r->rk, r->cks, dh);
    sodium_memzero(dh, sizeof(dh));
    r->flags |= CN__R_CKR | CN__R_CKS;
    return rc;
}

static int aead_open(const cn_ratchet_t *r, const cn_e2e_msg_t *m, const uint8_t mk[CN__KEY],
                     cn_buf_t *pt)
{
    uint8_t ad[2 * CN__KEY + CN__HDR_MAX];
    msg_keys_t k;
    CN_ENSURE(m->header_len <= CN__HDR_MAX && m->ct_len >= CN_E2E_TAG_LEN, CN_EINVAL);
    size_t adlen = build_ad(r, m->header, m->header_len, ad);
    CN_TRY(cn_buf_reserve(pt, m->ct_len));
    int rc = expand_mk(mk, &k);
    unsigned long long plen = 0;
    if (rc == CN_OK &&
        crypto_aead_xchacha20poly1305_ietf_decrypt(pt->data + pt->len, &plen, NULL, m->ct,
                                                   m->ct_len, ad, adlen, k.nonce, k.key) != 0)
        rc = CN_EAUTH;
    if (rc == CN_OK)
        pt->len += (size_t)plen;
    sodium_memzero(&k, sizeof(k));
    return rc;
}

/* Looks for a stored skipped key; deletes it once it was used. */
static int try_skipped(cn_ratchet_t *r, const cn_e2e_msg_t *m, cn_buf_t *pt, bool *found)
{
    *found = false;
    for (uint32_t i = 0; i < r->nskipped; i++) {
        cn__skipped_t *s = &r->skipped[i];
        if (s->n != m->n || sodium_memcmp(s->dh, m->dh, CN__KEY) != 0)
            continue;
        *found = true;
        CN_TRY(aead_open(r, m, s->mk, pt));
        sodium_memzero(s, sizeof(*s));
        memmove(s, s + 1, (size_t)(r->nskipped - i - 1) * sizeof(*s));
        r->nskipped--;
        return CN_OK;
    }
    return CN_OK;
}

static bool is_current_chain(const cn_ratchet_t *r, const uint8_t dh[CN__KEY])
{
    return (r->flags & CN__R_DHR) && sodium_memcmp(r->dhr, dh, CN__KEY) == 0;
}

/* Double Ratchet 3.5 RatchetDecrypt, on the working copy t. */
static int decrypt_on(cn_ratchet_t *t, const cn_e2e_msg_t *m, cn_buf_t *pt)
{
    bool found;
    CN_TRY(try_skipped(t, m, pt, &found));
    if (found)
        return CN_OK;
    if (!is_current_chain(t, m->dh)) {
        CN_TRY(skip_keys(t, m->pn));
        CN_TRY(dh_ratchet(t, m));
    } else if (m->n < t->nr) {
        return CN_EEXIST; /* its key was used and deleted: a replay */
    }
    CN_TRY(skip_keys(t, m->n));
    uint8_t mk[CN__KEY];
    int rc = cn__kdf_ck(t->ckr, mk);
    if (rc == CN_OK) {
        t->nr++;
        rc = aead_open(t, m, mk, pt);
    }
    sodium_memzero(mk, sizeof(mk));
    return rc;
}

#define FAST_SKIP 32

/*
 * The common cases without copying the state: a stored skipped key, or a
 * message a few steps ahead on the current receiving chain. Both change
 * the state only after the message authenticated. *done is false when the
 * general path must run.
 */
static int decrypt_fast(cn_ratchet_t *r, const cn_e2e_msg_t *m, cn_buf_t *pt, bool *done)
{
    *done = false;
    bool found;
    int rc = try_skipped(r, m, pt, &found);
    if (rc < 0 || found) {
        *done = true;
        return rc;
    }
    if (!is_current_chain(r, m->dh) || !(r->flags & CN__R_CKR))
        return CN_OK;
    if (m->n < r->nr) {
        *done = true;
        return CN_EEXIST;
    }
    if (m->n - r->nr > FAST_SKIP || m->n - r->nr > r->max_skip)
        return CN_OK;
    typedef struct fast_keys {
        uint8_t ck[CN__KEY];
        uint8_t mk[FAST_SKIP + 1][CN__KEY];
    } fast_keys_t;
    fast_keys_t k;
    uint32_t steps = m->n - r->nr;
    memcpy(k.ck, r->ckr, CN__KEY);
    for (uint32_t i = 0; i <= steps && rc == CN_OK; i++)
        rc = cn__kdf_ck(k.ck, k.mk[i]);
    if (rc == CN_OK)
        rc = aead_open(r, m, k.mk[steps], pt);
    if (rc == CN_OK) {
        for (uint32_t i = 0; i < steps; i++) {
            store_skipped(r, k.mk[i]);
            r->nr++;
        }
        memcpy(r->ckr, k.ck, CN__KEY);
        r->nr++;
    }
    sodium_memzero(&k, sizeof(k));
    *done = true;
    return rc;
}

int cn_ratchet_decrypt(cn_ratchet_t *r, const cn_e2e_msg_t *m, cn_buf_t *pt)
{
    CN_ENSURE(r != NULL && m != NULL && pt != NULL, CN_EINVAL);
    if (m->type == CN_E2E_PREKEY_MSG) {
        /* A prekey message belongs to the state X3DH made from its base key. */
        CN_ENSURE(!(r->flags & CN__R_INITIATOR), CN_EAUTH);
        CN_ENSURE(sodium_memcmp(r->base_key, m->ek, CN__KEY) == 0, CN_EAUTH);
        CN_ENSURE(sodium_memcmp(r->remote_ik, m->ik, CN__KEY) == 0, CN_EAUTH);
    }
    size_t mark = pt->len;
    bool done;
    int rc = decrypt_fast(r, m, pt, &done);
    if (done) {
        if (rc == CN_OK) {
            r->flags &= (uint8_t) ~(CN__R_PENDING | CN__R_OPK);
            r->spk_id = 0;
            r->opk_id = 0;
        }
        return rc;
    }
    cn_ratchet_t *t = NULL;
    CN_TRY(clone(r, &t));
    rc = decrypt_on(t, m, pt);
    if (rc < 0) {
        if (pt->data != NULL)
            sodium_memzero(pt->data + mark, pt->cap - mark);
        pt->len = mark;
        cn_ratchet_free(t);
        return rc;
    }
    /* The peer answered: our X3DH reached it, stop sending prekey messages. */
    t->flags &= (uint8_t) ~(CN__R_PENDING | CN__R_OPK);
    t->spk_id = 0;
    t->opk_id = 0;
    commit(r, t);
    return CN_OK;
}
