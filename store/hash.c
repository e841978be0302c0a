/*
 * The hash of the writer's in-memory tables (counters, reference counts,
 * recent entries, the batch's unindexed writes). Their keys are ids and
 * message ids that clients choose, so the hash is keyed (crypto's
 * cn_table_hash, SipHash-2-4) with a random key per process: nobody can aim
 * keys at one chain of a table.
 */
#include "store/store_internal.h"

#include <pthread.h>

static uint8_t g_key[CN_TABLE_KEY_LEN];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_key(void)
{
    cn_table_key_new(g_key);
}

void cn__hash_init(void)
{
    pthread_once(&g_once, init_key);
}

uint64_t cn__hash(const void *p, size_t n, uint64_t tweak)
{
    return cn_table_hash(g_key, p, n) ^ (tweak * 0x9e3779b97f4a7c15ull);
}
