/*
 * CBOR codecs of the stored records (DESIGN section 5).
 *
 * Every record is a definite-length CBOR map with small unsigned integer
 * keys in strictly ascending order; key 0 is the record version and comes
 * first. Decoders are strict: unknown keys, duplicate or unordered keys,
 * indefinite-length items, wrong types, trailing bytes and missing required
 * fields are all refused. A new field means a new record version, except
 * an optional field with a default (user last_seen): it gets a new key,
 * written only when not the default and refused when it carries the
 * default, so records written before it still decode (and every record
 * still has exactly one encoding). Such a record does not decode on a
 * binary older than the field.
 *
 * Decoding uses libcbor's streaming decoder one item at a time (a small pull
 * parser), so nothing is allocated and byte strings are borrowed from the
 * input. Encoding writes item heads with libcbor's header encoders and
 * appends them to the caller's cn_buf_t. The CBOR layer itself is in
 * records_cbor.h.
 */
#include "proto/cn_proto.h"
#include "proto/records_cbor.h"

#include <string.h>

/* Map keys, per record. */
enum { KD_USER = 1, KD_NAME, KD_CREATED, KD_REVOKED, KD_CERT, KD_APPROVED_BY };
enum { KU_CREATED = 1, KU_PRESENCE_HIDDEN, KU_DISABLED, KU_DEVICES, KU_LAST_SEEN };
enum {
    KE_SERVER_TIME = 1,
    KE_MESSAGE_ID,
    KE_FROM,
    KE_FROM_DEVICE,
    KE_KIND,
    KE_GROUP_ID,
    KE_CIPHERTEXT,
    KE_SHARED, /* after the ciphertext: only references carry it */
};
enum { KX_SERVER_TIME = 1, KX_RECIPIENTS };
enum { KP_KEY_ID = 1, KP_PUBLIC_KEY, KP_SIGNATURE };
enum { KN_DEVICE_ID = 1, KN_SERVER_TIME };
enum { KG_VERSION = 1, KG_CREATED, KG_MEMBERS };
enum { KJ_ENTRIES = 1 };
enum { KR_REF = 1, KR_ENTRIES };
enum {
    KM_OWNER = 1,
    KM_CONTENT_TYPE,
    KM_SIZE,
    KM_STORED,
    KM_CREATED,
    KM_EXPIRES,
    KM_COMPLETE,
    KM_SHA256,
    KM_HASH_STATE,
};

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
    CN_TRY(wr_ktext(b, KD_USER, r->user));
    CN_TRY(wr_ktext(b, KD_NAME, r->name));
    CN_TRY(wr_kuint(b, KD_CREATED, r->created));
    CN_TRY(wr_kuint(b, KD_REVOKED, r->revoked));
    if (r->has_cert) {
        CN_TRY(wr_kbytes(b, KD_CERT, r->cert, CN_SIGNATURE_LEN));
        CN_TRY(wr_kbytes(b, KD_APPROVED_BY, r->approved_by, CN_DEVICE_ID_LEN));
    }
    return CN_OK;
}

int cn_rec_device_encode(const cn_rec_device_t *r, cn_buf_t *out)
{
    CN_TRY(device_check(r));
    ENCODE_GUARD(out, device_write(r, out));
}

