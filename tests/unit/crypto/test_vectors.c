/*
 * Known answers from tests/vectors: RFC 7748 X25519 (5.2 and 6.1),
 * RFC 5869 HKDF-SHA256 (test cases 1-3) through our HMAC/HKDF, and the
 * RFC 8439 2.8.2 AEAD example through crypto_aead_chacha20poly1305_ietf.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "crypto/cn_crypto.h"
#include "vec_util.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static int setup(void **state)
{
    (void)state;
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

static void test_x25519_rfc7748(void **state)
{
    (void)state;
    vec_record_t *v;
    int n = vec_load("rfc7748_x25519.txt", &v);
    assert_int_equal(n, 5);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        const char *type = vec_get(&v[i], "TYPE");
        assert_non_null(type);
        uint8_t a[32], b[32], out[32], want[32];
        if (strcmp(type, "scalarmult") == 0) {
            assert_int_equal(vec_hex(&v[i], "SCALAR", a, 32), 32);
            assert_int_equal(vec_hex(&v[i], "U", b, 32), 32);
            assert_int_equal(vec_hex(&v[i], "OUT", want, 32), 32);
            assert_int_equal(cn_x25519(out, a, b), CN_OK);
            assert_memory_equal(out, want, 32);
        } else if (strcmp(type, "iterate") == 0) {
            long count = strtol(vec_get(&v[i], "COUNT"), NULL, 10);
            assert_int_equal(vec_hex(&v[i], "OUT", want, 32), 32);
            uint8_t k[32] = {9}, u[32] = {9};
            for (long it = 0; it < count; it++) {
                assert_int_equal(cn_x25519(out, k, u), CN_OK);
                memcpy(u, k, 32);
                memcpy(k, out, 32);
            }
            assert_memory_equal(k, want, 32);
        } else {
            uint8_t apub[32], bpriv[32], bpub[32];
            assert_int_equal(vec_hex(&v[i], "ALICE_PRIV", a, 32), 32);
            assert_int_equal(vec_hex(&v[i], "ALICE_PUB", apub, 32), 32);
            assert_int_equal(vec_hex(&v[i], "BOB_PRIV", bpriv, 32), 32);
            assert_int_equal(vec_hex(&v[i], "BOB_PUB", bpub, 32), 32);
            assert_int_equal(vec_hex(&v[i], "SHARED", want, 32), 32);
            assert_int_equal(crypto_scalarmult_base(out, a), 0);
            assert_memory_equal(out, apub, 32);
            assert_int_equal(crypto_scalarmult_base(out, bpriv), 0);
            assert_memory_equal(out, bpub, 32);
            assert_int_equal(cn_x25519(out, a, bpub), CN_OK);
            assert_memory_equal(out, want, 32);
            assert_int_equal(cn_x25519(out, bpriv, apub), CN_OK);
            assert_memory_equal(out, want, 32);
        }
        checked++;
    }
    assert_int_equal(checked, 5);
    free(v);
}

static void test_x25519_low_order_rejected(void **state)
{
    (void)state;
    uint8_t sk[32], zero[32] = {0}, out[32];
    randombytes_buf(sk, sizeof(sk));
    assert_int_equal(cn_x25519(out, sk, zero), CN_EAUTH);
}

static void test_hkdf_rfc5869(void **state)
{
    (void)state;
    vec_record_t *v;
    int n = vec_load("rfc5869_hkdf.txt", &v);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) {
        uint8_t ikm[128], salt[128], info[128], prk[32], want_prk[32], okm[128], want[128];
        long il = vec_hex(&v[i], "IKM", ikm, sizeof(ikm));
        long sl = vec_hex(&v[i], "SALT", salt, sizeof(salt));
        long fl = vec_hex(&v[i], "INFO", info, sizeof(info));
        long L = strtol(vec_get(&v[i], "L"), NULL, 10);
        assert_true(il > 0 && sl >= 0 && fl >= 0 && L > 0);
        assert_int_equal(vec_hex(&v[i], "PRK", want_prk, 32), 32);
        assert_int_equal(vec_hex(&v[i], "OKM", want, sizeof(want)), L);
        assert_int_equal(cn_hkdf_extract(prk, sl ? salt : NULL, (size_t)sl, ikm, (size_t)il),
                         CN_OK);
        assert_memory_equal(prk, want_prk, 32);
        assert_int_equal(cn_hkdf_expand(okm, (size_t)L, prk, 32, info, (size_t)fl), CN_OK);
        assert_memory_equal(okm, want, (size_t)L);
        memset(okm, 0, sizeof(okm));
        assert_int_equal(
            cn_hkdf(okm, (size_t)L, salt, (size_t)sl, ikm, (size_t)il, info, (size_t)fl), CN_OK);
        assert_memory_equal(okm, want, (size_t)L);
    }
    free(v);
}

static void test_hkdf_limits(void **state)
{
    (void)state;
    uint8_t prk[32] = {1}, out[8];
    assert_int_equal(cn_hkdf_expand(out, CN_HKDF_MAX + 1, prk, 32, NULL, 0), CN_ETOOBIG);
    assert_int_equal(cn_hkdf_expand(out, sizeof(out), prk, 16, NULL, 0), CN_EINVAL);
}

static void test_aead_rfc8439(void **state)
{
    (void)state;
    vec_record_t *v;
    assert_int_equal(vec_load("rfc8439_aead.txt", &v), 1);
    uint8_t key[32], nonce[12], aad[64], pt[256], ct[256], tag[16], out[256 + 16];
    assert_int_equal(vec_hex(v, "KEY", key, 32), 32);
    assert_int_equal(vec_hex(v, "NONCE", nonce, 12), 12);
    long al = vec_hex(v, "AAD", aad, sizeof(aad));
    long pl = vec_hex(v, "PLAINTEXT", pt, sizeof(pt));
    assert_int_equal(vec_hex(v, "CIPHERTEXT", ct, sizeof(ct)), pl);
    assert_int_equal(vec_hex(v, "TAG", tag, 16), 16);
    assert_int_equal(pl, 114);
    unsigned long long clen = 0, plen = 0;
    assert_int_equal(crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, pt, (size_t)pl, aad,
                                                               (size_t)al, NULL, nonce, key),
                     0);
    assert_int_equal(clen, (unsigned long long)pl + 16);
    assert_memory_equal(out, ct, (size_t)pl);
    assert_memory_equal(out + pl, tag, 16);
    uint8_t back[256];
    assert_int_equal(crypto_aead_chacha20poly1305_ietf_decrypt(back, &plen, NULL, out, clen, aad,
                                                               (size_t)al, nonce, key),
                     0);
    assert_memory_equal(back, pt, (size_t)pl);
    out[0] ^= 1; /* a flipped bit fails */
    assert_int_not_equal(crypto_aead_chacha20poly1305_ietf_decrypt(back, &plen, NULL, out, clen,
                                                                   aad, (size_t)al, nonce, key),
                         0);
    free(v);
}

/* The SipHash paper's (Aumasson, Bernstein 2012) appendix A vector: key
 * 00..0f, message 00..0e; and a fresh key changes the hash. */
static void test_table_hash_siphash(void **state)
{
    (void)state;
    uint8_t key[CN_TABLE_KEY_LEN], msg[15];
    for (int i = 0; i < CN_TABLE_KEY_LEN; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    assert_true(cn_table_hash(key, msg, sizeof(msg)) == 0xa129ca6149be45e5ull);
    uint8_t other[CN_TABLE_KEY_LEN];
    cn_table_key_new(other);
    assert_true(cn_table_hash(other, msg, sizeof(msg)) != 0xa129ca6149be45e5ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x25519_rfc7748), cmocka_unit_test(test_x25519_low_order_rejected),
        cmocka_unit_test(test_hkdf_rfc5869),   cmocka_unit_test(test_hkdf_limits),
        cmocka_unit_test(test_aead_rfc8439),   cmocka_unit_test(test_table_hash_siphash),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
