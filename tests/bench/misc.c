/*
 * connect: open-loop full handshakes (TCP, TLS 1.3, upgrade, Challenge,
 * Auth, AuthOk) against pre-registered devices, each connection reset as
 * soon as it is signed in.
 * idle: N authenticated connections held open while the parent reads the
 * node's VmRSS (before: devices registered, no connection; after: all N up).
 * drain: M messages queued for an offline device, then the time for the
 * device to receive them all on reconnect.
 */
#include "tests/bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const RELAY_EXTRA[] = {"offered_per_s", NULL};
/* members: the group's devices (sender included); receivers: members - 1;
 * send_ok: intended time -> the group Send's OK (the whole fan-out durable). */
static const char *const FANOUT_EXTRA[] = {
    "complete_rounds", "members_max", "receivers_max", "pairwise_max", "send_ok_p50_ms",
    "send_ok_p99_ms",  NULL};
static const char *const CONNECT_EXTRA[] = {"offered_per_s", "inflight_max", NULL};
static const char *const IDLE_EXTRA[] = {"rss_before_kib", "rss_after_kib", "rss_per_conn_bytes",
                                         "connections", NULL};
static const char *const DRAIN_EXTRA[] = {"enqueue_per_s", "drain_per_s", "auth_ms", NULL};

const char *const *bench_extra_names(enum bench_scenario s)
{
    switch (s) {
    case BENCH_RELAY:
    case BENCH_PEER_MQTT:
        return RELAY_EXTRA;
    case BENCH_FANOUT:
        return FANOUT_EXTRA;
    case BENCH_CONNECT:
        return CONNECT_EXTRA;
    case BENCH_IDLE:
        return IDLE_EXTRA;
    case BENCH_DRAIN:
        return DRAIN_EXTRA;
    }
    return NULL;
}

/* -------------------------------------------------------------- connect */

typedef struct attempt {
    bench_user_t *u;
    uint64_t t; /* intended start */
    uint64_t rid;
    bool done;
} attempt_t;

static struct {
    bench_user_t *u;
    unsigned nusers;
    uint64_t t0, period_ns, next, total, inflight, closed_all, last_ok;
    bool sending, finished;
} C;

static void c_check(void)
{
    if (!C.sending && C.inflight == 0)
        C.finished = true;
}

static void c_ready(bench_conn_t *c)
{
    attempt_t *a = c->ud;
    a->rid = bench_send_auth(c, a->u, BENCH_AUTH);
}

static void c_frame(bench_conn_t *c, const bench_frame_t *f)
{
    attempt_t *a = c->ud;
    if (a->done || f->type != CHAT__SERVER_FRAME__BODY_RESPONSE || f->request_id != a->rid)
        return;
    a->done = true;
    if (f->status == CHAT__STATUS__OK) {
        g_bench.r.sent_ok++;
        g_bench.r.delivered++;
        uint64_t now = bench_now_ns();
        C.last_ok = now;
        if (a->t >= C.t0 + (uint64_t)(g_bench.o.warmup * 1e9))
            bench_hist_add(&g_bench.r.hist, now - a->t);
        bench_hist_add(&g_bench.r.hist2, now - c->t_start);
    } else {
        g_bench.r.errors++;
    }
    bench_conn_close(c, true);
}

static void c_close(bench_conn_t *c, int err)
{
    (void)err;
    attempt_t *a = c->ud;
    if (!a->done)
        g_bench.r.errors++;
    free(a);
    C.inflight--;
    c_check();
}

static const bench_conn_cbs_t connect_cbs = {
    .on_ready = c_ready, .on_frame = c_frame, .on_close = c_close};

static void c_tick(void)
{
    uint64_t now = bench_now_ns();
    while (C.sending && C.next < C.total && C.t0 + C.next * C.period_ns <= now) {
        uint64_t i = C.next++;
        attempt_t *a = calloc(1, sizeof(*a));
        if (!a) {
            g_bench.fatal = "out of memory";
            return;
        }
        a->u = &C.u[i % C.nusers];
        a->t = C.t0 + i * C.period_ns;
        if (now - a->t > 1000000)
            g_bench.r.late_ticks++;
        g_bench.r.sent++;
        C.inflight++;
        g_bench.r.extra[1] = CN_MAX(g_bench.r.extra[1], (double)C.inflight);
        /* The handshake starts now; latency counts from a->t all the same. */
        if (!bench_conn_new(&connect_cbs, a, (unsigned)(i + g_bench.proc), false))
            continue; /* c_close counted it */
    }
    if (C.sending && C.next >= C.total) {
        C.sending = false;
        g_bench.r.send_s = (double)(now - C.t0) / 1e9;
        c_check();
    }
}

