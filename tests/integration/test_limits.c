/*
 * Integration: the node's limits and lifecycle (DESIGN sections 4, 8, 9):
 * slow readers, handshake/auth/idle timeouts, the metrics endpoint and a
 * graceful SIGTERM.
 */
#define _GNU_SOURCE             /* POLLRDHUP */
#include "node/node_internal.h" /* CN_CONN_PENDING_MAX, CN_LOOP_PENDING_MAX */
#include "tests/integration/harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* True when the peer closed or reset the socket (without reading it). */
static bool peer_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Reads Delivers until MailboxDrained; asserts seqs 1..count, contiguous, intact. */
static void drain_all(h_client_t *b, int count, size_t size)
{
    static uint8_t want[CN_CIPHERTEXT_MAX];
    assert_true(size <= sizeof(want));
    uint64_t expect = 1;
    for (;;) {
        Chat__ServerFrame *f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, 20000);
        if (!f)
            fail_msg("mailbox stalled after seq %llu of %d (closed=%d code=%u eof=%d)",
                     (unsigned long long)expect - 1, count, b->closed, b->close_code, b->eof);
        if (f->body_case == CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED)
            break;
        assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_DELIVER);
        assert_int_equal(f->deliver->seq, expect);
        h_pattern(want, size, (uint32_t)(expect - 1));
        assert_int_equal(f->deliver->ciphertext.len, size);
        assert_memory_equal(f->deliver->ciphertext.data, want, size);
        expect++;
    }
    assert_int_equal(expect - 1, (uint64_t)count);
}

/* The most a socket's send buffer may grow to (tcp_wmem max), or 4 MiB. */
static long kernel_send_buffer_max(void)
{
    long lo, def, max = 4l << 20;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (f) {
        if (fscanf(f, "%ld %ld %ld", &lo, &def, &max) != 3)
            max = 4l << 20;
        fclose(f);
    }
    return max;
}

static void test_slow_reader(void **state)
{
    (void)state;
    /* Small messages so that every mailbox slice is full (64 entries):
     * the pump, not the slice size, decides when to stop. Queue ~2 MiB
     * more than the kernel could buffer, so that "paused" is observable
     * as bytes the node withheld. */
    enum { SIZE = 3000 };
    const int count = (int)(((2l << 20) + kernel_send_buffer_max()) / SIZE);
    /* Thousands of sends in a burst: lift the send rate limits for this node. */
    const char *const flags[] = {"--out-soft-limit",
                                 "65536",
                                 "--out-hard-limit",
                                 "262144",
                                 "--sync",
                                 "none",
                                 "--ratelimit",
                                 "send=100000/s:100000",
                                 "--ratelimit",
                                 "send-bytes=1000000000/s:1000000000",
                                 NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    h_client_free(b);
    h_queue_messages(a, bob, count, SIZE);

    double closes0 = h_metric(n, "chatnode_errors_total{class=\"slow_reader\"}");
    double out0 = h_metric(n, "chatnode_bytes_out_total");
    /* Bob signs in, then never reads his socket again. A small receive
     * buffer keeps the kernel from absorbing the whole mailbox. */
    h_set_rcvbuf(8192);
    b = h_login(n, bob);
    h_set_rcvbuf(0);

    /* Observe: either the node drops bob, or it stops writing to him. */
    bool dropped = false, paused = false;
    double last = -1;
    int stable = 0;
    uint64_t deadline = h_now_ms() + 20000;
    while (!dropped && !paused) {
        if (h_now_ms() > deadline)
            fail_msg("the node neither dropped nor paused a reader that does not read");
        dropped = peer_gone(b->fd) ||
                  h_metric(n, "chatnode_errors_total{class=\"slow_reader\"}") > closes0;
        double out = h_metric(n, "chatnode_bytes_out_total");
        stable = out == last ? stable + 1 : 0;
        last = out;
        paused = stable >= 5;
        h_sleep_ms(100);
    }
    /* Everyone else is served meanwhile. */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
    h_assert_serving(n);
    print_message("slow reader: %s after %.0f bytes written (queued %d)\n",
                  dropped ? "dropped" : "paused", last - out0, count * SIZE);
    if (paused) {
        /* Paused means withheld: the node did not push the whole mailbox
         * into buffers (it stays on disk). Then bob reads and gets it all. */
        assert_true(last - out0 < (double)count * SIZE);
        drain_all(b, count, SIZE);
    } else {
        /* Dropped: nothing is lost; a reading bob gets everything. */
        h_client_free(b);
        b = h_login(n, bob);
        drain_all(b, count, SIZE);
    }
}

/* A client that pipelines Sends faster than the store commits them: the
 * node stops reading it at CN_CONN_PENDING_MAX requests in flight and
 * resumes as they are answered; every Send is answered once, in full. */
static void test_pipelined_sends_bounded(void **state)
{
    (void)state;
    enum { COUNT = 2000 };
    const char *const flags[] = {"--ratelimit", "send=100000/s:100000", "--ratelimit",
                                 "send-bytes=1000000000/s:1000000000", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    double pauses0 = h_metric(n, "chatnode_read_pauses_total");
    /* Corked: the node gets full 64 KiB segments of ~500 Sends each, more
     * than the limit in one read, before any of them can be committed. */
    int on = 1, off = 0;
    assert_int_equal(setsockopt(a->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)), 0);
    uint64_t first = 0;
    for (int i = 0; i < COUNT; i++) {
        uint8_t id[CN_MESSAGE_ID_LEN];
        h_msg_id(id);
        uint64_t rid = h_send_nowait(a, b->user, id, CHAT__KIND__MESSAGE, "x", 1);
        first = i == 0 ? rid : first;
    }
    assert_int_equal(setsockopt(a->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)), 0);
    for (int i = 0; i < COUNT; i++) {
        Chat__Response *r = h_wait_response(a, first + (uint64_t)i, H_WAIT_MS);
        if (!r)
            fail_msg("no answer to Send %d of %d", i, COUNT);
        assert_int_equal(r->status, CHAT__STATUS__OK);
    }
    assert_true(h_metric(n, "chatnode_read_pauses_total") > pauses0);
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
    h_assert_serving(n);
    /* All of them reached bob's mailbox. */
    h_clear_queue(b);
    int got = 0;
    Chat__ServerFrame *f;
    while ((f = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, 5000)) != NULL && got < COUNT)
        got++;
    assert_int_equal(got, COUNT);
}

