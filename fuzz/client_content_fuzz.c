/*
 * Fuzzes the message content decoder (client/content.c): any input must
 * decode or fail cleanly, and whatever decodes must re-encode and decode
 * to the same fields.
 */
#include "client/cn_client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cn_content_t c;
    int rc = cn_content_decode(data, size, &c);
    if (rc != CN_OK)
        return 0;
    if (c.text == NULL)
        return 0;
    if (c.text_len > CN_CLIENT_TEXT_MAX || !cn_utf8_valid((const uint8_t *)c.text, c.text_len))
        abort();
    cn_buf_t b;
    cn_buf_init(&b);
    if (cn_content_encode_text(&b, c.text, c.text_len, c.sent_at) != CN_OK)
        abort();
    cn_content_t d;
    if (cn_content_decode(b.data, b.len, &d) != CN_OK || d.text_len != c.text_len ||
        memcmp(d.text, c.text, c.text_len) != 0 || d.sent_at != c.sent_at)
        abort();
    cn_buf_dispose(&b);
    return 0;
}
