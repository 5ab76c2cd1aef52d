/* src/providers/gemini.c: the provider set picks it for type gemini; URLs and headers; OpenAI
 * requests translated to generateContent (each mapping, each 400); answers and streams
 * translated back (fed in every split of a recorded stream), read again by the answer
 * collector; tool calls, errors, truncated streams, usage with and without include_usage; the
 * stream decoder's fast scanner against its json-c path (gemini.h), byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>

#include "../../src/config/config.h"
#include "../../src/core/arena.h"
#include "../../src/gateway/answer.h"
#include "../../src/providers/gemini.h"
#include "../../src/providers/provider.h"
#include "testutil.h"

struct fx {
    struct ibex_config cfg;
    struct ibex_providers ps;
    struct ibex_arena *arena;
    char path[64];
};

static const char yaml[] = "providers:\n"
                           "  - name: gem\n"
                           "    type: gemini\n"
                           "    api_key: gk-unit-test\n"
                           "  - name: local\n"
                           "    type: gemini\n"
                           "    base_url: http://127.0.0.1:9/gem/\n"
                           "    idle_timeout: 7s\n"
                           "models:\n"
                           "  - name: flash\n"
                           "    provider: gem\n"
                           "    model: gemini-2.5-flash\n";

static struct fx *fx_new(void)
{
    tu_unsetenv_prefix("IBEX_");
    tu_unsetenv_prefix("OPENAI_");
    tu_unsetenv_prefix("GEMINI_");
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(tu_write_temp(yaml, f->path), 0);
    const char *argv[] = {"--config", f->path};
    char err[256];
    if (ibex_config_load(&f->cfg, 2, (char **)argv, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    ibex_providers_init(&f->ps, &f->cfg);
    f->arena = ibex_arena_new(4096);
    return f;
}

static void fx_free(struct fx *f)
{
    ibex_arena_free(f->arena);
    ibex_providers_dispose(&f->ps);
    ibex_config_dispose(&f->cfg);
    unlink(f->path);
    free(f);
}

static const struct ibex_provider *prov(struct fx *f, const char *name)
{
    for (size_t i = 0; i < f->ps.n; i++)
        if (!strcmp(f->ps.list[i].cfg->name, name))
            return &f->ps.list[i];
    fail_msg("no provider %s", name);
    return NULL;
}

static void parse_chat(const char *body, struct ibex_chat_request *chat)
{
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(chat, body, strlen(body), &e) != 0)
        fail_msg("chat body rejected: %s", e.message);
    ibex_chat_error_dispose(&e);
}

/* The value at a dotted path; numeric segments index arrays ("contents.0.parts.1.text"). */
static json_object *at(json_object *o, const char *path)
{
    char key[128];
    while (o && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        assert_true(n < sizeof(key));
        memcpy(key, path, n);
        key[n] = '\0';
        if (json_object_is_type(o, json_type_array) && isdigit((unsigned char)key[0]))
            o = json_object_array_get_idx(o, (size_t)strtoul(key, NULL, 10));
        else if (!json_object_object_get_ex(o, key, &o))
            return NULL;
        path += n + (dot ? 1 : 0);
    }
    return o;
}

static const char *str_at(json_object *o, const char *path)
{
    json_object *v = at(o, path);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static const char *json_at(json_object *o, const char *path)
{
    json_object *v = at(o, path);
    return v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE)
             : "(absent)";
}

/* Translates body for provider "gem"; returns the parsed upstream body (json_object_put it) or
 * NULL when the request was refused (then e holds the error). */
static json_object *translate(struct fx *f, const char *body, struct ibex_upstream_request *out,
                              struct ibex_chat_error *e)
{
    const struct ibex_provider *p = prov(f, "gem");
    struct ibex_chat_request chat;
    parse_chat(body, &chat);
    int rc = p->ops->build_request(p, &chat, body, strlen(body), NULL, f->arena, out, e);
    json_object *o = NULL;
    if (rc == 0) {
        o = tu_parse_json(out->body, out->body_len);
        if (o == NULL)
            fail_msg("upstream body is not JSON: %.*s", (int)out->body_len, out->body);
    } else {
        assert_string_equal(e->code, "VALIDATION_ERROR");
    }
    ibex_chat_request_dispose(&chat);
    return o;
}

static json_object *ok(struct fx *f, const char *body)
{
    struct ibex_upstream_request out;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    json_object *o = translate(f, body, &out, &e);
    if (o == NULL)
        fail_msg("refused: %s (%s)", e.message, body);
    ibex_chat_error_dispose(&e);
    return o;
}

/* The request must be refused with param as the field; the message names the provider when
 * names_provider. */
static void refused(struct fx *f, const char *body, const char *param, bool names_provider)
{
    struct ibex_upstream_request out;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    json_object *o = translate(f, body, &out, &e);
    if (o != NULL)
        fail_msg("accepted: %s -> %s", body, json_object_to_json_string(o));
    assert_string_equal(e.param, param);
    assert_non_null(strstr(e.message, param));
    if (names_provider)
        assert_non_null(strstr(e.message, "gemini"));
    json_object *fe = tu_parse_json(e.field_errors.p, e.field_errors.len);
    assert_non_null(fe);
    assert_string_equal(str_at(fe, "0.field"), param);
    json_object_put(fe);
    ibex_chat_error_dispose(&e);
}

#define MSGS(...) "{\"model\":\"gemini-2.5-flash\",\"messages\":[" __VA_ARGS__ "]"
#define USER "{\"role\":\"user\",\"content\":\"hi\"}"

/* ---- provider set, URL, headers ---- */

static bool has_header(const char *const *h, const char *line)
{
    for (; h && *h; h++)
        if (!strcmp(*h, line))
            return true;
    return false;
}

static void test_provider_set(void **state)
{
    struct fx *f = fx_new();
    const struct ibex_provider *p = prov(f, "gem");
    assert_ptr_equal(p->ops, &ibex_provider_gemini);
    assert_ptr_equal(prov(f, "local")->ops, &ibex_provider_gemini);
    assert_string_equal(p->cfg->base_url, "https://generativelanguage.googleapis.com");
    assert_string_equal(p->auth_header, "x-goog-api-key: gk-unit-test");
    assert_null(prov(f, "local")->auth_header);
    assert_non_null(ibex_provider_gemini.translate_answer);
    assert_non_null(ibex_provider_gemini.stream_open);
    assert_null(ibex_provider_gemini.answer);
    const struct ibex_alias *a = ibex_providers_route(&f->ps, "flash");
    assert_ptr_equal(a->d[0].provider, p);
    assert_string_equal(a->d[0].model, "gemini-2.5-flash");
    fx_free(f);
}

static void test_url_and_headers(void **state)
{
    struct fx *f = fx_new();
    const struct ibex_provider *p = prov(f, "gem");
    struct ibex_chat_request chat;
    struct ibex_upstream_request out;
    const char *body = MSGS(USER) "}";
    parse_chat(body, &chat);
    const char *extra[] = {"X-Trace: 1", NULL};
    assert_int_equal(
        p->ops->build_request(p, &chat, body, strlen(body), extra, f->arena, &out, NULL), 0);
    assert_string_equal(out.url, "https://generativelanguage.googleapis.com/v1beta/models/"
                                 "gemini-2.5-flash:generateContent");
    assert_null(strstr(out.url, "gk-unit-test")); /* the key never goes in the URL */
    assert_true(has_header(out.headers, "x-goog-api-key: gk-unit-test"));
    assert_true(has_header(out.headers, "Content-Type: application/json"));
    assert_true(has_header(out.headers, "Accept: application/json"));
    assert_true(has_header(out.headers, "X-Trace: 1"));
    for (const char *const *h = out.headers; *h; h++)
        assert_true(strncasecmp(*h, "authorization:", 14) != 0);
    assert_false(out.streaming);
    ibex_chat_request_dispose(&chat);

    body = "{\"model\":\"models/gemini-2.0-flash-001\",\"stream\":true,\"messages\":[" USER "]}";
    parse_chat(body, &chat);
    const struct ibex_provider *l = prov(f, "local");
    assert_int_equal(
        l->ops->build_request(l, &chat, body, strlen(body), NULL, f->arena, &out, NULL), 0);
    assert_string_equal(out.url, "http://127.0.0.1:9/gem/v1beta/models/"
                                 "gemini-2.0-flash-001:streamGenerateContent?alt=sse");
    assert_true(has_header(out.headers, "Accept: text/event-stream"));
    assert_true(out.streaming);
    assert_int_equal(out.timeouts.idle_ms, 7000);
    ibex_chat_request_dispose(&chat);
    fx_free(f);
}

static void test_model_names_refused(void **state)
{
    struct fx *f = fx_new();
    static const char *const bad[] = {
        "a/b",
        "a?b",
        "a#b",
        "a:generateContent",
        "a b",
        "a\\u0001b",
        "models/",
        "..%2e",
        "a@1",
        "models/a/b",
        "x123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "8901234567890123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"model\":\"%s\",\"messages\":[" USER "]}", bad[i]);
        refused(f, body, "model", true);
    }
    json_object *o = ok(f, "{\"model\":\"gemma-3_27b.it-1\",\"messages\":[" USER "]}");
    json_object_put(o);
    fx_free(f);
}

/* ---- requests: messages ---- */

