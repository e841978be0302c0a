/*
 * Admin commands (DESIGN section 7), run on the control thread. Reads go
 * straight to the store; writes go through the store writer like every
 * other write, and the command waits for its durable callback (admin
 * commands are rare, so a short block of the control loop is fine).
 * Every value in a row is text; chatadmin renders tables or JSON.
 */
#include "node/node_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX 10000 /* rows of one listing (CN_ADMIN_ROWS_MAX) */

void cn__admin_fail(cn_admin_msg_t *resp, uint32_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp->status = status;
    vsnprintf(resp->error, sizeof(resp->error), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------ synchronous ops */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} waiter_t;

static void wake(cn_store_op_t *op)
{
    waiter_t *w = op->ctx;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Submits op and waits for its durable completion; returns op->result. */
int cn__admin_submit_wait(cn_server_t *s, cn_store_op_t *op)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    op->done = wake;
    op->ctx = &w;
    int rc = cn_store_submit(s->store, op);
    if (rc == CN_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = op->result;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

uint32_t cn__admin_status_of(int rc)
{
    return rc == CN_ENOTFOUND ? CN_ADMIN_NOT_FOUND
           : rc == CN_EINVAL  ? CN_ADMIN_USAGE
                              : CN_ADMIN_FAILED;
}

/* ---------------------------------------------------------- arguments */

const char *cn__admin_arg(const cn_admin_msg_t *req, const char *key)
{
    return cn_admin_row_get(&req->args, key);
}

bool cn__admin_arg_device(const cn_admin_msg_t *req, cn_admin_msg_t *resp, const char *key,
                          uint8_t out[CN_DEVICE_ID_LEN])
{
    const char *v = cn__admin_arg(req, key);
    if (!v || cn_hex_decode(out, CN_DEVICE_ID_LEN, v) < 0) {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "%s must be a device id (64 hex digits)", key);
        return false;
    }
    return true;
}

bool cn__admin_arg_handle(const cn_admin_msg_t *req, cn_admin_msg_t *resp,
                          char out[CN_HANDLE_MAX + 1])
{
    const char *v = cn__admin_arg(req, "handle");
    if (!v || cn_handle_normalize(v, out) < 0) {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "handle must match [a-z0-9._-]{3,32}");
        return false;
    }
    return true;
}

cn_admin_row_t *cn__admin_add_row(cn_admin_msg_t *resp)
{
    cn_admin_row_t *r = cn_admin_add_row(resp);
    if (!r)
        cn__admin_fail(resp, CN_ADMIN_FAILED, "too many rows");
    return r;
}

/* Fails resp when any row_set failed (out of memory or an oversized value). */
void cn__admin_check_rows(cn_admin_msg_t *resp, int rc)
{
    if (rc && resp->status == CN_ADMIN_OK)
        cn__admin_fail(resp, CN_ADMIN_FAILED, "cannot build the answer");
}

/* -------------------------------------------------------------- devices */

static int device_row(cn_server_t *s, cn_admin_row_t *r, const uint8_t *id,
                      const cn_rec_device_t *d)
{
    char hex[2 * CN_DEVICE_ID_LEN + 1];
    cn_route_t route;
    cn_hex_encode(hex, id, CN_DEVICE_ID_LEN);
    bool online = cn__registry_get(s->registry, id, &route) == CN_OK;
    int rc = cn_admin_row_set(r, "id", "%s", hex);
    rc |= cn_admin_row_set(r, "user", "%s", d->user);
    rc |= cn_admin_row_set(r, "name", "%s", d->name);
    rc |= cn_admin_row_set(r, "created", "%llu", (unsigned long long)d->created);
    /* last_seen: now while online; the node keeps no per-device history yet. */
    rc |= cn_admin_row_set(r, "last_seen", "%llu", online ? (unsigned long long)cn_now_ms() : 0ull);
    rc |= cn_admin_row_set(r, "online", "%s", online ? "yes" : "no");
    rc |= cn_admin_row_set(r, "revoked", "%llu", (unsigned long long)d->revoked);
    return rc;
}

typedef struct list_ctx {
    cn_server_t *s;
    cn_admin_msg_t *resp;
    int rc;
} list_ctx_t;

static int on_device(void *ctx, const uint8_t id[CN_DEVICE_ID_LEN], const cn_rec_device_t *d)
{
    list_ctx_t *x = ctx;
    cn_admin_row_t *r = cn__admin_add_row(x->resp);
    if (!r)
        return 1;
    x->rc |= device_row(x->s, r, id, d);
    return 0;
}

static void cmd_device_list(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    list_ctx_t x = {s, resp, 0};
    if (cn_store_device_list(s->store, NULL, LIST_MAX, on_device, &x) < 0)
        cn__admin_fail(resp, CN_ADMIN_FAILED, "storage unavailable");
    cn__admin_check_rows(resp, x.rc);
}

static void cmd_device_show(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    cn_rec_device_t d;
    if (!cn__admin_arg_device(req, resp, "id", id))
        return;
    int rc = cn_store_device_get(s->store, id, &d);
    if (rc < 0) {
        cn__admin_fail(resp, cn__admin_status_of(rc), "no such device");
        return;
    }
    uint32_t prekeys = 0;
    uint64_t depth = 0, bytes = 0, oldest = 0;
    CN_IGNORE(cn_store_prekey_count(s->store, id, &prekeys));
    CN_IGNORE(cn_store_mailbox_stats(s->store, id, &depth, &bytes, &oldest));
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return;
    rc = device_row(s, r, id, &d);
    rc |= cn_admin_row_set(r, "prekeys", "%u", prekeys);
    rc |= cn_admin_row_set(r, "queued", "%llu", (unsigned long long)depth);
    rc |= cn_admin_row_set(r, "queued_bytes", "%llu", (unsigned long long)bytes);
    cn__admin_check_rows(resp, rc);
}

/*
 * The revoked device's user has a new device list: drop it from the user
 * cache before the command is answered (node/usercache.c). The device
 * record names the user (copied to user, "" when unknown); when it cannot
 * be read, every user goes.
 */
static void revoked_invalidate(cn_server_t *s, const uint8_t id[CN_DEVICE_ID_LEN],
                               char user[CN_HANDLE_MAX + 1])
{
    cn_rec_device_t d;
    user[0] = '\0';
    int rc = cn_store_device_get(s->store, id, &d);
    if (rc == CN_OK) {
        cn__usercache_user_invalidate(s->usercache, d.user);
        snprintf(user, CN_HANDLE_MAX + 1, "%s", d.user);
    } else if (rc != CN_ENOTFOUND) { /* an unknown device: nothing was revoked */
        cn__usercache_users_clear(s->usercache);
    }
}

static void cmd_device_revoke(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_REVOKE;
    if (!cn__admin_arg_device(req, resp, "id", op.u.revoke.device_id))
        return;
    char user[CN_HANDLE_MAX + 1];
    int rc = cn__admin_submit_wait(s, &op);
    revoked_invalidate(s, op.u.revoke.device_id, user);
    if (rc < 0) {
        cn__admin_fail(resp, cn__admin_status_of(rc),
                       rc == CN_ENOTFOUND ? "no such active device" : "storage unavailable");
        return;
    }
    cn__kick_device(s, op.u.revoke.device_id, "device revoked");
    /* The user's other devices learn it as they do from a device's revoke. */
    if (user[0])
        cn__devices_changed(s, user);
    cn_log_info("device_revoked", "by=admin");
}

/* ---------------------------------------------------------------- users */

static int user_row(cn_admin_row_t *r, const char *handle, const cn_rec_user_t *u)
{
    int rc = cn_admin_row_set(r, "handle", "%s", handle);
    rc |= cn_admin_row_set(r, "devices", "%u", u->ndevices);
    rc |= cn_admin_row_set(r, "created", "%llu", (unsigned long long)u->created);
    rc |= cn_admin_row_set(r, "disabled", "%s", u->disabled ? "yes" : "no");
    rc |= cn_admin_row_set(r, "presence_hidden", "%s", u->presence_hidden ? "yes" : "no");
    return rc;
}

static int on_user(void *ctx, const char *handle, const cn_rec_user_t *u)
{
    list_ctx_t *x = ctx;
    cn_admin_row_t *r = cn__admin_add_row(x->resp);
    if (!r)
        return 1;
    x->rc |= user_row(r, handle, u);
    return 0;
}

static void cmd_user_list(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    list_ctx_t x = {s, resp, 0};
    if (cn_store_user_list(s->store, "", LIST_MAX, on_user, &x) < 0)
        cn__admin_fail(resp, CN_ADMIN_FAILED, "storage unavailable");
    cn__admin_check_rows(resp, x.rc);
}

static void cmd_user_show(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    char handle[CN_HANDLE_MAX + 1];
    cn_rec_user_t u;
    if (!cn__admin_arg_handle(req, resp, handle))
        return;
    int rc = cn_store_user_get(s->store, handle, &u);
    if (rc < 0) {
        cn__admin_fail(resp, cn__admin_status_of(rc), "no such user");
        return;
    }
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return;
    rc = user_row(r, handle, &u);
    for (uint32_t i = 0; i < u.ndevices && i < CN_DEVICES_HARD_MAX; i++) {
        char key[16], hex[2 * CN_DEVICE_ID_LEN + 1];
        snprintf(key, sizeof(key), "device%u", i + 1);
        cn_hex_encode(hex, u.devices[i], CN_DEVICE_ID_LEN);
        rc |= cn_admin_row_set(r, key, "%s", hex);
    }
    cn__admin_check_rows(resp, rc);
}

static void set_disabled(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp,
                         bool disabled)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_USER_UPDATE;
    if (!cn__admin_arg_handle(req, resp, op.u.user_update.handle))
        return;
    op.u.user_update.mask = CN_USER_SET_DISABLED;
    op.u.user_update.disabled = disabled;
    int rc = cn__admin_submit_wait(s, &op);
    /* Before the kicks and the answer (node/usercache.c). */
    cn__usercache_user_invalidate(s->usercache, op.u.user_update.handle);
    if (rc < 0) {
        cn__admin_fail(resp, cn__admin_status_of(rc),
                       rc == CN_ENOTFOUND ? "no such user" : "storage unavailable");
        return;
    }
    cn_rec_user_t u;
    if (disabled && cn_store_user_get(s->store, op.u.user_update.handle, &u) == CN_OK)
        for (uint32_t i = 0; i < u.ndevices && i < CN_DEVICES_HARD_MAX; i++)
            cn__kick_device(s, u.devices[i], "user disabled");
}

