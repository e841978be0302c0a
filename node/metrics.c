/*
 * Prometheus text exposition at GET /metrics, plus /healthz and /readyz,
 * on a separate plain-HTTP listener (loopback by default) served by the
 * control loop. One request per connection; the request head is bounded by
 * CN_HTTP_HEADER_MAX and parsed by the same sans-I/O parser as upgrades.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct metrics_conn {
    uv_tcp_t tcp;
    uv_write_t req;
    cn_server_t *server;
    cn_buf_t in, out;
    bool responded;
} metrics_conn_t;

static void on_closed(uv_handle_t *h)
{
    metrics_conn_t *m = h->data;
    cn_buf_dispose(&m->in);
    cn_buf_dispose(&m->out);
    free(m);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    metrics_conn_t *m = req->data;
    uv_close((uv_handle_t *)&m->tcp, on_closed);
}

#define COUNTER(name, help, field)                                                                 \
    {                                                                                              \
        name, help, "counter", offsetof(cn_counters_t, field)                                      \
    }
#define GAUGE(name, help, field)                                                                   \
    {                                                                                              \
        name, help, "gauge", offsetof(cn_counters_t, field)                                        \
    }

static const struct metric {
    const char *name, *help, *type;
    size_t off;
} metrics[] = {
    COUNTER("chatnode_connections_accepted_total", "TCP connections accepted.",
            connections_accepted),
    GAUGE("chatnode_connections_open", "Connections open now.", connections_open),
    COUNTER("chatnode_connections_rejected_total",
            "Connections refused (connection limit, connect rate limit, draining).",
            connections_rejected),
    COUNTER("chatnode_handshakes_failed_total", "Failed TLS or WebSocket handshakes.",
            handshakes_failed),
    COUNTER("chatnode_auth_ok_total", "Successful authentications.", auth_ok),
    COUNTER("chatnode_registrations_total", "Registered users.", registrations),
    COUNTER("chatnode_messages_accepted_total", "Sends stored durably.", messages_accepted),
    COUNTER("chatnode_messages_duplicate_total", "Retried sends answered from dedupe.",
            messages_duplicate),
    COUNTER("chatnode_messages_delivered_total", "Deliver pushes of stored envelopes.",
            messages_delivered),
    COUNTER("chatnode_messages_acked_total", "Mailbox entries deleted by acks.", messages_acked),
    COUNTER("chatnode_bytes_in_total", "Bytes read from client sockets.", bytes_in),
    COUNTER("chatnode_bytes_out_total", "Bytes written to client sockets.", bytes_out),
    COUNTER("chatnode_read_pauses_total",
            "Times a connection was not read because 256 of its requests waited for the store.",
            read_pauses),
    COUNTER("chatnode_loop_read_pauses_total",
            "Times a loop stopped reading its connections because 4096 of their requests waited "
            "for the store.",
            loop_read_pauses),
    COUNTER("chatnode_buffers_released_total",
            "Connection buffers given back after a quiet sweep period.", buffers_released),
};

static const char *const auth_fail_labels[CN_AUTHF__COUNT] = {
    [CN_AUTHF_MALFORMED] = "malformed",
    [CN_AUTHF_EXPIRED] = "challenge_expired",
    [CN_AUTHF_BAD_SIGNATURE] = "bad_signature",
    [CN_AUTHF_UNKNOWN_DEVICE] = "unknown_device",
    [CN_AUTHF_REVOKED] = "revoked",
    [CN_AUTHF_DISABLED] = "disabled",
    [CN_AUTHF_INVITE] = "invite",
    [CN_AUTHF_OTHER] = "other",
};

static uint64_t load(const atomic_uint_fast64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

void cn__hist_observe(cn_hist_t *h, uint64_t us)
{
    static const double bounds[] = CN_LATENCY_BUCKETS_MS;
    size_t i = 0;
    while (i < CN_LATENCY_BUCKETS && (double)us > bounds[i] * 1000.0)
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

/* Writes a histogram from per-bucket counts (cumulated here). */
static int render_hist(cn_buf_t *b, const char *name, const char *help, const double *bounds,
                       size_t nb, const uint64_t *counts, double sum, double scale)
{
    CN_TRY(cn_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name));
    uint64_t cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += counts[i];
        CN_TRY(cn_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i] * scale,
                             (unsigned long long)cum));
    }
    cum += counts[nb];
    return cn_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                         (unsigned long long)cum, name, sum, name, (unsigned long long)cum);
}

