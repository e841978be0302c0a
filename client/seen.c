/*
 * The seen-set: the newest CN_CLIENT_SEEN_MAX (sender device, message id)
 * pairs this client has handed to its caller, so that a redelivery after a
 * reconnect (the node delivers at least once) is acked but not shown again.
 *
 * In memory: a FIFO ring of keys plus an open-addressing index (linear
 * probing, backward-shift deletion, no tombstones). On disk: an append-only
 * log "CNSS" ‖ version u8 = 1 ‖ 3 reserved bytes ‖ 48-byte records,
 * rewritten from the ring once it holds twice the bound. A torn last record
 * (crash during an append) is ignored.
 */
#include "client/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEEN_MAGIC   "CNSS"
#define SEEN_VERSION 1
#define SEEN_HDR     8

typedef uint8_t seen_key_t[CN__SEEN_KEY_LEN];

struct cn__seen {
    size_t cap, count, head; /* ring: oldest at head */
    seen_key_t *keys;
    uint32_t *table; /* 0 = empty, else ring index + 1 */
    size_t mask;
    int fd;
    size_t log_records;
    bool dirty;
    char path[CN__PATH_MAX];
};

static uint64_t key_hash(const uint8_t *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < CN__SEEN_KEY_LEN; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

static size_t find_slot(const cn__seen_t *s, const uint8_t *k, bool *found)
{
    size_t i = key_hash(k) & s->mask;
    while (s->table[i] != 0) {
        if (memcmp(s->keys[s->table[i] - 1], k, CN__SEEN_KEY_LEN) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & s->mask;
    }
    *found = false;
    return i;
}

/* Removes the key at slot i, shifting back later entries of its cluster. */
static void table_delete(cn__seen_t *s, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (s->table[j] == 0)
            break;
        size_t k = key_hash(s->keys[s->table[j] - 1]) & s->mask;
        /* Move j into the hole at i unless its home k lies cyclically in (i, j]. */
        bool in_range = (i <= j) ? (k > i && k <= j) : (k > i || k <= j);
        if (!in_range) {
            s->table[i] = s->table[j];
            i = j;
        }
    }
    s->table[i] = 0;
}

/* Inserts into memory only; returns true when the key was new. */
static bool mem_add(cn__seen_t *s, const uint8_t *k)
{
    bool found;
    size_t slot = find_slot(s, k, &found);
    if (found)
        return false;
    if (s->count == s->cap) {
        bool f2;
        size_t old = find_slot(s, s->keys[s->head], &f2);
        if (f2)
            table_delete(s, old);
        s->head = (s->head + 1) % s->cap;
        s->count--;
        slot = find_slot(s, k, &found);
    }
    size_t pos = (s->head + s->count) % s->cap;
    memcpy(s->keys[pos], k, CN__SEEN_KEY_LEN);
    s->table[slot] = (uint32_t)pos + 1;
    s->count++;
    return true;
}

/* Rewrites the log from the ring and reopens it for appends. */
static int compact(cn__seen_t *s)
{
    int rc = CN_OK;
    cn_buf_t img;
    cn_buf_init(&img);
    CN_TRY_OUT(cn_buf_append(&img, SEEN_MAGIC, 4));
    const uint8_t ver[4] = {SEEN_VERSION, 0, 0, 0};
    CN_TRY_OUT(cn_buf_append(&img, ver, 4));
    for (size_t i = 0; i < s->count; i++)
        CN_TRY_OUT(cn_buf_append(&img, s->keys[(s->head + i) % s->cap], CN__SEEN_KEY_LEN));
    CN_TRY_OUT(cn__file_write_atomic(s->path, img.data, img.len, 0600));
    if (s->fd >= 0)
        close(s->fd);
    s->fd = open(s->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    CN_ENSURE_OUT(s->fd >= 0, CN_EIO);
    s->log_records = s->count;
    s->dirty = false;
out:
    cn_buf_dispose(&img);
    return rc;
}

/* Replays the log; a missing or foreign file starts an empty set. */
static int replay(cn__seen_t *s, bool *rewrite)
{
    cn_buf_t img;
    cn_buf_init(&img);
    int rc =
        cn__file_read(s->path, SEEN_HDR + 4 * CN__SEEN_KEY_LEN * s->cap + CN__SEEN_KEY_LEN, &img);
    *rewrite = true;
    if (rc == CN_OK && img.len >= SEEN_HDR && memcmp(img.data, SEEN_MAGIC, 4) == 0 &&
        img.data[4] == SEEN_VERSION) {
        size_t n = (img.len - SEEN_HDR) / CN__SEEN_KEY_LEN;
        for (size_t i = 0; i < n; i++)
            mem_add(s, img.data + SEEN_HDR + i * CN__SEEN_KEY_LEN);
        s->log_records = n;
        /* A torn tail or an oversized log is rewritten from memory. */
        *rewrite = (img.len - SEEN_HDR) % CN__SEEN_KEY_LEN != 0 || n > 2 * s->cap;
        rc = CN_OK;
    } else if (rc == CN_ENOTFOUND || rc == CN_OK || rc == CN_ETOOBIG) {
        /* A new home has no seen-set yet: only a damaged one is worth a warning. */
        if (rc == CN_ENOTFOUND)
            cn_log_debug("client.seen_reset", "reason=missing");
        else
            cn_log_warn("client.seen_reset", "reason=invalid");
        rc = CN_OK;
    }
    cn_buf_dispose(&img);
    return rc;
}

int cn__seen_open(const char *path, size_t cap, cn__seen_t **out)
{
    int rc = CN_OK;
    CN_ENSURE(cap > 0 && cap < (1u << 30), CN_EINVAL);
    cn__seen_t *s = calloc(1, sizeof(*s));
    CN_ENSURE(s != NULL, CN_ENOMEM);
    s->fd = -1;
    s->cap = cap;
    size_t tsize = 16;
    while (tsize < 2 * cap)
        tsize *= 2;
    s->mask = tsize - 1;
    s->keys = calloc(cap, sizeof(*s->keys));
    s->table = calloc(tsize, sizeof(*s->table));
    CN_ENSURE_OUT(s->keys != NULL && s->table != NULL, CN_ENOMEM);
    CN_ENSURE_OUT(strlen(path) < sizeof(s->path), CN_EINVAL);
    strcpy(s->path, path);
    bool rewrite;
    CN_TRY_OUT(replay(s, &rewrite));
    if (rewrite) {
        CN_TRY_OUT(compact(s));
    } else {
        s->fd = open(s->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        CN_ENSURE_OUT(s->fd >= 0, CN_EIO);
    }
out:
    if (rc < 0) {
        cn__seen_close(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

void cn__seen_close(cn__seen_t *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->keys);
    free(s->table);
    free(s);
}

static void make_key(uint8_t *k, const uint8_t *dev, const uint8_t *id)
{
    memcpy(k, dev, CN_DEVICE_ID_LEN);
    memcpy(k + CN_DEVICE_ID_LEN, id, CN_MESSAGE_ID_LEN);
}

bool cn__seen_has(const cn__seen_t *s, const uint8_t dev[CN_DEVICE_ID_LEN],
                  const uint8_t id[CN_MESSAGE_ID_LEN])
{
    uint8_t k[CN__SEEN_KEY_LEN];
    bool found;
    make_key(k, dev, id);
    (void)find_slot(s, k, &found);
    return found;
}

int cn__seen_add(cn__seen_t *s, const uint8_t dev[CN_DEVICE_ID_LEN],
                 const uint8_t id[CN_MESSAGE_ID_LEN])
{
    uint8_t k[CN__SEEN_KEY_LEN];
    make_key(k, dev, id);
    if (!mem_add(s, k))
        return CN_OK;
    for (;;) {
        ssize_t w = write(s->fd, k, sizeof(k));
        if (w < 0 && errno == EINTR)
            continue;
        /* O_APPEND writes of 48 bytes to a regular file are not split. */
        CN_ENSURE(w == (ssize_t)sizeof(k), CN_EIO);
        break;
    }
    s->log_records++;
    s->dirty = true;
    /* Bound the log even when the caller never syncs. */
    if (s->log_records > 2 * s->cap)
        return compact(s);
    return CN_OK;
}

int cn__seen_sync(cn__seen_t *s)
{
    if (s->dirty) {
        CN_ENSURE(fdatasync(s->fd) == 0, CN_EIO);
        s->dirty = false;
    }
    return CN_OK;
}

size_t cn__seen_count(const cn__seen_t *s)
{
    return s->count;
}
