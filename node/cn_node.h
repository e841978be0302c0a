/**
 * chatnode as a library: a configuration, a server that runs until told to
 * stop, and a thin main (node/main.c) around it.
 */
#ifndef CN_NODE_H
#define CN_NODE_H

#include "common/cn_common.h"
#include "store/cn_store.h"

enum cn_registration { CN_REG_OPEN = 0, CN_REG_INVITE, CN_REG_JWT };

/** An initial rate-limit policy from the configuration. */
typedef struct cn_node_rl_policy {
    char action[24]; /* connect, auth-failure, register, send, ... */
    double rate;     /* tokens per second */
    double burst;
} cn_node_rl_policy_t;

#define CN_NODE_RL_POLICIES_MAX 16

/** Every knob of the node; cn_node_config_default fills the defaults. */
typedef struct cn_node_config {
    char listen_host[64];
    uint16_t listen_port; /* 0 picks a free port (logged as event=listening) */
    char data_dir[512];
    char tls_cert[512];
    char tls_key[512];
    char node_key[512];     /* Ed25519 node identity; default DATA/node.key */
    char master_key[512];   /* at-rest master key file; default DATA/master.key (created);
                               CHATNODE_MASTER_KEY (64 hex digits) wins over it */
    char admin_socket[108]; /* Unix socket path; empty disables */
    char metrics_host[64];
    uint16_t metrics_port; /* 0 picks a free port; metrics_host "" disables */
    unsigned threads;      /* I/O loops; default: one per core */
    enum cn_sync sync;
    enum cn_registration registration;
    uint32_t max_devices;          /* per user, default 6 */
    uint32_t handshake_timeout_ms; /* TCP accept -> WebSocket open; default 10 s */
    uint32_t auth_timeout_ms;      /* WebSocket open -> authenticated; default 30 s */
    uint32_t challenge_ttl_ms;     /* a challenge older than this is refused; default 30 s */
    uint32_t idle_timeout_ms;      /* no frame for this long closes; default 90 s */
    uint32_t ping_interval_ms;     /* ping when idle this long; default 30 s */
    uint64_t mailbox_ttl_ms;       /* default 30 days */
    size_t out_soft_limit;         /* per connection: pause reads and mailbox pumping */
    size_t out_hard_limit;         /* per connection: disconnect a reader this slow */
    uint32_t max_connections;      /* per node; default 50,000 */
    uint64_t max_queued_bytes;     /* per recipient device; 0 = unlimited; default 256 MiB */
    uint32_t max_group_members;    /* default 1000 */
    uint64_t media_max_bytes;      /* one upload; default 100 MiB */
    uint64_t media_ttl_ms;         /* uploads expire; default 30 days */
    uint64_t media_quota_bytes;    /* per user, unexpired uploads; 0 = none; default 1 GiB */
    cn_node_rl_policy_t ratelimits[CN_NODE_RL_POLICIES_MAX]; /* over the built-in defaults */
    unsigned n_ratelimits;
    char push_gateway[512];
    /* Registration policy jwt: the identity provider's keys and claims. */
    char jwt_hs256_key_file[512]; /* shared secret, raw bytes (a final newline is ignored) */
    char jwt_ed25519_key[65];     /* the provider's Ed25519 public key, hex */
    char jwt_issuer[257];
    char jwt_audience[257];
    uint32_t jwt_leeway_s;
    /* default 60 */ /* http://host[:port]/path for offline wake-ups; "" = off */
    bool check_only; /* --check-config: validate and exit */
    bool test_echo;  /* --test-echo: echo binary messages (conformance tests only) */
    enum cn_log_level log_level;
} cn_node_config_t;

void cn_node_config_default(cn_node_config_t *cfg);

/**
 * Parses command-line flags over the defaults. Returns CN_OK, CN_EINVAL
 * with a message in err (size errlen) for a bad flag, or CN_EAGAIN when
 * --help was given (usage printed).
 */
CN_MUST_USE int cn_node_config_parse(cn_node_config_t *cfg, int argc, char **argv, char *err,
                                     size_t errlen);

/**
 * --check-config: loads the TLS certificate and key, the node key (if it
 * exists), and checks that the data directory is usable, without binding
 * ports or opening the database (a running node holds its lock).
 */
CN_MUST_USE int cn_node_check_config(const cn_node_config_t *cfg, char *err, size_t errlen);

typedef struct cn_node cn_node_t;

/** Opens the store, identity, TLS and sockets. Returns owned; cn_node_free. */
CN_MUST_USE int cn_node_new(const cn_node_config_t *cfg, cn_node_t **out);

/**
 * Runs until SIGINT/SIGTERM (or cn_node_stop): then pushes GoingAway,
 * finishes in-flight commits and closes everything cleanly.
 */
CN_MUST_USE int cn_node_run(cn_node_t *node);

/** Asks a running node to shut down; async-signal-safe and thread-safe. */
void cn_node_stop(cn_node_t *node);

void cn_node_free(cn_node_t *node);

#endif /* CN_NODE_H */
