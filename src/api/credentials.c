/* Provider credentials over the control plane (credentials.h): tenant-filtered SQL on table
 * credentials, visibility per subject, sealing with the vault, audit events, and the validation
 * probe run on the worker's loop.
 * Invariants: a secret from a request is sealed before anything is stored and never written to
 * out, an audit detail, a log line or an error message; the plaintext of a stored secret exists
 * only for a validation, in the probe's header line, wiped as soon as the transport has its
 * copy; a credential the actor may not see answers exactly like an unknown id. A change locks its
 * row first (an UPDATE that changes nothing), so two changes never start from the same state. */
#include "credentials.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/credential_cache.h"
#include "../auth/principal.h"
#include "../core/alloc.h"
#include "../core/clock.h"

#define NAME_MAX_LEN 200
#define PROBE_TIMEOUT_MS 5000

static const char *const states[] = {"active", "inactive", "deleted"};
#define NSTATES (sizeof(states) / sizeof(states[0]))

static bool is_admin(const struct ibex_actor *a)
{
    return ibex_scopes_allow(a->scopes, IBEX_SCOPE_CREDENTIALS_ADMIN);
}

static const char *subject_of(const struct ibex_actor *a)
{
    return a->subject ? a->subject : "";
}

int ibex_credentials_disabled(struct ibex_api_result *r)
{
    return ibex_api_fail(r, 503, "CREDENTIALS_DISABLED", NULL,
                         "provider credentials are disabled: no master key is configured; set "
                         "IBEX_MASTER_KEY (openssl rand -hex 32) or master_key_file and restart");
}

/* ---- query ---- */

static int cred_param(void *data, struct ibex_str k, struct ibex_str v, struct ibex_api_result *r)
{
    struct ibex_credentials_query *q = data;
    if (ibex_str_eq_cstr(k, "state"))
        return ibex_api_query_enum(v, "state", states, NSTATES, q->state, sizeof(q->state),
                                   "must be active, inactive or deleted", r);
    if (ibex_str_eq_cstr(k, "provider"))
        return ibex_api_query_text(v, "provider", IBEX_CREDENTIAL_PROVIDER_MAX, q->provider, r);
    return 0;
}

int ibex_credentials_query_parse(struct ibex_str query, struct ibex_credentials_query *q,
                                 struct ibex_api_result *r)
{
    memset(q, 0, sizeof(*q));
    return ibex_api_query_parse(query, &q->page, &q->page_size, cred_param, q, r);
}

/* ---- rows ---- */

#define CRED_COLS                                                                                  \
    "id, tenant_id, subject, provider, name, last4, is_default, state, created_at, updated_at, "   \
    "deleted_at"

