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
/** Rebuilds an identity from its 32-byte seed (the first half of sk). */
CN_MUST_USE int cn_identity_from_seed(const uint8_t seed[32], cn_identity_t *id);
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

/*
 * ===================================================================
 * The client-side E2E protocol (docs/E2E.md). Everything below is pure
 * (no I/O): bytes in, bytes out, so that it can be tested and fuzzed.
 * ===================================================================
 */

/* ------------------------------------------------------ primitives */

#define CN_SHA256_LEN 32
#define CN_HKDF_MAX   (255u * CN_SHA256_LEN) /* RFC 5869 2.3: L <= 255*HashLen */

/** X25519(sk, pk) (RFC 7748). CN_EAUTH when the result is all zero (a
 * low-order point: the peer contributed nothing). */
CN_MUST_USE int cn_x25519(uint8_t out[CN_X25519_LEN], const uint8_t sk[CN_X25519_LEN],
                          const uint8_t pk[CN_X25519_LEN]);

/*
 * A keyed 64-bit hash for in-memory tables whose keys clients choose (ids,
 * addresses): SipHash-2-4, libsodium's crypto_shorthash, under a random key
 * per table or process, so nobody can aim keys at one chain or probe run.
 */
#define CN_TABLE_KEY_LEN 16
/** Fills key with random bytes. */
void cn_table_key_new(uint8_t key[CN_TABLE_KEY_LEN]);
uint64_t cn_table_hash(const uint8_t key[CN_TABLE_KEY_LEN], const void *p, size_t n);

/** HMAC-SHA256 over msg with a key of any length (libsodium's
 * crypto_auth_hmacsha256 state API). */
CN_MUST_USE int cn_hmac_sha256(uint8_t out[CN_SHA256_LEN], const void *key, size_t klen,
                               const void *msg, size_t mlen);
/** RFC 5869 2.2 HKDF-Extract; salt may be NULL/0 (HashLen zero bytes). */
CN_MUST_USE int cn_hkdf_extract(uint8_t prk[CN_SHA256_LEN], const void *salt, size_t slen,
                                const void *ikm, size_t ilen);
/** RFC 5869 2.3 HKDF-Expand; olen <= CN_HKDF_MAX, prk_len >= 32. */
CN_MUST_USE int cn_hkdf_expand(void *out, size_t olen, const uint8_t *prk, size_t prk_len,
                               const void *info, size_t ilen);
/** Extract then expand. */
CN_MUST_USE int cn_hkdf(void *out, size_t olen, const void *salt, size_t slen, const void *ikm,
                        size_t ilen, const void *info, size_t info_len);

/** The X25519 public key of an Ed25519 public key (birational map), used
 * for the identity DH of X3DH. CN_EINVAL for a key that does not map. */
CN_MUST_USE int cn_ed25519_pk_to_x25519(uint8_t out[CN_X25519_LEN],
                                        const uint8_t pk[CN_DEVICE_ID_LEN]);
/** The X25519 secret of an identity into sk (caller's sodium memory). */
CN_MUST_USE int cn_identity_x25519_sk(const cn_identity_t *id, uint8_t sk[CN_X25519_LEN]);

/* ------------------------------------------------------------ X3DH */

/** A prekey bundle as fetched from the node (FetchPrekeys). */
typedef struct cn_prekey_bundle {
    uint8_t identity[CN_DEVICE_ID_LEN]; /* the device id: Ed25519 identity key */
    uint32_t spk_id;
    uint8_t spk[CN_X25519_LEN];
    uint8_t spk_sig[CN_SIGNATURE_LEN]; /* over cn_transcript_prekey(spk_id, spk) */
    bool has_opk;
    uint32_t opk_id;
    uint8_t opk[CN_X25519_LEN];
} cn_prekey_bundle_t;

/** Checks the signed prekey's signature by the bundle's identity: CN_EAUTH
 * when it does not verify. The client checks this itself, whatever the
 * node did. */
CN_MUST_USE int cn_prekey_bundle_verify(const cn_prekey_bundle_t *b);

/* ---------------------------------------------------- wire messages */

