/**
 * Client frames for the WebSocket codec's tests (test_ws.c, test_ws_split.c):
 * opcodes and a builder of masked or unmasked frames with any length
 * encoding. Include after cmocka.h.
 */
#ifndef CN_WS_TEST_FRAMES_H
#define CN_WS_TEST_FRAMES_H

#include "node/transport.h"

#define OP_CONT   0x0
#define OP_TEXT   0x1
#define OP_BINARY 0x2
#define OP_CLOSE  0x8
#define OP_PING   0x9
#define OP_PONG   0xa
#define FIN       0x80

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/**
 * Appends a client frame: b0 (FIN/RSV/opcode), a header announcing
 * `announced` bytes in the shortest encoding (or `len_bytes` of 2/8 when
 * non-zero), then n payload bytes, masked when masked is set.
 */
static void frame_ex(cn_buf_t *b, uint8_t b0, bool masked, uint64_t announced, int len_bytes,
                     const void *payload, size_t n)
{
    uint8_t m = masked ? 0x80 : 0;
    assert_int_equal(cn_buf_put_u8(b, b0), CN_OK);
    if (len_bytes == 0)
        len_bytes = announced < 126 ? 0 : announced < 65536 ? 2 : 8;
    if (len_bytes == 0) {
        assert_int_equal(cn_buf_put_u8(b, (uint8_t)(m | announced)), CN_OK);
    } else if (len_bytes == 2) {
        assert_int_equal(cn_buf_put_u8(b, m | 126), CN_OK);
        assert_int_equal(cn_buf_put_u16be(b, (uint16_t)announced), CN_OK);
    } else {
        assert_int_equal(cn_buf_put_u8(b, m | 127), CN_OK);
        assert_int_equal(cn_buf_put_u64be(b, announced), CN_OK);
    }
    if (masked)
        assert_int_equal(cn_buf_append(b, mask_key, 4), CN_OK);
    const uint8_t *p = payload;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cn_buf_put_u8(b, masked ? p[i] ^ mask_key[i % 4] : p[i]), CN_OK);
}

static void frame(cn_buf_t *b, uint8_t b0, const void *payload, size_t n)
{
    frame_ex(b, b0, true, n, 0, payload, n);
}

#endif
