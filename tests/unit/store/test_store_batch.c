/*
 * Group commit: ops of one batch see each other's effects, a refused op
 * contributes nothing, batch limits hold, and concurrent submitters never
 * get the same one-time prekey or mailbox seq twice.
 */
#include "tests/unit/store/page_cache.h"
#include "tests/unit/store/store_test_util.h"

#include <time.h>

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

static void test_same_dedupe_key_in_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_store_op_t op1, op2;
    cn_store_recipient_t r1, r2;
    make_id(a, 1, 1);
    recipient(&r1, a, "first");
    recipient(&r2, a, "retry");
    op_send(&op1, SENDER, 7, &r1, 1, 100);
    op_send(&op2, SENDER, 7, &r2, 1, 200);
    cn_store_op_t *ops[] = {&op1, &op2};
    run_batch_of(f->s, ops, 2);
    assert_int_equal(op1.result, CN_OK);
    assert_int_equal(op2.result, CN_OK);
    assert_false(op1.u.send.duplicate);
    assert_true(op2.u.send.duplicate);
    assert_int_equal(op2.u.send.env.server_time, 100);
    assert_int_equal(r1.seq, 1);
    fx_reopen(f);
    assert_int_equal(depth(f->s, a), 1);
}

/* The Sends of a batch look their dedupe keys up together (writer.c
 * prefetch_dedupe): a retry of a message committed by an earlier batch is
 * still a duplicate when it shares its batch with new messages, which are
 * not, and the answer holds after a restart too. */
static void test_committed_dedupe_key_in_a_batch(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    make_id(a, 2, 2);
    uint64_t seq;
    assert_int_equal(send1(f->s, SENDER, 9, a, "first", &seq), CN_OK);
    assert_int_equal(seq, 1);
    for (int round = 0; round < 2; round++) {
        cn_store_op_t ops[3];
        cn_store_recipient_t r[3];
        const uint8_t ids[3] = {(uint8_t)(20 + round), 9, (uint8_t)(30 + round)};
        cn_store_op_t *list[3];
        for (int i = 0; i < 3; i++) {
            recipient(&r[i], a, "again");
            op_send(&ops[i], SENDER, ids[i], &r[i], 1, 500);
            list[i] = &ops[i];
        }
        run_batch_of(f->s, list, 3);
        for (int i = 0; i < 3; i++)
            assert_int_equal(ops[i].result, CN_OK);
        assert_false(ops[0].u.send.duplicate);
        assert_true(ops[1].u.send.duplicate);
        assert_false(ops[2].u.send.duplicate);
        assert_int_equal(r[0].seq, 2 + 2 * (uint64_t)round);
        assert_int_equal(r[2].seq, 3 + 2 * (uint64_t)round);
        fx_reopen(f);
    }
    assert_int_equal(depth(f->s, a), 5);
}

static uint64_t fsyncs(cn_store_t *s)
{
    cn_store_stats_t st;
    cn_store_stats_get(s, &st);
    uint64_t n = 0;
    for (size_t i = 0; i < CN_STORE_FSYNC_HIST_N; i++)
        n += st.fsync_hist[i];
    return n;
}

static void op_last_seen(cn_store_op_t *op, const char *handle, uint64_t t, bool lazy)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_USER_UPDATE;
    op->lazy = lazy;
    strcpy(op->u.user_update.handle, handle);
    op->u.user_update.mask = CN_USER_SET_LAST_SEEN;
    op->u.user_update.last_seen = t;
}

/* A batch of lazy ops only is written without an fsync (and is still
 * there after a reopen); one other op in the batch brings the fsync back. */
/* The batch's dedupe lookup sorts its keys for RocksDB (writer.c
 * sort_dedupe_keys): nearly sorted ids by insertion, others by qsort once
 * the insertion sort's budget runs out. Either way each Send gets its own
 * answer: a retry of a committed message is a duplicate, whatever its
 * place in the batch, and a new one is not. */
/* hash.c remembers the last device id and the last other key each thread
 * hashed: what it answers must be the hash of the bytes now, whatever
 * was hashed in between or changed in place. */
