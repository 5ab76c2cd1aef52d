/* Sessions: tenant-filtered SQL and the state machine
 *   pending -> active | cancelled;  active -> completed | failed | cancelled.
 * A transition is checked and written in one transaction, so two concurrent updates cannot
 * both leave the same state. */
#include "sessions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/id.h"

#define ROLE_MAX_LEN 200

static const char *const states[] = {"pending", "active", "completed", "failed", "cancelled"};

static bool known_state(const char *s)
{
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(s, states[i]) == 0)
            return true;
    return false;
}

static bool allowed(const char *from, const char *to)
{
    if (strcmp(from, "pending") == 0)
        return strcmp(to, "active") == 0 || strcmp(to, "cancelled") == 0;
    if (strcmp(from, "active") == 0)
        return strcmp(to, "completed") == 0 || strcmp(to, "failed") == 0 ||
               strcmp(to, "cancelled") == 0;
    return false;
}

/* ---- query ---- */

static int session_param(void *data, struct ibex_str k, struct ibex_str v,
                         struct ibex_api_result *r)
{
    struct ibex_session_query *q = data;
    if (ibex_str_eq_cstr(k, "state"))
        return ibex_api_query_enum(v, "state", states, sizeof(states) / sizeof(states[0]), q->state,
                                   sizeof(q->state), "is not a session state", r);
    if (ibex_str_eq_cstr(k, "agent_id"))
        return ibex_api_query_uuid(v, "agent_id", q->agent_id, r);
    return 0;
}

int ibex_session_query_parse(struct ibex_str query, struct ibex_session_query *q,
                             struct ibex_api_result *r)
{
    memset(q, 0, sizeof(*q));
    return ibex_api_query_parse(query, &q->page, &q->page_size, session_param, q, r);
}

/* ---- rows ---- */

#define SESSION_COLS "id, tenant_id, agent_id, agent_role, state, metadata, created_at, updated_at"

static int row_session(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_str(b, "session_id", c[0].p, c[0].len);
    ibex_json_put_cstr(b, "object", "session");
    ibex_json_put_str(b, "tenant_id", c[1].p, c[1].len);
    ibex_json_put_col(b, "agent_id", &c[2]);
    ibex_json_put_str(b, "agent_role", c[3].p, c[3].len);
    ibex_json_put_str(b, "state", c[4].p, c[4].len);
    char *meta = ibex_col_dup(&c[5]);
    ibex_json_put_raw(b, "metadata", meta);
    free(meta);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[6]));
    ibex_json_put_time(b, "updated_at", ibex_col_int(&c[7]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

static int fetch_session(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                         struct ibex_buf *out, size_t *found)
{
    return ibex_api_fetch_one(
        s, a, "SELECT " SESSION_COLS " FROM sessions WHERE id = $1 AND tenant_id = $2", row_session,
        id, out, found);
}

/* ---- operations ---- */

int ibex_session_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                        struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *role, *agent_id, *meta;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "agent_role", true, ROLE_MAX_LEN, &role, r) ||
        ibex_api_get_string(body, "agent_id", false, 64, &agent_id, r) ||
        ibex_api_get_metadata(body, &meta, r))
        return r->status;
    if (agent_id &&
        ibex_api_check_ref(s, a, "agent_id", agent_id, ibex_live_agent_sql, "an agent", r))
        return r->status;
    int64_t now = (int64_t)ibex_clock_wall_ms();
    char id[IBEX_UUID_LEN + 1];
    ibex_id_uuid7((uint64_t)now, id);
    struct ibex_store_value p[] = {ibex_store_text(id),       ibex_store_text(a->tenant_id),
                                   ibex_store_text(agent_id), ibex_store_text(role),
                                   ibex_store_text(meta),     ibex_store_int(now)};
    int rc = ibex_store_exec(s,
                             "INSERT INTO sessions (id, tenant_id, agent_id, agent_role, state, "
                             "metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, "
                             "'pending', $5, $6, $6)",
                             p, 6, NULL, NULL);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    size_t n;
    if ((rc = fetch_session(s, a, id, out, &n)) != 0)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, 201);
}

int ibex_session_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                     struct ibex_buf *out, struct ibex_api_result *r)
{
    return ibex_api_tenant_get(s, a, id, fetch_session, "sessions", "session", "SESSION_NOT_FOUND",
                               out, r);
}

static int row_state(void *data, const struct ibex_store_value *c, size_t ncols)
{
    ibex_col_text(&c[0], data, 16);
    return 0;
}

