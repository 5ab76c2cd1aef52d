/* Authentication on the request path. A request's state lives in its arena; while a store job
 * runs for it, on_abort only marks it, and the job's completion finishes the request, so the
 * request outlives every job it started. */
#include "auth.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/id.h"
#include "../core/log.h"
#include "../gateway/gateway.h"
#include "identity.h"
#include "jwt.h"
#include "keys.h"

/* An unknown token is remembered briefly, so a client retrying a bad key does not reach the
 * store every time, while a key created a moment later still works soon. */
#define NEGATIVE_TTL_MS 5000
#define MAX_TOKEN_LEN 16384

const char *const ibex_auth_failure_codes[IBEX_AUTH_NFAILURES] = {
    "MISSING_TOKEN", "INVALID_TOKEN",      "TOKEN_EXPIRED",
    "TOKEN_REVOKED", "INSUFFICIENT_SCOPE", "AUTH_UNAVAILABLE",
};

static const int failure_status[IBEX_AUTH_NFAILURES] = {401, 401, 401, 401, 403, 503};

static const char *const failure_message[IBEX_AUTH_NFAILURES] = {
    "an Authorization: Bearer credential is required",
    "the credential is not valid",
    "the credential has expired",
    "the credential has been revoked",
    "the credential lacks the scope this route needs",
    "credentials cannot be checked right now; retry",
};

struct ibex_static_token {
    uint8_t digest[IBEX_LRU_KEY_LEN];
    struct ibex_principal principal;
};

/* ---- process-wide state ---- */

static int parse_modes(const char *list, unsigned *modes, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"keys", IBEX_AUTH_KEYS},
                 {"static", IBEX_AUTH_STATIC},
                 {"jwt", IBEX_AUTH_JWT},
                 {"none", IBEX_AUTH_NONE}};
    *modes = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ", ");
        if (len) {
            unsigned bit = 0;
            for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strlen(names[i].name) == len && memcmp(names[i].name, p, len) == 0)
                    bit = names[i].bit;
            if (bit == 0) {
                snprintf(err, errlen, "auth_modes: unknown mode '%.*s' (keys, static, jwt, none)",
                         (int)len, p);
                return -1;
            }
            *modes |= bit;
        }
        p += len;
        p += strspn(p, ", ");
    }
    if (*modes == 0) {
        snprintf(err, errlen, "auth_modes: name at least one of keys, static, jwt, none");
        return -1;
    }
    return 0;
}

/* AUTH_TOKENS_JSON: {"<token>": {"tenant_id": "<uuid>", "scopes": [...], "subject": "..."}}. */
static int parse_static_tokens(struct ibex_auth *a, const char *json, char *err, size_t errlen)
{
    json_object *root = json_tokener_parse(json);
    if (root == NULL || !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        snprintf(err, errlen, "auth_tokens_json: not a JSON object of token -> grant");
        return -1;
    }
    a->statics = ibex_xcalloc((size_t)json_object_object_length(root) + 1, sizeof(*a->statics));
    int rc = 0;
    size_t n = 0;
    json_object_object_foreach(root, token, grant)
    {
        struct ibex_static_token *t = &a->statics[n];
        json_object *tenant = NULL, *scopes = NULL, *subject = NULL;
        const char *tid = json_object_object_get_ex(grant, "tenant_id", &tenant)
                              ? json_object_get_string(tenant)
                              : NULL;
        if (strlen(token) < 16) {
            snprintf(err, errlen, "auth_tokens_json: token %zu is shorter than 16 bytes", n + 1);
            rc = -1;
            break;
        }
        if (!json_object_is_type(grant, json_type_object) || tid == NULL ||
            !ibex_id_is_uuid(tid, strlen(tid))) {
            snprintf(err, errlen, "auth_tokens_json: token %zu needs tenant_id (a UUID)", n + 1);
            rc = -1;
            break;
        }
        t->principal.kind = IBEX_PRINCIPAL_STATIC;
        snprintf(t->principal.tenant_id, sizeof(t->principal.tenant_id), "%s", tid);
        if (json_object_object_get_ex(grant, "subject", &subject))
            snprintf(t->principal.subject, sizeof(t->principal.subject), "%s",
                     json_object_get_string(subject));
        if (json_object_object_get_ex(grant, "scopes", &scopes) &&
            json_object_is_type(scopes, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(scopes); i++) {
                json_object *e = json_object_array_get_idx(scopes, i);
                uint32_t bit = ibex_scope_parse(json_object_get_string(e),
                                                (size_t)json_object_get_string_len(e));
                if (bit == 0) {
                    snprintf(err, errlen, "auth_tokens_json: token %zu has an unknown scope",
                             n + 1);
                    rc = -1;
                    break;
                }
                t->principal.scopes |= bit;
            }
        }
        if (rc)
            break;
        ibex_sha256(token, strlen(token), t->digest);
        n++;
    }
    a->nstatics = n;
    json_object_put(root);
    return rc;
}

