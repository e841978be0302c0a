/**
 * Internal to node/: the sans-I/O transport layers under a connection.
 * No libuv here: bytes in, events and bytes out, so each layer is unit
 * tested and fuzzed on its own.
 *
 *   TCP bytes -> cn_tls (OpenSSL's handshake, then our TLS 1.3 record
 *                layer, node/tls_record.h) -> plaintext
 *   plaintext -> cn_http_request (the upgrade) -> cn_ws (RFC 6455 frames)
 */
#ifndef CN_NODE_TRANSPORT_H
#define CN_NODE_TRANSPORT_H

#include "common/cn_common.h"

#include <openssl/ssl.h>

/* ------------------------------------------------------------ HTTP/1.1 */

#define CN_HTTP_HEADER_MAX 8192 /* request line + headers */
#define CN_HTTP_PATH_MAX   256

typedef struct cn_http_request {
    char method[8];
    char path[CN_HTTP_PATH_MAX + 1];
    bool is_upgrade;     /* a valid RFC 6455 section 4.2.1 upgrade */
    char accept[29];     /* Sec-WebSocket-Accept value (base64, NUL-terminated) */
    bool offers_deflate; /* client offered permessage-deflate (we decline) */
    size_t consumed;     /* bytes of the request head */
} cn_http_request_t;

/**
 * Parses one HTTP/1.1 request head from p[0..n).
 * Returns CN_OK with *req filled; CN_EAGAIN when the head is incomplete
 * (no CRLFCRLF yet) and n <= CN_HTTP_HEADER_MAX; CN_ETOOBIG when it is
 * longer; CN_EPROTO when malformed. On CN_EPROTO / CN_ETOOBIG, *status is
 * the HTTP status to answer (400, 405, 426, 431, 505...).
 * When want_upgrade is set, anything but a valid WebSocket upgrade (GET,
 * HTTP/1.1, Host, Upgrade: websocket, Connection: upgrade, a 16-byte
 * base64 Sec-WebSocket-Key, Sec-WebSocket-Version: 13) is CN_EPROTO
 * (426 with the Sec-WebSocket-Version: 13 header for a wrong version).
 */
CN_MUST_USE int cn_http_request_parse(const uint8_t *p, size_t n, bool want_upgrade,
                                      cn_http_request_t *req, int *status);

/** Appends the 101 Switching Protocols answer for req to out. */
CN_MUST_USE int cn_http_write_upgrade(cn_buf_t *out, const cn_http_request_t *req);

/** Appends a complete response (Connection: close) with a text body. */
CN_MUST_USE int cn_http_write_response(cn_buf_t *out, int status, const char *content_type,
                                       const void *body, size_t body_len);

/* ------------------------------------------------------------------ TLS */

typedef struct cn_tls cn_tls_t;

/**
 * Server TLS context: TLS 1.3 only, modern ciphers, SSL_MODE_RELEASE_BUFFERS,
 * no session tickets carrying state we do not need. Returns owned;
 * SSL_CTX_free. NULL with a logged reason on failure.
 */
SSL_CTX *cn_tls_server_ctx_new(const char *cert_file, const char *key_file);

/**
 * A server-side TLS session; owned; cn_tls_free. Every byte of ciphertext
 * for the peer (handshake flights, records, alerts) is appended to *out as
 * it is produced; out must outlive the session. OpenSSL runs the handshake;
 * at its end the SSL object is freed and the record layer takes over.
 */
cn_tls_t *cn_tls_new(SSL_CTX *ctx, cn_buf_t *out);
void cn_tls_free(cn_tls_t *t);

/**
 * Feeds n bytes received from the socket (read in place; only a record split
 * across feeds is copied, until it is whole), then decrypts into plain
 * (appended). Returns CN_OK, CN_ECLOSED (peer sent close_notify) or
 * CN_EPROTO (a TLS failure; an alert was queued); CN_ENOMEM (no room for the
 * plaintext) and CN_EINTERNAL end the stream like CN_EPROTO: the connection
 * must close. Anything but CN_OK is final.
 */
CN_MUST_USE int cn_tls_feed(cn_tls_t *t, const uint8_t *p, size_t n, cn_buf_t *plain);

/**
 * Encrypts n plaintext bytes (only after the handshake completed: CN_EINVAL
 * before, CN_ECLOSED after cn_tls_shutdown or a fatal alert).
 */
CN_MUST_USE int cn_tls_write(cn_tls_t *t, const uint8_t *p, size_t n);

bool cn_tls_handshake_done(const cn_tls_t *t);

/** RFC 9266 style channel binding value for this connection. */
CN_MUST_USE int cn_tls_exporter(cn_tls_t *t, uint8_t out[32]);

/** Queues a close_notify alert. */
void cn_tls_shutdown(cn_tls_t *t);

/* ------------------------------------------------------------ WebSocket */

