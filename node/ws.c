/*
 * Server side of RFC 6455, sans-I/O: a frame parser that works on the
 * caller's decrypted bytes and a frame writer that hands the header and the
 * payload straight to on_output.
 *
 * Input. A frame that is complete in the bytes of one feed is handed up
 * without a copy: cn_ws_feed_inplace unmasks it where it lies, cn_ws_feed
 * (read-only input) unmasks it into the session's buffer (control frames
 * into a 125-byte stack buffer). Only what cannot be handed up yet is kept:
 * the header bytes of a frame split inside its header (`hdr`, at most 14
 * bytes), and in `pend` the payload of a frame split inside its payload or
 * the fragments of a fragmented message. `pend` grows as bytes arrive (never
 * by the length a header announces), holds at most max_message bytes plus
 * one control frame between two fragments, and is freed at the end of the
 * feed that empties it: an idle session is this struct alone (about 100
 * bytes).
 *
 * Checks, in the order a header reveals them (the precedence the wslay
 * based session had, which tests/unit/node/test_ws.c and
 * tests/conformance/test_ws_conformance.py pin):
 * 1. at the second header byte: a control frame over 125 bytes or without
 *    FIN, a close frame with a one-byte body: 1002 (RFC 6455 5.5, 5.5.1);
 * 2. once the extended length is in: a non-minimal length or a 64-bit
 *    length with the top bit set, 1002 (5.2); a data frame that would take
 *    its message past max_message, 1009, before any payload arrives;
 * 3. then RSV bits (no extension is negotiated), an unmasked frame (5.1),
 *    a reserved opcode, a continuation with nothing to continue or a new
 *    data frame inside a fragmented message (5.4): 1002; a text frame: 1003
 *    (the wire protocol is binary only, DESIGN.md section 4);
 * 4. a close body: a code nobody may send, 1002 (7.4); a reason that is not
 *    UTF-8, 1007 (5.5.1, 8.1).
 *
 * Return values of the feeds: CN_OK while the session is usable (also
 * after cn_ws_close, while we wait for the peer's close); CN_ECLOSED once
 * the peer's close arrived (our answer was handed to on_output); CN_EPROTO
 * when the peer broke the protocol (our close frame with the reason code was
 * handed to on_output); otherwise on_output's error or CN_ENOMEM. In every
 * non-OK case the caller flushes what it has and closes the connection;
 * later feeds change nothing and return the same value.
 */
#include "node/transport.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* RFC 6455 5.2 frame layout. */
#define B0_FIN       0x80
#define B0_RSV       0x70
#define B0_OPCODE    0x0f
#define B1_MASK      0x80
#define B1_LEN       0x7f
#define OP_CONT      0x0
#define OP_TEXT      0x1
#define OP_BINARY    0x2
#define OP_CLOSE     0x8
#define OP_PING      0x9
#define OP_PONG      0xa
#define OP_CONTROL   0x8 /* set in every control opcode (5.5) */
#define LEN7_16      126 /* a 16-bit length follows */
#define LEN7_64      127 /* a 64-bit length follows */
#define MASK_KEY_LEN 4

#define CN_WS_CTRL_MAX      125 /* RFC 6455 5.5 */
#define CN_WS_HDR_MAX       14  /* 2 + 8 length bytes + 4 mask bytes */
#define CN_WS_LEN16_MIN     126
#define CN_WS_LEN64_MIN     65536
#define CN_WS_LEN64_TOP_BIT (1ull << 63)
#define CN_WS_CLOSE_NO_CODE 1005 /* RFC 6455 7.4.1: "no status code was present" */
#define CN_WS_REASON_MAX    123  /* 125 minus the two-byte code */
#define CN_WS_PEND_MIN      256  /* first allocation for a split frame */

