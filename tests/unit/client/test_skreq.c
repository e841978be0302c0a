/*
 * Sender key requests (client/skreq.c, client/pending.c, docs/E2E.md):
 * the request's content encoding and its negatives, the pending set's
 * bounds and rate limit and its codec, the refusal of non-members, and
 * the sender key window that answers a request at an older iteration.
 */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "client/client_int.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t GID[CN_GROUP_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void request(cn_content_t *c, const uint8_t *dev)
{
    memset(c, 0, sizeof(*c));
    c->version = CN_CLIENT_CONTENT_VER;
    c->type = CN_CONTENT_SENDER_KEY_REQUEST;
    c->sent_at = 77;
    c->group_id = GID;
    c->skreq_key_id = 0xdeadbeef;
    c->skreq_iteration = 41;
    c->skreq_device = dev;
}

static void test_request_encoding(void **state)
{
    (void)state;
    uint8_t dev[CN_DEVICE_ID_LEN];
    memset(dev, 0xab, sizeof(dev));
    cn_content_t in, out;
    request(&in, dev);
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_content_encode(&b, &in), CN_OK);
    assert_int_equal(cn_content_decode(b.data, b.len, &out), CN_OK);
    assert_int_equal(out.type, CN_CONTENT_SENDER_KEY_REQUEST);
    assert_memory_equal(out.group_id, GID, CN_GROUP_ID_LEN);
    assert_int_equal(out.skreq_key_id, 0xdeadbeef);
    assert_int_equal(out.skreq_iteration, 41);
    assert_memory_equal(out.skreq_device, dev, CN_DEVICE_ID_LEN);
    assert_int_equal(out.sent_at, 77);
    /* Truncated anywhere: refused. A flipped bit never crashes and never
     * yields a request without its fields. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_not_equal(cn_content_decode(b.data, n, &out), CN_OK);
    for (size_t i = 0; i < b.len * 8; i++) {
        b.data[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (cn_content_decode(b.data, b.len, &out) == CN_OK &&
            out.type == CN_CONTENT_SENDER_KEY_REQUEST)
            assert_true(out.group_id != NULL && out.skreq_device != NULL);
        b.data[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* The encoder refuses a request without a group or a device. */
    in.skreq_device = NULL;
    cn_buf_reset(&b);
    assert_int_equal(cn_content_encode(&b, &in), CN_EINVAL);
    request(&in, dev);
    in.group_id = NULL;
    assert_int_equal(cn_content_encode(&b, &in), CN_EINVAL);
    cn_buf_dispose(&b);
}

/* Hand-made CBOR maps: {0: 1, 1: 6, 7: gid, 21: key id, 22: it, 23: dev},
 * one field at a time missing or wrong. */
static size_t put_req(uint8_t *p, int omit, int bad_dev_len, bool big_key_id)
{
    size_t n = 0, count = 6 - (omit >= 0);
    p[n++] = (uint8_t)(0xa0 | count);
    const int keys[] = {0, 1, 7, 21, 22, 23};
    for (int k = 0; k < 6; k++) {
        if (k == omit)
            continue;
        p[n++] = (uint8_t)(keys[k] < 24 ? keys[k] : 0);
        if (keys[k] >= 24)
            abort();
        switch (keys[k]) {
        case 0:
            p[n++] = 1;
            break;
        case 1:
            p[n++] = 6;
            break;
        case 7:
            p[n++] = 0x50; /* bytes(16) */
            memcpy(p + n, GID, 16);
            n += 16;
            break;
        case 21:
            if (big_key_id) { /* uint64 above UINT32_MAX */
                p[n++] = 0x1b;
                memset(p + n, 0x01, 8);
                n += 8;
            } else {
                p[n++] = 0x05;
            }
            break;
        case 22:
            p[n++] = 0x03;
            break;
        default:
            p[n++] = 0x58; /* bytes, one-byte length */
            p[n++] = (uint8_t)bad_dev_len;
            memset(p + n, 0xcd, (size_t)bad_dev_len);
            n += (size_t)bad_dev_len;
        }
    }
    return n;
}

