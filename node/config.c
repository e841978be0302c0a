/*
 * chatnode's configuration: embedded defaults, then an INI file (libinih)
 * named by --config, then command-line flags. Every setting has one entry
 * in `defs` (flag name and [section] key) and one validator in apply().
 */
#include "node/cn_node.h"
#include "proto/cn_proto.h"

#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cn_node_config_default(cn_node_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 8443;
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "./var/data");
    snprintf(cfg->tls_cert, sizeof(cfg->tls_cert), "./var/tls/cert.pem");
    snprintf(cfg->tls_key, sizeof(cfg->tls_key), "./var/tls/key.pem");
    snprintf(cfg->admin_socket, sizeof(cfg->admin_socket), "./var/admin.sock");
    snprintf(cfg->metrics_host, sizeof(cfg->metrics_host), "127.0.0.1");
    cfg->metrics_port = 9464;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (unsigned)cores : 1;
    cfg->sync = CN_SYNC_BATCH;
    cfg->registration = CN_REG_OPEN;
    cfg->max_devices = 6;
    cfg->handshake_timeout_ms = 10000;
    cfg->auth_timeout_ms = 30000;
    cfg->challenge_ttl_ms = 30000;
    cfg->idle_timeout_ms = 90000;
    cfg->ping_interval_ms = 30000;
    cfg->mailbox_ttl_ms = 30ull * 24 * 3600 * 1000;
    cfg->out_soft_limit = 256u * 1024u;
    cfg->out_hard_limit = 4u * 1024u * 1024u;
    cfg->max_connections = 50000;
    cfg->max_queued_bytes = 256ull * 1024 * 1024;
    cfg->jwt_leeway_s = 60;
    cfg->max_group_members = 1000;
    cfg->media_max_bytes = 100ull * 1024 * 1024;
    cfg->media_ttl_ms = 30ull * 24 * 3600 * 1000;
    cfg->media_quota_bytes = 1024ull * 1024 * 1024;
    cfg->log_level = CN_LOG_INFO;
}

static const char usage[] =
    "usage: chatnode [options]\n"
    "  --listen HOST:PORT        client TLS WebSocket address (127.0.0.1:8443)\n"
    "  --data DIR                RocksDB data directory (./var/data)\n"
    "  --tls-cert FILE           PEM certificate chain (./var/tls/cert.pem)\n"
    "  --tls-key FILE            PEM private key (./var/tls/key.pem)\n"
    "  --node-key FILE           node Ed25519 identity, created if missing (DATA/node.key)\n"
    "  --master-key-file FILE    at-rest master key, created if missing (DATA/master.key);\n"
    "                            the CHATNODE_MASTER_KEY variable (64 hex digits) wins\n"
    "  --admin-socket PATH       admin Unix socket, mode 0600 (./var/admin.sock; '' disables)\n"
    "  --metrics HOST:PORT       Prometheus /metrics, /healthz, /readyz (127.0.0.1:9464; '' "
    "disables)\n"
    "  --threads N               I/O loops (one per core)\n"
    "  --sync always|batch|none  fsync policy of group commit (batch)\n"
    "  --registration open|invite|jwt  who may register a first device (open)\n"
    "  --jwt-hs256-key-file FILE, --jwt-ed25519-key HEX, --jwt-issuer ISS, --jwt-audience AUD,\n"
    "  --jwt-leeway S            identity provider for policy jwt (leeway 60 s)\n"
    "  --max-devices N           devices per user (6)\n"
    "  --handshake-timeout MS    TCP accept to WebSocket open (10000)\n"
    "  --auth-timeout MS         WebSocket open to authenticated (30000)\n"
    "  --challenge-ttl MS        validity of an auth challenge (30000)\n"
    "  --idle-timeout MS         close after this long without a frame (90000)\n"
    "  --ping-interval MS        ping an idle connection after (30000)\n"
    "  --mailbox-ttl-days N      queued envelopes expire after (30)\n"
    "  --out-soft-limit BYTES    per-connection backlog that pauses reads (262144)\n"
    "  --out-hard-limit BYTES    per-connection backlog that disconnects (4194304; >= 196608)\n"
    "  --max-connections N       per node (50000)\n"
    "  --max-group-members N     members per group (1000)\n"
    "  --media-max-bytes B, --media-ttl-days N, --media-quota-bytes B  uploads (100 MiB, 30,\n"
    "                            1 GiB per user; 0 = no quota)\n"
    "  --max-queued-bytes BYTES  queued ciphertext per recipient device, 0 = no cap (268435456)\n"
    "  --ratelimit ACTION=RATE[:BURST]  initial policy, e.g. send=200/s:1000 (repeatable)\n"
    "  --push-gateway URL        http://host[:port]/path: POST a wake-up for offline devices\n"
    "  --config FILE             INI config file (docs/chatnode.conf.sample); flags override it\n"
    "  --check-config            validate the configuration (files, keys, ports) and exit\n"
    "  --test-echo               TESTS ONLY: echo every binary message, no protocol\n"
    "  --log-level debug|info|warn|error  (info)\n";

