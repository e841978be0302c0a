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
#define SLOT_DEVICES     (2 * CN_DEVICES_HARD_MAX) /* the recipient's and our own */
#define REFLUSH_MAX      4 /* flushes that queued history entries flush again */

enum slot_state { ST_PENDING, ST_INFLIGHT, ST_DONE };

typedef struct slot {
    enum slot_state state;
    uint64_t rid;
    uint64_t not_before;
    uint32_t attempts, conflicts;
    bool fetched;      /* the device lists were asked for */
    bool sealed;       /* ct[] holds one ciphertext per device in dev */
    bool need_session; /* a recipient device has no session yet */
    uint32_t ndev;
    uint8_t dev[SLOT_DEVICES][CN_DEVICE_ID_LEN];
    cn_buf_t ct[SLOT_DEVICES];
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
    uint8_t rnd[10];
    cn_random(rnd, sizeof(rnd));
    cn_time_ordered_id(e.message_id, e.created, rnd);
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

/* The devices an entry goes to: the recipient's (list a) and this user's
 * other devices (list b, sync copies), never this device. */
static int entry_devices(cn_client_t *c, const cn__outbox_entry_t *e, cn__devices_t *a,
                         cn__devices_t *b)
{
    memset(b, 0, sizeof(*b));
    CN_TRY(cn__devices_load(c->home, e->to, a));
    if (strcmp(e->to, c->handle) != 0)
        CN_TRY(cn__devices_load(c->home, c->handle, b));
    return CN_OK;
}

static bool is_self(const cn_client_t *c, const uint8_t *dev)
{
    return memcmp(dev, c->id.pk, CN_DEVICE_ID_LEN) == 0;
}

/* The sync copy for our own devices: the content with the peer set. */
static int sync_copy(const cn__outbox_entry_t *e, cn_buf_t *out)
{
    cn_content_t ct;
    cn_slice_t pt = cn_buf_unread(&e->content);
    CN_TRY(cn_content_decode(pt.base, pt.len, &ct));
    ct.peer = e->to;
    ct.peer_len = strlen(e->to);
    return cn_content_encode(out, &ct);
}

static int seal_one(flush_t *fl, slot_t *s, const uint8_t *dev, const cn_buf_t *pt)
{
    cn_slice_t p = cn_buf_unread(pt);
    uint32_t k = s->ndev;
    cn_buf_init(&s->ct[k]);
    memcpy(s->dev[k], dev, CN_DEVICE_ID_LEN);
    s->ndev = k + 1;
    return cn__e2e_seal(fl->c, dev, p.base, p.len, &s->ct[k]);
}

/* A group entry: one sender-key ciphertext, no envelopes. */
static int seal_group(flush_t *fl, size_t i)
{
    slot_t *s = &fl->s[i];
    cn_slice_t body = cn_buf_unread(&fl->e[i].content);
    CN_ENSURE(body.len > CN_GROUP_ID_LEN, CN_EINVAL);
    cn_buf_init(&s->ct[0]);
    s->ndev = 1;
    CN_TRY(cn__group_seal(fl->c, body.base, body.base + CN_GROUP_ID_LEN, body.len - CN_GROUP_ID_LEN,
                          &s->ct[0]));
    s->sealed = true;
    return CN_OK;
}

/* Encrypts entry i for every device it goes to; CN_ENOTFOUND when a
 * device has no session yet (flush_loop then runs X3DH first), CN_EAGAIN
 * when a device list is not known yet. */
static int seal_entry(flush_t *fl, size_t i)
{
    cn_client_t *c = fl->c;
    slot_t *s = &fl->s[i];
    const cn__outbox_entry_t *e = &fl->e[i];
    if (e->kind == CN__KIND_HISTORY) {
        s->sealed = true;
        return CN_OK;
    }
    if (e->kind == CN__KIND_GROUP)
        return seal_group(fl, i);
    cn__devices_t a, b;
    CN_TRY(entry_devices(c, e, &a, &b));
    if (a.n == 0 || (strcmp(e->to, c->handle) != 0 && b.n == 0))
        return CN_EAGAIN;
    for (uint32_t k = 0; k < a.n; k++)
        if (!is_self(c, a.ids[k]) && !cn__e2e_has_session(c, a.ids[k]))
            return CN_ENOTFOUND;
    for (uint32_t k = 0; k < b.n; k++)
        if (!is_self(c, b.ids[k]) && !cn__e2e_has_session(c, b.ids[k]))
            return CN_ENOTFOUND;
    cn_buf_t sync;
    cn_buf_init(&sync);
    int rc = CN_OK;
    for (uint32_t k = 0; rc == CN_OK && k < a.n; k++)
        if (!is_self(c, a.ids[k]))
            rc = seal_one(fl, s, a.ids[k], &e->content);
    if (rc == CN_OK && b.n > 0)
        rc = sync_copy(e, &sync);
    for (uint32_t k = 0; rc == CN_OK && k < b.n; k++)
        if (!is_self(c, b.ids[k]))
            rc = seal_one(fl, s, b.ids[k], &sync);
    cn_buf_dispose(&sync);
    if (rc < 0) {
        unseal(s);
        return rc;
    }
    s->sealed = true;
    s->need_session = false;
    return CN_OK;
}

static int send_history(flush_t *fl, size_t i, Chat__ClientFrame *f, uint64_t deadline)
{
    cn_slice_t b = cn_buf_unread(&fl->e[i].content);
    const size_t head = CN_THREAD_TAG_LEN + CN_MESSAGE_ID_LEN + 8;
    CN_ENSURE(b.len > head, CN_EINVAL);
    Chat__HistoryAppend ha;
    chat__history_append__init(&ha);
    ha.thread_tag = cn__bin(b.base, CN_THREAD_TAG_LEN);
    ha.entry_id = cn__bin(b.base + CN_THREAD_TAG_LEN, CN_MESSAGE_ID_LEN);
    cn_cursor_t cur;
    cn_cursor_init(&cur, b.base + CN_THREAD_TAG_LEN + CN_MESSAGE_ID_LEN, 8);
    CN_TRY(cn_cursor_u64be(&cur, &ha.time));
    ha.sealed = cn__bin(b.base + head, b.len - head);
    f->body_case = CHAT__CLIENT_FRAME__BODY_HISTORY_APPEND;
    f->history_append = &ha;
    return cn__client_send(fl->c, f, deadline);
}

static void finish(flush_t *fl, size_t i, int status, const char *detail);

static int finish_local(flush_t *fl, size_t i)
{
    finish(fl, i, CHAT__STATUS__OK, NULL);
    return CN_OK;
}

static bool internal_kind(uint8_t kind)
{
    return kind == CN__KIND_HISTORY || kind == CN__KIND_GROUP;
}

static int send_entry(flush_t *fl, size_t i, uint64_t deadline)
{
    cn_client_t *c = fl->c;
    const cn__outbox_entry_t *e = &fl->e[i];
    const slot_t *sl = &fl->s[i];
    Chat__Envelope env[SLOT_DEVICES], *envp[SLOT_DEVICES];
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
    cn_content_t ct;
    cn_slice_t body = cn_buf_unread(&e->content);
    if (e->kind == CN__KIND_GROUP) {
        s.kind = CHAT__KIND__MESSAGE;
        s.to = cn__str_mut("");
        s.n_envelopes = 0;
        s.group_id = cn__bin(body.base, CN_GROUP_ID_LEN);
        s.sender_key_ciphertext = cn__bin(sl->ct[0].data, sl->ct[0].len);
    } else if (cn_content_decode(body.base, body.len, &ct) == CN_OK && ct.group_id != NULL) {
        s.group_id = cn__bin(ct.group_id, CN_GROUP_ID_LEN); /* e.g. a sender key */
    }
    s.ephemeral = e->kind == CHAT__KIND__TYPING;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.request_id = cn__client_rid(c);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    if (e->kind == CN__KIND_HISTORY)
        CN_TRY(send_history(fl, i, &f, deadline));
    else if (e->kind != CN__KIND_GROUP && sl->ndev == 0)
        return finish_local(fl, i); /* a note to self with no other device: nothing to do */
    else
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
        /* A group message goes out after everything queued before it: its
         * sender key distributions must be stored first. */
        if (fl->e[i].kind == CN__KIND_GROUP && (fl->done < i || fl->inflight + npick > 0)) {
            bool earlier = false;
            for (size_t k = 0; k < i && !earlier; k++)
                earlier = fl->s[k].state != ST_DONE;
            if (earlier)
                break;
        }
        if (!s->sealed) {
            int rc = seal_entry(fl, i);
            if (rc == CN_EAGAIN) {
                s->fetched = false; /* a device list is missing: fetch it */
                if (fl->inflight + npick == 0)
                    *wake = now;
                break;
            }
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
    if (npick > 0 && fl->inflight == 0)
        *wake = now; /* every pick finished locally: look again at once */
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
    if (e->kind == CN__KIND_HISTORY) {
        if (status != CHAT__STATUS__OK)
            cn_log_warn("client.history_refused", "status=%s", cn_client_status_name(status));
        return; /* the archive is best effort: never a failed send */
    }
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
    /* The missing devices may be the recipient's or our own: both lists
     * are asked for again (GetDevices) before the entry is sealed again. */
    cn__devices_t none = {0};
    CN_TRY(cn__devices_save(fl->c->home, e->to, &none));
    if (strcmp(e->to, fl->c->handle) != 0)
        CN_TRY(cn__devices_save(fl->c->home, fl->c->handle, &none));
    fl->s[i].fetched = false;
    unseal(&fl->s[i]);           /* encrypted again for the corrected device list */
    fl->s[i].state = ST_PENDING; /* resent at once with the same message_id */
    return CN_OK;
}

/* Our own copy of a message we sent goes to the history archive. */
static int history_of_sent(flush_t *fl, size_t i, uint64_t server_time)
{
    const cn__outbox_entry_t *e = &fl->e[i];
    cn_slice_t b = cn_buf_unread(&e->content);
    const uint8_t *gid = NULL;
    if (e->kind == CN__KIND_GROUP) {
        gid = b.base;
        b.base += CN_GROUP_ID_LEN;
        b.len -= CN_GROUP_ID_LEN;
    } else if (e->kind != CHAT__KIND__MESSAGE) {
        return CN_OK;
    }
    int rc = cn__history_queue(fl->c, fl->c->handle, fl->c->id.pk, e->message_id,
                               gid ? NULL : e->to, gid, b.base, b.len, server_time);
    if (rc < 0 && rc != CN_EIO && rc != CN_ENOMEM)
        cn_log_warn("client.history_skip", "err=%s", cn_strerror(rc));
    return rc == CN_EIO || rc == CN_ENOMEM ? rc : CN_OK;
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
        if (r->result_case == CHAT__RESPONSE__RESULT_SEND_OK)
            CN_TRY(history_of_sent(fl, i, r->send_ok->server_time));
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

/* Fetches one handle's device list when it is not cached; answers the
 * entries to it with NOT_FOUND when the user does not exist. */
static int prefetch_one(flush_t *fl, size_t i, const char *handle, uint64_t deadline)
{
    cn__devices_t dev;
    CN_TRY(cn__devices_load(fl->c->home, handle, &dev));
    if (dev.n > 0)
        return CN_OK;
    int status = CHAT__STATUS__OK;
    char detail[CN_DETAIL_MAX + 1];
    CN_TRY(fetch_devices(fl, handle, deadline, &status));
    snprintf(detail, sizeof(detail), "%s", fl->c->refusal_detail);
    if (status != CHAT__STATUS__NOT_FOUND)
        return CN_OK;
    for (size_t k = i; k < fl->n; k++)
        if (fl->s[k].state == ST_PENDING && !internal_kind(fl->e[k].kind) &&
            strcmp(fl->e[k].to, handle) == 0)
            finish(fl, k, status, detail);
    return CN_OK;
}

static int prefetch_devices(flush_t *fl, uint64_t deadline)
{
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->s[i].state != ST_PENDING || fl->s[i].fetched || internal_kind(fl->e[i].kind))
            continue;
        CN_TRY(prefetch_one(fl, i, fl->e[i].to, deadline));
        if (fl->s[i].state == ST_PENDING && strcmp(fl->e[i].to, fl->c->handle) != 0)
            CN_TRY(prefetch_one(fl, i, fl->c->handle, deadline));
        fl->s[i].fetched = true;
    }
    return CN_OK;
}

static void drop_self(const cn_client_t *c, cn__devices_t *d)
{
    for (uint32_t k = 0; k < d->n; k++)
        if (is_self(c, d->ids[k])) {
            memmove(d->ids[k], d->ids[k + 1], (size_t)(d->n - k - 1) * CN_DEVICE_ID_LEN);
            d->n--;
            k--;
        }
}

/* Runs X3DH for the recipients of entries that wait for a session; a
 * recipient with a device that has no usable prekeys is refused. */
static int ensure_sessions(flush_t *fl, uint64_t deadline)
{
    for (size_t i = 0; i < fl->n; i++) {
        if (fl->s[i].state != ST_PENDING || !fl->s[i].need_session)
            continue;
        cn__devices_t a, b, bad;
        CN_TRY(entry_devices(fl->c, &fl->e[i], &a, &b));
        drop_self(fl->c, &a);
        drop_self(fl->c, &b);
        CN_TRY(cn__e2e_ensure_sessions(fl->c, fl->e[i].to, &a, deadline, &bad));
        if (bad.n == 0 && b.n > 0)
            CN_TRY(cn__e2e_ensure_sessions(fl->c, fl->c->handle, &b, deadline, &bad));
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

static int flush_once(cn_client_t *c, uint64_t deadline, cn_client_sent_cb cb, void *ud)
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

int cn__client_flush_until(cn_client_t *c, uint64_t deadline, cn_client_sent_cb cb, void *ud)
{
    int rc = CN_OK;
    /* Accepted messages queue their history entries: those go out too. */
    for (int round = 0; round < REFLUSH_MAX; round++) {
        c->outbox_added = false;
        int r = flush_once(c, deadline, cb, ud);
        if (r < 0 && (rc == CN_OK || r != CN_ENOTFOUND))
            rc = r;
        if (r < 0 && r != CN_ENOTFOUND && r != CN_EINVAL && r != CN_ETOOBIG)
            break;
        if (!c->outbox_added)
            break;
    }
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
