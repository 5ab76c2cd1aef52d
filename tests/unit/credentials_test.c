/* Provider credentials: src/auth/vault.c (keys, AES-256-GCM), src/auth/credential.c (AAD,
 * resolution, rotation), src/auth/credential_cache.c (decrypt cache) and src/api/credentials.c
 * (the API) on a real store: every store case runs on SQLite (a migrated temp file) and, when
 * IBEX_TEST_PG_URL is set, on Postgres (a schema per case); without it the Postgres half prints
 * SKIP and the reason.
 *
 * Covers key parsing (hex, base64, wrong lengths, messages that never quote the key), key ids,
 * key files (permissions, several keys, comments), loading (env, file, both, previous keys), the
 * seal/open round trip and every way to break it (wrong key, tampered ciphertext, tag, nonce,
 * AAD of another tenant or id), the MAC; the API: create, get, list (paging, filters), update,
 * delete, default (one per provider and owner, enforced by the store too), validation
 * (prepare, a real probe on a loop against a fake provider and a closed port, finish), errors,
 * isolation per tenant and per subject (the same answer as an unknown id), audit events without
 * secrets, the plaintext absent from every column and from the SQLite files; resolution order,
 * inactive and deleted credentials never chosen; the decrypt cache (once per version, threads);
 * rotation (idempotent, previous keys readable meanwhile, unknown keys reported); the query
 * plans of every statement on both stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/api/credentials.h"
#include "../../src/auth/credential.h"
#include "../../src/auth/credential_cache.h"
#include "../../src/auth/identity.h"
#include "../../src/auth/keys.h"
#include "../../src/auth/vault.h"
#include "../../src/core/clock.h"
#include "../../src/core/id.h"
#include "../../src/core/lru.h"
#include "../../src/http/server.h"
#include "testutil.h"
#include "storeutil.h"

#define TU_API_SUITE "credentials"
#include "apiutil.h"

#define UNKNOWN_ID "0f0e0d0c-0b0a-4908-8706-050403020100"
#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_B "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_C "c00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

/* ---- helpers ---- */

static void key_from(const char *hex, uint8_t key[IBEX_VAULT_KEY_LEN])
{
    char err[200];
    if (ibex_vault_parse_key(hex, strlen(hex), key, err, sizeof(err)) != 0)
        fail_msg("test key: %s", err);
}

static struct ibex_vault *vault_of(const char *current, const char *previous)
{
    uint8_t k[IBEX_VAULT_KEY_LEN], p[1][IBEX_VAULT_KEY_LEN];
    key_from(current, k);
    if (previous)
        key_from(previous, p[0]);
    return ibex_vault_new(k, (const uint8_t(*)[IBEX_VAULT_KEY_LEN])p, previous ? 1 : 0);
}

static bool contains(const void *hay, size_t n, const char *needle)
{
    return n >= strlen(needle) && memmem(hay, n, needle, strlen(needle)) != NULL;
}

static struct ibex_provider_config providers[] = {
    {.name = (char *)"openai",
     .type = IBEX_PROVIDER_OPENAI,
     .base_url = (char *)"http://127.0.0.1:9/v1"},
    {.name = (char *)"anthropic",
     .type = IBEX_PROVIDER_ANTHROPIC,
     .base_url = (char *)"https://api.anthropic.com"},
    {.name = (char *)"gemini",
     .type = IBEX_PROVIDER_GEMINI,
     .base_url = (char *)"https://generativelanguage.googleapis.com"},
    {.name = (char *)"mock", .type = IBEX_PROVIDER_MOCK},
};

struct env {
    struct ibex_vault *vault;
    struct ibex_credential_cache *cache;
    struct ibex_credentials_env e;
};

static void env_init(struct env *x, const char *key)
{
    x->vault = key ? vault_of(key, NULL) : NULL;
    x->cache = ibex_credential_cache_new(64);
    x->e = (struct ibex_credentials_env){x->vault, providers,
                                         sizeof(providers) / sizeof(providers[0]), x->cache};
}

static void env_dispose(struct env *x)
{
    ibex_credential_cache_free(x->cache);
    ibex_vault_free(x->vault);
}

static struct ibex_actor actor(const char *tenant, const char *subject, uint32_t scopes)
{
    return (struct ibex_actor){
        .tenant_id = tenant, .subject = subject, .scopes = scopes, .request_id = "req-cred"};
}

#define USER IBEX_SCOPE_CHAT
#define CADMIN (IBEX_SCOPE_CHAT | IBEX_SCOPE_CREDENTIALS_ADMIN)

static int cred_create(struct fx *f, struct env *e, const struct ibex_actor *a, const char *body,
                       struct res *x)
{
    json_object *b = jbody("%s", body);
    int rc = ibex_credentials_create(f->st, &e->e, a, b, &x->out, &x->r);
    json_object_put(b);
    return rc;
}

/* A credential that must be created: its id in id. */
static void cred_new(struct fx *f, struct env *e, const struct ibex_actor *a, const char *provider,
                     const char *secret, bool tenant_wide, char id[ID_BUF])
{
    struct res x;
    res_init(&x);
    char body[512];
    snprintf(body, sizeof(body), "{\"provider\":\"%s\",\"name\":\"n-%s\",\"secret\":\"%s\"%s}",
             provider, provider, secret, tenant_wide ? ",\"scope\":\"tenant\"" : "");
    expect(&x, cred_create(f, e, a, body, &x), 201, NULL, body);
    snprintf(id, ID_BUF, "%s", jstr(x.j, "id"));
    res_dispose(&x);
}

static int cred_put(struct fx *f, struct env *e, const struct ibex_actor *a, const char *id,
                    const char *body, struct res *x)
{
    json_object *b = jbody("%s", body);
    int rc = ibex_credentials_update(f->st, &e->e, a, id, b, &x->out, &x->r);
    json_object_put(b);
    return rc;
}

static void cred_set(struct fx *f, struct env *e, const struct ibex_actor *a, const char *id,
                     const char *body)
{
    struct res x;
    res_init(&x);
    expect(&x, cred_put(f, e, a, id, body, &x), 200, NULL, body);
    res_dispose(&x);
}

static void cred_default(struct fx *f, const struct ibex_actor *a, const char *id)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_credentials_make_default(f->st, a, id, &x.out, &x.r), 200, NULL, "default");
    assert_true(json_object_get_boolean(jget(x.j, "is_default")));
    res_dispose(&x);
}

static void cred_delete(struct fx *f, struct env *e, const struct ibex_actor *a, const char *id)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_credentials_delete(f->st, &e->e, a, id, &x.out, &x.r), 200, NULL, "delete");
    assert_string_equal(jstr(x.j, "state"), "deleted");
    res_dispose(&x);
}

static json_object *cred_json(struct fx *f, const struct ibex_actor *a, const char *id)
{
    struct res x;
    res_init(&x);
    expect(&x, ibex_credentials_get(f->st, a, id, &x.out, &x.r), 200, NULL, "get");
    json_object *j = json_object_get(x.j);
    res_dispose(&x);
    return j;
}

/* Resolves and checks the source and the plaintext (NULL: none). */
static void expect_resolve(struct fx *f, struct env *e, const char *tenant, const char *subject,
                           const char *provider, enum ibex_credential_source source, const char *id,
                           const char *secret, const char *what)
{
    struct ibex_credential_choice c;
    int rc = ibex_credential_resolve(f->st, e->vault, e->cache, tenant, subject, provider, &c);
    if (rc != 0)
        fail_msg("%s: resolve failed (%d): %s", what, rc, ibex_store_errmsg(f->st));
    if (c.source != source)
        fail_msg("%s: source %d, wanted %d", what, (int)c.source, (int)source);
    if (source == IBEX_CREDENTIAL_NONE) {
        assert_null(c.secret);
        assert_string_equal(c.id, "");
    } else {
        assert_non_null(c.secret);
        if (id)
            assert_string_equal(c.id, id);
        if (strcmp(c.secret->p, secret) != 0 || c.secret->len != strlen(secret))
            fail_msg("%s: another secret came back", what);
        assert_true(c.version >= 1);
    }
    ibex_credential_choice_dispose(&c);
    assert_null(c.secret);
}

/* A validation prepared: 200, no answer yet. */
static void expect_prepared(struct res *x, int rc, const char *what)
{
    if (rc != 200 || x->r.code != NULL)
        fail_msg("%s: prepare: %d %s %s", what, rc, x->r.code ? x->r.code : "", x->r.message);
    assert_int_equal(x->out.len, 0);
}

static const char *audit_actions_sql =
    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = $2";

/* ---- keys ---- */

static void test_key_parse(void **state)
{
    uint8_t k[IBEX_VAULT_KEY_LEN], want[IBEX_VAULT_KEY_LEN];
    char err[200];
    for (int i = 0; i < 32; i++)
        want[i] = (uint8_t)i;
    static const char *ok[] = {
        HEX_A,
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        "  " HEX_A "\n",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", /* base64, padded */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",  /* no padding */
        "\tAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        memset(k, 0xee, sizeof(k));
        if (ibex_vault_parse_key(ok[i], strlen(ok[i]), k, err, sizeof(err)) != 0)
            fail_msg("key %zu refused: %s", i, err);
        assert_memory_equal(k, want, sizeof(want));
    }
    /* the URL alphabet decodes like the standard one */
    uint8_t hi[IBEX_VAULT_KEY_LEN], std[IBEX_VAULT_KEY_LEN];
    memset(want, 0xfb, sizeof(want));
    want[31] = 0xff;
    const char *url = "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_8=";
    const char *stdtext = "+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/8";
    assert_int_equal(ibex_vault_parse_key(url, strlen(url), hi, err, sizeof(err)), 0);
    assert_int_equal(ibex_vault_parse_key(stdtext, strlen(stdtext), std, err, sizeof(err)), 0);
    assert_memory_equal(hi, want, sizeof(want));
    assert_memory_equal(std, want, sizeof(want));

    static const char *bad[] = {
        "",
        "   ",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e",     /* 62 hex */
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00", /* 66 hex */
        "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",   /* not hex */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",                       /* 31 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",                       /* 33 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMU FRYXGBkaGxwdHh8=",                      /* a space inside */
        "not a key at all!",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (ibex_vault_parse_key(bad[i], strlen(bad[i]), k, err, sizeof(err)) == 0)
            fail_msg("bad key %zu accepted", i);
        assert_true(strlen(err) > 0);
        /* the message never quotes the text it refused */
        if (strlen(bad[i]) >= 8 && strstr(err, bad[i]))
            fail_msg("message quotes the key: %s", err);
        if (strlen(bad[i]) > 16) {
            char head[17];
            memcpy(head, bad[i], 16);
            head[16] = '\0';
            assert_null(strstr(err, head));
        }
    }
}

