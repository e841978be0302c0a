/*
 * Encryption at rest in the store (store/seal.c, store/keys.c): no
 * plaintext of a user record reaches the disk (tables, WAL, blob files),
 * the master key must open the ring, a tampered or moved value fails with
 * CN_EAUTH and is counted, the TTL filters still drop sealed records, and
 * a database from before encryption is read and converted.
 */
#include "tests/unit/store/store_test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint8_t SENDER[CN_DEVICE_ID_LEN] = {0xee};
static const char MARK_MAIL[] = "MARKER-mailbox-0123456789";
static const char MARK_DEV[] = "MARKER-device-name";
static const char MARK_HIST[] = "MARKER-history-entry";
static const char MARK_MEDIA[] = "MARKER-media-chunk-bytes";

/** True when any regular file under dir contains needle. */
static bool dir_contains(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    size_t nlen = strlen(needle);
    assert_non_null(d);
    while (!found && (e = readdir(d)) != NULL) {
        char path[512];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
            continue;
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        char *buf = malloc((size_t)st.st_size);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (size_t)st.st_size, fp);
        fclose(fp);
        for (size_t i = 0; !found && i + nlen <= n; i++)
            found = memcmp(buf + i, needle, nlen) == 0;
        free(buf);
    }
    closedir(d);
    return found;
}

static int meta_cb(void *ctx, const char *name, const uint8_t *value, size_t len)
{
    (void)ctx, (void)name, (void)value, (void)len;
    return 0;
}

static int device_cb(void *ctx, const uint8_t *id, const cn_rec_device_t *dev)
{
    (void)ctx, (void)id, (void)dev;
    return 0;
}

/** Writes one record of each kind that holds user data, with markers. */
static void write_user_data(cn_store_t *s, const uint8_t *dev)
{
    cn_store_op_t op;
    op_register(&op, CN_OP_REGISTER, "ann", dev);
    strcpy(op.u.reg.device.name, MARK_DEV);
    assert_int_equal(run_op(s, &op), CN_OK);
    /* Recent: the TTL filter keeps it through the flush below. */
    assert_int_equal(send_ex(s, SENDER, 1, dev, MARK_MAIL, cn_now_ms(), 0, false, NULL), CN_OK);
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_HISTORY_APPEND;
    strcpy(op.u.history_append.handle, "ann");
    op.u.history_append.time = 5;
    op.u.history_append.sealed = cn_slice(MARK_HIST, strlen(MARK_HIST));
    assert_int_equal(run_op(s, &op), CN_OK);
    uint8_t mid[CN_MEDIA_ID_LEN] = {7};
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_MEDIA_BEGIN;
    memcpy(op.u.media_begin.media_id, mid, sizeof(mid));
    strcpy(op.u.media_begin.owner, "ann");
    op.u.media_begin.size = strlen(MARK_MEDIA);
    assert_int_equal(run_op(s, &op), CN_OK);
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_MEDIA_CHUNK;
    memcpy(op.u.media_chunk.media_id, mid, sizeof(mid));
    strcpy(op.u.media_chunk.owner, "ann");
    op.u.media_chunk.data = cn_slice(MARK_MEDIA, strlen(MARK_MEDIA));
    assert_int_equal(run_op(s, &op), CN_OK);
}

static bool any_marker(const char *dir)
{
    return dir_contains(dir, MARK_MAIL) || dir_contains(dir, MARK_DEV) ||
           dir_contains(dir, MARK_HIST) || dir_contains(dir, MARK_MEDIA);
}

/* The WAL right after the writes, then the tables after a flush. The same
 * writes with encrypt off do leave the markers: the scan can see them. */