static int device_field(rd_t *r, uint64_t key, void *o)
{
    cn_rec_device_t *out = o;
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
    uint32_t seen, req = BIT(KD_USER) | BIT(KD_NAME) | BIT(KD_CREATED) | BIT(KD_REVOKED);
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_record(p, n, device_field, out, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    /* The certificate and its approver come together or not at all. */
    CN_ENSURE(!(seen & BIT(KD_CERT)) == !(seen & BIT(KD_APPROVED_BY)), CN_EINVAL);
    return CN_OK;
}

/* ------------------------------------------------------------------ user */

static int user_write(const cn_rec_user_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, r->last_seen != 0 ? 5 : 4));
    CN_TRY(wr_kuint(b, KU_CREATED, r->created));
    CN_TRY(wr_kbool(b, KU_PRESENCE_HIDDEN, r->presence_hidden));
    CN_TRY(wr_kbool(b, KU_DISABLED, r->disabled));
    CN_TRY(wr_uint(b, KU_DEVICES));
    CN_TRY(wr_array(b, r->ndevices));
    for (uint32_t i = 0; i < r->ndevices; i++)
        CN_TRY(wr_bytes(b, r->devices[i], CN_DEVICE_ID_LEN));
    if (r->last_seen != 0) {
        CN_TRY(wr_kuint(b, KU_LAST_SEEN, r->last_seen));
    }
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

static int user_field(rd_t *r, uint64_t key, void *o)
{
    cn_rec_user_t *out = o;
    switch (key) {
    case KU_CREATED:
        return rd_uint(r, UINT64_MAX, &out->created);
    case KU_PRESENCE_HIDDEN:
        return rd_bool(r, &out->presence_hidden);
    case KU_DISABLED:
        return rd_bool(r, &out->disabled);
    case KU_DEVICES:
        return rd_devices(r, out);
    case KU_LAST_SEEN: /* optional: absent means 0, so 0 is never written */
        CN_TRY(rd_uint(r, UINT64_MAX, &out->last_seen));
        CN_ENSURE(out->last_seen != 0, CN_EINVAL);
        return CN_OK;
    default:
        return CN_EINVAL;
    }
}

int cn_rec_user_decode(const uint8_t *p, size_t n, cn_rec_user_t *out)
{
    uint32_t seen;
    uint32_t req = BIT(KU_CREATED) | BIT(KU_PRESENCE_HIDDEN) | BIT(KU_DISABLED) | BIT(KU_DEVICES);
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_record(p, n, user_field, out, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    return CN_OK;
}

/* -------------------------------------------------------------- envelope */

static int envelope_check(const cn_rec_envelope_t *r)
{
    CN_ENSURE(handle_valid(r->from), CN_EINVAL);
    CN_ENSURE(r->kind <= CHAT__KIND__CONTROL, CN_EINVAL);
    CN_ENSURE(r->ciphertext.len <= CN_CIPHERTEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(r->ciphertext.base != NULL || r->ciphertext.len == 0, CN_EINVAL);
    /* A reference names the shared body; it carries no ciphertext itself. */
    CN_ENSURE(!r->shared || r->ciphertext.len == 0, CN_EINVAL);
    return CN_OK;
}

static int envelope_write(const cn_rec_envelope_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 6 + r->has_group + r->shared));
    CN_TRY(wr_kuint(b, KE_SERVER_TIME, r->server_time));
    CN_TRY(wr_kbytes(b, KE_MESSAGE_ID, r->message_id, CN_MESSAGE_ID_LEN));
    CN_TRY(wr_ktext(b, KE_FROM, r->from));
    CN_TRY(wr_kbytes(b, KE_FROM_DEVICE, r->from_device, CN_DEVICE_ID_LEN));
    CN_TRY(wr_kuint(b, KE_KIND, r->kind));
    if (r->has_group) {
        CN_TRY(wr_kbytes(b, KE_GROUP_ID, r->group_id, CN_GROUP_ID_LEN));
    }
    CN_TRY(wr_kbytes(b, KE_CIPHERTEXT, r->ciphertext.base, r->ciphertext.len));
    return r->shared ? wr_kbool(b, KE_SHARED, true) : CN_OK;
}

int cn_rec_envelope_encode(const cn_rec_envelope_t *r, cn_buf_t *out)
{
    CN_TRY(envelope_check(r));
    ENCODE_GUARD(out, envelope_write(r, out));
}

/* The ciphertext is the last item of an envelope that is not shared
 * (envelope_write): its empty byte string (0x40) ends the header. */
#define EMPTY_BYTES 0x40

