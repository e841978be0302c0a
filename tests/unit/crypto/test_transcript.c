/*
 * Transcripts: exact byte layout of proto/cn_proto.h (known answers built
 * independently here), refusal of malformed arguments, and that a signature
 * over one transcript does not verify for any other.
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

#include <string.h>

static uint8_t g_nonce[32], g_node[32], g_dev[32], g_exp[32];
static const uint64_t g_time = 0x0102030405060708ull;

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < 32; i++) {
        g_nonce[i] = (uint8_t)i;
        g_node[i] = (uint8_t)(0x40 + i);
        g_dev[i] = (uint8_t)(0x80 + i);
        g_exp[i] = (uint8_t)(0xc0 + i);
    }
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

/* The fields shared by auth, register and link, after the context. */
static size_t expect_common(uint8_t *p)
{
    size_t n = 0;
    memcpy(p + n, g_nonce, 32);
    n += 32;
    memcpy(p + n, g_node, 32);
    n += 32;
    memcpy(p + n, g_dev, 32);
    n += 32;
    const uint8_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    memcpy(p + n, t, 8);
    n += 8;
    memcpy(p + n, g_exp, 32);
    return n + 32;
}

static void test_auth_layout(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_buf_append(&b, "junk", 4), CN_OK); /* reset first */
    assert_int_equal(
        cn_transcript_session(&b, CN_AUTH_CONTEXT, g_nonce, g_node, g_dev, g_time, g_exp, NULL),
        CN_OK);
    uint8_t want[256];
    const char ctx[] = "chatnode auth v1";
    memcpy(want, ctx, sizeof(ctx)); /* with its NUL */
    size_t n = sizeof(ctx) + expect_common(want + sizeof(ctx));
    assert_int_equal(n, 17 + 136);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    assert_int_equal(b.data[16], 0);
    cn_buf_dispose(&b);
}

static void test_register_and_link_layout(void **state)
{
    (void)state;
    const char *ctxs[] = {CN_REGISTER_CONTEXT, CN_LINK_CONTEXT};
    const char *names[] = {"chatnode register v1", "chatnode link v1"};
    for (int i = 0; i < 2; i++) {
        cn_buf_t b;
        cn_buf_init(&b);
        assert_int_equal(
            cn_transcript_session(&b, ctxs[i], g_nonce, g_node, g_dev, g_time, g_exp, "alice"),
            CN_OK);
        uint8_t want[256];
        size_t clen = strlen(names[i]) + 1;
        memcpy(want, names[i], clen);
        size_t n = clen + expect_common(want + clen);
        want[n++] = 5;
        memcpy(want + n, "alice", 5);
        n += 5;
        assert_int_equal(b.len, n);
        assert_memory_equal(b.data, want, n);
        cn_buf_dispose(&b);
    }
}

static void test_prekey_known_answer(void **state)
{
    (void)state;
    /* "chatnode signed prekey v1\0" ‖ 00 00 01 02 ‖ 32 x 0xab, as hex. */
    const char *want_hex = "636861746e6f6465207369676e6564207072656b657920763100"
                           "00000102"
                           "abababababababababababababababababababababababababababababababab";
    uint8_t want[26 + 4 + 32];
    assert_int_equal(cn_hex_decode(want, sizeof(want), want_hex), CN_OK);
    uint8_t pk[32];
    memset(pk, 0xab, sizeof(pk));
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_transcript_prekey(&b, 0x102, pk), CN_OK);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    cn_buf_dispose(&b);
}

static void test_link_cert_layout(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_transcript_link_cert(&b, "bob", g_dev), CN_OK);
    uint8_t want[128];
    size_t n = sizeof(CN_LINK_CERT_CONTEXT);
    memcpy(want, "chatnode link certificate v1", n);
    want[n++] = 3;
    memcpy(want + n, "bob", 3);
    n += 3;
    memcpy(want + n, g_dev, 32);
    n += 32;
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    cn_buf_dispose(&b);
}