static void test_no_plaintext_on_disk(void **state)
{
    fx_t *f = *state;
    uint8_t dev[CN_DEVICE_ID_LEN];
    make_id(dev, 1, 1);
    write_user_data(f->s, dev);
    assert_false(any_marker(f->dir));
    for (int cf = CN__CF_DEVICES; cf < CN__CF_COUNT; cf++)
        assert_int_equal(cn__store_compact(f->s, cf), CN_OK);
    assert_false(any_marker(f->dir));
    /* Still readable through the store. */
    collect_t c = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(f->s, dev, 1, 10, 1 << 20, collect_cb, &c, &next), 1);
    assert_string_equal(c.ct[0], MARK_MAIL);
    cn_rec_device_t d;
    assert_int_equal(cn_store_device_get(f->s, dev, &d), CN_OK);
    assert_string_equal(d.name, MARK_DEV);

    /* Control: a plaintext store shows them. */
    char dir[64];
    cn_store_options_t o = f->opts;
    cn_store_t *p = NULL;
    strcpy(dir, "/tmp/cn_store_plain_XXXXXX");
    assert_non_null(mkdtemp(dir));
    o.path = dir;
    o.encrypt = false;
    assert_int_equal(cn_store_open(&o, &p), CN_OK);
    write_user_data(p, dev);
    assert_true(dir_contains(dir, MARK_MAIL) && dir_contains(dir, MARK_DEV));
    cn_store_keys_stats_t ks;
    assert_int_equal(cn_store_keys_stats(p, &ks), CN_OK);
    assert_false(ks.encrypted);
    memset(&o, 0, sizeof(o));
    cn_store_op_t op = {.type = CN_OP_KEYS_ROTATE};
    assert_int_equal(run_op(p, &op), CN_EINVAL);
    cn_store_free(p);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_master_key_refusals(void **state)
{
    fx_t *f = *state;
    char key[128], other[128];
    uint8_t dev[CN_DEVICE_ID_LEN];
    make_id(dev, 2, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "bob", dev, 0), CN_OK);
    cn_store_free(f->s);
    f->s = NULL;
    snprintf(key, sizeof(key), "%s/master.key", f->dir);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A wrong key in the environment wins over the right file: refused. */
    setenv(CN_STORE_MASTER_KEY_ENV,
           "11111111111111111111111111111111"
           "11111111111111111111111111111111",
           1);
    assert_int_equal(cn_store_open(&f->opts, &f->s), CN_EAUTH);
    assert_null(f->s);
    setenv(CN_STORE_MASTER_KEY_ENV, "not hex", 1);
    assert_int_equal(cn_store_open(&f->opts, &f->s), CN_EINVAL);
    unsetenv(CN_STORE_MASTER_KEY_ENV);

    /* Another key file: refused. */
    snprintf(other, sizeof(other), "%s/other.key", f->dir);
    cn_store_options_t o = f->opts;
    o.master_key_file = other;
    assert_int_equal(cn_store_open(&o, &f->s), CN_ENOTFOUND); /* never created for a ring */
    assert_int_not_equal(access(other, F_OK), 0);
    FILE *fp = fopen(other, "wb");
    assert_non_null(fp);
    fwrite("0123456789abcdef0123456789abcdef", 1, 32, fp);
    fclose(fp);
    assert_int_equal(cn_store_open(&o, &f->s), CN_EAUTH);
    /* encrypt off on an encrypted database: refused. */
    o = f->opts;
    o.encrypt = false;
    assert_int_equal(cn_store_open(&o, &f->s), CN_EINVAL);

    /* The right key from the environment (hex of the file) opens it. */
    uint8_t raw[32];
    char hex[65];
    fp = fopen(key, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(raw, 1, 32, fp), 32);
    fclose(fp);
    cn_hex_encode(hex, raw, 32);
    setenv(CN_STORE_MASTER_KEY_ENV, hex, 1);
    o = f->opts;
    o.master_key_file = other; /* ignored: the environment wins */
    assert_int_equal(cn_store_open(&o, &f->s), CN_OK);
    unsetenv(CN_STORE_MASTER_KEY_ENV);
    cn_rec_user_t u;
    assert_int_equal(cn_store_user_get(f->s, "bob", &u), CN_OK);
}

static void test_keyring_name_reserved(void **state)
{
    fx_t *f = *state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_meta_get(f->s, "keyring", &b), CN_EINVAL);
    assert_int_equal(cn_store_meta_put(f->s, "keyring", "x", 1), CN_EINVAL);
    assert_int_equal(cn_store_meta_scan(f->s, "keyring", meta_cb, NULL), CN_EINVAL);
    assert_int_equal(cn_store_meta_scan(f->s, "", meta_cb, NULL), 0); /* not listed */
    cn_buf_dispose(&b);
    /* Nor can a registration consume or claim it. */
    uint8_t dev[CN_DEVICE_ID_LEN];
    cn_store_op_t op;
    make_id(dev, 9, 1);
    op_register(&op, CN_OP_REGISTER, "eve", dev);
    strcpy(op.u.reg.consume_meta, "keyring");
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    op_register(&op, CN_OP_REGISTER, "eve", dev);
    strcpy(op.u.reg.claim_meta, "keyring");
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    size_t vlen;
    char *v = raw_get(f->s, CN__CF_META, "keyring", 7, &vlen);
    assert_non_null(v); /* it is there, sealed */
    assert_memory_equal(v, "CNKR", 4);
    rocksdb_free(v);
}

