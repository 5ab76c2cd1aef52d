/* src/providers: model routing (alias, mock, default), the OpenAI request builder, and the
 * mock provider's answers (plain and SSE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <strings.h>

#include "../../src/config/config.h"
#include "../../src/core/arena.h"
#include "../../src/providers/provider.h"
#include "testutil.h"

struct fx {
    struct ibex_config cfg;
    struct ibex_providers ps;
    char path[64];
};

static const char yaml[] = "default_provider: local\n"
                           "upstream_total_timeout: 90s\n"
                           "providers:\n"
                           "  - name: local\n"
                           "    type: openai\n"
                           "    base_url: http://127.0.0.1:9/v1/\n"
                           "    api_key: sk-unit-test\n"
                           "    idle_timeout: 7s\n"
                           "  - name: keyless\n"
                           "    type: openai\n"
                           "    base_url: https://keyless.test/api\n"
                           "models:\n"
                           "  - name: fast\n"
                           "    provider: local\n"
                           "    model: llama3.1:8b\n"
                           "  - name: open\n"
                           "    provider: keyless\n"
                           "  - name: mocked\n"
                           "    provider: mock\n"
                           "    model: mock\n";

/* Loads yaml text (plus flags) into a config and builds the provider set. */
static struct fx *fx_new(const char *text, int argc, const char **flags)
{
    tu_unsetenv_prefix("IBEX_"); /* nothing from the host environment */
    tu_unsetenv_prefix("OPENAI_");
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(tu_write_temp(text, f->path), 0);
    const char *argv[8] = {"--config", f->path};
    for (int i = 0; i < argc && i < 6; i++)
        argv[2 + i] = flags[i];
    char err[256];
    if (ibex_config_load(&f->cfg, 2 + argc, (char **)argv, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    ibex_providers_init(&f->ps, &f->cfg);
    return f;
}

static void fx_free(struct fx *f)
{
    ibex_providers_dispose(&f->ps);
    ibex_config_dispose(&f->cfg);
    unlink(f->path);
    free(f);
}

static const struct ibex_provider *by_name(const struct ibex_providers *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->list[i].cfg->name, name))
            return &ps->list[i];
    return NULL;
}

static void test_set_mirrors_config(void **state)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    assert_int_equal(f->ps.n, f->cfg.nproviders);
    assert_int_equal(f->ps.n, 3); /* local, keyless, mock */
    for (size_t i = 0; i < f->ps.n; i++) {
        assert_int_equal(f->ps.list[i].index, i);
        assert_ptr_equal(f->ps.list[i].cfg, &f->cfg.providers[i]);
        assert_string_equal(f->ps.names[i], f->cfg.providers[i].name);
    }
    assert_ptr_equal(by_name(&f->ps, "local")->ops, &ibex_provider_openai);
    assert_ptr_equal(by_name(&f->ps, "mock")->ops, &ibex_provider_mock);
    assert_non_null(ibex_provider_openai.build_request);
    assert_null(ibex_provider_openai.answer);
    assert_non_null(ibex_provider_mock.answer);
    assert_null(ibex_provider_mock.build_request);
    assert_ptr_equal(f->ps.default_provider, by_name(&f->ps, "local"));
    fx_free(f);
}

/* The first deployment of what model resolves to, and the model name it is sent under. */
static const struct ibex_provider *route(struct fx *f, const char *model, const char **up)
{
    const struct ibex_alias *a = ibex_providers_route(&f->ps, model);
    if (a == NULL)
        return NULL;
    *up = a->d[0].model ? a->d[0].model : model;
    return a->d[0].provider;
}

static void test_route_alias(void **state)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    const char *up = NULL;
    const struct ibex_provider *p = route(f, "fast", &up);
    assert_ptr_equal(p, by_name(&f->ps, "local"));
    assert_string_equal(up, "llama3.1:8b");
    p = route(f, "open", &up);
    assert_ptr_equal(p, by_name(&f->ps, "keyless"));
    assert_string_equal(up, "open"); /* alias without model: same name upstream */
    p = route(f, "mocked", &up);
    assert_ptr_equal(p, by_name(&f->ps, "mock"));
    assert_string_equal(up, "mock");
    /* exact, case-sensitive names */
    p = route(f, "FAST", &up);
    assert_ptr_equal(p, f->ps.default_provider);
    assert_string_equal(up, "FAST");
    fx_free(f);
}

