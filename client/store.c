/*
 * Small stores of the home directory: the recipients' device-list cache
 * and the private prekeys. Every file is versioned and replaced atomically.
 *
 * HOME/devices/<handle>: "CNDV" ‖ version u8 = 1 ‖ n u8 ‖ n × device id (32)
 * HOME/prekeys: sealed under the home key (label "prekeys", client/keystore.c)
 *   around "CNPK" ‖ version u8 = 1 ‖ 3 reserved ‖ next_key_id u32
 *   ‖ signed_id u32 ‖ signed sk (32) ‖ signed pk (32) ‖ n u32
 *   ‖ n × (key_id u32 ‖ sk (32) ‖ pk (32))          (mode 0600)
 *   A plaintext image (homes from before sealing) is still read.
 */
#include "client/client_int.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV_MAGIC  "CNDV"
#define PK_MAGIC   "CNPK"
#define PK_HDR     16 /* magic, version, reserved, next_key_id, signed_id */
#define PK_SIGNED  (2 * CN_X25519_LEN)
#define PK_ENTRY   (4 + 2 * CN_X25519_LEN)
#define PK_FIXED   (PK_HDR + PK_SIGNED + 4)
#define PK_FILEMAX (PK_FIXED + CN__PREKEYS_HELD_MAX * PK_ENTRY)

static int devices_path(char *out, const char *home, const char *handle)
{
    char norm[CN_HANDLE_MAX + 1];
    /* The handle is validated, so it is a safe file name. */
    CN_TRY(cn_handle_normalize(handle, norm));
    int n = snprintf(out, CN__PATH_MAX, "%s/devices/%s", home, norm);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    return CN_OK;
}

int cn__devices_load(const char *home, const char *handle, cn__devices_t *out)
{
    char path[CN__PATH_MAX];
    memset(out, 0, sizeof(*out));
    CN_TRY(devices_path(path, home, handle));
    cn_buf_t img;
    cn_buf_init(&img);
    int rc = cn__file_read(path, 6 + CN_DEVICES_HARD_MAX * CN_DEVICE_ID_LEN, &img);
    if (rc == CN_OK) {
        size_t n = img.len >= 6 ? img.data[5] : 0;
        bool ok = img.len >= 6 && memcmp(img.data, DEV_MAGIC, 4) == 0 && img.data[4] == 1 &&
                  n <= CN_DEVICES_HARD_MAX && img.len == 6 + n * CN_DEVICE_ID_LEN;
        if (ok) {
            out->n = (uint32_t)n;
            memcpy(out->ids, img.data + 6, n * CN_DEVICE_ID_LEN);
        }
        /* A damaged cache is only a cache: the node corrects it. */
    }
    cn_buf_dispose(&img);
    return rc == CN_OK || rc == CN_ENOTFOUND || rc == CN_ETOOBIG ? CN_OK : rc;
}

int cn__devices_save(const char *home, const char *handle, const cn__devices_t *d)
{
    char path[CN__PATH_MAX];
    CN_ENSURE(d->n <= CN_DEVICES_HARD_MAX, CN_EINVAL);
    CN_TRY(devices_path(path, home, handle));
    uint8_t img[6 + CN_DEVICES_HARD_MAX * CN_DEVICE_ID_LEN];
    memcpy(img, DEV_MAGIC, 4);
    img[4] = 1;
    img[5] = (uint8_t)d->n;
    memcpy(img + 6, d->ids, d->n * CN_DEVICE_ID_LEN);
    return cn__file_write_atomic(path, img, 6 + d->n * CN_DEVICE_ID_LEN, 0600);
}

static int devices_find(const cn__devices_t *d, const uint8_t *id)
{
    for (uint32_t i = 0; i < d->n; i++) {
        if (memcmp(d->ids[i], id, CN_DEVICE_ID_LEN) == 0)
            return (int)i;
    }
    return -1;
}

