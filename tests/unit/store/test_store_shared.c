/*
 * Group messages stored once (CN_OP_SEND with shared): one body in the gmsg
 * column family with a count of references, a small reference in each
 * mailbox, whole envelopes out of cn_store_mailbox_read, the body deleted
 * with the last acked reference, and the checks that refuse a shared send
 * whose recipients differ or repeat.
 */
#include "tests/unit/store/store_test_util.h"

#define NDEV 5
/* Longer than a reference (the envelope header, about 100 bytes). */
#define BODY                                                                                       \
    "group ciphertext of a sender key, long enough to tell apart from the reference that "         \
    "points at it: one hundred and fifty bytes or so, well above the header of a reference"

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

static void body_key(uint8_t out[CN__KEY_GMSG], uint8_t msg)
{
    memcpy(out, SENDER, CN_DEVICE_ID_LEN);
    memset(out + CN_DEVICE_ID_LEN, msg, CN_MESSAGE_ID_LEN);
}

/** The stored reference count of message msg (UINT64_MAX: none stored). */
static uint64_t refs(cn_store_t *s, uint8_t msg)
{
    uint8_t key[CN__KEY_GMSG_REFS];
    char *v;
    size_t vlen;
    body_key(key, msg);
    key[CN__KEY_GMSG] = CN__GMSG_REFS;
    int rc = cn__db_get(s, CN__CF_GMSG, key, sizeof(key), &v, &vlen);
    if (rc == CN_ENOTFOUND)
        return UINT64_MAX;
    assert_int_equal(rc, CN_OK);
    assert_int_equal(vlen, CN__GMSG_REFS_VAL);
    uint64_t n = cn_load_u64be((const uint8_t *)v);
    rocksdb_free(v);
    return n;
}

static bool has_body(cn_store_t *s, uint8_t msg)
{
    uint8_t key[CN__KEY_GMSG];
    char *v;
    size_t vlen;
    body_key(key, msg);
    int rc = cn__db_get(s, CN__CF_GMSG, key, sizeof(key), &v, &vlen);
    if (rc == CN_ENOTFOUND)
        return false;
    assert_int_equal(rc, CN_OK);
    rocksdb_free(v);
    return true;
}

static void devices(uint8_t ids[NDEV][CN_DEVICE_ID_LEN], cn_store_recipient_t *r, const char *ct)
{
    for (int i = 0; i < NDEV; i++) {
        make_id(ids[i], 7, (uint8_t)i);
        recipient(&r[i], ids[i], "");
        r[i].ciphertext = cn_slice(ct, strlen(ct));
    }
}

static int send_shared(cn_store_t *s, uint8_t msg, cn_store_recipient_t *r, uint32_t n,
                       uint64_t server_time)
{
    cn_store_op_t op;
    op_send(&op, SENDER, msg, r, n, server_time);
    op.u.send.env.has_group = true;
    memset(op.u.send.env.group_id, 0x42, CN_GROUP_ID_LEN);
    op.u.send.shared = true;
    return run_op(s, &op);
}

typedef struct whole {
    size_t n;
    cn_rec_envelope_t env[4];
    char ct[4][256];
} whole_t;

static int whole_cb(void *ctx, uint64_t seq, const uint8_t *value, size_t len)
{
    whole_t *w = ctx;
    (void)seq;
    assert_true(w->n < 4);
    assert_int_equal(cn_rec_envelope_decode(value, len, &w->env[w->n]), CN_OK);
    cn_slice_t ct = w->env[w->n].ciphertext;
    assert_true(ct.len < sizeof(w->ct[0]));
    memcpy(w->ct[w->n], ct.base, ct.len);
    w->ct[w->n][ct.len] = '\0';
    w->n++;
    return 0;
}

static void test_stored_once_read_whole(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 1, r, NDEV, 1000), CN_OK);
    assert_true(has_body(f->s, 1));
    assert_int_equal(refs(f->s, 1), NDEV);
    for (int i = 0; i < NDEV; i++) {
        whole_t w = {0};
        uint64_t next;
        assert_int_equal(r[i].seq, 1);
        /* The mailbox holds a reference, far smaller than the message. */
        assert_true(queued_bytes(f->s, ids[i]) < strlen(BODY));
        assert_int_equal(cn_store_mailbox_read(f->s, ids[i], 0, 10, 1 << 20, whole_cb, &w, &next),
                         1);
        assert_string_equal(w.ct[0], BODY);
        assert_false(w.env[0].shared);
        assert_true(w.env[0].has_group);
        assert_int_equal(w.env[0].server_time, 1000);
        assert_memory_equal(w.env[0].from_device, SENDER, CN_DEVICE_ID_LEN);
    }
}

