/*
 * The client connection: a non-blocking TCP socket driven with poll()
 * deadlines, OpenSSL (TLS 1.3 only) over the socket fd, the HTTP/1.1
 * upgrade of RFC 6455 section 4.1, and wslay's event API in client mode.
 * Every received binary message is unpacked into a ServerFrame and queued.
 */
#include "client/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define HTTP_RESPONSE_MAX 8192
#define WS_KEY_RAW        16
#define WS_RECV_MAX       (2u * 1024u * 1024u) /* one ServerFrame, reassembled */
#define FRAME_QUEUE_MAX   4096
/* RFC 6455 section 1.3: the GUID appended to the key for Sec-WebSocket-Accept. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct cn__conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    wslay_event_context_ptr ws;
    cn_buf_t pre; /* bytes read past the HTTP response, for wslay */
    Chat__ServerFrame **q;
    size_t qhead, qlen, qcap;
    bool closed;
};

/* ------------------------------------------------------------------- TCP */

static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = cn__now_ms();
        CN_ENSURE(now < deadline_ms, CN_ETIMEDOUT);
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)CN_MIN(deadline_ms - now, 60000u));
        if (r < 0 && errno == EINTR)
            continue;
        CN_ENSURE(r >= 0, CN_EIO);
        if (r > 0)
            return CN_OK;
    }
}

static int tcp_try(const struct addrinfo *ai, uint64_t deadline_ms, int *out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    CN_ENSURE(fd >= 0, CN_EIO);
    int rc = CN_OK;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        CN_ENSURE_OUT(errno == EINPROGRESS, CN_ECLOSED);
        CN_TRY_OUT(wait_fd(fd, POLLOUT, deadline_ms));
        int err = 0;
        socklen_t len = sizeof(err);
        CN_ENSURE_OUT(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
                      CN_ECLOSED);
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
out:
    if (rc < 0)
        close(fd);
    else
        *out = fd;
    return rc;
}

static int tcp_connect(const cn_client_url_t *url, uint64_t deadline_ms, int *out)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", url->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    CN_ENSURE(getaddrinfo(url->host, port, &hints, &res) == 0, CN_ECLOSED);
    int rc = CN_ECLOSED;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = tcp_try(ai, deadline_ms, out);
        if (rc == CN_OK || rc == CN_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

/* ------------------------------------------------------------------- TLS */

static int tls_setup(cn__conn_t *c, const cn_client_url_t *url, const cn__tls_opts_t *tls)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    CN_ENSURE(c->ctx != NULL, CN_ENOMEM);
    CN_ENSURE(SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION) == 1, CN_EINTERNAL);
    if (tls->insecure) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    } else {
        int ok = tls->ca_file ? SSL_CTX_load_verify_locations(c->ctx, tls->ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(c->ctx);
        if (ok != 1) {
            cn_log_error("client.tls_ca", "file=%s", tls->ca_file ? tls->ca_file : "(default)");
            return CN_EINVAL;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    c->ssl = SSL_new(c->ctx);
    CN_ENSURE(c->ssl != NULL, CN_ENOMEM);
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    CN_ENSURE(SSL_set_fd(c->ssl, c->fd) == 1, CN_EINTERNAL);
    if (!url->host_is_ip)
        CN_ENSURE(SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                           cn__str_mut(url->host)) == 1,
                  CN_EINTERNAL);
    if (!tls->insecure) {
        int ok = url->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), url->host)
                                 : SSL_set1_host(c->ssl, url->host);
        CN_ENSURE(ok == 1, CN_EINTERNAL);
    }
    return CN_OK;
}

/* Maps an SSL result: CN_OK, a poll direction to wait for, or an error. */
static int tls_want(cn__conn_t *c, int r, short *events)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        *events = POLLIN;
        return CN_EAGAIN;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *events = POLLOUT;
        return CN_EAGAIN;
    }
    ERR_clear_error();
    return CN_ECLOSED;
}

static int tls_handshake(cn__conn_t *c, uint64_t deadline_ms)
{
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return CN_OK;
        short ev = 0;
        int rc = tls_want(c, r, &ev);
        if (rc != CN_EAGAIN) {
            long v = SSL_get_verify_result(c->ssl);
            if (v != X509_V_OK) {
                cn_log_error("client.tls_verify", "error=\"%s\"", X509_verify_cert_error_string(v));
                return CN_EAUTH;
            }
            return rc;
        }
        CN_TRY(wait_fd(c->fd, ev, deadline_ms));
    }
}

