/*
 * The CBOR records added for groups, media and presence (proto/records.c):
 * round trips, the encoders' checks, and strict decoding of hand-built,
 * truncated, extended and bit-flipped encodings. Also the envelope's
 * optional group id.
 */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "proto/cn_proto.h"

#include <cbor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ a CBOR builder */

typedef struct tb {
    uint8_t p[512];
    size_t n;
} tb_t;

static void tb_uint(tb_t *t, uint64_t v)
{
    t->n += cbor_encode_uint(v, t->p + t->n, sizeof(t->p) - t->n);
}

static void tb_map(tb_t *t, size_t n)
{
    t->n += cbor_encode_map_start(n, t->p + t->n, sizeof(t->p) - t->n);
}

static void tb_array(tb_t *t, size_t n)
{
    t->n += cbor_encode_array_start(n, t->p + t->n, sizeof(t->p) - t->n);
}

static void tb_bytes(tb_t *t, uint8_t fill, size_t n)
{
    t->n += cbor_encode_bytestring_start(n, t->p + t->n, sizeof(t->p) - t->n);
    memset(t->p + t->n, fill, n);
    t->n += n;
}

static void tb_text(tb_t *t, const char *s)
{
    t->n += cbor_encode_string_start(strlen(s), t->p + t->n, sizeof(t->p) - t->n);
    memcpy(t->p + t->n, s, strlen(s));
    t->n += strlen(s);
}

static void tb_bool(tb_t *t, bool v)
{
    t->n += cbor_encode_bool(v, t->p + t->n, sizeof(t->p) - t->n);
}

/* ------------------------------------------------------------- samples */

static cn_rec_group_t *sample_group(uint32_t n)
{
    cn_rec_group_t *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    g->version = 7;
    g->created = 1700000000000ull;
    g->n = n;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(g->members[i].handle, sizeof(g->members[i].handle), "user%u", i);
        g->members[i].role = i % 3 == 0 ? CN_GROUP_ROLE_ADMIN : CN_GROUP_ROLE_MEMBER;
    }
    return g;
}

static cn_rec_media_t sample_media(bool complete)
{
    cn_rec_media_t m;
    memset(&m, 0, sizeof(m));
    strcpy(m.owner, "alice");
    strcpy(m.content_type, "application/octet-stream");
    m.size = 1000;
    m.stored = complete ? 1000 : 300;
    m.created = 5;
    m.expires = 99;
    m.complete = complete;
    if (complete)
        memset(m.sha256, 0xab, sizeof(m.sha256));
    else
        memset(m.hash_state, 0xcd, sizeof(m.hash_state));
    return m;
}

static void test_user_last_seen(void **state)
{
    (void)state;
    cn_rec_user_t u, out;
    cn_buf_t b, b0;
    memset(&u, 0, sizeof(u));
    u.created = 3;
    u.ndevices = 1;
    memset(u.devices[0], 9, CN_DEVICE_ID_LEN);
    cn_buf_init(&b0);
    assert_int_equal(cn_rec_user_encode(&u, &b0), CN_OK); /* last_seen 0: not written */
    u.last_seen = 1234567;
    cn_buf_init(&b);
    assert_int_equal(cn_rec_user_encode(&u, &b), CN_OK);
    assert_true(b.len > b0.len);
    assert_int_equal(cn_rec_user_decode(b.data, b.len, &out), CN_OK);
    assert_int_equal(out.last_seen, 1234567);
    assert_memory_equal(&u, &out, sizeof(u));
    assert_int_equal(cn_rec_user_decode(b0.data, b0.len, &out), CN_OK);
    assert_int_equal(out.last_seen, 0);

    /* A record from before the field (4 fields) decodes; an explicit 0 or
     * an unknown key 6 does not. */
    for (int v = 0; v < 3; v++) {
        tb_t t = {.n = 0};
        tb_map(&t, v == 0 ? 5 : 6);
        tb_uint(&t, 0), tb_uint(&t, CN_RECORD_VERSION);
        tb_uint(&t, 1), tb_uint(&t, 3);
        tb_uint(&t, 2), tb_bool(&t, false);
        tb_uint(&t, 3), tb_bool(&t, false);
        tb_uint(&t, 4), tb_array(&t, 0);
        if (v > 0)
            tb_uint(&t, v == 1 ? 5 : 6), tb_uint(&t, 0);
        assert_int_equal(cn_rec_user_decode(t.p, t.n, &out), v == 0 ? CN_OK : CN_EINVAL);
    }
    cn_buf_dispose(&b);
    cn_buf_dispose(&b0);
}

