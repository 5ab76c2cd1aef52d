/* The provider set and model routing: aliases, their deployments, the order a request tries
 * them in, and each deployment's circuit breaker. Lookup is a linear scan: operators configure
 * tens of aliases, not thousands. Also the upstream request every remote provider fills the
 * same way (key header, content type, accept, forwarded headers, timeouts). */
#include "provider.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/buf.h"

static const struct ibex_provider *by_name(const struct ibex_providers *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->list[i].cfg->name, name))
            return &ps->list[i];
    return NULL;
}

/* The configured aliases, then one alias per provider for model names no alias claims. */
static void aliases_init(struct ibex_providers *ps, const struct ibex_config *cfg)
{
    ps->naliases = cfg->nmodels + ps->n;
    ps->aliases = ibex_xcalloc(ps->naliases, sizeof(*ps->aliases));
    size_t total = ps->n;
    for (size_t i = 0; i < cfg->nmodels; i++)
        total += cfg->models[i].ndeployments;
    ps->deployments = ibex_xcalloc(total, sizeof(*ps->deployments));
    ps->deployment_providers = ibex_xcalloc(total, sizeof(*ps->deployment_providers));
    ps->deployment_models = ibex_xcalloc(total, sizeof(*ps->deployment_models));
    for (size_t i = 0; i < ps->naliases; i++) {
        struct ibex_alias *a = &ps->aliases[i];
        const struct ibex_model_config *m = i < cfg->nmodels ? &cfg->models[i] : NULL;
        a->name = m ? m->name : ps->list[i - cfg->nmodels].cfg->name;
        a->n = m ? m->ndeployments : 1;
        a->d = ibex_xcalloc(a->n, sizeof(*a->d));
        for (size_t k = 0; k < a->n; k++) {
            struct ibex_deployment *d = &a->d[k];
            d->provider = m ? by_name(ps, m->deployments[k].provider) : &ps->list[i - cfg->nmodels];
            d->model = m ? m->deployments[k].model : NULL;
            if (m && m->deployments[k].api_key) {
                struct ibex_buf b;
                ibex_buf_init(&b);
                ibex_buf_appendf(&b, "%s%s", d->provider->auth_prefix, m->deployments[k].api_key);
                d->auth_header = ibex_buf_steal(&b, NULL);
            }
            d->weight = m ? m->deployments[k].weight : 1;
            d->index = ps->ndeployments;
            ps->deployment_providers[d->index] = d->provider->cfg->name;
            ps->deployment_models[d->index] = d->model ? d->model : "*";
            ps->deployments[ps->ndeployments++] = d;
        }
    }
}

void ibex_provider_fill_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                                const char *url, struct ibex_str body, const char *own_header,
                                const char *const *extra_headers, struct ibex_arena *arena,
                                struct ibex_upstream_request *out)
{
    size_t nextra = 0;
    while (extra_headers && extra_headers[nextra])
        nextra++;
    const char **h = ibex_arena_alloc(arena, (nextra + 5) * sizeof(*h));
    size_t n = 0;
    if (p->auth_header)
        h[n++] = p->auth_header;
    if (own_header)
        h[n++] = own_header;
    h[n++] = "Content-Type: application/json";
    h[n++] = chat->stream ? "Accept: text/event-stream" : "Accept: application/json";
    for (size_t i = 0; i < nextra; i++)
        h[n++] = extra_headers[i];
    h[n] = NULL;
    out->url = url;
    out->headers = h;
    out->body = body.p;
    out->body_len = body.len;
    out->timeouts = p->cfg->timeouts;
    out->streaming = chat->stream;
    out->connect_only = false;
}

