/* The settings table and its three readers (YAML, environment, flags).
 * Invariant: every string field of struct ibex_config is heap-owned (or NULL) so dispose can
 * free them all; a failed load frees what it allocated before returning. */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "../core/alloc.h"
#include "../core/log.h"

enum kind {
    K_STRING = 1,
    K_INT,
    K_BOOL,
    K_DURATION,
    K_SIZE,
};

struct setting {
    const char *name;
    enum kind kind;
    const char *def;
    uint64_t min, max;
    size_t off;
    const char *help;
};

#define OFF(f) offsetof(struct ibex_config, f)
#define KiB 1024ull
#define MiB (1024ull * 1024ull)
#define SEC 1000ull
#define MIN (60ull * 1000ull)

static const struct setting settings[] = {
    {"listen", K_STRING, "127.0.0.1:8080", 0, 0, OFF(listen),
     "address to listen on, host:port ([::1]:port for IPv6)"},
    {"workers", K_INT, "0", 0, 256, OFF(workers),
     "worker threads, each with its own event loop, listener and upstream pool; 0 = one per CPU"},
    {"log_level", K_STRING, "info", 0, 0, OFF(log_level), "debug, info, warn or error"},
    {"access_log", K_BOOL, "true", 0, 0, OFF(access_log), "one JSON line per request on stderr"},
    {"max_header_bytes", K_SIZE, "16k", KiB, MiB, OFF(max_header_bytes),
     "request line plus headers; larger requests get 431"},
    {"max_headers", K_INT, "100", 1, 1000, OFF(max_headers), "header count; more get 400"},
    {"max_body_bytes", K_SIZE, "4m", KiB, 256 * MiB, OFF(max_body_bytes),
     "request body; larger bodies get 413"},
    {"header_timeout", K_DURATION, "10s", 100, 10 * MIN, OFF(header_timeout_ms),
     "time to receive a request's line and headers; slower clients get 408"},
    {"body_timeout", K_DURATION, "30s", 100, 60 * MIN, OFF(body_timeout_ms),
     "time to receive a request body after its headers; slower clients get 408"},
    {"idle_timeout", K_DURATION, "60s", 100, 60 * MIN, OFF(idle_timeout_ms),
     "how long a keep-alive connection may wait for its next request"},
    {"drain_timeout", K_DURATION, "30s", 0, 60 * MIN, OFF(drain_timeout_ms),
     "on SIGTERM/SIGINT, how long in-flight requests and streams may take to finish"},
    {"stream_buffer", K_SIZE, "256k", 4 * KiB, 64 * MiB, OFF(stream_buffer),
     "per-connection write buffer; above it the upstream transfer is paused"},
    {"max_upstream_response", K_SIZE, "16m", 64 * KiB, 1024 * MiB, OFF(max_upstream_response),
     "largest non-streaming upstream response accepted (502 above it)"},
    {"forward_headers", K_STRING, "", 0, 0, OFF(forward_headers),
     "comma-separated request headers passed to the upstream; a trailing * matches a prefix"},
    {"upstream_http_client", K_STRING, "native", 0, 0, OFF(upstream_http_client),
     "http:// providers: \"native\" (ibex's HTTP/1.1 client) or \"curl\"; https always uses curl"},
    {"upstream_connect_timeout", K_DURATION, "10s", 100, 10 * MIN, OFF(upstream.connect_ms),
     "TCP and TLS connect to a provider"},
    {"upstream_header_timeout", K_DURATION, "60s", 100, 60 * MIN, OFF(upstream.header_ms),
     "from sending the request to the provider's response headers"},
    {"upstream_first_token_timeout", K_DURATION, "60s", 100, 60 * MIN, OFF(upstream.first_token_ms),
     "streaming: from response headers to the first body byte"},
    {"upstream_idle_timeout", K_DURATION, "60s", 100, 60 * MIN, OFF(upstream.idle_ms),
     "longest silence between two pieces of an upstream response"},
    {"upstream_total_timeout", K_DURATION, "10m", 100, 24 * 60 * MIN, OFF(upstream.total_ms),
     "whole upstream exchange, streaming included"},
    {"upstream_retries", K_INT, "1", 0, 5, OFF(routing.retries),
     "further attempts on the same deployment after a 429, 5xx, timeout or connection error, "
     "before the next deployment"},
    {"upstream_retry_backoff", K_DURATION, "100ms", 1, 10 * SEC, OFF(routing.backoff_ms),
     "wait before the first retry, doubled for each next one, with +-50% jitter"},
    {"upstream_retry_after_max", K_DURATION, "5s", 0, 10 * MIN, OFF(routing.retry_after_max_ms),
     "longest Retry-After honoured by waiting; a longer one moves on to the next deployment"},
    {"breaker_failures", K_INT, "5", 0, 1000, OFF(routing.breaker_failures),
     "consecutive failed attempts that take a deployment out; 0 = no circuit breaker"},
    {"breaker_cooldown", K_DURATION, "30s", 100, 60 * MIN, OFF(routing.breaker_cooldown_ms),
     "how long a deployment stays out before one attempt may try it again"},
    {"mock", K_BOOL, "true", 0, 0, OFF(mock),
     "serve model \"mock\" from the built-in deterministic mock provider"},
    {"default_provider", K_STRING, "", 0, 0, OFF(default_provider),
     "provider for model names no alias claims; empty = the first of \"openai\", \"anthropic\", "
     "\"gemini\" that is configured"},
    {"store_url", K_STRING, "sqlite://./ibex.db", 0, 0, OFF(store_url),
     "database: sqlite://PATH (one embedded file), sqlite:///ABS/PATH, or "
     "postgres://USER:PASS@HOST:PORT/DB"},
    {"store_pool_size", K_INT, "4", 1, 64, OFF(store_pool_size),
     "store connections for reads and administration off the event loops"},
    {"dev", K_BOOL, "false", 0, 0, OFF(dev),
     "development: create a tenant \"dev\", an admin key and an agent \"dev-agent\" when "
     "absent, and print them"},
    {"dev_token", K_STRING, "", 0, 0, OFF(dev_token),
     "with --dev: the admin key to create (ibex_sk_ and 20-100 letters or digits)"},
    {"dev_agent_id", K_STRING, "", 0, 0, OFF(dev_agent_id),
     "with --dev: the dev agent's id (a UUID)"},
    {"auth_modes", K_STRING, "keys", 0, 0, OFF(auth_modes),
     "credentials accepted, comma-separated: keys (API keys), static (AUTH_TOKENS_JSON), jwt "
     "(OIDC), none (no credential needed: development only)"},
    {"auth_tokens_json", K_STRING, "", 0, 0, OFF(auth_tokens_json),
     "mode static: {\"TOKEN\": {\"tenant_id\": UUID, \"scopes\": [...], \"subject\": S}}; "
     "also read from AUTH_TOKENS_JSON"},
    {"jwt_issuer", K_STRING, "", 0, 0, OFF(jwt_issuer), "mode jwt: the issuer (claim iss)"},
    {"jwt_audience", K_STRING, "", 0, 0, OFF(jwt_audience),
     "mode jwt: the audience tokens must name (claim aud)"},
    {"jwt_jwks_url", K_STRING, "", 0, 0, OFF(jwt_jwks_url),
     "mode jwt: where the issuer's signing keys are (JWKS)"},
    {"jwt_tenant_claim", K_STRING, "tenant_id", 0, 0, OFF(jwt_tenant_claim),
     "mode jwt: the claim holding the tenant id"},
    {"jwt_scopes_claim", K_STRING, "scope", 0, 0, OFF(jwt_scopes_claim),
     "mode jwt: the claim holding scopes (space-separated, or an array)"},
    {"auth_cache_size", K_INT, "10000", 1, 10000000, OFF(auth_cache_size),
     "validated credentials (and agents) each worker keeps"},
    {"auth_cache_ttl", K_DURATION, "60s", 1000, 60 * MIN, OFF(auth_cache_ttl_ms),
     "how long a worker trusts a cached credential or agent before reading it again"},
    {"agent_required", K_BOOL, "false", 0, 0, OFF(agent_required),
     "chat requests must name their agent in X-IBEX-Agent-ID"},
    {"directive_mode", K_STRING, "prepend", 0, 0, OFF(directive_mode),
     "an agent's directive: prepend (first system message) or replace (also drop the caller's "
     "system messages)"},
    {"recording", K_STRING, "checkpoints", 0, 0, OFF(recording),
     "what a chat request leaves in the store: checkpoints (its trace, and its turn's session "
     "and checkpoint: prompts and answers at rest), traces (the trace only: no session, no "
     "prompt text), off (nothing)"},
    {"redis_url", K_STRING, "", 0, 0, OFF(redis_url),
     "redis://[:PASS@]HOST:PORT[/DB]: broadcast revocations at once to every instance, and "
     "hold Idempotency-Key entries"},
    {"idempotency_ttl", K_DURATION, "24h", 1000, 30 * 24 * 60 * MIN, OFF(idempotency_ttl_ms),
     "how long a response to a request with an Idempotency-Key is replayed"},
    {"revocation_poll_interval", K_DURATION, "1s", 50, 10 * MIN, OFF(revocation_poll_interval_ms),
     "how often the store is asked whether a key, agent or tenant was revoked elsewhere"},
    {"master_key_file", K_STRING, "", 0, 0, OFF(master_key_file),
     "file holding the master key that encrypts provider credentials (64 hex characters or "
     "base64 of 32 bytes; not readable by other users); or set IBEX_MASTER_KEY"},
    {"master_key_previous_file", K_STRING, "", 0, 0, OFF(master_key_previous_file),
     "file of earlier master keys, one per line, that still decrypt credentials during a key "
     "rotation (docs/credentials.md); or IBEX_MASTER_KEY_PREVIOUS"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads the leading decimal number of s; *suffix points after it. Returns 0 or -1. */
static int parse_leading_number(const char *s, uint64_t *v, char **suffix)
{
    errno = 0;
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    unsigned long long n = strtoull(s, suffix, 10);
    if (errno)
        return -1;
    *v = n;
    return 0;
}

int ibex_config_parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    uint64_t v;
    if (parse_leading_number(s, &v, &end))
        return -1;
    uint64_t mult;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = SEC;
    else if (strcmp(end, "m") == 0)
        mult = MIN;
    else if (strcmp(end, "h") == 0)
        mult = 60 * MIN;
    else if (strcmp(end, "d") == 0)
        mult = 24 * 60 * MIN;
    else
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *ms = v * mult;
    return 0;
}

int ibex_config_parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    uint64_t v;
    if (parse_leading_number(s, &v, &end))
        return -1;
    uint64_t mult = 1;
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'k':
        mult = KiB;
        end++;
        break;
    case 'm':
        mult = MiB;
        end++;
        break;
    case 'g':
        mult = 1024 * MiB;
        end++;
        break;
    case 'b':
        break;
    default:
        return -1;
    }
    if (strcasecmp(end, "") != 0 && strcasecmp(end, "b") != 0 && strcasecmp(end, "ib") != 0)
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *bytes = v * mult;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
        *out = true;
    else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") ||
             !strcasecmp(s, "off"))
        *out = false;
    else
        return -1;
    return 0;
}

