/*
 * CBOR codecs of the stored records (DESIGN section 5).
 *
 * Every record is a definite-length CBOR map with small unsigned integer
 * keys in strictly ascending order; key 0 is the record version and comes
 * first. Decoders are strict: unknown keys, duplicate or unordered keys,
 * indefinite-length items, wrong types, trailing bytes and missing required
 * fields are all refused. A new field means a new record version.
 *
 * Decoding uses libcbor's streaming decoder one item at a time (a small pull
 * parser), so nothing is allocated and byte strings are borrowed from the
 * input. Encoding uses libcbor's header encoders straight into the caller's
 * cn_buf_t.
 */
#include "proto/cn_proto.h"

#include <cbor.h>
#include <string.h>

/* Map keys, per record. */
enum { K_VERSION = 0 };
enum { KD_USER = 1, KD_NAME, KD_CREATED, KD_REVOKED, KD_CERT, KD_APPROVED_BY };
enum { KU_CREATED = 1, KU_PRESENCE_HIDDEN, KU_DISABLED, KU_DEVICES };
enum {
    KE_SERVER_TIME = 1,
    KE_MESSAGE_ID,
    KE_FROM,
    KE_FROM_DEVICE,
    KE_KIND,
    KE_GROUP_ID,
    KE_CIPHERTEXT,
};
enum { KX_SERVER_TIME = 1, KX_RECIPIENTS };
enum { KP_KEY_ID = 1, KP_PUBLIC_KEY, KP_SIGNATURE };
enum { KN_DEVICE_ID = 1, KN_SERVER_TIME };

/** No record has more fields than this; bounds the map header. */
#define REC_FIELDS_MAX 16

/* ------------------------------------------------------------ pull parser */

enum tok_type { T_NONE = 0, T_UINT, T_BYTES, T_TEXT, T_ARRAY, T_MAP, T_BOOL, T_OTHER };

/** One decoded CBOR item header (strings carry their borrowed payload). */
typedef struct tok {
    enum tok_type type;
    uint64_t u; /* T_UINT value, T_ARRAY/T_MAP count, T_BOOL 0/1 */
    const uint8_t *p;
    size_t len;
} tok_t;

typedef struct rd {
    const uint8_t *p;
    size_t n;
    size_t pos;
} rd_t;

static void cb_u8(void *c, uint8_t v)
{
    ((tok_t *)c)->type = T_UINT;
    ((tok_t *)c)->u = v;
}

static void cb_u16(void *c, uint16_t v)
{
    ((tok_t *)c)->type = T_UINT;
    ((tok_t *)c)->u = v;
}

static void cb_u32(void *c, uint32_t v)
{
    ((tok_t *)c)->type = T_UINT;
    ((tok_t *)c)->u = v;
}

static void cb_u64(void *c, uint64_t v)
{
    ((tok_t *)c)->type = T_UINT;
    ((tok_t *)c)->u = v;
}

static void cb_bytes(void *c, cbor_data p, size_t len)
{
    tok_t *t = c;
    t->type = T_BYTES;
    t->p = p;
    t->len = len;
}

static void cb_text(void *c, cbor_data p, size_t len)
{
    tok_t *t = c;
    t->type = T_TEXT;
    t->p = p;
    t->len = len;
}

static void cb_array(void *c, size_t n)
{
    ((tok_t *)c)->type = T_ARRAY;
    ((tok_t *)c)->u = n;
}

static void cb_map(void *c, size_t n)
{
    ((tok_t *)c)->type = T_MAP;
    ((tok_t *)c)->u = n;
}

static void cb_bool(void *c, bool v)
{
    ((tok_t *)c)->type = T_BOOL;
    ((tok_t *)c)->u = v ? 1 : 0;
}

/* Everything we never accept: negative ints, tags, floats, null, undefined,
 * indefinite-length items and breaks. */
static void cb_other(void *c)
{
    ((tok_t *)c)->type = T_OTHER;
}

static void cb_other_n8(void *c, uint8_t v)
{
    (void)v;
    cb_other(c);
}

static void cb_other_n16(void *c, uint16_t v)
{
    (void)v;
    cb_other(c);
}

static void cb_other_n32(void *c, uint32_t v)
{
    (void)v;
    cb_other(c);
}

