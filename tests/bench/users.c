/*
 * Bench identities and the setup phase: connect, answer the Challenge with
 * Register or Auth (the transcript of proto/cn_proto.h, signed with
 * libchatcrypto), a bounded number of handshakes in flight.
 *
 * Only each device's 32-byte seed and public key are kept; for a signature
 * they are copied into the one signing key of the process (sodium_malloc
 * memory, allocated once) and wiped after it, so 15,000 identities do not
 * cost 15,000 guarded allocations, and a signature costs no mmap/mprotect/
 * mlock round (five syscalls) and no key derivation (a scalar
 * multiplication): both were ~5 % of chatbench's CPU per connect.
 */
#include "crypto/cn_crypto.h"
#include "tests/bench/bench.h"

#include <stdio.h>
#include <string.h>

void bench_users_make(bench_user_t *u, size_t n, const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        memset(&u[i], 0, sizeof(u[i]));
        cn_random(u[i].seed, sizeof(u[i].seed));
        cn_identity_t id = {0};
        if (cn_identity_from_seed(u[i].seed, &id) < 0) {
            g_bench.fatal = "cn_identity_from_seed failed";
            return;
        }
        memcpy(u[i].pk, id.pk, CN_DEVICE_ID_LEN);
        cn_identity_dispose(&id);
        snprintf(u[i].handle, sizeof(u[i].handle), "%s%ux%zu-%s", prefix, g_bench.proc, i,
                 g_bench.run_id);
        u[i].index = (uint32_t)i;
    }
}

static cn_identity_t g_signer; /* sk: sodium_malloc'd once, wiped after each use */

/*
 * Loads u's key into the signer. libsodium's Ed25519 secret key is the seed
 * followed by the public key (crypto_sign_seed_keypair), so no derivation is
 * needed once the public key is known (bench_users_make derived it).
 */
static int signer_load(const bench_user_t *u)
{
    if (!g_signer.sk && cn_identity_from_seed(u->seed, &g_signer) < 0)
        return -1;
    memcpy(g_signer.sk, u->seed, sizeof(u->seed));
    memcpy(g_signer.sk + sizeof(u->seed), u->pk, CN_DEVICE_ID_LEN);
    memcpy(g_signer.pk, u->pk, CN_DEVICE_ID_LEN);
    return 0;
}

void bench_users_cleanup(void)
{
    cn_identity_dispose(&g_signer);
}

uint64_t bench_send_auth(bench_conn_t *c, const bench_user_t *u, enum bench_open_mode mode)
{
    bool reg = mode == BENCH_REGISTER;
    cn_identity_t *id = &g_signer;
    cn_buf_t t;
    cn_buf_init(&t);
    uint8_t sig[CN_SIGNATURE_LEN];
    uint64_t rid = 0;
    if (signer_load(u) < 0 ||
        cn_transcript_session(&t, reg ? CN_REGISTER_CONTEXT : CN_AUTH_CONTEXT, c->nonce, c->node_id,
                              u->pk, c->server_time, c->exporter, reg ? u->handle : NULL) < 0 ||
        cn_identity_sign(id, t.data, t.len, sig) < 0) {
        g_bench.fatal = "signing the auth transcript failed";
        goto out;
    }
    uint8_t pk[CN_DEVICE_ID_LEN];
    memcpy(pk, u->pk, sizeof(pk));
    char handle[CN_HANDLE_MAX + 1], name[] = "chatbench";
    memcpy(handle, u->handle, sizeof(handle));
    Chat__ClientFrame f;
    chat__client_frame__init(&f);
    Chat__Auth a;
    Chat__Register r;
    if (reg) {
        chat__register__init(&r);
        r.handle = handle;
        r.device_id = (ProtobufCBinaryData){.data = pk, .len = CN_DEVICE_ID_LEN};
        r.signature = (ProtobufCBinaryData){.data = sig, .len = CN_SIGNATURE_LEN};
        r.device_name = name;
        f.body_case = CHAT__CLIENT_FRAME__BODY_REGISTER;
        f.register_ = &r;
    } else {
        chat__auth__init(&a);
        a.device_id = (ProtobufCBinaryData){.data = pk, .len = CN_DEVICE_ID_LEN};
        a.signature = (ProtobufCBinaryData){.data = sig, .len = CN_SIGNATURE_LEN};
        f.body_case = CHAT__CLIENT_FRAME__BODY_AUTH;
        f.auth = &a;
    }
    rid = bench_conn_send_pb(c, &f);
out:
    if (g_signer.sk)
        cn_wipe(g_signer.sk, CN_SIGN_SECRET_LEN);
    cn_buf_dispose(&t);
    return rid;
}

