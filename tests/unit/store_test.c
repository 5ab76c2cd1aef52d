/* src/store: the one store suite. Every case runs against SQLite (a temp file, WAL) and, when
 * IBEX_TEST_PG_URL is set (make unit starts one with scripts/pg.sh), against Postgres on a
 * freshly emptied schema. Without it the Postgres half prints SKIP and the reason.
 * Covers migrations (empty, twice, newer-than-binary), typed params and NULLs, round trips of
 * quoted/unicode text and blobs with NUL bytes, batch atomicity, password-free errors, and the
 * writer: concurrent producers, a full queue, flush, clean shutdown, a refused record.
 * IBEX_STORE_BENCH_ROWS=N sets the writer rows of the throughput case (default 20000). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/store/store.h"
#include "../../src/store/store_backend.h"
#include "../../src/store/writer.h"
#include "storeutil.h"

struct fx {
    bool pg;
    char url[512];
    char path[64];
    struct ibex_store *st;
};

static const char *pg_url;

static int setup_sqlite(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "/tmp/ibex-store-test-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(f->url, sizeof(f->url), "sqlite://%s", f->path);
    char err[512];
    if (ibex_store_open(f->url, &f->st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    *state = f;
    return 0;
}

static int setup_pg(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->pg = true;
    snprintf(f->url, sizeof(f->url), "%s", pg_url);
    char err[512];
    if (ibex_store_open(f->url, &f->st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    tu_store_must(f->st, ibex_store_script(f->st, "DROP SCHEMA IF EXISTS public CASCADE; "
                                                  "CREATE SCHEMA public"));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ibex_store_close(f->st);
    if (!f->pg)
        tu_remove_sqlite_files(f->path);
    free(f);
    return 0;
}

/* ---- collecting rows ---- */

#define MAXR 16
#define MAXC 8
struct rows {
    size_t n, ncols;
    struct ibex_store_value v[MAXR][MAXC];
};

static int collect(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    struct rows *r = data;
    assert_true(r->n < MAXR && ncols <= MAXC);
    r->ncols = ncols;
    for (size_t i = 0; i < ncols; i++) {
        struct ibex_store_value v = cols[i];
        if (v.type == IBEX_STORE_TEXT || v.type == IBEX_STORE_BLOB) {
            char *copy = malloc(v.len + 1);
            memcpy(copy, v.p, v.len);
            copy[v.len] = '\0';
            v.p = copy;
        }
        r->v[r->n][i] = v;
    }
    r->n++;
    return 0;
}

static void rows_free(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->ncols; k++)
            if (r->v[i][k].type == IBEX_STORE_TEXT || r->v[i][k].type == IBEX_STORE_BLOB)
                free((char *)r->v[i][k].p);
    memset(r, 0, sizeof(*r));
}

static int64_t count(struct ibex_store *st, const char *sql)
{
    struct rows r = {0};
    tu_store_must(st, ibex_store_exec(st, sql, NULL, 0, collect, &r));
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0][0].type, IBEX_STORE_INT);
    int64_t v = r.v[0][0].i;
    rows_free(&r);
    return v;
}

static void expect_bytes(const struct ibex_store_value *v, enum ibex_store_type t, const void *p,
                         size_t len)
{
    assert_int_equal(v->type, t);
    assert_int_equal(v->len, len);
    assert_memory_equal(v->p, p, len);
}

/* ---- migrations ---- */

static void on_applied(void *data, const struct ibex_store_migration *m)
{
    (*(int *)data)++;
}

