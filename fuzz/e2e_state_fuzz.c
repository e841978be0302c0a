/*
 * Fuzzes the decoders of persisted E2E state (crypto/ratchet_codec.c,
 * crypto/session.c, crypto/senderkey.c): a session record, a single
 * ratchet state and a sender key. Whatever decodes must re-encode to the
 * very same bytes (one encoding per state) and be usable for encryption.
 */
#include "crypto/cn_crypto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const cn_buf_t *b, const uint8_t *data, size_t size)
{
    if (b->len != size || memcmp(b->data, data, size) != 0)
        abort();
}

static void try_session(const uint8_t *data, size_t size)
{
    cn_session_t *s = NULL;
    if (cn_session_decode(data, size, &s) != CN_OK)
        return;
    cn_buf_t b;
    cn_buf_init(&b);
    if (cn_session_encode(s, &b) != CN_OK)
        abort();
    same_or_abort(&b, data, size);
    cn_buf_reset(&b);
    int rc = cn_session_encrypt(s, "fuzz", 4, &b);
    if (rc != CN_OK && rc != CN_ENOTFOUND && rc != CN_EINVAL && rc != CN_ELIMIT)
        abort();
    cn_buf_wipe(&b);
    cn_session_free(s);
}

static void try_ratchet(const uint8_t *data, size_t size)
{
    cn_ratchet_t *r = NULL;
    if (cn_ratchet_decode(data, size, &r) != CN_OK)
        return;
    cn_buf_t b;
    cn_buf_init(&b);
    if (cn_ratchet_encode(r, &b) != CN_OK)
        abort();
    same_or_abort(&b, data, size);
    cn_buf_wipe(&b);
    cn_ratchet_free(r);
}

static void try_senderkey(const uint8_t *data, size_t size)
{
    cn_senderkey_t *k = NULL;
    if (cn_senderkey_decode(data, size, &k) != CN_OK)
        return;
    cn_buf_t b;
    cn_buf_init(&b);
    if (cn_senderkey_encode(k, &b) != CN_OK)
        abort();
    same_or_abort(&b, data, size);
    cn_buf_wipe(&b);
    cn_senderkey_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (cn_crypto_init() != CN_OK)
            abort();
        ready = true;
    }
    try_session(data, size);
    try_ratchet(data, size);
    try_senderkey(data, size);
    return 0;
}
