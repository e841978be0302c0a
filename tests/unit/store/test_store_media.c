/*
 * Media uploads: CN_OP_MEDIA_BEGIN / CHUNK / END, cn_store_media_info and
 * cn_store_media_read. A resumable upload across a reopen, the digest
 * check, ranged reads across chunk boundaries, every refusal, the per-owner
 * quota and its recount after expiry, the TTL filter, and ops of one batch
 * seeing each other.
 */
#include "tests/unit/store/store_test_util.h"

#include <sodium.h>
#include <time.h>

#define SIZE (CN_MEDIA_CHUNK_MAX * 2 + 1000) /* three chunks, the last one short */

static const uint8_t MID[CN_MEDIA_ID_LEN] = {0x6d, 1};

static uint8_t *blob(void)
{
    uint8_t *p = malloc(SIZE);
    assert_non_null(p);
    for (size_t i = 0; i < SIZE; i++)
        p[i] = (uint8_t)(i * 31 + i / 7);
    return p;
}

static void user(fx_t *f, const char *handle, uint8_t seed)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    make_id(id, seed, 1);
    assert_int_equal(do_register(f->s, CN_OP_REGISTER, handle, id, 0), CN_OK);
}

static void op_begin(cn_store_op_t *op, const uint8_t *mid, const char *owner, uint64_t size)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_MEDIA_BEGIN;
    memcpy(op->u.media_begin.media_id, mid, CN_MEDIA_ID_LEN);
    strcpy(op->u.media_begin.owner, owner);
    strcpy(op->u.media_begin.content_type, "application/octet-stream");
    op->u.media_begin.size = size;
    op->u.media_begin.ttl_ms = 3600 * 1000;
}

static void op_chunk(cn_store_op_t *op, const uint8_t *mid, const char *owner, uint64_t offset,
                     const uint8_t *p, size_t n)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_MEDIA_CHUNK;
    memcpy(op->u.media_chunk.media_id, mid, CN_MEDIA_ID_LEN);
    strcpy(op->u.media_chunk.owner, owner);
    op->u.media_chunk.offset = offset;
    op->u.media_chunk.data = cn_slice(p, n);
}

static void op_end(cn_store_op_t *op, const uint8_t *mid, const char *owner, const uint8_t *p,
                   size_t n)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_MEDIA_END;
    memcpy(op->u.media_end.media_id, mid, CN_MEDIA_ID_LEN);
    strcpy(op->u.media_end.owner, owner);
    assert_int_equal(crypto_hash_sha256(op->u.media_end.sha256, p, n), 0);
}

static int chunk(fx_t *f, const char *owner, uint64_t offset, const uint8_t *p, size_t n,
                 uint64_t *stored)
{
    cn_store_op_t op;
    op_chunk(&op, MID, owner, offset, p, n);
    int rc = run_op(f->s, &op);
    *stored = op.u.media_chunk.stored;
    return rc;
}

/** Reads [off, off + len) and compares it with the source. */
static void expect_read(fx_t *f, const uint8_t *src, uint64_t off, uint32_t len, int want)
{
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_buf_append(&b, "x", 1), CN_OK); /* reads append */
    assert_int_equal(cn_store_media_read(f->s, MID, off, len, &b), want);
    assert_int_equal(b.len, want > 0 ? 1 + (size_t)want : 1); /* errors append nothing */
    if (want > 0)
        assert_memory_equal(b.data + 1, src + off, (size_t)want);
    cn_buf_dispose(&b);
}