static int parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    CN_ENSURE(colon && colon != s && (size_t)(colon - s) < hostlen, CN_EINVAL);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    CN_ENSURE(*end == '\0' && colon[1] && p >= 0 && p <= 65535, CN_EINVAL);
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (uint16_t)p;
    return CN_OK;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    CN_ENSURE(s[0] && *end == '\0' && s[0] != '-' && v >= min && v <= max, CN_EINVAL);
    *out = v;
    return CN_OK;
}

static int copy_str(char *dst, size_t cap, const char *src)
{
    CN_ENSURE(strlen(src) < cap, CN_EINVAL);
    memcpy(dst, src, strlen(src) + 1);
    return CN_OK;
}

enum {
    O_LISTEN = 1000,
    O_DATA,
    O_CERT,
    O_KEY,
    O_NODE_KEY,
    O_MASTER_KEY,
    O_ADMIN,
    O_METRICS,
    O_THREADS,
    O_SYNC,
    O_REG,
    O_MAXDEV,
    O_HS_TO,
    O_AUTH_TO,
    O_CH_TTL,
    O_IDLE,
    O_PING,
    O_TTL,
    O_SOFT,
    O_HARD,
    O_MAXCONN,
    O_MAXQ,
    O_GROUPMAX,
    O_MEDIAMAX,
    O_MEDIATTL,
    O_MEDIAQUOTA,
    O_PUSH,
    O_RL,
    O_JWT_HS,
    O_JWT_ED,
    O_JWT_ISS,
    O_JWT_AUD,
    O_JWT_LEEWAY,
    O_LOG,
    O_CONFIG,
    O_CHECK,
    O_ECHO,
    O_HELP,
};

