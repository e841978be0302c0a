/*
 * relayfloor: what the system calls of a one-to-one relay cost on this
 * machine, with nothing else: no TLS, no WebSocket, no protobuf, no store.
 * The floor under chatbench's relay rows (docs/PERFORMANCE.md).
 *
 * The process (run it under taskset -c 0, as the node) relays fixed-size
 * messages the way the node's I/O loop does: epoll, read every ready
 * socket, and for each message a small OK back to its sender and the
 * message to its receiver; every 64 deliveries the receiver acks and gets
 * a small answer. Output is gathered per socket and written once per loop
 * iteration, as the node's flush pass does. A child pinned to --gen-cpu is
 * the generator: open loop (message m is due at m / rate on pair m mod
 * pairs, a 200 us timerfd tick), the intended time in each message, and
 * latency from it to the delivery's read.
 *
 *   relayfloor [--pairs N] [--rate R] [--duration S] [--gen-cpu C] [--cadence-us U]
 *
 * --cadence-us U starts a loop iteration at most every U us (sleeping the
 * rest), so that each iteration gathers more messages per read and write,
 * as a server may within its latency budget.
 *
 * One JSON line: the relaying process's CPU per message (user and system,
 * over the load after the first second), its reads and writes per message,
 * its loop iterations, and the latency p50/p99 of every delivery.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_BYTES   330 /* a Send, and a Deliver: 256 B of ciphertext in their frames */
#define OK_BYTES    40  /* a SendOk record */
#define ACK_BYTES   40  /* an Ack of up to 64 seqs is larger; the count matters here */
#define ACKOK_BYTES 30
#define ACK_EVERY   64 /* chatbench's receivers ack in batches of 64 */
#define TICK_NS     200000
#define WARMUP_NS   1000000000ull
#define PAIRS_MAX   4000
#define READ_BYTES  65536
/* Byte 0 of what a receiver reads tells its length: a Deliver (the Send
 * relayed as it came, its intended time at byte 8) or an AckOk. */
#define TYPE_MSG   'M'
#define TYPE_ACKOK 'A'

typedef struct {
    char *data;
    size_t len, cap;
} obuf_t;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void obuf_add(obuf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data)
            die("relayfloor: realloc");
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* Writes what fd's buffer holds; what the socket does not take stays. */
static long obuf_flush(obuf_t *b, int fd)
{
    if (b->len == 0)
        return 0;
    ssize_t w = write(fd, b->data, b->len);
    if (w < 0 && errno != EAGAIN)
        die("relayfloor: write");
    if (w > 0) {
        memmove(b->data, b->data + w, b->len - (size_t)w);
        b->len -= (size_t)w;
    }
    return 1;
}

static void nonblock(int fd)
{
    int one = 1;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        die("relayfloor: socket options");
}

static void watch(int ep, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("relayfloor: epoll_ctl");
}

/*
 * Moves bytes of rb[*off, n) into held (which has *part of a frame) until
 * the frame has want bytes; true when it is whole (*part is then 0 again).
 */
