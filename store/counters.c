/*
 * Per-device counters of the writer: the next mailbox seq, the next
 * one-time prekey upload order and the queued mailbox bytes, the per-user
 * media bytes (keyed by the 32-byte user key, the width of a device id),
 * plus the one global push event seq. Persisted in meta (mseq/, oseq/,
 * mbytes/ ‖ user and pushseq, u64be) inside the same WriteBatch as the
 * records that use them, cached here after the first use so a send does
 * not read meta. When a batch fails, the values it changed are dropped and
 * reloaded from disk on next use, so seqs stay contiguous and byte counts
 * match the disk.
 *
 * The queued bytes are the exception: they are only ever kept here,
 * computed from the device's mailbox on first use (one scan per device per
 * process), because writing them with every send and every ack cost a
 * memtable insert per device per batch on the hottest path for a number
 * the mailbox itself holds. A qbytes/ value left by an older version is
 * deleted when its device is first used.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#define COUNTERS_INITIAL_CAP 64

/* Keyed (hash.c): ids are public keys, and a client can grind them. */
static uint64_t id_hash(const uint8_t *id)
{
    return cn__hash(id, CN_DEVICE_ID_LEN, 0);
}

static int grow(cn__counters_t *c)
{
    size_t ncap = c->cap ? c->cap * 2 : COUNTERS_INITIAL_CAP;
    cn__counter_t **slots = calloc(ncap, sizeof(*slots));
    CN_ENSURE(slots != NULL, CN_ENOMEM);
    for (size_t i = 0; i < c->cap; i++) {
        cn__counter_t *e = c->slots[i];
        if (e == NULL)
            continue;
        size_t j = (size_t)id_hash(e->id) & (ncap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (ncap - 1);
        slots[j] = e;
    }
    free(c->slots);
    c->slots = slots;
    c->cap = ncap;
    return CN_OK;
}

/** Finds or creates the entry of a device. */
static int lookup(cn__counters_t *c, const uint8_t *id, cn__counter_t **out)
{
    /* A send takes the seq, then adjusts the queued bytes, of the same
     * device: no SipHash for the second and later asks. */
    if (c->last && memcmp(c->last->id, id, CN_DEVICE_ID_LEN) == 0) {
        *out = c->last;
        return CN_OK;
    }
    if (c->cap == 0 || (c->count + 1) * 4 > c->cap * 3)
        CN_TRY(grow(c));
    size_t j = (size_t)id_hash(id) & (c->cap - 1);
    while (c->slots[j] != NULL) {
        if (memcmp(c->slots[j]->id, id, CN_DEVICE_ID_LEN) == 0) {
            *out = c->last = c->slots[j];
            return CN_OK;
        }
        j = (j + 1) & (c->cap - 1);
    }
    cn__counter_t *e = calloc(1, sizeof(*e));
    CN_ENSURE(e != NULL, CN_ENOMEM);
    memcpy(e->id, id, CN_DEVICE_ID_LEN);
    c->slots[j] = e;
    c->count++;
    *out = c->last = e;
    return CN_OK;
}

/** Reads one u64be meta value: CN_OK, CN_ENOTFOUND or CN_EIO. */
static int meta_u64(cn_store_t *s, const uint8_t *key, size_t klen, uint64_t *out)
{
    char *err = NULL;
    size_t vlen = 0;
    char *v =
        rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_META], (const char *)key, klen, &vlen, &err);
    CN_TRY(cn__rdb_err(err, "counter_load"));
    if (v == NULL)
        return CN_ENOTFOUND;
    if (vlen != 8) {
        rocksdb_free(v);
        cn_log_error("store_corrupt", "what=counter len=%zu", vlen);
        return CN_EIO;
    }
    *out = cn_load_u64be((const uint8_t *)v);
    rocksdb_free(v);
    return CN_OK;
}

static int mark_touched(cn__counters_t *c, cn__counter_t *e)
{
    if (e->touched)
        return CN_OK;
    if (c->ntouched == c->touched_cap) {
        size_t ncap = c->touched_cap ? c->touched_cap * 2 : 64;
        cn__counter_t **t = realloc(c->touched, ncap * sizeof(*t));
        CN_ENSURE(t != NULL, CN_ENOMEM);
        c->touched = t;
        c->touched_cap = ncap;
    }
    c->touched[c->ntouched++] = e;
    e->touched = true;
    return CN_OK;
}

/*
 * Seqs and upload orders start at 1. A queued-bytes counter is computed
 * from the mailbox, a media-bytes counter that was never written from the
 * owner index, both through the batch: the first use of a counter in a
 * batch always comes before the batch changes what it counts.
 */
