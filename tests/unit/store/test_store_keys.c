/*
 * Key rotation (CN_OP_KEYS_ROTATE / CN_OP_KEYS_RETIRE, store/ops_keys.c)
 * and the re-seal pass (store/reseal.c): old records stay readable across
 * a restart, the pass moves every record to the current key without
 * overwriting newer values, retire refuses while a key may be in use, and
 * cn_store_keys_stats reports it all.
 */
#include "tests/unit/store/store_test_util.h"

#include <time.h>

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

static void wait_pass(cn_store_t *s, uint64_t passes, cn_store_keys_stats_t *ks)
{
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(cn_store_keys_stats(s, ks), CN_OK);
        if (ks->passes >= passes && !ks->running)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
    fail_msg("the re-seal pass did not complete");
}

static const cn_store_key_info_t *key_info(const cn_store_keys_stats_t *ks, uint32_t id)
{
    for (uint32_t i = 0; i < ks->n; i++) {
        if (ks->keys[i].id == id)
            return &ks->keys[i];
    }
    return NULL;
}

static int keys_op(cn_store_t *s, enum cn_store_op_type type, uint32_t *key_id)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = type;
    op.u.keys.key_id = *key_id;
    int rc = run_op(s, &op);
    *key_id = op.u.keys.key_id;
    return rc;
}

static int retire(cn_store_t *s, uint32_t id)
{
    return keys_op(s, CN_OP_KEYS_RETIRE, &id);
}

static uint32_t rotate(cn_store_t *s)
{
    uint32_t id = 0;
    assert_int_equal(keys_op(s, CN_OP_KEYS_ROTATE, &id), CN_OK);
    return id;
}

/** The key id a raw stored value is sealed under. */
static uint32_t raw_key_id(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen)
{
    char *err = NULL;
    size_t vlen;
    uint32_t id = 0;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[cf], key, klen, &vlen, &err);
    assert_null(err);
    assert_non_null(v);
    assert_int_equal(cn_atrest_header((const uint8_t *)v, vlen, &id, NULL), CN_OK);
    rocksdb_free(v);
    return id;
}

/** A retry of message msg from SENDER: CN_OK with *duplicate and the first server_time. */
static int retry(cn_store_t *s, const uint8_t *to, uint8_t msg, bool *duplicate,
                 uint64_t *server_time)
{
    cn_store_op_t op;
    cn_store_recipient_t r;
    recipient(&r, to, "again");
    op_send(&op, SENDER, msg, &r, 1, 5000);
    int rc = run_op(s, &op);
    *duplicate = op.u.send.duplicate;
    *server_time = op.u.send.env.server_time;
    return rc;
}

static void read_all(cn_store_t *s, const uint8_t *dev, size_t want, const char *first)
{
    collect_t c = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(s, dev, 1, 64, 1 << 20, collect_cb, &c, &next),
                     (int)want);
    assert_string_equal(c.ct[0], first);
}

