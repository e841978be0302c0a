/*
 * The per-user history archive (docs/E2E.md, "History"). Two keys, shared
 * by every device of the user and by nobody else: the history key makes
 * the opaque thread tags and entry ids (HMAC-SHA256), the archive key
 * seals the entries (XChaCha20-Poly1305, cn_seal_blob). The first device
 * makes them (HOME/history.keys, sealed); a linked device gets them from
 * the device that approved it, in an E2E message of type keys, and waits
 * for them (HOME/keys.wait) before it archives anything.
 *
 *   thread tag = HMAC(history key, "chatnode thread v1\0" ‖ 'p' ‖ handle)
 *             or HMAC(history key, "chatnode thread v1\0" ‖ 'g' ‖ group id)
 *   entry id   = HMAC(history key, "chatnode entry v1\0" ‖ sender device
 *                ‖ message id)[0..16)
 *   entry      = sealed content map of the message with from (20), peer (8)
 *                or group id (7) set, label "chatnode history v1"
 *
 * Every device archives what it sends and receives (sync copies included)
 * under the node's server_time; the ids and times agree, so the node
 * stores each entry once. Appends go through the outbox (durable, retried).
 */
#include "client/client_int.h"

#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEYS_LABEL    "history-keys"
#define ENTRY_LABEL   "chatnode history v1"
#define THREAD_CTX    "chatnode thread v1"
#define ENTRY_CTX     "chatnode entry v1"
#define KEYS_LEN      (2 * CN_CLIENT_HISTORY_KEY_LEN)
#define HISTORY_PAGES 64 /* pages one history call reads at most */

static int keys_path(const cn_client_t *c, const char *name, char *path)
{
    int n = snprintf(path, CN__PATH_MAX, "%s/%s", c->home, name);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    return CN_OK;
}

static int keys_store(cn_client_t *c, const uint8_t *hk, const uint8_t *ak)
{
    char path[CN__PATH_MAX];
    if (c->hkeys == NULL) {
        c->hkeys = sodium_malloc(KEYS_LEN);
        CN_ENSURE(c->hkeys != NULL, CN_ENOMEM);
    }
    memcpy(c->hkeys, hk, CN_CLIENT_HISTORY_KEY_LEN);
    memcpy(c->hkeys + CN_CLIENT_HISTORY_KEY_LEN, ak, CN_CLIENT_HISTORY_KEY_LEN);
    CN_TRY(keys_path(c, "history.keys", path));
    return cn__sealed_write(c->home_key, path, KEYS_LABEL, c->hkeys, KEYS_LEN);
}

static bool waiting_for_keys(const cn_client_t *c)
{
    char path[CN__PATH_MAX];
    return keys_path(c, "keys.wait", path) == CN_OK && access(path, F_OK) == 0;
}

int cn__history_keys(cn_client_t *c, bool create, const uint8_t **hk, const uint8_t **ak)
{
    char path[CN__PATH_MAX];
    if (c->hkeys == NULL) {
        cn_buf_t b;
        cn_buf_init(&b);
        CN_TRY(keys_path(c, "history.keys", path));
        int rc = cn__sealed_read(c->home_key, path, KEYS_LABEL, KEYS_LEN, &b);
        if (rc == CN_OK && b.len == KEYS_LEN)
            rc = keys_store(c, b.data, b.data + CN_CLIENT_HISTORY_KEY_LEN);
        else if (rc == CN_OK)
            rc = CN_EINVAL;
        cn_buf_wipe(&b);
        if (rc == CN_ENOTFOUND && create && !waiting_for_keys(c)) {
            uint8_t k[KEYS_LEN];
            cn_random(k, sizeof(k));
            rc = keys_store(c, k, k + CN_CLIENT_HISTORY_KEY_LEN);
            sodium_memzero(k, sizeof(k));
        }
        CN_TRY(rc);
    }
    *hk = c->hkeys;
    *ak = c->hkeys + CN_CLIENT_HISTORY_KEY_LEN;
    return CN_OK;
}