static void group_roundtrip(uint32_t n)
{
    cn_rec_group_t *g = sample_group(n), *out = sample_group(0);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_rec_group_encode(g, &b), CN_OK);
    assert_int_equal(cn_rec_group_decode(b.data, b.len, out), CN_OK);
    assert_memory_equal(g, out, sizeof(*g));
    cn_buf_dispose(&b);
    free(g);
    free(out);
}

static void test_group_roundtrip(void **state)
{
    (void)state;
    group_roundtrip(0);
    group_roundtrip(3);
    group_roundtrip(CN_GROUP_MEMBERS_HARD_MAX);
}

static void test_group_encoder_checks(void **state)
{
    (void)state;
    cn_rec_group_t *g = sample_group(2);
    cn_buf_t b;
    cn_buf_init(&b);
    g->members[1].role = 2;
    assert_int_equal(cn_rec_group_encode(g, &b), CN_EINVAL);
    g->members[1].role = 0;
    strcpy(g->members[1].handle, "Upper");
    assert_int_equal(cn_rec_group_encode(g, &b), CN_EINVAL);
    strcpy(g->members[1].handle, "ok_1");
    g->version = 0;
    assert_int_equal(cn_rec_group_encode(g, &b), CN_EINVAL);
    g->version = 1;
    g->n = CN_GROUP_MEMBERS_HARD_MAX + 1;
    assert_int_equal(cn_rec_group_encode(g, &b), CN_ETOOBIG);
    assert_int_equal(b.len, 0); /* nothing of a refused record */
    g->n = 2;
    assert_int_equal(cn_rec_group_encode(g, &b), CN_OK);
    cn_buf_dispose(&b);
    free(g);
}

/** A group record with one member [handle, role] (pair: elements written). */
static int group_built(uint64_t version, size_t count, size_t pair, const char *h, uint64_t role)
{
    tb_t t = {.n = 0};
    cn_rec_group_t *out = sample_group(0);
    tb_map(&t, 4);
    tb_uint(&t, 0), tb_uint(&t, CN_RECORD_VERSION);
    tb_uint(&t, 1), tb_uint(&t, version);
    tb_uint(&t, 2), tb_uint(&t, 10);
    tb_uint(&t, 3), tb_array(&t, count);
    tb_array(&t, pair);
    if (pair > 0)
        tb_text(&t, h);
    if (pair > 1)
        tb_uint(&t, role);
    int rc = cn_rec_group_decode(t.p, t.n, out);
    free(out);
    return rc;
}

static void test_group_negative(void **state)
{
    (void)state;
    assert_int_equal(group_built(1, 1, 2, "bob", 1), CN_OK);
    assert_int_equal(group_built(0, 1, 2, "bob", 1), CN_EINVAL); /* version 0 */
    assert_int_equal(group_built(1, 1, 2, "bob", 2), CN_EINVAL); /* unknown role */
    assert_int_equal(group_built(1, 1, 2, "Bob", 0), CN_EINVAL); /* not normal form */
    assert_int_equal(group_built(1, 1, 1, "bob", 0), CN_EINVAL); /* a pair of one */
    assert_int_equal(group_built(1, 1, 3, "bob", 0), CN_EINVAL); /* a pair of three */
    assert_int_equal(group_built(1, 2, 2, "bob", 0), CN_EINVAL); /* truncated array */
    assert_int_equal(group_built(1, CN_GROUP_MEMBERS_HARD_MAX + 1, 2, "bob", 0), CN_ETOOBIG);

    /* Missing members, a wrong record version. */
    tb_t t = {.n = 0};
    cn_rec_group_t *out = sample_group(0);
    tb_map(&t, 3);
    tb_uint(&t, 0), tb_uint(&t, CN_RECORD_VERSION);
    tb_uint(&t, 1), tb_uint(&t, 1);
    tb_uint(&t, 2), tb_uint(&t, 10);
    assert_int_equal(cn_rec_group_decode(t.p, t.n, out), CN_EINVAL);
    t.p[2] = CN_RECORD_VERSION + 1;
    assert_int_equal(cn_rec_group_decode(t.p, t.n, out), CN_EVERSION);
    free(out);
}