static void test_route_mock_and_default(void **state)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    const char *up = NULL;
    const struct ibex_provider *p = route(f, "mock", &up);
    assert_non_null(p);
    assert_ptr_equal(p->ops, &ibex_provider_mock);
    assert_string_equal(up, "mock");
    p = route(f, "gpt-4o-mini", &up);
    assert_ptr_equal(p, by_name(&f->ps, "local"));
    assert_string_equal(up, "gpt-4o-mini");
    fx_free(f);
}

static void test_route_without_default(void **state)
{
    struct fx *f = fx_new("models:\n  - name: m1\n    provider: mock\n", 0, NULL);
    assert_null(f->ps.default_provider);
    const char *up = NULL;
    assert_null(route(f, "gpt-4o", &up));
    assert_ptr_equal(route(f, "mock", &up)->ops, &ibex_provider_mock);
    assert_ptr_equal(route(f, "m1", &up)->ops, &ibex_provider_mock);
    assert_string_equal(up, "m1");
    fx_free(f);
}

static void test_route_mock_disabled(void **state)
{
    const char *flags[] = {"--mock=false"};
    struct fx *f = fx_new("default_provider: up\nproviders:\n  - name: up\n    type: openai\n"
                          "    base_url: http://127.0.0.1:9\n",
                          1, flags);
    const char *up = NULL;
    /* no mock provider: "mock" is just another model name for the default provider */
    const struct ibex_provider *p = route(f, "mock", &up);
    assert_ptr_equal(p, by_name(&f->ps, "up"));
    assert_string_equal(up, "mock");
    fx_free(f);

    f = fx_new("", 1, flags);
    assert_int_equal(f->ps.n, 0);
    assert_null(route(f, "mock", &up));
    fx_free(f);
}

static void test_route_alias_named_mock_wins(void **state)
{
    struct fx *f = fx_new("providers:\n  - name: up\n    type: openai\n    base_url: http://h\n"
                          "models:\n  - name: mock\n    provider: up\n    model: real\n",
                          0, NULL);
    const char *up = NULL;
    assert_ptr_equal(route(f, "mock", &up), by_name(&f->ps, "up"));
    assert_string_equal(up, "real");
    fx_free(f);
}

static bool has_header(const char *const *h, const char *line)
{
    for (; h && *h; h++)
        if (!strcmp(*h, line))
            return true;
    return false;
}

static size_t count_headers(const char *const *h)
{
    size_t n = 0;
    while (h && h[n])
        n++;
    return n;
}

static void parse_chat(const char *body, struct ibex_chat_request *chat)
{
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(chat, body, strlen(body), &e) != 0)
        fail_msg("chat body rejected: %s", e.message);
    ibex_chat_error_dispose(&e);
}

static void test_openai_build_request(void **state)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    const struct ibex_provider *p = by_name(&f->ps, "local");
    struct ibex_arena *arena = ibex_arena_new(1024);
    const char *body =
        "{\"model\":\"llama3.1:8b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    struct ibex_chat_request chat;
    parse_chat(body, &chat);
    const char *extra[] = {"X-Trace-Id: abc", "OpenAI-Organization: org-1", NULL};
    struct ibex_upstream_request out;
    memset(&out, 0xAB, sizeof(out));
    assert_int_equal(p->ops->build_request(p, &chat, body, strlen(body), extra, arena, &out, NULL),
                     0);
    assert_string_equal(out.url, "http://127.0.0.1:9/v1/chat/completions");
    assert_ptr_equal(out.body, body);
    assert_int_equal(out.body_len, strlen(body));
    assert_true(has_header(out.headers, "Authorization: Bearer sk-unit-test"));
    assert_true(has_header(out.headers, "Content-Type: application/json"));
    assert_true(has_header(out.headers, "Accept: application/json"));
    assert_false(has_header(out.headers, "Accept: text/event-stream"));
    /* extra headers are appended after the provider's own, in order */
    size_t n = count_headers(out.headers);
    assert_int_equal(n, 5);
    assert_string_equal(out.headers[n - 2], "X-Trace-Id: abc");
    assert_string_equal(out.headers[n - 1], "OpenAI-Organization: org-1");
    assert_false(out.streaming);
    assert_false(out.connect_only);
    assert_int_equal(out.timeouts.idle_ms, 7000);   /* the provider's own */
    assert_int_equal(out.timeouts.total_ms, 90000); /* inherited */
    assert_int_equal(out.timeouts.connect_ms, p->cfg->timeouts.connect_ms);
    ibex_chat_request_dispose(&chat);

    /* streaming asks for SSE */
    const char *sbody = "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                        "\"content\":\"x\"}]}";
    parse_chat(sbody, &chat);
    assert_int_equal(p->ops->build_request(p, &chat, sbody, strlen(sbody), NULL, arena, &out, NULL),
                     0);
    assert_true(has_header(out.headers, "Accept: text/event-stream"));
    assert_false(has_header(out.headers, "Accept: application/json"));
    assert_int_equal(count_headers(out.headers), 3);
    assert_true(out.streaming);
    ibex_chat_request_dispose(&chat);

    /* no key: no Authorization header at all */
    const struct ibex_provider *k = by_name(&f->ps, "keyless");
    parse_chat(body, &chat);
    assert_int_equal(k->ops->build_request(k, &chat, body, strlen(body), extra, arena, &out, NULL),
                     0);
    assert_string_equal(out.url, "https://keyless.test/api/chat/completions");
    for (const char *const *h = out.headers; *h; h++)
        assert_true(strncasecmp(*h, "authorization:", 14) != 0);
    assert_int_equal(count_headers(out.headers), 4);
    ibex_chat_request_dispose(&chat);
    ibex_arena_free(arena);
    fx_free(f);
}

