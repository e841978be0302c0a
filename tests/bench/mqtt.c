/*
 * peer-mqtt: the relay load (same pairs, rate, payload size, schedule and
 * latency stamp) against an MQTT 3.1.1 broker over TLS, for the
 * side-by-side run. Pair i's sender publishes to "cb/<run>/<proc>/<i>",
 * which only pair i's receiver subscribes to; with --qos 1 (the default)
 * the broker acks each PUBLISH (PUBACK) and the receiver acks each delivery,
 * the closest MQTT has to chatnode's Send OK and Ack.
 *
 * MQTT 3.1.1 (OASIS, 2014): 2.2 fixed header, 2.2.3 remaining length,
 * 3.1 CONNECT, 3.3 PUBLISH, 3.4 PUBACK, 3.8 SUBSCRIBE.
 */
#include "tests/bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 4096

typedef struct mq {
    bench_conn_t *conn;
    unsigned index;
    bool receiver, ready;
    uint16_t next_pid;
    char topic[64];
} mq_t;

static struct {
    mq_t *snd, *rcv;
    unsigned n, opening, ready, failed;
    uint64_t *ring;
    uint64_t t0, warm_ns, period_ns_x1000, next_m, total, first_delivery, last_delivery;
    uint8_t *seen, *pkt;
    bool setup_done, sending, finished;
} M;

/* 2.2.3: remaining length, 7 bits per byte, least significant first. */
static size_t put_fixed(uint8_t *p, uint8_t type, size_t rem)
{
    size_t k = 0;
    p[k++] = type;
    do {
        uint8_t b = rem % 128;
        rem /= 128;
        p[k++] = (uint8_t)(b | (rem ? 0x80 : 0));
    } while (rem);
    return k;
}

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

static void mq_ready(bench_conn_t *c)
{
    mq_t *q = c->ud;
    char id[48];
    snprintf(id, sizeof(id), "cb-%s-%u-%c%u", g_bench.run_id, g_bench.proc, q->receiver ? 'r' : 's',
             q->index);
    uint8_t body[96], pkt[128];
    size_t k = put_str(body, "MQTT");
    body[k++] = 4;    /* protocol level 3.1.1 */
    body[k++] = 0x02; /* clean session */
    body[k++] = 0;
    body[k++] = 60; /* keep alive, s */
    k += put_str(body + k, id);
    size_t h = put_fixed(pkt, 0x10, k);
    memcpy(pkt + h, body, k);
    bench_conn_send_raw(c, pkt, h + k);
}

static void mq_subscribe(mq_t *q)
{
    uint8_t body[96], pkt[128];
    size_t k = 0;
    body[k++] = 0;
    body[k++] = 1; /* packet id */
    k += put_str(body + k, q->topic);
    body[k++] = (uint8_t)g_bench.o.qos;
    size_t h = put_fixed(pkt, 0x82, k);
    memcpy(pkt + h, body, k);
    bench_conn_send_raw(q->conn, pkt, h + k);
}

static void became_ready(mq_t *q)
{
    q->ready = true;
    M.ready++;
    if (M.ready + M.failed == M.opening)
        M.setup_done = true;
}

static void check_finished(void)
{
    bench_result_t *r = &g_bench.r;
    if (!M.sending && r->sent_ok + r->errors >= r->sent && r->delivered >= r->sent_ok)
        M.finished = true;
}

