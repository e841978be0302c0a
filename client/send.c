/*
 * Sending: messages go to the outbox first (durable), then the outbox is
 * flushed in order over the session, CN_CLIENT_WINDOW sends in flight,
 * each with its stored message_id so that retries after a lost connection
 * are deduplicated by the node. An entry leaves the outbox only on OK or
 * on a final refusal.
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
    bool fetched; /* the recipient's device list was asked for */
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

/*
 * The per-recipient-device seal: where the Double Ratchet goes. Today it is
 * the identity, so the envelope carries the encoded content as is.
 */
static int seal_for_device(cn_client_t *c, const uint8_t device[CN_DEVICE_ID_LEN],
                           const cn_buf_t *content, ProtobufCBinaryData *out)
{
    (void)c;
    (void)device;
    cn_slice_t p = cn_buf_unread(content);
    out->data = p.base;
    out->len = p.len;
    return CN_OK;
}

int cn_client_queue_text(cn_client_t *c, const char *handle, const char *text,
                         uint8_t message_id[CN_MESSAGE_ID_LEN])
{
    int rc = CN_OK;
    cn__outbox_entry_t e;
    memset(&e, 0, sizeof(e));
    cn_buf_init(&e.content);
    CN_ENSURE(handle != NULL && text != NULL, CN_EINVAL);
    CN_ENSURE(cn_handle_normalize(handle, e.to) == CN_OK, CN_EINVAL);
    e.kind = CHAT__KIND__MESSAGE;
    e.created = cn_now_ms();
    cn_random(e.message_id, sizeof(e.message_id));
    CN_TRY_OUT(cn_content_encode_text(&e.content, text, strlen(text), e.created));
    CN_TRY_OUT(cn__outbox_put(c->outbox_dir, &c->outbox_next, &e));
    if (message_id != NULL)
        memcpy(message_id, e.message_id, CN_MESSAGE_ID_LEN);
out:
    cn_buf_dispose(&e.content);
    return rc;
}

static int send_entry(flush_t *fl, size_t i, uint64_t deadline)
{
    cn_client_t *c = fl->c;
    const cn__outbox_entry_t *e = &fl->e[i];
    cn__devices_t dev;
    CN_TRY(cn__devices_load(c->home, e->to, &dev));
    Chat__Envelope env[CN_DEVICES_HARD_MAX], *envp[CN_DEVICES_HARD_MAX];
    for (uint32_t k = 0; k < dev.n; k++) {
        chat__envelope__init(&env[k]);
        env[k].device_id = cn__bin(dev.ids[k], CN_DEVICE_ID_LEN);
        CN_TRY(seal_for_device(c, dev.ids[k], &e->content, &env[k].ciphertext));
        envp[k] = &env[k];
    }
    Chat__Send s;
    chat__send__init(&s);
    s.message_id = cn__bin(e->message_id, CN_MESSAGE_ID_LEN);
    s.kind = (Chat__Kind)e->kind;
    s.to = cn__str_mut(e->to);
    s.n_envelopes = dev.n;
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
 * must wait so that entries are not reordered behind a retry. */
static int fill_window(flush_t *fl, uint64_t deadline, uint64_t *wake)
{
    uint64_t now = cn__now_ms();
    *wake = deadline;
    for (size_t i = 0; i < fl->n && fl->inflight < CN_CLIENT_WINDOW; i++) {
        if (fl->s[i].state != ST_PENDING)
            continue;
        if (fl->s[i].not_before > now) {
            *wake = CN_MIN(*wake, fl->s[i].not_before);
            break;
        }
        CN_TRY(send_entry(fl, i, deadline));
    }
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
