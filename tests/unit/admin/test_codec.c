/* The admin protocol codec: round trips and negative tests. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "proto/cn_proto.h"

static void encode_request(cn_buf_t *b)
{
    cn_admin_msg_t m;
    cn_admin_msg_init(&m);
    snprintf(m.cmd, sizeof(m.cmd), "device.revoke");
    assert_int_equal(cn_admin_row_set(&m.args, "id", "%s", "abcd"), CN_OK);
    assert_int_equal(cn_admin_row_set(&m.args, "reason", "lost %d", 2), CN_OK);
    assert_int_equal(cn_admin_request_encode(&m, b), CN_OK);
    cn_admin_msg_dispose(&m);
}

static void test_request_roundtrip(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    encode_request(&b);
    cn_admin_msg_t m;
    cn_admin_msg_init(&m);
    assert_int_equal(cn_admin_request_decode(b.data, b.len, &m), CN_OK);
    assert_string_equal(m.cmd, "device.revoke");
    assert_string_equal(cn_admin_row_get(&m.args, "id"), "abcd");
    assert_string_equal(cn_admin_row_get(&m.args, "reason"), "lost 2");
    assert_null(cn_admin_row_get(&m.args, "missing"));
    cn_admin_msg_dispose(&m);
    cn_buf_dispose(&b);
}

static void test_response_roundtrip(void **state)
{
    (void)state;
    cn_admin_msg_t m, d;
    cn_admin_msg_init(&m);
    cn_admin_msg_init(&d);
    m.status = CN_ADMIN_NOT_FOUND;
    snprintf(m.error, sizeof(m.error), "no such device");
    for (int i = 0; i < 3; i++) {
        cn_admin_row_t *r = cn_admin_add_row(&m);
        assert_non_null(r);
        assert_int_equal(cn_admin_row_set(r, "n", "%d", i), CN_OK);
    }
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_admin_response_encode(&m, &b), CN_OK);
    assert_int_equal(cn_admin_response_decode(b.data, b.len, &d), CN_OK);
    assert_int_equal(d.status, CN_ADMIN_NOT_FOUND);
    assert_string_equal(d.error, "no such device");
    assert_int_equal(d.nrows, 3);
    assert_string_equal(cn_admin_row_get(&d.rows[2], "n"), "2");
    /* A response is not a request and vice versa. */
    cn_admin_msg_dispose(&d);
    assert_int_not_equal(cn_admin_request_decode(b.data, b.len, &d), CN_OK);
    cn_admin_msg_dispose(&d);
    cn_admin_msg_dispose(&m);
    cn_buf_dispose(&b);
}

static void test_truncated_and_flipped(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    encode_request(&b);
    for (size_t n = 0; n < b.len; n++) {
        cn_admin_msg_t m;
        cn_admin_msg_init(&m);
        assert_int_not_equal(cn_admin_request_decode(b.data, n, &m), CN_OK);
        cn_admin_msg_dispose(&m);
    }
    for (size_t i = 0; i < b.len * 8; i++) {
        b.data[i / 8] ^= (uint8_t)(1u << (i % 8));
        cn_admin_msg_t m;
        cn_admin_msg_init(&m);
        CN_IGNORE(cn_admin_request_decode(b.data, b.len, &m)); /* must not crash or leak */
        cn_admin_msg_dispose(&m);
        b.data[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    cn_buf_dispose(&b);
}

static void test_wrong_version_and_types(void **state)
{
    (void)state;
    /* {"v": 2, "cmd": "stats"} */
    static const uint8_t v2[] = {0xa2, 0x61, 'v', 0x02, 0x63, 'c', 'm',
                                 'd',  0x65, 's', 't',  'a',  't', 's'};
    /* {"v": 1, "cmd": 7} */
    static const uint8_t badtype[] = {0xa2, 0x61, 'v', 0x01, 0x63, 'c', 'm', 'd', 0x07};
    /* {"v": 1} without cmd */
    static const uint8_t nocmd[] = {0xa1, 0x61, 'v', 0x01};
    /* {"v": 1, "cmd": "stats"} followed by a trailing byte */
    static const uint8_t trailing[] = {0xa2, 0x61, 'v', 0x01, 0x63, 'c', 'm', 'd',
                                       0x65, 's',  't', 'a',  't',  's', 0x00};
    cn_admin_msg_t m;
    cn_admin_msg_init(&m);
    assert_int_equal(cn_admin_request_decode(v2, sizeof(v2), &m), CN_EVERSION);
    cn_admin_msg_dispose(&m);
    assert_int_equal(cn_admin_request_decode(badtype, sizeof(badtype), &m), CN_EINVAL);
    cn_admin_msg_dispose(&m);
    assert_int_equal(cn_admin_request_decode(nocmd, sizeof(nocmd), &m), CN_EINVAL);
    cn_admin_msg_dispose(&m);
    assert_int_equal(cn_admin_request_decode(trailing, sizeof(trailing), &m), CN_EINVAL);
    cn_admin_msg_dispose(&m);
    assert_int_equal(cn_admin_request_decode(trailing, sizeof(trailing) - 1, &m), CN_OK);
    assert_string_equal(m.cmd, "stats");
    cn_admin_msg_dispose(&m);
}

static void test_oversized(void **state)
{
    (void)state;
    cn_admin_row_t row;
    memset(&row, 0, sizeof(row));
    char big[CN_ADMIN_VALUE_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(cn_admin_row_set(&row, "k", "%s", big), CN_ETOOBIG);
    assert_int_equal(cn_admin_row_set(&row, "a-key-that-is-longer-than-32-bytes", "v"), CN_ETOOBIG);
    for (int i = 0; i < CN_ADMIN_FIELDS_MAX; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(cn_admin_row_set(&row, k, "v"), CN_OK);
    }
    assert_int_equal(cn_admin_row_set(&row, "one-more", "v"), CN_ETOOBIG);
    for (uint32_t i = 0; i < row.n; i++)
        free(row.f[i].value);
    uint8_t huge[16] = {0xa1};
    cn_admin_msg_t m;
    cn_admin_msg_init(&m);
    assert_int_equal(cn_admin_request_decode(huge, CN_ADMIN_FRAME_MAX + 1u, &m), CN_ETOOBIG);
    cn_admin_msg_dispose(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_response_roundtrip),
        cmocka_unit_test(test_truncated_and_flipped),
        cmocka_unit_test(test_wrong_version_and_types),
        cmocka_unit_test(test_oversized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