static void cb_other_n64(void *c, uint64_t v)
{
    (void)v;
    cb_other(c);
}

static void cb_other_f4(void *c, float v)
{
    (void)v;
    cb_other(c);
}

static void cb_other_f8(void *c, double v)
{
    (void)v;
    cb_other(c);
}

static const struct cbor_callbacks callbacks = {
    .uint8 = cb_u8,
    .uint16 = cb_u16,
    .uint32 = cb_u32,
    .uint64 = cb_u64,
    .negint64 = cb_other_n64,
    .negint32 = cb_other_n32,
    .negint16 = cb_other_n16,
    .negint8 = cb_other_n8,
    .byte_string_start = cb_other,
    .byte_string = cb_bytes,
    .string = cb_text,
    .string_start = cb_other,
    .indef_array_start = cb_other,
    .array_start = cb_array,
    .indef_map_start = cb_other,
    .map_start = cb_map,
    .tag = cb_other_n64,
    .float2 = cb_other_f4,
    .float4 = cb_other_f4,
    .float8 = cb_other_f8,
    .undefined = cb_other,
    .null = cb_other,
    .boolean = cb_bool,
    .indef_break = cb_other,
};

/** Reads the next item; CN_EINVAL when truncated or malformed. */
static int rd_next(rd_t *r, tok_t *t)
{
    CN_ENSURE(r->pos < r->n, CN_EINVAL);
    memset(t, 0, sizeof(*t));
    struct cbor_decoder_result res =
        cbor_stream_decode(r->p + r->pos, r->n - r->pos, &callbacks, t);
    CN_ENSURE(res.status == CBOR_DECODER_FINISHED, CN_EINVAL);
    CN_ENSURE(res.read > 0 && res.read <= r->n - r->pos, CN_EINVAL);
    r->pos += res.read;
    return CN_OK;
}

static int rd_uint(rd_t *r, uint64_t max, uint64_t *out)
{
    tok_t t;
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_UINT && t.u <= max, CN_EINVAL);
    *out = t.u;
    return CN_OK;
}

static int rd_u32(rd_t *r, uint32_t *out)
{
    uint64_t v;
    CN_TRY(rd_uint(r, UINT32_MAX, &v));
    *out = (uint32_t)v;
    return CN_OK;
}

static int rd_bool(rd_t *r, bool *out)
{
    tok_t t;
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_BOOL, CN_EINVAL);
    *out = t.u != 0;
    return CN_OK;
}

/** A byte string of at most max bytes, borrowed from the input. */
static int rd_bytes(rd_t *r, size_t max, cn_slice_t *out)
{
    tok_t t;
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_BYTES, CN_EINVAL);
    CN_ENSURE(t.len <= max, CN_ETOOBIG);
    *out = cn_slice(t.p, t.len);
    return CN_OK;
}

/** A byte string of exactly len bytes, copied into out. */
static int rd_fixed(rd_t *r, void *out, size_t len)
{
    cn_slice_t s;
    CN_TRY(rd_bytes(r, len, &s));
    CN_ENSURE(s.len == len, CN_EINVAL);
    memcpy(out, s.base, len);
    return CN_OK;
}

/** A text string of at most max bytes without NUL, copied and terminated. */
static int rd_text(rd_t *r, size_t max, char *out)
{
    tok_t t;
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_TEXT, CN_EINVAL);
    CN_ENSURE(t.len <= max, CN_ETOOBIG);
    CN_ENSURE(t.len == 0 || memchr(t.p, 0, t.len) == NULL, CN_EINVAL);
    if (t.len)
        memcpy(out, t.p, t.len);
    out[t.len] = '\0';
    return CN_OK;
}

