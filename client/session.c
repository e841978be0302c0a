/*
 * One authenticated session at a time: connect with backoff, answer the
 * Challenge (Auth or Register over the transcript of proto/cn_proto.h,
 * bound to this TLS connection's exporter), and dispatch what the node
 * pushes (Deliver, MailboxDrained, GoingAway, PrekeysLow) while callers
 * wait for their responses.
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t cn__client_rid(cn_client_t *c)
{
    if (++c->next_rid == 0)
        c->next_rid = 1;
    return c->next_rid;
}

void cn__client_refuse(cn_client_t *c, int status, const char *detail)
{
    c->refused = true;
    c->refusal_status = status;
    snprintf(c->refusal_detail, sizeof(c->refusal_detail), "%s", detail ? detail : "");
}

int cn__status_err(int status)
{
    switch (status) {
    case CHAT__STATUS__OK:
        return CN_OK;
    case CHAT__STATUS__BAD_REQUEST:
        return CN_EINVAL;
    case CHAT__STATUS__UNAUTHORIZED:
    case CHAT__STATUS__FORBIDDEN:
        return CN_EAUTH;
    case CHAT__STATUS__NOT_FOUND:
        return CN_ENOTFOUND;
    case CHAT__STATUS__CONFLICT:
        return CN_ECONFLICT;
    case CHAT__STATUS__RATE_LIMITED:
        return CN_ELIMIT;
    case CHAT__STATUS__TOO_LARGE:
        return CN_ETOOBIG;
    case CHAT__STATUS__UNAVAILABLE:
        return CN_ECLOSED;
    case CHAT__STATUS__REDIRECT:
        return CN_EPROTO;
    default:
        return CN_EINTERNAL;
    }
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

void cn__client_disconnect(cn_client_t *c)
{
    cn__conn_free(c->conn);
    c->conn = NULL;
    c->drained = false;
    c->nack_rids = 0;
    c->acks_unconfirmed = false;
    c->misc_rid = 0;
    c->poll_conn = false;
    c->nbg = 0;
    /* Stashed pushes are redelivered on the next connection. */
    for (size_t i = 0; i < c->nstash; i++)
        chat__server_frame__free_unpacked(c->stash[i], NULL);
    c->nstash = 0;
    /* Unacked seqs stay unacked: the node redelivers them, the seen-set
     * recognises them, and they are acked on the next connection. */
    c->nacks = 0;
}

int cn__client_send(cn_client_t *c, const Chat__ClientFrame *f, uint64_t deadline_ms)
{
    CN_ENSURE(c->conn != NULL, CN_ECLOSED);
    int rc = cn__conn_send(c->conn, f, deadline_ms);
    if (rc == CN_ECLOSED)
        cn__client_disconnect(c);
    return rc;
}

/* Builds and sends Auth or Register for the challenge. */
static int answer_challenge(cn_client_t *c, const Chat__Challenge *ch, const cn__login_t *login,
                            uint64_t rid, uint64_t deadline_ms)
{
    int rc = CN_OK;
    uint8_t exporter[CN_EXPORTER_LEN], sig[CN_SIGNATURE_LEN];
    cn_buf_t t;
    cn_buf_init(&t);
    CN_ENSURE_OUT(ch->nonce.len == CN_NONCE_LEN && ch->node_id.len == CN_DEVICE_ID_LEN, CN_EPROTO);
    CN_TRY_OUT(cn__conn_exporter(c->conn, exporter));
    CN_TRY_OUT(cn_transcript_session(&t, login->register_ ? CN_REGISTER_CONTEXT : CN_AUTH_CONTEXT,
                                     ch->nonce.data, ch->node_id.data, c->id.pk, ch->server_time,
                                     exporter, login->register_ ? login->handle : NULL));
    CN_TRY_OUT(cn_identity_sign(&c->id, t.data, t.len, sig));
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    Chat__Auth auth;
    chat__auth__init(&auth);
    Chat__Register reg;
    chat__register__init(&reg);
    f.request_id = rid;
    if (login->register_) {
        reg.handle = cn__str_mut(login->handle);
        reg.device_id = cn__bin(c->id.pk, CN_DEVICE_ID_LEN);
        reg.signature = cn__bin(sig, CN_SIGNATURE_LEN);
        reg.device_name = cn__str_mut(login->name ? login->name : "");
        reg.invite_token = cn__str_mut(login->invite ? login->invite : "");
        reg.jwt = cn__str_mut(c->jwt ? c->jwt : "");
        f.body_case = CHAT__CLIENT_FRAME__BODY_REGISTER;
        f.register_ = &reg;
    } else {
        auth.device_id = cn__bin(c->id.pk, CN_DEVICE_ID_LEN);
        auth.signature = cn__bin(sig, CN_SIGNATURE_LEN);
        f.body_case = CHAT__CLIENT_FRAME__BODY_AUTH;
        f.auth = &auth;
    }
    CN_TRY_OUT(cn__conn_send(c->conn, &f, deadline_ms));
out:
    cn_buf_dispose(&t);
    return rc;
}

