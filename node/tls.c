/*
 * Server-side TLS 1.3: OpenSSL runs the handshake over a BIO of our own, then
 * hands the connection to our record layer (node/tls_record.c) and is freed.
 * The connection layer hands in the bytes it read from the socket and names
 * the buffer that collects what goes back, so nothing here touches a file
 * descriptor or blocks.
 *
 * Decisions:
 * - TLS 1.3 only, three AEAD suites, no session tickets and no session
 *   cache: a reconnecting client pays one full handshake, and no resumption
 *   state is kept per connection or per context (memory per idle
 *   connection matters more than a saved round trip).
 * - After the handshake the SSL object is freed (an established OpenSSL 3.0
 *   session holds about 14 KiB of heap) and records are protected by
 *   tls_record.c with the application traffic secrets, which OpenSSL hands
 *   out through its key-log callback (the interface SSLKEYLOGFILE uses; the
 *   secrets are only copied into the session, never written anywhere). This
 *   is what kTLS does with them; this kernel has no kTLS. The channel
 *   binding (RFC 9266) is exported before the SSL object goes.
 * - The BIO (g_bio_method) reads straight from the socket's read buffer
 *   and appends the handshake's ciphertext straight to the connection's
 *   output buffer: no copies through memory BIOs, no BUF_MEM per session.
 *   OpenSSL reads one record at a time (no read-ahead), so at the end of the
 *   handshake whatever the client sent after its Finished is still in the
 *   caller's bytes and goes to the record layer.
 * - SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record buffers between the
 *   handshake's flights.
 * - SSL_MODE_NO_AUTO_CHAIN: the certificate file is the chain sent.
 * - Tried and dropped (docs/PERFORMANCE.md "connect"): restricting groups or
 *   signature algorithms and reusing SSL objects with SSL_clear; neither
 *   changed the cost of a handshake measurably.
 * - ALPN: "http/1.1" is selected when offered (the WebSocket handshake is
 *   HTTP/1.1); any other offer is left unanswered rather than refused.
 * - Failures caused by peers are logged at debug level only: a scanner can
 *   produce them at line rate.
 */
#include "node/tls_record.h"
#include "node/transport.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Same literal as CN_EXPORTER_LABEL in proto/cn_proto.h (RFC 9266 section 2);
 * duplicated because chatnode_transport does not link chatproto. */
#define CN_TLS_EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define CN_TLS_EXPORTER_LEN   32
#define CN_TLS_CIPHERSUITES                                                                        \
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

/* The key log's lines for the two application traffic secrets (RFC 8446
 * 7.1), as in the NSS key log format: label, client random, secret in hex. */
#define KEYLOG_CLIENT     "CLIENT_TRAFFIC_SECRET_0 "
#define KEYLOG_SERVER     "SERVER_TRAFFIC_SECRET_0 "
#define KEYLOG_RANDOM_HEX 64

enum { HAVE_CLIENT_SECRET = 1, HAVE_SERVER_SECRET = 2 };

struct cn_tls {
    SSL *ssl;          /* the handshake; NULL once the record layer took over */
    cn_buf_t *out;     /* ciphertext to the peer is appended here */
    const uint8_t *in; /* ciphertext from the peer not yet read by OpenSSL */
    size_t in_len;     /* (only during cn_tls_feed) */
    cn_tls_record_t rec;
    uint8_t exporter[CN_TLS_EXPORTER_LEN];
    /* From the key log until the hand-over, then wiped. */
    uint8_t have_secrets, secret_len;
    uint8_t client_secret[CN_TLS_SECRET_MAX], server_secret[CN_TLS_SECRET_MAX];
};

/** Logs and clears the OpenSSL error queue. */
static void log_ssl_errors(enum cn_log_level level, const char *event, const char *what)
{
    char msg[256] = "none";
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, msg, sizeof(msg));
    cn_log(level, event, "what=%s err=\"%s\"", what, msg);
    ERR_clear_error();
}

/* RFC 7301 3.2: pick http/1.1 when the client offers it. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Copies the hex secret at the end of a key-log line (after the client
 * random); 0 when malformed. */
static size_t parse_secret(const char *line, uint8_t out[CN_TLS_SECRET_MAX])
{
    if (strnlen(line, KEYLOG_RANDOM_HEX + 1) != KEYLOG_RANDOM_HEX + 1 ||
        line[KEYLOG_RANDOM_HEX] != ' ')
        return 0;
    const char *hex = line + KEYLOG_RANDOM_HEX + 1;
    size_t n = strnlen(hex, 2 * CN_TLS_SECRET_MAX + 1) / 2;
    if (n == 0 || n > CN_TLS_SECRET_MAX || cn_hex_decode(out, n, hex) != CN_OK)
        return 0;
    return n;
}

