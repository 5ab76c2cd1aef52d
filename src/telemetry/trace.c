/* Trace rows: written through the store writer, read back tenant-filtered. */
#include "trace.h"

#include <stdlib.h>
#include <string.h>

static struct ibex_store_value opt_int(int64_t v)
{
    return v >= 0 ? ibex_store_int(v) : ibex_store_null();
}

int ibex_trace_record(struct ibex_store_writer *w, const struct ibex_trace *t, int64_t now_ms)
{
    struct ibex_store_value p[] = {
        ibex_store_text(t->id),
        ibex_store_text(t->tenant_id),
        ibex_store_text(t->request_id),
        ibex_store_text(t->agent_id),
        ibex_store_text(t->session_id),
        ibex_store_text(t->model),
        ibex_store_text(t->provider),
        ibex_store_int(t->stream),
        ibex_store_int(t->status),
        ibex_store_text(t->code),
        ibex_store_int((int64_t)(t->duration_ns / 1000)),
        t->upstream_ns ? ibex_store_int((int64_t)(t->upstream_ns / 1000)) : ibex_store_null(),
        t->ttft_ns ? ibex_store_int((int64_t)(t->ttft_ns / 1000)) : ibex_store_null(),
        opt_int(t->prompt_tokens),
        opt_int(t->completion_tokens),
        opt_int(t->total_tokens),
        ibex_store_int(now_ms),
    };
    return ibex_store_writer_enqueue(
        w,
        "INSERT INTO traces (id, tenant_id, request_id, agent_id, session_id, model, provider, "
        "stream, status, code, duration_us, upstream_us, ttft_us, prompt_tokens, "
        "completion_tokens, total_tokens, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11, $12, $13, $14, $15, $16, $17)",
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

static const char *text_or_null(const struct ibex_store_value *v)
{
    return v->type == IBEX_STORE_TEXT ? v->p : NULL;
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
    ibex_json_put_str(b, "agent_id", text_or_null(&c[3]), c[3].len);
    ibex_json_put_str(b, "session_id", text_or_null(&c[4]), c[4].len);
    ibex_json_put_str(b, "model", text_or_null(&c[5]), c[5].len);
    ibex_json_put_str(b, "provider", text_or_null(&c[6]), c[6].len);
    ibex_json_put_key(b, "stream");
    ibex_buf_append_cstr(b, ibex_col_int(&c[7]) ? "true" : "false");
    put_opt_int(b, "status", &c[8]);
    ibex_json_put_str(b, "code", text_or_null(&c[9]), c[9].len);
    put_us_as_ms(b, "duration_ms", &c[10]);
    put_us_as_ms(b, "upstream_ms", &c[11]);
    /* the gateway's own time: all of it when there was no upstream call */
    struct ibex_store_value overhead = c[10];
    if (c[11].type == IBEX_STORE_INT)
        overhead.i = c[10].i > c[11].i ? c[10].i - c[11].i : 0;
    put_us_as_ms(b, "overhead_ms", &overhead);
    put_us_as_ms(b, "ttft_ms", &c[12]);
    put_opt_int(b, "prompt_tokens", &c[13]);
    put_opt_int(b, "completion_tokens", &c[14]);
    put_opt_int(b, "total_tokens", &c[15]);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[16]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

static int fetch_trace(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                       struct ibex_buf *out, size_t *found)
{
    struct ibex_api_list l = {out, 0};
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    int rc = ibex_store_exec(s,
                             "SELECT id, tenant_id, request_id, agent_id, session_id, model, "
                             "provider, stream, status, code, duration_us, upstream_us, ttft_us, "
                             "prompt_tokens, completion_tokens, total_tokens, created_at "
                             "FROM traces WHERE id = $1 AND tenant_id = $2",
                             p, 2, row_trace, &l);
    *found = l.n;
    return rc;
}

int ibex_trace_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                   struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_get(s, a, id, fetch_trace, "traces", "trace", "TRACE_NOT_FOUND", out, r);
}
