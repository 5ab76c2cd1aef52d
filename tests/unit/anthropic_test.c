/* src/providers/anthropic.c: the provider set entry (URL, headers), the request translation
 * (each mapping, each 400), the answer translation (text, tool calls, finish reasons, usage,
 * bodies that are not Messages answers) and the stream translation: a recorded stream fed in
 * every split position and a byte at a time gives the same chunks, which the answer collector
 * reads without skipping a line; tool-call streams, error events, truncated and malformed
 * streams, usage with and without include_usage.
 *
 * JSON in this file is written with single quotes for readability: q() turns them into double
 * quotes (no test text contains an apostrophe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <strings.h>

#include "../../src/config/config.h"
#include "../../src/core/arena.h"
#include "../../src/gateway/answer.h"
#include "../../src/providers/anthropic.h"
#include "../../src/providers/provider.h"
#include "testutil.h"

static struct ibex_config cfg;
static struct ibex_providers ps;
static const struct ibex_provider *claude;  /* api.anthropic.com with a key */
static const struct ibex_provider *keyless; /* a local base_url, no key */

static const char yaml[] = "providers:\n"
                           "  - name: claude\n"
                           "    type: anthropic\n"
                           "    api_key: sk-ant-unit\n"
                           "    idle_timeout: 7s\n"
                           "  - name: local\n"
                           "    type: anthropic\n"
                           "    base_url: http://127.0.0.1:9/\n";

