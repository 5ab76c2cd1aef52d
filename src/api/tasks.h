/* Agent tasks (docs/tasks.md): create, get, update (state machine, phases, checkpoint,
 * metadata), a paged, filtered list, and routing to a live agent by role; all scoped to the
 * actor's tenant. Also the task side of approvals (hold, settle), called by approvals.c inside
 * its transactions. Blocking: store-pool threads only. */
#ifndef IBEX_API_TASKS_H
#define IBEX_API_TASKS_H

#include "../core/id.h"
#include "../core/str.h"
#include "resource.h"

#define IBEX_TASK_ROLE_MAX 200

struct ibex_task_query {
    int64_t page;                            /* >= 1 */
    int64_t page_size;                       /* 1-100 */
    char state[24];                          /* "" or a state */
    char agent_id[IBEX_UUID_LEN + 1];        /* "" or a UUID */
    char agent_role[IBEX_TASK_ROLE_MAX + 1]; /* "" or a role, percent-decoded */
};

/* Parses ?page=&page_size=&state=&agent_id=&agent_role= (no I/O: on the loop). Returns 0, or
 * the 400 set in r. */
int ibex_task_query_parse(struct ibex_str query, struct ibex_task_query *q,
                          struct ibex_api_result *r);

/* POST /v1/tasks: name, agent_role (required), agent_id, session_id, phases, input, metadata.
 * 201 with the task. */
int ibex_task_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                     struct ibex_buf *out, struct ibex_api_result *r);
/* GET /v1/tasks/{id}: the task with its checkpoint and input; 404 TASK_NOT_FOUND. */
int ibex_task_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                  struct ibex_buf *out, struct ibex_api_result *r);
/* PUT /v1/tasks/{id}: any of state, phase, checkpoint, metadata, checked and written in one
 * transaction. 422 INVALID_STATE_TRANSITION, 409 APPROVAL_PENDING (the task waits on an
 * approval and the change would let it proceed), 409 TASK_NOT_RUNNING (phase or checkpoint
 * of a task that is not running). */
int ibex_task_update(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                     json_object *body, struct ibex_buf *out, struct ibex_api_result *r);
/* GET /v1/tasks: newest first; items without checkpoint and input. */
int ibex_task_list(struct ibex_store *s, const struct ibex_actor *a,
                   const struct ibex_task_query *q, struct ibex_buf *out,
                   struct ibex_api_result *r);
/* POST /v1/tasks/route: task_id (required), agent_role (default: the task's). Assigns the task
 * to the tenant's live agent of that role with the fewest unfinished tasks (ties: lowest id).
 * 200 with the task; 404 TASK_NOT_FOUND, 409 TASK_FINISHED, 422 NO_AGENT_FOR_ROLE. */
int ibex_task_route(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                    struct ibex_buf *out, struct ibex_api_result *r);

/* For approvals.c, inside a transaction on s. A transaction that changes a task and an approval
 * locks the task first. */

/* Locks task_id of tenant_id until the transaction ends (nothing when there is no such task).
 * Returns 0 or a negative IBEX_E*. */
int ibex_task_lock(struct ibex_store *s, const char *tenant_id, const char *task_id);

/* Puts task_id of a's tenant, which must be running, on hold for approval_id (state
 * waiting_approval). Returns 0 with the task's session id (or "") in session_id, or the status
 * of the refusal set in r: 400 on task_id when it is not a task of the tenant, 409
 * APPROVAL_PENDING, 409 TASK_NOT_RUNNING, or a store failure. */
int ibex_task_hold(struct ibex_store *s, const struct ibex_actor *a, const char *task_id,
                   const char *approval_id, int64_t now_ms, char session_id[IBEX_UUID_LEN + 1],
                   struct ibex_api_result *r);
/* Ends task_id's wait on approval_id: error NULL resumes it (running), else it fails with error
 * and its running phase ends. Nothing happens when the task does not wait on that approval.
 * Returns 0 or a negative IBEX_E*. */
int ibex_task_settle(struct ibex_store *s, const char *tenant_id, const char *task_id,
                     const char *approval_id, const char *error, int64_t now_ms);

#endif
