/*
 * chatadmin: the operator CLI. Speaks the CBOR admin protocol of
 * proto/cn_proto.h over the node's Unix admin socket. Human tables by
 * default, JSON with --json; the exit code is the node's status
 * (0 ok, 1 failed, 2 usage, 3 not found, 4 refused) or 5 when the node
 * cannot be reached.
 */
#include "proto/cn_proto.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define EXIT_UNREACHABLE 5

static const char usage[] =
    "usage: chatadmin [--socket PATH] [--json] GROUP COMMAND [ARGS] [OPTIONS]\n"
    "  --socket PATH   the node's admin socket (./var/admin.sock)\n"
    "  --json          print JSON (an object, or an array for lists) instead of tables\n"
    "commands (chatadmin GROUP COMMAND --help for one):\n"
    "  stats                              connections, queues, prekeys, store\n"
    "  config show                        the node's effective configuration\n"
    "  device list | show ID | revoke ID  devices (revoke disconnects, forever)\n"
    "  user list | show H | disable H | enable H\n"
    "  invite create [--uses N] [--expires DURATION]   token for policy invite\n"
    "  ratelimit list | set ACTION --rate N/s --burst N [--device ID] | reset ACTION "
    "[--device ID]\n"
    "  queue show DEVICE                  depth and oldest age (never contents)\n"
    "  keys list | rotate | retire ID     at-rest key ring (re-seal progress in stats)\n"
    "  backup DIR                         RocksDB checkpoint into a new directory\n"
    "exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 refused, 5 node unreachable\n";

/* One command: its words, wire name, positional argument, options. */
typedef struct command {
    const char *words[2];
    const char *cmd;        /* wire name */
    bool list;              /* prints an array (else one object) */
    const char *positional; /* argument key of the one positional, or NULL */
    const char *options[3]; /* allowed --options (argument keys) */
    const char *help;
} command_t;

static const command_t commands[] = {
    {{"stats", NULL}, "stats", false, NULL, {NULL}, "node statistics"},
    {{"config", "show"}, "config.show", false, NULL, {NULL}, "effective configuration"},
    {{"device", "list"}, "device.list", true, NULL, {NULL}, "every device"},
    {{"device", "show"}, "device.show", false, "id", {NULL}, "one device: ID (hex)"},
    {{"device", "revoke"},
     "device.revoke",
     false,
     "id",
     {NULL},
     "revoke ID: disconnects it, drops its mailbox and prekeys; it cannot reconnect"},
    {{"user", "list"}, "user.list", true, NULL, {NULL}, "every user"},
    {{"user", "show"}, "user.show", false, "handle", {NULL}, "one user and its devices"},
    {{"user", "disable"},
     "user.disable",
     false,
     "handle",
     {NULL},
     "disable HANDLE: its devices are disconnected and refused"},
    {{"user", "enable"}, "user.enable", false, "handle", {NULL}, "undo disable"},
    {{"invite", "create"},
     "invite.create",
     false,
     NULL,
     {"uses", "expires", NULL},
     "a registration token: --uses N (1), --expires 30m|12h|7d (never)"},
    {{"ratelimit", "list"}, "ratelimit.list", true, NULL, {NULL}, "policies in force"},
    {{"ratelimit", "set"},
     "ratelimit.set",
     false,
     "action",
     {"rate", "burst", "device"},
     "set ACTION --rate N/s|N/m|N/h --burst N [--device ID]; live and persisted"},
    {{"ratelimit", "reset"},
     "ratelimit.reset",
     false,
     "action",
     {"device", NULL, NULL},
     "back to the default (or drop a --device override)"},
    {{"queue", "show"},
     "queue.show",
     false,
     "device",
     {NULL},
     "queue depth, bytes and oldest age of DEVICE"},
    {{"keys", "list"},
     "keys.list",
     true,
     NULL,
     {NULL},
     "at-rest data keys: state, records sealed under each, retirable"},
    {{"keys", "rotate"},
     "keys.rotate",
     false,
     NULL,
     {NULL},
     "a new data key becomes current; old records are re-sealed in the background"},
    {{"keys", "retire"},
     "keys.retire",
     false,
     "id",
     {NULL},
     "drop key ID from the ring; refused while it is current or records use it"},
    {{"backup", NULL},
     "backup",
     false,
     "dir",
     {NULL},
     "checkpoint the database into DIR (absolute, must not exist)"},
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        CN_ENSURE(w > 0, CN_EIO);
        p += w;
        n -= (size_t)w;
    }
    return CN_OK;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        CN_ENSURE(r > 0, CN_EIO);
        p += r;
        n -= (size_t)r;
    }
    return CN_OK;
}

/* Sends req and reads the response into resp. */
static int call(const char *path, const cn_admin_msg_t *req, cn_admin_msg_t *resp)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CN_ENSURE(strlen(path) < sizeof(sa.sun_path), CN_EINVAL);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CN_ENSURE(fd >= 0, CN_EIO);
    int rc = CN_OK;
    cn_buf_t b;
    cn_buf_init(&b);
    CN_ENSURE_OUT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, CN_ECLOSED);
    CN_TRY_OUT(cn_buf_put_u32be(&b, 0));
    CN_TRY_OUT(cn_admin_request_encode(req, &b));
    cn_store_u32be(b.data, (uint32_t)(b.len - 4));
    CN_TRY_OUT(write_all(fd, b.data, b.len));
    uint8_t hdr[4];
    CN_TRY_OUT(read_all(fd, hdr, 4));
    uint32_t len = cn_load_u32be(hdr);
    CN_ENSURE_OUT(len <= CN_ADMIN_FRAME_MAX, CN_ETOOBIG);
    cn_buf_reset(&b);
    CN_TRY_OUT(cn_buf_reserve(&b, len));
    CN_TRY_OUT(read_all(fd, b.data, len));
    rc = cn_admin_response_decode(b.data, len, resp);
