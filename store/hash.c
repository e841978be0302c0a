/*
 * The hash of the writer's in-memory tables (counters, reference counts,
 * recent entries, the batch's unindexed writes). Their keys are ids and
 * message ids that clients choose, so the hash is keyed (crypto's
 * cn_table_hash, SipHash-2-4) with a random key per process: nobody can aim
 * keys at one chain of a table.
 *
 * One op hashes the same bytes for several tables in a row: an ack its
 * device for the recent entries, the counters and the mailbox key (whose
 * hash is its device's, mixed with the seq: overlay.c), a send its dedupe
 * key for the lookup and then the write. So each thread remembers the last
 * device id and the last other key it hashed, with their SipHash: a repeat
 * costs a comparison instead of a SipHash (about 25 ns each, 4 of the 8
 * per relayed message).
 */
#include "store/store_internal.h"

#include <pthread.h>
#include <string.h>

#define HASH_MEMO_MAX 64 /* longer inputs are not remembered */

typedef struct hash_memo {
    uint8_t in[HASH_MEMO_MAX];
    size_t n; /* 0: empty */
    uint64_t h;
} hash_memo_t;

static uint8_t g_key[CN_TABLE_KEY_LEN];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local hash_memo_t t_memo[2]; /* [0] device ids, [1] other keys */

static void init_key(void)
{
    cn_table_key_new(g_key);
}

void cn__hash_init(void)
{
    pthread_once(&g_once, init_key);
}

static uint64_t keyed(const void *p, size_t n)
{
    if (n == 0 || n > HASH_MEMO_MAX)
        return cn_table_hash(g_key, p, n);
    hash_memo_t *m = &t_memo[n != CN_DEVICE_ID_LEN];
    if (m->n != n || memcmp(m->in, p, n) != 0) {
        m->h = cn_table_hash(g_key, p, n);
        memcpy(m->in, p, n);
        m->n = n;
    }
    return m->h;
}

uint64_t cn__hash(const void *p, size_t n, uint64_t tweak)
{
    return keyed(p, n) ^ (tweak * 0x9e3779b97f4a7c15ull);
}
