/*
 * The node's user and group cache (node/usercache.c): hits and misses,
 * LRU eviction within a stripe and by group size, the stale-insert race
 * closed by the epoch, group references outliving an invalidation,
 * readers and a writer on three threads (run it under the tsan preset
 * too), and reads through a real store around a link and a revoke.
 */
#define _XOPEN_SOURCE 700 /* nftw */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "node/node_internal.h"

#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

static cn_rec_user_t user_with(uint32_t ndevices, uint8_t fill)
{
    cn_rec_user_t u;
    memset(&u, 0, sizeof(u));
    u.ndevices = ndevices;
    for (uint32_t i = 0; i < ndevices; i++)
        memset(u.devices[i], fill + (uint8_t)i, CN_DEVICE_ID_LEN);
    return u;
}

static void test_miss_then_hit(void **state)
{
    (void)state;
    cn_usercache_t *uc = cn__usercache_new(NULL);
    assert_non_null(uc);
    cn_cached_user_t got;
    uint64_t epoch = 99;
    assert_int_equal(cn__usercache_user_find(uc, "alice", &got, &epoch), CN_ENOTFOUND);
    cn_rec_user_t u = user_with(3, 0x10);
    u.disabled = true;
    assert_true(cn__usercache_user_insert(uc, "alice", &u, epoch));
    memset(&got, 0, sizeof(got));
    assert_int_equal(cn__usercache_user_find(uc, "alice", &got, &epoch), CN_OK);
    assert_true(got.disabled);
    assert_int_equal(got.ndevices, 3);
    assert_memory_equal(got.devices, u.devices, 3 * CN_DEVICE_ID_LEN);
    /* Another handle (a prefix of it, too) is its own entry. */
    assert_int_equal(cn__usercache_user_find(uc, "alic", &got, &epoch), CN_ENOTFOUND);
    /* A handle longer than any valid one is refused, not truncated. */
    assert_int_equal(cn__usercache_user_find(uc, "a23456789012345678901234567890123", &got, &epoch),
                     CN_EINVAL);
    cn_usercache_stats_t st;
    cn__usercache_stats(uc, &st);
    assert_int_equal(st.user_hits, 1);
    assert_int_equal(st.user_misses, 2);
    assert_int_equal(st.user_entries, 1);
    assert_int_equal(st.user_evictions, 0);
    /* Invalidation drops it; the next lookup misses. */
    cn__usercache_user_invalidate(uc, "alice");
    assert_int_equal(cn__usercache_user_find(uc, "alice", &got, &epoch), CN_ENOTFOUND);
    cn__usercache_stats(uc, &st);
    assert_int_equal(st.user_entries, 0);
    assert_int_equal(st.invalidations, 1);
    cn__usercache_free(uc);
}

/* The safety net: an entry is reloaded once it is older than max_age_ms. */
static void test_max_age(void **state)
{
    (void)state;
    cn_usercache_limits_t lim = {.max_age_ms = 30};
    cn_usercache_t *uc = cn__usercache_new(&lim);
    cn_cached_user_t got;
    uint64_t e;
    cn_rec_user_t u = user_with(1, 3);
    assert_int_equal(cn__usercache_user_find(uc, "dave", &got, &e), CN_ENOTFOUND);
    assert_true(cn__usercache_user_insert(uc, "dave", &u, e));
    uint8_t id[CN_GROUP_ID_LEN] = {9};
    cn_rec_group_t *rec = calloc(1, sizeof(*rec));
    assert_non_null(rec);
    rec->n = 1;
    snprintf(rec->members[0].handle, sizeof(rec->members[0].handle), "dave");
    const cn_cached_group_t *g;
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    assert_int_equal(cn__usercache_group_insert(uc, id, rec, e, &g), CN_OK);
    cn__usercache_group_release(g);
    assert_int_equal(cn__usercache_user_find(uc, "dave", &got, &e), CN_OK);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_OK);
    cn__usercache_group_release(g);
    struct timespec pause = {0, 100 * 1000000};
    nanosleep(&pause, NULL);
    assert_int_equal(cn__usercache_user_find(uc, "dave", &got, &e), CN_ENOTFOUND);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    cn_usercache_stats_t st;
    cn__usercache_stats(uc, &st);
    assert_int_equal(st.user_evictions, 1);
    assert_int_equal(st.group_evictions, 1);
    assert_int_equal(st.user_entries + st.group_entries, 0);
    free(rec);
    cn__usercache_free(uc);
}

