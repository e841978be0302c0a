/*
 * Pending store requests (node/dispatch.c): each one is a single block
 * holding its completion message; a loop thread keeps the blocks it frees,
 * up to what it can have in flight, and its sweep gives back those a quiet
 * period left unused, down to a floor.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
/* clang-format on */

#include "node/node_internal.h"

#include <stdlib.h>

enum { MANY = 1000, FLOOR = 256 };

static cn_loop_t g_loop;
static cn_conn_t g_conn;

static void no_complete(cn_conn_t *c, cn_pending_t *p)
{
    (void)c, (void)p;
}

static cn_pending_t *pending(size_t extra)
{
    cn_pending_t *p = cn__pending_new(&g_conn, 7, CN_OP_SEND, no_complete, extra);
    assert_non_null(p);
    return p;
}

/* The completion message sits in the pending's own block, after its
 * extra bytes, ready for the writer thread to post. */
static void test_message_in_the_block(void **state)
{
    (void)state;
    cn_pending_t *p = pending(300);
    const uint8_t *lo = (const uint8_t *)p, *hi = lo + p->size;
    const uint8_t *m = (const uint8_t *)p->done_msg;
    assert_true(m >= (const uint8_t *)p->extra + 300 && m + sizeof(cn_msg_t) <= hi);
    assert_int_equal((uintptr_t)m % _Alignof(cn_msg_t), 0);
    assert_int_equal(p->done_msg->type, CN_MSG_STORE_DONE);
    assert_int_equal(p->done_msg->len, 0);
    assert_ptr_equal(p->loop, &g_loop);
    assert_int_equal(p->request_id, 7);
    memset(p->extra, 0xab, 300); /* writable up to its end */
    cn__pending_free(p);
    cn__dispatch_thread_exit();
    assert_int_equal(cn__pending_pool_size(), 0);
}

/* Freed blocks are kept; a trim gives back only blocks that stayed unused
 * since the previous trim, never below the floor. */
static void test_pool_kept_then_trimmed(void **state)
{
    (void)state;
    static cn_pending_t *ps[MANY];
    for (int i = 0; i < MANY; i++)
        ps[i] = pending(64);
    for (int i = 0; i < MANY; i++)
        cn__pending_free(ps[i]);
    assert_int_equal(cn__pending_pool_size(), MANY);
    /* The burst drew the pool down to nothing: nothing is idle yet. */
    assert_int_equal(cn__pending_pool_trim(), 0);
    assert_int_equal(cn__pending_pool_size(), MANY);
    /* A quiet period that uses 100 of them: the other 900 were idle. */
    for (int i = 0; i < 100; i++)
        ps[i] = pending(64);
    for (int i = 0; i < 100; i++)
        cn__pending_free(ps[i]);
    assert_int_equal(cn__pending_pool_trim(), MANY - FLOOR);
    assert_int_equal(cn__pending_pool_size(), FLOOR);
    assert_int_equal(cn__pending_pool_trim(), 0);
    assert_int_equal(cn__pending_pool_size(), FLOOR);
    cn__dispatch_thread_exit();
    assert_int_equal(cn__pending_pool_size(), 0);
}

/* A request too large for a pool block is malloc'd and freed as it is;
 * a pending no loop will finish is freed outside the pool. */
static void test_large_and_discarded(void **state)
{
    (void)state;
    cn_pending_t *big = pending(64 * 1024);
    memset(big->extra, 1, 64 * 1024);
    cn__pending_free(big);
    assert_int_equal(cn__pending_pool_size(), 0);
    cn_pending_t *p = pending(16);
    cn__pending_discard(p);
    assert_int_equal(cn__pending_pool_size(), 0);
    cn__dispatch_thread_exit();
}

int main(void)
{
    g_conn.loop = &g_loop;
    g_conn.id = 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_in_the_block),
        cmocka_unit_test(test_pool_kept_then_trimmed),
        cmocka_unit_test(test_large_and_discarded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
