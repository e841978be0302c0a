/*
 * Storage faults (issue 6): the node must never acknowledge what it could
 * not persist, must keep serving reads, and must recover once the fault
 * clears.
 *
 * - disk full: the data directory lives on a small tmpfs (mount needs
 *   root; the test is skipped with the reason otherwise), which a filler
 *   file fills up while a sender keeps sending;
 * - fsync failure: the node runs under libfiu's POSIX preload (fiu-run -x)
 *   and fsync/fdatasync are made to fail with fiu-ctrl while it runs.
 *
 * Every Send the node answered OK is checked afterwards: the recipient
 * receives each acknowledged message id exactly once (also after a
 * restart). What it does instead of OK during the fault is printed: the
 * contract is UNAVAILABLE (docs/PROTOCOL.md).
 */
#include "tests/integration/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB      (1024l * 1024l)
#define CT       30000
#define MAX_MSGS 2000

typedef struct sent {
    uint8_t id[CN_MESSAGE_ID_LEN];
    bool acked;
} sent_t;

static sent_t g_sent[MAX_MSGS];
static size_t g_nsent;

static const char *status_name(Chat__Status s)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&chat__status__descriptor, s);
    return v ? v->name : "?";
}

/* One Send of a fresh (or retried, when retry is set) message id. */
static Chat__Response *send_one(h_client_t *a, const h_user_t *bob, size_t i)
{
    static uint8_t ct[CT];
    h_pattern(ct, sizeof(ct), (uint32_t)i);
    Chat__Response *r = h_send1(a, bob, g_sent[i].id, ct, sizeof(ct));
    if (r->status == CHAT__STATUS__OK)
        g_sent[i].acked = true;
    return r;
}

static size_t new_message(void)
{
    assert_true(g_nsent < MAX_MSGS);
    h_msg_id(g_sent[g_nsent].id);
    g_sent[g_nsent].acked = false;
    return g_nsent++;
}

/*
 * Signs bob in and drains his mailbox (acking everything). Every acked
 * message must arrive exactly once; others at most once. Returns how many
 * arrived.
 */
static size_t drain_and_check(h_node_t *n, h_user_t *bob, bool ack)
{
    h_client_t *b = h_login(n, bob);
    unsigned seen[MAX_MSGS] = {0};
    size_t got = 0;
    uint64_t seqs[256];
    size_t ns = 0;
    for (;;) {
        Chat__ServerFrame *p = h_next_push(b, CHAT__SERVER_FRAME__BODY__NOT_SET, H_WAIT_MS);
        assert_non_null(p);
        if (p->body_case == CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED)
            break;
        if (p->body_case != CHAT__SERVER_FRAME__BODY_DELIVER)
            continue;
        size_t k = 0;
        while (k < g_nsent &&
               memcmp(g_sent[k].id, p->deliver->message_id.data, CN_MESSAGE_ID_LEN) != 0)
            k++;
        assert_true(k < g_nsent); /* only messages we sent */
        seen[k]++;
        got++;
        seqs[ns++] = p->deliver->seq;
        if (ack && ns == CN_ARRAY_LEN(seqs)) {
            assert_int_equal(h_ack(b, seqs, ns)->status, CHAT__STATUS__OK);
            ns = 0;
        }
    }
    if (ack && ns)
        assert_int_equal(h_ack(b, seqs, ns)->status, CHAT__STATUS__OK);
    for (size_t k = 0; k < g_nsent; k++) {
        if (g_sent[k].acked && seen[k] != 1)
            fail_msg("acked message %zu delivered %u times", k, seen[k]);
        assert_true(seen[k] <= 1); /* the dedupe table holds for retries too */
    }
    h_client_free(b);
    return got;
}

static int readyz(h_node_t *n)
{
    char *body = NULL;
    int st = h_http_get(n->metrics, "/readyz", &body);
    free(body);
    return st;
}

/* ------------------------------------------------------------ disk full */

static char g_mnt[64];

static int unmount_teardown(void **state)
{
    int rc = h_teardown(state);
    if (g_mnt[0]) {
        (void)umount2(g_mnt, MNT_DETACH);
        (void)rmdir(g_mnt);
        g_mnt[0] = '\0';
    }
    return rc;
}

static long free_bytes(const char *path)
{
    struct statvfs sv;
    assert_int_equal(statvfs(path, &sv), 0);
    return (long)sv.f_bavail * (long)sv.f_frsize;
}

/* Writes a filler file leaving about keep bytes free. */
static void fill(const char *path, long keep)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    assert_true(fd >= 0);
    static char block[64 * 1024];
    while (free_bytes(g_mnt) > keep) {
        long want = free_bytes(g_mnt) - keep;
        ssize_t w =
            write(fd, block, (size_t)(want < (long)sizeof(block) ? want : (long)sizeof(block)));
        if (w <= 0)
            break;
    }
    close(fd);
}

