/* Checkpoint rows: written through the store writer, read back tenant-filtered and paged. */
#include "checkpoints.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ibex_store_value text_or_null(const char *p, size_t len)
{
    return len ? ibex_store_textn(p, len) : ibex_store_null();
}

int ibex_checkpoint_record(struct ibex_store_writer *w, const struct ibex_checkpoint *c,
                           int64_t now_ms)
{
    const struct ibex_trace *t = c->trace;
    struct ibex_store_value p[11 + IBEX_TRACE_NFACTS] = {
        ibex_store_text(c->id),
        ibex_store_text(t->tenant_id),
        ibex_store_text(t->session_id),
        ibex_store_text(t->id),
        ibex_store_text(t->agent_id),
        ibex_store_textn(c->request, c->request_len),
        text_or_null(c->content, c->content_len),
        text_or_null(c->tool_calls, c->tool_calls_len),
        text_or_null(c->finish_reason, strlen(c->finish_reason)),
        ibex_store_int(c->truncated),
        ibex_store_int(now_ms),
    };
    ibex_trace_fact_params(t, p + 11);
    return ibex_store_writer_enqueue(
        w,
        "INSERT INTO checkpoints (id, tenant_id, session_id, trace_id, agent_id, request, "
        "content, tool_calls, finish_reason, truncated, created_at, " IBEX_TRACE_FACT_COLS
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
        "$18, $19, $20, $21, $22)",
        p, sizeof(p) / sizeof(p[0]));
}

#define CHECKPOINT_COLS                                                                            \
    "id, session_id, trace_id, agent_id, request, content, tool_calls, finish_reason, "            \
    "truncated, created_at, " IBEX_TRACE_FACT_COLS

/* The "messages" array of the request sent upstream, or null when it cannot be read. */
static void put_messages(struct ibex_buf *b, const struct ibex_store_value *request)
{
    ibex_json_put_key(b, "messages");
    json_tokener *tok = json_tokener_new();
    json_object *root = json_tokener_parse_ex(tok, request->p ? request->p : "", (int)request->len);
    json_object *messages = NULL;
    if (root && json_object_object_get_ex(root, "messages", &messages))
        ibex_buf_append_cstr(
            b, json_object_to_json_string_ext(messages, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE));
    else
        ibex_buf_append_cstr(b, "null");
    json_object_put(root);
    json_tokener_free(tok);
}

static int row_checkpoint(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_str(b, "id", c[0].p, c[0].len);
    ibex_json_put_cstr(b, "object", "checkpoint");
    ibex_json_put_str(b, "session_id", c[1].p, c[1].len);
    ibex_json_put_str(b, "trace_id", c[2].p, c[2].len);
    ibex_json_put_col(b, "agent_id", &c[3]);
    ibex_trace_put_facts(b, c + 10);
    put_messages(b, &c[4]);
    ibex_buf_append_cstr(b, ",\"response\":{\"role\":\"assistant\"");
    ibex_json_put_col(b, "content", &c[5]);
    ibex_json_put_raw_col(b, "tool_calls", &c[6]); /* a JSON array the collector wrote */
    ibex_json_put_col(b, "finish_reason", &c[7]);
    ibex_buf_append_cstr(b, ibex_col_int(&c[8]) ? "},\"truncated\":true" : "},\"truncated\":false");
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[9]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

int ibex_checkpoint_list(struct ibex_store *s, const struct ibex_actor *a, const char *session_id,
                         const struct ibex_session_query *q, struct ibex_buf *out,
                         struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(session_id, r))
        return r->status;
    bool found = false;
    struct ibex_store_value p[] = {ibex_store_text(a->tenant_id), ibex_store_text(session_id),
                                   ibex_store_int(q->page_size),
                                   ibex_store_int((q->page - 1) * q->page_size)};
    int rc = ibex_store_exec(s, "SELECT id FROM sessions WHERE tenant_id = $1 AND id = $2", p, 2,
                             ibex_row_exists, &found);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    if (!found)
        return ibex_api_not_found(s, a, "sessions", session_id, "session", "SESSION_NOT_FOUND", r);
    int64_t total = 0;
    rc = ibex_store_exec(s,
                         "SELECT count(*) FROM checkpoints WHERE tenant_id = $1 AND "
                         "session_id = $2",
                         p, 2, ibex_row_int64, &total);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    ibex_buf_append_cstr(out, "{\"object\":\"list\",\"checkpoints\":[");
    struct ibex_api_list l = {out, 0};
    rc = ibex_store_exec(s,
                         "SELECT " CHECKPOINT_COLS " FROM checkpoints WHERE tenant_id = $1 AND "
                         "session_id = $2 ORDER BY created_at, id LIMIT $3 OFFSET $4",
                         p, 4, row_checkpoint, &l);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    ibex_buf_appendf(out, "],\"total\":%lld,\"page\":%lld,\"page_size\":%lld}", (long long)total,
                     (long long)q->page, (long long)q->page_size);
    return ibex_api_ok(r, 200);
}
