/*
 * End-to-end encryption in the client (docs/E2E.md): one session record
 * per peer device (HOME/sessions/<device hex>, sealed), X3DH with bundles
 * fetched from the node (signatures checked here too), the receiver side
 * of X3DH with the private prekeys, trust on first use of each handle's
 * device keys (HOME/trust/<handle>, sealed) and safety numbers.
 *
 * Persistence order matters for safety: a session that encrypted
 * something is written before the ciphertext leaves (send.c), and at ack
 * time the seen-set is synced first, then sessions, then prekeys (so a
 * deleted one-time prekey is never lost together with the session it
 * made).
 */
#include "client/client_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_FILE_MAX (64u * 1024u * 1024u)
#define TRUST_MAGIC      "CNTR"
#define TRUST_MAX        64 /* keys remembered per handle */

/* ------------------------------------------------------------- sessions */

static int session_path(const cn_client_t *c, const uint8_t *dev, char *path, char *label)
{
    char hex[2 * CN_DEVICE_ID_LEN + 1];
    cn_hex_encode(hex, dev, CN_DEVICE_ID_LEN);
    int n = snprintf(path, CN__PATH_MAX, "%s/sessions/%s", c->home, hex);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    snprintf(label, 80, "session:%s", hex);
    return CN_OK;
}

static cn__peer_t *peer_find(cn_client_t *c, const uint8_t *dev)
{
    for (size_t i = 0; i < c->npeers; i++)
        if (memcmp(c->peers[i].dev, dev, CN_DEVICE_ID_LEN) == 0)
            return &c->peers[i];
    return NULL;
}

/* Loads (or with create, starts empty) the session record of dev. */
static int peer_get(cn_client_t *c, const uint8_t *dev, bool create, cn__peer_t **out)
{
    char path[CN__PATH_MAX], label[80];
    *out = peer_find(c, dev);
    if (*out != NULL)
        return CN_OK;
    CN_TRY(session_path(c, dev, path, label));
    cn_session_t *s = NULL;
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn__sealed_read(c->home_key, path, label, SESSION_FILE_MAX, &b);
    if (rc == CN_OK)
        rc = cn_session_decode(b.data, b.len, &s);
    cn_buf_wipe(&b);
    if (rc == CN_ENOTFOUND && create)
        rc = cn_session_new(&s);
    CN_TRY(rc);
    if (c->npeers == c->peers_cap) {
        size_t cap = c->peers_cap ? 2 * c->peers_cap : 8;
        cn__peer_t *p = realloc(c->peers, cap * sizeof(*p));
        if (p == NULL) {
            cn_session_free(s);
            return CN_ENOMEM;
        }
        c->peers = p;
        c->peers_cap = cap;
    }
    cn__peer_t *p = &c->peers[c->npeers++];
    memcpy(p->dev, dev, CN_DEVICE_ID_LEN);
    p->s = s;
    p->dirty = false;
    *out = p;
    return CN_OK;
}

bool cn__e2e_has_session(cn_client_t *c, const uint8_t dev[CN_DEVICE_ID_LEN])
{
    cn__peer_t *p;
    return peer_get(c, dev, false, &p) == CN_OK && cn_session_has_active(p->s);
}

int cn__e2e_seal(cn_client_t *c, const uint8_t dev[CN_DEVICE_ID_LEN], const uint8_t *pt, size_t n,
                 cn_buf_t *out)
{
    cn__peer_t *p;
    CN_TRY(peer_get(c, dev, false, &p));
    CN_TRY(cn_session_encrypt(p->s, pt, n, out));
    p->dirty = true;
    return CN_OK;
}

