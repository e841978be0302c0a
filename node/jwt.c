/*
 * JWT verification for registration. The signature is checked before the
 * claims are trusted, over the exact bytes "header.payload" (RFC 7515
 * 5.2); header and payload JSON are parsed with jansson and every claim is
 * type-checked. alg "none" and any algorithm not configured are refused.
 */
#include "node/jwt.h"

#include "crypto/cn_crypto.h"

#include <jansson.h>
#include <string.h>

#define SEGMENT_MAX 3072 /* decoded header or payload */

static int fail(const char **why, const char *reason, int rc)
{
    *why = reason;
    return rc;
}

/* Splits header.payload.signature without copying. */
static int split(const char *t, size_t len, size_t dots[2])
{
    const char *a = memchr(t, '.', len);
    CN_ENSURE(a, CN_EINVAL);
    const char *b = memchr(a + 1, '.', len - (size_t)(a + 1 - t));
    CN_ENSURE(b && !memchr(b + 1, '.', len - (size_t)(b + 1 - t)), CN_EINVAL);
    dots[0] = (size_t)(a - t);
    dots[1] = (size_t)(b - t);
    return CN_OK;
}

static json_t *decode_json(const char *seg, size_t len)
{
    uint8_t raw[SEGMENT_MAX];
    size_t n;
    if (cn_base64url_decode(seg, len, raw, sizeof(raw), &n) < 0)
        return NULL;
    json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int check_signature(const char *t, const size_t dots[2], const char *alg,
                           const cn_jwt_keys_t *k, const char **why)
{
    uint8_t sig[128];
    size_t siglen;
    const char *s = t + dots[1] + 1;
    if (cn_base64url_decode(s, strlen(s), sig, sizeof(sig), &siglen) < 0)
        return fail(why, "malformed signature", CN_EINVAL);
    if (strcmp(alg, "HS256") == 0) {
        uint8_t mac[CN_SHA256_LEN];
        if (k->hs256_len == 0)
            return fail(why, "HS256 not configured", CN_EAUTH);
        CN_TRY(cn_hmac_sha256(mac, k->hs256, k->hs256_len, t, dots[1]));
        if (siglen != sizeof(mac) || !cn_equal_ct(mac, sig, sizeof(mac)))
            return fail(why, "bad signature", CN_EAUTH);
        return CN_OK;
    }
    if (strcmp(alg, "EdDSA") == 0) {
        if (!k->has_ed25519)
            return fail(why, "EdDSA not configured", CN_EAUTH);
        if (siglen != CN_SIGNATURE_LEN || cn_sig_verify(k->ed25519, t, dots[1], sig) < 0)
            return fail(why, "bad signature", CN_EAUTH);
        return CN_OK;
    }
    return fail(why, "unsupported alg", CN_EAUTH);
}

static bool aud_matches(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud) || json_array_size(aud) > 16)
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v) if (json_is_string(v) &&
                                      strcmp(json_string_value(v), want) == 0) return true;
    return false;
}

static int check_time(const json_t *p, const cn_jwt_keys_t *k, uint64_t now, cn_jwt_claims_t *c,
                      const char **why)
{
    const json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf");
    if (!json_is_integer(exp) || json_integer_value(exp) <= 0)
        return fail(why, "exp missing", CN_EINVAL);
    c->exp = (uint64_t)json_integer_value(exp);
    if (c->exp + k->leeway_s <= now)
        return fail(why, "expired", CN_EAUTH);
    if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) < 0))
        return fail(why, "malformed nbf", CN_EINVAL);
    if (nbf && (uint64_t)json_integer_value(nbf) > now + k->leeway_s)
        return fail(why, "not yet valid", CN_EAUTH);
    return CN_OK;
}

static int check_claims(const json_t *p, const cn_jwt_keys_t *k, uint64_t now, cn_jwt_claims_t *c,
                        const char **why)
{
    const json_t *iss = json_object_get(p, "iss"), *sub = json_object_get(p, "sub");
    const json_t *jti = json_object_get(p, "jti");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), k->issuer) != 0)
        return fail(why, "wrong issuer", CN_EAUTH);
    if (!aud_matches(json_object_get(p, "aud"), k->audience))
        return fail(why, "wrong audience", CN_EAUTH);
    CN_TRY(check_time(p, k, now, c, why));
    if (!json_is_string(jti) || json_string_length(jti) == 0 ||
        json_string_length(jti) > CN_JWT_JTI_MAX)
        return fail(why, "jti missing or too long", CN_EINVAL);
    memcpy(c->jti, json_string_value(jti), json_string_length(jti) + 1);
    for (const char *q = c->jti; *q; q++)
        if (*q < 0x21 || *q > 0x7e)
            return fail(why, "jti must be printable ASCII", CN_EINVAL);
    if (!json_is_string(sub) || cn_handle_normalize(json_string_value(sub), c->sub) < 0)
        return fail(why, "sub is not a valid handle", CN_EINVAL);
    return CN_OK;
}

int cn__jwt_verify(const char *token, const cn_jwt_keys_t *keys, uint64_t now_s,
                   cn_jwt_claims_t *claims, const char **why)
{
    size_t len = strnlen(token, CN_JWT_MAX + 1), dots[2];
    memset(claims, 0, sizeof(*claims));
    if (len > CN_JWT_MAX)
        return fail(why, "token too long", CN_ETOOBIG);
    if (split(token, len, dots) < 0)
        return fail(why, "not a compact JWT", CN_EINVAL);
    json_t *h = decode_json(token, dots[0]);
    json_t *p = decode_json(token + dots[0] + 1, dots[1] - dots[0] - 1);
    int rc;
    const json_t *alg = h ? json_object_get(h, "alg") : NULL,
                 *crit = h ? json_object_get(h, "crit") : NULL;
    if (!h || !p || !json_is_string(alg))
        rc = fail(why, "malformed header or payload", CN_EINVAL);
    else if (crit) /* RFC 7515 4.1.11: we understand no extension */
        rc = fail(why, "unsupported crit header", CN_EAUTH);
    else if ((rc = check_signature(token, dots, json_string_value(alg), keys, why)) == CN_OK)
        rc = check_claims(p, keys, now_s, claims, why);
    json_decref(h);
    json_decref(p);
    return rc;
}