static bool frame_fill(char *held, size_t *part, size_t want, const char *rb, size_t n, size_t *off)
{
    size_t take = want - *part;
    if (n - *off < take)
        take = n - *off;
    memcpy(held + *part, rb + *off, take);
    *part += take;
    *off += take;
    if (*part < want)
        return false;
    *part = 0;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ generator */

/* Sends on gs[], reads OKs there and deliveries on gr[], acks every 64;
 * writes its start time to start_fd, then p50/p99 in us to result_fd. */
static int generator(const int *gs, const int *gr, long pairs, double rate, double duration,
                     int cpu, int start_fd, int result_fd)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        die("relayfloor: generator affinity");
    uint64_t total = (uint64_t)(rate * duration);
    uint32_t *lat = calloc(total ? total : 1, sizeof(*lat));
    obuf_t *out = calloc((size_t)pairs * 2, sizeof(*out));
    size_t *part = calloc((size_t)pairs, sizeof(*part)); /* partial delivery bytes held */
    char(*held)[MSG_BYTES] = calloc((size_t)pairs, MSG_BYTES);
    unsigned *unacked = calloc((size_t)pairs, sizeof(*unacked));
    char *rb = malloc(READ_BYTES), msg[MSG_BYTES] = {TYPE_MSG}, ack[ACK_BYTES] = {0};
    int ep = epoll_create1(0), tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (!lat || !out || !part || !held || !unacked || !rb || ep < 0 || tfd < 0)
        die("relayfloor: generator setup");
    for (long i = 0; i < pairs; i++) {
        watch(ep, gs[i], (uint64_t)i);
        watch(ep, gr[i], (uint64_t)(pairs + i));
    }
    watch(ep, tfd, UINT64_MAX);
    struct itimerspec its = {.it_interval = {0, TICK_NS}, .it_value = {0, TICK_NS}};
    timerfd_settime(tfd, 0, &its, NULL);
    uint64_t t0 = now_ns() + 20000000, next = 0, got = 0;
    if (write(start_fd, &t0, sizeof(t0)) != sizeof(t0))
        die("relayfloor: start");
    uint64_t deadline = t0 + (uint64_t)(duration * 1e9) + 20000000000ull;
    struct epoll_event evs[256];
    while (got < total && now_ns() < deadline) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; j++) {
            uint64_t tag = evs[j].data.u64;
            if (tag == UINT64_MAX) {
                uint64_t x;
                if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
                    die("relayfloor: timerfd");
                uint64_t now = now_ns();
                while (next < total && t0 + (uint64_t)((double)next * 1e9 / rate) <= now) {
                    uint64_t due = t0 + (uint64_t)((double)next * 1e9 / rate);
                    memcpy(msg + 8, &due, sizeof(due));
                    obuf_add(&out[next % (uint64_t)pairs], msg, sizeof(msg));
                    next++;
                }
                continue;
            }
            ssize_t r =
                read(tag < (uint64_t)pairs ? gs[tag] : gr[tag - (uint64_t)pairs], rb, READ_BYTES);
            if (r <= 0)
                die("relayfloor: generator read");
            if (tag < (uint64_t)pairs)
                continue; /* OKs and AckOks: only read */
            long i = (long)(tag - (uint64_t)pairs);
            uint64_t now = now_ns();
            for (size_t off = 0; off < (size_t)r;) {
                /* The frame's length comes with its first byte. */
                size_t want =
                    (part[i] ? held[i][0] : rb[off]) == TYPE_ACKOK ? ACKOK_BYTES : MSG_BYTES;
                if (!frame_fill(held[i], &part[i], want, rb, (size_t)r, &off))
                    break;
                if (want == ACKOK_BYTES)
                    continue;
                uint64_t due;
                memcpy(&due, held[i] + 8, sizeof(due));
                if (got < total)
                    lat[got] = (uint32_t)((now - due) / 1000);
                got++;
                if (++unacked[i] == ACK_EVERY) {
                    unacked[i] = 0;
                    obuf_add(&out[pairs + i], ack, sizeof(ack));
                }
            }
        }
        for (long i = 0; i < pairs; i++) {
            obuf_flush(&out[i], gs[i]);
            obuf_flush(&out[pairs + i], gr[i]);
        }
    }
    /* Every delivery after the first second counts, as in chatbench. */
    uint64_t skip = (uint64_t)(rate * WARMUP_NS / 1e9), n = got > skip ? got - skip : 0;
    uint32_t res[3] = {(uint32_t)(got == total), 0, 0};
    if (n) {
        qsort(lat + skip, n, sizeof(*lat), cmp_u32);
        res[1] = lat[skip + n / 2];
        res[2] = lat[skip + n * 99 / 100];
    }
    return write(result_fd, res, sizeof(res)) == sizeof(res) ? 0 : 1;
}

/* -------------------------------------------------------------- relay */

