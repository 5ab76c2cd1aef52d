/* Postgres backend over libpq. Parameters go in binary with explicit types (int8, text, bytea),
 * so text and blobs need no escaping and no NUL terminator; results come back as text and are
 * converted by column type (int2/4/8 and bool to INT, bytea unescaped to BLOB, the rest TEXT).
 * A batch is one pipeline (PQenterPipelineMode, send all, one PQpipelineSync): one round trip
 * for n statements instead of n.
 * Invariant: the connection is never left in pipeline mode when a call returns. */
#include <endian.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "store_backend.h"

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define MAX_COLS 64
#define STACK_PARAMS 16

/* Copies a libpq message (which ends with a newline) as one line. */
static int fail(int code, char *err, size_t errlen, const char *what, const char *msg)
{
    snprintf(err, errlen, "postgres: %s: %s", what, msg && *msg ? msg : "unknown error");
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = (p[1] == '\0') ? '\0' : ' ';
    return code;
}

static void quiet(void *arg, const char *message)
{
    /* NOTICEs ("relation already exists, skipping") are not errors; drop them. */
}

static int pg_open(const char *target, void **conn, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(target);
    if (c == NULL)
        return fail(IBEX_ECONN, err, errlen, "connect", "out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        fail(IBEX_ECONN, err, errlen, "connect", PQerrorMessage(c));
        PQfinish(c);
        return IBEX_ECONN;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    *conn = c;
    return 0;
}

static void pg_close(void *conn)
{
    PQfinish(conn);
}

/* A lost connection is re-established once per call; its statements are not retried here. */
static int ready(PGconn *c, char *err, size_t errlen)
{
    if (PQstatus(c) == CONNECTION_OK)
        return 0;
    PQreset(c);
    if (PQstatus(c) != CONNECTION_OK)
        return fail(IBEX_ECONN, err, errlen, "reconnect", PQerrorMessage(c));
    return 0;
}

/* Only the primary message and SQLSTATE: DETAIL lines quote row values ("Key (sha256)=(...)
 * already exists"), which may be secrets or personal data. */
static int result_error(PGconn *c, PGresult *r, char *err, size_t errlen, const char *what)
{
    if (PQstatus(c) != CONNECTION_OK || r == NULL)
        return fail(IBEX_ECONN, err, errlen, what, PQerrorMessage(c));
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char msg[300];
    snprintf(msg, sizeof(msg), "%s (SQLSTATE %s)", primary ? primary : PQresultErrorMessage(r),
             state ? state : "?");
    return fail(IBEX_EDB, err, errlen, what, msg);
}

struct params {
    Oid types[STACK_PARAMS];
    const char *values[STACK_PARAMS];
    int lengths[STACK_PARAMS];
    int formats[STACK_PARAMS];
    uint64_t ints[STACK_PARAMS];
    Oid *t;
    const char **v;
    int *l, *f;
    uint64_t *i;
};

static int params_init(struct params *ps, const struct ibex_store_value *in, size_t n, char *err,
                       size_t errlen)
{
    if (n <= STACK_PARAMS) {
        ps->t = ps->types, ps->v = ps->values, ps->l = ps->lengths, ps->f = ps->formats;
        ps->i = ps->ints;
    } else {
        ps->t = ibex_xcalloc(n, sizeof(Oid)), ps->v = ibex_xcalloc(n, sizeof(char *));
        ps->l = ibex_xcalloc(n, sizeof(int)), ps->f = ibex_xcalloc(n, sizeof(int));
        ps->i = ibex_xcalloc(n, sizeof(uint64_t));
    }
    for (size_t k = 0; k < n; k++) {
        const struct ibex_store_value *v = &in[k];
        ps->f[k] = 1;
        switch (v->type) {
        case IBEX_STORE_INT:
            ps->i[k] = htobe64((uint64_t)v->i);
            ps->t[k] = OID_INT8, ps->v[k] = (const char *)&ps->i[k], ps->l[k] = 8;
            break;
        case IBEX_STORE_TEXT:
        case IBEX_STORE_BLOB:
            if (v->len > 0x3fffffff)
                return fail(IBEX_EINVAL, err, errlen, "bind", "value over 1 GiB");
            ps->t[k] = v->type == IBEX_STORE_TEXT ? OID_TEXT : OID_BYTEA;
            ps->v[k] = v->p ? v->p : "", ps->l[k] = (int)v->len;
            break;
        case IBEX_STORE_NULL:
            ps->t[k] = 0, ps->v[k] = NULL, ps->l[k] = 0;
            break;
        default:
            return fail(IBEX_EINVAL, err, errlen, "bind", "parameter of an unknown type");
        }
    }
    return 0;
}

static void params_dispose(struct params *ps)
{
    if (ps->t != ps->types) {
        free(ps->t), free(ps->v), free(ps->l), free(ps->f), free(ps->i);
    }
}

static int send_one(PGconn *c, const struct ibex_store_stmt *s, bool pipelined, PGresult **res,
                    char *err, size_t errlen)
{
    struct params ps;
    int rc = params_init(&ps, s->params, s->nparams, err, errlen);
    if (rc == 0 && pipelined) {
        if (!PQsendQueryParams(c, s->sql, (int)s->nparams, ps.t, ps.v, ps.l, ps.f, 0))
            rc = fail(IBEX_ECONN, err, errlen, "send", PQerrorMessage(c));
    } else if (rc == 0) {
        *res = PQexecParams(c, s->sql, (int)s->nparams, ps.t, ps.v, ps.l, ps.f, 0);
    }
    params_dispose(&ps);
    return rc;
}

static void column(PGresult *r, int row, int col, struct ibex_store_value *v,
                   unsigned char **tofree)
{
    *v = ibex_store_null();
    if (PQgetisnull(r, row, col))
        return;
    const char *s = PQgetvalue(r, row, col);
    size_t len = (size_t)PQgetlength(r, row, col);
    switch (PQftype(r, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        *v = ibex_store_int(strtoll(s, NULL, 10));
        break;
    case OID_BOOL:
        *v = ibex_store_int(s[0] == 't');
        break;
    case OID_BYTEA: {
        size_t n = 0;
        unsigned char *b = PQunescapeBytea((const unsigned char *)s, &n);
        if (b == NULL) {
            fprintf(stderr, "ibex: out of memory\n");
            abort();
        }
        *tofree = b;
        *v = ibex_store_blob(b, n);
        break;
    }
    default:
        *v = ibex_store_textn(s, len);
        break;
    }
}

static int pg_exec(void *conn, const char *sql, const struct ibex_store_value *params,
                   size_t nparams, ibex_store_row_fn on_row, void *data, char *err, size_t errlen)
{
    PGconn *c = conn;
    int rc = ready(c, err, errlen);
    if (rc)
        return rc;
    PGresult *r = NULL;
    struct ibex_store_stmt s = {sql, params, nparams};
    rc = send_one(c, &s, false, &r, err, errlen);
    if (rc)
        return rc;
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        rc = result_error(c, r, err, errlen, "exec");
        PQclear(r);
        return rc;
    }
    int ncols = PQnfields(r), nrows = PQntuples(r);
    if (ncols > MAX_COLS) {
        PQclear(r);
        snprintf(err, errlen, "postgres: %d columns, at most %d", ncols, MAX_COLS);
        return IBEX_EINVAL;
    }
    for (int row = 0; on_row && rc == 0 && row < nrows; row++) {
        struct ibex_store_value cols[MAX_COLS];
        unsigned char *tofree[MAX_COLS];
        for (int k = 0; k < ncols; k++) {
            tofree[k] = NULL;
            column(r, row, k, &cols[k], &tofree[k]);
        }
        rc = on_row(data, cols, (size_t)ncols);
        for (int k = 0; k < ncols; k++)
            PQfreemem(tofree[k]);
    }
    PQclear(r);
    return rc;
}

static int pg_script(void *conn, const char *sql, char *err, size_t errlen)
{
    PGconn *c = conn;
    int rc = ready(c, err, errlen);
    if (rc)
        return rc;
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
        rc = result_error(c, r, err, errlen, "script");
    PQclear(r);
    return rc;
}

static int pg_batch(void *conn, const struct ibex_store_stmt *stmts, size_t n, size_t *failed_at,
                    char *err, size_t errlen)
{
    PGconn *c = conn;
    int rc = ready(c, err, errlen);
    if (rc)
        return rc;
    if (!PQenterPipelineMode(c))
        return fail(IBEX_ECONN, err, errlen, "pipeline", PQerrorMessage(c));
    size_t sent = 0;
    for (; sent < n; sent++) {
        rc = send_one(c, &stmts[sent], true, NULL, err, errlen);
        if (rc) {
            *failed_at = sent;
            break;
        }
    }
    if (!PQpipelineSync(c)) {
        PQexitPipelineMode(c);
        return rc ? rc : fail(IBEX_ECONN, err, errlen, "pipeline sync", PQerrorMessage(c));
    }
    /* Each statement yields its result(s) then NULL; the sync yields PGRES_PIPELINE_SYNC.
     * After a failure the rest come back PGRES_PIPELINE_ABORTED. */
    size_t idx = 0;
    for (;;) {
        PGresult *r = PQgetResult(c);
        if (r == NULL) {
            if (++idx > sent + 1 || PQstatus(c) != CONNECTION_OK) {
                if (rc == 0) {
                    rc = fail(IBEX_ECONN, err, errlen, "pipeline", PQerrorMessage(c));
                    *failed_at = idx < n ? idx : n;
                }
                break;
            }
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        if (st == PGRES_FATAL_ERROR && rc == 0) {
            rc = result_error(c, r, err, errlen, "batch");
            *failed_at = idx;
        }
        PQclear(r);
    }
    if (!PQexitPipelineMode(c) && rc == 0)
        rc = fail(IBEX_ECONN, err, errlen, "pipeline exit", PQerrorMessage(c));
    return rc;
}

const struct ibex_store_ops ibex_store_postgres_ops = {
    .name = "postgres",
    .begin_sql = "BEGIN",
    /* "ibex" in ASCII: one lock key for every migrator of this database. */
    .lock_sql = "SELECT pg_advisory_xact_lock(1768055160)",
    .table_exists_sql = "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = current_schema() AND table_name = $1",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .script = pg_script,
    .batch = pg_batch,
};
