/*
 * The per-recipient queued-bytes cap of CN_OP_SEND: the counter follows
 * sends, acks and revokes, a full mailbox refuses the whole op, an ack
 * frees room, and bytes of entries the TTL filter dropped are reclaimed by
 * the recount before anything is refused.
 */
#include "tests/unit/store/store_test_util.h"

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};
#define OLD_MS (31ull * 24 * 3600 * 1000) /* past the 30-day mailbox TTL */

/** The writer's queued-bytes counter of a device (UINT64_MAX: not loaded).
 * Read between ops, when the writer is idle (run_op waited for it). */
static uint64_t counter(cn_store_t *s, const uint8_t *id)
{
    for (size_t i = 0; i < s->counters.cap; i++) {
        cn__counter_t *e = s->counters.slots[i];
        if (e != NULL && memcmp(e->id, id, CN_DEVICE_ID_LEN) == 0)
            return e->valid[CN__CTR_QBYTES] ? e->next[CN__CTR_QBYTES] : UINT64_MAX;
    }
    return UINT64_MAX;
}

/** The queued-bytes value persisted in meta (UINT64_MAX: none). */
static uint64_t persisted(cn_store_t *s, const uint8_t *id)
{
    uint8_t key[CN__META_CTR_MAX];
    size_t klen = cn__key_counter_any(key, CN__CTR_QBYTES, id), vlen = 0;
    char *err = NULL;
    char *v =
        rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_META], (const char *)key, klen, &vlen, &err);
    assert_null(err);
    if (v == NULL)
        return UINT64_MAX;
    assert_int_equal(vlen, 8);
    uint64_t q = cn_load_u64be((const uint8_t *)v);
    rocksdb_free(v);
    return q;
}

static int count_event(void *ctx, uint64_t seq, const uint8_t *device, uint64_t server_time)
{
    (void)seq, (void)device, (void)server_time;
    (*(int *)ctx)++;
    return 0;
}

/** The stored size of one envelope of this test ("msg" ciphertexts). */
static uint64_t one_size(fx_t *f, const uint8_t *probe)
{
    assert_int_equal(send_ex(f->s, SENDER, 0xfe, probe, "msg", cn_now_ms(), 0, false, NULL), CN_OK);
    uint64_t size = queued_bytes(f->s, probe);
    assert_true(size > 3);
    return size;
}

static void test_counter_follows_send_ack_revoke(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    uint32_t deleted;
    make_id(a, 1, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "amy", a, 0), CN_OK);
    for (uint8_t m = 1; m <= 3; m++)
        assert_int_equal(
            send_ex(f->s, SENDER, m, a, m == 2 ? "a longer one" : "s", 10, 0, false, NULL), CN_OK);
    assert_int_equal(counter(f->s, a), queued_bytes(f->s, a));
    uint64_t seqs[] = {2, 7};
    assert_int_equal(ack_seqs(f->s, a, seqs, 2, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(counter(f->s, a), queued_bytes(f->s, a));
    assert_true(counter(f->s, a) > 0);
    assert_int_equal(revoke(f->s, a), CN_OK);
    assert_int_equal(counter(f->s, a), 0);
    assert_int_equal(queued_bytes(f->s, a), 0);
}

static void test_cap_refuses_whole_op(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], probe[CN_DEVICE_ID_LEN];
    uint64_t now = cn_now_ms(), seq;
    make_id(a, 2, 1);
    make_id(b, 2, 2);
    make_id(probe, 2, 9);
    uint64_t one = one_size(f, probe), cap = 2 * one;
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(queued_bytes(f->s, a), cap); /* exactly at the cap fits */

    cn_store_op_t op;
    cn_store_recipient_t r[2];
    recipient(&r[0], b, "msg");
    recipient(&r[1], a, "msg");
    r[0].notify = r[1].notify = true;
    op_send(&op, SENDER, 3, r, 2, now);
    op.u.send.max_queued_bytes = cap;
    assert_int_equal(run_op(f->s, &op), CN_ELIMIT);
    assert_int_equal(op.u.send.limited_index, 1);
    /* Nothing of the op: not b's copy, no dedupe record, no event. */
    assert_int_equal(depth(f->s, b), 0);
    assert_int_equal(depth(f->s, a), 2);
    assert_int_equal(counter(f->s, b), 0);
    int events = 0;
    assert_int_equal(cn_store_push_pending(f->s, 0, 10, count_event, &events), 0);
    /* Without a cap (or a larger one) the same op goes through, once. */
    op.u.send.max_queued_bytes = 0;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.send.duplicate);
    assert_int_equal(r[1].seq, 3); /* contiguous: the refusal took no seq */
    assert_int_equal(cn_store_push_pending(f->s, 0, 10, count_event, &events), 2);
    /* A retry of an accepted send is answered, not refused. */
    op.u.send.max_queued_bytes = cap;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_true(op.u.send.duplicate);
    /* A message larger than the cap never fits. */
    assert_int_equal(send_ex(f->s, SENDER, 4, b, "msg", now, one - 1, false, &seq), CN_ELIMIT);
}

