/* Identity administration: validation, tenant-filtered SQL and the JSON of docs/identity.md.
 *
 * Every statement on agents and api_keys carries `tenant_id = $n` when the actor has a tenant;
 * tenants are visible to the actor's own tenant and its children. Ids are generated here
 * (UUIDv4), times are unix milliseconds in the store and seconds in JSON. */
#include "identity.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "../core/id.h"

#define NAME_MAX_LEN 200
#define DIRECTIVE_MAX_LEN (32 * 1024)
#define ROLE_MAX_LEN 200

static const char bump_epoch_sql[] = "UPDATE identity_epoch SET epoch = epoch + 1 WHERE id = 1";
static const char read_epoch_sql[] = "SELECT epoch FROM identity_epoch WHERE id = 1";

/* ---- transactions ---- */

/* Ends a unit of work: on rc == 0 commits (reading the new epoch when bumped), else rolls back. */
static int finish(struct ibex_store *s, int rc, bool bumped, struct ibex_api_result *r)
{
    if (rc == 0 && bumped)
        rc = ibex_store_exec(s, read_epoch_sql, NULL, 0, ibex_row_int64, &r->epoch);
    if (rc == 0)
        rc = ibex_store_commit(s);
    else
        ibex_store_rollback(s);
    if (rc) {
        r->epoch = 0;
        return ibex_api_store_failed(s, r, rc);
    }
    return 0;
}

/* {"name": name} for an audit detail. */
static void name_detail(struct ibex_buf *b, const char *name)
{
    ibex_buf_append_cstr(b, "{\"name\":");
    ibex_buf_append_json_str(b, name, strlen(name));
    ibex_buf_append_cstr(b, "}");
}

/* ---- tenants ---- */

#define TENANT_COLS "id, name, metadata, parent_id, created_at, disabled_at"

static int row_tenant(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_str(b, "id", c[0].p, c[0].len);
    ibex_json_put_cstr(b, "object", "tenant");
    ibex_json_put_str(b, "name", c[1].p, c[1].len);
    char *meta = ibex_col_dup(&c[2]);
    ibex_json_put_raw(b, "metadata", meta);
    free(meta);
    ibex_json_put_str(b, "parent_id", c[3].type == IBEX_STORE_TEXT ? c[3].p : NULL, c[3].len);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[4]));
    ibex_json_put_time(b, "revoked_at", ibex_col_int(&c[5]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

/* Writes one tenant object visible to a (or nothing when it is not). */
static int tenant_object(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                         struct ibex_buf *out, size_t *found)
{
    struct ibex_api_list l = {out, 0};
    int rc;
    if (a->tenant_id) {
        struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             "SELECT " TENANT_COLS " FROM tenants WHERE id = $1 AND "
                             "(id = $2 OR parent_id = $2)",
                             p, 2, row_tenant, &l);
    } else {
        struct ibex_store_value p[] = {ibex_store_text(id)};
        rc = ibex_store_exec(s, "SELECT " TENANT_COLS " FROM tenants WHERE id = $1", p, 1,
                             row_tenant, &l);
    }
    *found = l.n;
    return rc;
}

static int insert_key(struct ibex_store *s, const char *tenant_id, const char *name,
                      const char *key, const char *scopes_json, const char *agents_json,
                      int64_t expires_ms, int64_t now, char id[IBEX_ID_LEN + 1]);
static void key_object(struct ibex_buf *b, const char *id, const char *tenant_id, const char *name,
                       const char *key, const char *scopes_json, const char *agents_json,
                       int64_t expires_ms, int64_t created_ms);

int ibex_tenant_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                       struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *name, *meta;
    if (ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "name", true, NAME_MAX_LEN, &name, r) ||
        ibex_api_get_metadata(body, &meta, r))
        return r->status;

    char id[IBEX_ID_LEN + 1], key_id[IBEX_ID_LEN + 1], key[IBEX_KEY_LEN + 1];
    ibex_id_uuid4(id);
    ibex_key_generate(key);
    int64_t now = ibex_clock_wall_ms();
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(name),
                                   ibex_store_text(meta), ibex_store_text(a->tenant_id),
                                   ibex_store_int(now)};
    struct ibex_buf detail;
    ibex_buf_init(&detail);
    name_detail(&detail, name);
    int rc = ibex_store_begin(s);
    if (rc == 0)
        rc = ibex_store_exec(s,
                             "INSERT INTO tenants (id, name, metadata, parent_id, created_at) "
                             "VALUES ($1, $2, $3, $4, $5)",
                             p, 5, NULL, NULL);
    if (rc == 0)
        rc = insert_key(s, id, "admin", key, "[\"admin\"]", NULL, 0, now, key_id);
    if (rc == 0)
        rc = ibex_audit(s, a, a->tenant_id ? a->tenant_id : id, "tenant.created", id, detail.p);
    ibex_buf_dispose(&detail);
    if (finish(s, rc, false, r))
        return r->status;

    ibex_buf_append_cstr(out, "{");
    ibex_json_put_cstr(out, "id", id);
    ibex_json_put_cstr(out, "object", "tenant");
    ibex_json_put_cstr(out, "name", name);
    ibex_json_put_raw(out, "metadata", meta);
    ibex_json_put_cstr(out, "parent_id", a->tenant_id);
    ibex_json_put_time(out, "created_at", now);
    ibex_json_put_time(out, "revoked_at", 0);
    ibex_json_put_key(out, "admin_key");
    key_object(out, key_id, id, "admin", key, "[\"admin\"]", NULL, 0, now);
    ibex_buf_append_cstr(out, "}");
    return ibex_api_ok(r, 201);
}