struct cn_ws {
    cn_ws_callbacks_t cb;
    void *cb_ctx;
    /* Bytes kept between feeds: [message fragments: msg_len][current frame]. */
    uint8_t *pend;
    uint32_t pend_len;
    uint32_t pend_cap;
    uint32_t msg_len;           /* bytes of the fragmented message so far */
    uint32_t max_message;       /* <= CN_WS_MESSAGE_LIMIT */
    uint64_t frame_left;        /* payload bytes of a split frame still to come */
    uint8_t hdr[CN_WS_HDR_MAX]; /* a header split across feeds */
    uint8_t hdr_len;
    uint8_t b0;                 /* FIN and opcode of the frame being read */
    uint8_t mask[MASK_KEY_LEN]; /* its masking key */
    uint8_t mask_phase;         /* payload bytes read so far, mod 4 */
    bool in_payload;            /* reading a split frame's payload into pend */
    bool in_message;            /* a fragmented message is open */
    bool close_sent;            /* no more frames from us (RFC 6455 5.5.1) */
    bool dead;                  /* on_output failed: nothing more at all */
    uint16_t peer_code;
    uint16_t sent_code;
    int status; /* CN_OK, or what ended the session (on_output's error wins) */
};

/* A parsed frame header. */
typedef struct frame_hdr {
    uint64_t len;
    uint8_t b0;
    uint8_t size; /* header bytes, masking key included */
    uint8_t mask[MASK_KEY_LEN];
} frame_hdr_t;

static const uint8_t empty_payload[1];

/* ------------------------------------------------------------- output */

static int emit(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    int rc = ws->cb.on_output(ws->cb_ctx, p, n);
    if (rc < 0) {
        ws->dead = true;
        ws->status = rc;
    }
    return rc < 0 ? rc : CN_OK;
}

/**
 * Writes one unmasked server frame (RFC 6455 5.1): the header from a stack
 * buffer, then the payload from where the caller has it. A small frame goes
 * out in one on_output call with its payload copied behind the header.
 */
static int write_frame(cn_ws_t *ws, uint8_t b0, const uint8_t *p, size_t n)
{
    uint8_t buf[CN_WS_HDR_MAX + CN_WS_CTRL_MAX];
    size_t h = 2;
    buf[0] = b0;
    if (n < CN_WS_LEN16_MIN) {
        buf[1] = (uint8_t)n;
    } else if (n < CN_WS_LEN64_MIN) {
        buf[1] = LEN7_16;
        buf[2] = (uint8_t)(n >> 8);
        buf[3] = (uint8_t)n;
        h = 4;
    } else {
        buf[1] = LEN7_64;
        cn_store_u64be(&buf[2], (uint64_t)n);
        h = 10;
    }
    if (n <= CN_WS_CTRL_MAX) {
        if (n)
            memcpy(buf + h, p, n);
        return emit(ws, buf, h + n);
    }
    CN_TRY(emit(ws, buf, h));
    return emit(ws, p, n);
}

/** Sends our close frame: code (none when 0) and reason. */
static int send_close(cn_ws_t *ws, uint16_t code, const uint8_t *reason, size_t len)
{
    uint8_t body[CN_WS_CTRL_MAX];
    size_t n = 0;
    if (code) {
        body[0] = (uint8_t)(code >> 8);
        body[1] = (uint8_t)code;
        len = CN_MIN(len, (size_t)CN_WS_REASON_MAX);
        if (len)
            memcpy(body + 2, reason, len);
        n = 2 + len;
    }
    ws->close_sent = true;
    ws->sent_code = code ? code : CN_WS_CLOSE_NO_CODE;
    return write_frame(ws, B0_FIN | OP_CLOSE, body, n);
}

/** Fails the connection (RFC 6455 7.1.7): our close with code, then no more input. */
static void fail(cn_ws_t *ws, uint16_t code, int status)
{
    /* After our own close the peer gets no second one. */
    if (!ws->close_sent && !ws->dead)
        (void)send_close(ws, code, NULL, 0);
    if (ws->status == CN_OK)
        ws->status = status;
}

/* -------------------------------------------------------------- input */

