/*
 * libchatstore: accounts, prekeys, mailboxes, dedupe, reads, meta, sync
 * modes, shutdown and TTL expiry, each checked on what the store returns
 * and what is on disk after a reopen.
 */
#include "tests/unit/store/store_test_util.h"

#include <dirent.h>
#include <sched.h>
#include <stdio.h>

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};

static void test_open_close_reopen(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_rec_user_t u;
    cn_rec_device_t d;
    make_id(id, 1, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "alice", id, 0), CN_OK);
    assert_int_equal(cn_store_meta_put(f->s, "node/id", "abc", 3), CN_OK);
    fx_reopen(f);
    assert_int_equal(cn_store_user_get(f->s, "alice", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);
    assert_memory_equal(u.devices[0], id, CN_DEVICE_ID_LEN);
    assert_true(u.created > 0);
    assert_int_equal(cn_store_device_get(f->s, id, &d), CN_OK);
    assert_string_equal(d.user, "alice");
    assert_string_equal(d.name, "test device");
    assert_int_equal(d.revoked, 0);
    assert_true(d.created > 0);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_meta_get(f->s, "node/id", &b), CN_OK);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "abc", 3);
    cn_buf_dispose(&b);
    /* Absent records. */
    make_id(id, 9, 9);
    assert_int_equal(cn_store_device_get(f->s, id, &d), CN_ENOTFOUND);
    assert_int_equal(cn_store_user_get(f->s, "nobody", &u), CN_ENOTFOUND);
    assert_int_equal(cn_store_user_get(f->s, "Alice", &u), CN_EINVAL);
}

/* How many of this process's threads are named name (their /proc comm). */
static int threads_named(const char *name)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = {0};
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue; /* the thread exited meanwhile */
        if (fgets(comm, sizeof(comm), fp)) {
            comm[strcspn(comm, "\n")] = 0;
            n += strcmp(comm, name) == 0;
        }
        fclose(fp);
    }
    closedir(d);
    return n;
}

/* The writer names its thread for top -H, perf and chatbench's CPU split;
 * a closed store leaves none behind. */
static void test_writer_thread_named(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    make_id(id, 1, 1);
    /* One op done: the writer has run, so it has named itself. */
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "alice", id, 0), CN_OK);
    assert_int_equal(threads_named("cn-store"), 1);
    cn_store_free(f->s);
    f->s = NULL;
    assert_int_equal(threads_named("cn-store"), 0);
    fx_open(f);
    make_id(id, 2, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "bob", id, 0), CN_OK);
    assert_int_equal(threads_named("cn-store"), 1);
}

/* The value of option in column family cf of the newest OPTIONS file
 * RocksDB wrote into dir ("" when absent). */
static void cf_option(const char *dir, const char *cf, const char *option, char *out, size_t n)
{
    char newest[300] = "", line[512], section[128];
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, "OPTIONS-", 8) == 0 && strcmp(e->d_name, newest) > 0)
            snprintf(newest, sizeof(newest), "%s", e->d_name);
    closedir(d);
    assert_true(newest[0] != 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", dir, newest);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    snprintf(section, sizeof(section), "[CFOptions \"%s\"]", cf);
    bool in = false;
    out[0] = 0;
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '[')
            in = strcmp(line, section) == 0;
        const char *v = line + strspn(line, " ");
        size_t k = strlen(option);
        if (in && strncmp(v, option, k) == 0 && v[k] == '=')
            snprintf(out, n, "%s", v + k + 1);
    }
    fclose(fp);
}

/* meta's counters are rewritten by prefix (counter ‖ device): its memtable
 * inserts where the prefix's last insert went (db.c). Families that see
 * range deletes (mailbox, prekeys: revoke) must not use hints with RocksDB
 * before 9.2, and random keys (dedupe) gain nothing. */
