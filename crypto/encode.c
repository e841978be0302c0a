/* Encodings that need constant-time care, on libsodium. */
#include "crypto/cn_crypto.h"

#include <sodium.h>

int cn_base64url_decode(const char *in, size_t inlen, uint8_t *out, size_t cap, size_t *outlen)
{
    CN_ENSURE(inlen % 4 != 1, CN_EINVAL);            /* no base64 length is 1 mod 4 */
    CN_ENSURE(cap >= inlen / 4 * 3 + 2, CN_ETOOBIG); /* the largest possible decoding */
    const char *end = NULL;
    if (sodium_base642bin(out, cap, in, inlen, NULL, outlen, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return CN_EINVAL;
    CN_ENSURE(end == in + inlen, CN_EINVAL);
    return CN_OK;
}

bool cn_equal_ct(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void cn_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}