/* Finds n handles that fall in the same stripe as the first one. */
static void same_stripe(cn_usercache_t *uc, char out[][CN_HANDLE_MAX + 1], size_t n)
{
    size_t k = 0;
    unsigned want = 0;
    for (int i = 0; k < n && i < 100000; i++) {
        char h[CN_HANDLE_MAX + 1];
        snprintf(h, sizeof(h), "user%d", i);
        unsigned s = cn__usercache_user_shard(uc, h);
        if (k == 0)
            want = s;
        if (s == want)
            memcpy(out[k++], h, sizeof(h));
    }
    assert_int_equal(k, n);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    /* Two users per stripe. */
    cn_usercache_limits_t lim = {.users = 2 * CN_USERCACHE_SHARDS};
    cn_usercache_t *uc = cn__usercache_new(&lim);
    assert_non_null(uc);
    char h[3][CN_HANDLE_MAX + 1];
    same_stripe(uc, h, 3);
    cn_cached_user_t got;
    uint64_t e;
    cn_rec_user_t u = user_with(1, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cn__usercache_user_find(uc, h[i], &got, &e), CN_ENOTFOUND);
        assert_true(cn__usercache_user_insert(uc, h[i], &u, e));
    }
    /* h[0] is used again, so h[1] is the least recently used... */
    assert_int_equal(cn__usercache_user_find(uc, h[0], &got, &e), CN_OK);
    assert_int_equal(cn__usercache_user_find(uc, h[2], &got, &e), CN_ENOTFOUND);
    assert_true(cn__usercache_user_insert(uc, h[2], &u, e));
    /* ...and the one that goes. */
    assert_int_equal(cn__usercache_user_find(uc, h[1], &got, &e), CN_ENOTFOUND);
    assert_int_equal(cn__usercache_user_find(uc, h[0], &got, &e), CN_OK);
    assert_int_equal(cn__usercache_user_find(uc, h[2], &got, &e), CN_OK);
    cn_usercache_stats_t st;
    cn__usercache_stats(uc, &st);
    assert_int_equal(st.user_evictions, 1);
    assert_int_equal(st.user_entries, 2);

    /* Node-wide: never more than the limit, whatever comes in. */
    for (int i = 0; i < 1000; i++) {
        char x[CN_HANDLE_MAX + 1];
        snprintf(x, sizeof(x), "many%d", i);
        if (cn__usercache_user_find(uc, x, &got, &e) == CN_ENOTFOUND)
            (void)cn__usercache_user_insert(uc, x, &u, e);
    }
    cn__usercache_stats(uc, &st);
    assert_true(st.user_entries <= lim.users);
    assert_int_equal(st.user_evictions, 1 + 1000 + 2 - st.user_entries);
    cn__usercache_free(uc);
}

/*
 * The race of node/usercache.c: a reader misses, reads the store (the old
 * record), a change commits and is invalidated, and only then does the
 * reader try to cache what it read. The insert must be refused.
 */
static void test_stale_insert_refused(void **state)
{
    (void)state;
    cn_usercache_t *uc = cn__usercache_new(NULL);
    cn_cached_user_t got;
    uint64_t e, e2;
    cn_rec_user_t before = user_with(1, 0xa0);
    assert_int_equal(cn__usercache_user_find(uc, "bob", &got, &e), CN_ENOTFOUND);
    /* ...the reader holds `before`; a link commits and is invalidated: */
    cn__usercache_user_invalidate(uc, "bob");
    assert_false(cn__usercache_user_insert(uc, "bob", &before, e));
    assert_int_equal(cn__usercache_user_find(uc, "bob", &got, &e2), CN_ENOTFOUND);
    /* A reader that starts after the invalidation caches what it read. */
    cn_rec_user_t after = user_with(2, 0xa0);
    assert_true(cn__usercache_user_insert(uc, "bob", &after, e2));
    assert_int_equal(cn__usercache_user_find(uc, "bob", &got, &e2), CN_OK);
    assert_int_equal(got.ndevices, 2);
    /* The same with the old value cached before the change: dropped. */
    cn__usercache_user_invalidate(uc, "bob");
    assert_int_equal(cn__usercache_user_find(uc, "bob", &got, &e2), CN_ENOTFOUND);
    /* An invalidation of another handle of the stripe refuses too (a later miss only). */
    char h[2][CN_HANDLE_MAX + 1];
    same_stripe(uc, h, 2);
    assert_int_equal(cn__usercache_user_find(uc, h[0], &got, &e), CN_ENOTFOUND);
    cn__usercache_user_invalidate(uc, h[1]);
    assert_false(cn__usercache_user_insert(uc, h[0], &after, e));
    cn_usercache_stats_t st;
    cn__usercache_stats(uc, &st);
    assert_int_equal(st.inserts_refused, 2);
    /* Clearing every user refuses every insert loaded before it. */
    assert_int_equal(cn__usercache_user_find(uc, "carol", &got, &e), CN_ENOTFOUND);
    cn__usercache_users_clear(uc);
    assert_false(cn__usercache_user_insert(uc, "carol", &after, e));
    cn__usercache_free(uc);
}