static void test_table_hash_remembers_only_equal_bytes(void **state)
{
    (void)state;
    cn__hash_init();
    const uint64_t golden = 0x9e3779b97f4a7c15ull;
    uint8_t dev[CN_DEVICE_ID_LEN] = {1}, other[CN_DEVICE_ID_LEN] = {2};
    uint8_t dkey[CN__KEY_DEDUPE] = {3}, big[100] = {4};
    uint64_t h_dev = cn__hash(dev, sizeof(dev), 0);
    uint64_t h_dkey = cn__hash(dkey, sizeof(dkey), 0);
    uint64_t h_big = cn__hash(big, sizeof(big), 0);
    assert_true(cn__hash(dev, sizeof(dev), 7) == (h_dev ^ 7 * golden));
    assert_true(cn__hash(other, sizeof(other), 0) != h_dev);
    assert_true(cn__hash(dev, sizeof(dev), 0) == h_dev);
    /* The same buffer with one byte changed, then changed back. */
    dev[CN_DEVICE_ID_LEN - 1] ^= 1;
    uint64_t h_dev2 = cn__hash(dev, sizeof(dev), 0);
    assert_true(h_dev2 != h_dev);
    dev[CN_DEVICE_ID_LEN - 1] ^= 1;
    assert_true(cn__hash(dev, sizeof(dev), 0) == h_dev);
    /* A prefix of the same bytes is another input. */
    assert_true(cn__hash(dkey, sizeof(dkey) - 1, 0) != h_dkey);
    assert_true(cn__hash(dkey, sizeof(dkey), 0) == h_dkey);
    dkey[0] ^= 0x80;
    assert_true(cn__hash(dkey, sizeof(dkey), 0) != h_dkey);
    dkey[0] ^= 0x80;
    assert_true(cn__hash(dkey, sizeof(dkey), 0) == h_dkey);
    big[99] ^= 1;
    assert_true(cn__hash(big, sizeof(big), 0) != h_big);
}

static void test_dedupe_lookup_in_any_order(void **state)
{
    fx_t *f = *state;
    enum { N = 64 };
    static const uint8_t committed[] = {3, 17, 40, 63};
    uint8_t a[CN_DEVICE_ID_LEN];
    make_id(a, 6, 1);
    for (size_t i = 0; i < sizeof(committed); i++) {
        uint64_t seq;
        assert_int_equal(send1(f->s, SENDER, committed[i], a, "first", &seq), CN_OK);
    }
    for (int order = 0; order < 2; order++) { /* descending: qsort; ascending: insertion */
        static cn_store_op_t ops[N];
        static cn_store_recipient_t rs[N];
        static cn_store_op_t *list[N];
        for (int i = 0; i < N; i++) {
            uint8_t id = (uint8_t)(order == 0 ? N - i : i + 1);
            recipient(&rs[i], a, "again");
            op_send(&ops[i], SENDER, id, &rs[i], 1, 500);
            list[i] = &ops[i];
        }
        run_batch_of(f->s, list, N);
        for (int i = 0; i < N; i++) {
            uint8_t id = ops[i].u.send.env.message_id[0];
            bool was = order == 1 || memchr(committed, id, sizeof(committed)) != NULL;
            assert_int_equal(ops[i].result, CN_OK);
            assert_int_equal(ops[i].u.send.duplicate, was);
        }
    }
    fx_reopen(f);
    assert_int_equal(depth(f->s, a), N);
}

/* With a syncing policy the writer drops the WAL's synced pages from the
 * page cache but its last 8 MiB (store/wal_drop.c), and a WAL that a newer
 * one replaced whole: after 24 MiB of envelopes at most about 10 MiB of
 * the WAL files stay in memory. Its own store in /var/tmp, on disk (the
 * pages of a tmpfs cannot be dropped). */
static void test_synced_wal_leaves_the_page_cache(void **state)
{
    fx_t *f = *state;
    enum { ROUNDS = 96, SENDS = 32, SIZE = 8000 };
    cn_store_free(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    strcpy(f->dir, "/var/tmp/cn_store_test_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->opts.sync = CN_SYNC_BATCH;
    fx_open(f);
    static char ct[SIZE + 1];
    memset(ct, 'w', SIZE);
    static cn_store_op_t ops[SENDS];
    static cn_store_recipient_t rs[SENDS];
    cn_store_op_t *list[SENDS];
    uint8_t a[CN_DEVICE_ID_LEN];
    make_id(a, 7, 1);
    unsigned id = 0;
    for (int round = 0; round <= ROUNDS; round++) {
        for (int i = 0; i < SENDS; i++, id++) {
            recipient(&rs[i], a, ct);
            op_send(&ops[i], SENDER, 0, &rs[i], 1, 10);
            memcpy(ops[i].u.send.env.message_id, &id, sizeof(id));
            list[i] = &ops[i];
        }
        run_batch_of(f->s, list, SENDS);
        for (int i = 0; i < SENDS; i++)
            assert_int_equal(ops[i].result, CN_OK);
    }
    size_t resident, total;
    assert_int_equal(cn_test_wal_residency(f->dir, &resident, &total), 0);
    assert_true(total > (size_t)ROUNDS * SENDS * SIZE);
    assert_true(resident <= (10u << 20));
    fx_reopen(f); /* and the WAL still recovers: every entry is there */
    assert_int_equal(depth(f->s, a), (ROUNDS + 1) * SENDS);
}

static void test_lazy_batches_skip_fsync(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_store_op_t op, mixed[2];
    cn_rec_user_t u;
    make_id(id, 9, 1);
    f->opts.sync = CN_SYNC_BATCH;
    fx_reopen(f);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "lena", id, 0), CN_OK);
    uint64_t before = fsyncs(f->s);
    assert_int_equal(before, 1); /* sync=batch: the register was synced */

    op_last_seen(&op, "lena", 1111, true);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(fsyncs(f->s), before);
    assert_int_equal(cn_store_user_get(f->s, "lena", &u), CN_OK);
    assert_int_equal(u.last_seen, 1111);

    op_last_seen(&mixed[0], "lena", 2222, true);
    op_last_seen(&mixed[1], "lena", 3333, false);
    cn_store_op_t *ops[] = {&mixed[0], &mixed[1]};
    run_batch_of(f->s, ops, 2); /* the gate's batch before it writes nothing */
    assert_int_equal(mixed[0].result, CN_OK);
    assert_int_equal(mixed[1].result, CN_OK);
    assert_int_equal(fsyncs(f->s), before + 1);

    op_last_seen(&op, "lena", 4444, true);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(fsyncs(f->s), before + 1);
    fx_reopen(f);
    assert_int_equal(cn_store_user_get(f->s, "lena", &u), CN_OK);
    assert_int_equal(u.last_seen, 4444);
}

