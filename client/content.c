/*
 * Message content codec (format in client/cn_client.h): a small CBOR map
 * with unsigned integer keys. The decoder walks the input with libcbor's
 * streaming decoder, one item at a time, so it never allocates and never
 * follows a length it has not checked.
 */
#include "client/client_int.h"

#include <cbor.h>
#include <string.h>

enum {
    KEY_VERSION = 0,
    KEY_TYPE = 1,
    KEY_TEXT = 2,
    KEY_SENT_AT = 3,
    KEY_STATUS = 4,
    KEY_IDS = 5,
    KEY_TYPING = 6,
    KEY_GROUP = 7,
    KEY_PEER = 8,
    KEY_SKDIST = 9,
    KEY_GROUP_NAME = 10,
    KEY_MEDIA_ID = 11,
    KEY_MEDIA_KEY = 12,
    KEY_MEDIA_DIGEST = 13,
    KEY_FILE_SIZE = 14,
    KEY_FILE_TYPE = 15,
    KEY_FILE_NAME = 16,
    KEY_HISTORY_KEY = 17,
    KEY_ARCHIVE_KEY = 18,
    KEY_FILE_SHA256 = 19,
    KEY_FROM = 20,
    KEY_SKREQ_KEY_ID = 21,
    KEY_SKREQ_ITERATION = 22,
    KEY_SKREQ_DEVICE = 23,
};

#define CONTENT_KEYS_MAX 16 /* entries in one map, known or not */

/* ---------------------------------------------------------------- encode */

/* Appends one CBOR head produced by an encoder of libcbor. */
static int put_head(cn_buf_t *out, size_t (*enc)(uint64_t, unsigned char *, size_t), uint64_t v)
{
    CN_TRY(cn_buf_reserve(out, 9));
    size_t n = enc(v, out->data + out->len, out->cap - out->len);
    CN_ENSURE(n > 0, CN_EINTERNAL);
    out->len += n;
    return CN_OK;
}

static size_t enc_uint(uint64_t v, unsigned char *b, size_t n)
{
    return cbor_encode_uint(v, b, n);
}

static size_t enc_map(uint64_t v, unsigned char *b, size_t n)
{
    return cbor_encode_map_start((size_t)v, b, n);
}

static size_t enc_text(uint64_t v, unsigned char *b, size_t n)
{
    return cbor_encode_string_start((size_t)v, b, n);
}

static size_t enc_bytes(uint64_t v, unsigned char *b, size_t n)
{
    return cbor_encode_bytestring_start((size_t)v, b, n);
}

/* The common head: map(count) with version and type. */
static int put_common(cn_buf_t *out, size_t count, uint32_t type)
{
    CN_TRY(put_head(out, enc_map, count));
    CN_TRY(put_head(out, enc_uint, KEY_VERSION));
    CN_TRY(put_head(out, enc_uint, CN_CLIENT_CONTENT_VER));
    CN_TRY(put_head(out, enc_uint, KEY_TYPE));
    return put_head(out, enc_uint, type);
}

int cn_content_encode_receipt(cn_buf_t *out, uint32_t status, const uint8_t *ids, size_t n,
                              uint64_t sent_at)
{
    CN_ENSURE(out != NULL && ids != NULL, CN_EINVAL);
    CN_ENSURE(status == CN_RECEIPT_DELIVERED || status == CN_RECEIPT_READ, CN_EINVAL);
    CN_ENSURE(n >= 1, CN_EINVAL);
    CN_ENSURE(n <= CN_CLIENT_RECEIPT_IDS_MAX, CN_ETOOBIG);
    CN_TRY(put_common(out, 5, CN_CONTENT_RECEIPT));
    CN_TRY(put_head(out, enc_uint, KEY_STATUS));
    CN_TRY(put_head(out, enc_uint, status));
    CN_TRY(put_head(out, enc_uint, KEY_IDS));
    CN_TRY(put_head(out, enc_bytes, n * CN_MESSAGE_ID_LEN));
    CN_TRY(cn_buf_append(out, ids, n * CN_MESSAGE_ID_LEN));
    CN_TRY(put_head(out, enc_uint, KEY_SENT_AT));
    return put_head(out, enc_uint, sent_at);
}

