/*
 * The counter journal (store/counters.c): a batch that changes many seq
 * counters writes them as one record instead of a key each, an idle
 * writer folds the records into the keys, and a store killed before the
 * fold gets every seq back from its records at the next open (nothing
 * handed out twice, no gap). Records that are not the journal's refuse the
 * open; names that cannot be records are skipped.
 */
#include "tests/unit/store/store_test_util.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#define NDEV 12 /* a group send to them changes more than CN__CJOUR_MIN counters */
_Static_assert(NDEV >= CN__CJOUR_MIN, "the group send must be journaled");

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

/** Counter journal records on disk (SIZE_MAX on error; no asserts). */
static size_t journal_records(cn_store_t *s)
{
    return meta_records(s, CN__META_CJOUR, CN__CJOUR_KEY_LEN);
}

/** A device's mseq/ key (its next seq); 0 when absent, UINT64_MAX on error. */
static uint64_t own_next(cn_store_t *s, const uint8_t *id)
{
    uint8_t key[CN__META_CTR_LEN];
    cn__key_counter(key, CN__CTR_MAILBOX, id);
    char *err = NULL;
    size_t vlen;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_META], (const char *)key, sizeof(key),
                             &vlen, &err);
    if (err) {
        rocksdb_free(err);
        return UINT64_MAX;
    }
    if (v == NULL)
        return 0;
    uint64_t next = vlen == 8 ? cn_load_u64be((const uint8_t *)v) : UINT64_MAX;
    rocksdb_free(v);
    return next;
}

static void devices(uint8_t ids[NDEV][CN_DEVICE_ID_LEN], cn_store_recipient_t *r)
{
    static const char ct[] = "a sender-key ciphertext";
    for (int i = 0; i < NDEV; i++) {
        make_id(ids[i], 7, (uint8_t)i);
        recipient(&r[i], ids[i], "");
        r[i].ciphertext = cn_slice(ct, strlen(ct));
    }
}

static void op_group(cn_store_op_t *op, uint8_t msg, cn_store_recipient_t *r)
{
    op_send(op, SENDER, msg, r, NDEV, 1000 + msg);
    op->u.send.env.has_group = true;
    memset(op->u.send.env.group_id, 0x42, CN_GROUP_ID_LEN);
    op->u.send.shared = true;
}

