/*
 * Send (DESIGN section 4): one ciphertext per recipient device. The node
 * checks the envelope list against the recipient's current devices
 * (CONFLICT names the missing and stale ones), stores one copy per device
 * mailbox through group commit, answers OK only once that batch is
 * durable, then pushes Deliver to the devices that are online. TYPING and
 * ephemeral sends skip the store: online devices only.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

/* The devices a Send must cover: every device of the recipient and the
 * sender's own other devices (so each device sees both sides), never the
 * sending device itself. */
typedef struct expected {
    uint32_t n;
    uint8_t ids[2 * CN_DEVICES_HARD_MAX][CN_DEVICE_ID_LEN];
} expected_t;

static bool expected_has(const expected_t *e, const uint8_t *dev)
{
    for (uint32_t i = 0; i < e->n; i++)
        if (memcmp(e->ids[i], dev, CN_DEVICE_ID_LEN) == 0)
            return true;
    return false;
}

static void expected_add(expected_t *e, const cn_cached_user_t *u, const uint8_t *self)
{
    for (uint32_t i = 0; i < u->ndevices && i < CN_DEVICES_HARD_MAX; i++)
        if (memcmp(u->devices[i], self, CN_DEVICE_ID_LEN) != 0 && !expected_has(e, u->devices[i]))
            memcpy(e->ids[e->n++], u->devices[i], CN_DEVICE_ID_LEN);
}

static bool device_in_envelopes(const Chat__Send *m, const uint8_t *dev)
{
    for (size_t i = 0; i < m->n_envelopes; i++)
        if (memcmp(m->envelopes[i]->device_id.data, dev, CN_DEVICE_ID_LEN) == 0)
            return true;
    return false;
}

/* Field checks that need no storage; returns a BAD_REQUEST reason or NULL. */
static const char *check_fields(const Chat__Send *m, Chat__Status *status)
{
    *status = CHAT__STATUS__BAD_REQUEST;
    if (m->message_id.len != CN_MESSAGE_ID_LEN)
        return "message_id must be 16 bytes";
    if (m->kind < CHAT__KIND__MESSAGE || m->kind > CHAT__KIND__CONTROL)
        return "unknown kind";
    if (m->group_id.len && m->group_id.len != CN_GROUP_ID_LEN)
        return "group_id must be 16 bytes";
    if (m->n_envelopes > CN_RECIPIENTS_MAX) {
        *status = CHAT__STATUS__TOO_LARGE;
        return "too many recipient devices";
    }
    for (size_t i = 0; i < m->n_envelopes; i++) {
        const Chat__Envelope *e = m->envelopes[i];
        if (e->device_id.len != CN_DEVICE_ID_LEN)
            return "device_id must be 32 bytes";
        if (e->ciphertext.len == 0)
            return "empty ciphertext";
        if (e->ciphertext.len > CN_CIPHERTEXT_MAX) {
            *status = CHAT__STATUS__TOO_LARGE;
            return "ciphertext too large";
        }
        for (size_t j = 0; j < i; j++)
            if (memcmp(m->envelopes[j]->device_id.data, e->device_id.data, CN_DEVICE_ID_LEN) == 0)
                return "duplicate recipient device";
    }
    return NULL;
}

/* Answers CONFLICT when the envelopes do not cover exactly the expected devices. */
static bool check_devices(cn_conn_t *c, uint64_t rid, const Chat__Send *m, const expected_t *e)
{
    ProtobufCBinaryData missing[2 * CN_DEVICES_HARD_MAX], stale[CN_RECIPIENTS_MAX];
    size_t nm = 0, ns = 0;
    for (uint32_t i = 0; i < e->n; i++)
        if (!device_in_envelopes(m, e->ids[i]))
            missing[nm++] = cn__pb_bytes(e->ids[i], CN_DEVICE_ID_LEN);
    for (size_t i = 0; i < m->n_envelopes; i++)
        if (!expected_has(e, m->envelopes[i]->device_id.data))
            stale[ns++] = m->envelopes[i]->device_id;
    if (nm == 0 && ns == 0)
        return true;
    Chat__Conflict cf;
    chat__conflict__init(&cf);
    cf.n_missing_devices = nm;
    cf.missing_devices = missing;
    cf.n_stale_devices = ns;
    cf.stale_devices = stale;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.status = CHAT__STATUS__CONFLICT;
    r.detail = cn__pb_str("device list mismatch");
    r.result_case = CHAT__RESPONSE__RESULT_CONFLICT;
    r.conflict = &cf;
    cn__conn_respond(c, &r);
    return false;
}