static void test_request_roles(void **state)
{
    struct fx *f = fx_new();
    json_object *o = ok(
        f,
        MSGS("{\"role\":\"system\",\"content\":\"be brief\"},"
             "{\"role\":\"user\",\"content\":\"hello\"},"
             "{\"role\":\"assistant\",\"content\":\"hi there\"},"
             "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"use French\"}]},"
             "{\"role\":\"assistant\",\"content\":null},"
             "{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":"
             "\"a\"},{\"type\":\"text\",\"text\":\"\"},{\"type\":\"text\",\"text\":\"b\"}]}") "}");
    assert_string_equal(str_at(o, "systemInstruction.parts.0.text"), "be brief");
    assert_string_equal(str_at(o, "systemInstruction.parts.1.text"), "use French");
    assert_int_equal(json_object_array_length(at(o, "contents")), 3); /* empty turn left out */
    assert_string_equal(str_at(o, "contents.0.role"), "user");
    assert_string_equal(str_at(o, "contents.0.parts.0.text"), "hello");
    assert_string_equal(str_at(o, "contents.1.role"), "model");
    assert_string_equal(str_at(o, "contents.1.parts.0.text"), "hi there");
    assert_string_equal(str_at(o, "contents.2.role"), "user");
    assert_int_equal(json_object_array_length(at(o, "contents.2.parts")), 2);
    assert_string_equal(str_at(o, "contents.2.parts.1.text"), "b");
    assert_null(at(o, "generationConfig"));
    assert_null(at(o, "tools"));
    json_object_put(o);

    /* no system message: no systemInstruction; text escapes survive */
    o = ok(f, MSGS("{\"role\":\"user\",\"content\":\"q\\\"uote\\n\\u00e9\\ud83d\\ude00\"}") "}");
    assert_null(at(o, "systemInstruction"));
    assert_string_equal(str_at(o, "contents.0.parts.0.text"), "q\"uote\n\xc3\xa9\xf0\x9f\x98\x80");
    json_object_put(o);

    refused(f,
            MSGS("{\"role\":\"system\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
                 "{\"url\":\"https://x/a.png\"}}]}," USER) "}",
            "messages[0].content[0].type", true);
    refused(f, MSGS("{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}") "}",
            "messages[0].content[0].type", true);
    refused(f, MSGS("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}") "}",
            "messages[0].content[0]", false);
    refused(f, MSGS(USER ",{\"role\":\"assistant\",\"audio\":{\"id\":\"a1\"}}") "}",
            "messages[1].audio", true);
    fx_free(f);
}

static void test_request_media(void **state)
{
    struct fx *f = fx_new();
    json_object *o = ok(
        f,
        MSGS("{\"role\":\"user\",\"content\":["
             "{\"type\":\"text\",\"text\":\"what is this?\"},"
             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0=\","
             "\"detail\":\"high\"}},"
             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://ex.com/a/cat.JPG?x=1#f\"}},"
             "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklGRg==\",\"format\":"
             "\"wav\"}},"
             "{\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,JVBE\","
             "\"filename\":\"a.pdf\"}},"
             "{\"type\":\"file\",\"file\":{\"file_data\":\"JVBE\",\"filename\":\"b.pdf\"}}]}") "}");
    assert_string_equal(str_at(o, "contents.0.parts.0.text"), "what is this?");
    assert_string_equal(str_at(o, "contents.0.parts.1.inlineData.mimeType"), "image/png");
    assert_string_equal(str_at(o, "contents.0.parts.1.inlineData.data"), "iVBORw0=");
    assert_string_equal(str_at(o, "contents.0.parts.2.fileData.mimeType"), "image/jpeg");
    assert_string_equal(str_at(o, "contents.0.parts.2.fileData.fileUri"),
                        "https://ex.com/a/cat.JPG?x=1#f");
    assert_string_equal(str_at(o, "contents.0.parts.3.inlineData.mimeType"), "audio/wav");
    assert_string_equal(str_at(o, "contents.0.parts.4.inlineData.mimeType"), "application/pdf");
    assert_string_equal(str_at(o, "contents.0.parts.4.inlineData.data"), "JVBE");
    assert_string_equal(str_at(o, "contents.0.parts.5.inlineData.mimeType"), "application/pdf");
    json_object_put(o);

#define IMG(url)                                                                                   \
    MSGS("{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":" url "}]}") "}"
    o = ok(f, IMG("\"https://ex.com/x.webp\"")); /* a bare string URL is taken too */
    assert_string_equal(str_at(o, "contents.0.parts.0.fileData.mimeType"), "image/webp");
    json_object_put(o);
    refused(f, IMG("{\"url\":\"https://ex.com/image\"}"), "messages[0].content[0].image_url.url",
            true);
    refused(f, IMG("{\"url\":\"https://ex.com/a.png/x\"}"), "messages[0].content[0].image_url.url",
            true);
    refused(f, IMG("{\"url\":\"ftp://ex.com/a.png\"}"), "messages[0].content[0].image_url.url",
            false);
    refused(f, IMG("{\"url\":\"data:image/png,abc\"}"), "messages[0].content[0].image_url", false);
    refused(f, IMG("{\"url\":\"data:;base64,abc\"}"), "messages[0].content[0].image_url", false);
    refused(f, IMG("{}"), "messages[0].content[0].image_url", false);
    refused(f,
            MSGS("{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{"
                 "\"data\":\"x\",\"format\":\"pcm16\"}}]}") "}",
            "messages[0].content[0].input_audio.format", false);
    refused(f,
            MSGS("{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{\"file_id\":"
                 "\"file-1\"}}]}") "}",
            "messages[0].content[0].file.file_id", true);
    refused(f,
            MSGS("{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{\"file_data\":"
                 "\"eA==\",\"filename\":\"x.bin\"}}]}") "}",
            "messages[0].content[0].file.file_data", false);
    fx_free(f);
}

