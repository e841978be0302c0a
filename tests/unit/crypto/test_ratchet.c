/*
 * X3DH and the Double Ratchet: round trips, and the properties the issue
 * asks for: out-of-order delivery, loss, replay, tampering and the
 * skipped-key bound, plus state serialization mid-conversation, session
 * records converging after simultaneous initiation, and a throughput
 * measurement (printed).
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "crypto/cn_crypto.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct peer {
    cn_identity_t id;
    uint32_t spk_id;
    cn_x25519_t spk, opk;
    uint32_t opk_id;
} peer_t;

typedef struct pair {
    peer_t a, b;
    cn_ratchet_t *ra, *rb; /* alice initiated */
} pair_t;

typedef struct wire {
    uint8_t *p;
    size_t n;
} wire_t;

static int setup(void **state)
{
    (void)state;
    return cn_crypto_init() == CN_OK ? 0 : -1;
}

static void peer_init(peer_t *p)
{
    assert_int_equal(cn_identity_generate(&p->id), CN_OK);
    assert_int_equal(cn_x25519_generate(&p->spk), CN_OK);
    assert_int_equal(cn_x25519_generate(&p->opk), CN_OK);
    p->spk_id = 7;
    p->opk_id = 9;
}

static void peer_dispose(peer_t *p)
{
    cn_identity_dispose(&p->id);
    cn_x25519_dispose(&p->spk);
    cn_x25519_dispose(&p->opk);
}

static void bundle_of(const peer_t *p, bool with_opk, cn_prekey_bundle_t *b)
{
    cn_buf_t t;
    cn_buf_init(&t);
    memset(b, 0, sizeof(*b));
    memcpy(b->identity, p->id.pk, 32);
    b->spk_id = p->spk_id;
    memcpy(b->spk, p->spk.pk, 32);
    assert_int_equal(cn_transcript_prekey(&t, b->spk_id, b->spk), CN_OK);
    assert_int_equal(cn_identity_sign(&p->id, t.data, t.len, b->spk_sig), CN_OK);
    b->has_opk = with_opk;
    if (with_opk) {
        b->opk_id = p->opk_id;
        memcpy(b->opk, p->opk.pk, 32);
    }
    cn_buf_dispose(&t);
}

static wire_t seal(cn_ratchet_t *r, const char *text)
{
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_ratchet_encrypt(r, text, strlen(text), &b), CN_OK);
    wire_t w = {.p = b.data, .n = b.len};
    return w;
}

/* Decrypts w with r; returns the rc, and checks the text when it worked. */
static int open_with(cn_ratchet_t *r, const wire_t *w, const char *want)
{
    cn_e2e_msg_t m;
    int rc = cn_e2e_msg_parse(w->p, w->n, &m);
    if (rc < 0)
        return rc;
    cn_buf_t pt;
    cn_buf_init(&pt);
    rc = cn_ratchet_decrypt(r, &m, &pt);
    if (rc == CN_OK && want != NULL) {
        assert_int_equal(pt.len, strlen(want));
        assert_memory_equal(pt.data, want, pt.len);
    }
    cn_buf_dispose(&pt);
    return rc;
}

/* Alice initiates with Bob's bundle; Bob answers the first message. */
static void pair_init(pair_t *p, bool with_opk)
{
    cn_prekey_bundle_t b;
    peer_init(&p->a);
    peer_init(&p->b);
    bundle_of(&p->b, with_opk, &b);
    assert_int_equal(cn_x3dh_initiate(&p->a.id, &b, &p->ra), CN_OK);
    wire_t w = seal(p->ra, "hello bob");
    cn_e2e_msg_t m;
    assert_int_equal(cn_e2e_msg_parse(w.p, w.n, &m), CN_OK);
    assert_int_equal(m.type, CN_E2E_PREKEY_MSG);
    assert_int_equal(m.has_opk, with_opk);
    assert_memory_equal(m.ik, p->a.id.pk, 32);
    assert_int_equal(cn_x3dh_respond(&p->b.id, &p->b.spk, with_opk ? &p->b.opk : NULL, &m, &p->rb),
                     CN_OK);
    assert_int_equal(open_with(p->rb, &w, "hello bob"), CN_OK);
    assert_memory_equal(cn_ratchet_remote_identity(p->rb), p->a.id.pk, 32);
    free(w.p);
}

