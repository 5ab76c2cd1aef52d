/* fakellm internals shared by its files: the process-wide settings and counters, the knobs of one
 * generation request, the wire-format ops table (one per provider dialect: OpenAI today,
 * Anthropic and Gemini later), the response engine and the request log.
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

/* Defaults of the per-request knobs, set from the command line. */
struct fakellm_defaults {
    uint64_t chunks;
    uint64_t chunk_bytes;
    uint64_t interval_ms;
    uint64_t delay_ms;
};

/* GET /_fakellm/stats; chat == completed + aborted + active + (responses reset on purpose). */
struct fakellm_stats {
    uint64_t requests;  /* every request, any route */
    uint64_t chat;      /* generation requests */
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
    uint64_t stall_after; /* FAKELLM_NEVER when absent */
    uint64_t reset_after; /* FAKELLM_NEVER when absent */
};

/* A client-visible error, rendered by the format's error_body(). message is a static string or
 * points into storage that outlives the rendering. */
struct fakellm_error {
    int status;
    const char *code;
    const char *message;
    const char *param; /* NULL renders as null */
};

/* One generation: what the format's parser read from the request plus what the engine decided.
 * model is a NUL-terminated heap copy owned by the engine. */
struct fakellm_gen {
    char *model;
    size_t model_len;
    bool stream;
    bool include_usage;
    uint64_t prompt_tokens;
    uint64_t seq;     /* the n of the response id */
    uint64_t created; /* unix seconds */
    uint64_t chunks;
    uint64_t chunk_bytes;
};

/* A provider dialect. The engine owns timing, faults, backpressure and the connection; a format
 * only reads requests and writes bytes. Renderers append to b. */
struct fakellm_format {
    const char *name;
    /* 0 when the request carries acceptable credentials, else -1 with err filled. */
    int (*authenticate)(const struct ibex_req *req, struct fakellm_error *err);
    /* Reads the parsed body (NULL when it was not JSON) into g (model, stream, include_usage,
     * prompt_tokens). 0, or -1 with err filled; on -1 g->model is left NULL. */
    int (*parse)(json_object *body, struct fakellm_gen *g, struct fakellm_error *err);
    void (*error_body)(struct ibex_buf *b, const struct fakellm_error *err);
    /* The non-streaming response body (JSON). */
    void (*response)(struct ibex_buf *b, const struct fakellm_gen *g);
    /* Streaming: optional preamble events (NULL when none), one event per content chunk, and
     * everything after the last content chunk. */
    void (*stream_head)(struct ibex_buf *b, const struct fakellm_gen *g);
    void (*stream_chunk)(struct ibex_buf *b, const struct fakellm_gen *g, uint64_t i);
    void (*stream_tail)(struct ibex_buf *b, const struct fakellm_gen *g);
};

extern const struct fakellm_format fakellm_openai;

/* openai.c: the other OpenAI-shaped bodies. */
void fakellm_openai_error(struct ibex_buf *b, int status, const char *code, const char *message,
                          const char *param);
void fakellm_openai_models(struct ibex_buf *b);

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
/* Parses a whole decimal string, clamping it to max. 0, or -1 when s is not all digits. */
int fakellm_parse_u64(struct ibex_str s, uint64_t max, uint64_t *out);

/* reqlog.c: the log of recent requests behind GET /_fakellm/requests. */

/* Records req; body is its parsed body or NULL when it was not JSON (then the raw text is
 * kept as a string). */
void fakellm_reqlog_add(const struct ibex_req *req, json_object *body);
/* Appends {"requests":[...]} to b, oldest first. */
void fakellm_reqlog_render(struct ibex_buf *b);
void fakellm_reqlog_clear(void);

#endif
