/* Anthropic Messages wire format for fakellm (POST /v1/messages): credential (x-api-key or a
 * bearer token) and anthropic-version checks, request validation, {"type":"error",...} bodies, the
 * Message object and its SSE stream (message_start, content_block_start, ping, content_block_delta
 * per chunk, content_block_stop, message_delta, message_stop), as text or as one tool_use block.
 *
 * Invariants: as in openai.c, renderers only append to their buffer. The answer is always one
 * content block at index 0; a tool call streams FAKELLM_TOOL_ARGS as input_json_delta pieces.
 * max_tokens is validated but does not bound the answer: x-fakellm-chunks does. */
#include <string.h>

#include "../../src/core/alloc.h"
#include "fakellm.h"

/* The key comes in x-api-key, or as a bearer token: @anthropic-ai/sdk 1.x (API version
 * 2026-10-21) sends "Authorization: Bearer <key>". */
static int authenticate(const struct ibex_req *req, struct fakellm_error *err)
{
    struct ibex_str key = ibex_req_header(req, "x-api-key");

    if (key.p == NULL && !fakellm_body_bearer(req)) {
        *err = (struct fakellm_error){
            .status = 401,
            .code = "invalid_api_key",
            .message = "x-api-key header is required",
        };
        return -1;
    }
    if (key.p != NULL && ibex_str_trim(key).len == 0) {
        *err = (struct fakellm_error){
            .status = 401,
            .code = "invalid_api_key",
            .message = "invalid x-api-key",
        };
        return -1;
    }
    if (ibex_str_trim(ibex_req_header(req, "anthropic-version")).len == 0)
        return fakellm_body_invalid(err, "anthropic-version: header is required", NULL);
    return 0;
}

/* Characters of one message's content: the text of text blocks, and of tool_result blocks
 * (whose content is a string or text blocks), which is what an OpenAI tool message carries. */
static uint64_t content_chars(json_object *content)
{
    uint64_t n;

    if (!json_object_is_type(content, json_type_array))
        return fakellm_body_text_chars(content);
    n = fakellm_body_text_chars(content);
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *block = json_object_array_get_idx(content, i);
        json_object *type = fakellm_body_get(block, "type", json_type_string);
        json_object *inner = NULL;
        if (type != NULL && strcmp(json_object_get_string(type), "tool_result") == 0 &&
            json_object_object_get_ex(block, "content", &inner))
            n += fakellm_body_text_chars(inner);
    }
    return n;
}

static bool is_one_of(json_object *s, const char *const *names)
{
    if (!json_object_is_type(s, json_type_string))
        return false;
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(json_object_get_string(s), names[i]) == 0)
            return true;
    return false;
}

/* A content block: an object with a string type; the fields of the kinds a gateway sends. */
static const char *check_block(json_object *block)
{
    json_object *type = fakellm_body_get(block, "type", json_type_string);
    const char *t;

    if (type == NULL)
        return "messages: each content block must be an object with a string 'type'";
    t = json_object_get_string(type);
    if (strcmp(t, "text") == 0 && fakellm_body_get(block, "text", json_type_string) == NULL)
        return "messages: a text block needs a string 'text'";
    if (strcmp(t, "tool_use") == 0 && (fakellm_body_get(block, "id", json_type_string) == NULL ||
                                       fakellm_body_get(block, "name", json_type_string) == NULL ||
                                       fakellm_body_get(block, "input", json_type_object) == NULL))
        return "messages: a tool_use block needs a string 'id', a string 'name' and an object "
               "'input'";
    if (strcmp(t, "tool_result") == 0 &&
        fakellm_body_get(block, "tool_use_id", json_type_string) == NULL)
        return "messages: a tool_result block needs a string 'tool_use_id'";
    return NULL;
}

/* The messages array; NULL when valid, else the error message. Adds the prompt characters. */
static const char *check_messages(json_object *messages, uint64_t *chars)
{
    static const char *const roles[] = {"user", "assistant", "system", NULL};

    for (size_t i = 0; i < json_object_array_length(messages); i++) {
        json_object *msg = json_object_array_get_idx(messages, i);
        json_object *content = NULL;
        if (!json_object_is_type(msg, json_type_object) ||
            !is_one_of(fakellm_body_get(msg, "role", json_type_string), roles))
            return "messages: each message needs a role of user, assistant or system";
        json_object_object_get_ex(msg, "content", &content);
        if (json_object_is_type(content, json_type_array)) {
            for (size_t k = 0; k < json_object_array_length(content); k++) {
                const char *why = check_block(json_object_array_get_idx(content, k));
                if (why != NULL)
                    return why;
            }
        } else if (!json_object_is_type(content, json_type_string)) {
            return "messages: content must be a string or an array of content blocks";
        }
        *chars += content_chars(content);
    }
    return NULL;
}

