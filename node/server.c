#define _DEFAULT_SOURCE /* SO_REUSEPORT, usleep */
/*
 * The node: opens the store, its identity and TLS, binds one SO_REUSEPORT
 * listener per I/O loop, and runs a control loop on the calling thread
 * (signals, metrics, admin). Shutdown order matters: stop accepting and
 * reading, let the store finish and answer every in-flight commit, push
 * GoingAway, then close connections and RocksDB.
 */
#include "node/node_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct cn_node {
    cn_server_t server;
    uv_loop_t control;
    uv_signal_t sigint, sigterm;
    uv_async_t stop_async;
    uv_tcp_t metrics;
    uv_pipe_t admin;
};

/* Binds a listening socket with SO_REUSEPORT so every loop can accept. */
static int bind_listener(const char *host, uint16_t port, int *out_fd, uint16_t *bound)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0) {
        len = sizeof(struct sockaddr_in);
    } else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        len = sizeof(struct sockaddr_in6);
    } else {
        cn_log_error("bad_listen_address", "host=%s", host);
        return CN_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CN_ENSURE(fd >= 0, CN_EIO);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        cn_log_error("bind_failed", "addr=%s:%u error=\"%s\"", host, port, strerror(errno));
        close(fd);
        return CN_EIO;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof(got);
    getsockname(fd, (struct sockaddr *)&got, &glen);
    *bound = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                             : ((struct sockaddr_in *)&got)->sin_port);
    *out_fd = fd;
    return CN_OK;
}

static int load_identity(cn_server_t *s)
{
    int rc = cn_identity_load(s->cfg.node_key, &s->identity);
    if (rc == CN_ENOTFOUND) {
        CN_TRY(cn_identity_generate(&s->identity));
        rc = cn_identity_save(&s->identity, s->cfg.node_key);
        if (rc == 0)
            cn_log_info("node_key_created", "path=%s", s->cfg.node_key);
    }
    if (rc < 0)
        cn_log_error("node_key_failed", "path=%s error=\"%s\"", s->cfg.node_key, cn_strerror(rc));
    return rc;
}

static int open_store(cn_server_t *s)
{
    mkdir(s->cfg.data_dir, 0700);
    cn_store_options_t so;
    cn_store_options_default(&so);
    so.path = s->cfg.data_dir;
    so.sync = s->cfg.sync;
    so.mailbox_ttl_ms = s->cfg.mailbox_ttl_ms;
    so.master_key_file = s->cfg.master_key[0] ? s->cfg.master_key : NULL;
    return cn_store_open(&so, &s->store);
}

static int start_loops(cn_server_t *s)
{
    s->loops = calloc(s->cfg.threads, sizeof(cn_loop_t *));
    CN_ENSURE(s->loops != NULL, CN_ENOMEM);
    uint16_t port = s->cfg.listen_port;
    for (unsigned i = 0; i < s->cfg.threads; i++) {
        int fd;
        uint16_t bound;
        CN_TRY(bind_listener(s->cfg.listen_host, port, &fd, &bound));
        port = bound; /* port 0: the others join the port the first one got */
        s->loops[i] = calloc(1, sizeof(cn_loop_t));
        if (!s->loops[i]) {
            close(fd);
            return CN_ENOMEM;
        }
        s->nloops = i + 1;
        CN_TRY(cn__loop_init(s->loops[i], s, i, fd));
    }
    s->bound_port = port;
    return CN_OK;
}

int cn__jwt_keys_load(const cn_node_config_t *cfg, cn_jwt_keys_t *k, char *err, size_t errlen)
{
    memset(k, 0, sizeof(*k));
    k->leeway_s = cfg->jwt_leeway_s;
    snprintf(k->issuer, sizeof(k->issuer), "%s", cfg->jwt_issuer);
    snprintf(k->audience, sizeof(k->audience), "%s", cfg->jwt_audience);
    if (cfg->jwt_ed25519_key[0]) {
        if (cn_hex_decode(k->ed25519, sizeof(k->ed25519), cfg->jwt_ed25519_key) < 0) {
            snprintf(err, errlen, "jwt ed25519 key must be 64 hex digits");
            return CN_EINVAL;
        }
        k->has_ed25519 = true;
    }
    if (!cfg->jwt_hs256_key_file[0])
        return CN_OK;
    FILE *f = fopen(cfg->jwt_hs256_key_file, "rb");
    size_t n = f ? fread(k->hs256, 1, sizeof(k->hs256), f) : 0;
    bool more = f && fgetc(f) != EOF;
    if (f)
        fclose(f);
    while (n > 0 && (k->hs256[n - 1] == '\n' || k->hs256[n - 1] == '\r'))
        n--;
    /* RFC 7518 3.2: an HS256 key has at least 256 bits. */
    if (!f || more || n < 32) {
        snprintf(err, errlen, "jwt hs256 key file %s must hold 32..%d bytes",
                 cfg->jwt_hs256_key_file, CN_JWT_HS256_KEY_MAX);
        cn_wipe(k->hs256, sizeof(k->hs256));
        return CN_EINVAL;
    }
    k->hs256_len = n;
    return CN_OK;
}