static int row_credential(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    bool tenant_wide = c[2].type != IBEX_STORE_TEXT;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_col(b, "id", &c[0]);
    ibex_json_put_cstr(b, "object", "credential");
    ibex_json_put_col(b, "tenant_id", &c[1]);
    ibex_json_put_cstr(b, "scope", tenant_wide ? "tenant" : "user");
    ibex_json_put_col(b, "subject", &c[2]);
    ibex_json_put_col(b, "provider", &c[3]);
    ibex_json_put_col(b, "name", &c[4]);
    ibex_json_put_col(b, "secret_last4", &c[5]);
    ibex_json_put_key(b, "is_default");
    ibex_buf_append_cstr(b, ibex_col_int(&c[6]) ? "true" : "false");
    ibex_json_put_col(b, "state", &c[7]);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[8]));
    ibex_json_put_time(b, "updated_at", ibex_col_int(&c[9]));
    ibex_json_put_time(b, "deleted_at", ibex_col_int(&c[10]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

/* A row as the operations need it: who owns it, its state, and its answer. */
struct cred {
    bool found;
    bool tenant_wide;
    bool is_default;
    char subject[IBEX_SUBJECT_MAX + 1];
    char provider[IBEX_CREDENTIAL_PROVIDER_MAX + 1];
    char state[16];
    struct ibex_buf json;
    /* with SEALED: what validation opens */
    int64_t version;
    char key_id[IBEX_VAULT_KEY_ID_LEN + 1];
    uint8_t nonce[IBEX_VAULT_NONCE_LEN];
    size_t nonce_len;
    uint8_t *ct;
    size_t ct_len;
};

static void cred_init(struct cred *c)
{
    memset(c, 0, sizeof(*c));
    ibex_buf_init(&c->json);
}

static void cred_dispose(struct cred *c)
{
    ibex_buf_dispose(&c->json);
    free(c->ct);
}

static int row_cred(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct cred *x = data;
    x->found = true;
    x->tenant_wide = c[2].type != IBEX_STORE_TEXT;
    ibex_col_text(&c[2], x->subject, sizeof(x->subject));
    ibex_col_text(&c[3], x->provider, sizeof(x->provider));
    x->is_default = ibex_col_int(&c[6]) != 0;
    ibex_col_text(&c[7], x->state, sizeof(x->state));
    ibex_buf_reset(&x->json);
    struct ibex_api_list l = {&x->json, 0};
    row_credential(&l, c, ncols);
    if (ncols >= 15) {
        x->version = ibex_col_int(&c[11]);
        ibex_col_text(&c[12], x->key_id, sizeof(x->key_id));
        x->nonce_len = 0;
        if (c[13].type == IBEX_STORE_BLOB && c[13].len == IBEX_VAULT_NONCE_LEN) {
            memcpy(x->nonce, c[13].p, IBEX_VAULT_NONCE_LEN);
            x->nonce_len = IBEX_VAULT_NONCE_LEN;
        }
        free(x->ct);
        x->ct = NULL;
        x->ct_len = 0;
        if (c[14].type == IBEX_STORE_BLOB && c[14].len) {
            x->ct = ibex_xmalloc(c[14].len);
            memcpy(x->ct, c[14].p, c[14].len);
            x->ct_len = c[14].len;
        }
    }
    return 0;
}

#define SEALED ", version, key_id, nonce, ciphertext"

/* Reads credential id of the actor's tenant (sealed: with what opens it). */
static int fetch(struct ibex_store *s, const struct ibex_actor *a, const char *id, bool sealed,
                 struct cred *c)
{
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    return ibex_store_exec(
        s,
        sealed ? "SELECT " CRED_COLS SEALED " FROM credentials WHERE id = $1 AND tenant_id = $2"
               : "SELECT " CRED_COLS " FROM credentials WHERE id = $1 AND tenant_id = $2",
        p, 2, row_cred, c);
}

/* Locks credential id of the actor's tenant until the transaction ends, and reads it. */
static int lock(struct ibex_store *s, const struct ibex_actor *a, const char *id, struct cred *c)
{
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    return ibex_store_exec(s,
                           "UPDATE credentials SET version = version WHERE id = $1 AND tenant_id = "
                           "$2 RETURNING " CRED_COLS,
                           p, 2, row_cred, c);
}

/* Whether the actor may see c: its own, or a tenant-wide one with credentials:admin. */
static bool visible(const struct ibex_actor *a, const struct cred *c)
{
    if (!c->found)
        return false;
    if (c->tenant_wide)
        return is_admin(a);
    return strcmp(c->subject, subject_of(a)) == 0;
}

static int row_tenant(void *data, const struct ibex_store_value *c, size_t ncols)
{
    ibex_col_text(&c[0], data, IBEX_UUID_LEN + 1);
    return 0;
}

/* The one answer for an id the actor cannot see; an id of another tenant goes to the
 * operator's audit trail. */
static int not_found(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                     struct ibex_api_result *r)
{
    char tenant[IBEX_UUID_LEN + 1] = "";
    struct ibex_store_value p[] = {ibex_store_text(id)};
    ibex_store_exec(s, "SELECT tenant_id FROM credentials WHERE id = $1", p, 1, row_tenant, tenant);
    if (tenant[0] && strcmp(tenant, a->tenant_id) != 0)
        ibex_audit_foreign(s, a->tenant_id, a->subject, a->request_id, "credential", id);
    return ibex_api_fail(r, 404, "CREDENTIAL_NOT_FOUND", "id", "no such credential");
}

static void audit_detail(struct ibex_buf *d, const struct cred *c, const char *extra)
{
    ibex_buf_append_cstr(d, "{\"provider\":");
    ibex_buf_append_json_str(d, c->provider, strlen(c->provider));
    ibex_buf_append_cstr(d, c->tenant_wide ? ",\"scope\":\"tenant\"" : ",\"scope\":\"user\"");
    if (extra)
        ibex_buf_append_cstr(d, extra);
    ibex_buf_append_cstr(d, "}");
}

static int audit(struct ibex_store *s, const struct ibex_actor *a, const char *action,
                 const char *id, const struct cred *c, const char *extra)
{
    struct ibex_buf d;
    ibex_buf_init(&d);
    audit_detail(&d, c, extra);
    int rc = ibex_audit(s, a, a->tenant_id, action, id, d.p);
    ibex_buf_dispose(&d);
    return rc;
}

/* Commits (or rolls back after a failure); returns the outcome. */
static int finish(struct ibex_store *s, int rc)
{
    if (rc) {
        ibex_store_rollback(s);
        return rc;
    }
    return ibex_store_commit(s);
}

/* ---- input ---- */

static const struct ibex_provider_config *provider_of(const struct ibex_credentials_env *env,
                                                      const char *name)
{
    for (size_t i = 0; i < env->nproviders; i++)
        if (strcmp(env->providers[i].name, name) == 0)
            return &env->providers[i];
    return NULL;
}

/* "secret": it goes into an HTTP header line, so printable ASCII without spaces (no NUL, CR or
 * LF either: the JSON length is checked, not strlen), 8-4096 bytes. *secret NULL when absent. */
static int get_secret(json_object *body, bool required, const char **secret,
                      struct ibex_api_result *r)
{
    if (ibex_api_get_string(body, "secret", required, IBEX_CREDENTIAL_SECRET_MAX, secret, r))
        return r->status;
    if (*secret == NULL)
        return 0;
    json_object *v = NULL;
    json_object_object_get_ex(body, "secret", &v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (len < IBEX_CREDENTIAL_SECRET_MIN)
        return ibex_api_invalid(r, "secret", "must be at least 8 characters");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)(*secret)[i] < 0x21 || (unsigned char)(*secret)[i] > 0x7e)
            return ibex_api_invalid(r, "secret",
                                    "must be printable ASCII characters without spaces");
    return 0;
}

static int get_name(json_object *body, bool required, const char **name, struct ibex_api_result *r)
{
    if (ibex_api_get_string(body, "name", required, NAME_MAX_LEN, name, r))
        return r->status;
    if (*name && (*name)[0] == '\0')
        return ibex_api_invalid(r, "name", "must not be empty");
    return 0;
}

void ibex_credentials_body_wipe(json_object *body)
{
    json_object *v = NULL;
    if (body && json_object_is_type(body, json_type_object) &&
        json_object_object_get_ex(body, "secret", &v) && v &&
        json_object_is_type(v, json_type_string))
        OPENSSL_cleanse((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

/* ---- operations ---- */

static int answer(struct ibex_store *s, const struct ibex_actor *a, const char *id, int status,
                  struct ibex_buf *out, struct ibex_api_result *r)
{
    struct cred c;
    cred_init(&c);
    int rc = fetch(s, a, id, false, &c);
    if (rc == 0)
        ibex_buf_append(out, c.json.p, c.json.len);
    cred_dispose(&c);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, status);
}

int ibex_credentials_create(struct ibex_store *s, const struct ibex_credentials_env *env,
                            const struct ibex_actor *a, json_object *body, struct ibex_buf *out,
                            struct ibex_api_result *r)
{
    const char *provider, *name, *secret, *scope;
    if (ibex_api_need_tenant(a, r))
        return r->status;
    if (env->vault == NULL)
        return ibex_credentials_disabled(r);
    if (ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "provider", true, IBEX_CREDENTIAL_PROVIDER_MAX, &provider, r) ||
        get_name(body, true, &name, r) || get_secret(body, true, &secret, r) ||
        ibex_api_get_string(body, "scope", false, 16, &scope, r))
        return r->status;
    bool tenant_wide = scope && strcmp(scope, "tenant") == 0;
    if (scope && !tenant_wide && strcmp(scope, "user") != 0)
        return ibex_api_invalid(r, "scope", "must be user or tenant");
    if (tenant_wide && !is_admin(a))
        return ibex_api_fail(r, 403, "INSUFFICIENT_SCOPE", "scope",
                             "a tenant-wide credential needs scope 'credentials:admin'");
    const struct ibex_provider_config *pc = provider_of(env, provider);
    if (pc == NULL || pc->type == IBEX_PROVIDER_MOCK)
        return ibex_api_fail(r, 422, "PROVIDER_NOT_CONFIGURED", "provider",
                             pc ? "provider '%s' takes no credential"
                                : "provider '%s' is not configured on this gateway",
                             provider);
    if (!tenant_wide && subject_of(a)[0] == '\0')
        return ibex_api_fail(r, 403, "INSUFFICIENT_SCOPE", "scope",
                             "this credential has no subject to own a credential: use scope "
                             "'tenant'");

    /* UUIDv7: lists break created_at ties by id, newest first, like sessions and tasks */
    char id[IBEX_UUID_LEN + 1];
    ibex_id_uuid7(ibex_clock_wall_ms(), id);
    size_t len = strlen(secret);
    struct ibex_sealed sealed;
    if (ibex_credential_seal(env->vault, a->tenant_id, id, secret, len, &sealed) != 0)
        return ibex_api_fail(r, 500, "CREDENTIAL_UNREADABLE", NULL,
                             "the secret could not be sealed");
    char last4[5];
    memcpy(last4, secret + len - 4, 4);
    last4[4] = '\0';
    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct ibex_store_value p[] = {ibex_store_text(id),
                                   ibex_store_text(a->tenant_id),
                                   ibex_store_text(tenant_wide ? NULL : subject_of(a)),
                                   ibex_store_text(provider),
                                   ibex_store_text(name),
                                   ibex_store_blob(sealed.ct, sealed.ct_len),
                                   ibex_store_blob(sealed.nonce, IBEX_VAULT_NONCE_LEN),
                                   ibex_store_text(sealed.key_id),
                                   ibex_store_text(last4),
                                   ibex_store_int(now)};
    struct cred c = {.tenant_wide = tenant_wide};
    snprintf(c.provider, sizeof(c.provider), "%s", provider);
    int rc = ibex_store_begin(s);
    if (rc == 0) {
        rc = ibex_store_exec(s,
                             "INSERT INTO credentials (id, tenant_id, subject, provider, name, "
                             "ciphertext, nonce, key_id, last4, is_default, state, version, "
                             "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                             "0, 'active', 1, $10, $10)",
                             p, 10, NULL, NULL);
        if (rc == 0)
            rc = audit(s, a, "credential.created", id, &c, NULL);
        rc = finish(s, rc);
    }
    OPENSSL_cleanse(last4, sizeof(last4));
    ibex_sealed_dispose(&sealed);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return answer(s, a, id, 201, out, r);
}

int ibex_credentials_list(struct ibex_store *s, const struct ibex_actor *a,
                          const struct ibex_credentials_query *q, struct ibex_buf *out,
                          struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    struct ibex_store_value p[4] = {ibex_store_text(a->tenant_id), ibex_store_text(subject_of(a))};
    size_t n = 2;
    struct ibex_buf where;
    ibex_buf_init(&where);
    /* the actor's own, and the tenant-wide ones for an admin (credentials_owner serves both) */
    ibex_buf_append_cstr(&where, is_admin(a) ? " FROM credentials WHERE tenant_id = $1 AND "
                                               "(subject IS NULL OR subject = $2)"
                                             : " FROM credentials WHERE tenant_id = $1 AND "
                                               "subject = $2");
    if (q->provider[0]) {
        p[n++] = ibex_store_text(q->provider);
        ibex_buf_appendf(&where, " AND provider = $%zu", n);
    }
    if (q->state[0]) {
        p[n++] = ibex_store_text(q->state);
        ibex_buf_appendf(&where, " AND state = $%zu", n);
    } else {
        ibex_buf_append_cstr(&where, " AND state <> 'deleted'");
    }
    ibex_api_page_rows(s, CRED_COLS, where.p, "created_at DESC, id DESC", p, n, q->page,
                       q->page_size, "credentials", row_credential, out, r);
    ibex_buf_dispose(&where);
    return r->status;
}

int ibex_credentials_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                         struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    struct cred c;
    cred_init(&c);
    int rc = fetch(s, a, id, false, &c);
    if (rc)
        ibex_api_store_failed(s, r, rc);
    else if (!visible(a, &c))
        not_found(s, a, id, r);
    else {
        ibex_buf_append(out, c.json.p, c.json.len);
        ibex_api_ok(r, 200);
    }
    cred_dispose(&c);
    return r->status;
}

