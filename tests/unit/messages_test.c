/* src/gateway/messages.c: the Messages request as an OpenAI chat request (each mapping, each
 * 400, INVALID_JSON; what comes out is a body chat_request accepts), the chat.completion as a
 * Messages answer (text, tool calls with their input, stop reasons, usage, ids), the error body
 * and its types, and the stream translation: recorded OpenAI streams fed whole, split at every
 * position and a byte at a time give the same Anthropic events, each "event: T" with data of
 * type T; tool calls, usage, missing [DONE], truncated and malformed streams, error chunks,
 * interleaved calls, over-long lines and failures after the stream opened.
 *
 * JSON in this file is written with single quotes for readability: q() turns them into double
 * quotes (no test text contains an apostrophe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/core/arena.h"
#include "../../src/gateway/messages.h"
#include "testutil.h"

/* s with every ' turned into " (freed by the caller). */
static char *q(const char *s)
{
    char *out = strdup(s);
    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

static void json_equal(const char *got, size_t len, const char *want_q, const char *what)
{
    char *want = q(want_q);
    json_object *g = tu_parse_json(got, len), *w = tu_parse_json(want, strlen(want));
    if (g == NULL)
        fail_msg("%s: not JSON: %.*s", what, (int)len, got);
    if (w == NULL)
        fail_msg("%s: test expectation is not JSON: %s", what, want);
    if (!json_object_equal(g, w))
        fail_msg("%s\n got: %.*s\nwant: %s", what, (int)len, got, want);
    json_object_put(g);
    json_object_put(w);
    free(want);
}

/* ---- request ---- */

/* Translates request (single-quoted) and compares the OpenAI body with want, as JSON values;
 * the body must be one chat_request accepts. */
static void request_is(const char *request, const char *want)
{
    char *req = q(request);
    struct ibex_buf out;
    ibex_buf_init(&out);
    ibex_buf_append_cstr(&out, "");
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_messages_request(req, strlen(req), &out, &e) != 0)
        fail_msg("rejected: %s\nrequest: %s", e.message, req);
    json_equal(out.p, out.len, want, req);
    struct ibex_chat_request chat;
    struct ibex_chat_error ce;
    ibex_chat_error_init(&ce);
    if (ibex_chat_request_parse(&chat, out.p, out.len, &ce) != 0)
        fail_msg("chat_request refuses the translation: %s\n%s", ce.message, out.p);
    ibex_chat_request_dispose(&chat);
    ibex_chat_error_dispose(&ce);
    ibex_chat_error_dispose(&e);
    ibex_buf_dispose(&out);
    free(req);
}

/* Translates request and expects a 400 naming param; out keeps what it held. */
static void request_fails(const char *request, const char *param, const char *code)
{
    char *req = q(request);
    struct ibex_buf out;
    ibex_buf_init(&out);
    ibex_buf_append_cstr(&out, "kept");
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_messages_request(req, strlen(req), &out, &e) == 0)
        fail_msg("accepted, want a 400 on %s: %s\nbody: %s", param, req, out.p);
    assert_string_equal(out.p, "kept");
    assert_int_equal(out.len, 4);
    if (strcmp(e.code, code) != 0)
        fail_msg("code %s, want %s (%s): %s", e.code, code, e.message, req);
    if (param) {
        if (strcmp(e.param, param) != 0)
            fail_msg("param is '%s', want '%s' (%s)\nrequest: %s", e.param, param, e.message, req);
        assert_true(strncmp(e.message, param, strlen(param)) == 0); /* the message names it */
        json_object *fe = tu_parse_json(e.field_errors.p, e.field_errors.len);
        assert_non_null(fe);
        assert_int_equal(json_object_array_length(fe), 1);
        json_object_put(fe);
    }
    ibex_chat_error_dispose(&e);
    ibex_buf_dispose(&out);
    free(req);
}

#define BASE "'model':'m','max_tokens':5,"
#define USER "'messages':[{'role':'user','content':'q'}]"

static void test_request_basic(void **state)
{
    request_is("{'model':'claude-x','max_tokens':100,'system':'Be brief.','messages':[{'role':"
               "'user','content':'hi'}],'temperature':0.5,'top_p':0.9,'top_k':40,"
               "'stop_sequences':['END','STOP'],'metadata':{'user_id':'u-1'},'stream':true}",
               "{'model':'claude-x','messages':[{'role':'system','content':'Be brief.'},{'role':"
               "'user','content':'hi'}],'max_completion_tokens':100,'stream':true,"
               "'stream_options':{'include_usage':true},'temperature':0.5,'top_p':0.9,"
               "'top_k':40,'stop':['END','STOP'],'user':'u-1'}");
    /* the least: no system, no stream; dropped fields, nulls and empty lists leave no trace */
    request_is("{" BASE USER ",'stream':false,'service_tier':'auto','cache_control':{'type':"
               "'ephemeral'},'system':'','stop_sequences':[],'metadata':{'user_id':null},"
               "'temperature':null,'thinking':{'type':'disabled'},'output_config':{}}",
               "{'model':'m','messages':[{'role':'user','content':'q'}],"
               "'max_completion_tokens':5}");
    /* numbers keep their text */
    request_is("{" BASE USER ",'temperature':1,'top_p':0.25e0}",
               "{'model':'m','messages':[{'role':'user','content':'q'}],"
               "'max_completion_tokens':5,'temperature':1,'top_p':0.25e0}");
}

static void test_request_system(void **state)
{
    /* one text block: a string; several: text parts; cache_control on a block is a hint */
    request_is("{" BASE "'system':[{'type':'text','text':'A','cache_control':{'type':"
               "'ephemeral'}}]," USER "}",
               "{'model':'m','messages':[{'role':'system','content':'A'},{'role':'user',"
               "'content':'q'}],'max_completion_tokens':5}");
    request_is("{" BASE "'system':[{'type':'text','text':'A'},{'type':'text','text':'B'}]," USER
               "}",
               "{'model':'m','messages':[{'role':'system','content':[{'type':'text','text':'A'},"
               "{'type':'text','text':'B'}]},{'role':'user','content':'q'}],"
               "'max_completion_tokens':5}");
    request_is("{" BASE "'system':[]," USER "}",
               "{'model':'m','messages':[{'role':'user','content':'q'}],"
               "'max_completion_tokens':5}");
}

