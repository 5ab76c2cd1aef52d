/* Google Gemini wire format for fakellm: POST /v1beta/models/{model}:generateContent and
 * :streamGenerateContent?alt=sse. API key from x-goog-api-key or ?key=, request validation,
 * {"error":{"code","message","status"}} bodies, the GenerateContentResponse and its SSE stream
 * (one response per chunk, then a last one with finishReason STOP and usageMetadata), as text or
 * as one functionCall part.
 *
 * Invariants: as in openai.c, renderers only append to their buffer. The model comes from the
 * path, not the body. Field names are read in both spellings proto JSON accepts (lowerCamel and
 * snake_case). streamGenerateContent without alt=sse (a JSON array, in the real API) is a 400:
 * fakellm streams SSE only. */
#include <string.h>

#include "../../src/core/alloc.h"
#include "fakellm.h"

#define PATH_PREFIX "/v1beta/models/"

/* The {model} and method of the path, or false when the path has another shape. */
static bool split_path(struct ibex_str path, struct ibex_str *model, bool *stream)
{
    static const char gen[] = "generateContent", sgen[] = "streamGenerateContent";
    const size_t pre = sizeof(PATH_PREFIX) - 1;
    size_t colon;
    struct ibex_str method;

    if (!ibex_str_has_prefix(path, PATH_PREFIX))
        return false;
    colon = path.len;
    while (colon > pre && path.p[colon - 1] != ':')
        colon--;
    if (colon <= pre + 1) /* no ':' or an empty model */
        return false;
    *model = (struct ibex_str){path.p + pre, colon - 1 - pre};
    if (memchr(model->p, '/', model->len) != NULL)
        return false;
    method = (struct ibex_str){path.p + colon, path.len - colon};
    *stream = ibex_str_eq_cstr(method, sgen);
    return *stream || ibex_str_eq_cstr(method, gen);
}

bool fakellm_gemini_route(const struct ibex_req *req)
{
    struct ibex_str model;
    bool stream;

    return ibex_str_eq_cstr(req->method, "POST") && split_path(req->path, &model, &stream);
}

/* The raw (not percent-decoded) value of query parameter name; IBEX_STR_NULL when absent. */
static struct ibex_str query_param(struct ibex_str query, const char *name)
{
    size_t n = strlen(name);
    size_t i = 0;

    while (i < query.len) {
        size_t end = i;
        while (end < query.len && query.p[end] != '&')
            end++;
        if (end - i > n && memcmp(query.p + i, name, n) == 0 && query.p[i + n] == '=')
            return (struct ibex_str){query.p + i + n + 1, end - i - n - 1};
        if (end - i == n && memcmp(query.p + i, name, n) == 0)
            return (struct ibex_str){query.p + i, 0};
        i = end + 1;
    }
    return IBEX_STR_NULL;
}

static int authenticate(const struct ibex_req *req, struct fakellm_error *err)
{
    struct ibex_str key = ibex_req_header(req, "x-goog-api-key");

    if (key.p == NULL)
        key = query_param(req->query, "key");
    if (key.p == NULL) {
        /* What the real API answers a call without any credential. */
        *err = (struct fakellm_error){
            .status = 403,
            .code = "permission_denied",
            .message = "Method doesn't allow unregistered callers (callers without established "
                       "identity). Please use API Key or other form of API consumer identity to "
                       "call this API.",
        };
        return -1;
    }
    if (ibex_str_trim(key).len == 0) {
        *err = (struct fakellm_error){
            .status = 400,
            .code = "api_key_invalid",
            .message = "API key not valid. Please pass a valid API key.",
        };
        return -1;
    }
    return 0;
}

/* key equals camel, or its snake_case spelling ("maxOutputTokens" ~ "max_output_tokens"). */
static bool proto_name_eq(const char *key, const char *camel)
{
    for (; *camel != '\0'; camel++, key++) {
        if (*camel >= 'A' && *camel <= 'Z') {
            if (*key == *camel)
                continue;
            if (key[0] != '_' || key[1] != *camel + ('a' - 'A'))
                return false;
            key++;
        } else if (*key != *camel) {
            return false;
        }
    }
    return *key == '\0';
}

/* The non-null value of field camel (in either spelling) of object o, else NULL. */
static json_object *field(json_object *o, const char *camel)
{
    json_object *found = NULL;

    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, name, val)
        {
            if (val != NULL && proto_name_eq(name, camel))
                found = val;
        }
    }
    return found;
}

/* v when it has type t, else NULL. */
static json_object *typed(json_object *v, enum json_type t)
{
    return json_object_is_type(v, t) ? v : NULL;
}

/* True when field camel of o is absent or has type t. */
static bool opt(json_object *o, const char *camel, enum json_type t)
{
    json_object *v = field(o, camel);

    return v == NULL || json_object_is_type(v, t);
}

/* A Content: {"role"?: "user"|"model", "parts": [non-empty array of objects]}. NULL when valid,
 * else the error message. Adds the characters of its text parts. */
