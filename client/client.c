/*
 * The client object and its home directory, registration and prekeys.
 *
 * HOME (0700): home.params + home.key (client/keystore.c: the at-rest key),
 * identity (sealed), handle (text), prekeys (sealed, client/store.c),
 * prekeys.ok (the node holds our prekeys), outbox/ (client/outbox.c),
 * devices/ (client/store.c), sessions/ and trust/ (sealed, client/e2e.c),
 * seen (seen.c).
 */
#include "client/client_int.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cn__home_path(const cn_client_t *c, const char *name, char out[CN__PATH_MAX])
{
    int n = snprintf(out, CN__PATH_MAX, "%s/%s", c->home, name);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    return CN_OK;
}

static int load_handle(cn_client_t *c)
{
    char path[CN__PATH_MAX];
    cn_buf_t b;
    cn_buf_init(&b);
    CN_TRY(cn__home_path(c, "handle", path));
    int rc = cn__file_read(path, 64, &b);
    if (rc == CN_OK) {
        char tmp[64] = {0};
        memcpy(tmp, b.data, CN_MIN(b.len, sizeof(tmp) - 1));
        tmp[strcspn(tmp, "\r\n")] = '\0';
        rc = cn_handle_normalize(tmp, c->handle);
    } else if (rc == CN_ENOTFOUND) {
        rc = CN_OK;
    }
    cn_buf_dispose(&b);
    return rc;
}

static int open_home(cn_client_t *c, const cn_client_options_t *opt)
{
    char path[CN__PATH_MAX];
    static const char *const dirs[] = {"devices", "sessions", "trust",
                                       "groups",  "uploads",  "files"};
    CN_TRY(cn__mkdir(c->home, 0700));
    CN_TRY(cn__home_path(c, "outbox", c->outbox_dir));
    CN_TRY(cn__mkdir(c->outbox_dir, 0700));
    for (size_t i = 0; i < CN_ARRAY_LEN(dirs); i++) {
        CN_TRY(cn__home_path(c, dirs[i], path));
        CN_TRY(cn__mkdir(path, 0700));
    }
    CN_TRY(cn__home_key_open(c->home, opt, &c->home_key));
    int rc = cn__identity_load(c->home, c->home_key, &c->id);
    if (rc == CN_OK)
        c->has_id = true;
    else if (rc != CN_ENOTFOUND)
        return rc;
    return load_handle(c);
}

