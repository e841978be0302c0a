/*
 * The persistent outbox: one file per queued message in HOME/outbox, named
 * %020llu.msg so that directory order is send order. A file is complete or
 * absent: it is written under a temporary name, fsync'd, linked into place
 * (link fails when the name is taken, so two writers never overwrite each
 * other) and the directory is fsync'd.
 *
 * File format, version 1 (big-endian integers):
 *   "CNOB" ‖ version u8 = 1 ‖ kind u8 ‖ message_id (16) ‖ created u64
 *   ‖ len u8 ‖ recipient handle ‖ len u32 ‖ encoded content
 */
#include "client/client_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTBOX_MAGIC   "CNOB"
#define OUTBOX_VERSION 1
#define NAME_DIGITS    20

int cn__outbox_encode(const cn__outbox_entry_t *e, cn_buf_t *out)
{
    size_t tlen = strnlen(e->to, sizeof(e->to));
    CN_ENSURE(tlen >= CN_HANDLE_MIN && tlen <= CN_HANDLE_MAX, CN_EINVAL);
    cn_slice_t content = cn_buf_unread(&e->content);
    CN_ENSURE(content.len <= CN__OUTBOX_CONTENT_MAX, CN_ETOOBIG);
    CN_TRY(cn_buf_append(out, OUTBOX_MAGIC, 4));
    CN_TRY(cn_buf_put_u8(out, OUTBOX_VERSION));
    CN_TRY(cn_buf_put_u8(out, e->kind));
    CN_TRY(cn_buf_append(out, e->message_id, CN_MESSAGE_ID_LEN));
    CN_TRY(cn_buf_put_u64be(out, e->created));
    CN_TRY(cn_buf_put_u8(out, (uint8_t)tlen));
    CN_TRY(cn_buf_append(out, e->to, tlen));
    CN_TRY(cn_buf_put_u32be(out, (uint32_t)content.len));
    return cn_buf_append(out, content.base, content.len);
}

int cn__outbox_decode(const uint8_t *p, size_t n, cn__outbox_entry_t *e)
{
    cn_cursor_t c;
    uint8_t magic[4], ver, tlen;
    uint32_t clen;
    cn_slice_t content;
    cn_cursor_init(&c, p, n);
    CN_ENSURE(cn_cursor_copy(&c, magic, 4) == CN_OK, CN_EINVAL);
    CN_ENSURE(memcmp(magic, OUTBOX_MAGIC, 4) == 0, CN_EINVAL);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == OUTBOX_VERSION, CN_EVERSION);
    CN_ENSURE(cn_cursor_u8(&c, &e->kind) == CN_OK, CN_EINVAL);
    CN_ENSURE(e->kind <= CHAT__KIND__CONTROL || e->kind == CN__KIND_HISTORY ||
                  e->kind == CN__KIND_GROUP,
              CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(&c, e->message_id, CN_MESSAGE_ID_LEN) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u64be(&c, &e->created) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u8(&c, &tlen) == CN_OK, CN_EINVAL);
    CN_ENSURE(tlen >= CN_HANDLE_MIN && tlen <= CN_HANDLE_MAX, CN_EINVAL);
    CN_ENSURE(cn_cursor_copy(&c, e->to, tlen) == CN_OK, CN_EINVAL);
    e->to[tlen] = '\0';
    char norm[CN_HANDLE_MAX + 1];
    CN_ENSURE(cn_handle_normalize(e->to, norm) == CN_OK && strcmp(norm, e->to) == 0, CN_EINVAL);
    CN_ENSURE(cn_cursor_u32be(&c, &clen) == CN_OK, CN_EINVAL);
    CN_ENSURE(clen <= CN__OUTBOX_CONTENT_MAX, CN_ETOOBIG);
    CN_ENSURE(cn_cursor_view(&c, clen, &content) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_left(&c) == 0, CN_EINVAL);
    cn_buf_reset(&e->content);
    return cn_buf_append(&e->content, content.base, content.len);
}

