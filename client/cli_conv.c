/*
 * chatclient commands of conversations beyond one-to-one text: groups,
 * several devices (link, approve, devices, device revoke), files
 * (send-file), history and conversations, presence visibility.
 */
#include "client/cli.h"
#include "crypto/cn_crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void iso_time(uint64_t ms, char *out, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    snprintf(out, cap, "?");
    if (gmtime_r(&secs, &tm) != NULL)
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse_group(const char *hex, uint8_t gid[CN_GROUP_ID_LEN])
{
    if (strlen(hex) != 2 * CN_GROUP_ID_LEN || cn_hex_decode(gid, CN_GROUP_ID_LEN, hex) != CN_OK) {
        fprintf(stderr, "chatclient: a group is named by its id: %d hex digits\n",
                2 * CN_GROUP_ID_LEN);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- groups */

static int group_create(cli_t *cl, cn_client_t *c)
{
    uint8_t gid[CN_GROUP_ID_LEN];
    char hex[2 * CN_GROUP_ID_LEN + 1];
    if (cl->nargs < 2)
        return -1;
    int rc = cn_client_group_create(c, cl->args[1], cl->args + 2, (size_t)cl->nargs - 2, gid);
    if (rc == CN_OK || rc == CN_ENOTFOUND) { /* created; a member may lack prekeys */
        cn_hex_encode(hex, gid, sizeof(gid));
        if (rc != CN_OK)
            (void)cli_report(c, "group create (sender keys)", rc);
        printf("%s\n", hex);
        return 0;
    }
    return cli_report(c, "group create", rc);
}

int cli_cmd_group(cli_t *cl, cn_client_t *c)
{
    uint8_t gid[CN_GROUP_ID_LEN];
    if (cl->nargs < 1)
        return -1;
    const char *sub = cl->args[0];
    if (strcmp(sub, "create") == 0)
        return group_create(cl, c);
    if (cl->nargs != 3)
        return -1;
    if (parse_group(cl->args[1], gid) < 0)
        return EXIT_USAGE;
    if (strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0)
        return cli_report(c, sub,
                          cn_client_group_update(c, gid, cl->args[2], strcmp(sub, "add") == 0));
    if (strcmp(sub, "send") != 0)
        return -1;
    uint8_t id[CN_MESSAGE_ID_LEN];
    int rc = cn_client_group_send_text(c, gid, cl->args[2], id);
    if (rc == CN_OK && cl->verbose) {
        char hex[2 * CN_MESSAGE_ID_LEN + 1];
        cn_hex_encode(hex, id, sizeof(id));
        printf("sent %s\n", hex);
    }
    return cli_report(c, "group send", rc);
}

/* --------------------------------------------------------------- devices */

static void on_code(void *ud, const char *code)
{
    (void)ud;
    printf("code: %s\n", code);
    printf("approve it on another device: chatclient approve %s\n", code);
    fflush(stdout);
}

int cli_cmd_link(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 1)
        return -1;
    int rc = cn_client_link(c, cl->args[0], cl->name, on_code, cli_on_message, cl);
    if (rc == CN_ETIMEDOUT && cn_client_handle(c) != NULL) {
        fprintf(stderr, "chatclient: link: linked, but the history keys did not arrive yet; "
                        "run recv later\n");
        rc = CN_OK;
    }
    if (rc != CN_OK)
        return cli_report(c, "link", rc);
    printf("linked: ");
    cli_print_ids(c);
    return 0;
}

static void show_device(void *ud, const cn_client_device_t *d)
{
    (void)ud;
    char hex[2 * CN_DEVICE_ID_LEN + 1];
    cn_hex_encode(hex, d->id, CN_DEVICE_ID_LEN);
    printf("approving device \"");
    cli_put_sanitized(d->name, strlen(d->name));
    printf("\" %s\n", hex);
    fflush(stdout);
}

int cli_cmd_approve(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 1)
        return -1;
    int rc = cn_client_approve(c, cl->args[0], show_device, cl);
    if (rc != CN_OK)
        return cli_report(c, "approve", rc);
    printf("approved\n");
    return 0;
}

static void list_device(void *ud, const cn_client_device_t *d)
{
    (void)ud;
    char hex[2 * CN_DEVICE_ID_LEN + 1], ts[32];
    cn_hex_encode(hex, d->id, CN_DEVICE_ID_LEN);
    iso_time(d->created, ts, sizeof(ts));
    printf("%s %s ", hex, d->created ? ts : "-");
    cli_put_sanitized(d->name[0] ? d->name : "-", strlen(d->name[0] ? d->name : "-"));
    printf("%s\n", d->self ? " (this device)" : "");
}

int cli_cmd_devices(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    return cli_report(c, "devices", cn_client_devices(c, list_device, cl));
}

int cli_cmd_device(cli_t *cl, cn_client_t *c)
{
    uint8_t id[CN_DEVICE_ID_LEN];
    if (cl->nargs != 2 || strcmp(cl->args[0], "revoke") != 0)
        return -1;
    if (strlen(cl->args[1]) != 2 * CN_DEVICE_ID_LEN ||
        cn_hex_decode(id, sizeof(id), cl->args[1]) != CN_OK) {
        fprintf(stderr, "chatclient: a device id is %d hex digits\n", 2 * CN_DEVICE_ID_LEN);
        return EXIT_USAGE;
    }
    int rc = cn_client_revoke(c, id);
    if (rc == CN_OK)
        printf("revoked %s\n", cl->args[1]);
    return cli_report(c, "device revoke", rc);
}

/* ----------------------------------------------------------------- files */