static void test_upload_resume_read(void **state)
{
    fx_t *f = *state;
    uint8_t *src = blob();
    uint64_t stored;
    cn_store_op_t op;
    cn_rec_media_t info;
    cn_buf_t b;
    user(f, "amy", 1);
    op_begin(&op, MID, "amy", SIZE);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_false(op.u.media_begin.resumed);
    assert_int_equal(chunk(f, "amy", 0, src, CN_MEDIA_CHUNK_MAX, &stored), CN_OK);
    assert_int_equal(stored, CN_MEDIA_CHUNK_MAX);
    cn_buf_init(&b);
    assert_int_equal(cn_store_media_read(f->s, MID, 0, 10, &b), CN_EAGAIN); /* incomplete */
    cn_buf_dispose(&b);

    fx_reopen(f); /* interrupted: the client begins again and resumes */
    op_begin(&op, MID, "amy", SIZE);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_true(op.u.media_begin.resumed);
    assert_false(op.u.media_begin.complete);
    assert_int_equal(op.u.media_begin.stored, CN_MEDIA_CHUNK_MAX);
    assert_int_equal(chunk(f, "amy", 0, src, 10, &stored), CN_ECONFLICT); /* a stale offset */
    assert_int_equal(stored, CN_MEDIA_CHUNK_MAX);
    assert_int_equal(chunk(f, "amy", stored, src + stored, CN_MEDIA_CHUNK_MAX, &stored), CN_OK);
    assert_int_equal(chunk(f, "amy", stored, src + stored, SIZE - stored, &stored), CN_OK);
    assert_int_equal(stored, SIZE);
    op_end(&op, MID, "amy", src, SIZE);
    assert_int_equal(run_op(f->s, &op), CN_OK);

    assert_int_equal(cn_store_media_info(f->s, MID, &info), CN_OK);
    assert_true(info.complete);
    assert_int_equal(info.size, SIZE);
    assert_memory_equal(info.sha256, op.u.media_end.sha256, CN_MEDIA_SHA256_LEN);
    assert_string_equal(info.content_type, "application/octet-stream");
    expect_read(f, src, 0, 100, 100);
    expect_read(f, src, CN_MEDIA_CHUNK_MAX - 50, 100, 100); /* across a boundary */
    expect_read(f, src, 10, CN_MEDIA_READ_MAX, SIZE - 10);  /* all three, clamped */
    expect_read(f, src, SIZE - 5, 100, 5);
    expect_read(f, src, SIZE, 100, 0);
    expect_read(f, src, SIZE + 1, 1, CN_EINVAL);
    expect_read(f, src, 0, CN_MEDIA_READ_MAX + 1, CN_ETOOBIG);
    uint8_t other[CN_MEDIA_ID_LEN] = {7};
    assert_int_equal(cn_store_media_info(f->s, other, &info), CN_ENOTFOUND);
    free(src);
}

static void test_begin_refusals(void **state)
{
    fx_t *f = *state;
    cn_store_op_t op;
    user(f, "amy", 2);
    user(f, "ben", 3);
    op_begin(&op, MID, "zed", 10); /* unknown owner */
    assert_int_equal(run_op(f->s, &op), CN_ENOTFOUND);
    op_begin(&op, MID, "Amy", 10);
    assert_int_equal(run_op(f->s, &op), CN_EINVAL);
    op_begin(&op, MID, "amy", 101);
    op.u.media_begin.max_size = 100;
    assert_int_equal(run_op(f->s, &op), CN_ETOOBIG);
    op_begin(&op, MID, "amy", 10);
    memset(op.u.media_begin.content_type, 'a', sizeof(op.u.media_begin.content_type));
    assert_int_equal(run_op(f->s, &op), CN_ETOOBIG);
    op_begin(&op, MID, "amy", 100);
    op.u.media_begin.max_size = 100;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    op_begin(&op, MID, "ben", 100); /* another owner */
    assert_int_equal(run_op(f->s, &op), CN_EEXIST);
    op_begin(&op, MID, "amy", 99); /* another size */
    assert_int_equal(run_op(f->s, &op), CN_EEXIST);
}

