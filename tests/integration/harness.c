/*
 * The integration harness: chatnode child processes, a hand-made TLS
 * WebSocket client and the auth, prekey and send helpers the tests share.
 * See harness.h for the contract. Every wait here polls a file descriptor
 * or a condition with a deadline; nothing sleeps a fixed time to let
 * something happen.
 */
#define _GNU_SOURCE /* prctl, POLLRDHUP, nftw */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define H_START_DEADLINE_MS 15000
#define H_WRITE_DEADLINE_MS 10000
#define H_MAX_OBJECTS       512
#define WS_GUID             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Everything a test made, released by h_teardown. */
static h_node_t *g_nodes[16];
static size_t g_nnodes;
static h_client_t *g_clients[H_MAX_OBJECTS];
static size_t g_nclients;
static h_user_t *g_users[H_MAX_OBJECTS];
static size_t g_nusers;
static unsigned g_handle_counter;

static int g_rcvbuf; /* SO_RCVBUF for new client sockets (0: system default) */
static char g_certdir[64];
static char g_cert[128];
static char g_key[128];
static SSL_CTX *g_ctx;

/* ----------------------------------------------------------------- time */

uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void h_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = h_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* ------------------------------------------------------------ processes */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (dir[0])
        (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs argv (searched in PATH) with stdio on /dev/null; returns its exit status. */
static int run_quiet(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *chatnode_bin(void)
{
    const char *b = getenv("CHATNODE_BIN");
    if (b && b[0])
        return b;
#ifdef CN_CHATNODE_BIN
    return CN_CHATNODE_BIN;
#else
    return NULL;
#endif
}

/* ---------------------------------------------------------------- nodes */

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The port of the `addr=HOST:PORT` field of a log line (0 when absent). */
static uint16_t addr_port(const char *line)
{
    const char *a = strstr(line, " addr=");
    if (!a)
        return 0;
    a += 6;
    size_t len = strcspn(a, " \n");
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (a[i] == ':')
            colon = a + i;
    if (!colon)
        return 0;
    long p = strtol(colon + 1, NULL, 10);
    return p > 0 && p < 65536 ? (uint16_t)p : 0;
}

/* Scans the log from off for the listening lines; true once both were seen. */
static bool scan_listening(h_node_t *n, off_t off)
{
    FILE *f = fopen(n->log, "r");
    if (!f)
        return false;
    if (fseeko(f, off, SEEK_SET) != 0) {
        fclose(f);
        return false;
    }
    char line[2048];
    while (fgets(line, sizeof(line), f)) {
        if (!strchr(line, '\n'))
            break; /* a line still being written: read it again next time */
        if (strstr(line, " event=metrics_listening "))
            n->metrics = addr_port(line);
        else if (strstr(line, " event=listening "))
            n->port = addr_port(line);
    }
    fclose(f);
    return n->port != 0 && n->metrics != 0;
}

void h_set_rcvbuf(int bytes)
{
    g_rcvbuf = bytes;
}

void h_node_dump_log(const h_node_t *n)
{
    FILE *f = fopen(n->log, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s ----\n", n->log);
    char line[2048];
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

int h_node_log_count(const h_node_t *n, const char *needle)
{
    FILE *f = fopen(n->log, "r");
    if (!f)
        return 0;
    int count = 0;
    char line[2048];
    while (fgets(line, sizeof(line), f))
        count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

static void node_spawn(h_node_t *n)
{
    const char *bin = chatnode_bin();
    assert_non_null(bin);
    const char *argv[64];
    size_t k = 0;
    const char *base[] = {
        bin,           "--listen",  "127.0.0.1:0", "--data",         n->data, "--tls-cert",
        g_cert,        "--tls-key", g_key,         "--admin-socket", "",      "--metrics",
        "127.0.0.1:0", "--threads", "2",           "--log-level",    "info"};
    for (size_t i = 0; i < CN_ARRAY_LEN(base); i++)
        argv[k++] = base[i];
    for (size_t i = 0; n->extra[i] && k < CN_ARRAY_LEN(argv) - 1; i++)
        argv[k++] = n->extra[i];
    argv[k] = NULL;

    off_t off = file_size(n->log);
    int logfd = open(n->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(logfd >= 0);
    n->port = n->metrics = 0;
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The node dies with the test process, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(logfd, 2);
        char *const *av;
        memcpy(&av, &(const char *const *){argv}, sizeof(av));
        execv(bin, av);
        _exit(127);
    }
    close(logfd);
    n->pid = pid;
    uint64_t deadline = h_now_ms() + H_START_DEADLINE_MS;
    while (!scan_listening(n, off)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            n->pid = 0;
            n->exit_status = st;
            h_node_dump_log(n);
            fail_msg("chatnode exited during startup (status 0x%x)", (unsigned)st);
        }
        if (remaining_ms(deadline) == 0) {
            h_node_dump_log(n);
            fail_msg("chatnode did not log event=listening within %d ms", H_START_DEADLINE_MS);
        }
        h_sleep_ms(5);
    }
}

h_node_t *h_node_start(const char *const *extra)
{
    assert_true(g_nnodes < CN_ARRAY_LEN(g_nodes));
    h_node_t *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    g_nodes[g_nnodes++] = n;
    snprintf(n->dir, sizeof(n->dir), "/tmp/cn-integ-XXXXXX");
    assert_non_null(mkdtemp(n->dir));
    snprintf(n->data, sizeof(n->data), "%s/data", n->dir);
    snprintf(n->log, sizeof(n->log), "%s/node.log", n->dir);
    for (size_t i = 0; extra && extra[i]; i++) {
        assert_true(i < CN_ARRAY_LEN(n->extra) - 1);
        n->extra[i] = strdup(extra[i]);
    }
    node_spawn(n);
    return n;
}

void h_node_restart(h_node_t *n)
{
    assert_int_equal(n->pid, 0);
    node_spawn(n);
}

bool h_node_alive(h_node_t *n)
{
    if (n->pid == 0)
        return false;
    int st;
    pid_t r = waitpid(n->pid, &st, WNOHANG);
    if (r == n->pid) {
        n->pid = 0;
        n->exit_status = st;
        return false;
    }
    return true;
}

int h_node_wait(h_node_t *n, int deadline_ms)
{
    if (n->pid == 0)
        return n->exit_status;
    uint64_t deadline = h_now_ms() + (uint64_t)deadline_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(n->pid, &st, WNOHANG);
        if (r == n->pid) {
            n->pid = 0;
            n->exit_status = st;
            return st;
        }
        if (remaining_ms(deadline) == 0)
            return -1;
        h_sleep_ms(5);
    }
}

int h_node_stop(h_node_t *n, int deadline_ms)
{
    if (n->pid == 0)
        return n->exit_status;
    kill(n->pid, SIGTERM);
    int st = h_node_wait(n, deadline_ms);
    if (st == -1)
        h_node_kill(n);
    return st;
}

void h_node_kill(h_node_t *n)
{
    if (n->pid == 0)
        return;
    kill(n->pid, SIGKILL);
    int st;
    while (waitpid(n->pid, &st, 0) < 0 && errno == EINTR) {
    }
    n->pid = 0;
    n->exit_status = st;
}

/* ------------------------------------------------------------ plain HTTP */

int h_tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    /* Before connect, so that the window scale matches the small buffer. */
    if (g_rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &g_rcvbuf, sizeof(g_rcvbuf));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int e = errno;
        close(fd);
        fail_msg("connect to 127.0.0.1:%u: %s", port, strerror(e));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int h_http_get(uint16_t port, const char *path, char **body)
{
    *body = NULL;
    int fd = h_tcp_connect(port);
    char req[512];
    int len =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n", path, port);
    if (write(fd, req, (size_t)len) != len) {
        close(fd);
        return -1;
    }
    set_nonblock(fd);
    cn_buf_t in;
    cn_buf_init(&in);
    uint64_t deadline = h_now_ms() + 5000;
    int status = -1;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, remaining_ms(deadline));
        if (pr <= 0)
            break;
        char buf[8192];
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0) {
            status = 0; /* EOF: the response is complete */
            break;
        }
        if (cn_buf_append(&in, buf, (size_t)r) < 0)
            break;
    }
    close(fd);
    if (status == 0 && cn_buf_put_u8(&in, 0) == 0) {
        const char *s = (const char *)in.data;
        const char *sep = strstr(s, "\r\n\r\n");
        if (strncmp(s, "HTTP/1.1 ", 9) == 0 && sep) {
            status = atoi(s + 9);
            *body = strdup(sep + 4);
        } else {
            status = -1;
        }
    }
    cn_buf_dispose(&in);
    return status;
}