static const char *check_content(json_object *content, bool any_role, uint64_t *chars)
{
    json_object *role, *parts;

    if (!json_object_is_type(content, json_type_object))
        return "* GenerateContentRequest.contents: each content must be an object";
    role = field(content, "role");
    if (role != NULL && !any_role &&
        (typed(role, json_type_string) == NULL ||
         (strcmp(json_object_get_string(role), "user") != 0 &&
          strcmp(json_object_get_string(role), "model") != 0)))
        return "Please use a valid role: user, model.";
    parts = typed(field(content, "parts"), json_type_array);
    if (parts == NULL || json_object_array_length(parts) == 0)
        return "* GenerateContentRequest.contents.parts: contents.parts must not be empty.";
    for (size_t i = 0; i < json_object_array_length(parts); i++)
        if (!json_object_is_type(json_object_array_get_idx(parts, i), json_type_object))
            return "* GenerateContentRequest.contents.parts: each part must be an object";
    *chars += fakellm_body_text_chars(parts);
    return NULL;
}

/* generationConfig: the fields a gateway maps from OpenAI's, with their types. */
static const char *check_config(json_object *body)
{
    json_object *cfg = field(body, "generationConfig");
    json_object *v;

    if (cfg == NULL)
        return NULL;
    if (!json_object_is_type(cfg, json_type_object))
        return "generationConfig must be an object";
    v = field(cfg, "maxOutputTokens");
    if (v != NULL && (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1))
        return "generationConfig.maxOutputTokens must be a positive integer";
    v = field(cfg, "temperature");
    if (v != NULL && !fakellm_body_number_in(v, 0.0, 2.0))
        return "generationConfig.temperature must be a number between 0 and 2";
    v = field(cfg, "stopSequences");
    if (v != NULL && !fakellm_body_strings(v))
        return "generationConfig.stopSequences must be an array of strings";
    if (!opt(cfg, "responseMimeType", json_type_string))
        return "generationConfig.responseMimeType must be a string";
    if (!opt(cfg, "responseSchema", json_type_object))
        return "generationConfig.responseSchema must be an object";
    return NULL;
}

/* tools: [{"functionDeclarations":[{"name":...}]}], toolConfig: an object. */
static const char *check_tools(json_object *body)
{
    json_object *tools = field(body, "tools");

    if (tools != NULL && !json_object_is_type(tools, json_type_array))
        return "tools must be an array of Tool objects";
    for (size_t i = 0; tools != NULL && i < json_object_array_length(tools); i++) {
        json_object *tool = json_object_array_get_idx(tools, i);
        json_object *decls;
        if (!json_object_is_type(tool, json_type_object))
            return "tools must be an array of Tool objects";
        if (!opt(tool, "functionDeclarations", json_type_array))
            return "tools[].functionDeclarations must be an array";
        decls = field(tool, "functionDeclarations");
        for (size_t k = 0; decls != NULL && k < json_object_array_length(decls); k++)
            if (typed(field(json_object_array_get_idx(decls, k), "name"), json_type_string) == NULL)
                return "tools[].functionDeclarations[].name is required";
    }
    if (!opt(body, "toolConfig", json_type_object))
        return "toolConfig must be an object";
    return NULL;
}

static int parse(const struct ibex_req *req, json_object *body, struct fakellm_gen *g,
                 struct fakellm_error *err)
{
    struct ibex_str model, alt;
    json_object *contents, *system;
    uint64_t chars = 0;
    const char *why = NULL;

    if (!split_path(req->path, &model, &g->stream))
        return fakellm_body_invalid(err, "Unknown Gemini method.", NULL);
    alt = query_param(req->query, "alt");
    g->json_array = g->stream && (alt.p == NULL || !ibex_str_eq_cstr(alt, "sse"));
    if (!json_object_is_type(body, json_type_object))
        return fakellm_body_invalid(err, "Invalid JSON payload received.", NULL);
    contents = typed(field(body, "contents"), json_type_array);
    if (contents == NULL || json_object_array_length(contents) == 0)
        return fakellm_body_invalid(
            err, "* GenerateContentRequest.contents: contents is not specified", NULL);
    for (size_t i = 0; i < json_object_array_length(contents) && why == NULL; i++)
        why = check_content(json_object_array_get_idx(contents, i), false, &chars);
    system = field(body, "systemInstruction");
    if (why == NULL && system != NULL)
        why = check_content(system, true, &chars);
    if (why == NULL)
        why = check_config(body);
    if (why == NULL)
        why = check_tools(body);
    if (why != NULL)
        return fakellm_body_invalid(err, why, NULL);

    g->model_len = model.len;
    g->model = ibex_xstrndup(model.p, model.len);
    g->prompt_tokens = fakellm_body_tokens(chars);
    return 0;
}

