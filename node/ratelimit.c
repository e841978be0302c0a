/*
 * Token buckets in a sharded open-addressing table. A bucket is created
 * full on first use; one that has refilled to its burst carries no state,
 * so when the table is full such buckets are dropped first. Defaults are
 * modeled on the published Signal-Server limits (per account/IP, scaled
 * to per-second rates) and documented in docs/OPERATIONS.md.
 *
 * Keys are source IPs and device ids, both chosen by clients, so they are
 * hashed with SipHash (libsodium's crypto_shorthash) under a random key:
 * nobody can aim keys at one probe sequence. A bucket's hash is the
 * SipHash of its key mixed with its action, so a Send's two buckets cost
 * one SipHash (cn__rl_take_send); the hash's low bits pick the shard, the
 * bits above them the slot.
 */
#include "node/ratelimit.h"

#include "crypto/cn_crypto.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS    16
#define SHARD_CAP (CN_RL_BUCKETS_MAX / SHARDS * 2) /* load <= 1/2 */
#define KEY_LEN   (2 + CN_RL_KEY_MAX)

typedef struct bucket {
    uint8_t key[KEY_LEN]; /* action, key length, key bytes (zero padded) */
    bool used;
    double tokens;
    uint64_t last_ms;
} bucket_t;

typedef struct shard {
    pthread_mutex_t lock;
    bucket_t *slots;
    size_t live;
} shard_t;

typedef struct override {
    uint8_t device[32];
    enum cn_rl_action action;
    cn_rl_policy_t p;
} override_t;

struct cn_ratelimit {
    shard_t shards[SHARDS];
    pthread_mutex_t policy_lock;
    cn_rl_policy_t defaults[CN_RL__COUNT];
    override_t overrides[CN_RL_OVERRIDES_MAX];
    size_t noverrides;
    atomic_uint_fast64_t refused[CN_RL__COUNT];
    uint8_t hash_key[CN_TABLE_KEY_LEN];
};

static const struct {
    const char *name;
    cn_rl_policy_t p;
} builtin[CN_RL__COUNT] = {
    [CN_RL_CONNECT] = {"connect", {10.0, 50.0}},
    [CN_RL_AUTH_FAILURE] = {"auth-failure", {0.2, 10.0}},
    [CN_RL_REGISTER] = {"register", {0.1, 6.0}},
    [CN_RL_SEND] = {"send", {200.0, 1000.0}},
    [CN_RL_SEND_BYTES] = {"send-bytes", {4.0 * 1024 * 1024, 32.0 * 1024 * 1024}},
    [CN_RL_PREKEY_FETCH] = {"prekey-fetch", {1.0, 100.0}},
    [CN_RL_MEDIA_BYTES] = {"media-bytes", {8.0 * 1024 * 1024, 128.0 * 1024 * 1024}},
    [CN_RL_HISTORY] = {"history", {10.0, 100.0}},
};

const char *cn__rl_action_name(enum cn_rl_action a)
{
    return (unsigned)a < CN_RL__COUNT ? builtin[a].name : NULL;
}

int cn__rl_action_parse(const char *name, enum cn_rl_action *out)
{
    for (int a = 0; a < CN_RL__COUNT; a++) {
        if (strcmp(builtin[a].name, name) == 0) {
            *out = (enum cn_rl_action)a;
            return CN_OK;
        }
    }
    return CN_EINVAL;
}

cn_rl_policy_t cn__rl_default(enum cn_rl_action a)
{
    return builtin[a].p;
}

cn_ratelimit_t *cn__rl_new(void)
{
    cn_ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    for (int a = 0; a < CN_RL__COUNT; a++)
        rl->defaults[a] = builtin[a].p;
    cn_table_key_new(rl->hash_key);
    pthread_mutex_init(&rl->policy_lock, NULL);
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&rl->shards[i].lock, NULL);
        rl->shards[i].slots = calloc(SHARD_CAP, sizeof(bucket_t));
        if (!rl->shards[i].slots) {
            cn__rl_free(rl);
            return NULL;
        }
    }
    return rl;
}

void cn__rl_free(cn_ratelimit_t *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_destroy(&rl->shards[i].lock);
        free(rl->shards[i].slots);
    }
    pthread_mutex_destroy(&rl->policy_lock);
    free(rl);
}

/* SipHash of a bucket key's bytes after the action (length, key bytes). */
static uint64_t ident_hash(const cn_ratelimit_t *rl, const uint8_t *k)
{
    return cn_table_hash(rl->hash_key, k + 1, KEY_LEN - 1);
}

static uint64_t action_hash(uint64_t ident, uint8_t action)
{
    return ident ^ ((uint64_t)action + 1) * 0x9e3779b97f4a7c15ull;
}

static uint64_t hash_key(const cn_ratelimit_t *rl, const uint8_t *k)
{
    return action_hash(ident_hash(rl, k), k[0]);
}