double h_metric(h_node_t *n, const char *name)
{
    char *body;
    int status = h_http_get(n->metrics, "/metrics", &body);
    assert_int_equal(status, 200);
    assert_non_null(body);
    size_t nl = strlen(name);
    double v = -1;
    bool found = false;
    for (char *line = body; line && *line;) {
        char *end = strchr(line, '\n');
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
            v = strtod(line + nl + 1, NULL);
            found = true;
            break;
        }
        line = end ? end + 1 : NULL;
    }
    free(body);
    if (!found)
        fail_msg("metric %s not exposed", name);
    return v;
}

/* ---------------------------------------------------------------- users */

h_user_t *h_user_new(const char *prefix)
{
    assert_true(g_nusers < H_MAX_OBJECTS);
    h_user_t *u = calloc(1, sizeof(*u));
    assert_non_null(u);
    g_users[g_nusers++] = u;
    assert_int_equal(cn_identity_generate(&u->id), CN_OK);
    snprintf(u->handle, sizeof(u->handle), "%.16s-%u-%04x", prefix ? prefix : "u",
             ++g_handle_counter, (unsigned)cn_random_uniform(0x10000));
    return u;
}

/* --------------------------------------------------------------- client */

static void client_forget(h_client_t *c)
{
    for (size_t i = 0; i < g_nclients; i++) {
        if (g_clients[i] == c) {
            g_clients[i] = g_clients[--g_nclients];
            return;
        }
    }
}

void h_client_free(h_client_t *c)
{
    if (!c)
        return;
    client_forget(c);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    cn_buf_dispose(&c->in);
    cn_buf_dispose(&c->msg);
    for (size_t i = 0; i < c->nowned; i++)
        chat__server_frame__free_unpacked(c->owned[i], NULL);
    free(c->owned);
    free(c->queue);
    free(c);
}

