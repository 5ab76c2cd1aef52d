/* The control-plane API over HTTP: /v1/tenants, /v1/agents, /v1/keys, /v1/audit
 * (docs/identity.md), /v1/sessions and /v1/traces/{id} (docs/sessions.md). A request is
 * authenticated and scope-checked on the loop, its body parsed there, and the store work
 * (auth/identity.c) runs on the store pool; the answer is sent from the job's completion. A change
 * that moved the identity epoch is noted before the answer goes out, so this instance's caches
 * never serve what it just revoked. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/identity.h"
#include "../core/id.h"
#include "../gateway/chat_request.h"
#include "../gateway/gateway.h"
#include "../telemetry/trace.h"
#include "sessions.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

enum op {
    OP_CREATE,
    OP_LIST,
    OP_GET,
    OP_UPDATE,
    OP_REVOKE,
};

struct admin {
    struct ibex_req_info info; /* first: the access log reads req->user as this */
    struct ibex_store_job job;
    struct ibex_req *req;
    struct ibex_runtime *rt;
    enum ibex_route route;
    enum op op;
    char id[IBEX_ID_LEN + 1]; /* from the path; "" for collections */
    int64_t limit;
    struct ibex_session_query sessions; /* GET /v1/sessions */
    bool aborted;
    json_object *body;
    struct ibex_actor actor;
    struct ibex_principal principal;
    struct ibex_buf out;
    struct ibex_api_result result;
};

static void admin_cleanup(void *data)
{
    struct admin *a = data;
    json_object_put(a->body);
    ibex_buf_dispose(&a->out);
    ibex_api_result_dispose(&a->result);
}

static void admin_error(struct admin *a, int status, const char *code, const char *message,
                        const char *param, const char *field_errors, const char *extra)
{
    a->info.code = code;
    ibex_res_error(a->req, status, code, message, param, field_errors, extra);
}

/* ---- the store work (a pool thread) ---- */

static int run_op(struct ibex_store_job *job, struct ibex_store *s)
{
    struct admin *a = job->data;
    const struct ibex_actor *ac = &a->actor;
    struct ibex_buf *out = &a->out;
    struct ibex_api_result *r = &a->result;
    switch (a->route) {
    case IBEX_ROUTE_TENANTS:
        if (a->op == OP_CREATE)
            ibex_tenant_create(s, ac, a->body, out, r);
        else if (a->op == OP_LIST)
            ibex_tenant_list(s, ac, a->limit, out, r);
        else if (a->op == OP_GET)
            ibex_tenant_get(s, ac, a->id, out, r);
        else
            ibex_tenant_revoke(s, ac, a->id, out, r);
        break;
    case IBEX_ROUTE_AGENTS:
        if (a->op == OP_CREATE)
            ibex_agent_create(s, ac, a->body, NULL, out, r);
        else if (a->op == OP_LIST)
            ibex_agent_list(s, ac, a->limit, out, r);
        else if (a->op == OP_GET)
            ibex_agent_get(s, ac, a->id, out, r);
        else if (a->op == OP_UPDATE)
            ibex_agent_update(s, ac, a->id, a->body, out, r);
        else
            ibex_agent_revoke(s, ac, a->id, out, r);
        break;
    case IBEX_ROUTE_KEYS:
        if (a->op == OP_CREATE)
            ibex_key_create(s, ac, a->body, NULL, out, r);
        else if (a->op == OP_LIST)
            ibex_key_list(s, ac, a->limit, out, r);
        else if (a->op == OP_GET)
            ibex_key_get(s, ac, a->id, out, r);
        else
            ibex_key_revoke(s, ac, a->id, out, r);
        break;
    case IBEX_ROUTE_TRACES:
        ibex_trace_get(s, ac, a->id, out, r);
        break;
    case IBEX_ROUTE_SESSIONS:
        if (a->op == OP_CREATE)
            ibex_session_create(s, ac, a->body, out, r);
        else if (a->op == OP_LIST)
            ibex_session_list(s, ac, &a->sessions, out, r);
        else if (a->op == OP_GET)
            ibex_session_get(s, ac, a->id, out, r);
        else
            ibex_session_update(s, ac, a->id, a->body, out, r);
        break;
    default:
        ibex_audit_list(s, ac, a->limit, out, r);
        break;
    }
    /* Effective here before the answer leaves, and published to the other instances. */
    if (r->epoch > 0) {
        ibex_auth_note_epoch(a->rt->auth, r->epoch);
        if (a->rt->revocation)
            ibex_revocation_note(a->rt->revocation, r->epoch);
    }
    return 0;
}

