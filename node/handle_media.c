/*
 * Media (DESIGN section 4): the client encrypts a file and uploads the
 * ciphertext in chunks, resumable by offset; the digest of the whole
 * ciphertext is checked at the end; anyone who knows the 128-bit random
 * media id (sent inside an E2E message) may download ranges of a complete
 * upload until it expires. The node never sees the key.
 */
#include "node/node_internal.h"

#include <string.h>

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

static void respond_info(cn_conn_t *c, uint64_t rid, Chat__Status status, const char *detail,
                         const uint8_t *id, uint64_t size, uint64_t stored, bool complete,
                         uint64_t expires)
{
    Chat__MediaInfo mi;
    chat__media_info__init(&mi);
    mi.media_id = cn__pb_bytes(id, CN_MEDIA_ID_LEN);
    mi.size = size;
    mi.stored = stored;
    mi.complete = complete;
    mi.expires = expires;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.status = status;
    r.detail = cn__pb_str(detail);
    r.result_case = CHAT__RESPONSE__RESULT_MEDIA;
    r.media = &mi;
    cn__conn_respond(c, &r);
}

/* Maps a media op's failure to a status; answers it. */
static void respond_error(cn_conn_t *c, cn_pending_t *p, uint64_t stored)
{
    const uint8_t *id = p->op.u.media_chunk.media_id; /* first member of every media op */
    switch (p->op.result) {
    case CN_ECONFLICT: /* resume at `stored` */
        respond_info(c, p->request_id, CHAT__STATUS__CONFLICT, "resume at the stored offset", id, 0,
                     stored, false, 0);
        return;
    case CN_ETOOBIG:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__TOO_LARGE, "upload too large");
        return;
    case CN_ELIMIT:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__RATE_LIMITED,
                                "rate limited: media quota used up");
        return;
    case CN_EEXIST:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__CONFLICT, "media id taken");
        return;
    case CN_EAUTH:
        cn__conn_respond_status(
            c, p->request_id,
            p->op.type == CN_OP_MEDIA_END ? CHAT__STATUS__BAD_REQUEST : CHAT__STATUS__FORBIDDEN,
            p->op.type == CN_OP_MEDIA_END ? "digest mismatch" : "not your upload");
        return;
    case CN_ENOTFOUND:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__NOT_FOUND, "unknown media");
        return;
    case CN_EINVAL:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__BAD_REQUEST, "invalid upload");
        return;
    default:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
    }
}

static void media_done(cn_conn_t *c, cn_pending_t *p)
{
    if (!c)
        return;
    uint64_t stored = p->op.type == CN_OP_MEDIA_BEGIN   ? p->op.u.media_begin.stored
                      : p->op.type == CN_OP_MEDIA_CHUNK ? p->op.u.media_chunk.stored
                                                        : p->op.u.media_end.stored;
    if (p->op.result != CN_OK) {
        respond_error(c, p, stored);
        return;
    }
    cn_rec_media_t info;
    const uint8_t *id = p->op.u.media_chunk.media_id;
    if (cn_store_media_info(srv(c)->store, id, &info) != CN_OK) {
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE, "storage unavailable");
        return;
    }
    respond_info(c, p->request_id, CHAT__STATUS__OK, "", id, info.size, info.stored, info.complete,
                 info.expires);
}

void cn__handle_media_begin(cn_conn_t *c, uint64_t rid, const Chat__MediaBegin *m)
{
    if (m->media_id.len != CN_MEDIA_ID_LEN || m->size == 0 ||
        strlen(m->content_type) > CN_MEDIA_TYPE_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "media_id (16 bytes), size and a short content_type are required");
        return;
    }
    if (m->size > srv(c)->cfg.media_max_bytes) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__TOO_LARGE, "upload too large");
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_MEDIA_BEGIN, media_done, 0);
    if (!p)
        return;
    memcpy(p->op.u.media_begin.media_id, m->media_id.data, CN_MEDIA_ID_LEN);
    memcpy(p->op.u.media_begin.owner, c->handle, sizeof(c->handle));
    p->op.u.media_begin.size = m->size;
    snprintf(p->op.u.media_begin.content_type, sizeof(p->op.u.media_begin.content_type), "%s",
             m->content_type);
    p->op.u.media_begin.ttl_ms = srv(c)->cfg.media_ttl_ms;
    p->op.u.media_begin.max_size = srv(c)->cfg.media_max_bytes;
    p->op.u.media_begin.quota_bytes = srv(c)->cfg.media_quota_bytes;
    cn__pending_submit(c, p);
}

