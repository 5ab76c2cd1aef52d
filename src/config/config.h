/* Settings: one table (name, type, default, bounds, help) drives the YAML file, IBEX_* environment
 * variables, command-line flags and `ibex serve --help` (STYLE 16). Precedence, lowest first:
 * defaults, the YAML file, the environment, flags. Providers and model aliases come from the
 * YAML file plus OPENAI_API_KEY / OPENAI_BASE_URL; the built-in mock provider serves model
 * "mock" unless disabled.
 *
 * Thread: loaded once on the main thread before workers start; read-only afterwards. */
#ifndef IBEX_CONFIG_H
#define IBEX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum ibex_provider_type {
    IBEX_PROVIDER_OPENAI = 1,
    IBEX_PROVIDER_MOCK = 2,
    IBEX_PROVIDER_ANTHROPIC = 3,
    IBEX_PROVIDER_GEMINI = 4,
    IBEX_PROVIDER_AZURE = 5,
};

struct ibex_upstream_timeouts {
    uint64_t connect_ms;
    uint64_t header_ms;
    uint64_t first_token_ms;
    uint64_t idle_ms;
    uint64_t total_ms;
};

struct ibex_provider_config {
    char *name;
    enum ibex_provider_type type;
    char *base_url;    /* without a trailing slash */
    char *api_key;     /* resolved from api_key or api_key_env; never logged */
    char *api_version; /* azure: the api-version query parameter */
    struct ibex_upstream_timeouts timeouts;
};

/* One place a model alias is served: a provider and the model name it knows there. */
struct ibex_deployment_config {
    char *provider;  /* provider name */
    char *model;     /* model name sent upstream */
    uint32_t weight; /* share of first attempts among healthy deployments; 0: fallback only */
    char *api_key;   /* this deployment's own key (api_key or api_key_env), or NULL: the
                        provider's; never logged */
};

/* The most deployments one alias may list. */
#define IBEX_CONFIG_MAX_DEPLOYMENTS 8

/* A model alias: what clients send as "model", and the deployments that serve it. The first
 * attempt goes to a healthy deployment picked by weight; the fallbacks follow in list order. */
struct ibex_model_config {
    char *name;
    struct ibex_deployment_config *deployments;
    size_t ndeployments;
};

/* A model's price in US dollars per million tokens (the `prices` list of the YAML file). */
struct ibex_price_config {
    char *provider; /* NULL: the model at any provider */
    char *model;    /* the upstream model name */
    double input, output;
};

/* Retries, fallback and the circuit breaker (docs/providers.md). */
struct ibex_routing_config {
    int64_t retries;             /* further attempts on the same deployment */
    uint64_t backoff_ms;         /* first retry's wait; doubled per retry, jittered */
    uint64_t retry_after_max_ms; /* a longer Retry-After falls back instead of waiting */
    int64_t breaker_failures;    /* consecutive failures that open a deployment's breaker; 0 off */
    uint64_t breaker_cooldown_ms;
};

struct ibex_config {
    char *listen;
    int64_t workers;
    char *log_level;
    bool access_log;
    uint64_t max_header_bytes;
    int64_t max_headers;
    uint64_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t stream_buffer;
    uint64_t max_upstream_response;
    char *forward_headers;
    char *upstream_http_client;
    struct ibex_upstream_timeouts upstream;
    struct ibex_routing_config routing;
    bool mock;
    char *default_provider;
    char *store_url; /* may hold a password: log it only through ibex_store_redact_url */
    int64_t store_pool_size;
    bool dev;
    char *dev_token; /* a secret: never logged */
    char *dev_agent_id;
    char *auth_modes;
    char *auth_tokens_json; /* secrets: never logged */
    char *jwt_issuer;
    char *jwt_audience;
    char *jwt_jwks_url;
    char *jwt_tenant_claim;
    char *jwt_scopes_claim;
    int64_t auth_cache_size;
    uint64_t auth_cache_ttl_ms;
    bool agent_required;
    char *directive_mode;
    char *recording;
    uint64_t idempotency_ttl_ms;
    bool record_traces; /* recording is traces or checkpoints */
    bool record_turns;  /* recording is checkpoints: sessions and checkpoints of chat turns */
    char *redis_url;    /* may hold a password */
    uint64_t revocation_poll_interval_ms;
    char *master_key_file;          /* provider credentials' master key (auth/vault.h) */
    char *master_key_previous_file; /* keys that only decrypt, during a rotation */

    struct ibex_provider_config *providers;
    size_t nproviders;
    struct ibex_model_config *models;
    size_t nmodels;
    struct ibex_price_config *prices;
    size_t nprices;
};

/* Loads settings from argv (after the subcommand), the environment and the YAML file named by
 * --config / IBEX_CONFIG. On failure returns -1 and writes one line naming the setting to err
 * (and allocates nothing the caller must free). */
int ibex_config_load(struct ibex_config *cfg, int argc, char **argv, char *err, size_t errlen);
void ibex_config_dispose(struct ibex_config *cfg);
/* Prints every setting: flag, environment variable, default and help. */
void ibex_config_print_help(FILE *out);

const struct ibex_provider_config *ibex_config_provider(const struct ibex_config *cfg,
                                                        const char *name);

/* The price of model at provider: the first entry naming both, else the first naming the model
 * for any provider; NULL when there is none. */
const struct ibex_price_config *ibex_config_price(const struct ibex_config *cfg,
                                                  const char *provider, const char *model);

/* Parses "250ms", "30s", "5m", "1h", "30d" or plain milliseconds. Returns 0 or -1. */
int ibex_config_parse_duration(const char *s, uint64_t *ms);
/* Parses "4096", "16k", "4m", "1g" (binary multiples, optional "b"/"ib"). Returns 0 or -1. */
int ibex_config_parse_size(const char *s, uint64_t *bytes);

#endif