static int setup(void **state)
{
    tu_unsetenv_prefix("IBEX_");
    tu_unsetenv_prefix("OPENAI_");
    tu_unsetenv_prefix("ANTHROPIC_");
    tu_unsetenv_prefix("GEMINI_");
    char path[64];
    if (tu_write_temp(yaml, path) != 0)
        return -1;
    const char *argv[] = {"--config", path};
    char err[256];
    int rc = ibex_config_load(&cfg, 2, (char **)argv, err, sizeof(err));
    unlink(path);
    if (rc != 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    ibex_providers_init(&ps, &cfg);
    for (size_t i = 0; i < ps.n; i++) {
        if (!strcmp(ps.list[i].cfg->name, "claude"))
            claude = &ps.list[i];
        if (!strcmp(ps.list[i].cfg->name, "local"))
            keyless = &ps.list[i];
    }
    return claude && keyless ? 0 : -1;
}

static int teardown(void **state)
{
    ibex_providers_dispose(&ps);
    ibex_config_dispose(&cfg);
    return 0;
}

/* s with every ' turned into " (freed by the caller). */
static char *q(const char *s)
{
    char *out = strdup(s);
    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

static void parse_chat(const char *body, struct ibex_chat_request *chat)
{
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(chat, body, strlen(body), &e) != 0)
        fail_msg("chat body rejected: %s (%s)", e.message, body);
    ibex_chat_error_dispose(&e);
}

static bool has_header(const char *const *h, const char *line)
{
    for (; h && *h; h++)
        if (!strcmp(*h, line))
            return true;
    return false;
}

/* ---- the provider set ---- */

static void test_set_and_headers(void **state)
{
    assert_ptr_equal(claude->ops, &ibex_provider_anthropic);
    assert_ptr_equal(keyless->ops, &ibex_provider_anthropic);
    assert_string_equal(ibex_provider_anthropic.type, "anthropic");
    assert_null(ibex_provider_anthropic.answer);
    assert_string_equal(claude->chat_url, "https://api.anthropic.com/v1/messages");
    assert_string_equal(keyless->chat_url, "http://127.0.0.1:9/v1/messages");

    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_chat_request chat;
    parse_chat("{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
               &chat);
    const char *extra[] = {"X-Trace-Id: abc", NULL};
    struct ibex_upstream_request out;
    memset(&out, 0xAB, sizeof(out));
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    assert_int_equal(
        claude->ops->build_request(claude, &chat, "ignored", 7, extra, arena, &out, &e), 0);
    assert_string_equal(out.url, "https://api.anthropic.com/v1/messages");
    assert_true(has_header(out.headers, "x-api-key: sk-ant-unit"));
    assert_true(has_header(out.headers, "anthropic-version: 2023-06-01"));
    assert_true(has_header(out.headers, "Content-Type: application/json"));
    assert_true(has_header(out.headers, "Accept: application/json"));
    size_t n = 0;
    while (out.headers[n])
        n++;
    assert_int_equal(n, 5);
    assert_string_equal(out.headers[n - 1], "X-Trace-Id: abc"); /* the client's come last */
    for (size_t i = 0; i < n; i++)
        assert_true(strncasecmp(out.headers[i], "authorization:", 14) != 0);
    assert_false(out.streaming);
    assert_false(out.connect_only);
    assert_int_equal(out.timeouts.idle_ms, 7000);
    json_object *body = tu_parse_json(out.body, out.body_len);
    assert_non_null(body);
    assert_string_equal(tu_json_str(body, "model"), "claude-x");
    json_object_put(body);
    ibex_chat_request_dispose(&chat);

    parse_chat(
        "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        &chat);
    assert_int_equal(keyless->ops->build_request(keyless, &chat, "", 0, NULL, arena, &out, &e), 0);
    assert_true(out.streaming);
    assert_true(has_header(out.headers, "Accept: text/event-stream"));
    for (const char *const *h = out.headers; *h; h++)
        assert_true(strncasecmp(*h, "x-api-key:", 10) != 0);
    ibex_chat_request_dispose(&chat);
    ibex_chat_error_dispose(&e);
    ibex_arena_free(arena); /* frees the body too (ASan checks) */
}

/* ---- request translation ---- */

/* Translates request (single-quoted JSON) and compares the body with want, as JSON values. */
static void request_is(const char *request, const char *want)
{
    char *req = q(request), *w = q(want);
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_upstream_request out;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (claude->ops->build_request(claude, &chat, req, strlen(req), NULL, arena, &out, &e) != 0)
        fail_msg("rejected: %s\nrequest: %s", e.message, req);
    json_object *got = tu_parse_json(out.body, out.body_len);
    if (got == NULL)
        fail_msg("body is not JSON: %.*s", (int)out.body_len, out.body);
    json_object *expected = tu_parse_json(w, strlen(w));
    if (expected == NULL)
        fail_msg("test expectation is not JSON: %s", w);
    if (!json_object_equal(got, expected))
        fail_msg("request: %s\n got: %.*s\nwant: %s", req, (int)out.body_len, out.body, w);
    json_object_put(got);
    json_object_put(expected);
    ibex_chat_error_dispose(&e);
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    free(req);
    free(w);
}

/* Translates request and expects a 400 naming param. */
static void request_fails(const char *request, const char *param)
{
    char *req = q(request);
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_upstream_request out;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (claude->ops->build_request(claude, &chat, req, strlen(req), NULL, arena, &out, &e) == 0)
        fail_msg("accepted, want a 400 on %s: %s\nbody: %.*s", param, req, (int)out.body_len,
                 out.body);
    assert_string_equal(e.code, "VALIDATION_ERROR");
    if (strcmp(e.param, param) != 0)
        fail_msg("param is '%s', want '%s' (%s)", e.param, param, e.message);
    assert_true(strncmp(e.message, param, strlen(param)) == 0); /* the message names it */
    json_object *fe = tu_parse_json(e.field_errors.p, e.field_errors.len);
    assert_non_null(fe);
    assert_int_equal(json_object_array_length(fe), 1);
    assert_string_equal(tu_json_str(json_object_array_get_idx(fe, 0), "field"), param);
    json_object_put(fe);
    ibex_chat_error_dispose(&e);
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    free(req);
}

static void test_request_basic(void **state)
{
    /* system and developer joined in order as text blocks; max_tokens defaults to 4096 */
    request_is("{'model':'claude-x','messages':[{'role':'system','content':'Be brief.'},"
               "{'role':'developer','content':[{'type':'text','text':'Use French.'}]},"
               "{'role':'user','content':'hi'}],'temperature':0.5,'top_p':0.9,'top_k':40,"
               "'stop':'END','user':'u-1','stream':true,'stream_options':{'include_usage':true}}",
               "{'model':'claude-x','max_tokens':4096,'system':[{'type':'text','text':'Be "
               "brief.'},{'type':'text','text':'Use French.'}],'messages':[{'role':'user',"
               "'content':[{'type':'text','text':'hi'}]}],'temperature':0.5,'top_p':0.9,"
               "'top_k':40,'stop_sequences':['END'],'metadata':{'user_id':'u-1'},'stream':true}");
    /* one system piece: a string; an empty one: none */
    request_is("{'model':'m','messages':[{'role':'system','content':'S'},{'role':'system',"
               "'content':''},{'role':'user','content':'q'}]}",
               "{'model':'m','max_tokens':4096,'system':'S','messages':[{'role':'user',"
               "'content':[{'type':'text','text':'q'}]}]}");
    request_is("{'model':'m','messages':[{'role':'user','content':'q'}],'stop':['a','b'],"
               "'safety_identifier':'h-1','max_tokens':100}",
               "{'model':'m','max_tokens':100,'messages':[{'role':'user','content':[{'type':"
               "'text','text':'q'}]}],'stop_sequences':['a','b'],'metadata':{'user_id':'h-1'}}");
    /* max_completion_tokens wins over max_tokens; dropped fields and nulls leave no trace */
    request_is("{'model':'m','messages':[{'role':'user','content':'q'}],'max_tokens':100,"
               "'max_completion_tokens':50,'store':true,'metadata':{'k':'v'},'service_tier':"
               "'auto','prompt_cache_key':'c','seed':null,'n':1,'presence_penalty':0,"
               "'frequency_penalty':0.0,'logprobs':false,'top_logprobs':0,'logit_bias':{},"
               "'modalities':['text'],'stop':[],'response_format':{'type':'text'}}",
               "{'model':'m','max_tokens':50,'messages':[{'role':'user','content':[{'type':"
               "'text','text':'q'}]}]}");
}

static void test_request_parts(void **state)
{
    request_is("{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'see'},"
               "{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0K',"
               "'detail':'low'}},{'type':'image_url','image_url':{'url':"
               "'https://example.test/cat.jpg'}},{'type':'file','file':{'filename':'a.pdf',"
               "'file_data':'data:application/pdf;base64,JVBERi0x'}},{'type':'text','text':''}]}]}",
               "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':["
               "{'type':'text','text':'see'},"
               "{'type':'image','source':{'type':'base64','media_type':'image/png','data':"
               "'iVBORw0K'}},"
               "{'type':'image','source':{'type':'url','url':'https://example.test/cat.jpg'}},"
               "{'type':'document','source':{'type':'base64','media_type':'application/pdf',"
               "'data':'JVBERi0x'}}]}]}");
    request_fails("{'model':'m','messages':[{'role':'user','content':[{'type':'image_url',"
                  "'image_url':{'url':'ftp://x/y.png'}}]}]}",
                  "messages[0].content[0]");
    request_fails("{'model':'m','messages':[{'role':'user','content':[{'type':'image_url',"
                  "'image_url':{'url':'data:image/png,notbase64'}}]}]}",
                  "messages[0].content[0]");
    request_fails("{'model':'m','messages':[{'role':'user','content':[{'type':'input_audio',"
                  "'input_audio':{'data':'AAAA','format':'wav'}}]}]}",
                  "messages[0].content[0].type");
    request_fails("{'model':'m','messages':[{'role':'user','content':[{'type':'file','file':"
                  "{'file_id':'file-1'}}]}]}",
                  "messages[0].content[0]");
    request_fails("{'model':'m','messages':[{'role':'system','content':[{'type':'image_url',"
                  "'image_url':{'url':'https://x/y.png'}}]},{'role':'user','content':'q'}]}",
                  "messages[0].content[0]");
    request_fails("{'model':'m','messages':[{'role':'assistant','content':[{'type':'image_url',"
                  "'image_url':{'url':'https://x/y.png'}}]}]}",
                  "messages[0].content[0].type");
}

static void test_request_tools_conversation(void **state)
{
    /* consecutive same-role messages merge; tool results become one user message, and the
     * user text after them joins it */
    request_is(
        "{'model':'m','messages':[{'role':'user','content':'weather?'},"
        "{'role':'user','content':'and time?'},"
        "{'role':'assistant','content':null,'tool_calls':[{'id':'call_1','type':'function',"
        "'function':{'name':'get_weather','arguments':'{\\'city\\': \\'Paris\\'}'}},"
        "{'id':'call_2','type':'function','function':{'name':'now','arguments':''}}]},"
        "{'role':'tool','tool_call_id':'call_1','content':'sunny'},"
        "{'role':'tool','tool_call_id':'call_2','content':[{'type':'text','text':'noon'}]},"
        "{'role':'user','content':'thanks'},"
        "{'role':'assistant','content':'You are welcome.'}]}",
        "{'model':'m','max_tokens':4096,'messages':["
        "{'role':'user','content':[{'type':'text','text':'weather?'},{'type':'text','text':"
        "'and time?'}]},"
        "{'role':'assistant','content':[{'type':'tool_use','id':'call_1','name':'get_weather',"
        "'input':{'city':'Paris'}},{'type':'tool_use','id':'call_2','name':'now','input':{}}]},"
        "{'role':'user','content':[{'type':'tool_result','tool_use_id':'call_1','content':"
        "'sunny'},{'type':'tool_result','tool_use_id':'call_2','content':[{'type':'text',"
        "'text':'noon'}]},{'type':'text','text':'thanks'}]},"
        "{'role':'assistant','content':[{'type':'text','text':'You are welcome.'}]}]}");
    /* assistant text before its tool calls, an empty tool result */
    request_is("{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
               "'content':'Let me look.','tool_calls':[{'id':'c','function':{'name':'f',"
               "'arguments':'{}'}}]},{'role':'tool','tool_call_id':'c','content':''}]}",
               "{'model':'m','max_tokens':4096,'messages':[{'role':'user','content':[{'type':"
               "'text','text':'q'}]},{'role':'assistant','content':[{'type':'text','text':"
               "'Let me look.'},{'type':'tool_use','id':'c','name':'f','input':{}}]},{'role':"
               "'user','content':[{'type':'tool_result','tool_use_id':'c'}]}]}");
    request_fails("{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
                  "'tool_calls':[{'id':'c','type':'function','function':{'name':'f','arguments':"
                  "'{not json'}}]}]}",
                  "messages[1].tool_calls[0].function.arguments");
    request_fails("{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
                  "'tool_calls':[{'id':'c','type':'function','function':{'name':'f','arguments':"
                  "'[1,2]'}}]}]}",
                  "messages[1].tool_calls[0].function.arguments");
    request_fails("{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
                  "'tool_calls':[{'id':'c','type':'custom','custom':{'name':'f','input':'x'}}]}]}",
                  "messages[1].tool_calls[0]");
    request_fails("{'model':'m','messages':[{'role':'tool','content':'x'}]}",
                  "messages[0].tool_call_id");
    request_fails("{'model':'m','messages':[{'role':'function','name':'f','content':'x'}]}",
                  "messages[0].role");
    request_fails("{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
                  "'content':null,'function_call':{'name':'f','arguments':'{}'}}]}",
                  "messages[1].function_call");
    request_fails("{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
                  "'audio':{'id':'a1'}}]}",
                  "messages[1].audio");
    request_fails("{'model':'m','messages':[{'role':'system','content':'only a system'}]}",
                  "messages");
}

#define WEATHER_TOOL                                                                               \
    "{'type':'function','function':{'name':'get_weather','description':'Weather now',"             \
    "'parameters':{'type':'object','properties':{'city':{'type':'string'}}},'strict':true}}"
#define WEATHER_OUT                                                                                \
    "{'name':'get_weather','description':'Weather now','input_schema':{'type':'object',"           \
    "'properties':{'city':{'type':'string'}}},'strict':true}"
#define Q "'messages':[{'role':'user','content':'q'}]"
#define Q_OUT "'messages':[{'role':'user','content':[{'type':'text','text':'q'}]}]"

static void test_request_tool_choice(void **state)
{
    request_is("{'model':'m'," Q ",'tools':[" WEATHER_TOOL
               ",{'type':'function','function':{'name':'now'}}]}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'tools':[" WEATHER_OUT
               ",{'name':'now','input_schema':{'type':'object','properties':{}}}]}");
    request_is("{'model':'m'," Q ",'tools':[" WEATHER_TOOL "],'tool_choice':'none'}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'tools':[" WEATHER_OUT
               "],'tool_choice':{'type':'none'}}");
    request_is("{'model':'m'," Q ",'tools':[" WEATHER_TOOL "],'tool_choice':'auto'}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'tools':[" WEATHER_OUT
               "],'tool_choice':{'type':'auto'}}");
    request_is("{'model':'m'," Q ",'tools':[" WEATHER_TOOL "],'tool_choice':'required',"
               "'parallel_tool_calls':false}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'tools':[" WEATHER_OUT
               "],'tool_choice':{'type':'any','disable_parallel_tool_use':true}}");
    request_is("{'model':'m'," Q ",'tools':[" WEATHER_TOOL "],'tool_choice':{'type':'function',"
               "'function':{'name':'get_weather'}},'parallel_tool_calls':true}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'tools':[" WEATHER_OUT
               "],'tool_choice':{'type':'tool','name':'get_weather'}}");
    request_is("{'model':'m'," Q ",'tools':[" WEATHER_TOOL "],'parallel_tool_calls':false}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'tools':[" WEATHER_OUT
               "],'tool_choice':{'type':'auto','disable_parallel_tool_use':true}}");
    /* without tools, none/auto and parallel_tool_calls mean nothing */
    request_is("{'model':'m'," Q ",'tool_choice':'none','parallel_tool_calls':false}",
               "{'model':'m','max_tokens':4096," Q_OUT "}");
    request_fails("{'model':'m'," Q ",'tool_choice':'required'}", "tool_choice");
    request_fails("{'model':'m'," Q ",'tools':[" WEATHER_TOOL "],'tool_choice':{'type':"
                  "'allowed_tools','allowed_tools':{'mode':'auto','tools':[]}}}",
                  "tool_choice");
    request_fails("{'model':'m'," Q ",'tools':[{'type':'custom','custom':{'name':'x'}}]}",
                  "tools[0]");
}

static void test_request_response_format(void **state)
{
    request_is("{'model':'m'," Q ",'response_format':{'type':'json_schema','json_schema':{"
               "'name':'city','strict':true,'schema':{'type':'object','properties':{'name':{"
               "'type':'string'}},'required':['name'],'additionalProperties':false}}}}",
               "{'model':'m','max_tokens':4096," Q_OUT ",'output_config':{'format':{'type':"
               "'json_schema','schema':{'type':'object','properties':{'name':{'type':'string'}},"
               "'required':['name'],'additionalProperties':false}}}}");
    request_fails("{'model':'m'," Q ",'response_format':{'type':'json_object'}}",
                  "response_format");
    request_fails("{'model':'m'," Q ",'response_format':{'type':'json_schema','json_schema':{"
                  "'name':'x'}}}",
                  "response_format");
}

/* Every field with no Anthropic equivalent that changes the answer is a 400 naming it. */
static void test_request_rejects(void **state)
{
    static const char *const cases[][2] = {
        {"'n':2", "n"},
        {"'logprobs':true", "logprobs"},
        {"'top_logprobs':3", "top_logprobs"},
        {"'presence_penalty':0.5", "presence_penalty"},
        {"'frequency_penalty':-1", "frequency_penalty"},
        {"'logit_bias':{'50256':-100}", "logit_bias"},
        {"'seed':7", "seed"},
        {"'audio':{'voice':'alloy','format':'wav'}", "audio"},
        {"'modalities':['text','audio']", "modalities"},
        {"'prediction':{'type':'content','content':'x'}", "prediction"},
        {"'reasoning_effort':'high'", "reasoning_effort"},
        {"'verbosity':'low'", "verbosity"},
        {"'web_search_options':{}", "web_search_options"},
        {"'functions':[{'name':'f'}]", "functions"},
        {"'function_call':'auto'", "function_call"},
        {"'top_a':5", "top_a"}, /* unknown fields are never dropped silently */
        {"'':1", "\"\""},       /* even one named "" */
        {"'top_k':0", "top_k"},
        {"'top_k':2.5", "top_k"},
        {"'temperature':1.5", "temperature"},
        {"'max_tokens':0", "max_tokens"},
        {"'max_completion_tokens':10.5", "max_completion_tokens"},
        {"'stop':[1]", "stop"},
        {"'user':7", "user"},
        {"'parallel_tool_calls':'no'", "parallel_tool_calls"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{'model':'m'," Q ",%s}", cases[i][0]);
        request_fails(body, cases[i][1]);
    }
    /* the message says which provider cannot */
    char *req = q("{'model':'m'," Q ",'seed':1}");
    struct ibex_chat_request chat;
    parse_chat(req, &chat);
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_upstream_request out;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    assert_int_equal(
        claude->ops->build_request(claude, &chat, req, strlen(req), NULL, arena, &out, &e), -1);
    assert_non_null(strstr(e.message, "anthropic"));
    assert_string_equal(e.param, "seed");
    ibex_chat_error_dispose(&e);
    /* no error structure: still -1 */
    assert_int_equal(
        claude->ops->build_request(claude, &chat, req, strlen(req), NULL, arena, &out, NULL), -1);
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    free(req);
}

/* ---- answer translation ---- */

static void translate(const char *answer, const char *request, struct ibex_buf *out, int want_rc)
{
    char *a = q(answer);
    struct ibex_chat_request chat;
    parse_chat(request, &chat);
    ibex_buf_reset(out);
    int rc = claude->ops->translate_answer(claude, &chat, a, strlen(a), out);
    if (rc != want_rc)
        fail_msg("translate_answer returned %d, want %d: %s", rc, want_rc, a);
    ibex_chat_request_dispose(&chat);
    free(a);
}

#define PLAIN_REQ "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}"

static void test_answer_text_and_tools(void **state)
{
    struct ibex_buf out;
    ibex_buf_init(&out);
    translate("{'id':'msg_01','type':'message','role':'assistant','model':'claude-test-1',"
              "'content':[{'type':'text','text':'Hello, '},{'type':'thinking','thinking':'hm',"
              "'signature':'s'},{'type':'text','text':'w\\u00f6rld \\'q\\'\\n'},"
              "{'type':'tool_use','id':'toolu_1','name':'get_weather','input':{'city':'Paris',"
              "'days':[1,2]}},{'type':'tool_use','id':'toolu_2','name':'now','input':{}}],"
              "'stop_reason':'tool_use','stop_sequence':null,'usage':{'input_tokens':20,"
              "'cache_read_input_tokens':7,'cache_creation_input_tokens':3,'output_tokens':11}}",
              PLAIN_REQ, &out, 0);
    json_object *o = tu_parse_json(out.p, out.len);
    if (o == NULL)
        fail_msg("not JSON: %s", out.p);
    assert_string_equal(tu_json_str(o, "id"), "msg_01");
    assert_string_equal(tu_json_str(o, "object"), "chat.completion");
    assert_string_equal(tu_json_str(o, "model"), "claude-test-1");
    json_object *created = json_object_object_get(o, "created");
    assert_true(json_object_is_type(created, json_type_int) && json_object_get_int64(created) > 0);
    json_object *c0 = json_object_array_get_idx(json_object_object_get(o, "choices"), 0);
    assert_int_equal(json_object_get_int(json_object_object_get(c0, "index")), 0);
    assert_string_equal(tu_json_str(c0, "message.role"), "assistant");
    assert_string_equal(tu_json_str(c0, "message.content"), "Hello, w\xc3\xb6rld \"q\"\n");
    assert_string_equal(tu_json_str(c0, "finish_reason"), "tool_calls");
    json_object *calls =
        json_object_object_get(json_object_object_get(c0, "message"), "tool_calls");
    assert_int_equal(json_object_array_length(calls), 2);
    json_object *t0 = json_object_array_get_idx(calls, 0);
    assert_string_equal(tu_json_str(t0, "id"), "toolu_1");
    assert_string_equal(tu_json_str(t0, "type"), "function");
    assert_string_equal(tu_json_str(t0, "function.name"), "get_weather");
    json_object *args = tu_parse_json(tu_json_str(t0, "function.arguments"),
                                      strlen(tu_json_str(t0, "function.arguments")));
    assert_non_null(args);
    assert_string_equal(tu_json_str(args, "city"), "Paris");
    json_object_put(args);
    assert_string_equal(tu_json_str(json_object_array_get_idx(calls, 1), "function.arguments"),
                        "{}");
    json_object *usage = json_object_object_get(o, "usage");
    assert_int_equal(json_object_get_int(json_object_object_get(usage, "prompt_tokens")), 30);
    assert_int_equal(json_object_get_int(json_object_object_get(usage, "completion_tokens")), 11);
    assert_int_equal(json_object_get_int(json_object_object_get(usage, "total_tokens")), 41);
    json_object *details = json_object_object_get(usage, "prompt_tokens_details");
    assert_int_equal(json_object_get_int(json_object_object_get(details, "cached_tokens")), 7);
    json_object_put(o);

    /* the collector reads the translation like an OpenAI answer */
    struct ibex_answer a;
    ibex_answer_init(&a, 1 << 20);
    assert_int_equal(ibex_answer_from_json(&a, out.p, out.len), 0);
    assert_string_equal(a.content.p, "Hello, w\xc3\xb6rld \"q\"\n");
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_int_equal(a.prompt_tokens, 30);
    assert_int_equal(a.total_tokens, 41);
    assert_non_null(strstr(a.tool_calls.p, "\"name\":\"now\""));
    ibex_answer_dispose(&a);

    /* only tool calls: content is null; no usage reported: none invented */
    translate("{'id':'msg_02','type':'message','role':'assistant','model':'c','content':[{'type':"
              "'tool_use','id':'t','name':'f','input':{}}],'stop_reason':'tool_use'}",
              PLAIN_REQ, &out, 0);
    o = tu_parse_json(out.p, out.len);
    assert_non_null(o);
    c0 = json_object_array_get_idx(json_object_object_get(o, "choices"), 0);
    json_object *content = NULL;
    assert_true(
        json_object_object_get_ex(json_object_object_get(c0, "message"), "content", &content));
    assert_null(content);
    assert_false(json_object_object_get_ex(o, "usage", NULL));
    json_object_put(o);

    /* no model in the answer: the request's */
    translate("{'type':'message','content':[],'stop_reason':'end_turn','usage':{'input_tokens':1,"
              "'output_tokens':0}}",
              PLAIN_REQ, &out, 0);
    o = tu_parse_json(out.p, out.len);
    assert_non_null(o);
    assert_string_equal(tu_json_str(o, "model"), "claude-x");
    assert_false(json_object_object_get_ex(json_object_object_get(o, "usage"),
                                           "prompt_tokens_details", NULL));
    json_object_put(o);

    /* absurd counts are clamped (2^48), so no sum overflows */
    translate("{'type':'message','content':[],'usage':{'input_tokens':9223372036854775807,"
              "'cache_read_input_tokens':10,'output_tokens':9223372036854775807}}",
              PLAIN_REQ, &out, 0);
    o = tu_parse_json(out.p, out.len);
    assert_non_null(o);
    usage = json_object_object_get(o, "usage");
    assert_int_equal(json_object_get_int64(json_object_object_get(usage, "prompt_tokens")),
                     ((int64_t)1 << 48) + 10);
    assert_int_equal(json_object_get_int64(json_object_object_get(usage, "total_tokens")),
                     ((int64_t)1 << 49) + 10);
    json_object_put(o);
    ibex_buf_dispose(&out);
}

static void test_answer_finish_reasons(void **state)
{
    static const char *const map[][2] = {
        {"'end_turn'", "stop"},       {"'stop_sequence'", "stop"},
        {"'max_tokens'", "length"},   {"'model_context_window_exceeded'", "length"},
        {"'tool_use'", "tool_calls"}, {"'refusal'", "content_filter"},
        {"'pause_turn'", "stop"},     {"null", "stop"},
        {"'something_new'", "stop"},
    };
    struct ibex_buf out;
    ibex_buf_init(&out);
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{'id':'m','type':'message','content':[{'type':'text','text':'x'}],"
                 "'stop_reason':%s}",
                 map[i][0]);
        translate(body, PLAIN_REQ, &out, 0);
        json_object *o = tu_parse_json(out.p, out.len);
        assert_non_null(o);
        json_object *c0 = json_object_array_get_idx(json_object_object_get(o, "choices"), 0);
        if (strcmp(tu_json_str(c0, "finish_reason"), map[i][1]) != 0)
            fail_msg("stop_reason %s gave %s, want %s", map[i][0], tu_json_str(c0, "finish_reason"),
                     map[i][1]);
        json_object_put(o);
    }
    ibex_buf_dispose(&out);
}

static void test_answer_not_a_message(void **state)
{
    static const char *const bodies[] = {
        "",
        "{",
        "[]",
        "null",
        "{'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}",
        "{'type':'message'}",
        "{'type':'message','content':'text'}",
        "{'content':[]}",
        "{'id':'chatcmpl-1','object':'chat.completion','choices':[]}",
    };
    struct ibex_buf out;
    ibex_buf_init(&out);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        translate(bodies[i], PLAIN_REQ, &out, -1);
        assert_int_equal(out.len, 0);
    }
    ibex_buf_dispose(&out);
}

/* ---- stream translation ---- */

/* One recorded stream: text (with escapes and UTF-8), a ping, a thinking block, two tool
 * calls (one with its input split over deltas, one without input), usage with cache tokens. */
static const char *const recorded[] = {
    "event: message_start",
    "data: {'type':'message_start','message':{'id':'msg_01abc','type':'message','role':"
    "'assistant','content':[],'model':'claude-test-1','stop_reason':null,'stop_sequence':null,"
    "'usage':{'input_tokens':25,'cache_read_input_tokens':10,'cache_creation_input_tokens':5,"
    "'output_tokens':1}}}",
    "",
    "event: content_block_start",
    "data: {'type':'content_block_start','index':0,'content_block':{'type':'thinking',"
    "'thinking':''}}",
    "",
    "event: content_block_delta",
    "data: {'type':'content_block_delta','index':0,'delta':{'type':'thinking_delta','thinking':"
    "'let me see'}}",
    "",
    "event: content_block_stop",
    "data: {'type':'content_block_stop','index':0}",
    "",
    "event: content_block_start",
    "data: {'type':'content_block_start','index':1,'content_block':{'type':'text','text':''}}",
    "",
    "event: ping",
    "data: {'type': 'ping'}",
    "",
    "event: content_block_delta",
    "data: {'type':'content_block_delta','index':1,'delta':{'type':'text_delta','text':"
    "'Hello, \\'w\\u00f6rld\\'\\n'}}",
    "",
    "event: content_block_delta",
    "data: {'type':'content_block_delta','index':1,'delta':{'type':'text_delta','text':"
    "'\xe2\x82\xac checking.'}}",
    "",
    "event: content_block_stop",
    "data: {'type':'content_block_stop','index':1}",
    "",
    "event: content_block_start",
    "data: {'type':'content_block_start','index':2,'content_block':{'type':'tool_use','id':"
    "'toolu_01','name':'get_weather','input':{}}}",
    "",
    "event: content_block_delta",
    "data: {'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
    "'partial_json':''}}",
    "",
    "event: content_block_delta",
    "data: {'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
    "'partial_json':'{\\'city\\': \\'Par'}}",
    "",
    "event: content_block_delta",
    "data: {'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
    "'partial_json':'is\\'}'}}",
    "",
    "event: content_block_stop",
    "data: {'type':'content_block_stop','index':2}",
    "",
    "event: content_block_start",
    "data: {'type':'content_block_start','index':3,'content_block':{'type':'tool_use','id':"
    "'toolu_02','name':'now','input':{}}}",
    "",
    "event: content_block_stop",
    "data: {'type':'content_block_stop','index':3}",
    "",
    "event: message_delta",
    "data: {'type':'message_delta','delta':{'stop_reason':'tool_use','stop_sequence':null},"
    "'usage':{'output_tokens':42}}",
    "",
    "event: message_stop",
    "data: {'type':'message_stop'}",
    "",
};
#define NRECORDED (sizeof(recorded) / sizeof(recorded[0]))

/* The lines of a stream (single-quoted JSON) joined by eol. */
static void stream_text(struct ibex_buf *out, const char *const *lines, size_t n, const char *eol)
{
    for (size_t i = 0; i < n; i++) {
        char *l = q(lines[i]);
        ibex_buf_append_cstr(out, l);
        ibex_buf_append_cstr(out, eol);
        free(l);
    }
}

/* "created":<digits> -> "created":0, so runs a second apart compare equal. */
static void normalise(struct ibex_buf *b)
{
    static const char key[] = "\"created\":";
    size_t w = 0;
    for (size_t r = 0; r < b->len;) {
        if (b->len - r >= sizeof(key) - 1 && memcmp(b->p + r, key, sizeof(key) - 1) == 0) {
            memmove(b->p + w, key, sizeof(key) - 1);
            w += sizeof(key) - 1;
            r += sizeof(key) - 1;
            b->p[w++] = '0';
            while (r < b->len && b->p[r] >= '0' && b->p[r] <= '9')
                r++;
            continue;
        }
        b->p[w++] = b->p[r++];
    }
    b->len = w;
    b->p[w] = '\0';
}

struct run {
    int feed_rc, end_rc;
    const char *error;
    int64_t prompt, completion;
    uint64_t fast; /* events read in place */
};

/* Runs the decoder over text cut at the given points (sorted, ncuts of them); out gets the
 * normalised chunks. */
static struct run run_stream(const struct ibex_chat_request *chat, const char *text, size_t len,
                             const size_t *cuts, size_t ncuts, struct ibex_buf *out)
{
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_provider_stream *s = claude->ops->stream_open(claude, chat, arena);
    assert_non_null(s);
    assert_int_equal(s->prompt_tokens, -1);
    assert_null(s->error);
    struct run r = {0};
    ibex_buf_reset(out);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && r.feed_rc == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        r.feed_rc = claude->ops->stream_feed(s, text + at, to - at, out);
        at = to;
    }
    r.end_rc = r.feed_rc == 0 ? claude->ops->stream_end(s, out) : -1;
    r.error = s->error;
    r.prompt = s->prompt_tokens;
    r.completion = s->completion_tokens;
    r.fast = ibex_anthropic_stream_fast_events(s);
    ibex_arena_free(arena);
    normalise(out);
    return r;
}

