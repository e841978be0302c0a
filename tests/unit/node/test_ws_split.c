/*
 * The RFC 6455 codec (node/ws.c) against split input and its memory rules.
 *
 * Every input of a table of valid and invalid client byte streams is fed
 * whole, in two pieces at every byte boundary, and one byte at a time,
 * through both feeds (read-only and in place); every way must give the
 * same messages, the same server bytes, the same return code and close
 * codes as the whole feed, and the whole feed must give the expected
 * outcome. Then: a large message split across many feeds (the buffer grows
 * with the bytes that arrived, not with the announced length, and is freed
 * once the message is out), control frames between fragments, zero-copy
 * delivery of complete frames, and each close-body rejection (codes, UTF-8).
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

#include <stdlib.h>
#include <string.h>

#define MAX_MSG   1000
#define LARGE_MAX (512u * 1024u) /* CN_WS_MESSAGE_MAX, the node's limit */

#define RSV1 0x40

/* ------------------------------------------------------------ builders */

static void close_raw(cn_buf_t *b, uint16_t code, const void *reason, size_t n)
{
    uint8_t p[125];
    assert_true(n <= 123);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, n);
    frame(b, FIN | OP_CLOSE, p, n + 2);
}

/* -------------------------------------------------------------- a run */

typedef struct run {
    cn_ws_t *ws;
    cn_buf_t out;  /* every byte the server wrote */
    cn_buf_t msgs; /* each message as a u32 length and its bytes */
    size_t messages;
    size_t activity;
    int rc;                       /* the first non-OK feed result, or CN_OK */
    const uint8_t *in_lo, *in_hi; /* the piece being fed, for zero-copy checks */
    size_t in_place;              /* messages handed up from inside the input */
} run_t;

static void on_message(void *ctx, const uint8_t *p, size_t n)
{
    run_t *r = ctx;
    r->messages++;
    if (n && p >= r->in_lo && p + n <= r->in_hi)
        r->in_place++;
    assert_int_equal(cn_buf_put_u32be(&r->msgs, (uint32_t)n), CN_OK);
    assert_int_equal(cn_buf_append(&r->msgs, p, n), CN_OK);
}

static int on_output(void *ctx, const uint8_t *p, size_t n)
{
    return cn_buf_append(&((run_t *)ctx)->out, p, n);
}

static void on_activity(void *ctx)
{
    ((run_t *)ctx)->activity++;
}

static void run_init(run_t *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    cn_buf_init(&r->out);
    cn_buf_init(&r->msgs);
    const cn_ws_callbacks_t cb = {
        .on_message = on_message, .on_output = on_output, .on_activity = on_activity};
    r->ws = cn_ws_new(&cb, r, max);
    assert_non_null(r->ws);
}

static void run_dispose(run_t *r)
{
    cn_ws_free(r->ws);
    cn_buf_dispose(&r->out);
    cn_buf_dispose(&r->msgs);
}

/** Feeds p[0..n) as one piece, from a heap copy of exactly n bytes (ASan sees overreads). */
static int feed_piece(run_t *r, const uint8_t *p, size_t n, bool inplace)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    r->in_lo = copy;
    r->in_hi = copy + n;
    int rc = inplace ? cn_ws_feed_inplace(r->ws, copy, n) : cn_ws_feed(r->ws, copy, n);
    r->in_lo = r->in_hi = NULL;
    free(copy);
    if (r->rc == CN_OK)
        r->rc = rc;
    else /* a finished session stays finished */
        assert_int_equal(rc, r->rc);
    return rc;
}

/** Feeds in cut at the sorted offsets cuts[0..ncuts) (pieces may be empty). */
static void run_cuts(run_t *r, const cn_buf_t *in, const size_t *cuts, size_t ncuts, bool inplace)
{
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : in->len;
        (void)feed_piece(r, in->data + from, to - from, inplace);
        from = to;
    }
}

static void assert_same(const run_t *a, const run_t *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->messages, b->messages);
    assert_int_equal(a->activity, b->activity);
    assert_int_equal(a->msgs.len, b->msgs.len);
    assert_memory_equal(a->msgs.data, b->msgs.data, a->msgs.len);
    assert_int_equal(a->out.len, b->out.len);
    if (a->out.len)
        assert_memory_equal(a->out.data, b->out.data, a->out.len);
    assert_int_equal(cn_ws_peer_close_code(a->ws), cn_ws_peer_close_code(b->ws));
    assert_int_equal(cn_ws_sent_close_code(a->ws), cn_ws_sent_close_code(b->ws));
    assert_int_equal(cn_ws_closed(a->ws), cn_ws_closed(b->ws));
    assert_int_equal(cn_ws_buffered(a->ws), cn_ws_buffered(b->ws));
}

