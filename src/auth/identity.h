/* Identity administration on the store: tenants, agents, API keys and the audit trail, shared
 * by the HTTP API (src/api/identity.c, on store-pool threads) and the CLI verbs (main.c), so
 * both validate alike and answer with the same JSON (docs/identity.md).
 *
 * Every operation acts for an actor. An actor with a tenant sees only that tenant's agents and
 * keys, that tenant and the tenants it created; every query filters by it, and a foreign id
 * gets the same 404 as an id that does not exist. An actor without a tenant is the operator at
 * the command line.
 *
 * Changes commit in one transaction with their audit event. Those that must reach the
 * credential and agent caches of every instance (revocations, agent updates) also advance
 * identity_epoch, reported in result->epoch.
 *
 * Thread: blocking; any thread that owns the store handle (never an event loop). */
#ifndef IBEX_AUTH_IDENTITY_H
#define IBEX_AUTH_IDENTITY_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "../api/resource.h"
#include "../core/buf.h"
#include "../store/store.h"
#include "keys.h"
#include "principal.h"

/* Each returns result->status; body is the parsed request body (may be NULL for no body). */
int ibex_tenant_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                       struct ibex_buf *out, struct ibex_api_result *r);
int ibex_tenant_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                     struct ibex_buf *out, struct ibex_api_result *r);
int ibex_tenant_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                    struct ibex_buf *out, struct ibex_api_result *r);
int ibex_tenant_revoke(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                       struct ibex_buf *out, struct ibex_api_result *r);

/* pinned: NULL for a new id, else the id to give the agent (IBEX_DEV_AGENT_ID); never from a
 * request body, or an id of another tenant could be probed through the conflict. */
int ibex_agent_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                      const char *pinned, struct ibex_buf *out, struct ibex_api_result *r);
int ibex_agent_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                    struct ibex_buf *out, struct ibex_api_result *r);
int ibex_agent_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                   struct ibex_buf *out, struct ibex_api_result *r);
int ibex_agent_update(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      json_object *body, struct ibex_buf *out, struct ibex_api_result *r);
int ibex_agent_revoke(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      struct ibex_buf *out, struct ibex_api_result *r);

/* pinned_key: NULL to generate the secret, else a well-formed key to store (IBEX_DEV_TOKEN). */
int ibex_key_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                    const char *pinned_key, struct ibex_buf *out, struct ibex_api_result *r);
int ibex_key_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                  struct ibex_buf *out, struct ibex_api_result *r);
int ibex_key_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                 struct ibex_buf *out, struct ibex_api_result *r);
int ibex_key_revoke(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                    struct ibex_buf *out, struct ibex_api_result *r);

int ibex_audit_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                    struct ibex_buf *out, struct ibex_api_result *r);

/* The credential behind an API key, read for authentication. */
enum ibex_key_state {
    IBEX_KEY_VALID = 0,
    IBEX_KEY_UNKNOWN, /* no such prefix, or the hash differs */
    IBEX_KEY_EXPIRED, /* past expires_at */
    IBEX_KEY_REVOKED, /* the key or its tenant was revoked */
};
/* Looks key up by prefix and compares its hash in constant time. Returns 0 (state in *state, the
 * principal filled when valid) or a negative IBEX_E*. */
int ibex_key_authenticate(struct ibex_store *s, const char *key, size_t len, int64_t now_ms,
                          enum ibex_key_state *state, struct ibex_principal *out);

/* Whether tenant id exists and is live (for credentials that name a tenant without the store:
 * JWTs). Returns 0 with *state IBEX_KEY_VALID, IBEX_KEY_UNKNOWN or IBEX_KEY_REVOKED, or a
 * negative IBEX_E*. */
int ibex_tenant_state(struct ibex_store *s, const char *id, enum ibex_key_state *state);

/* An agent as the chat path needs it. */
struct ibex_agent_info {
    char id[IBEX_ID_LEN + 1];
    char tenant_id[IBEX_ID_LEN + 1];
    char *directive; /* malloc'd; "" for none */
};
/* Reads agent id of tenant tenant_id. Returns 0 with *found set (info filled when found and not
 * revoked) and *foreign set when the id is another tenant's agent (for the audit trail only: the
 * caller must answer exactly as for an unknown id), or a negative IBEX_E*. */
int ibex_agent_lookup(struct ibex_store *s, const char *tenant_id, const char *id, bool *found,
                      bool *foreign, struct ibex_agent_info *info);

/* --dev: ensures a tenant "dev" (its id in tenant_id), an admin key and an agent "dev-agent" exist.
 * pinned_key and pinned_agent (NULL or values from IBEX_DEV_TOKEN / IBEX_DEV_AGENT_ID) fix their
 * values. Writes what to print to out (the key only when it was created now). Returns 0 or -1 with
 * a message in err. */
int ibex_identity_dev_bootstrap(struct ibex_store *s, const char *pinned_key,
                                const char *pinned_agent, char tenant_id[IBEX_ID_LEN + 1],
                                struct ibex_buf *out, char *err, size_t errlen);

#endif