int cn__history_adopt(cn_client_t *c, const uint8_t *hk, const uint8_t *ak)
{
    char path[CN__PATH_MAX];
    const uint8_t *h, *a;
    int rc = cn__history_keys(c, false, &h, &a);
    CN_ENSURE(rc == CN_OK || rc == CN_ENOTFOUND, rc);
    bool waiting = waiting_for_keys(c);
    if (rc == CN_OK && !waiting) {
        if (sodium_memcmp(h, hk, CN_CLIENT_HISTORY_KEY_LEN) != 0)
            cn_log_warn("client.history_keys_kept", "reason=\"this device has its own keys\"");
        return CN_OK;
    }
    CN_TRY(keys_store(c, hk, ak));
    CN_TRY(keys_path(c, "keys.wait", path));
    (void)unlink(path);
    return CN_OK;
}

int cn__history_tag(cn_client_t *c, const char *peer, const uint8_t *gid,
                    uint8_t tag[CN_THREAD_TAG_LEN])
{
    const uint8_t *hk, *ak;
    uint8_t msg[sizeof(THREAD_CTX) + 1 + CN_HANDLE_MAX + CN_GROUP_ID_LEN];
    size_t n = sizeof(THREAD_CTX);
    CN_TRY(cn__history_keys(c, true, &hk, &ak));
    memcpy(msg, THREAD_CTX, sizeof(THREAD_CTX)); /* with its NUL */
    if (gid != NULL) {
        msg[n++] = 'g';
        memcpy(msg + n, gid, CN_GROUP_ID_LEN);
        n += CN_GROUP_ID_LEN;
    } else {
        size_t len = strlen(peer);
        CN_ENSURE(len <= CN_HANDLE_MAX, CN_EINVAL);
        msg[n++] = 'p';
        memcpy(msg + n, peer, len);
        n += len;
    }
    return cn_hmac_sha256(tag, hk, CN_CLIENT_HISTORY_KEY_LEN, msg, n);
}

static int entry_id(const uint8_t *hk, const uint8_t *dev, const uint8_t *mid, uint8_t out[16])
{
    uint8_t msg[sizeof(ENTRY_CTX) + CN_DEVICE_ID_LEN + CN_MESSAGE_ID_LEN], mac[CN_SHA256_LEN];
    memcpy(msg, ENTRY_CTX, sizeof(ENTRY_CTX));
    memcpy(msg + sizeof(ENTRY_CTX), dev, CN_DEVICE_ID_LEN);
    memcpy(msg + sizeof(ENTRY_CTX) + CN_DEVICE_ID_LEN, mid, CN_MESSAGE_ID_LEN);
    CN_TRY(cn_hmac_sha256(mac, hk, CN_CLIENT_HISTORY_KEY_LEN, msg, sizeof(msg)));
    memcpy(out, mac, CN_MESSAGE_ID_LEN);
    return CN_OK;
}

int cn__history_queue(cn_client_t *c, const char *from, const uint8_t from_dev[CN_DEVICE_ID_LEN],
                      const uint8_t message_id[CN_MESSAGE_ID_LEN], const char *peer,
                      const uint8_t *gid, const uint8_t *content, size_t n, uint64_t time)
{
    const uint8_t *hk, *ak;
    cn_content_t ct;
    int rc = cn__history_keys(c, true, &hk, &ak);
    if (rc == CN_ENOTFOUND)
        return CN_OK; /* a linked device still waiting for the keys */
    CN_TRY(rc);
    CN_TRY(cn_content_decode(content, n, &ct));
    ct.from = from;
    ct.from_len = strlen(from);
    ct.peer = gid ? NULL : peer;
    ct.peer_len = gid ? 0 : strlen(peer);
    ct.group_id = gid;
    cn_buf_t pt, body;
    cn_buf_init(&pt);
    cn_buf_init(&body);
    uint8_t tag[CN_THREAD_TAG_LEN], id[CN_MESSAGE_ID_LEN];
    rc = cn_content_encode(&pt, &ct);
    if (rc == CN_OK)
        rc = cn__history_tag(c, peer, gid, tag);
    if (rc == CN_OK)
        rc = entry_id(hk, from_dev, message_id, id);
    if (rc == CN_OK)
        rc = cn_buf_append(&body, tag, sizeof(tag));
    if (rc == CN_OK)
        rc = cn_buf_append(&body, id, sizeof(id));
    if (rc == CN_OK)
        rc = cn_buf_put_u64be(&body, time);
    if (rc == CN_OK)
        rc = cn_seal_blob(ak, ENTRY_LABEL, pt.data, pt.len, &body);
    if (rc == CN_OK && body.len > CN__OUTBOX_CONTENT_MAX)
        rc = CN_ETOOBIG;
    if (rc == CN_OK)
        rc = cn__client_queue(c, c->handle, CN__KIND_HISTORY, &body, NULL);
    if (rc == CN_OK)
        c->outbox_added = true;
    cn_buf_wipe(&pt);
    cn_buf_dispose(&body);
    return rc;
}

