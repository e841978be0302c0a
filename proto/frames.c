/*
 * The ServerFrames of the delivery path, written by hand: Deliver (every
 * copy of every message), Response{SendOk} and Response{AckOk}. protobuf-c
 * sizes and packs a frame by walking its descriptors, message by message
 * (get_packed_size and pack were 3.6 % of the node's samples at relay
 * 80,000/s); these write the same bytes directly. proto3 rules, as
 * protobuf-c applies them: fields in number order, a scalar at its default
 * (0, false, empty) left out, the oneof's message always present.
 * tests/unit/proto/test_frames.c compares every field combination with
 * chat__server_frame__pack.
 */
#include "proto/cn_proto.h"

#include <string.h>

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

/* Field numbers (proto/chat.proto). */
enum {
    F_FRAME_RESPONSE = 10,
    F_FRAME_DELIVER = 12,
    F_RESPONSE_REQUEST_ID = 1,
    F_RESPONSE_SEND_OK = 11,
    F_RESPONSE_ACK_OK = 22,
    F_SEND_OK_SERVER_TIME = 1,
    F_SEND_OK_DUPLICATE = 2,
    F_SEND_OK_DELIVERED_ONLINE = 3,
    F_ACK_OK_DELETED = 1,
    F_DELIVER_SEQ = 1,
    F_DELIVER_MESSAGE_ID = 2,
    F_DELIVER_FROM = 3,
    F_DELIVER_FROM_DEVICE = 4,
    F_DELIVER_KIND = 5,
    F_DELIVER_SERVER_TIME = 6,
    F_DELIVER_CIPHERTEXT = 7,
    F_DELIVER_GROUP_ID = 8,
    F_DELIVER_EPHEMERAL = 9,
};

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t tag_len(unsigned field)
{
    return varint_len((uint64_t)field << 3);
}

static uint8_t *put_tag(uint8_t *p, unsigned field, unsigned wire)
{
    return put_varint(p, (uint64_t)field << 3 | wire);
}

/* A varint field, left out at 0. */
static size_t uint_len(unsigned field, uint64_t v)
{
    return v ? tag_len(field) + varint_len(v) : 0;
}

static uint8_t *put_uint(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0)
        return p;
    p = put_tag(p, field, WIRE_VARINT);
    return put_varint(p, v);
}

/* A length-delimited field of n payload bytes, left out when empty unless
 * always (a oneof's message). */
static size_t len_field_len(unsigned field, size_t n, bool always)
{
    return n || always ? tag_len(field) + varint_len(n) + n : 0;
}

static uint8_t *put_len_head(uint8_t *p, unsigned field, size_t n)
{
    p = put_tag(p, field, WIRE_LEN);
    return put_varint(p, n);
}

static uint8_t *put_bytes(uint8_t *p, unsigned field, const void *v, size_t n)
{
    if (n == 0)
        return p;
    p = put_len_head(p, field, n);
    memcpy(p, v, n);
    return p + n;
}

/* ------------------------------------------------------------ Deliver */

static size_t deliver_len(const cn_rec_envelope_t *env, uint64_t seq)
{
    return uint_len(F_DELIVER_SEQ, seq) +
           len_field_len(F_DELIVER_MESSAGE_ID, CN_MESSAGE_ID_LEN, false) +
           len_field_len(F_DELIVER_FROM, strlen(env->from), false) +
           len_field_len(F_DELIVER_FROM_DEVICE, CN_DEVICE_ID_LEN, false) +
           uint_len(F_DELIVER_KIND, env->kind) + uint_len(F_DELIVER_SERVER_TIME, env->server_time) +
           len_field_len(F_DELIVER_CIPHERTEXT, env->ciphertext.len, false) +
           (env->has_group ? len_field_len(F_DELIVER_GROUP_ID, CN_GROUP_ID_LEN, false) : 0) +
           uint_len(F_DELIVER_EPHEMERAL, seq == 0);
}

size_t cn_pb_deliver_frame_size(const cn_rec_envelope_t *env, uint64_t seq)
{
    return len_field_len(F_FRAME_DELIVER, deliver_len(env, seq), true);
}

size_t cn_pb_deliver_frame_write(const cn_rec_envelope_t *env, uint64_t seq, uint8_t *out)
{
    uint8_t *p = put_len_head(out, F_FRAME_DELIVER, deliver_len(env, seq));
    p = put_uint(p, F_DELIVER_SEQ, seq);
    p = put_bytes(p, F_DELIVER_MESSAGE_ID, env->message_id, CN_MESSAGE_ID_LEN);
    p = put_bytes(p, F_DELIVER_FROM, env->from, strlen(env->from));
    p = put_bytes(p, F_DELIVER_FROM_DEVICE, env->from_device, CN_DEVICE_ID_LEN);
    p = put_uint(p, F_DELIVER_KIND, env->kind);
    p = put_uint(p, F_DELIVER_SERVER_TIME, env->server_time);
    p = put_bytes(p, F_DELIVER_CIPHERTEXT, env->ciphertext.base, env->ciphertext.len);
    if (env->has_group)
        p = put_bytes(p, F_DELIVER_GROUP_ID, env->group_id, CN_GROUP_ID_LEN);
    p = put_uint(p, F_DELIVER_EPHEMERAL, seq == 0);
    return (size_t)(p - out);
}

/* ---------------------------------------------------------- responses */

/* ServerFrame{response: Response{request_id, <result field>: body}}, with
 * the result's body (blen bytes) already written at body. */
static size_t response_frame(uint8_t *out, uint64_t request_id, unsigned result_field,
                             const uint8_t *body, size_t blen)
{
    size_t rlen =
        uint_len(F_RESPONSE_REQUEST_ID, request_id) + len_field_len(result_field, blen, true);
    uint8_t *p = put_len_head(out, F_FRAME_RESPONSE, rlen);
    p = put_uint(p, F_RESPONSE_REQUEST_ID, request_id);
    p = put_len_head(p, result_field, blen);
    memcpy(p, body, blen);
    return (size_t)(p + blen - out);
}

size_t cn_pb_send_ok_frame(uint8_t out[CN_PB_RESPONSE_FRAME_MAX], uint64_t request_id,
                           uint64_t server_time, bool duplicate, uint32_t delivered_online)
{
    uint8_t body[32], *p = body;
    p = put_uint(p, F_SEND_OK_SERVER_TIME, server_time);
    p = put_uint(p, F_SEND_OK_DUPLICATE, duplicate);
    p = put_uint(p, F_SEND_OK_DELIVERED_ONLINE, delivered_online);
    return response_frame(out, request_id, F_RESPONSE_SEND_OK, body, (size_t)(p - body));
}

size_t cn_pb_ack_ok_frame(uint8_t out[CN_PB_RESPONSE_FRAME_MAX], uint64_t request_id,
                          uint32_t deleted)
{
    uint8_t body[16], *p = body;
    p = put_uint(p, F_ACK_OK_DELETED, deleted);
    return response_frame(out, request_id, F_RESPONSE_ACK_OK, body, (size_t)(p - body));
}