/** Unmasks n bytes from src into dst (which may be src); phase = bytes of the payload before. */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[MASK_KEY_LEN],
                   unsigned phase)
{
    uint8_t key[8];
    for (unsigned i = 0; i < sizeof(key); i++)
        key[i] = mask[(phase + i) % MASK_KEY_LEN];
    uint64_t k;
    memcpy(&k, key, sizeof(k));
    size_t i = 0;
    /* Eight bytes at a time; memcpy keeps unaligned access defined. */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, sizeof(w));
        w ^= k;
        memcpy(dst + i, &w, sizeof(w));
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ key[i % 8];
}

/** RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            lo = c == 0xe0 ? 0xa0 : lo;
            hi = c == 0xed ? 0x9f : hi;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            lo = c == 0xf0 ? 0x90 : lo;
            hi = c == 0xf4 ? 0x8f : hi;
        } else {
            return false;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

/** RFC 6455 7.4: codes an endpoint may put in a close frame. */
static bool close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/** The frame's own rules once its length is known (checks 2 and 3 above). */
static uint16_t frame_rules(const cn_ws_t *ws, uint8_t b0, uint8_t b1, uint64_t len)
{
    uint8_t op = b0 & B0_OPCODE;
    if (!(op & OP_CONTROL)) {
        /* Refuse a message that will not fit from its header, before any payload. */
        uint64_t sofar = op == OP_CONT && ws->in_message ? ws->msg_len : 0;
        if (len > ws->max_message - sofar)
            return CN_WS_CLOSE_TOO_BIG;
    }
    /* RFC 6455 5.2: no extension was negotiated, so every RSV bit is 0. */
    if (b0 & B0_RSV)
        return CN_WS_CLOSE_PROTOCOL;
    /* RFC 6455 5.1: a client masks every frame it sends. */
    if (!(b1 & B1_MASK))
        return CN_WS_CLOSE_PROTOCOL;
    switch (op) {
    case OP_CONT:
        /* RFC 6455 5.4: a continuation continues something. */
        return ws->in_message ? 0 : CN_WS_CLOSE_PROTOCOL;
    case OP_TEXT:
    case OP_BINARY:
        /* RFC 6455 5.4: no new message inside a fragmented one. */
        if (ws->in_message)
            return CN_WS_CLOSE_PROTOCOL;
        /* Only a message's first frame carries the text opcode. */
        return op == OP_TEXT ? CN_WS_CLOSE_UNSUPPORTED : 0;
    case OP_CLOSE:
    case OP_PING:
    case OP_PONG:
        return 0;
    default:
        return CN_WS_CLOSE_PROTOCOL; /* reserved opcodes */
    }
}

/**
 * Parses a frame header from p[0..n). Returns CN_OK with *f filled,
 * CN_EAGAIN when the header is incomplete but nothing in it is wrong yet,
 * or CN_EPROTO with the close code the peer gets in *code.
 */
static int header_parse(const cn_ws_t *ws, const uint8_t *p, size_t n, frame_hdr_t *f,
                        uint16_t *code)
{
    CN_ENSURE(n >= 2, CN_EAGAIN);
    uint8_t b0 = p[0], b1 = p[1];
    uint8_t op = b0 & B0_OPCODE, len7 = b1 & B1_LEN;
    *code = CN_WS_CLOSE_PROTOCOL;
    /* RFC 6455 5.5: control frames are at most 125 bytes, not fragmented. */
    CN_ENSURE(!(op & OP_CONTROL) || (len7 <= CN_WS_CTRL_MAX && (b0 & B0_FIN)), CN_EPROTO);
    /* RFC 6455 5.5.1: a close body starts with a two-byte code. */
    CN_ENSURE(op != OP_CLOSE || len7 != 1, CN_EPROTO);
    size_t ext = len7 == LEN7_16 ? 2 : len7 == LEN7_64 ? 8 : 0;
    CN_ENSURE(n >= 2 + ext, CN_EAGAIN);
    uint64_t len = len7;
    /* RFC 6455 5.2: the minimal number of bytes must be used, and the most
     * significant bit of a 64-bit length must be 0. */
    if (ext == 2) {
        len = ((uint64_t)p[2] << 8) | p[3];
        CN_ENSURE(len >= CN_WS_LEN16_MIN, CN_EPROTO);
    } else if (ext == 8) {
        len = cn_load_u64be(&p[2]);
        CN_ENSURE(!(len & CN_WS_LEN64_TOP_BIT) && len >= CN_WS_LEN64_MIN, CN_EPROTO);
    }
    *code = frame_rules(ws, b0, b1, len);
    CN_ENSURE(*code == 0, CN_EPROTO);
    size_t size = 2 + ext + MASK_KEY_LEN;
    CN_ENSURE(n >= size, CN_EAGAIN);
    f->len = len;
    f->b0 = b0;
    f->size = (uint8_t)size;
    memcpy(f->mask, p + 2 + ext, MASK_KEY_LEN);
    return CN_OK;
}