/** True for a handle already in normal form: [a-z0-9._-]{3,32}. */
static bool handle_valid(const char *h)
{
    size_t n = strnlen(h, CN_HANDLE_MAX + 1);
    if (n < CN_HANDLE_MIN || n > CN_HANDLE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int rd_handle(rd_t *r, char out[CN_HANDLE_MAX + 1])
{
    CN_TRY(rd_text(r, CN_HANDLE_MAX, out));
    CN_ENSURE(handle_valid(out), CN_EINVAL);
    return CN_OK;
}

/**
 * Reads the map header and the version entry. *nfields is the number of
 * entries left after the version.
 */
static int rd_begin(rd_t *r, const uint8_t *p, size_t n, uint64_t *nfields)
{
    tok_t t;
    uint64_t key, version;
    r->p = p;
    r->n = n;
    r->pos = 0;
    CN_ENSURE(p != NULL || n == 0, CN_EINVAL);
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_MAP && t.u >= 1 && t.u <= REC_FIELDS_MAX, CN_EINVAL);
    CN_TRY(rd_uint(r, UINT64_MAX, &key));
    CN_ENSURE(key == K_VERSION, CN_EINVAL);
    CN_TRY(rd_uint(r, UINT64_MAX, &version));
    CN_ENSURE(version == CN_RECORD_VERSION, CN_EVERSION);
    *nfields = t.u - 1;
    return CN_OK;
}

/** Reads the next key; keys must ascend strictly (no duplicates). */
static int rd_key(rd_t *r, uint64_t *prev, uint32_t *seen, uint64_t *key)
{
    CN_TRY(rd_uint(r, REC_FIELDS_MAX, key));
    CN_ENSURE(*key > *prev, CN_EINVAL);
    *prev = *key;
    *seen |= 1u << *key;
    return CN_OK;
}

/** Checks required fields and that nothing trails the record. */
static int rd_end(const rd_t *r, uint32_t seen, uint32_t required)
{
    CN_ENSURE((seen & required) == required, CN_EINVAL);
    CN_ENSURE(r->pos == r->n, CN_EINVAL);
    return CN_OK;
}

#define BIT(k) (1u << (k))

/* --------------------------------------------------------------- writers */

/** Room for the largest CBOR item header (1 + 8 bytes). */
#define HEAD_MAX 9

static int wr_uint(cn_buf_t *b, uint64_t v)
{
    CN_TRY(cn_buf_reserve(b, HEAD_MAX));
    size_t w = cbor_encode_uint(v, b->data + b->len, HEAD_MAX);
    CN_ENSURE(w > 0, CN_EINTERNAL);
    b->len += w;
    return CN_OK;
}

static int wr_map(cn_buf_t *b, size_t n)
{
    CN_TRY(cn_buf_reserve(b, HEAD_MAX));
    size_t w = cbor_encode_map_start(n, b->data + b->len, HEAD_MAX);
    CN_ENSURE(w > 0, CN_EINTERNAL);
    b->len += w;
    return CN_OK;
}

static int wr_array(cn_buf_t *b, size_t n)
{
    CN_TRY(cn_buf_reserve(b, HEAD_MAX));
    size_t w = cbor_encode_array_start(n, b->data + b->len, HEAD_MAX);
    CN_ENSURE(w > 0, CN_EINTERNAL);
    b->len += w;
    return CN_OK;
}

static int wr_bool(cn_buf_t *b, bool v)
{
    CN_TRY(cn_buf_reserve(b, HEAD_MAX));
    size_t w = cbor_encode_bool(v, b->data + b->len, HEAD_MAX);
    CN_ENSURE(w > 0, CN_EINTERNAL);
    b->len += w;
    return CN_OK;
}

static int wr_bytes(cn_buf_t *b, const void *p, size_t n)
{
    CN_TRY(cn_buf_reserve(b, HEAD_MAX + n));
    size_t w = cbor_encode_bytestring_start(n, b->data + b->len, HEAD_MAX);
    CN_ENSURE(w > 0, CN_EINTERNAL);
    b->len += w;
    return cn_buf_append(b, p, n);
}

static int wr_text(cn_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    CN_TRY(cn_buf_reserve(b, HEAD_MAX + n));
    size_t w = cbor_encode_string_start(n, b->data + b->len, HEAD_MAX);
    CN_ENSURE(w > 0, CN_EINTERNAL);
    b->len += w;
    return cn_buf_append(b, s, n);
}

/** Writes the map header with nfields entries after the version entry. */
static int wr_begin(cn_buf_t *b, size_t nfields)
{
    CN_TRY(wr_map(b, nfields + 1));
    CN_TRY(wr_uint(b, K_VERSION));
    return wr_uint(b, CN_RECORD_VERSION);
}

/*
 * Each encoder validates first and writes after, and on an allocation
 * failure truncates out back to its unread bytes before the call, so out
 * never holds half a record (cn_buf_reserve may compact, moving rpos).
 */
#define ENCODE_GUARD(b, expr)                                                                      \
    do {                                                                                           \
        size_t kept_ = (b)->len - (b)->rpos;                                                       \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            (b)->len = (b)->rpos + kept_;                                                          \
        return rc_;                                                                                \
    } while (0)

/* ---------------------------------------------------------------- device */

static int device_check(const cn_rec_device_t *r)
{
    CN_ENSURE(handle_valid(r->user), CN_EINVAL);
    CN_ENSURE(strnlen(r->name, CN_DEVICE_NAME_MAX + 1) <= CN_DEVICE_NAME_MAX, CN_ETOOBIG);
    return CN_OK;
}

static int device_write(const cn_rec_device_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, r->has_cert ? 6 : 4));
    CN_TRY(wr_uint(b, KD_USER));
    CN_TRY(wr_text(b, r->user));
    CN_TRY(wr_uint(b, KD_NAME));
    CN_TRY(wr_text(b, r->name));
    CN_TRY(wr_uint(b, KD_CREATED));
    CN_TRY(wr_uint(b, r->created));
    CN_TRY(wr_uint(b, KD_REVOKED));
    CN_TRY(wr_uint(b, r->revoked));
    if (r->has_cert) {
        CN_TRY(wr_uint(b, KD_CERT));
        CN_TRY(wr_bytes(b, r->cert, CN_SIGNATURE_LEN));
        CN_TRY(wr_uint(b, KD_APPROVED_BY));
        CN_TRY(wr_bytes(b, r->approved_by, CN_DEVICE_ID_LEN));
    }
    return CN_OK;
}