/* The chunks as the gateway's collector sees them: nothing skipped. */
static void collect(const struct ibex_buf *chunks, struct ibex_answer *a)
{
    ibex_answer_init(a, 1 << 20);
    ibex_answer_feed_sse(a, chunks->p, chunks->len);
    assert_int_equal(a->skipped, 0);
    assert_int_equal(a->sse.skipped, 0);
    assert_int_equal(a->sse.line.len, 0); /* every event ends with its blank line */
}

static void check_recorded_answer(const struct ibex_buf *chunks, bool with_usage)
{
    struct ibex_answer a;
    collect(chunks, &a);
    assert_true(a.done);
    assert_string_equal(a.content.p, "Hello, \"w\xc3\xb6rld\"\n\xe2\x82\xac checking.");
    assert_string_equal(a.tool_calls.p,
                        "[{\"id\":\"toolu_01\",\"type\":\"function\",\"function\":{\"name\":"
                        "\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},"
                        "{\"id\":\"toolu_02\",\"type\":\"function\",\"function\":{\"name\":"
                        "\"now\",\"arguments\":\"{}\"}}]");
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_string_equal(a.model, "claude-test-1");
    assert_int_equal(a.prompt_tokens, with_usage ? 40 : -1);
    assert_int_equal(a.completion_tokens, with_usage ? 42 : -1);
    assert_int_equal(a.total_tokens, with_usage ? 82 : -1);
    ibex_answer_dispose(&a);
}