static int render_node_hist(cn_buf_t *b, const char *name, const char *help, const cn_hist_t *h)
{
    static const double bounds[] = CN_LATENCY_BUCKETS_MS;
    uint64_t counts[CN_LATENCY_BUCKETS + 1];
    for (size_t i = 0; i <= CN_LATENCY_BUCKETS; i++)
        counts[i] = load(&h->counts[i]);
    return render_hist(b, name, help, bounds, CN_LATENCY_BUCKETS, counts,
                       (double)load(&h->sum_us) / 1e6, 0.001);
}

static int render_labeled(cn_server_t *s, cn_buf_t *b)
{
    cn_counters_t *c = &s->counters;
    CN_TRY(cn_buf_printf(b, "# HELP chatnode_auth_failed_total Refused authentications by "
                            "reason.\n# TYPE chatnode_auth_failed_total counter\n"));
    for (int i = 0; i < CN_AUTHF__COUNT; i++)
        CN_TRY(cn_buf_printf(b, "chatnode_auth_failed_total{reason=\"%s\"} %llu\n",
                             auth_fail_labels[i], (unsigned long long)load(&c->auth_failed_by[i])));
    CN_TRY(cn_buf_printf(b, "# HELP chatnode_rate_limited_total Requests refused by a rate "
                            "limit, by action.\n# TYPE chatnode_rate_limited_total counter\n"));
    for (int a = 0; a < CN_RL__COUNT; a++)
        CN_TRY(cn_buf_printf(b, "chatnode_rate_limited_total{action=\"%s\"} %llu\n",
                             cn__rl_action_name(a), (unsigned long long)cn__rl_refused(s->rl, a)));
    cn_store_stats_t st;
    cn_store_stats_get(s->store, &st);
    const struct {
        const char *cls;
        uint64_t v;
    } errors[] = {
        {"protocol", load(&c->protocol_errors)},
        {"timeout", load(&c->timeouts)},
        {"slow_reader", load(&c->slow_reader_closes)},
        {"store", load(&c->store_errors)},
        {"store_write", st.write_errors},
    };
    CN_TRY(cn_buf_printf(b, "# HELP chatnode_errors_total Errors by class.\n"
                            "# TYPE chatnode_errors_total counter\n"));
    for (size_t i = 0; i < CN_ARRAY_LEN(errors); i++)
        CN_TRY(cn_buf_printf(b, "chatnode_errors_total{class=\"%s\"} %llu\n", errors[i].cls,
                             (unsigned long long)errors[i].v));
    return CN_OK;
}

