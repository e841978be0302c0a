/*
 * The unindexed part of a batch: mailbox and dedupe writes, the bulk of
 * every Send and Ack. The indexed WriteBatch (WriteBatchWithIndex) keeps a
 * skip list of every key it holds so that later ops can read them; for
 * the hot keys that cost more than the memtable inserts themselves (a
 * skip-list insert per put, a skip-list search per read), while the only
 * reads of those keys in a batch are point lookups. So they go here: an
 * append-only log of records (replayed into the final WriteBatch after the
 * indexed part, in order) plus a hash of the newest record per key, which
 * answers the point lookups. Iterators through the batch do not see these
 * records (see quota.c for the one that needs to).
 *
 * Order: the final batch is the indexed part, then these records, then the
 * range deletes of revoked devices. The indexed part touches mailbox and
 * dedupe keys only to re-seal existing values (reseal.c), so a delete here
 * always wins over a re-seal of the same key, as it must.
 *
 * Writer thread only.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#define OVERLAY_INITIAL_CAP 1024
/* Kept between batches up to these sizes; a larger batch's room is freed. */
#define OVERLAY_KEEP_LOG   (16u * 1024 * 1024)
#define OVERLAY_KEEP_SLOTS (64u * 1024)

/* Record layout in the log: cf u8, deleted u8, klen u16, vlen u32, key, value. */
#define REC_HEAD 8

static uint64_t key_hash(enum cn__cf cf, const uint8_t *key, size_t klen)
{
    return cn__hash(key, klen, (uint64_t)cf);
}

static const uint8_t *rec_at(const cn__overlay_t *o, uint32_t off)
{
    return o->log.data + off;
}

static bool rec_is(const uint8_t *r, enum cn__cf cf, const uint8_t *key, size_t klen)
{
    size_t rklen = (size_t)r[2] | (size_t)r[3] << 8;
    return r[0] == (uint8_t)cf && rklen == klen && memcmp(r + REC_HEAD, key, klen) == 0;
}

static int grow(cn__overlay_t *o)
{
    size_t ncap = o->cap ? o->cap * 2 : OVERLAY_INITIAL_CAP;
    uint32_t *slots = calloc(ncap, sizeof(*slots));
    CN_ENSURE(slots != NULL, CN_ENOMEM);
    for (size_t i = 0; i < o->cap; i++) {
        if (o->slots[i] == 0)
            continue;
        const uint8_t *r = rec_at(o, o->slots[i] - 1);
        size_t klen = (size_t)r[2] | (size_t)r[3] << 8;
        size_t j = (size_t)key_hash((enum cn__cf)r[0], r + REC_HEAD, klen) & (ncap - 1);
        while (slots[j] != 0)
            j = (j + 1) & (ncap - 1);
        slots[j] = o->slots[i];
    }
    free(o->slots);
    o->slots = slots;
    o->cap = ncap;
    return CN_OK;
}

/* Appends a record to the log only. */
static int log_record(cn__overlay_t *o, enum cn__cf cf, const void *key, size_t klen, const void *v,
                      size_t vlen, bool deleted)
{
    CN_ENSURE(klen <= UINT16_MAX && vlen <= UINT32_MAX, CN_ETOOBIG);
    CN_ENSURE(o->log.len + REC_HEAD + klen + vlen < UINT32_MAX, CN_ELIMIT);
    uint8_t head[REC_HEAD] = {(uint8_t)cf,           deleted,
                              (uint8_t)klen,         (uint8_t)(klen >> 8),
                              (uint8_t)vlen,         (uint8_t)(vlen >> 8),
                              (uint8_t)(vlen >> 16), (uint8_t)(vlen >> 24)};
    CN_TRY(cn_buf_append(&o->log, head, sizeof(head)));
    CN_TRY(cn_buf_append(&o->log, key, klen));
    if (vlen)
        CN_TRY(cn_buf_append(&o->log, v, vlen));
    o->nrecords++;
    return CN_OK;
}

