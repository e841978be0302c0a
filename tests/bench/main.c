/*
 * chatbench: options, worker processes, result merging and the report.
 *
 *   chatbench SCENARIO [options]
 *
 * With --procs P the parent forks P workers that each run the scenario on
 * their share (pairs, connections, rate) and meet at barriers (so their
 * schedules start together and the parent can read the node's RSS while
 * every connection is up); the parent merges their histograms and counts.
 */
#include "crypto/cn_crypto.h"
#include "tests/bench/bench.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bench_t g_bench;

static double g_hook_extra[8];  /* set by the parent at barriers (idle: RSS) */
static double g_node_cpu0 = -1; /* node CPU seconds when the load started */
static double g_loadavg;        /* 1-minute load average when the load started */

/* utime + stime in seconds from a /proc stat file, and its comm (the
 * thread's name) into comm[16] when comm is not NULL; -1 when unavailable. */
static double stat_cpu_s(const char *path, char *comm)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *open = strchr(buf, '(');
    const char *p = strrchr(buf, ')'); /* comm may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!open || !p || p < open ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    if (comm) {
        size_t len = (size_t)(p - open - 1);
        len = len < 15 ? len : 15;
        memcpy(comm, open + 1, len);
        comm[len] = 0;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double node_cpu_s(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    return stat_cpu_s(path, NULL);
}

/*
 * The node's CPU by thread, classed by the names the node gives its
 * threads (cn_thread_name): the I/O loops, the store writer, RocksDB's
 * flush and compaction pool, and the rest (main, push, re-seal).
 */
enum { CPU_LOOP, CPU_STORE, CPU_ROCKSDB, CPU_OTHER, CPU_CLASSES };
#define CPU_THREADS_MAX 256
typedef struct {
    int tid[CPU_THREADS_MAX];
    double cpu[CPU_THREADS_MAX];
    int cls[CPU_THREADS_MAX];
    size_t n;
} thread_cpu_t;
static thread_cpu_t g_threads0; /* when the load started */

static int thread_class(const char *comm)
{
    if (strncmp(comm, "cn-loop", 7) == 0)
        return CPU_LOOP;
    if (strcmp(comm, "cn-store") == 0)
        return CPU_STORE;
    if (strncmp(comm, "rocksdb:", 8) == 0)
        return CPU_ROCKSDB;
    return CPU_OTHER;
}

static void threads_read(int pid, thread_cpu_t *t)
{
    char dir[64], path[96], comm[16];
    t->n = 0;
    snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; t->n < CPU_THREADS_MAX && (e = readdir(d)) != NULL;) {
        int tid = atoi(e->d_name);
        if (tid <= 0)
            continue;
        snprintf(path, sizeof(path), "%s/%d/stat", dir, tid);
        double cpu = stat_cpu_s(path, comm);
        if (cpu < 0)
            continue;
        t->tid[t->n] = tid;
        t->cpu[t->n] = cpu;
        t->cls[t->n] = thread_class(comm);
        t->n++;
    }
    closedir(d);
}

/* CPU seconds per class since g_threads0; threads started since then count
 * from 0, threads gone since then are missing (the node keeps its threads). */
static void threads_delta(int pid, double out[CPU_CLASSES])
{
    static thread_cpu_t now;
    threads_read(pid, &now);
    for (int c = 0; c < CPU_CLASSES; c++)
        out[c] = 0;
    for (size_t i = 0; i < now.n; i++) {
        double before = 0;
        for (size_t j = 0; j < g_threads0.n; j++)
            if (g_threads0.tid[j] == now.tid[i])
                before = g_threads0.cpu[j];
        out[now.cls[i]] += now.cpu[i] - before;
    }
}

static const char *const USAGE =
    "usage: chatbench SCENARIO [options]\n"
    "scenarios:\n"
    "  relay      --pairs N --rate R --size S --duration D   sender->receiver pairs\n"
    "  fanout     --members G --rounds K --interval MS        a G-device group (sender + G-1):\n"
    "             [--pairwise]                                one group Send per round (or G-1 "
    "1:1)\n"
    "  connect    --rate R --duration D                       TLS+upgrade+auth handshakes/s\n"
    "  idle       --connections N --node-pid PID             node RSS per idle connection\n"
    "  drain      --queued M                                  queued messages on reconnect\n"
    "  peer-mqtt  --pairs N --rate R --size S --duration D   the relay load on an MQTT broker\n"
    "options:\n"
    "  --server URL (wss://127.0.0.1:8443, mqtts://127.0.0.1:8883)  --ca FILE | --insecure\n"
    "  --sni NAME (localhost)  --json  --procs P (1)  --sources K (8: 127.0.0.1..K)\n"
    "  --warmup S (1)  --tick-us U (200)  --ack-batch N (64)  --concurrency N (64)\n"
    "  --hold S (3)  --qos 0|1 (1)  --drain-timeout S (10)\n"
    "  --ack-replies (receivers ask for an AckOk per Ack; by default their Acks are\n"
    "                 silent_ok, answered only on failure, as a receiving client's are)\n";

