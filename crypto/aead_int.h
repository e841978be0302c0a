/*
 * ChaCha20-Poly1305 (RFC 8439) sealing for the records at rest
 * (crypto/aead.c). Not part of the public header.
 */
#ifndef CN_AEAD_INT_H
#define CN_AEAD_INT_H

#include <stddef.h>
#include <stdint.h>

/**
 * The bytes of libsodium's crypto_aead_chacha20poly1305_ietf_encrypt
 * (combined mode): mlen bytes of ciphertext then the 16-byte tag into c,
 * which may overlap m. key: 32 bytes, npub: 12.
 */
void cn__aead_chacha20poly1305_ietf_seal(uint8_t *c, const uint8_t *m, size_t mlen,
                                         const uint8_t *ad, size_t adlen, const uint8_t *npub,
                                         const uint8_t *key);

#endif