static void test_insert_hints_configured(void **state)
{
    fx_t *f = *state;
    char v[128];
    const char *opt = "memtable_insert_with_hint_prefix_extractor";
    cf_option(f->dir, "meta", opt, v, sizeof(v));
    assert_string_equal(v, "rocksdb.FixedPrefix.37");
    cf_option(f->dir, "mailbox", opt, v, sizeof(v));
    assert_string_equal(v, "rocksdb.FixedPrefix.1");
    static const char *const none[] = {"prekeys", "dedupe"};
    for (size_t i = 0; i < 2; i++) {
        cf_option(f->dir, none[i], opt, v, sizeof(v));
        assert_string_equal(v, "nullptr");
    }
    /* The rest of meta's options survived the copy. */
    cf_option(f->dir, "meta", "write_buffer_size", v, sizeof(v));
    assert_string_equal(v, "67108864");
    cf_option(f->dir, "mailbox", "compaction_filter", v, sizeof(v));
    assert_string_equal(v, "cn.mailbox_ttl");
}

static void test_open_bad_path(void **state)
{
    (void)state;
    cn_store_options_t o;
    cn_store_t *s = (cn_store_t *)1;
    cn_store_options_default(&o);
    o.path = "/proc/definitely/not/here";
    assert_int_equal(cn_store_open(&o, &s), CN_EIO);
    assert_null(s);
    o.path = NULL;
    assert_int_equal(cn_store_open(&o, &s), CN_EINVAL);
    cn_store_free(NULL);
}

static void test_register_conflicts(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    cn_rec_user_t u;
    make_id(a, 1, 1);
    make_id(b, 1, 2);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "alice", a, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "alice", b, 0), CN_EEXIST);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "bob", a, 0), CN_EEXIST);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "Bob", b, 0), CN_EINVAL);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "b", b, 0), CN_EINVAL);
    /* Nothing of the refused ops was stored. */
    assert_int_equal(cn_store_user_get(f->s, "bob", &u), CN_ENOTFOUND);
    cn_rec_device_t d;
    assert_int_equal(cn_store_device_get(f->s, b, &d), CN_ENOTFOUND);
    assert_int_equal(cn_store_user_get(f->s, "alice", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);
}

static void test_link_limits(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_rec_user_t u;
    make_id(id, 2, 0);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "carol", id, 0), CN_ENOTFOUND);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "carol", id, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "carol", id, 0), CN_EEXIST);
    for (uint8_t i = 1; i < 3; i++) {
        make_id(id, 2, i);
        assert_int_equal(do_register(f->s, CN_OP_LINK, "carol", id, 3), CN_OK);
    }
    make_id(id, 2, 3);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "carol", id, 3), CN_ELIMIT);
    /* max_devices 0 (and anything above it) means the hard maximum. */
    for (uint8_t i = 3; i < CN_DEVICES_HARD_MAX; i++) {
        make_id(id, 2, i);
        assert_int_equal(do_register(f->s, CN_OP_LINK, "carol", id, 0), CN_OK);
    }
    make_id(id, 2, CN_DEVICES_HARD_MAX);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "carol", id, 1000), CN_ELIMIT);
    assert_int_equal(cn_store_user_get(f->s, "carol", &u), CN_OK);
    assert_int_equal(u.ndevices, CN_DEVICES_HARD_MAX);
    for (uint8_t i = 0; i < CN_DEVICES_HARD_MAX; i++) {
        make_id(id, 2, i);
        assert_memory_equal(u.devices[i], id, CN_DEVICE_ID_LEN);
    }
}

static int upload_n(cn_store_t *s, const uint8_t *id, uint32_t n, uint32_t first, bool sig,
                    uint32_t *remaining)
{
    cn_store_op_t op;
    cn_rec_prekey_t *keys = calloc(n ? n : 1, sizeof(*keys));
    assert_non_null(keys);
    op_upload(&op, id, keys, n, first);
    if (sig) {
        op.u.upload.has_signed = true;
        op.u.upload.signed_prekey.key_id = first + 1000;
        op.u.upload.signed_prekey.has_signature = true;
        memset(op.u.upload.signed_prekey.signature, 0x5a, CN_SIGNATURE_LEN);
    }
    int rc = run_op(s, &op);
    if (remaining)
        *remaining = op.u.upload.remaining;
    free(keys);
    return rc;
}

