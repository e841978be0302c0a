/*
 * Fuzzes the server-side RFC 6455 codec (node/ws.c). The input after its
 * first two bytes is fed twice to fresh sessions: once whole through the
 * in-place feed, once in three pieces (split points taken from the first
 * two bytes, so headers and payloads cross feed boundaries) through the
 * read-only feed. Both must deliver the same messages, write the same
 * bytes and end the same way; buffered input must stay within the
 * message limit plus one control frame, and a finished session must hold
 * no buffer. Messages are capped at a small maximum so 1009 paths are
 * reached.
 */
#include "node/transport.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_MESSAGE 1024
#define FUZZ_HELD_MAX    (FUZZ_MAX_MESSAGE + 125 + 14) /* + a control frame + a header */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct trace {
    cn_buf_t msgs; /* each message: u32 length, bytes */
    cn_buf_t out;  /* everything the session wrote */
    int rc;
} trace_t;

static void on_message(void *ctx, const uint8_t *p, size_t n)
{
    trace_t *t = ctx;
    if (n > FUZZ_MAX_MESSAGE)
        __builtin_trap();
    if (cn_buf_put_u32be(&t->msgs, (uint32_t)n) != CN_OK || cn_buf_append(&t->msgs, p, n) != CN_OK)
        __builtin_trap();
}

static int on_output(void *ctx, const uint8_t *p, size_t n)
{
    trace_t *t = ctx;
    return cn_buf_append(&t->out, p, n);
}

static const cn_ws_callbacks_t callbacks = {.on_message = on_message, .on_output = on_output};

static void check_held(const cn_ws_t *ws, int rc)
{
    if (cn_ws_buffered(ws) > FUZZ_HELD_MAX || cn_ws_buffer_capacity(ws) > FUZZ_HELD_MAX)
        __builtin_trap();
    if (rc != CN_OK && cn_ws_buffer_capacity(ws) != 0)
        __builtin_trap();
}

/* Feeds p[0..n) from an exact-size heap copy, so reads past it are caught. */
static int feed_copy(cn_ws_t *ws, const uint8_t *p, size_t n, bool inplace)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        return CN_ENOMEM;
    if (n)
        memcpy(copy, p, n);
    int rc = inplace ? cn_ws_feed_inplace(ws, copy, n) : cn_ws_feed(ws, copy, n);
    free(copy);
    check_held(ws, rc);
    return rc;
}

static bool same(const cn_buf_t *a, const cn_buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t body = size - 2;
    size_t a = body ? data[0] % (body + 1) : 0;
    size_t b = a + (body - a ? data[1] % (body - a + 1) : 0);
    const uint8_t *p = data + 2;
    trace_t whole = {0}, split = {0};
    cn_ws_t *w = cn_ws_new(&callbacks, &whole, FUZZ_MAX_MESSAGE);
    cn_ws_t *s = cn_ws_new(&callbacks, &split, FUZZ_MAX_MESSAGE);
    if (!w || !s)
        __builtin_trap();
    whole.rc = feed_copy(w, p, body, true);
    split.rc = feed_copy(s, p, a, false);
    if (split.rc == CN_OK)
        split.rc = feed_copy(s, p + a, b - a, false);
    if (split.rc == CN_OK)
        split.rc = feed_copy(s, p + b, body - b, false);
    if (whole.rc != split.rc || !same(&whole.msgs, &split.msgs) || !same(&whole.out, &split.out) ||
        cn_ws_buffered(w) != cn_ws_buffered(s) ||
        cn_ws_peer_close_code(w) != cn_ws_peer_close_code(s) ||
        cn_ws_sent_close_code(w) != cn_ws_sent_close_code(s) || cn_ws_closed(w) != cn_ws_closed(s))
        __builtin_trap();
    /* A finished session stays finished. */
    if (split.rc != CN_OK && feed_copy(s, p, body, false) != split.rc)
        __builtin_trap();
    if (split.rc == CN_OK && !cn_ws_closed(s)) {
        uint8_t reply[3] = {1, 2, 3};
        if (cn_ws_send(s, reply, sizeof(reply)) != CN_OK || cn_ws_ping(s) != CN_OK)
            __builtin_trap();
        if (cn_ws_close(s, CN_WS_CLOSE_NORMAL, "bye") != CN_OK || !cn_ws_closed(s))
            __builtin_trap();
        if (cn_ws_send(s, reply, sizeof(reply)) != CN_ECLOSED)
            __builtin_trap();
    }
    cn_ws_free(w);
    cn_ws_free(s);
    cn_buf_dispose(&whole.msgs);
    cn_buf_dispose(&whole.out);
    cn_buf_dispose(&split.msgs);
    cn_buf_dispose(&split.out);
    return 0;
}
