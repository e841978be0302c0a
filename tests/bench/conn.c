/*
 * A client connection: libuv TCP bound to a 127.0.0.x source, TLS 1.3 over
 * memory BIOs, the HTTP/1.1 upgrade and RFC 6455 client framing. Output is
 * accumulated as plaintext and encrypted once per loop iteration
 * (bench_flush_all), so a tick that queues several messages on one
 * connection costs one TLS record and one write.
 */
#define _GNU_SOURCE /* memmem */
#include "crypto/cn_crypto.h"
#include "tests/bench/bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define READ_CHUNK (256u * 1024u)

enum { ST_TCP, ST_TLS, ST_UPGRADE, ST_OPEN };

static bench_conn_t *g_dirty;
static unsigned g_open;
static uint64_t g_mask_state = 0x9e3779b97f4a7c15ull;

static uint32_t mask_key(void)
{
    /* xorshift64*: masking keys need not be secret from a benchmark. */
    g_mask_state ^= g_mask_state >> 12;
    g_mask_state ^= g_mask_state << 25;
    g_mask_state ^= g_mask_state >> 27;
    return (uint32_t)((g_mask_state * 0x2545f4914f6cdd1dull) >> 32);
}

unsigned bench_conn_count(void)
{
    return g_open;
}

static void mark_dirty(bench_conn_t *c)
{
    if (!c->dirty && !c->closing) {
        c->dirty = true;
        c->next_dirty = g_dirty;
        g_dirty = c;
    }
}

/* ---------------------------------------------------------------- close */

static void on_closed(uv_handle_t *h)
{
    bench_conn_t *c = h->data;
    SSL_free(c->ssl); /* frees both BIOs */
    cn_buf_dispose(&c->in);
    cn_buf_dispose(&c->out);
    cn_buf_dispose(&c->msg);
    free(c);
}

static void conn_fail(bench_conn_t *c, int err)
{
    if (c->closing)
        return;
    c->closing = true;
    g_open--;
    if (c->cb->on_close)
        c->cb->on_close(c, err);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void bench_conn_close(bench_conn_t *c, bool reset)
{
    if (c->closing)
        return;
    if (reset && c->state != ST_TCP) {
        c->closing = true;
        g_open--;
        if (c->cb->on_close)
            c->cb->on_close(c, 0);
        if (uv_tcp_close_reset(&c->tcp, on_closed) == 0)
            return;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    conn_fail(c, 0);
}

/* ---------------------------------------------------------------- write */

typedef struct wreq {
    uv_write_t req;
    uint8_t data[];
} wreq_t;

static void write_cb(uv_write_t *req, int status)
{
    bench_conn_t *c = req->handle->data;
    free(req);
    if (status < 0 && status != UV_ECANCELED)
        conn_fail(c, status);
}

static void flush(bench_conn_t *c)
{
    if (c->closing)
        return;
    if (c->state >= ST_UPGRADE && c->out.len > c->out.rpos) {
        cn_slice_t un = cn_buf_unread(&c->out);
        if (SSL_write(c->ssl, un.base, (int)un.len) != (int)un.len) {
            conn_fail(c, UV_EPROTO);
            return;
        }
        cn_buf_reset(&c->out);
    }
    size_t n = BIO_ctrl_pending(c->net_out);
    if (n == 0)
        return;
    wreq_t *w = malloc(sizeof(*w) + n);
    if (!w || BIO_read(c->net_out, w->data, (int)n) != (int)n) {
        free(w);
        conn_fail(c, UV_ENOMEM);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)n) {
        free(w);
        return;
    }
    if (r > 0)
        b = uv_buf_init((char *)w->data + r, (unsigned)(n - (size_t)r));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
        free(w);
        conn_fail(c, UV_EPIPE);
    }
}

void bench_flush_all(void)
{
    while (g_dirty) {
        bench_conn_t *c = g_dirty;
        g_dirty = c->next_dirty;
        c->dirty = false;
        flush(c);
    }
}

/* RFC 6455 5.2: a masked client frame header, then the payload masked in place. */
static int ws_append(cn_buf_t *out, uint8_t opcode, const uint8_t *p, size_t n, uint8_t **payload)
{
    if (cn_buf_reserve(out, n + 14) < 0)
        return -1;
    uint8_t *h = out->data + out->len;
    size_t k = 0;
    h[k++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[k++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        h[k++] = 0x80 | 126;
        h[k++] = (uint8_t)(n >> 8);
        h[k++] = (uint8_t)n;
    } else {
        h[k++] = 0x80 | 127;
        cn_store_u64be(h + k, n);
        k += 8;
    }
    uint32_t key = mask_key();
    memcpy(h + k, &key, 4);
    k += 4;
    uint8_t *dst = h + k;
    if (p)
        memcpy(dst, p, n);
    out->len += k + n;
    *payload = dst;
    return 0;
}

static void ws_mask(uint8_t *p, size_t n)
{
    uint8_t km[4];
    memcpy(km, p - 4, 4);
    uint32_t k32;
    memcpy(&k32, km, 4);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t v;
        memcpy(&v, p + i, 4);
        v ^= k32;
        memcpy(p + i, &v, 4);
    }
    for (; i < n; i++)
        p[i] ^= km[i & 3];
}