#define CN_E2E_VERSION       1
#define CN_E2E_PREKEY_MSG    1 /* X3DH initial message + ratchet message */
#define CN_E2E_RATCHET_MSG   2
#define CN_E2E_TAG_LEN       16 /* Poly1305 */
#define CN_E2E_PLAINTEXT_MAX (60u * 1024u)
#define CN_E2E_OVERHEAD      (2 + 32 + 32 + 4 + 1 + 4 + 32 + 4 + 4 + CN_E2E_TAG_LEN)

/**
 * A parsed E2E envelope (docs/E2E.md, "Wire format"). Fields of the X3DH
 * part are set only for CN_E2E_PREKEY_MSG. header/ct borrow the input.
 */
typedef struct cn_e2e_msg {
    uint8_t type;
    uint8_t ik[CN_DEVICE_ID_LEN]; /* sender's identity (Ed25519) */
    uint8_t ek[CN_X25519_LEN];    /* sender's ephemeral (X3DH base key) */
    uint32_t spk_id;
    bool has_opk;
    uint32_t opk_id;
    uint8_t dh[CN_X25519_LEN]; /* ratchet header */
    uint32_t pn, n;
    const uint8_t *header; /* every byte before ct: bound as associated data */
    size_t header_len;
    const uint8_t *ct; /* ciphertext ‖ tag */
    size_t ct_len;
} cn_e2e_msg_t;

/** Strict decoder: CN_EVERSION for another version, CN_ETOOBIG above
 * CN_E2E_PLAINTEXT_MAX, CN_EINVAL for anything else malformed. */
CN_MUST_USE int cn_e2e_msg_parse(const uint8_t *p, size_t n, cn_e2e_msg_t *out);

/* -------------------------------------------------- Double Ratchet */

#define CN_RATCHET_MAX_SKIP      1000  /* default bound on stored skipped keys */
#define CN_RATCHET_SKIP_HARD_MAX 10000 /* largest bound a state may carry */

/** One Double Ratchet state (Signal's spec, section 3). Keys live in
 * sodium_malloc memory; free with cn_ratchet_free. */
typedef struct cn_ratchet cn_ratchet_t;

/**
 * X3DH as the initiator (Alice, X3DH section 3.3): verifies the bundle's
 * signature, derives SK and returns a ratchet whose messages are prekey
 * messages until the peer's first reply. Returns owned.
 */
CN_MUST_USE int cn_x3dh_initiate(const cn_identity_t *me, const cn_prekey_bundle_t *b,
                                 cn_ratchet_t **out);
/**
 * X3DH as the responder (Bob, section 3.4) for a parsed prekey message:
 * spk is the signed prekey the message names, opk the one-time prekey
 * (NULL when the message names none). The caller decrypts the message
 * with the result and, only if that works, keeps it and deletes opk.
 */
CN_MUST_USE int cn_x3dh_respond(const cn_identity_t *me, const cn_x25519_t *spk,
                                const cn_x25519_t *opk, const cn_e2e_msg_t *m, cn_ratchet_t **out);

void cn_ratchet_free(cn_ratchet_t *r);
/** Encrypts pt into one wire message appended to out. */
CN_MUST_USE int cn_ratchet_encrypt(cn_ratchet_t *r, const void *pt, size_t n, cn_buf_t *out);
/**
 * Decrypts a parsed message, appending the plaintext to pt. All or
 * nothing: on any failure the state is unchanged. CN_EAUTH (forged,
 * tampered or wrong session), CN_EEXIST (a replay: its key was used and
 * deleted), CN_ELIMIT (it would skip more keys than the bound).
 */
CN_MUST_USE int cn_ratchet_decrypt(cn_ratchet_t *r, const cn_e2e_msg_t *m, cn_buf_t *pt);
/** Sets the skipped-key bound (1..CN_RATCHET_SKIP_HARD_MAX). */
CN_MUST_USE int cn_ratchet_set_max_skip(cn_ratchet_t *r, uint32_t max);
uint32_t cn_ratchet_skipped(const cn_ratchet_t *r);
/** The peer's identity key (Ed25519). */
const uint8_t *cn_ratchet_remote_identity(const cn_ratchet_t *r);
/** Versioned binary encoding (docs/E2E.md) and its strict decoder. */
CN_MUST_USE int cn_ratchet_encode(const cn_ratchet_t *r, cn_buf_t *out);
CN_MUST_USE int cn_ratchet_decode(const uint8_t *p, size_t n, cn_ratchet_t **out);

