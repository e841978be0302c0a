/*
 * Files (DESIGN section 4, docs/E2E.md "Media"): the sender encrypts the
 * file with cn_media_encrypt (a fresh random key, secretstream chunks,
 * SHA-256 of the ciphertext), uploads the ciphertext with MediaBegin /
 * MediaChunk (at most CN_MEDIA_CHUNK_MAX bytes each, at the offset the
 * node holds) / MediaEnd (the digest), then sends {media id, key, digest,
 * size, type, name, SHA-256 of the plaintext} end to end. The receiver
 * downloads ranges with MediaGet, checks the digest, decrypts, checks the
 * plaintext hash and saves the file under HOME/files.
 *
 * Resuming: until the message is queued, the upload lives in HOME/uploads:
 * <id>.enc (the ciphertext: safe to keep) and <id>.meta (sealed, label
 * "upload:<id>"): "CNUP" ‖ 1 ‖ media id ‖ key ‖ digest ‖ plaintext sha256
 * ‖ ciphertext size u64 ‖ to (len u8) ‖ path (len u16) ‖ type (len u8) ‖
 * name (len u8). Running send-file again for the same file and recipient
 * asks MediaBegin where the node stopped and goes on from there.
 */
#include "client/client_int.h"

#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define UP_MAGIC "CNUP"

typedef struct upload {
    uint8_t id[CN_MEDIA_ID_LEN], key[CN_CLIENT_MEDIA_KEY_LEN], digest[CN_CLIENT_DIGEST_LEN];
    uint8_t sha[CN_CLIENT_DIGEST_LEN];
    uint64_t size; /* of the ciphertext */
    char to[CN_HANDLE_MAX + 1];
    char path[CN__PATH_MAX];
    char type[CN_MEDIA_TYPE_MAX + 1];
    char name[CN_CLIENT_NAME_MAX + 1];
} upload_t;

static int up_path(const cn_client_t *c, const uint8_t *id, const char *ext, char *path,
                   char *label)
{
    char hex[2 * CN_MEDIA_ID_LEN + 1];
    cn_hex_encode(hex, id, CN_MEDIA_ID_LEN);
    int n = snprintf(path, CN__PATH_MAX, "%s/uploads/%s.%s", c->home, hex, ext);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    if (label != NULL)
        snprintf(label, 64, "upload:%s", hex);
    return CN_OK;
}

static int put_s(cn_buf_t *b, const char *s, bool wide)
{
    size_t n = strlen(s);
    CN_TRY(wide ? cn_buf_put_u16be(b, (uint16_t)n) : cn_buf_put_u8(b, (uint8_t)n));
    return cn_buf_append(b, s, n);
}

static int get_s(cn_cursor_t *cur, char *out, size_t cap, bool wide)
{
    uint16_t n;
    uint8_t n8;
    if (wide) {
        CN_TRY(cn_cursor_u16be(cur, &n));
    } else {
        CN_TRY(cn_cursor_u8(cur, &n8));
        n = n8;
    }
    CN_ENSURE(n < cap, CN_EINVAL);
    CN_TRY(cn_cursor_copy(cur, out, n));
    out[n] = '\0';
    return CN_OK;
}

static int meta_save(cn_client_t *c, const upload_t *u)
{
    char path[CN__PATH_MAX], label[64];
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = up_path(c, u->id, "meta", path, label);
    if (rc == CN_OK)
        rc = cn_buf_append(&b, UP_MAGIC "\x01", 5);
    if (rc == CN_OK)
        rc = cn_buf_append(&b, u->id, sizeof(u->id));
    if (rc == CN_OK)
        rc = cn_buf_append(&b, u->key, sizeof(u->key));
    if (rc == CN_OK)
        rc = cn_buf_append(&b, u->digest, sizeof(u->digest));
    if (rc == CN_OK)
        rc = cn_buf_append(&b, u->sha, sizeof(u->sha));
    if (rc == CN_OK)
        rc = cn_buf_put_u64be(&b, u->size);
    if (rc == CN_OK)
        rc = put_s(&b, u->to, false);
    if (rc == CN_OK)
        rc = put_s(&b, u->path, true);
    if (rc == CN_OK)
        rc = put_s(&b, u->type, false);
    if (rc == CN_OK)
        rc = put_s(&b, u->name, false);
    if (rc == CN_OK)
        rc = cn__sealed_write(c->home_key, path, label, b.data, b.len);
    cn_buf_wipe(&b);
    return rc;
}

