/*
 * Fuzzes what the node does with one reassembled WebSocket message before
 * any storage is involved: chat__client_frame__unpack with a budgeted
 * allocator (as a per-frame arena would be), a walk over every field of
 * every oneof body through the protobuf-c descriptors (so ASan sees each
 * byte protobuf-c hands out), the field checks of node/dispatch.c and
 * node/handle_*.c mirrored here with the same limits (the handlers need a
 * live connection and a store, so they are not linked), and a pack/unpack
 * round trip that must be stable.
 *
 * Oracles: ASan/UBSan on every access, __builtin_trap when the allocator
 * budget leaks or a validated frame breaks an invariant the handlers rely
 * on (a length they memcpy, a count they index a fixed array with).
 */
#include "crypto/cn_crypto.h"
#include "proto/cn_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The node never decodes more than one WebSocket message (close 1009 above). */
#define FUZZ_INPUT_MAX CN_WS_MESSAGE_MAX
/* Total bytes one decode may allocate; beyond it allocations fail. */
#define FUZZ_BUDGET (4u * 1024u * 1024u)

/* ------------------------------------------------------ budgeted allocator */

typedef struct budget {
    size_t used;  /* bytes live now */
    size_t peak;  /* high-water mark */
    size_t live;  /* allocations not yet freed */
    bool refused; /* at least one allocation failed */
} budget_t;

typedef union header {
    size_t size;
    max_align_t align;
} header_t;

static void *budget_alloc(void *ctx, size_t n)
{
    budget_t *b = ctx;
    if (n > FUZZ_BUDGET || b->used + n > FUZZ_BUDGET) {
        b->refused = true;
        return NULL;
    }
    header_t *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->size = n;
    b->used += n;
    b->live++;
    if (b->used > b->peak)
        b->peak = b->used;
    return h + 1;
}

static void budget_free(void *ctx, void *p)
{
    budget_t *b = ctx;
    if (!p)
        return;
    header_t *h = (header_t *)p - 1;
    if (b->live == 0 || h->size > b->used)
        __builtin_trap(); /* a double free or a foreign pointer */
    b->used -= h->size;
    b->live--;
    free(h);
}

/* ------------------------------------------------- generic descriptor walk */

static volatile uint8_t g_sink;
/* protobuf-c 1.4 accepts field number 0 when its key varint is not minimal
 * (0x82 0x00) and keeps it as an unknown field, which it then re-packs as
 * the key 0x02 that it refuses to decode. Harmless (the node ignores
 * unknown fields); the round trip below allows for it. */
static bool g_tag0;

static void touch(const void *p, size_t n)
{
    const uint8_t *q = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= q[i];
    g_sink ^= x;
}

static void walk_message(const ProtobufCMessage *m, int depth);

static size_t field_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    __builtin_trap();
}

static void walk_value(const ProtobufCFieldDescriptor *f, const void *v, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        if (s)
            touch(s, strlen(s) + 1);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = v;
        if (b->len && !b->data)
            __builtin_trap();
        touch(b->data, b->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)v;
        if (sub)
            walk_message(sub, depth + 1);
        break;
    }
    default:
        touch(v, field_size(f->type));
        break;
    }
}

/* Reads every field of m (and of its sub-messages) the way a handler could. */
static void walk_message(const ProtobufCMessage *m, int depth)
{
    if (depth > 16)
        __builtin_trap(); /* chat.proto nests a few levels; this cannot happen */
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        __builtin_trap();
    const uint8_t *base = (const uint8_t *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = base + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const uint8_t *arr = *(const uint8_t *const *)member;
            if (n && !arr)
                __builtin_trap();
            for (size_t k = 0; k < n; k++)
                walk_value(f, arr + k * field_size(f->type), depth);
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
            if (which == f->id)
                walk_value(f, member, depth);
        } else {
            walk_value(f, member, depth);
        }
    }
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        touch(m->unknown_fields[i].data, m->unknown_fields[i].len);
        g_tag0 |= m->unknown_fields[i].tag == 0;
    }
}

/* ------------------------------------------- node field checks, mirrored */

/* Fixed transcript inputs: the fuzzer cannot forge signatures anyway. */
static const uint8_t k_nonce[CN_NONCE_LEN] = {1};
static const uint8_t k_node[CN_DEVICE_ID_LEN] = {2};
static const uint8_t k_exporter[CN_EXPORTER_LEN] = {3};

