/*
 * Subscribe, Unsubscribe and SetPresence. A subscription lives as long as
 * the connection; the current state is pushed at once, then every change.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

#define SUBSCRIBE_PER_REQUEST_MAX 256

static bool has_sub(const cn_conn_t *c, const char *handle)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (strcmp(c->subs[i], handle) == 0)
            return true;
    return false;
}

void cn__handle_subscribe(cn_conn_t *c, uint64_t rid, const Chat__Subscribe *m)
{
    cn_server_t *s = c->loop->server;
    if (m->n_handles == 0 || m->n_handles > SUBSCRIBE_PER_REQUEST_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "1 to 256 handles");
        return;
    }
    char handle[CN_HANDLE_MAX + 1];
    for (size_t i = 0; i < m->n_handles; i++)
        if (cn_handle_normalize(m->handles[i], handle) < 0) {
            cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "invalid handle");
            return;
        }
    /* Answer first: the snapshots pushed below come after the OK. */
    cn__conn_respond_status(c, rid, CHAT__STATUS__OK, "");
    for (size_t i = 0; i < m->n_handles; i++) {
        CN_IGNORE(cn_handle_normalize(m->handles[i], handle));
        if (has_sub(c, handle)) {
            CN_IGNORE(cn__presence_subscribe(s, c, handle)); /* a fresh snapshot */
            continue;
        }
        if (c->nsubs == CN_SUBSCRIPTIONS_MAX)
            break; /* the rest is ignored: a bounded table per connection */
        char(*subs)[CN_HANDLE_MAX + 1] = realloc(c->subs, (c->nsubs + 1) * sizeof(*subs));
        if (!subs)
            break;
        c->subs = subs;
        if (cn__presence_subscribe(s, c, handle) == CN_OK)
            memcpy(c->subs[c->nsubs++], handle, sizeof(handle));
    }
}

void cn__handle_unsubscribe(cn_conn_t *c, uint64_t rid, const Chat__Unsubscribe *m)
{
    char handle[CN_HANDLE_MAX + 1];
    for (size_t i = 0; i < m->n_handles && i < SUBSCRIBE_PER_REQUEST_MAX; i++) {
        if (cn_handle_normalize(m->handles[i], handle) < 0)
            continue;
        for (uint32_t k = 0; k < c->nsubs; k++) {
            if (strcmp(c->subs[k], handle) == 0) {
                cn__presence_unsubscribe(c->loop->server, c, handle);
                memcpy(c->subs[k], c->subs[--c->nsubs], sizeof(c->subs[k]));
                break;
            }
        }
    }
    cn__conn_respond_status(c, rid, CHAT__STATUS__OK, "");
}

void cn__presence_conn_gone(cn_conn_t *c)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        cn__presence_unsubscribe(c->loop->server, c, c->subs[i]);
    free(c->subs);
    c->subs = NULL;
    c->nsubs = 0;
}

static void hidden_done(cn_conn_t *c, cn_pending_t *p)
{
    bool hidden = p->op.u.user_update.presence_hidden;
    if (p->op.result == CN_OK)
        cn__presence_set_hidden(p->loop->server, p->op.u.user_update.handle, hidden);
    if (!c)
        return;
    if (p->op.result == CN_OK)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__OK, "");
    else
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
}

void cn__handle_set_presence(cn_conn_t *c, uint64_t rid, const Chat__SetPresence *m)
{
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_USER_UPDATE, hidden_done, 0);
    if (!p)
        return;
    memcpy(p->op.u.user_update.handle, c->handle, sizeof(c->handle));
    p->op.u.user_update.mask = CN_USER_SET_PRESENCE_HIDDEN;
    p->op.u.user_update.presence_hidden = m->hidden;
    cn__pending_submit(c, p);
}
