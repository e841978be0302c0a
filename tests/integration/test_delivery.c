/*
 * Integration: Send, delivery, acks, idempotent retries, ephemeral typing
 * and prekeys against a real chatnode (DESIGN sections 3 and 4).
 */
#include "tests/integration/harness.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* Polls /metrics until name equals value (deadline 10 s). */
static void wait_metric_eq(h_node_t *n, const char *name, double value)
{
    uint64_t deadline = h_now_ms() + H_WAIT_MS;
    double v;
    while ((v = h_metric(n, name)) != value) {
        if (h_now_ms() > deadline)
            fail_msg("%s stayed %g, expected %g", name, v, value);
        h_sleep_ms(10);
    }
}

/* Signs out c and waits until the node has noticed. */
static void go_offline(h_node_t *n, h_client_t *c)
{
    double online = h_metric(n, "chatnode_devices_online");
    h_client_free(c);
    wait_metric_eq(n, "chatnode_devices_online", online - 1);
}

static void assert_deliver(const Chat__ServerFrame *f, uint64_t seq, const uint8_t *msg_id,
                           const h_user_t *from, const void *ct, size_t len)
{
    assert_non_null(f);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_DELIVER);
    const Chat__Deliver *d = f->deliver;
    assert_int_equal(d->seq, seq);
    assert_int_equal(d->message_id.len, CN_MESSAGE_ID_LEN);
    assert_memory_equal(d->message_id.data, msg_id, CN_MESSAGE_ID_LEN);
    assert_string_equal(d->from, from->handle);
    assert_int_equal(d->from_device.len, CN_DEVICE_ID_LEN);
    assert_memory_equal(d->from_device.data, from->id.pk, CN_DEVICE_ID_LEN);
    assert_int_equal(d->ciphertext.len, len);
    assert_memory_equal(d->ciphertext.data, ct, len);
    assert_false(d->ephemeral);
    assert_true(d->server_time > 0);
}

/* ------------------------------------------------------------- errors */

static void test_send_device_conflict(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    uint8_t stranger[CN_DEVICE_ID_LEN], id[CN_MESSAGE_ID_LEN];
    cn_random(stranger, sizeof(stranger));
    h_msg_id(id);
    static const char ct[] = "ct";

    /* Only a device bob does not have: bob's is missing, ours is stale. */
    h_env_t e1 = {.device = stranger, .ct = ct, .len = sizeof(ct)};
    Chat__Response *r = h_send(a, b->user->handle, id, CHAT__KIND__MESSAGE, &e1, 1);
    assert_int_equal(r->status, CHAT__STATUS__CONFLICT);
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_CONFLICT);
    assert_int_equal(r->conflict->n_missing_devices, 1);
    assert_int_equal(r->conflict->missing_devices[0].len, CN_DEVICE_ID_LEN);
    assert_memory_equal(r->conflict->missing_devices[0].data, b->user->id.pk, CN_DEVICE_ID_LEN);
    assert_int_equal(r->conflict->n_stale_devices, 1);
    assert_int_equal(r->conflict->stale_devices[0].len, CN_DEVICE_ID_LEN);
    assert_memory_equal(r->conflict->stale_devices[0].data, stranger, CN_DEVICE_ID_LEN);

    /* Bob's device plus an extra one: nothing missing, one stale. */
    h_env_t e2[2] = {{.device = b->user->id.pk, .ct = ct, .len = sizeof(ct)},
                     {.device = stranger, .ct = ct, .len = sizeof(ct)}};
    r = h_send(a, b->user->handle, id, CHAT__KIND__MESSAGE, e2, 2);
    assert_int_equal(r->status, CHAT__STATUS__CONFLICT);
    assert_int_equal(r->conflict->n_missing_devices, 0);
    assert_int_equal(r->conflict->n_stale_devices, 1);
    assert_memory_equal(r->conflict->stale_devices[0].data, stranger, CN_DEVICE_ID_LEN);

    /* Nothing was stored for bob by the refused sends. */
    r = h_send(a, b->user->handle, id, CHAT__KIND__MESSAGE, e2, 1);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_false(r->send_ok->duplicate);
    Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_deliver(d, 1, id, a->user, ct, sizeof(ct));
}

