/*
 * The signed transcripts of proto/cn_proto.h. Every context string is
 * written with its terminating NUL so that no context is a prefix of
 * another; variable-length fields carry a u8 length prefix.
 */
#include "crypto/cn_crypto.h"

#include <string.h>

static bool is_session_context(const char *context)
{
    return strcmp(context, CN_AUTH_CONTEXT) == 0 || strcmp(context, CN_REGISTER_CONTEXT) == 0 ||
           strcmp(context, CN_LINK_CONTEXT) == 0;
}

/* Appends len(u8) ‖ handle; the handle must already be valid in length. */
static int put_handle(cn_buf_t *out, const char *handle)
{
    size_t n = strnlen(handle, CN_HANDLE_MAX + 1);
    CN_ENSURE(n >= 1 && n <= CN_HANDLE_MAX, CN_EINVAL);
    CN_TRY(cn_buf_put_u8(out, (uint8_t)n));
    return cn_buf_append(out, handle, n);
}

int cn_transcript_session(cn_buf_t *out, const char *context, const uint8_t nonce[CN_NONCE_LEN],
                          const uint8_t node_id[CN_DEVICE_ID_LEN],
                          const uint8_t device_id[CN_DEVICE_ID_LEN], uint64_t server_time,
                          const uint8_t exporter[CN_EXPORTER_LEN], const char *handle)
{
    CN_ENSURE(out != NULL && context != NULL && is_session_context(context), CN_EINVAL);
    CN_ENSURE(nonce != NULL && node_id != NULL && device_id != NULL && exporter != NULL, CN_EINVAL);
    bool is_auth = strcmp(context, CN_AUTH_CONTEXT) == 0;
    /* Auth binds no handle; register and link must name one. */
    CN_ENSURE(is_auth == (handle == NULL), CN_EINVAL);
    cn_buf_reset(out);
    CN_TRY(cn_buf_append(out, context, strlen(context) + 1));
    CN_TRY(cn_buf_append(out, nonce, CN_NONCE_LEN));
    CN_TRY(cn_buf_append(out, node_id, CN_DEVICE_ID_LEN));
    CN_TRY(cn_buf_append(out, device_id, CN_DEVICE_ID_LEN));
    CN_TRY(cn_buf_put_u64be(out, server_time));
    CN_TRY(cn_buf_append(out, exporter, CN_EXPORTER_LEN));
    if (!is_auth)
        CN_TRY(put_handle(out, handle));
    return CN_OK;
}

int cn_transcript_prekey(cn_buf_t *out, uint32_t key_id, const uint8_t public_key[CN_PREKEY_LEN])
{
    CN_ENSURE(out != NULL && public_key != NULL, CN_EINVAL);
    cn_buf_reset(out);
    CN_TRY(cn_buf_append(out, CN_PREKEY_CONTEXT, sizeof(CN_PREKEY_CONTEXT)));
    CN_TRY(cn_buf_put_u32be(out, key_id));
    return cn_buf_append(out, public_key, CN_PREKEY_LEN);
}

int cn_transcript_link_cert(cn_buf_t *out, const char *handle,
                            const uint8_t device_id[CN_DEVICE_ID_LEN])
{
    CN_ENSURE(out != NULL && handle != NULL && device_id != NULL, CN_EINVAL);
    cn_buf_reset(out);
    CN_TRY(cn_buf_append(out, CN_LINK_CERT_CONTEXT, sizeof(CN_LINK_CERT_CONTEXT)));
    CN_TRY(put_handle(out, handle));
    return cn_buf_append(out, device_id, CN_DEVICE_ID_LEN);
}
