/*
 * The node-wide cache of user and group records (declared in
 * node/node_internal.h). Send reads the recipient's and the sender's
 * device lists, a group Send the group and every member's device list,
 * FetchPrekeys and Auth a user: without the cache each is a synchronous
 * RocksDB Get, a CBOR decode and (encryption at rest) an AEAD open on the
 * loop thread, 999 of them per group Send to 1,000 devices.
 *
 * Layout: two tables (users by handle, groups by id), each split into
 * CN_USERCACHE_SHARDS shards; a shard is a mutex, a chained hash table
 * with a fixed number of buckets, an LRU list (a hit moves the entry to
 * the front, eviction takes the back) and an epoch. Keys are hashed with
 * SipHash (libsodium's crypto_shorthash) under a random key, so chosen
 * handles cannot pile into one chain. Limits are per shard (the node-wide
 * limit divided by the shard count). User entries are copied out under
 * the lock (at most 16 device ids); group entries are immutable and
 * reference counted, so a 1,000-member group is not copied per Send.
 *
 * Correctness. The rule: once the requester of a change of a user or group
 * record has been answered, or anything else about the change has become
 * visible (a DevicesChanged push, a kicked device, a LinkComplete), no
 * lookup returns the record as it was before the change. The protocol:
 *
 * 1. The store writer commits the change, then completes the op.
 * 2. The node invalidates the key, before the answer and before any other
 *    effect of the change: on the loop that completes the request (first
 *    thing in its completion, whether or not the connection is still
 *    there), or on the control thread after an admin command's op came
 *    back. Invalidating means, under the shard lock: epoch + 1, and the
 *    entry (if any) dropped.
 * 3. A lookup that misses takes the shard's epoch under the same lock,
 *    reads the store, and inserts what it read only if the epoch is still
 *    the same, checked under the lock at insert.
 *
 * Why that is enough: take a lookup L that starts after step 2 (after the
 * invalidation released the lock). If L misses, it reads the store after
 * the commit and sees the change. If L hits, the entry was inserted after
 * the invalidation dropped the old one, by a reader R whose epoch snapshot
 * equals the epoch at its insert; epochs only grow, so R's snapshot is at
 * least the value step 2 wrote, i.e. R took it after step 2, and R's store
 * read (which follows its snapshot) saw the change too. A reader that read
 * the store before the commit took its snapshot before step 2 as well: it
 * either inserted before step 2 (and step 2 drops its entry) or its insert
 * is refused. Between the commit and step 2 lookups may still return the
 * old record: nobody has been told about the change yet, so to everyone
 * the change simply commits a moment later.
 *
 * What has to invalidate (every op that writes the users or groups column
 * family, store/cn_store.h): CN_OP_REGISTER and CN_OP_LINK (the user's
 * device list), CN_OP_REVOKE (the device's user), CN_OP_USER_UPDATE with
 * CN_USER_SET_DISABLED (chatadmin user disable / enable), CN_OP_GROUP_CREATE
 * and CN_OP_GROUP_UPDATE. CN_OP_USER_UPDATE of only presence_hidden or
 * last_seen (node/handle_presence.c, node/presence.c) changes no cached
 * field and needs none; a new cached field must revisit that. The store's
 * re-seal pass rewrites records with the same content. No negative result
 * (an unknown user or group) is cached, so creating one needs no
 * invalidation either; register and group create invalidate anyway.
 *
 * The epoch is per shard, not per entry, so an invalidation also refuses
 * concurrent inserts of other keys of its shard: that costs those keys a
 * later miss, never a wrong answer (counted in inserts_refused).
 *
 * A safety net, not part of the argument: an entry is dropped
 * CN_USERCACHE_MAX_AGE_MS after it was cached, so a change whose
 * invalidation never ran is still seen within that time. The one known
 * way for that to happen: node/dispatch.c cannot allocate the message
 * that runs a request's completion on its loop (ENOMEM), so the
 * completion, its invalidation and its answer are all lost.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX (CN_HANDLE_MAX + 1)

/* The head of every entry: hash chain, LRU links and the key. */
typedef struct node {
    struct node *hnext;
    struct node *prev, *next; /* LRU: the shard's sentinel is both ends */
    uint64_t hash;
    uint64_t born_ms; /* when it was cached (coarse monotonic clock) */
    uint32_t cost;    /* 1 per user; members per group */
    uint8_t klen;
    uint8_t key[KEY_MAX];
} node_t;

