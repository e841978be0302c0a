/*
 * Helpers shared by the store unit tests: temp directories, synchronous
 * submits, and a gate that holds the writer so that several ops land in
 * one group-commit batch.
 */
#ifndef CN_STORE_TEST_UTIL_H
#define CN_STORE_TEST_UTIL_H

/* nftw needs X/Open; this header comes first in each test. */
#define _XOPEN_SOURCE 700
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "store/cn_store.h"
#include "store/store_internal.h"

#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    cn_store_t *s;           /* set: record the batch size seen by the callbacks */
    uint64_t batch_ops_seen; /* last_batch_ops while our batch's callbacks ran */
} waiter_t;

static inline void waiter_init(waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->pending = 0;
    w->s = NULL;
    w->batch_ops_seen = 0;
}

static inline void waiter_dispose(waiter_t *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static inline void waiter_done(cn_store_op_t *op)
{
    waiter_t *w = op->ctx;
    /* Callbacks run on the writer right after their batch was counted, so
     * this is our batch even if a background pass writes the next one. */
    cn_store_stats_t st;
    if (w->s)
        cn_store_stats_get(w->s, &st);
    pthread_mutex_lock(&w->mu);
    if (w->s)
        w->batch_ops_seen = st.last_batch_ops;
    w->pending--;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static inline void waiter_wait(waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/** Submits op with a waiter, asserts the submit worked. */
static inline void submit_with(cn_store_t *s, cn_store_op_t *op, waiter_t *w)
{
    op->done = waiter_done;
    op->ctx = w;
    pthread_mutex_lock(&w->mu);
    w->pending++;
    pthread_mutex_unlock(&w->mu);
    int rc = cn_store_submit(s, op);
    assert_int_equal(rc, CN_OK);
}

/** Submits one op and waits for its result. */
static inline int run_op(cn_store_t *s, cn_store_op_t *op)
{
    waiter_t w;
    waiter_init(&w);
    submit_with(s, op, &w);
    waiter_wait(&w);
    waiter_dispose(&w);
    return op->result;
}

/**
 * Submits op with its own done callback, whose ctx begins with the waiter
 * w and which ends with waiter_done; waits for it, returns its result.
 */
static inline int run_op_with(cn_store_t *s, cn_store_op_t *op, void (*done)(cn_store_op_t *),
                              waiter_t *w)
{
    waiter_init(w);
    op->done = done;
    op->ctx = w;
    w->pending = 1;
    assert_int_equal(cn_store_submit(s, op), CN_OK);
    waiter_wait(w);
    waiter_dispose(w);
    return op->result;
}

/* --------------------------------------------------------------- gate */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, released;
    cn_store_op_t op;
} gate_t;

static inline void gate_done(cn_store_op_t *op)
{
    gate_t *g = op->ctx;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->released)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/** Blocks the writer in a done callback until gate_release. */
static inline void gate_hold(cn_store_t *s, gate_t *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->op.type = CN_OP_ACK; /* an ack of nothing: a no-op */
    g->op.done = gate_done;
    g->op.ctx = g;
    assert_int_equal(cn_store_submit(s, &g->op), CN_OK);
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static inline void gate_release(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->released = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static inline void gate_dispose(gate_t *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/** Runs n ops in one batch (asserted through the writer's statistics). */
static inline void run_batch_of(cn_store_t *s, cn_store_op_t **ops, size_t n)
{
    gate_t g;
    waiter_t w;
    waiter_init(&w);
    w.s = s;
    gate_hold(s, &g);
    for (size_t i = 0; i < n; i++)
        submit_with(s, ops[i], &w);
    gate_release(&g);
    waiter_wait(&w);
    assert_int_equal(w.batch_ops_seen, n);
    waiter_dispose(&w);
    gate_dispose(&g);
}

/* --------------------------------------------------------- temp stores */

typedef struct fx {
    char dir[64];
    cn_store_t *s;
    cn_store_options_t opts;
} fx_t;

static inline int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void fx_open(fx_t *f)
{
    f->s = NULL;
    assert_int_equal(cn_store_open(&f->opts, &f->s), CN_OK);
    assert_non_null(f->s);
}

/** Closes f's store and expects the next open to fail with CN_EIO. */
static inline void expect_open_refused(fx_t *f)
{
    cn_store_free(f->s);
    f->s = NULL;
    assert_int_equal(cn_store_open(&f->opts, &f->s), CN_EIO);
    assert_null(f->s);
}

static inline void fx_reopen(fx_t *f)
{
    cn_store_free(f->s);
    fx_open(f);
}

static inline int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/cn_store_test_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    cn_store_options_default(&f->opts);
    f->opts.path = f->dir;
    f->opts.sync = CN_SYNC_NONE; /* tests of durability modes set their own */
    fx_open(f);
    *state = f;
    return 0;
}

static inline int fx_teardown(void **state)
{
    fx_t *f = *state;
    cn_store_free(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ----------------------------------------------------------- builders */

/** A stored value as RocksDB holds it (sealed or not); NULL when absent. */
static inline char *raw_get(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                            size_t *vlen)
{
    char *err = NULL;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[cf], key, klen, vlen, &err);
    assert_null(err);
    return v;
}

/** Writes a value past the store (as an older version or an attacker would). */
static inline void raw_put(cn_store_t *s, enum cn__cf cf, const void *key, size_t klen,
                           const void *v, size_t vlen)
{
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[cf], key, klen, v, vlen, &err);
    assert_null(err);
}

static inline void make_id(uint8_t id[CN_DEVICE_ID_LEN], uint8_t a, uint8_t b)
{
    memset(id, a, CN_DEVICE_ID_LEN);
    id[CN_DEVICE_ID_LEN - 1] = b;
}

static inline void op_register(cn_store_op_t *op, int type, const char *handle, const uint8_t *id)
{
    memset(op, 0, sizeof(*op));
    op->type = type;
    strcpy(op->u.reg.handle, handle);
    memcpy(op->u.reg.device_id, id, CN_DEVICE_ID_LEN);
    strcpy(op->u.reg.device.name, "test device");
}

static inline int do_register(cn_store_t *s, int type, const char *handle, const uint8_t *id,
                              uint32_t max_devices)
{
    cn_store_op_t op;
    op_register(&op, type, handle, id);
    op.u.reg.max_devices = max_devices;
    return run_op(s, &op);
}

static inline void op_send(cn_store_op_t *op, const uint8_t *from_device, uint8_t msg,
                           cn_store_recipient_t *r, uint32_t n, uint64_t server_time)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_SEND;
    op->u.send.env.server_time = server_time;
    memset(op->u.send.env.message_id, msg, CN_MESSAGE_ID_LEN);
    strcpy(op->u.send.env.from, "sender");
    memcpy(op->u.send.env.from_device, from_device, CN_DEVICE_ID_LEN);
    op->u.send.env.kind = CHAT__KIND__MESSAGE;
    op->u.send.n = n;
    op->u.send.recipients = r;
}

static inline void recipient(cn_store_recipient_t *r, const uint8_t *id, const char *ct)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->device_id, id, CN_DEVICE_ID_LEN);
    r->ciphertext = cn_slice(ct, strlen(ct));
}

/** Sends one message (id byte msg) to one device; returns the result. */
static inline int send1(cn_store_t *s, const uint8_t *from, uint8_t msg, const uint8_t *to,
                        const char *ct, uint64_t *seq)
{
    cn_store_op_t op;
    cn_store_recipient_t r;
    recipient(&r, to, ct);
    op_send(&op, from, msg, &r, 1, 1000);
    int rc = run_op(s, &op);
    if (seq)
        *seq = r.seq;
    return rc;
}

/** Sends one message with a queued-bytes cap and a notify flag. */
static inline int send_ex(cn_store_t *s, const uint8_t *from, uint8_t msg, const uint8_t *to,
                          const char *ct, uint64_t server_time, uint64_t cap, bool notify,
                          uint64_t *seq)
{
    cn_store_op_t op;
    cn_store_recipient_t r;
    recipient(&r, to, ct);
    r.notify = notify;
    op_send(&op, from, msg, &r, 1, server_time);
    op.u.send.max_queued_bytes = cap;
    int rc = run_op(s, &op);
    if (seq)
        *seq = r.seq;
    return rc;
}

static inline void op_upload(cn_store_op_t *op, const uint8_t *id, cn_rec_prekey_t *keys,
                             uint32_t n, uint32_t first_key_id)
{
    memset(op, 0, sizeof(*op));
    op->type = CN_OP_PREKEYS_UPLOAD;
    memcpy(op->u.upload.device_id, id, CN_DEVICE_ID_LEN);
    for (uint32_t i = 0; i < n; i++) {
        memset(&keys[i], 0, sizeof(keys[i]));
        keys[i].key_id = first_key_id + i;
        memset(keys[i].public_key, (int)(first_key_id + i), CN_PREKEY_LEN);
    }
    op->u.upload.n_otpks = n;
    op->u.upload.otpks = keys;
}

static inline void op_fetch(cn_store_op_t *op, cn_store_bundle_t *b, const uint8_t *id)
{
    memset(op, 0, sizeof(*op));
    memset(b, 0, sizeof(*b));
    op->type = CN_OP_PREKEYS_FETCH;
    memcpy(b->device_id, id, CN_DEVICE_ID_LEN);
    op->u.fetch.n = 1;
    op->u.fetch.bundles = b;
}

static inline uint64_t depth(cn_store_t *s, const uint8_t *id)
{
    uint64_t d = 0;
    int rc = cn_store_mailbox_depth(s, id, 100000, &d);
    assert_int_equal(rc, CN_OK);
    return d;
}

/** Exact value bytes queued for a device (cn_store_mailbox_stats). */
static inline uint64_t queued_bytes(cn_store_t *s, const uint8_t *id)
{
    uint64_t bytes = 0;
    int rc = cn_store_mailbox_stats(s, id, NULL, &bytes, NULL);
    assert_int_equal(rc, CN_OK);
    return bytes;
}

/** Runs an ACK of n seqs; returns the result, *deleted the count. */
static inline int ack_seqs(cn_store_t *s, const uint8_t *id, const uint64_t *seqs, uint32_t n,
                           uint32_t *deleted)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_ACK;
    memcpy(op.u.ack.device_id, id, CN_DEVICE_ID_LEN);
    op.u.ack.n = n;
    op.u.ack.seqs = seqs;
    int rc = run_op(s, &op);
    if (deleted)
        *deleted = op.u.ack.deleted;
    return rc;
}

