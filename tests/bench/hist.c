/*
 * Log-linear latency histogram (the HdrHistogram layout with 64
 * sub-buckets per power of two), the payload stamp and the small loop
 * utilities every scenario shares.
 */
#define _GNU_SOURCE /* timerfd */
#include "tests/bench/bench.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ histogram */

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* k >= 7 */
    unsigned shift = k - 6;
    unsigned idx = shift * BENCH_HIST_SUB + (unsigned)(v >> shift);
    return idx < BENCH_HIST_BUCKETS ? idx : BENCH_HIST_BUCKETS - 1;
}

/* The middle of bucket idx (the inverse of bucket_of). */
static uint64_t value_of(unsigned idx)
{
    if (idx < 2 * BENCH_HIST_SUB)
        return idx;
    unsigned shift = idx / BENCH_HIST_SUB - 1;
    uint64_t m = idx % BENCH_HIST_SUB + BENCH_HIST_SUB;
    return (m << shift) + ((1ull << shift) >> 1);
}

void bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void bench_hist_add(bench_hist_t *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    dst->max = CN_MAX(dst->max, src->max);
    dst->min = CN_MIN(dst->min, src->min);
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.5);
    if (want < 1)
        want = 1;
    if (want >= h->count)
        return h->max;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want)
            return CN_MIN(value_of(i), h->max);
    }
    return h->max;
}

/* -------------------------------------------------------------- payload */

/* intended send time (u64be ns) ‖ message number (u64be) ‖ tag (u32be) ‖
 * filler. The node never looks inside: for it this is ciphertext. */
void bench_payload_fill(uint8_t *p, size_t n, uint64_t intended_ns, uint64_t msg, uint32_t tag)
{
    cn_store_u64be(p, intended_ns);
    cn_store_u64be(p + 8, msg);
    cn_store_u32be(p + 16, tag);
    for (size_t i = BENCH_PAYLOAD_MIN; i < n; i++)
        p[i] = (uint8_t)(i * 131u + msg);
}

bool bench_payload_read(const uint8_t *p, size_t n, uint64_t *intended_ns, uint64_t *msg,
                        uint32_t *tag)
{
    if (n < BENCH_PAYLOAD_MIN)
        return false;
    *intended_ns = cn_load_u64be(p);
    *msg = cn_load_u64be(p + 8);
    *tag = cn_load_u32be(p + 16);
    return true;
}

/* ----------------------------------------------------------------- loop */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void deadline_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

void bench_run_until(const bool *flag, uint64_t deadline_ns)
{
    uv_timer_t timer;
    bool expired = false;
    if (deadline_ns) {
        uint64_t now = bench_now_ns();
        uint64_t ms = deadline_ns > now ? (deadline_ns - now + 999999) / 1000000 : 0;
        uv_timer_init(g_bench.loop, &timer);
        timer.data = &expired;
        uv_timer_start(&timer, deadline_cb, ms, 0);
    }
    while (!*flag && !expired && !g_bench.fatal) {
        bench_flush_all();
        uv_run(g_bench.loop, UV_RUN_ONCE);
    }
    bench_flush_all();
    if (deadline_ns) {
        uv_timer_stop(&timer);
        uv_close((uv_handle_t *)&timer, NULL);
        uv_run(g_bench.loop, UV_RUN_NOWAIT); /* runs the close callback */
    }
}

unsigned bench_share(unsigned total)
{
    unsigned n = g_bench.nprocs ? g_bench.nprocs : 1;
    return total / n + (g_bench.proc < total % n ? 1 : 0);
}

/* ----------------------------------------------------------------- tick */

static struct {
    int fd;
    uv_poll_t poll;
    void (*fn)(void);
    bool running;
} g_tick = {.fd = -1};

static void tick_cb(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)status;
    (void)events;
    uint64_t expirations;
    if (read(g_tick.fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
        return;
    if (g_tick.running)
        g_tick.fn();
}

void bench_tick_start(unsigned period_us, void (*fn)(void))
{
    if (g_tick.fd < 0) {
        g_tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (g_tick.fd < 0) {
            g_bench.fatal = "timerfd_create failed";
            return;
        }
        uv_poll_init(g_bench.loop, &g_tick.poll, g_tick.fd);
    }
    g_tick.fn = fn;
    g_tick.running = true;
    long ns = (long)period_us * 1000L;
    struct itimerspec its = {
        .it_interval = {.tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L},
        .it_value = {.tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L},
    };
    timerfd_settime(g_tick.fd, 0, &its, NULL);
    uv_poll_start(&g_tick.poll, UV_READABLE, tick_cb);
}

void bench_tick_stop(void)
{
    if (g_tick.fd < 0)
        return;
    g_tick.running = false;
    struct itimerspec off = {0};
    timerfd_settime(g_tick.fd, 0, &off, NULL);
    uv_poll_stop(&g_tick.poll);
}
