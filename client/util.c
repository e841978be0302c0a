/*
 * Pure helpers of libchatclient: URL parsing, JSON string escaping, UTF-8
 * validation, reconnect backoff, and durable small-file I/O.
 */
#include "client/client_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t cn__now_ms(void)
{
    return cn_mono_ns() / 1000000u;
}

/* ------------------------------------------------------------------ URL */

static int url_host(const char **pp, cn_client_url_t *out)
{
    const char *p = *pp;
    size_t n;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        CN_ENSURE(end != NULL, CN_EINVAL);
        n = (size_t)(end - p - 1);
        CN_ENSURE(n > 0 && n <= CN_CLIENT_HOST_MAX, CN_EINVAL);
        memcpy(out->host, p + 1, n);
        out->host[n] = '\0';
        struct in6_addr a6;
        CN_ENSURE(inet_pton(AF_INET6, out->host, &a6) == 1, CN_EINVAL);
        out->host_is_ip = true;
        *pp = end + 1;
        return CN_OK;
    }
    n = strcspn(p, ":/");
    CN_ENSURE(n > 0 && n <= CN_CLIENT_HOST_MAX, CN_EINVAL);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-';
        CN_ENSURE(ok, CN_EINVAL);
    }
    memcpy(out->host, p, n);
    out->host[n] = '\0';
    struct in_addr a4;
    out->host_is_ip = inet_pton(AF_INET, out->host, &a4) == 1;
    *pp = p + n;
    return CN_OK;
}

static int url_port(const char **pp, uint16_t *port)
{
    const char *p = *pp;
    *port = 443;
    if (*p != ':')
        return CN_OK;
    p++;
    uint32_t v = 0;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint32_t)(*p - '0');
        CN_ENSURE(v <= 65535 && ++digits <= 5, CN_EINVAL);
        p++;
    }
    CN_ENSURE(digits > 0 && v > 0, CN_EINVAL);
    *port = (uint16_t)v;
    *pp = p;
    return CN_OK;
}

int cn_client_url_parse(const char *url, cn_client_url_t *out)
{
    CN_ENSURE(url != NULL && out != NULL, CN_EINVAL);
    memset(out, 0, sizeof(*out));
    CN_ENSURE(strncasecmp(url, "wss://", 6) == 0, CN_EINVAL);
    const char *p = url + 6;
    CN_TRY(url_host(&p, out));
    CN_TRY(url_port(&p, &out->port));
    CN_ENSURE(*p == '\0' || *p == '/', CN_EINVAL);
    size_t n = strlen(p);
    CN_ENSURE(n <= CN_CLIENT_PATH_MAX, CN_EINVAL);
    for (size_t i = 0; i < n; i++)
        CN_ENSURE((unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f && p[i] != '#',
                  CN_EINVAL);
    /* No path (or a bare "/") means the node's WebSocket endpoint. */
    if (n <= 1)
        p = CN_CLIENT_DEFAULT_PATH;
    snprintf(out->path, sizeof(out->path), "%s", p);
    return CN_OK;
}

/* ----------------------------------------------------------------- UTF-8 */

bool cn_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* ------------------------------------------------------------------ JSON */

int cn_json_append_string(cn_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    CN_TRY(cn_buf_put_u8(out, '"'));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* RFC 8259 section 7: quote, backslash and controls must be escaped. */
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            CN_TRY(cn_buf_append(out, esc, 2));
        } else if (c == '\n') {
            CN_TRY(cn_buf_append(out, "\\n", 2));
        } else if (c == '\r') {
            CN_TRY(cn_buf_append(out, "\\r", 2));
        } else if (c == '\t') {
            CN_TRY(cn_buf_append(out, "\\t", 2));
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            CN_TRY(cn_buf_append(out, esc, 6));
        } else {
            CN_TRY(cn_buf_put_u8(out, c));
        }
    }
    return cn_buf_put_u8(out, '"');
}

/* --------------------------------------------------------------- backoff */

uint32_t cn_client_backoff_ms(uint32_t attempt)
{
    uint32_t cap = CN_CLIENT_BACKOFF_MAX;
    if (attempt < 16)
        cap = CN_MIN((uint32_t)CN_CLIENT_BACKOFF_MIN << attempt, (uint32_t)CN_CLIENT_BACKOFF_MAX);
    /* Full jitter (uniform in [0, cap]) spreads reconnect storms. */
    return cn_random_uniform(cap + 1);
}

/* ----------------------------------------------------------------- files */

int cn__mkdir(const char *dir, int mode)
{
    if (mkdir(dir, (mode_t)mode) == 0)
        return CN_OK;
    struct stat st;
    CN_ENSURE(errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode), CN_EIO);
    return CN_OK;
}

int cn__dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CN_ENSURE(fd >= 0, CN_EIO);
    int r = fsync(fd);
    close(fd);
    CN_ENSURE(r == 0, CN_EIO);
    return CN_OK;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        CN_ENSURE(w > 0, CN_EIO);
        b += w;
        n -= (size_t)w;
    }
    return CN_OK;
}

int cn__file_write_atomic(const char *path, const void *p, size_t n, int mode)
{
    int rc = CN_OK;
    char tmp[CN__PATH_MAX], dir[CN__PATH_MAX];
    int len = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    CN_ENSURE(len > 0 && (size_t)len < sizeof(tmp), CN_EINVAL);
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        *slash = '\0';
    int fd = mkstemp(tmp);
    CN_ENSURE(fd >= 0, CN_EIO);
    CN_ENSURE_OUT(fchmod(fd, (mode_t)mode) == 0, CN_EIO);
    CN_TRY_OUT(write_all(fd, p, n));
    CN_ENSURE_OUT(fsync(fd) == 0, CN_EIO);
    CN_ENSURE_OUT(rename(tmp, path) == 0, CN_EIO);
    CN_TRY_OUT(cn__dir_sync(dir));
out:
    close(fd);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int cn__file_write_new(char *tmpl, const void *p, size_t n, int mode)
{
    int rc = CN_OK;
    int fd = mkstemp(tmpl);
    CN_ENSURE(fd >= 0, CN_EIO);
    CN_ENSURE_OUT(fchmod(fd, (mode_t)mode) == 0, CN_EIO);
    CN_TRY_OUT(write_all(fd, p, n));
    CN_ENSURE_OUT(fsync(fd) == 0, CN_EIO);
out:
    if (close(fd) != 0 && rc == CN_OK)
        rc = CN_EIO;
    if (rc < 0)
        unlink(tmpl);
    return rc;
}

int cn__file_read(const char *path, size_t max, cn_buf_t *out)
{
    int rc = CN_OK;
    cn_buf_reset(out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CN_ENOTFOUND : CN_EIO;
    for (;;) {
        CN_TRY_OUT(cn_buf_reserve(out, 4096));
        ssize_t r = read(fd, out->data + out->len, out->cap - out->len);
        if (r < 0 && errno == EINTR)
            continue;
        CN_ENSURE_OUT(r >= 0, CN_EIO);
        if (r == 0)
            break;
        out->len += (size_t)r;
        CN_ENSURE_OUT(out->len <= max, CN_ETOOBIG);
    }
out:
    close(fd);
    return rc;
}