static int meta_decode(const uint8_t *p, size_t n, upload_t *u)
{
    cn_cursor_t cur;
    uint8_t magic[5];
    cn_cursor_init(&cur, p, n);
    CN_TRY(cn_cursor_copy(&cur, magic, 5));
    CN_ENSURE(memcmp(magic, UP_MAGIC "\x01", 5) == 0, CN_EINVAL);
    CN_TRY(cn_cursor_copy(&cur, u->id, sizeof(u->id)));
    CN_TRY(cn_cursor_copy(&cur, u->key, sizeof(u->key)));
    CN_TRY(cn_cursor_copy(&cur, u->digest, sizeof(u->digest)));
    CN_TRY(cn_cursor_copy(&cur, u->sha, sizeof(u->sha)));
    CN_TRY(cn_cursor_u64be(&cur, &u->size));
    CN_TRY(get_s(&cur, u->to, sizeof(u->to), false));
    CN_TRY(get_s(&cur, u->path, sizeof(u->path), true));
    CN_TRY(get_s(&cur, u->type, sizeof(u->type), false));
    CN_TRY(get_s(&cur, u->name, sizeof(u->name), false));
    CN_ENSURE(cn_cursor_left(&cur) == 0, CN_EINVAL);
    return CN_OK;
}

/* Finds an unfinished upload of the same file (path and plaintext hash) to
 * the same recipient. */