int ibex_credentials_update(struct ibex_store *s, const struct ibex_credentials_env *env,
                            const struct ibex_actor *a, const char *id, json_object *body,
                            struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *name, *secret, *state;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    if (env->vault == NULL)
        return ibex_credentials_disabled(r);
    if (ibex_api_check_body(body, r) || get_name(body, false, &name, r) ||
        get_secret(body, false, &secret, r) ||
        ibex_api_get_string(body, "state", false, 16, &state, r))
        return r->status;
    if (state && strcmp(state, "active") != 0 && strcmp(state, "inactive") != 0)
        return ibex_api_invalid(r, "state",
                                "must be active or inactive (DELETE removes a credential)");
    if (!name && !secret && !state)
        return ibex_api_fail(r, 400, "VALIDATION_ERROR", NULL,
                             "nothing to update: give name, secret or state");

    struct cred c;
    cred_init(&c);
    struct ibex_sealed sealed = {0};
    char last4[5] = "";
    int rc = ibex_store_begin(s);
    if (rc) {
        ibex_api_store_failed(s, r, rc);
        goto out;
    }
    if ((rc = lock(s, a, id, &c)) != 0)
        goto failed;
    if (!visible(a, &c)) {
        ibex_store_rollback(s);
        not_found(s, a, id, r);
        goto out;
    }
    if (strcmp(c.state, "deleted") == 0) {
        ibex_store_rollback(s);
        ibex_api_fail(r, 409, "CREDENTIAL_NOT_ACTIVE", "id",
                      "the credential is deleted: create a new one");
        goto out;
    }
    if (secret) {
        size_t len = strlen(secret);
        if (ibex_credential_seal(env->vault, a->tenant_id, id, secret, len, &sealed) != 0) {
            ibex_store_rollback(s);
            ibex_api_fail(r, 500, "CREDENTIAL_UNREADABLE", NULL, "the secret could not be sealed");
            goto out;
        }
        memcpy(last4, secret + len - 4, 4);
        last4[4] = '\0';
    }
    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct ibex_store_value p[] = {
        ibex_store_text(name),
        ibex_store_text(state),
        secret ? ibex_store_blob(sealed.ct, sealed.ct_len) : ibex_store_null(),
        secret ? ibex_store_blob(sealed.nonce, IBEX_VAULT_NONCE_LEN) : ibex_store_null(),
        ibex_store_text(secret ? sealed.key_id : NULL),
        ibex_store_text(secret ? last4 : NULL),
        ibex_store_int(now),
        ibex_store_text(id),
        ibex_store_text(a->tenant_id)};
    rc = ibex_store_exec(s,
                         "UPDATE credentials SET name = COALESCE($1, name), state = COALESCE($2, "
                         "state), ciphertext = COALESCE($3, ciphertext), nonce = COALESCE($4, "
                         "nonce), key_id = COALESCE($5, key_id), last4 = COALESCE($6, last4), "
                         "version = version + 1, updated_at = $7 WHERE id = $8 AND tenant_id = $9",
                         p, 9, NULL, NULL);
    if (rc == 0) {
        /* which fields changed, never their values */
        char fields[64];
        snprintf(fields, sizeof(fields), ",\"fields\":[%s%s%s%s%s]", name ? "\"name\"" : "",
                 name && (secret || state) ? "," : "", secret ? "\"secret\"" : "",
                 secret && state ? "," : "", state ? "\"state\"" : "");
        rc = audit(s, a, "credential.updated", id, &c, fields);
    }
failed:
    if ((rc = finish(s, rc)) != 0) {
        ibex_api_store_failed(s, r, rc);
    } else {
        if (env->cache)
            ibex_credential_cache_drop(env->cache, a->tenant_id, id);
        answer(s, a, id, 200, out, r);
    }
out:
    OPENSSL_cleanse(last4, sizeof(last4));
    ibex_sealed_dispose(&sealed);
    cred_dispose(&c);
    return r->status;
}