int ibex_auth_init(struct ibex_auth *a, const struct ibex_config *cfg, struct ibex_store_pool *pool,
                   struct ibex_store_writer *writer, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->pool = pool;
    a->writer = writer;
    a->cache_ttl_ms = (int64_t)cfg->auth_cache_ttl_ms;
    a->cache_size = (size_t)cfg->auth_cache_size;
    a->agent_required = cfg->agent_required;
    a->directive_replace = strcmp(cfg->directive_mode, "replace") == 0;
    if (strcmp(cfg->directive_mode, "prepend") != 0 && !a->directive_replace) {
        snprintf(err, errlen, "directive_mode: '%s' is not prepend or replace",
                 cfg->directive_mode);
        return -1;
    }
    if (parse_modes(cfg->auth_modes, &a->modes, err, errlen))
        return -1;
    if (a->modes & IBEX_AUTH_STATIC) {
        if (cfg->auth_tokens_json[0] == '\0') {
            snprintf(err, errlen, "auth mode static needs AUTH_TOKENS_JSON (auth_tokens_json)");
            return -1;
        }
        if (parse_static_tokens(a, cfg->auth_tokens_json, err, errlen)) {
            ibex_auth_dispose(a);
            return -1;
        }
    }
    if (a->modes & IBEX_AUTH_JWT) {
        struct ibex_jwt_config jc = {
            .issuer = cfg->jwt_issuer,
            .audience = cfg->jwt_audience,
            .jwks_url = cfg->jwt_jwks_url,
            .tenant_claim = cfg->jwt_tenant_claim,
            .scopes_claim = cfg->jwt_scopes_claim,
            .leeway_ms = 30000,
            .refetch_min_interval_ms = 10000,
            .fetch_timeout_ms = 5000,
        };
        char jerr[200];
        if (ibex_jwt_verifier_new(&jc, &a->jwt, jerr, sizeof(jerr)) != 0) {
            snprintf(err, errlen, "auth mode jwt: %s", jerr);
            ibex_auth_dispose(a);
            return -1;
        }
    }
    return 0;
}

void ibex_auth_dispose(struct ibex_auth *a)
{
    free(a->statics);
    a->statics = NULL;
    a->nstatics = 0;
    ibex_jwt_verifier_free(a->jwt);
    a->jwt = NULL;
}

void ibex_auth_note_epoch(struct ibex_auth *a, int64_t epoch)
{
    int64_t cur = atomic_load(&a->epoch);
    while (cur < epoch && !atomic_compare_exchange_weak(&a->epoch, &cur, epoch))
        ;
}

/* ---- worker caches ---- */

/* What the credential cache holds for a token digest. */
struct cred {
    int failure; /* -1: valid; else an enum ibex_auth_failure */
    struct ibex_principal principal;
};

struct agent_entry {
    bool found;
    char *directive;
};

static void agent_entry_dispose(void *value)
{
    free(((struct agent_entry *)value)->directive);
}

void ibex_auth_caches_init(struct ibex_auth_caches *c, const struct ibex_auth *a)
{
    c->credentials = ibex_lru_new(a->cache_size, sizeof(struct cred), NULL);
    c->agents = ibex_lru_new(a->cache_size, sizeof(struct agent_entry), agent_entry_dispose);
}

void ibex_auth_caches_dispose(struct ibex_auth_caches *c)
{
    ibex_lru_free(c->credentials);
    ibex_lru_free(c->agents);
}

/* ---- the request path ---- */

