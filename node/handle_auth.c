/*
 * Challenge, Auth and Register (DESIGN section 3). A device proves
 * possession of its Ed25519 key by signing a transcript that binds the
 * challenge nonce, the node id, its device id, the challenge time and the
 * TLS exporter of this very connection, so a signature cannot be replayed
 * later or relayed through another connection. One attempt per
 * connection: a failure answers UNAUTHORIZED and closes with 1008.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

/* AuthOk.queued is a hint for the client's progress display: counting is a
 * scan, so it stops here (a larger mailbox reads as this many). */
#define CN_AUTH_QUEUED_COUNT_MAX 1000

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

void cn__auth_send_challenge(cn_conn_t *c)
{
    if (srv(c)->cfg.test_echo)
        return; /* conformance runs see only their own echoes */
    cn_random(c->nonce, sizeof(c->nonce));
    c->challenge_time = cn_now_ms();
    Chat__Challenge ch;
    chat__challenge__init(&ch);
    ch.nonce.data = c->nonce;
    ch.nonce.len = sizeof(c->nonce);
    ch.node_id.data = srv(c)->identity.pk;
    ch.node_id.len = CN_DEVICE_ID_LEN;
    ch.server_time = c->challenge_time;
    ch.expires_in_ms = srv(c)->cfg.challenge_ttl_ms;
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_CHALLENGE;
    f.challenge = &ch;
    cn__conn_send_frame(c, &f);
}

static enum cn_auth_fail fail_class(const char *why)
{
    static const struct {
        const char *prefix;
        enum cn_auth_fail cls;
    } classes[] = {
        {"malformed", CN_AUTHF_MALFORMED},
        {"challenge expired", CN_AUTHF_EXPIRED},
        {"bad signature", CN_AUTHF_BAD_SIGNATURE},
        {"unknown device", CN_AUTHF_UNKNOWN_DEVICE},
        {"device revoked", CN_AUTHF_REVOKED},
        {"user disabled", CN_AUTHF_DISABLED},
        {"invalid invite", CN_AUTHF_INVITE},
        {"invite", CN_AUTHF_INVITE},
        {"an invite", CN_AUTHF_INVITE},
        {"JWT", CN_AUTHF_INVITE},
        {"a JWT", CN_AUTHF_INVITE},
        {"the JWT", CN_AUTHF_INVITE},
        {"bad signature", CN_AUTHF_BAD_SIGNATURE},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(classes); i++)
        if (strncmp(why, classes[i].prefix, strlen(classes[i].prefix)) == 0)
            return classes[i].cls;
    return CN_AUTHF_OTHER;
}

static void refuse(cn_conn_t *c, uint64_t rid, const char *why)
{
    uint32_t retry;
    CN_IGNORE(cn__rl_take(srv(c)->rl, CN_RL_AUTH_FAILURE, c->ip, sizeof(c->ip), NULL, 1,
                          cn__loop_now(c->loop), &retry));
    atomic_fetch_add(&srv(c)->counters.auth_failed, 1);
    atomic_fetch_add(&srv(c)->counters.auth_failed_by[fail_class(why)], 1);
    cn_log_info("auth_failed", "conn=%llu peer=%s reason=\"%s\"", (unsigned long long)c->id,
                c->peer, why);
    cn__conn_respond_status(c, rid, CHAT__STATUS__UNAUTHORIZED, why);
    cn__conn_close(c, CN_WS_CLOSE_POLICY, "authentication failed");
}

/* Checks the signature of a session transcript; returns a reason or NULL. */
static const char *verify_session(cn_conn_t *c, const char *context, ProtobufCBinaryData dev,
                                  ProtobufCBinaryData sig, const char *handle)
{
    if (dev.len != CN_DEVICE_ID_LEN || sig.len != CN_SIGNATURE_LEN)
        return "malformed device id or signature";
    if (cn_now_ms() > c->challenge_time + srv(c)->cfg.challenge_ttl_ms)
        return "challenge expired";
    uint8_t exporter[CN_EXPORTER_LEN];
    if (cn_tls_exporter(c->tls, exporter) < 0)
        return "no channel binding";
    cn_buf_t t;
    cn_buf_init(&t);
    int rc = cn_transcript_session(&t, context, c->nonce, srv(c)->identity.pk, dev.data,
                                   c->challenge_time, exporter, handle);
    if (rc == 0)
        rc = cn_sig_verify(dev.data, t.data, t.len, sig.data);
    cn_buf_dispose(&t);
    /* The nonce is single use whatever the outcome. */
    cn_random(c->nonce, sizeof(c->nonce));
    return rc == 0 ? NULL : "bad signature";
}

