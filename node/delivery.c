/*
 * Mailbox delivery to one connection, in seq order, without loss:
 *   - on auth the connection "pumps": it reads its mailbox from the store
 *     in slices and pushes Deliver frames until it is caught up, then
 *     pushes MailboxDrained once;
 *   - afterwards each freshly stored envelope arrives with its frame and
 *     seq (as a CN_MSG_DELIVER from another loop, or at once from the
 *     loop's own send completion): the next expected seq is pushed as is
 *     (no read-back), an older one was already sent, a newer one means a
 *     gap (envelopes from several loops race) and pumps again;
 *   - while the output backlog is above the soft limit the pump pauses and
 *     live frames are left in the store, so a slow reader costs disk, not
 *     memory.
 */
#include "node/node_internal.h"

#include <stdlib.h>
#include <string.h>

#define PUMP_SLICE_ENTRIES 256 /* one iterator per slice: fewer, longer slices drain faster */
#define PUMP_SLICE_BYTES   (256u * 1024u)

int cn__delivery_send_record(cn_conn_t *c, uint64_t seq, const uint8_t *value, size_t len)
{
    cn_rec_envelope_t env;
    CN_TRY(cn_rec_envelope_decode(value, len, &env));
    if (env.shared)
        return CN_ENOTFOUND; /* a group message whose body expired */
    cn__conn_send_deliver(c, &env, seq);
    return CN_OK;
}

static int pump_entry(void *ctx, uint64_t seq, const uint8_t *value, size_t len)
{
    cn_conn_t *c = ctx;
    int rc = cn__delivery_send_record(c, seq, value, len);
    if (rc == CN_ENOTFOUND)
        cn_log_debug("mailbox_body_expired", "conn=%llu seq=%llu", (unsigned long long)c->id,
                     (unsigned long long)seq);
    else if (rc < 0)
        cn_log_error("mailbox_record_corrupt", "conn=%llu seq=%llu", (unsigned long long)c->id,
                     (unsigned long long)seq);
    else
        atomic_fetch_add(&c->loop->server->counters.messages_delivered, 1);
    c->next_seq = seq + 1;
    /* Stop at the soft limit entry by entry, so that one slice cannot push
     * the backlog to the hard limit. */
    return c->state == CN_CONN_AUTHED && !cn__conn_backlogged(c) ? 0 : 1;
}

static void send_drained(cn_conn_t *c)
{
    Chat__MailboxDrained md;
    chat__mailbox_drained__init(&md);
    md.last_seq = c->next_seq ? c->next_seq - 1 : 0;
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED;
    f.mailbox_drained = &md;
    cn__conn_send_frame(c, &f);
}

static void pump(cn_conn_t *c)
{
    cn_store_t *store = c->loop->server->store;
    while (c->state == CN_CONN_AUTHED && c->pumping) {
        if (cn__conn_backlogged(c))
            return; /* resumed by the write callback */
        uint64_t next;
        int n = cn_store_mailbox_read(store, c->device_id, c->next_seq, PUMP_SLICE_ENTRIES,
                                      PUMP_SLICE_BYTES, pump_entry, c, &next);
        if (n < 0) {
            cn_log_error("mailbox_read_failed", "conn=%llu", (unsigned long long)c->id);
            cn__conn_close(c, CN_WS_CLOSE_INTERNAL, "storage unavailable");
            return;
        }
        /* A slice ends at an entry or byte limit; only an empty one means
         * the mailbox is drained. */
        if (n == 0 && c->state == CN_CONN_AUTHED) {
            c->pumping = false;
            if (!c->drained_sent) {
                c->drained_sent = true;
                send_drained(c);
            }
        }
    }
}

void cn__delivery_start(cn_conn_t *c)
{
    c->next_seq = 0;
    c->pumping = true;
    pump(c);
}

void cn__delivery_resume(cn_conn_t *c)
{
    if (c->pumping)
        pump(c);
}

/*
 * A freshly stored (seq > 0) or ephemeral (seq 0) envelope for c: sent now
 * (encoded from env when given, else its encoded bytes); dropped when the
 * pump is reading the mailbox or the envelope went out already; or, after
 * a gap, read back by the pump.
 */
