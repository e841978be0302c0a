/*
 * CBOR codecs of the admin protocol (see cn_proto.h). Decoding goes through
 * cbor_load (bounded by CN_ADMIN_FRAME_MAX before it is called) and then
 * checks every item's type and size before copying it.
 */
#include "proto/cn_proto.h"

#include <cbor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cn_admin_msg_init(cn_admin_msg_t *m)
{
    memset(m, 0, sizeof(*m));
}

static void row_dispose(cn_admin_row_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        free(r->f[i].value);
    r->n = 0;
}

void cn_admin_msg_dispose(cn_admin_msg_t *m)
{
    row_dispose(&m->args);
    for (uint32_t i = 0; i < m->nrows; i++)
        row_dispose(&m->rows[i]);
    free(m->rows);
    cn_admin_msg_init(m);
}

static int row_put(cn_admin_row_t *row, const char *key, size_t klen, const char *val, size_t vlen)
{
    CN_ENSURE(klen > 0 && klen <= CN_ADMIN_KEY_MAX, CN_ETOOBIG);
    CN_ENSURE(vlen <= CN_ADMIN_VALUE_MAX, CN_ETOOBIG);
    CN_ENSURE(memchr(key, 0, klen) == NULL && memchr(val, 0, vlen) == NULL, CN_EINVAL);
    char *copy = malloc(vlen + 1);
    CN_ENSURE(copy != NULL, CN_ENOMEM);
    memcpy(copy, val, vlen);
    copy[vlen] = '\0';
    for (uint32_t i = 0; i < row->n; i++) {
        if (strlen(row->f[i].key) == klen && memcmp(row->f[i].key, key, klen) == 0) {
            free(row->f[i].value);
            row->f[i].value = copy;
            return CN_OK;
        }
    }
    if (row->n == CN_ADMIN_FIELDS_MAX) {
        free(copy);
        return CN_ETOOBIG;
    }
    memcpy(row->f[row->n].key, key, klen);
    row->f[row->n].key[klen] = '\0';
    row->f[row->n].value = copy;
    row->n++;
    return CN_OK;
}