/* system: a string, or an array of text blocks. */
static bool system_ok(json_object *body)
{
    json_object *system;

    if (!json_object_object_get_ex(body, "system", &system) || system == NULL ||
        json_object_is_type(system, json_type_string))
        return true;
    if (!json_object_is_type(system, json_type_array))
        return false;
    for (size_t i = 0; i < json_object_array_length(system); i++) {
        json_object *block = json_object_array_get_idx(system, i);
        json_object *type = fakellm_body_get(block, "type", json_type_string);
        if (type == NULL || strcmp(json_object_get_string(type), "text") != 0 ||
            fakellm_body_get(block, "text", json_type_string) == NULL)
            return false;
    }
    return true;
}

/* tools: custom tools need a name and an input_schema; typed (server) tools a name. */
static bool tools_ok(json_object *tools)
{
    for (size_t i = 0; tools != NULL && i < json_object_array_length(tools); i++) {
        json_object *tool = json_object_array_get_idx(tools, i);
        json_object *type = fakellm_body_get(tool, "type", json_type_string);
        bool custom = type == NULL || strcmp(json_object_get_string(type), "custom") == 0;
        if (fakellm_body_get(tool, "name", json_type_string) == NULL ||
            (custom && fakellm_body_get(tool, "input_schema", json_type_object) == NULL))
            return false;
    }
    return true;
}

/* tool_choice: {"type":"auto"|"any"|"none"} or {"type":"tool","name":...}. */
static bool tool_choice_ok(json_object *body)
{
    static const char *const kinds[] = {"auto", "any", "none", "tool", NULL};
    json_object *choice, *type;

    if (!json_object_object_get_ex(body, "tool_choice", &choice) || choice == NULL)
        return true;
    type = fakellm_body_get(choice, "type", json_type_string);
    if (!is_one_of(type, kinds))
        return false;
    return strcmp(json_object_get_string(type), "tool") != 0 ||
           fakellm_body_get(choice, "name", json_type_string) != NULL;
}

static int parse(const struct ibex_req *req, json_object *body, struct fakellm_gen *g,
                 struct fakellm_error *err)
{
    json_object *model, *max_tokens, *messages, *temperature = NULL;
    uint64_t chars = 0;
    const char *why;

    if (!json_object_is_type(body, json_type_object))
        return fakellm_body_invalid(err, "The request body must be a JSON object.", NULL);
    model = fakellm_body_get(body, "model", json_type_string);
    if (model == NULL)
        return fakellm_body_invalid(err, "model: Field required (a string)", "model");
    max_tokens = fakellm_body_get(body, "max_tokens", json_type_int);
    if (max_tokens == NULL || json_object_get_int64(max_tokens) < 0)
        return fakellm_body_invalid(err, "max_tokens: Field required (a non-negative integer)",
                                    "max_tokens");
    messages = fakellm_body_get(body, "messages", json_type_array);
    if (messages == NULL)
        return fakellm_body_invalid(err, "messages: Field required (an array)", "messages");
    why = check_messages(messages, &chars);
    if (why != NULL)
        return fakellm_body_invalid(err, why, "messages");
    if (!system_ok(body))
        return fakellm_body_invalid(err, "system: must be a string or an array of text blocks",
                                    "system");
    if (!fakellm_body_opt(body, "stream", json_type_boolean))
        return fakellm_body_invalid(err, "stream: must be a boolean", "stream");
    if (!fakellm_body_opt(body, "tools", json_type_array) ||
        !tools_ok(fakellm_body_get(body, "tools", json_type_array)))
        return fakellm_body_invalid(err,
                                    "tools: must be an array of tools, each with a string 'name' "
                                    "(and an object 'input_schema' for custom tools)",
                                    "tools");
    if (!tool_choice_ok(body))
        return fakellm_body_invalid(err,
                                    "tool_choice: must be an object with type auto, any, none or "
                                    "tool (with a string 'name')",
                                    "tool_choice");
    if (!fakellm_body_opt(body, "stop_sequences", json_type_array) ||
        (fakellm_body_get(body, "stop_sequences", json_type_array) != NULL &&
         !fakellm_body_strings(fakellm_body_get(body, "stop_sequences", json_type_array))))
        return fakellm_body_invalid(err, "stop_sequences: must be an array of strings",
                                    "stop_sequences");
    json_object_object_get_ex(body, "temperature", &temperature);
    if (temperature != NULL && !fakellm_body_number_in(temperature, 0.0, 1.0))
        return fakellm_body_invalid(err, "temperature: must be a number between 0 and 1",
                                    "temperature");

    chars += fakellm_body_text_chars(fakellm_body_get(body, "system", json_type_string));
    chars += fakellm_body_text_chars(fakellm_body_get(body, "system", json_type_array));
    g->model_len = (size_t)json_object_get_string_len(model);
    g->model = ibex_xstrndup(json_object_get_string(model), g->model_len);
    g->stream = fakellm_body_true(body, "stream");
    g->prompt_tokens = fakellm_body_tokens(chars);
    return 0;
}

/* tools: [{"name":...,"input_schema":{...}}] */
static bool declares_tool(json_object *body, const char *name)
{
    return fakellm_body_named(fakellm_body_get(body, "tools", json_type_array), NULL, name);
}