static void own(h_client_t *c, Chat__ServerFrame *f)
{
    if (c->nowned == c->capowned) {
        size_t cap = c->capowned ? c->capowned * 2 : 64;
        Chat__ServerFrame **p = realloc(c->owned, cap * sizeof(*p));
        assert_non_null(p);
        c->owned = p;
        c->capowned = cap;
    }
    c->owned[c->nowned++] = f;
}

static void enqueue(h_client_t *c, Chat__ServerFrame *f)
{
    if (c->nqueue == c->capqueue) {
        size_t cap = c->capqueue ? c->capqueue * 2 : 64;
        Chat__ServerFrame **p = realloc(c->queue, cap * sizeof(*p));
        assert_non_null(p);
        c->queue = p;
        c->capqueue = cap;
    }
    c->queue[c->nqueue++] = f;
}

static Chat__ServerFrame *dequeue_at(h_client_t *c, size_t i)
{
    Chat__ServerFrame *f = c->queue[i];
    memmove(&c->queue[i], &c->queue[i + 1], (c->nqueue - i - 1) * sizeof(*c->queue));
    c->nqueue--;
    return f;
}

void h_clear_queue(h_client_t *c)
{
    c->nqueue = 0;
}

/* Reads whatever TLS has into c->in. Returns bytes read, H_TIMEOUT or H_EOF. */
static int ssl_fill(h_client_t *c, uint64_t deadline)
{
    for (;;) {
        uint8_t buf[16384];
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r > 0) {
            /* Keep the buffer compact while a long stream is read. */
            if (c->in.rpos > (1u << 20)) {
                cn_slice_t un = cn_buf_unread(&c->in);
                memmove(c->in.data, un.base, un.len);
                c->in.len = un.len;
                c->in.rpos = 0;
            }
            if (cn_buf_append(&c->in, buf, (size_t)r) < 0)
                return H_ERR;
            return r;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int rem = remaining_ms(deadline);
            if (rem == 0)
                return H_TIMEOUT;
            struct pollfd p = {.fd = c->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
            int pr = poll(&p, 1, rem);
            if (pr == 0)
                return H_TIMEOUT;
            if (pr < 0 && errno != EINTR)
                return H_ERR;
            continue;
        }
        c->eof = true;
        return H_EOF;
    }
}

