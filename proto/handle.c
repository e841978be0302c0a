#include "proto/cn_proto.h"

#include <string.h>

int cn_handle_normalize(const char *in, char out[CN_HANDLE_MAX + 1])
{
    size_t n = strnlen(in, CN_HANDLE_MAX + 1);
    CN_ENSURE(n >= CN_HANDLE_MIN && n <= CN_HANDLE_MAX, CN_EINVAL);
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        CN_ENSURE(ok, CN_EINVAL);
        out[i] = c;
    }
    out[n] = '\0';
    return CN_OK;
}
