/* Tasks: tenant-filtered SQL, the state machine
 *   pending -> running | cancelled;  running -> completed | failed | cancelled;
 *   running -> waiting_approval (an approval requested) -> running (approved) | failed
 *   (rejected, expired) | cancelled (by the caller; the approval is withdrawn),
 * and the declared phases, kept in the task row as [{"name","started_at","ended_at"}] (unix ms or
 * null): entering a phase ends the running one, reaching a terminal state ends it too.
 * Every change first locks the task row (an UPDATE that changes nothing, RETURNING the row: the
 * row lock on Postgres; SQLite serialises writers), then checks and writes in that transaction,
 * so two changes never start from the same state. A task is locked before its approval. */
#include "tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/clock.h"
#include "approvals.h"

#define NAME_MAX_LEN 200
#define PHASES_MAX 32
#define PHASE_MAX_LEN 64
#define INPUT_MAX_LEN (64 * 1024)
#define CHECKPOINT_MAX_LEN (64 * 1024)

static const char *const states[] = {"pending",   "running", "waiting_approval",
                                     "completed", "failed",  "cancelled"};
#define NSTATES (sizeof(states) / sizeof(states[0]))

static bool known_state(const char *s)
{
    for (size_t i = 0; i < NSTATES; i++)
        if (strcmp(s, states[i]) == 0)
            return true;
    return false;
}

static bool terminal(const char *s)
{
    return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

/* The changes a caller may ask for; waiting_approval is entered and left only by approvals. */
static bool allowed(const char *from, const char *to)
{
    if (strcmp(from, "pending") == 0)
        return strcmp(to, "running") == 0 || strcmp(to, "cancelled") == 0;
    if (strcmp(from, "running") == 0)
        return strcmp(to, "completed") == 0 || strcmp(to, "failed") == 0 ||
               strcmp(to, "cancelled") == 0;
    if (strcmp(from, "waiting_approval") == 0)
        return strcmp(to, "cancelled") == 0;
    return false;
}

/* ---- query ---- */

static int task_param(void *data, struct ibex_str k, struct ibex_str v, struct ibex_api_result *r)
{
    struct ibex_task_query *q = data;
    if (ibex_str_eq_cstr(k, "state"))
        return ibex_api_query_enum(v, "state", states, NSTATES, q->state, sizeof(q->state),
                                   "is not a task state", r);
    if (ibex_str_eq_cstr(k, "agent_id"))
        return ibex_api_query_uuid(v, "agent_id", q->agent_id, r);
    if (ibex_str_eq_cstr(k, "agent_role"))
        return ibex_api_query_text(v, "agent_role", IBEX_TASK_ROLE_MAX, q->agent_role, r);
    return 0;
}

int ibex_task_query_parse(struct ibex_str query, struct ibex_task_query *q,
                          struct ibex_api_result *r)
{
    memset(q, 0, sizeof(*q));
    return ibex_api_query_parse(query, &q->page, &q->page_size, task_param, q, r);
}

/* ---- phases ---- */

/* The stored phases as a json-c array (empty when the text is not one). */
static json_object *phases_parse(const char *json)
{
    json_object *v = json ? json_tokener_parse(json) : NULL;
    if (v == NULL || !json_object_is_type(v, json_type_array)) {
        json_object_put(v);
        v = json_object_new_array();
    }
    return v;
}

static int64_t phase_time(json_object *p, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(p, key, &v) && v ? json_object_get_int64(v) : 0;
}

static const char *phase_name(json_object *p)
{
    json_object *v = NULL;
    return json_object_object_get_ex(p, "name", &v) && v ? json_object_get_string(v) : "";
}

static bool phase_running(json_object *p)
{
    return phase_time(p, "started_at") > 0 && phase_time(p, "ended_at") == 0;
}

static bool phases_has(json_object *arr, const char *name)
{
    for (size_t i = 0; i < json_object_array_length(arr); i++)
        if (strcmp(phase_name(json_object_array_get_idx(arr, i)), name) == 0)
            return true;
    return false;
}

/* Enters phase enter (may be NULL), ending the running one, then, when end, ends whatever runs.
 * Entering a phase that ended starts it again. Returns the new text (free it). */
static char *phases_step(json_object *arr, const char *enter, bool end, int64_t now)
{
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *p = json_object_array_get_idx(arr, i);
        bool is_enter = enter && strcmp(phase_name(p), enter) == 0;
        if (phase_running(p) && !is_enter) {
            json_object_object_add(p, "ended_at", json_object_new_int64(now));
        } else if (is_enter && !phase_running(p)) {
            json_object_object_add(p, "started_at", json_object_new_int64(now));
            json_object_object_add(p, "ended_at", NULL);
        }
    }
    for (size_t i = 0; end && i < json_object_array_length(arr); i++) {
        json_object *p = json_object_array_get_idx(arr, i);
        if (phase_running(p))
            json_object_object_add(p, "ended_at", json_object_new_int64(now));
    }
    return ibex_xstrdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
}

