/*
 * chatclient: a thin command-line front end of libchatclient.
 *
 *   chatclient [--server URL] [--ca FILE | --insecure] [--home DIR]
 *              [--timeout SECONDS] COMMAND ...
 *     register HANDLE [--invite TOKEN] [--name DEVICE_NAME]
 *     send HANDLE TEXT | send HANDLE --stdin      [--verbose]
 *     recv [--wait SECONDS] [--json]
 *     flush [--verbose]
 *     whoami
 *
 * Exit codes: 0 ok, 1 usage or local error, 2 refused by the server,
 * 3 timeout or server unreachable.
 */
#include "client/cn_client.h"
#include "crypto/cn_crypto.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_USAGE = 1, EXIT_REFUSED = 2, EXIT_TIMEOUT = 3 };

#define ARGS_MAX 16

typedef struct cli {
    cn_client_options_t opt;
    const char *cmd;
    const char *args[ARGS_MAX];
    int nargs;
    const char *invite, *name;
    bool use_stdin, verbose, json;
    uint32_t wait_s;
    int refused_msgs;
} cli_t;

static void usage(void)
{
    fprintf(stderr, "usage: chatclient [--server URL] [--ca FILE | --insecure] [--home DIR]\n"
                    "                  [--timeout SECONDS] COMMAND ...\n"
                    "  register HANDLE [--invite TOKEN] [--name DEVICE_NAME]\n"
                    "  send HANDLE TEXT | send HANDLE --stdin [--verbose]\n"
                    "  recv [--wait SECONDS] [--json]\n"
                    "  flush [--verbose]\n"
                    "  whoami\n");
}

static int parse_seconds(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > 86400UL * 365)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Takes the value of an option that needs one. */
static const char *value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "chatclient: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int parse_option(cli_t *cl, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = NULL;
    uint32_t secs;
    if (strcmp(a, "--insecure") == 0)
        cl->opt.insecure = true;
    else if (strcmp(a, "--stdin") == 0)
        cl->use_stdin = true;
    else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0)
        cl->verbose = true;
    else if (strcmp(a, "--json") == 0)
        cl->json = true;
    else if (strcmp(a, "--server") == 0 && (v = value(argc, argv, i)))
        cl->opt.server_url = v;
    else if (strcmp(a, "--ca") == 0 && (v = value(argc, argv, i)))
        cl->opt.ca_file = v;
    else if (strcmp(a, "--home") == 0 && (v = value(argc, argv, i)))
        cl->opt.home = v;
    else if (strcmp(a, "--invite") == 0 && (v = value(argc, argv, i)))
        cl->invite = v;
    else if (strcmp(a, "--name") == 0 && (v = value(argc, argv, i)))
        cl->name = v;
    else if (strcmp(a, "--timeout") == 0 && (v = value(argc, argv, i)) &&
             parse_seconds(v, &secs) == 0 && secs > 0)
        cl->opt.timeout_ms = secs * 1000u;
    else if (strcmp(a, "--wait") == 0 && (v = value(argc, argv, i)) &&
             parse_seconds(v, &cl->wait_s) == 0)
        ;
    else {
        fprintf(stderr, "chatclient: bad option %s%s%s\n", a, v ? " " : "", v ? v : "");
        return -1;
    }
    return 0;
}

static int parse_args(cli_t *cl, int argc, char **argv)
{
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (!opts_done && a[0] == '-' && a[1] != '\0') {
            if (parse_option(cl, argc, argv, &i) < 0)
                return -1;
        } else if (cl->cmd == NULL) {
            cl->cmd = a;
        } else if (cl->nargs < ARGS_MAX) {
            cl->args[cl->nargs++] = a;
        } else {
            return -1;
        }
    }
    if (cl->cmd == NULL)
        return -1;
    if (cl->opt.insecure && cl->opt.ca_file != NULL) {
        fprintf(stderr, "chatclient: --ca and --insecure exclude each other\n");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- output */

static void print_ids(cn_client_t *c)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    char hex[2 * CN_DEVICE_ID_LEN + 1];
    if (cn_client_device_id(c, id) != CN_OK) {
        printf("(no identity)\n");
        return;
    }
    cn_hex_encode(hex, id, sizeof(id));
    printf("%s %s\n", cn_client_handle(c) ? cn_client_handle(c) : "(unregistered)", hex);
}