int ibex_tenant_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                     struct ibex_buf *out, struct ibex_api_result *r)
{
    struct ibex_api_list l;
    ibex_api_list_open(&l, out);
    int rc;
    if (a->tenant_id) {
        struct ibex_store_value p[] = {ibex_store_text(a->tenant_id), ibex_store_int(limit)};
        rc = ibex_store_exec(s,
                             "SELECT " TENANT_COLS " FROM tenants WHERE id = $1 OR parent_id = $1 "
                             "ORDER BY created_at DESC, id LIMIT $2",
                             p, 2, row_tenant, &l);
    } else {
        struct ibex_store_value p[] = {ibex_store_int(limit)};
        rc = ibex_store_exec(
            s, "SELECT " TENANT_COLS " FROM tenants ORDER BY created_at DESC, id LIMIT $1", p, 1,
            row_tenant, &l);
    }
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    ibex_api_list_close(&l);
    return ibex_api_ok(r, 200);
}

int ibex_tenant_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                    struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_check_id(id, r))
        return r->status;
    size_t found = 0;
    int rc = tenant_object(s, a, id, out, &found);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    if (!found)
        return ibex_api_not_found(s, a, "tenants", id, "tenant", "TENANT_NOT_FOUND", r);
    return ibex_api_ok(r, 200);
}

int ibex_tenant_revoke(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                       struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_check_id(id, r))
        return r->status;
    /* A tenant may revoke the tenants it created, never itself. */
    bool found = false;
    int rc = ibex_store_begin(s);
    if (rc == 0) {
        struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             a->tenant_id ? "SELECT id FROM tenants WHERE id = $1 AND "
                                            "parent_id = $2"
                                          : "SELECT id FROM tenants WHERE id = $1",
                             p, a->tenant_id ? 2 : 1, ibex_row_exists, &found);
    }
    if (rc == 0 && found) {
        struct ibex_store_value p[] = {ibex_store_int(ibex_clock_wall_ms()), ibex_store_text(id)};
        /* the tenant and every tenant below it: a revoked tenant cannot live on in a child */
        rc = ibex_store_exec(s,
                             "WITH RECURSIVE sub(id) AS (SELECT CAST($2 AS TEXT) UNION "
                             "SELECT t.id FROM tenants t JOIN sub ON t.parent_id = sub.id) "
                             "UPDATE tenants SET disabled_at = $1 WHERE id IN (SELECT id FROM sub) "
                             "AND disabled_at IS NULL",
                             p, 2, NULL, NULL);
        if (rc == 0)
            rc = ibex_store_exec(s, bump_epoch_sql, NULL, 0, NULL, NULL);
        if (rc == 0)
            rc = ibex_audit(s, a, a->tenant_id ? a->tenant_id : id, "tenant.revoked", id, NULL);
    }
    if (!found && rc == 0) {
        ibex_store_rollback(s);
        return ibex_api_not_found(s, a, "tenants", id, "tenant", "TENANT_NOT_FOUND", r);
    }
    if (finish(s, rc, true, r))
        return r->status;
    size_t n;
    if ((rc = tenant_object(s, a, id, out, &n)) != 0)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, 200);
}

/* ---- agents ---- */

#define AGENT_COLS                                                                                 \
    "id, tenant_id, name, directive, metadata, created_at, updated_at, disabled_at, role"

static int row_agent(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_str(b, "id", c[0].p, c[0].len);
    ibex_json_put_cstr(b, "object", "agent");
    ibex_json_put_str(b, "tenant_id", c[1].p, c[1].len);
    ibex_json_put_str(b, "name", c[2].p, c[2].len);
    ibex_json_put_str(b, "directive", c[3].p ? c[3].p : "", c[3].len);
    ibex_json_put_str(b, "role", c[8].type == IBEX_STORE_TEXT ? c[8].p : NULL, c[8].len);
    char *meta = ibex_col_dup(&c[4]);
    ibex_json_put_raw(b, "metadata", meta);
    free(meta);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[5]));
    ibex_json_put_time(b, "updated_at", ibex_col_int(&c[6]));
    ibex_json_put_time(b, "revoked_at", ibex_col_int(&c[7]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

static int agent_object(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                        struct ibex_buf *out, size_t *found)
{
    struct ibex_api_list l = {out, 0};
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    int rc =
        ibex_store_exec(s, "SELECT " AGENT_COLS " FROM agents WHERE id = $1 AND tenant_id = $2", p,
                        2, row_agent, &l);
    *found = l.n;
    return rc;
}

int ibex_agent_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                      const char *pinned, struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *name, *directive, *role, *meta;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "name", true, NAME_MAX_LEN, &name, r) ||
        ibex_api_get_string(body, "directive", false, DIRECTIVE_MAX_LEN, &directive, r) ||
        ibex_api_get_string(body, "role", false, ROLE_MAX_LEN, &role, r) ||
        ibex_api_get_metadata(body, &meta, r))
        return r->status;
    if (role && role[0] == '\0')
        return ibex_api_invalid(r, "role", "must not be empty (leave it out for no role)");
    char id[IBEX_ID_LEN + 1];
    if (pinned)
        snprintf(id, sizeof(id), "%s", pinned);
    else
        ibex_id_uuid4(id);
    int64_t now = ibex_clock_wall_ms();
    struct ibex_store_value p[] = {
        ibex_store_text(id),   ibex_store_text(a->tenant_id),
        ibex_store_text(name), ibex_store_text(directive ? directive : ""),
        ibex_store_text(meta), ibex_store_int(now),
        ibex_store_text(role)};
    struct ibex_buf detail;
    ibex_buf_init(&detail);
    name_detail(&detail, name);
    int rc = ibex_store_begin(s);
    if (rc == 0)
        rc = ibex_store_exec(s,
                             "INSERT INTO agents (id, tenant_id, name, directive, metadata, "
                             "created_at, role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                             p, 7, NULL, NULL);
    if (rc == 0)
        rc = ibex_audit(s, a, a->tenant_id, "agent.created", id, detail.p);
    ibex_buf_dispose(&detail);
    if (rc == IBEX_EDB && pinned) {
        ibex_store_rollback(s);
        return ibex_api_fail(r, 409, "AGENT_EXISTS", "id", "an agent with this id exists");
    }
    if (finish(s, rc, false, r))
        return r->status;
    size_t n;
    if ((rc = agent_object(s, a, id, out, &n)) != 0)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, 201);
}

