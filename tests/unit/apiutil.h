/* Fixtures and result helpers of the suites that drive the control-plane API on a real store
 * (identity_test, sessions_test, tasks_test, credentials_test, idempotency_test); include after
 * cmocka.h, testutil.h and storeutil.h, with TU_API_SUITE defined to a short name (temp files and
 * Postgres schemas carry it).
 * - setup_sqlite / setup_pg / teardown: a migrated store per case; on Postgres in a schema of
 *   its own (search_path in the URL), since the database is shared with other suites.
 * - sql_int: one integer from raw SQL. struct res, expect, expect_field: a call's result;
 *   expect_same_error, expect_same_text: two answers alike (a refusal changed nothing).
 * - jbody, jstr, jget, jis_null, jint, expect_json_equal: JSON in and out. now_s, sleep_ms,
 *   operator_actor.
 * - race_two: two calls started together, each on a store handle of its own.
 * Functions are static inline, so a suite need not use all of them. */
#ifndef IBEX_TESTS_UNIT_APIUTIL_H
#define IBEX_TESTS_UNIT_APIUTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "../../src/api/resource.h"
#include "../../src/auth/identity.h"
#include "../../src/auth/principal.h"
#include "../../src/core/clock.h"

static const char *pg_url;
static unsigned seq;

struct fx {
    bool pg;
    char path[64];
    char schema[64];
    char url[1024]; /* to open a second handle (the writer's) on the same database */
    char run[32];   /* a tag unique to this case, for names */
    struct ibex_store *st;
};

static inline struct fx *fx_new(bool pg)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->pg = pg;
    snprintf(f->run, sizeof(f->run), "%ld-%u-%u", (long)getpid(), ++seq,
             (unsigned)(ibex_clock_wall_ms() % 100000));
    return f;
}