/* An IP that failed too often waits before it may try again at all. */
static bool auth_allowed(cn_conn_t *c, uint64_t rid)
{
    uint32_t retry = 0;
    if (cn__rl_check(srv(c)->rl, CN_RL_AUTH_FAILURE, c->ip, sizeof(c->ip), NULL, 1,
                     cn__loop_now(c->loop), &retry) == CN_OK)
        return true;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.status = CHAT__STATUS__RATE_LIMITED;
    r.detail = cn__pb_str("rate limited (auth-failure)");
    r.retry_after_ms = retry;
    cn__conn_respond(c, &r);
    cn__conn_close(c, CN_WS_CLOSE_POLICY, "too many failed authentications");
    return false;
}

/* The device is here: it may be woken again the next time it is away. */
static void clear_wakeup(cn_server_t *s, const uint8_t *device)
{
    cn_store_op_t *op = calloc(1, sizeof(*op));
    if (!op)
        return;
    op->type = CN_OP_PUSH_CLEAR;
    op->lazy = true; /* lost to a power cut: one spare wake-up at worst */
    op->done = cn__free_op;
    memcpy(op->u.push_clear.device_id, device, CN_DEVICE_ID_LEN);
    if (cn_store_submit(s->store, op) < 0)
        free(op);
}

static void become_authed(cn_conn_t *c, uint64_t rid, const uint8_t *device, const char *handle)
{
    cn_server_t *s = srv(c);
    memcpy(c->device_id, device, CN_DEVICE_ID_LEN);
    snprintf(c->handle, sizeof(c->handle), "%s", handle);
    cn_route_t old, route = {.loop = c->loop->index, .conn_id = c->id};
    if (cn__registry_set(s->registry, device, route, &old) < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "out of memory");
        cn__conn_close(c, CN_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    c->authed = true;
    c->state = CN_CONN_AUTHED;
    c->last_activity_ms = cn__loop_now(c->loop);
    cn__conn_arm_timer(c); /* the ping and idle deadlines start now */
    if (old.conn_id != 0 && old.conn_id != c->id) {
        /* One connection per device: the newest wins. */
        static const char why[] = "replaced by a newer connection";
        cn_msg_t *m = cn__msg_new(CN_MSG_KICK, sizeof(why));
        if (m) {
            m->conn_id = old.conn_id;
            memcpy(m->data, why, sizeof(why));
            cn__loop_post(s->loops[old.loop], m);
        }
    }
    atomic_fetch_add(&s->counters.auth_ok, 1);
    uint64_t queued = 0;
    uint32_t prekeys = 0;
    CN_IGNORE(cn_store_mailbox_depth(s->store, device, CN_AUTH_QUEUED_COUNT_MAX, &queued));
    CN_IGNORE(cn_store_prekey_count(s->store, device, &prekeys));

    Chat__AuthOk ok;

    chat__auth_ok__init(&ok);
    ok.device_id.data = c->device_id;
    ok.device_id.len = CN_DEVICE_ID_LEN;
    ok.handle = c->handle;
    ok.queued = queued;
    ok.prekeys_left = prekeys;
    ok.server_time = cn_now_ms();
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.result_case = CHAT__RESPONSE__RESULT_AUTH_OK;
    r.auth_ok = &ok;
    cn__conn_respond(c, &r);
    cn_log_info("auth_ok", "conn=%llu peer=%s user=%s", (unsigned long long)c->id, c->peer,
                c->handle);
    if (s->push)
        clear_wakeup(s, device);
    cn__presence_online(s, c->handle);
    cn__delivery_start(c);
}

void cn__handle_auth(cn_conn_t *c, uint64_t rid, const Chat__Auth *m)
{
    if (c->state == CN_CONN_AUTHED || c->auth_pending) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "already authenticated");
        return;
    }
    if (!auth_allowed(c, rid))
        return;
    if (m->device_id.len != CN_DEVICE_ID_LEN) {
        refuse(c, rid, "malformed device id or signature");
        return;
    }
    cn_rec_device_t dev;
    int rc = cn_store_device_get(srv(c)->store, m->device_id.data, &dev);
    if (rc == CN_ENOTFOUND || (rc == 0 && dev.revoked)) {
        refuse(c, rid, rc == 0 ? "device revoked" : "unknown device");
        return;
    }
    if (rc < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "storage unavailable");
        return;
    }
    const char *why = verify_session(c, CN_AUTH_CONTEXT, m->device_id, m->signature, NULL);
    cn_cached_user_t user;
    if (!why && cn__user_get(srv(c), dev.user, &user) == CN_OK && user.disabled)
        why = "user disabled";
    if (why) {
        refuse(c, rid, why);
        return;
    }
    become_authed(c, rid, m->device_id.data, dev.user);
}

