/*
 * Media encryption: chunked secretstream round trips at the chunk
 * boundaries, digest checks, truncation, reordering and tampering.
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

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ABYTES 17

static int setup(void **state)
{
    (void)state;
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

static void test_roundtrip_sizes(void **state)
{
    (void)state;
    const size_t sizes[] = {
        0, 1, CN_MEDIA_CHUNK - 1, CN_MEDIA_CHUNK, CN_MEDIA_CHUNK + 1, 3 * CN_MEDIA_CHUNK + 7};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        uint8_t *pt = malloc(n + 1), key[32], digest[32];
        randombytes_buf(pt, n);
        cn_buf_t ct, out;
        cn_buf_init(&ct);
        cn_buf_init(&out);
        assert_int_equal(cn_media_encrypt(pt, n, key, digest, &ct), CN_OK);
        size_t chunks = n == 0 ? 1 : (n + CN_MEDIA_CHUNK - 1) / CN_MEDIA_CHUNK;
        assert_int_equal(ct.len, 24 + n + chunks * ABYTES);
        uint8_t h[32];
        crypto_hash_sha256(h, ct.data, ct.len);
        assert_memory_equal(h, digest, 32);
        assert_int_equal(cn_media_decrypt(ct.data, ct.len, key, digest, &out), CN_OK);
        assert_int_equal(out.len, n);
        if (n)
            assert_memory_equal(out.data, pt, n);
        cn_buf_dispose(&ct);
        cn_buf_dispose(&out);
        free(pt);
    }
}

static void test_attacks(void **state)
{
    (void)state;
    size_t n = 2 * CN_MEDIA_CHUNK + 100;
    uint8_t *pt = malloc(n), key[32], digest[32], d2[32];
    randombytes_buf(pt, n);
    cn_buf_t ct, out;
    cn_buf_init(&ct);
    cn_buf_init(&out);
    assert_int_equal(cn_media_encrypt(pt, n, key, digest, &ct), CN_OK);
    /* Wrong digest. */
    memcpy(d2, digest, 32);
    d2[0] ^= 1;
    assert_int_equal(cn_media_decrypt(ct.data, ct.len, key, d2, &out), CN_EAUTH);
    /* Wrong key. */
    uint8_t k2[32];
    memcpy(k2, key, 32);
    k2[5] ^= 1;
    assert_int_equal(cn_media_decrypt(ct.data, ct.len, k2, digest, &out), CN_EAUTH);
    /* Truncated at a chunk boundary, with a digest that matches the truncation. */
    size_t cut = 24 + 2 * (CN_MEDIA_CHUNK + ABYTES);
    crypto_hash_sha256(d2, ct.data, cut);
    assert_int_equal(cn_media_decrypt(ct.data, cut, key, d2, &out), CN_EAUTH);
    assert_int_equal(out.len, 0);
    /* Two chunks swapped (digest recomputed). */
    uint8_t *sw = malloc(ct.len);
    memcpy(sw, ct.data, ct.len);
    memcpy(sw + 24, ct.data + 24 + CN_MEDIA_CHUNK + ABYTES, CN_MEDIA_CHUNK + ABYTES);
    memcpy(sw + 24 + CN_MEDIA_CHUNK + ABYTES, ct.data + 24, CN_MEDIA_CHUNK + ABYTES);
    crypto_hash_sha256(d2, sw, ct.len);
    assert_int_equal(cn_media_decrypt(sw, ct.len, key, d2, &out), CN_EAUTH);
    /* A flipped ciphertext bit with a matching digest. */
    memcpy(sw, ct.data, ct.len);
    sw[ct.len - 3] ^= 4;
    crypto_hash_sha256(d2, sw, ct.len);
    assert_int_equal(cn_media_decrypt(sw, ct.len, key, d2, &out), CN_EAUTH);
    assert_int_equal(cn_media_decrypt(ct.data, 10, key, digest, &out), CN_EINVAL);
    free(sw);
    free(pt);
    cn_buf_dispose(&ct);
    cn_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_sizes),
        cmocka_unit_test(test_attacks),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