/** Waits (up to 20 s) until the idle writer has folded the journal. */
static void wait_folded(cn_store_t *s)
{
    for (int i = 0; i < 2000 && journal_records(s) != 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    assert_int_equal(journal_records(s), 0);
}

/** The seqs queued for a device, in order. */
static size_t queued_seqs(cn_store_t *s, const uint8_t *id, uint64_t *seqs, size_t max)
{
    collect_t c;
    memset(&c, 0, sizeof(c));
    uint64_t next;
    int n = cn_store_mailbox_read(s, id, 0, 64, 1 << 20, collect_cb, &c, &next);
    assert_int_equal(n, (int)c.n);
    assert_true(c.n <= max);
    for (size_t i = 0; i < c.n; i++)
        seqs[i] = c.seqs[i];
    return c.n;
}

/* What the writer saw from inside a batch's callback, before any fold. */
typedef struct probe {
    waiter_t w; /* first: waiter_done takes op->ctx as a waiter */
    cn_store_t *s;
    size_t records;
    uint64_t own0, own1;
} probe_t;

static const uint8_t *dev(uint8_t i)
{
    static uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    make_id(ids[i], 7, i);
    return ids[i];
}

static void probe_done(cn_store_op_t *op)
{
    probe_t *p = op->ctx;
    p->records = journal_records(p->s);
    p->own0 = own_next(p->s, dev(0));
    p->own1 = own_next(p->s, dev(1));
    waiter_done(op);
}

static int run_probed(cn_store_t *s, cn_store_op_t *op, probe_t *p)
{
    memset(p, 0, sizeof(*p));
    p->s = s;
    return run_op_with(s, op, probe_done, &p->w);
}

static void test_one_record_then_folded(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    probe_t p;
    devices(ids, r);
    op_group(&op, 1, r);
    assert_int_equal(run_probed(f->s, &op, &p), CN_OK);
    for (int i = 0; i < NDEV; i++)
        assert_int_equal(r[i].seq, 1);
    /* One record, and no key of its own for any member yet. */
    assert_int_equal(p.records, 1);
    assert_int_equal(p.own0, 0);
    assert_int_equal(p.own1, 0);

    wait_folded(f->s);
    for (int i = 0; i < NDEV; i++)
        assert_int_equal(own_next(f->s, ids[i]), 2);

    /* A one-to-one send writes its recipient's key directly. */
    cn_store_recipient_t one;
    recipient(&one, ids[0], "hello");
    op_send(&op, SENDER, 2, &one, 1, 2000);
    assert_int_equal(run_probed(f->s, &op, &p), CN_OK);
    assert_int_equal(one.seq, 2);
    assert_int_equal(p.records, 0);
    assert_int_equal(p.own0, 3);

    /* A clean close leaves no record; the seqs go on after it. */
    op_group(&op, 3, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    fx_reopen(f);
    assert_int_equal(journal_records(f->s), 0);
    op_group(&op, 4, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(r[0].seq, 4);
    for (int i = 1; i < NDEV; i++)
        assert_int_equal(r[i].seq, 3);
}

/* ------------------------------------------------ killed before the fold */

typedef struct child {
    cn_store_t *s;
    cn_store_op_t group, one;
    cn_store_recipient_t r[NDEV], r1;
} child_t;

/* Runs on the writer: the one-to-one send goes into the very next batch,
 * so the writer is never idle (and never folds) between the two. */
static void child_group_done(cn_store_op_t *op)
{
    child_t *c = op->ctx;
    if (op->result != CN_OK || cn_store_submit(c->s, &c->one) != CN_OK)
        _exit(10);
}

static void child_one_done(cn_store_op_t *op)
{
    child_t *c = op->ctx;
    if (op->result != CN_OK || c->r1.seq != 2)
        _exit(11);
    /* The group's seqs only in the record; device 0's own key written. */
    if (journal_records(c->s) != 1 || own_next(c->s, dev(0)) != 3 || own_next(c->s, dev(1)) != 0)
        _exit(12);
    raise(SIGKILL);
}

/* The child: this binary again (a fork of a process with threads is not
 * something every sanitizer allows), with CHILD_ENV naming the store. */
#define CHILD_ENV "CN_TEST_JOURNAL_CHILD"

static void child_main(const char *dir)
{
    static child_t c;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_options_t opts;
    cn_store_options_default(&opts);
    opts.path = dir;
    opts.sync = CN_SYNC_BATCH;
    if (cn_store_open(&opts, &c.s) != CN_OK)
        _exit(13);
    devices(ids, c.r);
    op_group(&c.group, 1, c.r);
    c.group.done = child_group_done;
    c.group.ctx = &c;
    recipient(&c.r1, ids[0], "one to one");
    op_send(&c.one, SENDER, 2, &c.r1, 1, 2000);
    c.one.done = child_one_done;
    c.one.ctx = &c;
    if (cn_store_submit(c.s, &c.group) != CN_OK)
        _exit(14);
    sleep(60); /* the writer kills the process */
    _exit(15);
}

static void test_killed_before_fold(void **state)
{
    fx_t *f = *state;
    run_killed_child(f, CHILD_ENV, "test_store_journal_child");

    /* Reopened: each seq goes on from the larger of the record's value and
     * the device's own key (device 0 got the one-to-one send after). */
    fx_open(f);
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    devices(ids, r);
    op_group(&op, 3, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(r[0].seq, 3);
    for (int i = 1; i < NDEV; i++)
        assert_int_equal(r[i].seq, 2);
    uint64_t seqs[8];
    assert_int_equal(queued_seqs(f->s, ids[0], seqs, 8), 3);
    assert_int_equal(seqs[0], 1), assert_int_equal(seqs[1], 2), assert_int_equal(seqs[2], 3);
    assert_int_equal(queued_seqs(f->s, ids[NDEV - 1], seqs, 8), 2);
    assert_int_equal(seqs[0], 1), assert_int_equal(seqs[1], 2);

    /* The recovered records and the new one fold into the keys. */
    wait_folded(f->s);
    assert_int_equal(own_next(f->s, ids[0]), 4);
    for (int i = 1; i < NDEV; i++)
        assert_int_equal(own_next(f->s, ids[i]), 3);
}

/* ------------------------------------------------------ records on disk */

static void cjour_key(uint8_t key[CN__CJOUR_KEY_LEN], uint64_t n)
{
    memcpy(key, CN__META_CJOUR, strlen(CN__META_CJOUR));
    cn_store_u64be(key + strlen(CN__META_CJOUR), n);
}

static void put_record(cn_store_t *s, uint64_t n, const uint8_t *id, uint64_t next)
{
    uint8_t key[CN__CJOUR_KEY_LEN];
    cjour_key(key, n);
    cn_buf_t v;
    cn_buf_init(&v);
    cn_rec_cjour_entry_t e = {.which = CN__CTR_MAILBOX, .next = next};
    memcpy(e.device, id, CN_DEVICE_ID_LEN);
    assert_int_equal(cn_rec_cjour_begin(1, &v), CN_OK);
    assert_int_equal(cn_rec_cjour_add(&e, &v), CN_OK);
    raw_put(s, CN__CF_META, key, sizeof(key), v.data, v.len);
    cn_buf_dispose(&v);
}

static uint64_t next_seq(cn_store_t *s, const uint8_t *id)
{
    cn_store_recipient_t one;
    cn_store_op_t op;
    static uint8_t msg = 100;
    recipient(&one, id, "x");
    op_send(&op, SENDER, msg++, &one, 1, 3000);
    assert_int_equal(run_op(s, &op), CN_OK);
    return one.seq;
}

static void test_records_read_at_open(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    make_id(a, 9, 1);
    make_id(b, 9, 2);
    assert_int_equal(next_seq(f->s, b), 1); /* b's own key says 2 */
    put_record(f->s, 7, a, 50);
    put_record(f->s, 8, b, 1); /* older than b's key: the key wins */
    /* Not a record (a name from before cjour/ was reserved): skipped. */
    raw_put(f->s, CN__CF_META, "cjour/x", 7, "?", 1);
    fx_reopen(f);
    assert_int_equal(next_seq(f->s, a), 50);
    assert_int_equal(next_seq(f->s, b), 2);
    wait_folded(f->s);
    assert_int_equal(own_next(f->s, a), 51);
    fx_reopen(f);
    assert_int_equal(next_seq(f->s, a), 51);
}

static void test_garbage_record_refuses_open(void **state)
{
    fx_t *f = *state;
    uint8_t key[CN__CJOUR_KEY_LEN];
    cjour_key(key, 1);
    raw_put(f->s, CN__CF_META, key, sizeof(key), "\x01\x02", 2);
    expect_open_refused(f);
}

static void test_gap_refuses_open(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    make_id(a, 9, 1);
    put_record(f->s, 1, a, 5);
    put_record(f->s, 3, a, 9); /* record 2 went missing */
    expect_open_refused(f);
}

int main(void)
{
    const char *child = getenv(CHILD_ENV);
    if (child)
        child_main(child);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_record_then_folded, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_killed_before_fold, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_records_read_at_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_record_refuses_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gap_refuses_open, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