static void test_rotate_restart_reseal_retire(void **state)
{
    fx_t *f = *state;
    uint8_t dev[CN_DEVICE_ID_LEN], key[CN__KEY_MAILBOX];
    cn_store_keys_stats_t ks;
    make_id(dev, 1, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "ann", dev, 0), CN_OK);
    for (uint8_t i = 1; i <= 30; i++)
        assert_int_equal(send1(f->s, SENDER, i, dev, i == 1 ? "first" : "x", NULL), CN_OK);
    assert_int_equal(cn_store_keys_stats(f->s, &ks), CN_OK);
    assert_true(ks.encrypted);
    assert_int_equal(ks.current, 1);
    assert_false(ks.counted); /* no pass ran: nothing to count with one key */
    assert_int_equal(retire(f->s, 1), CN_ECONFLICT); /* current */

    /* Rotate and retire the old key in one batch: it is in use. */
    cn_store_op_t rot, ret, *ops[] = {&rot, &ret};
    memset(&rot, 0, sizeof(rot));
    memset(&ret, 0, sizeof(ret));
    rot.type = CN_OP_KEYS_ROTATE;
    ret.type = CN_OP_KEYS_RETIRE;
    ret.u.keys.key_id = 1;
    run_batch_of(f->s, ops, 2);
    assert_int_equal(rot.result, CN_OK);
    assert_int_equal(rot.u.keys.key_id, 2);
    assert_int_equal(ret.result, CN_ECONFLICT);
    assert_int_equal(send1(f->s, SENDER, 31, dev, "after", NULL), CN_OK);
    cn__key_mailbox(key, dev, 31);
    assert_int_equal(raw_key_id(f->s, CN__CF_MAILBOX, key, sizeof(key)), 2);

    /* A restart, whatever the pass did so far: everything opens. */
    fx_reopen(f);
    read_all(f->s, dev, 31, "first");
    wait_pass(f->s, 1, &ks);
    assert_int_equal(ks.current, 2);
    const cn_store_key_info_t *k1 = key_info(&ks, 1), *k2 = key_info(&ks, 2);
    assert_non_null(k1);
    assert_non_null(k2);
    assert_int_equal(k1->state, CN_STORE_KEY_OLD);
    assert_int_equal(k1->records, 0);
    assert_true(k1->retirable);
    assert_int_equal(k2->state, CN_STORE_KEY_CURRENT);
    assert_int_equal(k2->records, 1 + 1 + 31); /* device, user, mailbox: dedupe is plain */
    assert_false(k2->retirable);
    assert_true(ks.total_estimate > 0);
    assert_int_equal(ks.scanned, 64);
    cn__key_mailbox(key, dev, 1);
    assert_int_equal(raw_key_id(f->s, CN__CF_MAILBOX, key, sizeof(key)), 2);

    assert_int_equal(retire(f->s, 2), CN_ECONFLICT);
    assert_int_equal(retire(f->s, 1), CN_OK);
    assert_int_equal(retire(f->s, 1), CN_ENOTFOUND);
    assert_int_equal(retire(f->s, 7), CN_ENOTFOUND);
    assert_int_equal(cn_store_keys_stats(f->s, &ks), CN_OK);
    k1 = key_info(&ks, 1);
    assert_non_null(k1);
    assert_int_equal(k1->state, CN_STORE_KEY_RETIRED);
    fx_reopen(f);
    read_all(f->s, dev, 31, "first");
    assert_int_equal(cn_store_keys_stats(f->s, &ks), CN_OK);
    assert_int_equal(key_info(&ks, 1)->state, CN_STORE_KEY_RETIRED);
    assert_int_equal(ks.current, 2);
    assert_int_equal(retire(f->s, 1), CN_ENOTFOUND);
    /* Ids are never reused. */
    assert_int_equal(rotate(f->s), 3);
}

/* The internal op with its slice first, so that op->ctx serves both the
 * writer (a cn__reseal_t) and the test's waiter. */
typedef struct reseal_wait {
    cn__reseal_t r;
    waiter_t w;
} reseal_wait_t;

static void reseal_done(cn_store_op_t *op)
{
    reseal_wait_t *rw = op->ctx;
    pthread_mutex_lock(&rw->w.mu);
    rw->w.pending--;
    pthread_cond_broadcast(&rw->w.cv);
    pthread_mutex_unlock(&rw->w.mu);
}

static void run_reseal(cn_store_t *s, reseal_wait_t *rw)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN__OP_RESEAL;
    op.ctx = rw;
    op.done = reseal_done;
    rw->r.s = s;
    waiter_init(&rw->w);
    rw->w.pending = 1;
    assert_int_equal(cn_store_submit(s, &op), CN_OK);
    waiter_wait(&rw->w);
    waiter_dispose(&rw->w);
    assert_int_equal(op.result, CN_OK);
}

static void slice_add(cn__reseal_t *r, enum cn__cf cf, const void *key, size_t klen, uint32_t id)
{
    size_t i = r->n++;
    r->cf[i] = cf;
    memcpy(r->key[i], key, klen);
    r->klen[i] = klen;
    r->old_id[i] = id;
}

static char *raw(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, size_t *vlen)
{
    char *err = NULL;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[cf], key, klen, vlen, &err);
    assert_null(err);
    return v;
}

/* The pass's writer op re-seals a record only while it is still under
 * the key the pass saw: a newer value is never overwritten. */