static void test_request_negative(void **state)
{
    (void)state;
    uint8_t p[128];
    cn_content_t c;
    size_t n = put_req(p, -1, 32, false);
    assert_int_equal(cn_content_decode(p, n, &c), CN_OK);
    assert_int_equal(c.skreq_key_id, 5);
    assert_int_equal(c.skreq_iteration, 3);
    for (int omit = 2; omit < 6; omit++) { /* group, key id, iteration, device */
        n = put_req(p, omit, 32, false);
        assert_int_equal(cn_content_decode(p, n, &c), CN_EINVAL);
    }
    n = put_req(p, -1, 31, false);
    assert_int_equal(cn_content_decode(p, n, &c), CN_EINVAL);
    n = put_req(p, -1, 33, false);
    assert_int_equal(cn_content_decode(p, n, &c), CN_EINVAL);
    n = put_req(p, -1, 32, true);
    assert_int_equal(cn_content_decode(p, n, &c), CN_EINVAL);
    /* A trailing byte. */
    n = put_req(p, -1, 32, false);
    p[n] = 0;
    assert_int_equal(cn_content_decode(p, n + 1, &c), CN_EINVAL);
}

static cn__pending_msg_t msg(uint8_t sender, uint32_t i)
{
    cn__pending_msg_t m;
    memset(&m, 0, sizeof(m));
    memcpy(m.gid, GID, sizeof(GID));
    memset(m.dev, sender, sizeof(m.dev));
    memcpy(m.message_id, &i, sizeof(i));
    m.message_id[15] = sender;
    strcpy(m.from, "alice");
    m.kind = CHAT__KIND__MESSAGE;
    m.seq = i;
    m.iteration = i;
    return m;
}

static void test_pending_bounds(void **state)
{
    (void)state;
    cn__pending_t p;
    cn__pending_init(&p);
    uint8_t ct[100];
    memset(ct, 0x5a, sizeof(ct));
    /* One sender: the oldest of its own go first. */
    for (uint32_t i = 0; i < CN_CLIENT_PENDING_PER_SENDER_MAX + 6; i++) {
        cn__pending_msg_t m = msg(1, i);
        assert_int_equal(cn__pending_add(&p, &m, ct, sizeof(ct)), CN_OK);
    }
    assert_int_equal(p.n, CN_CLIENT_PENDING_PER_SENDER_MAX);
    assert_int_equal(p.dropped, 6);
    assert_int_equal(p.v[0].iteration, 6);
    assert_int_equal(p.v[p.n - 1].iteration, CN_CLIENT_PENDING_PER_SENDER_MAX + 5);
    assert_int_equal(p.bytes, CN_CLIENT_PENDING_PER_SENDER_MAX * sizeof(ct));
    /* Many senders: the oldest of anyone go at the total bound. */
    for (uint32_t s = 2; s < 2 + CN_CLIENT_PENDING_MAX / 8; s++)
        for (uint32_t i = 0; i < 10; i++) {
            cn__pending_msg_t m = msg((uint8_t)s, i);
            assert_int_equal(cn__pending_add(&p, &m, ct, sizeof(ct)), CN_OK);
        }
    assert_int_equal(p.n, CN_CLIENT_PENDING_MAX);
    assert_int_equal(cn__pending_count(&p, p.v[0].gid, p.v[0].dev) <= 10, true);
    assert_int_equal(p.v[p.n - 1].dev[0], 1 + CN_CLIENT_PENDING_MAX / 8);
    cn__pending_dispose(&p);
    /* Bytes: large ciphertexts stop at CN_CLIENT_PENDING_BYTES_MAX. */
    cn__pending_init(&p);
    uint8_t *big = calloc(1, CN_CIPHERTEXT_MAX);
    assert_non_null(big);
    for (uint32_t s = 1; s < 4; s++)
        for (uint32_t i = 0; i < 30; i++) {
            cn__pending_msg_t m = msg((uint8_t)s, i);
            assert_int_equal(cn__pending_add(&p, &m, big, CN_CIPHERTEXT_MAX), CN_OK);
        }
    assert_true(p.bytes <= CN_CLIENT_PENDING_BYTES_MAX);
    assert_int_equal(p.n, CN_CLIENT_PENDING_BYTES_MAX / CN_CIPHERTEXT_MAX);
    cn__pending_msg_t m = msg(9, 0);
    assert_int_equal(cn__pending_add(&p, &m, big, CN_CIPHERTEXT_MAX + 1), CN_ETOOBIG);
    free(big);
    cn__pending_dispose(&p);
}

