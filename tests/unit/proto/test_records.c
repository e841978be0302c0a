/*
 * Record codecs: round trips of every record, and negative tests for every
 * decoder (truncated, oversized, wrong types, wrong version, flipped bits,
 * trailing bytes, key order, missing fields).
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "proto/cn_proto.h"

#include <cbor.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- fixtures */

static cn_rec_device_t sample_device(bool cert)
{
    cn_rec_device_t d;
    memset(&d, 0, sizeof(d));
    strcpy(d.user, "alice.b-c_1");
    strcpy(d.name, "Alice's phone");
    d.created = 1700000000123ull;
    d.revoked = cert ? 0 : UINT64_MAX;
    d.has_cert = cert;
    if (cert) {
        memset(d.cert, 0xa5, sizeof(d.cert));
        memset(d.approved_by, 0x17, sizeof(d.approved_by));
    }
    return d;
}

static cn_rec_user_t sample_user(uint32_t ndevices)
{
    cn_rec_user_t u;
    memset(&u, 0, sizeof(u));
    u.created = 42;
    u.presence_hidden = true;
    u.disabled = false;
    u.ndevices = ndevices;
    for (uint32_t i = 0; i < ndevices; i++)
        memset(u.devices[i], (int)(i + 1), CN_DEVICE_ID_LEN);
    return u;
}

static const uint8_t sample_ct[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01};

static cn_rec_envelope_t sample_envelope(bool group)
{
    cn_rec_envelope_t e;
    memset(&e, 0, sizeof(e));
    e.server_time = 1700000000999ull;
    memset(e.message_id, 0x33, sizeof(e.message_id));
    strcpy(e.from, "bob");
    memset(e.from_device, 0x44, sizeof(e.from_device));
    e.kind = CHAT__KIND__RECEIPT;
    e.has_group = group;
    if (group)
        memset(e.group_id, 0x55, sizeof(e.group_id));
    e.ciphertext = cn_slice(sample_ct, sizeof(sample_ct));
    return e;
}

static cn_rec_prekey_t sample_prekey(bool sig)
{
    cn_rec_prekey_t p;
    memset(&p, 0, sizeof(p));
    p.key_id = UINT32_MAX;
    memset(p.public_key, 0x66, sizeof(p.public_key));
    p.has_signature = sig;
    if (sig)
        memset(p.signature, 0x77, sizeof(p.signature));
    return p;
}

static bool envelope_eq(const cn_rec_envelope_t *a, const cn_rec_envelope_t *b)
{
    return a->server_time == b->server_time &&
           memcmp(a->message_id, b->message_id, CN_MESSAGE_ID_LEN) == 0 &&
           strcmp(a->from, b->from) == 0 &&
           memcmp(a->from_device, b->from_device, CN_DEVICE_ID_LEN) == 0 && a->kind == b->kind &&
           a->has_group == b->has_group && a->shared == b->shared &&
           (!a->has_group || memcmp(a->group_id, b->group_id, CN_GROUP_ID_LEN) == 0) &&
           a->ciphertext.len == b->ciphertext.len &&
           (a->ciphertext.len == 0 ||
            memcmp(a->ciphertext.base, b->ciphertext.base, a->ciphertext.len) == 0);
}

static cn_rec_push_t sample_push(void)
{
    cn_rec_push_t n;
    memset(&n, 0, sizeof(n));
    memset(n.device_id, 0x88, sizeof(n.device_id));
    n.server_time = 1700000000555ull;
    return n;
}

/* ---------------------------------------------------------- round trips */

static void test_device_roundtrip(void **state)
{
    (void)state;
    for (int cert = 0; cert < 2; cert++) {
        cn_rec_device_t in = sample_device(cert), out;
        cn_buf_t b;
        cn_buf_init(&b);
        assert_int_equal(cn_rec_device_encode(&in, &b), CN_OK);
        assert_int_equal(cn_rec_device_decode(b.data, b.len, &out), CN_OK);
        assert_memory_equal(&in, &out, sizeof(in));
        cn_buf_dispose(&b);
    }
}

static void test_device_empty_name(void **state)
{
    (void)state;
    cn_rec_device_t in = sample_device(false), out;
    in.name[0] = '\0';
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_rec_device_encode(&in, &b), CN_OK);
    assert_int_equal(cn_rec_device_decode(b.data, b.len, &out), CN_OK);
    assert_string_equal(out.name, "");
    cn_buf_dispose(&b);
}

static void test_user_roundtrip(void **state)
{
    (void)state;
    uint32_t counts[] = {0, 1, CN_DEVICES_HARD_MAX};
    for (size_t i = 0; i < CN_ARRAY_LEN(counts); i++) {
        cn_rec_user_t in = sample_user(counts[i]), out;
        cn_buf_t b;
        cn_buf_init(&b);
        assert_int_equal(cn_rec_user_encode(&in, &b), CN_OK);
        assert_int_equal(cn_rec_user_decode(b.data, b.len, &out), CN_OK);
        assert_memory_equal(&in, &out, sizeof(in));
        cn_buf_dispose(&b);
    }
}

static void test_envelope_roundtrip_borrows(void **state)
{
    (void)state;
    for (int group = 0; group < 2; group++) {
        cn_rec_envelope_t in = sample_envelope(group), out;
        cn_buf_t b;
        cn_buf_init(&b);
        assert_int_equal(cn_rec_envelope_encode(&in, &b), CN_OK);
        assert_int_equal(cn_rec_envelope_decode(b.data, b.len, &out), CN_OK);
        assert_true(envelope_eq(&in, &out));
        /* The ciphertext is a view into the input, not a copy. */
        assert_true(out.ciphertext.base >= b.data &&
                    out.ciphertext.base + out.ciphertext.len <= b.data + b.len);
        cn_buf_dispose(&b);
    }
}

/* The header-plus-ciphertext path gives the same bytes as a full encode,
 * across every CBOR length-head size of the ciphertext. */