static const struct setting *find_setting(const char *name, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, name, len) == 0)
            return &settings[i];
    return NULL;
}

static const char *kind_hint(enum kind k)
{
    switch (k) {
    case K_INT:
        return "a whole number";
    case K_BOOL:
        return "true or false";
    case K_DURATION:
        return "a duration like 500ms, 30s or 5m";
    case K_SIZE:
        return "a size like 4096, 16k or 4m";
    default:
        return "a string";
    }
}

static int set_value(struct ibex_config *cfg, const struct setting *st, const char *val,
                     const char *source, char *err, size_t errlen)
{
    char *base = (char *)cfg + st->off;
    uint64_t u;
    bool b;
    switch (st->kind) {
    case K_STRING:
        free(*(char **)base);
        *(char **)base = ibex_xstrdup(val);
        return 0;
    case K_BOOL:
        if (parse_bool(val, &b))
            goto bad;
        *(bool *)base = b;
        return 0;
    case K_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || *end || end == val || v < 0 || (uint64_t)v < st->min || (uint64_t)v > st->max)
            goto bad;
        *(int64_t *)base = v;
        return 0;
    }
    case K_DURATION:
        if (ibex_config_parse_duration(val, &u) || u < st->min || u > st->max)
            goto bad;
        *(uint64_t *)base = u;
        return 0;
    case K_SIZE:
        if (ibex_config_parse_size(val, &u) || u < st->min || u > st->max)
            goto bad;
        *(uint64_t *)base = u;
        return 0;
    }