static void test_disk_full(void **state)
{
    (void)state;
    g_nsent = 0;
    snprintf(g_mnt, sizeof(g_mnt), "/tmp/cn-diskfull-XXXXXX");
    assert_non_null(mkdtemp(g_mnt));
    if (mount("tmpfs", g_mnt, "tmpfs", 0, "size=48m,mode=0700") != 0) {
        int e = errno;
        rmdir(g_mnt);
        g_mnt[0] = '\0';
        /* Not root, or no CAP_SYS_ADMIN in this container. */
        print_message("SKIP: cannot mount a tmpfs (%s): disk-full test not run\n", strerror(e));
        skip();
    }
    char data[128], filler[128], reserve[128];
    snprintf(data, sizeof(data), "%s/data", g_mnt);
    snprintf(filler, sizeof(filler), "%s/filler", g_mnt);
    snprintf(reserve, sizeof(reserve), "%s/reserve", g_mnt);
    const char *const flags[] = {"--data", data, "--sync", "always", NULL};
    h_node_t *n = h_node_start(flags);
    h_client_t *a = h_register(n, "writer");
    h_client_t *b0 = h_register(n, "reader");
    h_user_t *bob = b0->user;
    h_client_free(b0);

    /* Some messages while there is room. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(send_one(a, bob, new_message())->status, CHAT__STATUS__OK);

    /* Leave ~2 MiB (after a 1 MiB reserve), then keep sending until the
     * node refuses. */
    fill(reserve, free_bytes(g_mnt) - MIB);
    fill(filler, 2 * MIB);
    Chat__Status refusal = CHAT__STATUS__OK;
    int oks = 0, refused = 0;
    size_t first_refused = 0;
    for (int i = 0; i < 400 && refused < 10; i++) {
        size_t k = new_message();
        Chat__Response *r = send_one(a, bob, k);
        if (r->status == CHAT__STATUS__OK) {
            oks++;
            continue;
        }
        if (refused++ == 0) {
            refusal = r->status;
            first_refused = k;
            print_message("disk full: first refusal after %d more OKs: %s \"%s\" (free %ld)\n", oks,
                          status_name(r->status), r->detail, free_bytes(g_mnt));
        }
        assert_int_equal(r->status, CHAT__STATUS__UNAVAILABLE);
    }
    assert_true(refused > 0); /* the disk did fill up */
    assert_int_equal(refusal, CHAT__STATUS__UNAVAILABLE);
    print_message("disk full: /readyz %d while full\n", readyz(n));

    /* Reads are still served: pings, and the recipient signs in and gets
     * every acknowledged message (without acking: acks write). */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
    size_t got = drain_and_check(n, bob, false);
    print_message("disk full: reads served, %zu queued messages delivered\n", got);

    /* A little space comes back: enough for a small write, not for the
     * store to reopen (it replays and flushes its WAL, and keeps a margin
     * of 8 MiB). The node must not try: it keeps serving reads and keeps
     * saying it is not ready, rather than closing its database for a
     * reopen that cannot work. */
    assert_int_equal(unlink(reserve), 0);
    print_message("disk full: 1 MiB back (free %ld)\n", free_bytes(g_mnt));
    h_sleep_ms(2500); /* two reopen intervals */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
    assert_int_equal(send_one(a, bob, first_refused)->status, CHAT__STATUS__UNAVAILABLE);
    assert_int_equal(readyz(n), 503);

    /* Space comes back: the sender's retry (same message id) should go
     * through; if the store stays read-only, /readyz must say 503. */
    assert_int_equal(unlink(filler), 0);
    uint64_t deadline = h_now_ms() + 15000;
    Chat__Response *r;
    bool stuck = false;
    int ready_stuck = 0;
    while ((r = send_one(a, bob, first_refused))->status != CHAT__STATUS__OK) {
        if (h_now_ms() > deadline) {
            stuck = true;
            ready_stuck = readyz(n);
            print_message("disk full: no recovery 15 s after space was freed: %s \"%s\"; "
                          "/readyz %d\n",
                          status_name(r->status), r->detail, ready_stuck);
            break;
        }
        h_sleep_ms(200);
    }
    if (!stuck) {
        for (int i = 0; i < 10; i++)
            assert_int_equal(send_one(a, bob, new_message())->status, CHAT__STATUS__OK);
        print_message("disk full: recovered; /readyz %d\n", readyz(n));
    }
    /* After a restart nothing acknowledged is lost or doubled, and writes work. */
    h_client_free(a);
    int st = h_node_stop(n, 20000);
    print_message("disk full: node exit status %d\n", st);
    h_node_restart(n);
    drain_and_check(n, bob, true);
    h_assert_serving(n);
    if (stuck)
        assert_int_equal(ready_stuck, 503);
}

/* -------------------------------------------------------- fsync failure */

static char g_wrapper[128];

static int fiu_teardown(void **state)
{
    int rc = h_teardown(state);
    if (g_wrapper[0]) {
        unlink(g_wrapper);
        g_wrapper[0] = '\0';
    }
    return rc;
}

