/*
 * Server side of RFC 6455 over wslay's event API (libwslay 1.1.1).
 *
 * wslay does the framing, unmasking, reassembly, ping answers and the
 * closing handshake. Verified against wslay 1.1.1 (tests/unit/node/test_ws.c
 * pins each behaviour):
 * - unmasked client frames, reserved bits, unknown opcodes, a continuation
 *   without a start and a new data frame inside a fragmented message get a
 *   close with 1002;
 * - a message whose size (all fragments so far plus the new frame's
 *   announced length) exceeds max_recv_msg_length gets 1009 before
 *   anything is allocated for it, but only once the frame's first payload
 *   byte arrives; below the limit wslay allocates each frame's payload as
 *   soon as it starts, so max_message bounds the memory a peer can pin;
 * - an invalid close code gets 1002, invalid UTF-8 in a close reason 1007.
 * wslay's frame layer, however, answers a few header errors (a control
 * frame over 125 bytes or fragmented, a 64-bit length with the top bit set,
 * non-minimal length encodings) with a close frame that carries no status
 * code. A small header scanner in front of wslay (scan_input) sees every
 * byte before wslay does, tracks frame boundaries, and answers those with
 * 1002 (RFC 6455 7.4.1) and an oversized message with 1009 as soon as its
 * header is complete. It keeps 10 header bytes and a few counters.
 *
 * Text frames are refused with 1003 as soon as their header arrives: the
 * wire protocol is binary only (DESIGN.md section 4).
 *
 * Return values of cn_ws_feed: CN_OK while the session is usable (also
 * after cn_ws_close, while we wait for the peer's close); CN_ECLOSED once
 * the peer's close arrived (our answer was handed to on_output); CN_EPROTO
 * when the peer broke the protocol (our close frame with the reason code was
 * handed to on_output); otherwise on_output's error or CN_ENOMEM. In every
 * non-OK case the caller flushes what it has and closes the connection.
 */
#include "node/transport.h"

#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define CN_WS_CTRL_MAX      125 /* RFC 6455 5.5 */
#define CN_WS_CLOSE_NO_CODE 1005
#define CN_WS_REASON_MAX    123 /* 125 minus the two-byte code */
#define CN_WS_FRAME_HDR_MAX 10  /* without the masking key */
#define CN_WS_LEN16_MIN     126
#define CN_WS_LEN64_MIN     65536
#define CN_WS_LEN64_TOP_BIT (1ull << 63)

struct cn_ws {
    wslay_event_context_ptr ctx;
    cn_ws_callbacks_t cb;
    void *cb_ctx;
    /* The bytes of the cn_ws_feed call in progress (borrowed). */
    const uint8_t *in;
    size_t in_len;
    size_t in_off;
    /* Header scanner state: mirrors wslay's frame boundaries. */
    uint64_t max_message;
    uint64_t msg_len;      /* announced bytes of the current data message */
    uint64_t frame_len;    /* announced length of the frame being scanned */
    uint64_t payload_left; /* payload bytes of that frame not yet scanned */
    uint8_t hdr[CN_WS_FRAME_HDR_MAX];
    uint8_t hdr_len;
    uint8_t hdr_need;
    uint16_t scan_close; /* close code scan_input found a reason for */
    bool closing;        /* we queued a close; deliver no more messages */
    bool dead;           /* on_output failed or wslay gave up: unusable */
    int out_err;         /* on_output's error */
    uint16_t peer_code;
};

static const uint8_t empty_msg[1];

/** Header length checks once the extended length is complete; 0 or a close code. */
static uint16_t header_length(cn_ws_t *ws, uint8_t len7)
{
    uint64_t len = len7;
    if (len7 == 126) {
        len = ((uint64_t)ws->hdr[2] << 8) | ws->hdr[3];
        /* RFC 6455 5.2: the minimal number of bytes must be used. */
        if (len < CN_WS_LEN16_MIN)
            return CN_WS_CLOSE_PROTOCOL;
    } else if (len7 == 127) {
        len = cn_load_u64be(&ws->hdr[2]);
        /* RFC 6455 5.2: the most significant bit MUST be 0. */
        if ((len & CN_WS_LEN64_TOP_BIT) || len < CN_WS_LEN64_MIN)
            return CN_WS_CLOSE_PROTOCOL;
    }
    ws->frame_len = len;
    uint8_t opcode = ws->hdr[0] & 0x0f;
    if (opcode & 0x08)
        return 0;
    /* A data frame: refuse a message that will not fit from its header,
     * before any payload arrives (wslay waits for the first payload byte). */
    uint64_t sofar = opcode == WSLAY_CONTINUATION_FRAME ? ws->msg_len : 0;
    if (len > ws->max_message - CN_MIN(sofar, ws->max_message))
        return CN_WS_CLOSE_TOO_BIG;
    ws->msg_len = sofar + len;
    return 0;
}