int cn_admin_row_set(cn_admin_row_t *row, const char *key, const char *fmt, ...)
{
    char val[CN_ADMIN_VALUE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    CN_ENSURE(n >= 0 && n <= CN_ADMIN_VALUE_MAX, CN_ETOOBIG);
    return row_put(row, key, strlen(key), val, (size_t)n);
}

const char *cn_admin_row_get(const cn_admin_row_t *row, const char *key)
{
    for (uint32_t i = 0; i < row->n; i++)
        if (strcmp(row->f[i].key, key) == 0)
            return row->f[i].value;
    return NULL;
}

cn_admin_row_t *cn_admin_add_row(cn_admin_msg_t *m)
{
    if (m->nrows >= CN_ADMIN_ROWS_MAX)
        return NULL;
    cn_admin_row_t *rows = realloc(m->rows, (m->nrows + 1) * sizeof(*rows));
    if (!rows)
        return NULL;
    m->rows = rows;
    memset(&rows[m->nrows], 0, sizeof(rows[0]));
    return &rows[m->nrows++];
}

/* ---------------------------------------------------------------- encode */

static bool map_put(cbor_item_t *map, const char *key, cbor_item_t *value)
{
    if (!value)
        return false;
    return cbor_map_add(map, (struct cbor_pair){.key = cbor_move(cbor_build_string(key)),
                                                .value = cbor_move(value)});
}

static cbor_item_t *row_to_cbor(const cn_admin_row_t *row)
{
    cbor_item_t *map = cbor_new_definite_map(row->n);
    for (uint32_t i = 0; map && i < row->n; i++) {
        if (!map_put(map, row->f[i].key, cbor_build_string(row->f[i].value))) {
            cbor_decref(&map);
            return NULL;
        }
    }
    return map;
}

static int serialize(cbor_item_t *root, cn_buf_t *out)
{
    unsigned char *buf = NULL;
    size_t cap = 0;
    size_t n = cbor_serialize_alloc(root, &buf, &cap);
    cbor_decref(&root);
    int rc = n ? cn_buf_append(out, buf, n) : CN_ENOMEM;
    free(buf);
    return rc;
}

int cn_admin_request_encode(const cn_admin_msg_t *m, cn_buf_t *out)
{
    cbor_item_t *root = cbor_new_definite_map(3);
    CN_ENSURE(root != NULL, CN_ENOMEM);
    bool ok = map_put(root, "v", cbor_build_uint8(CN_ADMIN_VERSION)) &&
              map_put(root, "cmd", cbor_build_string(m->cmd)) &&
              map_put(root, "args", row_to_cbor(&m->args));
    if (!ok) {
        cbor_decref(&root);
        return CN_ENOMEM;
    }
    return serialize(root, out);
}

int cn_admin_response_encode(const cn_admin_msg_t *m, cn_buf_t *out)
{
    cbor_item_t *root = cbor_new_definite_map(4);
    cbor_item_t *rows = cbor_new_definite_array(m->nrows);
    bool ok = root && rows;
    for (uint32_t i = 0; ok && i < m->nrows; i++) {
        cbor_item_t *r = row_to_cbor(&m->rows[i]);
        ok = r && cbor_array_push(rows, cbor_move(r));
    }
    ok = ok && map_put(root, "v", cbor_build_uint8(CN_ADMIN_VERSION)) &&
         map_put(root, "status", cbor_build_uint32(m->status)) &&
         map_put(root, "error", cbor_build_string(m->error));
    if (ok) {
        ok = map_put(root, "rows", rows);
        rows = NULL;
    }
    if (rows)
        cbor_decref(&rows);
    if (!ok) {
        if (root)
            cbor_decref(&root);
        return CN_ENOMEM;
    }
    return serialize(root, out);
}

/* ---------------------------------------------------------------- decode */

static bool is_text(const cbor_item_t *it)
{
    return cbor_isa_string(it) && cbor_string_is_definite(it);
}

static bool key_is(const cbor_item_t *k, const char *name)
{
    return is_text(k) && cbor_string_length(k) == strlen(name) &&
           memcmp(cbor_string_handle(k), name, strlen(name)) == 0;
}

static int text_copy(const cbor_item_t *it, char *out, size_t cap)
{
    CN_ENSURE(is_text(it), CN_EINVAL);
    size_t n = cbor_string_length(it);
    CN_ENSURE(n < cap, CN_ETOOBIG);
    memcpy(out, cbor_string_handle(it), n);
    out[n] = '\0';
    CN_ENSURE(strlen(out) == n, CN_EINVAL);
    return CN_OK;
}

static int row_from_cbor(const cbor_item_t *it, cn_admin_row_t *row)
{
    CN_ENSURE(cbor_isa_map(it) && cbor_map_is_definite(it), CN_EINVAL);
    CN_ENSURE(cbor_map_size(it) <= CN_ADMIN_FIELDS_MAX, CN_ETOOBIG);
    struct cbor_pair *pairs = cbor_map_handle(it);
    for (size_t i = 0; i < cbor_map_size(it); i++) {
        CN_ENSURE(is_text(pairs[i].key) && is_text(pairs[i].value), CN_EINVAL);
        CN_TRY(row_put(
            row, (const char *)cbor_string_handle(pairs[i].key), cbor_string_length(pairs[i].key),
            (const char *)cbor_string_handle(pairs[i].value), cbor_string_length(pairs[i].value)));
    }
    return CN_OK;
}

static int uint_value(const cbor_item_t *it, uint64_t max, uint64_t *out)
{
    CN_ENSURE(cbor_isa_uint(it), CN_EINVAL);
    *out = cbor_get_int(it);
    CN_ENSURE(*out <= max, CN_EINVAL);
    return CN_OK;
}

static int rows_from_cbor(const cbor_item_t *it, cn_admin_msg_t *m)
{
    CN_ENSURE(cbor_isa_array(it) && cbor_array_is_definite(it), CN_EINVAL);
    CN_ENSURE(cbor_array_size(it) <= CN_ADMIN_ROWS_MAX, CN_ETOOBIG);
    cbor_item_t **items = cbor_array_handle(it);
    for (size_t i = 0; i < cbor_array_size(it); i++) {
        cn_admin_row_t *row = cn_admin_add_row(m);
        CN_ENSURE(row != NULL, CN_ENOMEM);
        CN_TRY(row_from_cbor(items[i], row));
    }
    return CN_OK;
}

/* One field of a top-level map; unknown keys are refused (exact schema). */
static int field(const struct cbor_pair *p, bool request, cn_admin_msg_t *m, unsigned *seen)
{
    uint64_t v;
    if (key_is(p->key, "v")) {
        CN_TRY(uint_value(p->value, UINT32_MAX, &v));
        CN_ENSURE(v == CN_ADMIN_VERSION, CN_EVERSION);
        *seen |= 1;
    } else if (request && key_is(p->key, "cmd")) {
        CN_TRY(text_copy(p->value, m->cmd, sizeof(m->cmd)));
        *seen |= 2;
    } else if (request && key_is(p->key, "args")) {
        CN_TRY(row_from_cbor(p->value, &m->args));
        *seen |= 4;
    } else if (!request && key_is(p->key, "status")) {
        CN_TRY(uint_value(p->value, 255, &v));
        m->status = (uint32_t)v;
        *seen |= 2;
    } else if (!request && key_is(p->key, "error")) {
        CN_TRY(text_copy(p->value, m->error, sizeof(m->error)));
        *seen |= 4;
    } else if (!request && key_is(p->key, "rows")) {
        CN_TRY(rows_from_cbor(p->value, m));
        *seen |= 8;
    } else {
        return CN_EINVAL;
    }
    return CN_OK;
}

#define ADMIN_DEPTH_MAX 4 /* map -> rows array -> row map -> text */

/* Reads one item head: major type and argument; CN_EINVAL for what the
 * admin protocol never uses (indefinite lengths, tags, floats). */
static int head(cn_cursor_t *c, uint8_t *major, uint64_t *arg)
{
    uint8_t b;
    CN_TRY(cn_cursor_u8(c, &b));
    *major = b >> 5;
    uint8_t info = b & 31;
    if (info < 24) {
        *arg = info;
    } else if (info == 24) {
        uint8_t v;
        CN_TRY(cn_cursor_u8(c, &v));
        *arg = v;
    } else if (info == 25) {
        uint16_t v;
        CN_TRY(cn_cursor_u16be(c, &v));
        *arg = v;
    } else if (info == 26) {
        uint32_t v;
        CN_TRY(cn_cursor_u32be(c, &v));
        *arg = v;
    } else if (info == 27) {
        CN_TRY(cn_cursor_u64be(c, arg));
    } else {
        return CN_EINVAL;
    }
    CN_ENSURE(*major != 6 && (*major != 7 || info < 24), CN_EINVAL);
    return CN_OK;
}

/*
 * libcbor's cbor_load allocates what a header announces before it checks
 * that the input holds it (a 21-byte frame can ask for gigabytes). This
 * walk checks every announced length and count against the bytes left and
 * bounds the nesting, so cbor_load only ever sees a well-shaped input.
 */
static int shape_ok(const uint8_t *p, size_t n)
{
    cn_cursor_t c;
    cn_cursor_init(&c, p, n);
    uint64_t pending[ADMIN_DEPTH_MAX + 1] = {1}; /* items left per open level */
    int depth = 0;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        uint8_t major;
        uint64_t arg;
        if (head(&c, &major, &arg) < 0)
            return CN_EINVAL;
        if (major == 2 || major == 3) {
            cn_slice_t skip;
            CN_ENSURE(arg <= cn_cursor_left(&c), CN_EINVAL);
            CN_TRY(cn_cursor_view(&c, (size_t)arg, &skip));
        } else if (major == 4 || major == 5) {
            uint64_t items = major == 5 ? 2 * arg : arg;
            /* Every item takes at least one byte. */
            CN_ENSURE(arg <= cn_cursor_left(&c) && items <= cn_cursor_left(&c), CN_EINVAL);
            CN_ENSURE(depth < ADMIN_DEPTH_MAX, CN_EINVAL);
            pending[++depth] = items;
        }
    }
    return cn_cursor_left(&c) == 0 ? CN_OK : CN_EINVAL;
}