/**
 * Takes a header from the input, or from what an earlier feed left in hdr
 * plus the input. *used is the number of input bytes consumed.
 */
static int header_take(cn_ws_t *ws, const uint8_t *p, size_t n, frame_hdr_t *f, size_t *used,
                       uint16_t *code)
{
    int rc;
    if (ws->hdr_len == 0) {
        rc = header_parse(ws, p, n, f, code);
        if (rc == CN_OK) {
            *used = f->size;
        } else if (rc == CN_EAGAIN) {
            assert(n < sizeof(ws->hdr));
            memcpy(ws->hdr, p, n);
            ws->hdr_len = (uint8_t)n;
            *used = n;
        }
        return rc;
    }
    size_t k = CN_MIN(n, sizeof(ws->hdr) - ws->hdr_len);
    memcpy(ws->hdr + ws->hdr_len, p, k);
    rc = header_parse(ws, ws->hdr, ws->hdr_len + k, f, code);
    if (rc == CN_OK) {
        *used = f->size - ws->hdr_len;
        ws->hdr_len = 0;
    } else if (rc == CN_EAGAIN) {
        ws->hdr_len = (uint8_t)(ws->hdr_len + k);
        *used = k;
    }
    return rc;
}

/** Makes room for extra more bytes in pend, growing geometrically up to the limit. */
static int pend_reserve(cn_ws_t *ws, size_t extra)
{
    size_t need = (size_t)ws->pend_len + extra;
    if (need <= ws->pend_cap)
        return CN_OK;
    /* The header checks bound what pend ever holds. */
    size_t limit = (size_t)ws->max_message + CN_WS_CTRL_MAX;
    assert(need <= limit);
    size_t cap = CN_MAX((size_t)ws->pend_cap * 2, (size_t)CN_WS_PEND_MIN);
    cap = CN_MIN(CN_MAX(cap, need), limit);
    uint8_t *p = realloc(ws->pend, cap);
    CN_ENSURE(p, CN_ENOMEM);
    ws->pend = p;
    ws->pend_cap = (uint32_t)cap;
    return CN_OK;
}

static void pend_release(cn_ws_t *ws)
{
    free(ws->pend);
    ws->pend = NULL;
    ws->pend_len = ws->pend_cap = 0;
}

static void deliver(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    /* After our close, RFC 6455 1.4 lets us discard incoming data. */
    if (!ws->close_sent && !ws->dead)
        ws->cb.on_message(ws->cb_ctx, n ? p : empty_payload, n);
}

static void on_close_frame(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    uint16_t code = CN_WS_CLOSE_NO_CODE;
    if (n >= 2) {
        code = (uint16_t)((p[0] << 8) | p[1]);
        if (!close_code_valid(code)) {
            fail(ws, CN_WS_CLOSE_PROTOCOL, CN_EPROTO);
            return;
        }
        if (!utf8_valid(p + 2, n - 2)) {
            fail(ws, CN_WS_CLOSE_BAD_DATA, CN_EPROTO);
            return;
        }
    }
    ws->peer_code = code;
    ws->status = CN_ECLOSED;
    /* RFC 6455 5.5.1: answer with a close, echoing the peer's code (none
     * when it sent none) and reason, unless ours went out already. */
    if (!ws->close_sent)
        (void)send_close(ws, n >= 2 ? code : 0, p + 2, n >= 2 ? n - 2 : 0);
}