static void test_envelope_encode_with_header(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 23, 24, 255, 256, 65535, 65536, CN_CIPHERTEXT_MAX};
    uint8_t *ct = malloc(CN_CIPHERTEXT_MAX + 1);
    assert_non_null(ct);
    for (size_t i = 0; i < CN_CIPHERTEXT_MAX + 1; i++)
        ct[i] = (uint8_t)(i * 7);
    for (int group = 0; group < 2; group++) {
        cn_rec_envelope_t env = sample_envelope(group), out;
        cn_buf_t header, full, with;
        cn_buf_init(&header), cn_buf_init(&full), cn_buf_init(&with);
        env.ciphertext = cn_slice(NULL, 0);
        assert_int_equal(cn_rec_envelope_encode(&env, &header), CN_OK);
        for (size_t k = 0; k < CN_ARRAY_LEN(lens); k++) {
            env.ciphertext = cn_slice(ct, lens[k]);
            cn_buf_reset(&full), cn_buf_reset(&with);
            assert_int_equal(cn_rec_envelope_encode(&env, &full), CN_OK);
            assert_int_equal(
                cn_rec_envelope_encode_with(cn_buf_unread(&header), env.ciphertext, &with), CN_OK);
            assert_int_equal(with.len, full.len);
            assert_memory_equal(with.data, full.data, full.len);
            assert_int_equal(cn_rec_envelope_decode(with.data, with.len, &out), CN_OK);
            assert_true(envelope_eq(&env, &out));
        }
        /* Too long, a NULL ciphertext with bytes, a header that is not one:
         * refused, and out keeps what it had. */
        size_t before = with.len;
        assert_int_equal(cn_rec_envelope_encode_with(cn_buf_unread(&header),
                                                     cn_slice(ct, CN_CIPHERTEXT_MAX + 1), &with),
                         CN_ETOOBIG);
        assert_int_equal(
            cn_rec_envelope_encode_with(cn_buf_unread(&header), cn_slice(NULL, 3), &with),
            CN_EINVAL);
        assert_int_equal(cn_rec_envelope_encode_with(cn_buf_unread(&full), cn_slice(ct, 3), &with),
                         CN_EINVAL); /* ends in ciphertext bytes, not the empty head */
        assert_int_equal(cn_rec_envelope_encode_with(cn_slice(NULL, 0), cn_slice(ct, 3), &with),
                         CN_EINVAL);
        assert_int_equal(with.len, before);
        cn_buf_dispose(&header), cn_buf_dispose(&full), cn_buf_dispose(&with);
    }
    free(ct);
}

static void test_envelope_max_ciphertext(void **state)
{
    (void)state;
    uint8_t *ct = calloc(1, CN_CIPHERTEXT_MAX + 1);
    assert_non_null(ct);
    cn_rec_envelope_t in = sample_envelope(false), out;
    cn_buf_t b;
    cn_buf_init(&b);
    in.ciphertext = cn_slice(ct, CN_CIPHERTEXT_MAX);
    assert_int_equal(cn_rec_envelope_encode(&in, &b), CN_OK);
    assert_int_equal(cn_rec_envelope_decode(b.data, b.len, &out), CN_OK);
    assert_int_equal(out.ciphertext.len, CN_CIPHERTEXT_MAX);
    in.ciphertext.len = CN_CIPHERTEXT_MAX + 1;
    size_t before = b.len;
    assert_int_equal(cn_rec_envelope_encode(&in, &b), CN_ETOOBIG);
    assert_int_equal(b.len, before);
    in.ciphertext = cn_slice(NULL, 0);
    cn_buf_reset(&b);
    assert_int_equal(cn_rec_envelope_encode(&in, &b), CN_OK);
    assert_int_equal(cn_rec_envelope_decode(b.data, b.len, &out), CN_OK);
    assert_int_equal(out.ciphertext.len, 0);
    cn_buf_dispose(&b);
    free(ct);
}

/* A reference (shared) round-trips, carries no ciphertext, and a shared
 * field that is false or comes with a ciphertext is refused. */
static void test_envelope_reference(void **state)
{
    (void)state;
    cn_rec_envelope_t in = sample_envelope(true), out;
    cn_buf_t b;
    cn_buf_init(&b);
    in.shared = true;
    assert_int_equal(cn_rec_envelope_encode(&in, &b), CN_EINVAL);
    in.ciphertext = cn_slice(NULL, 0);
    assert_int_equal(cn_rec_envelope_encode(&in, &b), CN_OK);
    assert_int_equal(cn_rec_envelope_decode(b.data, b.len, &out), CN_OK);
    assert_true(out.shared);
    assert_true(envelope_eq(&in, &out));
    /* The last byte is the shared field's value, true (0xf5): make it false. */
    assert_int_equal(b.data[b.len - 1], 0xf5);
    b.data[b.len - 1] = 0xf4;
    assert_int_equal(cn_rec_envelope_decode(b.data, b.len, &out), CN_EINVAL);
    /* A reference with a ciphertext: rewrite the empty byte string head
     * (0x40, just before the shared key and value) to a one-byte one. */
    b.data[b.len - 1] = 0xf5;
    cn_buf_t c;
    cn_buf_init(&c);
    assert_int_equal(cn_buf_append(&c, b.data, b.len - 3), CN_OK);
    assert_int_equal(b.data[b.len - 3], 0x40);
    const uint8_t tail[] = {0x41, 'x', b.data[b.len - 2], 0xf5};
    assert_int_equal(cn_buf_append(&c, tail, sizeof(tail)), CN_OK);
    assert_int_equal(cn_rec_envelope_decode(c.data, c.len, &out), CN_EINVAL);
    cn_buf_dispose(&c);
    cn_buf_dispose(&b);
}

static void test_dedupe_prekey_roundtrip(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    cn_rec_dedupe_t d = {.server_time = UINT64_MAX}, dout;
    assert_int_equal(cn_rec_dedupe_encode(&d, &b), CN_OK);
    assert_int_equal(cn_rec_dedupe_decode(b.data, b.len, &dout), CN_OK);
    assert_true(dout.server_time == d.server_time);
    /* Only the time is written: {0: version 1, 1: server_time 5}. */
    cn_buf_reset(&b);
    d.server_time = 5;
    assert_int_equal(cn_rec_dedupe_encode(&d, &b), CN_OK);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "\xa2\x00\x01\x01\x05", 5);
    /* A record from before also held the mailboxes written (key 2): read past. */
    assert_int_equal(
        cn_rec_dedupe_decode((const uint8_t *)"\xa3\x00\x01\x01\x07\x02\x03", 7, &dout), CN_OK);
    assert_true(dout.server_time == 7);
    /* The time is required; a key past 2 is not a dedupe field. */
    assert_int_equal(cn_rec_dedupe_decode((const uint8_t *)"\xa2\x00\x01\x02\x03", 5, &dout),
                     CN_EINVAL);
    assert_int_equal(
        cn_rec_dedupe_decode((const uint8_t *)"\xa3\x00\x01\x01\x07\x03\x03", 7, &dout), CN_EINVAL);
    for (int sig = 0; sig < 2; sig++) {
        cn_rec_prekey_t p = sample_prekey(sig), pout;
        cn_buf_reset(&b);
        assert_int_equal(cn_rec_prekey_encode(&p, &b), CN_OK);
        assert_int_equal(cn_rec_prekey_decode(b.data, b.len, &pout), CN_OK);
        assert_memory_equal(&p, &pout, sizeof(p));
    }
    cn_buf_dispose(&b);
}

/* The dedupe record's own form is read by a fast path (records.c
 * dedupe_fast); every uint width, a non-shortest head and the forms it
 * hands to the general decoder must read as that decoder reads them. */
