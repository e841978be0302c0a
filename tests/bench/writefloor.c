/*
 * writefloor: what one small write to each of N loopback TCP connections
 * costs on this machine, the floor under a group fan-out (every member
 * device's Deliver is one TLS record and one write(2) on its own socket;
 * on loopback the receiver's softirq work runs on the writer's core too).
 * No TLS, no libuv: bare write(2) of --size bytes to each of --sockets
 * accepted sockets, then the peers read them; five rounds.
 *
 * With --reader CPU a child process pinned to CPU reads the peers the way
 * chatbench does (epoll, sleeping while nothing is ready), so each write
 * also pays for waking a live reader on the other core, as a fan-out to
 * real clients on loopback does.
 *
 *   writefloor [--sockets N] [--size B] [--reader CPU]   (under taskset -c 0)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

#define ROUNDS 5

/* The child of --reader: reads everything the rounds write, then exits. */
static int reader_main(const int *cl, long n, long size, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int ep = epoll_create1(0);
    if (sched_setaffinity(0, sizeof(set), &set) < 0 || ep < 0)
        return 1;
    for (long i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = cl[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cl[i], &ev) < 0)
            return 1;
    }
    long long want = (long long)ROUNDS * n * size, got = 0;
    struct epoll_event evs[256];
    char rb[8192];
    while (got < want) {
        int k = epoll_wait(ep, evs, 256, 10000);
        if (k <= 0)
            return 1;
        for (int j = 0; j < k; j++) {
            ssize_t r = read(evs[j].data.fd, rb, sizeof(rb));
            if (r <= 0)
                return 1;
            got += r;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    long n = 999, size = 330, reader = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sockets") == 0)
            n = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--reader") == 0)
            reader = atol(argv[i + 1]);
        else
            argc = 0; /* unknown option: usage */
    }
    if (n <= 0 || n > 9000 || size <= 0 || size > 4096 || argc % 2 == 0 || reader < -1 ||
        reader >= CPU_SETSIZE) {
        fprintf(stderr, "usage: writefloor [--sockets 1..9000] [--size 1..4096] [--reader CPU]\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0 || listen(ls, 4096) < 0) {
        perror("writefloor: listen");
        return 1;
    }
    int *cl = calloc((size_t)n, sizeof(int)), *sv = calloc((size_t)n, sizeof(int));
    char *buf = calloc(1, (size_t)size), rb[8192];
    if (!cl || !sv || !buf)
        return 1;
    for (long i = 0; i < n; i++) {
        int one = 1;
        cl[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (cl[i] < 0 || connect(cl[i], (struct sockaddr *)&a, sizeof(a)) < 0 ||
            (sv[i] = accept(ls, NULL, NULL)) < 0) {
            perror("writefloor: connect (raise ulimit -n?)");
            return 1;
        }
        setsockopt(sv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    pid_t child = -1;
    if (reader >= 0) {
        fflush(stdout);
        child = fork();
        if (child < 0) {
            perror("writefloor: fork");
            return 1;
        }
        if (child == 0)
            _exit(reader_main(cl, n, size, (int)reader));
    }
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_s(), c0 = cpu_s();
        for (long i = 0; i < n; i++)
            if (write(sv[i], buf, (size_t)size) != size)
                return 1;
        double t1 = now_s(), c1 = cpu_s();
        if (child < 0) {
            for (long i = 0; i < n; i++)
                if (read(cl[i], rb, sizeof(rb)) <= 0)
                    return 1;
        } else {
            struct timespec pause = {0, 200 * 1000 * 1000}; /* the reader catches up */
            nanosleep(&pause, NULL);
        }
        printf("{\"round\":%d,\"sockets\":%ld,\"size\":%ld,\"reader\":%s,\"ms\":%.2f,"
               "\"us_per_write\":%.2f,\"cpu_us_per_write\":%.2f}\n",
               r, n, size, child < 0 ? "false" : "true", (t1 - t0) * 1e3,
               (t1 - t0) * 1e6 / (double)n, (c1 - c0) * 1e6 / (double)n);
    }
    int status = 0;
    if (child > 0 &&
        (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        fprintf(stderr, "writefloor: the reader did not read every byte\n");
        return 1;
    }
    return 0;
}