/* "phases": absent or null (none), or 0..32 distinct names of 1..64 bytes; the stored text. */
static int get_phases(json_object *body, struct ibex_buf *json, struct ibex_api_result *r)
{
    json_object *v = NULL;
    ibex_buf_append_cstr(json, "[");
    if (body && json_object_object_get_ex(body, "phases", &v) && v) {
        if (!json_object_is_type(v, json_type_array))
            return ibex_api_invalid(r, "phases", "must be an array of phase names");
        size_t n = json_object_array_length(v);
        if (n > PHASES_MAX)
            return ibex_api_invalid(r, "phases", "must hold at most 32 phases");
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            size_t len = e && json_object_is_type(e, json_type_string)
                             ? (size_t)json_object_get_string_len(e)
                             : 0;
            if (len == 0 || len > PHASE_MAX_LEN)
                return ibex_api_invalid(r, "phases", "must hold names of 1 to 64 bytes");
            for (size_t k = 0; k < i; k++)
                if (strcmp(json_object_get_string(json_object_array_get_idx(v, k)),
                           json_object_get_string(e)) == 0)
                    return ibex_api_invalid(r, "phases", "names a phase twice");
            ibex_buf_append_cstr(json, i ? ",{\"name\":" : "{\"name\":");
            ibex_buf_append_json_str(json, json_object_get_string(e), len);
            ibex_buf_append_cstr(json, ",\"started_at\":null,\"ended_at\":null}");
        }
    }
    ibex_buf_append_cstr(json, "]");
    return 0;
}

/* ---- rows ---- */

/* Lists leave out checkpoint and input (up to 64 KiB each): GET one task for them. */
#define TASK_COLS                                                                                  \
    "id, tenant_id, name, state, agent_role, agent_id, session_id, phases, phase, "                \
    "checkpoint_at, metadata, error, approval_id, created_at, updated_at"
#define TASK_NCOLS 15
#define TASK_COLS_FULL TASK_COLS ", checkpoint, input"

static void put_phases(struct ibex_buf *b, const struct ibex_store_value *v)
{
    char *text = ibex_col_dup(v);
    json_object *arr = phases_parse(text);
    free(text);
    ibex_json_put_key(b, "phases");
    ibex_buf_append_cstr(b, "[");
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *p = json_object_array_get_idx(arr, i);
        ibex_buf_append_cstr(b, i ? ",{" : "{");
        ibex_json_put_cstr(b, "name", phase_name(p));
        ibex_json_put_cstr(b, "state",
                           phase_time(p, "started_at") == 0 ? "pending"
                           : phase_running(p)               ? "running"
                                                            : "done");
        ibex_json_put_time(b, "started_at", phase_time(p, "started_at"));
        ibex_json_put_time(b, "ended_at", phase_time(p, "ended_at"));
        ibex_buf_append_cstr(b, "}");
    }
    ibex_buf_append_cstr(b, "]");
    json_object_put(arr);
}

