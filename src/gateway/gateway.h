/* The gateway process: a runtime shared read-only by N workers, each a thread with its own
 * libuv loop, SO_REUSEPORT listener, libcurl multi handle and metrics (DESIGN.md section 1).
 * Nothing on the request path takes a lock another worker contends for. */
#ifndef IBEX_GATEWAY_H
#define IBEX_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../auth/auth.h"
#include "../auth/revocation.h"
#include "../config/config.h"
#include "../core/buf.h"
#include "../http/server.h"
#include "../providers/provider.h"
#include "../telemetry/metrics.h"
#include "../upstream/upstream.h"

struct ibex_vault;
struct ibex_credential_cache;

struct ibex_runtime {
    struct ibex_config cfg;
    struct ibex_providers providers;
    char **forward_headers; /* patterns from cfg.forward_headers, NULL-terminated */
    uint64_t start_mono_ns;
    uint64_t start_wall_ms;
    size_t nworkers;
    atomic_bool draining;
    struct ibex_auth *auth;
    struct ibex_store_pool *store_pool;
    struct ibex_store_writer *writer;   /* traces and audit events of the request path */
    struct ibex_revocation *revocation; /* NULL in tests that run without one */
    struct ibex_idem *idem;             /* Idempotency-Key entries (api/idempotency.h) */
    const struct ibex_vault *vault;     /* master keys of provider credentials; NULL: disabled */
    struct ibex_credential_cache *credential_cache; /* their plaintexts (auth/credential_cache.h) */
    const char *store_backend;                      /* "sqlite" or "postgres" */
    int64_t store_version;     /* schema version after the start-up migrations */
    char store_url_shown[512]; /* store_url with its password redacted */
};

struct ibex_worker {
    size_t id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    uv_timer_t drain_timer;
    atomic_int command; /* enum worker_command in worker.c */
    struct ibex_http_server *http;
    struct ibex_upstream *upstream;
    struct ibex_metrics *metrics;
    struct ibex_auth_caches auth_caches;
    /* sessions this worker saw active lately: chat.c's session_key to the session's tenant id */
    struct ibex_lru *sessions;
    /* the provider credential each (tenant, subject, provider) chose lately (chat.c), or NULL
     * when provider credentials are disabled */
    struct ibex_lru *credentials;
    struct ibex_runtime *rt;
    struct ibex_buf access_log; /* lines written once per loop iteration (flush_log) */
    uv_check_t log_flush;
    void *owner; /* the serve loop that started it */
};

/* Per-request facts for the access log and metrics; every handler puts one (or a struct that
 * starts with one) in req->user. */
struct ibex_req_info {
    enum ibex_route route;
    const struct ibex_provider *provider;
    const char *model; /* as the client sent it */
    const char *code;  /* error code of the response, or NULL */
    uint64_t upstream_ns;
    uint64_t ttft_ns;
    bool stream;
    void *auth;             /* the authentication in progress (auth/auth.c) */
    const char *agent_id;   /* the agent of an authenticated chat request, or NULL */
    const char *session_id; /* the session of a chat turn, or NULL */
    bool api_key_header;    /* x-api-key is a credential too (auth.c; Anthropic's clients) */
    /* Called once the response is complete (the request's arena still alive), after the
     * metrics: the chat handler records the trace and the checkpoint there. */
    void (*on_done)(struct ibex_req *req, uint64_t total_ns);
};

/* Names of the outcomes of an upstream attempt (chat.c), for metric labels. */
extern const char *const ibex_attempt_outcome_names[IBEX_METRICS_NATTEMPT];

struct ibex_chat_dialect;

/* Routes and handlers (router in worker.c, chat in chat.c, operations in api/ops.c). */
void ibex_chat_handle(struct ibex_worker *w, struct ibex_req *req);
/* The chat pipeline behind another client API (dialect.h; /v1/messages). */
void ibex_chat_handle_dialect(struct ibex_worker *w, struct ibex_req *req,
                              const struct ibex_chat_dialect *dialect);
void ibex_ops_health(struct ibex_worker *w, struct ibex_req *req);
void ibex_ops_ready(struct ibex_worker *w, struct ibex_req *req);
void ibex_ops_status(struct ibex_worker *w, struct ibex_req *req);
void ibex_ops_metrics(struct ibex_worker *w, struct ibex_req *req);
void ibex_ops_models(struct ibex_worker *w, struct ibex_req *req);
/* /v1/tenants, /v1/agents, /v1/keys, /v1/audit, /v1/sessions, /v1/traces, /v1/tasks,
 * /v1/approvals, /v1/credentials and below (api/router.c). */
void ibex_admin_handle(struct ibex_worker *w, struct ibex_req *req, enum ibex_route route);

/* Runs `ibex serve` until SIGTERM/SIGINT and the drain are over. Returns the exit code. */
int ibex_serve(struct ibex_runtime *rt);

#endif
