/* JSON string escaping (RFC 8259 section 7) and UTF-8 validation. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "client/cn_client.h"

#include <string.h>

static void expect_json(const char *in, size_t n, const char *want)
{
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_json_append_string(&b, in, n), CN_OK);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    cn_buf_dispose(&b);
}

static void test_escapes(void **state)
{
    (void)state;
    expect_json("", 0, "\"\"");
    expect_json("hello", 5, "\"hello\"");
    expect_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_json("l1\nl2\r\t", 7, "\"l1\\nl2\\r\\t\"");
    expect_json("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"");
    expect_json("a\0b", 3, "\"a\\u0000b\"");
    expect_json("/", 1, "\"/\"");
    expect_json("\xc3\xa9\xe2\x82\xac", 5, "\"\xc3\xa9\xe2\x82\xac\""); /* UTF-8 passes */
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(cn_utf8_valid((const uint8_t *)"", 0));
    assert_true(cn_utf8_valid((const uint8_t *)"abc", 3));
    assert_true(cn_utf8_valid((const uint8_t *)"\xc3\xa9", 2));
    assert_true(cn_utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4));
    assert_true(cn_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    assert_false(cn_utf8_valid((const uint8_t *)"\xc3", 1));             /* truncated */
    assert_false(cn_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
    assert_false(cn_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong */
    assert_false(cn_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    assert_false(cn_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(cn_utf8_valid((const uint8_t *)"\xff", 1));
    assert_false(cn_utf8_valid((const uint8_t *)"\x80", 1));
    assert_false(cn_utf8_valid((const uint8_t *)"\xc3\x28", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
