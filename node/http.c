/*
 * HTTP/1.1 request heads (RFC 9112) for the WebSocket opening handshake
 * (RFC 6455 section 4) and for the plain-HTTP metrics/health endpoint.
 * Sans-I/O: the caller hands in the bytes received so far.
 *
 * Strictness, decided here and tested in tests/unit/node/test_http.c:
 * - Lines end in CRLF only. A bare LF, a CR not followed by LF, or a NUL
 *   anywhere in the head is a 400, detected as soon as the byte arrives.
 * - The request line is exactly `METHOD SP target SP HTTP/1.x`, single
 *   spaces. The target must be origin-form ("/..."): we are not a proxy.
 * - No obs-fold (RFC 9112 5.2), no whitespace before the colon (5.1), no
 *   control characters in values. At most CN_HTTP_HEADERS_MAX header lines.
 * - Host is required for HTTP/1.1 and may appear once (RFC 9112 3.2).
 * - A request head with a body (Transfer-Encoding, or a non-zero
 *   Content-Length) is refused for an upgrade: the bytes after the head
 *   belong to the WebSocket.
 */
#include "node/transport.h"

#include <openssl/evp.h>
#include <string.h>

#define CN_HTTP_HEADERS_MAX 64
#define CN_WS_KEY_B64_LEN   24 /* base64 of 16 bytes, with "==" */
#define CN_WS_KEY_LEN       16
#define CN_SHA1_LEN         20

/* RFC 6455 1.3: the GUID appended to Sec-WebSocket-Key. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** What the upgrade checks need to know about the header fields. */
typedef struct head_info {
    int minor; /* HTTP/1.minor */
    unsigned headers;
    unsigned hosts;
    unsigned keys;
    unsigned versions;
    bool version_13;
    bool upgrade_websocket;
    bool connection_upgrade;
    bool has_body;
    cn_slice_t key; /* borrowed from the input */
} head_info_t;

static bool is_tchar(uint8_t c)
{
    /* RFC 9110 5.6.2: token characters. */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static bool slice_ieq(cn_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (lower(s.base[i]) != lower((uint8_t)lit[i]))
            return false;
    }
    return true;
}

static cn_slice_t trim_ows(cn_slice_t s)
{
    while (s.len > 0 && is_ows(s.base[0])) {
        s.base++;
        s.len--;
    }
    while (s.len > 0 && is_ows(s.base[s.len - 1]))
        s.len--;
    return s;
}

/**
 * True when the comma-separated list v (RFC 9110 5.6.1) has an element
 * equal to token, case-insensitively. With params set, an element may carry
 * `;`-parameters after the token (Sec-WebSocket-Extensions, RFC 6455 9.1).
 */
static bool list_has_token(cn_slice_t v, const char *token, bool params)
{
    size_t start = 0;
    for (size_t i = 0; i <= v.len; i++) {
        if (i < v.len && v.base[i] != ',')
            continue;
        cn_slice_t el = cn_slice(v.base + start, i - start);
        if (params) {
            const uint8_t *semi = memchr(el.base, ';', el.len);
            if (semi)
                el.len = (size_t)(semi - el.base);
        }
        if (slice_ieq(trim_ows(el), token))
            return true;
        start = i + 1;
    }
    return false;
}

/**
 * Finds the end of the head (just past CRLFCRLF) within the first
 * CN_HTTP_HEADER_MAX bytes, rejecting stray CR, LF and NUL on the way so a
 * peer that will never send a valid head is refused early.
 */
static int find_head_end(const uint8_t *p, size_t n, size_t *end, int *status)
{
    size_t lim = CN_MIN(n, (size_t)CN_HTTP_HEADER_MAX);
    *status = 400;
    for (size_t i = 0; i < lim; i++) {
        uint8_t c = p[i];
        CN_ENSURE(c != 0, CN_EPROTO);
        if (i > 0 && p[i - 1] == '\r')
            CN_ENSURE(c == '\n', CN_EPROTO);
        if (c != '\n')
            continue;
        CN_ENSURE(i > 0 && p[i - 1] == '\r', CN_EPROTO);
        /* RFC 9112 2.2: no empty line may precede the request line here. */
        CN_ENSURE(i > 1, CN_EPROTO);
        if (i >= 3 && p[i - 2] == '\n') {
            *end = i + 1;
            *status = 0;
            return CN_OK;
        }
    }
    if (n > CN_HTTP_HEADER_MAX) {
        *status = 431;
        return CN_ETOOBIG;
    }
    *status = 0;
    return CN_EAGAIN;
}

