/*
 * libchatstore administration: user and device listings with cursors,
 * exact mailbox statistics, USER_UPDATE, meta ops through the writer and
 * meta scans, checkpoints, and the writer's histograms.
 */
#include "tests/unit/store/store_test_util.h"

#include <unistd.h>

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

/* ------------------------------------------------------------ listings */

typedef struct names {
    size_t n;
    char v[16][CN_STORE_META_NAME_MAX + 1];
    uint32_t ndevices[16];
    bool disabled[16];
    size_t vlen[16];
    int stop_after; /* non-zero: stop once this many were seen */
} names_t;

static int user_cb(void *ctx, const char *handle, const cn_rec_user_t *u)
{
    names_t *c = ctx;
    assert_true(c->n < 16);
    strcpy(c->v[c->n], handle);
    c->ndevices[c->n] = u->ndevices;
    c->disabled[c->n] = u->disabled;
    c->n++;
    return c->stop_after && (int)c->n >= c->stop_after;
}

static int list_users(cn_store_t *s, const char *after, uint32_t limit, names_t *c)
{
    memset(c, 0, sizeof(*c));
    return cn_store_user_list(s, after, limit, user_cb, c);
}

static void test_user_list_order_and_cursor(void **state)
{
    fx_t *f = *state;
    const char *handles[] = {"carol", "alice", "dave", "bob"};
    uint8_t id[CN_DEVICE_ID_LEN];
    names_t c;
    assert_int_equal(list_users(f->s, "", 10, &c), 0);
    for (uint8_t i = 0; i < 4; i++) {
        make_id(id, 1, i);
        assert_int_equal(do_register(f->s, CN_OP_REGISTER, handles[i], id, 0), CN_OK);
    }
    make_id(id, 1, 9);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "bob", id, 0), CN_OK);

    assert_int_equal(list_users(f->s, NULL, 10, &c), 4);
    assert_string_equal(c.v[0], "alice");
    assert_string_equal(c.v[1], "bob");
    assert_string_equal(c.v[2], "carol");
    assert_string_equal(c.v[3], "dave");
    assert_int_equal(c.ndevices[1], 2);
    /* Pages of two: the cursor itself is not listed again. */
    assert_int_equal(list_users(f->s, "", 2, &c), 2);
    assert_string_equal(c.v[1], "bob");
    assert_int_equal(list_users(f->s, "bob", 2, &c), 2);
    assert_string_equal(c.v[0], "carol");
    assert_string_equal(c.v[1], "dave");
    assert_int_equal(list_users(f->s, "dave", 2, &c), 0);
    /* A cursor that is no handle starts at the next one. */
    assert_int_equal(list_users(f->s, "b", 10, &c), 3);
    assert_string_equal(c.v[0], "bob");
    assert_int_equal(list_users(f->s, "", 0, &c), 0);
    memset(&c, 0, sizeof(c));
    c.stop_after = 1;
    assert_int_equal(cn_store_user_list(f->s, "", 10, user_cb, &c), 1);
    char long_cursor[CN_HANDLE_MAX + 2];
    memset(long_cursor, 'a', sizeof(long_cursor) - 1);
    long_cursor[sizeof(long_cursor) - 1] = '\0';
    assert_int_equal(list_users(f->s, long_cursor, 10, &c), CN_EINVAL);
}

typedef struct ids {
    size_t n;
    uint8_t id[16][CN_DEVICE_ID_LEN];
    char user[16][CN_HANDLE_MAX + 1];
    bool revoked[16];
} ids_t;

static int device_cb(void *ctx, const uint8_t id[CN_DEVICE_ID_LEN], const cn_rec_device_t *d)
{
    ids_t *c = ctx;
    assert_true(c->n < 16);
    memcpy(c->id[c->n], id, CN_DEVICE_ID_LEN);
    strcpy(c->user[c->n], d->user);
    c->revoked[c->n] = d->revoked != 0;
    c->n++;
    return 0;
}

