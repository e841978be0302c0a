/*
 * The home's at-rest key and sealed files (docs/E2E.md, "At rest").
 *
 * HOME/home.params, version 1 (written once, when the home is created):
 *   "CNHP" ‖ version u8 = 1 ‖ mode u8 (1 key file, 2 passphrase)
 *   ‖ reserved u16 = 0
 *   mode 2 only: salt (16) ‖ opslimit u64 ‖ memlimit u64
 *   ‖ check: a blob sealed under the key (label "home.check"), which tells a
 *     wrong passphrase apart from damaged files.
 * HOME/home.key (mode 1): 32 random bytes, mode 0600.
 * Every secret file of the home (identity, prekeys, sessions/, trust/) is a
 * crypto/atrest.c blob sealed under that key with its own label.
 */
#include "client/client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PARAMS_MAGIC "CNHP"
#define MODE_KEYFILE 1
#define MODE_PASS    2
#define CHECK_LABEL  "home.check"
#define CHECK_TEXT   "chatnode home v1"
#define PARAMS_MAX   256
#define ID_LABEL     "identity"
#define ID_IMAGE_LEN (4 + 4 + 32 + 32)

static int path_in(char *out, const char *home, const char *name)
{
    int n = snprintf(out, CN__PATH_MAX, "%s/%s", home, name);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    return CN_OK;
}

int cn__sealed_read(const uint8_t *key, const char *path, const char *label, size_t max,
                    cn_buf_t *out)
{
    cn_buf_t img;
    cn_buf_init(&img);
    int rc = cn__file_read(path, max + 64, &img);
    if (rc == CN_OK)
        rc = cn_open_blob(key, label, img.data, img.len, out);
    cn_buf_dispose(&img); /* ciphertext only */
    return rc;
}

int cn__sealed_write(const uint8_t *key, const char *path, const char *label, const void *p,
                     size_t n)
{
    cn_buf_t img;
    cn_buf_init(&img);
    int rc = cn_seal_blob(key, label, p, n, &img);
    if (rc == CN_OK)
        rc = cn__file_write_atomic(path, img.data, img.len, 0600);
    cn_buf_dispose(&img);
    return rc;
}

/* Reads HOME/home.key: exactly 32 bytes. */
static int keyfile_read(const char *home, uint8_t *key)
{
    char path[CN__PATH_MAX];
    CN_TRY(path_in(path, home, "home.key"));
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn__file_read(path, 64, &b);
    if (rc == CN_OK && b.len != CN_SEAL_KEY_LEN)
        rc = CN_EINVAL;
    if (rc == CN_OK)
        memcpy(key, b.data, CN_SEAL_KEY_LEN);
    cn_buf_wipe(&b);
    return rc == CN_ENOTFOUND ? CN_EAUTH : rc;
}

/* Creates HOME/home.key with a fresh key; it must not exist yet. */
static int keyfile_create(const char *home, uint8_t *key)
{
    char path[CN__PATH_MAX];
    CN_TRY(path_in(path, home, "home.key"));
    randombytes_buf(key, CN_SEAL_KEY_LEN);
    return cn__file_write_atomic(path, key, CN_SEAL_KEY_LEN, 0600);
}

static int params_write(const char *home, const uint8_t *key, uint8_t mode, const uint8_t *salt,
                        uint64_t ops, uint64_t mem)
{
    char path[CN__PATH_MAX];
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = path_in(path, home, "home.params");
    if (rc == CN_OK)
        rc = cn_buf_append(&b, PARAMS_MAGIC, 4);
    if (rc == CN_OK)
        rc = cn_buf_put_u8(&b, 1);
    if (rc == CN_OK)
        rc = cn_buf_put_u8(&b, mode);
    if (rc == CN_OK)
        rc = cn_buf_put_u16be(&b, 0);
    if (rc == CN_OK && mode == MODE_PASS) {
        rc = cn_buf_append(&b, salt, CN_PWHASH_SALT_LEN);
        if (rc == CN_OK)
            rc = cn_buf_put_u64be(&b, ops);
        if (rc == CN_OK)
            rc = cn_buf_put_u64be(&b, mem);
    }
    if (rc == CN_OK)
        rc = cn_seal_blob(key, CHECK_LABEL, CHECK_TEXT, strlen(CHECK_TEXT), &b);
    if (rc == CN_OK)
        rc = cn__file_write_atomic(path, b.data, b.len, 0600);
    cn_buf_dispose(&b);
    return rc;
}

/* A new home: passphrase mode when one is given, else a key file. */
static int home_create(const char *home, const cn_client_options_t *opt, uint8_t *key)
{
    if (opt->passphrase == NULL) {
        CN_TRY(keyfile_create(home, key));
        return params_write(home, key, MODE_KEYFILE, NULL, 0, 0);
    }
    uint8_t salt[CN_PWHASH_SALT_LEN];
    uint64_t ops = opt->pwhash_opslimit ? opt->pwhash_opslimit : crypto_pwhash_OPSLIMIT_MODERATE;
    size_t mem = opt->pwhash_memlimit ? opt->pwhash_memlimit : crypto_pwhash_MEMLIMIT_MODERATE;
    randombytes_buf(salt, sizeof(salt));
    CN_TRY(cn_pwhash_derive(key, opt->passphrase, strlen(opt->passphrase), salt, ops, mem));
    return params_write(home, key, MODE_PASS, salt, ops, mem);
}