/* Checks the answer to Auth/Register; refusals are recorded. */
static int check_login_response(cn_client_t *c, const Chat__ServerFrame *f, uint64_t rid,
                                uint32_t *retry_ms, int *status)
{
    CN_ENSURE(f->body_case == CHAT__SERVER_FRAME__BODY_RESPONSE, CN_EPROTO);
    const Chat__Response *r = f->response;
    CN_ENSURE(r->request_id == rid, CN_EPROTO);
    *retry_ms = r->retry_after_ms;
    *status = r->status;
    if (r->status != CHAT__STATUS__OK) {
        cn__client_refuse(c, r->status, r->detail);
        return cn__status_err(r->status);
    }
    if (r->result_case == CHAT__RESPONSE__RESULT_AUTH_OK && r->auth_ok->handle != NULL &&
        r->auth_ok->handle[0] != '\0' && c->handle[0] == '\0')
        snprintf(c->handle, sizeof(c->handle), "%s", r->auth_ok->handle);
    return CN_OK;
}

/* One attempt: TLS + WebSocket, Challenge, Auth/Register, its answer. */
static int connect_once(cn_client_t *c, const cn__login_t *login, uint64_t deadline_ms,
                        uint32_t *retry_ms, int *status)
{
    int rc = CN_OK;
    Chat__ServerFrame *f = NULL;
    CN_TRY(cn__conn_open(&c->url, &c->tls, deadline_ms, &c->conn));
    CN_TRY_OUT(cn__conn_recv(c->conn, deadline_ms, &f));
    CN_ENSURE_OUT(f->body_case == CHAT__SERVER_FRAME__BODY_CHALLENGE, CN_EPROTO);
    uint64_t rid = cn__client_rid(c);
    CN_TRY_OUT(answer_challenge(c, f->challenge, login, rid, deadline_ms));
    chat__server_frame__free_unpacked(f, NULL);
    f = NULL;
    CN_TRY_OUT(cn__conn_recv(c->conn, deadline_ms, &f));
    CN_TRY_OUT(check_login_response(c, f, rid, retry_ms, status));
out:
    if (f != NULL)
        chat__server_frame__free_unpacked(f, NULL);
    if (rc < 0)
        cn__client_disconnect(c);
    return rc;
}

/* Failures worth another attempt: the network and a busy node. */
static bool transient(int rc)
{
    return rc == CN_ECLOSED || rc == CN_EIO || rc == CN_EPROTO || rc == CN_ELIMIT ||
           rc == CN_EAGAIN;
}

int cn__client_send_bg(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline_ms)
{
    f->request_id = cn__client_rid(c);
    if (c->nbg == CN__BG_MAX) /* the oldest is forgotten: its answer is then a stray */
        memmove(c->bg_rids, c->bg_rids + 1, --c->nbg * sizeof(c->bg_rids[0]));
    CN_TRY(cn__client_send(c, f, deadline_ms));
    c->bg_rids[c->nbg++] = f->request_id;
    return CN_OK;
}

/* Presence subscriptions live as long as a connection: renewed on each. */
static int resubscribe(cn_client_t *c, uint64_t deadline_ms)
{
    if (c->nsubs == 0)
        return CN_OK;
    char *handles[CN__SUBS_MAX];
    for (size_t i = 0; i < c->nsubs; i++)
        handles[i] = c->subs[i];
    Chat__Subscribe sub;
    chat__subscribe__init(&sub);
    sub.n_handles = c->nsubs;
    sub.handles = handles;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SUBSCRIBE;
    f.subscribe = &sub;
    int rc = cn__client_send_bg(c, &f, deadline_ms);
    return rc == CN_ECLOSED ? CN_OK : rc; /* the next connect subscribes again */
}