static int fetch1(cn_store_t *s, const uint8_t *id, cn_store_bundle_t *b)
{
    cn_store_op_t op;
    op_fetch(&op, b, id);
    return run_op(s, &op);
}

static void test_revoke_drops_mailbox_and_prekeys(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN], c[CN_DEVICE_ID_LEN];
    /* Adjacent ids: the revoke's deletes must not touch the neighbours. */
    make_id(a, 3, 1);
    make_id(b, 3, 2);
    make_id(c, 3, 3);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "dave", a, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "dave", b, 0), CN_OK);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "dave", c, 0), CN_OK);
    const uint8_t *ids[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(upload_n(f->s, ids[i], 5, 1, true, NULL), CN_OK);
        for (uint8_t m = 0; m < 3; m++)
            assert_int_equal(send1(f->s, SENDER, (uint8_t)(i * 10 + m), ids[i], "x", NULL), CN_OK);
    }
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_REVOKE;
    memcpy(op.u.revoke.device_id, b, CN_DEVICE_ID_LEN);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);
    make_id(op.u.revoke.device_id, 7, 7);
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);

    fx_reopen(f);
    cn_rec_device_t d;
    cn_rec_user_t u;
    uint32_t count;
    assert_int_equal(cn_store_device_get(f->s, b, &d), CN_OK);
    assert_true(d.revoked > 0);
    assert_int_equal(cn_store_user_get(f->s, "dave", &u), CN_OK);
    assert_int_equal(u.ndevices, 2);
    assert_memory_equal(u.devices[0], a, CN_DEVICE_ID_LEN);
    assert_memory_equal(u.devices[1], c, CN_DEVICE_ID_LEN);
    assert_int_equal(depth(f->s, b), 0);
    assert_int_equal(cn_store_prekey_count(f->s, b, &count), CN_OK);
    assert_int_equal(count, 0);
    cn_store_bundle_t bu;
    assert_int_equal(fetch1(f->s, b, &bu), CN_OK);
    assert_false(bu.has_signed);
    assert_false(bu.has_otpk);
    assert_int_equal(upload_n(f->s, b, 1, 50, false, NULL), CN_ENOTFOUND);
    assert_int_equal(do_register(f->s, CN_OP_LINK, "dave", b, 0), CN_EEXIST);
    for (int i = 0; i < 3; i += 2) {
        assert_int_equal(depth(f->s, ids[i]), 3);
        assert_int_equal(cn_store_prekey_count(f->s, ids[i], &count), CN_OK);
        assert_int_equal(count, 5);
    }
}

static void test_prekeys_fifo(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    uint32_t remaining, count;
    cn_store_bundle_t b;
    make_id(id, 4, 1);
    assert_int_equal(upload_n(f->s, id, 1, 1, false, NULL), CN_ENOTFOUND);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "erin", id, 0), CN_OK);
    assert_int_equal(upload_n(f->s, id, 3, 1, true, &remaining), CN_OK);
    assert_int_equal(remaining, 3);
    assert_int_equal(upload_n(f->s, id, 2, 4, false, &remaining), CN_OK);
    assert_int_equal(remaining, 5);
    fx_reopen(f); /* the upload order survives */
    assert_int_equal(upload_n(f->s, id, 1, 6, false, &remaining), CN_OK);
    assert_int_equal(remaining, 6);
    for (uint32_t k = 1; k <= 6; k++) {
        assert_int_equal(fetch1(f->s, id, &b), CN_OK);
        assert_true(b.has_signed);
        assert_int_equal(b.signed_prekey.key_id, 1001);
        assert_true(b.signed_prekey.has_signature);
        assert_true(b.has_otpk);
        assert_int_equal(b.otpk.key_id, k);
        assert_int_equal(b.otpk.public_key[0], (uint8_t)k);
        assert_int_equal(b.remaining, 6 - k);
    }
    /* Exhausted: the signed prekey only. */
    assert_int_equal(fetch1(f->s, id, &b), CN_OK);
    assert_true(b.has_signed);
    assert_false(b.has_otpk);
    assert_int_equal(b.remaining, 0);
    assert_int_equal(cn_store_prekey_count(f->s, id, &count), CN_OK);
    assert_int_equal(count, 0);
    /* A new signed prekey replaces the old one. */
    assert_int_equal(upload_n(f->s, id, 1, 20, true, NULL), CN_OK);
    assert_int_equal(fetch1(f->s, id, &b), CN_OK);
    assert_int_equal(b.signed_prekey.key_id, 1020);
    assert_int_equal(b.otpk.key_id, 20);
    /* An unknown device gives an empty bundle. */
    make_id(id, 4, 99);
    assert_int_equal(fetch1(f->s, id, &b), CN_OK);
    assert_false(b.has_signed || b.has_otpk);
}

