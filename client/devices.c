/*
 * Several devices per user (DESIGN section 3) and presence.
 *
 * Linking: the new device proves possession of its key with LinkDevice
 * (signed like Register, context CN_LINK_CONTEXT, on an unauthenticated
 * connection) and shows the code it gets; an existing device approves
 * with LinkApprove (first without a certificate to see which device
 * waits, then with its Ed25519 signature over cn_transcript_link_cert).
 * The node then pushes LinkComplete; the new device signs in with Auth on
 * a fresh connection and uploads its prekeys. The approving device waits
 * for those prekeys and sends the user's history keys (docs/E2E.md) to
 * the user's other devices over the pairwise sessions; the new device
 * waits for them (HOME/keys.wait) before it archives anything.
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINK_SLACK_MS  5000 /* beyond the code's expiry */
#define PREKEY_POLL_MS 200
#define KEYS_POLL_MS   500

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---------------------------------------------------------- device cache */

int cn__devices_on_changed(cn_client_t *c, const Chat__DevicesChanged *dc)
{
    char norm[CN_HANDLE_MAX + 1];
    if (dc->handle == NULL || cn_handle_normalize(dc->handle, norm) != CN_OK)
        return CN_OK;
    cn__devices_t d = {0};
    for (size_t i = 0; i < dc->n_device_ids && d.n < CN_DEVICES_HARD_MAX; i++)
        if (dc->device_ids[i].len == CN_DEVICE_ID_LEN)
            memcpy(d.ids[d.n++], dc->device_ids[i].data, CN_DEVICE_ID_LEN);
    cn_log_info("client.devices_changed", "handle=%s devices=%u", norm, d.n);
    return cn__devices_save(c->home, norm, &d);
}

/* ------------------------------------------------------------------ link */

/* LinkDevice on a fresh connection; hands out the code. */
static int link_request(cn_client_t *c, const char *handle, const char *name, uint64_t deadline,
                        cn_client_code_cb code_cb, void *ud, uint32_t *expires_ms)
{
    int rc = CN_OK;
    Chat__ServerFrame *f = NULL;
    uint8_t exporter[CN_EXPORTER_LEN], sig[CN_SIGNATURE_LEN];
    cn_buf_t t;
    cn_buf_init(&t);
    CN_TRY(cn__conn_open(&c->url, &c->tls, deadline, &c->conn));
    CN_TRY_OUT(cn__conn_recv(c->conn, deadline, &f));
    CN_ENSURE_OUT(f->body_case == CHAT__SERVER_FRAME__BODY_CHALLENGE, CN_EPROTO);
    const Chat__Challenge *ch = f->challenge;
    CN_ENSURE_OUT(ch->nonce.len == CN_NONCE_LEN && ch->node_id.len == CN_DEVICE_ID_LEN, CN_EPROTO);
    CN_TRY_OUT(cn__conn_exporter(c->conn, exporter));
    CN_TRY_OUT(cn_transcript_session(&t, CN_LINK_CONTEXT, ch->nonce.data, ch->node_id.data,
                                     c->id.pk, ch->server_time, exporter, handle));
    CN_TRY_OUT(cn_identity_sign(&c->id, t.data, t.len, sig));
    Chat__LinkDevice ld;
    chat__link_device__init(&ld);
    ld.handle = cn__str_mut(handle);
    ld.device_id = cn__bin(c->id.pk, CN_DEVICE_ID_LEN);
    ld.signature = cn__bin(sig, CN_SIGNATURE_LEN);
    ld.device_name = cn__str_mut(name ? name : "");
    Chat__ClientFrame req;
    chat__client_frame__init(&req);
    req.request_id = cn__client_rid(c);
    req.body_case = CHAT__CLIENT_FRAME__BODY_LINK_DEVICE;
    req.link_device = &ld;
    CN_TRY_OUT(cn__conn_send(c->conn, &req, deadline));
    chat__server_frame__free_unpacked(f, NULL);
    f = NULL;
    CN_TRY_OUT(cn__conn_recv(c->conn, deadline, &f));
    CN_ENSURE_OUT(f->body_case == CHAT__SERVER_FRAME__BODY_RESPONSE &&
                      f->response->request_id == req.request_id,
                  CN_EPROTO);
    CN_TRY_OUT(cn__client_check(c, f, CHAT__RESPONSE__RESULT_LINK_CODE));
    *expires_ms = f->response->link_code->expires_in_ms;
    code_cb(ud, f->response->link_code->code);
out:
    if (f != NULL)
        chat__server_frame__free_unpacked(f, NULL);
    cn_buf_dispose(&t);
    return rc;
}