out:
    cn_buf_dispose(&b);
    close(fd);
    return rc;
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_json_row(const cn_admin_row_t *r)
{
    putchar('{');
    for (uint32_t i = 0; i < r->n; i++) {
        if (i)
            putchar(',');
        json_string(r->f[i].key);
        putchar(':');
        json_string(r->f[i].value);
    }
    putchar('}');
}

static void print_json(const cn_admin_msg_t *m, bool list)
{
    if (!list) {
        if (m->nrows)
            print_json_row(&m->rows[0]);
        else
            fputs("{}", stdout);
        putchar('\n');
        return;
    }
    putchar('[');
    for (uint32_t i = 0; i < m->nrows; i++) {
        if (i)
            putchar(',');
        print_json_row(&m->rows[i]);
    }
    puts("]");
}

static void print_table(const cn_admin_msg_t *m, bool list)
{
    if (!list) {
        for (uint32_t i = 0; m->nrows && i < m->rows[0].n; i++)
            printf("%-20s %s\n", m->rows[0].f[i].key, m->rows[0].f[i].value);
        return;
    }
    if (m->nrows == 0) {
        puts("(none)");
        return;
    }
    const cn_admin_row_t *h = &m->rows[0];
    for (uint32_t i = 0; i < h->n; i++)
        printf("%-20s", h->f[i].key);
    putchar('\n');
    for (uint32_t r = 0; r < m->nrows; r++) {
        for (uint32_t i = 0; i < h->n; i++) {
            const char *v = cn_admin_row_get(&m->rows[r], h->f[i].key);
            printf("%-20s", v ? v : "-");
        }
        putchar('\n');
    }
}

static const command_t *find_command(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(commands); i++) {
        const command_t *c = &commands[i];
        int n = c->words[1] ? 2 : 1;
        if (argc >= n && strcmp(argv[0], c->words[0]) == 0 &&
            (n == 1 || strcmp(argv[1], c->words[1]) == 0)) {
            *used = n;
            return c;
        }
    }
    return NULL;
}

static void command_help(const command_t *c, FILE *out)
{
    fprintf(out, "usage: chatadmin %s%s%s", c->words[0], c->words[1] ? " " : "",
            c->words[1] ? c->words[1] : "");
    if (c->positional)
        fprintf(out, " %s", c->positional);
    for (int i = 0; i < 3 && c->options[i]; i++)
        fprintf(out, " [--%s V]", c->options[i]);
    fprintf(out, "\n  %s\n", c->help);
}

/* Fills req->args from the words after the command; false on a usage error. */
static bool command_args(const command_t *c, int argc, char **argv, cn_admin_msg_t *req, bool *help)
{
    bool have_positional = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help = true;
            return true;
        }
        if (strncmp(argv[i], "--", 2) == 0) {
            bool known = false;
            for (int k = 0; k < 3 && c->options[k]; k++)
                known |= strcmp(argv[i] + 2, c->options[k]) == 0;
            if (!known || i + 1 >= argc ||
                cn_admin_row_set(&req->args, argv[i] + 2, "%s", argv[i + 1]) < 0)
                return false;
            i++;
        } else if (c->positional && !have_positional) {
            if (cn_admin_row_set(&req->args, c->positional, "%s", argv[i]) < 0)
                return false;
            have_positional = true;
        } else {
            return false;
        }
    }
    return !c->positional || have_positional;
}

int main(int argc, char **argv)
{
    const char *sock = "./var/admin.sock";
    bool json = false;
    static const struct option opts[] = {
        {"socket", 1, 0, 's'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (o == 's')
            sock = optarg;
        else if (o == 'j')
            json = true;
        else if (o == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return CN_ADMIN_USAGE;
        }
    }
    int used = 0;
    const command_t *c = find_command(argc - optind, argv + optind, &used);
    if (!c) {
        fputs(usage, stderr);
        return CN_ADMIN_USAGE;
    }
    cn_admin_msg_t req, resp;
    cn_admin_msg_init(&req);
    cn_admin_msg_init(&resp);
    bool help = false;
    if (!command_args(c, argc - optind - used, argv + optind + used, &req, &help) || help) {
        command_help(c, help ? stdout : stderr);
        cn_admin_msg_dispose(&req);
        return help ? 0 : CN_ADMIN_USAGE;
    }
    snprintf(req.cmd, sizeof(req.cmd), "%s", c->cmd);
    int rc = call(sock, &req, &resp);
    int exit_code;
    if (rc < 0) {
        fprintf(stderr, "chatadmin: cannot reach the node at %s: %s\n", sock, cn_strerror(rc));
        exit_code = EXIT_UNREACHABLE;
    } else if (resp.status != CN_ADMIN_OK) {
        fprintf(stderr, "chatadmin: %s\n", resp.error[0] ? resp.error : "failed");
        exit_code = (int)resp.status;
    } else {
        if (json)
            print_json(&resp, c->list);
        else
            print_table(&resp, c->list);
        exit_code = 0;
    }
    cn_admin_msg_dispose(&req);
    cn_admin_msg_dispose(&resp);
    return exit_code;
}