static cn_rec_group_t *group_of(uint32_t n, uint64_t version)
{
    cn_rec_group_t *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    g->version = version;
    g->n = n;
    for (uint32_t i = 0; i < n; i++)
        snprintf(g->members[i].handle, sizeof(g->members[i].handle), "member%u", i);
    return g;
}

static void test_groups(void **state)
{
    (void)state;
    cn_usercache_limits_t lim = {.group_members = 1000 * CN_USERCACHE_SHARDS};
    cn_usercache_t *uc = cn__usercache_new(&lim);
    uint8_t id[CN_GROUP_ID_LEN] = {7};
    const cn_cached_group_t *g = NULL, *g2 = NULL;
    uint64_t e;
    cn_rec_group_t *rec = group_of(1000, 3);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    assert_int_equal(cn__usercache_group_insert(uc, id, rec, e, &g), CN_OK);
    assert_int_equal(g->n, 1000);
    assert_int_equal(g->version, 3);
    assert_string_equal(g->members[999], "member999");
    assert_true(cn__cached_group_has(g, "member0"));
    assert_false(cn__cached_group_has(g, "member1000"));
    assert_int_equal(cn__usercache_group_find(uc, id, &g2, &e), CN_OK);
    assert_ptr_equal(g, g2);
    /* Invalidated while two readers hold it: their view stays valid. */
    cn__usercache_group_invalidate(uc, id);
    assert_string_equal(g->members[500], "member500");
    cn__usercache_group_release(g2);
    assert_string_equal(g->members[1], "member1");
    cn__usercache_group_release(g);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    /* A stale load is handed to its reader but not cached. */
    cn__usercache_group_invalidate(uc, id);
    assert_int_equal(cn__usercache_group_insert(uc, id, rec, e, &g), CN_OK);
    assert_int_equal(g->n, 1000);
    cn__usercache_group_release(g);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    /* Members count against the limit: a second 1,000-member group in
     * the same stripe pushes the first one out. */
    assert_int_equal(cn__usercache_group_insert(uc, id, rec, e, &g), CN_OK);
    cn__usercache_group_release(g);
    uint8_t other[CN_GROUP_ID_LEN] = {8};
    cn_usercache_stats_t st;
    for (int i = 0; i < 256; i++) {
        other[1] = (uint8_t)i;
        if (cn__usercache_group_find(uc, other, &g, &e) == CN_OK) {
            cn__usercache_group_release(g);
            continue;
        }
        assert_int_equal(cn__usercache_group_insert(uc, other, rec, e, &g), CN_OK);
        cn__usercache_group_release(g);
    }
    cn__usercache_stats(uc, &st);
    assert_true(st.group_members <= lim.group_members);
    assert_true(st.group_evictions > 0);
    assert_int_equal(st.group_entries * 1000, st.group_members);
    /* A group larger than a stripe may hold is served, never cached. */
    cn__usercache_free(uc);
    lim.group_members = 500 * CN_USERCACHE_SHARDS;
    uc = cn__usercache_new(&lim);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    assert_int_equal(cn__usercache_group_insert(uc, id, rec, e, &g), CN_OK);
    assert_int_equal(g->n, 1000);
    cn__usercache_group_release(g);
    assert_int_equal(cn__usercache_group_find(uc, id, &g, &e), CN_ENOTFOUND);
    free(rec);
    cn__usercache_free(uc);
}

/* ------------------------------------------------- threads: the invariant */

/*
 * A model of the node: a "store" of NUSERS records whose device count is
 * their version (mod 16, plus the version itself in the first device id),
 * a writer that commits a new version, invalidates and only then
 * "answers" (publishes the version as answered), and readers that look
 * up through the cache and must never see a version older than the one
 * answered before their lookup began.
 */
#define NUSERS   4
#define ROUNDS   20000
#define NREADERS 2

typedef struct model {
    cn_usercache_t *uc;
    pthread_mutex_t store_lock;
    uint32_t version[NUSERS];          /* the store, under store_lock */
    _Atomic uint32_t answered[NUSERS]; /* changes answered so far */
    atomic_bool stop;
    atomic_uint violations;
} model_t;

static const char *model_handle(int i)
{
    static const char *const h[NUSERS] = {"ann", "ben", "cat", "dan"};
    return h[i];
}