static void test_send_unknown_user_and_bad_fields(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    static const char ct[] = "x";
    h_env_t e = {.device = b->user->id.pk, .ct = ct, .len = sizeof(ct)};
    Chat__Response *r = h_send(a, "nobody-here", id, CHAT__KIND__MESSAGE, &e, 1);
    assert_int_equal(r->status, CHAT__STATUS__NOT_FOUND);
    r = h_send(a, "NO SUCH HANDLE", id, CHAT__KIND__MESSAGE, &e, 1);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
    /* No envelopes: refused, or answered with the device list to use. */
    r = h_send(a, b->user->handle, id, CHAT__KIND__MESSAGE, &e, 0);
    if (r->status == CHAT__STATUS__CONFLICT) {
        assert_int_equal(r->conflict->n_missing_devices, 1);
        assert_memory_equal(r->conflict->missing_devices[0].data, b->user->id.pk, CN_DEVICE_ID_LEN);
        assert_int_equal(r->conflict->n_stale_devices, 0);
    } else {
        assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
    }
    /* The same device twice. */
    h_env_t twice[2] = {e, e};
    r = h_send(a, b->user->handle, id, CHAT__KIND__MESSAGE, twice, 2);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
    /* Empty ciphertext. */
    h_env_t empty = {.device = b->user->id.pk, .ct = ct, .len = 0};
    r = h_send(a, b->user->handle, id, CHAT__KIND__MESSAGE, &empty, 1);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
    /* The connection survived every refusal. */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
}

static void test_send_ciphertext_limit(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    uint8_t *big = malloc(CN_CIPHERTEXT_MAX + 1);
    assert_non_null(big);
    h_pattern(big, CN_CIPHERTEXT_MAX + 1, 7);
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    Chat__Response *r = h_send1(a, b->user, id, big, CN_CIPHERTEXT_MAX + 1);
    assert_int_equal(r->status, CHAT__STATUS__TOO_LARGE);
    /* Exactly the limit is accepted and delivered intact. */
    r = h_send1(a, b->user, id, big, CN_CIPHERTEXT_MAX);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_deliver(d, 1, id, a->user, big, CN_CIPHERTEXT_MAX);
    free(big);
}

/* ------------------------------------------------------------ delivery */

static void test_deliver_online(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    assert_non_null(h_next_push(b, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED, H_WAIT_MS));
    for (uint64_t i = 1; i <= 3; i++) {
        uint8_t id[CN_MESSAGE_ID_LEN], ct[100];
        h_msg_id(id);
        h_pattern(ct, sizeof(ct), (uint32_t)i);
        Chat__Response *r = h_send1(a, b->user, id, ct, sizeof(ct));
        assert_int_equal(r->status, CHAT__STATUS__OK);
        assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_SEND_OK);
        assert_false(r->send_ok->duplicate);
        Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
        assert_deliver(d, i, id, a->user, ct, sizeof(ct));
        assert_int_equal(d->deliver->kind, CHAT__KIND__MESSAGE);
        assert_int_equal(d->deliver->server_time, r->send_ok->server_time);
    }
    assert_true(h_metric(n, "chatnode_messages_accepted_total") >= 3);
    /* The latency histograms saw the messages, with time on the clock
     * (the loop reads it once per socket read and per inbox wake-up); a
     * Deliver the pump sends is not timed. */
    assert_true(h_metric(n, "chatnode_send_durable_seconds_count") >= 3);
    assert_true(h_metric(n, "chatnode_send_durable_seconds_sum") > 0);
    assert_true(h_metric(n, "chatnode_send_deliver_seconds_count") >= 1); /* live ones */
    assert_true(h_metric(n, "chatnode_send_deliver_seconds_sum") > 0);
}

/* With one I/O loop every online recipient is on the sender's loop, and
 * its Deliver is written at once instead of through the loop's inbox. Two
 * senders take turns: first one Send at a time (each its own store batch,
 * each Deliver sent live), then a pipelined burst (batches that mix both
 * senders). The recipient must get every envelope exactly once, in seq
 * order, with its bytes. */