int ibex_credentials_delete(struct ibex_store *s, const struct ibex_credentials_env *env,
                            const struct ibex_actor *a, const char *id, struct ibex_buf *out,
                            struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    struct cred c;
    cred_init(&c);
    int rc = ibex_store_begin(s);
    if (rc) {
        ibex_api_store_failed(s, r, rc);
        goto out;
    }
    if ((rc = lock(s, a, id, &c)) != 0)
        goto failed;
    if (!visible(a, &c)) {
        ibex_store_rollback(s);
        not_found(s, a, id, r);
        goto out;
    }
    if (strcmp(c.state, "deleted") == 0) { /* again: nothing changes */
        ibex_store_rollback(s);
        ibex_buf_append(out, c.json.p, c.json.len);
        ibex_api_ok(r, 200);
        goto out;
    }
    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct ibex_store_value p[] = {ibex_store_int(now), ibex_store_text(id),
                                   ibex_store_text(a->tenant_id)};
    rc = ibex_store_exec(s,
                         "UPDATE credentials SET state = 'deleted', ciphertext = NULL, nonce = "
                         "NULL, key_id = NULL, is_default = 0, version = version + 1, updated_at "
                         "= $1, deleted_at = $1 WHERE id = $2 AND tenant_id = $3",
                         p, 3, NULL, NULL);
    if (rc == 0)
        rc = audit(s, a, "credential.deleted", id, &c, NULL);
failed:
    if ((rc = finish(s, rc)) != 0) {
        ibex_api_store_failed(s, r, rc);
    } else {
        if (env && env->cache)
            ibex_credential_cache_drop(env->cache, a->tenant_id, id);
        answer(s, a, id, 200, out, r);
    }
out:
    cred_dispose(&c);
    return r->status;
}

