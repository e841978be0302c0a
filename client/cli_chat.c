/*
 * chatclient chat HANDLE: an interactive conversation. Lines typed are
 * sent; what arrives is shown with delivered/read receipts, typing
 * notices, the peer's presence (online / last seen, from the node's
 * PresenceEvents), group messages and the copies of what this user sent
 * from its other devices ("me -> PEER").
 */
#include "client/cli.h"
#include "crypto/cn_crypto.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ chat */

#define CHAT_POLL_MS 200
#define CHAT_IDS_MAX CN_CLIENT_RECEIPT_IDS_MAX

typedef struct chat {
    cli_t *cl;
    cn_client_t *c;
    char peer[CN_HANDLE_MAX + 1];
    uint8_t delivered[CHAT_IDS_MAX][CN_MESSAGE_ID_LEN]; /* to acknowledge as delivered */
    size_t ndelivered;
    uint8_t unread[CHAT_IDS_MAX][CN_MESSAGE_ID_LEN]; /* shown, not yet marked read */
    size_t nunread;
    char inbuf[CN_CLIENT_TEXT_MAX + 2];
    size_t inlen;
    bool eof, quit;
} chat_t;

static void short_id(char out[9], const uint8_t *id)
{
    cn_hex_encode(out, id, 4);
}

static void chat_receipt(const cn_client_message_t *m)
{
    const char *what = m->content.receipt_status == CN_RECEIPT_READ ? "read" : "delivered";
    for (size_t i = 0; i < m->content.n_ids; i++) {
        char id[9];
        short_id(id, m->content.ids + i * CN_MESSAGE_ID_LEN);
        printf("* %s %s by %s\n", what, id, m->from);
    }
}

/* Presence of the peer: online, or offline with the last time seen. */
static void on_presence(void *ud, const char *handle, bool online, uint64_t last_seen)
{
    (void)ud;
    if (online) {
        printf("* %s is online\n", handle);
    } else if (last_seen == 0) {
        printf("* %s is offline\n", handle);
    } else {
        time_t secs = (time_t)(last_seen / 1000);
        struct tm tm;
        char ts[32] = "?";
        if (gmtime_r(&secs, &tm) != NULL)
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("* %s is offline (last seen %s)\n", handle, ts);
    }
    fflush(stdout);
}

static int on_chat(void *ud, const cn_client_message_t *m)
{
    chat_t *ch = ud;
    bool from_peer = strcmp(m->from, ch->peer) == 0 && !m->has_group;
    if (m->decoded && m->peer != NULL && m->kind != CHAT__KIND__MESSAGE)
        return CN_OK; /* our other device's receipts and typing: not news here */
    if (m->decoded && (m->kind == CHAT__KIND__SENDER_KEY || m->kind == CHAT__KIND__CONTROL))
        return CN_OK;
    if (!m->decoded) {
        printf("* undecryptable %s from %s: %s\n", cli_kind_name(m->kind), m->from,
               m->error ? m->error : "undecodable");
    } else if (m->content.type == CN_CONTENT_RECEIPT) {
        chat_receipt(m);
    } else if (m->content.type == CN_CONTENT_TYPING) {
        printf("* %s %s\n", m->from, m->content.typing ? "is typing..." : "stopped typing");
    } else {
        cli_print_text(m);
        if (from_peer && ch->ndelivered < CHAT_IDS_MAX)
            memcpy(ch->delivered[ch->ndelivered++], m->message_id, CN_MESSAGE_ID_LEN);
    }
    return fflush(stdout) == 0 ? CN_OK : CN_EIO;
}

/* Delivered receipts for what arrived; those messages are now unread. */
static int chat_send_delivered(chat_t *ch)
{
    if (ch->ndelivered == 0)
        return CN_OK;
    CN_TRY(cn_client_queue_receipt(ch->c, ch->peer, CN_RECEIPT_DELIVERED, &ch->delivered[0][0],
                                   ch->ndelivered));
    for (size_t i = 0; i < ch->ndelivered && ch->nunread < CHAT_IDS_MAX; i++)
        memcpy(ch->unread[ch->nunread++], ch->delivered[i], CN_MESSAGE_ID_LEN);
    ch->ndelivered = 0;
    return CN_OK;
}

