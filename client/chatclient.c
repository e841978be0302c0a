/*
 * chatclient: a thin command-line front end of libchatclient.
 *
 *   chatclient [--server URL] [--ca FILE | --insecure] [--home DIR]
 *              [--timeout SECONDS] [--passphrase-file FILE] [--kdf LEVEL]
 *              COMMAND ...
 *     register HANDLE [--invite TOKEN | --jwt TOKEN] [--name DEVICE_NAME]
 *     send HANDLE TEXT | send HANDLE --stdin      [--verbose]
 *     recv [--wait SECONDS] [--json]
 *     chat HANDLE [--wait SECONDS]
 *     fingerprint HANDLE
 *     flush [--verbose]
 *     whoami
 *     link HANDLE [--name DEVICE_NAME]  |  approve CODE
 *     devices  |  device revoke DEVICE_ID
 *     group create NAME HANDLE...  |  group add|remove GROUP HANDLE
 *     group send GROUP TEXT
 *     send-file HANDLE PATH [--verbose]
 *     history [--with HANDLE] [--limit N] [--json]  |  conversations
 *     presence hide|show
 *     swarm PREFIX COUNT [--register] [--wait SECONDS]   (tests: many homes)
 *
 * Everything sent is end-to-end encrypted (docs/E2E.md). The home is
 * sealed at rest with a key from Argon2id over the passphrase
 * (CHATCLIENT_PASSPHRASE or --passphrase-file) or, without one, with the
 * random key file HOME/home.key.
 *
 * Exit codes: 0 ok, 1 usage or local error, 2 refused by the server,
 * 3 timeout or server unreachable.
 */
#include "client/cli.h"
#include "client/cn_client.h"
#include "crypto/cn_crypto.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: chatclient [--server URL] [--ca FILE | --insecure] [--home DIR]\n"
                    "                  [--timeout SECONDS] COMMAND ...\n"
                    "  register HANDLE [--invite TOKEN | --jwt TOKEN] [--name DEVICE_NAME]\n"
                    "  send HANDLE TEXT | send HANDLE --stdin [--verbose]\n"
                    "  recv [--wait SECONDS] [--json]\n"
                    "  chat HANDLE [--wait SECONDS]\n"
                    "  fingerprint HANDLE\n"
                    "  flush [--verbose]\n"
                    "  whoami\n"
                    "  link HANDLE [--name DEVICE_NAME]     (on the new device's home)\n"
                    "  approve CODE                         (on an existing device)\n"
                    "  devices | device revoke DEVICE_ID\n"
                    "  group create NAME HANDLE... | group add|remove GROUP HANDLE\n"
                    "  group send GROUP TEXT\n"
                    "  send-file HANDLE PATH [--verbose]\n"
                    "  history [--with HANDLE] [--limit N] [--json] | conversations\n"
                    "  presence hide|show\n"
                    "  swarm PREFIX COUNT [--register] [--wait SECONDS]  (tests)\n"
                    "options: --passphrase-file FILE (or CHATCLIENT_PASSPHRASE) seals the home\n"
                    "         with Argon2id; --kdf interactive|moderate|sensitive (new homes)\n");
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
    else if (strcmp(a, "--jwt") == 0 && (v = value(argc, argv, i)))
        cl->jwt = v;
    else if (strcmp(a, "--name") == 0 && (v = value(argc, argv, i)))
        cl->name = v;
    else if (strcmp(a, "--passphrase-file") == 0 && (v = value(argc, argv, i)))
        cl->passphrase_file = v;
    else if (strcmp(a, "--kdf") == 0 && (v = value(argc, argv, i)) &&
             (strcmp(v, "interactive") == 0 || strcmp(v, "moderate") == 0 ||
              strcmp(v, "sensitive") == 0))
        cl->kdf = v;
    else if (strcmp(a, "--timeout") == 0 && (v = value(argc, argv, i)) &&
             parse_seconds(v, &secs) == 0 && secs > 0)
        cl->opt.timeout_ms = secs * 1000u;
    else if (strcmp(a, "--wait") == 0 && (v = value(argc, argv, i)) &&
             parse_seconds(v, &cl->wait_s) == 0)
        ;
    else if (strcmp(a, "--limit") == 0 && (v = value(argc, argv, i)) &&
             parse_seconds(v, &cl->limit) == 0 && cl->limit > 0)
        ;
    else if (strcmp(a, "--with") == 0 && (v = value(argc, argv, i)))
        cl->with = v;
    else if (strcmp(a, "--register") == 0)
        cl->use_stdin = true; /* swarm: register the homes first */
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

