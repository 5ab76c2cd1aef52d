/* The process-wide decrypt cache of provider credentials (credential_cache.h): a core/lru map,
 * behind one mutex, from SHA-256(tenant NUL id) to the latest version seen and its secret.
 * Invariants: an entry holds one reference to its secret, released by the LRU's dispose (on
 * eviction, replacement, drop and free); decryption happens under the lock, so two threads
 * asking for the same new version decrypt it once. */
#include "credential_cache.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/lru.h"

struct entry {
    int64_t version;
    struct ibex_secret *secret;
};

struct ibex_credential_cache {
    pthread_mutex_t mu;
    struct ibex_lru *lru;
    struct ibex_credential_cache_stats stats;
};

static void entry_dispose(void *value)
{
    struct entry *e = value;
    ibex_secret_release(e->secret);
    e->secret = NULL;
}

static void key_of(const char *tenant_id, const char *id, uint8_t out[IBEX_LRU_KEY_LEN])
{
    size_t t = strlen(tenant_id) + 1, n = strlen(id);
    char buf[2 * 64 + 2];
    if (t + n <= sizeof(buf)) {
        memcpy(buf, tenant_id, t);
        memcpy(buf + t, id, n);
        SHA256((const uint8_t *)buf, t + n, out);
        return;
    }
    char *p = ibex_xmalloc(t + n);
    memcpy(p, tenant_id, t);
    memcpy(p + t, id, n);
    SHA256((const uint8_t *)p, t + n, out);
    free(p);
}

struct ibex_credential_cache *ibex_credential_cache_new(size_t capacity)
{
    struct ibex_credential_cache *c = ibex_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    c->lru = ibex_lru_new(capacity ? capacity : 1, sizeof(struct entry), entry_dispose);
    return c;
}

void ibex_credential_cache_free(struct ibex_credential_cache *c)
{
    if (c == NULL)
        return;
    ibex_lru_free(c->lru);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int ibex_credential_cache_get(struct ibex_credential_cache *c, const struct ibex_vault *v,
                              const struct ibex_credential_row *row, struct ibex_secret **out)
{
    uint8_t key[IBEX_LRU_KEY_LEN];
    key_of(row->tenant_id, row->id, key);
    *out = NULL;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    struct entry *e = ibex_lru_get(c->lru, key, 0, 0);
    if (e && e->version == row->version) {
        c->stats.hits++;
        *out = ibex_secret_retain(e->secret);
        goto out;
    }
    struct ibex_lru_stats before, after;
    ibex_lru_stats(c->lru, &before);
    struct ibex_secret *s = NULL;
    rc = ibex_credential_open(v, row, &s);
    if (rc != 0) {
        c->stats.failures++;
        goto out;
    }
    c->stats.decrypts++;
    struct entry fresh = {row->version, s};
    /* the LRU now holds s's reference; the caller gets one of its own */
    ibex_lru_put(c->lru, key, &fresh, INT64_MAX, 0);
    *out = ibex_secret_retain(s);
    ibex_lru_stats(c->lru, &after);
    c->stats.evictions += after.evictions - before.evictions;
out:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ibex_credential_cache_drop(struct ibex_credential_cache *c, const char *tenant_id,
                                const char *id)
{
    uint8_t key[IBEX_LRU_KEY_LEN];
    key_of(tenant_id, id, key);
    pthread_mutex_lock(&c->mu);
    /* an entry of version -1 matches nothing, and the put releases the old secret */
    if (ibex_lru_get(c->lru, key, 0, 0)) {
        struct entry gone = {-1, NULL};
        ibex_lru_put(c->lru, key, &gone, 0, 0);
    }
    pthread_mutex_unlock(&c->mu);
}

void ibex_credential_cache_stats(struct ibex_credential_cache *c,
                                 struct ibex_credential_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    struct ibex_lru_stats s;
    ibex_lru_stats(c->lru, &s);
    out->size = s.size;
    pthread_mutex_unlock(&c->mu);
}