static void test_key_id(void **state)
{
    uint8_t a[IBEX_VAULT_KEY_LEN], b[IBEX_VAULT_KEY_LEN];
    key_from(HEX_A, a);
    key_from(HEX_B, b);
    char ia[IBEX_VAULT_KEY_ID_LEN + 1], ia2[IBEX_VAULT_KEY_ID_LEN + 1],
        ib[IBEX_VAULT_KEY_ID_LEN + 1];
    ibex_vault_key_id_of(a, ia);
    ibex_vault_key_id_of(a, ia2);
    ibex_vault_key_id_of(b, ib);
    assert_int_equal(strlen(ia), IBEX_VAULT_KEY_ID_LEN);
    assert_string_equal(ia, ia2);
    assert_string_not_equal(ia, ib);
    for (size_t i = 0; i < IBEX_VAULT_KEY_ID_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", ia[i]));
    /* not the key, nor a plain hash of it */
    assert_null(strstr(HEX_A, ia));
    char plain[IBEX_SHA256_HEX_LEN + 1];
    ibex_sha256_hex(a, sizeof(a), plain);
    assert_int_not_equal(strncmp(plain, ia, IBEX_VAULT_KEY_ID_LEN), 0);

    struct ibex_vault *v = vault_of(HEX_A, HEX_B);
    assert_string_equal(ibex_vault_key_id(v), ia);
    assert_int_equal(ibex_vault_nkeys(v), 2);
    assert_string_equal(ibex_vault_key_id_at(v, 1), ib);
    assert_null(ibex_vault_key_id_at(v, 2));
    assert_true(ibex_vault_has_key(v, ib));
    assert_false(ibex_vault_has_key(v, "0000000000000000"));
    ibex_vault_free(v);
    /* a previous key equal to the current one is held once */
    v = vault_of(HEX_A, HEX_A);
    assert_int_equal(ibex_vault_nkeys(v), 1);
    ibex_vault_free(v);
}

static void write_mode(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_key_files(void **state)
{
    char path[64];
    assert_int_equal(tu_write_temp("", path), 0);
    uint8_t keys[4][IBEX_VAULT_KEY_LEN], want[IBEX_VAULT_KEY_LEN];
    size_t n;
    char err[600];
    key_from(HEX_A, want);

    /* 0600 and 0640 are fine; a trailing newline is fine */
    static const mode_t fine[] = {0600, 0400, 0640, 0660};
    for (size_t i = 0; i < 4; i++) {
        write_mode(path, HEX_A "\n", fine[i]);
        if (ibex_vault_read_key_file("master_key_file", path, false, keys, 4, &n, err,
                                     sizeof(err)) != 0)
            fail_msg("mode %o refused: %s", fine[i], err);
        assert_int_equal(n, 1);
        assert_memory_equal(keys[0], want, sizeof(want));
    }
    /* any access for other users is refused, with the fix in the message */
    static const mode_t open_modes[] = {0644, 0604, 0602, 0601, 0666};
    for (size_t i = 0; i < 5; i++) {
        write_mode(path, HEX_A "\n", open_modes[i]);
        assert_int_equal(
            ibex_vault_read_key_file("master_key_file", path, false, keys, 4, &n, err, sizeof(err)),
            -1);
        assert_non_null(strstr(err, "master_key_file"));
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "chmod 600"));
        assert_null(strstr(err, HEX_A));
    }
    /* one key only, unless many; comments and blank lines */
    write_mode(path, HEX_A "\n" HEX_B "\n", 0600);
    assert_int_equal(
        ibex_vault_read_key_file("master_key_file", path, false, keys, 4, &n, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "one key"));
    write_mode(path, "# previous keys\n\n" HEX_A "\n  # old\n" HEX_B "\n\n", 0600);
    assert_int_equal(ibex_vault_read_key_file("master_key_previous_file", path, true, keys, 4, &n,
                                              err, sizeof(err)),
                     0);
    assert_int_equal(n, 2);
    assert_memory_equal(keys[0], want, sizeof(want));
    /* a bad line is named by its number, never quoted */
    write_mode(path, HEX_A "\nsecretsecretsecret-not-a-key\n", 0600);
    assert_int_equal(ibex_vault_read_key_file("master_key_previous_file", path, true, keys, 4, &n,
                                              err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "line 2"));
    assert_null(strstr(err, "secretsecret"));
    write_mode(path, "\n# nothing\n", 0600);
    assert_int_equal(
        ibex_vault_read_key_file("master_key_file", path, false, keys, 4, &n, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "no key"));
    /* more keys than allowed */
    write_mode(path, HEX_A "\n" HEX_B "\n" HEX_C "\n", 0600);
    assert_int_equal(ibex_vault_read_key_file("master_key_previous_file", path, true, keys, 2, &n,
                                              err, sizeof(err)),
                     -1);
    unlink(path);
    /* missing file, a directory */
    assert_int_equal(
        ibex_vault_read_key_file("master_key_file", path, false, keys, 4, &n, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "cannot open"));
    char dir[] = "/tmp/ibex-unit-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    chmod(dir, 0700);
    assert_int_equal(
        ibex_vault_read_key_file("master_key_file", dir, false, keys, 4, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a regular file"));
    rmdir(dir);
}

static void test_vault_load(void **state)
{
    struct ibex_vault *v = (struct ibex_vault *)1;
    char err[600], path[64], prev[64];
    /* nothing configured: no vault, no error */
    struct ibex_vault_sources none = {NULL, "", "", NULL};
    assert_int_equal(ibex_vault_load(&none, &v, err, sizeof(err)), 0);
    assert_null(v);
    /* previous keys without a current one */
    struct ibex_vault_sources orphan = {NULL, NULL, HEX_B, NULL};
    assert_int_equal(ibex_vault_load(&orphan, &v, err, sizeof(err)), -1);
    assert_null(v);
    assert_non_null(strstr(err, "no current"));
    /* the environment */
    struct ibex_vault_sources env = {HEX_A, NULL, HEX_B ", " HEX_C, NULL};
    assert_int_equal(ibex_vault_load(&env, &v, err, sizeof(err)), 0);
    assert_non_null(v);
    assert_int_equal(ibex_vault_nkeys(v), 3);
    uint8_t a[IBEX_VAULT_KEY_LEN];
    char ia[IBEX_VAULT_KEY_ID_LEN + 1];
    key_from(HEX_A, a);
    ibex_vault_key_id_of(a, ia);
    assert_string_equal(ibex_vault_key_id(v), ia);
    ibex_vault_free(v);
    /* a bad env key: named, not quoted */
    struct ibex_vault_sources badenv = {"abcdefabcdefabcdefabcdef", NULL, NULL, NULL};
    assert_int_equal(ibex_vault_load(&badenv, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "IBEX_MASTER_KEY"));
    assert_null(strstr(err, "abcdefabcdef"));
    struct ibex_vault_sources badprev = {HEX_A, NULL, HEX_B ",nope", NULL};
    assert_int_equal(ibex_vault_load(&badprev, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "IBEX_MASTER_KEY_PREVIOUS"));
    /* the files */
    assert_int_equal(tu_write_temp("", path), 0);
    assert_int_equal(tu_write_temp("", prev), 0);
    write_mode(path, HEX_A, 0600);
    write_mode(prev, HEX_B "\n" HEX_A "\n", 0600);
    struct ibex_vault_sources files = {NULL, path, NULL, prev};
    assert_int_equal(ibex_vault_load(&files, &v, err, sizeof(err)), 0);
    assert_int_equal(ibex_vault_nkeys(v), 2); /* the current key again is dropped */
    assert_string_equal(ibex_vault_key_id(v), ia);
    ibex_vault_free(v);
    /* both the environment and a file: refused */
    struct ibex_vault_sources both = {HEX_A, path, NULL, NULL};
    assert_int_equal(ibex_vault_load(&both, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "both"));
    /* a world-readable key file stops it */
    write_mode(path, HEX_A, 0644);
    assert_int_equal(ibex_vault_load(&files, &v, err, sizeof(err)), -1);
    assert_null(v);
    assert_non_null(strstr(err, "chmod 600"));
    unlink(path);
    unlink(prev);
}

/* ---- AES-256-GCM ---- */

static void test_seal_open(void **state)
{
    struct ibex_vault *v = vault_of(HEX_A, NULL);
    const char *plain = "sk-live-0123456789abcdef";
    const char aad[] = "tenant\0id";
    struct ibex_sealed s1, s2;
    assert_int_equal(ibex_vault_seal(v, aad, sizeof(aad), plain, strlen(plain), &s1), 0);
    assert_int_equal(ibex_vault_seal(v, aad, sizeof(aad), plain, strlen(plain), &s2), 0);
    assert_int_equal(s1.ct_len, strlen(plain) + IBEX_VAULT_TAG_LEN);
    assert_string_equal(s1.key_id, ibex_vault_key_id(v));
    /* a fresh nonce per seal, so the same plaintext seals differently */
    assert_memory_not_equal(s1.nonce, s2.nonce, IBEX_VAULT_NONCE_LEN);
    assert_memory_not_equal(s1.ct, s2.ct, s1.ct_len);
    assert_false(contains(s1.ct, s1.ct_len, plain));
    assert_false(contains(s1.ct, s1.ct_len, "0123456789"));

    struct ibex_secret *out = NULL;
    assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct, s1.ct_len,
                                     aad, sizeof(aad), &out),
                     0);
    assert_int_equal(out->len, strlen(plain));
    assert_string_equal(out->p, plain);
    ibex_secret_release(out);

    /* another key: not held (its id differs) */
    struct ibex_vault *other = vault_of(HEX_B, NULL);
    assert_int_equal(ibex_vault_open(other, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct,
                                     s1.ct_len, aad, sizeof(aad), &out),
                     IBEX_EVAULT_NOKEY);
    assert_null(out);
    /* held as a previous key: opens */
    struct ibex_vault *rolled = vault_of(HEX_B, HEX_A);
    assert_int_equal(ibex_vault_open(rolled, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct,
                                     s1.ct_len, aad, sizeof(aad), &out),
                     0);
    assert_string_equal(out->p, plain);
    ibex_secret_release(out);
    /* the wrong key under the right key id (a row whose key_id was rewritten) */
    assert_int_equal(ibex_vault_open(other, ibex_vault_key_id(other), s1.nonce,
                                     IBEX_VAULT_NONCE_LEN, s1.ct, s1.ct_len, aad, sizeof(aad),
                                     &out),
                     IBEX_EVAULT_AUTH);

    /* every byte of ciphertext and tag, and of the nonce, is authenticated */
    uint8_t *ct = malloc(s1.ct_len);
    for (size_t i = 0; i < s1.ct_len; i++) {
        memcpy(ct, s1.ct, s1.ct_len);
        ct[i] ^= 0x01;
        assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, ct,
                                         s1.ct_len, aad, sizeof(aad), &out),
                         IBEX_EVAULT_AUTH);
        assert_null(out);
    }
    free(ct);
    for (size_t i = 0; i < IBEX_VAULT_NONCE_LEN; i++) {
        uint8_t nonce[IBEX_VAULT_NONCE_LEN];
        memcpy(nonce, s1.nonce, sizeof(nonce));
        nonce[i] ^= 0x80;
        assert_int_equal(ibex_vault_open(v, s1.key_id, nonce, IBEX_VAULT_NONCE_LEN, s1.ct,
                                         s1.ct_len, aad, sizeof(aad), &out),
                         IBEX_EVAULT_AUTH);
    }
    /* AAD: changed, shorter, absent */
    const char aad2[] = "tenant\0iD";
    assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct, s1.ct_len,
                                     aad2, sizeof(aad2), &out),
                     IBEX_EVAULT_AUTH);
    assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct, s1.ct_len,
                                     aad, sizeof(aad) - 1, &out),
                     IBEX_EVAULT_AUTH);
    assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct, s1.ct_len,
                                     NULL, 0, &out),
                     IBEX_EVAULT_AUTH);
    /* truncated, wrong nonce length, ciphertexts swapped between seals */
    assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, IBEX_VAULT_NONCE_LEN, s1.ct,
                                     s1.ct_len - 1, aad, sizeof(aad), &out),
                     IBEX_EVAULT_AUTH);
    assert_int_equal(
        ibex_vault_open(v, s1.key_id, s1.nonce, 8, s1.ct, s1.ct_len, aad, sizeof(aad), &out),
        IBEX_EVAULT_AUTH);
    assert_int_equal(ibex_vault_open(v, s1.key_id, s1.nonce, 4, s1.ct, 3, aad, sizeof(aad), &out),
                     IBEX_EVAULT_AUTH);
    assert_int_equal(ibex_vault_open(v, s1.key_id, s2.nonce, IBEX_VAULT_NONCE_LEN, s1.ct, s1.ct_len,
                                     aad, sizeof(aad), &out),
                     IBEX_EVAULT_AUTH);
    /* an empty plaintext is fine too */
    struct ibex_sealed e;
    assert_int_equal(ibex_vault_seal(v, NULL, 0, "", 0, &e), 0);
    assert_int_equal(
        ibex_vault_open(v, e.key_id, e.nonce, IBEX_VAULT_NONCE_LEN, e.ct, e.ct_len, NULL, 0, &out),
        0);
    assert_int_equal(out->len, 0);
    ibex_secret_release(out);
    ibex_sealed_dispose(&e);

    ibex_sealed_dispose(&s1);
    ibex_sealed_dispose(&s2);
    ibex_vault_free(v);
    ibex_vault_free(other);
    ibex_vault_free(rolled);
}

