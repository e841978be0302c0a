/*
 * The at-rest master key, key ring and sealed records (crypto/keyring.c,
 * crypto/masterkey.c): round trips, every refusal, the documented formats
 * checked with raw libsodium, and the cost of a 256-byte record.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "crypto/aead_int.h"
#include "crypto/cn_crypto.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char HEX[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static int setup(void **state)
{
    (void)state;
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

static void test_master_key_hex(void **state)
{
    (void)state;
    cn_master_key_t mk = {0};
    char padded[80];
    assert_int_equal(cn_master_key_from_hex(HEX, &mk), CN_OK);
    for (int i = 0; i < 32; i++)
        assert_int_equal(mk.key[i], i);
    cn_master_key_dispose(&mk);
    assert_null(mk.key);
    cn_master_key_dispose(&mk); /* twice is fine */
    snprintf(padded, sizeof(padded), "  %s\n", HEX);
    assert_int_equal(cn_master_key_from_hex(padded, &mk), CN_OK);
    cn_master_key_dispose(&mk);
    assert_int_equal(cn_master_key_from_hex(HEX + 1, &mk), CN_EINVAL); /* 63 digits */
    snprintf(padded, sizeof(padded), "%s0", HEX);
    assert_int_equal(cn_master_key_from_hex(padded, &mk), CN_EINVAL); /* 65 */
    snprintf(padded, sizeof(padded), "%s", HEX);
    padded[10] = 'g';
    assert_int_equal(cn_master_key_from_hex(padded, &mk), CN_EINVAL);
    assert_int_equal(cn_master_key_from_hex("", &mk), CN_EINVAL);
    assert_null(mk.key);
}

static void test_master_key_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/cn_mk_XXXXXX", path[64];
    cn_master_key_t a = {0}, b = {0};
    bool created = true;
    struct stat st;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/master.key", dir);
    assert_int_equal(cn_master_key_load(path, false, &a, &created), CN_ENOTFOUND);
    assert_false(created);
    assert_int_equal(cn_master_key_load(path, true, &a, &created), CN_OK);
    assert_true(created);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, CN_ATREST_KEY_LEN);
    assert_int_equal(cn_master_key_load(path, true, &b, &created), CN_OK);
    assert_false(created); /* an existing file is read, never replaced */
    assert_memory_equal(a.key, b.key, CN_ATREST_KEY_LEN);
    cn_master_key_dispose(&b);
    /* A file of another size is refused. */
    FILE *fp = fopen(path, "ab");
    assert_non_null(fp);
    fputc('x', fp);
    fclose(fp);
    assert_int_equal(cn_master_key_load(path, true, &b, NULL), CN_EINVAL);
    assert_null(b.key);
    cn_master_key_dispose(&a);
    unlink(path);
    rmdir(dir);
}

static void ring_with(cn_keyring_t **kr, int nkeys)
{
    assert_int_equal(cn_keyring_new(kr), CN_OK);
    assert_int_equal(cn_keyring_current(*kr), 0);
    for (int i = 1; i <= nkeys; i++) {
        uint32_t id = 0;
        assert_int_equal(cn_keyring_rotate(*kr, &id), CN_OK);
        assert_int_equal(id, (uint32_t)i);
    }
}