static void test_reseal_compare_and_swap(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], gone[CN_DEVICE_ID_LEN];
    cn_store_keys_stats_t ks;
    size_t blen, alen;
    make_id(a, 2, 1);
    make_id(b, 2, 2);
    make_id(gone, 2, 3);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "bob", a, 0), CN_OK);
    assert_int_equal(rotate(f->s), 2);
    wait_pass(f->s, 1, &ks);
    assert_int_equal(raw_key_id(f->s, CN__CF_DEVICES, a, CN_DEVICE_ID_LEN), 2);
    /* Written under key 2 after the pass, so "newer" than what a pass that
     * saw it under key 1 would expect. */
    assert_int_equal(do_register(f->s, CN_OP_LINK, "bob", b, 0), CN_OK);
    char *before = raw(f->s, CN__CF_DEVICES, b, CN_DEVICE_ID_LEN, &blen);
    assert_int_equal(rotate(f->s), 3);
    wait_pass(f->s, 2, &ks);
    assert_int_equal(raw_key_id(f->s, CN__CF_DEVICES, b, CN_DEVICE_ID_LEN), 3);
    rocksdb_free(before);
    before = raw(f->s, CN__CF_DEVICES, b, CN_DEVICE_ID_LEN, &blen);

    reseal_wait_t *rw = calloc(1, sizeof(*rw));
    assert_non_null(rw);
    slice_add(&rw->r, CN__CF_DEVICES, b, CN_DEVICE_ID_LEN, 2);    /* now under 3: newer */
    slice_add(&rw->r, CN__CF_DEVICES, gone, CN_DEVICE_ID_LEN, 2); /* deleted */
    run_reseal(f->s, rw);
    assert_int_equal(rw->r.outcome[0], CN__RESEAL_NEWER);
    assert_int_equal(rw->r.new_id[0], 3);
    assert_int_equal(rw->r.outcome[1], CN__RESEAL_GONE);
    char *after = raw(f->s, CN__CF_DEVICES, b, CN_DEVICE_ID_LEN, &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen); /* untouched, nonce included */
    rocksdb_free(after);
    rocksdb_free(before);
    /* The op's snapshot: current 3, the others candidates. */
    assert_int_equal(rw->r.current, 3);
    assert_int_equal(rw->r.ncands, 2);
    free(rw);
}

/** Raw values of a column family sealed under key id. */
static size_t count_under(cn_store_t *s, enum cn__cf cf, uint32_t id)
{
    size_t n = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t vlen;
        uint32_t got = 0;
        const char *v = rocksdb_iter_value(it, &vlen);
        assert_int_equal(cn_atrest_header((const uint8_t *)v, vlen, &got, NULL), CN_OK);
        n += got == id;
    }
    rocksdb_iter_destroy(it);
    return n;
}

/** dedupe values stored in the clear (not sealed), each a whole record. */
static size_t count_plain_dedupe(cn_store_t *s)
{
    size_t n = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CN__CF_DEDUPE]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t vlen;
        cn_rec_dedupe_t d;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        assert_int_not_equal(cn_atrest_header(v, vlen, NULL, NULL), CN_OK);
        assert_int_equal(cn_rec_dedupe_decode(v, vlen, &d), CN_OK);
        n++;
    }
    rocksdb_iter_destroy(it);
    return n;
}

/* Sends racing a rotation: whatever lands under which key, after the
 * pass everything is under the newest key and reads back. */
static void test_rotation_under_load(void **state)
{
    fx_t *f = *state;
    enum { N = 200 };
    uint8_t dev[CN_DEVICE_ID_LEN];
    cn_store_keys_stats_t ks;
    static cn_store_op_t ops[N];
    static cn_store_recipient_t rs[N];
    static char cts[N][16];
    waiter_t w;
    make_id(dev, 3, 1);
    waiter_init(&w);
    for (int i = 0; i < N; i++) {
        snprintf(cts[i], sizeof(cts[i]), "m%d", i);
        recipient(&rs[i], dev, cts[i]);
        op_send(&ops[i], SENDER, 0, &rs[i], 1, cn_now_ms());
        cn_store_u32be(ops[i].u.send.env.message_id, (uint32_t)i);
        submit_with(f->s, &ops[i], &w);
        if (i == N / 4 || i == N / 2) {
            /* Queued behind the sends so far; the rest follow it. */
            cn_store_op_t rot;
            memset(&rot, 0, sizeof(rot));
            rot.type = CN_OP_KEYS_ROTATE;
            submit_with(f->s, &rot, &w);
            waiter_wait(&w); /* rot lives on this stack frame */
            assert_int_equal(rot.result, CN_OK);
        }
    }
    waiter_wait(&w);
    waiter_dispose(&w);
    for (int i = 0; i < N; i++)
        assert_int_equal(ops[i].result, CN_OK);
    wait_pass(f->s, 1, &ks);
    assert_int_equal(ks.current, 3);
    /* Sends after the pass went by are not counted, but all are under 3. */
    assert_true(key_info(&ks, 3)->records <= N);
    assert_int_equal(count_under(f->s, CN__CF_MAILBOX, 3), N);
    assert_int_equal(count_plain_dedupe(f->s), N);
    assert_int_equal(key_info(&ks, 1)->records, 0);
    assert_int_equal(key_info(&ks, 2)->records, 0);
    assert_true(key_info(&ks, 1)->retirable && key_info(&ks, 2)->retirable);
    assert_int_equal(retire(f->s, 1), CN_OK);
    assert_int_equal(retire(f->s, 2), CN_OK);
    fx_reopen(f);
    assert_int_equal(depth(f->s, dev), N);
    collect_t c = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(f->s, dev, N - 10, 64, 1 << 20, collect_cb, &c, &next),
                     11);
    assert_string_equal(c.ct[10], "m199");
}