static void test_prekey_limits(void **state)
{
    fx_t *f = *state;
    uint8_t id[CN_DEVICE_ID_LEN];
    uint32_t remaining, count;
    make_id(id, 5, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "frank", id, 0), CN_OK);
    assert_int_equal(upload_n(f->s, id, CN_OTPK_UPLOAD_MAX + 1, 1, false, NULL), CN_ETOOBIG);
    assert_int_equal(upload_n(f->s, id, CN_OTPK_UPLOAD_MAX, 1, false, NULL), CN_OK);
    assert_int_equal(upload_n(f->s, id, CN_OTPK_UPLOAD_MAX, 101, false, &remaining), CN_OK);
    assert_int_equal(remaining, CN_OTPK_STORED_MAX);
    assert_int_equal(upload_n(f->s, id, 1, 500, false, NULL), CN_ELIMIT);
    assert_int_equal(cn_store_prekey_count(f->s, id, &count), CN_OK);
    assert_int_equal(count, CN_OTPK_STORED_MAX);
    /* A signed prekey without its signature is refused. */
    cn_store_op_t op;
    op_upload(&op, id, NULL, 0, 0);
    op.u.upload.has_signed = true;
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
}

static void test_send_seqs_contiguous_and_persistent(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    make_id(a, 6, 1);
    make_id(b, 6, 2);
    for (uint8_t m = 0; m < 3; m++) {
        cn_store_op_t op;
        cn_store_recipient_t r[2];
        recipient(&r[0], a, "to-a");
        recipient(&r[1], b, "to-b");
        op_send(&op, SENDER, m, r, 2, 5000 + m);
        assert_int_equal(run_op(f->s, &op), CN_OK);
        assert_false(op.u.send.duplicate);
        assert_int_equal(r[0].seq, m + 1);
        assert_int_equal(r[1].seq, m + 1);
    }
    uint64_t seq;
    assert_int_equal(send1(f->s, SENDER, 10, a, "more", &seq), CN_OK);
    assert_int_equal(seq, 4);
    fx_reopen(f);
    assert_int_equal(send1(f->s, SENDER, 11, a, "after", &seq), CN_OK);
    assert_int_equal(seq, 5);
    assert_int_equal(send1(f->s, SENDER, 12, b, "after", &seq), CN_OK);
    assert_int_equal(seq, 4);

    collect_t c;
    uint64_t next;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 0, 100, 1 << 20, collect_cb, &c, &next), 5);
    assert_int_equal(next, 6);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(c.seqs[i], i + 1);
    assert_string_equal(c.ct[0], "to-a");
    assert_int_equal(c.server_time[2], 5002);
    assert_string_equal(c.ct[4], "after");
    /* Invalid sends store nothing. */
    cn_store_op_t op;
    op_send(&op, SENDER, 20, NULL, 0, 1);
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    cn_store_recipient_t r;
    recipient(&r, a, "x");
    op_send(&op, SENDER, 21, &r, 1, 1);
    op.u.send.env.kind = 77;
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    assert_int_equal(depth(f->s, a), 5);
}