static double secs(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    long pairs = 100, gen_cpu = 1, cadence_us = 0;
    double rate = 50000, duration = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--pairs") == 0)
            pairs = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0)
            rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--gen-cpu") == 0)
            gen_cpu = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--cadence-us") == 0)
            cadence_us = atol(argv[i + 1]);
        else
            argc = 0; /* unknown option: usage */
    }
    if (pairs <= 0 || pairs > PAIRS_MAX || rate < 100 || rate > 1e6 || duration < 2 ||
        duration > 60 || cadence_us < 0 || cadence_us > 100000 || gen_cpu < 0 ||
        gen_cpu >= CPU_SETSIZE || argc % 2 == 0) {
        fprintf(stderr,
                "usage: relayfloor [--pairs 1..%d] [--rate 100..1000000] "
                "[--duration 2..60] [--gen-cpu CPU] [--cadence-us 0..100000]\n",
                PAIRS_MAX);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0 || listen(ls, 4096) < 0)
        die("relayfloor: listen");
    /* g*: the generator's ends; f*: the relay's. s: senders, r: receivers. */
    int *gs = calloc((size_t)pairs, sizeof(int)), *gr = calloc((size_t)pairs, sizeof(int));
    int *fs = calloc((size_t)pairs, sizeof(int)), *fr = calloc((size_t)pairs, sizeof(int));
    if (!gs || !gr || !fs || !fr)
        die("relayfloor: calloc");
    for (long i = 0; i < 2 * pairs; i++) {
        int *g = i < pairs ? &gs[i] : &gr[i - pairs], *f = i < pairs ? &fs[i] : &fr[i - pairs];
        if ((*g = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
            connect(*g, (struct sockaddr *)&a, sizeof(a)) < 0 || (*f = accept(ls, NULL, NULL)) < 0)
            die("relayfloor: connect (raise ulimit -n?)");
        nonblock(*g);
        nonblock(*f);
    }
    int start[2], result[2];
    if (pipe(start) < 0 || pipe(result) < 0)
        die("relayfloor: pipe");
    pid_t child = fork();
    if (child < 0)
        die("relayfloor: fork");
    if (child == 0)
        _exit(generator(gs, gr, pairs, rate, duration, (int)gen_cpu, start[1], result[1]));

    int ep = epoll_create1(0);
    obuf_t *out = calloc((size_t)pairs * 2, sizeof(*out)); /* [0, pairs): senders */
    char *dirty = calloc((size_t)pairs * 2, 1), *rb = malloc(READ_BYTES);
    size_t *part = calloc((size_t)pairs * 2, sizeof(*part));
    char(*held)[MSG_BYTES] = calloc((size_t)pairs, MSG_BYTES);
    char ok[OK_BYTES] = {0}, ackok[ACKOK_BYTES] = {TYPE_ACKOK};
    if (ep < 0 || !out || !dirty || !rb || !part || !held)
        die("relayfloor: setup");
    for (long i = 0; i < 2 * pairs; i++)
        watch(ep, i < pairs ? fs[i] : fr[i - pairs], (uint64_t)i);
    uint64_t t0;
    if (read(start[0], &t0, sizeof(t0)) != sizeof(t0))
        die("relayfloor: start");
    uint64_t from = t0 + WARMUP_NS, to = t0 + (uint64_t)(duration * 1e9);
    uint64_t total = (uint64_t)(rate * duration), relayed = 0, msgs = 0;
    long reads = 0, writes = 0, iters = 0;
    struct rusage r0 = {0}, r1 = {0};
    bool measuring = false, measured = false;
    struct epoll_event evs[512];
    while (relayed < total) {
        uint64_t began = now_ns();
        int k = epoll_wait(ep, evs, 512, 1000);
        if (k == 0)
            break; /* the generator gave up */
        uint64_t now = now_ns();
        if (!measuring && !measured && now >= from) {
            getrusage(RUSAGE_SELF, &r0);
            measuring = true;
            reads = writes = iters = 0;
            msgs = relayed;
        }
        if (measuring && now >= to) {
            getrusage(RUSAGE_SELF, &r1);
            measuring = false;
            measured = true;
            msgs = relayed - msgs;
        }
        if (measuring)
            iters++;
        for (int j = 0; j < k; j++) {
            long i = (long)evs[j].data.u64;
            ssize_t r = read(i < pairs ? fs[i] : fr[i - pairs], rb, READ_BYTES);
            reads += measuring;
            if (r <= 0)
                die("relayfloor: read");
            if (i >= pairs) { /* acks: a short answer each */
                size_t n = (part[i] + (size_t)r) / ACK_BYTES;
                part[i] = (part[i] + (size_t)r) % ACK_BYTES;
                for (size_t m = 0; m < n; m++)
                    obuf_add(&out[i], ackok, sizeof(ackok));
                dirty[i] = 1;
                continue;
            }
            for (size_t off = 0; off < (size_t)r;) { /* Sends: an OK back, the message on */
                if (!frame_fill(held[i], &part[i], MSG_BYTES, rb, (size_t)r, &off))
                    break;
                obuf_add(&out[i], ok, sizeof(ok));
                obuf_add(&out[pairs + i], held[i], MSG_BYTES);
                dirty[i] = dirty[pairs + i] = 1;
                relayed++;
            }
        }
        for (long i = 0; i < 2 * pairs; i++) { /* the flush pass */
            if (!dirty[i])
                continue;
            long w = obuf_flush(&out[i], i < pairs ? fs[i] : fr[i - pairs]);
            if (measuring)
                writes += w;
            dirty[i] = out[i].len != 0;
        }
        /* --cadence-us: iterations at most this often, so that each one
         * gathers more (what a server may do within its latency budget). */
        uint64_t spent = now_ns() - began;
        if (cadence_us && spent < (uint64_t)cadence_us * 1000) {
            struct timespec rest = {0, (long)((uint64_t)cadence_us * 1000 - spent)};
            nanosleep(&rest, NULL);
        }
    }
    if (measuring) { /* the last message came before the window's end */
        getrusage(RUSAGE_SELF, &r1);
        measured = true;
        msgs = relayed - msgs;
        to = now_ns();
    }
    /* What the sockets did not take in the last iterations (the generator
     * waits for every delivery). */
    for (int tries = 0; tries < 1000; tries++) {
        bool left = false;
        for (long i = 0; i < 2 * pairs; i++) {
            obuf_flush(&out[i], i < pairs ? fs[i] : fr[i - pairs]);
            left = left || out[i].len != 0;
        }
        if (!left)
            break;
        usleep(1000);
    }
    uint32_t res[3] = {0};
    int status = 0;
    if (read(result[0], res, sizeof(res)) != sizeof(res) || waitpid(child, &status, 0) < 0 ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !measured || msgs == 0) {
        fprintf(stderr, "relayfloor: the run did not complete (relayed %llu of %llu)\n",
                (unsigned long long)relayed, (unsigned long long)total);
        return 1;
    }
    double user = secs(r1.ru_utime) - secs(r0.ru_utime),
           sys = secs(r1.ru_stime) - secs(r0.ru_stime);
    printf("{\"pairs\":%ld,\"rate\":%.0f,\"messages\":%llu,\"all_delivered\":%s,"
           "\"cpu_us_per_msg\":%.2f,\"user_us_per_msg\":%.2f,\"sys_us_per_msg\":%.2f,"
           "\"reads_per_msg\":%.3f,\"writes_per_msg\":%.3f,\"iterations_per_s\":%.0f,"
           "\"core_share\":%.3f,\"p50_us\":%u,\"p99_us\":%u}\n",
           pairs, rate, (unsigned long long)msgs, res[0] ? "true" : "false",
           (user + sys) * 1e6 / (double)msgs, user * 1e6 / (double)msgs, sys * 1e6 / (double)msgs,
           (double)reads / (double)msgs, (double)writes / (double)msgs,
           (double)iters * 1e9 / (double)(to - from), (user + sys) * 1e9 / (double)(to - from),
           res[1], res[2]);
    for (long i = 0; i < 2 * pairs; i++) {
        free(out[i].data);
        close(i < pairs ? fs[i] : fr[i - pairs]);
        close(i < pairs ? gs[i] : gr[i - pairs]);
    }
    free(out), free(dirty), free(rb), free(part), free(held);
    free(gs), free(gr), free(fs), free(fr);
    close(ep), close(ls);
    return 0;
}