static void test_media_roundtrip_and_checks(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_rec_media_t out;
    cn_buf_init(&b);
    for (int c = 0; c < 2; c++) {
        cn_rec_media_t m = sample_media(c);
        cn_buf_reset(&b);
        assert_int_equal(cn_rec_media_encode(&m, &b), CN_OK);
        assert_int_equal(cn_rec_media_decode(b.data, b.len, &out), CN_OK);
        assert_memory_equal(&m, &out, sizeof(m));
    }
    cn_buf_reset(&b);
    cn_rec_media_t m = sample_media(false);
    m.stored = m.size + 1;
    assert_int_equal(cn_rec_media_encode(&m, &b), CN_EINVAL);
    m = sample_media(true);
    m.stored = 1;
    assert_int_equal(cn_rec_media_encode(&m, &b), CN_EINVAL);
    m = sample_media(true);
    memset(m.content_type, 'x', sizeof(m.content_type)); /* unterminated */
    assert_int_equal(cn_rec_media_encode(&m, &b), CN_ETOOBIG);
    m = sample_media(true);
    strcpy(m.owner, "no way");
    assert_int_equal(cn_rec_media_encode(&m, &b), CN_EINVAL);
    assert_int_equal(b.len, 0);
    cn_buf_dispose(&b);
}

/** A media record: complete flag, which of sha256 / hash_state, sizes, type. */
static int media_built(bool complete, bool sha, bool hs, uint64_t stored, const char *type)
{
    tb_t t = {.n = 0};
    cn_rec_media_t out;
    tb_map(&t, 8 + (sha ? 1 : 0) + (hs ? 1 : 0));
    tb_uint(&t, 0), tb_uint(&t, CN_RECORD_VERSION);
    tb_uint(&t, 1), tb_text(&t, "alice");
    tb_uint(&t, 2), tb_text(&t, type);
    tb_uint(&t, 3), tb_uint(&t, 100);
    tb_uint(&t, 4), tb_uint(&t, stored);
    tb_uint(&t, 5), tb_uint(&t, 1);
    tb_uint(&t, 6), tb_uint(&t, 2);
    tb_uint(&t, 7), tb_bool(&t, complete);
    if (sha)
        tb_uint(&t, 8), tb_bytes(&t, 1, CN_MEDIA_SHA256_LEN);
    if (hs)
        tb_uint(&t, 9), tb_bytes(&t, 2, CN_MEDIA_HASH_STATE_LEN);
    return cn_rec_media_decode(t.p, t.n, &out);
}

static void test_media_negative(void **state)
{
    (void)state;
    char long_type[CN_MEDIA_TYPE_MAX + 2];
    memset(long_type, 't', sizeof(long_type) - 1);
    long_type[sizeof(long_type) - 1] = '\0';
    assert_int_equal(media_built(true, true, false, 100, "a/b"), CN_OK);
    assert_int_equal(media_built(false, false, true, 50, "a/b"), CN_OK);
    assert_int_equal(media_built(true, false, true, 100, "a/b"), CN_EINVAL);  /* no digest */
    assert_int_equal(media_built(true, true, true, 100, "a/b"), CN_EINVAL);   /* both */
    assert_int_equal(media_built(false, true, false, 50, "a/b"), CN_EINVAL);  /* no state */
    assert_int_equal(media_built(true, true, false, 99, "a/b"), CN_EINVAL);   /* short */
    assert_int_equal(media_built(false, false, true, 101, "a/b"), CN_EINVAL); /* over */
    assert_int_equal(media_built(false, false, true, 5, long_type), CN_ETOOBIG);
}

