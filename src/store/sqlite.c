/* SQLite backend: one sqlite3 connection per handle, WAL journal, prepared statements cached
 * by their SQL text. Portable $N placeholders are rewritten to ?N, which SQLite binds by number,
 * so "$2 ... $1" binds the way it does on Postgres.
 * Invariant: a cached statement is always reset with its bindings cleared when a call returns,
 * so no bound pointer outlives the caller's buffers. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "store_backend.h"

#define CACHE_SIZE 32
#define MAX_COLS 64

struct cached {
    char *sql; /* the portable text, as the caller gave it */
    sqlite3_stmt *st;
};

struct sq {
    sqlite3 *db;
    struct cached cache[CACHE_SIZE];
    size_t next_evict;
};

char *ibex_store_sql_to_sqlite(const char *sql)
{
    size_t n = strlen(sql);
    char *out = ibex_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char c = sql[i];
        if (c == '\'' || c == '"') {
            /* A quoted literal or identifier; a doubled quote stays inside it. */
            size_t j = i + 1;
            while (j < n) {
                if (sql[j] != c) {
                    j++;
                } else if (j + 1 < n && sql[j + 1] == c) {
                    j += 2;
                } else {
                    j++;
                    break;
                }
            }
            memcpy(out + o, sql + i, j - i);
            o += j - i;
            i = j;
        } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
            const char *nl = strchr(sql + i, '\n');
            size_t j = nl ? (size_t)(nl - sql) : n;
            memcpy(out + o, sql + i, j - i);
            o += j - i;
            i = j;
        } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
            const char *end = strstr(sql + i + 2, "*/");
            size_t j = end ? (size_t)(end - sql) + 2 : n;
            memcpy(out + o, sql + i, j - i);
            o += j - i;
            i = j;
        } else if (c == '$' && i + 1 < n && sql[i + 1] >= '1' && sql[i + 1] <= '9') {
            out[o++] = '?';
            i++;
        } else {
            out[o++] = c;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static int fail(sqlite3 *db, int code, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
    return code;
}

static void sq_close(void *conn)
{
    struct sq *c = conn;
    if (c == NULL)
        return;
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        sqlite3_finalize(c->cache[i].st);
        free(c->cache[i].sql);
    }
    sqlite3_close(c->db);
    free(c);
}

static int sq_script(void *conn, const char *sql, char *err, size_t errlen)
{
    struct sq *c = conn;
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s", msg ? msg : sqlite3_errmsg(c->db));
        sqlite3_free(msg);
        return IBEX_EDB;
    }
    return 0;
}

static int sq_open(const char *target, void **conn, char *err, size_t errlen)
{
    struct sq *c = ibex_xcalloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    bool memory = strcmp(target, ":memory:") == 0;
    if (sqlite3_open_v2(target, &c->db, flags, NULL) != SQLITE_OK) {
        fail(c->db, 0, err, errlen, "open");
        sq_close(c);
        return IBEX_ECONN;
    }
    sqlite3_extended_result_codes(c->db, 1);
    /* 16 KiB pages, for a new database only (an existing one keeps the size it was made
     * with): a checkpoint row is 1.5-2 KB, two to a 4 KiB page, and there the store writer
     * spent about twice the CPU per row (bench/RESULTS.md, issue 4). WAL lets readers run
     * while the writer commits; NORMAL syncs at checkpoints only, which in WAL mode loses no
     * committed transaction on a process crash. */
    const char *pragmas = memory ? "PRAGMA foreign_keys=ON;"
                                 : "PRAGMA page_size=16384; PRAGMA journal_mode=WAL;"
                                   "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;";
    sqlite3_busy_timeout(c->db, 5000);
    int rc = sq_script(c, pragmas, err, errlen);
    if (rc) {
        sq_close(c);
        return IBEX_ECONN;
    }
    *conn = c;
    return 0;
}

