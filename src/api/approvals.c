/* Approvals: tenant-filtered SQL and the decision of a human
 *   pending -> approved | rejected (POST .../approve, .../reject)
 *   pending -> expired (expires_at passed; applied by the next operation of the tenant)
 *   pending -> cancelled (its task was cancelled while waiting).
 * Only a pending approval changes, and the change is one conditional UPDATE ("... AND state =
 * 'pending' RETURNING"), so of two concurrent decisions exactly one wins; its effect on the task
 * (tasks.c: hold, settle) and its audit event commit in the same transaction. A transaction that
 * changes an approval and its task locks the task first (ibex_task_lock), as tasks.c does, so
 * two such transactions never wait on each other. */
#include "approvals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/id.h"
#include "tasks.h"

#define ACTION_MAX_LEN 200
#define DETAIL_MAX_LEN (16 * 1024)
#define REASON_MAX_LEN 1000
#define EXPIRES_IN_MAX (30 * 24 * 3600) /* seconds */

static const char *const states[] = {"pending", "approved", "rejected", "expired", "cancelled"};

/* ---- query ---- */

static int approval_param(void *data, struct ibex_str k, struct ibex_str v,
                          struct ibex_api_result *r)
{
    struct ibex_approval_query *q = data;
    if (ibex_str_eq_cstr(k, "state"))
        return ibex_api_query_enum(v, "state", states, sizeof(states) / sizeof(states[0]), q->state,
                                   sizeof(q->state), "is not an approval state", r);
    return 0;
}

int ibex_approval_query_parse(struct ibex_str query, struct ibex_approval_query *q,
                              struct ibex_api_result *r)
{
    memset(q, 0, sizeof(*q));
    return ibex_api_query_parse(query, &q->page, &q->page_size, approval_param, q, r);
}

/* ---- rows ---- */

#define APPROVAL_COLS                                                                              \
    "id, tenant_id, state, action, task_id, session_id, detail, reason, requested_by, "            \
    "decided_by, created_at, decided_at, expires_at"

static int row_approval(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_api_list *l = data;
    ibex_api_list_item(l);
    struct ibex_buf *b = l->out;
    ibex_buf_append_cstr(b, "{");
    ibex_json_put_col(b, "id", &c[0]);
    ibex_json_put_cstr(b, "object", "approval");
    ibex_json_put_col(b, "tenant_id", &c[1]);
    ibex_json_put_col(b, "state", &c[2]);
    ibex_json_put_col(b, "action", &c[3]);
    ibex_json_put_col(b, "task_id", &c[4]);
    ibex_json_put_col(b, "session_id", &c[5]);
    ibex_json_put_raw_col(b, "detail", &c[6]);
    ibex_json_put_col(b, "reason", &c[7]);
    ibex_json_put_col(b, "requested_by", &c[8]);
    ibex_json_put_col(b, "decided_by", &c[9]);
    ibex_json_put_time(b, "created_at", ibex_col_int(&c[10]));
    ibex_json_put_time(b, "decided_at", ibex_col_int(&c[11]));
    ibex_json_put_time(b, "expires_at", ibex_col_int(&c[12]));
    ibex_buf_append_cstr(b, "}");
    return 0;
}

static int fetch_approval(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                          struct ibex_buf *out, size_t *found)
{
    return ibex_api_fetch_one(
        s, a, "SELECT " APPROVAL_COLS " FROM approvals WHERE id = $1 AND tenant_id = $2",
        row_approval, id, out, found);
}

/* Commits (rc == 0) or rolls back, then answers the approval. */
static int finish_and_answer(struct ibex_store *s, const struct ibex_actor *a, int rc,
                             const char *id, int status, struct ibex_buf *out,
                             struct ibex_api_result *r)
{
    if (rc == 0)
        rc = ibex_store_commit(s);
    else
        ibex_store_rollback(s);
    size_t n;
    if (rc == 0)
        rc = fetch_approval(s, a, id, out, &n);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_ok(r, status);
}

/* ---- expiry ---- */

