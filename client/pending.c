/*
 * Group messages waiting for their sender key (docs/E2E.md, "Sender key
 * requests"): a group message from a device whose sender key this device
 * does not have (or whose key id or iteration it cannot reach) is kept
 * here, and the sender device is asked for its key. The set is bounded
 * per (group, sender device) and in total, in count and in bytes; the
 * oldest entry goes first, with a log line that says why. It also
 * remembers when a request last went to each (group, sender device), so
 * that a burst of undecryptable messages sends one request.
 *
 * This file is the data structure and its codec only (no I/O), so that
 * the bounds are testable; client/skreq.c stores it sealed in the home:
 *
 * HOME/groups/pending (label "group-pending"): "CNGP" ‖ version u8 = 1
 *   ‖ count u16 ‖ count × (group id (16) ‖ device (32) ‖ message id (16)
 *   ‖ from (len u8 ‖ handle) ‖ kind u8 ‖ seq u64 ‖ server time u64
 *   ‖ key id u32 ‖ iteration u32 ‖ len u32 ‖ ciphertext)
 *   ‖ nsent u16 ‖ nsent × (group id ‖ device ‖ last request ms u64)
 */
#include "client/client_int.h"

#include <stdlib.h>
#include <string.h>

#define PENDING_MAGIC "CNGP"

static bool same_sender(const cn__pending_msg_t *m, const uint8_t *gid, const uint8_t *dev)
{
    return memcmp(m->gid, gid, CN_GROUP_ID_LEN) == 0 && memcmp(m->dev, dev, CN_DEVICE_ID_LEN) == 0;
}

void cn__pending_init(cn__pending_t *p)
{
    memset(p, 0, sizeof(*p));
}

void cn__pending_dispose(cn__pending_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].ct);
    free(p->v);
    memset(p, 0, sizeof(*p));
}

void cn__pending_remove(cn__pending_t *p, size_t i)
{
    p->bytes -= p->v[i].ct_len;
    free(p->v[i].ct);
    memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(p->v[0]));
    p->n--;
    p->dirty = true;
}

size_t cn__pending_count(const cn__pending_t *p, const uint8_t *gid, const uint8_t *dev)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += same_sender(&p->v[i], gid, dev);
    return n;
}

/* Drops entry i to make room, saying why. */
static void drop(cn__pending_t *p, size_t i, const char *reason)
{
    char id[2 * CN_MESSAGE_ID_LEN + 1];
    cn_hex_encode(id, p->v[i].message_id, CN_MESSAGE_ID_LEN);
    cn_log_warn("client.group_pending_dropped", "id=%s from=%s reason=%s", id, p->v[i].from,
                reason);
    cn__pending_remove(p, i);
    p->dropped++;
}

static int reserve(cn__pending_t *p)
{
    if (p->n < p->cap)
        return CN_OK;
    size_t cap = p->cap ? p->cap * 2 : 16;
    cap = CN_MIN(cap, (size_t)CN_CLIENT_PENDING_MAX);
    cn__pending_msg_t *v = realloc(p->v, cap * sizeof(*v));
    CN_ENSURE(v != NULL, CN_ENOMEM);
    p->v = v;
    p->cap = cap;
    return CN_OK;
}

int cn__pending_add(cn__pending_t *p, const cn__pending_msg_t *m, const uint8_t *ct, size_t n)
{
    CN_ENSURE(n <= CN_CIPHERTEXT_MAX, CN_ETOOBIG);
    /* Oldest first: of the same sender when that sender is at its bound,
     * else of anyone when the whole set is. */
    if (cn__pending_count(p, m->gid, m->dev) >= CN_CLIENT_PENDING_PER_SENDER_MAX) {
        for (size_t i = 0; i < p->n; i++)
            if (same_sender(&p->v[i], m->gid, m->dev)) {
                drop(p, i, "per-sender bound (CN_CLIENT_PENDING_PER_SENDER_MAX)");
                break;
            }
    }
    while (p->n > 0 && p->n >= CN_CLIENT_PENDING_MAX)
        drop(p, 0, "total bound (CN_CLIENT_PENDING_MAX)");
    while (p->n > 0 && p->bytes + n > CN_CLIENT_PENDING_BYTES_MAX)
        drop(p, 0, "byte bound (CN_CLIENT_PENDING_BYTES_MAX)");
    CN_TRY(reserve(p));
    uint8_t *copy = malloc(n ? n : 1);
    CN_ENSURE(copy != NULL, CN_ENOMEM);
    memcpy(copy, ct, n);
    cn__pending_msg_t *e = &p->v[p->n++];
    *e = *m;
    e->ct = copy;
    e->ct_len = n;
    p->bytes += n;
    p->dirty = true;
    return CN_OK;
}