#define STREAM_REQ(extra)                                                                          \
    "{\"model\":\"claude-x\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}"  \
    "]" extra "}"

static void test_stream_recorded(void **state)
{
    struct ibex_chat_request chat;
    parse_chat(STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), &chat);
    struct ibex_buf text, whole, pieces;
    ibex_buf_init(&text);
    ibex_buf_init(&whole);
    ibex_buf_init(&pieces);
    stream_text(&text, recorded, NRECORDED, "\n");
    struct run r = run_stream(&chat, text.p, text.len, NULL, 0, &whole);
    assert_int_equal(r.feed_rc, 0);
    assert_int_equal(r.end_rc, 0);
    assert_null(r.error);
    assert_int_equal(r.prompt, 40); /* input + cache read + cache creation */
    assert_int_equal(r.completion, 42);
    check_recorded_answer(&whole, true);

    /* the chunks themselves */
    static const char head[] = "data: {\"id\":\"msg_01abc\",\"object\":\"chat.completion.chunk\","
                               "\"created\":0,\"model\":\"claude-test-1\",\"choices\":[";
    const char *first = "data: {\"id\":\"msg_01abc\",\"object\":\"chat.completion.chunk\","
                        "\"created\":0,\"model\":\"claude-test-1\",\"choices\":[{\"index\":0,"
                        "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                        "\"finish_reason\":null}]}\n\n";
    assert_true(strncmp(whole.p, first, strlen(first)) == 0);
    assert_non_null(strstr(whole.p, "\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_01\","
                                    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                                    "\"arguments\":\"\"}}]}"));
    assert_non_null(strstr(whole.p, "\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"toolu_02\""));
    assert_non_null(
        strstr(whole.p, "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n"));
    assert_null(strstr(whole.p, "let me see")); /* thinking was not asked for */
    static const char usage[] = "\"choices\":[],\"usage\":{\"prompt_tokens\":40,"
                                "\"completion_tokens\":42,\"total_tokens\":82,"
                                "\"prompt_tokens_details\":{\"cached_tokens\":10}}}\n\n";
    const char *u = strstr(whole.p, usage);
    assert_non_null(u);
    assert_string_equal(u + sizeof(usage) - 1, "data: [DONE]\n\n"); /* the last two events */
    /* every event is one data line with the same head */
    size_t events = 0;
    for (const char *p = whole.p; *p; events++) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        assert_null(memchr(p, '\n', (size_t)(end - p)));
        if (strncmp(p, "data: [DONE]", 12) != 0)
            assert_true(strncmp(p, head, sizeof(head) - 1) == 0);
        p = end + 2;
    }
    assert_int_equal(events, 11); /* role, 2 text, 2 tool starts, 3 args, finish, usage, done */

    /* every split position gives the same bytes */
    for (size_t i = 0; i <= text.len; i++) {
        r = run_stream(&chat, text.p, text.len, &i, 1, &pieces);
        assert_int_equal(r.end_rc, 0);
        if (pieces.len != whole.len || memcmp(pieces.p, whole.p, whole.len) != 0)
            fail_msg("split at %zu differs:\n%s", i, pieces.p);
    }
    /* three pieces at a sample of positions, a byte at a time */
    for (size_t i = 0; i < text.len; i += 37)
        for (size_t j = i; j <= text.len; j += 53) {
            size_t cuts[2] = {i, j};
            run_stream(&chat, text.p, text.len, cuts, 2, &pieces);
            assert_true(pieces.len == whole.len && memcmp(pieces.p, whole.p, whole.len) == 0);
        }
    size_t *every = malloc(text.len * sizeof(*every));
    for (size_t i = 0; i < text.len; i++)
        every[i] = i;
    run_stream(&chat, text.p, text.len, every, text.len, &pieces);
    assert_true(pieces.len == whole.len && memcmp(pieces.p, whole.p, whole.len) == 0);
    free(every);

    /* CRLF and CR line ends read the same */
    ibex_buf_reset(&text);
    stream_text(&text, recorded, NRECORDED, "\r\n");
    run_stream(&chat, text.p, text.len, NULL, 0, &pieces);
    assert_true(pieces.len == whole.len && memcmp(pieces.p, whole.p, whole.len) == 0);
    ibex_buf_reset(&text);
    stream_text(&text, recorded, NRECORDED, "\r");
    run_stream(&chat, text.p, text.len, NULL, 0, &pieces);
    assert_true(pieces.len == whole.len && memcmp(pieces.p, whole.p, whole.len) == 0);

    ibex_buf_dispose(&text);
    ibex_buf_dispose(&whole);
    ibex_buf_dispose(&pieces);
    ibex_chat_request_dispose(&chat);
}

