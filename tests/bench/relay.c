/*
 * relay: N sender -> receiver pairs under a fixed global rate. Message m is
 * due at t0 + m / rate and goes out on pair m % N; its payload carries that
 * intended time, so latency includes any time the generator itself was held
 * up (open loop, no coordinated omission). Receivers ack in batches.
 *
 * fanout: a group of G devices, one per user: one sender and G-1 online
 * receivers, created with one GroupCreate (the sender, its creator, is the
 * G-th member; the node's limit counts it, so --members 1000 is a group of
 * 1,000 at the default --max-group-members 1000). Every round is ONE group
 * Send (sender_key_ciphertext carrying the round's intended time), which
 * the node fans out to the G-1 receiving devices; latency is intended time
 * -> the round's last Deliver (hist), and -> every Deliver (hist2). With
 * --pairwise a round is instead G-1 one-to-one Sends issued at once (the
 * scenario before the node had group sends). In both modes sent / sent_ok
 * / errors count per-device copies (G-1 per round), so that lost and the
 * node's CPU per operation are per delivery.
 */
#include "crypto/cn_crypto.h"
#include "tests/bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 4096 /* per sender: intended time of each outstanding request */

/*
 * Receivers' acks go out in batches: when a receiver has ack_batch of them,
 * and for everyone every ACK_FLUSH_NS. In fanout, the G-1 receivers are G-1
 * devices that would each have a CPU of their own; here they share one, and
 * ack writes in the middle of a round would hold up the reads of the
 * round's remaining deliveries (about 10 us per ack write on this machine:
 * measured 4-5 ms per 5 ms flush of ~400 acks). So in fanout the periodic
 * flush waits until no delivery arrived for FANOUT_ACK_QUIET_NS, and at most
 * FANOUT_ACK_MAX_NS.
 */
#define ACK_FLUSH_NS        5000000ull
#define FANOUT_ACK_QUIET_NS 2000000ull
#define FANOUT_ACK_MAX_NS   50000000ull

typedef struct rcv {
    uint64_t acks[CN_ACK_SEQS_MAX];
    unsigned nacks;
    bool listed;
    struct rcv *next;
    bench_user_t *u;
} rcv_t;

static struct {
    bench_user_t *snd, *rcv;
    rcv_t *rs;
    unsigned n;
    uint64_t *ring; /* n * RING */
    uint64_t t0, warm_ns, period_ns_x1000;
    uint64_t next_m, total;
    uint8_t *seen;
    uint8_t *ct;
    rcv_t *ack_list;
    uint64_t last_ack_flush, first_delivery, last_delivery;
    uint64_t round_count_base; /* fanout */
    uint32_t *round_got;       /* fanout: deliveries per round */
    bool sending, finished, fanout;
    bool group; /* fanout: one group Send per round */
    uint8_t group_id[CN_GROUP_ID_LEN];
    uint64_t group_rid; /* the GroupCreate in flight */
    uint32_t group_status;
    bool group_answered;
    bench_hist_t send_ok; /* fanout: intended time -> SendOk */
    unsigned warned;
} R;

static uint64_t intended(uint64_t m)
{
    return R.t0 + m * R.period_ns_x1000 / 1000;
}

static void ack_flush_one(rcv_t *r)
{
    if (r->nacks && r->u->conn)
        bench_send_ack(r->u->conn, r->acks, r->nacks);
    r->nacks = 0;
}

static void ack_flush_all(void)
{
    while (R.ack_list) {
        rcv_t *r = R.ack_list;
        R.ack_list = r->next;
        r->listed = false;
        ack_flush_one(r);
    }
}

static void check_finished(void)
{
    bench_result_t *res = &g_bench.r;
    if (!R.sending && res->sent_ok + res->errors >= res->sent && res->delivered >= res->sent_ok)
        R.finished = true;
}