/* node/handle_auth.c verify_session(). */
static bool check_session(const char *context, ProtobufCBinaryData dev, ProtobufCBinaryData sig,
                          const char *handle)
{
    if (dev.len != CN_DEVICE_ID_LEN || sig.len != CN_SIGNATURE_LEN)
        return false;
    cn_buf_t t;
    cn_buf_init(&t);
    int rc = cn_transcript_session(&t, context, k_nonce, k_node, dev.data, 1, k_exporter, handle);
    if (rc == CN_OK)
        rc = cn_sig_verify(dev.data, t.data, t.len, sig.data);
    cn_buf_dispose(&t);
    return rc == CN_OK;
}

/* node/handle_auth.c invite_record(): lower-case hex, 1..64 characters. */
static bool invite_token_ok(const char *token)
{
    size_t n = strlen(token);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
            return false;
    return true;
}

static void check_register(const Chat__Register *m)
{
    char handle[CN_HANDLE_MAX + 1];
    if (cn_handle_normalize(m->handle, handle) < 0)
        return;
    if (strlen(handle) < CN_HANDLE_MIN || strlen(handle) > CN_HANDLE_MAX)
        __builtin_trap();
    if (strlen(m->device_name) > CN_DEVICE_NAME_MAX)
        return;
    char name[CN_DEVICE_NAME_MAX + 1]; /* cn_rec_device_t.name */
    memcpy(name, m->device_name, strlen(m->device_name) + 1);
    touch(name, strlen(name));
    if (!check_session(CN_REGISTER_CONTEXT, m->device_id, m->signature, handle))
        return;
    g_sink ^= (uint8_t)invite_token_ok(m->invite_token);
}

/* node/handle_prekeys.c cn__handle_upload_prekeys(). */
static void check_upload(const Chat__UploadPrekeys *m)
{
    if (m->n_one_time_prekeys > CN_OTPK_UPLOAD_MAX)
        return;
    const Chat__SignedPrekey *sp = m->signed_prekey;
    if (sp) {
        if (sp->public_key.len != CN_PREKEY_LEN || sp->signature.len != CN_SIGNATURE_LEN)
            return;
        cn_buf_t t;
        cn_buf_init(&t);
        int rc = cn_transcript_prekey(&t, sp->key_id, sp->public_key.data);
        if (rc == CN_OK)
            rc = cn_sig_verify(k_node, t.data, t.len, sp->signature.data);
        cn_buf_dispose(&t);
        g_sink ^= (uint8_t)rc;
    }
    uint8_t keys[CN_OTPK_UPLOAD_MAX][CN_PREKEY_LEN];
    for (size_t i = 0; i < m->n_one_time_prekeys; i++)
        if (m->one_time_prekeys[i]->public_key.len != CN_PREKEY_LEN)
            return;
    for (size_t i = 0; i < m->n_one_time_prekeys; i++)
        memcpy(keys[i], m->one_time_prekeys[i]->public_key.data, CN_PREKEY_LEN);
    touch(keys, m->n_one_time_prekeys * CN_PREKEY_LEN);
}

/* node/handle_prekeys.c cn__handle_fetch_prekeys() (before the store). */
static void check_fetch(const Chat__FetchPrekeys *m)
{
    char handle[CN_HANDLE_MAX + 1];
    if (cn_handle_normalize(m->handle, handle) < 0 || m->n_device_ids > CN_FETCH_DEVICES_MAX)
        return;
    uint8_t ids[CN_FETCH_DEVICES_MAX][CN_DEVICE_ID_LEN];
    for (size_t i = 0; i < m->n_device_ids; i++) {
        if (m->device_ids[i].len != CN_DEVICE_ID_LEN)
            return;
        memcpy(ids[i], m->device_ids[i].data, CN_DEVICE_ID_LEN);
    }
    touch(ids, m->n_device_ids * CN_DEVICE_ID_LEN);
}