/* -------------------------------------------------------------- reading */

typedef struct seen_ids {
    uint8_t (*ids)[CN_MESSAGE_ID_LEN];
    size_t n, cap;
} seen_ids_t;

static bool seen_has(const seen_ids_t *s, const uint8_t *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (memcmp(s->ids[i], id, CN_MESSAGE_ID_LEN) == 0)
            return true;
    return false;
}

/* Keeps one page's opened entries (newest first) as owned bytes. */
typedef struct kept {
    cn_buf_t *pt; /* decrypted content maps */
    uint64_t *time;
    size_t n, cap;
} kept_t;

static int keep(kept_t *k, uint64_t time, cn_buf_t *pt)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        cn_buf_t *p = realloc(k->pt, cap * sizeof(*p));
        CN_ENSURE(p != NULL, CN_ENOMEM);
        k->pt = p;
        uint64_t *t = realloc(k->time, cap * sizeof(*t));
        CN_ENSURE(t != NULL, CN_ENOMEM);
        k->time = t;
        k->cap = cap;
    }
    k->pt[k->n] = *pt;
    k->time[k->n++] = time;
    cn_buf_init(pt);
    return CN_OK;
}

static int query_page(cn_client_t *c, const uint8_t *tag, uint64_t before, uint32_t limit,
                      uint64_t deadline, Chat__ServerFrame **out)
{
    Chat__HistoryQuery q;
    chat__history_query__init(&q);
    if (tag != NULL)
        q.thread_tag = cn__bin(tag, CN_THREAD_TAG_LEN);
    q.before = before;
    q.limit = limit;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_HISTORY_QUERY;
    f.history_query = &q;
    CN_TRY(cn__client_rpc(c, &f, deadline, out));
    int rc = cn__client_check(c, *out, CHAT__RESPONSE__RESULT_HISTORY);
    if (rc < 0) {
        chat__server_frame__free_unpacked(*out, NULL);
        *out = NULL;
    }
    return rc;
}

/*
 * Pages newest first. HistoryQuery has only a time cursor ("strictly
 * older than before"), so each next page asks for "older than the oldest
 * time + 1" and skips the entries it already has: a run of equal times
 * that straddles two pages is then not lost.
 */
static int collect(cn_client_t *c, const uint8_t *tag, uint32_t limit, kept_t *k, seen_ids_t *s)
{
    const uint8_t *hk, *ak;
    uint64_t deadline = cn__now_ms() + c->timeout_ms, before = 0;
    CN_TRY(cn__history_keys(c, false, &hk, &ak));
    for (int page = 0; page < HISTORY_PAGES && k->n < limit; page++) {
        Chat__ServerFrame *r = NULL;
        uint32_t want = (uint32_t)CN_MIN((size_t)CN_HISTORY_PAGE_MAX, limit - k->n + s->n);
        CN_TRY(query_page(c, tag, before, want, deadline, &r));
        const Chat__HistoryPage *hp = r->response->history;
        size_t fresh = 0;
        uint64_t oldest = before;
        int rc = CN_OK;
        for (size_t i = 0; rc == CN_OK && i < hp->n_entries && k->n < limit; i++) {
            const Chat__HistoryEntry *e = hp->entries[i];
            oldest = e->time;
            if (e->entry_id.len != CN_MESSAGE_ID_LEN || seen_has(s, e->entry_id.data))
                continue;
            fresh++;
            if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 128;
                void *p = realloc(s->ids, cap * sizeof(*s->ids));
                rc = p ? CN_OK : CN_ENOMEM;
                if (p) {
                    s->ids = p;
                    s->cap = cap;
                }
            }
            if (rc == CN_OK)
                memcpy(s->ids[s->n++], e->entry_id.data, CN_MESSAGE_ID_LEN);
            cn_buf_t pt;
            cn_buf_init(&pt);
            if (rc == CN_OK &&
                cn_open_blob(ak, ENTRY_LABEL, e->sealed.data, e->sealed.len, &pt) == CN_OK)
                rc = keep(k, e->time, &pt);
            cn_buf_wipe(&pt);
        }
        bool more = hp->more;
        chat__server_frame__free_unpacked(r, NULL);
        CN_TRY(rc);
        if (!more || oldest == 0)
            break;
        before = fresh > 0 ? oldest + 1 : oldest; /* a page of repeats: move on */
    }
    return CN_OK;
}