static const char deployments_yaml[] =
    "providers:\n"
    "  - name: a\n    type: openai\n    base_url: http://127.0.0.1:9\n"
    "  - name: b\n    type: openai\n    base_url: http://127.0.0.1:9\n"
    "  - name: c\n    type: openai\n    base_url: http://127.0.0.1:9\n"
    "models:\n"
    "  - name: smart\n    deployments:\n"
    "      - {provider: a, model: big, weight: 3}\n"
    "      - {provider: b, model: big-b, weight: 1, api_key: dep-key}\n"
    "      - {provider: c, weight: 0}\n";

/* Azure OpenAI: the deployment (the model) in the path with the api-version, the key in
 * api-key; a model that is not a deployment name is a 400 before anything is sent. */
static void test_azure_build_request(void **state)
{
    struct fx *f = fx_new("providers:\n  - name: az\n    type: azure\n"
                          "    base_url: https://res.openai.azure.com/\n    api_key: az-key\n",
                          0, NULL);
    const struct ibex_provider *p = by_name(&f->ps, "az");
    assert_ptr_equal(p->ops, &ibex_provider_azure);
    assert_string_equal(p->cfg->api_version, "2024-10-21");
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    const char *body =
        "{\"model\":\"gpt-4o-prod\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(ibex_chat_request_parse(&chat, body, strlen(body), &e), 0);
    struct ibex_upstream_request out;
    assert_int_equal(p->ops->build_request(p, &chat, body, strlen(body), NULL, arena, &out, &e), 0);
    assert_string_equal(out.url, "https://res.openai.azure.com/openai/deployments/gpt-4o-prod/"
                                 "chat/completions?api-version=2024-10-21");
    assert_true(has_header(out.headers, "api-key: az-key"));
    ibex_chat_request_dispose(&chat);
    const char *bad =
        "{\"model\":\"../admin?x=1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(ibex_chat_request_parse(&chat, bad, strlen(bad), &e), 0);
    assert_int_equal(p->ops->build_request(p, &chat, bad, strlen(bad), NULL, arena, &out, &e), -1);
    assert_string_equal(e.code, "VALIDATION_ERROR");
    assert_string_equal(e.param, "model");
    ibex_chat_request_dispose(&chat);
    ibex_chat_error_dispose(&e);
    ibex_arena_free(arena);
    fx_free(f);
}

