/*
 * GroupCreate, GroupUpdate and GroupGet (DESIGN section 4). The node keeps
 * membership and roles so that it can fan a group send out; only admins
 * change membership, a member may leave. Group records are large (up to
 * CN_GROUP_MEMBERS_HARD_MAX members), so they live in the pending
 * request's heap allocation, never on a loop's stack.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

static cn_server_t *srv(const cn_conn_t *c)
{
    return c->loop->server;
}

/* Sends a GroupInfo answer built from a stored record. */
void cn__respond_group(cn_conn_t *c, uint64_t rid, Chat__Status status, const char *detail,
                       const uint8_t *group_id, const cn_rec_group_t *g)
{
    Chat__GroupMember *m = calloc(g->n ? g->n : 1, sizeof(*m));
    Chat__GroupMember **mp = calloc(g->n ? g->n : 1, sizeof(*mp));
    if (!m || !mp) {
        free(m);
        free(mp);
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < g->n; i++) {
        chat__group_member__init(&m[i]);
        m[i].handle = cn__pb_str(g->members[i].handle);
        m[i].role =
            g->members[i].role == CN_GROUP_ROLE_ADMIN ? CHAT__ROLE__ADMIN : CHAT__ROLE__MEMBER;
        mp[i] = &m[i];
    }
    Chat__GroupInfo info;
    chat__group_info__init(&info);
    info.group_id = cn__pb_bytes(group_id, CN_GROUP_ID_LEN);
    info.version = g->version;
    info.n_members = g->n;
    info.members = mp;
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = rid;
    r.status = status;
    r.detail = cn__pb_str(detail);
    r.result_case = CHAT__RESPONSE__RESULT_GROUP;
    r.group = &info;
    cn__conn_respond(c, &r);
    free(m);
    free(mp);
}

/* Copies wire members into store members; false (answered) when invalid. */
static bool copy_members(cn_conn_t *c, uint64_t rid, size_t n, Chat__GroupMember *const *in,
                         cn_rec_group_member_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (cn_handle_normalize(in[i]->handle, out[i].handle) < 0 ||
            (in[i]->role != CHAT__ROLE__MEMBER && in[i]->role != CHAT__ROLE__ADMIN)) {
            cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "invalid member");
            return false;
        }
        out[i].role = in[i]->role == CHAT__ROLE__ADMIN ? CN_GROUP_ROLE_ADMIN : CN_GROUP_ROLE_MEMBER;
    }
    return true;
}

static void group_done(cn_conn_t *c, cn_pending_t *p)
{
    bool create = p->op.type == CN_OP_GROUP_CREATE;
    const uint8_t *gid = create ? p->op.u.group_create.group_id : p->op.u.group_update.group_id;
    /* Before the answer, whether or not anyone waits for it (usercache.c). */
    cn__usercache_group_invalidate(p->loop->server->usercache, gid);
    if (!c)
        return;
    cn_rec_group_t *g = create ? p->op.u.group_create.out : p->op.u.group_update.out;
    switch (p->op.result) {
    case CN_OK:
        cn__respond_group(c, p->request_id, CHAT__STATUS__OK, "", gid, g);
        break;
    case CN_ECONFLICT: /* a stale version: the current record comes back */
        cn__respond_group(c, p->request_id, CHAT__STATUS__CONFLICT, "group version changed", gid,
                          g);
        break;
    case CN_EEXIST:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__CONFLICT, "group id taken");
        break;
    case CN_EAUTH:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__FORBIDDEN,
                                "only admins change a group");
        break;
    case CN_ENOTFOUND:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__NOT_FOUND, "unknown group or user");
        break;
    case CN_ELIMIT:
    case CN_ETOOBIG:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__TOO_LARGE,
                                "group size limit reached");
        break;
    case CN_EINVAL:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__BAD_REQUEST, "invalid member");
        break;
    default:
        cn__conn_respond_status(c, p->request_id, CHAT__STATUS__UNAVAILABLE,
                                "storage unavailable; retry");
    }
}

