/*
 * Sending: messages go to the outbox first (durable), then the outbox is
 * flushed in order over the session, CN_CLIENT_WINDOW sends in flight,
 * each with its stored message_id so that retries after a lost connection
 * are deduplicated by the node. An entry leaves the outbox only on OK or
 * on a final refusal.
 *
 * Each entry is encrypted once per recipient device (client/e2e.c) and the
 * ciphertexts are kept with the entry, so a retry resends the same bytes.
 * The sessions that encrypted a batch are written to the home before any
 * of its ciphertexts goes on the wire: a crash can then never make the
 * ratchet reuse a message key.
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFLICT_RETRIES 5

enum slot_state { ST_PENDING, ST_INFLIGHT, ST_DONE };

typedef struct slot {
    enum slot_state state;
    uint64_t rid;
    uint64_t not_before;
    uint32_t attempts, conflicts;
    bool fetched;      /* the recipient's device list was asked for */
    bool sealed;       /* ct[] holds one ciphertext per device in dev */
    bool need_session; /* a recipient device has no session yet */
    uint32_t ndev;
    uint8_t dev[CN_DEVICES_HARD_MAX][CN_DEVICE_ID_LEN];
    cn_buf_t ct[CN_DEVICES_HARD_MAX];
} slot_t;

typedef struct flush {
    cn_client_t *c;
    cn__outbox_entry_t *e;
    slot_t *s;
    size_t n, done, inflight;
    int final_rc;      /* first final refusal, reported at the end */
    bool rate_limited; /* the last wait was for RATE_LIMITED */
    cn_client_sent_cb cb;
    void *ud;
} flush_t;

int cn__client_queue(cn_client_t *c, const char *handle, uint8_t kind, const cn_buf_t *content,
                     uint8_t message_id[CN_MESSAGE_ID_LEN])
{
    int rc = CN_OK;
    cn__outbox_entry_t e;
    memset(&e, 0, sizeof(e));
    cn_buf_init(&e.content);
    CN_ENSURE(handle != NULL && content != NULL, CN_EINVAL);
    CN_ENSURE(cn_handle_normalize(handle, e.to) == CN_OK, CN_EINVAL);
    e.kind = kind;
    e.created = cn_now_ms();
    cn_random(e.message_id, sizeof(e.message_id));
    cn_slice_t body = cn_buf_unread(content);
    CN_TRY_OUT(cn_buf_append(&e.content, body.base, body.len));
    CN_TRY_OUT(cn__outbox_put(c->outbox_dir, &c->outbox_next, &e));
    if (message_id != NULL)
        memcpy(message_id, e.message_id, CN_MESSAGE_ID_LEN);
out:
    cn_buf_dispose(&e.content);
    return rc;
}

int cn_client_queue_text(cn_client_t *c, const char *handle, const char *text,
                         uint8_t message_id[CN_MESSAGE_ID_LEN])
{
    CN_ENSURE(text != NULL, CN_EINVAL);
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_content_encode_text(&b, text, strlen(text), cn_now_ms());
    if (rc == CN_OK)
        rc = cn__client_queue(c, handle, CHAT__KIND__MESSAGE, &b, message_id);
    cn_buf_dispose(&b);
    return rc;
}

int cn_client_queue_receipt(cn_client_t *c, const char *handle, uint32_t status, const uint8_t *ids,
                            size_t n)
{
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_content_encode_receipt(&b, status, ids, n, cn_now_ms());
    if (rc == CN_OK)
        rc = cn__client_queue(c, handle, CHAT__KIND__RECEIPT, &b, NULL);
    cn_buf_dispose(&b);
    return rc;
}

int cn_client_queue_typing(cn_client_t *c, const char *handle, bool typing)
{
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_content_encode_typing(&b, typing, cn_now_ms());
    if (rc == CN_OK)
        rc = cn__client_queue(c, handle, CHAT__KIND__TYPING, &b, NULL);
    cn_buf_dispose(&b);
    return rc;
}

static void unseal(slot_t *s)
{
    for (uint32_t k = 0; k < s->ndev; k++)
        cn_buf_dispose(&s->ct[k]);
    s->ndev = 0;
    s->sealed = false;
}

/* Encrypts entry i for every device of its recipient; CN_ENOTFOUND when a
 * device has no session yet (flush_loop then runs X3DH first). */
