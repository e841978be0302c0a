/* chatbench's measuring helpers: what the PERFORMANCE.md table is computed from. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "tests/bench/bench.h"

#define MS 1000000ull
#define S  1000000000ull

/* 400,000 messages offered at 80,000/s: a 5 s schedule. */
static const uint64_t T0 = 1000 * S, SCHEDULE = 5 * S;

static double rate(double delivered, double span_s)
{
    return delivered / span_s;
}

static void test_span_constant_latency_is_the_offered_rate(void **state)
{
    (void)state;
    /* Every message 2 ms after its slot; the last slot is one period
     * (12.5 us) before the schedule's end. The old count (first send to
     * last delivery) gave 400,000 / 5.0019 s = 79,970/s here. */
    uint64_t first = T0 + 2 * MS, last = T0 + SCHEDULE - 12500 + 2 * MS;
    double span = bench_delivery_span_s(T0, SCHEDULE, first, last, last + S);
    assert_true(span == 5.0);
    assert_true(rate(400000, span) == 80000.0);
}

static void test_span_falling_behind_is_the_delivered_rate(void **state)
{
    (void)state;
    /* Latency grows from 1 ms to 250 ms: the node delivered 400,000 over
     * 5.249 s, i.e. 76,205/s, and that is what counts. */
    uint64_t first = T0 + 1 * MS, last = T0 + SCHEDULE + 250 * MS;
    double span = bench_delivery_span_s(T0, SCHEDULE, first, last, last + S);
    assert_true(span > 5.248 && span < 5.250);
    assert_true(rate(400000, span) < 76210 && rate(400000, span) > 76200);
}

static void test_span_never_exceeds_the_offered_rate(void **state)
{
    (void)state;
    /* A stall at the start (first delivery after 300 ms), then caught up:
     * the deliveries span less than the schedule, the rate stays 80,000. */
    uint64_t first = T0 + 300 * MS, last = T0 + SCHEDULE + 1 * MS;
    double span = bench_delivery_span_s(T0, SCHEDULE, first, last, last + S);
    assert_true(span == 5.0);
}

static void test_span_without_deliveries_is_the_time_so_far(void **state)
{
    (void)state;
    assert_true(bench_delivery_span_s(T0, SCHEDULE, 0, 0, T0 + 7 * S) == 7.0);
    /* Inconsistent stamps (last before first) are treated as none. */
    assert_true(bench_delivery_span_s(T0, SCHEDULE, T0 + 2 * S, T0 + S, T0 + 3 * S) == 3.0);
}

static void test_payload_round_trip_and_short_payload(void **state)
{
    (void)state;
    uint8_t p[256];
    bench_payload_fill(p, sizeof(p), 123456789ull, 42, 7);
    uint64_t t = 0, m = 0;
    uint32_t tag = 0;
    assert_true(bench_payload_read(p, sizeof(p), &t, &m, &tag));
    assert_true(t == 123456789ull && m == 42 && tag == 7);
    assert_false(bench_payload_read(p, BENCH_PAYLOAD_MIN - 1, &t, &m, &tag));
}

static void test_hist_quantiles_within_bucket_error(void **state)
{
    (void)state;
    static bench_hist_t h;
    bench_hist_init(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        bench_hist_add(&h, v * 1000); /* 1 us .. 100 ms */
    assert_true(h.count == 100000 && h.max == 100000000ull);
    double p50 = (double)bench_hist_quantile(&h, 0.5), p99 = (double)bench_hist_quantile(&h, 0.99);
    assert_true(p50 > 50e6 * 0.984 && p50 < 50e6 * 1.016);
    assert_true(p99 > 99e6 * 0.984 && p99 < 99e6 * 1.016);
    bench_hist_init(&h);
    assert_true(bench_hist_quantile(&h, 0.99) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_constant_latency_is_the_offered_rate),
        cmocka_unit_test(test_span_falling_behind_is_the_delivered_rate),
        cmocka_unit_test(test_span_never_exceeds_the_offered_rate),
        cmocka_unit_test(test_span_without_deliveries_is_the_time_so_far),
        cmocka_unit_test(test_payload_round_trip_and_short_payload),
        cmocka_unit_test(test_hist_quantiles_within_bucket_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
