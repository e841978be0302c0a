/* Token buckets: refill, burst, retry_after, overrides, names and rates. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "node/ratelimit.h"

static const uint8_t DEV_A[32] = {1};
static const uint8_t DEV_B[32] = {2};

/* A limiter whose send policy is 10/s with a burst of 5, and DEV_A's
 * bucket emptied at t = 1000 ms. */
static cn_ratelimit_t *drained_at_1000(void)
{
    cn_ratelimit_t *rl = cn__rl_new();
    assert_non_null(rl);
    assert_int_equal(cn__rl_set(rl, CN_RL_SEND, NULL, (cn_rl_policy_t){10.0, 5.0}), CN_OK);
    uint32_t retry = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 1000, &retry), CN_OK);
    return rl;
}

static void test_burst_then_refill(void **state)
{
    (void)state;
    cn_ratelimit_t *rl = drained_at_1000();
    uint32_t retry = 0;
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 1000, &retry), CN_ELIMIT);
    assert_int_equal(retry, 100); /* one token at 10/s */
    assert_int_equal(cn__rl_refused(rl, CN_RL_SEND), 1);
    /* Another key has its own bucket. */
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_B, 32, DEV_B, 1, 1000, &retry), CN_OK);
    /* 100 ms later one token is back, and only one. */
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 1100, &retry), CN_OK);
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 1100, &retry), CN_ELIMIT);
    /* A long pause refills to the burst, never above. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 100000, &retry), CN_OK);
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 100000, &retry), CN_ELIMIT);
    cn__rl_free(rl);
}

/* Loops read the clock once per iteration and share buckets: a take with
 * a time behind the bucket's refills nothing, and does not set the bucket
 * back (which would count the same milliseconds twice). */
static void test_stale_time_counts_once(void **state)
{
    (void)state;
    cn_ratelimit_t *rl = drained_at_1000();
    uint32_t retry = 0;
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 900, &retry), CN_ELIMIT);
    /* 100 ms after the bucket's time: one token, not the 200 ms since 900. */
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 1100, &retry), CN_OK);
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 1100, &retry), CN_ELIMIT);
    cn__rl_free(rl);
}

static void test_cost_and_check(void **state)
{
    (void)state;
    cn_ratelimit_t *rl = cn__rl_new();
    assert_int_equal(cn__rl_set(rl, CN_RL_SEND_BYTES, NULL, (cn_rl_policy_t){1000, 4000}), CN_OK);
    uint32_t retry = 0;
    uint8_t ip[16] = {127, 0, 0, 1};
    assert_int_equal(cn__rl_check(rl, CN_RL_SEND_BYTES, ip, 16, NULL, 4000, 0, &retry), CN_OK);
    assert_int_equal(cn__rl_check(rl, CN_RL_SEND_BYTES, ip, 16, NULL, 4000, 0, &retry), CN_OK);
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND_BYTES, ip, 16, NULL, 3000, 0, &retry), CN_OK);
    assert_int_equal(cn__rl_check(rl, CN_RL_SEND_BYTES, ip, 16, NULL, 2000, 0, &retry), CN_ELIMIT);
    assert_int_equal(retry, 1000);
    assert_int_equal(cn__rl_refused(rl, CN_RL_SEND_BYTES), 0); /* checks count nothing */
    /* A cost above the burst can never pass: the wait says so. */
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND_BYTES, ip, 16, NULL, 5000, 0, &retry), CN_ELIMIT);
    assert_true(retry >= 4000);
    cn__rl_free(rl);
}

/* A Send's two takes in one call: the same buckets as cn__rl_take's, the
 * per-device override of either, and which one refused. */
static void test_take_send(void **state)
{
    (void)state;
    cn_ratelimit_t *rl = cn__rl_new();
    assert_int_equal(cn__rl_set(rl, CN_RL_SEND, NULL, (cn_rl_policy_t){10, 3}), CN_OK);
    assert_int_equal(cn__rl_set(rl, CN_RL_SEND_BYTES, DEV_A, (cn_rl_policy_t){1000, 1000}), CN_OK);
    uint32_t retry = 0;
    enum cn_rl_action refused = CN_RL_CONNECT;
    assert_int_equal(cn__rl_take_send(rl, DEV_A, 32, DEV_A, 400, 0, &refused, &retry), CN_OK);
    assert_int_equal(cn__rl_take_send(rl, DEV_A, 32, DEV_A, 400, 0, &refused, &retry), CN_OK);
    /* 200 bytes left under DEV_A's override: 400 more wait 200 ms. */
    assert_int_equal(cn__rl_take_send(rl, DEV_A, 32, DEV_A, 400, 0, &refused, &retry), CN_ELIMIT);
    assert_int_equal(refused, CN_RL_SEND_BYTES);
    assert_int_equal(retry, 200);
    /* The buckets are cn__rl_take's: 200 bytes and no send left. */
    assert_int_equal(cn__rl_check(rl, CN_RL_SEND_BYTES, DEV_A, 32, DEV_A, 200, 0, &retry), CN_OK);
    assert_int_equal(cn__rl_check(rl, CN_RL_SEND_BYTES, DEV_A, 32, DEV_A, 201, 0, &retry),
                     CN_ELIMIT);
    assert_int_equal(cn__rl_check(rl, CN_RL_SEND, DEV_A, 32, DEV_A, 1, 0, &retry), CN_ELIMIT);
    assert_int_equal(cn__rl_take_send(rl, DEV_A, 32, DEV_A, 1, 0, &refused, &retry), CN_ELIMIT);
    assert_int_equal(refused, CN_RL_SEND);
    assert_int_equal(retry, 100);
    assert_int_equal(cn__rl_refused(rl, CN_RL_SEND), 1);
    assert_int_equal(cn__rl_refused(rl, CN_RL_SEND_BYTES), 1);
    /* DEV_B: its own buckets, the default send-bytes policy. */
    double big = cn__rl_default(CN_RL_SEND_BYTES).burst;
    assert_int_equal(cn__rl_take_send(rl, DEV_B, 32, DEV_B, big, 0, &refused, &retry), CN_OK);
    assert_int_equal(cn__rl_take(rl, CN_RL_SEND, DEV_B, 32, DEV_B, 2, 0, &retry), CN_OK);
    assert_int_equal(cn__rl_take_send(rl, DEV_B, 32, DEV_B, 0, 0, &refused, &retry), CN_ELIMIT);
    assert_int_equal(refused, CN_RL_SEND);
    assert_int_equal(cn__rl_take_send(rl, DEV_B, CN_RL_KEY_MAX + 1, DEV_B, 0, 0, &refused, &retry),
                     CN_EINVAL);
    cn__rl_free(rl);
}