static void test_dedupe_first_result(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    cn_store_op_t op;
    cn_store_recipient_t r;
    make_id(a, 7, 1);
    recipient(&r, a, "once");
    op_send(&op, SENDER, 0x42, &r, 1, 111);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.send.duplicate);
    fx_reopen(f);
    op_send(&op, SENDER, 0x42, &r, 1, 222);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_true(op.u.send.duplicate);
    assert_int_equal(op.u.send.env.server_time, 111);
    assert_int_equal(depth(f->s, a), 1);
    /* Another sender device with the same message id is not a duplicate. */
    uint8_t other[CN_DEVICE_ID_LEN];
    make_id(other, 7, 9);
    op_send(&op, other, 0x42, &r, 1, 333);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.send.duplicate);
    assert_int_equal(r.seq, 2);
    assert_int_equal(depth(f->s, a), 2);
}

static int ack(cn_store_t *s, const uint8_t *id, const uint64_t *seqs, uint32_t n,
               uint32_t *deleted)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_ACK;
    memcpy(op.u.ack.device_id, id, CN_DEVICE_ID_LEN);
    op.u.ack.n = n;
    op.u.ack.seqs = seqs;
    int rc = run_op(s, &op);
    *deleted = op.u.ack.deleted;
    return rc;
}

static void test_ack_deletes(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    uint32_t deleted;
    make_id(a, 8, 1);
    for (uint8_t m = 0; m < 3; m++)
        assert_int_equal(send1(f->s, SENDER, m, a, "m", NULL), CN_OK);
    uint64_t seqs[] = {1, 3, 99, 3};
    assert_int_equal(ack(f->s, a, seqs, 4, &deleted), CN_OK);
    assert_int_equal(deleted, 2);
    assert_int_equal(ack(f->s, a, seqs, 1, &deleted), CN_OK);
    assert_int_equal(deleted, 0);
    fx_reopen(f);
    collect_t c;
    uint64_t next;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 1, 10, 1 << 20, collect_cb, &c, &next), 1);
    assert_int_equal(c.seqs[0], 2);
    assert_int_equal(next, 3);
    assert_int_equal(ack(f->s, a, NULL, CN_ACK_SEQS_MAX + 1, &deleted), CN_ETOOBIG);
}

static int count_cb(void *ctx, uint64_t seq, const uint8_t *value, size_t len)
{
    (void)seq, (void)value, (void)len;
    (*(size_t *)ctx)++;
    return 0;
}

/* A mailbox read from table files leaves the block cache as it was: the
 * blocks of a queue read once and then acked would only push the hot
 * families' blocks out (store/iter.c). */
static void test_mailbox_read_skips_block_cache(void **state)
{
    fx_t *f = *state;
    uint8_t from[CN_DEVICE_ID_LEN], to[CN_DEVICE_ID_LEN];
    static char ct[8001];
    make_id(from, 0x52, 1);
    make_id(to, 0x51, 1);
    memset(ct, 'c', sizeof(ct) - 1);
    for (int i = 0; i < 250; i++) /* 2 MB, message ids 0..249 */
        assert_int_equal(send_ex(f->s, from, (uint8_t)i, to, ct, cn_now_ms(), 0, false, NULL),
                         CN_OK); /* now: the compaction's TTL filter keeps them */
    assert_int_equal(cn__store_compact(f->s, CN__CF_MAILBOX), CN_OK);
    size_t before = rocksdb_cache_get_usage(f->s->block_cache), n = 0;
    uint64_t next = 0;
    for (int slice = 0; slice < 100 && n < 250; slice++)
        assert_true(cn_store_mailbox_read(f->s, to, next, 64, 1 << 20, count_cb, &n, &next) > 0);
    assert_int_equal(n, 250);
    size_t after = rocksdb_cache_get_usage(f->s->block_cache);
    assert_true(after < before + 256 * 1024);
}

