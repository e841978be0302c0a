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

void cn__dispatch(cn_conn_t *c, const uint8_t *p, size_t n)
{
    Chat__ClientFrame *f = chat__client_frame__unpack(NULL, n, p);
    if (!f) {
        atomic_fetch_add(&c->loop->server->counters.protocol_errors, 1);
        cn__conn_close(c, CN_WS_CLOSE_POLICY, "unparseable frame");
        return;
    }
    cn_log_debug("request", "conn=%llu req=%llu type=%d", (unsigned long long)c->id,
                 (unsigned long long)f->request_id, (int)f->body_case);
    if (f->request_id == 0) {
        cn__conn_respond_status(c, 0, CHAT__STATUS__BAD_REQUEST, "request_id must be non-zero");
    } else if (c->state != CN_CONN_AUTHED && !allowed_unauthenticated(f->body_case)) {
        cn__conn_respond_status(c, f->request_id, CHAT__STATUS__UNAUTHORIZED, "authenticate first");
    } else {
        route(c, f);
    }
    chat__client_frame__free_unpacked(f, NULL);
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

cn_pending_t *cn__pending_new(cn_conn_t *c, uint64_t request_id, enum cn_store_op_type type,
                              cn_pending_fn complete, size_t extra_len)
{
    cn_pending_t *p = calloc(1, sizeof(*p) + extra_len);
    cn_msg_t *m = cn__msg_new(CN_MSG_STORE_DONE, 0);
    if (!p || !m) {
        free(p);
        free(m);
        cn__conn_respond_status(c, request_id, CHAT__STATUS__UNAVAILABLE, "out of memory");
        return NULL;
    }
    p->op.type = type;
    p->op.done = on_store_done;
    p->op.ctx = p;
    p->loop = c->loop;
    p->conn_id = c->id;
    p->request_id = request_id;
    p->started_ns = cn_mono_ns();
    p->complete = complete;
    p->extra = extra_len ? (uint8_t *)(p + 1) : NULL;
    p->done_msg = m;
    return p;
}

void cn__pending_free(cn_pending_t *p)
{
    free(p->done_msg);
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
}

void cn__pending_finish(cn_loop_t *loop, cn_pending_t *p)
{
    cn_conn_t *c = cn__loop_conn_find(loop, p->conn_id);
    if (c) {
        c->pending_ops--;
        if (c->state == CN_CONN_CLOSED || c->state == CN_CONN_CLOSING)
            c = NULL;
        else if (!c->reading && c->pending_ops == CN_CONN_PENDING_MAX / 2 && cn__conn_may_read(c))
            cn__conn_read_start(c); /* paused by its requests (conn.c read_cb) */
    }
    if (p->op.result == CN_EIO)
        atomic_fetch_add(&loop->server->counters.store_errors, 1);
    p->complete(c, p);
    free(p);
}