/* node/handle_send.c check_fields(); returns the status it would answer. */
static Chat__Status send_fields(const Chat__Send *m)
{
    if (m->message_id.len != CN_MESSAGE_ID_LEN)
        return CHAT__STATUS__BAD_REQUEST;
    if (m->kind < CHAT__KIND__MESSAGE || m->kind > CHAT__KIND__CONTROL)
        return CHAT__STATUS__BAD_REQUEST;
    if (m->group_id.len || m->sender_key_ciphertext.len)
        return CHAT__STATUS__BAD_REQUEST;
    if (m->n_envelopes > CN_RECIPIENTS_MAX)
        return CHAT__STATUS__TOO_LARGE;
    for (size_t i = 0; i < m->n_envelopes; i++) {
        const Chat__Envelope *e = m->envelopes[i];
        if (e->device_id.len != CN_DEVICE_ID_LEN || e->ciphertext.len == 0)
            return CHAT__STATUS__BAD_REQUEST;
        if (e->ciphertext.len > CN_CIPHERTEXT_MAX)
            return CHAT__STATUS__TOO_LARGE;
        for (size_t j = 0; j < i; j++)
            if (memcmp(m->envelopes[j]->device_id.data, e->device_id.data, CN_DEVICE_ID_LEN) == 0)
                return CHAT__STATUS__BAD_REQUEST;
    }
    char to[CN_HANDLE_MAX + 1];
    if (cn_handle_normalize(m->to, to) < 0)
        return CHAT__STATUS__BAD_REQUEST;
    return CHAT__STATUS__OK;
}

/* A recipient with two devices; the node answers CONFLICT like this. */
static uint8_t k_devices[2][CN_DEVICE_ID_LEN] = {{0xd1}, {0xd2}};

static void pack_checked(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    if (protobuf_c_message_pack(m, buf) != n)
        __builtin_trap();
    free(buf);
}

/* node/handle_send.c check_devices() and make_pending(), on a valid Send. */
static void check_send(const Chat__Send *m)
{
    if (send_fields(m) != CHAT__STATUS__OK)
        return;
    ProtobufCBinaryData missing[CN_DEVICES_HARD_MAX], stale[CN_RECIPIENTS_MAX];
    size_t nm = 0, ns = 0, bytes = 0;
    for (size_t d = 0; d < 2; d++) {
        bool found = false;
        for (size_t i = 0; i < m->n_envelopes; i++)
            found |= memcmp(m->envelopes[i]->device_id.data, k_devices[d], CN_DEVICE_ID_LEN) == 0;
        if (!found)
            missing[nm++] = (ProtobufCBinaryData){CN_DEVICE_ID_LEN, k_devices[d]};
    }
    for (size_t i = 0; i < m->n_envelopes; i++) {
        const uint8_t *dev = m->envelopes[i]->device_id.data;
        if (memcmp(dev, k_devices[0], CN_DEVICE_ID_LEN) != 0 &&
            memcmp(dev, k_devices[1], CN_DEVICE_ID_LEN) != 0)
            stale[ns++] = m->envelopes[i]->device_id;
        bytes += m->envelopes[i]->ciphertext.len;
    }
    if (bytes > (size_t)CN_RECIPIENTS_MAX * CN_CIPHERTEXT_MAX)
        __builtin_trap();
    Chat__Conflict cf;
    chat__conflict__init(&cf);
    cf.n_missing_devices = nm;
    cf.missing_devices = missing;
    cf.n_stale_devices = ns;
    cf.stale_devices = stale;
    pack_checked(&cf.base);
    /* make_pending(): one contiguous copy of every ciphertext. */
    uint8_t *copy = malloc(bytes ? bytes : 1), *w = copy;
    if (!copy)
        return;
    for (size_t i = 0; i < m->n_envelopes; i++) {
        memcpy(w, m->envelopes[i]->ciphertext.data, m->envelopes[i]->ciphertext.len);
        w += m->envelopes[i]->ciphertext.len;
    }
    free(copy);
}

/* node/handle_misc.c cn__handle_ack(). */
static void check_ack(const Chat__Ack *m)
{
    if (m->n_seqs == 0 || m->n_seqs > CN_ACK_SEQS_MAX)
        return;
    uint64_t seqs[CN_ACK_SEQS_MAX];
    memcpy(seqs, m->seqs, m->n_seqs * sizeof(uint64_t));
    touch(seqs, m->n_seqs * sizeof(uint64_t));
}