static int envelope_append_ciphertext(cn_slice_t header, cn_slice_t ct, cn_buf_t *b)
{
    unsigned char h[HEAD_MAX];
    size_t w = cbor_encode_bytestring_start(ct.len, h, sizeof(h));
    CN_ENSURE(w > 0, CN_EINTERNAL);
    CN_TRY(cn_buf_reserve(b, header.len - 1 + w + ct.len));
    CN_TRY(cn_buf_append(b, header.base, header.len - 1));
    CN_TRY(cn_buf_append(b, h, w));
    return cn_buf_append(b, ct.base, ct.len);
}

int cn_rec_envelope_encode_with(cn_slice_t header, cn_slice_t ct, cn_buf_t *out)
{
    CN_ENSURE(header.base != NULL && header.len >= 2 && header.base[header.len - 1] == EMPTY_BYTES,
              CN_EINVAL);
    CN_ENSURE(ct.len <= CN_CIPHERTEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(ct.base != NULL || ct.len == 0, CN_EINVAL);
    ENCODE_GUARD(out, envelope_append_ciphertext(header, ct, out));
}

static int envelope_field(rd_t *r, uint64_t key, void *o)
{
    cn_rec_envelope_t *out = o;
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
    case KE_SHARED:
        CN_TRY(rd_bool(r, &out->shared));
        CN_ENSURE(out->shared, CN_EINVAL); /* written only when true */
        return CN_OK;
    default:
        return CN_EINVAL;
    }
}

int cn_rec_envelope_decode(const uint8_t *p, size_t n, cn_rec_envelope_t *out)
{
    uint32_t seen, req = BIT(KE_SERVER_TIME) | BIT(KE_MESSAGE_ID) | BIT(KE_FROM) |
                         BIT(KE_FROM_DEVICE) | BIT(KE_KIND) | BIT(KE_CIPHERTEXT);
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_record(p, n, envelope_field, out, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    CN_ENSURE(!out->shared || out->ciphertext.len == 0, CN_EINVAL);
    return CN_OK;
}

/* ---------------------------------------------------------------- dedupe */

static int dedupe_write(const cn_rec_dedupe_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 1));
    return wr_kuint(b, KX_SERVER_TIME, r->server_time);
}

int cn_rec_dedupe_encode(const cn_rec_dedupe_t *r, cn_buf_t *out)
{
    ENCODE_GUARD(out, dedupe_write(r, out));
}

/*
 * The encoder's own form, {0: version, 1: server_time} with a CBOR uint
 * head of 1, 2, 3, 5 or 9 bytes, read without the general decoder: the
 * dedupe TTL filter decodes every dedupe record a compaction passes, and
 * libcbor's stream decoder cost most of that filter. Anything else (an
 * older record with its count, another version) takes the general path,
 * which gives the same value for this form (test_dedupe_fast_form).
 */
_Static_assert(CN_RECORD_VERSION <= 0x17, "the version fits in the head's byte");

static bool dedupe_fast(const uint8_t *p, size_t n, uint64_t *server_time)
{
    static const uint8_t head[] = {0xa2, 0x00, CN_RECORD_VERSION, KX_SERVER_TIME};
    if (n < sizeof(head) + 1 || memcmp(p, head, sizeof(head)) != 0)
        return false;
    uint8_t ib = p[sizeof(head)];
    size_t len = ib <= 0x17   ? 0
                 : ib == 0x18 ? 1
                 : ib == 0x19 ? 2
                 : ib == 0x1a ? 4
                 : ib == 0x1b ? 8
                              : 9;
    if (len == 9 || n != sizeof(head) + 1 + len)
        return false;
    uint64_t v = len == 0 ? ib : 0;
    for (size_t i = 0; i < len; i++)
        v = v << 8 | p[sizeof(head) + 1 + i];
    *server_time = v;
    return true;
}