/* The AAD of a credential binds it to its tenant and id. */
static void test_credential_aad(void **state)
{
    struct ibex_vault *v = vault_of(HEX_A, NULL);
    const char *T = "11111111-1111-4111-8111-111111111111",
               *U = "22222222-2222-4222-8222-222222222222";
    const char *I = "33333333-3333-4333-8333-333333333333",
               *J = "44444444-4444-4444-8444-444444444444";
    struct ibex_sealed s;
    assert_int_equal(ibex_credential_seal(v, T, I, "sk-abcdefgh", 11, &s), 0);
    struct ibex_credential_row row = {T,    I,       1, s.key_id, s.nonce, IBEX_VAULT_NONCE_LEN,
                                      s.ct, s.ct_len};
    struct ibex_secret *out = NULL;
    assert_int_equal(ibex_credential_open(v, &row, &out), 0);
    assert_string_equal(out->p, "sk-abcdefgh");
    ibex_secret_release(out);
    row.tenant_id = U; /* copied to another tenant */
    assert_int_equal(ibex_credential_open(v, &row, &out), IBEX_EVAULT_AUTH);
    row.tenant_id = T, row.id = J; /* to another id */
    assert_int_equal(ibex_credential_open(v, &row, &out), IBEX_EVAULT_AUTH);
    row.tenant_id = I, row.id = T; /* tenant and id swapped */
    assert_int_equal(ibex_credential_open(v, &row, &out), IBEX_EVAULT_AUTH);
    assert_null(out);
    ibex_sealed_dispose(&s);
    ibex_vault_free(v);
}

static void test_secret_and_mac(void **state)
{
    struct ibex_secret *s = ibex_secret_new("abc", 3);
    assert_int_equal(s->len, 3);
    assert_string_equal(s->p, "abc");
    assert_ptr_equal(ibex_secret_retain(s), s);
    ibex_secret_release(s);
    assert_string_equal(s->p, "abc"); /* still one reference */
    ibex_secret_release(s);
    ibex_secret_release(NULL);

    struct ibex_vault *a = vault_of(HEX_A, NULL), *b = vault_of(HEX_B, NULL);
    uint8_t m1[32], m2[32], m3[32], m4[32];
    ibex_vault_mac(a, "label", "data", 4, m1);
    ibex_vault_mac(a, "label", "data", 4, m2);
    ibex_vault_mac(b, "label", "data", 4, m3);
    ibex_vault_mac(a, "label2", "data", 4, m4);
    assert_memory_equal(m1, m2, 32);
    assert_memory_not_equal(m1, m3, 32);
    assert_memory_not_equal(m1, m4, 32);
    ibex_vault_free(a);
    ibex_vault_free(b);
}

/* ---- the decrypt cache on its own ---- */

struct cache_racer {
    struct ibex_credential_cache *c;
    const struct ibex_vault *v;
    const struct ibex_credential_row *row;
    pthread_barrier_t *start;
    int bad;
};

static void *cache_race(void *data)
{
    struct cache_racer *r = data;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < 200; i++) {
        struct ibex_secret *s = NULL;
        if (ibex_credential_cache_get(r->c, r->v, r->row, &s) != 0 ||
            strcmp(s->p, "sk-race-secret") != 0)
            r->bad++;
        ibex_secret_release(s);
    }
    return NULL;
}

static void test_cache(void **state)
{
    struct ibex_vault *v = vault_of(HEX_A, NULL);
    const char *T = "11111111-1111-4111-8111-111111111111";
    const char *ids[3] = {"33333333-3333-4333-8333-333333333333",
                          "44444444-4444-4444-8444-444444444444",
                          "55555555-5555-4555-8555-555555555555"};
    struct ibex_sealed s[3];
    struct ibex_credential_row rows[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ibex_credential_seal(v, T, ids[i], "sk-race-secret", 14, &s[i]), 0);
        rows[i] = (struct ibex_credential_row){
            T, ids[i], 1, s[i].key_id, s[i].nonce, IBEX_VAULT_NONCE_LEN, s[i].ct, s[i].ct_len};
    }
    struct ibex_credential_cache *c = ibex_credential_cache_new(2);
    struct ibex_credential_cache_stats st;

    /* eight threads after the same row at once: one decryption */
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 8);
    struct cache_racer r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (struct cache_racer){c, v, &rows[0], &start, 0};
        assert_int_equal(pthread_create(&th[i], NULL, cache_race, &r[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].bad, 0);
    }
    pthread_barrier_destroy(&start);
    ibex_credential_cache_stats(c, &st);
    assert_int_equal(st.decrypts, 1);
    assert_int_equal(st.hits, 8 * 200 - 1);
    assert_int_equal(st.size, 1);

    /* a secret handed out outlives its eviction */
    struct ibex_secret *held = NULL;
    assert_int_equal(ibex_credential_cache_get(c, v, &rows[0], &held), 0);
    struct ibex_secret *tmp = NULL;
    assert_int_equal(ibex_credential_cache_get(c, v, &rows[1], &tmp), 0);
    ibex_secret_release(tmp);
    assert_int_equal(ibex_credential_cache_get(c, v, &rows[2], &tmp), 0); /* evicts rows[0] */
    ibex_secret_release(tmp);
    ibex_credential_cache_stats(c, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.size, 2);
    assert_string_equal(held->p, "sk-race-secret");
    ibex_secret_release(held);

    /* a new version decrypts again; the same version does not */
    struct ibex_credential_row v2 = rows[1];
    v2.version = 2;
    uint64_t before = st.decrypts;
    assert_int_equal(ibex_credential_cache_get(c, v, &v2, &tmp), 0);
    ibex_secret_release(tmp);
    assert_int_equal(ibex_credential_cache_get(c, v, &v2, &tmp), 0);
    ibex_secret_release(tmp);
    ibex_credential_cache_stats(c, &st);
    assert_int_equal(st.decrypts, before + 1);
    /* a row that does not open is not kept */
    struct ibex_credential_row bad = rows[2];
    bad.version = 9;
    bad.tenant_id = "22222222-2222-4222-8222-222222222222";
    assert_int_equal(ibex_credential_cache_get(c, v, &bad, &tmp), IBEX_EVAULT_AUTH);
    assert_null(tmp);
    ibex_credential_cache_stats(c, &st);
    assert_int_equal(st.failures, 1);
    /* dropped: the next read decrypts */
    ibex_credential_cache_drop(c, T, ids[1]);
    before = st.decrypts;
    assert_int_equal(ibex_credential_cache_get(c, v, &v2, &tmp), 0);
    ibex_secret_release(tmp);
    ibex_credential_cache_stats(c, &st);
    assert_int_equal(st.decrypts, before + 1);

    ibex_credential_cache_free(c);
    ibex_credential_cache_free(NULL);
    for (int i = 0; i < 3; i++)
        ibex_sealed_dispose(&s[i]);
    ibex_vault_free(v);
}

static void test_query_parse(void **state)
{
    struct ibex_credentials_query q;
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from(""), &q, &r), 0);
    assert_int_equal(q.page, 1);
    assert_int_equal(q.page_size, 20);
    assert_string_equal(q.provider, "");
    assert_string_equal(q.state, "");
    assert_int_equal(
        ibex_credentials_query_parse(
            ibex_str_from("page=2&page_size=5&provider=open%20ai&state=inactive"), &q, &r),
        0);
    assert_int_equal(q.page, 2);
    assert_int_equal(q.page_size, 5);
    assert_string_equal(q.provider, "open ai");
    assert_string_equal(q.state, "inactive");
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from("state=gone"), &q, &r), 400);
    assert_string_equal(r.param, "state");
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from("provider="), &q, &r), 400);
    char longp[200] = "provider=";
    memset(longp + 9, 'p', 65);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from(longp), &q, &r), 400);
    ibex_api_result_dispose(&r);
}

/* ---- the API on a store ---- */

static void test_create_get_list(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor alice = actor(T, "alice", USER);
    struct res x;
    res_init(&x);
    expect(&x,
           cred_create(f, &e, &alice,
                       "{\"provider\":\"openai\",\"name\":\"my key\",\"secret\":\"sk-alice-"
                       "0000wxyz\"}",
                       &x),
           201, NULL, "create");
    const char *keys[] = {"id",         "object",     "tenant_id",    "scope",      "subject",
                          "provider",   "name",       "secret_last4", "is_default", "state",
                          "created_at", "updated_at", "deleted_at"};
    assert_int_equal(json_object_object_length(x.j), sizeof(keys) / sizeof(keys[0]));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        jget(x.j, keys[i]);
    assert_string_equal(jstr(x.j, "object"), "credential");
    assert_string_equal(jstr(x.j, "tenant_id"), T);
    assert_string_equal(jstr(x.j, "scope"), "user");
    assert_string_equal(jstr(x.j, "subject"), "alice");
    assert_string_equal(jstr(x.j, "provider"), "openai");
    assert_string_equal(jstr(x.j, "name"), "my key");
    assert_string_equal(jstr(x.j, "secret_last4"), "wxyz");
    assert_false(json_object_get_boolean(jget(x.j, "is_default")));
    assert_string_equal(jstr(x.j, "state"), "active");
    assert_true(llabs(jint(x.j, "created_at") - now_s()) < 5);
    assert_true(jis_null(x.j, "deleted_at"));
    assert_false(contains(x.out.p, x.out.len, "sk-alice"));
    char A[ID_BUF];
    snprintf(A, sizeof(A), "%s", jstr(x.j, "id"));
    /* GET answers the same object */
    json_object *g = cred_json(f, &alice, A);
    assert_true(json_object_equal(g, x.j));
    json_object_put(g);
    res_reset(&x);

    /* tenant-wide ones, by a credentials admin */
    struct ibex_actor admin = actor(T, "boss", CADMIN);
    char W1[ID_BUF], W2[ID_BUF], B[ID_BUF];
    cred_new(f, &e, &admin, "anthropic", "sk-ant-tenant-1111", true, W1);
    sleep_ms(3);
    cred_new(f, &e, &admin, "openai", "sk-oai-tenant-2222", true, W2);
    sleep_ms(3);
    cred_new(f, &e, &admin, "gemini", "AIza-boss-own-3333", false, B);
    json_object *w = cred_json(f, &admin, W1);
    assert_string_equal(jstr(w, "scope"), "tenant");
    assert_true(jis_null(w, "subject"));
    assert_string_equal(jstr(w, "secret_last4"), "1111");
    json_object_put(w);

    /* lists: alice sees hers; the admin its own and the tenant-wide ones, newest first */
    struct ibex_credentials_query q;
    struct ibex_api_result pr;
    ibex_api_result_init(&pr);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from(""), &q, &pr), 0);
    expect(&x, ibex_credentials_list(f->st, &alice, &q, &x.out, &x.r), 200, NULL, "alice list");
    json_object *arr = jget(x.j, "credentials");
    assert_int_equal(json_object_array_length(arr), 1);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 0), "id"), A);
    assert_int_equal(jint(x.j, "total"), 1);
    res_reset(&x);
    expect(&x, ibex_credentials_list(f->st, &admin, &q, &x.out, &x.r), 200, NULL, "admin list");
    arr = jget(x.j, "credentials");
    assert_int_equal(json_object_array_length(arr), 3);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 0), "id"), B);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 1), "id"), W2);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 2), "id"), W1);
    assert_false(contains(x.out.p, x.out.len, "sk-"));
    res_reset(&x);
    /* filters and pages */
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from("provider=openai"), &q, &pr), 0);
    expect(&x, ibex_credentials_list(f->st, &admin, &q, &x.out, &x.r), 200, NULL, "by provider");
    arr = jget(x.j, "credentials");
    assert_int_equal(json_object_array_length(arr), 1);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 0), "id"), W2);
    res_reset(&x);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from("page=2&page_size=2"), &q, &pr), 0);
    expect(&x, ibex_credentials_list(f->st, &admin, &q, &x.out, &x.r), 200, NULL, "page 2");
    arr = jget(x.j, "credentials");
    assert_int_equal(json_object_array_length(arr), 1);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 0), "id"), W1);
    assert_int_equal(jint(x.j, "total"), 3);
    res_reset(&x);
    /* deleted ones only when asked for */
    cred_set(f, &e, &admin, W1, "{\"state\":\"inactive\"}");
    cred_delete(f, &e, &admin, W2);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from(""), &q, &pr), 0);
    expect(&x, ibex_credentials_list(f->st, &admin, &q, &x.out, &x.r), 200, NULL, "no deleted");
    assert_int_equal(jint(x.j, "total"), 2);
    res_reset(&x);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from("state=deleted"), &q, &pr), 0);
    expect(&x, ibex_credentials_list(f->st, &admin, &q, &x.out, &x.r), 200, NULL, "deleted");
    arr = jget(x.j, "credentials");
    assert_int_equal(json_object_array_length(arr), 1);
    assert_string_equal(jstr(json_object_array_get_idx(arr, 0), "id"), W2);
    res_reset(&x);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from("state=inactive"), &q, &pr), 0);
    expect(&x, ibex_credentials_list(f->st, &admin, &q, &x.out, &x.r), 200, NULL, "inactive");
    assert_int_equal(jint(x.j, "total"), 1);
    res_dispose(&x);
    ibex_api_result_dispose(&pr);
    /* a credential needs a tenant */
    struct ibex_actor op = operator_actor();
    res_init(&x);
    expect(&x, ibex_credentials_list(f->st, &op, &q, &x.out, &x.r), 400, "VALIDATION_ERROR",
           "operator");
    res_dispose(&x);
    env_dispose(&e);
}

