/*
 * storebench: what the store costs per relayed message, without network,
 * TLS or the I/O loop, so that it can be compared between commits on a
 * shared machine (process CPU time does not depend on how much of a core
 * the process got, unlike throughput).
 *
 * Each round submits --batch sends at once (they commit as one group, as
 * under load) and then, per device, one ack of what that device got:
 *   1:1 mode:   each send has one recipient out of --devices devices;
 *   --group G:  each send is one group send to G devices (stored once).
 * Ciphertexts are --size bytes; encryption at rest is on (the default).
 * Prints one JSON line: messages (delivered copies), CPU µs per copy
 * (user + system of the whole process: writer and RocksDB threads),
 * wall µs per copy.
 *
 *   storebench [--messages N] [--batch S] [--devices D] [--group G]
 *              [--size B] [--sync none|batch|always] [--dir PATH]
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "store/cn_store.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct opts {
    long messages, batch, devices, group, size;
    enum cn_sync sync;
    const char *dir;
} opts_t;

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long pending;
    long failed;
} waiter_t;

static waiter_t W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void done(cn_store_op_t *op)
{
    pthread_mutex_lock(&W.mu);
    if (op->result != CN_OK)
        W.failed++;
    W.pending--;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void submit(cn_store_t *s, cn_store_op_t *op)
{
    op->done = done;
    pthread_mutex_lock(&W.mu);
    W.pending++;
    pthread_mutex_unlock(&W.mu);
    if (cn_store_submit(s, op) != CN_OK) {
        fprintf(stderr, "storebench: submit failed\n");
        exit(1);
    }
}

static void wait_all(void)
{
    pthread_mutex_lock(&W.mu);
    while (W.pending > 0)
        pthread_cond_wait(&W.cv, &W.mu);
    pthread_mutex_unlock(&W.mu);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void device_id(uint8_t id[CN_DEVICE_ID_LEN], long i)
{
    memset(id, 0x5a, CN_DEVICE_ID_LEN);
    memcpy(id, &i, sizeof(i));
}

/* Time-ordered, as the reference client and chatbench make them: the
 * dedupe records of successive Sends land next to each other. */
static void message_id(uint8_t out[CN_MESSAGE_ID_LEN], long n)
{
    uint8_t rnd[10] = {0};
    uint64_t z = (uint64_t)n * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 31;
    memcpy(rnd, &z, sizeof(z));
    cn_time_ordered_id(out, cn_now_ms(), rnd);
}

static int parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){
        .messages = 200000, .batch = 512, .devices = 100, .size = 256, .sync = CN_SYNC_BATCH};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--messages") == 0)
            o->messages = atol(v);
        else if (strcmp(k, "--batch") == 0)
            o->batch = atol(v);
        else if (strcmp(k, "--devices") == 0)
            o->devices = atol(v);
        else if (strcmp(k, "--group") == 0)
            o->group = atol(v);
        else if (strcmp(k, "--size") == 0)
            o->size = atol(v);
        else if (strcmp(k, "--dir") == 0)
            o->dir = v;
        else if (strcmp(k, "--sync") == 0 && cn_sync_parse(v, &o->sync) == CN_OK)
            continue;
        else
            return -1;
    }
    if (o->messages <= 0 || o->batch <= 0 || o->devices <= 0 || o->size <= 0 ||
        o->size > (long)CN_CIPHERTEXT_MAX || o->group < 0 || o->group > CN_SEND_FANOUT_MAX ||
        (argc % 2) == 0)
        return -1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* One round: sends (n copies in all), then one ack per device. */
