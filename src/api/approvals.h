/* Human approvals (docs/tasks.md): request, get, a paged list, approve and reject, all scoped to
 * the actor's tenant. An approval may gate a task: requesting it holds the task
 * (waiting_approval), approving resumes it, rejecting or letting it expire fails it.
 *
 * Expiry is applied when it is seen: every task and approval operation first turns the tenant's
 * pending approvals past expires_at into expired ones (and fails the tasks waiting on them), so
 * no answer shows a pending approval that has expired. Blocking: store-pool threads only. */
#ifndef IBEX_API_APPROVALS_H
#define IBEX_API_APPROVALS_H

#include "../core/str.h"
#include "resource.h"

struct ibex_approval_query {
    int64_t page;      /* >= 1 */
    int64_t page_size; /* 1-100 */
    char state[16];    /* "" or a state */
};

/* Parses ?page=&page_size=&state= (no I/O: on the loop). Returns 0, or the 400 set in r. */
int ibex_approval_query_parse(struct ibex_str query, struct ibex_approval_query *q,
                              struct ibex_api_result *r);

/* POST /v1/approvals: action (required), task_id, session_id, detail, expires_in. 201 with the
 * approval; with a task_id, the task (which must be running) now waits on it. */
int ibex_approval_request(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                          struct ibex_buf *out, struct ibex_api_result *r);
/* GET /v1/approvals/{id}: 404 APPROVAL_NOT_FOUND. */
int ibex_approval_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      struct ibex_buf *out, struct ibex_api_result *r);
/* GET /v1/approvals: newest first. */
int ibex_approval_list(struct ibex_store *s, const struct ibex_actor *a,
                       const struct ibex_approval_query *q, struct ibex_buf *out,
                       struct ibex_api_result *r);
/* POST /v1/approvals/{id}/approve (body: optional reason) and /reject (body: reason, required).
 * 200 with the approval; 409 APPROVAL_ALREADY_DECIDED when it is not pending (approved,
 * rejected, expired or cancelled). Audited as approval.approved / approval.rejected. */
int ibex_approval_approve(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                          json_object *body, struct ibex_buf *out, struct ibex_api_result *r);
int ibex_approval_reject(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                         json_object *body, struct ibex_buf *out, struct ibex_api_result *r);

/* For tasks.c. */

/* Outside a transaction: expires tenant_id's pending approvals past due, in a transaction of its
 * own, when there is any. Returns 0 or a negative IBEX_E*. */
int ibex_approval_expire_due(struct ibex_store *s, const char *tenant_id);
/* Inside a transaction: the same, always. */
int ibex_approval_expire_locked(struct ibex_store *s, const char *tenant_id, int64_t now_ms);
/* Inside a transaction: pending approval_id becomes cancelled (its task was cancelled). */
int ibex_approval_withdraw(struct ibex_store *s, const char *tenant_id, const char *approval_id,
                           int64_t now_ms);

#endif
