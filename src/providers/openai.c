/* OpenAI and OpenAI-compatible servers (Ollama, vLLM), and Azure OpenAI: the client's body goes
 * upstream as it is (or with the alias's model name), and responses come back unchanged. Azure
 * differs in its URL only: the model names a deployment in the path, with an api-version. */
#include "provider.h"

#include <string.h>

#include "../core/buf.h"

/* The headers and body every OpenAI-format call sends, to url. */
static void fill(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                 const char *url, const char *body, size_t body_len,
                 const char *const *extra_headers, struct ibex_arena *arena,
                 struct ibex_upstream_request *out)
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
    out->url = url;
    out->headers = h;
    out->body = body;
    out->body_len = body_len;
    out->timeouts = p->cfg->timeouts;
    out->streaming = chat->stream;
    out->connect_only = false;
}

static int build_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                         const char *body, size_t body_len, const char *const *extra_headers,
                         struct ibex_arena *arena, struct ibex_upstream_request *out,
                         struct ibex_chat_error *e)
{
    fill(p, chat, p->chat_url, body, body_len, extra_headers, arena, out);
    return 0;
}

const struct ibex_provider_ops ibex_provider_openai = {
    .type = "openai",
    .build_request = build_request,
};

/* Azure OpenAI: {base_url}/openai/deployments/{model}/chat/completions?api-version=..., the
 * model being the deployment's name, which must be URL-safe. */
static int azure_build_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                               const char *body, size_t body_len, const char *const *extra_headers,
                               struct ibex_arena *arena, struct ibex_upstream_request *out,
                               struct ibex_chat_error *e)
{
    size_t n = chat->model_len;
    bool ok = n > 0 && n <= 128;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = chat->model[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '-' || ch == '_' || ch == '.';
    }
    if (!ok) {
        e->code = "VALIDATION_ERROR";
        snprintf(e->message, sizeof(e->message),
                 "model must be an Azure OpenAI deployment name: 1 to 128 letters, digits, '-', "
                 "'_' or '.'");
        snprintf(e->param, sizeof(e->param), "model");
        return -1;
    }
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_appendf(&b, "%s/openai/deployments/%.*s/chat/completions?api-version=%s",
                     p->cfg->base_url, (int)n, chat->model, p->cfg->api_version);
    char *url = ibex_arena_strndup(arena, b.p, b.len);
    ibex_buf_dispose(&b);
    fill(p, chat, url, body, body_len, extra_headers, arena, out);
    return 0;
}

const struct ibex_provider_ops ibex_provider_azure = {
    .type = "azure",
    .build_request = azure_build_request,
};
