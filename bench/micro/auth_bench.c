/* The CPU cost of authenticating a request whose credential is in the worker's cache: what
 * auth.c does on the loop for a hit (SHA-256 of the bearer token, LRU lookup under the current
 * epoch, expiry and scope checks), timed over many iterations on one thread with the thread's
 * CPU clock. A cache of `keys` credentials is filled first; lookups cycle through them.
 *
 * Usage: auth_bench [iterations] [keys]; prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/auth/keys.h"
#include "../../src/auth/principal.h"
#include "../../src/core/lru.h"

struct cred {
    int failure;
    struct ibex_principal principal;
};

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
    long nkeys = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
    if (iterations < 1 || nkeys < 1)
        return 2;
    struct ibex_lru *cache = ibex_lru_new(10000, sizeof(struct cred), NULL);
    char(*keys)[IBEX_KEY_LEN + 1] = calloc((size_t)nkeys, sizeof(*keys));
    for (long i = 0; i < nkeys; i++) {
        ibex_key_generate(keys[i]);
        uint8_t d[32];
        ibex_sha256(keys[i], IBEX_KEY_LEN, d);
        struct cred c = {.failure = -1};
        c.principal.scopes = IBEX_SCOPE_CHAT;
        ibex_lru_put(cache, d, &c, INT64_MAX, 0);
    }
    long ok = 0;
    double t0 = cpu_ns();
    for (long i = 0; i < iterations; i++) {
        const char *k = keys[i % nkeys];
        uint8_t d[32];
        ibex_sha256(k, IBEX_KEY_LEN, d);
        const struct cred *c = ibex_lru_get(cache, d, 1, 0);
        ok += c && c->failure < 0 && ibex_scopes_allow(c->principal.scopes, IBEX_SCOPE_CHAT);
    }
    double ns = (cpu_ns() - t0) / (double)iterations;
    struct ibex_lru_stats st;
    ibex_lru_stats(cache, &st);
    printf("{\"bench\":\"auth_cache_hit\",\"iterations\":%ld,\"keys\":%ld,\"ns_per_auth\":%.1f,"
           "\"hit_ratio\":%.4f}\n",
           iterations, nkeys, ns, (double)st.hits / (double)(st.hits + st.misses));
    free(keys);
    ibex_lru_free(cache);
    return ok == iterations ? 0 : 1;
}
