/*
 * An I/O loop: a libuv loop on its own thread that owns a SO_REUSEPORT
 * listener, its connections, and an inbox other threads post to.
 */
#include "node/node_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cn_msg_t *cn__msg_new(enum cn_msg_type type, size_t len)
{
    cn_msg_t *m = malloc(sizeof(*m) + len);
    if (!m)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->len = len;
    return m;
}

void cn__loop_post(cn_loop_t *loop, cn_msg_t *msg)
{
    msg->next = NULL;
    uv_mutex_lock(&loop->inbox_lock);
    if (loop->inbox_tail)
        loop->inbox_tail->next = msg;
    else
        loop->inbox_head = msg;
    loop->inbox_tail = msg;
    uv_mutex_unlock(&loop->inbox_lock);
    uv_async_send(&loop->wakeup);
}

static void on_drain_conn(cn_conn_t *c)
{
    cn__conn_read_start(c); /* to complete the close handshakes */
    if (c->state == CN_CONN_UNAUTH || c->state == CN_CONN_AUTHED) {
        Chat__GoingAway ga;
        chat__going_away__init(&ga);
        ga.reason = cn__pb_str("node shutting down");
        ga.reconnect_after_ms = 1000;
        Chat__ServerFrame f;
        chat__server_frame__init(&f);
        f.body_case = CHAT__SERVER_FRAME__BODY_GOING_AWAY;
        f.going_away = &ga;
        cn__conn_send_frame(c, &f);
        cn__conn_close(c, CN_WS_CLOSE_GOING_AWAY, "shutting down");
    } else if (c->state != CN_CONN_CLOSED) {
        cn__conn_abort(c, "shutting down");
    }
}