/* Parses "<20 digits>.msg"; false for anything else (temporaries too). */
static bool parse_name(const char *name, uint64_t *seq)
{
    if (strlen(name) != NAME_DIGITS + 4 || strcmp(name + NAME_DIGITS, ".msg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *seq = v;
    return true;
}

static int max_seq(const char *dir, uint64_t *out)
{
    DIR *d = opendir(dir);
    CN_ENSURE(d != NULL, CN_EIO);
    struct dirent *de;
    uint64_t m = 0, s;
    while ((de = readdir(d)) != NULL) {
        if (parse_name(de->d_name, &s) && s > m)
            m = s;
    }
    closedir(d);
    *out = m;
    return CN_OK;
}

/* Links the durable temporary file tmp under the first free sequence. */
static int link_free_name(const char *dir, const char *tmp, uint64_t *next_seq, uint64_t *seq)
{
    char path[CN__PATH_MAX];
    for (int tries = 0; tries < 1000; tries++) {
        snprintf(path, sizeof(path), "%s/%0*llu.msg", dir, NAME_DIGITS,
                 (unsigned long long)*next_seq);
        if (link(tmp, path) == 0) {
            *seq = (*next_seq)++;
            return CN_OK;
        }
        CN_ENSURE(errno == EEXIST, CN_EIO);
        (*next_seq)++;
    }
    return CN_EIO;
}

int cn__outbox_put(const char *dir, uint64_t *next_seq, cn__outbox_entry_t *e)
{
    int rc = CN_OK;
    cn_buf_t img;
    char tmp[CN__PATH_MAX];
    cn_buf_init(&img);
    CN_TRY_OUT(cn__outbox_encode(e, &img));
    if (*next_seq == 0) {
        uint64_t m;
        CN_TRY_OUT(max_seq(dir, &m));
        *next_seq = m + 1;
    }
    snprintf(tmp, sizeof(tmp), "%s/.put.XXXXXX", dir);
    CN_TRY_OUT(cn__file_write_new(tmp, img.data, img.len, 0600));
    rc = link_free_name(dir, tmp, next_seq, &e->seq);
    unlink(tmp);
    CN_TRY_OUT(rc);
    CN_TRY_OUT(cn__dir_sync(dir));
out:
    cn_buf_dispose(&img);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    uint64_t x = ((const cn__outbox_entry_t *)a)->seq, y = ((const cn__outbox_entry_t *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Reads and decodes one outbox file into e (content owned by e). */
static int load_entry(const char *dir, uint64_t seq, cn__outbox_entry_t *e)
{
    char path[CN__PATH_MAX];
    cn_buf_t img;
    cn_buf_init(&img);
    snprintf(path, sizeof(path), "%s/%0*llu.msg", dir, NAME_DIGITS, (unsigned long long)seq);
    int rc = cn__file_read(path, CN__OUTBOX_MAX_FILE, &img);
    if (rc == CN_OK)
        rc = cn__outbox_decode(img.data, img.len, e);
    cn_buf_dispose(&img);
    e->seq = seq;
    return rc;
}

int cn__outbox_list(const char *dir, cn__outbox_entry_t **out, size_t *n)
{
    int rc = CN_OK;
    size_t cnt = 0, cap = 0;
    cn__outbox_entry_t *v = NULL;
    uint64_t seq;
    DIR *d = opendir(dir);
    CN_ENSURE(d != NULL, CN_EIO);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!parse_name(de->d_name, &seq))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            cn__outbox_entry_t *nv = realloc(v, cap * sizeof(*v));
            CN_ENSURE_OUT(nv != NULL, CN_ENOMEM);
            v = nv;
        }
        memset(&v[cnt], 0, sizeof(v[cnt]));
        cn_buf_init(&v[cnt].content);
        int lrc = load_entry(dir, seq, &v[cnt]);
        if (lrc < 0) {
            /* A damaged file must not block every later message. */
            cn_log_warn("client.outbox_skip", "seq=%llu err=%s", (unsigned long long)seq,
                        cn_strerror(lrc));
            cn_buf_dispose(&v[cnt].content);
            continue;
        }
        cnt++;
    }
    if (cnt > 1)
        qsort(v, cnt, sizeof(*v), cmp_entry);
out:
    closedir(d);
    if (rc < 0) {
        cn__outbox_list_free(v, cnt);
        v = NULL;
        cnt = 0;
    }
    *out = v;
    *n = cnt;
    return rc;
}

void cn__outbox_list_free(cn__outbox_entry_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cn_buf_dispose(&v[i].content);
    free(v);
}

int cn__outbox_remove(const char *dir, uint64_t seq)
{
    char path[CN__PATH_MAX];
    snprintf(path, sizeof(path), "%s/%0*llu.msg", dir, NAME_DIGITS, (unsigned long long)seq);
    if (unlink(path) != 0 && errno != ENOENT)
        return CN_EIO;
    return cn__dir_sync(dir);
}
