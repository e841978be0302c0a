/*
 * X3DH (Signal, "The X3DH Key Agreement Protocol", revision 1) with
 * X25519 and SHA-256. The identity keys are the devices' Ed25519 keys,
 * converted to X25519 for the DH (X3DH 2.5 allows one key for both, as
 * XEdDSA does; we use libsodium's birational map instead of XEdDSA).
 *
 *   DH1 = DH(IK_A, SPK_B)  DH2 = DH(EK_A, IK_B)  DH3 = DH(EK_A, SPK_B)
 *   DH4 = DH(EK_A, OPK_B)  (only with a one-time prekey)
 *   SK  = HKDF(salt = 32 zero bytes, F ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4], info)
 * with F = 32 0xFF bytes (X3DH 2.2) and info = "chatnode X3DH v1".
 * AD = IK_A ‖ IK_B (Ed25519 encodings), used by the ratchet.
 */
#include "crypto/ratchet_int.h"

#include <sodium.h>
#include <string.h>

#define X3DH_INFO "chatnode X3DH v1"
#define KM_MAX    (5 * CN__KEY)

int cn_prekey_bundle_verify(const cn_prekey_bundle_t *b)
{
    CN_ENSURE(b != NULL, CN_EINVAL);
    cn_buf_t t;
    cn_buf_init(&t);
    int rc = cn_transcript_prekey(&t, b->spk_id, b->spk);
    if (rc == CN_OK)
        rc = cn_sig_verify(b->identity, t.data, t.len, b->spk_sig);
    cn_buf_dispose(&t);
    return rc;
}

/* SK from the concatenated DH outputs (km holds F first). */
static int derive_sk(uint8_t sk[CN__KEY], const uint8_t *km, size_t kmlen)
{
    static const uint8_t salt[CN__KEY] = {0};
    return cn_hkdf(sk, CN__KEY, salt, sizeof(salt), km, kmlen, X3DH_INFO, strlen(X3DH_INFO));
}

/* Secrets of one X3DH run, in one guarded allocation. */
typedef struct x3dh_tmp {
    uint8_t ik_sk[CN__KEY];
    uint8_t km[KM_MAX];
    uint8_t sk[CN__KEY];
    uint8_t dh[CN__KEY];
} x3dh_tmp_t;

static int initiator_secret(const cn_identity_t *me, const cn_prekey_bundle_t *b,
                            const cn_x25519_t *ek, x3dh_tmp_t *t, size_t *kmlen)
{
    uint8_t ik_b[CN__KEY];
    CN_TRY(cn_ed25519_pk_to_x25519(ik_b, b->identity));
    CN_TRY(cn_identity_x25519_sk(me, t->ik_sk));
    memset(t->km, 0xff, CN__KEY);
    CN_TRY(cn_x25519(t->km + 32, t->ik_sk, b->spk));
    CN_TRY(cn_x25519(t->km + 64, ek->sk, ik_b));
    CN_TRY(cn_x25519(t->km + 96, ek->sk, b->spk));
    *kmlen = 128;
    if (b->has_opk) {
        CN_TRY(cn_x25519(t->km + 128, ek->sk, b->opk));
        *kmlen = 160;
    }
    return derive_sk(t->sk, t->km, *kmlen);
}