static void test_mailbox_read_limits(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    make_id(a, 9, 1);
    make_id(b, 9, 2);
    char ct[16];
    for (uint8_t m = 1; m <= 10; m++) {
        snprintf(ct, sizeof(ct), "msg%u", m);
        assert_int_equal(send1(f->s, SENDER, m, a, ct, NULL), CN_OK);
    }
    assert_int_equal(send1(f->s, SENDER, 100, b, "other", NULL), CN_OK);
    collect_t c;
    uint64_t next;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 4, 3, 1 << 20, collect_cb, &c, &next), 3);
    assert_int_equal(c.seqs[0], 4);
    assert_int_equal(c.seqs[2], 6);
    assert_string_equal(c.ct[0], "msg4");
    assert_int_equal(next, 7);
    /* A byte limit below one entry still passes the first. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 1, 10, 1, collect_cb, &c, &next), 1);
    assert_int_equal(next, 2);
    /* The callback stops the read. */
    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(cn_store_mailbox_read(f->s, a, 1, 10, 1 << 20, collect_cb, &c, &next), 2);
    assert_int_equal(next, 3);
    /* Past the end, and another device's entries never leak in. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 11, 10, 1 << 20, collect_cb, &c, &next), 0);
    assert_int_equal(next, 11);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 0, 100, 1 << 20, collect_cb, &c, &next), 10);
    assert_string_equal(c.ct[9], "msg10");
    uint64_t d;
    assert_int_equal(cn_store_mailbox_depth(f->s, a, 4, &d), CN_OK);
    assert_int_equal(d, 4);
    assert_int_equal(depth(f->s, a), 10);
    assert_int_equal(depth(f->s, b), 1);
}

static void test_meta(void **state)
{
    fx_t *f = *state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_meta_get(f->s, "shardmap", &b), CN_ENOTFOUND);
    assert_int_equal(cn_store_meta_put(f->s, "shardmap", "v1", 2), CN_OK);
    assert_int_equal(cn_store_meta_put(f->s, "shardmap", "v22", 3), CN_OK);
    assert_int_equal(cn_store_meta_put(f->s, "empty", NULL, 0), CN_OK);
    assert_int_equal(cn_buf_append(&b, "pre", 3), CN_OK);
    assert_int_equal(cn_store_meta_get(f->s, "shardmap", &b), CN_OK);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "prev22", 6);
    cn_buf_reset(&b);
    assert_int_equal(cn_store_meta_get(f->s, "empty", &b), CN_OK);
    assert_int_equal(b.len, 0);
    /* The writer's counters are not reachable through meta_put/get. */
    assert_int_equal(cn_store_meta_put(f->s, "mseq/x", "1", 1), CN_EINVAL);
    assert_int_equal(cn_store_meta_get(f->s, "oseq/x", &b), CN_EINVAL);
    assert_int_equal(cn_store_meta_put(f->s, "", "1", 1), CN_EINVAL);
    cn_buf_dispose(&b);
}

static void test_sync_modes(void **state)
{
    fx_t *f = *state;
    enum cn_sync modes[] = {CN_SYNC_ALWAYS, CN_SYNC_BATCH, CN_SYNC_NONE};
    for (size_t i = 0; i < CN_ARRAY_LEN(modes); i++) {
        enum cn_sync parsed;
        assert_int_equal(cn_sync_parse(cn_sync_name(modes[i]), &parsed), CN_OK);
        assert_int_equal(parsed, modes[i]);
        f->opts.sync = modes[i];
        fx_reopen(f);
        uint8_t a[CN_DEVICE_ID_LEN];
        uint64_t seq;
        make_id(a, 10, (uint8_t)i);
        assert_int_equal(send1(f->s, SENDER, (uint8_t)(50 + i), a, "durable", &seq), CN_OK);
        assert_int_equal(seq, 1);
        cn_store_stats_t st;
        /* An op leaves queue_depth just after its callback returned. */
        for (int spin = 0; spin < 5000; spin++) {
            cn_store_stats_get(f->s, &st);
            if (st.queue_depth == 0)
                break;
            sched_yield();
        }
        assert_int_equal(st.batches, 1);
        assert_int_equal(st.ops, 1);
        assert_int_equal(st.write_errors, 0);
        assert_int_equal(st.queue_depth, 0);
        fx_reopen(f);
        assert_int_equal(depth(f->s, a), 1);
    }
    enum cn_sync parsed;
    assert_int_equal(cn_sync_parse("sometimes", &parsed), CN_EINVAL);
}