static void cmd_user_disable(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    set_disabled(s, req, resp, true);
}

static void cmd_user_enable(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    set_disabled(s, req, resp, false);
}

/* -------------------------------------------------------------- invites */

/* Parses "30s", "15m", "12h", "7d" (or plain seconds) into milliseconds. */
static int parse_duration_ms(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    CN_ENSURE(end != v && v[0] != '-' && n > 0 && n < 100000000ull, CN_EINVAL);
    uint64_t unit = 1000;
    if (*end == 'm')
        unit = 60 * 1000;
    else if (*end == 'h')
        unit = 3600 * 1000;
    else if (*end == 'd')
        unit = 86400 * 1000;
    else
        CN_ENSURE(*end == 's' || *end == '\0', CN_EINVAL);
    CN_ENSURE(*end == '\0' || end[1] == '\0', CN_EINVAL);
    *out = (uint64_t)n * unit;
    return CN_OK;
}

static void cmd_invite_create(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    uint64_t expires = 0, uses = 1;
    const char *v = cn__admin_arg(req, "expires");
    if (v && parse_duration_ms(v, &expires) < 0) {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "expires must look like 30s, 15m, 12h or 7d");
        return;
    }
    v = cn__admin_arg(req, "uses");
    if (v && (sscanf(v, "%llu", (unsigned long long *)&uses) != 1 || uses < 1 || uses > 100000)) {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "uses must be 1..100000");
        return;
    }
    uint8_t raw[16], rec[CN_INVITE_RECORD_LEN];
    char token[2 * sizeof(raw) + 1];
    cn_random(raw, sizeof(raw));
    cn_hex_encode(token, raw, sizeof(raw));
    if (expires)
        expires += cn_now_ms();
    cn_store_u32be(rec, (uint32_t)uses);
    cn_store_u64be(rec + 4, expires);
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_META_PUT;
    snprintf(op.u.meta.name, sizeof(op.u.meta.name), "invite/%s", token);
    op.u.meta.value = rec;
    op.u.meta.len = sizeof(rec);
    if (cn__admin_submit_wait(s, &op) < 0) {
        cn__admin_fail(resp, CN_ADMIN_FAILED, "storage unavailable");
        return;
    }
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return;
    int rc = cn_admin_row_set(r, "token", "%s", token);
    rc |= cn_admin_row_set(r, "uses", "%llu", (unsigned long long)uses);
    rc |= cn_admin_row_set(r, "expires", "%llu", (unsigned long long)expires);
    cn__admin_check_rows(resp, rc);
    cn_log_info("invite_created", "uses=%llu", (unsigned long long)uses);
}