static inline int revoke(cn_store_t *s, const uint8_t *id)
{
    cn_store_op_t op;
    memset(&op, 0, sizeof(op));
    op.type = CN_OP_REVOKE;
    memcpy(op.u.revoke.device_id, id, CN_DEVICE_ID_LEN);
    return run_op(s, &op);
}

/** Collects mailbox entries: seqs and decoded ciphertexts. */
typedef struct collect {
    size_t n;
    uint64_t seqs[64];
    char ct[64][32];
    uint64_t server_time[64];
    int stop_after; /* return non-zero after this many (0: never) */
} collect_t;

static inline int collect_cb(void *ctx, uint64_t seq, const uint8_t *value, size_t len)
{
    collect_t *c = ctx;
    cn_rec_envelope_t env;
    assert_int_equal(cn_rec_envelope_decode(value, len, &env), CN_OK);
    assert_true(c->n < 64 && env.ciphertext.len < 32);
    c->seqs[c->n] = seq;
    memcpy(c->ct[c->n], env.ciphertext.base, env.ciphertext.len);
    c->ct[c->n][env.ciphertext.len] = '\0';
    c->server_time[c->n] = env.server_time;
    c->n++;
    return c->stop_after && (int)c->n >= c->stop_after;
}

/* ------------------------------------------------------ crash children */

