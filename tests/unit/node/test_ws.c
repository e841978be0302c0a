/*
 * Server-side RFC 6455 sessions (cn_ws over wslay): client frames are built
 * by hand with masks, server output is parsed back and checked to be
 * unmasked. Covers delivery, fragmentation, ping/pong, the closing
 * handshake and each way a peer can break the protocol, with the close code
 * it must get.
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
#include "tests/unit/node/ws_test_frames.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MSG 1000

typedef struct rec {
    cn_ws_t *ws;
    cn_buf_t out;  /* everything the server sent */
    cn_buf_t last; /* the last message delivered */
    size_t messages;
    size_t activity;
    int fail_output; /* when set, on_output returns it */
    bool echo;       /* answer each message from inside on_message */
} rec_t;

typedef struct srv_frame {
    uint8_t b0; /* FIN, RSV and opcode */
    bool masked;
    const uint8_t *payload;
    size_t len;
} srv_frame_t;

static void on_message(void *ctx, const uint8_t *p, size_t n)
{
    rec_t *r = ctx;
    r->messages++;
    cn_buf_reset(&r->last);
    assert_int_equal(cn_buf_append(&r->last, p, n), CN_OK);
    if (r->echo)
        assert_int_equal(cn_ws_send(r->ws, p, n), CN_OK);
}

static int on_output(void *ctx, const uint8_t *p, size_t n)
{
    rec_t *r = ctx;
    if (r->fail_output)
        return r->fail_output;
    return cn_buf_append(&r->out, p, n);
}

static void on_activity(void *ctx)
{
    ((rec_t *)ctx)->activity++;
}

static rec_t *rec_new(size_t max_message)
{
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    cn_buf_init(&r->out);
    cn_buf_init(&r->last);
    const cn_ws_callbacks_t cb = {
        .on_message = on_message, .on_output = on_output, .on_activity = on_activity};
    r->ws = cn_ws_new(&cb, r, max_message);
    assert_non_null(r->ws);
    return r;
}

static void rec_free(rec_t *r)
{
    cn_ws_free(r->ws);
    cn_buf_dispose(&r->out);
    cn_buf_dispose(&r->last);
    free(r);
}

static void close_frame(cn_buf_t *b, uint16_t code, const char *reason)
{
    uint8_t p[125];
    size_t n = strlen(reason);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, n);
    frame(b, FIN | OP_CLOSE, p, n + 2);
}

/** Parses the server frame at *off in out; false at the end. */
static bool next_srv_frame(const cn_buf_t *out, size_t *off, srv_frame_t *f)
{
    if (*off >= out->len)
        return false;
    const uint8_t *p = out->data + *off;
    size_t left = out->len - *off;
    assert_true(left >= 2);
    size_t hdr = 2;
    uint64_t len = p[1] & 0x7f;
    f->b0 = p[0];
    f->masked = (p[1] & 0x80) != 0;
    if (len == 126) {
        assert_true(left >= 4);
        len = ((uint64_t)p[2] << 8) | p[3];
        hdr = 4;
    } else if (len == 127) {
        assert_true(left >= 10);
        len = cn_load_u64be(p + 2);
        hdr = 10;
    }
    /* RFC 6455 5.1: a server MUST NOT mask. */
    assert_false(f->masked);
    assert_true(left >= hdr + len);
    f->payload = p + hdr;
    f->len = (size_t)len;
    *off += hdr + (size_t)len;
    return true;
}

