/*
 * Invites consumed by REGISTER: a use is taken in the same batch as the new
 * user, the last use deletes the record, and expired, used-up, malformed or
 * missing invites register nobody.
 */
#include "tests/unit/store/store_test_util.h"

static void put_invite(cn_store_t *s, const char *name, uint32_t uses, uint64_t expires)
{
    uint8_t rec[CN_INVITE_RECORD_LEN];
    cn_store_u32be(rec, uses);
    cn_store_u64be(rec + 4, expires);
    assert_int_equal(cn_store_meta_put(s, name, rec, sizeof(rec)), CN_OK);
}

static int register_with(cn_store_t *s, const char *handle, uint8_t n, const char *invite)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    make_id(id, 0x40, n);
    cn_store_op_t op;
    op_register(&op, CN_OP_REGISTER, handle, id);
    snprintf(op.u.reg.consume_meta, sizeof(op.u.reg.consume_meta), "%s", invite);
    return run_op(s, &op);
}

static uint32_t uses_left(cn_store_t *s, const char *name)
{
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_store_meta_get(s, name, &b);
    uint32_t uses = rc == CN_OK && b.len == CN_INVITE_RECORD_LEN ? cn_load_u32be(b.data) : 0;
    cn_buf_dispose(&b);
    return uses;
}

static void test_multi_use_invite(void **state)
{
    fx_t *f = *state;
    put_invite(f->s, "invite/aa", 2, 0);
    assert_int_equal(register_with(f->s, "alice", 1, "invite/aa"), CN_OK);
    assert_int_equal(uses_left(f->s, "invite/aa"), 1);
    assert_int_equal(register_with(f->s, "bob", 2, "invite/aa"), CN_OK);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_meta_get(f->s, "invite/aa", &b), CN_ENOTFOUND); /* used up */
    cn_buf_dispose(&b);
    assert_int_equal(register_with(f->s, "carol", 3, "invite/aa"), CN_EAUTH);
    cn_rec_user_t u;
    assert_int_equal(cn_store_user_get(f->s, "carol", &u), CN_ENOTFOUND);
    assert_int_equal(cn_store_user_get(f->s, "bob", &u), CN_OK);
}

static void test_refused_invites_register_nobody(void **state)
{
    fx_t *f = *state;
    put_invite(f->s, "invite/old", 5, 1000); /* expired in 1970 */
    assert_int_equal(register_with(f->s, "dave", 4, "invite/old"), CN_EAUTH);
    assert_int_equal(uses_left(f->s, "invite/old"), 5); /* nothing taken */
    assert_int_equal(register_with(f->s, "erin", 5, "invite/none"), CN_EAUTH);
    assert_int_equal(cn_store_meta_put(f->s, "invite/bad", "xyz", 3), CN_OK);
    assert_int_equal(register_with(f->s, "frank", 6, "invite/bad"), CN_EAUTH);
    put_invite(f->s, "invite/zero", 0, 0);
    assert_int_equal(register_with(f->s, "grace", 7, "invite/zero"), CN_EAUTH);
    /* A handle conflict takes no use either. */
    put_invite(f->s, "invite/one", 1, cn_now_ms() + 60000);
    assert_int_equal(register_with(f->s, "heidi", 8, ""), CN_OK);
    assert_int_equal(register_with(f->s, "heidi", 9, "invite/one"), CN_EEXIST);
    assert_int_equal(uses_left(f->s, "invite/one"), 1);
    cn_rec_user_t u;
    assert_int_equal(cn_store_user_get(f->s, "dave", &u), CN_ENOTFOUND);
}

static void test_two_registrations_one_batch(void **state)
{
    fx_t *f = *state;
    put_invite(f->s, "invite/once", 1, 0);
    cn_store_op_t a, b;
    uint8_t ida[CN_DEVICE_ID_LEN], idb[CN_DEVICE_ID_LEN];
    make_id(ida, 0x50, 1);
    make_id(idb, 0x50, 2);
    op_register(&a, CN_OP_REGISTER, "ivan", ida);
    op_register(&b, CN_OP_REGISTER, "judy", idb);
    snprintf(a.u.reg.consume_meta, sizeof(a.u.reg.consume_meta), "invite/once");
    snprintf(b.u.reg.consume_meta, sizeof(b.u.reg.consume_meta), "invite/once");
    cn_store_op_t *ops[] = {&a, &b};
    run_batch_of(f->s, ops, 2);
    assert_int_equal(a.result, CN_OK);
    assert_int_equal(b.result, CN_EAUTH); /* the batch saw the first use */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_multi_use_invite, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused_invites_register_nobody, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_two_registrations_one_batch, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
