/*
 * Fuzzes a server-side WebSocket session: the input is fed in three pieces
 * (split points taken from the first two bytes) so frame headers and
 * payloads cross feed boundaries. Output is discarded; messages are capped
 * at a small maximum so 1009 paths are reached.
 */
#include "node/transport.h"

#include <stddef.h>
#include <stdint.h>

#define FUZZ_MAX_MESSAGE 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t g_delivered;

static void on_message(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    (void)p;
    if (n > FUZZ_MAX_MESSAGE)
        __builtin_trap();
    g_delivered += n;
}

static int on_output(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return CN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const cn_ws_callbacks_t cb = {.on_message = on_message, .on_output = on_output};
    cn_ws_t *ws = cn_ws_new(&cb, NULL, FUZZ_MAX_MESSAGE);
    if (!ws)
        return 0;
    size_t body = size - 2;
    size_t a = body ? data[0] % (body + 1) : 0;
    size_t b = a + (body - a ? data[1] % (body - a + 1) : 0);
    const uint8_t *p = data + 2;
    int rc = cn_ws_feed(ws, p, a);
    if (rc == CN_OK)
        rc = cn_ws_feed(ws, p + a, b - a);
    if (rc == CN_OK)
        rc = cn_ws_feed(ws, p + b, body - b);
    if (rc == CN_OK && !cn_ws_closed(ws)) {
        uint8_t reply[3] = {1, 2, 3};
        if (cn_ws_send(ws, reply, sizeof(reply)) != CN_OK || cn_ws_ping(ws) != CN_OK)
            __builtin_trap();
        if (cn_ws_close(ws, CN_WS_CLOSE_NORMAL, "bye") != CN_OK || !cn_ws_closed(ws))
            __builtin_trap();
    }
    cn_ws_free(ws);
    return 0;
}
