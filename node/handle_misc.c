/*
 * Ack (batched deletes of delivered mailbox entries), Ping and GetDevices.
 */
#include "node/node_internal.h"

#include <string.h>

static void ack_done(cn_conn_t *c, cn_pending_t *p)
{
    if (p->op.result == CN_OK)
        atomic_fetch_add(&p->loop->server->counters.messages_acked, p->op.u.ack.deleted);
    if (!c)
        return;
    if (p->op.result != CN_OK) {
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
        return;
    }
    if (p->silent_ok)
        return; /* one write per device and group message saved (PROTOCOL.md) */
    uint8_t frame[CN_PB_RESPONSE_FRAME_MAX];
    cn__conn_send_bytes(c, frame, cn_pb_ack_ok_frame(frame, p->request_id, p->op.u.ack.deleted));
}

void cn__handle_ack(cn_conn_t *c, uint64_t rid, const Chat__Ack *m)
{
    if (m->n_seqs == 0 || m->n_seqs > CN_ACK_SEQS_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "1 to 1024 seqs per ack");
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_ACK, ack_done, m->n_seqs * sizeof(uint64_t));
    if (!p)
        return;
    memcpy(p->extra, m->seqs, m->n_seqs * sizeof(uint64_t));
    memcpy(p->op.u.ack.device_id, c->device_id, CN_DEVICE_ID_LEN);
    p->op.u.ack.n = (uint32_t)m->n_seqs;
    p->op.u.ack.seqs = p->extra;
    p->silent_ok = m->silent_ok;
    cn__pending_submit(c, p);
}

void cn__handle_ping(cn_conn_t *c, uint64_t rid, const Chat__Ping *m)
{
    Chat__Pong pong;
    chat__pong__init(&pong);
    pong.client_time = m->client_time;
    pong.server_time = cn_now_ms();
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.result_case = CHAT__RESPONSE__RESULT_PONG;
    r.pong = &pong;
    cn__conn_respond(c, &r);
}

void cn__handle_get_devices(cn_conn_t *c, uint64_t rid, const Chat__GetDevices *m)
{
    char handle[CN_HANDLE_MAX + 1];
    cn_cached_user_t user;
    cn_store_t *store = c->loop->server->store;
    if (cn_handle_normalize(m->handle, handle) < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "invalid handle");
        return;
    }
    int rc = cn__user_get(c->loop->server, handle, &user);
    if (rc < 0 || user.disabled) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "unknown user");
        return;
    }
    Chat__DeviceInfo info[CN_DEVICES_HARD_MAX], *infop[CN_DEVICES_HARD_MAX];
    cn_rec_device_t dev[CN_DEVICES_HARD_MAX];
    size_t k = 0;
    for (uint32_t i = 0; i < user.ndevices && i < CN_DEVICES_HARD_MAX; i++) {
        if (cn_store_device_get(store, user.devices[i], &dev[k]) < 0 || dev[k].revoked)
            continue;
        chat__device_info__init(&info[k]);
        info[k].device_id = cn__pb_bytes(user.devices[i], CN_DEVICE_ID_LEN);
        info[k].name = dev[k].name;
        info[k].created = dev[k].created;
        infop[k] = &info[k];
        k++;
    }
    Chat__DeviceList list;
    chat__device_list__init(&list);
    list.handle = handle;
    list.n_devices = k;
    list.devices = infop;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.result_case = CHAT__RESPONSE__RESULT_DEVICES;
    r.devices = &list;
    cn__conn_respond(c, &r);
}
