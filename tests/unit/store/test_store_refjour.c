/*
 * The reference journal (store/refjour.c): a group send's batch writes its
 * mailbox references as one sealed record, readers see them at once, the
 * next batch (or an idle moment) puts them under their mailbox keys and
 * deletes the record, a revoke in the send's own batch keeps its device
 * out, and a store killed before the references were put gets them all
 * back at the next open. Records that are not the journal's refuse the
 * open; names that cannot be records are skipped.
 */
#include "tests/unit/store/store_test_util.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#define NDEV 6
#define BODY "a group sender-key ciphertext" /* < 32 bytes: collect_t */

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

/** Reference journal records on disk (SIZE_MAX on error; no asserts). */
static size_t journal_records(cn_store_t *s)
{
    return meta_records(s, CN__META_RJOUR, CN__RJOUR_KEY_LEN);
}

/** Whether the mailbox key of (id, seq) is on disk. No asserts. */
static bool key_stored(cn_store_t *s, const uint8_t *id, uint64_t seq)
{
    uint8_t key[CN__KEY_MAILBOX];
    char *err = NULL;
    size_t vlen;
    cn__key_mailbox(key, id, seq);
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_MAILBOX], (const char *)key, sizeof(key),
                             &vlen, &err);
    rocksdb_free(err);
    rocksdb_free(v);
    return v != NULL;
}

static const uint8_t *dev(int i)
{
    static uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    make_id(ids[i], 7, (uint8_t)i);
    return ids[i];
}

static void op_group(cn_store_op_t *op, uint8_t msg, cn_store_recipient_t *r)
{
    for (int i = 0; i < NDEV; i++) {
        recipient(&r[i], dev(i), "");
        r[i].ciphertext = cn_slice(BODY, strlen(BODY));
    }
    op_send(op, SENDER, msg, r, NDEV, cn_now_ms());
    op->u.send.env.has_group = true;
    memset(op->u.send.env.group_id, 0x42, CN_GROUP_ID_LEN);
    op->u.send.shared = true;
}

/** The seqs a mailbox read hands out for id (each checked to carry BODY). */
static size_t read_seqs(cn_store_t *s, const uint8_t *id, uint64_t *seqs, size_t max)
{
    collect_t c;
    uint64_t next;
    memset(&c, 0, sizeof(c));
    int n = cn_store_mailbox_read(s, id, 0, 64, 1 << 20, collect_cb, &c, &next);
    assert_int_equal(n, (int)c.n);
    assert_true(c.n <= max);
    for (size_t i = 0; i < c.n; i++) {
        assert_string_equal(c.ct[i], BODY);
        seqs[i] = c.seqs[i];
    }
    return c.n;
}