#define CALLS                                                                                      \
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["                                    \
    "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","             \
    "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\", \\\"days\\\": 2.50}\"},"                        \
    "\"extra_content\":{\"google\":{\"thought_signature\":\"c2lnbmF0dXJl\"}}},"                    \
    "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","                \
    "\"arguments\":\"\"}}]}"

static void test_request_tool_turns(void **state)
{
    struct fx *f = fx_new();
    json_object *o =
        ok(f, MSGS(USER "," CALLS ","
                        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":"
                        "\" {\\\"temp\\\": 21, \\\"unit\\\": \\\"C\\\"}\"},"
                        "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":[{\"type\":"
                        "\"text\",\"text\":\"12:\"},{\"type\":\"text\",\"text\":\"00\"}]},"
                        "{\"role\":\"user\",\"content\":\"thanks\"}") "}");
    assert_int_equal(json_object_array_length(at(o, "contents")), 4);
    assert_string_equal(str_at(o, "contents.1.role"), "model");
    assert_int_equal(json_object_array_length(at(o, "contents.1.parts")), 2); /* "" dropped */
    assert_string_equal(str_at(o, "contents.1.parts.0.functionCall.name"), "get_weather");
    assert_string_equal(json_at(o, "contents.1.parts.0.functionCall.args"),
                        "{\"city\":\"Paris\",\"days\":2.50}");
    assert_string_equal(str_at(o, "contents.1.parts.0.thoughtSignature"), "c2lnbmF0dXJl");
    assert_string_equal(json_at(o, "contents.1.parts.1.functionCall.args"), "{}");
    assert_null(at(o, "contents.1.parts.1.thoughtSignature"));
    /* both tool results in one user turn, the names found from the ids */
    assert_string_equal(str_at(o, "contents.2.role"), "user");
    assert_int_equal(json_object_array_length(at(o, "contents.2.parts")), 2);
    assert_string_equal(str_at(o, "contents.2.parts.0.functionResponse.name"), "get_weather");
    assert_string_equal(json_at(o, "contents.2.parts.0.functionResponse.response"),
                        "{\"temp\":21,\"unit\":\"C\"}");
    assert_string_equal(str_at(o, "contents.2.parts.1.functionResponse.name"), "get_time");
    assert_string_equal(json_at(o, "contents.2.parts.1.functionResponse.response"),
                        "{\"content\":\"12:00\"}");
    assert_string_equal(str_at(o, "contents.3.parts.0.text"), "thanks");
    json_object_put(o);

    /* content that is JSON but not an object, or not JSON at all, is wrapped */
    o = ok(f, MSGS(USER "," CALLS ",{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":"
                        "\"[1,2]\"},{\"role\":\"tool\",\"tool_call_id\":\"call_2\","
                        "\"content\":\"{not json\"}") "}");
    assert_string_equal(json_at(o, "contents.2.parts.0.functionResponse.response"),
                        "{\"content\":\"[1,2]\"}");
    assert_string_equal(json_at(o, "contents.2.parts.1.functionResponse.response"),
                        "{\"content\":\"{not json\"}");
    json_object_put(o);

    /* an id reused in a later turn resolves to the nearest call before the tool message */
    o = ok(f, MSGS(USER ",{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                        "\"function\",\"function\":{\"name\":\"first\",\"arguments\":\"{}\"}}]},"
                        "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"1\"},"
                        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                        "\"function\",\"function\":{\"name\":\"second\",\"arguments\":\"{}\"}}]},"
                        "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"2\"}") "}");
    assert_string_equal(str_at(o, "contents.2.parts.0.functionResponse.name"), "first");
    assert_string_equal(str_at(o, "contents.4.parts.0.functionResponse.name"), "second");
    json_object_put(o);

    /* legacy function_call / function role */
    o = ok(f, MSGS(USER ",{\"role\":\"assistant\",\"function_call\":{\"name\":\"f\",\"arguments\":"
                        "\"{\\\"a\\\":1}\"}},{\"role\":\"function\",\"name\":\"f\",\"content\":"
                        "\"ok\"}") "}");
    assert_string_equal(str_at(o, "contents.1.parts.0.functionCall.name"), "f");
    assert_string_equal(str_at(o, "contents.2.parts.0.functionResponse.name"), "f");
    json_object_put(o);

    refused(f, MSGS(USER ",{\"role\":\"tool\",\"tool_call_id\":\"nope\",\"content\":\"x\"}") "}",
            "messages[1].tool_call_id", true);
    refused(f, MSGS(USER "," CALLS ",{\"role\":\"tool\",\"content\":\"x\"}") "}",
            "messages[2].tool_call_id", false);
    refused(f,
            MSGS(USER ",{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                      "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}") "}",
            "messages[1].tool_calls[0].function.arguments", false);
    refused(f,
            MSGS(USER ",{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                      "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}") "}",
            "messages[1].tool_calls[0].function.arguments", false);
    refused(f,
            MSGS(USER ",{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                      "\"custom\",\"custom\":{\"name\":\"f\",\"input\":\"x\"}}]}") "}",
            "messages[1].tool_calls[0].type", true);
    refused(f,
            MSGS(USER ",{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
                      "\"function\",\"function\":{\"arguments\":\"{}\"}}]}") "}",
            "messages[1].tool_calls[0].function.name", false);
    refused(f,
            MSGS(USER "," CALLS ",{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":["
                      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}") "}",
            "messages[2].content[0].type", true);
    fx_free(f);
}

/* ---- requests: options ---- */

static void test_request_tools(void **state)
{
    struct fx *f = fx_new();
#define TOOLS                                                                                      \
    ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"   \
    "\"Weather\",\"strict\":true,\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{"   \
    "\"type\":\"string\"}},\"required\":[\"city\"],\"additionalProperties\":false}}},"             \
    "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]"
    json_object *o = ok(f, MSGS(USER) TOOLS "}");
    assert_string_equal(str_at(o, "tools.0.functionDeclarations.0.name"), "get_weather");
    assert_string_equal(str_at(o, "tools.0.functionDeclarations.0.description"), "Weather");
    assert_string_equal(json_at(o, "tools.0.functionDeclarations.0.parametersJsonSchema"),
                        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
                        "\"required\":[\"city\"],\"additionalProperties\":false}");
    assert_string_equal(str_at(o, "tools.0.functionDeclarations.1.name"), "now");
    assert_null(at(o, "tools.0.functionDeclarations.1.parametersJsonSchema"));
    assert_null(at(o, "toolConfig"));
    json_object_put(o);

    static const struct {
        const char *choice, *mode, *allowed;
    } choices[] = {{"\"none\"", "NONE", NULL},
                   {"\"auto\"", "AUTO", NULL},
                   {"\"required\"", "ANY", NULL},
                   {"{\"type\":\"function\",\"function\":{\"name\":\"now\"}}", "ANY", "now"}};
    for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
        char body[1024];
        snprintf(body, sizeof(body), MSGS(USER) TOOLS ",\"tool_choice\":%s}", choices[i].choice);
        o = ok(f, body);
        assert_string_equal(str_at(o, "toolConfig.functionCallingConfig.mode"), choices[i].mode);
        if (choices[i].allowed)
            assert_string_equal(
                str_at(o, "toolConfig.functionCallingConfig.allowedFunctionNames.0"),
                choices[i].allowed);
        else
            assert_null(at(o, "toolConfig.functionCallingConfig.allowedFunctionNames"));
        json_object_put(o);
    }
    /* none/auto without tools say nothing; an empty tools array is no tools */
    o = ok(f, MSGS(USER) ",\"tools\":[],\"tool_choice\":\"auto\",\"parallel_tool_calls\":false}");
    assert_null(at(o, "tools"));
    assert_null(at(o, "toolConfig"));
    json_object_put(o);
    o = ok(f, MSGS(USER) TOOLS ",\"parallel_tool_calls\":true}");
    json_object_put(o);

    refused(f, MSGS(USER) ",\"tool_choice\":\"required\"}", "tool_choice", false);
    refused(f, MSGS(USER) TOOLS ",\"tool_choice\":\"sometimes\"}", "tool_choice", false);
    refused(f,
            MSGS(USER) TOOLS ",\"tool_choice\":{\"type\":\"allowed_tools\",\"allowed_tools\":{"
                             "\"mode\":\"auto\",\"tools\":[]}}}",
            "tool_choice.type", true);
    refused(f, MSGS(USER) TOOLS ",\"parallel_tool_calls\":false}", "parallel_tool_calls", true);
    refused(f, MSGS(USER) ",\"tools\":[{\"type\":\"custom\",\"custom\":{\"name\":\"x\"}}]}",
            "tools[0].type", true);
    refused(f, MSGS(USER) ",\"tools\":[{\"type\":\"function\",\"function\":{}}]}",
            "tools[0].function.name", false);
    refused(f,
            MSGS(USER) ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\","
                       "\"parameters\":[]}}]}",
            "tools[0].function.parameters", false);
    refused(f, MSGS(USER) ",\"tools\":{}}", "tools", false);
    fx_free(f);
}

static void test_request_generation_config(void **state)
{
    struct fx *f = fx_new();
    json_object *o = ok(f, MSGS(USER) ",\"max_tokens\":100,\"temperature\":0.70,\"top_p\":1,"
                                      "\"top_k\":40,\"stop\":\"END\",\"n\":1,\"seed\":7,"
                                      "\"presence_penalty\":-0.5,\"frequency_penalty\":1.25,"
                                      "\"response_format\":{\"type\":\"json_object\"},"
                                      "\"logprobs\":true,\"top_logprobs\":3}");
    assert_string_equal(json_at(o, "generationConfig"),
                        "{\"maxOutputTokens\":100,\"temperature\":0.70,\"topP\":1,\"topK\":40,"
                        "\"seed\":7,\"presencePenalty\":-0.5,\"frequencyPenalty\":1.25,"
                        "\"stopSequences\":[\"END\"],\"responseMimeType\":\"application/json\","
                        "\"responseLogprobs\":true,\"logprobs\":3}");
    json_object_put(o);

    /* max_completion_tokens wins over max_tokens; stop arrays; json_schema */
    o = ok(f, MSGS(USER) ",\"max_tokens\":5,\"max_completion_tokens\":9,\"stop\":[\"a\",\"b\"],"
                         "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":"
                         "\"r\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{"
                         "\"x\":{\"type\":\"integer\"}}}}},\"logprobs\":false,\"top_logprobs\":2}");
    assert_string_equal(json_at(o, "generationConfig"),
                        "{\"maxOutputTokens\":9,\"stopSequences\":[\"a\",\"b\"],"
                        "\"responseMimeType\":\"application/json\",\"responseJsonSchema\":{"
                        "\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}}}}");
    json_object_put(o);

    /* fields that cannot change the answer are dropped; nulls are absent fields */
    o = ok(f, MSGS(USER) ",\"user\":\"u1\",\"metadata\":{\"a\":\"b\"},\"store\":true,"
                         "\"service_tier\":\"auto\",\"safety_identifier\":\"s\","
                         "\"prompt_cache_key\":\"k\",\"logit_bias\":{},\"modalities\":[\"text\"],"
                         "\"response_format\":{\"type\":\"text\"},\"stop\":[],\"audio\":null,"
                         "\"temperature\":null,\"stream\":false,\"stream_options\":null}");
    assert_null(at(o, "generationConfig"));
    assert_int_equal(json_object_object_length(o), 1); /* contents only */
    json_object_put(o);
    fx_free(f);
}

static void test_request_refused_fields(void **state)
{
    struct fx *f = fx_new();
    static const struct {
        const char *extra, *param;
        bool names_provider;
    } cases[] = {
        {"\"logit_bias\":{\"50256\":-100}", "logit_bias", true},
        {"\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}", "audio", true},
        {"\"modalities\":[\"text\",\"audio\"]", "modalities", true},
        {"\"prediction\":{\"type\":\"content\",\"content\":\"x\"}", "prediction", true},
        {"\"n\":2", "n", true},
        {"\"n\":0", "n", true},
        {"\"reasoning_effort\":\"low\"", "reasoning_effort", true},
        {"\"verbosity\":\"low\"", "verbosity", true},
        {"\"web_search_options\":{}", "web_search_options", true},
        {"\"functions\":[{\"name\":\"f\"}]", "functions", true},
        {"\"function_call\":\"auto\"", "function_call", true},
        {"\"some_new_field\":1", "some_new_field", true},
        {"\"\":1", "\"\"", true},
        {"\"stop\":[1]", "stop[0]", false},
        {"\"stop\":5", "stop", false},
        {"\"response_format\":{\"type\":\"xml\"}", "response_format.type", false},
        {"\"response_format\":{\"type\":\"json_schema\"}", "response_format.json_schema", false},
        {"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":true}}",
         "response_format.json_schema.schema", false},
        {"\"logprobs\":1", "logprobs", false},
        {"\"top_logprobs\":\"3\"", "top_logprobs", false},
        {"\"top_k\":\"3\"", "top_k", false},
        {"\"parallel_tool_calls\":\"no\"", "parallel_tool_calls", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), MSGS(USER) ",%s}", cases[i].extra);
        refused(f, body, cases[i].param, cases[i].names_provider);
    }
    fx_free(f);
}