/* OpenSSL's key log: only the two application traffic secrets are kept. */
static void keylog(const SSL *ssl, const char *line)
{
    cn_tls_t *t = SSL_get_app_data(ssl);
    uint8_t secret[CN_TLS_SECRET_MAX];
    uint8_t *dst = NULL;
    uint8_t bit = 0;
    size_t n = 0;
    if (!t)
        return;
    if (strncmp(line, KEYLOG_CLIENT, strlen(KEYLOG_CLIENT)) == 0) {
        n = parse_secret(line + strlen(KEYLOG_CLIENT), secret);
        dst = t->client_secret, bit = HAVE_CLIENT_SECRET;
    } else if (strncmp(line, KEYLOG_SERVER, strlen(KEYLOG_SERVER)) == 0) {
        n = parse_secret(line + strlen(KEYLOG_SERVER), secret);
        dst = t->server_secret, bit = HAVE_SERVER_SECRET;
    }
    if (dst && n > 0 && (t->secret_len == 0 || t->secret_len == n)) {
        memcpy(dst, secret, n);
        t->secret_len = (uint8_t)n;
        t->have_secrets |= bit;
    }
    OPENSSL_cleanse(secret, sizeof(secret));
}

static int ctx_configure(SSL_CTX *ctx)
{
    CN_ENSURE(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1, CN_EINTERNAL);
    CN_ENSURE(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1, CN_EINTERNAL);
    CN_ENSURE(SSL_CTX_set_ciphersuites(ctx, CN_TLS_CIPHERSUITES) == 1, CN_EINTERNAL);
    /* Our order, AES-128-GCM first (the cheapest record protection and a
     * SHA-256 key schedule; OpenSSL clients would pick AES-256-GCM-SHA384),
     * unless the client puts ChaCha20 first (no AES instructions there). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    /* RFC 8446 4.6.1: sending zero NewSessionTicket messages is allowed. */
    CN_ENSURE(SSL_CTX_set_num_tickets(ctx, 0) == 1, CN_EINTERNAL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* The chain sent is exactly the certificate file's (leaf first, then any
     * intermediates): without NO_AUTO_CHAIN OpenSSL would try to build a chain
     * from the context's (empty) trust store on every handshake. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_keylog_callback(ctx, keylog);
    return CN_OK;
}

SSL_CTX *cn_tls_server_ctx_new(const char *cert_file, const char *key_file)
{
    SSL_CTX *ctx = NULL;
    ERR_clear_error();
    if (!cert_file || !key_file) {
        cn_log_error("tls_ctx_failed", "what=args err=\"certificate or key file not set\"");
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_errors(CN_LOG_ERROR, "tls_ctx_failed", "SSL_CTX_new");
        return NULL;
    }
    if (ctx_configure(ctx) != CN_OK) {
        log_ssl_errors(CN_LOG_ERROR, "tls_ctx_failed", "configure");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        cn_log_error("tls_ctx_failed", "what=certificate file=\"%s\"", cert_file);
        log_ssl_errors(CN_LOG_ERROR, "tls_ctx_failed", "certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        cn_log_error("tls_ctx_failed", "what=key file=\"%s\"", key_file);
        log_ssl_errors(CN_LOG_ERROR, "tls_ctx_failed", "key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_errors(CN_LOG_ERROR, "tls_ctx_failed", "key_does_not_match_certificate");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ----------------------------------------------------------------- BIO */

static int bio_write(BIO *b, const char *p, size_t n, size_t *written)
{
    cn_tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (cn_buf_append(t->out, p, n) != CN_OK)
        return 0; /* no memory: the SSL call fails and the connection closes */
    *written = n;
    return 1;
}

/* Out of input is "retry later", never end of stream: the socket's end is
 * the connection layer's business. */
static int bio_read(BIO *b, char *p, size_t n, size_t *got)
{
    cn_tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        *got = 0;
        return 0;
    }
    size_t k = n < t->in_len ? n : t->in_len;
    memcpy(p, t->in, k);
    t->in += k;
    t->in_len -= k;
    *got = k;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    cn_tls_t *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)t->in_len : 0;
    default: /* WPENDING (nothing is held), EOF, kTLS and the rest: no */
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *g_bio_method;
static pthread_once_t g_bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "chatnode");
    if (m && BIO_meth_set_write_ex(m, bio_write) == 1 && BIO_meth_set_read_ex(m, bio_read) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1 && BIO_meth_set_create(m, bio_create) == 1) {
        g_bio_method = m; /* lives as long as the process */
        return;
    }
    BIO_meth_free(m);
}