/* One table for flags and config-file keys: `--flag` and `[section] key`. */
static const struct opt_def {
    const char *flag, *section, *key;
    int id;
} defs[] = {
    {"listen", "node", "listen", O_LISTEN},
    {"data", "node", "data", O_DATA},
    {"threads", "node", "threads", O_THREADS},
    {"sync", "node", "sync", O_SYNC},
    {"registration", "node", "registration", O_REG},
    {"max-devices", "node", "max_devices", O_MAXDEV},
    {"log-level", "node", "log_level", O_LOG},
    {"tls-cert", "tls", "cert", O_CERT},
    {"tls-key", "tls", "key", O_KEY},
    {"node-key", "node", "node_key", O_NODE_KEY},
    {"master-key-file", "node", "master_key_file", O_MASTER_KEY},
    {"admin-socket", "admin", "socket", O_ADMIN},
    {"metrics", "metrics", "listen", O_METRICS},
    {"handshake-timeout", "limits", "handshake_timeout_ms", O_HS_TO},
    {"auth-timeout", "limits", "auth_timeout_ms", O_AUTH_TO},
    {"challenge-ttl", "limits", "challenge_ttl_ms", O_CH_TTL},
    {"idle-timeout", "limits", "idle_timeout_ms", O_IDLE},
    {"ping-interval", "limits", "ping_interval_ms", O_PING},
    {"mailbox-ttl-days", "limits", "mailbox_ttl_days", O_TTL},
    {"out-soft-limit", "limits", "out_soft_limit", O_SOFT},
    {"out-hard-limit", "limits", "out_hard_limit", O_HARD},
    {"max-connections", "limits", "max_connections", O_MAXCONN},
    {"max-queued-bytes", "limits", "max_queued_bytes", O_MAXQ},
    {"max-group-members", "limits", "max_group_members", O_GROUPMAX},
    {"media-max-bytes", "media", "max_bytes", O_MEDIAMAX},
    {"media-ttl-days", "media", "ttl_days", O_MEDIATTL},
    {"media-quota-bytes", "media", "quota_bytes", O_MEDIAQUOTA},
    {"push-gateway", "push", "gateway", O_PUSH},
    {"jwt-hs256-key-file", "jwt", "hs256_key_file", O_JWT_HS},
    {"jwt-ed25519-key", "jwt", "ed25519_public_key", O_JWT_ED},
    {"jwt-issuer", "jwt", "issuer", O_JWT_ISS},
    {"jwt-audience", "jwt", "audience", O_JWT_AUD},
    {"jwt-leeway", "jwt", "leeway_s", O_JWT_LEEWAY},
};

static const struct option options[] = {
    {"listen", 1, 0, O_LISTEN},
    {"data", 1, 0, O_DATA},
    {"tls-cert", 1, 0, O_CERT},
    {"tls-key", 1, 0, O_KEY},
    {"node-key", 1, 0, O_NODE_KEY},
    {"master-key-file", 1, 0, O_MASTER_KEY},
    {"admin-socket", 1, 0, O_ADMIN},
    {"metrics", 1, 0, O_METRICS},
    {"threads", 1, 0, O_THREADS},
    {"sync", 1, 0, O_SYNC},
    {"registration", 1, 0, O_REG},
    {"max-devices", 1, 0, O_MAXDEV},
    {"handshake-timeout", 1, 0, O_HS_TO},
    {"auth-timeout", 1, 0, O_AUTH_TO},
    {"challenge-ttl", 1, 0, O_CH_TTL},
    {"idle-timeout", 1, 0, O_IDLE},
    {"ping-interval", 1, 0, O_PING},
    {"mailbox-ttl-days", 1, 0, O_TTL},
    {"out-soft-limit", 1, 0, O_SOFT},
    {"out-hard-limit", 1, 0, O_HARD},
    {"max-connections", 1, 0, O_MAXCONN},
    {"max-queued-bytes", 1, 0, O_MAXQ},
    {"max-group-members", 1, 0, O_GROUPMAX},
    {"media-max-bytes", 1, 0, O_MEDIAMAX},
    {"media-ttl-days", 1, 0, O_MEDIATTL},
    {"media-quota-bytes", 1, 0, O_MEDIAQUOTA},
    {"push-gateway", 1, 0, O_PUSH},
    {"ratelimit", 1, 0, O_RL},
    {"jwt-hs256-key-file", 1, 0, O_JWT_HS},
    {"jwt-ed25519-key", 1, 0, O_JWT_ED},
    {"jwt-issuer", 1, 0, O_JWT_ISS},
    {"jwt-audience", 1, 0, O_JWT_AUD},
    {"jwt-leeway", 1, 0, O_JWT_LEEWAY},
    {"log-level", 1, 0, O_LOG},
    {"config", 1, 0, O_CONFIG},
    {"check-config", 0, 0, O_CHECK},
    {"test-echo", 0, 0, O_ECHO},
    {"help", 0, 0, O_HELP},
    {0, 0, 0, 0},
};