/** Waits (up to 20 s) until no record is left on disk. */
static void wait_put(cn_store_t *s)
{
    for (int i = 0; i < 2000 && journal_records(s) != 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    assert_int_equal(journal_records(s), 0);
}

/* What the writer's callback saw, before any later batch or idle moment. */
typedef struct probe {
    waiter_t w; /* first: waiter_done takes op->ctx as a waiter */
    cn_store_t *s;
    size_t records;
    bool any_key, all_keys;
    size_t read, depth;
    uint64_t seq0, stats_depth;
} probe_t;

/* Counts what a read hands out, and whether each entry carries BODY. No
 * asserts: it runs on the writer thread. */
typedef struct tally {
    size_t n;
    uint64_t first;
    bool all_body;
} tally_t;

static int tally_cb(void *ctx, uint64_t seq, const uint8_t *value, size_t len)
{
    tally_t *t = ctx;
    cn_rec_envelope_t env;
    bool body = cn_rec_envelope_decode(value, len, &env) == CN_OK &&
                env.ciphertext.len == strlen(BODY) &&
                memcmp(env.ciphertext.base, BODY, strlen(BODY)) == 0;
    if (t->n++ == 0)
        t->first = seq;
    t->all_body = t->all_body && body;
    return 0;
}

static void probe_done(cn_store_op_t *op)
{
    probe_t *p = op->ctx;
    tally_t t = {.all_body = true};
    uint64_t d = 0, next;
    p->records = journal_records(p->s);
    p->any_key = false;
    p->all_keys = true;
    for (int i = 0; i < NDEV; i++) {
        bool k = key_stored(p->s, dev(i), 1);
        p->any_key = p->any_key || k;
        p->all_keys = p->all_keys && k;
    }
    int n = cn_store_mailbox_read(p->s, dev(1), 0, 64, 1 << 20, tally_cb, &t, &next);
    p->read = n == (int)t.n && t.all_body ? t.n : SIZE_MAX;
    p->seq0 = t.first;
    p->depth = cn_store_mailbox_depth(p->s, dev(1), 100, &d) == CN_OK ? d : SIZE_MAX;
    if (cn_store_mailbox_stats(p->s, dev(1), &p->stats_depth, NULL, NULL) != CN_OK)
        p->stats_depth = UINT64_MAX;
    waiter_done(op);
}

static int run_probed(cn_store_t *s, cn_store_op_t *op, probe_t *p)
{
    memset(p, 0, sizeof(*p));
    p->s = s;
    return run_op_with(s, op, probe_done, &p->w);
}

static void test_one_record_then_next_batch(void **state)
{
    fx_t *f = *state;
    cn_store_recipient_t r[NDEV], one;
    cn_store_op_t op;
    probe_t p;
    op_group(&op, 1, r);
    assert_int_equal(run_probed(f->s, &op, &p), CN_OK);
    /* Written: one record and no mailbox key, yet every read sees it. */
    assert_int_equal(p.records, 1);
    assert_false(p.any_key);
    assert_int_equal(p.read, 1);
    assert_int_equal(p.seq0, 1);
    assert_int_equal(p.depth, 1);
    assert_int_equal(p.stats_depth, 1);

    /* The next batch, a one-to-one send to another device, puts them. */
    uint8_t other[CN_DEVICE_ID_LEN];
    make_id(other, 9, 9);
    recipient(&one, other, BODY);
    op_send(&op, SENDER, 2, &one, 1, cn_now_ms());
    assert_int_equal(run_probed(f->s, &op, &p), CN_OK);
    assert_int_equal(p.records, 0);
    assert_true(p.all_keys);
    assert_int_equal(p.read, 1);
    assert_int_equal(p.depth, 1);
    assert_int_equal(p.stats_depth, 1);
}

static void test_idle_writer_puts_them(void **state)
{
    fx_t *f = *state;
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    op_group(&op, 1, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    wait_put(f->s);
    for (int i = 0; i < NDEV; i++)
        assert_true(key_stored(f->s, dev(i), 1));
    /* A clean close puts them too: nothing is left for the next open. */
    op_group(&op, 2, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    fx_reopen(f);
    assert_int_equal(journal_records(f->s), 0);
    for (int i = 0; i < NDEV; i++)
        assert_true(key_stored(f->s, dev(i), 2));
}

/* An ack in the batch after the send: the reference goes in and out in one
 * batch, the body's count drops, and nothing comes back. */
static void test_ack_in_the_next_batch(void **state)
{
    fx_t *f = *state;
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    uint64_t one = 1, seqs[8];
    uint32_t deleted;
    op_group(&op, 1, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    uint64_t before = queued_bytes(f->s, dev(0));
    assert_true(before > 0);
    assert_int_equal(ack_seqs(f->s, dev(0), &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(journal_records(f->s), 0);
    assert_false(key_stored(f->s, dev(0), 1));
    assert_true(key_stored(f->s, dev(1), 1));
    assert_int_equal(read_seqs(f->s, dev(0), seqs, 8), 0);
    assert_int_equal(queued_bytes(f->s, dev(0)), 0);
    assert_int_equal(queued_bytes(f->s, dev(1)), before);
    fx_reopen(f);
    assert_int_equal(read_seqs(f->s, dev(0), seqs, 8), 0);
    assert_int_equal(read_seqs(f->s, dev(1), seqs, 8), 1);
}

/* A revoke after the group send in the same batch: its device's reference
 * never reaches the mailbox. */
static void test_revoke_in_the_same_batch(void **state)
{
    fx_t *f = *state;
    cn_store_recipient_t r[NDEV];
    cn_store_op_t group, rv, *ops[] = {&group, &rv};
    uint64_t seqs[8];
    op_group(&group, 1, r);
    memset(&rv, 0, sizeof(rv));
    rv.type = CN_OP_REVOKE;
    memcpy(rv.u.revoke.device_id, dev(2), CN_DEVICE_ID_LEN);
    /* A revoke needs a device record. */
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "rita", dev(2), 0), CN_OK);
    run_batch_of(f->s, ops, 2);
    assert_int_equal(group.result, CN_OK);
    assert_int_equal(rv.result, CN_OK);
    assert_int_equal(read_seqs(f->s, dev(2), seqs, 8), 0);
    wait_put(f->s);
    assert_false(key_stored(f->s, dev(2), 1));
    assert_true(key_stored(f->s, dev(3), 1));
}

/* Publishes one entry for id at seq as the writer would (message msg's
 * reference), under a record number that is not on disk. */
static void publish(cn_store_t *s, uint8_t msg, const uint8_t *id, uint64_t seq)
{
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    op_group(&op, msg, r);
    cn__rjour_rec_t *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    cn_buf_init(&e->ref);
    assert_int_equal(cn__ref_encode(&op, &e->ref), CN_OK);
    memcpy(e->body, SENDER, CN_DEVICE_ID_LEN);
    memset(e->body + CN_DEVICE_ID_LEN, msg, CN_MESSAGE_ID_LEN);
    e->server_time = op.u.send.env.server_time;
    e->ents = calloc(1, sizeof(*e->ents));
    assert_non_null(e->ents);
    memcpy(e->ents[0].device, id, CN_DEVICE_ID_LEN);
    e->ents[0].seq = seq;
    e->count = e->cap = 1;
    e->n = 1000 + seq;
    cn__rjour_t *j = &s->rjour;
    pthread_mutex_lock(&j->lock);
    e->next = j->published;
    j->published = e;
    __atomic_store_n(&j->npublished, j->npublished + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&j->lock);
}

/* A read while an entry is both published and on disk (the writer put it
 * after the reader took its copy) hands it out once, in seq order. */
static void test_read_merges_once(void **state)
{
    fx_t *f = *state;
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    uint64_t seqs[8], next;
    for (uint8_t msg = 1; msg <= 3; msg++) {
        op_group(&op, msg, r);
        assert_int_equal(run_op(f->s, &op), CN_OK);
    }
    wait_put(f->s); /* seqs 1 to 3 on disk */
    gate_t g;
    gate_hold(f->s, &g);         /* no batch from here to the release */
    publish(f->s, 2, dev(0), 2); /* on disk as well */
    publish(f->s, 3, dev(0), 4); /* published only */
    assert_int_equal(read_seqs(f->s, dev(0), seqs, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(seqs[i], i + 1);
    assert_int_equal(read_seqs(f->s, dev(1), seqs, 8), 3);
    assert_int_equal(depth(f->s, dev(0)), 5); /* a hint: counts 2 twice */
    collect_t c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, dev(0), 3, 64, 1 << 20, collect_cb, &c, &next), 2);
    assert_int_equal(c.seqs[0], 3), assert_int_equal(c.seqs[1], 4);
    assert_int_equal(next, 5);
    /* The entry limit counts published entries too, and so does the byte
     * limit (which never stops the first entry). */
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, dev(0), 4, 1, 1 << 20, collect_cb, &c, &next), 1);
    assert_int_equal(c.seqs[0], 4);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, dev(0), 3, 64, 1, collect_cb, &c, &next), 1);
    assert_int_equal(next, 4);
    gate_release(&g);
    /* The next batch (an ack of nothing) puts the published-only entry. */
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_ACK;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    gate_dispose(&g); /* the writer left the gate's callback before that batch */
    assert_true(key_stored(f->s, dev(0), 4));
}