typedef struct cn_ws cn_ws_t;

/* RFC 6455 7.4.1 close codes we send. */
#define CN_WS_CLOSE_NORMAL      1000
#define CN_WS_CLOSE_GOING_AWAY  1001
#define CN_WS_CLOSE_PROTOCOL    1002
#define CN_WS_CLOSE_UNSUPPORTED 1003
#define CN_WS_CLOSE_BAD_DATA    1007 /* e.g. a close reason that is not UTF-8 */
#define CN_WS_CLOSE_POLICY      1008
#define CN_WS_CLOSE_TOO_BIG     1009
#define CN_WS_CLOSE_INTERNAL    1011

/* The largest max_message a session accepts (its counters are 32-bit). */
#define CN_WS_MESSAGE_LIMIT (1u << 30)

typedef struct cn_ws_callbacks {
    /** A complete binary message (reassembled); p borrowed for the call. */
    void (*on_message)(void *ctx, const uint8_t *p, size_t n);
    /**
     * Bytes to send to the peer (to be TLS-encrypted); copy them. A frame
     * arrives as its header, then its payload (one call when it is small).
     * A negative return ends the session and is returned by the call that
     * was writing.
     */
    int (*on_output)(void *ctx, const uint8_t *p, size_t n);
    /** Any valid frame header arrived (for idle timers); may be NULL. */
    void (*on_activity)(void *ctx);
} cn_ws_callbacks_t;

/**
 * A server-side RFC 6455 session (node/ws.c, sans-I/O): requires masked
 * client frames (else 1002), answers pings, reassembles fragments, refuses
 * text frames with 1003 and messages over max_message with 1009 (from the
 * header, before the payload), fails the connection with 1002 for every
 * other framing error and 1007 for a close reason that is not UTF-8.
 * An idle session holds no buffer; input is buffered only for a frame split
 * across feeds, growing as its bytes arrive, at most max_message + 125.
 * max_message is 1..CN_WS_MESSAGE_LIMIT; cb is copied.
 * Returns owned (NULL on bad arguments or no memory); cn_ws_free.
 */
cn_ws_t *cn_ws_new(const cn_ws_callbacks_t *cb, void *ctx, size_t max_message);
/** Frees the session and any buffered input; accepts NULL. */
void cn_ws_free(cn_ws_t *ws);

/**
 * Feeds received plaintext bytes (borrowed, read only); calls on_message,
 * on_activity and on_output (pongs, close frames) from inside. A frame that
 * is complete in p is unmasked into a session buffer, freed before return.
 * Returns CN_OK while the session is usable (also after cn_ws_close while
 * the peer's close is awaited); CN_ECLOSED once the peer's close arrived and
 * was answered; CN_EPROTO after a protocol violation (our close with its
 * code was handed to on_output); otherwise on_output's error or CN_ENOMEM.
 * After a non-OK return nothing more is parsed and every feed returns the
 * same value. Not reentrant: callbacks must not feed the same session.
 */
CN_MUST_USE int cn_ws_feed(cn_ws_t *ws, const uint8_t *p, size_t n);

/**
 * As cn_ws_feed, but p is the caller's own buffer and complete frames are
 * unmasked in place and handed to on_message without a copy: p's bytes are
 * modified. The caller may discard all n bytes afterwards (a split frame's
 * bytes were copied into the session).
 */
CN_MUST_USE int cn_ws_feed_inplace(cn_ws_t *ws, uint8_t *p, size_t n);

/** Writes one binary message (p borrowed) as one frame through on_output. */
CN_MUST_USE int cn_ws_send(cn_ws_t *ws, const uint8_t *p, size_t n);

/** Sends a ping (keep-alive). */
CN_MUST_USE int cn_ws_ping(cn_ws_t *ws);

/**
 * Starts the closing handshake with code and a short reason (cut to 123
 * bytes). CN_EINVAL for a code nobody may send (RFC 6455 7.4), CN_ECLOSED
 * when our close went out already.
 */
CN_MUST_USE int cn_ws_close(cn_ws_t *ws, uint16_t code, const char *reason);

/** True once a close frame was sent (or on_output failed): nothing more may be sent. */
bool cn_ws_closed(const cn_ws_t *ws);
/** The close code the peer sent (1005 when its close had none, 0 before it). */
uint16_t cn_ws_peer_close_code(const cn_ws_t *ws);
/** The close code we sent (1005 when our echo had none, 0 before it). */
uint16_t cn_ws_sent_close_code(const cn_ws_t *ws);

/** Input bytes held between feeds (a split header or frame, open fragments). */
size_t cn_ws_buffered(const cn_ws_t *ws);
/** Bytes allocated for held input (0 when nothing is held). */
size_t cn_ws_buffer_capacity(const cn_ws_t *ws);

#endif /* CN_NODE_TRANSPORT_H */