static void test_request_blocks(void **state)
{
    /* user blocks: one text block is a string; images and documents become parts */
    request_is("{" BASE "'messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}]}",
               "{'model':'m','messages':[{'role':'user','content':'hi'}],"
               "'max_completion_tokens':5}");
    request_is(
        "{" BASE "'messages':[{'role':'user','content':[{'type':'text','text':'see'},{'type':"
        "'image','source':{'type':'base64','media_type':'image/png','data':'iVBO'}},{'type':"
        "'image','source':{'type':'url','url':'https://x.test/a.jpg'}},{'type':'document',"
        "'title':'spec.pdf','source':{'type':'base64','media_type':'application/pdf','data':"
        "'JVBE'}},{'type':'document','source':{'type':'base64','media_type':'application/pdf',"
        "'data':'JVBF'}},{'type':'document','source':{'type':'text','media_type':'text/plain',"
        "'data':'plain'}}]}]}",
        "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'see'},{'type':"
        "'image_url','image_url':{'url':'data:image/png;base64,iVBO'}},{'type':'image_url',"
        "'image_url':{'url':'https://x.test/a.jpg'}},{'type':'file','file':{'filename':"
        "'spec.pdf','file_data':'data:application/pdf;base64,JVBE'}},{'type':'file','file':{"
        "'filename':'document.pdf','file_data':'data:application/pdf;base64,JVBF'}},{'type':"
        "'text','text':'plain'}]}],'max_completion_tokens':5}");
    /* a tool round trip: tool_use blocks become tool_calls (content null without text), the
     * results become tool messages ahead of the user's other blocks */
    request_is(
        "{" BASE "'messages':[{'role':'user','content':'weather?'},{'role':'assistant','content':"
        "[{'type':'tool_use','id':'toolu_1','name':'get','input':{'city':'Paris','n':[1,2]}},"
        "{'type':'tool_use','id':'toolu_2','name':'now','input':{}}]},{'role':'user','content':"
        "[{'type':'text','text':'and?'},{'type':'tool_result','tool_use_id':'toolu_1','content':"
        "'sunny'},{'type':'tool_result','tool_use_id':'toolu_2','is_error':true,'content':[{"
        "'type':'text','text':'no'},{'type':'text','text':'clock'}]},{'type':'tool_result',"
        "'tool_use_id':'toolu_3'}]}]}",
        "{'model':'m','messages':[{'role':'user','content':'weather?'},{'role':'assistant',"
        "'content':null,'tool_calls':[{'id':'toolu_1','type':'function','function':{'name':"
        "'get','arguments':'{\\'city\\':\\'Paris\\',\\'n\\':[1,2]}'}},{'id':'toolu_2','type':"
        "'function','function':{'name':'now','arguments':'{}'}}]},{'role':'tool','content':"
        "'sunny','tool_call_id':'toolu_1'},{'role':'tool','content':[{'type':'text','text':"
        "'no'},{'type':'text','text':'clock'}],'tool_call_id':'toolu_2'},{'role':'tool',"
        "'content':'','tool_call_id':'toolu_3'},{'role':'user','content':'and?'}],"
        "'max_completion_tokens':5}");
    /* assistant text: one block a string, several parts; with a tool call; only results left */
    request_is("{" BASE "'messages':[{'role':'user','content':'q'},{'role':'assistant','content':"
               "[{'type':'text','text':'a'},{'type':'text','text':'b'},{'type':'tool_use','id':"
               "'t','name':'f'}]},{'role':'user','content':[{'type':'tool_result','tool_use_id':"
               "'t','content':[]}]},{'role':'assistant','content':[]}]}",
               "{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
               "'content':[{'type':'text','text':'a'},{'type':'text','text':'b'}],'tool_calls':[{"
               "'id':'t','type':'function','function':{'name':'f','arguments':'{}'}}]},{'role':"
               "'tool','content':'','tool_call_id':'t'},{'role':'assistant','content':''}],"
               "'max_completion_tokens':5}");
    request_is("{" BASE "'messages':[{'role':'user','content':'q'},{'role':'assistant','content':"
               "[{'type':'text','text':'pre'}]}]}",
               "{'model':'m','messages':[{'role':'user','content':'q'},{'role':'assistant',"
               "'content':'pre'}],'max_completion_tokens':5}");
}

