/*
 * The small loop utilities every scenario shares: the monotonic clock,
 * running the loop until a flag or a deadline, the worker's share of a
 * count, and the schedule's tick (a timerfd polled by the loop).
 */
#define _GNU_SOURCE /* timerfd */
#include "tests/bench/bench.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

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
