/*
 * Several devices per user (DESIGN section 3): LinkApprove by an existing
 * device, RevokeDevice by any device of the user, and the DevicesChanged
 * push that tells the user's connected devices about both.
 *
 * Approval is two requests, so the approver can show what it approves:
 * LinkApprove{code} answers a DeviceList with the one waiting device;
 * LinkApprove{code, device_id, certificate} links it, where certificate is
 * the approver's Ed25519 signature over the link certificate transcript.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

void cn__devices_changed(cn_server_t *s, const char *handle)
{
    cn_cached_user_t u;
    if (cn__user_get(s, handle, &u) < 0)
        return;
    ProtobufCBinaryData ids[CN_DEVICES_HARD_MAX];
    for (uint32_t i = 0; i < u.ndevices && i < CN_DEVICES_HARD_MAX; i++)
        ids[i] = cn__pb_bytes(u.devices[i], CN_DEVICE_ID_LEN);
    Chat__DevicesChanged dc;
    chat__devices_changed__init(&dc);
    dc.handle = cn__pb_str(handle);
    dc.n_device_ids = CN_MIN(u.ndevices, CN_DEVICES_HARD_MAX);
    dc.device_ids = ids;
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_DEVICES_CHANGED;
    f.devices_changed = &dc;
    for (uint32_t i = 0; i < dc.n_device_ids; i++)
        cn__push_to_device(s, u.devices[i], &f);
}

static void preview(cn_conn_t *c, uint64_t rid, const cn_link_t *l)
{
    Chat__DeviceInfo info;
    chat__device_info__init(&info);
    info.device_id = cn__pb_bytes(l->device_id, CN_DEVICE_ID_LEN);
    info.name = cn__pb_str(l->name);
    Chat__DeviceInfo *infos[1] = {&info};
    Chat__DeviceList list;
    chat__device_list__init(&list);
    list.handle = cn__pb_str(l->handle);
    list.n_devices = 1;
    list.devices = infos;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.result_case = CHAT__RESPONSE__RESULT_DEVICES;
    r.devices = &list;
    cn__conn_respond(c, &r);
}

/* Tells the waiting device's loop that it was linked. */
static void notify_linked(cn_server_t *s, const cn_link_t *l, const cn_rec_device_t *d)
{
    Chat__LinkComplete lc;
    chat__link_complete__init(&lc);
    lc.device_id = cn__pb_bytes(l->device_id, CN_DEVICE_ID_LEN);
    lc.handle = cn__pb_str(l->handle);
    lc.approved_by = cn__pb_bytes(d->approved_by, CN_DEVICE_ID_LEN);
    lc.certificate = cn__pb_bytes(d->cert, CN_SIGNATURE_LEN);
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_LINK_COMPLETE;
    f.link_complete = &lc;
    size_t n = chat__server_frame__get_packed_size(&f);
    cn_msg_t *m = cn__msg_new(CN_MSG_LINKED, n);
    if (!m || l->loop >= s->nloops) {
        free(m);
        return;
    }
    chat__server_frame__pack(&f, m->data);
    m->conn_id = l->conn_id;
    cn__loop_post(s->loops[l->loop], m);
}

static void link_done(cn_conn_t *c, cn_pending_t *p)
{
    cn_server_t *s = p->loop->server;
    const cn_link_t *l = p->extra;
    /* Before LinkComplete, DevicesChanged and the answer (usercache.c). */
    cn__usercache_user_invalidate(s->usercache, l->handle);
    if (p->op.result == CN_OK) {
        cn_log_info("device_linked", "user=%s", l->handle);
        notify_linked(s, l, &p->op.u.reg.device);
        cn__devices_changed(s, l->handle);
    }
    if (!c)
        return;
    switch (p->op.result) {
    case CN_OK:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__OK, "");
        break;
    case CN_ELIMIT:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__TOO_LARGE,
                                "the user has the maximum number of devices");
        break;
    case CN_EEXIST:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__CONFLICT,
                                "device already registered");
        break;
    default:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
    }
}