/* Waits for the LinkComplete push that says our device now exists. */
static int link_wait(cn_client_t *c, const char *handle, uint64_t deadline)
{
    for (;;) {
        Chat__ServerFrame *f = NULL;
        CN_TRY(cn__conn_recv(c->conn, deadline, &f));
        bool done = f->body_case == CHAT__SERVER_FRAME__BODY_LINK_COMPLETE &&
                    f->link_complete->device_id.len == CN_DEVICE_ID_LEN &&
                    memcmp(f->link_complete->device_id.data, c->id.pk, CN_DEVICE_ID_LEN) == 0 &&
                    f->link_complete->handle != NULL &&
                    strcmp(f->link_complete->handle, handle) == 0;
        chat__server_frame__free_unpacked(f, NULL);
        if (done)
            return CN_OK;
    }
}

int cn_client_link(cn_client_t *c, const char *handle, const char *device_name,
                   cn_client_code_cb code_cb, cn_client_message_cb msg_cb, void *ud)
{
    char norm[CN_HANDLE_MAX + 1], path[CN__PATH_MAX], line[CN_HANDLE_MAX + 2];
    CN_ENSURE(handle != NULL && cn_handle_normalize(handle, norm) == CN_OK && code_cb, CN_EINVAL);
    CN_ENSURE(device_name == NULL || strlen(device_name) <= CN_DEVICE_NAME_MAX, CN_ETOOBIG);
    CN_ENSURE(c->handle[0] == '\0', CN_EEXIST);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    if (!c->has_id) {
        CN_TRY(cn_identity_generate(&c->id));
        c->has_id = true;
        CN_TRY(cn__identity_save(c->home, c->home_key, &c->id));
    }
    /* Archive nothing under keys of our own: the user's keys are coming. */
    CN_TRY(cn__home_path(c, "keys.wait", path));
    CN_TRY(cn__file_write_atomic(path, "1\n", 2, 0600));
    cn__client_disconnect(c);
    uint32_t expires = 0;
    int rc = link_request(c, norm, device_name, deadline, code_cb, ud, &expires);
    if (rc == CN_OK)
        rc = link_wait(c, norm, cn__now_ms() + expires + LINK_SLACK_MS);
    cn__client_disconnect(c);
    CN_TRY(rc);
    int n = snprintf(line, sizeof(line), "%s\n", norm);
    CN_TRY(cn__home_path(c, "handle", path));
    CN_TRY(cn__file_write_atomic(path, line, (size_t)n, 0600));
    snprintf(c->handle, sizeof(c->handle), "%s", norm);
    /* Signs in as the new device and uploads prekeys (register's second half). */
    CN_TRY(cn_client_register(c, norm, NULL, device_name));
    if (msg_cb == NULL)
        return CN_OK;
    deadline = cn__now_ms() + c->timeout_ms;
    while (!c->got_keys && cn__now_ms() < deadline)
        CN_TRY(cn_client_poll(c, KEYS_POLL_MS, msg_cb, ud));
    CN_ENSURE(c->got_keys, CN_ETIMEDOUT);
    return CN_OK;
}

/* --------------------------------------------------------------- approve */

static int link_approve(cn_client_t *c, const char *code, const uint8_t *dev, const uint8_t *cert,
                        uint64_t deadline, Chat__ServerFrame **out)
{
    Chat__LinkApprove la;
    chat__link_approve__init(&la);
    la.code = cn__str_mut(code);
    if (dev != NULL) {
        la.device_id = cn__bin(dev, CN_DEVICE_ID_LEN);
        la.certificate = cn__bin(cert, CN_SIGNATURE_LEN);
    }
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_LINK_APPROVE;
    f.link_approve = &la;
    CN_TRY(cn__client_rpc(c, &f, deadline, out));
    int rc = cn__client_check(c, *out, dev ? -1 : CHAT__RESPONSE__RESULT_DEVICES);
    if (rc < 0) {
        chat__server_frame__free_unpacked(*out, NULL);
        *out = NULL;
    }
    return rc;
}