int bench_connect(void)
{
    double rate = g_bench.o.rate / CN_MAX(g_bench.nprocs, 1u);
    C.total = (uint64_t)(rate * g_bench.o.duration);
    C.nusers = (unsigned)CN_MIN(CN_MAX(rate, 256.0), 4000.0);
    C.u = calloc(C.nusers, sizeof(*C.u));
    if (!C.u || C.total == 0) {
        g_bench.fatal = C.u ? "nothing to do" : "out of memory";
        return -1;
    }
    bench_users_make(C.u, C.nusers, "c");
    if (bench_users_open(C.u, C.nusers, BENCH_REGISTER, true, NULL) > 0) {
        g_bench.fatal = "some users could not register";
        return -1;
    }
    static bool never;
    bench_run_until(&never, bench_now_ns() + 200000000); /* the closes settle */
    bench_barrier(1);
    C.period_ns = (uint64_t)(1e9 / rate);
    C.t0 = bench_now_ns() + 20000000 + C.period_ns * g_bench.proc / CN_MAX(g_bench.nprocs, 1u);
    C.sending = true;
    bench_tick_start(g_bench.o.tick_us, c_tick);
    while (C.sending && !g_bench.fatal)
        bench_run_until(&never, bench_now_ns() + 100000000);
    bench_run_until(&C.finished, bench_now_ns() + (uint64_t)(g_bench.o.drain_timeout * 1e9));
    bench_tick_stop();
    /* Handshakes per second over the time until the last one completed, not
     * until the last one was started: when the node (or the generator)
     * falls behind, the handshakes finish long after the schedule ends. */
    uint64_t end = C.last_ok > C.t0 ? C.last_ok : bench_now_ns();
    g_bench.r.elapsed_s = (double)(end - C.t0) / 1e9;
    if (g_bench.r.send_s > 0)
        g_bench.r.extra[0] = (double)g_bench.r.sent / g_bench.r.send_s;
    return g_bench.fatal ? -1 : 0;
}

/* ----------------------------------------------------------------- idle */

static bool g_all_closed;

static void wait_closed(void)
{
    while (bench_conn_count() > 0 && !g_bench.fatal) {
        g_all_closed = false;
        bench_run_until(&g_all_closed, bench_now_ns() + 50000000);
    }
}

int bench_idle(void)
{
    unsigned n = bench_share(g_bench.o.connections);
    bench_user_t *u = calloc(n ? n : 1, sizeof(*u));
    if (!u) {
        g_bench.fatal = "out of memory";
        return -1;
    }
    bench_users_make(u, n, "i");
    unsigned failed = bench_users_open(u, n, BENCH_REGISTER, true, NULL);
    wait_closed();
    bench_barrier(1); /* parent: VmRSS with every device registered, none connected */
    uint64_t t0 = bench_now_ns();
    failed += bench_users_open(u, n, BENCH_AUTH, false, NULL);
    g_bench.r.elapsed_s = (double)(bench_now_ns() - t0) / 1e9;
    g_bench.r.sent = n;
    g_bench.r.errors = failed;
    for (unsigned i = 0; i < n; i++)
        g_bench.r.sent_ok += u[i].authed && u[i].conn;
    g_bench.r.extra[3] = (double)g_bench.r.sent_ok;
    bench_barrier(2); /* parent: VmRSS with all of them up and idle */
    for (unsigned i = 0; i < n; i++)
        if (u[i].conn)
            bench_conn_close(u[i].conn, false);
    wait_closed();
    free(u);
    return g_bench.fatal ? -1 : 0;
}

/* ---------------------------------------------------------------- drain */

#define DRAIN_WINDOW 1024

static struct {
    bench_user_t u[2]; /* sender, receiver */
    uint8_t *seen, *ct;
    uint64_t next, inflight, t_start, t_auth, t_last;
    uint64_t acks[CN_ACK_SEQS_MAX];
    unsigned nacks;
    bool enqueued, drained;
} D;