static void test_request_tools(void **state)
{
    const char *tools = "'tools':[{'name':'get','description':'d','input_schema':{'type':"
                        "'object','properties':{'c':{'type':'string'}}},'cache_control':{"
                        "'type':'ephemeral'}},{'type':'custom','name':'x','input_schema':{},"
                        "'strict':true}]";
    const char *want = "'tools':[{'type':'function','function':{'name':'get','description':"
                       "'d','parameters':{'type':'object','properties':{'c':{'type':'string'}}}"
                       "}},{'type':'function','function':{'name':'x','parameters':{},'strict':"
                       "true}}]";
    static const struct {
        const char *choice, *want;
    } cases[] = {
        {"", ""},
        {",'tool_choice':{'type':'auto'}", ",'tool_choice':'auto'"},
        {",'tool_choice':{'type':'any'}", ",'tool_choice':'required'"},
        {",'tool_choice':{'type':'none'}", ",'tool_choice':'none'"},
        {",'tool_choice':{'type':'tool','name':'get'}",
         ",'tool_choice':{'type':'function','function':{'name':'get'}}"},
        {",'tool_choice':{'type':'auto','disable_parallel_tool_use':true}",
         ",'tool_choice':'auto','parallel_tool_calls':false"},
        {",'tool_choice':{'type':'any','disable_parallel_tool_use':false}",
         ",'tool_choice':'required'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[1024], exp[1024];
        snprintf(req, sizeof(req), "{" BASE USER ",%s%s}", tools, cases[i].choice);
        snprintf(exp, sizeof(exp),
                 "{'model':'m','messages':[{'role':'user','content':'q'}],"
                 "'max_completion_tokens':5,%s%s}",
                 want, cases[i].want);
        request_is(req, exp);
    }
    /* without tools, auto and none mean nothing */
    request_is("{" BASE USER ",'tools':[],'tool_choice':{'type':'none'}}",
               "{'model':'m','messages':[{'role':'user','content':'q'}],"
               "'max_completion_tokens':5}");
    /* structured output */
    request_is("{" BASE USER ",'output_config':{'format':{'type':'json_schema','schema':{"
               "'type':'object'}}}}",
               "{'model':'m','messages':[{'role':'user','content':'q'}],"
               "'max_completion_tokens':5,'response_format':{'type':'json_schema',"
               "'json_schema':{'name':'output','schema':{'type':'object'}}}}");
}

static void test_request_rejects(void **state)
{
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"[1]", "(body)"},
        {"{'max_tokens':5," USER "}", "model"},
        {"{'model':''"
         ",'max_tokens':5," USER "}",
         "model"},
        {"{'model':'m'," USER "}", "max_tokens"},
        {"{'model':'m','max_tokens':0," USER "}", "max_tokens"},
        {"{'model':'m','max_tokens':2.5," USER "}", "max_tokens"},
        {"{'model':'m','max_tokens':'5'," USER "}", "max_tokens"},
        {"{" BASE "'messages':[]}", "messages"},
        {"{" BASE "'messages':{}}", "messages"},
        {"{'model':'m','max_tokens':5}", "messages"},
        {"{" BASE USER ",'top_a':1}", "top_a"}, /* unknown: never dropped silently */
        {"{" BASE USER ",'':1}", "\"\""},
        {"{" BASE USER ",'container':'c'}", "container"},
        {"{" BASE USER ",'mcp_servers':[]}", "mcp_servers"},
        {"{" BASE USER ",'inference_geo':'us'}", "inference_geo"},
        {"{" BASE USER ",'stream':'yes'}", "stream"},
        {"{" BASE USER ",'thinking':{'type':'enabled','budget_tokens':1024}}", "thinking"},
        {"{" BASE USER ",'thinking':{'type':'adaptive'}}", "thinking"},
        {"{" BASE USER ",'temperature':1.5}", "temperature"},
        {"{" BASE USER ",'temperature':'hot'}", "temperature"},
        {"{" BASE USER ",'top_p':-0.1}", "top_p"},
        {"{" BASE USER ",'top_k':0}", "top_k"},
        {"{" BASE USER ",'top_k':1.5}", "top_k"},
        {"{" BASE USER ",'stop_sequences':'END'}", "stop_sequences"},
        {"{" BASE USER ",'stop_sequences':[1]}", "stop_sequences"},
        {"{" BASE USER ",'metadata':'u'}", "metadata"},
        {"{" BASE USER ",'metadata':{'user_id':7}}", "metadata.user_id"},
        {"{" BASE USER ",'metadata':{'tags':[]}}", "metadata.tags"},
        {"{" BASE USER ",'output_config':{'effort':'high'}}", "output_config.effort"},
        {"{" BASE USER ",'output_config':{'format':{'type':'json_object'}}}",
         "output_config.format"},
        {"{" BASE USER ",'output_config':[]}", "output_config"},
        {"{" BASE "'system':7," USER "}", "system"},
        {"{" BASE "'system':[{'type':'image'}]," USER "}", "system[0]"},
        {"{" BASE "'system':[{'type':'text','text':1}]," USER "}", "system[0]"},
        {"{" BASE "'messages':[7]}", "messages[0]"},
        {"{" BASE "'messages':[{'role':'system','content':'x'}]}", "messages[0].role"},
        {"{" BASE "'messages':[{'content':'x'}]}", "messages[0].role"},
        {"{" BASE "'messages':[{'role':'user'}]}", "messages[0].content"},
        {"{" BASE "'messages':[{'role':'user','content':7}]}", "messages[0].content"},
        {"{" BASE "'messages':[{'role':'user','content':'x','name':'n'}]}", "messages[0].name"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'video'}]}]}",
         "messages[0].content[0].type"},
        {"{" BASE "'messages':[{'role':'user','content':[{'text':'x'}]}]}",
         "messages[0].content[0].type"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'tool_use','id':'t','name':'f',"
         "'input':{}}]}]}",
         "messages[0].content[0].type"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'text'}]}]}",
         "messages[0].content[0]"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'image','source':{'type':"
         "'file','file_id':'f'}}]}]}",
         "messages[0].content[0].source"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'image','source':{'type':"
         "'base64','media_type':'image/png'}}]}]}",
         "messages[0].content[0].source"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'image','source':{'type':"
         "'base64','media_type':'image/png;x','data':'A'}}]}]}",
         "messages[0].content[0].source"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'document','source':{'type':"
         "'base64','media_type':'text/csv','data':'A'}}]}]}",
         "messages[0].content[0].source"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'tool_result'}]}]}",
         "messages[0].content[0].tool_use_id"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'tool_result','tool_use_id':'t',"
         "'content':[{'type':'image','source':{'type':'url','url':'https://x'}}]}]}]}",
         "messages[0].content[0].content[0]"},
        {"{" BASE "'messages':[{'role':'user','content':[{'type':'tool_result','tool_use_id':'t',"
         "'content':7}]}]}",
         "messages[0].content[0].content"},
        {"{" BASE "'messages':[{'role':'assistant','content':[{'type':'thinking','thinking':'x',"
         "'signature':'s'}]}]}",
         "messages[0].content[0].type"},
        {"{" BASE "'messages':[{'role':'assistant','content':[{'type':'image','source':{}}]}]}",
         "messages[0].content[0].type"},
        {"{" BASE "'messages':[{'role':'assistant','content':[{'type':'tool_use','name':'f'}]}]}",
         "messages[0].content[0]"},
        {"{" BASE "'messages':[{'role':'assistant','content':[{'type':'tool_use','id':'t','name':"
         "'f','input':[1]}]}]}",
         "messages[0].content[0].input"},
        {"{" BASE USER ",'tools':{}}", "tools"},
        {"{" BASE USER ",'tools':[7]}", "tools[0]"},
        {"{" BASE USER ",'tools':[{'type':'web_search_20250305','name':'web_search'}]}",
         "tools[0].type"},
        {"{" BASE USER ",'tools':[{'name':'f','input_schema':{},'defer_loading':true}]}",
         "tools[0].defer_loading"},
        {"{" BASE USER ",'tools':[{'input_schema':{}}]}", "tools[0]"},
        {"{" BASE USER ",'tools':[{'name':'f'}]}", "tools[0]"},
        {"{" BASE USER ",'tools':[{'name':'f','input_schema':{},'description':1}]}", "tools[0]"},
        {"{" BASE USER ",'tools':[{'name':'f','input_schema':{},'strict':'y'}]}", "tools[0]"},
        {"{" BASE USER ",'tool_choice':'auto'}", "tool_choice"},
        {"{" BASE USER ",'tool_choice':{'type':'any'}}", "tool_choice"},
        {"{" BASE USER ",'tool_choice':{'type':'tool','name':'f'}}", "tool_choice"},
        {"{" BASE USER ",'tools':[{'name':'f','input_schema':{}}],'tool_choice':{'type':'tool'}}",
         "tool_choice.name"},
        {"{" BASE USER ",'tools':[{'name':'f','input_schema':{}}],'tool_choice':{'type':'some'}}",
         "tool_choice.type"},
        {"{" BASE USER ",'tool_choice':{'type':'auto','disable_parallel_tool_use':1}}",
         "tool_choice.disable_parallel_tool_use"},
        {"{" BASE USER ",'tool_choice':{'type':'auto','x':1}}", "tool_choice.x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        request_fails(cases[i].body, cases[i].param, "VALIDATION_ERROR");
    request_fails("{'model':", NULL, "INVALID_JSON");
    request_fails("", NULL, "INVALID_JSON");
    request_fails("{'model':'m'} x", NULL, "INVALID_JSON");
    request_fails("{\"model\":\"\xc0\xaf\"}", NULL, "INVALID_JSON");
}

