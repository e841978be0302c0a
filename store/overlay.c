/*
 * The unindexed part of a batch: mailbox and dedupe writes, the bulk of
 * every Send and Ack. The indexed WriteBatch (WriteBatchWithIndex) keeps a
 * skip list of every key it holds so that later ops can read them; for
 * the hot keys that cost more than the memtable inserts themselves (a
 * skip-list insert per put, a skip-list search per read), while the only
 * reads of those keys in a batch are point lookups. So they go here: an
 * append-only log of records (replayed into the final WriteBatch after the
 * indexed part, sorted by key) plus a hash of the newest record per key, which
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
/* A batch that filled under 1/16 of a grown table frees it rather than
 * clearing it all: the next one starts from OVERLAY_INITIAL_CAP. */
#define OVERLAY_SHRINK_RATIO 16
/* Below this many records the replay sorts them by insertion (at most
 * ~2,000 key comparisons) instead of the radix sort, whose eight passes
 * over 256 counters each cost the same whatever the batch: a lightly
 * loaded node's batches hold a Send or two. */
#define OVERLAY_RADIX_MIN 64

/* Record layout in the log: cf u8, deleted u8, klen u16, vlen u32, key, value. */
#define REC_HEAD 8

/* A mailbox key hashes as its device mixed with its seq, like the recent
 * entries and the counters do: the op that writes or deletes it has just
 * hashed that device (hash.c remembers it). */
static uint64_t key_hash(enum cn__cf cf, const uint8_t *key, size_t klen)
{
    if (cf == CN__CF_MAILBOX && klen == CN__KEY_MAILBOX)
        return cn__hash(key, CN_DEVICE_ID_LEN,
                        cn_load_u64be(key + CN_DEVICE_ID_LEN) ^ (uint64_t)cf << 56);
    return cn__hash(key, klen, (uint64_t)cf);
}

static size_t rec_klen(const uint8_t *r)
{
    return (size_t)r[2] | (size_t)r[3] << 8;
}

static size_t rec_vlen(const uint8_t *r)
{
    return (size_t)r[4] | (size_t)r[5] << 8 | (size_t)r[6] << 16 | (size_t)r[7] << 24;
}

static size_t rec_len(const uint8_t *r)
{
    return REC_HEAD + rec_klen(r) + rec_vlen(r);
}

static const uint8_t *rec_at(const cn__overlay_t *o, uint32_t off)
{
    return o->log.data + off;
}

static bool rec_is(const uint8_t *r, enum cn__cf cf, const uint8_t *key, size_t klen)
{
    return r[0] == (uint8_t)cf && rec_klen(r) == klen && memcmp(r + REC_HEAD, key, klen) == 0;
}

/* A slot holds the top 32 bits of its key's hash above the record's log
 * offset + 1 (0: empty). Probes compare the hash bits first, so a probe
 * past other keys does not read their records: at up to 3/4 occupancy a
 * miss passes several, each a cache miss into a log of megabytes, and
 * every Send's dedupe lookup is a miss. */
static uint64_t slot_make(uint64_t hash, uint32_t off)
{
    return (hash & 0xffffffff00000000ull) | ((uint64_t)off + 1);
}

static uint32_t slot_off(uint64_t slot)
{
    return (uint32_t)slot - 1;
}

static bool slot_may_be(uint64_t slot, uint64_t hash)
{
    return (slot >> 32) == (hash >> 32);
}

