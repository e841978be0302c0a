/*
 * cn_tls against a real OpenSSL client in the same process: a self-signed
 * Ed25519 certificate is made in a temp dir, the handshake is pumped by hand,
 * then data, exporters, close_notify, key updates, every cipher suite, a TLS
 * 1.2-only client, garbage input and broken certificate files are checked.
 * After the handshake the server's records are node/tls_record.c's, so every
 * test here is also an interoperability test against OpenSSL's record layer.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "node/transport.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL "EXPORTER-Channel-Binding"

static char g_dir[256];
static char g_cert[300];
static char g_key[300];
static char g_other_key[300];
static X509 *g_x509;

typedef struct pair {
    SSL_CTX *sctx;
    cn_tls_t *server;
    SSL_CTX *cctx;
    SSL *client;
    BIO *c_in;  /* client reads from it */
    BIO *c_out; /* client writes to it */
    cn_buf_t plain;
    cn_buf_t sout; /* the server's ciphertext, not yet moved to the client */
    int server_rc; /* last cn_tls_feed result */
} pair_t;

static int write_pem_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *k)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    int ok = X509_set_version(x, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -60) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL && X509_set_pubkey(x, k) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"localhost", -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, name) == 1 && X509_sign(x, k, NULL) > 0; /* Ed25519: no md */
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int setup_certs(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/cn_test_tls.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    snprintf(g_other_key, sizeof(g_other_key), "%s/other.pem", g_dir);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    int rc = -1;
    if (!k || !other)
        goto out;
    g_x509 = make_cert(k);
    FILE *f = fopen(g_cert, "w");
    if (!g_x509 || !f)
        goto out;
    int ok = PEM_write_X509(f, g_x509);
    if (fclose(f) != 0 || ok != 1)
        goto out;
    if (write_pem_key(g_key, k) != 0 || write_pem_key(g_other_key, other) != 0)
        goto out;
    rc = 0;
out:
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    return rc;
}

static int teardown_certs(void **state)
{
    (void)state;
    X509_free(g_x509);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/** A client trusting only our certificate, checking the name "localhost". */
static void pair_init(pair_t *p, int client_max_version)
{
    memset(p, 0, sizeof(*p));
    cn_buf_init(&p->plain);
    cn_buf_init(&p->sout);
    p->sctx = cn_tls_server_ctx_new(g_cert, g_key);
    assert_non_null(p->sctx);
    p->server = cn_tls_new(p->sctx, &p->sout);
    assert_non_null(p->server);
    p->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->cctx);
    assert_int_equal(SSL_CTX_set_max_proto_version(p->cctx, client_max_version), 1);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(p->cctx), g_x509), 1);
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    assert_int_equal(SSL_CTX_set_alpn_protos(p->cctx, alpn, sizeof(alpn) - 1), 0);
    p->client = SSL_new(p->cctx);
    assert_non_null(p->client);
    assert_int_equal(SSL_set1_host(p->client, "localhost"), 1);
    p->c_in = BIO_new(BIO_s_mem());
    p->c_out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(p->c_in, -1);
    SSL_set_bio(p->client, p->c_in, p->c_out);
    SSL_set_connect_state(p->client);
}

static void pair_dispose(pair_t *p)
{
    SSL_free(p->client);
    SSL_CTX_free(p->cctx);
    cn_tls_free(p->server);
    SSL_CTX_free(p->sctx);
    cn_buf_dispose(&p->plain);
    cn_buf_dispose(&p->sout);
    ERR_clear_error();
}

/* Moves pending client output to the server without pumping back. */
static void client_to_server(pair_t *p)
{
    char buf[4096];
    int n;
    while ((n = BIO_read(p->c_out, buf, sizeof(buf))) > 0) {
        p->server_rc = cn_tls_feed(p->server, (const uint8_t *)buf, (size_t)n, &p->plain);
        if (p->server_rc != CN_OK)
            break;
    }
}

/** Moves client output to the server and server output to the client. */
static void pump(pair_t *p)
{
    client_to_server(p);
    if (p->sout.len > 0)
        assert_int_equal(BIO_write(p->c_in, p->sout.data, (int)p->sout.len), (int)p->sout.len);
    cn_buf_reset(&p->sout);
}