cn_tls_t *cn_tls_new(SSL_CTX *ctx, cn_buf_t *out)
{
    if (pthread_once(&g_bio_once, bio_method_init) != 0 || !g_bio_method)
        return NULL;
    cn_tls_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->out = out;
    t->ssl = SSL_new(ctx);
    BIO *bio = BIO_new(g_bio_method);
    if (!t->ssl || !bio) {
        BIO_free(bio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one BIO both ways: ssl owns its one reference */
    SSL_set_app_data(t->ssl, t);   /* for the key log */
    cn_buf_init(&t->rec.partial);
    SSL_set_accept_state(t->ssl);
    return t;
}

void cn_tls_free(cn_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    if (!t->ssl)
        cn_tls_record_dispose(&t->rec);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

/** Maps the result of an SSL call (r <= 0) to a cn error. */
static int ssl_result(cn_tls_t *t, int r, const char *what)
{
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        /* Our BIO never blocks on write, so only more input helps. */
        return CN_OK;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return CN_ECLOSED;
    default:
        log_ssl_errors(CN_LOG_DEBUG, "tls_peer_error", what);
        return CN_EPROTO;
    }
}

/* The handshake is done: export the channel binding, give the traffic
 * secrets to the record layer and free the SSL object. */
static int hand_over(cn_tls_t *t)
{
    const SSL_CIPHER *cipher = SSL_get_current_cipher(t->ssl);
    uint16_t suite = cipher ? SSL_CIPHER_get_protocol_id(cipher) : 0;
    int rc = CN_EINTERNAL;
    /* Nothing may wait inside OpenSSL: its records' sequence numbers would
     * be lost with it. Without read-ahead it never reads past a record. */
    if (t->have_secrets != (HAVE_CLIENT_SECRET | HAVE_SERVER_SECRET) || SSL_has_pending(t->ssl)) {
        cn_log_error("tls_handover_failed", "what=%s",
                     SSL_has_pending(t->ssl) ? "pending_input" : "no_traffic_secrets");
        goto out;
    }
    /* RFC 9266 2: 32 bytes, label "EXPORTER-Channel-Binding", no context. */
    if (SSL_export_keying_material(t->ssl, t->exporter, CN_TLS_EXPORTER_LEN, CN_TLS_EXPORTER_LABEL,
                                   strlen(CN_TLS_EXPORTER_LABEL), NULL, 0, 0) != 1) {
        log_ssl_errors(CN_LOG_ERROR, "tls_handover_failed", "export");
        goto out;
    }
    rc = cn_tls_record_init(&t->rec, suite, t->client_secret, t->server_secret, t->secret_len);
    if (rc != CN_OK) {
        cn_log_error("tls_handover_failed", "what=record_layer suite=0x%04x rc=%d", suite, rc);
        goto out;
    }
    SSL_free(t->ssl);
    t->ssl = NULL;
out:
    OPENSSL_cleanse(t->client_secret, sizeof(t->client_secret));
    OPENSSL_cleanse(t->server_secret, sizeof(t->server_secret));
    ERR_clear_error();
    return rc;
}

/* Runs the handshake on p[0..n); *rest is what follows the client's Finished. */
static int handshake(cn_tls_t *t, const uint8_t *p, size_t n, size_t *rest)
{
    t->in = p;
    t->in_len = n;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int rc = r == 1 ? hand_over(t) : ssl_result(t, r, "handshake");
    /* Short of the end of the handshake, OpenSSL reads until the BIO runs dry
     * and keeps a partial record itself; only a failure or a close_notify
     * leaves input, which then no longer matters. */
    if (rc == CN_OK && r != 1 && t->in_len != 0)
        rc = CN_EINTERNAL;
    *rest = t->in_len;
    t->in = NULL;
    t->in_len = 0;
    return rc;
}

int cn_tls_feed(cn_tls_t *t, const uint8_t *p, size_t n, cn_buf_t *plain)
{
    if (t->ssl) {
        size_t rest = 0;
        CN_TRY(handshake(t, p, n, &rest));
        if (t->ssl)
            return CN_OK; /* more of the handshake to come */
        p += n - rest;
        n = rest; /* records that came with the client's Finished */
    }
    return cn_tls_record_open(&t->rec, p, n, plain, t->out);
}

int cn_tls_write(cn_tls_t *t, const uint8_t *p, size_t n)
{
    CN_ENSURE(!t->ssl, CN_EINVAL);
    if (n == 0)
        return CN_OK;
    return cn_tls_record_seal(&t->rec, p, n, t->out);
}

bool cn_tls_handshake_done(const cn_tls_t *t)
{
    return t->ssl == NULL;
}

int cn_tls_exporter(cn_tls_t *t, uint8_t out[32])
{
    CN_ENSURE(!t->ssl, CN_EINVAL);
    memcpy(out, t->exporter, CN_TLS_EXPORTER_LEN);
    return CN_OK;
}

void cn_tls_shutdown(cn_tls_t *t)
{
    /* A close_notify only makes sense once the handshake is done. */
    if (!t->ssl)
        cn_tls_record_close(&t->rec, t->out);
}
