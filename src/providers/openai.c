/* OpenAI and OpenAI-compatible servers (Ollama, vLLM), and Azure OpenAI: the client's body goes
 * upstream as it is (or with the alias's model name), and responses come back unchanged. Azure
 * differs in its URL only: the model names a deployment in the path, with an api-version. */
#include "provider.h"

#include <string.h>

#include "../core/buf.h"

static int build_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                         const char *body, size_t body_len, const char *const *extra_headers,
                         struct ibex_arena *arena, struct ibex_upstream_request *out,
                         struct ibex_chat_error *e)
{
    ibex_provider_fill_request(p, chat, p->chat_url, (struct ibex_str){body, body_len}, NULL,
                               extra_headers, arena, out);
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
    if (!ok)
        return ibex_chat_error_add(e, "model",
                                   "must be an Azure OpenAI deployment name: 1 to 128 letters, "
                                   "digits, '-', '_' or '.'");
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_appendf(&b, "%s/openai/deployments/%.*s/chat/completions?api-version=%s",
                     p->cfg->base_url, (int)n, chat->model, p->cfg->api_version);
    char *url = ibex_arena_strndup(arena, b.p, b.len);
    ibex_buf_dispose(&b);
    ibex_provider_fill_request(p, chat, url, (struct ibex_str){body, body_len}, NULL, extra_headers,
                               arena, out);
    return 0;
}

const struct ibex_provider_ops ibex_provider_azure = {
    .type = "azure",
    .build_request = azure_build_request,
};
