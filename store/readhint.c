/*
 * What the mailbox reads handed out lately, so that the ack of an entry a
 * drain delivered does not open and decode it again only to learn its
 * size and whether it references a group body. The writer's own hints
 * (store/recent.c) cover entries it wrote last; these cover the older
 * ones a reconnecting device drains.
 *
 * Unlike recent.c's, these hints do not prove the entry still exists: the
 * same entry can be read twice (a reconnect) or acked through another
 * path. An ack uses one only after finding the entry's stored bytes, and
 * only when its recorded size matches them (a key is never reused: seqs
 * only grow), so a stale hint is never applied.
 *
 * A fixed table of CN__READHINT_SLOTS slots, direct-mapped by the keyed
 * hash of (device, seq): a newer hint takes over its slot. The memory is
 * allocated at open and untouched pages cost nothing. One mutex, taken
 * once per 64 entries a read hands out and once per entry an ack finds.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

struct cn__readhint_slot {
    uint8_t device[CN_DEVICE_ID_LEN];
    uint64_t seq;
    uint32_t size; /* the stored value's plaintext bytes */
    bool used, shared;
    uint8_t body[CN__KEY_GMSG];
};

static size_t slot_of(const uint8_t *device, uint64_t seq)
{
    return (size_t)(cn__hash(device, CN_DEVICE_ID_LEN, seq) & (CN__READHINT_SLOTS - 1));
}

int cn__readhints_init(cn__readhints_t *h)
{
    memset(h, 0, sizeof(*h));
    h->slots = calloc(CN__READHINT_SLOTS, sizeof(*h->slots));
    if (h->slots == NULL)
        return CN_ENOMEM;
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h->slots);
        h->slots = NULL;
        return CN_EINTERNAL;
    }
    return CN_OK;
}

void cn__readhints_dispose(cn__readhints_t *h)
{
    if (h->slots == NULL)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h->slots);
    h->slots = NULL;
}

void cn__readhints_put(cn__readhints_t *h, const cn__readhint_t *in, size_t n)
{
    if (h->slots == NULL || n == 0)
        return;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < n; i++) {
        cn__readhint_slot_t *e = &h->slots[slot_of(in[i].device, in[i].seq)];
        memcpy(e->device, in[i].device, CN_DEVICE_ID_LEN);
        e->seq = in[i].seq;
        e->size = in[i].size;
        e->shared = in[i].shared;
        e->used = true;
        if (e->shared)
            memcpy(e->body, in[i].body, CN__KEY_GMSG);
    }
    pthread_mutex_unlock(&h->lock);
}

bool cn__readhints_take(cn__readhints_t *h, const uint8_t *device, uint64_t seq, size_t size,
                        bool *shared, uint8_t body[CN__KEY_GMSG])
{
    bool hit = false;
    if (h->slots == NULL)
        return false;
    cn__readhint_slot_t *e = &h->slots[slot_of(device, seq)];
    pthread_mutex_lock(&h->lock);
    if (e->used && e->seq == seq && memcmp(e->device, device, CN_DEVICE_ID_LEN) == 0) {
        e->used = false;
        hit = e->size == size; /* otherwise not the entry it was taken from */
    }
    if (hit) {
        *shared = e->shared;
        if (e->shared)
            memcpy(body, e->body, CN__KEY_GMSG);
    }
    pthread_mutex_unlock(&h->lock);
    return hit;
}