static void count_override(void *ctx, enum cn_rl_action a, const uint8_t *d, cn_rl_policy_t q)
{
    assert_int_equal(a, CN_RL_HISTORY);
    assert_memory_equal(d, DEV_A, 32);
    assert_true(q.burst == 1);
    (*(int *)ctx)++;
}

static void test_device_override(void **state)
{
    (void)state;
    cn_ratelimit_t *rl = cn__rl_new();
    assert_int_equal(cn__rl_set(rl, CN_RL_HISTORY, DEV_A, (cn_rl_policy_t){1, 1}), CN_OK);
    cn_rl_policy_t p = cn__rl_get(rl, CN_RL_HISTORY, DEV_A);
    assert_true(p.rate == 1 && p.burst == 1);
    p = cn__rl_get(rl, CN_RL_HISTORY, DEV_B);
    assert_true(p.rate == cn__rl_default(CN_RL_HISTORY).rate);
    uint32_t retry;
    assert_int_equal(cn__rl_take(rl, CN_RL_HISTORY, DEV_A, 32, DEV_A, 1, 0, &retry), CN_OK);
    assert_int_equal(cn__rl_take(rl, CN_RL_HISTORY, DEV_A, 32, DEV_A, 1, 0, &retry), CN_ELIMIT);
    assert_int_equal(cn__rl_take(rl, CN_RL_HISTORY, DEV_B, 32, DEV_B, 1, 0, &retry), CN_OK);
    int n = 0;
    cn__rl_each_override(rl, count_override, &n);
    assert_int_equal(n, 1);
    cn__rl_reset(rl, CN_RL_HISTORY, DEV_A);
    p = cn__rl_get(rl, CN_RL_HISTORY, DEV_A);
    assert_true(p.rate == cn__rl_default(CN_RL_HISTORY).rate);
    assert_int_equal(cn__rl_set(rl, CN_RL_HISTORY, NULL, (cn_rl_policy_t){0, 1}), CN_EINVAL);
    assert_int_equal(cn__rl_set(rl, CN_RL_HISTORY, NULL, (cn_rl_policy_t){1, 0.5}), CN_EINVAL);
    cn__rl_free(rl);
}

static void test_names_and_rates(void **state)
{
    (void)state;
    for (int a = 0; a < CN_RL__COUNT; a++) {
        enum cn_rl_action back;
        assert_int_equal(cn__rl_action_parse(cn__rl_action_name((enum cn_rl_action)a), &back),
                         CN_OK);
        assert_int_equal(back, a);
    }
    enum cn_rl_action x;
    assert_int_equal(cn__rl_action_parse("sendd", &x), CN_EINVAL);
    assert_null(cn__rl_action_name(CN_RL__COUNT));
    double r;
    assert_int_equal(cn__rl_parse_rate("5/s", &r), CN_OK);
    assert_true(r == 5);
    assert_int_equal(cn__rl_parse_rate("120/m", &r), CN_OK);
    assert_true(r == 2);
    assert_int_equal(cn__rl_parse_rate("36/h", &r), CN_OK);
    assert_true(r > 0.0099 && r < 0.0101);
    assert_int_equal(cn__rl_parse_rate("7", &r), CN_OK);
    static const char *const bad[] = {"", "0", "-1/s", "5/d", "x/s", "nan", "inf", "5/s "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cn__rl_parse_rate(bad[i], &r), CN_EINVAL);
}

static void test_many_keys_bounded(void **state)
{
    (void)state;
    cn_ratelimit_t *rl = cn__rl_new();
    uint32_t retry;
    /* Far more distinct IPs than the table holds: buckets that refilled are
     * evicted, and every fresh key still gets its full burst. */
    for (uint32_t i = 0; i < 3 * CN_RL_BUCKETS_MAX / 2; i++) {
        uint8_t ip[16] = {0};
        memcpy(ip, &i, sizeof(i));
        uint64_t now = (uint64_t)i * 1000; /* each bucket refills before the next sweep */
        assert_int_equal(cn__rl_take(rl, CN_RL_CONNECT, ip, 16, NULL, 1, now, &retry), CN_OK);
    }
    cn__rl_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill), cmocka_unit_test(test_stale_time_counts_once),
        cmocka_unit_test(test_cost_and_check),    cmocka_unit_test(test_take_send),
        cmocka_unit_test(test_device_override),   cmocka_unit_test(test_names_and_rates),
        cmocka_unit_test(test_many_keys_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
