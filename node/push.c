/*
 * Wake-ups for offline devices (issue: notifications). The send path only
 * marks offline recipients `notify`; the store writes (at most one pending)
 * push event per device in the same batch as the envelope. This thread
 * drains those events to the configured gateway with a UnifiedPush-style
 * HTTP POST whose body names only the device (never content or sender),
 * and deletes each event once the gateway answered 2xx. Failures back off
 * exponentially; events survive restarts, so a wake-up is delivered at
 * least once. The send path never waits for any of this.
 */
#define _DEFAULT_SOURCE /* getaddrinfo flags, usleep */
#include "node/node_internal.h"

#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PUSH_BATCH        64
#define PUSH_TIMEOUT_MS   5000
#define PUSH_BACKOFF_MAX  60000
#define PUSH_IDLE_POLL_MS 1000

struct cn_push {
    cn_server_t *server;
    char host[256], port[8], path[512];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    atomic_uint_fast64_t sent, failed;
};

/* Parses http://host[:port][/path]; only plain HTTP (a gateway on the
 * operator's network or loopback). */
static int parse_url(cn_push_t *p, const char *url)
{
    CN_ENSURE(strncmp(url, "http://", 7) == 0, CN_EINVAL);
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', hlen);
    size_t namelen = colon ? (size_t)(colon - h) : hlen;
    CN_ENSURE(namelen > 0 && namelen < sizeof(p->host), CN_EINVAL);
    memcpy(p->host, h, namelen);
    p->host[namelen] = '\0';
    size_t plen = colon ? hlen - namelen - 1 : 2;
    CN_ENSURE(plen > 0 && plen < sizeof(p->port), CN_EINVAL);
    memcpy(p->port, colon ? colon + 1 : "80", plen);
    p->port[plen] = '\0';
    snprintf(p->path, sizeof(p->path), "%s", slash ? slash : "/");
    return CN_OK;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    uint64_t now = cn_now_ms();
    CN_ENSURE(now < deadline, CN_ETIMEDOUT);
    struct pollfd pfd = {fd, events, 0};
    CN_ENSURE(poll(&pfd, 1, (int)(deadline - now)) == 1, CN_ETIMEDOUT);
    return CN_OK;
}

static int connect_gateway(cn_push_t *p, uint64_t deadline)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    CN_ENSURE(getaddrinfo(p->host, p->port, &hints, &res) == 0, CN_EIO);
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd >= 0 ? connect(fd, res->ai_addr, res->ai_addrlen) : -1;
    freeaddrinfo(res);
    if (fd < 0)
        return CN_EIO;
    int err = 0;
    socklen_t len = sizeof(err);
    if (rc != 0 && (wait_fd(fd, POLLOUT, deadline) < 0 ||
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
        close(fd);
        return CN_EIO;
    }
    return fd;
}

/* POSTs one wake-up; returns the HTTP status or a negative error. */
static int post_wakeup(cn_push_t *p, const uint8_t *device)
{
    uint64_t deadline = cn_now_ms() + PUSH_TIMEOUT_MS;
    char hex[2 * CN_DEVICE_ID_LEN + 1], req[1024];
    cn_hex_encode(hex, device, CN_DEVICE_ID_LEN);
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n{\"device\":\"%s\"}",
                     p->path, p->host, strlen(hex) + 13, hex);
    int fd = connect_gateway(p, deadline);
    CN_TRY(fd);
    int status = CN_EIO;
    if (n > 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        char resp[64] = {0};
        size_t got = 0;
        while (got < sizeof(resp) - 1 && wait_fd(fd, POLLIN, deadline) == 0) {
            ssize_t r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
            if (memchr(resp, '\n', got))
                break;
        }
        int code;
        if (sscanf(resp, "HTTP/1.%*d %d", &code) == 1)
            status = code;
    }
    close(fd);
    return status;
}

typedef struct batch {
    uint64_t seq[PUSH_BATCH];
    uint8_t dev[PUSH_BATCH][CN_DEVICE_ID_LEN];
    uint32_t n;
} batch_t;

static int on_event(void *ctx, uint64_t seq, const uint8_t dev[CN_DEVICE_ID_LEN], uint64_t t)
{
    (void)t;
    batch_t *b = ctx;
    b->seq[b->n] = seq;
    memcpy(b->dev[b->n], dev, CN_DEVICE_ID_LEN);
    return ++b->n == PUSH_BATCH;
}

static void done_noop(cn_store_op_t *op)
{
    free(op);
}

/* Sends one batch; returns true when every event was handled. */
static bool drain_batch(cn_push_t *p, const batch_t *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        int status = post_wakeup(p, b->dev[i]);
        if (status < 200 || status > 299) {
            atomic_fetch_add(&p->failed, 1);
            cn_log_warn("push_failed", "gateway=%s:%s status=%d", p->host, p->port, status);
            return false;
        }
        atomic_fetch_add(&p->sent, 1);
        cn_store_op_t *op = calloc(1, sizeof(*op));
        if (!op)
            return false;
        op->type = CN_OP_PUSH_DONE;
        op->done = done_noop;
        op->u.push_done.event_seq = b->seq[i];
        memcpy(op->u.push_done.device_id, b->dev[i], CN_DEVICE_ID_LEN);
        if (cn_store_submit(p->server->store, op) < 0) {
            free(op);
            return false;
        }
    }
    return true;
}

/* Waits up to ms for a kick or stop; returns false when stopping. */
static bool nap(cn_push_t *p, uint64_t ms)
{
    struct timespec ts;
    cn_deadline(&ts, CLOCK_REALTIME, ms);
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !p->kicked)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0)
            break;
    p->kicked = false;
    bool go = !p->stop;
    pthread_mutex_unlock(&p->mu);
    return go;
}

static void *push_main(void *arg)
{
    cn_push_t *p = arg;
    uint64_t backoff = 0, after = 0;
    cn_thread_name("cn-push");
    while (nap(p, backoff ? backoff : PUSH_IDLE_POLL_MS)) {
        batch_t b = {.n = 0};
        /* Events done in this pass are deleted asynchronously; skip past
         * them by seq, and start over from the beginning when idle. */
        if (cn_store_push_pending(p->server->store, after, PUSH_BATCH, on_event, &b) < 0)
            continue;
        if (b.n == 0) {
            after = 0;
            continue;
        }
        if (drain_batch(p, &b)) {
            backoff = 0;
            after = b.seq[b.n - 1];
            if (b.n == PUSH_BATCH)
                cn__push_kick(p); /* more to do: no nap */
        } else {
            after = 0;
            backoff = backoff ? CN_MIN(backoff * 2, PUSH_BACKOFF_MAX) : 500;
        }
    }
    return NULL;
}

int cn__push_new(cn_server_t *s, const char *url, cn_push_t **out)
{
    cn_push_t *p = calloc(1, sizeof(*p));
    CN_ENSURE(p != NULL, CN_ENOMEM);
    p->server = s;
    if (parse_url(p, url) < 0) {
        free(p);
        return CN_EINVAL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, push_main, p) != 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return CN_EINTERNAL;
    }
    *out = p;
    return CN_OK;
}

void cn__push_kick(cn_push_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->kicked = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void cn__push_stats(cn_push_t *p, uint64_t *sent, uint64_t *failed)
{
    *sent = p ? atomic_load(&p->sent) : 0;
    *failed = p ? atomic_load(&p->failed) : 0;
}

void cn__push_free(cn_push_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