/* The user acted in the conversation: what was shown has been read. */
static int chat_send_read(chat_t *ch)
{
    if (ch->nunread == 0)
        return CN_OK;
    CN_TRY(
        cn_client_queue_receipt(ch->c, ch->peer, CN_RECEIPT_READ, &ch->unread[0][0], ch->nunread));
    ch->nunread = 0;
    return CN_OK;
}

static int chat_line(chat_t *ch, const char *line)
{
    uint8_t id[CN_MESSAGE_ID_LEN];
    char sid[9];
    if (line[0] == '\0')
        return CN_OK;
    if (strcmp(line, "/quit") == 0) {
        ch->quit = true;
        return CN_OK;
    }
    if (strcmp(line, "/typing") == 0)
        return cn_client_queue_typing(ch->c, ch->peer, true);
    CN_TRY(chat_send_read(ch));
    if (strcmp(line, "/read") == 0)
        return CN_OK;
    int rc = cn_client_queue_text(ch->c, ch->peer, line, id);
    if (rc == CN_EINVAL || rc == CN_ETOOBIG) {
        printf("* not sent: %s\n", rc == CN_ETOOBIG ? "too long" : "not valid UTF-8");
        return CN_OK;
    }
    CN_TRY(rc);
    short_id(sid, id);
    printf("* sending %s\n", sid);
    return CN_OK;
}

/* Reads whatever stdin has without blocking; handles complete lines. */
static int chat_stdin(chat_t *ch)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    while (!ch->eof && !ch->quit && poll(&p, 1, 0) > 0) {
        if (ch->inlen == sizeof(ch->inbuf))
            ch->inlen = 0; /* an overlong line is dropped */
        ssize_t r = read(0, ch->inbuf + ch->inlen, sizeof(ch->inbuf) - ch->inlen);
        if (r <= 0) {
            ch->eof = true;
            break;
        }
        ch->inlen += (size_t)r;
        char *nl;
        while ((nl = memchr(ch->inbuf, '\n', ch->inlen)) != NULL) {
            *nl = '\0';
            size_t used = (size_t)(nl - ch->inbuf) + 1;
            if (used >= 2 && nl[-1] == '\r')
                nl[-1] = '\0';
            CN_TRY(chat_line(ch, ch->inbuf));
            memmove(ch->inbuf, ch->inbuf + used, ch->inlen - used);
            ch->inlen -= used;
        }
    }
    return CN_OK;
}

int cli_cmd_chat(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 1)
        return -1;
    chat_t *ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return EXIT_USAGE;
    ch->cl = cl;
    ch->c = c;
    if (cn_handle_normalize(cl->args[0], ch->peer) != CN_OK) {
        free(ch);
        fprintf(stderr, "chatclient: chat: bad handle %s\n", cl->args[0]);
        return EXIT_USAGE;
    }
    printf("* chatting with %s (/typing, /read, /quit)\n", ch->peer);
    fflush(stdout);
    int rc = cn_client_subscribe(c, ch->peer, on_presence, ch);
    uint64_t linger_until = 0;
    while (rc == CN_OK && !ch->quit) {
        rc = chat_stdin(ch);
        if (rc == CN_OK)
            rc = cn_client_poll(c, CHAT_POLL_MS, on_chat, ch);
        if (rc == CN_OK)
            rc = chat_send_delivered(ch);
        fflush(stdout);
        if (ch->eof && linger_until == 0)
            linger_until = cn_now_ms() + cl->wait_s * 1000ull;
        if (ch->eof && cn_now_ms() >= linger_until)
            break;
    }
    /* What was queued last (receipts, the last lines) goes out before leaving. */
    if (rc == CN_OK)
        rc = cn_client_flush(c, cli_on_sent, cl);
    free(ch);
    return cli_report(c, "chat", rc);
}