static int row_task(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    bool full = ncols > TASK_NCOLS;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_col(b, "id", &c[0]);
    ibex_json_put_cstr(b, "object", "task");
    ibex_json_put_col(b, "tenant_id", &c[1]);
    ibex_json_put_col(b, "name", &c[2]);
    ibex_json_put_col(b, "state", &c[3]);
    ibex_json_put_col(b, "agent_role", &c[4]);
    ibex_json_put_col(b, "agent_id", &c[5]);
    ibex_json_put_col(b, "session_id", &c[6]);
    put_phases(b, &c[7]);
    ibex_json_put_col(b, "phase", &c[8]);
    if (full)
        ibex_json_put_raw_col(b, "checkpoint", &c[15]);
    ibex_json_put_time(b, "checkpoint_at", ibex_col_int(&c[9]));
    if (full)
        ibex_json_put_raw_col(b, "input", &c[16]);
    ibex_json_put_raw_col(b, "metadata", &c[10]);
    ibex_json_put_col(b, "error", &c[11]);
    ibex_json_put_col(b, "approval_id", &c[12]);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[13]));
    ibex_json_put_time(b, "updated_at", ibex_col_int(&c[14]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

static int fetch_task(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      struct ibex_buf *out, size_t *found)
{
    return ibex_api_fetch_one(
        s, a, "SELECT " TASK_COLS_FULL " FROM tasks WHERE id = $1 AND tenant_id = $2", row_task, id,
        out, found);
}

/* Answers the task after a change that committed. */
static int answer_task(struct ibex_store *s, const struct ibex_actor *a, const char *id, int status,
                       struct ibex_buf *out, struct ibex_api_result *r)
{
    size_t n;
    int rc = fetch_task(s, a, id, out, &n);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, status);
}

/* The row as a change needs it, read under its lock. */
struct task_row {
    bool found;
    char state[24];
    char approval_id[IBEX_UUID_LEN + 1];
    char session_id[IBEX_UUID_LEN + 1];
    char phase[PHASE_MAX_LEN + 1];
    char role[IBEX_TASK_ROLE_MAX + 1];
    char *phases; /* malloc'd */
};

static int row_locked(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct task_row *t = data;
    t->found = true;
    ibex_col_text(&c[0], t->state, sizeof(t->state));
    ibex_col_text(&c[1], t->approval_id, sizeof(t->approval_id));
    ibex_col_text(&c[2], t->session_id, sizeof(t->session_id));
    ibex_col_text(&c[3], t->phase, sizeof(t->phase));
    ibex_col_text(&c[5], t->role, sizeof(t->role));
    free(t->phases);
    t->phases = ibex_col_dup(&c[4]);
    return 0;
}

/* Locks task id of tenant_id for the rest of the transaction and reads it (t->found). */
static int lock_task(struct ibex_store *s, const char *tenant_id, const char *id,
                     struct task_row *t)
{
    memset(t, 0, sizeof(*t));
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(tenant_id)};
    return ibex_store_exec(s,
                           "UPDATE tasks SET updated_at = updated_at WHERE id = $1 AND "
                           "tenant_id = $2 RETURNING state, approval_id, session_id, phase, "
                           "phases, agent_role",
                           p, 2, row_locked, t);
}

/* Ends a transaction: commits on rc == 0, else rolls back. */
static int finish(struct ibex_store *s, int rc)
{
    if (rc == 0)
        return ibex_store_commit(s);
    ibex_store_rollback(s);
    return rc;
}

/* ---- operations ---- */

int ibex_task_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                     struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *name, *role, *agent_id, *session_id, *input, *meta;
    struct ibex_buf phases;
    ibex_buf_init(&phases);
    if (ibex_api_need_tenant(a, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "name", true, NAME_MAX_LEN, &name, r) ||
        ibex_api_get_string(body, "agent_role", true, IBEX_TASK_ROLE_MAX, &role, r) ||
        ibex_api_get_string(body, "agent_id", false, 64, &agent_id, r) ||
        ibex_api_get_string(body, "session_id", false, 64, &session_id, r) ||
        get_phases(body, &phases, r) ||
        ibex_api_get_object(body, "input", INPUT_MAX_LEN, &input, r) ||
        ibex_api_get_metadata(body, &meta, r) ||
        (agent_id &&
         ibex_api_check_ref(s, a, "agent_id", agent_id, ibex_live_agent_sql, "an agent", r)) ||
        (session_id &&
         ibex_api_check_ref(s, a, "session_id", session_id, ibex_session_ref_sql, "a session", r)))
        goto out;
    char id[IBEX_UUID_LEN + 1];
    ibex_id_uuid4(id);
    struct ibex_store_value p[] = {
        ibex_store_text(id),         ibex_store_text(a->tenant_id),
        ibex_store_text(session_id), ibex_store_text(agent_id),
        ibex_store_text(role),       ibex_store_text(name),
        ibex_store_text(phases.p),   ibex_store_text(input ? input : "{}"),
        ibex_store_text(meta),       ibex_store_int((int64_t)ibex_clock_wall_ms())};
    int rc = ibex_store_exec(s,
                             "INSERT INTO tasks (id, tenant_id, session_id, agent_id, agent_role, "
                             "name, state, phases, input, metadata, created_at, updated_at) "
                             "VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $10)",
                             p, 10, NULL, NULL);
    if (rc)
        ibex_api_store_failed(s, r, rc);
    else
        answer_task(s, a, id, 201, out, r);