bad:
    if (st->max)
        return errf(err, errlen,
                    "setting '%s' (from %s): must be %s between %llu and %llu%s, got '%s'",
                    st->name, source, kind_hint(st->kind), (unsigned long long)st->min,
                    (unsigned long long)st->max,
                    st->kind == K_DURATION ? " ms"
                    : st->kind == K_SIZE   ? " bytes"
                                           : "",
                    val);
    return errf(err, errlen, "setting '%s' (from %s): must be %s, got '%s'", st->name, source,
                kind_hint(st->kind), val);
}

/* ---- YAML ---- */

static const char *scalar(yaml_document_t *doc, yaml_node_t *n)
{
    (void)doc;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int yaml_timeouts(const char *key, const char *val, struct ibex_upstream_timeouts *t,
                         int *matched)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"connect_timeout", offsetof(struct ibex_upstream_timeouts, connect_ms)},
        {"header_timeout", offsetof(struct ibex_upstream_timeouts, header_ms)},
        {"first_token_timeout", offsetof(struct ibex_upstream_timeouts, first_token_ms)},
        {"idle_timeout", offsetof(struct ibex_upstream_timeouts, idle_ms)},
        {"total_timeout", offsetof(struct ibex_upstream_timeouts, total_ms)},
    };
    *matched = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(key, keys[i].key) == 0) {
            *matched = 1;
            uint64_t ms;
            if (ibex_config_parse_duration(val, &ms) || ms == 0)
                return -1;
            *(uint64_t *)((char *)t + keys[i].off) = ms;
            return 0;
        }
    }
    return 0;
}