void ibex_providers_init(struct ibex_providers *ps, const struct ibex_config *cfg)
{
    memset(ps, 0, sizeof(*ps));
    ps->cfg = cfg;
    ps->n = cfg->nproviders;
    ps->list = ibex_xcalloc(ps->n, sizeof(*ps->list));
    ps->names = ibex_xcalloc(ps->n, sizeof(*ps->names));
    for (size_t i = 0; i < ps->n; i++) {
        struct ibex_provider *p = &ps->list[i];
        p->cfg = &cfg->providers[i];
        p->index = i;
        ps->names[i] = p->cfg->name;
        if (p->cfg->type == IBEX_PROVIDER_MOCK) {
            p->ops = &ibex_provider_mock;
            continue;
        }
        /* the path of a chat call under base_url, and the header the key goes in */
        const char *path = "/chat/completions", *auth = "Authorization: Bearer ";
        switch (p->cfg->type) {
        case IBEX_PROVIDER_ANTHROPIC:
            p->ops = &ibex_provider_anthropic;
            path = "/v1/messages";
            auth = "x-api-key: ";
            break;
        case IBEX_PROVIDER_AZURE: /* builds its URL per request (the deployment is in the path) */
            p->ops = &ibex_provider_azure;
            path = "";
            auth = "api-key: ";
            break;
        case IBEX_PROVIDER_GEMINI: /* builds its URL per request (the model is in the path) */
            p->ops = &ibex_provider_gemini;
            path = "";
            auth = "x-goog-api-key: ";
            break;
        default:
            p->ops = &ibex_provider_openai;
            break;
        }
        p->auth_prefix = auth;
        struct ibex_buf b;
        ibex_buf_init(&b);
        ibex_buf_appendf(&b, "%s%s", p->cfg->base_url, path);
        p->chat_url = ibex_buf_steal(&b, NULL);
        if (p->cfg->api_key) {
            ibex_buf_appendf(&b, "%s%s", auth, p->cfg->api_key);
            p->auth_header = ibex_buf_steal(&b, NULL);
        }
    }
    if (cfg->default_provider && cfg->default_provider[0])
        for (size_t i = 0; i < ps->n; i++)
            if (!strcmp(ps->list[i].cfg->name, cfg->default_provider))
                ps->default_provider = &ps->list[i];
    aliases_init(ps, cfg);
}

/* Frees a key header, wiped before the memory goes back to the allocator. */
static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void ibex_providers_dispose(struct ibex_providers *ps)
{
    for (size_t i = 0; i < ps->naliases; i++) {
        for (size_t k = 0; k < ps->aliases[i].n; k++)
            wipe_free(ps->aliases[i].d[k].auth_header);
        free(ps->aliases[i].d);
    }
    free(ps->aliases);
    free(ps->deployments);
    free(ps->deployment_providers);
    free(ps->deployment_models);
    for (size_t i = 0; i < ps->n; i++) {
        free(ps->list[i].chat_url);
        wipe_free(ps->list[i].auth_header);
    }
    free(ps->list);
    free(ps->names);
    memset(ps, 0, sizeof(*ps));
}

const struct ibex_alias *ibex_providers_route(const struct ibex_providers *ps, const char *model)
{
    for (size_t i = 0; i < ps->cfg->nmodels; i++)
        if (!strcmp(ps->aliases[i].name, model))
            return &ps->aliases[i];
    const struct ibex_provider *mock = by_name(ps, "mock");
    if (mock && mock->cfg->type == IBEX_PROVIDER_MOCK && !strcmp(model, "mock"))
        return &ps->aliases[ps->cfg->nmodels + mock->index];
    if (ps->default_provider)
        return &ps->aliases[ps->cfg->nmodels + ps->default_provider->index];
    return NULL;
}

size_t ibex_alias_plan(const struct ibex_alias *a, int64_t now_ms, uint64_t rnd,
                       struct ibex_deployment **out, int64_t *retry_ms)
{
    size_t n = 0, first = 0;
    uint64_t weights = 0;
    int64_t back = INT64_MAX;
    for (size_t i = 0; i < a->n && n < IBEX_ALIAS_MAX_DEPLOYMENTS; i++) {
        struct ibex_deployment *d = &a->d[i];
        int64_t until = atomic_load_explicit(&d->open_until_ms, memory_order_relaxed);
        if (until > now_ms) {
            back = until < back ? until : back;
            continue;
        }
        out[n++] = d;
        weights += d->weight;
    }
    if (n == 0) {
        *retry_ms = back == INT64_MAX ? 0 : back - now_ms;
        return 0;
    }
    /* the first attempt by weight; the fallbacks keep the list's order */
    if (weights > 0) {
        uint64_t pick = rnd % weights;
        while (pick >= out[first]->weight)
            pick -= out[first++]->weight;
    }
    struct ibex_deployment *chosen = out[first];
    memmove(out + 1, out, first * sizeof(*out));
    out[0] = chosen;
    return n;
}

void ibex_deployment_report(struct ibex_deployment *d, bool failed,
                            const struct ibex_routing_config *rc, int64_t now_ms)
{
    if (!failed) {
        if (atomic_load_explicit(&d->failures, memory_order_relaxed) != 0) {
            atomic_store_explicit(&d->failures, 0, memory_order_relaxed);
            atomic_store_explicit(&d->open_until_ms, 0, memory_order_relaxed);
        }
        return;
    }
    uint32_t f = atomic_fetch_add_explicit(&d->failures, 1, memory_order_relaxed) + 1;
    if (rc->breaker_failures > 0 && f >= (uint64_t)rc->breaker_failures)
        atomic_store_explicit(&d->open_until_ms, now_ms + (int64_t)rc->breaker_cooldown_ms,
                              memory_order_relaxed);
}