static void on_deliver(rcv_t *r, const bench_frame_t *f)
{
    bench_result_t *res = &g_bench.r;
    uint64_t now = bench_now_ns(), t, m;
    uint32_t tag;
    if (r->nacks == CN_ARRAY_LEN(r->acks))
        ack_flush_one(r);
    r->acks[r->nacks++] = f->seq;
    if (r->nacks >= g_bench.o.ack_batch)
        ack_flush_one(r);
    else if (!r->listed) {
        r->listed = true;
        r->next = R.ack_list;
        R.ack_list = r;
    }
    if (!bench_payload_read(f->ciphertext.base, f->ciphertext.len, &t, &m, &tag)) {
        res->errors++;
        return;
    }
    if (R.group) /* the payload names the round; the copy is (round, receiver) */
        m = m < R.total / R.n ? m * R.n + r->u->index : R.total;
    if (m >= R.total) {
        res->errors++;
        return;
    }
    if (R.seen[m / 8] & (1u << (m % 8))) {
        res->duplicates++;
        return;
    }
    R.seen[m / 8] |= (uint8_t)(1u << (m % 8));
    res->delivered++;
    if (R.first_delivery == 0)
        R.first_delivery = now;
    R.last_delivery = now;
    if (R.fanout) {
        uint64_t round = m / R.n;
        bench_hist_add(&res->hist2, now - t);
        if (++R.round_got[round] == R.n && t >= R.t0 + R.warm_ns)
            bench_hist_add(&res->hist, now - t); /* time to the last delivery */
    } else if (t >= R.t0 + R.warm_ns) {
        bench_hist_add(&res->hist, now - t);
    }
    check_finished();
}

static void on_response(bench_user_t *u, const bench_frame_t *f)
{
    bench_result_t *res = &g_bench.r;
    uint64_t t = R.ring[(size_t)u->index * RING + (f->request_id % RING)];
    uint64_t copies = R.group ? R.n : 1; /* a group Send stands for n copies */
    if (f->status == CHAT__STATUS__OK) {
        res->sent_ok += copies;
        if (t >= R.t0 + R.warm_ns) { /* Send -> OK (durable) */
            if (!R.fanout)
                bench_hist_add(&res->hist2, bench_now_ns() - t);
            else if (R.group)
                bench_hist_add(&R.send_ok, bench_now_ns() - t);
        }
    } else {
        res->errors += copies;
        if (R.warned++ < 3)
            fprintf(stderr, "chatbench: Send answered status %u\n", f->status);
    }
    check_finished();
}

static void on_frame(bench_user_t *u, const bench_frame_t *f)
{
    if (f->type == CHAT__SERVER_FRAME__BODY_RESPONSE && u->expect == 0 && R.group_rid &&
        f->request_id == R.group_rid) {
        R.group_status = f->status;
        R.group_answered = true;
    } else if (f->type == CHAT__SERVER_FRAME__BODY_DELIVER && u->expect == 1)
        on_deliver(&R.rs[u->index], f);
    else if (f->type == CHAT__SERVER_FRAME__BODY_RESPONSE && u->expect == 0 &&
             f->request_id != u->auth_rid)
        on_response(u, f);
}

static void send_one(bench_user_t *s, bench_user_t *r, uint64_t m, uint64_t t, uint32_t tag)
{
    bench_result_t *res = &g_bench.r;
    res->sent++;
    if (!s->conn) {
        res->errors++;
        return;
    }
    uint8_t mid[CN_MESSAGE_ID_LEN];
    bench_message_id(mid);
    bench_payload_fill(R.ct, g_bench.o.size, t, m, tag);
    uint64_t rid = bench_send_message(s->conn, mid, r->handle, r->pk, R.ct, g_bench.o.size);
    R.ring[(size_t)s->index * RING + (rid % RING)] = t;
}

/* One group Send for round `round`: the node makes the n copies. */
static void send_group(bench_user_t *s, uint64_t round, uint64_t t)
{
    bench_result_t *res = &g_bench.r;
    res->sent += R.n;
    if (!s->conn) {
        res->errors += R.n;
        return;
    }
    uint8_t mid[CN_MESSAGE_ID_LEN];
    bench_message_id(mid);
    bench_payload_fill(R.ct, g_bench.o.size, t, round, (uint32_t)round);
    uint64_t rid = bench_send_group(s->conn, mid, R.group_id, R.ct, g_bench.o.size);
    R.ring[(size_t)s->index * RING + (rid % RING)] = t;
}