static int grow(cn__overlay_t *o)
{
    size_t ncap = o->cap ? o->cap * 2 : OVERLAY_INITIAL_CAP;
    uint64_t *slots = calloc(ncap, sizeof(*slots));
    CN_ENSURE(slots != NULL, CN_ENOMEM);
    for (size_t i = 0; i < o->cap; i++) {
        if (o->slots[i] == 0)
            continue;
        const uint8_t *r = rec_at(o, slot_off(o->slots[i]));
        size_t klen = rec_klen(r);
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
    uint64_t h = key_hash(cf, key, klen);
    size_t j = (size_t)h & (o->cap - 1);
    while (o->slots[j] != 0) {
        if (slot_may_be(o->slots[j], h) &&
            rec_is(rec_at(o, slot_off(o->slots[j])), cf, key, klen)) {
            o->slots[j] = slot_make(h, off);
            return CN_OK;
        }
        j = (j + 1) & (o->cap - 1);
    }
    o->slots[j] = slot_make(h, off);
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
                     const cn_buf_t *val, uint64_t hint)
{
    cn_slice_t v = cn_buf_unread(val);
    if (cn__cf_sealed(b->s, cf)) {
        cn_buf_reset(&b->seal);
        int rc = cn__seal_value_hinted(b->s, cf, key, klen, v.base, v.len, hint, &b->seal);
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

/* Keys a batch writes through the overlay are short (mailbox 40 bytes,
 * dedupe 48); a longer one cannot be matched by prefix here. */
#define OVERLAY_PREFIX_KEY_MAX 64

void cn__overlay_delete_prefix(cn__batch_t *b, enum cn__cf cf, const uint8_t *prefix, size_t plen)
{
    cn__overlay_t *o = &b->overlay;
    size_t end = o->log.len; /* the deletes appended below are not visited */
    for (size_t off = 0; off < end && b->fatal == CN_OK; off += rec_len(o->log.data + off)) {
        const uint8_t *r = o->log.data + off;
        size_t klen = rec_klen(r);
        if (r[0] != (uint8_t)cf || r[1] || klen < plen || memcmp(r + REC_HEAD, prefix, plen) != 0)
            continue;
        uint8_t key[OVERLAY_PREFIX_KEY_MAX];
        if (klen > sizeof(key)) {
            poison(b, CN_EINTERNAL);
            return;
        }
        memcpy(key, r + REC_HEAD, klen); /* the append may move the log */
        cn__overlay_delete(b, cf, key, klen);
    }
}

int cn__overlay_get(const cn__overlay_t *o, enum cn__cf cf, const void *key, size_t klen,
                    const uint8_t **v, size_t *vlen)
{
    if (o->count == 0)
        return CN_EAGAIN;
    uint64_t h = key_hash(cf, key, klen);
    size_t j = (size_t)h & (o->cap - 1);
    while (o->slots[j] != 0) {
        const uint8_t *r;
        if (slot_may_be(o->slots[j], h) &&
            rec_is(r = rec_at(o, slot_off(o->slots[j])), cf, key, klen)) {
            if (r[1])
                return CN_ENOTFOUND;
            *vlen = rec_vlen(r);
            *v = r + REC_HEAD + klen;
            return CN_OK;
        }
        j = (j + 1) & (o->cap - 1);
    }
    return CN_EAGAIN;
}

static void replay_one(const uint8_t *r, cn_store_t *s, rocksdb_writebatch_t *wb)
{
    size_t klen = rec_klen(r), vlen = rec_vlen(r);
    const char *key = (const char *)r + REC_HEAD;
    if (r[1])
        rocksdb_writebatch_delete_cf(wb, s->cf[r[0]], key, klen);
    else
        rocksdb_writebatch_put_cf(wb, s->cf[r[0]], key, klen, key + klen, vlen);
}

/* The column family, then the first 7 key bytes (zero-padded), as one
 * number in the order RocksDB's bytewise comparator gives their keys. */
static uint64_t sort_prefix(const uint8_t *r)
{
    uint8_t p[8] = {r[0]};
    memcpy(p + 1, r + REC_HEAD, CN_MIN(rec_klen(r), sizeof(p) - 1));
    return cn_load_u64be(p);
}

/* Whole keys, as RocksDB's bytewise comparator orders them. */
static int key_cmp(const uint8_t *a, const uint8_t *b)
{
    size_t alen = rec_klen(a), blen = rec_klen(b);
    int c = memcmp(a + REC_HEAD, b + REC_HEAD, CN_MIN(alen, blen));
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Stable LSD radix sort of n items by prefix, a byte at a time (tmp: room
 * for n); returns where the sorted items are. A byte all items share
 * costs its count only. */
static cn__overlay_item_t *radix_sort(cn__overlay_item_t *a, cn__overlay_item_t *tmp, size_t n)
{
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++)
            count[(a[i].prefix >> shift) & 0xff]++;
        if (count[(a[0].prefix >> shift) & 0xff] == n)
            continue;
        size_t pos = 0;
        for (size_t b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = pos;
            pos += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i].prefix >> shift) & 0xff]++] = a[i];
        cn__overlay_item_t *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* Whole keys, then log order: the order of qsort on a long tie run. */
static int item_cmp(const void *pa, const void *pb)
{
    const uint8_t *a = ((const cn__overlay_item_t *)pa)->rec;
    const uint8_t *b = ((const cn__overlay_item_t *)pb)->rec;
    int c = key_cmp(a, b);
    if (c != 0)
        return c;
    return a < b ? -1 : a > b; /* records sit in the log in log order */
}

/* Within each run of equal prefixes (one device's mailbox entries, say),
 * the whole keys decide; records of one key keep their log order, so the
 * later one wins. Short runs take an insertion sort; a long one (keys a
 * client chose with a common start: message ids) takes qsort, so that no
 * batch costs more than n log n comparisons. */
#define TIE_RUN_INSERTION_MAX 16

/* Stable: records of one key keep their log order. */
static void insertion_sort(cn__overlay_item_t *a, size_t lo, size_t hi)
{
    for (size_t k = lo + 1; k < hi; k++) {
        cn__overlay_item_t x = a[k];
        size_t j = k;
        while (j > lo && key_cmp(x.rec, a[j - 1].rec) < 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

static void sort_ties(cn__overlay_item_t *a, size_t n)
{
    for (size_t lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && a[hi].prefix == a[lo].prefix; hi++)
            ;
        if (hi - lo > TIE_RUN_INSERTION_MAX)
            qsort(a + lo, hi - lo, sizeof(*a), item_cmp);
        else
            insertion_sort(a, lo, hi);
    }
}

static bool order_room(cn__overlay_t *o)
{
    if (o->nrecords <= o->order_cap)
        return true;
    /* One allocation: the items, then the radix sort's scratch. */
    cn__overlay_item_t *order = realloc(o->order, 2 * o->nrecords * sizeof(*order));
    if (order == NULL)
        return false;
    o->order = order;
    o->order_cap = o->nrecords;
    return true;
}

/*
 * In key order: a memtable insert starts from where the previous one
 * ended (RocksDB keeps that splice), so ascending keys cost a short walk
 * instead of a descent from the top of a skip list far larger than the
 * caches each time (a group send's references land on a thousand devices
 * in member order). A batch is applied atomically, so only the order of
 * records of one key matters, and the sort keeps it. Without room for the
 * order (out of memory), the log order is as correct.
 *
 * The sort is a radix sort on an 8-byte prefix, then a sort by whole key
 * of each run of records that share one (sort_ties): qsort of everything,
 * its comparator called n log n times (about 68,000 calls for a saturated
 * batch of 5,500 records), was 2 % of the node's samples at relay-80k.
 */
void cn__overlay_replay(cn__overlay_t *o, cn_store_t *s, rocksdb_writebatch_t *wb)
{
    if (o->nrecords == 0)
        return;
    if (!order_room(o)) {
        for (size_t off = 0; off < o->log.len; off += rec_len(o->log.data + off))
            replay_one(o->log.data + off, s, wb);
        return;
    }
    size_t n = 0;
    for (size_t off = 0; off < o->log.len; off += rec_len(o->log.data + off)) {
        const uint8_t *r = o->log.data + off;
        o->order[n++] = (cn__overlay_item_t){.prefix = sort_prefix(r), .rec = r};
    }
    cn__overlay_item_t *sorted = o->order;
    if (n < OVERLAY_RADIX_MIN) {
        insertion_sort(sorted, 0, n);
    } else {
        sorted = radix_sort(o->order, o->order + o->order_cap, n);
        sort_ties(sorted, n);
    }
    for (size_t i = 0; i < n; i++)
        replay_one(sorted[i].rec, s, wb);
}

void cn__overlay_reset(cn__overlay_t *o)
{
    bool sparse = o->cap > OVERLAY_INITIAL_CAP && o->count * OVERLAY_SHRINK_RATIO < o->cap;
    if (o->cap > OVERLAY_KEEP_SLOTS || sparse) {
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
    if (o->order_cap > OVERLAY_KEEP_SLOTS) {
        free(o->order);
        o->order = NULL;
        o->order_cap = 0;
    }
    cn_buf_reset(&o->log);
}

void cn__overlay_dispose(cn__overlay_t *o)
{
    free(o->slots);
    free(o->order);
    cn_buf_dispose(&o->log);
    memset(o, 0, sizeof(*o));
}
