/*
 * Fuzzes the node's TLS layer (node/tls.c: its BIO, OpenSSL's handshake and
 * the hand-over to node/tls_record.c): the server side of TLS 1.3 fed in
 * chunks whose size the input chooses.
 *
 *   byte 0: bit 0 the mode, bits 1..6 the chunk size - 1 (1..64 bytes),
 *           bit 7 set: the plaintext buffer starts with room for two
 *           records (the layer then decrypts into it directly)
 *   mode 0: the rest is raw client bytes from the start (a ClientHello,
 *           garbage): every feed answers CN_OK, CN_ECLOSED or CN_EPROTO
 *           (never "input left unread") and no plaintext appears before a
 *           handshake.
 *   mode 1: an in-process OpenSSL client completes the handshake, then sends
 *           the rest as application data: whatever the chunking, the server
 *           decrypts exactly those bytes, and its reply opens at the client.
 *
 * The certificate (P-256, self-signed) is made once per process in a
 * temporary directory, removed at exit.
 */
#include "node/transport.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TLS_FUZZ_INPUT_MAX (256u * 1024u)

static SSL_CTX *g_server;
static SSL_CTX *g_client;
static char g_dir[64];
static char g_cert[128];
static char g_key[128];

static void cleanup(void)
{
    SSL_CTX_free(g_server);
    SSL_CTX_free(g_client);
    unlink(g_cert);
    unlink(g_key);
    rmdir(g_dir);
}

static int write_pem(const char *path, EVP_PKEY *k, X509 *x)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = k ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, x);
    return (fclose(f) == 0 && ok == 1) ? 0 : -1;
}

static void init_once(void)
{
    if (g_server)
        return;
    strcpy(g_dir, "/tmp/cn_fuzz_tls.XXXXXX");
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!mkdtemp(g_dir) || !k || !x)
        abort();
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, k);
    if (X509_sign(x, k, EVP_sha256()) <= 0 || write_pem(g_key, k, NULL) != 0 ||
        write_pem(g_cert, NULL, x) != 0)
        abort();
    EVP_PKEY_free(k);
    X509_free(x);
    g_server = cn_tls_server_ctx_new(g_cert, g_key);
    g_client = SSL_CTX_new(TLS_client_method());
    if (!g_server || !g_client)
        abort();
    SSL_CTX_set_verify(g_client, SSL_VERIFY_NONE, NULL);
    atexit(cleanup);
}

typedef struct {
    cn_tls_t *server;
    cn_buf_t sout;  /* the server's ciphertext */
    cn_buf_t plain; /* what the server decrypted */
    size_t chunk;
} side_t;

/* Feeds n bytes in chunks; returns the first result that is not CN_OK. */
static int feed(side_t *s, const uint8_t *p, size_t n)
{
    for (size_t off = 0; off < n; off += s->chunk) {
        size_t k = n - off < s->chunk ? n - off : s->chunk;
        int rc = cn_tls_feed(s->server, p + off, k, &s->plain);
        if (rc != CN_OK) {
            if (rc != CN_ECLOSED && rc != CN_EPROTO)
                __builtin_trap();
            return rc;
        }
    }
    return CN_OK;
}

static void raw_client(side_t *s, const uint8_t *p, size_t n)
{
    (void)feed(s, p, n);
    if (!cn_tls_handshake_done(s->server) && s->plain.len != 0)
        __builtin_trap(); /* plaintext before a handshake */
}

/* Moves everything pending from the client to the server. */
static int client_to_server(side_t *s, BIO *c_out)
{
    uint8_t buf[4096];
    int n;
    while ((n = BIO_read(c_out, buf, sizeof(buf))) > 0) {
        int rc = feed(s, buf, (size_t)n);
        if (rc != CN_OK)
            return rc;
    }
    return CN_OK;
}

static void server_to_client(side_t *s, BIO *c_in)
{
    if (s->sout.len > 0 && BIO_write(c_in, s->sout.data, (int)s->sout.len) != (int)s->sout.len)
        __builtin_trap();
    cn_buf_reset(&s->sout);
}

static void tls_client(side_t *s, const uint8_t *p, size_t n)
{
    SSL *c = SSL_new(g_client);
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    if (!c || !c_in || !c_out)
        abort();
    BIO_set_mem_eof_return(c_in, -1);
    SSL_set_bio(c, c_in, c_out);
    SSL_set_connect_state(c);
    int r = 0;
    for (int i = 0; i < 8 && r != 1; i++) {
        r = SSL_do_handshake(c);
        if (client_to_server(s, c_out) != CN_OK)
            __builtin_trap(); /* a well-behaved client, whatever the chunks */
        server_to_client(s, c_in);
    }
    if (r != 1 || !cn_tls_handshake_done(s->server))
        __builtin_trap();
    if (n > 0 && SSL_write(c, p, (int)n) != (int)n)
        abort();
    if (client_to_server(s, c_out) != CN_OK || s->plain.len != n ||
        (n > 0 && memcmp(s->plain.data, p, n) != 0))
        __builtin_trap(); /* exactly the client's bytes */
    if (cn_tls_write(s->server, (const uint8_t *)"ok", 2) != CN_OK)
        __builtin_trap();
    server_to_client(s, c_in);
    char got[2];
    if (SSL_read(c, got, sizeof(got)) != 2 || memcmp(got, "ok", 2) != 0)
        __builtin_trap();
    SSL_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > TLS_FUZZ_INPUT_MAX)
        return 0;
    init_once();
    side_t s = {.chunk = (size_t)((data[0] >> 1) & 63) + 1};
    cn_buf_init(&s.sout);
    cn_buf_init(&s.plain);
    if ((data[0] & 128) && cn_buf_reserve(&s.plain, 2 * 16384) != CN_OK)
        abort();
    s.server = cn_tls_new(g_server, &s.sout);
    if (!s.server)
        abort();
    if (data[0] & 1)
        tls_client(&s, data + 1, size - 1);
    else
        raw_client(&s, data + 1, size - 1);
    cn_tls_free(s.server);
    cn_buf_dispose(&s.sout);
    cn_buf_dispose(&s.plain);
    ERR_clear_error();
    return 0;
}
