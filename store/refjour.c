/*
 * The reference journal: a group send's mailbox references, written as
 * one record and put into the mailbox later.
 *
 * A group send to 999 devices used to put 999 references (device ‖ seq →
 * a sealed envelope record without ciphertext) into the batch that
 * acknowledges it. RocksDB inserts a batch into its memtables after the
 * WAL's fsync and before the write returns, so those inserts (1.5-3 ms)
 * and their seals sat between the fsync and the first Deliver. Now that
 * batch writes one record, meta rjour/ ‖ u64be n → {ref, [[device, seq],
 * ...]} (proto/records.c), sealed like a mailbox value since it links the
 * recipients to the sender. Once it is written the writer *publishes* the
 * entries, before any callback runs, and the writer's next batch (or an
 * idle moment, as for the counter journal) puts each reference under its
 * mailbox key and deletes the record, atomically, before anything else of
 * that batch. So every op that reads or changes a mailbox through a batch
 * (an ack, a revoke, a recount) sees the references in place, and a
 * record on disk at open means none of its entries was acked: the open
 * publishes it again and the first batch puts them all.
 *
 * Readers outside the writer (the pump's cn_store_mailbox_read, the depth
 * and stats reads) merge the published entries of their device
 * (cn__rjour_lookup) with what the database holds. They take that copy
 * before opening their iterator, and the writer drops entries only after
 * the batch that put them is written: an entry is always in one or the
 * other, sometimes in both (the reader keeps one).
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

static void key_rjour(uint8_t out[CN__RJOUR_KEY_LEN], uint64_t n)
{
    memcpy(out, CN__META_RJOUR, CN__RJOUR_KEY_LEN - 8);
    cn_store_u64be(out + CN__RJOUR_KEY_LEN - 8, n);
}

static void rec_free(cn__rjour_rec_t *r)
{
    if (r == NULL)
        return;
    cn_buf_dispose(&r->ref);
    free(r->ents);
    free(r);
}

static void list_free(cn__rjour_rec_t *r)
{
    while (r != NULL) {
        cn__rjour_rec_t *next = r->next;
        rec_free(r);
        r = next;
    }
}

static int rec_new(const uint8_t body[CN__KEY_GMSG], cn_slice_t ref, uint64_t server_time, size_t n,
                   cn__rjour_rec_t **out)
{
    cn__rjour_rec_t *r = calloc(1, sizeof(*r));
    CN_ENSURE(r != NULL, CN_ENOMEM);
    cn_buf_init(&r->ref);
    memcpy(r->body, body, CN__KEY_GMSG);
    r->server_time = server_time;
    r->cap = n > 0 ? n : 1;
    r->ents = malloc(r->cap * sizeof(*r->ents));
    if (r->ents == NULL || cn_buf_append(&r->ref, ref.base, ref.len) < 0) {
        rec_free(r);
        return CN_ENOMEM;
    }
    *out = r;
    return CN_OK;
}

static int rec_push(cn__rjour_rec_t *r, const uint8_t *device, uint64_t seq)
{
    if (r->count == r->cap) {
        cn__rjour_ent_t *e = realloc(r->ents, r->cap * 2 * sizeof(*e));
        CN_ENSURE(e != NULL, CN_ENOMEM);
        r->ents = e;
        r->cap *= 2;
    }
    memcpy(r->ents[r->count].device, device, CN_DEVICE_ID_LEN);
    r->ents[r->count].seq = seq;
    r->count++;
    return CN_OK;
}

int cn__rjour_init(cn__rjour_t *j)
{
    memset(j, 0, sizeof(*j));
    j->next_n = 1;
    CN_ENSURE(pthread_mutex_init(&j->lock, NULL) == 0, CN_EINTERNAL);
    j->lock_ready = true;
    return CN_OK;
}

void cn__rjour_dispose(cn__rjour_t *j)
{
    list_free(j->published);
    list_free(j->building);
    if (j->lock_ready)
        pthread_mutex_destroy(&j->lock);
    memset(j, 0, sizeof(*j));
}

/* ------------------------------------------------------------- writer */

int cn__rjour_begin(cn__batch_t *b, const uint8_t body[CN__KEY_GMSG], cn_slice_t ref,
                    uint64_t server_time, size_t n)
{
    cn__rjour_t *j = &b->s->rjour;
    cn__rjour_rec_t *r;
    CN_ENSURE(ref.len > 0 && ref.len <= CN_REC_RJOUR_REF_MAX, CN_ETOOBIG);
    CN_TRY(rec_new(body, ref, server_time, n, &r));
    r->n = j->next_n++;
    if (j->building_last != NULL)
        j->building_last->next = r;
    else
        j->building = r;
    j->building_last = r;
    return CN_OK;
}

int cn__rjour_add(cn__batch_t *b, const uint8_t *device, uint64_t seq)
{
    cn__rjour_rec_t *last = b->s->rjour.building_last;
    CN_ENSURE(last != NULL, CN_EINTERNAL);
    return rec_push(last, device, seq);
}

