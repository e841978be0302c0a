/*
 * Message content codec: round trip, exact encoding, and negative tests
 * (truncated, wrong version, wrong types, duplicates, nesting, trailing
 * bytes, oversize, invalid UTF-8, flipped bits never crash).
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "client/cn_client.h"

#include <stdlib.h>
#include <string.h>

static void decode_hex(const char *hex, uint8_t *out, size_t *n)
{
    *n = strlen(hex) / 2;
    assert_int_equal(cn_hex_decode(out, *n, hex), CN_OK);
}

static void test_roundtrip(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    const char *text = "h\xc3\xa9llo \"world\"\n";
    assert_int_equal(cn_content_encode_text(&b, text, strlen(text), 1700000000123ull), CN_OK);
    cn_content_t c;
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.version, 1);
    assert_int_equal(c.type, CN_CONTENT_TEXT);
    assert_int_equal(c.text_len, strlen(text));
    assert_memory_equal(c.text, text, c.text_len);
    assert_int_equal(c.sent_at, 1700000000123ull);
    cn_buf_dispose(&b);
}

static void test_known_encoding(void **state)
{
    (void)state;
    /* {0: 1, 1: 0, 2: "hi", 3: 5} */
    const uint8_t want[] = {0xa4, 0x00, 0x01, 0x01, 0x00, 0x02, 0x62, 'h', 'i', 0x03, 0x05};
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_content_encode_text(&b, "hi", 2, 5), CN_OK);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    cn_buf_dispose(&b);
}

static void test_empty_and_max(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    cn_content_t c;
    assert_int_equal(cn_content_encode_text(&b, "", 0, 0), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.text_len, 0);
    assert_non_null(c.text);
    cn_buf_reset(&b);
    char *big = malloc(CN_CLIENT_TEXT_MAX + 1);
    memset(big, 'x', CN_CLIENT_TEXT_MAX + 1);
    assert_int_equal(cn_content_encode_text(&b, big, CN_CLIENT_TEXT_MAX, 1), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.text_len, CN_CLIENT_TEXT_MAX);
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode_text(&b, big, CN_CLIENT_TEXT_MAX + 1, 1), CN_ETOOBIG);
    assert_int_equal(cn_content_encode_text(&b, "\xc3", 1, 1), CN_EINVAL);
    free(big);
    cn_buf_dispose(&b);
}

static void expect_decode(const char *hex, int want)
{
    uint8_t buf[256];
    size_t n;
    cn_content_t c;
    decode_hex(hex, buf, &n);
    int rc = cn_content_decode(buf, n, &c);
    if (rc != want)
        fail_msg("%s: got %d want %d", hex, rc, want);
}

static void test_negative(void **state)
{
    (void)state;
    expect_decode("a40001010002626869030"
                  "5",
                  CN_OK); /* the known encoding */
    expect_decode("", CN_EINVAL);
    expect_decode("a4000101000262686903", CN_EINVAL); /* truncated value */
    expect_decode("a400010100026268", CN_EINVAL);     /* truncated text */
    expect_decode("a4000201000262686903"
                  "05",
                  CN_EVERSION); /* version 2 */
    expect_decode("a4000001000262686903"
                  "05",
                  CN_EVERSION); /* version 0 */
    expect_decode("a300010100026268"
                  "69",
                  CN_OK); /* sent_at is optional */
    expect_decode("a2000101"
                  "00",
                  CN_EINVAL); /* text type without text */
    expect_decode("a20001"
                  "0109",
                  CN_OK); /* a reserved type needs no text (5 is keys now) */
    expect_decode("a1"
                  "0001",
                  CN_EINVAL); /* no type */
    expect_decode("a1"
                  "0100",
                  CN_EINVAL);                             /* no version */
    expect_decode("a40001010002626869030500", CN_EINVAL); /* trailing byte */
    expect_decode("a4000100000262686903"
                  "05",
                  CN_EINVAL); /* duplicate key 0 */
    expect_decode("a4006131010002626869"
                  "0305",
                  CN_EINVAL); /* version as text */
    expect_decode("a40001010002426869"
                  "0305",
                  CN_EINVAL); /* text as bytes */
    expect_decode("a4000101000262c328"
                  "0305",
                  CN_EINVAL); /* invalid UTF-8 */
    expect_decode("a40001010002626869"
                  "0320",
                  CN_EINVAL);               /* negative sent_at */
    expect_decode("8400010203", CN_EINVAL); /* array, not map */
    expect_decode("bf000101000262686903"
                  "05ff",
                  CN_EINVAL); /* indefinite map */
    expect_decode("a4000101000262686963"
                  "a0",
                  CN_EINVAL); /* unknown key, nested */
    expect_decode("a50001010002626869"
                  "1863"
                  "a0"
                  "0305",
                  CN_EINVAL); /* nested value */
    expect_decode("a50001010002626869"
                  "1863"
                  "01"
                  "0305",
                  CN_OK); /* unknown scalar */
    expect_decode("a40001010002"
                  "7f6268ff"
                  "0305",
                  CN_EINVAL); /* indefinite text */
    expect_decode("a4000101000262686903"
                  "c105",
                  CN_EINVAL); /* tagged value */
    expect_decode("a4000101000262686903"
                  "f93c00",
                  CN_EINVAL);        /* float */
    expect_decode("b1", CN_ETOOBIG); /* 17 entries */
    expect_decode("bb"
                  "ffffffffffffffff",
                  CN_ETOOBIG); /* absurd count */
    expect_decode("a400010100027a"
                  "ffffffff"
                  "0305",
                  CN_EINVAL); /* absurd text length */
}