/* ------------------------------------------------ killed before the put */

typedef struct child {
    cn_store_t *s;
    cn_store_op_t group;
    cn_store_recipient_t r[NDEV];
} child_t;

/* Runs on the writer right after the group send's batch is on disk. */
static void child_group_done(cn_store_op_t *op)
{
    child_t *c = op->ctx;
    if (op->result != CN_OK)
        _exit(10);
    if (journal_records(c->s) != 1 || key_stored(c->s, dev(0), 1))
        _exit(11);
    raise(SIGKILL);
}

/* The child: this binary again (see test_store_journal.c). */
#define CHILD_ENV "CN_TEST_REFJOUR_CHILD"

static void child_main(const char *dir)
{
    static child_t c;
    cn_store_options_t opts;
    cn_store_options_default(&opts);
    opts.path = dir;
    opts.sync = CN_SYNC_BATCH;
    if (cn_store_open(&opts, &c.s) != CN_OK)
        _exit(13);
    op_group(&c.group, 1, c.r);
    c.group.done = child_group_done;
    c.group.ctx = &c;
    if (cn_store_submit(c.s, &c.group) != CN_OK)
        _exit(14);
    sleep(60); /* the writer kills the process */
    _exit(15);
}

static void test_killed_before_put(void **state)
{
    fx_t *f = *state;
    run_killed_child(f, CHILD_ENV, "test_store_refjour_child");

    /* Reopened: the record is read back, every member has its entry. The
     * next batch (an ack of one of them) puts the others. */
    fx_open(f);
    uint64_t seqs[8], one = 1;
    uint32_t deleted;
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(read_seqs(f->s, dev(i), seqs, 8), 1);
        assert_int_equal(seqs[0], 1);
    }
    assert_int_equal(ack_seqs(f->s, dev(0), &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(journal_records(f->s), 0);
    assert_false(key_stored(f->s, dev(0), 1));
    for (int i = 1; i < NDEV; i++)
        assert_true(key_stored(f->s, dev(i), 1));
    /* Seqs go on after it. */
    cn_store_recipient_t r[NDEV];
    cn_store_op_t op;
    op_group(&op, 2, r);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    for (int i = 0; i < NDEV; i++)
        assert_int_equal(r[i].seq, 2);
}

/* ------------------------------------------------------ records on disk */

static void rjour_key(uint8_t key[CN__RJOUR_KEY_LEN], uint64_t n)
{
    memcpy(key, CN__META_RJOUR, strlen(CN__META_RJOUR));
    cn_store_u64be(key + strlen(CN__META_RJOUR), n);
}

/* A name under the prefix that cannot be a record is skipped, and callers
 * can neither write nor list such names. */
static void test_foreign_name_skipped(void **state)
{
    fx_t *f = *state;
    raw_put(f->s, CN__CF_META, "rjour/x", 7, "v", 1);
    fx_reopen(f);
    assert_int_equal(cn_store_meta_put(f->s, "rjour/y", "v", 1), CN_EINVAL);
}

/* A record that does not open (not sealed, or sealed for another key). */
static void test_unsealed_record_refuses_open(void **state)
{
    fx_t *f = *state;
    uint8_t key[CN__RJOUR_KEY_LEN];
    rjour_key(key, 5);
    raw_put(f->s, CN__CF_META, key, sizeof(key), "garbage", 7);
    expect_open_refused(f);
}

/* A record that opens but does not decode: {0: 1}, without ref and entries. */
static void test_non_record_refuses_open(void **state)
{
    fx_t *f = *state;
    uint8_t key[CN__RJOUR_KEY_LEN];
    cn_buf_t b;
    cn_buf_init(&b);
    rjour_key(key, 5);
    assert_int_equal(cn__seal_meta(f->s, key, sizeof(key), "\xa1\x00\x01", 3, &b), CN_OK);
    raw_put(f->s, CN__CF_META, key, sizeof(key), b.data, b.len);
    cn_buf_dispose(&b);
    expect_open_refused(f);
}

int main(void)
{
    const char *child = getenv(CHILD_ENV);
    if (child != NULL)
        child_main(child);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_record_then_next_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idle_writer_puts_them, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_in_the_next_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_in_the_same_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_merges_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_killed_before_put, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_name_skipped, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unsealed_record_refuses_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_non_record_refuses_open, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