int cn_rec_device_encode(const cn_rec_device_t *r, cn_buf_t *out)
{
    CN_TRY(device_check(r));
    ENCODE_GUARD(out, device_write(r, out));
}

static int device_field(rd_t *r, uint64_t key, cn_rec_device_t *out)
{
    switch (key) {
    case KD_USER:
        return rd_handle(r, out->user);
    case KD_NAME:
        return rd_text(r, CN_DEVICE_NAME_MAX, out->name);
    case KD_CREATED:
        return rd_uint(r, UINT64_MAX, &out->created);
    case KD_REVOKED:
        return rd_uint(r, UINT64_MAX, &out->revoked);
    case KD_CERT:
        out->has_cert = true;
        return rd_fixed(r, out->cert, CN_SIGNATURE_LEN);
    case KD_APPROVED_BY:
        return rd_fixed(r, out->approved_by, CN_DEVICE_ID_LEN);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_device_decode(const uint8_t *p, size_t n, cn_rec_device_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        CN_TRY(device_field(&r, key, out));
    }
    CN_TRY(rd_end(&r, seen, BIT(KD_USER) | BIT(KD_NAME) | BIT(KD_CREATED) | BIT(KD_REVOKED)));
    /* The certificate and its approver come together or not at all. */
    CN_ENSURE(!(seen & BIT(KD_CERT)) == !(seen & BIT(KD_APPROVED_BY)), CN_EINVAL);
    return CN_OK;
}

/* ------------------------------------------------------------------ user */

static int user_write(const cn_rec_user_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 4));
    CN_TRY(wr_uint(b, KU_CREATED));
    CN_TRY(wr_uint(b, r->created));
    CN_TRY(wr_uint(b, KU_PRESENCE_HIDDEN));
    CN_TRY(wr_bool(b, r->presence_hidden));
    CN_TRY(wr_uint(b, KU_DISABLED));
    CN_TRY(wr_bool(b, r->disabled));
    CN_TRY(wr_uint(b, KU_DEVICES));
    CN_TRY(wr_array(b, r->ndevices));
    for (uint32_t i = 0; i < r->ndevices; i++)
        CN_TRY(wr_bytes(b, r->devices[i], CN_DEVICE_ID_LEN));
    return CN_OK;
}

int cn_rec_user_encode(const cn_rec_user_t *r, cn_buf_t *out)
{
    CN_ENSURE(r->ndevices <= CN_DEVICES_HARD_MAX, CN_ETOOBIG);
    ENCODE_GUARD(out, user_write(r, out));
}