/* A lazy op alone does not wake the writer: it waits up to
 * CN_STORE_LAZY_DELAY_MS, and goes with the next op someone waits for. */
static void test_lazy_ops_wait_for_company(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_store_op_t lazy, other;
    cn_rec_user_t u;
    make_id(id, 9, 2);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "mona", id, 0), CN_OK);

    /* Alone: done no sooner than the delay (a lower bound, so a loaded
     * machine cannot make it fail). */
    uint64_t t0 = cn_mono_ns();
    op_last_seen(&lazy, "mona", 5555, true);
    assert_int_equal(run_op(f->s, &lazy), CN_OK);
    uint64_t waited_ms = (cn_mono_ns() - t0) / 1000000u;
    assert_true(waited_ms + 5 >= CN_STORE_LAZY_DELAY_MS);
    assert_int_equal(cn_store_user_get(f->s, "mona", &u), CN_OK);
    assert_int_equal(u.last_seen, 5555);

    /* With company: the op that wakes the writer takes it along. */
    waiter_t w;
    waiter_init(&w);
    w.s = f->s;
    op_last_seen(&lazy, "mona", 6666, true);
    op_last_seen(&other, "mona", 7777, false);
    submit_with(f->s, &lazy, &w);
    submit_with(f->s, &other, &w);
    waiter_wait(&w);
    assert_int_equal(w.batch_ops_seen, 2);
    waiter_dispose(&w);
    assert_int_equal(lazy.result, CN_OK);
    assert_int_equal(other.result, CN_OK);
    assert_int_equal(cn_store_user_get(f->s, "mona", &u), CN_OK);
    assert_int_equal(u.last_seen, 7777); /* applied in submission order */
}

static void test_register_then_send_and_link(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], c[CN_DEVICE_ID_LEN];
    cn_store_op_t reg, send, link, dup, dup_dev;
    cn_store_recipient_t r;
    make_id(a, 2, 1);
    make_id(b, 2, 2);
    make_id(c, 2, 3);
    op_register(&reg, CN_OP_REGISTER, "grace", a);
    recipient(&r, a, "welcome");
    op_send(&send, SENDER, 1, &r, 1, 10);
    op_register(&link, CN_OP_LINK, "grace", b);
    op_register(&dup, CN_OP_REGISTER, "grace", c);
    op_register(&dup_dev, CN_OP_REGISTER, "henry", b);
    cn_store_op_t *ops[] = {&reg, &send, &link, &dup, &dup_dev};
    run_batch_of(f->s, ops, 5);
    assert_int_equal(reg.result, CN_OK);
    assert_int_equal(send.result, CN_OK);
    assert_int_equal(link.result, CN_OK);
    assert_int_equal(dup.result, CN_EEXIST);
    assert_int_equal(dup_dev.result, CN_EEXIST);
    fx_reopen(f);
    cn_rec_user_t u;
    cn_rec_device_t d;
    assert_int_equal(cn_store_user_get(f->s, "grace", &u), CN_OK);
    assert_int_equal(u.ndevices, 2);
    assert_int_equal(cn_store_user_get(f->s, "henry", &u), CN_ENOTFOUND);
    assert_int_equal(cn_store_device_get(f->s, c, &d), CN_ENOTFOUND);
    assert_int_equal(depth(f->s, a), 1);
}