uint64_t bench_conn_send_pb(bench_conn_t *c, Chat__ClientFrame *f)
{
    if (f->request_id == 0)
        f->request_id = c->next_rid++;
    size_t n = chat__client_frame__get_packed_size(f);
    uint8_t *dst;
    if (ws_append(&c->out, 0x2, NULL, n, &dst) < 0) {
        g_bench.fatal = "out of memory";
        return 0;
    }
    chat__client_frame__pack(f, dst);
    ws_mask(dst, n);
    mark_dirty(c);
    return f->request_id;
}

static void ws_control(bench_conn_t *c, uint8_t opcode, const uint8_t *p, size_t n)
{
    uint8_t *dst;
    if (ws_append(&c->out, opcode, p, n, &dst) == 0)
        ws_mask(dst, n);
    mark_dirty(c);
}

void bench_conn_send_raw(bench_conn_t *c, const void *p, size_t n)
{
    if (cn_buf_append(&c->out, p, n) < 0)
        g_bench.fatal = "out of memory";
    mark_dirty(c);
}

/* ----------------------------------------------------------------- read */

static void send_upgrade(bench_conn_t *c)
{
    uint8_t raw[16];
    cn_random(raw, sizeof(raw));
    char key[32], cat[96];
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned shalen = 0;
    EVP_Digest(cat, strlen(cat), sha, &shalen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)c->accept, sha, (int)shalen);
    if (cn_buf_printf(&c->out,
                      "GET /ws HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n",
                      g_bench.o.sni, g_bench.o.port, key) < 0)
        g_bench.fatal = "out of memory";
    mark_dirty(c);
}

/* Returns 1 when the upgrade answer was consumed, 0 for more bytes, -1 bad. */
static int read_upgrade(bench_conn_t *c)
{
    cn_slice_t un = cn_buf_unread(&c->in);
    const uint8_t *end = un.len >= 4 ? memmem(un.base, un.len, "\r\n\r\n", 4) : NULL;
    if (!end)
        return un.len > 8192 ? -1 : 0;
    size_t head = (size_t)(end - un.base) + 4;
    const char *h = (const char *)un.base;
    bool ok = head > 12 && strncmp(h, "HTTP/1.1 101", 12) == 0 &&
              memmem(h, head, c->accept, strlen(c->accept)) != NULL;
    cn_buf_consume(&c->in, head);
    return ok ? 1 : -1;
}

static void on_message(bench_conn_t *c, const uint8_t *p, size_t n)
{
    bench_frame_t f;
    if (!bench_frame_scan(p, n, &f)) {
        conn_fail(c, UV_EPROTO);
        return;
    }
    if (f.type == CHAT__SERVER_FRAME__BODY_CHALLENGE && c->server_time == 0) {
        if (!bench_challenge_read(c, p, n)) {
            conn_fail(c, UV_EPROTO);
            return;
        }
        c->cb->on_ready(c);
        return;
    }
    c->cb->on_frame(c, &f);
}

/* Parses complete frames from c->in; returns false when c failed. */
static bool read_frames(bench_conn_t *c)
{
    for (;;) {
        cn_slice_t un = cn_buf_unread(&c->in);
        if (un.len < 2)
            return true;
        const uint8_t *b = un.base;
        uint64_t len = b[1] & 0x7f;
        size_t k = 2;
        if (len == 126) {
            if (un.len < 4)
                return true;
            len = (uint64_t)b[2] << 8 | b[3];
            k = 4;
        } else if (len == 127) {
            if (un.len < 10)
                return true;
            len = cn_load_u64be(b + 2);
            k = 10;
        }
        if (b[1] & 0x80 || len > CN_WS_MESSAGE_MAX) {
            conn_fail(c, UV_EPROTO); /* RFC 6455 5.1: servers never mask */
            return false;
        }
        if (un.len - k < len)
            return true;
        const uint8_t *pl = b + k;
        bool fin = b[0] & 0x80;
        uint8_t op = b[0] & 0x0f;
        if (op == 0x9) { /* RFC 6455 5.5.2 */
            ws_control(c, 0xA, pl, (size_t)len);
        } else if (op == 0x8) {
            conn_fail(c, len >= 2 ? (int)(pl[0] << 8 | pl[1]) : 1005);
            return false;
        } else if (op == 0x2 && fin) {
            on_message(c, pl, (size_t)len);
        } else if (op == 0x2 || op == 0x0) {
            if (cn_buf_append(&c->msg, pl, (size_t)len) < 0)
                g_bench.fatal = "out of memory";
            if (fin) {
                on_message(c, c->msg.data, c->msg.len);
                cn_buf_reset(&c->msg);
            }
        }
        if (c->closing)
            return false;
        cn_buf_consume(&c->in, k + (size_t)len);
    }
}