struct auth_req {
    struct ibex_store_job job;
    struct ibex_worker *w;
    struct ibex_req *req;
    uint32_t scope;
    bool want_agent;
    bool aborted;
    ibex_auth_then_fn then;
    void *data;
    const char *token;
    size_t token_len;
    uint8_t digest[IBEX_LRU_KEY_LEN];
    int64_t epoch; /* when the lookup started: a result is cached for this epoch */
    struct cred cred;
    /* agent */
    char agent_id[IBEX_ID_LEN + 1];
    uint8_t agent_digest[IBEX_LRU_KEY_LEN];
    struct ibex_agent_info agent_info;
    bool agent_found;
};

static struct ibex_auth *auth_of(struct auth_req *ar)
{
    return ar->w->rt->auth;
}

static void set_code(struct ibex_req *req, const char *code)
{
    struct ibex_req_info *info = req->user;
    if (info)
        info->code = code;
}

/* Queues an audit event of a refusal through the store writer (never blocks the loop). */
static void audit_refusal(struct auth_req *ar, const char *tenant_id, const char *actor,
                          const char *action, const char *target, const char *code)
{
    struct ibex_auth *a = auth_of(ar);
    if (a->writer == NULL)
        return;
    char detail[96], id[IBEX_ID_LEN + 1];
    snprintf(detail, sizeof(detail), "{\"code\":\"%s\"}", code);
    struct ibex_store_value p[IBEX_AUDIT_NPARAMS];
    ibex_audit_params(p, id, tenant_id && tenant_id[0] ? tenant_id : NULL, actor, action, target,
                      ar->req->request_id, detail, ibex_clock_wall_ms());
    ibex_store_writer_enqueue(a->writer, ibex_audit_sql, p, IBEX_AUDIT_NPARAMS);
}

static void refuse(struct auth_req *ar, enum ibex_auth_failure f)
{
    const char *code = ibex_auth_failure_codes[f];
    ibex_metrics_auth_failure(ar->w->metrics, (int)f);
    set_code(ar->req, code);
    if (f == IBEX_AUTH_INSUFFICIENT_SCOPE) {
        audit_refusal(ar, ar->cred.principal.tenant_id, ar->cred.principal.subject, "access.denied",
                      NULL, code);
    } else if (f != IBEX_AUTH_MISSING_TOKEN && f != IBEX_AUTH_UNAVAILABLE) {
        const char *who = ar->cred.principal.key_id[0] ? ar->cred.principal.key_id : "anonymous";
        audit_refusal(ar, ar->cred.principal.tenant_id, who, "auth.failed", NULL, code);
    }
    char msg[160];
    const char *extra = NULL;
    if (f == IBEX_AUTH_INSUFFICIENT_SCOPE) {
        snprintf(msg, sizeof(msg), "this route needs scope '%s'", ibex_scope_name(ar->scope));
    } else {
        bool api_key =
            f == IBEX_AUTH_MISSING_TOKEN && ((struct ibex_req_info *)ar->req->user)->api_key_header;
        snprintf(msg, sizeof(msg), "%s",
                 api_key ? "an x-api-key or Authorization: Bearer credential is required"
                         : failure_message[f]);
        if (failure_status[f] == 401)
            extra = "WWW-Authenticate: Bearer realm=\"ibex\"\r\n";
        else if (f == IBEX_AUTH_UNAVAILABLE)
            extra = "Retry-After: 1\r\n";
    }
    ibex_res_error(ar->req, failure_status[f], code, msg, NULL, NULL, extra);
}

static void resolve_agent(struct auth_req *ar);

/* The credential is known (cached or just looked up): check it and go on. */
static void authorized(struct auth_req *ar)
{
    if (ar->cred.failure >= 0) {
        refuse(ar, (enum ibex_auth_failure)ar->cred.failure);
        return;
    }
    const struct ibex_principal *p = &ar->cred.principal;
    if (p->expires_at_ms && (int64_t)ibex_clock_wall_ms() >= p->expires_at_ms) {
        refuse(ar, IBEX_AUTH_TOKEN_EXPIRED);
        return;
    }
    if (!ibex_scopes_allow(p->scopes, ar->scope)) {
        refuse(ar, IBEX_AUTH_INSUFFICIENT_SCOPE);
        return;
    }
    if (ar->want_agent) {
        resolve_agent(ar);
        return;
    }
    struct ibex_agent_ref none = {NULL, ""};
    ar->then(ar->w, ar->req, p, &none, ar->data);
}