int cn_client_history(cn_client_t *c, const char *with, uint32_t limit, cn_client_history_cb cb,
                      void *ud)
{
    char norm[CN_HANDLE_MAX + 1];
    uint8_t tag[CN_THREAD_TAG_LEN];
    c->refused = false;
    CN_ENSURE(limit > 0 && cb != NULL, CN_EINVAL);
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    if (with != NULL) {
        CN_ENSURE(cn_handle_normalize(with, norm) == CN_OK, CN_EINVAL);
        CN_TRY(cn__history_tag(c, norm, NULL, tag));
    }
    kept_t k = {0};
    seen_ids_t s = {0};
    int rc = collect(c, with ? tag : NULL, limit, &k, &s);
    /* Chronological order for the caller. */
    for (size_t i = k.n; rc == CN_OK && i-- > 0;) {
        cn_client_history_entry_t e;
        memset(&e, 0, sizeof(e));
        char from[CN_HANDLE_MAX + 1] = "?", peer[CN_HANDLE_MAX + 1];
        if (cn_content_decode(k.pt[i].data, k.pt[i].len, &e.content) != CN_OK)
            continue;
        e.time = k.time[i];
        if (e.content.from != NULL)
            snprintf(from, sizeof(from), "%.*s", (int)e.content.from_len, e.content.from);
        e.from = from;
        if (e.content.peer != NULL) {
            snprintf(peer, sizeof(peer), "%.*s", (int)e.content.peer_len, e.content.peer);
            e.peer = peer;
        }
        if (e.content.group_id != NULL) {
            e.has_group = true;
            memcpy(e.group_id, e.content.group_id, CN_GROUP_ID_LEN);
        }
        rc = cb(ud, &e);
    }
    for (size_t i = 0; i < k.n; i++)
        cn_buf_wipe(&k.pt[i]);
    free(k.pt);
    free(k.time);
    free(s.ids);
    return rc;
}

/* ---------------------------------------------------------- conversations */

/* Finds the name of a tag among the handles and groups this home knows. */
static bool resolve(cn_client_t *c, const uint8_t *tag, char *name, size_t cap)
{
    static const char *const dirs[] = {"devices", "trust", "groups"};
    char path[CN__PATH_MAX];
    bool found = false;
    for (size_t d = 0; d < CN_ARRAY_LEN(dirs) && !found; d++) {
        if (keys_path(c, dirs[d], path) != CN_OK)
            continue;
        DIR *dir = opendir(path);
        struct dirent *de;
        while (dir != NULL && !found && (de = readdir(dir)) != NULL) {
            uint8_t t[CN_THREAD_TAG_LEN], gid[CN_GROUP_ID_LEN];
            char norm[CN_HANDLE_MAX + 1];
            bool group = d == 2 && strlen(de->d_name) == 2 * CN_GROUP_ID_LEN &&
                         cn_hex_decode(gid, sizeof(gid), de->d_name) == CN_OK;
            if (group && cn__history_tag(c, NULL, gid, t) == CN_OK &&
                sodium_memcmp(t, tag, sizeof(t)) == 0) {
                char gname[CN_CLIENT_NAME_MAX + 1];
                cn__group_name(c, gid, gname, sizeof(gname));
                snprintf(name, cap, "group:%s%s%s", de->d_name, gname[0] ? " " : "", gname);
                found = true;
            } else if (!group && d < 2 && cn_handle_normalize(de->d_name, norm) == CN_OK &&
                       strcmp(norm, de->d_name) == 0 && cn__history_tag(c, norm, NULL, t) == 0 &&
                       sodium_memcmp(t, tag, sizeof(t)) == 0) {
                snprintf(name, cap, "%s", norm);
                found = true;
            }
        }
        if (dir != NULL)
            closedir(dir);
    }
    return found;
}

