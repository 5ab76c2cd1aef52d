/* Providers behind one ops table (STYLE 3). The gateway engine owns I/O, timeouts and
 * streaming; a provider only says how to talk to its upstream. Remote providers fill an
 * upstream request; local ones (the mock) answer in-process.
 *
 * The provider set is built once from the config on the main thread and shared read-only by
 * every worker. */
#ifndef IBEX_PROVIDERS_PROVIDER_H
#define IBEX_PROVIDERS_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"
#include "../core/arena.h"
#include "../core/buf.h"
#include "../gateway/chat_request.h"
#include "../upstream/upstream.h"

struct ibex_provider;

/* What a translating provider's decoder of one streamed answer reports besides the bytes; each
 * provider's decoder state starts with one. */
struct ibex_provider_stream {
    int64_t prompt_tokens, completion_tokens; /* -1 until the provider reports them */
    const char *error; /* why the stream broke (static text, no prompt or answer text), once a
                          call returned -1 */
};

struct ibex_provider_ops {
    const char *type;
    /* Remote: fills out (url, headers, body) for a chat completion; every pointer must live in
     * arena or in the provider. body/body_len hold the request in OpenAI's format as it goes
     * upstream (the alias's model name, the agent's directive); chat is the same request,
     * parsed. Returns 0, or -1 with e filled (VALIDATION_ERROR and the field) when the request
     * asks for something the provider cannot do: the client gets a 400, nothing is dropped
     * silently. NULL for local providers. */
    int (*build_request)(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                         const char *body, size_t body_len, const char *const *extra_headers,
                         struct ibex_arena *arena, struct ibex_upstream_request *out,
                         struct ibex_chat_error *e);
    /* Local: writes the answer into out, a chat.completion object or, when chat->stream, the
     * whole SSE event stream. NULL for remote providers. */
    void (*answer)(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                   struct ibex_buf *out);

    /* Translating providers turn their 2xx answers into OpenAI's format; these are NULL when the
     * provider already speaks it. Error bodies are not translated: every provider puts its
     * message at error.message. */
    /* Non-streaming: the whole body, appended to out as a chat.completion object. Returns 0, or
     * -1 when body is not an answer in the provider's format (the client gets a 502). */
    int (*translate_answer)(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                            const char *body, size_t len, struct ibex_buf *out);
    /* Streaming: stream_open makes the decoder of one answer in arena (anything it holds
     * outside the arena is released by an ibex_arena_on_free it registers). stream_feed takes
     * the provider's bytes in any splits and appends chat.completion.chunk events
     * ("data: {...}\n\n") to out; stream_end, once the provider's stream is over, appends what
     * closes it (the usage chunk when chat->include_usage, then "data: [DONE]\n\n"). Both
     * return 0, or -1 with s->error set when the provider's stream reports an error or ends
     * before its end: the client's stream then ends with an error event. */
    struct ibex_provider_stream *(*stream_open)(const struct ibex_provider *p,
                                                const struct ibex_chat_request *chat,
                                                struct ibex_arena *arena);
    int (*stream_feed)(struct ibex_provider_stream *s, const char *p, size_t len,
                       struct ibex_buf *out);
    int (*stream_end)(struct ibex_provider_stream *s, struct ibex_buf *out);
};

struct ibex_provider {
    const struct ibex_provider_ops *ops;
    const struct ibex_provider_config *cfg;
    size_t index; /* position in the set: metrics label index */
    char *chat_url;
    char *auth_header;       /* the configured (system) key's header line, or NULL */
    const char *auth_prefix; /* what precedes a key in that header: "Authorization: Bearer " */
};

/* One place a model is served. The circuit breaker state is shared by every worker: written
 * only when an attempt fails, or succeeds after failures, so healthy traffic writes nothing. */
struct ibex_deployment {
    const struct ibex_provider *provider;
    const char *model; /* the upstream model name; NULL: the client's, unchanged */
    uint32_t weight;
    char *auth_header;         /* the deployment's own key header line, or NULL: the provider's */
    size_t index;              /* metrics label index */
    _Atomic uint32_t failures; /* consecutive failed attempts */
    _Atomic int64_t open_until_ms; /* out of rotation until then (wall clock); 0 = in */
};

/* What a client's model name resolves to: a configured alias, or one provider serving the
 * name unchanged (the default provider, the mock). */
struct ibex_alias {
    const char *name;
    struct ibex_deployment *d;
    size_t n;
};

#define IBEX_ALIAS_MAX_DEPLOYMENTS IBEX_CONFIG_MAX_DEPLOYMENTS

struct ibex_providers {
    struct ibex_provider *list;
    size_t n;
    const struct ibex_provider *default_provider; /* or NULL */
    const struct ibex_config *cfg;
    const char **names;         /* for metric labels */
    struct ibex_alias *aliases; /* cfg->models, then one per provider (the name unchanged) */
    size_t naliases;
    struct ibex_deployment **deployments;                   /* every deployment, by index */
    const char **deployment_providers, **deployment_models; /* their metric labels */
    size_t ndeployments;
};

extern const struct ibex_provider_ops ibex_provider_openai;
extern const struct ibex_provider_ops ibex_provider_azure;
extern const struct ibex_provider_ops ibex_provider_gemini;
extern const struct ibex_provider_ops ibex_provider_anthropic;
extern const struct ibex_provider_ops ibex_provider_mock;

/* For a remote provider's build_request: fills out for POST url with body. The headers, in
 * arena: the key header (when a key is configured), own_header (the provider's fixed header, or
 * NULL), Content-Type, Accept (an event stream when chat->stream), then extra_headers (the
 * client's forwarded ones, NULL-terminated; may be NULL). Nothing is copied: url, body and the
 * headers must live in arena or in the provider, like every pointer of out. */
void ibex_provider_fill_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                                const char *url, struct ibex_str body, const char *own_header,
                                const char *const *extra_headers, struct ibex_arena *arena,
                                struct ibex_upstream_request *out);

void ibex_providers_init(struct ibex_providers *ps, const struct ibex_config *cfg);
void ibex_providers_dispose(struct ibex_providers *ps);

/* Resolves a client's model name: an alias, the mock model, or the default provider with the
 * name unchanged. Returns NULL when nothing serves it. */
const struct ibex_alias *ibex_providers_route(const struct ibex_providers *ps, const char *model);

/* The order in which a request tries the alias's deployments: first one picked by weight among
 * those in rotation (rnd: a random number), then the others in rotation, in list order. Returns
 * how many were written to out (at most IBEX_ALIAS_MAX_DEPLOYMENTS); 0 when every deployment
 * is out, *retry_ms then says when the first comes back. */
size_t ibex_alias_plan(const struct ibex_alias *a, int64_t now_ms, uint64_t rnd,
                       struct ibex_deployment **out, int64_t *retry_ms);
/* The circuit breaker: an attempt's outcome. After breaker_failures consecutive failures the
 * deployment is out for breaker_cooldown; then one attempt may try it again, and it is out
 * again at its first failure, or back for good at its first success. */
void ibex_deployment_report(struct ibex_deployment *d, bool failed,
                            const struct ibex_routing_config *rc, int64_t now_ms);

#endif