/** Asserts the server's output is exactly one close frame with code. */
static void expect_only_close(const rec_t *r, uint16_t code)
{
    size_t off = 0;
    srv_frame_t f;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_true(f.len >= 2);
    assert_int_equal(((unsigned)f.payload[0] << 8) | f.payload[1], code);
    assert_false(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(cn_ws_sent_close_code(r->ws), code);
    assert_true(cn_ws_closed(r->ws));
}

static int feed(rec_t *r, const cn_buf_t *in)
{
    return cn_ws_feed(r->ws, in->data, in->len);
}

/** Feeds a protocol violation and expects CN_EPROTO, no message, close code. */
static void expect_violation(const cn_buf_t *in, size_t max, uint16_t code)
{
    rec_t *r = rec_new(max);
    assert_int_equal(feed(r, in), CN_EPROTO);
    assert_int_equal(r->messages, 0);
    expect_only_close(r, code);
    /* Later input is ignored and does not revive the session. */
    assert_int_not_equal(feed(r, in), CN_OK);
    assert_int_equal(r->messages, 0);
    rec_free(r);
}

static void test_single_binary_message(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_BINARY, "hello", 5);
    assert_int_equal(feed(r, &in), CN_OK);
    assert_int_equal(r->messages, 1);
    assert_int_equal(r->last.len, 5);
    assert_memory_equal(r->last.data, "hello", 5);
    assert_int_equal(r->out.len, 0);
    assert_int_equal(r->activity, 1);
    assert_false(cn_ws_closed(r->ws));
    assert_int_equal(cn_ws_peer_close_code(r->ws), 0);
    assert_int_equal(cn_ws_sent_close_code(r->ws), 0);
    /* An empty binary message is a message too. */
    cn_buf_reset(&in);
    frame(&in, FIN | OP_BINARY, "", 0);
    assert_int_equal(feed(r, &in), CN_OK);
    assert_int_equal(r->messages, 2);
    assert_int_equal(r->last.len, 0);
    cn_buf_dispose(&in);
    rec_free(r);
}

/** A fragmented message with a ping between its fragments. */
static void build_fragmented(cn_buf_t *in)
{
    frame(in, OP_BINARY, "hel", 3);
    frame(in, FIN | OP_PING, "p!", 2);
    frame(in, OP_CONT, "lo ", 3);
    frame(in, FIN | OP_CONT, "world", 5);
}

static void check_fragmented(const rec_t *r)
{
    assert_int_equal(r->messages, 1);
    assert_int_equal(r->last.len, 11);
    assert_memory_equal(r->last.data, "hello world", 11);
    size_t off = 0;
    srv_frame_t f;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.b0, FIN | OP_PONG);
    assert_int_equal(f.len, 2);
    assert_memory_equal(f.payload, "p!", 2);
    assert_false(next_srv_frame(&r->out, &off, &f));
}

static void test_fragmented_reassembled(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    cn_buf_t in;
    cn_buf_init(&in);
    build_fragmented(&in);
    assert_int_equal(feed(r, &in), CN_OK);
    check_fragmented(r);
    assert_int_equal(r->activity, 4);
    cn_buf_dispose(&in);
    rec_free(r);
}

static void test_one_byte_at_a_time(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    cn_buf_t in;
    cn_buf_init(&in);
    build_fragmented(&in);
    for (size_t i = 0; i < in.len; i++)
        assert_int_equal(cn_ws_feed(r->ws, in.data + i, 1), CN_OK);
    check_fragmented(r);
    /* A close split byte by byte still completes the handshake. */
    cn_buf_reset(&in);
    cn_buf_reset(&r->out);
    close_frame(&in, CN_WS_CLOSE_NORMAL, "");
    for (size_t i = 0; i + 1 < in.len; i++)
        assert_int_equal(cn_ws_feed(r->ws, in.data + i, 1), CN_OK);
    assert_int_equal(cn_ws_feed(r->ws, in.data + in.len - 1, 1), CN_ECLOSED);
    expect_only_close(r, CN_WS_CLOSE_NORMAL);
    cn_buf_dispose(&in);
    rec_free(r);
}

static void test_ping_answered_with_same_payload(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    uint8_t payload[125];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_PING, payload, sizeof(payload));
    frame(&in, FIN | OP_PONG, "x", 1); /* unsolicited pong: ignored */
    assert_int_equal(feed(r, &in), CN_OK);
    size_t off = 0;
    srv_frame_t f;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.b0, FIN | OP_PONG);
    assert_int_equal(f.len, sizeof(payload));
    assert_memory_equal(f.payload, payload, sizeof(payload));
    assert_false(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(r->messages, 0);
    assert_int_equal(r->activity, 2);
    cn_buf_dispose(&in);
    rec_free(r);
}