static void test_record_round_trip(void **state)
{
    (void)state;
    cn_keyring_t *kr;
    cn_buf_t s;
    uint8_t out[64];
    size_t n;
    uint32_t id;
    uint64_t hint;
    const uint8_t ad[] = {4, 'k', 'e', 'y'};
    cn_buf_init(&s);
    assert_int_equal(cn_keyring_new(&kr), CN_OK);
    /* No current key: nothing seals. */
    assert_int_equal(cn_atrest_seal(kr, ad, sizeof(ad), 0, "x", 1, &s), CN_EINVAL);
    assert_int_equal(cn_keyring_rotate(kr, NULL), CN_OK);
    assert_int_equal(cn_atrest_seal(kr, ad, sizeof(ad), 1234, "hello at rest", 13, &s), CN_OK);
    assert_int_equal(s.len, 13 + CN_ATREST_OVERHEAD);
    assert_int_equal(s.data[0], CN_ATREST_MAGIC);
    assert_int_equal(cn_atrest_header(s.data, s.len, &id, &hint), CN_OK);
    assert_int_equal(id, 1);
    assert_int_equal(hint, 1234);
    assert_int_equal(cn_atrest_open(kr, ad, sizeof(ad), s.data, s.len, out, &n), CN_OK);
    assert_int_equal(n, 13);
    assert_memory_equal(out, "hello at rest", 13);
    /* Another CF or key (the associated data) does not open. */
    const uint8_t other[] = {5, 'k', 'e', 'y'};
    assert_int_equal(cn_atrest_open(kr, other, sizeof(other), s.data, s.len, out, &n), CN_EAUTH);
    /* Every flipped bit of the header or the body is caught. */
    for (size_t i = 0; i < s.len; i++) {
        s.data[i] ^= 0x10;
        int rc = cn_atrest_open(kr, ad, sizeof(ad), s.data, s.len, out, &n);
        assert_true(rc == CN_EAUTH || rc == CN_EINVAL || rc == CN_ENOTFOUND);
        s.data[i] ^= 0x10;
    }
    /* Truncated, or not sealed at all. */
    assert_int_equal(cn_atrest_open(kr, ad, sizeof(ad), s.data, CN_ATREST_OVERHEAD - 1, out, &n),
                     CN_EINVAL);
    assert_int_equal(cn_atrest_header((const uint8_t *)"\x82plain", 6, NULL, NULL), CN_EINVAL);
    /* Same plaintext, key and AD again: another nonce, another ciphertext. */
    cn_buf_t s2;
    cn_buf_init(&s2);
    assert_int_equal(cn_atrest_seal(kr, ad, sizeof(ad), 1234, "hello at rest", 13, &s2), CN_OK);
    assert_memory_not_equal(s.data + 13, s2.data + 13, CN_ATREST_NONCE_LEN);
    assert_memory_not_equal(s.data + CN_ATREST_HDR_LEN, s2.data + CN_ATREST_HDR_LEN, 13);
    cn_buf_dispose(&s2);
    /* In place: the plaintext lands right after the header. */
    assert_int_equal(
        cn_atrest_open(kr, ad, sizeof(ad), s.data, s.len, s.data + CN_ATREST_HDR_LEN, &n), CN_OK);
    assert_memory_equal(s.data + CN_ATREST_HDR_LEN, "hello at rest", 13);
    cn_buf_dispose(&s);
    cn_keyring_free(kr);
}

static void test_rotate_and_remove(void **state)
{
    (void)state;
    cn_keyring_t *kr;
    cn_keyring_entry_t e[4];
    cn_buf_t s1, s2;
    uint8_t out[16];
    size_t n;
    cn_buf_init(&s1);
    cn_buf_init(&s2);
    ring_with(&kr, 1);
    assert_int_equal(cn_atrest_seal(kr, NULL, 0, 0, "one", 3, &s1), CN_OK);
    assert_int_equal(cn_keyring_rotate(kr, NULL), CN_OK);
    assert_int_equal(cn_keyring_current(kr), 2);
    assert_int_equal(cn_atrest_seal(kr, NULL, 0, 0, "two", 3, &s2), CN_OK);
    assert_int_equal(cn_load_u32be(s2.data + 1), 2);
    /* Both open: the old key stays in the ring. */
    assert_int_equal(cn_atrest_open(kr, NULL, 0, s1.data, s1.len, out, &n), CN_OK);
    assert_int_equal(cn_atrest_open(kr, NULL, 0, s2.data, s2.len, out, &n), CN_OK);
    assert_int_equal(cn_keyring_list(kr, e, 4), 2);
    assert_int_equal(e[0].id, 1);
    assert_int_equal(e[0].state, CN_KEY_OLD);
    assert_int_equal(e[1].state, CN_KEY_CURRENT);
    assert_int_equal(cn_keyring_remove(kr, 2), CN_ECONFLICT);
    assert_int_equal(cn_keyring_set_state(kr, 2, CN_KEY_DRAINED), CN_ECONFLICT);
    assert_int_equal(cn_keyring_set_state(kr, 1, CN_KEY_DRAINED), CN_OK);
    assert_int_equal(cn_keyring_remove(kr, 1), CN_OK);
    assert_int_equal(cn_keyring_remove(kr, 1), CN_ENOTFOUND);
    assert_false(cn_keyring_has(kr, 1));
    assert_int_equal(cn_atrest_open(kr, NULL, 0, s1.data, s1.len, out, &n), CN_ENOTFOUND);
    /* Ids are never reused. */
    uint32_t id;
    assert_int_equal(cn_keyring_rotate(kr, &id), CN_OK);
    assert_int_equal(id, 3);
    assert_int_equal(cn_keyring_next_id(kr), 4);
    /* Undo of a rotation: the previous key is current again. */
    assert_int_equal(cn_keyring_set_current(kr, 2), CN_OK);
    assert_int_equal(cn_keyring_remove(kr, 3), CN_OK);
    assert_int_equal(cn_keyring_current(kr), 2);
    assert_int_equal(cn_keyring_set_current(kr, 9), CN_ENOTFOUND);
    cn_buf_dispose(&s1);
    cn_buf_dispose(&s2);
    cn_keyring_free(kr);
}

