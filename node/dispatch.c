/*
 * Decodes one ClientFrame and routes it to its handler. A frame that is
 * not a valid protobuf closes the connection with 1008 (policy); a valid
 * frame with bad fields gets BAD_REQUEST and the connection stays.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

/* Requests a connection may make before it is authenticated. */
static bool allowed_unauthenticated(Chat__ClientFrame__BodyCase body)
{
    return body == CHAT__CLIENT_FRAME__BODY_AUTH || body == CHAT__CLIENT_FRAME__BODY_REGISTER ||
           body == CHAT__CLIENT_FRAME__BODY_LINK_DEVICE || body == CHAT__CLIENT_FRAME__BODY_PING;
}

static void route(cn_conn_t *c, const Chat__ClientFrame *f)
{
    uint64_t rid = f->request_id;
    switch (f->body_case) {
    case CHAT__CLIENT_FRAME__BODY_AUTH:
        cn__handle_auth(c, rid, f->auth);
        break;
    case CHAT__CLIENT_FRAME__BODY_REGISTER:
        cn__handle_register(c, rid, f->register_);
        break;
    case CHAT__CLIENT_FRAME__BODY_UPLOAD_PREKEYS:
        cn__handle_upload_prekeys(c, rid, f->upload_prekeys);
        break;
    case CHAT__CLIENT_FRAME__BODY_FETCH_PREKEYS:
        cn__handle_fetch_prekeys(c, rid, f->fetch_prekeys);
        break;
    case CHAT__CLIENT_FRAME__BODY_GET_DEVICES:
        cn__handle_get_devices(c, rid, f->get_devices);
        break;
    case CHAT__CLIENT_FRAME__BODY_SEND:
        cn__handle_send(c, rid, f->send);
        break;
    case CHAT__CLIENT_FRAME__BODY_ACK:
        cn__handle_ack(c, rid, f->ack);
        break;
    case CHAT__CLIENT_FRAME__BODY_PING:
        cn__handle_ping(c, rid, f->ping);
        break;
    case CHAT__CLIENT_FRAME__BODY_LINK_DEVICE:
        cn__handle_link_device(c, rid, f->link_device);
        break;
    case CHAT__CLIENT_FRAME__BODY_LINK_APPROVE:
        cn__handle_link_approve(c, rid, f->link_approve);
        break;
    case CHAT__CLIENT_FRAME__BODY_REVOKE_DEVICE:
        cn__handle_revoke_device(c, rid, f->revoke_device);
        break;
    case CHAT__CLIENT_FRAME__BODY_GROUP_CREATE:
        cn__handle_group_create(c, rid, f->group_create);
        break;
    case CHAT__CLIENT_FRAME__BODY_GROUP_UPDATE:
        cn__handle_group_update(c, rid, f->group_update);
        break;
    case CHAT__CLIENT_FRAME__BODY_GROUP_GET:
        cn__handle_group_get(c, rid, f->group_get);
        break;
    case CHAT__CLIENT_FRAME__BODY_MEDIA_BEGIN:
        cn__handle_media_begin(c, rid, f->media_begin);
        break;
    case CHAT__CLIENT_FRAME__BODY_MEDIA_CHUNK:
        cn__handle_media_chunk(c, rid, f->media_chunk);
        break;
    case CHAT__CLIENT_FRAME__BODY_MEDIA_END:
        cn__handle_media_end(c, rid, f->media_end);
        break;
    case CHAT__CLIENT_FRAME__BODY_MEDIA_GET:
        cn__handle_media_get(c, rid, f->media_get);
        break;
    case CHAT__CLIENT_FRAME__BODY_HISTORY_APPEND:
        cn__handle_history_append(c, rid, f->history_append);
        break;
    case CHAT__CLIENT_FRAME__BODY_HISTORY_QUERY:
        cn__handle_history_query(c, rid, f->history_query);
        break;
    case CHAT__CLIENT_FRAME__BODY_LIST_THREADS:
        cn__handle_list_threads(c, rid, f->list_threads);
        break;
    case CHAT__CLIENT_FRAME__BODY_SUBSCRIBE:
        cn__handle_subscribe(c, rid, f->subscribe);
        break;
    case CHAT__CLIENT_FRAME__BODY_UNSUBSCRIBE:
        cn__handle_unsubscribe(c, rid, f->unsubscribe);
        break;
    case CHAT__CLIENT_FRAME__BODY_SET_PRESENCE:
        cn__handle_set_presence(c, rid, f->set_presence);
        break;
    case CHAT__CLIENT_FRAME__BODY__NOT_SET:
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "empty request");
        break;
    default: /* a body this version does not know (a newer client) */
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "unknown request");
        break;
    }
}

