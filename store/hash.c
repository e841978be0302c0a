/*
 * The hash of the writer's in-memory tables (counters, reference counts,
 * recent entries, the batch's unindexed writes). Their keys are ids and
 * message ids that clients choose, so the hash is keyed (SipHash-2-4,
 * libsodium's crypto_shorthash) with a random key per process: nobody can
 * aim keys at one chain of a table.
 */
#include "store/store_internal.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static uint8_t g_key[crypto_shorthash_KEYBYTES];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_key(void)
{
    randombytes_buf(g_key, sizeof(g_key));
}

void cn__hash_init(void)
{
    pthread_once(&g_once, init_key);
}

uint64_t cn__hash(const void *p, size_t n, uint64_t tweak)
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, p, n, g_key);
    memcpy(&h, out, sizeof(h));
    return h ^ (tweak * 0x9e3779b97f4a7c15ull);
}
