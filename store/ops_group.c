/*
 * Group ops: CREATE and UPDATE of the groups CF record (members in join
 * order with roles, and a version). Both check everything on the writer's
 * heap scratch record (b->group, about 34 KiB) before writing, so a refused
 * op writes nothing. Member lookups are linear: a group holds at most
 * CN_GROUP_MEMBERS_HARD_MAX members and changes rarely.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

/** The scratch record, allocated on first use and kept for the next ops. */
static int scratch(cn__batch_t *b, cn_rec_group_t **out)
{
    if (b->group == NULL) {
        b->group = malloc(sizeof(*b->group));
        CN_ENSURE(b->group != NULL, CN_ENOMEM);
    }
    *out = b->group;
    return CN_OK;
}

static uint32_t member_limit(uint32_t max_members)
{
    if (max_members == 0 || max_members > CN_GROUP_MEMBERS_HARD_MAX)
        return CN_GROUP_MEMBERS_HARD_MAX;
    return max_members;
}

/** The index of handle among the members, or -1. */
static int member_find(const cn_rec_group_t *g, const char *handle)
{
    for (uint32_t i = 0; i < g->n; i++) {
        if (strcmp(g->members[i].handle, handle) == 0)
            return (int)i;
    }
    return -1;
}

/** Checks an input list: handles in normal form, known roles. */
static int list_check(const cn_rec_group_member_t *list, uint32_t n, uint32_t *index)
{
    CN_ENSURE(n <= CN_GROUP_MEMBERS_HARD_MAX, CN_ETOOBIG);
    CN_ENSURE(n == 0 || list != NULL, CN_EINVAL);
    for (uint32_t i = 0; i < n; i++) {
        *index = i;
        CN_ENSURE(cn__handle_ok(list[i].handle), CN_EINVAL);
        CN_ENSURE(list[i].role <= CN_GROUP_ROLE_ADMIN, CN_EINVAL);
    }
    *index = 0;
    return CN_OK;
}

/** CN_OK for a known user that is not disabled, else CN_ENOTFOUND (or CN_EIO). */
static int user_active(cn__batch_t *b, const char *handle)
{
    cn_rec_user_t user;
    CN_TRY(cn__batch_user(b, handle, &user));
    CN_ENSURE(!user.disabled, CN_ENOTFOUND);
    return CN_OK;
}

/** Checks that every listed user is active; *index names the first that is not. */
static int users_active(cn__batch_t *b, const cn_rec_group_member_t *list, uint32_t n,
                        uint32_t *index)
{
    for (uint32_t i = 0; i < n; i++) {
        *index = i;
        CN_TRY(user_active(b, list[i].handle));
    }
    *index = 0;
    return CN_OK;
}

/** Reads a group through the batch: CN_OK, CN_ENOTFOUND or CN_EIO. */
static int group_read(cn__batch_t *b, const uint8_t *id, cn_rec_group_t *g)
{
    char *v;
    size_t vlen;
    CN_TRY(cn__batch_get(b, CN__CF_GROUPS, id, CN_GROUP_ID_LEN, &v, &vlen));
    int rc = cn_rec_group_decode((const uint8_t *)v, vlen, g);
    rocksdb_free(v);
    if (rc < 0) {
        cn_log_error("store_corrupt", "what=group rc=%s", cn_strerror(rc));
        return CN_EIO;
    }
    return CN_OK;
}

static int group_write(cn__batch_t *b, const uint8_t *id, const cn_rec_group_t *g)
{
    cn_buf_reset(&b->v1);
    CN_TRY(cn_rec_group_encode(g, &b->v1));
    cn__batch_put(b, CN__CF_GROUPS, id, CN_GROUP_ID_LEN, &b->v1);
    return CN_OK;
}

/** Adds a member (or, create only, raises an existing one to admin). */
static int member_add(cn_rec_group_t *g, const char *handle, uint8_t role, uint32_t limit,
                      bool raise)
{
    int i = member_find(g, handle);
    if (i >= 0) {
        if (raise && role > g->members[i].role)
            g->members[i].role = role;
        return CN_OK;
    }
    CN_ENSURE(g->n < limit, CN_ELIMIT);
    /* Zero-padded, so the record reads back byte for byte as decoded. */
    memset(&g->members[g->n], 0, sizeof(g->members[0]));
    memcpy(g->members[g->n].handle, handle, strlen(handle));
    g->members[g->n].role = role;
    g->n++;
    return CN_OK;
}

static int create_check(cn__batch_t *b, cn_store_op_t *op)
{
    char *v;
    size_t vlen;
    op->u.group_create.index = UINT32_MAX;
    CN_ENSURE(cn__handle_ok(op->u.group_create.creator), CN_EINVAL);
    CN_TRY(list_check(op->u.group_create.members, op->u.group_create.n, &op->u.group_create.index));
    int rc =
        cn__batch_get(b, CN__CF_GROUPS, op->u.group_create.group_id, CN_GROUP_ID_LEN, &v, &vlen);
    if (rc == CN_OK)
        rocksdb_free(v);
    CN_ENSURE(rc != CN_OK, CN_EEXIST);
    CN_ENSURE(rc == CN_ENOTFOUND, rc);
    rc = user_active(b, op->u.group_create.creator);
    CN_ENSURE(rc != CN_ENOTFOUND, CN_EAUTH);
    CN_TRY(rc);
    return users_active(b, op->u.group_create.members, op->u.group_create.n,
                        &op->u.group_create.index);
}