/**
 * Feeds in whole, then split at every byte boundary and one byte at a
 * time, both feeds; all must match the whole feed, whose result is checked
 * against rc, the close code we sent (0: none) and the message count.
 */
static void check_splits(const cn_buf_t *in, size_t max, int rc, uint16_t sent, size_t messages)
{
    run_t whole;
    run_init(&whole, max);
    run_cuts(&whole, in, NULL, 0, false);
    assert_int_equal(whole.rc, rc);
    assert_int_equal(cn_ws_sent_close_code(whole.ws), sent);
    assert_int_equal(whole.messages, messages);
    size_t *every = malloc((in->len + 1) * sizeof(*every));
    assert_non_null(every);
    for (size_t i = 0; i < in->len; i++)
        every[i] = i + 1;
    for (int inplace = 0; inplace <= 1; inplace++) {
        for (size_t k = 0; k <= in->len; k++) {
            run_t r;
            run_init(&r, max);
            run_cuts(&r, in, &k, 1, inplace);
            assert_same(&whole, &r);
            run_dispose(&r);
        }
        run_t r;
        run_init(&r, max);
        run_cuts(&r, in, every, in->len ? in->len - 1 : 0, inplace);
        assert_same(&whole, &r);
        run_dispose(&r);
    }
    free(every);
    run_dispose(&whole);
}

/* -------------------------------------------------------------- tables */

typedef struct split_case {
    const char *name;
    void (*build)(cn_buf_t *b);
    int rc;
    uint16_t sent; /* close code we send, 0 for none */
    size_t messages;
} split_case_t;

static const uint8_t bytes200[200] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void b_messages(cn_buf_t *b)
{
    frame(b, FIN | OP_BINARY, "hello", 5);
    frame(b, FIN | OP_BINARY, "", 0);
    frame(b, FIN | OP_BINARY, bytes200, sizeof(bytes200)); /* 16-bit length */
}

static void b_interleaved(cn_buf_t *b)
{
    frame(b, OP_BINARY, "ab", 2);
    frame(b, FIN | OP_PING, "p1", 2);
    frame(b, OP_CONT, "", 0);
    frame(b, FIN | OP_PONG, "unsolicited", 11);
    frame(b, OP_CONT, "cd", 2);
    frame(b, FIN | OP_PING, bytes200, 125);
    frame(b, FIN | OP_CONT, "ef", 2);
    frame(b, FIN | OP_BINARY, "after", 5);
}

static void b_close_reason(cn_buf_t *b)
{
    frame(b, FIN | OP_BINARY, "x", 1);
    close_raw(b, CN_WS_CLOSE_GOING_AWAY, "bye \xce\xba", 6);
    frame(b, FIN | OP_BINARY, "ignored", 7);
}

static void b_close_empty(cn_buf_t *b)
{
    frame(b, FIN | OP_CLOSE, "", 0);
}

static void b_close_in_fragments(cn_buf_t *b)
{
    frame(b, OP_BINARY, "half", 4);
    close_raw(b, CN_WS_CLOSE_NORMAL, "", 0);
}

static void b_text(cn_buf_t *b)
{
    frame(b, FIN | OP_BINARY, "ok", 2);
    frame(b, OP_TEXT, "t", 1);
}

static void b_unmasked(cn_buf_t *b)
{
    frame_ex(b, FIN | OP_PONG, false, 1, 0, "p", 1);
}

static void b_rsv_on_ping(cn_buf_t *b)
{
    frame(b, FIN | RSV1 | OP_PING, "p", 1);
}

static void b_reserved_opcode(cn_buf_t *b)
{
    frame(b, FIN | 0x7, "x", 1);
}

static void b_orphan_continuation(cn_buf_t *b)
{
    frame(b, FIN | OP_BINARY, "done", 4);
    frame(b, FIN | OP_CONT, "more", 4);
}