static size_t home_slot(uint64_t hash)
{
    return (size_t)(hash / SHARDS) % SHARD_CAP;
}

static override_t *find_override(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device)
{
    for (size_t i = 0; device && i < rl->noverrides; i++)
        if (rl->overrides[i].action == a && memcmp(rl->overrides[i].device, device, 32) == 0)
            return &rl->overrides[i];
    return NULL;
}

cn_rl_policy_t cn__rl_get(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device)
{
    pthread_mutex_lock(&rl->policy_lock);
    const override_t *o = find_override(rl, a, device);
    cn_rl_policy_t p = o ? o->p : rl->defaults[a];
    pthread_mutex_unlock(&rl->policy_lock);
    return p;
}

/* Loops share buckets and each reads the clock once per iteration, so a
 * take may come with a time a little behind the bucket's: it refills
 * nothing and leaves the bucket's time alone (moving it back would count
 * the same milliseconds twice). */
static void refill(bucket_t *b, cn_rl_policy_t p, uint64_t now)
{
    if (now > b->last_ms) {
        b->tokens = fmin(p.burst, b->tokens + (double)(now - b->last_ms) * p.rate / 1000.0);
        b->last_ms = now;
    }
}

/* Drops buckets that refilled to their burst (they hold no information). */
static void evict_full(shard_t *s, cn_ratelimit_t *rl, uint64_t now)
{
    bucket_t *old = s->slots;
    bucket_t *fresh = calloc(SHARD_CAP, sizeof(bucket_t));
    if (!fresh)
        return;
    size_t live = 0;
    for (size_t i = 0; i < SHARD_CAP; i++) {
        bucket_t *b = &old[i];
        if (!b->used)
            continue;
        cn_rl_policy_t p = rl->defaults[b->key[0] < CN_RL__COUNT ? b->key[0] : 0];
        refill(b, p, now);
        if (b->tokens >= p.burst)
            continue;
        size_t j = home_slot(hash_key(rl, b->key));
        while (fresh[j].used)
            j = (j + 1) % SHARD_CAP;
        fresh[j] = *b;
        live++;
    }
    free(old);
    s->slots = fresh;
    s->live = live;
}

/* Finds or creates the bucket; NULL when the shard is full. Lock held. */
static bucket_t *lookup(cn_ratelimit_t *rl, shard_t *s, const uint8_t *k, uint64_t hash,
                        cn_rl_policy_t p, uint64_t now)
{
    size_t i = home_slot(hash);
    for (size_t n = 0; n < SHARD_CAP; n++, i = (i + 1) % SHARD_CAP) {
        bucket_t *b = &s->slots[i];
        if (b->used && memcmp(b->key, k, KEY_LEN) == 0)
            return b;
        if (!b->used)
            break;
    }
    if (s->live >= SHARD_CAP / 2) {
        evict_full(s, rl, now);
        if (s->live >= SHARD_CAP / 2)
            return NULL;
    }
    i = home_slot(hash);
    while (s->slots[i].used)
        i = (i + 1) % SHARD_CAP;
    bucket_t *b = &s->slots[i];
    memcpy(b->key, k, KEY_LEN);
    b->used = true;
    b->tokens = p.burst;
    b->last_ms = now;
    s->live++;
    return b;
}

/* The bucket of key k (its action in k[0]) under policy p. */
static int bucket_apply(cn_ratelimit_t *rl, const uint8_t *k, uint64_t hash, cn_rl_policy_t p,
                        double cost, uint64_t now, bool take, uint32_t *retry_after_ms)
{
    shard_t *s = &rl->shards[hash % SHARDS];
    int rc = CN_OK;
    pthread_mutex_lock(&s->lock);
    bucket_t *b = lookup(rl, s, k, hash, p, now);
    if (b) {
        refill(b, p, now);
        if (b->tokens + 1e-9 >= cost) {
            if (take)
                b->tokens -= cost;
        } else {
            double wait_ms = ceil((cost - b->tokens) * 1000.0 / p.rate);
            *retry_after_ms = wait_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)wait_ms;
            rc = CN_ELIMIT;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == CN_ELIMIT && take)
        atomic_fetch_add(&rl->refused[k[0]], 1);
    return rc;
}

static int make_key(uint8_t k[KEY_LEN], enum cn_rl_action a, const uint8_t *key, size_t keylen)
{
    CN_ENSURE((unsigned)a < CN_RL__COUNT && keylen <= CN_RL_KEY_MAX, CN_EINVAL);
    memset(k, 0, KEY_LEN);
    k[0] = (uint8_t)a;
    k[1] = (uint8_t)keylen;
    memcpy(k + 2, key, keylen);
    return CN_OK;
}

