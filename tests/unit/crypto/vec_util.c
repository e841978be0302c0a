#include "vec_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CN_VECTORS_DIR
#error "CN_VECTORS_DIR must point at tests/vectors"
#endif

int vec_load(const char *file, vec_record_t **out)
{
    char path[512], line[4096];
    snprintf(path, sizeof(path), "%s/%s", CN_VECTORS_DIR, file);
    FILE *f = fopen(path, "r");
    *out = NULL;
    if (f == NULL)
        return -1;
    vec_record_t *v = NULL;
    int n = 0;
    bool open = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#')
            continue;
        if (line[0] == '\0') {
            open = false;
            continue;
        }
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        if (!open) {
            v = realloc(v, (size_t)(n + 1) * sizeof(*v));
            memset(&v[n], 0, sizeof(v[n]));
            n++;
            open = true;
        }
        vec_record_t *r = &v[n - 1];
        if (r->n == VEC_FIELDS_MAX)
            continue;
        *colon = '\0';
        if (strlen(line) >= sizeof(r->name[0]))
            continue; /* no field of the vector files has a longer name */
        const char *val = colon + 1;
        while (*val == ' ')
            val++;
        memcpy(r->name[r->n], line, strlen(line) + 1);
        snprintf(r->value[r->n], sizeof(r->value[0]), "%s", val);
        r->n++;
    }
    fclose(f);
    *out = v;
    return n;
}

const char *vec_get(const vec_record_t *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->name[i], name) == 0)
            return r->value[i];
    return NULL;
}

long vec_hex(const vec_record_t *r, const char *name, uint8_t *out, size_t cap)
{
    const char *s = vec_get(r, name);
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    if (len % 2 != 0 || len / 2 > cap)
        return -1;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return (long)(len / 2);
}
