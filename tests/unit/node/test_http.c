/*
 * HTTP/1.1 request heads and the RFC 6455 section 4 opening handshake:
 * the RFC's own example key, every refusal with its status, truncation at
 * every length, size limits, and flipped bits that must never crash.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "node/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 6455 1.3 / 4.2.2 example. */
#define RFC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const char valid_upgrade[] = "GET /ws HTTP/1.1\r\n"
                                    "Host: chat.example\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                                    "Sec-WebSocket-Version: 13\r\n"
                                    "\r\n";

static int parse_str(const char *s, bool up, cn_http_request_t *req, int *status)
{
    return cn_http_request_parse((const uint8_t *)s, strlen(s), up, req, status);
}

/** Parses s as an upgrade and expects CN_EPROTO with the given status. */
static void expect_refused(const char *s, int want_status)
{
    cn_http_request_t req;
    int status = 0;
    assert_int_equal(parse_str(s, true, &req, &status), CN_EPROTO);
    assert_int_equal(status, want_status);
}

static void test_rfc_example_upgrade(void **state)
{
    (void)state;
    cn_http_request_t req;
    int status = -1;
    assert_int_equal(parse_str(valid_upgrade, true, &req, &status), CN_OK);
    assert_int_equal(status, 0);
    assert_true(req.is_upgrade);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.path, "/ws");
    assert_string_equal(req.accept, RFC_ACCEPT);
    assert_false(req.offers_deflate);
    assert_int_equal(req.consumed, strlen(valid_upgrade));

    cn_buf_t out;
    cn_buf_init(&out);
    assert_int_equal(cn_http_write_upgrade(&out, &req), CN_OK);
    const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    cn_buf_dispose(&out);
}

static void test_upgrade_variants_accepted(void **state)
{
    (void)state;
    /* Case-insensitive names and tokens, token lists, OWS, a deflate offer,
     * bytes after the head (the first WebSocket frame) left unconsumed. */
    const char s[] = "GET /chat?x=1 HTTP/1.1\r\n"
                     "hOsT:chat.example:443\r\n"
                     "upgrade: h2c, WebSocket\r\n"
                     "connection: keep-alive,  UPGRADE \r\n"
                     "sec-websocket-key:\t" RFC_KEY "\t\r\n"
                     "SEC-WEBSOCKET-VERSION: 13\r\n"
                     "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                     "User-Agent: \xc3\xa9t\xc3\xa9\r\n"
                     "\r\n"
                     "\x82\x80";
    cn_http_request_t req;
    int status = -1;
    assert_int_equal(parse_str(s, true, &req, &status), CN_OK);
    assert_true(req.is_upgrade);
    assert_true(req.offers_deflate);
    assert_string_equal(req.path, "/chat?x=1");
    assert_string_equal(req.accept, RFC_ACCEPT);
    assert_int_equal(req.consumed, strlen(s) - 2);

    /* The 101 never carries Sec-WebSocket-Extensions: deflate is declined. */
    cn_buf_t out;
    cn_buf_init(&out);
    assert_int_equal(cn_http_write_upgrade(&out, &req), CN_OK);
    assert_int_equal(cn_buf_printf(&out, "%c", '\0'), CN_OK);
    assert_null(strstr((const char *)out.data, "Extensions"));
    cn_buf_dispose(&out);
}

static void test_missing_or_bad_key(void **state)
{
    (void)state;
    static const char *const bad_keys[] = {
        "",                                /* empty */
        "dGhlIHNhbXBsZSBub25jZQ",          /* no padding */
        "dGhlIHNhbXBsZSBub25jZQ=",         /* short padding */
        "dGhlIHNhbXBsZSBub25jZQ===",       /* 25 characters */
        "dGhlIHNhbXBsZSBub25jZ*==",        /* not base64 */
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",    /* 19 bytes */
        "dGhlIHNhbXBsZQ==",                /* 10 bytes */
        "dGhlIHNhbXBsZSBub25j ZQ==",       /* inner space */
        "ZGhsSUhOaGJYQnNaU0JpZFcyNWpaUT09" /* 24 bytes */
    };
    char buf[512];
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 bad_keys[i]);
        expect_refused(buf, 400);
    }
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   400);
    /* Two keys are ambiguous. */
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   400);
}

