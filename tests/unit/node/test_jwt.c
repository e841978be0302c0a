/* Registration JWTs: HS256 and EdDSA, every claim check, malformed tokens. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "crypto/cn_crypto.h"
#include "node/jwt.h"

#include <sodium.h>

#define NOW 1800000000ull

static const char SECRET[] = "0123456789abcdef0123456789abcdef-secret";
static cn_identity_t g_idp;
static cn_jwt_keys_t g_keys;

static void b64(char *out, size_t cap, const void *in, size_t n)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Builds header.payload.signature; alg "HS256", "EdDSA" or anything else
 * (then signed with HMAC as well, to test refusal). */
static void make(char *tok, size_t cap, const char *header, const char *payload, bool ed)
{
    char h[512], p[1024];
    b64(h, sizeof(h), header, strlen(header));
    b64(p, sizeof(p), payload, strlen(payload));
    int n = snprintf(tok, cap, "%s.%s", h, p);
    uint8_t sig[64];
    size_t siglen = 32;
    if (ed) {
        assert_int_equal(cn_identity_sign(&g_idp, tok, (size_t)n, sig), CN_OK);
        siglen = 64;
    } else {
        assert_int_equal(cn_hmac_sha256(sig, SECRET, strlen(SECRET), tok, (size_t)n), CN_OK);
    }
    char s[128];
    b64(s, sizeof(s), sig, siglen);
    snprintf(tok + n, cap - (size_t)n, ".%s", s);
}