static void test_oversize_input(void **state)
{
    (void)state;
    size_t n = CN_CLIENT_CONTENT_MAX + 1;
    uint8_t *p = calloc(1, n);
    cn_content_t c;
    assert_int_equal(cn_content_decode(p, n, &c), CN_ETOOBIG);
    free(p);
    /* Text above the limit, within the input bound. */
    cn_buf_t b;
    cn_buf_init(&b);
    const uint8_t head[] = {0xa3,
                            0x00,
                            0x01,
                            0x01,
                            0x00,
                            0x02,
                            0x79,
                            (CN_CLIENT_TEXT_MAX + 1) >> 8,
                            (CN_CLIENT_TEXT_MAX + 1) & 0xff};
    assert_int_equal(cn_buf_append(&b, head, sizeof(head)), CN_OK);
    for (size_t i = 0; i < CN_CLIENT_TEXT_MAX + 1; i++)
        assert_int_equal(cn_buf_put_u8(&b, 'a'), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_ETOOBIG);
    cn_buf_dispose(&b);
}

static void test_bit_flips(void **state)
{
    (void)state;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_content_encode_text(&b, "bit flips", 9, 42), CN_OK);
    int ok = 0;
    for (size_t bit = 0; bit < b.len * 8; bit++) {
        uint8_t copy[64];
        memcpy(copy, b.data, b.len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cn_content_t c;
        int rc = cn_content_decode(copy, b.len, &c);
        assert_true(rc == CN_OK || rc == CN_EINVAL || rc == CN_EVERSION || rc == CN_ETOOBIG);
        if (rc == CN_OK) {
            ok++;
            assert_true(c.text == NULL || c.text_len <= b.len);
        }
    }
    assert_true(ok < (int)(b.len * 8)); /* most flips are caught */
    /* Every truncation fails. */
    for (size_t n = 0; n < b.len; n++) {
        cn_content_t c;
        assert_int_not_equal(cn_content_decode(b.data, n, &c), CN_OK);
    }
    cn_buf_dispose(&b);
}

static void test_receipt_and_typing(void **state)
{
    (void)state;
    uint8_t ids[3 * CN_MESSAGE_ID_LEN];
    for (size_t i = 0; i < sizeof(ids); i++)
        ids[i] = (uint8_t)i;
    cn_buf_t b;
    cn_buf_init(&b);
    cn_content_t c;
    assert_int_equal(cn_content_encode_receipt(&b, CN_RECEIPT_READ, ids, 3, 77), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.type, CN_CONTENT_RECEIPT);
    assert_int_equal(c.receipt_status, CN_RECEIPT_READ);
    assert_int_equal(c.n_ids, 3);
    assert_memory_equal(c.ids, ids, sizeof(ids));
    assert_int_equal(c.sent_at, 77);
    assert_null(c.text);
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode_typing(&b, true, 5), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.type, CN_CONTENT_TYPING);
    assert_int_equal(c.typing, 1);
    /* Encoder refusals. */
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode_receipt(&b, 3, ids, 1, 0), CN_EINVAL);
    assert_int_equal(cn_content_encode_receipt(&b, CN_RECEIPT_READ, ids, 0, 0), CN_EINVAL);
    assert_int_equal(
        cn_content_encode_receipt(&b, CN_RECEIPT_READ, ids, CN_CLIENT_RECEIPT_IDS_MAX + 1, 0),
        CN_ETOOBIG);
    /* Decoder refusals: ids not a multiple of 16, a bad status, no ids, no typing state. */
    static const uint8_t odd_ids[] = {0xa4, 0x00, 0x01, 0x01, 0x01, 0x04,
                                      0x01, 0x05, 0x43, 1,    2,    3};
    assert_int_equal(cn_content_decode(odd_ids, sizeof(odd_ids), &c), CN_EINVAL);
    static const uint8_t bad_status[] = {0xa4, 0x00, 0x01, 0x01, 0x01, 0x04, 0x09, 0x05, 0x50,
                                         0,    1,    2,    3,    4,    5,    6,    7,    8,
                                         9,    10,   11,   12,   13,   14,   15};
    assert_int_equal(cn_content_decode(bad_status, sizeof(bad_status), &c), CN_EINVAL);
    static const uint8_t no_ids[] = {0xa3, 0x00, 0x01, 0x01, 0x01, 0x04, 0x01};
    assert_int_equal(cn_content_decode(no_ids, sizeof(no_ids), &c), CN_EINVAL);
    static const uint8_t no_state[] = {0xa2, 0x00, 0x01, 0x01, 0x02};
    assert_int_equal(cn_content_decode(no_state, sizeof(no_state), &c), CN_EINVAL);
    static const uint8_t typing_2[] = {0xa3, 0x00, 0x01, 0x01, 0x02, 0x06, 0x02};
    assert_int_equal(cn_content_decode(typing_2, sizeof(typing_2), &c), CN_EINVAL);
    cn_buf_dispose(&b);
}

