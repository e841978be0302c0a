#include "common/cn_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cn_slice_t cn_slice(const void *p, size_t len)
{
    cn_slice_t s;
    /* A slice is a view; callers decide whether they may write through it. */
    memcpy(&s.base, &p, sizeof(s.base));
    s.len = len;
    return s;
}

void cn_buf_init(cn_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void cn_buf_dispose(cn_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int cn_buf_reserve(cn_buf_t *b, size_t n)
{
    if (b->cap - b->len >= n)
        return CN_OK;
    /* Reclaim consumed space before growing, when that moves no more bytes
     * than it reclaims. A buffer full of output that the socket takes a
     * little at a time would otherwise move all of it on every append. */
    if (b->rpos > 0 && b->rpos >= b->len - b->rpos) {
        memmove(b->data, b->data + b->rpos, b->len - b->rpos);
        b->len -= b->rpos;
        b->rpos = 0;
        if (b->cap - b->len >= n)
            return CN_OK;
    }
    CN_ENSURE(n <= SIZE_MAX / 2 - b->len, CN_ENOMEM);
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    CN_ENSURE(d != NULL, CN_ENOMEM);
    b->data = d;
    b->cap = cap;
    return CN_OK;
}

int cn_buf_append(cn_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return CN_OK;
    CN_TRY(cn_buf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return CN_OK;
}

int cn_buf_put_u8(cn_buf_t *b, uint8_t v)
{
    return cn_buf_append(b, &v, 1);
}

int cn_buf_put_u16be(cn_buf_t *b, uint16_t v)
{
    uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return cn_buf_append(b, p, 2);
}

int cn_buf_put_u32be(cn_buf_t *b, uint32_t v)
{
    uint8_t p[4];
    cn_store_u32be(p, v);
    return cn_buf_append(b, p, 4);
}

int cn_buf_put_u64be(cn_buf_t *b, uint64_t v)
{
    uint8_t p[8];
    cn_store_u64be(p, v);
    return cn_buf_append(b, p, 8);
}

int cn_buf_printf(cn_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CN_ENSURE(n >= 0, CN_EINVAL);
    CN_TRY(cn_buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CN_OK;
}

cn_slice_t cn_buf_unread(const cn_buf_t *b)
{
    return cn_slice(b->data ? b->data + b->rpos : NULL, b->len - b->rpos);
}

void cn_buf_consume(cn_buf_t *b, size_t n)
{
    if (n > b->len - b->rpos)
        n = b->len - b->rpos;
    b->rpos += n;
    if (b->rpos == b->len)
        b->rpos = b->len = 0;
}

void cn_buf_reset(cn_buf_t *b)
{
    b->len = b->rpos = 0;
}
