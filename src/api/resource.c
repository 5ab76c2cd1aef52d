/* Helpers of the control plane's tenant-owned resources (tenants, agents, keys, sessions,
 * traces, tasks, approvals): the result of an operation, validation of request bodies, ids and
 * list queries, JSON answers written field by field, store rows read back, tenant-filtered
 * lists, pages and lookups, and the audit trail. See resource.h. */
#include "resource.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/id.h"

#define METADATA_MAX_LEN (16 * 1024)
#define PAGE_SIZE_DEFAULT 20
#define PAGE_SIZE_MAX 100
#define PAGE_MAX 1000000
#define PAGE_PARAMS_MAX 8

const char *const ibex_audit_sql =
    "INSERT INTO audit_events (id, tenant_id, actor, action, target, request_id, detail, "
    "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const char *const ibex_live_agent_sql =
    "SELECT id FROM agents WHERE id = $1 AND tenant_id = $2 AND disabled_at IS NULL";
const char *const ibex_session_ref_sql = "SELECT id FROM sessions WHERE id = $1 AND tenant_id = $2";

void ibex_api_result_init(struct ibex_api_result *r)
{
    memset(r, 0, sizeof(*r));
    ibex_buf_init(&r->field_errors);
}

void ibex_api_result_dispose(struct ibex_api_result *r)
{
    ibex_buf_dispose(&r->field_errors);
}