static void test_wrong_version_426(void **state)
{
    (void)state;
    static const char *const versions[] = {"8", "12", "14", "13, 8", "", "013"};
    char buf[512];
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: %s\r\n\r\n",
                 versions[i]);
        expect_refused(buf, 426);
    }
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\n\r\n",
                   426);

    /* RFC 6455 4.4: the 426 says which version we speak. */
    cn_buf_t out;
    cn_buf_init(&out);
    assert_int_equal(cn_http_write_response(&out, 426, "text/plain", "upgrade\n", 8), CN_OK);
    assert_int_equal(cn_buf_printf(&out, "%c", '\0'), CN_OK);
    const char *s = (const char *)out.data;
    assert_non_null(strstr(s, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(s, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(s, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(s, "close\r\n"));
    cn_buf_dispose(&out);
}

static void test_method_not_get_405(void **state)
{
    (void)state;
    expect_refused("POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   405);
    expect_refused("get / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   405);
    cn_buf_t out;
    cn_buf_init(&out);
    assert_int_equal(cn_http_write_response(&out, 405, NULL, NULL, 0), CN_OK);
    assert_int_equal(cn_buf_printf(&out, "%c", '\0'), CN_OK);
    assert_non_null(strstr((const char *)out.data, "\r\nAllow: GET\r\n"));
    cn_buf_dispose(&out);
}

static void test_other_upgrade_refusals(void **state)
{
    (void)state;
    /* No Upgrade, wrong Upgrade token, no Connection token, HTTP/1.0,
     * no Host, two Hosts, a body. */
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websockets\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgraded\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Version: 13\r\n"
                   "Content-Length: 5\r\n\r\n",
                   400);
    expect_refused("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
}

static void test_incomplete_every_prefix(void **state)
{
    (void)state;
    size_t n = strlen(valid_upgrade);
    for (size_t i = 0; i < n; i++) {
        cn_http_request_t req;
        int status = -1;
        assert_int_equal(
            cn_http_request_parse((const uint8_t *)valid_upgrade, i, true, &req, &status),
            CN_EAGAIN);
        assert_int_equal(status, 0);
    }
}

static void test_oversized_431(void **state)
{
    (void)state;
    size_t n = CN_HTTP_HEADER_MAX + 100;
    char *big = malloc(n + 1);
    assert_non_null(big);
    int off = snprintf(big, n + 1, "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ");
    memset(big + off, 'a', n - (size_t)off);
    big[n] = '\0';
    cn_http_request_t req;
    int status = 0;
    /* Exactly at the limit it may still complete; one byte over it cannot. */
    assert_int_equal(
        cn_http_request_parse((const uint8_t *)big, CN_HTTP_HEADER_MAX, true, &req, &status),
        CN_EAGAIN);
    assert_int_equal(
        cn_http_request_parse((const uint8_t *)big, CN_HTTP_HEADER_MAX + 1, true, &req, &status),
        CN_ETOOBIG);
    assert_int_equal(status, 431);
    assert_int_equal(parse_str(big, false, &req, &status), CN_ETOOBIG);
    assert_int_equal(status, 431);
    free(big);

    /* More than 64 header lines. */
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_buf_printf(&b, "GET / HTTP/1.1\r\nHost: h\r\n"), CN_OK);
    for (int i = 0; i < 64; i++)
        assert_int_equal(cn_buf_printf(&b, "X-%d: v\r\n", i), CN_OK);
    assert_int_equal(cn_buf_printf(&b, "\r\n"), CN_OK);
    assert_int_equal(cn_http_request_parse(b.data, b.len, false, &req, &status), CN_ETOOBIG);
    assert_int_equal(status, 431);
    cn_buf_dispose(&b);
}

static void test_malformed_lines_400(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost h\r\n\r\n",             /* no colon */
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",           /* space before colon */
        "GET / HTTP/1.1\r\n: h\r\n\r\n",                /* empty name */
        "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\nHo(st: h\r\n\r\n",           /* not a token */
        "GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n",       /* control character */
        "GET / HTTP/1.1\r\nHost: a\x7fz\r\n\r\n",       /* DEL */
        "GET / HTTP/1.1\nHost: h\n\n",                  /* bare LF */
        "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",      /* bare CR */
        "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",           /* double space */
        "GET /\r\nHost: h\r\n\r\n",                     /* no version */
        "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",           /* trailing space */
        "GET / HTTX/1.1\r\nHost: h\r\n\r\n",            /* not HTTP */
        "GET / HTTP/1.a\r\nHost: h\r\n\r\n",            /* not a digit */
        "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",    /* absolute-form */
        "GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n",       /* non-ASCII target */
        "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",        /* leading empty line */
        " GET / HTTP/1.1\r\nHost: h\r\n\r\n",           /* empty method */
        "G@T / HTTP/1.1\r\nHost: h\r\n\r\n",            /* not a token */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cn_http_request_t req;
        int status = 0;
        int rc = parse_str(bad[i], false, &req, &status);
        if (rc != CN_EPROTO || status != 400)
            fail_msg("case %zu: rc=%d status=%d", i, rc, status);
    }
}

static void test_nul_bytes(void **state)
{
    (void)state;
    const char s[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    cn_http_request_t req;
    int status = 0;
    /* Refused as soon as the NUL arrives, without waiting for the end. */
    assert_int_equal(cn_http_request_parse((const uint8_t *)s, 25, false, &req, &status),
                     CN_EPROTO);
    assert_int_equal(status, 400);
    assert_int_equal(cn_http_request_parse((const uint8_t *)s, sizeof(s) - 1, false, &req, &status),
                     CN_EPROTO);
    assert_int_equal(status, 400);
}

static void test_long_path_and_method(void **state)
{
    (void)state;
    char buf[1024];
    char path[CN_HTTP_PATH_MAX + 2];
    cn_http_request_t req;
    int status = 0;
    path[0] = '/';
    memset(path + 1, 'p', CN_HTTP_PATH_MAX - 1);
    path[CN_HTTP_PATH_MAX] = '\0';
    snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path);
    assert_int_equal(parse_str(buf, false, &req, &status), CN_OK);
    assert_int_equal(strlen(req.path), CN_HTTP_PATH_MAX);

    path[CN_HTTP_PATH_MAX] = 'p';
    path[CN_HTTP_PATH_MAX + 1] = '\0';
    snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path);
    assert_int_equal(parse_str(buf, false, &req, &status), CN_ETOOBIG);
    assert_int_equal(status, 414);

    assert_int_equal(parse_str("PROPFIND / HTTP/1.1\r\nHost: h\r\n\r\n", false, &req, &status),
                     CN_EPROTO);
    assert_int_equal(status, 501);
}

static void test_plain_mode(void **state)
{
    (void)state;
    cn_http_request_t req;
    int status = -1;
    assert_int_equal(
        parse_str("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nAccept: */*\r\n\r\n", false,
                  &req, &status),
        CN_OK);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.path, "/metrics");
    assert_false(req.is_upgrade);
    /* HTTP/1.0 health checkers send no Host. */
    assert_int_equal(parse_str("HEAD /healthz HTTP/1.0\r\n\r\n", false, &req, &status), CN_OK);
    assert_string_equal(req.method, "HEAD");
    assert_string_equal(req.path, "/healthz");
    /* HTTP/1.1 requires Host even here. */
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n\r\n", false, &req, &status), CN_EPROTO);
    assert_int_equal(status, 400);
    /* A valid upgrade is recognised in plain mode too. */
    assert_int_equal(parse_str(valid_upgrade, false, &req, &status), CN_OK);
    assert_true(req.is_upgrade);
    assert_string_equal(req.accept, RFC_ACCEPT);
}

