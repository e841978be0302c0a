/*
 * The TLS 1.3 record layer after the handshake (see tls_record.h for what it
 * accepts). Why not OpenSSL's: an established OpenSSL 3.0 server session
 * holds about 14 KiB of heap for as long as the connection lives, and every
 * SSL_write/SSL_read of a small record walks OpenSSL's record machinery
 * (libssl and libcrypto were 18 % of the node's samples in the fan-out
 * profile, about 10 us per delivered copy with cold caches). Here a
 * connection keeps two keyed AEAD contexts and a record is one nonce, one
 * AAD and one in-place encryption through EVP. The cryptography is still
 * OpenSSL's; only the framing (RFC 8446 5.1-5.4, 4.6.3, 6) is ours.
 */
#include "node/tls_record.h"

#include "crypto/cn_crypto.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <string.h>

/* RFC 8446 5.1 content types, B.3 handshake type, 6 alerts. */
enum {
    CT_ALERT = 21,
    CT_HANDSHAKE = 22,
    CT_APPLICATION_DATA = 23,
    HS_KEY_UPDATE = 24,
    ALERT_WARNING = 1,
    ALERT_FATAL = 2,
    AD_CLOSE_NOTIFY = 0,
    AD_UNEXPECTED_MESSAGE = 10,
    AD_BAD_RECORD_MAC = 20,
    AD_RECORD_OVERFLOW = 22,
    AD_ILLEGAL_PARAMETER = 47,
    AD_DECODE_ERROR = 50,
    AD_USER_CANCELED = 90,
};

#define INNER_PLAIN_MAX (CN_TLS_RECORD_PLAIN_MAX + 1) /* content + type (RFC 8446 5.4) */
#define NONCE_LEN       12

/* Algorithms are fetched once: a fetch by name per context costs a lock and
 * a lookup in OpenSSL 3.0. */
static EVP_CIPHER *g_aes128gcm, *g_aes256gcm, *g_chacha;
static EVP_MD *g_sha256, *g_sha384;
static pthread_once_t g_fetch_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void)
{
    g_aes128gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    g_aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    g_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    g_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    g_sha384 = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    ERR_clear_error(); /* a missing one is reported by the suite that needs it */
}

/* RFC 8446 7.1 HKDF-Expand-Label with an empty context. SHA-256 suites use
 * the project's HKDF (crypto/kdf.c, libsodium's HMAC: OpenSSL's HMAC()
 * fetches the MAC and the digest by name on every call, about 3 us each
 * here, four per handshake). For SHA-384 every length asked for fits in one
 * HMAC output, so HKDF-Expand is T(1) cut to len. */
static int expand_label(const cn_tls_record_t *r, const uint8_t *secret, const char *label,
                        uint8_t *out, size_t len)
{
    uint8_t info[2 + 1 + 6 + 16 + 1 + 1];
    size_t llen = strlen(label);
    CN_ENSURE(len <= r->secret_len && llen <= 16, CN_EINTERNAL);
    size_t i = 0;
    info[i++] = (uint8_t)(len >> 8);
    info[i++] = (uint8_t)len;
    info[i++] = (uint8_t)(6 + llen);
    memcpy(info + i, "tls13 ", 6);
    i += 6;
    memcpy(info + i, label, llen);
    i += llen;
    info[i++] = 0; /* context length */
    if (r->md == g_sha256)
        return cn_hkdf_expand(out, len, secret, r->secret_len, info, i) == CN_OK ? CN_OK
                                                                                 : CN_EINTERNAL;
    info[i++] = 1; /* T(1)'s counter */
    uint8_t t1[EVP_MAX_MD_SIZE];
    unsigned t1_len = 0;
    if (!HMAC(r->md, secret, (int)r->secret_len, info, i, t1, &t1_len)) {
        ERR_clear_error();
        return CN_EINTERNAL;
    }
    CN_ENSURE(t1_len >= len, CN_EINTERNAL);
    memcpy(out, t1, len);
    OPENSSL_cleanse(t1, sizeof(t1));
    return CN_OK;
}

