/*
 * The history archive (CN_OP_HISTORY_APPEND, cn_store_history_query,
 * cn_store_thread_list): pages newest first per thread and across threads,
 * exclusive cursors (also inside a run of equal times), idempotent
 * appends, the threads by last activity, refusals, users kept apart,
 * persistence and one batch. Also presence: CN_USER_SET_LAST_SEEN.
 */
#include "tests/unit/store/store_test_util.h"

typedef struct page {
    int n;
    uint8_t tag[16];
    uint64_t time[16];
    uint8_t id[16];
    char sealed[16][16];
    int stop_after;
} page_t;

static int page_cb(void *ctx, const uint8_t *tag, uint64_t time, const uint8_t *id,
                   const uint8_t *sealed, size_t len)
{
    page_t *p = ctx;
    assert_true(p->n < 16 && len < 16);
    p->tag[p->n] = tag[0];
    p->time[p->n] = time;
    p->id[p->n] = id[0];
    memcpy(p->sealed[p->n], sealed, len);
    p->sealed[p->n][len] = '\0';
    p->n++;
    return p->stop_after != 0 && p->n >= p->stop_after;
}

static void user(fx_t *f, const char *handle, uint8_t seed)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    make_id(id, seed, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, handle, id, 0), CN_OK);
}

static void op_append(cn_store_op_t *op, const char *handle, uint8_t tag, uint64_t time, uint8_t id,
                      const char *sealed)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_HISTORY_APPEND;
    strcpy(op->u.history_append.handle, handle);
    memset(op->u.history_append.thread_tag, tag, CN_THREAD_TAG_LEN);
    op->u.history_append.time = time;
    memset(op->u.history_append.entry_id, id, CN_HISTORY_ID_LEN);
    op->u.history_append.sealed = cn_slice(sealed, strlen(sealed));
}

static int append(fx_t *f, const char *handle, uint8_t tag, uint64_t time, uint8_t id,
                  const char *sealed)
{
    cn_store_op_t op;
    op_append(&op, handle, tag, time, id, sealed);
    return run_op(f->s, &op);
}

/** Queries a page; tag 0 means all threads. Returns the count, *more. */
static int query(fx_t *f, const char *handle, uint8_t tag, uint64_t before, const uint8_t *bid,
                 uint32_t limit, page_t *p, bool *more)
{
    uint8_t t[CN_THREAD_TAG_LEN];
    memset(t, tag, sizeof(t));
    int stop = p->stop_after;
    memset(p, 0, sizeof(*p));
    p->stop_after = stop;
    return cn_store_history_query(f->s, handle, tag ? t : NULL, before, bid, limit, page_cb, p,
                                  more);
}

static void fill(fx_t *f)
{
    user(f, "amy", 1);
    /* Thread 0xa: times 10, 30, 50; thread 0xb: 20, 40. */
    assert_int_equal(append(f, "amy", 0xa, 10, 1, "a10"), CN_OK);
    assert_int_equal(append(f, "amy", 0xb, 20, 2, "b20"), CN_OK);
    assert_int_equal(append(f, "amy", 0xa, 30, 3, "a30"), CN_OK);
    assert_int_equal(append(f, "amy", 0xb, 40, 4, "b40"), CN_OK);
    assert_int_equal(append(f, "amy", 0xa, 50, 5, "a50"), CN_OK);
}