static void register_done(cn_conn_t *c, cn_pending_t *p)
{
    /* Unknown users are never cached; invalidate anyway (usercache.c). */
    cn__usercache_user_invalidate(p->loop->server->usercache, p->op.u.reg.handle);
    if (!c)
        return;
    c->auth_pending = false;
    switch (p->op.result) {
    case CN_OK:
        atomic_fetch_add(&srv(c)->counters.registrations, 1);
        become_authed(c, p->request_id, p->op.u.reg.device_id, p->op.u.reg.handle);
        break;
    case CN_EEXIST:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__CONFLICT,
                                "handle or device already registered");
        break;
    case CN_EAUTH: /* an invite used up meanwhile, or a JWT replayed */
        refuse(c, p->request_id,
               p->op.u.reg.claim_meta[0] ? "JWT already used" : "invalid invite token");
        break;
    default:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
        break;
    }
}

/* Policy invite: the token names a meta record that REGISTER consumes. */
static const char *invite_record(cn_conn_t *c, const char *token, char *name, size_t cap)
{
    name[0] = '\0';
    if (srv(c)->cfg.registration != CN_REG_INVITE)
        return NULL;
    size_t n = strlen(token);
    if (n == 0)
        return "an invite token is required";
    for (size_t i = 0; i < n; i++)
        if (n > 64 ||
            !((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
            return "invalid invite token";
    snprintf(name, cap, "invite/%s", token);
    cn_buf_t v;
    cn_buf_init(&v);
    int rc = cn_store_meta_get(srv(c)->store, name, &v);
    bool expired = rc == CN_OK && v.len == CN_INVITE_RECORD_LEN && cn_load_u64be(v.data + 4) != 0 &&
                   cn_load_u64be(v.data + 4) < cn_now_ms();
    cn_buf_dispose(&v);
    if (rc == CN_ENOTFOUND)
        return "invalid invite token";
    return expired ? "invite expired" : NULL;
}

/* Policy jwt: the identity provider vouches for this handle. */
static const char *jwt_claims(cn_conn_t *c, const char *token, const char *handle,
                              cn_jwt_claims_t *claims)
{
    const char *why = "a JWT is required";
    if (!token || !token[0])
        return why;
    if (cn__jwt_verify(token, &srv(c)->jwt, cn_now_ms() / 1000, claims, &why) < 0)
        return why;
    if (strcmp(claims->sub, handle) != 0)
        return "the JWT is for another handle";
    return NULL;
}

void cn__handle_register(cn_conn_t *c, uint64_t rid, const Chat__Register *m)
{
    char handle[CN_HANDLE_MAX + 1];
    if (c->state == CN_CONN_AUTHED || c->auth_pending) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "already authenticated");
        return;
    }
    if (!auth_allowed(c, rid) || !cn__conn_rate_ok(c, rid, CN_RL_REGISTER, c->ip, sizeof(c->ip), 1))
        return;
    if (cn_handle_normalize(m->handle, handle) < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "handle must match [a-z0-9._-]{3,32}");
        return;
    }
    if (strlen(m->device_name) > CN_DEVICE_NAME_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__TOO_LARGE, "device name too long");
        return;
    }
    char invite[CN_STORE_META_NAME_MAX + 1];
    cn_jwt_claims_t claims = {0};
    const char *why = verify_session(c, CN_REGISTER_CONTEXT, m->device_id, m->signature, handle);
    if (!why)
        why = invite_record(c, m->invite_token, invite, sizeof(invite));
    if (!why && srv(c)->cfg.registration == CN_REG_JWT)
        why = jwt_claims(c, m->jwt, handle, &claims);
    if (why) {
        refuse(c, rid, why);
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_REGISTER, register_done, 0);
    if (!p)
        return;
    memcpy(p->op.u.reg.handle, handle, sizeof(handle));
    memcpy(p->op.u.reg.device_id, m->device_id.data, CN_DEVICE_ID_LEN);
    cn_rec_device_t *d = &p->op.u.reg.device;
    memcpy(d->user, handle, sizeof(handle));
    snprintf(d->name, sizeof(d->name), "%s", m->device_name);
    d->created = cn_now_ms();
    p->op.u.reg.max_devices = srv(c)->cfg.max_devices;
    memcpy(p->op.u.reg.consume_meta, invite, sizeof(invite));
    if (claims.jti[0]) { /* single use of the token's id */
        snprintf(p->op.u.reg.claim_meta, sizeof(p->op.u.reg.claim_meta), "jwt/%s", claims.jti);
        p->op.u.reg.claim_expires = claims.exp;
    }
    c->auth_pending = true;
    cn__pending_submit(c, p);
}