static void test_envelope_group_id(void **state)
{
    (void)state;
    static const uint8_t ct[] = {1, 2, 3};
    cn_rec_envelope_t e, out;
    cn_buf_t b;
    memset(&e, 0, sizeof(e));
    strcpy(e.from, "sender");
    e.kind = CHAT__KIND__SENDER_KEY;
    e.ciphertext = cn_slice(ct, sizeof(ct));
    cn_buf_init(&b);
    for (int g = 0; g < 2; g++) {
        e.has_group = g;
        memset(e.group_id, g ? 0x42 : 0, sizeof(e.group_id));
        cn_buf_reset(&b);
        assert_int_equal(cn_rec_envelope_encode(&e, &b), CN_OK);
        assert_int_equal(cn_rec_envelope_decode(b.data, b.len, &out), CN_OK);
        assert_int_equal(out.has_group, g);
        assert_memory_equal(out.group_id, e.group_id, CN_GROUP_ID_LEN);
        assert_int_equal(out.ciphertext.len, sizeof(ct));
    }
    cn_buf_dispose(&b);
}

/* Every prefix fails; a trailing byte fails; flipped bits never crash and
 * whatever still decodes re-encodes to the same record. */
static void test_group_media_mutations(void **state)
{
    (void)state;
    cn_rec_group_t *g = sample_group(4), *go = sample_group(0), *g2 = sample_group(0);
    cn_rec_media_t m = sample_media(false), mo, m2;
    cn_buf_t bg, bm, again;
    cn_buf_init(&bg), cn_buf_init(&bm), cn_buf_init(&again);
    assert_int_equal(cn_rec_group_encode(g, &bg), CN_OK);
    assert_int_equal(cn_rec_media_encode(&m, &bm), CN_OK);
    for (size_t n = 0; n < bg.len; n++)
        assert_true(cn_rec_group_decode(n ? bg.data : NULL, n, go) < 0);
    for (size_t n = 0; n < bm.len; n++)
        assert_true(cn_rec_media_decode(n ? bm.data : NULL, n, &mo) < 0);
    for (size_t bit = 0; bit < bg.len * 8; bit++) {
        bg.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (cn_rec_group_decode(bg.data, bg.len, go) == CN_OK) {
            cn_buf_reset(&again);
            assert_int_equal(cn_rec_group_encode(go, &again), CN_OK);
            assert_int_equal(cn_rec_group_decode(again.data, again.len, g2), CN_OK);
            assert_memory_equal(go, g2, sizeof(*go));
        }
        bg.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < bm.len * 8; bit++) {
        bm.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (cn_rec_media_decode(bm.data, bm.len, &mo) == CN_OK) {
            cn_buf_reset(&again);
            assert_int_equal(cn_rec_media_encode(&mo, &again), CN_OK);
            assert_int_equal(cn_rec_media_decode(again.data, again.len, &m2), CN_OK);
            assert_memory_equal(&mo, &m2, sizeof(mo));
        }
        bm.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(cn_buf_put_u8(&bg, 0), CN_OK);
    assert_int_equal(cn_buf_put_u8(&bm, 0), CN_OK);
    assert_int_equal(cn_rec_group_decode(bg.data, bg.len, go), CN_EINVAL);
    assert_int_equal(cn_rec_media_decode(bm.data, bm.len, &mo), CN_EINVAL);
    cn_buf_dispose(&bg), cn_buf_dispose(&bm), cn_buf_dispose(&again);
    free(g), free(go), free(g2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_last_seen),
        cmocka_unit_test(test_group_roundtrip),
        cmocka_unit_test(test_group_encoder_checks),
        cmocka_unit_test(test_group_negative),
        cmocka_unit_test(test_media_roundtrip_and_checks),
        cmocka_unit_test(test_media_negative),
        cmocka_unit_test(test_envelope_group_id),
        cmocka_unit_test(test_group_media_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