out:
    ibex_buf_dispose(&phases);
    return r->status;
}

int ibex_task_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                  struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    int rc = ibex_approval_expire_due(s, a->tenant_id);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_tenant_get(s, a, id, fetch_task, "tasks", "task", "TASK_NOT_FOUND", out, r);
}

/* The checks of an update against the locked row; 0 or the status set in r. */
static int check_update(const struct task_row *t, const char *to, const char *phase,
                        const char *checkpoint, json_object *phases, struct ibex_api_result *r)
{
    const char *from = t->state;
    bool changing = strcmp(from, to) != 0;
    if (strcmp(from, "waiting_approval") == 0 &&
        ((changing && strcmp(to, "cancelled") != 0) || phase || checkpoint))
        return ibex_api_fail(r, 409, "APPROVAL_PENDING", phase ? "phase" : "state",
                             "the task waits on approval %s: it may only be cancelled until "
                             "the approval is decided",
                             t->approval_id);
    if (changing && !allowed(from, to))
        return ibex_api_fail(r, 422, "INVALID_STATE_TRANSITION", "state",
                             "a %s task cannot become %s", from, to);
    if ((phase || checkpoint) && strcmp(from, "running") != 0 && strcmp(to, "running") != 0)
        return ibex_api_fail(r, 409, "TASK_NOT_RUNNING", phase ? "phase" : "checkpoint",
                             "the task is %s: only a running task changes phase or saves a "
                             "checkpoint",
                             from);
    if (phase && !phases_has(phases, phase))
        return ibex_api_invalid(r, "phase", "is not one of the task's phases");
    return 0;
}

int ibex_task_update(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                     json_object *body, struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *state, *phase, *checkpoint, *meta = NULL;
    json_object *m = NULL;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "state", false, 24, &state, r) ||
        ibex_api_get_string(body, "phase", false, PHASE_MAX_LEN, &phase, r) ||
        ibex_api_get_object(body, "checkpoint", CHECKPOINT_MAX_LEN, &checkpoint, r))
        return r->status;
    /* "metadata": null leaves the metadata as it is, like "checkpoint": null */
    if (body && json_object_object_get_ex(body, "metadata", &m) && m != NULL &&
        ibex_api_get_metadata(body, &meta, r))
        return r->status;
    if (!state && !phase && !checkpoint && !meta)
        return ibex_api_fail(r, 400, "VALIDATION_ERROR", NULL,
                             "nothing to update: give state, phase, checkpoint or metadata");
    if (state && !known_state(state))
        return ibex_api_invalid(r, "state",
                                "must be pending, running, waiting_approval, completed, failed "
                                "or cancelled");
    if (phase && phase[0] == '\0')
        return ibex_api_invalid(r, "phase", "must not be empty");

    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct task_row t = {0};
    json_object *phases = NULL;
    char *new_phases = NULL;
    int rc = ibex_store_begin(s);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    /* first, so a task whose approval expired is seen failed */
    if ((rc = ibex_approval_expire_locked(s, a->tenant_id, now)) == 0)
        rc = lock_task(s, a->tenant_id, id, &t);
    if (rc)
        goto failed;
    if (!t.found) {
        ibex_store_rollback(s);
        ibex_api_not_found(s, a, "tasks", id, "task", "TASK_NOT_FOUND", r);
        goto out;
    }
    const char *to = state ? state : t.state;
    bool changing = strcmp(to, t.state) != 0;
    phases = phases_parse(t.phases);
    if (check_update(&t, to, phase, checkpoint, phases, r)) {
        ibex_store_rollback(s);
        goto out;
    }
    const char *enter = phase && strcmp(phase, t.phase) != 0 ? phase : NULL;
    bool end = changing && terminal(to);
    if (enter || end)
        new_phases = phases_step(phases, enter, end, now);
    /* a task cancelled while it waits: its approval has nothing left to decide */
    bool withdraw = changing && strcmp(t.state, "waiting_approval") == 0;
    if (withdraw)
        rc = ibex_approval_withdraw(s, a->tenant_id, t.approval_id, now);
    if (rc == 0) {
        struct ibex_store_value p[] = {ibex_store_text(to),          ibex_store_text(new_phases),
                                       ibex_store_text(enter),       ibex_store_text(checkpoint),
                                       ibex_store_int(now),          ibex_store_text(meta),
                                       ibex_store_int(withdraw),     ibex_store_text(id),
                                       ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             "UPDATE tasks SET state = $1, phases = COALESCE($2, phases), phase = "
                             "COALESCE($3, phase), checkpoint = COALESCE($4, checkpoint), "
                             "checkpoint_at = CASE WHEN $4 IS NULL THEN checkpoint_at ELSE $5 END, "
                             "metadata = COALESCE($6, metadata), approval_id = CASE WHEN $7 = 1 "
                             "THEN NULL ELSE approval_id END, updated_at = $5 WHERE id = $8 AND "
                             "tenant_id = $9",
                             p, 9, NULL, NULL);
    }
