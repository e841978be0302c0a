/*
 * The protobuf side of chatbench. Requests are packed with protobuf-c
 * straight into the connection's output buffer. The frames that arrive at
 * high rate (Deliver, Response) are read by a small field scanner instead of
 * protobuf-c's unpack, which would allocate a tree per message; the
 * generator must stay cheaper than the node it measures.
 */
#include "crypto/cn_crypto.h"
#include "tests/bench/bench.h"

#include <stdlib.h>
#include <string.h>

typedef struct pb {
    const uint8_t *p;
    size_t n, pos;
} pb_t;

static bool pb_varint(pb_t *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->n)
            return false;
        uint8_t b = r->p[r->pos++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Reads the next field: its number, wire type and, for LEN, the bytes. */
static bool pb_field(pb_t *r, uint32_t *field, uint32_t *wt, uint64_t *v, cn_slice_t *bytes)
{
    uint64_t tag;
    if (!pb_varint(r, &tag))
        return false;
    *field = (uint32_t)(tag >> 3);
    *wt = (uint32_t)(tag & 7);
    switch (*wt) {
    case 0:
        return pb_varint(r, v);
    case 1:
        if (r->n - r->pos < 8)
            return false;
        r->pos += 8;
        return true;
    case 5:
        if (r->n - r->pos < 4)
            return false;
        r->pos += 4;
        return true;
    case 2: {
        uint64_t len;
        if (!pb_varint(r, &len) || len > r->n - r->pos)
            return false;
        bytes->base = (uint8_t *)(uintptr_t)(r->p + r->pos);
        bytes->len = (size_t)len;
        r->pos += (size_t)len;
        return true;
    }
    default:
        return false;
    }
}

static bool scan_inner(bench_frame_t *f, cn_slice_t body)
{
    pb_t r = {.p = body.base, .n = body.len};
    while (r.pos < r.n) {
        uint32_t field, wt;
        uint64_t v = 0;
        cn_slice_t b = {0};
        if (!pb_field(&r, &field, &wt, &v, &b))
            return false;
        switch (f->type) {
        case CHAT__SERVER_FRAME__BODY_RESPONSE:
            if (field == 1 && wt == 0)
                f->request_id = v;
            else if (field == 2 && wt == 0)
                f->status = (uint32_t)v;
            break;
        case CHAT__SERVER_FRAME__BODY_DELIVER:
            if (field == 1 && wt == 0)
                f->seq = v;
            else if (field == 7 && wt == 2)
                f->ciphertext = b;
            break;
        case CHAT__SERVER_FRAME__BODY_MAILBOX_DRAINED:
            if (field == 1 && wt == 0)
                f->seq = v;
            break;
        default:
            break;
        }
    }
    return true;
}

bool bench_frame_scan(const uint8_t *p, size_t n, bench_frame_t *f)
{
    memset(f, 0, sizeof(*f));
    f->message = cn_slice(p, n);
    pb_t r = {.p = p, .n = n};
    while (r.pos < r.n) {
        uint32_t field, wt;
        uint64_t v = 0;
        cn_slice_t b = {0};
        if (!pb_field(&r, &field, &wt, &v, &b))
            return false;
        if (wt == 2 && field >= 10 && field <= 19) {
            f->type = (Chat__ServerFrame__BodyCase)field;
            if (!scan_inner(f, b))
                return false;
        }
    }
    return true;
}

bool bench_challenge_read(bench_conn_t *c, const uint8_t *p, size_t n)
{
    Chat__ServerFrame *f = chat__server_frame__unpack(NULL, n, p);
    if (!f)
        return false;
    bool ok = f->body_case == CHAT__SERVER_FRAME__BODY_CHALLENGE &&
              f->challenge->nonce.len == CN_NONCE_LEN &&
              f->challenge->node_id.len == CN_DEVICE_ID_LEN && f->challenge->server_time != 0;
    if (ok) {
        memcpy(c->nonce, f->challenge->nonce.data, CN_NONCE_LEN);
        memcpy(c->node_id, f->challenge->node_id.data, CN_DEVICE_ID_LEN);
        c->server_time = f->challenge->server_time;
    }
    chat__server_frame__free_unpacked(f, NULL);
    return ok;
}

/*
 * Message ids are made as the reference client makes them (client/send.c):
 * time-ordered, cn_time_ordered_id, with the random part from SplitMix64
 * seeded once from libsodium, so that the generator's core does not make a
 * getrandom() call per Send.
 */
void bench_message_id(uint8_t out[CN_MESSAGE_ID_LEN])
{
    static uint64_t state;
    static long seeded_for = -1; /* processes fork from one: each seeds its own */
    if (seeded_for != (long)g_bench.proc) {
        cn_random(&state, sizeof(state));
        seeded_for = (long)g_bench.proc;
    }
    uint8_t rnd[16];
    for (size_t i = 0; i < sizeof(rnd); i += 8) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(rnd + i, &z, 8);
    }
    cn_time_ordered_id(out, cn_now_ms(), rnd);
}