static void d_fill(void)
{
    bench_user_t *s = &D.u[0], *r = &D.u[1];
    while (s->conn && D.inflight < DRAIN_WINDOW && D.next < g_bench.o.queued) {
        uint64_t m = D.next++;
        uint8_t mid[CN_MESSAGE_ID_LEN];
        bench_message_id(mid);
        bench_payload_fill(D.ct, g_bench.o.size, bench_now_ns(), m, 0);
        (void)bench_send_message(s->conn, mid, r->handle, r->pk, D.ct, g_bench.o.size);
        D.inflight++;
        g_bench.r.sent++;
    }
}

static void d_frame(bench_user_t *u, const bench_frame_t *f)
{
    bench_result_t *res = &g_bench.r;
    if (u == &D.u[0]) {
        if (f->type != CHAT__SERVER_FRAME__BODY_RESPONSE)
            return;
        D.inflight--;
        if (f->status == CHAT__STATUS__OK)
            res->sent_ok++;
        else
            res->errors++;
        d_fill();
        if (res->sent_ok + res->errors >= g_bench.o.queued)
            D.enqueued = true;
        return;
    }
    if (f->type == CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED) {
        D.drained = true;
        return;
    }
    if (f->type != CHAT__SERVER_FRAME__BODY_DELIVER)
        return;
    uint64_t now = bench_now_ns(), t, m;
    uint32_t tag;
    D.acks[D.nacks++] = f->seq;
    if (D.nacks >= g_bench.o.ack_batch) {
        bench_send_ack(u->conn, D.acks, D.nacks);
        D.nacks = 0;
    }
    if (!bench_payload_read(f->ciphertext.base, f->ciphertext.len, &t, &m, &tag) ||
        m >= g_bench.o.queued) {
        res->errors++;
        return;
    }
    if (D.seen[m / 8] & (1u << (m % 8))) {
        res->duplicates++;
        return;
    }
    D.seen[m / 8] |= (uint8_t)(1u << (m % 8));
    res->delivered++;
    D.t_last = now;
    bench_hist_add(&res->hist, now - D.t_start); /* time since the reconnect began */
    if (res->delivered == res->sent_ok)
        D.drained = true;
}

int bench_drain(void)
{
    if (g_bench.nprocs > 1) {
        g_bench.fatal = "drain is one device: run it with --procs 1";
        return -1;
    }
    uint64_t m = g_bench.o.queued;
    D.seen = calloc(m / 8 + 1, 1);
    D.ct = malloc(g_bench.o.size);
    if (!D.seen || !D.ct || m == 0) {
        g_bench.fatal = "drain needs --queued";
        return -1;
    }
    bench_users_make(D.u, 2, "d");
    if (bench_users_open(&D.u[1], 1, BENCH_REGISTER, true, NULL) ||
        bench_users_open(&D.u[0], 1, BENCH_REGISTER, false, d_frame)) {
        g_bench.fatal = "register failed";
        return -1;
    }
    uint64_t t0 = bench_now_ns();
    d_fill();
    bench_run_until(&D.enqueued, t0 + 600ull * 1000000000ull);
    double enq_s = (double)(bench_now_ns() - t0) / 1e9;
    g_bench.r.extra[0] = enq_s > 0 ? (double)g_bench.r.sent_ok / enq_s : 0;
    g_bench.r.send_s = enq_s;
    bench_barrier(1); /* parent: node CPU from here on is the drain's */
    D.drained = false;
    D.t_start = bench_now_ns();
    if (bench_users_open(&D.u[1], 1, BENCH_AUTH, false, d_frame)) {
        g_bench.fatal = "auth failed";
        return -1;
    }
    D.t_auth = bench_now_ns();
    while (g_bench.r.delivered < g_bench.r.sent_ok && !g_bench.fatal) {
        D.drained = false;
        bench_run_until(&D.drained, bench_now_ns() + (uint64_t)(g_bench.o.drain_timeout * 1e9));
        if (!D.drained)
            break; /* timed out */
    }
    if (D.nacks && D.u[1].conn)
        bench_send_ack(D.u[1].conn, D.acks, D.nacks);
    bench_flush_all();
    uint64_t end = D.t_last > D.t_start ? D.t_last : bench_now_ns();
    g_bench.r.elapsed_s = (double)(end - D.t_start) / 1e9;
    g_bench.r.extra[1] =
        g_bench.r.elapsed_s > 0 ? (double)g_bench.r.delivered / g_bench.r.elapsed_s : 0;
    g_bench.r.extra[2] = (double)(D.t_auth - D.t_start) / 1e6;
    return g_bench.fatal ? -1 : 0;
}
