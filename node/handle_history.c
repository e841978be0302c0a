/*
 * History (DESIGN section 4): clients append their own sealed copies of
 * messages to a per-user archive, tagged with an opaque thread tag; a new
 * device pages through it. The node indexes (user, tag, time) and (user,
 * time) and never sees a plaintext or the tag's meaning.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

#define HISTORY_PAGE_BYTES (256u * 1024u) /* one answer frame stays small */

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

static void append_done(cn_conn_t *c, cn_pending_t *p)
{
    if (!c)
        return;
    if (p->op.result == CN_OK)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__OK,
                                p->op.u.history_append.duplicate ? "duplicate" : "");
    else if (p->op.result == CN_ETOOBIG)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__TOO_LARGE, "entry too large");
    else
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
}

void cn__handle_history_append(cn_conn_t *c, uint64_t rid, const Chat__HistoryAppend *m)
{
    if (m->thread_tag.len != CN_THREAD_TAG_LEN || m->entry_id.len != CN_HISTORY_ID_LEN ||
        m->sealed.len == 0 || m->time == 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "thread_tag (32), entry_id (16), time and sealed are required");
        return;
    }
    if (m->sealed.len > CN_CIPHERTEXT_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__TOO_LARGE, "entry too large");
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_HISTORY_APPEND, append_done, m->sealed.len);
    if (!p)
        return;
    memcpy(p->extra, m->sealed.data, m->sealed.len);
    memcpy(p->op.u.history_append.handle, c->handle, sizeof(c->handle));
    memcpy(p->op.u.history_append.thread_tag, m->thread_tag.data, CN_THREAD_TAG_LEN);
    p->op.u.history_append.time = m->time;
    memcpy(p->op.u.history_append.entry_id, m->entry_id.data, CN_HISTORY_ID_LEN);
    p->op.u.history_append.sealed = cn_slice(p->extra, m->sealed.len);
    cn__pending_submit(c, p);
}

typedef struct page {
    Chat__HistoryEntry entries[CN_HISTORY_PAGE_MAX];
    Chat__HistoryEntry *ptrs[CN_HISTORY_PAGE_MAX];
    cn_buf_t data; /* tags, ids and sealed bytes of every entry */
    size_t offs[CN_HISTORY_PAGE_MAX][3], lens[CN_HISTORY_PAGE_MAX];
    uint32_t n;
    bool cut; /* stopped at the byte budget */
} page_t;

static int on_entry(void *ctx, const uint8_t tag[CN_THREAD_TAG_LEN], uint64_t time,
                    const uint8_t id[CN_HISTORY_ID_LEN], const uint8_t *sealed, size_t len)
{
    page_t *p = ctx;
    if (p->n > 0 && p->data.len + len > HISTORY_PAGE_BYTES) {
        p->cut = true;
        return 1;
    }
    size_t base = p->data.len;
    if (cn_buf_append(&p->data, tag, CN_THREAD_TAG_LEN) < 0 ||
        cn_buf_append(&p->data, id, CN_HISTORY_ID_LEN) < 0 ||
        cn_buf_append(&p->data, sealed, len) < 0)
        return 1;
    Chat__HistoryEntry *e = &p->entries[p->n];
    chat__history_entry__init(e);
    e->time = time;
    p->offs[p->n][0] = base;
    p->offs[p->n][1] = base + CN_THREAD_TAG_LEN;
    p->offs[p->n][2] = base + CN_THREAD_TAG_LEN + CN_HISTORY_ID_LEN;
    p->lens[p->n] = len;
    p->ptrs[p->n] = e;
    p->n++;
    return 0;
}