/* node/dispatch.c route(), minus what needs a connection or a store. */
static void check_frame(const Chat__ClientFrame *f)
{
    char handle[CN_HANDLE_MAX + 1];
    if (f->request_id == 0)
        return; /* BAD_REQUEST with id 0 */
    switch (f->body_case) {
    case CHAT__CLIENT_FRAME__BODY_AUTH:
        g_sink ^=
            (uint8_t)check_session(CN_AUTH_CONTEXT, f->auth->device_id, f->auth->signature, NULL);
        break;
    case CHAT__CLIENT_FRAME__BODY_REGISTER:
        check_register(f->register_);
        break;
    case CHAT__CLIENT_FRAME__BODY_UPLOAD_PREKEYS:
        check_upload(f->upload_prekeys);
        break;
    case CHAT__CLIENT_FRAME__BODY_FETCH_PREKEYS:
        check_fetch(f->fetch_prekeys);
        break;
    case CHAT__CLIENT_FRAME__BODY_GET_DEVICES:
        g_sink ^= (uint8_t)cn_handle_normalize(f->get_devices->handle, handle);
        break;
    case CHAT__CLIENT_FRAME__BODY_SEND:
        check_send(f->send);
        break;
    case CHAT__CLIENT_FRAME__BODY_ACK:
        check_ack(f->ack);
        break;
    case CHAT__CLIENT_FRAME__BODY_PING: {
        Chat__Pong pong;
        chat__pong__init(&pong);
        pong.client_time = f->ping->client_time;
        Chat__Response r;
        chat__response__init(&r);
        r.request_id = f->request_id;
        r.result_case = CHAT__RESPONSE__RESULT_PONG;
        r.pong = &pong;
        pack_checked(&r.base);
        break;
    }
    default:
        break; /* UNAVAILABLE (not served yet) or BAD_REQUEST (empty) */
    }
}

/* ---------------------------------------------------------------- entry */

static Chat__ClientFrame *unpack(budget_t *b, const uint8_t *p, size_t n)
{
    ProtobufCAllocator a = {.alloc = budget_alloc, .free = budget_free, .allocator_data = b};
    return chat__client_frame__unpack(&a, n, p);
}

static void release(budget_t *b, Chat__ClientFrame *f)
{
    ProtobufCAllocator a = {.alloc = budget_alloc, .free = budget_free, .allocator_data = b};
    chat__client_frame__free_unpacked(f, &a);
    if (b->used != 0 || b->live != 0)
        __builtin_trap(); /* protobuf-c leaked part of a frame */
}

/* pack(unpack(x)) must unpack again and re-pack to the same bytes. */
static void round_trip(const Chat__ClientFrame *f)
{
    size_t n = chat__client_frame__get_packed_size(f);
    uint8_t *one = malloc(n ? n : 1);
    if (!one)
        return;
    if (chat__client_frame__pack(f, one) != n)
        __builtin_trap();
    budget_t b = {0};
    Chat__ClientFrame *g = unpack(&b, one, n);
    if (!g) {
        /* Only a budget refusal (or the tag 0 quirk) may fail on bytes
         * protobuf-c produced itself. */
        if (!b.refused && !g_tag0)
            __builtin_trap();
    } else {
        if (g->request_id != f->request_id || g->body_case != f->body_case)
            __builtin_trap();
        size_t m = chat__client_frame__get_packed_size(g);
        uint8_t *two = malloc(m ? m : 1);
        if (two) {
            if (m != n || chat__client_frame__pack(g, two) != m || memcmp(one, two, n) != 0)
                __builtin_trap();
            free(two);
        }
        release(&b, g);
    }
    free(one);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool inited;
    if (!inited) {
        if (cn_crypto_init() != CN_OK)
            __builtin_trap();
        inited = true;
    }
    if (size > FUZZ_INPUT_MAX)
        return 0;
    budget_t b = {0};
    Chat__ClientFrame *f = unpack(&b, data, size);
    if (!f) {
        if (b.used != 0 || b.live != 0)
            __builtin_trap(); /* a failed decode must release what it took */
        return 0;
    }
    if (b.peak > FUZZ_BUDGET)
        __builtin_trap();
    g_tag0 = false;
    walk_message(&f->base, 0);
    check_frame(f);
    round_trip(f);
    release(&b, f);
    return 0;
}