static void tick(void)
{
    uint64_t now = bench_now_ns();
    bench_result_t *res = &g_bench.r;
    if (R.sending) {
        if (R.fanout) {
            /* One round: every member at the same intended time. */
            while (R.next_m < R.total && intended(R.next_m / R.n) <= now) {
                uint64_t round = R.next_m / R.n, t = intended(round);
                if (now - t > 1000000)
                    res->late_ticks++;
                if (R.group) {
                    send_group(&R.snd[0], round, t);
                    R.next_m += R.n;
                    continue;
                }
                for (unsigned i = 0; i < R.n; i++, R.next_m++)
                    send_one(&R.snd[0], &R.rcv[i], R.next_m, t, (uint32_t)round);
            }
        } else {
            while (R.next_m < R.total && intended(R.next_m) <= now) {
                uint64_t m = R.next_m++, t = intended(m);
                if (now - t > 1000000)
                    res->late_ticks++;
                unsigned p = (unsigned)(m % R.n);
                send_one(&R.snd[p], &R.rcv[p], m, t, g_bench.proc);
            }
        }
        if (R.next_m >= R.total) {
            R.sending = false;
            res->send_s = (double)(now - R.t0) / 1e9;
            check_finished();
        }
    }
    bool due = now - R.last_ack_flush > ACK_FLUSH_NS;
    if (R.fanout && due) /* not in the middle of a round's burst */
        due = now - R.last_delivery > FANOUT_ACK_QUIET_NS ||
              now - R.last_ack_flush > FANOUT_ACK_MAX_NS;
    if (due) {
        R.last_ack_flush = now;
        ack_flush_all();
    }
}

static int setup(unsigned nsend, unsigned nrecv, uint64_t total)
{
    R.snd = calloc(nsend, sizeof(*R.snd));
    R.rcv = calloc(nrecv, sizeof(*R.rcv));
    R.rs = calloc(nrecv, sizeof(*R.rs));
    R.ring = calloc((size_t)nsend * RING, sizeof(*R.ring));
    R.seen = calloc(total / 8 + 1, 1);
    R.ct = malloc(g_bench.o.size);
    R.total = total;
    if (!R.snd || !R.rcv || !R.rs || !R.ring || !R.seen || !R.ct) {
        g_bench.fatal = "out of memory";
        return -1;
    }
    bench_users_make(R.snd, nsend, "s");
    bench_users_make(R.rcv, nrecv, "r");
    for (unsigned i = 0; i < nrecv; i++) {
        R.rcv[i].expect = 1;
        R.rs[i].u = &R.rcv[i];
    }
    unsigned failed = bench_users_open(R.rcv, nrecv, BENCH_REGISTER, false, on_frame);
    failed += bench_users_open(R.snd, nsend, BENCH_REGISTER, false, on_frame);
    if (failed) {
        g_bench.fatal = "some users could not register (rate limits on the node?)";
        return -1;
    }
    return 0;
}

static void wait_tail(void)
{
    /* Sending stopped (R.sending false): give stragglers drain_timeout. */
    bench_run_until(&R.finished, bench_now_ns() + (uint64_t)(g_bench.o.drain_timeout * 1e9));
    ack_flush_all();
    bench_flush_all();
    bench_tick_stop();
    /* The schedule: relay's total messages, or fanout's rounds (R.n copies each). */
    uint64_t slots = R.fanout ? R.total / R.n : R.total;
    g_bench.r.elapsed_s = bench_delivery_span_s(R.t0, slots * R.period_ns_x1000 / 1000,
                                                R.first_delivery, R.last_delivery, bench_now_ns());
}