typedef struct user_entry {
    node_t node;
    bool disabled;
    uint32_t ndevices;
    uint8_t devices[][CN_DEVICE_ID_LEN];
} user_entry_t;

typedef struct group_entry {
    node_t node;
    atomic_uint refs; /* one for the table while cached, one per reader */
    cn_cached_group_t g;
    char members[][CN_HANDLE_MAX + 1];
} group_entry_t;

/* A cache line of its own per shard: loops on other cores lock neighbours. */
typedef struct shard {
    _Alignas(64) uv_mutex_t lock;
    node_t **buckets;
    size_t mask;
    node_t lru; /* lru.next: most recently used */
    size_t entries, cost;
    uint64_t epoch;
    uint64_t hits, misses, evictions, invalidations, refused;
} shard_t;

typedef struct table {
    shard_t shards[CN_USERCACHE_SHARDS];
    size_t max_entries, max_cost; /* per shard */
    uint64_t max_age_ms;
    void (*drop)(node_t *n); /* the table lets go of an entry */
} table_t;

struct cn_usercache {
    uint8_t key[CN_TABLE_KEY_LEN];
    table_t users, groups;
};

static void user_drop(node_t *n)
{
    free(n);
}

static void group_drop(node_t *n)
{
    cn__usercache_group_release(&((group_entry_t *)n)->g);
}

/* ------------------------------------------------------------- shards */

static uint64_t hash_key(const cn_usercache_t *uc, const void *key, size_t len)
{
    return cn_table_hash(uc->key, key, len);
}

static shard_t *shard_of(table_t *t, uint64_t hash)
{
    return &t->shards[hash & (CN_USERCACHE_SHARDS - 1)];
}

static node_t **bucket_of(shard_t *sh, uint64_t hash)
{
    return &sh->buckets[(hash / CN_USERCACHE_SHARDS) & sh->mask];
}

static node_t *shard_find(shard_t *sh, uint64_t hash, const void *key, size_t klen)
{
    for (node_t *n = *bucket_of(sh, hash); n; n = n->hnext)
        if (n->hash == hash && n->klen == klen && memcmp(n->key, key, klen) == 0)
            return n;
    return NULL;
}

