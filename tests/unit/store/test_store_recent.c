/*
 * The writer's table of recently written mailbox entries (store/recent.c):
 * a batch's additions are found by an ack only once the batch was written,
 * a failed batch's own additions are never found, and the additions of a
 * written batch still waiting to be linked survive a later failed batch.
 * The table is a hint (an ack without an entry reads the mailbox), so
 * these are the only ways it can go wrong: answering for an entry that was
 * never stored, or giving a wrong size or body.
 */
#include "tests/unit/store/store_test_util.h"

static void dev(uint8_t d[CN_DEVICE_ID_LEN], uint8_t tag)
{
    memset(d, 0, CN_DEVICE_ID_LEN);
    d[0] = tag;
    d[CN_DEVICE_ID_LEN - 1] = (uint8_t)(tag * 7);
}

static int recent_setup(void **state)
{
    cn__hash_init();
    cn__recent_t *r = malloc(sizeof(*r));
    if (r == NULL || cn__recent_init(r) != CN_OK) {
        free(r);
        return -1;
    }
    *state = r;
    return 0;
}

static int recent_teardown(void **state)
{
    cn__recent_dispose(*state);
    free(*state);
    return 0;
}

/* take, asserting whether it finds (device tag, seq) and, if so, its size. */
static void expect_take(cn__recent_t *r, uint8_t tag, uint64_t seq, bool found, size_t size)
{
    uint8_t d[CN_DEVICE_ID_LEN], body[CN__KEY_GMSG];
    dev(d, tag);
    size_t got = 0;
    bool shared = true;
    assert_int_equal(cn__recent_take(r, d, seq, &got, &shared, body), found);
    if (found) {
        assert_int_equal(got, size);
        assert_false(shared);
    }
}

static void add(cn__recent_t *r, uint8_t tag, uint64_t seq, size_t size)
{
    uint8_t d[CN_DEVICE_ID_LEN];
    dev(d, tag);
    cn__recent_add(r, d, seq, size, NULL);
}

static void test_found_only_after_written(void **state)
{
    cn__recent_t *r = *state;
    add(r, 1, 10, 300);
    add(r, 2, 10, 301);
    cn__recent_end(r, true);
    expect_take(r, 1, 10, true, 300);
    expect_take(r, 2, 10, true, 301);
    expect_take(r, 1, 10, false, 0); /* taken once */
    expect_take(r, 1, 11, false, 0); /* never added */
}

static void test_failed_batch_forgotten(void **state)
{
    cn__recent_t *r = *state;
    add(r, 1, 10, 300);
    cn__recent_end(r, false);
    expect_take(r, 1, 10, false, 0);
    /* A written batch after it keeps only its own. */
    add(r, 1, 11, 400);
    cn__recent_end(r, true);
    expect_take(r, 1, 10, false, 0);
    expect_take(r, 1, 11, true, 400);
}

static void test_waiting_additions_survive_a_failed_batch(void **state)
{
    cn__recent_t *r = *state;
    add(r, 1, 10, 300);
    cn__recent_end(r, true);  /* written, not linked yet */
    cn__recent_end(r, false); /* a batch without mailbox writes fails */
    expect_take(r, 1, 10, true, 300);

    add(r, 2, 20, 500);
    cn__recent_end(r, true);
    add(r, 3, 30, 600); /* the next batch: links the written one first */
    cn__recent_end(r, false);
    expect_take(r, 3, 30, false, 0);
    expect_take(r, 2, 20, true, 500);
}

static void test_shared_body_kept(void **state)
{
    cn__recent_t *r = *state;
    uint8_t d[CN_DEVICE_ID_LEN], body[CN__KEY_GMSG], got_body[CN__KEY_GMSG];
    dev(d, 4);
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(0xa0 + i);
    cn__recent_add(r, d, 7, 120, body);
    cn__recent_end(r, true);
    size_t size = 0;
    bool shared = false;
    assert_true(cn__recent_take(r, d, 7, &size, &shared, got_body));
    assert_int_equal(size, 120);
    assert_true(shared);
    assert_memory_equal(got_body, body, sizeof(body));
}

/* The pool is the eviction order: after CN__RECENT_MAX newer additions the
 * oldest is gone, the newest are there. */
static void test_oldest_evicted(void **state)
{
    cn__recent_t *r = *state;
    add(r, 1, 1, 100);
    cn__recent_end(r, true);
    for (uint64_t seq = 2; seq <= CN__RECENT_MAX + 1; seq++) {
        add(r, 2, seq, 200);
        if (seq % 4096 == 0)
            cn__recent_end(r, true);
    }
    cn__recent_end(r, true);
    expect_take(r, 1, 1, false, 0);
    expect_take(r, 2, CN__RECENT_MAX + 1, true, 200);
    expect_take(r, 2, 2, true, 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_found_only_after_written, recent_setup,
                                        recent_teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_forgotten, recent_setup, recent_teardown),
        cmocka_unit_test_setup_teardown(test_waiting_additions_survive_a_failed_batch, recent_setup,
                                        recent_teardown),
        cmocka_unit_test_setup_teardown(test_shared_body_kept, recent_setup, recent_teardown),
        cmocka_unit_test_setup_teardown(test_oldest_evicted, recent_setup, recent_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