/* Keys dir from dir->secret (RFC 8446 7.3) and restarts its sequence. */
static int key_dir(cn_tls_record_t *r, cn_tls_dir_t *dir, int enc)
{
    uint8_t key[32];
    int rc = expand_label(r, dir->secret, "key", key, r->key_len);
    if (rc == CN_OK)
        rc = expand_label(r, dir->secret, "iv", dir->iv, NONCE_LEN);
    if (rc == CN_OK && !dir->aead && !(dir->aead = EVP_CIPHER_CTX_new()))
        rc = CN_ENOMEM;
    if (rc == CN_OK && EVP_CipherInit_ex(dir->aead, r->cipher, NULL, key, NULL, enc) != 1) {
        ERR_clear_error();
        rc = CN_EINTERNAL;
    }
    OPENSSL_cleanse(key, sizeof(key));
    dir->seq = 0;
    return rc;
}

/* RFC 8446 7.2: the next generation of a direction's traffic secret. */
static int update_dir(cn_tls_record_t *r, cn_tls_dir_t *dir, int enc)
{
    uint8_t next[CN_TLS_SECRET_MAX];
    int rc = expand_label(r, dir->secret, "traffic upd", next, r->secret_len);
    if (rc == CN_OK)
        memcpy(dir->secret, next, r->secret_len);
    OPENSSL_cleanse(next, sizeof(next));
    return rc == CN_OK ? key_dir(r, dir, enc) : rc;
}

int cn_tls_record_init(cn_tls_record_t *r, uint16_t suite, const uint8_t *read_secret,
                       const uint8_t *write_secret, size_t secret_len)
{
    memset(r, 0, sizeof(*r));
    cn_buf_init(&r->partial);
    r->records_per_key = CN_TLS_RECORDS_PER_KEY;
    CN_ENSURE(pthread_once(&g_fetch_once, fetch_algorithms) == 0, CN_EINTERNAL);
    switch (suite) {
    case CN_TLS_AES_128_GCM_SHA256:
        r->cipher = g_aes128gcm, r->md = g_sha256, r->key_len = 16, r->secret_len = 32;
        break;
    case CN_TLS_AES_256_GCM_SHA384:
        r->cipher = g_aes256gcm, r->md = g_sha384, r->key_len = 32, r->secret_len = 48;
        break;
    case CN_TLS_CHACHA20_POLY1305_SHA256:
        r->cipher = g_chacha, r->md = g_sha256, r->key_len = 32, r->secret_len = 32;
        break;
    default:
        return CN_EINVAL;
    }
    CN_ENSURE(secret_len == r->secret_len, CN_EINVAL);
    CN_ENSURE(r->cipher && r->md, CN_EINTERNAL);
    memcpy(r->rd.secret, read_secret, secret_len);
    memcpy(r->wr.secret, write_secret, secret_len);
    int rc = key_dir(r, &r->rd, 0);
    if (rc == CN_OK)
        rc = key_dir(r, &r->wr, 1);
    if (rc != CN_OK)
        cn_tls_record_dispose(r);
    return rc;
}

void cn_tls_record_dispose(cn_tls_record_t *r)
{
    EVP_CIPHER_CTX_free(r->rd.aead); /* clears the key schedule */
    EVP_CIPHER_CTX_free(r->wr.aead);
    cn_buf_dispose(&r->partial);
    OPENSSL_cleanse(r, sizeof(*r));
    cn_buf_init(&r->partial);
}

/* RFC 8446 5.3: the IV xor the 64-bit sequence number, right-aligned. */
static void make_nonce(const cn_tls_dir_t *dir, uint8_t nonce[NONCE_LEN])
{
    memcpy(nonce, dir->iv, NONCE_LEN);
    for (int i = 0; i < 8; i++)
        nonce[NONCE_LEN - 1 - i] ^= (uint8_t)(dir->seq >> (8 * i));
}