/* Flipped bytes, a value moved to another key or CF, and a plaintext
 * value in an encrypted database: each read is CN_EAUTH, and counted. */
static void test_tampered_values(void **state)
{
    fx_t *f = *state;
    uint8_t dev[CN_DEVICE_ID_LEN], key[CN__KEY_MAILBOX], key2[CN__KEY_MAILBOX];
    size_t vlen;
    cn_rec_device_t d;
    cn_store_keys_stats_t ks;
    make_id(dev, 3, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "cyd", dev, 0), CN_OK);
    assert_int_equal(send1(f->s, SENDER, 1, dev, "one", NULL), CN_OK);
    assert_int_equal(send1(f->s, SENDER, 2, dev, "two", NULL), CN_OK);

    char *v = raw_get(f->s, CN__CF_DEVICES, dev, CN_DEVICE_ID_LEN, &vlen);
    assert_non_null(v);
    assert_int_equal((uint8_t)v[0], CN_ATREST_MAGIC);
    v[vlen - 20] ^= 0x01;
    raw_put(f->s, CN__CF_DEVICES, dev, CN_DEVICE_ID_LEN, v, vlen);
    rocksdb_free(v);
    assert_int_equal(cn_store_device_get(f->s, dev, &d), CN_EAUTH);
    assert_int_equal(cn_store_device_list(f->s, NULL, 10, device_cb, NULL), CN_EAUTH);
    assert_int_equal(cn_store_keys_stats(f->s, &ks), CN_OK);
    assert_true(ks.auth_failures >= 2);

    /* Entry 1's sealed bytes under entry 2's key: refused, not swapped. */
    cn__key_mailbox(key, dev, 1);
    cn__key_mailbox(key2, dev, 2);
    v = raw_get(f->s, CN__CF_MAILBOX, key, sizeof(key), &vlen);
    raw_put(f->s, CN__CF_MAILBOX, key2, sizeof(key2), v, vlen);
    /* ... and into another column family. */
    raw_put(f->s, CN__CF_DEDUPE, key, sizeof(key), v, vlen);
    rocksdb_free(v);
    collect_t c = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(f->s, dev, 1, 10, 1 << 20, collect_cb, &c, &next),
                     CN_EAUTH);
    assert_int_equal(c.n, 1); /* entry 1 was passed; entry 2 stopped the read */
    assert_string_equal(c.ct[0], "one");

    /* A plaintext value where none may be. */
    uint8_t dev2[CN_DEVICE_ID_LEN];
    make_id(dev2, 3, 2);
    raw_put(f->s, CN__CF_DEVICES, dev2, CN_DEVICE_ID_LEN, "\xa1\x01\x02", 3);
    assert_int_equal(cn_store_device_get(f->s, dev2, &d), CN_EAUTH);
    /* Through the writer too: a LINK reading the tampered device fails. */
    assert_int_equal(do_register(f->s, CN_OP_LINK, "cyd", dev2, 0), CN_EAUTH);
    uint64_t before = ks.auth_failures;
    assert_int_equal(cn_store_keys_stats(f->s, &ks), CN_OK);
    assert_true(ks.auth_failures > before);
}

/* Sealed mailbox records carry server_time in the clear header, and
 * dedupe records are plain (store/seal.c): the TTL filters drop the old
 * ones without a key. */
