/**
 * Internal to node/: token-bucket rate limits per (action, device) and
 * per (action, source IP) (DESIGN section 8). Sans-I/O: the caller passes
 * the clock, so tests drive time. Thread-safe (sharded mutexes): buckets of
 * an IP are shared by every loop.
 *
 * Policies are `rate` tokens per second refilling a bucket of `burst`
 * tokens; a default per action, optionally overridden per action and per
 * device. Changed live by chatadmin and persisted by the node in meta.
 */
#ifndef CN_NODE_RATELIMIT_H
#define CN_NODE_RATELIMIT_H

#include "common/cn_common.h"

enum cn_rl_action {
    CN_RL_CONNECT = 0,  /* per IP: TCP connections */
    CN_RL_AUTH_FAILURE, /* per IP: failed Auth/Register attempts */
    CN_RL_REGISTER,     /* per IP: Register requests */
    CN_RL_SEND,         /* per device: Send requests */
    CN_RL_SEND_BYTES,   /* per device: ciphertext bytes sent */
    CN_RL_PREKEY_FETCH, /* per requester device and per target device: bundles */
    CN_RL_MEDIA_BYTES,  /* per device: media bytes uploaded */
    CN_RL_HISTORY,      /* per device: history queries */
    CN_RL__COUNT,
};

#define CN_RL_KEY_MAX       33     /* a device id and a scope byte; IPs are 16 bytes */
#define CN_RL_BUCKETS_MAX   262144 /* live buckets kept; full ones are evicted first */
#define CN_RL_OVERRIDES_MAX 1024   /* per-device policy overrides */

typedef struct cn_rl_policy {
    double rate;  /* tokens per second; > 0 */
    double burst; /* bucket size; >= 1 */
} cn_rl_policy_t;

typedef struct cn_ratelimit cn_ratelimit_t;

/** Returns owned with the default policies; NULL on ENOMEM. */
cn_ratelimit_t *cn__rl_new(void);
void cn__rl_free(cn_ratelimit_t *rl);

/** "connect", "auth-failure", ... ; NULL for an out-of-range action. */
const char *cn__rl_action_name(enum cn_rl_action a);
/** CN_EINVAL for an unknown name. */
CN_MUST_USE int cn__rl_action_parse(const char *name, enum cn_rl_action *out);
/** The built-in default of an action. */
cn_rl_policy_t cn__rl_default(enum cn_rl_action a);

/**
 * Takes cost tokens from the bucket of (action, key). Returns CN_OK, or
 * CN_ELIMIT with *retry_after_ms set (the wait until cost tokens exist).
 * device (may be NULL) selects a per-device policy override.
 */
CN_MUST_USE int cn__rl_take(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *key,
                            size_t keylen, const uint8_t *device, double cost, uint64_t now_ms,
                            uint32_t *retry_after_ms);
/* now_ms: a monotonic clock in ms, the same for every caller (the loops'
 * cn__loop_now); a time behind the bucket's refills nothing. */

/**
 * A Send's two takes with one hash and one policy lookup: one token of
 * CN_RL_SEND, then bytes of CN_RL_SEND_BYTES, both for key. On CN_ELIMIT
 * *refused names the bucket that refused (a token taken from CN_RL_SEND
 * stays taken when the bytes are refused, as with two cn__rl_take calls).
 */
CN_MUST_USE int cn__rl_take_send(cn_ratelimit_t *rl, const uint8_t *key, size_t keylen,
                                 const uint8_t *device, double bytes, uint64_t now_ms,
                                 enum cn_rl_action *refused, uint32_t *retry_after_ms);

/** Like cn__rl_take but takes nothing: CN_ELIMIT when fewer than cost are left. */
CN_MUST_USE int cn__rl_check(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *key,
                             size_t keylen, const uint8_t *device, double cost, uint64_t now_ms,
                             uint32_t *retry_after_ms);

/**
 * Sets the default policy of an action (device NULL) or a device's
 * override. CN_EINVAL for rate <= 0 or burst < 1; CN_ELIMIT when too many
 * overrides exist.
 */
CN_MUST_USE int cn__rl_set(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device,
                           cn_rl_policy_t p);
/** Back to the built-in default (device NULL) or removes a device override. */
void cn__rl_reset(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device);
/** The policy in force for (action, device). */
cn_rl_policy_t cn__rl_get(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device);

/** Calls fn for every per-device override (for listing). */
void cn__rl_each_override(cn_ratelimit_t *rl,
                          void (*fn)(void *ctx, enum cn_rl_action a, const uint8_t *device,
                                     cn_rl_policy_t p),
                          void *ctx);

/** Requests refused per action since start (for metrics). */
uint64_t cn__rl_refused(cn_ratelimit_t *rl, enum cn_rl_action a);

/** Parses "N/s", "N/m", "N/h" or "N" (per second) into tokens per second. */
CN_MUST_USE int cn__rl_parse_rate(const char *s, double *out);

#endif /* CN_NODE_RATELIMIT_H */
