/* Prometheus metrics. Each worker owns one struct ibex_metrics and is its only writer (relaxed
 * atomics, so a scrape on another thread reads without a lock and without tearing); a scrape
 * sums every registered worker's counters.
 * Thread: ibex_metrics_register on the main thread before workers run; record functions on the
 * owning worker; ibex_metrics_render on any thread. */
#ifndef IBEX_TELEMETRY_METRICS_H
#define IBEX_TELEMETRY_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"

enum ibex_route {
    IBEX_ROUTE_CHAT = 0,
    IBEX_ROUTE_MODELS,
    IBEX_ROUTE_HEALTH,
    IBEX_ROUTE_READY,
    IBEX_ROUTE_STATUS,
    IBEX_ROUTE_METRICS,
    IBEX_ROUTE_TENANTS,
    IBEX_ROUTE_AGENTS,
    IBEX_ROUTE_KEYS,
    IBEX_ROUTE_AUDIT,
    IBEX_ROUTE_TRACES,
    IBEX_ROUTE_SESSIONS,
    IBEX_ROUTE_TASKS,
    IBEX_ROUTE_APPROVALS,
    IBEX_ROUTE_CREDENTIALS,
    IBEX_ROUTE_MESSAGES,
    IBEX_ROUTE_OTHER,
    IBEX_ROUTE_COUNT,
};

#define IBEX_METRICS_MAX_PROVIDERS 32
#define IBEX_METRICS_MAX_WORKERS 256
#define IBEX_METRICS_NSTATUS 17
#define IBEX_METRICS_NOUTCOME 11
#define IBEX_METRICS_LATENCY_BUCKETS 16
#define IBEX_METRICS_OVERHEAD_BUCKETS 12
#define IBEX_METRICS_NAUTH_FAILURES 8 /* enum ibex_auth_failure in auth/auth.h */
#define IBEX_METRICS_MAX_DEPLOYMENTS 128
/* (tenant, agent) pairs whose usage a worker counts apart; later ones count as tenant "_other" */
#define IBEX_METRICS_USAGE_SLOTS 1024
#define IBEX_METRICS_ID_LEN 36
#define IBEX_METRICS_NATTEMPT 10 /* enum attempt_outcome in gateway/chat.c */

struct ibex_histogram {
    _Atomic uint64_t counts[IBEX_METRICS_LATENCY_BUCKETS + 1]; /* last one: +Inf */
    _Atomic uint64_t sum_ns;
};

/* One (tenant, agent) pair's usage in one worker's table. The worker fills tenant and agent
 * before it publishes the slot (used, release); a scrape reads only published slots. */
struct ibex_usage_slot {
    _Atomic uint32_t used;
    char tenant[IBEX_METRICS_ID_LEN + 1];
    char agent[IBEX_METRICS_ID_LEN + 1]; /* "" without an agent */
    _Atomic uint64_t requests, prompt_tokens, completion_tokens, cost_nanousd;
};

struct ibex_metrics {
    _Atomic uint64_t requests[IBEX_ROUTE_COUNT][IBEX_METRICS_NSTATUS];
    _Atomic int64_t in_flight;
    _Atomic int64_t streams_open;
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
    /* per provider: outcome counts (ok, or an upstream failure kind) and latency */
    _Atomic uint64_t upstream_outcomes[IBEX_METRICS_MAX_PROVIDERS][IBEX_METRICS_NOUTCOME];
    struct ibex_histogram upstream_latency[IBEX_METRICS_MAX_PROVIDERS];
    struct ibex_histogram ttft[IBEX_METRICS_MAX_PROVIDERS];
    struct ibex_histogram overhead;
    /* per provider: tokens (prompt, completion) of answered requests and their cost */
    _Atomic uint64_t tokens[IBEX_METRICS_MAX_PROVIDERS][2];
    _Atomic uint64_t cost_nanousd[IBEX_METRICS_MAX_PROVIDERS];
    /* per (tenant, agent): open addressing by hash; the last slot is "_other" */
    struct ibex_usage_slot usage[IBEX_METRICS_USAGE_SLOTS];
    size_t usage_count; /* slots in use (the worker's own count) */
    /* per deployment: attempts by outcome (retries and fallbacks each count) */
    _Atomic uint64_t attempts[IBEX_METRICS_MAX_DEPLOYMENTS][IBEX_METRICS_NATTEMPT];
    /* credential cache of this worker, and refused credentials by reason */
    _Atomic uint64_t auth_cache_hits;
    _Atomic uint64_t auth_cache_misses;
    _Atomic uint64_t auth_failures[IBEX_METRICS_NAUTH_FAILURES];
};

/* Names the providers (index = position) for labels; called once before any worker starts. */
void ibex_metrics_set_providers(const char *const *names, size_t n);
/* Names the deployments (index = position: provider and model labels) and the attempt
 * outcomes; called once before any worker starts. */
void ibex_metrics_set_deployments(const char *const *providers, const char *const *models, size_t n,
                                  const char *const *outcome_names);
struct ibex_metrics *ibex_metrics_register(void);

const char *ibex_metrics_route_name(enum ibex_route route);
void ibex_metrics_request(struct ibex_metrics *m, enum ibex_route route, int status,
                          uint64_t bytes_in, uint64_t bytes_out);
/* outcome: an enum ibex_upstream_result value (0 = ok) below IBEX_METRICS_NOUTCOME. */
void ibex_metrics_upstream(struct ibex_metrics *m, size_t provider, int outcome,
                           uint64_t latency_ns, uint64_t ttft_ns);
void ibex_metrics_overhead(struct ibex_metrics *m, uint64_t overhead_ns);
/* The usage of an answered request (negative: not reported) and its cost (negative: unknown),
 * counted for its provider and for its tenant and agent (agent NULL: none). */
void ibex_metrics_usage(struct ibex_metrics *m, size_t provider, const char *tenant,
                        const char *agent, int64_t prompt_tokens, int64_t completion_tokens,
                        int64_t cost_nanousd);
/* One attempt on a deployment; outcome below IBEX_METRICS_NATTEMPT. */
void ibex_metrics_attempt(struct ibex_metrics *m, size_t deployment, int outcome);
/* A credential cache lookup (hit or miss) on the request path. */
void ibex_metrics_auth_cache(struct ibex_metrics *m, bool hit);
/* A refused credential; reason below IBEX_METRICS_NAUTH_FAILURES. */
void ibex_metrics_auth_failure(struct ibex_metrics *m, int reason);
/* Names the auth failure reasons for labels; called once before any worker starts. */
void ibex_metrics_set_auth_failure_names(const char *const *names, size_t n);
void ibex_metrics_gauge_add(_Atomic int64_t *gauge, int64_t delta);

/* Appends the Prometheus text exposition of every registered worker, summed. outcome_names
 * labels the outcome counters. */
void ibex_metrics_render(struct ibex_buf *out, const char *(*outcome_name)(int outcome));

#endif