static void test_update_delete(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], A[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor alice = actor(T, "alice", USER);
    cred_new(f, &e, &alice, "openai", "sk-first-secret-aaaa", false, A);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-first-secret-aaaa",
                   "before");

    struct res x;
    res_init(&x);
    expect(&x, cred_put(f, &e, &alice, A, "{\"name\":\"renamed\"}", &x), 200, NULL, "rename");
    assert_string_equal(jstr(x.j, "name"), "renamed");
    assert_string_equal(jstr(x.j, "secret_last4"), "aaaa");
    res_reset(&x);
    expect(&x, cred_put(f, &e, &alice, A, "{\"secret\":\"sk-second-secret-bbbb\"}", &x), 200, NULL,
           "new secret");
    assert_string_equal(jstr(x.j, "secret_last4"), "bbbb");
    assert_string_equal(jstr(x.j, "name"), "renamed");
    assert_false(contains(x.out.p, x.out.len, "second"));
    res_reset(&x);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-second-secret-bbbb",
                   "new secret resolves");
    expect(&x, cred_put(f, &e, &alice, A, "{\"state\":\"inactive\",\"name\":\"off\"}", &x), 200,
           NULL, "inactive");
    assert_string_equal(jstr(x.j, "state"), "inactive");
    assert_string_equal(jstr(x.j, "name"), "off");
    res_reset(&x);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL, "inactive");
    cred_set(f, &e, &alice, A, "{\"state\":\"active\"}");
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-second-secret-bbbb",
                   "active again");
    /* version: +1 per change */
    assert_int_equal(sql_int(f, "SELECT version FROM credentials WHERE id = $1", A, NULL), 5);

    /* validation of PUT */
    expect(&x, cred_put(f, &e, &alice, A, "{}", &x), 400, "VALIDATION_ERROR", "nothing");
    res_reset(&x);
    expect_field(&x, cred_put(f, &e, &alice, A, "{\"state\":\"deleted\"}", &x), "state",
                 "state deleted");
    res_reset(&x);
    expect_field(&x, cred_put(f, &e, &alice, A, "{\"secret\":\"short\"}", &x), "secret",
                 "short secret");
    res_reset(&x);
    expect_field(&x, cred_put(f, &e, &alice, A, "{\"name\":\"\"}", &x), "name", "empty name");
    res_reset(&x);
    expect_field(&x, cred_put(f, &e, &alice, A, "{\"name\":5}", &x), "name", "number name");
    res_reset(&x);
    expect_field(&x, cred_put(f, &e, &alice, "nope", "{\"name\":\"x\"}", &x), "id", "bad id");
    res_reset(&x);
    expect(&x, cred_put(f, &e, &alice, UNKNOWN_ID, "{\"name\":\"x\"}", &x), 404,
           "CREDENTIAL_NOT_FOUND", "unknown");
    res_reset(&x);

    /* delete: state deleted, the ciphertext gone, not chosen; again: the same answer */
    expect(&x, ibex_credentials_delete(f->st, &e.e, &alice, A, &x.out, &x.r), 200, NULL, "delete");
    assert_string_equal(jstr(x.j, "state"), "deleted");
    assert_true(llabs(jint(x.j, "deleted_at") - now_s()) < 5);
    json_object *first = json_object_get(x.j);
    res_reset(&x);
    assert_int_equal(
        sql_int(f,
                "SELECT count(*) FROM credentials WHERE id = $1 AND ciphertext IS NULL "
                "AND nonce IS NULL AND key_id IS NULL",
                A, NULL),
        1);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL, "deleted");
    int64_t events = sql_int(f, audit_actions_sql, T, "credential.deleted");
    expect(&x, ibex_credentials_delete(f->st, &e.e, &alice, A, &x.out, &x.r), 200, NULL, "again");
    assert_true(json_object_equal(first, x.j));
    assert_int_equal(sql_int(f, audit_actions_sql, T, "credential.deleted"), events);
    json_object_put(first);
    res_reset(&x);
    /* a deleted credential does not change any more */
    expect(&x, cred_put(f, &e, &alice, A, "{\"state\":\"active\"}", &x), 409,
           "CREDENTIAL_NOT_ACTIVE", "revive");
    res_reset(&x);
    expect(&x, cred_put(f, &e, &alice, A, "{\"secret\":\"sk-third-secret-cccc\"}", &x), 409,
           "CREDENTIAL_NOT_ACTIVE", "new secret for a deleted one");
    res_reset(&x);
    expect(&x, ibex_credentials_make_default(f->st, &alice, A, &x.out, &x.r), 409,
           "CREDENTIAL_NOT_ACTIVE", "default a deleted one");
    res_dispose(&x);
    /* GET still shows it */
    json_object *g = cred_json(f, &alice, A);
    assert_string_equal(jstr(g, "state"), "deleted");
    assert_string_equal(jstr(g, "secret_last4"), "bbbb");
    json_object_put(g);
    env_dispose(&e);
}

static void test_create_validation(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor alice = actor(T, "alice", USER);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"name\":\"n\",\"secret\":\"sk-12345678\"}", "provider"},
        {"{\"provider\":\"\",\"name\":\"n\",\"secret\":\"sk-12345678\"}", "provider"},
        {"{\"provider\":7,\"name\":\"n\",\"secret\":\"sk-12345678\"}", "provider"},
        {"{\"provider\":\"openai\",\"secret\":\"sk-12345678\"}", "name"},
        {"{\"provider\":\"openai\",\"name\":\"\",\"secret\":\"sk-12345678\"}", "name"},
        {"{\"provider\":\"openai\",\"name\":\"n\"}", "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":null}", "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-1234\"}", "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-1234 5678\"}", "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-1234\\r\\nX-Evil: 1\"}",
         "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\\u00e9\"}", "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\\u0000\\r\\nX: 1\"}",
         "secret"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\",\"scope\":\"all\"}",
         "scope"},
        {"{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\",\"scope\":1}",
         "scope"},
    };
    struct res x;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        res_init(&x);
        expect_field(&x, cred_create(f, &e, &alice, bad[i].body, &x), bad[i].field, bad[i].body);
        /* never echoes the secret */
        assert_null(strstr(x.r.message, "sk-12"));
        assert_false(contains(x.r.field_errors.p, x.r.field_errors.len, "sk-12"));
        res_dispose(&x);
    }
    /* sizes */
    char *big = malloc(IBEX_CREDENTIAL_SECRET_MAX + 200);
    memset(big, 'k', IBEX_CREDENTIAL_SECRET_MAX + 100);
    big[IBEX_CREDENTIAL_SECRET_MAX] = '\0';
    char *body = malloc(IBEX_CREDENTIAL_SECRET_MAX + 300);
    snprintf(body, IBEX_CREDENTIAL_SECRET_MAX + 300,
             "{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"%s\"}", big);
    res_init(&x);
    expect(&x, cred_create(f, &e, &alice, body, &x), 201, NULL, "4096 bytes");
    res_dispose(&x);
    big[IBEX_CREDENTIAL_SECRET_MAX] = 'k';
    big[IBEX_CREDENTIAL_SECRET_MAX + 1] = '\0';
    snprintf(body, IBEX_CREDENTIAL_SECRET_MAX + 300,
             "{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"%s\"}", big);
    res_init(&x);
    expect_field(&x, cred_create(f, &e, &alice, body, &x), "secret", "4097 bytes");
    res_dispose(&x);
    free(big);
    free(body);
    char name[300];
    memset(name, 'n', 201);
    name[201] = '\0';
    char nb[512];
    snprintf(nb, sizeof(nb), "{\"provider\":\"openai\",\"name\":\"%s\",\"secret\":\"sk-12345678\"}",
             name);
    res_init(&x);
    expect_field(&x, cred_create(f, &e, &alice, nb, &x), "name", "201-byte name");
    res_dispose(&x);
    /* the body must be an object */
    json_object *arr = json_tokener_parse("[1]");
    res_init(&x);
    expect(&x, ibex_credentials_create(f->st, &e.e, &alice, arr, &x.out, &x.r), 400,
           "VALIDATION_ERROR", "array body");
    json_object_put(arr);
    res_dispose(&x);
    res_init(&x);
    expect_field(&x, ibex_credentials_create(f->st, &e.e, &alice, NULL, &x.out, &x.r), "provider",
                 "no body");
    res_dispose(&x);

    /* providers: not configured, or one that takes no credential */
    res_init(&x);
    expect(&x,
           cred_create(f, &e, &alice,
                       "{\"provider\":\"azure\",\"name\":\"n\",\"secret\":\"sk-12345678\"}", &x),
           422, "PROVIDER_NOT_CONFIGURED", "unknown provider");
    assert_string_equal(x.r.param, "provider");
    res_reset(&x);
    expect(&x,
           cred_create(f, &e, &alice,
                       "{\"provider\":\"mock\",\"name\":\"n\",\"secret\":\"sk-12345678\"}", &x),
           422, "PROVIDER_NOT_CONFIGURED", "mock");
    res_reset(&x);
    /* tenant-wide needs credentials:admin */
    expect(&x,
           cred_create(f, &e, &alice,
                       "{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\","
                       "\"scope\":\"tenant\"}",
                       &x),
           403, "INSUFFICIENT_SCOPE", "tenant scope without admin");
    res_reset(&x);
    struct ibex_actor full = actor(T, "root", IBEX_SCOPE_ADMIN);
    expect(&x,
           cred_create(f, &e, &full,
                       "{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\","
                       "\"scope\":\"tenant\"}",
                       &x),
           201, NULL, "admin implies credentials:admin");
    res_reset(&x);
    expect(&x,
           cred_create(f, &e, &alice,
                       "{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-12345678\","
                       "\"scope\":\"user\"}",
                       &x),
           201, NULL, "scope user");
    res_dispose(&x);
    /* refusals stored nothing */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM credentials WHERE tenant_id = $1", T, NULL),
                     3);
    env_dispose(&e);
}

static void test_disabled(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, NULL);
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor a = actor(T, "alice", CADMIN);
    struct res x;
    res_init(&x);
    expect(&x,
           cred_create(f, &e, &a,
                       "{\"provider\":\"openai\",\"name\":\"n\",\"secret\":\"sk-123456789\"}", &x),
           503, "CREDENTIALS_DISABLED", "create");
    assert_non_null(strstr(x.r.message, "IBEX_MASTER_KEY"));
    res_reset(&x);
    expect(&x, cred_put(f, &e, &a, UNKNOWN_ID, "{\"name\":\"x\"}", &x), 503, "CREDENTIALS_DISABLED",
           "update");
    res_reset(&x);
    struct ibex_credential_probe p = {0};
    expect(&x, ibex_credentials_validate_prepare(f->st, &e.e, &a, UNKNOWN_ID, &p, &x.r), 503,
           "CREDENTIALS_DISABLED", "validate");
    assert_false(p.ready);
    res_dispose(&x);
    env_dispose(&e);
}

/* The plaintext is in no column of any table the API wrote, and (SQLite) nowhere in the
 * database files. */
static int row_scan(void *data, const struct ibex_store_value *c, size_t n)
{
    const char *const *needles = data;
    for (size_t i = 0; i < n; i++)
        for (const char *const *s = needles; *s; s++)
            if ((c[i].type == IBEX_STORE_TEXT || c[i].type == IBEX_STORE_BLOB) &&
                contains(c[i].p, c[i].len, *s))
                fail_msg("column %zu holds the secret %.6s...", i, *s);
    return 0;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return false;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = fread(buf, 1, n > 0 ? (size_t)n : 0, fp);
    fclose(fp);
    bool found = contains(buf, got, needle);
    free(buf);
    return found;
}

