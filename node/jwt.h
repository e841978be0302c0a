/**
 * Internal to node/: verification of registration JWTs (RFC 7519) from an
 * external identity provider, for registration policy `jwt`. Sans-I/O:
 * token, keys and clock in; claims or a precise refusal out.
 *
 * Accepted: alg HS256 (HMAC-SHA256, RFC 7518 3.2) and alg EdDSA with
 * Ed25519 (RFC 8037), compact serialization only. Checked: signature,
 * iss, aud (string or array), exp (required), nbf, and a jti (required,
 * single use: the caller records it). The subject (`sub`) is the handle.
 */
#ifndef CN_NODE_JWT_H
#define CN_NODE_JWT_H

#include "common/cn_common.h"
#include "proto/cn_proto.h"

#define CN_JWT_MAX           4096 /* compact token length */
#define CN_JWT_JTI_MAX       64
#define CN_JWT_HS256_KEY_MAX 128
#define CN_JWT_CLAIM_MAX     256 /* iss / aud strings */

typedef struct cn_jwt_keys {
    uint8_t hs256[CN_JWT_HS256_KEY_MAX]; /* shared secret (empty: HS256 refused) */
    size_t hs256_len;
    bool has_ed25519;
    uint8_t ed25519[32];                 /* the provider's public key */
    char issuer[CN_JWT_CLAIM_MAX + 1];   /* required iss */
    char audience[CN_JWT_CLAIM_MAX + 1]; /* required in aud */
    uint32_t leeway_s;                   /* clock skew allowed on exp/nbf */
} cn_jwt_keys_t;

typedef struct cn_jwt_claims {
    char sub[CN_HANDLE_MAX + 1]; /* normalized handle */
    char jti[CN_JWT_JTI_MAX + 1];
    uint64_t exp;
} cn_jwt_claims_t;

/**
 * Verifies token at time now_s (seconds since the epoch). Returns CN_OK
 * with claims, or CN_EAUTH / CN_EINVAL / CN_ETOOBIG with *why set to a
 * static, loggable reason ("bad signature", "expired", ...).
 */
CN_MUST_USE int cn__jwt_verify(const char *token, const cn_jwt_keys_t *keys, uint64_t now_s,
                               cn_jwt_claims_t *claims, const char **why);

#endif /* CN_NODE_JWT_H */