/* ------------------------------------------------------ shutdown order */

typedef struct freeer {
    cn_store_t *s;
} freeer_t;

static void *free_thread(void *arg)
{
    cn_store_free(((freeer_t *)arg)->s);
    return NULL;
}

static void test_submit_after_free_refused(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    gate_t g;
    waiter_t w;
    cn_store_op_t queued, late;
    cn_store_recipient_t r;
    make_id(a, 11, 1);
    waiter_init(&w);
    gate_hold(f->s, &g);
    recipient(&r, a, "queued before free");
    op_send(&queued, SENDER, 1, &r, 1, 9);
    submit_with(f->s, &queued, &w);

    pthread_t t;
    freeer_t fr = {f->s};
    assert_int_equal(pthread_create(&t, NULL, free_thread, &fr), 0);
    for (;;) { /* wait until free has begun */
        pthread_mutex_lock(&f->s->mu);
        bool closing = f->s->closing;
        pthread_mutex_unlock(&f->s->mu);
        if (closing)
            break;
        sched_yield();
    }
    memset(&late, 0, sizeof(late));
    late.type = CN_OP_ACK;
    assert_int_equal(cn_store_submit(f->s, &late), CN_ECLOSED);
    gate_release(&g);
    assert_int_equal(pthread_join(t, NULL), 0);
    waiter_wait(&w);
    assert_int_equal(queued.result, CN_OK);
    assert_int_equal(r.seq, 1);
    gate_dispose(&g);
    waiter_dispose(&w);
    fx_open(f); /* the op queued before free was written */
    assert_int_equal(depth(f->s, a), 1);
}

/* ----------------------------------------------------------------- TTL */

static void test_ttl_compaction_drops_old(void **state)
{
    fx_t *f = *state;
    uint8_t a[CN_DEVICE_ID_LEN];
    uint64_t now = cn_now_ms();
    uint64_t old = now - 31ull * 24 * 3600 * 1000; /* past the 30-day default */
    cn_store_op_t op;
    cn_store_recipient_t r;
    make_id(a, 12, 1);
    recipient(&r, a, "old");
    op_send(&op, SENDER, 1, &r, 1, old);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    recipient(&r, a, "new");
    op_send(&op, SENDER, 2, &r, 1, now);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(depth(f->s, a), 2);

    assert_int_equal(cn__store_compact(f->s, CN__CF_MAILBOX), CN_OK);
    assert_int_equal(cn__store_compact(f->s, CN__CF_DEDUPE), CN_OK);
    collect_t c;
    uint64_t next;
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, a, 0, 10, 1 << 20, collect_cb, &c, &next), 1);
    assert_string_equal(c.ct[0], "new");
    assert_int_equal(c.seqs[0], 2);
    fx_reopen(f);
    assert_int_equal(depth(f->s, a), 1);
    /* The old dedupe record expired too: the same id is new again... */
    recipient(&r, a, "old again");
    op_send(&op, SENDER, 1, &r, 1, now);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.send.duplicate);
    assert_int_equal(r.seq, 3);
    /* ...while the fresh one is still remembered. */
    op_send(&op, SENDER, 2, &r, 1, now + 5);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_true(op.u.send.duplicate);
    assert_int_equal(op.u.send.env.server_time, now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_close_reopen, fx_setup, fx_teardown),
        cmocka_unit_test(test_open_bad_path),
        cmocka_unit_test_setup_teardown(test_insert_hints_configured, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writer_thread_named, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_register_conflicts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_link_limits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_drops_mailbox_and_prekeys, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_prekeys_fifo, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prekey_limits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_send_seqs_contiguous_and_persistent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_first_result, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ack_deletes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_read_limits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_read_skips_block_cache, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_meta, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sync_modes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_submit_after_free_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_compaction_drops_old, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
