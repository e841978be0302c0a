/*
 * The master key and the key ring of encryption at rest (DESIGN section
 * 5): loaded at open, wiped at close, and the statistics of
 * cn_store_keys_stats.
 *
 * The master key comes from CN_STORE_MASTER_KEY_ENV (hex) when set, else
 * from the key file (default <path>/master.key). A missing file is
 * created only for a database without a ring: for an encrypted database a
 * fresh key could never open the ring, and a clear error is better than a
 * wrong key. The ring is the meta record "keyring", sealed under the
 * master key; a database opened for the first time gets a ring with key 1,
 * flagged legacy when it already holds records (written in plaintext
 * before this version), which starts the re-seal pass.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(CN_STORE_KEYS_MAX == CN_KEYRING_MAX, "the store's key limit is the ring's");

static const enum cn__cf sealed_cfs[] = {
    CN__CF_DEVICES, CN__CF_USERS, CN__CF_PREKEYS, CN__CF_MAILBOX, CN__CF_DEDUPE,
    CN__CF_GROUPS,  CN__CF_MEDIA, CN__CF_HISTORY, CN__CF_PUSH,    CN__CF_GMSG};

/** Reads the stored ring: CN_OK with *val (rocksdb_free), CN_ENOTFOUND, CN_EIO. */
static int ring_get(cn_store_t *s, char **val, size_t *vlen)
{
    char *err = NULL;
    *val = rocksdb_get_cf(s->db, s->ro, s->cf[CN__CF_META], CN__META_KEYRING,
                          strlen(CN__META_KEYRING), vlen, &err);
    CN_TRY(cn__rdb_err(err, "keyring_get"));
    return *val != NULL ? CN_OK : CN_ENOTFOUND;
}

/** True when any column family that gets sealed holds a record. */
static bool has_records(cn_store_t *s)
{
    bool any = false;
    for (size_t i = 0; i < CN_ARRAY_LEN(sealed_cfs) && !any; i++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[sealed_cfs[i]]);
        rocksdb_iter_seek_to_first(it);
        any = rocksdb_iter_valid(it);
        rocksdb_iter_destroy(it);
    }
    return any;
}

static int load_master_key(cn_store_t *s, bool have_ring)
{
    const char *hex = getenv(CN_STORE_MASTER_KEY_ENV);
    if (hex != NULL && hex[0] != '\0') {
        int rc = cn_master_key_from_hex(hex, &s->mk);
        if (rc == CN_EINVAL)
            cn_log_error("store_master_key", "source=env reason=\"%s is not 64 hex digits\"",
                         CN_STORE_MASTER_KEY_ENV);
        return rc;
    }
    char def[4096];
    const char *path = s->opts.master_key_file;
    if (path == NULL) {
        int n = snprintf(def, sizeof(def), "%s/master.key", s->path);
        CN_ENSURE(n > 0 && (size_t)n < sizeof(def), CN_EINVAL);
        path = def;
    }
    bool created = false;
    int rc = cn_master_key_load(path, s->opts.create_master_key && !have_ring, &s->mk, &created);
    if (created)
        cn_log_info("store_master_key_created", "path=\"%s\"", path);
    if (rc == CN_ENOTFOUND)
        cn_log_error("store_master_key", "source=file path=\"%s\" reason=\"%s\"", path,
                     have_ring ? "missing, and the database is encrypted under it"
                               : "missing (create_master_key is off)");
    else if (rc == CN_EINVAL)
        cn_log_error("store_master_key", "source=file path=\"%s\" reason=\"not a %d-byte key\"",
                     path, CN_ATREST_KEY_LEN);
    return rc;
}

static int ring_create(cn_store_t *s)
{
    cn_buf_t b;
    char *err = NULL;
    CN_TRY(cn_keyring_new(&s->ring));
    CN_TRY(cn_keyring_rotate(s->ring, NULL));
    bool legacy = has_records(s);
    cn_keyring_set_legacy(s->ring, legacy);
    cn_buf_init(&b);
    int rc = cn_keyring_seal(s->ring, &s->mk, NULL, 0, &b);
    if (rc == CN_OK) {
        rocksdb_put_cf(s->db, s->wo_sync, s->cf[CN__CF_META], CN__META_KEYRING,
                       strlen(CN__META_KEYRING), (const char *)b.data, b.len, &err);
        rc = cn__rdb_err(err, "keyring_put");
    }
    cn_buf_dispose(&b);
    if (rc == CN_OK)
        cn_log_info("store_keyring_created", "key_id=1 legacy=%s", legacy ? "true" : "false");
    return rc;
}

