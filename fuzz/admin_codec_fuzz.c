/*
 * Admin protocol decoders (requests and responses): no input may crash or
 * leak; a decoded message re-encodes and decodes to the same content.
 */
#include "proto/cn_proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const cn_admin_msg_t *m, bool request)
{
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = request ? cn_admin_request_encode(m, &b) : cn_admin_response_encode(m, &b);
    if (rc != CN_OK)
        abort();
    cn_admin_msg_t again;
    cn_admin_msg_init(&again);
    rc = request ? cn_admin_request_decode(b.data, b.len, &again)
                 : cn_admin_response_decode(b.data, b.len, &again);
    if (rc != CN_OK)
        abort();
    /* abort(), not assert(): the check must hold in every build. */
    if (strcmp(again.cmd, m->cmd) != 0 || again.status != m->status || again.args.n != m->args.n ||
        again.nrows != m->nrows)
        abort();
    cn_admin_msg_dispose(&again);
    cn_buf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int request = 0; request < 2; request++) {
        cn_admin_msg_t m;
        cn_admin_msg_init(&m);
        int rc = request ? cn_admin_request_decode(data, size, &m)
                         : cn_admin_response_decode(data, size, &m);
        if (rc == CN_OK)
            check_roundtrip(&m, request);
        cn_admin_msg_dispose(&m);
    }
    return 0;
}