static void tls_ready(bench_conn_t *c)
{
    /* Every connect is a full handshake: the client caches no session and
     * the node sends no tickets; a resumption here would falsify connect. */
    if (SSL_session_reused(c->ssl)) {
        g_bench.fatal = "a handshake was resumed (connect must measure full handshakes)";
        conn_fail(c, UV_EPROTO);
        return;
    }
    if (SSL_export_keying_material(c->ssl, c->exporter, CN_EXPORTER_LEN, CN_EXPORTER_LABEL,
                                   strlen(CN_EXPORTER_LABEL), NULL, 0, 0) != 1) {
        conn_fail(c, UV_EPROTO);
        return;
    }
    c->state = ST_UPGRADE;
    if (c->raw) {
        c->state = ST_OPEN;
        c->cb->on_ready(c);
    } else {
        send_upgrade(c);
    }
}

static void process_input(bench_conn_t *c)
{
    if (c->state == ST_UPGRADE) {
        int r = read_upgrade(c);
        if (r < 0)
            conn_fail(c, UV_EPROTO);
        if (r <= 0)
            return;
        c->state = ST_OPEN;
    }
    if (c->raw)
        c->cb->on_raw(c, &c->in);
    else
        (void)read_frames(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static char chunk[READ_CHUNK];
    *b = uv_buf_init(chunk, sizeof(chunk));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    bench_conn_t *c = s->data;
    if (n < 0) {
        conn_fail(c, (int)n);
        return;
    }
    if (n == 0 || c->closing)
        return;
    BIO_write(c->net_in, b->base, (int)n);
    if (c->state == ST_TLS) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                mark_dirty(c);
            else
                conn_fail(c, UV_EPROTO);
            return;
        }
        tls_ready(c);
        if (c->closing)
            return;
    }
    for (;;) {
        if (cn_buf_reserve(&c->in, 16384) < 0) {
            g_bench.fatal = "out of memory";
            return;
        }
        int r = SSL_read(c->ssl, c->in.data + c->in.len, 16384);
        if (r <= 0)
            break;
        c->in.len += (size_t)r;
    }
    if (BIO_ctrl_pending(c->net_out))
        mark_dirty(c);
    process_input(c);
}

static void connect_cb(uv_connect_t *req, int status)
{
    bench_conn_t *c = req->handle->data;
    if (status < 0) {
        conn_fail(c, status);
        return;
    }
    if (c->closing)
        return;
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = ST_TLS;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl); /* ClientHello into net_out */
    if (r != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
        conn_fail(c, UV_EPROTO);
        return;
    }
    mark_dirty(c);
}

/* ---------------------------------------------------------------- start */

static int bind_source(bench_conn_t *c, unsigned source)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        /* The port is chosen at connect time, per 4-tuple, so every source
         * address has its own ephemeral range towards the one server port. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    }
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (source % 254u));
    return uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
}

bench_conn_t *bench_conn_new(const bench_conn_cbs_t *cb, void *ud, unsigned source, bool raw)
{
    bench_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->cb = cb;
    c->ud = ud;
    c->raw = raw;
    c->next_rid = 1;
    c->t_start = bench_now_ns();
    cn_buf_init(&c->in);
    cn_buf_init(&c->out);
    cn_buf_init(&c->msg);
    if (uv_tcp_init_ex(g_bench.loop, &c->tcp, AF_INET) < 0) {
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    c->ssl = SSL_new(g_bench.ctx);
    c->net_in = BIO_new(BIO_s_mem());
    c->net_out = BIO_new(BIO_s_mem());
    g_open++;
    if (!c->ssl || !c->net_in || !c->net_out) {
        BIO_free(c->net_in);
        BIO_free(c->net_out);
        conn_fail(c, UV_ENOMEM);
        return NULL;
    }
    BIO_set_mem_eof_return(c->net_in, -1);
    SSL_set_bio(c->ssl, c->net_in, c->net_out);
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, g_bench.o.sni);
    if (!g_bench.o.insecure)
        SSL_set1_host(c->ssl, g_bench.o.sni);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(g_bench.o.port)};
    inet_pton(AF_INET, g_bench.o.host, &dst.sin_addr);
    if ((g_bench.o.sources > 1 && bind_source(c, source) < 0) ||
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&dst, connect_cb) < 0) {
        conn_fail(c, UV_EADDRNOTAVAIL);
        return NULL;
    }
    return c;
}