static int yaml_provider(struct ibex_config *cfg, yaml_document_t *doc, yaml_node_t *map,
                         const char *path, char *err, size_t errlen)
{
    if (map->type != YAML_MAPPING_NODE)
        return errf(err, errlen, "%s: each entry of 'providers' must be a mapping", path);
    cfg->providers = ibex_xrealloc(cfg->providers, (cfg->nproviders + 1) * sizeof(*cfg->providers));
    struct ibex_provider_config *p = &cfg->providers[cfg->nproviders++];
    memset(p, 0, sizeof(*p));
    char *key_env = NULL;
    int rc = 0;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        const char *k = scalar(doc, yaml_document_get_node(doc, pr->key));
        const char *v = scalar(doc, yaml_document_get_node(doc, pr->value));
        int matched;
        if (k == NULL || v == NULL) {
            rc = errf(err, errlen, "%s: provider keys and values must be scalars", path);
            break;
        }
        if (!strcmp(k, "name")) {
            free(p->name);
            p->name = ibex_xstrdup(v);
        } else if (!strcmp(k, "type")) {
            if (!strcmp(v, "openai"))
                p->type = IBEX_PROVIDER_OPENAI;
            else if (!strcmp(v, "anthropic"))
                p->type = IBEX_PROVIDER_ANTHROPIC;
            else if (!strcmp(v, "gemini"))
                p->type = IBEX_PROVIDER_GEMINI;
            else if (!strcmp(v, "azure"))
                p->type = IBEX_PROVIDER_AZURE;
            else if (!strcmp(v, "mock"))
                p->type = IBEX_PROVIDER_MOCK;
            else {
                rc = errf(err, errlen,
                          "%s: provider type '%s' is not one of openai, azure, anthropic, gemini, "
                          "mock",
                          path, v);
                break;
            }
        } else if (!strcmp(k, "base_url")) {
            free(p->base_url);
            p->base_url = ibex_xstrdup(v);
        } else if (!strcmp(k, "api_key")) {
            free(p->api_key);
            p->api_key = ibex_xstrdup(v);
        } else if (!strcmp(k, "api_version")) {
            free(p->api_version);
            p->api_version = ibex_xstrdup(v);
        } else if (!strcmp(k, "api_key_env")) {
            free(key_env);
            key_env = ibex_xstrdup(v);
        } else if (yaml_timeouts(k, v, &p->timeouts, &matched) != 0) {
            rc = errf(err, errlen, "%s: provider '%s': %s must be a duration like 30s, got '%s'",
                      path, p->name ? p->name : "?", k, v);
            break;
        } else if (!matched) {
            rc = errf(err, errlen, "%s: unknown provider key '%s'", path, k);
            break;
        }
    }
    if (rc == 0 && key_env && p->api_key == NULL) {
        const char *env = getenv(key_env);
        if (env && *env)
            p->api_key = ibex_xstrdup(env);
    }
    free(key_env);
    return rc;
}

static int yaml_deployment(struct ibex_model_config *m, yaml_document_t *doc, yaml_node_t *map,
                           const char *path, char *err, size_t errlen)
{
    if (map->type != YAML_MAPPING_NODE)
        return errf(err, errlen, "%s: model '%s': each deployment must be a mapping", path,
                    m->name ? m->name : "?");
    m->deployments = ibex_xrealloc(m->deployments, (m->ndeployments + 1) * sizeof(*m->deployments));
    struct ibex_deployment_config *d = &m->deployments[m->ndeployments++];
    memset(d, 0, sizeof(*d));
    d->weight = 1;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        const char *k = scalar(doc, yaml_document_get_node(doc, pr->key));
        const char *v = scalar(doc, yaml_document_get_node(doc, pr->value));
        char *end = NULL;
        if (k && v && !strcmp(k, "weight")) {
            unsigned long w = strtoul(v, &end, 10);
            if (end == v || *end || w > 1000)
                return errf(err, errlen, "%s: model '%s': weight must be 0 to 1000, got '%s'", path,
                            m->name ? m->name : "?", v);
            d->weight = (uint32_t)w;
            continue;
        }
        if (k && v && !strcmp(k, "api_key_env")) {
            const char *env = getenv(v);
            if (env == NULL || *env == '\0')
                return errf(err, errlen, "%s: model '%s': api_key_env '%s' is not set", path,
                            m->name ? m->name : "?", v);
            free(d->api_key);
            d->api_key = ibex_xstrdup(env);
            continue;
        }
        char **field = NULL;
        if (k && !strcmp(k, "provider"))
            field = &d->provider;
        else if (k && !strcmp(k, "model"))
            field = &d->model;
        else if (k && !strcmp(k, "api_key"))
            field = &d->api_key;
        if (field == NULL || v == NULL)
            return errf(err, errlen,
                        "%s: model '%s': deployments take scalar provider, model, weight and "
                        "api_key or api_key_env; got '%s'",
                        path, m->name ? m->name : "?", k ? k : "?");
        free(*field);
        *field = ibex_xstrdup(v);
    }
    return 0;
}

