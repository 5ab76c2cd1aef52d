/* OpenAI and OpenAI-compatible servers (Azure OpenAI, Ollama, vLLM): the client's body goes
 * upstream as it is (or with the alias's model name), and responses come back unchanged. */
#include "provider.h"

#include <string.h>

static int build_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                         const char *body, size_t body_len, const char *const *extra_headers,
                         struct ibex_arena *arena, struct ibex_upstream_request *out,
                         struct ibex_chat_error *e)
{
    size_t nextra = 0;
    while (extra_headers && extra_headers[nextra])
        nextra++;
    const char **h = ibex_arena_alloc(arena, (nextra + 4) * sizeof(*h));
    size_t n = 0;
    if (p->auth_header)
        h[n++] = p->auth_header;
    h[n++] = "Content-Type: application/json";
    h[n++] = chat->stream ? "Accept: text/event-stream" : "Accept: application/json";
    for (size_t i = 0; i < nextra; i++)
        h[n++] = extra_headers[i];
    h[n] = NULL;
    out->url = p->chat_url;
    out->headers = h;
    out->body = body;
    out->body_len = body_len;
    out->timeouts = p->cfg->timeouts;
    out->streaming = chat->stream;
    out->connect_only = false;
    return 0;
}

const struct ibex_provider_ops ibex_provider_openai = {
    .type = "openai",
    .build_request = build_request,
};