int cn_rec_dedupe_decode(const uint8_t *p, size_t n, cn_rec_dedupe_t *out)
{
    rd_t r;
    uint64_t nfields, prev = K_VERSION, key;
    uint32_t seen = 0;
    memset(out, 0, sizeof(*out));
    if (p != NULL && dedupe_fast(p, n, &out->server_time))
        return CN_OK;
    CN_TRY(rd_begin(&r, p, n, &nfields));
    for (uint64_t i = 0; i < nfields; i++) {
        CN_TRY(rd_key(&r, &prev, &seen, &key));
        uint32_t recipients; /* older records: read past */
        if (key == KX_SERVER_TIME)
            CN_TRY(rd_uint(&r, UINT64_MAX, &out->server_time));
        else if (key == KX_RECIPIENTS)
            CN_TRY(rd_u32(&r, &recipients));
        else
            return CN_EINVAL;
    }
    return rd_end(&r, seen, BIT(KX_SERVER_TIME));
}

/* ---------------------------------------------------------------- prekey */

static int prekey_write(const cn_rec_prekey_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, r->has_signature ? 3 : 2));
    CN_TRY(wr_kuint(b, KP_KEY_ID, r->key_id));
    CN_TRY(wr_kbytes(b, KP_PUBLIC_KEY, r->public_key, CN_PREKEY_LEN));
    if (r->has_signature) {
        CN_TRY(wr_kbytes(b, KP_SIGNATURE, r->signature, CN_SIGNATURE_LEN));
    }
    return CN_OK;
}

int cn_rec_prekey_encode(const cn_rec_prekey_t *r, cn_buf_t *out)
{
    ENCODE_GUARD(out, prekey_write(r, out));
}

static int prekey_field(rd_t *r, uint64_t key, void *o)
{
    cn_rec_prekey_t *out = o;
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
    uint32_t seen, req = BIT(KP_KEY_ID) | BIT(KP_PUBLIC_KEY);
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_record(p, n, prekey_field, out, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    return CN_OK;
}

/* ------------------------------------------------------------------ push */

static int push_write(const cn_rec_push_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 2));
    CN_TRY(wr_kbytes(b, KN_DEVICE_ID, r->device_id, CN_DEVICE_ID_LEN));
    return wr_kuint(b, KN_SERVER_TIME, r->server_time);
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

/* ----------------------------------------------------------------- group */

static int group_check(const cn_rec_group_t *r)
{
    CN_ENSURE(r->n <= CN_GROUP_MEMBERS_HARD_MAX, CN_ETOOBIG);
    CN_ENSURE(r->version != 0, CN_EINVAL);
    for (uint32_t i = 0; i < r->n; i++) {
        CN_ENSURE(handle_valid(r->members[i].handle), CN_EINVAL);
        CN_ENSURE(r->members[i].role <= CN_GROUP_ROLE_ADMIN, CN_EINVAL);
    }
    return CN_OK;
}

/* Members are [handle, role] pairs in join order. */
static int group_write(const cn_rec_group_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 3));
    CN_TRY(wr_kuint(b, KG_VERSION, r->version));
    CN_TRY(wr_kuint(b, KG_CREATED, r->created));
    CN_TRY(wr_uint(b, KG_MEMBERS));
    CN_TRY(wr_array(b, r->n));
    for (uint32_t i = 0; i < r->n; i++) {
        CN_TRY(wr_array(b, 2));
        CN_TRY(wr_text(b, r->members[i].handle));
        CN_TRY(wr_uint(b, r->members[i].role));
    }
    return CN_OK;
}

int cn_rec_group_encode(const cn_rec_group_t *r, cn_buf_t *out)
{
    CN_TRY(group_check(r));
    ENCODE_GUARD(out, group_write(r, out));
}