static void route_all(cn_server_t *s, cn_loop_t *here, const cn_rec_envelope_t *env,
                      cn_store_recipient_t *rcpt, uint32_t n, bool ephemeral, uint64_t sent_ns)
{
    cn_rec_envelope_t e = *env;
    for (uint32_t i = 0; i < n; i++) {
        e.ciphertext = rcpt[i].ciphertext;
        cn__delivery_route(s, here, rcpt[i].device_id, ephemeral ? 0 : rcpt[i].seq, &e, sent_ns);
    }
}

static void respond_ok(cn_conn_t *c, uint64_t rid, uint64_t server_time, bool duplicate,
                       uint32_t delivered_online)
{
    uint8_t frame[CN_PB_RESPONSE_FRAME_MAX];
    cn__conn_send_bytes(c, frame,
                        cn_pb_send_ok_frame(frame, rid, server_time, duplicate, delivered_online));
}

static void send_done(cn_conn_t *c, cn_pending_t *p)
{
    cn_server_t *s = p->loop->server;
    if (p->op.result == CN_OK) {
        cn__hist_observe(&s->counters.send_durable, cn__loop_since_us(p->loop, p->started_ns));
        if (p->op.u.send.duplicate) {
            atomic_fetch_add(&s->counters.messages_duplicate, 1);
        } else {
            atomic_fetch_add(&s->counters.messages_accepted, 1);
            for (uint32_t i = 0; i < p->op.u.send.n; i++)
                if (p->op.u.send.recipients[i].notify) {
                    cn__push_kick(s->push);
                    break;
                }
            route_all(s, p->loop, &p->op.u.send.env, p->op.u.send.recipients, p->op.u.send.n, false,
                      p->started_ns);
        }
    }
    if (!c)
        return;
    if (p->op.result == CN_OK)
        respond_ok(c, p->request_id, p->op.u.send.env.server_time, p->op.u.send.duplicate, 0);
    else if (p->op.result == CN_ETOOBIG)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__TOO_LARGE,
                                "too many recipient devices");
    else if (p->op.result == CN_ELIMIT)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__RATE_LIMITED,
                                "rate limited: the recipient's queue is full");
    else
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "not stored; retry with the same message_id");
}

/* Copies the frame's envelopes into the pending request (it outlives the frame). */
cn_pending_t *cn__send_pending_new(cn_conn_t *c, uint64_t rid, const Chat__Send *m, size_t n,
                                   size_t data_bytes)
{
    size_t bytes = n * sizeof(cn_store_recipient_t) + data_bytes;
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_SEND, send_done, bytes);
    if (!p)
        return NULL;
    p->op.u.send.max_queued_bytes = srv(c)->cfg.max_queued_bytes;
    cn_rec_envelope_t *env = &p->op.u.send.env;
    env->server_time = cn_now_ms();
    memcpy(env->message_id, m->message_id.data, CN_MESSAGE_ID_LEN);
    memcpy(env->from, c->handle, sizeof(env->from));
    memcpy(env->from_device, c->device_id, CN_DEVICE_ID_LEN);
    env->kind = (uint32_t)m->kind;
    env->has_group = m->group_id.len == CN_GROUP_ID_LEN;
    if (env->has_group)
        memcpy(env->group_id, m->group_id.data, CN_GROUP_ID_LEN);
    p->op.u.send.n = (uint32_t)n;
    p->op.u.send.recipients = p->extra;
    return p;
}