/** Takes the next CRLF-terminated line (without CRLF) off the cursor. */
static int next_line(cn_cursor_t *c, cn_slice_t *line)
{
    const uint8_t *start = c->p + c->pos;
    const uint8_t *cr = memchr(start, '\r', cn_cursor_left(c));
    CN_ENSURE(cr != NULL, CN_EPROTO);
    CN_TRY(cn_cursor_view(c, (size_t)(cr - start), line));
    cn_slice_t crlf;
    return cn_cursor_view(c, 2, &crlf);
}

/** Splits s at the first SP: *head before it, s keeps what follows. */
static bool split_sp(cn_slice_t *s, cn_slice_t *head)
{
    const uint8_t *sp = memchr(s->base, ' ', s->len);
    if (!sp)
        return false;
    size_t k = (size_t)(sp - s->base);
    *head = cn_slice(s->base, k);
    s->base += k + 1;
    s->len -= k + 1;
    return true;
}

static int parse_method(cn_slice_t m, cn_http_request_t *req, int *status)
{
    *status = 400;
    CN_ENSURE(m.len > 0, CN_EPROTO);
    for (size_t i = 0; i < m.len; i++)
        CN_ENSURE(is_tchar(m.base[i]), CN_EPROTO);
    /* RFC 9110 15.6.2: a method we cannot even hold is not implemented. */
    *status = 501;
    CN_ENSURE(m.len < sizeof(req->method), CN_EPROTO);
    memcpy(req->method, m.base, m.len);
    req->method[m.len] = '\0';
    return CN_OK;
}

static int parse_target(cn_slice_t t, cn_http_request_t *req, int *status)
{
    *status = 400;
    /* RFC 9112 3.2.1: origin-form only; we serve no proxy requests. */
    CN_ENSURE(t.len > 0 && t.base[0] == '/', CN_EPROTO);
    for (size_t i = 0; i < t.len; i++)
        CN_ENSURE(t.base[i] > 0x20 && t.base[i] < 0x7f, CN_EPROTO);
    *status = 414;
    CN_ENSURE(t.len <= CN_HTTP_PATH_MAX, CN_ETOOBIG);
    memcpy(req->path, t.base, t.len);
    req->path[t.len] = '\0';
    return CN_OK;
}

static int parse_version(cn_slice_t v, head_info_t *h, int *status)
{
    /* RFC 9112 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT */
    *status = 400;
    CN_ENSURE(v.len == 8 && memcmp(v.base, "HTTP/", 5) == 0 && v.base[6] == '.', CN_EPROTO);
    uint8_t major = v.base[5], minor = v.base[7];
    CN_ENSURE(major >= '0' && major <= '9' && minor >= '0' && minor <= '9', CN_EPROTO);
    *status = 505;
    CN_ENSURE(major == '1', CN_EPROTO);
    h->minor = minor - '0';
    return CN_OK;
}

static int parse_request_line(cn_slice_t line, cn_http_request_t *req, head_info_t *h, int *status)
{
    cn_slice_t method, target;
    *status = 400;
    CN_ENSURE(split_sp(&line, &method), CN_EPROTO);
    CN_ENSURE(split_sp(&line, &target), CN_EPROTO);
    CN_TRY(parse_method(method, req, status));
    CN_TRY(parse_target(target, req, status));
    return parse_version(line, h, status);
}