int cn__devices_apply(cn__devices_t *d, const ProtobufCBinaryData *missing, size_t nmissing,
                      const ProtobufCBinaryData *stale, size_t nstale)
{
    for (size_t i = 0; i < nstale; i++) {
        CN_ENSURE(stale[i].len == CN_DEVICE_ID_LEN, CN_EPROTO);
        int at = devices_find(d, stale[i].data);
        if (at < 0)
            continue;
        memmove(d->ids[at], d->ids[at + 1], (d->n - (uint32_t)at - 1) * CN_DEVICE_ID_LEN);
        d->n--;
    }
    for (size_t i = 0; i < nmissing; i++) {
        CN_ENSURE(missing[i].len == CN_DEVICE_ID_LEN, CN_EPROTO);
        if (devices_find(d, missing[i].data) >= 0)
            continue;
        CN_ENSURE(d->n < CN_DEVICES_HARD_MAX, CN_EPROTO);
        memcpy(d->ids[d->n++], missing[i].data, CN_DEVICE_ID_LEN);
    }
    return CN_OK;
}

/* ---------------------------------------------------------------- prekeys */

void cn__prekeys_dispose(cn__prekeys_t *pk)
{
    if (pk == NULL)
        return;
    cn_x25519_dispose(&pk->signed_kp);
    for (uint32_t i = 0; i < pk->n; i++)
        cn_x25519_dispose(&pk->otpk[i]);
    free(pk->otpk);
    free(pk->ids);
    memset(pk, 0, sizeof(*pk));
}

/* Makes room for count more one-time prekeys, dropping the oldest held. */
static int prekeys_reserve(cn__prekeys_t *pk, uint32_t count)
{
    CN_ENSURE(count <= CN__PREKEYS_HELD_MAX, CN_EINVAL);
    while (pk->n + count > CN__PREKEYS_HELD_MAX) {
        cn_x25519_dispose(&pk->otpk[0]);
        memmove(pk->otpk, pk->otpk + 1, (pk->n - 1) * sizeof(*pk->otpk));
        memmove(pk->ids, pk->ids + 1, (pk->n - 1) * sizeof(*pk->ids));
        pk->n--;
    }
    cn_x25519_t *o = realloc(pk->otpk, (pk->n + count + 1) * sizeof(*o));
    CN_ENSURE(o != NULL, CN_ENOMEM);
    pk->otpk = o;
    uint32_t *ids = realloc(pk->ids, (pk->n + count + 1) * sizeof(*ids));
    CN_ENSURE(ids != NULL, CN_ENOMEM);
    pk->ids = ids;
    return CN_OK;
}

int cn__prekeys_generate(cn__prekeys_t *pk, bool new_signed, uint32_t count)
{
    if (pk->next_key_id == 0)
        pk->next_key_id = 1;
    if (new_signed || pk->signed_kp.sk == NULL) {
        cn_x25519_dispose(&pk->signed_kp);
        CN_TRY(cn_x25519_generate(&pk->signed_kp));
        pk->signed_id = pk->next_key_id++;
    }
    CN_TRY(prekeys_reserve(pk, count));
    for (uint32_t i = 0; i < count; i++) {
        CN_TRY(cn_x25519_generate(&pk->otpk[pk->n]));
        pk->ids[pk->n++] = pk->next_key_id++;
    }
    return CN_OK;
}

/* Fills kp from a stored sk ‖ pk, checking that they belong together. */
static int x25519_from(cn_x25519_t *kp, const uint8_t *p)
{
    memset(kp, 0, sizeof(*kp));
    kp->sk = sodium_malloc(CN_X25519_LEN);
    CN_ENSURE(kp->sk != NULL, CN_ENOMEM);
    memcpy(kp->sk, p, CN_X25519_LEN);
    memcpy(kp->pk, p + CN_X25519_LEN, CN_X25519_LEN);
    uint8_t check[CN_X25519_LEN];
    if (crypto_scalarmult_base(check, kp->sk) != 0 || memcmp(check, kp->pk, CN_X25519_LEN) != 0) {
        cn_x25519_dispose(kp);
        return CN_EINVAL;
    }
    return CN_OK;
}