/** Runs the handshake; returns the client's final SSL_do_handshake result. */
static int handshake(pair_t *p)
{
    int r = 0;
    for (int i = 0; i < 10; i++) {
        r = SSL_do_handshake(p->client);
        pump(p);
        if ((r == 1 && cn_tls_handshake_done(p->server)) || p->server_rc != CN_OK)
            break;
    }
    if (r != 1)
        r = SSL_do_handshake(p->client);
    return r;
}

/** Server to client, several records' worth. */
static void server_to_client_big(pair_t *p)
{
    size_t big = 100000;
    uint8_t *data = malloc(big);
    uint8_t *got = malloc(big);
    assert_non_null(data);
    assert_non_null(got);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 31);
    assert_int_equal(cn_tls_write(p->server, data, big), CN_OK);
    assert_int_equal(cn_tls_write(p->server, data, 0), CN_OK);
    pump(p);
    size_t have = 0;
    while (have < big) {
        int n = SSL_read(p->client, got + have, (int)(big - have));
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, data, big);
    free(data);
    free(got);
}

static void test_handshake_data_exporter(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_3_VERSION);
    assert_false(cn_tls_handshake_done(p.server));
    uint8_t ex_server[32], ex_client[32];
    assert_int_equal(cn_tls_exporter(p.server, ex_server), CN_EINVAL);
    assert_int_equal(cn_tls_write(p.server, (const uint8_t *)"x", 1), CN_EINVAL);

    assert_int_equal(handshake(&p), 1);
    assert_int_equal(p.server_rc, CN_OK);
    assert_true(cn_tls_handshake_done(p.server));
    assert_int_equal(SSL_version(p.client), TLS1_3_VERSION);
    assert_int_equal(SSL_get_verify_result(p.client), X509_V_OK);
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(p.client, &alpn, &alpn_len);
    assert_int_equal(alpn_len, 8);
    assert_memory_equal(alpn, "http/1.1", 8);

    /* RFC 9266: both ends derive the same channel binding. */
    assert_int_equal(cn_tls_exporter(p.server, ex_server), CN_OK);
    assert_int_equal(
        SSL_export_keying_material(p.client, ex_client, 32, LABEL, strlen(LABEL), NULL, 0, 0), 1);
    assert_memory_equal(ex_server, ex_client, 32);

    /* Client to server. */
    const char hello[] = "GET /ws HTTP/1.1\r\n";
    assert_int_equal(SSL_write(p.client, hello, (int)strlen(hello)), (int)strlen(hello));
    pump(&p);
    assert_int_equal(p.server_rc, CN_OK);
    assert_int_equal(p.plain.len, strlen(hello));
    assert_memory_equal(p.plain.data, hello, p.plain.len);
    /* A small record costs a small buffer, not a record's worth of room. */
    assert_true(p.plain.cap < 1024);

    server_to_client_big(&p);

    /* Our close_notify reaches the client. */
    cn_tls_shutdown(p.server);
    pump(&p);
    char c;
    assert_int_equal(SSL_read(p.client, &c, 1), 0);
    assert_int_equal(SSL_get_error(p.client, 0), SSL_ERROR_ZERO_RETURN);
    pair_dispose(&p);
}

/* Client to server, many full records: some decrypted in place, some through
 * the record buffer; every byte arrives once, in order. */
static void test_client_to_server_big(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_3_VERSION);
    assert_int_equal(handshake(&p), 1);
    size_t big = 200000;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 9));
    for (size_t off = 0; off < big;) {
        size_t n = big - off < 30000 ? big - off : 30000;
        assert_int_equal(SSL_write(p.client, data + off, (int)n), (int)n);
        off += n;
        pump(&p);
        assert_int_equal(p.server_rc, CN_OK);
        assert_int_equal(p.plain.len, off);
    }
    assert_memory_equal(p.plain.data, data, big);
    free(data);
    pair_dispose(&p);
}

/* The session holds no ciphertext of its own between records: input is read
 * in place (a partial record is held only until it is whole, even one byte
 * at a time) and output lands in the caller's buffer, which an idle
 * connection may free. */