static void test_last_ack_deletes_body(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    uint64_t one = 1;
    uint32_t deleted;
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 2, r, NDEV, 1000), CN_OK);
    for (int i = 0; i < NDEV - 1; i++) {
        assert_int_equal(ack_seqs(f->s, ids[i], &one, 1, &deleted), CN_OK);
        assert_int_equal(deleted, 1);
        assert_int_equal(refs(f->s, 2), NDEV - 1 - i);
        assert_int_equal(queued_bytes(f->s, ids[i]), 0);
    }
    /* A repeated ack releases nothing more. */
    assert_int_equal(ack_seqs(f->s, ids[0], &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 0);
    assert_int_equal(refs(f->s, 2), 1);
    assert_true(has_body(f->s, 2));
    assert_int_equal(ack_seqs(f->s, ids[NDEV - 1], &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_false(has_body(f->s, 2));
    assert_int_equal(refs(f->s, 2), UINT64_MAX);
}

/* Acks of every reference in one batch leave nothing behind either. */
static void test_acks_in_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    cn_store_op_t acks[NDEV], *ops[NDEV];
    uint64_t one = 1;
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 3, r, NDEV, 1000), CN_OK);
    for (int i = 0; i < NDEV; i++) {
        memset(&acks[i], 0, sizeof(acks[i]));
        acks[i].type = CN_OP_ACK;
        memcpy(acks[i].u.ack.device_id, ids[i], CN_DEVICE_ID_LEN);
        acks[i].u.ack.n = 1;
        acks[i].u.ack.seqs = &one;
        ops[i] = &acks[i];
    }
    run_batch_of(f->s, ops, NDEV);
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(acks[i].result, CN_OK);
        assert_int_equal(acks[i].u.ack.deleted, 1);
    }
    assert_false(has_body(f->s, 3));
    assert_int_equal(refs(f->s, 3), UINT64_MAX);
}

static void test_refused_shapes(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    char other[] = BODY;
    devices(ids, r, BODY);
    /* Same bytes, another buffer: not one ciphertext. */
    r[3].ciphertext = cn_slice(other, strlen(other));
    assert_int_equal(send_shared(f->s, 4, r, NDEV, 1000), CN_EINVAL);
    devices(ids, r, BODY);
    memcpy(r[4].device_id, r[1].device_id, CN_DEVICE_ID_LEN);
    assert_int_equal(send_shared(f->s, 4, r, NDEV, 1000), CN_EINVAL);
    assert_false(has_body(f->s, 4));
    assert_int_equal(depth(f->s, ids[0]), 0);
}

static void test_retry_and_single_device(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 5, r, NDEV, 1000), CN_OK);
    assert_int_equal(send_shared(f->s, 5, r, NDEV, 2000), CN_OK);
    assert_int_equal(refs(f->s, 5), NDEV);
    assert_int_equal(depth(f->s, ids[0]), 1);
    /* One device: an ordinary copy, no body. */
    assert_int_equal(send_shared(f->s, 6, r, 1, 1000), CN_OK);
    assert_false(has_body(f->s, 6));
    assert_true(queued_bytes(f->s, ids[0]) > strlen(BODY));
}

/* A reference whose body is gone comes out as the reference; TTL
 * compaction drops expired bodies and counts. */
static void test_expired_body(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN], key[CN__KEY_GMSG];
    cn_store_recipient_t r[NDEV];
    char *err = NULL;
    uint64_t old = cn_now_ms() - 31ull * 24 * 3600 * 1000;
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 7, r, NDEV, old), CN_OK);
    assert_int_equal(send_shared(f->s, 8, r, NDEV, cn_now_ms()), CN_OK);
    assert_int_equal(cn__store_compact(f->s, CN__CF_GMSG), CN_OK);
    assert_false(has_body(f->s, 7));
    assert_int_equal(refs(f->s, 7), UINT64_MAX);
    assert_true(has_body(f->s, 8));
    assert_int_equal(refs(f->s, 8), NDEV);
    body_key(key, 8);
    rocksdb_delete_cf(f->s->db, f->s->wo_sync, f->s->cf[CN__CF_GMSG], (const char *)key,
                      sizeof(key), &err);
    assert_null(err);
    whole_t w = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(f->s, ids[0], 0, 10, 1 << 20, whole_cb, &w, &next), 2);
    assert_true(w.env[0].shared && w.env[1].shared);
    assert_int_equal(w.env[0].ciphertext.len, 0);
}