static void test_device_list(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], c[CN_DEVICE_ID_LEN];
    ids_t got;
    make_id(a, 2, 3);
    make_id(b, 2, 1);
    make_id(c, 1, 7);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "erin", a, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "erin", b, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "frank", c, 0), CN_OK);
    assert_int_equal(revoke(f->s, b), CN_OK);

    memset(&got, 0, sizeof(got));
    assert_int_equal(cn_store_device_list(f->s, NULL, 10, device_cb, &got), 3);
    /* Id order; the revoked device is listed, flagged. */
    assert_memory_equal(got.id[0], c, CN_DEVICE_ID_LEN);
    assert_string_equal(got.user[0], "frank");
    assert_memory_equal(got.id[1], b, CN_DEVICE_ID_LEN);
    assert_true(got.revoked[1]);
    assert_memory_equal(got.id[2], a, CN_DEVICE_ID_LEN);
    assert_false(got.revoked[2]);
    memset(&got, 0, sizeof(got));
    assert_int_equal(cn_store_device_list(f->s, b, 10, device_cb, &got), 1);
    assert_memory_equal(got.id[0], a, CN_DEVICE_ID_LEN);
    memset(&got, 0, sizeof(got));
    assert_int_equal(cn_store_device_list(f->s, NULL, 1, device_cb, &got), 1);
    assert_int_equal(cn_store_device_list(f->s, a, 10, device_cb, &got), 0);
}

static int sum_len_cb(void *ctx, uint64_t seq, const uint8_t *value, size_t len)
{
    (void)seq, (void)value;
    *(uint64_t *)ctx += len;
    return 0;
}

static void test_mailbox_stats(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    uint64_t d = 9, bytes = 9, oldest = 9, sum = 0, next;
    make_id(a, 3, 1);
    make_id(b, 3, 2);
    assert_int_equal(cn_store_mailbox_stats(f->s, a, &d, &bytes, &oldest), CN_OK);
    assert_true(d == 0 && bytes == 0 && oldest == 0);
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "short", 300, 0, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, a, "a longer ciphertext", 100, 0, false, NULL),
                     CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 3, a, "x", 200, 0, false, NULL), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 4, b, "elsewhere", 50, 0, false, NULL), CN_OK);
    assert_int_equal(cn_store_mailbox_read(f->s, a, 0, 100, 1 << 20, sum_len_cb, &sum, &next), 3);

    assert_int_equal(cn_store_mailbox_stats(f->s, a, &d, &bytes, &oldest), CN_OK);
    assert_int_equal(d, 3);
    assert_int_equal(bytes, sum);
    assert_int_equal(oldest, 300); /* the first entry's, not the minimum */
    uint64_t seqs[] = {1};
    assert_int_equal(ack_seqs(f->s, a, seqs, 1, NULL), CN_OK);
    assert_int_equal(cn_store_mailbox_stats(f->s, a, &d, NULL, &oldest), CN_OK);
    assert_int_equal(d, 2);
    assert_int_equal(oldest, 100);
    assert_int_equal(cn_store_mailbox_stats(f->s, b, &d, NULL, NULL), CN_OK);
    assert_int_equal(d, 1);
}

/* --------------------------------------------------------- user update */

static int update(cn_store_t *s, const char *handle, uint32_t mask, bool disabled, bool hidden)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_USER_UPDATE;
    strcpy(op.u.user_update.handle, handle);
    op.u.user_update.mask = mask;
    op.u.user_update.disabled = disabled;
    op.u.user_update.presence_hidden = hidden;
    return run_op(s, &op);
}

