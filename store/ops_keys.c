/*
 * Key ring ops (writer thread): rotate, retire, and the two internal ops
 * of the re-seal pass. The ring in memory changes while the batch is
 * applied (so later ops of the batch seal under a new key) and the sealed
 * ring goes into the same batch; cn__keys_end undoes a rotation whose
 * batch failed and drops retired keys only once their removal is durable.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

int cn__op_keys_rotate(cn__batch_t *b, cn_store_op_t *op)
{
    cn_keyring_t *ring = b->s->ring;
    uint32_t id, prev;
    CN_ENSURE(ring != NULL, CN_EINVAL);
    CN_ENSURE(b->nrotated < CN__BATCH_ROTATE_MAX, CN_ELIMIT);
    prev = cn_keyring_current(ring);
    CN_TRY(cn_keyring_rotate(ring, &id));
    b->rotated[b->nrotated] = id;
    b->rotated_prev[b->nrotated] = prev;
    b->nrotated++;
    CN__APPLY(b, cn__keys_put_ring(b));
    op->u.keys.key_id = id;
    cn_log_info("store_key_rotated", "key_id=%u previous=%u", id, prev);
    return CN_OK;
}

static bool retiring(const cn__batch_t *b, uint32_t id)
{
    for (size_t i = 0; i < b->nretired; i++) {
        if (b->retired[i] == id)
            return true;
    }
    return false;
}

/*
 * A key may go once a complete re-seal pass, run after it stopped being
 * current, found no record under it (its state DRAINED): no write seals
 * under a key that is not current, so none can have appeared since.
 */
int cn__op_keys_retire(cn__batch_t *b, cn_store_op_t *op)
{
    cn_keyring_entry_t ents[CN_KEYRING_MAX];
    cn_keyring_t *ring = b->s->ring;
    uint32_t id = op->u.keys.key_id;
    CN_ENSURE(ring != NULL, CN_EINVAL);
    size_t n = CN_MIN(cn_keyring_list(ring, ents, CN_KEYRING_MAX), (size_t)CN_KEYRING_MAX);
    const cn_keyring_entry_t *e = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ents[i].id == id)
            e = &ents[i];
    }
    CN_ENSURE(e != NULL && !retiring(b, id), CN_ENOTFOUND);
    CN_ENSURE(e->state == CN_KEY_DRAINED, CN_ECONFLICT); /* current, or maybe in use */
    b->retired[b->nretired++] = id;
    CN__APPLY(b, cn__keys_put_ring(b));
    cn_log_info("store_key_retired", "key_id=%u", id);
    return CN_OK;
}

/** Moves one record to the current key unless it changed since the pass saw it
 * (a record of a plain family, a dedupe one sealed before, is written back
 * in the clear: cn__batch_put_raw seals only what cn__cf_sealed names). */
static int reseal_one(cn__batch_t *b, cn__reseal_t *r, size_t i)
{
    char *v;
    size_t vlen;
    uint32_t id;
    uint32_t cur = cn_keyring_current(b->s->ring);
    int rc = cn__batch_get_raw(b, r->cf[i], r->key[i], r->klen[i], &v, &vlen);
    if (rc == CN_ENOTFOUND) {
        r->outcome[i] = CN__RESEAL_GONE;
        return CN_OK;
    }
    CN_TRY(rc);
    if (!cn__value_needs_open(b->s, r->cf[i], (const uint8_t *)v, vlen)) {
        r->outcome[i] = CN__RESEAL_NEWER; /* plain meanwhile (dedupe): under no key */
        rocksdb_free(v);
        return CN_OK;
    }
    rc = cn__value_key_id(b->s, (const uint8_t *)v, vlen, &id);
    if (rc == CN_OK && (id != r->old_id[i] || id == cur)) {
        r->outcome[i] = CN__RESEAL_NEWER; /* compare-and-swap: a newer value stays */
        r->new_id[i] = id;
    } else if (rc == CN_OK) {
        rc = cn__open_inplace(b->s, r->cf[i], r->key[i], r->klen[i], (uint8_t *)v, &vlen);
    }
    if (r->outcome[i] != CN__RESEAL_NEWER) {
        if (rc == CN_OK) {
            cn__batch_put_raw(b, r->cf[i], r->key[i], r->klen[i], v, vlen);
            r->outcome[i] = CN__RESEAL_MOVED;
            r->new_id[i] = cur;
        } else {
            r->outcome[i] = CN__RESEAL_FAILED; /* logged and counted by the open */
        }
    }
    rocksdb_free(v);
    return CN_OK;
}

/** The ring as the pass must see it: the current key and the others. */
static void snapshot(cn_keyring_t *ring, cn__reseal_t *r)
{
    cn_keyring_entry_t ents[CN_KEYRING_MAX];
    size_t n = CN_MIN(cn_keyring_list(ring, ents, CN_KEYRING_MAX), (size_t)CN_KEYRING_MAX);
    r->current = cn_keyring_current(ring);
    r->ncands = 0;
    for (size_t i = 0; i < n; i++) {
        if (ents[i].id != r->current)
            r->cands[r->ncands++] = ents[i].id;
    }
}

int cn__op_reseal(cn__batch_t *b, cn_store_op_t *op)
{
    cn__reseal_t *r = op->ctx;
    CN_ENSURE(b->s->ring != NULL, CN_EINVAL);
    snapshot(b->s->ring, r);
    for (size_t i = 0; i < r->n; i++) {
        r->outcome[i] = CN__RESEAL_FAILED;
        r->new_id[i] = 0;
        CN__APPLY(b, reseal_one(b, r, i));
    }
    return CN_OK;
}

/* Marking a key drained before the batch is durable is safe: the pass has
 * just shown that nothing uses it, and nothing new can. */
int cn__op_drained(cn__batch_t *b, cn_store_op_t *op)
{
    cn__reseal_t *r = op->ctx;
    cn_keyring_t *ring = b->s->ring;
    CN_ENSURE(ring != NULL, CN_EINVAL);
    for (size_t i = 0; i < r->ndrained; i++) {
        /* Gone or current (a rollback) meanwhile: leave it. */
        if (cn_keyring_set_state(ring, r->drained[i], CN_KEY_DRAINED) < 0)
            cn_log_debug("store_key_not_drained", "key_id=%u", (unsigned)r->drained[i]);
    }
    if (r->clear_legacy) {
        cn_keyring_set_legacy(ring, false);
        __atomic_store_n(&b->s->legacy, false, __ATOMIC_RELAXED);
        cn_log_info("store_legacy_converted", "reason=\"no plaintext record left\"");
    }
    CN__APPLY(b, cn__keys_put_ring(b));
    return CN_OK;
}

void cn__keys_end(cn__batch_t *b, bool ok)
{
    cn_keyring_t *ring = b->s->ring;
    if (!ok) {
        for (size_t i = b->nrotated; i-- > 0;) {
            /* The previous current is still in the ring: it was current,
             * and the rotated key was added by this batch. Neither fails. */
            if (cn_keyring_set_current(ring, b->rotated_prev[i]) < 0 ||
                cn_keyring_remove(ring, b->rotated[i]) < 0)
                cn_log_error("store_keyring", "reason=\"rollback of a failed rotation\"");
        }
    } else {
        for (size_t i = 0; i < b->nretired; i++) {
            if (cn_keyring_remove(ring, b->retired[i]) < 0) /* removed meanwhile */
                cn_log_debug("store_key_retired_twice", "key_id=%u", (unsigned)b->retired[i]);
        }
        if (b->nrotated > 0)
            cn__pass_request(b->s);
    }
    b->nrotated = 0;
    b->nretired = 0;
}