static int rd_members(rd_t *r, cn_rec_group_t *out)
{
    tok_t t;
    uint64_t role;
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_ARRAY, CN_EINVAL);
    CN_ENSURE(t.u <= CN_GROUP_MEMBERS_HARD_MAX, CN_ETOOBIG);
    out->n = (uint32_t)t.u;
    for (uint32_t i = 0; i < out->n; i++) {
        CN_TRY(rd_next(r, &t));
        CN_ENSURE(t.type == T_ARRAY && t.u == 2, CN_EINVAL);
        CN_TRY(rd_handle(r, out->members[i].handle));
        CN_TRY(rd_uint(r, CN_GROUP_ROLE_ADMIN, &role));
        out->members[i].role = (uint8_t)role;
    }
    return CN_OK;
}

static int group_field(rd_t *r, uint64_t key, void *o)
{
    cn_rec_group_t *out = o;
    switch (key) {
    case KG_VERSION:
        CN_TRY(rd_uint(r, UINT64_MAX, &out->version));
        CN_ENSURE(out->version != 0, CN_EINVAL);
        return CN_OK;
    case KG_CREATED:
        return rd_uint(r, UINT64_MAX, &out->created);
    case KG_MEMBERS:
        return rd_members(r, out);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_group_decode(const uint8_t *p, size_t n, cn_rec_group_t *out)
{
    uint32_t seen, req = BIT(KG_VERSION) | BIT(KG_CREATED) | BIT(KG_MEMBERS);
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_record(p, n, group_field, out, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    return CN_OK;
}

/* -------------------------------------------------------- counter journal */

int cn_rec_cjour_begin(size_t n, cn_buf_t *out)
{
    CN_ENSURE(n <= CN_REC_CJOUR_ENTRIES_MAX, CN_ETOOBIG);
    size_t kept = out->len - out->rpos;
    int rc = wr_begin(out, 1);
    if (rc == CN_OK)
        rc = wr_uint(out, KJ_ENTRIES);
    if (rc == CN_OK)
        rc = wr_array(out, n);
    if (rc < 0)
        out->len = out->rpos + kept;
    return rc;
}

static int cjour_entry_write(const cn_rec_cjour_entry_t *e, cn_buf_t *b)
{
    CN_TRY(wr_array(b, 3));
    CN_TRY(wr_uint(b, e->which));
    CN_TRY(wr_bytes(b, e->device, CN_DEVICE_ID_LEN));
    return wr_uint(b, e->next);
}

int cn_rec_cjour_add(const cn_rec_cjour_entry_t *e, cn_buf_t *out)
{
    CN_ENSURE(e->which <= CN_REC_CJOUR_WHICH_MAX && e->next != 0, CN_EINVAL);
    ENCODE_GUARD(out, cjour_entry_write(e, out));
}

typedef struct cjour_reader {
    cn_rec_cjour_fn fn;
    void *ctx;
} cjour_reader_t;

static int cjour_field(rd_t *r, uint64_t key, void *o)
{
    const cjour_reader_t *c = o;
    tok_t t;
    CN_ENSURE(key == KJ_ENTRIES, CN_EINVAL);
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_ARRAY, CN_EINVAL);
    CN_ENSURE(t.u <= CN_REC_CJOUR_ENTRIES_MAX, CN_ETOOBIG);
    for (uint64_t i = 0; i < t.u; i++) {
        cn_rec_cjour_entry_t e;
        tok_t a;
        uint64_t which;
        CN_TRY(rd_next(r, &a));
        CN_ENSURE(a.type == T_ARRAY && a.u == 3, CN_EINVAL);
        CN_TRY(rd_uint(r, CN_REC_CJOUR_WHICH_MAX, &which));
        CN_TRY(rd_fixed(r, e.device, CN_DEVICE_ID_LEN));
        CN_TRY(rd_uint(r, UINT64_MAX, &e.next));
        CN_ENSURE(e.next != 0, CN_EINVAL);
        e.which = (uint8_t)which;
        CN_TRY(c->fn(c->ctx, &e));
    }
    return CN_OK;
}

int cn_rec_cjour_decode(const uint8_t *p, size_t n, cn_rec_cjour_fn fn, void *ctx)
{
    cjour_reader_t c = {.fn = fn, .ctx = ctx};
    uint32_t seen;
    CN_TRY(rd_record(p, n, cjour_field, &c, &seen));
    CN_ENSURE(seen & BIT(KJ_ENTRIES), CN_EINVAL);
    return CN_OK;
}

/* ------------------------------------------------------ reference journal */

static int rjour_head_write(cn_slice_t ref, size_t n, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 2));
    CN_TRY(wr_kbytes(b, KR_REF, ref.base, ref.len));
    CN_TRY(wr_uint(b, KR_ENTRIES));
    return wr_array(b, n);
}