/* Many clients pipelining at once, each below its own limit: the loop
 * stops reading all of them at CN_LOOP_PENDING_MAX requests in flight and
 * resumes at half; every Send is answered once, and all of them are stored.
 * One loop, and a commit per op (sync=always), so the store falls behind. */
static void test_loop_requests_bounded(void **state)
{
    (void)state;
    enum { CLIENTS = 32, EACH = 200 }; /* 6,400 > 4,096; 200 < 256 each */
    _Static_assert(CLIENTS * EACH > CN_LOOP_PENDING_MAX + CN_LOOP_PENDING_MAX / 2,
                   "enough to pass the loop's limit while the store answers some");
    _Static_assert(EACH < CN_CONN_PENDING_MAX, "below each connection's own limit");
    const char *const flags[] = {"--threads",   "1",
                                 "--sync",      "always",
                                 "--ratelimit", "send=100000/s:100000",
                                 "--ratelimit", "send-bytes=1000000000/s:1000000000",
                                 "--ratelimit", "register=1000/s:1000",
                                 NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *b = h_register(n, "bob");
    h_user_t *bob = b->user;
    h_client_free(b);
    h_client_t *a[CLIENTS];
    uint64_t first[CLIENTS];
    for (int k = 0; k < CLIENTS; k++)
        a[k] = h_register(n, "sender");
    double loop0 = h_metric(n, "chatnode_loop_read_pauses_total");
    double conn0 = h_metric(n, "chatnode_read_pauses_total");
    int on = 1, off = 0;
    for (int k = 0; k < CLIENTS; k++) {
        assert_int_equal(setsockopt(a[k]->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)), 0);
        for (int i = 0; i < EACH; i++) {
            uint8_t id[CN_MESSAGE_ID_LEN];
            h_msg_id(id);
            uint64_t rid = h_send_nowait(a[k], bob, id, CHAT__KIND__MESSAGE, "x", 1);
            first[k] = i == 0 ? rid : first[k];
        }
        assert_int_equal(setsockopt(a[k]->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)), 0);
    }
    for (int k = 0; k < CLIENTS; k++)
        for (int i = 0; i < EACH; i++) {
            Chat__Response *r = h_wait_response(a[k], first[k] + (uint64_t)i, 30000);
            if (!r)
                fail_msg("no answer to Send %d of client %d", i, k);
            assert_int_equal(r->status, CHAT__STATUS__OK);
        }
    assert_true(h_metric(n, "chatnode_loop_read_pauses_total") > loop0);
    assert_true(h_metric(n, "chatnode_read_pauses_total") == conn0);
    for (int k = 0; k < CLIENTS; k++) {
        assert_int_equal(h_ping(a[k])->status, CHAT__STATUS__OK);
        h_client_free(a[k]);
    }
    h_assert_serving(n);
    /* Every one of them is in bob's mailbox, in seq order. */
    b = h_login(n, bob);
    uint64_t expect = 1;
    Chat__ServerFrame *f;
    while ((f = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, 20000)) != NULL &&
           f->body_case == CHAT__SERVER_FRAME__BODY_DELIVER) {
        assert_int_equal(f->deliver->seq, expect);
        expect++;
    }
    assert_non_null(f);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED);
    assert_int_equal(expect - 1, (uint64_t)CLIENTS * EACH);
}

