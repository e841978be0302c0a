/*
 * Wire messages and the serialized ratchet state (docs/E2E.md).
 *
 * Message, version 1 (big-endian integers):
 *   version u8 = 1 ‖ type u8
 *   type 1 (prekey): IK_A (32) ‖ EK_A (32) ‖ spk_id u32 ‖ has_opk u8 (0|1)
 *                    ‖ opk_id u32 (0 when has_opk = 0)
 *   then the ratchet header: DHs (32) ‖ PN u32 ‖ N u32
 *   ‖ XChaCha20-Poly1305 ciphertext ‖ tag (16)
 *
 * State, version 1:
 *   "CNRS" ‖ version u8 = 1 ‖ flags u8 ‖ reserved u16 = 0
 *   ‖ DHs sk ‖ DHs pk ‖ DHr ‖ RK ‖ CKs ‖ CKr (6 × 32) ‖ Ns ‖ Nr ‖ PN (u32)
 *   ‖ local IK ‖ remote IK ‖ base key (3 × 32) ‖ spk_id u32 ‖ opk_id u32
 *   ‖ max_skip u32 ‖ nskipped u32 ‖ nskipped × (DH (32) ‖ N u32 ‖ MK (32))
 * Every field a flag says is absent must be zero, so that one state has
 * exactly one encoding.
 */
#include "crypto/ratchet_int.h"

#include <sodium.h>
#include <string.h>

#define STATE_MAGIC "CNRS"
#define STATE_VER   1
#define STATE_FIXED (8 + 6 * 32 + 12 + 3 * 32 + 8 + 8)
#define SKIP_ENTRY  (32 + 4 + 32)
#define STATE_MAX   (STATE_FIXED + (size_t)CN_RATCHET_SKIP_HARD_MAX * SKIP_ENTRY)

int cn_e2e_msg_parse(const uint8_t *p, size_t n, cn_e2e_msg_t *out)
{
    cn_cursor_t c;
    uint8_t ver, flag;
    CN_ENSURE(p != NULL && out != NULL, CN_EINVAL);
    memset(out, 0, sizeof(*out));
    cn_cursor_init(&c, p, n);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == CN_E2E_VERSION, CN_EVERSION);
    CN_ENSURE(cn_cursor_u8(&c, &out->type) == CN_OK, CN_EINVAL);
    CN_ENSURE(out->type == CN_E2E_PREKEY_MSG || out->type == CN_E2E_RATCHET_MSG, CN_EINVAL);
    if (out->type == CN_E2E_PREKEY_MSG) {
        CN_ENSURE(cn_cursor_copy(&c, out->ik, sizeof(out->ik)) == CN_OK, CN_EINVAL);
        CN_ENSURE(cn_cursor_copy(&c, out->ek, sizeof(out->ek)) == CN_OK, CN_EINVAL);
        CN_ENSURE(cn_cursor_u32be(&c, &out->spk_id) == CN_OK, CN_EINVAL);
        CN_ENSURE(cn_cursor_u8(&c, &flag) == CN_OK && flag <= 1, CN_EINVAL);
        out->has_opk = flag == 1;
        CN_ENSURE(cn_cursor_u32be(&c, &out->opk_id) == CN_OK, CN_EINVAL);
        CN_ENSURE(out->has_opk || out->opk_id == 0, CN_EINVAL);
    }
    CN_ENSURE(cn_cursor_copy(&c, out->dh, sizeof(out->dh)) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(&c, &out->pn) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(&c, &out->n) == CN_OK, CN_EINVAL);
    out->header = p;
    out->header_len = c.pos;
    size_t left = cn_cursor_left(&c);
    CN_ENSURE(left >= CN_E2E_TAG_LEN, CN_EINVAL);
    CN_ENSURE(left <= CN_E2E_PLAINTEXT_MAX + CN_E2E_TAG_LEN, CN_ETOOBIG);
    out->ct = p + c.pos;
    out->ct_len = left;
    return CN_OK;
}

/* ------------------------------------------------------------- state */

int cn_ratchet_encode(const cn_ratchet_t *r, cn_buf_t *out)
{
    CN_ENSURE(r != NULL && out != NULL, CN_EINVAL);
    /* Reserved up front so that no key bytes are left behind by a realloc. */
    CN_TRY(cn_buf_reserve(out, STATE_FIXED + (size_t)r->nskipped * SKIP_ENTRY));
    CN_TRY(cn_buf_append(out, STATE_MAGIC, 4));
    CN_TRY(cn_buf_put_u8(out, STATE_VER));
    CN_TRY(cn_buf_put_u8(out, r->flags));
    CN_TRY(cn_buf_put_u16be(out, 0));
    const uint8_t *keys[] = {r->dhs_sk, r->dhs_pk, r->dhr, r->rk, r->cks, r->ckr};
    for (size_t i = 0; i < CN_ARRAY_LEN(keys); i++)
        CN_TRY(cn_buf_append(out, keys[i], CN__KEY));
    CN_TRY(cn_buf_put_u32be(out, r->ns));
    CN_TRY(cn_buf_put_u32be(out, r->nr));
    CN_TRY(cn_buf_put_u32be(out, r->pn));
    CN_TRY(cn_buf_append(out, r->local_ik, CN__KEY));
    CN_TRY(cn_buf_append(out, r->remote_ik, CN__KEY));
    CN_TRY(cn_buf_append(out, r->base_key, CN__KEY));
    CN_TRY(cn_buf_put_u32be(out, r->spk_id));
    CN_TRY(cn_buf_put_u32be(out, r->opk_id));
    CN_TRY(cn_buf_put_u32be(out, r->max_skip));
    CN_TRY(cn_buf_put_u32be(out, r->nskipped));
    for (uint32_t i = 0; i < r->nskipped; i++) {
        CN_TRY(cn_buf_append(out, r->skipped[i].dh, CN__KEY));
        CN_TRY(cn_buf_put_u32be(out, r->skipped[i].n));
        CN_TRY(cn_buf_append(out, r->skipped[i].mk, CN__KEY));
    }
    return CN_OK;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return sodium_is_zero(p, n) == 1;
}

