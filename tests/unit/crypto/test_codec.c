/*
 * Negative tests of the E2E decoders: wire messages (cn_e2e_msg_parse),
 * ratchet states and session records: truncated, oversized, wrong
 * version, flipped bits, inconsistent fields.
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

static cn_identity_t g_a, g_b;
static cn_x25519_t g_spk;
static cn_ratchet_t *g_ra;
static cn_buf_t g_msg, g_state, g_rec;

static int setup(void **state)
{
    (void)state;
    if (cn_crypto_init() != CN_OK || cn_identity_generate(&g_a) != CN_OK ||
        cn_identity_generate(&g_b) != CN_OK || cn_x25519_generate(&g_spk) != CN_OK)
        return -1;
    cn_prekey_bundle_t b;
    memset(&b, 0, sizeof(b));
    memcpy(b.identity, g_b.pk, 32);
    b.spk_id = 1;
    memcpy(b.spk, g_spk.pk, 32);
    cn_buf_t t;
    cn_buf_init(&t);
    if (cn_transcript_prekey(&t, 1, b.spk) != CN_OK ||
        cn_identity_sign(&g_b, t.data, t.len, b.spk_sig) != CN_OK ||
        cn_x3dh_initiate(&g_a, &b, &g_ra) != CN_OK)
        return -1;
    cn_buf_dispose(&t);
    cn_buf_init(&g_msg);
    cn_buf_init(&g_state);
    cn_buf_init(&g_rec);
    if (cn_ratchet_encrypt(g_ra, "hello", 5, &g_msg) != CN_OK ||
        cn_ratchet_encode(g_ra, &g_state) != CN_OK)
        return -1;
    cn_session_t *s;
    cn_ratchet_t *copy;
    if (cn_session_new(&s) != CN_OK ||
        cn_ratchet_decode(g_state.data, g_state.len, &copy) != CN_OK ||
        cn_session_add(s, copy) != CN_OK || cn_session_encode(s, &g_rec) != CN_OK)
        return -1;
    cn_session_free(s);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cn_ratchet_free(g_ra);
    cn_identity_dispose(&g_a);
    cn_identity_dispose(&g_b);
    cn_x25519_dispose(&g_spk);
    cn_buf_dispose(&g_msg);
    cn_buf_wipe(&g_state);
    cn_buf_wipe(&g_rec);
    return 0;
}

static void test_msg_valid(void **state)
{
    (void)state;
    cn_e2e_msg_t m;
    assert_int_equal(cn_e2e_msg_parse(g_msg.data, g_msg.len, &m), CN_OK);
    assert_int_equal(m.type, CN_E2E_PREKEY_MSG);
    assert_int_equal(m.spk_id, 1);
    assert_false(m.has_opk);
    assert_int_equal(m.n, 0);
    assert_int_equal(m.header_len, 115);
    assert_int_equal(m.ct_len, 5 + CN_E2E_TAG_LEN);
}

static void test_msg_truncated(void **state)
{
    (void)state;
    cn_e2e_msg_t m;
    for (size_t n = 0; n < 115 + CN_E2E_TAG_LEN; n++)
        assert_int_not_equal(cn_e2e_msg_parse(g_msg.data, n, &m), CN_OK);
}

static void test_msg_bad_fields(void **state)
{
    (void)state;
    cn_e2e_msg_t m;
    uint8_t *p = malloc(g_msg.len);
    memcpy(p, g_msg.data, g_msg.len);
    p[0] = 2;
    assert_int_equal(cn_e2e_msg_parse(p, g_msg.len, &m), CN_EVERSION);
    p[0] = 1;
    for (int t = 0; t < 256; t++) {
        if (t == CN_E2E_PREKEY_MSG || t == CN_E2E_RATCHET_MSG)
            continue;
        p[1] = (uint8_t)t;
        assert_int_equal(cn_e2e_msg_parse(p, g_msg.len, &m), CN_EINVAL);
    }
    p[1] = CN_E2E_PREKEY_MSG;
    p[2 + 32 + 32 + 4] = 2; /* has_opk must be 0 or 1 */
    assert_int_equal(cn_e2e_msg_parse(p, g_msg.len, &m), CN_EINVAL);
    p[2 + 32 + 32 + 4] = 0;
    p[2 + 32 + 32 + 4 + 4] = 1; /* opk_id without has_opk */
    assert_int_equal(cn_e2e_msg_parse(p, g_msg.len, &m), CN_EINVAL);
    free(p);
}