int ibex_agent_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                    struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_rows(s, a,
                                "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = $1 "
                                "ORDER BY created_at DESC, id LIMIT $2",
                                row_agent, limit, out, r);
}

int ibex_agent_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                   struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_get(s, a, id, agent_object, "agents", "agent", "AGENT_NOT_FOUND", out,
                               r);
}

/* What a change of one tenant-owned object needs: its table, its kind for the 404 and the
 * fetch that writes its answer. */
struct kind {
    const char *table, *what, *code;
    ibex_api_fetch_fn fetch;
};

/* Runs an UPDATE on object id of the actor's tenant in one transaction with its audit event
 * and an epoch bump, then answers the object. */
static int tenant_object_change(struct ibex_store *s, const struct ibex_actor *a,
                                const struct kind *k, const char *id, const char *sql,
                                struct ibex_store_value *p, size_t np, const char *action,
                                struct ibex_buf *out, struct ibex_api_result *r)
{
    bool found = false;
    char check[80];
    snprintf(check, sizeof(check), "SELECT id FROM %s WHERE id = $1 AND tenant_id = $2", k->table);
    struct ibex_store_value q[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    int rc = ibex_store_begin(s);
    if (rc == 0)
        rc = ibex_store_exec(s, check, q, 2, ibex_row_exists, &found);
    if (rc == 0 && !found) {
        ibex_store_rollback(s);
        return ibex_api_not_found(s, a, k->table, id, k->what, k->code, r);
    }
    if (rc == 0)
        rc = ibex_store_exec(s, sql, p, np, NULL, NULL);
    if (rc == 0)
        rc = ibex_store_exec(s, bump_epoch_sql, NULL, 0, NULL, NULL);
    if (rc == 0)
        rc = ibex_audit(s, a, a->tenant_id, action, id, NULL);
    if (finish(s, rc, true, r))
        return r->status;
    size_t n;
    if ((rc = k->fetch(s, a, id, out, &n)) != 0)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, 200);
}

static const struct kind agent_kind = {"agents", "agent", "AGENT_NOT_FOUND", agent_object};

int ibex_agent_update(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      json_object *body, struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *name, *directive, *role, *meta = NULL;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "name", false, NAME_MAX_LEN, &name, r) ||
        ibex_api_get_string(body, "directive", false, DIRECTIVE_MAX_LEN, &directive, r) ||
        ibex_api_get_string(body, "role", false, ROLE_MAX_LEN, &role, r))
        return r->status;
    json_object *m = NULL;
    if (body && json_object_object_get_ex(body, "metadata", &m) &&
        ibex_api_get_metadata(body, &meta, r))
        return r->status;
    if (name && name[0] == '\0')
        return ibex_api_invalid(r, "name", "must not be empty");
    if (role && role[0] == '\0')
        return ibex_api_invalid(r, "role", "must not be empty (null removes the role)");
    /* "role": null removes the role, so presence is not the same as a value */
    bool set_role = body && json_object_object_get_ex(body, "role", NULL);
    if (!name && !directive && !meta && !set_role)
        return ibex_api_fail(r, 400, "VALIDATION_ERROR", NULL,
                             "nothing to update: give name, directive, role or metadata");
    /* COALESCE keeps what the body does not name. */
    struct ibex_store_value p[] = {ibex_store_text(name),    ibex_store_text(directive),
                                   ibex_store_text(meta),    ibex_store_int(ibex_clock_wall_ms()),
                                   ibex_store_text(id),      ibex_store_text(a->tenant_id),
                                   ibex_store_int(set_role), ibex_store_text(role)};
    return tenant_object_change(s, a, &agent_kind, id,
                                "UPDATE agents SET name = COALESCE($1, name), directive = "
                                "COALESCE($2, directive), metadata = COALESCE($3, metadata), "
                                "role = CASE WHEN $7 = 1 THEN $8 ELSE role END, updated_at = $4 "
                                "WHERE id = $5 AND tenant_id = $6",
                                p, 8, "agent.updated", out, r);
}