/* ------------------------------------------------------- sessions */

#define CN_SESSION_STATES_MAX 4 /* the active state plus archived ones */

/**
 * Every ratchet state shared with one peer device, newest (active) first.
 * Keeping archived states lets two devices that started sessions at the
 * same time converge (Signal's session records do the same).
 */
typedef struct cn_session cn_session_t;

CN_MUST_USE int cn_session_new(cn_session_t **out);
void cn_session_free(cn_session_t *s);
bool cn_session_has_active(const cn_session_t *s);
/** Takes ownership of r and makes it active (the oldest beyond the cap is dropped). */
CN_MUST_USE int cn_session_add(cn_session_t *s, cn_ratchet_t *r);
/** Encrypts with the active state; CN_ENOTFOUND without one. */
CN_MUST_USE int cn_session_encrypt(cn_session_t *s, const void *pt, size_t n, cn_buf_t *out);
/**
 * Decrypts with the state the message belongs to (a prekey message: the
 * state created from its base key; CN_ENOTFOUND when there is none and
 * X3DH must run). A state that decrypts becomes active.
 */
CN_MUST_USE int cn_session_decrypt(cn_session_t *s, const cn_e2e_msg_t *m, cn_buf_t *pt);
CN_MUST_USE int cn_session_encode(const cn_session_t *s, cn_buf_t *out);
CN_MUST_USE int cn_session_decode(const uint8_t *p, size_t n, cn_session_t **out);

/* ---------------------------------------------------- sender keys */

#define CN_SENDERKEY_MAX_SKIP 1000

/** A group sender key (chain key ratchet + Ed25519 signing key). */
typedef struct cn_senderkey cn_senderkey_t;

/** A fresh own sender key (can encrypt). Returns owned. */
CN_MUST_USE int cn_senderkey_generate(uint32_t key_id, cn_senderkey_t **out);
void cn_senderkey_free(cn_senderkey_t *k);
/** The distribution message (sent to each member over pairwise sessions). */
CN_MUST_USE int cn_senderkey_distribution(const cn_senderkey_t *k, cn_buf_t *out);
/** A receiving sender key from a distribution message (can only decrypt). */
CN_MUST_USE int cn_senderkey_from_distribution(const uint8_t *p, size_t n, cn_senderkey_t **out);
/** Encrypts and signs one group message appended to out (own keys only). */
CN_MUST_USE int cn_senderkey_encrypt(cn_senderkey_t *k, const void *pt, size_t n, cn_buf_t *out);
/** Verifies and decrypts; all or nothing like cn_ratchet_decrypt. */
CN_MUST_USE int cn_senderkey_decrypt(cn_senderkey_t *k, const uint8_t *msg, size_t n, cn_buf_t *pt);
CN_MUST_USE int cn_senderkey_encode(const cn_senderkey_t *k, cn_buf_t *out);
CN_MUST_USE int cn_senderkey_decode(const uint8_t *p, size_t n, cn_senderkey_t **out);
/** The key id and the next iteration (chain position) of k. */
void cn_senderkey_info(const cn_senderkey_t *k, uint32_t *key_id, uint32_t *iteration);
/**
 * The key id and iteration a group message claims (its header only; not
 * verified). CN_EINVAL when too short, CN_EVERSION for another version.
 */
CN_MUST_USE int cn_senderkey_message_info(const uint8_t *msg, size_t n, uint32_t *key_id,
                                          uint32_t *iteration);
/**
 * Moves k's chain forward to iteration without keeping the keys it
 * passes (they are gone for good). CN_EINVAL when iteration is behind.
 */
CN_MUST_USE int cn_senderkey_advance(cn_senderkey_t *k, uint32_t iteration);
/** A copy of k (sodium memory). Returns owned; free with cn_senderkey_free. */
CN_MUST_USE int cn_senderkey_clone(const cn_senderkey_t *k, cn_senderkey_t **out);

/* ----------------------------------------------------------- media */

#define CN_MEDIA_KEY_LEN    32
#define CN_MEDIA_DIGEST_LEN 32     /* SHA-256 of the whole ciphertext */
#define CN_MEDIA_CHUNK      65536u /* plaintext bytes per secretstream message */
#define CN_MEDIA_MAX        (1u << 30)