int h_send_raw(h_client_t *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t off = 0;
    uint64_t deadline = h_now_ms() + H_WRITE_DEADLINE_MS;
    while (off < n) {
        ERR_clear_error();
        size_t chunk = CN_MIN(n - off, (size_t)1 << 20);
        int r = SSL_write(c->ssl, b + off, (int)chunk);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
            return H_EOF;
        int rem = remaining_ms(deadline);
        if (rem == 0)
            return H_TIMEOUT;
        struct pollfd pf = {.fd = c->fd, .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
        if (poll(&pf, 1, rem) < 0 && errno != EINTR)
            return H_ERR;
    }
    return H_OK;
}

/* RFC 6455 5.2: the header (with the masking key when masked). */
static size_t ws_header(uint8_t *h, bool fin, uint8_t opcode, uint64_t len, bool mask,
                        const uint8_t key[4])
{
    size_t k = 0;
    h[k++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        h[k++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[k++] = (uint8_t)(m | 126);
        h[k++] = (uint8_t)(len >> 8);
        h[k++] = (uint8_t)len;
    } else {
        h[k++] = (uint8_t)(m | 127);
        cn_store_u64be(h + k, len);
        k += 8;
    }
    if (mask) {
        memcpy(h + k, key, 4);
        k += 4;
    }
    return k;
}

int h_ws_frame(h_client_t *c, bool fin, uint8_t opcode, const void *p, size_t n, bool mask)
{
    uint8_t key[4];
    cn_random(key, sizeof(key));
    uint8_t *buf = malloc(n + 14);
    if (!buf)
        return H_ERR;
    size_t k = ws_header(buf, fin, opcode, n, mask, key);
    const uint8_t *src = p;
    for (size_t i = 0; i < n; i++)
        buf[k + i] = mask ? (uint8_t)(src[i] ^ key[i & 3]) : src[i];
    int rc = h_send_raw(c, buf, k + n);
    free(buf);
    return rc;
}

int h_ws_header(h_client_t *c, bool fin, uint8_t opcode, uint64_t len)
{
    uint8_t key[4], h[14];
    cn_random(key, sizeof(key));
    size_t k = ws_header(h, fin, opcode, len, true, key);
    return h_send_raw(c, h, k);
}

int h_send_frame(h_client_t *c, const Chat__ClientFrame *f)
{
    size_t n = chat__client_frame__get_packed_size(f);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return H_ERR;
    chat__client_frame__pack(f, buf);
    int rc = h_ws_frame(c, true, 0x2, buf, n, true);
    free(buf);
    return rc;
}

/*
 * Parses one frame at the start of c->in. Returns 1 with the frame (payload
 * unmasked in place), 0 when more bytes are needed.
 */
static int ws_parse(h_client_t *c, bool *fin, uint8_t *opcode, cn_slice_t *payload,
                    size_t *consumed)
{
    cn_slice_t un = cn_buf_unread(&c->in);
    cn_cursor_t cur;
    cn_cursor_init(&cur, un.base, un.len);
    uint8_t b0, b1;
    if (cn_cursor_u8(&cur, &b0) < 0 || cn_cursor_u8(&cur, &b1) < 0)
        return 0;
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
        uint16_t l16;
        if (cn_cursor_u16be(&cur, &l16) < 0)
            return 0;
        len = l16;
    } else if (len == 127) {
        if (cn_cursor_u64be(&cur, &len) < 0)
            return 0;
    }
    uint8_t key[4] = {0};
    bool masked = (b1 & 0x80) != 0;
    if (masked) {
        c->server_masked = true; /* RFC 6455 5.1: a server must not mask */
        if (cn_cursor_copy(&cur, key, 4) < 0)
            return 0;
    }
    if (len > cn_cursor_left(&cur))
        return 0;
    uint8_t *base = un.base + cur.pos;
    for (uint64_t i = 0; masked && i < len; i++)
        base[i] ^= key[i & 3];
    *fin = (b0 & 0x80) != 0;
    *opcode = b0 & 0x0f;
    *payload = cn_slice(base, (size_t)len);
    *consumed = cur.pos + (size_t)len;
    return 1;
}

/* Unpacks a complete binary message into an owned frame. */
static int unpack_message(h_client_t *c, const uint8_t *p, size_t n, Chat__ServerFrame **out)
{
    Chat__ServerFrame *f = chat__server_frame__unpack(NULL, n, p);
    if (!f) {
        print_error("harness: a server message is not a valid ServerFrame (%zu bytes)\n", n);
        return H_ERR;
    }
    own(c, f);
    *out = f;
    return H_OK;
}

/* Handles one parsed frame; returns H_OK with *out for a complete message,
 * 1 to keep reading, or H_CLOSED / H_ERR. */
static int on_frame(h_client_t *c, bool fin, uint8_t opcode, cn_slice_t pl, Chat__ServerFrame **out)
{
    switch (opcode) {
    case 0x9: /* RFC 6455 5.5.2: answer a ping with a pong carrying its data */
        /* A failed pong shows up as EOF on the next read. */
        c->pings++;
        if (!c->no_pong)
            (void)h_ws_frame(c, true, 0xA, pl.base, pl.len, true);
        return 1;
    case 0xA:
        return 1;
    case 0x8:
        c->closed = true;
        c->close_code = pl.len >= 2 ? (uint16_t)((pl.base[0] << 8) | pl.base[1]) : 1005;
        return H_CLOSED;
    case 0x2:
        if (fin)
            return unpack_message(c, pl.base, pl.len, out);
        cn_buf_reset(&c->msg);
        c->msg_opcode = 0x2;
        return cn_buf_append(&c->msg, pl.base, pl.len) < 0 ? H_ERR : 1;
    case 0x0:
        if (c->msg_opcode != 0x2 || cn_buf_append(&c->msg, pl.base, pl.len) < 0)
            return H_ERR;
        if (!fin)
            return 1;
        c->msg_opcode = 0;
        return unpack_message(c, c->msg.data, c->msg.len, out);
    default:
        print_error("harness: unexpected server opcode 0x%x\n", opcode);
        return H_ERR;
    }
}

int h_recv(h_client_t *c, int timeout_ms, Chat__ServerFrame **out)
{
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    *out = NULL;
    for (;;) {
        if (c->closed)
            return H_CLOSED;
        bool fin;
        uint8_t opcode;
        cn_slice_t pl;
        size_t used;
        if (ws_parse(c, &fin, &opcode, &pl, &used)) {
            int rc = on_frame(c, fin, opcode, pl, out);
            cn_buf_consume(&c->in, used);
            if (rc <= 0)
                return rc;
            continue;
        }
        if (c->eof)
            return H_EOF;
        int r = ssl_fill(c, deadline);
        if (r < 0)
            return r;
    }
}

uint16_t h_expect_close(h_client_t *c, int timeout_ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        Chat__ServerFrame *f;
        int rc = h_recv(c, remaining_ms(deadline), &f);
        if (rc == H_OK) {
            enqueue(c, f);
            continue;
        }
        if (rc == H_CLOSED)
            return c->close_code;
        fail_msg("expected a close frame, got %s", rc == H_EOF       ? "EOF without close frame"
                                                   : rc == H_TIMEOUT ? "timeout"
                                                                     : "error");
    }
}

bool h_wait_closed(h_client_t *c, int timeout_ms)
{
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        Chat__ServerFrame *f;
        int rc = h_recv(c, remaining_ms(deadline), &f);
        if (rc == H_OK) {
            enqueue(c, f);
            continue;
        }
        return rc == H_CLOSED || rc == H_EOF || rc == H_ERR;
    }
}