static int parse_url(bench_opts_t *o, const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *colon = strrchr(p, ':');
    if (!colon)
        return -1;
    size_t hl = (size_t)(colon - p);
    if (hl == 0 || hl >= sizeof(o->host))
        return -1;
    memcpy(o->host, p, hl);
    o->host[hl] = 0;
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535)
        return -1;
    o->port = (uint16_t)port;
    if (strcmp(o->host, "localhost") == 0)
        snprintf(o->host, sizeof(o->host), "127.0.0.1");
    return 0;
}

static int parse_scenario(bench_opts_t *o, const char *s)
{
    static const struct {
        const char *name;
        enum bench_scenario sc;
    } names[] = {{"relay", BENCH_RELAY}, {"fanout", BENCH_FANOUT}, {"connect", BENCH_CONNECT},
                 {"idle", BENCH_IDLE},   {"drain", BENCH_DRAIN},   {"peer-mqtt", BENCH_PEER_MQTT}};
    for (size_t i = 0; i < CN_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i].name) == 0) {
            o->scenario = names[i].sc;
            o->scenario_name = names[i].name;
            return 0;
        }
    }
    return -1;
}

static int parse_opts(bench_opts_t *o, int argc, char **argv)
{
    *o = (bench_opts_t){.pairs = 100,
                        .rate = 10000,
                        .size = 256,
                        .duration = 10,
                        .warmup = 1,
                        .members = 1000,
                        .rounds = 50,
                        .interval_ms = 100,
                        .connections = 1000,
                        .queued = 100000,
                        .sources = 8,
                        .procs = 1,
                        .tick_us = 200,
                        .ack_batch = 64,
                        .concurrency = 64,
                        .hold = 3,
                        .qos = 1,
                        .drain_timeout = 10};
    snprintf(o->sni, sizeof(o->sni), "localhost");
    if (argc < 2 || parse_scenario(o, argv[1]) < 0)
        return -1;
    if (parse_url(o, o->scenario == BENCH_PEER_MQTT ? "127.0.0.1:8883" : "127.0.0.1:8443") < 0)
        return -1;
    enum {
        O_SERVER = 256,
        O_CA,
        O_INSECURE,
        O_JSON,
        O_PAIRS,
        O_RATE,
        O_SIZE,
        O_DURATION,
        O_WARMUP,
        O_MEMBERS,
        O_ROUNDS,
        O_INTERVAL,
        O_CONNS,
        O_QUEUED,
        O_PID,
        O_SOURCES,
        O_PROCS,
        O_TICK,
        O_ACK,
        O_CONC,
        O_HOLD,
        O_QOS,
        O_SNI,
        O_DRAIN,
        O_PAIRWISE,
        O_ACK_REPLIES
    };
    static const struct option lo[] = {{"server", 1, 0, O_SERVER},
                                       {"ca", 1, 0, O_CA},
                                       {"insecure", 0, 0, O_INSECURE},
                                       {"json", 0, 0, O_JSON},
                                       {"pairs", 1, 0, O_PAIRS},
                                       {"rate", 1, 0, O_RATE},
                                       {"size", 1, 0, O_SIZE},
                                       {"duration", 1, 0, O_DURATION},
                                       {"warmup", 1, 0, O_WARMUP},
                                       {"members", 1, 0, O_MEMBERS},
                                       {"rounds", 1, 0, O_ROUNDS},
                                       {"interval", 1, 0, O_INTERVAL},
                                       {"connections", 1, 0, O_CONNS},
                                       {"queued", 1, 0, O_QUEUED},
                                       {"node-pid", 1, 0, O_PID},
                                       {"sources", 1, 0, O_SOURCES},
                                       {"procs", 1, 0, O_PROCS},
                                       {"tick-us", 1, 0, O_TICK},
                                       {"ack-batch", 1, 0, O_ACK},
                                       {"concurrency", 1, 0, O_CONC},
                                       {"hold", 1, 0, O_HOLD},
                                       {"qos", 1, 0, O_QOS},
                                       {"sni", 1, 0, O_SNI},
                                       {"drain-timeout", 1, 0, O_DRAIN},
                                       {"pairwise", 0, 0, O_PAIRWISE},
                                       {"ack-replies", 0, 0, O_ACK_REPLIES},
                                       {0, 0, 0, 0}};
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case O_SERVER:
            if (parse_url(o, optarg) < 0)
                return -1;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_INSECURE:
            o->insecure = true;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_PAIRS:
            o->pairs = (unsigned)atoi(optarg);
            break;
        case O_RATE:
            o->rate = atof(optarg);
            break;
        case O_SIZE:
            o->size = (unsigned)atoi(optarg);
            break;
        case O_DURATION:
            o->duration = atof(optarg);
            break;
        case O_WARMUP:
            o->warmup = atof(optarg);
            break;
        case O_MEMBERS:
            o->members = (unsigned)atoi(optarg);
            break;
        case O_ROUNDS:
            o->rounds = (unsigned)atoi(optarg);
            break;
        case O_INTERVAL:
            o->interval_ms = atof(optarg);
            break;
        case O_CONNS:
            o->connections = (unsigned)atoi(optarg);
            break;
        case O_QUEUED:
            o->queued = (unsigned)atoi(optarg);
            break;
        case O_PID:
            o->node_pid = atoi(optarg);
            break;
        case O_SOURCES:
            o->sources = (unsigned)atoi(optarg);
            break;
        case O_PROCS:
            o->procs = (unsigned)atoi(optarg);
            break;
        case O_TICK:
            o->tick_us = (unsigned)atoi(optarg);
            break;
        case O_ACK:
            o->ack_batch = (unsigned)atoi(optarg);
            break;
        case O_CONC:
            o->concurrency = (unsigned)atoi(optarg);
            break;
        case O_HOLD:
            o->hold = atof(optarg);
            break;
        case O_QOS:
            o->qos = (unsigned)atoi(optarg);
            break;
        case O_SNI:
            snprintf(o->sni, sizeof(o->sni), "%s", optarg);
            break;
        case O_DRAIN:
            o->drain_timeout = atof(optarg);
            break;
        case O_PAIRWISE:
            o->pairwise = true;
            break;
        case O_ACK_REPLIES:
            o->ack_replies = true;
            break;
        default:
            return -1;
        }
    }
    if (optind != argc || (!o->ca && !o->insecure) || o->procs == 0 || o->procs > 64 ||
        o->size < BENCH_PAYLOAD_MIN || o->size > CN_CIPHERTEXT_MAX || o->rate <= 0 ||
        o->sources == 0 || o->sources > 254 || o->ack_batch == 0 ||
        o->ack_batch > CN_ACK_SEQS_MAX || o->concurrency == 0 || o->tick_us < 20 || o->qos > 1 ||
        o->pairs == 0)
        return -1;
    return 0;
}