static int seal_entry(flush_t *fl, size_t i)
{
    cn_client_t *c = fl->c;
    slot_t *s = &fl->s[i];
    cn__devices_t dev;
    CN_TRY(cn__devices_load(c->home, fl->e[i].to, &dev));
    for (uint32_t k = 0; k < dev.n; k++)
        if (!cn__e2e_has_session(c, dev.ids[k]))
            return CN_ENOTFOUND;
    cn_slice_t pt = cn_buf_unread(&fl->e[i].content);
    for (uint32_t k = 0; k < dev.n; k++) {
        cn_buf_init(&s->ct[k]);
        memcpy(s->dev[k], dev.ids[k], CN_DEVICE_ID_LEN);
        s->ndev = k + 1;
        int rc = cn__e2e_seal(c, dev.ids[k], pt.base, pt.len, &s->ct[k]);
        if (rc < 0) {
            unseal(s);
            return rc;
        }
    }
    s->ndev = dev.n;
    s->sealed = true;
    s->need_session = false;
    return CN_OK;
}

static int send_entry(flush_t *fl, size_t i, uint64_t deadline)
{
    cn_client_t *c = fl->c;
    const cn__outbox_entry_t *e = &fl->e[i];
    const slot_t *sl = &fl->s[i];
    Chat__Envelope env[CN_DEVICES_HARD_MAX], *envp[CN_DEVICES_HARD_MAX];
    for (uint32_t k = 0; k < sl->ndev; k++) {
        chat__envelope__init(&env[k]);
        env[k].device_id = cn__bin(sl->dev[k], CN_DEVICE_ID_LEN);
        env[k].ciphertext = cn__bin(sl->ct[k].data, sl->ct[k].len);
        envp[k] = &env[k];
    }
    Chat__Send s;
    chat__send__init(&s);
    s.message_id = cn__bin(e->message_id, CN_MESSAGE_ID_LEN);
    s.kind = (Chat__Kind)e->kind;
    s.to = cn__str_mut(e->to);
    s.n_envelopes = sl->ndev;
    s.envelopes = envp;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.request_id = cn__client_rid(c);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    CN_TRY(cn__client_send(c, &f, deadline));
    fl->s[i].state = ST_INFLIGHT;
    fl->s[i].rid = f.request_id;
    fl->inflight++;
    return CN_OK;
}

/* Sends, in order, what the window allows; stops at the first entry that
 * must wait so that entries are not reordered behind a retry. Refills in
 * batches (at most half the window in flight) so that one session write
 * covers many messages. */
static int fill_window(flush_t *fl, uint64_t deadline, uint64_t *wake)
{
    uint64_t now = cn__now_ms();
    size_t pick[CN_CLIENT_WINDOW], npick = 0;
    bool sealed_now = false;
    *wake = deadline;
    if (fl->inflight > CN_CLIENT_WINDOW / 2)
        return CN_OK;
    for (size_t i = 0; i < fl->n && fl->inflight + npick < CN_CLIENT_WINDOW; i++) {
        slot_t *s = &fl->s[i];
        if (s->state != ST_PENDING)
            continue;
        if (s->not_before > now) {
            *wake = CN_MIN(*wake, s->not_before);
            break;
        }
        if (!s->sealed) {
            int rc = seal_entry(fl, i);
            if (rc == CN_ENOTFOUND) {
                s->need_session = true;
                if (fl->inflight + npick == 0)
                    *wake = now; /* nothing to wait for: run X3DH at once */
                break;
            }
            CN_TRY(rc);
            sealed_now = true;
        }
        pick[npick++] = i;
    }
    /* Durable before on the wire (see the top of this file). */
    if (sealed_now)
        CN_TRY(cn__e2e_save(fl->c));
    for (size_t k = 0; k < npick; k++)
        CN_TRY(send_entry(fl, pick[k], deadline));
    return CN_OK;
}

static void finish(flush_t *fl, size_t i, int status, const char *detail)
{
    cn__outbox_entry_t *e = &fl->e[i];
    int rc = cn__outbox_remove(fl->c->outbox_dir, e->seq);
    if (rc < 0)
        cn_log_warn("client.outbox_remove", "seq=%llu err=%s", (unsigned long long)e->seq,
                    cn_strerror(rc));
    fl->s[i].state = ST_DONE;
    unseal(&fl->s[i]);
    fl->done++;
    if (status != CHAT__STATUS__OK) {
        cn__client_refuse(fl->c, status, detail);
        if (fl->final_rc == CN_OK)
            fl->final_rc = cn__status_err(status);
    }
    if (fl->cb != NULL)
        fl->cb(fl->ud, e->message_id, e->to, status, detail ? detail : "");
}