/* ---- answers ---- */

static json_object *answer(struct fx *f, const char *req, const char *body, struct ibex_buf *out)
{
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    const struct ibex_provider *p = prov(f, "gem");
    ibex_buf_reset(out);
    int rc = p->ops->translate_answer(p, &chat, body, strlen(body), out);
    ibex_chat_request_dispose(&chat);
    if (rc != 0)
        return NULL;
    json_object *o = tu_parse_json(out->p, out->len);
    if (o == NULL)
        fail_msg("answer is not JSON: %s", out->p);
    /* the gateway's collector must read it as a chat.completion */
    struct ibex_answer a;
    ibex_answer_init(&a, 1 << 20);
    assert_int_equal(ibex_answer_from_json(&a, out->p, out->len), 0);
    ibex_answer_dispose(&a);
    return o;
}

static void test_answer_text_and_usage(void **state)
{
    struct fx *f = fx_new();
    struct ibex_buf out;
    ibex_buf_init(&out);
    json_object *o = answer(
        f, MSGS(USER) "}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"thinking...\",\"thought\":true},"
        "{\"text\":\"Hello, \"},{\"text\":\"w\\u00f6rld \\\"q\\\"\\n\"}],\"role\":\"model\"},"
        "\"finishReason\":\"STOP\",\"index\":0,\"safetyRatings\":[]}],"
        "\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":5,"
        "\"totalTokenCount\":40,\"thoughtsTokenCount\":24,\"cachedContentTokenCount\":3},"
        "\"modelVersion\":\"gemini-2.5-flash-001\",\"responseId\":\"resp-Abc_123\"}",
        &out);
    assert_non_null(o);
    assert_string_equal(str_at(o, "id"), "resp-Abc_123");
    assert_string_equal(str_at(o, "object"), "chat.completion");
    assert_string_equal(str_at(o, "model"), "gemini-2.5-flash-001");
    assert_true(json_object_get_int64(at(o, "created")) > 1700000000);
    assert_string_equal(str_at(o, "choices.0.message.role"), "assistant");
    assert_string_equal(str_at(o, "choices.0.message.content"), "Hello, w\xc3\xb6rld \"q\"\n");
    assert_null(at(o, "choices.0.message.tool_calls"));
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "stop");
    assert_string_equal(json_at(o, "usage"),
                        "{\"prompt_tokens\":11,\"completion_tokens\":29,\"total_tokens\":40,"
                        "\"prompt_tokens_details\":{\"cached_tokens\":3},"
                        "\"completion_tokens_details\":{\"reasoning_tokens\":24}}");
    json_object_put(o);

    /* no responseId, no modelVersion, no usage, no text: generated id, the request's model */
    o = answer(f, MSGS(USER) "}",
               "{\"candidates\":[{\"content\":{\"parts\":[]},\"finishReason\":\"STOP\"}]}", &out);
    assert_non_null(o);
    assert_int_equal(strncmp(str_at(o, "id"), "chatcmpl-", 9), 0);
    assert_int_equal(strlen(str_at(o, "id")), 9 + 16);
    assert_string_equal(str_at(o, "model"), "gemini-2.5-flash");
    assert_true(json_object_is_type(at(o, "choices.0.message"), json_type_object));
    assert_null(at(o, "choices.0.message.content")); /* JSON null */
    assert_null(at(o, "usage"));
    json_object_put(o);
    ibex_buf_dispose(&out);
    fx_free(f);
}

static void test_answer_tool_calls(void **state)
{
    struct fx *f = fx_new();
    struct ibex_buf out;
    ibex_buf_init(&out);
    json_object *o = answer(
        f, MSGS(USER) "}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me check.\"},"
        "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\",\"n\":2.50}},"
        "\"thoughtSignature\":\"c2ln\"},{\"functionCall\":{\"name\":\"now\"}}],\"role\":\"model\"},"
        "\"finishReason\":\"STOP\"}],\"responseId\":\"r1\"}",
        &out);
    assert_non_null(o);
    assert_string_equal(str_at(o, "choices.0.message.content"), "Let me check.");
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "tool_calls");
    assert_int_equal(json_object_array_length(at(o, "choices.0.message.tool_calls")), 2);
    assert_string_equal(str_at(o, "choices.0.message.tool_calls.0.id"), "call_r1_0");
    assert_string_equal(str_at(o, "choices.0.message.tool_calls.0.type"), "function");
    assert_string_equal(str_at(o, "choices.0.message.tool_calls.0.function.name"), "get_weather");
    assert_string_equal(str_at(o, "choices.0.message.tool_calls.0.function.arguments"),
                        "{\"city\":\"Paris\",\"n\":2.50}");
    assert_string_equal(
        str_at(o, "choices.0.message.tool_calls.0.extra_content.google.thought_signature"), "c2ln");
    assert_string_equal(str_at(o, "choices.0.message.tool_calls.1.id"), "call_r1_1");
    assert_string_equal(str_at(o, "choices.0.message.tool_calls.1.function.arguments"), "{}");
    assert_null(at(o, "choices.0.message.tool_calls.1.extra_content"));
    json_object_put(o);

    /* a call cut by the token limit is still a length stop */
    o = answer(f, MSGS(USER) "}",
               "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\","
               "\"args\":{}}}]},\"finishReason\":\"MAX_TOKENS\"}]}",
               &out);
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "length");
    json_object_put(o);
    ibex_buf_dispose(&out);
    fx_free(f);
}

static void test_answer_finish_reasons(void **state)
{
    struct fx *f = fx_new();
    struct ibex_buf out;
    ibex_buf_init(&out);
    static const char *const map[][2] = {
        {"\"STOP\"", "stop"},
        {"\"MAX_TOKENS\"", "length"},
        {"\"SAFETY\"", "content_filter"},
        {"\"RECITATION\"", "content_filter"},
        {"\"BLOCKLIST\"", "content_filter"},
        {"\"PROHIBITED_CONTENT\"", "content_filter"},
        {"\"SPII\"", "content_filter"},
        {"\"OTHER\"", "stop"},
        {"\"LANGUAGE\"", "stop"},
        {"\"MALFORMED_FUNCTION_CALL\"", "stop"},
        {"\"FINISH_REASON_UNSPECIFIED\"", "stop"},
        {"7", "stop"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                 "\"finishReason\":%s}]}",
                 map[i][0]);
        json_object *o = answer(f, MSGS(USER) "}", body, &out);
        assert_non_null(o);
        assert_string_equal(str_at(o, "choices.0.finish_reason"), map[i][1]);
        json_object_put(o);
    }
    /* blocked at the prompt: no candidates */
    json_object *o = answer(f, MSGS(USER) "}",
                            "{\"promptFeedback\":{\"blockReason\":\"SAFETY\",\"safetyRatings\":[]},"
                            "\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":8}}",
                            &out);
    assert_non_null(o);
    assert_null(at(o, "choices.0.message.content"));
    assert_string_equal(str_at(o, "choices.0.finish_reason"), "content_filter");
    assert_string_equal(json_at(o, "usage"),
                        "{\"prompt_tokens\":8,\"completion_tokens\":0,\"total_tokens\":8}");
    json_object_put(o);
    ibex_buf_dispose(&out);
    fx_free(f);
}

static void test_answer_logprobs(void **state)
{
    struct fx *f = fx_new();
    struct ibex_buf out;
    ibex_buf_init(&out);
    json_object *o = answer(
        f, MSGS(USER) ",\"logprobs\":true,\"top_logprobs\":1}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]},\"finishReason\":\"STOP\","
        "\"logprobsResult\":{\"topCandidates\":[{\"candidates\":[{\"token\":\"Hi\",\"tokenId\":5,"
        "\"logProbability\":-0.25}]}],\"chosenCandidates\":[{\"token\":\"Hi\",\"tokenId\":5,"
        "\"logProbability\":-0.25}]}}]}",
        &out);
    assert_non_null(o);
    assert_string_equal(json_at(o, "choices.0.logprobs"),
                        "{\"content\":[{\"token\":\"Hi\",\"logprob\":-0.25,\"bytes\":[72,105],"
                        "\"top_logprobs\":[{\"token\":\"Hi\",\"logprob\":-0.25,\"bytes\":[72,105]"
                        "}]}]}");
    json_object_put(o);
    ibex_buf_dispose(&out);
    fx_free(f);
}

static void test_answer_not_gemini(void **state)
{
    struct fx *f = fx_new();
    struct ibex_buf out;
    ibex_buf_init(&out);
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}",
        "{\"error\":{\"code\":500,\"message\":\"boom\"},\"candidates\":[]}",
        "{\"candidates\":{}}",
        "{\"candidates\":[]} trailing",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(answer(f, MSGS(USER) "}", bad[i], &out));
    ibex_buf_dispose(&out);
    fx_free(f);
}

/* ---- streams ---- */

/* A recorded-style stream: text over two events, a function call with a thought signature and
 * the finish reason in the third, usage in each; CRLF event ends as Gemini sends them. */
static const char recorded[] =
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": "
    "\"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": "
    "9},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"rSp1\"}\r\n\r\n"
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo, w\\u00f6rld \\\"q\\\"\\n"
    "\"},{\"text\":\"\\ud83d\\ude00\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": "
    "{\"promptTokenCount\": 9,\"candidatesTokenCount\": 4,\"totalTokenCount\": 13},"
    "\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"rSp1\"}\r\n\r\n"
    ": a comment\r\n"
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": "
    "\"get_weather\",\"args\": {\"city\": \"Paris\"}},\"thoughtSignature\": \"c2ln\"},"
    "{\"functionCall\": {\"name\": \"now\",\"args\": {}}}],\"role\": \"model\"},"
    "\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,"
    "\"candidatesTokenCount\": 12,\"totalTokenCount\": 40,\"thoughtsTokenCount\": 19},"
    "\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"rSp1\"}\r\n\r\n";