static void pair_dispose(pair_t *p)
{
    cn_ratchet_free(p->ra);
    cn_ratchet_free(p->rb);
    peer_dispose(&p->a);
    peer_dispose(&p->b);
}

static void test_x3dh_roundtrip(void **state)
{
    (void)state;
    for (int opk = 0; opk <= 1; opk++) {
        pair_t p;
        pair_init(&p, opk);
        /* Until Bob answers, Alice keeps sending prekey messages. */
        wire_t w = seal(p.ra, "second");
        assert_int_equal(w.p[1], CN_E2E_PREKEY_MSG);
        assert_int_equal(open_with(p.rb, &w, "second"), CN_OK);
        free(w.p);
        w = seal(p.rb, "hi alice");
        assert_int_equal(w.p[1], CN_E2E_RATCHET_MSG);
        assert_int_equal(open_with(p.ra, &w, "hi alice"), CN_OK);
        free(w.p);
        w = seal(p.ra, "after the reply");
        assert_int_equal(w.p[1], CN_E2E_RATCHET_MSG);
        assert_int_equal(open_with(p.rb, &w, "after the reply"), CN_OK);
        free(w.p);
        pair_dispose(&p);
    }
}

static void test_x3dh_bad_signature(void **state)
{
    (void)state;
    peer_t a, b;
    cn_prekey_bundle_t bundle;
    cn_ratchet_t *r = NULL;
    peer_init(&a);
    peer_init(&b);
    bundle_of(&b, true, &bundle);
    bundle.spk[0] ^= 1; /* a key the node (or a MITM) swapped */
    assert_int_equal(cn_prekey_bundle_verify(&bundle), CN_EAUTH);
    assert_int_equal(cn_x3dh_initiate(&a.id, &bundle, &r), CN_EAUTH);
    assert_null(r);
    bundle_of(&b, true, &bundle);
    bundle.spk_id++;
    assert_int_equal(cn_x3dh_initiate(&a.id, &bundle, &r), CN_EAUTH);
    peer_dispose(&a);
    peer_dispose(&b);
}

static void test_x3dh_wrong_prekeys(void **state)
{
    (void)state;
    pair_t p;
    cn_prekey_bundle_t b;
    cn_ratchet_t *ra, *rb = NULL;
    peer_init(&p.a);
    peer_init(&p.b);
    bundle_of(&p.b, true, &b);
    assert_int_equal(cn_x3dh_initiate(&p.a.id, &b, &ra), CN_OK);
    wire_t w = seal(ra, "x");
    cn_e2e_msg_t m;
    assert_int_equal(cn_e2e_msg_parse(w.p, w.n, &m), CN_OK);
    /* Without the one-time prekey it names, Bob cannot respond. */
    assert_int_equal(cn_x3dh_respond(&p.b.id, &p.b.spk, NULL, &m, &rb), CN_EINVAL);
    /* With a different one-time prekey the keys disagree: decryption fails. */
    cn_x25519_t other;
    assert_int_equal(cn_x25519_generate(&other), CN_OK);
    assert_int_equal(cn_x3dh_respond(&p.b.id, &p.b.spk, &other, &m, &rb), CN_OK);
    assert_int_equal(open_with(rb, &w, NULL), CN_EAUTH);
    cn_ratchet_free(rb);
    cn_x25519_dispose(&other);
    cn_ratchet_free(ra);
    free(w.p);
    peer_dispose(&p.a);
    peer_dispose(&p.b);
}

