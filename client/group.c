/*
 * Groups (docs/E2E.md, "Groups"): the node keeps membership and fans a
 * group send out; the client keeps the rest, sealed in its home:
 *
 * HOME/groups/<gid hex> (label "group:<gid hex>"): "CNGR" ‖ version u8 = 2
 *   ‖ group version u64 ‖ name (len u8 ‖ UTF-8) ‖ nmembers u16 ‖ members
 *   (len u8 ‖ handle each) ‖ ndist u16 ‖ handles this device's current
 *   sender key was sent to ‖ own u8 ‖ [len u32 ‖ own sender key state]
 *   ‖ base u8 ‖ [len u32 ‖ base state] ‖ nowndev u16 ‖ nowndev × device id
 *   (version 1 ends after the own key). The base is a copy of the own key
 *   at the oldest iteration this device still answers sender key requests
 *   for (docs/E2E.md): at most CN_CLIENT_SKREQ_WINDOW behind, never before
 *   the last member was added. The own devices are this user's other
 *   devices the current key went to, so that a device linked later gets
 *   it on the next send.
 * HOME/groups/<gid hex>-<device hex> (label "senderkey:<gid>:<device>"):
 *   the receiving sender key of one member device.
 *
 * Before a group message this device asks the node for the membership
 * (GroupGet). When someone left, it makes a new sender key (so a removed
 * member cannot read what follows) and sends it to everyone again; members
 * who do not have the current key get it as a pairwise message of kind
 * SENDER_KEY tagged with the group id, carrying the group's name too. The
 * group message itself waits in the outbox until those are stored.
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MAGIC    "CNGR"
#define GROUP_FILE_MAX (256u * 1024u)

typedef struct grp {
    uint64_t version;
    char name[CN_CLIENT_NAME_MAX + 1];
    uint32_t n, ndist;
    char (*members)[CN_HANDLE_MAX + 1]; /* CN_GROUP_MEMBERS_HARD_MAX + 1 */
    char (*dist)[CN_HANDLE_MAX + 1];
    cn_senderkey_t *own;  /* NULL until this device sends to the group */
    cn_senderkey_t *base; /* own key at the oldest answerable iteration, or NULL */
    cn__devices_t owndev; /* this user's devices the current key went to */
} grp_t;

static int grp_init(grp_t *g)
{
    memset(g, 0, sizeof(*g));
    g->members = calloc(CN_GROUP_MEMBERS_HARD_MAX + 1, sizeof(*g->members));
    g->dist = calloc(CN_GROUP_MEMBERS_HARD_MAX + 1, sizeof(*g->dist));
    CN_ENSURE(g->members != NULL && g->dist != NULL, CN_ENOMEM);
    return CN_OK;
}

static void grp_dispose(grp_t *g)
{
    free(g->members);
    free(g->dist);
    cn_senderkey_free(g->own);
    cn_senderkey_free(g->base);
    memset(g, 0, sizeof(*g));
}

static int grp_path(const cn_client_t *c, const uint8_t *gid, const uint8_t *dev, char *path,
                    char *label)
{
    char g[2 * CN_GROUP_ID_LEN + 1], d[2 * CN_DEVICE_ID_LEN + 1] = "";
    cn_hex_encode(g, gid, CN_GROUP_ID_LEN);
    if (dev != NULL)
        cn_hex_encode(d, dev, CN_DEVICE_ID_LEN);
    int n = snprintf(path, CN__PATH_MAX, "%s/groups/%s%s%s", c->home, g, dev ? "-" : "", d);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    snprintf(label, 128, "%s:%s%s%s", dev ? "senderkey" : "group", g, dev ? ":" : "", d);
    return CN_OK;
}

static int put_str(cn_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    CN_ENSURE(n <= 255, CN_ETOOBIG);
    CN_TRY(cn_buf_put_u8(b, (uint8_t)n));
    return cn_buf_append(b, s, n);
}

static int get_str(cn_cursor_t *cur, char *out, size_t cap)
{
    uint8_t n;
    CN_TRY(cn_cursor_u8(cur, &n));
    CN_ENSURE(n < cap, CN_EINVAL);
    CN_TRY(cn_cursor_copy(cur, out, n));
    out[n] = '\0';
    return CN_OK;
}

