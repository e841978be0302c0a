/* Server URL parsing: accepted forms and every malformed one. */
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

static void test_valid(void **state)
{
    (void)state;
    cn_client_url_t u;
    assert_int_equal(cn_client_url_parse("wss://127.0.0.1:8443", &u), CN_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.path, "/ws");
    assert_true(u.host_is_ip);

    assert_int_equal(cn_client_url_parse("wss://chat.example.org/custom/ws", &u), CN_OK);
    assert_string_equal(u.host, "chat.example.org");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/custom/ws");
    assert_false(u.host_is_ip);

    assert_int_equal(cn_client_url_parse("WSS://[::1]:9000/", &u), CN_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    assert_string_equal(u.path, "/ws");
    assert_true(u.host_is_ip);

    assert_int_equal(cn_client_url_parse("wss://localhost:1/x?y=1", &u), CN_OK);
    assert_string_equal(u.path, "/x?y=1");
    assert_int_equal(u.port, 1);
    assert_int_equal(cn_client_url_parse("wss://h:65535", &u), CN_OK);
    assert_int_equal(u.port, 65535);
}

static void test_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "ws://127.0.0.1:8443", /* no TLS */
        "https://127.0.0.1:8443",
        "wss://", /* no host */
        "wss://:8443",
        "wss://host:", /* empty port */
        "wss://host:0",
        "wss://host:65536",
        "wss://host:123456",
        "wss://host:80x",
        "wss://user@host:80", /* userinfo */
        "wss://ho st:80",
        "wss://[::1:80", /* unclosed bracket */
        "wss://[not-ip]:80",
        "wss://[]:80",
        "wss://host:80/a b", /* space in path */
        "wss://host:80/#frag",
        "wss://host:80x/",
    };
    cn_client_url_t u;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cn_client_url_parse(bad[i], &u) != CN_EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(cn_client_url_parse(NULL, &u), CN_EINVAL);
    char longhost[400] = "wss://";
    memset(longhost + 6, 'a', 300);
    longhost[306] = '\0';
    assert_int_equal(cn_client_url_parse(longhost, &u), CN_EINVAL);
    char longpath[400] = "wss://h/";
    memset(longpath + 8, 'p', 300);
    longpath[308] = '\0';
    assert_int_equal(cn_client_url_parse(longpath, &u), CN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