static SSL_CTX *client_ctx(const bench_opts_t *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Every handshake is a full one: no client session cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return ctx;
}

/* ------------------------------------------------------------- workers */

typedef struct worker {
    pid_t pid;
    int up, down;
} worker_t;

static int read_full(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t r = write(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

void bench_barrier(int step)
{
    bench_flush_all();
    if (g_bench.up_fd < 0) {
        bench_barrier_hook(step);
        return;
    }
    char msg[5] = {'R'};
    memcpy(msg + 1, &step, sizeof(step));
    char go;
    if (write_full(g_bench.up_fd, msg, sizeof(msg)) < 0 || read_full(g_bench.down_fd, &go, 1) < 0)
        _exit(3); /* the parent is gone */
}

static int run_scenario(void)
{
    switch (g_bench.o.scenario) {
    case BENCH_RELAY:
        return bench_relay();
    case BENCH_FANOUT:
        return bench_fanout();
    case BENCH_CONNECT:
        return bench_connect();
    case BENCH_IDLE:
        return bench_idle();
    case BENCH_DRAIN:
        return bench_drain();
    case BENCH_PEER_MQTT:
        return bench_peer_mqtt();
    }
    return -1;
}

static int worker_main(void)
{
    g_bench.loop = uv_default_loop();
    bench_hist_init(&g_bench.r.hist);
    bench_hist_init(&g_bench.r.hist2);
    int rc = run_scenario();
    if (rc < 0 && g_bench.fatal)
        fprintf(stderr, "chatbench: %s\n", g_bench.fatal);
    return rc;
}

static void merge(bench_result_t *dst, const bench_result_t *src)
{
    dst->sent += src->sent;
    dst->sent_ok += src->sent_ok;
    dst->errors += src->errors;
    dst->delivered += src->delivered;
    dst->duplicates += src->duplicates;
    dst->late_ticks += src->late_ticks;
    dst->elapsed_s = CN_MAX(dst->elapsed_s, src->elapsed_s);
    dst->send_s = CN_MAX(dst->send_s, src->send_s);
    const char *const *names = bench_extra_names(g_bench.o.scenario);
    for (size_t i = 0; names && names[i] && i < 8; i++) {
        size_t len = strlen(names[i]);
        /* Rates and counts add up across workers; maxima and times do not. */
        bool is_max = (len > 4 && strcmp(names[i] + len - 4, "_max") == 0) ||
                      (len > 3 && strcmp(names[i] + len - 3, "_ms") == 0);
        dst->extra[i] =
            is_max ? CN_MAX(dst->extra[i], src->extra[i]) : dst->extra[i] + src->extra[i];
    }
    bench_hist_merge(&dst->hist, &src->hist);
    bench_hist_merge(&dst->hist2, &src->hist2);
}

/* Parent of --procs workers: relays barriers, collects results. */
static int parent_main(worker_t *w, unsigned n, bench_result_t *total)
{
    bench_result_t *r = malloc(sizeof(*r));
    if (!r)
        return -1;
    for (;;) {
        char msg[5];
        if (read_full(w[0].up, msg, 1) < 0)
            goto fail;
        if (msg[0] == 'R') {
            int step;
            if (read_full(w[0].up, &step, sizeof(step)) < 0)
                goto fail;
            for (unsigned i = 1; i < n; i++)
                if (read_full(w[i].up, msg, sizeof(msg)) < 0 || msg[0] != 'R')
                    goto fail;
            bench_barrier_hook(step);
            for (unsigned i = 0; i < n; i++)
                if (write_full(w[i].down, "G", 1) < 0)
                    goto fail;
            continue;
        }
        break; /* 'E' from worker 0: everyone reports */
    }
    for (unsigned i = 0; i < n; i++) {
        if (i > 0) {
            char e;
            if (read_full(w[i].up, &e, 1) < 0 || e != 'E')
                goto fail;
        }
        if (read_full(w[i].up, r, sizeof(*r)) < 0)
            goto fail;
        merge(total, r);
    }
    free(r);
    return 0;
fail:
    free(r);
    fprintf(stderr, "chatbench: a worker failed\n");
    for (unsigned i = 0; i < n; i++)
        kill(w[i].pid, SIGKILL);
    return -1;
}

static int run_workers(bench_result_t *total)
{
    unsigned n = g_bench.o.procs;
    worker_t w[64];
    for (unsigned i = 0; i < n; i++) {
        int up[2], down[2];
        if (pipe(up) < 0 || pipe(down) < 0)
            return -1;
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            g_bench.proc = i;
            g_bench.up_fd = up[1];
            g_bench.down_fd = down[0];
            int rc = worker_main();
            g_bench.r.errors += rc < 0;
            if (write_full(up[1], "E", 1) < 0 ||
                write_full(up[1], &g_bench.r, sizeof(g_bench.r)) < 0)
                _exit(3);
            _exit(rc < 0 ? 1 : 0);
        }
        close(up[1]);
        close(down[0]);
        w[i] = (worker_t){.pid = pid, .up = up[0], .down = down[1]};
    }
    int rc = parent_main(w, n, total);
    for (unsigned i = 0; i < n; i++) {
        int st;
        waitpid(w[i].pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = -1;
        close(w[i].up);
        close(w[i].down);
    }
    return rc;
}

/* -------------------------------------------------------------- report */

void bench_barrier_hook(int step)
{
    if (step == 1 && g_bench.o.node_pid > 0) {
        g_node_cpu0 = node_cpu_s(g_bench.o.node_pid);
        threads_read(g_bench.o.node_pid, &g_threads0);
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
            if (fscanf(f, "%lf", &g_loadavg) != 1)
                g_loadavg = 0;
            fclose(f);
        }
    }
    if (g_bench.o.scenario != BENCH_IDLE || g_bench.o.node_pid <= 0)
        return;
    if (step == 1) {
        g_hook_extra[0] = (double)bench_rss_kib(g_bench.o.node_pid);
    } else if (step == 2) {
        /* Let the node settle (timers, released TLS buffers) before reading. */
        struct timespec ts = {.tv_sec = (time_t)g_bench.o.hold,
                              .tv_nsec =
                                  (long)((g_bench.o.hold - (double)(time_t)g_bench.o.hold) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        g_hook_extra[1] = (double)bench_rss_kib(g_bench.o.node_pid);
    }
}

uint64_t bench_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t kib = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtoull(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

#define US(ns) ((double)(ns) / 1000.0)

static void report(const bench_result_t *r, int rc, double node_cpu,
                   const double by_class[CPU_CLASSES])
{
    const bench_opts_t *o = &g_bench.o;
    uint64_t lost = r->sent_ok > r->delivered ? r->sent_ok - r->delivered : 0;
    uint64_t unanswered = r->sent > r->sent_ok + r->errors ? r->sent - r->sent_ok - r->errors : 0;
    uint64_t ops = o->scenario == BENCH_IDLE ? r->sent_ok : r->delivered;
    double cpu_per_op = node_cpu >= 0 && ops ? node_cpu * 1e6 / (double)ops : 0;
    if (o->scenario == BENCH_CONNECT || o->scenario == BENCH_IDLE)
        lost = 0;
    double per_s = r->elapsed_s > 0 ? (double)r->delivered / r->elapsed_s : 0;
    const bench_hist_t *h = &r->hist;
    const char *const *names = bench_extra_names(o->scenario);
    FILE *out = stdout;
    if (o->json) {
        fprintf(out,
                "{\"scenario\":\"%s\",\"ok\":%s,\"procs\":%u,\"rate\":%.0f,\"size\":%u,"
                "\"duration_s\":%.1f,",
                o->scenario_name, rc == 0 ? "true" : "false", o->procs, o->rate, o->size,
                o->duration);
        fprintf(out,
                "\"sent\":%llu,\"sent_ok\":%llu,\"errors\":%llu,\"delivered\":%llu,"
                "\"lost\":%llu,\"unanswered\":%llu,\"duplicates\":%llu,\"late_ticks\":%llu,"
                "\"node_cpu_s\":%.2f,\"node_cpu_us_per_op\":%.1f,\"loadavg\":%.2f,",
                (unsigned long long)r->sent, (unsigned long long)r->sent_ok,
                (unsigned long long)r->errors, (unsigned long long)r->delivered,
                (unsigned long long)lost, (unsigned long long)unanswered,
                (unsigned long long)r->duplicates, (unsigned long long)r->late_ticks,
                node_cpu >= 0 ? node_cpu : 0.0, cpu_per_op, g_loadavg);
        fprintf(out,
                "\"elapsed_s\":%.3f,\"delivered_per_s\":%.0f,\"p50_us\":%.0f,\"p90_us\":%.0f,"
                "\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f,\"mean_us\":%.0f",
                r->elapsed_s, per_s, US(bench_hist_quantile(h, 0.5)),
                US(bench_hist_quantile(h, 0.9)), US(bench_hist_quantile(h, 0.99)),
                US(bench_hist_quantile(h, 0.999)), US(h->max),
                h->count ? US(h->sum / (double)h->count) : 0.0);
        if (node_cpu >= 0 && ops)
            fprintf(out,
                    ",\"node_cpu_loop_us_per_op\":%.1f,\"node_cpu_store_us_per_op\":%.1f,"
                    "\"node_cpu_rocksdb_us_per_op\":%.1f,\"node_cpu_other_us_per_op\":%.1f",
                    by_class[CPU_LOOP] * 1e6 / (double)ops, by_class[CPU_STORE] * 1e6 / (double)ops,
                    by_class[CPU_ROCKSDB] * 1e6 / (double)ops,
                    by_class[CPU_OTHER] * 1e6 / (double)ops);
        if (r->hist2.count)
            fprintf(out, ",\"h2_p50_us\":%.0f,\"h2_p99_us\":%.0f,\"h2_p999_us\":%.0f",
                    US(bench_hist_quantile(&r->hist2, 0.5)),
                    US(bench_hist_quantile(&r->hist2, 0.99)),
                    US(bench_hist_quantile(&r->hist2, 0.999)));
        for (size_t i = 0; names && names[i] && i < 8; i++)
            fprintf(out, ",\"%s\":%.3f", names[i], r->extra[i]);
        fprintf(out, "}\n");
        return;
    }
    fprintf(out,
            "%s: sent %llu (ok %llu, errors %llu) delivered %llu lost %llu dup %llu in %.2f s\n",
            o->scenario_name, (unsigned long long)r->sent, (unsigned long long)r->sent_ok,
            (unsigned long long)r->errors, (unsigned long long)r->delivered,
            (unsigned long long)lost, (unsigned long long)r->duplicates, r->elapsed_s);
    fprintf(out, "  %.0f/s  latency us: p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f\n", per_s,
            US(bench_hist_quantile(h, 0.5)), US(bench_hist_quantile(h, 0.9)),
            US(bench_hist_quantile(h, 0.99)), US(bench_hist_quantile(h, 0.999)), US(h->max));
    if (r->hist2.count)
        fprintf(out, "  second histogram us: p50 %.0f p99 %.0f p99.9 %.0f\n",
                US(bench_hist_quantile(&r->hist2, 0.5)), US(bench_hist_quantile(&r->hist2, 0.99)),
                US(bench_hist_quantile(&r->hist2, 0.999)));
    for (size_t i = 0; names && names[i] && i < 8; i++)
        fprintf(out, "  %s %.3f\n", names[i], r->extra[i]);
    if (node_cpu >= 0)
        fprintf(out, "  node cpu %.2f s, %.1f us per op (load average %.2f)\n", node_cpu,
                cpu_per_op, g_loadavg);
    if (node_cpu >= 0 && ops)
        fprintf(out,
                "  per op: loop %.1f us, store writer %.1f us, rocksdb %.1f us, other %.1f us\n",
                by_class[CPU_LOOP] * 1e6 / (double)ops, by_class[CPU_STORE] * 1e6 / (double)ops,
                by_class[CPU_ROCKSDB] * 1e6 / (double)ops, by_class[CPU_OTHER] * 1e6 / (double)ops);
    if (unanswered)
        fprintf(out, "  %llu requests unanswered at the end\n", (unsigned long long)unanswered);
}

int main(int argc, char **argv)
{
    if (parse_opts(&g_bench.o, argc, argv) < 0) {
        fputs(USAGE, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (cn_crypto_init() < 0) {
        fprintf(stderr, "chatbench: crypto init failed\n");
        return 1;
    }
    g_bench.ctx = client_ctx(&g_bench.o);
    if (!g_bench.ctx) {
        fprintf(stderr, "chatbench: TLS context: cannot load %s\n", g_bench.o.ca);
        return 1;
    }
    uint8_t rnd[3];
    cn_random(rnd, sizeof(rnd));
    cn_hex_encode(g_bench.run_id, rnd, sizeof(rnd));
    g_bench.nprocs = g_bench.o.procs;
    g_bench.up_fd = g_bench.down_fd = -1;
    bench_result_t *total = calloc(1, sizeof(*total));
    if (!total)
        return 1;
    bench_hist_init(&total->hist);
    bench_hist_init(&total->hist2);
    int rc;
    if (g_bench.o.procs == 1) {
        rc = worker_main();
        merge(total, &g_bench.r);
    } else {
        rc = run_workers(total);
    }
    const char *const *names = bench_extra_names(g_bench.o.scenario);
    for (size_t i = 0; names && names[i] && i < 8; i++)
        if (g_hook_extra[i] != 0)
            total->extra[i] = g_hook_extra[i];
    if (g_bench.o.scenario == BENCH_IDLE && total->extra[0] > 0 && total->sent_ok > 0)
        total->extra[2] = (total->extra[1] - total->extra[0]) * 1024.0 / (double)total->sent_ok;
    double node_cpu = -1, by_class[CPU_CLASSES] = {0};
    if (g_bench.o.node_pid > 0 && g_node_cpu0 >= 0) {
        double now = node_cpu_s(g_bench.o.node_pid);
        node_cpu = now >= 0 ? now - g_node_cpu0 : -1;
        threads_delta(g_bench.o.node_pid, by_class);
    }
    report(total, rc, node_cpu, by_class);
    free(total);
    SSL_CTX_free(g_bench.ctx);
    bench_users_cleanup();
    return rc == 0 ? 0 : 1;
}
