/*
 * Integration: registration, authentication and the WebSocket layer of a
 * real chatnode (DESIGN sections 3 and 4). Malformed input must close only
 * the offending connection, with the RFC 6455 7.4.1 code the protocol asks
 * for, while the node keeps serving everyone else.
 */
#include "tests/integration/harness.h"

#include <string.h>

#define WS_TEXT   0x1
#define WS_BINARY 0x2
#define WS_CONT   0x0

static Chat__ClientFrame ping_frame(Chat__Ping *p)
{
    chat__ping__init(p);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_PING;
    f.ping = p;
    return f;
}

/* ------------------------------------------------------- registration */

static void test_register_then_auth(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "alice");
    h_user_t *alice = c->user;
    /* The fresh registration is signed in: requests are served. */
    Chat__Response *r = h_ping(c);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_PONG);
    assert_int_equal(r->pong->client_time, 42);
    assert_true(r->pong->server_time > 0);
    h_client_free(c);

    /* A new connection authenticates the same device. */
    c = h_connect(n);
    r = h_try_auth(c, alice);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_AUTH_OK);
    assert_string_equal(r->auth_ok->handle, alice->handle);
    assert_memory_equal(r->auth_ok->device_id.data, alice->id.pk, CN_DEVICE_ID_LEN);
    assert_int_equal(r->auth_ok->queued, 0);
    assert_true(r->auth_ok->server_time > 0);
    /* Nothing queued: the mailbox is drained at once. */
    Chat__ServerFrame *d = h_next_push(c, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED, H_WAIT_MS);
    assert_non_null(d);
    assert_int_equal(d->mailbox_drained->last_seq, 0);

    /* A second Auth on a signed-in connection is refused, not fatal. */
    r = h_try_auth(c, alice);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
    assert_int_equal(h_ping(c)->status, CHAT__STATUS__OK);
    assert_true(h_metric(n, "chatnode_registrations_total") >= 1);
    assert_true(h_metric(n, "chatnode_auth_ok_total") >= 2);
}

static void test_register_conflict(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "carol");

    /* Another device claims the same handle. */
    h_user_t *other = h_user_new("other");
    h_client_t *c = h_connect(n);
    Chat__Response *r = h_try_register(c, other, a->user->handle);
    assert_int_equal(r->status, CHAT__STATUS__CONFLICT);

    /* Case folding: the upper-case spelling is the same handle. */
    char upper[CN_HANDLE_MAX + 1];
    snprintf(upper, sizeof(upper), "%s", a->user->handle);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    c = h_connect(n);
    r = h_try_register(c, other, upper);
    assert_int_equal(r->status, CHAT__STATUS__CONFLICT);

    /* The same device cannot register a second handle either. */
    c = h_connect(n);
    r = h_try_register(c, a->user, "fresh-handle-x");
    assert_int_equal(r->status, CHAT__STATUS__CONFLICT);

    /* The refused device can still register a free handle. */
    c = h_connect(n);
    r = h_try_register(c, other, other->handle);
    assert_int_equal(r->status, CHAT__STATUS__OK);
}

static void test_register_invalid_handle(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_user_t *u = h_user_new("dave");
    h_client_t *c = h_connect(n);
    static const char *const bad[] = {
        "ab",                                /* too short */
        "has space",                         /* character outside the set */
        "emoji\xc3\xa9",                     /* non-ASCII */
        "a23456789012345678901234567890123", /* 33 characters */
        "",
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(bad); i++) {
        Chat__Response *r = h_try_register(c, u, bad[i]);
        assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
        assert_false(c->closed);
    }
    /* A refused handle costs nothing: the same connection registers. */
    Chat__Response *r = h_try_register(c, u, u->handle);
    assert_int_equal(r->status, CHAT__STATUS__OK);
}

/* ----------------------------------------------------- authentication */

