/*
 * Internals of the Double Ratchet shared by x3dh.c, ratchet.c and
 * ratchet_codec.c. Not part of the public header.
 */
#ifndef CN_RATCHET_INT_H
#define CN_RATCHET_INT_H

#include "crypto/cn_crypto.h"

/* State flags (also the encoded flags byte). */
#define CN__R_INITIATOR 0x01 /* we ran X3DH as Alice */
#define CN__R_PENDING   0x02 /* initiator: no reply yet, send prekey messages */
#define CN__R_OPK       0x04 /* pending X3DH used a one-time prekey */
#define CN__R_DHR       0x08 /* dhr is set */
#define CN__R_CKS       0x10 /* cks is set */
#define CN__R_CKR       0x20 /* ckr is set */
#define CN__R_ALL       0x3f

#define CN__KEY 32

typedef struct cn__skipped {
    uint8_t dh[CN__KEY];
    uint32_t n;
    uint8_t mk[CN__KEY];
} cn__skipped_t;

/* The whole struct lives in sodium_malloc memory, as does skipped. */
struct cn_ratchet {
    uint8_t flags;
    uint8_t dhs_sk[CN__KEY], dhs_pk[CN__KEY];
    uint8_t dhr[CN__KEY];
    uint8_t rk[CN__KEY], cks[CN__KEY], ckr[CN__KEY];
    uint32_t ns, nr, pn;
    uint8_t local_ik[CN__KEY], remote_ik[CN__KEY];
    uint8_t base_key[CN__KEY]; /* X3DH ephemeral: ours (initiator) or the peer's */
    uint32_t spk_id, opk_id;   /* initiator, while pending */
    uint32_t max_skip, nskipped;
    cn__skipped_t *skipped; /* capacity max_skip, oldest first */
};

/** A zeroed state with room for max_skip skipped keys. */
CN_MUST_USE int cn__ratchet_alloc(uint32_t max_skip, cn_ratchet_t **out);
/** KDF_RK (Double Ratchet 5.2): HKDF(salt = rk, ikm = dh_out) -> rk', ck. */
CN_MUST_USE int cn__kdf_rk(uint8_t rk[CN__KEY], uint8_t ck[CN__KEY], const uint8_t dh_out[CN__KEY]);
/** KDF_CK (Double Ratchet 5.2): mk = HMAC(ck, 0x01), ck' = HMAC(ck, 0x02). */
CN_MUST_USE int cn__kdf_ck(uint8_t ck[CN__KEY], uint8_t mk[CN__KEY]);
/** Writes the wire header (everything before the ciphertext) of the next
 * message sent by r with counter n; returns its length. */
size_t cn__ratchet_header(const cn_ratchet_t *r, uint32_t n, uint8_t *out);
/** The session's associated data: initiator identity ‖ responder identity. */
void cn__ratchet_ad(const cn_ratchet_t *r, uint8_t ad[2 * CN__KEY]);
/** Length of the longest header. */
#define CN__HDR_MAX (2 + 32 + 32 + 4 + 1 + 4 + 32 + 4 + 4)

#endif /* CN_RATCHET_INT_H */