static int decode(const uint8_t *p, size_t n, bool request, cn_admin_msg_t *m)
{
    CN_ENSURE(n <= CN_ADMIN_FRAME_MAX, CN_ETOOBIG);
    CN_TRY(shape_ok(p, n));
    struct cbor_load_result res;
    cbor_item_t *root = cbor_load(p, n, &res);
    CN_ENSURE(root != NULL, CN_EINVAL);
    int rc = CN_OK;
    unsigned seen = 0;
    CN_ENSURE_OUT(res.read == n, CN_EINVAL);
    CN_ENSURE_OUT(cbor_isa_map(root) && cbor_map_is_definite(root), CN_EINVAL);
    struct cbor_pair *pairs = cbor_map_handle(root);
    for (size_t i = 0; i < cbor_map_size(root); i++) {
        unsigned before = seen;
        CN_TRY_OUT(field(&pairs[i], request, m, &seen));
        CN_ENSURE_OUT(seen != before, CN_EINVAL); /* a duplicate key */
    }
    /* Required: v and cmd (request); v and status (response). */
    CN_ENSURE_OUT((seen & 3) == 3, CN_EINVAL);
out:
    cbor_decref(&root);
    return rc;
}

int cn_admin_request_decode(const uint8_t *p, size_t n, cn_admin_msg_t *m)
{
    return decode(p, n, true, m);
}

int cn_admin_response_decode(const uint8_t *p, size_t n, cn_admin_msg_t *m)
{
    return decode(p, n, false, m);
}