static void test_auth_bad_signature(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "erin");
    h_user_t *erin = a->user;
    h_client_free(a);

    /* Erin's device id with a signature by another key. */
    h_user_t *mallory = h_user_new("mallory");
    h_client_t *c = h_connect(n);
    uint8_t sig[CN_SIGNATURE_LEN];
    h_sign_session(c, mallory, CN_AUTH_CONTEXT, NULL, sig);
    Chat__Auth au;
    chat__auth__init(&au);
    au.device_id.data = erin->id.pk;
    au.device_id.len = CN_DEVICE_ID_LEN;
    au.signature.data = sig;
    au.signature.len = CN_SIGNATURE_LEN;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_AUTH;
    f.auth = &au;
    Chat__Response *r = h_request(c, &f);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    assert_string_equal(r->detail, "bad signature");
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);

    /* A flipped bit in an otherwise correct signature fails the same way. */
    c = h_connect(n);
    h_sign_session(c, erin, CN_AUTH_CONTEXT, NULL, sig);
    sig[0] ^= 1;
    f.request_id = 0;
    r = h_request(c, &f);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);
    assert_true(h_metric(n, "chatnode_auth_failed_total{reason=\"bad_signature\"}") >= 2);

    /* Erin herself still gets in. */
    h_client_free(h_login(n, erin));
}

static void test_auth_unknown_device(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_user_t *ghost = h_user_new("ghost");
    h_client_t *c = h_connect(n);
    Chat__Response *r = h_try_auth(c, ghost);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    assert_string_equal(r->detail, "unknown device");
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);
}

static void test_auth_expired_challenge(void **state)
{
    (void)state;
    const char *const flags[] = {"--challenge-ttl", "300", "--auth-timeout", "20000", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "frank");
    h_user_t *frank = a->user;
    h_client_free(a);

    h_client_t *c = h_connect(n);
    assert_int_equal(c->expires_in_ms, 300);
    /* Watch the wall clock (the node's clock) pass the challenge's expiry. */
    uint64_t deadline = h_now_ms() + 5000;
    while (cn_now_ms() <= c->server_time + 300 + 20) {
        assert_true(h_now_ms() < deadline);
        h_sleep_ms(10);
    }
    Chat__Response *r = h_try_auth(c, frank);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    assert_string_equal(r->detail, "challenge expired");
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);

    /* A fresh challenge answered at once works. */
    h_client_free(h_login(n, frank));
}

static void test_auth_replayed_signature(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a0 = h_register(n, "grace");
    h_user_t *grace = a0->user;
    h_client_free(a0);

    /* Connection A signs in; the Auth frame is captured. */
    h_client_t *a = h_connect(n);
    uint8_t sig[CN_SIGNATURE_LEN];
    h_sign_session(a, grace, CN_AUTH_CONTEXT, NULL, sig);
    Chat__Auth au;
    chat__auth__init(&au);
    au.device_id.data = grace->id.pk;
    au.device_id.len = CN_DEVICE_ID_LEN;
    au.signature.data = sig;
    au.signature.len = CN_SIGNATURE_LEN;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_AUTH;
    f.auth = &au;
    assert_int_equal(h_request(a, &f)->status, CHAT__STATUS__OK);

    /* The same bytes on connection B: another nonce and TLS exporter. */
    h_client_t *b = h_connect(n);
    f.request_id = 0;
    Chat__Response *r = h_request(b, &f);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    assert_int_equal(h_expect_close(b, H_WAIT_MS), 1008);

    /* A signature made for C's challenge but relayed through D (a
     * connection with its own challenge) fails too. */
    h_client_t *cc = h_connect(n);
    h_client_t *d = h_connect(n);
    h_sign_session(cc, grace, CN_AUTH_CONTEXT, NULL, sig);
    f.request_id = 0;
    r = h_request(d, &f);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    assert_int_equal(h_expect_close(d, H_WAIT_MS), 1008);

    /* A is still signed in. */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
}