static void test_ring_full(void **state)
{
    (void)state;
    cn_keyring_t *kr;
    ring_with(&kr, CN_KEYRING_MAX);
    assert_int_equal(cn_keyring_rotate(kr, NULL), CN_ELIMIT);
    assert_int_equal(cn_keyring_current(kr), CN_KEYRING_MAX);
    cn_keyring_free(kr);
}

static void master(cn_master_key_t *mk, uint8_t fill)
{
    char hex[65];
    uint8_t raw[32];
    memset(raw, fill, sizeof(raw));
    cn_hex_encode(hex, raw, sizeof(raw));
    assert_int_equal(cn_master_key_from_hex(hex, mk), CN_OK);
}

static void test_ring_seal_open(void **state)
{
    (void)state;
    cn_keyring_t *kr, *back = NULL;
    cn_master_key_t mk, wrong;
    cn_buf_t ring, rec;
    uint8_t out[16];
    size_t n;
    cn_buf_init(&ring);
    cn_buf_init(&rec);
    master(&mk, 0x11);
    master(&wrong, 0x22);
    ring_with(&kr, 3);
    assert_int_equal(cn_keyring_set_state(kr, 1, CN_KEY_DRAINED), CN_OK);
    cn_keyring_set_legacy(kr, true);
    assert_int_equal(cn_atrest_seal(kr, "ad", 2, 0, "rec", 3, &rec), CN_OK);
    assert_int_equal(cn_keyring_seal(kr, &mk, NULL, 0, &ring), CN_OK);
    assert_memory_equal(ring.data, "CNKR", 4);

    assert_int_equal(cn_keyring_open(&wrong, ring.data, ring.len, &back), CN_EAUTH);
    assert_null(back);
    assert_int_equal(cn_keyring_open(&mk, ring.data, ring.len, &back), CN_OK);
    assert_int_equal(cn_keyring_current(back), 3);
    assert_int_equal(cn_keyring_next_id(back), 4);
    assert_true(cn_keyring_legacy(back));
    cn_keyring_entry_t e[3];
    assert_int_equal(cn_keyring_list(back, e, 3), 3);
    assert_int_equal(e[0].state, CN_KEY_DRAINED);
    assert_int_equal(e[1].state, CN_KEY_OLD);
    assert_int_equal(cn_atrest_open(back, "ad", 2, rec.data, rec.len, out, &n), CN_OK);
    cn_keyring_free(back);

    /* The ids and states are associated data: a flip anywhere fails. */
    for (size_t i = 0; i < ring.len; i++) {
        ring.data[i] ^= 1;
        int rc = cn_keyring_open(&mk, ring.data, ring.len, &back);
        assert_true(rc == CN_EAUTH || rc == CN_EINVAL || rc == CN_EVERSION);
        ring.data[i] ^= 1;
    }
    ring.data[4] = 2;
    assert_int_equal(cn_keyring_open(&mk, ring.data, ring.len, &back), CN_EVERSION);
    ring.data[4] = 1;
    assert_int_equal(cn_keyring_open(&mk, ring.data, ring.len - 1, &back), CN_EINVAL);

    /* Excluded keys are left out of what is stored. */
    cn_buf_reset(&ring);
    uint32_t ex = 1;
    assert_int_equal(cn_keyring_seal(kr, &mk, &ex, 1, &ring), CN_OK);
    assert_int_equal(cn_keyring_open(&mk, ring.data, ring.len, &back), CN_OK);
    assert_false(cn_keyring_has(back, 1));
    assert_true(cn_keyring_has(back, 2) && cn_keyring_has(back, 3));
    cn_keyring_free(back);

    cn_buf_dispose(&ring);
    cn_buf_dispose(&rec);
    cn_master_key_dispose(&mk);
    cn_master_key_dispose(&wrong);
    cn_keyring_free(kr);
}

