/*
 * Device and node identities (Ed25519), randomness and X25519 prekeys.
 *
 * Key file format (version 1, 72 bytes, mode 0600):
 *   magic "CNID" (4) ‖ version u8 = 1 ‖ reserved (3 zero bytes)
 *   ‖ seed (32) ‖ public key (32)
 * The secret key is re-derived from the seed with crypto_sign_seed_keypair;
 * the stored public key must match the derived one, which catches a
 * corrupted or hand-edited file before it signs anything.
 */
#include "crypto/cn_crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAGIC   "CNID"
#define KEYFILE_VERSION 1
#define KEYFILE_HDR_LEN 8
#define KEYFILE_LEN     (KEYFILE_HDR_LEN + crypto_sign_SEEDBYTES + CN_DEVICE_ID_LEN)

int cn_crypto_init(void)
{
    CN_ENSURE(sodium_init() >= 0, CN_EINTERNAL);
    return CN_OK;
}

void cn_random(void *p, size_t n)
{
    randombytes_buf(p, n);
}

uint32_t cn_random_uniform(uint32_t upper)
{
    return upper ? randombytes_uniform(upper) : 0;
}

int cn_identity_generate(cn_identity_t *id)
{
    memset(id, 0, sizeof(*id));
    id->sk = sodium_malloc(CN_SIGN_SECRET_LEN);
    CN_ENSURE(id->sk != NULL, CN_ENOMEM);
    if (crypto_sign_keypair(id->pk, id->sk) != 0) {
        cn_identity_dispose(id);
        return CN_EINTERNAL;
    }
    return CN_OK;
}

int cn_identity_from_seed(const uint8_t seed[32], cn_identity_t *id)
{
    memset(id, 0, sizeof(*id));
    CN_ENSURE(seed != NULL, CN_EINVAL);
    id->sk = sodium_malloc(CN_SIGN_SECRET_LEN);
    CN_ENSURE(id->sk != NULL, CN_ENOMEM);
    if (crypto_sign_seed_keypair(id->pk, id->sk, seed) != 0) {
        cn_identity_dispose(id);
        return CN_EINTERNAL;
    }
    return CN_OK;
}

void cn_identity_dispose(cn_identity_t *id)
{
    if (id == NULL)
        return;
    if (id->sk != NULL)
        sodium_free(id->sk); /* sodium_free wipes before unmapping */
    id->sk = NULL;
    sodium_memzero(id->pk, sizeof(id->pk));
}

/* Reads exactly n bytes; CN_EINVAL on a short file. */
static int read_all(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        CN_ENSURE(r >= 0, CN_EIO);
        CN_ENSURE(r > 0, CN_EINVAL);
        got += (size_t)r;
    }
    return CN_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        CN_ENSURE(w > 0, CN_EIO);
        done += (size_t)w;
    }
    return CN_OK;
}

/* Derives the key pair from a file image and checks header and pk. */
static int identity_from_image(const uint8_t *img, cn_identity_t *id)
{
    CN_ENSURE(memcmp(img, KEYFILE_MAGIC, 4) == 0, CN_EINVAL);
    CN_ENSURE(img[4] == KEYFILE_VERSION, CN_EINVAL);
    CN_ENSURE(img[5] == 0 && img[6] == 0 && img[7] == 0, CN_EINVAL);
    id->sk = sodium_malloc(CN_SIGN_SECRET_LEN);
    CN_ENSURE(id->sk != NULL, CN_ENOMEM);
    const uint8_t *seed = img + KEYFILE_HDR_LEN;
    const uint8_t *stored_pk = seed + crypto_sign_SEEDBYTES;
    if (crypto_sign_seed_keypair(id->pk, id->sk, seed) != 0 ||
        sodium_memcmp(id->pk, stored_pk, CN_DEVICE_ID_LEN) != 0) {
        cn_identity_dispose(id);
        return CN_EINVAL;
    }
    return CN_OK;
}