static int render_store(cn_server_t *s, cn_buf_t *b)
{
    cn_store_stats_t st;
    cn_store_stats_get(s->store, &st);
    static const double batch_bounds[] = CN_STORE_BATCH_BUCKETS_OPS;
    static const double fsync_bounds[] = CN_STORE_FSYNC_BUCKETS_MS;
    double fsync_s = (double)st.fsync_ns_total / 1e9;
    CN_TRY(render_hist(b, "chatnode_store_batch_ops", "Operations per group-commit batch.",
                       batch_bounds, CN_STORE_BATCH_HIST_N - 1, st.batch_ops_hist, (double)st.ops,
                       1.0));
    CN_TRY(render_hist(b, "chatnode_store_fsync_seconds", "Latency of synced batch writes.",
                       fsync_bounds, CN_STORE_FSYNC_HIST_N - 1, st.fsync_hist, fsync_s, 0.001));
    uint64_t pushed, push_failed;
    cn__push_stats(s->push, &pushed, &push_failed);
    CN_TRY(cn_buf_printf(b,
                         "# HELP chatnode_push_wakeups_total Wake-ups accepted by the gateway.\n"
                         "# TYPE chatnode_push_wakeups_total counter\n"
                         "chatnode_push_wakeups_total %llu\n"
                         "# HELP chatnode_push_failures_total Failed wake-up attempts.\n"
                         "# TYPE chatnode_push_failures_total counter\n"
                         "chatnode_push_failures_total %llu\n",
                         (unsigned long long)pushed, (unsigned long long)push_failed));
    return cn_buf_printf(
        b,
        "# HELP chatnode_store_queue_depth Store operations submitted and not yet answered.\n"
        "# TYPE chatnode_store_queue_depth gauge\nchatnode_store_queue_depth %llu\n"
        "# HELP chatnode_devices_online Authenticated devices connected.\n"
        "# TYPE chatnode_devices_online gauge\nchatnode_devices_online %zu\n",
        (unsigned long long)st.queue_depth, cn__registry_size(s->registry));
}

/* The user and group cache (node/usercache.c), by kind. */
static int render_usercache(cn_server_t *s, cn_buf_t *b)
{
    cn_usercache_stats_t st;
    cn__usercache_stats(s->usercache, &st);
    static const struct {
        const char *name, *help, *type;
    } m[] = {
        {"chatnode_usercache_hits_total", "User and group lookups answered from the cache.",
         "counter"},
        {"chatnode_usercache_misses_total", "User and group lookups that read the store.",
         "counter"},
        {"chatnode_usercache_evictions_total",
         "Entries dropped for room (least recently used first) or after a minute cached.",
         "counter"},
        {"chatnode_usercache_entries", "Entries cached now.", "gauge"},
    };
    const uint64_t v[][2] = {
        {st.user_hits, st.group_hits},
        {st.user_misses, st.group_misses},
        {st.user_evictions, st.group_evictions},
        {st.user_entries, st.group_entries},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(m); i++)
        CN_TRY(cn_buf_printf(b,
                             "# HELP %s %s\n# TYPE %s %s\n%s{kind=\"user\"} %llu\n"
                             "%s{kind=\"group\"} %llu\n",
                             m[i].name, m[i].help, m[i].name, m[i].type, m[i].name,
                             (unsigned long long)v[i][0], m[i].name, (unsigned long long)v[i][1]));
    return cn_buf_printf(
        b,
        "# HELP chatnode_usercache_group_members Member handles held by cached groups.\n"
        "# TYPE chatnode_usercache_group_members gauge\nchatnode_usercache_group_members %llu\n"
        "# HELP chatnode_usercache_invalidations_total Entries invalidated by a change of "
        "the record.\n# TYPE chatnode_usercache_invalidations_total counter\n"
        "chatnode_usercache_invalidations_total %llu\n"
        "# HELP chatnode_usercache_inserts_refused_total Store reads not cached because a "
        "change raced them.\n# TYPE chatnode_usercache_inserts_refused_total counter\n"
        "chatnode_usercache_inserts_refused_total %llu\n",
        (unsigned long long)st.group_members, (unsigned long long)st.invalidations,
        (unsigned long long)st.inserts_refused);
}

static int render(cn_server_t *s, cn_buf_t *b)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(metrics); i++) {
        const struct metric *m = &metrics[i];
        uint64_t v = load((atomic_uint_fast64_t *)((char *)&s->counters + m->off));
        CN_TRY(cn_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m->name, m->help, m->name,
                             m->type, m->name, (unsigned long long)v));
    }
    CN_TRY(render_labeled(s, b));
    CN_TRY(render_node_hist(b, "chatnode_send_durable_seconds",
                            "Send received to every copy durable.", &s->counters.send_durable));
    CN_TRY(render_node_hist(b, "chatnode_send_deliver_seconds",
                            "Send received to Deliver pushed to an online device.",
                            &s->counters.send_deliver));
    CN_TRY(render_usercache(s, b));
    return render_store(s, b);
}

