/*
 * A group send (DESIGN section 4): one sender-key ciphertext that the node
 * fans out to every device of every member (the sender's other devices
 * included, the sending device not). The store keeps the envelope once
 * and gives every mailbox a small reference to it (cn_store.h, send.shared);
 * the whole fan-out is one store operation: one batch, one fsync, then one
 * OK. docs/PERFORMANCE.md measures the fan-out.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

static const char *check_group_send(const Chat__Send *m, Chat__Status *status)
{
    *status = CHAT__STATUS__BAD_REQUEST;
    if (m->message_id.len != CN_MESSAGE_ID_LEN)
        return "message_id must be 16 bytes";
    if (m->kind < CHAT__KIND__MESSAGE || m->kind > CHAT__KIND__CONTROL)
        return "unknown kind";
    if (m->group_id.len != CN_GROUP_ID_LEN)
        return "a group send needs a 16-byte group_id";
    if (m->n_envelopes)
        return "a group send carries sender_key_ciphertext, not envelopes";
    if (m->sender_key_ciphertext.len > CN_CIPHERTEXT_MAX) {
        *status = CHAT__STATUS__TOO_LARGE;
        return "ciphertext too large";
    }
    return NULL;
}

/*
 * Collects every device of every member but the sending one into ids (a
 * buffer of device ids), from the user cache: no store read and no
 * per-member allocation once the members are cached. Members that are
 * unknown, unreadable or disabled get nothing, as before the cache.
 */
static int group_devices(cn_conn_t *c, const cn_cached_group_t *g, cn_buf_t *ids, size_t *n)
{
    *n = 0;
    CN_TRY(cn_buf_reserve(ids, (size_t)g->n * 2 * CN_DEVICE_ID_LEN));
    for (uint32_t i = 0; i < g->n; i++) {
        cn_cached_user_t u;
        if (cn__user_get(srv(c), g->members[i], &u) < 0 || u.disabled)
            continue;
        for (uint32_t k = 0; k < u.ndevices; k++) {
            if (memcmp(u.devices[k], c->device_id, CN_DEVICE_ID_LEN) == 0)
                continue;
            CN_TRY(cn_buf_append(ids, u.devices[k], CN_DEVICE_ID_LEN));
            (*n)++;
        }
    }
    return CN_OK;
}

void cn__handle_group_send(cn_conn_t *c, uint64_t rid, const Chat__Send *m)
{
    Chat__Status status;
    const char *why = check_group_send(m, &status);
    if (why) {
        cn__conn_respond_status(c, rid, status, why);
        return;
    }
    size_t len = m->sender_key_ciphertext.len;
    if (!cn__conn_send_rate_ok(c, rid, (double)len))
        return;
    const cn_cached_group_t *g = NULL;
    int rc = cn__group_get(srv(c), m->group_id.data, &g);
    if (rc < 0 || !cn__cached_group_has(g, c->handle)) {
        cn__conn_respond_status(c, rid,
                                rc == CN_OK || rc == CN_ENOTFOUND ? CHAT__STATUS__NOT_FOUND
                                                                  : CHAT__STATUS__UNAVAILABLE,
                                "unknown group");
        cn__usercache_group_release(g);
        return;
    }
    size_t n;
    cn_buf_t ids;
    cn_buf_init(&ids);
    rc = group_devices(c, g, &ids, &n);
    cn__usercache_group_release(g);
    cn_pending_t *p = rc == CN_OK && n ? cn__send_pending_new(c, rid, m, n, len) : NULL;
    if (!p) {
        if (rc == CN_OK && n == 0)
            cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "nobody else in the group");
        else if (rc < 0)
            cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "out of memory");
        cn_buf_dispose(&ids);
        return;
    }
    uint8_t *data = (uint8_t *)((cn_store_recipient_t *)p->extra + n);
    memcpy(data, m->sender_key_ciphertext.data, len);
    for (size_t i = 0; i < n; i++)
        cn__send_recipient(c, &p->op.u.send.recipients[i], ids.data + i * CN_DEVICE_ID_LEN,
                           cn_slice(data, len));
    cn_buf_dispose(&ids);
    p->op.u.send.shared = true; /* stored once, a reference per mailbox */
    cn__send_submit(c, rid, p, m->ephemeral || m->kind == CHAT__KIND__TYPING);
}
