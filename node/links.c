/*
 * Pending device links: a new device (unauthenticated connection) asked to
 * join a user and waits; an existing device of that user approves it by
 * the short code shown on the new device. The table is small and bounded;
 * entries expire after CN_LINK_TTL_MS.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

struct cn_links {
    uv_mutex_t lock;
    cn_link_t slots[CN_LINKS_MAX];
};

cn_links_t *cn__links_new(void)
{
    cn_links_t *l = calloc(1, sizeof(*l));
    if (l && uv_mutex_init(&l->lock) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

void cn__links_free(cn_links_t *l)
{
    if (!l)
        return;
    uv_mutex_destroy(&l->lock);
    free(l);
}

/* A code a person can read out and type: 8 digits as 4-4. */
static void make_code(char out[CN_LINK_CODE_LEN + 1])
{
    uint32_t a = cn_random_uniform(10000), b = cn_random_uniform(10000);
    snprintf(out, CN_LINK_CODE_LEN + 1, "%04u-%04u", a, b);
}

int cn__links_add(cn_links_t *l, const cn_link_t *in, char code[CN_LINK_CODE_LEN + 1])
{
    uint64_t now = cn_now_ms();
    int rc = CN_ELIMIT;
    uv_mutex_lock(&l->lock);
    cn_link_t *free_slot = NULL;
    for (size_t i = 0; i < CN_LINKS_MAX; i++) {
        cn_link_t *s = &l->slots[i];
        if (s->expires && s->expires < now)
            memset(s, 0, sizeof(*s)); /* expired */
        if (s->expires && s->conn_id == in->conn_id && s->loop == in->loop)
            memset(s, 0, sizeof(*s)); /* one pending link per connection */
        if (!s->expires && !free_slot)
            free_slot = s;
    }
    if (free_slot) {
        *free_slot = *in;
        free_slot->expires = now + CN_LINK_TTL_MS;
        bool unique;
        do {
            make_code(free_slot->code);
            unique = true;
            for (size_t i = 0; i < CN_LINKS_MAX; i++)
                if (&l->slots[i] != free_slot && l->slots[i].expires &&
                    strcmp(l->slots[i].code, free_slot->code) == 0)
                    unique = false;
        } while (!unique);
        memcpy(code, free_slot->code, CN_LINK_CODE_LEN + 1);
        rc = CN_OK;
    }
    uv_mutex_unlock(&l->lock);
    return rc;
}

int cn__links_find(cn_links_t *l, const char *code, bool take, cn_link_t *out)
{
    uint64_t now = cn_now_ms();
    int rc = CN_ENOTFOUND;
    uv_mutex_lock(&l->lock);
    for (size_t i = 0; i < CN_LINKS_MAX; i++) {
        cn_link_t *s = &l->slots[i];
        if (s->expires && s->expires >= now && strcmp(s->code, code) == 0) {
            *out = *s;
            if (take)
                memset(s, 0, sizeof(*s));
            rc = CN_OK;
            break;
        }
    }
    uv_mutex_unlock(&l->lock);
    return rc;
}