static int get_handles(cn_cursor_t *cur, char (*v)[CN_HANDLE_MAX + 1], uint32_t *n)
{
    uint16_t cnt;
    CN_TRY(cn_cursor_u16be(cur, &cnt));
    CN_ENSURE(cnt <= CN_GROUP_MEMBERS_HARD_MAX + 1, CN_EINVAL);
    for (uint16_t i = 0; i < cnt; i++)
        CN_TRY(get_str(cur, v[i], CN_HANDLE_MAX + 1));
    *n = cnt;
    return CN_OK;
}

static int get_key(cn_cursor_t *cur, cn_senderkey_t **k)
{
    uint8_t present;
    CN_TRY(cn_cursor_u8(cur, &present));
    CN_ENSURE(present <= 1, CN_EINVAL);
    if (present) {
        uint32_t len;
        cn_slice_t v;
        CN_TRY(cn_cursor_u32be(cur, &len));
        CN_TRY(cn_cursor_view(cur, len, &v));
        CN_TRY(cn_senderkey_decode(v.base, v.len, k));
    }
    return CN_OK;
}

static int grp_decode(const uint8_t *p, size_t n, grp_t *g)
{
    cn_cursor_t cur;
    uint8_t magic[4], ver;
    cn_cursor_init(&cur, p, n);
    CN_TRY(cn_cursor_copy(&cur, magic, 4));
    CN_ENSURE(memcmp(magic, GROUP_MAGIC, 4) == 0, CN_EINVAL);
    CN_TRY(cn_cursor_u8(&cur, &ver));
    CN_ENSURE(ver == 1 || ver == 2, CN_EVERSION);
    CN_TRY(cn_cursor_u64be(&cur, &g->version));
    CN_TRY(get_str(&cur, g->name, sizeof(g->name)));
    CN_TRY(get_handles(&cur, g->members, &g->n));
    CN_TRY(get_handles(&cur, g->dist, &g->ndist));
    CN_TRY(get_key(&cur, &g->own));
    if (ver == 2) {
        uint16_t nd;
        CN_TRY(get_key(&cur, &g->base));
        CN_TRY(cn_cursor_u16be(&cur, &nd));
        CN_ENSURE(nd <= CN_DEVICES_HARD_MAX, CN_EINVAL);
        for (uint16_t i = 0; i < nd; i++)
            CN_TRY(cn_cursor_copy(&cur, g->owndev.ids[i], CN_DEVICE_ID_LEN));
        g->owndev.n = nd;
    }
    CN_ENSURE(cn_cursor_left(&cur) == 0, CN_EINVAL);
    return CN_OK;
}

/* Loads the group's state; an unknown group is an empty state. */
static int grp_load(cn_client_t *c, const uint8_t *gid, grp_t *g)
{
    char path[CN__PATH_MAX], label[128];
    CN_TRY(grp_init(g));
    CN_TRY(grp_path(c, gid, NULL, path, label));
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn__sealed_read(c->home_key, path, label, GROUP_FILE_MAX, &b);
    if (rc == CN_OK)
        rc = grp_decode(b.data, b.len, g);
    cn_buf_wipe(&b);
    return rc == CN_ENOTFOUND ? CN_OK : rc;
}

static int put_key(cn_buf_t *b, const cn_senderkey_t *key)
{
    CN_TRY(cn_buf_put_u8(b, key != NULL));
    if (key == NULL)
        return CN_OK;
    cn_buf_t k;
    cn_buf_init(&k);
    int rc = cn_senderkey_encode(key, &k);
    if (rc == CN_OK)
        rc = cn_buf_put_u32be(b, (uint32_t)k.len);
    if (rc == CN_OK)
        rc = cn_buf_append(b, k.data, k.len);
    cn_buf_wipe(&k);
    return rc;
}