struct run {
    struct ibex_buf out;
    int feed_rc, end_rc;
    const char *error;
    int64_t prompt, completion;
};

/* Feeds p in pieces cut at the given offsets (ascending, ncuts of them), then ends. */
static void run_stream(struct fx *f, const char *req, const char *p, size_t len, const size_t *cuts,
                       size_t ncuts, struct run *r)
{
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    const struct ibex_provider *pv = prov(f, "gem");
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_provider_stream *s = pv->ops->stream_open(pv, &chat, arena);
    assert_non_null(s);
    assert_int_equal(s->prompt_tokens, -1);
    ibex_buf_init(&r->out);
    r->feed_rc = r->end_rc = 0;
    size_t off = 0;
    for (size_t i = 0; i <= ncuts && r->feed_rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        r->feed_rc = pv->ops->stream_feed(s, p + off, end - off, &r->out);
        off = end;
    }
    r->end_rc = r->feed_rc == 0 ? pv->ops->stream_end(s, &r->out) : -1;
    r->error = s->error;
    r->prompt = s->prompt_tokens;
    r->completion = s->completion_tokens;
    ibex_arena_free(arena); /* releases the decoder */
    ibex_chat_request_dispose(&chat);
}

/* The bytes with every "created":<digits> made "created":0 (the clock may tick between runs). */
static void normalize(struct ibex_buf *b)
{
    static const char key[] = "\"created\":";
    char *w = b->p, *r = b->p, *end = b->p + b->len;
    while (r < end) {
        if ((size_t)(end - r) >= sizeof(key) - 1 && memcmp(r, key, sizeof(key) - 1) == 0) {
            memmove(w, key, sizeof(key) - 1);
            w += sizeof(key) - 1;
            r += sizeof(key) - 1;
            *w++ = '0';
            while (r < end && isdigit((unsigned char)*r))
                r++;
            continue;
        }
        *w++ = *r++;
    }
    b->len = (size_t)(w - b->p);
    b->p[b->len] = '\0';
}

/* Checks the SSE framing (each event one data line of JSON, [DONE] last) and collects it. */
static void collect(const struct ibex_buf *b, struct ibex_answer *a)
{
    size_t off = 0, n = 0;
    bool done = false;
    while (off < b->len) {
        assert_false(done);
        const char *ev = b->p + off;
        const char *end = strstr(ev, "\n\n");
        assert_non_null(end);
        assert_int_equal(strncmp(ev, "data: ", 6), 0);
        assert_null(memchr(ev + 6, '\n', (size_t)(end - ev) - 6));
        if ((size_t)(end - ev) == 12 && memcmp(ev + 6, "[DONE]", 6) == 0) {
            done = true;
        } else {
            json_object *o = tu_parse_json(ev + 6, (size_t)(end - ev) - 6);
            if (o == NULL)
                fail_msg("event %zu is not JSON: %.*s", n, (int)(end - ev), ev);
            assert_string_equal(str_at(o, "object"), "chat.completion.chunk");
            json_object_put(o);
        }
        off = (size_t)(end - b->p) + 2;
        n++;
    }
    ibex_answer_init(a, 1 << 20);
    ibex_answer_feed_sse(a, b->p, b->len);
    assert_int_equal(a->skipped, 0);
    assert_int_equal(a->sse.skipped, 0);
    assert_int_equal(a->sse.line.len, 0);
}

#define STREAM_REQ(extra) MSGS(USER) ",\"stream\":true" extra "}"

static void check_recorded(const struct run *r, bool usage)
{
    assert_int_equal(r->feed_rc, 0);
    assert_int_equal(r->end_rc, 0);
    assert_null(r->error);
    assert_int_equal(r->prompt, 9);
    assert_int_equal(r->completion, 31);
    struct ibex_answer a;
    collect(&r->out, &a);
    assert_true(a.done);
    assert_string_equal(a.content.p, "Hello, w\xc3\xb6rld \"q\"\n\xf0\x9f\x98\x80");
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_string_equal(a.model, "gemini-2.5-flash");
    assert_string_equal(a.tool_calls.p,
                        "[{\"id\":\"call_rSp1_0\",\"type\":\"function\",\"function\":{\"name\":"
                        "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
                        "{\"id\":\"call_rSp1_1\",\"type\":\"function\",\"function\":{\"name\":"
                        "\"now\",\"arguments\":\"{}\"}}]");
    if (usage) {
        assert_int_equal(a.prompt_tokens, 9);
        assert_int_equal(a.completion_tokens, 31);
        assert_int_equal(a.total_tokens, 40);
    } else {
        assert_int_equal(a.prompt_tokens, -1);
    }
    ibex_answer_dispose(&a);
}

static void test_stream_recorded(void **state)
{
    struct fx *f = fx_new();
    struct run whole;
    run_stream(f, STREAM_REQ(""), recorded, sizeof(recorded) - 1, NULL, 0, &whole);
    check_recorded(&whole, false);
    normalize(&whole.out);
    /* the first chunk carries the role, ids and model come from the first event */
    assert_int_equal(strncmp(whole.out.p,
                             "data: {\"id\":\"rSp1\",\"object\":\"chat.completion.chunk\","
                             "\"created\":0,\"model\":\"gemini-2.5-flash\",\"choices\":[{"
                             "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                             "\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                             strlen("data: {\"id\":\"rSp1\",\"object\":\"chat.completion.chunk\","
                                    "\"created\":0,\"model\":\"gemini-2.5-flash\",\"choices\":[{"
                                    "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
                                    "\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n")),
                     0);
    assert_non_null(strstr(whole.out.p, "\"extra_content\":{\"google\":{\"thought_signature\":"
                                        "\"c2ln\"}}"));
    assert_null(strstr(whole.out.p, "\"usage\""));

    /* every split in two, then every split in three around the event boundaries */
    size_t len = sizeof(recorded) - 1;
    for (size_t i = 0; i <= len; i++) {
        struct run r;
        run_stream(f, STREAM_REQ(""), recorded, len, &i, 1, &r);
        check_recorded(&r, false);
        normalize(&r.out);
        if (r.out.len != whole.out.len || memcmp(r.out.p, whole.out.p, r.out.len) != 0)
            fail_msg("split at %zu differs", i);
        ibex_buf_dispose(&r.out);
    }
    for (size_t i = 0; i + 1 <= len; i += 7) {
        for (size_t j = i + 1; j <= len; j += 13) {
            size_t cuts[2] = {i, j};
            struct run r;
            run_stream(f, STREAM_REQ(""), recorded, len, cuts, 2, &r);
            normalize(&r.out);
            assert_memory_equal(r.out.p, whole.out.p, whole.out.len);
            ibex_buf_dispose(&r.out);
        }
    }
    /* a byte at a time */
    size_t *cuts = malloc(len * sizeof(*cuts));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    struct run r;
    run_stream(f, STREAM_REQ(""), recorded, len, cuts, len - 1, &r);
    normalize(&r.out);
    assert_int_equal(r.out.len, whole.out.len);
    assert_memory_equal(r.out.p, whole.out.p, whole.out.len);
    ibex_buf_dispose(&r.out);
    free(cuts);
    ibex_buf_dispose(&whole.out);
    fx_free(f);
}

static void test_stream_usage(void **state)
{
    struct fx *f = fx_new();
    size_t len = sizeof(recorded) - 1;
    struct run r;
    run_stream(f, STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), recorded, len, NULL,
               0, &r);
    check_recorded(&r, true);
    const char *u = strstr(r.out.p, "\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                                    "\"completion_tokens\":31,\"total_tokens\":40,"
                                    "\"completion_tokens_details\":{\"reasoning_tokens\":19}}}"
                                    "\n\ndata: [DONE]\n\n");
    assert_non_null(u);
    ibex_buf_dispose(&r.out);

    run_stream(f, STREAM_REQ(",\"stream_options\":{\"include_usage\":false}"), recorded, len, NULL,
               0, &r);
    check_recorded(&r, false);
    assert_null(strstr(r.out.p, "\"usage\""));
    ibex_buf_dispose(&r.out);

    /* usage asked for but never reported: no usage chunk, the stream still ends well */
    static const char nousage[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
        "\"finishReason\":\"MAX_TOKENS\"}]}\n\n";
    run_stream(f, STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), nousage,
               sizeof(nousage) - 1, NULL, 0, &r);
    assert_int_equal(r.end_rc, 0);
    assert_int_equal(r.prompt, -1);
    struct ibex_answer a;
    collect(&r.out, &a);
    assert_string_equal(a.finish_reason, "length");
    assert_int_equal(a.prompt_tokens, -1);
    assert_true(a.done);
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&r.out);
    fx_free(f);
}

