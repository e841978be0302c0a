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
 *
 * The seq counters (mseq/, oseq/) only ever grow, and a batch that changes
 * CN__CJOUR_MIN of them or more writes them as one journal record
 * (cjour/ ‖ u64be n; cn_rec_cjour_* in proto/records.c: which, device
 * and next value per counter) instead of a key each. A group send to 999
 * devices changes 999 mseq/ counters, and rewriting a key costs a memtable insert that starts
 * far from its hint (the new version sorts before the old one, where the
 * hint points): about 11,000 instructions each, a quarter of the store's
 * work per copy. The record is one insert. Once the writer has been idle
 * for CN__CJOUR_IDLE_MS, or when the records reach CN__CJOUR_FOLD_BYTES,
 * a batch folds them: the counters they hold go under their own keys and
 * the records are deleted, in one batch. A counter's durable value is the
 * larger of its key's and the newest record's that holds it (values only
 * grow), which is what a restart reads back (cn__counters_recover) and
 * what a failed batch reloads.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#define COUNTERS_INITIAL_CAP 64

static bool is_seq(int which)
{
    return which < CN__CTR_SEQS;
}

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

/* A seq or upload order: its key's value (1 when it has none), or the
 * newer one a journal record not yet folded holds. */
static int load_seq(cn_store_t *s, cn__counter_t *e, enum cn__ctr which)
{
    uint8_t key[CN__META_CTR_MAX];
    size_t klen = cn__key_counter_any(key, which, e->id);
    int rc = meta_u64(s, key, klen, &e->next[which]);
    if (rc == CN_ENOTFOUND)
        e->next[which] = 1;
    else
        CN_TRY(rc);
    e->next[which] = CN_MAX(e->next[which], e->journaled[which]);
    e->valid[which] = true;
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
    if (is_seq(which))
        return load_seq(b->s, e, which);
    uint8_t key[CN__META_CTR_MAX];
    size_t klen = cn__key_counter_any(key, which, e->id);
    if (which == CN__CTR_QBYTES) {
        CN_TRY(cn__mailbox_bytes(b, e->id, &e->next[which]));
        cn__batch_delete(b, CN__CF_META, key, klen); /* a stale persisted value */
        e->valid[which] = true;
        return CN_OK;
    }
    int rc = meta_u64(b->s, key, klen, &e->next[which]); /* media bytes */
    if (rc == CN_ENOTFOUND) {
        CN_TRY(cn__media_owner_bytes(b, e->id, &e->next[which]));
        CN_TRY(mark_touched(&b->s->counters, e));
        e->dirty[which] = true;
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

static void key_cjour(uint8_t out[CN__CJOUR_KEY_LEN], uint64_t n)
{
    memcpy(out, CN__META_CJOUR, CN__CJOUR_KEY_LEN - 8);
    cn_store_u64be(out + CN__CJOUR_KEY_LEN - 8, n);
}

/* Room for n entries in unfolded[], taken before the batch is written so
 * that cn__counters_end cannot fail. */
static int unfolded_room(cn__counters_t *c, size_t n)
{
    if (n <= c->unfolded_cap)
        return CN_OK;
    size_t ncap = c->unfolded_cap ? c->unfolded_cap : 64;
    while (ncap < n)
        ncap *= 2;
    cn__counter_t **u = realloc(c->unfolded, ncap * sizeof(*u));
    CN_ENSURE(u != NULL, CN_ENOMEM);
    c->unfolded = u;
    c->unfolded_cap = ncap;
    return CN_OK;
}

/* Only after unfolded_room. */
static void list_unfolded(cn__counters_t *c, cn__counter_t *e)
{
    if (!e->unfolded) {
        c->unfolded[c->nunfolded++] = e;
        e->unfolded = true;
    }
}

static int put_own(cn__batch_t *b, const cn__counter_t *e, int which)
{
    uint8_t key[CN__META_CTR_MAX];
    cn_buf_reset(&b->v1);
    CN_TRY(cn_buf_put_u64be(&b->v1, e->next[which]));
    size_t klen = cn__key_counter_any(key, (enum cn__ctr)which, e->id);
    cn__overlay_put_blind(b, CN__CF_META, key, klen, b->v1.data, b->v1.len);
    return CN_OK;
}

/* The batch's changed seq counters (nseq of them) as journal record jnext. */
static int put_record(cn__batch_t *b, size_t nseq)
{
    cn__counters_t *c = &b->s->counters;
    CN_TRY(unfolded_room(c, c->nunfolded + nseq));
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_cjour_begin(nseq, &b->v1));
    for (size_t i = 0; i < c->ntouched; i++) {
        const cn__counter_t *e = c->touched[i];
        for (int w = 0; w < CN__CTR_SEQS; w++) {
            if (!e->dirty[w])
                continue;
            cn_rec_cjour_entry_t j = {.which = (uint8_t)w, .next = e->next[w]};
            memcpy(j.device, e->id, CN_DEVICE_ID_LEN);
            CN_TRY(cn_rec_cjour_add(&j, &b->v1));
        }
    }
    uint8_t key[CN__CJOUR_KEY_LEN];
    key_cjour(key, c->jnext);
    cn__overlay_put_blind(b, CN__CF_META, key, sizeof(key), b->v1.data, b->v1.len);
    c->batch_jbytes = b->v1.len;
    return CN_OK;
}

/* Every journaled counter under its own key (those the batch changed are
 * the caller's), and the records deleted. */
static int fold(cn__batch_t *b)
{
    cn__counters_t *c = &b->s->counters;
    for (size_t i = 0; i < c->nunfolded; i++) {
        cn__counter_t *e = c->unfolded[i];
        for (int w = 0; w < CN__CTR_SEQS; w++) {
            if (e->journaled[w] == 0 || e->dirty[w])
                continue;
            if (!e->valid[w]) /* dropped by a failed batch */
                CN_TRY(load(b, e, (enum cn__ctr)w));
            CN_TRY(put_own(b, e, w));
        }
    }
    uint8_t key[CN__CJOUR_KEY_LEN];
    for (uint64_t n = c->jfirst; n < c->jnext; n++) {
        key_cjour(key, n);
        cn__overlay_delete(b, CN__CF_META, key, sizeof(key));
    }
    c->folding = true;
    return CN_OK;
}

bool cn__counters_fold_pending(const cn__counters_t *c)
{
    return c->nunfolded > 0 || c->jnext > c->jfirst;
}

int cn__counters_flush(cn__batch_t *b)
{
    cn__counters_t *c = &b->s->counters;
    size_t nseq = 0;
    for (size_t i = 0; i < c->ntouched; i++)
        for (int w = 0; w < CN__CTR_SEQS; w++)
            nseq += c->touched[i]->dirty[w];
    size_t record = nseq * CN__CJOUR_ENTRY_MAX;
    bool fold_now = cn__counters_fold_pending(c) &&
                    (c->fold_requested || c->jbytes + record > CN__CJOUR_FOLD_BYTES);
    bool journal = !fold_now && nseq >= CN__CJOUR_MIN;
    if (journal)
        CN_TRY(put_record(b, nseq));
    for (size_t i = 0; i < c->ntouched; i++) {
        const cn__counter_t *e = c->touched[i];
        for (int w = 0; w < CN__CTR_COUNT; w++) {
            if (!e->dirty[w] || w == CN__CTR_QBYTES || (journal && is_seq(w)))
                continue;
            CN_TRY(put_own(b, e, w));
        }
    }
    if (fold_now)
        CN_TRY(fold(b));
    if (c->push_dirty) {
        cn_buf_reset(&b->v1);
        CN_TRY(cn_buf_put_u64be(&b->v1, c->push_next));
        cn__batch_put(b, CN__CF_META, CN__META_PUSHSEQ, strlen(CN__META_PUSHSEQ), &b->v1);
    }
    return CN_OK;
}

/* What a committed batch did to the journal. */
static void journal_end(cn__counters_t *c)
{
    if (c->folding) {
        for (size_t i = 0; i < c->nunfolded; i++) {
            cn__counter_t *e = c->unfolded[i];
            memset(e->journaled, 0, sizeof(e->journaled));
            e->unfolded = false;
        }
        c->nunfolded = 0;
        c->jfirst = c->jnext;
        c->jbytes = 0;
    }
    if (c->batch_jbytes) {
        for (size_t i = 0; i < c->ntouched; i++) {
            cn__counter_t *e = c->touched[i];
            for (int w = 0; w < CN__CTR_SEQS; w++) {
                if (e->dirty[w]) {
                    e->journaled[w] = e->next[w];
                    list_unfolded(c, e);
                }
            }
        }
        c->jnext++;
        c->jbytes += c->batch_jbytes;
    }
}

void cn__counters_end(cn__counters_t *c, bool ok)
{
    if (ok)
        journal_end(c);
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
    c->batch_jbytes = 0;
    c->folding = false;
    c->fold_requested = false;
}

/* One counter of a journal record read back at open: it goes to the
 * larger of its key's value and the record's. */
static int recover_entry(void *ctx, const cn_rec_cjour_entry_t *j)
{
    cn_store_t *s = ctx;
    cn__counters_t *c = &s->counters;
    int w = j->which;
    cn__counter_t *e;
    CN_TRY(unfolded_room(c, c->nunfolded + 1));
    CN_TRY(lookup(c, j->device, &e));
    if (!e->valid[w])
        CN_TRY(load_seq(s, e, (enum cn__ctr)w));
    e->next[w] = CN_MAX(e->next[w], j->next);
    e->journaled[w] = CN_MAX(e->journaled[w], j->next);
    list_unfolded(c, e);
    return CN_OK;
}

int cn__counters_recover(cn_store_t *s)
{
    cn__counters_t *c = &s->counters;
    const size_t plen = CN__CJOUR_KEY_LEN - 8;
    cn__iter_t it;
    c->jfirst = c->jnext = 1;
    CN_TRY(cn__iter_open(s, NULL, CN__CF_META, (const uint8_t *)CN__META_CJOUR, plen, 8, NULL, 0,
                         &it));
    int rc = CN_OK;
    bool first = true;
    for (; rc == CN_OK && cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen;
        const uint8_t *k = cn__iter_key(&it, &klen);
        if (klen != CN__CJOUR_KEY_LEN) { /* not a record: a name from before cjour/ was reserved */
            cn_log_warn("store_counter_journal_skipped", "key_len=%zu", klen);
            continue;
        }
        /* Records are written one number apart and folded all together. */
        uint64_t n = cn_load_u64be(k + plen);
        if (!first && n != c->jnext) {
            cn_log_error("store_corrupt", "what=counter_journal gap_after=%llu",
                         (unsigned long long)(c->jnext - 1));
            rc = CN_EIO;
            break;
        }
        const uint8_t *v = cn__iter_value(&it, &vlen);
        rc = v ? cn_rec_cjour_decode(v, vlen, recover_entry, s) : CN_EIO;
        if (rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION) {
            cn_log_error("store_corrupt", "what=counter_journal rc=%s", cn_strerror(rc));
            rc = CN_EIO;
        }
        c->jbytes += vlen;
        if (first)
            c->jfirst = n;
        first = false;
        c->jnext = n + 1;
    }
    int crc = cn__iter_close(&it);
    if (rc == CN_OK && crc == CN_OK && c->jnext > c->jfirst)
        cn_log_info("store_counter_journal_recovered", "records=%llu counters=%zu",
                    (unsigned long long)(c->jnext - c->jfirst), c->nunfolded);
    return rc < 0 ? rc : crc;
}

void cn__counters_dispose(cn__counters_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i]);
    free(c->slots);
    free(c->touched);
    free(c->unfolded);
    memset(c, 0, sizeof(*c));
}