static void test_user_update(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_rec_user_t u;
    make_id(id, 4, 1);
    assert_int_equal(update(f->s, "ghost", CN_USER_SET_DISABLED, true, false), CN_ENOTFOUND);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "gina", id, 0), CN_OK);
    assert_int_equal(update(f->s, "gina", 0, true, true), CN_EINVAL);
    assert_int_equal(update(f->s, "gina", 1u << 5, true, true), CN_EINVAL);
    assert_int_equal(update(f->s, "Gina", CN_USER_SET_DISABLED, true, true), CN_EINVAL);
    assert_int_equal(cn_store_user_get(f->s, "gina", &u), CN_OK);
    assert_false(u.disabled || u.presence_hidden);

    /* Only the flags in the mask change. */
    assert_int_equal(update(f->s, "gina", CN_USER_SET_DISABLED, true, true), CN_OK);
    fx_reopen(f);
    assert_int_equal(cn_store_user_get(f->s, "gina", &u), CN_OK);
    assert_true(u.disabled);
    assert_false(u.presence_hidden);
    assert_int_equal(u.ndevices, 1);
    assert_memory_equal(u.devices[0], id, CN_DEVICE_ID_LEN);
    assert_int_equal(update(f->s, "gina", CN_USER_SET_PRESENCE_HIDDEN, false, true), CN_OK);
    assert_int_equal(cn_store_user_get(f->s, "gina", &u), CN_OK);
    assert_true(u.disabled && u.presence_hidden);
    assert_int_equal(
        update(f->s, "gina", CN_USER_SET_DISABLED | CN_USER_SET_PRESENCE_HIDDEN, false, false),
        CN_OK);
    assert_int_equal(cn_store_user_get(f->s, "gina", &u), CN_OK);
    assert_false(u.disabled || u.presence_hidden);
}

/* ---------------------------------------------------------------- meta */

static void op_meta(cn_store_op_t *op, int type, const char *name, const char *value)
{
    memset(op, 0, sizeof(*op));
    op->type = type;
    strcpy(op->u.meta.name, name);
    op->u.meta.value = value;
    op->u.meta.len = value ? strlen(value) : 0;
}

static int meta_op(cn_store_t *s, int type, const char *name, const char *value)
{
    cn_store_op_t op;
    op_meta(&op, type, name, value);
    return run_op(s, &op);
}

static int meta_cb(void *ctx, const char *name, const uint8_t *value, size_t len)
{
    names_t *c = ctx;
    assert_true(c->n < 16 && len < sizeof(c->v[0]));
    snprintf(c->v[c->n], sizeof(c->v[0]), "%s=%.*s", name, (int)len, (const char *)value);
    c->vlen[c->n] = len;
    c->n++;
    return c->stop_after && (int)c->n >= c->stop_after;
}

static int scan(cn_store_t *s, const char *prefix, names_t *c)
{
    memset(c, 0, sizeof(*c));
    return cn_store_meta_scan(s, prefix, meta_cb, c);
}

static void test_meta_ops_and_scan(void **state)
{
    fx_t *f = *state;
    names_t c;
    uint8_t a[CN_DEVICE_ID_LEN];
    make_id(a, 5, 1);
    /* Writer counters of every kind exist, and must never be listed. */
    assert_int_equal(send_ex(f->s, SENDER, 1, a, "m", 10, 0, true, NULL), CN_OK);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "ratelimit/send", "10/s"), CN_OK);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "ratelimit/connect", "1/s"), CN_OK);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "invite/abc", "uses=1"), CN_OK);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "ratelimits", ""), CN_OK);
    assert_int_equal(cn_store_meta_put(f->s, "node/id", "n1", 2), CN_OK);

    assert_int_equal(scan(f->s, "ratelimit/", &c), 2);
    assert_string_equal(c.v[0], "ratelimit/connect=1/s");
    assert_string_equal(c.v[1], "ratelimit/send=10/s");
    assert_int_equal(scan(f->s, "", &c), 5);
    assert_string_equal(c.v[0], "invite/abc=uses=1");
    assert_string_equal(c.v[1], "node/id=n1");
    assert_string_equal(c.v[4], "ratelimits=");
    assert_int_equal(c.vlen[4], 0);
    assert_int_equal(scan(f->s, "zzz", &c), 0);
    memset(&c, 0, sizeof(c));
    c.stop_after = 1;
    assert_int_equal(cn_store_meta_scan(f->s, NULL, meta_cb, &c), 1);
    /* The writer's names can be neither scanned nor written. */
    assert_int_equal(scan(f->s, "qbytes/", &c), CN_EINVAL);
    assert_int_equal(scan(f->s, "pushseq", &c), CN_EINVAL);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "qbytes/x", "1"), CN_EINVAL);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "mseq/x", "1"), CN_EINVAL);
    assert_int_equal(meta_op(f->s, CN_OP_META_DELETE, "pushseq", NULL), CN_EINVAL);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "", "1"), CN_EINVAL);
    assert_int_equal(cn_store_meta_put(f->s, "qbytes/y", "1", 1), CN_EINVAL);
    assert_int_equal(cn_store_meta_put(f->s, "pushseq", "1", 1), CN_EINVAL);

    assert_int_equal(meta_op(f->s, CN_OP_META_DELETE, "invite/abc", NULL), CN_OK);
    assert_int_equal(meta_op(f->s, CN_OP_META_DELETE, "invite/abc", NULL), CN_ENOTFOUND);
    fx_reopen(f);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_meta_get(f->s, "invite/abc", &b), CN_ENOTFOUND);
    assert_int_equal(cn_store_meta_get(f->s, "ratelimit/send", &b), CN_OK);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "10/s", 4);
    cn_buf_dispose(&b);
}