/*
 * LinkDevice: a new device of an existing user proves possession of its
 * key (link transcript) and waits, unauthenticated, for an existing device
 * to approve it with the code it gets here (node/handle_devices.c).
 */
void cn__handle_link_device(cn_conn_t *c, uint64_t rid, const Chat__LinkDevice *m)
{
    char handle[CN_HANDLE_MAX + 1];
    cn_cached_user_t user;
    cn_rec_device_t dev;
    if (c->state == CN_CONN_AUTHED || c->auth_pending) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "already authenticated");
        return;
    }
    if (!auth_allowed(c, rid) || !cn__conn_rate_ok(c, rid, CN_RL_REGISTER, c->ip, sizeof(c->ip), 1))
        return;
    if (cn_handle_normalize(m->handle, handle) < 0 || strlen(m->device_name) > CN_DEVICE_NAME_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "invalid handle or name");
        return;
    }
    const char *why = verify_session(c, CN_LINK_CONTEXT, m->device_id, m->signature, handle);
    if (why) {
        refuse(c, rid, why);
        return;
    }
    if (cn__user_get(srv(c), handle, &user) < 0 || user.disabled) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "unknown user");
        return;
    }
    if (cn_store_device_get(srv(c)->store, m->device_id.data, &dev) == CN_OK) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__CONFLICT, "device already registered");
        return;
    }
    cn_link_t link = {.loop = c->loop->index, .conn_id = c->id};
    memcpy(link.handle, handle, sizeof(handle));
    memcpy(link.device_id, m->device_id.data, CN_DEVICE_ID_LEN);
    snprintf(link.name, sizeof(link.name), "%s", m->device_name);
    char code[CN_LINK_CODE_LEN + 1];
    if (cn__links_add(srv(c)->links, &link, code) < 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "too many pending links");
        return;
    }
    c->link_expires = cn__loop_now(c->loop) + CN_LINK_TTL_MS;
    cn__conn_arm_timer(c);
    Chat__LinkCode lc;
    chat__link_code__init(&lc);
    lc.code = code;
    lc.expires_in_ms = CN_LINK_TTL_MS;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.result_case = CHAT__RESPONSE__RESULT_LINK_CODE;
    r.link_code = &lc;
    cn__conn_respond(c, &r);
}

void cn__link_completed(cn_conn_t *c, const uint8_t *frame, size_t len)
{
    if (c->state != CN_CONN_UNAUTH)
        return;
    c->link_expires = 0;
    cn__conn_send_bytes(c, frame, len);
    /* The device exists now: it authenticates like any other, on a fresh
     * challenge (the first nonce was spent by LinkDevice). */
    c->ws_opened_ms = cn__loop_now(c->loop);
    cn__auth_send_challenge(c);
    cn__conn_arm_timer(c);
}