static void test_no_buffers_of_its_own(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_3_VERSION);
    assert_int_equal(handshake(&p), 1);
    server_to_client_big(&p);
    cn_buf_dispose(&p.sout); /* what release_idle_buffers does */
    assert_int_equal(SSL_write(p.client, "one byte at a time", 18), 18);
    char rec[64];
    int n = BIO_read(p.c_out, rec, sizeof(rec));
    assert_true(n > 18);
    for (int i = 0; i < n; i++) {
        assert_int_equal(cn_tls_feed(p.server, (const uint8_t *)rec + i, 1, &p.plain), CN_OK);
        assert_int_equal(p.plain.len, i + 1 < n ? 0 : 18);
        assert_int_equal(p.sout.len, 0);
    }
    assert_memory_equal(p.plain.data, "one byte at a time", 18);
    assert_int_equal(cn_tls_write(p.server, (const uint8_t *)"back", 4), CN_OK);
    assert_true(p.sout.len >= 4 + 16 + 5); /* header, data, content type, tag */
    pump(&p);
    char got[8];
    assert_int_equal(SSL_read(p.client, got, sizeof(got)), 4);
    assert_memory_equal(got, "back", 4);
    server_to_client_big(&p);
    pair_dispose(&p);
}

static void test_client_close_notify(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_3_VERSION);
    assert_int_equal(handshake(&p), 1);
    /* Data and close_notify in one read: the data is still delivered. */
    assert_int_equal(SSL_write(p.client, "last", 4), 4);
    assert_true(SSL_shutdown(p.client) >= 0);
    pump(&p);
    assert_int_equal(p.server_rc, CN_ECLOSED);
    assert_int_equal(p.plain.len, 4);
    assert_memory_equal(p.plain.data, "last", 4);
    pair_dispose(&p);
}

static void test_tls12_client_refused(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_2_VERSION);
    assert_int_not_equal(handshake(&p), 1);
    assert_int_equal(p.server_rc, CN_EPROTO);
    assert_false(cn_tls_handshake_done(p.server));
    pair_dispose(&p);
}

static void test_garbage_is_eproto(void **state)
{
    (void)state;
    SSL_CTX *ctx = cn_tls_server_ctx_new(g_cert, g_key);
    assert_non_null(ctx);
#define IN(s)                                                                                      \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    static const struct {
        const char *p;
        size_t n;
    } inputs[] = {
        IN("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),        /* plain HTTP on the TLS port */
        IN("\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff"), /* a one-byte ClientHello */
        IN("\x15\x03\x03\x00\x02\x02\x28"),             /* an alert as first record */
        IN("\x17\x03\x03\x00\x05hello"),                /* application data first */
    };
#undef IN
    cn_buf_t out;
    cn_buf_init(&out);
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        cn_tls_t *t = cn_tls_new(ctx, &out);
        assert_non_null(t);
        cn_buf_t plain;
        cn_buf_init(&plain);
        int rc = cn_tls_feed(t, (const uint8_t *)inputs[i].p, inputs[i].n, &plain);
        if (rc != CN_EPROTO)
            fail_msg("input %zu: rc=%d", i, rc);
        assert_int_equal(plain.len, 0);
        assert_false(cn_tls_handshake_done(t));
        cn_buf_dispose(&plain);
        cn_tls_free(t);
    }
    /* A partial record is not an error yet. */
    cn_tls_t *t = cn_tls_new(ctx, &out);
    cn_buf_t plain;
    cn_buf_init(&plain);
    assert_int_equal(cn_tls_feed(t, (const uint8_t *)"\x16\x03\x01", 3, &plain), CN_OK);
    assert_int_equal(cn_tls_feed(t, NULL, 0, &plain), CN_OK);
    cn_buf_dispose(&plain);
    cn_tls_free(t);
    cn_tls_free(NULL);
    cn_buf_dispose(&out);
    SSL_CTX_free(ctx);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_ctx_bad_files(void **state)
{
    (void)state;
    char missing[320];
    snprintf(missing, sizeof(missing), "%s/missing.pem", g_dir);
    assert_null(cn_tls_server_ctx_new(missing, g_key));
    assert_null(cn_tls_server_ctx_new(g_cert, missing));
    /* A key that does not belong to the certificate. */
    assert_null(cn_tls_server_ctx_new(g_cert, g_other_key));
    /* The files swapped. */
    assert_null(cn_tls_server_ctx_new(g_key, g_cert));
    assert_null(cn_tls_server_ctx_new(NULL, g_key));
    assert_int_equal(ERR_peek_error(), 0);
}

/* Every suite the server offers, chosen by the client; padded client records;
 * key updates asked by either side; data both ways after each. */