static int grp_save(cn_client_t *c, const uint8_t *gid, const grp_t *g)
{
    char path[CN__PATH_MAX], label[128];
    CN_TRY(grp_path(c, gid, NULL, path, label));
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_buf_append(&b, GROUP_MAGIC, 4);
    if (rc == CN_OK)
        rc = cn_buf_put_u8(&b, 2);
    if (rc == CN_OK)
        rc = cn_buf_put_u64be(&b, g->version);
    if (rc == CN_OK)
        rc = put_str(&b, g->name);
    if (rc == CN_OK)
        rc = cn_buf_put_u16be(&b, (uint16_t)g->n);
    for (uint32_t i = 0; rc == CN_OK && i < g->n; i++)
        rc = put_str(&b, g->members[i]);
    if (rc == CN_OK)
        rc = cn_buf_put_u16be(&b, (uint16_t)g->ndist);
    for (uint32_t i = 0; rc == CN_OK && i < g->ndist; i++)
        rc = put_str(&b, g->dist[i]);
    if (rc == CN_OK)
        rc = put_key(&b, g->own);
    if (rc == CN_OK)
        rc = put_key(&b, g->base);
    if (rc == CN_OK)
        rc = cn_buf_put_u16be(&b, (uint16_t)g->owndev.n);
    for (uint32_t i = 0; rc == CN_OK && i < g->owndev.n; i++)
        rc = cn_buf_append(&b, g->owndev.ids[i], CN_DEVICE_ID_LEN);
    if (rc == CN_OK)
        rc = cn__sealed_write(c->home_key, path, label, b.data, b.len);
    cn_buf_wipe(&b);
    return rc;
}

static bool has_handle(char (*v)[CN_HANDLE_MAX + 1], uint32_t n, const char *h)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(v[i], h) == 0)
            return true;
    return false;
}

void cn__group_name(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], char *out, size_t cap)
{
    grp_t g;
    out[0] = '\0';
    if (grp_load(c, gid, &g) == CN_OK)
        snprintf(out, cap, "%s", g.name);
    grp_dispose(&g);
}

void cn_client_group_name(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], char *out, size_t cap)
{
    cn__group_name(c, gid, out, cap);
}

/* ------------------------------------------------------------ receiving */

/* True when a pending message of (gid, dev) under key_id is behind
 * iteration `have` but not behind `from`: only the new key reaches it. */
static bool pending_needs(cn_client_t *c, const uint8_t *gid, const uint8_t *dev, uint32_t key_id,
                          uint32_t from, uint32_t have)
{
    cn__pending_t *p;
    if (cn__skreq_pending(c, &p) != CN_OK)
        return false;
    for (size_t i = 0; i < p->n; i++) {
        const cn__pending_msg_t *m = &p->v[i];
        if (memcmp(m->gid, gid, CN_GROUP_ID_LEN) == 0 &&
            memcmp(m->dev, dev, CN_DEVICE_ID_LEN) == 0 && m->key_id == key_id &&
            m->iteration >= from && m->iteration < have)
            return true;
    }
    return false;
}

/*
 * Whether a received key replaces the one held for the device. The same
 * key again (an answer to another device's request reaches every device
 * of its user) must not move a chain back: that would make used message
 * keys usable again. Only a pending message that the held chain is past
 * and the new one reaches justifies it.
 */
static bool keep_held(cn_client_t *c, const char *path, const char *label, const uint8_t *gid,
                      const uint8_t *dev, const cn_senderkey_t *k)
{
    cn_buf_t b;
    cn_buf_init(&b);
    cn_senderkey_t *held = NULL;
    bool keep = false;
    if (cn__sealed_read(c->home_key, path, label, 1u << 20, &b) == CN_OK &&
        cn_senderkey_decode(b.data, b.len, &held) == CN_OK) {
        uint32_t hid, hit, nid, nit;
        cn_senderkey_info(held, &hid, &hit);
        cn_senderkey_info(k, &nid, &nit);
        keep = hid == nid && (nit >= hit || !pending_needs(c, gid, dev, nid, nit, hit));
    }
    cn_buf_wipe(&b);
    cn_senderkey_free(held);
    return keep;
}