static void test_plan_weights_and_fallback_order(void **state)
{
    struct fx *f = fx_new(deployments_yaml, 0, NULL);
    const struct ibex_alias *a = ibex_providers_route(&f->ps, "smart");
    assert_non_null(a);
    assert_int_equal(a->n, 3);
    assert_string_equal(a->d[2].model, "smart"); /* no model: the alias's name */
    assert_null(a->d[0].auth_header);            /* the provider's key */
    assert_string_equal(a->d[1].auth_header, "Authorization: Bearer dep-key"); /* its own */
    struct ibex_deployment *plan[IBEX_ALIAS_MAX_DEPLOYMENTS];
    int64_t retry_ms = -1;
    size_t firsts[3] = {0};
    for (uint64_t rnd = 0; rnd < 400; rnd++) {
        assert_int_equal(ibex_alias_plan(a, 1000, rnd, plan, &retry_ms), 3);
        firsts[plan[0] - a->d]++;
        /* the fallbacks keep the list's order */
        if (plan[0] == &a->d[1]) {
            assert_ptr_equal(plan[1], &a->d[0]);
            assert_ptr_equal(plan[2], &a->d[2]);
        } else {
            assert_ptr_equal(plan[0], &a->d[0]);
            assert_ptr_equal(plan[1], &a->d[1]);
            assert_ptr_equal(plan[2], &a->d[2]);
        }
    }
    assert_int_equal(firsts[0], 300); /* weight 3 of 4 */
    assert_int_equal(firsts[1], 100);
    assert_int_equal(firsts[2], 0); /* weight 0: fallback only */
    /* metric labels */
    assert_true(f->ps.ndeployments >= 3);
    assert_string_equal(f->ps.deployment_providers[a->d[1].index], "b");
    assert_string_equal(f->ps.deployment_models[a->d[1].index], "big-b");
    const struct ibex_alias *direct = ibex_providers_route(&f->ps, "mock");
    assert_string_equal(f->ps.deployment_models[direct->d[0].index], "*");
    fx_free(f);
}

static void test_breaker_opens_and_closes(void **state)
{
    struct fx *f = fx_new(deployments_yaml, 0, NULL);
    const struct ibex_alias *a = ibex_providers_route(&f->ps, "smart");
    struct ibex_routing_config rc = {.breaker_failures = 2, .breaker_cooldown_ms = 500};
    struct ibex_deployment *plan[IBEX_ALIAS_MAX_DEPLOYMENTS];
    int64_t retry_ms = -1;
    struct ibex_deployment *d0 = &a->d[0];
    ibex_deployment_report(d0, true, &rc, 1000);
    assert_int_equal(ibex_alias_plan(a, 1000, 0, plan, &retry_ms), 3); /* one failure: in */
    ibex_deployment_report(d0, true, &rc, 1000);
    assert_int_equal(ibex_alias_plan(a, 1001, 0, plan, &retry_ms), 2); /* out */
    assert_ptr_equal(plan[0], &a->d[1]); /* the only healthy one with a weight */
    assert_ptr_equal(plan[1], &a->d[2]);
    /* cool-down over: one attempt may try it; a failure takes it out again at once */
    assert_int_equal(ibex_alias_plan(a, 1500, 0, plan, &retry_ms), 3);
    ibex_deployment_report(d0, true, &rc, 1500);
    assert_int_equal(ibex_alias_plan(a, 1501, 0, plan, &retry_ms), 2);
    /* a success closes it for good */
    ibex_deployment_report(d0, false, &rc, 2001);
    ibex_deployment_report(d0, true, &rc, 2002);
    assert_int_equal(ibex_alias_plan(a, 2003, 0, plan, &retry_ms), 3);
    /* all out: nothing to try, and when the first comes back */
    for (size_t i = 0; i < a->n; i++)
        for (int k = 0; k < 2; k++)
            ibex_deployment_report(&a->d[i], true, &rc, 3000 + (int64_t)i * 100);
    assert_int_equal(ibex_alias_plan(a, 3100, 0, plan, &retry_ms), 0);
    assert_int_equal(retry_ms, 400);
    /* disabled breaker: failures never take a deployment out */
    struct ibex_routing_config off = {.breaker_failures = 0, .breaker_cooldown_ms = 500};
    const struct ibex_alias *direct = ibex_providers_route(&f->ps, "mock");
    for (int k = 0; k < 50; k++)
        ibex_deployment_report(&direct->d[0], true, &off, 5000);
    assert_int_equal(ibex_alias_plan(direct, 5001, 0, plan, &retry_ms), 1);
    fx_free(f);
}

static const struct ibex_provider *mock_of(struct fx *f)
{
    const char *up;
    const struct ibex_provider *p = route(f, "mock", &up);
    assert_non_null(p);
    assert_ptr_equal(p->ops, &ibex_provider_mock);
    return p;
}

