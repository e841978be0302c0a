/*
 * What the writer remembers of the mailbox entries it wrote last, so that
 * an ack does not read back what was just written (issue 7: "delivery does
 * not read back what was just written", the ack side of it). Each entry
 * keeps (device, seq) → the value's plaintext size (what the queued-bytes
 * counter counted) and, for a reference, its body key.
 *
 * A fixed pool of CN__RECENT_MAX entries doubles as the eviction order:
 * entry i is reused for the i-th insert after the pool wrapped, dropping
 * whatever it held (that entry's ack then reads the mailbox, as before).
 * An entry is added only once its batch is durable (cn__recent_end marks
 * the batch's additions, the next add or take links them), and taken out
 * when an ack uses it. An entry whose mailbox record has expired
 * meanwhile (TTL compaction) still answers: the ack then takes off bytes
 * that are gone anyway and deletes a key that is gone, which is what a
 * read-back ack of an expired entry does too, less the read. Revoked
 * devices never ack again, so their entries simply age out.
 *
 * Writer thread only.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

struct cn__recent_entry {
    uint8_t device[CN_DEVICE_ID_LEN];
    uint64_t seq;
    uint32_t next;   /* bucket chain */
    uint32_t bucket; /* its chain's head: unlinking needs no hash */
    uint32_t size;
    bool used, shared;
    uint8_t body[CN__KEY_GMSG];
};

static uint32_t bucket_of(const cn__recent_t *r, const uint8_t *device, uint64_t seq)
{
    return (uint32_t)(cn__hash(device, CN_DEVICE_ID_LEN, seq) & (r->nbuckets - 1));
}

int cn__recent_init(cn__recent_t *r)
{
    memset(r, 0, sizeof(*r));
    r->nbuckets = 2 * CN__RECENT_MAX; /* a power of two */
    r->entries = calloc(CN__RECENT_MAX, sizeof(*r->entries));
    r->buckets = malloc(r->nbuckets * sizeof(*r->buckets));
    r->pending = malloc(CN__RECENT_MAX * sizeof(*r->pending));
    if (!r->entries || !r->buckets || !r->pending) {
        cn__recent_dispose(r);
        return CN_ENOMEM;
    }
    memset(r->buckets, 0xff, r->nbuckets * sizeof(*r->buckets));
    return CN_OK;
}

void cn__recent_dispose(cn__recent_t *r)
{
    free(r->entries);
    free(r->buckets);
    free(r->pending);
    memset(r, 0, sizeof(*r));
}

static void unlink_entry(cn__recent_t *r, uint32_t i)
{
    cn__recent_entry_t *e = &r->entries[i];
    uint32_t *p = &r->buckets[e->bucket];
    while (*p != NIL && *p != i)
        p = &r->entries[*p].next;
    if (*p == i)
        *p = e->next;
    e->used = false;
}

/*
 * Links a written batch's additions into the table. This runs at the
 * writer's next use of the table, not when the batch ends: a group send's
 * 999 additions cost 0.2-0.4 ms of cold memory, and at the batch's end
 * they would hold up its completion (and with it every Deliver) for that
 * long. The next use is the next batch's first send or ack, which needs
 * them; by then the loop has had the core.
 */
static void settle(cn__recent_t *r)
{
    for (size_t k = 0; k < r->npending; k++) {
        uint32_t i = r->next_slot;
        r->next_slot = (r->next_slot + 1) % CN__RECENT_MAX;
        if (r->entries[i].used)
            unlink_entry(r, i); /* the oldest goes */
        r->entries[i] = r->pending[k];
        cn__recent_entry_t *e = &r->entries[i];
        uint32_t *b = &r->buckets[e->bucket];
        e->used = true;
        e->next = *b;
        *b = i;
    }
    r->npending = 0;
    r->written = false;
}

/* Batch-local: the additions wait in pending until the batch is written.
 * The bucket is found now, while the op's device is hash.c's last one. */
void cn__recent_add(cn__recent_t *r, const uint8_t *device, uint64_t seq, size_t size,
                    const uint8_t *body)
{
    if (r->entries == NULL)
        return;
    if (r->written)
        settle(r);
    if (size > UINT32_MAX || r->npending == CN__RECENT_MAX)
        return; /* only a hint: an ack without one reads the mailbox */
    cn__recent_entry_t *e = &r->pending[r->npending++];
    memcpy(e->device, device, CN_DEVICE_ID_LEN);
    e->seq = seq;
    e->bucket = bucket_of(r, device, seq);
    e->size = (uint32_t)size;
    e->shared = body != NULL;
    if (body)
        memcpy(e->body, body, CN__KEY_GMSG);
}

bool cn__recent_take(cn__recent_t *r, const uint8_t *device, uint64_t seq, size_t *size,
                     bool *shared, uint8_t body[CN__KEY_GMSG])
{
    if (r->entries == NULL)
        return false;
    if (r->written)
        settle(r);
    for (uint32_t i = r->buckets[bucket_of(r, device, seq)]; i != NIL; i = r->entries[i].next) {
        cn__recent_entry_t *e = &r->entries[i];
        if (e->seq != seq || memcmp(e->device, device, CN_DEVICE_ID_LEN) != 0)
            continue;
        *size = e->size;
        *shared = e->shared;
        if (e->shared)
            memcpy(body, e->body, CN__KEY_GMSG);
        unlink_entry(r, i);
        return true;
    }
    return false;
}

void cn__recent_end(cn__recent_t *r, bool ok)
{
    if (ok)
        r->written = true; /* linked by the next add or take (settle) */
    else if (!r->written)
        r->npending = 0; /* the failed batch's own additions; a written
                            batch's, still waiting, stay */
}