static bool find_upload(cn_client_t *c, const upload_t *want, upload_t *out)
{
    char dir[CN__PATH_MAX], path[CN__PATH_MAX + 300], label[64];
    if (cn__home_path(c, "uploads", dir) < 0)
        return false; /* cannot happen: the home path is checked at open */
    DIR *d = opendir(dir);
    struct dirent *de;
    bool found = false;
    while (d != NULL && !found && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len != 2 * CN_MEDIA_ID_LEN + 5 || strcmp(de->d_name + len - 5, ".meta") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        snprintf(label, sizeof(label), "upload:%.*s", 2 * CN_MEDIA_ID_LEN, de->d_name);
        cn_buf_t b;
        cn_buf_init(&b);
        if (cn__sealed_read(c->home_key, path, label, 8192, &b) == CN_OK &&
            meta_decode(b.data, b.len, out) == CN_OK)
            found = strcmp(out->to, want->to) == 0 && strcmp(out->path, want->path) == 0 &&
                    sodium_memcmp(out->sha, want->sha, sizeof(out->sha)) == 0;
        cn_buf_wipe(&b);
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static void up_remove(cn_client_t *c, const uint8_t *id)
{
    char path[CN__PATH_MAX];
    if (up_path(c, id, "meta", path, NULL) == CN_OK)
        (void)unlink(path);
    if (up_path(c, id, "enc", path, NULL) == CN_OK)
        (void)unlink(path);
}

static const char *guess_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {{".txt", "text/plain"},
                 {".jpg", "image/jpeg"},
                 {".jpeg", "image/jpeg"},
                 {".png", "image/png"},
                 {".pdf", "application/pdf"}};
    size_t n = strlen(name);
    for (size_t i = 0; i < CN_ARRAY_LEN(types); i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && strcasecmp(name + n - e, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* Encrypts the file and records the upload (or finds the unfinished one). */
static int prepare(cn_client_t *c, const char *to, const char *path, upload_t *u)
{
    char enc[CN__PATH_MAX];
    memset(u, 0, sizeof(*u));
    snprintf(u->to, sizeof(u->to), "%s", to);
    /* An absolute name identifies the file when the upload is resumed. */
    char cwd[CN__PATH_MAX / 2] = "";
    CN_ENSURE(path[0] == '/' || getcwd(cwd, sizeof(cwd)) != NULL, CN_EIO);
    int pn = snprintf(u->path, sizeof(u->path), "%s%s%s", cwd, cwd[0] ? "/" : "", path);
    CN_ENSURE(pn > 0 && (size_t)pn < sizeof(u->path) && pn < 65535, CN_EINVAL);
    const char *base = strrchr(u->path, '/');
    base = base ? base + 1 : u->path;
    size_t base_len = strlen(base);
    CN_ENSURE(base_len < sizeof(u->name) && cn_utf8_valid((const uint8_t *)base, base_len),
              CN_EINVAL);
    memcpy(u->name, base, base_len + 1);
    snprintf(u->type, sizeof(u->type), "%s", guess_type(base));
    cn_buf_t pt, ct;
    cn_buf_init(&pt);
    cn_buf_init(&ct);
    int rc = cn__file_read(u->path, CN_CLIENT_FILE_MAX, &pt);
    if (rc == CN_OK)
        crypto_hash_sha256(u->sha, pt.data, pt.len);
    upload_t old;
    if (rc == CN_OK && find_upload(c, u, &old)) {
        *u = old;
        goto out;
    }
    cn_random(u->id, sizeof(u->id));
    if (rc == CN_OK)
        rc = cn_media_encrypt(pt.data, pt.len, u->key, u->digest, &ct);
    u->size = ct.len;
    if (rc == CN_OK)
        rc = up_path(c, u->id, "enc", enc, NULL);
    if (rc == CN_OK)
        rc = cn__file_write_atomic(enc, ct.data, ct.len, 0600);
    if (rc == CN_OK)
        rc = meta_save(c, u);
out:
    cn_buf_wipe(&pt);
    cn_buf_dispose(&ct);
    return rc;
}

static int media_call(cn_client_t *c, Chat__ClientFrame *f, uint64_t deadline,
                      Chat__ServerFrame **r)
{
    CN_TRY(cn__client_call(c, f, deadline, r));
    const Chat__Response *resp = (*r)->response;
    if (resp->status == CHAT__STATUS__CONFLICT && resp->result_case == CHAT__RESPONSE__RESULT_MEDIA)
        return CN_OK; /* resume at media->stored */
    int rc = cn__client_check(c, *r, -1);
    if (rc < 0) {
        chat__server_frame__free_unpacked(*r, NULL);
        *r = NULL;
    }
    return rc;
}

/* One connection's worth of upload: Begin, chunks from `stored`, End. */
static int upload_run(cn_client_t *c, const upload_t *u, const cn_buf_t *ct, uint64_t deadline,
                      cn_client_progress_cb progress, void *ud)
{
    Chat__ServerFrame *r = NULL;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    Chat__MediaBegin mb;
    chat__media_begin__init(&mb);
    mb.media_id = cn__bin(u->id, CN_MEDIA_ID_LEN);
    mb.size = u->size;
    mb.content_type = cn__str_mut(""); /* the real type travels end to end */
    f.body_case = CHAT__CLIENT_FRAME__BODY_MEDIA_BEGIN;
    f.media_begin = &mb;
    CN_TRY(media_call(c, &f, deadline, &r));
    CN_ENSURE(r->response->result_case == CHAT__RESPONSE__RESULT_MEDIA, CN_EPROTO);
    uint64_t stored = r->response->media->stored;
    bool complete = r->response->media->complete;
    chat__server_frame__free_unpacked(r, NULL);
    if (progress != NULL)
        progress(ud, u->id, stored, u->size);
    while (!complete && stored < u->size) {
        Chat__MediaChunk mc;
        chat__media_chunk__init(&mc);
        mc.media_id = cn__bin(u->id, CN_MEDIA_ID_LEN);
        mc.offset = stored;
        mc.data =
            cn__bin(ct->data + stored, CN_MIN(u->size - stored, (uint64_t)CN_MEDIA_CHUNK_MAX));
        f.body_case = CHAT__CLIENT_FRAME__BODY_MEDIA_CHUNK;
        f.media_chunk = &mc;
        CN_TRY(media_call(c, &f, deadline, &r));
        CN_ENSURE(r->response->result_case == CHAT__RESPONSE__RESULT_MEDIA &&
                      r->response->media->stored <= u->size,
                  CN_EPROTO);
        stored = r->response->media->stored;
        chat__server_frame__free_unpacked(r, NULL);
        if (progress != NULL)
            progress(ud, u->id, stored, u->size);
    }
    if (complete)
        return CN_OK;
    Chat__MediaEnd me;
    chat__media_end__init(&me);
    me.media_id = cn__bin(u->id, CN_MEDIA_ID_LEN);
    me.sha256 = cn__bin(u->digest, CN_CLIENT_DIGEST_LEN);
    f.body_case = CHAT__CLIENT_FRAME__BODY_MEDIA_END;
    f.media_end = &me;
    CN_TRY(media_call(c, &f, deadline, &r));
    chat__server_frame__free_unpacked(r, NULL);
    return CN_OK;
}

static int queue_file_message(cn_client_t *c, const upload_t *u)
{
    cn_content_t ct = {.version = CN_CLIENT_CONTENT_VER, .type = CN_CONTENT_FILE};
    ct.sent_at = cn_now_ms();
    ct.media_id = u->id;
    ct.media_key = u->key;
    ct.media_digest = u->digest;
    ct.file_size = u->size;
    ct.file_type = u->type;
    ct.file_type_len = strlen(u->type);
    ct.file_name = u->name;
    ct.file_name_len = strlen(u->name);
    ct.file_sha256 = u->sha;
    cn_buf_t body;
    cn_buf_init(&body);
    int rc = cn_content_encode(&body, &ct);
    if (rc == CN_OK)
        rc = cn__client_queue(c, u->to, CHAT__KIND__MESSAGE, &body, NULL);
    cn_buf_wipe(&body);
    return rc;
}

int cn_client_send_file(cn_client_t *c, const char *handle, const char *path,
                        cn_client_progress_cb progress, void *ud)
{
    char norm[CN_HANDLE_MAX + 1], enc[CN__PATH_MAX];
    CN_ENSURE(handle != NULL && path != NULL && cn_handle_normalize(handle, norm) == CN_OK,
              CN_EINVAL);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    upload_t u;
    CN_TRY(prepare(c, norm, path, &u));
    cn_buf_t ct;
    cn_buf_init(&ct);
    int rc = up_path(c, u.id, "enc", enc, NULL);
    if (rc == CN_OK)
        rc = cn__file_read(enc, CN_CLIENT_FILE_MAX + CN_CLIENT_FILE_MAX / 64 + 4096, &ct);
    if (rc == CN_OK && ct.len != u.size)
        rc = CN_EINVAL;
    cn__login_t auth = {0};
    while (rc == CN_OK) {
        rc = cn__client_connect(c, &auth, deadline);
        if (rc == CN_OK)
            rc = upload_run(c, &u, &ct, deadline, progress, ud);
        if (rc != CN_ECLOSED)
            break;
        rc = CN_OK; /* reconnect and resume where the node stopped */
    }
    cn_buf_dispose(&ct);
    CN_TRY(rc);
    /* The message is durable in the outbox: the upload state can go. */
    CN_TRY(queue_file_message(c, &u));
    up_remove(c, u.id);
    return cn__client_flush_until(c, deadline, NULL, NULL);
}

/* ------------------------------------------------------------- download */

static int download(cn_client_t *c, const cn_content_t *ct, uint64_t deadline, cn_buf_t *out)
{
    uint64_t size = UINT64_MAX;
    while (out->len < size) {
        Chat__MediaGet mg;
        chat__media_get__init(&mg);
        mg.media_id = cn__bin(ct->media_id, CN_MEDIA_ID_LEN);
        mg.offset = out->len;
        mg.length = CN_MEDIA_CHUNK_MAX;
        Chat__ClientFrame f;
        chat__client_frame__init(&f);
        f.body_case = CHAT__CLIENT_FRAME__BODY_MEDIA_GET;
        f.media_get = &mg;
        Chat__ServerFrame *r = NULL;
        CN_TRY(cn__client_call(c, &f, deadline, &r));
        int rc = cn__client_check(c, r, CHAT__RESPONSE__RESULT_MEDIA_DATA);
        const Chat__MediaData *md = rc == CN_OK ? r->response->media_data : NULL;
        if (rc == CN_OK && (md->offset != out->len || md->size > CN_CLIENT_FILE_MAX * 2u ||
                            (md->data.len == 0 && out->len < md->size)))
            rc = CN_EPROTO;
        if (rc == CN_OK) {
            size = md->size;
            rc = cn_buf_append(out, md->data.data, CN_MIN(md->data.len, size - out->len));
        }
        chat__server_frame__free_unpacked(r, NULL);
        CN_TRY(rc);
    }
    return CN_OK;
}

/* A safe file name under HOME/files: no separators, no dot files. */
static void save_name(const cn_client_message_t *m, char *out, size_t cap)
{
    const cn_content_t *ct = &m->content;
    char name[CN_CLIENT_NAME_MAX + 1] = "file";
    if (ct->file_name != NULL && ct->file_name_len > 0)
        snprintf(name, sizeof(name), "%.*s", (int)ct->file_name_len, ct->file_name);
    for (char *p = name; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '_';
    if (name[0] == '.')
        name[0] = '_';
    char id[9]; /* the id's last bytes: random (its first are a time) */
    cn_hex_encode(id, m->message_id + CN_MESSAGE_ID_LEN - 4, 4);
    snprintf(out, cap, "%s-%s", id, name);
}

void cn__media_fetch(cn_client_t *c, cn_client_message_t *m, char *path, size_t cap)
{
    const cn_content_t *ct = &m->content;
    cn_buf_t enc, pt;
    cn_buf_init(&enc);
    cn_buf_init(&pt);
    char name[CN_CLIENT_NAME_MAX + 16];
    int rc = download(c, ct, cn__now_ms() + c->timeout_ms, &enc);
    if (rc < 0)
        m->file_error = "download failed";
    if (rc == CN_OK &&
        cn_media_decrypt(enc.data, enc.len, ct->media_key, ct->media_digest, &pt) != CN_OK) {
        rc = CN_EAUTH;
        m->file_error = "file does not decrypt (digest or key wrong)";
    }
    if (rc == CN_OK) {
        crypto_hash_sha256(m->file_sha256, pt.data, pt.len);
        if (ct->file_sha256 != NULL &&
            sodium_memcmp(m->file_sha256, ct->file_sha256, CN_CLIENT_DIGEST_LEN) != 0) {
            rc = CN_EAUTH;
            m->file_error = "file hash mismatch";
        }
    }
    save_name(m, name, sizeof(name));
    if (rc == CN_OK && snprintf(path, cap, "%s/files/%s", c->home, name) >= (int)cap)
        rc = CN_EINVAL;
    if (rc == CN_OK && cn__file_write_atomic(path, pt.data, pt.len, 0600) != CN_OK) {
        rc = CN_EIO;
        m->file_error = "cannot save the file";
    }
    if (rc == CN_OK)
        m->file_path = path;
    cn_buf_wipe(&pt);
    cn_buf_dispose(&enc);
}
