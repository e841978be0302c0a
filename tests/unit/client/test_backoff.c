/* Reconnect backoff: full jitter within [0, min(MAX, MIN * 2^attempt)]. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "client/cn_client.h"
#include "crypto/cn_crypto.h"

static void test_bounds(void **state)
{
    (void)state;
    assert_int_equal(cn_crypto_init(), CN_OK);
    for (uint32_t attempt = 0; attempt < 40; attempt++) {
        uint32_t cap = attempt < 16 ? CN_CLIENT_BACKOFF_MIN << attempt : CN_CLIENT_BACKOFF_MAX;
        if (cap > CN_CLIENT_BACKOFF_MAX)
            cap = CN_CLIENT_BACKOFF_MAX;
        uint32_t max_seen = 0;
        for (int i = 0; i < 2000; i++) {
            uint32_t d = cn_client_backoff_ms(attempt);
            assert_true(d <= cap);
            if (d > max_seen)
                max_seen = d;
        }
        /* Jitter really spreads: the top half of the range is reached. */
        assert_true(max_seen >= cap / 2);
    }
    assert_true(cn_client_backoff_ms(UINT32_MAX) <= CN_CLIENT_BACKOFF_MAX);
}

static void test_first_attempt_small(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_true(cn_client_backoff_ms(0) <= CN_CLIENT_BACKOFF_MIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_first_attempt_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
