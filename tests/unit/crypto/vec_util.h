/*
 * A reader for the known-answer files of tests/vectors: records of
 * "NAME: value" lines separated by blank lines, '#' comments.
 */
#ifndef CN_VEC_UTIL_H
#define CN_VEC_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define VEC_FIELDS_MAX 12
#define VEC_VALUE_MAX  1024

typedef struct vec_record {
    int n;
    char name[VEC_FIELDS_MAX][32];
    char value[VEC_FIELDS_MAX][VEC_VALUE_MAX];
} vec_record_t;

/** Reads every record of CN_VECTORS_DIR/file into *out (malloc'd); returns the count. */
int vec_load(const char *file, vec_record_t **out);
/** The value of a field, or NULL. */
const char *vec_get(const vec_record_t *r, const char *name);
/** Decodes a hex field into out (at most cap bytes); returns its length, -1 if absent/bad. */
long vec_hex(const vec_record_t *r, const char *name, uint8_t *out, size_t cap);

#endif