bool cn__pending_request_due(cn__pending_t *p, const uint8_t *gid, const uint8_t *dev,
                             uint64_t now_ms)
{
    size_t i;
    for (i = 0; i < p->nsent; i++)
        if (memcmp(p->sent[i].gid, gid, CN_GROUP_ID_LEN) == 0 &&
            memcmp(p->sent[i].dev, dev, CN_DEVICE_ID_LEN) == 0)
            break;
    if (i < p->nsent && now_ms >= p->sent[i].at_ms &&
        now_ms - p->sent[i].at_ms < CN_CLIENT_SKREQ_INTERVAL_MS)
        return false;
    if (i == p->nsent) {
        if (p->nsent == CN__SKREQ_SENT_MAX) { /* forget the oldest record */
            memmove(&p->sent[0], &p->sent[1], (p->nsent - 1) * sizeof(p->sent[0]));
            p->nsent--;
        }
        i = p->nsent++;
        memcpy(p->sent[i].gid, gid, CN_GROUP_ID_LEN);
        memcpy(p->sent[i].dev, dev, CN_DEVICE_ID_LEN);
    }
    p->sent[i].at_ms = now_ms;
    p->dirty = true;
    return true;
}

/* ----------------------------------------------------------------- codec */

int cn__pending_encode(const cn__pending_t *p, cn_buf_t *out)
{
    CN_TRY(cn_buf_append(out, PENDING_MAGIC, 4));
    CN_TRY(cn_buf_put_u8(out, 1));
    CN_TRY(cn_buf_put_u16be(out, (uint16_t)p->n));
    for (size_t i = 0; i < p->n; i++) {
        const cn__pending_msg_t *m = &p->v[i];
        size_t hl = strlen(m->from);
        CN_TRY(cn_buf_append(out, m->gid, CN_GROUP_ID_LEN));
        CN_TRY(cn_buf_append(out, m->dev, CN_DEVICE_ID_LEN));
        CN_TRY(cn_buf_append(out, m->message_id, CN_MESSAGE_ID_LEN));
        CN_TRY(cn_buf_put_u8(out, (uint8_t)hl));
        CN_TRY(cn_buf_append(out, m->from, hl));
        CN_TRY(cn_buf_put_u8(out, m->kind));
        CN_TRY(cn_buf_put_u64be(out, m->seq));
        CN_TRY(cn_buf_put_u64be(out, m->server_time));
        CN_TRY(cn_buf_put_u32be(out, m->key_id));
        CN_TRY(cn_buf_put_u32be(out, m->iteration));
        CN_TRY(cn_buf_put_u32be(out, (uint32_t)m->ct_len));
        CN_TRY(cn_buf_append(out, m->ct, m->ct_len));
    }
    CN_TRY(cn_buf_put_u16be(out, (uint16_t)p->nsent));
    for (size_t i = 0; i < p->nsent; i++) {
        CN_TRY(cn_buf_append(out, p->sent[i].gid, CN_GROUP_ID_LEN));
        CN_TRY(cn_buf_append(out, p->sent[i].dev, CN_DEVICE_ID_LEN));
        CN_TRY(cn_buf_put_u64be(out, p->sent[i].at_ms));
    }
    return CN_OK;
}