static void test_dedupe_fast_form(void **state)
{
    (void)state;
    static const uint64_t times[] = {0,     23,          24,          255,        256,       65535,
                                     65536, 4294967295u, 4294967296u, 1ull << 62, UINT64_MAX};
    cn_buf_t b;
    cn_rec_dedupe_t d, out;
    cn_buf_init(&b);
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        cn_buf_reset(&b);
        d.server_time = times[i];
        assert_int_equal(cn_rec_dedupe_encode(&d, &b), CN_OK);
        assert_int_equal(cn_rec_dedupe_decode(b.data, b.len, &out), CN_OK);
        assert_true(out.server_time == times[i]);
        /* Every prefix is refused, as the general decoder refuses it. */
        for (size_t k = 0; k < b.len; k++)
            assert_int_equal(cn_rec_dedupe_decode(b.data, k, &out), CN_EINVAL);
    }
    cn_buf_dispose(&b);
    /* A non-shortest head: the same value both ways (fast, then general
     * with the old record's count after it). */
    assert_int_equal(cn_rec_dedupe_decode((const uint8_t *)"\xa2\x00\x01\x01\x19\x00\x05", 7, &out),
                     CN_OK);
    assert_true(out.server_time == 5);
    assert_int_equal(
        cn_rec_dedupe_decode((const uint8_t *)"\xa3\x00\x01\x01\x19\x00\x05\x02\x01", 9, &out),
        CN_OK);
    assert_true(out.server_time == 5);
    /* Handed over, and refused there: a trailing byte, a negative int, a
     * reserved head, another version. */
    assert_int_equal(cn_rec_dedupe_decode((const uint8_t *)"\xa2\x00\x01\x01\x05\x00", 6, &out),
                     CN_EINVAL);
    assert_int_equal(cn_rec_dedupe_decode((const uint8_t *)"\xa2\x00\x01\x01\x20", 5, &out),
                     CN_EINVAL);
    assert_int_equal(cn_rec_dedupe_decode((const uint8_t *)"\xa2\x00\x01\x01\x1c", 5, &out),
                     CN_EINVAL);
    assert_int_equal(cn_rec_dedupe_decode((const uint8_t *)"\xa2\x00\x02\x01\x05", 5, &out),
                     CN_EVERSION);
}

static void test_push_roundtrip_and_negative(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    cn_rec_push_t in = sample_push(), out;
    in.server_time = UINT64_MAX;
    assert_int_equal(cn_rec_push_encode(&in, &b), CN_OK);
    assert_int_equal(cn_rec_push_decode(b.data, b.len, &out), CN_OK);
    assert_memory_equal(&in, &out, sizeof(in));
    /* A dedupe record (uint fields) is not a push record. */
    cn_rec_dedupe_t d = {.server_time = 1};
    cn_buf_reset(&b);
    assert_int_equal(cn_rec_dedupe_encode(&d, &b), CN_OK);
    assert_int_equal(cn_rec_push_decode(b.data, b.len, &out), CN_EINVAL);
    cn_buf_dispose(&b);
}

static void test_encode_appends(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_buf_append(&b, "xy", 2), CN_OK);
    cn_rec_dedupe_t d = {.server_time = 5}, out;
    assert_int_equal(cn_rec_dedupe_encode(&d, &b), CN_OK);
    assert_memory_equal(b.data, "xy", 2);
    assert_int_equal(cn_rec_dedupe_decode(b.data + 2, b.len - 2, &out), CN_OK);
    assert_int_equal(out.server_time, 5);
    cn_buf_dispose(&b);
}

static void test_encoders_validate(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    cn_rec_device_t d = sample_device(false);
    strcpy(d.user, "Alice"); /* not normalized */
    assert_int_equal(cn_rec_device_encode(&d, &b), CN_EINVAL);
    strcpy(d.user, "al");
    assert_int_equal(cn_rec_device_encode(&d, &b), CN_EINVAL);
    d = sample_device(false);
    memset(d.name, 'n', sizeof(d.name)); /* no terminator within the limit */
    assert_int_equal(cn_rec_device_encode(&d, &b), CN_ETOOBIG);
    cn_rec_user_t u = sample_user(0);
    u.ndevices = CN_DEVICES_HARD_MAX + 1;
    assert_int_equal(cn_rec_user_encode(&u, &b), CN_ETOOBIG);
    cn_rec_envelope_t e = sample_envelope(false);
    e.kind = 99;
    assert_int_equal(cn_rec_envelope_encode(&e, &b), CN_EINVAL);
    e = sample_envelope(false);
    strcpy(e.from, "no space");
    assert_int_equal(cn_rec_envelope_encode(&e, &b), CN_EINVAL);
    assert_int_equal(b.len, 0);
    cn_buf_dispose(&b);
}

/* --------------------------------------------- hand-built CBOR (negative) */

typedef struct tb {
    uint8_t d[128 * 1024];
    size_t n;
} tb_t;

static tb_t *tb_new(void)
{
    tb_t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    return t;
}

static void tb_uint(tb_t *t, uint64_t v)
{
    t->n += cbor_encode_uint(v, t->d + t->n, sizeof(t->d) - t->n);
}

static void tb_map(tb_t *t, size_t n)
{
    t->n += cbor_encode_map_start(n, t->d + t->n, sizeof(t->d) - t->n);
}

static void tb_array(tb_t *t, size_t n)
{
    t->n += cbor_encode_array_start(n, t->d + t->n, sizeof(t->d) - t->n);
}

static void tb_bytes(tb_t *t, uint8_t fill, size_t n)
{
    t->n += cbor_encode_bytestring_start(n, t->d + t->n, sizeof(t->d) - t->n);
    memset(t->d + t->n, fill, n);
    t->n += n;
}

static void tb_text(tb_t *t, const char *s)
{
    size_t n = strlen(s);
    t->n += cbor_encode_string_start(n, t->d + t->n, sizeof(t->d) - t->n);
    memcpy(t->d + t->n, s, n);
    t->n += n;
}

static void tb_raw(tb_t *t, uint8_t byte)
{
    t->d[t->n++] = byte;
}

/** A prekey record with the given version and public key length. */
static void tb_prekey(tb_t *t, uint64_t version, size_t pklen)
{
    tb_map(t, 3);
    tb_uint(t, 0);
    tb_uint(t, version);
    tb_uint(t, 1);
    tb_uint(t, 7);
    tb_uint(t, 2);
    tb_bytes(t, 0x11, pklen);
}

static int dec_prekey(const tb_t *t)
{
    cn_rec_prekey_t p;
    return cn_rec_prekey_decode(t->d, t->n, &p);
}

static void test_hand_built_valid(void **state)
{
    (void)state;
    tb_t *t = tb_new();
    tb_prekey(t, CN_RECORD_VERSION, CN_PREKEY_LEN);
    cn_rec_prekey_t p;
    assert_int_equal(cn_rec_prekey_decode(t->d, t->n, &p), CN_OK);
    assert_int_equal(p.key_id, 7);
    assert_false(p.has_signature);
    free(t);
}

