/*
 * CN_OP_GROUP_CREATE / CN_OP_GROUP_UPDATE and cn_store_group_get: the
 * stored record (members in join order, roles, version), every refusal
 * and that it writes nothing, the admin rules, the promotion when the last
 * admin leaves, limits, persistence, and ops of one batch seeing each
 * other.
 */
#include "tests/unit/store/store_test_util.h"

static const uint8_t GID[CN_GROUP_ID_LEN] = {0x61, 0x62};

/** Registers users named by a NULL-terminated list (device ids from seed). */
static void users(fx_t *f, uint8_t seed, const char *const *names)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    for (uint8_t i = 0; names[i] != NULL; i++) {
        make_id(id, seed, i);
        assert_int_equal(do_register(f->s, CN_OP_REGISTER, names[i], id, 0), CN_OK);
    }
}

static cn_rec_group_member_t mem(const char *handle, uint8_t role)
{
    cn_rec_group_member_t m;
    memset(&m, 0, sizeof(m));
    strcpy(m.handle, handle);
    m.role = role;
    return m;
}

static void op_create(cn_store_op_t *op, const char *creator, const cn_rec_group_member_t *m,
                      uint32_t n, cn_rec_group_t *out)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_GROUP_CREATE;
    memcpy(op->u.group_create.group_id, GID, CN_GROUP_ID_LEN);
    strcpy(op->u.group_create.creator, creator);
    op->u.group_create.n = n;
    op->u.group_create.members = m;
    op->u.group_create.out = out;
}

static void op_update(cn_store_op_t *op, const char *actor, uint64_t expected, cn_rec_group_t *out)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_GROUP_UPDATE;
    memcpy(op->u.group_update.group_id, GID, CN_GROUP_ID_LEN);
    strcpy(op->u.group_update.actor, actor);
    op->u.group_update.expected_version = expected;
    op->u.group_update.out = out;
}

static cn_rec_group_t *group_new(void)
{
    cn_rec_group_t *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    return g;
}

/** Asserts the members of g: "handle:role" strings in order. */
static void expect_members(const cn_rec_group_t *g, const char *const *want, uint32_t n)
{
    assert_int_equal(g->n, n);
    for (uint32_t i = 0; i < n; i++) {
        char got[CN_HANDLE_MAX + 16]; /* handle ‖ ':' ‖ a u32 */
        snprintf(got, sizeof(got), "%s:%u", g->members[i].handle, g->members[i].role);
        assert_string_equal(got, want[i]);
    }
}

static void test_create_and_get(void **state)
{
    fx_t *f = *state;
    static const char *const names[] = {"ann", "bob", "cat", NULL};
    cn_rec_group_member_t m[] = {mem("bob", 0), mem("cat", 0), mem("bob", 1), mem("ann", 0)};
    cn_rec_group_t *out = group_new(), *got = group_new();
    cn_store_op_t op;
    users(f, 1, names);
    uint64_t t0 = cn_now_ms();
    op_create(&op, "ann", m, 4, out);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    /* The creator first as admin; duplicates collapsed, admin wins. */
    static const char *const want[] = {"ann:1", "bob:1", "cat:0"};
    expect_members(out, want, 3);
    assert_int_equal(out->version, 1);
    assert_true(out->created >= t0);
    fx_reopen(f);
    assert_int_equal(cn_store_group_get(f->s, GID, got), CN_OK);
    assert_memory_equal(out, got, sizeof(*got));
    /* The id is taken now. */
    op_create(&op, "bob", NULL, 0, NULL);
    assert_int_equal(run_op(f->s, &op), CN_EEXIST);
    uint8_t other[CN_GROUP_ID_LEN] = {9};
    assert_int_equal(cn_store_group_get(f->s, other, got), CN_ENOTFOUND);
    free(out);
    free(got);
}

