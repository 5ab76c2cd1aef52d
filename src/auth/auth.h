/* Authentication and agent identity on the request path (DESIGN.md section 2):
 *
 *   Authorization: Bearer <token> -> SHA-256 -> the worker's credential cache -> on a miss, the
 *   static tokens, the store (API keys) or the JWT verifier -> scope check
 *   X-IBEX-Agent-ID -> the worker's agent cache -> on a miss, the store -> allow-list check
 *
 * A cache hit costs one SHA-256 and a hash lookup on the loop. A miss that needs the store or
 * the JWKS runs on the store pool (off-loop) and resumes the request in its callback. Entries
 * expire after auth_cache_ttl, and every entry older than the identity epoch (moved by a
 * revocation on any instance) is a miss.
 *
 * Thread: ibex_auth_new/free on the main thread; the request functions on a worker's loop. */
#ifndef IBEX_AUTH_AUTH_H
#define IBEX_AUTH_AUTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../config/config.h"
#include "../core/lru.h"
#include "../http/server.h"
#include "../store/pool.h"
#include "../store/writer.h"
#include "principal.h"

struct ibex_worker;
struct ibex_jwt_verifier;

enum ibex_auth_mode {
    IBEX_AUTH_KEYS = 1u << 0,
    IBEX_AUTH_STATIC = 1u << 1,
    IBEX_AUTH_JWT = 1u << 2,
    IBEX_AUTH_NONE = 1u << 3,
};

/* Why a credential was refused: the metric label and the error of each. */
enum ibex_auth_failure {
    IBEX_AUTH_MISSING_TOKEN = 0,
    IBEX_AUTH_INVALID_TOKEN,
    IBEX_AUTH_TOKEN_EXPIRED,
    IBEX_AUTH_TOKEN_REVOKED,
    IBEX_AUTH_INSUFFICIENT_SCOPE,
    IBEX_AUTH_UNAVAILABLE, /* the store or the JWKS cannot answer */
    IBEX_AUTH_NFAILURES,
};

struct ibex_static_token;

/* The process-wide part, shared read-only by the workers except for the atomic epoch. */
struct ibex_auth {
    unsigned modes; /* enum ibex_auth_mode bits */
    struct ibex_static_token *statics;
    size_t nstatics;
    struct ibex_jwt_verifier *jwt;
    struct ibex_store_pool *pool;      /* off-loop reads */
    struct ibex_store_writer *writer;  /* audit events of refused credentials */
    _Atomic int64_t epoch;             /* identity epoch: entries older than it are stale */
    char none_tenant[IBEX_ID_LEN + 1]; /* the tenant of mode `none` */
    int64_t cache_ttl_ms;
    size_t cache_size;
    bool agent_required;
    bool directive_replace;
};

/* Builds the process-wide state from cfg (modes, AUTH_TOKENS_JSON, the JWT verifier). pool and
 * writer stay the caller's. Returns 0 or -1 with one line in err. */
int ibex_auth_init(struct ibex_auth *a, const struct ibex_config *cfg, struct ibex_store_pool *pool,
                   struct ibex_store_writer *writer, char *err, size_t errlen);
void ibex_auth_dispose(struct ibex_auth *a);
/* Moves the epoch forward (never back); safe from any thread. */
void ibex_auth_note_epoch(struct ibex_auth *a, int64_t epoch);
/* The labels of enum ibex_auth_failure, for metrics. */
extern const char *const ibex_auth_failure_codes[IBEX_AUTH_NFAILURES];

/* A worker's caches. */
struct ibex_auth_caches {
    struct ibex_lru *credentials;
    struct ibex_lru *agents;
};
void ibex_auth_caches_init(struct ibex_auth_caches *c, const struct ibex_auth *a);
void ibex_auth_caches_dispose(struct ibex_auth_caches *c);

/* The agent a request names, resolved: valid until the callback returns. */
struct ibex_agent_ref {
    const char *id;        /* NULL: no agent */
    const char *directive; /* "" for none */
};

/* Called once the request is authenticated (and, for ibex_auth_agent, its agent resolved).
 * Every refusal is answered by the auth layer itself (and the callback is not called). */
typedef void (*ibex_auth_then_fn)(struct ibex_worker *w, struct ibex_req *req,
                                  const struct ibex_principal *p,
                                  const struct ibex_agent_ref *agent, void *data);

/* Authenticates req and checks that it holds scope; req->user must already hold the
 * request's ibex_req_info (its code is set on a refusal). */
void ibex_auth_request(struct ibex_worker *w, struct ibex_req *req, uint32_t scope,
                       ibex_auth_then_fn then, void *data);
/* The same, then resolves X-IBEX-Agent-ID (chat routes). */
void ibex_auth_request_agent(struct ibex_worker *w, struct ibex_req *req, uint32_t scope,
                             ibex_auth_then_fn then, void *data);

#endif
