/* The provider set and model routing. Lookup is a linear scan: operators configure tens of
 * aliases, not thousands, and the scan touches one cache line per alias. */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/buf.h"

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
        p->ops = &ibex_provider_openai;
        struct ibex_buf b;
        ibex_buf_init(&b);
        ibex_buf_appendf(&b, "%s/chat/completions", p->cfg->base_url);
        p->chat_url = ibex_buf_steal(&b, NULL);
        if (p->cfg->api_key) {
            ibex_buf_appendf(&b, "Authorization: Bearer %s", p->cfg->api_key);
            p->auth_header = ibex_buf_steal(&b, NULL);
        }
    }
    if (cfg->default_provider && cfg->default_provider[0])
        for (size_t i = 0; i < ps->n; i++)
            if (!strcmp(ps->list[i].cfg->name, cfg->default_provider))
                ps->default_provider = &ps->list[i];
}

void ibex_providers_dispose(struct ibex_providers *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        free(ps->list[i].chat_url);
        if (ps->list[i].auth_header) {
            /* wipe the key before the memory goes back to the allocator */
            memset(ps->list[i].auth_header, 0, strlen(ps->list[i].auth_header));
            free(ps->list[i].auth_header);
        }
    }
    free(ps->list);
    free(ps->names);
    memset(ps, 0, sizeof(*ps));
}

static const struct ibex_provider *by_name(const struct ibex_providers *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->list[i].cfg->name, name))
            return &ps->list[i];
    return NULL;
}

const struct ibex_provider *ibex_providers_route(const struct ibex_providers *ps, const char *model,
                                                 const char **upstream_model)
{
    for (size_t i = 0; i < ps->cfg->nmodels; i++) {
        const struct ibex_model_config *m = &ps->cfg->models[i];
        if (!strcmp(m->name, model)) {
            *upstream_model = m->model;
            return by_name(ps, m->provider);
        }
    }
    const struct ibex_provider *mock = by_name(ps, "mock");
    if (mock && mock->cfg->type == IBEX_PROVIDER_MOCK && !strcmp(model, "mock")) {
        *upstream_model = model;
        return mock;
    }
    *upstream_model = model;
    return ps->default_provider;
}