int cn_rec_rjour_begin(cn_slice_t ref, size_t n, cn_buf_t *out)
{
    CN_ENSURE(ref.len > 0 && ref.base != NULL, CN_EINVAL);
    CN_ENSURE(ref.len <= CN_REC_RJOUR_REF_MAX, CN_ETOOBIG);
    CN_ENSURE(n <= CN_REC_RJOUR_ENTRIES_MAX, CN_ETOOBIG);
    ENCODE_GUARD(out, rjour_head_write(ref, n, out));
}

static int rjour_entry_write(const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq, cn_buf_t *b)
{
    CN_TRY(wr_array(b, 2));
    CN_TRY(wr_bytes(b, device, CN_DEVICE_ID_LEN));
    return wr_uint(b, seq);
}

int cn_rec_rjour_add(const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq, cn_buf_t *out)
{
    CN_ENSURE(seq != 0, CN_EINVAL);
    ENCODE_GUARD(out, rjour_entry_write(device, seq, out));
}

typedef struct rjour_reader {
    cn_slice_t *ref;
    cn_rec_rjour_fn fn;
    void *ctx;
} rjour_reader_t;

/* Keys ascend (rd_key), so the ref is read before the entries; entries
 * without a ref are refused before fn sees any, so fn always sees *ref set. */
static int rjour_entries(rd_t *r, const rjour_reader_t *c)
{
    tok_t t;
    CN_ENSURE(c->ref->len > 0, CN_EINVAL);
    CN_TRY(rd_next(r, &t));
    CN_ENSURE(t.type == T_ARRAY, CN_EINVAL);
    CN_ENSURE(t.u <= CN_REC_RJOUR_ENTRIES_MAX, CN_ETOOBIG);
    for (uint64_t i = 0; i < t.u; i++) {
        uint8_t device[CN_DEVICE_ID_LEN];
        uint64_t seq;
        tok_t a;
        CN_TRY(rd_next(r, &a));
        CN_ENSURE(a.type == T_ARRAY && a.u == 2, CN_EINVAL);
        CN_TRY(rd_fixed(r, device, CN_DEVICE_ID_LEN));
        CN_TRY(rd_uint(r, UINT64_MAX, &seq));
        CN_ENSURE(seq != 0, CN_EINVAL);
        CN_TRY(c->fn(c->ctx, device, seq));
    }
    return CN_OK;
}

