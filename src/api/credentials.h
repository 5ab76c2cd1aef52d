/* Bring-your-own-model provider credentials (docs/credentials.md): POST/GET /v1/credentials,
 * GET/PUT/DELETE /v1/credentials/{id}, POST /v1/credentials/{id}/default and
 * /v1/credentials/{id}/validate. All scoped to the actor's tenant, and within it to what the
 * actor may see: its own credentials (owned by its subject), and the tenant-wide ones when it
 * holds credentials:admin. Anything else answers exactly like an unknown id.
 *
 * Answers never carry a secret or a ciphertext: only secret_last4. Audit events
 * credential.created, .updated, .deleted, .defaulted and .validated name the credential and its
 * provider, never the secret.
 *
 * Thread: the ibex_credentials_* operations block (store calls): store-pool threads only. The
 * probe functions belong to a worker's loop. */
#ifndef IBEX_API_CREDENTIALS_H
#define IBEX_API_CREDENTIALS_H

#include "../auth/credential.h"
#include "../config/config.h"
#include "../upstream/upstream.h"
#include "resource.h"

/* What the operations need beyond the store. */
struct ibex_credentials_env {
    const struct ibex_vault *vault; /* NULL: credentials are disabled (503 CREDENTIALS_DISABLED) */
    const struct ibex_provider_config *providers; /* the configured providers */
    size_t nproviders;
    struct ibex_credential_cache *cache; /* entries dropped when a secret changes; may be NULL */
};

struct ibex_credentials_query {
    int64_t page;                                    /* >= 1 */
    int64_t page_size;                               /* 1-100 */
    char provider[IBEX_CREDENTIAL_PROVIDER_MAX + 1]; /* "" or a provider name */
    char state[16];                                  /* "" (all but deleted) or a state */
};

/* Parses ?page=&page_size=&provider=&state= (no I/O: on the loop). Returns 0 or the 400 in r. */
int ibex_credentials_query_parse(struct ibex_str query, struct ibex_credentials_query *q,
                                 struct ibex_api_result *r);

/* The 503 CREDENTIALS_DISABLED answer (no master key): its message says how to set one. */
int ibex_credentials_disabled(struct ibex_api_result *r);

/* POST /v1/credentials: provider (a configured provider), name (1-200 bytes), secret (8-4096
 * printable ASCII characters, no spaces), scope ("user", the default: owned by the actor's
 * subject; "tenant": tenant-wide, needs credentials:admin). 201 with the credential; 403
 * INSUFFICIENT_SCOPE, 422 PROVIDER_NOT_CONFIGURED. */
int ibex_credentials_create(struct ibex_store *s, const struct ibex_credentials_env *env,
                            const struct ibex_actor *a, json_object *body, struct ibex_buf *out,
                            struct ibex_api_result *r);
/* GET /v1/credentials: the actor's own and (credentials:admin) the tenant-wide ones, newest
 * first, deleted ones only when state=deleted asks for them. */
int ibex_credentials_list(struct ibex_store *s, const struct ibex_actor *a,
                          const struct ibex_credentials_query *q, struct ibex_buf *out,
                          struct ibex_api_result *r);
/* GET /v1/credentials/{id}: 200 / 404 CREDENTIAL_NOT_FOUND. */
int ibex_credentials_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                         struct ibex_buf *out, struct ibex_api_result *r);
/* PUT /v1/credentials/{id}: any of name, secret, state (active or inactive). 200; 409
 * CREDENTIAL_NOT_ACTIVE for a deleted credential. */
int ibex_credentials_update(struct ibex_store *s, const struct ibex_credentials_env *env,
                            const struct ibex_actor *a, const char *id, json_object *body,
                            struct ibex_buf *out, struct ibex_api_result *r);
/* DELETE /v1/credentials/{id}: state deleted, the ciphertext erased, no longer a default. 200
 * with the credential (again for one already deleted, without a new audit event). */
