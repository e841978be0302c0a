/*
 * Identity: RFC 8032 section 7.1 known answers (parsed from
 * tests/vectors/rfc8032_ed25519.txt), key file round trip and every way a
 * key file can be broken.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CN_VECTORS_DIR
#error "CN_VECTORS_DIR must point at tests/vectors"
#endif

#define KEYFILE_LEN 72

typedef struct vector {
    uint8_t seed[32];
    uint8_t pk[32];
    uint8_t msg[64];
    size_t msg_len;
    uint8_t sig[64];
} vector_t;

static char g_dir[256];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/cn_test_identity.XXXXXX");
    return mkdtemp(g_dir) != NULL && cn_crypto_init() == CN_OK ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* Parses "NAME: hex" into out (exactly n bytes, or up to n for the message). */
static void parse_hex_field(const char *line, uint8_t *out, size_t n, size_t *got)
{
    const char *colon = strchr(line, ':');
    assert_non_null(colon);
    const char *hex = colon + 1;
    while (*hex == ' ')
        hex++;
    size_t len = strcspn(hex, "\r\n");
    assert_true(len % 2 == 0 && len / 2 <= n);
    char tmp[256];
    memcpy(tmp, hex, len);
    tmp[len] = '\0';
    assert_int_equal(cn_hex_decode(out, len / 2, tmp), CN_OK);
    if (got)
        *got = len / 2;
    else
        assert_int_equal(len / 2, n);
}

static size_t load_vectors(vector_t *v, size_t max)
{
    FILE *f = fopen(CN_VECTORS_DIR "/rfc8032_ed25519.txt", "r");
    assert_non_null(f);
    char line[512];
    size_t count = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "TEST:", 5) == 0) {
            assert_true(count < max);
            memset(&v[count++], 0, sizeof(*v));
        } else if (strncmp(line, "SECRET KEY:", 11) == 0) {
            parse_hex_field(line, v[count - 1].seed, 32, NULL);
        } else if (strncmp(line, "PUBLIC KEY:", 11) == 0) {
            parse_hex_field(line, v[count - 1].pk, 32, NULL);
        } else if (strncmp(line, "MESSAGE:", 8) == 0) {
            parse_hex_field(line, v[count - 1].msg, 64, &v[count - 1].msg_len);
        } else if (strncmp(line, "SIGNATURE:", 10) == 0) {
            parse_hex_field(line, v[count - 1].sig, 64, NULL);
        }
    }
    fclose(f);
    return count;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Our key file format: "CNID" ‖ 1 ‖ 0 0 0 ‖ seed ‖ pk. */
static void make_image(uint8_t img[KEYFILE_LEN], const uint8_t seed[32], const uint8_t pk[32])
{
    memcpy(img, "CNID", 4);
    img[4] = 1;
    img[5] = img[6] = img[7] = 0;
    memcpy(img + 8, seed, 32);
    memcpy(img + 40, pk, 32);
}

static void test_rfc8032_vectors(void **state)
{
    (void)state;
    vector_t v[3];
    assert_int_equal(load_vectors(v, 3), 3);
    for (size_t i = 0; i < 3; i++) {
        char path[512];
        uint8_t img[KEYFILE_LEN], sig[64];
        cn_identity_t id;
        path_in_dir(path, sizeof(path), "rfc.key");
        make_image(img, v[i].seed, v[i].pk);
        write_file(path, img, sizeof(img));
        assert_int_equal(cn_identity_load(path, &id), CN_OK);
        assert_memory_equal(id.pk, v[i].pk, 32);
        assert_int_equal(cn_identity_sign(&id, v[i].msg, v[i].msg_len, sig), CN_OK);
        assert_memory_equal(sig, v[i].sig, 64);
        assert_int_equal(cn_sig_verify(v[i].pk, v[i].msg, v[i].msg_len, v[i].sig), CN_OK);
        cn_identity_dispose(&id);
        assert_null(id.sk);
    }
}

static void test_rfc8032_negative(void **state)
{
    (void)state;
    vector_t v[3];
    assert_int_equal(load_vectors(v, 3), 3);
    for (size_t i = 0; i < 3; i++) {
        for (size_t bit = 0; bit < 512; bit += 37) {
            uint8_t sig[64];
            memcpy(sig, v[i].sig, 64);
            sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_int_equal(cn_sig_verify(v[i].pk, v[i].msg, v[i].msg_len, sig), CN_EAUTH);
        }
        uint8_t pk[32];
        memcpy(pk, v[i].pk, 32);
        pk[5] ^= 0x01;
        assert_int_equal(cn_sig_verify(pk, v[i].msg, v[i].msg_len, v[i].sig), CN_EAUTH);
        if (v[i].msg_len > 0) {
            uint8_t msg[64];
            memcpy(msg, v[i].msg, v[i].msg_len);
            msg[0] ^= 0x80;
            assert_int_equal(cn_sig_verify(v[i].pk, msg, v[i].msg_len, v[i].sig), CN_EAUTH);
        }
        /* An extra byte is a different message. */
        uint8_t longer[65] = {0};
        memcpy(longer, v[i].msg, v[i].msg_len);
        assert_int_equal(cn_sig_verify(v[i].pk, longer, v[i].msg_len + 1, v[i].sig), CN_EAUTH);
    }
}

