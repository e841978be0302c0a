/*
 * The offline-notification outbox (push CF): one pending event per device
 * however many envelopes queue up, events in seq order, PUSH_DONE, and
 * everything surviving a reopen.
 */
#include "tests/unit/store/store_test_util.h"

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

typedef struct events {
    int n;
    uint64_t seq[16];
    uint8_t device[16][CN_DEVICE_ID_LEN];
    uint64_t server_time[16];
    int stop_after;
} events_t;

static int event_cb(void *ctx, uint64_t seq, const uint8_t *device, uint64_t server_time)
{
    events_t *e = ctx;
    assert_true(e->n < 16);
    e->seq[e->n] = seq;
    memcpy(e->device[e->n], device, CN_DEVICE_ID_LEN);
    e->server_time[e->n] = server_time;
    e->n++;
    return e->stop_after && e->n >= e->stop_after;
}

static int pending(cn_store_t *s, uint64_t after, uint32_t limit, events_t *e)
{
    memset(e, 0, sizeof(*e));
    int n = cn_store_push_pending(s, after, limit, event_cb, e);
    if (n >= 0)
        assert_int_equal(n, e->n);
    return n;
}

static int done(cn_store_t *s, uint64_t seq, const uint8_t *device)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_PUSH_DONE;
    op.u.push_done.event_seq = seq;
    memcpy(op.u.push_done.device_id, device, CN_DEVICE_ID_LEN);
    return run_op(s, &op);
}

static void test_burst_coalesces_in_order(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], online[CN_DEVICE_ID_LEN];
    events_t e;
    make_id(a, 1, 1);
    make_id(b, 1, 2);
    make_id(online, 1, 3);
    assert_int_equal(pending(f->s, 0, 10, &e), 0);
    for (int m = 0; m < 100; m++)
        assert_int_equal(
            send_ex(f->s, SENDER, (uint8_t)m, a, "m", 1000 + (uint64_t)m, 0, true, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 200, b, "m", 5000, 0, true, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 201, online, "m", 6000, 0, false, NULL), CN_OK);
    assert_int_equal(depth(f->s, a), 100);

    assert_int_equal(pending(f->s, 0, 10, &e), 2);
    assert_int_equal(e.seq[0], 1);
    assert_memory_equal(e.device[0], a, CN_DEVICE_ID_LEN);
    assert_int_equal(e.server_time[0], 1000); /* the first envelope's */
    assert_int_equal(e.seq[1], 2);
    assert_memory_equal(e.device[1], b, CN_DEVICE_ID_LEN);
    assert_int_equal(e.server_time[1], 5000);
    assert_int_equal(pending(f->s, 1, 10, &e), 1);
    assert_int_equal(e.seq[0], 2);
    assert_int_equal(pending(f->s, 0, 1, &e), 1);
    assert_int_equal(e.seq[0], 1);
    assert_int_equal(pending(f->s, 2, 10, &e), 0);
    assert_int_equal(pending(f->s, 0, 0, &e), 0);
    assert_int_equal(pending(f->s, UINT64_MAX, 10, &e), 0);
    memset(&e, 0, sizeof(e));
    e.stop_after = 1;
    assert_int_equal(cn_store_push_pending(f->s, 0, 10, event_cb, &e), 1);
}

static int push_clear(cn_store_t *s, const uint8_t *device)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_PUSH_CLEAR;
    memcpy(op.u.push_clear.device_id, device, CN_DEVICE_ID_LEN);
    return run_op(s, &op);
}