static void test_stream_usage_optional(void **state)
{
    struct ibex_buf text, out;
    ibex_buf_init(&text);
    ibex_buf_init(&out);
    stream_text(&text, recorded, NRECORDED, "\n");
    static const char *const bodies[] = {
        STREAM_REQ(""), STREAM_REQ(",\"stream_options\":{\"include_usage\":false}")};
    for (size_t i = 0; i < 2; i++) {
        struct ibex_chat_request chat;
        parse_chat(bodies[i], &chat);
        struct run r = run_stream(&chat, text.p, text.len, NULL, 0, &out);
        assert_int_equal(r.end_rc, 0);
        /* no usage chunk, but the gateway still learns the usage */
        assert_null(strstr(out.p, "\"usage\""));
        assert_int_equal(r.prompt, 40);
        assert_int_equal(r.completion, 42);
        check_recorded_answer(&out, false);
        ibex_chat_request_dispose(&chat);
    }
    ibex_buf_dispose(&text);
    ibex_buf_dispose(&out);
}

static void test_stream_text_only(void **state)
{
    static const char *const lines[] = {
        "data: {'type':'message_start','message':{'id':'msg_t','type':'message','role':"
        "'assistant','content':[],'model':'c','usage':{'input_tokens':3,'output_tokens':1}}}",
        "",
        "data: {'type':'content_block_start','index':0,'content_block':{'type':'text','text':"
        "'Hi'}}",
        "",
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "' there'}}",
        "",
        "data: {'type':'content_block_stop','index':0}",
        "",
        "data: {'type':'message_delta','delta':{'stop_reason':'max_tokens'},'usage':{"
        "'input_tokens':4,'output_tokens':2}}",
        "",
        "data: {'type':'message_delta','delta':{'stop_reason':'end_turn'},'usage':{"
        "'output_tokens':3}}",
        "",
        "data: {'type':'some_future_event','x':1}",
        "",
        "data: {'type':'message_stop'}", /* no line end: stream_end completes the line */
    };
    struct ibex_chat_request chat;
    parse_chat(STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), &chat);
    struct ibex_buf text, out;
    ibex_buf_init(&text);
    ibex_buf_init(&out);
    stream_text(&text, lines, sizeof(lines) / sizeof(lines[0]), "\n");
    text.len--; /* the last line's LF */
    struct run r = run_stream(&chat, text.p, text.len, NULL, 0, &out);
    assert_int_equal(r.end_rc, 0);
    assert_int_equal(r.prompt, 4); /* message_delta usage updates message_start's */
    assert_int_equal(r.completion, 3);
    struct ibex_answer a;
    collect(&out, &a);
    assert_string_equal(a.content.p, "Hi there");
    assert_int_equal(a.tool_calls.len, 0);
    assert_string_equal(a.finish_reason, "length"); /* the first stop reason is the one sent */
    assert_int_equal(a.prompt_tokens, 4);
    assert_int_equal(a.total_tokens, 7);
    assert_true(a.done);
    ibex_answer_dispose(&a);
    /* only one finish chunk */
    const char *f = strstr(out.p, "\"finish_reason\":\"");
    assert_non_null(f);
    assert_null(strstr(f + 1, "\"finish_reason\":\""));

    ibex_buf_dispose(&text);
    ibex_buf_dispose(&out);
    ibex_chat_request_dispose(&chat);
}