void cn__handle_group_create(cn_conn_t *c, uint64_t rid, const Chat__GroupCreate *m)
{
    if (m->group_id.len != CN_GROUP_ID_LEN) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "group_id must be 16 bytes");
        return;
    }
    if (m->n_members >= srv(c)->cfg.max_group_members ||
        m->n_members >= CN_GROUP_MEMBERS_HARD_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__TOO_LARGE, "group size limit reached");
        return;
    }
    size_t extra = sizeof(cn_rec_group_t) + m->n_members * sizeof(cn_rec_group_member_t);
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_GROUP_CREATE, group_done, extra);
    if (!p)
        return;
    cn_rec_group_t *out = p->extra;
    cn_rec_group_member_t *members = (cn_rec_group_member_t *)(out + 1);
    if (!copy_members(c, rid, m->n_members, m->members, members)) {
        cn__pending_free(p);
        return;
    }
    memcpy(p->op.u.group_create.group_id, m->group_id.data, CN_GROUP_ID_LEN);
    memcpy(p->op.u.group_create.creator, c->handle, sizeof(c->handle));
    p->op.u.group_create.n = (uint32_t)m->n_members;
    p->op.u.group_create.members = members;
    p->op.u.group_create.max_members = srv(c)->cfg.max_group_members;
    p->op.u.group_create.out = out;
    cn__pending_submit(c, p);
}

void cn__handle_group_update(cn_conn_t *c, uint64_t rid, const Chat__GroupUpdate *m)
{
    size_t n = m->n_add + m->n_remove + m->n_set_role;
    if (m->group_id.len != CN_GROUP_ID_LEN || n == 0 || n > CN_GROUP_MEMBERS_HARD_MAX) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST,
                                "group_id and 1..1000 changes are required");
        return;
    }
    size_t extra = sizeof(cn_rec_group_t) + n * sizeof(cn_rec_group_member_t);
    cn_pending_t *p = cn__pending_new(c, rid, CN_OP_GROUP_UPDATE, group_done, extra);
    if (!p)
        return;
    cn_rec_group_t *out = p->extra;
    cn_rec_group_member_t *add = (cn_rec_group_member_t *)(out + 1);
    cn_rec_group_member_t *rem = add + m->n_add, *set = rem + m->n_remove;
    bool ok = copy_members(c, rid, m->n_add, m->add, add) &&
              copy_members(c, rid, m->n_set_role, m->set_role, set);
    for (size_t i = 0; ok && i < m->n_remove; i++) {
        rem[i].role = CN_GROUP_ROLE_MEMBER;
        if (cn_handle_normalize(m->remove[i], rem[i].handle) < 0) {
            cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "invalid member");
            ok = false;
        }
    }
    if (!ok) {
        cn__pending_free(p);
        return;
    }
    memcpy(p->op.u.group_update.group_id, m->group_id.data, CN_GROUP_ID_LEN);
    memcpy(p->op.u.group_update.actor, c->handle, sizeof(c->handle));
    p->op.u.group_update.expected_version = m->expected_version;
    p->op.u.group_update.n_add = (uint32_t)m->n_add;
    p->op.u.group_update.n_remove = (uint32_t)m->n_remove;
    p->op.u.group_update.n_set_role = (uint32_t)m->n_set_role;
    p->op.u.group_update.add = add;
    p->op.u.group_update.remove = rem;
    p->op.u.group_update.set_role = set;
    p->op.u.group_update.max_members = srv(c)->cfg.max_group_members;
    p->op.u.group_update.out = out;
    cn__pending_submit(c, p);
}

bool cn__group_is_member(const cn_rec_group_t *g, const char *handle)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (strcmp(g->members[i].handle, handle) == 0)
            return true;
    return false;
}

void cn__handle_group_get(cn_conn_t *c, uint64_t rid, const Chat__GroupGet *m)
{
    if (m->group_id.len != CN_GROUP_ID_LEN) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__BAD_REQUEST, "group_id must be 16 bytes");
        return;
    }
    cn_rec_group_t *g = malloc(sizeof(*g));
    if (!g) {
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "out of memory");
        return;
    }
    int rc = cn_store_group_get(srv(c)->store, m->group_id.data, g);
    /* Non-members learn nothing, not even that the group exists. */
    if (rc == CN_OK && cn__group_is_member(g, c->handle))
        cn__respond_group(c, rid, CHAT__STATUS__OK, "", m->group_id.data, g);
    else if (rc == CN_OK || rc == CN_ENOTFOUND)
        cn__conn_respond_status(c, rid, CHAT__STATUS__NOT_FOUND, "unknown group");
    else
        cn__conn_respond_status(c, rid, CHAT__STATUS__UNAVAILABLE, "storage unavailable");
    free(g);
}
