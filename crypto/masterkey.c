/*
 * The node's master key (DESIGN section 5): 32 bytes from a key file or
 * from hex in the environment, held in sodium_malloc memory. It only
 * wraps the key ring (crypto/keyring.c). Nothing here logs key bytes.
 */
#include "crypto/cn_crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEX_LEN (2 * CN_ATREST_KEY_LEN)

static int mk_alloc(cn_master_key_t *mk)
{
    mk->key = sodium_malloc(CN_ATREST_KEY_LEN);
    return mk->key != NULL ? CN_OK : CN_ENOMEM;
}

void cn_master_key_dispose(cn_master_key_t *mk)
{
    if (mk == NULL || mk->key == NULL)
        return;
    sodium_free(mk->key); /* sodium_free wipes before it frees */
    mk->key = NULL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int cn_master_key_from_hex(const char *hex, cn_master_key_t *mk)
{
    char digits[HEX_LEN + 1];
    CN_ENSURE(hex != NULL && mk != NULL, CN_EINVAL);
    mk->key = NULL;
    while (is_space(*hex))
        hex++;
    size_t n = strnlen(hex, HEX_LEN + 64);
    while (n > 0 && is_space(hex[n - 1]))
        n--;
    CN_ENSURE(n == HEX_LEN, CN_EINVAL);
    memcpy(digits, hex, HEX_LEN);
    digits[HEX_LEN] = '\0';
    int rc = mk_alloc(mk);
    if (rc == CN_OK)
        rc = cn_hex_decode(mk->key, CN_ATREST_KEY_LEN, digits);
    sodium_memzero(digits, sizeof(digits));
    if (rc != CN_OK) {
        cn_master_key_dispose(mk);
        return rc == CN_ENOMEM ? rc : CN_EINVAL;
    }
    return CN_OK;
}

static int io_error(const char *what, const char *path)
{
    cn_log_error("master_key_error", "op=%s path=\"%s\" reason=\"%s\"", what, path,
                 strerror(errno));
    return CN_EIO;
}

/* O_EXCL: two processes racing to create the key cannot both win. */
static int create_file(const char *path, cn_master_key_t *mk)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? CN_EEXIST : io_error("create", path);
    randombytes_buf(mk->key, CN_ATREST_KEY_LEN);
    ssize_t w = write(fd, mk->key, CN_ATREST_KEY_LEN);
    int rc = CN_OK;
    if (w != CN_ATREST_KEY_LEN || fsync(fd) != 0)
        rc = io_error("write", path);
    close(fd);
    if (rc != CN_OK)
        unlink(path);
    return rc;
}

static int read_file(const char *path, cn_master_key_t *mk)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CN_ENOTFOUND : io_error("open", path);
    int rc = CN_OK;
    if (fstat(fd, &st) != 0) {
        rc = io_error("stat", path);
    } else if (st.st_size != CN_ATREST_KEY_LEN) {
        cn_log_error("master_key_error", "op=read path=\"%s\" reason=\"not %d bytes\"", path,
                     CN_ATREST_KEY_LEN);
        rc = CN_EINVAL;
    } else if (read(fd, mk->key, CN_ATREST_KEY_LEN) != CN_ATREST_KEY_LEN) {
        rc = io_error("read", path);
    } else if ((st.st_mode & 077) != 0) {
        cn_log_warn("master_key_mode", "path=\"%s\" mode=%03o hint=\"chmod 600\"", path,
                    (unsigned)(st.st_mode & 0777));
    }
    close(fd);
    return rc;
}

int cn_master_key_load(const char *path, bool create, cn_master_key_t *mk, bool *created)
{
    CN_ENSURE(path != NULL && path[0] != '\0' && mk != NULL, CN_EINVAL);
    mk->key = NULL;
    if (created != NULL)
        *created = false;
    CN_TRY(mk_alloc(mk));
    int rc = read_file(path, mk);
    if (rc == CN_ENOTFOUND && create) {
        rc = create_file(path, mk);
        if (rc == CN_OK && created != NULL)
            *created = true;
        else if (rc == CN_EEXIST)
            rc = read_file(path, mk); /* another process made it first */
    }
    if (rc != CN_OK)
        cn_master_key_dispose(mk);
    return rc;
}