/* Anthropic's error types by status (docs: "HTTP errors"); other 4xx are invalid requests. */
static const char *error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 409:
        return "conflict_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 504:
        return "timeout_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void error_body(struct ibex_buf *b, const struct fakellm_error *err)
{
    ibex_buf_appendf(
        b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":", error_type(err->status));
    fakellm_error_message(b, err);
    ibex_buf_append_cstr(b, "},\"request_id\":null}");
}

static bool is_tool(const struct fakellm_gen *g)
{
    return g->tool[0] != '\0';
}

/* The answer's one content block as it starts: empty text, or the tool_use with empty input
 * (streaming) or its whole input (non-streaming). */
static void block(struct ibex_buf *b, const struct fakellm_gen *g, const char *input)
{
    if (!is_tool(g)) {
        ibex_buf_append_cstr(b, "{\"type\":\"text\",\"text\":\"");
        return;
    }
    ibex_buf_appendf(b, "{\"type\":\"tool_use\",\"id\":\"toolu_fake_%llu\",\"name\":",
                     (unsigned long long)g->seq);
    ibex_buf_append_json_str(b, g->tool, strlen(g->tool));
    ibex_buf_appendf(b, ",\"input\":%s}", input);
}

/* "id":..,"type":"message","role":"assistant","model":.. */
static void message_fields(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_appendf(b,
                     "\"id\":\"msg_fake_%llu\",\"type\":\"message\",\"role\":\"assistant\","
                     "\"model\":",
                     (unsigned long long)g->seq);
    ibex_buf_append_json_str(b, g->model, g->model_len);
}

static const char *stop_reason(const struct fakellm_gen *g)
{
    return is_tool(g) ? "tool_use" : "end_turn";
}

static void response(struct ibex_buf *b, const struct fakellm_gen *g)
{
    ibex_buf_reserve(b, 512 + g->model_len * 6);
    ibex_buf_append_cstr(b, "{");
    message_fields(b, g);
    ibex_buf_append_cstr(b, ",\"content\":[");
    block(b, g, FAKELLM_TOOL_ARGS);
    if (!is_tool(g)) {
        fakellm_gen_text(b, g);
        ibex_buf_append_cstr(b, "\"}");
    }
    ibex_buf_appendf(b,
                     "],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"stop_details\":null,"
                     "\"usage\":{\"input_tokens\":%llu,\"output_tokens\":%llu}}",
                     stop_reason(g), (unsigned long long)g->prompt_tokens,
                     (unsigned long long)g->chunks);
}

/* event: <name>\ndata: (the JSON follows, then "\n\n") */
static void event(struct ibex_buf *b, const char *name)
{
    ibex_buf_appendf(b, "event: %s\ndata: ", name);
}

static void stream_head(struct ibex_buf *b, const struct fakellm_gen *g)
{
    event(b, "message_start");
    ibex_buf_append_cstr(b, "{\"type\":\"message_start\",\"message\":{");
    message_fields(b, g);
    ibex_buf_appendf(b,
                     ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                     "\"stop_details\":null,\"usage\":{\"input_tokens\":%llu,"
                     "\"output_tokens\":0}}}\n\n",
                     (unsigned long long)g->prompt_tokens);
    event(b, "content_block_start");
    ibex_buf_append_cstr(b, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":");
    block(b, g, "{}");
    ibex_buf_append_cstr(b, is_tool(g) ? "}\n\n" : "\"}}\n\n");
    event(b, "ping");
    ibex_buf_append_cstr(b, "{\"type\":\"ping\"}\n\n");
}

static void stream_chunk(struct ibex_buf *b, const struct fakellm_gen *g, uint64_t i)
{
    event(b, "content_block_delta");
    ibex_buf_append_cstr(b, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":");
    if (is_tool(g)) {
        struct ibex_str piece = fakellm_tool_piece(i, g->chunks);
        ibex_buf_append_cstr(b, "{\"type\":\"input_json_delta\",\"partial_json\":");
        ibex_buf_append_json_str(b, piece.p, piece.len);
    } else {
        ibex_buf_append_cstr(b, "{\"type\":\"text_delta\",\"text\":\"");
        fakellm_chunk_text(b, i, g->chunk_bytes);
        ibex_buf_append_cstr(b, "\"");
    }
    ibex_buf_append_cstr(b, "}}\n\n");
}

static void stream_tail(struct ibex_buf *b, const struct fakellm_gen *g)
{
    event(b, "content_block_stop");
    ibex_buf_append_cstr(b, "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
    event(b, "message_delta");
    ibex_buf_appendf(b,
                     "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                     "\"stop_sequence\":null,\"stop_details\":null},"
                     "\"usage\":{\"output_tokens\":%llu}}\n\n",
                     stop_reason(g), (unsigned long long)g->chunks);
    event(b, "message_stop");
    ibex_buf_append_cstr(b, "{\"type\":\"message_stop\"}\n\n");
}

const struct fakellm_format fakellm_anthropic = {
    .name = "anthropic",
    .retry_statuses = {429, 503, 529},
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