static bool certificate_ok(const cn_conn_t *c, const cn_link_t *l, ProtobufCBinaryData cert)
{
    if (cert.len != CN_SIGNATURE_LEN)
        return false;
    cn_buf_t t;
    cn_buf_init(&t);
    int rc = cn_transcript_link_cert(&t, l->handle, l->device_id);
    if (rc == 0)
        rc = cn_sig_verify(c->device_id, t.data, t.len, cert.data);
    cn_buf_dispose(&t);
    return rc == 0;
}

void cn__handle_link_approve(cn_conn_t *c, uint64_t rid, const Chat__LinkApprove *m)
{
    cn_link_t l;
    if (!m->code || cn__links_find(srv(c)->links, m->code, false, &l) < 0 ||
        strcmp(l.handle, c->handle) != 0) {
        /* Another user's code reads as unknown: codes are not enumerable. */
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "no such link code");
        return;
    }
    if (m->device_id.len == 0 && m->certificate.len == 0) {
        preview(c, rid, &l);
        return;
    }
    if (m->device_id.len != CN_DEVICE_ID_LEN ||
        memcmp(m->device_id.data, l.device_id, CN_DEVICE_ID_LEN) != 0 ||
        !certificate_ok(c, &l, m->certificate)) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "certificate does not match the waiting device");
        return;
    }
    if (cn__links_find(srv(c)->links, m->code, true, &l) < 0) { /* raced by another approval */
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "no such link code");
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_LINK, link_done, sizeof(cn_link_t));
    if (!p)
        return;
    memcpy(p->extra, &l, sizeof(l));
    memcpy(p->op.u.reg.handle, l.handle, sizeof(l.handle));
    memcpy(p->op.u.reg.device_id, l.device_id, CN_DEVICE_ID_LEN);
    cn_rec_device_t *d = &p->op.u.reg.device;
    memcpy(d->user, l.handle, sizeof(l.handle));
    memcpy(d->name, l.name, sizeof(l.name));
    d->created = cn_now_ms();
    d->has_cert = true;
    memcpy(d->cert, m->certificate.data, CN_SIGNATURE_LEN);
    memcpy(d->approved_by, c->device_id, CN_DEVICE_ID_LEN);
    p->op.u.reg.max_devices = srv(c)->cfg.max_devices;
    cn__pending_submit(c, p);
}

static void revoke_done(cn_conn_t *c, cn_pending_t *p)
{
    cn_server_t *s = p->loop->server;
    /* Before the kick, DevicesChanged and the answer (usercache.c). */
    cn__usercache_user_invalidate(s->usercache, (const char *)p->extra);
    if (p->op.result == CN_OK) {
        cn__kick_device(s, p->op.u.revoke.device_id, "device revoked");
        cn__devices_changed(s, (const char *)p->extra);
    }
    if (!c)
        return;
    if (p->op.result == CN_OK)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__OK, "");
    else if (p->op.result == CN_ENOTFOUND)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__NOT_FOUND, "no such device");
    else
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
}

void cn__handle_revoke_device(cn_conn_t *c, uint64_t rid, const Chat__RevokeDevice *m)
{
    cn_rec_device_t d;
    if (m->device_id.len != CN_DEVICE_ID_LEN ||
        cn_store_device_get(srv(c)->store, m->device_id.data, &d) < 0 || d.revoked ||
        strcmp(d.user, c->handle) != 0) {
        /* Only the user's own devices; others read as unknown. */
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "no such device");
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_REVOKE, revoke_done, CN_HANDLE_MAX + 1);
    if (!p)
        return;
    memcpy(p->op.u.revoke.device_id, m->device_id.data, CN_DEVICE_ID_LEN);
    memcpy(p->extra, c->handle, sizeof(c->handle));
    cn__pending_submit(c, p);
}
