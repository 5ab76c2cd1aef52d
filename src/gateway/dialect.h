/* A client API other than OpenAI's Chat Completions in front of the chat pipeline (chat.c), such
 * as Anthropic's Messages (messages.c). The pipeline stays one: it authenticates, applies the
 * agent's directive, routes, retries, falls back and records on the OpenAI request the dialect
 * translated, and its answer, stream and errors pass through the dialect on their way out.
 * Traces and checkpoints keep seeing OpenAI's format.
 *
 * Every function is pure (no I/O) and runs on the request's loop. */
#ifndef IBEX_GATEWAY_DIALECT_H
#define IBEX_GATEWAY_DIALECT_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/arena.h"
#include "../core/buf.h"
#include "../http/server.h"
#include "../telemetry/metrics.h"
#include "chat_request.h"

struct ibex_chat_dialect {
    enum ibex_route route;
    /* x-api-key carries the credential when there is no Authorization header */
    bool api_key_header;
    /* the body of every error response of the request (ibex_res_error) */
    ibex_http_error_fn *error_body;
    /* The client's body as an OpenAI chat request body, appended to out. Returns 0, or -1 with e
     * filled (INVALID_JSON or VALIDATION_ERROR: a 400) and out as it was. */
    int (*translate_request)(const char *body, size_t len, struct ibex_buf *out,
                             struct ibex_chat_error *e);
    /* A chat.completion body as the client's answer, appended to out. Returns 0, or -1 when body
     * is not one (the client gets a 502). chat is the request as sent. */
    int (*translate_answer)(const struct ibex_chat_request *chat, const char *body, size_t len,
                            struct ibex_buf *out);
    /* The translator of one OpenAI event stream, made in arena (released with it) when the
     * client's stream opens. feed takes the bytes in any splits; end closes the client's stream
     * (or reports that the answer stopped short); error appends the event of a failure after
     * the stream opened. Each appends what the client gets to out. */
    void *(*stream_open)(const struct ibex_chat_request *chat, struct ibex_arena *arena);
    void (*stream_feed)(void *s, const char *p, size_t len, struct ibex_buf *out);
    void (*stream_end)(void *s, struct ibex_buf *out);
    void (*stream_error)(void *s, int status, const char *code, const char *message,
                         const char *request_id, struct ibex_buf *out);
};

#endif
