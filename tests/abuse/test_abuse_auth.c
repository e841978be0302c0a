/*
 * Abuse that needs an authenticated client (the TLS exporter channel
 * binding is out of reach of Python's ssl): a replayed auth signature, a
 * prekey drain by one requester, queue flooding of an offline device and a
 * recipient that never reads. Each runs against its own node, checks the
 * node's file descriptors and RSS (/proc/PID) and its data directory, and
 * has fresh users exchange a message while the attack's state is in force
 * (h_assert_serving: the canary).
 */
#include "tests/integration/harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A ThreadSanitizer build (the tsan preset) cannot hold RSS bounds. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define KIB 1024l
#define MIB (1024l * 1024l)

/* ---------------------------------------------------------- measuring */

static long rss_kib(const h_node_t *n)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)n->pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    assert_true(kib > 0);
    return kib;
}

/* Sockets only: RocksDB opens a table file per flushed memtable, which is
 * not what these tests look for (connections that are never closed). */
static int fd_count(const h_node_t *n)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)n->pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[64 + 256 + 2], target[64]; /* path ‖ '/' ‖ d_name */
        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        count += len > 7 && memcmp(target, "socket:", 7) == 0;
    }
    closedir(d);
    return count;
}

static long dir_bytes(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[1024];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) != 0)
            continue;
        total += S_ISDIR(st.st_mode) ? dir_bytes(sub) : (long)st.st_size;
    }
    closedir(d);
    return total;
}

/* Waits until the node holds at most max fds (connections closing). */
static int wait_fds_at_most(const h_node_t *n, int max)
{
    uint64_t deadline = h_now_ms() + 10000;
    int fds;
    while ((fds = fd_count(n)) > max && h_now_ms() < deadline)
        h_sleep_ms(20);
    assert_true(fds <= max);
    return fds;
}

static Chat__ClientFrame auth_frame(Chat__Auth *au, const h_user_t *u, uint8_t *sig)
{
    chat__auth__init(au);
    au->device_id.data = (uint8_t *)(uintptr_t)u->id.pk;
    au->device_id.len = CN_DEVICE_ID_LEN;
    au->signature.data = sig;
    au->signature.len = CN_SIGNATURE_LEN;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_AUTH;
    f.auth = au;
    return f;
}

/* ------------------------------------------------------------ replay */

/*
 * A captured Auth (valid on its own connection) replayed on many new
 * connections: each replay is refused and closed 1008; once the source IP's
 * auth-failure bucket is empty the node refuses before verifying
 * (RATE_LIMITED); when it refilled, legitimate clients are served again.
 */