/* An ack of an entry written lately uses what the writer remembers of it
 * (size, body) instead of reading it back; after a restart it reads. The
 * stored value is replaced behind the store's back to tell the two apart:
 * a read-back would count the replacement's size. */
static void test_ack_without_read_back(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN], key[CN__KEY_MAILBOX];
    cn_store_recipient_t r[NDEV];
    char *err = NULL;
    uint64_t one = 1;
    uint32_t deleted;
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 9, r, NDEV, 1000), CN_OK);
    assert_int_equal(send1(f->s, SENDER, 10, ids[0], "one to one", NULL), CN_OK);
    cn__key_mailbox(key, ids[0], 1);
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CN__CF_MAILBOX], (const char *)key,
                   sizeof(key), "garbage", 7, &err);
    assert_null(err);
    uint64_t two = 2;
    assert_int_equal(ack_seqs(f->s, ids[0], &one, 1, &deleted), CN_OK);
    assert_int_equal(ack_seqs(f->s, ids[0], &two, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(queued_bytes(f->s, ids[0]), 0);
    assert_int_equal(refs(f->s, 9), NDEV - 1); /* the reference was released */
    /* After a restart nothing is remembered: the acks read the mailbox. */
    fx_reopen(f);
    for (int i = 1; i < NDEV; i++) {
        assert_int_equal(ack_seqs(f->s, ids[i], &one, 1, &deleted), CN_OK);
        assert_int_equal(deleted, 1);
    }
    assert_false(has_body(f->s, 9));
}

/* Acks of many ascending seqs walk an iterator (ack_scan): entries only on
 * disk, missing ones, a reference among them, and entries this very batch
 * wrote, all counted once. */
static void test_ack_scan(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    uint32_t deleted;
    devices(ids, r, BODY);
    for (uint8_t m = 1; m <= 20; m++)
        assert_int_equal(send1(f->s, SENDER, (uint8_t)(100 + m), ids[0], "plain", NULL), CN_OK);
    assert_int_equal(send_shared(f->s, 11, r, NDEV, 1000), CN_OK); /* seq 21 for ids[0] */
    fx_reopen(f); /* nothing remembered: every entry is read from disk */
    uint64_t five = 5;
    assert_int_equal(ack_seqs(f->s, ids[0], &five, 1, &deleted), CN_OK);
    uint64_t seqs[22];
    for (int i = 0; i < 21; i++)
        seqs[i] = (uint64_t)i + 1;
    seqs[21] = 25; /* never stored */
    assert_int_equal(ack_seqs(f->s, ids[0], seqs, 22, &deleted), CN_OK);
    assert_int_equal(deleted, 20);
    assert_int_equal(depth(f->s, ids[0]), 0);
    assert_int_equal(queued_bytes(f->s, ids[0]), 0);
    assert_int_equal(refs(f->s, 11), NDEV - 1);

    /* Sends and the ack of what they stored, in one batch. */
    cn_store_op_t sends[10], ack, *ops[11];
    cn_store_recipient_t one[10];
    uint64_t more[10];
    for (int i = 0; i < 10; i++) {
        recipient(&one[i], ids[0], "same batch");
        op_send(&sends[i], SENDER, (uint8_t)(200 + i), &one[i], 1, 1000);
        ops[i] = &sends[i];
        more[i] = 22 + (uint64_t)i;
    }
    memset(&ack, 0, sizeof(ack));
    ack.type = CN_OP_ACK;
    memcpy(ack.u.ack.device_id, ids[0], CN_DEVICE_ID_LEN);
    ack.u.ack.n = 10;
    ack.u.ack.seqs = more;
    ops[10] = &ack;
    run_batch_of(f->s, ops, 11);
    assert_int_equal(ack.result, CN_OK);
    assert_int_equal(one[9].seq, 31);
    assert_int_equal(ack.u.ack.deleted, 10);
    assert_int_equal(depth(f->s, ids[0]), 0);
    assert_int_equal(queued_bytes(f->s, ids[0]), 0);
}

/** Flips the last byte of a stored mailbox value (its tag): it keeps its
 * length and header but no longer opens. */
static void tamper(cn_store_t *s, const uint8_t *device, uint64_t seq)
{
    uint8_t key[CN__KEY_MAILBOX];
    char *err = NULL;
    size_t vlen;
    cn__key_mailbox(key, device, seq);
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_MAILBOX], (const char *)key, sizeof(key),
                             &vlen, &err);
    assert_null(err);
    assert_non_null(v);
    v[vlen - 1] ^= 1;
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[CN__CF_MAILBOX], (const char *)key, sizeof(key), v,
                   vlen, &err);
    assert_null(err);
    rocksdb_free(v);
}