int cn__e2e_save(cn_client_t *c)
{
    char path[CN__PATH_MAX], label[80];
    for (size_t i = 0; i < c->npeers; i++) {
        cn__peer_t *p = &c->peers[i];
        if (!p->dirty)
            continue;
        CN_TRY(session_path(c, p->dev, path, label));
        cn_buf_t b;
        cn_buf_init(&b);
        int rc = cn_session_encode(p->s, &b);
        if (rc == CN_OK)
            rc = cn__sealed_write(c->home_key, path, label, b.data, b.len);
        cn_buf_wipe(&b);
        CN_TRY(rc);
        p->dirty = false;
    }
    if (c->prekeys_dirty) {
        CN_TRY(cn__home_path(c, "prekeys", path));
        CN_TRY(cn__prekeys_save(path, c->home_key, &c->prekeys));
        c->prekeys_dirty = false;
    }
    return CN_OK;
}

void cn__e2e_dispose(cn_client_t *c)
{
    for (size_t i = 0; i < c->npeers; i++)
        cn_session_free(c->peers[i].s);
    free(c->peers);
    c->peers = NULL;
    c->npeers = c->peers_cap = 0;
    cn__prekeys_dispose(&c->prekeys);
    c->prekeys_loaded = false;
    free(c->faults.held);
    c->faults.held = NULL;
}

/* ------------------------------------------------------------ receiving */

static const char *why_of(int rc)
{
    switch (rc) {
    case CN_EEXIST:
        return "replay: message key already used";
    case CN_EAUTH:
        return "decryption failed: not authentic";
    case CN_ELIMIT:
        return "decryption failed: too many skipped messages";
    case CN_ENOTFOUND:
        return "decryption failed: no session with this device";
    case CN_EVERSION:
        return "decryption failed: unknown envelope version";
    case CN_ETOOBIG:
        return "decryption failed: envelope too large";
    default:
        return "decryption failed: malformed envelope";
    }
}

/* X3DH as the responder; the session is added only if the message decrypts. */
static int respond(cn_client_t *c, cn__peer_t *p, const cn_e2e_msg_t *m, cn_buf_t *pt,
                   const char **why)
{
    cn__prekeys_t *pk;
    int rc = cn__client_prekeys(c, &pk);
    if (rc < 0) {
        *why = "decryption failed: this device has no prekeys";
        return rc;
    }
    if (m->spk_id != pk->signed_id) {
        *why = "decryption failed: unknown signed prekey";
        return CN_ENOTFOUND;
    }
    const cn_x25519_t *opk = NULL;
    for (uint32_t i = 0; m->has_opk && i < pk->n; i++)
        if (pk->ids[i] == m->opk_id)
            opk = &pk->otpk[i];
    if (m->has_opk && opk == NULL) {
        *why = "decryption failed: one-time prekey unknown or already used";
        return CN_ENOTFOUND;
    }
    cn_ratchet_t *r = NULL;
    rc = cn_x3dh_respond(&c->id, &pk->signed_kp, opk, m, &r);
    if (rc == CN_OK)
        rc = cn_ratchet_decrypt(r, m, pt);
    if (rc == CN_OK)
        rc = cn_session_add(p->s, r);
    if (rc < 0) {
        cn_ratchet_free(r);
        *why = why_of(rc);
        return rc;
    }
    /* X3DH 3.4: Bob deletes the one-time prekey's private key once used. */
    if (m->has_opk && cn__prekeys_remove(pk, m->opk_id))
        c->prekeys_dirty = true;
    p->dirty = true;
    return CN_OK;
}

int cn__e2e_open(cn_client_t *c, const char *handle, const uint8_t dev[CN_DEVICE_ID_LEN],
                 const uint8_t *ct, size_t n, cn_buf_t *pt, const char **why)
{
    cn_e2e_msg_t m;
    cn__peer_t *p;
    *why = NULL;
    int rc = cn_e2e_msg_parse(ct, n, &m);
    if (rc < 0) {
        *why = why_of(rc);
        return rc;
    }
    if (m.type == CN_E2E_PREKEY_MSG && sodium_memcmp(m.ik, dev, CN_DEVICE_ID_LEN) != 0) {
        *why = "decryption failed: identity key does not match the sending device";
        return CN_EAUTH;
    }
    if (handle != NULL)
        CN_TRY(cn__trust_check(c, handle, dev, 1));
    CN_TRY(peer_get(c, dev, true, &p));
    rc = cn_session_decrypt(p->s, &m, pt);
    if (rc == CN_ENOTFOUND && m.type == CN_E2E_PREKEY_MSG)
        return respond(c, p, &m, pt, why);
    if (rc < 0) {
        *why = why_of(rc);
        return rc;
    }
    p->dirty = true;
    return CN_OK;
}