/* ---------------------------------------------------------------- send */

/* One record of inner type `type` with n <= 2^14 content bytes. */
static int seal_record(cn_tls_record_t *r, uint8_t type, const uint8_t *p, size_t n, cn_buf_t *out)
{
    CN_ENSURE(r->wr.seq != UINT64_MAX, CN_EINTERNAL); /* RFC 8446 5.3: never wrap */
    size_t clen = n + 1 + CN_TLS_RECORD_TAG;
    CN_TRY(cn_buf_reserve(out, CN_TLS_RECORD_HEADER + clen));
    uint8_t *h = out->data + out->len;
    h[0] = CT_APPLICATION_DATA;
    h[1] = 3;
    h[2] = 3;
    h[3] = (uint8_t)(clen >> 8);
    h[4] = (uint8_t)clen;
    uint8_t *c = h + CN_TLS_RECORD_HEADER;
    if (n > 0)
        memcpy(c, p, n);
    c[n] = type;
    uint8_t nonce[NONCE_LEN];
    make_nonce(&r->wr, nonce);
    EVP_CIPHER_CTX *a = r->wr.aead;
    int l1 = 0, l2 = 0, l3 = 0;
    if (EVP_CipherInit_ex(a, NULL, NULL, NULL, nonce, 1) != 1 ||
        EVP_CipherUpdate(a, NULL, &l1, h, CN_TLS_RECORD_HEADER) != 1 ||
        EVP_CipherUpdate(a, c, &l2, c, (int)(n + 1)) != 1 ||
        EVP_CipherFinal_ex(a, c + l2, &l3) != 1 || (size_t)(l2 + l3) != n + 1 ||
        EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_GET_TAG, CN_TLS_RECORD_TAG, c + n + 1) != 1) {
        ERR_clear_error();
        return CN_EINTERNAL;
    }
    r->wr.seq++;
    out->len += CN_TLS_RECORD_HEADER + clen;
    return CN_OK;
}

int cn_tls_record_seal_type(cn_tls_record_t *r, uint8_t type, const uint8_t *p, size_t n,
                            cn_buf_t *out)
{
    CN_ENSURE(!r->sent_close, CN_ECLOSED);
    CN_ENSURE(n + 1 + CN_TLS_RECORD_TAG <= CN_TLS_RECORD_CIPHER_MAX, CN_ETOOBIG);
    return seal_record(r, type, p, n, out);
}

int cn_tls_record_key_update(cn_tls_record_t *r, bool request, cn_buf_t *out)
{
    CN_ENSURE(!r->sent_close, CN_ECLOSED);
    const uint8_t msg[5] = {HS_KEY_UPDATE, 0, 0, 1, request ? 1 : 0};
    CN_TRY(seal_record(r, CT_HANDSHAKE, msg, sizeof(msg), out));
    return update_dir(r, &r->wr, 1);
}

int cn_tls_record_seal(cn_tls_record_t *r, const uint8_t *p, size_t n, cn_buf_t *out)
{
    CN_ENSURE(!r->sent_close, CN_ECLOSED);
    do {
        if (r->wr.seq >= r->records_per_key)
            CN_TRY(cn_tls_record_key_update(r, false, out));
        size_t k = n < CN_TLS_RECORD_PLAIN_MAX ? n : CN_TLS_RECORD_PLAIN_MAX;
        CN_TRY(seal_record(r, CT_APPLICATION_DATA, p, k, out));
        p += k;
        n -= k;
    } while (n > 0);
    return CN_OK;
}

static void send_alert(cn_tls_record_t *r, uint8_t level, uint8_t desc, cn_buf_t *out)
{
    if (r->sent_close)
        return;
    const uint8_t alert[2] = {level, desc};
    (void)seal_record(r, CT_ALERT, alert, sizeof(alert), out); /* best effort: we close anyway */
    r->sent_close = true;
}