/* A model alias: name plus either provider and model (one deployment) or a deployments list. */
static int yaml_model(struct ibex_config *cfg, yaml_document_t *doc, yaml_node_t *map,
                      const char *path, char *err, size_t errlen)
{
    if (map->type != YAML_MAPPING_NODE)
        return errf(err, errlen, "%s: each entry of 'models' must be a mapping", path);
    cfg->models = ibex_xrealloc(cfg->models, (cfg->nmodels + 1) * sizeof(*cfg->models));
    struct ibex_model_config *m = &cfg->models[cfg->nmodels++];
    memset(m, 0, sizeof(*m));
    char *provider = NULL, *model = NULL;
    int rc = 0;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top && rc == 0; pr++) {
        const char *k = scalar(doc, yaml_document_get_node(doc, pr->key));
        yaml_node_t *vn = yaml_document_get_node(doc, pr->value);
        if (k && !strcmp(k, "deployments") && vn->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = vn->data.sequence.items.start;
                 it < vn->data.sequence.items.top && rc == 0; it++)
                rc = yaml_deployment(m, doc, yaml_document_get_node(doc, *it), path, err, errlen);
            continue;
        }
        const char *v = scalar(doc, vn);
        char **field = NULL;
        if (k && !strcmp(k, "name"))
            field = &m->name;
        else if (k && !strcmp(k, "provider"))
            field = &provider;
        else if (k && !strcmp(k, "model"))
            field = &model;
        if (field == NULL || v == NULL) {
            rc = errf(err, errlen,
                      "%s: model entries take a scalar name and either provider and model or a "
                      "list of deployments; got '%s'",
                      path, k ? k : "?");
            break;
        }
        free(*field);
        *field = ibex_xstrdup(v);
    }
    if (rc == 0 && (provider || model) && m->ndeployments)
        rc = errf(err, errlen, "%s: model '%s': give provider and model, or deployments, not both",
                  path, m->name ? m->name : "?");
    if (rc == 0 && m->ndeployments == 0) {
        m->deployments = ibex_xcalloc(1, sizeof(*m->deployments));
        m->deployments[0] = (struct ibex_deployment_config){provider, model, 1, NULL};
        m->ndeployments = 1;
        provider = model = NULL;
    }
    free(provider);
    free(model);
    return rc;
}

/* A price entry: model, input and output (USD per million tokens), optional provider. */
static int yaml_price(struct ibex_config *cfg, yaml_document_t *doc, yaml_node_t *map,
                      const char *path, char *err, size_t errlen)
{
    if (map->type != YAML_MAPPING_NODE)
        return errf(err, errlen, "%s: each entry of 'prices' must be a mapping", path);
    cfg->prices = ibex_xrealloc(cfg->prices, (cfg->nprices + 1) * sizeof(*cfg->prices));
    struct ibex_price_config *p = &cfg->prices[cfg->nprices++];
    memset(p, 0, sizeof(*p));
    p->input = p->output = -1;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        const char *k = scalar(doc, yaml_document_get_node(doc, pr->key));
        const char *v = scalar(doc, yaml_document_get_node(doc, pr->value));
        if (k == NULL || v == NULL)
            return errf(err, errlen, "%s: price keys and values must be scalars", path);
        if (!strcmp(k, "input") || !strcmp(k, "output")) {
            char *end = NULL;
            double d = strtod(v, &end);
            if (end == v || *end || !(d >= 0 && d < 1e6))
                return errf(err, errlen,
                            "%s: price of '%s': %s must be US dollars per million tokens, got '%s'",
                            path, p->model ? p->model : "?", k, v);
            *(k[0] == 'i' ? &p->input : &p->output) = d;
        } else if (!strcmp(k, "model") || !strcmp(k, "provider")) {
            char **field = k[0] == 'm' ? &p->model : &p->provider;
            free(*field);
            *field = ibex_xstrdup(v);
        } else {
            return errf(err, errlen, "%s: unknown price key '%s' (model, provider, input, output)",
                        path, k);
        }
    }
    if (p->model == NULL || p->input < 0 || p->output < 0)
        return errf(err, errlen, "%s: prices[%zu]: 'model', 'input' and 'output' are required",
                    path, cfg->nprices - 1);
    return 0;
}

const struct ibex_price_config *ibex_config_price(const struct ibex_config *cfg,
                                                  const char *provider, const char *model)
{
    const struct ibex_price_config *any = NULL;
    for (size_t i = 0; i < cfg->nprices; i++) {
        const struct ibex_price_config *p = &cfg->prices[i];
        if (strcmp(p->model, model) != 0)
            continue;
        if (p->provider && provider && !strcmp(p->provider, provider))
            return p;
        if (p->provider == NULL && any == NULL)
            any = p;
    }
    return any;
}

