/*
 * A client connection: TCP -> TLS (memory BIOs) -> HTTP upgrade ->
 * WebSocket -> protobuf. One accumulating output buffer and one write in
 * flight; reading stops above the soft output limit and a peer that lets
 * the backlog reach the hard limit is disconnected. Memory is freed in the
 * uv_close callbacks of the connection's two handles.
 */
#include "node/node_internal.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE (64u * 1024u)

static _Thread_local uint8_t t_readbuf[READ_BUF_SIZE];
static _Thread_local cn_buf_t t_frame; /* scratch for encoding frames */

static void flush(cn_conn_t *c);

void cn__conn_thread_exit(void)
{
    cn_buf_dispose(&t_frame);
}

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

static void count(atomic_uint_fast64_t *ctr, uint64_t n)
{
    atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

/* ---------------------------------------------------------- teardown */

static void free_conn(cn_conn_t *c)
{
    cn_tls_free(c->tls);
    cn_ws_free(c->ws);
    cn_buf_dispose(&c->plain_in);
    cn_buf_dispose(&c->plain_out);
    cn_buf_dispose(&c->out);
    cn_buf_dispose(&c->inflight);
    free(c);
}

/* Both handles (tcp, timer) close; the second close callback frees. */
static void on_handle_closed(uv_handle_t *h)
{
    cn_conn_t *c = h->data;
    if (++c->handles_closed == 2)
        free_conn(c);
}

/* The device is no longer reachable here: routes, presence, subscriptions. */
static void leave_registry(cn_conn_t *c)
{
    if (c->authed) {
        c->authed = false;
        cn__registry_remove(srv(c)->registry, c->device_id, c->id);
        cn__presence_offline(srv(c), c->handle);
    }
    cn__presence_conn_gone(c);
}

/* A closed connection must leave the dirty list: it is freed at the end of
 * this loop iteration, before the next flush pass. */
static void undirty(cn_conn_t *c)
{
    if (!c->dirty)
        return;
    cn_conn_t **pp = &c->loop->dirty;
    while (*pp && *pp != c)
        pp = &(*pp)->next_dirty;
    if (*pp)
        *pp = c->next_dirty;
    c->dirty = false;
}

/* Joins the loop's read_waiters: resumed when its requests fall to half. */
static void wait_for_loop(cn_conn_t *c)
{
    cn_loop_t *loop = c->loop;
    if (c->read_waiting)
        return;
    if (loop->read_waiters == NULL)
        count(&srv(c)->counters.loop_read_pauses, 1);
    c->read_waiting = true;
    c->wait_prev = NULL;
    c->wait_next = loop->read_waiters;
    if (c->wait_next)
        c->wait_next->wait_prev = c;
    loop->read_waiters = c;
}

static void unwait(cn_conn_t *c)
{
    if (!c->read_waiting)
        return;
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        c->loop->read_waiters = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    c->wait_prev = c->wait_next = NULL;
    c->read_waiting = false;
}

static bool loop_full(const cn_loop_t *loop)
{
    return loop->pending_ops >= CN_LOOP_PENDING_MAX;
}

void cn__loop_resume_readers(cn_loop_t *loop)
{
    while (loop->read_waiters) {
        cn_conn_t *c = loop->read_waiters;
        unwait(c);
        if (!c->reading && c->state != CN_CONN_CLOSED && cn__conn_may_read(c))
            cn__conn_read_start(c);
    }
}

static void close_now(cn_conn_t *c)
{
    if (c->state == CN_CONN_CLOSED)
        return;
    undirty(c);
    unwait(c);
    leave_registry(c);
    c->state = CN_CONN_CLOSED;
    cn__loop_conn_remove(c->loop, c);
    count(&srv(c)->counters.connections_open, (uint64_t)-1);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void cn__conn_abort(cn_conn_t *c, const char *why)
{
    if (c->state == CN_CONN_CLOSED)
        return;
    cn_log_debug("conn_abort", "conn=%llu peer=%s reason=\"%s\"", (unsigned long long)c->id,
                 c->peer, why);
    close_now(c);
}

void cn__conn_close(cn_conn_t *c, uint16_t code, const char *reason)
{
    if (c->state == CN_CONN_CLOSED || c->state == CN_CONN_CLOSING)
        return;
    if (!c->ws) {
        cn__conn_abort(c, reason);
        return;
    }
    cn_log_debug("conn_close", "conn=%llu code=%u reason=\"%s\"", (unsigned long long)c->id, code,
                 reason);
    leave_registry(c);
    c->state = CN_CONN_CLOSING;
    if (cn_ws_close(c->ws, code, reason) < 0) {
        close_now(c);
        return;
    }
    c->close_after_flush = true;
    flush(c);
}

/* ------------------------------------------------------------ output */

static size_t backlog(const cn_conn_t *c)
{
    return c->plain_out.len + c->out.len - c->out.rpos + c->inflight.len;
}

bool cn__conn_backlogged(const cn_conn_t *c)
{
    return backlog(c) > srv(c)->cfg.out_soft_limit;
}

/* Idle connections keep no buffers (DESIGN 10: idle connections are cheap). */
static void release_idle_buffers(cn_conn_t *c)
{
    unsigned n = 0;
    if (!c->writing && c->inflight.cap) {
        cn_buf_dispose(&c->inflight);
        n++;
    }
    if (c->out.len == c->out.rpos && c->out.cap) {
        cn_buf_dispose(&c->out);
        n++;
    }
    if (c->plain_out.len == 0 && c->plain_out.cap) {
        cn_buf_dispose(&c->plain_out);
        n++;
    }
    if (c->plain_in.len == c->plain_in.rpos && c->plain_in.cap) {
        cn_buf_dispose(&c->plain_in);
        n++;
    }
    if (n)
        count(&srv(c)->counters.buffers_released, n);
}

bool cn__conn_may_read(const cn_conn_t *c)
{
    return !cn__conn_backlogged(c) && c->pending_ops < CN_CONN_PENDING_MAX;
}

/* The socket took all output: resume what a backlog paused. */
static void output_drained(cn_conn_t *c)
{
    if (cn__conn_backlogged(c))
        return;
    if (c->state != CN_CONN_CLOSING)
        cn__conn_read_resume(c);
    if (c->state == CN_CONN_AUTHED)
        cn__delivery_resume(c);
}

static void on_write(uv_write_t *req, int status)
{
    cn_conn_t *c = req->data;
    c->writing = false;
    cn_buf_reset(&c->inflight);
    if (c->state == CN_CONN_CLOSED)
        return;
    if (status < 0) {
        cn__conn_abort(c, uv_strerror(status));
        return;
    }
    flush(c);
    if (c->state == CN_CONN_CLOSED)
        return;
    output_drained(c);
}

/* Queues the rest of the output behind a write request. */
static void start_write(cn_conn_t *c)
{
    cn_buf_t tmp = c->inflight;
    c->inflight = c->out;
    c->out = tmp;
    cn_buf_reset(&c->out);
    uv_buf_t b = uv_buf_init((char *)c->inflight.data + c->inflight.rpos,
                             (unsigned)(c->inflight.len - c->inflight.rpos));
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        cn__conn_abort(c, uv_strerror(rc));
        return;
    }
    c->writing = true;
    count(&srv(c)->counters.bytes_out, b.len);
}

/*
 * Writes what the socket takes at once, without a write request: libuv
 * then neither touches the epoll set (uv_write re-arms the watcher with an
 * epoll_ctl per write) nor defers a callback, which at one write per
 * connection and iteration was a syscall and a callback per message.
 * Returns false when the write failed and the connection was aborted.
 */
static bool write_now(cn_conn_t *c)
{
    uv_buf_t b =
        uv_buf_init((char *)c->out.data + c->out.rpos, (unsigned)(c->out.len - c->out.rpos));
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        return true;
    if (n < 0) {
        cn__conn_abort(c, uv_strerror(n));
        return false;
    }
    c->out.rpos += (size_t)n;
    count(&srv(c)->counters.bytes_out, (uint64_t)n);
    if (c->out.rpos == c->out.len)
        cn_buf_reset(&c->out);
    return true;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    cn_conn_t *c = req->data;
    free(req);
    if (status < 0 && c->state != CN_CONN_CLOSED)
        close_now(c);
}

/*
 * Everything we had to say, close_notify included, is in the kernel: send a
 * FIN and read (and drop) what the peer still sends until it closes too, at
 * most CN_LINGER_MS. Closing with unread input would make the kernel answer
 * with a reset, and a reset can destroy our last records at the peer
 * before it reads them (the web servers' "lingering close").
 */
static void linger(cn_conn_t *c)
{
    if (c->lingering)
        return;
    c->lingering = true;
    if (c->state != CN_CONN_CLOSING) { /* e.g. after the peer's close_notify */
        leave_registry(c);
        c->state = CN_CONN_CLOSING;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        close_now(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        close_now(c);
        return;
    }
    c->linger_until_ms = cn__loop_now(c->loop) + CN_LINGER_MS;
    cn__conn_read_start(c);
    cn__conn_arm_timer(c);
}

/* Encrypts pending frames in one TLS write, moves TLS output to the
 * socket and enforces the hard output limit. */
static void flush_now(cn_conn_t *c)
{
    if (c->state == CN_CONN_CLOSED)
        return;
    c->io_recent = true;
    if (c->plain_out.len) {
        if (cn_tls_write(c->tls, c->plain_out.data, c->plain_out.len) < 0) {
            cn__conn_abort(c, "tls write failed");
            return;
        }
        cn_buf_reset(&c->plain_out);
    }
    /* RFC 8446 6.1: a close_notify before we close (once; none before the
     * handshake is done, and none after a fatal alert). */
    if (c->close_after_flush)
        cn_tls_shutdown(c->tls);
    size_t b = backlog(c);
    if (b > srv(c)->cfg.out_hard_limit) {
        count(&srv(c)->counters.slow_reader_closes, 1);
        cn_log_info("slow_reader", "conn=%llu peer=%s backlog=%zu", (unsigned long long)c->id,
                    c->peer, b);
        close_now(c);
        return;
    }
    /* A paused reader or mailbox pump resumes from the write callback, in
     * the next iteration, so that a drain goes one slice per iteration
     * and cannot hold the loop while the socket keeps taking its output. */
    bool paused = !c->reading || c->pumping;
    if (!c->writing && c->out.len > c->out.rpos && !paused && !write_now(c))
        return;
    if (!c->writing && c->out.len > c->out.rpos)
        start_write(c);
    else if (!c->writing && c->close_after_flush)
        linger(c);
}

/*
 * Buffers are given back by the loop's sweep, not after every flush: a busy
 * connection reused them each iteration only after freeing them and growing
 * them again from 256 bytes (malloc, realloc and free several times per
 * connection and iteration: about 2 % of the node's samples at relay-80k).
 */
void cn__conn_sweep_buffers(cn_conn_t *c)
{
    if (c->state != CN_CONN_CLOSED && !c->io_recent)
        release_idle_buffers(c);
    c->io_recent = false;
}

/* Marks c for the loop's flush pass (redis/h2o style: one write per
 * connection per loop iteration, however many frames were queued). */
static void flush(cn_conn_t *c)
{
    if (c->dirty || c->state == CN_CONN_CLOSED)
        return;
    c->dirty = true;
    c->next_dirty = c->loop->dirty;
    c->loop->dirty = c;
}

void cn__loop_flush_dirty(cn_loop_t *loop)
{
    while (loop->dirty) {
        cn_conn_t *c = loop->dirty;
        loop->dirty = c->next_dirty;
        c->dirty = false;
        flush_now(c);
    }
}

void cn__conn_send_bytes(cn_conn_t *c, const uint8_t *p, size_t n)
{
    if (c->state != CN_CONN_UNAUTH && c->state != CN_CONN_AUTHED)
        return;
    if (cn_ws_send(c->ws, p, n) < 0) {
        cn__conn_abort(c, "websocket send failed");
        return;
    }
    flush(c);
}

/* Room for an encoded frame of n bytes in the thread's frame buffer, or
 * NULL with c aborted. */
static uint8_t *frame_room(cn_conn_t *c, size_t n)
{
    cn_buf_reset(&t_frame);
    if (cn_buf_reserve(&t_frame, n) < 0) {
        cn__conn_abort(c, "out of memory");
        return NULL;
    }
    return t_frame.data;
}

void cn__conn_send_frame(cn_conn_t *c, const Chat__ServerFrame *frame)
{
    size_t n = chat__server_frame__get_packed_size(frame);
    uint8_t *p = frame_room(c, n);
    if (p) {
        chat__server_frame__pack(frame, p);
        cn__conn_send_bytes(c, p, n);
    }
}

void cn__conn_send_deliver(cn_conn_t *c, const cn_rec_envelope_t *env, uint64_t seq)
{
    size_t n = cn_pb_deliver_frame_size(env, seq);
    uint8_t *p = frame_room(c, n);
    if (p) {
        cn_pb_deliver_frame_write(env, seq, p);
        cn__conn_send_bytes(c, p, n);
    }
}

void cn__conn_respond(cn_conn_t *c, Chat__Response *resp)
{
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_RESPONSE;
    f.response = resp;
    cn__conn_send_frame(c, &f);
}

/* A request refused by the limit of action a: RATE_LIMITED with the wait. */
static void respond_limited(cn_conn_t *c, uint64_t request_id, enum cn_rl_action a, uint32_t retry)
{
    char detail[64];
    snprintf(detail, sizeof(detail), "rate limited (%s)", cn__rl_action_name(a));
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = request_id;
    r.status = CHAT__STATUS__RATE_LIMITED;
    r.detail = detail;
    r.retry_after_ms = retry;
    cn__conn_respond(c, &r);
}

bool cn__conn_rate_ok(cn_conn_t *c, uint64_t request_id, enum cn_rl_action a, const uint8_t *key,
                      size_t keylen, double cost)
{
    uint32_t retry = 0;
    const uint8_t *dev = c->authed ? c->device_id : NULL;
    if (cn__rl_take(srv(c)->rl, a, key, keylen, dev, cost, cn__loop_now(c->loop), &retry) == CN_OK)
        return true;
    respond_limited(c, request_id, a, retry);
    return false;
}

bool cn__conn_send_rate_ok(cn_conn_t *c, uint64_t request_id, double bytes)
{
    uint32_t retry = 0;
    enum cn_rl_action refused;
    if (cn__rl_take_send(srv(c)->rl, c->device_id, CN_DEVICE_ID_LEN, c->device_id, bytes,
                         cn__loop_now(c->loop), &refused, &retry) == CN_OK)
        return true;
    respond_limited(c, request_id, refused, retry);
    return false;
}

void cn__conn_respond_status(cn_conn_t *c, uint64_t request_id, Chat__Status status,
                             const char *detail)
{
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = request_id;
    r.status = status;
    r.detail = cn__pb_str(detail ? detail : "");
    if (status != CHAT__STATUS__OK)
        cn_log_debug("request_refused", "conn=%llu req=%llu status=%d detail=\"%s\"",
                     (unsigned long long)c->id, (unsigned long long)request_id, (int)status,
                     r.detail);
    cn__conn_respond(c, &r);
}

/* ------------------------------------------------------------- input */

static void ws_on_message(void *ctx, const uint8_t *p, size_t n)
{
    cn_conn_t *c = ctx;
    if (c->state != CN_CONN_UNAUTH && c->state != CN_CONN_AUTHED)
        return;
    if (srv(c)->cfg.test_echo) { /* WebSocket conformance runs only */
        cn__conn_send_bytes(c, p, n);
        return;
    }
    cn__dispatch(c, p, n);
}

static int ws_on_output(void *ctx, const uint8_t *p, size_t n)
{
    cn_conn_t *c = ctx;
    flush(c);
    return cn_buf_append(&c->plain_out, p, n);
}

static void ws_on_activity(void *ctx)
{
    cn_conn_t *c = ctx;
    c->last_activity_ms = cn__loop_now(c->loop);
}

static const cn_ws_callbacks_t ws_callbacks = {
    .on_message = ws_on_message,
    .on_output = ws_on_output,
    .on_activity = ws_on_activity,
};

static void http_fail(cn_conn_t *c, int status, const char *body)
{
    cn_buf_t resp;
    cn_buf_init(&resp);
    /* Best effort: the connection closes after the flush either way. */
    if (cn_http_write_response(&resp, status, "text/plain", body, strlen(body)) == 0 &&
        cn_tls_write(c->tls, resp.data, resp.len) < 0)
        cn_log_debug("http_fail_unsent", "conn=%llu", (unsigned long long)c->id);
    cn_buf_dispose(&resp);
    count(&srv(c)->counters.handshakes_failed, 1);
    c->state = CN_CONN_CLOSING;
    c->close_after_flush = true;
    flush(c);
}

/* HTTP phase: wait for a complete upgrade request, answer 101 or 4xx. */
static void on_http_bytes(cn_conn_t *c)
{
    cn_http_request_t req;
    int status = 400;
    cn_slice_t in = cn_buf_unread(&c->plain_in);
    int rc = cn_http_request_parse(in.base, in.len, true, &req, &status);
    if (rc == CN_EAGAIN)
        return;
    if (rc < 0) {
        http_fail(c, status, "a WebSocket upgrade is required\n");
        return;
    }
    if (strcmp(req.path, "/ws") != 0 && strcmp(req.path, "/") != 0) {
        http_fail(c, 404, "unknown path\n");
        return;
    }
    cn_buf_t resp;
    cn_buf_init(&resp);
    rc = cn_http_write_upgrade(&resp, &req);
    if (rc == 0)
        rc = cn_tls_write(c->tls, resp.data, resp.len);
    cn_buf_dispose(&resp);
    c->ws = rc == 0 ? cn_ws_new(&ws_callbacks, c, CN_WS_MESSAGE_MAX) : NULL;
    if (!c->ws) {
        cn__conn_abort(c, "upgrade failed");
        return;
    }
    cn_buf_consume(&c->plain_in, req.consumed);
    c->state = CN_CONN_UNAUTH;
    c->ws_opened_ms = c->last_activity_ms = cn__loop_now(c->loop);
    cn__auth_send_challenge(c);
    cn__conn_arm_timer(c);
}

static void on_plaintext(cn_conn_t *c)
{
    if (c->state == CN_CONN_HTTP)
        on_http_bytes(c);
    if ((c->state == CN_CONN_UNAUTH || c->state == CN_CONN_AUTHED || c->state == CN_CONN_CLOSING) &&
        c->ws) {
        cn_slice_t in = cn_buf_unread(&c->plain_in);
        if (in.len) {
            /* plain_in is ours: complete frames are unmasked in place. */
            int rc = cn_ws_feed_inplace(c->ws, in.base, in.len);
            cn_buf_consume(&c->plain_in, in.len);
            /* Any non-OK: the session already queued its close frame (1002,
             * 1003, 1009, or the echo of the peer's close); flush and close. */
            if (rc == CN_EPROTO)
                count(&srv(c)->counters.protocol_errors, 1);
            if (rc < 0 && c->state != CN_CONN_CLOSED) {
                leave_registry(c);
                c->state = CN_CONN_CLOSING;
                c->close_after_flush = true;
            }
        }
        if (c->state != CN_CONN_CLOSED && cn_ws_closed(c->ws)) {
            leave_registry(c);
            c->state = CN_CONN_CLOSING;
            c->close_after_flush = true;
        }
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)t_readbuf, sizeof(t_readbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cn_conn_t *c = s->data;
    if (nread == 0 || c->state == CN_CONN_CLOSED)
        return;
    if (nread < 0 || c->lingering) { /* a lingering close drops input */
        if (nread < 0)
            close_now(c);
        return;
    }
    count(&srv(c)->counters.bytes_in, (uint64_t)nread);
    c->io_recent = true;
    c->loop->event_ns = cn_mono_ns(); /* the requests of this read arrived now */
    int rc = cn_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread, &c->plain_in);
    if (rc < 0 && rc != CN_ECLOSED) { /* a TLS failure, or no memory for the plaintext */
        count(&srv(c)->counters.handshakes_failed, c->state == CN_CONN_TLS);
        flush_now(c); /* the alert, if any, before we drop it */
        close_now(c);
        return;
    }
    if (c->state == CN_CONN_TLS && cn_tls_handshake_done(c->tls))
        c->state = CN_CONN_HTTP;
    if (c->state == CN_CONN_HTTP && c->plain_in.len - c->plain_in.rpos > CN_HTTP_HEADER_MAX + 4) {
        http_fail(c, 431, "request header too large\n");
        return;
    }
    on_plaintext(c);
    if (rc == CN_ECLOSED && c->state != CN_CONN_CLOSED)
        c->close_after_flush = true;
    flush(c);
    if (c->state != CN_CONN_CLOSED && c->reading && (!cn__conn_may_read(c) || loop_full(c->loop))) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        if (c->pending_ops >= CN_CONN_PENDING_MAX)
            count(&srv(c)->counters.read_pauses, 1);
        else if (cn__conn_may_read(c))
            wait_for_loop(c); /* only the loop's limit holds it */
    }
}

void cn__conn_read_resume(cn_conn_t *c)
{
    if (c->reading || c->state == CN_CONN_CLOSED || !cn__conn_may_read(c))
        return;
    if (loop_full(c->loop)) {
        wait_for_loop(c);
    } else {
        unwait(c);
        cn__conn_read_start(c);
    }
}

void cn__conn_read_start(cn_conn_t *c)
{
    if (c->state == CN_CONN_CLOSED || c->reading || c->loop->paused)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
        c->reading = true;
}

/* ------------------------------------------------------------ timers */

static uint64_t next_deadline(const cn_conn_t *c)
{
    const cn_node_config_t *cfg = &srv(c)->cfg;
    switch (c->state) {
    case CN_CONN_TLS:
    case CN_CONN_HTTP:
        return c->opened_ms + cfg->handshake_timeout_ms;
    case CN_CONN_UNAUTH:
        if (c->link_expires) /* waiting for a person to approve the link */
            return CN_MIN(c->link_expires, c->last_activity_ms + cfg->idle_timeout_ms);
        return CN_MIN(c->ws_opened_ms + cfg->auth_timeout_ms,
                      c->last_activity_ms + cfg->idle_timeout_ms);
    case CN_CONN_AUTHED: {
        uint64_t idle = c->last_activity_ms + cfg->idle_timeout_ms;
        uint64_t ping = CN_MAX(c->last_activity_ms, c->last_ping_ms) + cfg->ping_interval_ms;
        return CN_MIN(idle, ping);
    }
    case CN_CONN_CLOSING: /* a peer that never finishes the close */
        return c->lingering ? c->linger_until_ms : cn__loop_now(c->loop) + 5000;
    case CN_CONN_CLOSED:
        break;
    }
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    cn_conn_t *c = t->data;
    const cn_node_config_t *cfg = &srv(c)->cfg;
    uint64_t now = cn__loop_now(c->loop);
    switch (c->state) {
    case CN_CONN_TLS:
    case CN_CONN_HTTP:
        if (now >= c->opened_ms + cfg->handshake_timeout_ms) {
            count(&srv(c)->counters.timeouts, 1);
            cn__conn_abort(c, "handshake timeout");
            return;
        }
        break;
    case CN_CONN_UNAUTH:
        if (now >= (c->link_expires ? c->link_expires : c->ws_opened_ms + cfg->auth_timeout_ms)) {
            count(&srv(c)->counters.timeouts, 1);
            cn__conn_close(c, CN_WS_CLOSE_POLICY, "authentication timeout");
            return;
        }
        /* idle rules apply before auth too */
        __attribute__((fallthrough));
    case CN_CONN_AUTHED:
        if (now >= c->last_activity_ms + cfg->idle_timeout_ms) {
            count(&srv(c)->counters.timeouts, 1);
            cn__conn_close(c, CN_WS_CLOSE_GOING_AWAY, "idle timeout");
            return;
        }
        if (now >= CN_MAX(c->last_activity_ms, c->last_ping_ms) + cfg->ping_interval_ms) {
            c->last_ping_ms = now;
            if (cn_ws_ping(c->ws) == 0)
                flush(c);
        }
        break;
    case CN_CONN_CLOSING:
        cn__conn_abort(c, "close handshake timeout");
        return;
    case CN_CONN_CLOSED:
        return;
    }
    if (c->state != CN_CONN_CLOSED)
        cn__conn_arm_timer(c);
}

void cn__conn_arm_timer(cn_conn_t *c)
{
    uint64_t now = cn__loop_now(c->loop);
    uint64_t due = next_deadline(c);
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

/* ------------------------------------------------------------ accept */

void cn__conn_accept(cn_loop_t *loop)
{
    cn_server_t *s = loop->server;
    cn_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->loop = loop;
    c->id = atomic_fetch_add(&s->next_conn_id, 1) + 1;
    c->state = CN_CONN_TLS;
    uv_tcp_init(&loop->uv, &c->tcp);
    uv_timer_init(&loop->uv, &c->timer);
    c->tcp.data = c->timer.data = c;
    cn__loop_conn_add(loop, c);
    count(&s->counters.connections_open, 1);
    if (uv_accept((uv_stream_t *)&loop->listener, (uv_stream_t *)&c->tcp) != 0) {
        close_now(c);
        return;
    }
    count(&s->counters.connections_accepted, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48] = "?";
        uv_ip_name((struct sockaddr *)&ss, ip, sizeof(ip));
        int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
        if (ss.ss_family == AF_INET6) {
            memcpy(c->ip, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        } else {
            c->ip[10] = c->ip[11] = 0xff; /* ::ffff:a.b.c.d */
            memcpy(c->ip + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        }
    }
    uint64_t open = atomic_load(&s->counters.connections_open);
    c->tls = cn_tls_new(s->tls, &c->out);
    uint32_t retry;
    bool limited = cn__rl_take(s->rl, CN_RL_CONNECT, c->ip, sizeof(c->ip), NULL, 1,
                               cn__loop_now(loop), &retry) != CN_OK;
    if (!c->tls || loop->draining || open > s->cfg.max_connections || limited) {
        count(&s->counters.connections_rejected, 1);
        close_now(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->opened_ms = c->last_activity_ms = cn__loop_now(loop);
    cn__conn_read_start(c);
    cn__conn_arm_timer(c);
}