static void offer_live(cn_conn_t *c, uint64_t seq, uint64_t sent_ns, const cn_rec_envelope_t *env,
                       const uint8_t *bytes, size_t len)
{
    cn_counters_t *ctr = &c->loop->server->counters;
    if (seq == 0) { /* ephemeral: now or never */
        if (cn__conn_backlogged(c))
            return;
    } else if (c->pumping || (c->next_seq != 0 && seq < c->next_seq)) {
        return;
    } else if (c->next_seq != seq || cn__conn_backlogged(c)) {
        c->pumping = true;
        pump(c);
        return;
    }
    if (env)
        cn__conn_send_deliver(c, env, seq);
    else
        cn__conn_send_bytes(c, bytes, len);
    if (seq != 0) {
        atomic_fetch_add(&ctr->messages_delivered, 1);
        c->next_seq++;
    }
    cn__hist_observe(&ctr->send_deliver, cn__loop_since_us(c->loop, sent_ns));
}

void cn__delivery_on_msg(cn_conn_t *c, const cn_msg_t *m)
{
    offer_live(c, m->seq, m->sent_ns, NULL, m->data, m->len);
}

/* A message with room for n bytes of frame to the connection of route;
 * the caller writes the frame and posts it. */
static cn_msg_t *msg_for(enum cn_msg_type type, const cn_route_t *route, const uint8_t *device,
                         uint64_t seq, size_t n, uint64_t sent_ns)
{
    cn_msg_t *m = cn__msg_new(type, n);
    if (!m)
        return NULL;
    m->conn_id = route->conn_id;
    m->seq = seq;
    m->sent_ns = sent_ns;
    memcpy(m->device_id, device, CN_DEVICE_ID_LEN);
    return m;
}

void cn__delivery_route(cn_server_t *s, cn_loop_t *here, const uint8_t device[CN_DEVICE_ID_LEN],
                        uint64_t seq, const cn_rec_envelope_t *env, uint64_t sent_ns)
{
    cn_route_t route;
    if (cn__registry_get(s->registry, device, &route) < 0)
        return; /* offline: the mailbox keeps it */
    /* A device on the routing loop itself gets its frame at once, not
     * through the inbox: no copy into a message, no lock, and the frame
     * leaves in this iteration's flush instead of the next one's. */
    if (here && route.loop == here->index) {
        cn_conn_t *c = cn__loop_conn_find(here, route.conn_id);
        if (c && c->state == CN_CONN_AUTHED) /* else gone: the mailbox keeps it */
            offer_live(c, seq, sent_ns, env, NULL, 0);
        return;
    }
    cn_msg_t *m =
        msg_for(CN_MSG_DELIVER, &route, device, seq, cn_pb_deliver_frame_size(env, seq), sent_ns);
    if (!m)
        return;
    cn_pb_deliver_frame_write(env, seq, m->data);
    cn__loop_post(s->loops[route.loop], m);
}

void cn__push_to_conn(cn_server_t *s, unsigned loop, uint64_t conn_id,
                      const Chat__ServerFrame *frame)
{
    size_t n = chat__server_frame__get_packed_size(frame);
    cn_msg_t *m = cn__msg_new(CN_MSG_PUSH, n);
    if (!m || loop >= s->nloops) {
        free(m);
        return;
    }
    chat__server_frame__pack(frame, m->data);
    m->conn_id = conn_id;
    cn__loop_post(s->loops[loop], m);
}

void cn__kick_device(cn_server_t *s, const uint8_t device[CN_DEVICE_ID_LEN], const char *why)
{
    cn_route_t route;
    if (cn__registry_get(s->registry, device, &route) < 0)
        return;
    size_t n = strlen(why) + 1;
    cn_msg_t *m = cn__msg_new(CN_MSG_KICK, n);
    if (!m)
        return;
    m->conn_id = route.conn_id;
    memcpy(m->data, why, n);
    cn__loop_post(s->loops[route.loop], m);
}

void cn__free_op(cn_store_op_t *op)
{
    free(op);
}

void cn__push_to_device(cn_server_t *s, const uint8_t device[CN_DEVICE_ID_LEN],
                        const Chat__ServerFrame *frame)
{
    cn_route_t route;
    if (cn__registry_get(s->registry, device, &route) < 0)
        return; /* offline */
    cn_msg_t *m =
        msg_for(CN_MSG_PUSH, &route, device, 0, chat__server_frame__get_packed_size(frame), 0);
    if (!m)
        return;
    chat__server_frame__pack(frame, m->data);
    cn__loop_post(s->loops[route.loop], m);
}