/* ------------------------------------------------------------- sending */

static bool in_list(const cn__devices_t *d, const uint8_t *id)
{
    for (uint32_t i = 0; i < d->n; i++)
        if (memcmp(d->ids[i], id, CN_DEVICE_ID_LEN) == 0)
            return true;
    return false;
}

static int bundle_from(const Chat__PrekeyBundle *pb, cn_prekey_bundle_t *b)
{
    memset(b, 0, sizeof(*b));
    const Chat__SignedPrekey *sp = pb->signed_prekey;
    CN_ENSURE(pb->device_id.len == CN_DEVICE_ID_LEN && sp != NULL, CN_EPROTO);
    CN_ENSURE(sp->public_key.len == CN_PREKEY_LEN && sp->signature.len == CN_SIGNATURE_LEN,
              CN_EPROTO);
    memcpy(b->identity, pb->device_id.data, CN_DEVICE_ID_LEN);
    b->spk_id = sp->key_id;
    memcpy(b->spk, sp->public_key.data, CN_PREKEY_LEN);
    memcpy(b->spk_sig, sp->signature.data, CN_SIGNATURE_LEN);
    const Chat__OneTimePrekey *ot = pb->one_time_prekey;
    if (ot != NULL) {
        CN_ENSURE(ot->public_key.len == CN_PREKEY_LEN, CN_EPROTO);
        b->has_opk = true;
        b->opk_id = ot->key_id;
        memcpy(b->opk, ot->public_key.data, CN_PREKEY_LEN);
    }
    return CN_OK;
}

/* Starts sessions from the bundles of a FetchPrekeys answer. */
static int take_bundles(cn_client_t *c, const Chat__PrekeyBundles *pbs, const cn__devices_t *want)
{
    for (size_t i = 0; pbs != NULL && i < pbs->n_bundles; i++) {
        cn_prekey_bundle_t b;
        if (bundle_from(pbs->bundles[i], &b) != CN_OK || !in_list(want, b.identity))
            continue;
        cn_ratchet_t *r = NULL;
        int rc = cn_x3dh_initiate(&c->id, &b, &r);
        if (rc == CN_EAUTH) {
            char hex[17];
            cn_hex_encode(hex, b.identity, 8);
            cn__client_warn(c,
                            "device %s... of %s sent a prekey with a bad signature; not "
                            "encrypting for it",
                            hex, pbs->handle ? pbs->handle : "?");
            continue;
        }
        CN_TRY(rc);
        cn__peer_t *p;
        rc = peer_get(c, b.identity, true, &p);
        if (rc == CN_OK)
            rc = cn_session_add(p->s, r);
        if (rc < 0) {
            cn_ratchet_free(r);
            return rc;
        }
        p->dirty = true;
    }
    return CN_OK;
}

