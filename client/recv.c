/*
 * Receiving: the node pushes the mailbox in seq order, then MailboxDrained,
 * then live deliveries. Each new message is opened (the per-device `open`
 * seam, the identity until the Double Ratchet), decoded, handed to the
 * caller, remembered in the seen-set and only then acked, in batches.
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACK_BATCH       64
#define KEEPALIVE_MS    20000
#define ACK_WAIT_MAX_MS 5000

/* The inverse of the sender's seal; the identity until E2E lands. */
static int open_from_device(cn_client_t *c, const uint8_t device[CN_DEVICE_ID_LEN],
                            const ProtobufCBinaryData *ct, const uint8_t **pt, size_t *len)
{
    (void)c;
    (void)device;
    *pt = ct->data;
    *len = ct->len;
    return CN_OK;
}

static int queue_ack(cn_client_t *c, uint64_t seq)
{
    if (c->nacks == c->acks_cap) {
        size_t cap = c->acks_cap ? c->acks_cap * 2 : 128;
        uint64_t *a = realloc(c->acks, cap * sizeof(*a));
        CN_ENSURE(a != NULL, CN_ENOMEM);
        c->acks = a;
        c->acks_cap = cap;
    }
    c->acks[c->nacks++] = seq;
    return CN_OK;
}

int cn__client_send_acks(cn_client_t *c, uint64_t deadline_ms)
{
    if (c->nacks == 0 || c->conn == NULL)
        return CN_OK;
    /* What was shown must be remembered before the node may forget it. */
    CN_TRY(cn__seen_sync(c->seen));
    while (c->nacks > 0) {
        CN_ENSURE(c->nack_rids < CN__ACKS_INFLIGHT_MAX, CN_OK);
        size_t n = CN_MIN(c->nacks, (size_t)CN_ACK_SEQS_MAX);
        Chat__Ack ack;
        chat__ack__init(&ack);
        ack.n_seqs = n;
        ack.seqs = c->acks;
        Chat__ClientFrame f;
        chat__client_frame__init(&f);
        f.request_id = cn__client_rid(c);
        f.body_case = CHAT__CLIENT_FRAME__BODY_ACK;
        f.ack = &ack;
        CN_TRY(cn__client_send(c, &f, deadline_ms));
        c->ack_rids[c->nack_rids++] = f.request_id;
        memmove(c->acks, c->acks + n, (c->nacks - n) * sizeof(*c->acks));
        c->nacks -= n;
    }
    return CN_OK;
}

static bool deliver_valid(const Chat__Deliver *d)
{
    char norm[CN_HANDLE_MAX + 1];
    return d->message_id.len == CN_MESSAGE_ID_LEN && d->from_device.len == CN_DEVICE_ID_LEN &&
           d->from != NULL && cn_handle_normalize(d->from, norm) == CN_OK &&
           d->ciphertext.len <= CN_CIPHERTEXT_MAX;
}

/* Hands one new message to the caller. */
static int hand_out(cn_client_t *c, const Chat__Deliver *d)
{
    cn_client_message_t m;
    memset(&m, 0, sizeof(m));
    m.seq = d->seq;
    memcpy(m.message_id, d->message_id.data, CN_MESSAGE_ID_LEN);
    m.from = d->from;
    memcpy(m.from_device, d->from_device.data, CN_DEVICE_ID_LEN);
    m.kind = d->kind;
    m.server_time = d->server_time;
    m.ephemeral = d->ephemeral;
    const uint8_t *pt = NULL;
    size_t len = 0;
    if (open_from_device(c, m.from_device, &d->ciphertext, &pt, &len) == CN_OK)
        m.decoded = cn_content_decode(pt, len, &m.content) == CN_OK;
    return c->msg_cb(c->msg_ud, &m);
}