static uint32_t model_load(model_t *m, int i, cn_rec_user_t *u)
{
    pthread_mutex_lock(&m->store_lock);
    uint32_t v = m->version[i];
    pthread_mutex_unlock(&m->store_lock);
    *u = user_with(1 + v % CN_DEVICES_HARD_MAX, 0);
    memcpy(u->devices[0], &v, sizeof(v));
    return v;
}

static void *model_reader(void *arg)
{
    model_t *m = arg;
    for (unsigned k = 0; !atomic_load(&m->stop); k++) {
        int i = (int)(k % NUSERS);
        uint32_t floor = atomic_load(&m->answered[i]);
        cn_cached_user_t got;
        uint64_t e;
        uint32_t v;
        if (cn__usercache_user_find(m->uc, model_handle(i), &got, &e) == CN_OK) {
            memcpy(&v, got.devices[0], sizeof(v));
        } else {
            cn_rec_user_t u;
            v = model_load(m, i, &u);
            sched_yield(); /* widen the window in which a change can commit */
            (void)cn__usercache_user_insert(m->uc, model_handle(i), &u, e);
        }
        if (v < floor)
            atomic_fetch_add(&m->violations, 1);
    }
    return NULL;
}

static void test_threads_never_stale(void **state)
{
    (void)state;
    model_t m;
    memset(&m, 0, sizeof(m));
    m.uc = cn__usercache_new(NULL);
    pthread_mutex_init(&m.store_lock, NULL);
    pthread_t readers[NREADERS];
    for (int r = 0; r < NREADERS; r++)
        assert_int_equal(pthread_create(&readers[r], NULL, model_reader, &m), 0);
    for (uint32_t k = 0; k < ROUNDS; k++) {
        int i = (int)(k % NUSERS);
        pthread_mutex_lock(&m.store_lock); /* the writer commits */
        uint32_t v = ++m.version[i];
        pthread_mutex_unlock(&m.store_lock);
        cn__usercache_user_invalidate(m.uc, model_handle(i)); /* step 2 */
        atomic_store(&m.answered[i], v);                      /* the answer */
        if (k % 8 == 0)
            sched_yield(); /* let readers cache between changes */
    }
    atomic_store(&m.stop, true);
    for (int r = 0; r < NREADERS; r++)
        pthread_join(readers[r], NULL);
    assert_int_equal(atomic_load(&m.violations), 0);
    cn_usercache_stats_t st;
    cn__usercache_stats(m.uc, &st);
    assert_int_equal(st.invalidations, ROUNDS);
    cn__usercache_free(m.uc);
    pthread_mutex_destroy(&m.store_lock);
}

/* Groups: readers take and drop references while a writer invalidates. */
static void *group_reader(void *arg)
{
    model_t *m = arg;
    uint8_t id[CN_GROUP_ID_LEN] = {1};
    cn_rec_group_t *rec = group_of(50, 1);
    while (!atomic_load(&m->stop)) {
        const cn_cached_group_t *g;
        uint64_t e;
        if (cn__usercache_group_find(m->uc, id, &g, &e) != CN_OK &&
            cn__usercache_group_insert(m->uc, id, rec, e, &g) != CN_OK)
            continue;
        if (!cn__cached_group_has(g, "member49"))
            atomic_fetch_add(&m->violations, 1);
        cn__usercache_group_release(g);
    }
    free(rec);
    return NULL;
}

static void test_threads_group_refs(void **state)
{
    (void)state;
    model_t m;
    memset(&m, 0, sizeof(m));
    m.uc = cn__usercache_new(NULL);
    pthread_t readers[NREADERS];
    for (int r = 0; r < NREADERS; r++)
        assert_int_equal(pthread_create(&readers[r], NULL, group_reader, &m), 0);
    uint8_t id[CN_GROUP_ID_LEN] = {1};
    for (int k = 0; k < ROUNDS; k++)
        cn__usercache_group_invalidate(m.uc, id);
    atomic_store(&m.stop, true);
    for (int r = 0; r < NREADERS; r++)
        pthread_join(readers[r], NULL);
    assert_int_equal(atomic_load(&m.violations), 0);
    cn__usercache_free(m.uc);
}

/* ------------------------------------------------------- through a store */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} waiter_t;

static void wake(cn_store_op_t *op)
{
    waiter_t *w = op->ctx;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int run_op(cn_store_t *s, cn_store_op_t *op)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    op->done = wake;
    op->ctx = &w;
    assert_int_equal(cn_store_submit(s, op), CN_OK);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    return op->result;
}

