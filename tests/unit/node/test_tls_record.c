/*
 * The TLS 1.3 record layer (node/tls_record.c) with both ends of a
 * connection: "server" and "client" share made-up traffic secrets, swapped.
 * Interoperability with OpenSSL's record layer is test_tls.c's business;
 * here: splitting, key updates, close, and every malformed record.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "node/tls_record.h"

#include <stdlib.h>
#include <string.h>

typedef struct ends {
    cn_tls_record_t server, client;
    cn_buf_t to_server, to_client; /* ciphertext in flight */
    cn_buf_t server_plain, client_plain;
} ends_t;

static void ends_init(ends_t *e, uint16_t suite)
{
    size_t len = suite == CN_TLS_AES_256_GCM_SHA384 ? 48 : 32;
    uint8_t cs[48], ss[48];
    for (size_t i = 0; i < sizeof(cs); i++) {
        cs[i] = (uint8_t)(i * 3 + 1);
        ss[i] = (uint8_t)(i * 5 + 2);
    }
    memset(e, 0, sizeof(*e));
    assert_int_equal(cn_tls_record_init(&e->server, suite, cs, ss, len), CN_OK);
    assert_int_equal(cn_tls_record_init(&e->client, suite, ss, cs, len), CN_OK);
    cn_buf_init(&e->to_server);
    cn_buf_init(&e->to_client);
    cn_buf_init(&e->server_plain);
    cn_buf_init(&e->client_plain);
}

static void ends_dispose(ends_t *e)
{
    cn_tls_record_dispose(&e->server);
    cn_tls_record_dispose(&e->client);
    cn_buf_dispose(&e->to_server);
    cn_buf_dispose(&e->to_client);
    cn_buf_dispose(&e->server_plain);
    cn_buf_dispose(&e->client_plain);
}

/* Client -> server in chunks of `chunk` bytes; the last result. */
static int to_server(ends_t *e, size_t chunk)
{
    int rc = CN_OK;
    for (size_t off = 0; off < e->to_server.len; off += chunk) {
        size_t k = e->to_server.len - off < chunk ? e->to_server.len - off : chunk;
        rc = cn_tls_record_open(&e->server, e->to_server.data + off, k, &e->server_plain,
                                &e->to_client);
    }
    cn_buf_reset(&e->to_server);
    return rc;
}

static int to_client(ends_t *e)
{
    int rc = cn_tls_record_open(&e->client, e->to_client.data, e->to_client.len, &e->client_plain,
                                &e->to_server);
    cn_buf_reset(&e->to_client);
    return rc;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * seed + (i >> 8));
    return p;
}

static void test_round_trip_every_suite(void **state)
{
    (void)state;
    static const uint16_t suites[] = {CN_TLS_AES_128_GCM_SHA256, CN_TLS_AES_256_GCM_SHA384,
                                      CN_TLS_CHACHA20_POLY1305_SHA256};
    for (size_t s = 0; s < 3; s++) {
        ends_t e;
        ends_init(&e, suites[s]);
        size_t n = 3 * CN_TLS_RECORD_PLAIN_MAX + 7; /* four records */
        uint8_t *data = pattern(n, 13);
        assert_int_equal(cn_tls_record_seal(&e.client, data, n, &e.to_server), CN_OK);
        assert_int_equal(e.to_server.len, n + 4 * (CN_TLS_RECORD_HEADER + 1 + CN_TLS_RECORD_TAG));
        assert_int_equal(e.client.wr.seq, 4);
        assert_int_equal(to_server(&e, 1000), CN_OK);
        assert_int_equal(e.server_plain.len, n);
        assert_memory_equal(e.server_plain.data, data, n);
        assert_int_equal(e.server.rd.seq, 4);
        assert_int_equal(cn_tls_record_seal(&e.server, (const uint8_t *)"pong", 4, &e.to_client),
                         CN_OK);
        assert_int_equal(to_client(&e), CN_OK);
        assert_int_equal(e.client_plain.len, 4);
        assert_memory_equal(e.client_plain.data, "pong", 4);
        /* A zero-length record is valid and carries nothing. */
        assert_int_equal(cn_tls_record_seal_type(&e.client, 23, NULL, 0, &e.to_server), CN_OK);
        assert_int_equal(to_server(&e, 64), CN_OK);
        assert_int_equal(e.server_plain.len, n);
        free(data);
        ends_dispose(&e);
    }
    cn_tls_record_t r;
    uint8_t secret[48] = {0};
    assert_int_equal(cn_tls_record_init(&r, 0x1304, secret, secret, 32), CN_EINVAL);
    assert_int_equal(cn_tls_record_init(&r, CN_TLS_AES_256_GCM_SHA384, secret, secret, 32),
                     CN_EINVAL);
}