static int on_conflict(flush_t *fl, size_t i, const Chat__Response *r)
{
    const cn__outbox_entry_t *e = &fl->e[i];
    if (r->result_case != CHAT__RESPONSE__RESULT_CONFLICT ||
        ++fl->s[i].conflicts > CONFLICT_RETRIES) {
        finish(fl, i, r->status, r->detail);
        return CN_OK;
    }
    cn__devices_t dev;
    const Chat__Conflict *cf = r->conflict;
    CN_TRY(cn__devices_load(fl->c->home, e->to, &dev));
    CN_TRY(cn__devices_apply(&dev, cf->missing_devices, cf->n_missing_devices, cf->stale_devices,
                             cf->n_stale_devices));
    CN_TRY(cn__devices_save(fl->c->home, e->to, &dev));
    unseal(&fl->s[i]);           /* encrypted again for the corrected device list */
    fl->s[i].state = ST_PENDING; /* resent at once with the same message_id */
    return CN_OK;
}

static int on_response(flush_t *fl, const Chat__Response *r)
{
    size_t i;
    for (i = 0; i < fl->n; i++)
        if (fl->s[i].state == ST_INFLIGHT && fl->s[i].rid == r->request_id)
            break;
    if (i == fl->n)
        return CN_OK; /* a late answer to an older connection's request */
    slot_t *s = &fl->s[i];
    fl->inflight--;
    s->state = ST_PENDING;
    uint64_t now = cn__now_ms();
    switch (r->status) {
    case CHAT__STATUS__OK:
        fl->rate_limited = false;
        finish(fl, i, CHAT__STATUS__OK, NULL);
        return CN_OK;
    case CHAT__STATUS__CONFLICT:
        return on_conflict(fl, i, r);
    case CHAT__STATUS__RATE_LIMITED:
        fl->rate_limited = true;
        s->not_before = now + CN_MAX(r->retry_after_ms, 50u);
        return CN_OK;
    case CHAT__STATUS__UNAVAILABLE:
    case CHAT__STATUS__INTERNAL:
        s->not_before = now + CN_MAX(r->retry_after_ms, cn_client_backoff_ms(s->attempts++));
        return CN_OK;
    case CHAT__STATUS__UNAUTHORIZED:
    case CHAT__STATUS__REDIRECT:
        /* About the session, not the message: keep it queued and stop. */
        cn__client_refuse(fl->c, r->status, r->detail);
        return cn__status_err(r->status);
    default: /* NOT_FOUND, BAD_REQUEST, TOO_LARGE, FORBIDDEN: final */
        finish(fl, i, r->status, r->detail);
        return CN_OK;
    }
}

/* Learns the devices of recipients this home knows nothing about yet. */
static int fetch_devices(flush_t *fl, const char *to, uint64_t deadline, int *status)
{
    int rc = CN_OK;
    Chat__ServerFrame *r = NULL;
    Chat__GetDevices g;
    chat__get_devices__init(&g);
    g.handle = cn__str_mut(to);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GET_DEVICES;
    f.get_devices = &g;
    CN_TRY(cn__client_call(fl->c, &f, deadline, &r));
    const Chat__Response *resp = r->response;
    *status = resp->status;
    if (resp->status == CHAT__STATUS__OK && resp->result_case == CHAT__RESPONSE__RESULT_DEVICES) {
        cn__devices_t dev = {0};
        const Chat__DeviceList *l = resp->devices;
        for (size_t i = 0; i < l->n_devices && dev.n < CN_DEVICES_HARD_MAX; i++) {
            if (l->devices[i]->device_id.len == CN_DEVICE_ID_LEN)
                memcpy(dev.ids[dev.n++], l->devices[i]->device_id.data, CN_DEVICE_ID_LEN);
        }
        rc = cn__devices_save(fl->c->home, to, &dev);
    } else if (resp->status != CHAT__STATUS__OK) {
        /* Answered per message below (NOT_FOUND is final for them). */
        cn__client_refuse(fl->c, resp->status, resp->detail);
    }
    chat__server_frame__free_unpacked(r, NULL);
    return rc;
}

static int prefetch_devices(flush_t *fl, uint64_t deadline)
{
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->s[i].state != ST_PENDING || fl->s[i].fetched)
            continue;
        cn__devices_t dev;
        CN_TRY(cn__devices_load(fl->c->home, fl->e[i].to, &dev));
        if (dev.n > 0)
            continue;
        int status = CHAT__STATUS__OK;
        char detail[CN_DETAIL_MAX + 1];
        CN_TRY(fetch_devices(fl, fl->e[i].to, deadline, &status));
        snprintf(detail, sizeof(detail), "%s", fl->c->refusal_detail);
        for (size_t k = i; k < fl->n; k++) {
            if (fl->s[k].state != ST_PENDING || strcmp(fl->e[k].to, fl->e[i].to) != 0)
                continue;
            fl->s[k].fetched = true;
            if (status == CHAT__STATUS__NOT_FOUND)
                finish(fl, k, status, detail);
        }
    }
    return CN_OK;
}