uint64_t bench_send_message(bench_conn_t *c, const uint8_t message_id[CN_MESSAGE_ID_LEN], char *to,
                            uint8_t *dev, uint8_t *ct, size_t n)
{
    uint8_t mid[CN_MESSAGE_ID_LEN];
    memcpy(mid, message_id, sizeof(mid));
    Chat__Envelope env;
    chat__envelope__init(&env);
    env.device_id.data = dev;
    env.device_id.len = CN_DEVICE_ID_LEN;
    env.ciphertext.data = ct;
    env.ciphertext.len = n;
    Chat__Envelope *envs[1] = {&env};
    Chat__Send s;
    chat__send__init(&s);
    s.message_id.data = mid;
    s.message_id.len = CN_MESSAGE_ID_LEN;
    s.to = to;
    s.n_envelopes = 1;
    s.envelopes = envs;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    return bench_conn_send_pb(c, &f);
}

uint64_t bench_send_group(bench_conn_t *c, const uint8_t message_id[CN_MESSAGE_ID_LEN],
                          const uint8_t group_id[CN_GROUP_ID_LEN], uint8_t *ct, size_t n)
{
    uint8_t mid[CN_MESSAGE_ID_LEN], gid[CN_GROUP_ID_LEN];
    memcpy(mid, message_id, sizeof(mid));
    memcpy(gid, group_id, sizeof(gid));
    Chat__Send s;
    chat__send__init(&s);
    s.message_id.data = mid;
    s.message_id.len = CN_MESSAGE_ID_LEN;
    s.kind = CHAT__KIND__MESSAGE;
    s.group_id.data = gid;
    s.group_id.len = CN_GROUP_ID_LEN;
    s.sender_key_ciphertext.data = ct;
    s.sender_key_ciphertext.len = n;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_SEND;
    f.send = &s;
    return bench_conn_send_pb(c, &f);
}

uint64_t bench_send_group_create(bench_conn_t *c, const uint8_t group_id[CN_GROUP_ID_LEN],
                                 char *const *handles, size_t n)
{
    Chat__GroupMember *m = calloc(n ? n : 1, sizeof(*m));
    Chat__GroupMember **mp = calloc(n ? n : 1, sizeof(*mp));
    uint64_t rid = 0;
    if (!m || !mp) {
        g_bench.fatal = "out of memory";
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        chat__group_member__init(&m[i]);
        m[i].handle = handles[i];
        m[i].role = CHAT__ROLE__MEMBER;
        mp[i] = &m[i];
    }
    uint8_t gid[CN_GROUP_ID_LEN];
    memcpy(gid, group_id, sizeof(gid));
    Chat__GroupCreate gc;
    chat__group_create__init(&gc);
    gc.group_id.data = gid;
    gc.group_id.len = CN_GROUP_ID_LEN;
    gc.n_members = n;
    gc.members = mp;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_GROUP_CREATE;
    f.group_create = &gc;
    rid = bench_conn_send_pb(c, &f);
out:
    free(m);
    free(mp);
    return rid;
}

void bench_send_ack(bench_conn_t *c, uint64_t *seqs, size_t n)
{
    Chat__Ack a;
    chat__ack__init(&a);
    a.n_seqs = n;
    a.seqs = seqs;
    a.silent_ok = !g_bench.o.ack_replies;
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    f.body_case = CHAT__CLIENT_FRAME__BODY_ACK;
    f.ack = &a;
    (void)bench_conn_send_pb(c, &f);
}
