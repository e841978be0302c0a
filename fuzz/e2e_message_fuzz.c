/*
 * Fuzzes the E2E wire decoder (crypto/ratchet_codec.c) and what follows
 * it on a receiving device: an X3DH initial message is answered with a
 * fixed responder identity and prekeys, then decrypted; a ratchet message
 * is decrypted by a fixed established session. Anything must fail cleanly
 * or decrypt; a parsed message must account for every input byte.
 */
#include "crypto/cn_crypto.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cn_identity_t g_bob;
static cn_x25519_t g_spk, g_opk;
static cn_session_t *g_session;
static bool g_ready;

static void fixed_x25519(cn_x25519_t *kp, uint8_t fill)
{
    kp->sk = sodium_malloc(32);
    memset(kp->sk, fill, 32);
    if (crypto_scalarmult_base(kp->pk, kp->sk) != 0)
        abort();
}

/* A responder with fixed keys and one session it already holds. */
static void init_once(void)
{
    uint8_t seed[32];
    if (cn_crypto_init() != CN_OK)
        abort();
    memset(seed, 0x42, sizeof(seed));
    g_bob.sk = sodium_malloc(64);
    crypto_sign_seed_keypair(g_bob.pk, g_bob.sk, seed);
    fixed_x25519(&g_spk, 0x11);
    fixed_x25519(&g_opk, 0x22);
    cn_identity_t alice;
    if (cn_identity_generate(&alice) != CN_OK || cn_session_new(&g_session) != CN_OK)
        abort();
    cn_prekey_bundle_t b;
    memset(&b, 0, sizeof(b));
    memcpy(b.identity, g_bob.pk, 32);
    b.spk_id = 1;
    memcpy(b.spk, g_spk.pk, 32);
    cn_buf_t t, w, pt;
    cn_buf_init(&t);
    cn_buf_init(&w);
    cn_buf_init(&pt);
    cn_ratchet_t *ra, *rb;
    cn_e2e_msg_t m;
    if (cn_transcript_prekey(&t, 1, b.spk) != CN_OK ||
        cn_identity_sign(&g_bob, t.data, t.len, b.spk_sig) != CN_OK ||
        cn_x3dh_initiate(&alice, &b, &ra) != CN_OK || cn_ratchet_encrypt(ra, "x", 1, &w) != CN_OK ||
        cn_e2e_msg_parse(w.data, w.len, &m) != CN_OK ||
        cn_x3dh_respond(&g_bob, &g_spk, NULL, &m, &rb) != CN_OK ||
        cn_ratchet_decrypt(rb, &m, &pt) != CN_OK || cn_session_add(g_session, rb) != CN_OK)
        abort();
    cn_ratchet_free(ra);
    cn_identity_dispose(&alice);
    cn_buf_dispose(&t);
    cn_buf_dispose(&w);
    cn_buf_dispose(&pt);
    g_ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ready)
        init_once();
    cn_e2e_msg_t m;
    if (cn_e2e_msg_parse(data, size, &m) != CN_OK)
        return 0;
    if (m.header != data || m.header_len + m.ct_len != size || m.ct != data + m.header_len ||
        m.ct_len < CN_E2E_TAG_LEN)
        abort();
    cn_buf_t pt;
    cn_buf_init(&pt);
    if (m.type == CN_E2E_PREKEY_MSG) {
        cn_ratchet_t *r = NULL;
        if (cn_x3dh_respond(&g_bob, &g_spk, m.has_opk ? &g_opk : NULL, &m, &r) == CN_OK) {
            CN_IGNORE(cn_ratchet_decrypt(r, &m, &pt));
            cn_ratchet_free(r);
        }
    } else {
        /* Work on a copy so that inputs do not depend on each other. */
        cn_buf_t enc;
        cn_buf_init(&enc);
        cn_session_t *s = NULL;
        if (cn_session_encode(g_session, &enc) != CN_OK ||
            cn_session_decode(enc.data, enc.len, &s) != CN_OK)
            abort();
        CN_IGNORE(cn_session_decrypt(s, &m, &pt));
        cn_session_free(s);
        cn_buf_wipe(&enc);
    }
    cn_buf_dispose(&pt);
    return 0;
}