int cn__client_on_deliver(cn_client_t *c, const Chat__Deliver *d, uint64_t deadline_ms)
{
    if (c->msg_cb == NULL)
        return CN_OK; /* not receiving: left in the mailbox for the next recv */
    if (!deliver_valid(d)) {
        /* Acked so that one bad entry cannot block the mailbox forever. */
        cn_log_warn("client.bad_deliver", "seq=%llu", (unsigned long long)d->seq);
        return d->ephemeral ? CN_OK : queue_ack(c, d->seq);
    }
    const uint8_t *dev = d->from_device.data, *id = d->message_id.data;
    if (!cn__seen_has(c->seen, dev, id)) {
        int rc = hand_out(c, d);
        if (rc < 0) {
            c->msg_err = rc;
            return rc;
        }
        if (d->ephemeral)
            return CN_OK; /* never stored by the node: nothing to ack or dedupe */
        CN_TRY(cn__seen_add(c->seen, dev, id));
    }
    if (d->ephemeral)
        return CN_OK;
    CN_TRY(queue_ack(c, d->seq));
    if (c->nacks >= ACK_BATCH)
        return cn__client_send_acks(c, deadline_ms);
    return CN_OK;
}

/* Pumps the session until cond() holds or until the deadline. */
static int pump_until(cn_client_t *c, uint64_t deadline, bool (*cond)(const cn_client_t *))
{
    cn__login_t auth = {0};
    while (!cond(c)) {
        CN_TRY(cn__client_connect(c, &auth, deadline));
        CN_TRY(cn__client_send_acks(c, deadline));
        uint64_t now = cn__now_ms();
        uint64_t until = CN_MIN(deadline, now + KEEPALIVE_MS);
        Chat__ServerFrame *f = NULL;
        int rc = cn__client_next_response(c, until, &f);
        if (f != NULL) {
            cn_log_warn("client.stray_response", "request_id=%llu",
                        (unsigned long long)f->response->request_id);
            chat__server_frame__free_unpacked(f, NULL);
        }
        if (rc == CN_ETIMEDOUT) {
            if (cn__now_ms() >= deadline)
                return CN_ETIMEDOUT;
            if (c->conn != NULL && cn__conn_ping(c->conn, deadline) == CN_ECLOSED)
                cn__client_disconnect(c);
            continue;
        }
        if (rc == CN_ECLOSED || rc == CN_EAGAIN)
            continue; /* a push was handled, or reconnect (the mailbox comes again) */
        CN_TRY(rc);
    }
    return CN_OK;
}

static bool is_drained(const cn_client_t *c)
{
    return c->drained;
}

static bool never(const cn_client_t *c)
{
    (void)c;
    return false;
}

static bool acks_answered(const cn_client_t *c)
{
    return c->nacks == 0 && c->nack_rids == 0;
}

static int recv_run(cn_client_t *c, uint32_t wait_ms, uint64_t deadline)
{
    cn__login_t auth = {0};
    CN_TRY(cn__client_connect(c, &auth, deadline));
    int rc = cn__client_flush_until(c, deadline, NULL, NULL);
    if (rc < 0 && rc != CN_ENOTFOUND && rc != CN_EINVAL && rc != CN_ETOOBIG)
        return rc;
    CN_TRY(pump_until(c, deadline, is_drained));
    rc = pump_until(c, cn__now_ms() + wait_ms, never);
    CN_ENSURE(rc == CN_ETIMEDOUT, rc);
    /* Wait (briefly) until the node confirmed every ack. */
    CN_TRY(cn__client_send_acks(c, deadline));
    if (c->conn != NULL)
        (void)pump_until(c, cn__now_ms() + ACK_WAIT_MAX_MS, acks_answered);
    return CN_OK;
}

int cn_client_recv(cn_client_t *c, uint32_t wait_ms, cn_client_message_cb cb, void *ud)
{
    char path[CN__PATH_MAX];
    CN_ENSURE(cb != NULL, CN_EINVAL);
    c->refused = false;
    if (c->seen == NULL) {
        snprintf(path, sizeof(path), "%s/seen", c->home);
        CN_TRY(cn__seen_open(path, CN_CLIENT_SEEN_MAX, &c->seen));
    }
    c->msg_cb = cb;
    c->msg_ud = ud;
    c->msg_err = CN_OK;
    /* Reconnect so that the mailbox is pushed to a receiving session. */
    cn__client_disconnect(c);
    int rc = recv_run(c, wait_ms, cn__now_ms() + c->timeout_ms);
    c->msg_cb = NULL;
    c->msg_ud = NULL;
    return rc;
}
