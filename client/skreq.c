/*
 * Sender key requests (docs/E2E.md, "Sender key requests").
 *
 * Receiving side: a group message from a device whose sender key this
 * device lacks (a device linked after the sender distributed its key, or
 * a key id or iteration out of reach) waits in the pending set
 * (client/pending.c, sealed in HOME/groups/pending), and the sender
 * device is asked for its key with content type 6 (kind CONTROL, a
 * pairwise message to the sender's user naming the sender device), at
 * most once per CN_CLIENT_SKREQ_INTERVAL_MS per (group, sender device).
 * When the key comes, client/recv.c opens what waited, in order.
 *
 * Sending side: a request is collected while receiving and answered
 * afterwards (it needs requests of its own): only for a current device
 * (GetDevices) of a current member (GroupGet) and only by the device it
 * names, with this device's sender key at the iteration asked for
 * (client/group.c keeps a window of CN_CLIENT_SKREQ_WINDOW). Anything
 * else is ignored with a log line; the requester learns nothing.
 */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENDING_LABEL "group-pending"

static int pending_path(const cn_client_t *c, char *path)
{
    int n = snprintf(path, CN__PATH_MAX, "%s/groups/pending", c->home);
    CN_ENSURE(n > 0 && n < CN__PATH_MAX, CN_EINVAL);
    return CN_OK;
}

int cn__skreq_pending(cn_client_t *c, cn__pending_t **out)
{
    if (c->pending != NULL) {
        *out = c->pending;
        return CN_OK;
    }
    char path[CN__PATH_MAX];
    CN_TRY(pending_path(c, path));
    cn__pending_t *p = malloc(sizeof(*p));
    CN_ENSURE(p != NULL, CN_ENOMEM);
    cn__pending_init(p);
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn__sealed_read(c->home_key, path, PENDING_LABEL,
                             CN_CLIENT_PENDING_BYTES_MAX + 64u * 1024u, &b);
    if (rc == CN_OK)
        rc = cn__pending_decode(b.data, b.len, p);
    cn_buf_wipe(&b);
    if (rc == CN_ENOTFOUND)
        rc = CN_OK;
    if (rc < 0 && rc != CN_EIO && rc != CN_ENOMEM) {
        /* A damaged file must not stop receiving: start empty, say so. */
        cn_log_warn("client.group_pending_unreadable", "err=%s", cn_strerror(rc));
        cn__pending_init(p);
        rc = CN_OK;
    }
    if (rc < 0) {
        free(p);
        return rc;
    }
    c->pending = p;
    *out = p;
    return CN_OK;
}

int cn__skreq_save(cn_client_t *c)
{
    if (c->pending == NULL || !c->pending->dirty)
        return CN_OK;
    char path[CN__PATH_MAX];
    CN_TRY(pending_path(c, path));
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn__pending_encode(c->pending, &b);
    if (rc == CN_OK)
        rc = cn__sealed_write(c->home_key, path, PENDING_LABEL, b.data, b.len);
    cn_buf_wipe(&b);
    if (rc == CN_OK)
        c->pending->dirty = false;
    return rc;
}

/* The oldest iteration waiting under key_id for (gid, dev). */
static uint32_t first_iteration(const cn__pending_t *p, const uint8_t *gid, const uint8_t *dev,
                                uint32_t key_id, uint32_t it)
{
    for (size_t i = 0; i < p->n; i++) {
        const cn__pending_msg_t *m = &p->v[i];
        if (memcmp(m->gid, gid, CN_GROUP_ID_LEN) == 0 &&
            memcmp(m->dev, dev, CN_DEVICE_ID_LEN) == 0 && m->key_id == key_id)
            it = CN_MIN(it, m->iteration);
    }
    return it;
}

static int queue_request(cn_client_t *c, const cn__pending_msg_t *m, uint32_t iteration)
{
    cn_content_t ct = {.version = CN_CLIENT_CONTENT_VER, .type = CN_CONTENT_SENDER_KEY_REQUEST};
    ct.sent_at = cn_now_ms();
    ct.group_id = m->gid;
    ct.skreq_key_id = m->key_id;
    ct.skreq_iteration = iteration;
    ct.skreq_device = m->dev;
    cn_buf_t body;
    cn_buf_init(&body);
    int rc = cn_content_encode(&body, &ct);
    if (rc == CN_OK)
        rc = cn__client_queue(c, m->from, CHAT__KIND__CONTROL, &body, NULL);
    cn_buf_dispose(&body);
    return rc;
}

int cn__skreq_pend(cn_client_t *c, const cn__pending_msg_t *m, const uint8_t *ct, size_t n)
{
    cn__pending_t *p;
    char id[2 * CN_MESSAGE_ID_LEN + 1], dev[2 * CN_DEVICE_ID_LEN + 1];
    CN_TRY(cn__skreq_pending(c, &p));
    CN_TRY(cn__pending_add(p, m, ct, n));
    cn_hex_encode(id, m->message_id, CN_MESSAGE_ID_LEN);
    cn_hex_encode(dev, m->dev, CN_DEVICE_ID_LEN);
    cn_log_info("client.group_pending", "id=%s from=%s device=%.16s key_id=%u iteration=%u", id,
                m->from, dev, m->key_id, m->iteration);
    if (!cn__pending_request_due(p, m->gid, m->dev, cn_now_ms()))
        return CN_OK; /* asked recently: one request per burst */
    uint32_t it = first_iteration(p, m->gid, m->dev, m->key_id, m->iteration);
    cn_log_info("client.sender_key_request", "to=%s device=%.16s key_id=%u iteration=%u", m->from,
                dev, m->key_id, it);
    return queue_request(c, m, it);
}