static void pause_conn(cn_conn_t *c)
{
    if (c->reading && c->state != CN_CONN_CLOSED) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void for_each_conn(cn_loop_t *loop, void (*fn)(cn_conn_t *))
{
    for (size_t i = 0; i < loop->nbuckets; i++) {
        cn_conn_t *c = loop->buckets[i];
        while (c) {
            cn_conn_t *next = c->hnext; /* fn may unlink c */
            fn(c);
            c = next;
        }
    }
}

static void close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

static void stop_listening(cn_loop_t *loop)
{
    if (loop->listening) {
        loop->listening = false;
        uv_close((uv_handle_t *)&loop->listener, close_cb_noop);
    }
}

static void abort_conn(cn_conn_t *c)
{
    cn__conn_abort(c, "node stopped");
}

static void handle_msg(cn_loop_t *loop, cn_msg_t *m)
{
    cn_conn_t *c = m->conn_id ? cn__loop_conn_find(loop, m->conn_id) : NULL;
    switch (m->type) {
    case CN_MSG_STORE_DONE:
        cn__pending_finish(loop, m->ptr); /* m lives in the pending's block */
        return;
    case CN_MSG_DELIVER:
        if (c && c->state == CN_CONN_AUTHED)
            cn__delivery_on_msg(c, m);
        break;
    case CN_MSG_PUSH:
        if (c && c->state == CN_CONN_AUTHED)
            cn__conn_send_bytes(c, m->data, m->len);
        break;
    case CN_MSG_LINKED:
        if (c)
            cn__link_completed(c, m->data, m->len);
        break;
    case CN_MSG_KICK:
        if (c)
            cn__conn_close(c, CN_WS_CLOSE_POLICY, (const char *)m->data);
        break;
    case CN_MSG_DRAIN:
        loop->draining = true;
        loop->paused = true;
        stop_listening(loop);
        for_each_conn(loop, pause_conn);
        break;
    case CN_MSG_GOAWAY:
        loop->paused = false;
        for_each_conn(loop, on_drain_conn);
        break;
    case CN_MSG_STOP:
        loop->stopping = true;
        stop_listening(loop);
        for_each_conn(loop, abort_conn);
        uv_close((uv_handle_t *)&loop->wakeup, close_cb_noop);
        uv_close((uv_handle_t *)&loop->flusher, close_cb_noop);
        uv_close((uv_handle_t *)&loop->sweeper, close_cb_noop);
        break;
    }
    free(m);
}

static void on_wakeup(uv_async_t *a)
{
    cn_loop_t *loop = a->data;
    loop->event_ns = cn_mono_ns(); /* the completions and deliveries below happen now */
    uv_mutex_lock(&loop->inbox_lock);
    cn_msg_t *m = loop->inbox_head;
    loop->inbox_head = loop->inbox_tail = NULL;
    uv_mutex_unlock(&loop->inbox_lock);
    while (m) {
        cn_msg_t *next = m->next;
        handle_msg(loop, m);
        m = next;
    }
}

static void on_prepare(uv_prepare_t *h)
{
    cn__loop_flush_dirty(h->data);
}

static void on_sweep(uv_timer_t *t)
{
    for_each_conn(t->data, cn__conn_sweep_buffers);
    cn__pending_pool_trim();
}

static void on_connection(uv_stream_t *server, int status)
{
    cn_loop_t *loop = server->data;
    if (status < 0) {
        cn_log_warn("accept_failed", "loop=%u error=%s", loop->index, uv_strerror(status));
        return;
    }
    cn__conn_accept(loop);
}

int cn__loop_init(cn_loop_t *loop, cn_server_t *server, unsigned index, int fd)
{
    memset(loop, 0, sizeof(*loop));
    loop->server = server;
    loop->index = index;
    loop->event_ns = cn_mono_ns();
    loop->nbuckets = 4096;
    loop->buckets = calloc(loop->nbuckets, sizeof(cn_conn_t *));
    CN_ENSURE(loop->buckets != NULL, CN_ENOMEM);
    CN_ENSURE(uv_loop_init(&loop->uv) == 0, CN_EINTERNAL);
    CN_ENSURE(uv_mutex_init(&loop->inbox_lock) == 0, CN_EINTERNAL);
    CN_ENSURE(uv_async_init(&loop->uv, &loop->wakeup, on_wakeup) == 0, CN_EINTERNAL);
    loop->wakeup.data = loop;
    CN_ENSURE(uv_prepare_init(&loop->uv, &loop->flusher) == 0, CN_EINTERNAL);
    loop->flusher.data = loop;
    uv_prepare_start(&loop->flusher, on_prepare);
    CN_ENSURE(uv_timer_init(&loop->uv, &loop->sweeper) == 0, CN_EINTERNAL);
    loop->sweeper.data = loop;
    uv_timer_start(&loop->sweeper, on_sweep, CN_BUFFER_SWEEP_MS, CN_BUFFER_SWEEP_MS);
    CN_ENSURE(uv_tcp_init(&loop->uv, &loop->listener) == 0, CN_EINTERNAL);
    loop->listener.data = loop;
    int rc = uv_tcp_open(&loop->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&loop->listener, 1024, on_connection);
    if (rc != 0) {
        cn_log_error("listen_failed", "loop=%u error=%s", index, uv_strerror(rc));
        return CN_EIO;
    }
    loop->listening = true;
    return CN_OK;
}

static void loop_thread(void *arg)
{
    cn_loop_t *loop = arg;
    char name[16];
    snprintf(name, sizeof(name), "cn-loop%u", loop->index);
    cn_thread_name(name);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    cn__conn_thread_exit();
    cn__dispatch_thread_exit();
}

int cn__loop_start(cn_loop_t *loop)
{
    CN_ENSURE(uv_thread_create(&loop->thread, loop_thread, loop) == 0, CN_EINTERNAL);
    return CN_OK;
}

void cn__loop_join(cn_loop_t *loop)
{
    uv_thread_join(&loop->thread);
    /* Drop whatever was posted after the loop stopped. */
    cn_msg_t *m = loop->inbox_head;
    while (m) {
        cn_msg_t *next = m->next;
        if (m->type == CN_MSG_STORE_DONE)
            cn__pending_discard(m->ptr); /* m lives in the pending's block */
        else
            free(m);
        m = next;
    }
    loop->inbox_head = loop->inbox_tail = NULL;
    int rc = uv_loop_close(&loop->uv);
    if (rc != 0)
        cn_log_warn("loop_close_busy", "loop=%u error=%s", loop->index, uv_strerror(rc));
    uv_mutex_destroy(&loop->inbox_lock);
    free(loop->buckets);
    loop->buckets = NULL;
}

void cn__loop_conn_add(cn_loop_t *loop, cn_conn_t *c)
{
    size_t b = c->id % loop->nbuckets;
    c->hnext = loop->buckets[b];
    loop->buckets[b] = c;
    loop->nconns++;
}

void cn__loop_conn_remove(cn_loop_t *loop, cn_conn_t *c)
{
    cn_conn_t **pp = &loop->buckets[c->id % loop->nbuckets];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = c->hnext;
        loop->nconns--;
    }
}

cn_conn_t *cn__loop_conn_find(cn_loop_t *loop, uint64_t id)
{
    cn_conn_t *c = loop->buckets[id % loop->nbuckets];
    while (c && c->id != id)
        c = c->hnext;
    return c;
}