/* Writes all of p over TLS before the deadline (used for the upgrade). */
static int tls_write_all(cn__conn_t *c, const void *p, size_t n, uint64_t deadline_ms)
{
    const uint8_t *b = p;
    while (n > 0) {
        int r = SSL_write(c->ssl, b, (int)CN_MIN(n, (size_t)INT32_MAX));
        if (r > 0) {
            b += r;
            n -= (size_t)r;
            continue;
        }
        short ev = 0;
        CN_TRY(tls_want(c, r, &ev) == CN_EAGAIN ? CN_OK : CN_ECLOSED);
        CN_TRY(wait_fd(c->fd, ev, deadline_ms));
    }
    return CN_OK;
}

/* ------------------------------------------------------ WebSocket upgrade */

static int ws_accept_for(const char *key, char out[64])
{
    char cat[128];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    CN_ENSURE(n > 0 && (size_t)n < sizeof(cat), CN_EINTERNAL);
    CN_ENSURE(EVP_Digest(cat, (size_t)n, digest, &dlen, EVP_sha1(), NULL) == 1, CN_EINTERNAL);
    sodium_bin2base64(out, 64, digest, dlen, sodium_base64_VARIANT_ORIGINAL);
    return CN_OK;
}

/* Finds header name (case-insensitive) in the response head; copies its value. */
static bool http_header(const char *head, const char *name, char *val, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l != NULL; l = strstr(l, "\r\n")) {
        l += 2;
        if (strncasecmp(l, name, nlen) != 0 || l[nlen] != ':')
            continue;
        const char *v = l + nlen + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\r\n");
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        if (len >= cap)
            return false;
        memcpy(val, v, len);
        val[len] = '\0';
        return true;
    }
    return false;
}

/* True when the comma-separated header value v lists token (any case). */
static bool has_token(const char *v, const char *token)
{
    size_t tlen = strlen(token);
    while (*v != '\0') {
        while (*v == ' ' || *v == ',' || *v == '\t')
            v++;
        size_t len = strcspn(v, ",");
        size_t end = len;
        while (end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end == tlen && strncasecmp(v, token, tlen) == 0)
            return true;
        v += len;
    }
    return false;
}

static int http_check_101(const char *head, const char *want_accept)
{
    char v[128];
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        cn_log_error("client.upgrade", "status=\"%.*s\"", (int)strcspn(head, "\r\n"), head);
        return CN_EPROTO;
    }
    CN_ENSURE(http_header(head, "Upgrade", v, sizeof(v)) && strcasecmp(v, "websocket") == 0,
              CN_EPROTO);
    CN_ENSURE(http_header(head, "Connection", v, sizeof(v)) && has_token(v, "upgrade"), CN_EPROTO);
    CN_ENSURE(http_header(head, "Sec-WebSocket-Accept", v, sizeof(v)) &&
                  strcmp(v, want_accept) == 0,
              CN_EPROTO);
    return CN_OK;
}

/* Reads the HTTP response head; bytes after it stay in c->pre for wslay. */
static int http_read_head(cn__conn_t *c, cn_buf_t *head, uint64_t deadline_ms)
{
    for (;;) {
        CN_TRY(cn_buf_reserve(head, 1024));
        int r = SSL_read(c->ssl, head->data + head->len, (int)(head->cap - head->len - 1));
        if (r <= 0) {
            short ev = 0;
            CN_TRY(tls_want(c, r, &ev) == CN_EAGAIN ? CN_OK : CN_ECLOSED);
            CN_TRY(wait_fd(c->fd, ev, deadline_ms));
            continue;
        }
        head->len += (size_t)r;
        head->data[head->len] = '\0';
        char *end = strstr((char *)head->data, "\r\n\r\n");
        if (end != NULL) {
            size_t hlen = (size_t)(end - (char *)head->data) + 4;
            CN_TRY(cn_buf_append(&c->pre, head->data + hlen, head->len - hlen));
            head->data[hlen] = '\0';
            return CN_OK;
        }
        CN_ENSURE(head->len < HTTP_RESPONSE_MAX, CN_EPROTO);
    }
}