static void test_ring_full(void **state)
{
    fx_t *f = *state;
    cn_store_keys_stats_t ks;
    for (uint32_t i = 2; i <= CN_STORE_KEYS_MAX; i++)
        assert_int_equal(rotate(f->s), i);
    uint32_t id = 0;
    assert_int_equal(keys_op(f->s, CN_OP_KEYS_ROTATE, &id), CN_ELIMIT);
    wait_pass(f->s, 1, &ks);
    assert_int_equal(ks.current, CN_STORE_KEYS_MAX);
    /* An empty store: every old key is retirable at once. */
    assert_int_equal(retire(f->s, 1), CN_OK);
    assert_int_equal(rotate(f->s), CN_STORE_KEYS_MAX + 1);
}

/*
 * dedupe values are stored in the clear since 2026-11-29 (store/seal.c). A
 * record sealed by an earlier version (under key 1, with the number of
 * mailboxes it wrote) still answers a retry, and the re-seal pass after a
 * rotation writes it back in the clear, so that key 1 drains.
 */
static void test_dedupe_sealed_before(void **state)
{
    fx_t *f = *state;
    uint8_t dev[CN_DEVICE_ID_LEN], dkey[CN__KEY_DEDUPE], msg[CN_MESSAGE_ID_LEN];
    uint8_t ad[1 + CN__KEY_DEDUPE];
    cn_store_keys_stats_t ks;
    bool dup;
    uint64_t t;
    make_id(dev, 4, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "old", dev, 0), CN_OK);
    assert_int_equal(send1(f->s, SENDER, 1, dev, "new", NULL), CN_OK);
    memset(msg, 1, sizeof(msg));
    cn__key_dedupe(dkey, SENDER, msg);
    size_t vlen;
    char *v = raw_get(f->s, CN__CF_DEDUPE, dkey, sizeof(dkey), &vlen);
    assert_non_null(v);
    assert_memory_equal(v, "\xa2\x00\x01\x01\x19\x03\xe8", 7); /* {version 1, time 1000} */
    assert_int_equal(vlen, 7);
    rocksdb_free(v);

    /* Message 2 as an older node stored it: sealed, AD = CF ‖ key. */
    memset(msg, 2, sizeof(msg));
    cn__key_dedupe(dkey, SENDER, msg);
    ad[0] = CN__CF_DEDUPE;
    memcpy(ad + 1, dkey, sizeof(dkey));
    cn_buf_t sealed;
    cn_buf_init(&sealed);
    static const uint8_t old_rec[] = {0xa3, 0x00, 0x01, 0x01, 0x19, 0x07, 0xd0, 0x02, 0x01};
    assert_int_equal(
        cn_atrest_seal(f->s->ring, ad, sizeof(ad), 2000, old_rec, sizeof(old_rec), &sealed), CN_OK);
    raw_put(f->s, CN__CF_DEDUPE, dkey, sizeof(dkey), sealed.data, sealed.len);
    cn_buf_dispose(&sealed);
    assert_int_equal(raw_key_id(f->s, CN__CF_DEDUPE, dkey, sizeof(dkey)), 1);
    assert_int_equal(retry(f->s, dev, 2, &dup, &t), CN_OK);
    assert_true(dup);
    assert_int_equal(t, 2000);
    assert_int_equal(retry(f->s, dev, 1, &dup, &t), CN_OK); /* the plain one */
    assert_true(dup);
    assert_int_equal(t, 1000);

    /* The pass writes it back in the clear; key 1 holds nothing more. */
    assert_int_equal(rotate(f->s), 2);
    wait_pass(f->s, 1, &ks);
    assert_int_equal(key_info(&ks, 1)->records, 0);
    assert_true(key_info(&ks, 1)->retirable);
    assert_int_equal(count_plain_dedupe(f->s), 2);
    assert_int_equal(retry(f->s, dev, 2, &dup, &t), CN_OK);
    assert_true(dup);
    assert_int_equal(t, 2000);
    assert_int_equal(retire(f->s, 1), CN_OK);
    fx_reopen(f);
    assert_int_equal(retry(f->s, dev, 2, &dup, &t), CN_OK);
    assert_true(dup && t == 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotate_restart_reseal_retire, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reseal_compare_and_swap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rotation_under_load, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_sealed_before, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ring_full, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