/* HTTP/1.1 upgrade (RFC 6455 4.1): sends the request, checks the 101. */
static void ws_upgrade(h_client_t *c)
{
    uint8_t raw[16];
    char key[32], want[64], req[512];
    cn_random(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    int len = snprintf(req, sizeof(req),
                       "GET /ws HTTP/1.1\r\nHost: localhost:%u\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n",
                       c->node->port, key);
    assert_int_equal(h_send_raw(c, req, (size_t)len), H_OK);
    char cat[128];
    snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned shalen = 0;
    assert_int_equal(EVP_Digest(cat, strlen(cat), sha, &shalen, EVP_sha1(), NULL), 1);
    EVP_EncodeBlock((unsigned char *)want, sha, (int)shalen);

    uint64_t deadline = h_now_ms() + H_WAIT_MS;
    for (;;) {
        cn_slice_t un = cn_buf_unread(&c->in);
        const uint8_t *end = un.len >= 4 ? memmem(un.base, un.len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head = (size_t)(end - un.base) + 4;
            char *h = strndup((const char *)un.base, head);
            assert_non_null(h);
            bool ok101 = strncmp(h, "HTTP/1.1 101", 12) == 0;
            bool accept_ok = false;
            for (char *line = strstr(h, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
                if (strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21) == 0) {
                    const char *v = line + 2 + 21;
                    while (*v == ' ')
                        v++;
                    accept_ok = strncmp(v, want, strlen(want)) == 0;
                }
            }
            if (!ok101 || !accept_ok)
                print_error("harness: bad upgrade answer:\n%s\n", h);
            free(h);
            assert_true(ok101);
            assert_true(accept_ok);
            cn_buf_consume(&c->in, head);
            return;
        }
        int r = ssl_fill(c, deadline);
        if (r < 0)
            fail_msg("no upgrade answer (%d)", r);
    }
}

static void read_challenge(h_client_t *c)
{
    Chat__ServerFrame *f;
    int rc = h_recv(c, H_WAIT_MS, &f);
    assert_int_equal(rc, H_OK);
    assert_int_equal(f->body_case, CHAT__SERVER_FRAME__BODY_CHALLENGE);
    const Chat__Challenge *ch = f->challenge;
    assert_int_equal(ch->nonce.len, CN_NONCE_LEN);
    assert_int_equal(ch->node_id.len, CN_DEVICE_ID_LEN);
    assert_true(ch->server_time > 0);
    memcpy(c->nonce, ch->nonce.data, CN_NONCE_LEN);
    memcpy(c->node_id, ch->node_id.data, CN_DEVICE_ID_LEN);
    memcpy(c->node->node_id, ch->node_id.data, CN_DEVICE_ID_LEN);
    c->server_time = ch->server_time;
    c->expires_in_ms = ch->expires_in_ms;
    c->have_challenge = true;
}

h_client_t *h_connect_tls(h_node_t *n)
{
    assert_true(g_nclients < H_MAX_OBJECTS);
    h_client_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = -1;
    g_clients[g_nclients++] = c;
    c->node = n;
    c->next_rid = 1;
    cn_buf_init(&c->in);
    cn_buf_init(&c->msg);
    c->fd = h_tcp_connect(n->port);
    set_nonblock(c->fd);
    c->ssl = SSL_new(g_ctx);
    assert_non_null(c->ssl);
    SSL_set_fd(c->ssl, c->fd);
    static char sni[] = "localhost"; /* the macro casts away const */
    SSL_set_tlsext_host_name(c->ssl, sni);
    uint64_t deadline = h_now_ms() + H_WAIT_MS;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            fail_msg("TLS handshake failed (ssl error %d)", e);
        struct pollfd p = {.fd = c->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
        if (poll(&p, 1, remaining_ms(deadline)) == 0)
            fail_msg("TLS handshake timed out");
    }
    assert_int_equal(SSL_version(c->ssl), TLS1_3_VERSION);
    assert_int_equal(SSL_export_keying_material(c->ssl, c->exporter, CN_EXPORTER_LEN,
                                                CN_EXPORTER_LABEL, strlen(CN_EXPORTER_LABEL), NULL,
                                                0, 0),
                     1);
    return c;
}

h_client_t *h_connect(h_node_t *n)
{
    h_client_t *c = h_connect_tls(n);
    ws_upgrade(c);
    read_challenge(c);
    return c;
}

/* ---------------------------------------------------------- requests */

Chat__Response *h_wait_response(h_client_t *c, uint64_t rid, int timeout_ms)
{
    for (size_t i = 0; i < c->nqueue; i++) {
        if (c->queue[i]->body_case == CHAT__SERVER_FRAME__BODY_RESPONSE &&
            c->queue[i]->response->request_id == rid)
            return dequeue_at(c, i)->response;
    }
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        Chat__ServerFrame *f;
        int rc = h_recv(c, remaining_ms(deadline), &f);
        if (rc != H_OK)
            return NULL;
        if (f->body_case == CHAT__SERVER_FRAME__BODY_RESPONSE && f->response->request_id == rid)
            return f->response;
        enqueue(c, f);
    }
}

Chat__Response *h_request(h_client_t *c, Chat__ClientFrame *f)
{
    if (f->request_id == 0)
        f->request_id = c->next_rid++;
    assert_int_equal(h_send_frame(c, f), H_OK);
    Chat__Response *r = h_wait_response(c, f->request_id, H_WAIT_MS);
    if (!r)
        fail_msg("no Response to request %llu (closed=%d code=%u eof=%d)",
                 (unsigned long long)f->request_id, c->closed, c->close_code, c->eof);
    return r;
}