static const char HS[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char ED[] = "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}";

static int verify(const char *tok, cn_jwt_claims_t *c, const char **why)
{
    return cn__jwt_verify(tok, &g_keys, NOW, c, why);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(cn_crypto_init(), CN_OK);
    assert_int_equal(cn_identity_generate(&g_idp), CN_OK);
    memset(&g_keys, 0, sizeof(g_keys));
    memcpy(g_keys.hs256, SECRET, strlen(SECRET));
    g_keys.hs256_len = strlen(SECRET);
    g_keys.has_ed25519 = true;
    memcpy(g_keys.ed25519, g_idp.pk, 32);
    strcpy(g_keys.issuer, "https://idp.example");
    strcpy(g_keys.audience, "chatnode");
    g_keys.leeway_s = 60;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cn_identity_dispose(&g_idp);
    return 0;
}

static const char GOOD[] =
    "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"Alice\","
    "\"exp\":1800000600,\"nbf\":1799999000,\"jti\":\"id-1\"}";

static void test_valid_hs256_and_eddsa(void **state)
{
    (void)state;
    char tok[2048];
    cn_jwt_claims_t c;
    const char *why = NULL;
    make(tok, sizeof(tok), HS, GOOD, false);
    assert_int_equal(verify(tok, &c, &why), CN_OK);
    assert_string_equal(c.sub, "alice"); /* normalized */
    assert_string_equal(c.jti, "id-1");
    assert_int_equal(c.exp, 1800000600);
    make(tok, sizeof(tok), ED, GOOD, true);
    assert_int_equal(verify(tok, &c, &why), CN_OK);
    /* aud may be an array holding ours. */
    make(tok, sizeof(tok), HS,
         "{\"iss\":\"https://idp.example\",\"aud\":[\"x\",\"chatnode\"],\"sub\":\"bob\","
         "\"exp\":1800000600,\"jti\":\"2\"}",
         false);
    assert_int_equal(verify(tok, &c, &why), CN_OK);
}

static void expect(const char *header, const char *payload, bool ed, int rc, const char *reason)
{
    char tok[2048];
    cn_jwt_claims_t c;
    const char *why = NULL;
    make(tok, sizeof(tok), header, payload, ed);
    assert_int_equal(verify(tok, &c, &why), rc);
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static void test_claims_refused(void **state)
{
    (void)state;
    expect(
        HS,
        "{\"iss\":\"evil\",\"aud\":\"chatnode\",\"sub\":\"a1c\",\"exp\":1800000600,\"jti\":\"1\"}",
        false, CN_EAUTH, "wrong issuer");
    expect(HS,
           "{\"iss\":\"https://idp.example\",\"aud\":\"other\",\"sub\":\"a1c\",\"exp\":1800000600,"
           "\"jti\":\"1\"}",
           false, CN_EAUTH, "wrong audience");
    expect(
        HS,
        "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"a1c\",\"exp\":1799999000,"
        "\"jti\":\"1\"}",
        false, CN_EAUTH, "expired");
    expect(
        HS,
        "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"a1c\",\"exp\":1800000600,"
        "\"nbf\":1800001000,\"jti\":\"1\"}",
        false, CN_EAUTH, "not yet valid");
    expect(HS,
           "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"a1c\",\"jti\":\"1\"}",
           false, CN_EINVAL, "exp missing");
    expect(
        HS,
        "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"a1c\",\"exp\":1800000600}",
        false, CN_EINVAL, "jti missing or too long");
    expect(HS,
           "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"no way!\","
           "\"exp\":1800000600,\"jti\":\"1\"}",
           false, CN_EINVAL, "sub is not a valid handle");
    /* Within the leeway an expired token still passes. */
    char tok[2048];
    cn_jwt_claims_t c;
    const char *why;
    make(tok, sizeof(tok), HS,
         "{\"iss\":\"https://idp.example\",\"aud\":\"chatnode\",\"sub\":\"a1c\","
         "\"exp\":1799999990,\"jti\":\"1\"}",
         false);
    assert_int_equal(verify(tok, &c, &why), CN_OK);
}

static void test_signatures_refused(void **state)
{
    (void)state;
    expect("{\"alg\":\"none\"}", GOOD, false, CN_EAUTH, "unsupported alg");
    expect("{\"alg\":\"RS256\"}", GOOD, false, CN_EAUTH, "unsupported alg");
    expect("{\"alg\":\"HS256\",\"crit\":[\"x\"]}", GOOD, false, CN_EAUTH,
           "unsupported crit header");
    expect(ED, GOOD, false, CN_EAUTH, "bad signature"); /* HMAC bytes under EdDSA */
    expect(HS, GOOD, true, CN_EAUTH, "bad signature");  /* Ed25519 bytes under HS256 */
    char tok[2048];
    cn_jwt_claims_t c;
    const char *why;
    make(tok, sizeof(tok), HS, GOOD, false);
    for (size_t i = 0; tok[i]; i++) { /* any changed character fails */
        char saved = tok[i];
        tok[i] = saved == 'A' ? 'B' : 'A';
        assert_int_not_equal(verify(tok, &c, &why), CN_OK);
        tok[i] = saved;
    }
    cn_jwt_keys_t none = g_keys;
    none.hs256_len = 0;
    assert_int_equal(cn__jwt_verify(tok, &none, NOW, &c, &why), CN_EAUTH);
    assert_string_equal(why, "HS256 not configured");
}

static void test_malformed(void **state)
{
    (void)state;
    cn_jwt_claims_t c;
    const char *why;
    static const char *const bad[] = {
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "...",
        "!!.??.**",
        "eyJhbGciOiJIUzI1NiJ9.W10.AAAA",         /* [] body */
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA", /* "not json" */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(verify(bad[i], &c, &why), CN_OK);
    char huge[CN_JWT_MAX + 10];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(verify(huge, &c, &why), CN_ETOOBIG);
    /* Duplicate claims are refused rather than resolved. */
    expect(HS,
           "{\"iss\":\"https://idp.example\",\"iss\":\"evil\",\"aud\":\"chatnode\",\"sub\":\"a1c\","
           "\"exp\":1800000600,\"jti\":\"1\"}",
           false, CN_EINVAL, "malformed header or payload");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hs256_and_eddsa),
        cmocka_unit_test(test_claims_refused),
        cmocka_unit_test(test_signatures_refused),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