static void test_text_frame_closes_1003(void **state)
{
    (void)state;
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_TEXT, "hi", 2);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_UNSUPPORTED);
    /* Refused at its first fragment, before the rest arrives. */
    cn_buf_reset(&in);
    frame(&in, OP_TEXT, "h", 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_UNSUPPORTED);
    cn_buf_dispose(&in);
}

static void test_unmasked_closes_1002(void **state)
{
    (void)state;
    cn_buf_t in;
    cn_buf_init(&in);
    frame_ex(&in, FIN | OP_BINARY, false, 5, 0, "hello", 5);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_reset(&in);
    frame_ex(&in, FIN | OP_PING, false, 0, 0, "", 0);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_dispose(&in);
}

static void test_oversized_closes_1009(void **state)
{
    (void)state;
    uint8_t big[MAX_MSG + 1];
    memset(big, 'b', sizeof(big));
    cn_buf_t in;
    cn_buf_init(&in);
    /* One frame over the limit, refused from its header alone. */
    frame(&in, FIN | OP_BINARY, big, MAX_MSG + 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_TOO_BIG);
    cn_buf_reset(&in);
    frame_ex(&in, FIN | OP_BINARY, true, MAX_MSG + 1, 0, NULL, 0);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_TOO_BIG);
    /* The largest length RFC 6455 allows, 2^63 - 1: no allocation is tried
     * (ASan would abort on one that size). */
    cn_buf_reset(&in);
    frame_ex(&in, FIN | OP_BINARY, true, INT64_MAX, 8, NULL, 0);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_TOO_BIG);
    /* Fragments that are small alone but too big together. */
    cn_buf_reset(&in);
    frame(&in, OP_BINARY, big, 600);
    frame(&in, FIN | OP_CONT, big, 401);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_TOO_BIG);
    /* Exactly at the limit is fine. */
    rec_t *r = rec_new(MAX_MSG);
    cn_buf_reset(&in);
    frame(&in, OP_BINARY, big, 600);
    frame(&in, FIN | OP_CONT, big, 400);
    assert_int_equal(feed(r, &in), CN_OK);
    assert_int_equal(r->messages, 1);
    assert_int_equal(r->last.len, MAX_MSG);
    rec_free(r);
    cn_buf_dispose(&in);
}

static void test_bad_lengths_close_1002(void **state)
{
    (void)state;
    cn_buf_t in;
    cn_buf_init(&in);
    /* RFC 6455 5.2: the top bit of a 64-bit length must be 0 (2^63). */
    frame_ex(&in, FIN | OP_BINARY, true, 1ull << 63, 8, NULL, 0);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    /* Non-minimal encodings. */
    cn_buf_reset(&in);
    frame_ex(&in, FIN | OP_BINARY, true, 5, 2, "hello", 5);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_reset(&in);
    frame_ex(&in, FIN | OP_BINARY, true, 5, 8, "hello", 5);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_dispose(&in);
}