int cn_content_encode_typing(cn_buf_t *out, bool typing, uint64_t sent_at)
{
    CN_ENSURE(out != NULL, CN_EINVAL);
    CN_TRY(put_common(out, 4, CN_CONTENT_TYPING));
    CN_TRY(put_head(out, enc_uint, KEY_TYPING));
    CN_TRY(put_head(out, enc_uint, typing ? 1 : 0));
    CN_TRY(put_head(out, enc_uint, KEY_SENT_AT));
    return put_head(out, enc_uint, sent_at);
}

int cn_content_encode_text(cn_buf_t *out, const char *text, size_t len, uint64_t sent_at)
{
    CN_ENSURE(out != NULL && (text != NULL || len == 0), CN_EINVAL);
    CN_ENSURE(len <= CN_CLIENT_TEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(cn_utf8_valid((const uint8_t *)text, len), CN_EINVAL);
    CN_TRY(put_common(out, 4, CN_CONTENT_TEXT));
    CN_TRY(put_head(out, enc_uint, KEY_TEXT));
    CN_TRY(put_head(out, enc_text, len));
    CN_TRY(cn_buf_append(out, text, len));
    CN_TRY(put_head(out, enc_uint, KEY_SENT_AT));
    return put_head(out, enc_uint, sent_at);
}

/* One optional byte-string field of the generic encoder. */
static int put_bytes_field(cn_buf_t *out, uint64_t key, const uint8_t *p, size_t n)
{
    CN_TRY(put_head(out, enc_uint, key));
    CN_TRY(put_head(out, enc_bytes, n));
    return cn_buf_append(out, p, n);
}

static int put_text_field(cn_buf_t *out, uint64_t key, const char *p, size_t n)
{
    CN_ENSURE(cn_utf8_valid((const uint8_t *)p, n), CN_EINVAL);
    CN_TRY(put_head(out, enc_uint, key));
    CN_TRY(put_head(out, enc_text, n));
    return cn_buf_append(out, p, n);
}

static int put_uint_field(cn_buf_t *out, uint64_t key, uint64_t v)
{
    CN_TRY(put_head(out, enc_uint, key));
    return put_head(out, enc_uint, v);
}

/* How many map entries cn_content_encode writes for c. */
static size_t count_fields(const cn_content_t *c)
{
    size_t n = 3; /* version, type, sent_at */
    n += c->text != NULL;
    n += c->type == CN_CONTENT_RECEIPT ? 2 : 0;
    n += c->type == CN_CONTENT_TYPING;
    n += c->group_id != NULL;
    n += c->peer != NULL;
    n += c->from != NULL;
    n += c->skdist != NULL;
    n += c->group_name != NULL;
    n += c->media_id != NULL ? 4 : 0; /* id, key, digest, size */
    n += c->file_type != NULL;
    n += c->file_name != NULL;
    n += c->file_sha256 != NULL;
    n += c->history_key != NULL;
    n += c->archive_key != NULL;
    n += c->type == CN_CONTENT_SENDER_KEY_REQUEST ? 3 : 0; /* key id, iteration, device */
    return n;
}

int cn_content_encode(cn_buf_t *out, const cn_content_t *c)
{
    CN_ENSURE(out != NULL && c != NULL, CN_EINVAL);
    CN_ENSURE(c->text_len <= CN_CLIENT_TEXT_MAX && c->peer_len <= CN_HANDLE_MAX &&
                  c->from_len <= CN_HANDLE_MAX && c->group_name_len <= CN_CLIENT_NAME_MAX &&
                  c->file_name_len <= CN_CLIENT_NAME_MAX && c->file_type_len <= CN_CLIENT_NAME_MAX,
              CN_ETOOBIG);
    CN_ENSURE(c->skdist_len <= CN_CLIENT_SKDIST_MAX, CN_ETOOBIG);
    CN_ENSURE(c->type != CN_CONTENT_RECEIPT ||
                  (c->ids != NULL && c->n_ids >= 1 && c->n_ids <= CN_CLIENT_RECEIPT_IDS_MAX),
              CN_EINVAL);
    CN_ENSURE(c->type != CN_CONTENT_SENDER_KEY_REQUEST ||
                  (c->group_id != NULL && c->skreq_device != NULL),
              CN_EINVAL);
    CN_TRY(put_common(out, count_fields(c), c->type));
    if (c->text != NULL)
        CN_TRY(put_text_field(out, KEY_TEXT, c->text, c->text_len));
    CN_TRY(put_uint_field(out, KEY_SENT_AT, c->sent_at));
    if (c->type == CN_CONTENT_RECEIPT) {
        CN_TRY(put_uint_field(out, KEY_STATUS, c->receipt_status));
        CN_TRY(put_bytes_field(out, KEY_IDS, c->ids, c->n_ids * CN_MESSAGE_ID_LEN));
    }
    if (c->type == CN_CONTENT_TYPING)
        CN_TRY(put_uint_field(out, KEY_TYPING, c->typing));
    if (c->group_id != NULL)
        CN_TRY(put_bytes_field(out, KEY_GROUP, c->group_id, CN_GROUP_ID_LEN));
    if (c->peer != NULL)
        CN_TRY(put_text_field(out, KEY_PEER, c->peer, c->peer_len));
    if (c->from != NULL)
        CN_TRY(put_text_field(out, KEY_FROM, c->from, c->from_len));
    if (c->skdist != NULL)
        CN_TRY(put_bytes_field(out, KEY_SKDIST, c->skdist, c->skdist_len));
    if (c->group_name != NULL)
        CN_TRY(put_text_field(out, KEY_GROUP_NAME, c->group_name, c->group_name_len));
    if (c->media_id != NULL) {
        CN_ENSURE(c->media_key != NULL && c->media_digest != NULL, CN_EINVAL);
        CN_TRY(put_bytes_field(out, KEY_MEDIA_ID, c->media_id, CN_MEDIA_ID_LEN));
        CN_TRY(put_bytes_field(out, KEY_MEDIA_KEY, c->media_key, CN_CLIENT_MEDIA_KEY_LEN));
        CN_TRY(put_bytes_field(out, KEY_MEDIA_DIGEST, c->media_digest, CN_CLIENT_DIGEST_LEN));
        CN_TRY(put_uint_field(out, KEY_FILE_SIZE, c->file_size));
    }
    if (c->file_type != NULL)
        CN_TRY(put_text_field(out, KEY_FILE_TYPE, c->file_type, c->file_type_len));
    if (c->file_name != NULL)
        CN_TRY(put_text_field(out, KEY_FILE_NAME, c->file_name, c->file_name_len));
    if (c->file_sha256 != NULL)
        CN_TRY(put_bytes_field(out, KEY_FILE_SHA256, c->file_sha256, CN_CLIENT_DIGEST_LEN));
    if (c->history_key != NULL)
        CN_TRY(put_bytes_field(out, KEY_HISTORY_KEY, c->history_key, CN_CLIENT_HISTORY_KEY_LEN));
    if (c->archive_key != NULL)
        CN_TRY(put_bytes_field(out, KEY_ARCHIVE_KEY, c->archive_key, CN_CLIENT_HISTORY_KEY_LEN));
    if (c->type == CN_CONTENT_SENDER_KEY_REQUEST) {
        CN_TRY(put_uint_field(out, KEY_SKREQ_KEY_ID, c->skreq_key_id));
        CN_TRY(put_uint_field(out, KEY_SKREQ_ITERATION, c->skreq_iteration));
        CN_TRY(put_bytes_field(out, KEY_SKREQ_DEVICE, c->skreq_device, CN_DEVICE_ID_LEN));
    }
    return CN_OK;
}

/* ---------------------------------------------------------------- decode */

enum item_kind { IT_NONE, IT_UINT, IT_SCALAR, IT_TEXT, IT_BYTES, IT_MAP, IT_BAD };

typedef struct item {
    enum item_kind kind;
    uint64_t u;
    const uint8_t *s;
    size_t len;
} item_t;

static void on_u8(void *ctx, uint8_t v)
{
    *(item_t *)ctx = (item_t){.kind = IT_UINT, .u = v};
}
static void on_u16(void *ctx, uint16_t v)
{
    *(item_t *)ctx = (item_t){.kind = IT_UINT, .u = v};
}
static void on_u32(void *ctx, uint32_t v)
{
    *(item_t *)ctx = (item_t){.kind = IT_UINT, .u = v};
}
static void on_u64(void *ctx, uint64_t v)
{
    *(item_t *)ctx = (item_t){.kind = IT_UINT, .u = v};
}
static void on_n8(void *ctx, uint8_t v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_SCALAR;
}
static void on_n16(void *ctx, uint16_t v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_SCALAR;
}
static void on_n32(void *ctx, uint32_t v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_SCALAR;
}
static void on_n64(void *ctx, uint64_t v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_SCALAR;
}
static void on_text(void *ctx, cbor_data p, size_t n)
{
    *(item_t *)ctx = (item_t){.kind = IT_TEXT, .s = p, .len = n};
}
static void on_bytes(void *ctx, cbor_data p, size_t n)
{
    *(item_t *)ctx = (item_t){.kind = IT_BYTES, .s = p, .len = n};
}
static void on_map(void *ctx, size_t n)
{
    *(item_t *)ctx = (item_t){.kind = IT_MAP, .u = n};
}
static void on_bool(void *ctx, bool v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_SCALAR;
}
/* Indefinite lengths, arrays, tags, floats, null and undefined are refused. */
static void on_bad(void *ctx)
{
    ((item_t *)ctx)->kind = IT_BAD;
}
static void on_bad_n(void *ctx, size_t n)
{
    (void)n;
    ((item_t *)ctx)->kind = IT_BAD;
}
static void on_bad_tag(void *ctx, uint64_t v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_BAD;
}
static void on_bad_f(void *ctx, float v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_BAD;
}
static void on_bad_d(void *ctx, double v)
{
    (void)v;
    ((item_t *)ctx)->kind = IT_BAD;
}

static const struct cbor_callbacks item_callbacks = {
    .uint8 = on_u8,
    .uint16 = on_u16,
    .uint32 = on_u32,
    .uint64 = on_u64,
    .negint8 = on_n8,
    .negint16 = on_n16,
    .negint32 = on_n32,
    .negint64 = on_n64,
    .byte_string_start = on_bad,
    .byte_string = on_bytes,
    .string = on_text,
    .string_start = on_bad,
    .indef_array_start = on_bad,
    .array_start = on_bad_n,
    .indef_map_start = on_bad,
    .map_start = on_map,
    .tag = on_bad_tag,
    .float2 = on_bad_f,
    .float4 = on_bad_f,
    .float8 = on_bad_d,
    .undefined = on_bad,
    .null = on_bad,
    .boolean = on_bool,
    .indef_break = on_bad,
};

/* Reads the next item at *pos; only complete, supported items succeed. */
static int next_item(cn_cursor_t *c, item_t *it)
{
    CN_ENSURE(cn_cursor_left(c) > 0, CN_EINVAL);
    *it = (item_t){.kind = IT_NONE};
    struct cbor_decoder_result r =
        cbor_stream_decode(c->p + c->pos, cn_cursor_left(c), &item_callbacks, it);
    CN_ENSURE(r.status == CBOR_DECODER_FINISHED, CN_EINVAL);
    CN_ENSURE(r.read > 0 && r.read <= cn_cursor_left(c), CN_EINVAL);
    CN_ENSURE(it->kind != IT_NONE && it->kind != IT_BAD, CN_EINVAL);
    c->pos += r.read;
    return CN_OK;
}

/* Byte-string fields of fixed (or bounded) length. */
static int apply_bytes(cn_content_t *out, uint64_t key, const item_t *v)
{
    CN_ENSURE(v->kind == IT_BYTES, CN_EINVAL);
    switch (key) {
    case KEY_GROUP:
        CN_ENSURE(v->len == CN_GROUP_ID_LEN, CN_EINVAL);
        out->group_id = v->s;
        return CN_OK;
    case KEY_SKDIST:
        CN_ENSURE(v->len >= 1, CN_EINVAL);
        CN_ENSURE(v->len <= CN_CLIENT_SKDIST_MAX, CN_ETOOBIG);
        out->skdist = v->s;
        out->skdist_len = v->len;
        return CN_OK;
    case KEY_MEDIA_ID:
        CN_ENSURE(v->len == CN_MEDIA_ID_LEN, CN_EINVAL);
        out->media_id = v->s;
        return CN_OK;
    case KEY_MEDIA_KEY:
        CN_ENSURE(v->len == CN_CLIENT_MEDIA_KEY_LEN, CN_EINVAL);
        out->media_key = v->s;
        return CN_OK;
    case KEY_SKREQ_DEVICE:
        CN_ENSURE(v->len == CN_DEVICE_ID_LEN, CN_EINVAL);
        out->skreq_device = v->s;
        return CN_OK;
    case KEY_MEDIA_DIGEST:
    case KEY_FILE_SHA256:
        CN_ENSURE(v->len == CN_CLIENT_DIGEST_LEN, CN_EINVAL);
        if (key == KEY_MEDIA_DIGEST)
            out->media_digest = v->s;
        else
            out->file_sha256 = v->s;
        return CN_OK;
    default: /* the two history keys */
        CN_ENSURE(v->len == CN_CLIENT_HISTORY_KEY_LEN, CN_EINVAL);
        if (key == KEY_HISTORY_KEY)
            out->history_key = v->s;
        else
            out->archive_key = v->s;
        return CN_OK;
    }
}

/* Text fields: valid UTF-8 within their bounds; handles must be handles. */
static int apply_text(cn_content_t *out, uint64_t key, const item_t *v)
{
    CN_ENSURE(v->kind == IT_TEXT, CN_EINVAL);
    CN_ENSURE(v->len <= CN_CLIENT_NAME_MAX, CN_ETOOBIG);
    CN_ENSURE(cn_utf8_valid(v->s, v->len), CN_EINVAL);
    const char *s = (const char *)v->s;
    if (key == KEY_PEER || key == KEY_FROM) {
        char tmp[CN_HANDLE_MAX + 1], norm[CN_HANDLE_MAX + 1];
        CN_ENSURE(v->len >= CN_HANDLE_MIN && v->len <= CN_HANDLE_MAX, CN_EINVAL);
        memcpy(tmp, s, v->len);
        tmp[v->len] = '\0';
        CN_ENSURE(cn_handle_normalize(tmp, norm) == CN_OK && strcmp(tmp, norm) == 0, CN_EINVAL);
    }
    switch (key) {
    case KEY_PEER:
        out->peer = s;
        out->peer_len = v->len;
        break;
    case KEY_FROM:
        out->from = s;
        out->from_len = v->len;
        break;
    case KEY_GROUP_NAME:
        out->group_name = s;
        out->group_name_len = v->len;
        break;
    case KEY_FILE_TYPE:
        out->file_type = s;
        out->file_type_len = v->len;
        break;
    default:
        out->file_name = s;
        out->file_name_len = v->len;
    }
    return CN_OK;
}

/* Stores the value of one known key after checking its type. */
static int apply_field(cn_content_t *out, uint64_t key, const item_t *v)
{
    switch (key) {
    case KEY_VERSION:
    case KEY_TYPE:
        CN_ENSURE(v->kind == IT_UINT && v->u <= UINT32_MAX, CN_EINVAL);
        if (key == KEY_VERSION)
            out->version = (uint32_t)v->u;
        else
            out->type = (uint32_t)v->u;
        return CN_OK;
    case KEY_TEXT:
        CN_ENSURE(v->kind == IT_TEXT, CN_EINVAL);
        CN_ENSURE(v->len <= CN_CLIENT_TEXT_MAX, CN_ETOOBIG);
        CN_ENSURE(cn_utf8_valid(v->s, v->len), CN_EINVAL);
        out->text = (const char *)v->s;
        out->text_len = v->len;
        return CN_OK;
    case KEY_SENT_AT:
        CN_ENSURE(v->kind == IT_UINT, CN_EINVAL);
        out->sent_at = v->u;
        return CN_OK;
    case KEY_STATUS:
    case KEY_TYPING:
    case KEY_SKREQ_KEY_ID:
    case KEY_SKREQ_ITERATION:
        CN_ENSURE(v->kind == IT_UINT && v->u <= UINT32_MAX, CN_EINVAL);
        if (key == KEY_STATUS)
            out->receipt_status = (uint32_t)v->u;
        else if (key == KEY_TYPING)
            out->typing = (uint32_t)v->u;
        else if (key == KEY_SKREQ_KEY_ID)
            out->skreq_key_id = (uint32_t)v->u;
        else
            out->skreq_iteration = (uint32_t)v->u;
        return CN_OK;
    case KEY_IDS:
        CN_ENSURE(v->kind == IT_BYTES && v->len % CN_MESSAGE_ID_LEN == 0, CN_EINVAL);
        CN_ENSURE(v->len <= CN_CLIENT_RECEIPT_IDS_MAX * CN_MESSAGE_ID_LEN, CN_ETOOBIG);
        out->ids = v->s;
        out->n_ids = v->len / CN_MESSAGE_ID_LEN;
        return CN_OK;
    case KEY_GROUP:
    case KEY_SKDIST:
    case KEY_MEDIA_ID:
    case KEY_MEDIA_KEY:
    case KEY_MEDIA_DIGEST:
    case KEY_FILE_SHA256:
    case KEY_HISTORY_KEY:
    case KEY_ARCHIVE_KEY:
    case KEY_SKREQ_DEVICE:
        return apply_bytes(out, key, v);
    case KEY_PEER:
    case KEY_FROM:
    case KEY_GROUP_NAME:
    case KEY_FILE_TYPE:
    case KEY_FILE_NAME:
        return apply_text(out, key, v);
    case KEY_FILE_SIZE:
        CN_ENSURE(v->kind == IT_UINT, CN_EINVAL);
        out->file_size = v->u;
        return CN_OK;
    default:
        /* Unknown keys of version 1 may carry scalars only. */
        CN_ENSURE(v->kind != IT_MAP, CN_EINVAL);
        return CN_OK;
    }
}

int cn_content_decode(const uint8_t *p, size_t n, cn_content_t *out)
{
    CN_ENSURE(out != NULL && (p != NULL || n == 0), CN_EINVAL);
    memset(out, 0, sizeof(*out));
    CN_ENSURE(n <= CN_CLIENT_CONTENT_MAX, CN_ETOOBIG);
    cn_cursor_t c;
    cn_cursor_init(&c, p, n);
    item_t it, v;
    CN_TRY(next_item(&c, &it));
    CN_ENSURE(it.kind == IT_MAP, CN_EINVAL);
    CN_ENSURE(it.u <= CONTENT_KEYS_MAX, CN_ETOOBIG);
    uint32_t seen = 0;
    for (uint64_t i = 0; i < it.u; i++) {
        item_t k;
        CN_TRY(next_item(&c, &k));
        CN_ENSURE(k.kind == IT_UINT, CN_EINVAL);
        if (k.u < 32) {
            CN_ENSURE((seen & (1u << k.u)) == 0, CN_EINVAL); /* duplicate key */
            seen |= 1u << k.u;
        }
        CN_TRY(next_item(&c, &v));
        CN_TRY(apply_field(out, k.u, &v));
    }
    CN_ENSURE(cn_cursor_left(&c) == 0, CN_EINVAL);
    CN_ENSURE((seen & (1u << KEY_VERSION)) && (seen & (1u << KEY_TYPE)), CN_EINVAL);
    CN_ENSURE(out->version == CN_CLIENT_CONTENT_VER, CN_EVERSION);
    CN_ENSURE(out->type != CN_CONTENT_TEXT || out->text != NULL, CN_EINVAL);
    if (out->type == CN_CONTENT_RECEIPT) {
        CN_ENSURE(out->receipt_status == CN_RECEIPT_DELIVERED ||
                      out->receipt_status == CN_RECEIPT_READ,
                  CN_EINVAL);
        CN_ENSURE(out->n_ids >= 1, CN_EINVAL);
    }
    if (out->type == CN_CONTENT_TYPING)
        CN_ENSURE((seen & (1u << KEY_TYPING)) && out->typing <= 1, CN_EINVAL);
    if (out->type == CN_CONTENT_SENDER_KEY)
        CN_ENSURE(out->group_id != NULL && out->skdist != NULL, CN_EINVAL);
    bool media = out->media_id != NULL || out->media_key != NULL || out->media_digest != NULL;
    if (out->type == CN_CONTENT_FILE || media)
        CN_ENSURE(out->media_id != NULL && out->media_key != NULL && out->media_digest != NULL &&
                      (seen & (1u << KEY_FILE_SIZE)),
                  CN_EINVAL);
    if (out->type == CN_CONTENT_KEYS)
        CN_ENSURE(out->history_key != NULL && out->archive_key != NULL, CN_EINVAL);
    if (out->type == CN_CONTENT_SENDER_KEY_REQUEST)
        CN_ENSURE(out->group_id != NULL && out->skreq_device != NULL &&
                      (seen & (1u << KEY_SKREQ_KEY_ID)) && (seen & (1u << KEY_SKREQ_ITERATION)),
                  CN_EINVAL);
    return CN_OK;
}
