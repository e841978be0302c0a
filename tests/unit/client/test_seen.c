/* Seen-set: membership, FIFO bound, persistence, torn logs, compaction. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "client/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/cn_test_seen.XXXXXX");
    return mkdtemp(g_dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void key(uint32_t i, uint8_t dev[32], uint8_t id[16])
{
    memset(dev, 0, 32);
    memset(id, 0, 16);
    dev[0] = (uint8_t)(i % 3); /* a few devices */
    cn_store_u32be(id, i);
}

static void test_bound_and_persist(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/seen1", g_dir);
    cn__seen_t *s;
    uint8_t dev[32], id[16];
    assert_int_equal(cn__seen_open(path, 100, &s), CN_OK);
    assert_int_equal(cn__seen_count(s), 0);
    for (uint32_t i = 0; i < 250; i++) {
        key(i, dev, id);
        assert_false(cn__seen_has(s, dev, id));
        assert_int_equal(cn__seen_add(s, dev, id), CN_OK);
        assert_true(cn__seen_has(s, dev, id));
        assert_int_equal(cn__seen_add(s, dev, id), CN_OK); /* idempotent */
    }
    assert_int_equal(cn__seen_count(s), 100);
    for (uint32_t i = 0; i < 250; i++) {
        key(i, dev, id);
        assert_int_equal(cn__seen_has(s, dev, id), i >= 150);
    }
    /* Same message id from another device is a different key. */
    key(249, dev, id);
    dev[5] = 1;
    assert_false(cn__seen_has(s, dev, id));
    assert_int_equal(cn__seen_sync(s), CN_OK);
    cn__seen_close(s);

    /* The log was compacted: bounded on disk. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 8 + 201 * 48);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(cn__seen_open(path, 100, &s), CN_OK);
    assert_int_equal(cn__seen_count(s), 100);
    for (uint32_t i = 0; i < 250; i++) {
        key(i, dev, id);
        assert_int_equal(cn__seen_has(s, dev, id), i >= 150);
    }
    cn__seen_close(s);
}

static void test_torn_and_foreign(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/seen2", g_dir);
    cn__seen_t *s;
    uint8_t dev[32], id[16];
    assert_int_equal(cn__seen_open(path, 10, &s), CN_OK);
    for (uint32_t i = 0; i < 3; i++) {
        key(i, dev, id);
        assert_int_equal(cn__seen_add(s, dev, id), CN_OK);
    }
    assert_int_equal(cn__seen_sync(s), CN_OK);
    cn__seen_close(s);
    /* A crash in the middle of an append leaves a torn record. */
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fwrite("partial", 1, 7, f);
    fclose(f);
    assert_int_equal(cn__seen_open(path, 10, &s), CN_OK);
    assert_int_equal(cn__seen_count(s), 3);
    key(3, dev, id);
    assert_int_equal(cn__seen_add(s, dev, id), CN_OK);
    assert_int_equal(cn__seen_sync(s), CN_OK);
    cn__seen_close(s);
    assert_int_equal(cn__seen_open(path, 10, &s), CN_OK);
    assert_int_equal(cn__seen_count(s), 4);
    assert_true(cn__seen_has(s, dev, id));
    cn__seen_close(s);
    /* A foreign file starts an empty set instead of failing. */
    f = fopen(path, "wb");
    fputs("not a seen log at all, really", f);
    fclose(f);
    assert_int_equal(cn__seen_open(path, 10, &s), CN_OK);
    assert_int_equal(cn__seen_count(s), 0);
    cn__seen_close(s);
}

static void test_many_collisions(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/seen3", g_dir);
    cn__seen_t *s;
    uint8_t dev[32], id[16];
    /* Exercise deletion from long probe chains across many evictions. */
    assert_int_equal(cn__seen_open(path, 1000, &s), CN_OK);
    for (uint32_t i = 0; i < 20000; i++) {
        key(i, dev, id);
        assert_int_equal(cn__seen_add(s, dev, id), CN_OK);
        if (i % 997 == 0) {
            for (uint32_t j = (i >= 999 ? i - 999 : 0); j <= i; j++) {
                key(j, dev, id);
                assert_true(cn__seen_has(s, dev, id));
            }
            if (i >= 1000) {
                key(i - 1000, dev, id);
                assert_false(cn__seen_has(s, dev, id));
            }
        }
    }
    cn__seen_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_and_persist),
        cmocka_unit_test(test_torn_and_foreign),
        cmocka_unit_test(test_many_collisions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