static int ws_upgrade(cn__conn_t *c, const cn_client_url_t *url, uint64_t deadline_ms)
{
    int rc = CN_OK;
    uint8_t raw[WS_KEY_RAW];
    char key[32], accept[64];
    cn_buf_t req, head;
    cn_buf_init(&req);
    cn_buf_init(&head);
    cn_random(raw, sizeof(raw));
    sodium_bin2base64(key, sizeof(key), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
    CN_TRY_OUT(ws_accept_for(key, accept));
    bool v6 = strchr(url->host, ':') != NULL;
    CN_TRY_OUT(cn_buf_printf(&req,
                             "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                             "Sec-WebSocket-Version: 13\r\nUser-Agent: chatclient/0.1\r\n\r\n",
                             url->path, v6 ? "[" : "", url->host, v6 ? "]" : "", url->port, key));
    CN_TRY_OUT(tls_write_all(c, req.data, req.len, deadline_ms));
    CN_TRY_OUT(http_read_head(c, &head, deadline_ms));
    CN_TRY_OUT(http_check_101((const char *)head.data, accept));
out:
    cn_buf_dispose(&req);
    cn_buf_dispose(&head);
    return rc;
}

/* ------------------------------------------------------------- wslay glue */

static ssize_t ws_recv_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    cn__conn_t *c = ud;
    cn_slice_t pre = cn_buf_unread(&c->pre);
    if (pre.len > 0) {
        size_t n = CN_MIN(len, pre.len);
        memcpy(buf, pre.base, n);
        cn_buf_consume(&c->pre, n);
        return (ssize_t)n;
    }
    int r = SSL_read(c->ssl, buf, (int)CN_MIN(len, (size_t)INT32_MAX));
    if (r > 0)
        return r;
    short ev = 0;
    if (tls_want(c, r, &ev) == CN_EAGAIN) {
        wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
    } else {
        c->closed = true;
        wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ws, const uint8_t *data, size_t len, int flags,
                          void *ud)
{
    (void)flags;
    cn__conn_t *c = ud;
    int r = SSL_write(c->ssl, data, (int)CN_MIN(len, (size_t)INT32_MAX));
    if (r > 0)
        return r;
    short ev = 0;
    if (tls_want(c, r, &ev) == CN_EAGAIN) {
        wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
    } else {
        c->closed = true;
        wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

/* RFC 6455 section 5.3: a fresh unpredictable mask for every client frame. */
static int ws_genmask_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len, void *ud)
{
    (void)ws;
    (void)ud;
    cn_random(buf, len);
    return 0;
}

static void ws_msg_cb(wslay_event_context_ptr ws, const struct wslay_event_on_msg_recv_arg *arg,
                      void *ud)
{
    (void)ws;
    cn__conn_t *c = ud;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        c->closed = true;
        return;
    }
    if (wslay_is_ctrl_frame(arg->opcode))
        return; /* wslay answers pings itself */
    Chat__ServerFrame *f = NULL;
    if (arg->opcode == WSLAY_BINARY_FRAME)
        f = chat__server_frame__unpack(NULL, arg->msg_length, arg->msg);
    if (f == NULL || c->qlen >= FRAME_QUEUE_MAX) {
        /* Text frames, undecodable frames and floods end the connection. */
        cn_log_warn("client.bad_frame", "opcode=%u len=%zu", arg->opcode, arg->msg_length);
        if (f != NULL)
            chat__server_frame__free_unpacked(f, NULL);
        c->closed = true;
        return;
    }
    if (c->qhead + c->qlen == c->qcap) {
        if (c->qhead > 0) {
            memmove(c->q, c->q + c->qhead, c->qlen * sizeof(*c->q));
            c->qhead = 0;
        } else {
            size_t cap = c->qcap ? c->qcap * 2 : 16;
            Chat__ServerFrame **q = realloc(c->q, cap * sizeof(*q));
            if (q == NULL) {
                chat__server_frame__free_unpacked(f, NULL);
                c->closed = true;
                return;
            }
            c->q = q;
            c->qcap = cap;
        }
    }
    c->q[c->qhead + c->qlen++] = f;
}

static int ws_setup(cn__conn_t *c)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv_cb,
        .send_callback = ws_send_cb,
        .genmask_callback = ws_genmask_cb,
        .on_msg_recv_callback = ws_msg_cb,
    };
    CN_ENSURE(wslay_event_context_client_init(&c->ws, &cbs, c) == 0, CN_ENOMEM);
    wslay_event_config_set_max_recv_msg_length(c->ws, WS_RECV_MAX);
    return CN_OK;
}

/* ------------------------------------------------------------ public API */