/* 40 characters of prompt across two messages. */
#define PROMPT_BODY(extra)                                                                         \
    "{\"model\":\"mock\",\"messages\":[{\"role\":\"system\",\"content\":\"0123456789\"},"          \
    "{\"role\":\"user\",\"content\":\"012345678901234567890123456789\"}]" extra "}"

static int64_t get_int(json_object *o, const char *k1, const char *k2)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k1, &v) || (k2 && !json_object_object_get_ex(v, k2, &v)))
        fail_msg("missing %s.%s", k1, k2 ? k2 : "");
    assert_true(json_object_is_type(v, json_type_int));
    return json_object_get_int64(v);
}

static void test_mock_answer_plain(void **state)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    const struct ibex_provider *p = mock_of(f);
    struct ibex_chat_request chat;
    parse_chat(PROMPT_BODY(""), &chat);
    struct ibex_buf out;
    ibex_buf_init(&out);
    p->ops->answer(p, &chat, &out);
    json_object *o = tu_parse_json(out.p, out.len);
    assert_non_null(o);
    assert_string_equal(tu_json_str(o, "object"), "chat.completion");
    assert_string_equal(tu_json_str(o, "model"), "mock");
    assert_non_null(tu_json_str(o, "id"));
    json_object *choices = NULL;
    assert_true(json_object_object_get_ex(o, "choices", &choices));
    assert_int_equal(json_object_array_length(choices), 1);
    json_object *c0 = json_object_array_get_idx(choices, 0);
    assert_string_equal(tu_json_str(c0, "message.role"), "assistant");
    const char *content = tu_json_str(c0, "message.content");
    assert_non_null(content);
    assert_true(strlen(content) > 0);
    assert_null(strstr(content, "0123456789")); /* never echoes the prompt */
    assert_string_equal(tu_json_str(c0, "finish_reason"), "stop");
    int64_t pt = get_int(o, "usage", "prompt_tokens");
    int64_t ct = get_int(o, "usage", "completion_tokens");
    assert_int_equal(pt, 40 / 4);
    assert_true(ct > 0);
    assert_int_equal(get_int(o, "usage", "total_tokens"), pt + ct);

    /* deterministic: the same question gets the same words */
    struct ibex_buf again;
    ibex_buf_init(&again);
    p->ops->answer(p, &chat, &again);
    json_object *o2 = tu_parse_json(again.p, again.len);
    json_object *c2 = json_object_array_get_idx(json_object_object_get(o2, "choices"), 0);
    assert_string_equal(tu_json_str(c2, "message.content"), content);
    json_object_put(o2);
    json_object_put(o);
    ibex_buf_dispose(&again);
    ibex_buf_dispose(&out);
    ibex_chat_request_dispose(&chat);
    fx_free(f);
}

/* Splits an SSE body into its data payloads; checks the framing on the way. */
static size_t sse_events(const char *s, size_t len, char ***events)
{
    size_t n = 0, cap = 64;
    *events = calloc(cap, sizeof(char *));
    size_t off = 0;
    while (off < len) {
        const char *end = strstr(s + off, "\n\n");
        assert_non_null(end);
        assert_true(strncmp(s + off, "data: ", 6) == 0);
        size_t elen = (size_t)(end - (s + off)) - 6;
        assert_null(memchr(s + off + 6, '\n', elen)); /* one data line per event */
        assert_true(n < cap);
        (*events)[n++] = strndup(s + off + 6, elen);
        off = (size_t)(end - s) + 2;
    }
    return n;
}

static void free_events(char **ev, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
}

/* Streams the mock answer and checks it against the plain answer; returns whether a usage
 * chunk was present. */
