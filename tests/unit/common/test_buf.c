/* Buffers, cursors, hex and time-ordered ids: what every parser and id relies on. */
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

static void test_buf_append_and_consume(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_buf_put_u8(&b, 0xab), CN_OK);
    assert_int_equal(cn_buf_put_u16be(&b, 0x0102), CN_OK);
    assert_int_equal(cn_buf_put_u32be(&b, 0x03040506), CN_OK);
    assert_int_equal(cn_buf_put_u64be(&b, 0x0708090a0b0c0d0eull), CN_OK);
    assert_int_equal(b.len, 15);
    static const uint8_t want[] = {0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    assert_memory_equal(b.data, want, sizeof(want));
    cn_buf_consume(&b, 3);
    assert_int_equal(cn_buf_unread(&b).len, 12);
    assert_int_equal(cn_buf_unread(&b).base[0], 3);
    cn_buf_consume(&b, 100); /* clamps, then compacts */
    assert_int_equal(b.len, 0);
    assert_int_equal(b.rpos, 0);
    assert_int_equal(cn_buf_printf(&b, "x=%d", 42), CN_OK);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "x=42", 4);
    cn_buf_dispose(&b);
    cn_buf_dispose(&b); /* idempotent */
}

/* Consumed space is reclaimed only when that moves no more than it frees:
 * a large unread tail behind a few consumed bytes makes the buffer grow. */
static void test_buf_reclaims_without_quadratic_moves(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    uint8_t chunk[100];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        assert_int_equal(cn_buf_append(&b, chunk, sizeof(chunk)), CN_OK);
    assert_int_equal(b.cap, 1024);
    cn_buf_consume(&b, 10); /* 990 unread behind 10 consumed */
    assert_int_equal(cn_buf_append(&b, chunk, sizeof(chunk)), CN_OK);
    assert_int_equal(b.rpos, 10); /* grown, not moved */
    assert_int_equal(b.cap, 2048);
    assert_int_equal(cn_buf_unread(&b).len, 1090);
    assert_int_equal(cn_buf_unread(&b).base[0], 10);
    cn_buf_consume(&b, 1000); /* 90 unread behind 1010 consumed */
    uint8_t big[1000];
    memset(big, 7, sizeof(big));
    assert_int_equal(cn_buf_append(&b, big, sizeof(big)), CN_OK);
    assert_int_equal(b.rpos, 0); /* moved: 90 bytes to reclaim 1010 */
    assert_int_equal(b.cap, 2048);
    cn_slice_t u = cn_buf_unread(&b);
    assert_int_equal(u.len, 1090);
    assert_memory_equal(u.base, chunk + 10, 90);
    assert_int_equal(u.base[90], 7);
    cn_buf_dispose(&b);
}

static void test_buf_grows_large(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    uint8_t chunk[1000];
    memset(chunk, 7, sizeof(chunk));
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cn_buf_append(&b, chunk, sizeof(chunk)), CN_OK);
    assert_int_equal(b.len, 1000000);
    assert_int_equal(b.data[999999], 7);
    assert_int_equal(cn_buf_reserve(&b, SIZE_MAX), CN_ENOMEM);
    cn_buf_dispose(&b);
}

static void test_cursor_bounds(void **state)
{
    (void)state;
    static const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    cn_cursor_t c;
    cn_cursor_init(&c, data, sizeof(data));
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    assert_int_equal(cn_cursor_u8(&c, &u8), CN_OK);
    assert_int_equal(u8, 1);
    assert_int_equal(cn_cursor_u16be(&c, &u16), CN_OK);
    assert_int_equal(u16, 0x0203);
    assert_int_equal(cn_cursor_u64be(&c, &u64), CN_OK);
    assert_int_equal(u64, 0x0405060708090a0bull);
    /* One byte left: wider reads fail and consume nothing. */
    assert_int_equal(cn_cursor_u32be(&c, &u32), CN_EAGAIN);
    assert_int_equal(cn_cursor_u16be(&c, &u16), CN_EAGAIN);
    assert_int_equal(cn_cursor_left(&c), 1);
    cn_slice_t s;
    assert_int_equal(cn_cursor_view(&c, 2, &s), CN_EAGAIN);
    assert_int_equal(cn_cursor_view(&c, 1, &s), CN_OK);
    assert_int_equal(s.base[0], 12);
    assert_int_equal(cn_cursor_left(&c), 0);
}

static void test_hex(void **state)
{
    (void)state;
    static const uint8_t raw[] = {0x00, 0xff, 0x10, 0xab};
    char hex[9];
    cn_hex_encode(hex, raw, sizeof(raw));
    assert_string_equal(hex, "00ff10ab");
    uint8_t back[4];
    assert_int_equal(cn_hex_decode(back, 4, "00FF10ab"), CN_OK);
    assert_memory_equal(back, raw, 4);
    assert_int_equal(cn_hex_decode(back, 4, "00ff10a"), CN_EINVAL);   /* short */
    assert_int_equal(cn_hex_decode(back, 4, "00ff10abc"), CN_EINVAL); /* long */
    assert_int_equal(cn_hex_decode(back, 4, "00ff10ag"), CN_EINVAL);  /* not hex */
}

/* RFC 9562 UUIDv7 layout: 48-bit ms big-endian, version 7, variant 10;
 * later milliseconds sort after earlier ones whatever the random part. */
static void test_time_ordered_id(void **state)
{
    (void)state;
    uint8_t rnd[10], a[16], b[16];
    memset(rnd, 0xff, sizeof(rnd));
    cn_time_ordered_id(a, 0x0123456789abull, rnd);
    static const uint8_t want[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x7f, 0xff,
                                     0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_memory_equal(a, want, sizeof(want));
    memset(rnd, 0, sizeof(rnd));
    cn_time_ordered_id(b, 0x0123456789acull, rnd);
    assert_int_equal(b[6], 0x70);
    assert_int_equal(b[8], 0x80);
    assert_true(memcmp(a, b, sizeof(a)) < 0);
}

/* The coarse wall clock (compaction filters' expiry checks) is the same
 * clock as cn_now_ms, a tick or so behind it, never ahead. */
static void test_coarse_clock(void **state)
{
    (void)state;
    uint64_t before = cn_now_ms();
    uint64_t coarse = cn_now_coarse_ms();
    uint64_t after = cn_now_ms();
    assert_true(coarse <= after);
    assert_true(coarse + 100 >= before);
}

static void test_strerror_and_levels(void **state)
{
    (void)state;
    assert_string_equal(cn_strerror(CN_ETOOBIG), "too large");
    assert_string_equal(cn_strerror(-999), "unknown error");
    enum cn_log_level l;
    assert_int_equal(cn_log_parse_level("warn", &l), CN_OK);
    assert_int_equal(l, CN_LOG_WARN);
    assert_int_equal(cn_log_parse_level("loud", &l), CN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_and_consume),
        cmocka_unit_test(test_buf_grows_large),
        cmocka_unit_test(test_buf_reclaims_without_quadratic_moves),
        cmocka_unit_test(test_cursor_bounds),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_time_ordered_id),
        cmocka_unit_test(test_coarse_clock),
        cmocka_unit_test(test_strerror_and_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