static void test_ack_frees_room(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], probe[CN_DEVICE_ID_LEN];
    uint64_t now = cn_now_ms(), seq;
    make_id(a, 3, 1);
    make_id(probe, 3, 9);
    uint64_t cap = 2 * one_size(f, probe);
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 3, a, "msg", now, cap, false, NULL), CN_ELIMIT);
    fx_reopen(f); /* recomputed from the mailbox: still full */
    assert_int_equal(send_ex(f->s, SENDER, 3, a, "msg", now, cap, false, NULL), CN_ELIMIT);
    uint64_t seqs[] = {1};
    assert_int_equal(ack_seqs(f->s, a, seqs, 1, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 3, a, "msg", now, cap, false, &seq), CN_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(send_ex(f->s, SENDER, 4, a, "msg", now, cap, false, NULL), CN_ELIMIT);
    assert_int_equal(counter(f->s, a), cap);
}

/* The TTL filter drops an old entry without touching the counter; the
 * recount on the way to a refusal finds the room. */
static void test_expired_bytes_reclaimed(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], probe[CN_DEVICE_ID_LEN];
    uint64_t now = cn_now_ms();
    make_id(a, 4, 1);
    make_id(probe, 4, 9);
    uint64_t one = one_size(f, probe), cap = 2 * one;
    /* Both times are 9-byte CBOR integers: every envelope has one size. */
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "msg", now - OLD_MS, cap, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(counter(f->s, a), cap);
    assert_int_equal(cn__store_compact(f->s, CN__CF_MAILBOX), CN_OK);
    assert_int_equal(queued_bytes(f->s, a), one);
    assert_int_equal(counter(f->s, a), cap); /* stale: an upper bound */

    assert_int_equal(send_ex(f->s, SENDER, 3, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(counter(f->s, a), cap); /* recounted, then this one added */
    assert_int_equal(queued_bytes(f->s, a), cap);
    assert_int_equal(send_ex(f->s, SENDER, 4, a, "msg", now, cap, false, NULL), CN_ELIMIT);
    assert_int_equal(depth(f->s, a), 2);
}

/* A mailbox from before the counter existed: the first use counts it. */
/* The counter lives in memory only: after a restart it is computed from
 * the mailbox on first use (a send or an ack), and a value persisted by an
 * older version is ignored and deleted. */
static void test_counter_computed_after_restart(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], key[CN__META_CTR_MAX], stale[8];
    char *err = NULL;
    make_id(a, 5, 1);
    for (uint8_t m = 1; m <= 3; m++)
        assert_int_equal(send_ex(f->s, SENDER, m, a, "old data", 10, 0, false, NULL), CN_OK);
    assert_int_equal(persisted(f->s, a), UINT64_MAX);
    size_t klen = cn__key_counter_any(key, CN__CTR_QBYTES, a);
    cn_store_u64be(stale, 7);
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CN__CF_META], (const char *)key, klen,
                   (const char *)stale, sizeof(stale), &err);
    assert_null(err);
    fx_reopen(f);
    assert_int_equal(counter(f->s, a), UINT64_MAX);
    uint64_t before = queued_bytes(f->s, a);
    assert_int_equal(send_ex(f->s, SENDER, 4, a, "new", 10, 0, false, NULL), CN_OK);
    assert_int_equal(counter(f->s, a), queued_bytes(f->s, a));
    assert_true(counter(f->s, a) > before);
    assert_int_equal(persisted(f->s, a), UINT64_MAX);
    /* The same through an ack as the first use. */
    fx_reopen(f);
    uint64_t seqs[] = {1, 2};
    assert_int_equal(ack_seqs(f->s, a, seqs, 2, NULL), CN_OK);
    assert_int_equal(counter(f->s, a), queued_bytes(f->s, a));
}

