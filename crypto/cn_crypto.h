/**
 * libchatcrypto: libsodium only. Device and node identities (Ed25519),
 * the signed transcripts of proto/cn_proto.h, randomness, and X25519
 * prekeys. The client-side E2E protocol (X3DH, Double Ratchet, sender keys,
 * media) extends this header.
 *
 * Secrets live in sodium_malloc memory and are wiped on dispose.
 * Thread-safe after cn_crypto_init.
 */
#ifndef CN_CRYPTO_H
#define CN_CRYPTO_H

#include "common/cn_common.h"
#include "proto/cn_proto.h"

#define CN_SIGN_SECRET_LEN 64 /* libsodium Ed25519 secret key (seed ‖ pk) */
#define CN_X25519_LEN      32

/** Initialises libsodium; call once before anything else. */
CN_MUST_USE int cn_crypto_init(void);

/** Fills p with n random bytes. */
void cn_random(void *p, size_t n);
/** A uniform random integer in [0, upper). */
uint32_t cn_random_uniform(uint32_t upper);

/** An Ed25519 identity. sk is sodium_malloc'd (NULL when disposed). */
typedef struct cn_identity {
    uint8_t pk[CN_DEVICE_ID_LEN];
    uint8_t *sk; /* CN_SIGN_SECRET_LEN bytes, guarded memory */
} cn_identity_t;

/** Generates a fresh identity; dispose with cn_identity_dispose. */
CN_MUST_USE int cn_identity_generate(cn_identity_t *id);
/**
 * Loads a key file written by cn_identity_save. CN_ENOTFOUND when missing,
 * CN_EINVAL when malformed (wrong size, pk not matching sk).
 */
CN_MUST_USE int cn_identity_load(const char *path, cn_identity_t *id);
/** Writes the secret key to path, mode 0600, atomically (tmp + rename + fsync). */
CN_MUST_USE int cn_identity_save(const cn_identity_t *id, const char *path);
/** Wipes and frees the secret key. Accepts a zeroed or disposed identity. */
void cn_identity_dispose(cn_identity_t *id);

/** Signs msg (detached Ed25519 signature). */
CN_MUST_USE int cn_identity_sign(const cn_identity_t *id, const void *msg, size_t len,
                                 uint8_t sig[CN_SIGNATURE_LEN]);
/** Verifies a detached Ed25519 signature; CN_EAUTH when it fails. */
CN_MUST_USE int cn_sig_verify(const uint8_t pk[CN_DEVICE_ID_LEN], const void *msg, size_t len,
                              const uint8_t sig[CN_SIGNATURE_LEN]);

/**
 * Builds the auth / register / link transcript of proto/cn_proto.h into out
 * (reset first). context is CN_AUTH_CONTEXT, CN_REGISTER_CONTEXT or
 * CN_LINK_CONTEXT; handle is NULL for auth.
 */
CN_MUST_USE int cn_transcript_session(cn_buf_t *out, const char *context,
                                      const uint8_t nonce[CN_NONCE_LEN],
                                      const uint8_t node_id[CN_DEVICE_ID_LEN],
                                      const uint8_t device_id[CN_DEVICE_ID_LEN],
                                      uint64_t server_time, const uint8_t exporter[CN_EXPORTER_LEN],
                                      const char *handle);

/** Transcript of a signed prekey: CN_PREKEY_CONTEXT ‖ key_id ‖ public_key. */
CN_MUST_USE int cn_transcript_prekey(cn_buf_t *out, uint32_t key_id,
                                     const uint8_t public_key[CN_PREKEY_LEN]);

/** Transcript of a link certificate: context ‖ len ‖ handle ‖ device_id. */
CN_MUST_USE int cn_transcript_link_cert(cn_buf_t *out, const char *handle,
                                        const uint8_t device_id[CN_DEVICE_ID_LEN]);

/** An X25519 key pair for prekeys; sk is sodium_malloc'd. */
typedef struct cn_x25519 {
    uint8_t pk[CN_X25519_LEN];
    uint8_t *sk;
} cn_x25519_t;

CN_MUST_USE int cn_x25519_generate(cn_x25519_t *kp);
void cn_x25519_dispose(cn_x25519_t *kp);

#endif /* CN_CRYPTO_H */
