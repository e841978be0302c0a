/* The hand-written hot ServerFrames (proto/frames.c) are byte for byte what
 * protobuf-c packs for the same frame, and decode back to it. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "proto/cn_proto.h"

#include <stdlib.h>

static uint8_t *packed(const Chat__ServerFrame *f, size_t *n)
{
    *n = chat__server_frame__get_packed_size(f);
    uint8_t *p = malloc(*n ? *n : 1);
    assert_non_null(p);
    assert_int_equal(chat__server_frame__pack(f, p), *n);
    return p;
}

/* env and ct are not const: protobuf-c's structs take mutable pointers. */
static void check_deliver(cn_rec_envelope_t *env, uint8_t *ct, uint64_t seq)
{
    Chat__Deliver d;
    chat__deliver__init(&d);
    d.seq = seq;
    d.message_id = (ProtobufCBinaryData){CN_MESSAGE_ID_LEN, env->message_id};
    d.from = env->from;
    d.from_device = (ProtobufCBinaryData){CN_DEVICE_ID_LEN, env->from_device};
    d.kind = (Chat__Kind)env->kind;
    d.server_time = env->server_time;
    d.ciphertext = (ProtobufCBinaryData){env->ciphertext.len, env->ciphertext.len ? ct : NULL};
    if (env->has_group)
        d.group_id = (ProtobufCBinaryData){CN_GROUP_ID_LEN, env->group_id};
    d.ephemeral = seq == 0;
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_DELIVER;
    f.deliver = &d;
    size_t want_n;
    uint8_t *want = packed(&f, &want_n);
    size_t n = cn_pb_deliver_frame_size(env, seq);
    assert_int_equal(n, want_n);
    uint8_t *got = malloc(n + 1);
    assert_non_null(got);
    got[n] = 0xa5; /* writes exactly n bytes */
    assert_int_equal(cn_pb_deliver_frame_write(env, seq, got), n);
    assert_int_equal(got[n], 0xa5);
    assert_memory_equal(got, want, n);
    Chat__ServerFrame *back = chat__server_frame__unpack(NULL, n, got);
    assert_non_null(back);
    assert_int_equal(back->body_case, CHAT__SERVER_FRAME__BODY_DELIVER);
    assert_true(back->deliver->seq == seq && back->deliver->ephemeral == (seq == 0));
    assert_int_equal(back->deliver->ciphertext.len, env->ciphertext.len);
    chat__server_frame__free_unpacked(back, NULL);
    free(got);
    free(want);
}

static void test_deliver_matches_protobuf_c(void **state)
{
    (void)state;
    static const uint64_t seqs[] = {0, 1, 127, 128, 16384, UINT64_MAX};
    static const size_t lens[] = {0, 1, 127, 128, 16383, 16384, CN_CIPHERTEXT_MAX};
    static const uint64_t times[] = {0, 1, 1700000000999ull};
    static const uint32_t kinds[] = {0, 1, CHAT__KIND__CONTROL};
    static const char *const froms[] = {"", "b", "a-handle-of-32-characters-at-max"};
    uint8_t *ct = malloc(CN_CIPHERTEXT_MAX);
    assert_non_null(ct);
    for (size_t i = 0; i < CN_CIPHERTEXT_MAX; i++)
        ct[i] = (uint8_t)(i * 13 + 1);
    cn_rec_envelope_t env;
    memset(&env, 0, sizeof(env));
    memset(env.message_id, 0x31, sizeof(env.message_id));
    memset(env.from_device, 0x42, sizeof(env.from_device));
    memset(env.group_id, 0x53, sizeof(env.group_id));
    size_t cases = 0;
    for (size_t a = 0; a < CN_ARRAY_LEN(seqs); a++)
        for (size_t b = 0; b < CN_ARRAY_LEN(lens); b++)
            for (size_t t = 0; t < CN_ARRAY_LEN(times); t++)
                for (size_t k = 0; k < CN_ARRAY_LEN(kinds); k++)
                    for (size_t f = 0; f < CN_ARRAY_LEN(froms); f++)
                        for (int g = 0; g < 2; g++) {
                            env.ciphertext = cn_slice(lens[b] ? ct : NULL, lens[b]);
                            env.server_time = times[t];
                            env.kind = kinds[k];
                            assert_true(strlen(froms[f]) <= CN_HANDLE_MAX);
                            strcpy(env.from, froms[f]);
                            env.has_group = g;
                            check_deliver(&env, ct, seqs[a]);
                            cases++;
                        }
    assert_int_equal(cases, 6 * 7 * 3 * 3 * 3 * 2);
    free(ct);
}

static Chat__Response response_with(uint64_t request_id, Chat__Response__ResultCase result)
{
    Chat__Response r;
    chat__response__init(&r);
    r.request_id = request_id;
    r.result_case = result;
    return r;
}

static void check_response(Chat__Response *r, const uint8_t *got, size_t n)
{
    Chat__ServerFrame f;
    chat__server_frame__init(&f);
    f.body_case = CHAT__SERVER_FRAME__BODY_RESPONSE;
    f.response = r;
    size_t want_n;
    uint8_t *want = packed(&f, &want_n);
    assert_true(n <= CN_PB_RESPONSE_FRAME_MAX);
    assert_int_equal(n, want_n);
    assert_memory_equal(got, want, n);
    free(want);
}

static void test_send_ok_and_ack_ok_match_protobuf_c(void **state)
{
    (void)state;
    static const uint64_t rids[] = {0, 1, 300, UINT64_MAX};
    static const uint64_t times[] = {0, 1700000000999ull, UINT64_MAX};
    static const uint32_t counts[] = {0, 1, 200, UINT32_MAX};
    uint8_t out[CN_PB_RESPONSE_FRAME_MAX];
    for (size_t a = 0; a < CN_ARRAY_LEN(rids); a++) {
        for (size_t t = 0; t < CN_ARRAY_LEN(times); t++)
            for (int dup = 0; dup < 2; dup++)
                for (size_t c = 0; c < CN_ARRAY_LEN(counts); c++) {
                    Chat__SendOk ok;
                    chat__send_ok__init(&ok);
                    ok.server_time = times[t];
                    ok.duplicate = dup;
                    ok.delivered_online = counts[c];
                    Chat__Response r = response_with(rids[a], CHAT__RESPONSE__RESULT_SEND_OK);
                    r.send_ok = &ok;
                    size_t n = cn_pb_send_ok_frame(out, rids[a], times[t], dup, counts[c]);
                    check_response(&r, out, n);
                }
        for (size_t c = 0; c < CN_ARRAY_LEN(counts); c++) {
            Chat__AckOk ok;
            chat__ack_ok__init(&ok);
            ok.deleted = counts[c];
            Chat__Response r = response_with(rids[a], CHAT__RESPONSE__RESULT_ACK_OK);
            r.ack_ok = &ok;
            size_t n = cn_pb_ack_ok_frame(out, rids[a], counts[c]);
            check_response(&r, out, n);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_matches_protobuf_c),
        cmocka_unit_test(test_send_ok_and_ack_ok_match_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
