/* OpenAI Chat Completions wire format for fakellm: credential check, request validation, error
 * bodies, the non-streaming completion and the SSE chunks of a streaming one, as text or as a
 * tool call (message.tool_calls; in a stream an id-and-name delta, then argument deltas).
 *
 * Invariants: renderers only append to the buffer they are given and never touch a request, so
 * the engine alone decides when bytes reach the client. Content is deterministic (chunk i is
 * fakellm_chunk_text(i)), which lets tests predict every byte of an answer. */
#include <string.h>

#include "../../src/core/alloc.h"
#include "fakellm.h"

static int authenticate(const struct ibex_req *req, struct fakellm_error *err)
{
    if (fakellm_body_bearer(req))
        return 0;
    *err = (struct fakellm_error){
        .status = 401,
        .code = "invalid_api_key",
        .message = "Missing or malformed bearer token in the Authorization header.",
    };
    return -1;
}

/* Azure OpenAI: the key in api-key, and an api-version in the query. */
static int azure_authenticate(const struct ibex_req *req, struct fakellm_error *err)
{
    if (ibex_str_trim(ibex_req_header(req, "api-key")).len == 0) {
        *err = (struct fakellm_error){
            .status = 401,
            .code = "401",
            .message = "Access denied due to missing subscription key.",
        };
        return -1;
    }
    static const char version[] = "api-version=";
    if (req->query.len < sizeof(version) ||
        memmem(req->query.p, req->query.len, version, sizeof(version) - 1) == NULL) {
        *err = (struct fakellm_error){
            .status = 404,
            .code = "404",
            .message = "Resource not found: no api-version.",
        };
        return -1;
    }
    return 0;
}

static int parse(const struct ibex_req *req, json_object *body, struct fakellm_gen *g,
                 struct fakellm_error *err)
{
    json_object *model, *messages, *opts;
    uint64_t chars = 0;

    if (!json_object_is_type(body, json_type_object))
        return fakellm_body_invalid(err, "The request body must be a JSON object.", NULL);
    model = fakellm_body_get(body, "model", json_type_string);
    if (model == NULL)
        return fakellm_body_invalid(err, "'model' is required and must be a string.", "model");
    messages = fakellm_body_get(body, "messages", json_type_array);
    if (messages == NULL)
        return fakellm_body_invalid(err, "'messages' is required and must be an array.",
                                    "messages");
    for (size_t i = 0; i < json_object_array_length(messages); i++) {
        json_object *msg = json_object_array_get_idx(messages, i);
        json_object *content = NULL;
        if (json_object_is_type(msg, json_type_object))
            json_object_object_get_ex(msg, "content", &content);
        chars += fakellm_body_text_chars(content);
    }

    g->model_len = (size_t)json_object_get_string_len(model);
    g->model = ibex_xstrndup(json_object_get_string(model), g->model_len);
    g->stream = fakellm_body_true(body, "stream");
    opts = fakellm_body_get(body, "stream_options", json_type_object);
    g->include_usage = g->stream && fakellm_body_true(opts, "include_usage");
    g->prompt_tokens = fakellm_body_tokens(chars);
    return 0;
}

/* tools: [{"type":"function","function":{"name":...}}] */
static bool declares_tool(json_object *body, const char *name)
{
    return fakellm_body_named(fakellm_body_get(body, "tools", json_type_array), "function", name);
}

void fakellm_openai_error(struct ibex_buf *b, int status, const char *code, const char *message,
                          const char *param)
{
    /* Shaped like a provider's error: no request_id, no field_errors. */
    ibex_http_append_error(b, status, code, message, param, NULL, NULL);
}

static void error_body(struct ibex_buf *b, const struct fakellm_error *err)
{
    fakellm_openai_error(b, err->status, err->code, err->message, err->param);
}

void fakellm_openai_models(struct ibex_buf *b)
{
    ibex_buf_append_cstr(b, "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\",\"object\":"
                            "\"model\",\"created\":0,\"owned_by\":\"fakellm\"}]}");
}

/* "id":..,"object":<object>,"created":..,"model":.. */
static void common_fields(struct ibex_buf *b, const struct fakellm_gen *g, const char *object)
{
    ibex_buf_appendf(b,
                     "\"id\":\"chatcmpl-fake-%llu\",\"object\":\"%s\",\"created\":%llu,"
                     "\"model\":",
                     (unsigned long long)g->seq, object, (unsigned long long)g->created);
    ibex_buf_append_json_str(b, g->model, g->model_len);
}

static void usage(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_appendf(b,
                     "\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                     "\"total_tokens\":%llu}",
                     (unsigned long long)g->prompt_tokens, (unsigned long long)g->chunks,
                     (unsigned long long)(g->prompt_tokens + g->chunks));
}

/* "id":"call_fake_<n>","type":"function","function":{"name":<tool>,"arguments": */
static void tool_call_open(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_appendf(b, "\"id\":\"call_fake_%llu\",\"type\":\"function\",\"function\":{\"name\":",
                     (unsigned long long)g->seq);
    ibex_buf_append_json_str(b, g->tool, strlen(g->tool));
    ibex_buf_append_cstr(b, ",\"arguments\":");
}