int cn__conn_open(const cn_client_url_t *url, const cn__tls_opts_t *tls, uint64_t deadline_ms,
                  cn__conn_t **out)
{
    int rc = CN_OK;
    cn__conn_t *c = calloc(1, sizeof(*c));
    CN_ENSURE(c != NULL, CN_ENOMEM);
    c->fd = -1;
    cn_buf_init(&c->pre);
    CN_TRY_OUT(tcp_connect(url, deadline_ms, &c->fd));
    CN_TRY_OUT(tls_setup(c, url, tls));
    CN_TRY_OUT(tls_handshake(c, deadline_ms));
    CN_TRY_OUT(ws_upgrade(c, url, deadline_ms));
    CN_TRY_OUT(ws_setup(c));
out:
    if (rc < 0) {
        cn__conn_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

void cn__conn_free(cn__conn_t *c)
{
    if (c == NULL)
        return;
    if (c->ws != NULL)
        wslay_event_context_free(c->ws);
    if (c->ssl != NULL) {
        if (!c->closed)
            (void)SSL_shutdown(c->ssl); /* best effort close_notify, never waits */
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    for (size_t i = 0; i < c->qlen; i++)
        chat__server_frame__free_unpacked(c->q[c->qhead + i], NULL);
    free(c->q);
    cn_buf_dispose(&c->pre);
    ERR_clear_error();
    free(c);
}

int cn__conn_exporter(cn__conn_t *c, uint8_t out[CN_EXPORTER_LEN])
{
    /* RFC 9266: label EXPORTER-Channel-Binding, no context, 32 bytes. */
    int ok = SSL_export_keying_material(c->ssl, out, CN_EXPORTER_LEN, CN_EXPORTER_LABEL,
                                        strlen(CN_EXPORTER_LABEL), NULL, 0, 0);
    CN_ENSURE(ok == 1, CN_EINTERNAL);
    return CN_OK;
}

/* One round of I/O: reads what is readable, writes what is queued. */
static int pump(cn__conn_t *c, uint64_t deadline_ms)
{
    CN_ENSURE(!c->closed, CN_ECLOSED);
    bool buffered = cn_buf_unread(&c->pre).len > 0 || SSL_pending(c->ssl) > 0;
    short ev = POLLIN;
    if (wslay_event_want_write(c->ws))
        ev |= POLLOUT;
    struct pollfd p = {.fd = c->fd, .events = ev};
    if (!buffered) {
        uint64_t now = cn__now_ms();
        CN_ENSURE(now < deadline_ms, CN_ETIMEDOUT);
        int r = poll(&p, 1, (int)CN_MIN(deadline_ms - now, 1000u));
        CN_ENSURE(r >= 0 || errno == EINTR, CN_EIO);
        if (r <= 0)
            return CN_OK;
    }
    if (buffered || (p.revents & (POLLIN | POLLHUP | POLLERR)))
        if (wslay_event_recv(c->ws) != 0 || !wslay_event_get_read_enabled(c->ws))
            c->closed = true;
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0)
        c->closed = true;
    return CN_OK;
}

int cn__conn_recv(cn__conn_t *c, uint64_t deadline_ms, Chat__ServerFrame **out)
{
    *out = NULL;
    for (;;) {
        if (c->qlen > 0) {
            *out = c->q[c->qhead++];
            if (--c->qlen == 0)
                c->qhead = 0;
            return CN_OK;
        }
        CN_ENSURE(!c->closed, CN_ECLOSED);
        CN_TRY(pump(c, deadline_ms));
    }
}

static int flush_out(cn__conn_t *c, uint64_t deadline_ms)
{
    while (wslay_event_want_write(c->ws)) {
        if (wslay_event_send(c->ws) != 0)
            c->closed = true;
        CN_ENSURE(!c->closed, CN_ECLOSED);
        if (wslay_event_want_write(c->ws))
            CN_TRY(pump(c, deadline_ms));
    }
    return CN_OK;
}

int cn__conn_send(cn__conn_t *c, const Chat__ClientFrame *f, uint64_t deadline_ms)
{
    CN_ENSURE(!c->closed, CN_ECLOSED);
    size_t n = chat__client_frame__get_packed_size(f);
    CN_ENSURE(n <= CN_WS_MESSAGE_MAX, CN_ETOOBIG);
    uint8_t *buf = malloc(n ? n : 1);
    CN_ENSURE(buf != NULL, CN_ENOMEM);
    chat__client_frame__pack(f, buf);
    struct wslay_event_msg msg = {.opcode = WSLAY_BINARY_FRAME, .msg = buf, .msg_length = n};
    int r = wslay_event_queue_msg(c->ws, &msg); /* copies the message */
    free(buf);
    CN_ENSURE(r == 0, CN_ECLOSED);
    return flush_out(c, deadline_ms);
}

int cn__conn_ping(cn__conn_t *c, uint64_t deadline_ms)
{
    CN_ENSURE(!c->closed, CN_ECLOSED);
    struct wslay_event_msg msg = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
    CN_ENSURE(wslay_event_queue_msg(c->ws, &msg) == 0, CN_ECLOSED);
    return flush_out(c, deadline_ms);
}