static void test_migrate_from_empty(void **state)
{
    struct fx *f = *state;
    size_t n;
    const struct ibex_store_migration *list = ibex_store_migrations(&n);
    assert_true(n >= 1);
    for (size_t i = 1; i < n; i++)
        assert_true(list[i].version > list[i - 1].version);
    int64_t v = -1;
    tu_store_must(f->st, ibex_store_schema_version(f->st, &v));
    assert_int_equal(v, 0);
    int applied = 0;
    tu_store_must(f->st, ibex_store_migrate(f->st, on_applied, &applied, &v));
    assert_int_equal(applied, (int)n);
    assert_int_equal(v, list[n - 1].version);
    assert_int_equal(count(f->st, "SELECT count(*) FROM schema_migrations"), (int64_t)n);
    /* The tables of issue 3 exist and take rows. */
    struct ibex_store_value t[3] = {ibex_store_text("t1"), ibex_store_text("Acme"),
                                    ibex_store_int(1700000000000)};
    tu_store_must(f->st,
                  ibex_store_exec(f->st,
                                  "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                                  t, 3, NULL, NULL));
    struct ibex_store_value k[6] = {ibex_store_text("k1"),   ibex_store_text("t1"),
                                    ibex_store_text("abc"),  ibex_store_text("00ff"),
                                    ibex_store_text("wxyz"), ibex_store_int(1)};
    const char *ins = "INSERT INTO api_keys (id, tenant_id, prefix, sha256, last4, created_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6)";
    tu_store_must(f->st, ibex_store_exec(f->st, ins, k, 6, NULL, NULL));
    /* prefix is unique */
    k[0] = ibex_store_text("k2");
    assert_int_equal(ibex_store_exec(f->st, ins, k, 6, NULL, NULL), IBEX_EDB);
    /* a key belongs to an existing tenant */
    k[1] = ibex_store_text("nope");
    k[2] = ibex_store_text("def");
    assert_int_equal(ibex_store_exec(f->st, ins, k, 6, NULL, NULL), IBEX_EDB);
    assert_int_equal(count(f->st, "SELECT count(*) FROM audit_events"), 0);
    assert_int_equal(count(f->st, "SELECT count(*) FROM agents"), 0);
}

static void test_migrate_twice(void **state)
{
    struct fx *f = *state;
    int applied = 0;
    int64_t v1, v2;
    tu_store_must(f->st, ibex_store_migrate(f->st, on_applied, &applied, &v1));
    applied = 0;
    tu_store_must(f->st, ibex_store_migrate(f->st, on_applied, &applied, &v2));
    assert_int_equal(applied, 0);
    assert_int_equal(v1, v2);
    size_t n;
    ibex_store_migrations(&n);
    assert_int_equal(count(f->st, "SELECT count(*) FROM schema_migrations"), (int64_t)n);
}

static void test_migrate_refuses_newer(void **state)
{
    struct fx *f = *state;
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    tu_store_must(f->st,
                  ibex_store_exec(f->st,
                                  "INSERT INTO schema_migrations (version, name, applied_at) "
                                  "VALUES (9999, 'from_the_future', 0)",
                                  NULL, 0, NULL, NULL));
    int applied = 0;
    int64_t v = 0;
    assert_int_equal(ibex_store_migrate(f->st, on_applied, &applied, &v), IBEX_ESCHEMA);
    assert_int_equal(applied, 0);
    assert_int_equal(v, 9999);
    const char *msg = ibex_store_errmsg(f->st);
    if (!strstr(msg, "9999") || !strstr(msg, "newer ibex"))
        fail_msg("unclear refusal: %s", msg);
    size_t n;
    ibex_store_migrations(&n);
    assert_int_equal(count(f->st, "SELECT count(*) FROM schema_migrations"), (int64_t)n + 1);
}

/* ---- exec ---- */

static void make_table(struct fx *f)
{
    /* BYTEA: Postgres' bytes type; SQLite stores blobs as-is under any declared type. */
    tu_store_must(f->st,
                  ibex_store_script(f->st, "CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT, "
                                           "s TEXT, b BYTEA)"));
}

static void test_exec_types_and_nulls(void **state)
{
    struct fx *f = *state;
    make_table(f);
    const char *ins = "INSERT INTO t (id, n, s, b) VALUES ($1, $2, $3, $4)";
    struct ibex_store_value p[4] = {ibex_store_int(1), ibex_store_int(INT64_MAX),
                                    ibex_store_text("x"), ibex_store_blob("\x01\x02", 2)};
    tu_store_must(f->st, ibex_store_exec(f->st, ins, p, 4, NULL, NULL));
    p[0] = ibex_store_int(2), p[1] = ibex_store_null(), p[2] = ibex_store_null();
    p[3] = ibex_store_null();
    tu_store_must(f->st, ibex_store_exec(f->st, ins, p, 4, NULL, NULL));
    p[0] = ibex_store_int(3), p[1] = ibex_store_int(INT64_MIN), p[2] = ibex_store_text("");
    p[3] = ibex_store_blob(NULL, 0);
    tu_store_must(f->st, ibex_store_exec(f->st, ins, p, 4, NULL, NULL));
    /* ibex_store_text(NULL) is SQL NULL */
    p[0] = ibex_store_int(4), p[1] = ibex_store_int(-1), p[2] = ibex_store_text(NULL);
    tu_store_must(f->st, ibex_store_exec(f->st, ins, p, 4, NULL, NULL));

    struct rows r = {0};
    tu_store_must(f->st, ibex_store_exec(f->st, "SELECT id, n, s, b FROM t ORDER BY id", NULL, 0,
                                         collect, &r));
    assert_int_equal(r.n, 4);
    assert_int_equal(r.ncols, 4);
    assert_int_equal(r.v[0][0].type, IBEX_STORE_INT);
    assert_int_equal(r.v[0][1].i, INT64_MAX);
    expect_bytes(&r.v[0][2], IBEX_STORE_TEXT, "x", 1);
    expect_bytes(&r.v[0][3], IBEX_STORE_BLOB, "\x01\x02", 2);
    for (int k = 1; k < 4; k++)
        assert_int_equal(r.v[1][k].type, IBEX_STORE_NULL);
    assert_true(r.v[2][1].i == INT64_MIN);
    expect_bytes(&r.v[2][2], IBEX_STORE_TEXT, "", 0); /* empty is not NULL */
    expect_bytes(&r.v[2][3], IBEX_STORE_BLOB, "", 0);
    assert_int_equal(r.v[3][2].type, IBEX_STORE_NULL);
    rows_free(&r);

    /* WHERE with a NULL-safe parameter, placeholders out of order */
    struct ibex_store_value q[2] = {ibex_store_text("x"), ibex_store_int(1)};
    tu_store_must(f->st, ibex_store_exec(f->st, "SELECT id FROM t WHERE id = $2 AND s = $1", q, 2,
                                         collect, &r));
    assert_int_equal(r.n, 1);
    rows_free(&r);
    tu_store_must(f->st, ibex_store_exec(f->st, "SELECT $2, $1", q, 2, collect, &r));
    assert_int_equal(r.v[0][0].i, 1);
    expect_bytes(&r.v[0][1], IBEX_STORE_TEXT, "x", 1);
    rows_free(&r);
    /* a callback's nonzero return stops the rows and is returned */
    assert_int_equal(ibex_store_exec(f->st, "SELECT id FROM t", NULL, 0, NULL, NULL), 0);
}

static int stop_at_first(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    (*(int *)data)++;
    return 7;
}

static void test_exec_callback_stops(void **state)
{
    struct fx *f = *state;
    make_table(f);
    for (int i = 0; i < 3; i++) {
        struct ibex_store_value p = ibex_store_int(i);
        tu_store_must(f->st,
                      ibex_store_exec(f->st, "INSERT INTO t (id) VALUES ($1)", &p, 1, NULL, NULL));
    }
    int calls = 0;
    assert_int_equal(ibex_store_exec(f->st, "SELECT id FROM t", NULL, 0, stop_at_first, &calls), 7);
    assert_int_equal(calls, 1);
    /* the handle is usable afterwards */
    assert_int_equal(count(f->st, "SELECT count(*) FROM t"), 3);
}

static void test_roundtrip_text_and_blob(void **state)
{
    struct fx *f = *state;
    make_table(f);
    const char *text = "it's \"quoted\" -- not a comment /* nor this */ $1 ?1 \\ "
                       "\xc3\xbcnic\xc3\xb8"
                       "de \xf0\x9f\xa6\x8a \xe4\xb8\xad\xe6\x96\x87";
    unsigned char blob[256];
    for (int i = 0; i < 256; i++)
        blob[i] = (unsigned char)(255 - i); /* includes NUL bytes and 0xff */
    blob[10] = 0;
    struct ibex_store_value p[3] = {ibex_store_int(1), ibex_store_text(text),
                                    ibex_store_blob(blob, sizeof(blob))};
    tu_store_must(f->st, ibex_store_exec(f->st, "INSERT INTO t (id, s, b) VALUES ($1, $2, $3)", p,
                                         3, NULL, NULL));
    struct rows r = {0};
    /* a $1 inside a literal stays a literal on both backends */
    tu_store_must(f->st,
                  ibex_store_exec(f->st, "SELECT s, b, 'lit $1 ''q''' FROM t WHERE id = $1 -- $2\n",
                                  p, 1, collect, &r));
    assert_int_equal(r.n, 1);
    expect_bytes(&r.v[0][0], IBEX_STORE_TEXT, text, strlen(text));
    expect_bytes(&r.v[0][1], IBEX_STORE_BLOB, blob, sizeof(blob));
    expect_bytes(&r.v[0][2], IBEX_STORE_TEXT, "lit $1 'q'", 10);
    rows_free(&r);
}

static void test_sql_translation(void **state)
{
    static const char *cases[][2] = {
        {"SELECT $1, $2", "SELECT ?1, ?2"},
        {"SELECT '$1', \"$2\", $3", "SELECT '$1', \"$2\", ?3"},
        {"SELECT 'it''s $1', $10", "SELECT 'it''s $1', ?10"},
        {"SELECT $1 -- $2\n, $3", "SELECT ?1 -- $2\n, ?3"},
        {"SELECT /* $1 */ $2", "SELECT /* $1 */ ?2"},
        {"SELECT $a, $0, $", "SELECT $a, $0, $"},
        {"SELECT 'unterminated $1", "SELECT 'unterminated $1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = ibex_store_sql_to_sqlite(cases[i][0]);
        assert_string_equal(out, cases[i][1]);
        free(out);
    }
}

/* ---- batches ---- */

static void test_batch_atomic(void **state)
{
    struct fx *f = *state;
    make_table(f);
    const char *ins = "INSERT INTO t (id, s) VALUES ($1, $2)";
    struct ibex_store_value a[2] = {ibex_store_int(1), ibex_store_text("a")};
    struct ibex_store_value b[2] = {ibex_store_int(2), ibex_store_text("b")};
    struct ibex_store_value dup[2] = {ibex_store_int(1), ibex_store_text("dup")};
    struct ibex_store_stmt bad[3] = {{ins, a, 2}, {ins, dup, 2}, {ins, b, 2}};
    size_t at = 99;
    assert_int_equal(ibex_store_batch(f->st, bad, 3, &at), IBEX_EDB);
    assert_int_equal(at, 1);
    assert_true(strlen(ibex_store_errmsg(f->st)) > 0);
    assert_int_equal(count(f->st, "SELECT count(*) FROM t"), 0);

    /* a statement error (not a constraint) rolls back too */
    struct ibex_store_stmt syntax[2] = {{ins, a, 2}, {"INSERT INTO nope VALUES ($1)", a, 1}};
    assert_int_equal(ibex_store_batch(f->st, syntax, 2, &at), IBEX_EDB);
    assert_int_equal(at, 1);
    assert_int_equal(count(f->st, "SELECT count(*) FROM t"), 0);

    struct ibex_store_stmt good[2] = {{ins, a, 2}, {ins, b, 2}};
    tu_store_must(f->st, ibex_store_batch(f->st, good, 2, &at));
    assert_int_equal(count(f->st, "SELECT count(*) FROM t"), 2);
    tu_store_must(f->st, ibex_store_batch(f->st, good, 0, NULL));

    /* 600 statements in one batch (one pipeline on Postgres) */
    enum { N = 600 };
    struct ibex_store_value *vals = calloc(N * 2, sizeof(*vals));
    struct ibex_store_stmt *many = calloc(N, sizeof(*many));
    for (int i = 0; i < N; i++) {
        vals[2 * i] = ibex_store_int(100 + i);
        vals[2 * i + 1] = ibex_store_text("m");
        many[i] = (struct ibex_store_stmt){ins, &vals[2 * i], 2};
    }
    tu_store_must(f->st, ibex_store_batch(f->st, many, N, NULL));
    assert_int_equal(count(f->st, "SELECT count(*) FROM t"), 2 + N);
    free(vals);
    free(many);
}

/* ---- SQLite's file format ---- */

/* A new database gets 16 KiB pages in WAL mode; one made elsewhere with another page size keeps
 * it (a page size is fixed when the file is made) and is written as usual. */
static void test_sqlite_pages(void **state)
{
    struct fx *f = *state;
    if (f->pg)
        return;
    assert_int_equal(count(f->st, "PRAGMA page_size"), 16384);
    struct rows r = {0};
    tu_store_must(f->st, ibex_store_exec(f->st, "PRAGMA journal_mode", NULL, 0, collect, &r));
    expect_bytes(&r.v[0][0], IBEX_STORE_TEXT, "wal", 3);
    rows_free(&r);

    char path[64] = "/tmp/ibex-store-test-4k-XXXXXX", url[96], err[512];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA page_size=4096; CREATE TABLE t (v INTEGER)", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct ibex_store *st;
    snprintf(url, sizeof(url), "sqlite://%s", path);
    if (ibex_store_open(url, &st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    assert_int_equal(count(st, "PRAGMA page_size"), 4096);
    tu_store_must(st, ibex_store_exec(st, "INSERT INTO t (v) VALUES (7)", NULL, 0, NULL, NULL));
    assert_int_equal(count(st, "SELECT sum(v) FROM t"), 7);
    ibex_store_close(st);
    tu_remove_sqlite_files(path);
}

/* ---- errors ---- */

static void test_errors_without_password(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ibex_store_exec(f->st, "SELEC nonsense", NULL, 0, NULL, NULL), IBEX_EDB);
    assert_true(strlen(ibex_store_errmsg(f->st)) > 0);
    assert_null(strchr(ibex_store_errmsg(f->st), '\n'));
    struct ibex_store_value one = ibex_store_int(1);
    assert_true(ibex_store_exec(f->st, "SELECT $1, $2", &one, 1, NULL, NULL) < 0);

    char err[512], red[256];
    struct ibex_store *st = NULL;
    /* the URL's password never comes back, raw or decoded */
    ibex_store_redact_url("postgres://u:s3cr%40t@h:5/db?sslmode=disable&password=zz9", red,
                          sizeof(red));
    assert_string_equal(red, "postgres://u:***@h:5/db?sslmode=disable&password=***");
    assert_int_equal(ibex_store_open("mysql://u:hunter2@h/db", &st, err, sizeof(err)), IBEX_EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(ibex_store_open("sqlite://", &st, err, sizeof(err)), IBEX_EINVAL);
    assert_int_equal(ibex_store_open("sqlite:///nonexistent-dir/x/y.db", &st, err, sizeof(err)),
                     IBEX_ECONN);
    assert_true(strlen(err) > 0);
    assert_int_equal(ibex_store_open("sqlite::memory:", &st, err, sizeof(err)), 0);
    ibex_store_close(st);

    if (!f->pg)
        return;
    /* a wrong password: refused, and neither form of it is in the message */
    char bad[512];
    const char *at = strchr(f->url + strlen("postgresql://"), '@');
    assert_non_null(at);
    snprintf(bad, sizeof(bad), "postgresql://ibex:wr%%40ngPassw0rd%s", at);
    assert_int_equal(ibex_store_open(bad, &st, err, sizeof(err)), IBEX_ECONN);
    if (strstr(err, "wr%40ngPassw0rd") || strstr(err, "wr@ngPassw0rd"))
        fail_msg("password in: %s", err);
    assert_non_null(strstr(err, "***"));
    /* the server quotes a bad value back; when that value is the password, it is scrubbed */
    const char *colon = strchr(f->url + strlen("postgresql://"), ':');
    char password[128];
    snprintf(password, sizeof(password), "%.*s", (int)(at - colon - 1), colon + 1);
    struct ibex_store_value p = ibex_store_text(password);
    assert_int_equal(ibex_store_exec(f->st, "SELECT CAST($1 AS BIGINT)", &p, 1, NULL, NULL),
                     IBEX_EDB);
    if (strstr(ibex_store_errmsg(f->st), password))
        fail_msg("password in: %s", ibex_store_errmsg(f->st));
    assert_non_null(strstr(ibex_store_errmsg(f->st), "***"));
    /* unreachable server */
    assert_int_equal(
        ibex_store_open("postgresql://ibex:topsecret@127.0.0.1:1/ibex", &st, err, sizeof(err)),
        IBEX_ECONN);
    assert_null(strstr(err, "topsecret"));
}

/* ---- writer ---- */

static const char *audit_sql = "INSERT INTO audit_events (id, tenant_id, actor, action, target, "
                               "detail, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

static int enqueue_audit(struct ibex_store_writer *w, const char *id)
{
    /* the id lives in the caller's stack: enqueue copies it */
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", id);
    struct ibex_store_value p[7] = {
        ibex_store_text(buf),          ibex_store_text("t1"), ibex_store_text("key:k1"),
        ibex_store_text("key.create"), ibex_store_null(),     ibex_store_text("{\"a\":1}"),
        ibex_store_int(1700000000000)};
    int rc = ibex_store_writer_enqueue(w, audit_sql, p, 7);
    memset(buf, 'X', sizeof(buf));
    return rc;
}

struct producer {
    struct ibex_store_writer *w;
    int id, n, refused;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "p%d-%d", p->id, i);
        while (enqueue_audit(p->w, id) == IBEX_EFULL) {
            p->refused++;
            usleep(100);
        }
    }
    return NULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_writer_concurrent(void **state)
{
    struct fx *f = *state;
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    enum { THREADS = 4 };
    const char *env = getenv("IBEX_STORE_BENCH_ROWS");
    int total = env ? (int)strtol(env, NULL, 10) : 20000;
    total -= total % THREADS;
    /* A small ring so positions wrap around many times and producers may meet a full queue. */
    struct ibex_store_writer_opts o = {.capacity = 1024};
    struct ibex_store_writer *w;
    assert_int_equal(ibex_store_writer_new(f->st, &o, &w), 0);
    pthread_t th[THREADS];
    struct producer pr[THREADS];
    uint64_t t0 = now_ns();
    for (int i = 0; i < THREADS; i++) {
        pr[i] = (struct producer){w, i, total / THREADS, 0};
        assert_int_equal(pthread_create(&th[i], NULL, produce, &pr[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(ibex_store_writer_flush(w, 60000), 0);
    uint64_t dt = now_ns() - t0;
    struct ibex_store_writer_stats s;
    ibex_store_writer_stats(w, &s);
    ibex_store_writer_free(w);
    int refused = 0;
    for (int i = 0; i < THREADS; i++)
        refused += pr[i].refused;
    printf("store writer (%s): %d rows from %d threads in %.1f ms = %.0f rows/s, %llu batches, "
           "%d full-queue retries\n",
           f->pg ? "postgres" : "sqlite", total, THREADS, dt / 1e6, total / (dt / 1e9),
           (unsigned long long)s.batches, refused);
    assert_int_equal(s.enqueued, (uint64_t)total);
    assert_int_equal(s.committed, (uint64_t)total);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.dropped, (uint64_t)refused);
    assert_true(s.batches >= 1 && s.batches <= (uint64_t)total);
    assert_int_equal(count(f->st, "SELECT count(*) FROM audit_events"), total);
    assert_int_equal(count(f->st, "SELECT count(DISTINCT id) FROM audit_events"), total);
    /* the copies survived the callers' buffers being overwritten */
    assert_int_equal(count(f->st, "SELECT count(*) FROM audit_events WHERE id LIKE 'p%' AND "
                                  "actor = 'key:k1' AND target IS NULL AND detail = '{\"a\":1}'"),
                     total);
}

static void test_writer_full_queue(void **state)
{
    struct fx *f = *state;
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    /* A long interval and a batch larger than the queue: after its first look the writer sleeps
     * until a flush, so the queue fills. */
    struct ibex_store_writer_opts o = {.capacity = 4, .batch_max = 64, .interval_ms = 60000};
    struct ibex_store_writer *w;
    assert_int_equal(ibex_store_writer_new(f->st, &o, &w), 0);
    usleep(20000);
    int accepted = 0, rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        char id[32];
        snprintf(id, sizeof(id), "full-%d", i);
        rc = enqueue_audit(w, id);
        accepted += rc == 0;
    }
    assert_int_equal(rc, IBEX_EFULL);
    assert_int_equal(accepted, 4);
    assert_int_equal(enqueue_audit(w, "extra"), IBEX_EFULL);
    struct ibex_store_writer_stats s;
    ibex_store_writer_stats(w, &s);
    assert_int_equal(s.dropped, 2);
    assert_int_equal(s.enqueued, 4);
    assert_int_equal(ibex_store_writer_flush(w, 10000), 0);
    ibex_store_writer_stats(w, &s);
    assert_int_equal(s.committed, 4);
    /* room again */
    assert_int_equal(enqueue_audit(w, "after"), 0);
    ibex_store_writer_free(w);
    assert_int_equal(count(f->st, "SELECT count(*) FROM audit_events"), 5);
}

static void test_writer_shutdown_commits_everything(void **state)
{
    struct fx *f = *state;
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    struct ibex_store_writer_opts o = {.interval_ms = 60000};
    struct ibex_store_writer *w;
    assert_int_equal(ibex_store_writer_new(f->st, &o, &w), 0);
    for (int i = 0; i < 1234; i++) {
        char id[32];
        snprintf(id, sizeof(id), "s-%d", i);
        assert_int_equal(enqueue_audit(w, id), 0);
    }
    /* one record the database refuses (duplicate id): only it is lost */
    assert_int_equal(enqueue_audit(w, "s-7"), 0);
    ibex_store_writer_free(w); /* no flush: free itself commits what was accepted */
    assert_int_equal(count(f->st, "SELECT count(*) FROM audit_events"), 1234);

    /* flush with nothing queued returns at once; a flush of a record waits for its commit */
    assert_int_equal(ibex_store_writer_new(f->st, &o, &w), 0);
    assert_int_equal(ibex_store_writer_flush(w, 1000), 0);
    assert_int_equal(enqueue_audit(w, "late"), 0);
    assert_int_equal(enqueue_audit(w, "s-8"), 0);
    assert_int_equal(ibex_store_writer_flush(w, 10000), 0);
    struct ibex_store_writer_stats s;
    ibex_store_writer_stats(w, &s);
    assert_int_equal(s.committed, 1);
    assert_int_equal(s.failed, 1);
    ibex_store_writer_free(w);
    assert_int_equal(count(f->st, "SELECT count(*) FROM audit_events"), 1235);
}

#define BOTH(fn)                                                                                   \
    {"sqlite: " #fn, fn, setup_sqlite, teardown, NULL},                                            \
    {                                                                                              \
        "postgres: " #fn, fn, setup_pg, teardown, NULL                                             \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_migrate_from_empty),
        BOTH(test_migrate_twice),
        BOTH(test_migrate_refuses_newer),
        BOTH(test_exec_types_and_nulls),
        BOTH(test_exec_callback_stops),
        BOTH(test_roundtrip_text_and_blob),
        BOTH(test_batch_atomic),
        BOTH(test_sqlite_pages),
        BOTH(test_errors_without_password),
        BOTH(test_writer_concurrent),
        BOTH(test_writer_full_queue),
        BOTH(test_writer_shutdown_commits_everything),
        cmocka_unit_test(test_sql_translation),
    };
    return tu_store_run_tests("store_test", tests, sizeof(tests) / sizeof(tests[0]), setup_pg,
                              &pg_url);
}