static int account_op(cn_store_t *s, enum cn_store_op_type type, const char *handle, uint8_t dev)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = type;
    snprintf(op.u.reg.handle, sizeof(op.u.reg.handle), "%s", handle);
    memset(op.u.reg.device_id, dev, CN_DEVICE_ID_LEN);
    snprintf(op.u.reg.device.name, sizeof(op.u.reg.device.name), "dev");
    return run_op(s, &op);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void test_through_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/cn_usercache_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    cn_store_options_t o;
    cn_store_options_default(&o);
    o.path = dir;
    o.sync = CN_SYNC_NONE;
    cn_server_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(cn_store_open(&o, &s.store), CN_OK);
    s.usercache = cn__usercache_new(NULL);
    assert_int_equal(account_op(s.store, CN_OP_REGISTER, "alice", 1), CN_OK);

    cn_cached_user_t u;
    assert_int_equal(cn__user_get(&s, "nobody", &u), CN_ENOTFOUND);
    assert_int_equal(cn__user_get(&s, "nobody", &u), CN_ENOTFOUND); /* not cached */
    assert_int_equal(cn__user_get(&s, "Alice", &u), CN_EINVAL);
    assert_int_equal(cn__user_get(&s, "alice", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);
    assert_int_equal(cn__user_get(&s, "alice", &u), CN_OK);
    cn_usercache_stats_t st;
    cn__usercache_stats(s.usercache, &st);
    assert_int_equal(st.user_hits, 1);
    assert_int_equal(st.user_entries, 1);

    /* A link: until its invalidation the cache still has one device
     * (which is why every change invalidates before it is answered)... */
    assert_int_equal(account_op(s.store, CN_OP_LINK, "alice", 2), CN_OK);
    assert_int_equal(cn__user_get(&s, "alice", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);
    /* ...and after it, both. */
    cn__usercache_user_invalidate(s.usercache, "alice");
    assert_int_equal(cn__user_get(&s, "alice", &u), CN_OK);
    assert_int_equal(u.ndevices, 2);
    uint8_t two[CN_DEVICE_ID_LEN];
    memset(two, 2, sizeof(two));
    assert_memory_equal(u.devices[1], two, CN_DEVICE_ID_LEN);

    /* A revoke, the same way. */
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_REVOKE;
    memcpy(op.u.revoke.device_id, two, CN_DEVICE_ID_LEN);
    assert_int_equal(run_op(s.store, &op), CN_OK);
    cn__usercache_user_invalidate(s.usercache, "alice");
    assert_int_equal(cn__user_get(&s, "alice", &u), CN_OK);
    assert_int_equal(u.ndevices, 1);

    /* Disable (chatadmin user disable). */
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_USER_UPDATE;
    snprintf(op.u.user_update.handle, sizeof(op.u.user_update.handle), "alice");
    op.u.user_update.mask = CN_USER_SET_DISABLED;
    op.u.user_update.disabled = true;
    assert_int_equal(run_op(s.store, &op), CN_OK);
    cn__usercache_user_invalidate(s.usercache, "alice");
    assert_int_equal(cn__user_get(&s, "alice", &u), CN_OK);
    assert_true(u.disabled);

    /* Groups: create, read through the cache, update, invalidate. */
    assert_int_equal(account_op(s.store, CN_OP_REGISTER, "bobby", 3), CN_OK);
    uint8_t gid[CN_GROUP_ID_LEN] = {0x42};
    const cn_cached_group_t *g;
    assert_int_equal(cn__group_get(&s, gid, &g), CN_ENOTFOUND);
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_GROUP_CREATE;
    memcpy(op.u.group_create.group_id, gid, sizeof(gid));
    snprintf(op.u.group_create.creator, sizeof(op.u.group_create.creator), "bobby");
    assert_int_equal(run_op(s.store, &op), CN_OK);
    assert_int_equal(cn__group_get(&s, gid, &g), CN_OK);
    assert_int_equal(g->n, 1);
    assert_int_equal(g->version, 1);
    cn__usercache_group_release(g);
    assert_int_equal(cn__group_get(&s, gid, &g), CN_OK); /* a hit */
    cn__usercache_group_release(g);
    cn__usercache_stats(s.usercache, &st);
    assert_int_equal(st.group_hits, 1);

    cn__usercache_free(s.usercache);
    cn_store_free(s.store);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    assert_int_equal(cn_crypto_init(), CN_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_max_age),
        cmocka_unit_test(test_stale_insert_refused),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_threads_never_stale),
        cmocka_unit_test(test_threads_group_refs),
        cmocka_unit_test(test_through_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