/* Cross-field checks: absent fields are zero, flags agree. */
static int state_check(const cn_ratchet_t *r)
{
    uint8_t f = r->flags, pk[CN__KEY];
    CN_ENSURE((f & ~CN__R_ALL) == 0, CN_EINVAL);
    CN_ENSURE(!(f & CN__R_PENDING) || (f & CN__R_INITIATOR), CN_EINVAL);
    CN_ENSURE(!(f & CN__R_OPK) || (f & CN__R_PENDING), CN_EINVAL);
    CN_ENSURE((f & CN__R_PENDING) || (r->spk_id == 0 && r->opk_id == 0), CN_EINVAL);
    CN_ENSURE((f & CN__R_OPK) || r->opk_id == 0, CN_EINVAL);
    CN_ENSURE((f & CN__R_DHR) || all_zero(r->dhr, CN__KEY), CN_EINVAL);
    CN_ENSURE((f & CN__R_CKS) || (all_zero(r->cks, CN__KEY) && r->ns == 0), CN_EINVAL);
    CN_ENSURE((f & CN__R_CKR) || (all_zero(r->ckr, CN__KEY) && r->nr == 0), CN_EINVAL);
    CN_ENSURE(!(f & CN__R_CKR) || (f & CN__R_DHR), CN_EINVAL);
    CN_ENSURE(r->nskipped <= r->max_skip, CN_EINVAL);
    /* The stored public half must belong to the secret half. */
    CN_ENSURE(crypto_scalarmult_base(pk, r->dhs_sk) == 0, CN_EINVAL);
    CN_ENSURE(sodium_memcmp(pk, r->dhs_pk, CN__KEY) == 0, CN_EINVAL);
    return CN_OK;
}

static int state_fields(cn_cursor_t *c, cn_ratchet_t *r)
{
    uint8_t *keys[] = {r->dhs_sk, r->dhs_pk, r->dhr, r->rk, r->cks, r->ckr};
    for (size_t i = 0; i < CN_ARRAY_LEN(keys); i++)
        CN_ENSURE(cn_cursor_copy(c, keys[i], CN__KEY) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(c, &r->ns) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(c, &r->nr) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(c, &r->pn) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(c, r->local_ik, CN__KEY) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(c, r->remote_ik, CN__KEY) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(c, r->base_key, CN__KEY) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(c, &r->spk_id) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(c, &r->opk_id) == CN_OK, CN_EINVAL);
    return CN_OK;
}

int cn_ratchet_decode(const uint8_t *p, size_t n, cn_ratchet_t **out)
{
    int rc = CN_OK;
    cn_cursor_t c;
    uint8_t magic[4], ver, flags;
    uint16_t reserved;
    uint32_t max_skip, nskipped;
    cn_ratchet_t *r = NULL;
    CN_ENSURE(p != NULL && out != NULL, CN_EINVAL);
    *out = NULL;
    CN_ENSURE(n <= STATE_MAX, CN_ETOOBIG);
    CN_ENSURE(n >= STATE_FIXED, CN_EINVAL);
    cn_cursor_init(&c, p, n);
    CN_ENSURE(cn_cursor_copy(&c, magic, 4) == CN_OK && memcmp(magic, STATE_MAGIC, 4) == 0,
              CN_EINVAL);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == STATE_VER, CN_EVERSION);
    CN_ENSURE(cn_cursor_u8(&c, &flags) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u16be(&c, &reserved) == CN_OK && reserved == 0, CN_EINVAL);
    /* max_skip sits after the fixed fields; read it first to size the state. */
    cn_cursor_t look = c;
    look.pos = STATE_FIXED - 8;
    CN_ENSURE(cn_cursor_u32be(&look, &max_skip) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(&look, &nskipped) == CN_OK, CN_EINVAL);
    CN_ENSURE(max_skip >= 1 && max_skip <= CN_RATCHET_SKIP_HARD_MAX, CN_EINVAL);
    CN_ENSURE(nskipped <= max_skip, CN_EINVAL);
    CN_ENSURE(n == STATE_FIXED + (size_t)nskipped * SKIP_ENTRY, CN_EINVAL);
    CN_TRY(cn__ratchet_alloc(max_skip, &r));
    r->flags = flags;
    CN_TRY_OUT(state_fields(&c, r));
    c.pos = STATE_FIXED;
    r->nskipped = nskipped;
    for (uint32_t i = 0; i < nskipped; i++) {
        cn__skipped_t *s = &r->skipped[i];
        CN_ENSURE_OUT(cn_cursor_copy(&c, s->dh, CN__KEY) == CN_OK, CN_EINVAL);
        CN_ENSURE_OUT(cn_cursor_u32be(&c, &s->n) == CN_OK, CN_EINVAL);
        CN_ENSURE_OUT(cn_cursor_copy(&c, s->mk, CN__KEY) == CN_OK, CN_EINVAL);
    }
    CN_ENSURE_OUT(cn_cursor_left(&c) == 0, CN_EINVAL);
    CN_TRY_OUT(state_check(r));
out:
    if (rc < 0)
        cn_ratchet_free(r);
    else
        *out = r;
    return rc;
}