int cn_x3dh_initiate(const cn_identity_t *me, const cn_prekey_bundle_t *b, cn_ratchet_t **out)
{
    int rc = CN_OK;
    cn_ratchet_t *r = NULL;
    cn_x25519_t ek, dhs;
    memset(&ek, 0, sizeof(ek));
    memset(&dhs, 0, sizeof(dhs));
    *out = NULL;
    CN_ENSURE(me != NULL && me->sk != NULL && b != NULL, CN_EINVAL);
    /* X3DH 3.3: Alice verifies the prekey signature and aborts if it fails. */
    CN_TRY(cn_prekey_bundle_verify(b));
    x3dh_tmp_t *t = sodium_malloc(sizeof(*t));
    CN_ENSURE(t != NULL, CN_ENOMEM);
    size_t kmlen = 0;
    CN_TRY_OUT(cn_x25519_generate(&ek));
    CN_TRY_OUT(initiator_secret(me, b, &ek, t, &kmlen));
    CN_TRY_OUT(cn__ratchet_alloc(CN_RATCHET_MAX_SKIP, &r));
    r->flags = CN__R_INITIATOR | CN__R_PENDING | CN__R_DHR | CN__R_CKS;
    if (b->has_opk) {
        r->flags |= CN__R_OPK;
        r->opk_id = b->opk_id;
    }
    r->spk_id = b->spk_id;
    memcpy(r->local_ik, me->pk, CN__KEY);
    memcpy(r->remote_ik, b->identity, CN__KEY);
    memcpy(r->base_key, ek.pk, CN__KEY);
    /* Double Ratchet 3.3 (RatchetInitAlice): DHr = SPK_B, a fresh DHs. */
    memcpy(r->dhr, b->spk, CN__KEY);
    CN_TRY_OUT(cn_x25519_generate(&dhs));
    memcpy(r->dhs_sk, dhs.sk, CN__KEY);
    memcpy(r->dhs_pk, dhs.pk, CN__KEY);
    memcpy(r->rk, t->sk, CN__KEY);
    CN_TRY_OUT(cn_x25519(t->dh, r->dhs_sk, r->dhr));
    CN_TRY_OUT(cn__kdf_rk(r->rk, r->cks, t->dh));
out:
    cn_x25519_dispose(&ek);
    cn_x25519_dispose(&dhs);
    sodium_free(t);
    if (rc < 0)
        cn_ratchet_free(r);
    else
        *out = r;
    return rc;
}

int cn_x3dh_respond(const cn_identity_t *me, const cn_x25519_t *spk, const cn_x25519_t *opk,
                    const cn_e2e_msg_t *m, cn_ratchet_t **out)
{
    int rc = CN_OK;
    cn_ratchet_t *r = NULL;
    uint8_t ik_a[CN__KEY];
    *out = NULL;
    CN_ENSURE(me != NULL && me->sk != NULL && spk != NULL && spk->sk != NULL && m != NULL,
              CN_EINVAL);
    CN_ENSURE(m->type == CN_E2E_PREKEY_MSG, CN_EINVAL);
    CN_ENSURE(m->has_opk == (opk != NULL), CN_EINVAL);
    CN_ENSURE(opk == NULL || opk->sk != NULL, CN_EINVAL);
    CN_TRY(cn_ed25519_pk_to_x25519(ik_a, m->ik));
    x3dh_tmp_t *t = sodium_malloc(sizeof(*t));
    CN_ENSURE(t != NULL, CN_ENOMEM);
    size_t kmlen = 128;
    CN_TRY_OUT(cn_identity_x25519_sk(me, t->ik_sk));
    memset(t->km, 0xff, CN__KEY);
    CN_TRY_OUT(cn_x25519(t->km + 32, spk->sk, ik_a));
    CN_TRY_OUT(cn_x25519(t->km + 64, t->ik_sk, m->ek));
    CN_TRY_OUT(cn_x25519(t->km + 96, spk->sk, m->ek));
    if (opk != NULL) {
        CN_TRY_OUT(cn_x25519(t->km + 128, opk->sk, m->ek));
        kmlen = 160;
    }
    CN_TRY_OUT(derive_sk(t->sk, t->km, kmlen));
    CN_TRY_OUT(cn__ratchet_alloc(CN_RATCHET_MAX_SKIP, &r));
    /* Double Ratchet 3.3 (RatchetInitBob): DHs = the signed prekey, RK = SK. */
    r->flags = 0;
    memcpy(r->local_ik, me->pk, CN__KEY);
    memcpy(r->remote_ik, m->ik, CN__KEY);
    memcpy(r->base_key, m->ek, CN__KEY);
    memcpy(r->dhs_sk, spk->sk, CN__KEY);
    memcpy(r->dhs_pk, spk->pk, CN__KEY);
    memcpy(r->rk, t->sk, CN__KEY);
out:
    sodium_free(t);
    if (rc < 0)
        cn_ratchet_free(r);
    else
        *out = r;
    return rc;
}