static inline int setup_sqlite(void **state)
{
    struct fx *f = fx_new(false);
    snprintf(f->path, sizeof(f->path), "/tmp/ibex-" TU_API_SUITE "-test-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    char err[512];
    snprintf(f->url, sizeof(f->url), "sqlite://%s", f->path);
    if (ibex_store_open(f->url, &f->st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    *state = f;
    return 0;
}

static inline int setup_pg(void **state)
{
    struct fx *f = fx_new(true);
    snprintf(f->schema, sizeof(f->schema), "ibex_" TU_API_SUITE "_test_%ld_%u", (long)getpid(),
             seq);
    char err[512], sql[256];
    snprintf(f->url, sizeof(f->url), "%s%soptions=-csearch_path%%3D%s", pg_url,
             strchr(pg_url, '?') ? "&" : "?", f->schema);
    if (ibex_store_open(f->url, &f->st, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", f->schema,
             f->schema);
    tu_store_must(f->st, ibex_store_script(f->st, sql));
    tu_store_must(f->st, ibex_store_migrate(f->st, NULL, NULL, NULL));
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    if (f->pg) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", f->schema);
        ibex_store_script(f->st, sql);
    }
    ibex_store_close(f->st);
    if (!f->pg)
        tu_remove_sqlite_files(f->path);
    free(f);
    return 0;
}

/* ---- raw SQL ---- */

static inline int row_first_int(void *data, const struct ibex_store_value *c, size_t n)
{
    *(int64_t *)data = n && c[0].type == IBEX_STORE_INT ? c[0].i : -1;
    return 0;
}

static inline int64_t sql_int(struct fx *f, const char *sql, const char *p1, const char *p2)
{
    struct ibex_store_value p[2] = {ibex_store_text(p1), ibex_store_text(p2)};
    int64_t v = -1;
    tu_store_must(f->st, ibex_store_exec(f->st, sql, p, p2 ? 2 : p1 ? 1 : 0, row_first_int, &v));
    return v;
}

/* ---- calls and their results ---- */

struct res {
    struct ibex_api_result r;
    struct ibex_buf out;
    json_object *j; /* the answer, parsed (strictly) when the call succeeded */
};

static inline void res_init(struct res *x)
{
    ibex_api_result_init(&x->r);
    ibex_buf_init(&x->out);
    x->j = NULL;
}

static inline void res_dispose(struct res *x)
{
    json_object_put(x->j);
    ibex_buf_dispose(&x->out);
    ibex_api_result_dispose(&x->r);
}

static inline void res_reset(struct res *x)
{
    res_dispose(x);
    res_init(x);
}

/* Checks the outcome of the call that returned rc into x. */
static inline void expect(struct res *x, int rc, int status, const char *code, const char *what)
{
    if (rc != x->r.status)
        fail_msg("%s: returned %d but result.status is %d", what, rc, x->r.status);
    if (rc != status)
        fail_msg("%s: status %d (%s: %s), wanted %d %s", what, rc, x->r.code ? x->r.code : "-",
                 x->r.message, status, code ? code : "");
    if (code == NULL) {
        if (x->r.code != NULL)
            fail_msg("%s: code %s on success", what, x->r.code);
        x->j = tu_parse_json(x->out.p, x->out.len);
        if (x->j == NULL)
            fail_msg("%s: answer is not strict JSON: %.*s", what, (int)x->out.len, x->out.p);
    } else {
        if (x->r.code == NULL || strcmp(x->r.code, code) != 0)
            fail_msg("%s: code %s, wanted %s", what, x->r.code ? x->r.code : "(null)", code);
        assert_true(strlen(x->r.message) > 0);
    }
}

/* A VALIDATION_ERROR naming field, in param and as field_errors[0].field. */
static inline void expect_field(struct res *x, int rc, const char *field, const char *what)
{
    expect(x, rc, 400, "VALIDATION_ERROR", what);
    if (strcmp(x->r.param, field) != 0)
        fail_msg("%s: param %s, wanted %s", what, x->r.param, field);
    json_object *fe = tu_parse_json(x->r.field_errors.p, x->r.field_errors.len);
    if (fe == NULL || !json_object_is_type(fe, json_type_array) || json_object_array_length(fe) < 1)
        fail_msg("%s: field_errors not a non-empty array: %s", what,
                 x->r.field_errors.p ? x->r.field_errors.p : "(empty)");
    json_object *e0 = json_object_array_get_idx(fe, 0);
    assert_string_equal(tu_json_str(e0, "field"), field);
    assert_non_null(tu_json_str(e0, "message"));
    json_object_put(fe);
}

/* Two error results are the same answer: status, code, param, message, field_errors. */
static inline void expect_same_error(const struct res *a, const struct res *b, const char *what)
{
    if (a->r.status != b->r.status || strcmp(a->r.code, b->r.code) != 0 ||
        strcmp(a->r.param, b->r.param) != 0 || strcmp(a->r.message, b->r.message) != 0 ||
        a->r.field_errors.len != b->r.field_errors.len ||
        (a->r.field_errors.len &&
         memcmp(a->r.field_errors.p, b->r.field_errors.p, a->r.field_errors.len) != 0))
        fail_msg("%s: answers differ: %d %s [%s] %s %.*s / %d %s [%s] %s %.*s", what, a->r.status,
                 a->r.code, a->r.param, a->r.message, (int)a->r.field_errors.len,
                 a->r.field_errors.p ? a->r.field_errors.p : "", b->r.status, b->r.code, b->r.param,
                 b->r.message, (int)b->r.field_errors.len,
                 b->r.field_errors.p ? b->r.field_errors.p : "");
}

static inline void expect_same_text(const struct ibex_buf *a, const struct ibex_buf *b,
                                    const char *what)
{
    if (a->len != b->len || memcmp(a->p, b->p, a->len) != 0)
        fail_msg("%s: changed\n  before %.*s\n  after  %.*s", what, (int)a->len, a->p, (int)b->len,
                 b->p);
}

static inline json_object *jbody(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline json_object *jbody(const char *fmt, ...)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    ibex_buf_vappendf(&b, fmt, ap);
    va_end(ap);
    /* lenient on purpose: a bare scalar ("42") is a body too */
    json_object *o = json_tokener_parse(b.p);
    if (o == NULL)
        fail_msg("test body is not JSON: %s", b.p);
    ibex_buf_dispose(&b);
    return o;
}

static inline void expect_json_equal(json_object *got, const char *want_text, const char *what)
{
    json_object *want = jbody("%s", want_text);
    if (!json_object_equal(got, want))
        fail_msg("%s: %s, wanted %s", what, json_object_to_json_string(got), want_text);
    json_object_put(want);
}

static inline const char *jstr(json_object *o, const char *path)
{
    const char *s = tu_json_str(o, path);
    if (s == NULL)
        fail_msg("no string at %s in %s", path, json_object_to_json_string(o));
    return s;
}

static inline json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("no %s in %s", key, json_object_to_json_string(o));
    return v;
}

static inline bool jis_null(json_object *o, const char *key)
{
    return jget(o, key) == NULL;
}

static inline int64_t jint(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    if (!json_object_is_type(v, json_type_int))
        fail_msg("%s is not an integer in %s", key, json_object_to_json_string(o));
    return json_object_get_int64(v);
}

static inline int64_t now_s(void)
{
    return (int64_t)(ibex_clock_wall_ms() / 1000);
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline struct ibex_actor operator_actor(void)
{
    return (struct ibex_actor){.tenant_id = NULL, .subject = "cli", .scopes = IBEX_SCOPE_ALL};
}

#define ID_BUF (IBEX_ID_LEN + 1)

/* ---- races ---- */

/* One side of a race: call(st, arg, out, r) on a store handle of its own; status is what it
 * returned (-1: the handle did not open) and code the result's code ("" for none). */
struct race_side {
    int (*call)(struct ibex_store *st, void *arg, struct ibex_buf *out, struct ibex_api_result *r);
    void *arg;
    int status;
    char code[40];
};

struct race_run {
    const char *url;
    struct race_side *side;
    pthread_barrier_t *start;
};

static inline void *race_thread(void *data)
{
    struct race_run *run = data;
    struct race_side *s = run->side;
    struct ibex_store *st = NULL;
    char err[512];
    s->status = -1;
    s->code[0] = '\0';
    if (ibex_store_open(run->url, &st, err, sizeof(err)) != 0) {
        pthread_barrier_wait(run->start);
        return NULL;
    }
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    struct ibex_buf out;
    ibex_buf_init(&out);
    pthread_barrier_wait(run->start);
    s->status = s->call(st, s->arg, &out, &r);
    snprintf(s->code, sizeof(s->code), "%s", r.code ? r.code : "");
    ibex_buf_dispose(&out);
    ibex_api_result_dispose(&r);
    ibex_store_close(st);
    return NULL;
}

/* Runs both sides at once (a barrier), each on its own thread and store handle opened on the
 * fixture's URL. The threads never assert: the caller judges the statuses and codes. */
static inline void race_two(struct fx *f, struct race_side side[2])
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    struct race_run run[2] = {{f->url, &side[0], &start}, {f->url, &side[1], &start}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &run[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
}

/* A new tenant "<base>-<run>", created by the operator; its id in id. */
static inline void fx_tenant_new(struct fx *f, const char *base, char id[ID_BUF])
{
    struct ibex_actor op = operator_actor();
    struct res x;
    res_init(&x);
    json_object *b = jbody("{\"name\":\"%s-%s\"}", base, f->run);
    expect(&x, ibex_tenant_create(f->st, &op, b, &x.out, &x.r), 201, NULL, "tenant create");
    json_object_put(b);
    snprintf(id, ID_BUF, "%s", jstr(x.j, "id"));
    res_dispose(&x);
}

#endif
