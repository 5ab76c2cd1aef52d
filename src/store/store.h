/* The store: one handle on a SQL database, SQLite (embedded default) or Postgres, behind
 * struct ibex_store_ops (store_backend.h). Portable SQL only: placeholders are $1..$n on every
 * backend (translated for SQLite), ids are TEXT, timestamps BIGINT unix milliseconds, JSON TEXT.
 *
 * URLs: sqlite://./ibex.db (relative), sqlite:///abs/path.db, sqlite::memory:,
 * postgres://user:pass@host:port/db (or postgresql://). Passwords never appear in a message:
 * every error text is scrubbed of the URL's password before it is stored.
 *
 * Thread: a handle is one connection; use it from one thread at a time. The store writer
 * (writer.h) owns its handle exclusively. Blocking: every call may wait on disk or network, so
 * no event loop calls these directly (DESIGN.md section 1). */
#ifndef IBEX_STORE_STORE_H
#define IBEX_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Negative error codes of the store (STYLE 9). */
enum ibex_store_error {
    IBEX_EINVAL = -22,     /* bad URL, bad argument, unknown placeholder */
    IBEX_EDB = -1000,      /* the database refused a statement (syntax, constraint, ...) */
    IBEX_ECONN = -1001,    /* cannot connect, or the connection was lost */
    IBEX_ESCHEMA = -1002,  /* the database is at a schema version newer than this binary */
    IBEX_EFULL = -1003,    /* the writer queue is full; the record was not accepted */
    IBEX_ETIMEDOUT = -1004 /* a flush did not finish in time */
};

enum ibex_store_type {
    IBEX_STORE_NULL = 1,
    IBEX_STORE_INT,  /* int64 */
    IBEX_STORE_TEXT, /* UTF-8 without NUL bytes (Postgres refuses NUL in text) */
    IBEX_STORE_BLOB, /* any bytes */
};

/* A parameter or a column value. p/len are used by TEXT and BLOB; in a row callback they point
 * into the backend's buffers and stay valid only during the callback. */
struct ibex_store_value {
    enum ibex_store_type type;
    int64_t i;
    const char *p;
    size_t len;
};

static inline struct ibex_store_value ibex_store_null(void)
{
    return (struct ibex_store_value){IBEX_STORE_NULL, 0, NULL, 0};
}
static inline struct ibex_store_value ibex_store_int(int64_t v)
{
    return (struct ibex_store_value){IBEX_STORE_INT, v, NULL, 0};
}
/* A text value from a C string; NULL gives SQL NULL. */
struct ibex_store_value ibex_store_text(const char *s);
static inline struct ibex_store_value ibex_store_textn(const char *p, size_t len)
{
    return (struct ibex_store_value){IBEX_STORE_TEXT, 0, p, len};
}
static inline struct ibex_store_value ibex_store_blob(const void *p, size_t len)
{
    return (struct ibex_store_value){IBEX_STORE_BLOB, 0, (const char *)p, len};
}

/* Called once per result row. Return 0 to continue; anything else stops the statement and
 * becomes the return value of ibex_store_exec. */
typedef int (*ibex_store_row_fn)(void *data, const struct ibex_store_value *cols, size_t ncols);

/* One statement of a batch. */
struct ibex_store_stmt {
    const char *sql;
    const struct ibex_store_value *params;
    size_t nparams;
};

struct ibex_store;

/* Opens the database named by url. On success *out is a new handle (free with
 * ibex_store_close). On failure returns IBEX_EINVAL or IBEX_ECONN and writes one line without
 * any password to err. Does not migrate. */
int ibex_store_open(const char *url, struct ibex_store **out, char *err, size_t errlen);
void ibex_store_close(struct ibex_store *store);
/* "sqlite" or "postgres". */
const char *ibex_store_backend(const struct ibex_store *store);

/* Runs one statement with nparams parameters ($1..$n), calling on_row (may be NULL) for each
 * result row. Returns 0, a negative IBEX_E* (message in ibex_store_errmsg) or on_row's
 * nonzero value. Outside a batch each statement commits on its own. */
int ibex_store_exec(struct ibex_store *store, const char *sql,
                    const struct ibex_store_value *params, size_t nparams, ibex_store_row_fn on_row,
                    void *data);
/* Runs n statements in one transaction (pipelined on Postgres): all commit or none does.
 * Result rows are discarded. Returns 0 or a negative IBEX_E*; on error nothing is committed
 * and *failed_at (may be NULL) is the index of the statement that failed (n when the commit
 * itself failed). */
int ibex_store_batch(struct ibex_store *store, const struct ibex_store_stmt *stmts, size_t n,
                     size_t *failed_at);
/* Explicit transactions, for a unit of work that reads between its writes: begin opens a write
 * transaction, commit ends it (rolling back when the commit fails), rollback abandons it. */
int ibex_store_begin(struct ibex_store *store);
int ibex_store_commit(struct ibex_store *store);
void ibex_store_rollback(struct ibex_store *store);
/* Runs a script of several statements without parameters (DDL), outside a transaction. */
int ibex_store_script(struct ibex_store *store, const char *sql);
/* The message of the last failed call on this handle ("" when none); never holds a password. */
const char *ibex_store_errmsg(const struct ibex_store *store);

/* Migrations embedded at build time from src/store/migrations/NNNN_name.sql. */
struct ibex_store_migration {
    int64_t version;
    const char *name;
    const char *sql;
};
/* The migrations this binary knows, ascending by version. */
const struct ibex_store_migration *ibex_store_migrations(size_t *n);

/* Called once per migration applied (may be NULL). */
typedef void (*ibex_store_migrated_fn)(void *data, const struct ibex_store_migration *m);

/* Applies every pending migration in order, each in its own transaction with its
 * schema_migrations row. Idempotent. Returns 0, IBEX_ESCHEMA when the database has a version
 * this binary does not know (nothing is changed), or another negative IBEX_E*. *version (may be
 * NULL) is the database's version afterwards. */
int ibex_store_migrate(struct ibex_store *store, ibex_store_migrated_fn on_applied, void *data,
                       int64_t *version);
/* Current schema version: 0 when schema_migrations does not exist or is empty. */
int ibex_store_schema_version(struct ibex_store *store, int64_t *version);

/* Copies url to out with its password (user:PASS@ and password=PASS) replaced by "***". */
void ibex_store_redact_url(const char *url, char *out, size_t outlen);

#endif
