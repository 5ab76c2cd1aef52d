/* The control-plane API over HTTP: /v1/tenants, /v1/agents, /v1/keys, /v1/audit
 * (docs/identity.md), /v1/sessions and /v1/traces/{id} (docs/sessions.md), /v1/tasks and
 * /v1/approvals (docs/tasks.md), /v1/credentials (docs/credentials.md). Every operation is
 * one row of `endpoints`: its route, method, path shape, scope and the store function it runs.
 * A request is authenticated and scope-checked on the loop, its body parsed there, and the store
 * work runs on the store pool; the answer is sent from the job's completion. A change that moved
 * the identity epoch is noted before the answer goes out, so this instance's caches never serve
 * what it just revoked. */
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/identity.h"
#include "../auth/vault.h"
#include "../core/clock.h"
#include "../core/id.h"
#include "../gateway/chat_request.h"
#include "../gateway/gateway.h"
#include "../telemetry/trace.h"
#include "../gateway/idempotent.h"
#include "approvals.h"
#include "checkpoints.h"
#include "credentials.h"
#include "sessions.h"
#include "tasks.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

struct admin;
/* Runs on a pool thread: fills a->out and a->result. */
typedef void (*run_fn)(struct admin *a, struct ibex_store *s);

/* Where below the collection's prefix an operation lives. */
enum shape {
    COLLECTION,        /* /v1/things */
    COLLECTION_ACTION, /* /v1/things/action */
    ITEM,              /* /v1/things/{id} */
    ITEM_ACTION,       /* /v1/things/{id}/action */
};

/* What an operation takes as its body. */
enum body {
    NO_BODY,
    BODY,          /* a JSON object, required */
    OPTIONAL_BODY, /* a JSON object, or nothing at all */
};

struct endpoint {
    enum ibex_route route;
    const char *method;
    enum shape shape;
    const char *action; /* *_ACTION only */
    enum body body;
    bool idempotent; /* honours Idempotency-Key (gateway/idempotent.h) */
    uint32_t scope;
    run_fn run;
};

/* In an endpoint's scope: the other bits are alternatives, any one of them is enough (the auth
 * layer checks one scope; the router checks these). */
#define ANY_OF (1u << 31)

struct admin {
    struct ibex_req_info info; /* first: the access log reads req->user as this */
    struct ibex_store_job job;
    struct ibex_req *req;
    struct ibex_worker *w;
    struct ibex_runtime *rt;
    const struct endpoint *endpoint;
    char id[IBEX_ID_LEN + 1]; /* from the path; "" for collections */
    struct ibex_str query;
    bool aborted;
    json_object *body;
    struct ibex_actor actor;
    struct ibex_principal principal;
    struct ibex_buf out;
    struct ibex_api_result result;
    struct ibex_idem_request idem;
    struct ibex_credential_probe probe; /* POST /v1/credentials/{id}/validate */
};

static void admin_cleanup(void *data)
{
    struct admin *a = data;
    if (a->info.route == IBEX_ROUTE_CREDENTIALS) {
        ibex_credentials_body_wipe(a->body);
        ibex_credential_probe_dispose(&a->probe);
    }
    json_object_put(a->body);
    ibex_buf_dispose(&a->out);
    ibex_api_result_dispose(&a->result);
    ibex_idem_request_dispose(&a->idem);
}

static void admin_error(struct admin *a, int status, const char *code, const char *message,
                        const char *param, const char *field_errors, const char *extra)
{
    a->info.code = code;
    ibex_res_error(a->req, status, code, message, param, field_errors, extra);
}

/* ---- the operations (pool threads) ---- */