static void on_publish(mq_t *q, const uint8_t *p, size_t n, uint8_t flags)
{
    bench_result_t *r = &g_bench.r;
    if (n < 2)
        return;
    size_t tl = (size_t)p[0] << 8 | p[1], k = 2 + tl;
    uint16_t pid = 0;
    unsigned qos = (flags >> 1) & 3;
    if (qos) {
        if (n < k + 2)
            return;
        pid = (uint16_t)(p[k] << 8 | p[k + 1]);
        k += 2;
        uint8_t ack[4] = {0x40, 2, (uint8_t)(pid >> 8), (uint8_t)pid};
        bench_conn_send_raw(q->conn, ack, sizeof(ack));
    }
    uint64_t t, m, now = bench_now_ns();
    uint32_t tag;
    if (k > n || !bench_payload_read(p + k, n - k, &t, &m, &tag) || m >= M.total) {
        r->errors++;
        return;
    }
    if (M.seen[m / 8] & (1u << (m % 8))) {
        r->duplicates++;
        return;
    }
    M.seen[m / 8] |= (uint8_t)(1u << (m % 8));
    r->delivered++;
    if (M.first_delivery == 0)
        M.first_delivery = now;
    M.last_delivery = now;
    if (t >= M.t0 + M.warm_ns)
        bench_hist_add(&r->hist, now - t);
    if (g_bench.o.qos == 0)
        r->sent_ok = r->sent; /* nothing acks a QoS 0 publish */
    check_finished();
}

static void on_packet(mq_t *q, uint8_t type, const uint8_t *p, size_t n)
{
    bench_result_t *r = &g_bench.r;
    switch (type >> 4) {
    case 2: /* CONNACK */
        if (n < 2 || p[1] != 0) {
            bench_conn_close(q->conn, false);
            return;
        }
        if (q->receiver)
            mq_subscribe(q);
        else
            became_ready(q);
        break;
    case 9: /* SUBACK */
        if (n < 3 || p[2] == 0x80) {
            bench_conn_close(q->conn, false);
            return;
        }
        became_ready(q);
        break;
    case 3: /* PUBLISH */
        on_publish(q, p, n, type & 0x0f);
        break;
    case 4: /* PUBACK */
        if (n >= 2) {
            uint16_t pid = (uint16_t)(p[0] << 8 | p[1]);
            uint64_t t = M.ring[(size_t)q->index * RING + pid % RING];
            r->sent_ok++;
            if (t >= M.t0 + M.warm_ns)
                bench_hist_add(&r->hist2, bench_now_ns() - t);
            check_finished();
        }
        break;
    default:
        break;
    }
}