int cn__group_on_skdist(cn_client_t *c, const char *from, const uint8_t dev[CN_DEVICE_ID_LEN],
                        const cn_content_t *ct)
{
    char path[CN__PATH_MAX], label[128];
    (void)from;
    cn_senderkey_t *k = NULL;
    CN_TRY(cn_senderkey_from_distribution(ct->skdist, ct->skdist_len, &k));
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = grp_path(c, ct->group_id, dev, path, label);
    bool keep = rc == CN_OK && keep_held(c, path, label, ct->group_id, dev, k);
    if (keep)
        cn_log_debug("client.sender_key_kept", "reason=%s", "same key already held");
    if (rc == CN_OK && !keep)
        rc = cn_senderkey_encode(k, &b);
    if (rc == CN_OK && !keep)
        rc = cn__sealed_write(c->home_key, path, label, b.data, b.len);
    cn_buf_wipe(&b);
    cn_senderkey_free(k);
    CN_TRY(rc);
    if (ct->group_name == NULL || ct->group_name_len == 0)
        return CN_OK;
    /* The name travels with the sender keys; the first one named wins. */
    grp_t g;
    rc = grp_load(c, ct->group_id, &g);
    if (rc == CN_OK && g.name[0] == '\0') {
        memcpy(g.name, ct->group_name, ct->group_name_len);
        g.name[ct->group_name_len] = '\0';
        rc = grp_save(c, ct->group_id, &g);
    }
    grp_dispose(&g);
    return rc;
}

int cn__group_open(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN],
                   const uint8_t dev[CN_DEVICE_ID_LEN], const uint8_t *ct, size_t n, cn_buf_t *pt,
                   const char **why)
{
    char path[CN__PATH_MAX], label[128];
    CN_TRY(grp_path(c, gid, dev, path, label));
    cn_buf_t b;
    cn_buf_init(&b);
    cn_senderkey_t *k = NULL;
    int rc = cn__sealed_read(c->home_key, path, label, 1u << 20, &b);
    if (rc == CN_OK)
        rc = cn_senderkey_decode(b.data, b.len, &k);
    if (rc == CN_ENOTFOUND)
        *why = "decryption failed: no sender key from this device";
    if (rc == CN_OK) {
        rc = cn_senderkey_decrypt(k, ct, n, pt);
        if (rc < 0)
            *why = rc == CN_EEXIST ? "replay: group message key already used"
                                   : "decryption failed: group message not authentic";
    }
    cn_buf_reset(&b);
    if (rc == CN_OK)
        rc = cn_senderkey_encode(k, &b);
    if (rc == CN_OK)
        rc = cn__sealed_write(c->home_key, path, label, b.data, b.len);
    cn_buf_wipe(&b);
    cn_senderkey_free(k);
    if (rc < 0 && *why == NULL)
        *why = "decryption failed: sender key state";
    return rc;
}

/* -------------------------------------------------------------- sending */

int cn__group_seal(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], const uint8_t *pt, size_t n,
                   cn_buf_t *out)
{
    grp_t g;
    int rc = grp_load(c, gid, &g);
    if (rc == CN_OK && g.own == NULL)
        rc = CN_ENOTFOUND;
    if (rc == CN_OK)
        rc = cn_senderkey_encrypt(g.own, pt, n, out);
    /* Requests are answered for the last CN_CLIENT_SKREQ_WINDOW messages
     * only: the base follows the chain at that distance. */
    uint32_t id, it, bid, bit;
    if (rc == CN_OK && g.base != NULL) {
        cn_senderkey_info(g.own, &id, &it);
        cn_senderkey_info(g.base, &bid, &bit);
        if (it - bit > CN_CLIENT_SKREQ_WINDOW)
            rc = cn_senderkey_advance(g.base, it - CN_CLIENT_SKREQ_WINDOW);
    }
    /* The advanced chain is durable before the ciphertext leaves. */
    if (rc == CN_OK)
        rc = grp_save(c, gid, &g);
    grp_dispose(&g);
    return rc;
}

int cn__group_get(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], uint64_t deadline,
                  Chat__ServerFrame **r)
{
    Chat__GroupGet gg;
    chat__group_get__init(&gg);
    gg.group_id = cn__bin(gid, CN_GROUP_ID_LEN);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GROUP_GET;
    f.group_get = &gg;
    CN_TRY(cn__client_rpc(c, &f, deadline, r));
    int rc = cn__client_check(c, *r, CHAT__RESPONSE__RESULT_GROUP);
    if (rc < 0) {
        chat__server_frame__free_unpacked(*r, NULL);
        *r = NULL;
    }
    return rc;
}

/* Queues a distribution message for one member (all its devices, and
 * our own other devices through the sync copy). */