static void test_stream_errors(void **state)
{
    struct fx *f = fx_new();
    struct run r;
    /* an error object mid-stream: -1, a static message without the provider's text */
    static const char err[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"par\"}]}}]}\n\n"
        "data: {\"error\":{\"code\":500,\"message\":\"secret internal detail\","
        "\"status\":\"INTERNAL\"}}\n\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"never\"}]},"
        "\"finishReason\":\"STOP\"}]}\n\n";
    run_stream(f, STREAM_REQ(""), err, sizeof(err) - 1, NULL, 0, &r);
    assert_int_equal(r.feed_rc, -1);
    assert_non_null(r.error);
    assert_null(strstr(r.error, "secret"));
    assert_null(strstr(r.out.p, "never")); /* nothing after the error is translated */
    assert_non_null(strstr(r.out.p, "\"content\":\"par\""));
    ibex_buf_dispose(&r.out);

    /* truncated: no finishReason before the end */
    run_stream(f, STREAM_REQ(""), err, (size_t)(strstr(err, "\n\n") + 2 - err), NULL, 0, &r);
    assert_int_equal(r.feed_rc, 0);
    assert_int_equal(r.end_rc, -1);
    assert_non_null(r.error);
    ibex_buf_dispose(&r.out);
    run_stream(f, STREAM_REQ(""), "", 0, NULL, 0, &r); /* nothing at all */
    assert_int_equal(r.end_rc, -1);
    assert_int_equal(r.out.len, 0);
    ibex_buf_dispose(&r.out);

    /* a data line that is not a JSON object */
    run_stream(f, STREAM_REQ(""), "data: [DONE]\n\n", 14, NULL, 0, &r);
    assert_int_equal(r.feed_rc, -1);
    assert_non_null(r.error);
    ibex_buf_dispose(&r.out);

    /* the last event without its line end is still read at the end */
    static const char last[] = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                               "\"finishReason\":\"STOP\"}]}";
    run_stream(f, STREAM_REQ(""), last, sizeof(last) - 1, NULL, 0, &r);
    assert_int_equal(r.end_rc, 0);
    struct ibex_answer a;
    collect(&r.out, &a);
    assert_string_equal(a.content.p, "x");
    assert_string_equal(a.finish_reason, "stop");
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&r.out);

    /* an event over the line bound (1 MiB) fails instead of growing memory */
    size_t big = ((size_t)1 << 20) + 100;
    char *p = malloc(big + 2);
    memcpy(p, "data: ", 6);
    memset(p + 6, 'a', big - 6);
    memcpy(p + big, "\n\n", 2);
    run_stream(f, STREAM_REQ(""), p, big + 2, NULL, 0, &r);
    assert_int_equal(r.feed_rc, -1);
    assert_non_null(r.error);
    ibex_buf_dispose(&r.out);
    free(p);
    fx_free(f);
}

static void test_stream_blocked_and_filtered(void **state)
{
    struct fx *f = fx_new();
    struct run r;
    static const char blocked[] =
        "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":{"
        "\"promptTokenCount\":4,\"totalTokenCount\":4}}\r\n\r\n";
    run_stream(f, STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), blocked,
               sizeof(blocked) - 1, NULL, 0, &r);
    assert_int_equal(r.end_rc, 0);
    struct ibex_answer a;
    collect(&r.out, &a);
    assert_string_equal(a.finish_reason, "content_filter");
    assert_int_equal(a.content.len, 0);
    assert_int_equal(a.prompt_tokens, 4);
    assert_int_equal(a.completion_tokens, 0);
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&r.out);

    /* finish reason on its own event, after the text; a second one is not repeated */
    static const char safety[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\n"
        "data: {\"candidates\":[{\"finishReason\":\"SAFETY\"}]}\n\n"
        "data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n";
    run_stream(f, STREAM_REQ(""), safety, sizeof(safety) - 1, NULL, 0, &r);
    assert_int_equal(r.end_rc, 0);
    collect(&r.out, &a);
    assert_string_equal(a.finish_reason, "content_filter");
    assert_string_equal(a.content.p, "a");
    ibex_answer_dispose(&a);
    assert_null(strstr(r.out.p, "\"finish_reason\":\"stop\""));
    assert_non_null(strstr(r.out.p, "\"id\":\"chatcmpl-")); /* no responseId */
    assert_non_null(strstr(r.out.p, "\"model\":\"gemini-2.5-flash\""));
    ibex_buf_dispose(&r.out);
    fx_free(f);
}