static bool declares_tool(json_object *body, const char *name)
{
    json_object *tools = typed(field(body, "tools"), json_type_array);

    for (size_t i = 0; tools != NULL && i < json_object_array_length(tools); i++) {
        json_object *decls = typed(
            field(json_object_array_get_idx(tools, i), "functionDeclarations"), json_type_array);
        for (size_t k = 0; decls != NULL && k < json_object_array_length(decls); k++) {
            json_object *n =
                typed(field(json_object_array_get_idx(decls, k), "name"), json_type_string);
            if (n != NULL && strcmp(json_object_get_string(n), name) == 0)
                return true;
        }
    }
    return false;
}

/* google.rpc.Code names by HTTP status, as the Gemini API reports them. */
static const char *error_status(int status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
    }
}

static void error_body(struct ibex_buf *b, const struct fakellm_error *err)
{
    ibex_buf_appendf(b, "{\"error\":{\"code\":%d,\"message\":", err->status);
    fakellm_error_message(b, err);
    ibex_buf_appendf(b, ",\"status\":\"%s\"", error_status(err->status));
    if (err->status == 429 && err->retry_after > 0)
        ibex_buf_appendf(b,
                         ",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\","
                         "\"retryDelay\":\"%llus\"}]",
                         (unsigned long long)err->retry_after);
    ibex_buf_append_cstr(b, "}}");
}

/* {"candidates":[{"content":{"parts":[ (the parts follow) */
static void candidates_open(struct ibex_buf *b)
{
    ibex_buf_append_cstr(b, "{\"candidates\":[{\"content\":{\"parts\":[");
}

/* ]},"role":"model"}<finish>,"index":0}]<usage>,"modelVersion":..,"responseId":..} */
static void candidates_close(struct ibex_buf *b, const struct fakellm_gen *g, bool last)
{
    ibex_buf_append_cstr(b, "],\"role\":\"model\"}");
    if (last)
        ibex_buf_append_cstr(b, ",\"finishReason\":\"STOP\"");
    ibex_buf_append_cstr(b, ",\"index\":0}]");
    if (last)
        ibex_buf_appendf(b,
                         ",\"usageMetadata\":{\"promptTokenCount\":%llu,"
                         "\"candidatesTokenCount\":%llu,\"totalTokenCount\":%llu}",
                         (unsigned long long)g->prompt_tokens, (unsigned long long)g->chunks,
                         (unsigned long long)(g->prompt_tokens + g->chunks));
    ibex_buf_append_cstr(b, ",\"modelVersion\":");
    ibex_buf_append_json_str(b, g->model, g->model_len);
    ibex_buf_appendf(b, ",\"responseId\":\"fakellm-%llu\"}", (unsigned long long)g->seq);
}

static void function_call(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_append_cstr(b, "{\"functionCall\":{\"name\":");
    ibex_buf_append_json_str(b, g->tool, strlen(g->tool));
    ibex_buf_append_cstr(b, ",\"args\":" FAKELLM_TOOL_ARGS "}}");
}

static void response(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_reserve(b, 512 + g->model_len * 12);
    candidates_open(b);
    if (g->tool[0] != '\0') {
        function_call(b, g);
    } else {
        ibex_buf_append_cstr(b, "{\"text\":\"");
        fakellm_gen_text(b, g);
        ibex_buf_append_cstr(b, "\"}");
    }
    candidates_close(b, g, true);
}

/* Before a streamed response: with alt=sse a data line (Gemini separates its SSE events with
 * CRLF pairs); without it, the next element of one JSON array. */
static void stream_event_open(struct ibex_buf *b, const struct fakellm_gen *g, bool first)
{
    if (!g->json_array)
        ibex_buf_append_cstr(b, "data: ");
    else
        ibex_buf_append_cstr(b, first ? "[" : ",\r\n");
    candidates_open(b);
}

static void stream_event_close(struct ibex_buf *b, const struct fakellm_gen *g, bool last)
{
    candidates_close(b, g, last);
    ibex_buf_append_cstr(b, !g->json_array ? "\r\n\r\n" : last ? "]" : "");
}

static void stream_chunk(struct ibex_buf *b, const struct fakellm_gen *g, uint64_t i)
{
    stream_event_open(b, g, i == 0);
    if (g->tool[0] != '\0') {
        function_call(b, g); /* Gemini never splits a call: one event carries all of it */
    } else {
        ibex_buf_append_cstr(b, "{\"text\":\"");
        fakellm_chunk_text(b, i, g->chunk_bytes);
        ibex_buf_append_cstr(b, "\"}");
    }
    stream_event_close(b, g, false);
}

static void stream_tail(struct ibex_buf *b, const struct fakellm_gen *g)
{
    stream_event_open(b, g, g->chunks == 0);
    ibex_buf_append_cstr(b, "{\"text\":\"\"}");
    stream_event_close(b, g, true);
}

const struct fakellm_format fakellm_gemini = {
    .name = "gemini",
    .retry_statuses = {429, 503},
    .tool_pieces = 1,
    .authenticate = authenticate,
    .parse = parse,
    .declares_tool = declares_tool,
    .error_body = error_body,
    .response = response,
    .stream_head = NULL,
    .stream_chunk = stream_chunk,
    .stream_tail = stream_tail,
};