static void respond(metrics_conn_t *m, const cn_http_request_t *req)
{
    cn_server_t *s = m->server;
    cn_buf_t body;
    cn_buf_init(&body);
    int status = 200;
    const char *ctype = "text/plain; charset=utf-8";
    if (strcmp(req->method, "GET") != 0) {
        status = 405;
        CN_IGNORE(cn_buf_printf(&body, "method not allowed\n"));
    } else if (strcmp(req->path, "/metrics") == 0) {
        ctype = "text/plain; version=0.0.4; charset=utf-8";
        if (render(s, &body) < 0)
            status = 500;
    } else if (strcmp(req->path, "/healthz") == 0) {
        CN_IGNORE(cn_buf_printf(&body, "ok\n"));
    } else if (strcmp(req->path, "/readyz") == 0) {
        cn_store_stats_t st;
        cn_store_stats_get(s->store, &st);
        bool draining = atomic_load(&s->draining);
        status = draining || st.write_failing ? 503 : 200;
        CN_IGNORE(cn_buf_printf(&body, draining           ? "draining\n"
                                       : st.write_failing ? "storage failing: cannot persist\n"
                                                          : "ready\n"));
    } else {
        status = 404;
        CN_IGNORE(cn_buf_printf(&body, "not found\n"));
    }
    CN_IGNORE(cn_http_write_response(&m->out, status, ctype, body.data, body.len));
    cn_buf_dispose(&body);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    metrics_conn_t *m = h->data;
    if (cn_buf_reserve(&m->in, 4096) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)m->in.data + m->in.len, 4096);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    metrics_conn_t *m = st->data;
    if (m->responded || nread == 0)
        return;
    if (nread < 0) {
        uv_close((uv_handle_t *)&m->tcp, on_closed);
        return;
    }
    m->in.len += (size_t)nread;
    cn_http_request_t req;
    int status = 400;
    int rc = cn_http_request_parse(m->in.data, m->in.len, false, &req, &status);
    if (rc == CN_EAGAIN)
        return;
    m->responded = true;
    uv_read_stop(st);
    if (rc < 0)
        CN_IGNORE(cn_http_write_response(&m->out, status, "text/plain", "bad request\n", 12));
    else
        respond(m, &req);
    uv_buf_t b = uv_buf_init((char *)m->out.data, (unsigned)m->out.len);
    m->req.data = m;
    if (uv_write(&m->req, st, &b, 1, on_written) < 0)
        uv_close((uv_handle_t *)&m->tcp, on_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    metrics_conn_t *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    m->server = server->data;
    uv_tcp_init(server->loop, &m->tcp);
    m->tcp.data = m;
    if (uv_accept(server, (uv_stream_t *)&m->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&m->tcp, alloc_cb, read_cb) != 0)
        uv_close((uv_handle_t *)&m->tcp, on_closed);
}

int cn__metrics_start(cn_server_t *s, uv_loop_t *loop, uv_tcp_t *listener)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(s->cfg.metrics_host, s->cfg.metrics_port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(s->cfg.metrics_host, s->cfg.metrics_port, (struct sockaddr_in6 *)&ss) != 0)
        return CN_EINVAL;
    uv_tcp_init(loop, listener);
    listener->data = s;
    int rc = uv_tcp_bind(listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)listener, 64, on_connection);
    if (rc != 0) {
        cn_log_error("metrics_listen_failed", "addr=%s:%u error=%s", s->cfg.metrics_host,
                     s->cfg.metrics_port, uv_strerror(rc));
        return CN_EIO;
    }
    struct sockaddr_storage got;
    int len = sizeof(got);
    uv_tcp_getsockname(listener, (struct sockaddr *)&got, &len);
    unsigned port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    cn_log_info("metrics_listening", "addr=%s:%u", s->cfg.metrics_host, port);
    return CN_OK;
}