static void test_two_fetches_in_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_rec_prekey_t keys[3];
    cn_store_op_t reg, up, f1, f2, f3;
    cn_store_bundle_t b1, b2, b3;
    make_id(a, 3, 1);
    op_register(&reg, CN_OP_REGISTER, "ivan", a);
    op_upload(&up, a, keys, 3, 1);
    op_fetch(&f1, &b1, a);
    op_fetch(&f2, &b2, a);
    op_fetch(&f3, &b3, a);
    /* Register, upload and three fetches all in one batch. */
    cn_store_op_t *ops[] = {&reg, &up, &f1, &f2, &f3};
    run_batch_of(f->s, ops, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(ops[i]->result, CN_OK);
    assert_true(b1.has_otpk && b2.has_otpk && b3.has_otpk);
    assert_int_equal(b1.otpk.key_id, 1);
    assert_int_equal(b2.otpk.key_id, 2);
    assert_int_equal(b3.otpk.key_id, 3);
    assert_int_equal(b1.remaining, 2);
    assert_int_equal(b3.remaining, 0);
    uint32_t count;
    assert_int_equal(cn_store_prekey_count(f->s, a, &count), CN_OK);
    assert_int_equal(count, 0);
}

static void test_ack_of_same_batch_appends(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_store_op_t s1, s2, ak;
    cn_store_recipient_t r1, r2;
    uint64_t seqs[] = {1, 2};
    make_id(a, 4, 1);
    recipient(&r1, a, "one");
    recipient(&r2, a, "two");
    op_send(&s1, SENDER, 1, &r1, 1, 10);
    op_send(&s2, SENDER, 2, &r2, 1, 10);
    memset(&ak, 0, sizeof(ak));
    ak.type = CN_OP_ACK;
    memcpy(ak.u.ack.device_id, a, CN_DEVICE_ID_LEN);
    ak.u.ack.n = 2;
    ak.u.ack.seqs = seqs;
    cn_store_op_t *ops[] = {&s1, &s2, &ak};
    run_batch_of(f->s, ops, 3);
    assert_int_equal(r1.seq, 1);
    assert_int_equal(r2.seq, 2);
    assert_int_equal(ak.result, CN_OK);
    assert_int_equal(ak.u.ack.deleted, 2);
    fx_reopen(f);
    assert_int_equal(depth(f->s, a), 0);
    uint64_t seq;
    assert_int_equal(send1(f->s, SENDER, 3, a, "three", &seq), CN_OK);
    assert_int_equal(seq, 3);
}

/* One batch of sends to many devices, three each, then acks of each
 * device's second; and one busy device with nbusy, two of them acked. The
 * batch's records are replayed in key order (a radix sort on a prefix,
 * or an insertion sort for a batch of a few records, then the records
 * sharing one by whole key: an insertion sort for a device's three, qsort
 * for the busy one's when over 16), and a delete still wins over the put
 * before it of the same key. Device ids differ in their first byte, in an
 * order the log does not follow. */
enum { EACH = 3, DEVICES_MAX = 40, BUSY_MAX = 24 };

static void replay_order(fx_t *f, int devices, int nbusy, uint64_t busy_acked[2])
{
    int sends_n = devices * EACH + nbusy;
    static uint8_t dev[DEVICES_MAX][CN_DEVICE_ID_LEN], busy[CN_DEVICE_ID_LEN];
    static cn_store_op_t sends[DEVICES_MAX * EACH + BUSY_MAX], acks[DEVICES_MAX + 1];
    static cn_store_recipient_t rs[DEVICES_MAX * EACH + BUSY_MAX];
    static char ct[DEVICES_MAX * EACH + BUSY_MAX][32];
    static uint64_t acked[DEVICES_MAX];
    static cn_store_op_t *ops[DEVICES_MAX * EACH + BUSY_MAX + DEVICES_MAX + 1];
    assert_true(devices <= DEVICES_MAX && nbusy <= BUSY_MAX);
    size_t n = 0;
    for (int d = 0; d < devices; d++)
        make_id(dev[d], (uint8_t)(0xf0 - 37 * d), (uint8_t)d);
    make_id(busy, 0x77, 0xbb);
    for (int i = 0; i < sends_n; i++) {
        bool to_busy = i >= devices * EACH;
        int d = i % devices, k = i / devices;
        if (to_busy)
            snprintf(ct[i], sizeof(ct[i]), "b-%d", i - devices * EACH + 1);
        else
            snprintf(ct[i], sizeof(ct[i]), "m-%d-%d", d, k + 1);
        recipient(&rs[i], to_busy ? busy : dev[d], ct[i]);
        op_send(&sends[i], SENDER, (uint8_t)(i + 1), &rs[i], 1, 10);
        ops[n++] = &sends[i];
    }
    for (int d = 0; d <= devices; d++) {
        memset(&acks[d], 0, sizeof(acks[d]));
        acks[d].type = CN_OP_ACK;
        memcpy(acks[d].u.ack.device_id, d < devices ? dev[d] : busy, CN_DEVICE_ID_LEN);
        acked[d % devices] = 2;
        acks[d].u.ack.n = d < devices ? 1 : 2;
        acks[d].u.ack.seqs = d < devices ? &acked[d] : busy_acked;
        ops[n++] = &acks[d];
    }
    run_batch_of(f->s, ops, n);
    fx_reopen(f);
    char want[16];
    for (int d = 0; d < devices; d++) {
        assert_int_equal(acks[d].u.ack.deleted, 1);
        collect_t c = {0};
        uint64_t next = 0;
        assert_int_equal(cn_store_mailbox_read(f->s, dev[d], 0, 10, 1 << 20, collect_cb, &c, &next),
                         2);
        assert_int_equal(c.seqs[0], 1);
        snprintf(want, sizeof(want), "m-%d-1", d);
        assert_string_equal(c.ct[0], want);
        assert_int_equal(c.seqs[1], 3);
        snprintf(want, sizeof(want), "m-%d-3", d);
        assert_string_equal(c.ct[1], want);
    }
    assert_int_equal(acks[devices].u.ack.deleted, 2);
    collect_t c = {0};
    uint64_t next = 0;
    assert_int_equal(cn_store_mailbox_read(f->s, busy, 0, 64, 1 << 20, collect_cb, &c, &next),
                     nbusy - 2);
    for (size_t i = 0, seq = 1; i < c.n; i++, seq++) {
        seq += seq == busy_acked[0] || seq == busy_acked[1];
        assert_int_equal(c.seqs[i], seq);
        snprintf(want, sizeof(want), "b-%zu", seq);
        assert_string_equal(c.ct[i], want);
    }
}