static void test_thread_and_all_pages(void **state)
{
    fx_t *f = *state;
    page_t p = {0};
    bool more;
    fill(f);
    fx_reopen(f);
    assert_int_equal(query(f, "amy", 0xa, 0, NULL, 10, &p, &more), 3);
    assert_false(more);
    assert_string_equal(p.sealed[0], "a50");
    assert_string_equal(p.sealed[2], "a10");
    assert_int_equal(p.time[1], 30);
    assert_int_equal(p.tag[1], 0xa);
    assert_int_equal(p.id[1], 3);
    assert_int_equal(query(f, "amy", 0, 0, NULL, 3, &p, &more), 3);
    assert_true(more);
    assert_string_equal(p.sealed[0], "a50");
    assert_string_equal(p.sealed[1], "b40");
    assert_int_equal(p.tag[1], 0xb);
    assert_string_equal(p.sealed[2], "a30");
    /* The next page: strictly before the last time seen. */
    assert_int_equal(query(f, "amy", 0, 30, NULL, 3, &p, &more), 2);
    assert_false(more);
    assert_string_equal(p.sealed[0], "b20");
    assert_string_equal(p.sealed[1], "a10");
    assert_int_equal(query(f, "amy", 0xb, 40, NULL, 10, &p, &more), 1);
    assert_int_equal(query(f, "amy", 0xb, 20, NULL, 10, &p, &more), 0);
    assert_int_equal(query(f, "amy", 0xc, 0, NULL, 10, &p, &more), 0);
    assert_int_equal(query(f, "amy", 0, 0, NULL, 0, &p, &more), 0); /* limit 0 */
    assert_int_equal(query(f, "nobody", 0, 0, NULL, 10, &p, &more), 0);
    assert_int_equal(query(f, "No", 0, 0, NULL, 10, &p, &more), CN_EINVAL);
    /* A callback that stops: counted, and more is set. */
    p.stop_after = 1;
    assert_int_equal(query(f, "amy", 0xa, 0, NULL, 10, &p, &more), 1);
    assert_true(more);
}

static void test_equal_times_cursor(void **state)
{
    fx_t *f = *state;
    page_t p = {0};
    bool more;
    uint8_t bid[CN_HISTORY_ID_LEN];
    user(f, "amy", 2);
    for (uint8_t id = 1; id <= 4; id++)
        assert_int_equal(append(f, "amy", 0xa, 77, id, "same"), CN_OK);
    assert_int_equal(append(f, "amy", 0xa, 76, 9, "older"), CN_OK);
    assert_int_equal(query(f, "amy", 0, 0, NULL, 2, &p, &more), 2);
    assert_int_equal(p.id[0], 4);
    assert_int_equal(p.id[1], 3);
    memset(bid, p.id[1], sizeof(bid)); /* resume after (77, id 3) */
    for (int all = 0; all < 2; all++) {
        assert_int_equal(query(f, "amy", all ? 0 : 0xa, 77, bid, 10, &p, &more), 3);
        assert_int_equal(p.id[0], 2);
        assert_int_equal(p.id[1], 1);
        assert_string_equal(p.sealed[2], "older");
    }
}

static void test_idempotent_and_refusals(void **state)
{
    fx_t *f = *state;
    page_t p = {0};
    cn_store_op_t op;
    static uint8_t big[CN_CIPHERTEXT_MAX + 1];
    user(f, "amy", 3);
    op_append(&op, "amy", 0xa, 5, 1, "first");
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.history_append.duplicate);
    op_append(&op, "amy", 0xa, 5, 1, "again");
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_true(op.u.history_append.duplicate);
    assert_int_equal(query(f, "amy", 0, 0, NULL, 10, &p, NULL), 1);
    assert_string_equal(p.sealed[0], "first");
    assert_int_equal(append(f, "zed", 0xa, 5, 1, "x"), CN_ENOTFOUND);
    assert_int_equal(append(f, "Amy", 0xa, 5, 1, "x"), CN_EINVAL);
    op_append(&op, "amy", 0xa, 6, 1, "");
    op.u.history_append.sealed = cn_slice(big, sizeof(big));
    assert_int_equal(run_op(f->s, &op), CN_ETOOBIG);
    op.u.history_append.sealed = cn_slice(NULL, 3);
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    op.u.history_append.sealed = cn_slice(big, CN_CIPHERTEXT_MAX); /* the maximum fits */
    assert_int_equal(run_op(f->s, &op), CN_OK);
}

typedef struct threads {
    int n;
    uint8_t tag[8];
    uint64_t last[8];
} threads_t;

static int thread_cb(void *ctx, const uint8_t *tag, uint64_t last)
{
    threads_t *t = ctx;
    assert_true(t->n < 8);
    t->tag[t->n] = tag[0];
    t->last[t->n++] = last;
    return 0;
}