static int load_yaml(struct ibex_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return errf(err, errlen, "setting 'config': cannot open '%s': %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = errf(err, errlen, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                  parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        fclose(f);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL)
        goto out; /* empty file */
    if (root->type != YAML_MAPPING_NODE) {
        rc = errf(err, errlen, "%s: the top level must be a mapping of settings", path);
        goto out;
    }
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(&doc, pr->value);
        const char *k = scalar(&doc, kn);
        if (k == NULL) {
            rc = errf(err, errlen, "%s: keys must be scalars", path);
            goto out;
        }
        if (!strcmp(k, "providers") || !strcmp(k, "models") || !strcmp(k, "prices")) {
            if (vn->type != YAML_SEQUENCE_NODE) {
                rc = errf(err, errlen, "%s: '%s' must be a list", path, k);
                goto out;
            }
            for (yaml_node_item_t *it = vn->data.sequence.items.start;
                 it < vn->data.sequence.items.top; it++) {
                yaml_node_t *item = yaml_document_get_node(&doc, *it);
                rc = !strcmp(k, "providers") ? yaml_provider(cfg, &doc, item, path, err, errlen)
                     : !strcmp(k, "models")  ? yaml_model(cfg, &doc, item, path, err, errlen)
                                             : yaml_price(cfg, &doc, item, path, err, errlen);
                if (rc)
                    goto out;
            }
            continue;
        }
        const struct setting *st = find_setting(k, strlen(k));
        if (st == NULL) {
            rc = errf(err, errlen, "%s: unknown setting '%s' (see ibex serve --help)", path, k);
            goto out;
        }
        const char *v = scalar(&doc, vn);
        if (v == NULL) {
            rc = errf(err, errlen, "%s: setting '%s' must be a scalar", path, k);
            goto out;
        }
        if ((rc = set_value(cfg, st, v, path, err, errlen)) != 0)
            goto out;
    }
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

/* ---- environment and flags ---- */

static void env_name(const struct setting *st, char *out, size_t n)
{
    size_t o = 0;
    const char *prefix = "IBEX_";
    for (size_t i = 0; prefix[i] && o + 1 < n; i++)
        out[o++] = prefix[i];
    for (size_t i = 0; st->name[i] && o + 1 < n; i++)
        out[o++] = (char)toupper((unsigned char)st->name[i]);
    out[o] = '\0';
}

static void flag_name(const struct setting *st, char *out, size_t n)
{
    size_t o = 0;
    out[o++] = '-';
    out[o++] = '-';
    for (size_t i = 0; st->name[i] && o + 1 < n; i++)
        out[o++] = st->name[i] == '_' ? '-' : st->name[i];
    out[o] = '\0';
}

static int load_env(struct ibex_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        char name[64];
        env_name(&settings[i], name, sizeof(name));
        const char *v = getenv(name);
        if (v && set_value(cfg, &settings[i], v, name, err, errlen))
            return -1;
    }
    return 0;
}

/* Finds the setting a flag names ("--max-body-bytes", with '-' or '_'). */
static const struct setting *flag_setting(const char *flag, size_t len)
{
    char name[64];
    if (len >= sizeof(name))
        return NULL;
    for (size_t i = 0; i < len; i++)
        name[i] = flag[i] == '-' ? '_' : flag[i];
    return find_setting(name, len);
}

static int load_flags(struct ibex_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return errf(err, errlen, "unexpected argument '%s' (see ibex serve --help)", a);
        a += 2;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len == 6 && !strncmp(a, "config", 6)) {
            if (!eq)
                i++;
            continue; /* read before everything else */
        }
        const struct setting *st = flag_setting(a, len);
        if (st == NULL)
            return errf(err, errlen, "unknown flag '--%.*s' (see ibex serve --help)", (int)len, a);
        const char *val = eq ? eq + 1 : NULL;
        if (val == NULL && st->kind == K_BOOL &&
            (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
            val = "true";
        if (val == NULL) {
            if (i + 1 >= argc)
                return errf(err, errlen, "flag '--%.*s' needs a value", (int)len, a);
            val = argv[++i];
        }
        char source[80];
        snprintf(source, sizeof(source), "--%.*s", (int)len, a);
        if (set_value(cfg, st, val, source, err, errlen))
            return -1;
    }
    return 0;
}

static const char *config_path(int argc, char **argv)
{
    const char *path = getenv("IBEX_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
    }
    return path && *path ? path : NULL;
}

/* ---- providers and models ---- */

static void add_provider(struct ibex_config *cfg, const char *name, enum ibex_provider_type type,
                         const char *base_url, const char *api_key)
{
    cfg->providers = ibex_xrealloc(cfg->providers, (cfg->nproviders + 1) * sizeof(*cfg->providers));
    struct ibex_provider_config *p = &cfg->providers[cfg->nproviders++];
    memset(p, 0, sizeof(*p));
    p->name = ibex_xstrdup(name);
    p->type = type;
    p->base_url = base_url ? ibex_xstrdup(base_url) : NULL;
    p->api_key = api_key ? ibex_xstrdup(api_key) : NULL;
}

const struct ibex_provider_config *ibex_config_provider(const struct ibex_config *cfg,
                                                        const char *name)
{
    for (size_t i = 0; i < cfg->nproviders; i++)
        if (!strcmp(cfg->providers[i].name, name))
            return &cfg->providers[i];
    return NULL;
}

/* Where a provider of a type with one public endpoint answers when the config names no base_url;
 * an OpenAI-compatible server (openai type) must be named. */