static void test_newest_connection_wins(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *old = h_register(n, "rita");
    h_user_t *rita = old->user;
    h_client_t *sender = h_register(n, "sam");
    h_client_t *cur = h_login(n, rita);
    /* One connection per device: the older one is closed (1008). */
    assert_int_equal(h_expect_close(old, H_WAIT_MS), 1008);
    /* Mail goes to the newest connection. */
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    assert_int_equal(h_send1(sender, rita, id, "hi", 2)->status, CHAT__STATUS__OK);
    Chat__ServerFrame *d = h_next_push(cur, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_non_null(d);
    assert_memory_equal(d->deliver->message_id.data, id, CN_MESSAGE_ID_LEN);
}

/* ------------------------------------------------------ before auth */

static void test_requests_before_auth(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *b = h_register(n, "heidi");
    h_client_t *c = h_connect(n);
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    static const char ct[] = "too early";
    Chat__Response *r = h_send1(c, b->user, id, ct, sizeof(ct));
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    r = h_ack(c, (const uint64_t[]){1}, 1);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    r = h_fetch_prekeys(c, b->user->handle);
    assert_int_equal(r->status, CHAT__STATUS__UNAUTHORIZED);
    /* The connection stays: Ping is allowed before auth, then Register. */
    assert_false(c->closed);
    assert_int_equal(h_ping(c)->status, CHAT__STATUS__OK);
    h_user_t *u = h_user_new("ivan");
    assert_int_equal(h_try_register(c, u, u->handle)->status, CHAT__STATUS__OK);
    c->user = u;
    assert_int_equal(h_send1(c, b->user, id, ct, sizeof(ct))->status, CHAT__STATUS__OK);
}

static void test_request_id_zero_and_empty(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "judy");
    Chat__Ping p;
    Chat__ClientFrame f = ping_frame(&p);
    f.request_id = 0;
    assert_int_equal(h_send_frame(c, &f), H_OK);
    Chat__Response *r = h_wait_response(c, 0, H_WAIT_MS);
    assert_non_null(r);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);

    /* A frame with a request id but no body. */
    Chat__ClientFrame empty;
    chat__client_frame__init(&empty);
    r = h_request(c, &empty);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);

    /* Every request gets an answer, not silence: SetPresence is served. */
    Chat__SetPresence sp;
    chat__set_presence__init(&sp);
    Chat__ClientFrame pf;
    chat__client_frame__init(&pf);
    pf.body_case = CHAT__CLIENT_FRAME__BODY_SET_PRESENCE;
    pf.set_presence = &sp;
    r = h_request(c, &pf);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(h_ping(c)->status, CHAT__STATUS__OK);
}

/* ---------------------------------------------------- malformed frames */

static void test_text_frame_closes_1003(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "ken");
    static const char text[] = "{\"hello\":1}";
    assert_int_equal(h_ws_frame(c, true, WS_TEXT, text, sizeof(text) - 1, true), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1003);
    /* Also before auth. */
    c = h_connect(n);
    assert_int_equal(h_ws_frame(c, true, WS_TEXT, text, sizeof(text) - 1, true), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1003);
    h_assert_serving(n);
}

static void test_garbage_protobuf_closes_1008(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    double before = h_metric(n, "chatnode_errors_total{class=\"protocol\"}");
    h_client_t *c = h_register(n, "leo");
    /* Field 10 (auth), length 16, but one byte follows: truncated. */
    static const uint8_t truncated[] = {0x52, 0x10, 0x01};
    assert_int_equal(h_ws_frame(c, true, WS_BINARY, truncated, sizeof(truncated), true), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);
    /* Wire type 7 does not exist. */
    c = h_connect(n);
    static const uint8_t bad_wire[] = {0x0f, 0x00, 0x00};
    assert_int_equal(h_ws_frame(c, true, WS_BINARY, bad_wire, sizeof(bad_wire), true), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);
    assert_true(h_metric(n, "chatnode_errors_total{class=\"protocol\"}") >= before + 2);
    h_assert_serving(n);
}

static void test_oversized_message_closes_1009(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "mike");
    /* One frame announcing a message over the limit; the payload never
     * comes, so the node must refuse on the header alone. */
    assert_int_equal(h_ws_header(c, true, WS_BINARY, CN_WS_MESSAGE_MAX + 1), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1009);

    /* Fragments that only together pass the limit. */
    c = h_connect(n);
    size_t half = CN_WS_MESSAGE_MAX / 2 + 1024;
    uint8_t *blob = calloc(1, half);
    assert_non_null(blob);
    assert_int_equal(h_ws_frame(c, false, WS_BINARY, blob, half, true), H_OK);
    free(blob);
    assert_int_equal(h_ws_header(c, true, WS_CONT, half), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1009);

    /* A message of exactly the limit is not refused for its size: it is
     * read, and (not being a ClientFrame) closes with 1008. */
    c = h_connect(n);
    blob = calloc(1, CN_WS_MESSAGE_MAX);
    assert_non_null(blob);
    memset(blob, 0xff, CN_WS_MESSAGE_MAX);
    assert_int_equal(h_ws_frame(c, true, WS_BINARY, blob, CN_WS_MESSAGE_MAX, true), H_OK);
    free(blob);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1008);
    h_assert_serving(n);
}