/* Quiet connections give their buffers back within two buffer sweeps
 * (CN_BUFFER_SWEEP_MS), and a connection that gave them back still works. */
static void test_quiet_connections_release_buffers(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    assert_non_null(h_next_push(b, CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED, H_WAIT_MS));
    uint8_t id[CN_MESSAGE_ID_LEN], ct[200];
    h_pattern(ct, sizeof(ct), 1);
    h_msg_id(id);
    assert_int_equal(h_send1(a, b->user, id, ct, sizeof(ct))->status, CHAT__STATUS__OK);
    assert_non_null(h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS));
    double released0 = h_metric(n, "chatnode_buffers_released_total");
    h_sleep_ms(3 * CN_BUFFER_SWEEP_MS);
    double released = h_metric(n, "chatnode_buffers_released_total") - released0;
    /* At least the sender's and the receiver's output buffers. */
    if (released < 2)
        fail_msg("%.0f buffers released by quiet connections", released);
    h_msg_id(id);
    assert_int_equal(h_send1(a, b->user, id, ct, sizeof(ct))->status, CHAT__STATUS__OK);
    Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_non_null(d);
    assert_int_equal(d->deliver->seq, 2);
    assert_memory_equal(d->deliver->ciphertext.data, ct, sizeof(ct));
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    const char *const flags[] = {"--handshake-timeout", "300", NULL};
    h_node_t *n = h_node_start(flags);
    double timeouts0 = h_metric(n, "chatnode_errors_total{class=\"timeout\"}");

    /* A TCP connection that never says anything. */
    int fd = h_tcp_connect(n->port);
    uint64_t t0 = h_now_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    char buf[16];
    ssize_t r = read(fd, buf, sizeof(buf));
    assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
    uint64_t took = h_now_ms() - t0;
    close(fd);
    assert_true(took >= 250);

    /* TLS done but no upgrade request: the same deadline applies. */
    t0 = h_now_ms();
    h_client_t *c = h_connect_tls(n);
    assert_true(h_wait_closed(c, 5000));
    assert_true(h_now_ms() - t0 >= 250);
    assert_true(h_metric(n, "chatnode_errors_total{class=\"timeout\"}") >= timeouts0 + 2);
    /* A prompt client is not affected. */
    h_assert_serving(n);
}