static int load(cn__batch_t *b, cn__counter_t *e, enum cn__ctr which)
{
    uint8_t key[CN__META_CTR_MAX];
    size_t klen = cn__key_counter_any(key, which, e->id);
    if (which == CN__CTR_QBYTES) {
        CN_TRY(cn__mailbox_bytes(b, e->id, &e->next[which]));
        cn__batch_delete(b, CN__CF_META, key, klen); /* a stale persisted value */
        e->valid[which] = true;
        return CN_OK;
    }
    int rc = meta_u64(b->s, key, klen, &e->next[which]);
    if (rc == CN_ENOTFOUND && which == CN__CTR_MBYTES) {
        CN_TRY(cn__media_owner_bytes(b, e->id, &e->next[which]));
        CN_TRY(mark_touched(&b->s->counters, e));
        e->dirty[which] = true;
    } else if (rc == CN_ENOTFOUND) {
        e->next[which] = 1;
    } else {
        CN_TRY(rc);
    }
    e->valid[which] = true;
    return CN_OK;
}

static int entry(cn__batch_t *b, const uint8_t *device, enum cn__ctr which, cn__counter_t **out)
{
    CN_TRY(lookup(&b->s->counters, device, out));
    if (!(*out)->valid[which])
        CN_TRY(load(b, *out, which));
    return CN_OK;
}

int cn__counter_get(cn__batch_t *b, const uint8_t *device, enum cn__ctr which, uint64_t *out)
{
    cn__counter_t *e;
    CN_TRY(entry(b, device, which, &e));
    *out = e->next[which];
    return CN_OK;
}

int cn__counter_set(cn__batch_t *b, const uint8_t *device, enum cn__ctr which, uint64_t v)
{
    cn__counter_t *e;
    CN_TRY(lookup(&b->s->counters, device, &e));
    CN_TRY(mark_touched(&b->s->counters, e));
    e->next[which] = v;
    e->valid[which] = true;
    e->dirty[which] = true;
    return CN_OK;
}

int cn__counter_take(cn__batch_t *b, const uint8_t *device, enum cn__ctr which, uint64_t *out)
{
    cn__counter_t *e;
    CN_TRY(entry(b, device, which, &e));
    CN_ENSURE(e->next[which] < UINT64_MAX, CN_ELIMIT);
    CN_TRY(mark_touched(&b->s->counters, e));
    *out = e->next[which]++;
    e->dirty[which] = true;
    return CN_OK;
}

int cn__qbytes_delta_add(cn__batch_t *b, const uint8_t *device, int64_t d)
{
    cn__counter_t *e;
    CN_TRY(lookup(&b->s->counters, device, &e));
    CN_TRY(mark_touched(&b->s->counters, e));
    e->qbytes_delta += d;
    return CN_OK;
}

int cn__qbytes_batch_delta(cn__batch_t *b, const uint8_t *device, int64_t *out)
{
    cn__counter_t *e;
    CN_TRY(lookup(&b->s->counters, device, &e));
    *out = e->touched ? e->qbytes_delta : 0;
    return CN_OK;
}

int cn__push_seq_take(cn__batch_t *b, uint64_t *out)
{
    cn__counters_t *c = &b->s->counters;
    if (!c->push_valid) {
        int rc = meta_u64(b->s, (const uint8_t *)CN__META_PUSHSEQ, strlen(CN__META_PUSHSEQ),
                          &c->push_next);
        if (rc == CN_ENOTFOUND)
            c->push_next = 1;
        else
            CN_TRY(rc);
        c->push_valid = true;
    }
    /* Above this, event keys would sort among the pending markers. */
    CN_ENSURE(c->push_next < CN__PUSH_SEQ_LIMIT, CN_ELIMIT);
    *out = c->push_next++;
    c->push_dirty = true;
    return CN_OK;
}

int cn__counters_flush(cn__batch_t *b)
{
    cn__counters_t *c = &b->s->counters;
    uint8_t key[CN__META_CTR_MAX];
    for (size_t i = 0; i < c->ntouched; i++) {
        cn__counter_t *e = c->touched[i];
        for (int w = 0; w < CN__CTR_COUNT; w++) {
            if (!e->dirty[w] || w == CN__CTR_QBYTES)
                continue;
            cn_buf_reset(&b->v1);
            CN_TRY(cn_buf_put_u64be(&b->v1, e->next[w]));
            size_t klen = cn__key_counter_any(key, (enum cn__ctr)w, e->id);
            cn__overlay_put_blind(b, CN__CF_META, key, klen, b->v1.data, b->v1.len);
        }
    }
    if (c->push_dirty) {
        cn_buf_reset(&b->v1);
        CN_TRY(cn_buf_put_u64be(&b->v1, c->push_next));
        cn__batch_put(b, CN__CF_META, CN__META_PUSHSEQ, strlen(CN__META_PUSHSEQ), &b->v1);
    }
    return CN_OK;
}

void cn__counters_end(cn__counters_t *c, bool ok)
{
    for (size_t i = 0; i < c->ntouched; i++) {
        cn__counter_t *e = c->touched[i];
        for (int w = 0; w < CN__CTR_COUNT; w++) {
            if (e->dirty[w] && !ok)
                e->valid[w] = false; /* reload what is really on disk */
            e->dirty[w] = false;
        }
        e->qbytes_delta = 0;
        e->touched = false;
    }
    c->ntouched = 0;
    if (c->push_dirty && !ok)
        c->push_valid = false;
    c->push_dirty = false;
}

void cn__counters_dispose(cn__counters_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i]);
    free(c->slots);
    free(c->touched);
    memset(c, 0, sizeof(*c));
}