static void test_response_writer(void **state)
{
    (void)state;
    cn_buf_t out;
    cn_buf_init(&out);
    assert_int_equal(cn_http_write_response(&out, 200, "text/plain; version=0.0.4", "up 1\n", 5),
                     CN_OK);
    const char want[] = "HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: 5\r\n"
                        "Connection: close\r\n"
                        "\r\n"
                        "up 1\n";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    cn_buf_reset(&out);
    assert_int_equal(cn_http_write_response(&out, 431, NULL, "", 0), CN_OK);
    assert_int_equal(cn_buf_printf(&out, "%c", '\0'), CN_OK);
    assert_non_null(strstr((const char *)out.data, "431 Request Header Fields Too Large\r\n"));
    assert_non_null(strstr((const char *)out.data, "Content-Length: 0\r\n"));
    /* Header injection through the content type and nonsense statuses. */
    assert_int_equal(cn_http_write_response(&out, 200, "a\r\nSet-Cookie: x", "", 0), CN_EINVAL);
    assert_int_equal(cn_http_write_response(&out, 99, NULL, "", 0), CN_EINVAL);
    assert_int_equal(cn_http_write_response(&out, 200, NULL, NULL, 3), CN_EINVAL);
    /* The 101 writer refuses a request that was not a valid upgrade. */
    cn_http_request_t req;
    memset(&req, 0, sizeof(req));
    assert_int_equal(cn_http_write_upgrade(&out, &req), CN_EINVAL);
    cn_buf_dispose(&out);
}

static void test_flipped_bits_never_crash(void **state)
{
    (void)state;
    size_t n = strlen(valid_upgrade);
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    int ok = 0;
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, valid_upgrade, n);
            copy[i] ^= (uint8_t)(1u << bit);
            cn_http_request_t req;
            int status = 0;
            int rc = cn_http_request_parse(copy, n, true, &req, &status);
            assert_true(rc == CN_OK || rc == CN_EAGAIN || rc == CN_EPROTO || rc == CN_ETOOBIG);
            if (rc == CN_OK) {
                ok++;
                assert_true(req.is_upgrade);
                assert_true(req.consumed <= n);
                assert_int_equal(strlen(req.accept), 28);
            } else if (rc != CN_EAGAIN) {
                assert_true(status >= 400 && status <= 505);
            }
            /* Plain mode sees the same bytes. */
            rc = cn_http_request_parse(copy, n, false, &req, &status);
            assert_true(rc == CN_OK || rc == CN_EAGAIN || rc == CN_EPROTO || rc == CN_ETOOBIG);
        }
    }
    /* Case flips in names and tokens keep it valid: the check has teeth. */
    assert_true(ok > 0);
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_example_upgrade),
        cmocka_unit_test(test_upgrade_variants_accepted),
        cmocka_unit_test(test_missing_or_bad_key),
        cmocka_unit_test(test_wrong_version_426),
        cmocka_unit_test(test_method_not_get_405),
        cmocka_unit_test(test_other_upgrade_refusals),
        cmocka_unit_test(test_incomplete_every_prefix),
        cmocka_unit_test(test_oversized_431),
        cmocka_unit_test(test_malformed_lines_400),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_long_path_and_method),
        cmocka_unit_test(test_plain_mode),
        cmocka_unit_test(test_response_writer),
        cmocka_unit_test(test_flipped_bits_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