static void test_pending_rate_limit(void **state)
{
    (void)state;
    cn__pending_t p;
    cn__pending_init(&p);
    uint8_t a[CN_DEVICE_ID_LEN], b[CN_DEVICE_ID_LEN];
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    uint64_t t = 1000000;
    assert_true(cn__pending_request_due(&p, GID, a, t));
    /* A burst: no second request within the interval. */
    for (int i = 1; i < 50; i++)
        assert_false(cn__pending_request_due(&p, GID, a, t + (uint64_t)i * 100));
    assert_true(cn__pending_request_due(&p, GID, b, t + 10)); /* another sender */
    assert_false(cn__pending_request_due(&p, GID, a, t + CN_CLIENT_SKREQ_INTERVAL_MS - 1));
    assert_true(cn__pending_request_due(&p, GID, a, t + CN_CLIENT_SKREQ_INTERVAL_MS));
    /* The records are bounded: the oldest is forgotten. */
    for (uint32_t i = 0; i < CN__SKREQ_SENT_MAX + 5; i++) {
        uint8_t d[CN_DEVICE_ID_LEN];
        memset(d, 0, sizeof(d));
        memcpy(d, &i, sizeof(i));
        d[31] = 0xee;
        assert_true(cn__pending_request_due(&p, GID, d, t));
    }
    assert_int_equal(p.nsent, CN__SKREQ_SENT_MAX);
    cn__pending_dispose(&p);
}

static void test_pending_codec(void **state)
{
    (void)state;
    cn__pending_t p, q;
    cn__pending_init(&p);
    uint8_t ct[40];
    memset(ct, 0x33, sizeof(ct));
    for (uint32_t i = 0; i < 3; i++) {
        cn__pending_msg_t m = msg((uint8_t)(i + 1), i);
        m.key_id = 1000 + i;
        m.server_time = 5000 + i;
        assert_int_equal(cn__pending_add(&p, &m, ct, sizeof(ct) - i), CN_OK);
    }
    assert_true(cn__pending_request_due(&p, GID, p.v[0].dev, 12345));
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn__pending_encode(&p, &b), CN_OK);
    assert_int_equal(cn__pending_decode(b.data, b.len, &q), CN_OK);
    assert_int_equal(q.n, 3);
    assert_int_equal(q.nsent, 1);
    assert_int_equal(q.sent[0].at_ms, 12345);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(q.v[i].key_id, 1000 + i);
        assert_int_equal(q.v[i].server_time, 5000 + i);
        assert_int_equal(q.v[i].ct_len, sizeof(ct) - i);
        assert_memory_equal(q.v[i].ct, ct, q.v[i].ct_len);
        assert_string_equal(q.v[i].from, "alice");
        assert_memory_equal(q.v[i].message_id, p.v[i].message_id, CN_MESSAGE_ID_LEN);
    }
    cn__pending_dispose(&q);
    /* Truncated anywhere, a trailing byte, another version, a bad magic. */
    for (size_t n = 0; n < b.len; n++)
        assert_int_not_equal(cn__pending_decode(b.data, n, &q), CN_OK);
    assert_int_equal(cn_buf_put_u8(&b, 0), CN_OK);
    assert_int_equal(cn__pending_decode(b.data, b.len, &q), CN_EINVAL);
    b.len--;
    b.data[4] = 2;
    assert_int_equal(cn__pending_decode(b.data, b.len, &q), CN_EVERSION);
    b.data[4] = 1;
    b.data[0] ^= 1;
    assert_int_equal(cn__pending_decode(b.data, b.len, &q), CN_EINVAL);
    b.data[0] ^= 1;
    /* A count above the bound, a handle that is not one. */
    b.data[5] = 0xff;
    assert_int_equal(cn__pending_decode(b.data, b.len, &q), CN_EINVAL);
    b.data[5] = 0;
    b.data[7 + 16 + 32 + 16 + 1] = 'A';
    assert_int_equal(cn__pending_decode(b.data, b.len, &q), CN_EINVAL);
    cn_buf_dispose(&b);
    cn__pending_dispose(&p);
}