static void test_msg_oversized(void **state)
{
    (void)state;
    size_t n = 42 + CN_E2E_PLAINTEXT_MAX + CN_E2E_TAG_LEN + 1;
    uint8_t *p = calloc(1, n);
    p[0] = 1;
    p[1] = CN_E2E_RATCHET_MSG;
    cn_e2e_msg_t m;
    assert_int_equal(cn_e2e_msg_parse(p, n, &m), CN_ETOOBIG);
    assert_int_equal(cn_e2e_msg_parse(p, n - 1, &m), CN_OK);
    free(p);
}

static void test_state_negative(void **state)
{
    (void)state;
    cn_ratchet_t *r = NULL;
    uint8_t *p = malloc(g_state.len + 1);
    memcpy(p, g_state.data, g_state.len);
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_OK);
    cn_ratchet_free(r);
    for (size_t n = 0; n < g_state.len; n++)
        assert_int_not_equal(cn_ratchet_decode(p, n, &r), CN_OK);
    p[g_state.len] = 0;
    assert_int_equal(cn_ratchet_decode(p, g_state.len + 1, &r), CN_EINVAL);
    p[4] = 9;
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_EVERSION);
    p[4] = 1;
    p[5] |= 0x80; /* unknown flag */
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_EINVAL);
    p[5] &= 0x7f;
    p[8 + 32] ^= 1; /* public half does not match the secret half */
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_EINVAL);
    p[8 + 32] ^= 1;
    cn_store_u32be(p + 316, 0); /* max_skip 0 */
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_EINVAL);
    cn_store_u32be(p + 316, CN_RATCHET_SKIP_HARD_MAX + 1);
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_EINVAL);
    cn_store_u32be(p + 316, 1000);
    cn_store_u32be(p + 320, 5); /* skipped entries that are not there */
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_EINVAL);
    cn_store_u32be(p + 320, 0);
    assert_int_equal(cn_ratchet_decode(p, g_state.len, &r), CN_OK);
    cn_ratchet_free(r);
    assert_int_equal(cn_ratchet_decode(p, 10u * 1024 * 1024, &r), CN_ETOOBIG);
    free(p);
}

static void test_record_negative(void **state)
{
    (void)state;
    cn_session_t *s = NULL;
    uint8_t *p = malloc(g_rec.len);
    memcpy(p, g_rec.data, g_rec.len);
    assert_int_equal(cn_session_decode(p, g_rec.len, &s), CN_OK);
    assert_true(cn_session_has_active(s));
    cn_session_free(s);
    for (size_t n = 0; n < g_rec.len; n++)
        assert_int_not_equal(cn_session_decode(p, n, &s), CN_OK);
    p[4] = 2;
    assert_int_equal(cn_session_decode(p, g_rec.len, &s), CN_EVERSION);
    p[4] = 1;
    p[5] = CN_SESSION_STATES_MAX + 1;
    assert_int_equal(cn_session_decode(p, g_rec.len, &s), CN_EINVAL);
    p[5] = 1;
    cn_store_u32be(p + 8, 0xffffffffu); /* a length beyond the input */
    assert_int_equal(cn_session_decode(p, g_rec.len, &s), CN_EINVAL);
    free(p);
    /* An empty record is valid and has no active state. */
    const uint8_t empty[8] = {'C', 'N', 'S', 'R', 1, 0, 0, 0};
    assert_int_equal(cn_session_decode(empty, sizeof(empty), &s), CN_OK);
    assert_false(cn_session_has_active(s));
    cn_buf_t out;
    cn_buf_init(&out);
    assert_int_equal(cn_session_encrypt(s, "x", 1, &out), CN_ENOTFOUND);
    cn_buf_dispose(&out);
    cn_session_free(s);
}

static void test_flipped_bits_never_crash(void **state)
{
    (void)state;
    /* Random bit flips anywhere: decode either fails cleanly or yields a
     * state that re-encodes to the same bytes. */
    uint8_t *p = malloc(g_rec.len);
    for (int i = 0; i < 2000; i++) {
        memcpy(p, g_rec.data, g_rec.len);
        size_t at = randombytes_uniform((uint32_t)g_rec.len);
        p[at] ^= (uint8_t)(1u << randombytes_uniform(8));
        cn_session_t *s = NULL;
        if (cn_session_decode(p, g_rec.len, &s) == CN_OK) {
            cn_buf_t b;
            cn_buf_init(&b);
            assert_int_equal(cn_session_encode(s, &b), CN_OK);
            assert_int_equal(b.len, g_rec.len);
            assert_memory_equal(b.data, p, b.len);
            cn_buf_wipe(&b);
            cn_session_free(s);
        }
    }
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_valid),
        cmocka_unit_test(test_msg_truncated),
        cmocka_unit_test(test_msg_bad_fields),
        cmocka_unit_test(test_msg_oversized),
        cmocka_unit_test(test_state_negative),
        cmocka_unit_test(test_record_negative),
        cmocka_unit_test(test_flipped_bits_never_crash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
