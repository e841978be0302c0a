/*
 * Feeds the input to every record decoder; whatever decodes must encode
 * again and decode to the same record.
 */
#include "proto/cn_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_envelope_eq(const cn_rec_envelope_t *a, const cn_rec_envelope_t *b)
{
    CHECK(a->server_time == b->server_time);
    CHECK(memcmp(a->message_id, b->message_id, sizeof(a->message_id)) == 0);
    CHECK(strcmp(a->from, b->from) == 0);
    CHECK(memcmp(a->from_device, b->from_device, sizeof(a->from_device)) == 0);
    CHECK(a->kind == b->kind && a->has_group == b->has_group);
    CHECK(!a->has_group || memcmp(a->group_id, b->group_id, sizeof(a->group_id)) == 0);
    CHECK(a->ciphertext.len == b->ciphertext.len);
    CHECK(a->ciphertext.len == 0 ||
          memcmp(a->ciphertext.base, b->ciphertext.base, a->ciphertext.len) == 0);
}

/* The group record is about 34 KiB: on the heap, as its header asks. */
static void check_group(const uint8_t *data, size_t size, cn_buf_t *buf)
{
    cn_rec_group_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    CHECK(a != NULL && b != NULL);
    int rc = cn_rec_group_decode(data, size, a);
    CHECK(rc == CN_OK || rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION);
    if (rc == CN_OK) {
        cn_buf_reset(buf);
        CHECK(cn_rec_group_encode(a, buf) == CN_OK);
        CHECK(cn_rec_group_decode(buf->data, buf->len, b) == CN_OK);
        CHECK(memcmp(a, b, sizeof(*a)) == 0);
    }
    free(a);
    free(b);
}

/* The counter journal's entries, collected (each takes 37 bytes or more of
 * input, so the input bounds them). */
typedef struct cjour_list {
    cn_rec_cjour_entry_t *e;
    size_t n, cap;
} cjour_list_t;

static int cjour_collect(void *ctx, const cn_rec_cjour_entry_t *e)
{
    cjour_list_t *l = ctx;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        cn_rec_cjour_entry_t *p = realloc(l->e, ncap * sizeof(*p));
        CHECK(p != NULL);
        l->e = p;
        l->cap = ncap;
    }
    l->e[l->n++] = *e;
    return CN_OK;
}

static void check_cjour(const uint8_t *data, size_t size, cn_buf_t *buf)
{
    cjour_list_t a = {0}, b = {0};
    int rc = cn_rec_cjour_decode(data, size, cjour_collect, &a);
    CHECK(rc == CN_OK || rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION);
    if (rc == CN_OK) {
        cn_buf_reset(buf);
        CHECK(cn_rec_cjour_begin(a.n, buf) == CN_OK);
        for (size_t i = 0; i < a.n; i++)
            CHECK(cn_rec_cjour_add(&a.e[i], buf) == CN_OK);
        CHECK(cn_rec_cjour_decode(buf->data, buf->len, cjour_collect, &b) == CN_OK);
        CHECK(a.n == b.n && (a.n == 0 || memcmp(a.e, b.e, a.n * sizeof(*a.e)) == 0));
    }
    free(a.e);
    free(b.e);
}

/* The reference journal's entries, collected likewise (each takes 36 bytes
 * or more of input). Heads need not be minimal on the way in (libcbor reads
 * any width), so the re-encoding is compared by what it decodes to, not
 * byte for byte. */
typedef struct rjour_entry {
    uint8_t device[CN_DEVICE_ID_LEN];
    uint64_t seq;
} rjour_entry_t;

typedef struct rjour_list {
    rjour_entry_t *e;
    size_t n, cap;
} rjour_list_t;

static int rjour_collect(void *ctx, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq)
{
    rjour_list_t *l = ctx;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        rjour_entry_t *p = realloc(l->e, ncap * sizeof(*p));
        CHECK(p != NULL);
        l->e = p;
        l->cap = ncap;
    }
    memcpy(l->e[l->n].device, device, CN_DEVICE_ID_LEN);
    l->e[l->n++].seq = seq;
    return CN_OK;
}

static void check_rjour(const uint8_t *data, size_t size, cn_buf_t *buf)
{
    rjour_list_t a = {0}, b = {0};
    cn_slice_t ra, rb;
    int rc = cn_rec_rjour_decode(data, size, &ra, rjour_collect, &a);
    CHECK(rc == CN_OK || rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION);
    if (rc == CN_OK) {
        CHECK(ra.len >= 1 && ra.len <= CN_REC_RJOUR_REF_MAX);
        CHECK(ra.base >= data && ra.base + ra.len <= data + size); /* borrowed */
        cn_buf_reset(buf);
        CHECK(cn_rec_rjour_begin(ra, a.n, buf) == CN_OK);
        for (size_t i = 0; i < a.n; i++)
            CHECK(cn_rec_rjour_add(a.e[i].device, a.e[i].seq, buf) == CN_OK);
        CHECK(cn_rec_rjour_decode(buf->data, buf->len, &rb, rjour_collect, &b) == CN_OK);
        CHECK(ra.len == rb.len && memcmp(ra.base, rb.base, ra.len) == 0);
        CHECK(a.n == b.n && (a.n == 0 || memcmp(a.e, b.e, a.n * sizeof(*a.e)) == 0));
        /* The encoder's form is canonical: the smallest possible, so never
         * longer than the input. */
        CHECK(buf->len <= size);
    }
    free(a.e);
    free(b.e);
}

/* Decoders memset their output first, so whole-struct compares are exact. */
#define ROUNDTRIP(type, dec, enc)                                                                  \
    do {                                                                                           \
        type a, b;                                                                                 \
        int rc = dec(data, size, &a);                                                              \
        CHECK(rc == CN_OK || rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION);            \
        if (rc == CN_OK) {                                                                         \
            cn_buf_reset(&buf);                                                                    \
            CHECK(enc(&a, &buf) == CN_OK);                                                         \
            CHECK(dec(buf.data, buf.len, &b) == CN_OK);                                            \
            CHECK(memcmp(&a, &b, sizeof(a)) == 0);                                                 \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cn_buf_t buf;
    cn_buf_init(&buf);
    ROUNDTRIP(cn_rec_device_t, cn_rec_device_decode, cn_rec_device_encode);
    ROUNDTRIP(cn_rec_user_t, cn_rec_user_decode, cn_rec_user_encode);
    ROUNDTRIP(cn_rec_dedupe_t, cn_rec_dedupe_decode, cn_rec_dedupe_encode);
    ROUNDTRIP(cn_rec_prekey_t, cn_rec_prekey_decode, cn_rec_prekey_encode);
    ROUNDTRIP(cn_rec_push_t, cn_rec_push_decode, cn_rec_push_encode);
    ROUNDTRIP(cn_rec_media_t, cn_rec_media_decode, cn_rec_media_encode);
    check_group(data, size, &buf);
    check_cjour(data, size, &buf);
    check_rjour(data, size, &buf);

    cn_rec_envelope_t e, e2;
    int rc = cn_rec_envelope_decode(data, size, &e);
    CHECK(rc == CN_OK || rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION);
    if (rc == CN_OK) {
        cn_buf_reset(&buf);
        CHECK(cn_rec_envelope_encode(&e, &buf) == CN_OK);
        CHECK(cn_rec_envelope_decode(buf.data, buf.len, &e2) == CN_OK);
        check_envelope_eq(&e, &e2);
    }
    cn_buf_dispose(&buf);
    return 0;
}
