/*
 * Presence (DESIGN section 4): the one thing the node computes itself.
 * A user is online while at least one of its devices is authenticated.
 * Subscribers (connections that sent Subscribe) get a PresenceEvent when a
 * watched user comes online or goes offline, with last_seen. A user who
 * hides presence is reported offline with last_seen 0, always.
 *
 * One mutex-protected table keyed by handle, shared by every loop; events
 * reach a subscriber through its loop's inbox like any other push.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct watcher {
    unsigned loop;
    uint64_t conn_id;
} watcher_t;

typedef struct entry {
    struct entry *next;
    char handle[CN_HANDLE_MAX + 1];
    uint32_t online; /* authenticated devices */
    uint64_t last_seen;
    bool hidden;
    bool hidden_known; /* hidden was read from the store */
    watcher_t *watchers;
    uint32_t nwatchers, capwatchers;
} entry_t;

#define BUCKETS 4096

struct cn_presence {
    uv_mutex_t lock;
    entry_t *buckets[BUCKETS];
};

static size_t hash_handle(const char *h)
{
    size_t x = 5381;
    while (*h)
        x = x * 33 + (unsigned char)*h++;
    return x % BUCKETS;
}

cn_presence_t *cn__presence_new(void)
{
    cn_presence_t *p = calloc(1, sizeof(*p));
    if (p && uv_mutex_init(&p->lock) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void cn__presence_free(cn_presence_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        for (entry_t *e = p->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->watchers);
            free(e);
        }
    }
    uv_mutex_destroy(&p->lock);
    free(p);
}

/* Finds (or creates) the entry of handle; lock held. */
static entry_t *entry_get(cn_presence_t *p, const char *handle, bool create)
{
    entry_t **pp = &p->buckets[hash_handle(handle)];
    for (entry_t *e = *pp; e; e = e->next)
        if (strcmp(e->handle, handle) == 0)
            return e;
    if (!create)
        return NULL;
    entry_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->handle, sizeof(e->handle), "%s", handle);
    e->next = *pp;
    *pp = e;
    return e;
}

/* Drops an entry that carries nothing any more; lock held. */
static void entry_gc(cn_presence_t *p, entry_t *e)
{
    if (e->online || e->nwatchers)
        return;
    entry_t **pp = &p->buckets[hash_handle(e->handle)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    free(e->watchers);
    free(e);
}

static void fill_event(Chat__PresenceEvent *ev, const entry_t *e)
{
    chat__presence_event__init(ev);
    ev->handle = cn__pb_str(e->handle);
    ev->online = !e->hidden && e->online > 0;
    ev->last_seen = e->hidden ? 0 : e->last_seen;
}

static void post_event(cn_server_t *s, const entry_t *e, const watcher_t *w)
{
    Chat__PresenceEvent ev;
    fill_event(&ev, e);
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_PRESENCE;
    f.presence = &ev;
    cn__push_to_conn(s, w->loop, w->conn_id, &f);
}

static void notify_all(cn_server_t *s, const entry_t *e)
{
    for (uint32_t i = 0; i < e->nwatchers; i++)
        post_event(s, e, &e->watchers[i]);
}

/* Reads the persisted hidden flag and last_seen once per entry; lock held. */
static void load_user(cn_server_t *s, entry_t *e)
{
    if (e->hidden_known)
        return;
    cn_rec_user_t u;
    if (cn_store_user_get(s->store, e->handle, &u) == CN_OK) {
        e->hidden = u.presence_hidden;
        if (!e->last_seen)
            e->last_seen = u.last_seen;
    }
    e->hidden_known = true;
}

void cn__presence_online(cn_server_t *s, const char *handle)
{
    cn_presence_t *p = s->presence;
    uv_mutex_lock(&p->lock);
    entry_t *e = entry_get(p, handle, true);
    if (e && e->online++ == 0) {
        load_user(s, e);
        e->last_seen = cn_now_ms();
        if (!e->hidden)
            notify_all(s, e);
    }
    uv_mutex_unlock(&p->lock);
}

/* Remembers last_seen in the user record so it survives restarts. */
static void persist_last_seen(cn_server_t *s, const char *handle, uint64_t t)
{
    cn_store_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->type = CN_OP_USER_UPDATE;
    op->lazy = true; /* nobody waits: no fsync of its own */
    op->done = cn__free_op;
    snprintf(op->u.user_update.handle, sizeof(op->u.user_update.handle), "%s", handle);
    op->u.user_update.mask = CN_USER_SET_LAST_SEEN;
    op->u.user_update.last_seen = t;
    if (cn_store_submit(s->store, op) < 0)
        free(op);
}

void cn__presence_offline(cn_server_t *s, const char *handle)
{
    cn_presence_t *p = s->presence;
    uint64_t now = cn_now_ms();
    bool gone = false;
    uv_mutex_lock(&p->lock);
    entry_t *e = entry_get(p, handle, false);
    if (e && e->online > 0 && --e->online == 0) {
        gone = true;
        e->last_seen = now;
        if (!e->hidden)
            notify_all(s, e);
        entry_gc(p, e);
    }
    uv_mutex_unlock(&p->lock);
    if (gone)
        persist_last_seen(s, handle, now);
}

int cn__presence_subscribe(cn_server_t *s, cn_conn_t *c, const char *handle)
{
    cn_presence_t *p = s->presence;
    int rc = CN_OK;
    uv_mutex_lock(&p->lock);
    entry_t *e = entry_get(p, handle, true);
    CN_ENSURE_OUT(e != NULL, CN_ENOMEM);
    for (uint32_t i = 0; i < e->nwatchers; i++)
        if (e->watchers[i].conn_id == c->id)
            goto snapshot; /* already watching: just report the state */
    if (e->nwatchers == e->capwatchers) {
        uint32_t cap = e->capwatchers ? e->capwatchers * 2 : 4;
        watcher_t *w = realloc(e->watchers, cap * sizeof(*w));
        CN_ENSURE_OUT(w != NULL, CN_ENOMEM);
        e->watchers = w;
        e->capwatchers = cap;
    }
    e->watchers[e->nwatchers++] = (watcher_t){c->loop->index, c->id};
snapshot:
    load_user(s, e);
    post_event(s, e, &(watcher_t){c->loop->index, c->id});
out:
    uv_mutex_unlock(&p->lock);
    return rc;
}

void cn__presence_unsubscribe(cn_server_t *s, cn_conn_t *c, const char *handle)
{
    cn_presence_t *p = s->presence;
    uv_mutex_lock(&p->lock);
    entry_t *e = entry_get(p, handle, false);
    for (uint32_t i = 0; e && i < e->nwatchers; i++) {
        if (e->watchers[i].conn_id == c->id) {
            e->watchers[i] = e->watchers[--e->nwatchers];
            entry_gc(p, e);
            break;
        }
    }
    uv_mutex_unlock(&p->lock);
}

void cn__presence_set_hidden(cn_server_t *s, const char *handle, bool hidden)
{
    cn_presence_t *p = s->presence;
    uv_mutex_lock(&p->lock);
    entry_t *e = entry_get(p, handle, false);
    if (e && e->hidden != hidden) {
        e->hidden = hidden;
        e->hidden_known = true;
        notify_all(s, e); /* hiding reads as going offline, unhiding as coming back */
    } else if (e) {
        e->hidden_known = true;
    }
    uv_mutex_unlock(&p->lock);
}
