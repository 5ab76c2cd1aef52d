/* Trace rows: written through the store writer, read back tenant-filtered. */
#include "trace.h"

#include <stdlib.h>
#include <string.h>

static struct ibex_store_value opt_int(int64_t v)
{
    return v >= 0 ? ibex_store_int(v) : ibex_store_null();
}

void ibex_trace_fact_params(const struct ibex_trace *t,
                            struct ibex_store_value p[IBEX_TRACE_NFACTS])
{
    p[0] = ibex_store_text(t->model);
    p[1] = ibex_store_text(t->provider);
    p[2] = ibex_store_int(t->stream);
    p[3] = ibex_store_int(t->status);
    p[4] = ibex_store_text(t->code);
    p[5] = ibex_store_int((int64_t)(t->duration_ns / 1000));
    p[6] = t->upstream_ns ? ibex_store_int((int64_t)(t->upstream_ns / 1000)) : ibex_store_null();
    p[7] = t->ttft_ns ? ibex_store_int((int64_t)(t->ttft_ns / 1000)) : ibex_store_null();
    p[8] = opt_int(t->prompt_tokens);
    p[9] = opt_int(t->completion_tokens);
    p[10] = opt_int(t->total_tokens);
}

int ibex_trace_record(struct ibex_store_writer *w, const struct ibex_trace *t, int64_t now_ms)
{
    struct ibex_store_value p[8 + IBEX_TRACE_NFACTS] = {
        ibex_store_text(t->id),
        ibex_store_text(t->tenant_id),
        ibex_store_text(t->request_id),
        ibex_store_text(t->agent_id),
        ibex_store_text(t->session_id),
        ibex_store_int(now_ms),
        t->attempts ? ibex_store_textn(t->attempts, t->attempts_len) : ibex_store_null(),
        t->cost_nanousd >= 0 ? ibex_store_int(t->cost_nanousd) : ibex_store_null(),
    };
    ibex_trace_fact_params(t, p + 8);
    return ibex_store_writer_enqueue(
        w,
        "INSERT INTO traces (id, tenant_id, request_id, agent_id, session_id, "
        "created_at, attempts, cost_nanousd, " IBEX_TRACE_FACT_COLS
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
        "$14, $15, $16, $17, $18, $19)",
        p, sizeof(p) / sizeof(p[0]));
}

/* Microseconds as milliseconds with three decimals, or null. */
static void put_us_as_ms(struct ibex_buf *b, const char *key, const struct ibex_store_value *v)
{
    ibex_json_put_key(b, key);
    if (v->type != IBEX_STORE_INT) {
        ibex_buf_append_cstr(b, "null");
        return;
    }
    ibex_buf_append_milli(b, (uint64_t)(v->i > 0 ? v->i : 0));
}

static void put_opt_int(struct ibex_buf *b, const char *key, const struct ibex_store_value *v)
{
    ibex_json_put_key(b, key);
    if (v->type == IBEX_STORE_INT)
        ibex_buf_appendf(b, "%lld", (long long)v->i);
    else
        ibex_buf_append_cstr(b, "null");
}

void ibex_trace_put_facts(struct ibex_buf *b, const struct ibex_store_value c[IBEX_TRACE_NFACTS])
{
    ibex_json_put_col(b, "model", &c[0]);
    ibex_json_put_col(b, "provider", &c[1]);
    ibex_json_put_key(b, "stream");
    ibex_buf_append_cstr(b, ibex_col_int(&c[2]) ? "true" : "false");
    put_opt_int(b, "status", &c[3]);
    ibex_json_put_col(b, "code", &c[4]);
    put_us_as_ms(b, "duration_ms", &c[5]);
    put_us_as_ms(b, "upstream_ms", &c[6]);
    /* the gateway's own time: all of it when there was no upstream call */
    struct ibex_store_value overhead = c[5];
    if (c[6].type == IBEX_STORE_INT)
        overhead.i = c[5].i > c[6].i ? c[5].i - c[6].i : 0;
    put_us_as_ms(b, "overhead_ms", &overhead);
    put_us_as_ms(b, "ttft_ms", &c[7]);
    put_opt_int(b, "prompt_tokens", &c[8]);
    put_opt_int(b, "completion_tokens", &c[9]);
    put_opt_int(b, "total_tokens", &c[10]);
}

static int row_trace(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_str(b, "id", c[0].p, c[0].len);
    ibex_json_put_cstr(b, "object", "trace");
    ibex_json_put_str(b, "tenant_id", c[1].p, c[1].len);
    ibex_json_put_str(b, "request_id", c[2].p, c[2].len);
    ibex_json_put_col(b, "agent_id", &c[3]);
    ibex_json_put_col(b, "session_id", &c[4]);
    ibex_trace_put_facts(b, c + 8);
    ibex_json_put_key(b, "cost_usd");
    if (c[7].type == IBEX_STORE_INT)
        ibex_buf_appendf(b, "%.9f", (double)c[7].i / 1e9);
    else
        ibex_buf_append_cstr(b, "null");
    ibex_json_put_raw_col(b, "attempts", &c[6]);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[5]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

static int fetch_trace(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                       struct ibex_buf *out, size_t *found)
{
    return ibex_api_fetch_one(
        s, a,
        "SELECT id, tenant_id, request_id, agent_id, session_id, created_at, attempts, "
        "cost_nanousd, " IBEX_TRACE_FACT_COLS " FROM traces WHERE id = $1 AND tenant_id = $2",
        row_trace, id, out, found);
}

int ibex_trace_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                   struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_get(s, a, id, fetch_trace, "traces", "trace", "TRACE_NOT_FOUND", out, r);
}