/** Records the fields the upgrade checks look at; ignores the rest. */
static int note_field(cn_slice_t name, cn_slice_t value, cn_http_request_t *req, head_info_t *h)
{
    if (slice_ieq(name, "host")) {
        /* RFC 9112 3.2: more than one Host is a 400. */
        CN_ENSURE(++h->hosts == 1, CN_EPROTO);
    } else if (slice_ieq(name, "upgrade")) {
        h->upgrade_websocket |= list_has_token(value, "websocket", false);
    } else if (slice_ieq(name, "connection")) {
        h->connection_upgrade |= list_has_token(value, "upgrade", false);
    } else if (slice_ieq(name, "sec-websocket-key")) {
        h->keys++;
        h->key = value;
    } else if (slice_ieq(name, "sec-websocket-version")) {
        h->versions++;
        h->version_13 = value.len == 2 && memcmp(value.base, "13", 2) == 0;
    } else if (slice_ieq(name, "sec-websocket-extensions")) {
        /* Recorded only: RFC 6455 9.1 lets us decline by not answering. */
        req->offers_deflate |= list_has_token(value, "permessage-deflate", true);
    } else if (slice_ieq(name, "transfer-encoding")) {
        h->has_body = true;
    } else if (slice_ieq(name, "content-length")) {
        h->has_body |= !(value.len == 1 && value.base[0] == '0');
    }
    return CN_OK;
}

static int parse_field_line(cn_slice_t line, cn_http_request_t *req, head_info_t *h, int *status)
{
    *status = 431;
    CN_ENSURE(++h->headers <= CN_HTTP_HEADERS_MAX, CN_ETOOBIG);
    *status = 400;
    /* RFC 9112 5.2: obs-fold is refused; RFC 9112 5.1: no space before ':'. */
    const uint8_t *colon = memchr(line.base, ':', line.len);
    CN_ENSURE(colon != NULL && colon != line.base, CN_EPROTO);
    cn_slice_t name = cn_slice(line.base, (size_t)(colon - line.base));
    for (size_t i = 0; i < name.len; i++)
        CN_ENSURE(is_tchar(name.base[i]), CN_EPROTO);
    cn_slice_t value = trim_ows(cn_slice(colon + 1, line.len - name.len - 1));
    /* RFC 9110 5.5: field-vchar, SP, HTAB and obs-text; no CTLs. */
    for (size_t i = 0; i < value.len; i++) {
        uint8_t c = value.base[i];
        CN_ENSURE(c >= 0x20 || c == '\t', CN_EPROTO);
        CN_ENSURE(c != 0x7f, CN_EPROTO);
    }
    return note_field(name, value, req, h);
}

static int b64_value(uint8_t c)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *at = c ? strchr(alphabet, c) : NULL;
    return at ? (int)(at - alphabet) : -1;
}

