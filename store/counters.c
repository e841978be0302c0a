/*
 * Per-device counters of the writer: the next mailbox seq and the next
 * one-time prekey upload order. Persisted in meta (mseq/ ‖ device and
 * oseq/ ‖ device, u64be next value) inside the same WriteBatch as the
 * records that use them, cached here after the first use so a send does
 * not read meta. When a batch fails, the values it changed are dropped and
 * reloaded from disk on next use, so seqs stay contiguous.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#define COUNTERS_INITIAL_CAP 64

/* FNV-1a over the whole id; ids are public keys, but a client can grind
 * prefixes, so hash every byte rather than take the first eight. */
static uint64_t id_hash(const uint8_t *id)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < CN_DEVICE_ID_LEN; i++) {
        h ^= id[i];
        h *= 1099511628211ull;
    }
    return h;
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
    if (c->cap == 0 || (c->count + 1) * 4 > c->cap * 3)
        CN_TRY(grow(c));
    size_t j = (size_t)id_hash(id) & (c->cap - 1);
    while (c->slots[j] != NULL) {
        if (memcmp(c->slots[j]->id, id, CN_DEVICE_ID_LEN) == 0) {
            *out = c->slots[j];
            return CN_OK;
        }
        j = (j + 1) & (c->cap - 1);
    }
    cn__counter_t *e = calloc(1, sizeof(*e));
    CN_ENSURE(e != NULL, CN_ENOMEM);
    memcpy(e->id, id, CN_DEVICE_ID_LEN);
    c->slots[j] = e;
    c->count++;
    *out = e;
    return CN_OK;
}

static int load(cn_store_t *s, cn__counter_t *e, enum cn__ctr which)
{
    uint8_t key[CN__META_CTR_LEN];
    char *err = NULL;
    size_t vlen = 0;
    cn__key_counter(key, which, e->id);
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_META], (const char *)key, sizeof(key),
                             &vlen, &err);
    CN_TRY(cn__rdb_err(err, "counter_load"));
    if (v == NULL) {
        e->next[which] = 1; /* seqs and upload orders start at 1 */
    } else if (vlen != 8) {
        rocksdb_free(v);
        cn_log_error("store_corrupt", "what=counter len=%zu", vlen);
        return CN_EIO;
    } else {
        e->next[which] = cn_load_u64be((const uint8_t *)v);
        rocksdb_free(v);
    }
    e->valid[which] = true;
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

int cn__counter_take(cn__batch_t *b, const uint8_t *device, enum cn__ctr which, uint64_t *out)
{
    cn__counters_t *c = &b->s->counters;
    cn__counter_t *e;
    CN_TRY(lookup(c, device, &e));
    if (!e->valid[which])
        CN_TRY(load(b->s, e, which));
    CN_ENSURE(e->next[which] < UINT64_MAX, CN_ELIMIT);
    CN_TRY(mark_touched(c, e));
    *out = e->next[which]++;
    e->dirty[which] = true;
    return CN_OK;
}

int cn__counters_flush(cn__batch_t *b)
{
    cn__counters_t *c = &b->s->counters;
    uint8_t key[CN__META_CTR_LEN];
    for (size_t i = 0; i < c->ntouched; i++) {
        cn__counter_t *e = c->touched[i];
        for (int w = 0; w < CN__CTR_COUNT; w++) {
            if (!e->dirty[w])
                continue;
            cn_buf_reset(&b->v1);
            CN_TRY(cn_buf_put_u64be(&b->v1, e->next[w]));
            cn__key_counter(key, (enum cn__ctr)w, e->id);
            cn__batch_put(b, CN__CF_META, key, sizeof(key), &b->v1);
        }
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
        e->touched = false;
    }
    c->ntouched = 0;
}

void cn__counters_dispose(cn__counters_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i]);
    free(c->slots);
    free(c->touched);
    memset(c, 0, sizeof(*c));
}
