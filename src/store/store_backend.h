/* The contract between the generic store (store.c) and a backend (sqlite.c, postgres.c).
 * A backend only translates: it connects, binds typed values, runs statements and converts
 * result columns. The generic layer owns URLs, transactions, migrations, password scrubbing of
 * messages and the writer. Every function returns 0 or a negative IBEX_E* and, on failure,
 * writes one line to err (the generic layer scrubs it). */
#ifndef IBEX_STORE_BACKEND_H
#define IBEX_STORE_BACKEND_H

#include <stddef.h>

#include "store.h"

struct ibex_store_ops {
    const char *name;
    /* Statement that opens a write transaction ("BEGIN IMMEDIATE" on SQLite, so a writer takes
     * its lock up front instead of failing to upgrade a read lock). */
    const char *begin_sql;
    /* Run first in every migration transaction so concurrent migrators take turns (NULL when
     * begin_sql already serialises writers). */
    const char *lock_sql;
    /* One row, one INT column: 1 when table $1 exists, else 0. */
    const char *table_exists_sql;
    /* target is what follows the scheme (SQLite: a path or ":memory:") or the whole URL
     * (Postgres). On success *conn is the backend's connection. */
    int (*open)(const char *target, void **conn, char *err, size_t errlen);
    void (*close)(void *conn);
    int (*exec)(void *conn, const char *sql, const struct ibex_store_value *params, size_t nparams,
                ibex_store_row_fn on_row, void *data, char *err, size_t errlen);
    /* Several statements without parameters. */
    int (*script)(void *conn, const char *sql, char *err, size_t errlen);
    /* Runs n statements inside a transaction the caller opened and will close; rows are
     * discarded. On failure *failed_at is the index of the failing statement. */
    int (*batch)(void *conn, const struct ibex_store_stmt *stmts, size_t n, size_t *failed_at,
                 char *err, size_t errlen);
};

extern const struct ibex_store_ops ibex_store_sqlite_ops;
extern const struct ibex_store_ops ibex_store_postgres_ops;

/* Rewrites $1..$n placeholders to SQLite's ?1..?n outside quotes and comments; returns a new
 * string (free it). */
char *ibex_store_sql_to_sqlite(const char *sql);

#endif
