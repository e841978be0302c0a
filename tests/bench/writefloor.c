/*
 * writefloor: what one small write to each of N loopback TCP connections
 * costs on this machine, the floor under a group fan-out (every member
 * device's Deliver is one TLS record and one write(2) on its own socket;
 * on loopback the receiver's softirq work runs on the writer's core too).
 * No TLS, no libuv: bare write(2) of --size bytes to each of --sockets
 * accepted sockets, then the peers read them; five rounds.
 *
 *   writefloor [--sockets N] [--size B]   (run it under taskset -c 0)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = 999, size = 330;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sockets") == 0)
            n = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atol(argv[i + 1]);
    }
    if (n <= 0 || n > 9000 || size <= 0 || size > 4096 || argc % 2 == 0) {
        fprintf(stderr, "usage: writefloor [--sockets 1..9000] [--size 1..4096]\n");
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
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        for (long i = 0; i < n; i++)
            if (write(sv[i], buf, (size_t)size) != size)
                return 1;
        double t1 = now_s();
        for (long i = 0; i < n; i++)
            if (read(cl[i], rb, sizeof(rb)) <= 0)
                return 1;
        printf("{\"round\":%d,\"sockets\":%ld,\"size\":%ld,\"ms\":%.2f,\"us_per_write\":%.2f}\n", r,
               n, size, (t1 - t0) * 1e3, (t1 - t0) * 1e6 / (double)n);
    }
    return 0;
}
