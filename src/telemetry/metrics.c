/* Metric storage and the Prometheus text format. Invariant: a worker's struct is zeroed before
 * its pointer is published in workers[], and is never freed while the process runs, so a scrape
 * may read it at any time. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"

static const int status_codes[IBEX_METRICS_NSTATUS - 1] = {
    200, 201, 400, 401, 403, 404, 405, 408, 413, 422, 429, 431, 499, 500, 502, 504,
};
/* Seconds. Latency covers fast local upstreams up to slow LLM answers. */
static const double latency_le[IBEX_METRICS_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
/* Gateway overhead is measured in microseconds. */
static const double overhead_le[IBEX_METRICS_OVERHEAD_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
};
static const char *const route_names[IBEX_ROUTE_COUNT] = {
    "/v1/chat/completions",
    "/v1/models",
    "/health",
    "/ready",
    "/status",
    "/metrics",
    "/v1/tenants",
    "/v1/agents",
    "/v1/keys",
    "/v1/audit",
    "/v1/traces",
    "/v1/sessions",
    "/v1/tasks",
    "/v1/approvals",
    "/v1/credentials",
    "/v1/messages",
    "other",
};

static struct ibex_metrics *_Atomic workers[IBEX_METRICS_MAX_WORKERS];
static _Atomic size_t nworkers;
static const char *const *provider_names;
static size_t nproviders;
static const char *const *auth_failure_names;
static size_t nauth_failures;
static const char *const *deployment_providers, *const *deployment_models, *const *attempt_names;
static size_t ndeployments;

void ibex_metrics_set_deployments(const char *const *providers, const char *const *models, size_t n,
                                  const char *const *outcome_names)
{
    deployment_providers = providers;
    deployment_models = models;
    attempt_names = outcome_names;
    ndeployments = n < IBEX_METRICS_MAX_DEPLOYMENTS ? n : IBEX_METRICS_MAX_DEPLOYMENTS;
}

void ibex_metrics_set_auth_failure_names(const char *const *names, size_t n)
{
    auth_failure_names = names;
    nauth_failures = n < IBEX_METRICS_NAUTH_FAILURES ? n : IBEX_METRICS_NAUTH_FAILURES;
}

void ibex_metrics_set_providers(const char *const *names, size_t n)
{
    provider_names = names;
    nproviders = n < IBEX_METRICS_MAX_PROVIDERS ? n : IBEX_METRICS_MAX_PROVIDERS;
}

struct ibex_metrics *ibex_metrics_register(void)
{
    struct ibex_metrics *m = ibex_xcalloc(1, sizeof(*m));
    size_t i = atomic_fetch_add(&nworkers, 1);
    if (i >= IBEX_METRICS_MAX_WORKERS)
        return m; /* counted by nobody; the config bounds workers below this */
    atomic_store(&workers[i], m);
    return m;
}

const char *ibex_metrics_route_name(enum ibex_route route)
{
    return route_names[route];
}

static void inc(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static size_t status_index(int status)
{
    for (size_t i = 0; i < IBEX_METRICS_NSTATUS - 1; i++)
        if (status_codes[i] == status)
            return i;
    return IBEX_METRICS_NSTATUS - 1;
}

void ibex_metrics_request(struct ibex_metrics *m, enum ibex_route route, int status,
                          uint64_t bytes_in, uint64_t bytes_out)
{
    inc(&m->requests[route][status_index(status)], 1);
    inc(&m->bytes_in, bytes_in);
    inc(&m->bytes_out, bytes_out);
}

static void observe(struct ibex_histogram *h, const double *le, size_t n, uint64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < n && s > le[i])
        i++;
    inc(&h->counts[i], 1);
    inc(&h->sum_ns, ns);
}

void ibex_metrics_upstream(struct ibex_metrics *m, size_t provider, int outcome,
                           uint64_t latency_ns, uint64_t ttft_ns)
{
    if (provider >= IBEX_METRICS_MAX_PROVIDERS || outcome < 0 || outcome >= IBEX_METRICS_NOUTCOME)
        return;
    inc(&m->upstream_outcomes[provider][outcome], 1);
    observe(&m->upstream_latency[provider], latency_le, IBEX_METRICS_LATENCY_BUCKETS, latency_ns);
    if (ttft_ns)
        observe(&m->ttft[provider], latency_le, IBEX_METRICS_LATENCY_BUCKETS, ttft_ns);
}

void ibex_metrics_overhead(struct ibex_metrics *m, uint64_t overhead_ns)
{
    observe(&m->overhead, overhead_le, IBEX_METRICS_OVERHEAD_BUCKETS, overhead_ns);
}

/* The slot of (tenant, agent) in m's table, claimed when new; the "_other" slot once three
 * quarters are in use (probes stay short). Only the worker that owns m calls this. */
static struct ibex_usage_slot *usage_slot(struct ibex_metrics *m, const char *tenant,
                                          const char *agent)
{
    const size_t other = IBEX_METRICS_USAGE_SLOTS - 1;
    uint64_t h = 1469598103934665603ull; /* FNV-1a over tenant NUL agent */
    for (const char *p = tenant; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h *= 1099511628211ull;
    for (const char *p = agent; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (size_t i = h % other;; i = (i + 1) % other) {
        struct ibex_usage_slot *s = &m->usage[i];
        if (atomic_load_explicit(&s->used, memory_order_relaxed)) {
            if (!strcmp(s->tenant, tenant) && !strcmp(s->agent, agent))
                return s;
            continue;
        }
        if (m->usage_count >= other * 3 / 4)
            break;
        snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
        snprintf(s->agent, sizeof(s->agent), "%s", agent);
        atomic_store_explicit(&s->used, 1, memory_order_release);
        m->usage_count++;
        return s;
    }
    struct ibex_usage_slot *s = &m->usage[other];
    if (!atomic_load_explicit(&s->used, memory_order_relaxed)) {
        snprintf(s->tenant, sizeof(s->tenant), "_other");
        atomic_store_explicit(&s->used, 1, memory_order_release);
    }
    return s;
}

void ibex_metrics_usage(struct ibex_metrics *m, size_t provider, const char *tenant,
                        const char *agent, int64_t prompt_tokens, int64_t completion_tokens,
                        int64_t cost_nanousd)
{
    if (provider >= IBEX_METRICS_MAX_PROVIDERS)
        return;
    uint64_t prompt = prompt_tokens > 0 ? (uint64_t)prompt_tokens : 0;
    uint64_t completion = completion_tokens > 0 ? (uint64_t)completion_tokens : 0;
    uint64_t cost = cost_nanousd > 0 ? (uint64_t)cost_nanousd : 0;
    inc(&m->tokens[provider][0], prompt);
    inc(&m->tokens[provider][1], completion);
    inc(&m->cost_nanousd[provider], cost);
    struct ibex_usage_slot *s = usage_slot(m, tenant, agent ? agent : "");
    inc(&s->requests, 1);
    inc(&s->prompt_tokens, prompt);
    inc(&s->completion_tokens, completion);
    inc(&s->cost_nanousd, cost);
}

/* One (tenant, agent) pair summed over the workers, for a scrape. */
struct usage_row {
    const char *tenant, *agent;
    uint64_t requests, prompt, completion, cost;
};

static int usage_row_cmp(const void *a, const void *b)
{
    const struct usage_row *x = a, *y = b;
    int c = strcmp(x->tenant, y->tenant);
    return c ? c : strcmp(x->agent, y->agent);
}

static void render_usage(struct ibex_buf *out, size_t n)
{
    struct usage_row *rows = ibex_xcalloc(n * IBEX_METRICS_USAGE_SLOTS + 1, sizeof(*rows));
    size_t nrows = 0;
    for (size_t w = 0; w < n; w++) {
        struct ibex_metrics *m = atomic_load(&workers[w]);
        for (size_t i = 0; m && i < IBEX_METRICS_USAGE_SLOTS; i++) {
            struct ibex_usage_slot *s = &m->usage[i];
            if (!atomic_load_explicit(&s->used, memory_order_acquire))
                continue;
            rows[nrows++] = (struct usage_row){
                s->tenant,
                s->agent,
                atomic_load_explicit(&s->requests, memory_order_relaxed),
                atomic_load_explicit(&s->prompt_tokens, memory_order_relaxed),
                atomic_load_explicit(&s->completion_tokens, memory_order_relaxed),
                atomic_load_explicit(&s->cost_nanousd, memory_order_relaxed),
            };
        }
    }
    qsort(rows, nrows, sizeof(*rows), usage_row_cmp);
    ibex_buf_append_cstr(out,
                         "# HELP ibex_usage_requests_total Answered requests by tenant and agent.\n"
                         "# TYPE ibex_usage_requests_total counter\n"
                         "# HELP ibex_usage_tokens_total Tokens by tenant, agent and kind (prompt, "
                         "completion).\n"
                         "# TYPE ibex_usage_tokens_total counter\n"
                         "# HELP ibex_usage_cost_usd_total Cost by tenant and agent, from the "
                         "prices table.\n"
                         "# TYPE ibex_usage_cost_usd_total counter\n");
    for (size_t i = 0; i < nrows;) {
        struct usage_row sum = rows[i];
        size_t j = i + 1;
        for (; j < nrows && usage_row_cmp(&rows[j], &sum) == 0; j++) {
            sum.requests += rows[j].requests;
            sum.prompt += rows[j].prompt;
            sum.completion += rows[j].completion;
            sum.cost += rows[j].cost;
        }
        char labels[128];
        snprintf(labels, sizeof(labels), "tenant=\"%s\",agent=\"%s\"", sum.tenant, sum.agent);
        ibex_buf_appendf(out,
                         "ibex_usage_requests_total{%s} %llu\n"
                         "ibex_usage_tokens_total{%s,kind=\"prompt\"} %llu\n"
                         "ibex_usage_tokens_total{%s,kind=\"completion\"} %llu\n"
                         "ibex_usage_cost_usd_total{%s} %.9f\n",
                         labels, (unsigned long long)sum.requests, labels,
                         (unsigned long long)sum.prompt, labels, (unsigned long long)sum.completion,
                         labels, (double)sum.cost / 1e9);
        i = j;
    }
    free(rows);
}

void ibex_metrics_attempt(struct ibex_metrics *m, size_t deployment, int outcome)
{
    if (deployment < IBEX_METRICS_MAX_DEPLOYMENTS && outcome >= 0 &&
        outcome < IBEX_METRICS_NATTEMPT)
        inc(&m->attempts[deployment][outcome], 1);
}

void ibex_metrics_auth_cache(struct ibex_metrics *m, bool hit)
{
    inc(hit ? &m->auth_cache_hits : &m->auth_cache_misses, 1);
}

void ibex_metrics_auth_failure(struct ibex_metrics *m, int reason)
{
    if (reason >= 0 && reason < IBEX_METRICS_NAUTH_FAILURES)
        inc(&m->auth_failures[reason], 1);
}

void ibex_metrics_gauge_add(_Atomic int64_t *gauge, int64_t delta)
{
    atomic_fetch_add_explicit(gauge, delta, memory_order_relaxed);
}

/* ---- rendering ---- */

static uint64_t rd(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static size_t count_workers(void)
{
    size_t n = atomic_load(&nworkers);
    return n < IBEX_METRICS_MAX_WORKERS ? n : IBEX_METRICS_MAX_WORKERS;
}

/* Sums one histogram (located by offset inside struct ibex_metrics) over every worker. */
static void sum_histogram(size_t offset, uint64_t counts[IBEX_METRICS_LATENCY_BUCKETS + 1],
                          uint64_t *sum_ns)
{
    memset(counts, 0, sizeof(uint64_t) * (IBEX_METRICS_LATENCY_BUCKETS + 1));
    *sum_ns = 0;
    size_t n = count_workers();
    for (size_t w = 0; w < n; w++) {
        struct ibex_metrics *m = atomic_load(&workers[w]);
        if (m == NULL)
            continue;
        const struct ibex_histogram *h = (const struct ibex_histogram *)((const char *)m + offset);
        for (size_t i = 0; i <= IBEX_METRICS_LATENCY_BUCKETS; i++)
            counts[i] += rd(&h->counts[i]);
        *sum_ns += rd(&h->sum_ns);
    }
}

static void render_histogram(struct ibex_buf *out, const char *name, const char *labels,
                             size_t offset, const double *le, size_t nb)
{
    uint64_t counts[IBEX_METRICS_LATENCY_BUCKETS + 1], sum_ns, cum = 0;
    sum_histogram(offset, counts, &sum_ns);
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < nb; i++) {
        cum += counts[i];
        ibex_buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, le[i],
                         (unsigned long long)cum);
    }
    cum += counts[nb];
    ibex_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                     (unsigned long long)cum);
    ibex_buf_appendf(out, "%s_sum{%s} %.9f\n%s_count{%s} %llu\n", name, labels,
                     (double)sum_ns / 1e9, name, labels, (unsigned long long)cum);
}

/* The sum over workers of the counter at byte offset off of struct ibex_metrics. */
static uint64_t sum_counter(size_t n, size_t off)
{
    uint64_t sum = 0;
    for (size_t w = 0; w < n; w++) {
        struct ibex_metrics *m = atomic_load(&workers[w]);
        if (m)
            sum += rd((_Atomic uint64_t *)((char *)m + off));
    }
    return sum;
}

void ibex_metrics_render(struct ibex_buf *out, const char *(*outcome_name)(int outcome))
{
    size_t n = count_workers();
    uint64_t sum;

    ibex_buf_append_cstr(out,
                         "# HELP ibex_requests_total HTTP requests answered, by route and status.\n"
                         "# TYPE ibex_requests_total counter\n");
    for (int r = 0; r < IBEX_ROUTE_COUNT; r++) {
        for (size_t s = 0; s < IBEX_METRICS_NSTATUS; s++) {
            sum = 0;
            for (size_t w = 0; w < n; w++) {
                struct ibex_metrics *m = atomic_load(&workers[w]);
                if (m)
                    sum += rd(&m->requests[r][s]);
            }
            if (sum == 0)
                continue;
            if (s < IBEX_METRICS_NSTATUS - 1)
                ibex_buf_appendf(out, "ibex_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                 route_names[r], status_codes[s], (unsigned long long)sum);
            else
                ibex_buf_appendf(out, "ibex_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                                 route_names[r], (unsigned long long)sum);
        }
    }

    int64_t in_flight = 0, streams = 0;
    uint64_t bin = 0, bout = 0;
    for (size_t w = 0; w < n; w++) {
        struct ibex_metrics *m = atomic_load(&workers[w]);
        if (m == NULL)
            continue;
        in_flight += atomic_load_explicit(&m->in_flight, memory_order_relaxed);
        streams += atomic_load_explicit(&m->streams_open, memory_order_relaxed);
        bin += rd(&m->bytes_in);
        bout += rd(&m->bytes_out);
    }
    ibex_buf_appendf(
        out,
        "# HELP ibex_requests_in_flight Requests received and not yet answered.\n"
        "# TYPE ibex_requests_in_flight gauge\nibex_requests_in_flight %lld\n"
        "# HELP ibex_streams_open Streaming responses in progress.\n"
        "# TYPE ibex_streams_open gauge\nibex_streams_open %lld\n"
        "# HELP ibex_http_bytes_received_total Request bytes received (headers and body).\n"
        "# TYPE ibex_http_bytes_received_total counter\n"
        "ibex_http_bytes_received_total %llu\n"
        "# HELP ibex_http_bytes_sent_total Response bytes sent.\n"
        "# TYPE ibex_http_bytes_sent_total counter\nibex_http_bytes_sent_total %llu\n",
        (long long)in_flight, (long long)streams, (unsigned long long)bin,
        (unsigned long long)bout);

    ibex_buf_append_cstr(
        out, "# HELP ibex_upstream_requests_total Upstream calls by provider and outcome.\n"
             "# TYPE ibex_upstream_requests_total counter\n");
    for (size_t p = 0; p < nproviders; p++) {
        for (int o = 0; o < IBEX_METRICS_NOUTCOME; o++) {
            sum = 0;
            for (size_t w = 0; w < n; w++) {
                struct ibex_metrics *m = atomic_load(&workers[w]);
                if (m)
                    sum += rd(&m->upstream_outcomes[p][o]);
            }
            if (sum)
                ibex_buf_appendf(
                    out, "ibex_upstream_requests_total{provider=\"%s\",outcome=\"%s\"} %llu\n",
                    provider_names[p], outcome_name(o), (unsigned long long)sum);
        }
    }

    ibex_buf_append_cstr(out, "# HELP ibex_upstream_attempts_total Attempts on each deployment "
                              "(provider and upstream model; \"*\": the client's model name "
                              "unchanged) by outcome, retries and fallbacks included.\n"
                              "# TYPE ibex_upstream_attempts_total counter\n");
    for (size_t d = 0; d < ndeployments; d++) {
        for (int o = 0; o < IBEX_METRICS_NATTEMPT; o++) {
            sum = 0;
            for (size_t w = 0; w < n; w++) {
                struct ibex_metrics *m = atomic_load(&workers[w]);
                if (m)
                    sum += rd(&m->attempts[d][o]);
            }
            if (sum)
                ibex_buf_appendf(out,
                                 "ibex_upstream_attempts_total{provider=\"%s\",model=\"%s\","
                                 "outcome=\"%s\"} %llu\n",
                                 deployment_providers[d], deployment_models[d], attempt_names[o],
                                 (unsigned long long)sum);
        }
    }

    ibex_buf_append_cstr(out, "# HELP ibex_tokens_total Tokens of answered requests by provider "
                              "and kind (prompt, completion), as the provider reported them.\n"
                              "# TYPE ibex_tokens_total counter\n");
    for (size_t p = 0; p < nproviders; p++)
        for (int k = 0; k < 2; k++) {
            uint64_t t = sum_counter(n, offsetof(struct ibex_metrics, tokens) +
                                            (p * 2 + (size_t)k) * sizeof(_Atomic uint64_t));
            if (t)
                ibex_buf_appendf(out, "ibex_tokens_total{provider=\"%s\",kind=\"%s\"} %llu\n",
                                 provider_names[p], k ? "completion" : "prompt",
                                 (unsigned long long)t);
        }
    ibex_buf_append_cstr(out, "# HELP ibex_cost_usd_total Cost of answered requests by provider, "
                              "from the prices table (models without a price add nothing).\n"
                              "# TYPE ibex_cost_usd_total counter\n");
    for (size_t p = 0; p < nproviders; p++) {
        uint64_t nano = sum_counter(n, offsetof(struct ibex_metrics, cost_nanousd) +
                                           p * sizeof(_Atomic uint64_t));
        if (nano)
            ibex_buf_appendf(out, "ibex_cost_usd_total{provider=\"%s\"} %.9f\n", provider_names[p],
                             (double)nano / 1e9);
    }

    render_usage(out, n);

    ibex_buf_append_cstr(out, "# HELP ibex_upstream_duration_seconds Upstream call time, from "
                              "sending the request to the end of the response.\n"
                              "# TYPE ibex_upstream_duration_seconds histogram\n");
    for (size_t p = 0; p < nproviders; p++) {
        char labels[96];
        snprintf(labels, sizeof(labels), "provider=\"%s\"", provider_names[p]);
        render_histogram(out, "ibex_upstream_duration_seconds", labels,
                         offsetof(struct ibex_metrics, upstream_latency) +
                             p * sizeof(struct ibex_histogram),
                         latency_le, IBEX_METRICS_LATENCY_BUCKETS);
    }
    ibex_buf_append_cstr(out, "# HELP ibex_upstream_ttft_seconds Streaming: time from sending the "
                              "request to the first response byte.\n"
                              "# TYPE ibex_upstream_ttft_seconds histogram\n");
    for (size_t p = 0; p < nproviders; p++) {
        char labels[96];
        snprintf(labels, sizeof(labels), "provider=\"%s\"", provider_names[p]);
        render_histogram(out, "ibex_upstream_ttft_seconds", labels,
                         offsetof(struct ibex_metrics, ttft) + p * sizeof(struct ibex_histogram),
                         latency_le, IBEX_METRICS_LATENCY_BUCKETS);
    }
    ibex_buf_append_cstr(out, "# HELP ibex_gateway_overhead_seconds Time spent in the gateway per "
                              "proxied request: total minus upstream time.\n"
                              "# TYPE ibex_gateway_overhead_seconds histogram\n");
    render_histogram(out, "ibex_gateway_overhead_seconds", "",
                     offsetof(struct ibex_metrics, overhead), overhead_le,
                     IBEX_METRICS_OVERHEAD_BUCKETS);

    uint64_t hits = sum_counter(n, offsetof(struct ibex_metrics, auth_cache_hits));
    uint64_t misses = sum_counter(n, offsetof(struct ibex_metrics, auth_cache_misses));
    ibex_buf_appendf(
        out,
        "# HELP ibex_auth_cache_hits_total Credential lookups answered by a worker's cache.\n"
        "# TYPE ibex_auth_cache_hits_total counter\nibex_auth_cache_hits_total %llu\n"
        "# HELP ibex_auth_cache_misses_total Credential lookups that went to the store, the "
        "static tokens or the JWT verifier.\n"
        "# TYPE ibex_auth_cache_misses_total counter\nibex_auth_cache_misses_total %llu\n"
        "# HELP ibex_auth_cache_hit_ratio Hits over lookups since start (0 before any).\n"
        "# TYPE ibex_auth_cache_hit_ratio gauge\nibex_auth_cache_hit_ratio %.4f\n",
        (unsigned long long)hits, (unsigned long long)misses,
        hits + misses ? (double)hits / (double)(hits + misses) : 0.0);
    ibex_buf_append_cstr(out, "# HELP ibex_auth_failures_total Refused credentials, by code.\n"
                              "# TYPE ibex_auth_failures_total counter\n");
    for (size_t i = 0; i < nauth_failures; i++) {
        uint64_t v = sum_counter(n, offsetof(struct ibex_metrics, auth_failures) +
                                        i * sizeof(_Atomic uint64_t));
        ibex_buf_appendf(out, "ibex_auth_failures_total{code=\"%s\"} %llu\n", auth_failure_names[i],
                         (unsigned long long)v);
    }
}