static void response(struct ibex_buf *b, const struct fakellm_gen *g)
{
    bool tool = g->tool[0] != '\0';

    ibex_buf_reserve(b, 512 + g->model_len * 6);
    ibex_buf_append_cstr(b, "{");
    common_fields(b, g, "chat.completion");
    ibex_buf_append_cstr(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                            "\"content\":");
    if (tool) {
        ibex_buf_append_cstr(b, "null,\"tool_calls\":[{");
        tool_call_open(b, g);
        ibex_buf_append_json_str(b, FAKELLM_TOOL_ARGS, sizeof(FAKELLM_TOOL_ARGS) - 1);
        ibex_buf_append_cstr(b, "}}]");
    } else {
        ibex_buf_append_cstr(b, "\"");
        fakellm_gen_text(b, g);
        ibex_buf_append_cstr(b, "\"");
    }
    ibex_buf_append_cstr(b, "},\"logprobs\":null,\"finish_reason\":");
    ibex_buf_append_cstr(b, tool ? "\"tool_calls\"}]," : "\"stop\"}],");
    usage(b, g);
    ibex_buf_append_cstr(b, "}");
}

/* data: {...,"choices":[{"index":0,"delta":<delta>,"logprobs":null,"finish_reason":..}]} */
static void chunk_open(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_append_cstr(b, "data: {");
    common_fields(b, g, "chat.completion.chunk");
    ibex_buf_append_cstr(b, ",\"choices\":[{\"index\":0,\"delta\":");
}

static const char chunk_close[] = "},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

/* A tool call opens with a delta carrying its id and name and empty arguments, as OpenAI's do;
 * the arguments follow in the content chunks. Text answers have no preamble. */
static void stream_head(struct ibex_buf *b, const struct fakellm_gen *g)
{
    if (g->tool[0] == '\0')
        return;
    chunk_open(b, g);
    ibex_buf_append_cstr(b,
                         "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,");
    tool_call_open(b, g);
    ibex_buf_append_cstr(b, "\"\"}}]");
    ibex_buf_append_cstr(b, chunk_close);
}

static void stream_chunk(struct ibex_buf *b, const struct fakellm_gen *g, uint64_t i)
{
    chunk_open(b, g);
    if (g->tool[0] != '\0') {
        struct ibex_str piece = fakellm_tool_piece(i, g->chunks);
        ibex_buf_append_cstr(b, "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
        ibex_buf_append_json_str(b, piece.p, piece.len);
        ibex_buf_append_cstr(b, "}}]");
        ibex_buf_append_cstr(b, chunk_close);
        return;
    }
    if (i == 0)
        ibex_buf_append_cstr(b, "{\"role\":\"assistant\",\"content\":\"");
    else
        ibex_buf_append_cstr(b, "{\"content\":\"");
    fakellm_chunk_text(b, i, g->chunk_bytes);
    ibex_buf_append_cstr(b, "\"");
    ibex_buf_append_cstr(b, chunk_close);
}

static void stream_tail(struct ibex_buf *b, const struct fakellm_gen *g)
{
    if (g->chunks == 0) {
        /* No content chunk carried the role: announce it with empty content, as OpenAI does. */
        chunk_open(b, g);
        ibex_buf_append_cstr(b, "{\"role\":\"assistant\",\"content\":\"\"");
        ibex_buf_append_cstr(b, chunk_close);
    }
    chunk_open(b, g);
    ibex_buf_append_cstr(b, "{},\"logprobs\":null,\"finish_reason\":");
    ibex_buf_append_cstr(b, g->tool[0] != '\0' ? "\"tool_calls\"}]}\n\n" : "\"stop\"}]}\n\n");
    if (g->include_usage) {
        ibex_buf_append_cstr(b, "data: {");
        common_fields(b, g, "chat.completion.chunk");
        ibex_buf_append_cstr(b, ",\"choices\":[],");
        usage(b, g);
        ibex_buf_append_cstr(b, "}\n\n");
    }
    ibex_buf_append_cstr(b, "data: [DONE]\n\n");
}

const struct fakellm_format fakellm_openai = {
    .name = "openai",
    .retry_statuses = {429, 503},
    .tool_pieces = 2,
    .authenticate = authenticate,
    .parse = parse,
    .declares_tool = declares_tool,
    .error_body = error_body,
    .response = response,
    .stream_head = stream_head,
    .stream_chunk = stream_chunk,
    .stream_tail = stream_tail,
};

/* Azure OpenAI speaks the same format under /openai/deployments/{name}/chat/completions. */
const struct fakellm_format fakellm_azure = {
    .name = "azure",
    .retry_statuses = {429, 503},
    .tool_pieces = 2,
    .authenticate = azure_authenticate,
    .parse = parse,
    .declares_tool = declares_tool,
    .error_body = error_body,
    .response = response,
    .stream_head = stream_head,
    .stream_chunk = stream_chunk,
    .stream_tail = stream_tail,
};