static void read_all(cn_store_t *s, const uint8_t *device, size_t expect)
{
    whole_t w = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(s, device, 0, 4, 1 << 20, whole_cb, &w, &next),
                     (int)expect);
}

static uint64_t auth_failures(cn_store_t *s)
{
    cn_store_keys_stats_t st;
    assert_int_equal(cn_store_keys_stats(s, &st), CN_OK);
    return st.auth_failures;
}

/* An ack of an entry a mailbox read handed out (after a restart, so the
 * writer remembers nothing) uses what the read learned instead of opening
 * it again; tampered values tell the two apart, since opening one fails.
 * A hint whose size no longer matches the stored value is not used, and a
 * second ack of the same entry releases nothing. */
static void test_ack_uses_read_hints(void **state)
{
    fx_t *f = *state;
    uint8_t ids[NDEV][CN_DEVICE_ID_LEN];
    cn_store_recipient_t r[NDEV];
    uint64_t one = 1;
    uint32_t deleted;
    devices(ids, r, BODY);
    assert_int_equal(send_shared(f->s, 12, r, NDEV, 1000), CN_OK);
    assert_int_equal(send1(f->s, SENDER, 13, ids[0], "one to one", NULL), CN_OK);
    fx_reopen(f);
    uint64_t failures = auth_failures(f->s);

    /* Read, then tampered: the ack still releases the body and counts
     * the bytes, without opening the value. */
    read_all(f->s, ids[0], 2);
    tamper(f->s, ids[0], 1);
    tamper(f->s, ids[0], 2);
    uint64_t both[2] = {1, 2};
    assert_int_equal(ack_seqs(f->s, ids[0], both, 2, &deleted), CN_OK);
    assert_int_equal(deleted, 2);
    assert_int_equal(refs(f->s, 12), NDEV - 1);
    assert_int_equal(queued_bytes(f->s, ids[0]), 0);
    assert_int_equal(auth_failures(f->s), failures);

    /* Read twice, acked twice: one release. */
    read_all(f->s, ids[1], 1);
    read_all(f->s, ids[1], 1);
    assert_int_equal(ack_seqs(f->s, ids[1], &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(ack_seqs(f->s, ids[1], &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 0);
    assert_int_equal(refs(f->s, 12), NDEV - 2);

    /* Replaced by a value of another size after the read: the hint is not
     * used, the value is opened (and fails), so nothing is released. */
    read_all(f->s, ids[2], 1);
    uint8_t key[CN__KEY_MAILBOX];
    char *err = NULL;
    cn__key_mailbox(key, ids[2], 1);
    rocksdb_put_cf(f->s->db, f->s->wo_sync, f->s->cf[CN__CF_MAILBOX], (const char *)key,
                   sizeof(key), "garbage", 7, &err);
    assert_null(err);
    assert_int_equal(ack_seqs(f->s, ids[2], &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(refs(f->s, 12), NDEV - 2);
    assert_true(auth_failures(f->s) > failures);

    /* Not read since the restart: the ack opens the value. */
    failures = auth_failures(f->s);
    tamper(f->s, ids[3], 1);
    assert_int_equal(ack_seqs(f->s, ids[3], &one, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(refs(f->s, 12), NDEV - 2);
    assert_true(auth_failures(f->s) > failures);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stored_once_read_whole, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_last_ack_deletes_body, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_acks_in_one_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused_shapes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retry_and_single_device, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expired_body, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_without_read_back, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_scan, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_uses_read_hints, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