int ibex_credentials_make_default(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                                  struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    struct cred c;
    cred_init(&c);
    int rc = fetch(s, a, id, false, &c);
    if (rc) {
        ibex_api_store_failed(s, r, rc);
        goto out;
    }
    if (!visible(a, &c)) {
        not_found(s, a, id, r);
        goto out;
    }
    /* The default's siblings (same tenant, provider and owner) are locked first, the row among
     * them, all in one statement: two concurrent changes of the default take turns instead of
     * both clearing the old one and then colliding on the unique index. */
    const char *owner = c.tenant_wide ? NULL : c.subject;
    struct ibex_store_value sib[] = {ibex_store_text(a->tenant_id), ibex_store_text(c.provider),
                                     ibex_store_text(owner)};
    const char *where = c.tenant_wide
                            ? " WHERE tenant_id = $1 AND provider = $2 AND subject IS NULL"
                            : " WHERE tenant_id = $1 AND provider = $2 AND subject = $3";
    size_t nsib = c.tenant_wide ? 2 : 3;
    char sql[256];
    if ((rc = ibex_store_begin(s)) != 0) {
        ibex_api_store_failed(s, r, rc);
        goto out;
    }
    snprintf(sql, sizeof(sql), "UPDATE credentials SET is_default = is_default%s", where);
    if ((rc = ibex_store_exec(s, sql, sib, nsib, NULL, NULL)) != 0 ||
        (rc = lock(s, a, id, &c)) != 0)
        goto failed;
    if (strcmp(c.state, "active") != 0) {
        ibex_store_rollback(s);
        ibex_api_fail(r, 409, "CREDENTIAL_NOT_ACTIVE", "id",
                      "the credential is %s: only an active credential can be the default",
                      c.state);
        goto out;
    }
    if (c.is_default) { /* already: nothing changes */
        ibex_store_rollback(s);
        ibex_buf_append(out, c.json.p, c.json.len);
        ibex_api_ok(r, 200);
        goto out;
    }
    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct ibex_store_value clr[4] = {sib[0], sib[1], sib[2]};
    clr[nsib] = ibex_store_int(now);
    snprintf(sql, sizeof(sql),
             "UPDATE credentials SET is_default = 0, version = version + 1, updated_at = $%zu%s "
             "AND is_default = 1",
             nsib + 1, where);
    rc = ibex_store_exec(s, sql, clr, nsib + 1, NULL, NULL);
    if (rc == 0) {
        struct ibex_store_value set[] = {ibex_store_int(now), ibex_store_text(id),
                                         ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             "UPDATE credentials SET is_default = 1, version = version + 1, "
                             "updated_at = $1 WHERE id = $2 AND tenant_id = $3",
                             set, 3, NULL, NULL);
    }
    if (rc == 0)
        rc = audit(s, a, "credential.defaulted", id, &c, NULL);
failed:
    if ((rc = finish(s, rc)) != 0)
        ibex_api_store_failed(s, r, rc);
    else
        answer(s, a, id, 200, out, r);
out:
    cred_dispose(&c);
    return r->status;
}