static void cache_cred(struct auth_req *ar)
{
    struct ibex_auth *a = auth_of(ar);
    if (ar->cred.failure == IBEX_AUTH_UNAVAILABLE)
        return;
    int64_t now = ibex_clock_wall_ms();
    int64_t until =
        now + (ar->cred.failure == IBEX_AUTH_INVALID_TOKEN ? NEGATIVE_TTL_MS : a->cache_ttl_ms);
    int64_t exp = ar->cred.principal.expires_at_ms;
    if (ar->cred.failure < 0 && exp && exp < until)
        until = exp;
    ibex_lru_put(ar->w->auth_caches.credentials, ar->digest, &ar->cred, until, ar->epoch);
}

/* A job finished: finish the request when the client left meanwhile. Returns true then. */
static bool gone(struct auth_req *ar)
{
    if (!ar->aborted)
        return false;
    ibex_res_stream_end(ar->req);
    return true;
}

static void abort_mark(struct ibex_req *req);

static void start_job(struct auth_req *ar, ibex_store_job_run_fn run, ibex_store_job_done_fn done)
{
    ar->job.run = run;
    ar->job.done = done;
    ar->job.data = ar;
    ar->req->on_abort = abort_mark;
    if (ibex_store_pool_submit(ibex_req_loop(ar->req), auth_of(ar)->pool, &ar->job) != 0) {
        ar->req->on_abort = NULL;
        ar->cred.failure = IBEX_AUTH_UNAVAILABLE;
        refuse(ar, IBEX_AUTH_UNAVAILABLE);
    }
}

static void abort_mark(struct ibex_req *req)
{
    struct ibex_req_info *info = req->user;
    ((struct auth_req *)info->auth)->aborted = true;
}

/* on a pool thread */
static int run_key_lookup(struct ibex_store_job *job, struct ibex_store *s)
{
    struct auth_req *ar = job->data;
    enum ibex_key_state state;
    int rc = ibex_key_authenticate(s, ar->token, ar->token_len, ibex_clock_wall_ms(), &state,
                                   &ar->cred.principal);
    if (rc)
        return rc;
    ar->cred.failure = state == IBEX_KEY_VALID     ? -1
                       : state == IBEX_KEY_EXPIRED ? IBEX_AUTH_TOKEN_EXPIRED
                       : state == IBEX_KEY_REVOKED ? IBEX_AUTH_TOKEN_REVOKED
                                                   : IBEX_AUTH_INVALID_TOKEN;
    return 0;
}

/* on a pool thread: the verifier may fetch the JWKS; then the token's tenant must be live */
static int run_jwt_verify(struct ibex_store_job *job, struct ibex_store *s)
{
    struct auth_req *ar = job->data;
    int rc = ibex_jwt_verify(auth_of(ar)->jwt, ar->token, ar->token_len, ibex_clock_wall_ms(),
                             &ar->cred.principal);
    ar->cred.failure = rc == 0                       ? -1
                       : rc == IBEX_EJWT_EXPIRED     ? IBEX_AUTH_TOKEN_EXPIRED
                       : rc == IBEX_EJWT_UNAVAILABLE ? IBEX_AUTH_UNAVAILABLE
                                                     : IBEX_AUTH_INVALID_TOKEN;
    if (rc != 0)
        return 0;
    enum ibex_key_state state;
    if ((rc = ibex_tenant_state(s, ar->cred.principal.tenant_id, &state)) != 0)
        return rc;
    if (state != IBEX_KEY_VALID)
        ar->cred.failure =
            state == IBEX_KEY_REVOKED ? IBEX_AUTH_TOKEN_REVOKED : IBEX_AUTH_INVALID_TOKEN;
    return 0;
}

static void lookup_done(struct ibex_store_job *job, int rc)
{
    struct auth_req *ar = job->data;
    ar->req->on_abort = NULL;
    if (gone(ar))
        return;
    if (rc) {
        ar->cred.failure = IBEX_AUTH_UNAVAILABLE;
        refuse(ar, IBEX_AUTH_UNAVAILABLE);
        return;
    }
    cache_cred(ar);
    authorized(ar);
}

static bool looks_like_jwt(const char *t, size_t len)
{
    size_t dots = 0;
    for (size_t i = 0; i < len; i++)
        dots += t[i] == '.';
    return dots == 2;
}