static void test_replay_order_many_devices(void **state)
{
    static uint64_t busy_acked[] = {5, 17};
    replay_order(*state, DEVICES_MAX, BUSY_MAX, busy_acked); /* ~370 records: radix */
}

static void test_replay_order_small_batch(void **state)
{
    static uint64_t busy_acked[] = {2, 5};
    replay_order(*state, 4, 6, busy_acked); /* ~50 records: insertion */
}

/* A batch large enough to grow the overlay's table (over 768 records),
 * then small ones: the table is given back and starts small again, and
 * a small batch still finds its own writes (a retry of a Send of the same
 * batch is a duplicate, an ack of an entry put in the same batch deletes
 * it). */
static void test_small_batches_after_a_grown_table(void **state)
{
    fx_t *f = *state;
    enum { LARGE = 600 };
    static cn_store_op_t sends[LARGE];
    static cn_store_recipient_t rs[LARGE];
    static cn_store_op_t *ops[LARGE];
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    make_id(a, 5, 1);
    make_id(b, 5, 2);
    for (int i = 0; i < LARGE; i++) {
        recipient(&rs[i], a, "bulk");
        op_send(&sends[i], SENDER, 1, &rs[i], 1, 10);
        sends[i].u.send.env.message_id[0] = (uint8_t)(i >> 8);
        sends[i].u.send.env.message_id[1] = (uint8_t)i;
        ops[i] = &sends[i];
    }
    run_batch_of(f->s, ops, LARGE); /* 1,200 overlay records and more */
    for (int i = 0; i < LARGE; i++)
        assert_false(sends[i].result != CN_OK || sends[i].u.send.duplicate);
    for (int round = 0; round < 3; round++) {
        cn_store_op_t s1, s2, ak;
        cn_store_recipient_t r1, r2;
        recipient(&r1, b, "first");
        recipient(&r2, b, "retry");
        op_send(&s1, SENDER, (uint8_t)(200 + round), &r1, 1, 20);
        op_send(&s2, SENDER, (uint8_t)(200 + round), &r2, 1, 30);
        uint64_t seq = (uint64_t)round + 1;
        memset(&ak, 0, sizeof(ak));
        ak.type = CN_OP_ACK;
        memcpy(ak.u.ack.device_id, b, CN_DEVICE_ID_LEN);
        ak.u.ack.n = 1;
        ak.u.ack.seqs = &seq;
        cn_store_op_t *small[] = {&s1, &s2, &ak};
        run_batch_of(f->s, small, 3);
        assert_int_equal(s1.result, CN_OK);
        assert_false(s1.u.send.duplicate);
        assert_true(s2.u.send.duplicate);
        assert_int_equal(r1.seq, seq);
        assert_int_equal(ak.u.ack.deleted, 1);
    }
    fx_reopen(f);
    assert_int_equal(depth(f->s, a), LARGE);
    assert_int_equal(depth(f->s, b), 0);
}