static void test_done(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    events_t e;
    make_id(a, 2, 1);
    make_id(b, 2, 2);
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "m", 10, 0, true, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, b, "m", 20, 0, true, NULL), CN_OK);
    assert_int_equal(done(f->s, 2, a), CN_EINVAL); /* event 2 is b's */
    assert_int_equal(done(f->s, 0, a), CN_EINVAL);
    assert_int_equal(done(f->s, 1, a), CN_OK);
    assert_int_equal(done(f->s, 1, a), CN_ENOTFOUND);
    assert_int_equal(pending(f->s, 0, 10, &e), 1);
    assert_memory_equal(e.device[0], b, CN_DEVICE_ID_LEN);

    /* a was woken: more offline envelopes queue nothing until it connects. */
    assert_int_equal(send_ex(f->s, SENDER, 3, a, "m", 30, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 1);
    /* a connected (PUSH_CLEAR): its next offline envelope queues event 3. */
    assert_int_equal(push_clear(f->s, a), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 4, a, "m", 40, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 2);
    assert_int_equal(e.seq[1], 3);
    assert_int_equal(e.server_time[1], 40);
    /* A late repeat of done(1) must not clear event 3's marker. */
    assert_int_equal(done(f->s, 1, a), CN_ENOTFOUND);
    assert_int_equal(send_ex(f->s, SENDER, 5, a, "m", 50, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 2);
    /* A clear drops a pending event too. */
    assert_int_equal(push_clear(f->s, a), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 1);
    assert_int_equal(e.seq[0], 2);
    assert_int_equal(push_clear(f->s, a), CN_OK); /* idempotent */
}

static void test_persistence(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    events_t e;
    make_id(a, 3, 1);
    make_id(b, 3, 2);
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "m", 10, 0, true, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, b, "m", 20, 0, true, NULL), CN_OK);
    fx_reopen(f);
    assert_int_equal(pending(f->s, 0, 10, &e), 2);
    /* The marker survived: still one event for a. */
    assert_int_equal(send_ex(f->s, SENDER, 3, a, "m", 30, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 2);
    assert_int_equal(done(f->s, 1, a), CN_OK);
    assert_int_equal(done(f->s, 2, b), CN_OK);
    fx_reopen(f);
    assert_int_equal(pending(f->s, 0, 10, &e), 0);
    /* The "woken" marker survived: b is not woken again until it connects. */
    assert_int_equal(send_ex(f->s, SENDER, 4, b, "m", 40, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 0);
    assert_int_equal(push_clear(f->s, b), CN_OK);
    /* The event seq survived too: no seq is handed out twice. */
    assert_int_equal(send_ex(f->s, SENDER, 5, b, "m", 40, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 1);
    assert_int_equal(e.seq[0], 3);
    assert_memory_equal(e.device[0], b, CN_DEVICE_ID_LEN);
}

/* Inside one batch and one op, a device still gets one event; a revoke in
 * the batch drops the pending event of its device. */
static void test_one_batch_and_revoke(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    cn_store_op_t s1, s2;
    cn_store_recipient_t r1[2], r2;
    events_t e;
    make_id(a, 4, 1);
    make_id(b, 4, 2);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "pat", b, 0), CN_OK);
    recipient(&r1[0], a, "one");
    recipient(&r1[1], a, "again");
    r1[0].notify = r1[1].notify = true;
    op_send(&s1, SENDER, 1, r1, 2, 10);
    recipient(&r2, a, "two");
    r2.notify = true;
    op_send(&s2, SENDER, 2, &r2, 1, 20);
    cn_store_op_t *ops[] = {&s1, &s2};
    run_batch_of(f->s, ops, 2);
    assert_int_equal(s1.result, CN_OK);
    assert_int_equal(s2.result, CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 1);
    assert_int_equal(e.server_time[0], 10);

    assert_int_equal(send_ex(f->s, SENDER, 3, b, "m", 30, 0, true, NULL), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 2);
    assert_int_equal(revoke(f->s, b), CN_OK);
    assert_int_equal(pending(f->s, 0, 10, &e), 1);
    assert_memory_equal(e.device[0], a, CN_DEVICE_ID_LEN);
    assert_int_equal(done(f->s, 2, b), CN_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_burst_coalesces_in_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_done, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_persistence, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_one_batch_and_revoke, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