void cli_print_ids(cn_client_t *c)
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
int cli_report(cn_client_t *c, const char *what, int rc)
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

void cli_on_sent(void *ud, const uint8_t id[CN_MESSAGE_ID_LEN], const char *to, int status,
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

const char *cli_kind_name(int kind)
{
    static const char *const names[] = {"message", "receipt", "typing", "sender_key", "control"};
    return kind >= 0 && (size_t)kind < CN_ARRAY_LEN(names) ? names[kind] : "unknown";
}

/* Groups, sync copies and files: fields present only when they apply. */
static int json_extra(cn_buf_t *b, const cn_client_message_t *m)
{
    char hex[2 * CN_CLIENT_DIGEST_LEN + 1];
    int rc = CN_OK;
    if (m->has_group) {
        cn_hex_encode(hex, m->group_id, CN_GROUP_ID_LEN);
        rc = cn_buf_printf(b, ",\"group\":\"%s\"", hex);
        if (rc == CN_OK && m->group_name != NULL) {
            rc = cn_buf_printf(b, ",\"group_name\":");
            if (rc == CN_OK)
                rc = cn_json_append_string(b, m->group_name, strlen(m->group_name));
        }
    }
    if (rc == CN_OK && m->peer != NULL) {
        rc = cn_buf_printf(b, ",\"peer\":");
        if (rc == CN_OK)
            rc = cn_json_append_string(b, m->peer, strlen(m->peer));
    }
    if (rc == CN_OK && m->decoded && m->content.type == CN_CONTENT_FILE) {
        const cn_content_t *ct = &m->content;
        rc = cn_buf_printf(b, ",\"file_name\":");
        if (rc == CN_OK)
            rc = cn_json_append_string(b, ct->file_name ? ct->file_name : "",
                                       ct->file_name ? ct->file_name_len : 0);
        if (rc == CN_OK && m->file_path != NULL) {
            cn_hex_encode(hex, m->file_sha256, CN_CLIENT_DIGEST_LEN);
            rc = cn_buf_printf(b, ",\"sha256\":\"%s\",\"file\":", hex);
            if (rc == CN_OK)
                rc = cn_json_append_string(b, m->file_path, strlen(m->file_path));
        }
        if (rc == CN_OK && m->file_error != NULL) {
            rc = cn_buf_printf(b, ",\"file_error\":");
            if (rc == CN_OK)
                rc = cn_json_append_string(b, m->file_error, strlen(m->file_error));
        }
    }
    return rc;
}

int cli_print_json(const cn_client_message_t *m, const char *to)
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
                           (unsigned long long)m->server_time, cli_kind_name(m->kind));
    if (rc == CN_OK && m->decoded && m->content.text != NULL)
        rc = cn_json_append_string(&b, m->content.text, m->content.text_len);
    else if (rc == CN_OK)
        rc = cn_buf_printf(&b, "null");
    if (rc == CN_OK)
        rc = cn_buf_printf(&b, ",\"seq\":%llu", (unsigned long long)m->seq);
    if (rc == CN_OK)
        rc = json_extra(&b, m);
    if (rc == CN_OK && to != NULL)
        rc = cn_buf_printf(&b, ",\"to\":\"%s\"", to);
    if (rc == CN_OK && !m->decoded) {
        const char *err = m->error ? m->error : "undecodable";
        rc = cn_buf_printf(&b, ",\"error\":");
        if (rc == CN_OK)
            rc = cn_json_append_string(&b, err, strlen(err));
    }
    if (rc == CN_OK)
        rc = cn_buf_printf(&b, "}\n");
    if (rc == CN_OK && fwrite(b.data, 1, b.len, stdout) != b.len)
        rc = CN_EIO;
    cn_buf_dispose(&b);
    return rc;
}