static void op_done(struct ibex_store_job *job, int rc)
{
    struct admin *a = job->data;
    a->req->on_abort = NULL;
    if (a->aborted) {
        ibex_res_stream_end(a->req);
        return;
    }
    struct ibex_api_result *r = &a->result;
    if (rc) {
        admin_error(a, 503, "STORE_UNAVAILABLE", "the store is unavailable", NULL, NULL,
                    "Retry-After: 1\r\n");
        return;
    }
    if (r->code) {
        admin_error(a, r->status, r->code, r->message, r->param[0] ? r->param : NULL,
                    r->field_errors.len ? r->field_errors.p : NULL, NULL);
        return;
    }
    ibex_res_send(a->req, r->status, "application/json", NULL, a->out.p, a->out.len);
}

static void on_abort(struct ibex_req *req)
{
    ((struct admin *)req->user)->aborted = true;
}

/* ---- the loop side ---- */

static int64_t parse_limit(struct ibex_str query, bool *bad)
{
    *bad = false;
    const char *p = query.p;
    const char *end = query.p + query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > 6 && memcmp(p, "limit=", 6) == 0) {
            int64_t v = 0;
            for (const char *c = p + 6; c < stop; c++) {
                if (*c < '0' || *c > '9' || v > LIST_LIMIT_MAX) {
                    *bad = true;
                    return 0;
                }
                v = v * 10 + (*c - '0');
            }
            if (v < 1 || v > LIST_LIMIT_MAX)
                *bad = true;
            return v;
        }
        p = amp ? amp + 1 : NULL;
    }
    return LIST_LIMIT_DEFAULT;
}

static void authorized(struct ibex_worker *w, struct ibex_req *req, const struct ibex_principal *p,
                       const struct ibex_agent_ref *agent, void *data)
{
    struct admin *a = data;
    a->principal = *p;
    a->actor.tenant_id = a->principal.tenant_id;
    a->actor.subject = a->principal.subject;
    a->actor.scopes = a->principal.scopes;
    a->actor.request_id = req->request_id;

    if (a->op == OP_CREATE || a->op == OP_UPDATE) {
        char msg[160];
        if (ibex_json_parse(req->body.p, req->body.len, &a->body, msg, sizeof(msg)) != 0) {
            admin_error(a, 400, "INVALID_JSON", msg, NULL, NULL, NULL);
            return;
        }
        if (!json_object_is_type(a->body, json_type_object)) {
            admin_error(a, 400, "VALIDATION_ERROR", "the body must be a JSON object", NULL, NULL,
                        NULL);
            return;
        }
    }
    a->job.run = run_op;
    a->job.done = op_done;
    a->job.data = a;
    req->on_abort = on_abort;
    if (ibex_store_pool_submit(&w->loop, w->rt->store_pool, &a->job) != 0) {
        req->on_abort = NULL;
        admin_error(a, 503, "STORE_UNAVAILABLE", "the store is unavailable", NULL, NULL,
                    "Retry-After: 1\r\n");
    }
}

/* Splits the path below the collection: "" (the collection), "/{id}" or "/{id}/revoke". */
static int parse_path(struct admin *a, struct ibex_str rest, struct ibex_str *id, bool *revoke)
{
    *id = (struct ibex_str){NULL, 0};
    *revoke = false;
    if (rest.len == 0 || (rest.len == 1 && rest.p[0] == '/'))
        return 0;
    rest.p++;
    rest.len--;
    const char *slash = memchr(rest.p, '/', rest.len);
    if (slash == NULL) {
        *id = rest;
        return 0;
    }
    *id = (struct ibex_str){rest.p, (size_t)(slash - rest.p)};
    struct ibex_str tail = {slash, rest.len - id->len};
    if (ibex_str_eq_cstr(tail, "/revoke")) {
        *revoke = true;
        return 0;
    }
    return -1;
}

static const uint32_t route_scope[IBEX_ROUTE_COUNT] = {
    [IBEX_ROUTE_TENANTS] = IBEX_SCOPE_ADMIN,      [IBEX_ROUTE_AGENTS] = IBEX_SCOPE_KEYS_ADMIN,
    [IBEX_ROUTE_KEYS] = IBEX_SCOPE_KEYS_ADMIN,    [IBEX_ROUTE_AUDIT] = IBEX_SCOPE_ADMIN,
    [IBEX_ROUTE_TRACES] = IBEX_SCOPE_TRACES_READ,
};