/* One byte at a time: a split record is held until whole, then freed. */
static void test_split_records_held_then_freed(void **state)
{
    (void)state;
    ends_t e;
    ends_init(&e, CN_TLS_AES_128_GCM_SHA256);
    assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"abc", 3, &e.to_server), CN_OK);
    assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"defg", 4, &e.to_server),
                     CN_OK);
    size_t first = CN_TLS_RECORD_HEADER + 3 + 1 + CN_TLS_RECORD_TAG;
    for (size_t i = 0; i < e.to_server.len; i++) {
        assert_int_equal(
            cn_tls_record_open(&e.server, e.to_server.data + i, 1, &e.server_plain, &e.to_client),
            CN_OK);
        size_t want = i + 1 < first ? 0 : i + 1 < e.to_server.len ? 3 : 7;
        assert_int_equal(e.server_plain.len, want);
        if (i + 1 == first || i + 1 == e.to_server.len)
            assert_int_equal(e.server.partial.cap, 0);
    }
    assert_memory_equal(e.server_plain.data, "abcdefg", 7);
    assert_int_equal(e.to_client.len, 0);
    ends_dispose(&e);
}

static void test_key_update_both_ways(void **state)
{
    (void)state;
    ends_t e;
    ends_init(&e, CN_TLS_CHACHA20_POLY1305_SHA256);
    uint8_t old_rd[48];
    memcpy(old_rd, e.server.rd.secret, sizeof(old_rd));
    /* The client updates and asks the server to: the server answers at once. */
    assert_int_equal(cn_tls_record_key_update(&e.client, true, &e.to_server), CN_OK);
    assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"after", 5, &e.to_server),
                     CN_OK);
    assert_int_equal(to_server(&e, 7), CN_OK);
    assert_int_equal(e.server_plain.len, 5);
    assert_memory_equal(e.server_plain.data, "after", 5);
    assert_memory_not_equal(e.server.rd.secret, old_rd, 32);
    assert_int_equal(e.server.rd.seq, 1);
    assert_int_equal(e.server.wr.seq, 0); /* its KeyUpdate went out under the old key */
    assert_true(e.to_client.len > 0);
    assert_int_equal(cn_tls_record_seal(&e.server, (const uint8_t *)"new", 3, &e.to_client), CN_OK);
    assert_int_equal(to_client(&e), CN_OK);
    assert_int_equal(e.client_plain.len, 3);
    assert_memory_equal(e.client_plain.data, "new", 3);
    assert_int_equal(e.to_server.len, 0); /* not requested back */

    /* Without the request, only one direction moves. */
    assert_int_equal(cn_tls_record_key_update(&e.server, false, &e.to_client), CN_OK);
    assert_int_equal(to_client(&e), CN_OK);
    assert_int_equal(e.to_server.len, 0);
    assert_int_equal(cn_tls_record_seal(&e.server, (const uint8_t *)"x", 1, &e.to_client), CN_OK);
    assert_int_equal(to_client(&e), CN_OK);
    assert_int_equal(e.client_plain.len, 4);
    ends_dispose(&e);
}

/* The send side moves to a new key on its own after records_per_key. */
static void test_send_key_rotates(void **state)
{
    (void)state;
    ends_t e;
    ends_init(&e, CN_TLS_AES_256_GCM_SHA384);
    e.client.records_per_key = 3;
    uint8_t first[48];
    memcpy(first, e.client.wr.secret, sizeof(first));
    uint8_t *data = pattern(10 * 100, 7);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cn_tls_record_seal(&e.client, data + i * 100, 100, &e.to_server), CN_OK);
    assert_memory_not_equal(e.client.wr.secret, first, 48);
    assert_true(e.client.wr.seq <= 3);
    assert_int_equal(to_server(&e, 4096), CN_OK);
    assert_int_equal(e.server_plain.len, 1000);
    assert_memory_equal(e.server_plain.data, data, 1000);
    assert_memory_equal(e.server.rd.secret, e.client.wr.secret, 48);
    free(data);
    ends_dispose(&e);
}

/* KeyUpdates in a row are bounded; application data between them resets
 * the count. */
static void test_key_update_flood_refused(void **state)
{
    (void)state;
    ends_t e;
    ends_init(&e, CN_TLS_AES_128_GCM_SHA256);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < CN_TLS_KEY_UPDATES_MAX; i++)
            assert_int_equal(cn_tls_record_key_update(&e.client, true, &e.to_server), CN_OK);
        assert_int_equal(to_server(&e, 4096), CN_OK);
        /* The server's answers, then data, which resets the client's count. */
        assert_int_equal(cn_tls_record_seal(&e.server, (const uint8_t *)"s", 1, &e.to_client),
                         CN_OK);
        assert_int_equal(to_client(&e), CN_OK);
        assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"d", 1, &e.to_server),
                         CN_OK);
        assert_int_equal(to_server(&e, 4096), CN_OK);
    }
    assert_int_equal(e.server_plain.len, 2);
    assert_int_equal(e.client_plain.len, 2);
    for (int i = 0; i <= CN_TLS_KEY_UPDATES_MAX; i++)
        assert_int_equal(cn_tls_record_key_update(&e.client, false, &e.to_server), CN_OK);
    assert_int_equal(to_server(&e, 4096), CN_EPROTO);
    assert_int_equal(to_client(&e), CN_EPROTO); /* the alert reached the client */
    ends_dispose(&e);
}