int cn_identity_load(const char *path, cn_identity_t *id)
{
    int rc = CN_OK;
    uint8_t *img = NULL;
    memset(id, 0, sizeof(*id));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CN_ENOTFOUND : CN_EIO;
    struct stat st;
    CN_ENSURE_OUT(fstat(fd, &st) == 0, CN_EIO);
    CN_ENSURE_OUT(S_ISREG(st.st_mode), CN_EINVAL);
    CN_ENSURE_OUT(st.st_size == (off_t)KEYFILE_LEN, CN_EINVAL);
    img = sodium_malloc(KEYFILE_LEN);
    CN_ENSURE_OUT(img != NULL, CN_ENOMEM);
    CN_TRY_OUT(read_all(fd, img, KEYFILE_LEN));
    CN_TRY_OUT(identity_from_image(img, id));
out:
    if (img != NULL)
        sodium_free(img);
    close(fd);
    return rc;
}

/* fsyncs the directory holding path so that a rename is durable. */
static int fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        CN_ENSURE(n < sizeof(dir), CN_EINVAL);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CN_ENSURE(fd >= 0, CN_EIO);
    int r = fsync(fd);
    close(fd);
    CN_ENSURE(r == 0, CN_EIO);
    return CN_OK;
}

int cn_identity_save(const cn_identity_t *id, const char *path)
{
    int rc = CN_OK;
    int fd = -1;
    bool tmp_exists = false;
    char tmp[4096];
    CN_ENSURE(id != NULL && id->sk != NULL, CN_EINVAL);
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    CN_ENSURE(n > 0 && (size_t)n < sizeof(tmp), CN_EINVAL);
    uint8_t *img = sodium_malloc(KEYFILE_LEN);
    CN_ENSURE(img != NULL, CN_ENOMEM);
    memcpy(img, KEYFILE_MAGIC, 4);
    img[4] = KEYFILE_VERSION;
    img[5] = img[6] = img[7] = 0;
    /* libsodium's secret key is seed ‖ pk. */
    memcpy(img + KEYFILE_HDR_LEN, id->sk, crypto_sign_SEEDBYTES);
    memcpy(img + KEYFILE_HDR_LEN + crypto_sign_SEEDBYTES, id->pk, CN_DEVICE_ID_LEN);
    fd = mkstemp(tmp);
    CN_ENSURE_OUT(fd >= 0, CN_EIO);
    tmp_exists = true;
    CN_ENSURE_OUT(fchmod(fd, 0600) == 0, CN_EIO);
    CN_TRY_OUT(write_all(fd, img, KEYFILE_LEN));
    CN_ENSURE_OUT(fsync(fd) == 0, CN_EIO);
    CN_ENSURE_OUT(close(fd) == 0, CN_EIO);
    fd = -1;
    CN_ENSURE_OUT(rename(tmp, path) == 0, CN_EIO);
    tmp_exists = false; /* renamed: nothing to unlink */
    CN_TRY_OUT(fsync_parent(path));
out:
    if (fd >= 0)
        close(fd);
    if (tmp_exists)
        unlink(tmp);
    sodium_free(img);
    return rc;
}

int cn_identity_sign(const cn_identity_t *id, const void *msg, size_t len,
                     uint8_t sig[CN_SIGNATURE_LEN])
{
    CN_ENSURE(id != NULL && id->sk != NULL, CN_EINVAL);
    CN_ENSURE(msg != NULL || len == 0, CN_EINVAL);
    CN_ENSURE(crypto_sign_detached(sig, NULL, msg, len, id->sk) == 0, CN_EINTERNAL);
    return CN_OK;
}

int cn_sig_verify(const uint8_t pk[CN_DEVICE_ID_LEN], const void *msg, size_t len,
                  const uint8_t sig[CN_SIGNATURE_LEN])
{
    CN_ENSURE(msg != NULL || len == 0, CN_EINVAL);
    CN_ENSURE(crypto_sign_verify_detached(sig, msg, len, pk) == 0, CN_EAUTH);
    return CN_OK;
}

int cn_x25519_generate(cn_x25519_t *kp)
{
    memset(kp, 0, sizeof(*kp));
    kp->sk = sodium_malloc(CN_X25519_LEN);
    CN_ENSURE(kp->sk != NULL, CN_ENOMEM);
    randombytes_buf(kp->sk, CN_X25519_LEN);
    if (crypto_scalarmult_base(kp->pk, kp->sk) != 0) {
        cn_x25519_dispose(kp);
        return CN_EINTERNAL;
    }
    return CN_OK;
}

void cn_x25519_dispose(cn_x25519_t *kp)
{
    if (kp == NULL)
        return;
    if (kp->sk != NULL)
        sodium_free(kp->sk);
    kp->sk = NULL;
    sodium_memzero(kp->pk, sizeof(kp->pk));
}