static void test_huge_length_headers(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    /* 2^63: the top bit of a 64-bit length must be 0 (RFC 6455 5.2). */
    h_client_t *c = h_register(n, "nina");
    assert_int_equal(h_ws_header(c, true, WS_BINARY, 1ull << 63), H_OK);
    uint16_t code = h_expect_close(c, H_WAIT_MS);
    assert_true(code == 1002 || code == 1009);
    /* 2^63 - 1: legal encoding, absurd size. */
    c = h_connect(n);
    assert_int_equal(h_ws_header(c, true, WS_BINARY, (1ull << 63) - 1), H_OK);
    code = h_expect_close(c, H_WAIT_MS);
    assert_true(code == 1002 || code == 1009);
    /* A continuation announcing 2^62 after a small first fragment. */
    c = h_connect(n);
    assert_int_equal(h_ws_frame(c, false, WS_BINARY, "x", 1, true), H_OK);
    assert_int_equal(h_ws_header(c, true, WS_CONT, 1ull << 62), H_OK);
    code = h_expect_close(c, H_WAIT_MS);
    assert_true(code == 1002 || code == 1009);
    /* Still alive, not swapping a terabyte. */
    h_assert_serving(n);
}

static void test_unmasked_frame_closes_1002(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "oscar");
    Chat__Ping p;
    Chat__ClientFrame f = ping_frame(&p);
    f.request_id = 7;
    uint8_t buf[64];
    size_t len = chat__client_frame__pack(&f, buf);
    assert_int_equal(h_ws_frame(c, true, WS_BINARY, buf, len, false), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1002);
    /* The same frame masked is fine on a new connection. */
    c = h_connect(n);
    assert_int_equal(h_ws_frame(c, true, WS_BINARY, buf, len, true), H_OK);
    Chat__Response *r = h_wait_response(c, 7, H_WAIT_MS);
    assert_non_null(r);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    h_assert_serving(n);
}

static void test_fragmented_and_ping(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "peggy");
    Chat__Ping p;
    Chat__ClientFrame f = ping_frame(&p);
    f.request_id = 99;
    p.client_time = 123456;
    uint8_t buf[64];
    size_t len = chat__client_frame__pack(&f, buf);
    assert_true(len >= 3);
    /* A ClientFrame split over three fragments with a ping in between
     * (RFC 6455 5.4: control frames may be interleaved). */
    assert_int_equal(h_ws_frame(c, false, WS_BINARY, buf, 1, true), H_OK);
    assert_int_equal(h_ws_frame(c, false, WS_CONT, buf + 1, 1, true), H_OK);
    assert_int_equal(h_ws_frame(c, true, 0x9, "pp", 2, true), H_OK);
    assert_int_equal(h_ws_frame(c, true, WS_CONT, buf + 2, len - 2, true), H_OK);
    Chat__Response *r = h_wait_response(c, 99, H_WAIT_MS);
    assert_non_null(r);
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_PONG);
    assert_int_equal(r->pong->client_time, 123456);
    assert_false(c->server_masked);
}

static void test_client_close_handshake(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "quinn");
    /* RFC 6455 5.5.1: the node echoes our close code. */
    static const uint8_t body[] = {0x03, 0xe8, 'b', 'y', 'e'}; /* 1000 */
    assert_int_equal(h_ws_frame(c, true, 0x8, body, sizeof(body), true), H_OK);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1000);
    h_assert_serving(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_register_then_auth),
        H_TEST(test_register_conflict),
        H_TEST(test_register_invalid_handle),
        H_TEST(test_auth_bad_signature),
        H_TEST(test_auth_unknown_device),
        H_TEST(test_auth_expired_challenge),
        H_TEST(test_auth_replayed_signature),
        H_TEST(test_newest_connection_wins),
        H_TEST(test_requests_before_auth),
        H_TEST(test_request_id_zero_and_empty),
        H_TEST(test_text_frame_closes_1003),
        H_TEST(test_garbage_protobuf_closes_1008),
        H_TEST(test_oversized_message_closes_1009),
        H_TEST(test_huge_length_headers),
        H_TEST(test_unmasked_frame_closes_1002),
        H_TEST(test_fragmented_and_ping),
        H_TEST(test_client_close_handshake),
    };
    return cmocka_run_group_tests_name("integration_protocol", tests, h_group_setup,
                                       h_group_teardown);
}