/* ---- answer ---- */

static void answer_is(const char *answer, const char *want)
{
    char *a = q(answer);
    struct ibex_buf out;
    ibex_buf_init(&out);
    if (ibex_messages_answer(a, strlen(a), "asked", 5, &out) != 0)
        fail_msg("refused: %s", a);
    json_equal(out.p, out.len, want, a);
    ibex_buf_dispose(&out);
    free(a);
}

static void test_answer(void **state)
{
    answer_is("{'id':'chatcmpl-1','object':'chat.completion','created':1,'model':'gpt-x',"
              "'choices':[{'index':0,'message':{'role':'assistant','content':'Hello'},"
              "'finish_reason':'stop'}],'usage':{'prompt_tokens':10,'completion_tokens':3,"
              "'total_tokens':13}}",
              "{'id':'msg_chatcmpl-1','type':'message','role':'assistant','model':'gpt-x',"
              "'content':[{'type':'text','text':'Hello'}],'stop_reason':'end_turn',"
              "'stop_sequence':null,'usage':{'input_tokens':10,'output_tokens':3}}");
    /* tool calls: input parsed; empty arguments {}; arguments that are not JSON kept as text;
     * an id that is a message id already stays; cached prompt tokens are apart */
    answer_is("{'id':'msg_01','model':'claude-x','choices':[{'index':0,'message':{'role':"
              "'assistant','content':'Let me look.','tool_calls':[{'id':'call_1','type':"
              "'function','function':{'name':'get','arguments':'{\\'city\\': \\'Paris\\'}'}},{"
              "'id':'call_2','type':'function','function':{'name':'now','arguments':''}},{'id':"
              "'call_3','type':'function','function':{'name':'bad','arguments':'{oops'}}]},"
              "'finish_reason':'tool_calls'}],'usage':{'prompt_tokens':100,'completion_tokens':"
              "7,'prompt_tokens_details':{'cached_tokens':60}}}",
              "{'id':'msg_01','type':'message','role':'assistant','model':'claude-x','content':"
              "[{'type':'text','text':'Let me look.'},{'type':'tool_use','id':'call_1','name':"
              "'get','input':{'city':'Paris'}},{'type':'tool_use','id':'call_2','name':'now',"
              "'input':{}},{'type':'tool_use','id':'call_3','name':'bad','input':'{oops'}],"
              "'stop_reason':'tool_use','stop_sequence':null,'usage':{'input_tokens':40,"
              "'output_tokens':7,'cache_read_input_tokens':60}}");
    /* finish reasons; a server that says stop with tool calls; no usage, no id, no model */
    static const struct {
        const char *finish, *stop;
    } reasons[] = {
        {"'stop'", "end_turn"},          {"'length'", "max_tokens"},
        {"'tool_calls'", "tool_use"},    {"'function_call'", "tool_use"},
        {"'content_filter'", "refusal"}, {"null", "end_turn"},
        {"'something_new'", "end_turn"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        char a[512], w[512];
        snprintf(a, sizeof(a), "{'choices':[{'message':{'content':null},'finish_reason':%s}]}",
                 reasons[i].finish);
        snprintf(w, sizeof(w),
                 "{'id':'msg_ibex','type':'message','role':'assistant','model':'asked',"
                 "'content':[],'stop_reason':'%s','stop_sequence':null,'usage':{"
                 "'input_tokens':0,'output_tokens':0}}",
                 reasons[i].stop);
        answer_is(a, w);
    }
    answer_is("{'choices':[{'message':{'content':'','tool_calls':[{'id':'c','function':{'name':"
              "'f','arguments':'[1]'}}]},'finish_reason':'stop'}]}",
              "{'id':'msg_ibex','type':'message','role':'assistant','model':'asked','content':"
              "[{'type':'tool_use','id':'c','name':'f','input':[1]}],'stop_reason':'tool_use',"
              "'stop_sequence':null,'usage':{'input_tokens':0,'output_tokens':0}}");
    /* content as text parts, and a refusal */
    answer_is("{'choices':[{'message':{'content':[{'type':'text','text':'a'},{'type':'x'},{"
              "'type':'text','text':'b'}],'refusal':'no'},'finish_reason':'content_filter'}]}",
              "{'id':'msg_ibex','type':'message','role':'assistant','model':'asked','content':"
              "[{'type':'text','text':'a'},{'type':'text','text':'b'},{'type':'text','text':"
              "'no'}],'stop_reason':'refusal','stop_sequence':null,'usage':{'input_tokens':0,"
              "'output_tokens':0}}");
    /* not a chat.completion: nothing appended */
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{'choices':[]}",
        "{'choices':[{}]}",
        "{'choices':[{'message':'x'}]}",
        "{'choices':{}}",
        "{'choices':[{'message':{}}]",
        "null",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *b = q(bad[i]);
        struct ibex_buf out;
        ibex_buf_init(&out);
        if (ibex_messages_answer(b, strlen(b), "m", 1, &out) == 0)
            fail_msg("accepted %s: %s", b, out.p);
        assert_int_equal(out.len, 0);
        ibex_buf_dispose(&out);
        free(b);
    }
}