static void shuffle(size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = randombytes_uniform((uint32_t)i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static void test_out_of_order(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    enum { N = 200 };
    wire_t w[N];
    char text[N][32];
    size_t order[N];
    /* Several chains: Alice and Bob take turns, then everything is shuffled. */
    wire_t reply = seal(p.rb, "turn");
    assert_int_equal(open_with(p.ra, &reply, "turn"), CN_OK);
    free(reply.p);
    for (size_t i = 0; i < N; i++) {
        snprintf(text[i], sizeof(text[i]), "message %zu", i);
        w[i] = seal(p.ra, text[i]);
        order[i] = i;
    }
    shuffle(order, N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(open_with(p.rb, &w[order[i]], text[order[i]]), CN_OK);
    }
    /* Every skipped key was used and deleted. */
    assert_int_equal(cn_ratchet_skipped(p.rb), 0);
    for (size_t i = 0; i < N; i++)
        free(w[i].p);
    pair_dispose(&p);
}

static void test_loss(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, false);
    int delivered = 0;
    for (int round = 0; round < 20; round++) {
        cn_ratchet_t *from = round % 2 ? p.rb : p.ra, *to = round % 2 ? p.ra : p.rb;
        for (int i = 0; i < 10; i++) {
            char text[32];
            snprintf(text, sizeof(text), "r%d m%d", round, i);
            wire_t w = seal(from, text);
            /* Drop about a third, but never a whole turn (the DH step needs one). */
            if (i == 9 || randombytes_uniform(3) != 0) {
                assert_int_equal(open_with(to, &w, text), CN_OK);
                delivered++;
            }
            free(w.p);
        }
    }
    assert_true(delivered >= 20);
    assert_true(cn_ratchet_skipped(p.ra) + cn_ratchet_skipped(p.rb) > 0);
    pair_dispose(&p);
}

static void test_replay(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    wire_t w1 = seal(p.ra, "one"), w2 = seal(p.ra, "two"), w3 = seal(p.ra, "three");
    assert_int_equal(open_with(p.rb, &w2, "two"), CN_OK);
    assert_int_equal(open_with(p.rb, &w2, NULL), CN_EEXIST); /* current chain */
    assert_int_equal(open_with(p.rb, &w1, "one"), CN_OK);    /* from the skipped keys */
    assert_int_equal(open_with(p.rb, &w1, NULL), CN_EEXIST); /* deleted once used */
    assert_int_equal(open_with(p.rb, &w3, "three"), CN_OK);  /* state unharmed */
    /* A replayed reply fails too. */
    wire_t r = seal(p.rb, "reply");
    assert_int_equal(open_with(p.ra, &r, "reply"), CN_OK);
    assert_int_not_equal(open_with(p.ra, &r, NULL), CN_OK);
    free(w1.p);
    free(w2.p);
    free(w3.p);
    free(r.p);
    pair_dispose(&p);
}

static void test_tampering(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    wire_t r = seal(p.rb, "reply");
    assert_int_equal(open_with(p.ra, &r, "reply"), CN_OK);
    free(r.p);
    wire_t w = seal(p.ra, "do not touch");
    /* Every single-bit flip, in the header or the ciphertext, is refused. */
    for (size_t i = 0; i < w.n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            w.p[i] ^= (uint8_t)(1u << bit);
            assert_int_not_equal(open_with(p.rb, &w, NULL), CN_OK);
            w.p[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Truncated and extended. */
    wire_t t = {.p = w.p, .n = w.n - 1};
    assert_int_not_equal(open_with(p.rb, &t, NULL), CN_OK);
    /* ... and after all that, the genuine message still decrypts. */
    assert_int_equal(open_with(p.rb, &w, "do not touch"), CN_OK);
    free(w.p);
    pair_dispose(&p);
}

static void test_skip_bound(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    assert_int_equal(cn_ratchet_set_max_skip(p.rb, 10), CN_OK);
    wire_t w[13];
    for (int i = 0; i < 13; i++)
        w[i] = seal(p.ra, "x");
    /* w[i] has counter i + 1 (the first message was 0): w[11] needs 11
     * skipped keys (> 10) and is refused, leaving the state unchanged. */
    assert_int_equal(open_with(p.rb, &w[11], NULL), CN_ELIMIT);
    assert_int_equal(cn_ratchet_skipped(p.rb), 0);
    /* w[10] needs exactly 10. */
    assert_int_equal(open_with(p.rb, &w[10], "x"), CN_OK);
    assert_int_equal(cn_ratchet_skipped(p.rb), 10);
    assert_int_equal(open_with(p.rb, &w[11], "x"), CN_OK);
    assert_int_equal(open_with(p.rb, &w[12], "x"), CN_OK);
    assert_int_equal(open_with(p.rb, &w[5], "x"), CN_OK);
    assert_int_equal(cn_ratchet_skipped(p.rb), 9);
    /* Across chains the store stays bounded: the oldest keys are deleted. */
    for (int round = 0; round < 6; round++) {
        cn_ratchet_t *from = round % 2 ? p.rb : p.ra, *to = round % 2 ? p.ra : p.rb;
        wire_t last = {0};
        for (int i = 0; i < 8; i++) {
            free(last.p);
            last = seal(from, "y");
        }
        assert_int_equal(open_with(to, &last, "y"), CN_OK);
        free(last.p);
        assert_true(cn_ratchet_skipped(p.rb) <= 10);
    }
    assert_int_equal(cn_ratchet_skipped(p.rb), 10);
    /* The evicted key of message 1 is gone. */
    assert_int_not_equal(open_with(p.rb, &w[1], NULL), CN_OK);
    assert_int_equal(cn_ratchet_set_max_skip(p.rb, 0), CN_EINVAL);
    assert_int_equal(cn_ratchet_set_max_skip(p.rb, CN_RATCHET_SKIP_HARD_MAX + 1), CN_EINVAL);
    for (int i = 0; i < 13; i++)
        free(w[i].p);
    pair_dispose(&p);
}

static cn_ratchet_t *reload(cn_ratchet_t *r)
{
    cn_buf_t b;
    cn_buf_init(&b);
    assert_int_equal(cn_ratchet_encode(r, &b), CN_OK);
    cn_ratchet_t *back = NULL;
    assert_int_equal(cn_ratchet_decode(b.data, b.len, &back), CN_OK);
    cn_buf_t again;
    cn_buf_init(&again);
    assert_int_equal(cn_ratchet_encode(back, &again), CN_OK);
    assert_int_equal(again.len, b.len);
    assert_memory_equal(again.data, b.data, b.len);
    cn_buf_wipe(&again);
    cn_buf_wipe(&b);
    cn_ratchet_free(r);
    return back;
}

static void test_state_roundtrip(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    wire_t early = seal(p.ra, "early");
    wire_t late = seal(p.ra, "late");
    assert_int_equal(open_with(p.rb, &late, "late"), CN_OK); /* leaves a skipped key */
    p.ra = reload(p.ra);
    p.rb = reload(p.rb);
    assert_int_equal(cn_ratchet_skipped(p.rb), 1);
    assert_int_equal(open_with(p.rb, &early, "early"), CN_OK);
    wire_t w = seal(p.rb, "after reload");
    assert_int_equal(open_with(p.ra, &w, "after reload"), CN_OK);
    free(w.p);
    free(early.p);
    free(late.p);
    pair_dispose(&p);
}

/* Random schedule in both directions with reordering, loss and duplicates. */
static void test_random_schedule(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    enum { Q = 64 };
    wire_t q[2][Q];
    char txt[2][Q][24];
    size_t nq[2] = {0, 0};
    int ok = 0, replays = 0;
    for (int step = 0; step < 2000; step++) {
        int dir = (int)randombytes_uniform(2);
        cn_ratchet_t *from = dir ? p.rb : p.ra, *to = dir ? p.ra : p.rb;
        uint32_t op = randombytes_uniform(10);
        if (op < 5 && nq[dir] < Q) {
            snprintf(txt[dir][nq[dir]], 24, "s%d d%d", step, dir);
            q[dir][nq[dir]] = seal(from, txt[dir][nq[dir]]);
            nq[dir]++;
        } else if (nq[dir] > 0) {
            size_t i = randombytes_uniform((uint32_t)nq[dir]);
            wire_t w = q[dir][i];
            bool drop = randombytes_uniform(10) == 0;
            if (!drop) {
                assert_int_equal(open_with(to, &w, txt[dir][i]), CN_OK);
                ok++;
                if (randombytes_uniform(8) == 0) {
                    /* A replay on the current chain is recognised as one; on
                     * an older chain it simply fails to authenticate. */
                    int rc = open_with(to, &w, NULL);
                    assert_true(rc == CN_EEXIST || rc == CN_EAUTH);
                    replays++;
                }
            }
            free(w.p);
            q[dir][i] = q[dir][nq[dir] - 1];
            memcpy(txt[dir][i], txt[dir][nq[dir] - 1], 24);
            nq[dir]--;
        }
    }
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < nq[d]; i++)
            free(q[d][i].p);
    assert_true(ok > 500);
    assert_true(replays > 10);
    pair_dispose(&p);
}

static void test_wrong_recipient(void **state)
{
    (void)state;
    pair_t p, other;
    pair_init(&p, true);
    pair_init(&other, true);
    wire_t r = seal(p.rb, "for alice only");
    assert_int_not_equal(open_with(other.ra, &r, NULL), CN_OK);
    assert_int_equal(open_with(p.ra, &r, "for alice only"), CN_OK);
    free(r.p);
    pair_dispose(&p);
    pair_dispose(&other);
}

static void test_session_simultaneous(void **state)
{
    (void)state;
    peer_t a, b;
    cn_prekey_bundle_t ba, bb;
    peer_init(&a);
    peer_init(&b);
    bundle_of(&a, true, &ba);
    bundle_of(&b, true, &bb);
    cn_session_t *sa, *sb;
    cn_ratchet_t *r;
    assert_int_equal(cn_session_new(&sa), CN_OK);
    assert_int_equal(cn_session_new(&sb), CN_OK);
    assert_false(cn_session_has_active(sa));
    /* Both start a session before hearing from the other. */
    assert_int_equal(cn_x3dh_initiate(&a.id, &bb, &r), CN_OK);
    assert_int_equal(cn_session_add(sa, r), CN_OK);
    assert_int_equal(cn_x3dh_initiate(&b.id, &ba, &r), CN_OK);
    assert_int_equal(cn_session_add(sb, r), CN_OK);
    cn_buf_t wa, wb, pt;
    cn_buf_init(&wa);
    cn_buf_init(&wb);
    cn_buf_init(&pt);
    assert_int_equal(cn_session_encrypt(sa, "from a", 6, &wa), CN_OK);
    assert_int_equal(cn_session_encrypt(sb, "from b", 6, &wb), CN_OK);
    /* Each receives a prekey message it has no state for: X3DH responds. */
    cn_e2e_msg_t m;
    assert_int_equal(cn_e2e_msg_parse(wa.data, wa.len, &m), CN_OK);
    assert_int_equal(cn_session_decrypt(sb, &m, &pt), CN_ENOTFOUND);
    assert_int_equal(cn_x3dh_respond(&b.id, &b.spk, &b.opk, &m, &r), CN_OK);
    assert_int_equal(cn_ratchet_decrypt(r, &m, &pt), CN_OK);
    assert_int_equal(cn_session_add(sb, r), CN_OK);
    assert_int_equal(cn_e2e_msg_parse(wb.data, wb.len, &m), CN_OK);
    assert_int_equal(cn_x3dh_respond(&a.id, &a.spk, &a.opk, &m, &r), CN_OK);
    assert_int_equal(cn_ratchet_decrypt(r, &m, &pt), CN_OK);
    assert_int_equal(cn_session_add(sa, r), CN_OK);
    /* From here on, messages in both directions decrypt, and records survive encoding. */
    for (int i = 0; i < 6; i++) {
        cn_session_t *from = i % 2 ? sb : sa, **to = i % 2 ? &sa : &sb;
        cn_buf_reset(&wa);
        cn_buf_reset(&pt);
        assert_int_equal(cn_session_encrypt(from, "ping", 4, &wa), CN_OK);
        assert_int_equal(cn_e2e_msg_parse(wa.data, wa.len, &m), CN_OK);
        assert_int_equal(cn_session_decrypt(*to, &m, &pt), CN_OK);
        assert_memory_equal(pt.data, "ping", 4);
        cn_buf_t enc;
        cn_buf_init(&enc);
        assert_int_equal(cn_session_encode(*to, &enc), CN_OK);
        cn_session_t *back;
        assert_int_equal(cn_session_decode(enc.data, enc.len, &back), CN_OK);
        cn_session_free(*to);
        *to = back;
        cn_buf_wipe(&enc);
    }
    cn_buf_dispose(&wa);
    cn_buf_dispose(&wb);
    cn_buf_dispose(&pt);
    cn_session_free(sa);
    cn_session_free(sb);
    peer_dispose(&a);
    peer_dispose(&b);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_throughput(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, true);
    enum { N = 2000 };
    static wire_t w[N];
    char text[100];
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    double t0 = now_s();
    for (int i = 0; i < N; i++)
        w[i] = seal(p.ra, text);
    double t1 = now_s();
    for (int i = 0; i < N; i++)
        assert_int_equal(open_with(p.rb, &w[i], text), CN_OK);
    double t2 = now_s();
    printf("ratchet (this build): %.0f encrypt/s, %.0f decrypt/s (100-byte messages)\n",
           N / (t1 - t0), N / (t2 - t1));
    for (int i = 0; i < N; i++)
        free(w[i].p);
    pair_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x3dh_roundtrip),
        cmocka_unit_test(test_x3dh_bad_signature),
        cmocka_unit_test(test_x3dh_wrong_prekeys),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_loss),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_skip_bound),
        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_random_schedule),
        cmocka_unit_test(test_wrong_recipient),
        cmocka_unit_test(test_session_simultaneous),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