static void test_create_refusals(void **state)
{
    fx_t *f = *state;
    static const char *const names[] = {"ann", "bob", "dis", NULL};
    cn_rec_group_t *g = group_new();
    cn_store_op_t op;
    users(f, 2, names);
    cn_store_op_t dis;
    memset(&dis, 0, sizeof(dis));
    dis.type = CN_OP_USER_UPDATE;
    strcpy(dis.u.user_update.handle, "dis");
    dis.u.user_update.mask = CN_USER_SET_DISABLED;
    dis.u.user_update.disabled = true;
    assert_int_equal(run_op(f->s, &dis), CN_OK);

    cn_rec_group_member_t m[] = {mem("bob", 0), mem("nobody", 0), mem("dis", 0)};
    op_create(&op, "ann", m, 3, NULL);
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);
    assert_int_equal(op.u.group_create.index, 1);
    op_create(&op, "ann", m + 2, 1, NULL); /* disabled counts as unknown */
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);
    assert_int_equal(op.u.group_create.index, 0);
    op_create(&op, "nobody", m, 1, NULL);
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    cn_rec_group_member_t bad[] = {mem("bob", 0), mem("Bob", 0)};
    op_create(&op, "ann", bad, 2, NULL);
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    assert_int_equal(op.u.group_create.index, 1);
    bad[1] = mem("bob", 2);
    op_create(&op, "ann", bad, 2, NULL);
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    op_create(&op, "ann", m, CN_GROUP_MEMBERS_HARD_MAX + 1, NULL);
    assert_int_equal(run_op(f->s, &op), CN_ETOOBIG);
    /* Two members with a limit of one: the creator counts. */
    op_create(&op, "ann", m, 1, NULL);
    op.u.group_create.max_members = 1;
    assert_int_equal(run_op(f->s, &op), CN_ELIMIT);
    assert_int_equal(cn_store_group_get(f->s, GID, g), CN_ENOTFOUND); /* nothing written */
    op.u.group_create.max_members = 2;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    free(g);
}

static void test_update_admin_ops(void **state)
{
    fx_t *f = *state;
    static const char *const names[] = {"ann", "bob", "cat", "dan", NULL};
    cn_rec_group_member_t m[] = {mem("bob", 0)}, add[] = {mem("cat", 0), mem("dan", 1)},
                          rm[] = {mem("bob", 0), mem("zed", 0)}, role[] = {mem("cat", 1)};
    cn_rec_group_t *out = group_new();
    cn_store_op_t op;
    users(f, 3, names);
    op_create(&op, "ann", m, 1, NULL);
    assert_int_equal(run_op(f->s, &op), CN_OK);

    op_update(&op, "ann", 1, out);
    op.u.group_update.n_add = 2, op.u.group_update.add = add;
    op.u.group_update.n_remove = 2, op.u.group_update.remove = rm; /* zed: ignored */
    op.u.group_update.n_set_role = 1, op.u.group_update.set_role = role;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_true(op.u.group_update.changed);
    static const char *const want[] = {"ann:1", "cat:1", "dan:1"};
    expect_members(out, want, 3);
    assert_int_equal(out->version, 2);
    /* A stale version: refused, out holds the current record. */
    memset(out, 0, sizeof(*out));
    op_update(&op, "ann", 1, out);
    op.u.group_update.n_remove = 1, op.u.group_update.remove = add;
    assert_int_equal(run_op(f->s, &op), CN_ECONFLICT);
    assert_int_equal(out->version, 2);
    expect_members(out, want, 3);
    /* A retry that changes nothing keeps the version. */
    op_update(&op, "ann", 0, out);
    op.u.group_update.n_add = 2, op.u.group_update.add = add;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.group_update.changed);
    assert_int_equal(out->version, 2);
    free(out);
}

static void test_update_refusals(void **state)
{
    fx_t *f = *state;
    static const char *const names[] = {"ann", "bob", "cat", NULL};
    cn_rec_group_member_t m[] = {mem("bob", 0)}, cat[] = {mem("cat", 0)},
                          ghost[] = {mem("cat", 0), mem("ghost", 0)}, ann[] = {mem("ann", 0)};
    cn_rec_group_t *g = group_new();
    cn_store_op_t op;
    users(f, 4, names);
    op_update(&op, "ann", 0, NULL);
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND); /* no group yet */
    op_create(&op, "ann", m, 1, NULL);
    assert_int_equal(run_op(f->s, &op), CN_OK);

    op_update(&op, "bob", 0, NULL); /* a member adds: not allowed */
    op.u.group_update.n_add = 1, op.u.group_update.add = cat;
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    op_update(&op, "bob", 0, NULL); /* nor removes someone else */
    op.u.group_update.n_remove = 1, op.u.group_update.remove = ann;
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    op_update(&op, "cat", 0, NULL); /* not a member */
    op.u.group_update.n_add = 1, op.u.group_update.add = cat;
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    op_update(&op, "ann", 0, NULL);
    op.u.group_update.n_add = 2, op.u.group_update.add = ghost;
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);
    assert_int_equal(op.u.group_update.index, 1);
    op_update(&op, "ann", 0, NULL);
    op.u.group_update.n_set_role = 1, op.u.group_update.set_role = cat;
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);
    assert_int_equal(op.u.group_update.index, UINT32_MAX);
    op_update(&op, "ann", 0, NULL);
    op.u.group_update.n_add = 1, op.u.group_update.add = cat;
    op.u.group_update.max_members = 2;
    assert_int_equal(run_op(f->s, &op), CN_ELIMIT);
    op_update(&op, "Ann", 0, NULL);
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    assert_int_equal(cn_store_group_get(f->s, GID, g), CN_OK);
    assert_int_equal(g->version, 1); /* none of it was written */
    assert_int_equal(g->n, 2);
    free(g);
}