/*
 * A decoded request lives until its handler returns: handlers copy what
 * they keep (a pending op owns its data). So protobuf-c allocates it from a
 * per-thread arena, reset after each request, instead of malloc'ing every
 * message, array and bytes field and freeing each one again. A request
 * decoded while another one's handler runs (none does today) would take
 * malloc, so that the reset never pulls a request from under its handler.
 */
static _Thread_local cn_arena_t t_request;
static _Thread_local bool t_in_request;

static void *request_alloc(void *arena, size_t n)
{
    return cn_arena_alloc(arena, n);
}

static void request_free(void *arena, void *p)
{
    (void)arena; /* everything goes at the next reset */
    (void)p;
}

static void dispatch(cn_conn_t *c, const Chat__ClientFrame *f)
{
    cn_log_debug("request", "conn=%llu req=%llu type=%d", (unsigned long long)c->id,
                 (unsigned long long)f->request_id, (int)f->body_case);
    if (f->request_id == 0) {
        cn__conn_respond_status(c, 0, CHAT__STATUS__BAD_REQUEST, "request_id must be non-zero");
    } else if (c->state != CN_CONN_AUTHED && !allowed_unauthenticated(f->body_case)) {
        cn__conn_respond_status(c, f->request_id, CHAT__STATUS__UNAUTHORIZED, "authenticate first");
    } else {
        route(c, f);
    }
}

void cn__dispatch(cn_conn_t *c, const uint8_t *p, size_t n)
{
    ProtobufCAllocator arena = {request_alloc, request_free, &t_request};
    bool nested = t_in_request;
    Chat__ClientFrame *f = chat__client_frame__unpack(nested ? NULL : &arena, n, p);
    if (!f) {
        if (!nested)
            cn_arena_reset(&t_request);
        atomic_fetch_add(&c->loop->server->counters.protocol_errors, 1);
        cn__conn_close(c, CN_WS_CLOSE_POLICY, "unparseable frame");
        return;
    }
    t_in_request = true;
    dispatch(c, f);
    t_in_request = nested;
    if (nested)
        chat__client_frame__free_unpacked(f, NULL);
    else
        cn_arena_reset(&t_request);
}

/* ----------------------------------------------------------- pending */

/* Writer thread: the message was allocated with the request, so telling
 * the loop cannot fail (a lost completion would also lose the cache
 * invalidation that comes before its answer). */
static void on_store_done(cn_store_op_t *op)
{
    cn_pending_t *p = op->ctx;
    cn_msg_t *m = p->done_msg;
    p->done_msg = NULL;
    m->ptr = p;
    cn__loop_post(p->loop, m);
}

/*
 * Pending requests come and go by the thousand per loop iteration under
 * load, and with their op (864 bytes) and a one-to-one Send's recipient
 * and ciphertext they are too large for malloc's per-thread cache: every
 * allocation and free went through its bins (about 3 % of the node's
 * samples at relay-80k). So each loop thread keeps freed blocks of
 * PENDING_BLOCK bytes for reuse, as many as it can have in flight
 * (CN_LOOP_PENDING_MAX), and its sweep gives back what a quiet period did
 * not use, down to PENDING_POOL_KEEP (cn__pending_pool_trim). Larger
 * requests (many recipients, big ciphertexts) use malloc as before. A
 * block freed on another thread (none is today) simply joins that
 * thread's pool.
 */
#define PENDING_BLOCK     2048
#define PENDING_POOL_MAX  CN_LOOP_PENDING_MAX
#define PENDING_POOL_KEEP 256

static _Thread_local void *t_pool; /* free blocks, linked through their first word */
static _Thread_local size_t t_pool_n;
static _Thread_local size_t t_pool_low; /* fewest free blocks since the last trim */

static void *block_alloc(size_t size)
{
    void *b = NULL;
    if (size <= PENDING_BLOCK && t_pool != NULL) {
        b = t_pool;
        CN_UNPOISON(b, PENDING_BLOCK);
        memcpy(&t_pool, b, sizeof(t_pool));
        t_pool_n--;
        if (t_pool_n < t_pool_low)
            t_pool_low = t_pool_n;
    } else {
        b = malloc(size <= PENDING_BLOCK ? PENDING_BLOCK : size);
        t_pool_low = 0;
    }
    if (b)
        memset(b, 0, size);
    return b;
}

