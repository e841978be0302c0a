/*
 * Integration: draining large mailboxes (DESIGN section 4, Delivery): a
 * device that connects gets its whole mailbox, in order, whatever the
 * entry sizes and the configured output limits, and MailboxDrained only
 * once nothing is left.
 */
#include "tests/integration/harness.h"

#include <stdlib.h>
#include <string.h>

/* Reads until MailboxDrained; returns how many contiguous Delivers came. */
static uint64_t drain(h_client_t *b, size_t size, uint64_t *drained_last_seq)
{
    static uint8_t want[CN_CIPHERTEXT_MAX];
    assert_true(size <= sizeof(want));
    uint64_t got = 0;
    for (;;) {
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
        if (!f)
            fail_msg("connection ended or stalled after %llu entries (closed=%d code=%u eof=%d)",
                     (unsigned long long)got, b->closed, b->close_code, b->eof);
        if (f->body_case == CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED) {
            *drained_last_seq = f->mailbox_drained->last_seq;
            break;
        }
        assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_DELIVER);
        assert_int_equal(f->deliver->seq, got + 1);
        h_pattern(want, size, (uint32_t)got);
        assert_int_equal(f->deliver->ciphertext.len, size);
        assert_memory_equal(f->deliver->ciphertext.data, want, size);
        got++;
    }
    return got;
}

/* Entries large enough that one store slice (256 KiB) holds fewer than a
 * full slice of entries: the pump must still go on to the end. */
static void test_large_entries_drain_completely(void **state)
{
    (void)state;
    enum { COUNT = 12, SIZE = 40 * 1024 };
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    h_client_free(b);
    h_queue_messages(a, bob, COUNT, SIZE);

    b = h_connect(n);
    Chat__Response *r = h_try_auth(b, bob);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->auth_ok->queued, COUNT);
    uint64_t last = 0;
    uint64_t got = drain(b, SIZE, &last);
    if (got != COUNT)
        fail_msg("MailboxDrained(last_seq=%llu) after %llu of %d queued entries",
                 (unsigned long long)last, (unsigned long long)got, COUNT);
    assert_int_equal(last, COUNT);
}

/* The smallest output limits the node accepts must still let a reader
 * that reads promptly drain a mailbox of small entries. */
static void test_small_output_limits_prompt_reader(void **state)
{
    (void)state;
    enum { COUNT = 200, SIZE = 3000 };
    const char *const flags[] = {
        "--out-soft-limit", "4096", "--out-hard-limit", "196608", "--sync", "none", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    h_client_free(b);
    h_queue_messages(a, bob, COUNT, SIZE);
    double closes0 = h_metric(n, "chatnode_errors_total{class=\"slow_reader\"}");

    b = h_login(n, bob);
    uint64_t last = 0;
    uint64_t got = drain(b, SIZE, &last);
    assert_int_equal(got, COUNT);
    assert_int_equal(last, COUNT);
    assert_true(h_metric(n, "chatnode_errors_total{class=\"slow_reader\"}") == closes0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_large_entries_drain_completely),
        H_TEST(test_small_output_limits_prompt_reader),
    };
    return cmocka_run_group_tests_name("integration_mailbox_pump", tests, h_group_setup,
                                       h_group_teardown);
}
