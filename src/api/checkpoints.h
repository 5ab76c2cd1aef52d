/* Session checkpoints (docs/sessions.md): one row per chat turn of a session, queued on the
 * store writer when the response is complete, and the tenant-filtered, paged read of a
 * session's checkpoints for GET /v1/sessions/{id}/checkpoints. */
#ifndef IBEX_API_CHECKPOINTS_H
#define IBEX_API_CHECKPOINTS_H

#include <stdbool.h>

#include "../telemetry/trace.h"
#include "sessions.h"

struct ibex_checkpoint {
    const char *id;                 /* a UUIDv7 */
    const struct ibex_trace *trace; /* tenant, session, agent, trace id and the turn's facts */
    const char *request;            /* the JSON body sent upstream, directive included */
    size_t request_len;
    /* what the model answered (gateway/answer.h), any of them empty */
    const char *content;
    size_t content_len;
    const char *tool_calls; /* a JSON array */
    size_t tool_calls_len;
    const char *finish_reason; /* "" for none */
    bool truncated;            /* content or tool calls were cut at the collector's bound */
};

/* Queues the row (never blocks). Returns 0 or IBEX_EFULL (counted by the writer). */
int ibex_checkpoint_record(struct ibex_store_writer *w, const struct ibex_checkpoint *c,
                           int64_t now_ms);

/* GET /v1/sessions/{id}/checkpoints for actor a, oldest first, paged by q (its filters are not
 * used): 200 {"checkpoints":[...],"total","page","page_size"}, or 404 SESSION_NOT_FOUND. */
int ibex_checkpoint_list(struct ibex_store *s, const struct ibex_actor *a, const char *session_id,
                         const struct ibex_session_query *q, struct ibex_buf *out,
                         struct ibex_api_result *r);

#endif
