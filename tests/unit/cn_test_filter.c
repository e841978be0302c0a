/*
 * Linked into every unit test: runs before main and hands the
 * CN_TEST_FILTER environment variable to cmocka, so that ctest can run
 * each test case of a file as its own test (tests/CMakeLists.txt).
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
/* clang-format on */

__attribute__((constructor)) static void cn_test_filter_from_env(void)
{
    const char *pattern = getenv("CN_TEST_FILTER");
    if (pattern && pattern[0])
        cmocka_set_test_filter(pattern);
}