/* The writer keeps the batch it writes from one batch to the next
 * (writer.c final_reset) and gives its buffer back after one larger than
 * 4 MiB. Batches after a large one (an ack, one with only indexed ops, a
 * send) write exactly their own ops: nothing of an earlier batch again
 * (which would bring the acked entries back), nothing lost. */
static void test_batches_after_a_large_one(void **state)
{
    fx_t *f = *state;
    enum { LARGE = 80 };
    static char big[LARGE][CN_CIPHERTEXT_MAX];
    static cn_store_op_t sends[LARGE];
    static cn_store_recipient_t rs[LARGE];
    cn_store_op_t *ops[LARGE];
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    make_id(a, 3, 1);
    make_id(b, 3, 2);
    for (int i = 0; i < LARGE; i++) {
        memset(big[i], 'a' + i % 26, sizeof(big[i]) - 1);
        recipient(&rs[i], a, big[i]);
        op_send(&sends[i], SENDER, (uint8_t)(i + 1), &rs[i], 1, 10);
        ops[i] = &sends[i];
    }
    run_batch_of(f->s, ops, LARGE); /* about 5 MiB in one batch */
    for (int i = 0; i < LARGE; i++)
        assert_int_equal(sends[i].result, CN_OK);
    const uint64_t acked[] = {1, 2};
    assert_int_equal(ack_seqs(f->s, a, acked, 2, NULL), CN_OK);
    cn_store_op_t reg;
    op_register(&reg, CN_OP_REGISTER, "ivy", b);
    cn_store_op_t *only_indexed[] = {&reg};
    run_batch_of(f->s, only_indexed, 1);
    assert_int_equal(reg.result, CN_OK);
    uint64_t seq;
    assert_int_equal(send1(f->s, SENDER, 200, a, "small", &seq), CN_OK);
    assert_int_equal(seq, LARGE + 1);
    fx_reopen(f);
    cn_rec_user_t u;
    assert_int_equal(cn_store_user_get(f->s, "ivy", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);
    assert_int_equal(depth(f->s, a), LARGE - 1);
    assert_int_equal(depth(f->s, b), 0);
    collect_t c = {0};
    uint64_t next = 0;
    assert_true(queued_bytes(f->s, a) > (uint64_t)(LARGE - 2) * (CN_CIPHERTEXT_MAX - 1));
    assert_int_equal(cn_store_mailbox_read(f->s, a, LARGE + 1, 10, 1 << 20, collect_cb, &c, &next),
                     1);
    assert_int_equal(c.seqs[0], LARGE + 1);
    assert_string_equal(c.ct[0], "small");
}

static void test_refused_op_contributes_nothing(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_store_op_t s1, bad, s2, bad_upload;
    cn_store_recipient_t r1, rbad[2], r2;
    static char big[CN_CIPHERTEXT_MAX + 1];
    make_id(a, 5, 1);
    recipient(&r1, a, "one");
    recipient(&rbad[0], a, "fine");
    recipient(&rbad[1], a, "x");
    rbad[1].ciphertext = cn_slice(big, sizeof(big));
    recipient(&r2, a, "two");
    op_send(&s1, SENDER, 1, &r1, 1, 10);
    op_send(&bad, SENDER, 2, rbad, 2, 10);
    op_send(&s2, SENDER, 3, &r2, 1, 10);
    cn_rec_prekey_t keys[1];
    op_upload(&bad_upload, a, keys, 1, 1); /* no such device */
    cn_store_op_t *ops[] = {&s1, &bad, &bad_upload, &s2};
    run_batch_of(f->s, ops, 4);
    assert_int_equal(s1.result, CN_OK);
    assert_int_equal(bad.result, CN_ETOOBIG);
    assert_int_equal(bad_upload.result, CN_ENOTFOUND);
    assert_int_equal(s2.result, CN_OK);
    assert_int_equal(r1.seq, 1);
    assert_int_equal(r2.seq, 2); /* contiguous: the refused send took none */
    fx_reopen(f);
    assert_int_equal(depth(f->s, a), 2);
    /* The refused send left no dedupe record either. */
    recipient(&r1, a, "retry ok");
    op_send(&s1, SENDER, 2, &r1, 1, 10);
    assert_int_equal(run_op(f->s, &s1), CN_OK);
    assert_false(s1.u.send.duplicate);
    assert_int_equal(r1.seq, 3);
}

static void test_revoke_then_ops_in_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    cn_rec_prekey_t keys[2];
    make_id(a, 6, 1);
    make_id(b, 6, 2);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "judy", a, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "judy", b, 0), CN_OK);
    cn_store_op_t up;
    op_upload(&up, a, keys, 2, 1);
    assert_int_equal(run_op(f->s, &up), CN_OK);
    assert_int_equal(send1(f->s, SENDER, 1, a, "before", NULL), CN_OK);

    cn_store_op_t early, rv, fe, ak, up2, s, late;
    cn_store_bundle_t bu;
    cn_store_recipient_t r, r_early, r_late;
    uint64_t seqs[] = {1};
    memset(&rv, 0, sizeof(rv));
    rv.type = CN_OP_REVOKE;
    memcpy(rv.u.revoke.device_id, a, CN_DEVICE_ID_LEN);
    op_fetch(&fe, &bu, a);
    memset(&ak, 0, sizeof(ak));
    ak.type = CN_OP_ACK;
    memcpy(ak.u.ack.device_id, a, CN_DEVICE_ID_LEN);
    ak.u.ack.n = 1;
    ak.u.ack.seqs = seqs;
    op_upload(&up2, a, keys, 1, 9);
    recipient(&r, b, "to the survivor");
    op_send(&s, SENDER, 2, &r, 1, 10);
    /* Queued for the revoked device in the same batch, before and after
     * its revoke: neither survives the commit. */
    recipient(&r_early, a, "queued before");
    op_send(&early, SENDER, 3, &r_early, 1, 10);
    recipient(&r_late, a, "queued after");
    op_send(&late, SENDER, 4, &r_late, 1, 10);
    cn_store_op_t *ops[] = {&early, &rv, &fe, &ak, &up2, &s, &late};
    run_batch_of(f->s, ops, 7);
    assert_int_equal(early.result, CN_OK);
    assert_int_equal(late.result, CN_OK);
    assert_int_equal(rv.result, CN_OK);
    assert_int_equal(fe.result, CN_OK);
    assert_false(bu.has_otpk || bu.has_signed);
    assert_int_equal(ak.result, CN_OK);
    assert_int_equal(ak.u.ack.deleted, 0);
    assert_int_equal(up2.result, CN_ENOTFOUND);
    assert_int_equal(s.result, CN_OK);
    fx_reopen(f);
    uint32_t count;
    assert_int_equal(depth(f->s, a), 0);
    assert_int_equal(cn_store_prekey_count(f->s, a, &count), CN_OK);
    assert_int_equal(count, 0);
    assert_int_equal(depth(f->s, b), 1);
}