static void test_close_notify(void **state)
{
    (void)state;
    ends_t e;
    ends_init(&e, CN_TLS_AES_128_GCM_SHA256);
    assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"last", 4, &e.to_server),
                     CN_OK);
    cn_tls_record_close(&e.client, &e.to_server);
    cn_tls_record_close(&e.client, &e.to_server); /* once */
    assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"no", 2, &e.to_server),
                     CN_ECLOSED);
    assert_int_equal(cn_tls_record_key_update(&e.client, false, &e.to_server), CN_ECLOSED);
    size_t two = 2 * (CN_TLS_RECORD_HEADER + 1 + CN_TLS_RECORD_TAG) + 4 + 2;
    assert_int_equal(e.to_server.len, two);
    /* Bytes after the close_notify are ignored. */
    assert_int_equal(cn_buf_append(&e.to_server, "trailing garbage", 16), CN_OK);
    assert_int_equal(to_server(&e, 4096), CN_ECLOSED);
    assert_int_equal(e.server_plain.len, 4);
    assert_int_equal(
        cn_tls_record_open(&e.server, (const uint8_t *)"x", 1, &e.server_plain, &e.to_client),
        CN_ECLOSED);
    /* The server may still answer (half-close) and close in turn. */
    assert_int_equal(cn_tls_record_seal(&e.server, (const uint8_t *)"bye", 3, &e.to_client), CN_OK);
    cn_tls_record_close(&e.server, &e.to_client);
    assert_int_equal(to_client(&e), CN_ECLOSED);
    assert_int_equal(e.client_plain.len, 3);
    ends_dispose(&e);
}

/* The server's answer to a bad record: CN_EPROTO, a fatal alert the client
 * opens as the end of the connection, and every later feed refused. */
static void expect_refused(ends_t *e)
{
    size_t plain = e->server_plain.len;
    assert_int_equal(to_server(e, 4096), CN_EPROTO);
    assert_int_equal(e->server_plain.len, plain);
    assert_int_equal(e->server.status, CN_EPROTO);
    assert_true(e->to_client.len == CN_TLS_RECORD_HEADER + 2 + 1 + CN_TLS_RECORD_TAG);
    assert_int_equal(to_client(e), CN_EPROTO); /* a fatal alert, not a close_notify */
    assert_int_equal(cn_tls_record_seal(&e->server, (const uint8_t *)"x", 1, &e->to_client),
                     CN_ECLOSED);
    assert_int_equal(
        cn_tls_record_open(&e->server, (const uint8_t *)"\x17", 1, &e->server_plain, &e->to_client),
        CN_EPROTO);
}

