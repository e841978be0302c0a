/*
 * The device registry: which loop and connection an authenticated device
 * is on, so that a Send on one loop can push to a device on another. A
 * mutex-protected open-addressing table keyed by device id; lookups are a
 * hash and a compare, far below the cost of the TLS write they precede.
 * Device ids are public keys that clients make, so one can grind keys
 * whose bytes collide: the hash is SipHash (libsodium's crypto_shorthash)
 * under a random key, so nobody can aim devices at one probe sequence.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct slot {
    uint8_t dev[CN_DEVICE_ID_LEN];
    cn_route_t route; /* conn_id 0: empty; UINT64_MAX: tombstone */
} slot_t;

#define TOMBSTONE UINT64_MAX

struct cn_registry {
    uv_mutex_t lock;
    slot_t *slots;
    size_t cap;  /* power of two */
    size_t used; /* live + tombstones */
    size_t live;
    uint8_t hash_key[CN_TABLE_KEY_LEN];
};

static size_t hash_dev(const cn_registry_t *r, const uint8_t *dev)
{
    return (size_t)cn_table_hash(r->hash_key, dev, CN_DEVICE_ID_LEN);
}

cn_registry_t *cn__registry_new(void)
{
    cn_registry_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cap = 1024;
    cn_table_key_new(r->hash_key);
    r->slots = calloc(r->cap, sizeof(slot_t));
    if (!r->slots || uv_mutex_init(&r->lock) != 0) {
        free(r->slots);
        free(r);
        return NULL;
    }
    return r;
}

void cn__registry_free(cn_registry_t *r)
{
    if (!r)
        return;
    uv_mutex_destroy(&r->lock);
    free(r->slots);
    free(r);
}

/* Returns the slot holding dev, or NULL. Caller holds the lock. */
static slot_t *find(cn_registry_t *r, const uint8_t *dev)
{
    size_t mask = r->cap - 1;
    for (size_t i = hash_dev(r, dev) & mask, n = 0; n < r->cap; i = (i + 1) & mask, n++) {
        slot_t *s = &r->slots[i];
        if (s->route.conn_id == 0)
            return NULL;
        if (s->route.conn_id != TOMBSTONE && memcmp(s->dev, dev, CN_DEVICE_ID_LEN) == 0)
            return s;
    }
    return NULL;
}

static void insert_fresh(const cn_registry_t *r, slot_t *slots, size_t cap, const uint8_t *dev,
                         cn_route_t route)
{
    size_t mask = cap - 1;
    size_t i = hash_dev(r, dev) & mask;
    while (slots[i].route.conn_id != 0 && slots[i].route.conn_id != TOMBSTONE)
        i = (i + 1) & mask;
    memcpy(slots[i].dev, dev, CN_DEVICE_ID_LEN);
    slots[i].route = route;
}

static int grow(cn_registry_t *r)
{
    size_t cap = r->live * 4 > r->cap ? r->cap * 2 : r->cap; /* else just drop tombstones */
    slot_t *slots = calloc(cap, sizeof(slot_t));
    CN_ENSURE(slots != NULL, CN_ENOMEM);
    for (size_t i = 0; i < r->cap; i++) {
        cn_route_t rt = r->slots[i].route;
        if (rt.conn_id != 0 && rt.conn_id != TOMBSTONE)
            insert_fresh(r, slots, cap, r->slots[i].dev, rt);
    }
    free(r->slots);
    r->slots = slots;
    r->cap = cap;
    r->used = r->live;
    return CN_OK;
}

int cn__registry_set(cn_registry_t *r, const uint8_t dev[CN_DEVICE_ID_LEN], cn_route_t route,
                     cn_route_t *old)
{
    int rc = CN_OK;
    memset(old, 0, sizeof(*old));
    uv_mutex_lock(&r->lock);
    slot_t *s = find(r, dev);
    if (s) {
        *old = s->route;
        s->route = route;
        goto out;
    }
    if ((r->used + 1) * 2 > r->cap)
        CN_TRY_OUT(grow(r));
    size_t mask = r->cap - 1;
    size_t i = hash_dev(r, dev) & mask;
    while (r->slots[i].route.conn_id != 0 && r->slots[i].route.conn_id != TOMBSTONE)
        i = (i + 1) & mask;
    if (r->slots[i].route.conn_id == 0)
        r->used++;
    memcpy(r->slots[i].dev, dev, CN_DEVICE_ID_LEN);
    r->slots[i].route = route;
    r->live++;
out:
    uv_mutex_unlock(&r->lock);
    return rc;
}

void cn__registry_remove(cn_registry_t *r, const uint8_t dev[CN_DEVICE_ID_LEN], uint64_t conn_id)
{
    uv_mutex_lock(&r->lock);
    slot_t *s = find(r, dev);
    if (s && s->route.conn_id == conn_id) {
        s->route.conn_id = TOMBSTONE;
        r->live--;
    }
    uv_mutex_unlock(&r->lock);
}

int cn__registry_get(cn_registry_t *r, const uint8_t dev[CN_DEVICE_ID_LEN], cn_route_t *out)
{
    uv_mutex_lock(&r->lock);
    slot_t *s = find(r, dev);
    if (s)
        *out = s->route;
    uv_mutex_unlock(&r->lock);
    return s ? CN_OK : CN_ENOTFOUND;
}

size_t cn__registry_size(cn_registry_t *r)
{
    uv_mutex_lock(&r->lock);
    size_t n = r->live;
    uv_mutex_unlock(&r->lock);
    return n;
}
