/* chatnode configuration: defaults, INI file, flags over the file, refusals. */
/* cmocka.h needs these first. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
/* clang-format on */

#include "node/cn_node.h"

static char g_path[64];

static void write_conf(const char *text)
{
    snprintf(g_path, sizeof(g_path), "/tmp/cn_config_test_XXXXXX");
    int fd = mkstemp(g_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static int parse(cn_node_config_t *cfg, int argc, const char *const *argv, char *err)
{
    cn_node_config_default(cfg);
    char *args[32];
    for (int i = 0; i < argc; i++)
        memcpy(&args[i], &argv[i], sizeof(char *));
    return cn_node_config_parse(cfg, argc, args, err, 256);
}

static void test_defaults(void **state)
{
    (void)state;
    cn_node_config_t cfg;
    char err[256];
    const char *argv[] = {"chatnode"};
    assert_int_equal(parse(&cfg, 1, argv, err), CN_OK);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8443);
    assert_int_equal(cfg.sync, CN_SYNC_BATCH);
    assert_int_equal(cfg.max_devices, 6);
    assert_string_equal(cfg.node_key, "./var/data/node.key");
}

static void test_flags(void **state)
{
    (void)state;
    cn_node_config_t cfg;
    char err[256];
    const char *argv[] = {"chatnode", "--listen",       "0.0.0.0:0", "--sync",
                          "none",     "--registration", "invite",    "--threads",
                          "3",        "--metrics",      ""};
    assert_int_equal(parse(&cfg, 11, argv, err), CN_OK);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 0);
    assert_int_equal(cfg.sync, CN_SYNC_NONE);
    assert_int_equal(cfg.registration, CN_REG_INVITE);
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.metrics_host, "");
}

static void test_file_then_flags(void **state)
{
    (void)state;
    write_conf("; comment\n[node]\nlisten = 127.0.0.2:9000\nsync = always\n"
               "[limits]\nidle_timeout_ms = 5000\nping_interval_ms = 1000\n"
               "max_queued_bytes = 0\n");
    cn_node_config_t cfg;
    char err[256];
    const char *argv[] = {"chatnode", "--sync", "none", "--config", g_path};
    assert_int_equal(parse(&cfg, 5, argv, err), CN_OK);
    assert_string_equal(cfg.listen_host, "127.0.0.2");
    assert_int_equal(cfg.listen_port, 9000);
    assert_int_equal(cfg.sync, CN_SYNC_NONE); /* the flag wins, wherever it stands */
    assert_int_equal(cfg.idle_timeout_ms, 5000);
    assert_int_equal(cfg.max_queued_bytes, 0);
    unlink(g_path);
}

static void test_file_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[node]\nbogus = 1\n",    "[node]\nlisten = nope\n", "[limits]\nmax_connections = -1\n",
        "[node]\nthreads = 65\n", "not an ini line\n",       "[limits]\nmax_queued_bytes = 1000\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_conf(bad[i]);
        cn_node_config_t cfg;
        char err[256] = "";
        const char *argv[] = {"chatnode", "--config", g_path};
        assert_int_equal(parse(&cfg, 3, argv, err), CN_EINVAL);
        assert_non_null(strstr(err, "line")); /* the message names the line */
        unlink(g_path);
    }
    cn_node_config_t cfg;
    char err[256];
    const char *missing[] = {"chatnode", "--config", "/nonexistent/chatnode.conf"};
    assert_int_equal(parse(&cfg, 3, missing, err), CN_EINVAL);
}

static void test_flag_errors(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"chatnode", "--listen", "127.0.0.1"},
        {"chatnode", "--sync", "sometimes"},
        {"chatnode", "--threads", "0"},
        {"chatnode", "--out-hard-limit", "1000"},
        {"chatnode", "--max-devices", "17"},
        {"chatnode", "--bogus", "1"},
        {"chatnode", "--listen", "127.0.0.1:99999"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cn_node_config_t cfg;
        char err[256];
        assert_int_equal(parse(&cfg, 3, cases[i], err), CN_EINVAL);
    }
    cn_node_config_t cfg;
    char err[256];
    const char *inverted[] = {"chatnode", "--out-soft-limit", "8388608"};
    assert_int_equal(parse(&cfg, 3, inverted, err), CN_EINVAL);
    assert_non_null(strstr(err, "out_hard_limit"));
}

static void test_ratelimit_policies(void **state)
{
    (void)state;
    cn_node_config_t cfg;
    char err[256];
    const char *argv[] = {"chatnode", "--ratelimit", "send=120/m:5", "--ratelimit", "history=3"};
    assert_int_equal(parse(&cfg, 5, argv, err), CN_OK);
    assert_int_equal(cfg.n_ratelimits, 2);
    assert_string_equal(cfg.ratelimits[0].action, "send");
    assert_true(cfg.ratelimits[0].rate == 2.0 && cfg.ratelimits[0].burst == 5.0);
    assert_true(cfg.ratelimits[1].rate == 3.0 && cfg.ratelimits[1].burst == 3.0);
    write_conf("[ratelimit]\nprekey-fetch = 1/s:50\n");
    const char *file[] = {"chatnode", "--config", g_path};
    assert_int_equal(parse(&cfg, 3, file, err), CN_OK);
    assert_int_equal(cfg.n_ratelimits, 1);
    assert_true(cfg.ratelimits[0].burst == 50.0);
    unlink(g_path);
    static const char *const bad[] = {"send",   "=1/s",     "send=0",    "send=1/s:0",
                                      "send=x", "send=5/d", "send=1/s:", "send=1/s:2x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[] = {"chatnode", "--ratelimit", bad[i]};
        assert_int_equal(parse(&cfg, 3, args, err), CN_EINVAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_file_then_flags), cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_flag_errors),     cmocka_unit_test(test_ratelimit_policies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
