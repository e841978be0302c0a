/*
 * Outbox: durable write, listing in send order, removal, concurrent-name
 * handling, and decoding of damaged files.
 */
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
    snprintf(g_dir, sizeof(g_dir), "/tmp/cn_test_outbox.XXXXXX");
    return mkdtemp(g_dir) != NULL && cn_crypto_init() == CN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void make_entry(cn__outbox_entry_t *e, const char *to, const char *text)
{
    memset(e, 0, sizeof(*e));
    cn_buf_init(&e->content);
    snprintf(e->to, sizeof(e->to), "%s", to);
    e->kind = CHAT__KIND__MESSAGE;
    e->created = 1234;
    cn_random(e->message_id, sizeof(e->message_id));
    assert_int_equal(cn_content_encode_text(&e->content, text, strlen(text), 99), CN_OK);
}

static void test_put_list_remove(void **state)
{
    (void)state;
    uint64_t next = 0;
    cn__outbox_entry_t in[12];
    for (int i = 0; i < 12; i++) {
        char text[32];
        snprintf(text, sizeof(text), "message %d", i);
        make_entry(&in[i], i % 2 ? "bob" : "carol", text);
        assert_int_equal(cn__outbox_put(g_dir, &next, &in[i]), CN_OK);
        assert_int_equal(in[i].seq, (uint64_t)i + 1);
    }
    /* Names sort as sequence numbers (more than 9 entries). */
    struct stat st;
    char path[512];
    snprintf(path, sizeof(path), "%s/00000000000000000010.msg", g_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    cn__outbox_entry_t *v;
    size_t n;
    assert_int_equal(cn__outbox_list(g_dir, &v, &n), CN_OK);
    assert_int_equal(n, 12);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].seq, i + 1);
        assert_string_equal(v[i].to, in[i].to);
        assert_memory_equal(v[i].message_id, in[i].message_id, CN_MESSAGE_ID_LEN);
        assert_int_equal(v[i].content.len, in[i].content.len);
        assert_memory_equal(v[i].content.data, in[i].content.data, v[i].content.len);
        assert_int_equal(v[i].created, 1234);
    }
    cn__outbox_list_free(v, n);

    assert_int_equal(cn__outbox_remove(g_dir, 1), CN_OK);
    assert_int_equal(cn__outbox_remove(g_dir, 5), CN_OK);
    assert_int_equal(cn__outbox_remove(g_dir, 5), CN_OK); /* gone already: fine */
    assert_int_equal(cn__outbox_list(g_dir, &v, &n), CN_OK);
    assert_int_equal(n, 10);
    assert_int_equal(v[0].seq, 2);
    assert_int_equal(v[3].seq, 6);
    cn__outbox_list_free(v, n);

    /* A fresh writer (next = 0) continues after the largest queued. */
    uint64_t next2 = 0;
    cn__outbox_entry_t e;
    make_entry(&e, "dave", "later");
    assert_int_equal(cn__outbox_put(g_dir, &next2, &e), CN_OK);
    assert_int_equal(e.seq, 13);
    /* A writer with a stale counter skips names that are taken. */
    uint64_t stale = 12;
    cn__outbox_entry_t f;
    make_entry(&f, "dave", "racing");
    assert_int_equal(cn__outbox_put(g_dir, &stale, &f), CN_OK);
    assert_int_equal(f.seq, 14);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(cn__outbox_remove(g_dir, in[i].seq), CN_OK);
        cn_buf_dispose(&in[i].content);
    }
    assert_int_equal(cn__outbox_remove(g_dir, 13), CN_OK);
    assert_int_equal(cn__outbox_remove(g_dir, 14), CN_OK);
    cn_buf_dispose(&e.content);
    cn_buf_dispose(&f.content);
    assert_int_equal(cn__outbox_list(g_dir, &v, &n), CN_OK);
    assert_int_equal(n, 0);
    cn__outbox_list_free(v, n);
}

static void test_decode_negative(void **state)
{
    (void)state;
    cn__outbox_entry_t e, d;
    make_entry(&e, "bob", "x");
    cn_buf_t img;
    cn_buf_init(&img);
    cn_buf_init(&d.content);
    assert_int_equal(cn__outbox_encode(&e, &img), CN_OK);
    assert_int_equal(cn__outbox_decode(img.data, img.len, &d), CN_OK);
    assert_string_equal(d.to, "bob");
    for (size_t n = 0; n < img.len; n++) /* truncated */
        assert_int_not_equal(cn__outbox_decode(img.data, n, &d), CN_OK);
    assert_int_equal(cn_buf_put_u8(&img, 0), CN_OK); /* trailing */
    assert_int_equal(cn__outbox_decode(img.data, img.len, &d), CN_EINVAL);
    img.len--;
    img.data[4] = 2; /* version */
    assert_int_equal(cn__outbox_decode(img.data, img.len, &d), CN_EVERSION);
    img.data[4] = 1;
    img.data[0] = 'X'; /* magic */
    assert_int_equal(cn__outbox_decode(img.data, img.len, &d), CN_EINVAL);
    img.data[0] = 'C';
    img.data[5] = 9; /* kind */
    assert_int_equal(cn__outbox_decode(img.data, img.len, &d), CN_EINVAL);
    img.data[5] = 0;
    img.data[4 + 2 + 16 + 8 + 1] = 'B'; /* handle not normalized */
    assert_int_equal(cn__outbox_decode(img.data, img.len, &d), CN_EINVAL);
    cn_buf_dispose(&img);
    cn_buf_dispose(&e.content);
    cn_buf_dispose(&d.content);

    /* Bad handles never reach the disk. */
    make_entry(&e, "bo", "x");
    cn_buf_init(&img);
    assert_int_equal(cn__outbox_encode(&e, &img), CN_EINVAL);
    cn_buf_dispose(&img);
    cn_buf_dispose(&e.content);
}

static void test_damaged_file_skipped(void **state)
{
    (void)state;
    uint64_t next = 0;
    cn__outbox_entry_t a, b;
    make_entry(&a, "alice", "first");
    make_entry(&b, "alice", "second");
    assert_int_equal(cn__outbox_put(g_dir, &next, &a), CN_OK);
    assert_int_equal(cn__outbox_put(g_dir, &next, &b), CN_OK);
    char path[512];
    snprintf(path, sizeof(path), "%s/%020llu.msg", g_dir, (unsigned long long)a.seq);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("garbage", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/not-an-entry.txt", g_dir);
    f = fopen(path, "wb");
    fclose(f);
    cn__outbox_entry_t *v;
    size_t n;
    assert_int_equal(cn__outbox_list(g_dir, &v, &n), CN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].seq, b.seq);
    cn__outbox_list_free(v, n);
    cn_buf_dispose(&a.content);
    cn_buf_dispose(&b.content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_list_remove),
        cmocka_unit_test(test_decode_negative),
        cmocka_unit_test(test_damaged_file_skipped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
