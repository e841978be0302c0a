/*
 * chatclient internals shared between its files: the parsed command line
 * and the output helpers (chatclient.c), the chat command (cli_chat.c),
 * groups, devices, files, history (cli_conv.c) and the test helper that
 * keeps many homes connected in one process (cli_swarm.c).
 */
#ifndef CN_CLI_H
#define CN_CLI_H

#include "client/cn_client.h"

enum { EXIT_USAGE = 1, EXIT_REFUSED = 2, EXIT_TIMEOUT = 3 };

#define ARGS_MAX 1024 /* group create takes up to a group of handles */

typedef struct cli {
    cn_client_options_t opt;
    const char *cmd;
    const char *args[ARGS_MAX];
    int nargs;
    const char *invite, *jwt, *name, *passphrase_file, *kdf, *with;
    bool use_stdin, verbose, json;
    uint32_t wait_s;
    uint32_t limit; /* history --limit; 0: the default */
    int refused_msgs;
} cli_t;

/** Prints "HANDLE DEVICEHEX" of this home. */
void cli_print_ids(cn_client_t *c);
/** Maps a library result to the exit code, explaining failures on stderr. */
int cli_report(cn_client_t *c, const char *what, int rc);
/** The sent callback of send/flush (prints "sent ID" with --verbose). */
void cli_on_sent(void *ud, const uint8_t id[CN_MESSAGE_ID_LEN], const char *to, int status,
                 const char *detail);
const char *cli_kind_name(int kind);
/** One message as a JSON line (recv --json); to (may be NULL) names the receiving home. */
int cli_print_json(const cn_client_message_t *m, const char *to);
/** Writes peer text with control characters escaped. */
void cli_put_sanitized(const char *s, size_t n);
/** One message as a text line. */
void cli_print_text(const cn_client_message_t *m);
/** The recv callback: prints messages (JSON or text), flushed before the ack. */
int cli_on_message(void *ud, const cn_client_message_t *m);

int cli_cmd_chat(cli_t *cl, cn_client_t *c);
int cli_cmd_group(cli_t *cl, cn_client_t *c);
int cli_cmd_link(cli_t *cl, cn_client_t *c);
int cli_cmd_approve(cli_t *cl, cn_client_t *c);
int cli_cmd_devices(cli_t *cl, cn_client_t *c);
int cli_cmd_device(cli_t *cl, cn_client_t *c);
int cli_cmd_send_file(cli_t *cl, cn_client_t *c);
int cli_cmd_history(cli_t *cl, cn_client_t *c);
int cli_cmd_conversations(cli_t *cl, cn_client_t *c);
int cli_cmd_presence(cli_t *cl, cn_client_t *c);
/** swarm runs before any home is opened: it opens many. */
int cli_cmd_swarm(cli_t *cl);

#endif /* CN_CLI_H */