/* Issue 4 content: a file message with a sync peer, a sender key, keys. */
static void test_conversation_types(void **state)
{
    (void)state;
    uint8_t mid[16], key[32], dig[32], sha[32], gid[16], hk[32], ak[32];
    memset(mid, 1, sizeof(mid));
    memset(key, 2, sizeof(key));
    memset(dig, 3, sizeof(dig));
    memset(sha, 4, sizeof(sha));
    memset(gid, 5, sizeof(gid));
    memset(hk, 6, sizeof(hk));
    memset(ak, 7, sizeof(ak));
    cn_content_t in = {.version = 1, .type = CN_CONTENT_FILE, .sent_at = 9};
    in.media_id = mid;
    in.media_key = key;
    in.media_digest = dig;
    in.file_sha256 = sha;
    in.file_size = 12345;
    in.file_name = "a.txt";
    in.file_name_len = 5;
    in.file_type = "text/plain";
    in.file_type_len = 10;
    in.peer = "bob";
    in.peer_len = 3;
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_content_encode(&b, &in), CN_OK);
    cn_content_t c;
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.type, CN_CONTENT_FILE);
    assert_memory_equal(c.media_id, mid, 16);
    assert_memory_equal(c.media_key, key, 32);
    assert_memory_equal(c.media_digest, dig, 32);
    assert_memory_equal(c.file_sha256, sha, 32);
    assert_int_equal(c.file_size, 12345);
    assert_int_equal(c.file_name_len, 5);
    assert_memory_equal(c.file_name, "a.txt", 5);
    assert_int_equal(c.peer_len, 3);
    assert_memory_equal(c.peer, "bob", 3);
    /* Truncated anywhere: refused, never a crash. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_not_equal(cn_content_decode(b.data, n, &c), CN_OK);
    /* A file without its key is refused. */
    in.media_key = NULL;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &in), CN_EINVAL);
    /* A peer that is not a handle is refused. */
    in.media_key = key;
    in.peer = "Bob!";
    in.peer_len = 4;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &in), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_EINVAL);

    cn_content_t sk = {.version = 1, .type = CN_CONTENT_SENDER_KEY, .group_id = gid};
    uint8_t dist[73];
    memset(dist, 8, sizeof(dist));
    sk.skdist = dist;
    sk.skdist_len = sizeof(dist);
    sk.group_name = "friends";
    sk.group_name_len = 7;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &sk), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_int_equal(c.type, CN_CONTENT_SENDER_KEY);
    assert_memory_equal(c.group_id, gid, 16);
    assert_int_equal(c.skdist_len, sizeof(dist));
    assert_int_equal(c.group_name_len, 7);
    sk.skdist = NULL; /* a sender key message needs the key */
    sk.skdist_len = 0;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &sk), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_EINVAL);

    cn_content_t ks = {.version = 1, .type = CN_CONTENT_KEYS, .history_key = hk};
    ks.archive_key = ak;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &ks), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_OK);
    assert_memory_equal(c.history_key, hk, 32);
    assert_memory_equal(c.archive_key, ak, 32);
    ks.archive_key = NULL;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &ks), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &c), CN_EINVAL);
    cn_buf_dispose(&b);
}

static void test_conversation_negative(void **state)
{
    (void)state;
    expect_decode("a50001010002626869"
                  "0741aa"
                  "0305",
                  CN_EINVAL); /* group id of 1 byte */
    expect_decode("a50001010002626869"
                  "0843626f62"
                  "0305",
                  CN_EINVAL); /* peer as bytes */
    expect_decode("a50001010002626869"
                  "08626e6f"
                  "0305",
                  CN_EINVAL); /* peer shorter than a handle */
    expect_decode("a50001010002626869"
                  "0863626f62"
                  "0305",
                  CN_OK); /* peer "bob" */
    expect_decode("a40001010302626869"
                  "0305",
                  CN_EINVAL); /* sender key type without group and key */
    expect_decode("a40001010402626869"
                  "0305",
                  CN_EINVAL); /* file type without media fields */
    expect_decode("a30001010503"
                  "05",
                  CN_EINVAL); /* keys type without keys */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_known_encoding),
        cmocka_unit_test(test_empty_and_max),
        cmocka_unit_test(test_negative),
        cmocka_unit_test(test_oversize_input),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_receipt_and_typing),
        cmocka_unit_test(test_conversation_types),
        cmocka_unit_test(test_conversation_negative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