static void test_at_rest(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], A[ID_BUF], W[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor admin = actor(T, "boss", CADMIN);
    const char *s1 = "sk-PLAINTEXT-NEEDLE-one-9f8e7d";
    const char *s2 = "sk-PLAINTEXT-NEEDLE-two-1a2b3c";
    const char *s3 = "sk-PLAINTEXT-NEEDLE-three-456";
    cred_new(f, &e, &admin, "openai", s1, false, A);
    cred_new(f, &e, &admin, "openai", s2, true, W);
    cred_default(f, &admin, W);
    char body[128];
    snprintf(body, sizeof(body), "{\"secret\":\"%s\"}", s3);
    cred_set(f, &e, &admin, A, body);
    /* a validation leaves an audit event too */
    struct res x;
    res_init(&x);
    struct ibex_credential_probe p = {0};
    expect_prepared(&x, ibex_credentials_validate_prepare(f->st, &e.e, &admin, W, &p, &x.r),
                    "prepare");
    assert_true(p.ready);
    p.status = 401;
    res_reset(&x);
    expect(&x, ibex_credentials_validate_finish(f->st, &admin, &p, &x.out, &x.r), 200, NULL,
           "finish");
    ibex_credential_probe_dispose(&p);
    res_dispose(&x);

    /* the needle's distinctive middle, in case a column kept a part of it */
    const char *needles[] = {s1, s2, s3, "PLAINTEXT-NEEDLE", NULL};
    static const char *const tables[] = {"credentials", "audit_events", "idempotency_keys",
                                         "tenants"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT * FROM %s", tables[i]);
        tu_store_must(f->st, ibex_store_exec(f->st, sql, NULL, 0, row_scan, (void *)needles));
    }
    /* last4 is all that is kept in the clear */
    assert_int_equal(
        sql_int(f, "SELECT count(*) FROM credentials WHERE id = $1 AND last4 = '-456'", A, NULL),
        1);
    if (!f->pg) {
        char p2[600];
        for (int k = 0; k < 3; k++) {
            snprintf(p2, sizeof(p2), "%s%s", f->path, k == 0 ? "" : k == 1 ? "-wal" : "-shm");
            for (const char *const *s = needles; *s; s++)
                if (file_contains(p2, *s))
                    fail_msg("%s holds the plaintext %.12s", p2, *s);
        }
        /* and the ciphertext is there indeed */
        assert_true(sql_int(f, "SELECT length(ciphertext) FROM credentials WHERE id = $1", A,
                            NULL) == (int64_t)strlen(s3) + IBEX_VAULT_TAG_LEN);
    }
    env_dispose(&e);
}

static void test_defaults(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], U[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor admin = actor(T, "boss", CADMIN), alice = actor(T, "alice", USER);
    struct ibex_actor uadmin = actor(U, "boss", CADMIN);
    char W1[ID_BUF], W2[ID_BUF], W3[ID_BUF], G[ID_BUF], A1[ID_BUF], A2[ID_BUF], UW[ID_BUF];
    cred_new(f, &e, &admin, "openai", "sk-tenant-one-1111", true, W1);
    cred_new(f, &e, &admin, "openai", "sk-tenant-two-2222", true, W2);
    cred_new(f, &e, &admin, "openai", "sk-tenant-three-3333", true, W3);
    cred_new(f, &e, &admin, "gemini", "AIza-tenant-gemini-4444", true, G);
    cred_new(f, &e, &alice, "openai", "sk-alice-one-aaaa", false, A1);
    cred_new(f, &e, &alice, "openai", "sk-alice-two-bbbb", false, A2);
    cred_new(f, &e, &uadmin, "openai", "sk-other-tenant-uuuu", true, UW);

    const char *count_sql = "SELECT count(*) FROM credentials WHERE tenant_id = $1 AND provider = "
                            "$2 AND subject IS NULL AND is_default = 1";
    cred_default(f, &admin, W1);
    cred_default(f, &admin, G);
    cred_default(f, &uadmin, UW);
    assert_int_equal(sql_int(f, count_sql, T, "openai"), 1);
    cred_default(f, &admin, W2); /* moves the default */
    assert_int_equal(sql_int(f, count_sql, T, "openai"), 1);
    json_object *j = cred_json(f, &admin, W1);
    assert_false(json_object_get_boolean(jget(j, "is_default")));
    json_object_put(j);
    j = cred_json(f, &admin, G); /* another provider keeps its own */
    assert_true(json_object_get_boolean(jget(j, "is_default")));
    json_object_put(j);
    j = cred_json(f, &uadmin, UW); /* another tenant keeps its own */
    assert_true(json_object_get_boolean(jget(j, "is_default")));
    json_object_put(j);
    cred_default(f, &admin, W2); /* again: nothing changes */
    assert_int_equal(sql_int(f, count_sql, T, "openai"), 1);
    /* a subject's own default is apart from the tenant's */
    cred_default(f, &alice, A1);
    cred_default(f, &alice, A2);
    assert_int_equal(
        sql_int(f,
                "SELECT count(*) FROM credentials WHERE tenant_id = $1 AND subject = $2 "
                "AND is_default = 1",
                T, "alice"),
        1);
    assert_int_equal(sql_int(f, count_sql, T, "openai"), 1);
    /* only an active credential */
    cred_set(f, &e, &admin, W3, "{\"state\":\"inactive\"}");
    struct res x;
    res_init(&x);
    expect(&x, ibex_credentials_make_default(f->st, &admin, W3, &x.out, &x.r), 409,
           "CREDENTIAL_NOT_ACTIVE", "inactive");
    assert_non_null(strstr(x.r.message, "inactive"));
    res_reset(&x);
    expect_field(&x, ibex_credentials_make_default(f->st, &admin, "x", &x.out, &x.r), "id",
                 "bad id");
    res_reset(&x);
    expect(&x, ibex_credentials_make_default(f->st, &admin, UNKNOWN_ID, &x.out, &x.r), 404,
           "CREDENTIAL_NOT_FOUND", "unknown");
    res_dispose(&x);
    /* the store refuses a second default itself */
    struct ibex_store_value p[] = {ibex_store_text(W1)};
    int rc = ibex_store_exec(f->st, "UPDATE credentials SET is_default = 1 WHERE id = $1", p, 1,
                             NULL, NULL);
    assert_int_equal(rc, IBEX_EDB);
    /* a deleted default is no default: another may take its place */
    cred_delete(f, &e, &admin, W2);
    assert_int_equal(sql_int(f, count_sql, T, "openai"), 0);
    cred_default(f, &admin, W1);
    assert_int_equal(sql_int(f, count_sql, T, "openai"), 1);
    assert_int_equal(sql_int(f, audit_actions_sql, T, "credential.defaulted"), 6);
    env_dispose(&e);
}

/* Two handles making two credentials the default at once: both succeed, one after the other,
 * and exactly one default is left (the siblings are locked before the change). */
struct default_change {
    const char *tenant, *id;
};

static int make_default(struct ibex_store *st, void *arg, struct ibex_buf *out,
                        struct ibex_api_result *r)
{
    struct default_change *d = arg;
    struct ibex_actor a = actor(d->tenant, "boss", CADMIN);
    return ibex_credentials_make_default(st, &a, d->id, out, r);
}

static void test_default_race(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor admin = actor(T, "boss", CADMIN);
    for (int round = 0; round < 6; round++) {
        char X[ID_BUF], Y[ID_BUF];
        const char *provider = round % 2 ? "anthropic" : "openai";
        cred_new(f, &e, &admin, provider, "sk-race-xxxxxxxx", true, X);
        cred_new(f, &e, &admin, provider, "sk-race-yyyyyyyy", true, Y);
        struct default_change d[2] = {{T, X}, {T, Y}};
        struct race_side w[2] = {{.call = make_default, .arg = &d[0]},
                                 {.call = make_default, .arg = &d[1]}};
        race_two(f, w);
        if (w[0].status != 200 || w[1].status != 200)
            fail_msg("round %d: %d %s / %d %s", round, w[0].status, w[0].code, w[1].status,
                     w[1].code);
        assert_int_equal(sql_int(f,
                                 "SELECT count(*) FROM credentials WHERE tenant_id = $1 AND "
                                 "provider = $2 AND subject IS NULL AND is_default = 1",
                                 T, provider),
                         1);
    }
    env_dispose(&e);
}

/* An update (to inactive) or a delete of one credential, as one side of a race. */
struct change {
    struct env *e;
    const char *tenant, *id;
    bool delete;
};

static int change_credential(struct ibex_store *st, void *arg, struct ibex_buf *out,
                             struct ibex_api_result *r)
{
    struct change *c = arg;
    struct ibex_actor a = actor(c->tenant, "boss", CADMIN);
    if (c->delete)
        return ibex_credentials_delete(st, &c->e->e, &a, c->id, out, r);
    json_object *b = json_tokener_parse("{\"state\":\"inactive\"}");
    int rc = ibex_credentials_update(st, &c->e->e, &a, c->id, b, out, r);
    json_object_put(b);
    return rc;
}

/* A credential updated and deleted at once by two handles: the delete always sticks (state
 * deleted, the ciphertext erased), whichever call came first; the update either went first
 * (200) or found the credential deleted (409 CREDENTIAL_NOT_ACTIVE). Each change locks the row
 * before it reads it. */
static void test_update_delete_race(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor admin = actor(T, "boss", CADMIN);
    for (int round = 0; round < 40; round++) {
        char X[ID_BUF];
        cred_new(f, &e, &admin, "openai", "sk-race-xxxxxxxx", true, X);
        struct change c[2] = {{&e, T, X, false}, {&e, T, X, true}};
        struct race_side w[2] = {{.call = change_credential, .arg = &c[0]},
                                 {.call = change_credential, .arg = &c[1]}};
        race_two(f, w);
        if (w[1].status != 200 ||
            (w[0].status != 200 &&
             (w[0].status != 409 || strcmp(w[0].code, "CREDENTIAL_NOT_ACTIVE") != 0)))
            fail_msg("round %d: update %d %s, delete %d %s", round, w[0].status, w[0].code,
                     w[1].status, w[1].code);
        assert_int_equal(sql_int(f,
                                 "SELECT count(*) FROM credentials WHERE id = $1 AND state = "
                                 "'deleted' AND ciphertext IS NULL",
                                 X, NULL),
                         1);
    }
    env_dispose(&e);
}

/* Another tenant's credential, another subject's own, and (without credentials:admin) a
 * tenant-wide one answer exactly like an id that does not exist, on every operation. */