int cn__e2e_ensure_sessions(cn_client_t *c, const char *handle, const cn__devices_t *dev,
                            uint64_t deadline_ms, cn__devices_t *bad)
{
    cn__devices_t missing = {0};
    memset(bad, 0, sizeof(*bad));
    CN_TRY(cn__trust_check(c, handle, &dev->ids[0][0], dev->n));
    for (uint32_t i = 0; i < dev->n; i++)
        if (!cn__e2e_has_session(c, dev->ids[i]))
            memcpy(missing.ids[missing.n++], dev->ids[i], CN_DEVICE_ID_LEN);
    if (missing.n == 0)
        return CN_OK;
    ProtobufCBinaryData ids[CN_DEVICES_HARD_MAX];
    for (uint32_t i = 0; i < missing.n; i++)
        ids[i] = cn__bin(missing.ids[i], CN_DEVICE_ID_LEN);
    Chat__FetchPrekeys fp;
    chat__fetch_prekeys__init(&fp);
    fp.handle = cn__str_mut(handle);
    fp.n_device_ids = missing.n;
    fp.device_ids = ids;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_FETCH_PREKEYS;
    f.fetch_prekeys = &fp;
    Chat__ServerFrame *r = NULL;
    CN_TRY(cn__client_call(c, &f, deadline_ms, &r));
    const Chat__Response *resp = r->response;
    int rc = CN_OK;
    if (resp->status == CHAT__STATUS__OK && resp->result_case == CHAT__RESPONSE__RESULT_PREKEYS) {
        rc = take_bundles(c, resp->prekeys, &missing);
    } else if (resp->status != CHAT__STATUS__OK && resp->status != CHAT__STATUS__NOT_FOUND) {
        cn__client_refuse(c, resp->status, resp->detail);
        rc = cn__status_err(resp->status);
    }
    chat__server_frame__free_unpacked(r, NULL);
    CN_TRY(rc);
    for (uint32_t i = 0; i < missing.n; i++)
        if (!cn__e2e_has_session(c, missing.ids[i]))
            memcpy(bad->ids[bad->n++], missing.ids[i], CN_DEVICE_ID_LEN);
    return CN_OK;
}

/* --------------------------------------------------------------- trust */

static int trust_path(const cn_client_t *c, const char *handle, char *path, char *label)
{
    char norm[CN_HANDLE_MAX + 1];
    CN_TRY(cn_handle_normalize(handle, norm));
    int n = snprintf(path, CN__PATH_MAX, "%s/trust/%s", c->home, norm);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    snprintf(label, 64, "trust:%s", norm);
    return CN_OK;
}

typedef struct trust {
    uint32_t n;
    uint8_t keys[TRUST_MAX][CN_DEVICE_ID_LEN];
} trust_t;

static int trust_load(cn_client_t *c, const char *path, const char *label, trust_t *t)
{
    cn_buf_t b;
    cn_buf_init(&b);
    memset(t, 0, sizeof(*t));
    int rc = cn__sealed_read(c->home_key, path, label, 6 + sizeof(t->keys), &b);
    if (rc == CN_OK) {
        size_t n = b.len >= 6 ? b.data[5] : 0;
        if (b.len < 6 || memcmp(b.data, TRUST_MAGIC, 4) != 0 || b.data[4] != 1 || n > TRUST_MAX ||
            b.len != 6 + n * CN_DEVICE_ID_LEN)
            rc = CN_EINVAL;
        else {
            t->n = (uint32_t)n;
            memcpy(t->keys, b.data + 6, n * CN_DEVICE_ID_LEN);
        }
    }
    cn_buf_dispose(&b);
    return rc == CN_ENOTFOUND ? CN_OK : rc;
}

int cn__trust_check(cn_client_t *c, const char *handle, const uint8_t *devs, size_t n)
{
    char path[CN__PATH_MAX], label[64];
    trust_t t;
    bool changed = false;
    CN_TRY(trust_path(c, handle, path, label));
    CN_TRY(trust_load(c, path, label, &t));
    bool first_use = t.n == 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *k = devs + i * CN_DEVICE_ID_LEN;
        bool known = false;
        for (uint32_t j = 0; j < t.n && !known; j++)
            known = memcmp(t.keys[j], k, CN_DEVICE_ID_LEN) == 0;
        if (known)
            continue;
        if (!first_use) {
            char hex[2 * CN_DEVICE_ID_LEN + 1];
            cn_hex_encode(hex, k, CN_DEVICE_ID_LEN);
            cn__client_warn(c,
                            "the identity key of %s changed (new device key %.16s...). If you "
                            "did not expect this, compare safety numbers: chatclient "
                            "fingerprint %s",
                            handle, hex, handle);
        }
        if (t.n == TRUST_MAX) {
            memmove(t.keys, t.keys + 1, (TRUST_MAX - 1) * CN_DEVICE_ID_LEN);
            t.n--;
        }
        memcpy(t.keys[t.n++], k, CN_DEVICE_ID_LEN);
        changed = true;
    }
    if (!changed)
        return CN_OK;
    uint8_t img[6 + sizeof(t.keys)];
    memcpy(img, TRUST_MAGIC, 4);
    img[4] = 1;
    img[5] = (uint8_t)t.n;
    memcpy(img + 6, t.keys, t.n * CN_DEVICE_ID_LEN);
    return cn__sealed_write(c->home_key, path, label, img, 6 + t.n * CN_DEVICE_ID_LEN);
}

