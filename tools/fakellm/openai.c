/* OpenAI Chat Completions wire format for fakellm: credential check, request validation, error
 * bodies, the non-streaming completion and the SSE chunks of a streaming one.
 *
 * Invariants: renderers only append to the buffer they are given and never touch a request, so
 * the engine alone decides when bytes reach the client. Content is deterministic (chunk i is
 * fakellm_chunk_text(i)), which lets tests predict every byte of an answer. */
#include <string.h>

#include "../../src/core/alloc.h"
#include "fakellm.h"

static int authenticate(const struct ibex_req *req, struct fakellm_error *err)
{
    struct ibex_str auth = ibex_str_trim(ibex_req_header(req, "authorization"));
    static const char scheme[] = "bearer ";
    size_t n = sizeof(scheme) - 1;

    if (auth.p == NULL || auth.len <= n ||
        !ibex_str_caseeq_cstr((struct ibex_str){auth.p, n}, scheme))
        goto fail;
    if (ibex_str_trim((struct ibex_str){auth.p + n, auth.len - n}).len == 0)
        goto fail;
    return 0;
fail:
    *err = (struct fakellm_error){
        .status = 401,
        .code = "invalid_api_key",
        .message = "Missing or malformed bearer token in the Authorization header.",
    };
    return -1;
}

/* Characters (UTF-8 code points) of a JSON string. */
static uint64_t chars_of(json_object *s)
{
    const char *p = json_object_get_string(s);
    size_t len = (size_t)json_object_get_string_len(s);
    uint64_t n = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* Characters of a message's content: a string, or an array of parts whose "text" counts. */
static uint64_t content_chars(json_object *msg)
{
    json_object *content, *text;
    uint64_t n = 0;

    if (!json_object_is_type(msg, json_type_object) ||
        !json_object_object_get_ex(msg, "content", &content))
        return 0;
    if (json_object_is_type(content, json_type_string))
        return chars_of(content);
    if (!json_object_is_type(content, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *part = json_object_array_get_idx(content, i);
        if (json_object_is_type(part, json_type_object) &&
            json_object_object_get_ex(part, "text", &text) &&
            json_object_is_type(text, json_type_string))
            n += chars_of(text);
    }
    return n;
}

static bool is_true(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
           json_object_get_boolean(v);
}

static int invalid(struct fakellm_error *err, const char *message, const char *param)
{
    *err = (struct fakellm_error){
        .status = 400,
        .code = "invalid_request",
        .message = message,
        .param = param,
    };
    return -1;
}

static int parse(json_object *body, struct fakellm_gen *g, struct fakellm_error *err)
{
    json_object *model, *messages, *opts;
    uint64_t chars = 0;

    if (body == NULL || !json_object_is_type(body, json_type_object))
        return invalid(err, "The request body must be a JSON object.", NULL);
    if (!json_object_object_get_ex(body, "model", &model) ||
        !json_object_is_type(model, json_type_string))
        return invalid(err, "'model' is required and must be a string.", "model");
    if (!json_object_object_get_ex(body, "messages", &messages) ||
        !json_object_is_type(messages, json_type_array))
        return invalid(err, "'messages' is required and must be an array.", "messages");
    for (size_t i = 0; i < json_object_array_length(messages); i++)
        chars += content_chars(json_object_array_get_idx(messages, i));

    g->model_len = (size_t)json_object_get_string_len(model);
    g->model = ibex_xstrndup(json_object_get_string(model), g->model_len);
    g->stream = is_true(body, "stream");
    g->include_usage = g->stream && json_object_object_get_ex(body, "stream_options", &opts) &&
                       json_object_is_type(opts, json_type_object) &&
                       is_true(opts, "include_usage");
    g->prompt_tokens = chars / 4 > 0 ? chars / 4 : 1;
    return 0;
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

static void response(struct ibex_buf *b, const struct fakellm_gen *g)
{
    uint64_t total = 0;

    for (uint64_t i = 0; i < g->chunks; i++)
        total += fakellm_chunk_len(i, g->chunk_bytes);
    ibex_buf_reserve(b, (size_t)total + 512 + g->model_len * 6);
    ibex_buf_append_cstr(b, "{");
    common_fields(b, g, "chat.completion");
    ibex_buf_append_cstr(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                            "\"content\":\"");
    for (uint64_t i = 0; i < g->chunks; i++)
        fakellm_chunk_text(b, i, g->chunk_bytes);
    ibex_buf_append_cstr(b, "\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
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

static void stream_chunk(struct ibex_buf *b, const struct fakellm_gen *g, uint64_t i)
{
    chunk_open(b, g);
    if (i == 0)
        ibex_buf_append_cstr(b, "{\"role\":\"assistant\",\"content\":\"");
    else
        ibex_buf_append_cstr(b, "{\"content\":\"");
    fakellm_chunk_text(b, i, g->chunk_bytes);
    ibex_buf_append_cstr(b, "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
}

static void stream_tail(struct ibex_buf *b, const struct fakellm_gen *g)
{
    if (g->chunks == 0) {
        /* No content chunk carried the role: announce it with empty content, as OpenAI does. */
        chunk_open(b, g);
        ibex_buf_append_cstr(b, "{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                                "\"finish_reason\":null}]}\n\n");
    }
    chunk_open(b, g);
    ibex_buf_append_cstr(b, "{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
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
    .authenticate = authenticate,
    .parse = parse,
    .error_body = error_body,
    .response = response,
    .stream_head = NULL,
    .stream_chunk = stream_chunk,
    .stream_tail = stream_tail,
};