/* Milliseconds of a clock that only moves forward; a few ms coarse, cheap. */
static uint64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void lru_unlink(node_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static void lru_push_front(shard_t *sh, node_t *n)
{
    n->prev = &sh->lru;
    n->next = sh->lru.next;
    sh->lru.next->prev = n;
    sh->lru.next = n;
}

/* A hit: the entry becomes the most recently used. */
static void shard_touch(shard_t *sh, node_t *n)
{
    if (sh->lru.next == n)
        return;
    lru_unlink(n);
    lru_push_front(sh, n);
}

/* Takes n out of the shard (the caller drops it). */
static void shard_remove(shard_t *sh, node_t *n)
{
    node_t **pp = bucket_of(sh, n->hash);
    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    lru_unlink(n);
    sh->entries--;
    sh->cost -= n->cost;
}

static void shard_add(table_t *t, shard_t *sh, node_t *n)
{
    node_t **b = bucket_of(sh, n->hash);
    n->hnext = *b;
    *b = n;
    lru_push_front(sh, n);
    sh->entries++;
    sh->cost += n->cost;
    while (sh->entries > t->max_entries || sh->cost > t->max_cost) {
        node_t *victim = sh->lru.prev; /* never n: n alone fits (checked by the caller) */
        shard_remove(sh, victim);
        t->drop(victim);
        sh->evictions++;
    }
}

/* shard_find, but an entry older than the table's max age is dropped (a miss). */
static node_t *shard_lookup(table_t *t, shard_t *sh, uint64_t hash, const void *key, size_t klen)
{
    node_t *n = shard_find(sh, hash, key, klen);
    if (n && coarse_ms() - n->born_ms > t->max_age_ms) {
        shard_remove(sh, n);
        t->drop(n);
        sh->evictions++;
        n = NULL;
    }
    return n;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static int table_init(table_t *t, size_t max_entries, size_t max_cost, uint64_t max_age_ms,
                      void (*drop)(node_t *))
{
    t->max_age_ms = max_age_ms;
    t->max_entries = CN_MAX(max_entries / CN_USERCACHE_SHARDS, 1);
    t->max_cost = CN_MAX(max_cost / CN_USERCACHE_SHARDS, 1);
    t->drop = drop;
    size_t nb = pow2_at_least(t->max_entries);
    for (size_t i = 0; i < CN_USERCACHE_SHARDS; i++) {
        shard_t *sh = &t->shards[i];
        sh->buckets = calloc(nb, sizeof(node_t *));
        CN_ENSURE(sh->buckets != NULL, CN_ENOMEM);
        if (uv_mutex_init(&sh->lock) != 0) {
            free(sh->buckets);
            sh->buckets = NULL;
            return CN_ENOMEM;
        }
        sh->mask = nb - 1;
        sh->lru.next = sh->lru.prev = &sh->lru;
    }
    return CN_OK;
}

/* Drops every entry of the shard; lock held. */
static void shard_clear(table_t *t, shard_t *sh)
{
    while (sh->lru.next != &sh->lru) {
        node_t *n = sh->lru.next;
        shard_remove(sh, n);
        t->drop(n);
    }
}

static void table_dispose(table_t *t)
{
    for (size_t i = 0; i < CN_USERCACHE_SHARDS; i++) {
        shard_t *sh = &t->shards[i];
        if (!sh->buckets)
            continue;
        shard_clear(t, sh);
        uv_mutex_destroy(&sh->lock);
        free(sh->buckets);
    }
}

/* Invalidation (step 2 of the protocol at the top). */
static void table_invalidate(table_t *t, uint64_t hash, const void *key, size_t klen)
{
    shard_t *sh = shard_of(t, hash);
    uv_mutex_lock(&sh->lock);
    sh->epoch++;
    sh->invalidations++;
    node_t *n = shard_find(sh, hash, key, klen);
    if (n) {
        shard_remove(sh, n);
        t->drop(n);
    }
    uv_mutex_unlock(&sh->lock);
}

/* ---------------------------------------------------------- lifecycle */

cn_usercache_t *cn__usercache_new(const cn_usercache_limits_t *limits)
{
    cn_usercache_limits_t lim = limits ? *limits : (cn_usercache_limits_t){0};
    if (!lim.users)
        lim.users = CN_USERCACHE_USERS_MAX;
    if (!lim.groups)
        lim.groups = CN_USERCACHE_GROUPS_MAX;
    if (!lim.group_members)
        lim.group_members = CN_USERCACHE_GROUP_MEMBERS_MAX;
    if (!lim.max_age_ms)
        lim.max_age_ms = CN_USERCACHE_MAX_AGE_MS;
    size_t size = (sizeof(cn_usercache_t) + 63) / 64 * 64;
    cn_usercache_t *uc = aligned_alloc(_Alignof(cn_usercache_t), size);
    if (!uc)
        return NULL;
    memset(uc, 0, size);
    cn_table_key_new(uc->key);
    if (table_init(&uc->users, lim.users, lim.users, lim.max_age_ms, user_drop) < 0 ||
        table_init(&uc->groups, lim.groups, lim.group_members, lim.max_age_ms, group_drop) < 0) {
        cn__usercache_free(uc);
        return NULL;
    }
    return uc;
}

void cn__usercache_free(cn_usercache_t *uc)
{
    if (!uc)
        return;
    table_dispose(&uc->users);
    table_dispose(&uc->groups);
    free(uc);
}

void cn__usercache_stats(cn_usercache_t *uc, cn_usercache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < CN_USERCACHE_SHARDS; i++) {
        shard_t *u = &uc->users.shards[i], *g = &uc->groups.shards[i];
        uv_mutex_lock(&u->lock);
        out->user_hits += u->hits;
        out->user_misses += u->misses;
        out->user_evictions += u->evictions;
        out->user_entries += u->entries;
        out->invalidations += u->invalidations;
        out->inserts_refused += u->refused;
        uv_mutex_unlock(&u->lock);
        uv_mutex_lock(&g->lock);
        out->group_hits += g->hits;
        out->group_misses += g->misses;
        out->group_evictions += g->evictions;
        out->group_entries += g->entries;
        out->group_members += g->cost;
        out->invalidations += g->invalidations;
        out->inserts_refused += g->refused;
        uv_mutex_unlock(&g->lock);
    }
}

/* -------------------------------------------------------------- users */

int cn__usercache_user_find(cn_usercache_t *uc, const char *handle, cn_cached_user_t *out,
                            uint64_t *epoch)
{
    size_t klen = strnlen(handle, KEY_MAX);
    CN_ENSURE(klen < KEY_MAX, CN_EINVAL);
    uint64_t hash = hash_key(uc, handle, klen);
    shard_t *sh = shard_of(&uc->users, hash);
    int rc = CN_ENOTFOUND;
    uv_mutex_lock(&sh->lock);
    node_t *n = shard_lookup(&uc->users, sh, hash, handle, klen);
    if (n) {
        const user_entry_t *e = (const user_entry_t *)n;
        out->disabled = e->disabled;
        out->ndevices = e->ndevices;
        memcpy(out->devices, e->devices, (size_t)e->ndevices * CN_DEVICE_ID_LEN);
        shard_touch(sh, n);
        sh->hits++;
        rc = CN_OK;
    } else {
        *epoch = sh->epoch;
        sh->misses++;
    }
    uv_mutex_unlock(&sh->lock);
    return rc;
}

bool cn__usercache_user_insert(cn_usercache_t *uc, const char *handle, const cn_rec_user_t *u,
                               uint64_t epoch)
{
    size_t klen = strnlen(handle, KEY_MAX);
    if (klen >= KEY_MAX)
        return false;
    uint32_t nd = CN_MIN(u->ndevices, CN_DEVICES_HARD_MAX);
    user_entry_t *e = malloc(sizeof(*e) + (size_t)nd * CN_DEVICE_ID_LEN);
    if (!e)
        return false;
    e->node.hash = hash_key(uc, handle, klen);
    e->node.born_ms = coarse_ms();
    e->node.cost = 1;
    e->node.klen = (uint8_t)klen;
    memcpy(e->node.key, handle, klen);
    e->disabled = u->disabled;
    e->ndevices = nd;
    memcpy(e->devices, u->devices, (size_t)nd * CN_DEVICE_ID_LEN);
    shard_t *sh = shard_of(&uc->users, e->node.hash);
    bool inserted = false;
    uv_mutex_lock(&sh->lock);
    if (sh->epoch != epoch) {
        sh->refused++; /* an invalidation raced the load: the value may be stale */
    } else if (!shard_lookup(&uc->users, sh, e->node.hash, handle, klen)) {
        shard_add(&uc->users, sh, &e->node);
        inserted = true;
    } /* else another reader of the same epoch cached it first: as fresh */
    uv_mutex_unlock(&sh->lock);
    if (!inserted)
        free(e);
    return inserted;
}

void cn__usercache_user_invalidate(cn_usercache_t *uc, const char *handle)
{
    size_t klen = strnlen(handle, KEY_MAX);
    if (!uc || klen >= KEY_MAX)
        return;
    table_invalidate(&uc->users, hash_key(uc, handle, klen), handle, klen);
}

unsigned cn__usercache_user_shard(cn_usercache_t *uc, const char *handle)
{
    size_t klen = strnlen(handle, KEY_MAX);
    return (unsigned)(shard_of(&uc->users, hash_key(uc, handle, klen)) - uc->users.shards);
}

void cn__usercache_users_clear(cn_usercache_t *uc)
{
    if (!uc)
        return;
    for (size_t i = 0; i < CN_USERCACHE_SHARDS; i++) {
        shard_t *sh = &uc->users.shards[i];
        uv_mutex_lock(&sh->lock);
        sh->epoch++;
        sh->invalidations++;
        shard_clear(&uc->users, sh);
        uv_mutex_unlock(&sh->lock);
    }
}

/* ------------------------------------------------------------- groups */

int cn__usercache_group_find(cn_usercache_t *uc, const uint8_t id[CN_GROUP_ID_LEN],
                             const cn_cached_group_t **out, uint64_t *epoch)
{
    uint64_t hash = hash_key(uc, id, CN_GROUP_ID_LEN);
    shard_t *sh = shard_of(&uc->groups, hash);
    int rc = CN_ENOTFOUND;
    uv_mutex_lock(&sh->lock);
    node_t *n = shard_lookup(&uc->groups, sh, hash, id, CN_GROUP_ID_LEN);
    if (n) {
        group_entry_t *e = (group_entry_t *)n;
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        *out = &e->g;
        shard_touch(sh, n);
        sh->hits++;
        rc = CN_OK;
    } else {
        *epoch = sh->epoch;
        sh->misses++;
    }
    uv_mutex_unlock(&sh->lock);
    return rc;
}

static group_entry_t *group_entry_new(const uint8_t id[CN_GROUP_ID_LEN], uint64_t hash,
                                      const cn_rec_group_t *g)
{
    uint32_t n = CN_MIN(g->n, CN_GROUP_MEMBERS_HARD_MAX);
    group_entry_t *e = malloc(sizeof(*e) + (size_t)n * (CN_HANDLE_MAX + 1));
    if (!e)
        return NULL;
    e->node.hash = hash;
    e->node.born_ms = coarse_ms();
    e->node.cost = CN_MAX(n, 1);
    e->node.klen = CN_GROUP_ID_LEN;
    memcpy(e->node.key, id, CN_GROUP_ID_LEN);
    atomic_init(&e->refs, 1); /* the caller's */
    for (uint32_t i = 0; i < n; i++)
        memcpy(e->members[i], g->members[i].handle, CN_HANDLE_MAX + 1);
    e->g.version = g->version;
    e->g.n = n;
    e->g.members = (const char(*)[CN_HANDLE_MAX + 1]) e->members;
    return e;
}

int cn__usercache_group_insert(cn_usercache_t *uc, const uint8_t id[CN_GROUP_ID_LEN],
                               const cn_rec_group_t *g, uint64_t epoch,
                               const cn_cached_group_t **out)
{
    group_entry_t *e = group_entry_new(id, hash_key(uc, id, CN_GROUP_ID_LEN), g);
    CN_ENSURE(e != NULL, CN_ENOMEM);
    *out = &e->g;
    shard_t *sh = shard_of(&uc->groups, e->node.hash);
    uv_mutex_lock(&sh->lock);
    if (sh->epoch != epoch)
        sh->refused++;
    else if (e->node.cost <= uc->groups.max_cost &&
             !shard_lookup(&uc->groups, sh, e->node.hash, id, CN_GROUP_ID_LEN)) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); /* the table's */
        shard_add(&uc->groups, sh, &e->node);
    }
    uv_mutex_unlock(&sh->lock);
    return CN_OK;
}