int ibex_agent_revoke(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    struct ibex_store_value p[] = {ibex_store_int(ibex_clock_wall_ms()), ibex_store_text(id),
                                   ibex_store_text(a->tenant_id)};
    return tenant_object_change(s, a, &agent_kind, id,
                                "UPDATE agents SET disabled_at = COALESCE(disabled_at, $1) "
                                "WHERE id = $2 AND tenant_id = $3",
                                p, 3, "agent.revoked", out, r);
}

/* ---- keys ---- */

#define KEY_COLS                                                                                   \
    "id, tenant_id, name, prefix, last4, scopes, agent_ids, expires_at, created_at, revoked_at"

static void key_fields(struct ibex_buf *b, const char *id, const char *tenant_id, const char *name,
                       const char *prefix, const char *last4, const char *scopes_json,
                       const char *agents_json, int64_t expires_ms, int64_t created_ms)
{
    ibex_json_put_cstr(b, "id", id);
    ibex_json_put_cstr(b, "object", "api_key");
    ibex_json_put_cstr(b, "tenant_id", tenant_id);
    ibex_json_put_cstr(b, "name", name);
    ibex_json_put_cstr(b, "prefix", prefix);
    ibex_json_put_cstr(b, "last4", last4);
    ibex_json_put_raw(b, "scopes", scopes_json);
    ibex_json_put_raw(b, "agent_ids", agents_json);
    ibex_json_put_time(b, "expires_at", expires_ms);
    ibex_json_put_time(b, "created_at", created_ms);
}

/* The answer to a creation: the key object with its secret, the only time it is shown. */
static void key_object(struct ibex_buf *b, const char *id, const char *tenant_id, const char *name,
                       const char *key, const char *scopes_json, const char *agents_json,
                       int64_t expires_ms, int64_t created_ms)
{
    char prefix[IBEX_KEY_PREFIX_LEN + 1];
    ibex_key_prefix(key, prefix);
    ibex_buf_append_cstr(b, "{");
    key_fields(b, id, tenant_id, name, prefix, key + strlen(key) - 4, scopes_json, agents_json,
               expires_ms, created_ms);
    ibex_json_put_time(b, "revoked_at", 0);
    ibex_json_put_cstr(b, "key", key);
    ibex_buf_append_cstr(b, "}");
}

static int row_key(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    char id[IBEX_ID_LEN + 1], tenant[IBEX_ID_LEN + 1], prefix[IBEX_KEY_PREFIX_LEN + 1], last4[8];
    ibex_col_text(&c[0], id, sizeof(id));
    ibex_col_text(&c[1], tenant, sizeof(tenant));
    ibex_col_text(&c[3], prefix, sizeof(prefix));
    ibex_col_text(&c[4], last4, sizeof(last4));
    char *name = ibex_col_dup(&c[2]), *scopes = ibex_col_dup(&c[5]), *agents = ibex_col_dup(&c[6]);
    ibex_buf_append_cstr(l->out, "{");
    key_fields(l->out, id, tenant, name, prefix, last4, scopes, agents, ibex_col_int(&c[7]),
               ibex_col_int(&c[8]));
    ibex_json_put_time(l->out, "revoked_at", ibex_col_int(&c[9]));
    ibex_buf_append_cstr(l->out, "}");
    free(name);
    free(scopes);
    free(agents);
    return 0;
}

static int key_object_stored(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                             struct ibex_buf *out, size_t *found)
{
    struct ibex_api_list l = {out, 0};
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    int rc = ibex_store_exec(
        s, "SELECT " KEY_COLS " FROM api_keys WHERE id = $1 AND tenant_id = $2", p, 2, row_key, &l);
    *found = l.n;
    return rc;
}

static int insert_key(struct ibex_store *s, const char *tenant_id, const char *name,
                      const char *key, const char *scopes_json, const char *agents_json,
                      int64_t expires_ms, int64_t now, char id[IBEX_ID_LEN + 1])
{
    char prefix[IBEX_KEY_PREFIX_LEN + 1], sha[IBEX_SHA256_HEX_LEN + 1];
    ibex_id_uuid4(id);
    ibex_key_prefix(key, prefix);
    ibex_sha256_hex(key, strlen(key), sha);
    struct ibex_store_value p[] = {
        ibex_store_text(id),
        ibex_store_text(tenant_id),
        ibex_store_text(name),
        ibex_store_text(prefix),
        ibex_store_text(sha),
        ibex_store_text(scopes_json),
        ibex_store_text(agents_json),
        ibex_store_text(key + strlen(key) - 4),
        expires_ms ? ibex_store_int(expires_ms) : ibex_store_null(),
        ibex_store_int(now),
    };
    return ibex_store_exec(s,
                           "INSERT INTO api_keys (id, tenant_id, name, prefix, sha256, scopes, "
                           "agent_ids, last4, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, "
                           "$6, $7, $8, $9, $10)",
                           p, 10, NULL, NULL);
}