static void test_deliver_live_same_loop(void **state)
{
    (void)state;
    enum { ONE_BY_ONE = 10, TOTAL = 100 };
    const char *const flags[] = {"--threads", "1", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *senders[2] = {h_register(n, "alice"), h_register(n, "carol")};
    h_client_t *b = h_register(n, "bob");
    assert_non_null(h_next_push(b, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED, H_WAIT_MS));
    double delivered0 = h_metric(n, "chatnode_messages_delivered_total");
    uint8_t ids[TOTAL][CN_MESSAGE_ID_LEN], ct[64];
    uint64_t rids[TOTAL];
    uint64_t seq = 0;
    for (int i = 0; i < TOTAL; i++) {
        h_client_t *from = senders[i % 2];
        h_msg_id(ids[i]);
        h_pattern(ct, sizeof(ct), (uint32_t)i);
        rids[i] = h_send_nowait(from, b->user, ids[i], CHAT__KIND__MESSAGE, ct, sizeof(ct));
        if (i >= ONE_BY_ONE)
            continue;
        Chat__Response *r = h_wait_response(from, rids[i], H_WAIT_MS);
        assert_non_null(r);
        assert_int_equal(r->status, CHAT__STATUS__OK);
        Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
        assert_deliver(d, ++seq, ids[i], from->user, ct, sizeof(ct));
    }
    /* Each sender's burst is stored in its order; the two interleave. */
    int next[2] = {ONE_BY_ONE, ONE_BY_ONE + 1};
    while (seq < TOTAL) {
        Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
        assert_non_null(d);
        int k =
            memcmp(d->deliver->from_device.data, senders[1]->user->id.pk, CN_DEVICE_ID_LEN) == 0;
        int i = next[k];
        assert_true(i < TOTAL);
        h_pattern(ct, sizeof(ct), (uint32_t)i);
        assert_deliver(d, ++seq, ids[i], senders[k]->user, ct, sizeof(ct));
        next[k] += 2;
    }
    for (int i = ONE_BY_ONE; i < TOTAL; i++) {
        Chat__Response *r = h_wait_response(senders[i % 2], rids[i], H_WAIT_MS);
        assert_non_null(r);
        assert_int_equal(r->status, CHAT__STATUS__OK);
    }
    assert_null(h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, 300)); /* nothing twice */
    assert_true(h_metric(n, "chatnode_messages_delivered_total") - delivered0 == TOTAL);
}

static void test_deliver_offline_ack_redeliver(void **state)
{
    (void)state;
    enum { N = 5 };
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    go_offline(n, b);

    uint8_t ids[N][CN_MESSAGE_ID_LEN], cts[N][200];
    for (int i = 0; i < N; i++) {
        h_msg_id(ids[i]);
        h_pattern(cts[i], sizeof(cts[i]), (uint32_t)(100 + i));
        Chat__Response *r = h_send1(a, bob, ids[i], cts[i], sizeof(cts[i]));
        assert_int_equal(r->status, CHAT__STATUS__OK);
    }

    /* Twice without acking: the same entries in the same order. */
    for (int round = 0; round < 2; round++) {
        b = h_connect(n);
        Chat__Response *r = h_try_auth(b, bob);
        assert_int_equal(r->status, CHAT__STATUS__OK);
        assert_int_equal(r->auth_ok->queued, N);
        for (int i = 0; i < N; i++) {
            Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
            assert_deliver(f, (uint64_t)i + 1, ids[i], a->user, cts[i], sizeof(cts[i]));
        }
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
        assert_non_null(f);
        assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED);
        assert_int_equal(f->mailbox_drained->last_seq, N);
        if (round == 0)
            go_offline(n, b);
    }

    /* Ack the first three: only 4 and 5 come back. */
    {
        const uint64_t seqs[] = {1, 2, 3};
        Chat__Response *r = h_ack(b, seqs, 3);
        assert_int_equal(r->status, CHAT__STATUS__OK);
        assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_ACK_OK);
        assert_int_equal(r->ack_ok->deleted, 3);
        /* Acking again deletes nothing. */
        r = h_ack(b, seqs, 3);
        assert_int_equal(r->ack_ok->deleted, 0);
    }
    go_offline(n, b);
    b = h_login(n, bob);
    for (int i = 3; i < N; i++) {
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
        assert_deliver(f, (uint64_t)i + 1, ids[i], a->user, cts[i], sizeof(cts[i]));
    }
    Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED);
    Chat__Response *r = h_ack(b, (const uint64_t[]){4, 5}, 2);
    assert_int_equal(r->ack_ok->deleted, 2);
    go_offline(n, b);

    /* Everything acked: nothing is redelivered; new mail continues the seqs. */
    b = h_connect(n);
    r = h_try_auth(b, bob);
    assert_int_equal(r->auth_ok->queued, 0);
    f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED);
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    assert_int_equal(h_send1(a, bob, id, "late", 4)->status, CHAT__STATUS__OK);
    f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
    assert_deliver(f, N + 1, id, a->user, "late", 4);
    assert_true(h_metric(n, "chatnode_messages_acked_total") >= N);
}