static void test_stream_logprobs_and_calls_across_events(void **state)
{
    struct fx *f = fx_new();
    static const char s[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"a\","
        "\"args\":{\"x\":1}}}]}}],\"responseId\":\"weird id!\"}\n\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"},{\"functionCall\":{"
        "\"name\":\"b\"}}]},\"logprobsResult\":{\"chosenCandidates\":[{\"token\":\"Hi\","
        "\"logProbability\":-0.5}]},\"finishReason\":\"STOP\"}]}\n\n";
    struct run r;
    run_stream(f, STREAM_REQ(""), s, sizeof(s) - 1, NULL, 0, &r);
    assert_int_equal(r.end_rc, 0);
    struct ibex_answer a;
    collect(&r.out, &a);
    assert_string_equal(a.finish_reason, "tool_calls");
    json_object *calls = tu_parse_json(a.tool_calls.p, a.tool_calls.len);
    assert_int_equal(json_object_array_length(calls), 2);
    assert_string_equal(str_at(calls, "0.function.name"), "a");
    assert_string_equal(str_at(calls, "1.function.name"), "b");
    /* a responseId unfit for ids: random base, same for both calls, distinct suffixes */
    const char *id0 = str_at(calls, "0.id"), *id1 = str_at(calls, "1.id");
    assert_int_equal(strlen(id0), strlen("call_") + 16 + 2);
    assert_int_equal(memcmp(id0, id1, strlen(id0) - 1), 0);
    assert_string_equal(id0 + strlen(id0) - 2, "_0");
    assert_string_equal(id1 + strlen(id1) - 2, "_1");
    json_object_put(calls);
    ibex_answer_dispose(&a);
    assert_non_null(strstr(r.out.p, "\"id\":\"weird id!\""));
    assert_non_null(strstr(r.out.p, "\"delta\":{\"content\":\"Hi\"},\"logprobs\":{\"content\":[{"
                                    "\"token\":\"Hi\",\"logprob\":-0.5,\"bytes\":[72,105],"
                                    "\"top_logprobs\":[]}]}"));
    assert_non_null(strstr(r.out.p, "\"tool_calls\":[{\"index\":1,"));
    ibex_buf_dispose(&r.out);
    fx_free(f);
}

/* ---- the fast scanner against json-c ---- */

/* Feeds p to a decoder and its json-c reference twin in the same pieces (whole, a byte at a
 * time, and cut every 7 bytes): after each piece both wrote the same bytes and are in the same
 * state. Returns the decoder's fast events of the whole run; out (when not NULL) gets its
 * bytes. */
static uint64_t differential(struct fx *f, const char *req, const char *p, size_t len,
                             struct ibex_buf *out)
{
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    const struct ibex_provider *pv = prov(f, "gem");
    uint64_t fast = 0;
    for (size_t step = 0; step <= 7; step += 7) { /* 0: whole; 1 is done below */
        for (size_t mode = 0; mode < 2; mode++) {
            size_t piece = mode == 0 ? (step ? step : len + 1) : 1;
            if (mode == 1 && step != 0)
                continue;
            struct ibex_arena *arena = ibex_arena_new(1024);
            struct ibex_provider_stream *a = pv->ops->stream_open(pv, &chat, arena);
            struct ibex_provider_stream *b = ibex_gemini_stream_open_reference(pv, &chat, arena, a);
            struct ibex_buf x, y;
            ibex_buf_init(&x);
            ibex_buf_init(&y);
            int rc = 0;
            for (size_t off = 0; off < len && rc == 0; off += piece) {
                size_t n = len - off < piece ? len - off : piece;
                rc = pv->ops->stream_feed(a, p + off, n, &x);
                assert_int_equal(pv->ops->stream_feed(b, p + off, n, &y), rc);
                assert_int_equal(x.len, y.len);
                assert_memory_equal(x.p, y.p, x.len);
                assert_true(ibex_gemini_stream_same(a, b));
            }
            if (rc == 0) {
                rc = pv->ops->stream_end(a, &x);
                assert_int_equal(pv->ops->stream_end(b, &y), rc);
                if (x.len != y.len || memcmp(x.p, y.p, x.len) != 0)
                    fail_msg("fast:\n%s\njson-c:\n%s", x.p, y.p);
                assert_true(ibex_gemini_stream_same(a, b));
            }
            assert_int_equal(ibex_gemini_stream_fast_events(b), 0);
            if (step == 0 && mode == 0) {
                fast = ibex_gemini_stream_fast_events(a);
                if (out) {
                    ibex_buf_init(out);
                    ibex_buf_append(out, x.p ? x.p : "", x.len);
                }
            } else {
                assert_int_equal(ibex_gemini_stream_fast_events(a), fast);
            }
            ibex_buf_dispose(&x);
            ibex_buf_dispose(&y);
            ibex_arena_free(arena);
        }
    }
    ibex_chat_request_dispose(&chat);
    return fast;
}

static void test_fast_recorded(void **state)
{
    struct fx *f = fx_new();
    /* the first two events are text (escapes, a surrogate pair), the third a function call */
    assert_int_equal(differential(f, STREAM_REQ(""), recorded, sizeof(recorded) - 1, NULL), 2);
    assert_int_equal(differential(f, STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"),
                                  recorded, sizeof(recorded) - 1, NULL),
                     2);
    /* as fakellm and the benchmarks write them: compact, CRLF */
    static const char compact[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"some words \"}],\"role\":"
        "\"model\"},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":"
        "\"mKdfaKbLHqSb1dkPu7bVsA8\"}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},"
        "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":1021,"
        "\"candidatesTokenCount\":160,\"totalTokenCount\":1181},\"modelVersion\":"
        "\"gemini-2.5-flash\",\"responseId\":\"mKdfaKbLHqSb1dkPu7bVsA8\"}\r\n\r\n";
    struct ibex_buf out;
    assert_int_equal(differential(f, STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"),
                                  compact, sizeof(compact) - 1, &out),
                     2);
    normalize(&out);
    assert_string_equal(
        out.p,
        "data: {\"id\":\"mKdfaKbLHqSb1dkPu7bVsA8\",\"object\":\"chat.completion.chunk\","
        "\"created\":0,\"model\":\"gemini-2.5-flash\",\"choices\":[{\"index\":0,\"delta\":{"
        "\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"mKdfaKbLHqSb1dkPu7bVsA8\",\"object\":\"chat.completion.chunk\","
        "\"created\":0,\"model\":\"gemini-2.5-flash\",\"choices\":[{\"index\":0,\"delta\":{"
        "\"content\":\"some words \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"mKdfaKbLHqSb1dkPu7bVsA8\",\"object\":\"chat.completion.chunk\","
        "\"created\":0,\"model\":\"gemini-2.5-flash\",\"choices\":[{\"index\":0,\"delta\":{},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
        "data: {\"id\":\"mKdfaKbLHqSb1dkPu7bVsA8\",\"object\":\"chat.completion.chunk\","
        "\"created\":0,\"model\":\"gemini-2.5-flash\",\"choices\":[],\"usage\":{"
        "\"prompt_tokens\":1021,\"completion_tokens\":160,\"total_tokens\":1181}}\n\n"
        "data: [DONE]\n\n");
    ibex_buf_dispose(&out);
    fx_free(f);
}

/* One event line, read as the first event of a stream and as a later one. */
struct line_case {
    const char *line;
    bool fast_first, fast_later; /* whether the fast scanner reads it there */
    bool fails;                  /* the stream stops at it */
};

#define START                                                                                      \
    "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"s\"}],\"role\": \"model\"},"        \
    "\"index\": 0}],\"modelVersion\": \"m1\",\"responseId\": \"r1\"}"
#define FINAL                                                                                      \
    "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},"         \
    "\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 5,"       \
    "\"candidatesTokenCount\": 2,\"totalTokenCount\": 7}}"

static void check_lines(const struct line_case *cases, size_t n)
{
    struct fx *f = fx_new();
    struct ibex_buf s;
    ibex_buf_init(&s);
    for (size_t i = 0; i < n; i++) {
        const struct line_case *c = &cases[i];
        for (int later = 0; later < 2; later++) {
            ibex_buf_reset(&s);
            if (later)
                ibex_buf_append_cstr(&s, "data: " START "\r\n\r\n");
            ibex_buf_appendf(&s, "data: %s\r\n\r\ndata: " FINAL "\r\n\r\n", c->line);
            uint64_t want =
                (uint64_t)later + (later ? c->fast_later : c->fast_first) + (c->fails ? 0 : 1);
            uint64_t got = differential(
                f, STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), s.p, s.len, NULL);
            if (got != want)
                fail_msg("case %zu (%s event): %llu fast events, want %llu: %s", i,
                         later ? "later" : "first", (unsigned long long)got,
                         (unsigned long long)want, c->line);
        }
    }
    ibex_buf_dispose(&s);
    fx_free(f);
}

/* The events of a stream fed whole to a decoder: how many it read by an earlier event's shape. */
static uint64_t shape_events(struct fx *f, const char *req, const char *p, size_t len)
{
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    const struct ibex_provider *pv = prov(f, "gem");
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_provider_stream *s = pv->ops->stream_open(pv, &chat, arena);
    struct ibex_buf out;
    ibex_buf_init(&out);
    if (pv->ops->stream_feed(s, p, len, &out) == 0)
        pv->ops->stream_end(s, &out);
    uint64_t n = ibex_gemini_stream_shape_events(s);
    ibex_buf_dispose(&out);
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    return n;
}

/* Text events that repeat an earlier event's bytes around a new text literal are read by that
 * shape, and still come out as json-c reads them; any other difference takes fast_scan (or
 * json-c), and a literal that does not end where the shape's tail begins never passes. */
static void test_same_shape(void **state)
{
    static const char *const forms[][2] = {
        /* around the text's literal: compact (fakellm), Google AI's spacing, Vertex's order */
        {"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":",
         "}],\"role\":\"model\"},\"index\":0}],\"modelVersion\":\"m\",\"responseId\":\"r\"}"},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": ",
         "}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"m\",\"responseId\": \"r\"}"},
        {"{\"candidates\": [{\"content\": {\"role\": \"model\",\"parts\": [{\"text\": ",
         "}]}}],\"usageMetadata\": {\"trafficType\": \"ON_DEMAND\"},\"modelVersion\": \"m\","
         "\"createTime\": \"2026-03-10T14:54:45.066123Z\",\"responseId\": \"r\"}"},
    };
    static const struct {
        const char *literal; /* what goes between the form's two halves */
        bool by_shape;
    } texts[] = {
        {"\"first\"", false}, /* fast_scan reads it and keeps its shape */
        {"\"plain words \"", true},
        {"\"\"", true}, /* empty: no chunk, as fast_scan */
        {"\"a\\nb\\\"c\\\\\"", true},
        {"\"\\u00e9\\ud83d\\ude00 \\/ caf\xc3\xa9\"", true},
        {"\"x\" ", false},                       /* a space after the literal: a new shape... */
        {"\"y\" ", true},                        /* ...that the next event has */
        {"\"two\"},{\"text\":\"parts\"", false}, /* fast_scan; the shape stays */
        {"\"after two\" ", true},
    };
    static const char *const broken[] = {
        "\"ab\"c\"",    /* a quote inside */
        "\"ab\\\"",     /* the closing quote escaped: the literal runs into the tail */
        "\"ctl\x01\"",  /* a control byte */
        "\"bad \\x\"",  /* an unknown escape */
        "\"cut \xc3\"", /* a truncated UTF-8 sequence */
    };
    const char *req = STREAM_REQ(",\"stream_options\":{\"include_usage\":true}");
    struct fx *f = fx_new();
    struct ibex_buf s;
    ibex_buf_init(&s);
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        ibex_buf_reset(&s);
        uint64_t want = 0;
        for (size_t j = 0; j < sizeof(texts) / sizeof(texts[0]); j++) {
            ibex_buf_appendf(&s, "data: %s%s%s\r\n\r\n", forms[i][0], texts[j].literal,
                             forms[i][1]);
            want += texts[j].by_shape;
        }
        ibex_buf_append_cstr(&s, "data: " FINAL "\r\n\r\n");
        assert_int_equal(differential(f, req, s.p, s.len, NULL),
                         sizeof(texts) / sizeof(texts[0]) + 1);
        assert_int_equal(shape_events(f, req, s.p, s.len), want);
        for (size_t j = 0; j < sizeof(broken) / sizeof(broken[0]); j++) {
            ibex_buf_reset(&s);
            ibex_buf_appendf(&s,
                             "data: %s\"ok\"%s\r\n\r\ndata: %s%s%s\r\n\r\ndata: " FINAL "\r\n\r\n",
                             forms[i][0], forms[i][1], forms[i][0], broken[j], forms[i][1]);
            assert_int_equal(differential(f, req, s.p, s.len, NULL), 1);
            assert_int_equal(shape_events(f, req, s.p, s.len), 0);
        }
    }
    /* the shape's usage comes back with it after an event with other counts */
    static const char counts[] =
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}],"
        "\"usageMetadata\": {\"promptTokenCount\": 3}}\r\n\r\n"
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"b\"},{\"text\": "
        "\"c\"}]}}],\"usageMetadata\": {\"promptTokenCount\": 9}}\r\n\r\n"
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"d\"}]}}],"
        "\"usageMetadata\": {\"promptTokenCount\": 3}}\r\n\r\n"
        "data: {\"candidates\": [{\"finishReason\": \"STOP\"}]}\r\n\r\n";
    assert_int_equal(differential(f, req, counts, sizeof(counts) - 1, NULL), 4);
    assert_int_equal(shape_events(f, req, counts, sizeof(counts) - 1), 1);
    ibex_buf_dispose(&s);
    fx_free(f);
}

#define CAND(parts) "{\"candidates\": [{\"content\": {\"parts\": [" parts "]},\"index\": 0}]}"