int cn__op_group_create(cn__batch_t *b, cn_store_op_t *op)
{
    cn_rec_group_t *g;
    uint32_t limit = member_limit(op->u.group_create.max_members);
    CN_TRY(create_check(b, op));
    CN__APPLY(b, scratch(b, &g));
    memset(g, 0, sizeof(*g));
    g->version = 1;
    g->created = cn_now_ms();
    CN_TRY(member_add(g, op->u.group_create.creator, CN_GROUP_ROLE_ADMIN, limit, true));
    for (uint32_t i = 0; i < op->u.group_create.n; i++) {
        const cn_rec_group_member_t *m = &op->u.group_create.members[i];
        CN_TRY(member_add(g, m->handle, m->role, limit, true));
    }
    CN__APPLY(b, group_write(b, op->u.group_create.group_id, g));
    if (op->u.group_create.out != NULL)
        memcpy(op->u.group_create.out, g, sizeof(*g));
    return CN_OK;
}

/* ---------------------------------------------------------------- update */

/** A member that is not an admin may only leave: remove[] is itself alone. */
static bool leave_only(const cn_store_op_t *op)
{
    if (op->u.group_update.n_add != 0 || op->u.group_update.n_set_role != 0 ||
        op->u.group_update.n_remove == 0)
        return false;
    for (uint32_t i = 0; i < op->u.group_update.n_remove; i++) {
        if (strcmp(op->u.group_update.remove[i].handle, op->u.group_update.actor) != 0)
            return false;
    }
    return true;
}

static int update_check(cn_store_op_t *op)
{
    uint32_t *index = &op->u.group_update.index;
    *index = UINT32_MAX;
    CN_ENSURE(cn__handle_ok(op->u.group_update.actor), CN_EINVAL);
    CN_TRY(list_check(op->u.group_update.add, op->u.group_update.n_add, index));
    /* Only the handles of remove[] matter; its roles are not checked. */
    CN_ENSURE(op->u.group_update.n_remove <= CN_GROUP_MEMBERS_HARD_MAX, CN_ETOOBIG);
    CN_ENSURE(op->u.group_update.n_remove == 0 || op->u.group_update.remove != NULL, CN_EINVAL);
    for (uint32_t i = 0; i < op->u.group_update.n_remove; i++) {
        *index = i;
        CN_ENSURE(cn__handle_ok(op->u.group_update.remove[i].handle), CN_EINVAL);
    }
    return list_check(op->u.group_update.set_role, op->u.group_update.n_set_role, index);
}

/** Removes the member at i, keeping the join order. */
static void member_drop(cn_rec_group_t *g, uint32_t i)
{
    memmove(&g->members[i], &g->members[i + 1], (size_t)(g->n - i - 1) * sizeof(g->members[0]));
    g->n--;
    memset(&g->members[g->n], 0, sizeof(g->members[0]));
}

/** Applies remove[], add[] and set_role[] to g; *changed when g changed. */
static int update_apply(cn_store_op_t *op, cn_rec_group_t *g, bool *changed)
{
    uint32_t limit = member_limit(op->u.group_update.max_members), before = g->n;
    *changed = false;
    for (uint32_t i = 0; i < op->u.group_update.n_remove; i++) {
        int j = member_find(g, op->u.group_update.remove[i].handle);
        if (j >= 0)
            member_drop(g, (uint32_t)j);
    }
    *changed = g->n != before;
    for (uint32_t i = 0; i < op->u.group_update.n_add; i++) {
        const cn_rec_group_member_t *m = &op->u.group_update.add[i];
        uint32_t n = g->n;
        CN_TRY(member_add(g, m->handle, m->role, limit, false));
        *changed = *changed || g->n != n;
    }
    for (uint32_t i = 0; i < op->u.group_update.n_set_role; i++) {
        const cn_rec_group_member_t *m = &op->u.group_update.set_role[i];
        int j = member_find(g, m->handle);
        op->u.group_update.index = UINT32_MAX;
        CN_ENSURE(j >= 0, CN_ENOTFOUND);
        *changed = *changed || g->members[j].role != m->role;
        g->members[j].role = m->role;
    }
    return CN_OK;
}

/* A group with members keeps an admin: the oldest member inherits it. */
static void keep_admin(cn_rec_group_t *g)
{
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->members[i].role == CN_GROUP_ROLE_ADMIN)
            return;
    }
    if (g->n > 0)
        g->members[0].role = CN_GROUP_ROLE_ADMIN;
}

int cn__op_group_update(cn__batch_t *b, cn_store_op_t *op)
{
    cn_rec_group_t *g;
    op->u.group_update.changed = false;
    CN_TRY(update_check(op));
    CN__APPLY(b, scratch(b, &g));
    CN_TRY(group_read(b, op->u.group_update.group_id, g));
    uint64_t expected = op->u.group_update.expected_version;
    if (expected != 0 && expected != g->version) {
        if (op->u.group_update.out != NULL)
            memcpy(op->u.group_update.out, g, sizeof(*g));
        return CN_ECONFLICT;
    }
    int actor = member_find(g, op->u.group_update.actor);
    if (actor < 0 && leave_only(op)) { /* left already: a retry */
        if (op->u.group_update.out != NULL)
            memcpy(op->u.group_update.out, g, sizeof(*g));
        return CN_OK;
    }
    CN_ENSURE(actor >= 0, CN_EAUTH);
    CN_ENSURE(g->members[actor].role == CN_GROUP_ROLE_ADMIN || leave_only(op), CN_EAUTH);
    CN_TRY(users_active(b, op->u.group_update.add, op->u.group_update.n_add,
                        &op->u.group_update.index));
    bool changed;
    CN_TRY(update_apply(op, g, &changed));
    keep_admin(g);
    if (changed) {
        g->version++;
        CN__APPLY(b, group_write(b, op->u.group_update.group_id, g));
    }
    op->u.group_update.changed = changed;
    if (op->u.group_update.out != NULL)
        memcpy(op->u.group_update.out, g, sizeof(*g));
    return CN_OK;
}