static void test_replayed_signature_flood(void **state)
{
    (void)state;
    enum { BURST = 20 };
    const char *const flags[] = {"--ratelimit", "auth-failure=0.2/s:20", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a0 = h_register(n, "victim");
    h_user_t *victim = a0->user;
    h_client_free(a0);
    int fds0 = fd_count(n);
    long rss0 = rss_kib(n);

    h_client_t *a = h_connect(n);
    uint8_t sig[CN_SIGNATURE_LEN];
    h_sign_session(a, victim, CN_AUTH_CONTEXT, NULL, sig);
    Chat__Auth au;
    Chat__ClientFrame f = auth_frame(&au, victim, sig);
    assert_int_equal(h_request(a, &f)->status, CHAT__STATUS__OK);

    int refused = 0, limited = 0;
    uint32_t retry_after = 0;
    for (int i = 0; i < BURST + 5; i++) {
        h_client_t *b = h_connect(n);
        f.request_id = 0;
        Chat__Response *r = h_request(b, &f);
        if (r->status == CHAT__STATUS__UNAUTHORIZED) {
            refused++;
            assert_true(i < BURST); /* never accepted, never after the bucket emptied */
        } else {
            assert_int_equal(r->status, CHAT__STATUS__RATE_LIMITED);
            assert_true(r->retry_after_ms > 0);
            retry_after = r->retry_after_ms;
            limited++;
        }
        assert_int_equal(h_expect_close(b, H_WAIT_MS), 1008);
        h_client_free(b);
    }
    assert_int_equal(refused, BURST);
    assert_int_equal(limited, 5);
    /* The victim's own session was never disturbed. */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
    /* The canary, once the source IP's bucket refilled. */
    h_sleep_ms(retry_after + 100);
    h_assert_serving(n);
    int fds1 = wait_fds_at_most(n, fds0 + 3);
    long rss1 = rss_kib(n);
    print_message("replay: %d refused (1008), %d rate limited (retry %u ms); fds %d -> %d; "
                  "RSS %ld -> %ld KiB\n",
                  refused, limited, retry_after, fds0, fds1, rss0, rss1);
    assert_true(rss1 - rss0 < 32 * 1024);
}

/* -------------------------------------------------------- prekey drain */

/*
 * One requester fetches a victim's bundle in a loop: after the burst of
 * the prekey-fetch policy it gets RATE_LIMITED, the victim keeps the rest of
 * its one-time prekeys, and a second requester is stopped by the victim's
 * own (target) bucket.
 */
static void test_prekey_drain(void **state)
{
    (void)state;
    enum { BURST = 20, OTPKS = 100 };
    const char *const flags[] = {"--ratelimit", "prekey-fetch=0.5/s:20", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *bob = h_register(n, "bob");
    assert_int_equal(h_upload_prekeys(bob, OTPKS, 1000, false)->status, CHAT__STATUS__OK);
    h_client_t *mallory = h_register(n, "mallory");
    long rss0 = rss_kib(n);

    int ok = 0, limited = 0;
    uint32_t seen[BURST + 1];
    for (int i = 0; i < BURST + 10; i++) {
        Chat__Response *r = h_fetch_prekeys(mallory, bob->user->handle);
        if (r->status == CHAT__STATUS__OK) {
            assert_true(i < BURST);
            assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_PREKEYS);
            assert_int_equal(r->prekeys->n_bundles, 1);
            Chat__OneTimePrekey *ot = r->prekeys->bundles[0]->one_time_prekey;
            assert_non_null(ot);
            for (int k = 0; k < ok; k++)
                assert_true(seen[k] != ot->key_id); /* never the same one twice */
            seen[ok++] = ot->key_id;
        } else {
            assert_int_equal(r->status, CHAT__STATUS__RATE_LIMITED);
            assert_true(r->retry_after_ms > 0);
            limited++;
        }
    }
    assert_int_equal(ok, BURST);
    assert_int_equal(limited, 10);

    /* The target's own bucket is empty too: another requester is refused. */
    h_client_t *eve = h_register(n, "eve");
    Chat__Response *r = h_fetch_prekeys(eve, bob->user->handle);
    assert_int_equal(r->status, CHAT__STATUS__RATE_LIMITED);

    /* Bob still holds what the limit protected (AuthOk.prekeys_left). */
    h_user_t *bu = bob->user;
    h_client_free(bob);
    h_client_t *c = h_connect(n);
    r = h_try_auth(c, bu);
    assert_int_equal(r->status, CHAT__STATUS__OK);
    assert_int_equal(r->auth_ok->prekeys_left, OTPKS - BURST);
    h_assert_serving(n);
    long rss1 = rss_kib(n);
    print_message("prekey drain: %d fetched, %d rate limited, second requester limited, "
                  "%u of %d one-time prekeys left; RSS %ld -> %ld KiB\n",
                  ok, limited, r->auth_ok->prekeys_left, OTPKS, rss0, rss1);
}

/* --------------------------------------------------------- queue flood */

/*
 * A sender floods an offline device with 64 KiB envelopes: the node
 * refuses with RATE_LIMITED once the device's queue would pass
 * --max-queued-bytes, stores nothing more (disk bounded), keeps serving
 * others, and accepts again once the device drained its queue.
 */
static void test_queue_flood(void **state)
{
    (void)state;
    enum { CT = 60000 };
    const long cap = 2 * MIB;
    const char *const flags[] = {"--max-queued-bytes",
                                 "2097152",
                                 "--sync",
                                 "batch",
                                 "--ratelimit",
                                 "send=100000/s:100000",
                                 "--ratelimit",
                                 "send-bytes=1000000000/s:1000000000",
                                 NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "flooder");
    h_client_t *b = h_register(n, "offline");
    h_user_t *bob = b->user;
    h_client_free(b);
    long disk0 = dir_bytes(n->data), rss0 = rss_kib(n);

    uint8_t *ct = malloc(CT);
    assert_non_null(ct);
    long accepted = 0;
    int limited = 0, sends = 0;
    while (limited < 20) {
        uint8_t id[CN_MESSAGE_ID_LEN];
        h_msg_id(id);
        h_pattern(ct, CT, (uint32_t)sends);
        Chat__Response *r = h_send1(a, bob, id, ct, CT);
        sends++;
        if (r->status == CHAT__STATUS__OK) {
            assert_int_equal(limited, 0); /* no acceptance after the first refusal */
            accepted += CT;
        } else {
            assert_int_equal(r->status, CHAT__STATUS__RATE_LIMITED);
            assert_non_null(strstr(r->detail, "queue"));
            limited++;
        }
        assert_true(sends < 200);
        if (limited == 10)
            h_assert_serving(n); /* the canary, while the queue is full */
    }
    assert_true(accepted <= cap);
    assert_true(accepted > cap - 2 * CT);
    long disk1 = dir_bytes(n->data), rss1 = rss_kib(n);
    /* What was refused was not stored: the data dir holds the accepted
     * bytes (WAL and memtable flushes may count them twice) plus slack. */
    assert_true(disk1 - disk0 <= 3 * cap + 8 * MIB);

    /* Bob drains and acks: the sender may send again. */
    b = h_login(n, bob);
    int got = 0;
    uint64_t seqs[64];
    size_t ns = 0;
    for (;;) {
        Chat__ServerFrame *p = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
        assert_non_null(p);
        if (p->body_case == CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED)
            break;
        if (p->body_case != CHAT__SERVER_FRAME__BODY_DELIVER)
            continue;
        seqs[ns++] = p->deliver->seq;
        got++;
        if (ns == CN_ARRAY_LEN(seqs)) {
            assert_int_equal(h_ack(b, seqs, ns)->status, CHAT__STATUS__OK);
            ns = 0;
        }
    }
    if (ns)
        assert_int_equal(h_ack(b, seqs, ns)->status, CHAT__STATUS__OK);
    assert_int_equal((long)got * CT, accepted);
    h_client_free(b);
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    assert_int_equal(h_send1(a, bob, id, ct, CT)->status, CHAT__STATUS__OK);
    free(ct);
    print_message("queue flood: %ld bytes accepted (cap %ld), %d refused RATE_LIMITED of %d "
                  "sends; disk %+ld KiB; RSS %ld -> %ld KiB; %d delivered after drain\n",
                  accepted, cap, limited, sends, (disk1 - disk0) / KIB, rss0, rss1, got);
}

/* ------------------------------------------------- a recipient that never reads */

static void test_never_reading_recipient(void **state)
{
    (void)state;
    enum { CT = 60000, COUNT = 600 };
    const long hard = 1 * MIB;
    const char *const flags[] = {"--out-soft-limit",
                                 "131072",
                                 "--out-hard-limit",
                                 "1048576",
                                 "--sync",
                                 "none",
                                 "--ratelimit",
                                 "send=100000/s:100000",
                                 "--ratelimit",
                                 "send-bytes=1000000000/s:1000000000",
                                 NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "sender");
    h_client_t *b0 = h_register(n, "sleeper");
    h_user_t *bob = b0->user;
    h_client_free(b0);
    h_set_rcvbuf(4096);
    h_client_t *b = h_login(n, bob);
    h_set_rcvbuf(0);
    int fds0 = fd_count(n);
    long rss0 = rss_kib(n), peak = rss0;

    uint8_t *ct = malloc(CT);
    assert_non_null(ct);
    double drops0 = h_metric(n, "chatnode_errors_total{class=\"slow_reader\"}");
    for (int i = 0; i < COUNT; i++) {
        uint8_t id[CN_MESSAGE_ID_LEN];
        h_msg_id(id);
        h_pattern(ct, CT, (uint32_t)i);
        assert_int_equal(h_send1(a, bob, id, ct, CT)->status, CHAT__STATUS__OK);
        if (i % 50 == 0) {
            long r = rss_kib(n);
            peak = r > peak ? r : peak;
        }
    }
    free(ct);
    h_assert_serving(n);
    double drops1 = h_metric(n, "chatnode_errors_total{class=\"slow_reader\"}");
    long rss1 = rss_kib(n);
    peak = rss1 > peak ? rss1 : peak;
    int fds1 = fd_count(n);
    print_message("never-reading recipient: %d x %d bytes sent, slow_reader drops %.0f; RSS "
                  "%ld -> peak %ld KiB; fds %d -> %d\n",
                  COUNT, CT, drops1 - drops0, rss0, peak, fds0, fds1);
    /* 36 MB went to a reader that reads nothing. They are durable, so
     * RocksDB's memtable (64 MiB write buffer) holds them once anyway
     * (measured: the same growth with the recipient offline). Beyond that
     * the node may hold its output limit for the reader and some slack;
     * buffering the pushes in RAM as well would double the growth. */
    if (!UNDER_TSAN) /* its shadow memory grows with every byte the node touches */
        assert_true(peak - rss0 <= ((long)COUNT * CT + hard + 16 * MIB) / KIB);
    assert_true(fds1 <= fds0 + 2);
    h_client_free(b);
}

int main(void)
{
    /* ASan keeps up to 256 MiB of freed memory in quarantine, which would
     * swamp the RSS bounds; the nodes (children) get a small one. */
    const char *opts = getenv("ASAN_OPTIONS");
    char buf[512];
    snprintf(buf, sizeof(buf), "%s%squarantine_size_mb=8:allocator_release_to_os_interval_ms=200",
             opts ? opts : "", opts && *opts ? ":" : "");
    setenv("ASAN_OPTIONS", buf, 1);
    const struct CMUnitTest tests[] = {
        H_TEST(test_replayed_signature_flood),
        H_TEST(test_prekey_drain),
        H_TEST(test_queue_flood),
        H_TEST(test_never_reading_recipient),
    };
    return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