/* An Ack with silent_ok deletes like any other, but only a failure is
 * answered: no AckOk comes, while a refused one still gets its status. */
static void test_silent_ack(void **state)
{
    (void)state;
    enum { N = 4 };
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    for (int i = 0; i < N; i++) {
        uint8_t id[CN_MESSAGE_ID_LEN];
        h_msg_id(id);
        assert_int_equal(h_send1(a, bob, id, "hi", 2)->status, CHAT__STATUS__OK);
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
        assert_non_null(f);
        assert_int_equal(f->deliver->seq, (uint64_t)i + 1);
    }

    /* Refused before it reaches the store: answered even though silent. */
    Chat__Response *r = h_wait_response(b, h_ack_silent(b, NULL, 0), H_WAIT_MS);
    assert_non_null(r);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);

    /* Carried out: no answer. An answered Ack after it went through the
     * same store writer later, so once it is answered the silent one is
     * done too. */
    uint64_t silent_rid = h_ack_silent(b, (const uint64_t[]){1, 2, 3}, 3);
    r = h_ack(b, (const uint64_t[]){3}, 1);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->ack_ok->deleted, 0); /* the silent Ack deleted 3 */
    assert_null(h_wait_response(b, silent_rid, 300));

    /* What it acked is gone: only seq 4 is delivered again. */
    go_offline(n, b);
    b = h_connect(n);
    r = h_try_auth(b, bob);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->auth_ok->queued, 1);
    Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_non_null(d);
    assert_int_equal(d->deliver->seq, 4);
    assert_true(h_metric(n, "chatnode_messages_acked_total") == 3);
}

static void test_idempotent_retry(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_user_t *alice = a->user;
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    uint8_t x[CN_MESSAGE_ID_LEN];
    h_msg_id(x);
    static const char ct[] = "exactly once";

    /* Send, then drop the connection before reading the answer. */
    h_send_nowait(a, bob, x, CHAT__KIND__MESSAGE, ct, sizeof(ct));
    assert_int_equal(shutdown(a->fd, SHUT_WR), 0);
    /* Make the retry deterministic: the first copy arrived. */
    Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_deliver(d, 1, x, alice, ct, sizeof(ct));
    uint64_t first_time = d->deliver->server_time;
    h_client_free(a);

    /* The retry on a new connection gets the first result. */
    a = h_login(n, alice);
    Chat__Response *r = h_send1(a, bob, x, ct, sizeof(ct));
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_true(r->send_ok->duplicate);
    assert_int_equal(r->send_ok->server_time, first_time);
    /* And again on the same connection. */
    r = h_send1(a, bob, x, ct, sizeof(ct));
    assert_true(r->send_ok->duplicate);
    assert_true(h_metric(n, "chatnode_messages_duplicate_total") >= 2);

    /* A marker after the retries: once it is in, the mailbox is complete. */
    uint8_t marker[CN_MESSAGE_ID_LEN];
    h_msg_id(marker);
    assert_false(h_send1(a, bob, marker, "m", 1)->send_ok->duplicate);

    /* Bob's mailbox holds exactly one copy of x. */
    go_offline(n, b);
    b = h_login(n, bob);
    int copies = 0, total = 0;
    for (;;) {
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
        assert_non_null(f);
        if (f->body_case == CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED)
            break;
        assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_DELIVER);
        total++;
        copies += memcmp(f->deliver->message_id.data, x, CN_MESSAGE_ID_LEN) == 0;
    }
    assert_int_equal(copies, 1);
    assert_int_equal(total, 2);
}

