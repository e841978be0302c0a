/*
 * The record layer of encryption at rest (DESIGN section 5): every value
 * of the column families that hold user data is sealed on its way into a
 * batch and opened on every way out (point gets, iterators, reads through
 * the batch), so the ops and reads above see plaintext only.
 *
 * A sealed value is crypto/cn_crypto.h's record (CN_ATREST_OVERHEAD bytes
 * more than the plaintext) with associated data CF id ‖ record key: a
 * value copied under another key or into another column family does not
 * open. Its expires_hint is the time the TTL filters need (mailbox:
 * server_time; media: the expiry, 0 = never), so they never need a key.
 * meta (node-internal counters, policies, invites), dedupe (below) and
 * default stay plaintext; the key ring in meta is sealed under the master
 * key.
 *
 * A database from before encryption holds plaintext values: while the ring
 * says so (its legacy flag) a value without the magic byte reads as it is
 * (key id 0), and the re-seal pass converts it. Once a complete pass found
 * none left the flag is cleared, and a plaintext value is then treated as
 * tampering. A failed open is logged (the CF and the key length, never the
 * key or the value), counted in cn_store_keys_stats and returned as
 * CN_EAUTH.
 */
#include "store/store_internal.h"

#include <assert.h>
#include <string.h>

static const char *const cf_label[CN__CF_COUNT] = {
    "default", "devices", "users",   "prekeys", "mailbox", "dedupe",
    "groups",  "media",   "history", "meta",    "push",    "gmsg",
};

/*
 * dedupe is not sealed since 2026-11-29: its value is the first result's
 * server_time only (proto/cn_proto.h cn_rec_dedupe_t), the time a sealed
 * record shows in its clear header anyway, and its key (sender device ‖
 * message id) was never sealable. Sealing it cost an AEAD per Send (about
 * 320 ns, 3 % of the node's CPU at relay-80k) and protected nothing else.
 * Values sealed before still open (cn__value_needs_open), and the re-seal pass
 * writes them back in the clear (ops_keys.c).
 */
bool cn__cf_sealed(const cn_store_t *s, enum cn__cf cf)
{
    return s->ring != NULL && cf != CN__CF_DEFAULT && cf != CN__CF_META && cf != CN__CF_DEDUPE;
}

bool cn__value_needs_open(const cn_store_t *s, enum cn__cf cf, const uint8_t *v, size_t n)
{
    if (cn__cf_sealed(s, cf))
        return true;
    return s->ring != NULL && cf == CN__CF_DEDUPE && cn_atrest_header(v, n, NULL, NULL) == CN_OK;
}

/** The record's associated data: CF id ‖ key. */
static int value_ad(enum cn__cf cf, const void *key, size_t klen, uint8_t *ad, size_t *adlen)
{
    CN_ENSURE(klen + 1 <= CN_ATREST_AD_MAX, CN_ETOOBIG);
    ad[0] = (uint8_t)cf;
    memcpy(ad + 1, key, klen);
    *adlen = klen + 1;
    return CN_OK;
}

uint64_t cn__expires_hint(enum cn__cf cf, const uint8_t *key, size_t klen, const uint8_t *v,
                          size_t n)
{
    /* Undecodable mailbox and dedupe values keep UINT64_MAX: never "old". */
    if (cf == CN__CF_GMSG && klen == CN__KEY_GMSG_REFS)
        return n == CN__GMSG_REFS_VAL ? cn_load_u64be(v + 8) : UINT64_MAX;
    if (cf == CN__CF_MAILBOX || cf == CN__CF_GMSG) {
        cn_rec_envelope_t env;
        return cn_rec_envelope_decode(v, n, &env) == CN_OK ? env.server_time : UINT64_MAX;
    }
    if (cf != CN__CF_MEDIA)
        return 0;
    if (klen == CN__KEY_MEDIA_INFO) {
        cn_rec_media_t m;
        return cn_rec_media_decode(v, n, &m) == CN_OK ? m.expires : 0;
    }
    bool chunk = klen == CN__KEY_MEDIA_CHUNK;
    bool index = klen == CN__KEY_MEDIA_OWNER && key[0] == CN__MEDIA_OWNER;
    return (chunk || index) && n >= 8 ? cn_load_u64be(v) : 0;
}

int cn__seal_value_hinted(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                          const void *v, size_t n, uint64_t hint, cn_buf_t *out)
{
    uint8_t ad[CN_ATREST_AD_MAX];
    size_t adlen;
    CN_TRY(value_ad(cf, key, klen, ad, &adlen));
    assert(hint == cn__expires_hint(cf, key, klen, v, n));
    return cn_atrest_seal(s->ring, ad, adlen, hint, v, n, out);
}

int cn__seal_value(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, const void *v,
                   size_t n, cn_buf_t *out)
{
    return cn__seal_value_hinted(s, cf, key, klen, v, n, cn__expires_hint(cf, key, klen, v, n),
                                 out);
}