/**
 * Called with hdr[0..hdr_len) after each header byte. Returns 0, or the
 * close code for a header that RFC 6455 5.2 / 5.5 or our size limit
 * forbids and that wslay would answer without a code or too late.
 */
static uint16_t header_byte(cn_ws_t *ws)
{
    if (ws->hdr_len < 2)
        return 0;
    uint8_t len7 = ws->hdr[1] & 0x7f;
    unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (ws->hdr_len == 2) {
        uint8_t opcode = ws->hdr[0] & 0x0f;
        bool fin = (ws->hdr[0] & 0x80) != 0;
        /* RFC 6455 5.5: control frames are at most 125 bytes, not fragmented. */
        if ((opcode & 0x08) && (len7 > CN_WS_CTRL_MAX || !fin))
            return CN_WS_CLOSE_PROTOCOL;
        /* RFC 6455 5.5.1: a close body starts with a two-byte code. */
        if (opcode == WSLAY_CONNECTION_CLOSE && len7 == 1)
            return CN_WS_CLOSE_PROTOCOL;
        ws->hdr_need = (uint8_t)(2 + ext + ((ws->hdr[1] & 0x80) ? 4 : 0));
    }
    if (ws->hdr_len == 2 + ext) {
        uint16_t code = header_length(ws, len7);
        if (code)
            return code;
    }
    if (ws->hdr_len == ws->hdr_need) {
        ws->payload_left = ws->frame_len;
        ws->hdr_len = 0;
        ws->hdr_need = 2;
    }
    return 0;
}

/**
 * Returns how many of the n bytes at p wslay may read: all of them, or the
 * bytes before the header byte that made a frame invalid (scan_close).
 */
static size_t scan_input(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (ws->payload_left > 0) {
            size_t k = (size_t)CN_MIN(ws->payload_left, (uint64_t)(n - i));
            ws->payload_left -= k;
            i += k;
            continue;
        }
        /* The masking key is not kept: only the frame's length matters here. */
        if (ws->hdr_len < CN_WS_FRAME_HDR_MAX)
            ws->hdr[ws->hdr_len] = p[i];
        ws->hdr_len++;
        ws->scan_close = header_byte(ws);
        if (ws->scan_close)
            return i;
        i++;
    }
    return i;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    cn_ws_t *ws = user;
    (void)flags;
    size_t n = 0;
    if (!ws->scan_close && ws->in_off < ws->in_len)
        n = scan_input(ws, ws->in + ws->in_off, CN_MIN(len, ws->in_len - ws->in_off));
    if (n == 0) {
        /* Everything given to cn_ws_feed is consumed: wait for more. */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    memcpy(buf, ws->in + ws->in_off, n);
    ws->in_off += n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    cn_ws_t *ws = user;
    (void)flags;
    int rc = ws->cb.on_output(ws->cb_ctx, data, len);
    if (rc < 0) {
        ws->out_err = rc;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/** Fails the connection: queue a close with code and stop reading. */
static void fail(cn_ws_t *ws, uint16_t code)
{
    ws->closing = true;
    wslay_event_shutdown_read(ws->ctx);
    /* WSLAY_ERR_NO_MORE_MSG: a close is queued already; keep that one. */
    (void)wslay_event_queue_close(ws->ctx, code, NULL, 0);
}

static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    cn_ws_t *ws = user;
    (void)ctx;
    if (ws->cb.on_activity)
        ws->cb.on_activity(ws->cb_ctx);
    /* Only a message's first frame carries the text opcode (RFC 6455 5.4). */
    if (arg->opcode == WSLAY_TEXT_FRAME)
        fail(ws, CN_WS_CLOSE_UNSUPPORTED);
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    cn_ws_t *ws = user;
    (void)ctx;
    switch (arg->opcode) {
    case WSLAY_BINARY_FRAME:
        /* After our close, RFC 6455 1.4 lets us discard incoming data. */
        if (!ws->closing && !ws->dead)
            ws->cb.on_message(ws->cb_ctx, arg->msg ? arg->msg : empty_msg, arg->msg_length);
        break;
    case WSLAY_TEXT_FRAME:
        fail(ws, CN_WS_CLOSE_UNSUPPORTED);
        break;
    case WSLAY_CONNECTION_CLOSE:
        /* wslay has queued the echo of the peer's code (RFC 6455 5.5.1). */
        ws->peer_code = arg->status_code ? arg->status_code : CN_WS_CLOSE_NO_CODE;
        break;
    default:
        /* Pings are answered by wslay; pongs only count as activity. */
        break;
    }
}

cn_ws_t *cn_ws_new(const cn_ws_callbacks_t *cb, void *ctx, size_t max_message)
{
    if (!cb || !cb->on_message || !cb->on_output || max_message == 0)
        return NULL;
    cn_ws_t *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->cb = *cb;
    ws->cb_ctx = ctx;
    ws->hdr_need = 2;
    ws->max_message = max_message;
    /* No genmask callback: a server never masks (RFC 6455 5.1). */
    const struct wslay_event_callbacks wcb = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_frame_recv_start_callback = frame_start_cb,
        .on_msg_recv_callback = msg_cb,
    };
    if (wslay_event_context_server_init(&ws->ctx, &wcb, ws) != 0) {
        free(ws);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, max_message);
    return ws;
}

