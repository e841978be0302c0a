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
    COUNTER("chatnode_connections_rejected_total", "Connections refused (limits, draining).",
            connections_rejected),
    COUNTER("chatnode_handshakes_failed_total", "Failed TLS or WebSocket handshakes.",
            handshakes_failed),
    COUNTER("chatnode_auth_ok_total", "Successful authentications.", auth_ok),
    COUNTER("chatnode_auth_failed_total", "Refused authentications.", auth_failed),
    COUNTER("chatnode_registrations_total", "Registered users.", registrations),
    COUNTER("chatnode_messages_accepted_total", "Sends stored durably.", messages_accepted),
    COUNTER("chatnode_messages_duplicate_total", "Retried sends answered from dedupe.",
            messages_duplicate),
    COUNTER("chatnode_messages_delivered_total", "Deliver pushes of stored envelopes.",
            messages_delivered),
    COUNTER("chatnode_messages_acked_total", "Mailbox entries deleted by acks.", messages_acked),
    COUNTER("chatnode_bytes_in_total", "Bytes read from client sockets.", bytes_in),
    COUNTER("chatnode_bytes_out_total", "Bytes written to client sockets.", bytes_out),
    COUNTER("chatnode_protocol_errors_total", "Connections closed for protocol errors.",
            protocol_errors),
    COUNTER("chatnode_slow_reader_closes_total", "Connections dropped at the output hard limit.",
            slow_reader_closes),
    COUNTER("chatnode_timeouts_total", "Connections closed by handshake, auth or idle timeouts.",
            timeouts),
    COUNTER("chatnode_store_errors_total", "Store operations that failed.", store_errors),
    COUNTER("chatnode_send_durable_seconds_sum", "Sum of send-to-durable latency.",
            send_durable_us_sum),
    COUNTER("chatnode_send_durable_seconds_count", "Count of durable sends.", send_durable_count),
};

static int render(cn_server_t *s, cn_buf_t *b)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(metrics); i++) {
        const struct metric *m = &metrics[i];
        uint64_t v = atomic_load((atomic_uint_fast64_t *)((char *)&s->counters + m->off));
        bool seconds = strstr(m->name, "_seconds_sum") != NULL;
        if (strstr(m->name, "_seconds_") && !seconds)
            CN_TRY(cn_buf_printf(b, "%s %llu\n", m->name, (unsigned long long)v));
        else if (seconds)
            CN_TRY(cn_buf_printf(b,
                                 "# HELP chatnode_send_durable_seconds %s\n"
                                 "# TYPE chatnode_send_durable_seconds summary\n%s %.6f\n",
                                 m->help, m->name, (double)v / 1e6));
        else
            CN_TRY(cn_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m->name, m->help,
                                 m->name, m->type, m->name, (unsigned long long)v));
    }
    cn_store_stats_t st;
    cn_store_stats_get(s->store, &st);
    CN_TRY(cn_buf_printf(
        b,
        "# HELP chatnode_store_batches_total Group-commit batches written.\n"
        "# TYPE chatnode_store_batches_total counter\nchatnode_store_batches_total %llu\n"
        "# HELP chatnode_store_ops_total Store operations committed.\n"
        "# TYPE chatnode_store_ops_total counter\nchatnode_store_ops_total %llu\n"
        "# HELP chatnode_store_fsync_seconds_total Time spent in synced batch writes.\n"
        "# TYPE chatnode_store_fsync_seconds_total counter\n"
        "chatnode_store_fsync_seconds_total %.6f\n"
        "# HELP chatnode_store_queue_depth Operations waiting for the writer.\n"
        "# TYPE chatnode_store_queue_depth gauge\nchatnode_store_queue_depth %llu\n"
        "# HELP chatnode_devices_online Authenticated devices connected.\n"
        "# TYPE chatnode_devices_online gauge\nchatnode_devices_online %zu\n",
        (unsigned long long)st.batches, (unsigned long long)st.ops, (double)st.fsync_ns_total / 1e9,
        (unsigned long long)st.queue_depth, cn__registry_size(s->registry)));
    return CN_OK;
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
        (void)cn_buf_printf(&body, "method not allowed\n");
    } else if (strcmp(req->path, "/metrics") == 0) {
        ctype = "text/plain; version=0.0.4; charset=utf-8";
        if (render(s, &body) < 0)
            status = 500;
    } else if (strcmp(req->path, "/healthz") == 0) {
        (void)cn_buf_printf(&body, "ok\n");
    } else if (strcmp(req->path, "/readyz") == 0) {
        bool ready = !atomic_load(&s->draining);
        status = ready ? 200 : 503;
        (void)cn_buf_printf(&body, ready ? "ready\n" : "draining\n");
    } else {
        status = 404;
        (void)cn_buf_printf(&body, "not found\n");
    }
    (void)cn_http_write_response(&m->out, status, ctype, body.data, body.len);
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
        (void)cn_http_write_response(&m->out, status, "text/plain", "bad request\n", 12);
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
