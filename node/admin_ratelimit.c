/*
 * chatadmin ratelimit list|set|reset, and the policies persisted in meta
 * ("ratelimit/ACTION[/DEVICE]") loaded at start.
 */
#include "node/node_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- rate limits */

static int policy_name(char *out, size_t cap, enum cn_rl_action a, const uint8_t *device)
{
    char hex[2 * CN_DEVICE_ID_LEN + 1] = "";
    if (device)
        cn_hex_encode(hex, device, CN_DEVICE_ID_LEN);
    int n = snprintf(out, cap, "ratelimit/%s%s%s", cn__rl_action_name(a), device ? "/" : "", hex);
    return n > 0 && (size_t)n < cap ? CN_OK : CN_ETOOBIG;
}

static int policy_row(cn_admin_msg_t *resp, enum cn_rl_action a, const uint8_t *device,
                      cn_rl_policy_t p)
{
    cn_admin_row_t *r = cn__admin_add_row(resp);
    if (!r)
        return CN_ELIMIT;
    char hex[2 * CN_DEVICE_ID_LEN + 1] = "*";
    if (device)
        cn_hex_encode(hex, device, CN_DEVICE_ID_LEN);
    int rc = cn_admin_row_set(r, "action", "%s", cn__rl_action_name(a));
    rc |= cn_admin_row_set(r, "device", "%s", hex);
    rc |= cn_admin_row_set(r, "rate_per_s", "%g", p.rate);
    rc |= cn_admin_row_set(r, "burst", "%g", p.burst);
    return rc;
}

typedef struct override_ctx {
    cn_admin_msg_t *resp;
    int rc;
} override_ctx_t;

static void on_override(void *ctx, enum cn_rl_action a, const uint8_t *device, cn_rl_policy_t p)
{
    override_ctx_t *x = ctx;
    x->rc |= policy_row(x->resp, a, device, p);
}

void cn__cmd_ratelimit_list(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    (void)req;
    int rc = 0;
    for (int a = 0; a < CN_RL__COUNT; a++)
        rc |= policy_row(resp, (enum cn_rl_action)a, NULL, cn__rl_get(s->rl, a, NULL));
    override_ctx_t x = {resp, 0};
    cn__rl_each_override(s->rl, on_override, &x);
    cn__admin_check_rows(resp, rc | x.rc);
}

/* Parses action and the optional device of a ratelimit command. */
static bool policy_target(const cn_admin_msg_t *req, cn_admin_msg_t *resp, enum cn_rl_action *a,
                          uint8_t device[CN_DEVICE_ID_LEN], bool *has_device)
{
    const char *name = cn__admin_arg(req, "action");
    if (!name || cn__rl_action_parse(name, a) < 0) {
        cn__admin_fail(resp, CN_ADMIN_USAGE,
                       "action must be one of connect, auth-failure, register, send, "
                       "send-bytes, prekey-fetch, media-bytes, history");
        return false;
    }
    *has_device = cn__admin_arg(req, "device") != NULL;
    return !*has_device || cn__admin_arg_device(req, resp, "device", device);
}

void cn__cmd_ratelimit_set(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    enum cn_rl_action a;
    uint8_t device[CN_DEVICE_ID_LEN];
    bool has_device;
    if (!policy_target(req, resp, &a, device, &has_device))
        return;
    cn_rl_policy_t p = cn__rl_get(s->rl, a, has_device ? device : NULL);
    const char *rate = cn__admin_arg(req, "rate"), *burst = cn__admin_arg(req, "burst");
    if ((rate && cn__rl_parse_rate(rate, &p.rate) < 0) ||
        (burst && (sscanf(burst, "%lf", &p.burst) != 1 || p.burst < 1)) || (!rate && !burst)) {
        cn__admin_fail(resp, CN_ADMIN_USAGE, "give --rate N/s (or /m, /h) and/or --burst N >= 1");
        return;
    }
    char value[64];
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_META_PUT;
    int n = snprintf(value, sizeof(value), "%.17g %.17g", p.rate, p.burst);
    if (policy_name(op.u.meta.name, sizeof(op.u.meta.name), a, has_device ? device : NULL) < 0 ||
        cn__rl_set(s->rl, a, has_device ? device : NULL, p) < 0) {
        cn__admin_fail(resp, CN_ADMIN_REFUSED, "invalid policy or too many device overrides");
        return;
    }
    op.u.meta.value = value;
    op.u.meta.len = (size_t)n;
    if (cn__admin_submit_wait(s, &op) < 0) /* live now; persisting failed */
        cn__admin_fail(resp, CN_ADMIN_FAILED, "applied, but not persisted: storage unavailable");
    else
        cn__admin_check_rows(resp, policy_row(resp, a, has_device ? device : NULL, p));
    cn_log_info("ratelimit_set", "action=%s rate=%g burst=%g device_override=%d",
                cn__rl_action_name(a), p.rate, p.burst, has_device);
}

void cn__cmd_ratelimit_reset(cn_server_t *s, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    enum cn_rl_action a;
    uint8_t device[CN_DEVICE_ID_LEN];
    bool has_device;
    if (!policy_target(req, resp, &a, device, &has_device))
        return;
    cn__rl_reset(s->rl, a, has_device ? device : NULL);
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_META_DELETE;
    if (policy_name(op.u.meta.name, sizeof(op.u.meta.name), a, has_device ? device : NULL) < 0)
        return;
    int rc = cn__admin_submit_wait(s, &op);
    if (rc < 0 && rc != CN_ENOTFOUND)
        cn__admin_fail(resp, CN_ADMIN_FAILED, "reset live, but not persisted");
    else
        cn__admin_check_rows(resp, policy_row(resp, a, has_device ? device : NULL,
                                              cn__rl_get(s->rl, a, has_device ? device : NULL)));
}

static int on_policy(void *ctx, const char *name, const uint8_t *value, size_t len)
{
    cn_server_t *s = ctx;
    char action[32], text[64];
    uint8_t device[CN_DEVICE_ID_LEN];
    const char *rest = name + strlen("ratelimit/");
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    enum cn_rl_action a;
    cn_rl_policy_t p;
    if (alen >= sizeof(action) || len >= sizeof(text))
        return 0;
    memcpy(action, rest, alen);
    action[alen] = '\0';
    memcpy(text, value, len);
    text[len] = '\0';
    if (cn__rl_action_parse(action, &a) < 0 || sscanf(text, "%lf %lf", &p.rate, &p.burst) != 2 ||
        (slash && cn_hex_decode(device, sizeof(device), slash + 1) < 0) ||
        cn__rl_set(s->rl, a, slash ? device : NULL, p) < 0)
        cn_log_warn("ratelimit_policy_ignored", "name=%s", name);
    return 0;
}

void cn__rl_load(cn_server_t *s)
{
    int n = cn_store_meta_scan(s->store, "ratelimit/", on_policy, s);
    if (n > 0)
        cn_log_info("ratelimit_policies_loaded", "count=%d", n);
}