/* ---- errors ---- */

static void test_error_body(void **state)
{
    static const struct {
        int status;
        const char *type;
    } types[] = {
        {400, "invalid_request_error"},
        {401, "authentication_error"},
        {403, "permission_error"},
        {404, "not_found_error"},
        {405, "invalid_request_error"},
        {409, "conflict_error"},
        {413, "request_too_large"},
        {422, "invalid_request_error"},
        {429, "rate_limit_error"},
        {500, "api_error"},
        {502, "api_error"},
        {503, "overloaded_error"},
        {504, "timeout_error"},
        {529, "overloaded_error"},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct ibex_buf b;
        ibex_buf_init(&b);
        ibex_messages_append_error(&b, types[i].status, "SOME_CODE", "it \"failed\"", "param", "[]",
                                   "req-1");
        char want[256];
        snprintf(want, sizeof(want),
                 "{'type':'error','error':{'type':'%s','message':'it \\'failed\\'','code':"
                 "'SOME_CODE'},'request_id':'req-1'}",
                 types[i].type);
        json_equal(b.p, b.len, want, "error body");
        ibex_buf_dispose(&b);
    }
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_messages_append_error(&b, 401, "MISSING_TOKEN", "m", NULL, NULL, NULL);
    json_equal(b.p, b.len,
               "{'type':'error','error':{'type':'authentication_error','message':'m','code':"
               "'MISSING_TOKEN'},'request_id':null}",
               "error body without a request id");
    ibex_buf_dispose(&b);
    assert_ptr_equal(ibex_messages_dialect.error_body, ibex_messages_append_error);
    assert_true(ibex_messages_dialect.api_key_header);
    assert_int_equal(ibex_messages_dialect.route, IBEX_ROUTE_MESSAGES);
}

/* ---- stream ---- */

/* Checks that out is a sequence of "event: T\ndata: <JSON object of type T>\n\n"; returns the
 * events' types joined by spaces. */
static char *event_types(const struct ibex_buf *out)
{
    struct ibex_buf types;
    ibex_buf_init(&types);
    ibex_buf_append_cstr(&types, "");
    size_t off = 0;
    while (off < out->len) {
        const char *ev = out->p + off;
        const char *nl = memchr(ev, '\n', out->len - off);
        const char *end = memmem(ev, out->len - off, "\n\n", 2);
        if (nl == NULL || end == NULL || strncmp(ev, "event: ", 7) != 0 ||
            strncmp(nl + 1, "data: ", 6) != 0 || end < nl)
            fail_msg("malformed event at %zu: %s", off, ev);
        size_t tlen = (size_t)(nl - ev) - 7;
        json_object *d = tu_parse_json(nl + 7, (size_t)(end - nl - 7));
        if (d == NULL)
            fail_msg("data is not JSON: %.*s", (int)(end - nl - 7), nl + 7);
        const char *t = tu_json_str(d, "type");
        if (t == NULL || strlen(t) != tlen || memcmp(t, ev + 7, tlen) != 0)
            fail_msg("event %.*s has data of type %s", (int)tlen, ev + 7, t ? t : "(none)");
        json_object_put(d);
        if (types.len)
            ibex_buf_append_cstr(&types, " ");
        ibex_buf_append(&types, ev + 7, tlen);
        off = (size_t)(end - out->p) + 2;
    }
    char *s = strdup(types.p);
    ibex_buf_dispose(&types);
    return s;
}

/* Runs an OpenAI stream through a translator, cut at the given offsets, then ended. */
static void translate(const char *in, size_t n, const size_t *cuts, size_t ncuts, bool end,
                      struct ibex_buf *out)
{
    struct ibex_messages_stream s;
    ibex_messages_stream_init(&s, "asked", 5);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        ibex_messages_stream_feed(&s, in + at, to - at, out);
        at = to;
    }
    if (end)
        ibex_messages_stream_end(&s, out);
    ibex_messages_stream_dispose(&s);
}

/* The translation of in (single-quoted) is the same whole, split in two at every position and a
 * byte at a time; returns it (freed by the caller). */