static void test_control_frame_rules_1002(void **state)
{
    (void)state;
    uint8_t p[126] = {0};
    cn_buf_t in;
    cn_buf_init(&in);
    /* RFC 6455 5.5: at most 125 bytes ... */
    frame(&in, FIN | OP_PING, p, 126);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    /* ... and never fragmented. */
    cn_buf_reset(&in);
    frame(&in, OP_PING, p, 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    /* RFC 6455 5.5.1: a one-byte close body cannot hold a code. */
    cn_buf_reset(&in);
    frame(&in, FIN | OP_CLOSE, p, 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    /* A close code nobody may send (RFC 6455 7.4.1). */
    cn_buf_reset(&in);
    close_frame(&in, 1005, "");
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_reset(&in);
    close_frame(&in, 999, "");
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_dispose(&in);
}

static void test_reserved_bits_and_opcodes_1002(void **state)
{
    (void)state;
    cn_buf_t in;
    cn_buf_init(&in);
    for (uint8_t rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        cn_buf_reset(&in);
        frame(&in, FIN | rsv | OP_BINARY, "x", 1);
        expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    }
    /* Reserved opcodes, a continuation with nothing to continue, a new data
     * frame inside a fragmented message. */
    cn_buf_reset(&in);
    frame(&in, FIN | 0x3, "x", 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_reset(&in);
    frame(&in, FIN | 0xb, "x", 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_reset(&in);
    frame(&in, FIN | OP_CONT, "x", 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_reset(&in);
    frame(&in, OP_BINARY, "x", 1);
    frame(&in, FIN | OP_BINARY, "y", 1);
    expect_violation(&in, MAX_MSG, CN_WS_CLOSE_PROTOCOL);
    cn_buf_dispose(&in);
}

static void test_close_handshake_echoes(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    cn_buf_t in;
    cn_buf_init(&in);
    close_frame(&in, CN_WS_CLOSE_GOING_AWAY, "bye");
    frame(&in, FIN | OP_BINARY, "late", 4); /* after the close: ignored */
    assert_int_equal(feed(r, &in), CN_ECLOSED);
    assert_int_equal(cn_ws_peer_close_code(r->ws), CN_WS_CLOSE_GOING_AWAY);
    expect_only_close(r, CN_WS_CLOSE_GOING_AWAY);
    size_t off = 0;
    srv_frame_t f;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.payload + 2, "bye", 3);
    assert_int_equal(r->messages, 0);
    assert_int_equal(cn_ws_send(r->ws, (const uint8_t *)"x", 1), CN_ECLOSED);
    rec_free(r);

    /* A close without a code is echoed without one (RFC 6455 5.5.1). */
    r = rec_new(MAX_MSG);
    cn_buf_reset(&in);
    frame(&in, FIN | OP_CLOSE, "", 0);
    assert_int_equal(feed(r, &in), CN_ECLOSED);
    assert_int_equal(cn_ws_peer_close_code(r->ws), 1005);
    off = 0;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_int_equal(f.len, 0);
    assert_true(cn_ws_closed(r->ws));
    rec_free(r);
    cn_buf_dispose(&in);
}

static void test_server_initiated_close(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    assert_int_equal(cn_ws_close(r->ws, CN_WS_CLOSE_GOING_AWAY, "restarting"), CN_OK);
    assert_true(cn_ws_closed(r->ws));
    size_t off = 0;
    srv_frame_t f;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_int_equal(f.len, 12);
    assert_memory_equal(f.payload + 2, "restarting", 10);
    assert_int_equal(cn_ws_sent_close_code(r->ws), CN_WS_CLOSE_GOING_AWAY);
    assert_int_equal(cn_ws_send(r->ws, (const uint8_t *)"x", 1), CN_ECLOSED);
    assert_int_equal(cn_ws_ping(r->ws), CN_ECLOSED);
    assert_int_equal(cn_ws_close(r->ws, CN_WS_CLOSE_NORMAL, NULL), CN_ECLOSED);
    /* Data still in flight from the peer is dropped; its close completes. */
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_BINARY, "in flight", 9);
    assert_int_equal(feed(r, &in), CN_OK);
    assert_int_equal(r->messages, 0);
    cn_buf_reset(&in);
    close_frame(&in, CN_WS_CLOSE_GOING_AWAY, "");
    assert_int_equal(feed(r, &in), CN_ECLOSED);
    assert_int_equal(cn_ws_peer_close_code(r->ws), CN_WS_CLOSE_GOING_AWAY);
    assert_false(next_srv_frame(&r->out, &off, &f)); /* no second close */
    cn_buf_dispose(&in);
    rec_free(r);

    /* Codes nobody may send are refused; a long reason is cut to fit. */
    r = rec_new(MAX_MSG);
    assert_int_equal(cn_ws_close(r->ws, 1005, NULL), CN_EINVAL);
    assert_int_equal(cn_ws_close(r->ws, 0, NULL), CN_EINVAL);
    char reason[300];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    assert_int_equal(cn_ws_close(r->ws, CN_WS_CLOSE_POLICY, reason), CN_OK);
    off = 0;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.len, 125);
    rec_free(r);
}

static void test_server_frames_parse_back(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 70000};
    uint8_t *payload = malloc(70000);
    assert_non_null(payload);
    for (size_t i = 0; i < 70000; i++)
        payload[i] = (uint8_t)(i ^ (i >> 8));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        assert_int_equal(cn_ws_send(r->ws, payload, sizes[i]), CN_OK);
    assert_int_equal(cn_ws_ping(r->ws), CN_OK);
    assert_int_equal(cn_ws_buffered(r->ws), 0);
    size_t off = 0;
    srv_frame_t f;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_true(next_srv_frame(&r->out, &off, &f));
        assert_int_equal(f.b0, FIN | OP_BINARY);
        assert_int_equal(f.len, sizes[i]);
        if (f.len)
            assert_memory_equal(f.payload, payload, f.len);
    }
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_int_equal(f.b0, FIN | OP_PING);
    assert_false(next_srv_frame(&r->out, &off, &f));
    free(payload);
    rec_free(r);
}