static void test_isolation(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], U[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor alice = actor(T, "alice", USER), bob = actor(T, "bob", USER);
    struct ibex_actor tadmin = actor(T, "boss", CADMIN), uadmin = actor(U, "boss", CADMIN);
    struct ibex_actor ualice = actor(U, "alice", USER); /* the same subject in another tenant */
    char A[ID_BUF], W[ID_BUF], UW[ID_BUF];
    cred_new(f, &e, &alice, "openai", "sk-alice-secret-1234", false, A);
    cred_new(f, &e, &tadmin, "openai", "sk-tenant-secret-5678", true, W);
    cred_new(f, &e, &uadmin, "openai", "sk-utenant-secret-9999", true, UW);

    struct {
        const struct ibex_actor *who;
        const char *id;
        const char *what;
    } hidden[] = {
        {&bob, A, "bob on alice's"},       {&tadmin, A, "an admin on alice's own"},
        {&ualice, A, "alice of U on T's"}, {&uadmin, A, "U's admin on T's alice"},
        {&uadmin, W, "U's admin on T's"},  {&alice, W, "a user on the tenant's"},
        {&tadmin, UW, "T's admin on U's"}, {&alice, UW, "alice on U's"},
    };
    int64_t foreign_before = sql_int(
        f, "SELECT count(*) FROM audit_events WHERE tenant_id IS NULL AND action = 'access.denied'",
        NULL, NULL);
    int64_t foreign = 0;
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
        const struct ibex_actor *a = hidden[i].who;
        bool other_tenant = strcmp(a->tenant_id, T) == 0 ? strcmp(hidden[i].id, UW) == 0
                                                         : strcmp(hidden[i].id, UW) != 0;
        foreign += other_tenant ? 5 : 0;
        struct res got, want;
        /* get */
        res_init(&got);
        res_init(&want);
        expect(&got, ibex_credentials_get(f->st, a, hidden[i].id, &got.out, &got.r), 404,
               "CREDENTIAL_NOT_FOUND", hidden[i].what);
        expect(&want, ibex_credentials_get(f->st, a, UNKNOWN_ID, &want.out, &want.r), 404,
               "CREDENTIAL_NOT_FOUND", "unknown");
        expect_same_error(&got, &want, hidden[i].what);
        res_dispose(&got);
        res_dispose(&want);
        /* put */
        res_init(&got);
        res_init(&want);
        expect(&got, cred_put(f, &e, a, hidden[i].id, "{\"name\":\"mine now\"}", &got), 404,
               "CREDENTIAL_NOT_FOUND", hidden[i].what);
        expect(&want, cred_put(f, &e, a, UNKNOWN_ID, "{\"name\":\"mine now\"}", &want), 404,
               "CREDENTIAL_NOT_FOUND", "unknown");
        expect_same_error(&got, &want, hidden[i].what);
        res_dispose(&got);
        res_dispose(&want);
        /* delete */
        res_init(&got);
        res_init(&want);
        expect(&got, ibex_credentials_delete(f->st, &e.e, a, hidden[i].id, &got.out, &got.r), 404,
               "CREDENTIAL_NOT_FOUND", hidden[i].what);
        expect(&want, ibex_credentials_delete(f->st, &e.e, a, UNKNOWN_ID, &want.out, &want.r), 404,
               "CREDENTIAL_NOT_FOUND", "unknown");
        expect_same_error(&got, &want, hidden[i].what);
        res_dispose(&got);
        res_dispose(&want);
        /* default */
        res_init(&got);
        res_init(&want);
        expect(&got, ibex_credentials_make_default(f->st, a, hidden[i].id, &got.out, &got.r), 404,
               "CREDENTIAL_NOT_FOUND", hidden[i].what);
        expect(&want, ibex_credentials_make_default(f->st, a, UNKNOWN_ID, &want.out, &want.r), 404,
               "CREDENTIAL_NOT_FOUND", "unknown");
        expect_same_error(&got, &want, hidden[i].what);
        res_dispose(&got);
        res_dispose(&want);
        /* validate */
        struct ibex_credential_probe p = {0};
        res_init(&got);
        res_init(&want);
        expect(&got, ibex_credentials_validate_prepare(f->st, &e.e, a, hidden[i].id, &p, &got.r),
               404, "CREDENTIAL_NOT_FOUND", hidden[i].what);
        assert_false(p.ready);
        assert_null(p.auth);
        expect(&want, ibex_credentials_validate_prepare(f->st, &e.e, a, UNKNOWN_ID, &p, &want.r),
               404, "CREDENTIAL_NOT_FOUND", "unknown");
        expect_same_error(&got, &want, hidden[i].what);
        res_dispose(&got);
        res_dispose(&want);
    }
    /* nothing changed */
    json_object *j = cred_json(f, &alice, A);
    assert_string_equal(jstr(j, "name"), "n-openai");
    assert_string_equal(jstr(j, "state"), "active");
    json_object_put(j);
    j = cred_json(f, &tadmin, W);
    assert_false(json_object_get_boolean(jget(j, "is_default")));
    json_object_put(j);
    /* attempts across tenants went to the operator's trail only */
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE tenant_id IS NULL AND action "
                             "= 'access.denied'",
                             NULL, NULL) -
                         foreign_before,
                     foreign);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action "
                             "= 'access.denied'",
                             T, NULL),
                     0);
    /* lists: each its own */
    struct ibex_credentials_query q;
    struct ibex_api_result pr;
    ibex_api_result_init(&pr);
    assert_int_equal(ibex_credentials_query_parse(ibex_str_from(""), &q, &pr), 0);
    ibex_api_result_dispose(&pr);
    const struct {
        const struct ibex_actor *who;
        const char *ids[2];
        size_t n;
    } lists[] = {{&alice, {A}, 1},
                 {&bob, {NULL}, 0},
                 {&tadmin, {W}, 1},
                 {&ualice, {NULL}, 0},
                 {&uadmin, {UW}, 1}};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        struct res x;
        res_init(&x);
        expect(&x, ibex_credentials_list(f->st, lists[i].who, &q, &x.out, &x.r), 200, NULL, "list");
        json_object *arr = jget(x.j, "credentials");
        assert_int_equal(json_object_array_length(arr), lists[i].n);
        for (size_t k = 0; k < lists[i].n; k++)
            assert_string_equal(jstr(json_object_array_get_idx(arr, k), "id"), lists[i].ids[k]);
        res_dispose(&x);
    }
    /* resolution never crosses tenants or subjects */
    expect_resolve(f, &e, T, "bob", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL, "bob");
    expect_resolve(f, &e, U, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL, "U alice");
    env_dispose(&e);
}

static void test_resolve(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], U[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor admin = actor(T, "boss", CADMIN), alice = actor(T, "alice", USER);
    struct ibex_actor uadmin = actor(U, "boss", CADMIN);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL, "nothing yet");

    /* a tenant-wide credential that is not the default is not used */
    char W1[ID_BUF], W2[ID_BUF], UW[ID_BUF];
    cred_new(f, &e, &admin, "openai", "sk-tenant-one-1111", true, W1);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL, "no default");
    cred_default(f, &admin, W1);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_TENANT, W1, "sk-tenant-one-1111",
                   "the tenant default");
    expect_resolve(f, &e, T, NULL, "openai", IBEX_CREDENTIAL_TENANT, W1, "sk-tenant-one-1111",
                   "no subject");
    expect_resolve(f, &e, T, "alice", "anthropic", IBEX_CREDENTIAL_NONE, NULL, NULL,
                   "another provider");
    /* another tenant's default is not used */
    cred_new(f, &e, &uadmin, "anthropic", "sk-u-anthropic-0000", true, UW);
    cred_default(f, &uadmin, UW);
    expect_resolve(f, &e, T, "alice", "anthropic", IBEX_CREDENTIAL_NONE, NULL, NULL, "U's default");
    expect_resolve(f, &e, U, "alice", "anthropic", IBEX_CREDENTIAL_TENANT, UW,
                   "sk-u-anthropic-0000", "U's own default");

    /* the subject's own wins; the newest first, its default before that */
    char A1[ID_BUF], A2[ID_BUF];
    cred_new(f, &e, &alice, "openai", "sk-alice-one-aaaa", false, A1);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A1, "sk-alice-one-aaaa",
                   "own");
    expect_resolve(f, &e, T, "bob", "openai", IBEX_CREDENTIAL_TENANT, W1, "sk-tenant-one-1111",
                   "bob: the tenant's");
    sleep_ms(3);
    cred_new(f, &e, &alice, "openai", "sk-alice-two-bbbb", false, A2);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A2, "sk-alice-two-bbbb",
                   "newest own");
    cred_default(f, &alice, A1);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A1, "sk-alice-one-aaaa",
                   "own default");
    /* inactive and deleted are never chosen */
    cred_set(f, &e, &alice, A1, "{\"state\":\"inactive\"}");
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A2, "sk-alice-two-bbbb",
                   "own default inactive");
    cred_delete(f, &e, &alice, A2);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_TENANT, W1, "sk-tenant-one-1111",
                   "own ones gone");
    cred_set(f, &e, &admin, W1, "{\"state\":\"inactive\"}");
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL,
                   "tenant default inactive");
    cred_new(f, &e, &admin, "openai", "sk-tenant-two-2222", true, W2); /* not the default */
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL,
                   "the inactive default is not replaced by another");
    cred_set(f, &e, &admin, W1, "{\"state\":\"active\"}");
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_TENANT, W1, "sk-tenant-one-1111",
                   "active again");
    cred_delete(f, &e, &admin, W1);
    expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_NONE, NULL, NULL,
                   "tenant default deleted");

    /* a chosen row that does not open is an error, not a silent fall back */
    cred_default(f, &admin, W2);
    struct ibex_vault *other = vault_of(HEX_B, NULL);
    struct ibex_credential_choice c;
    assert_int_equal(ibex_credential_resolve(f->st, other, NULL, T, "alice", "openai", &c),
                     IBEX_EVAULT_NOKEY);
    assert_null(c.secret);
    ibex_vault_free(other);
    /* a row moved to another tenant (raw SQL) does not open there */
    struct ibex_store_value p[] = {ibex_store_text(U), ibex_store_text(W2)};
    tu_store_must(f->st, ibex_store_exec(f->st,
                                         "UPDATE credentials SET tenant_id = $1, is_default = 0 "
                                         "WHERE id = $2",
                                         p, 2, NULL, NULL));
    tu_store_must(f->st, ibex_store_exec(f->st,
                                         "UPDATE credentials SET is_default = 0 WHERE tenant_id = "
                                         "$1",
                                         p, 1, NULL, NULL));
    tu_store_must(f->st,
                  ibex_store_exec(f->st, "UPDATE credentials SET is_default = 1 WHERE id = $2", p,
                                  2, NULL, NULL));
    assert_int_equal(ibex_credential_resolve(f->st, e.vault, NULL, U, "x", "openai", &c),
                     IBEX_EVAULT_AUTH);
    env_dispose(&e);
}

/* Decrypted once per version per process: the cache's counters. */
static void test_resolve_cache(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], A[ID_BUF], W[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor admin = actor(T, "boss", CADMIN), alice = actor(T, "alice", USER);
    cred_new(f, &e, &alice, "openai", "sk-alice-cache-0001", false, A);
    cred_new(f, &e, &admin, "openai", "sk-tenant-cache-0002", true, W);
    cred_default(f, &admin, W);
    struct ibex_credential_cache_stats st;
    for (int i = 0; i < 5; i++) {
        expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-alice-cache-0001",
                       "alice");
        expect_resolve(f, &e, T, "bob", "openai", IBEX_CREDENTIAL_TENANT, W, "sk-tenant-cache-0002",
                       "bob");
    }
    ibex_credential_cache_stats(e.cache, &st);
    assert_int_equal(st.decrypts, 2);
    assert_int_equal(st.hits, 8);
    /* a new secret: decrypted once more, the new one */
    cred_set(f, &e, &alice, A, "{\"secret\":\"sk-alice-cache-0003\"}");
    for (int i = 0; i < 3; i++)
        expect_resolve(f, &e, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-alice-cache-0003",
                       "alice, new secret");
    ibex_credential_cache_stats(e.cache, &st);
    assert_int_equal(st.decrypts, 3);
    assert_int_equal(st.hits, 10);
    /* a change of the row on another instance (no drop here): the version tells */
    struct ibex_sealed s;
    assert_int_equal(ibex_credential_seal(e.vault, T, W, "sk-tenant-cache-0004", 20, &s), 0);
    struct ibex_store_value p[] = {ibex_store_blob(s.ct, s.ct_len),
                                   ibex_store_blob(s.nonce, IBEX_VAULT_NONCE_LEN),
                                   ibex_store_text(W)};
    tu_store_must(f->st, ibex_store_exec(f->st,
                                         "UPDATE credentials SET ciphertext = $1, nonce = $2, "
                                         "version = version + 1 WHERE id = $3",
                                         p, 3, NULL, NULL));
    ibex_sealed_dispose(&s);
    expect_resolve(f, &e, T, "bob", "openai", IBEX_CREDENTIAL_TENANT, W, "sk-tenant-cache-0004",
                   "changed elsewhere");
    ibex_credential_cache_stats(e.cache, &st);
    assert_int_equal(st.decrypts, 4);
    /* a worker LRU of choices: put moves the reference in, dispose releases it */
    struct ibex_lru *lru =
        ibex_lru_new(2, sizeof(struct ibex_credential_choice), ibex_credential_choice_dispose);
    uint8_t k1[32], k2[32], k3[32];
    ibex_credential_lookup_key(T, "alice", "openai", k1);
    ibex_credential_lookup_key(T, "alice", "anthropic", k2);
    ibex_credential_lookup_key(T, NULL, "openai", k3);
    assert_memory_not_equal(k1, k2, 32);
    assert_memory_not_equal(k1, k3, 32);
    struct ibex_credential_choice c;
    assert_int_equal(ibex_credential_resolve(f->st, e.vault, e.cache, T, "alice", "openai", &c), 0);
    ibex_lru_put(lru, k1, &c, (int64_t)ibex_clock_wall_ms() + 5000, 0);
    struct ibex_credential_choice *hit = ibex_lru_get(lru, k1, (int64_t)ibex_clock_wall_ms(), 0);
    assert_non_null(hit);
    assert_string_equal(hit->secret->p, "sk-alice-cache-0003");
    ibex_lru_free(lru); /* releases it: ASan's leak check would see otherwise */
    env_dispose(&e);
}

/* ---- validation ---- */

