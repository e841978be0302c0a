/*
 * Sealed blobs (at-rest encryption of the client's home), Argon2id key
 * derivation and safety numbers.
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
#include <string.h>

static int setup(void **state)
{
    (void)state;
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

static void test_seal_open(void **state)
{
    (void)state;
    uint8_t key[32], other[32];
    randombytes_buf(key, 32);
    memcpy(other, key, 32);
    other[0] ^= 1;
    cn_buf_t s, o;
    cn_buf_init(&s);
    cn_buf_init(&o);
    assert_int_equal(cn_seal_blob(key, "session:ab", "secret state", 12, &s), CN_OK);
    for (size_t i = 0; i + 6 <= s.len; i++)
        assert_memory_not_equal(s.data + i, "secret", 6);
    assert_int_equal(cn_open_blob(key, "session:ab", s.data, s.len, &o), CN_OK);
    assert_int_equal(o.len, 12);
    assert_memory_equal(o.data, "secret state", 12);
    assert_int_equal(cn_open_blob(other, "session:ab", s.data, s.len, &o), CN_EAUTH);
    assert_int_equal(cn_open_blob(key, "session:cd", s.data, s.len, &o), CN_EAUTH);
    for (size_t i = 8; i < s.len; i++) {
        s.data[i] ^= 0x40;
        assert_int_equal(cn_open_blob(key, "session:ab", s.data, s.len, &o), CN_EAUTH);
        s.data[i] ^= 0x40;
    }
    s.data[4] = 2;
    assert_int_equal(cn_open_blob(key, "session:ab", s.data, s.len, &o), CN_EVERSION);
    s.data[4] = 1;
    s.data[0] = 'X';
    assert_int_equal(cn_open_blob(key, "session:ab", s.data, s.len, &o), CN_EINVAL);
    assert_int_equal(cn_open_blob(key, "session:ab", s.data, 20, &o), CN_EINVAL);
    cn_buf_wipe(&s);
    cn_buf_wipe(&o);
}

static void test_pwhash(void **state)
{
    (void)state;
    uint8_t salt[16] = {1, 2, 3}, k1[32], k2[32], k3[32];
    uint64_t ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    assert_int_equal(cn_pwhash_derive(k1, "correct horse", 13, salt, ops, mem), CN_OK);
    assert_int_equal(cn_pwhash_derive(k2, "correct horse", 13, salt, ops, mem), CN_OK);
    assert_int_equal(cn_pwhash_derive(k3, "correct horsf", 13, salt, ops, mem), CN_OK);
    assert_memory_equal(k1, k2, 32);
    assert_memory_not_equal(k1, k3, 32);
    assert_int_equal(cn_pwhash_derive(k1, "x", 1, salt, 0, mem), CN_EINVAL);
}

static void test_safety_number(void **state)
{
    (void)state;
    uint8_t a[2 * 32], b[32];
    randombytes_buf(a, sizeof(a));
    randombytes_buf(b, sizeof(b));
    char s1[61], s2[61], s3[61];
    assert_int_equal(cn_safety_number("alice", a, 2, "bob", b, 1, s1), CN_OK);
    assert_int_equal(strlen(s1), 60);
    for (int i = 0; i < 60; i++)
        assert_true(s1[i] >= '0' && s1[i] <= '9');
    /* Same on both sides, whatever the order of the keys. */
    uint8_t swapped[2 * 32];
    memcpy(swapped, a + 32, 32);
    memcpy(swapped + 32, a, 32);
    assert_int_equal(cn_safety_number("bob", b, 1, "alice", swapped, 2, s2), CN_OK);
    assert_string_equal(s1, s2);
    /* A changed key changes it. */
    b[3] ^= 1;
    assert_int_equal(cn_safety_number("alice", a, 2, "bob", b, 1, s3), CN_OK);
    assert_string_not_equal(s1, s3);
    assert_int_equal(cn_safety_number("alice", a, 0, "bob", b, 1, s3), CN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open),
        cmocka_unit_test(test_pwhash),
        cmocka_unit_test(test_safety_number),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