static void mq_raw(bench_conn_t *c, cn_buf_t *in)
{
    mq_t *q = c->ud;
    for (;;) {
        cn_slice_t un = cn_buf_unread(in);
        size_t rem = 0, k = 1;
        unsigned shift = 0;
        for (;;) {
            if (k >= un.len)
                return;
            uint8_t b = un.base[k++];
            rem |= (size_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
            if (shift > 21) {
                bench_conn_close(c, false);
                return;
            }
        }
        if (un.len - k < rem)
            return;
        on_packet(q, un.base[0], un.base + k, rem);
        if (c->closing)
            return;
        cn_buf_consume(in, k + rem);
    }
}

static void mq_close(bench_conn_t *c, int err)
{
    mq_t *q = c->ud;
    (void)err;
    q->conn = NULL;
    if (!q->ready) {
        M.failed++;
        if (M.ready + M.failed == M.opening)
            M.setup_done = true;
    }
}

static const bench_conn_cbs_t mq_cbs = {
    .on_ready = mq_ready, .on_raw = mq_raw, .on_close = mq_close};

static void publish(mq_t *s, uint64_t m, uint64_t t)
{
    bench_result_t *r = &g_bench.r;
    r->sent++;
    if (!s->conn) {
        r->errors++;
        return;
    }
    uint8_t *p = M.pkt;
    size_t tl = strlen(s->topic), body = 2 + tl + (g_bench.o.qos ? 2 : 0) + g_bench.o.size;
    size_t k = put_fixed(p, (uint8_t)(0x30 | (g_bench.o.qos << 1)), body);
    k += put_str(p + k, s->topic);
    if (g_bench.o.qos) {
        uint16_t pid = s->next_pid++;
        if (s->next_pid == 0)
            s->next_pid = 1;
        p[k++] = (uint8_t)(pid >> 8);
        p[k++] = (uint8_t)pid;
        M.ring[(size_t)s->index * RING + pid % RING] = t;
    }
    bench_payload_fill(p + k, g_bench.o.size, t, m, g_bench.proc);
    bench_conn_send_raw(s->conn, p, k + g_bench.o.size);
}

static void tick(void)
{
    uint64_t now = bench_now_ns();
    while (M.sending && M.next_m < M.total && M.t0 + M.next_m * M.period_ns_x1000 / 1000 <= now) {
        uint64_t m = M.next_m++, t = M.t0 + m * M.period_ns_x1000 / 1000;
        if (now - t > 1000000)
            g_bench.r.late_ticks++;
        publish(&M.snd[m % M.n], m, t);
    }
    if (M.sending && M.next_m >= M.total) {
        M.sending = false;
        g_bench.r.send_s = (double)(now - M.t0) / 1e9;
        check_finished();
    }
}

static int open_all(void)
{
    M.opening = 2 * M.n;
    for (unsigned i = 0; i < M.n; i++) {
        for (int side = 0; side < 2; side++) {
            mq_t *q = side ? &M.rcv[i] : &M.snd[i];
            q->index = i;
            q->receiver = side;
            q->next_pid = 1;
            snprintf(q->topic, sizeof(q->topic), "cb/%s/%u/%u", g_bench.run_id, g_bench.proc, i);
            q->conn = bench_conn_new(&mq_cbs, q, i + g_bench.proc, true);
        }
    }
    bench_run_until(&M.setup_done, bench_now_ns() + 60ull * 1000000000ull);
    if (M.failed || M.ready != M.opening) {
        g_bench.fatal = "some MQTT connections failed";
        return -1;
    }
    return 0;
}

int bench_peer_mqtt(void)
{
    M.n = bench_share(g_bench.o.pairs);
    double rate = g_bench.o.rate / CN_MAX(g_bench.nprocs, 1u);
    M.total = (uint64_t)(rate * g_bench.o.duration);
    M.snd = calloc(M.n, sizeof(*M.snd));
    M.rcv = calloc(M.n, sizeof(*M.rcv));
    M.ring = calloc((size_t)M.n * RING, sizeof(*M.ring));
    M.seen = calloc(M.total / 8 + 1, 1);
    M.pkt = malloc(g_bench.o.size + 128);
    if (!M.snd || !M.rcv || !M.ring || !M.seen || !M.pkt || M.n == 0 || M.total == 0) {
        g_bench.fatal = "nothing to do, or out of memory";
        return -1;
    }
    if (open_all() < 0)
        return -1;
    bench_barrier(1);
    M.period_ns_x1000 = (uint64_t)(1e12 / rate);
    M.t0 = bench_now_ns() + 20000000 +
           (M.period_ns_x1000 / 1000) * g_bench.proc / CN_MAX(g_bench.nprocs, 1u);
    M.warm_ns = (uint64_t)(g_bench.o.warmup * 1e9);
    M.sending = true;
    bench_tick_start(g_bench.o.tick_us, tick);
    static bool never;
    while (M.sending && !g_bench.fatal)
        bench_run_until(&never, bench_now_ns() + 100000000);
    bench_run_until(&M.finished, bench_now_ns() + (uint64_t)(g_bench.o.drain_timeout * 1e9));
    bench_tick_stop();
    g_bench.r.elapsed_s = bench_delivery_span_s(M.t0, M.total * M.period_ns_x1000 / 1000,
                                                M.first_delivery, M.last_delivery, bench_now_ns());
    g_bench.r.extra[0] = g_bench.r.send_s > 0 ? (double)g_bench.r.sent / g_bench.r.send_s : 0;
    for (unsigned i = 0; i < M.n; i++) {
        if (M.snd[i].conn)
            bench_conn_close(M.snd[i].conn, false);
        if (M.rcv[i].conn)
            bench_conn_close(M.rcv[i].conn, false);
    }
    return g_bench.fatal ? -1 : 0;
}