static void test_suites_padding_key_updates(void **state)
{
    (void)state;
    static const char *suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"};
    for (size_t i = 0; i < 3; i++) {
        pair_t p;
        pair_init(&p, TLS1_3_VERSION);
        assert_int_equal(SSL_set_ciphersuites(p.client, suites[i]), 1);
        assert_int_equal(SSL_set_block_padding(p.client, 256), 1);
        assert_int_equal(handshake(&p), 1);
        assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(p.client)), suites[i]);
        for (int round = 0; round < 3; round++) {
            /* round 0: the client updates and asks back; 1: updates only;
             * 2: nothing (keys of two generations later still agree). */
            if (round < 2)
                assert_int_equal(SSL_key_update(p.client, round == 0
                                                              ? SSL_KEY_UPDATE_REQUESTED
                                                              : SSL_KEY_UPDATE_NOT_REQUESTED),
                                 1);
            char msg[32];
            int len = snprintf(msg, sizeof(msg), "suite %zu round %d", i, round);
            cn_buf_reset(&p.plain);
            assert_int_equal(SSL_write(p.client, msg, len), len);
            pump(&p);
            assert_int_equal(p.server_rc, CN_OK);
            assert_int_equal(p.plain.len, (size_t)len);
            assert_memory_equal(p.plain.data, msg, (size_t)len);
            assert_int_equal(cn_tls_write(p.server, (const uint8_t *)msg, (size_t)len), CN_OK);
            pump(&p);
            char got[32];
            assert_int_equal(SSL_read(p.client, got, sizeof(got)), len);
            assert_memory_equal(got, msg, (size_t)len);
        }
        server_to_client_big(&p);
        pair_dispose(&p);
    }
}

/* The client's first request rides with its Finished: the server must find
 * it after the hand-over from OpenSSL. */
static void test_data_with_finished(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_3_VERSION);
    int r = 0;
    for (int i = 0; i < 10 && r != 1; i++) {
        r = SSL_do_handshake(p.client);
        if (r == 1)
            break; /* the Finished is in c_out, not yet pumped */
        pump(&p);
    }
    assert_int_equal(r, 1);
    assert_false(cn_tls_handshake_done(p.server));
    const char req[] = "GET /ws HTTP/1.1\r\n\r\n";
    assert_int_equal(SSL_write(p.client, req, (int)strlen(req)), (int)strlen(req));
    /* Finished and the request in one feed. */
    char buf[4096];
    int n = BIO_read(p.c_out, buf, sizeof(buf));
    assert_true(n > (int)strlen(req));
    assert_int_equal(BIO_pending(p.c_out), 0);
    assert_int_equal(cn_tls_feed(p.server, (const uint8_t *)buf, (size_t)n, &p.plain), CN_OK);
    assert_true(cn_tls_handshake_done(p.server));
    assert_int_equal(p.plain.len, strlen(req));
    assert_memory_equal(p.plain.data, req, p.plain.len);
    pair_dispose(&p);
}

/* A record altered on the way: the server refuses it and tells the client
 * with a bad_record_mac alert. */
static void test_tampered_record_alerts_client(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, TLS1_3_VERSION);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(SSL_write(p.client, "hello", 5), 5);
    char buf[256];
    int n = BIO_read(p.c_out, buf, sizeof(buf));
    assert_true(n > 10);
    buf[n - 3] ^= 1;
    assert_int_equal(cn_tls_feed(p.server, (const uint8_t *)buf, (size_t)n, &p.plain), CN_EPROTO);
    assert_int_equal(p.plain.len, 0);
    assert_int_equal(cn_tls_write(p.server, (const uint8_t *)"x", 1), CN_ECLOSED);
    assert_true(p.sout.len > 0);
    client_to_server(&p);
    assert_int_equal(BIO_write(p.c_in, p.sout.data, (int)p.sout.len), (int)p.sout.len);
    char c;
    assert_true(SSL_read(p.client, &c, 1) <= 0);
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_SSLV3_ALERT_BAD_RECORD_MAC);
    pair_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_data_exporter),
        cmocka_unit_test(test_no_buffers_of_its_own),
        cmocka_unit_test(test_client_close_notify),
        cmocka_unit_test(test_tls12_client_refused),
        cmocka_unit_test(test_garbage_is_eproto),
        cmocka_unit_test(test_ctx_bad_files),
        cmocka_unit_test(test_client_to_server_big),
        cmocka_unit_test(test_suites_padding_key_updates),
        cmocka_unit_test(test_data_with_finished),
        cmocka_unit_test(test_tampered_record_alerts_client),
    };
    return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