int cn__client_check(cn_client_t *c, const Chat__ServerFrame *r, int want_result)
{
    const Chat__Response *resp = r->response;
    if (resp->status != CHAT__STATUS__OK) {
        cn__client_refuse(c, resp->status, resp->detail);
        return cn__status_err(resp->status);
    }
    CN_ENSURE(want_result < 0 || (int)resp->result_case == want_result, CN_EPROTO);
    return CN_OK;
}

int cn__client_rpc(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline_ms,
                   Chat__ServerFrame **out)
{
    cn__login_t auth = {0};
    for (;;) {
        CN_TRY(cn__client_connect(c, &auth, deadline_ms));
        int rc = cn__client_call(c, f, deadline_ms, out);
        if (rc == CN_ECLOSED)
            continue; /* reconnect and ask again */
        return rc;
    }
}

int cn__client_connect(cn_client_t *c, const cn__login_t *login, uint64_t deadline_ms)
{
    if (c->conn != NULL)
        return CN_OK;
    CN_ENSURE(c->has_id, CN_ENOTFOUND);
    for (;;) {
        uint64_t now = cn__now_ms();
        if (c->not_before_ms > now)
            sleep_ms(CN_MIN(c->not_before_ms, deadline_ms) - now);
        CN_ENSURE(cn__now_ms() < deadline_ms, CN_ETIMEDOUT);
        uint32_t retry_ms = 0;
        int status = -1;
        int rc = connect_once(c, login, deadline_ms, &retry_ms, &status);
        if (rc == CN_OK) {
            c->reconnects = 0;
            c->not_before_ms = 0;
            return resubscribe(c, deadline_ms);
        }
        bool busy = status == CHAT__STATUS__UNAVAILABLE || status == CHAT__STATUS__RATE_LIMITED;
        if (status > 0 && !busy)
            return rc; /* refused: no retry will change the answer */
        if (!transient(rc) && rc != CN_ETIMEDOUT)
            return rc;
        uint64_t wait = CN_MAX((uint64_t)cn_client_backoff_ms(c->reconnects++), retry_ms);
        cn_log_debug("client.reconnect", "err=%s wait_ms=%llu", cn_strerror(rc),
                     (unsigned long long)wait);
        c->not_before_ms = cn__now_ms() + wait;
    }
}

/* ------------------------------------------------------------- dispatch */

static void on_going_away(cn_client_t *c, const Chat__GoingAway *g)
{
    cn_log_info("client.going_away", "reconnect_after_ms=%u", g->reconnect_after_ms);
    c->not_before_ms = cn__now_ms() + g->reconnect_after_ms;
    cn__client_disconnect(c);
}

/* Consumes responses that belong to the client itself (acks, refills). */
static bool own_response(cn_client_t *c, const Chat__Response *r)
{
    for (size_t i = 0; i < c->nack_rids; i++) {
        if (c->ack_rids[i] != r->request_id)
            continue;
        if (r->status != CHAT__STATUS__OK)
            cn_log_warn("client.ack_refused", "status=%s", cn_client_status_name(r->status));
        c->ack_rids[i] = c->ack_rids[--c->nack_rids];
        return true;
    }
    for (size_t i = 0; i < c->nbg; i++) {
        if (c->bg_rids[i] != r->request_id)
            continue;
        if (r->status != CHAT__STATUS__OK)
            cn_log_info("client.bg_refused", "status=%s detail=\"%s\"",
                        cn_client_status_name(r->status), r->detail ? r->detail : "");
        c->bg_rids[i] = c->bg_rids[--c->nbg];
        return true;
    }
    if (c->misc_rid != 0 && r->request_id == c->misc_rid) {
        c->misc_rid = 0;
        if (r->status != CHAT__STATUS__OK)
            cn_log_warn("client.refill_refused", "status=%s", cn_client_status_name(r->status));
        return true;
    }
    return false;
}