static void test_thread_list_and_users_apart(void **state)
{
    fx_t *f = *state;
    threads_t t = {0};
    page_t p = {0};
    fill(f);
    user(f, "amyb", 4); /* "amy" is a prefix of its handle */
    assert_int_equal(append(f, "amyb", 0xc, 99, 1, "other"), CN_OK);
    assert_int_equal(append(f, "amy", 0xb, 45, 6, "b45"), CN_OK);
    assert_int_equal(append(f, "amy", 0xa, 1, 7, "a1"), CN_OK); /* older: last stays 50 */
    assert_int_equal(cn_store_thread_list(f->s, "amy", 10, thread_cb, &t), 2);
    assert_int_equal(t.tag[0], 0xa);
    assert_int_equal(t.last[0], 50);
    assert_int_equal(t.tag[1], 0xb);
    assert_int_equal(t.last[1], 45);
    assert_int_equal(append(f, "amy", 0xb, 60, 8, "b60"), CN_OK);
    memset(&t, 0, sizeof(t));
    assert_int_equal(cn_store_thread_list(f->s, "amy", 1, thread_cb, &t), 1);
    assert_int_equal(t.tag[0], 0xb);
    assert_int_equal(t.last[0], 60);
    assert_int_equal(query(f, "amy", 0, 0, NULL, 16, &p, NULL), 8);
    assert_int_equal(query(f, "amyb", 0, 0, NULL, 16, &p, NULL), 1);
    assert_string_equal(p.sealed[0], "other");
    assert_int_equal(cn_store_thread_list(f->s, "amy", 0, thread_cb, &t), 0);
    assert_int_equal(cn_store_thread_list(f->s, "nobody", 5, thread_cb, &t), 0);
}

static void test_one_batch(void **state)
{
    fx_t *f = *state;
    page_t p = {0};
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_store_op_t reg, a1, a2, dup;
    make_id(id, 5, 1);
    op_register(&reg, CN_OP_REGISTER, "amy", id);
    op_append(&a1, "amy", 0xa, 10, 1, "one");
    op_append(&a2, "amy", 0xa, 11, 2, "two");
    op_append(&dup, "amy", 0xa, 10, 1, "dup");
    cn_store_op_t *ops[] = {&reg, &a1, &a2, &dup};
    run_batch_of(f->s, ops, 4);
    assert_int_equal(a1.result, CN_OK);
    assert_int_equal(a2.result, CN_OK);
    assert_int_equal(dup.result, CN_OK);
    assert_true(dup.u.history_append.duplicate);
    assert_int_equal(query(f, "amy", 0xa, 0, NULL, 10, &p, NULL), 2);
    assert_string_equal(p.sealed[1], "one");
}

static void test_presence_last_seen(void **state)
{
    fx_t *f = *state;
    cn_store_op_t op;
    cn_rec_user_t u;
    user(f, "amy", 6);
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_USER_UPDATE;
    strcpy(op.u.user_update.handle, "amy");
    op.u.user_update.mask = CN_USER_SET_LAST_SEEN;
    op.u.user_update.last_seen = 1700000000123ull;
    op.u.user_update.disabled = true; /* not in the mask: ignored */
    assert_int_equal(run_op(f->s, &op), CN_OK);
    fx_reopen(f);
    assert_int_equal(cn_store_user_get(f->s, "amy", &u), CN_OK);
    assert_int_equal(u.last_seen, 1700000000123ull);
    assert_false(u.disabled);
    assert_int_equal(u.ndevices, 1);
    op.u.user_update.mask = CN_USER_SET_PRESENCE_HIDDEN;
    op.u.user_update.presence_hidden = true;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(cn_store_user_get(f->s, "amy", &u), CN_OK);
    assert_int_equal(u.last_seen, 1700000000123ull); /* kept */
    assert_true(u.presence_hidden);
    op.u.user_update.mask = CN_USER_SET_LAST_SEEN << 1;
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thread_and_all_pages, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_equal_times_cursor, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_and_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_thread_list_and_users_apart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_presence_last_seen, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
