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

#include "../config/config.h"
#include "../core/arena.h"
#include "../core/buf.h"
#include "../gateway/chat_request.h"
#include "../upstream/upstream.h"

struct ibex_provider;

struct ibex_provider_ops {
    const char *type;
    /* Remote: fills out (url, headers, body) for a chat completion; every pointer must live in
     * arena or in the provider. body/body_len hold the client's body, already rewritten when an
     * alias renames the model. NULL for local providers. */
    void (*build_request)(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                          const char *body, size_t body_len, const char *const *extra_headers,
                          struct ibex_arena *arena, struct ibex_upstream_request *out);
    /* Local: writes the answer into out, a chat.completion object or, when chat->stream, the
     * whole SSE event stream. NULL for remote providers. */
    void (*answer)(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                   struct ibex_buf *out);
};

struct ibex_provider {
    const struct ibex_provider_ops *ops;
    const struct ibex_provider_config *cfg;
    size_t index; /* position in the set: metrics label index */
    char *chat_url;
    char *auth_header;
};

struct ibex_providers {
    struct ibex_provider *list;
    size_t n;
    const struct ibex_provider *default_provider; /* or NULL */
    const struct ibex_config *cfg;
    const char **names; /* for metric labels */
};

extern const struct ibex_provider_ops ibex_provider_openai;
extern const struct ibex_provider_ops ibex_provider_mock;

void ibex_providers_init(struct ibex_providers *ps, const struct ibex_config *cfg);
void ibex_providers_dispose(struct ibex_providers *ps);

/* Resolves a client's model name: an alias, the mock model, or the default provider with the
 * name unchanged. Returns NULL when nothing serves it; *upstream_model is the name to send. */
const struct ibex_provider *ibex_providers_route(const struct ibex_providers *ps, const char *model,
                                                 const char **upstream_model);

#endif
