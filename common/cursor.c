#include "common/cn_common.h"

#include <string.h>

void cn_cursor_init(cn_cursor_t *c, const void *p, size_t len)
{
    c->p = p;
    c->len = len;
    c->pos = 0;
}

size_t cn_cursor_left(const cn_cursor_t *c)
{
    return c->len - c->pos;
}

int cn_cursor_copy(cn_cursor_t *c, void *out, size_t n)
{
    CN_ENSURE(cn_cursor_left(c) >= n, CN_EAGAIN);
    if (n)
        memcpy(out, c->p + c->pos, n);
    c->pos += n;
    return CN_OK;
}

int cn_cursor_view(cn_cursor_t *c, size_t n, cn_slice_t *out)
{
    CN_ENSURE(cn_cursor_left(c) >= n, CN_EAGAIN);
    *out = cn_slice(c->p + c->pos, n);
    c->pos += n;
    return CN_OK;
}

int cn_cursor_u8(cn_cursor_t *c, uint8_t *v)
{
    return cn_cursor_copy(c, v, 1);
}

int cn_cursor_u16be(cn_cursor_t *c, uint16_t *v)
{
    uint8_t p[2];
    CN_TRY(cn_cursor_copy(c, p, 2));
    *v = (uint16_t)((p[0] << 8) | p[1]);
    return CN_OK;
}

int cn_cursor_u32be(cn_cursor_t *c, uint32_t *v)
{
    uint8_t p[4];
    CN_TRY(cn_cursor_copy(c, p, 4));
    *v = cn_load_u32be(p);
    return CN_OK;
}

int cn_cursor_u64be(cn_cursor_t *c, uint64_t *v)
{
    uint8_t p[8];
    CN_TRY(cn_cursor_copy(c, p, 8));
    *v = cn_load_u64be(p);
    return CN_OK;
}

void cn_store_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void cn_store_u64be(uint8_t *p, uint64_t v)
{
    cn_store_u32be(p, (uint32_t)(v >> 32));
    cn_store_u32be(p + 4, (uint32_t)v);
}

uint32_t cn_load_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t cn_load_u64be(const uint8_t *p)
{
    return ((uint64_t)cn_load_u32be(p) << 32) | cn_load_u32be(p + 4);
}

void cn_hex_encode(char *out, const void *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int cn_hex_decode(void *out, size_t n, const char *s)
{
    uint8_t *b = out;
    CN_ENSURE(strlen(s) == 2 * n, CN_EINVAL);
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        CN_ENSURE(hi >= 0 && lo >= 0, CN_EINVAL);
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    return CN_OK;
}