/* ?limit= of the identity lists: 1 to 1000, default 100. Returns 0 or the 400 set in r. */
static int parse_limit(struct ibex_str query, int64_t *limit, struct ibex_api_result *r)
{
    *limit = LIST_LIMIT_DEFAULT;
    const char *p = query.p;
    const char *end = query.p + query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > 6 && memcmp(p, "limit=", 6) == 0) {
            int64_t v = 0;
            for (const char *c = p + 6; c < stop && v <= LIST_LIMIT_MAX; c++)
                v = *c >= '0' && *c <= '9' ? v * 10 + (*c - '0') : LIST_LIMIT_MAX + 1;
            if (v < 1 || v > LIST_LIMIT_MAX)
                return ibex_api_invalid(r, "limit", "must be 1 to 1000");
            *limit = v;
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static void tenant_create(struct admin *a, struct ibex_store *s)
{
    ibex_tenant_create(s, &a->actor, a->body, &a->out, &a->result);
}
static void tenant_list(struct admin *a, struct ibex_store *s)
{
    int64_t limit;
    if (parse_limit(a->query, &limit, &a->result) == 0)
        ibex_tenant_list(s, &a->actor, limit, &a->out, &a->result);
}
static void tenant_get(struct admin *a, struct ibex_store *s)
{
    ibex_tenant_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void tenant_revoke(struct admin *a, struct ibex_store *s)
{
    ibex_tenant_revoke(s, &a->actor, a->id, &a->out, &a->result);
}
static void agent_create(struct admin *a, struct ibex_store *s)
{
    ibex_agent_create(s, &a->actor, a->body, NULL, &a->out, &a->result);
}
static void agent_list(struct admin *a, struct ibex_store *s)
{
    int64_t limit;
    if (parse_limit(a->query, &limit, &a->result) == 0)
        ibex_agent_list(s, &a->actor, limit, &a->out, &a->result);
}
static void agent_get(struct admin *a, struct ibex_store *s)
{
    ibex_agent_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void agent_update(struct admin *a, struct ibex_store *s)
{
    ibex_agent_update(s, &a->actor, a->id, a->body, &a->out, &a->result);
}
static void agent_revoke(struct admin *a, struct ibex_store *s)
{
    ibex_agent_revoke(s, &a->actor, a->id, &a->out, &a->result);
}
static void key_create(struct admin *a, struct ibex_store *s)
{
    ibex_key_create(s, &a->actor, a->body, NULL, &a->out, &a->result);
}
static void key_list(struct admin *a, struct ibex_store *s)
{
    int64_t limit;
    if (parse_limit(a->query, &limit, &a->result) == 0)
        ibex_key_list(s, &a->actor, limit, &a->out, &a->result);
}
static void key_get(struct admin *a, struct ibex_store *s)
{
    ibex_key_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void key_revoke(struct admin *a, struct ibex_store *s)
{
    ibex_key_revoke(s, &a->actor, a->id, &a->out, &a->result);
}
static void audit_list(struct admin *a, struct ibex_store *s)
{
    int64_t limit;
    if (parse_limit(a->query, &limit, &a->result) == 0)
        ibex_audit_list(s, &a->actor, limit, &a->out, &a->result);
}
static void trace_get(struct admin *a, struct ibex_store *s)
{
    ibex_trace_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void session_create(struct admin *a, struct ibex_store *s)
{
    ibex_session_create(s, &a->actor, a->body, &a->out, &a->result);
}
static void session_list(struct admin *a, struct ibex_store *s)
{
    struct ibex_session_query q;
    if (ibex_session_query_parse(a->query, &q, &a->result) == 0)
        ibex_session_list(s, &a->actor, &q, &a->out, &a->result);
}
static void session_get(struct admin *a, struct ibex_store *s)
{
    ibex_session_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void session_update(struct admin *a, struct ibex_store *s)
{
    ibex_session_update(s, &a->actor, a->id, a->body, &a->out, &a->result);
}
static void task_create(struct admin *a, struct ibex_store *s)
{
    ibex_task_create(s, &a->actor, a->body, &a->out, &a->result);
}
static void task_list(struct admin *a, struct ibex_store *s)
{
    struct ibex_task_query q;
    if (ibex_task_query_parse(a->query, &q, &a->result) == 0)
        ibex_task_list(s, &a->actor, &q, &a->out, &a->result);
}
static void task_route(struct admin *a, struct ibex_store *s)
{
    ibex_task_route(s, &a->actor, a->body, &a->out, &a->result);
}
static void task_get(struct admin *a, struct ibex_store *s)
{
    ibex_task_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void task_update(struct admin *a, struct ibex_store *s)
{
    ibex_task_update(s, &a->actor, a->id, a->body, &a->out, &a->result);
}
static void approval_request(struct admin *a, struct ibex_store *s)
{
    ibex_approval_request(s, &a->actor, a->body, &a->out, &a->result);
}
static void approval_list(struct admin *a, struct ibex_store *s)
{
    struct ibex_approval_query q;
    if (ibex_approval_query_parse(a->query, &q, &a->result) == 0)
        ibex_approval_list(s, &a->actor, &q, &a->out, &a->result);
}
static void approval_get(struct admin *a, struct ibex_store *s)
{
    ibex_approval_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void approval_approve(struct admin *a, struct ibex_store *s)
{
    ibex_approval_approve(s, &a->actor, a->id, a->body, &a->out, &a->result);
}
static void approval_reject(struct admin *a, struct ibex_store *s)
{
    ibex_approval_reject(s, &a->actor, a->id, a->body, &a->out, &a->result);
}
static void checkpoint_list(struct admin *a, struct ibex_store *s)
{
    struct ibex_session_query q;
    if (ibex_session_query_parse(a->query, &q, &a->result) == 0)
        ibex_checkpoint_list(s, &a->actor, a->id, &q, &a->out, &a->result);
}

static void credentials_env(const struct admin *a, struct ibex_credentials_env *env)
{
    *env = (struct ibex_credentials_env){a->rt->vault, a->rt->cfg.providers, a->rt->cfg.nproviders,
                                         a->rt->credential_cache};
}
static void credential_create(struct admin *a, struct ibex_store *s)
{
    struct ibex_credentials_env env;
    credentials_env(a, &env);
    ibex_credentials_create(s, &env, &a->actor, a->body, &a->out, &a->result);
}
static void credential_list(struct admin *a, struct ibex_store *s)
{
    struct ibex_credentials_query q;
    if (ibex_credentials_query_parse(a->query, &q, &a->result) == 0)
        ibex_credentials_list(s, &a->actor, &q, &a->out, &a->result);
}
static void credential_get(struct admin *a, struct ibex_store *s)
{
    ibex_credentials_get(s, &a->actor, a->id, &a->out, &a->result);
}
static void credential_update(struct admin *a, struct ibex_store *s)
{
    struct ibex_credentials_env env;
    credentials_env(a, &env);
    ibex_credentials_update(s, &env, &a->actor, a->id, a->body, &a->out, &a->result);
}
static void credential_delete(struct admin *a, struct ibex_store *s)
{
    struct ibex_credentials_env env;
    credentials_env(a, &env);
    ibex_credentials_delete(s, &env, &a->actor, a->id, &a->out, &a->result);
}
static void credential_default(struct admin *a, struct ibex_store *s)
{
    ibex_credentials_make_default(s, &a->actor, a->id, &a->out, &a->result);
}
/* Prepares the probe; op_done runs it on the loop, then credential_validated answers. */
static void credential_validate(struct admin *a, struct ibex_store *s)
{
    struct ibex_credentials_env env;
    credentials_env(a, &env);
    ibex_credentials_validate_prepare(s, &env, &a->actor, a->id, &a->probe, &a->result);
}

#define ADMIN IBEX_SCOPE_ADMIN
#define KEYS IBEX_SCOPE_KEYS_ADMIN
#define S_READ IBEX_SCOPE_SESSIONS_READ
#define S_WRITE IBEX_SCOPE_SESSIONS_WRITE
#define DECIDE IBEX_SCOPE_APPROVALS_DECIDE
/* chat (its own credentials) or credentials:admin (also the tenant-wide ones) */
#define CRED (ANY_OF | IBEX_SCOPE_CHAT | IBEX_SCOPE_CREDENTIALS_ADMIN)
#define CREDS IBEX_ROUTE_CREDENTIALS

static const struct endpoint endpoints[] = {
    {IBEX_ROUTE_TENANTS, "POST", COLLECTION, NULL, BODY, false, ADMIN, tenant_create},
    {IBEX_ROUTE_TENANTS, "GET", COLLECTION, NULL, NO_BODY, false, ADMIN, tenant_list},
    {IBEX_ROUTE_TENANTS, "GET", ITEM, NULL, NO_BODY, false, ADMIN, tenant_get},
    {IBEX_ROUTE_TENANTS, "POST", ITEM_ACTION, "revoke", NO_BODY, false, ADMIN, tenant_revoke},
    {IBEX_ROUTE_AGENTS, "POST", COLLECTION, NULL, BODY, false, KEYS, agent_create},
    {IBEX_ROUTE_AGENTS, "GET", COLLECTION, NULL, NO_BODY, false, KEYS, agent_list},
    {IBEX_ROUTE_AGENTS, "GET", ITEM, NULL, NO_BODY, false, KEYS, agent_get},
    {IBEX_ROUTE_AGENTS, "PATCH", ITEM, NULL, BODY, false, KEYS, agent_update},
    {IBEX_ROUTE_AGENTS, "POST", ITEM_ACTION, "revoke", NO_BODY, false, KEYS, agent_revoke},
    {IBEX_ROUTE_KEYS, "POST", COLLECTION, NULL, BODY, false, KEYS, key_create},
    {IBEX_ROUTE_KEYS, "GET", COLLECTION, NULL, NO_BODY, false, KEYS, key_list},
    {IBEX_ROUTE_KEYS, "GET", ITEM, NULL, NO_BODY, false, KEYS, key_get},
    {IBEX_ROUTE_KEYS, "POST", ITEM_ACTION, "revoke", NO_BODY, false, KEYS, key_revoke},
    {IBEX_ROUTE_AUDIT, "GET", COLLECTION, NULL, NO_BODY, false, ADMIN, audit_list},
    {IBEX_ROUTE_TRACES, "GET", ITEM, NULL, NO_BODY, false, IBEX_SCOPE_TRACES_READ, trace_get},
    {IBEX_ROUTE_SESSIONS, "POST", COLLECTION, NULL, BODY, true, S_WRITE, session_create},
    {IBEX_ROUTE_SESSIONS, "GET", COLLECTION, NULL, NO_BODY, false, S_READ, session_list},
    {IBEX_ROUTE_SESSIONS, "GET", ITEM, NULL, NO_BODY, false, S_READ, session_get},
    {IBEX_ROUTE_SESSIONS, "PUT", ITEM, NULL, BODY, false, S_WRITE, session_update},
    {IBEX_ROUTE_SESSIONS, "GET", ITEM_ACTION, "checkpoints", NO_BODY, false, S_READ,
     checkpoint_list},
    {IBEX_ROUTE_TASKS, "POST", COLLECTION, NULL, BODY, true, S_WRITE, task_create},
    {IBEX_ROUTE_TASKS, "GET", COLLECTION, NULL, NO_BODY, false, S_READ, task_list},
    {IBEX_ROUTE_TASKS, "POST", COLLECTION_ACTION, "route", BODY, false, S_WRITE, task_route},
    {IBEX_ROUTE_TASKS, "GET", ITEM, NULL, NO_BODY, false, S_READ, task_get},
    {IBEX_ROUTE_TASKS, "PUT", ITEM, NULL, BODY, false, S_WRITE, task_update},
    {IBEX_ROUTE_APPROVALS, "POST", COLLECTION, NULL, BODY, false, S_WRITE, approval_request},
    {IBEX_ROUTE_APPROVALS, "GET", COLLECTION, NULL, NO_BODY, false, S_READ, approval_list},
    {IBEX_ROUTE_APPROVALS, "GET", ITEM, NULL, NO_BODY, false, S_READ, approval_get},
    {IBEX_ROUTE_APPROVALS, "POST", ITEM_ACTION, "approve", OPTIONAL_BODY, false, DECIDE,
     approval_approve},
    {IBEX_ROUTE_APPROVALS, "POST", ITEM_ACTION, "reject", BODY, false, DECIDE, approval_reject},
    {CREDS, "POST", COLLECTION, NULL, BODY, true, CRED, credential_create},
    {CREDS, "GET", COLLECTION, NULL, NO_BODY, false, CRED, credential_list},
    {CREDS, "GET", ITEM, NULL, NO_BODY, false, CRED, credential_get},
    {CREDS, "PUT", ITEM, NULL, BODY, false, CRED, credential_update},
    {CREDS, "DELETE", ITEM, NULL, NO_BODY, false, CRED, credential_delete},
    {CREDS, "POST", ITEM_ACTION, "default", NO_BODY, false, CRED, credential_default},
    {CREDS, "POST", ITEM_ACTION, "validate", NO_BODY, false, CRED, credential_validate},
};

/* ---- the store work (a pool thread) ---- */

static int run_op(struct ibex_store_job *job, struct ibex_store *s)
{
    struct admin *a = job->data;
    struct ibex_idem *idem = a->rt->idem;
    if (a->idem.active) {
        ibex_idem_request_begin(idem, s, a->actor.tenant_id, &a->idem);
        if (a->idem.rc != 0 || a->idem.state != IBEX_IDEM_CLAIMED)
            return 0; /* answered by op_done */
    }
    a->endpoint->run(a, s);
    struct ibex_idem_outcome o = {a->result.status, "application/json", "", a->out.p, a->out.len};
    ibex_idem_request_finish(idem, s, a->actor.tenant_id, &a->idem, &o);
    /* Effective here before the answer leaves, and published to the other instances. */
    if (a->result.epoch > 0) {
        ibex_auth_note_epoch(a->rt->auth, a->result.epoch);
        if (a->rt->revocation)
            ibex_revocation_note(a->rt->revocation, a->result.epoch);
    }
    return 0;
}

static void op_done(struct ibex_store_job *job, int rc);
static void on_abort(struct ibex_req *req);

/* The validation's second half, on a pool thread: the audit event and the answer. */
static int run_validated(struct ibex_store_job *job, struct ibex_store *s)
{
    struct admin *a = job->data;
    ibex_credentials_validate_finish(s, &a->actor, &a->probe, &a->out, &a->result);
    return 0;
}

static void on_probed(struct ibex_credential_probe *p, void *data)
{
    struct admin *a = data;
    a->job.run = run_validated;
    a->job.done = op_done;
    a->req->on_abort = on_abort;
    if (ibex_store_pool_submit(&a->w->loop, a->rt->store_pool, &a->job) != 0) {
        a->req->on_abort = NULL;
        admin_error(a, 503, "STORE_UNAVAILABLE", "the store is unavailable", NULL, NULL,
                    "Retry-After: 1\r\n");
    }
}

/* The client left while the provider was being asked: nothing more is reported. */
static void on_probe_abort(struct ibex_req *req)
{
    struct admin *a = req->user;
    ibex_credential_probe_cancel(&a->probe);
    ibex_res_stream_end(req);
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
    if (rc == 0 && a->idem.active && !ibex_idem_request_proceed(&a->idem, a->req, &a->info.code))
        return;
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
    if (a->probe.ready) { /* validate: ask the provider from this loop */
        a->req->on_abort = on_probe_abort;
        if (ibex_credential_probe_start(a->w->upstream, &a->probe, on_probed, a) != 0)
            on_probed(&a->probe, a);
        return;
    }
    ibex_res_send(a->req, r->status, "application/json", NULL, a->out.p, a->out.len);
}

static void on_abort(struct ibex_req *req)
{
    ((struct admin *)req->user)->aborted = true;
}

/* ---- the loop side ---- */

/* 403 for an endpoint whose scopes are alternatives (the auth layer checks a single one):
 * counted and audited as the auth layer does. */
static void refuse_scope(struct ibex_worker *w, struct admin *a)
{
    const struct endpoint *e = a->endpoint;
    ibex_metrics_auth_failure(w->metrics, IBEX_AUTH_INSUFFICIENT_SCOPE);
    if (w->rt->writer) {
        struct ibex_store_value p[IBEX_AUDIT_NPARAMS];
        char id[IBEX_UUID_LEN + 1];
        ibex_audit_params(p, id, a->principal.tenant_id[0] ? a->principal.tenant_id : NULL,
                          a->principal.subject, "access.denied", NULL, a->req->request_id,
                          "{\"code\":\"INSUFFICIENT_SCOPE\"}", ibex_clock_wall_ms());
        ibex_store_writer_enqueue(w->rt->writer, ibex_audit_sql, p, IBEX_AUDIT_NPARAMS);
    }
    char msg[160] = "this route needs scope";
    const char *sep = " ";
    for (uint32_t bit = 1; bit & IBEX_SCOPE_ALL; bit <<= 1) {
        if (!(e->scope & ~ANY_OF & bit))
            continue;
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof(msg) - n, "%s'%s'", sep, ibex_scope_name(bit));
        sep = " or ";
    }
    admin_error(a, 403, "INSUFFICIENT_SCOPE", msg, NULL, NULL, NULL);
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

    const struct endpoint *e = a->endpoint;
    if ((e->scope & ANY_OF) && !ibex_scopes_allow(p->scopes, IBEX_SCOPE_ADMIN) &&
        !(p->scopes & e->scope & ~ANY_OF)) {
        refuse_scope(w, a);
        return;
    }
    bool credentials = e->route == IBEX_ROUTE_CREDENTIALS;
    if (credentials && w->rt->vault == NULL) {
        struct ibex_api_result *r = &a->result;
        ibex_credentials_disabled(r);
        admin_error(a, r->status, r->code, r->message, NULL, NULL, NULL);
        return;
    }
    if (e->idempotent && ibex_idem_request_init(&a->idem, req, &a->info.code) != 0)
        return;
    /* A credential body holds a secret: its fingerprint is keyed with the master key and bound
     * to the subject, so the stored one tells nothing without the key. */
    if (credentials && a->idem.active) {
        uint8_t fp[32 + IBEX_SUBJECT_MAX + 1];
        size_t n = strlen(a->actor.subject);
        memcpy(fp, a->idem.fp, 32);
        memcpy(fp + 32, a->actor.subject, n);
        ibex_vault_mac(w->rt->vault, "ibex idempotency fingerprint v1", fp, 32 + n, a->idem.fp);
    }
    if (a->endpoint->body == BODY || (a->endpoint->body == OPTIONAL_BODY && req->body.len)) {
        char msg[160];
        if (ibex_json_parse(req->body.p, req->body.len, &a->body, msg, sizeof(msg)) != 0) {
            admin_error(a, 400, "INVALID_JSON", msg, NULL, NULL, NULL);
            return;
        }
        if (credentials) /* the parsed body is the only copy left, wiped by admin_cleanup */
            OPENSSL_cleanse((char *)req->body.p, req->body.len);
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

/* Splits the path below the collection's prefix into a shape, the id and the action. */
static int parse_path(struct ibex_str rest, enum shape *shape, struct ibex_str *id,
                      struct ibex_str *action)
{
    *id = *action = (struct ibex_str){NULL, 0};
    *shape = COLLECTION;
    if (rest.len == 0 || (rest.len == 1 && rest.p[0] == '/'))
        return 0;
    if (rest.p[0] != '/')
        return -1;
    rest.p++;
    rest.len--;
    const char *slash = memchr(rest.p, '/', rest.len);
    *shape = slash ? ITEM_ACTION : ITEM;
    *id = (struct ibex_str){rest.p, slash ? (size_t)(slash - rest.p) : rest.len};
    if (slash)
        *action = (struct ibex_str){slash + 1, rest.len - id->len - 1};
    return 0;
}

void ibex_admin_handle(struct ibex_worker *w, struct ibex_req *req, enum ibex_route route)
{
    struct admin *a = ibex_arena_calloc(req->arena, sizeof(*a));
    a->info.route = route;
    a->req = req;
    a->w = w;
    a->rt = w->rt;
    a->query = req->query;
    ibex_buf_init(&a->out);
    ibex_api_result_init(&a->result);
    ibex_arena_on_free(req->arena, admin_cleanup, a);
    req->user = a;

    const char *prefix = ibex_metrics_route_name(route);
    size_t plen = strlen(prefix);
    struct ibex_str id, action, rest = {req->path.p + plen, req->path.len - plen};
    enum shape shape;
    /* The operations at this path, and among them the one of this method. */
    char allow[80] = "Allow: ";
    bool any = false;
    int parsed = parse_path(rest, &shape, &id, &action);
    /* /v1/things/word is an action on the collection when one is named so, else an item */
    for (size_t i = 0; parsed == 0 && shape == ITEM && i < sizeof(endpoints) / sizeof(endpoints[0]);
         i++) {
        if (endpoints[i].route == route && endpoints[i].shape == COLLECTION_ACTION &&
            ibex_str_eq_cstr(id, endpoints[i].action)) {
            shape = COLLECTION_ACTION;
            action = id;
            id = (struct ibex_str){NULL, 0};
        }
    }
    if (parsed == 0) {
        for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
            const struct endpoint *e = &endpoints[i];
            if (e->route != route || e->shape != shape ||
                ((shape == ITEM_ACTION || shape == COLLECTION_ACTION) &&
                 !ibex_str_eq_cstr(action, e->action)))
                continue;
            if (ibex_str_eq_cstr(req->method, e->method))
                a->endpoint = e;
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof(allow) - n, "%s%s", any ? ", " : "", e->method);
            any = true;
        }
    }
    if (!any) {
        admin_error(a, 404, "NOT_FOUND", "no such route", NULL, NULL, NULL);
        return;
    }
    if (a->endpoint == NULL) {
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof(allow) - n, "\r\n");
        admin_error(a, 405, "METHOD_NOT_ALLOWED", "method not allowed on this route", NULL, NULL,
                    allow);
        return;
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
    uint32_t scope = a->endpoint->scope;
    ibex_auth_request(w, req, scope & ANY_OF ? 0 : scope, authorized, a);
}