static void b_binary_inside_fragments(cn_buf_t *b)
{
    frame(b, OP_BINARY, "a", 1);
    frame(b, FIN | OP_PING, "", 0);
    frame(b, OP_BINARY, "b", 1);
}

static void b_long_ping(cn_buf_t *b)
{
    frame(b, FIN | OP_PING, bytes200, 126);
}

static void b_fragmented_pong(cn_buf_t *b)
{
    frame(b, OP_PONG, "", 0);
}

static void b_close_one_byte(cn_buf_t *b)
{
    frame(b, FIN | OP_CLOSE, "\x03", 1);
}

static void b_close_bad_code(cn_buf_t *b)
{
    close_raw(b, 1006, "", 0);
}

static void b_close_bad_utf8(cn_buf_t *b)
{
    close_raw(b, CN_WS_CLOSE_NORMAL, "\xed\xa0\x80", 3); /* a surrogate */
}

static void b_nonminimal16(cn_buf_t *b)
{
    frame_ex(b, FIN | OP_BINARY, true, 3, 2, "abc", 3);
}

static void b_nonminimal64(cn_buf_t *b)
{
    frame_ex(b, FIN | OP_BINARY, true, 300, 8, NULL, 0);
}

static void b_top_bit(cn_buf_t *b)
{
    frame_ex(b, FIN | OP_BINARY, true, 1ull << 63, 8, NULL, 0);
}

static void b_too_big(cn_buf_t *b)
{
    frame_ex(b, FIN | OP_BINARY, true, MAX_MSG + 1, 0, NULL, 0);
}

static void b_fragments_too_big(cn_buf_t *b)
{
    uint8_t big[MAX_MSG] = {0};
    frame(b, OP_BINARY, big, MAX_MSG - 2);
    frame(b, FIN | OP_PING, "", 0);
    frame_ex(b, FIN | OP_CONT, true, 3, 0, "xyz", 3);
}

static void b_at_limit_with_ping(cn_buf_t *b)
{
    /* The message fills max_message, then a 125-byte ping sits behind it. */
    uint8_t big[MAX_MSG];
    memset(big, 0x5a, sizeof(big));
    frame(b, OP_BINARY, big, MAX_MSG);
    frame(b, FIN | OP_PING, big, 125);
    frame(b, FIN | OP_CONT, "", 0);
}

static const split_case_t split_cases[] = {
    {"messages", b_messages, CN_OK, 0, 3},
    {"interleaved", b_interleaved, CN_OK, 0, 2},
    {"close_reason", b_close_reason, CN_ECLOSED, CN_WS_CLOSE_GOING_AWAY, 1},
    {"close_empty", b_close_empty, CN_ECLOSED, 1005, 0},
    {"close_in_fragments", b_close_in_fragments, CN_ECLOSED, CN_WS_CLOSE_NORMAL, 0},
    {"text", b_text, CN_EPROTO, CN_WS_CLOSE_UNSUPPORTED, 1},
    {"unmasked", b_unmasked, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"rsv_on_ping", b_rsv_on_ping, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"reserved_opcode", b_reserved_opcode, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"orphan_continuation", b_orphan_continuation, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 1},
    {"binary_inside_fragments", b_binary_inside_fragments, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"long_ping", b_long_ping, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"fragmented_pong", b_fragmented_pong, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"close_one_byte", b_close_one_byte, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"close_bad_code", b_close_bad_code, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"close_bad_utf8", b_close_bad_utf8, CN_EPROTO, CN_WS_CLOSE_BAD_DATA, 0},
    {"nonminimal16", b_nonminimal16, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"nonminimal64", b_nonminimal64, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"top_bit", b_top_bit, CN_EPROTO, CN_WS_CLOSE_PROTOCOL, 0},
    {"too_big", b_too_big, CN_EPROTO, CN_WS_CLOSE_TOO_BIG, 0},
    {"fragments_too_big", b_fragments_too_big, CN_EPROTO, CN_WS_CLOSE_TOO_BIG, 0},
    {"at_limit_with_ping", b_at_limit_with_ping, CN_OK, 0, 1},
};

static void test_every_split_matches_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < CN_ARRAY_LEN(split_cases); i++) {
        const split_case_t *c = &split_cases[i];
        print_message("case %s\n", c->name);
        cn_buf_t in;
        cn_buf_init(&in);
        c->build(&in);
        check_splits(&in, MAX_MSG, c->rc, c->sent, c->messages);
        cn_buf_dispose(&in);
    }
}

