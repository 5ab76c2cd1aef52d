/* The generic store: picks a backend from the URL, owns transactions (batch, migrations), the
 * schema_migrations bookkeeping and the scrubbing of passwords from every message.
 * Invariants: store->errmsg never contains the URL's password (raw or percent-decoded); a batch
 * or a migration either commits whole or is rolled back before the call returns. */
#include "store.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "store_backend.h"

#define ERRMSG_MAX 512
#define MAX_SECRETS 2

struct ibex_store {
    const struct ibex_store_ops *ops;
    void *conn;
    char *secrets[MAX_SECRETS]; /* the password as written and percent-decoded; may be NULL */
    char errmsg[ERRMSG_MAX];
};

struct ibex_store_value ibex_store_text(const char *s)
{
    return s ? ibex_store_textn(s, strlen(s)) : ibex_store_null();
}

const char *ibex_store_backend(const struct ibex_store *store)
{
    return store->ops->name;
}

const char *ibex_store_errmsg(const struct ibex_store *store)
{
    return store->errmsg;
}

/* Where the password of a scheme://user:pass@host URL sits: [*start, *end), or false. */
static bool userinfo_password(const char *url, const char **start, const char **end)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return false;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth; i++)
        if (p[i] == '@')
            at = p + i;
    if (at == NULL)
        return false;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon == NULL)
        return false;
    *start = colon + 1;
    *end = at;
    return true;
}

/* Where the value of a password=... query parameter sits, or false. */
static bool query_password(const char *url, const char **start, const char **end)
{
    const char *q = strchr(url, '?');
    for (const char *p = q; p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, "password=", 9) == 0) {
            *start = p + 10;
            *end = *start + strcspn(*start, "&#");
            return true;
        }
    }
    return false;
}

void ibex_store_redact_url(const char *url, char *out, size_t outlen)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", url);
    const char *s, *e;
    for (int pass = 0; pass < 2; pass++) {
        bool found = pass == 0 ? userinfo_password(tmp, &s, &e) : query_password(tmp, &s, &e);
        if (!found || e == s)
            continue;
        char buf[1024];
        snprintf(buf, sizeof(buf), "%.*s***%s", (int)(s - tmp), tmp, e);
        snprintf(tmp, sizeof(tmp), "%s", buf);
    }
    snprintf(out, outlen, "%s", tmp);
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