/* Text mode: control characters from a peer never reach the terminal raw. */
void cli_put_sanitized(const char *s, size_t n)
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

void cli_print_text(const cn_client_message_t *m)
{
    time_t secs = (time_t)(m->server_time / 1000);
    struct tm tm;
    char ts[32] = "?";
    if (gmtime_r(&secs, &tm) != NULL)
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("[%s.%03uZ] ", ts, (unsigned)(m->server_time % 1000));
    if (m->peer != NULL)
        printf("me -> %s", m->peer); /* sent from another device of ours */
    else
        printf("%s", m->from);
    if (m->has_group) {
        char hex[2 * CN_GROUP_ID_LEN + 1];
        cn_hex_encode(hex, m->group_id, CN_GROUP_ID_LEN);
        printf(" @ %.8s", hex);
        if (m->group_name != NULL) {
            putchar(' ');
            cli_put_sanitized(m->group_name, strlen(m->group_name));
        }
    }
    fputs(": ", stdout);
    if (!m->decoded) {
        printf("(undecryptable %s: %s)", cli_kind_name(m->kind),
               m->error ? m->error : "undecodable");
    } else if (m->content.type == CN_CONTENT_FILE) {
        fputs("(file ", stdout);
        cli_put_sanitized(m->content.file_name ? m->content.file_name : "",
                          m->content.file_name ? m->content.file_name_len : 0);
        if (m->file_path != NULL)
            printf(", saved to %s)", m->file_path);
        else
            printf(", %s)", m->file_error ? m->file_error : "not saved");
    } else if (m->content.type != CN_CONTENT_TEXT || m->content.text == NULL)
        printf("(%s of unsupported type %u)", cli_kind_name(m->kind), m->content.type);
    else
        cli_put_sanitized(m->content.text, m->content.text_len);
    putchar('\n');
}

int cli_on_message(void *ud, const cn_client_message_t *m)
{
    const cli_t *cl = ud;
    /* recv shows messages; receipts and typing notices (decrypted, so the
     * ratchet moves on) are for `chat`. Failures are always shown. */
    if (m->decoded && m->kind != CHAT__KIND__MESSAGE)
        return CN_OK;
    if (cl->json) {
        if (cli_print_json(m, NULL) != CN_OK)
            return CN_EIO;
    } else {
        cli_print_text(m);
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
    int rc = cl->jwt ? cn_client_set_jwt(c, cl->jwt) : CN_OK;
    if (rc == CN_OK)
        rc = cn_client_register(c, cl->args[0], cl->invite, cl->name);
    if (rc != CN_OK)
        return cli_report(c, "register", rc);
    cli_print_ids(c);
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
            return cli_report(c, "queue", rc);
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
    return cli_report(c, "send", cn_client_flush(c, cli_on_sent, cl));
}

static int cmd_flush(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    return cli_report(c, "flush", cn_client_flush(c, cli_on_sent, cl));
}

static int cmd_recv(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    return cli_report(c, "recv", cn_client_recv(c, cl->wait_s * 1000u, cli_on_message, cl));
}

static int cmd_fingerprint(cli_t *cl, cn_client_t *c)
{
    char num[CN_SAFETY_NUMBER_DIGITS + 1];
    if (cl->nargs != 1)
        return -1;
    int rc = cn_client_fingerprint(c, cl->args[0], num, sizeof(num));
    if (rc == CN_ENOTFOUND && !cn_client_last_refusal(c, NULL, NULL)) {
        fprintf(stderr, "chatclient: fingerprint: not registered, or no devices\n");
        return EXIT_USAGE;
    }
    if (rc != CN_OK)
        return cli_report(c, "fingerprint", rc);
    printf("safety number with %s:\n", cl->args[0]);
    for (int i = 0; i < CN_SAFETY_NUMBER_DIGITS; i += 5)
        printf("%.5s%s", num + i, (i + 5) % 30 == 0 ? "\n" : " ");
    return 0;
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
    cli_print_ids(c);
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
                {"chat", cli_cmd_chat},
                {"fingerprint", cmd_fingerprint},
                {"whoami", cmd_whoami},
                {"group", cli_cmd_group},
                {"link", cli_cmd_link},
                {"approve", cli_cmd_approve},
                {"devices", cli_cmd_devices},
                {"device", cli_cmd_device},
                {"send-file", cli_cmd_send_file},
                {"history", cli_cmd_history},
                {"conversations", cli_cmd_conversations},
                {"presence", cli_cmd_presence}};
    for (size_t i = 0; i < CN_ARRAY_LEN(cmds); i++) {
        if (strcmp(cl->cmd, cmds[i].name) == 0)
            return cmds[i].fn(cl, c);
    }
    return -1;
}