/* scopes: a non-empty array of known scope names the actor holds; writes them as JSON. */
static int get_scopes(json_object *body, const struct ibex_actor *a, struct ibex_buf *json,
                      struct ibex_api_result *r)
{
    json_object *v = NULL;
    if (body == NULL || !json_object_object_get_ex(body, "scopes", &v) || v == NULL)
        return ibex_api_invalid(r, "scopes", "is required");
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
        return ibex_api_invalid(r, "scopes", "must be a non-empty array of scope names");
    uint32_t wanted = 0;
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *e = json_object_array_get_idx(v, i);
        uint32_t bit = 0;
        if (json_object_is_type(e, json_type_string))
            bit =
                ibex_scope_parse(json_object_get_string(e), (size_t)json_object_get_string_len(e));
        if (bit == 0)
            return ibex_api_invalid(
                r, "scopes",
                "unknown scope (chat, sessions:read, sessions:write, traces:read, "
                "keys:admin, credentials:admin, admin, approvals:decide)");
        wanted |= bit;
    }
    for (uint32_t bit = 1; bit & IBEX_SCOPE_ALL; bit <<= 1)
        if ((wanted & bit) && !ibex_scopes_allow(a->scopes, bit))
            return ibex_api_fail(r, 403, "INSUFFICIENT_SCOPE", "scopes",
                                 "a key may only grant scopes its creator holds ('%s' is not held)",
                                 ibex_scope_name(bit));
    ibex_buf_append_cstr(json, "[");
    for (uint32_t bit = 1; bit & IBEX_SCOPE_ALL; bit <<= 1) {
        if (!(wanted & bit))
            continue;
        if (json->len > 1)
            ibex_buf_append_cstr(json, ",");
        ibex_buf_append_json_str(json, ibex_scope_name(bit), strlen(ibex_scope_name(bit)));
    }
    ibex_buf_append_cstr(json, "]");
    return 0;
}

/* agent_ids: absent or null (any agent), or 1..IBEX_PRINCIPAL_AGENTS live agents of the tenant. */
static int get_agent_ids(struct ibex_store *s, json_object *body, const struct ibex_actor *a,
                         struct ibex_buf *json, struct ibex_api_result *r)
{
    json_object *v = NULL;
    if (body == NULL || !json_object_object_get_ex(body, "agent_ids", &v) || v == NULL)
        return 0;
    size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
    if (n == 0 || n > IBEX_PRINCIPAL_AGENTS)
        return ibex_api_invalid(r, "agent_ids", "must be an array of 1 to 8 agent ids");
    ibex_buf_append_cstr(json, "[");
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        const char *id = json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "";
        if (!ibex_id_is_uuid(id, strlen(id)))
            return ibex_api_invalid(r, "agent_ids", "must hold agent ids (UUIDs)");
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(id, json_object_get_string(json_object_array_get_idx(v, j))) == 0)
                return ibex_api_invalid(r, "agent_ids", "names an agent twice");
        bool found = false;
        struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
        int rc = ibex_store_exec(s,
                                 "SELECT id FROM agents WHERE id = $1 AND tenant_id = $2 AND "
                                 "disabled_at IS NULL",
                                 p, 2, ibex_row_exists, &found);
        if (rc)
            return ibex_api_store_failed(s, r, rc);
        if (!found)
            return ibex_api_invalid(r, "agent_ids", "names an agent that does not exist");
        if (i)
            ibex_buf_append_cstr(json, ",");
        ibex_buf_append_json_str(json, id, strlen(id));
    }
    ibex_buf_append_cstr(json, "]");
    return 0;
}

int ibex_key_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                    const char *pinned_key, struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *name;
    struct ibex_buf scopes, agents;
    ibex_buf_init(&scopes);
    ibex_buf_init(&agents);
    int64_t expires_ms = 0, now = ibex_clock_wall_ms();
    json_object *exp = NULL;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "name", false, NAME_MAX_LEN, &name, r) ||
        get_scopes(body, a, &scopes, r) || get_agent_ids(s, body, a, &agents, r))
        goto done;
    if (body && json_object_object_get_ex(body, "expires_at", &exp) && exp != NULL) {
        if (!json_object_is_type(exp, json_type_int) || json_object_get_int64(exp) <= 0 ||
            json_object_get_int64(exp) > INT64_MAX / 1000) {
            ibex_api_invalid(r, "expires_at", "must be unix seconds");
            goto done;
        }
        expires_ms = json_object_get_int64(exp) * 1000;
        if (expires_ms <= now) {
            ibex_api_invalid(r, "expires_at", "must be in the future");
            goto done;
        }
    }
    char key[IBEX_KEY_MAX_LEN + 1], id[IBEX_ID_LEN + 1];
    if (pinned_key)
        snprintf(key, sizeof(key), "%s", pinned_key);
    else
        ibex_key_generate(key);
    int rc = ibex_store_begin(s);
    if (rc == 0)
        rc = insert_key(s, a->tenant_id, name ? name : "", key, scopes.p,
                        agents.len ? agents.p : NULL, expires_ms, now, id);
    if (rc == 0) {
        struct ibex_buf detail;
        ibex_buf_init(&detail);
        ibex_buf_append_cstr(&detail, "{\"scopes\":");
        ibex_buf_append(&detail, scopes.p, scopes.len);
        ibex_buf_append_cstr(&detail, "}");
        rc = ibex_audit(s, a, a->tenant_id, "key.created", id, detail.p);
        ibex_buf_dispose(&detail);
    }
    if (finish(s, rc, false, r) == 0) {
        key_object(out, id, a->tenant_id, name ? name : "", key, scopes.p,
                   agents.len ? agents.p : NULL, expires_ms, now);
        ibex_api_ok(r, 201);
    }