/* In one batch, earlier appends count against later sends, duplicates of a
 * recipient inside one op add up, and a refused op leaves the others. */
static void test_cap_within_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], probe[CN_DEVICE_ID_LEN];
    cn_store_op_t s1, s2, s3;
    cn_store_recipient_t r1, r2[2], r3;
    uint64_t now = cn_now_ms();
    make_id(a, 6, 1);
    make_id(probe, 6, 9);
    uint64_t cap = 2 * one_size(f, probe);
    recipient(&r1, a, "msg");
    op_send(&s1, SENDER, 1, &r1, 1, now);
    recipient(&r2[0], a, "msg");
    recipient(&r2[1], a, "msg");
    op_send(&s2, SENDER, 2, r2, 2, now); /* two copies: one too many */
    recipient(&r3, a, "msg");
    op_send(&s3, SENDER, 3, &r3, 1, now);
    s1.u.send.max_queued_bytes = s2.u.send.max_queued_bytes = s3.u.send.max_queued_bytes = cap;
    cn_store_op_t *ops[] = {&s1, &s2, &s3};
    run_batch_of(f->s, ops, 3);
    assert_int_equal(s1.result, CN_OK);
    assert_int_equal(s2.result, CN_ELIMIT);
    assert_int_equal(s2.u.send.limited_index, 1);
    assert_int_equal(s3.result, CN_OK);
    assert_int_equal(r3.seq, 2);
    assert_int_equal(counter(f->s, a), cap);
    assert_int_equal(queued_bytes(f->s, a), cap);
}

/* A recount inside a batch sees the batch's own appends: they are not
 * indexed (overlay.c), so the recount adds what the batch changed. */
static void test_recount_sees_batch_appends(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], probe[CN_DEVICE_ID_LEN];
    cn_store_op_t s1, s2;
    cn_store_recipient_t r1, r2;
    uint64_t now = cn_now_ms();
    make_id(a, 8, 1);
    make_id(probe, 8, 9);
    uint64_t one = one_size(f, probe), cap = 2 * one;
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "msg", now - OLD_MS, cap, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, a, "msg", now, cap, false, NULL), CN_OK);
    assert_int_equal(cn__store_compact(f->s, CN__CF_MAILBOX), CN_OK);
    assert_int_equal(counter(f->s, a), cap); /* stale: one entry expired */
    /* The first send recounts (one entry) and fits; the second must
     * count the first, which only this batch holds. */
    recipient(&r1, a, "msg");
    op_send(&s1, SENDER, 3, &r1, 1, now);
    recipient(&r2, a, "msg");
    op_send(&s2, SENDER, 4, &r2, 1, now);
    s1.u.send.max_queued_bytes = s2.u.send.max_queued_bytes = cap;
    cn_store_op_t *ops[] = {&s1, &s2};
    run_batch_of(f->s, ops, 2);
    assert_int_equal(s1.result, CN_OK);
    assert_int_equal(s2.result, CN_ELIMIT);
    assert_int_equal(queued_bytes(f->s, a), cap);
    assert_int_equal(counter(f->s, a), cap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_follows_send_ack_revoke, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cap_refuses_whole_op, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_frees_room, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expired_bytes_reclaimed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_counter_computed_after_restart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cap_within_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_recount_sees_batch_appends, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