static void test_wrong_version(void **state)
{
    (void)state;
    uint64_t versions[] = {0, 2, 255, UINT64_MAX};
    for (size_t i = 0; i < CN_ARRAY_LEN(versions); i++) {
        tb_t *t = tb_new();
        tb_prekey(t, versions[i], CN_PREKEY_LEN);
        assert_int_equal(dec_prekey(t), CN_EVERSION);
        free(t);
    }
    /* The version must be the first entry. */
    tb_t *t = tb_new();
    tb_map(t, 2);
    tb_uint(t, 1);
    tb_uint(t, 7);
    tb_uint(t, 0);
    tb_uint(t, 1);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
}

static void test_fixed_lengths(void **state)
{
    (void)state;
    tb_t *t = tb_new();
    tb_prekey(t, CN_RECORD_VERSION, CN_PREKEY_LEN - 1);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
    t = tb_new();
    tb_prekey(t, CN_RECORD_VERSION, CN_PREKEY_LEN + 1);
    assert_int_equal(dec_prekey(t), CN_ETOOBIG);
    free(t);
}

/** Writes a device record whose user and name are given. */
static void tb_device(tb_t *t, const char *user, const char *name)
{
    tb_map(t, 5);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_text(t, user);
    tb_uint(t, 2);
    tb_text(t, name);
    tb_uint(t, 3);
    tb_uint(t, 10);
    tb_uint(t, 4);
    tb_uint(t, 0);
}

static int dec_device(const tb_t *t)
{
    cn_rec_device_t d;
    return cn_rec_device_decode(t->d, t->n, &d);
}

static void test_oversized_fields(void **state)
{
    (void)state;
    char longname[CN_DEVICE_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    tb_t *t = tb_new();
    tb_device(t, "alice", longname);
    assert_int_equal(dec_device(t), CN_ETOOBIG);
    free(t);
    t = tb_new();
    tb_device(t, "abcdefghijabcdefghijabcdefghijabc", "n"); /* 33 characters */
    assert_int_equal(dec_device(t), CN_ETOOBIG);
    free(t);

    /* 17 devices in a user record. */
    t = tb_new();
    tb_map(t, 5);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_uint(t, 2);
    tb_raw(t, 0xf4);
    tb_uint(t, 3);
    tb_raw(t, 0xf4);
    tb_uint(t, 4);
    tb_array(t, CN_DEVICES_HARD_MAX + 1);
    for (int i = 0; i < CN_DEVICES_HARD_MAX + 1; i++)
        tb_bytes(t, (uint8_t)i, CN_DEVICE_ID_LEN);
    cn_rec_user_t u;
    assert_int_equal(cn_rec_user_decode(t->d, t->n, &u), CN_ETOOBIG);
    free(t);

    /* A ciphertext one byte above the limit. */
    t = tb_new();
    tb_map(t, 7);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_uint(t, 5);
    tb_uint(t, 2);
    tb_bytes(t, 1, CN_MESSAGE_ID_LEN);
    tb_uint(t, 3);
    tb_text(t, "bob");
    tb_uint(t, 4);
    tb_bytes(t, 2, CN_DEVICE_ID_LEN);
    tb_uint(t, 5);
    tb_uint(t, 0);
    tb_uint(t, 7);
    size_t at = t->n;
    tb_bytes(t, 3, CN_CIPHERTEXT_MAX + 1);
    cn_rec_envelope_t e;
    assert_int_equal(cn_rec_envelope_decode(t->d, t->n, &e), CN_ETOOBIG);
    t->n = at;
    tb_bytes(t, 3, CN_CIPHERTEXT_MAX);
    assert_int_equal(cn_rec_envelope_decode(t->d, t->n, &e), CN_OK);
    free(t);
}

static void test_bad_handles_and_text(void **state)
{
    (void)state;
    const char *bad[] = {"Alice", "al", "a b", "al!ce", "\xc3\xa9tienne"};
    for (size_t i = 0; i < CN_ARRAY_LEN(bad); i++) {
        tb_t *t = tb_new();
        tb_device(t, bad[i], "n");
        assert_int_equal(dec_device(t), CN_EINVAL);
        free(t);
    }
    /* An embedded NUL in a name. */
    tb_t *t = tb_new();
    tb_device(t, "alice", "ab");
    t->d[t->n - 5] = '\0'; /* the 'b' of the name: ... 'a' 'b' 03 0a 04 00 */
    assert_int_equal(dec_device(t), CN_EINVAL);
    free(t);
}

static void test_wrong_types(void **state)
{
    (void)state;
    /* key_id as: text, bytes, negative int, bool, null, float, tag, array. */
    const uint8_t values[][3] = {
        {0x61, 'x', 0}, {0x41, 0x01, 0}, {0x20, 0, 0},    {0xf5, 0, 0},
        {0xf6, 0, 0},   {0xf9, 0x3c, 0}, {0xc1, 0x01, 0}, {0x80, 0, 0},
    };
    const size_t lens[] = {2, 2, 1, 1, 1, 3, 2, 1};
    for (size_t i = 0; i < CN_ARRAY_LEN(lens); i++) {
        tb_t *t = tb_new();
        tb_map(t, 3);
        tb_uint(t, 0);
        tb_uint(t, 1);
        tb_uint(t, 1);
        if (i == 5) { /* half float 1.0 */
            tb_raw(t, 0xf9);
            tb_raw(t, 0x3c);
            tb_raw(t, 0x00);
        } else {
            for (size_t j = 0; j < lens[i]; j++)
                tb_raw(t, values[i][j]);
        }
        tb_uint(t, 2);
        tb_bytes(t, 0, CN_PREKEY_LEN);
        assert_int_equal(dec_prekey(t), CN_EINVAL);
        free(t);
    }
    /* Not a map at all, an indefinite map, and a key_id above u32. */
    uint8_t arr[] = {0x82, 0x00, 0x01};
    uint8_t indef[] = {0xbf, 0x00, 0x01, 0xff};
    cn_rec_prekey_t p;
    assert_int_equal(cn_rec_prekey_decode(arr, sizeof(arr), &p), CN_EINVAL);
    assert_int_equal(cn_rec_prekey_decode(indef, sizeof(indef), &p), CN_EINVAL);
    tb_t *t = tb_new();
    tb_map(t, 3);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_uint(t, (uint64_t)UINT32_MAX + 1);
    tb_uint(t, 2);
    tb_bytes(t, 0, CN_PREKEY_LEN);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
}

static void test_keys_missing_duplicate_unknown(void **state)
{
    (void)state;
    tb_t *t = tb_new(); /* public key missing */
    tb_map(t, 2);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_uint(t, 7);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
    t = tb_new(); /* key_id twice */
    tb_map(t, 4);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 1);
    tb_uint(t, 7);
    tb_uint(t, 1);
    tb_uint(t, 8);
    tb_uint(t, 2);
    tb_bytes(t, 0, CN_PREKEY_LEN);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
    t = tb_new(); /* keys out of order */
    tb_map(t, 3);
    tb_uint(t, 0);
    tb_uint(t, 1);
    tb_uint(t, 2);
    tb_bytes(t, 0, CN_PREKEY_LEN);
    tb_uint(t, 1);
    tb_uint(t, 7);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
    t = tb_new(); /* unknown key 9 */
    tb_prekey(t, 1, CN_PREKEY_LEN);
    t->d[0] = 0xa4;
    tb_uint(t, 9);
    tb_uint(t, 0);
    assert_int_equal(dec_prekey(t), CN_EINVAL);
    free(t);
    /* A device with a certificate but no approver. */
    t = tb_new();
    tb_device(t, "alice", "n");
    t->d[0] = 0xa6;
    tb_uint(t, 5);
    tb_bytes(t, 0, CN_SIGNATURE_LEN);
    assert_int_equal(dec_device(t), CN_EINVAL);
    free(t);
}