static char *stream_of(const char *in_q, bool end)
{
    char *in = q(in_q);
    size_t n = strlen(in);
    struct ibex_buf whole, pieces;
    ibex_buf_init(&whole);
    ibex_buf_init(&pieces);
    ibex_buf_append_cstr(&whole, "");
    translate(in, n, NULL, 0, end, &whole);
    for (size_t cut = 0; cut <= n; cut++) {
        ibex_buf_reset(&pieces);
        translate(in, n, &cut, 1, end, &pieces);
        if (pieces.len != whole.len || memcmp(pieces.p, whole.p, whole.len) != 0)
            fail_msg("split at %zu differs:\n%s\n---\n%s", cut, pieces.p, whole.p);
    }
    size_t *every = malloc((n + 1) * sizeof(*every));
    for (size_t i = 0; i < n; i++)
        every[i] = i;
    ibex_buf_reset(&pieces);
    translate(in, n, every, n, end, &pieces);
    assert_int_equal(pieces.len, whole.len);
    assert_memory_equal(pieces.p, whole.p, whole.len);
    free(every);
    free(event_types(&whole));
    char *s = strdup(whole.p);
    ibex_buf_dispose(&whole);
    ibex_buf_dispose(&pieces);
    free(in);
    return s;
}

#define CHUNK(delta, finish)                                                                       \
    "data: {'id':'chatcmpl-9','object':'chat.completion.chunk','created':1,'model':'gpt-x',"       \
    "'choices':[{'index':0,'delta':" delta ",'logprobs':null,'finish_reason':" finish "}]}\n\n"
#define USAGE                                                                                      \
    "data: {'id':'chatcmpl-9','object':'chat.completion.chunk','created':1,'model':'gpt-x',"       \
    "'choices':[],'usage':{'prompt_tokens':11,'completion_tokens':3,'total_tokens':14}}\n\n"
#define DONE "data: [DONE]\n\n"

/* The pieces (a NULL-terminated list) joined (freed by the caller). */
static char *join(const char *first, ...)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "");
    va_list ap;
    va_start(ap, first);
    for (const char *p = first; p; p = va_arg(ap, const char *))
        ibex_buf_append_cstr(&b, p);
    va_end(ap);
    char *s = strdup(b.p);
    ibex_buf_dispose(&b);
    return s;
}

/* The translation of in (single-quoted, freed here) as stream_of gives it. */
static char *stream_joined(char *in, bool end)
{
    char *out = stream_of(in, end);
    free(in);
    return out;
}

static void expect_stream(char *in, bool end, const char *want_q)
{
    char *got = stream_joined(in, end), *want = q(want_q);
    if (strcmp(got, want) != 0)
        fail_msg("stream\n got: %s\nwant: %s", got, want);
    free(got);
    free(want);
}

/* The types of the events of a translation (freed by the caller). */
static char *types_of(const char *out)
{
    struct ibex_buf b = {(char *)out, strlen(out), strlen(out) + 1};
    return event_types(&b);
}