/* An existing home: derive or read the key and check it against the blob. */
static int home_unlock(const char *home, const cn_client_options_t *opt, const cn_buf_t *p,
                       uint8_t *key)
{
    cn_cursor_t c;
    uint8_t magic[4], ver, mode, salt[CN_PWHASH_SALT_LEN];
    uint16_t reserved;
    uint64_t ops = 0, mem = 0;
    cn_cursor_init(&c, p->data, p->len);
    CN_ENSURE(cn_cursor_copy(&c, magic, 4) == CN_OK && memcmp(magic, PARAMS_MAGIC, 4) == 0,
              CN_EINVAL);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == 1, CN_EVERSION);
    CN_ENSURE(cn_cursor_u8(&c, &mode) == CN_OK, CN_EINVAL);
    CN_ENSURE(cn_cursor_u16be(&c, &reserved) == CN_OK && reserved == 0, CN_EINVAL);
    if (mode == MODE_PASS) {
        CN_ENSURE(cn_cursor_copy(&c, salt, sizeof(salt)) == CN_OK, CN_EINVAL);
        CN_ENSURE(cn_cursor_u64be(&c, &ops) == CN_OK && cn_cursor_u64be(&c, &mem) == CN_OK,
                  CN_EINVAL);
        CN_ENSURE(opt->passphrase != NULL, CN_EAUTH);
        CN_TRY(cn_pwhash_derive(key, opt->passphrase, strlen(opt->passphrase), salt, ops,
                                (size_t)mem));
    } else {
        CN_ENSURE(mode == MODE_KEYFILE, CN_EINVAL);
        CN_TRY(keyfile_read(home, key));
    }
    cn_buf_t check;
    cn_buf_init(&check);
    int rc = cn_open_blob(key, CHECK_LABEL, c.p + c.pos, cn_cursor_left(&c), &check);
    if (rc == CN_OK &&
        (check.len != strlen(CHECK_TEXT) || memcmp(check.data, CHECK_TEXT, check.len)))
        rc = CN_EAUTH;
    cn_buf_dispose(&check);
    return rc == CN_EAUTH || rc == CN_OK ? rc : CN_EINVAL;
}

int cn__home_key_open(const char *home, const cn_client_options_t *opt, uint8_t **key_out)
{
    char path[CN__PATH_MAX];
    *key_out = NULL;
    CN_TRY(path_in(path, home, "home.params"));
    uint8_t *key = sodium_malloc(CN_SEAL_KEY_LEN);
    CN_ENSURE(key != NULL, CN_ENOMEM);
    cn_buf_t p;
    cn_buf_init(&p);
    int rc = cn__file_read(path, PARAMS_MAX, &p);
    if (rc == CN_ENOTFOUND)
        rc = home_create(home, opt, key);
    else if (rc == CN_OK)
        rc = home_unlock(home, opt, &p, key);
    cn_buf_dispose(&p);
    if (rc < 0) {
        sodium_free(key);
        return rc;
    }
    *key_out = key;
    return CN_OK;
}

/* -------------------------------------------------------------- identity */

int cn__identity_save(const char *home, const uint8_t *key, const cn_identity_t *id)
{
    char path[CN__PATH_MAX];
    CN_TRY(path_in(path, home, "identity"));
    uint8_t *img = sodium_malloc(ID_IMAGE_LEN);
    CN_ENSURE(img != NULL, CN_ENOMEM);
    memcpy(img, "CNID", 4);
    img[4] = 2; /* sealed identity image, version 2 */
    img[5] = img[6] = img[7] = 0;
    memcpy(img + 8, id->sk, 32); /* seed */
    memcpy(img + 40, id->pk, 32);
    int rc = cn__sealed_write(key, path, ID_LABEL, img, ID_IMAGE_LEN);
    sodium_free(img);
    return rc;
}

static int identity_from_image(const cn_buf_t *b, cn_identity_t *id)
{
    CN_ENSURE(b->len == ID_IMAGE_LEN && memcmp(b->data, "CNID", 4) == 0, CN_EINVAL);
    CN_ENSURE(b->data[4] == 2 && b->data[5] == 0 && b->data[6] == 0 && b->data[7] == 0, CN_EINVAL);
    CN_TRY(cn_identity_from_seed(b->data + 8, id));
    if (sodium_memcmp(id->pk, b->data + 40, 32) != 0) {
        cn_identity_dispose(id);
        return CN_EINVAL;
    }
    return CN_OK;
}

int cn__identity_load(const char *home, const uint8_t *key, cn_identity_t *id)
{
    char path[CN__PATH_MAX], legacy[CN__PATH_MAX];
    memset(id, 0, sizeof(*id));
    CN_TRY(path_in(path, home, "identity"));
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn__sealed_read(key, path, ID_LABEL, ID_IMAGE_LEN, &b);
    if (rc == CN_OK)
        rc = identity_from_image(&b, id);
    cn_buf_wipe(&b);
    if (rc != CN_ENOTFOUND)
        return rc;
    /* A home from before sealing: seal its key, then remove the plain file. */
    CN_TRY(path_in(legacy, home, "identity.key"));
    CN_TRY(cn_identity_load(legacy, id));
    rc = cn__identity_save(home, key, id);
    if (rc == CN_OK && unlink(legacy) != 0)
        rc = CN_EIO;
    if (rc < 0)
        cn_identity_dispose(id);
    return rc;
}