/* Pending approvals past due: pairs of ids (approval, task or ""), IBEX_UUID_LEN + 1 each. */
static int row_due(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct ibex_buf *ids = data;
    char id[IBEX_UUID_LEN + 1], task[IBEX_UUID_LEN + 1];
    ibex_col_text(&c[0], id, sizeof(id));
    ibex_col_text(&c[1], task, sizeof(task));
    ibex_buf_append(ids, id, sizeof(id));
    ibex_buf_append(ids, task, sizeof(task));
    return 0;
}

int ibex_approval_expire_locked(struct ibex_store *s, const char *tenant_id, int64_t now_ms)
{
    struct ibex_buf ids;
    ibex_buf_init(&ids);
    struct ibex_store_value p[] = {ibex_store_text(tenant_id), ibex_store_int(now_ms)};
    int rc = ibex_store_exec(s,
                             "SELECT id, task_id FROM approvals WHERE tenant_id = $1 AND state = "
                             "'pending' AND expires_at <= $2 ORDER BY id",
                             p, 2, row_due, &ids);
    const size_t rec = 2 * (IBEX_UUID_LEN + 1);
    for (size_t off = 0; rc == 0 && off + rec <= ids.len; off += rec) {
        const char *id = ids.p + off, *task = id + IBEX_UUID_LEN + 1;
        bool expired = false;
        if (task[0]) /* the task first: see the top of this file */
            rc = ibex_task_lock(s, tenant_id, task);
        /* only if still pending: another transaction may have decided it since the read */
        struct ibex_store_value q[] = {ibex_store_text(id), ibex_store_text(tenant_id)};
        if (rc == 0)
            rc = ibex_store_exec(s,
                                 "UPDATE approvals SET state = 'expired', decided_at = expires_at "
                                 "WHERE id = $1 AND tenant_id = $2 AND state = 'pending' "
                                 "RETURNING id",
                                 q, 2, ibex_row_exists, &expired);
        if (rc == 0 && expired && task[0])
            rc = ibex_task_settle(s, tenant_id, task, id, "approval expired", now_ms);
    }
    ibex_buf_dispose(&ids);
    return rc;
}

int ibex_approval_expire_due(struct ibex_store *s, const char *tenant_id)
{
    int64_t now = (int64_t)ibex_clock_wall_ms();
    bool due = false;
    struct ibex_store_value p[] = {ibex_store_text(tenant_id), ibex_store_int(now)};
    /* the common case, nothing due, costs one indexed read and no write transaction */
    int rc = ibex_store_exec(s,
                             "SELECT id FROM approvals WHERE tenant_id = $1 AND state = 'pending' "
                             "AND expires_at <= $2 LIMIT 1",
                             p, 2, ibex_row_exists, &due);
    if (rc || !due)
        return rc;
    if ((rc = ibex_store_begin(s)) != 0)
        return rc;
    rc = ibex_approval_expire_locked(s, tenant_id, now);
    if (rc == 0)
        return ibex_store_commit(s);
    ibex_store_rollback(s);
    return rc;
}

int ibex_approval_withdraw(struct ibex_store *s, const char *tenant_id, const char *approval_id,
                           int64_t now_ms)
{
    struct ibex_store_value p[] = {ibex_store_int(now_ms), ibex_store_text(approval_id),
                                   ibex_store_text(tenant_id)};
    return ibex_store_exec(s,
                           "UPDATE approvals SET state = 'cancelled', decided_at = $1 WHERE id = "
                           "$2 AND tenant_id = $3 AND state = 'pending'",
                           p, 3, NULL, NULL);
}

/* ---- operations ---- */

/* "expires_in": absent or null (never), else whole seconds from 1 to 30 days. */
static int get_expires_in(json_object *body, int64_t *out, struct ibex_api_result *r)
{
    json_object *v = NULL;
    *out = 0;
    if (body == NULL || !json_object_object_get_ex(body, "expires_in", &v) || v == NULL)
        return 0;
    int64_t n = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
    if (n < 1 || n > EXPIRES_IN_MAX)
        return ibex_api_invalid(r, "expires_in", "must be whole seconds from 1 to 2592000");
    *out = n;
    return 0;
}