int ibex_credentials_delete(struct ibex_store *s, const struct ibex_credentials_env *env,
                            const struct ibex_actor *a, const char *id, struct ibex_buf *out,
                            struct ibex_api_result *r);
/* POST /v1/credentials/{id}/default: the default of its provider among the tenant-wide
 * credentials (a tenant-wide one) or among its owner's (an own one); the previous default stops
 * being one. 200; 409 CREDENTIAL_NOT_ACTIVE unless it is active. */
int ibex_credentials_make_default(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                                  struct ibex_buf *out, struct ibex_api_result *r);

/* Validation: a cheap authenticated request to the provider (openai: GET {base_url}/models with
 * Authorization: Bearer; anthropic: GET {base_url}/v1/models with x-api-key and
 * anthropic-version: 2023-06-01; gemini: GET {base_url}/v1beta/models with x-goog-api-key),
 * 5 s at most; its body is discarded. */
struct ibex_credential_probe {
    bool ready; /* prepared: run it */
    char id[IBEX_UUID_LEN + 1];
    char provider[IBEX_CREDENTIAL_PROVIDER_MAX + 1];
    char *url;  /* malloc'd */
    char *auth; /* malloc'd "Name: value" line holding the secret; wiped on dispose */
    const char *headers[3];
    struct ibex_upstream_timeouts timeouts;
    /* the outcome, on the loop */
    int status; /* the provider's HTTP status, 0 when it gave none */
    enum ibex_upstream_result result;
    struct ibex_upstream_call *call;
    void (*done)(struct ibex_credential_probe *p, void *data);
    void *data;
};

/* Fills p for a provider of type at base_url with secret (copied into p->auth). Returns 0, or
 * -1 for a type that takes no credential (mock). */
int ibex_credential_probe_build(struct ibex_credential_probe *p, enum ibex_provider_type type,
                                const char *base_url, const char *secret, size_t len);
/* Wipes the secret and frees. Does not cancel a call in flight (ibex_credential_probe_cancel). */
void ibex_credential_probe_dispose(struct ibex_credential_probe *p);

/* POST /v1/credentials/{id}/validate, on a pool thread: finds the credential (404), refuses one
 * that is not active (409 CREDENTIAL_NOT_ACTIVE) or whose provider is no longer configured
 * (422 PROVIDER_NOT_CONFIGURED), opens it (500 CREDENTIAL_UNREADABLE when it does not open) and
 * prepares p (p->ready; r is 200 and out empty). */
int ibex_credentials_validate_prepare(struct ibex_store *s, const struct ibex_credentials_env *env,
                                      const struct ibex_actor *a, const char *id,
                                      struct ibex_credential_probe *p, struct ibex_api_result *r);
/* On the loop: runs p through u; done(p, data) is called once with p->status and p->result
 * set, unless ibex_credential_probe_cancel comes first. The secret is wiped once the request
 * is handed to the transport. Returns 0, or -1 when the call could not start (done is then not
 * called; p->result is IBEX_UPSTREAM_FAILED). */
int ibex_credential_probe_start(struct ibex_upstream *u, struct ibex_credential_probe *p,
                                void (*done)(struct ibex_credential_probe *p, void *data),
                                void *data);
void ibex_credential_probe_cancel(struct ibex_credential_probe *p);
/* Back on a pool thread: records credential.validated and answers 200
 * {"object":"credential.validation","id","provider","valid","status","error","checked_at"};
 * valid is a 2xx answer, status null when the provider gave none (error says why). */
int ibex_credentials_validate_finish(struct ibex_store *s, const struct ibex_actor *a,
                                     const struct ibex_credential_probe *p, struct ibex_buf *out,
                                     struct ibex_api_result *r);

/* Wipes the "secret" string of a request body in place (call before freeing a body). */
void ibex_credentials_body_wipe(json_object *body);

#endif
