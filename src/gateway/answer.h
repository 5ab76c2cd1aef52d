/* What a chat completion answered, collected from the provider's bytes as they are relayed: the
 * assistant text, the tool calls, the finish reason, the model and the token usage, for session
 * checkpoints, traces and cost. Pure (no I/O), so the fuzz target drives it directly.
 *
 * One answer per turn, used by one thread at a time. Memory is bounded by max_bytes (content
 * and tool_calls together, plus a scratch buffer of the same bound) and sse.line_max (the partial
 * SSE line being buffered), whatever the provider sends. */
#ifndef IBEX_GATEWAY_ANSWER_H
#define IBEX_GATEWAY_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/sse.h"

struct ibex_answer_call; /* private: one assembled tool call */

struct ibex_answer {
    /* The assistant text: message.content, or the concatenated delta.content of a stream
     * (choice index 0 only). len 0 when none (p may then be NULL). */
    struct ibex_buf content;
    /* JSON array text of the tool calls of choice 0, ordered by index, each
     * {"id":..,"type":..,"function":{"name":..,"arguments":..}}; len 0 when none. Stream deltas
     * merge by index: a non-empty id, type or function.name replaces the one before (type is
     * "function" until one is named), function.arguments pieces are concatenated. Always a
     * valid JSON array, truncated or not. */
    struct ibex_buf tool_calls;
    char finish_reason[32]; /* "" when none seen; the last one seen otherwise */
    char model[128];        /* the first non-empty model the provider names, "" when none */
    int64_t prompt_tokens, completion_tokens, total_tokens; /* -1 when not reported */
    bool done;                                              /* a stream saw data: [DONE] */
    bool truncated;      /* content or tool_calls hit max_bytes; neither grows any more */
    uint64_t skipped;    /* stream data lines that were not a JSON object */
    size_t max_bytes;    /* cap of content.len + tool_calls.len */
    struct ibex_sse sse; /* the stream's lines: sse.line_max bounds one, sse.skipped counts
                            those over it */
    /* The common shapes (a text answer or chunk) are read in place; json_c_only (set after
     * init, for the differential tests) sends everything through json-c instead.
     * fast_events counts the bodies and data lines read in place. */
    bool json_c_only;
    uint64_t fast_events;
    /* private */
    struct ibex_buf scratch; /* escaped text on its way into tool_calls */
    struct ibex_answer_call *calls;
    size_t ncalls, calls_cap;
};

/* max_bytes caps content + tool_calls (e.g. 1 MiB). */
void ibex_answer_init(struct ibex_answer *a, size_t max_bytes);
void ibex_answer_dispose(struct ibex_answer *a);

/* A complete non-streaming response body (a chat.completion: a JSON object with a "choices"
 * array), given to a freshly initialised answer. Returns 0, or -1 if body is not one (strict
 * JSON, UTF-8 checked); the answer then stays empty. Fields of the wrong type are ignored. */
int ibex_answer_from_json(struct ibex_answer *a, const char *body, size_t len);

/* Streaming: the SSE bytes exactly as they arrive, in arbitrary splits (a chunk may end
 * mid-line, mid-UTF-8 sequence, mid-"\r\n"); the result does not depend on the splits. Each line
 * "data: {json}" is parsed on its own as a chat.completion.chunk (a JSON value spread over
 * several data lines is not joined: it counts as skipped); "data: [DONE]" sets done; comments
 * (":...") and other fields (event:, id:, retry:) are ignored; CRLF, LF and CR all end lines. A
 * line longer than sse.line_max is skipped. Usage comes from the last chunk that carries a "usage"
 * object (stream_options.include_usage). Never fails: malformed events count in skipped. A
 * last line without its line end stays buffered (the next feed may complete it). */
void ibex_answer_feed_sse(struct ibex_answer *a, const char *p, size_t len);

#endif