done:
    ibex_buf_dispose(&scopes);
    ibex_buf_dispose(&agents);
    return r->status;
}

int ibex_key_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                  struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_rows(s, a,
                                "SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 "
                                "ORDER BY created_at DESC, id LIMIT $2",
                                row_key, limit, out, r);
}

int ibex_key_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                 struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_get(s, a, id, key_object_stored, "api_keys", "key", "KEY_NOT_FOUND", out,
                               r);
}

int ibex_key_revoke(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                    struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r))
        return r->status;
    static const struct kind key_kind = {"api_keys", "key", "KEY_NOT_FOUND", key_object_stored};
    struct ibex_store_value p[] = {ibex_store_int(ibex_clock_wall_ms()), ibex_store_text(id),
                                   ibex_store_text(a->tenant_id)};
    return tenant_object_change(s, a, &key_kind, id,
                                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) "
                                "WHERE id = $2 AND tenant_id = $3",
                                p, 3, "key.revoked", out, r);
}

/* ---- audit ---- */

static int row_audit(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_str(b, "id", c[0].p, c[0].len);
    ibex_json_put_cstr(b, "object", "audit_event");
    ibex_json_put_str(b, "tenant_id", c[1].type == IBEX_STORE_TEXT ? c[1].p : NULL, c[1].len);
    ibex_json_put_str(b, "actor", c[2].p, c[2].len);
    ibex_json_put_str(b, "action", c[3].p, c[3].len);
    ibex_json_put_str(b, "target", c[4].type == IBEX_STORE_TEXT ? c[4].p : NULL, c[4].len);
    ibex_json_put_str(b, "request_id", c[5].type == IBEX_STORE_TEXT ? c[5].p : NULL, c[5].len);
    char *detail = ibex_col_dup(&c[6]);
    ibex_json_put_raw(b, "detail", detail);
    free(detail);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[7]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

int ibex_audit_list(struct ibex_store *s, const struct ibex_actor *a, int64_t limit,
                    struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_rows(s, a,
                                "SELECT id, tenant_id, actor, action, target, request_id, detail, "
                                "created_at FROM audit_events WHERE tenant_id = $1 "
                                "ORDER BY created_at DESC, id LIMIT $2",
                                row_audit, limit, out, r);
}

/* ---- authentication reads ---- */

struct key_row {
    bool found;
    char sha[IBEX_SHA256_HEX_LEN + 1];
    struct ibex_principal *p;
    char *scopes, *agents;
    int64_t expires_ms, revoked_ms, tenant_revoked_ms;
};

static int row_auth_key(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct key_row *k = data;
    k->found = true;
    ibex_col_text(&c[0], k->p->key_id, sizeof(k->p->key_id));
    ibex_col_text(&c[1], k->p->tenant_id, sizeof(k->p->tenant_id));
    ibex_col_text(&c[2], k->sha, sizeof(k->sha));
    k->scopes = ibex_col_dup(&c[3]);
    k->agents = ibex_col_dup(&c[4]);
    k->expires_ms = ibex_col_int(&c[5]);
    k->revoked_ms = ibex_col_int(&c[6]);
    k->tenant_revoked_ms = ibex_col_int(&c[7]);
    return 0;
}

/* Reads a JSON array of strings written by this module into scopes or the agent list. */
static void parse_scopes(const char *json, struct ibex_principal *p)
{
    json_object *v = json ? json_tokener_parse(json) : NULL;
    for (size_t i = 0;
         v && json_object_is_type(v, json_type_array) && i < json_object_array_length(v); i++) {
        json_object *e = json_object_array_get_idx(v, i);
        p->scopes |=
            ibex_scope_parse(json_object_get_string(e), (size_t)json_object_get_string_len(e));
    }
    json_object_put(v);
}

static void parse_agents(const char *json, struct ibex_principal *p)
{
    json_object *v = json ? json_tokener_parse(json) : NULL;
    for (size_t i = 0; v && json_object_is_type(v, json_type_array) &&
                       i < json_object_array_length(v) && p->nagents < IBEX_PRINCIPAL_AGENTS;
         i++)
        snprintf(p->agents[p->nagents++], IBEX_ID_LEN + 1, "%s",
                 json_object_get_string(json_object_array_get_idx(v, i)));
    json_object_put(v);
}

int ibex_key_authenticate(struct ibex_store *s, const char *key, size_t len, int64_t now_ms,
                          enum ibex_key_state *state, struct ibex_principal *out)
{
    memset(out, 0, sizeof(*out));
    *state = IBEX_KEY_UNKNOWN;
    if (!ibex_key_well_formed(key, len))
        return 0;
    char prefix[IBEX_KEY_PREFIX_LEN + 1], sha[IBEX_SHA256_HEX_LEN + 1];
    ibex_key_prefix(key, prefix);
    ibex_sha256_hex(key, len, sha);
    struct key_row k = {.p = out};
    struct ibex_store_value p[] = {ibex_store_text(prefix)};
    int rc = ibex_store_exec(s,
                             "SELECT k.id, k.tenant_id, k.sha256, k.scopes, k.agent_ids, "
                             "k.expires_at, k.revoked_at, t.disabled_at FROM api_keys k "
                             "JOIN tenants t ON t.id = k.tenant_id WHERE k.prefix = $1",
                             p, 1, row_auth_key, &k);
    if (rc == 0 && k.found && strlen(k.sha) == IBEX_SHA256_HEX_LEN &&
        ibex_const_time_eq(k.sha, sha, IBEX_SHA256_HEX_LEN)) {
        out->kind = IBEX_PRINCIPAL_KEY;
        snprintf(out->subject, sizeof(out->subject), "%s", out->key_id);
        out->expires_at_ms = k.expires_ms;
        parse_scopes(k.scopes, out);
        parse_agents(k.agents, out);
        if (k.revoked_ms || k.tenant_revoked_ms)
            *state = IBEX_KEY_REVOKED;
        else if (k.expires_ms && now_ms >= k.expires_ms)
            *state = IBEX_KEY_EXPIRED;
        else
            *state = IBEX_KEY_VALID;
    }
    if (*state != IBEX_KEY_VALID) {
        /* The audit trail names the key and its tenant only when the secret matched. */
        struct ibex_principal named = {0};
        if (*state != IBEX_KEY_UNKNOWN) {
            memcpy(named.key_id, out->key_id, sizeof(named.key_id));
            memcpy(named.tenant_id, out->tenant_id, sizeof(named.tenant_id));
        }
        *out = named;
    }
    free(k.scopes);
    free(k.agents);
    return rc;
}

static int row_tenant_state(void *data, const struct ibex_store_value *c, size_t ncols)
{
    *(enum ibex_key_state *)data = ibex_col_int(&c[0]) ? IBEX_KEY_REVOKED : IBEX_KEY_VALID;
    return 0;
}

int ibex_tenant_state(struct ibex_store *s, const char *id, enum ibex_key_state *state)
{
    *state = IBEX_KEY_UNKNOWN;
    struct ibex_store_value p[] = {ibex_store_text(id)};
    return ibex_store_exec(s, "SELECT disabled_at FROM tenants WHERE id = $1", p, 1,
                           row_tenant_state, state);
}

struct agent_row {
    bool found;
    bool revoked;
    struct ibex_agent_info *info;
};

static int row_agent_info(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct agent_row *a = data;
    a->found = true;
    a->revoked = ibex_col_int(&c[1]) != 0;
    a->info->directive =
        c[0].type == IBEX_STORE_TEXT ? ibex_xstrndup(c[0].p, c[0].len) : ibex_xstrdup("");
    return 0;
}

int ibex_agent_lookup(struct ibex_store *s, const char *tenant_id, const char *id, bool *found,
                      bool *foreign, struct ibex_agent_info *info)
{
    *foreign = false;
    memset(info, 0, sizeof(*info));
    struct agent_row a = {.info = info};
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(tenant_id)};
    int rc = ibex_store_exec(s,
                             "SELECT directive, disabled_at FROM agents WHERE id = $1 AND "
                             "tenant_id = $2",
                             p, 2, row_agent_info, &a);
    *found = rc == 0 && a.found && !a.revoked;
    if (rc == 0 && !a.found) {
        struct ibex_store_value q[] = {ibex_store_text(id), ibex_store_text(tenant_id)};
        rc = ibex_store_exec(s, "SELECT id FROM agents WHERE id = $1 AND tenant_id <> $2", q, 2,
                             ibex_row_exists, foreign);
    }
    if (*found) {
        snprintf(info->id, sizeof(info->id), "%s", id);
        snprintf(info->tenant_id, sizeof(info->tenant_id), "%s", tenant_id);
    } else {
        free(info->directive);
        info->directive = NULL;
    }
    return rc;
}