/* ---- validation ---- */

int ibex_credential_probe_build(struct ibex_credential_probe *p, enum ibex_provider_type type,
                                const char *base_url, const char *secret, size_t len)
{
    const char *path, *name, *prefix = "", *extra = NULL;
    switch (type) {
    case IBEX_PROVIDER_OPENAI:
        path = "/models", name = "Authorization", prefix = "Bearer ";
        break;
    case IBEX_PROVIDER_ANTHROPIC:
        path = "/v1/models", name = "x-api-key", extra = "anthropic-version: 2023-06-01";
        break;
    case IBEX_PROVIDER_GEMINI:
        path = "/v1beta/models", name = "x-goog-api-key";
        break;
    default:
        return -1;
    }
    size_t blen = strlen(base_url), plen = strlen(path);
    free(p->url);
    p->url = ibex_xmalloc(blen + plen + 1);
    memcpy(p->url, base_url, blen);
    memcpy(p->url + blen, path, plen + 1);
    /* exactly sized, so no reallocation leaves a copy of the secret behind */
    size_t nlen = strlen(name), xlen = strlen(prefix), alen = nlen + 2 + xlen + len;
    if (p->auth) {
        OPENSSL_cleanse(p->auth, strlen(p->auth));
        free(p->auth);
    }
    p->auth = ibex_xmalloc(alen + 1);
    memcpy(p->auth, name, nlen);
    memcpy(p->auth + nlen, ": ", 2);
    memcpy(p->auth + nlen + 2, prefix, xlen);
    memcpy(p->auth + nlen + 2 + xlen, secret, len);
    p->auth[alen] = '\0';
    p->headers[0] = p->auth;
    p->headers[1] = extra;
    p->headers[2] = NULL;
    return 0;
}

