/*
 * Receiving: the node pushes the mailbox in seq order, then MailboxDrained,
 * then live deliveries. Each new message is decrypted (client/e2e.c),
 * decoded, handed to the caller, remembered in the seen-set and only then
 * acked, in batches. A message that does not decrypt is handed out with an
 * error and acked like any other: it can never decrypt later. The one
 * exception is a group message whose sender key has not come yet: it
 * waits in the pending set (client/skreq.c) and is handed out when the
 * key comes.
 *
 * Test-only faults (CHATCLIENT_TEST_FAULTS="drop=N,reorder=N,dup=N", per
 * mille): before decryption a delivery may be dropped (acked unseen), held
 * back and handed out after the next one, or decrypted a second time,
 * which the ratchet must refuse, or get one ciphertext bit flipped (the
 * message must then be reported undecryptable). Each is logged
 * (event=client.test_*).
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACK_BATCH       64
#define KEEPALIVE_MS    20000
#define ACK_WAIT_MAX_MS 5000

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

int cn__client_send_acks(cn_client_t *c, uint64_t deadline_ms, bool confirm)
{
    if (c->conn == NULL)
        return CN_OK;
    if (confirm && c->nacks == 0 && c->acks_unconfirmed)
        CN_TRY(queue_ack(c, c->last_ack_seq));
    if (c->nacks == 0)
        return CN_OK;
    /* What was shown must be remembered before the node may forget it;
     * then the sessions and prekeys it changed (client/e2e.c explains the
     * order). */
    CN_TRY(cn__skreq_save(c)); /* what waits for a key outlives the ack */
    CN_TRY(cn__seen_sync(c->seen));
    CN_TRY(cn__e2e_save(c));
    cn__client_release_prekeys(c);
    while (c->nacks > 0) {
        CN_ENSURE(!confirm || c->nack_rids < CN__ACKS_INFLIGHT_MAX, CN_OK);
        size_t n = CN_MIN(c->nacks, (size_t)CN_ACK_SEQS_MAX);
        Chat__Ack ack;
        chat__ack__init(&ack);
        ack.n_seqs = n;
        ack.seqs = c->acks;
        ack.silent_ok = !confirm;
        Chat__ClientFrame f;
        chat__client_frame__init(&f);
        f.request_id = cn__client_rid(c);
        f.body_case = CHAT__CLIENT_FRAME__BODY_ACK;
        f.ack = &ack;
        CN_TRY(cn__client_send(c, &f, deadline_ms));
        if (confirm)
            c->ack_rids[c->nack_rids++] = f.request_id;
        c->last_ack_seq = c->acks[n - 1];
        c->acks_unconfirmed = !confirm;
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

/* Local failures stop receiving; everything else is the message's fault. */
static bool local_failure(int rc)
{
    return rc == CN_EIO || rc == CN_ENOMEM || rc == CN_EINTERNAL;
}

/* Group messages are sender-key ciphertexts; everything else (sender key
 * distributions and control messages tagged with a group too) is a
 * pairwise envelope. */
static bool is_group_ciphertext(const Chat__Deliver *d)
{
    return d->group_id.len == CN_GROUP_ID_LEN &&
           (d->kind == CHAT__KIND__MESSAGE || d->kind == CHAT__KIND__RECEIPT ||
            d->kind == CHAT__KIND__TYPING);
}

/* What the library itself does with a decoded message before the caller
 * sees it: keys, sender keys, files, the history archive. */
static int digest_content(cn_client_t *c, const Chat__Deliver *d, cn_client_message_t *m,
                          const cn_buf_t *pt, char *peer, char *path)
{
    const cn_content_t *ct = &m->content;
    bool mine = strcmp(d->from, c->handle) == 0;
    if (ct->peer != NULL && mine) {
        memcpy(peer, ct->peer, ct->peer_len);
        peer[ct->peer_len] = '\0';
        m->peer = peer;
    }
    if (ct->type == CN_CONTENT_SENDER_KEY) {
        m->has_group = true;
        memcpy(m->group_id, ct->group_id, CN_GROUP_ID_LEN);
        int rc = cn__group_on_skdist(c, d->from, m->from_device, ct);
        if (rc < 0)
            cn_log_warn("client.sender_key_refused", "err=%s", cn_strerror(rc));
        return rc == CN_EIO || rc == CN_ENOMEM ? rc : CN_OK;
    }
    if (ct->type == CN_CONTENT_SENDER_KEY_REQUEST && d->kind == CHAT__KIND__CONTROL) {
        cn__skreq_received(c, d->from, m->from_device, ct);
        return CN_OK;
    }
    if (ct->type == CN_CONTENT_KEYS && mine) {
        c->got_keys = true;
        return cn__history_adopt(c, ct->history_key, ct->archive_key);
    }
    if (d->kind != CHAT__KIND__MESSAGE)
        return CN_OK;
    if (ct->type == CN_CONTENT_FILE) {
        c->defer++;
        cn__media_fetch(c, m, path, CN__PATH_MAX);
        c->defer--;
        if (c->conn == NULL)
            return CN_ECLOSED; /* dropped mid-download: the mailbox comes again */
    }
    if (ct->type != CN_CONTENT_TEXT && ct->type != CN_CONTENT_FILE)
        return CN_OK;
    const char *thread = m->has_group ? NULL : mine ? m->peer : d->from;
    if (!m->has_group && thread == NULL)
        thread = d->from; /* a note to self */
    cn_slice_t body = cn_buf_unread(pt);
    int rc =
        cn__history_queue(c, d->from, m->from_device, m->message_id, thread,
                          m->has_group ? m->group_id : NULL, body.base, body.len, d->server_time);
    return rc == CN_EIO || rc == CN_ENOMEM ? rc : CN_OK;
}

/* A group message that its sender key has not reached yet: kept, and the
 * key asked for. False when it cannot wait (ephemeral, malformed). */
static int pend(cn_client_t *c, const Chat__Deliver *d, bool *pended)
{
    cn__pending_msg_t m;
    memset(&m, 0, sizeof(m));
    *pended = false;
    if (d->ephemeral || cn_senderkey_message_info(d->ciphertext.data, d->ciphertext.len, &m.key_id,
                                                  &m.iteration) != CN_OK)
        return CN_OK;
    memcpy(m.gid, d->group_id.data, CN_GROUP_ID_LEN);
    memcpy(m.dev, d->from_device.data, CN_DEVICE_ID_LEN);
    memcpy(m.message_id, d->message_id.data, CN_MESSAGE_ID_LEN);
    if (cn_handle_normalize(d->from, m.from) != CN_OK)
        return CN_OK;
    m.kind = (uint8_t)d->kind;
    m.seq = d->seq;
    m.server_time = d->server_time;
    CN_TRY(cn__skreq_pend(c, &m, d->ciphertext.data, d->ciphertext.len));
    *pended = true;
    return CN_OK;
}

static int release_pending(cn_client_t *c, const uint8_t *gid, const uint8_t *dev);

/* Hands one new message to the caller. A message from the pending set
 * (from_pending) that still has no key returns CN_EAGAIN and stays. */
static int hand_out(cn_client_t *c, const Chat__Deliver *d, bool from_pending)
{
    cn_client_message_t m;
    char peer[CN_HANDLE_MAX + 1], gname[CN_CLIENT_NAME_MAX + 1];
    char *path = malloc(CN__PATH_MAX);
    CN_ENSURE(path != NULL, CN_ENOMEM);
    memset(&m, 0, sizeof(m));
    m.seq = d->seq;
    memcpy(m.message_id, d->message_id.data, CN_MESSAGE_ID_LEN);
    m.from = d->from;
    memcpy(m.from_device, d->from_device.data, CN_DEVICE_ID_LEN);
    m.kind = d->kind;
    m.server_time = d->server_time;
    m.ephemeral = d->ephemeral;
    cn_buf_t pt;
    cn_buf_init(&pt);
    const char *why = NULL;
    int rc;
    if (is_group_ciphertext(d)) {
        m.has_group = true;
        memcpy(m.group_id, d->group_id.data, CN_GROUP_ID_LEN);
        rc = cn__group_open(c, m.group_id, m.from_device, d->ciphertext.data, d->ciphertext.len,
                            &pt, &why);
    } else {
        rc = cn__e2e_open(c, d->from, m.from_device, d->ciphertext.data, d->ciphertext.len, &pt,
                          &why);
    }
    if (rc < 0 && local_failure(rc))
        goto out;
    /* No key from this device yet, or not this key id, or beyond reach. */
    if (m.has_group && (rc == CN_ENOTFOUND || rc == CN_ELIMIT)) {
        bool pended = from_pending;
        int prc = from_pending ? CN_OK : pend(c, d, &pended);
        if (prc < 0 || pended) {
            rc = prc < 0 ? prc : from_pending ? CN_EAGAIN : CN_OK;
            goto out;
        }
    }
    if (rc == CN_OK) {
        m.decoded = cn_content_decode(pt.data, pt.len, &m.content) == CN_OK;
        /* The group a message claims must be the group it came through. */
        if (m.decoded && m.has_group &&
            (m.content.group_id == NULL ||
             memcmp(m.content.group_id, m.group_id, CN_GROUP_ID_LEN) != 0))
            m.decoded = false;
        if (!m.decoded)
            m.error = "undecodable content";
    } else {
        m.error = why ? why : "decryption failed";
        cn_log_info("client.decrypt_failed", "seq=%llu err=%s", (unsigned long long)d->seq,
                    cn_strerror(rc));
    }
    rc = m.decoded ? digest_content(c, d, &m, &pt, peer, path) : CN_OK;
    if (rc < 0)
        goto out;
    if (m.has_group) {
        cn__group_name(c, m.group_id, gname, sizeof(gname));
        m.group_name = gname[0] ? gname : NULL;
    }
    rc = c->msg_cb(c->msg_ud, &m);
    /* A sender key that came: what waited for it is opened now, in order. */
    if (rc == CN_OK && m.decoded && m.content.type == CN_CONTENT_SENDER_KEY)
        rc = release_pending(c, m.group_id, m.from_device);
out:
    cn_buf_wipe(&pt);
    free(path);
    return rc;
}

static int release_pending(cn_client_t *c, const uint8_t *gid, const uint8_t *dev)
{
    cn__pending_t *p;
    CN_TRY(cn__skreq_pending(c, &p));
    for (size_t i = 0; i < p->n;) {
        cn__pending_msg_t *m = &p->v[i];
        if (memcmp(m->gid, gid, CN_GROUP_ID_LEN) != 0 ||
            memcmp(m->dev, dev, CN_DEVICE_ID_LEN) != 0) {
            i++;
            continue;
        }
        Chat__Deliver d;
        chat__deliver__init(&d);
        d.seq = m->seq;
        d.message_id = cn__bin(m->message_id, CN_MESSAGE_ID_LEN);
        d.from = m->from;
        d.from_device = cn__bin(m->dev, CN_DEVICE_ID_LEN);
        d.kind = (Chat__Kind)m->kind;
        d.server_time = m->server_time;
        d.group_id = cn__bin(m->gid, CN_GROUP_ID_LEN);
        d.ciphertext = cn__bin(m->ct, m->ct_len);
        int rc = hand_out(c, &d, true);
        if (rc == CN_EAGAIN) {
            i++; /* still no key for it (another key id): it waits on */
            continue;
        }
        CN_TRY(rc);
        cn__pending_remove(p, i); /* handed out (opened, or with its error) */
    }
    return CN_OK;
}

/* Test faults: a second decryption of a delivered envelope must fail. */
static void fault_dup(cn_client_t *c, const Chat__Deliver *d)
{
    cn_buf_t pt;
    cn_buf_init(&pt);
    const char *why = NULL;
    char id[2 * CN_MESSAGE_ID_LEN + 1];
    cn_hex_encode(id, d->message_id.data, CN_MESSAGE_ID_LEN);
    int rc = cn__e2e_open(c, d->from, d->from_device.data, d->ciphertext.data, d->ciphertext.len,
                          &pt, &why);
    if (rc == CN_OK)
        cn_log_error("client.test_dup_accepted", "id=%s", id);
    else
        cn_log_warn("client.test_dup_rejected", "id=%s err=%s", id, cn_strerror(rc));
    cn_buf_wipe(&pt);
}

static int deliver_one(cn_client_t *c, const Chat__Deliver *d, uint64_t deadline_ms, bool dup)
{
    if (!deliver_valid(d)) {
        /* Acked so that one bad entry cannot block the mailbox forever. */
        cn_log_warn("client.bad_deliver", "seq=%llu", (unsigned long long)d->seq);
        return d->ephemeral ? CN_OK : queue_ack(c, d->seq);
    }
    const uint8_t *dev = d->from_device.data, *id = d->message_id.data;
    if (!cn__seen_has(c->seen, dev, id)) {
        int rc = hand_out(c, d, false);
        if (rc == CN_ECLOSED)
            return rc; /* not acked: it comes again on the next connection */
        if (rc < 0) {
            c->msg_err = rc;
            return rc;
        }
        if (dup)
            fault_dup(c, d);
        if (d->ephemeral)
            return CN_OK; /* never stored by the node: nothing to ack or dedupe */
        CN_TRY(cn__seen_add(c->seen, dev, id));
    }
    if (d->ephemeral)
        return CN_OK;
    CN_TRY(queue_ack(c, d->seq));
    if (c->nacks >= ACK_BATCH)
        return cn__client_send_acks(c, deadline_ms, false);
    return CN_OK;
}

/* Hands out a delivery held back by the reorder fault. */
static int release_held(cn_client_t *c, uint64_t deadline_ms)
{
    if (c->faults.held == NULL || c->msg_cb == NULL)
        return CN_OK;
    Chat__Deliver *d = chat__deliver__unpack(NULL, c->faults.held_len, c->faults.held);
    free(c->faults.held);
    c->faults.held = NULL;
    CN_ENSURE(d != NULL, CN_EINTERNAL);
    int rc = deliver_one(c, d, deadline_ms, false);
    chat__deliver__free_unpacked(d, NULL);
    return rc;
}

int cn__client_on_deliver(cn_client_t *c, const Chat__Deliver *d, uint64_t deadline_ms)
{
    if (c->msg_cb == NULL)
        return CN_OK; /* not receiving: left in the mailbox for the next recv */
    cn__faults_t *f = &c->faults;
    if (!f->on || d->ephemeral || !deliver_valid(d))
        return deliver_one(c, d, deadline_ms, false);
    uint32_t r = cn_random_uniform(1000);
    char id[2 * CN_MESSAGE_ID_LEN + 1];
    cn_hex_encode(id, d->message_id.data, CN_MESSAGE_ID_LEN);
    if (r < f->drop && !cn__seen_has(c->seen, d->from_device.data, d->message_id.data)) {
        cn_log_warn("client.test_drop", "id=%s", id);
        return queue_ack(c, d->seq); /* lost: never decrypted */
    }
    if (r < f->drop + f->reorder && f->held == NULL) {
        size_t n = chat__deliver__get_packed_size(d);
        f->held = malloc(n);
        CN_ENSURE(f->held != NULL, CN_ENOMEM);
        f->held_len = chat__deliver__pack(d, f->held);
        cn_log_warn("client.test_hold", "id=%s", id);
        return CN_OK;
    }
    uint32_t dup_end = f->drop + f->reorder + f->dup;
    if (r >= dup_end && r < dup_end + f->corrupt && d->ciphertext.len > 0 &&
        !cn__seen_has(c->seen, d->from_device.data, d->message_id.data)) {
        Chat__Deliver copy = *d;
        uint8_t *ct = malloc(d->ciphertext.len);
        CN_ENSURE(ct != NULL, CN_ENOMEM);
        memcpy(ct, d->ciphertext.data, d->ciphertext.len);
        ct[cn_random_uniform((uint32_t)d->ciphertext.len)] ^= 0x01;
        copy.ciphertext.data = ct;
        cn_log_warn("client.test_corrupt", "id=%s", id);
        int rc = deliver_one(c, &copy, deadline_ms, false);
        free(ct);
        CN_TRY(rc);
        return release_held(c, deadline_ms);
    }
    CN_TRY(deliver_one(c, d, deadline_ms, r < dup_end));
    return release_held(c, deadline_ms);
}

/* Pumps the session until cond() holds or until the deadline. */
static int pump_until(cn_client_t *c, uint64_t deadline, bool (*cond)(const cn_client_t *))
{
    cn__login_t auth = {0};
    while (!cond(c)) {
        CN_TRY(cn__client_connect(c, &auth, deadline));
        CN_TRY(cn__client_send_acks(c, deadline, false));
        uint64_t now = cn__now_ms();
        uint64_t until = CN_MIN(deadline, now + KEEPALIVE_MS);
        Chat__ServerFrame *f = NULL;
        int rc = cn__client_next_response(c, until, &f);
        if (f != NULL) { /* a silent Ack's failure among them (send_acks) */
            cn_log_warn("client.stray_response", "request_id=%llu status=%s",
                        (unsigned long long)f->response->request_id,
                        cn_client_status_name(f->response->status));
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

/* Answers the sender key requests that came while receiving (they need
 * requests of their own, so not from inside a push). */
static int answer_requests(cn_client_t *c, uint64_t deadline, size_t *queued)
{
    *queued = 0;
    if (c->nskreq_in == 0)
        return CN_OK;
    int rc = cn__skreq_answer(c, deadline, queued);
    if (rc < 0 && !local_failure(rc)) {
        cn_log_warn("client.sender_key_request_unanswered", "err=%s", cn_strerror(rc));
        rc = CN_OK;
    }
    return rc;
}

static int recv_run(cn_client_t *c, uint32_t wait_ms, uint64_t deadline)
{
    size_t answered;
    cn__login_t auth = {0};
    CN_TRY(cn__client_connect(c, &auth, deadline));
    int rc = cn__client_flush_until(c, deadline, NULL, NULL);
    if (rc < 0 && rc != CN_ENOTFOUND && rc != CN_EINVAL && rc != CN_ETOOBIG)
        return rc;
    CN_TRY(pump_until(c, deadline, is_drained));
    CN_TRY(release_held(c, deadline));
    rc = pump_until(c, cn__now_ms() + wait_ms, never);
    CN_ENSURE(rc == CN_ETIMEDOUT, rc);
    CN_TRY(release_held(c, deadline));
    CN_TRY(answer_requests(c, deadline, &answered));
    /* History entries of what arrived and sender key requests and answers
     * go out (best effort), then the acks are confirmed (briefly). */
    rc = cn__client_flush_until(c, deadline, NULL, NULL);
    if (rc < 0 && rc != CN_ENOTFOUND && rc != CN_EINVAL && rc != CN_ETOOBIG)
        return rc;
    CN_TRY(cn__client_send_acks(c, deadline, true));
    if (c->conn != NULL)
        (void)pump_until(c, cn__now_ms() + ACK_WAIT_MAX_MS, acks_answered);
    return CN_OK;
}

static int open_seen(cn_client_t *c)
{
    char path[CN__PATH_MAX];
    if (c->seen == NULL) {
        CN_TRY(cn__home_path(c, "seen", path));
        CN_TRY(cn__seen_open(path, CN_CLIENT_SEEN_MAX, &c->seen));
    }
    return CN_OK;
}

int cn_client_poll(cn_client_t *c, uint32_t wait_ms, cn_client_message_cb cb, void *ud)
{
    CN_ENSURE(cb != NULL, CN_EINVAL);
    c->refused = false;
    CN_TRY(open_seen(c));
    /* A connection made while nobody was receiving has deliveries that
     * were left unacked: reconnect so that the mailbox comes again. */
    if (c->conn != NULL && !c->poll_conn)
        cn__client_disconnect(c);
    c->msg_cb = cb;
    c->msg_ud = ud;
    c->msg_err = CN_OK;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    cn__login_t auth = {0};
    int rc = cn__client_connect(c, &auth, deadline);
    if (rc == CN_OK) {
        c->poll_conn = true;
        rc = cn__client_flush_until(c, deadline, NULL, NULL);
        if (rc == CN_ENOTFOUND || rc == CN_EINVAL || rc == CN_ETOOBIG)
            rc = CN_OK; /* refused entries left the outbox; the caller learns via recv */
    }
    if (rc == CN_OK) {
        rc = pump_until(c, cn__now_ms() + wait_ms, never);
        if (rc == CN_ETIMEDOUT)
            rc = CN_OK;
    }
    if (rc == CN_OK)
        rc = release_held(c, deadline);
    size_t answered = 0;
    if (rc == CN_OK)
        rc = answer_requests(c, deadline, &answered);
    /* Answers go out now, not at the next poll. */
    if (rc == CN_OK && answered > 0) {
        rc = cn__client_flush_until(c, deadline, NULL, NULL);
        if (rc == CN_ENOTFOUND || rc == CN_EINVAL || rc == CN_ETOOBIG)
            rc = CN_OK;
    }
    if (rc == CN_OK)
        rc = cn__client_send_acks(c, deadline, false);
    c->msg_cb = NULL;
    c->msg_ud = NULL;
    return rc;
}

int cn_client_recv(cn_client_t *c, uint32_t wait_ms, cn_client_message_cb cb, void *ud)
{
    CN_ENSURE(cb != NULL, CN_EINVAL);
    c->refused = false;
    CN_TRY(open_seen(c));
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