static void on_control_frame(cn_ws_t *ws, uint8_t op, const uint8_t *p, size_t n)
{
    switch (op) {
    case OP_PING:
        /* RFC 6455 5.5.3: the pong carries the ping's payload. */
        if (!ws->close_sent)
            (void)write_frame(ws, B0_FIN | OP_PONG, p, n);
        break;
    case OP_CLOSE:
        on_close_frame(ws, p, n);
        break;
    default:
        /* An unsolicited pong is allowed (5.5.3); it counted as activity. */
        break;
    }
}

/** A split or fragmented frame's payload is complete in pend. */
static void pend_frame_done(cn_ws_t *ws)
{
    uint8_t op = ws->b0 & B0_OPCODE;
    ws->in_payload = false;
    if (op & OP_CONTROL) {
        /* Between two fragments: its payload sits behind the message's. */
        on_control_frame(ws, op, ws->pend + ws->msg_len, ws->pend_len - ws->msg_len);
        ws->pend_len = ws->msg_len;
        return;
    }
    ws->msg_len = ws->pend_len;
    ws->in_message = !(ws->b0 & B0_FIN);
    if (ws->in_message)
        return;
    size_t n = ws->msg_len;
    ws->msg_len = ws->pend_len = 0; /* the bytes stay valid until this feed returns */
    deliver(ws, ws->pend, n);
}

/** Copies (unmasked) up to frame_left payload bytes of a split frame into pend. */
static size_t pend_take(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    size_t k = (size_t)CN_MIN((uint64_t)n, ws->frame_left);
    if (k) {
        if (pend_reserve(ws, k) < 0) {
            fail(ws, CN_WS_CLOSE_INTERNAL, CN_ENOMEM);
            return n;
        }
        unmask(ws->pend + ws->pend_len, p, k, ws->mask, ws->mask_phase);
        ws->pend_len += (uint32_t)k;
        ws->mask_phase = (uint8_t)((ws->mask_phase + k) % MASK_KEY_LEN);
        ws->frame_left -= k;
    }
    if (ws->frame_left == 0)
        pend_frame_done(ws);
    return k;
}

/**
 * A frame whose payload is all in the input and that is a message or a
 * control frame by itself: unmask and hand it up without keeping it.
 * wp is the writable view of p, or NULL.
 */
static void frame_whole(cn_ws_t *ws, const uint8_t *p, uint8_t *wp, size_t n)
{
    uint8_t op = ws->b0 & B0_OPCODE;
    uint8_t ctl[CN_WS_CTRL_MAX];
    uint8_t *dst = wp;
    if (!dst && (op & OP_CONTROL)) {
        dst = ctl;
    } else if (!dst) {
        /* Read-only input: pend is empty here (no message is open) and
         * serves as scratch until the feed returns. */
        assert(ws->pend_len == 0);
        if (pend_reserve(ws, n) < 0) {
            fail(ws, CN_WS_CLOSE_INTERNAL, CN_ENOMEM);
            return;
        }
        dst = ws->pend;
    }
    unmask(dst, p, n, ws->mask, 0);
    if (op & OP_CONTROL)
        on_control_frame(ws, op, dst, n);
    else
        deliver(ws, dst, n);
}