static int apply_ratelimits(cn_server_t *s)
{
    for (unsigned i = 0; i < s->cfg.n_ratelimits; i++) {
        const cn_node_rl_policy_t *p = &s->cfg.ratelimits[i];
        enum cn_rl_action a;
        if (cn__rl_action_parse(p->action, &a) < 0 ||
            cn__rl_set(s->rl, a, NULL, (cn_rl_policy_t){p->rate, p->burst}) < 0) {
            cn_log_error("bad_ratelimit", "action=%s", p->action);
            return CN_EINVAL;
        }
    }
    return CN_OK;
}

int cn_node_check_config(const cn_node_config_t *cfg, char *err, size_t errlen)
{
    CN_TRY(cn_crypto_init());
    SSL_CTX *tls = cn_tls_server_ctx_new(cfg->tls_cert, cfg->tls_key);
    if (!tls) {
        snprintf(err, errlen, "cannot use TLS certificate %s / key %s", cfg->tls_cert,
                 cfg->tls_key);
        return CN_EINVAL;
    }
    SSL_CTX_free(tls);
    for (unsigned i = 0; i < cfg->n_ratelimits; i++) {
        enum cn_rl_action a;
        if (cn__rl_action_parse(cfg->ratelimits[i].action, &a) < 0) {
            snprintf(err, errlen, "unknown rate-limit action '%s'", cfg->ratelimits[i].action);
            return CN_EINVAL;
        }
    }
    cn_jwt_keys_t jwt;
    int rc = cn__jwt_keys_load(cfg, &jwt, err, errlen);
    cn_wipe(&jwt, sizeof(jwt));
    CN_TRY(rc);
    cn_identity_t id = {0};
    rc = cn_identity_load(cfg->node_key, &id);
    cn_identity_dispose(&id);
    if (rc < 0 && rc != CN_ENOTFOUND) {
        snprintf(err, errlen, "node key %s is unreadable or malformed", cfg->node_key);
        return CN_EINVAL;
    }
    struct stat st;
    if (stat(cfg->data_dir, &st) == 0 ? !S_ISDIR(st.st_mode) || access(cfg->data_dir, W_OK) != 0
                                      : errno != ENOENT) {
        snprintf(err, errlen, "data directory %s is not a writable directory", cfg->data_dir);
        return CN_EINVAL;
    }
    return CN_OK;
}

int cn_node_new(const cn_node_config_t *cfg, cn_node_t **out)
{
    int rc = CN_OK;
    cn_node_t *n = calloc(1, sizeof(*n));
    CN_ENSURE(n != NULL, CN_ENOMEM);
    cn_server_t *s = &n->server;
    s->cfg = *cfg;
    cn_log_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    CN_TRY_OUT(cn_crypto_init());
    CN_TRY_OUT(open_store(s));
    CN_TRY_OUT(load_identity(s));
    s->tls = cn_tls_server_ctx_new(cfg->tls_cert, cfg->tls_key);
    CN_ENSURE_OUT(s->tls != NULL, CN_EINVAL);
    s->registry = cn__registry_new();
    CN_ENSURE_OUT(s->registry != NULL, CN_ENOMEM);
    s->rl = cn__rl_new();
    CN_ENSURE_OUT(s->rl != NULL, CN_ENOMEM);
    s->presence = cn__presence_new();
    CN_ENSURE_OUT(s->presence != NULL, CN_ENOMEM);
    s->links = cn__links_new();
    CN_ENSURE_OUT(s->links != NULL, CN_ENOMEM);
    s->usercache = cn__usercache_new(NULL);
    CN_ENSURE_OUT(s->usercache != NULL, CN_ENOMEM);
    CN_TRY_OUT(apply_ratelimits(s));
    char err[256];
    rc = cn__jwt_keys_load(cfg, &s->jwt, err, sizeof(err));
    if (rc < 0)
        cn_log_error("bad_jwt_keys", "detail=\"%s\"", err);
    CN_TRY_OUT(rc);
    cn__rl_load(s); /* what chatadmin set last wins over the configuration */
    if (cfg->push_gateway[0])
        CN_TRY_OUT(cn__push_new(s, cfg->push_gateway, &s->push));
    CN_TRY_OUT(start_loops(s));
    *out = n;
out:
    if (rc < 0)
        cn_node_free(n);
    return rc;
}