/* ------------------------------------------- every encoding, generically */

typedef int (*decode_fn)(const uint8_t *p, size_t n, void *out);

static int dec_dev(const uint8_t *p, size_t n, void *o)
{
    return cn_rec_device_decode(p, n, o);
}
static int dec_user(const uint8_t *p, size_t n, void *o)
{
    return cn_rec_user_decode(p, n, o);
}
static int dec_env(const uint8_t *p, size_t n, void *o)
{
    return cn_rec_envelope_decode(p, n, o);
}
static int dec_ded(const uint8_t *p, size_t n, void *o)
{
    return cn_rec_dedupe_decode(p, n, o);
}
static int dec_pk(const uint8_t *p, size_t n, void *o)
{
    return cn_rec_prekey_decode(p, n, o);
}
static int dec_push(const uint8_t *p, size_t n, void *o)
{
    return cn_rec_push_decode(p, n, o);
}

static const decode_fn decoders[] = {dec_dev, dec_user, dec_env, dec_ded, dec_pk, dec_push};
#define NREC ((int)CN_ARRAY_LEN(decoders))

/** Encodes one sample of each record type into bufs[NREC]. */
static void encode_samples(cn_buf_t bufs[NREC])
{
    cn_rec_push_t n = sample_push();
    cn_rec_device_t d = sample_device(true);
    cn_rec_user_t u = sample_user(3);
    cn_rec_envelope_t e = sample_envelope(true);
    cn_rec_dedupe_t x = {.server_time = 77};
    cn_rec_prekey_t p = sample_prekey(true);
    for (int i = 0; i < NREC; i++)
        cn_buf_init(&bufs[i]);
    assert_int_equal(cn_rec_device_encode(&d, &bufs[0]), CN_OK);
    assert_int_equal(cn_rec_user_encode(&u, &bufs[1]), CN_OK);
    assert_int_equal(cn_rec_envelope_encode(&e, &bufs[2]), CN_OK);
    assert_int_equal(cn_rec_dedupe_encode(&x, &bufs[3]), CN_OK);
    assert_int_equal(cn_rec_prekey_encode(&p, &bufs[4]), CN_OK);
    assert_int_equal(cn_rec_push_encode(&n, &bufs[5]), CN_OK);
}

static void dispose_samples(cn_buf_t bufs[NREC])
{
    for (int i = 0; i < NREC; i++)
        cn_buf_dispose(&bufs[i]);
}

/* Big enough for any record (envelope is the largest struct). */
typedef union any_rec {
    cn_rec_device_t d;
    cn_rec_user_t u;
    cn_rec_envelope_t e;
    cn_rec_dedupe_t x;
    cn_rec_prekey_t p;
    cn_rec_push_t n;
} any_rec_t;

static void test_truncated_every_length(void **state)
{
    (void)state;
    cn_buf_t bufs[NREC];
    any_rec_t out;
    encode_samples(bufs);
    for (int i = 0; i < NREC; i++) {
        assert_int_equal(decoders[i](bufs[i].data, bufs[i].len, &out), CN_OK);
        for (size_t n = 0; n < bufs[i].len; n++) {
            /* A heap copy of exactly n bytes so ASan sees any overread. */
            uint8_t *p = malloc(n ? n : 1);
            assert_non_null(p);
            memcpy(p, bufs[i].data, n);
            assert_true(decoders[i](n ? p : NULL, n, &out) < 0);
            free(p);
        }
    }
    dispose_samples(bufs);
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    cn_buf_t bufs[NREC];
    any_rec_t out;
    encode_samples(bufs);
    for (int i = 0; i < NREC; i++) {
        assert_int_equal(cn_buf_put_u8(&bufs[i], 0x00), CN_OK);
        assert_int_equal(decoders[i](bufs[i].data, bufs[i].len, &out), CN_EINVAL);
    }
    dispose_samples(bufs);
}

/** Re-encodes a successfully decoded record and checks it decodes the same. */
static void check_reencode(int kind, const any_rec_t *r)
{
    cn_buf_t b;
    any_rec_t again;
    int rc;
    memset(&again, 0, sizeof(again));
    cn_buf_init(&b);
    switch (kind) {
    case 0:
        rc = cn_rec_device_encode(&r->d, &b);
        break;
    case 1:
        rc = cn_rec_user_encode(&r->u, &b);
        break;
    case 2:
        rc = cn_rec_envelope_encode(&r->e, &b);
        break;
    case 3:
        rc = cn_rec_dedupe_encode(&r->x, &b);
        break;
    case 4:
        rc = cn_rec_prekey_encode(&r->p, &b);
        break;
    default:
        rc = cn_rec_push_encode(&r->n, &b);
        break;
    }
    assert_int_equal(rc, CN_OK);
    assert_int_equal(decoders[kind](b.data, b.len, &again), CN_OK);
    if (kind == 2)
        assert_true(envelope_eq(&r->e, &again.e));
    else
        assert_memory_equal(r, &again, sizeof(again));
    cn_buf_dispose(&b);
}

static void test_flipped_bits(void **state)
{
    (void)state;
    cn_buf_t bufs[NREC];
    encode_samples(bufs);
    for (int i = 0; i < NREC; i++) {
        size_t n = bufs[i].len;
        uint8_t *p = malloc(n);
        assert_non_null(p);
        for (size_t bit = 0; bit < n * 8; bit++) {
            memcpy(p, bufs[i].data, n);
            p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            /* Feed the flipped bytes to every decoder, not just its own. */
            for (int k = 0; k < NREC; k++) {
                any_rec_t out;
                memset(&out, 0, sizeof(out));
                int rc = decoders[k](p, n, &out);
                assert_true(rc == CN_OK || rc == CN_EINVAL || rc == CN_ETOOBIG ||
                            rc == CN_EVERSION);
                if (rc == CN_OK)
                    check_reencode(k, &out);
            }
        }
        free(p);
    }
    dispose_samples(bufs);
}

