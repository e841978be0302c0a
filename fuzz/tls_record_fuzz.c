/*
 * Fuzzes the TLS 1.3 record layer (node/tls_record.c) with both ends keyed
 * from fixed secrets, fed in chunks whose size the input chooses.
 *
 *   byte 0: bits 0..1 the suite (0x1301 + n % 3), bit 2 the mode,
 *           bits 3..7 the chunk size - 1 (1..32 bytes; 0 feeds each
 *           batch whole)
 *   mode 0: the rest goes to the server as raw ciphertext: every feed
 *           answers CN_OK, CN_ECLOSED or CN_EPROTO, and nothing forged
 *           ever opens (no plaintext appears).
 *   mode 1: the rest is a script for the client end, op byte (its low two
 *           bits) then operands:
 *             0 len: application data (len bytes follow)
 *             1 r:   KeyUpdate, asking back when r is odd
 *             2 t len: one record of inner type t (len bytes follow),
 *                      well-formed or not
 *             3:     close_notify
 *           What the server opens must be a prefix of the application data
 *           sent (all of it when every record was application data, a
 *           close or one of at most CN_TLS_KEY_UPDATES_MAX KeyUpdates in a
 *           row), its answers must open at the client, and
 *           after a well-formed script it must still be able to answer.
 */
#include "node/tls_record.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RECORD_FUZZ_INPUT_MAX (128u * 1024u)

typedef struct {
    cn_tls_record_t server, client;
    cn_buf_t wire, back; /* client -> server, server -> client */
    cn_buf_t plain, client_plain;
    cn_buf_t sent; /* application data the client sealed */
    size_t chunk;
    bool malformed;          /* the script sent something a correct peer never would */
    unsigned updates_in_row; /* the client's KeyUpdates since its last data */
} fz_t;

static int feed_server(fz_t *f)
{
    int rc = CN_OK;
    size_t step = f->chunk ? f->chunk : f->wire.len;
    for (size_t off = 0; off < f->wire.len && rc == CN_OK; off += step) {
        size_t k = f->wire.len - off < step ? f->wire.len - off : step;
        rc = cn_tls_record_open(&f->server, f->wire.data + off, k, &f->plain, &f->back);
    }
    if (rc != CN_OK && rc != CN_ECLOSED && rc != CN_EPROTO)
        __builtin_trap();
    cn_buf_reset(&f->wire);
    return rc;
}

/* What the server sent back must open at the client (its KeyUpdates, its
 * alerts: the client sees CN_EPROTO only after a malformed script). */
static void feed_client(fz_t *f)
{
    int rc = cn_tls_record_open(&f->client, f->back.data, f->back.len, &f->client_plain, &f->wire);
    cn_buf_reset(&f->back);
    cn_buf_reset(&f->wire); /* the client's own answers are not checked */
    if (rc == CN_EPROTO && !f->malformed)
        __builtin_trap();
}

static void run_script(fz_t *f, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && f->server.status == CN_OK && !f->client.sent_close) {
        uint8_t op = p[i++] & 3;
        int rc = CN_OK;
        if (op == 0 && i < n) {
            size_t len = p[i++];
            len = len < n - i ? len : n - i;
            rc = cn_tls_record_seal(&f->client, p + i, len, &f->wire);
            if (rc == CN_OK && cn_buf_append(&f->sent, p + i, len) != CN_OK)
                abort();
            if (len > 0)
                f->updates_in_row = 0;
            i += len;
        } else if (op == 1 && i < n) {
            rc = cn_tls_record_key_update(&f->client, p[i++] & 1, &f->wire);
            if (++f->updates_in_row > CN_TLS_KEY_UPDATES_MAX)
                f->malformed = true; /* refused: a flood */
        } else if (op == 2 && i + 1 < n) {
            uint8_t type = p[i++];
            size_t len = p[i++];
            len = len < n - i ? len : n - i;
            rc = cn_tls_record_seal_type(&f->client, type, p + i, len, &f->wire);
            /* RFC 8446 5.4: the inner type is the last non-zero byte. */
            size_t end = len;
            uint8_t inner = type;
            while (inner == 0 && end > 0)
                inner = p[i + --end];
            if (inner == 23) {
                if (cn_buf_append(&f->sent, p + i, end) != CN_OK)
                    abort();
                if (end > 0)
                    f->updates_in_row = 0;
            } else {
                f->malformed = true; /* most are; the rest are checked by the unit tests */
            }
            i += len;
        } else if (op == 3) {
            cn_tls_record_close(&f->client, &f->wire);
        } else {
            break;
        }
        if (rc != CN_OK)
            abort(); /* sealing a bounded record cannot fail */
        (void)feed_server(f);
        /* Data after the server's answers, so that the client (not under
         * test here) never sees more KeyUpdates in a row than it accepts. */
        if (f->back.len && !f->server.sent_close &&
            cn_tls_record_seal(&f->server, (const uint8_t *)".", 1, &f->back) != CN_OK)
            __builtin_trap();
        feed_client(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > RECORD_FUZZ_INPUT_MAX)
        return 0;
    static const uint8_t cs[48] = "client traffic secret, 48 bytes of it, fixed...";
    static const uint8_t ss[48] = "server traffic secret, 48 bytes of it, fixed...";
    uint16_t suite = (uint16_t)(CN_TLS_AES_128_GCM_SHA256 + (data[0] & 3) % 3);
    size_t len = suite == CN_TLS_AES_256_GCM_SHA384 ? 48 : 32;
    fz_t f;
    memset(&f, 0, sizeof(f));
    f.chunk = (size_t)(data[0] >> 3);
    if (cn_tls_record_init(&f.server, suite, cs, ss, len) != CN_OK ||
        cn_tls_record_init(&f.client, suite, ss, cs, len) != CN_OK)
        abort();
    cn_buf_init(&f.wire);
    cn_buf_init(&f.back);
    cn_buf_init(&f.plain);
    cn_buf_init(&f.client_plain);
    cn_buf_init(&f.sent);
    if (data[0] & 4) {
        run_script(&f, data + 1, size - 1);
        /* Exactly what was sent, or (after a malformed record) a prefix. */
        if (f.plain.len > f.sent.len || (!f.malformed && f.plain.len != f.sent.len) ||
            (f.plain.len && memcmp(f.plain.data, f.sent.data, f.plain.len) != 0))
            __builtin_trap();
        if (!f.malformed && !f.client.sent_close) {
            if (f.server.status != CN_OK)
                __builtin_trap();
            if (cn_tls_record_seal(&f.server, (const uint8_t *)"ok", 2, &f.back) != CN_OK)
                __builtin_trap();
            cn_buf_reset(&f.client_plain);
            feed_client(&f);
            if (f.client_plain.len != 2 || memcmp(f.client_plain.data, "ok", 2) != 0)
                __builtin_trap();
        }
    } else {
        if (cn_buf_append(&f.wire, data + 1, size - 1) != CN_OK)
            abort();
        (void)feed_server(&f);
        if (f.plain.len != 0)
            __builtin_trap(); /* a forged record opened */
    }
    cn_tls_record_dispose(&f.server);
    cn_tls_record_dispose(&f.client);
    cn_buf_dispose(&f.wire);
    cn_buf_dispose(&f.back);
    cn_buf_dispose(&f.plain);
    cn_buf_dispose(&f.client_plain);
    cn_buf_dispose(&f.sent);
    ERR_clear_error();
    return 0;
}