/* --------------------------------------------------------------- opener */

static struct {
    bench_user_t *u;
    size_t n, next, done, inflight;
    unsigned failed;
    enum bench_open_mode mode;
    bool close_after;
    bool finished;
    void (*on_frame)(bench_user_t *u, const bench_frame_t *f);
} g_open;

static void start_next(void);

static void finish_one(bench_user_t *u, bool ok)
{
    if (!ok) {
        u->failed = true;
        g_open.failed++;
    }
    g_open.done++;
    g_open.inflight--;
    if (g_open.done == g_open.n)
        g_open.finished = true;
    else
        start_next();
}

static void on_ready(bench_conn_t *c)
{
    bench_user_t *u = c->ud;
    u->auth_rid = bench_send_auth(c, u, g_open.mode);
}

static void on_frame(bench_conn_t *c, const bench_frame_t *f)
{
    bench_user_t *u = c->ud;
    if (u->authed) {
        if (g_open.on_frame)
            g_open.on_frame(u, f);
        return;
    }
    if (f->type != CHAT__SERVER_FRAME__BODY_RESPONSE || f->request_id != u->auth_rid)
        return;
    if (f->status != CHAT__STATUS__OK) {
        if (!g_bench.o.json || g_open.failed < 3)
            fprintf(stderr, "chatbench: %s of %s refused (status %u)\n",
                    g_open.mode == BENCH_REGISTER ? "register" : "auth", u->handle, f->status);
        bench_conn_close(c, false);
        return;
    }
    u->authed = true;
    finish_one(u, true);
    if (g_open.close_after)
        bench_conn_close(c, false);
}

static void on_close(bench_conn_t *c, int err)
{
    bench_user_t *u = c->ud;
    (void)err;
    u->conn = NULL;
    if (!u->authed && !g_open.finished)
        finish_one(u, false);
}

static const bench_conn_cbs_t open_cbs = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_close = on_close,
};

static void start_next(void)
{
    while (g_open.next < g_open.n && g_open.inflight < g_bench.o.concurrency) {
        bench_user_t *u = &g_open.u[g_open.next];
        unsigned source = (unsigned)(g_open.next + g_bench.proc) % CN_MAX(g_bench.o.sources, 1u);
        g_open.next++;
        g_open.inflight++;
        u->authed = false;
        u->failed = false;
        u->conn = bench_conn_new(&open_cbs, u, source, false);
        /* A NULL conn already went through on_close (finish_one). */
    }
}

unsigned bench_users_open(bench_user_t *u, size_t n, enum bench_open_mode mode, bool close_after,
                          void (*frame_cb)(bench_user_t *u, const bench_frame_t *f))
{
    memset(&g_open, 0, sizeof(g_open));
    g_open.u = u;
    g_open.n = n;
    g_open.mode = mode;
    g_open.close_after = close_after;
    g_open.on_frame = frame_cb;
    if (n == 0)
        return 0;
    start_next();
    bench_run_until(&g_open.finished, bench_now_ns() + 600ull * 1000000000ull);
    if (!g_open.finished)
        return (unsigned)(n - g_open.done) + g_open.failed;
    return g_open.failed;
}