static void test_stream_text(void **state)
{
    expect_stream(
        join(CHUNK("{'role':'assistant','content':''}", "null"), CHUNK("{'content':'Hel'}", "null"),
             ": keep-alive\r\n\r\n", CHUNK("{'content':'lo \\'x\\''}", "null"),
             CHUNK("{}", "'stop'"), USAGE, DONE, NULL),
        true,
        "event: message_start\ndata: {'type':'message_start','message':{'id':'msg_chatcmpl-9',"
        "'type':'message','role':'assistant','model':'gpt-x','content':[],'stop_reason':null,"
        "'stop_sequence':null,'usage':{'input_tokens':0,'output_tokens':0}}}\n\n"
        "event: content_block_start\ndata: {'type':'content_block_start','index':0,"
        "'content_block':{'type':'text','text':''}}\n\n"
        "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,'delta':{"
        "'type':'text_delta','text':'Hel'}}\n\n"
        "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,'delta':{"
        "'type':'text_delta','text':'lo \\'x\\''}}\n\n"
        "event: content_block_stop\ndata: {'type':'content_block_stop','index':0}\n\n"
        "event: message_delta\ndata: {'type':'message_delta','delta':{'stop_reason':'end_turn',"
        "'stop_sequence':null},'usage':{'input_tokens':11,'output_tokens':3}}\n\n"
        "event: message_stop\ndata: {'type':'message_stop'}\n\n");
    /* without [DONE], a finish_reason is the end; without usage, output_tokens is 0 */
    expect_stream(join(CHUNK("{'content':'a'}", "null"), CHUNK("{}", "'length'"), NULL), true,
                  "event: message_start\ndata: {'type':'message_start','message':{'id':"
                  "'msg_chatcmpl-9','type':'message','role':'assistant','model':'gpt-x',"
                  "'content':[],'stop_reason':null,'stop_sequence':null,'usage':{"
                  "'input_tokens':0,'output_tokens':0}}}\n\n"
                  "event: content_block_start\ndata: {'type':'content_block_start','index':0,"
                  "'content_block':{'type':'text','text':''}}\n\n"
                  "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,"
                  "'delta':{'type':'text_delta','text':'a'}}\n\n"
                  "event: content_block_stop\ndata: {'type':'content_block_stop','index':0}\n\n"
                  "event: message_delta\ndata: {'type':'message_delta','delta':{'stop_reason':"
                  "'max_tokens','stop_sequence':null},'usage':{'output_tokens':0}}\n\n"
                  "event: message_stop\ndata: {'type':'message_stop'}\n\n");
    /* an empty answer: [DONE] alone still makes a whole message, with the fallback model */
    expect_stream(join(DONE, NULL), true,
                  "event: message_start\ndata: {'type':'message_start','message':{'id':"
                  "'msg_ibex','type':'message','role':'assistant','model':'asked','content':[],"
                  "'stop_reason':null,'stop_sequence':null,'usage':{'input_tokens':0,"
                  "'output_tokens':0}}}\n\n"
                  "event: message_delta\ndata: {'type':'message_delta','delta':{'stop_reason':"
                  "'end_turn','stop_sequence':null},'usage':{'output_tokens':0}}\n\n"
                  "event: message_stop\ndata: {'type':'message_stop'}\n\n");
    /* what follows [DONE] is ignored; the end adds nothing */
    char *a = stream_joined(join(CHUNK("{'content':'a'}", "'stop'"), DONE, NULL), true);
    char *b = stream_joined(join(CHUNK("{'content':'a'}", "'stop'"), DONE,
                                 CHUNK("{'content':'b'}", "null"), DONE, NULL),
                            true);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void test_stream_tools(void **state)
{
    /* text, then two calls streamed OpenAI's way (id and name first, arguments in pieces);
     * other choices are not the answer; cached tokens are apart */
    char *got = stream_joined(
        join(CHUNK("{'role':'assistant','content':'Checking.'}", "null"),
             CHUNK("{'tool_calls':[{'index':0,'id':'call_a','type':'function','function':{"
                   "'name':'get','arguments':''}}]}",
                   "null"),
             CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'c\\':'}}]}", "null"),
             CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'\\'P\\'}'}}]}", "null"),
             "data: {'choices':[{'index':1,'delta':{'content':'other'}}]}\n\n",
             CHUNK("{'tool_calls':[{'index':1,'id':'call_b','function':{'name':'now',"
                   "'arguments':'{}'}}]}",
                   "null"),
             CHUNK("{}", "'tool_calls'"),
             "data: {'choices':[],'usage':{'prompt_tokens':50,'completion_tokens':9,"
             "'prompt_tokens_details':{'cached_tokens':20}}}\n\n",
             DONE, NULL),
        true);
    char *want =
        q("event: message_start\ndata: {'type':'message_start','message':{'id':'msg_chatcmpl-9',"
          "'type':'message','role':'assistant','model':'gpt-x','content':[],'stop_reason':null,"
          "'stop_sequence':null,'usage':{'input_tokens':0,'output_tokens':0}}}\n\n"
          "event: content_block_start\ndata: {'type':'content_block_start','index':0,"
          "'content_block':{'type':'text','text':''}}\n\n"
          "event: content_block_delta\ndata: {'type':'content_block_delta','index':0,'delta':{"
          "'type':'text_delta','text':'Checking.'}}\n\n"
          "event: content_block_stop\ndata: {'type':'content_block_stop','index':0}\n\n"
          "event: content_block_start\ndata: {'type':'content_block_start','index':1,"
          "'content_block':{'type':'tool_use','id':'call_a','name':'get','input':{}}}\n\n"
          "event: content_block_delta\ndata: {'type':'content_block_delta','index':1,'delta':{"
          "'type':'input_json_delta','partial_json':'{\\'c\\':'}}\n\n"
          "event: content_block_delta\ndata: {'type':'content_block_delta','index':1,'delta':{"
          "'type':'input_json_delta','partial_json':'\\'P\\'}'}}\n\n"
          "event: content_block_stop\ndata: {'type':'content_block_stop','index':1}\n\n"
          "event: content_block_start\ndata: {'type':'content_block_start','index':2,"
          "'content_block':{'type':'tool_use','id':'call_b','name':'now','input':{}}}\n\n"
          "event: content_block_delta\ndata: {'type':'content_block_delta','index':2,'delta':{"
          "'type':'input_json_delta','partial_json':'{}'}}\n\n"
          "event: content_block_stop\ndata: {'type':'content_block_stop','index':2}\n\n"
          "event: message_delta\ndata: {'type':'message_delta','delta':{'stop_reason':'tool_use',"
          "'stop_sequence':null},'usage':{'input_tokens':30,'output_tokens':9,"
          "'cache_read_input_tokens':20}}\n\n"
          "event: message_stop\ndata: {'type':'message_stop'}\n\n");
    if (strcmp(got, want) != 0)
        fail_msg("tool stream\n got: %s\nwant: %s", got, want);
    free(got);
    free(want);
    /* a call whose finish says stop is still tool_use; a call without index takes the next */
    got = stream_joined(
        join(CHUNK("{'tool_calls':[{'id':'c','function':{'name':'f','arguments':'{}'}}]}", "null"),
             CHUNK("{}", "'stop'"), DONE, NULL),
        true);
    assert_non_null(strstr(got, "\"stop_reason\":\"tool_use\""));
    assert_non_null(strstr(got, "\"id\":\"c\",\"name\":\"f\""));
    free(got);
    /* a piece of a call already closed cannot be placed: an error event, nothing after */
    got = stream_joined(
        join(CHUNK("{'tool_calls':[{'index':0,'id':'a','function':{'name':'f'}}]}", "null"),
             CHUNK("{'tool_calls':[{'index':1,'id':'b','function':{'name':'g'}}]}", "null"),
             CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'{}'}}]}", "null"),
             CHUNK("{}", "'tool_calls'"), DONE, NULL),
        true);
    char *types = types_of(got);
    assert_string_equal(types, "message_start content_block_start content_block_stop "
                               "content_block_start error");
    assert_non_null(strstr(got, "interleaves tool calls"));
    free(types);
    free(got);
}