/* Meta ops are ordered with the rest of their batch: an invite put and the
 * registration consuming it, then a delete of a name put just before. */
static void test_meta_ops_in_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_store_op_t put, reg, reuse, put2, del;
    make_id(id, 6, 1);
    static const uint8_t one_use[CN_INVITE_RECORD_LEN] = {0, 0, 0, 1}; /* never expires */
    op_meta(&put, CN_OP_META_PUT, "invite/xyz", NULL);
    put.u.meta.value = one_use;
    put.u.meta.len = sizeof(one_use);
    op_register(&reg, CN_OP_REGISTER, "hank", id);
    strcpy(reg.u.reg.consume_meta, "invite/xyz");
    op_register(&reuse, CN_OP_REGISTER, "ivy", id);
    reuse.u.reg.device_id[0] ^= 1;
    strcpy(reuse.u.reg.consume_meta, "invite/xyz");
    op_meta(&put2, CN_OP_META_PUT, "tmp", "v");
    op_meta(&del, CN_OP_META_DELETE, "tmp", NULL);
    cn_store_op_t *ops[] = {&put, &reg, &reuse, &put2, &del};
    run_batch_of(f->s, ops, 5);
    assert_int_equal(put.result, CN_OK);
    assert_int_equal(reg.result, CN_OK);
    assert_int_equal(reuse.result, CN_EAUTH); /* single use */
    assert_int_equal(put2.result, CN_OK);
    assert_int_equal(del.result, CN_OK);
    names_t c;
    assert_int_equal(scan(f->s, "", &c), 0);
}

/* ---------------------------------------------------------- checkpoint */

