/* fakellm internals shared by its files: the process-wide settings and counters, the knobs of one
 * generation request, the wire-format ops table (one per provider dialect: OpenAI, Anthropic,
 * Gemini), the response engine, the request-body helpers the dialects share and the request log.
 *
 * Threading: everything here belongs to the single libuv loop thread. */
#ifndef FAKELLM_H
#define FAKELLM_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../src/core/buf.h"
#include "../../src/core/str.h"
#include "../../src/http/server.h"

/* Caps applied to every numeric knob, from the CLI or a request header: larger values are
 * clamped to these. */
#define FAKELLM_MAX_CHUNKS 100000
#define FAKELLM_MAX_MS 600000 /* 10 minutes */
#define FAKELLM_MAX_CHUNK_BYTES (1024 * 1024)
#define FAKELLM_MAX_RETRY_AFTER 86400
/* A non-streaming answer is built in memory: its content may not exceed this. */
#define FAKELLM_MAX_FULL_BYTES (64 * 1024 * 1024)
/* stall_after / reset_after when the knob is absent. */
#define FAKELLM_NEVER UINT64_MAX
/* x-fakellm-tool-call: the longest function name it accepts. */
#define FAKELLM_TOOL_NAME_MAX 64
/* The arguments of every tool call fakellm makes, as JSON text. */
#define FAKELLM_TOOL_ARGS "{\"i\":0}"

/* Defaults of the per-request knobs, set from the command line. */
struct fakellm_defaults {
    uint64_t chunks;
    uint64_t chunk_bytes;
    uint64_t interval_ms;
    uint64_t delay_ms;
    uint64_t status;      /* 0: answer; else every generation fails with it */
    uint64_t retry_after; /* of an injected 429 or 503 */
    uint64_t reset_after; /* FAKELLM_NEVER: no reset */
};

/* GET /_fakellm/stats; chat == completed + aborted + active + (responses reset on purpose). */
struct fakellm_stats {
    uint64_t requests;  /* every request, any route */
    uint64_t chat;      /* generation requests, every format */
    uint64_t completed; /* generation responses sent to the end (errors included) */
    uint64_t aborted;   /* generation responses whose client went away first */
    uint64_t active;    /* generation responses in progress */
};

extern struct fakellm_defaults fakellm_defaults;
extern struct fakellm_stats fakellm_stats;

/* The knobs of one generation request, after the x-fakellm-* headers were applied. */
struct fakellm_knobs {
    int status;           /* injected error status, 0 for none */
    uint64_t retry_after; /* seconds, for injected 429 and 503 */
    uint64_t delay_ms;
    uint64_t chunks;
    uint64_t chunk_bytes;
    uint64_t interval_ms;
    uint64_t first_token_ms;
    uint64_t stall_after;                 /* FAKELLM_NEVER when absent */
    uint64_t reset_after;                 /* FAKELLM_NEVER when absent */
    char tool[FAKELLM_TOOL_NAME_MAX + 1]; /* x-fakellm-tool-call, "" when absent */
};

/* A client-visible error, rendered by the format's error_body(). message is a static string or
 * points into storage that outlives the rendering. */
struct fakellm_error {
    int status;
    const char *code;
    const char *message;
    const char *param;    /* NULL renders as null */
    uint64_t retry_after; /* seconds of the Retry-After header sent with it, 0 for none */
};

/* One generation: what the format's parser read from the request plus what the engine decided.
 * model is a NUL-terminated heap copy owned by the engine. With a tool call (tool not empty)
 * the content events are the pieces of FAKELLM_TOOL_ARGS instead of text, and chunks is the
 * format's tool_pieces. */
struct fakellm_gen {
    char *model;
    size_t model_len;
    bool stream;
    bool json_array; /* streamed as one JSON array, not SSE (Gemini without alt=sse) */
    bool include_usage;
    uint64_t prompt_tokens;
    uint64_t seq;     /* the n of the response id */
    uint64_t created; /* unix seconds */
    uint64_t chunks;  /* content events, and the completion token count */
    uint64_t chunk_bytes;
    char tool[FAKELLM_TOOL_NAME_MAX + 1]; /* the function to call, "" for a text answer */
};

/* A provider dialect. The engine owns timing, faults, backpressure and the connection; a format
 * only reads requests and writes bytes. Renderers append to b. */
struct fakellm_format {
    const char *name;
    /* Error statuses answered with a Retry-After header, 0-terminated. */
    int retry_statuses[4];
    /* Content events of a tool call: FAKELLM_TOOL_ARGS is streamed in this many pieces. */
    uint64_t tool_pieces;
    /* 0 when the request carries acceptable credentials (and the headers the dialect demands),
     * else -1 with err filled. */
    int (*authenticate)(const struct ibex_req *req, struct fakellm_error *err);
    /* Reads the request and its parsed body (NULL when it was not JSON) into g (model, stream,
     * include_usage, prompt_tokens). 0, or -1 with err filled; on -1 g->model is left NULL. */
    int (*parse)(const struct ibex_req *req, json_object *body, struct fakellm_gen *g,
                 struct fakellm_error *err);
    /* True when body, which parse() accepted, declares a function tool called name. */
    bool (*declares_tool)(json_object *body, const char *name);
    void (*error_body)(struct ibex_buf *b, const struct fakellm_error *err);
    /* The non-streaming response body (JSON). */
    void (*response)(struct ibex_buf *b, const struct fakellm_gen *g);
    /* Streaming: optional preamble events (NULL, or appending nothing, when none), one event per
     * content chunk, and everything after the last content chunk. */
    void (*stream_head)(struct ibex_buf *b, const struct fakellm_gen *g);
    void (*stream_chunk)(struct ibex_buf *b, const struct fakellm_gen *g, uint64_t i);
    void (*stream_tail)(struct ibex_buf *b, const struct fakellm_gen *g);
};