static char *percent_decode(const char *s, size_t len)
{
    char *out = ibex_xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static void remember_secrets(struct ibex_store *st, const char *url)
{
    const char *s, *e;
    if (!userinfo_password(url, &s, &e) && !query_password(url, &s, &e))
        return;
    if (e == s)
        return;
    st->secrets[0] = ibex_xstrndup(s, (size_t)(e - s));
    st->secrets[1] = percent_decode(s, (size_t)(e - s));
}

/* Replaces every occurrence of each secret in msg with "***". */
static void scrub(char *msg, size_t cap, char *const *secrets)
{
    for (int k = 0; k < MAX_SECRETS; k++) {
        const char *sec = secrets[k];
        size_t n = sec ? strlen(sec) : 0;
        if (n == 0)
            continue;
        char *hit;
        while ((hit = strstr(msg, sec)) != NULL) {
            char rest[ERRMSG_MAX];
            snprintf(rest, sizeof(rest), "%s", hit + n);
            snprintf(hit, cap - (size_t)(hit - msg), "***%s", rest);
        }
    }
}

/* Finishes a call: scrubs the message of a failure. */
static int done(struct ibex_store *st, int rc)
{
    if (rc < 0) {
        if (st->errmsg[0] == '\0')
            snprintf(st->errmsg, sizeof(st->errmsg), "%s: error %d", st->ops->name, rc);
        scrub(st->errmsg, sizeof(st->errmsg), st->secrets);
    }
    return rc;
}

int ibex_store_open(const char *url, struct ibex_store **out, char *err, size_t errlen)
{
    const struct ibex_store_ops *ops = NULL;
    const char *target = NULL;
    if (url == NULL)
        url = "";
    if (strcmp(url, "sqlite::memory:") == 0) {
        ops = &ibex_store_sqlite_ops, target = ":memory:";
    } else if (strncmp(url, "sqlite://", 9) == 0) {
        ops = &ibex_store_sqlite_ops, target = url + 9;
    } else if (strncmp(url, "sqlite:", 7) == 0) {
        ops = &ibex_store_sqlite_ops, target = url + 7;
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        ops = &ibex_store_postgres_ops, target = url;
    }
    char shown[256];
    ibex_store_redact_url(url, shown, sizeof(shown));
    if (ops == NULL || *target == '\0') {
        snprintf(err, errlen,
                 "store URL '%s': want sqlite://PATH, sqlite:///ABS/PATH, sqlite::memory: or "
                 "postgres://USER:PASS@HOST:PORT/DB",
                 shown);
        return IBEX_EINVAL;
    }
    struct ibex_store *st = ibex_xcalloc(1, sizeof(*st));
    st->ops = ops;
    remember_secrets(st, url);
    int rc = ops->open(target, &st->conn, st->errmsg, sizeof(st->errmsg));
    if (rc) {
        done(st, rc);
        snprintf(err, errlen, "store '%s': %s", shown, st->errmsg);
        scrub(err, errlen, st->secrets);
        st->conn = NULL;
        ibex_store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void ibex_store_close(struct ibex_store *store)
{
    if (store == NULL)
        return;
    if (store->conn)
        store->ops->close(store->conn);
    for (int k = 0; k < MAX_SECRETS; k++)
        free(store->secrets[k]);
    free(store);
}

int ibex_store_exec(struct ibex_store *store, const char *sql,
                    const struct ibex_store_value *params, size_t nparams, ibex_store_row_fn on_row,
                    void *data)
{
    store->errmsg[0] = '\0';
    int rc = store->ops->exec(store->conn, sql, params, nparams, on_row, data, store->errmsg,
                              sizeof(store->errmsg));
    return done(store, rc);
}

int ibex_store_script(struct ibex_store *store, const char *sql)
{
    store->errmsg[0] = '\0';
    return done(store, store->ops->script(store->conn, sql, store->errmsg, sizeof(store->errmsg)));
}

/* A transaction's BEGIN, COMMIT or ROLLBACK: one statement, run like any other through exec,
 * whose statement cache (SQLite) spares parsing and preparing it again on every batch. */
static int tx(struct ibex_store *store, const char *sql, char *err, size_t errlen)
{
    return store->ops->exec(store->conn, sql, NULL, 0, NULL, NULL, err, errlen);
}

/* Rolls back without overwriting the message of the failure that caused it. */
static void rollback(struct ibex_store *store)
{
    char ignored[ERRMSG_MAX];
    tx(store, "ROLLBACK", ignored, sizeof(ignored));
}

int ibex_store_batch(struct ibex_store *store, const struct ibex_store_stmt *stmts, size_t n,
                     size_t *failed_at)
{
    size_t at_dummy;
    failed_at = failed_at ? failed_at : &at_dummy;
    *failed_at = 0;
    store->errmsg[0] = '\0';
    if (n == 0)
        return 0;
    const struct ibex_store_ops *ops = store->ops;
    int rc = tx(store, ops->begin_sql, store->errmsg, sizeof(store->errmsg));
    if (rc)
        return done(store, rc);
    rc = ops->batch(store->conn, stmts, n, failed_at, store->errmsg, sizeof(store->errmsg));
    if (rc == 0) {
        rc = tx(store, "COMMIT", store->errmsg, sizeof(store->errmsg));
        if (rc)
            *failed_at = n;
    }
    if (rc)
        rollback(store);
    return done(store, rc);
}

static int row_int(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    int64_t *v = data;
    *v = ncols > 0 && cols[0].type == IBEX_STORE_INT ? cols[0].i : 0;
    return 0;
}

int ibex_store_schema_version(struct ibex_store *store, int64_t *version)
{
    int64_t exists = 0;
    struct ibex_store_value name = ibex_store_text("schema_migrations");
    *version = 0;
    int rc = ibex_store_exec(store, store->ops->table_exists_sql, &name, 1, row_int, &exists);
    if (rc == 0 && exists)
        rc = ibex_store_exec(store, "SELECT max(version) FROM schema_migrations", NULL, 0, row_int,
                             version);
    return rc;
}

int ibex_store_begin(struct ibex_store *store)
{
    store->errmsg[0] = '\0';
    return done(store, tx(store, store->ops->begin_sql, store->errmsg, sizeof(store->errmsg)));
}

int ibex_store_commit(struct ibex_store *store)
{
    store->errmsg[0] = '\0';
    int rc = done(store, tx(store, "COMMIT", store->errmsg, sizeof(store->errmsg)));
    if (rc)
        rollback(store);
    return rc;
}

void ibex_store_rollback(struct ibex_store *store)
{
    rollback(store);
}

static int begin_locked(struct ibex_store *store)
{
    int rc = ibex_store_begin(store);
    if (rc == 0 && store->ops->lock_sql) {
        rc = ibex_store_exec(store, store->ops->lock_sql, NULL, 0, NULL, NULL);
        if (rc)
            rollback(store);
    }
    return rc;
}

/* The message of a failure inside a migration step, prefixed with what was being done. */
static int step_failed(struct ibex_store *store, int rc, const char *what)
{
    char *msg = store->errmsg;
    size_t wl = strlen(what) + 2, ml = strlen(msg);
    if (wl >= ERRMSG_MAX)
        return rc;
    if (wl + ml >= ERRMSG_MAX)
        ml = ERRMSG_MAX - 1 - wl; /* keep the start: it names the problem */
    memmove(msg + wl, msg, ml);
    memcpy(msg, what, wl - 2);
    memcpy(msg + wl - 2, ": ", 2);
    msg[wl + ml] = '\0';
    return rc;
}

int ibex_store_migrate(struct ibex_store *store, ibex_store_migrated_fn on_applied, void *data,
                       int64_t *version)
{
    size_t n;
    const struct ibex_store_migration *list = ibex_store_migrations(&n);
    int64_t known = n ? list[n - 1].version : 0, cur = 0, dummy;
    version = version ? version : &dummy;
    *version = 0;

    int rc = begin_locked(store);
    if (rc)
        return step_failed(store, rc, "migrate: begin");
    rc = ibex_store_script(store, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                  "version BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                                  "applied_at BIGINT NOT NULL)");
    if (rc) {
        rollback(store);
        return step_failed(store, rc, "migrate: schema_migrations");
    }
    if ((rc = ibex_store_commit(store)) != 0)
        return step_failed(store, rc, "migrate: schema_migrations");

    for (size_t i = 0; i < n; i++) {
        const struct ibex_store_migration *m = &list[i];
        char what[128];
        snprintf(what, sizeof(what), "migration %04" PRId64 "_%s", m->version, m->name);
        if ((rc = begin_locked(store)) != 0)
            return step_failed(store, rc, what);
        /* Read under the lock: another process may have migrated since the last step. */
        rc = ibex_store_schema_version(store, &cur);
        if (rc == 0 && cur > known) {
            rollback(store);
            snprintf(store->errmsg, sizeof(store->errmsg),
                     "the database schema is at version %" PRId64 " but this ibex knows up to "
                     "version %" PRId64 ": run a newer ibex, or point store_url elsewhere",
                     cur, known);
            *version = cur;
            return IBEX_ESCHEMA;
        }
        if (rc == 0 && cur >= m->version) {
            rollback(store);
            continue;
        }
        if (rc == 0)
            rc = ibex_store_script(store, m->sql);
        if (rc == 0) {
            struct ibex_store_value p[3] = {ibex_store_int(m->version), ibex_store_text(m->name),
                                            ibex_store_int((int64_t)ibex_clock_wall_ms())};
            rc = ibex_store_exec(store,
                                 "INSERT INTO schema_migrations (version, name, applied_at) "
                                 "VALUES ($1, $2, $3)",
                                 p, 3, NULL, NULL);
        }
        if (rc) {
            rollback(store);
            return step_failed(store, rc, what);
        }
        if ((rc = ibex_store_commit(store)) != 0)
            return step_failed(store, rc, what);
        if (on_applied)
            on_applied(data, m);
    }
    /* Also refuses a database that is ahead when every known migration was already applied. */
    rc = ibex_store_schema_version(store, &cur);
    if (rc)
        return step_failed(store, rc, "migrate: read version");
    *version = cur;
    if (cur > known) {
        snprintf(store->errmsg, sizeof(store->errmsg),
                 "the database schema is at version %" PRId64 " but this ibex knows up to "
                 "version %" PRId64 ": run a newer ibex, or point store_url elsewhere",
                 cur, known);
        return IBEX_ESCHEMA;
    }
    return 0;
}