void ibex_admin_handle(struct ibex_worker *w, struct ibex_req *req, enum ibex_route route)
{
    struct admin *a = ibex_arena_calloc(req->arena, sizeof(*a));
    a->info.route = route;
    a->req = req;
    a->rt = w->rt;
    a->route = route;
    ibex_buf_init(&a->out);
    ibex_api_result_init(&a->result);
    ibex_arena_on_free(req->arena, admin_cleanup, a);
    req->user = a;

    const char *prefix = ibex_metrics_route_name(route);
    size_t plen = strlen(prefix);
    struct ibex_str id, rest = {req->path.p + plen, req->path.len - plen};
    bool revoke;
    /* /v1/audit is a collection only; /v1/traces/{id} an item only */
    if (parse_path(a, rest, &id, &revoke) != 0 || (route == IBEX_ROUTE_AUDIT && id.p) ||
        (route == IBEX_ROUTE_TRACES && (id.p == NULL || revoke)) ||
        (route == IBEX_ROUTE_SESSIONS && revoke)) {
        admin_error(a, 404, "NOT_FOUND", "no such route", NULL, NULL, NULL);
        return;
    }
    const char *allow;
    bool is_get = ibex_str_eq_cstr(req->method, "GET");
    bool is_post = ibex_str_eq_cstr(req->method, "POST");
    if (id.p == NULL) {
        allow = route == IBEX_ROUTE_AUDIT ? "Allow: GET\r\n" : "Allow: GET, POST\r\n";
        a->op = is_get ? OP_LIST : OP_CREATE;
        if (!is_get && !(is_post && route != IBEX_ROUTE_AUDIT))
            goto not_allowed;
    } else if (revoke) {
        allow = "Allow: POST\r\n";
        a->op = OP_REVOKE;
        if (!is_post)
            goto not_allowed;
    } else {
        /* agents are updated with PATCH (any field), sessions with PUT (status, metadata) */
        const char *update = route == IBEX_ROUTE_AGENTS     ? "PATCH"
                             : route == IBEX_ROUTE_SESSIONS ? "PUT"
                                                            : NULL;
        bool is_update = update && ibex_str_eq_cstr(req->method, update);
        allow = route == IBEX_ROUTE_AGENTS     ? "Allow: GET, PATCH\r\n"
                : route == IBEX_ROUTE_SESSIONS ? "Allow: GET, PUT\r\n"
                                               : "Allow: GET\r\n";
        a->op = is_update ? OP_UPDATE : OP_GET;
        if (!is_get && !is_update)
            goto not_allowed;
    }
    if (id.p) {
        if (!ibex_id_is_uuid(id.p, id.len)) {
            admin_error(a, 400, "VALIDATION_ERROR", "the id in the path must be a UUID", "id",
                        "[{\"field\":\"id\",\"message\":\"must be a UUID\"}]", NULL);
            return;
        }
        for (size_t i = 0; i < IBEX_ID_LEN; i++)
            a->id[i] = (char)(id.p[i] >= 'A' && id.p[i] <= 'F' ? id.p[i] + 32 : id.p[i]);
    }
    if (a->op == OP_LIST && route == IBEX_ROUTE_SESSIONS) {
        if (ibex_session_query_parse(req->query, &a->sessions, &a->result) != 0) {
            struct ibex_api_result *r = &a->result;
            admin_error(a, r->status, r->code, r->message, r->param, r->field_errors.p, NULL);
            return;
        }
    } else if (a->op == OP_LIST) {
        bool bad;
        a->limit = parse_limit(req->query, &bad);
        if (bad) {
            admin_error(a, 400, "VALIDATION_ERROR", "limit must be 1 to 1000", "limit",
                        "[{\"field\":\"limit\",\"message\":\"must be 1 to 1000\"}]", NULL);
            return;
        }
    }
    uint32_t scope = route_scope[route];
    if (route == IBEX_ROUTE_SESSIONS)
        scope = a->op == OP_LIST || a->op == OP_GET ? IBEX_SCOPE_SESSIONS_READ
                                                    : IBEX_SCOPE_SESSIONS_WRITE;
    ibex_auth_request(w, req, scope, authorized, a);
    return;
not_allowed:
    admin_error(a, 405, "METHOD_NOT_ALLOWED", "method not allowed on this route", NULL, NULL,
                allow);
}