/* Sends this user's history keys to its other devices, once the new
 * device has prekeys to start a session with. */
static int send_keys(cn_client_t *c, const uint8_t *dev, uint64_t deadline)
{
    cn__devices_t want = {.n = 1}, bad;
    memcpy(want.ids[0], dev, CN_DEVICE_ID_LEN);
    for (uint32_t attempt = 0;; attempt++) {
        cn__login_t auth = {0};
        CN_TRY(cn__client_connect(c, &auth, deadline));
        int rc = cn__e2e_ensure_sessions(c, c->handle, &want, deadline, &bad);
        if (rc == CN_ECLOSED)
            continue;
        CN_TRY(rc);
        if (bad.n == 0)
            break;
        CN_ENSURE(cn__now_ms() + PREKEY_POLL_MS < deadline, CN_ETIMEDOUT);
        sleep_ms(PREKEY_POLL_MS); /* the new device signs in and uploads its prekeys */
    }
    CN_TRY(cn__e2e_save(c));
    const uint8_t *hk, *ak;
    CN_TRY(cn__history_keys(c, true, &hk, &ak));
    cn_content_t ct = {.version = CN_CLIENT_CONTENT_VER, .type = CN_CONTENT_KEYS};
    ct.sent_at = cn_now_ms();
    ct.history_key = hk;
    ct.archive_key = ak;
    cn_buf_t body;
    cn_buf_init(&body);
    int rc = cn_content_encode(&body, &ct);
    if (rc == CN_OK)
        rc = cn__client_queue(c, c->handle, CHAT__KIND__CONTROL, &body, NULL);
    cn_buf_wipe(&body);
    CN_TRY(rc);
    return cn__client_flush_until(c, deadline, NULL, NULL);
}

int cn_client_approve(cn_client_t *c, const char *code, cn_client_device_cb show, void *ud)
{
    CN_ENSURE(code != NULL && code[0] != '\0' && strlen(code) < 64, CN_EINVAL);
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    Chat__ServerFrame *r = NULL;
    CN_TRY(link_approve(c, code, NULL, NULL, deadline, &r));
    const Chat__DeviceList *l = r->response->devices;
    int rc =
        l->n_devices == 1 && l->devices[0]->device_id.len == CN_DEVICE_ID_LEN ? CN_OK : CN_EPROTO;
    uint8_t dev[CN_DEVICE_ID_LEN], cert[CN_SIGNATURE_LEN];
    if (rc == CN_OK) {
        memcpy(dev, l->devices[0]->device_id.data, CN_DEVICE_ID_LEN);
        cn_client_device_t d = {.name = l->devices[0]->name ? l->devices[0]->name : ""};
        memcpy(d.id, dev, CN_DEVICE_ID_LEN);
        if (show != NULL)
            show(ud, &d);
    }
    chat__server_frame__free_unpacked(r, NULL);
    r = NULL;
    CN_TRY(rc);
    cn_buf_t t;
    cn_buf_init(&t);
    rc = cn_transcript_link_cert(&t, c->handle, dev);
    if (rc == CN_OK)
        rc = cn_identity_sign(&c->id, t.data, t.len, cert);
    cn_buf_dispose(&t);
    CN_TRY(rc);
    CN_TRY(link_approve(c, code, dev, cert, deadline, &r));
    chat__server_frame__free_unpacked(r, NULL);
    /* Our device cache learns the new device now (DevicesChanged also says so). */
    cn__devices_t mine;
    CN_TRY(cn__devices_load(c->home, c->handle, &mine));
    if (mine.n > 0 && mine.n < CN_DEVICES_HARD_MAX) {
        memcpy(mine.ids[mine.n++], dev, CN_DEVICE_ID_LEN);
        CN_TRY(cn__devices_save(c->home, c->handle, &mine));
    }
    return send_keys(c, dev, deadline);
}