static long round_trip(cn_store_t *s, const opts_t *o, long *msg_id, uint8_t *ct, long devices)
{
    long nsends = o->group ? 1 : o->batch, per = o->group ? o->group : 1, copies = 0;
    cn_store_op_t *ops = calloc((size_t)nsends, sizeof(*ops));
    cn_store_recipient_t *rs = calloc((size_t)(nsends * per), sizeof(*rs));
    uint64_t *seqs = calloc((size_t)(devices * nsends), sizeof(*seqs));
    long *nseq = calloc((size_t)devices, sizeof(*nseq));
    cn_store_op_t *acks = calloc((size_t)devices, sizeof(*acks));
    if (!ops || !rs || !seqs || !nseq || !acks)
        exit(1);
    for (long i = 0; i < nsends; i++) {
        cn_store_op_t *op = &ops[i];
        op->type = CN_OP_SEND;
        op->u.send.env.server_time = 0;
        long id = (*msg_id)++;
        message_id(op->u.send.env.message_id, id);
        strcpy(op->u.send.env.from, "bench");
        memset(op->u.send.env.from_device, 0xee, CN_DEVICE_ID_LEN);
        op->u.send.env.kind = 1;
        op->u.send.n = (uint32_t)per;
        op->u.send.recipients = &rs[i * per];
        for (long k = 0; k < per; k++) {
            long dev = o->group ? k : (id % devices);
            device_id(rs[i * per + k].device_id, dev);
            rs[i * per + k].ciphertext = cn_slice(ct, (size_t)o->size);
        }
#ifndef STOREBENCH_NO_SHARED
        op->u.send.shared = o->group > 0;
#endif
        if (o->group) {
            op->u.send.env.has_group = true;
            memset(op->u.send.env.group_id, 0x42, CN_GROUP_ID_LEN);
        }
        submit(s, op);
    }
    wait_all();
    for (long i = 0; i < nsends * per; i++) {
        long dev = o->group ? i % per : (long)((*msg_id - nsends + i) % devices);
        seqs[dev * nsends + nseq[dev]++] = rs[i].seq;
        copies++;
    }
    for (long d = 0; d < devices; d++) {
        if (nseq[d] == 0)
            continue;
        acks[d].type = CN_OP_ACK;
        device_id(acks[d].u.ack.device_id, d);
        acks[d].u.ack.n = (uint32_t)nseq[d];
        acks[d].u.ack.seqs = &seqs[d * nsends];
        submit(s, &acks[d]);
    }
    wait_all();
    free(ops), free(rs), free(seqs), free(nseq), free(acks);
    return copies;
}

int main(int argc, char **argv)
{
    opts_t o;
    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: storebench [--messages N] [--batch S] [--devices D] [--group G] "
                        "[--size B] [--sync none|batch|always] [--dir PATH]\n");
        return 2;
    }
    char tmpl[] = "/var/tmp/storebench.XXXXXX";
    const char *dir = o.dir ? o.dir : mkdtemp(tmpl);
    if (dir == NULL)
        return 1;
    cn_store_options_t so;
    cn_store_options_default(&so);
    so.path = dir;
    so.sync = o.sync;
    cn_store_t *s;
    if (cn_store_open(&so, &s) != CN_OK) {
        fprintf(stderr, "storebench: cannot open a store in %s\n", dir);
        return 1;
    }
    uint8_t *ct = malloc((size_t)o.size);
    memset(ct, 0xc7, (size_t)o.size);
    long devices = o.group ? o.group : o.devices, msg_id = 1, copies = 0;
    round_trip(s, &o, &msg_id, ct, devices); /* warm-up: counters loaded, files open */
    double c0 = cpu_s();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (copies < o.messages)
        copies += round_trip(s, &o, &msg_id, ct, devices);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double cpu = cpu_s() - c0;
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    cn_store_free(s);
    printf("{\"mode\":\"%s\",\"copies\":%ld,\"failed\":%ld,\"batch\":%ld,\"group\":%ld,"
           "\"size\":%ld,\"cpu_us_per_copy\":%.2f,\"wall_us_per_copy\":%.2f}\n",
           o.group ? "group" : "one-to-one", copies, W.failed, o.batch, o.group, o.size,
           cpu * 1e6 / (double)copies, wall * 1e6 / (double)copies);
    free(ct);
    if (!o.dir)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return W.failed ? 1 : 0;
}