static int decode_msg(cn_cursor_t *cur, cn__pending_t *p)
{
    cn__pending_msg_t m;
    uint8_t hl;
    uint32_t len;
    cn_slice_t ct;
    char norm[CN_HANDLE_MAX + 1];
    memset(&m, 0, sizeof(m));
    CN_TRY(cn_cursor_copy(cur, m.gid, CN_GROUP_ID_LEN));
    CN_TRY(cn_cursor_copy(cur, m.dev, CN_DEVICE_ID_LEN));
    CN_TRY(cn_cursor_copy(cur, m.message_id, CN_MESSAGE_ID_LEN));
    CN_TRY(cn_cursor_u8(cur, &hl));
    CN_ENSURE(hl >= CN_HANDLE_MIN && hl <= CN_HANDLE_MAX, CN_EINVAL);
    CN_TRY(cn_cursor_copy(cur, m.from, hl));
    m.from[hl] = '\0';
    CN_ENSURE(cn_handle_normalize(m.from, norm) == CN_OK && strcmp(norm, m.from) == 0, CN_EINVAL);
    CN_TRY(cn_cursor_u8(cur, &m.kind));
    CN_TRY(cn_cursor_u64be(cur, &m.seq));
    CN_TRY(cn_cursor_u64be(cur, &m.server_time));
    CN_TRY(cn_cursor_u32be(cur, &m.key_id));
    CN_TRY(cn_cursor_u32be(cur, &m.iteration));
    CN_TRY(cn_cursor_u32be(cur, &len));
    CN_ENSURE(len <= CN_CIPHERTEXT_MAX, CN_EINVAL);
    CN_ENSURE(p->bytes + len <= CN_CLIENT_PENDING_BYTES_MAX, CN_EINVAL);
    CN_ENSURE(cn__pending_count(p, m.gid, m.dev) < CN_CLIENT_PENDING_PER_SENDER_MAX, CN_EINVAL);
    CN_TRY(cn_cursor_view(cur, len, &ct));
    return cn__pending_add(p, &m, ct.base, ct.len);
}

int cn__pending_decode(const uint8_t *b, size_t n, cn__pending_t *p)
{
    cn_cursor_t cur;
    uint8_t magic[4], ver;
    uint16_t cnt, nsent;
    cn__pending_init(p);
    cn_cursor_init(&cur, b, n);
    int rc = cn_cursor_copy(&cur, magic, 4);
    if (rc == CN_OK && memcmp(magic, PENDING_MAGIC, 4) != 0)
        rc = CN_EINVAL;
    if (rc == CN_OK)
        rc = cn_cursor_u8(&cur, &ver);
    if (rc == CN_OK && ver != 1)
        rc = CN_EVERSION;
    if (rc == CN_OK)
        rc = cn_cursor_u16be(&cur, &cnt);
    if (rc == CN_OK && cnt > CN_CLIENT_PENDING_MAX)
        rc = CN_EINVAL;
    for (uint16_t i = 0; rc == CN_OK && i < cnt; i++)
        rc = decode_msg(&cur, p);
    if (rc == CN_OK)
        rc = cn_cursor_u16be(&cur, &nsent);
    if (rc == CN_OK && nsent > CN__SKREQ_SENT_MAX)
        rc = CN_EINVAL;
    for (uint16_t i = 0; rc == CN_OK && i < nsent; i++) {
        rc = cn_cursor_copy(&cur, p->sent[i].gid, CN_GROUP_ID_LEN);
        if (rc == CN_OK)
            rc = cn_cursor_copy(&cur, p->sent[i].dev, CN_DEVICE_ID_LEN);
        if (rc == CN_OK)
            rc = cn_cursor_u64be(&cur, &p->sent[i].at_ms);
        p->nsent = i + 1u;
    }
    if (rc == CN_OK && cn_cursor_left(&cur) != 0)
        rc = CN_EINVAL;
    if (rc != CN_OK) {
        cn__pending_dispose(p);
        return rc == CN_ENOMEM ? rc : (rc == CN_EVERSION ? rc : CN_EINVAL);
    }
    p->dirty = false;
    return CN_OK;
}