/* Maps a library result to the exit code, explaining failures on stderr. */
static int report(cn_client_t *c, const char *what, int rc)
{
    int st;
    const char *detail;
    if (rc == CN_OK)
        return 0;
    if (rc == CN_ELIMIT) {
        fprintf(stderr, "chatclient: %s: rate limited by the server; gave up (retry later)\n",
                what);
        return EXIT_TIMEOUT;
    }
    if (cn_client_last_refusal(c, &st, &detail) && rc != CN_ETIMEDOUT) {
        fprintf(stderr, "chatclient: %s: server refused: %s%s%s\n", what, cn_client_status_name(st),
                detail[0] ? ": " : "", detail);
        if (st == CHAT__STATUS__CONFLICT && strcmp(what, "register") == 0)
            fprintf(stderr, "chatclient: the handle is probably taken\n");
        return EXIT_REFUSED;
    }
    switch (rc) {
    case CN_ETIMEDOUT:
    case CN_ECLOSED:
        fprintf(stderr, "chatclient: %s: timed out (server unreachable or not answering)\n", what);
        return EXIT_TIMEOUT;
    case CN_EAUTH:
        fprintf(stderr, "chatclient: %s: TLS certificate verification failed\n", what);
        return EXIT_TIMEOUT;
    case CN_EEXIST:
        fprintf(stderr, "chatclient: %s: this home is registered as %s already\n", what,
                cn_client_handle(c));
        return EXIT_USAGE;
    default:
        fprintf(stderr, "chatclient: %s: %s\n", what, cn_strerror(rc));
        return EXIT_USAGE;
    }
}

static void on_sent(void *ud, const uint8_t id[CN_MESSAGE_ID_LEN], const char *to, int status,
                    const char *detail)
{
    cli_t *cl = ud;
    char hex[2 * CN_MESSAGE_ID_LEN + 1];
    cn_hex_encode(hex, id, CN_MESSAGE_ID_LEN);
    if (status == CHAT__STATUS__OK) {
        if (cl->verbose) {
            printf("sent %s\n", hex);
            fflush(stdout);
        }
        return;
    }
    cl->refused_msgs++;
    fprintf(stderr, "chatclient: message %s to %s refused: %s%s%s\n", hex, to,
            cn_client_status_name(status), detail[0] ? ": " : "", detail);
}

static const char *kind_name(int kind)
{
    static const char *const names[] = {"message", "receipt", "typing", "sender_key", "control"};
    return kind >= 0 && (size_t)kind < CN_ARRAY_LEN(names) ? names[kind] : "unknown";
}

static int print_json(const cn_client_message_t *m)
{
    char id[2 * CN_MESSAGE_ID_LEN + 1], dev[2 * CN_DEVICE_ID_LEN + 1];
    cn_hex_encode(id, m->message_id, CN_MESSAGE_ID_LEN);
    cn_hex_encode(dev, m->from_device, CN_DEVICE_ID_LEN);
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_buf_printf(&b, "{\"id\":\"%s\",\"from\":", id);
    if (rc == CN_OK)
        rc = cn_json_append_string(&b, m->from, strlen(m->from));
    if (rc == CN_OK)
        rc = cn_buf_printf(&b, ",\"device\":\"%s\",\"ts\":%llu,\"kind\":\"%s\",\"text\":", dev,
                           (unsigned long long)m->server_time, kind_name(m->kind));
    if (rc == CN_OK && m->decoded && m->content.text != NULL)
        rc = cn_json_append_string(&b, m->content.text, m->content.text_len);
    else if (rc == CN_OK)
        rc = cn_buf_printf(&b, "null");
    if (rc == CN_OK)
        rc = cn_buf_printf(&b, ",\"seq\":%llu%s}\n", (unsigned long long)m->seq,
                           m->decoded ? "" : ",\"error\":\"undecodable\"");
    if (rc == CN_OK && fwrite(b.data, 1, b.len, stdout) != b.len)
        rc = CN_EIO;
    cn_buf_dispose(&b);
    return rc;
}

/* Text mode: control characters from a peer never reach the terminal raw. */
static void put_sanitized(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
}

static void print_text(const cn_client_message_t *m)
{
    time_t secs = (time_t)(m->server_time / 1000);
    struct tm tm;
    char ts[32] = "?";
    if (gmtime_r(&secs, &tm) != NULL)
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("[%s.%03uZ] %s: ", ts, (unsigned)(m->server_time % 1000), m->from);
    if (!m->decoded)
        printf("(undecodable %s)", kind_name(m->kind));
    else if (m->content.type != CN_CONTENT_TEXT || m->content.text == NULL)
        printf("(%s of unsupported type %u)", kind_name(m->kind), m->content.type);
    else
        put_sanitized(m->content.text, m->content.text_len);
    putchar('\n');
}

static int on_message(void *ud, const cn_client_message_t *m)
{
    const cli_t *cl = ud;
    if (cl->json) {
        if (print_json(m) != CN_OK)
            return CN_EIO;
    } else {
        print_text(m);
    }
    /* Printed before it is acked: a failed flush must not ack it. */
    if (fflush(stdout) != 0 || ferror(stdout))
        return CN_EIO;
    return CN_OK;
}

/* --------------------------------------------------------------- commands */