/* A ready statement for sql: from the cache, or prepared and cached. */
static int prepare(struct sq *c, const char *sql, sqlite3_stmt **out, char *err, size_t errlen)
{
    for (size_t i = 0; i < CACHE_SIZE; i++)
        if (c->cache[i].sql && strcmp(c->cache[i].sql, sql) == 0) {
            *out = c->cache[i].st;
            return 0;
        }
    char *tr = ibex_store_sql_to_sqlite(sql);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->db, tr, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    bool extra = false;
    for (const char *t = tail; rc == SQLITE_OK && t && *t; t++)
        extra |= *t != ' ' && *t != '\n' && *t != '\t' && *t != '\r' && *t != ';';
    free(tr);
    if (rc != SQLITE_OK || st == NULL || extra) {
        sqlite3_finalize(st);
        if (rc == SQLITE_OK) {
            snprintf(err, errlen, "sqlite: prepare: %s",
                     extra ? "one statement per call (use a script or a batch)"
                           : "empty statement");
            return IBEX_EINVAL;
        }
        return fail(c->db, IBEX_EDB, err, errlen, "prepare");
    }
    struct cached *slot = &c->cache[c->next_evict];
    c->next_evict = (c->next_evict + 1) % CACHE_SIZE;
    sqlite3_finalize(slot->st);
    free(slot->sql);
    slot->sql = ibex_xstrdup(sql);
    slot->st = st;
    *out = st;
    return 0;
}

static int bind(sqlite3_stmt *st, const struct ibex_store_value *params, size_t n, char *err,
                size_t errlen)
{
    if ((size_t)sqlite3_bind_parameter_count(st) != n) {
        snprintf(err, errlen, "sqlite: statement takes %d parameters, %zu given",
                 sqlite3_bind_parameter_count(st), n);
        return IBEX_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct ibex_store_value *v = &params[i];
        int k = (int)i + 1, rc;
        switch (v->type) {
        case IBEX_STORE_INT:
            rc = sqlite3_bind_int64(st, k, v->i);
            break;
        case IBEX_STORE_TEXT:
            rc = sqlite3_bind_text64(st, k, v->p ? v->p : "", v->len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case IBEX_STORE_BLOB:
            rc = v->len ? sqlite3_bind_blob64(st, k, v->p, v->len, SQLITE_STATIC)
                        : sqlite3_bind_zeroblob(st, k, 0);
            break;
        case IBEX_STORE_NULL:
            rc = sqlite3_bind_null(st, k);
            break;
        default:
            snprintf(err, errlen, "sqlite: parameter $%d has an unknown type", k);
            return IBEX_EINVAL;
        }
        if (rc != SQLITE_OK)
            return fail(sqlite3_db_handle(st), IBEX_EDB, err, errlen, "bind");
    }
    return 0;
}

static void column(sqlite3_stmt *st, int i, struct ibex_store_value *v)
{
    *v = ibex_store_null();
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        *v = ibex_store_int(sqlite3_column_int64(st, i));
        break;
    case SQLITE_BLOB:
        v->type = IBEX_STORE_BLOB;
        v->p = sqlite3_column_blob(st, i);
        v->len = (size_t)sqlite3_column_bytes(st, i);
        v->p = v->p ? v->p : "";
        break;
    case SQLITE_NULL:
        break;
    default: /* TEXT, and FLOAT as its text */
        v->type = IBEX_STORE_TEXT;
        v->p = (const char *)sqlite3_column_text(st, i);
        v->len = (size_t)sqlite3_column_bytes(st, i);
        v->p = v->p ? v->p : "";
        break;
    }
}

static int sq_exec(void *conn, const char *sql, const struct ibex_store_value *params,
                   size_t nparams, ibex_store_row_fn on_row, void *data, char *err, size_t errlen)
{
    struct sq *c = conn;
    sqlite3_stmt *st;
    int rc = prepare(c, sql, &st, err, errlen);
    if (rc)
        return rc;
    rc = bind(st, params, nparams, err, errlen);
    int ncols = sqlite3_column_count(st);
    if (rc == 0 && ncols > MAX_COLS) {
        snprintf(err, errlen, "sqlite: %d columns, at most %d", ncols, MAX_COLS);
        rc = IBEX_EINVAL;
    }
    while (rc == 0) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = fail(c->db, IBEX_EDB, err, errlen, "step");
            break;
        }
        if (on_row == NULL)
            continue;
        struct ibex_store_value cols[MAX_COLS];
        for (int i = 0; i < ncols; i++)
            column(st, i, &cols[i]);
        rc = on_row(data, cols, (size_t)ncols);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int sq_batch(void *conn, const struct ibex_store_stmt *stmts, size_t n, size_t *failed_at,
                    char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int rc =
            sq_exec(conn, stmts[i].sql, stmts[i].params, stmts[i].nparams, NULL, NULL, err, errlen);
        if (rc) {
            *failed_at = i;
            return rc;
        }
    }
    return 0;
}

const struct ibex_store_ops ibex_store_sqlite_ops = {
    .name = "sqlite",
    .begin_sql = "BEGIN IMMEDIATE",
    .lock_sql = NULL,
    .table_exists_sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .script = sq_script,
    .batch = sq_batch,
};
