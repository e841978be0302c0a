/* The bump allocator: alignment, the kept block, overflow chunks, reset. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "common/cn_common.h"

#include <stdalign.h>

static void test_arena_aligned_and_distinct(void **state)
{
    (void)state;
    cn_arena_t a = {0};
    uint8_t *prev = NULL;
    for (size_t n = 0; n < 100; n++) {
        uint8_t *p = cn_arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        if (prev != NULL)
            assert_true(p >= prev + (n ? n - 1 : 1)); /* no overlap with the last one */
        memset(p, 0xa5, n);
        prev = p;
    }
    assert_non_null(a.block);
    assert_null(a.chunks); /* 100 small allocations fit the block */
    cn_arena_dispose(&a);
    assert_null(a.block);
}

static void test_arena_overflow_and_reset(void **state)
{
    (void)state;
    cn_arena_t a = {0};
    uint8_t *first = cn_arena_alloc(&a, 64);
    assert_non_null(first);
    /* Larger than the block: a chunk of its own, fully usable. */
    uint8_t *big = cn_arena_alloc(&a, CN_ARENA_BLOCK + 1);
    assert_non_null(big);
    memset(big, 1, CN_ARENA_BLOCK + 1);
    assert_non_null(a.chunks);
    /* Filling the block spills the rest into chunks too. */
    size_t spilled = 0;
    for (int i = 0; i < 100; i++) {
        uint8_t *p = cn_arena_alloc(&a, 1024);
        assert_non_null(p);
        memset(p, 2, 1024);
        spilled += p < a.block || p >= a.block + CN_ARENA_BLOCK;
    }
    assert_true(spilled >= 100 - CN_ARENA_BLOCK / 1024);
    /* A reset frees the chunks and hands the block out from its start. */
    cn_arena_reset(&a);
    assert_null(a.chunks);
    assert_int_equal(a.used, 0);
    assert_ptr_equal(cn_arena_alloc(&a, 64), first);
    cn_arena_dispose(&a);
    cn_arena_dispose(&a); /* idempotent */
}

static void test_arena_refuses_overflowing_sizes(void **state)
{
    (void)state;
    cn_arena_t a = {0};
    assert_null(cn_arena_alloc(&a, SIZE_MAX));
    assert_null(cn_arena_alloc(&a, SIZE_MAX - 8));
    assert_non_null(cn_arena_alloc(&a, 1)); /* still usable */
    cn_arena_dispose(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_aligned_and_distinct),
        cmocka_unit_test(test_arena_overflow_and_reset),
        cmocka_unit_test(test_arena_refuses_overflowing_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