/* "ACTION=RATE[:BURST]", RATE as N/s, N/m, N/h or N (per second); the
 * action name is checked when the node starts (node/ratelimit.c). */
static int parse_ratelimit(cn_node_config_t *cfg, const char *v)
{
    const char *eq = strchr(v, '=');
    CN_ENSURE(eq && eq > v && (size_t)(eq - v) < sizeof(cfg->ratelimits[0].action), CN_EINVAL);
    CN_ENSURE(cfg->n_ratelimits < CN_NODE_RL_POLICIES_MAX, CN_ELIMIT);
    cn_node_rl_policy_t *p = &cfg->ratelimits[cfg->n_ratelimits];
    memcpy(p->action, v, (size_t)(eq - v));
    p->action[eq - v] = '\0';
    char rate[64];
    const char *colon = strchr(eq + 1, ':');
    size_t rlen = colon ? (size_t)(colon - eq - 1) : strlen(eq + 1);
    CN_ENSURE(rlen > 0 && rlen < sizeof(rate), CN_EINVAL);
    memcpy(rate, eq + 1, rlen);
    rate[rlen] = '\0';
    char *end;
    double per = 1.0;
    p->rate = strtod(rate, &end);
    if (strcmp(end, "/m") == 0)
        per = 60.0;
    else if (strcmp(end, "/h") == 0)
        per = 3600.0;
    else
        CN_ENSURE(*end == '\0' || strcmp(end, "/s") == 0, CN_EINVAL);
    CN_ENSURE(end != rate && p->rate > 0 && p->rate < 1e12, CN_EINVAL);
    p->rate /= per;
    p->burst = colon ? strtod(colon + 1, &end) : p->rate;
    CN_ENSURE((!colon || (*end == '\0' && end != colon + 1)) && p->burst >= 1 && p->burst < 1e15,
              CN_EINVAL);
    cfg->n_ratelimits++;
    return CN_OK;
}