/* Builds a stream of lines and runs it whole; returns the run. */
static struct run run_lines(const char *const *lines, size_t n, struct ibex_buf *out)
{
    struct ibex_chat_request chat;
    parse_chat(STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), &chat);
    struct ibex_buf text;
    ibex_buf_init(&text);
    stream_text(&text, lines, n, "\n");
    struct run r = run_stream(&chat, text.p, text.len, NULL, 0, out);
    ibex_buf_dispose(&text);
    ibex_chat_request_dispose(&chat);
    return r;
}

#define START                                                                                      \
    "data: {'type':'message_start','message':{'id':'msg_e','type':'message','role':'assistant',"   \
    "'content':[],'model':'c','usage':{'input_tokens':3,'output_tokens':1}}}",                     \
        ""

static void test_stream_errors(void **state)
{
    struct ibex_buf out;
    ibex_buf_init(&out);
    /* an error event mid-stream: -1, a static message without the provider's text */
    static const char *const err[] = {
        START,
        "data: {'type':'content_block_start','index':0,'content_block':{'type':'text',"
        "'text':''}}",
        "",
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "'par'}}",
        "",
        "event: error",
        "data: {'type':'error','error':{'type':'api_error','message':'SECRET internal'}}",
        "",
        "data: {'type':'message_stop'}",
        "",
    };
    struct run r = run_lines(err, sizeof(err) / sizeof(err[0]), &out);
    assert_int_equal(r.feed_rc, -1);
    assert_non_null(r.error);
    assert_null(strstr(r.error, "SECRET"));
    assert_null(strstr(out.p, "[DONE]"));
    struct ibex_answer a;
    collect(&out, &a); /* what went out before the error is still well-formed */
    assert_string_equal(a.content.p, "par");
    assert_false(a.done);
    ibex_answer_dispose(&a);

    static const char *const overloaded[] = {
        "event: error",
        "data: {'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}",
        "",
    };
    r = run_lines(overloaded, 3, &out);
    assert_int_equal(r.feed_rc, -1);
    assert_non_null(strstr(r.error, "overloaded"));
    assert_int_equal(out.len, 0);

    /* ends without message_stop: stream_end reports it */
    static const char *const truncated[] = {
        START,
        "data: {'type':'content_block_start','index':0,'content_block':{'type':'text',"
        "'text':''}}",
        "",
        "data: {'type':'message_delta','delta':{'stop_reason':'end_turn'},'usage':{"
        "'output_tokens':3}}",
        "",
    };
    r = run_lines(truncated, sizeof(truncated) / sizeof(truncated[0]), &out);
    assert_int_equal(r.feed_rc, 0);
    assert_int_equal(r.end_rc, -1);
    assert_non_null(r.error);
    assert_null(strstr(out.p, "[DONE]"));
    assert_null(strstr(out.p, "\"usage\""));

    /* malformed: not JSON, no type, events before message_start, deltas of unknown blocks */
    static const char *const bad[][3] = {
        {START, "data: {not json"},
        {START, "data: {'index':0}"},
        {"data: {'type':'content_block_start','index':0,'content_block':{'type':'text'}}", "", ""},
        {"data: {'type':'message_stop'}", "", ""},
        {START, "data: {'type':'content_block_delta','index':5,'delta':{'type':'text_delta',"
                "'text':'x'}}"},
        {START, "data: {'type':'content_block_stop','index':0}"},
        {START, "data: {'type':'content_block_start','content_block':{'type':'text'}}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = run_lines(bad[i], 3, &out);
        if (r.feed_rc != -1 || r.error == NULL)
            fail_msg("malformed stream %zu accepted", i);
        struct ibex_answer b;
        collect(&out, &b);
        ibex_answer_dispose(&b);
    }

    /* every prefix of the recorded stream: a clean end only when message_stop is in it */
    struct ibex_chat_request chat;
    parse_chat(STREAM_REQ(""), &chat);
    struct ibex_buf text;
    ibex_buf_init(&text);
    stream_text(&text, recorded, NRECORDED, "\n");
    const char *stop = strstr(text.p, "data: {\"type\":\"message_stop\"}");
    size_t complete = (size_t)(stop - text.p) + strlen("data: {\"type\":\"message_stop\"}");
    for (size_t n = 0; n <= text.len; n++) {
        r = run_stream(&chat, text.p, n, NULL, 0, &out);
        assert_int_equal(r.feed_rc, 0);
        assert_int_equal(r.end_rc, n >= complete ? 0 : -1);
        assert_true(r.end_rc == 0 || r.error != NULL);
        struct ibex_answer b;
        collect(&out, &b);
        assert_int_equal(b.done, n >= complete);
        ibex_answer_dispose(&b);
    }
    ibex_buf_dispose(&text);
    ibex_chat_request_dispose(&chat);

    /* a line over the splitter's bound is an error, not a silent loss */
    struct ibex_arena *arena = ibex_arena_new(1024);
    parse_chat(STREAM_REQ(""), &chat);
    struct ibex_provider_stream *s = claude->ops->stream_open(claude, &chat, arena);
    size_t big = IBEX_SSE_LINE_MAX + 10;
    char *line = malloc(big);
    memset(line, 'x', big);
    memcpy(line, "data: ", 6);
    ibex_buf_reset(&out);
    assert_int_equal(claude->ops->stream_feed(s, line, big, &out), -1);
    assert_non_null(s->error);
    assert_int_equal(claude->ops->stream_feed(s, "\n", 1, &out), -1); /* stays failed */
    assert_int_equal(claude->ops->stream_end(s, &out), -1);
    free(line);
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    ibex_buf_dispose(&out);
}

/* Compact deltas are read without json-c, other forms go through json-c; both write the same
 * bytes. What either path cannot accept breaks the stream. */
static void test_stream_fast_and_general(void **state)
{
    /* the same deltas, compact (fast path) and spaced (general path) */
    static const char *const deltas[] = {
        "'a \\'quoted\\' \\\\ back\\/slash\\n\\ttab \xc3\xa9\xe2\x82\xac'",
        "'\\b\\f\\r'",
        "'\\u00e9 and \\ud83d\\ude00'", /* \u escapes: the general path */
        "''",
    };
    struct ibex_buf fast, general;
    ibex_buf_init(&fast);
    ibex_buf_init(&general);
    uint64_t in_place[2];
    for (int spaced = 0; spaced < 2; spaced++) {
        const char *lines[64];
        char *owned[16];
        size_t n = 0, nowned = 0;
        lines[n++] = "data: {'type':'message_start','message':{'id':'m','model':'c','usage':{"
                     "'input_tokens':1,'output_tokens':1}}}";
        lines[n++] = "data: {'type':'content_block_start','index':0,'content_block':{'type':"
                     "'text','text':''}}";
        lines[n++] = "data: {'type':'content_block_start','index':1,'content_block':{'type':"
                     "'tool_use','id':'t','name':'f','input':{}}}";
        for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
            char *l = malloc(512);
            snprintf(l, 512,
                     spaced ? "data: {'type': 'content_block_delta', 'index': 0, 'delta': {'type': "
                              "'text_delta', 'text': %s}}"
                            : "data: {'type':'content_block_delta','index':0,'delta':{'type':"
                              "'text_delta','text':%s}}",
                     deltas[i]);
            lines[n++] = owned[nowned++] = l;
            l = malloc(512);
            snprintf(l, 512,
                     spaced ? "data: {'type': 'content_block_delta', 'index': 1, 'delta': {'type': "
                              "'input_json_delta', 'partial_json': %s}}"
                            : "data: {'type':'content_block_delta','index':1,'delta':{'type':"
                              "'input_json_delta','partial_json':%s}}",
                     deltas[i]);
            lines[n++] = owned[nowned++] = l;
        }
        /* a delta of the other kind for a block is ignored on both paths */
        lines[n++] = spaced ? "data: {'type': 'content_block_delta', 'index': 0, 'delta': "
                              "{'type': 'input_json_delta', 'partial_json': 'x'}}"
                            : "data: {'type':'content_block_delta','index':0,'delta':{'type':"
                              "'input_json_delta','partial_json':'x'}}";
        lines[n++] = "data: {'type':'message_stop'}";
        struct run r = run_lines(lines, n, spaced ? &general : &fast);
        assert_int_equal(r.end_rc, 0);
        in_place[spaced] = r.fast;
        for (size_t i = 0; i < nowned; i++)
            free(owned[i]);
    }
    /* compact: message_start, the text block's start, 6 of the 8 deltas (not the \u ones),
     * message_stop; spaced: the same but no delta */
    assert_int_equal(in_place[0], 9);
    assert_int_equal(in_place[1], 3);
    assert_int_equal(fast.len, general.len);
    assert_memory_equal(fast.p, general.p, fast.len);
    struct ibex_answer a, b;
    collect(&fast, &a);
    collect(&general, &b);
    const char *want = "a \"quoted\" \\ back/slash\n\ttab \xc3\xa9\xe2\x82\xac\b\f\r\xc3\xa9 and "
                       "\xf0\x9f\x98\x80";
    assert_string_equal(a.content.p, want);
    assert_string_equal(b.content.p, want);
    assert_string_equal(a.tool_calls.p, b.tool_calls.p);
    ibex_answer_dispose(&a);
    ibex_answer_dispose(&b);

    /* deltas neither path accepts: a bad escape, a raw control byte, invalid UTF-8, an
     * unescaped quote */
    static const char *const bad[] = {
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "'a\\x'}}",
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "'a\x01'}}",
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "'a\xc3'}}",
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "'a'b'}}",
        "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':"
        "'a\\'}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *lines[] = {
            "data: {'type':'message_start','message':{'id':'m','model':'c'}}",
            "data: {'type':'content_block_start','index':0,'content_block':{'type':'text'}}",
            bad[i],
            "data: {'type':'message_stop'}",
        };
        struct run r = run_lines(lines, 4, &fast);
        if (r.feed_rc != -1)
            fail_msg("bad delta %zu accepted", i);
        assert_null(strstr(fast.p, "\"content\":\"a"));
    }
    ibex_buf_dispose(&fast);
    ibex_buf_dispose(&general);
}