/* The formats of cn_crypto.h, opened with raw libsodium: the ring under
 * the master key, then a record under the data key the ring held. */
/* crypto/aead.c makes its keystream in one run: the bytes must be
 * libsodium's AEAD's, for every length around the 64/256/512-byte runs,
 * past its stack run (libsodium's own path), in place, and with
 * associated data of every length modulo 16. */
static void test_aead_matches_libsodium(void **state)
{
    (void)state;
    enum { MAX = 2200 };
    static uint8_t m[MAX], want[MAX + 16], got[MAX + 16], ad[80];
    uint8_t key[32], npub[12];
    randombytes_buf(key, sizeof(key));
    randombytes_buf(m, sizeof(m));
    randombytes_buf(ad, sizeof(ad));
    for (size_t mlen = 0; mlen <= MAX; mlen += (mlen < 1100 ? 1 : 37)) {
        size_t adlen = mlen % 80;
        unsigned long long clen = 0;
        randombytes_buf(npub, sizeof(npub));
        crypto_aead_chacha20poly1305_ietf_encrypt(want, &clen, m, mlen, ad, adlen, NULL, npub, key);
        assert_int_equal(clen, mlen + 16);
        cn__aead_chacha20poly1305_ietf_seal(got, m, mlen, ad, adlen, npub, key);
        assert_memory_equal(got, want, mlen + 16);
        memcpy(got, m, mlen); /* in place */
        cn__aead_chacha20poly1305_ietf_seal(got, got, mlen, ad, adlen, npub, key);
        assert_memory_equal(got, want, mlen + 16);
        uint8_t back[MAX];
        unsigned long long plen = 0;
        assert_int_equal(crypto_aead_chacha20poly1305_ietf_decrypt(back, &plen, NULL, got, clen, ad,
                                                                   adlen, npub, key),
                         0);
        assert_int_equal(plen, mlen);
        assert_memory_equal(back, m, mlen);
    }
}

