/*
 * chatclient --home DIR swarm PREFIX COUNT [--register] [--wait S] [--json]
 *
 * A test helper: COUNT homes DIR/PREFIX000, DIR/PREFIX001, ... (handles the
 * same), registered first with --register, all connected at once from one
 * process and polled in turn. Prints "ready COUNT" once every home has
 * connected, then every message any of them receives as recv --json does,
 * with a "to" field naming the receiving home. Stops when stdin reaches
 * end of file or after --wait seconds (0: no limit).
 */
#include "client/cli.h"
#include "crypto/cn_crypto.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWARM_MAX     1000
#define SWARM_POLL_MS 1

typedef struct member {
    cli_t *cl;
    cn_client_t *c;
    char handle[CN_HANDLE_MAX + 1];
} member_t;

static int on_swarm(void *ud, const cn_client_message_t *m)
{
    const member_t *mb = ud;
    if (m->decoded && m->kind != CHAT__KIND__MESSAGE)
        return CN_OK;
    int rc = cli_print_json(m, mb->handle);
    return fflush(stdout) == 0 && rc == CN_OK ? CN_OK : CN_EIO;
}

static bool stdin_closed(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char buf[256];
    if (poll(&p, 1, 0) <= 0)
        return false;
    return read(0, buf, sizeof(buf)) <= 0;
}

static int open_member(cli_t *cl, member_t *mb, const char *prefix, int i)
{
    char home[4096];
    int n = snprintf(mb->handle, sizeof(mb->handle), "%s%03d", prefix, i);
    if (n <= 0 || (size_t)n >= sizeof(mb->handle))
        return CN_EINVAL;
    snprintf(home, sizeof(home), "%s/%s", cl->opt.home, mb->handle);
    cn_client_options_t opt = cl->opt;
    opt.home = home;
    mb->cl = cl;
    CN_TRY(cn_client_new(&opt, &mb->c));
    if (cl->use_stdin) /* --register */
        CN_TRY(cn_client_register(mb->c, mb->handle, NULL, "swarm"));
    return CN_OK;
}

int cli_cmd_swarm(cli_t *cl)
{
    if (cl->nargs != 2 || cl->opt.home == NULL)
        return -1;
    int count = atoi(cl->args[1]);
    if (count <= 0 || count > SWARM_MAX) {
        fprintf(stderr, "chatclient: swarm: COUNT is 1..%d\n", SWARM_MAX);
        return EXIT_USAGE;
    }
    cl->json = true;
    member_t *v = calloc((size_t)count, sizeof(*v));
    if (v == NULL)
        return EXIT_USAGE;
    int rc = CN_OK, i;
    for (i = 0; i < count && rc == CN_OK; i++)
        rc = open_member(cl, &v[i], cl->args[0], i);
    if (rc != CN_OK)
        fprintf(stderr, "chatclient: swarm: home %d: %s\n", i - 1, cn_strerror(rc));
    for (i = 0; i < count && rc == CN_OK; i++)
        rc = cn_client_poll(v[i].c, SWARM_POLL_MS, on_swarm, &v[i]);
    if (rc == CN_OK) {
        printf("ready %d\n", count);
        fflush(stdout);
    }
    uint64_t end = cl->wait_s ? cn_now_ms() + cl->wait_s * 1000ull : UINT64_MAX;
    while (rc == CN_OK && cn_now_ms() < end && !stdin_closed())
        for (i = 0; i < count && rc == CN_OK; i++)
            rc = cn_client_poll(v[i].c, SWARM_POLL_MS, on_swarm, &v[i]);
    int ex = rc == CN_OK ? 0 : cli_report(v[0].c, "swarm", rc);
    for (i = 0; i < count; i++)
        cn_client_free(v[i].c);
    free(v);
    return ex;
}