extern const struct fakellm_format fakellm_openai;
extern const struct fakellm_format fakellm_azure;
extern const struct fakellm_format fakellm_anthropic;
extern const struct fakellm_format fakellm_gemini;

/* openai.c: the other OpenAI-shaped bodies. */
void fakellm_openai_error(struct ibex_buf *b, int status, const char *code, const char *message,
                          const char *param);
void fakellm_openai_models(struct ibex_buf *b);

/* gemini.c: true for POST /v1beta/models/{model}:generateContent and :streamGenerateContent. */
bool fakellm_gemini_route(const struct ibex_req *req);

/* chat.c: the response engine. */

/* Reads the x-fakellm-* headers over the defaults. 0, or -1 with err filled (400). */
int fakellm_knobs_parse(const struct ibex_req *req, struct fakellm_knobs *k,
                        struct fakellm_error *err);
/* Handles one generation request in format fmt; body is the parsed request body or NULL, and is
 * only read during the call. Finishes req now or later. */
void fakellm_gen_start(struct ibex_req *req, const struct fakellm_format *fmt, json_object *body);
/* Appends the text of content chunk i: "tok<i> " padded with 'x' up to chunk_bytes. The text is
 * plain ASCII, safe inside a JSON string. */
void fakellm_chunk_text(struct ibex_buf *b, uint64_t i, uint64_t chunk_bytes);
/* Length of what fakellm_chunk_text() appends. */
uint64_t fakellm_chunk_len(uint64_t i, uint64_t chunk_bytes);
/* Appends the whole text of a non-streaming answer: every chunk of g, in order. */
void fakellm_gen_text(struct ibex_buf *b, const struct fakellm_gen *g);
/* Piece i (0-based) of n of FAKELLM_TOOL_ARGS; the pieces are non-empty for n up to its length
 * and concatenate to the whole. Points into static storage. */
struct ibex_str fakellm_tool_piece(uint64_t i, uint64_t n);
/* Parses a whole decimal string, clamping it to max. 0, or -1 when s is not all digits. */
int fakellm_parse_u64(struct ibex_str s, uint64_t max, uint64_t *out);

/* body.c: reading requests, shared by the formats. A NULL or mistyped json_object is accepted
 * everywhere and counts as absent. */

/* True when req has "Authorization: Bearer <token>" with a non-empty token (scheme in any case). */
bool fakellm_body_bearer(const struct ibex_req *req);

/* Characters (UTF-8 code points) of a JSON string; 0 for anything else. */
uint64_t fakellm_body_chars(json_object *s);
/* Characters of message content: a string, or an array of parts whose "text" strings count. */
uint64_t fakellm_body_text_chars(json_object *content);
/* The prompt token count for chars characters of prompt text: chars / 4, at least 1. */
uint64_t fakellm_body_tokens(uint64_t chars);
/* True when o is an object whose key is the boolean true. */
bool fakellm_body_true(json_object *o, const char *key);
/* The value of key in object o when it has type t, else NULL. */
json_object *fakellm_body_get(json_object *o, const char *key, enum json_type t);
/* True when key is absent from object o, is null, or has type t. */
bool fakellm_body_opt(json_object *o, const char *key, enum json_type t);
/* True for a JSON number (integer or not) in [lo, hi]. */
bool fakellm_body_number_in(json_object *v, double lo, double hi);
/* True when a is an array whose elements are all strings. */
bool fakellm_body_strings(json_object *a);
/* True when an element of array items (or, with inner, the object at key inner of an element)
 * has a string "name" equal to name: a tool declaration lookup. */
bool fakellm_body_named(json_object *items, const char *inner, const char *name);
/* Appends err's message as a JSON string, with "<param>: " in front when param is set and the
 * message does not start with it: how Anthropic and Gemini name the field in question. */
void fakellm_error_message(struct ibex_buf *b, const struct fakellm_error *err);
/* Fills err with a 400 (code invalid_request) and returns -1. */
int fakellm_body_invalid(struct fakellm_error *err, const char *message, const char *param);

/* reqlog.c: the log of recent requests behind GET /_fakellm/requests. */

/* Records req; body is its parsed body or NULL when it was not JSON (then the raw text is
 * kept as a string). */
void fakellm_reqlog_add(const struct ibex_req *req, json_object *body);
/* Appends {"requests":[...]} to b, oldest first. */
void fakellm_reqlog_render(struct ibex_buf *b);
void fakellm_reqlog_clear(void);

#endif