static void test_chunk_and_end_refusals(void **state)
{
    fx_t *f = *state;
    uint8_t *src = blob();
    uint64_t stored;
    cn_store_op_t op;
    cn_rec_media_t info;
    user(f, "amy", 4);
    user(f, "ben", 5);
    assert_int_equal(chunk(f, "amy", 0, src, 10, &stored), CN_ENOTFOUND);
    op_begin(&op, MID, "amy", 100);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(chunk(f, "ben", 0, src, 10, &stored), CN_EAUTH);
    assert_int_equal(chunk(f, "amy", 0, src, 0, &stored), CN_EINVAL);
    assert_int_equal(chunk(f, "amy", 0, src, 101, &stored), CN_ETOOBIG);
    assert_int_equal(chunk(f, "amy", 0, src, CN_MEDIA_CHUNK_MAX + 1, &stored), CN_ETOOBIG);
    assert_int_equal(chunk(f, "amy", 0, src, 60, &stored), CN_OK);
    assert_int_equal(chunk(f, "amy", 61, src, 40, &stored), CN_ECONFLICT);
    assert_int_equal(stored, 60);
    op_end(&op, MID, "amy", src, 100);
    assert_int_equal(run_op(f->s, &op), CN_ECONFLICT); /* 40 bytes missing */
    assert_int_equal(op.u.media_end.stored, 60);
    assert_int_equal(chunk(f, "amy", 60, src + 60, 40, &stored), CN_OK);
    op_end(&op, MID, "amy", src, 99); /* the wrong digest */
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    assert_int_equal(cn_store_media_info(f->s, MID, &info), CN_OK);
    assert_false(info.complete); /* it can be ended again */
    op_end(&op, MID, "ben", src, 100);
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    op_end(&op, MID, "amy", src, 100);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(run_op(f->s, &op), CN_OK);                            /* a retry */
    assert_int_equal(chunk(f, "amy", 100, src, 1, &stored), CN_ECONFLICT); /* complete */
    op_end(&op, MID, "amy", src, 99);
    assert_int_equal(run_op(f->s, &op), CN_EAUTH);
    free(src);
}

/** The persisted media-bytes counter of a user (UINT64_MAX: absent). */
static uint64_t mbytes(cn_store_t *s, const char *handle)
{
    uint8_t ukey[CN__USER_KEY_LEN], key[CN__META_CTR_MAX];
    cn__key_user(ukey, handle);
    size_t klen = cn__key_counter_any(key, CN__CTR_MBYTES, ukey), vlen = 0;
    char *err = NULL;
    char *v =
        rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_META], (const char *)key, klen, &vlen, &err);
    assert_null(err);
    if (v == NULL)
        return UINT64_MAX;
    uint64_t q = cn_load_u64be((const uint8_t *)v);
    rocksdb_free(v);
    return q;
}