static void test_checkpoint(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    char parent[64], dir[96];
    make_id(id, 7, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "iris", id, 0), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 1, id, "kept", 10, 0, true, NULL), CN_OK);
    assert_int_equal(meta_op(f->s, CN_OP_META_PUT, "ratelimit/send", "5/s"), CN_OK);
    strcpy(parent, "/tmp/cn_store_ckpt_XXXXXX");
    assert_non_null(mkdtemp(parent));
    assert_int_equal(cn_store_checkpoint(f->s, parent), CN_EEXIST);
    assert_int_equal(cn_store_checkpoint(f->s, ""), CN_EINVAL);
    snprintf(dir, sizeof(dir), "%s/backup", parent);
    assert_int_equal(cn_store_checkpoint(f->s, dir), CN_OK);
    assert_int_equal(cn_store_checkpoint(f->s, dir), CN_EEXIST);
    /* Written after the checkpoint: not in it. */
    assert_int_equal(send_ex(f->s, SENDER, 2, id, "later", 10, 0, false, NULL), CN_OK);

    cn_store_options_t o = f->opts;
    cn_store_t *cs = NULL;
    cn_rec_user_t u;
    cn_buf_t b;
    char key[128];
    /* The checkpoint holds sealed records but not the master key (by
     * default in the data directory): it opens under the original's key. */
    snprintf(key, sizeof(key), "%s/master.key", dir);
    assert_int_not_equal(access(key, F_OK), 0);
    snprintf(key, sizeof(key), "%s/master.key", f->dir);
    o.master_key_file = key;
    o.create_master_key = false;
    o.path = dir;
    assert_int_equal(cn_store_open(&o, &cs), CN_OK);
    assert_int_equal(cn_store_user_get(cs, "iris", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);
    assert_int_equal(depth(cs, id), 1);
    cn_buf_init(&b);
    assert_int_equal(cn_store_meta_get(cs, "ratelimit/send", &b), CN_OK);
    assert_memory_equal(b.data, "5/s", 3);
    cn_buf_dispose(&b);
    /* The counters came along: the next seq continues. */
    uint64_t seq;
    assert_int_equal(send_ex(cs, SENDER, 3, id, "in copy", 10, 0, false, &seq), CN_OK);
    assert_int_equal(seq, 2);
    cn_store_free(cs);
    assert_int_equal(depth(f->s, id), 2);
    nftw(parent, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --------------------------------------------------------------- stats */

static void test_histogram_buckets(void **state)
{
    (void)state;
    uint64_t ops[] = {0, 1, 2, 4, 5, 16, 17, 64, 65, 256, 1024, 4096, 4097, UINT64_MAX};
    size_t ops_b[] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 7, 7};
    for (size_t i = 0; i < CN_ARRAY_LEN(ops); i++)
        assert_int_equal(cn__batch_bucket(ops[i]), ops_b[i]);
    uint64_t ns[] = {0,       100000,   100001,   250000,   500000,    1000000,  2500000,
                     5000000, 10000000, 25000000, 25000001, 100000000, 100000001};
    size_t ns_b[] = {0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9};
    for (size_t i = 0; i < CN_ARRAY_LEN(ns); i++)
        assert_int_equal(cn__fsync_bucket(ns[i]), ns_b[i]);
}

static uint64_t hist_sum(const uint64_t *h, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += h[i];
    return sum;
}

static void test_stats_histograms(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_store_op_t ops[5];
    cn_store_recipient_t r[5];
    cn_store_op_t *p[5];
    cn_store_stats_t st;
    make_id(a, 8, 1);
    f->opts.sync = CN_SYNC_BATCH;
    fx_reopen(f);
    assert_int_equal(send_ex(f->s, SENDER, 100, a, "one", 10, 0, false, NULL), CN_OK);
    for (int i = 0; i < 5; i++) {
        recipient(&r[i], a, "x");
        op_send(&ops[i], SENDER, (uint8_t)i, &r[i], 1, 10);
        p[i] = &ops[i];
    }
    run_batch_of(f->s, p, 5); /* a gate (writes nothing), then a batch of 5 */
    cn_store_stats_get(f->s, &st);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.batch_ops_hist[0], 2);
    assert_int_equal(st.batch_ops_hist[2], 1);
    assert_int_equal(hist_sum(st.batch_ops_hist, CN_STORE_BATCH_HIST_N), st.batches);
    /* Two synced writes; the gate's batch wrote nothing. */
    assert_int_equal(hist_sum(st.fsync_hist, CN_STORE_FSYNC_HIST_N), 2);

    f->opts.sync = CN_SYNC_NONE;
    fx_reopen(f);
    assert_int_equal(send_ex(f->s, SENDER, 101, a, "unsynced", 10, 0, false, NULL), CN_OK);
    cn_store_stats_get(f->s, &st);
    assert_int_equal(st.batch_ops_hist[0], 1);
    assert_int_equal(hist_sum(st.fsync_hist, CN_STORE_FSYNC_HIST_N), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_list_order_and_cursor, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_device_list, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_stats, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_update, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_meta_ops_and_scan, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_meta_ops_in_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint, fx_setup, fx_teardown),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test_setup_teardown(test_stats_histograms, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