static int rd_devices(rd_t *r, cn_rec_user_t *out)
{
    tok_t t;
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_ARRAY, CN_EINVAL);
    CN_ENSURE(t.u <= CN_DEVICES_HARD_MAX, CN_ETOOBIG);
    out->ndevices = (uint32_t)t.u;
    for (uint32_t i = 0; i < out->ndevices; i++)
        CN_TRY(rd_fixed(r, out->devices[i], CN_DEVICE_ID_LEN));
    return CN_OK;
}

static int user_field(rd_t *r, uint64_t key, cn_rec_user_t *out)
{
    switch (key) {
    case KU_CREATED:
        return rd_uint(r, UINT64_MAX, &out->created);
    case KU_PRESENCE_HIDDEN:
        return rd_bool(r, &out->presence_hidden);
    case KU_DISABLED:
        return rd_bool(r, &out->disabled);
    case KU_DEVICES:
        return rd_devices(r, out);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_user_decode(const uint8_t *p, size_t n, cn_rec_user_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        CN_TRY(user_field(&r, key, out));
    }
    return rd_end(&r, seen,
                  BIT(KU_CREATED) | BIT(KU_PRESENCE_HIDDEN) | BIT(KU_DISABLED) | BIT(KU_DEVICES));
}

/* -------------------------------------------------------------- envelope */

static int envelope_check(const cn_rec_envelope_t *r)
{
    CN_ENSURE(handle_valid(r->from), CN_EINVAL);
    CN_ENSURE(r->kind <= CHAT__KIND__CONTROL, CN_EINVAL);
    CN_ENSURE(r->ciphertext.len <= CN_CIPHERTEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(r->ciphertext.base != NULL || r->ciphertext.len == 0, CN_EINVAL);
    return CN_OK;
}

static int envelope_write(const cn_rec_envelope_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, r->has_group ? 7 : 6));
    CN_TRY(wr_uint(b, KE_SERVER_TIME));
    CN_TRY(wr_uint(b, r->server_time));
    CN_TRY(wr_uint(b, KE_MESSAGE_ID));
    CN_TRY(wr_bytes(b, r->message_id, CN_MESSAGE_ID_LEN));
    CN_TRY(wr_uint(b, KE_FROM));
    CN_TRY(wr_text(b, r->from));
    CN_TRY(wr_uint(b, KE_FROM_DEVICE));
    CN_TRY(wr_bytes(b, r->from_device, CN_DEVICE_ID_LEN));
    CN_TRY(wr_uint(b, KE_KIND));
    CN_TRY(wr_uint(b, r->kind));
    if (r->has_group) {
        CN_TRY(wr_uint(b, KE_GROUP_ID));
        CN_TRY(wr_bytes(b, r->group_id, CN_GROUP_ID_LEN));
    }
    CN_TRY(wr_uint(b, KE_CIPHERTEXT));
    return wr_bytes(b, r->ciphertext.base, r->ciphertext.len);
}

int cn_rec_envelope_encode(const cn_rec_envelope_t *r, cn_buf_t *out)
{
    CN_TRY(envelope_check(r));
    ENCODE_GUARD(out, envelope_write(r, out));
}

static int envelope_field(rd_t *r, uint64_t key, cn_rec_envelope_t *out)
{
    switch (key) {
    case KE_SERVER_TIME:
        return rd_uint(r, UINT64_MAX, &out->server_time);
    case KE_MESSAGE_ID:
        return rd_fixed(r, out->message_id, CN_MESSAGE_ID_LEN);
    case KE_FROM:
        return rd_handle(r, out->from);
    case KE_FROM_DEVICE:
        return rd_fixed(r, out->from_device, CN_DEVICE_ID_LEN);
    case KE_KIND:
        CN_TRY(rd_u32(r, &out->kind));
        CN_ENSURE(out->kind <= CHAT__KIND__CONTROL, CN_EINVAL);
        return CN_OK;
    case KE_GROUP_ID:
        out->has_group = true;
        return rd_fixed(r, out->group_id, CN_GROUP_ID_LEN);
    case KE_CIPHERTEXT:
        return rd_bytes(r, CN_CIPHERTEXT_MAX, &out->ciphertext);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_envelope_decode(const uint8_t *p, size_t n, cn_rec_envelope_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        CN_TRY(envelope_field(&r, key, out));
    }
    return rd_end(&r, seen,
                  BIT(KE_SERVER_TIME) | BIT(KE_MESSAGE_ID) | BIT(KE_FROM) | BIT(KE_FROM_DEVICE) |
                      BIT(KE_KIND) | BIT(KE_CIPHERTEXT));
}

/* ---------------------------------------------------------------- dedupe */

static int dedupe_write(const cn_rec_dedupe_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 2));
    CN_TRY(wr_uint(b, KX_SERVER_TIME));
    CN_TRY(wr_uint(b, r->server_time));
    CN_TRY(wr_uint(b, KX_RECIPIENTS));
    return wr_uint(b, r->recipients);
}