/* Runs X3DH for the recipients of entries that wait for a session; a
 * recipient with a device that has no usable prekeys is refused. */
static int ensure_sessions(flush_t *fl, uint64_t deadline)
{
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->s[i].state != ST_PENDING || !fl->s[i].need_session)
            continue;
        cn__devices_t dev, bad;
        CN_TRY(cn__devices_load(fl->c->home, fl->e[i].to, &dev));
        CN_TRY(cn__e2e_ensure_sessions(fl->c, fl->e[i].to, &dev, deadline, &bad));
        fl->s[i].need_session = false;
        if (bad.n == 0)
            continue;
        char hex[17], detail[CN_DETAIL_MAX + 1];
        cn_hex_encode(hex, bad.ids[0], 8);
        snprintf(detail, sizeof(detail), "no usable prekeys for device %s... of %s", hex,
                 fl->e[i].to);
        for (size_t k = i; k < fl->n; k++)
            if (fl->s[k].state == ST_PENDING && strcmp(fl->e[k].to, fl->e[i].to) == 0)
                finish(fl, k, CHAT__STATUS__NOT_FOUND, detail);
    }
    return CN_OK;
}

/* Connection lost: everything in flight is sent again after reconnecting. */
static void requeue_inflight(flush_t *fl)
{
    for (size_t i = 0; i < fl->n; i++)
        if (fl->s[i].state == ST_INFLIGHT)
            fl->s[i].state = ST_PENDING;
    fl->inflight = 0;
}

static int flush_loop(flush_t *fl, uint64_t deadline)
{
    cn__login_t auth = {0};
    while (fl->done < fl->n) {
        if (fl->c->conn == NULL)
            requeue_inflight(fl);
        CN_TRY(cn__client_connect(fl->c, &auth, deadline));
        if (fl->inflight == 0) {
            int prc = prefetch_devices(fl, deadline);
            if (prc == CN_OK)
                prc = ensure_sessions(fl, deadline);
            if (prc == CN_ECLOSED)
                continue;
            CN_TRY(prc);
            if (fl->done == fl->n)
                break;
        }
        uint64_t wake;
        int rc = fill_window(fl, deadline, &wake);
        if (rc == CN_ECLOSED)
            continue;
        CN_TRY(rc);
        Chat__ServerFrame *f = NULL;
        rc = cn__client_next_response(fl->c, fl->inflight ? deadline : wake, &f);
        if (rc == CN_ECLOSED || rc == CN_EAGAIN || (rc == CN_ETIMEDOUT && cn__now_ms() < deadline))
            continue;
        CN_TRY(rc);
        rc = on_response(fl, f->response);
        chat__server_frame__free_unpacked(f, NULL);
        CN_TRY(rc);
    }
    return fl->final_rc;
}

int cn__client_flush_until(cn_client_t *c, uint64_t deadline, cn_client_sent_cb cb, void *ud)
{
    flush_t fl = {.c = c, .cb = cb, .ud = ud};
    CN_TRY(cn__outbox_list(c->outbox_dir, &fl.e, &fl.n));
    if (fl.n == 0) {
        free(fl.e);
        return CN_OK;
    }
    int rc = CN_OK;
    fl.s = calloc(fl.n, sizeof(*fl.s));
    CN_ENSURE_OUT(fl.s != NULL, CN_ENOMEM);
    rc = flush_loop(&fl, deadline);
    if (rc == CN_ETIMEDOUT && fl.rate_limited) {
        cn__client_refuse(c, CHAT__STATUS__RATE_LIMITED, "rate limited: gave up at the deadline");
        rc = CN_ELIMIT;
    }
out:
    for (size_t i = 0; fl.s != NULL && i < fl.n; i++)
        unseal(&fl.s[i]);
    free(fl.s);
    cn__outbox_list_free(fl.e, fl.n);
    return rc;
}

int cn_client_flush(cn_client_t *c, cn_client_sent_cb cb, void *ud)
{
    c->refused = false;
    return cn__client_flush_until(c, cn__now_ms() + c->timeout_ms, cb, ud);
}

int cn_client_send_text(cn_client_t *c, const char *handle, const char *text,
                        uint8_t message_id[CN_MESSAGE_ID_LEN])
{
    CN_TRY(cn_client_queue_text(c, handle, text, message_id));
    return cn_client_flush(c, NULL, NULL);
}
