/*
 * Group sender keys: distribution, in-order and out-of-order delivery,
 * replay, forged signatures, tampering, the skip bound and state
 * round trips.
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

static int setup(void **state)
{
    (void)state;
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

static void make(cn_senderkey_t **own, cn_senderkey_t **recv)
{
    cn_buf_t d;
    cn_buf_init(&d);
    assert_int_equal(cn_senderkey_generate(42, own), CN_OK);
    assert_int_equal(cn_senderkey_distribution(*own, &d), CN_OK);
    assert_int_equal(cn_senderkey_from_distribution(d.data, d.len, recv), CN_OK);
    d.data[0] = 2;
    cn_senderkey_t *bad = NULL;
    assert_int_equal(cn_senderkey_from_distribution(d.data, d.len, &bad), CN_EVERSION);
    assert_int_equal(cn_senderkey_from_distribution(d.data, d.len - 1, &bad), CN_EINVAL);
    cn_buf_wipe(&d);
}

static int dec(cn_senderkey_t *k, const cn_buf_t *m, const char *want)
{
    cn_buf_t pt;
    cn_buf_init(&pt);
    int rc = cn_senderkey_decrypt(k, m->data, m->len, &pt);
    if (rc == CN_OK && want) {
        assert_int_equal(pt.len, strlen(want));
        assert_memory_equal(pt.data, want, pt.len);
    }
    cn_buf_dispose(&pt);
    return rc;
}

static void test_roundtrip_and_order(void **state)
{
    (void)state;
    cn_senderkey_t *own, *recv;
    make(&own, &recv);
    enum { N = 50 };
    cn_buf_t m[N];
    char text[N][16];
    for (int i = 0; i < N; i++) {
        cn_buf_init(&m[i]);
        snprintf(text[i], sizeof(text[i]), "group %d", i);
        assert_int_equal(cn_senderkey_encrypt(own, text[i], strlen(text[i]), &m[i]), CN_OK);
    }
    /* Reverse order, then replays. */
    for (int i = N - 1; i >= 0; i--)
        assert_int_equal(dec(recv, &m[i], text[i]), CN_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(dec(recv, &m[i], NULL), CN_EEXIST);
    /* A receiver cannot encrypt. */
    cn_buf_t x;
    cn_buf_init(&x);
    assert_int_equal(cn_senderkey_encrypt(recv, "x", 1, &x), CN_EINVAL);
    for (int i = 0; i < N; i++)
        cn_buf_dispose(&m[i]);
    cn_senderkey_free(own);
    cn_senderkey_free(recv);
}

static void test_forgery_and_tampering(void **state)
{
    (void)state;
    cn_senderkey_t *own, *recv, *other, *other_recv;
    make(&own, &recv);
    make(&other, &other_recv);
    cn_buf_t m;
    cn_buf_init(&m);
    assert_int_equal(cn_senderkey_encrypt(own, "signed", 6, &m), CN_OK);
    for (size_t i = 0; i < m.len; i++) {
        m.data[i] ^= 0x10;
        assert_int_not_equal(dec(recv, &m, NULL), CN_OK);
        m.data[i] ^= 0x10;
    }
    /* Another sender with the same key id: the signature does not verify. */
    cn_buf_t f;
    cn_buf_init(&f);
    assert_int_equal(cn_senderkey_encrypt(other, "forged", 6, &f), CN_OK);
    assert_int_equal(dec(recv, &f, NULL), CN_EAUTH);
    assert_int_equal(dec(recv, &m, "signed"), CN_OK);
    cn_buf_dispose(&m);
    cn_buf_dispose(&f);
    cn_senderkey_free(own);
    cn_senderkey_free(recv);
    cn_senderkey_free(other);
    cn_senderkey_free(other_recv);
}

static void test_skip_bound_and_state(void **state)
{
    (void)state;
    cn_senderkey_t *own, *recv;
    make(&own, &recv);
    cn_buf_t m;
    cn_buf_init(&m);
    for (int i = 0; i <= CN_SENDERKEY_MAX_SKIP + 1; i++) {
        cn_buf_reset(&m);
        assert_int_equal(cn_senderkey_encrypt(own, "x", 1, &m), CN_OK);
    }
    assert_int_equal(dec(recv, &m, NULL), CN_ELIMIT);
    cn_buf_t first;
    cn_buf_init(&first);
    cn_senderkey_t *fresh, *fresh_recv;
    make(&fresh, &fresh_recv);
    assert_int_equal(cn_senderkey_encrypt(fresh, "a", 1, &first), CN_OK);
    cn_buf_reset(&m);
    assert_int_equal(cn_senderkey_encrypt(fresh, "b", 1, &m), CN_OK);
    assert_int_equal(dec(fresh_recv, &m, "b"), CN_OK);
    /* States survive encoding, with their skipped keys. */
    cn_buf_t enc;
    cn_buf_init(&enc);
    assert_int_equal(cn_senderkey_encode(fresh_recv, &enc), CN_OK);
    cn_senderkey_t *back;
    assert_int_equal(cn_senderkey_decode(enc.data, enc.len, &back), CN_OK);
    assert_int_equal(dec(back, &first, "a"), CN_OK);
    for (size_t n = 0; n < enc.len; n++) {
        cn_senderkey_t *x = NULL;
        assert_int_not_equal(cn_senderkey_decode(enc.data, n, &x), CN_OK);
    }
    cn_buf_reset(&enc);
    assert_int_equal(cn_senderkey_encode(fresh, &enc), CN_OK);
    cn_senderkey_t *own_back;
    assert_int_equal(cn_senderkey_decode(enc.data, enc.len, &own_back), CN_OK);
    cn_buf_reset(&m);
    assert_int_equal(cn_senderkey_encrypt(own_back, "c", 1, &m), CN_OK);
    assert_int_equal(dec(back, &m, "c"), CN_OK);
    cn_buf_wipe(&enc);
    cn_buf_dispose(&m);
    cn_buf_dispose(&first);
    cn_senderkey_free(own);
    cn_senderkey_free(recv);
    cn_senderkey_free(fresh);
    cn_senderkey_free(fresh_recv);
    cn_senderkey_free(back);
    cn_senderkey_free(own_back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_order),
        cmocka_unit_test(test_forgery_and_tampering),
        cmocka_unit_test(test_skip_bound_and_state),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