static int apply(cn_node_config_t *cfg, int opt, const char *v)
{
    uint64_t n;
    switch (opt) {
    case O_LISTEN:
        return parse_hostport(v, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port);
    case O_DATA:
        return copy_str(cfg->data_dir, sizeof(cfg->data_dir), v);
    case O_CERT:
        return copy_str(cfg->tls_cert, sizeof(cfg->tls_cert), v);
    case O_KEY:
        return copy_str(cfg->tls_key, sizeof(cfg->tls_key), v);
    case O_NODE_KEY:
        return copy_str(cfg->node_key, sizeof(cfg->node_key), v);
    case O_MASTER_KEY:
        return copy_str(cfg->master_key, sizeof(cfg->master_key), v);
    case O_RL:
        return parse_ratelimit(cfg, v);
    case O_MEDIAMAX:
        CN_TRY(parse_u64(v, CN_MEDIA_CHUNK_MAX, 1ull << 34, &cfg->media_max_bytes));
        return CN_OK;
    case O_MEDIATTL:
        CN_TRY(parse_u64(v, 1, 3650, &n));
        cfg->media_ttl_ms = n * 24 * 3600 * 1000;
        return CN_OK;
    case O_MEDIAQUOTA:
        return parse_u64(v, 0, 1ull << 44, &cfg->media_quota_bytes);
    case O_JWT_HS:
        return copy_str(cfg->jwt_hs256_key_file, sizeof(cfg->jwt_hs256_key_file), v);
    case O_JWT_ED:
        CN_ENSURE(strlen(v) == 64, CN_EINVAL);
        return copy_str(cfg->jwt_ed25519_key, sizeof(cfg->jwt_ed25519_key), v);
    case O_JWT_ISS:
        return copy_str(cfg->jwt_issuer, sizeof(cfg->jwt_issuer), v);
    case O_JWT_AUD:
        return copy_str(cfg->jwt_audience, sizeof(cfg->jwt_audience), v);
    case O_PUSH:
        CN_ENSURE(v[0] == '\0' || strncmp(v, "http://", 7) == 0, CN_EINVAL);
        return copy_str(cfg->push_gateway, sizeof(cfg->push_gateway), v);
    case O_ADMIN:
        return copy_str(cfg->admin_socket, sizeof(cfg->admin_socket), v);
    case O_METRICS:
        if (!v[0]) {
            cfg->metrics_host[0] = '\0';
            return CN_OK;
        }
        return parse_hostport(v, cfg->metrics_host, sizeof(cfg->metrics_host), &cfg->metrics_port);
    case O_SYNC:
        return cn_sync_parse(v, &cfg->sync);
    case O_REG:
        CN_ENSURE(!strcmp(v, "open") || !strcmp(v, "invite") || !strcmp(v, "jwt"), CN_EINVAL);
        cfg->registration = !strcmp(v, "open")     ? CN_REG_OPEN
                            : !strcmp(v, "invite") ? CN_REG_INVITE
                                                   : CN_REG_JWT;
        return CN_OK;
    case O_LOG:
        return cn_log_parse_level(v, &cfg->log_level);
    case O_TTL:
        CN_TRY(parse_u64(v, 1, 3650, &n));
        cfg->mailbox_ttl_ms = n * 24 * 3600 * 1000;
        return CN_OK;
    case O_SOFT:
        CN_TRY(parse_u64(v, 4096, 1ull << 30, &n));
        cfg->out_soft_limit = (size_t)n;
        return CN_OK;
    case O_HARD:
        /* Above the largest single frame, so one Deliver never trips it. */
        CN_TRY(parse_u64(v, 2 * CN_CIPHERTEXT_MAX + 65536, 1ull << 32, &n));
        cfg->out_hard_limit = (size_t)n;
        return CN_OK;
    case O_MAXQ:
        /* 0: unlimited; otherwise room for at least a few full envelopes. */
        CN_TRY(parse_u64(v, 0, 1ull << 40, &n));
        CN_ENSURE(n == 0 || n >= 4 * CN_CIPHERTEXT_MAX, CN_EINVAL);
        cfg->max_queued_bytes = n;
        return CN_OK;
    }
    /* The rest are bounded integers. */
    static const struct {
        int opt;
        uint64_t min, max;
        size_t off;
    } ints[] = {
        {O_THREADS, 1, 64, offsetof(cn_node_config_t, threads)},
        {O_MAXDEV, 1, CN_DEVICES_HARD_MAX, offsetof(cn_node_config_t, max_devices)},
        {O_HS_TO, 10, 600000, offsetof(cn_node_config_t, handshake_timeout_ms)},
        {O_AUTH_TO, 10, 600000, offsetof(cn_node_config_t, auth_timeout_ms)},
        {O_CH_TTL, 10, 600000, offsetof(cn_node_config_t, challenge_ttl_ms)},
        {O_IDLE, 100, 3600000, offsetof(cn_node_config_t, idle_timeout_ms)},
        {O_PING, 50, 3600000, offsetof(cn_node_config_t, ping_interval_ms)},
        {O_MAXCONN, 1, 10000000, offsetof(cn_node_config_t, max_connections)},
        {O_JWT_LEEWAY, 0, 3600, offsetof(cn_node_config_t, jwt_leeway_s)},
        {O_GROUPMAX, 2, CN_GROUP_MEMBERS_HARD_MAX, offsetof(cn_node_config_t, max_group_members)},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(ints); i++) {
        if (ints[i].opt != opt)
            continue;
        CN_TRY(parse_u64(v, ints[i].min, ints[i].max, &n));
        uint32_t v32 = (uint32_t)n;
        memcpy((char *)cfg + ints[i].off, &v32, sizeof(v32));
        return CN_OK;
    }
    return CN_EINVAL;
}

static const char *opt_name(int id)
{
    for (size_t i = 0; options[i].name; i++)
        if (options[i].val == id)
            return options[i].name;
    return "?";
}