failed:
    if ((rc = finish(s, rc)) != 0)
        ibex_api_store_failed(s, r, rc);
    else
        answer_task(s, a, id, 200, out, r);
out:
    json_object_put(phases);
    free(new_phases);
    free(t.phases);
    return r->status;
}

int ibex_task_list(struct ibex_store *s, const struct ibex_actor *a,
                   const struct ibex_task_query *q, struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    int rc = ibex_approval_expire_due(s, a->tenant_id);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    /* only the filters given, so each combination has an index that leads with them */
    struct ibex_store_value p[4] = {ibex_store_text(a->tenant_id)};
    size_t n = 1;
    struct ibex_buf where;
    ibex_buf_init(&where);
    ibex_buf_append_cstr(&where, " FROM tasks WHERE tenant_id = $1");
    const char *filters[][2] = {
        {"state", q->state}, {"agent_id", q->agent_id}, {"agent_role", q->agent_role}};
    for (size_t i = 0; i < 3; i++) {
        if (filters[i][1][0] == '\0')
            continue;
        p[n++] = ibex_store_text(filters[i][1]);
        ibex_buf_appendf(&where, " AND %s = $%zu", filters[i][0], n);
    }
    ibex_api_page_rows(s, TASK_COLS, where.p, "created_at DESC, id DESC", p, n, q->page,
                       q->page_size, "tasks", row_task, out, r);
    ibex_buf_dispose(&where);
    return r->status;
}

static int row_agent_id(void *data, const struct ibex_store_value *c, size_t ncols)
{
    ibex_col_text(&c[0], data, IBEX_UUID_LEN + 1);
    return 0;
}

int ibex_task_route(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                    struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *task_id, *role;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "task_id", true, 64, &task_id, r) ||
        ibex_api_get_string(body, "agent_role", false, IBEX_TASK_ROLE_MAX, &role, r))
        return r->status;
    if (role && role[0] == '\0')
        return ibex_api_invalid(r, "agent_role", "must not be empty");
    char id[IBEX_UUID_LEN + 1];
    if (ibex_api_query_uuid(ibex_str_from(task_id), "task_id", id, r))
        return r->status;

    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct task_row t = {0};
    char agent[IBEX_UUID_LEN + 1] = "";
    int rc = ibex_store_begin(s);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    if ((rc = ibex_approval_expire_locked(s, a->tenant_id, now)) == 0)
        rc = lock_task(s, a->tenant_id, id, &t);
    if (rc)
        goto failed;
    if (!t.found) {
        ibex_store_rollback(s);
        ibex_api_not_found(s, a, "tasks", id, "task", "TASK_NOT_FOUND", r);
        snprintf(r->param, sizeof(r->param), "task_id");
        goto out;
    }
    if (terminal(t.state)) {
        ibex_store_rollback(s);
        ibex_api_fail(r, 409, "TASK_FINISHED", "task_id", "a %s task cannot be routed", t.state);
        goto out;
    }
    /* unfinished tasks per live agent of the role, this task left out (it may move) */
    struct ibex_store_value p[] = {ibex_store_text(a->tenant_id),
                                   ibex_store_text(role ? role : t.role), ibex_store_text(id)};
    rc = ibex_store_exec(s,
                         "SELECT a.id FROM agents a WHERE a.tenant_id = $1 AND a.role = $2 AND "
                         "a.disabled_at IS NULL ORDER BY (SELECT count(*) FROM tasks t WHERE "
                         "t.tenant_id = $1 AND t.agent_id = a.id AND t.state IN ('pending', "
                         "'running', 'waiting_approval') AND t.id <> $3), a.id LIMIT 1",
                         p, 3, row_agent_id, agent);
    if (rc)
        goto failed;
    if (agent[0] == '\0') {
        ibex_store_rollback(s);
        ibex_api_fail(r, 422, "NO_AGENT_FOR_ROLE", "agent_role",
                      "no live agent of this tenant has the role");
        goto out;
    }
    struct ibex_store_value u[] = {ibex_store_text(agent), p[1], ibex_store_int(now),
                                   ibex_store_text(id), ibex_store_text(a->tenant_id)};
    rc = ibex_store_exec(s,
                         "UPDATE tasks SET agent_id = $1, agent_role = $2, updated_at = $3 WHERE "
                         "id = $4 AND tenant_id = $5",
                         u, 5, NULL, NULL);
