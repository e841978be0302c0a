/*
 * Reference counts of the group message bodies (gmsg column family), per
 * batch. A shared send sets its body's count, every acked reference takes
 * one off, and the batch writes each count it changed once, at its end
 * (or deletes body and count when none is left): a group send's 999 acks
 * that land in one batch cost one put, not 999 puts and 999 reads through
 * the batch. Entries live for one batch only; the next batch reads the
 * count it needs from the database again.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

#define REFS_INITIAL_CAP 16

struct cn__ref {
    uint8_t body[CN__KEY_GMSG];
    uint64_t refs;
    uint64_t server_time;
    bool missing; /* no count stored: the body expired or never was */
};

static uint64_t body_hash(const uint8_t *body)
{
    return cn__hash(body, CN__KEY_GMSG, 0);
}

static int grow(cn__refs_t *t)
{
    size_t ncap = t->cap ? t->cap * 2 : REFS_INITIAL_CAP;
    cn__ref_t *slots = calloc(ncap, sizeof(*slots));
    bool *used = calloc(ncap, sizeof(*used));
    if (slots == NULL || used == NULL) {
        free(slots);
        free(used);
        return CN_ENOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->used[i])
            continue;
        size_t j = (size_t)body_hash(t->slots[i].body) & (ncap - 1);
        while (used[j])
            j = (j + 1) & (ncap - 1);
        slots[j] = t->slots[i];
        used[j] = true;
    }
    free(t->slots);
    free(t->used);
    t->slots = slots;
    t->used = used;
    t->cap = ncap;
    return CN_OK;
}

/** Finds the entry of body; *fresh when it was just created (zeroed). */
static int lookup(cn__refs_t *t, const uint8_t *body, cn__ref_t **out, bool *fresh)
{
    if (t->cap == 0 || (t->count + 1) * 4 > t->cap * 3)
        CN_TRY(grow(t));
    size_t j = (size_t)body_hash(body) & (t->cap - 1);
    while (t->used[j]) {
        if (memcmp(t->slots[j].body, body, CN__KEY_GMSG) == 0) {
            *out = &t->slots[j];
            *fresh = false;
            return CN_OK;
        }
        j = (j + 1) & (t->cap - 1);
    }
    t->used[j] = true;
    t->count++;
    memset(&t->slots[j], 0, sizeof(t->slots[j]));
    memcpy(t->slots[j].body, body, CN__KEY_GMSG);
    *out = &t->slots[j];
    *fresh = true;
    return CN_OK;
}

static void refs_key(uint8_t out[CN__KEY_GMSG_REFS], const uint8_t *body)
{
    memcpy(out, body, CN__KEY_GMSG);
    out[CN__KEY_GMSG] = CN__GMSG_REFS;
}

/** Loads a stored count through the batch. */
static int load(cn__batch_t *b, cn__ref_t *e)
{
    uint8_t key[CN__KEY_GMSG_REFS];
    char *v;
    size_t vlen;
    refs_key(key, e->body);
    int rc = cn__batch_get(b, CN__CF_GMSG, key, sizeof(key), &v, &vlen);
    if (rc == CN_ENOTFOUND) {
        e->missing = true;
        return CN_OK;
    }
    CN_TRY(rc);
    if (vlen == CN__GMSG_REFS_VAL) {
        e->refs = cn_load_u64be((const uint8_t *)v);
        e->server_time = cn_load_u64be((const uint8_t *)v + 8);
    } else {
        /* Unreadable: released now, so the body goes with the next ack. */
        cn_log_error("store_corrupt", "what=gmsg_refs len=%zu", vlen);
        e->refs = 1;
    }
    rocksdb_free(v);
    return CN_OK;
}

int cn__refs_set(cn__batch_t *b, const uint8_t *body, uint64_t refs, uint64_t server_time)
{
    cn__ref_t *e;
    bool fresh;
    CN_TRY(lookup(&b->refs, body, &e, &fresh));
    e->refs = refs;
    e->server_time = server_time;
    e->missing = false;
    return CN_OK;
}

int cn__refs_release(cn__batch_t *b, const uint8_t *body)
{
    cn__ref_t *e;
    bool fresh;
    CN_TRY(lookup(&b->refs, body, &e, &fresh));
    if (fresh)
        CN_TRY(load(b, e));
    if (!e->missing && e->refs > 0)
        e->refs--;
    return CN_OK;
}

int cn__refs_flush(cn__batch_t *b)
{
    cn__refs_t *t = &b->refs;
    for (size_t i = 0; i < t->cap; i++) {
        const cn__ref_t *e = &t->slots[i];
        if (!t->used[i] || e->missing)
            continue;
        uint8_t key[CN__KEY_GMSG_REFS];
        refs_key(key, e->body);
        if (e->refs == 0) {
            cn__batch_delete(b, CN__CF_GMSG, e->body, CN__KEY_GMSG);
            cn__batch_delete(b, CN__CF_GMSG, key, sizeof(key));
            continue;
        }
        uint8_t v[CN__GMSG_REFS_VAL];
        cn_store_u64be(v, e->refs);
        cn_store_u64be(v + 8, e->server_time);
        cn__batch_put_raw(b, CN__CF_GMSG, key, sizeof(key), v, sizeof(v));
    }
    return CN_OK;
}

void cn__refs_reset(cn__refs_t *t)
{
    if (t->count == 0)
        return;
    memset(t->used, 0, t->cap * sizeof(*t->used));
    t->count = 0;
}

void cn__refs_dispose(cn__refs_t *t)
{
    free(t->slots);
    free(t->used);
    memset(t, 0, sizeof(*t));
}
