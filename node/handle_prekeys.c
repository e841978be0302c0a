/*
 * UploadPrekeys and FetchPrekeys (DESIGN section 3). The node verifies the
 * signed prekey's signature by the device key before storing it, and hands
 * out each one-time prekey at most once, oldest first (the store's writer
 * consumes it atomically). An owner running low gets a PrekeysLow push.
 */
#include "node/node_internal.h"

#include <string.h>

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

static void push_prekeys_low(cn_server_t *s, const uint8_t *device, uint32_t remaining)
{
    Chat__PrekeysLow low;
    chat__prekeys_low__init(&low);
    low.remaining = remaining;
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_PREKEYS_LOW;
    f.prekeys_low = &low;
    cn__push_to_device(s, device, &f);
}

static void upload_done(cn_conn_t *c, cn_pending_t *p)
{
    if (!c)
        return;
    if (p->op.result == CN_OK)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__OK, "");
    else if (p->op.result == CN_ELIMIT)
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__TOO_LARGE,
                                "too many one-time prekeys stored");
    else
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
}

static const char *check_signed(cn_conn_t *c, const Chat__SignedPrekey *sp)
{
    if (sp->public_key.len != CN_PREKEY_LEN || sp->signature.len != CN_SIGNATURE_LEN)
        return "malformed signed prekey";
    cn_buf_t t;
    cn_buf_init(&t);
    int rc = cn_transcript_prekey(&t, sp->key_id, sp->public_key.data);
    if (rc == 0)
        rc = cn_sig_verify(c->device_id, t.data, t.len, sp->signature.data);
    cn_buf_dispose(&t);
    return rc == 0 ? NULL : "signed prekey signature does not verify";
}

void cn__handle_upload_prekeys(cn_conn_t *c, uint64_t rid, const Chat__UploadPrekeys *m)
{
    const char *why = NULL;
    if (m->n_one_time_prekeys > CN_OTPK_UPLOAD_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__TOO_LARGE, "at most 100 one-time prekeys");
        return;
    }
    if (m->signed_prekey)
        why = check_signed(c, m->signed_prekey);
    for (size_t i = 0; !why && i < m->n_one_time_prekeys; i++)
        if (m->one_time_prekeys[i]->public_key.len != CN_PREKEY_LEN)
            why = "malformed one-time prekey";
    if (!why && !m->signed_prekey && m->n_one_time_prekeys == 0)
        why = "nothing to upload";
    if (why) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, why);
        return;
    }
    size_t n = m->n_one_time_prekeys;
    cn_pending_t *p =
        cn__pending_new(c, rid, CN_OP_PREKEYS_UPLOAD, upload_done, n * sizeof(cn_rec_prekey_t));
    if (!p)
        return;
    cn_rec_prekey_t *keys = p->extra;
    for (size_t i = 0; i < n; i++) {
        keys[i].key_id = m->one_time_prekeys[i]->key_id;
        memcpy(keys[i].public_key, m->one_time_prekeys[i]->public_key.data, CN_PREKEY_LEN);
    }
    memcpy(p->op.u.upload.device_id, c->device_id, CN_DEVICE_ID_LEN);
    if (m->signed_prekey) {
        cn_rec_prekey_t *sp = &p->op.u.upload.signed_prekey;
        p->op.u.upload.has_signed = true;
        sp->key_id = m->signed_prekey->key_id;
        memcpy(sp->public_key, m->signed_prekey->public_key.data, CN_PREKEY_LEN);
        sp->has_signature = true;
        memcpy(sp->signature, m->signed_prekey->signature.data, CN_SIGNATURE_LEN);
    }
    p->op.u.upload.n_otpks = (uint32_t)n;
    p->op.u.upload.otpks = keys;
    cn__pending_submit(c, p);
}