static const char *default_base_url(enum ibex_provider_type type)
{
    switch (type) {
    case IBEX_PROVIDER_ANTHROPIC:
        return "https://api.anthropic.com";
    case IBEX_PROVIDER_GEMINI:
        return "https://generativelanguage.googleapis.com";
    default:
        return NULL;
    }
}

static void inherit_timeouts(struct ibex_upstream_timeouts *t,
                             const struct ibex_upstream_timeouts *d)
{
    if (!t->connect_ms)
        t->connect_ms = d->connect_ms;
    if (!t->header_ms)
        t->header_ms = d->header_ms;
    if (!t->first_token_ms)
        t->first_token_ms = d->first_token_ms;
    if (!t->idle_ms)
        t->idle_ms = d->idle_ms;
    if (!t->total_ms)
        t->total_ms = d->total_ms;
}

static int finish_providers(struct ibex_config *cfg, char *err, size_t errlen)
{
    /* The file's providers first: every lookup below compares names. */
    for (size_t i = 0; i < cfg->nproviders; i++)
        if (cfg->providers[i].name == NULL || cfg->providers[i].type == 0)
            return errf(err, errlen, "providers[%zu]: 'name' and 'type' are required", i);
    /* A provider per well-known key in the environment, unless the file names one so. */
    static const struct {
        const char *name, *key_env, *base_env, *base;
        enum ibex_provider_type type;
    } from_env[] = {
        {"openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1",
         IBEX_PROVIDER_OPENAI},
        {"anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", NULL, IBEX_PROVIDER_ANTHROPIC},
        {"gemini", "GEMINI_API_KEY", "GEMINI_BASE_URL", NULL, IBEX_PROVIDER_GEMINI},
    };
    for (size_t i = 0; i < sizeof(from_env) / sizeof(from_env[0]); i++) {
        const char *key = getenv(from_env[i].key_env);
        const char *base = getenv(from_env[i].base_env);
        if (key && *key && !ibex_config_provider(cfg, from_env[i].name))
            add_provider(cfg, from_env[i].name, from_env[i].type,
                         base && *base ? base : from_env[i].base, key);
    }
    if (cfg->mock && !ibex_config_provider(cfg, "mock"))
        add_provider(cfg, "mock", IBEX_PROVIDER_MOCK, NULL, NULL);
    for (size_t i = 0; i < cfg->nproviders; i++) {
        struct ibex_provider_config *p = &cfg->providers[i];
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->providers[j].name, p->name))
                return errf(err, errlen, "provider '%s' is defined twice", p->name);
        if (p->type == IBEX_PROVIDER_AZURE && p->api_version == NULL)
            p->api_version = ibex_xstrdup("2024-10-21");
        if (p->api_version && (p->api_version[0] == '\0' ||
                               strspn(p->api_version, "0123456789abcdefghijklmnopqrstuvwxyz-.") !=
                                   strlen(p->api_version)))
            return errf(err, errlen,
                        "provider '%s': api_version must be like 2024-10-21 or 2025-01-01-preview",
                        p->name);
        if (p->base_url == NULL && default_base_url(p->type))
            p->base_url = ibex_xstrdup(default_base_url(p->type));
        if (p->type != IBEX_PROVIDER_MOCK) {
            if (p->base_url == NULL || (strncmp(p->base_url, "http://", 7) != 0 &&
                                        strncmp(p->base_url, "https://", 8) != 0))
                return errf(err, errlen,
                            "provider '%s': base_url must be an http:// or https:// URL", p->name);
            size_t n = strlen(p->base_url);
            while (n > 0 && p->base_url[n - 1] == '/')
                p->base_url[--n] = '\0';
        }
        inherit_timeouts(&p->timeouts, &cfg->upstream);
    }
    for (size_t i = 0; i < cfg->nmodels; i++) {
        struct ibex_model_config *m = &cfg->models[i];
        if (m->name == NULL)
            return errf(err, errlen, "models[%zu]: 'name' is required", i);
        uint64_t weights = 0;
        if (m->ndeployments > IBEX_CONFIG_MAX_DEPLOYMENTS)
            return errf(err, errlen, "model '%s': at most %d deployments", m->name,
                        IBEX_CONFIG_MAX_DEPLOYMENTS);
        for (size_t k = 0; k < m->ndeployments; k++) {
            struct ibex_deployment_config *d = &m->deployments[k];
            if (d->provider == NULL)
                return errf(err, errlen, "model '%s': 'provider' is required", m->name);
            if (!ibex_config_provider(cfg, d->provider))
                return errf(err, errlen, "model '%s': unknown provider '%s'", m->name, d->provider);
            if (d->model == NULL)
                d->model = ibex_xstrdup(m->name);
            weights += d->weight;
        }
        if (weights == 0)
            return errf(err, errlen, "model '%s': at least one deployment needs a weight above 0",
                        m->name);
    }
    /* unset: the first of the well-known providers that is configured */
    for (size_t i = 0; i < sizeof(from_env) / sizeof(from_env[0]); i++)
        if (cfg->default_provider[0] == '\0' && ibex_config_provider(cfg, from_env[i].name)) {
            free(cfg->default_provider);
            cfg->default_provider = ibex_xstrdup(from_env[i].name);
        }
    if (cfg->default_provider[0] && !ibex_config_provider(cfg, cfg->default_provider))
        return errf(err, errlen, "setting 'default_provider': unknown provider '%s'",
                    cfg->default_provider);
    return 0;
}

