/*
 * A session record: every ratchet state shared with one peer device,
 * active first. Encoding, version 1:
 *   "CNSR" ‖ version u8 = 1 ‖ count u8 (0..CN_SESSION_STATES_MAX)
 *   ‖ reserved u16 = 0 ‖ count × (len u32 ‖ ratchet state, ratchet_codec.c)
 */
#include "crypto/ratchet_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define REC_MAGIC "CNSR"
#define REC_VER   1

struct cn_session {
    uint32_t n;
    cn_ratchet_t *st[CN_SESSION_STATES_MAX];
};

int cn_session_new(cn_session_t **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? CN_OK : CN_ENOMEM;
}

void cn_session_free(cn_session_t *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n; i++)
        cn_ratchet_free(s->st[i]);
    free(s);
}

bool cn_session_has_active(const cn_session_t *s)
{
    return s != NULL && s->n > 0;
}

int cn_session_add(cn_session_t *s, cn_ratchet_t *r)
{
    CN_ENSURE(s != NULL && r != NULL, CN_EINVAL);
    if (s->n == CN_SESSION_STATES_MAX)
        cn_ratchet_free(s->st[--s->n]);
    memmove(s->st + 1, s->st, s->n * sizeof(s->st[0]));
    s->st[0] = r;
    s->n++;
    return CN_OK;
}

static void promote(cn_session_t *s, uint32_t i)
{
    cn_ratchet_t *r = s->st[i];
    memmove(s->st + 1, s->st, i * sizeof(s->st[0]));
    s->st[0] = r;
}

int cn_session_encrypt(cn_session_t *s, const void *pt, size_t n, cn_buf_t *out)
{
    CN_ENSURE(s != NULL, CN_EINVAL);
    CN_ENSURE(s->n > 0, CN_ENOTFOUND);
    return cn_ratchet_encrypt(s->st[0], pt, n, out);
}

/* Which failure to report when every state failed: the most telling one. */
static int worse(int a, int b)
{
    static const int order[] = {CN_EEXIST, CN_ELIMIT, CN_EAUTH};
    for (size_t i = 0; i < CN_ARRAY_LEN(order); i++)
        if (a == order[i] || b == order[i])
            return order[i];
    return a < 0 ? a : b;
}

int cn_session_decrypt(cn_session_t *s, const cn_e2e_msg_t *m, cn_buf_t *pt)
{
    CN_ENSURE(s != NULL && m != NULL, CN_EINVAL);
    if (m->type == CN_E2E_PREKEY_MSG) {
        for (uint32_t i = 0; i < s->n; i++) {
            const cn_ratchet_t *r = s->st[i];
            if ((r->flags & CN__R_INITIATOR) || sodium_memcmp(r->base_key, m->ek, CN__KEY) != 0)
                continue;
            CN_TRY(cn_ratchet_decrypt(s->st[i], m, pt));
            promote(s, i);
            return CN_OK;
        }
        return CN_ENOTFOUND; /* a new X3DH: the caller responds */
    }
    int err = CN_ENOTFOUND;
    for (uint32_t i = 0; i < s->n; i++) {
        int rc = cn_ratchet_decrypt(s->st[i], m, pt);
        if (rc == CN_OK) {
            promote(s, i);
            return CN_OK;
        }
        err = err == CN_ENOTFOUND ? rc : worse(err, rc);
    }
    return err;
}

int cn_session_encode(const cn_session_t *s, cn_buf_t *out)
{
    CN_ENSURE(s != NULL && out != NULL, CN_EINVAL);
    CN_TRY(cn_buf_append(out, REC_MAGIC, 4));
    CN_TRY(cn_buf_put_u8(out, REC_VER));
    CN_TRY(cn_buf_put_u8(out, (uint8_t)s->n));
    CN_TRY(cn_buf_put_u16be(out, 0));
    cn_buf_t one;
    cn_buf_init(&one);
    int rc = CN_OK;
    for (uint32_t i = 0; i < s->n && rc == CN_OK; i++) {
        cn_buf_reset(&one);
        rc = cn_ratchet_encode(s->st[i], &one);
        if (rc == CN_OK)
            rc = cn_buf_put_u32be(out, (uint32_t)one.len);
        if (rc == CN_OK)
            rc = cn_buf_append(out, one.data, one.len);
    }
    cn_buf_wipe(&one);
    return rc;
}

int cn_session_decode(const uint8_t *p, size_t n, cn_session_t **out)
{
    int rc = CN_OK;
    cn_cursor_t c;
    uint8_t magic[4], ver, count;
    uint16_t reserved;
    CN_ENSURE(p != NULL && out != NULL, CN_EINVAL);
    *out = NULL;
    cn_cursor_init(&c, p, n);
    CN_ENSURE(cn_cursor_copy(&c, magic, 4) == CN_OK && memcmp(magic, REC_MAGIC, 4) == 0, CN_EINVAL);
    CN_ENSURE(cn_cursor_u8(&c, &ver) == CN_OK, CN_EINVAL);
    CN_ENSURE(ver == REC_VER, CN_EVERSION);
    CN_ENSURE(cn_cursor_u8(&c, &count) == CN_OK && count <= CN_SESSION_STATES_MAX, CN_EINVAL);
    CN_ENSURE(cn_cursor_u16be(&c, &reserved) == CN_OK && reserved == 0, CN_EINVAL);
    cn_session_t *s = NULL;
    CN_TRY(cn_session_new(&s));
    for (uint8_t i = 0; i < count; i++) {
        uint32_t len;
        cn_slice_t v;
        CN_ENSURE_OUT(cn_cursor_u32be(&c, &len) == CN_OK, CN_EINVAL);
        CN_ENSURE_OUT(cn_cursor_view(&c, len, &v) == CN_OK, CN_EINVAL);
        CN_TRY_OUT(cn_ratchet_decode(v.base, v.len, &s->st[s->n]));
        s->n++;
    }
    CN_ENSURE_OUT(cn_cursor_left(&c) == 0, CN_EINVAL);
out:
    if (rc < 0)
        cn_session_free(s);
    else
        *out = s;
    return rc;
}