void cn__send_recipient(cn_conn_t *c, cn_store_recipient_t *r, const uint8_t *device,
                        cn_slice_t ciphertext)
{
    cn_route_t route; /* offline devices get a wake-up event */
    memcpy(r->device_id, device, CN_DEVICE_ID_LEN);
    r->ciphertext = ciphertext;
    r->notify = srv(c)->push && cn__registry_get(srv(c)->registry, device, &route) != CN_OK;
}

/* Copies the frame's envelopes into the pending request (it outlives the frame). */
static cn_pending_t *make_pending(cn_conn_t *c, uint64_t rid, const Chat__Send *m)
{
    size_t n = m->n_envelopes, bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += m->envelopes[i]->ciphertext.len;
    cn_pending_t *p = cn__send_pending_new(c, rid, m, n, bytes);
    if (!p)
        return NULL;
    uint8_t *data = (uint8_t *)((cn_store_recipient_t *)p->extra + n);
    for (size_t i = 0; i < n; i++) {
        const Chat__Envelope *e = m->envelopes[i];
        memcpy(data, e->ciphertext.data, e->ciphertext.len);
        cn__send_recipient(c, &p->op.u.send.recipients[i], e->device_id.data,
                           cn_slice(data, e->ciphertext.len));
        data += e->ciphertext.len;
    }
    return p;
}

static void send_ephemeral(cn_conn_t *c, uint64_t rid, cn_pending_t *p)
{
    cn_server_t *s = srv(c);
    uint32_t online = 0;
    cn_route_t route;
    for (uint32_t i = 0; i < p->op.u.send.n; i++)
        online += cn__registry_get(s->registry, p->op.u.send.recipients[i].device_id, &route) == 0;
    route_all(s, c->loop, &p->op.u.send.env, p->op.u.send.recipients, p->op.u.send.n, true,
              p->started_ns);
    respond_ok(c, rid, p->op.u.send.env.server_time, false, online);
    cn__pending_free(p);
}

void cn__send_submit(cn_conn_t *c, uint64_t rid, cn_pending_t *p, bool ephemeral)
{
    if (ephemeral)
        send_ephemeral(c, rid, p);
    else
        cn__pending_submit(c, p);
}

void cn__handle_send(cn_conn_t *c, uint64_t rid, const Chat__Send *m)
{
    Chat__Status status;
    if (m->sender_key_ciphertext.len) {
        cn__handle_group_send(c, rid, m);
        return;
    }
    const char *why = check_fields(m, &status);
    char to[CN_HANDLE_MAX + 1];
    if (!why && cn_handle_normalize(m->to, to) < 0)
        why = "invalid recipient handle";
    if (why) {
        cn__conn_respond_status(c, rid, status, why);
        return;
    }
    double bytes = 0;
    for (size_t i = 0; i < m->n_envelopes; i++)
        bytes += (double)m->envelopes[i]->ciphertext.len;
    if (!cn__conn_send_rate_ok(c, rid, bytes))
        return;
    /* Both device lists come from the user cache (node/usercache.c):
     * a link or revoke is invalidated there before it is answered. */
    cn_cached_user_t user, me;
    int rc = cn__user_get(srv(c), to, &user);
    if (rc == CN_ENOTFOUND || (rc == 0 && (user.disabled || user.ndevices == 0))) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "unknown user");
        return;
    }
    if (rc == 0 && strcmp(to, c->handle) != 0)
        rc = cn__user_get(srv(c), c->handle, &me);
    if (rc < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "storage unavailable");
        return;
    }
    expected_t expected = {.n = 0};
    expected_add(&expected, &user, c->device_id);
    if (strcmp(to, c->handle) != 0)
        expected_add(&expected, &me, c->device_id);
    if (!check_devices(c, rid, m, &expected))
        return;
    if (m->n_envelopes == 0) { /* a note to self from a user's only device */
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "no envelopes");
        return;
    }
    cn_pending_t *p = make_pending(c, rid, m);
    if (p)
        cn__send_submit(c, rid, p, m->ephemeral || m->kind == CHAT__KIND__TYPING);
}