static void test_batch_limit(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_store_op_t ops[5];
    cn_store_recipient_t r[5];
    gate_t g;
    waiter_t w;
    cn_store_stats_t st;
    f->opts.max_batch_ops = 2;
    fx_reopen(f);
    make_id(a, 7, 1);
    waiter_init(&w);
    gate_hold(f->s, &g);
    for (int i = 0; i < 5; i++) {
        recipient(&r[i], a, "x");
        op_send(&ops[i], SENDER, (uint8_t)i, &r[i], 1, 10);
        submit_with(f->s, &ops[i], &w);
    }
    gate_release(&g);
    waiter_wait(&w);
    cn_store_stats_get(f->s, &st);
    assert_int_equal(st.batches, 1 + 3); /* the gate, then 2 + 2 + 1 */
    assert_int_equal(st.ops, 6);
    assert_int_equal(st.last_batch_ops, 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].seq, (uint64_t)i + 1);
    gate_dispose(&g);
    waiter_dispose(&w);
}

/* A batch that fails as a whole writes nothing, fails every op with CN_EIO,
 * and drops the counters it advanced, so seqs stay contiguous. The failure
 * is provoked by a mailbox counter at its maximum, written behind the
 * store's back. */
static void test_failed_batch_drops_counters(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], key[CN__META_CTR_LEN], v[8];
    char *err = NULL;
    make_id(a, 10, 1);
    make_id(b, 10, 2);
    cn__key_counter(key, CN__CTR_MAILBOX, a);
    cn_store_u64be(v, UINT64_MAX);
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CN__CF_META], (const char *)key, sizeof(key),
                   (const char *)v, sizeof(v), &err);
    assert_null(err);

    cn_store_op_t s1, s2;
    cn_store_recipient_t r1, r2;
    recipient(&r1, b, "lost");
    recipient(&r2, a, "poison");
    op_send(&s1, SENDER, 1, &r1, 1, 10);
    op_send(&s2, SENDER, 2, &r2, 1, 10);
    cn_store_op_t *ops[] = {&s1, &s2};
    run_batch_of(f->s, ops, 2);
    assert_int_equal(s1.result, CN_EIO);
    assert_int_equal(s2.result, CN_EIO);
    assert_int_equal(depth(f->s, b), 0);
    cn_store_stats_t st;
    cn_store_stats_get(f->s, &st);
    assert_int_equal(st.write_errors, 1);

    uint64_t seq;
    assert_int_equal(send1(f->s, SENDER, 1, b, "again", &seq), CN_OK);
    assert_int_equal(seq, 1); /* not 2: the failed batch's seq was dropped */
    assert_int_equal(depth(f->s, b), 1);
}