static void test_garbage(void **state)
{
    (void)state;
    /* A deterministic pseudo-random stream of short inputs. */
    uint64_t x = 88172645463325252ull;
    uint8_t p[64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = (size_t)(iter % (int)sizeof(p));
        for (size_t j = 0; j < n; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[j] = (uint8_t)x;
        }
        if (n > 0 && iter % 3 == 0)
            p[0] = 0xa0 | (uint8_t)(iter % 8); /* maps more often */
        for (int k = 0; k < NREC; k++) {
            any_rec_t out;
            memset(&out, 0, sizeof(out));
            int rc = decoders[k](p, n, &out);
            assert_true(rc <= 0);
            if (rc == CN_OK)
                check_reencode(k, &out);
        }
    }
}

/* -------------------------------------------------------- counter journal */

typedef struct cjour_seen {
    size_t n;
    cn_rec_cjour_entry_t e[4];
    int fail_at; /* the callback fails at this entry (-1: never) */
} cjour_seen_t;

static int cjour_collect(void *ctx, const cn_rec_cjour_entry_t *e)
{
    cjour_seen_t *s = ctx;
    if ((int)s->n == s->fail_at)
        return CN_ENOMEM;
    assert_true(s->n < 4);
    s->e[s->n++] = *e;
    return CN_OK;
}

static void cjour_sample(cn_buf_t *b, size_t n)
{
    assert_int_equal(cn_rec_cjour_begin(n, b), CN_OK);
    for (size_t i = 0; i < n; i++) {
        cn_rec_cjour_entry_t e = {.which = (uint8_t)(i & 1), .next = i == 0 ? UINT64_MAX : i + 1};
        memset(e.device, 0x10 + (int)i, CN_DEVICE_ID_LEN);
        assert_int_equal(cn_rec_cjour_add(&e, b), CN_OK);
    }
}

