/*
 * Fuzzes the HTTP/1.1 request-head parser in both modes (WebSocket upgrade
 * and plain metrics requests) and, when a head parses, the response writers.
 */
#include "node/transport.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cn_http_request_t req;
    int status = 0;
    cn_buf_t out;
    cn_buf_init(&out);
    for (int mode = 0; mode < 2; mode++) {
        int rc = cn_http_request_parse(data, size, mode == 0, &req, &status);
        if (rc == CN_OK) {
            if (req.consumed > size || req.path[0] != '/')
                __builtin_trap();
            if (req.is_upgrade && cn_http_write_upgrade(&out, &req) != CN_OK)
                __builtin_trap();
            if (cn_http_write_response(&out, 200, NULL, req.path, strlen(req.path)) != CN_OK)
                __builtin_trap();
        } else if (rc == CN_EPROTO || rc == CN_ETOOBIG) {
            if (status < 400 || status > 599)
                __builtin_trap();
            if (cn_http_write_response(&out, status, NULL, "", 0) != CN_OK)
                __builtin_trap();
        } else if (rc != CN_EAGAIN || size > CN_HTTP_HEADER_MAX) {
            __builtin_trap();
        }
        cn_buf_reset(&out);
    }
    cn_buf_dispose(&out);
    return 0;
}