/* --------------------------------------------------- control in fragments */

static void test_control_frames_between_fragments(void **state)
{
    (void)state;
    cn_buf_t in;
    cn_buf_init(&in);
    b_interleaved(&in);
    run_t r;
    run_init(&r, MAX_MSG);
    assert_int_equal(feed_piece(&r, in.data, in.len, true), CN_OK);
    /* Messages: "abcdef" (the pong and the empty fragment change nothing), "after". */
    static const uint8_t want[] = {0, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f',
                                   0, 0, 0, 5, 'a', 'f', 't', 'e', 'r'};
    assert_int_equal(r.msgs.len, sizeof(want));
    assert_memory_equal(r.msgs.data, want, sizeof(want));
    assert_int_equal(r.activity, 8);
    /* Two pongs, in order, with the pings' payloads; nothing for the pong. */
    const uint8_t *o = r.out.data;
    assert_int_equal(r.out.len, 4 + 2 + 125);
    assert_int_equal(o[0], FIN | OP_PONG);
    assert_int_equal(o[1], 2);
    assert_memory_equal(o + 2, "p1", 2);
    assert_int_equal(o[4], FIN | OP_PONG);
    assert_int_equal(o[5], 125);
    assert_memory_equal(o + 6, bytes200, 125);
    assert_int_equal(cn_ws_buffered(r.ws), 0);
    assert_int_equal(cn_ws_buffer_capacity(r.ws), 0);
    run_dispose(&r);
    cn_buf_dispose(&in);
}

/* ------------------------------------------------------- large messages */

static void test_large_message_across_many_feeds(void **state)
{
    (void)state;
    const size_t max = LARGE_MAX, n = 300000;
    uint8_t *payload = malloc(n);
    assert_non_null(payload);
    for (size_t i = 0; i < n; i++)
        payload[i] = (uint8_t)(i * 31 + (i >> 9));
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_BINARY, payload, n);
    frame(&in, FIN | OP_BINARY, "tail", 4);
    static const size_t chunks[] = {1021, 16384};
    for (size_t c = 0; c < CN_ARRAY_LEN(chunks); c++) {
        run_t r;
        run_init(&r, max);
        size_t off = 0, seen = 0;
        while (off < in.len) {
            size_t k = CN_MIN(chunks[c], in.len - off);
            assert_int_equal(feed_piece(&r, in.data + off, k, true), CN_OK);
            off += k;
            seen += k;
            if (r.messages == 0) {
                /* Held bytes are what arrived, the buffer at most twice that
                 * (geometric growth), never the announced 300,000 up front. */
                assert_int_equal(cn_ws_buffered(r.ws), seen - 14);
                assert_true(cn_ws_buffer_capacity(r.ws) <= CN_MAX(2 * seen, (size_t)256));
            }
        }
        assert_int_equal(r.messages, 2);
        assert_int_equal(cn_load_u32be(r.msgs.data), n);
        assert_memory_equal(r.msgs.data + 4, payload, n);
        assert_memory_equal(r.msgs.data + 4 + n, "\0\0\0\4tail", 8);
        /* Freed once nothing is held. */
        assert_int_equal(cn_ws_buffered(r.ws), 0);
        assert_int_equal(cn_ws_buffer_capacity(r.ws), 0);
        run_dispose(&r);
    }
    /* A 64-bit length frame split at every point of its header and of the
     * payload's first and last bytes. */
    run_t whole;
    run_init(&whole, max);
    run_cuts(&whole, &in, NULL, 0, false);
    for (size_t k = 0; k < 40; k++) {
        /* The first 20 bytes, then 10 either side of the first frame's end. */
        size_t cut = k < 20 ? k : in.len - 20 + (k - 20);
        run_t r;
        run_init(&r, max);
        run_cuts(&r, &in, &cut, 1, k % 2);
        assert_same(&whole, &r);
        run_dispose(&r);
    }
    run_dispose(&whole);
    cn_buf_dispose(&in);
    free(payload);
}