void cn__rjour_drop_device(cn__batch_t *b, const uint8_t *device)
{
    for (cn__rjour_rec_t *r = b->s->rjour.building; r != NULL; r = r->next) {
        size_t k = 0;
        for (size_t i = 0; i < r->count; i++) {
            if (memcmp(r->ents[i].device, device, CN_DEVICE_ID_LEN) != 0)
                r->ents[k++] = r->ents[i];
        }
        r->count = k;
    }
}

int cn__rjour_materialize(cn__batch_t *b)
{
    cn__rjour_t *j = &b->s->rjour;
    uint8_t key[CN__KEY_MAILBOX], jkey[CN__RJOUR_KEY_LEN];
    if (j->published == NULL)
        return CN_OK;
    for (cn__rjour_rec_t *r = j->published; r != NULL && b->fatal == CN_OK; r = r->next) {
        for (size_t i = 0; i < r->count; i++) {
            cn__key_mailbox(key, r->ents[i].device, r->ents[i].seq);
            cn__overlay_put(b, CN__CF_MAILBOX, key, sizeof(key), &r->ref, r->server_time);
            /* Counted into the device's queued bytes by the send; a recount
             * within this batch (quota.c) adds what the overlay holds. */
            CN_TRY(cn__qbytes_delta_add(b, r->ents[i].device, (int64_t)r->ref.len));
        }
        key_rjour(jkey, r->n);
        cn__overlay_delete(b, CN__CF_META, jkey, sizeof(jkey));
    }
    j->materializing = true;
    return b->fatal;
}

static int put_record(cn__batch_t *b, const cn__rjour_rec_t *r)
{
    uint8_t key[CN__RJOUR_KEY_LEN];
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_rjour_begin(cn_buf_unread(&r->ref), r->count, &b->v1));
    for (size_t i = 0; i < r->count; i++)
        CN_TRY(cn_rec_rjour_add(r->ents[i].device, r->ents[i].seq, &b->v1));
    key_rjour(key, r->n);
    cn_buf_reset(&b->seal);
    CN_TRY(cn__seal_meta(b->s, key, sizeof(key), b->v1.data, b->v1.len, &b->seal));
    cn__overlay_put_blind(b, CN__CF_META, key, sizeof(key), b->seal.data, b->seal.len);
    return CN_OK;
}

int cn__rjour_flush(cn__batch_t *b)
{
    for (cn__rjour_rec_t *r = b->s->rjour.building; r != NULL; r = r->next) {
        if (r->count > 0) /* every device of the send revoked in its batch */
            CN_TRY(put_record(b, r));
    }
    return CN_OK;
}

