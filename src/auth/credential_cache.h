/* The decrypt cache of provider credentials: one process-wide map from a credential (tenant,
 * id) to the plaintext of its latest version seen, so a credential is decrypted at most once
 * per change (version) per process. Plaintext lives here, in reference-counted secrets wiped
 * when the last reference goes (evicted, replaced by a newer version, or the cache freed).
 *
 * Request path (docs/credentials.md): a worker keeps its own short-lived LRU of
 * (tenant, subject, provider) -> struct ibex_credential_choice (auth/credential.h) and reads the
 * store only on a miss, off the loop; that read consults this cache, which is why a lock here
 * is never taken on an event loop.
 *
 * Thread: every function may be called from any thread (one mutex). */
#ifndef IBEX_AUTH_CREDENTIAL_CACHE_H
#define IBEX_AUTH_CREDENTIAL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "credential.h"

struct ibex_credential_cache;

struct ibex_credential_cache_stats {
    uint64_t hits;      /* answered from the cache */
    uint64_t decrypts;  /* rows opened (misses and newer versions) */
    uint64_t failures;  /* rows that would not open */
    uint64_t evictions; /* entries dropped for room */
    size_t size;
};

/* A cache of at most capacity (>= 1) credentials. */
struct ibex_credential_cache *ibex_credential_cache_new(size_t capacity);
/* Wipes and frees every plaintext the cache holds (secrets handed out live on until their
 * holders release them). NULL is ignored. */
void ibex_credential_cache_free(struct ibex_credential_cache *c);
/* The plaintext of row: from the cache when it holds row's (tenant, id) at row's version, else
 * opened with v (under the lock, so concurrent callers decrypt once) and kept. Returns 0 with
 * *out a new reference (release it), or an IBEX_EVAULT_* error (nothing is kept). */
int ibex_credential_cache_get(struct ibex_credential_cache *c, const struct ibex_vault *v,
                              const struct ibex_credential_row *row, struct ibex_secret **out);
/* Drops the entry of (tenant, id), wiping its plaintext unless someone still holds it. */
void ibex_credential_cache_drop(struct ibex_credential_cache *c, const char *tenant_id,
                                const char *id);
void ibex_credential_cache_stats(struct ibex_credential_cache *c,
                                 struct ibex_credential_cache_stats *out);

#endif