/** Encrypts a file image with a fresh random key (written to key) in
 * secretstream chunks; digest covers the ciphertext appended to out. */
CN_MUST_USE int cn_media_encrypt(const void *pt, size_t n, uint8_t key[CN_MEDIA_KEY_LEN],
                                 uint8_t digest[CN_MEDIA_DIGEST_LEN], cn_buf_t *out);
/** Checks the digest, then decrypts every chunk; a truncated, reordered or
 * extended stream fails with CN_EAUTH. */
CN_MUST_USE int cn_media_decrypt(const uint8_t *ct, size_t n, const uint8_t key[CN_MEDIA_KEY_LEN],
                                 const uint8_t digest[CN_MEDIA_DIGEST_LEN], cn_buf_t *out);

/* ------------------------------------------------- sealed at rest */

#define CN_SEAL_KEY_LEN    32
#define CN_PWHASH_SALT_LEN 16

/** Argon2id (crypto_pwhash) of a passphrase into key (caller's sodium memory). */
CN_MUST_USE int cn_pwhash_derive(uint8_t key[CN_SEAL_KEY_LEN], const char *pass, size_t plen,
                                 const uint8_t salt[CN_PWHASH_SALT_LEN], uint64_t opslimit,
                                 size_t memlimit);
/** Seals pt under key for a purpose label (bound as associated data, so a
 * sealed file cannot be swapped for another): appended to out. */
CN_MUST_USE int cn_seal_blob(const uint8_t key[CN_SEAL_KEY_LEN], const char *label, const void *pt,
                             size_t n, cn_buf_t *out);
/** Opens a sealed blob into out (reset first); CN_EAUTH for a wrong key,
 * label or tampered bytes. The caller wipes out after use. */
CN_MUST_USE int cn_open_blob(const uint8_t key[CN_SEAL_KEY_LEN], const char *label,
                             const uint8_t *p, size_t n, cn_buf_t *out);
/** Wipes and frees a buffer that held secrets. */
void cn_buf_wipe(cn_buf_t *b);

/* ------------------------------------- at-rest records and the key ring */

/*
 * The node's encryption at rest (DESIGN section 5). A master key (from a
 * file or CN_MASTER_KEY_ENV) wraps a key ring of data keys; every record
 * that holds user data is sealed under the ring's current data key.
 *
 * Sealed record, version 1 (CN_ATREST_OVERHEAD bytes more than the plaintext):
 *   magic u8 = CN_ATREST_MAGIC ‖ key_id u32be ‖ expires_hint u64be
 *   ‖ nonce (24) ‖ XChaCha20-Poly1305 ciphertext ‖ tag (16)
 * (the nonce: 16 random bytes per ring instance ‖ a u64be counter)
 * associated data: magic ‖ key_id ‖ expires_hint ‖ the caller's AD (the
 * store passes column family id ‖ record key), so a value neither opens
 * under another key, CF or record nor with a changed hint. expires_hint
 * is readable without the key (compaction filters use it).
 *
 * Sealed ring, version 1 (a meta value of the store):
 *   "CNKR" ‖ version u8 = 1 ‖ flags u8 ‖ current u32be ‖ next_id u32be
 *   ‖ n u32be ‖ n × (id u32be ‖ state u8) ‖ nonce (24)
 *   ‖ XChaCha20-Poly1305(n × 32 key bytes) ‖ tag (16)
 * associated data: everything before the nonce (version, ids, states).
 */
#define CN_ATREST_KEY_LEN   32
#define CN_ATREST_MAGIC     0xE1 /* high nibble: format, low nibble: version 1 */
#define CN_ATREST_NONCE_LEN 24
#define CN_ATREST_HDR_LEN   (1 + 4 + 8 + CN_ATREST_NONCE_LEN) /* 37 */
#define CN_ATREST_TAG_LEN   16
#define CN_ATREST_OVERHEAD  (CN_ATREST_HDR_LEN + CN_ATREST_TAG_LEN) /* 53 */
#define CN_ATREST_VALUE_MAX (1u << 30)                              /* largest plaintext sealed */
#define CN_ATREST_AD_MAX    512                   /* largest caller associated data */
#define CN_KEYRING_MAX      64                    /* data keys one ring holds */
#define CN_MASTER_KEY_ENV   "CHATNODE_MASTER_KEY" /* 64 hex digits; wins over the file */

