/*
 * The home sealed at rest (client/keystore.c, client/store.c, client/e2e.c):
 * key-file and passphrase homes, wrong and missing passphrases, sealed
 * identity / prekeys, migration of a plaintext identity.key, trust on
 * first use with its warning, and that no key material is stored in the
 * clear.
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

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static int g_warnings;

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/cn_test_keystore.XXXXXX");
    return mkdtemp(g_dir) != NULL && cn_crypto_init() == CN_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void home_of(char *out, const char *name)
{
    snprintf(out, CN__PATH_MAX, "%s/%s", g_dir, name);
}

static bool file_contains(const char *path, const uint8_t *needle, size_t n)
{
    cn_buf_t b;
    cn_buf_init(&b);
    bool found = false;
    if (cn__file_read(path, 1 << 24, &b) == CN_OK)
        for (size_t i = 0; i + n <= b.len && !found; i++)
            found = memcmp(b.data + i, needle, n) == 0;
    cn_buf_dispose(&b);
    return found;
}

static void test_keyfile_home(void **state)
{
    (void)state;
    char home[CN__PATH_MAX], path[CN__PATH_MAX + 32];
    home_of(home, "kf");
    cn_client_options_t opt = {.home = home, .insecure = true};
    cn_client_t *c;
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    snprintf(path, sizeof(path), "%s/home.key", home);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    /* An identity is saved sealed: neither its seed nor its public key in clear. */
    cn_identity_t id;
    assert_int_equal(cn_identity_generate(&id), CN_OK);
    assert_int_equal(cn__identity_save(home, c->home_key, &id), CN_OK);
    snprintf(path, sizeof(path), "%s/identity", home);
    assert_false(file_contains(path, id.sk, 32));
    assert_false(file_contains(path, id.pk, 32));
    cn_client_free(c);
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    assert_true(c->has_id);
    assert_memory_equal(c->id.pk, id.pk, 32);
    cn_client_free(c);
    /* Without its key file the home does not open. */
    snprintf(path, sizeof(path), "%s/home.key", home);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(cn_client_new(&opt, &c), CN_EAUTH);
    cn_identity_dispose(&id);
}

static void test_passphrase_home(void **state)
{
    (void)state;
    char home[CN__PATH_MAX], path[CN__PATH_MAX + 32];
    home_of(home, "pp");
    cn_client_options_t opt = {.home = home,
                               .insecure = true,
                               .passphrase = "correct horse battery staple",
                               .pwhash_opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE,
                               .pwhash_memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE};
    cn_client_t *c;
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    snprintf(path, sizeof(path), "%s/home.key", home);
    assert_int_not_equal(access(path, F_OK), 0); /* no key file in passphrase mode */
    /* Prekeys round trip sealed. */
    cn__prekeys_t pk;
    memset(&pk, 0, sizeof(pk));
    assert_int_equal(cn__prekeys_generate(&pk, true, 5), CN_OK);
    snprintf(path, sizeof(path), "%s/prekeys", home);
    assert_int_equal(cn__prekeys_save(path, c->home_key, &pk), CN_OK);
    assert_false(file_contains(path, pk.signed_kp.sk, 32));
    assert_false(file_contains(path, pk.otpk[0].sk, 32));
    cn__prekeys_t back;
    assert_int_equal(cn__prekeys_load(path, c->home_key, &back), CN_OK);
    assert_int_equal(back.n, 5);
    assert_memory_equal(back.otpk[3].sk, pk.otpk[3].sk, 32);
    assert_true(cn__prekeys_remove(&back, pk.ids[2]));
    assert_false(cn__prekeys_remove(&back, pk.ids[2]));
    assert_int_equal(back.n, 4);
    cn__prekeys_dispose(&back);
    cn_client_free(c);
    /* Wrong and missing passphrases are refused. */
    opt.passphrase = "wrong";
    assert_int_equal(cn_client_new(&opt, &c), CN_EAUTH);
    opt.passphrase = NULL;
    assert_int_equal(cn_client_new(&opt, &c), CN_EAUTH);
    opt.passphrase = "correct horse battery staple";
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    /* Another home's key does not open this home's files. */
    uint8_t other[32];
    randombytes_buf(other, sizeof(other));
    assert_int_equal(cn__prekeys_load(path, other, &back), CN_EAUTH);
    cn_client_free(c);
    cn__prekeys_dispose(&pk);
}

static void test_legacy_identity_migrated(void **state)
{
    (void)state;
    char home[CN__PATH_MAX], path[CN__PATH_MAX + 32];
    home_of(home, "legacy");
    assert_int_equal(cn__mkdir(home, 0700), CN_OK);
    cn_identity_t id;
    assert_int_equal(cn_identity_generate(&id), CN_OK);
    snprintf(path, sizeof(path), "%s/identity.key", home);
    assert_int_equal(cn_identity_save(&id, path), CN_OK);
    cn_client_options_t opt = {.home = home, .insecure = true};
    cn_client_t *c;
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    assert_true(c->has_id);
    assert_memory_equal(c->id.pk, id.pk, 32);
    assert_int_not_equal(access(path, F_OK), 0); /* the plaintext file is gone */
    cn_client_free(c);
    cn_identity_dispose(&id);
}

static void on_warn(void *ud, const char *msg)
{
    (void)ud;
    assert_non_null(strstr(msg, "identity key of bob changed"));
    g_warnings++;
}

static void test_trust_on_first_use(void **state)
{
    (void)state;
    char home[CN__PATH_MAX];
    home_of(home, "tofu");
    cn_client_options_t opt = {.home = home, .insecure = true};
    cn_client_t *c;
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    cn_client_set_warn_cb(c, on_warn, NULL);
    uint8_t k1[32], k2[32];
    randombytes_buf(k1, 32);
    randombytes_buf(k2, 32);
    g_warnings = 0;
    assert_int_equal(cn__trust_check(c, "bob", k1, 1), CN_OK); /* first use: silent */
    assert_int_equal(cn__trust_check(c, "bob", k1, 1), CN_OK);
    assert_int_equal(g_warnings, 0);
    assert_int_equal(cn__trust_check(c, "bob", k2, 1), CN_OK); /* a new key: warned */
    assert_int_equal(g_warnings, 1);
    cn_client_free(c);
    /* Remembered across runs (sealed in HOME/trust). */
    assert_int_equal(cn_client_new(&opt, &c), CN_OK);
    cn_client_set_warn_cb(c, on_warn, NULL);
    assert_int_equal(cn__trust_check(c, "BOB", k2, 1), CN_OK);
    assert_int_equal(g_warnings, 1);
    cn_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyfile_home),
        cmocka_unit_test(test_passphrase_home),
        cmocka_unit_test(test_legacy_identity_migrated),
        cmocka_unit_test(test_trust_on_first_use),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