static int fiu_ctrl(const h_node_t *n, const char *cmd)
{
    char line[512];
    snprintf(line, sizeof(line), "fiu-ctrl -f /tmp/cn-fiu-ctrl -c '%s' %d", cmd, (int)n->pid);
    int st = system(line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_fsync_failure(void **state)
{
    (void)state;
    g_nsent = 0;
    if (access("/usr/bin/fiu-run", X_OK) != 0 || access("/usr/lib/fiu/fiu_posix_preload.so", R_OK))
        fail_msg("libfiu is missing (Debian fiu-utils, libfiu0: scripts/install-deps.sh)");
    const char *real = getenv("CHATNODE_BIN");
    assert_non_null(real);
    char *real_copy = strdup(real);
    snprintf(g_wrapper, sizeof(g_wrapper), "/tmp/cn-fiu-XXXXXX");
    int fd = mkstemp(g_wrapper);
    assert_true(fd >= 0);
    /* ASan wants to be first in the library list; libfiu's preload comes
     * first here, which works once the check is off. */
    dprintf(fd,
            "#!/bin/sh\nASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0\" "
            "exec fiu-run -x -f /tmp/cn-fiu-ctrl '%s' \"$@\"\n",
            real_copy);
    close(fd);
    assert_int_equal(chmod(g_wrapper, 0700), 0);
    setenv("CHATNODE_BIN", g_wrapper, 1);
    const char *const flags[] = {"--sync", "always", NULL};
    h_node_t *n = h_node_start(flags);
    setenv("CHATNODE_BIN", real_copy, 1);
    free(real_copy);

    h_client_t *a = h_register(n, "writer");
    h_client_t *b0 = h_register(n, "reader");
    h_user_t *bob = b0->user;
    h_client_free(b0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(send_one(a, bob, new_message())->status, CHAT__STATUS__OK);

    /* fsync and fdatasync now fail (EIO). */
    assert_int_equal(fiu_ctrl(n, "enable name=posix/io/sync/*"), 0);
    int oks = 0, refused = 0;
    size_t first_refused = 0;
    Chat__Status refusal = CHAT__STATUS__OK;
    for (int i = 0; i < 10; i++) {
        size_t k = new_message();
        Chat__Response *r = send_one(a, bob, k);
        if (r->status == CHAT__STATUS__OK) {
            oks++;
            continue;
        }
        if (refused++ == 0) {
            refusal = r->status;
            first_refused = k;
            print_message("fsync failure: first answer %s \"%s\"\n", status_name(r->status),
                          r->detail);
        }
    }
    print_message("fsync failure: %d OK (must be 0), %d refused; /readyz %d\n", oks, refused,
                  readyz(n));
    assert_int_equal(oks, 0); /* nothing acknowledged that was not synced */
    assert_int_equal(refusal, CHAT__STATUS__UNAVAILABLE);
    /* Reads still served. */
    assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK);
    h_client_t *c = h_connect(n);
    h_client_free(c);

    /* The fault clears: a retry of the same message id should get through.
     * If RocksDB stays read-only after the failed sync (a background error),
     * the node must at least say so on /readyz (503) so that it is
     * restarted or taken out of rotation. */
    assert_int_equal(fiu_ctrl(n, "disable name=posix/io/sync/*"), 0);
    uint64_t deadline = h_now_ms() + 15000;
    Chat__Response *r;
    bool stuck = false;
    int ready_stuck = 0;
    while ((r = send_one(a, bob, first_refused))->status != CHAT__STATUS__OK) {
        if (h_now_ms() > deadline) {
            stuck = true;
            ready_stuck = readyz(n);
            print_message("fsync failure: no recovery 15 s after the fault cleared: %s \"%s\"; "
                          "/readyz %d\n",
                          status_name(r->status), r->detail, ready_stuck);
            break;
        }
        h_sleep_ms(200);
    }
    if (!stuck) {
        print_message("fsync failure: recovered; /readyz %d\n", readyz(n));
        for (int i = 0; i < 5; i++)
            assert_int_equal(send_one(a, bob, new_message())->status, CHAT__STATUS__OK);
    } else {
        assert_int_equal(h_ping(a)->status, CHAT__STATUS__OK); /* reads still served */
    }
    drain_and_check(n, bob, false);
    /* Restart (without the fault): nothing acknowledged is lost or doubled,
     * and writes work again. */
    h_client_free(a);
    int st = h_node_stop(n, 20000);
    print_message("fsync failure: node exit status %d after the fault\n", st);
    h_node_restart(n);
    drain_and_check(n, bob, true);
    h_assert_serving(n);
    if (stuck)
        assert_int_equal(ready_stuck, 503); /* see the comment above */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_disk_full, unmount_teardown),
        cmocka_unit_test_teardown(test_fsync_failure, fiu_teardown),
    };
    return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