static void on_signal(uv_signal_t *h, int signum)
{
    cn_log_info("signal", "signal=%d", signum);
    uv_stop(h->loop);
}

static void on_stop_async(uv_async_t *a)
{
    uv_stop(a->loop);
}

void cn_node_stop(cn_node_t *node)
{
    uv_async_send(&node->stop_async);
}

static void post_all(cn_server_t *s, enum cn_msg_type type)
{
    for (unsigned i = 0; i < s->nloops; i++) {
        cn_msg_t *m = cn__msg_new(type, 0);
        if (m)
            cn__loop_post(s->loops[i], m);
    }
}

/* Waits (bounded) until no connection is left, polling the counter. */
static void wait_connections_closed(cn_server_t *s, unsigned max_ms)
{
    for (unsigned waited = 0; waited < max_ms; waited += 10) {
        if (atomic_load(&s->counters.connections_open) == 0)
            return;
        usleep(10000);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void shutdown_node(cn_node_t *n)
{
    cn_server_t *s = &n->server;
    atomic_store(&s->draining, true);
    cn_log_info("shutdown", "phase=drain connections=%llu",
                (unsigned long long)atomic_load(&s->counters.connections_open));
    post_all(s, CN_MSG_DRAIN);
    /* Finish every queued commit; the answers reach the loops before GOAWAY. */
    cn_store_t *store = s->store;
    cn_store_stats_t st;
    cn_store_stats_get(store, &st);
    while (st.queue_depth > 0) {
        usleep(1000);
        cn_store_stats_get(store, &st);
    }
    post_all(s, CN_MSG_GOAWAY);
    wait_connections_closed(s, 2000);
    post_all(s, CN_MSG_STOP);
    cn__push_free(s->push);
    s->push = NULL;
    for (unsigned i = 0; i < s->nloops; i++)
        cn__loop_join(s->loops[i]);
    s->nloops = 0;
    cn_store_free(store);
    s->store = NULL;
    cn_log_info("shutdown", "phase=done");
}

int cn_node_run(cn_node_t *n)
{
    cn_server_t *s = &n->server;
    CN_ENSURE(uv_loop_init(&n->control) == 0, CN_EINTERNAL);
    uv_signal_init(&n->control, &n->sigint);
    uv_signal_init(&n->control, &n->sigterm);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_async_init(&n->control, &n->stop_async, on_stop_async);
    if (s->cfg.metrics_host[0]) {
        if (cn__metrics_start(s, &n->control, &n->metrics) < 0)
            return CN_EIO;
    }
    if (s->cfg.admin_socket[0] && cn__admin_start(s, &n->control, &n->admin) < 0)
        return CN_EIO;
    for (unsigned i = 0; i < s->nloops; i++)
        CN_TRY(cn__loop_start(s->loops[i]));
    char nid[2 * CN_DEVICE_ID_LEN + 1];
    cn_hex_encode(nid, s->identity.pk, CN_DEVICE_ID_LEN);
    if (s->cfg.test_echo)
        cn_log_warn("test_echo", "detail=\"echo mode: for WebSocket conformance tests only\"");
    cn_log_info("listening", "addr=%s:%u threads=%u sync=%s node_id=%s", s->cfg.listen_host,
                s->bound_port, s->nloops, cn_sync_name(s->cfg.sync), nid);
    uv_run(&n->control, UV_RUN_DEFAULT);
    shutdown_node(n);
    uv_walk(&n->control, close_walk, NULL);
    uv_run(&n->control, UV_RUN_DEFAULT);
    uv_loop_close(&n->control);
    if (s->cfg.admin_socket[0])
        unlink(s->cfg.admin_socket);
    return CN_OK;
}

void cn_node_free(cn_node_t *n)
{
    if (!n)
        return;
    cn_server_t *s = &n->server;
    for (unsigned i = 0; i < s->nloops; i++) {
        /* Never started (cn_node_new failed half-way): close its handles. */
        uv_walk(&s->loops[i]->uv, close_walk, NULL);
        uv_run(&s->loops[i]->uv, UV_RUN_DEFAULT);
        uv_loop_close(&s->loops[i]->uv);
        uv_mutex_destroy(&s->loops[i]->inbox_lock);
        free(s->loops[i]->buckets);
    }
    if (s->loops)
        for (unsigned i = 0; i < s->cfg.threads; i++)
            free(s->loops[i]);
    free(s->loops);
    cn__registry_free(s->registry);
    cn__rl_free(s->rl);
    cn__push_free(s->push);
    cn__presence_free(s->presence);
    cn__links_free(s->links);
    cn__usercache_free(s->usercache);
    cn_wipe(&s->jwt, sizeof(s->jwt));
    if (s->tls)
        SSL_CTX_free(s->tls);
    cn_identity_dispose(&s->identity);
    cn_store_free(s->store);
    free(n);
}