/* Appends a record and points the key's slot at it. */
static int append(cn__overlay_t *o, enum cn__cf cf, const void *key, size_t klen, const void *v,
                  size_t vlen, bool deleted)
{
    if (o->cap == 0 || (o->count + 1) * 4 > o->cap * 3)
        CN_TRY(grow(o));
    uint32_t off = (uint32_t)o->log.len;
    CN_TRY(log_record(o, cf, key, klen, v, vlen, deleted));
    size_t j = (size_t)key_hash(cf, key, klen) & (o->cap - 1);
    while (o->slots[j] != 0) {
        if (rec_is(rec_at(o, o->slots[j] - 1), cf, key, klen)) {
            o->slots[j] = off + 1;
            return CN_OK;
        }
        j = (j + 1) & (o->cap - 1);
    }
    o->slots[j] = off + 1;
    o->count++;
    return CN_OK;
}

/* A failure to record poisons the batch, like a value that cannot be sealed. */
static void poison(cn__batch_t *b, int rc)
{
    if (rc < 0 && b->fatal == CN_OK)
        b->fatal = rc;
}

void cn__overlay_put(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                     const cn_buf_t *val)
{
    cn_slice_t v = cn_buf_unread(val);
    if (cn__cf_sealed(b->s, cf)) {
        cn_buf_reset(&b->seal);
        int rc = cn__seal_value(b->s, cf, key, klen, v.base, v.len, &b->seal);
        if (rc < 0) {
            poison(b, rc);
            return;
        }
        v = cn_slice(b->seal.data, b->seal.len);
    }
    poison(b, append(&b->overlay, cf, key, klen, v.base, v.len, false));
}

void cn__overlay_put_blind(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen,
                           const void *v, size_t vlen)
{
    poison(b, log_record(&b->overlay, cf, key, klen, v, vlen, false));
}

void cn__overlay_delete(cn__batch_t *b, enum cn__cf cf, const void *key, size_t klen)
{
    poison(b, append(&b->overlay, cf, key, klen, NULL, 0, true));
}

int cn__overlay_get(const cn__overlay_t *o, enum cn__cf cf, const void *key, size_t klen,
                    const uint8_t **v, size_t *vlen)
{
    if (o->count == 0)
        return CN_EAGAIN;
    size_t j = (size_t)key_hash(cf, key, klen) & (o->cap - 1);
    while (o->slots[j] != 0) {
        const uint8_t *r = rec_at(o, o->slots[j] - 1);
        if (rec_is(r, cf, key, klen)) {
            if (r[1])
                return CN_ENOTFOUND;
            *vlen = (size_t)r[4] | (size_t)r[5] << 8 | (size_t)r[6] << 16 | (size_t)r[7] << 24;
            *v = r + REC_HEAD + klen;
            return CN_OK;
        }
        j = (j + 1) & (o->cap - 1);
    }
    return CN_EAGAIN;
}

void cn__overlay_replay(const cn__overlay_t *o, cn_store_t *s, rocksdb_writebatch_t *wb)
{
    size_t off = 0;
    while (off < o->log.len) {
        const uint8_t *r = o->log.data + off;
        size_t klen = (size_t)r[2] | (size_t)r[3] << 8;
        size_t vlen = (size_t)r[4] | (size_t)r[5] << 8 | (size_t)r[6] << 16 | (size_t)r[7] << 24;
        const char *key = (const char *)r + REC_HEAD;
        if (r[1])
            rocksdb_writebatch_delete_cf(wb, s->cf[r[0]], key, klen);
        else
            rocksdb_writebatch_put_cf(wb, s->cf[r[0]], key, klen, key + klen, vlen);
        off += REC_HEAD + klen + vlen;
    }
}

void cn__overlay_reset(cn__overlay_t *o)
{
    if (o->cap > OVERLAY_KEEP_SLOTS) {
        free(o->slots);
        o->slots = NULL;
        o->cap = 0;
    } else if (o->count) {
        memset(o->slots, 0, o->cap * sizeof(*o->slots));
    }
    o->count = 0;
    o->nrecords = 0;
    if (o->log.cap > OVERLAY_KEEP_LOG)
        cn_buf_dispose(&o->log);
    cn_buf_reset(&o->log);
}

void cn__overlay_dispose(cn__overlay_t *o)
{
    free(o->slots);
    cn_buf_dispose(&o->log);
    memset(o, 0, sizeof(*o));
}