static void block_free(void *b, size_t size)
{
    if (b != NULL && size <= PENDING_BLOCK && t_pool_n < PENDING_POOL_MAX) {
        memcpy(b, &t_pool, sizeof(t_pool));
        t_pool = b;
        t_pool_n++;
        CN_POISON(b, PENDING_BLOCK); /* a pending used after its release faults */
        return;
    }
    free(b);
}

static void pool_release(size_t n)
{
    for (; n > 0 && t_pool != NULL; n--) {
        void *b = t_pool;
        CN_UNPOISON(b, PENDING_BLOCK);
        memcpy(&t_pool, b, sizeof(t_pool));
        free(b);
        t_pool_n--;
    }
}

static void pool_dispose(void)
{
    pool_release(SIZE_MAX);
    t_pool_n = t_pool_low = 0;
}

size_t cn__pending_pool_trim(void)
{
    size_t unused = t_pool_n > PENDING_POOL_KEEP ? t_pool_n - PENDING_POOL_KEEP : 0;
    size_t n = CN_MIN(unused, t_pool_low);
    pool_release(n);
    t_pool_low = t_pool_n;
    return n;
}

size_t cn__pending_pool_size(void)
{
    return t_pool_n;
}

void cn__dispatch_thread_exit(void)
{
    cn_arena_dispose(&t_request);
    pool_dispose();
}

cn_pending_t *cn__pending_new(cn_conn_t *c, uint64_t request_id, enum cn_store_op_type type,
                              cn_pending_fn complete, size_t extra_len)
{
    /* One block: the pending, its extra bytes, then its completion
     * message (freed with the pending: handle_msg leaves it alone). */
    size_t msg_off =
        (sizeof(cn_pending_t) + extra_len + _Alignof(cn_msg_t) - 1) & ~(_Alignof(cn_msg_t) - 1);
    size_t size = msg_off + sizeof(cn_msg_t);
    cn_pending_t *p = extra_len <= SIZE_MAX / 2 - sizeof(cn_pending_t) - sizeof(cn_msg_t)
                          ? block_alloc(size)
                          : NULL;
    if (!p) {
        cn__conn_respond_status(c, request_id, CHAT__STATUS__UNAVAILABLE, "out of memory");
        return NULL;
    }
    cn_msg_t *m = (cn_msg_t *)((uint8_t *)p + msg_off);
    m->type = CN_MSG_STORE_DONE;
    p->op.type = type;
    p->op.done = on_store_done;
    p->op.ctx = p;
    p->loop = c->loop;
    p->conn_id = c->id;
    p->request_id = request_id;
    p->started_ns = c->loop->event_ns;
    p->complete = complete;
    p->silent_ok = false;
    p->extra = extra_len ? (uint8_t *)(p + 1) : NULL;
    p->done_msg = m;
    p->size = size;
    return p;
}

void cn__pending_free(cn_pending_t *p)
{
    block_free(p, p->size);
}

void cn__pending_discard(cn_pending_t *p)
{
    free(p);
}

void cn__pending_submit(cn_conn_t *c, cn_pending_t *p)
{
    if (cn_store_submit(c->loop->server->store, &p->op) < 0) {
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage is shutting down");
        cn__pending_free(p);
        return;
    }
    c->pending_ops++;
    c->loop->pending_ops++;
}

void cn__pending_finish(cn_loop_t *loop, cn_pending_t *p)
{
    cn_conn_t *c = cn__loop_conn_find(loop, p->conn_id);
    if (--loop->pending_ops == CN_LOOP_PENDING_MAX / 2)
        cn__loop_resume_readers(loop); /* paused by the loop's requests (conn.c read_cb) */
    if (c) {
        c->pending_ops--;
        if (c->state == CN_CONN_CLOSED || c->state == CN_CONN_CLOSING)
            c = NULL;
        else if (c->pending_ops == CN_CONN_PENDING_MAX / 2)
            cn__conn_read_resume(c); /* paused by its requests (conn.c read_cb) */
    }
    if (p->op.result == CN_EIO)
        atomic_fetch_add(&loop->server->counters.store_errors, 1);
    p->complete(c, p);
    block_free(p, p->size);
}