static void test_session_rejects(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    char long_handle[CN_HANDLE_MAX + 2];
    memset(long_handle, 'a', sizeof(long_handle) - 1);
    long_handle[sizeof(long_handle) - 1] = '\0';
    /* Auth binds no handle; register and link need one. */
    assert_int_equal(
        cn_transcript_session(&b, CN_AUTH_CONTEXT, g_nonce, g_node, g_dev, g_time, g_exp, "al"),
        CN_EINVAL);
    assert_int_equal(
        cn_transcript_session(&b, CN_REGISTER_CONTEXT, g_nonce, g_node, g_dev, g_time, g_exp, NULL),
        CN_EINVAL);
    assert_int_equal(
        cn_transcript_session(&b, CN_LINK_CONTEXT, g_nonce, g_node, g_dev, g_time, g_exp, ""),
        CN_EINVAL);
    assert_int_equal(cn_transcript_session(&b, CN_REGISTER_CONTEXT, g_nonce, g_node, g_dev, g_time,
                                           g_exp, long_handle),
                     CN_EINVAL);
    /* Only the three session contexts are accepted. */
    assert_int_equal(
        cn_transcript_session(&b, CN_PREKEY_CONTEXT, g_nonce, g_node, g_dev, g_time, g_exp, NULL),
        CN_EINVAL);
    assert_int_equal(
        cn_transcript_session(&b, "chatnode auth v2", g_nonce, g_node, g_dev, g_time, g_exp, NULL),
        CN_EINVAL);
    assert_int_equal(
        cn_transcript_session(&b, CN_AUTH_CONTEXT, NULL, g_node, g_dev, g_time, g_exp, NULL),
        CN_EINVAL);
    assert_int_equal(cn_transcript_link_cert(&b, long_handle, g_dev), CN_EINVAL);
    long_handle[CN_HANDLE_MAX] = '\0'; /* exactly the maximum is fine */
    assert_int_equal(cn_transcript_link_cert(&b, long_handle, g_dev), CN_OK);
    assert_int_equal(b.len, sizeof(CN_LINK_CERT_CONTEXT) + 1 + CN_HANDLE_MAX + 32);
    cn_buf_dispose(&b);
}

/* A signature over one transcript must not verify against a changed one. */
static void test_signature_binds_every_field(void **state)
{
    (void)state;
    cn_identity_t id;
    assert_int_equal(cn_identity_generate(&id), CN_OK);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(
        cn_transcript_session(&b, CN_AUTH_CONTEXT, g_nonce, g_node, id.pk, g_time, g_exp, NULL),
        CN_OK);
    uint8_t sig[CN_SIGNATURE_LEN];
    assert_int_equal(cn_identity_sign(&id, b.data, b.len, sig), CN_OK);
    assert_int_equal(cn_sig_verify(id.pk, b.data, b.len, sig), CN_OK);

    uint8_t exp2[32];
    memcpy(exp2, g_exp, 32);
    exp2[31] ^= 1; /* another connection's exporter */
    assert_int_equal(
        cn_transcript_session(&b, CN_AUTH_CONTEXT, g_nonce, g_node, id.pk, g_time, exp2, NULL),
        CN_OK);
    assert_int_equal(cn_sig_verify(id.pk, b.data, b.len, sig), CN_EAUTH);
    assert_int_equal(
        cn_transcript_session(&b, CN_AUTH_CONTEXT, g_nonce, g_node, id.pk, g_time + 1, g_exp, NULL),
        CN_OK);
    assert_int_equal(cn_sig_verify(id.pk, b.data, b.len, sig), CN_EAUTH);
    /* The same fields under the register context are a different message. */
    assert_int_equal(cn_transcript_session(&b, CN_REGISTER_CONTEXT, g_nonce, g_node, id.pk, g_time,
                                           g_exp, "alice"),
                     CN_OK);
    assert_int_equal(cn_sig_verify(id.pk, b.data, b.len, sig), CN_EAUTH);
    cn_buf_dispose(&b);
    cn_identity_dispose(&id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_layout),
        cmocka_unit_test(test_register_and_link_layout),
        cmocka_unit_test(test_prekey_known_answer),
        cmocka_unit_test(test_link_cert_layout),
        cmocka_unit_test(test_session_rejects),
        cmocka_unit_test(test_signature_binds_every_field),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