int ibex_session_update(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                        json_object *body, struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *status, *meta = NULL;
    json_object *m = NULL;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "status", false, 16, &status, r))
        return r->status;
    /* "metadata": null leaves the metadata as it is */
    if (body && json_object_object_get_ex(body, "metadata", &m) && m != NULL &&
        ibex_api_get_metadata(body, &meta, r))
        return r->status;
    if (!status && !meta)
        return ibex_api_fail(r, 400, "VALIDATION_ERROR", NULL,
                             "nothing to update: give status or metadata");
    if (status && !known_state(status))
        return ibex_api_invalid(r, "status",
                                "must be pending, active, completed, failed or cancelled");

    /* The state is read by a no-op UPDATE, which locks the row until the commit (Postgres:
     * a concurrent change waits, then reads the state this one leaves), as tasks.c does. */
    char current[16] = "";
    struct ibex_store_value q[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    int rc = ibex_store_begin(s);
    if (rc == 0)
        rc = ibex_store_exec(s,
                             "UPDATE sessions SET updated_at = updated_at WHERE id = $1 AND "
                             "tenant_id = $2 RETURNING state",
                             q, 2, row_state, current);
    if (rc == 0 && current[0] == '\0') {
        ibex_store_rollback(s);
        return ibex_api_not_found(s, a, "sessions", id, "session", "SESSION_NOT_FOUND", r);
    }
    if (rc == 0 && status && strcmp(status, current) != 0 && !allowed(current, status)) {
        ibex_store_rollback(s);
        return ibex_api_fail(r, 422, "INVALID_STATE_TRANSITION", "status",
                             "a %s session cannot become %s", current, status);
    }
    if (rc == 0) {
        struct ibex_store_value p[] = {ibex_store_text(status), ibex_store_text(meta),
                                       ibex_store_int((int64_t)ibex_clock_wall_ms()),
                                       ibex_store_text(id), ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             "UPDATE sessions SET state = COALESCE($1, state), metadata = "
                             "COALESCE($2, metadata), updated_at = $3 WHERE id = $4 AND "
                             "tenant_id = $5",
                             p, 5, NULL, NULL);
    }
    if (rc == 0)
        rc = ibex_store_commit(s);
    else
        ibex_store_rollback(s);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    size_t n;
    if ((rc = fetch_session(s, a, id, out, &n)) != 0)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, 200);
}

int ibex_session_list(struct ibex_store *s, const struct ibex_actor *a,
                      const struct ibex_session_query *q, struct ibex_buf *out,
                      struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    /* "" matches every state / agent: one statement for every combination of filters */
    struct ibex_store_value p[] = {ibex_store_text(a->tenant_id), ibex_store_text(q->state),
                                   ibex_store_text(q->agent_id)};
    return ibex_api_page_rows(s, SESSION_COLS,
                              " FROM sessions WHERE tenant_id = $1 AND ($2 = '' OR state = $2) "
                              "AND ($3 = '' OR agent_id = $3)",
                              "created_at DESC, id DESC", p, 3, q->page, q->page_size, "sessions",
                              row_session, out, r);
}

/* ---- chat turns ---- */

int ibex_session_record_new(struct ibex_store_writer *w, const char *id, const char *tenant_id,
                            const char *agent_id, int64_t now_ms)
{
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(tenant_id),
                                   ibex_store_text(agent_id), ibex_store_int(now_ms)};
    return ibex_store_writer_enqueue(w,
                                     "INSERT INTO sessions (id, tenant_id, agent_id, agent_role, "
                                     "state, metadata, created_at, updated_at) VALUES ($1, $2, "
                                     "$3, '" IBEX_SESSION_CHAT_ROLE "', 'active', '{}', $4, $4)",
                                     p, 4);
}

int ibex_session_join(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      char state[16], struct ibex_api_result *r)
{
    state[0] = '\0';
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id),
                                   ibex_store_int((int64_t)ibex_clock_wall_ms())};
    int rc = ibex_store_exec(s,
                             "UPDATE sessions SET state = 'active', updated_at = $3 WHERE id = $1 "
                             "AND tenant_id = $2 AND state = 'pending'",
                             p, 3, NULL, NULL);
    if (rc == 0)
        rc = ibex_store_exec(s, "SELECT state FROM sessions WHERE id = $1 AND tenant_id = $2", p, 2,
                             row_state, state);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    if (state[0] == '\0')
        return ibex_api_not_found(s, a, "sessions", id, "session", "SESSION_NOT_FOUND", r);
    return ibex_api_ok(r, 200);
}