/* The decoder and its json-c-only twin (anthropic.h) over the same stream: the same bytes, the
 * same result. Returns how many events the decoder read in place. */
static uint64_t twin_run(const char *const *lines, size_t n)
{
    struct ibex_chat_request chat;
    parse_chat(STREAM_REQ(",\"stream_options\":{\"include_usage\":true}"), &chat);
    struct ibex_buf text, out[2];
    ibex_buf_init(&text);
    stream_text(&text, lines, n, "\n");
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_provider_stream *s[2];
    s[0] = claude->ops->stream_open(claude, &chat, arena);
    s[1] = ibex_anthropic_stream_open_reference(claude, &chat, arena, s[0]);
    int rc[2];
    for (int i = 0; i < 2; i++) {
        ibex_buf_init(&out[i]);
        rc[i] = claude->ops->stream_feed(s[i], text.p, text.len, &out[i]);
        if (rc[i] == 0)
            rc[i] = claude->ops->stream_end(s[i], &out[i]);
    }
    if (out[0].len != out[1].len || (out[0].len && memcmp(out[0].p, out[1].p, out[0].len) != 0))
        fail_msg("in place and json-c differ for\n%s\n--- in place:\n%.*s\n--- json-c:\n%.*s",
                 text.p, (int)out[0].len, out[0].p, (int)out[1].len, out[1].p);
    assert_int_equal(rc[0], rc[1]);
    assert_true(s[0]->error == s[1]->error ||
                (s[0]->error && s[1]->error && strcmp(s[0]->error, s[1]->error) == 0));
    assert_int_equal(s[0]->prompt_tokens, s[1]->prompt_tokens);
    assert_int_equal(s[0]->completion_tokens, s[1]->completion_tokens);
    assert_int_equal(ibex_anthropic_stream_fast_events(s[1]), 0);
    uint64_t fast = ibex_anthropic_stream_fast_events(s[0]);
    ibex_arena_free(arena);
    for (int i = 0; i < 2; i++)
        ibex_buf_dispose(&out[i]);
    ibex_buf_dispose(&text);
    ibex_chat_request_dispose(&chat);
    return fast;
}

#define T_START                                                                                    \
    "data: {'type':'message_start','message':{'id':'msg_1','type':'message','role':'assistant',"   \
    "'model':'claude-x','content':[],'stop_reason':null,'stop_sequence':null,'usage':{"            \
    "'input_tokens':12,'cache_read_input_tokens':3,'output_tokens':1}}}"