static void probe_wipe(struct ibex_credential_probe *p)
{
    if (p->auth) {
        OPENSSL_cleanse(p->auth, strlen(p->auth));
        free(p->auth);
        p->auth = NULL;
    }
    p->headers[0] = NULL;
}

void ibex_credential_probe_dispose(struct ibex_credential_probe *p)
{
    probe_wipe(p);
    free(p->url);
    p->url = NULL;
    p->ready = false;
}

int ibex_credentials_validate_prepare(struct ibex_store *s, const struct ibex_credentials_env *env,
                                      const struct ibex_actor *a, const char *id,
                                      struct ibex_credential_probe *p, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    if (env->vault == NULL)
        return ibex_credentials_disabled(r);
    struct cred c;
    cred_init(&c);
    struct ibex_secret *secret = NULL;
    int rc = fetch(s, a, id, true, &c);
    if (rc) {
        ibex_api_store_failed(s, r, rc);
        goto out;
    }
    if (!visible(a, &c)) {
        not_found(s, a, id, r);
        goto out;
    }
    if (strcmp(c.state, "active") != 0) {
        ibex_api_fail(r, 409, "CREDENTIAL_NOT_ACTIVE", "id",
                      "the credential is %s: it is not used, and is not validated", c.state);
        goto out;
    }
    const struct ibex_provider_config *pc = provider_of(env, c.provider);
    if (pc == NULL || pc->type == IBEX_PROVIDER_MOCK || pc->base_url == NULL) {
        ibex_api_fail(r, 422, "PROVIDER_NOT_CONFIGURED", "provider",
                      "provider '%s' is not configured on this gateway", c.provider);
        goto out;
    }
    struct ibex_credential_row row = {a->tenant_id, id,          c.version, c.key_id,
                                      c.nonce,      c.nonce_len, c.ct,      c.ct_len};
    rc = ibex_credential_open(env->vault, &row, &secret);
    if (rc == IBEX_EVAULT_NOKEY) {
        ibex_api_fail(r, 500, "CREDENTIAL_UNREADABLE", "id",
                      "the credential was encrypted under master key %s, which this instance "
                      "does not hold (master_key_previous_file)",
                      c.key_id);
        goto out;
    }
    if (rc) {
        ibex_api_fail(r, 500, "CREDENTIAL_UNREADABLE", "id",
                      "the credential does not decrypt under master key %s", c.key_id);
        goto out;
    }
    ibex_credential_probe_build(p, pc->type, pc->base_url, secret->p, secret->len);
    snprintf(p->id, sizeof(p->id), "%s", id);
    snprintf(p->provider, sizeof(p->provider), "%s", c.provider);
    uint64_t connect = pc->timeouts.connect_ms && pc->timeouts.connect_ms < PROBE_TIMEOUT_MS
                           ? pc->timeouts.connect_ms
                           : PROBE_TIMEOUT_MS;
    p->timeouts = (struct ibex_upstream_timeouts){connect, PROBE_TIMEOUT_MS, PROBE_TIMEOUT_MS,
                                                  PROBE_TIMEOUT_MS, PROBE_TIMEOUT_MS};
    p->ready = true;
    ibex_api_ok(r, 200);
out:
    ibex_secret_release(secret);
    cred_dispose(&c);
    return r->status;
}

