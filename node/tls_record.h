/**
 * Internal to node/: the TLS 1.3 record layer (RFC 8446 section 5) that
 * takes over a connection once OpenSSL has finished its handshake, the way
 * kTLS would if this kernel had it. Sans-I/O: ciphertext in, plaintext and
 * ciphertext out. node/tls.c is its only user; the unit tests and the fuzz
 * harness drive both ends of a connection with it.
 *
 * What it does: application data both ways (records of at most 2^14 bytes),
 * KeyUpdate both ways (RFC 8446 4.6.3: a requested update is answered at
 * once, and the send side updates its own key every CN_TLS_RECORDS_PER_KEY
 * records), close_notify both ways, and a fatal alert before every error it
 * detects. What it refuses: more than CN_TLS_KEY_UPDATES_MAX KeyUpdates in a
 * row, any other post-handshake message (this server
 * sends no tickets and asks for no certificate), a handshake message split
 * across records, unprotected records, records over the RFC's limits.
 */
#ifndef CN_NODE_TLS_RECORD_H
#define CN_NODE_TLS_RECORD_H

#include "common/cn_common.h"

#include <openssl/evp.h>

#define CN_TLS_RECORD_HEADER     5                   /* type, legacy version, length */
#define CN_TLS_RECORD_PLAIN_MAX  16384u              /* 2^14 bytes of content */
#define CN_TLS_RECORD_CIPHER_MAX (16384u + 256u)     /* RFC 8446 5.2 */
#define CN_TLS_RECORD_TAG        16u                 /* all three suites */
#define CN_TLS_SECRET_MAX        48u                 /* SHA-384's length */
#define CN_TLS_RECORDS_PER_KEY   ((uint64_t)1 << 24) /* RFC 8446 5.5: AES-GCM <= 2^24.5 */
/* KeyUpdates accepted in a row without application data between them (as
 * OpenSSL's MAX_KEY_UPDATE_MESSAGES): each costs key derivations, so a peer
 * may not send nothing else. */
#define CN_TLS_KEY_UPDATES_MAX 32

/* RFC 8446 B.4 cipher suites. */
#define CN_TLS_AES_128_GCM_SHA256       0x1301
#define CN_TLS_AES_256_GCM_SHA384       0x1302
#define CN_TLS_CHACHA20_POLY1305_SHA256 0x1303

/** One direction's traffic protection. */
typedef struct cn_tls_dir {
    EVP_CIPHER_CTX *aead; /* keyed once per traffic secret; the nonce is set per record */
    uint64_t seq;
    uint8_t iv[12];
    uint8_t secret[CN_TLS_SECRET_MAX]; /* kept for KeyUpdate; wiped on dispose */
} cn_tls_dir_t;

typedef struct cn_tls_record {
    const EVP_CIPHER *cipher;
    const EVP_MD *md;
    uint8_t secret_len; /* the suite's hash length */
    uint8_t key_len;
    bool sent_close;          /* our close_notify or fatal alert went out */
    uint8_t updates_in_row;   /* the peer's KeyUpdates since its last data */
    int status;               /* CN_OK, or the sticky end of input */
    uint64_t records_per_key; /* CN_TLS_RECORDS_PER_KEY; tests lower it */
    cn_tls_dir_t rd, wr;
    cn_buf_t partial; /* a record split across feeds; freed once it is whole */
} cn_tls_record_t;

/**
 * Sets up both directions from the handshake's application traffic secrets
 * (read: the peer's, write: ours), each secret_len bytes, which must be the
 * suite's hash length. CN_EINVAL for another suite or length, CN_ENOMEM,
 * CN_EINTERNAL when OpenSSL lacks the algorithm. On failure nothing needs
 * disposing.
 */
CN_MUST_USE int cn_tls_record_init(cn_tls_record_t *r, uint16_t suite, const uint8_t *read_secret,
                                   const uint8_t *write_secret, size_t secret_len);
/** Frees the cipher contexts and the split record, wiping keys and secrets. */
void cn_tls_record_dispose(cn_tls_record_t *r);

/**
 * Encrypts n bytes of application data as records of at most 2^14 bytes,
 * appended to out (a KeyUpdate first when the send key is due). CN_ECLOSED
 * after our close_notify or a fatal alert; CN_ENOMEM; CN_EINTERNAL.
 */
CN_MUST_USE int cn_tls_record_seal(cn_tls_record_t *r, const uint8_t *p, size_t n, cn_buf_t *out);

/**
 * Consumes all n received bytes: complete records are opened and their
 * application data appended to plain; a trailing partial record is kept.
 * Answers (a KeyUpdate, an alert) are appended to out. Returns CN_OK,
 * CN_ECLOSED (the peer's close_notify; later bytes are ignored), CN_EPROTO
 * (a bad record: a fatal alert was appended to out), CN_ENOMEM or
 * CN_EINTERNAL. Anything but CN_OK is sticky.
 */
CN_MUST_USE int cn_tls_record_open(cn_tls_record_t *r, const uint8_t *p, size_t n, cn_buf_t *plain,
                                   cn_buf_t *out);

/**
 * Seals one record of any inner content type with n content bytes, up to
 * what the outer length allows (2^14 + 239): what a peer may send,
 * well-formed or not. The unit tests and the fuzz harness use it; the
 * node sends only through the calls around it.
 */
CN_MUST_USE int cn_tls_record_seal_type(cn_tls_record_t *r, uint8_t type, const uint8_t *p,
                                        size_t n, cn_buf_t *out);

/** Sends a KeyUpdate (asking the peer to update too when request is set). */
CN_MUST_USE int cn_tls_record_key_update(cn_tls_record_t *r, bool request, cn_buf_t *out);

/** Appends a close_notify alert (once); nothing more can be sealed after it. */
void cn_tls_record_close(cn_tls_record_t *r, cn_buf_t *out);

#endif /* CN_NODE_TLS_RECORD_H */