/* ---- --dev ---- */

static int row_text(void *data, const struct ibex_store_value *c, size_t ncols)
{
    ibex_col_text(&c[0], data, IBEX_ID_LEN + 1);
    return 0;
}

int ibex_identity_dev_bootstrap(struct ibex_store *s, const char *pinned_key,
                                const char *pinned_agent, char tenant_id[IBEX_ID_LEN + 1],
                                struct ibex_buf *out, char *err, size_t errlen)
{
    if (pinned_key && !ibex_key_well_formed(pinned_key, strlen(pinned_key))) {
        snprintf(err, errlen, "IBEX_DEV_TOKEN must be ibex_sk_ and 20-100 letters or digits");
        return -1;
    }
    if (pinned_agent && !ibex_id_is_uuid(pinned_agent, strlen(pinned_agent))) {
        snprintf(err, errlen, "IBEX_DEV_AGENT_ID must be a UUID");
        return -1;
    }
    char agent_lower[IBEX_ID_LEN + 1];
    if (pinned_agent) {
        for (size_t i = 0; i <= IBEX_ID_LEN; i++)
            agent_lower[i] = (char)tolower((unsigned char)pinned_agent[i]);
        pinned_agent = agent_lower;
    }
    struct ibex_actor op = {.subject = "dev-bootstrap", .scopes = IBEX_SCOPE_ALL};
    struct ibex_api_result r;
    ibex_api_result_init(&r);
    struct ibex_buf scratch;
    ibex_buf_init(&scratch);
    int rc = -1;

