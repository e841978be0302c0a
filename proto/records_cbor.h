/*
 * Internal to libchatproto, included by records.c only: the strict CBOR
 * layer under the record codecs (a pull parser over libcbor's streaming
 * decoder and the item writers). Every function is static: this is
 * records.c's lower half, kept apart so each file stays small.
 */
#ifndef CN_RECORDS_CBOR_H
#define CN_RECORDS_CBOR_H

#include "proto/cn_proto.h"

#include <cbor.h>
#include <string.h>

/** Map key 0 of every record: its version. */
enum { K_VERSION = 0 };

/** No record has more fields than this; bounds the map header. */
#define REC_FIELDS_MAX 16

/* ------------------------------------------------------------ pull parser */

/* T_NONE: an item we never accept (negative ints, tags, floats, null,
 * undefined, indefinite-length items, breaks) left the token untouched. */
enum tok_type { T_NONE = 0, T_UINT, T_BYTES, T_TEXT, T_ARRAY, T_MAP, T_BOOL };

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

static void tok_set(void *c, enum tok_type type, uint64_t u)
{
    ((tok_t *)c)->type = type;
    ((tok_t *)c)->u = u;
}

static void cb_u8(void *c, uint8_t v)
{
    tok_set(c, T_UINT, v);
}

static void cb_u16(void *c, uint16_t v)
{
    tok_set(c, T_UINT, v);
}

static void cb_u32(void *c, uint32_t v)
{
    tok_set(c, T_UINT, v);
}

static void cb_u64(void *c, uint64_t v)
{
    tok_set(c, T_UINT, v);
}

static void cb_bytes(void *c, cbor_data p, size_t len)
{
    tok_set(c, T_BYTES, 0);
    ((tok_t *)c)->p = p;
    ((tok_t *)c)->len = len;
}

static void cb_text(void *c, cbor_data p, size_t len)
{
    tok_set(c, T_TEXT, 0);
    ((tok_t *)c)->p = p;
    ((tok_t *)c)->len = len;
}

static void cb_array(void *c, size_t n)
{
    tok_set(c, T_ARRAY, n);
}

static void cb_map(void *c, size_t n)
{
    tok_set(c, T_MAP, n);
}

static void cb_bool(void *c, bool v)
{
    tok_set(c, T_BOOL, v ? 1 : 0);
}

/* libcbor's no-op callbacks leave the token T_NONE, which every reader
 * refuses. */
static const struct cbor_callbacks callbacks = {
    .uint8 = cb_u8,
    .uint16 = cb_u16,
    .uint32 = cb_u32,
    .uint64 = cb_u64,
    .negint64 = cbor_null_negint64_callback,
    .negint32 = cbor_null_negint32_callback,
    .negint16 = cbor_null_negint16_callback,
    .negint8 = cbor_null_negint8_callback,
    .byte_string_start = cbor_null_byte_string_start_callback,
    .byte_string = cb_bytes,
    .string = cb_text,
    .string_start = cbor_null_string_start_callback,
    .indef_array_start = cbor_null_indef_array_start_callback,
    .array_start = cb_array,
    .indef_map_start = cbor_null_indef_map_start_callback,
    .map_start = cb_map,
    .tag = cbor_null_tag_callback,
    .float2 = cbor_null_float2_callback,
    .float4 = cbor_null_float4_callback,
    .float8 = cbor_null_float8_callback,
    .undefined = cbor_null_undefined_callback,
    .null = cbor_null_null_callback,
    .boolean = cb_bool,
    .indef_break = cbor_null_indef_break_callback,
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

/** Reads the fields of one record into out; returns CN_OK or < 0. */
typedef int (*field_fn)(rd_t *r, uint64_t key, void *out);

/** Reads a whole record through fn; *seen gets a bit per key present. */
static int rd_record(const uint8_t *p, size_t n, field_fn fn, void *out, uint32_t *seen)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    *seen = 0;
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, seen, &key));
        CN_TRY(fn(&r, key, out));
    }
    return rd_end(&r, *seen, 0);
}

#define BIT(k) (1u << (k))

/* --------------------------------------------------------------- writers */

/** Room for the largest CBOR item header (1 + 8 bytes). */
#define HEAD_MAX 9

/** Appends an item head libcbor encoded into h (w bytes; 0: it did not fit). */
static int wr_head(cn_buf_t *b, const unsigned char *h, size_t w)
{
    CN_ENSURE(w > 0, CN_EINTERNAL);
    return cn_buf_append(b, h, w);
}

static int wr_uint(cn_buf_t *b, uint64_t v)
{
    unsigned char h[HEAD_MAX];
    return wr_head(b, h, cbor_encode_uint(v, h, sizeof(h)));
}

static int wr_map(cn_buf_t *b, size_t n)
{
    unsigned char h[HEAD_MAX];
    return wr_head(b, h, cbor_encode_map_start(n, h, sizeof(h)));
}

static int wr_array(cn_buf_t *b, size_t n)
{
    unsigned char h[HEAD_MAX];
    return wr_head(b, h, cbor_encode_array_start(n, h, sizeof(h)));
}

static int wr_bool(cn_buf_t *b, bool v)
{
    unsigned char h[HEAD_MAX];
    return wr_head(b, h, cbor_encode_bool(v, h, sizeof(h)));
}

static int wr_bytes(cn_buf_t *b, const void *p, size_t n)
{
    unsigned char h[HEAD_MAX];
    CN_TRY(wr_head(b, h, cbor_encode_bytestring_start(n, h, sizeof(h))));
    return cn_buf_append(b, p, n);
}

static int wr_text(cn_buf_t *b, const char *s)
{
    unsigned char h[HEAD_MAX];
    size_t n = strlen(s);
    CN_TRY(wr_head(b, h, cbor_encode_string_start(n, h, sizeof(h))));
    return cn_buf_append(b, s, n);
}

/* Map entries: a key, then its value. */
static int wr_kuint(cn_buf_t *b, uint64_t key, uint64_t v)
{
    CN_TRY(wr_uint(b, key));
    return wr_uint(b, v);
}

static int wr_kbytes(cn_buf_t *b, uint64_t key, const void *p, size_t n)
{
    CN_TRY(wr_uint(b, key));
    return wr_bytes(b, p, n);
}

static int wr_ktext(cn_buf_t *b, uint64_t key, const char *s)
{
    CN_TRY(wr_uint(b, key));
    return wr_text(b, s);
}

static int wr_kbool(cn_buf_t *b, uint64_t key, bool v)
{
    CN_TRY(wr_uint(b, key));
    return wr_bool(b, v);
}

/** Writes the map header with nfields entries after the version entry. */
static int wr_begin(cn_buf_t *b, size_t nfields)
{
    CN_TRY(wr_map(b, nfields + 1));
    return wr_kuint(b, K_VERSION, CN_RECORD_VERSION);
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

#endif /* CN_RECORDS_CBOR_H */
