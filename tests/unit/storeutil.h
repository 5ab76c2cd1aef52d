/* Helpers of the suites that run on a real store (store, identity, revocation); include after
 * cmocka.h.
 * - tu_store_must: fails the test with the store's message unless rc is 0.
 * - tu_remove_sqlite_files: removes a SQLite database file with its -wal and -shm files.
 * - tu_store_run_tests: runs a suite on both backends, or, without IBEX_TEST_PG_URL, the cases
 *   whose setup is not pg_setup after a SKIP line giving the reason (IBEX_TEST_PG_SKIP). */
#ifndef IBEX_TESTS_UNIT_STOREUTIL_H
#define IBEX_TESTS_UNIT_STOREUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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

#endif