static void test_leave_and_promotion(void **state)
{
    fx_t *f = *state;
    static const char *const names[] = {"ann", "bob", "cat", NULL};
    cn_rec_group_member_t m[] = {mem("bob", 0), mem("cat", 0)}, bob[] = {mem("bob", 0)},
                          ann[] = {mem("ann", 0)};
    cn_rec_group_t *out = group_new();
    cn_store_op_t op;
    users(f, 5, names);
    op_create(&op, "ann", m, 2, NULL);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    op_update(&op, "bob", 0, out); /* a member leaves */
    op.u.group_update.n_remove = 1, op.u.group_update.remove = bob;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    static const char *const after_bob[] = {"ann:1", "cat:0"};
    expect_members(out, after_bob, 2);
    assert_int_equal(run_op(f->s, &op), CN_OK); /* a retry of the leave */
    assert_false(op.u.group_update.changed);
    /* The last admin leaves: the oldest member inherits it. */
    op_update(&op, "ann", 0, out);
    op.u.group_update.n_remove = 1, op.u.group_update.remove = ann;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    static const char *const after_ann[] = {"cat:1"};
    expect_members(out, after_ann, 1);
    assert_int_equal(out->version, 3);
    free(out);
}

static void test_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_rec_group_member_t m[] = {mem("new1", 0)}, add[] = {mem("new2", 0)};
    cn_rec_group_t *out = group_new();
    cn_store_op_t reg[3], create, update;
    static const char *const names[] = {"own", "new1", "new2"};
    for (int i = 0; i < 3; i++) {
        make_id(id, 6, (uint8_t)i);
        op_register(&reg[i], CN_OP_REGISTER, names[i], id);
    }
    op_create(&create, "own", m, 1, NULL);
    op_update(&update, "own", 1, out);
    update.u.group_update.n_add = 1, update.u.group_update.add = add;
    cn_store_op_t *ops[] = {&reg[0], &reg[1], &reg[2], &create, &update};
    run_batch_of(f->s, ops, 5);
    assert_int_equal(create.result, CN_OK);
    assert_int_equal(update.result, CN_OK);
    static const char *const want[] = {"own:1", "new1:0", "new2:0"};
    expect_members(out, want, 3);
    assert_int_equal(out->version, 2);
    free(out);
}

static void test_default_limit_1000(void **state)
{
    fx_t *f = *state;
    enum { N = CN_GROUP_MEMBERS_HARD_MAX };
    cn_store_op_t *ops = calloc(N + 1, sizeof(*ops)), **list = calloc(N + 1, sizeof(*list));
    cn_rec_group_member_t *m = calloc(N, sizeof(*m));
    cn_rec_group_t *out = group_new();
    assert_true(ops && list && m);
    for (int i = 0; i <= N; i++) {
        uint8_t id[CN_DEVICE_ID_LEN];
        char h[16];
        snprintf(h, sizeof(h), "u%04d", i);
        make_id(id, (uint8_t)(0x80 + i / 256), (uint8_t)(i % 256));
        op_register(&ops[i], CN_OP_REGISTER, h, id);
        list[i] = &ops[i];
        if (i > 0)
            m[i - 1] = mem(h, 0);
    }
    run_batch_of(f->s, list, N + 1);
    cn_store_op_t op;
    op_create(&op, "u0000", m, N, NULL); /* 1001 with the creator */
    assert_int_equal(run_op(f->s, &op), CN_ELIMIT);
    op_create(&op, "u0000", m, N - 1, out);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(out->n, N);
    assert_int_equal(cn_store_group_get(f->s, GID, out), CN_OK);
    assert_int_equal(out->n, N);
    assert_string_equal(out->members[N - 1].handle, "u0999");
    free(ops), free(list), free(m), free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_get, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_update_admin_ops, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_update_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_leave_and_promotion, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_default_limit_1000, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
