/* Helpers of the suites that run on a real store (store, identity, revocation); include after
 * cmocka.h.
 * - tu_store_must: fails the test with the store's message unless rc is 0.
 * - tu_remove_sqlite_files: removes a SQLite database file with its -wal and -shm files. */
#ifndef IBEX_TESTS_UNIT_STOREUTIL_H
#define IBEX_TESTS_UNIT_STOREUTIL_H

#include <stdio.h>
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

#endif