/* ---------------------------------------------------------- queue, backup */

static void cmd_queue_show(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    if (!cn__admin_arg_device(req, resp, "device", id))
        return;
    cn_rec_device_t d;
    int rc = cn_store_device_get(s->store, id, &d);
    if (rc < 0) {
        cn__admin_fail(resp, cn__admin_status_of(rc), "no such device");
        return;
    }
    uint64_t depth = 0, bytes = 0, oldest = 0, now = cn_now_ms();
    if (cn_store_mailbox_stats(s->store, id, &depth, &bytes, &oldest) < 0) {
        cn__admin_fail(resp, CN_ADMIN_FAILED, "storage unavailable");
        return;
    }
    /* Depth and age only: never the contents. */
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return;
    rc = cn_admin_row_set(r, "device", "%s", cn__admin_arg(req, "device"));
    rc |= cn_admin_row_set(r, "depth", "%llu", (unsigned long long)depth);
    rc |= cn_admin_row_set(r, "bytes", "%llu", (unsigned long long)bytes);
    rc |= cn_admin_row_set(r, "oldest_age_s", "%llu",
                           oldest && now > oldest ? (unsigned long long)(now - oldest) / 1000 : 0);
    cn__admin_check_rows(resp, rc);
}

static void cmd_backup(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    const char *dir = cn__admin_arg(req, "dir");
    if (!dir || !dir[0] || dir[0] != '/') {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "dir must be an absolute path that does not exist");
        return;
    }
    int rc = cn_store_checkpoint(s->store, dir);
    if (rc < 0) {
        cn__admin_fail(resp, rc == CN_EEXIST ? CN_ADMIN_REFUSED : CN_ADMIN_FAILED,
                       rc == CN_EEXIST ? "%s exists already" : "checkpoint into %s failed", dir);
        return;
    }
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (r)
        cn__admin_check_rows(resp, cn_admin_row_set(r, "backup", "%s", dir));
    cn_log_info("backup_done", "dir=%s", dir);
}