void cn__handle_history_query(cn_conn_t *c, uint64_t rid, const Chat__HistoryQuery *m)
{
    if ((m->thread_tag.len != 0 && m->thread_tag.len != CN_THREAD_TAG_LEN) ||
        (m->before_id.len != 0 && m->before_id.len != CN_HISTORY_ID_LEN)) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "thread_tag must be 32 bytes, before_id 16");
        return;
    }
    if (!cn__conn_rate_ok(c, rid, CN_RL_HISTORY, c->device_id, CN_DEVICE_ID_LEN, 1))
        return;
    page_t *p = calloc(1, sizeof(*p));
    if (!p) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "out of memory");
        return;
    }
    cn_buf_init(&p->data);
    uint32_t limit = m->limit ? CN_MIN(m->limit, CN_HISTORY_PAGE_MAX) : 50;
    bool more = false;
    int rc = cn_store_history_query(
        srv(c)->store, c->handle, m->thread_tag.len ? m->thread_tag.data : NULL, m->before,
        m->before_id.len ? m->before_id.data : NULL, limit, on_entry, p, &more);
    if (rc < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "storage unavailable");
    } else {
        /* Pointers into data only now: appending may have moved it. */
        for (uint32_t i = 0; i < p->n; i++) {
            Chat__HistoryEntry *e = &p->entries[i];
            e->thread_tag = cn__pb_bytes(p->data.data + p->offs[i][0], CN_THREAD_TAG_LEN);
            e->entry_id = cn__pb_bytes(p->data.data + p->offs[i][1], CN_HISTORY_ID_LEN);
            e->sealed = cn__pb_bytes(p->data.data + p->offs[i][2], p->lens[i]);
        }
        Chat__HistoryPage hp;
        chat__history_page__init(&hp);
        hp.n_entries = p->n;
        hp.entries = p->ptrs;
        hp.more = more || p->cut;
        Chat__Response r;
        chat__response__init(&r);
        r.request_id = rid;
        r.result_case = CHAT__RESPONSE__RESULT_HISTORY;
        r.history = &hp;
        cn__conn_respond(c, &r);
    }
    cn_buf_dispose(&p->data);
    free(p);
}

typedef struct threads {
    Chat__ThreadSummary items[CN_HISTORY_PAGE_MAX];
    Chat__ThreadSummary *ptrs[CN_HISTORY_PAGE_MAX];
    uint8_t tags[CN_HISTORY_PAGE_MAX][CN_THREAD_TAG_LEN];
    uint32_t n;
} threads_t;

static int on_thread(void *ctx, const uint8_t tag[CN_THREAD_TAG_LEN], uint64_t last_time)
{
    threads_t *t = ctx;
    if (t->n == CN_HISTORY_PAGE_MAX)
        return 1;
    memcpy(t->tags[t->n], tag, CN_THREAD_TAG_LEN);
    chat__thread_summary__init(&t->items[t->n]);
    t->items[t->n].thread_tag = cn__pb_bytes(t->tags[t->n], CN_THREAD_TAG_LEN);
    t->items[t->n].last_time = last_time;
    t->ptrs[t->n] = &t->items[t->n];
    t->n++;
    return 0;
}

void cn__handle_list_threads(cn_conn_t *c, uint64_t rid, const Chat__ListThreads *m)
{
    if (!cn__conn_rate_ok(c, rid, CN_RL_HISTORY, c->device_id, CN_DEVICE_ID_LEN, 1))
        return;
    threads_t *t = calloc(1, sizeof(*t));
    if (!t) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "out of memory");
        return;
    }
    uint32_t limit = m->limit ? CN_MIN(m->limit, CN_HISTORY_PAGE_MAX) : 100;
    if (cn_store_thread_list(srv(c)->store, c->handle, limit, on_thread, t) < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "storage unavailable");
    } else {
        Chat__ThreadList tl;
        chat__thread_list__init(&tl);
        tl.n_threads = t->n;
        tl.threads = t->ptrs;
        Chat__Response r;
        chat__response__init(&r);
        r.request_id = rid;
        r.result_case = CHAT__RESPONSE__RESULT_THREADS;
        r.threads = &tl;
        cn__conn_respond(c, &r);
    }
    free(t);
}