static int queue_dist(cn_client_t *c, const uint8_t *gid, const grp_t *g, const char *to,
                      const cn_buf_t *dist)
{
    cn_buf_t body;
    cn_buf_init(&body);
    cn_content_t ct = {.version = CN_CLIENT_CONTENT_VER, .type = CN_CONTENT_SENDER_KEY};
    ct.sent_at = cn_now_ms();
    ct.group_id = gid;
    ct.skdist = dist->data;
    ct.skdist_len = dist->len;
    if (g->name[0] != '\0') {
        ct.group_name = g->name;
        ct.group_name_len = strlen(g->name);
    }
    int rc = cn_content_encode(&body, &ct);
    if (rc == CN_OK)
        rc = cn__client_queue(c, to, CHAT__KIND__SENDER_KEY, &body, NULL);
    cn_buf_wipe(&body);
    return rc;
}

/* Queues this device's current sender key for one member. */
static int queue_skdist(cn_client_t *c, const uint8_t *gid, const grp_t *g, const char *to)
{
    cn_buf_t dist;
    cn_buf_init(&dist);
    int rc = cn_senderkey_distribution(g->own, &dist);
    if (rc == CN_OK)
        rc = queue_dist(c, gid, g, to, &dist);
    cn_buf_wipe(&dist);
    return rc;
}

int cn__group_queue_distribution(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], const char *to,
                                 const cn_buf_t *dist)
{
    grp_t g;
    int rc = grp_load(c, gid, &g);
    if (rc == CN_OK)
        rc = queue_dist(c, gid, &g, to, dist);
    grp_dispose(&g);
    return rc;
}

int cn__group_distribution_for(cn_client_t *c, const uint8_t gid[CN_GROUP_ID_LEN], const char *from,
                               uint32_t key_id, uint32_t iteration, cn_buf_t *dist)
{
    grp_t g;
    cn_senderkey_t *k = NULL;
    int rc = grp_load(c, gid, &g);
    if (rc == CN_OK && g.own == NULL)
        rc = CN_ENOTFOUND;
    uint32_t id = 0, it = 0, bid = 0, bit = 0;
    if (rc == CN_OK) {
        cn_senderkey_info(g.own, &id, &it);
        if (g.base != NULL)
            cn_senderkey_info(g.base, &bid, &bit);
        else
            bit = it; /* a key of a version 1 record: only from now on */
        /* The requested iteration when it is in the window; for another
         * key (an older one, gone) the oldest this device can give. */
        uint32_t want = key_id == id ? CN_MIN(CN_MAX(iteration, bit), it) : bit;
        /* A member this device has not sent its key to joined after its
         * last send (another admin added it): nothing from before. */
        if (!has_handle(g.dist, g.ndist, from))
            want = it;
        rc = cn_senderkey_clone(g.base != NULL && want < it ? g.base : g.own, &k);
        if (rc == CN_OK && want < it)
            rc = cn_senderkey_advance(k, want);
    }
    if (rc == CN_OK)
        rc = cn_senderkey_distribution(k, dist);
    cn_senderkey_free(k);
    grp_dispose(&g);
    return rc;
}

/* The base follows the own key: from now on when a member joins. */
static int reset_base(grp_t *g)
{
    cn_senderkey_free(g->base);
    g->base = NULL;
    return cn_senderkey_clone(g->own, &g->base);
}

/* This user's other devices (the cache that DevicesChanged keeps): true
 * when one of them has not got the current key yet. */
static bool own_devices_new(cn_client_t *c, const grp_t *g, cn__devices_t *mine)
{
    if (cn__devices_load(c->home, c->handle, mine) != CN_OK)
        mine->n = 0;
    for (uint32_t i = 0; i < mine->n; i++) {
        if (memcmp(mine->ids[i], c->id.pk, CN_DEVICE_ID_LEN) == 0)
            continue;
        bool had = false;
        for (uint32_t k = 0; k < g->owndev.n && !had; k++)
            had = memcmp(g->owndev.ids[k], mine->ids[i], CN_DEVICE_ID_LEN) == 0;
        if (!had)
            return true;
    }
    return false;
}

/*
 * Brings the group state up to date with the node's membership and
 * queues the sender key for whoever lacks it (rotating it first when a
 * member left or when there is none).
 */