/* ---------------------------------------------------------- stats, config */

typedef struct scan_ctx {
    cn_server_t *s;
    uint64_t devices, low_prekeys, queues, queued, oldest, revoked;
} scan_ctx_t;

/* Per device: prekeys left and the queue (admin only: O(devices + queued)). */
static int on_scan_device(void *ctx, const uint8_t id[CN_DEVICE_ID_LEN], const cn_rec_device_t *d)
{
    scan_ctx_t *x = ctx;
    if (d->revoked) {
        x->revoked++;
        return 0;
    }
    x->devices++;
    uint32_t prekeys = 0;
    if (cn_store_prekey_count(x->s->store, id, &prekeys) == CN_OK && prekeys < CN_OTPK_LOW_MARK)
        x->low_prekeys++;
    uint64_t depth = 0, oldest = 0;
    if (cn_store_mailbox_stats(x->s->store, id, &depth, NULL, &oldest) == CN_OK && depth) {
        x->queues++;
        x->queued += depth;
        if (!x->oldest || oldest < x->oldest)
            x->oldest = oldest;
    }
    return 0;
}

#define LOAD(field) (unsigned long long)atomic_load(&s->counters.field)

static void cmd_stats(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return;
    cn_store_stats_t st;
    cn_store_stats_get(s->store, &st);
    scan_ctx_t x = {.s = s};
    CN_IGNORE(cn_store_device_list(s->store, NULL, UINT32_MAX, on_scan_device, &x));
    uint64_t now = cn_now_ms();
    int rc = cn_admin_row_set(r, "connections", "%llu", LOAD(connections_open));
    rc |= cn_admin_row_set(r, "devices_online", "%zu", cn__registry_size(s->registry));
    rc |= cn_admin_row_set(r, "devices", "%llu", (unsigned long long)x.devices);
    rc |= cn_admin_row_set(r, "devices_revoked", "%llu", (unsigned long long)x.revoked);
    rc |= cn_admin_row_set(r, "devices_low_on_prekeys", "%llu", (unsigned long long)x.low_prekeys);
    rc |= cn_admin_row_set(r, "queues", "%llu", (unsigned long long)x.queues);
    rc |= cn_admin_row_set(r, "queued_messages", "%llu", (unsigned long long)x.queued);
    rc |= cn_admin_row_set(r, "oldest_queued_age_s", "%llu",
                           x.oldest && now > x.oldest ? (unsigned long long)(now - x.oldest) / 1000
                                                      : 0ull);
    rc |= cn_admin_row_set(r, "messages_accepted", "%llu", LOAD(messages_accepted));
    rc |= cn_admin_row_set(r, "messages_delivered", "%llu", LOAD(messages_delivered));
    rc |= cn_admin_row_set(r, "messages_acked", "%llu", LOAD(messages_acked));
    rc |= cn_admin_row_set(r, "auth_failed", "%llu", LOAD(auth_failed));
    rc |= cn_admin_row_set(r, "store_queue_depth", "%llu", (unsigned long long)st.queue_depth);
    rc |= cn_admin_row_set(r, "store_batches", "%llu", (unsigned long long)st.batches);
    rc |= cn_admin_row_set(r, "store_ops", "%llu", (unsigned long long)st.ops);
    rc |= cn_admin_row_set(r, "sync", "%s", cn_sync_name(s->cfg.sync));
    cn_store_keys_stats_t *k = calloc(1, sizeof(*k));
    if (k && cn_store_keys_stats(s->store, k) == CN_OK && k->encrypted) {
        rc |= cn_admin_row_set(r, "keys_current", "%u", k->current);
        rc |= cn_admin_row_set(r, "reseal_running", "%s", k->running ? "yes" : "no");
        rc |= cn_admin_row_set(r, "reseal_progress", "%llu/%llu", (unsigned long long)k->scanned,
                               (unsigned long long)k->total_estimate);
        rc |= cn_admin_row_set(r, "resealed", "%llu", (unsigned long long)k->resealed);
        rc |= cn_admin_row_set(r, "auth_failures", "%llu", (unsigned long long)k->auth_failures);
    }
    free(k);
    cn__admin_check_rows(resp, rc);
}