int ibex_approval_request(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                          struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *action, *task_id, *session_id, *detail;
    int64_t expires_in;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "action", true, ACTION_MAX_LEN, &action, r) ||
        ibex_api_get_string(body, "task_id", false, 64, &task_id, r) ||
        ibex_api_get_string(body, "session_id", false, 64, &session_id, r) ||
        ibex_api_get_object(body, "detail", DETAIL_MAX_LEN, &detail, r) ||
        get_expires_in(body, &expires_in, r) ||
        (session_id &&
         ibex_api_check_ref(s, a, "session_id", session_id, ibex_session_ref_sql, "a session", r)))
        return r->status;
    char id[IBEX_UUID_LEN + 1], task_session[IBEX_UUID_LEN + 1] = "";
    ibex_id_uuid4(id);
    int64_t now = (int64_t)ibex_clock_wall_ms();
    int rc = ibex_store_begin(s);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    rc = ibex_approval_expire_locked(s, a->tenant_id, now);
    if (rc == 0 && task_id && ibex_task_hold(s, a, task_id, id, now, task_session, r)) {
        ibex_store_rollback(s);
        return r->status;
    }
    if (rc == 0) {
        /* an approval for a task belongs to the task's session unless told otherwise */
        const char *session = session_id ? session_id : task_session[0] ? task_session : NULL;
        struct ibex_store_value p[] = {ibex_store_text(id),
                                       ibex_store_text(a->tenant_id),
                                       ibex_store_text(task_id),
                                       ibex_store_text(session),
                                       ibex_store_text(action),
                                       ibex_store_text(detail ? detail : "{}"),
                                       ibex_store_text(a->subject ? a->subject : "anonymous"),
                                       ibex_store_int(now),
                                       expires_in ? ibex_store_int(now + expires_in * 1000)
                                                  : ibex_store_null()};
        rc = ibex_store_exec(s,
                             "INSERT INTO approvals (id, tenant_id, task_id, session_id, action, "
                             "detail, state, requested_by, created_at, expires_at) VALUES ($1, "
                             "$2, $3, $4, $5, $6, 'pending', $7, $8, $9)",
                             p, 9, NULL, NULL);
    }
    return finish_and_answer(s, a, rc, id, 201, out, r);
}

int ibex_approval_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      struct ibex_buf *out, struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    int rc = ibex_approval_expire_due(s, a->tenant_id);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    return ibex_api_tenant_get(s, a, id, fetch_approval, "approvals", "approval",
                               "APPROVAL_NOT_FOUND", out, r);
}

int ibex_approval_list(struct ibex_store *s, const struct ibex_actor *a,
                       const struct ibex_approval_query *q, struct ibex_buf *out,
                       struct ibex_api_result *r)
{
    if (ibex_api_need_tenant(a, r))
        return r->status;
    int rc = ibex_approval_expire_due(s, a->tenant_id);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    struct ibex_store_value p[] = {ibex_store_text(a->tenant_id), ibex_store_text(q->state)};
    const char *from = strcmp(q->state, "pending") == 0
                           ? " FROM pending_approvals WHERE tenant_id = $1"
                       : q->state[0] ? " FROM approvals WHERE tenant_id = $1 AND state = $2"
                                     : " FROM approvals WHERE tenant_id = $1";
    size_t n = strcmp(q->state, "pending") != 0 && q->state[0] ? 2 : 1;
    return ibex_api_page_rows(s, APPROVAL_COLS, from, "created_at DESC, id DESC", p, n, q->page,
                              q->page_size, "approvals", row_approval, out, r);
}

/* An approval as a decision reads it. */
struct current {
    char state[16]; /* "" when there is no such approval */
    char task_id[IBEX_UUID_LEN + 1];
};

static int row_current(void *data, const struct ibex_store_value *c, size_t ncols)
{
    struct current *cur = data;
    ibex_col_text(&c[0], cur->state, sizeof(cur->state));
    ibex_col_text(&c[1], cur->task_id, sizeof(cur->task_id));
    return 0;
}