static void authenticate(struct auth_req *ar)
{
    struct ibex_auth *a = auth_of(ar);
    struct ibex_req *req = ar->req;
    ar->cred.failure = -1;
    struct ibex_str h = ibex_req_header(req, "authorization");
    bool bare = false; /* the token alone, without "Bearer " */
    if ((h.p == NULL || h.len == 0) && ((struct ibex_req_info *)req->user)->api_key_header) {
        h = ibex_req_header(req, "x-api-key"); /* how Anthropic's clients send a key */
        bare = true;
    }
    if (h.p == NULL || h.len == 0) {
        if (a->modes & IBEX_AUTH_NONE) {
            ar->cred.principal.kind = IBEX_PRINCIPAL_NONE;
            ar->cred.principal.scopes = IBEX_SCOPE_ALL;
            memcpy(ar->cred.principal.tenant_id, a->none_tenant, sizeof(a->none_tenant));
            snprintf(ar->cred.principal.subject, sizeof(ar->cred.principal.subject), "none");
            authorized(ar);
            return;
        }
        refuse(ar, IBEX_AUTH_MISSING_TOKEN);
        return;
    }
    if (!bare && (h.len < 7 || strncasecmp(h.p, "Bearer ", 7) != 0)) {
        refuse(ar, IBEX_AUTH_MISSING_TOKEN);
        return;
    }
    struct ibex_str tok = ibex_str_trim(bare ? h : (struct ibex_str){h.p + 7, h.len - 7});
    if (tok.len == 0) {
        refuse(ar, IBEX_AUTH_MISSING_TOKEN);
        return;
    }
    if (tok.len > MAX_TOKEN_LEN) {
        refuse(ar, IBEX_AUTH_INVALID_TOKEN);
        return;
    }
    ar->token = tok.p;
    ar->token_len = tok.len;
    ibex_sha256(tok.p, tok.len, ar->digest);
    ar->epoch = atomic_load_explicit(&a->epoch, memory_order_acquire);

    const struct cred *hit =
        ibex_lru_get(ar->w->auth_caches.credentials, ar->digest, ibex_clock_wall_ms(), ar->epoch);
    ibex_metrics_auth_cache(ar->w->metrics, hit != NULL);
    if (hit) {
        ar->cred = *hit;
        authorized(ar);
        return;
    }
    for (size_t i = 0; i < a->nstatics; i++) {
        if (ibex_const_time_eq(a->statics[i].digest, ar->digest, IBEX_LRU_KEY_LEN)) {
            ar->cred.principal = a->statics[i].principal;
            cache_cred(ar);
            authorized(ar);
            return;
        }
    }
    if ((a->modes & IBEX_AUTH_KEYS) && ibex_key_well_formed(tok.p, tok.len)) {
        start_job(ar, run_key_lookup, lookup_done);
        return;
    }
    if ((a->modes & IBEX_AUTH_JWT) && looks_like_jwt(tok.p, tok.len)) {
        start_job(ar, run_jwt_verify, lookup_done);
        return;
    }
    ar->cred.failure = IBEX_AUTH_INVALID_TOKEN;
    cache_cred(ar);
    authorized(ar);
}

/* ---- agents ---- */

static void agent_error(struct auth_req *ar, int status, const char *code, const char *message,
                        const char *field_errors)
{
    set_code(ar->req, code);
    ibex_res_error(ar->req, status, code, message, field_errors ? "X-IBEX-Agent-ID" : NULL,
                   field_errors, NULL);
}

static void agent_not_found(struct auth_req *ar)
{
    agent_error(ar, 404, "AGENT_NOT_FOUND", "no such agent", NULL);
}

static void agent_ready(struct auth_req *ar, const char *directive)
{
    struct ibex_agent_ref ref = {ar->agent_id[0] ? ar->agent_id : NULL, directive ? directive : ""};
    ar->then(ar->w, ar->req, &ar->cred.principal, &ref, ar->data);
}

/* on a pool thread */
static int run_agent_lookup(struct ibex_store_job *job, struct ibex_store *s)
{
    struct auth_req *ar = job->data;
    bool foreign = false;
    int rc = ibex_agent_lookup(s, ar->cred.principal.tenant_id, ar->agent_id, &ar->agent_found,
                               &foreign, &ar->agent_info);
    if (rc == 0 && foreign)
        ibex_audit_foreign(s, ar->cred.principal.tenant_id, ar->cred.principal.subject,
                           ar->req->request_id, "agent", ar->agent_id);
    return rc;
}

