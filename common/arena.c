/* The bump allocator of cn_common.h (cn_arena_t). */
#include "common/cn_common.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>

#define ALIGN alignof(max_align_t)

struct cn_arena_chunk {
    struct cn_arena_chunk *next;
    alignas(max_align_t) uint8_t data[];
};

void *cn_arena_alloc(cn_arena_t *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ALIGN - sizeof(struct cn_arena_chunk))
        return NULL;
    size_t want = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (a->block == NULL && want <= CN_ARENA_BLOCK) {
        a->block = malloc(CN_ARENA_BLOCK);
        if (a->block == NULL)
            return NULL;
        a->used = 0;
        CN_POISON(a->block, CN_ARENA_BLOCK);
    }
    if (a->block != NULL && want <= CN_ARENA_BLOCK - a->used) {
        uint8_t *p = a->block + a->used;
        a->used += want;
        CN_UNPOISON(p, n);
        return p;
    }
    struct cn_arena_chunk *c = malloc(sizeof(*c) + n);
    if (c == NULL)
        return NULL;
    c->next = a->chunks;
    a->chunks = c;
    return c->data;
}

void cn_arena_reset(cn_arena_t *a)
{
    while (a->chunks) {
        struct cn_arena_chunk *next = a->chunks->next;
        free(a->chunks);
        a->chunks = next;
    }
    if (a->block != NULL)
        CN_POISON(a->block, CN_ARENA_BLOCK);
    a->used = 0;
}

void cn_arena_dispose(cn_arena_t *a)
{
    cn_arena_reset(a);
    if (a->block != NULL)
        CN_UNPOISON(a->block, CN_ARENA_BLOCK);
    free(a->block);
    a->block = NULL;
}