void cn__usercache_group_release(const cn_cached_group_t *g)
{
    if (!g)
        return;
    /* The entry is mutable (its count); readers only see the const view. */
    group_entry_t *e = (group_entry_t *)((uintptr_t)g - offsetof(group_entry_t, g));
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

void cn__usercache_group_invalidate(cn_usercache_t *uc, const uint8_t id[CN_GROUP_ID_LEN])
{
    if (uc)
        table_invalidate(&uc->groups, hash_key(uc, id, CN_GROUP_ID_LEN), id, CN_GROUP_ID_LEN);
}

bool cn__cached_group_has(const cn_cached_group_t *g, const char *handle)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (strcmp(g->members[i], handle) == 0)
            return true;
    return false;
}

/* ----------------------------------------------- reads through the cache */

static void user_view(const cn_rec_user_t *u, cn_cached_user_t *out)
{
    out->disabled = u->disabled;
    out->ndevices = CN_MIN(u->ndevices, CN_DEVICES_HARD_MAX);
    memcpy(out->devices, u->devices, (size_t)out->ndevices * CN_DEVICE_ID_LEN);
}

int cn__user_get(cn_server_t *s, const char *handle, cn_cached_user_t *out)
{
    uint64_t epoch;
    int rc = cn__usercache_user_find(s->usercache, handle, out, &epoch);
    if (rc != CN_ENOTFOUND)
        return rc;
    cn_rec_user_t u;
    CN_TRY(cn_store_user_get(s->store, handle, &u));
    (void)cn__usercache_user_insert(s->usercache, handle, &u, epoch);
    user_view(&u, out);
    return CN_OK;
}

int cn__group_get(cn_server_t *s, const uint8_t id[CN_GROUP_ID_LEN], const cn_cached_group_t **out)
{
    uint64_t epoch;
    int rc = cn__usercache_group_find(s->usercache, id, out, &epoch);
    if (rc != CN_ENOTFOUND)
        return rc;
    cn_rec_group_t *g = malloc(sizeof(*g)); /* ≈ 34 KiB: not on a loop's stack */
    CN_ENSURE(g != NULL, CN_ENOMEM);
    rc = cn_store_group_get(s->store, id, g);
    if (rc == CN_OK)
        rc = cn__usercache_group_insert(s->usercache, id, g, epoch, out);
    free(g);
    return rc;
}