static void test_bad_records_refused(void **state)
{
    (void)state;
    enum {
        FLIP_BODY,
        FLIP_TAG,
        FLIP_HEADER_LEN,
        TYPE_HANDSHAKE,
        TYPE_CCS,
        TOO_LONG,
        TOO_SHORT,
        ALL_PADDING,
        INNER_UNKNOWN,
        INNER_TOO_LONG,
        HS_NOT_KEY_UPDATE,
        HS_SPLIT,
        HS_TRAILING,
        HS_BAD_REQUEST,
        HS_BAD_LENGTH,
        ALERT_LONG,
        REPLAYED,
        NCASES
    };
    for (int c = 0; c < NCASES; c++) {
        ends_t e;
        ends_init(&e, CN_TLS_AES_128_GCM_SHA256);
        cn_buf_t *o = &e.to_server;
        /* A good record first: the refusal must not undo it. */
        assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"ok", 2, o), CN_OK);
        assert_int_equal(to_server(&e, 4096), CN_OK);
        size_t at = o->len;
        switch (c) {
        case FLIP_BODY:
        case FLIP_TAG:
        case FLIP_HEADER_LEN: /* the header is authenticated data */
            assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"hello", 5, o), CN_OK);
            if (c == FLIP_HEADER_LEN) {
                o->data[at + 4] -= 1;
                o->len -= 1;
            } else {
                o->data[c == FLIP_BODY ? at + 6 : o->len - 1] ^= 0x40;
            }
            break;
        case TYPE_HANDSHAKE:
        case TYPE_CCS:
            assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"hello", 5, o), CN_OK);
            o->data[at] = c == TYPE_HANDSHAKE ? 22 : 20;
            break;
        case TOO_LONG:
            assert_int_equal(cn_buf_append(o, "\x17\x03\x03\x41\x01", 5), CN_OK);
            break;
        case TOO_SHORT:
            assert_int_equal(cn_buf_append(o, "\x17\x03\x03\x00\x10", 5), CN_OK);
            assert_int_equal(cn_buf_append(o, "0123456789abcdef", 16), CN_OK);
            break;
        case ALL_PADDING:
            assert_int_equal(cn_tls_record_seal_type(&e.client, 0, (const uint8_t *)"\0\0", 2, o),
                             CN_OK);
            break;
        case INNER_UNKNOWN:
            assert_int_equal(cn_tls_record_seal_type(&e.client, 24, (const uint8_t *)"x", 1, o),
                             CN_OK);
            break;
        case INNER_TOO_LONG: { /* 2^14 + 1 content bytes: inner plaintext one over */
            uint8_t *big = pattern(CN_TLS_RECORD_PLAIN_MAX + 1, 1);
            assert_int_equal(
                cn_tls_record_seal_type(&e.client, 23, big, CN_TLS_RECORD_PLAIN_MAX + 1, o), CN_OK);
            free(big);
            break;
        }
        case HS_NOT_KEY_UPDATE: /* a NewSessionTicket from a client */
            assert_int_equal(cn_tls_record_seal_type(&e.client, 22,
                                                     (const uint8_t *)"\x04\x00\x00\x01\x00", 5, o),
                             CN_OK);
            break;
        case HS_SPLIT:
            assert_int_equal(
                cn_tls_record_seal_type(&e.client, 22, (const uint8_t *)"\x18\x00\x00\x01", 4, o),
                CN_OK);
            break;
        case HS_TRAILING:
            assert_int_equal(cn_tls_record_seal_type(
                                 &e.client, 22, (const uint8_t *)"\x18\x00\x00\x01\x00\x18", 6, o),
                             CN_OK);
            break;
        case HS_BAD_REQUEST:
            assert_int_equal(cn_tls_record_seal_type(&e.client, 22,
                                                     (const uint8_t *)"\x18\x00\x00\x01\x02", 5, o),
                             CN_OK);
            break;
        case HS_BAD_LENGTH:
            assert_int_equal(cn_tls_record_seal_type(
                                 &e.client, 22, (const uint8_t *)"\x18\x00\x00\x02\x00\x00", 6, o),
                             CN_OK);
            break;
        case ALERT_LONG:
            assert_int_equal(
                cn_tls_record_seal_type(&e.client, 21, (const uint8_t *)"\x01\x00\x00", 3, o),
                CN_OK);
            break;
        case REPLAYED: { /* the same record twice: the second fails its nonce */
            assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"once", 4, o), CN_OK);
            size_t len = o->len - at;
            assert_int_equal(cn_buf_append(o, o->data + at, len), CN_OK);
            break;
        }
        }
        memmove(o->data, o->data + at, o->len - at);
        o->len -= at;
        if (c == REPLAYED) {
            size_t half = o->len / 2;
            assert_int_equal(
                cn_tls_record_open(&e.server, o->data, half, &e.server_plain, &e.to_client), CN_OK);
            memmove(o->data, o->data + half, half);
            o->len = half;
            assert_int_equal(e.server_plain.len, 6);
        }
        expect_refused(&e);
        ends_dispose(&e);
    }
}

/* A peer's error alert ends the input without an alert back; user_canceled
 * does not. */
static void test_peer_alerts(void **state)
{
    (void)state;
    ends_t e;
    ends_init(&e, CN_TLS_AES_128_GCM_SHA256);
    assert_int_equal(
        cn_tls_record_seal_type(&e.client, 21, (const uint8_t *)"\x01\x5a", 2, &e.to_server),
        CN_OK);
    assert_int_equal(cn_tls_record_seal(&e.client, (const uint8_t *)"more", 4, &e.to_server),
                     CN_OK);
    assert_int_equal(
        cn_tls_record_seal_type(&e.client, 21, (const uint8_t *)"\x02\x28", 2, &e.to_server),
        CN_OK);
    assert_int_equal(to_server(&e, 4096), CN_EPROTO);
    assert_int_equal(e.server_plain.len, 4);
    assert_int_equal(e.to_client.len, 0);
    ends_dispose(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_suite),
        cmocka_unit_test(test_split_records_held_then_freed),
        cmocka_unit_test(test_key_update_both_ways),
        cmocka_unit_test(test_send_key_rotates),
        cmocka_unit_test(test_key_update_flood_refused),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_bad_records_refused),
        cmocka_unit_test(test_peer_alerts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