int cn_client_new(const cn_client_options_t *opt, cn_client_t **out)
{
    int rc = CN_OK;
    *out = NULL;
    CN_ENSURE(opt != NULL && opt->home != NULL, CN_EINVAL);
    CN_ENSURE(opt->insecure || opt->ca_file == NULL || opt->ca_file[0] != '\0', CN_EINVAL);
    CN_TRY(cn_crypto_init());
    cn_client_t *c = calloc(1, sizeof(*c));
    CN_ENSURE(c != NULL, CN_ENOMEM);
    CN_TRY_OUT(
        cn_client_url_parse(opt->server_url ? opt->server_url : CN_CLIENT_DEFAULT_URL, &c->url));
    CN_ENSURE_OUT(strlen(opt->home) < sizeof(c->home) - 64, CN_EINVAL);
    strcpy(c->home, opt->home);
    if (opt->ca_file != NULL) {
        c->ca_file = strdup(opt->ca_file);
        CN_ENSURE_OUT(c->ca_file != NULL, CN_ENOMEM);
    }
    c->tls.ca_file = c->ca_file;
    c->tls.insecure = opt->insecure;
    c->timeout_ms = opt->timeout_ms ? opt->timeout_ms : 60000;
    cn_random(&c->next_rid, sizeof(c->next_rid));
    c->next_rid &= 0xffffffffffffull; /* readable ids in logs, still unique per run */
    cn__faults_init(&c->faults);
    CN_TRY_OUT(open_home(c, opt));
out:
    if (rc < 0) {
        cn_client_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

void cn_client_free(cn_client_t *c)
{
    if (c == NULL)
        return;
    cn__client_disconnect(c);
    int rc = c->home_key ? cn__e2e_save(c) : CN_OK;
    if (rc == CN_OK && c->home_key)
        rc = cn__skreq_save(c);
    if (rc < 0)
        cn_log_warn("client.save_failed", "err=%s", cn_strerror(rc));
    if (c->pending != NULL)
        cn__pending_dispose(c->pending);
    free(c->pending);
    cn__e2e_dispose(c);
    sodium_free(c->home_key);
    cn_identity_dispose(&c->id);
    cn__seen_close(c->seen);
    free(c->acks);
    free(c->stash);
    sodium_free(c->hkeys);
    free(c->ca_file);
    free(c->jwt);
    free(c);
}

bool cn_client_last_refusal(const cn_client_t *c, int *status, const char **detail)
{
    if (!c->refused)
        return false;
    if (status)
        *status = c->refusal_status;
    if (detail)
        *detail = c->refusal_detail;
    return true;
}

const char *cn_client_status_name(int status)
{
    static const char *const names[] = {
        "OK",        "BAD_REQUEST", "UNAUTHORIZED", "NOT_FOUND", "CONFLICT", "RATE_LIMITED",
        "TOO_LARGE", "UNAVAILABLE", "REDIRECT",     "FORBIDDEN", "INTERNAL",
    };
    if (status < 0 || (size_t)status >= CN_ARRAY_LEN(names))
        return "UNKNOWN";
    return names[status];
}

void cn_client_set_warn_cb(cn_client_t *c, cn_client_warn_cb cb, void *ud)
{
    c->warn_cb = cb;
    c->warn_ud = ud;
}

void cn__client_warn(cn_client_t *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->warn_cb != NULL)
        c->warn_cb(c->warn_ud, msg);
    else
        cn_log_warn("client.warning", "msg=\"%s\"", msg);
}

const char *cn_client_handle(const cn_client_t *c)
{
    return c->handle[0] ? c->handle : NULL;
}

int cn_client_device_id(const cn_client_t *c, uint8_t out[CN_DEVICE_ID_LEN])
{
    CN_ENSURE(c->has_id, CN_ENOTFOUND);
    memcpy(out, c->id.pk, CN_DEVICE_ID_LEN);
    return CN_OK;
}

static int ensure_identity(cn_client_t *c)
{
    if (c->has_id)
        return CN_OK;
    CN_TRY(cn_identity_generate(&c->id));
    c->has_id = true;
    return cn__identity_save(c->home, c->home_key, &c->id);
}

int cn__client_prekeys(cn_client_t *c, cn__prekeys_t **out)
{
    char path[CN__PATH_MAX];
    *out = NULL;
    if (!c->prekeys_loaded) {
        CN_TRY(cn__home_path(c, "prekeys", path));
        CN_TRY(cn__prekeys_load(path, c->home_key, &c->prekeys));
        c->prekeys_loaded = true;
    }
    *out = &c->prekeys;
    return CN_OK;
}

/* ---------------------------------------------------------------- prekeys */

/* Fills an UploadPrekeys from pk: the signed prekey when sign, and the
 * newest count one-time prekeys. Storage for the arrays is the caller's. */
static int build_upload(cn_client_t *c, const cn__prekeys_t *pk, bool sign, uint32_t count,
                        Chat__UploadPrekeys *up, Chat__SignedPrekey *sp, uint8_t sig[64],
                        Chat__OneTimePrekey *ot, Chat__OneTimePrekey **otp)
{
    if (sign) {
        cn_buf_t t;
        cn_buf_init(&t);
        int rc = cn_transcript_prekey(&t, pk->signed_id, pk->signed_kp.pk);
        if (rc == CN_OK)
            rc = cn_identity_sign(&c->id, t.data, t.len, sig);
        cn_buf_dispose(&t);
        CN_TRY(rc);
        sp->key_id = pk->signed_id;
        sp->public_key = cn__bin(pk->signed_kp.pk, CN_PREKEY_LEN);
        sp->signature = cn__bin(sig, CN_SIGNATURE_LEN);
        up->signed_prekey = sp;
    }
    count = CN_MIN(count, CN_MIN(pk->n, (uint32_t)CN_OTPK_UPLOAD_MAX));
    for (uint32_t i = 0; i < count; i++) {
        uint32_t k = pk->n - count + i;
        chat__one_time_prekey__init(&ot[i]);
        ot[i].key_id = pk->ids[k];
        ot[i].public_key = cn__bin(pk->otpk[k].pk, CN_PREKEY_LEN);
        otp[i] = &ot[i];
    }
    up->n_one_time_prekeys = count;
    up->one_time_prekeys = otp;
    return CN_OK;
}

/*
 * Generates (when asked) and sends prekeys. With wait, waits for the OK;
 * otherwise the response is consumed in the background (misc_rid).
 */
static int upload_prekeys(cn_client_t *c, bool fresh, uint32_t count, bool wait,
                          uint64_t deadline_ms)
{
    int rc = CN_OK;
    cn__prekeys_t *pk = NULL;
    Chat__ServerFrame *resp = NULL;
    Chat__UploadPrekeys up;
    chat__upload_prekeys__init(&up);
    Chat__SignedPrekey sp;
    chat__signed_prekey__init(&sp);
    Chat__OneTimePrekey ot[CN_OTPK_UPLOAD_MAX], *otp[CN_OTPK_UPLOAD_MAX];
    uint8_t sig[CN_SIGNATURE_LEN];
    rc = cn__client_prekeys(c, &pk);
    CN_ENSURE(rc == CN_OK || rc == CN_ENOTFOUND, rc);
    if (rc == CN_ENOTFOUND) {
        memset(&c->prekeys, 0, sizeof(c->prekeys));
        c->prekeys_loaded = true;
        pk = &c->prekeys;
        fresh = true;
    }
    rc = CN_OK;
    if (fresh) {
        /* Saved before upload: a key the node hands out must be ours to use. */
        CN_TRY_OUT(cn__prekeys_generate(pk, wait, count));
        /* Sessions first, then prekeys (cn__e2e_save keeps that order). */
        c->prekeys_dirty = true;
        CN_TRY_OUT(cn__e2e_save(c));
    }
    CN_TRY_OUT(build_upload(c, pk, wait, count, &up, &sp, sig, ot, otp));
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_UPLOAD_PREKEYS;
    f.upload_prekeys = &up;
    if (!wait) {
        f.request_id = c->misc_rid = cn__client_rid(c);
        CN_TRY_OUT(cn__client_send(c, &f, deadline_ms));
        goto out;
    }
    CN_TRY_OUT(cn__client_call(c, &f, deadline_ms, &resp));
    if (resp->response->status != CHAT__STATUS__OK) {
        cn__client_refuse(c, resp->response->status, resp->response->detail);
        rc = cn__status_err(resp->response->status);
    }
out:
    if (resp != NULL)
        chat__server_frame__free_unpacked(resp, NULL);
    return rc;
}

int cn__client_refill_prekeys(cn_client_t *c, uint32_t remaining, uint64_t deadline_ms)
{
    if (remaining >= CN_OTPK_LOW_MARK || c->misc_rid != 0)
        return CN_OK;
    uint32_t count = CN_OTPK_UPLOAD_MAX - CN_MIN(remaining, (uint32_t)CN_OTPK_UPLOAD_MAX);
    int rc = upload_prekeys(c, true, count, false, deadline_ms);
    /* A failed refill is retried on the next PrekeysLow, not fatal here. */
    if (rc < 0 && rc != CN_ECLOSED && rc != CN_ETIMEDOUT)
        cn_log_warn("client.refill_failed", "err=%s", cn_strerror(rc));
    return rc == CN_ECLOSED || rc == CN_ETIMEDOUT ? rc : CN_OK;
}

/* ---------------------------------------------------------------- register */

static int save_handle(cn_client_t *c, const char *handle)
{
    char path[CN__PATH_MAX], line[CN_HANDLE_MAX + 2];
    CN_TRY(cn__home_path(c, "handle", path));
    int n = snprintf(line, sizeof(line), "%s\n", handle);
    CN_TRY(cn__file_write_atomic(path, line, (size_t)n, 0600));
    snprintf(c->handle, sizeof(c->handle), "%s", handle);
    return CN_OK;
}

int cn_client_set_jwt(cn_client_t *c, const char *token)
{
    CN_ENSURE(strlen(token) <= 4096, CN_ETOOBIG);
    char *copy = strdup(token);
    CN_ENSURE(copy != NULL, CN_ENOMEM);
    free(c->jwt);
    c->jwt = copy;
    return CN_OK;
}

int cn_client_register(cn_client_t *c, const char *handle, const char *invite,
                       const char *device_name)
{
    char norm[CN_HANDLE_MAX + 1], ok_path[CN__PATH_MAX];
    CN_ENSURE(handle != NULL && cn_handle_normalize(handle, norm) == CN_OK, CN_EINVAL);
    CN_ENSURE(device_name == NULL || strlen(device_name) <= CN_DEVICE_NAME_MAX, CN_ETOOBIG);
    CN_ENSURE(c->handle[0] == '\0' || strcmp(c->handle, norm) == 0, CN_EEXIST);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    CN_TRY(ensure_identity(c));
    CN_TRY(cn__home_path(c, "prekeys.ok", ok_path));
    if (c->handle[0] == '\0') {
        cn__login_t login = {
            .register_ = true, .handle = norm, .invite = invite, .name = device_name};
        cn__client_disconnect(c);
        CN_TRY(cn__client_connect(c, &login, deadline));
        CN_TRY(save_handle(c, norm));
        (void)unlink(ok_path);
    } else if (access(ok_path, F_OK) == 0) {
        return CN_OK; /* registered and prekeys uploaded already */
    }
    cn__login_t auth = {0};
    for (;;) {
        CN_TRY(cn__client_connect(c, &auth, deadline));
        int rc = upload_prekeys(c, false, CN_OTPK_UPLOAD_MAX, true, deadline);
        if (rc == CN_ECLOSED)
            continue; /* reconnect and upload again (same keys) */
        CN_TRY(rc);
        break;
    }
    CN_TRY(cn__file_write_atomic(ok_path, "1\n", 2, 0600));
    cn__client_release_prekeys(c);
    return CN_OK;
}

void cn__client_release_prekeys(cn_client_t *c)
{
    /* Each private prekey sits in its own guarded sodium allocation: keep
     * them only while they are used (many clients in one process). */
    if (!c->prekeys_loaded || c->prekeys_dirty)
        return;
    cn__prekeys_dispose(&c->prekeys);
    memset(&c->prekeys, 0, sizeof(c->prekeys));
    c->prekeys_loaded = false;
}