static bool check_mock_stream(const char *body)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    const struct ibex_provider *p = mock_of(f);
    struct ibex_chat_request plain_chat, chat;
    parse_chat(PROMPT_BODY(""), &plain_chat);
    struct ibex_buf plain;
    ibex_buf_init(&plain);
    p->ops->answer(p, &plain_chat, &plain);
    json_object *po = tu_parse_json(plain.p, plain.len);
    json_object *pc = json_object_array_get_idx(json_object_object_get(po, "choices"), 0);
    const char *want = tu_json_str(pc, "message.content");

    parse_chat(body, &chat);
    assert_true(chat.stream);
    struct ibex_buf out;
    ibex_buf_init(&out);
    p->ops->answer(p, &chat, &out);
    char **ev;
    size_t n = sse_events(out.p, out.len, &ev);
    assert_true(n >= 3);
    assert_string_equal(ev[n - 1], "[DONE]");
    struct ibex_buf text;
    ibex_buf_init(&text);
    bool usage_seen = false, finish_seen = false;
    for (size_t i = 0; i + 1 < n; i++) {
        json_object *o = tu_parse_json(ev[i], strlen(ev[i]));
        if (o == NULL)
            fail_msg("event %zu is not JSON: %s", i, ev[i]);
        assert_string_equal(tu_json_str(o, "object"), "chat.completion.chunk");
        assert_string_equal(tu_json_str(o, "model"), "mock");
        json_object *choices = json_object_object_get(o, "choices");
        json_object *usage = NULL;
        if (json_object_object_get_ex(o, "usage", &usage) && usage != NULL) {
            assert_false(usage_seen);
            assert_true(finish_seen); /* after the last choice */
            assert_int_equal(json_object_array_length(choices), 0);
            assert_int_equal(get_int(o, "usage", "prompt_tokens"), 10);
            assert_int_equal(get_int(o, "usage", "total_tokens"),
                             get_int(o, "usage", "prompt_tokens") +
                                 get_int(o, "usage", "completion_tokens"));
            usage_seen = true;
        } else {
            assert_false(finish_seen);
            assert_int_equal(json_object_array_length(choices), 1);
            json_object *c0 = json_object_array_get_idx(choices, 0);
            const char *piece = tu_json_str(c0, "delta.content");
            if (piece)
                ibex_buf_append_cstr(&text, piece);
            if (i == 0)
                assert_string_equal(tu_json_str(c0, "delta.role"), "assistant");
            const char *fin = tu_json_str(c0, "finish_reason");
            if (fin) {
                assert_string_equal(fin, "stop");
                finish_seen = true;
            }
        }
        json_object_put(o);
    }
    assert_true(finish_seen);
    assert_string_equal(text.p, want); /* the stream spells the same answer */
    ibex_buf_dispose(&text);
    free_events(ev, n);
    ibex_buf_dispose(&out);
    json_object_put(po);
    ibex_buf_dispose(&plain);
    ibex_chat_request_dispose(&chat);
    ibex_chat_request_dispose(&plain_chat);
    fx_free(f);
    return usage_seen;
}

static void test_mock_stream(void **state)
{
    assert_false(check_mock_stream(PROMPT_BODY(",\"stream\":true")));
    assert_false(check_mock_stream(
        PROMPT_BODY(",\"stream\":true,\"stream_options\":{\"include_usage\":false}")));
    assert_true(check_mock_stream(
        PROMPT_BODY(",\"stream\":true,\"stream_options\":{\"include_usage\":true}")));
}

static void test_mock_model_name_escaped(void **state)
{
    struct fx *f = fx_new(yaml, 0, NULL);
    const struct ibex_provider *p = mock_of(f);
    const char *body =
        "{\"model\":\"mo\\\"ck\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}";
    struct ibex_chat_request chat;
    parse_chat(body, &chat);
    struct ibex_buf out;
    ibex_buf_init(&out);
    p->ops->answer(p, &chat, &out);
    json_object *o = tu_parse_json(out.p, out.len);
    assert_non_null(o);
    assert_string_equal(tu_json_str(o, "model"), "mo\"ck");
    assert_true(get_int(o, "usage", "prompt_tokens") >= 1);
    json_object_put(o);
    ibex_buf_dispose(&out);
    ibex_chat_request_dispose(&chat);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_mirrors_config),
        cmocka_unit_test(test_route_alias),
        cmocka_unit_test(test_route_mock_and_default),
        cmocka_unit_test(test_route_without_default),
        cmocka_unit_test(test_route_mock_disabled),
        cmocka_unit_test(test_route_alias_named_mock_wins),
        cmocka_unit_test(test_openai_build_request),
        cmocka_unit_test(test_azure_build_request),
        cmocka_unit_test(test_plan_weights_and_fallback_order),
        cmocka_unit_test(test_breaker_opens_and_closes),
        cmocka_unit_test(test_mock_answer_plain),
        cmocka_unit_test(test_mock_stream),
        cmocka_unit_test(test_mock_model_name_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