/* Handles a push; CN_ECLOSED when it ended the connection. */
static int on_push(cn_client_t *c, const Chat__ServerFrame *f, uint64_t deadline_ms)
{
    switch (f->body_case) {
    case CHAT__SERVER_FRAME__BODY_DELIVER:
        return cn__client_on_deliver(c, f->deliver, deadline_ms);
    case CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED:
        c->drained = true;
        return CN_OK;
    case CHAT__SERVER_FRAME__BODY_GOING_AWAY:
        on_going_away(c, f->going_away);
        return CN_ECLOSED;
    case CHAT__SERVER_FRAME__BODY_PREKEYS_LOW:
        return cn__client_refill_prekeys(c, f->prekeys_low->remaining, deadline_ms);
    case CHAT__SERVER_FRAME__BODY_DEVICES_CHANGED:
        return cn__devices_on_changed(c, f->devices_changed);
    case CHAT__SERVER_FRAME__BODY_PRESENCE:
        if (c->presence_cb != NULL && f->presence->handle != NULL)
            c->presence_cb(c->presence_ud, f->presence->handle, f->presence->online,
                           f->presence->last_seen);
        return CN_OK;
    default:
        return CN_OK; /* redirects and the like: not used by this client yet */
    }
}

/* While a delivery is being handled (c->defer), pushes wait in order. */
static int stash_push(cn_client_t *c, Chat__ServerFrame *f)
{
    if (c->nstash == c->stash_cap) {
        size_t cap = c->stash_cap ? c->stash_cap * 2 : 16;
        Chat__ServerFrame **v = realloc(c->stash, cap * sizeof(*v));
        CN_ENSURE(v != NULL, CN_ENOMEM);
        c->stash = v;
        c->stash_cap = cap;
    }
    c->stash[c->nstash++] = f;
    return CN_OK;
}

int cn__client_unstash(cn_client_t *c, uint64_t deadline_ms)
{
    while (c->defer == 0 && c->nstash > 0 && c->conn != NULL) {
        Chat__ServerFrame *f = c->stash[0];
        memmove(c->stash, c->stash + 1, --c->nstash * sizeof(*c->stash));
        int rc = on_push(c, f, deadline_ms);
        chat__server_frame__free_unpacked(f, NULL);
        if (rc == CN_ECLOSED && c->conn != NULL)
            cn__client_disconnect(c);
        CN_TRY(rc);
    }
    return CN_OK;
}

int cn__client_next_response(cn_client_t *c, uint64_t deadline_ms, Chat__ServerFrame **out)
{
    *out = NULL;
    for (;;) {
        CN_ENSURE(c->conn != NULL, CN_ECLOSED);
        CN_ENSURE(c->msg_err == CN_OK, c->msg_err);
        if (c->defer == 0 && c->nstash > 0) {
            CN_TRY(cn__client_unstash(c, deadline_ms));
            return CN_EAGAIN;
        }
        Chat__ServerFrame *f = NULL;
        int rc = cn__conn_recv(c->conn, deadline_ms, &f);
        if (rc == CN_ECLOSED)
            cn__client_disconnect(c);
        CN_TRY(rc);
        if (f->body_case == CHAT__SERVER_FRAME__BODY_RESPONSE) {
            if (own_response(c, f->response)) {
                chat__server_frame__free_unpacked(f, NULL);
                return CN_EAGAIN;
            }
            *out = f;
            return CN_OK;
        }
        if (c->defer > 0 && f->body_case != CHAT__SERVER_FRAME__BODY_GOING_AWAY) {
            rc = stash_push(c, f);
            if (rc < 0)
                chat__server_frame__free_unpacked(f, NULL);
            CN_TRY(rc);
            continue;
        }
        rc = on_push(c, f, deadline_ms);
        chat__server_frame__free_unpacked(f, NULL);
        if (rc == CN_ECLOSED && c->conn != NULL)
            cn__client_disconnect(c);
        CN_TRY(rc);
        /* State may have changed (drained, delivered): let the caller look. */
        return CN_EAGAIN;
    }
}

int cn__client_call(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline_ms,
                    Chat__ServerFrame **out)
{
    *out = NULL;
    f->request_id = cn__client_rid(c);
    CN_TRY(cn__client_send(c, f, deadline_ms));
    for (;;) {
        Chat__ServerFrame *r = NULL;
        int rc = cn__client_next_response(c, deadline_ms, &r);
        if (rc == CN_EAGAIN)
            continue;
        CN_TRY(rc);
        if (r->response->request_id == f->request_id) {
            *out = r;
            return CN_OK;
        }
        cn_log_warn("client.stray_response", "request_id=%llu",
                    (unsigned long long)r->response->request_id);
        chat__server_frame__free_unpacked(r, NULL);
    }
}