static void on_progress(void *ud, const uint8_t id[CN_MEDIA_ID_LEN], uint64_t stored, uint64_t size)
{
    const cli_t *cl = ud;
    if (!cl->verbose)
        return;
    char hex[2 * CN_MEDIA_ID_LEN + 1];
    cn_hex_encode(hex, id, CN_MEDIA_ID_LEN);
    printf("upload %s %llu/%llu\n", hex, (unsigned long long)stored, (unsigned long long)size);
    fflush(stdout);
}

int cli_cmd_send_file(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 2)
        return -1;
    int rc = cn_client_send_file(c, cl->args[0], cl->args[1], on_progress, cl);
    if (rc == CN_ENOTFOUND && !cn_client_last_refusal(c, NULL, NULL)) {
        fprintf(stderr, "chatclient: send-file: cannot read %s\n", cl->args[1]);
        return EXIT_USAGE;
    }
    if (rc == CN_OK && cl->verbose)
        printf("sent file %s\n", cl->args[1]);
    return cli_report(c, "send-file", rc);
}

/* --------------------------------------------------------------- history */

static int history_json(const cn_client_history_entry_t *e)
{
    cn_buf_t b;
    cn_buf_init(&b);
    int rc = cn_buf_printf(&b, "{\"ts\":%llu,\"from\":", (unsigned long long)e->time);
    if (rc == CN_OK)
        rc = cn_json_append_string(&b, e->from, strlen(e->from));
    if (rc == CN_OK && e->peer != NULL) {
        rc = cn_buf_printf(&b, ",\"peer\":");
        if (rc == CN_OK)
            rc = cn_json_append_string(&b, e->peer, strlen(e->peer));
    }
    if (rc == CN_OK && e->has_group) {
        char hex[2 * CN_GROUP_ID_LEN + 1];
        cn_hex_encode(hex, e->group_id, CN_GROUP_ID_LEN);
        rc = cn_buf_printf(&b, ",\"group\":\"%s\"", hex);
    }
    const cn_content_t *ct = &e->content;
    if (rc == CN_OK && ct->file_name != NULL) {
        rc = cn_buf_printf(&b, ",\"file_name\":");
        if (rc == CN_OK)
            rc = cn_json_append_string(&b, ct->file_name, ct->file_name_len);
    }
    if (rc == CN_OK)
        rc = cn_buf_printf(&b, ",\"text\":");
    if (rc == CN_OK && ct->text != NULL)
        rc = cn_json_append_string(&b, ct->text, ct->text_len);
    else if (rc == CN_OK)
        rc = cn_buf_printf(&b, "null");
    if (rc == CN_OK)
        rc = cn_buf_printf(&b, "}\n");
    if (rc == CN_OK && fwrite(b.data, 1, b.len, stdout) != b.len)
        rc = CN_EIO;
    cn_buf_dispose(&b);
    return rc;
}

static int on_history(void *ud, const cn_client_history_entry_t *e)
{
    const cli_t *cl = ud;
    if (cl->json)
        return history_json(e);
    char ts[32];
    iso_time(e->time, ts, sizeof(ts));
    printf("[%s] %s", ts, e->from);
    if (e->has_group) {
        char hex[2 * CN_GROUP_ID_LEN + 1];
        cn_hex_encode(hex, e->group_id, CN_GROUP_ID_LEN);
        printf(" @ %.8s", hex);
    } else if (e->peer != NULL && strcmp(e->peer, e->from) != 0) {
        printf(" -> %s", e->peer);
    }
    fputs(": ", stdout);
    if (e->content.text != NULL)
        cli_put_sanitized(e->content.text, e->content.text_len);
    else if (e->content.file_name != NULL) {
        fputs("(file ", stdout);
        cli_put_sanitized(e->content.file_name, e->content.file_name_len);
        putchar(')');
    }
    putchar('\n');
    return CN_OK;
}

int cli_cmd_history(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    int rc = cn_client_history(c, cl->with, cl->limit ? cl->limit : 50, on_history, cl);
    if (rc == CN_ENOTFOUND && !cn_client_last_refusal(c, NULL, NULL)) {
        fprintf(stderr, "chatclient: history: no history key on this device yet (a linked "
                        "device gets it from the device that approved it: run recv)\n");
        return EXIT_USAGE;
    }
    return cli_report(c, "history", rc);
}

static void on_thread(void *ud, const cn_client_thread_t *t)
{
    (void)ud;
    char ts[32], hex[2 * CN_THREAD_TAG_LEN + 1];
    iso_time(t->last_time, ts, sizeof(ts));
    cn_hex_encode(hex, t->tag, CN_THREAD_TAG_LEN);
    if (t->name != NULL) {
        printf("%s ", ts);
        cli_put_sanitized(t->name, strlen(t->name));
        putchar('\n');
    } else {
        printf("%s unknown thread %.16s\n", ts, hex);
    }
}

int cli_cmd_conversations(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 0)
        return -1;
    int rc = cn_client_conversations(c, on_thread, cl);
    if (rc == CN_ENOTFOUND && !cn_client_last_refusal(c, NULL, NULL)) {
        fprintf(stderr, "chatclient: conversations: no history on this device yet\n");
        return EXIT_USAGE;
    }
    return cli_report(c, "conversations", rc);
}

int cli_cmd_presence(cli_t *cl, cn_client_t *c)
{
    if (cl->nargs != 1 || (strcmp(cl->args[0], "hide") != 0 && strcmp(cl->args[0], "show") != 0))
        return -1;
    return cli_report(c, "presence",
                      cn_client_set_presence_hidden(c, strcmp(cl->args[0], "hide") == 0));
}