/**
 * Closes f's store and runs this test binary again (a fork of a process
 * with threads is not something every sanitizer allows) with env=f's
 * directory in its environment; its main() hands that to a child that
 * opens the store and gets itself killed from inside the writer. Asserts
 * the child died of SIGKILL; f's store stays closed, with sync=batch.
 */
static inline void run_killed_child(fx_t *f, const char *env, const char *name)
{
    extern char **environ;
    cn_store_free(f->s);
    f->s = NULL;
    f->opts.sync = CN_SYNC_BATCH;
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 2, sizeof(*envp)), var[160];
    assert_non_null(envp);
    memcpy(envp, environ, n * sizeof(*envp));
    snprintf(var, sizeof(var), "%s=%s", env, f->dir);
    envp[n] = var;
    char argv0[64], *argv[] = {argv0, NULL};
    snprintf(argv0, sizeof(argv0), "%s", name);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp), 0);
    free(envp);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status))
        fail_msg("the child exited with %d instead of being killed", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/**
 * Keys under a meta prefix that are klen long (a journal's records);
 * SIZE_MAX when the iterator fails. No asserts: a child calls it too.
 */
static inline size_t meta_records(cn_store_t *s, const char *prefix, size_t klen)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[CN__CF_META]);
    size_t n = 0, plen = strlen(prefix);
    for (rocksdb_iter_seek(it, prefix, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t len;
        const char *k = rocksdb_iter_key(it, &len);
        if (len < plen || memcmp(k, prefix, plen) != 0)
            break;
        n += len == klen; /* a record, not another name */
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err) {
        rocksdb_free(err);
        return SIZE_MAX;
    }
    return n;
}

#endif /* CN_STORE_TEST_UTIL_H */
