/* Anthropic's Messages API in front of the chat pipeline (POST /v1/messages, docs/providers.md):
 * a Messages request becomes an OpenAI chat request that any provider can serve, and what the
 * pipeline answers (a chat.completion, an OpenAI event stream, an error) becomes Anthropic's.
 * Pure (no I/O), so the unit tests and the fuzz target drive every function directly; chat.c
 * reaches them through ibex_messages_dialect.
 *
 * One stream translator per answer, used by one thread at a time. Its memory is its SSE line
 * buffer (bounded by sse.line_max) plus a fixed state, whatever the length of the answer. */
#ifndef IBEX_GATEWAY_MESSAGES_H
#define IBEX_GATEWAY_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/sse.h"
#include "chat_request.h"
#include "dialect.h"

/* Caps of the model name and message id repeated in a stream's events. */
#define IBEX_MESSAGES_MODEL_MAX 256
#define IBEX_MESSAGES_ID_MAX 128

extern const struct ibex_chat_dialect ibex_messages_dialect;

/* A Messages request body as an OpenAI chat request body (strict JSON: UTF-8 checked, nesting
 * bounded), appended to out. Returns 0, or -1 with e filled: INVALID_JSON, or VALIDATION_ERROR
 * naming the first field that is missing, wrongly typed, or asks for what the translation
 * cannot give (nothing that would change the answer is dropped silently); out is then as it
 * was. */
int ibex_messages_request(const char *body, size_t len, struct ibex_buf *out,
                          struct ibex_chat_error *e);

/* A chat.completion body as a Messages answer ({"id":"msg_...","type":"message",...}), appended
 * to out. model (model_len bytes) names the model when the answer does not. Returns 0, or -1
 * when body is not a chat.completion with a choice (out is then as it was). */
int ibex_messages_answer(const char *body, size_t len, const char *model, size_t model_len,
                         struct ibex_buf *out);

/* Appends an error body in Anthropic's shape:
 * {"type":"error","error":{"type":<from status>,"message":..,"code":<ibex's code>},
 *  "request_id":..}. param and field_errors_json are not written (the message names the field);
 * request_id may be NULL. An ibex_http_error_fn. */
void ibex_messages_append_error(struct ibex_buf *b, int status, const char *code,
                                const char *message, const char *param,
                                const char *field_errors_json, const char *request_id);

enum ibex_messages_block {
    IBEX_MESSAGES_BLOCK_NONE = 0,
    IBEX_MESSAGES_BLOCK_TEXT,
    IBEX_MESSAGES_BLOCK_TOOL,
};

/* The translator of one OpenAI event stream into Anthropic's (message_start,
 * content_block_start/delta/stop, message_delta, message_stop). Fields are private. */
struct ibex_messages_stream {
    struct ibex_sse sse;
    struct ibex_buf *out; /* during a feed */
    char model[IBEX_MESSAGES_MODEL_MAX + 1];
    size_t model_len;
    enum ibex_messages_block open; /* the content block open now */
    uint32_t blocks;               /* content blocks started so far: the next one's index */
    int64_t tool;                  /* OpenAI index of the open tool call */
    int64_t last_tool;             /* highest OpenAI tool call index seen, -1 before any */
    int64_t input_tokens, output_tokens, cached_tokens; /* -1 until reported */
    const char *stop; /* the stop_reason of the first finish_reason, or NULL before one */
    bool started;     /* message_start sent */
    bool stopped;     /* message_stop sent */
    bool failed;      /* an error event sent: nothing more is */
    uint64_t skipped; /* data lines that were not a chunk */
};

/* model (model_len bytes, cut to IBEX_MESSAGES_MODEL_MAX) names the model until a chunk does. */
void ibex_messages_stream_init(struct ibex_messages_stream *s, const char *model, size_t model_len);
void ibex_messages_stream_dispose(struct ibex_messages_stream *s);
/* OpenAI SSE bytes in any splits (the output does not depend on them): chat.completion.chunk
 * data lines, "data: [DONE]", an {"error":{...}} line (an error event; nothing after it). Data
 * lines that are not JSON objects are skipped and counted. Appends Anthropic events to out. */
void ibex_messages_stream_feed(struct ibex_messages_stream *s, const char *p, size_t len,
                               struct ibex_buf *out);
/* The OpenAI stream is over: closes what is open (message_delta, message_stop), or, when it
 * stopped before any finish_reason, appends an error event. */
void ibex_messages_stream_end(struct ibex_messages_stream *s, struct ibex_buf *out);
/* A failure after the stream opened: an error event (nothing once message_stop went out or an
 * error event did). */
void ibex_messages_stream_error(struct ibex_messages_stream *s, int status, const char *code,
                                const char *message, const char *request_id, struct ibex_buf *out);

#endif