int ibex_api_fail(struct ibex_api_result *r, int status, const char *code, const char *param,
                  const char *fmt, ...)
{
    r->status = status;
    r->code = code;
    snprintf(r->param, sizeof(r->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    return status;
}

/* A validation error on one field: VALIDATION_ERROR with field_errors [{field, message}]. */
int ibex_api_invalid(struct ibex_api_result *r, const char *field, const char *message)
{
    ibex_buf_reset(&r->field_errors);
    ibex_buf_append_cstr(&r->field_errors, "[{\"field\":");
    ibex_buf_append_json_str(&r->field_errors, field, strlen(field));
    ibex_buf_append_cstr(&r->field_errors, ",\"message\":");
    ibex_buf_append_json_str(&r->field_errors, message, strlen(message));
    ibex_buf_append_cstr(&r->field_errors, "}]");
    return ibex_api_fail(r, 400, "VALIDATION_ERROR", field, "%s: %s", field, message);
}

int ibex_api_store_failed(struct ibex_store *s, struct ibex_api_result *r, int rc)
{
    if (rc == IBEX_ECONN)
        return ibex_api_fail(r, 503, "STORE_UNAVAILABLE", NULL, "the store is unavailable");
    return ibex_api_fail(r, 500, "STORE_ERROR", NULL, "the store refused the operation");
}

/* A cross-tenant attempt goes to the operator's audit trail (no tenant), never the caller's:
 * the caller must not be able to tell another tenant's id from an unknown one. */
void ibex_audit_foreign(struct ibex_store *s, const char *caller_tenant, const char *actor,
                        const char *request_id, const char *what, const char *id)
{
    struct ibex_buf detail;
    ibex_buf_init(&detail);
    ibex_buf_append_cstr(&detail, "{\"reason\":\"");
    ibex_buf_append_cstr(&detail, what);
    ibex_buf_append_cstr(&detail, " of another tenant\",\"caller_tenant\":");
    ibex_buf_append_json_str(&detail, caller_tenant, strlen(caller_tenant));
    ibex_buf_append_cstr(&detail, "}");
    struct ibex_store_value p[IBEX_AUDIT_NPARAMS];
    char aid[IBEX_UUID_LEN + 1];
    ibex_audit_params(p, aid, NULL, actor, "access.denied", id, request_id, detail.p,
                      (int64_t)ibex_clock_wall_ms());
    ibex_store_exec(s, ibex_audit_sql, p, IBEX_AUDIT_NPARAMS, NULL, NULL);
    ibex_buf_dispose(&detail);
}

/* 404 for an id the actor cannot see; recorded for the operator when it exists elsewhere. */
int ibex_api_not_found(struct ibex_store *s, const struct ibex_actor *a, const char *table,
                       const char *id, const char *what, const char *code,
                       struct ibex_api_result *r)
{
    if (a->tenant_id) {
        char sql[64];
        bool exists = false;
        snprintf(sql, sizeof(sql), "SELECT id FROM %s WHERE id = $1", table);
        struct ibex_store_value p[] = {ibex_store_text(id)};
        if (ibex_store_exec(s, sql, p, 1, ibex_row_exists, &exists) == 0 && exists)
            ibex_audit_foreign(s, a->tenant_id, a->subject, a->request_id, what, id);
    }
    return ibex_api_fail(r, 404, code, "id", "no such %s", what);
}

int ibex_api_ok(struct ibex_api_result *r, int status)
{
    r->status = status;
    r->code = NULL;
    return status;
}

/* ---- JSON out ---- */

void ibex_json_put_key(struct ibex_buf *b, const char *key)
{
    if (b->len && b->p[b->len - 1] != '{')
        ibex_buf_append_cstr(b, ",");
    ibex_buf_append_cstr(b, "\"");
    ibex_buf_append_cstr(b, key);
    ibex_buf_append_cstr(b, "\":");
}

void ibex_json_put_str(struct ibex_buf *b, const char *key, const char *v, size_t len)
{
    ibex_json_put_key(b, key);
    if (v == NULL)
        ibex_buf_append_cstr(b, "null");
    else
        ibex_buf_append_json_str(b, v, len);
}

void ibex_json_put_cstr(struct ibex_buf *b, const char *key, const char *v)
{
    ibex_json_put_str(b, key, v, v ? strlen(v) : 0);
}

/* Milliseconds as unix seconds, or null for 0 ("not yet"). */
void ibex_json_put_time(struct ibex_buf *b, const char *key, int64_t ms)
{
    ibex_json_put_key(b, key);
    if (ms <= 0)
        ibex_buf_append_cstr(b, "null");
    else
        ibex_buf_append_u64(b, (uint64_t)(ms / 1000));
}

/* JSON text stored by this module (metadata, scopes, agent_ids), written as is. */
void ibex_json_put_raw(struct ibex_buf *b, const char *key, const char *json)
{
    ibex_json_put_key(b, key);
    ibex_buf_append_cstr(b, json && json[0] ? json : "null");
}

void ibex_json_put_col(struct ibex_buf *b, const char *key, const struct ibex_store_value *v)
{
    ibex_json_put_str(b, key, v->type == IBEX_STORE_TEXT ? v->p : NULL, v->len);
}

void ibex_json_put_raw_col(struct ibex_buf *b, const char *key, const struct ibex_store_value *v)
{
    ibex_json_put_key(b, key);
    if (v->type == IBEX_STORE_TEXT && v->len > 0)
        ibex_buf_append(b, v->p, v->len);
    else
        ibex_buf_append_cstr(b, "null");
}

/* ---- rows ---- */

/* Column text copied to a NUL-terminated buffer ("" for NULL). */
void ibex_col_text(const struct ibex_store_value *v, char *out, size_t n)
{
    size_t len = v->type == IBEX_STORE_TEXT && v->len < n ? v->len : 0;
    if (len)
        memcpy(out, v->p, len);
    out[len] = '\0';
}

char *ibex_col_dup(const struct ibex_store_value *v)
{
    return v->type == IBEX_STORE_TEXT ? ibex_xstrndup(v->p, v->len) : NULL;
}

int64_t ibex_col_int(const struct ibex_store_value *v)
{
    return v->type == IBEX_STORE_INT ? v->i : 0;
}

int ibex_row_exists(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    *(bool *)data = true;
    return 0;
}

int ibex_row_int64(void *data, const struct ibex_store_value *cols, size_t ncols)
{
    *(int64_t *)data = ncols ? ibex_col_int(&cols[0]) : 0;
    return 0;
}

/* A list answer: rows are appended by a row function that writes one object each. */

void ibex_api_list_open(struct ibex_api_list *l, struct ibex_buf *out)
{
    l->out = out;
    l->n = 0;
    ibex_buf_append_cstr(out, "{\"object\":\"list\",\"data\":[");
}

void ibex_api_list_item(struct ibex_api_list *l)
{
    if (l->n++)
        ibex_buf_append_cstr(l->out, ",");
}

void ibex_api_list_close(struct ibex_api_list *l)
{
    ibex_buf_append_cstr(l->out, "]}");
}

/* ---- input ---- */

/* A required (or optional) string field of at most max bytes. *out NULL when absent. */
int ibex_api_get_string(json_object *body, const char *field, bool required, size_t max,
                        const char **out, struct ibex_api_result *r)
{
    json_object *v = NULL;
    *out = NULL;
    if (body == NULL || !json_object_object_get_ex(body, field, &v) || v == NULL) {
        if (required)
            return ibex_api_invalid(r, field, "is required");
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return ibex_api_invalid(r, field, "must be a string");
    size_t len = (size_t)json_object_get_string_len(v);
    if (len > max)
        return ibex_api_invalid(r, field, "is too long");
    if (required && len == 0)
        return ibex_api_invalid(r, field, "must not be empty");
    *out = json_object_get_string(v);
    return 0;
}

/* The optional metadata object, serialised; "{}" when absent. */
int ibex_api_get_metadata(json_object *body, const char **out, struct ibex_api_result *r)
{
    if (ibex_api_get_object(body, "metadata", METADATA_MAX_LEN, out, r))
        return r->status;
    if (*out == NULL)
        *out = "{}";
    return 0;
}

/* An optional object field, serialised; NULL when absent or null. */
int ibex_api_get_object(json_object *body, const char *field, size_t max, const char **out,
                        struct ibex_api_result *r)
{
    json_object *v = NULL;
    *out = NULL;
    if (body == NULL || !json_object_object_get_ex(body, field, &v) || v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_object))
        return ibex_api_invalid(r, field, "must be an object");
    const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    if (strlen(s) > max)
        return ibex_api_invalid(r, field, "is too large");
    *out = s;
    return 0;
}

/* One answer for every id that is not a row of the tenant: a caller must not learn whether an
 * id exists elsewhere, nor tell a malformed id from an unknown one. */
int ibex_api_check_ref(struct ibex_store *s, const struct ibex_actor *a, const char *field,
                       const char *id, const char *sql, const char *what, struct ibex_api_result *r)
{
    bool found = false;
    if (ibex_id_is_uuid(id, strlen(id))) {
        struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
        int rc = ibex_store_exec(s, sql, p, 2, ibex_row_exists, &found);
        if (rc)
            return ibex_api_store_failed(s, r, rc);
    }
    if (!found) {
        char msg[96];
        snprintf(msg, sizeof(msg), "is not %s of this tenant", what);
        return ibex_api_invalid(r, field, msg);
    }
    return 0;
}

/* ---- list queries ---- */

static int parse_int(struct ibex_str v, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t n = 0;
    if (v.len == 0 || v.len > 9)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        n = n * 10 + (v.p[i] - '0');
    }
    if (n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

int ibex_api_query_parse(struct ibex_str query, int64_t *page, int64_t *page_size,
                         ibex_api_query_fn fn, void *data, struct ibex_api_result *r)
{
    *page = 1;
    *page_size = PAGE_SIZE_DEFAULT;
    const char *p = query.p, *end = query.p + query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        struct ibex_str k = {p, (size_t)((eq ? eq : stop) - p)};
        struct ibex_str v = {eq ? eq + 1 : stop, eq ? (size_t)(stop - eq - 1) : 0};
        if (ibex_str_eq_cstr(k, "page")) {
            if (parse_int(v, 1, PAGE_MAX, page))
                return ibex_api_invalid(r, "page", "must be a whole number from 1");
        } else if (ibex_str_eq_cstr(k, "page_size")) {
            if (parse_int(v, 1, PAGE_SIZE_MAX, page_size))
                return ibex_api_invalid(r, "page_size", "must be 1 to 100");
        } else if (fn && fn(data, k, v, r)) {
            return r->status;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

int ibex_api_query_enum(struct ibex_str value, const char *field, const char *const *names,
                        size_t n, char *out, size_t outlen, const char *message,
                        struct ibex_api_result *r)
{
    for (size_t i = 0; i < n; i++) {
        if (ibex_str_eq_cstr(value, names[i]) && value.len < outlen) {
            memcpy(out, value.p, value.len);
            out[value.len] = '\0';
            return 0;
        }
    }
    return ibex_api_invalid(r, field, message);
}

int ibex_api_query_uuid(struct ibex_str value, const char *field, char *out,
                        struct ibex_api_result *r)
{
    if (!ibex_id_is_uuid(value.p, value.len))
        return ibex_api_invalid(r, field, "must be a UUID");
    for (size_t i = 0; i < value.len; i++)
        out[i] = (char)tolower((unsigned char)value.p[i]);
    out[value.len] = '\0';
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ibex_api_query_text(struct ibex_str value, const char *field, size_t max, char *out,
                        struct ibex_api_result *r)
{
    size_t o = 0;
    for (size_t i = 0; i < value.len; i++) {
        char c = value.p[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= value.len || hexval(value.p[i + 1]) < 0 || hexval(value.p[i + 2]) < 0)
                return ibex_api_invalid(r, field, "has a malformed percent escape");
            c = (char)(hexval(value.p[i + 1]) * 16 + hexval(value.p[i + 2]));
            i += 2;
        }
        if (o == max)
            return ibex_api_invalid(r, field, "is too long");
        out[o++] = c;
    }
    out[o] = '\0';
    if (o == 0)
        return ibex_api_invalid(r, field, "must not be empty");
    /* a NUL or another control character is refused by the first test */
    if (ibex_json_text_invalid_at(out, o) != o || strpbrk(out, "\t\r\n"))
        return ibex_api_invalid(r, field, "must be UTF-8 text without control characters");
    return 0;
}

int ibex_api_check_body(json_object *body, struct ibex_api_result *r)
{
    if (body != NULL && !json_object_is_type(body, json_type_object))
        return ibex_api_fail(r, 400, "VALIDATION_ERROR", NULL, "the body must be a JSON object");
    return 0;
}

int ibex_api_check_id(const char *id, struct ibex_api_result *r)
{
    if (!ibex_id_is_uuid(id, strlen(id)))
        return ibex_api_invalid(r, "id", "must be a UUID");
    return 0;
}

int ibex_audit(struct ibex_store *s, const struct ibex_actor *a, const char *tenant_id,
               const char *action, const char *target, const char *detail_json)
{
    struct ibex_store_value p[IBEX_AUDIT_NPARAMS];
    char id[IBEX_UUID_LEN + 1];
    ibex_audit_params(p, id, tenant_id, a->subject, action, target, a->request_id, detail_json,
                      ibex_clock_wall_ms());
    return ibex_store_exec(s, ibex_audit_sql, p, IBEX_AUDIT_NPARAMS, NULL, NULL);
}

void ibex_audit_params(struct ibex_store_value params[IBEX_AUDIT_NPARAMS], char *id,
                       const char *tenant_id, const char *actor, const char *action,
                       const char *target, const char *request_id, const char *detail_json,
                       int64_t now_ms)
{
    ibex_id_uuid4(id);
    params[0] = ibex_store_text(id);
    params[1] = ibex_store_text(tenant_id);
    params[2] = ibex_store_text(actor ? actor : "anonymous");
    params[3] = ibex_store_text(action);
    params[4] = ibex_store_text(target);
    params[5] = ibex_store_text(request_id);
    params[6] = ibex_store_text(detail_json ? detail_json : "{}");
    params[7] = ibex_store_int(now_ms);
}

/* The actor's tenant: agents and keys always belong to one. */
int ibex_api_need_tenant(const struct ibex_actor *a, struct ibex_api_result *r)
{
    if (a->tenant_id == NULL)
        return ibex_api_invalid(r, "tenant", "is required");
    return 0;
}

/* A list of the actor's tenant's rows: sql selects with $1 = tenant id and $2 = limit. */
int ibex_api_tenant_rows(struct ibex_store *s, const struct ibex_actor *a, const char *sql,
                         ibex_store_row_fn row, int64_t limit, struct ibex_buf *out,
                         struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    struct ibex_api_list l;
    ibex_api_list_open(&l, out);
    struct ibex_store_value p[] = {ibex_store_text(a->tenant_id), ibex_store_int(limit)};
    int rc = ibex_store_exec(s, sql, p, 2, row, &l);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    ibex_api_list_close(&l);
    return ibex_api_ok(r, 200);
}

/* A page of a list: the total, then the rows of the page. */
int ibex_api_page_rows(struct ibex_store *s, const char *cols, const char *from_where,
                       const char *order, const struct ibex_store_value *params, size_t nparams,
                       int64_t page, int64_t page_size, const char *key, ibex_store_row_fn row,
                       struct ibex_buf *out, struct ibex_api_result *r)
{
    struct ibex_store_value p[PAGE_PARAMS_MAX + 2];
    assert(nparams <= PAGE_PARAMS_MAX);
    memcpy(p, params, nparams * sizeof(*p));
    p[nparams] = ibex_store_int(page_size);
    p[nparams + 1] = ibex_store_int((page - 1) * page_size);
    struct ibex_buf sql;
    ibex_buf_init(&sql);
    int64_t total = 0;
    ibex_buf_appendf(&sql, "SELECT count(*)%s", from_where);
    int rc = ibex_store_exec(s, sql.p, p, nparams, ibex_row_int64, &total);
    if (rc == 0) {
        ibex_buf_appendf(out, "{\"object\":\"list\",\"%s\":[", key);
        struct ibex_api_list l = {out, 0};
        ibex_buf_reset(&sql);
        ibex_buf_appendf(&sql, "SELECT %s%s ORDER BY %s LIMIT $%zu OFFSET $%zu", cols, from_where,
                         order, nparams + 1, nparams + 2);
        rc = ibex_store_exec(s, sql.p, p, nparams + 2, row, &l);
    }
    ibex_buf_dispose(&sql);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    ibex_buf_appendf(out, "],\"total\":%lld,\"page\":%lld,\"page_size\":%lld}", (long long)total,
                     (long long)page, (long long)page_size);
    return ibex_api_ok(r, 200);
}

/* One object of the actor's tenant, written by fetch, or the 404 of its kind. */

int ibex_api_fetch_one(struct ibex_store *s, const struct ibex_actor *a, const char *sql,
                       ibex_store_row_fn row, const char *id, struct ibex_buf *out, size_t *found)
{
    struct ibex_api_list l = {out, 0};
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    int rc = ibex_store_exec(s, sql, p, 2, row, &l);
    *found = l.n;
    return rc;
}

int ibex_api_tenant_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                        ibex_api_fetch_fn fetch, const char *table, const char *what,
                        const char *code, struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    size_t found = 0;
    int rc = fetch(s, a, id, out, &found);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    if (!found)
        return ibex_api_not_found(s, a, table, id, what, code, r);
    return ibex_api_ok(r, 200);
}