/** Reads a frame header, then as much of the frame as the input holds. */
static size_t frame_start(cn_ws_t *ws, const uint8_t *p, uint8_t *wp, size_t n)
{
    frame_hdr_t f;
    uint16_t code = 0;
    size_t used = 0;
    int rc = header_take(ws, p, n, &f, &used, &code);
    if (rc == CN_EAGAIN)
        return used;
    if (rc < 0) {
        fail(ws, code, CN_EPROTO);
        return n;
    }
    if (ws->cb.on_activity)
        ws->cb.on_activity(ws->cb_ctx);
    ws->b0 = f.b0;
    memcpy(ws->mask, f.mask, MASK_KEY_LEN);
    ws->mask_phase = 0;
    uint8_t op = f.b0 & B0_OPCODE;
    bool alone = (op & OP_CONTROL) || (op == OP_BINARY && (f.b0 & B0_FIN));
    if (alone && f.len <= n - used) {
        frame_whole(ws, p + used, wp ? wp + used : NULL, (size_t)f.len);
        return used + (size_t)f.len;
    }
    ws->frame_left = f.len;
    ws->in_payload = true;
    return used + pend_take(ws, p + used, n - used);
}

/** Both feeds; wp is p when the caller lets us unmask in place, else NULL. */
static int feed(cn_ws_t *ws, const uint8_t *p, uint8_t *wp, size_t n)
{
    CN_ENSURE(ws->status == CN_OK, ws->status);
    size_t off = 0;
    while (off < n && ws->status == CN_OK) {
        if (ws->in_payload)
            off += pend_take(ws, p + off, n - off);
        else
            off += frame_start(ws, p + off, wp ? wp + off : NULL, n - off);
    }
    /* A finished session keeps nothing; nor does one with nothing split. */
    if (ws->status != CN_OK) {
        pend_release(ws);
        ws->msg_len = ws->hdr_len = 0;
    } else if (ws->pend_len == 0) {
        pend_release(ws);
    }
    return ws->status;
}

/* ---------------------------------------------------------------- API */

cn_ws_t *cn_ws_new(const cn_ws_callbacks_t *cb, void *ctx, size_t max_message)
{
    if (!cb || !cb->on_message || !cb->on_output || max_message == 0 ||
        max_message > CN_WS_MESSAGE_LIMIT)
        return NULL;
    cn_ws_t *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->cb = *cb;
    ws->cb_ctx = ctx;
    ws->max_message = (uint32_t)max_message;
    return ws;
}

void cn_ws_free(cn_ws_t *ws)
{
    if (!ws)
        return;
    free(ws->pend);
    free(ws);
}

int cn_ws_feed(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    return feed(ws, p, NULL, n);
}

int cn_ws_feed_inplace(cn_ws_t *ws, uint8_t *p, size_t n)
{
    return feed(ws, p, p, n);
}

int cn_ws_send(cn_ws_t *ws, const uint8_t *p, size_t n)
{
    CN_ENSURE(!ws->dead && !ws->close_sent, CN_ECLOSED);
    return write_frame(ws, B0_FIN | OP_BINARY, n ? p : empty_payload, n);
}

int cn_ws_ping(cn_ws_t *ws)
{
    CN_ENSURE(!ws->dead && !ws->close_sent, CN_ECLOSED);
    return write_frame(ws, B0_FIN | OP_PING, empty_payload, 0);
}

int cn_ws_close(cn_ws_t *ws, uint16_t code, const char *reason)
{
    CN_ENSURE(!ws->dead, CN_ECLOSED);
    CN_ENSURE(close_code_valid(code), CN_EINVAL);
    CN_ENSURE(!ws->close_sent, CN_ECLOSED);
    size_t len = reason ? strnlen(reason, CN_WS_REASON_MAX) : 0;
    /* The reason is ours and ASCII, so cutting it keeps it valid UTF-8. */
    return send_close(ws, code, (const uint8_t *)reason, len);
}

bool cn_ws_closed(const cn_ws_t *ws)
{
    return ws->dead || ws->close_sent;
}

uint16_t cn_ws_peer_close_code(const cn_ws_t *ws)
{
    return ws->peer_code;
}

uint16_t cn_ws_sent_close_code(const cn_ws_t *ws)
{
    return ws->close_sent ? ws->sent_code : 0;
}

size_t cn_ws_buffered(const cn_ws_t *ws)
{
    return (size_t)ws->pend_len + ws->hdr_len;
}

size_t cn_ws_buffer_capacity(const cn_ws_t *ws)
{
    return ws->pend_cap;
}