void cn__handle_media_chunk(cn_conn_t *c, uint64_t rid, const Chat__MediaChunk *m)
{
    if (m->media_id.len != CN_MEDIA_ID_LEN || m->data.len == 0) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "media_id and data required");
        return;
    }
    if (m->data.len > CN_MEDIA_CHUNK_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__TOO_LARGE, "chunk above 256 KiB");
        return;
    }
    if (!cn__conn_rate_ok(c, rid, CN_RL_MEDIA_BYTES, c->device_id, CN_DEVICE_ID_LEN,
                          (double)m->data.len))
        return;
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_MEDIA_CHUNK, media_done, m->data.len);
    if (!p)
        return;
    memcpy(p->extra, m->data.data, m->data.len);
    memcpy(p->op.u.media_chunk.media_id, m->media_id.data, CN_MEDIA_ID_LEN);
    memcpy(p->op.u.media_chunk.owner, c->handle, sizeof(c->handle));
    p->op.u.media_chunk.offset = m->offset;
    p->op.u.media_chunk.data = cn_slice(p->extra, m->data.len);
    cn__pending_submit(c, p);
}

void cn__handle_media_end(cn_conn_t *c, uint64_t rid, const Chat__MediaEnd *m)
{
    if (m->media_id.len != CN_MEDIA_ID_LEN || m->sha256.len != CN_MEDIA_SHA256_LEN) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "media_id (16 bytes) and sha256 (32 bytes) required");
        return;
    }
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_MEDIA_END, media_done, 0);
    if (!p)
        return;
    memcpy(p->op.u.media_end.media_id, m->media_id.data, CN_MEDIA_ID_LEN);
    memcpy(p->op.u.media_end.owner, c->handle, sizeof(c->handle));
    memcpy(p->op.u.media_end.sha256, m->sha256.data, CN_MEDIA_SHA256_LEN);
    cn__pending_submit(c, p);
}

void cn__handle_media_get(cn_conn_t *c, uint64_t rid, const Chat__MediaGet *m)
{
    uint32_t len = m->length ? CN_MIN(m->length, CN_MEDIA_CHUNK_MAX) : CN_MEDIA_CHUNK_MAX;
    if (m->media_id.len != CN_MEDIA_ID_LEN) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "media_id must be 16 bytes");
        return;
    }
    cn_rec_media_t info;
    int rc = cn_store_media_info(srv(c)->store, m->media_id.data, &info);
    if (rc == CN_OK && !info.complete)
        rc = CN_EAGAIN;
    cn_buf_t data;
    cn_buf_init(&data);
    if (rc == CN_OK && m->offset < info.size)
        rc = cn_store_media_read(srv(c)->store, m->media_id.data, m->offset, len, &data);
    if (rc < 0) {
        cn__conn_respond_status(c, rid,
                                rc == CN_ENOTFOUND ? CHAT__STATUS__NOT_FOUND
                                : rc == CN_EAGAIN  ? CHAT__STATUS__CONFLICT
                                : rc == CN_EINVAL  ? CHAT__STATUS__BAD_REQUEST
                                                   : CHAT__STATUS__UNAVAILABLE,
                                rc == CN_EAGAIN ? "upload not complete" : "cannot read media");
        cn_buf_dispose(&data);
        return;
    }
    Chat__MediaData md;
    chat__media_data__init(&md);
    md.media_id = m->media_id;
    md.offset = m->offset;
    md.data = cn__pb_bytes(data.data, data.len);
    md.size = info.size;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.result_case = CHAT__RESPONSE__RESULT_MEDIA_DATA;
    r.media_data = &md;
    cn__conn_respond(c, &r);
    cn_buf_dispose(&data);
}