static void fetch_done(cn_conn_t *c, cn_pending_t *p)
{
    uint32_t n = p->op.u.fetch.n;
    cn_store_bundle_t *b = p->op.u.fetch.bundles;
    for (uint32_t i = 0; p->op.result == CN_OK && i < n; i++)
        if (b[i].has_signed && b[i].remaining < CN_OTPK_LOW_MARK)
            push_prekeys_low(p->loop->server, b[i].device_id, b[i].remaining);
    if (!c)
        return;
    if (p->op.result != CN_OK) {
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
        return;
    }
    Chat__PrekeyBundle pb[CN_FETCH_DEVICES_MAX], *pbp[CN_FETCH_DEVICES_MAX];
    Chat__SignedPrekey sp[CN_FETCH_DEVICES_MAX];
    Chat__OneTimePrekey ot[CN_FETCH_DEVICES_MAX];
    size_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!b[i].has_signed)
            continue; /* a device that never uploaded cannot be reached yet */
        chat__prekey_bundle__init(&pb[k]);
        chat__signed_prekey__init(&sp[k]);
        pb[k].device_id = cn__pb_bytes(b[i].device_id, CN_DEVICE_ID_LEN);
        sp[k].key_id = b[i].signed_prekey.key_id;
        sp[k].public_key = cn__pb_bytes(b[i].signed_prekey.public_key, CN_PREKEY_LEN);
        sp[k].signature = cn__pb_bytes(b[i].signed_prekey.signature, CN_SIGNATURE_LEN);
        pb[k].signed_prekey = &sp[k];
        if (b[i].has_otpk) {
            chat__one_time_prekey__init(&ot[k]);
            ot[k].key_id = b[i].otpk.key_id;
            ot[k].public_key = cn__pb_bytes(b[i].otpk.public_key, CN_PREKEY_LEN);
            pb[k].one_time_prekey = &ot[k];
        }
        pbp[k] = &pb[k];
        k++;
    }
    Chat__PrekeyBundles bundles;
    chat__prekey_bundles__init(&bundles);
    bundles.handle = (char *)p->extra + n * sizeof(cn_store_bundle_t);
    bundles.n_bundles = k;
    bundles.bundles = pbp;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = p->request_id;
    r.result_case = CHAT__RESPONSE__RESULT_PREKEYS;
    r.prekeys = &bundles;
    cn__conn_respond(c, &r);
}

static bool user_has_device(const cn_cached_user_t *u, const uint8_t *dev)
{
    for (uint32_t i = 0; i < u->ndevices; i++)
        if (memcmp(u->devices[i], dev, CN_DEVICE_ID_LEN) == 0)
            return true;
    return false;
}

void cn__handle_fetch_prekeys(cn_conn_t *c, uint64_t rid, const Chat__FetchPrekeys *m)
{
    char handle[CN_HANDLE_MAX + 1];
    cn_cached_user_t user;
    if (cn_handle_normalize(m->handle, handle) < 0 || m->n_device_ids > CN_FETCH_DEVICES_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "invalid handle or devices");
        return;
    }
    int rc = cn__user_get(srv(c), handle, &user);
    if (rc < 0 || user.disabled) {
        cn__conn_respond_status(
            c, rid,
            rc == CN_ENOTFOUND || rc == 0 ? CHAT__STATUS__NOT_FOUND : CHAT__STATUS__UNAVAILABLE,
            rc == CN_ENOTFOUND || rc == 0 ? "unknown user" : "storage unavailable");
        return;
    }
    for (size_t i = 0; i < m->n_device_ids; i++) {
        if (m->device_ids[i].len != CN_DEVICE_ID_LEN ||
            !user_has_device(&user, m->device_ids[i].data)) {
            cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "unknown device");
            return;
        }
    }
    uint32_t n = m->n_device_ids ? (uint32_t)m->n_device_ids : user.ndevices;
    /* Prekey exhaustion is an attack: limit the requester, and each target. */
    if (!cn__conn_rate_ok(c, rid, CN_RL_PREKEY_FETCH, c->device_id, CN_DEVICE_ID_LEN, n))
        return;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t target[1 + CN_DEVICE_ID_LEN] = {'t'}; /* the target's own bucket */
        memcpy(target + 1, m->n_device_ids ? m->device_ids[i].data : user.devices[i],
               CN_DEVICE_ID_LEN);
        if (!cn__conn_rate_ok(c, rid, CN_RL_PREKEY_FETCH, target, sizeof(target), 1))
            return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_PREKEYS_FETCH, fetch_done,
                                      n * sizeof(cn_store_bundle_t) + sizeof(handle));
    if (!p)
        return;
    cn_store_bundle_t *b = p->extra;
    for (uint32_t i = 0; i < n; i++)
        memcpy(b[i].device_id, m->n_device_ids ? m->device_ids[i].data : user.devices[i],
               CN_DEVICE_ID_LEN);
    memcpy((char *)p->extra + n * sizeof(cn_store_bundle_t), handle, sizeof(handle));
    p->op.u.fetch.n = n;
    p->op.u.fetch.bundles = b;
    cn__pending_submit(c, p);
}
