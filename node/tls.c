/*
 * Server-side TLS 1.3 over a BIO of our own: the connection layer hands in
 * the bytes it read from the socket and names the buffer that collects what
 * goes back, so no OpenSSL call ever touches a file descriptor or blocks.
 *
 * Decisions:
 * - TLS 1.3 only, three AEAD suites, no session tickets and no session
 *   cache: a reconnecting client pays one full handshake, and no resumption
 *   state is kept per connection or per context (memory per idle
 *   connection matters more than a saved round trip).
 * - The BIO (g_bio_method) reads straight from the socket's read buffer
 *   and appends ciphertext straight to the connection's output buffer.
 *   OpenSSL's memory BIOs cost a copy on each side, a BUF_MEM that keeps the
 *   size of the largest flight, and control calls around every record
 *   (BIO_ctrl 4 % of the node's samples in the fanout profile). Nothing is
 *   held between calls: a partial record stays in OpenSSL's own read
 *   buffer, so an idle connection has no TLS buffers but OpenSSL's.
 * - SSL_MODE_RELEASE_BUFFERS frees OpenSSL's record buffers while a
 *   connection is idle; small records are decrypted through a per-thread
 *   record buffer so the connection's input buffer stays small too.
 * - SSL_MODE_NO_AUTO_CHAIN: the certificate file is the chain sent.
 * - Tried and dropped (docs/PERFORMANCE.md "connect"): restricting groups or
 *   signature algorithms and reusing SSL objects with SSL_clear; neither
 *   changed the cost of a handshake measurably.
 * - ALPN: "http/1.1" is selected when offered (the WebSocket handshake is
 *   HTTP/1.1); any other offer is left unanswered rather than refused.
 * - Failures caused by peers are logged at debug level only: a scanner can
 *   produce them at line rate.
 */
#include "node/transport.h"

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
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define CN_TLS_READ_CHUNK 16384 /* one maximal TLS record of plaintext */

struct cn_tls {
    SSL *ssl;
    cn_buf_t *out;     /* ciphertext to the peer is appended here */
    const uint8_t *in; /* ciphertext from the peer not yet read by OpenSSL */
    size_t in_len;     /* (only during cn_tls_feed) */
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

static int ctx_configure(SSL_CTX *ctx)
{
    CN_ENSURE(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1, CN_EINTERNAL);
    CN_ENSURE(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1, CN_EINTERNAL);
    CN_ENSURE(SSL_CTX_set_ciphersuites(ctx, CN_TLS_CIPHERSUITES) == 1, CN_EINTERNAL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* RFC 8446 4.6.1: sending zero NewSessionTicket messages is allowed. */
    CN_ENSURE(SSL_CTX_set_num_tickets(ctx, 0) == 1, CN_EINTERNAL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* The chain sent is exactly the certificate file's (leaf first, then any
     * intermediates): without NO_AUTO_CHAIN OpenSSL would try to build a chain
     * from the context's (empty) trust store on every handshake. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
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
    SSL_set_accept_state(t->ssl);
    return t;
}

void cn_tls_free(cn_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

/** Maps the result of an SSL call (r <= 0) to a cn error. */
static int ssl_result(cn_tls_t *t, int r, const char *what)
{
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        /* Memory BIOs never block on write, so only more input helps. */
        return CN_OK;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return CN_ECLOSED;
    default:
        log_ssl_errors(CN_LOG_DEBUG, "tls_peer_error", what);
        return CN_EPROTO;
    }
}

/*
 * Decryption target when plain has less than one record of room: a record is
 * decrypted here and only its bytes are appended, so a connection's input
 * buffer grows to what it holds (a few hundred bytes for the upgrade and the
 * Auth) instead of to two 16 KiB chunks reserved just in case. One per loop
 * thread; only that thread's connections use it.
 */
static _Thread_local uint8_t t_record[CN_TLS_READ_CHUNK];

/** Decrypts every complete record in the read BIO into plain. */
static int read_plain(cn_tls_t *t, cn_buf_t *plain)
{
    for (;;) {
        size_t got = 0;
        bool direct = plain->cap - plain->len >= CN_TLS_READ_CHUNK;
        uint8_t *dst = direct ? plain->data + plain->len : t_record;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, dst, CN_TLS_READ_CHUNK, &got);
        if (r != 1)
            return ssl_result(t, r, "read");
        if (direct)
            plain->len += got;
        else
            CN_TRY(cn_buf_append(plain, t_record, got));
    }
}

static int feed(cn_tls_t *t, cn_buf_t *plain)
{
    if (!SSL_is_init_finished(t->ssl)) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1)
            return ssl_result(t, r, "handshake");
    }
    /* Records that arrived with the client's Finished are read at once. */
    return read_plain(t, plain);
}

int cn_tls_feed(cn_tls_t *t, const uint8_t *p, size_t n, cn_buf_t *plain)
{
    t->in = p;
    t->in_len = n;
    int rc = feed(t, plain);
    /* OpenSSL reads until the BIO runs dry and keeps a partial record
     * itself; only a failure or the peer's close_notify leaves input,
     * which then no longer matters. */
    if (rc == CN_OK && t->in_len != 0)
        rc = CN_EINTERNAL;
    t->in = NULL;
    t->in_len = 0;
    return rc;
}

int cn_tls_write(cn_tls_t *t, const uint8_t *p, size_t n)
{
    CN_ENSURE(SSL_is_init_finished(t->ssl), CN_EINVAL);
    if (n == 0)
        return CN_OK;
    size_t written = 0;
    ERR_clear_error();
    /* Without SSL_MODE_ENABLE_PARTIAL_WRITE this writes all or nothing. */
    int r = SSL_write_ex(t->ssl, p, n, &written);
    if (r != 1) {
        int rc = ssl_result(t, r, "write");
        return rc == CN_OK ? CN_EPROTO : rc;
    }
    return written == n ? CN_OK : CN_EINTERNAL;
}

bool cn_tls_handshake_done(const cn_tls_t *t)
{
    return SSL_is_init_finished(t->ssl) == 1;
}

int cn_tls_exporter(cn_tls_t *t, uint8_t out[32])
{
    CN_ENSURE(SSL_is_init_finished(t->ssl), CN_EINVAL);
    ERR_clear_error();
    /* RFC 9266 2: 32 bytes, label "EXPORTER-Channel-Binding", no context. */
    int r = SSL_export_keying_material(t->ssl, out, CN_TLS_EXPORTER_LEN, CN_TLS_EXPORTER_LABEL,
                                       strlen(CN_TLS_EXPORTER_LABEL), NULL, 0, 0);
    if (r != 1) {
        log_ssl_errors(CN_LOG_ERROR, "tls_exporter_failed", "export");
        return CN_EINTERNAL;
    }
    return CN_OK;
}

void cn_tls_shutdown(cn_tls_t *t)
{
    /* A close_notify only makes sense once the handshake is done. */
    if (!SSL_is_init_finished(t->ssl))
        return;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}
