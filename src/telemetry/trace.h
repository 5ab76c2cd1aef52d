/* Traces: one row per chat request that passed authentication (docs/sessions.md), queued on the
 * store writer when the response is complete, so recording never waits on the store; and the
 * tenant-scoped read of one trace for GET /v1/traces/{id}. */
#ifndef IBEX_TELEMETRY_TRACE_H
#define IBEX_TELEMETRY_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "../api/resource.h"
#include "../store/writer.h"

struct ibex_trace {
    const char *id;         /* a UUID, also sent as X-IBEX-Trace-ID */
    const char *tenant_id;  /* of the credential */
    const char *request_id; /* X-Request-ID */
    const char *agent_id;   /* or NULL */
    const char *session_id; /* or NULL */
    const char *model;      /* as the client sent it, or NULL */
    const char *provider;   /* or NULL (refused before routing) */
    bool stream;
    int status;           /* HTTP status sent to the client */
    const char *code;     /* its error code, or NULL */
    uint64_t duration_ns; /* first request byte to the end of the response */
    uint64_t upstream_ns; /* 0: no upstream call */
    uint64_t ttft_ns;     /* 0: not a stream, or no first byte */
    int64_t prompt_tokens, completion_tokens, total_tokens; /* -1: not reported */
    const char *attempts; /* JSON array of the upstream attempts, or NULL (none) */
    size_t attempts_len;
    int64_t cost_nanousd; /* -1: unknown (no price for the model, or no usage) */
};

/* The facts a trace and a session checkpoint share, as columns in this order (the same in both
 * tables): ibex_trace_fact_params fills their IBEX_TRACE_NFACTS parameters, and
 * ibex_trace_put_facts writes them as JSON fields from a row read back in this order. */
#define IBEX_TRACE_FACT_COLS                                                                       \
    "model, provider, stream, status, code, duration_us, upstream_us, ttft_us, prompt_tokens, "    \
    "completion_tokens, total_tokens"
#define IBEX_TRACE_NFACTS 11
void ibex_trace_fact_params(const struct ibex_trace *t,
                            struct ibex_store_value p[IBEX_TRACE_NFACTS]);
void ibex_trace_put_facts(struct ibex_buf *b, const struct ibex_store_value c[IBEX_TRACE_NFACTS]);

/* Queues the row (never blocks). Returns 0 or IBEX_EFULL (counted by the writer). */
int ibex_trace_record(struct ibex_store_writer *w, const struct ibex_trace *t, int64_t now_ms);

/* GET /v1/traces/{id} for actor a: 200 with the trace object in out, or 404 TRACE_NOT_FOUND. */
int ibex_trace_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                   struct ibex_buf *out, struct ibex_api_result *r);

#endif