static void test_auth_timeout(void **state)
{
    (void)state;
    const char *const flags[] = {"--auth-timeout", "300", NULL};
    h_node_t *n = h_node_start(flags);
    uint64_t t0 = h_now_ms();
    h_client_t *c = h_connect(n);
    assert_int_equal(h_expect_close(c, 5000), 1008);
    assert_true(h_now_ms() - t0 >= 250);
    h_assert_serving(n);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    /* --auth-timeout below --idle-timeout: see test_first_ping_after_auth. */
    const char *const flags[] = {
        "--idle-timeout", "600", "--ping-interval", "100", "--auth-timeout", "500", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *live = h_register(n, "live");
    h_client_t *mute = h_register(n, "mute");
    mute->no_pong = true;
    /* The live client answers the node's pings while the mute one does not
     * read at all; watch until the node drops the mute one. */
    uint64_t deadline = h_now_ms() + 10000;
    while (!peer_gone(mute->fd)) {
        assert_true(h_now_ms() < deadline);
        Chat__ServerFrame *f;
        int rc = h_recv(live, 50, &f);
        if (rc != H_OK && rc != H_TIMEOUT) {
            h_node_dump_log(n);
            fail_msg("live client: rc %d closed=%d code=%u eof=%d pings=%u", rc, live->closed,
                     live->close_code, live->eof, live->pings);
        }
    }
    /* The mute client finds the 1001 close after the unanswered pings. */
    assert_int_equal(h_expect_close(mute, H_WAIT_MS), 1001);
    /* The live one is still signed in: pongs count as activity. */
    assert_int_equal(h_ping(live)->status, CHAT__STATUS__OK);
}

/*
 * A signed-in client that answers every ping must never hit the idle
 * timeout, whatever --auth-timeout is: the node has to ping it first.
 */
static void test_first_ping_after_auth(void **state)
{
    (void)state;
    const char *const flags[] = {"--idle-timeout", "3000", "--ping-interval", "100", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *live = h_register(n, "live");
    uint64_t t_auth = h_now_ms();
    /* The first ping is due one ping interval after the last frame. */
    uint64_t deadline = t_auth + 5000;
    while (live->pings == 0) {
        Chat__ServerFrame *f;
        int rc = h_recv(live, 50, &f);
        if (rc != H_OK && rc != H_TIMEOUT)
            fail_msg("an idle client was dropped without a ping: code %u after %llu ms",
                     live->close_code, (unsigned long long)(h_now_ms() - t_auth));
        assert_true(h_now_ms() < deadline);
    }
    uint64_t first = h_now_ms() - t_auth;
    if (first > 1000)
        fail_msg("first ping %llu ms after auth; --ping-interval is 100 ms",
                 (unsigned long long)first);
    assert_int_equal(h_ping(live)->status, CHAT__STATUS__OK);
}

static void test_metrics_endpoint(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    char *body;
    assert_int_equal(h_http_get(n->metrics, "/healthz", &body), 200);
    assert_non_null(strstr(body, "ok"));
    free(body);
    assert_int_equal(h_http_get(n->metrics, "/readyz", &body), 200);
    free(body);
    assert_int_equal(h_http_get(n->metrics, "/no-such-path", &body), 404);
    free(body);
    assert_int_equal(h_http_get(n->metrics, "/metrics", &body), 200);
    assert_non_null(strstr(body, "# TYPE chatnode_messages_accepted_total counter"));
    free(body);

    double accepted0 = h_metric(n, "chatnode_messages_accepted_total");
    h_client_t *a = h_register(n, "alice");
    h_client_t *b = h_register(n, "bob");
    for (int i = 0; i < 3; i++) {
        uint8_t id[CN_MESSAGE_ID_LEN];
        h_msg_id(id);
        assert_int_equal(h_send1(a, b->user, id, "m", 1)->status, CHAT__STATUS__OK);
    }
    /* Counted before the answer, so it shows at once. */
    assert_true(h_metric(n, "chatnode_messages_accepted_total") == accepted0 + 3);
    assert_true(h_metric(n, "chatnode_connections_open") >= 2);
    assert_true(h_metric(n, "chatnode_devices_online") == 2);
    assert_true(h_metric(n, "chatnode_registrations_total") >= 2);
    assert_true(h_metric(n, "chatnode_bytes_in_total") > 0);
}

static void test_sigterm_going_away(void **state)
{
    (void)state;
    h_node_t *n = h_node_start(NULL);
    h_client_t *c = h_register(n, "alice");
    h_client_t *pending = h_connect(n); /* not signed in yet */
    assert_int_equal(kill(n->pid, SIGTERM), 0);
    Chat__ServerFrame *f = h_next_push(c, CHAT__SERVER_FRAME__BODY_GOING_AWAY, H_WAIT_MS);
    assert_non_null(f);
    assert_non_null(f->going_away->reason);
    assert_int_equal(h_expect_close(c, H_WAIT_MS), 1001);
    assert_int_equal(h_expect_close(pending, H_WAIT_MS), 1001);
    int st = h_node_wait(n, 15000);
    if (st == -1)
        fail_msg("chatnode did not exit within 15 s of SIGTERM");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        h_node_dump_log(n);
        fail_msg("chatnode exit status 0x%x after SIGTERM, expected exit 0", (unsigned)st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_slow_reader),           H_TEST(test_pipelined_sends_bounded),
        H_TEST(test_loop_requests_bounded), H_TEST(test_quiet_connections_release_buffers),
        H_TEST(test_handshake_timeout),     H_TEST(test_auth_timeout),
        H_TEST(test_idle_timeout),          H_TEST(test_first_ping_after_auth),
        H_TEST(test_metrics_endpoint),      H_TEST(test_sigterm_going_away),
    };
    return cmocka_run_group_tests_name("integration_limits", tests, h_group_setup,
                                       h_group_teardown);
}