typedef struct ini_ctx {
    cn_node_config_t *cfg;
    char *err;
    size_t errlen;
    bool failed;
} ini_ctx_t;

/* libinih callback: one `key = value` of a [section]; unknown keys are errors. */
static int ini_entry(void *user, const char *section, const char *key, const char *value)
{
    ini_ctx_t *x = user;
    for (size_t i = 0; i < CN_ARRAY_LEN(defs); i++) {
        if (strcmp(defs[i].section, section) != 0 || strcmp(defs[i].key, key) != 0)
            continue;
        if (apply(x->cfg, defs[i].id, value) == 0)
            return 1;
        snprintf(x->err, x->errlen, "invalid value for [%s] %s: '%s'", section, key, value);
        x->failed = true;
        return 0;
    }
    if (strcmp(section, "ratelimit") == 0) {
        char spec[128];
        snprintf(spec, sizeof(spec), "%s=%s", key, value);
        if (parse_ratelimit(x->cfg, spec) == 0)
            return 1;
        snprintf(x->err, x->errlen, "invalid rate limit [ratelimit] %s: '%s'", key, value);
        x->failed = true;
        return 0;
    }
    snprintf(x->err, x->errlen, "unknown setting [%s] %s", section, key);
    x->failed = true;
    return 0;
}

static int load_file(cn_node_config_t *cfg, const char *path, char *err, size_t errlen)
{
    ini_ctx_t x = {cfg, err, errlen, false};
    int line = ini_parse(path, ini_entry, &x);
    if (line == 0)
        return CN_OK;
    if (line < 0) {
        snprintf(err, errlen, "cannot read config file %s", path);
        return CN_EINVAL;
    }
    if (!x.failed)
        snprintf(err, errlen, "syntax error");
    size_t n = strlen(err);
    snprintf(err + n, errlen - n, " (%s line %d)", path, line);
    return CN_EINVAL;
}

/* The config file is read first, whatever the position of --config. */
static const char *find_config_flag(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
    }
    return path;
}

static int check_consistency(cn_node_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->out_hard_limit <= cfg->out_soft_limit) {
        snprintf(err, errlen, "out_hard_limit must be above out_soft_limit");
        return CN_EINVAL;
    }
    if (cfg->registration == CN_REG_JWT &&
        ((!cfg->jwt_hs256_key_file[0] && !cfg->jwt_ed25519_key[0]) || !cfg->jwt_issuer[0] ||
         !cfg->jwt_audience[0])) {
        snprintf(err, errlen,
                 "registration jwt needs a key (hs256_key_file or "
                 "ed25519_public_key), issuer and audience");
        return CN_EINVAL;
    }
    if (cfg->ping_interval_ms >= cfg->idle_timeout_ms) {
        snprintf(err, errlen, "ping_interval must be below idle_timeout");
        return CN_EINVAL;
    }
    if (!cfg->node_key[0])
        snprintf(cfg->node_key, sizeof(cfg->node_key), "%.500s/node.key", cfg->data_dir);
    return CN_OK;
}

int cn_node_config_parse(cn_node_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *file = find_config_flag(argc, argv);
    if (file)
        CN_TRY(load_file(cfg, file, err, errlen));
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == O_HELP) {
            fputs(usage, stdout);
            return CN_EAGAIN;
        }
        if (opt == O_CONFIG)
            continue;
        if (opt == O_CHECK || opt == O_ECHO) {
            *(opt == O_CHECK ? &cfg->check_only : &cfg->test_echo) = true;
            continue;
        }
        if (opt == '?' || opt == ':') {
            snprintf(err, errlen, "unknown option or missing value: %s", argv[optind - 1]);
            return CN_EINVAL;
        }
        if (apply(cfg, opt, optarg) < 0) {
            snprintf(err, errlen, "invalid value for --%s: '%s'", opt_name(opt), optarg);
            return CN_EINVAL;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument: %s", argv[optind]);
        return CN_EINVAL;
    }
    return check_consistency(cfg, err, errlen);
}