static int begin_q(fx_t *f, uint8_t idb, uint64_t size, uint64_t ttl_ms)
{
    cn_store_op_t op;
    uint8_t mid[CN_MEDIA_ID_LEN] = {0x71, idb};
    op_begin(&op, mid, "amy", size);
    op.u.media_begin.quota_bytes = 1000;
    op.u.media_begin.ttl_ms = ttl_ms;
    return run_op(f->s, &op);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_quota_and_recount(void **state)
{
    fx_t *f = *state;
    user(f, "amy", 6);
    assert_int_equal(begin_q(f, 1, 600, 0), CN_OK);
    assert_int_equal(begin_q(f, 2, 500, 0), CN_ELIMIT);
    assert_int_equal(begin_q(f, 3, 1001, 0), CN_ELIMIT);
    /* Expires in 3 s: room for the reopen below on a loaded machine (with
     * 1 s, a slow reopen let it expire before the refused begin). */
    assert_int_equal(begin_q(f, 4, 390, 3000), CN_OK);
    assert_int_equal(mbytes(f->s, "amy"), 990);
    fx_reopen(f);
    assert_int_equal(begin_q(f, 5, 11, 0), CN_ELIMIT);
    sleep_ms(3100);
    /* The counter still holds the expired upload; the recount drops it. */
    assert_int_equal(begin_q(f, 5, 11, 0), CN_OK);
    assert_int_equal(mbytes(f->s, "amy"), 611);
}

static bool raw_present(fx_t *f, const uint8_t *key, size_t klen)
{
    char *err = NULL;
    size_t vlen;
    char *v = rocksdb_get_cf(f->s->db, f->s->ro, f->s->cf[CN__CF_MEDIA], (const char *)key, klen,
                             &vlen, &err);
    assert_null(err);
    rocksdb_free(v);
    return v != NULL;
}

static void test_expiry(void **state)
{
    fx_t *f = *state;
    uint8_t *src = blob(), ckey[CN__KEY_MEDIA_CHUNK], okey[CN__KEY_MEDIA_OWNER], ukey[32];
    uint64_t stored;
    cn_store_op_t op;
    cn_rec_media_t info;
    user(f, "amy", 7);
    op_begin(&op, MID, "amy", 5000);
    op.u.media_begin.ttl_ms = 1000;
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(chunk(f, "amy", 0, src, 5000, &stored), CN_OK);
    op_end(&op, MID, "amy", src, 5000);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(cn_store_media_info(f->s, MID, &info), CN_OK);
    cn__key_media_chunk(ckey, MID, 0);
    cn__key_user(ukey, "amy");
    cn__key_media_owner(okey, ukey, MID);
    assert_int_equal(cn__store_compact(f->s, CN__CF_MEDIA), CN_OK);
    assert_true(raw_present(f, MID, CN_MEDIA_ID_LEN)); /* not expired yet: kept */
    assert_true(raw_present(f, ckey, sizeof(ckey)) && raw_present(f, okey, sizeof(okey)));
    sleep_ms(1100);
    assert_int_equal(cn_store_media_info(f->s, MID, &info), CN_ENOTFOUND);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_media_read(f->s, MID, 0, 10, &b), CN_ENOTFOUND);
    cn_buf_dispose(&b);
    op_begin(&op, MID, "amy", 5000); /* no resume after expiry */
    assert_int_equal(run_op(f->s, &op), CN_EEXIST);
    assert_int_equal(cn__store_compact(f->s, CN__CF_MEDIA), CN_OK);
    assert_false(raw_present(f, MID, CN_MEDIA_ID_LEN));
    assert_false(raw_present(f, ckey, sizeof(ckey)));
    assert_false(raw_present(f, okey, sizeof(okey)));
    /* The id is free again; a new upload does not see the old chunks. */
    op_begin(&op, MID, "amy", 10);
    assert_int_equal(run_op(f->s, &op), CN_OK);
    assert_int_equal(op.u.media_begin.stored, 0);
    free(src);
}

static void test_one_batch(void **state)
{
    fx_t *f = *state;
    uint8_t *src = blob();
    cn_store_op_t begin, c1, c2, end;
    user(f, "amy", 8);
    op_begin(&begin, MID, "amy", 3000);
    op_chunk(&c1, MID, "amy", 0, src, 1000);
    op_chunk(&c2, MID, "amy", 1000, src + 1000, 2000);
    op_end(&end, MID, "amy", src, 3000);
    cn_store_op_t *ops[] = {&begin, &c1, &c2, &end};
    run_batch_of(f->s, ops, 4);
    assert_int_equal(begin.result, CN_OK);
    assert_int_equal(c1.result, CN_OK);
    assert_int_equal(c2.result, CN_OK);
    assert_int_equal(c2.u.media_chunk.stored, 3000);
    assert_int_equal(end.result, CN_OK);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_store_media_read(f->s, MID, 900, 200, &b), 200);
    assert_memory_equal(b.data, src + 900, 200);
    cn_buf_dispose(&b);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upload_resume_read, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_begin_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chunk_and_end_refusals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_quota_and_recount, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_one_batch, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