Chat__ServerFrame *h_next_push(h_client_t *c, Chat__ServerFrame__BodyCase want, int timeout_ms)
{
    for (size_t i = 0; i < c->nqueue; i++) {
        Chat__ServerFrame__BodyCase bc = c->queue[i]->body_case;
        if (bc == want ||
            (want == CHAT__SERVER_FRAME__BODY__NOT_SET && bc != CHAT__SERVER_FRAME__BODY_RESPONSE))
            return dequeue_at(c, i);
    }
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        Chat__ServerFrame *f;
        int rc = h_recv(c, remaining_ms(deadline), &f);
        if (rc != H_OK)
            return NULL;
        if (f->body_case == want || (want == CHAT__SERVER_FRAME__BODY__NOT_SET &&
                                     f->body_case != CHAT__SERVER_FRAME__BODY_RESPONSE))
            return f;
        enqueue(c, f);
    }
}

/* ------------------------------------------------------------------ auth */

void h_sign_session(h_client_t *c, const h_user_t *u, const char *context, const char *handle,
                    uint8_t sig[CN_SIGNATURE_LEN])
{
    assert_true(c->have_challenge);
    cn_buf_t t;
    cn_buf_init(&t);
    assert_int_equal(cn_transcript_session(&t, context, c->nonce, c->node_id, u->id.pk,
                                           c->server_time, c->exporter, handle),
                     CN_OK);
    assert_int_equal(cn_identity_sign(&u->id, t.data, t.len, sig), CN_OK);
    cn_buf_dispose(&t);
}

Chat__Response *h_try_register(h_client_t *c, h_user_t *u, const char *handle)
{
    uint8_t sig[CN_SIGNATURE_LEN];
    char norm[CN_HANDLE_MAX + 1];
    /* Sign what the node verifies: the case-folded handle (or the raw one
     * when it is invalid, which the node refuses before verifying). */
    if (cn_handle_normalize(handle, norm) < 0)
        snprintf(norm, sizeof(norm), "%.32s", handle[0] ? handle : "x");
    h_sign_session(c, u, CN_REGISTER_CONTEXT, norm, sig);
    Chat__Register r;
    chat__register__init(&r);
    memcpy(&r.handle, &(const char *){handle}, sizeof(r.handle));
    r.device_id.data = u->id.pk;
    r.device_id.len = CN_DEVICE_ID_LEN;
    r.signature.data = sig;
    r.signature.len = CN_SIGNATURE_LEN;
    r.device_name = (char[]){"integration"};
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_REGISTER;
    f.register_ = &r;
    return h_request(c, &f);
}

Chat__Response *h_try_auth(h_client_t *c, h_user_t *u)
{
    uint8_t sig[CN_SIGNATURE_LEN];
    h_sign_session(c, u, CN_AUTH_CONTEXT, NULL, sig);
    Chat__Auth a;
    chat__auth__init(&a);
    a.device_id.data = u->id.pk;
    a.device_id.len = CN_DEVICE_ID_LEN;
    a.signature.data = sig;
    a.signature.len = CN_SIGNATURE_LEN;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_AUTH;
    f.auth = &a;
    return h_request(c, &f);
}

static void assert_auth_ok(const Chat__Response *r, const h_user_t *u)
{
    if (r->status != CHAT__STATUS__OK)
        fail_msg("auth/register of %s: status %d detail \"%s\"", u->handle, r->status,
                 r->detail ? r->detail : "");
    assert_int_equal(r->result_case, CHAT__RESPONSE__RESULT_AUTH_OK);
    assert_int_equal(r->auth_ok->device_id.len, CN_DEVICE_ID_LEN);
    assert_memory_equal(r->auth_ok->device_id.data, u->id.pk, CN_DEVICE_ID_LEN);
    assert_string_equal(r->auth_ok->handle, u->handle);
}

h_client_t *h_register(h_node_t *n, const char *prefix)
{
    h_user_t *u = h_user_new(prefix);
    h_client_t *c = h_connect(n);
    assert_auth_ok(h_try_register(c, u, u->handle), u);
    c->user = u;
    return c;
}

h_client_t *h_login(h_node_t *n, h_user_t *u)
{
    h_client_t *c = h_connect(n);
    assert_auth_ok(h_try_auth(c, u), u);
    c->user = u;
    return c;
}

/* --------------------------------------------------------------- prekeys */

Chat__Response *h_upload_prekeys(h_client_t *c, size_t n_otpk, uint32_t first_id, bool bad_sig)
{
    assert_non_null(c->user);
    cn_x25519_t spk;
    assert_int_equal(cn_x25519_generate(&spk), CN_OK);
    uint8_t sig[CN_SIGNATURE_LEN];
    cn_buf_t t;
    cn_buf_init(&t);
    assert_int_equal(cn_transcript_prekey(&t, 1, spk.pk), CN_OK);
    assert_int_equal(cn_identity_sign(&c->user->id, t.data, t.len, sig), CN_OK);
    cn_buf_dispose(&t);
    if (bad_sig)
        sig[10] ^= 0x40;
    Chat__SignedPrekey sp;
    chat__signed_prekey__init(&sp);
    sp.key_id = 1;
    sp.public_key.data = spk.pk;
    sp.public_key.len = CN_PREKEY_LEN;
    sp.signature.data = sig;
    sp.signature.len = CN_SIGNATURE_LEN;

    Chat__OneTimePrekey *ot = calloc(n_otpk ? n_otpk : 1, sizeof(*ot));
    Chat__OneTimePrekey **otp = calloc(n_otpk ? n_otpk : 1, sizeof(*otp));
    uint8_t(*keys)[CN_PREKEY_LEN] = calloc(n_otpk ? n_otpk : 1, CN_PREKEY_LEN);
    assert_true(ot && otp && keys);
    for (size_t i = 0; i < n_otpk; i++) {
        cn_x25519_t kp;
        assert_int_equal(cn_x25519_generate(&kp), CN_OK);
        memcpy(keys[i], kp.pk, CN_PREKEY_LEN);
        cn_x25519_dispose(&kp);
        chat__one_time_prekey__init(&ot[i]);
        ot[i].key_id = first_id + (uint32_t)i;
        ot[i].public_key.data = keys[i];
        ot[i].public_key.len = CN_PREKEY_LEN;
        otp[i] = &ot[i];
    }
    Chat__UploadPrekeys up;
    chat__upload_prekeys__init(&up);
    up.signed_prekey = &sp;
    up.n_one_time_prekeys = n_otpk;
    up.one_time_prekeys = otp;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_UPLOAD_PREKEYS;
    f.upload_prekeys = &up;
    Chat__Response *r = h_request(c, &f);
    free(keys);
    free(otp);
    free(ot);
    cn_x25519_dispose(&spk);
    return r;
}