/** The master key: CN_ATREST_KEY_LEN bytes of sodium_malloc memory. */
typedef struct cn_master_key {
    uint8_t *key; /* NULL when disposed */
} cn_master_key_t;

/**
 * Parses exactly 64 hex digits (surrounding whitespace ignored) into mk.
 * Borrows hex. CN_EINVAL for anything else, CN_ENOMEM. Dispose with
 * cn_master_key_dispose. Never logs the value.
 */
CN_MUST_USE int cn_master_key_from_hex(const char *hex, cn_master_key_t *mk);

/**
 * Reads a 32-byte master key file. When it is missing and create is set,
 * creates it (O_EXCL, mode 0600, random bytes, fsync'd) and *created is
 * set (created may be NULL). Results: CN_ENOTFOUND (missing, create off),
 * CN_EINVAL (not exactly 32 bytes), CN_EIO (logged with the path and
 * errno, never the key), CN_ENOMEM. Dispose with cn_master_key_dispose.
 */
CN_MUST_USE int cn_master_key_load(const char *path, bool create, cn_master_key_t *mk,
                                   bool *created);

/** Wipes and frees the key. Accepts a zeroed or disposed key. */
void cn_master_key_dispose(cn_master_key_t *mk);

/** A key's place in the ring. */
enum cn_key_state {
    CN_KEY_CURRENT = 1, /* new records are sealed under it */
    CN_KEY_OLD = 2,     /* no longer current; records may still use it */
    CN_KEY_DRAINED = 3, /* old, and a complete re-seal pass left no record under it */
};

/** One ring entry as listed by cn_keyring_list (never the key bytes). */
typedef struct cn_keyring_entry {
    uint32_t id;
    enum cn_key_state state;
} cn_keyring_entry_t;

/**
 * A key ring: up to CN_KEYRING_MAX data keys (ids from 1, never reused),
 * one current, in sodium_malloc memory. Thread-safe: seal/open/list take a
 * read lock, the changes a write lock.
 */
typedef struct cn_keyring cn_keyring_t;

/** An empty ring (no current key, next id 1). Returns owned; free with cn_keyring_free. */
CN_MUST_USE int cn_keyring_new(cn_keyring_t **out);

/** Wipes and frees the ring. Accepts NULL. */
void cn_keyring_free(cn_keyring_t *kr);

/**
 * Adds a random key with the next id and makes it current; the previous
 * current becomes CN_KEY_OLD. *id (may be NULL) gets the new id.
 * CN_ELIMIT when the ring holds CN_KEYRING_MAX keys.
 */
CN_MUST_USE int cn_keyring_rotate(cn_keyring_t *kr, uint32_t *id);

/**
 * Makes a key in the ring current again (the undo of a rotation whose
 * write failed); the previous current becomes CN_KEY_OLD. CN_ENOTFOUND.
 */
CN_MUST_USE int cn_keyring_set_current(cn_keyring_t *kr, uint32_t id);

/** Sets the state of a non-current key to OLD or DRAINED. CN_ENOTFOUND, CN_ECONFLICT (current). */
CN_MUST_USE int cn_keyring_set_state(cn_keyring_t *kr, uint32_t id, enum cn_key_state state);

/**
 * Wipes and removes a key. CN_ENOTFOUND, CN_ECONFLICT for the current
 * key. (Whether records still use it is the caller's to know.)
 */
CN_MUST_USE int cn_keyring_remove(cn_keyring_t *kr, uint32_t id);

/** The current key id (0: none). */
uint32_t cn_keyring_current(cn_keyring_t *kr);
/** The id the next rotation gets (ids below it not in the ring are retired). */
uint32_t cn_keyring_next_id(cn_keyring_t *kr);
/** Copies up to max entries (in id order) into out; returns the number of keys. */
size_t cn_keyring_list(cn_keyring_t *kr, cn_keyring_entry_t *out, size_t max);
/** True when id is in the ring. */
bool cn_keyring_has(cn_keyring_t *kr, uint32_t id);