/* ------------------------------------------------------- list and revoke */

int cn_client_devices(cn_client_t *c, cn_client_device_cb cb, void *ud)
{
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    c->refused = false;
    Chat__GetDevices g;
    chat__get_devices__init(&g);
    g.handle = c->handle;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GET_DEVICES;
    f.get_devices = &g;
    Chat__ServerFrame *r = NULL;
    CN_TRY(cn__client_rpc(c, &f, cn__now_ms() + c->timeout_ms, &r));
    int rc = cn__client_check(c, r, CHAT__RESPONSE__RESULT_DEVICES);
    cn__devices_t d = {0};
    for (size_t i = 0; rc == CN_OK && i < r->response->devices->n_devices; i++) {
        const Chat__DeviceInfo *di = r->response->devices->devices[i];
        if (di->device_id.len != CN_DEVICE_ID_LEN)
            continue;
        cn_client_device_t cd = {.name = di->name ? di->name : "", .created = di->created};
        memcpy(cd.id, di->device_id.data, CN_DEVICE_ID_LEN);
        cd.self = memcmp(cd.id, c->id.pk, CN_DEVICE_ID_LEN) == 0;
        if (d.n < CN_DEVICES_HARD_MAX)
            memcpy(d.ids[d.n++], cd.id, CN_DEVICE_ID_LEN);
        if (cb != NULL)
            cb(ud, &cd);
    }
    chat__server_frame__free_unpacked(r, NULL);
    CN_TRY(rc);
    return cn__devices_save(c->home, c->handle, &d);
}

int cn_client_revoke(cn_client_t *c, const uint8_t id[CN_DEVICE_ID_LEN])
{
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    c->refused = false;
    Chat__RevokeDevice rd;
    chat__revoke_device__init(&rd);
    rd.device_id = cn__bin(id, CN_DEVICE_ID_LEN);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_REVOKE_DEVICE;
    f.revoke_device = &rd;
    Chat__ServerFrame *r = NULL;
    CN_TRY(cn__client_rpc(c, &f, cn__now_ms() + c->timeout_ms, &r));
    int rc = cn__client_check(c, r, -1);
    chat__server_frame__free_unpacked(r, NULL);
    CN_TRY(rc);
    return cn_client_devices(c, NULL, NULL); /* the cache without it */
}

/* -------------------------------------------------------------- presence */

int cn_client_subscribe(cn_client_t *c, const char *handle, cn_client_presence_cb cb, void *ud)
{
    char norm[CN_HANDLE_MAX + 1];
    CN_ENSURE(handle != NULL && cn_handle_normalize(handle, norm) == CN_OK, CN_EINVAL);
    c->presence_cb = cb;
    c->presence_ud = ud;
    for (size_t i = 0; i < c->nsubs; i++)
        if (strcmp(c->subs[i], norm) == 0)
            return CN_OK;
    CN_ENSURE(c->nsubs < CN__SUBS_MAX, CN_ELIMIT);
    memcpy(c->subs[c->nsubs++], norm, sizeof(norm));
    if (c->conn == NULL)
        return CN_OK; /* subscribed on connect */
    char *h[1] = {c->subs[c->nsubs - 1]};
    Chat__Subscribe sub;
    chat__subscribe__init(&sub);
    sub.n_handles = 1;
    sub.handles = h;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SUBSCRIBE;
    f.subscribe = &sub;
    int rc = cn__client_send_bg(c, &f, cn__now_ms() + c->timeout_ms);
    return rc == CN_ECLOSED ? CN_OK : rc;
}

int cn_client_set_presence_hidden(cn_client_t *c, bool hidden)
{
    c->refused = false;
    Chat__SetPresence sp;
    chat__set_presence__init(&sp);
    sp.hidden = hidden;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SET_PRESENCE;
    f.set_presence = &sp;
    Chat__ServerFrame *r = NULL;
    CN_TRY(cn__client_rpc(c, &f, cn__now_ms() + c->timeout_ms, &r));
    int rc = cn__client_check(c, r, -1);
    chat__server_frame__free_unpacked(r, NULL);
    return rc;
}
