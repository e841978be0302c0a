/*
 * Safety numbers in the style of Signal's NumericFingerprintGenerator
 * (version 0, 5200 iterations): for each side
 *   h = SHA-512(u16be 0 ‖ keys ‖ handle), then 5200 × h = SHA-512(h ‖ keys)
 * where keys are the side's device keys (Ed25519, = device ids) sorted
 * bytewise and concatenated. The first 30 bytes of h give six 5-digit
 * groups (big-endian 40-bit chunk mod 100000). The safety number is the
 * two 30-digit halves in ascending order, so both users see the same 60
 * digits.
 */
#include "crypto/cn_crypto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITERATIONS 5200
#define HALF       30

static int cmp_key(const void *a, const void *b)
{
    return memcmp(a, b, CN_DEVICE_ID_LEN);
}

static int half(const char *handle, const uint8_t *keys, size_t n, char out[HALF + 1])
{
    size_t hl = strnlen(handle, CN_HANDLE_MAX + 1);
    CN_ENSURE(hl >= 1 && hl <= CN_HANDLE_MAX, CN_EINVAL);
    CN_ENSURE(n >= 1 && n <= CN_DEVICES_HARD_MAX, CN_EINVAL);
    uint8_t sorted[CN_DEVICES_HARD_MAX * CN_DEVICE_ID_LEN];
    memcpy(sorted, keys, n * CN_DEVICE_ID_LEN);
    qsort(sorted, n, CN_DEVICE_ID_LEN, cmp_key);
    size_t klen = n * CN_DEVICE_ID_LEN;
    uint8_t h[crypto_hash_sha512_BYTES];
    crypto_hash_sha512_state st;
    const uint8_t version[2] = {0, 0};
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, version, 2);
    crypto_hash_sha512_update(&st, sorted, klen);
    crypto_hash_sha512_update(&st, (const uint8_t *)handle, hl);
    crypto_hash_sha512_final(&st, h);
    for (int i = 0; i < ITERATIONS; i++) {
        crypto_hash_sha512_init(&st);
        crypto_hash_sha512_update(&st, h, sizeof(h));
        crypto_hash_sha512_update(&st, sorted, klen);
        crypto_hash_sha512_final(&st, h);
    }
    for (int g = 0; g < 6; g++) {
        uint64_t v = 0;
        for (int b = 0; b < 5; b++)
            v = (v << 8) | h[g * 5 + b];
        snprintf(out + g * 5, 6, "%05u", (unsigned)(v % 100000));
    }
    return CN_OK;
}

int cn_safety_number(const char *handle_a, const uint8_t *keys_a, size_t na, const char *handle_b,
                     const uint8_t *keys_b, size_t nb, char out[CN_SAFETY_NUMBER_DIGITS + 1])
{
    char a[HALF + 1], b[HALF + 1];
    CN_ENSURE(handle_a && keys_a && handle_b && keys_b && out, CN_EINVAL);
    CN_TRY(half(handle_a, keys_a, na, a));
    CN_TRY(half(handle_b, keys_b, nb, b));
    bool a_first = strcmp(a, b) <= 0;
    snprintf(out, CN_SAFETY_NUMBER_DIGITS + 1, "%s%s", a_first ? a : b, a_first ? b : a);
    return CN_OK;
}