static void test_save_load_roundtrip(void **state)
{
    (void)state;
    char path[512];
    path_in_dir(path, sizeof(path), "device.key");
    cn_identity_t a, b;
    assert_int_equal(cn_identity_generate(&a), CN_OK);
    assert_int_equal(cn_identity_save(&a, path), CN_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, KEYFILE_LEN);
    assert_int_equal(cn_identity_load(path, &b), CN_OK);
    assert_memory_equal(a.pk, b.pk, 32);
    uint8_t sig[64];
    const char msg[] = "hello";
    assert_int_equal(cn_identity_sign(&b, msg, sizeof(msg), sig), CN_OK);
    assert_int_equal(cn_sig_verify(a.pk, msg, sizeof(msg), sig), CN_OK);
    /* Saving over an existing file replaces it. */
    cn_identity_t c;
    assert_int_equal(cn_identity_generate(&c), CN_OK);
    assert_int_equal(cn_identity_save(&c, path), CN_OK);
    cn_identity_dispose(&b);
    assert_int_equal(cn_identity_load(path, &b), CN_OK);
    assert_memory_equal(b.pk, c.pk, 32);
    assert_memory_not_equal(a.pk, c.pk, 32);
    cn_identity_dispose(&a);
    cn_identity_dispose(&b);
    cn_identity_dispose(&c);
    cn_identity_dispose(&c); /* twice is fine */
    cn_identity_dispose(NULL);
}

static void test_load_missing(void **state)
{
    (void)state;
    char path[512];
    cn_identity_t id;
    path_in_dir(path, sizeof(path), "nope.key");
    assert_int_equal(cn_identity_load(path, &id), CN_ENOTFOUND);
    assert_null(id.sk);
}

/* Saves a fresh key and returns its image for corruption tests. */
static void fresh_image(uint8_t img[KEYFILE_LEN])
{
    char path[512];
    path_in_dir(path, sizeof(path), "fresh.key");
    cn_identity_t id;
    assert_int_equal(cn_identity_generate(&id), CN_OK);
    assert_int_equal(cn_identity_save(&id, path), CN_OK);
    cn_identity_dispose(&id);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(img, 1, KEYFILE_LEN, f), KEYFILE_LEN);
    fclose(f);
}

static void expect_load_fails(const void *img, size_t n)
{
    char path[512];
    path_in_dir(path, sizeof(path), "bad.key");
    write_file(path, img, n);
    cn_identity_t id;
    assert_int_equal(cn_identity_load(path, &id), CN_EINVAL);
    assert_null(id.sk);
}

static void test_load_malformed(void **state)
{
    (void)state;
    uint8_t img[KEYFILE_LEN + 1];
    fresh_image(img);
    expect_load_fails(img, 0);               /* empty */
    expect_load_fails(img, 8);               /* header only */
    expect_load_fails(img, KEYFILE_LEN - 1); /* truncated */
    img[KEYFILE_LEN] = 0;
    expect_load_fails(img, KEYFILE_LEN + 1); /* trailing byte */
    expect_load_fails(img, 64);              /* a raw libsodium secret key */

    uint8_t bad[KEYFILE_LEN];
    memcpy(bad, img, KEYFILE_LEN);
    bad[0] = 'X'; /* magic */
    expect_load_fails(bad, KEYFILE_LEN);
    memcpy(bad, img, KEYFILE_LEN);
    bad[4] = 2; /* unknown version */
    expect_load_fails(bad, KEYFILE_LEN);
    memcpy(bad, img, KEYFILE_LEN);
    bad[6] = 1; /* reserved */
    expect_load_fails(bad, KEYFILE_LEN);
    memcpy(bad, img, KEYFILE_LEN);
    bad[8] ^= 0x01; /* seed no longer matches the stored pk */
    expect_load_fails(bad, KEYFILE_LEN);
    memcpy(bad, img, KEYFILE_LEN);
    bad[KEYFILE_LEN - 1] ^= 0x40; /* pk does not match the seed */
    expect_load_fails(bad, KEYFILE_LEN);
}

static void test_load_directory(void **state)
{
    (void)state;
    cn_identity_t id;
    assert_int_equal(cn_identity_load(g_dir, &id), CN_EINVAL);
}

static void test_sign_requires_key(void **state)
{
    (void)state;
    cn_identity_t id;
    memset(&id, 0, sizeof(id));
    uint8_t sig[64];
    assert_int_equal(cn_identity_sign(&id, "x", 1, sig), CN_EINVAL);
    char path[512];
    path_in_dir(path, sizeof(path), "never.key");
    assert_int_equal(cn_identity_save(&id, path), CN_EINVAL);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_x25519(void **state)
{
    (void)state;
    cn_x25519_t a, b;
    assert_int_equal(cn_x25519_generate(&a), CN_OK);
    assert_int_equal(cn_x25519_generate(&b), CN_OK);
    uint8_t pk[32], s1[32], s2[32];
    assert_int_equal(crypto_scalarmult_base(pk, a.sk), 0);
    assert_memory_equal(pk, a.pk, 32);
    assert_memory_not_equal(a.pk, b.pk, 32);
    assert_int_equal(crypto_scalarmult(s1, a.sk, b.pk), 0);
    assert_int_equal(crypto_scalarmult(s2, b.sk, a.pk), 0);
    assert_memory_equal(s1, s2, 32);
    cn_x25519_dispose(&a);
    cn_x25519_dispose(&b);
    assert_null(a.sk);
}

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0};
    cn_random(a, sizeof(a));
    cn_random(b, sizeof(b));
    assert_memory_not_equal(a, b, 32);
    for (int i = 0; i < 1000; i++)
        assert_true(cn_random_uniform(7) < 7);
    assert_int_equal(cn_random_uniform(1), 0);
    assert_int_equal(cn_random_uniform(0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8032_vectors),
        cmocka_unit_test(test_rfc8032_negative),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_load_missing),
        cmocka_unit_test(test_load_malformed),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_sign_requires_key),
        cmocka_unit_test(test_x25519),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
