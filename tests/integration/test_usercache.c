/*
 * Integration: the node caches user and group records (node/usercache.c);
 * a Send right after a link, a revoke or a group change must see the new
 * device list or membership, never the cached old one. The node runs two
 * loops (the harness default), so the change and the Send are often
 * handled by different loop threads.
 */
#include "tests/integration/harness.h"

#include <string.h>

/* LinkDevice from a fresh connection for u2 (alice's handle, a new key). */
static char *request_link(h_node_t *n, h_user_t *u2)
{
    h_client_t *c = h_connect(n);
    uint8_t sig[CN_SIGNATURE_LEN];
    h_sign_session(c, u2, CN_LINK_CONTEXT, u2->handle, sig);
    Chat__LinkDevice ld;
    chat__link_device__init(&ld);
    ld.handle = u2->handle;
    ld.device_id.data = u2->id.pk;
    ld.device_id.len = CN_DEVICE_ID_LEN;
    ld.signature.data = sig;
    ld.signature.len = sizeof(sig);
    char name[] = "second";
    ld.device_name = name;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_LINK_DEVICE;
    f.link_device = &ld;
    Chat__Response *r = h_request(c, &f);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_LINK_CODE);
    return strdup(r->link_code->code);
}

/* Links u2 as a new device of a's user, approved by a; asserts OK. */
static void link_device(h_node_t *n, h_client_t *a, h_user_t *u2)
{
    char *code = request_link(n, u2);
    cn_buf_t t;
    cn_buf_init(&t);
    assert_int_equal(cn_transcript_link_cert(&t, u2->handle, u2->id.pk), CN_OK);
    uint8_t cert[CN_SIGNATURE_LEN];
    assert_int_equal(cn_identity_sign(&a->user->id, t.data, t.len, cert), CN_OK);
    cn_buf_dispose(&t);
    Chat__LinkApprove la;
    chat__link_approve__init(&la);
    la.code = code;
    la.device_id.data = u2->id.pk;
    la.device_id.len = CN_DEVICE_ID_LEN;
    la.certificate.data = cert;
    la.certificate.len = sizeof(cert);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_LINK_APPROVE;
    f.link_approve = &la;
    Chat__Response *r = h_request(a, &f);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    free(code);
}

static void revoke_device(h_client_t *a, h_user_t *u2)
{
    Chat__RevokeDevice rd;
    chat__revoke_device__init(&rd);
    rd.device_id.data = u2->id.pk;
    rd.device_id.len = CN_DEVICE_ID_LEN;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_REVOKE_DEVICE;
    f.revoke_device = &rd;
    assert_int_equal(h_request(a, &f)->status, CHAT__STATUS__OK);
}

/* A Send from c to handle `to` with one envelope per device in devs. */
static Chat__Response *send_to(h_client_t *c, const char *to, const uint8_t *const *devs, size_t n)
{
    h_env_t env[4];
    uint8_t id[CN_MESSAGE_ID_LEN];
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++)
        env[i] = (h_env_t){devs[i], "ct", 2};
    h_msg_id(id);
    return h_send(c, to, id, CHAT__KIND__MESSAGE, env, n);
}

static void assert_conflict(const Chat__Response *r, const uint8_t *missing, const uint8_t *stale)
{
    assert_int_equal(r->status, CHAT__STATUS__CONFLICT);
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_CONFLICT);
    const Chat__Conflict *cf = r->conflict;
    assert_int_equal(cf->n_missing_devices, missing ? 1 : 0);
    assert_int_equal(cf->n_stale_devices, stale ? 1 : 0);
    if (missing)
        assert_memory_equal(cf->missing_devices[0].data, missing, CN_DEVICE_ID_LEN);
    if (stale)
        assert_memory_equal(cf->stale_devices[0].data, stale, CN_DEVICE_ID_LEN);
}

static void test_send_after_link_and_revoke(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    const uint8_t *a1 = a->user->id.pk, *b1 = b->user->id.pk;
    for (int round = 0; round < 4; round++) {
        /* Warm the cache with alice's and bob's current lists. */
        assert_int_equal(send_to(b, a->user->handle, &a1, 1)->status, CHAT__STATUS__OK);
        assert_int_equal(send_to(a, b->user->handle, &b1, 1)->status, CHAT__STATUS__OK);

        h_user_t *a2 = h_user_new(NULL); /* a new device of alice */
        memcpy(a2->handle, a->user->handle, sizeof(a2->handle));
        link_device(n, a, a2);
        /* At once: bob must cover the new device, and so must alice's own sends. */
        assert_conflict(send_to(b, a->user->handle, &a1, 1), a2->id.pk, NULL);
        assert_conflict(send_to(a, b->user->handle, &b1, 1), a2->id.pk, NULL);
        const uint8_t *both[2] = {a1, a2->id.pk};
        assert_int_equal(send_to(b, a->user->handle, both, 2)->status, CHAT__STATUS__OK);
        const uint8_t *sync[2] = {b1, a2->id.pk};
        assert_int_equal(send_to(a, b->user->handle, sync, 2)->status, CHAT__STATUS__OK);

        revoke_device(a, a2);
        /* At once: the revoked device is stale everywhere. */
        assert_conflict(send_to(b, a->user->handle, both, 2), NULL, a2->id.pk);
        assert_conflict(send_to(a, b->user->handle, sync, 2), NULL, a2->id.pk);
        assert_int_equal(send_to(b, a->user->handle, &a1, 1)->status, CHAT__STATUS__OK);
    }
    /* The cache served, and every change was invalidated. */
    assert_true(h_metric(n, "chatnode_usercache_hits_total{kind=\"user\"}") > 0);
    assert_true(h_metric(n, "chatnode_usercache_invalidations_total") >= 8);
}