int cn_rec_dedupe_encode(const cn_rec_dedupe_t *r, cn_buf_t *out)
{
    ENCODE_GUARD(out, dedupe_write(r, out));
}

int cn_rec_dedupe_decode(const uint8_t *p, size_t n, cn_rec_dedupe_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        if (key == KX_SERVER_TIME)
            CN_TRY(rd_uint(&r, UINT64_MAX, &out->server_time));
        else if (key == KX_RECIPIENTS)
            CN_TRY(rd_u32(&r, &out->recipients));
        else
            return CN_EINVAL;
    }
    return rd_end(&r, seen, BIT(KX_SERVER_TIME) | BIT(KX_RECIPIENTS));
}

/* ---------------------------------------------------------------- prekey */

static int prekey_write(const cn_rec_prekey_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, r->has_signature ? 3 : 2));
    CN_TRY(wr_uint(b, KP_KEY_ID));
    CN_TRY(wr_uint(b, r->key_id));
    CN_TRY(wr_uint(b, KP_PUBLIC_KEY));
    CN_TRY(wr_bytes(b, r->public_key, CN_PREKEY_LEN));
    if (r->has_signature) {
        CN_TRY(wr_uint(b, KP_SIGNATURE));
        CN_TRY(wr_bytes(b, r->signature, CN_SIGNATURE_LEN));
    }
    return CN_OK;
}

int cn_rec_prekey_encode(const cn_rec_prekey_t *r, cn_buf_t *out)
{
    ENCODE_GUARD(out, prekey_write(r, out));
}

static int prekey_field(rd_t *r, uint64_t key, cn_rec_prekey_t *out)
{
    switch (key) {
    case KP_KEY_ID:
        return rd_u32(r, &out->key_id);
    case KP_PUBLIC_KEY:
        return rd_fixed(r, out->public_key, CN_PREKEY_LEN);
    case KP_SIGNATURE:
        out->has_signature = true;
        return rd_fixed(r, out->signature, CN_SIGNATURE_LEN);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_prekey_decode(const uint8_t *p, size_t n, cn_rec_prekey_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        CN_TRY(prekey_field(&r, key, out));
    }
    return rd_end(&r, seen, BIT(KP_KEY_ID) | BIT(KP_PUBLIC_KEY));
}

/* ------------------------------------------------------------------ push */

static int push_write(const cn_rec_push_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 2));
    CN_TRY(wr_uint(b, KN_DEVICE_ID));
    CN_TRY(wr_bytes(b, r->device_id, CN_DEVICE_ID_LEN));
    CN_TRY(wr_uint(b, KN_SERVER_TIME));
    return wr_uint(b, r->server_time);
}

int cn_rec_push_encode(const cn_rec_push_t *r, cn_buf_t *out)
{
    ENCODE_GUARD(out, push_write(r, out));
}

int cn_rec_push_decode(const uint8_t *p, size_t n, cn_rec_push_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        if (key == KN_DEVICE_ID)
            CN_TRY(rd_fixed(&r, out->device_id, CN_DEVICE_ID_LEN));
        else if (key == KN_SERVER_TIME)
            CN_TRY(rd_uint(&r, UINT64_MAX, &out->server_time));
        else
            return CN_EINVAL;
    }
    return rd_end(&r, seen, BIT(KN_DEVICE_ID) | BIT(KN_SERVER_TIME));
}