/* A tag this home has never used: the newest entry of the thread says
 * whose it is (and recomputing the tag proves it). */
static bool resolve_from_archive(cn_client_t *c, const uint8_t *tag, char *name, size_t cap)
{
    const uint8_t *hk, *ak;
    Chat__ServerFrame *r = NULL;
    if (cn__history_keys(c, false, &hk, &ak) != CN_OK ||
        query_page(c, tag, 0, 1, cn__now_ms() + c->timeout_ms, &r) != CN_OK)
        return false;
    bool found = false;
    const Chat__HistoryPage *hp = r->response->history;
    cn_buf_t pt;
    cn_buf_init(&pt);
    cn_content_t ct;
    uint8_t t[CN_THREAD_TAG_LEN];
    char peer[CN_HANDLE_MAX + 1];
    if (hp->n_entries == 1 &&
        cn_open_blob(ak, ENTRY_LABEL, hp->entries[0]->sealed.data, hp->entries[0]->sealed.len,
                     &pt) == CN_OK &&
        cn_content_decode(pt.data, pt.len, &ct) == CN_OK) {
        if (ct.group_id != NULL && cn__history_tag(c, NULL, ct.group_id, t) == CN_OK &&
            sodium_memcmp(t, tag, sizeof(t)) == 0) {
            char hex[2 * CN_GROUP_ID_LEN + 1], gname[CN_CLIENT_NAME_MAX + 1];
            cn_hex_encode(hex, ct.group_id, CN_GROUP_ID_LEN);
            cn__group_name(c, ct.group_id, gname, sizeof(gname));
            snprintf(name, cap, "group:%s%s%s", hex, gname[0] ? " " : "", gname);
            found = true;
        } else if (ct.peer != NULL) {
            snprintf(peer, sizeof(peer), "%.*s", (int)ct.peer_len, ct.peer);
            found =
                cn__history_tag(c, peer, NULL, t) == CN_OK && sodium_memcmp(t, tag, sizeof(t)) == 0;
            if (found)
                snprintf(name, cap, "%s", peer);
        }
    }
    cn_buf_wipe(&pt);
    chat__server_frame__free_unpacked(r, NULL);
    return found;
}

int cn_client_conversations(cn_client_t *c, cn_client_thread_cb cb, void *ud)
{
    const uint8_t *hk, *ak;
    c->refused = false;
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    CN_TRY(cn__history_keys(c, false, &hk, &ak));
    Chat__ListThreads lt;
    chat__list_threads__init(&lt);
    lt.limit = CN_HISTORY_PAGE_MAX;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_LIST_THREADS;
    f.list_threads = &lt;
    Chat__ServerFrame *r = NULL;
    CN_TRY(cn__client_rpc(c, &f, cn__now_ms() + c->timeout_ms, &r));
    int rc = cn__client_check(c, r, CHAT__RESPONSE__RESULT_THREADS);
    size_t n = rc == CN_OK ? r->response->threads->n_threads : 0;
    cn_client_thread_t *v = calloc(n ? n : 1, sizeof(*v));
    rc = rc == CN_OK && v == NULL ? CN_ENOMEM : rc;
    size_t k = 0;
    for (size_t i = 0; rc == CN_OK && i < n; i++) {
        const Chat__ThreadSummary *ts = r->response->threads->threads[i];
        if (ts->thread_tag.len != CN_THREAD_TAG_LEN)
            continue;
        memcpy(v[k].tag, ts->thread_tag.data, CN_THREAD_TAG_LEN);
        v[k++].last_time = ts->last_time;
    }
    chat__server_frame__free_unpacked(r, NULL);
    /* Requests (to resolve unknown tags) only after the answer is freed. */
    for (size_t i = 0; rc == CN_OK && i < k; i++) {
        char name[CN_CLIENT_NAME_MAX + 64];
        bool known = resolve(c, v[i].tag, name, sizeof(name)) ||
                     resolve_from_archive(c, v[i].tag, name, sizeof(name));
        v[i].name = known ? name : NULL;
        cb(ud, &v[i]);
    }
    free(v);
    return rc;
}