int cn__seal_meta(cn_store_t *s, const void *key, size_t klen, const void *v, size_t n,
                  cn_buf_t *out)
{
    if (s->ring == NULL)
        return cn_buf_append(out, v, n);
    return cn__seal_value_hinted(s, CN__CF_META, key, klen, v, n, 0, out);
}

static int refused(cn_store_t *s, enum cn__cf cf, size_t klen, const char *why)
{
    __atomic_fetch_add(&s->auth_failures, 1, __ATOMIC_RELAXED);
    cn_log_error("store_value_refused", "cf=%s key_len=%zu reason=\"%s\"", cf_label[cf], klen, why);
    return CN_EAUTH;
}

int cn__value_key_id(cn_store_t *s, const uint8_t *v, size_t n, uint32_t *key_id)
{
    if (cn_atrest_header(v, n, key_id, NULL) == CN_OK) {
        /* In a legacy database a plaintext value may start like a sealed
         * one by chance; it cannot name a key the ring never had. */
        if (!cn__legacy(s) || cn_keyring_has(s->ring, *key_id))
            return CN_OK;
    }
    *key_id = 0;
    return cn__legacy(s) ? CN_OK : CN_EAUTH;
}

/**
 * Opens v (n bytes) into out (room for n bytes, may be v + header).
 * *plain: the value is plaintext (legacy) and nothing was written.
 */
static int open_to(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, const uint8_t *v,
                   size_t n, uint8_t *out, size_t *outlen, bool *plain)
{
    uint8_t ad[CN_ATREST_AD_MAX];
    size_t adlen;
    uint32_t id;
    *plain = false;
    if (cn__value_key_id(s, v, n, &id) < 0)
        return refused(s, cf, klen, "plaintext value in an encrypted database");
    if (id == 0) {
        *plain = true;
        *outlen = n;
        return CN_OK;
    }
    CN_TRY(value_ad(cf, key, klen, ad, &adlen));
    int rc = cn_atrest_open(s->ring, ad, adlen, v, n, out, outlen);
    if (rc == CN_ENOTFOUND)
        return refused(s, cf, klen, "sealed under a key not in the ring");
    if (rc < 0)
        return refused(s, cf, klen, "sealed value does not authenticate");
    return CN_OK;
}

int cn__open_inplace(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, uint8_t *v,
                     size_t *vlen)
{
    bool plain;
    size_t n;
    if (!cn__value_needs_open(s, cf, v, *vlen))
        return CN_OK;
    CN_TRY(open_to(s, cf, key, klen, v, *vlen, v + CN_ATREST_HDR_LEN, &n, &plain));
    if (!plain)
        memmove(v, v + CN_ATREST_HDR_LEN, n);
    *vlen = n;
    return CN_OK;
}

/* Opens v into scratch (*out: scratch's bytes, or v when it was plaintext). */
static int open_scratch(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                        const uint8_t *v, size_t n, cn_buf_t *scratch, const uint8_t **out,
                        size_t *outlen)
{
    bool plain;
    cn_buf_reset(scratch);
    CN_TRY(cn_buf_reserve(scratch, n));
    CN_TRY(open_to(s, cf, key, klen, v, n, scratch->data, outlen, &plain));
    if (!plain)
        *out = scratch->data;
    return CN_OK;
}

int cn__open_copy(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, const uint8_t *v,
                  size_t n, cn_buf_t *scratch, const uint8_t **out, size_t *outlen)
{
    *out = v;
    *outlen = n;
    if (!cn__value_needs_open(s, cf, v, n))
        return CN_OK;
    return open_scratch(s, cf, key, klen, v, n, scratch, out, outlen);
}

int cn__open_meta(cn_store_t *s, const void *key, size_t klen, const uint8_t *v, size_t n,
                  cn_buf_t *scratch, const uint8_t **out, size_t *outlen)
{
    *out = v;
    *outlen = n;
    if (s->ring == NULL)
        return CN_OK;
    return open_scratch(s, CN__CF_META, key, klen, v, n, scratch, out, outlen);
}

size_t cn__plain_len(cn_store_t *s, enum cn__cf cf, const uint8_t *v, size_t n)
{
    uint32_t id;
    if (!cn__cf_sealed(s, cf) || cn__value_key_id(s, v, n, &id) < 0 || id == 0)
        return n;
    return n - CN_ATREST_OVERHEAD;
}

int cn__db_get(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen, char **val,
               size_t *vlen)
{
    char *err = NULL;
    *vlen = 0;
    *val = rocksdb_get_cf(s->db, s->ro, s->cf[cf], (const char *)key, klen, vlen, &err);
    if (err != NULL) {
        *val = NULL;
        return cn__rdb_err(err, "get");
    }
    if (*val == NULL)
        return CN_ENOTFOUND;
    int rc = cn__open_inplace(s, cf, key, klen, (uint8_t *)*val, vlen);
    if (rc < 0) {
        rocksdb_free(*val);
        *val = NULL;
    }
    return rc;
}