static void test_refusal(void **state)
{
    (void)state;
    Chat__GroupMember m[2], *mp[2] = {&m[0], &m[1]};
    chat__group_member__init(&m[0]);
    chat__group_member__init(&m[1]);
    char alice[] = "alice", bob[] = "bob";
    m[0].handle = alice;
    m[1].handle = bob;
    Chat__GroupInfo gi;
    chat__group_info__init(&gi);
    gi.n_members = 2;
    gi.members = mp;
    cn__devices_t d;
    memset(&d, 0, sizeof(d));
    memset(d.ids[0], 7, CN_DEVICE_ID_LEN);
    memset(d.ids[1], 8, CN_DEVICE_ID_LEN);
    d.n = 2;
    uint8_t dev[CN_DEVICE_ID_LEN], other[CN_DEVICE_ID_LEN];
    memset(dev, 8, sizeof(dev));
    memset(other, 9, sizeof(other));
    assert_null(cn__skreq_refusal("bob", dev, &gi, &d));
    assert_string_equal(cn__skreq_refusal("mallory", dev, &gi, &d), "not a member of the group");
    assert_string_equal(cn__skreq_refusal("bob", other, &gi, &d),
                        "not a current device of the member");
    assert_string_equal(cn__skreq_refusal("bob", dev, &gi, NULL),
                        "not a current device of the member");
    gi.n_members = 1; /* bob left */
    assert_string_equal(cn__skreq_refusal("bob", dev, &gi, &d), "not a member of the group");
    assert_string_equal(cn__skreq_refusal("bob", dev, NULL, &d), "not a member of the group");
}

/* The crypto helpers behind an answer at an older iteration. */
static void test_senderkey_window(void **state)
{
    (void)state;
    cn_senderkey_t *own = NULL, *base = NULL, *recv = NULL;
    assert_int_equal(cn_senderkey_generate(42, &own), CN_OK);
    assert_int_equal(cn_senderkey_clone(own, &base), CN_OK);
    cn_buf_t m[5];
    for (int i = 0; i < 5; i++) {
        cn_buf_init(&m[i]);
        assert_int_equal(cn_senderkey_encrypt(own, "hello", 5, &m[i]), CN_OK);
    }
    uint32_t id, it;
    cn_senderkey_info(own, &id, &it);
    assert_int_equal(id, 42);
    assert_int_equal(it, 5);
    assert_int_equal(cn_senderkey_message_info(m[3].data, m[3].len, &id, &it), CN_OK);
    assert_int_equal(id, 42);
    assert_int_equal(it, 3);
    assert_int_equal(cn_senderkey_message_info(m[3].data, 8, &id, &it), CN_EINVAL);
    /* The base moved to 3 answers for 3 and 4, not for 2. */
    assert_int_equal(cn_senderkey_advance(base, 3), CN_OK);
    assert_int_equal(cn_senderkey_advance(base, 2), CN_EINVAL);
    cn_buf_t d, pt;
    cn_buf_init(&d);
    cn_buf_init(&pt);
    assert_int_equal(cn_senderkey_distribution(base, &d), CN_OK);
    assert_int_equal(cn_senderkey_from_distribution(d.data, d.len, &recv), CN_OK);
    assert_int_equal(cn_senderkey_decrypt(recv, m[3].data, m[3].len, &pt), CN_OK);
    assert_int_equal(cn_senderkey_decrypt(recv, m[4].data, m[4].len, &pt), CN_OK);
    assert_int_equal(pt.len, 10);
    assert_int_not_equal(cn_senderkey_decrypt(recv, m[2].data, m[2].len, &pt), CN_OK);
    for (int i = 0; i < 5; i++)
        cn_buf_dispose(&m[i]);
    cn_buf_dispose(&d);
    cn_buf_wipe(&pt);
    cn_senderkey_free(own);
    cn_senderkey_free(base);
    cn_senderkey_free(recv);
}

int main(void)
{
    assert_int_equal(cn_crypto_init(), CN_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_encoding), cmocka_unit_test(test_request_negative),
        cmocka_unit_test(test_pending_bounds),   cmocka_unit_test(test_pending_rate_limit),
        cmocka_unit_test(test_pending_codec),    cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_senderkey_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