static void test_formats_with_raw_libsodium(void **state)
{
    (void)state;
    cn_keyring_t *kr;
    cn_master_key_t mk;
    cn_buf_t ring, rec;
    uint8_t dkey[32], pt[16], ad[64];
    unsigned long long n;
    cn_buf_init(&ring);
    cn_buf_init(&rec);
    master(&mk, 0x33);
    ring_with(&kr, 1);
    assert_int_equal(cn_keyring_seal(kr, &mk, NULL, 0, &ring), CN_OK);
    /* "CNKR" ver flags current next n | id state | nonce | ct+tag */
    size_t adlen = 18 + 5;
    assert_int_equal(ring.len, adlen + 24 + 32 + 16);
    assert_int_equal(cn_load_u32be(ring.data + 6), 1);  /* current */
    assert_int_equal(cn_load_u32be(ring.data + 10), 2); /* next id */
    assert_int_equal(cn_load_u32be(ring.data + 14), 1); /* n */
    assert_int_equal(
        crypto_aead_xchacha20poly1305_ietf_decrypt(dkey, &n, NULL, ring.data + adlen + 24, 48,
                                                   ring.data, adlen, ring.data + adlen, mk.key),
        0);
    assert_int_equal(n, 32);

    const uint8_t cfkey[] = {4, 0xaa, 0xbb};
    assert_int_equal(cn_atrest_seal(kr, cfkey, sizeof(cfkey), 77, "sixteen bytes!!!", 16, &rec),
                     CN_OK);
    /* AD: magic ‖ key_id ‖ expires_hint ‖ the caller's. */
    memcpy(ad, rec.data, 13);
    memcpy(ad + 13, cfkey, sizeof(cfkey));
    assert_int_equal(cn_load_u64be(rec.data + 5), 77);
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
                         pt, &n, NULL, rec.data + CN_ATREST_HDR_LEN, 16 + 16, ad,
                         13 + sizeof(cfkey), rec.data + 13, dkey),
                     0);
    assert_memory_equal(pt, "sixteen bytes!!!", 16);
    /* And back: raw libsodium under this process's nonce prefix (the one
     * the ring's cached subkey covers) opens through the ring. */
    uint8_t raw[CN_ATREST_HDR_LEN + 16 + 16], got[16];
    size_t glen;
    memcpy(raw, rec.data, CN_ATREST_HDR_LEN);
    raw[CN_ATREST_HDR_LEN - 1] ^= 1; /* another counter value */
    crypto_aead_xchacha20poly1305_ietf_encrypt(raw + CN_ATREST_HDR_LEN, NULL,
                                               (const uint8_t *)"sealed elsewhere", 16, ad,
                                               13 + sizeof(cfkey), NULL, raw + 13, dkey);
    assert_int_equal(cn_atrest_open(kr, cfkey, sizeof(cfkey), raw, sizeof(raw), got, &glen), CN_OK);
    assert_int_equal(glen, 16);
    assert_memory_equal(got, "sealed elsewhere", 16);
    sodium_memzero(dkey, sizeof(dkey));
    cn_buf_dispose(&ring);
    cn_buf_dispose(&rec);
    cn_master_key_dispose(&mk);
    cn_keyring_free(kr);
}

/* The node's hot path seals every mailbox append and opens every read:
 * the cost of one 256-byte envelope (printed; bounded loosely so that a
 * pathological regression fails even under sanitizers). */
static void test_cost_256(void **state)
{
    (void)state;
    enum { ROUNDS = 20000, LEN = 256 };
    cn_keyring_t *kr;
    cn_buf_t s;
    uint8_t pt[LEN], out[LEN];
    const uint8_t ad[1 + 40] = {4};
    size_t n;
    cn_buf_init(&s);
    ring_with(&kr, 1);
    randombytes_buf(pt, sizeof(pt));
    uint64_t t0 = cn_mono_ns();
    for (int i = 0; i < ROUNDS; i++) {
        cn_buf_reset(&s);
        assert_int_equal(cn_atrest_seal(kr, ad, sizeof(ad), 1, pt, LEN, &s), CN_OK);
    }
    uint64_t t1 = cn_mono_ns();
    for (int i = 0; i < ROUNDS; i++)
        assert_int_equal(cn_atrest_open(kr, ad, sizeof(ad), s.data, s.len, out, &n), CN_OK);
    uint64_t t2 = cn_mono_ns();
    double seal_us = (double)(t1 - t0) / ROUNDS / 1000, open_us = (double)(t2 - t1) / ROUNDS / 1000;
    print_message("atrest 256 B: seal %.2f us, open %.2f us\n", seal_us, open_us);
    assert_memory_equal(out, pt, LEN);
    assert_true(seal_us < 50 && open_us < 50);
    cn_buf_dispose(&s);
    cn_keyring_free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_master_key_hex),
        cmocka_unit_test(test_master_key_file),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_rotate_and_remove),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_ring_seal_open),
        cmocka_unit_test(test_aead_matches_libsodium),
        cmocka_unit_test(test_formats_with_raw_libsodium),
        cmocka_unit_test(test_cost_256),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