Chat__Response *h_fetch_prekeys(h_client_t *c, const char *handle)
{
    Chat__FetchPrekeys fp;
    chat__fetch_prekeys__init(&fp);
    memcpy(&fp.handle, &handle, sizeof(fp.handle));
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_FETCH_PREKEYS;
    f.fetch_prekeys = &fp;
    return h_request(c, &f);
}

/* ----------------------------------------------------------------- sends */

static void fill_send(Chat__Send *s, Chat__Envelope *e, Chat__Envelope **ep, const char *to,
                      const uint8_t *msg_id, Chat__Kind kind, const h_env_t *envs, size_t n)
{
    chat__send__init(s);
    s->message_id.data = (uint8_t *)(uintptr_t)msg_id;
    s->message_id.len = CN_MESSAGE_ID_LEN;
    s->kind = kind;
    memcpy(&s->to, &to, sizeof(s->to));
    for (size_t i = 0; i < n; i++) {
        chat__envelope__init(&e[i]);
        e[i].device_id.data = (uint8_t *)(uintptr_t)envs[i].device;
        e[i].device_id.len = CN_DEVICE_ID_LEN;
        e[i].ciphertext.data = (uint8_t *)(uintptr_t)envs[i].ct;
        e[i].ciphertext.len = envs[i].len;
        ep[i] = &e[i];
    }
    s->n_envelopes = n;
    s->envelopes = ep;
}

Chat__Response *h_send(h_client_t *c, const char *to, const uint8_t msg_id[CN_MESSAGE_ID_LEN],
                       Chat__Kind kind, const h_env_t *envs, size_t n)
{
    Chat__Envelope e[CN_RECIPIENTS_MAX + 1];
    Chat__Envelope *ep[CN_RECIPIENTS_MAX + 1];
    assert_true(n <= CN_ARRAY_LEN(e));
    Chat__Send s;
    fill_send(&s, e, ep, to, msg_id, kind, envs, n);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    return h_request(c, &f);
}

Chat__Response *h_send1(h_client_t *c, const h_user_t *u, const uint8_t msg_id[CN_MESSAGE_ID_LEN],
                        const void *ct, size_t len)
{
    h_env_t e = {.device = u->id.pk, .ct = ct, .len = len};
    return h_send(c, u->handle, msg_id, CHAT__KIND__MESSAGE, &e, 1);
}

uint64_t h_send_nowait(h_client_t *c, const h_user_t *u, const uint8_t msg_id[CN_MESSAGE_ID_LEN],
                       Chat__Kind kind, const void *ct, size_t len)
{
    h_env_t env = {.device = u->id.pk, .ct = ct, .len = len};
    Chat__Envelope e;
    Chat__Envelope *ep;
    Chat__Send s;
    fill_send(&s, &e, &ep, u->handle, msg_id, kind, &env, 1);
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.request_id = c->next_rid++;
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    assert_int_equal(h_send_frame(c, &f), H_OK);
    return f.request_id;
}

static void ack_frame(Chat__ClientFrame *f, Chat__Ack *a, const uint64_t *seqs, size_t n)
{
    chat__ack__init(a);
    a->n_seqs = n;
    a->seqs = (uint64_t *)(uintptr_t)seqs;
    chat__client_frame__init(f);
    f->body_case = CHAT__CLIENT_FRAME__BODY_ACK;
    f->ack = a;
}

Chat__Response *h_ack(h_client_t *c, const uint64_t *seqs, size_t n)
{
    Chat__Ack a;
    Chat__ClientFrame f;
    ack_frame(&f, &a, seqs, n);
    return h_request(c, &f);
}

uint64_t h_ack_silent(h_client_t *c, const uint64_t *seqs, size_t n)
{
    Chat__Ack a;
    Chat__ClientFrame f;
    ack_frame(&f, &a, seqs, n);
    a.silent_ok = true;
    f.request_id = c->next_rid++;
    assert_int_equal(h_send_frame(c, &f), H_OK);
    return f.request_id;
}

Chat__Response *h_ping(h_client_t *c)
{
    Chat__Ping p;
    chat__ping__init(&p);
    p.client_time = 42;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_PING;
    f.ping = &p;
    return h_request(c, &f);
}