static void on_warn(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "chatclient: WARNING: %s\n", msg);
}

/* The passphrase: --passphrase-file (first line) or CHATCLIENT_PASSPHRASE. */
static int load_passphrase(cli_t *cl, char **out)
{
    *out = NULL;
    if (cl->passphrase_file == NULL) {
        const char *env = getenv("CHATCLIENT_PASSPHRASE");
        if (env != NULL && env[0] != '\0')
            *out = strdup(env);
        return 0;
    }
    FILE *f = fopen(cl->passphrase_file, "r");
    if (f == NULL) {
        fprintf(stderr, "chatclient: %s: %s\n", cl->passphrase_file, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n <= 0) {
        free(line);
        fprintf(stderr, "chatclient: %s: empty passphrase file\n", cl->passphrase_file);
        return -1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    *out = line;
    return 0;
}

static void set_kdf(cli_t *cl)
{
    if (cl->kdf == NULL)
        return;
    if (strcmp(cl->kdf, "interactive") == 0) {
        cl->opt.pwhash_opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        cl->opt.pwhash_memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    } else if (strcmp(cl->kdf, "sensitive") == 0) {
        cl->opt.pwhash_opslimit = crypto_pwhash_OPSLIMIT_SENSITIVE;
        cl->opt.pwhash_memlimit = crypto_pwhash_MEMLIMIT_SENSITIVE;
    }
}

int main(int argc, char **argv)
{
    cli_t cl;
    char home[4096];
    char *pass = NULL;
    memset(&cl, 0, sizeof(cl));
    /* A node that closes after refusing us must not kill the CLI mid-write. */
    signal(SIGPIPE, SIG_IGN);
    cn_log_set_level(CN_LOG_WARN);
    const char *lv = getenv("CHATCLIENT_LOG"); /* debug | info: more on stderr */
    if (lv != NULL && strcmp(lv, "debug") == 0)
        cn_log_set_level(CN_LOG_DEBUG);
    else if (lv != NULL && strcmp(lv, "info") == 0)
        cn_log_set_level(CN_LOG_INFO);
    if (parse_args(&cl, argc, argv) < 0) {
        usage();
        return EXIT_USAGE;
    }
    if (strcmp(cl.cmd, "swarm") == 0)
        return cli_cmd_swarm(&cl);
    if (cl.opt.home == NULL) {
        const char *h = getenv("HOME");
        snprintf(home, sizeof(home), "%s/.chatclient", h && h[0] ? h : ".");
        cl.opt.home = home;
    }
    if (load_passphrase(&cl, &pass) < 0)
        return EXIT_USAGE;
    cl.opt.passphrase = pass;
    set_kdf(&cl);
    cn_client_t *c = NULL;
    int rc = cn_client_new(&cl.opt, &c);
    if (pass != NULL) {
        sodium_memzero(pass, strlen(pass));
        free(pass);
    }
    if (rc != CN_OK) {
        if (rc == CN_EAUTH)
            fprintf(stderr, "chatclient: cannot open the home: wrong or missing passphrase "
                            "(CHATCLIENT_PASSPHRASE or --passphrase-file), or its key file "
                            "is missing\n");
        else
            fprintf(stderr, "chatclient: %s: %s\n",
                    rc == CN_EINVAL ? "bad --server URL or home" : "cannot open the home",
                    cn_strerror(rc));
        return EXIT_USAGE;
    }
    cn_client_set_warn_cb(c, on_warn, NULL);
    int ex = run(&cl, c);
    if (ex < 0) {
        usage();
        ex = EXIT_USAGE;
    }
    cn_client_free(c);
    return ex;
}