static void probe_headers(struct ibex_upstream_call *call, int status, void *data)
{
    ((struct ibex_credential_probe *)data)->status = status;
}

static int probe_data(struct ibex_upstream_call *call, const char *p, size_t len, void *data)
{
    return 0; /* the provider's body is never kept nor returned */
}

static void probe_done(struct ibex_upstream_call *call, enum ibex_upstream_result result,
                       void *data)
{
    struct ibex_credential_probe *p = data;
    p->call = NULL;
    p->result = result;
    if (result != IBEX_UPSTREAM_OK && p->status >= 200 && p->status < 300)
        p->status = 0; /* headers of a 2xx that did not complete are not a valid answer */
    p->done(p, p->data);
}

static const struct ibex_upstream_callbacks probe_callbacks = {probe_headers, probe_data,
                                                               probe_done};

int ibex_credential_probe_start(struct ibex_upstream *u, struct ibex_credential_probe *p,
                                void (*done)(struct ibex_credential_probe *p, void *data),
                                void *data)
{
    p->ready = false;
    p->done = done;
    p->data = data;
    p->status = 0;
    struct ibex_upstream_request req = {
        .url = p->url,
        .headers = p->headers,
        .body = NULL,
        .body_len = 0,
        .timeouts = p->timeouts,
        .streaming = false,
        .connect_only = false,
    };
    p->call = ibex_upstream_start(u, &req, &probe_callbacks, p);
    probe_wipe(p); /* the transport copied the headers */
    if (p->call == NULL) {
        p->result = IBEX_UPSTREAM_FAILED;
        return -1;
    }
    return 0;
}

void ibex_credential_probe_cancel(struct ibex_credential_probe *p)
{
    if (p->call) {
        ibex_upstream_cancel(p->call);
        p->call = NULL;
    }
}

int ibex_credentials_validate_finish(struct ibex_store *s, const struct ibex_actor *a,
                                     const struct ibex_credential_probe *p, struct ibex_buf *out,
                                     struct ibex_api_result *r)
{
    bool valid = p->status >= 200 && p->status < 300;
    int64_t now = (int64_t)ibex_clock_wall_ms();
    const char *error = p->status ? NULL : ibex_upstream_result_name(p->result);
    struct ibex_buf extra;
    ibex_buf_init(&extra);
    ibex_buf_appendf(&extra, ",\"valid\":%s,\"status\":", valid ? "true" : "false");
    if (p->status)
        ibex_buf_appendf(&extra, "%d", p->status);
    else
        ibex_buf_append_cstr(&extra, "null");
    /* the scope is not known here: the detail names the provider and the outcome */
    struct ibex_buf d;
    ibex_buf_init(&d);
    ibex_buf_append_cstr(&d, "{\"provider\":");
    ibex_buf_append_json_str(&d, p->provider, strlen(p->provider));
    ibex_buf_append(&d, extra.p, extra.len);
    ibex_buf_append_cstr(&d, "}");
    int rc = ibex_audit(s, a, a->tenant_id, "credential.validated", p->id, d.p);
    ibex_buf_dispose(&d);
    ibex_buf_dispose(&extra);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    ibex_buf_append_cstr(out, "{");
    ibex_json_put_cstr(out, "object", "credential.validation");
    ibex_json_put_cstr(out, "id", p->id);
    ibex_json_put_cstr(out, "provider", p->provider);
    ibex_json_put_key(out, "valid");
    ibex_buf_append_cstr(out, valid ? "true" : "false");
    ibex_json_put_key(out, "status");
    if (p->status)
        ibex_buf_appendf(out, "%d", p->status);
    else
        ibex_buf_append_cstr(out, "null");
    ibex_json_put_cstr(out, "error", error);
    ibex_json_put_time(out, "checked_at", now);
    ibex_buf_append_cstr(out, "}");
    return ibex_api_ok(r, 200);
}