static int cmd_register(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 1)
        return -1;
    int rc = cn_client_register(c, cl->args[0], cl->invite, cl->name);
    if (rc != CN_OK)
        return report(c, "register", rc);
    print_ids(c);
    return 0;
}

/* Reads stdin into lines (without line ends); empty lines are skipped. */
static int read_lines(char ***out, size_t *n)
{
    char *line = NULL, **v = NULL;
    size_t cap = 0, cnt = 0, vcap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (cnt == vcap) {
            vcap = vcap ? vcap * 2 : 64;
            char **nv = realloc(v, vcap * sizeof(*v));
            if (nv == NULL)
                break;
            v = nv;
        }
        if ((v[cnt] = strdup(line)) == NULL)
            break;
        cnt++;
    }
    free(line);
    *out = v;
    *n = cnt;
    return ferror(stdin) ? -1 : 0;
}

static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Queues every line (all validated first, so a bad line queues nothing). */
static int queue_lines(cn_client_t *c, const char *to, char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(v[i]);
        cn_buf_t tmp;
        cn_buf_init(&tmp);
        int rc = cn_content_encode_text(&tmp, v[i], len, 0);
        cn_buf_dispose(&tmp);
        if (rc != CN_OK) {
            fprintf(stderr, "chatclient: line %zu: %s\n", i + 1,
                    rc == CN_ETOOBIG ? "too long" : "not valid UTF-8");
            return EXIT_USAGE;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int rc = cn_client_queue_text(c, to, v[i], NULL);
        if (rc != CN_OK)
            return report(c, "queue", rc);
    }
    return 0;
}

static int cmd_send(cli_t *cl, cn_client_t *c)
{
    int ex = 0;
    if (cl->nargs != (cl->use_stdin ? 1 : 2))
        return -1;
    const char *to = cl->args[0];
    if (cl->use_stdin) {
        char **v;
        size_t n;
        if (read_lines(&v, &n) < 0) {
            fprintf(stderr, "chatclient: reading stdin failed\n");
            free_lines(v, n);
            return EXIT_USAGE;
        }
        ex = queue_lines(c, to, v, n);
        free_lines(v, n);
    } else {
        char *one = strdup(cl->args[1]);
        if (one == NULL)
            return EXIT_USAGE;
        ex = queue_lines(c, to, &one, 1);
        free(one);
    }
    if (ex != 0)
        return ex;
    return report(c, "send", cn_client_flush(c, on_sent, cl));
}

static int cmd_flush(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    return report(c, "flush", cn_client_flush(c, on_sent, cl));
}

static int cmd_recv(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    return report(c, "recv", cn_client_recv(c, cl->wait_s * 1000u, on_message, cl));
}

static int cmd_whoami(cli_t *cl, cn_client_t *c)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    if (cl->nargs != 0)
        return -1;
    if (cn_client_device_id(c, id) != CN_OK || cn_client_handle(c) == NULL) {
        fprintf(stderr, "chatclient: not registered (run: chatclient register HANDLE)\n");
        return EXIT_USAGE;
    }
    print_ids(c);
    return 0;
}

static int run(cli_t *cl, cn_client_t *c)
{
    static const struct {
        const char *name;
        int (*fn)(cli_t *, cn_client_t *);
    } cmds[] = {{"register", cmd_register},
                {"send", cmd_send},
                {"recv", cmd_recv},
                {"flush", cmd_flush},
                {"whoami", cmd_whoami}};
    for (size_t i = 0; i < CN_ARRAY_LEN(cmds); i++) {
        if (strcmp(cl->cmd, cmds[i].name) == 0)
            return cmds[i].fn(cl, c);
    }
    return -1;
}

int main(int argc, char **argv)
{
    cli_t cl;
    char home[4096];
    memset(&cl, 0, sizeof(cl));
    /* A node that closes after refusing us must not kill the CLI mid-write. */
    signal(SIGPIPE, SIG_IGN);
    cn_log_set_level(CN_LOG_WARN);
    if (parse_args(&cl, argc, argv) < 0) {
        usage();
        return EXIT_USAGE;
    }
    if (cl.opt.home == NULL) {
        const char *h = getenv("HOME");
        snprintf(home, sizeof(home), "%s/.chatclient", h && h[0] ? h : ".");
        cl.opt.home = home;
    }
    cn_client_t *c = NULL;
    int rc = cn_client_new(&cl.opt, &c);
    if (rc != CN_OK) {
        fprintf(stderr, "chatclient: %s: %s\n",
                rc == CN_EINVAL ? "bad --server URL or home" : "cannot open the home",
                cn_strerror(rc));
        return EXIT_USAGE;
    }
    int ex = run(&cl, c);
    if (ex < 0) {
        usage();
        ex = EXIT_USAGE;
    }
    cn_client_free(c);
    return ex;
}