/**
 * The legacy flag: the ring was made for a database that held plaintext
 * records, which must still be read (as key id 0) until converted.
 */
bool cn_keyring_legacy(cn_keyring_t *kr);
void cn_keyring_set_legacy(cn_keyring_t *kr, bool legacy);

/**
 * Serializes the ring sealed under the master key (format above) and
 * appends it to out. Keys whose ids are in exclude[0..nexclude) are left
 * out (a retirement not yet committed). CN_ENOMEM.
 */
CN_MUST_USE int cn_keyring_seal(cn_keyring_t *kr, const cn_master_key_t *mk,
                                const uint32_t *exclude, size_t nexclude, cn_buf_t *out);

/**
 * Opens a sealed ring. Borrows p. Returns owned (cn_keyring_free).
 * CN_EAUTH when the master key does not open it (wrong key, tampered),
 * CN_EVERSION for another format version, CN_EINVAL when malformed,
 * CN_ENOMEM.
 */
CN_MUST_USE int cn_keyring_open(const cn_master_key_t *mk, const uint8_t *p, size_t n,
                                cn_keyring_t **out);

/**
 * Seals pt (n bytes, n <= CN_ATREST_VALUE_MAX) under the current key with
 * a fresh random nonce; appends CN_ATREST_OVERHEAD + n bytes to out.
 * ad (adlen <= CN_ATREST_AD_MAX) is bound as associated data. Borrows
 * everything. CN_EINVAL (no current key, bad sizes), CN_ETOOBIG, CN_ENOMEM.
 */
CN_MUST_USE int cn_atrest_seal(cn_keyring_t *kr, const void *ad, size_t adlen,
                               uint64_t expires_hint, const void *pt, size_t n, cn_buf_t *out);

/**
 * Opens a sealed record (n bytes at p) into out, which has room for
 * n - CN_ATREST_OVERHEAD bytes and is either disjoint from p or exactly
 * p + CN_ATREST_HDR_LEN (in place). *outlen gets the plaintext length.
 * CN_EINVAL when p is not a sealed record, CN_ENOTFOUND when its key id
 * is not in the ring, CN_EAUTH when it does not verify (tampered bytes,
 * another CF, key or record).
 */
CN_MUST_USE int cn_atrest_open(cn_keyring_t *kr, const void *ad, size_t adlen, const uint8_t *p,
                               size_t n, uint8_t *out, size_t *outlen);

/**
 * Reads the clear header of a sealed record: CN_OK with *key_id and
 * *expires_hint (either may be NULL), or CN_EINVAL when p is not one (no
 * magic, too short, key id 0). Needs no key; nothing is verified.
 */
CN_MUST_USE int cn_atrest_header(const uint8_t *p, size_t n, uint32_t *key_id,
                                 uint64_t *expires_hint);

/* ---------------------------------------------------- safety number */

#define CN_SAFETY_NUMBER_DIGITS 60

/**
 * A Signal-style numeric safety number for two users: each side's 30
 * digits come from 5200 iterations of SHA-512 over its handle and its
 * sorted device keys; the two halves are concatenated in sorted order, so
 * both users compute the same number. keys are n × 32 bytes.
 */
CN_MUST_USE int cn_safety_number(const char *handle_a, const uint8_t *keys_a, size_t na,
                                 const char *handle_b, const uint8_t *keys_b, size_t nb,
                                 char out[CN_SAFETY_NUMBER_DIGITS + 1]);

/* ------------------------------------------------------------- encodings */

/**
 * Decodes base64url without padding (RFC 4648 section 5, as JWTs use it)
 * into out (capacity cap); *outlen gets the length. CN_EINVAL for any
 * character outside the alphabet, padding, or trailing garbage;
 * CN_ETOOBIG when out is too small.
 */
CN_MUST_USE int cn_base64url_decode(const char *in, size_t inlen, uint8_t *out, size_t cap,
                                    size_t *outlen);

/** Wipes n bytes in a way the compiler cannot drop (sodium_memzero). */
void cn_wipe(void *p, size_t n);

/** Constant-time comparison of n bytes; true when equal. */
bool cn_equal_ct(const void *a, const void *b, size_t n);

#endif /* CN_CRYPTO_H */