static int read_current(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                        struct current *cur)
{
    memset(cur, 0, sizeof(*cur));
    struct ibex_store_value p[] = {ibex_store_text(id), ibex_store_text(a->tenant_id)};
    return ibex_store_exec(s,
                           "SELECT state, task_id FROM approvals WHERE id = $1 AND tenant_id = $2",
                           p, 2, row_current, cur);
}

static int decide(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                  json_object *body, bool approve, struct ibex_buf *out, struct ibex_api_result *r)
{
    const char *reason;
    if (ibex_api_need_tenant(a, r) || ibex_api_check_id(id, r) || ibex_api_check_body(body, r) ||
        ibex_api_get_string(body, "reason", !approve, REASON_MAX_LEN, &reason, r))
        return r->status;
    if (reason && reason[0] == '\0')
        reason = NULL;
    int64_t now = (int64_t)ibex_clock_wall_ms();
    struct current cur;
    bool decided = false;
    int rc = ibex_store_begin(s);
    if (rc)
        return ibex_api_store_failed(s, r, rc);
    /* first, so an approval past its expiry is expired, not decided */
    rc = ibex_approval_expire_locked(s, a->tenant_id, now);
    if (rc == 0)
        rc = read_current(s, a, id, &cur);
    if (rc == 0 && cur.task_id[0]) /* the task first: see the top of this file */
        rc = ibex_task_lock(s, a->tenant_id, cur.task_id);
    if (rc == 0 && cur.state[0]) {
        struct ibex_store_value p[] = {ibex_store_text(approve ? "approved" : "rejected"),
                                       ibex_store_text(reason),
                                       ibex_store_text(a->subject ? a->subject : "anonymous"),
                                       ibex_store_int(now),
                                       ibex_store_text(id),
                                       ibex_store_text(a->tenant_id)};
        rc = ibex_store_exec(s,
                             "UPDATE approvals SET state = $1, reason = $2, decided_by = $3, "
                             "decided_at = $4 WHERE id = $5 AND tenant_id = $6 AND state = "
                             "'pending' RETURNING id",
                             p, 6, ibex_row_exists, &decided);
    }
    if (rc == 0 && !decided) {
        /* read again: another decision may have committed since the first read */
        rc = read_current(s, a, id, &cur);
        ibex_store_rollback(s);
        if (rc)
            return ibex_api_store_failed(s, r, rc);
        if (cur.state[0] == '\0')
            return ibex_api_not_found(s, a, "approvals", id, "approval", "APPROVAL_NOT_FOUND", r);
        return ibex_api_fail(r, 409, "APPROVAL_ALREADY_DECIDED", "id", "the approval is already %s",
                             cur.state);
    }
    if (rc == 0 && cur.task_id[0]) {
        struct ibex_buf error;
        ibex_buf_init(&error);
        if (!approve)
            ibex_buf_appendf(&error, "approval rejected: %s", reason);
        rc = ibex_task_settle(s, a->tenant_id, cur.task_id, id, approve ? NULL : error.p, now);
        ibex_buf_dispose(&error);
    }
    if (rc == 0) {
        /* no text of the request: the reason is in the approval, its length is enough here */
        struct ibex_buf detail;
        ibex_buf_init(&detail);
        ibex_buf_append_cstr(&detail, "{");
        ibex_json_put_str(&detail, "task_id", cur.task_id[0] ? cur.task_id : NULL,
                          strlen(cur.task_id));
        ibex_buf_appendf(&detail, ",\"reason_length\":%zu}", reason ? strlen(reason) : 0);
        rc = ibex_audit(s, a, a->tenant_id, approve ? "approval.approved" : "approval.rejected", id,
                        detail.p);
        ibex_buf_dispose(&detail);
    }
    return finish_and_answer(s, a, rc, id, 200, out, r);
}

int ibex_approval_approve(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                          json_object *body, struct ibex_buf *out, struct ibex_api_result *r)
{
    return decide(s, a, id, body, true, out, r);
}

int ibex_approval_reject(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                         json_object *body, struct ibex_buf *out, struct ibex_api_result *r)
{
    return decide(s, a, id, body, false, out, r);
}