static Chat__Response *group_create(h_client_t *c, uint8_t gid[CN_GROUP_ID_LEN], char *member)
{
    Chat__GroupMember m;
    chat__group_member__init(&m);
    m.handle = member;
    m.role = CHAT__ROLE__MEMBER;
    Chat__GroupMember *mp = &m;
    Chat__GroupCreate gc;
    chat__group_create__init(&gc);
    gc.group_id.data = gid;
    gc.group_id.len = CN_GROUP_ID_LEN;
    gc.n_members = 1;
    gc.members = &mp;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GROUP_CREATE;
    f.group_create = &gc;
    return h_request(c, &f);
}

static Chat__Response *group_leave(h_client_t *c, uint8_t gid[CN_GROUP_ID_LEN])
{
    Chat__GroupUpdate gu;
    chat__group_update__init(&gu);
    gu.group_id.data = gid;
    gu.group_id.len = CN_GROUP_ID_LEN;
    char *me = c->user->handle;
    gu.n_remove = 1;
    gu.remove = &me;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GROUP_UPDATE;
    f.group_update = &gu;
    return h_request(c, &f);
}

static Chat__Response *group_send(h_client_t *c, uint8_t gid[CN_GROUP_ID_LEN],
                                  uint8_t msg_id[CN_MESSAGE_ID_LEN])
{
    Chat__Send s;
    chat__send__init(&s);
    h_msg_id(msg_id);
    s.message_id.data = msg_id;
    s.message_id.len = CN_MESSAGE_ID_LEN;
    s.kind = CHAT__KIND__MESSAGE;
    s.group_id.data = gid;
    s.group_id.len = CN_GROUP_ID_LEN;
    uint8_t ct[4] = {'s', 'k', 'c', 't'};
    s.sender_key_ciphertext.data = ct;
    s.sender_key_ciphertext.len = sizeof(ct);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    return h_request(c, &f);
}

/* The next Deliver on c carries msg_id. */
static void expect_deliver(h_client_t *c, const uint8_t msg_id[CN_MESSAGE_ID_LEN])
{
    Chat__ServerFrame *f = h_next_push(c, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_non_null(f);
    assert_memory_equal(f->deliver->message_id.data, msg_id, CN_MESSAGE_ID_LEN);
}

static void test_group_send_after_changes(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    uint8_t gid[CN_GROUP_ID_LEN], msg[CN_MESSAGE_ID_LEN];
    cn_random(gid, sizeof(gid));
    assert_int_equal(group_create(b, gid, a->user->handle)->status, CHAT__STATUS__OK);
    assert_int_equal(group_send(b, gid, msg)->status, CHAT__STATUS__OK);
    expect_deliver(a, msg);
    assert_int_equal(group_send(b, gid, msg)->status, CHAT__STATUS__OK); /* cached group */
    expect_deliver(a, msg);

    /* A linked device gets the very next group message. */
    h_user_t *a2 = h_user_new(NULL);
    memcpy(a2->handle, a->user->handle, sizeof(a2->handle));
    link_device(n, a, a2);
    assert_int_equal(group_send(b, gid, msg)->status, CHAT__STATUS__OK);
    expect_deliver(a, msg);
    h_client_t *c2 = h_login(n, a2);
    expect_deliver(c2, msg); /* from its mailbox */

    /* Alice leaves: her sends are refused at once, bob's reach nobody. */
    assert_int_equal(group_leave(a, gid)->status, CHAT__STATUS__OK);
    assert_int_equal(group_send(a, gid, msg)->status, CHAT__STATUS__NOT_FOUND);
    Chat__Response *r = group_send(b, gid, msg);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST); /* nobody else in the group */
    assert_true(h_metric(n, "chatnode_usercache_hits_total{kind=\"group\"}") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_send_after_link_and_revoke),
        H_TEST(test_group_send_after_changes),
    };
    return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
