/* Sessions (docs/sessions.md): create, get, update (state machine and metadata) and a paged,
 * filtered list, all scoped to the actor's tenant. Blocking: store-pool threads only. */
#ifndef IBEX_API_SESSIONS_H
#define IBEX_API_SESSIONS_H

#include "../core/str.h"
#include "../store/writer.h"
#include "resource.h"

/* The agent_role of a session a chat turn created (no X-IBEX-Session-ID). */
#define IBEX_SESSION_CHAT_ROLE "chat"

struct ibex_session_query {
    int64_t page;      /* >= 1 */
    int64_t page_size; /* 1-100 */
    char state[16];    /* "" or a state */
    char agent_id[40]; /* "" or a UUID */
};

/* Parses ?page=&page_size=&state=&agent_id= (no I/O: on the loop). Returns 0, or the 400 set
 * in r. */
int ibex_session_query_parse(struct ibex_str query, struct ibex_session_query *q,
                             struct ibex_api_result *r);

int ibex_session_create(struct ibex_store *s, const struct ibex_actor *a, json_object *body,
                        struct ibex_buf *out, struct ibex_api_result *r);
int ibex_session_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                     struct ibex_buf *out, struct ibex_api_result *r);
/* PUT: body "status" and/or "metadata"; 422 INVALID_STATE_TRANSITION for a change the state
 * machine forbids. */
int ibex_session_update(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                        json_object *body, struct ibex_buf *out, struct ibex_api_result *r);
int ibex_session_list(struct ibex_store *s, const struct ibex_actor *a,
                      const struct ibex_session_query *q, struct ibex_buf *out,
                      struct ibex_api_result *r);

/* A chat turn's session.
 * ibex_session_record_new queues the row of a session a turn creates (state active), never
 * blocking. ibex_session_join is for a turn that names its session: *state gets the session's
 * state ("" when the actor's tenant has no such session: then 404 SESSION_NOT_FOUND is in r,
 * and a foreign id is audited); a pending session becomes active. Returns 0 or r's status. */
int ibex_session_record_new(struct ibex_store_writer *w, const char *id, const char *tenant_id,
                            const char *agent_id, int64_t now_ms);
int ibex_session_join(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                      char state[16], struct ibex_api_result *r);

#endif