/** RFC 6455 4.2.1 item 5: the key is base64 of exactly 16 bytes. */
static bool ws_key_valid(cn_slice_t key)
{
    if (key.len != CN_WS_KEY_B64_LEN || key.base[22] != '=' || key.base[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        if (b64_value(key.base[i]) < 0)
            return false;
    }
    return true;
}

/**
 * RFC 6455 4.2.2 item 5.4: Accept = base64(SHA-1(key || GUID)). SHA-1 is
 * used only because the WebSocket handshake defines it; it protects
 * nothing here (TLS does).
 */
static int ws_accept(cn_slice_t key, char out[29])
{
    uint8_t buf[CN_WS_KEY_B64_LEN + sizeof(ws_guid) - 1];
    uint8_t md[CN_SHA1_LEN];
    unsigned md_len = 0;
    memcpy(buf, key.base, CN_WS_KEY_B64_LEN);
    memcpy(buf + CN_WS_KEY_B64_LEN, ws_guid, sizeof(ws_guid) - 1);
    CN_ENSURE(EVP_Digest(buf, sizeof(buf), md, &md_len, EVP_sha1(), NULL) == 1, CN_EINTERNAL);
    CN_ENSURE(md_len == CN_SHA1_LEN, CN_EINTERNAL);
    /* 20 bytes encode to 28 characters plus the NUL EVP_EncodeBlock adds. */
    CN_ENSURE(EVP_EncodeBlock((unsigned char *)out, md, CN_SHA1_LEN) == 28, CN_EINTERNAL);
    return CN_OK;
}

/** RFC 6455 4.2.1: returns 0 for a valid upgrade, else the status to send. */
static int upgrade_status(const cn_http_request_t *req, const head_info_t *h)
{
    if (strcmp(req->method, "GET") != 0)
        return 405;
    if (h->minor < 1 || h->hosts != 1 || !h->upgrade_websocket || !h->connection_upgrade)
        return 400;
    if (h->keys != 1 || !ws_key_valid(h->key))
        return 400;
    /* RFC 6455 4.2.2: an unsupported version is answered with 426. */
    if (h->versions != 1 || !h->version_13)
        return 426;
    return h->has_body ? 400 : 0;
}

int cn_http_request_parse(const uint8_t *p, size_t n, bool want_upgrade, cn_http_request_t *req,
                          int *status)
{
    head_info_t h;
    size_t end = 0;
    cn_cursor_t c;
    cn_slice_t line;
    memset(req, 0, sizeof(*req));
    memset(&h, 0, sizeof(h));
    CN_TRY(find_head_end(p, n, &end, status));
    *status = 400;
    cn_cursor_init(&c, p, end - 2); /* without the empty line's CRLF */
    CN_TRY(next_line(&c, &line));
    CN_TRY(parse_request_line(line, req, &h, status));
    while (cn_cursor_left(&c) > 0) {
        CN_TRY(next_line(&c, &line));
        CN_TRY(parse_field_line(line, req, &h, status));
    }
    *status = 400;
    CN_ENSURE(h.minor < 1 || h.hosts == 1, CN_EPROTO);
    int up = upgrade_status(req, &h);
    if (want_upgrade && up != 0) {
        *status = up;
        return CN_EPROTO;
    }
    if (up == 0) {
        CN_TRY(ws_accept(h.key, req->accept));
        req->is_upgrade = true;
    }
    req->consumed = end;
    *status = 0;
    return CN_OK;
}

int cn_http_write_upgrade(cn_buf_t *out, const cn_http_request_t *req)
{
    CN_ENSURE(req->is_upgrade && strlen(req->accept) == 28, CN_EINVAL);
    /* RFC 6455 4.2.2: no Sec-WebSocket-Extensions (permessage-deflate is
     * never negotiated) and no subprotocol. */
    return cn_buf_printf(out,
                         "HTTP/1.1 101 Switching Protocols\r\n"
                         "Upgrade: websocket\r\n"
                         "Connection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: %s\r\n"
                         "\r\n",
                         req->accept);
}

static const char *reason_phrase(int status)
{
    static const struct {
        int status;
        const char *reason;
    } table[] = {
        {101, "Switching Protocols"},
        {200, "OK"},
        {204, "No Content"},
        {400, "Bad Request"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(table); i++) {
        if (table[i].status == status)
            return table[i].reason;
    }
    return "Unknown";
}

/** Header fields some statuses require (RFC 9110 15.5.6, 15.5.22; RFC 6455 4.4). */
static const char *extra_fields(int status)
{
    switch (status) {
    case 405:
        return "Allow: GET\r\n";
    case 426:
        return "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    default:
        return "";
    }
}

int cn_http_write_response(cn_buf_t *out, int status, const char *content_type, const void *body,
                           size_t body_len)
{
    CN_ENSURE(status >= 200 && status <= 599, CN_EINVAL);
    CN_ENSURE(body != NULL || body_len == 0, CN_EINVAL);
    if (!content_type)
        content_type = "text/plain; charset=utf-8";
    /* The content type is ours, but refuse anything that could split the head. */
    CN_ENSURE(strpbrk(content_type, "\r\n") == NULL, CN_EINVAL);
    /* RFC 9110 7.8: a sender of Upgrade also lists it in Connection. */
    const char *connection = status == 426 ? "Upgrade, close" : "close";
    CN_TRY(cn_buf_printf(out,
                         "HTTP/1.1 %d %s\r\n"
                         "Content-Type: %s\r\n"
                         "Content-Length: %zu\r\n"
                         "%s"
                         "Connection: %s\r\n"
                         "\r\n",
                         status, reason_phrase(status), content_type, body_len,
                         extra_fields(status), connection));
    return cn_buf_append(out, body, body_len);
}