    tenant_id[0] = '\0';
    int src = ibex_store_exec(s,
                              "SELECT id FROM tenants WHERE name = 'dev' AND parent_id IS NULL "
                              "AND disabled_at IS NULL ORDER BY created_at LIMIT 1",
                              NULL, 0, row_text, tenant_id);
    if (src)
        goto store_error;
    bool created_tenant = tenant_id[0] == '\0';
    if (created_tenant) {
        json_object *body = json_object_new_object();
        json_object_object_add(body, "name", json_object_new_string("dev"));
        ibex_tenant_create(s, &op, body, &scratch, &r);
        json_object_put(body);
        if (r.code)
            goto failed;
        /* the answer starts {"id":"<uuid>" */
        snprintf(tenant_id, IBEX_ID_LEN + 1, "%.36s", scratch.p + 7);
    }
    op.tenant_id = tenant_id;

    /* The admin key: the pinned one when given (created once), else a new one when the tenant
     * is new (a key made earlier cannot be shown again: only its hash is kept). */
    const char *key_note = "";
    char key_shown[IBEX_KEY_MAX_LEN + 1] = "";
    if (pinned_key) {
        char prefix[IBEX_KEY_PREFIX_LEN + 1], owner[IBEX_ID_LEN + 1] = "";
        ibex_key_prefix(pinned_key, prefix);
        struct ibex_store_value p[] = {ibex_store_text(prefix)};
        if ((src = ibex_store_exec(s, "SELECT tenant_id FROM api_keys WHERE prefix = $1", p, 1,
                                   row_text, owner)) != 0)
            goto store_error;
        if (owner[0] && strcmp(owner, tenant_id) != 0) {
            snprintf(err, errlen, "IBEX_DEV_TOKEN's prefix belongs to a key of another tenant");
            goto done;
        }
        if (owner[0] == '\0') {
            json_object *body =
                json_tokener_parse("{\"name\":\"dev-admin\",\"scopes\":[\"admin\"]}");
            ibex_buf_reset(&scratch);
            ibex_key_create(s, &op, body, pinned_key, &scratch, &r);
            json_object_put(body);
            if (r.code)
                goto failed;
        }
        key_note = " (IBEX_DEV_TOKEN)";
        snprintf(key_shown, sizeof(key_shown), "%s", pinned_key);
    } else if (created_tenant) {
        /* the tenant's first key, in the answer of tenant_create */
        const char *k = strstr(scratch.p, "\"key\":\"");
        if (k)
            snprintf(key_shown, sizeof(key_shown), "%.*s", IBEX_KEY_LEN, k + 7);
    }

    char agent_id[IBEX_ID_LEN + 1] = "";
    if (pinned_agent) {
        struct ibex_store_value p[] = {ibex_store_text(pinned_agent), ibex_store_text(tenant_id)};
        if ((src = ibex_store_exec(s, "SELECT id FROM agents WHERE id = $1 AND tenant_id = $2", p,
                                   2, row_text, agent_id)) != 0)
            goto store_error;
    } else if ((src = ibex_store_exec(s,
                                      "SELECT id FROM agents WHERE tenant_id = $1 AND name = "
                                      "'dev-agent' AND disabled_at IS NULL ORDER BY created_at "
                                      "LIMIT 1",
                                      (struct ibex_store_value[]){ibex_store_text(tenant_id)}, 1,
                                      row_text, agent_id)) != 0) {
        goto store_error;
    }
    if (agent_id[0] == '\0') {
        json_object *body = json_object_new_object();
        json_object_object_add(body, "name", json_object_new_string("dev-agent"));
        json_object_object_add(body, "directive",
                               json_object_new_string("You are a helpful assistant."));
        ibex_buf_reset(&scratch);
        ibex_agent_create(s, &op, body, pinned_agent, &scratch, &r);
        json_object_put(body);
        if (r.code)
            goto failed;
        snprintf(agent_id, sizeof(agent_id), "%.36s", scratch.p + 7);
    }

    ibex_buf_append_cstr(out, "dev tenant: ");
    ibex_buf_append_cstr(out, tenant_id);
    ibex_buf_append_cstr(out, "\ndev agent:  ");
    ibex_buf_append_cstr(out, agent_id);
    ibex_buf_append_cstr(out, "\ndev key:    ");
    if (key_shown[0]) {
        ibex_buf_append_cstr(out, key_shown);
        ibex_buf_append_cstr(out, key_note);
    } else {
        ibex_buf_append_cstr(out, "created earlier and shown then; set IBEX_DEV_TOKEN to pin "
                                  "one, or run `ibex keys create`");
    }
    ibex_buf_append_cstr(out, "\n");
    rc = 0;
    goto done;
store_error:
    snprintf(err, errlen, "store: %s", ibex_store_errmsg(s));
    goto done;
failed:
    snprintf(err, errlen, "%s: %s", r.code, r.message);
done:
    ibex_buf_dispose(&scratch);
    ibex_api_result_dispose(&r);
    return rc;
}