static void test_cjour_roundtrip_and_negative(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    cjour_sample(&b, 3);
    /* {0: 1, 1: [[0, h'10…', 2^64-1], …]}: the exact head of the bytes. */
    static const uint8_t head[] = {0xa2, 0x00, 0x01, 0x01, 0x83, 0x83, 0x00, 0x58, 0x20};
    assert_memory_equal(b.data, head, sizeof(head));
    cjour_seen_t seen = {.fail_at = -1};
    assert_int_equal(cn_rec_cjour_decode(b.data, b.len, cjour_collect, &seen), CN_OK);
    assert_int_equal(seen.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(seen.e[i].which, i & 1);
        assert_int_equal(seen.e[i].next, i == 0 ? UINT64_MAX : i + 1);
        assert_int_equal(seen.e[i].device[CN_DEVICE_ID_LEN - 1], 0x10 + i);
    }
    /* The callback's error comes back as it is. */
    seen = (cjour_seen_t){.fail_at = 1};
    assert_int_equal(cn_rec_cjour_decode(b.data, b.len, cjour_collect, &seen), CN_ENOMEM);
    /* Every truncation is refused, and so is a trailing byte. */
    for (size_t n = 0; n < b.len; n++) {
        seen = (cjour_seen_t){.fail_at = -1};
        assert_true(cn_rec_cjour_decode(b.data, n, cjour_collect, &seen) < 0);
    }
    assert_int_equal(cn_buf_put_u8(&b, 0), CN_OK);
    seen = (cjour_seen_t){.fail_at = -1};
    assert_int_equal(cn_rec_cjour_decode(b.data, b.len, cjour_collect, &seen), CN_EINVAL);

    /* Out of range on the way in. */
    cn_rec_cjour_entry_t bad = {.which = CN_REC_CJOUR_WHICH_MAX + 1, .next = 1};
    cn_buf_reset(&b);
    assert_int_equal(cn_rec_cjour_add(&bad, &b), CN_EINVAL);
    bad.which = 0, bad.next = 0;
    assert_int_equal(cn_rec_cjour_add(&bad, &b), CN_EINVAL);
    assert_int_equal(b.len, 0);
    assert_int_equal(cn_rec_cjour_begin(CN_REC_CJOUR_ENTRIES_MAX + 1ull, &b), CN_ETOOBIG);
    assert_int_equal(b.len, 0);

    /* And on the way out: which 2, next 0, a short device, a count over
     * the limit, an entry of two items, another version, an unknown key. */
    static const uint8_t which2[] = {0xa2, 0x00, 0x01, 0x01, 0x81, 0x83, 0x02, 0x41, 0x00, 0x01};
    static const uint8_t short_dev[] = {0xa2, 0x00, 0x01, 0x01, 0x81, 0x83, 0x00, 0x41, 0x00, 0x01};
    static const uint8_t huge[] = {0xa2, 0x00, 0x01, 0x01, 0x9a, 0x00, 0x40, 0x00, 0x01};
    static const uint8_t pair[] = {0xa2, 0x00, 0x01, 0x01, 0x81, 0x82, 0x00, 0x00};
    static const uint8_t version[] = {0xa2, 0x00, 0x02, 0x01, 0x80};
    static const uint8_t unknown[] = {0xa2, 0x00, 0x01, 0x02, 0x80};
    static const uint8_t empty[] = {0xa2, 0x00, 0x01, 0x01, 0x80};
    const struct {
        const uint8_t *p;
        size_t n;
        int rc;
    } cases[] = {
        {which2, sizeof(which2), CN_EINVAL},     {short_dev, sizeof(short_dev), CN_EINVAL},
        {huge, sizeof(huge), CN_ETOOBIG},        {pair, sizeof(pair), CN_EINVAL},
        {version, sizeof(version), CN_EVERSION}, {unknown, sizeof(unknown), CN_EINVAL},
        {empty, sizeof(empty), CN_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        seen = (cjour_seen_t){.fail_at = -1};
        assert_int_equal(cn_rec_cjour_decode(cases[i].p, cases[i].n, cjour_collect, &seen),
                         cases[i].rc);
    }
    /* next 0 with a whole device. */
    cn_buf_reset(&b);
    cjour_sample(&b, 2);
    b.data[b.len - 1] = 0x00; /* the last entry's next, 2, becomes 0 */
    seen = (cjour_seen_t){.fail_at = -1};
    assert_int_equal(cn_rec_cjour_decode(b.data, b.len, cjour_collect, &seen), CN_EINVAL);
    cn_buf_dispose(&b);
}

/* ------------------------------------------------------ reference journal */

typedef struct rjour_seen {
    size_t n;
    uint8_t device[4][CN_DEVICE_ID_LEN];
    uint64_t seq[4];
    int fail_at;           /* the callback fails at this entry (-1: never) */
    const cn_slice_t *ref; /* the decoder's *ref: set whenever fn runs */
} rjour_seen_t;

static int rjour_collect(void *ctx, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq)
{
    rjour_seen_t *s = ctx;
    assert_true(s->ref->base != NULL && s->ref->len > 0);
    if ((int)s->n == s->fail_at)
        return CN_ENOMEM;
    assert_true(s->n < 4);
    memcpy(s->device[s->n], device, CN_DEVICE_ID_LEN);
    s->seq[s->n++] = seq;
    return CN_OK;
}

static int rjour_decode(const uint8_t *p, size_t n, cn_slice_t *ref, rjour_seen_t *seen)
{
    *seen = (rjour_seen_t){.fail_at = -1, .ref = ref};
    return cn_rec_rjour_decode(p, n, ref, rjour_collect, seen);
}

static const uint8_t rjour_ref[] = {0xa8, 0x00, 0x01, 0x01, 0x1b};
static const uint64_t rjour_seqs[] = {1, 24, UINT64_MAX}; /* heads of 1, 2 and 9 bytes */

static void rjour_sample(cn_buf_t *b)
{
    assert_int_equal(cn_rec_rjour_begin(cn_slice(rjour_ref, sizeof(rjour_ref)), 3, b), CN_OK);
    for (size_t i = 0; i < 3; i++) {
        uint8_t device[CN_DEVICE_ID_LEN];
        memset(device, 0x20 + (int)i, sizeof(device));
        assert_int_equal(cn_rec_rjour_add(device, rjour_seqs[i], b), CN_OK);
    }
}

/* pre, then (dev) a whole 32-byte device of 0x11, then post, into b. */
static void rjour_build(cn_buf_t *b, const uint8_t *pre, size_t npre, bool dev, const uint8_t *post,
                        size_t npost)
{
    static const uint8_t dev_head[] = {0x58, CN_DEVICE_ID_LEN};
    uint8_t device[CN_DEVICE_ID_LEN];
    memset(device, 0x11, sizeof(device));
    cn_buf_reset(b);
    assert_int_equal(cn_buf_append(b, pre, npre), CN_OK);
    if (dev) {
        assert_int_equal(cn_buf_append(b, dev_head, sizeof(dev_head)), CN_OK);
        assert_int_equal(cn_buf_append(b, device, sizeof(device)), CN_OK);
    }
    if (npost > 0)
        assert_int_equal(cn_buf_append(b, post, npost), CN_OK);
}

static void rjour_roundtrip(void)
{
    cn_buf_t b;
    cn_slice_t ref;
    rjour_seen_t seen;
    cn_buf_init(&b);
    rjour_sample(&b);
    /* {0: 1, 1: h'a80001011b', 2: [[h'20…', 1], [h'21…', 24], [h'22…', 2^64-1]]}. */
    static const uint8_t head[] = {0xa3, 0x00, 0x01, 0x01, 0x45};
    static const uint8_t entries[] = {0x02, 0x83, 0x82, 0x58, 0x20};
    static const uint8_t max_seq[] = {0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(b.len, sizeof(head) + sizeof(rjour_ref) + 2 + 3 * 35 + 1 + 2 + 9);
    assert_memory_equal(b.data, head, sizeof(head));
    assert_memory_equal(b.data + sizeof(head), rjour_ref, sizeof(rjour_ref));
    assert_memory_equal(b.data + sizeof(head) + sizeof(rjour_ref), entries, sizeof(entries));
    assert_memory_equal(b.data + b.len - sizeof(max_seq), max_seq, sizeof(max_seq));

    assert_int_equal(rjour_decode(b.data, b.len, &ref, &seen), CN_OK);
    assert_ptr_equal(ref.base, b.data + sizeof(head)); /* borrowed, not copied */
    assert_int_equal(ref.len, sizeof(rjour_ref));
    assert_memory_equal(ref.base, rjour_ref, sizeof(rjour_ref));
    assert_int_equal(seen.n, 3);
    for (size_t i = 0; i < 3; i++) {
        uint8_t device[CN_DEVICE_ID_LEN];
        memset(device, 0x20 + (int)i, sizeof(device));
        assert_memory_equal(seen.device[i], device, CN_DEVICE_ID_LEN);
        assert_true(seen.seq[i] == rjour_seqs[i]);
    }
    /* The callback's error comes back as it is, after the entries before it. */
    seen = (rjour_seen_t){.fail_at = 1, .ref = &ref};
    assert_int_equal(cn_rec_rjour_decode(b.data, b.len, &ref, rjour_collect, &seen), CN_ENOMEM);
    assert_int_equal(seen.n, 1);
    /* Every truncation is refused, and so is a trailing byte. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(rjour_decode(b.data, n, &ref, &seen), CN_EINVAL);
    assert_int_equal(cn_buf_put_u8(&b, 0), CN_OK);
    assert_int_equal(rjour_decode(b.data, b.len, &ref, &seen), CN_EINVAL);

    /* The largest ref and entry count are written; the count's head is 99 3e 80. */
    static uint8_t big[CN_REC_RJOUR_REF_MAX];
    memset(big, 0x5a, sizeof(big));
    cn_buf_reset(&b);
    assert_int_equal(cn_rec_rjour_begin(cn_slice(big, sizeof(big)), 0, &b), CN_OK);
    assert_int_equal(rjour_decode(b.data, b.len, &ref, &seen), CN_OK);
    assert_int_equal(ref.len, CN_REC_RJOUR_REF_MAX);
    assert_int_equal(seen.n, 0);
    cn_buf_reset(&b);
    assert_int_equal(cn_rec_rjour_begin(cn_slice(rjour_ref, 1), CN_REC_RJOUR_ENTRIES_MAX, &b),
                     CN_OK);
    static const uint8_t max_count[] = {0x02, 0x99, 0x3e, 0x80};
    assert_memory_equal(b.data + b.len - sizeof(max_count), max_count, sizeof(max_count));
    cn_buf_dispose(&b);
}

static void rjour_refused_on_write(void)
{
    static uint8_t big[CN_REC_RJOUR_REF_MAX + 1];
    uint8_t device[CN_DEVICE_ID_LEN];
    cn_slice_t ref = cn_slice(rjour_ref, sizeof(rjour_ref));
    cn_buf_t b;
    memset(device, 0x11, sizeof(device));
    cn_buf_init(&b);
    /* A byte already in the buffer must be all that is left after each. */
    assert_int_equal(cn_buf_put_u8(&b, 0x99), CN_OK);
    assert_int_equal(cn_rec_rjour_add(device, 0, &b), CN_EINVAL);
    assert_int_equal(cn_rec_rjour_begin(cn_slice(rjour_ref, 0), 1, &b), CN_EINVAL);
    assert_int_equal(cn_rec_rjour_begin(cn_slice(NULL, 0), 1, &b), CN_EINVAL);
    assert_int_equal(cn_rec_rjour_begin(cn_slice(big, sizeof(big)), 1, &b), CN_ETOOBIG);
    assert_int_equal(cn_rec_rjour_begin(ref, CN_REC_RJOUR_ENTRIES_MAX + 1ull, &b), CN_ETOOBIG);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], 0x99);
    cn_buf_dispose(&b);
}