static int bucket_op(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *key, size_t keylen,
                     const uint8_t *device, double cost, uint64_t now, bool take,
                     uint32_t *retry_after_ms)
{
    uint8_t k[KEY_LEN];
    CN_TRY(make_key(k, a, key, keylen));
    return bucket_apply(rl, k, hash_key(rl, k), cn__rl_get(rl, a, device), cost, now, take,
                        retry_after_ms);
}

int cn__rl_take(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *key, size_t keylen,
                const uint8_t *device, double cost, uint64_t now_ms, uint32_t *retry_after_ms)
{
    return bucket_op(rl, a, key, keylen, device, cost, now_ms, true, retry_after_ms);
}

int cn__rl_take_send(cn_ratelimit_t *rl, const uint8_t *key, size_t keylen, const uint8_t *device,
                     double bytes, uint64_t now_ms, enum cn_rl_action *refused,
                     uint32_t *retry_after_ms)
{
    uint8_t k[KEY_LEN];
    CN_TRY(make_key(k, CN_RL_SEND, key, keylen));
    uint64_t ident = ident_hash(rl, k);
    pthread_mutex_lock(&rl->policy_lock);
    const override_t *o = find_override(rl, CN_RL_SEND, device);
    cn_rl_policy_t count = o ? o->p : rl->defaults[CN_RL_SEND];
    o = find_override(rl, CN_RL_SEND_BYTES, device);
    cn_rl_policy_t size = o ? o->p : rl->defaults[CN_RL_SEND_BYTES];
    pthread_mutex_unlock(&rl->policy_lock);
    *refused = CN_RL_SEND;
    CN_TRY(bucket_apply(rl, k, action_hash(ident, CN_RL_SEND), count, 1, now_ms, true,
                        retry_after_ms));
    k[0] = CN_RL_SEND_BYTES;
    *refused = CN_RL_SEND_BYTES;
    return bucket_apply(rl, k, action_hash(ident, CN_RL_SEND_BYTES), size, bytes, now_ms, true,
                        retry_after_ms);
}

int cn__rl_check(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *key, size_t keylen,
                 const uint8_t *device, double cost, uint64_t now_ms, uint32_t *retry_after_ms)
{
    return bucket_op(rl, a, key, keylen, device, cost, now_ms, false, retry_after_ms);
}

int cn__rl_set(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device, cn_rl_policy_t p)
{
    CN_ENSURE((unsigned)a < CN_RL__COUNT, CN_EINVAL);
    CN_ENSURE(p.rate > 0 && isfinite(p.rate) && p.burst >= 1 && isfinite(p.burst), CN_EINVAL);
    int rc = CN_OK;
    pthread_mutex_lock(&rl->policy_lock);
    if (!device) {
        rl->defaults[a] = p;
    } else {
        override_t *o = find_override(rl, a, device);
        if (!o && rl->noverrides == CN_RL_OVERRIDES_MAX) {
            rc = CN_ELIMIT;
        } else {
            if (!o) {
                o = &rl->overrides[rl->noverrides++];
                memcpy(o->device, device, 32);
                o->action = a;
            }
            o->p = p;
        }
    }
    pthread_mutex_unlock(&rl->policy_lock);
    return rc;
}

void cn__rl_reset(cn_ratelimit_t *rl, enum cn_rl_action a, const uint8_t *device)
{
    if ((unsigned)a >= CN_RL__COUNT)
        return;
    pthread_mutex_lock(&rl->policy_lock);
    if (!device) {
        rl->defaults[a] = builtin[a].p;
    } else {
        const override_t *o = find_override(rl, a, device);
        if (o) {
            size_t i = (size_t)(o - rl->overrides);
            rl->overrides[i] = rl->overrides[--rl->noverrides];
        }
    }
    pthread_mutex_unlock(&rl->policy_lock);
}

void cn__rl_each_override(cn_ratelimit_t *rl,
                          void (*fn)(void *ctx, enum cn_rl_action a, const uint8_t *device,
                                     cn_rl_policy_t p),
                          void *ctx)
{
    pthread_mutex_lock(&rl->policy_lock);
    for (size_t i = 0; i < rl->noverrides; i++)
        fn(ctx, rl->overrides[i].action, rl->overrides[i].device, rl->overrides[i].p);
    pthread_mutex_unlock(&rl->policy_lock);
}

uint64_t cn__rl_refused(cn_ratelimit_t *rl, enum cn_rl_action a)
{
    return (unsigned)a < CN_RL__COUNT ? atomic_load(&rl->refused[a]) : 0;
}

int cn__rl_parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    CN_ENSURE(end != s && isfinite(v) && v > 0, CN_EINVAL);
    double per = 1.0;
    if (strcmp(end, "/m") == 0)
        per = 60.0;
    else if (strcmp(end, "/h") == 0)
        per = 3600.0;
    else
        CN_ENSURE(strcmp(end, "/s") == 0 || *end == '\0', CN_EINVAL);
    *out = v / per;
    return CN_OK;
}