void cn_ws_free(cn_ws_t *ws)
{
    if (!ws)
        return;
    wslay_event_context_free(ws->ctx);
    free(ws);
}

/** Hands everything wslay has queued to on_output. */
static int flush(cn_ws_t *ws)
{
    if (ws->dead)
        return ws->out_err ? ws->out_err : CN_ECLOSED;
    if (wslay_event_send(ws->ctx) != 0) {
        ws->dead = true;
        return ws->out_err ? ws->out_err : CN_EINTERNAL;
    }
    return CN_OK;
}

static int wslay_to_cn(int r)
{
    switch (r) {
    case 0:
        return CN_OK;
    case WSLAY_ERR_NO_MORE_MSG:
        return CN_ECLOSED;
    case WSLAY_ERR_NOMEM:
        return CN_ENOMEM;
    case WSLAY_ERR_INVALID_ARGUMENT:
        return CN_EINVAL;
    default:
        return CN_EINTERNAL;
    }
}

/** The session's state after a feed, as documented at the top. */
static int feed_status(cn_ws_t *ws)
{
    if (wslay_event_get_read_enabled(ws->ctx))
        return CN_OK;
    return wslay_event_get_close_received(ws->ctx) ? CN_ECLOSED : CN_EPROTO;
}

int cn_ws_feed(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    CN_ENSURE(!ws->dead, ws->out_err ? ws->out_err : CN_ECLOSED);
    ws->in = p;
    ws->in_len = n;
    ws->in_off = 0;
    int r = wslay_event_recv(ws->ctx);
    ws->in = NULL;
    ws->in_len = ws->in_off = 0;
    if (ws->scan_close && wslay_event_get_read_enabled(ws->ctx))
        fail(ws, ws->scan_close);
    if (r == WSLAY_ERR_NOMEM)
        fail(ws, CN_WS_CLOSE_INTERNAL);
    /* Pongs, close echoes and whatever on_message queued go out now. */
    CN_TRY(flush(ws));
    if (r != 0 && r != WSLAY_ERR_CALLBACK_FAILURE)
        return wslay_to_cn(r);
    return feed_status(ws);
}

int cn_ws_send(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    CN_ENSURE(!ws->dead, CN_ECLOSED);
    const struct wslay_event_msg msg = {
        .opcode = WSLAY_BINARY_FRAME, .msg = n ? p : empty_msg, .msg_length = n};
    CN_TRY(wslay_to_cn(wslay_event_queue_msg(ws->ctx, &msg)));
    return flush(ws);
}

int cn_ws_ping(cn_ws_t *ws)
{
    CN_ENSURE(!ws->dead, CN_ECLOSED);
    const struct wslay_event_msg msg = {.opcode = WSLAY_PING, .msg = empty_msg, .msg_length = 0};
    CN_TRY(wslay_to_cn(wslay_event_queue_msg(ws->ctx, &msg)));
    return flush(ws);
}

/** RFC 6455 7.4: codes an endpoint may put in a close frame. */
static bool close_code_sendable(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int cn_ws_close(cn_ws_t *ws, uint16_t code, const char *reason)
{
    CN_ENSURE(!ws->dead, CN_ECLOSED);
    CN_ENSURE(close_code_sendable(code), CN_EINVAL);
    size_t len = reason ? strnlen(reason, CN_WS_REASON_MAX) : 0;
    /* The reason is ours and ASCII, so cutting it keeps it valid UTF-8. */
    CN_TRY(wslay_to_cn(wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, len)));
    ws->closing = true;
    return flush(ws);
}

bool cn_ws_closed(const cn_ws_t *ws)
{
    /* wslay's getters take a non-const pointer but only read. */
    wslay_event_context_ptr ctx = ws->ctx;
    return ws->dead || wslay_event_get_close_sent(ctx) || !wslay_event_get_write_enabled(ctx);
}

uint16_t cn_ws_peer_close_code(const cn_ws_t *ws)
{
    return ws->peer_code;
}

uint16_t cn_ws_sent_close_code(const cn_ws_t *ws)
{
    wslay_event_context_ptr ctx = ws->ctx;
    return wslay_event_get_close_sent(ctx) ? wslay_event_get_status_code_sent(ctx) : 0;
}

size_t cn_ws_queued(const cn_ws_t *ws)
{
    return wslay_event_get_queued_msg_length(ws->ctx);
}