static void rjour_refused_on_read(void)
{
    /* The record's head up to the entries: {0: 1, 1: h'aa', 2: ... */
#define RJ 0xa3, 0x00, 0x01, 0x01, 0x41, 0xaa, 0x02
    static const uint8_t one_entry[] = {RJ, 0x81, 0x82};
    static const uint8_t seq0[] = {0x00}, seq1[] = {0x01};
    static const uint8_t short_dev[] = {RJ, 0x81, 0x82, 0x41, 0x00, 0x01};
    static const uint8_t long_dev[] = {RJ, 0x81, 0x82, 0x58, 0x21};
    static const uint8_t huge[] = {RJ, 0x99, 0x3e, 0x81};
    static const uint8_t max_truncated[] = {RJ, 0x99, 0x3e, 0x80};
    static const uint8_t triple[] = {RJ, 0x81, 0x83};
    static const uint8_t not_pair[] = {RJ, 0x81, 0x01};
    static const uint8_t not_list[] = {RJ, 0x01};
    static const uint8_t empty_list[] = {RJ, 0x80};
    static const uint8_t version[] = {0xa3, 0x00, 0x02, 0x01, 0x41, 0xaa, 0x02, 0x80};
    static const uint8_t unknown[] = {0xa4, 0x00, 0x01, 0x01, 0x41, 0xaa, 0x02, 0x80, 0x03, 0x00};
    static const uint8_t dup[] = {0xa4, 0x00, 0x01, 0x01, 0x41, 0xaa, 0x01, 0x41, 0xaa, 0x02, 0x80};
    static const uint8_t swapped[] = {0xa3, 0x00, 0x01, 0x02, 0x80, 0x01, 0x41, 0xaa};
    static const uint8_t no_ref[] = {0xa2, 0x00, 0x01, 0x02, 0x81, 0x82};
    static const uint8_t no_entries[] = {0xa2, 0x00, 0x01, 0x01, 0x41, 0xaa};
    static const uint8_t empty_ref[] = {0xa3, 0x00, 0x01, 0x01, 0x40, 0x02, 0x80};
    static const uint8_t text_ref[] = {0xa3, 0x00, 0x01, 0x01, 0x61, 0x61, 0x02, 0x80};
    static const uint8_t big_ref[] = {0xa3, 0x00, 0x01, 0x01, 0x59, 0x04, 0x01};
#undef RJ
    static uint8_t big_post[CN_REC_RJOUR_REF_MAX + 1 + 2];
    memset(big_post, 0x5a, sizeof(big_post));
    big_post[sizeof(big_post) - 2] = 0x02, big_post[sizeof(big_post) - 1] = 0x80;
    const struct {
        const uint8_t *pre;
        size_t npre;
        bool dev; /* a whole device follows pre */
        const uint8_t *post;
        size_t npost;
        int rc;
    } cases[] = {
        {one_entry, sizeof(one_entry), true, seq1, sizeof(seq1), CN_OK},
        {one_entry, sizeof(one_entry), true, seq0, sizeof(seq0), CN_EINVAL},
        {short_dev, sizeof(short_dev), false, NULL, 0, CN_EINVAL},
        {long_dev, sizeof(long_dev), true, seq0, sizeof(seq0), CN_ETOOBIG},
        {huge, sizeof(huge), false, NULL, 0, CN_ETOOBIG},
        {max_truncated, sizeof(max_truncated), false, NULL, 0, CN_EINVAL},
        {triple, sizeof(triple), true, seq1, sizeof(seq1), CN_EINVAL},
        {not_pair, sizeof(not_pair), false, NULL, 0, CN_EINVAL},
        {not_list, sizeof(not_list), false, NULL, 0, CN_EINVAL},
        {empty_list, sizeof(empty_list), false, NULL, 0, CN_OK},
        {version, sizeof(version), false, NULL, 0, CN_EVERSION},
        {unknown, sizeof(unknown), false, NULL, 0, CN_EINVAL},
        {dup, sizeof(dup), false, NULL, 0, CN_EINVAL},
        {swapped, sizeof(swapped), false, NULL, 0, CN_EINVAL},
        {no_ref, sizeof(no_ref), true, seq1, sizeof(seq1), CN_EINVAL},
        {no_entries, sizeof(no_entries), false, NULL, 0, CN_EINVAL},
        {empty_ref, sizeof(empty_ref), false, NULL, 0, CN_EINVAL},
        {text_ref, sizeof(text_ref), false, NULL, 0, CN_EINVAL},
        {big_ref, sizeof(big_ref), false, big_post, sizeof(big_post), CN_ETOOBIG},
    };
    cn_buf_t b;
    cn_slice_t ref;
    rjour_seen_t seen;
    cn_buf_init(&b);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rjour_build(&b, cases[i].pre, cases[i].npre, cases[i].dev, cases[i].post, cases[i].npost);
        assert_int_equal(rjour_decode(b.data, b.len, &ref, &seen), cases[i].rc);
        if (cases[i].rc == CN_OK) {
            assert_int_equal(ref.len, 1);
            assert_int_equal(ref.base[0], 0xaa);
            assert_int_equal(seen.n, cases[i].dev ? 1 : 0);
        }
    }
    /* Entries with no ref before them never reach the callback. */
    rjour_build(&b, no_ref, sizeof(no_ref), true, seq1, sizeof(seq1));
    assert_int_equal(rjour_decode(b.data, b.len, &ref, &seen), CN_EINVAL);
    assert_int_equal(seen.n, 0);
    cn_buf_dispose(&b);
}

static void test_rjour_roundtrip_and_negative(void **state)
{
    (void)state;
    rjour_roundtrip();
    rjour_refused_on_write();
    rjour_refused_on_read();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_roundtrip),
        cmocka_unit_test(test_device_empty_name),
        cmocka_unit_test(test_user_roundtrip),
        cmocka_unit_test(test_envelope_roundtrip_borrows),
        cmocka_unit_test(test_envelope_max_ciphertext),
        cmocka_unit_test(test_envelope_encode_with_header),
        cmocka_unit_test(test_envelope_reference),
        cmocka_unit_test(test_dedupe_prekey_roundtrip),
        cmocka_unit_test(test_dedupe_fast_form),
        cmocka_unit_test(test_cjour_roundtrip_and_negative),
        cmocka_unit_test(test_rjour_roundtrip_and_negative),
        cmocka_unit_test(test_push_roundtrip_and_negative),
        cmocka_unit_test(test_encode_appends),
        cmocka_unit_test(test_encoders_validate),
        cmocka_unit_test(test_hand_built_valid),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_fixed_lengths),
        cmocka_unit_test(test_oversized_fields),
        cmocka_unit_test(test_bad_handles_and_text),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_keys_missing_duplicate_unknown),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_flipped_bits),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