int cn__keys_open(cn_store_t *s)
{
    char *val = NULL;
    size_t vlen = 0;
    int rc = ring_get(s, &val, &vlen);
    if (rc < 0 && rc != CN_ENOTFOUND)
        return rc;
    bool have_ring = rc == CN_OK;
    if (!s->opts.encrypt) {
        rocksdb_free(val);
        if (have_ring)
            cn_log_error("store_keyring", "reason=\"the database is encrypted; encrypt is off\"");
        return have_ring ? CN_EINVAL : CN_OK;
    }
    rc = load_master_key(s, have_ring);
    if (rc == CN_OK && have_ring) {
        rc = cn_keyring_open(&s->mk, (const uint8_t *)val, vlen, &s->ring);
        if (rc == CN_EAUTH)
            cn_log_error("store_keyring", "reason=\"the master key does not open the key ring "
                                          "(wrong master key, or a tampered ring)\"");
        else if (rc < 0)
            cn_log_error("store_keyring", "reason=\"unreadable key ring\" rc=%s", cn_strerror(rc));
    } else if (rc == CN_OK) {
        rc = ring_create(s);
    }
    rocksdb_free(val);
    s->opts.master_key_file = NULL; /* borrowed during cn_store_open only */
    if (rc == CN_OK)
        __atomic_store_n(&s->legacy, cn_keyring_legacy(s->ring), __ATOMIC_RELAXED);
    return rc;
}

void cn__keys_close(cn_store_t *s)
{
    cn_keyring_free(s->ring);
    s->ring = NULL;
    cn_master_key_dispose(&s->mk);
}

int cn__keys_put_ring(cn__batch_t *b)
{
    cn_buf_reset(&b->seal);
    CN_TRY(cn_keyring_seal(b->s->ring, &b->s->mk, b->retired, b->nretired, &b->seal));
    cn__batch_put_raw(b, CN__CF_META, CN__META_KEYRING, strlen(CN__META_KEYRING), b->seal.data,
                      b->seal.len);
    return CN_OK;
}

/* ---------------------------------------------------------------- stats */

static uint64_t pass_count(const cn__pass_t *p, uint32_t id)
{
    for (size_t i = 0; i < p->nids; i++) {
        if (p->ids[i] == id)
            return p->counts[i];
    }
    return 0;
}

static void add_info(cn_store_keys_stats_t *out, const cn__pass_t *p, uint32_t id,
                     enum cn_store_key_state state, bool retirable)
{
    if (out->n >= CN_ARRAY_LEN(out->keys))
        return;
    cn_store_key_info_t *k = &out->keys[out->n++];
    k->id = id;
    k->state = state;
    k->records = pass_count(p, id);
    k->retirable = retirable;
}

/* Called with the pass mutex held: the ring's own lock nests inside. */
static void fill_keys(cn_store_t *s, cn_store_keys_stats_t *out)
{
    cn_keyring_entry_t ents[CN_KEYRING_MAX];
    const cn__pass_t *p = &s->pass;
    size_t n = CN_MIN(cn_keyring_list(s->ring, ents, CN_KEYRING_MAX), (size_t)CN_KEYRING_MAX);
    uint32_t next = cn_keyring_next_id(s->ring);
    out->current = cn_keyring_current(s->ring);
    for (size_t i = 0; i < n; i++) {
        bool cur = ents[i].id == out->current;
        add_info(out, p, ents[i].id, cur ? CN_STORE_KEY_CURRENT : CN_STORE_KEY_OLD,
                 ents[i].state == CN_KEY_DRAINED);
    }
    if (cn__legacy(s))
        add_info(out, p, 0, CN_STORE_KEY_OLD, false);
    /* Retired: the ids handed out that are no longer in the ring. */
    for (uint32_t id = next - 1, j = n; id > 0 && out->n < CN_ARRAY_LEN(out->keys); id--) {
        while (j > 0 && ents[j - 1].id > id)
            j--;
        if (j == 0 || ents[j - 1].id != id)
            add_info(out, p, id, CN_STORE_KEY_RETIRED, false);
    }
}

int cn_store_keys_stats(cn_store_t *s, cn_store_keys_stats_t *out)
{
    CN_ENSURE(s != NULL && out != NULL, CN_EINVAL);
    memset(out, 0, sizeof(*out));
    if (s->ring == NULL || !s->pass.inited)
        return CN_OK;
    out->encrypted = true;
    out->auth_failures = __atomic_load_n(&s->auth_failures, __ATOMIC_RELAXED);
    pthread_mutex_lock(&s->pass.mu);
    fill_keys(s, out);
    out->counted = s->pass.counted;
    out->running = s->pass.running || s->pass.requested; /* requested: about to (re)start */
    out->resealed = s->pass.resealed;
    out->scanned = s->pass.scanned;
    out->total_estimate = s->pass.total;
    out->passes = s->pass.passes;
    pthread_mutex_unlock(&s->pass.mu);
    return CN_OK;
}