void h_msg_id(uint8_t out[CN_MESSAGE_ID_LEN])
{
    cn_random(out, CN_MESSAGE_ID_LEN);
}

void h_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

void h_assert_serving(h_node_t *n)
{
    assert_true(h_node_alive(n));
    h_client_t *a = h_register(n, "live-a");
    h_client_t *b = h_register(n, "live-b");
    uint8_t id[CN_MESSAGE_ID_LEN];
    h_msg_id(id);
    static const char ct[] = "still serving";
    Chat__Response *r = h_send1(a, b->user, id, ct, sizeof(ct));
    assert_int_equal(r->status, CHAT__STATUS__OK);
    Chat__ServerFrame *d = h_next_push(b, CHAT__SERVER_FRAME__BODY_DELIVER, H_WAIT_MS);
    assert_non_null(d);
    assert_memory_equal(d->deliver->message_id.data, id, CN_MESSAGE_ID_LEN);
    assert_int_equal(d->deliver->ciphertext.len, sizeof(ct));
    assert_memory_equal(d->deliver->ciphertext.data, ct, sizeof(ct));
    h_client_free(a);
    h_client_free(b);
}

/* -------------------------------------------------------------- fixtures */

static void remove_certs(void)
{
    rm_rf(g_certdir);
    g_certdir[0] = '\0';
}

int h_group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (cn_crypto_init() != CN_OK)
        return -1;
    if (!chatnode_bin()) {
        print_error("set CHATNODE_BIN to the chatnode binary\n");
        return -1;
    }
    snprintf(g_certdir, sizeof(g_certdir), "/tmp/cn-integ-cert-XXXXXX");
    if (!mkdtemp(g_certdir))
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_certdir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_certdir);
    char *argv[] = {(char[]){"openssl"},
                    (char[]){"req"},
                    (char[]){"-x509"},
                    (char[]){"-newkey"},
                    (char[]){"ec"},
                    (char[]){"-pkeyopt"},
                    (char[]){"ec_paramgen_curve:P-256"},
                    (char[]){"-nodes"},
                    (char[]){"-keyout"},
                    g_key,
                    (char[]){"-out"},
                    g_cert,
                    (char[]){"-days"},
                    (char[]){"30"},
                    (char[]){"-subj"},
                    (char[]){"/CN=localhost"},
                    (char[]){"-addext"},
                    (char[]){"subjectAltName=DNS:localhost,IP:127.0.0.1"},
                    NULL};
    if (run_quiet(argv) != 0 || file_size(g_cert) == 0 || file_size(g_key) == 0) {
        print_error("openssl req failed\n");
        remove_certs();
        return -1;
    }
    g_ctx = SSL_CTX_new(TLS_client_method());
    if (!g_ctx)
        return -1;
    SSL_CTX_set_min_proto_version(g_ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(g_ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL); /* a test: no verification */
    SSL_CTX_set_mode(g_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

int h_group_teardown(void **state)
{
    (void)state;
    h_teardown(NULL);
    remove_certs();
    SSL_CTX_free(g_ctx);
    g_ctx = NULL;
    return 0;
}

int h_teardown(void **state)
{
    (void)state;
    int rc = 0;
    g_rcvbuf = 0;
    while (g_nclients > 0)
        h_client_free(g_clients[g_nclients - 1]);
    for (size_t i = 0; i < g_nnodes; i++) {
        h_node_t *n = g_nodes[i];
        h_node_kill(n);
        /* A memory error or undefined behaviour in the node fails the test
         * that caused it. Leaks at exit only show in the exit status, which
         * the tests that stop a node gracefully check themselves. */
        bool sanitizer = h_node_log_count(n, "ERROR: AddressSanitizer") > 0 ||
                         h_node_log_count(n, "runtime error:") > 0;
        if (sanitizer || getenv("CN_INTEG_LOGS")) {
            if (sanitizer)
                print_error("chatnode reported a sanitizer error:\n");
            h_node_dump_log(n);
        }
        if (sanitizer)
            rc = -1;
        rm_rf(n->dir);
        for (size_t k = 0; n->extra[k]; k++)
            free(n->extra[k]);
        free(n);
    }
    g_nnodes = 0;
    for (size_t i = 0; i < g_nusers; i++) {
        cn_identity_dispose(&g_users[i]->id);
        free(g_users[i]);
    }
    g_nusers = 0;
    return rc;
}

void h_queue_messages(h_client_t *a, const h_user_t *u, int count, size_t size)
{
    enum { WINDOW = 50 };
    static uint8_t ct[CN_CIPHERTEXT_MAX];
    assert_true(size <= sizeof(ct));
    for (int i = 0; i < count; i += WINDOW) {
        uint64_t rids[WINDOW];
        int k = CN_MIN(WINDOW, count - i);
        for (int j = 0; j < k; j++) {
            uint8_t id[CN_MESSAGE_ID_LEN];
            h_msg_id(id);
            h_pattern(ct, size, (uint32_t)(i + j));
            rids[j] = h_send_nowait(a, u, id, CHAT__KIND__MESSAGE, ct, size);
        }
        for (int j = 0; j < k; j++) {
            Chat__Response *r = h_wait_response(a, rids[j], H_WAIT_MS);
            assert_non_null(r);
            assert_int_equal(r->status, CHAT__STATUS__OK);
        }
        h_clear_queue(a);
    }
}