static void cmd_config_show(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    const cn_node_config_t *c = &s->cfg;
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return;
    int rc = cn_admin_row_set(r, "listen", "%s:%u", c->listen_host, s->bound_port);
    rc |= cn_admin_row_set(r, "data", "%s", c->data_dir);
    rc |= cn_admin_row_set(r, "threads", "%u", c->threads);
    rc |= cn_admin_row_set(r, "sync", "%s", cn_sync_name(c->sync));
    rc |= cn_admin_row_set(r, "registration", "%s",
                           c->registration == CN_REG_OPEN ? "open" : "invite");
    rc |= cn_admin_row_set(r, "max_devices", "%u", c->max_devices);
    rc |= cn_admin_row_set(r, "handshake_timeout_ms", "%u", c->handshake_timeout_ms);
    rc |= cn_admin_row_set(r, "auth_timeout_ms", "%u", c->auth_timeout_ms);
    rc |= cn_admin_row_set(r, "idle_timeout_ms", "%u", c->idle_timeout_ms);
    rc |= cn_admin_row_set(r, "ping_interval_ms", "%u", c->ping_interval_ms);
    rc |= cn_admin_row_set(r, "mailbox_ttl_days", "%llu",
                           (unsigned long long)(c->mailbox_ttl_ms / 86400000ull));
    rc |= cn_admin_row_set(r, "out_soft_limit", "%zu", c->out_soft_limit);
    rc |= cn_admin_row_set(r, "out_hard_limit", "%zu", c->out_hard_limit);
    rc |= cn_admin_row_set(r, "max_connections", "%u", c->max_connections);
    rc |= cn_admin_row_set(r, "max_queued_bytes", "%llu", (unsigned long long)c->max_queued_bytes);
    cn__admin_check_rows(resp, rc);
}

/* ------------------------------------------------------------- dispatch */

typedef void (*cmd_fn)(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp);

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"stats", cmd_stats},
    {"config.show", cmd_config_show},
    {"device.list", cmd_device_list},
    {"device.show", cmd_device_show},
    {"device.revoke", cmd_device_revoke},
    {"user.list", cmd_user_list},
    {"user.show", cmd_user_show},
    {"user.disable", cmd_user_disable},
    {"user.enable", cmd_user_enable},
    {"invite.create", cmd_invite_create},
    {"ratelimit.list", cn__cmd_ratelimit_list},
    {"ratelimit.set", cn__cmd_ratelimit_set},
    {"ratelimit.reset", cn__cmd_ratelimit_reset},
    {"queue.show", cmd_queue_show},
    {"backup", cmd_backup},
    {"keys.list", cn__cmd_keys_list},
    {"keys.rotate", cn__cmd_keys_rotate},
    {"keys.retire", cn__cmd_keys_retire},
};

void cn__admin_execute(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(commands); i++) {
        if (strcmp(commands[i].name, req->cmd) == 0) {
            commands[i].fn(s, req, resp);
            return;
        }
    }
    cn__admin_fail(resp, CN_ADMIN_USAGE, "unknown command '%s'", req->cmd);
}