static void test_fast_shapes(void **state)
{
    static const struct line_case cases[] = {
        /* keys in any order, whitespace as Google writes it or none, members stepped over */
        {"{\"responseId\": \"r2\", \"usageMetadata\": {\"totalTokenCount\": 3, "
         "\"promptTokenCount\": 1, \"promptTokensDetails\": [{\"modality\": \"TEXT\", "
         "\"tokenCount\": 1}]}, \"candidates\": [{\"index\": 0, \"finishReason\": \"MAX_TOKENS\", "
         "\"content\": {\"role\": \"model\", \"parts\": [{\"thoughtSignature\": \"c2ln\", "
         "\"text\": \"a\"}, {\"text\": \"\"}, {\"text\": \"b\"}]}}], \"modelVersion\": \"mv\"}",
         true, true, false},
        {"  {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}\t ", true, true, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"x\"}]}, \"safetyRatings\": "
         "[{\"category\": \"HARM_CATEGORY_HARASSMENT\", \"probability\": \"NEGLIGIBLE\"}], "
         "\"citationMetadata\": {\"citationSources\": [{\"startIndex\": 0, \"endIndex\": 9, "
         "\"uri\": \"https://e.x/\\u00e9\"}]}, \"avgLogprobs\": -0.25e-1}], \"createTime\": "
         "\"2025-01-01T00:00:00Z\", \"x\": [true, false, null, {}, [], 1E+400]}",
         true, true, false},
        /* no candidate: only usage, or nothing */
        {"{\"usageMetadata\": {\"promptTokenCount\": 4}}", true, true, false},
        {"{}", true, true, false},
        {"{\"candidates\": [{\"finishReason\": \"SAFETY\"}]}", true, true, false},
        {"{\"candidates\": [{\"content\": {}, \"finishReason\": \"RECITATION\"}]}", true, true,
         false},
        {"{\"candidates\": [{\"content\": {\"parts\": []}, \"finishReason\": \"\"}]}", true, true,
         false},
        /* the names: used only from the first event, so escaped ones are read later only */
        {"{\"responseId\": \"weird id!\", \"modelVersion\": \"\", "
         "\"candidates\": []}",
         false, false, false},
        {"{\"responseId\": \"weird id!\", \"modelVersion\": \"\"}", true, true, false},
        {"{\"responseId\": \"r\\u0041\", \"modelVersion\": \"m\\/1\"}", false, true, false},
        {"{\"responseId\": \""
         "0123456789012345678901234567890123456789012345678901234567890123456789"
         "0123456789012345678901234567890123456789012345678901234567890123456789\"}",
         true, true, false},
        /* what the scanner leaves to json-c */
        {CAND("{\"text\": \"a\"},{\"functionCall\": {\"name\": \"f\", \"args\": {}}}"), false,
         false, false},
        {CAND("{\"text\": \"t\", \"thought\": true}"), false, false, false},
        {CAND("{\"thought\": false, \"text\": \"t\"}"), false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}, \"logprobsResult\": "
         "{\"chosenCandidates\": []}}]}",
         false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}, \"index\": 1}]}", false,
         false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}, \"index\": 0.0}]}",
         false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}, \"index\": -0}]}",
         false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}, {\"content\": "
         "{\"parts\": [{\"text\": \"b\"}]}, \"index\": 1}]}",
         false, false, false},
        {"{\"candidates\": []}", false, false, false},
        {"{\"promptFeedback\": {\"blockReason\": \"OTHER\"}}", false, false, false},
        {"{\"promptFeedback\": {\"safetyRatings\": []}, \"candidates\": [{\"content\": "
         "{\"parts\": [{\"text\": \"a\"}]}}]}",
         false, false, false},
        {"{\"error\": {\"code\": 500, \"message\": \"m\"}}", false, false, true},
        {"{\"error\": null, \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}",
         false, false, false},
        {"{\"usageMetadata\": null}", false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": null}]}}]}", false, false, false},
        {"{\"candidates\": [{\"finishReason\": null}]}", false, false, false},
        {"{\"candidates\": [{\"finishReason\": 3}]}", false, false, false},
        {"{\"candidates\": [{\"finishReason\": \"ST\\u004fP\"}]}", false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": {\"text\": \"a\"}}}]}", false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [\"a\"]}}]}", false, false, false},
        {"{\"candidates\": {}}", false, false, false},
        /* repeated members (json-c keeps the last) and escaped keys (they may spell a known one) */
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\", \"text\": \"b\"}]}}]}",
         false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}], \"candidates\": "
         "[{\"content\": {\"parts\": [{\"text\": \"b\"}]}}]}",
         false, false, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": 1, \"promptTokenCount\": 2}}", false, false,
         false},
        {"{\"responseId\": \"a\", \"responseId\": \"b\"}", false, false, false},
        {"{\"x\": 1, \"x\": 2, \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}",
         true, true, false},
        {CAND("{\"te\\u0078t\": \"a\"}"), false, false, false},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}], \"e\\u0072ror\": 1}",
         false, false, true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}], \"k\": "
         "{\"esc\\u0061ped\": \"inside a value stepped over\"}}",
         true, true, false},
        /* nesting: eight deep is stepped over, nine is json-c's */
        {"{\"g\": [[[[[[[[1]]]]]]]], \"candidates\": [{\"content\": {\"parts\": [{\"text\": "
         "\"a\"}]}}]}",
         true, true, false},
        {"{\"g\": [[[[[[[[[1]]]]]]]]], \"candidates\": [{\"content\": {\"parts\": [{\"text\": "
         "\"a\"}]}}]}",
         false, false, false},
        {CAND("{\"text\": \"1\"},{\"text\": \"2\"},{\"text\": \"3\"},{\"text\": \"4\"},{\"text\": "
              "\"5\"},{\"text\": \"6\"},{\"text\": \"7\"},{\"text\": \"8\"}"),
         true, true, false},
        {CAND("{\"text\": \"1\"},{\"text\": \"2\"},{\"text\": \"3\"},{\"text\": \"4\"},{\"text\": "
              "\"5\"},{\"text\": \"6\"},{\"text\": \"7\"},{\"text\": \"8\"},{\"text\": \"9\"}"),
         false, false, false},
        /* json-c's extensions: taken there, never here */
        {"{'candidates': []}", false, false, false},
        {"{\"x\": NaN, \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}", false,
         false, false},
        {"{\"x\": 00, \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}", false,
         false, false},
        {"{\"x\": 1., \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}", false,
         false, false},
        {CAND("{\"text\": \"tab\there\"}"), false, false, false},
        {"\f{}", false, false, true},
        /* not JSON, or not all of it: json-c fails the stream */
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"abc\"}", false, false, true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"ab", false, false, true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\\u00", false, false, true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\\ud83d", false, false, true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]} x", false, false,
         true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}}", false, false,
         true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"},]}}]}", false, false,
         true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\xc3\"}]}}]}", false, false,
         true},
        {"{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\xed\xa0\x80\"}]}}]}", false,
         false, true},
        {"[]", false, false, true},
        {"\"text\"", false, false, true},
    };
    check_lines(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_fast_text_and_counts(void **state)
{
    static const struct line_case cases[] = {
        /* every escape, made canonical as json-c's decoding then ibex's escaping makes it */
        {CAND("{\"text\": \"\\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u0000\\u001F\\u007f "
              "\\u003cb\\u003e "
              "\\u0026\\u003d\\u0027 \\u00e9\\u00C9 \\u20ac \\uffff \\ud83d\\ude00 "
              "\\uDBFF\\uDFFF\"}"),
         true, true, false},
        {CAND("{\"text\": \"raw caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f\"}"), true, true,
         false},
        {CAND("{\"text\": \"\\\\u0041 is not an escape\"}"), true, true, false},
        /* lone surrogates: json-c makes them U+FFFD, the scanner leaves them to it */
        {CAND("{\"text\": \"\\ud83d\"}"), false, false, false},
        {CAND("{\"text\": \"\\ude00\"}"), false, false, false},
        {CAND("{\"text\": \"\\ud83d\\u0041\"}"), false, false, false},
        /* counts: small integers are read (and clamped at IBEX_TOKENS_MAX), others are not */
        {"{\"usageMetadata\": {\"promptTokenCount\": 0, \"candidatesTokenCount\": "
         "123456789012345678, \"thoughtsTokenCount\": 281474976710656, "
         "\"cachedContentTokenCount\": 281474976710655, \"totalTokenCount\": 999999999999999999}}",
         true, true, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": 1234567890123456789}}", false, false, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": 99999999999999999999999}}", false, false,
         false},
        {"{\"usageMetadata\": {\"promptTokenCount\": -1}}", false, false, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": 1.0}}", false, false, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": 1e3}}", false, false, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": 012}}", false, false, true},
        {"{\"usageMetadata\": {\"promptTokenCount\": \"12\"}}", false, false, false},
        {"{\"usageMetadata\": {\"promptTokenCount\": true}}", false, false, false},
        {"{\"usageMetadata\": {\"totalTokenCount\": 0}}", true, true, false},
        {"{\"usageMetadata\": {\"otherCount\": -5.5, \"promptTokenCount\": 7}}", true, true, false},
    };
    check_lines(cases, sizeof(cases) / sizeof(cases[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_set),
        cmocka_unit_test(test_url_and_headers),
        cmocka_unit_test(test_model_names_refused),
        cmocka_unit_test(test_request_roles),
        cmocka_unit_test(test_request_media),
        cmocka_unit_test(test_request_tool_turns),
        cmocka_unit_test(test_request_tools),
        cmocka_unit_test(test_request_generation_config),
        cmocka_unit_test(test_request_refused_fields),
        cmocka_unit_test(test_answer_text_and_usage),
        cmocka_unit_test(test_answer_tool_calls),
        cmocka_unit_test(test_answer_finish_reasons),
        cmocka_unit_test(test_answer_logprobs),
        cmocka_unit_test(test_answer_not_gemini),
        cmocka_unit_test(test_stream_recorded),
        cmocka_unit_test(test_stream_usage),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_stream_blocked_and_filtered),
        cmocka_unit_test(test_stream_logprobs_and_calls_across_events),
        cmocka_unit_test(test_fast_recorded),
        cmocka_unit_test(test_same_shape),
        cmocka_unit_test(test_fast_shapes),
        cmocka_unit_test(test_fast_text_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
