/* Stored provider credentials (table credentials, docs/credentials.md) at the level of their
 * secrets: sealing a secret to its row, opening it, choosing the credential a request uses, and
 * re-encrypting every row under a new master key.
 *
 * A secret is sealed with the vault's current key and bound (AAD) to its tenant and credential
 * id: "ibex credential v1" NUL tenant_id NUL id. A row copied to another tenant or id does not
 * open.
 *
 * Thread: blocking (store calls), any thread that owns the store handle, never an event loop. */
#ifndef IBEX_AUTH_CREDENTIAL_H
#define IBEX_AUTH_CREDENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/id.h"
#include "../store/store.h"
#include "vault.h"

#define IBEX_CREDENTIAL_SECRET_MIN 8
#define IBEX_CREDENTIAL_SECRET_MAX 4096
#define IBEX_CREDENTIAL_PROVIDER_MAX 64

struct ibex_credential_cache;

/* Seals secret[0..len) for credential id of tenant_id. Returns 0 or IBEX_EVAULT_CRYPTO. */
int ibex_credential_seal(const struct ibex_vault *v, const char *tenant_id, const char *id,
                         const char *secret, size_t len, struct ibex_sealed *out);

/* A sealed row as read from the store (pointers valid for the call). */
struct ibex_credential_row {
    const char *tenant_id;
    const char *id;
    int64_t version;
    const char *key_id;
    const uint8_t *nonce;
    size_t nonce_len;
    const uint8_t *ct; /* ciphertext and tag */
    size_t ct_len;
};

/* Opens row with the vault. Returns 0 with *out a new secret (release it), or an
 * IBEX_EVAULT_* error. */
int ibex_credential_open(const struct ibex_vault *v, const struct ibex_credential_row *row,
                         struct ibex_secret **out);

/* Which credential a request of (tenant, subject) to a provider uses. */
enum ibex_credential_source {
    IBEX_CREDENTIAL_NONE = 1, /* none: the caller uses the provider's configured (system) key */
    IBEX_CREDENTIAL_OWN,      /* the subject's own credential */
    IBEX_CREDENTIAL_TENANT,   /* the tenant's default credential for the provider */
};

struct ibex_credential_choice {
    enum ibex_credential_source source;
    char id[IBEX_UUID_LEN + 1]; /* "" for NONE */
    int64_t version;            /* 0 for NONE */
    struct ibex_secret *secret; /* one reference, NULL for NONE */
};

/* Releases the choice's secret. Also an ibex_lru_dispose_fn: a choice stored in a worker's LRU
 * (value_size sizeof(struct ibex_credential_choice)) moves its reference into the LRU. */
void ibex_credential_choice_dispose(void *choice);

/* Chooses, in this order: the subject's own active credential for provider (its default if it
 * set one, else the one created last), then the tenant's default for provider when it is
 * active, else none. subject may be NULL (no own credential). The secret comes from cache when
 * it holds (id, version), else it is decrypted and put there (cache may be NULL: decrypted on
 * every call). An inactive or deleted credential is never chosen. Returns 0 with out filled,
 * a negative IBEX_E* of the store, or an IBEX_EVAULT_* error (the chosen row does not open:
 * the caller must fail the request, not fall back to the system key). */
int ibex_credential_resolve(struct ibex_store *s, const struct ibex_vault *v,
                            struct ibex_credential_cache *cache, const char *tenant_id,
                            const char *subject, const char *provider,
                            struct ibex_credential_choice *out);

/* The key of (tenant, subject, provider) for a worker's LRU of choices (SHA-256 of the three,
 * NUL-separated; subject NULL counts as ""). */
void ibex_credential_lookup_key(const char *tenant_id, const char *subject, const char *provider,
                                uint8_t out[32]);

/* What a rotation did. */
struct ibex_credential_rotation {
    int64_t rotated; /* re-encrypted under the new key by this run */
    int64_t current; /* under the new key at the end (this run's included) */
    int64_t changed; /* changed by someone else while read: run again */
    int64_t failed;  /* under a key the ring holds but would not open (tampered) */
    char failed_ids[4 * (IBEX_UUID_LEN + 1) + 8]; /* the first of them, "id,id,..." */
    int64_t unknown;                              /* under a key the ring does not hold */
    char unknown_keys[IBEX_VAULT_MAX_KEYS * (IBEX_VAULT_KEY_ID_LEN + 1) + 8]; /* "id,id,..." */
};

/* Re-encrypts every credential that is not deleted, in every tenant, from the keys of ring to
 * the current key of to, batch rows at a time in id order; each row in its own statement,
 * changed only when it still has the key and version that were read (so a concurrent update
 * is never overwritten). Idempotent: rows already under the new key are left alone. The
 * version does not change (the plaintext is the same). Returns 0 (out filled) or a negative
 * IBEX_E* of the store. */
int ibex_credential_rotate(struct ibex_store *s, const struct ibex_vault *ring,
                           const struct ibex_vault *to, size_t batch,
                           struct ibex_credential_rotation *out);

#endif