/* Runs the schedule, then waits for the tail: stops at finished or timeout. */
static void schedule_and_wait(double rate_per_s, double interval_ns)
{
    bench_barrier(1);
    R.period_ns_x1000 = (uint64_t)(interval_ns > 0 ? interval_ns * 1000 : 1e12 / rate_per_s);
    R.t0 = bench_now_ns() + 20000000 +
           (R.period_ns_x1000 / 1000) * g_bench.proc / CN_MAX(g_bench.nprocs, 1u);
    if (R.fanout)
        R.t0 = bench_now_ns() + 20000000;
    R.warm_ns = (uint64_t)(g_bench.o.warmup * 1e9);
    R.sending = true;
    R.last_ack_flush = R.t0;
    bench_tick_start(g_bench.o.tick_us, tick);
    static bool never;
    while (R.sending && !g_bench.fatal)
        bench_run_until(&never, bench_now_ns() + 100000000);
    wait_tail();
}

int bench_relay(void)
{
    unsigned n = bench_share(g_bench.o.pairs);
    double rate = g_bench.o.rate / CN_MAX(g_bench.nprocs, 1u);
    uint64_t total = (uint64_t)(rate * g_bench.o.duration);
    if (n == 0 || total == 0) {
        g_bench.fatal = "nothing to do: fewer pairs than processes?";
        return -1;
    }
    R.n = n;
    if (setup(n, n, total) < 0)
        return -1;
    schedule_and_wait(rate, 0);
    g_bench.r.extra[0] = g_bench.r.send_s > 0 ? (double)g_bench.r.sent / g_bench.r.send_s : 0;
    return g_bench.fatal ? -1 : 0;
}

/* The sender creates the group of every receiver (it joins as the admin). */
static int group_create(void)
{
    bench_user_t *s = &R.snd[0];
    char **handles = calloc(R.n, sizeof(*handles));
    if (!handles) {
        g_bench.fatal = "out of memory";
        return -1;
    }
    for (unsigned i = 0; i < R.n; i++)
        handles[i] = R.rcv[i].handle;
    cn_random(R.group_id, sizeof(R.group_id));
    R.group_rid = s->conn ? bench_send_group_create(s->conn, R.group_id, handles, R.n) : 0;
    free(handles);
    if (!R.group_rid) {
        g_bench.fatal = g_bench.fatal ? g_bench.fatal : "the sender's connection is gone";
        return -1;
    }
    bench_flush_all();
    bench_run_until(&R.group_answered, bench_now_ns() + 60ull * 1000000000ull);
    if (!R.group_answered || R.group_status != CHAT__STATUS__OK) {
        if (R.group_answered)
            fprintf(stderr, "chatbench: GroupCreate answered status %u\n", R.group_status);
        g_bench.fatal = "GroupCreate failed (is --members above the node's --max-group-members?)";
        return -1;
    }
    return 0;
}

int bench_fanout(void)
{
    if (g_bench.nprocs > 1) {
        g_bench.fatal = "fanout is one sender: run it with --procs 1";
        return -1;
    }
    unsigned g = g_bench.o.members;
    if (g < 2 || g_bench.o.rounds == 0) {
        g_bench.fatal = "fanout needs --members >= 2 (the sender counts) and --rounds";
        return -1;
    }
    unsigned n = g - 1; /* receiving devices: all but the sender's */
    uint64_t total = (uint64_t)n * g_bench.o.rounds;
    R.n = n;
    R.fanout = true;
    R.group = !g_bench.o.pairwise;
    bench_hist_init(&R.send_ok);
    R.round_got = calloc(g_bench.o.rounds, sizeof(*R.round_got));
    if (!R.round_got || setup(1, n, total) < 0)
        return -1;
    if (R.group && group_create() < 0)
        return -1;
    schedule_and_wait(0, g_bench.o.interval_ms * 1e6);
    unsigned complete = 0;
    for (unsigned i = 0; i < g_bench.o.rounds; i++)
        complete += R.round_got[i] == n;
    double *x = g_bench.r.extra; /* see FANOUT_EXTRA in misc.c */
    x[0] = complete;
    x[1] = g;
    x[2] = n;
    x[3] = R.group ? 0 : 1;
    x[4] = (double)bench_hist_quantile(&R.send_ok, 0.5) / 1e6;
    x[5] = (double)bench_hist_quantile(&R.send_ok, 0.99) / 1e6;
    return g_bench.fatal ? -1 : 0;
}