/* ---------------------------------------------------------- safety number */

int cn__devices_get(cn_client_t *c, const char *handle, uint64_t deadline, cn__devices_t *out)
{
    Chat__GetDevices g;
    chat__get_devices__init(&g);
    g.handle = cn__str_mut(handle);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GET_DEVICES;
    f.get_devices = &g;
    Chat__ServerFrame *r = NULL;
    CN_TRY(cn__client_call(c, &f, deadline, &r));
    const Chat__Response *resp = r->response;
    int rc = CN_OK;
    memset(out, 0, sizeof(*out));
    if (resp->status != CHAT__STATUS__OK || resp->result_case != CHAT__RESPONSE__RESULT_DEVICES) {
        cn__client_refuse(c, resp->status, resp->detail);
        rc = resp->status != CHAT__STATUS__OK ? cn__status_err(resp->status) : CN_EPROTO;
    } else {
        for (size_t i = 0; i < resp->devices->n_devices && out->n < CN_DEVICES_HARD_MAX; i++)
            if (resp->devices->devices[i]->device_id.len == CN_DEVICE_ID_LEN)
                memcpy(out->ids[out->n++], resp->devices->devices[i]->device_id.data,
                       CN_DEVICE_ID_LEN);
    }
    chat__server_frame__free_unpacked(r, NULL);
    return rc;
}

int cn_client_fingerprint(cn_client_t *c, const char *handle, char *out, size_t out_len)
{
    char norm[CN_HANDLE_MAX + 1];
    CN_ENSURE(out != NULL && out_len > CN_SAFETY_NUMBER_DIGITS, CN_EINVAL);
    CN_ENSURE(handle != NULL && cn_handle_normalize(handle, norm) == CN_OK, CN_EINVAL);
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    cn__login_t auth = {0};
    cn__devices_t mine, theirs;
    for (;;) {
        CN_TRY(cn__client_connect(c, &auth, deadline));
        int rc = cn__devices_get(c, c->handle, deadline, &mine);
        if (rc == CN_OK)
            rc = cn__devices_get(c, norm, deadline, &theirs);
        if (rc == CN_ECLOSED)
            continue;
        CN_TRY(rc);
        break;
    }
    CN_ENSURE(mine.n > 0 && theirs.n > 0, CN_ENOTFOUND);
    CN_TRY(cn__trust_check(c, norm, &theirs.ids[0][0], theirs.n));
    return cn_safety_number(c->handle, &mine.ids[0][0], mine.n, norm, &theirs.ids[0][0], theirs.n,
                            out);
}

/* ---------------------------------------------------------- test faults */

void cn__faults_init(cn__faults_t *f)
{
    memset(f, 0, sizeof(*f));
    const char *spec = getenv("CHATCLIENT_TEST_FAULTS");
    if (spec == NULL || spec[0] == '\0')
        return;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned v = 0;
        if (sscanf(tok, "drop=%u", &v) == 1)
            f->drop = CN_MIN(v, 1000u);
        else if (sscanf(tok, "reorder=%u", &v) == 1)
            f->reorder = CN_MIN(v, 1000u);
        else if (sscanf(tok, "dup=%u", &v) == 1)
            f->dup = CN_MIN(v, 1000u);
        else if (sscanf(tok, "corrupt=%u", &v) == 1)
            f->corrupt = CN_MIN(v, 1000u);
    }
    f->on = f->drop + f->reorder + f->dup + f->corrupt > 0;
    if (f->on)
        cn_log_warn("client.test_faults", "drop=%u reorder=%u dup=%u corrupt=%u (per mille)",
                    f->drop, f->reorder, f->dup, f->corrupt);
}