static void test_announced_length_is_not_allocated(void **state)
{
    (void)state;
    run_t r;
    run_init(&r, LARGE_MAX);
    cn_buf_t in;
    cn_buf_init(&in);
    /* A header announcing the largest message, and 10 of its bytes. */
    frame_ex(&in, FIN | OP_BINARY, true, LARGE_MAX, 0, "0123456789", 10);
    assert_int_equal(feed_piece(&r, in.data, in.len, false), CN_OK);
    assert_int_equal(cn_ws_buffered(r.ws), 10);
    assert_true(cn_ws_buffer_capacity(r.ws) <= 256);
    /* The same for fragments: each arrives as bytes, not as announcements. */
    run_t f;
    run_init(&f, LARGE_MAX);
    cn_buf_reset(&in);
    frame(&in, OP_BINARY, "abc", 3);
    frame_ex(&in, FIN | OP_CONT, true, LARGE_MAX - 3, 0, "d", 1);
    assert_int_equal(feed_piece(&f, in.data, in.len, true), CN_OK);
    assert_int_equal(cn_ws_buffered(f.ws), 4);
    assert_true(cn_ws_buffer_capacity(f.ws) <= 256);
    run_dispose(&f);
    run_dispose(&r);
    cn_buf_dispose(&in);
}

/* ------------------------------------------------------------ zero copy */

static void test_complete_frames_are_not_copied(void **state)
{
    (void)state;
    cn_buf_t in;
    cn_buf_init(&in);
    frame(&in, FIN | OP_BINARY, "first", 5);
    frame(&in, FIN | OP_BINARY, bytes200, sizeof(bytes200));
    run_t r;
    run_init(&r, MAX_MSG);
    assert_int_equal(feed_piece(&r, in.data, in.len, true), CN_OK);
    assert_int_equal(r.messages, 2);
    assert_int_equal(r.in_place, 2); /* both handed up from the input itself */
    assert_int_equal(cn_ws_buffer_capacity(r.ws), 0);
    run_dispose(&r);
    /* Unmasked in place: the caller's bytes now hold the payload. */
    run_init(&r, MAX_MSG);
    assert_int_equal(cn_ws_feed_inplace(r.ws, in.data, in.len), CN_OK);
    assert_memory_equal(in.data + 6, "first", 5);
    run_dispose(&r);
    /* Read-only input is never written, and the scratch copy is freed. */
    cn_buf_reset(&in);
    frame(&in, FIN | OP_BINARY, "first", 5);
    uint8_t before[16];
    memcpy(before, in.data, in.len);
    run_init(&r, MAX_MSG);
    assert_int_equal(cn_ws_feed(r.ws, in.data, in.len), CN_OK);
    assert_memory_equal(in.data, before, in.len);
    assert_int_equal(r.in_place, 0);
    assert_memory_equal(r.msgs.data + 4, "first", 5);
    assert_int_equal(cn_ws_buffer_capacity(r.ws), 0);
    run_dispose(&r);
    cn_buf_dispose(&in);
}

/* ----------------------------------------------------------- close body */

static void expect_close_outcome(cn_buf_t *in, int rc, uint16_t sent)
{
    run_t r;
    run_init(&r, MAX_MSG);
    assert_int_equal(feed_piece(&r, in->data, in->len, false), rc);
    assert_int_equal(cn_ws_sent_close_code(r.ws), sent);
    /* Exactly one close frame went out, carrying that code. */
    assert_true(r.out.len >= 4);
    assert_int_equal(r.out.data[0], FIN | OP_CLOSE);
    assert_int_equal(((unsigned)r.out.data[2] << 8) | r.out.data[3], sent);
    assert_int_equal(r.out.len, 2 + (size_t)r.out.data[1]);
    run_dispose(&r);
}

static void test_close_codes(void **state)
{
    (void)state;
    static const uint16_t valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                     1010, 1011, 3000, 3999, 4000, 4999};
    static const uint16_t invalid[] = {0,    1,    999,  1004, 1005, 1006, 1012,
                                       1015, 1016, 1100, 2000, 2999, 5000, 65535};
    cn_buf_t in;
    cn_buf_init(&in);
    for (size_t i = 0; i < CN_ARRAY_LEN(valid); i++) {
        cn_buf_reset(&in);
        close_raw(&in, valid[i], "", 0);
        expect_close_outcome(&in, CN_ECLOSED, valid[i]); /* echoed */
    }
    for (size_t i = 0; i < CN_ARRAY_LEN(invalid); i++) {
        cn_buf_reset(&in);
        close_raw(&in, invalid[i], "", 0);
        expect_close_outcome(&in, CN_EPROTO, CN_WS_CLOSE_PROTOCOL);
    }
    cn_buf_dispose(&in);
}