void cn__rjour_end(cn_store_t *s, bool ok)
{
    cn__rjour_t *j = &s->rjour;
    cn__rjour_rec_t *drop = NULL, *add = ok ? j->building : NULL;
    if (!ok)
        list_free(j->building);
    j->building = j->building_last = NULL;
    if (!ok || (!j->materializing && add == NULL)) {
        j->materializing = false;
        return;
    }
    /* A record whose devices were all revoked in its batch was not written. */
    size_t n = 0;
    for (cn__rjour_rec_t **p = &add; *p != NULL;) {
        cn__rjour_rec_t *r = *p;
        if (r->count == 0) {
            *p = r->next;
            rec_free(r);
        } else {
            n++;
            p = &r->next;
        }
    }
    pthread_mutex_lock(&j->lock);
    if (j->materializing) {
        drop = j->published;
        j->published = NULL;
        __atomic_store_n(&j->npublished, 0, __ATOMIC_RELEASE);
    }
    if (add != NULL) {
        cn__rjour_rec_t **tail = &j->published;
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = add;
        __atomic_store_n(&j->npublished, j->npublished + n, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&j->lock);
    j->materializing = false;
    list_free(drop);
}

bool cn__rjour_pending(const cn__rjour_t *j)
{
    return j->published != NULL;
}

/* ------------------------------------------------------------- recovery */

static int count_entry(void *ctx, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq)
{
    (void)device, (void)seq;
    (*(size_t *)ctx)++;
    return CN_OK;
}

static int recover_entry(void *ctx, const uint8_t device[CN_DEVICE_ID_LEN], uint64_t seq)
{
    return rec_push(ctx, device, seq);
}

/* One record read back (decoded twice: counted, then kept); its reference
 * names the body and the time. */
static int recover_record(uint64_t n, const uint8_t *v, size_t vlen, cn__rjour_rec_t **out)
{
    cn_slice_t ref = {0};
    cn_rec_envelope_t env;
    uint8_t body[CN__KEY_GMSG];
    cn__rjour_rec_t *r;
    size_t count = 0;
    CN_TRY(cn_rec_rjour_decode(v, vlen, &ref, count_entry, &count));
    CN_TRY(cn_rec_envelope_decode(ref.base, ref.len, &env));
    CN_ENSURE(env.shared, CN_EINVAL);
    memcpy(body, env.from_device, CN_DEVICE_ID_LEN);
    memcpy(body + CN_DEVICE_ID_LEN, env.message_id, CN_MESSAGE_ID_LEN);
    CN_TRY(rec_new(body, ref, env.server_time, count, &r));
    r->n = n;
    int rc = cn_rec_rjour_decode(v, vlen, &ref, recover_entry, r);
    if (rc < 0) {
        rec_free(r);
        return rc;
    }
    *out = r;
    return CN_OK;
}

int cn__rjour_recover(cn_store_t *s)
{
    cn__rjour_t *j = &s->rjour;
    const size_t plen = CN__RJOUR_KEY_LEN - 8;
    cn__rjour_rec_t **tail = &j->published;
    size_t records = 0, refs = 0;
    cn__iter_t it;
    cn_buf_t scratch;
    cn_buf_init(&scratch);
    CN_TRY(cn__iter_open(s, NULL, CN__CF_META, (const uint8_t *)CN__META_RJOUR, plen, 8, NULL, 0,
                         &it));
    int rc = CN_OK;
    for (; rc == CN_OK && cn__iter_valid(&it); cn__iter_next(&it)) {
        size_t klen, vlen, plain_len;
        const uint8_t *k = cn__iter_key(&it, &klen), *plain;
        if (klen != CN__RJOUR_KEY_LEN) { /* a name from before rjour/ was reserved */
            cn_log_warn("store_ref_journal_skipped", "key_len=%zu", klen);
            continue;
        }
        uint64_t n = cn_load_u64be(k + plen);
        const uint8_t *v = cn__iter_value(&it, &vlen);
        cn__rjour_rec_t *r = NULL;
        rc = v ? cn__open_meta(s, k, klen, v, vlen, &scratch, &plain, &plain_len) : CN_EIO;
        if (rc == CN_OK)
            rc = recover_record(n, plain, plain_len, &r);
        if (rc == CN_EINVAL || rc == CN_ETOOBIG || rc == CN_EVERSION || rc == CN_EAUTH) {
            cn_log_error("store_corrupt", "what=ref_journal rc=%s", cn_strerror(rc));
            rc = CN_EIO;
        }
        if (rc < 0)
            break;
        *tail = r;
        tail = &r->next;
        records++;
        refs += r->count;
        j->next_n = CN_MAX(j->next_n, n + 1);
    }
    int crc = cn__iter_close(&it);
    cn_buf_dispose(&scratch);
    __atomic_store_n(&j->npublished, records, __ATOMIC_RELEASE);
    if (rc == CN_OK && crc == CN_OK && records > 0)
        cn_log_info("store_ref_journal_recovered", "records=%zu refs=%zu", records, refs);
    return rc < 0 ? rc : crc;
}

/* -------------------------------------------------------------- readers */

static int hit_cmp(const void *a, const void *b)
{
    uint64_t x = ((const cn__rjour_hit_t *)a)->seq, y = ((const cn__rjour_hit_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The entry of device in r with seq >= from_seq, or NULL. */
static const cn__rjour_ent_t *rec_find(const cn__rjour_rec_t *r, const uint8_t *device,
                                       uint64_t from_seq)
{
    for (size_t i = 0; i < r->count; i++) {
        const cn__rjour_ent_t *e = &r->ents[i];
        if (e->seq >= from_seq && memcmp(e->device, device, CN_DEVICE_ID_LEN) == 0)
            return e;
    }
    return NULL;
}

int cn__rjour_lookup(cn_store_t *s, const uint8_t *device, uint64_t from_seq, cn__rjour_hit_t **out)
{
    cn__rjour_t *j = &s->rjour;
    size_t n = 0, bytes = 0;
    *out = NULL;
    if (__atomic_load_n(&j->npublished, __ATOMIC_ACQUIRE) == 0)
        return 0;
    pthread_mutex_lock(&j->lock);
    /* A send names a device once: one hit per record at most. */
    for (const cn__rjour_rec_t *r = j->published; r != NULL; r = r->next) {
        if (rec_find(r, device, from_seq) != NULL) {
            n++;
            bytes += r->ref.len;
        }
    }
    /* The hits, then their references' bytes, in one block. */
    cn__rjour_hit_t *hits = n > 0 ? malloc(n * sizeof(*hits) + bytes) : NULL;
    if (hits == NULL) {
        pthread_mutex_unlock(&j->lock);
        return n > 0 ? CN_ENOMEM : 0;
    }
    uint8_t *refs = (uint8_t *)(hits + n);
    n = 0;
    for (const cn__rjour_rec_t *r = j->published; r != NULL; r = r->next) {
        const cn__rjour_ent_t *e = rec_find(r, device, from_seq);
        if (e == NULL)
            continue;
        cn__rjour_hit_t *h = &hits[n++];
        h->seq = e->seq;
        h->server_time = r->server_time;
        memcpy(h->body, r->body, CN__KEY_GMSG);
        memcpy(refs, r->ref.data, r->ref.len);
        h->ref = refs;
        h->ref_len = (uint32_t)r->ref.len;
        refs += r->ref.len;
    }
    pthread_mutex_unlock(&j->lock);
    qsort(hits, n, sizeof(*hits), hit_cmp);
    *out = hits;
    return (int)n;
}
