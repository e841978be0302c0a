/*
 * Registration JWT verifier: any input is refused or accepted without a
 * crash or leak; the fuzzer's bytes are the token (NUL-terminated copy).
 */
#include "crypto/cn_crypto.h"
#include "node/jwt.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cn_jwt_keys_t keys;
    static bool ready;
    if (!ready) {
        if (cn_crypto_init() != CN_OK)
            abort();
        memset(keys.hs256, 'k', 32);
        keys.hs256_len = 32;
        keys.has_ed25519 = true;
        memset(keys.ed25519, 7, sizeof(keys.ed25519));
        strcpy(keys.issuer, "iss");
        strcpy(keys.audience, "aud");
        ready = true;
    }
    char *tok = malloc(size + 1);
    if (!tok)
        return 0;
    memcpy(tok, data, size);
    tok[size] = '\0';
    cn_jwt_claims_t c;
    const char *why;
    CN_IGNORE(cn__jwt_verify(tok, &keys, 1800000000ull, &c, &why));
    free(tok);
    return 0;
}