void cn_tls_record_close(cn_tls_record_t *r, cn_buf_t *out)
{
    send_alert(r, ALERT_WARNING, AD_CLOSE_NOTIFY, out);
}

/* ------------------------------------------------------------- receive */

/* Ends the input with a fatal alert to the peer. */
static int fail(cn_tls_record_t *r, uint8_t desc, cn_buf_t *out)
{
    send_alert(r, ALERT_FATAL, desc, out);
    cn_log_debug("tls_peer_error", "what=record alert=%u", (unsigned)desc);
    r->status = CN_EPROTO;
    return CN_EPROTO;
}

/* Checks an outer record header; *total is the whole record's length. */
static int check_header(cn_tls_record_t *r, const uint8_t *h, size_t *total, cn_buf_t *out)
{
    /* Everything after the handshake is protected (RFC 8446 5); the legacy
     * version is ignored (5.1). A change_cipher_spec now is fatal too. */
    if (h[0] != CT_APPLICATION_DATA)
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    size_t len = (size_t)h[3] << 8 | h[4];
    if (len > CN_TLS_RECORD_CIPHER_MAX)
        return fail(r, AD_RECORD_OVERFLOW, out);
    if (len < 1 + CN_TLS_RECORD_TAG)
        return fail(r, AD_DECODE_ERROR, out);
    *total = CN_TLS_RECORD_HEADER + len;
    return CN_OK;
}

/* Post-handshake messages of one record: only KeyUpdate, whole, and last. */
static int on_handshake(cn_tls_record_t *r, const uint8_t *m, size_t n, cn_buf_t *out)
{
    if (n < 4 || m[0] != HS_KEY_UPDATE)
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    size_t len = (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
    if (len != 1 || n < 5)
        return fail(r, len != 1 ? AD_DECODE_ERROR : AD_UNEXPECTED_MESSAGE, out);
    if (n != 5) /* 5.1: a key change must be at the end of its record */
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    if (m[4] > 1)
        return fail(r, AD_ILLEGAL_PARAMETER, out);
    if (++r->updates_in_row > CN_TLS_KEY_UPDATES_MAX)
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    int rc = update_dir(r, &r->rd, 0);
    if (rc == CN_OK && m[4] == 1 && !r->sent_close) /* 4.6.3: answer before any more data */
        rc = cn_tls_record_key_update(r, false, out);
    if (rc != CN_OK)
        r->status = rc;
    return rc;
}

static int on_alert(cn_tls_record_t *r, const uint8_t *m, size_t n, cn_buf_t *out)
{
    if (n != 2)
        return fail(r, AD_DECODE_ERROR, out);
    if (m[1] == AD_USER_CANCELED) /* 6.1: a close_notify follows */
        return CN_OK;
    if (m[1] == AD_CLOSE_NOTIFY) {
        r->status = CN_ECLOSED;
        return CN_ECLOSED;
    }
    cn_log_debug("tls_peer_error", "what=peer_alert alert=%u", (unsigned)m[1]);
    r->status = CN_EPROTO; /* the peer gave up: no alert back */
    return CN_EPROTO;
}

/* Opens one whole record rec[0..total) (its header checked). */
static int open_record(cn_tls_record_t *r, const uint8_t *rec, size_t total, cn_buf_t *plain,
                       cn_buf_t *out)
{
    if (r->rd.seq == UINT64_MAX)
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    size_t clen = total - CN_TLS_RECORD_HEADER - CN_TLS_RECORD_TAG;
    const uint8_t *c = rec + CN_TLS_RECORD_HEADER;
    int rc = cn_buf_reserve(plain, clen);
    if (rc != CN_OK) {
        r->status = rc;
        return rc;
    }
    uint8_t *dst = plain->data + plain->len;
    uint8_t nonce[NONCE_LEN], tag[CN_TLS_RECORD_TAG];
    make_nonce(&r->rd, nonce);
    memcpy(tag, c + clen, sizeof(tag)); /* OpenSSL's ctrl takes a mutable pointer */
    EVP_CIPHER_CTX *a = r->rd.aead;
    int l1 = 0, l2 = 0, l3 = 0;
    if (EVP_CipherInit_ex(a, NULL, NULL, NULL, nonce, 0) != 1 ||
        EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_SET_TAG, CN_TLS_RECORD_TAG, tag) != 1 ||
        EVP_CipherUpdate(a, NULL, &l1, rec, CN_TLS_RECORD_HEADER) != 1 ||
        EVP_CipherUpdate(a, dst, &l2, c, (int)clen) != 1 ||
        EVP_CipherFinal_ex(a, dst + l2, &l3) != 1 || (size_t)(l2 + l3) != clen) {
        ERR_clear_error();
        return fail(r, AD_BAD_RECORD_MAC, out);
    }
    r->rd.seq++;
    if (clen > INNER_PLAIN_MAX)
        return fail(r, AD_RECORD_OVERFLOW, out);
    /* 5.4: the content type is the last non-zero byte; zeros after it pad. */
    size_t n = clen;
    while (n > 0 && dst[n - 1] == 0)
        n--;
    if (n == 0)
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    uint8_t type = dst[--n];
    switch (type) {
    case CT_APPLICATION_DATA:
        plain->len += n; /* zero-length application data is allowed (5.4) */
        if (n > 0)
            r->updates_in_row = 0;
        return CN_OK;
    case CT_HANDSHAKE:
        return on_handshake(r, dst, n, out);
    case CT_ALERT:
        return on_alert(r, dst, n, out);
    default:
        return fail(r, AD_UNEXPECTED_MESSAGE, out);
    }
}