static void test_probe_build(void **state)
{
    struct ibex_credential_probe p = {0};
    assert_int_equal(ibex_credential_probe_build(&p, IBEX_PROVIDER_OPENAI,
                                                 "https://api.openai.com/v1", "sk-abc12345", 11),
                     0);
    assert_string_equal(p.url, "https://api.openai.com/v1/models");
    assert_string_equal(p.headers[0], "Authorization: Bearer sk-abc12345");
    assert_null(p.headers[1]);
    assert_int_equal(ibex_credential_probe_build(&p, IBEX_PROVIDER_ANTHROPIC,
                                                 "https://api.anthropic.com", "sk-ant-xyz987", 13),
                     0);
    assert_string_equal(p.url, "https://api.anthropic.com/v1/models");
    assert_string_equal(p.headers[0], "x-api-key: sk-ant-xyz987");
    assert_string_equal(p.headers[1], "anthropic-version: 2023-06-01");
    assert_null(p.headers[2]);
    assert_int_equal(ibex_credential_probe_build(&p, IBEX_PROVIDER_GEMINI,
                                                 "https://generativelanguage.googleapis.com",
                                                 "AIzaSyTest01", 12),
                     0);
    assert_string_equal(p.url, "https://generativelanguage.googleapis.com/v1beta/models");
    assert_string_equal(p.headers[0], "x-goog-api-key: AIzaSyTest01");
    assert_null(p.headers[1]);
    assert_int_equal(ibex_credential_probe_build(&p, IBEX_PROVIDER_MOCK, "x", "y", 1), -1);
    ibex_credential_probe_dispose(&p);
    assert_null(p.auth);
    assert_null(p.url);
    ibex_credential_probe_dispose(&p); /* twice is fine */
}

/* A fake provider on a loop: answers 200 to the right key on the type's path, else 401. */
struct fake_provider {
    uv_loop_t loop;
    struct ibex_http_server *srv;
    struct ibex_upstream *u;
    int port;
    bool closed;
    char last_path[64];
    char last_auth[128];
    char last_version[64];
    int requests;
};

static void fake_handler(struct ibex_req *req, void *data)
{
    struct fake_provider *fp = data;
    fp->requests++;
    snprintf(fp->last_path, sizeof(fp->last_path), "%.*s", (int)req->path.len, req->path.p);
    struct ibex_str auth = ibex_req_header(req, "authorization");
    struct ibex_str key = ibex_req_header(req, "x-api-key");
    struct ibex_str goog = ibex_req_header(req, "x-goog-api-key");
    struct ibex_str ver = ibex_req_header(req, "anthropic-version");
    struct ibex_str h = auth.p ? auth : key.p ? key : goog;
    snprintf(fp->last_auth, sizeof(fp->last_auth), "%.*s", (int)h.len, h.p ? h.p : "");
    snprintf(fp->last_version, sizeof(fp->last_version), "%.*s", (int)ver.len, ver.p ? ver.p : "");
    bool good = strstr(fp->last_auth, "sk-good-key-") != NULL;
    const char *body = good ? "{\"data\":[]}" : "{\"error\":{\"message\":\"sk-echoed-back\"}}";
    ibex_res_send(req, good ? 200 : 401, "application/json", NULL, body, strlen(body));
}

static void on_fake_closed(void *arg)
{
    ((struct fake_provider *)arg)->closed = true;
}

struct probe_wait {
    bool done;
    int calls;
};

static void on_probe(struct ibex_credential_probe *p, void *data)
{
    struct probe_wait *w = data;
    w->done = true;
    w->calls++;
}

static void test_validate(void **state)
{
    struct fx *f = *state;
    struct fake_provider fp = {0};
    uv_loop_init(&fp.loop);
    struct ibex_http_config hc = {.max_header_bytes = 16384,
                                  .max_headers = 64,
                                  .max_body_bytes = 1 << 20,
                                  .header_timeout_ms = 5000,
                                  .body_timeout_ms = 5000,
                                  .idle_timeout_ms = 5000,
                                  .write_high_water = 1 << 20,
                                  .handler = fake_handler,
                                  .data = &fp};
    fp.srv = ibex_http_server_new(&fp.loop, &hc);
    assert_int_equal(ibex_http_server_listen(fp.srv, "127.0.0.1:0", false), 0);
    fp.port = ibex_http_server_port(fp.srv);
    fp.u = ibex_upstream_new(&fp.loop, true);
    char base_openai[64], base_other[64], base_closed[64];
    snprintf(base_openai, sizeof(base_openai), "http://127.0.0.1:%d/v1", fp.port);
    snprintf(base_other, sizeof(base_other), "http://127.0.0.1:%d", fp.port);
    snprintf(base_closed, sizeof(base_closed), "http://127.0.0.1:%d/v1", tu_closed_port());
    struct ibex_provider_config pv[] = {
        {.name = (char *)"openai", .type = IBEX_PROVIDER_OPENAI, .base_url = base_openai},
        {.name = (char *)"anthropic", .type = IBEX_PROVIDER_ANTHROPIC, .base_url = base_other},
        {.name = (char *)"gemini", .type = IBEX_PROVIDER_GEMINI, .base_url = base_other},
        {.name = (char *)"closed", .type = IBEX_PROVIDER_OPENAI, .base_url = base_closed},
    };
    struct env e;
    env_init(&e, HEX_A);
    e.e.providers = pv;
    e.e.nproviders = 4;
    char T[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor alice = actor(T, "alice", USER);
    static const struct {
        const char *provider, *secret, *path, *auth;
        int status;
        bool valid;
    } cases[] = {
        {"openai", "sk-good-key-openai", "/v1/models", "Bearer sk-good-key-openai", 200, true},
        {"openai", "sk-bad-key-openai", "/v1/models", "Bearer sk-bad-key-openai", 401, false},
        {"anthropic", "sk-good-key-ant", "/v1/models", "sk-good-key-ant", 200, true},
        {"gemini", "sk-good-key-gem", "/v1beta/models", "sk-good-key-gem", 200, true},
        {"closed", "sk-good-key-closed", NULL, NULL, 0, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char id[ID_BUF];
        cred_new(f, &e, &alice, cases[i].provider, cases[i].secret, false, id);
        struct ibex_credential_probe p = {0};
        struct res x;
        res_init(&x);
        expect_prepared(&x, ibex_credentials_validate_prepare(f->st, &e.e, &alice, id, &p, &x.r),
                        cases[i].provider);
        assert_true(p.ready);
        assert_int_equal(x.out.len, 0);
        assert_true(p.timeouts.total_ms <= 5000);
        struct probe_wait w = {0};
        int before = fp.requests;
        assert_int_equal(ibex_credential_probe_start(fp.u, &p, on_probe, &w), 0);
        assert_null(p.auth); /* wiped once the transport has it */
        assert_true(tu_run_until(&fp.loop, &w.done, 8000));
        tu_run_for(&fp.loop, 20);
        assert_int_equal(w.calls, 1);
        assert_int_equal(p.status, cases[i].status);
        if (cases[i].path) {
            assert_int_equal(fp.requests, before + 1);
            assert_string_equal(fp.last_path, cases[i].path);
            assert_string_equal(fp.last_auth, cases[i].auth);
            assert_string_equal(fp.last_version,
                                strcmp(cases[i].provider, "anthropic") == 0 ? "2023-06-01" : "");
        } else {
            assert_int_equal(p.result, IBEX_UPSTREAM_CONNECT_FAILED);
        }
        res_reset(&x);
        expect(&x, ibex_credentials_validate_finish(f->st, &alice, &p, &x.out, &x.r), 200, NULL,
               "finish");
        assert_string_equal(jstr(x.j, "object"), "credential.validation");
        assert_string_equal(jstr(x.j, "id"), id);
        assert_string_equal(jstr(x.j, "provider"), cases[i].provider);
        assert_int_equal(json_object_get_boolean(jget(x.j, "valid")), cases[i].valid);
        if (cases[i].status) {
            assert_int_equal(jint(x.j, "status"), cases[i].status);
            assert_true(jis_null(x.j, "error"));
        } else {
            assert_true(jis_null(x.j, "status"));
            assert_string_equal(jstr(x.j, "error"), "connect_failed");
        }
        assert_true(llabs(jint(x.j, "checked_at") - now_s()) < 5);
        /* never the provider's body, never the secret */
        assert_false(contains(x.out.p, x.out.len, "sk-"));
        res_dispose(&x);
        ibex_credential_probe_dispose(&p);
    }
    assert_int_equal(sql_int(f, audit_actions_sql, T, "credential.validated"), 5);
    assert_int_equal(sql_int(f,
                             "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = "
                             "'credential.validated' AND detail LIKE '%\"valid\":true%'",
                             T, NULL),
                     3);

    /* cancelled before the answer: nothing is reported */
    char id[ID_BUF];
    cred_new(f, &e, &alice, "openai", "sk-good-key-cancel", false, id);
    struct ibex_credential_probe p = {0};
    struct res x;
    res_init(&x);
    expect_prepared(&x, ibex_credentials_validate_prepare(f->st, &e.e, &alice, id, &p, &x.r),
                    "prepare");
    struct probe_wait w = {0};
    assert_int_equal(ibex_credential_probe_start(fp.u, &p, on_probe, &w), 0);
    ibex_credential_probe_cancel(&p);
    tu_run_for(&fp.loop, 100);
    assert_int_equal(w.calls, 0);
    ibex_credential_probe_dispose(&p);
    res_reset(&x);

    /* refusals: inactive, deleted, provider gone, a key this instance lacks */
    cred_set(f, &e, &alice, id, "{\"state\":\"inactive\"}");
    expect(&x, ibex_credentials_validate_prepare(f->st, &e.e, &alice, id, &p, &x.r), 409,
           "CREDENTIAL_NOT_ACTIVE", "inactive");
    assert_non_null(strstr(x.r.message, "inactive"));
    assert_false(p.ready);
    res_reset(&x);
    cred_set(f, &e, &alice, id, "{\"state\":\"active\"}");
    e.e.nproviders = 0;
    expect(&x, ibex_credentials_validate_prepare(f->st, &e.e, &alice, id, &p, &x.r), 422,
           "PROVIDER_NOT_CONFIGURED", "provider gone");
    res_reset(&x);
    e.e.nproviders = 4;
    struct ibex_vault *other = vault_of(HEX_B, NULL);
    const struct ibex_vault *mine = e.e.vault;
    e.e.vault = other;
    expect(&x, ibex_credentials_validate_prepare(f->st, &e.e, &alice, id, &p, &x.r), 500,
           "CREDENTIAL_UNREADABLE", "no key");
    assert_non_null(strstr(x.r.message, "master_key_previous_file"));
    e.e.vault = mine;
    ibex_vault_free(other);
    res_reset(&x);
    cred_delete(f, &e, &alice, id);
    expect(&x, ibex_credentials_validate_prepare(f->st, &e.e, &alice, id, &p, &x.r), 409,
           "CREDENTIAL_NOT_ACTIVE", "deleted");
    assert_non_null(strstr(x.r.message, "deleted"));
    res_dispose(&x);
    ibex_credential_probe_dispose(&p);
    env_dispose(&e);

    ibex_upstream_free(fp.u);
    ibex_http_server_close(fp.srv, on_fake_closed, &fp);
    assert_true(tu_run_until(&fp.loop, &fp.closed, 5000));
    ibex_http_server_free(fp.srv);
    assert_int_equal(tu_loop_finish(&fp.loop), 0);
}

static int row_plan(void *data, const struct ibex_store_value *c, size_t n)
{
    struct ibex_buf *b = data;
    for (size_t i = 0; i < n; i++)
        if (c[i].type == IBEX_STORE_TEXT) {
            ibex_buf_append(b, c[i].p, c[i].len);
            ibex_buf_append_cstr(b, " | ");
        }
    ibex_buf_append_cstr(b, "\n");
    return 0;
}

static void test_audit(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], W[ID_BUF];
    fx_tenant_new(f, "t", T);
    struct ibex_actor admin = actor(T, "boss", CADMIN);
    cred_new(f, &e, &admin, "anthropic", "sk-ant-audit-secret-77", true, W);
    cred_set(f, &e, &admin, W, "{\"name\":\"x\",\"secret\":\"sk-ant-audit-secret-88\"}");
    cred_default(f, &admin, W);
    cred_delete(f, &e, &admin, W);
    static const char *const actions[] = {"credential.created", "credential.updated",
                                          "credential.defaulted", "credential.deleted"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(sql_int(f,
                                 "SELECT count(*) FROM audit_events WHERE action = $1 AND "
                                 "target = $2",
                                 actions[i], W),
                         1);
    struct ibex_buf d;
    ibex_buf_init(&d);
    struct ibex_store_value p[] = {ibex_store_text(T)};
    tu_store_must(f->st, ibex_store_exec(f->st,
                                         "SELECT action, detail, actor, target FROM audit_events "
                                         "WHERE tenant_id = $1",
                                         p, 1, row_plan, &d));
    assert_non_null(strstr(d.p, "credential.updated | "
                                "{\"provider\":\"anthropic\",\"scope\":\"tenant\",\"fields\":["
                                "\"name\",\"secret\"]} | boss"));
    assert_non_null(strstr(d.p, "\"provider\":\"anthropic\""));
    assert_non_null(strstr(d.p, "\"fields\":[\"name\",\"secret\"]"));
    assert_non_null(strstr(d.p, "boss"));
    assert_non_null(strstr(d.p, W));
    assert_null(strstr(d.p, "sk-ant"));
    ibex_buf_dispose(&d);
    env_dispose(&e);
}

/* ---- rotation ---- */

static void test_rotate(void **state)
{
    struct fx *f = *state;
    struct env e;
    env_init(&e, HEX_A);
    char T[ID_BUF], U[ID_BUF], A[ID_BUF], W[ID_BUF], UW[ID_BUF], D[ID_BUF];
    fx_tenant_new(f, "t", T);
    fx_tenant_new(f, "u", U);
    struct ibex_actor admin = actor(T, "boss", CADMIN), alice = actor(T, "alice", USER);
    struct ibex_actor uadmin = actor(U, "boss", CADMIN);
    cred_new(f, &e, &alice, "openai", "sk-rotate-alice-1", false, A);
    cred_new(f, &e, &admin, "openai", "sk-rotate-tenant-2", true, W);
    cred_default(f, &admin, W);
    cred_new(f, &e, &uadmin, "gemini", "AIza-rotate-u-3", true, UW);
    cred_default(f, &uadmin, UW);
    cred_new(f, &e, &alice, "gemini", "sk-rotate-deleted-4", false, D);
    cred_delete(f, &e, &alice, D);
    int64_t version = sql_int(f, "SELECT version FROM credentials WHERE id = $1", A, NULL);

    /* step 1 of the procedure: B current, A previous: old rows still read */
    struct env rolled;
    env_init(&rolled, HEX_B);
    ibex_vault_free(rolled.vault);
    rolled.vault = vault_of(HEX_B, HEX_A);
    rolled.e.vault = rolled.vault;
    expect_resolve(f, &rolled, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-rotate-alice-1",
                   "old row, new instance");
    /* ...and rows it writes are under B */
    char B1[ID_BUF];
    cred_new(f, &rolled, &alice, "anthropic", "sk-rotate-new-5", false, B1);
    struct ibex_vault *onlyb = vault_of(HEX_B, NULL);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM credentials WHERE key_id = $1",
                             ibex_vault_key_id(onlyb), NULL),
                     1);

    /* step 2: rotate everything to B, with the ring of the new instances */
    struct ibex_credential_rotation r;
    tu_store_must(f->st, ibex_credential_rotate(f->st, rolled.vault, onlyb, 2, &r));
    assert_int_equal(r.rotated, 3); /* A, W, UW; D is deleted; B1 was under B already */
    assert_int_equal(r.current, 4);
    assert_int_equal(r.changed, 0);
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.unknown, 0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM credentials WHERE key_id = $1",
                             ibex_vault_key_id(e.vault), NULL),
                     0);
    /* the plaintext did not change, so neither did the version */
    assert_int_equal(sql_int(f, "SELECT version FROM credentials WHERE id = $1", A, NULL), version);
    /* again: nothing to do */
    tu_store_must(f->st, ibex_credential_rotate(f->st, rolled.vault, onlyb, 2, &r));
    assert_int_equal(r.rotated, 0);
    assert_int_equal(r.current, 4);
    /* step 3: previous key dropped; every secret still reads */
    struct env final;
    env_init(&final, HEX_B);
    expect_resolve(f, &final, T, "alice", "openai", IBEX_CREDENTIAL_OWN, A, "sk-rotate-alice-1",
                   "alice");
    expect_resolve(f, &final, T, "bob", "openai", IBEX_CREDENTIAL_TENANT, W, "sk-rotate-tenant-2",
                   "tenant");
    expect_resolve(f, &final, U, "bob", "gemini", IBEX_CREDENTIAL_TENANT, UW, "AIza-rotate-u-3",
                   "U");
    expect_resolve(f, &final, T, "alice", "anthropic", IBEX_CREDENTIAL_OWN, B1, "sk-rotate-new-5",
                   "written under B");
    /* and the old key alone no longer does */
    struct ibex_credential_choice c;
    assert_int_equal(ibex_credential_resolve(f->st, e.vault, NULL, T, "alice", "openai", &c),
                     IBEX_EVAULT_NOKEY);

    /* the other way round: rotate with the old key current and the new one given */
    struct ibex_vault *onlyc = vault_of(HEX_C, NULL);
    tu_store_must(f->st, ibex_credential_rotate(f->st, final.vault, onlyc, 100, &r));
    assert_int_equal(r.rotated, 4);
    assert_int_equal(r.current, 4);
    /* a row under a key the ring lacks is counted, named and left alone */
    struct ibex_store_value p[] = {ibex_store_text(ibex_vault_key_id(onlyb)), ibex_store_text(A)};
    tu_store_must(f->st, ibex_store_exec(f->st, "UPDATE credentials SET key_id = $1 WHERE id = $2",
                                         p, 2, NULL, NULL));
    struct ibex_vault *onlya = vault_of(HEX_A, NULL);
    tu_store_must(f->st, ibex_credential_rotate(f->st, onlyc, onlya, 100, &r));
    assert_int_equal(r.rotated, 3);
    assert_int_equal(r.unknown, 1);
    assert_non_null(strstr(r.unknown_keys, ibex_vault_key_id(onlyb)));
    /* a row that is under a held key but does not open (tampered) is counted as failed */
    struct ibex_store_value q[] = {ibex_store_text(ibex_vault_key_id(onlya)), ibex_store_text(A)};
    tu_store_must(f->st, ibex_store_exec(f->st, "UPDATE credentials SET key_id = $1 WHERE id = $2",
                                         q, 2, NULL, NULL));
    struct ibex_vault *ac = vault_of(HEX_A, HEX_C);
    tu_store_must(f->st, ibex_credential_rotate(f->st, ac, onlyc, 100, &r));
    assert_int_equal(r.failed, 1); /* A: its ciphertext is under C, its key_id says A */
    assert_string_equal(r.failed_ids, A);
    assert_int_equal(r.rotated, 3); /* the others, under A since the last run */
    ibex_vault_free(ac);
    ibex_vault_free(onlya);
    ibex_vault_free(onlyb);
    ibex_vault_free(onlyc);
    env_dispose(&final);
    env_dispose(&rolled);
    env_dispose(&e);
}