static void test_typing_is_ephemeral(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    assert_non_null(h_next_push(b, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED, H_WAIT_MS));

    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    h_env_t e = {.device = bob->id.pk, .ct = "typing...", .len = 9};
    Chat__Response *r = h_send(a, bob->handle, id, CHAT__KIND__TYPING, &e, 1);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->send_ok->delivered_online, 1);
    Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_non_null(f);
    assert_int_equal(f->deliver->kind, CHAT__KIND__TYPING);
    assert_true(f->deliver->ephemeral);
    assert_int_equal(f->deliver->seq, 0);
    assert_memory_equal(f->deliver->message_id.data, id, CN_MESSAGE_ID_LEN);
    assert_int_equal(f->deliver->ciphertext.len, 9);

    /* Offline: accepted, reaches nobody, never stored. */
    go_offline(n, b);
    h_msg_id(id);
    r = h_send(a, bob->handle, id, CHAT__KIND__TYPING, &e, 1);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->send_ok->delivered_online, 0);
    /* An ephemeral MESSAGE is treated the same way. */
    Chat__Envelope env;
    chat__envelope__init(&env);
    env.device_id.data = bob->id.pk;
    env.device_id.len = CN_DEVICE_ID_LEN;
    env.ciphertext.data = (uint8_t[]){1, 2, 3};
    env.ciphertext.len = 3;
    Chat__Envelope *envp = &env;
    Chat__Send s;
    chat__send__init(&s);
    uint8_t id2[CN_MESSAGE_ID_LEN];
    h_msg_id(id2);
    s.message_id.data = id2;
    s.message_id.len = CN_MESSAGE_ID_LEN;
    s.to = bob->handle;
    s.n_envelopes = 1;
    s.envelopes = &envp;
    s.ephemeral = true;
    Chat__ClientFrame cf;
    chat__client_frame__init(&cf);
    cf.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    cf.send = &s;
    r = h_request(a, &cf);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->send_ok->delivered_online, 0);

    b = h_connect(n);
    r = h_try_auth(b, bob);
    assert_int_equal(r->auth_ok->queued, 0);
    f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED);
    assert_int_equal(f->mailbox_drained->last_seq, 0);
}

/* ------------------------------------------------------------- prekeys */

static void test_prekeys_fetch_and_low(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *b = h_register(n, "bob");
    h_client_t *a = h_register(n, "alice");
    Chat__Response *r = h_upload_prekeys(b, 5, 1000, false);
    assert_int_equal(r->status, CHAT__STATUS__OK);

    uint32_t seen[5];
    for (int i = 0; i < 6; i++) {
        r = h_fetch_prekeys(a, b->user->handle);
        assert_int_equal(r->status, CHAT__STATUS__OK);
        assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_PREKEYS);
        assert_string_equal(r->prekeys->handle, b->user->handle);
        assert_int_equal(r->prekeys->n_bundles, 1);
        const Chat__PrekeyBundle *pb = r->prekeys->bundles[0];
        assert_memory_equal(pb->device_id.data, b->user->id.pk, CN_DEVICE_ID_LEN);
        /* The signed prekey verifies under bob's identity key. */
        assert_non_null(pb->signed_prekey);
        assert_int_equal(pb->signed_prekey->key_id, 1);
        assert_int_equal(pb->signed_prekey->public_key.len, CN_PREKEY_LEN);
        cn_buf_t t;
        cn_buf_init(&t);
        assert_int_equal(cn_transcript_prekey(&t, 1, pb->signed_prekey->public_key.data), CN_OK);
        assert_int_equal(
            cn_sig_verify(b->user->id.pk, t.data, t.len, pb->signed_prekey->signature.data), CN_OK);
        cn_buf_dispose(&t);
        if (i < 5) {
            assert_non_null(pb->one_time_prekey);
            assert_int_equal(pb->one_time_prekey->public_key.len, CN_PREKEY_LEN);
            uint32_t k = pb->one_time_prekey->key_id;
            assert_true(k >= 1000 && k < 1005);
            for (int j = 0; j < i; j++)
                assert_int_not_equal(seen[j], k);
            seen[i] = k;
        } else {
            assert_null(pb->one_time_prekey); /* signed prekey only */
        }
    }
    /* The owner was told to refill, down to zero. */
    bool zero = false;
    while (!zero) {
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY_PREKEYS_LOW, H_WAIT_MS);
        assert_non_null(f);
        assert_true(f->prekeys_low->remaining < CN_OTPK_LOW_MARK);
        zero = f->prekeys_low->remaining == 0;
    }
    /* Refill and the count shows at the next sign-in. */
    assert_int_equal(h_upload_prekeys(b, 3, 2000, false)->status, CHAT__STATUS__OK);
    h_user_t *bob = b->user;
    h_client_free(b);
    b = h_connect(n);
    r = h_try_auth(b, bob);
    assert_int_equal(r->auth_ok->prekeys_left, 3);
}