failed:
    if ((rc = finish(s, rc)) != 0)
        ibex_api_store_failed(s, r, rc);
    else
        answer_task(s, a, id, 200, out, r);
out:
    free(t.phases);
    return r->status;
}

/* ---- the task side of approvals ---- */

int ibex_task_hold(struct ibex_store *s, const struct ibex_actor *a, const char *task_id,
                   const char *approval_id, int64_t now_ms, char session_id[IBEX_UUID_LEN + 1],
                   struct ibex_api_result *r)
{
    struct task_row t = {0};
    int refused = 0;
    int rc =
        ibex_id_is_uuid(task_id, strlen(task_id)) ? lock_task(s, a->tenant_id, task_id, &t) : 0;
    if (rc == 0 && !t.found) /* the same answer for a malformed, unknown or foreign task */
        refused = ibex_api_invalid(r, "task_id", "is not a task of this tenant");
    else if (rc == 0 && strcmp(t.state, "waiting_approval") == 0)
        refused = ibex_api_fail(r, 409, "APPROVAL_PENDING", "task_id",
                                "the task already waits on approval %s", t.approval_id);
    else if (rc == 0 && strcmp(t.state, "running") != 0)
        refused =
            ibex_api_fail(r, 409, "TASK_NOT_RUNNING", "task_id",
                          "the task is %s: only a running task can wait on an approval", t.state);
    if (rc == 0 && !refused) {
        snprintf(session_id, IBEX_UUID_LEN + 1, "%s", t.session_id);
        struct ibex_store_value p[] = {ibex_store_text(approval_id), ibex_store_int(now_ms),
                                       ibex_store_text(task_id), ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             "UPDATE tasks SET state = 'waiting_approval', approval_id = $1, "
                             "updated_at = $2 WHERE id = $3 AND tenant_id = $4",
                             p, 4, NULL, NULL);
    }
    free(t.phases);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return refused;
}

int ibex_task_lock(struct ibex_store *s, const char *tenant_id, const char *task_id)
{
    struct ibex_store_value p[] = {ibex_store_text(task_id), ibex_store_text(tenant_id)};
    return ibex_store_exec(s,
                           "UPDATE tasks SET updated_at = updated_at WHERE id = $1 AND "
                           "tenant_id = $2",
                           p, 2, NULL, NULL);
}

int ibex_task_settle(struct ibex_store *s, const char *tenant_id, const char *task_id,
                     const char *approval_id, const char *error, int64_t now_ms)
{
    struct task_row t = {0};
    char *new_phases = NULL;
    int rc = lock_task(s, tenant_id, task_id, &t);
    if (rc == 0 && t.found && strcmp(t.state, "waiting_approval") == 0 &&
        strcmp(t.approval_id, approval_id) == 0) {
        if (error) {
            json_object *phases = phases_parse(t.phases);
            new_phases = phases_step(phases, NULL, true, now_ms);
            json_object_put(phases);
        }
        struct ibex_store_value p[] = {ibex_store_text(error ? "failed" : "running"),
                                       ibex_store_text(error),
                                       ibex_store_text(new_phases),
                                       ibex_store_int(now_ms),
                                       ibex_store_text(task_id),
                                       ibex_store_text(tenant_id)};
        rc = ibex_store_exec(s,
                             "UPDATE tasks SET state = $1, error = COALESCE($2, error), phases = "
                             "COALESCE($3, phases), approval_id = NULL, updated_at = $4 WHERE id "
                             "= $5 AND tenant_id = $6",
                             p, 6, NULL, NULL);
    }
    free(new_phases);
    free(t.phases);
    return rc;
}