/* ---- query plans ---- */

/* Every statement of the module, as it is written there; each must use an index. */
static void test_plans(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *types; /* one letter per parameter: t text, i integer */
        const char *sql;
    } stmts[] = {
        /* lists (api/credentials.c): admin, user, provider, state, and a count */
        {"ttii",
         "SELECT id FROM credentials WHERE tenant_id = $1 AND (subject IS NULL OR subject = "
         "$2) AND state <> 'deleted' ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"},
        {"tt", "SELECT count(*) FROM credentials WHERE tenant_id = $1 AND (subject IS NULL OR "
               "subject = $2) AND state <> 'deleted'"},
        {"ttii", "SELECT id FROM credentials WHERE tenant_id = $1 AND subject = $2 AND state <> "
                 "'deleted' ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"},
        {"ttttii",
         "SELECT id FROM credentials WHERE tenant_id = $1 AND subject = $2 AND provider = "
         "$3 AND state = $4 ORDER BY created_at DESC, id LIMIT $5 OFFSET $6"},
        {"tttii",
         "SELECT id FROM credentials WHERE tenant_id = $1 AND (subject IS NULL OR subject = "
         "$2) AND provider = $3 AND state <> 'deleted' ORDER BY created_at DESC, id LIMIT "
         "$4 OFFSET $5"},
        /* one row, its lock, the foreign check */
        {"tt", "SELECT id FROM credentials WHERE id = $1 AND tenant_id = $2"},
        {"tt", "UPDATE credentials SET version = version WHERE id = $1 AND tenant_id = $2"},
        {"t", "SELECT tenant_id FROM credentials WHERE id = $1"},
        /* defaults: the siblings' lock and clear */
        {"tt", "UPDATE credentials SET is_default = is_default WHERE tenant_id = $1 AND provider = "
               "$2 AND subject IS NULL"},
        {"ttt",
         "UPDATE credentials SET is_default = is_default WHERE tenant_id = $1 AND provider = "
         "$2 AND subject = $3"},
        {"tti",
         "UPDATE credentials SET is_default = 0, version = version + 1, updated_at = $3 WHERE "
         "tenant_id = $1 AND provider = $2 AND subject IS NULL AND is_default = 1"},
        /* resolution (auth/credential.c) */
        {"ttt",
         "SELECT id FROM credentials WHERE tenant_id = $1 AND subject = $2 AND provider = $3 "
         "AND state = 'active' ORDER BY is_default DESC, created_at DESC, id LIMIT 1"},
        {"tt", "SELECT id FROM credentials WHERE tenant_id = $1 AND provider = $2 AND is_default = "
               "1 AND subject IS NULL AND state <> 'deleted'"},
        /* rotation */
        {"tti", "SELECT id FROM credentials WHERE key_id = $1 AND id > $2 ORDER BY id LIMIT $3"},
        {"tttti",
         "UPDATE credentials SET key_id = $1 WHERE id = $2 AND tenant_id = $3 AND key_id = "
         "$4 AND version = $5"},
        {"", "SELECT key_id, count(*) FROM credentials WHERE key_id IS NOT NULL GROUP BY key_id "
             "ORDER BY key_id"},
    };
    if (f->pg)
        tu_store_must(f->st, ibex_store_script(f->st, "SET enable_seqscan = off"));
    struct ibex_buf plan, sql;
    ibex_buf_init(&plan);
    ibex_buf_init(&sql);
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        ibex_buf_reset(&plan);
        ibex_buf_reset(&sql);
        ibex_buf_appendf(&sql, "%s%s", f->pg ? "EXPLAIN " : "EXPLAIN QUERY PLAN ", stmts[i].sql);
        struct ibex_store_value pp[8];
        size_t n = strlen(stmts[i].types);
        for (size_t k = 0; k < n; k++)
            pp[k] = stmts[i].types[k] == 'i' ? ibex_store_int(1) : ibex_store_text("x");
        tu_store_must(f->st, ibex_store_exec(f->st, sql.p, pp, n, row_plan, &plan));
        bool full = f->pg ? strstr(plan.p, "Seq Scan") != NULL
                          : (strstr(plan.p, "SCAN credentials") != NULL &&
                             strstr(plan.p, "SCAN credentials USING") == NULL);
        if (full)
            fail_msg("statement %zu scans the table:\n%s\nplan:\n%s", i, stmts[i].sql, plan.p);
    }
    if (f->pg)
        tu_store_must(f->st, ibex_store_script(f->st, "SET enable_seqscan = on"));
    ibex_buf_dispose(&plan);
    ibex_buf_dispose(&sql);
}

#define BOTH(fn)                                                                                   \
    {"sqlite: " #fn, fn, setup_sqlite, teardown, NULL},                                            \
    {                                                                                              \
        "postgres: " #fn, fn, setup_pg, teardown, NULL                                             \
    }

int main(void)
{
    if (ibex_upstream_global_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_key_id),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_vault_load),
        cmocka_unit_test(test_seal_open),
        cmocka_unit_test(test_credential_aad),
        cmocka_unit_test(test_secret_and_mac),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_query_parse),
        cmocka_unit_test(test_probe_build),
        BOTH(test_create_get_list),
        BOTH(test_update_delete),
        BOTH(test_create_validation),
        BOTH(test_disabled),
        BOTH(test_at_rest),
        BOTH(test_defaults),
        BOTH(test_default_race),
        BOTH(test_update_delete_race),
        BOTH(test_isolation),
        BOTH(test_resolve),
        BOTH(test_resolve_cache),
        BOTH(test_validate),
        BOTH(test_audit),
        BOTH(test_rotate),
        BOTH(test_plans),
    };
    int rc = tu_store_run_tests("credentials_test", tests, sizeof(tests) / sizeof(tests[0]),
                                setup_pg, &pg_url);
    ibex_upstream_global_cleanup();
    return rc;
}