static int sync_members(cn_client_t *c, const uint8_t *gid, const char *name, uint64_t deadline)
{
    Chat__ServerFrame *r = NULL;
    grp_t g;
    int rc = grp_load(c, gid, &g);
    if (rc == CN_OK)
        rc = cn__group_get(c, gid, deadline, &r);
    if (rc < 0)
        goto out;
    const Chat__GroupInfo *gi = r->response->group;
    bool left = false;
    for (uint32_t i = 0; i < g.n && !left; i++) {
        bool still = false;
        for (size_t k = 0; k < gi->n_members && !still; k++)
            still = strcmp(gi->members[k]->handle, g.members[i]) == 0;
        left = !still;
    }
    g.n = 0;
    for (size_t k = 0; k < gi->n_members && g.n < CN_GROUP_MEMBERS_HARD_MAX + 1; k++)
        snprintf(g.members[g.n++], CN_HANDLE_MAX + 1, "%s", gi->members[k]->handle);
    g.version = gi->version;
    if (name != NULL)
        snprintf(g.name, sizeof(g.name), "%s", name);
    bool fresh = left || g.own == NULL;
    if (fresh) {
        uint32_t key_id = 1;
        cn_random(&key_id, sizeof(key_id));
        cn_senderkey_free(g.own);
        g.own = NULL;
        g.ndist = 0;
        g.owndev.n = 0;
        CN_TRY_OUT(cn_senderkey_generate(key_id, &g.own));
        CN_TRY_OUT(reset_base(&g));
    }
    /* A member who joins gets the key from here on, and no sender key
     * request may reach back before it joined. */
    for (uint32_t i = 0; !fresh && i < g.n; i++)
        if (!has_handle(g.dist, g.ndist, g.members[i])) {
            CN_TRY_OUT(reset_base(&g));
            break;
        }
    CN_TRY_OUT(grp_save(c, gid, &g)); /* the key first, then who got it */
    cn__devices_t mine;
    bool own_new = own_devices_new(c, &g, &mine);
    for (uint32_t i = 0; i < g.n; i++) {
        bool mine_to_redo = own_new && strcmp(g.members[i], c->handle) == 0;
        if (has_handle(g.dist, g.ndist, g.members[i]) && !mine_to_redo)
            continue;
        if (mine_to_redo)
            cn_log_info("client.sender_key_own_devices", "devices=%u", mine.n);
        CN_TRY_OUT(queue_skdist(c, gid, &g, g.members[i]));
        if (!has_handle(g.dist, g.ndist, g.members[i]))
            memcpy(g.dist[g.ndist++], g.members[i], CN_HANDLE_MAX + 1);
    }
    g.owndev = mine;
    rc = grp_save(c, gid, &g);
out:
    if (r != NULL)
        chat__server_frame__free_unpacked(r, NULL);
    grp_dispose(&g);
    return rc;
}

int cn_client_group_create(cn_client_t *c, const char *name, const char *const *handles, size_t n,
                           uint8_t group_id[CN_GROUP_ID_LEN])
{
    CN_ENSURE(name != NULL && strlen(name) <= CN_CLIENT_NAME_MAX, CN_EINVAL);
    CN_ENSURE(cn_utf8_valid((const uint8_t *)name, strlen(name)), CN_EINVAL);
    CN_ENSURE(n < CN_GROUP_MEMBERS_HARD_MAX, CN_ETOOBIG);
    CN_ENSURE(c->handle[0] != '\0', CN_ENOTFOUND);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    Chat__GroupMember *m = calloc(n ? n : 1, sizeof(*m));
    Chat__GroupMember **mp = calloc(n ? n : 1, sizeof(*mp));
    char(*norm)[CN_HANDLE_MAX + 1] = calloc(n ? n : 1, sizeof(*norm));
    Chat__ServerFrame *r = NULL;
    int rc = m && mp && norm ? CN_OK : CN_ENOMEM;
    for (size_t i = 0; rc == CN_OK && i < n; i++) {
        rc = cn_handle_normalize(handles[i], norm[i]);
        chat__group_member__init(&m[i]);
        m[i].handle = norm[i];
        m[i].role = CHAT__ROLE__MEMBER;
        mp[i] = &m[i];
    }
    cn_random(group_id, CN_GROUP_ID_LEN);
    Chat__GroupCreate gc;
    chat__group_create__init(&gc);
    gc.group_id = cn__bin(group_id, CN_GROUP_ID_LEN);
    gc.n_members = n;
    gc.members = mp;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GROUP_CREATE;
    f.group_create = &gc;
    if (rc == CN_OK)
        rc = cn__client_rpc(c, &f, deadline, &r);
    if (rc == CN_OK)
        rc = cn__client_check(c, r, CHAT__RESPONSE__RESULT_GROUP);
    /* Every member (and our other devices) learns the name and our key. */
    if (rc == CN_OK)
        rc = sync_members(c, group_id, name, deadline);
    if (rc == CN_OK)
        rc = cn__client_flush_until(c, deadline, NULL, NULL);
    if (r != NULL)
        chat__server_frame__free_unpacked(r, NULL);
    free(m);
    free(mp);
    free(norm);
    return rc;
}