static void test_ttl_filters_on_sealed(void **state)
{
    fx_t *f = *state;
    uint8_t dev[CN_DEVICE_ID_LEN], old_key[CN__KEY_MAILBOX], new_key[CN__KEY_MAILBOX];
    uint8_t old_d[CN__KEY_DEDUPE], new_d[CN__KEY_DEDUPE], msg[CN_MESSAGE_ID_LEN];
    size_t vlen;
    uint64_t now = cn_now_ms(), s1, s2;
    f->opts.mailbox_ttl_ms = 60000;
    f->opts.dedupe_ttl_ms = 60000;
    fx_reopen(f);
    make_id(dev, 4, 1);
    assert_int_equal(send_ex(f->s, SENDER, 1, dev, "old", now - 3600000, 0, false, &s1), CN_OK);
    assert_int_equal(send_ex(f->s, SENDER, 2, dev, "new", now, 0, false, &s2), CN_OK);
    cn__key_mailbox(old_key, dev, s1);
    cn__key_mailbox(new_key, dev, s2);
    memset(msg, 1, sizeof(msg));
    cn__key_dedupe(old_d, SENDER, msg);
    memset(msg, 2, sizeof(msg));
    cn__key_dedupe(new_d, SENDER, msg);
    char *v = raw_get(f->s, CN__CF_MAILBOX, old_key, sizeof(old_key), &vlen);
    assert_non_null(v);
    assert_int_equal((uint8_t)v[0], CN_ATREST_MAGIC);
    rocksdb_free(v);
    assert_int_equal(cn__store_compact(f->s, CN__CF_MAILBOX), CN_OK);
    assert_int_equal(cn__store_compact(f->s, CN__CF_DEDUPE), CN_OK);
    assert_null(raw_get(f->s, CN__CF_MAILBOX, old_key, sizeof(old_key), &vlen));
    assert_null(raw_get(f->s, CN__CF_DEDUPE, old_d, sizeof(old_d), &vlen));
    v = raw_get(f->s, CN__CF_MAILBOX, new_key, sizeof(new_key), &vlen);
    assert_non_null(v);
    rocksdb_free(v);
    v = raw_get(f->s, CN__CF_DEDUPE, new_d, sizeof(new_d), &vlen);
    assert_non_null(v);
    assert_int_not_equal((uint8_t)v[0], CN_ATREST_MAGIC);
    rocksdb_free(v);
    assert_int_equal(depth(f->s, dev), 1);
}

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

/* A database written before encryption: read as key 0, converted by the
 * pass, and from then on a plaintext value is refused. */
static void test_legacy_plaintext(void **state)
{
    fx_t *f = *state;
    uint8_t dev[CN_DEVICE_ID_LEN], key[CN__KEY_MAILBOX];
    size_t vlen;
    cn_store_keys_stats_t ks;
    cn_store_free(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    f->opts.encrypt = false;
    fx_open(f);
    make_id(dev, 5, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, "dina", dev, 0), CN_OK);
    for (uint8_t i = 1; i <= 40; i++)
        assert_int_equal(send1(f->s, SENDER, i, dev, "legacy", NULL), CN_OK);
    cn__key_mailbox(key, dev, 1);
    char *v = raw_get(f->s, CN__CF_MAILBOX, key, sizeof(key), &vlen);
    assert_int_not_equal((uint8_t)v[0], CN_ATREST_MAGIC);
    rocksdb_free(v);

    f->opts.encrypt = true;
    fx_reopen(f);
    /* Readable at once, converted in the background. */
    assert_int_equal(depth(f->s, dev), 40);
    collect_t c = {0};
    uint64_t next;
    assert_int_equal(cn_store_mailbox_read(f->s, dev, 1, 5, 1 << 20, collect_cb, &c, &next), 5);
    assert_string_equal(c.ct[4], "legacy");
    wait_pass(f->s, 1, &ks);
    assert_true(ks.counted);
    /* device, user, 40 mailbox entries; the 40 dedupe records stay plain */
    assert_int_equal(ks.resealed, 42);
    assert_null(key_info(&ks, 0)); /* no plaintext left: legacy mode ends */
    assert_int_equal(key_info(&ks, 1)->records, 42);
    v = raw_get(f->s, CN__CF_MAILBOX, key, sizeof(key), &vlen);
    assert_int_equal((uint8_t)v[0], CN_ATREST_MAGIC);
    rocksdb_free(v);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cn_store_mailbox_read(f->s, dev, 1, 64, 1 << 20, collect_cb, &c, &next), 40);
    assert_string_equal(c.ct[39], "legacy");

    /* After a restart too, a plaintext value is now tampering. */
    fx_reopen(f);
    assert_int_equal(cn_store_keys_stats(f->s, &ks), CN_OK);
    assert_null(key_info(&ks, 0));
    raw_put(f->s, CN__CF_MAILBOX, key, sizeof(key), "\x82plain", 6);
    assert_int_equal(cn_store_mailbox_read(f->s, dev, 1, 64, 1 << 20, collect_cb, &c, &next),
                     CN_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_plaintext_on_disk, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_master_key_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keyring_name_reserved, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_values, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_filters_on_sealed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_legacy_plaintext, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