int ibex_config_load(struct ibex_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc = 0;
    for (size_t i = 0; i < NSETTINGS && rc == 0; i++)
        rc = set_value(cfg, &settings[i], settings[i].def, "default", err, errlen);
    assert(rc == 0); /* the table's defaults are valid */
    const char *path = config_path(argc, argv);
    if (path)
        rc = load_yaml(cfg, path, err, errlen);
    if (rc == 0)
        rc = load_env(cfg, err, errlen);
    const char *tokens = getenv("AUTH_TOKENS_JSON");
    if (rc == 0 && tokens && cfg->auth_tokens_json[0] == '\0')
        rc = set_value(cfg, find_setting("auth_tokens_json", 16), tokens, "AUTH_TOKENS_JSON", err,
                       errlen);
    if (rc == 0)
        rc = load_flags(cfg, argc, argv, err, errlen);
    enum ibex_log_level level;
    if (rc == 0 && ibex_log_parse_level(cfg->log_level, &level) != 0)
        rc = errf(err, errlen, "setting 'log_level': must be debug, info, warn or error, got '%s'",
                  cfg->log_level);
    if (rc == 0 && strcmp(cfg->upstream_http_client, "native") != 0 &&
        strcmp(cfg->upstream_http_client, "curl") != 0)
        rc = errf(err, errlen, "setting 'upstream_http_client': must be native or curl, got '%s'",
                  cfg->upstream_http_client);
    if (rc == 0) {
        cfg->record_traces = strcmp(cfg->recording, "off") != 0;
        cfg->record_turns = strcmp(cfg->recording, "checkpoints") == 0;
        if (cfg->record_traces && !cfg->record_turns && strcmp(cfg->recording, "traces") != 0)
            rc = errf(err, errlen,
                      "setting 'recording': must be checkpoints, traces or off, got '%s'",
                      cfg->recording);
    }
    if (rc == 0)
        rc = finish_providers(cfg, err, errlen);
    if (rc) {
        ibex_config_dispose(cfg);
        return -1;
    }
    return 0;
}

void ibex_config_dispose(struct ibex_config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].kind == K_STRING)
            free(*(char **)((char *)cfg + settings[i].off));
    for (size_t i = 0; i < cfg->nproviders; i++) {
        free(cfg->providers[i].name);
        free(cfg->providers[i].base_url);
        free(cfg->providers[i].api_key);
        free(cfg->providers[i].api_version);
    }
    free(cfg->providers);
    for (size_t i = 0; i < cfg->nmodels; i++) {
        free(cfg->models[i].name);
        for (size_t k = 0; k < cfg->models[i].ndeployments; k++) {
            free(cfg->models[i].deployments[k].provider);
            free(cfg->models[i].deployments[k].model);
            free(cfg->models[i].deployments[k].api_key);
        }
        free(cfg->models[i].deployments);
    }
    free(cfg->models);
    for (size_t i = 0; i < cfg->nprices; i++) {
        free(cfg->prices[i].provider);
        free(cfg->prices[i].model);
    }
    free(cfg->prices);
    memset(cfg, 0, sizeof(*cfg));
}

void ibex_config_print_help(FILE *out)
{
    fprintf(out,
            "Settings (flag / environment variable, default: meaning). Precedence: flags over\n"
            "environment over the YAML file given by --config FILE or IBEX_CONFIG.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        char flag[64], env[64];
        flag_name(&settings[i], flag, sizeof(flag));
        env_name(&settings[i], env, sizeof(env));
        fprintf(out, "  %s / %s (default \"%s\")\n      %s\n", flag, env, settings[i].def,
                settings[i].help);
    }
    fprintf(
        out,
        "\nProviders: OPENAI_API_KEY configures provider \"openai\" (OPENAI_BASE_URL overrides\n"
        "its base URL, e.g. http://127.0.0.1:11434/v1 for Ollama or a vLLM server); it then\n"
        "receives every model name no alias claims. More providers and model aliases go in\n"
        "the YAML file:\n\n"
        "  providers:\n"
        "    - name: local\n"
        "      type: openai            # openai (any OpenAI-compatible server) or mock\n"
        "      base_url: http://127.0.0.1:8000/v1\n"
        "      api_key_env: LOCAL_KEY  # or api_key: ...\n"
        "      first_token_timeout: 120s   # connect/header/first_token/idle/total_timeout\n"
        "  models:\n"
        "    - name: fast              # what clients send as \"model\"\n"
        "      provider: local\n"
        "      model: llama3.1:8b      # what the provider receives\n");
}