void cn__skreq_received(cn_client_t *c, const char *from, const uint8_t dev[CN_DEVICE_ID_LEN],
                        const cn_content_t *ct)
{
    if (memcmp(ct->skreq_device, c->id.pk, CN_DEVICE_ID_LEN) != 0)
        return; /* for another device of this user, or our own request's sync copy */
    for (size_t i = 0; i < c->nskreq_in; i++) {
        cn__skreq_in_t *r = &c->skreq_in[i];
        if (memcmp(r->gid, ct->group_id, CN_GROUP_ID_LEN) == 0 &&
            memcmp(r->dev, dev, CN_DEVICE_ID_LEN) == 0) {
            r->key_id = ct->skreq_key_id; /* the same device asked again */
            r->iteration = CN_MIN(r->iteration, ct->skreq_iteration);
            return;
        }
    }
    if (c->nskreq_in == CN__SKREQ_INBOX_MAX) {
        cn_log_warn("client.sender_key_request_ignored", "from=%s reason=%s", from,
                    "too many requests at once (CN__SKREQ_INBOX_MAX)");
        return;
    }
    cn__skreq_in_t *r = &c->skreq_in[c->nskreq_in++];
    memcpy(r->gid, ct->group_id, CN_GROUP_ID_LEN);
    memcpy(r->dev, dev, CN_DEVICE_ID_LEN);
    snprintf(r->from, sizeof(r->from), "%s", from);
    r->key_id = ct->skreq_key_id;
    r->iteration = ct->skreq_iteration;
}

static bool has_device(const cn__devices_t *d, const uint8_t *dev)
{
    for (uint32_t i = 0; i < d->n; i++)
        if (memcmp(d->ids[i], dev, CN_DEVICE_ID_LEN) == 0)
            return true;
    return false;
}

const char *cn__skreq_refusal(const char *from, const uint8_t dev[CN_DEVICE_ID_LEN],
                              const Chat__GroupInfo *gi, const cn__devices_t *devices)
{
    bool member = false;
    for (size_t i = 0; gi != NULL && i < gi->n_members && !member; i++)
        member = gi->members[i]->handle != NULL && strcmp(gi->members[i]->handle, from) == 0;
    if (!member)
        return "not a member of the group";
    if (devices == NULL || !has_device(devices, dev))
        return "not a current device of the member";
    return NULL;
}

/* Why a request must not be answered (a static string), or NULL. The
 * node's group record decides membership; the cached device list of the
 * member is asked for again when it does not know the device. */
static const char *refusal(cn_client_t *c, const cn__skreq_in_t *r, uint64_t deadline, int *err)
{
    Chat__ServerFrame *g = NULL;
    *err = cn__group_get(c, r->gid, deadline, &g);
    if (*err < 0)
        return "group unknown to the node or not reachable";
    cn__devices_t d;
    const char *why = cn__skreq_refusal(r->from, r->dev, g->response->group, NULL);
    if (strcmp(why, "not a member of the group") != 0) {
        *err = cn__devices_load(c->home, r->from, &d);
        if (*err == CN_OK && !has_device(&d, r->dev)) {
            *err = cn__devices_get(c, r->from, deadline, &d);
            if (*err == CN_OK)
                *err = cn__devices_save(c->home, r->from, &d);
        }
        why = *err < 0 ? "device list not available"
                       : cn__skreq_refusal(r->from, r->dev, g->response->group, &d);
    }
    chat__server_frame__free_unpacked(g, NULL);
    return why;
}

static int answer_one(cn_client_t *c, const cn__skreq_in_t *r, uint64_t deadline, bool *queued)
{
    char dev[2 * CN_DEVICE_ID_LEN + 1];
    int err = CN_OK;
    cn_hex_encode(dev, r->dev, CN_DEVICE_ID_LEN);
    *queued = false;
    const char *why = refusal(c, r, deadline, &err);
    if (err == CN_EIO || err == CN_ENOMEM)
        return err;
    if (why != NULL) {
        cn_log_warn("client.sender_key_request_refused", "from=%s device=%.16s reason=\"%s\"",
                    r->from, dev, why);
        return CN_OK;
    }
    cn_buf_t dist;
    cn_buf_init(&dist);
    int rc = cn__group_distribution_for(c, r->gid, r->from, r->key_id, r->iteration, &dist);
    if (rc == CN_OK)
        rc = cn__group_queue_distribution(c, r->gid, r->from, &dist);
    cn_buf_wipe(&dist);
    if (rc == CN_ENOTFOUND) {
        cn_log_info("client.sender_key_request_ignored", "from=%s reason=%s", r->from,
                    "this device has no sender key for the group");
        return CN_OK;
    }
    CN_TRY(rc);
    cn_log_info("client.sender_key_answered", "to=%s device=%.16s iteration=%u", r->from, dev,
                r->iteration);
    *queued = true;
    return CN_OK;
}

int cn__skreq_answer(cn_client_t *c, uint64_t deadline_ms, size_t *queued)
{
    *queued = 0;
    /* Answering makes requests, during which more requests may come: work
     * on a copy and leave the inbox to them. */
    cn__skreq_in_t inbox[CN__SKREQ_INBOX_MAX];
    size_t n = c->nskreq_in;
    memcpy(inbox, c->skreq_in, n * sizeof(inbox[0]));
    c->nskreq_in = 0;
    for (size_t i = 0; i < n; i++) {
        bool q;
        int rc = answer_one(c, &inbox[i], deadline_ms, &q);
        if (rc < 0) {
            /* Not answered: left for the next receive (bounded inbox). */
            for (size_t k = i; k < n && c->nskreq_in < CN__SKREQ_INBOX_MAX; k++)
                c->skreq_in[c->nskreq_in++] = inbox[k];
            return rc;
        }
        *queued += q;
    }
    return CN_OK;
}
