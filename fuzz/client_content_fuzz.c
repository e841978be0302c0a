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

static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    return (a == NULL) == (b == NULL) && (a == NULL || memcmp(a, b, n) == 0);
}

/* Whatever decodes re-encodes with cn_content_encode to the same fields
 * (groups, sync peers, files, sender keys, keys, sender key requests of
 * issue 4). */
static void generic_roundtrip(const cn_content_t *c)
{
    cn_buf_t b;
    cn_buf_init(&b);
    cn_content_t d;
    if (cn_content_encode(&b, c) != CN_OK || cn_content_decode(b.data, b.len, &d) != CN_OK)
        abort();
    if (d.type != c->type || d.text_len != c->text_len || d.peer_len != c->peer_len ||
        d.skdist_len != c->skdist_len || d.file_size != (c->media_id ? c->file_size : 0) ||
        !same_bytes(d.group_id, c->group_id, CN_GROUP_ID_LEN) ||
        !same_bytes(d.media_id, c->media_id, CN_MEDIA_ID_LEN) ||
        !same_bytes(d.media_key, c->media_key, CN_CLIENT_MEDIA_KEY_LEN) ||
        !same_bytes(d.skdist, c->skdist, c->skdist_len) ||
        !same_bytes(d.history_key, c->history_key, CN_CLIENT_HISTORY_KEY_LEN) ||
        !same_bytes((const uint8_t *)d.peer, (const uint8_t *)c->peer, c->peer_len))
        abort();
    /* A sender key request keeps its group, key id, iteration and device. */
    if (c->type == CN_CONTENT_SENDER_KEY_REQUEST &&
        (d.skreq_key_id != c->skreq_key_id || d.skreq_iteration != c->skreq_iteration ||
         !same_bytes(d.skreq_device, c->skreq_device, CN_DEVICE_ID_LEN) || d.group_id == NULL))
        abort();
    cn_buf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cn_content_t c;
    int rc = cn_content_decode(data, size, &c);
    if (rc != CN_OK)
        return 0;
    generic_roundtrip(&c);
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