static void test_close_reason_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } reasons[] = {
        {"plain ascii", true},
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true}, /* κόσμε */
        {"\xe2\x9c\x93 \xf0\x9d\x84\x9e", true},                /* ✓ 𝄞 */
        {"\xef\xbf\xbf", true},                                 /* U+FFFF */
        {"\xf4\x8f\xbf\xbf", true},                             /* U+10FFFF */
        {"abc \xce", false},                                    /* cut inside a sequence */
        {"\xc0\xaf", false},                                    /* overlong '/' */
        {"\xc1\xbf", false},                                    /* overlong */
        {"\xe0\x80\xaf", false},                                /* overlong, 3 bytes */
        {"\xf0\x80\x80\xaf", false},                            /* overlong, 4 bytes */
        {"\xed\xa0\x80", false},                                /* surrogate U+D800 */
        {"\xed\xbf\xbf", false},                                /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", false},                            /* above U+10FFFF */
        {"\xf5\x80\x80\x80", false},                            /* never a lead byte */
        {"\xff", false},
        {"\x80", false},         /* a lone continuation */
        {"\xe2\x9c", false},     /* truncated at the end */
        {"\xe2\x28\xa1", false}, /* bad continuation */
    };
    cn_buf_t in;
    cn_buf_init(&in);
    for (size_t i = 0; i < CN_ARRAY_LEN(reasons); i++) {
        print_message("reason %zu\n", i);
        cn_buf_reset(&in);
        close_raw(&in, CN_WS_CLOSE_NORMAL, reasons[i].s, strlen(reasons[i].s));
        if (reasons[i].ok)
            expect_close_outcome(&in, CN_ECLOSED, CN_WS_CLOSE_NORMAL);
        else
            expect_close_outcome(&in, CN_EPROTO, CN_WS_CLOSE_BAD_DATA);
    }
    cn_buf_dispose(&in);
}

/* ------------------------------------------------- after our own close */

static void test_violation_after_our_close(void **state)
{
    (void)state;
    run_t r;
    run_init(&r, MAX_MSG);
    assert_int_equal(cn_ws_close(r.ws, CN_WS_CLOSE_GOING_AWAY, "bye"), CN_OK);
    size_t sent = r.out.len;
    cn_buf_t in;
    cn_buf_init(&in);
    /* A ping is not answered after our close, data is dropped ... */
    frame(&in, FIN | OP_PING, "p", 1);
    frame(&in, FIN | OP_BINARY, "dropped", 7);
    assert_int_equal(feed_piece(&r, in.data, in.len, true), CN_OK);
    assert_int_equal(r.out.len, sent);
    assert_int_equal(r.messages, 0);
    /* ... and a violation ends the session without a second close. */
    cn_buf_reset(&in);
    frame(&in, FIN | OP_TEXT, "t", 1);
    assert_int_equal(feed_piece(&r, in.data, in.len, true), CN_EPROTO);
    assert_int_equal(r.out.len, sent);
    assert_int_equal(cn_ws_sent_close_code(r.ws), CN_WS_CLOSE_GOING_AWAY);
    assert_int_equal(feed_piece(&r, in.data, in.len, true), CN_EPROTO);
    cn_buf_dispose(&in);
    run_dispose(&r);
}

static void test_new_rejects_too_large_limit(void **state)
{
    (void)state;
    const cn_ws_callbacks_t cb = {.on_message = on_message, .on_output = on_output};
    assert_null(cn_ws_new(&cb, NULL, (size_t)CN_WS_MESSAGE_LIMIT + 1));
    cn_ws_t *ws = cn_ws_new(&cb, NULL, CN_WS_MESSAGE_LIMIT);
    assert_non_null(ws);
    assert_int_equal(cn_ws_buffered(ws), 0);
    cn_ws_free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_matches_whole),
        cmocka_unit_test(test_control_frames_between_fragments),
        cmocka_unit_test(test_large_message_across_many_feeds),
        cmocka_unit_test(test_announced_length_is_not_allocated),
        cmocka_unit_test(test_complete_frames_are_not_copied),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_close_reason_utf8),
        cmocka_unit_test(test_violation_after_our_close),
        cmocka_unit_test(test_new_rejects_too_large_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