int cn_client_group_update(cn_client_t *c, const uint8_t group_id[CN_GROUP_ID_LEN],
                           const char *handle, bool add)
{
    char norm[CN_HANDLE_MAX + 1];
    CN_ENSURE(handle != NULL && cn_handle_normalize(handle, norm) == CN_OK, CN_EINVAL);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    int rc = CN_ECONFLICT;
    for (int attempt = 0; attempt < 3 && rc == CN_ECONFLICT; attempt++) {
        Chat__ServerFrame *g = NULL, *r = NULL;
        CN_TRY(cn__group_get(c, group_id, deadline, &g));
        Chat__GroupMember gm;
        chat__group_member__init(&gm);
        gm.handle = norm;
        Chat__GroupMember *gmp[1] = {&gm};
        char *rem[1] = {norm};
        Chat__GroupUpdate gu;
        chat__group_update__init(&gu);
        gu.group_id = cn__bin(group_id, CN_GROUP_ID_LEN);
        gu.expected_version = g->response->group->version;
        if (add) {
            gu.n_add = 1;
            gu.add = gmp;
        } else {
            gu.n_remove = 1;
            gu.remove = rem;
        }
        Chat__ClientFrame f;
        chat__client_frame__init(&f);
        f.body_case = CHAT__CLIENT_FRAME__BODY_GROUP_UPDATE;
        f.group_update = &gu;
        rc = cn__client_rpc(c, &f, deadline, &r);
        if (rc == CN_OK)
            rc = cn__client_check(c, r, CHAT__RESPONSE__RESULT_GROUP);
        chat__server_frame__free_unpacked(g, NULL);
        if (r != NULL)
            chat__server_frame__free_unpacked(r, NULL);
    }
    CN_TRY(rc);
    /* A new member gets our key; a removal makes a new one for the rest. */
    CN_TRY(sync_members(c, group_id, NULL, deadline));
    return cn__client_flush_until(c, deadline, NULL, NULL);
}

int cn_client_group_send_text(cn_client_t *c, const uint8_t group_id[CN_GROUP_ID_LEN],
                              const char *text, uint8_t message_id[CN_MESSAGE_ID_LEN])
{
    CN_ENSURE(text != NULL && strlen(text) <= CN_CLIENT_TEXT_MAX, CN_ETOOBIG);
    CN_ENSURE(cn_utf8_valid((const uint8_t *)text, strlen(text)), CN_EINVAL);
    c->refused = false;
    uint64_t deadline = cn__now_ms() + c->timeout_ms;
    CN_TRY(sync_members(c, group_id, NULL, deadline));
    cn_content_t ct = {.version = CN_CLIENT_CONTENT_VER, .type = CN_CONTENT_TEXT};
    ct.text = text;
    ct.text_len = strlen(text);
    ct.sent_at = cn_now_ms();
    ct.group_id = group_id;
    cn_buf_t body;
    cn_buf_init(&body);
    int rc = cn_buf_append(&body, group_id, CN_GROUP_ID_LEN);
    if (rc == CN_OK)
        rc = cn_content_encode(&body, &ct);
    if (rc == CN_OK)
        rc = cn__client_queue(c, c->handle, CN__KIND_GROUP, &body, message_id);
    cn_buf_dispose(&body);
    CN_TRY(rc);
    return cn__client_flush_until(c, deadline, NULL, NULL);
}
