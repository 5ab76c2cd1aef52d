/* Helpers of the suites that run on a real store (store, identity, revocation); include after
 * cmocka.h.
 * - tu_store_must: fails the test with the store's message unless rc is 0.
 * - tu_remove_sqlite_files: removes a SQLite database file with its -wal and -shm files.
 * - tu_store_run_tests: runs a suite on both backends, or, without IBEX_TEST_PG_URL, the cases
 *   whose setup is not pg_setup after a SKIP line giving the reason (IBEX_TEST_PG_SKIP).
 * - tu_redis_env: IBEX_TEST_REDIS_URL (or NULL), parsed into parts; exits on a bad URL.
 * - tu_need_redis: whether IBEX_TEST_REDIS_URL is set; prints SKIP with the reason when not
 *   (tu_redis_skip_reason).
 * - tu_redis_raw: a plain hiredis connection of the test's own (AUTH done), for raw commands.
 * - tu_redis_clients: counts (or kills) this process's connections named "<role>:<pid>". */
#ifndef IBEX_TESTS_UNIT_STOREUTIL_H
#define IBEX_TESTS_UNIT_STOREUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../src/store/redis.h"
#include "../../src/store/store.h"

static inline void tu_store_must(struct ibex_store *st, int rc)
{
    if (rc != 0)
        fail_msg("store call failed (%d): %s", rc, ibex_store_errmsg(st));
}

static inline void tu_remove_sqlite_files(const char *path)
{
    char p[512];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

/* Returns the exit status of the run; *pg_url is IBEX_TEST_PG_URL, or NULL. */
static inline int tu_store_run_tests(const char *suite, const struct CMUnitTest *tests, size_t n,
                                     CMFixtureFunction pg_setup, const char **pg_url)
{
    const char *url = getenv("IBEX_TEST_PG_URL");
    *pg_url = url && *url ? url : NULL;
    if (*pg_url)
        return _cmocka_run_group_tests(suite, tests, n, NULL, NULL);
    const char *why = getenv("IBEX_TEST_PG_SKIP");
    printf("SKIP %s on postgres: %s\n", suite,
           why && *why ? why : "IBEX_TEST_PG_URL is not set (make unit starts scripts/pg.sh)");
    struct CMUnitTest *sqlite_only = calloc(n, sizeof(*sqlite_only));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (tests[i].setup_func != pg_setup)
            sqlite_only[k++] = tests[i];
    int rc = _cmocka_run_group_tests(suite, sqlite_only, k, NULL, NULL);
    free(sqlite_only);
    return rc;
}

static inline const char *tu_redis_env(struct ibex_redis_url *parts)
{
    const char *url = getenv("IBEX_TEST_REDIS_URL");
    if (url == NULL || *url == '\0')
        return NULL;
    char err[256];
    if (ibex_redis_parse_url(url, parts, err, sizeof(err)) != 0) {
        fprintf(stderr, "IBEX_TEST_REDIS_URL: %s\n", err);
        exit(1);
    }
    return url;
}

static inline const char *tu_redis_skip_reason(void)
{
    const char *why = getenv("IBEX_TEST_REDIS_SKIP");
    return why && *why ? why : "IBEX_TEST_REDIS_URL is not set (make unit starts scripts/redis.sh)";
}

static inline bool tu_need_redis(const char *url)
{
    if (url && *url)
        return true;
    printf("SKIP: %s\n", tu_redis_skip_reason());
    return false;
}

static inline redisContext *tu_redis_raw(const struct ibex_redis_url *u)
{
    redisContext *c = redisConnectWithTimeout(u->host, u->port, (struct timeval){2, 0});
    if (c == NULL || c->err)
        fail_msg("raw redis connect: %s", c ? c->errstr : "oom");
    if (u->password[0]) {
        redisReply *rep = redisCommand(c, "AUTH %s", u->password);
        assert_non_null(rep);
        assert_int_equal(rep->type, REDIS_REPLY_STATUS);
        freeReplyObject(rep);
    }
    return c;
}

static inline int tu_redis_clients(redisContext *c, const char *role, bool kill)
{
    char name[96];
    snprintf(name, sizeof(name), " name=%s:%d ", role, (int)getpid());
    redisReply *list = redisCommand(c, "CLIENT LIST");
    assert_non_null(list);
    assert_int_equal(list->type, REDIS_REPLY_STRING);
    int n = 0;
    for (char *line = list->str; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        long long id;
        if (strstr(line, name) && sscanf(line, "id=%lld", &id) == 1) {
            if (kill) {
                redisReply *rep = redisCommand(c, "CLIENT KILL ID %lld", id);
                assert_non_null(rep);
                assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
                freeReplyObject(rep);
            }
            n++;
        }
        line = end ? end + 1 : NULL;
    }
    freeReplyObject(list);
    return n;
}

#endif