static void test_reply_from_on_message(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    r->echo = true;
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_BINARY, "one", 3);
    frame(&in, FIN | OP_BINARY, "two", 3);
    assert_int_equal(feed(r, &in), CN_OK);
    assert_int_equal(r->messages, 2);
    size_t off = 0;
    srv_frame_t f;
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_memory_equal(f.payload, "one", 3);
    assert_true(next_srv_frame(&r->out, &off, &f));
    assert_memory_equal(f.payload, "two", 3);
    assert_false(next_srv_frame(&r->out, &off, &f));
    cn_buf_dispose(&in);
    rec_free(r);
}

static void test_output_failure_propagates(void **state)
{
    (void)state;
    rec_t *r = rec_new(MAX_MSG);
    r->fail_output = CN_ELIMIT;
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_PING, "p", 1);
    assert_int_equal(feed(r, &in), CN_ELIMIT);
    assert_true(cn_ws_closed(r->ws));
    assert_int_not_equal(cn_ws_send(r->ws, (const uint8_t *)"x", 1), CN_OK);
    assert_int_not_equal(feed(r, &in), CN_OK);
    cn_buf_dispose(&in);
    rec_free(r);
}

static void test_new_rejects_bad_args(void **state)
{
    (void)state;
    const cn_ws_callbacks_t none = {0};
    const cn_ws_callbacks_t cb = {.on_message = on_message, .on_output = on_output};
    assert_null(cn_ws_new(NULL, NULL, 10));
    assert_null(cn_ws_new(&none, NULL, 10));
    assert_null(cn_ws_new(&cb, NULL, 0));
    cn_ws_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_binary_message),
        cmocka_unit_test(test_fragmented_reassembled),
        cmocka_unit_test(test_one_byte_at_a_time),
        cmocka_unit_test(test_ping_answered_with_same_payload),
        cmocka_unit_test(test_text_frame_closes_1003),
        cmocka_unit_test(test_unmasked_closes_1002),
        cmocka_unit_test(test_oversized_closes_1009),
        cmocka_unit_test(test_bad_lengths_close_1002),
        cmocka_unit_test(test_control_frame_rules_1002),
        cmocka_unit_test(test_reserved_bits_and_opcodes_1002),
        cmocka_unit_test(test_close_handshake_echoes),
        cmocka_unit_test(test_server_initiated_close),
        cmocka_unit_test(test_server_frames_parse_back),
        cmocka_unit_test(test_reply_from_on_message),
        cmocka_unit_test(test_output_failure_propagates),
        cmocka_unit_test(test_new_rejects_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