static int prekeys_parse(const cn_buf_t *img, cn__prekeys_t *pk)
{
    const uint8_t *p = img->data;
    CN_ENSURE(img->len >= PK_FIXED, CN_EINVAL);
    CN_ENSURE(memcmp(p, PK_MAGIC, 4) == 0, CN_EINVAL);
    CN_ENSURE(p[4] == 1, CN_EVERSION);
    pk->next_key_id = cn_load_u32be(p + 8);
    pk->signed_id = cn_load_u32be(p + 12);
    CN_TRY(x25519_from(&pk->signed_kp, p + PK_HDR));
    uint32_t n = cn_load_u32be(p + PK_HDR + PK_SIGNED);
    CN_ENSURE(n <= CN__PREKEYS_HELD_MAX, CN_EINVAL);
    CN_ENSURE(img->len == PK_FIXED + (size_t)n * PK_ENTRY, CN_EINVAL);
    CN_TRY(prekeys_reserve(pk, n));
    const uint8_t *e = p + PK_FIXED;
    for (uint32_t i = 0; i < n; i++, e += PK_ENTRY) {
        CN_TRY(x25519_from(&pk->otpk[pk->n], e + 4));
        pk->ids[pk->n++] = cn_load_u32be(e);
    }
    return CN_OK;
}

int cn__prekeys_load(const char *path, const uint8_t *home_key, cn__prekeys_t *pk)
{
    memset(pk, 0, sizeof(*pk));
    cn_buf_t img;
    cn_buf_init(&img);
    int rc = cn__file_read(path, PK_FILEMAX + 64, &img);
    if (rc == CN_OK && !(img.len >= 4 && memcmp(img.data, PK_MAGIC, 4) == 0)) {
        cn_buf_t sealed = img;
        cn_buf_init(&img);
        rc = cn_open_blob(home_key, "prekeys", sealed.data, sealed.len, &img);
        cn_buf_dispose(&sealed);
    }
    if (rc == CN_OK)
        rc = prekeys_parse(&img, pk);
    if (img.data != NULL)
        sodium_memzero(img.data, img.cap);
    cn_buf_dispose(&img);
    if (rc < 0)
        cn__prekeys_dispose(pk);
    return rc;
}

bool cn__prekeys_remove(cn__prekeys_t *pk, uint32_t key_id)
{
    for (uint32_t i = 0; i < pk->n; i++) {
        if (pk->ids[i] != key_id)
            continue;
        cn_x25519_dispose(&pk->otpk[i]);
        memmove(pk->otpk + i, pk->otpk + i + 1, (pk->n - i - 1) * sizeof(*pk->otpk));
        memmove(pk->ids + i, pk->ids + i + 1, (pk->n - i - 1) * sizeof(*pk->ids));
        pk->n--;
        return true;
    }
    return false;
}

int cn__prekeys_save(const char *path, const uint8_t *home_key, const cn__prekeys_t *pk)
{
    CN_ENSURE(pk->signed_kp.sk != NULL && pk->n <= CN__PREKEYS_HELD_MAX, CN_EINVAL);
    size_t len = PK_FIXED + (size_t)pk->n * PK_ENTRY;
    uint8_t *img = sodium_malloc(len);
    CN_ENSURE(img != NULL, CN_ENOMEM);
    memset(img, 0, PK_HDR);
    memcpy(img, PK_MAGIC, 4);
    img[4] = 1;
    cn_store_u32be(img + 8, pk->next_key_id);
    cn_store_u32be(img + 12, pk->signed_id);
    memcpy(img + PK_HDR, pk->signed_kp.sk, CN_X25519_LEN);
    memcpy(img + PK_HDR + CN_X25519_LEN, pk->signed_kp.pk, CN_X25519_LEN);
    cn_store_u32be(img + PK_HDR + PK_SIGNED, pk->n);
    uint8_t *e = img + PK_FIXED;
    for (uint32_t i = 0; i < pk->n; i++, e += PK_ENTRY) {
        cn_store_u32be(e, pk->ids[i]);
        memcpy(e + 4, pk->otpk[i].sk, CN_X25519_LEN);
        memcpy(e + 4 + CN_X25519_LEN, pk->otpk[i].pk, CN_X25519_LEN);
    }
    int rc = cn__sealed_write(home_key, path, "prekeys", img, len);
    sodium_free(img);
    return rc;
}