/* Adds input to the split record; opens it once whole. *p and *n advance. */
static int continue_partial(cn_tls_record_t *r, const uint8_t **p, size_t *n, cn_buf_t *plain,
                            cn_buf_t *out)
{
    cn_buf_t *b = &r->partial;
    size_t total = CN_TLS_RECORD_HEADER;
    if (b->len >= CN_TLS_RECORD_HEADER)
        total = CN_TLS_RECORD_HEADER + ((size_t)b->data[3] << 8 | b->data[4]);
    size_t k = total - b->len < *n ? total - b->len : *n;
    int rc = cn_buf_append(b, *p, k);
    if (rc != CN_OK) {
        r->status = rc;
        return rc;
    }
    *p += k;
    *n -= k;
    if (b->len == CN_TLS_RECORD_HEADER && total == CN_TLS_RECORD_HEADER) {
        CN_TRY(check_header(r, b->data, &total, out));
        return CN_OK; /* the body comes next */
    }
    if (b->len < total)
        return CN_OK;
    rc = open_record(r, b->data, total, plain, out);
    cn_buf_dispose(b); /* an idle connection holds no input */
    cn_buf_init(b);
    return rc;
}

int cn_tls_record_open(cn_tls_record_t *r, const uint8_t *p, size_t n, cn_buf_t *plain,
                       cn_buf_t *out)
{
    while (r->status == CN_OK && n > 0) {
        if (r->partial.len > 0 || n < CN_TLS_RECORD_HEADER) {
            (void)continue_partial(r, &p, &n, plain, out);
            continue;
        }
        size_t total = 0;
        if (check_header(r, p, &total, out) != CN_OK)
            break;
        if (n < total) { /* the record's start: keep it, with room for the rest */
            if (cn_buf_reserve(&r->partial, total) != CN_OK) {
                r->status = CN_ENOMEM;
                break;
            }
            (void)continue_partial(r, &p, &n, plain, out);
            continue;
        }
        (void)open_record(r, p, total, plain, out);
        p += total;
        n -= total;
    }
    return r->status;
}