static void agent_lookup_done(struct ibex_store_job *job, int rc)
{
    struct auth_req *ar = job->data;
    ar->req->on_abort = NULL;
    if (gone(ar)) {
        free(ar->agent_info.directive);
        return;
    }
    if (rc) {
        ar->cred.failure = IBEX_AUTH_UNAVAILABLE;
        refuse(ar, IBEX_AUTH_UNAVAILABLE);
        return;
    }
    struct ibex_auth *a = auth_of(ar);
    struct agent_entry e = {ar->agent_found, ar->agent_info.directive};
    /* the cache owns the directive from here */
    ibex_lru_put(ar->w->auth_caches.agents, ar->agent_digest, &e,
                 ibex_clock_wall_ms() + (e.found ? a->cache_ttl_ms : NEGATIVE_TTL_MS), ar->epoch);
    if (!e.found) {
        agent_not_found(ar);
        return;
    }
    const struct agent_entry *cached =
        ibex_lru_get(ar->w->auth_caches.agents, ar->agent_digest, ibex_clock_wall_ms(), ar->epoch);
    agent_ready(ar, cached ? cached->directive : "");
}

static void resolve_agent(struct auth_req *ar)
{
    struct ibex_auth *a = auth_of(ar);
    const struct ibex_principal *p = &ar->cred.principal;
    struct ibex_str h = ibex_req_header(ar->req, "x-ibex-agent-id");
    if (h.p == NULL) {
        if (p->nagents || a->agent_required) {
            agent_error(ar, 400, "AGENT_REQUIRED",
                        "this credential must name its agent in X-IBEX-Agent-ID", NULL);
            return;
        }
        agent_ready(ar, NULL);
        return;
    }
    h = ibex_str_trim(h);
    if (!ibex_id_is_uuid(h.p, h.len)) {
        agent_error(ar, 400, "VALIDATION_ERROR", "X-IBEX-Agent-ID must be a UUID",
                    "[{\"field\":\"X-IBEX-Agent-ID\",\"message\":\"must be a UUID\"}]");
        return;
    }
    for (size_t i = 0; i < IBEX_ID_LEN; i++)
        ar->agent_id[i] = (char)(h.p[i] >= 'A' && h.p[i] <= 'F' ? h.p[i] + 32 : h.p[i]);
    ar->agent_id[IBEX_ID_LEN] = '\0';
    if (p->nagents) {
        bool allowed = false;
        for (size_t i = 0; i < p->nagents && !allowed; i++)
            allowed = strcmp(p->agents[i], ar->agent_id) == 0;
        if (!allowed) {
            agent_error(ar, 403, "AGENT_NOT_ALLOWED", "this credential may not act as this agent",
                        NULL);
            return;
        }
    }
    char key[2 * IBEX_ID_LEN + 2];
    snprintf(key, sizeof(key), "%s:%s", p->tenant_id, ar->agent_id);
    ibex_sha256(key, strlen(key), ar->agent_digest);
    ar->epoch = atomic_load_explicit(&a->epoch, memory_order_acquire);
    const struct agent_entry *hit =
        ibex_lru_get(ar->w->auth_caches.agents, ar->agent_digest, ibex_clock_wall_ms(), ar->epoch);
    if (hit) {
        if (!hit->found)
            agent_not_found(ar);
        else
            agent_ready(ar, hit->directive);
        return;
    }
    start_job(ar, run_agent_lookup, agent_lookup_done);
}

/* ---- entry points ---- */

static void start(struct ibex_worker *w, struct ibex_req *req, uint32_t scope, bool want_agent,
                  ibex_auth_then_fn then, void *data)
{
    struct auth_req *ar = ibex_arena_calloc(req->arena, sizeof(*ar));
    ar->w = w;
    ar->req = req;
    ar->scope = scope;
    ar->want_agent = want_agent;
    ar->then = then;
    ar->data = data;
    ((struct ibex_req_info *)req->user)->auth = ar;
    authenticate(ar);
}

void ibex_auth_request(struct ibex_worker *w, struct ibex_req *req, uint32_t scope,
                       ibex_auth_then_fn then, void *data)
{
    start(w, req, scope, false, then, data);
}

void ibex_auth_request_agent(struct ibex_worker *w, struct ibex_req *req, uint32_t scope,
                             ibex_auth_then_fn then, void *data)
{
    start(w, req, scope, true, then, data);
}