static void test_stream_failures(void **state)
{
    char *got, *types;
    /* ended before any finish_reason: an error event instead of message_stop */
    got = stream_joined(join(CHUNK("{'content':'a'}", "null"), NULL), true);
    types = types_of(got);
    assert_string_equal(types, "message_start content_block_start content_block_delta error");
    assert_non_null(strstr(got, "\"type\":\"api_error\""));
    assert_non_null(strstr(got, "ended before its end"));
    free(types);
    free(got);
    /* nothing at all */
    got = stream_joined(join("", NULL), true);
    types = types_of(got);
    assert_string_equal(types, "error");
    free(types);
    free(got);
    /* the provider's error chunk: an error event with ibex's own message, nothing after */
    got = stream_joined(join(CHUNK("{'content':'a'}", "null"),
                             "data: {'error':{'message':'secret detail','type':'x'}}\n\n",
                             CHUNK("{'content':'b'}", "null"), DONE, NULL),
                        true);
    types = types_of(got);
    assert_string_equal(types, "message_start content_block_start content_block_delta error");
    assert_null(strstr(got, "secret"));
    free(types);
    free(got);
    /* lines that are not chunks are skipped */
    char *a = stream_joined(join("data: not json\n\ndata: [1]\n\nevent: x\nid: 1\n\n",
                                 CHUNK("{'content':'a'}", "'stop'"), DONE, NULL),
                            true);
    char *c = stream_joined(join(CHUNK("{'content':'a'}", "'stop'"), DONE, NULL), true);
    assert_string_equal(a, c);
    free(a);
    free(c);

    /* a line over line_max */
    struct ibex_messages_stream s;
    ibex_messages_stream_init(&s, "m", 1);
    s.sse.line_max = 64;
    struct ibex_buf out;
    ibex_buf_init(&out);
    char *in = q(CHUNK("{'content':'a'}", "null"));
    ibex_messages_stream_feed(&s, in, strlen(in), &out);
    ibex_messages_stream_end(&s, &out);
    types = event_types(&out);
    assert_string_equal(types, "error");
    assert_non_null(strstr(out.p, "over the size limit"));
    free(types);
    free(in);
    ibex_buf_dispose(&out);
    ibex_messages_stream_dispose(&s);

    /* a failure after the stream opened (chat.c's end_stream_with_error); once only, and
     * nothing after message_stop */
    ibex_messages_stream_init(&s, "m", 1);
    ibex_buf_init(&out);
    in = q(CHUNK("{'content':'a'}", "null"));
    ibex_messages_stream_feed(&s, in, strlen(in), &out);
    ibex_messages_stream_error(&s, 504, "UPSTREAM_IDLE_TIMEOUT", "the provider stopped sending",
                               "rid-1", &out);
    ibex_messages_stream_error(&s, 502, "X", "again", "rid-1", &out);
    ibex_messages_stream_feed(&s, in, strlen(in), &out);
    ibex_messages_stream_end(&s, &out);
    types = event_types(&out);
    assert_string_equal(types, "message_start content_block_start content_block_delta error");
    const char *ev = strstr(out.p, "event: error\ndata: ");
    assert_non_null(ev);
    json_equal(ev + 19, strlen(ev + 19) - 2,
               "{'type':'error','error':{'type':'timeout_error','message':'the provider stopped "
               "sending','code':'UPSTREAM_IDLE_TIMEOUT'},'request_id':'rid-1'}",
               "error event");
    free(types);
    free(in);
    ibex_buf_dispose(&out);
    ibex_messages_stream_dispose(&s);

    ibex_messages_stream_init(&s, "m", 1);
    ibex_buf_init(&out);
    in = join(CHUNK("{'content':'a'}", "'stop'"), DONE, NULL);
    char *inq = q(in);
    ibex_messages_stream_feed(&s, inq, strlen(inq), &out);
    size_t len = out.len;
    ibex_messages_stream_error(&s, 502, "UPSTREAM_RESET", "reset", NULL, &out);
    ibex_messages_stream_end(&s, &out);
    assert_int_equal(out.len, len);
    free(in);
    free(inq);
    ibex_buf_dispose(&out);
    ibex_messages_stream_dispose(&s);
}

/* A long answer keeps the translator's memory to its line buffer. */
static void test_stream_bounded(void **state)
{
    struct ibex_messages_stream s;
    ibex_messages_stream_init(&s, "m", 1);
    struct ibex_buf out;
    ibex_buf_init(&out);
    char *chunk = q(CHUNK("{'content':'0123456789'}", "null"));
    size_t most = 0;
    for (int i = 0; i < 10000; i++) {
        ibex_buf_reset(&out);
        ibex_messages_stream_feed(&s, chunk, strlen(chunk), &out);
        if (s.sse.line.cap > most)
            most = s.sse.line.cap;
    }
    assert_true(most < 4096);
    assert_false(s.failed);
    free(chunk);
    ibex_buf_dispose(&out);
    ibex_messages_stream_dispose(&s);
}

/* The dialect table chat.c runs: a stream made in an arena is released with it. */
static void test_dialect(void **state)
{
    const char *body = "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                       "\"content\":\"q\"}]}";
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    assert_int_equal(ibex_chat_request_parse(&chat, body, strlen(body), &e), 0);
    struct ibex_arena *arena = ibex_arena_new(256);
    void *st = ibex_messages_dialect.stream_open(&chat, arena);
    struct ibex_buf out;
    ibex_buf_init(&out);
    char *in = q(CHUNK("{'content':'a'}", "null"));
    ibex_messages_dialect.stream_feed(st, in, strlen(in) - 1, &out); /* last \n held back */
    ibex_messages_dialect.stream_end(st, &out);
    char *types = event_types(&out);
    assert_string_equal(types, "message_start content_block_start content_block_delta error");
    free(types);
    ibex_buf_reset(&out);
    const char *answer = "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}";
    assert_int_equal(ibex_messages_dialect.translate_answer(&chat, answer, strlen(answer), &out),
                     0);
    json_equal(out.p, out.len,
               "{'id':'msg_ibex','type':'message','role':'assistant','model':'m','content':[{"
               "'type':'text','text':'x'}],'stop_reason':'end_turn','stop_sequence':null,"
               "'usage':{'input_tokens':0,'output_tokens':0}}",
               "dialect answer");
    free(in);
    ibex_buf_dispose(&out);
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    ibex_chat_error_dispose(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_basic),   cmocka_unit_test(test_request_system),
        cmocka_unit_test(test_request_blocks),  cmocka_unit_test(test_request_tools),
        cmocka_unit_test(test_request_rejects), cmocka_unit_test(test_answer),
        cmocka_unit_test(test_error_body),      cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tools),    cmocka_unit_test(test_stream_failures),
        cmocka_unit_test(test_stream_bounded),  cmocka_unit_test(test_dialect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
