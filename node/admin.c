/*
 * The admin socket (DESIGN section 7): a Unix socket, mode 0600, served by
 * the control loop. Frames are a u32be length and one CBOR request
 * (proto/cn_proto.h); each gets one CBOR response. The socket's file mode
 * is the operator boundary, so commands are not authenticated further.
 */
#include "node/node_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct admin_conn {
    uv_pipe_t pipe;
    cn_server_t *server;
    cn_buf_t in;
    bool closing;
} admin_conn_t;

typedef struct admin_write {
    uv_write_t req;
    cn_buf_t buf;
} admin_write_t;

static void on_closed(uv_handle_t *h)
{
    admin_conn_t *a = h->data;
    cn_buf_dispose(&a->in);
    free(a);
}

static void admin_close(admin_conn_t *a)
{
    if (!a->closing) {
        a->closing = true;
        uv_close((uv_handle_t *)&a->pipe, on_closed);
    }
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    admin_write_t *w = (admin_write_t *)req;
    cn_buf_dispose(&w->buf);
    free(w);
}

static void reply(admin_conn_t *a, const cn_admin_msg_t *resp)
{
    admin_write_t *w = calloc(1, sizeof(*w));
    if (!w) {
        admin_close(a);
        return;
    }
    cn_buf_init(&w->buf);
    if (cn_buf_put_u32be(&w->buf, 0) < 0 || cn_admin_response_encode(resp, &w->buf) < 0) {
        on_written(&w->req, 0);
        admin_close(a);
        return;
    }
    cn_store_u32be(w->buf.data, (uint32_t)(w->buf.len - 4));
    uv_buf_t b = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
    if (uv_write(&w->req, (uv_stream_t *)&a->pipe, &b, 1, on_written) < 0) {
        on_written(&w->req, 0);
        admin_close(a);
    }
}

/* Handles every complete frame in a->in. */
static void process(admin_conn_t *a)
{
    for (;;) {
        cn_slice_t in = cn_buf_unread(&a->in);
        if (in.len < 4)
            return;
        uint32_t len = cn_load_u32be(in.base);
        if (len > CN_ADMIN_FRAME_MAX) {
            admin_close(a);
            return;
        }
        if (in.len < 4 + (size_t)len)
            return;
        cn_admin_msg_t req, resp;
        cn_admin_msg_init(&req);
        cn_admin_msg_init(&resp);
        if (cn_admin_request_decode(in.base + 4, len, &req) < 0)
            cn__admin_fail(&resp, CN_ADMIN_USAGE, "malformed request");
        else
            cn__admin_execute(a->server, &req, &resp);
        reply(a, &resp);
        cn_admin_msg_dispose(&req);
        cn_admin_msg_dispose(&resp);
        cn_buf_consume(&a->in, 4 + (size_t)len);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    admin_conn_t *a = h->data;
    if (cn_buf_reserve(&a->in, 16384) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)a->in.data + a->in.len, 16384);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    admin_conn_t *a = st->data;
    if (nread < 0) {
        admin_close(a);
        return;
    }
    a->in.len += (size_t)nread;
    process(a);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    admin_conn_t *a = calloc(1, sizeof(*a));
    if (!a)
        return;
    a->server = server->data;
    uv_pipe_init(server->loop, &a->pipe, 0);
    a->pipe.data = a;
    if (uv_accept(server, (uv_stream_t *)&a->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&a->pipe, alloc_cb, read_cb) != 0)
        admin_close(a);
}

int cn__admin_start(cn_server_t *s, uv_loop_t *loop, uv_pipe_t *listener)
{
    const char *path = s->cfg.admin_socket;
    unlink(path); /* a stale socket of a previous run */
    uv_pipe_init(loop, listener, 0);
    listener->data = s;
    mode_t old = umask(0177); /* the socket is created 0600 */
    int rc = uv_pipe_bind(listener, path);
    umask(old);
    if (rc == 0)
        rc = chmod(path, 0600) == 0 ? 0 : UV_EPERM;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)listener, 16, on_connection);
    if (rc != 0) {
        cn_log_error("admin_listen_failed", "path=%s error=%s", path, uv_strerror(rc));
        return CN_EIO;
    }
    cn_log_info("admin_listening", "path=%s", path);
    return CN_OK;
}