static void test_prekeys_bad_upload(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *b = h_register(n, "bob");
    h_client_t *a = h_register(n, "alice");
    Chat__Response *r = h_upload_prekeys(b, 5, 1, true);
    assert_int_equal(r->status, CHAT__STATUS__BAD_REQUEST);
    r = h_upload_prekeys(b, CN_OTPK_UPLOAD_MAX + 1, 1, false);
    assert_int_equal(r->status, CHAT__STATUS__TOO_LARGE);
    /* Nothing was stored: bob cannot be reached yet. */
    r = h_fetch_prekeys(a, b->user->handle);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->prekeys->n_bundles, 0);
    r = h_fetch_prekeys(a, "nobody-at-all");
    assert_int_equal(r->status, CHAT__STATUS__NOT_FOUND);
    assert_int_equal(h_ping(b)->status, CHAT__STATUS__OK);
}

/* ---------------------------------------------------------- durability */

static void test_mailbox_survives_restart_and_kill(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_user_t *alice = a->user;
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    go_offline(n, b);
    uint8_t id1[CN_MESSAGE_ID_LEN], id2[CN_MESSAGE_ID_LEN];
    h_msg_id(id1);
    h_msg_id(id2);
    assert_int_equal(h_send1(a, bob, id1, "one", 3)->status, CHAT__STATUS__OK);
    uint8_t node_id[CN_DEVICE_ID_LEN];
    memcpy(node_id, a->node_id, sizeof(node_id));
    h_client_free(a);
    /* A clean exit (its exit code is test_limits' business). */
    int st = h_node_stop(n, 10000);
    assert_true(st != -1 && WIFEXITED(st));

    /* A clean restart keeps users and mail. */
    h_node_restart(n);
    a = h_login(n, alice);
    /* An OK means durable: it survives SIGKILL right after the answer. */
    assert_int_equal(h_send1(a, bob, id2, "two", 3)->status, CHAT__STATUS__OK);
    h_node_kill(n);
    h_client_free(a);
    h_node_restart(n);

    b = h_login(n, bob);
    assert_deliver(h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS), 1, id1, alice,
                   "one", 3);
    assert_deliver(h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS), 2, id2, alice,
                   "two", 3);
    Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
    assert_non_null(f);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED);
    /* The node id is stable across restarts. */
    assert_memory_equal(b->node_id, node_id, CN_DEVICE_ID_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_send_device_conflict),
        H_TEST(test_send_unknown_user_and_bad_fields),
        H_TEST(test_send_ciphertext_limit),
        H_TEST(test_deliver_online),
        H_TEST(test_deliver_live_same_loop),
        H_TEST(test_deliver_offline_ack_redeliver),
        H_TEST(test_silent_ack),
        H_TEST(test_idempotent_retry),
        H_TEST(test_typing_is_ephemeral),
        H_TEST(test_prekeys_fetch_and_low),
        H_TEST(test_prekeys_bad_upload),
        H_TEST(test_mailbox_survives_restart_and_kill),
    };
    return cmocka_run_group_tests_name("integration_delivery", tests, h_group_setup,
                                       h_group_teardown);
}