/* --------------------------------------------------------- concurrency */

#define FETCHERS     2
#define FETCHES_EACH 150
#define SENDS_EACH   200

typedef struct worker {
    cn_store_t *s;
    const uint8_t *device;
    int index;
    uint32_t got[FETCHES_EACH];
    size_t ngot;
    uint64_t seqs[SENDS_EACH];
} worker_t;

static void *fetch_worker(void *arg)
{
    worker_t *wk = arg;
    for (int i = 0; i < FETCHES_EACH; i++) {
        cn_store_op_t op;
        cn_store_bundle_t b;
        op_fetch(&op, &b, wk->device);
        if (run_op(wk->s, &op) != CN_OK)
            return NULL;
        if (b.has_otpk)
            wk->got[wk->ngot++] = b.otpk.key_id;
    }
    return NULL;
}

static void test_concurrent_fetchers_never_share(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    static cn_rec_prekey_t keys[CN_OTPK_UPLOAD_MAX];
    make_id(a, 8, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "kate", a, 0), CN_OK);
    for (uint32_t u = 0; u < 2; u++) {
        cn_store_op_t op;
        op_upload(&op, a, keys, CN_OTPK_UPLOAD_MAX, 1 + u * CN_OTPK_UPLOAD_MAX);
        assert_int_equal(run_op(f->s, &op), CN_OK);
    }
    static worker_t wk[FETCHERS];
    pthread_t t[FETCHERS];
    for (int i = 0; i < FETCHERS; i++) {
        memset(&wk[i], 0, sizeof(wk[i]));
        wk[i].s = f->s;
        wk[i].device = a;
        assert_int_equal(pthread_create(&t[i], NULL, fetch_worker, &wk[i]), 0);
    }
    for (int i = 0; i < FETCHERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    /* 300 fetches, 200 keys: each key handed out exactly once. */
    uint8_t seen[2 * CN_OTPK_UPLOAD_MAX + 1];
    memset(seen, 0, sizeof(seen));
    size_t total = 0;
    for (int i = 0; i < FETCHERS; i++) {
        for (size_t j = 0; j < wk[i].ngot; j++) {
            uint32_t k = wk[i].got[j];
            assert_true(k >= 1 && k <= 2 * CN_OTPK_UPLOAD_MAX);
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
            /* Each worker sees its keys in FIFO order. */
            if (j > 0)
                assert_true(wk[i].got[j - 1] < k);
        }
        total += wk[i].ngot;
    }
    assert_int_equal(total, 2 * CN_OTPK_UPLOAD_MAX);
}

static void *send_worker(void *arg)
{
    worker_t *wk = arg;
    uint8_t from[CN_DEVICE_ID_LEN];
    make_id(from, 0xf0, (uint8_t)wk->index);
    for (int i = 0; i < SENDS_EACH; i++) {
        cn_store_op_t op;
        cn_store_recipient_t r;
        recipient(&r, wk->device, "c");
        op_send(&op, from, 0, &r, 1, 10);
        memcpy(op.u.send.env.message_id, &i, sizeof(i));
        if (run_op(wk->s, &op) != CN_OK)
            return NULL;
        wk->seqs[i] = r.seq;
    }
    return NULL;
}

static void test_concurrent_senders_contiguous(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    f->opts.sync = CN_SYNC_BATCH;
    fx_reopen(f);
    make_id(a, 9, 1);
    static worker_t wk[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&wk[i], 0, sizeof(wk[i]));
        wk[i].s = f->s;
        wk[i].device = a;
        wk[i].index = i;
        assert_int_equal(pthread_create(&t[i], NULL, send_worker, &wk[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    uint8_t seen[2 * SENDS_EACH + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < SENDS_EACH; j++) {
            uint64_t s = wk[i].seqs[j];
            assert_true(s >= 1 && s <= 2 * SENDS_EACH);
            assert_int_equal(seen[s], 0);
            seen[s] = 1;
        }
    }
    assert_int_equal(depth(f->s, a), 2 * SENDS_EACH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_committed_dedupe_key_in_a_batch, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_dedupe_key_in_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_lookup_in_any_order, fx_setup, fx_teardown),
        cmocka_unit_test(test_table_hash_remembers_only_equal_bytes),
        cmocka_unit_test_setup_teardown(test_register_then_send_and_link, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_two_fetches_in_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_order_many_devices, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_order_small_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_small_batches_after_a_grown_table, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_of_same_batch_appends, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_batches_after_a_large_one, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused_op_contributes_nothing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_then_ops_in_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_batch_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_drops_counters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_fetchers_never_share, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_senders_contiguous, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lazy_batches_skip_fsync, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_synced_wal_leaves_the_page_cache, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_lazy_ops_wait_for_company, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