static int rjour_field(rd_t *r, uint64_t key, void *o)
{
    const rjour_reader_t *c = o;
    switch (key) {
    case KR_REF:
        CN_TRY(rd_bytes(r, CN_REC_RJOUR_REF_MAX, c->ref));
        CN_ENSURE(c->ref->len > 0, CN_EINVAL);
        return CN_OK;
    case KR_ENTRIES:
        return rjour_entries(r, c);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_rjour_decode(const uint8_t *p, size_t n, cn_slice_t *ref, cn_rec_rjour_fn fn, void *ctx)
{
    rjour_reader_t c = {.ref = ref, .fn = fn, .ctx = ctx};
    uint32_t seen, req = BIT(KR_REF) | BIT(KR_ENTRIES);
    *ref = cn_slice(NULL, 0);
    CN_TRY(rd_record(p, n, rjour_field, &c, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    return CN_OK;
}

/* ----------------------------------------------------------------- media */

static int media_check(const cn_rec_media_t *r)
{
    CN_ENSURE(handle_valid(r->owner), CN_EINVAL);
    CN_ENSURE(strnlen(r->content_type, CN_MEDIA_TYPE_MAX + 1) <= CN_MEDIA_TYPE_MAX, CN_ETOOBIG);
    CN_ENSURE(r->stored <= r->size && (!r->complete || r->stored == r->size), CN_EINVAL);
    return CN_OK;
}

/* A complete upload carries its digest, an incomplete one the running
 * digest state: exactly one of the two. */
static int media_write(const cn_rec_media_t *r, cn_buf_t *b)
{
    CN_TRY(wr_begin(b, 8));
    CN_TRY(wr_ktext(b, KM_OWNER, r->owner));
    CN_TRY(wr_ktext(b, KM_CONTENT_TYPE, r->content_type));
    CN_TRY(wr_kuint(b, KM_SIZE, r->size));
    CN_TRY(wr_kuint(b, KM_STORED, r->stored));
    CN_TRY(wr_kuint(b, KM_CREATED, r->created));
    CN_TRY(wr_kuint(b, KM_EXPIRES, r->expires));
    CN_TRY(wr_kbool(b, KM_COMPLETE, r->complete));
    if (r->complete) {
        return wr_kbytes(b, KM_SHA256, r->sha256, CN_MEDIA_SHA256_LEN);
    }
    return wr_kbytes(b, KM_HASH_STATE, r->hash_state, CN_MEDIA_HASH_STATE_LEN);
}

int cn_rec_media_encode(const cn_rec_media_t *r, cn_buf_t *out)
{
    CN_TRY(media_check(r));
    ENCODE_GUARD(out, media_write(r, out));
}

static int media_field(rd_t *r, uint64_t key, void *o)
{
    cn_rec_media_t *out = o;
    switch (key) {
    case KM_OWNER:
        return rd_handle(r, out->owner);
    case KM_CONTENT_TYPE:
        return rd_text(r, CN_MEDIA_TYPE_MAX, out->content_type);
    case KM_SIZE:
        return rd_uint(r, UINT64_MAX, &out->size);
    case KM_STORED:
        return rd_uint(r, UINT64_MAX, &out->stored);
    case KM_CREATED:
        return rd_uint(r, UINT64_MAX, &out->created);
    case KM_EXPIRES:
        return rd_uint(r, UINT64_MAX, &out->expires);
    case KM_COMPLETE:
        return rd_bool(r, &out->complete);
    case KM_SHA256:
        return rd_fixed(r, out->sha256, CN_MEDIA_SHA256_LEN);
    case KM_HASH_STATE:
        return rd_fixed(r, out->hash_state, CN_MEDIA_HASH_STATE_LEN);
    default:
        return CN_EINVAL;
    }
}

int cn_rec_media_decode(const uint8_t *p, size_t n, cn_rec_media_t *out)
{
    uint32_t seen, req = BIT(KM_OWNER) | BIT(KM_CONTENT_TYPE) | BIT(KM_SIZE) | BIT(KM_STORED) |
                         BIT(KM_CREATED) | BIT(KM_EXPIRES) | BIT(KM_COMPLETE);
    memset(out, 0, sizeof(*out));
    CN_TRY(rd_record(p, n, media_field, out, &seen));
    CN_ENSURE((seen & req) == req, CN_EINVAL);
    CN_ENSURE(out->stored <= out->size, CN_EINVAL);
    if (out->complete)
        CN_ENSURE(out->stored == out->size && (seen & BIT(KM_SHA256)) != 0 &&
                      (seen & BIT(KM_HASH_STATE)) == 0,
                  CN_EINVAL);
    else
        CN_ENSURE((seen & BIT(KM_SHA256)) == 0 && (seen & BIT(KM_HASH_STATE)) != 0, CN_EINVAL);
    return CN_OK;
}