#define T_TEXT                                                                                     \
    "data: {'type':'content_block_start','index':0,'content_block':{'type':'text','text':''}}"
#define T_DELTA                                                                                    \
    "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta','text':'hi'}}"
#define T_STOP0 "data: {'type':'content_block_stop','index':0}"
#define T_MDELTA                                                                                   \
    "data: {'type':'message_delta','delta':{'stop_reason':'end_turn','stop_sequence':null},"       \
    "'usage':{'output_tokens':15}}"
#define T_END "data: {'type':'message_stop'}"

/* The framing events and the compact deltas are read in place, and what that writes is what
 * json-c's path writes, for the common shapes and for every odd one it must decline or get
 * right (keys in another order, spaces, escapes, nulls, repeats, big counts, blocks not open). */
static void test_stream_in_place_matches_json_c(void **state)
{
    /* the shape Anthropic (and fakellm) writes: every event in place */
    const char *common[] = {"event: message_start",
                            T_START,
                            "",
                            "data: {'type': 'ping'}",
                            "",
                            T_TEXT,
                            "",
                            T_DELTA,
                            "",
                            T_DELTA,
                            "",
                            T_STOP0,
                            "",
                            T_MDELTA,
                            "",
                            T_END,
                            ""};
    assert_int_equal(twin_run(common, sizeof(common) / sizeof(common[0])), 8);

    /* one event replaced in the common stream, at position at; fast: whether it is read in
     * place */
    static const struct {
        size_t at;
        const char *line;
        bool fast;
    } odd[] = {
        {1,
         "data: { 'type' : 'message_start', 'message' : "
         "{'usage':{'output_tokens':1,'input_tokens':2},'model':'m2','id':'i2'} }",
         true},
        /* the type after the member it types: json-c's */
        {1,
         "data: { 'message' : "
         "{'usage':{'output_tokens':1,'input_tokens':2},'model':'m2','id':'i2'} , 'type' : "
         "'message_start' }",
         false},
        {1, "data: {'type':'message_start','message':{'id':'m\\u0041','model':'c'}}", false},
        {1, "data: {'type':'message_start','message':{'id':7,'model':'c'}}", false},
        {1, "data: {'type':'message_start','message':{'model':'c'}}", true},
        {1, "data: {'type':'message_start'}", false},
        {1, "data: {'type':'message_start','message':null}", false},
        {1, "data: {'type':'message_start','message':{'usage':null}}", false},
        {1,
         "data: {'type':'message_start','message':{'usage':{'input_tokens':999999999999999999}}}",
         true},
        {1,
         "data: {'type':'message_start','message':{'usage':{'input_tokens':9999999999999999999}}}",
         false},
        {1, "data: {'type':'message_start','message':{'usage':{'input_tokens':-1}}}", false},
        {1, "data: {'type':'message_start','message':{'usage':{'input_tokens':1.5}}}", false},
        {1,
         "data: {'type':'message_start','message':{'usage':{'input_tokens':1,'input_tokens':2}}}",
         false},
        {1, "data: {'type':'message_start','type':'message_start','message':{}}", false},
        {1,
         "data: {'type':'message_start','message':{'id':'"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "'}}",
         true},
        {1, "data: {'type':'message_start','message':{'x':[[[[[[[[[[1]]]]]]]]]]}}", false},
        {1, "data: {'type':'message_start','message':{}} x", false},
        {3, "data: {'type':'ping','extra':{'a':[1,2]}}", true},
        {3, "data: {'type':'message_start','message':{'id':'again'}}", true},
        {3, "data: {'type':'what_is_this'}", false},
        {5,
         "data: {'index':0,'type':'content_block_start','content_block':{'text':'','type':'text'}}",
         true},
        {5,
         "data: {'index':0,'content_block':{'text':'','type':'text'},'type':'content_block_start'}",
         false},
        {5, "data: {'type':'content_block_start','index':0,'content_block':{'type':'text'}}", true},
        {5,
         "data: "
         "{'type':'content_block_start','index':0,'content_block':{'type':'text','text':'pre'}}",
         false},
        {5,
         "data: "
         "{'type':'content_block_start','index':0,'content_block':{'type':'thinking','thinking':''}"
         "}",
         false},
        {5,
         "data: "
         "{'type':'content_block_start','index':0,'content_block':{'type':'te\\u0078t','text':''}}",
         false},
        {5, "data: {'type':'content_block_start','index':-1,'content_block':{'type':'text'}}",
         false},
        {5, "data: {'type':'content_block_start','index':'0','content_block':{'type':'text'}}",
         false},
        {5, "data: {'type':'content_block_start','index':0}", false},
        {7, "data: {'type':'content_block_start','index':0,'content_block':{'type':'text'}}",
         false},
        {11, "data: {'type':'content_block_stop','index':1}", false},
        {11, "data: {'type':'content_block_stop'}", false},
        {11, "data: {'index' : 0 , 'type':'content_block_stop'}", true},
        {13, "data: {'type':'message_delta','delta':{'stop_reason':null}}", true},
        {13,
         "data: {'type':'message_delta','delta':{'stop_reason':''},'usage':{'output_tokens':2}}",
         true},
        {13, "data: {'type':'message_delta','delta':{'stop_reason':'max_tokens'}}", true},
        {13, "data: {'type':'message_delta','delta':{'stop_reason':'tool_use'}}", true},
        {13, "data: {'type':'message_delta','delta':{'stop_reason':'end\\u005fturn'}}", false},
        {13, "data: {'type':'message_delta','delta':{'stop_reason':nul}}", false},
        {13, "data: {'type':'message_delta','delta':{'stop_reason':7}}", false},
        {13,
         "data: "
         "{'type':'message_delta','usage':{'output_tokens':3,'cache_creation_input_tokens':4}}",
         true},
        {13, "data: {'type':'message_delta','usage':{'output_tokens':null}}", false},
        {13, "data: {'type':'message_delta','delta':'x'}", false},
        {13,
         "data: {'type':'message_delta','delta':{'stop_reason':'"
         "a_stop_reason_longer_than_the_buffer_holds"
         "'}}",
         false},
        {15,
         "data: {'type':'message_stop','amazon-bedrock-invocationMetrics':{'inputTokenCount':1}}",
         true},
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        const char *lines[sizeof(common) / sizeof(common[0])];
        memcpy(lines, common, sizeof(common));
        lines[odd[i].at] = odd[i].line;
        uint64_t fast = twin_run(lines, sizeof(common) / sizeof(common[0]));
        if ((fast == 8) != odd[i].fast)
            fail_msg("case %zu (%s): %llu events in place", i, odd[i].line,
                     (unsigned long long)fast);
    }

    /* a tool_use block: its start goes through json-c, its stop in place ("{}" when no input) */
    const char *tool[] = {T_START,
                          "data: "
                          "{'type':'content_block_start','index':0,'content_block':{'type':'tool_"
                          "use','id':'toolu_1','name':'f','input':{}}}",
                          "data: {'type':'content_block_stop','index':0}", T_MDELTA, T_END};
    assert_int_equal(twin_run(tool, 5), 4);
    /* framing events before message_start: json-c says what they are */
    const char *early[] = {"data: {'type':'ping'}", T_TEXT, T_START, T_END};
    assert_int_equal(twin_run(early, 4), 1);
    const char *early_stop[] = {T_STOP0, T_START, T_END};
    assert_int_equal(twin_run(early_stop, 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_and_headers),
        cmocka_unit_test(test_request_basic),
        cmocka_unit_test(test_request_parts),
        cmocka_unit_test(test_request_tools_conversation),
        cmocka_unit_test(test_request_tool_choice),
        cmocka_unit_test(test_request_response_format),
        cmocka_unit_test(test_request_rejects),
        cmocka_unit_test(test_answer_text_and_tools),
        cmocka_unit_test(test_answer_finish_reasons),
        cmocka_unit_test(test_answer_not_a_message),
        cmocka_unit_test(test_stream_recorded),
        cmocka_unit_test(test_stream_usage_optional),
        cmocka_unit_test(test_stream_text_only),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_stream_fast_and_general),
        cmocka_unit_test(test_stream_in_place_matches_json_c),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
