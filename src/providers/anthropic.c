/* Anthropic's Messages API (POST {base_url}/v1/messages) behind OpenAI's chat completions:
 * the parsed OpenAI request becomes a Messages body, a Messages answer becomes a
 * chat.completion, and a Messages event stream becomes chat.completion.chunk events.
 *
 * Invariants:
 * - Nothing that changes the answer is dropped: a field with no Anthropic equivalent is a 400
 *   (VALIDATION_ERROR naming the field), and so is a field this file does not know.
 * - Output JSON is written with ibex_buf_append*, the OpenAI framing of answers and chunks with
 *   openai_out.h; client and provider values go through ibex_buf_append_json_str or json-c's
 *   serialiser, or are copied once plain_json_text has checked them (stream deltas; their
 *   escapes written again the one way ibex writes them), so every body and chunk is valid JSON.
 * - A refused request gets one error, recorded with ibex_chat_error_add like the validator's.
 * - A stream decoder holds its SSE line buffer (bounded by line_max), the chunk prefix (id and
 *   model, capped) and a fixed table of open content blocks: memory does not grow with the
 *   answer. Its output does not depend on how the provider's bytes are split. */
#include "anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../core/json.h"
#include "../core/sse.h"
#include "anthropic_format.h"
#include "openai_out.h"

/* Anthropic requires max_tokens; OpenAI makes it optional. This is what a request without
 * max_tokens or max_completion_tokens asks for (docs/providers.md). */
#define DEFAULT_MAX_TOKENS 4096
#define API_VERSION_HEADER "anthropic-version: 2023-06-01"
/* Caps of the provider's message id and model name repeated in every chunk. */
#define ID_MAX 128
#define MODEL_MAX 256
/* Content blocks open at once in a stream (Anthropic sends them one after the other). */
#define OPEN_BLOCKS_MAX 16

/* ---- shared helpers ---- */

/* The member, or NULL when absent or JSON null. */
static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static const char *get_str(json_object *o, const char *key, size_t *len)
{
    json_object *v = get(o, key);
    if (!json_object_is_type(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

static bool is_str(json_object *v, const char *s)
{
    return json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), s) == 0;
}

/* A non-negative integer member, or -1. */
static int64_t get_count(json_object *o, const char *key)
{
    json_object *v = get(o, key);
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
        return -1;
    return json_object_get_int64(v);
}

static int64_t get_tokens(json_object *o, const char *key)
{
    int64_t v = get_count(o, key);
    return v > IBEX_TOKENS_MAX ? IBEX_TOKENS_MAX : v;
}

/* v's text, cut to max bytes; dflt (cut the same) when v is not a string. */
static struct ibex_str text_or(json_object *v, struct ibex_str dflt, size_t max)
{
    struct ibex_str s = dflt;
    if (json_object_is_type(v, json_type_string))
        s = (struct ibex_str){json_object_get_string(v), (size_t)json_object_get_string_len(v)};
    if (s.len > max)
        s.len = max;
    return s;
}

static struct ibex_str chat_model(const struct ibex_chat_request *chat)
{
    return (struct ibex_str){chat->model, chat->model_len};
}

/* ---- request ---- */

enum role { ROLE_NONE = 0, ROLE_USER, ROLE_ASSISTANT };

/* The fields of one OpenAI message, read in one pass over its members. */
enum msg_role { MSG_OTHER = 0, MSG_SYSTEM, MSG_USER, MSG_ASSISTANT, MSG_TOOL };

struct msg {
    enum msg_role role;
    json_object *content, *tool_calls, *tool_call_id, *refusal, *audio, *function_call;
};

struct req {
    struct ibex_chat_error *e;
    struct ibex_buf *out;
    struct ibex_arena *arena;
    struct msg *msgs; /* the request's messages, read once (in arena) */
    size_t nmsgs_in;
    enum role role; /* of the message being written; ROLE_NONE before the first */
    size_t nmsgs;   /* messages written */
};

/* The request's one error, recorded the way the chat validator records its own. */
static int reject(struct req *r, const char *field, const char *msg)
{
    return ibex_chat_error_add(r->e, field, msg);
}

static int unsupported(struct req *r, const char *field)
{
    return reject(r, field,
                  "not supported by the anthropic provider (Anthropic has no equivalent)");
}

/* Starts a content block in a message of this role: consecutive messages of one role become
 * one Anthropic message, since Anthropic requires user and assistant turns to alternate. */
static void block_begin(struct req *r, enum role role)
{
    if (r->role == role) {
        ibex_buf_append_cstr(r->out, ",");
    } else {
        if (r->role != ROLE_NONE)
            ibex_buf_append_cstr(r->out, "]}");
        ibex_buf_append_cstr(r->out, r->nmsgs++ ? ",{\"role\":\"" : "{\"role\":\"");
        ibex_buf_append_cstr(r->out, role == ROLE_USER ? "user" : "assistant");
        ibex_buf_append_cstr(r->out, "\",\"content\":[");
        r->role = role;
    }
}

/* Anthropic rejects empty text blocks; an empty OpenAI text says nothing. */
static void text_block(struct req *r, enum role role, json_object *text)
{
    if (json_object_get_string_len(text) == 0)
        return;
    block_begin(r, role);
    ibex_buf_append_cstr(r->out, "{\"type\":\"text\",\"text\":");
    ibex_json_append_str(r->out, text);
    ibex_buf_append_cstr(r->out, "}");
}

/* "data:<media type>[;params];base64,<data>": the media type and the data, or -1. */
static int data_url(const char *url, size_t len, struct ibex_str *media, struct ibex_str *data)
{
    if (len < 5 || strncasecmp(url, "data:", 5) != 0)
        return -1;
    const char *comma = memchr(url, ',', len);
    if (comma == NULL)
        return -1;
    const char *head = url + 5;
    size_t hlen = (size_t)(comma - head);
    if (hlen < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return -1;
    const char *semi = memchr(head, ';', hlen);
    media->p = head;
    media->len = (size_t)(semi - head);
    data->p = comma + 1;
    data->len = len - (size_t)(comma + 1 - url);
    return media->len > 0 && data->len > 0 ? 0 : -1;
}

static void base64_source(struct ibex_buf *out, struct ibex_str media, struct ibex_str data)
{
    ibex_buf_append_cstr(out, "{\"type\":\"base64\",\"media_type\":");
    ibex_buf_append_json_str(out, media.p, media.len);
    ibex_buf_append_cstr(out, ",\"data\":");
    ibex_buf_append_json_str(out, data.p, data.len);
    ibex_buf_append_cstr(out, "}");
}

/* image_url part: a data: URL becomes a base64 source, an http(s) URL a url source. detail has
 * no Anthropic equivalent and is dropped (it trades resolution for tokens). */
static int image_block(struct req *r, json_object *part, const char *field)
{
    json_object *iu = get(part, "image_url");
    json_object *u = json_object_is_type(iu, json_type_string) ? iu : get(iu, "url");
    if (!json_object_is_type(u, json_type_string))
        return reject(r, field, "image_url.url must be a string");
    const char *url = json_object_get_string(u);
    size_t len = (size_t)json_object_get_string_len(u);
    struct ibex_str media, data;
    if (data_url(url, len, &media, &data) == 0) {
        block_begin(r, ROLE_USER);
        ibex_buf_append_cstr(r->out, "{\"type\":\"image\",\"source\":");
        base64_source(r->out, media, data);
        ibex_buf_append_cstr(r->out, "}");
        return 0;
    }
    if (strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0) {
        block_begin(r, ROLE_USER);
        ibex_buf_append_cstr(r->out, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
        ibex_json_append_str(r->out, u);
        ibex_buf_append_cstr(r->out, "}}");
        return 0;
    }
    return reject(r, field, "image_url.url must be an http(s) URL or a base64 data: URL");
}

/* file part: inline PDF data becomes a document block; uploaded file ids live at OpenAI. */
static int file_block(struct req *r, json_object *part, const char *field)
{
    json_object *file = get(part, "file");
    size_t len = 0;
    const char *fd = get_str(file, "file_data", &len);
    struct ibex_str media, data;
    if (fd == NULL || data_url(fd, len, &media, &data) != 0 ||
        !(media.len == 15 && strncasecmp(media.p, "application/pdf", 15) == 0))
        return reject(r, field,
                      "the anthropic provider takes file parts as PDF data: URLs in file_data");
    block_begin(r, ROLE_USER);
    ibex_buf_append_cstr(r->out, "{\"type\":\"document\",\"source\":");
    base64_source(r->out, media, data);
    ibex_buf_append_cstr(r->out, "}");
    return 0;
}

/* content of a user or assistant message: a string, or parts. */
static int content_blocks(struct req *r, enum role role, json_object *content, size_t i)
{
    char field[96];
    if (content == NULL)
        return 0;
    if (json_object_is_type(content, json_type_string)) {
        text_block(r, role, content);
        return 0;
    }
    if (!json_object_is_type(content, json_type_array)) {
        snprintf(field, sizeof(field), "messages[%zu].content", i);
        return reject(r, field, "must be a string, an array of content parts, or null");
    }
    size_t n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++) {
        json_object *part = json_object_array_get_idx(content, j);
        json_object *type = get(part, "type");
        snprintf(field, sizeof(field), "messages[%zu].content[%zu]", i, j);
        if (is_str(type, "text") || (role == ROLE_ASSISTANT && is_str(type, "refusal"))) {
            json_object *text = get(part, is_str(type, "text") ? "text" : "refusal");
            if (!json_object_is_type(text, json_type_string))
                return reject(r, field,
                              is_str(type, "text") ? "must have a string text"
                                                   : "must have a string refusal");
            text_block(r, role, text);
        } else if (role == ROLE_USER && is_str(type, "image_url")) {
            if (image_block(r, part, field) != 0)
                return -1;
        } else if (role == ROLE_USER && is_str(type, "file")) {
            if (file_block(r, part, field) != 0)
                return -1;
        } else {
            snprintf(field, sizeof(field), "messages[%zu].content[%zu].type", i, j);
            return reject(r, field, "this part type is not supported by the anthropic provider");
        }
    }
    return 0;
}

static int tool_use_blocks(struct req *r, json_object *calls, size_t i)
{
    char field[96];
    if (calls == NULL)
        return 0;
    if (!json_object_is_type(calls, json_type_array)) {
        snprintf(field, sizeof(field), "messages[%zu].tool_calls", i);
        return reject(r, field, "must be an array");
    }
    size_t n = json_object_array_length(calls);
    for (size_t j = 0; j < n; j++) {
        json_object *tc = json_object_array_get_idx(calls, j);
        json_object *fn = get(tc, "function"), *type = get(tc, "type");
        json_object *id = get(tc, "id"), *name = get(fn, "name"), *args = get(fn, "arguments");
        snprintf(field, sizeof(field), "messages[%zu].tool_calls[%zu]", i, j);
        if (type != NULL && !is_str(type, "function"))
            return reject(r, field,
                          "only function tool calls are supported by the anthropic "
                          "provider");
        if (!json_object_is_type(id, json_type_string) ||
            !json_object_is_type(name, json_type_string))
            return reject(r, field, "must have a string id and function.name");
        if (args != NULL && !json_object_is_type(args, json_type_string))
            return reject(r, field, "function.arguments must be a string");
        const char *text = args ? json_object_get_string(args) : "";
        size_t len = args ? (size_t)json_object_get_string_len(args) : 0;
        if (len > 0) {
            /* Anthropic takes the input as an object: the text must parse as one. It is
             * strict, UTF-8 checked JSON, so it goes out as it came. */
            json_object *obj = NULL;
            char msg[8];
            int rc = ibex_json_parse(text, len, &obj, msg, sizeof(msg));
            bool is_object = rc == 0 && json_object_is_type(obj, json_type_object);
            json_object_put(obj);
            if (!is_object) {
                snprintf(field, sizeof(field), "messages[%zu].tool_calls[%zu].function.arguments",
                         i, j);
                return reject(r, field,
                              "must be a JSON object (Anthropic takes tool input as "
                              "an object)");
            }
        }
        block_begin(r, ROLE_ASSISTANT);
        ibex_buf_append_cstr(r->out, "{\"type\":\"tool_use\",\"id\":");
        ibex_json_append_str(r->out, id);
        ibex_buf_append_cstr(r->out, ",\"name\":");
        ibex_json_append_str(r->out, name);
        ibex_buf_append_cstr(r->out, ",\"input\":");
        if (len > 0)
            ibex_buf_append(r->out, text, len);
        else
            ibex_buf_append_cstr(r->out, "{}"); /* a call without arguments */
        ibex_buf_append_cstr(r->out, "}");
    }
    return 0;
}

/* A tool message: a tool_result block of a user message. */
static int tool_result_block(struct req *r, const struct msg *m, size_t i)
{
    char field[96];
    json_object *id = m->tool_call_id, *content = m->content;
    if (!json_object_is_type(id, json_type_string)) {
        snprintf(field, sizeof(field), "messages[%zu].tool_call_id", i);
        return reject(r, field, "is required for tool messages");
    }
    block_begin(r, ROLE_USER);
    ibex_buf_append_cstr(r->out, "{\"type\":\"tool_result\",\"tool_use_id\":");
    ibex_json_append_str(r->out, id);
    if (json_object_is_type(content, json_type_string) && json_object_get_string_len(content)) {
        ibex_buf_append_cstr(r->out, ",\"content\":");
        ibex_json_append_str(r->out, content);
    } else if (json_object_is_type(content, json_type_array)) {
        size_t n = json_object_array_length(content), written = 0;
        for (size_t j = 0; j < n; j++) {
            json_object *part = json_object_array_get_idx(content, j);
            json_object *text = get(part, "text");
            if (!is_str(get(part, "type"), "text") ||
                !json_object_is_type(text, json_type_string)) {
                snprintf(field, sizeof(field), "messages[%zu].content[%zu]", i, j);
                return reject(r, field, "tool message parts must be text parts");
            }
            if (json_object_get_string_len(text) == 0)
                continue;
            ibex_buf_append_cstr(r->out, written++ ? "," : ",\"content\":[");
            ibex_buf_append_cstr(r->out, "{\"type\":\"text\",\"text\":");
            ibex_json_append_str(r->out, text);
            ibex_buf_append_cstr(r->out, "}");
        }
        if (written)
            ibex_buf_append_cstr(r->out, "]");
    }
    ibex_buf_append_cstr(r->out, "}");
    return 0;
}

static enum msg_role role_of(json_object *role)
{
    if (!json_object_is_type(role, json_type_string))
        return MSG_OTHER;
    const char *s = json_object_get_string(role);
    if (!strcmp(s, "user"))
        return MSG_USER;
    if (!strcmp(s, "assistant"))
        return MSG_ASSISTANT;
    if (!strcmp(s, "tool"))
        return MSG_TOOL;
    if (!strcmp(s, "system") || !strcmp(s, "developer"))
        return MSG_SYSTEM;
    return MSG_OTHER; /* function (chat_request.c admits no other role) */
}

/* One pass over the members: cheaper than a lookup per field. JSON null reads as absent. */
static void read_msg(json_object *m, struct msg *f)
{
    memset(f, 0, sizeof(*f));
    if (!json_object_is_type(m, json_type_object))
        return;
    json_object_object_foreach(m, k, v)
    {
        if (!strcmp(k, "role"))
            f->role = role_of(v);
        else if (!strcmp(k, "content"))
            f->content = v;
        else if (!strcmp(k, "tool_calls"))
            f->tool_calls = v;
        else if (!strcmp(k, "tool_call_id"))
            f->tool_call_id = v;
        else if (!strcmp(k, "refusal"))
            f->refusal = v;
        else if (!strcmp(k, "audio"))
            f->audio = v;
        else if (!strcmp(k, "function_call"))
            f->function_call = v;
    }
}

/* The text of system and developer messages, in order: a string when there is one piece, text
 * blocks otherwise. Pass 0 checks and counts the pieces, pass 1 writes the blocks. */
static int write_system(struct req *r)
{
    size_t n = r->nmsgs_in, pieces = 0;
    json_object *only = NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t written = 0;
        for (size_t i = 0; i < n; i++) {
            if (r->msgs[i].role != MSG_SYSTEM)
                continue;
            json_object *c = r->msgs[i].content;
            bool parts = json_object_is_type(c, json_type_array);
            size_t nparts = parts ? json_object_array_length(c) : c ? 1 : 0;
            for (size_t j = 0; j < nparts; j++) {
                json_object *text = c;
                if (parts) {
                    json_object *part = json_object_array_get_idx(c, j);
                    text = is_str(get(part, "type"), "text") ? get(part, "text") : NULL;
                }
                if (!json_object_is_type(text, json_type_string)) {
                    char field[96];
                    snprintf(field, sizeof(field),
                             parts ? "messages[%zu].content[%zu]" : "messages[%zu].content", i, j);
                    return reject(r, field, "system and developer messages take text only");
                }
                if (json_object_get_string_len(text) == 0)
                    continue;
                if (pass == 0) {
                    pieces++;
                    only = text;
                    continue;
                }
                ibex_buf_append_cstr(r->out, written++
                                                 ? ",{\"type\":\"text\",\"text\":"
                                                 : ",\"system\":[{\"type\":\"text\",\"text\":");
                ibex_json_append_str(r->out, text);
                ibex_buf_append_cstr(r->out, "}");
            }
        }
        if (pass == 0 && pieces == 0)
            return 0;
        if (pass == 0 && pieces == 1) {
            ibex_buf_append_cstr(r->out, ",\"system\":");
            ibex_json_append_str(r->out, only);
            return 0;
        }
    }
    ibex_buf_append_cstr(r->out, "]");
    return 0;
}

static int write_messages(struct req *r)
{
    ibex_buf_append_cstr(r->out, ",\"messages\":[");
    for (size_t i = 0; i < r->nmsgs_in; i++) {
        const struct msg *m = &r->msgs[i];
        char field[96];
        switch (m->role) {
        case MSG_SYSTEM:
            break;
        case MSG_USER:
            if (content_blocks(r, ROLE_USER, m->content, i) != 0)
                return -1;
            break;
        case MSG_ASSISTANT:
            if (m->audio != NULL) {
                snprintf(field, sizeof(field), "messages[%zu].audio", i);
                return unsupported(r, field);
            }
            if (m->function_call != NULL) {
                snprintf(field, sizeof(field), "messages[%zu].function_call", i);
                return reject(r, field,
                              "legacy function calls are not supported by the "
                              "anthropic provider: use tool_calls");
            }
            if (json_object_is_type(m->refusal, json_type_string))
                text_block(r, ROLE_ASSISTANT, m->refusal);
            if (content_blocks(r, ROLE_ASSISTANT, m->content, i) != 0 ||
                tool_use_blocks(r, m->tool_calls, i) != 0)
                return -1;
            break;
        case MSG_TOOL:
            if (tool_result_block(r, m, i) != 0)
                return -1;
            break;
        default: /* function: the legacy form of tool */
            snprintf(field, sizeof(field), "messages[%zu].role", i);
            return reject(r, field,
                          "function messages are not supported by the anthropic provider: use "
                          "tool messages");
        }
    }
    if (r->nmsgs == 0)
        return reject(r, "messages",
                      "the anthropic provider needs a user or assistant message with content");
    ibex_buf_append_cstr(r->out, "]}]");
    return 0;
}

static int write_tools(struct req *r, json_object *tools)
{
    if (!json_object_is_type(tools, json_type_array))
        return reject(r, "tools", "must be an array");
    size_t n = json_object_array_length(tools);
    ibex_buf_append_cstr(r->out, ",\"tools\":[");
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *fn = get(t, "function");
        json_object *name = get(fn, "name"), *desc = get(fn, "description");
        json_object *params = get(fn, "parameters"), *strict = get(fn, "strict");
        char field[96];
        snprintf(field, sizeof(field), "tools[%zu]", i);
        if (!is_str(get(t, "type"), "function"))
            return reject(r, field, "only function tools are supported by the anthropic provider");
        if (!json_object_is_type(name, json_type_string))
            return reject(r, field, "function.name must be a string");
        if (params != NULL && !json_object_is_type(params, json_type_object))
            return reject(r, field, "function.parameters must be an object");
        ibex_buf_append_cstr(r->out, i ? ",{\"name\":" : "{\"name\":");
        ibex_json_append_str(r->out, name);
        if (json_object_is_type(desc, json_type_string)) {
            ibex_buf_append_cstr(r->out, ",\"description\":");
            ibex_json_append_str(r->out, desc);
        }
        ibex_buf_append_cstr(r->out, ",\"input_schema\":");
        if (params)
            ibex_json_append(r->out, params);
        else /* a function without parameters; Anthropic requires a schema */
            ibex_buf_append_cstr(r->out, "{\"type\":\"object\",\"properties\":{}}");
        if (json_object_is_type(strict, json_type_boolean) && json_object_get_boolean(strict))
            ibex_buf_append_cstr(r->out, ",\"strict\":true");
        ibex_buf_append_cstr(r->out, "}");
    }
    ibex_buf_append_cstr(r->out, "]");
    return 0;
}

/* tool_choice and parallel_tool_calls:false become Anthropic's tool_choice. Without tools,
 * "none" and "auto" mean nothing and are dropped. */
static int write_tool_choice(struct req *r, json_object *choice, bool have_tools, bool serial)
{
    const char *type = "auto";
    json_object *name = NULL;
    if (choice == NULL) {
        if (!have_tools || !serial)
            return 0;
    } else if (is_str(choice, "none") || is_str(choice, "auto")) {
        if (!have_tools)
            return 0;
        type = json_object_get_string(choice);
    } else if (is_str(choice, "required")) {
        type = "any";
    } else if (json_object_is_type(choice, json_type_object) &&
               is_str(get(choice, "type"), "function") &&
               json_object_is_type(name = get(get(choice, "function"), "name"), json_type_string)) {
        type = "tool";
    } else {
        return reject(r, "tool_choice",
                      "must be none, auto, required or {\"type\":\"function\",\"function\":"
                      "{\"name\":...}} for the anthropic provider");
    }
    if (!have_tools)
        return reject(r, "tool_choice", "requires tools");
    ibex_buf_append_cstr(r->out, ",\"tool_choice\":{\"type\":\"");
    ibex_buf_append_cstr(r->out, type);
    ibex_buf_append_cstr(r->out, "\"");
    if (name) {
        ibex_buf_append_cstr(r->out, ",\"name\":");
        ibex_json_append_str(r->out, name);
    }
    if (serial && strcmp(type, "none") != 0)
        ibex_buf_append_cstr(r->out, ",\"disable_parallel_tool_use\":true");
    ibex_buf_append_cstr(r->out, "}");
    return 0;
}

static int write_stop(struct req *r, json_object *stop)
{
    if (json_object_is_type(stop, json_type_string)) {
        ibex_buf_append_cstr(r->out, ",\"stop_sequences\":[");
        ibex_json_append_str(r->out, stop);
        ibex_buf_append_cstr(r->out, "]");
        return 0;
    }
    if (!json_object_is_type(stop, json_type_array))
        return reject(r, "stop", "must be a string or an array of strings");
    size_t n = json_object_array_length(stop);
    for (size_t i = 0; i < n; i++)
        if (!json_object_is_type(json_object_array_get_idx(stop, i), json_type_string))
            return reject(r, "stop", "must be a string or an array of strings");
    if (n > 0) {
        ibex_buf_append_cstr(r->out, ",\"stop_sequences\":");
        ibex_json_append(r->out, stop);
    }
    return 0;
}

/* json_schema maps to Anthropic's structured outputs (output_config.format); Anthropic has no
 * schema-less JSON mode. */
static int write_response_format(struct req *r, json_object *rf)
{
    json_object *type = get(rf, "type");
    if (is_str(type, "text"))
        return 0;
    if (is_str(type, "json_schema")) {
        json_object *schema = get(get(rf, "json_schema"), "schema");
        if (!json_object_is_type(schema, json_type_object))
            return reject(r, "response_format", "json_schema.schema must be an object");
        ibex_buf_append_cstr(
            r->out, ",\"output_config\":{\"format\":{\"type\":\"json_schema\",\"schema\":");
        ibex_json_append(r->out, schema);
        ibex_buf_append_cstr(r->out, "}}");
        return 0;
    }
    return reject(r, "response_format",
                  "only text and json_schema are supported by the anthropic provider "
                  "(Anthropic has no schema-less JSON mode)");
}

static bool is_number(json_object *v)
{
    return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

static bool is_zero(json_object *v)
{
    return (json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 0) ||
           (json_object_is_type(v, json_type_double) && json_object_get_double(v) == 0.0);
}

/* What the translator does with each OpenAI field. */
enum field_use {
    F_USED = 1,   /* translated by the code below */
    F_DROP,       /* no effect on the answer: not sent */
    F_IF_NEUTRAL, /* accepted at the value that changes nothing (neutral), else 400 */
    F_REJECT,     /* changes the answer and Anthropic cannot: 400 */
};

static const struct {
    const char *name;
    enum field_use use;
    const char *neutral; /* F_IF_NEUTRAL: the value accepted, as the error names it */
} fields[] = {
    {"model", F_USED, NULL},
    {"messages", F_USED, NULL},
    {"stream", F_USED, NULL},
    {"max_tokens", F_USED, NULL},
    {"max_completion_tokens", F_USED, NULL},
    {"temperature", F_USED, NULL},
    {"top_p", F_USED, NULL},
    {"top_k", F_USED, NULL}, /* not OpenAI: sent by some clients and by /v1/messages */
    {"stop", F_USED, NULL},
    {"tools", F_USED, NULL},
    {"tool_choice", F_USED, NULL},
    {"parallel_tool_calls", F_USED, NULL},
    {"response_format", F_USED, NULL},
    {"user", F_USED, NULL},
    {"safety_identifier", F_USED, NULL},
    /* the stream translator reads include_usage from the parsed request */
    {"stream_options", F_DROP, NULL},
    /* OpenAI-side storage, tags, billing tier and cache routing */
    {"store", F_DROP, NULL},
    {"metadata", F_DROP, NULL},
    {"service_tier", F_DROP, NULL},
    {"prompt_cache_key", F_DROP, NULL},
    {"n", F_IF_NEUTRAL, "1"},
    {"presence_penalty", F_IF_NEUTRAL, "0"},
    {"frequency_penalty", F_IF_NEUTRAL, "0"},
    {"logprobs", F_IF_NEUTRAL, "false"},
    {"top_logprobs", F_IF_NEUTRAL, "0"},
    {"logit_bias", F_IF_NEUTRAL, "{}"},
    {"modalities", F_IF_NEUTRAL, "[\"text\"]"},
    {"seed", F_REJECT, NULL},
    {"audio", F_REJECT, NULL},
    {"prediction", F_REJECT, NULL},
    {"reasoning_effort", F_REJECT, NULL},
    {"verbosity", F_REJECT, NULL},
    {"web_search_options", F_REJECT, NULL},
    {"functions", F_REJECT, NULL},
    {"function_call", F_REJECT, NULL},
};

static bool neutral(const char *name, json_object *v)
{
    if (!strcmp(name, "n"))
        return json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 1;
    if (!strcmp(name, "logprobs"))
        return json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v);
    if (!strcmp(name, "logit_bias"))
        return json_object_is_type(v, json_type_object) && json_object_object_length(v) == 0;
    if (!strcmp(name, "modalities"))
        return json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1 &&
               is_str(json_object_array_get_idx(v, 0), "text");
    return is_zero(v); /* presence_penalty, frequency_penalty, top_logprobs */
}

static int check_fields(struct req *r, json_object *root)
{
    json_object_object_foreach(root, key, val)
    {
        if (val == NULL) /* null: as if absent */
            continue;
        size_t k = 0, nf = sizeof(fields) / sizeof(fields[0]);
        while (k < nf && (fields[k].name[0] != key[0] || strcmp(fields[k].name, key) != 0))
            k++;
        if (k < nf && (fields[k].use == F_USED || fields[k].use == F_DROP ||
                       (fields[k].use == F_IF_NEUTRAL && neutral(key, val))))
            continue;
        char field[96];
        snprintf(field, sizeof(field), "%s", key[0] ? key : "\"\""); /* name even "" */
        if (k == nf)
            return reject(r, field,
                          "unknown to the anthropic provider, which sends nothing it "
                          "cannot translate");
        if (fields[k].use == F_REJECT)
            return unsupported(r, field);
        char msg[128]; /* F_IF_NEUTRAL at a value that changes the answer */
        snprintf(msg, sizeof(msg),
                 "not supported by the anthropic provider (Anthropic has no equivalent): "
                 "omit it or send %s",
                 fields[k].neutral);
        return reject(r, field, msg);
    }
    return 0;
}

static int write_body(struct req *r, const struct ibex_chat_request *chat)
{
    json_object *root = chat->root;
    if (check_fields(r, root) != 0)
        return -1;
    struct ibex_buf *out = r->out;
    ibex_buf_append_cstr(out, "{\"model\":");
    ibex_buf_append_json_str(out, chat->model, chat->model_len);

    json_object *mt = get(root, "max_completion_tokens");
    const char *mt_field = "max_completion_tokens";
    if (mt == NULL) {
        mt = get(root, "max_tokens");
        mt_field = "max_tokens";
    }
    ibex_buf_append_cstr(out, ",\"max_tokens\":");
    if (mt == NULL) {
        ibex_buf_append_u64(out, DEFAULT_MAX_TOKENS);
    } else {
        if (!json_object_is_type(mt, json_type_int) || json_object_get_int64(mt) < 1)
            return reject(r, mt_field, "must be a positive integer");
        ibex_buf_append_u64(out, (uint64_t)json_object_get_int64(mt));
    }

    json_object *msgs = get(root, "messages");
    if (!json_object_is_type(msgs, json_type_array))
        return reject(r, "messages", "must be an array");
    r->nmsgs_in = json_object_array_length(msgs);
    r->msgs = ibex_arena_alloc(r->arena, r->nmsgs_in * sizeof(*r->msgs) + 1);
    for (size_t i = 0; i < r->nmsgs_in; i++)
        read_msg(json_object_array_get_idx(msgs, i), &r->msgs[i]);
    if (write_system(r) != 0 || write_messages(r) != 0)
        return -1;

    json_object *tools = get(root, "tools");
    bool have_tools =
        json_object_is_type(tools, json_type_array) && json_object_array_length(tools) > 0;
    if (tools && write_tools(r, tools) != 0)
        return -1;
    json_object *ptc = get(root, "parallel_tool_calls");
    if (ptc && !json_object_is_type(ptc, json_type_boolean))
        return reject(r, "parallel_tool_calls", "must be a boolean");
    bool serial = ptc && !json_object_get_boolean(ptc);
    if (write_tool_choice(r, get(root, "tool_choice"), have_tools, serial) != 0)
        return -1;

    json_object *v;
    if ((v = get(root, "temperature")) != NULL) {
        /* Anthropic's range is 0-1; OpenAI's 0-2 has no faithful rescaling */
        double t = json_object_get_double(v);
        if (!is_number(v) || t < 0 || t > 1)
            return reject(r, "temperature", "must be between 0 and 1 for the anthropic provider");
        ibex_buf_append_cstr(out, ",\"temperature\":");
        ibex_json_append(out, v);
    }
    if ((v = get(root, "top_p")) != NULL) {
        if (!is_number(v))
            return reject(r, "top_p", "must be a number");
        ibex_buf_append_cstr(out, ",\"top_p\":");
        ibex_json_append(out, v);
    }
    if ((v = get(root, "top_k")) != NULL) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1)
            return reject(r, "top_k", "must be a positive integer");
        ibex_buf_append_cstr(out, ",\"top_k\":");
        ibex_json_append(out, v);
    }
    if ((v = get(root, "stop")) != NULL && write_stop(r, v) != 0)
        return -1;
    json_object *user = get(root, "user");
    if (user == NULL)
        user = get(root, "safety_identifier");
    if (user) {
        if (!json_object_is_type(user, json_type_string))
            return reject(r, "user", "must be a string");
        ibex_buf_append_cstr(out, ",\"metadata\":{\"user_id\":");
        ibex_json_append_str(out, user);
        ibex_buf_append_cstr(out, "}");
    }
    if ((v = get(root, "response_format")) != NULL && write_response_format(r, v) != 0)
        return -1;
    if (chat->stream)
        ibex_buf_append_cstr(out, ",\"stream\":true");
    ibex_buf_append_cstr(out, "}");
    return 0;
}

static int build_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                         const char *body, size_t body_len, const char *const *extra_headers,
                         struct ibex_arena *arena, struct ibex_upstream_request *out,
                         struct ibex_chat_error *e)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_reserve(&b, body_len + 256); /* the translation is about the size of the original */
    struct req r = {.e = e, .out = &b, .arena = arena};
    if (write_body(&r, chat) != 0) {
        ibex_buf_dispose(&b);
        return -1;
    }
    struct ibex_str text;
    text.p = ibex_buf_steal(&b, &text.len);
    ibex_arena_on_free(arena, free, (char *)text.p);
    ibex_provider_fill_request(p, chat, p->chat_url, text, API_VERSION_HEADER, extra_headers, arena,
                               out);
    return 0;
}

/* ---- non-streaming answer ---- */

struct usage {
    int64_t input, cache_read, cache_creation, output; /* -1: not reported */
};

static void take_usage(struct usage *u, json_object *usage)
{
    int64_t v;
    if ((v = get_tokens(usage, "input_tokens")) >= 0)
        u->input = v;
    if ((v = get_tokens(usage, "cache_read_input_tokens")) >= 0)
        u->cache_read = v;
    if ((v = get_tokens(usage, "cache_creation_input_tokens")) >= 0)
        u->cache_creation = v;
    if ((v = get_tokens(usage, "output_tokens")) >= 0)
        u->output = v;
}

/* OpenAI counts cached prompt tokens in prompt_tokens; Anthropic reports them apart. */
static int64_t prompt_tokens(const struct usage *u)
{
    if (u->input < 0)
        return -1;
    return u->input + (u->cache_read > 0 ? u->cache_read : 0) +
           (u->cache_creation > 0 ? u->cache_creation : 0);
}

/* The usage object's counts: 0 for what Anthropic did not report; cached_tokens when it
 * reported cache reads, even 0. */
static struct ibex_openai_usage openai_usage(const struct usage *u)
{
    int64_t pt = prompt_tokens(u), ct = u->output;
    if (pt < 0)
        pt = 0;
    if (ct < 0)
        ct = 0;
    return (struct ibex_openai_usage){.prompt_tokens = pt,
                                      .completion_tokens = ct,
                                      .total_tokens = pt + ct,
                                      .cached_tokens = u->cache_read,
                                      .reasoning_tokens = -1};
}

/* The text of the answer's text blocks, joined, as a JSON string; null when there is none. */
static void append_content(struct ibex_buf *out, json_object *content)
{
    size_t n = json_object_array_length(content), ntext = 0;
    json_object *first = NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i);
        json_object *text = get(b, "text");
        if (is_str(get(b, "type"), "text") && json_object_is_type(text, json_type_string)) {
            ntext++;
            if (first == NULL)
                first = text;
        }
    }
    if (ntext == 0) {
        ibex_buf_append_cstr(out, "null");
        return;
    }
    if (ntext == 1) {
        ibex_json_append_str(out, first);
        return;
    }
    struct ibex_buf joined;
    ibex_buf_init(&joined);
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i);
        json_object *text = get(b, "text");
        if (is_str(get(b, "type"), "text") && json_object_is_type(text, json_type_string))
            ibex_buf_append(&joined, json_object_get_string(text),
                            (size_t)json_object_get_string_len(text));
    }
    ibex_buf_append_json_str(out, joined.p, joined.len);
    ibex_buf_dispose(&joined);
}

static void append_tool_calls(struct ibex_buf *out, json_object *content)
{
    size_t n = json_object_array_length(content), k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i);
        if (!is_str(get(b, "type"), "tool_use"))
            continue;
        json_object *id = get(b, "id"), *name = get(b, "name"), *input = get(b, "input");
        ibex_buf_append_cstr(out, k++ ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":");
        if (json_object_is_type(id, json_type_string))
            ibex_json_append_str(out, id);
        else
            ibex_buf_append_cstr(out, "\"\"");
        ibex_buf_append_cstr(out, ",\"type\":\"function\",\"function\":{\"name\":");
        if (json_object_is_type(name, json_type_string))
            ibex_json_append_str(out, name);
        else
            ibex_buf_append_cstr(out, "\"\"");
        ibex_buf_append_cstr(out, ",\"arguments\":");
        if (input == NULL) {
            ibex_buf_append_cstr(out, "\"{}\"");
        } else {
            size_t len;
            const char *s = json_object_to_json_string_length(
                input, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
            ibex_buf_append_json_str(out, s, len);
        }
        ibex_buf_append_cstr(out, "}}");
    }
    if (k)
        ibex_buf_append_cstr(out, "]");
}

static int translate_answer(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                            const char *body, size_t len, struct ibex_buf *out)
{
    json_object *root = NULL;
    char msg[8];
    if (ibex_json_parse(body, len, &root, msg, sizeof(msg)) != 0)
        return -1;
    json_object *content = get(root, "content");
    if (!is_str(get(root, "type"), "message") || !json_object_is_type(content, json_type_array)) {
        json_object_put(root);
        return -1;
    }
    ibex_openai_out_head(out, text_or(get(root, "id"), IBEX_STR_LIT("msg"), SIZE_MAX),
                         "chat.completion", (int64_t)time(NULL),
                         text_or(get(root, "model"), chat_model(chat), SIZE_MAX));
    ibex_openai_out_message_begin(out);
    append_content(out, content);
    append_tool_calls(out, content);
    ibex_openai_out_choice_end(out, NULL,
                               ibex_anthropic_finish_reason(get_str(root, "stop_reason", NULL)));
    struct usage u = {-1, -1, -1, -1};
    take_usage(&u, get(root, "usage"));
    if (u.input >= 0 || u.output >= 0) {
        struct ibex_openai_usage ou = openai_usage(&u);
        ibex_buf_append_cstr(out, ",");
        ibex_openai_out_usage(out, &ou);
    }
    ibex_buf_append_cstr(out, "}");
    json_object_put(root);
    return 0;
}

/* ---- streaming answer ---- */

enum block_kind { BLOCK_TEXT = 1, BLOCK_TOOL, BLOCK_OTHER };

struct open_block {
    int64_t index; /* Anthropic's content block index */
    enum block_kind kind;
    int64_t tool;   /* OpenAI tool call index (BLOCK_TOOL) */
    bool args_seen; /* a non-empty input_json_delta came */
};

struct anth_stream {
    struct ibex_provider_stream h; /* first: what the gateway reads */
    struct ibex_sse sse;
    struct ibex_buf prefix; /* of every chunk (openai_out.h), once message_start came */
    const struct ibex_chat_request *chat;
    struct ibex_buf *out; /* during a feed */
    int64_t created;
    struct usage usage;
    struct open_block open[OPEN_BLOCKS_MAX];
    size_t nopen;
    int64_t ntools; /* tool_use blocks so far */
    bool started, finished, stopped, failed;
    bool reference;       /* every event through json-c (anthropic.h) */
    uint64_t fast_events; /* events read in place (anthropic.h) */
};

static void stream_cleanup(void *data)
{
    struct anth_stream *s = data;
    ibex_sse_dispose(&s->sse);
    ibex_buf_dispose(&s->prefix);
}

static struct ibex_provider_stream *stream_open(const struct ibex_provider *p,
                                                const struct ibex_chat_request *chat,
                                                struct ibex_arena *arena)
{
    struct anth_stream *s = ibex_arena_calloc(arena, sizeof(*s));
    s->h.prompt_tokens = s->h.completion_tokens = -1;
    ibex_sse_init(&s->sse);
    ibex_buf_init(&s->prefix);
    s->chat = chat;
    s->created = (int64_t)time(NULL);
    s->usage = (struct usage){-1, -1, -1, -1};
    ibex_arena_on_free(arena, stream_cleanup, s);
    return &s->h;
}

#define LINE_TOO_LONG "the provider's stream has a line over the size limit"

static void fail(struct anth_stream *s, const char *why)
{
    if (!s->failed) {
        s->failed = true;
        s->h.error = why;
    }
}

static void publish_usage(struct anth_stream *s)
{
    s->h.prompt_tokens = prompt_tokens(&s->usage);
    s->h.completion_tokens = s->usage.output;
}

/* Text as a JSON string: raw text is escaped; escaped text (the inside of a string literal that
 * plain_json_text accepted) is copied when it holds no escape, else escaped again ibex's way,
 * so both write what json-c's path would. */
static void append_text(struct ibex_buf *out, const char *text, size_t len, bool escaped)
{
    if (!escaped) {
        ibex_buf_append_json_str(out, text, len);
        return;
    }
    ibex_buf_append(out, "\"", 1);
    if (memchr(text, '\\', len))
        ibex_json_append_canonical(out, text, len);
    else
        ibex_buf_append(out, text, len);
    ibex_buf_append(out, "\"", 1);
}

static void text_chunk(struct anth_stream *s, const char *text, size_t len, bool escaped)
{
    if (len == 0)
        return;
    ibex_openai_out_chunk_begin(s->out, &s->prefix);
    ibex_buf_append_cstr(s->out, "\"content\":");
    append_text(s->out, text, len, escaped);
    ibex_openai_out_chunk_end(s->out, NULL, NULL);
}

static void args_chunk(struct anth_stream *s, int64_t tool, const char *args, size_t len,
                       bool escaped)
{
    ibex_openai_out_chunk_begin(s->out, &s->prefix);
    ibex_buf_append_cstr(s->out, "\"tool_calls\":[{\"index\":");
    ibex_buf_append_u64(s->out, (uint64_t)tool);
    ibex_buf_append_cstr(s->out, ",\"function\":{\"arguments\":");
    append_text(s->out, args, len, escaped);
    ibex_buf_append_cstr(s->out, "}}]");
    ibex_openai_out_chunk_end(s->out, NULL, NULL);
}

static void finish_chunk(struct anth_stream *s, const char *stop_reason)
{
    if (s->finished)
        return;
    s->finished = true;
    ibex_openai_out_finish_chunk(s->out, &s->prefix, ibex_anthropic_finish_reason(stop_reason));
}

/* Counts u reported (not -1) replace the stream's: take_usage's rule. */
static void merge_usage(struct usage *into, const struct usage *u)
{
    if (u->input >= 0)
        into->input = u->input;
    if (u->cache_read >= 0)
        into->cache_read = u->cache_read;
    if (u->cache_creation >= 0)
        into->cache_creation = u->cache_creation;
    if (u->output >= 0)
        into->output = u->output;
}

/* message_start: the chunk prefix (id and model cut to their caps), the usage so far, the role
 * chunk. */
static void begin_message(struct anth_stream *s, struct ibex_str id, struct ibex_str model,
                          const struct usage *u)
{
    s->started = true;
    ibex_openai_out_chunk_prefix(
        &s->prefix, (struct ibex_str){id.p, id.len > ID_MAX ? ID_MAX : id.len}, s->created,
        (struct ibex_str){model.p, model.len > MODEL_MAX ? MODEL_MAX : model.len});
    merge_usage(&s->usage, u);
    publish_usage(s);
    ibex_openai_out_role_chunk(s->out, &s->prefix);
}

static void on_message_start(struct anth_stream *s, json_object *ev)
{
    if (s->started)
        return;
    json_object *msg = get(ev, "message");
    struct usage u = {-1, -1, -1, -1};
    take_usage(&u, get(msg, "usage"));
    begin_message(s, text_or(get(msg, "id"), IBEX_STR_LIT("msg"), ID_MAX),
                  text_or(get(msg, "model"), chat_model(s->chat), MODEL_MAX), &u);
}

static struct open_block *block_at(struct anth_stream *s, int64_t index)
{
    for (size_t i = 0; i < s->nopen; i++)
        if (s->open[i].index == index)
            return &s->open[i];
    return NULL;
}

static struct open_block *find_block(struct anth_stream *s, json_object *ev)
{
    return block_at(s, get_count(ev, "index"));
}

static void on_block_start(struct anth_stream *s, json_object *ev)
{
    int64_t index = get_count(ev, "index");
    json_object *cb = get(ev, "content_block"), *type = get(cb, "type");
    if (index < 0 || find_block(s, ev) != NULL || s->nopen == OPEN_BLOCKS_MAX) {
        fail(s, "the provider's stream is malformed");
        return;
    }
    struct open_block *b = &s->open[s->nopen++];
    *b = (struct open_block){.index = index, .kind = BLOCK_OTHER, .tool = -1};
    if (is_str(type, "text")) {
        b->kind = BLOCK_TEXT;
        size_t len = 0;
        const char *text = get_str(cb, "text", &len);
        if (text)
            text_chunk(s, text, len, false);
    } else if (is_str(type, "tool_use")) {
        /* the input arrives in input_json_delta events; the start carries an empty one */
        b->kind = BLOCK_TOOL;
        b->tool = s->ntools++;
        json_object *id = get(cb, "id"), *name = get(cb, "name");
        ibex_openai_out_chunk_begin(s->out, &s->prefix);
        ibex_buf_append_cstr(s->out, "\"tool_calls\":[{\"index\":");
        ibex_buf_append_u64(s->out, (uint64_t)b->tool);
        ibex_buf_append_cstr(s->out, ",\"id\":");
        if (json_object_is_type(id, json_type_string))
            ibex_json_append_str(s->out, id);
        else
            ibex_buf_append_cstr(s->out, "\"\"");
        ibex_buf_append_cstr(s->out, ",\"type\":\"function\",\"function\":{\"name\":");
        if (json_object_is_type(name, json_type_string))
            ibex_json_append_str(s->out, name);
        else
            ibex_buf_append_cstr(s->out, "\"\"");
        ibex_buf_append_cstr(s->out, ",\"arguments\":\"\"}}]");
        ibex_openai_out_chunk_end(s->out, NULL, NULL);
    }
    /* other blocks (thinking, server tools) were not asked for: their deltas are not relayed */
}

static void on_block_delta(struct anth_stream *s, json_object *ev)
{
    struct open_block *b = find_block(s, ev);
    if (b == NULL) {
        fail(s, "the provider's stream is malformed");
        return;
    }
    json_object *delta = get(ev, "delta"), *type = get(delta, "type");
    size_t len = 0;
    const char *text;
    if (b->kind == BLOCK_TEXT && is_str(type, "text_delta") &&
        (text = get_str(delta, "text", &len)) != NULL) {
        text_chunk(s, text, len, false);
    } else if (b->kind == BLOCK_TOOL && is_str(type, "input_json_delta") &&
               (text = get_str(delta, "partial_json", &len)) != NULL && len > 0) {
        b->args_seen = true;
        args_chunk(s, b->tool, text, len, false);
    }
}

static void close_block(struct anth_stream *s, struct open_block *b)
{
    if (b->kind == BLOCK_TOOL && !b->args_seen)
        args_chunk(s, b->tool, "{}", 2, false); /* no arguments: "{}", as OpenAI sends */
    *b = s->open[--s->nopen];
}

static void on_block_stop(struct anth_stream *s, json_object *ev)
{
    struct open_block *b = find_block(s, ev);
    if (b == NULL) {
        fail(s, "the provider's stream is malformed");
        return;
    }
    close_block(s, b);
}

/* The inside of a JSON string literal that can be copied as it is: no quote, no control
 * character, well-formed UTF-8, only two-character escapes (\u escapes, which may hold a lone
 * surrogate, take the general path). */
static bool plain_json_text(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c < 0x20)
            return false;
        if (c == '\\' && (++i == len || memchr("\"\\/bfnrt", p[i], 8) == NULL))
            return false;
    }
    return ibex_json_text_invalid_at(p, len) == len;
}

/* Anthropic writes its deltas compactly, keys in one order:
 * {"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"..."}}, or
 * input_json_delta with partial_json. They are most of a stream's events, so they are read here
 * without building a JSON tree, their text copied as it is escaped. Returns false, having done
 * nothing, for any other form or a block not open with the delta's kind: the general path
 * then takes the event. */
static bool fast_delta(struct anth_stream *s, const char *v, size_t len)
{
    static const char head[] = "{\"type\":\"content_block_delta\",\"index\":";
    static const char text[] = ",\"delta\":{\"type\":\"text_delta\",\"text\":\"";
    static const char json[] = ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"";
    size_t i = sizeof(head) - 1, digits = i;
    if (!s->started || len < i + 4 || memcmp(v, head, i) != 0 || memcmp(v + len - 3, "\"}}", 3))
        return false;
    int64_t index = 0;
    while (i < len && i - digits < 9 && v[i] >= '0' && v[i] <= '9')
        index = index * 10 + (v[i++] - '0');
    if (i == digits || (v[digits] == '0' && i - digits > 1))
        return false;
    bool is_text = len - i >= sizeof(text) - 1 && memcmp(v + i, text, sizeof(text) - 1) == 0;
    if (is_text)
        i += sizeof(text) - 1;
    else if (len - i >= sizeof(json) - 1 && memcmp(v + i, json, sizeof(json) - 1) == 0)
        i += sizeof(json) - 1;
    else
        return false;
    if (i > len - 3 || !plain_json_text(v + i, len - 3 - i))
        return false;
    struct open_block *b = block_at(s, index);
    if (b == NULL || b->kind != (is_text ? BLOCK_TEXT : BLOCK_TOOL))
        return false;
    size_t n = len - 3 - i;
    if (is_text) {
        text_chunk(s, v + i, n, true);
    } else if (n > 0) {
        b->args_seen = true;
        args_chunk(s, b->tool, v + i, n, true);
    }
    return true;
}

/* ---- streams: the framing events, read in place ----
 * Besides its deltas (fast_delta), a message's stream has a handful of events that frame it:
 * message_start, content_block_start, ping, content_block_stop, message_delta, message_stop.
 * fast_frame reads those in place in one pass and does what on_event's json-c path does. Keys
 * may come in any order, except that "type" must come before the members whose reading depends
 * on it ("message", "content_block", "delta", "usage"), as Anthropic writes it; members it has
 * no use for are stepped over. It declines, having changed nothing, whatever it is not sure of:
 * a type after those members, an escaped string it needs, a member of another type or null, a
 * count that is not a small integer, a repeated member, a start text that is not empty, a block
 * that is not text, a block index not open (or open already), any event but ping and
 * message_start before message_start. The json-c path then takes the event and decides.
 * tests/unit/anthropic_test.c and tests/fuzz/fuzz_anthropic.c run a json-c-only twin
 * (anthropic.h) on the same bytes and compare. */

#define FAST_SKIP_DEPTH 8 /* nesting of a member stepped over (json-c allows 64 in all) */
#define FAST_STOP_MAX 32  /* a stop_reason read in place, NUL included */

struct frame {
    struct ibex_str type;
    int64_t index;             /* -1: absent */
    bool message, block;       /* message_start's message, content_block_start's block: read */
    struct ibex_str id, model; /* the message's; left as set when absent */
    struct usage usage;        /* the message's usage, or message_delta's; -1s when absent */
    char stop[FAST_STOP_MAX];  /* message_delta's stop_reason, when have_stop */
    bool have_stop;
};

/* A usage object into *u (which the caller set to -1s): take_usage's counts, clamped like
 * get_tokens. */
static bool scan_usage(struct ibex_json_cursor *c, struct usage *u)
{
    static const char *const keys[] = {"input_tokens", "cache_read_input_tokens",
                                       "cache_creation_input_tokens", "output_tokens"};
    int64_t *counts[] = {&u->input, &u->cache_read, &u->cache_creation, &u->output};
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k;
    int r;
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        size_t i = ibex_json_key_index(k, keys, 4);
        if (i == 4) {
            if (!ibex_json_cur_skip(c, FAST_SKIP_DEPTH))
                return false;
            continue;
        }
        if (!ibex_json_once(&seen, 1u << i) || !ibex_json_cur_count(c, counts[i]))
            return false;
        if (*counts[i] > IBEX_TOKENS_MAX)
            *counts[i] = IBEX_TOKENS_MAX;
    }
    return r == 0;
}

/* message_start's message: id and model (unescaped strings, else declined; absent: left as
 * they are) and the usage. */
static bool scan_message(struct ibex_json_cursor *c, struct frame *f)
{
    unsigned seen = 0;
    bool first = true, escaped = false, ok;
    struct ibex_str k;
    int r;
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        if (IBEX_JSON_KEY_IS(k, "id"))
            ok = ibex_json_once(&seen, 1) && ibex_json_cur_str(c, &f->id, &escaped) && !escaped;
        else if (IBEX_JSON_KEY_IS(k, "model"))
            ok = ibex_json_once(&seen, 2) && ibex_json_cur_str(c, &f->model, &escaped) && !escaped;
        else if (IBEX_JSON_KEY_IS(k, "usage"))
            ok = ibex_json_once(&seen, 4) && scan_usage(c, &f->usage);
        else
            ok = ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    return r == 0;
}

/* content_block_start's block: a text block with no text, or an empty one. */
static bool scan_empty_text_block(struct ibex_json_cursor *c)
{
    unsigned seen = 0;
    bool first = true, escaped = false, ok, text = false;
    struct ibex_str k, t;
    int r;
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        if (IBEX_JSON_KEY_IS(k, "type")) {
            ok = ibex_json_once(&seen, 1) && ibex_json_cur_str(c, &t, &escaped) && !escaped;
            text = ok && IBEX_JSON_KEY_IS(t, "text");
        } else if (IBEX_JSON_KEY_IS(k, "text")) {
            ok = ibex_json_once(&seen, 2) && ibex_json_cur_str(c, &t, &escaped) && t.len == 0;
        } else {
            ok = ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        }
        if (!ok)
            return false;
    }
    return r == 0 && text;
}

/* message_delta's delta: its stop_reason, a string copied NUL-terminated into f->stop
 * (f->have_stop set), or null or absent. */
static bool scan_stop(struct ibex_json_cursor *c, struct frame *f)
{
    unsigned seen = 0;
    bool first = true, escaped = false, ok;
    struct ibex_str k, t;
    int r;
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        if (!IBEX_JSON_KEY_IS(k, "stop_reason")) {
            ok = ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        } else if (!ibex_json_once(&seen, 1)) {
            ok = false;
        } else if (ibex_json_cur_null(c)) {
            ok = true;
        } else {
            ok = ibex_json_cur_str(c, &t, &escaped) && !escaped && t.len < FAST_STOP_MAX;
            if (ok) {
                memcpy(f->stop, t.p, t.len);
                f->stop[t.len] = '\0';
                f->have_stop = true;
            }
        }
        if (!ok)
            return false;
    }
    return r == 0;
}

#define TYPE_IS(f, lit) IBEX_JSON_KEY_IS((f).type, lit)

/* The members whose reading depends on the event's type, in scan_frame's order. */
static const char *const typed_keys[] = {"message", "content_block", "delta", "usage"};

/* The member typed_keys[i] of an event of f's type: read when that type has a use for it,
 * stepped over otherwise. */
static bool typed_member(struct ibex_json_cursor *c, struct frame *f, size_t i)
{
    if (i == 0 && TYPE_IS(*f, "message_start"))
        return f->message = scan_message(c, f);
    if (i == 1 && TYPE_IS(*f, "content_block_start"))
        return f->block = scan_empty_text_block(c);
    if (i == 2 && TYPE_IS(*f, "message_delta"))
        return scan_stop(c, f);
    if (i == 3 && TYPE_IS(*f, "message_delta"))
        return scan_usage(c, &f->usage);
    return ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
}

/* One framing event into *f (whose defaults the caller set). */
static bool scan_frame(const char *v, size_t len, struct frame *f)
{
    struct ibex_json_cursor c = {v, len, 0};
    unsigned seen = 0;
    bool first = true, escaped = false, ok;
    struct ibex_str k;
    size_t i;
    int r;
    if (!ibex_json_cur_ch(&c, '{'))
        return false;
    while ((r = ibex_json_cur_member(&c, &first, &k)) == 1) {
        if (IBEX_JSON_KEY_IS(k, "type"))
            ok = ibex_json_once(&seen, 1) && ibex_json_cur_str(&c, &f->type, &escaped) && !escaped;
        else if (IBEX_JSON_KEY_IS(k, "index"))
            ok = ibex_json_once(&seen, 2) && ibex_json_cur_count(&c, &f->index);
        else if ((i = ibex_json_key_index(k, typed_keys, 4)) < 4)
            ok = f->type.p != NULL && ibex_json_once(&seen, 4u << i) && typed_member(&c, f, i);
        else
            ok = ibex_json_cur_skip(&c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    return r == 0 && ibex_json_cur_end(&c) && f->type.p != NULL;
}

/* A framing event read in place and done; false, having done nothing, to let json-c take it. */
static bool fast_frame(struct anth_stream *s, const char *v, size_t len)
{
    struct frame f = {.index = -1,
                      .id = IBEX_STR_LIT("msg"),
                      .model = chat_model(s->chat),
                      .usage = {-1, -1, -1, -1}};
    if (!scan_frame(v, len, &f))
        return false;
    if (TYPE_IS(f, "ping"))
        return true;
    if (TYPE_IS(f, "message_start")) {
        if (!s->started && !f.message)
            return false;
        if (!s->started)
            begin_message(s, f.id, f.model, &f.usage);
        return true;
    }
    if (!s->started)
        return false;
    if (TYPE_IS(f, "content_block_start")) {
        if (f.index < 0 || block_at(s, f.index) != NULL || s->nopen == OPEN_BLOCKS_MAX || !f.block)
            return false;
        s->open[s->nopen++] = (struct open_block){.index = f.index, .kind = BLOCK_TEXT, .tool = -1};
        return true;
    }
    if (TYPE_IS(f, "content_block_stop")) {
        struct open_block *b = f.index < 0 ? NULL : block_at(s, f.index);
        if (b == NULL)
            return false;
        close_block(s, b);
        return true;
    }
    if (TYPE_IS(f, "message_delta")) {
        merge_usage(&s->usage, &f.usage);
        publish_usage(s);
        if (f.have_stop)
            finish_chunk(s, f.stop);
        return true;
    }
    if (TYPE_IS(f, "message_stop")) {
        finish_chunk(s, NULL);
        s->stopped = true;
        return true;
    }
    return false;
}

static void on_event(void *data, const char *value, size_t len)
{
    struct anth_stream *s = data;
    if (s->sse.skipped > 0) /* a line before this one was over line_max: stop where it was */
        fail(s, LINE_TOO_LONG);
    if (s->failed || s->stopped)
        return;
    if (!s->reference && (fast_delta(s, value, len) || fast_frame(s, value, len))) {
        s->fast_events++;
        return;
    }
    json_object *ev = NULL;
    char msg[8];
    if (ibex_json_parse(value, len, &ev, msg, sizeof(msg)) != 0 ||
        !json_object_is_type(get(ev, "type"), json_type_string)) {
        json_object_put(ev);
        fail(s, "the provider's stream is malformed");
        return;
    }
    const char *type = json_object_get_string(get(ev, "type"));
    if (!strcmp(type, "error")) {
        fail(s, is_str(get(get(ev, "error"), "type"), "overloaded_error")
                    ? "the provider is overloaded: its stream stopped"
                    : "the provider's stream reported an error");
    } else if (!strcmp(type, "message_start")) {
        on_message_start(s, ev);
    } else if (!strcmp(type, "ping")) {
        /* keep-alive */
    } else if (!s->started &&
               (!strncmp(type, "content_block_", 14) || !strncmp(type, "message_", 8))) {
        fail(s, "the provider's stream is malformed");
    } else if (!strcmp(type, "content_block_start")) {
        on_block_start(s, ev);
    } else if (!strcmp(type, "content_block_delta")) {
        on_block_delta(s, ev);
    } else if (!strcmp(type, "content_block_stop")) {
        on_block_stop(s, ev);
    } else if (!strcmp(type, "message_delta")) {
        take_usage(&s->usage, get(ev, "usage"));
        publish_usage(s);
        const char *stop = get_str(get(ev, "delta"), "stop_reason", NULL);
        if (stop)
            finish_chunk(s, stop);
    } else if (!strcmp(type, "message_stop")) {
        finish_chunk(s, NULL);
        s->stopped = true;
    }
    /* other types: Anthropic may add event types; they carry nothing this translation knows */
    json_object_put(ev);
}

static int stream_feed(struct ibex_provider_stream *h, const char *p, size_t len,
                       struct ibex_buf *out)
{
    struct anth_stream *s = (struct anth_stream *)h;
    if (s->failed)
        return -1;
    if (len == 0)
        return 0;
    s->out = out;
    ibex_sse_feed(&s->sse, p, len, on_event, s);
    s->out = NULL;
    if (s->sse.skipped > 0)
        fail(s, LINE_TOO_LONG);
    return s->failed ? -1 : 0;
}

static int stream_end(struct ibex_provider_stream *h, struct ibex_buf *out)
{
    struct anth_stream *s = (struct anth_stream *)h;
    /* a last event without its line end still counts */
    if (stream_feed(h, "\n", 1, out) != 0)
        return -1;
    if (!s->stopped) {
        fail(s, "the provider's stream ended before its end");
        return -1;
    }
    struct ibex_openai_usage u = openai_usage(&s->usage);
    ibex_openai_out_stream_end(out, &s->prefix, s->chat->include_usage ? &u : NULL);
    return 0;
}

const struct ibex_provider_ops ibex_provider_anthropic = {
    .type = "anthropic",
    .build_request = build_request,
    .translate_answer = translate_answer,
    .stream_open = stream_open,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
};

/* ---- testing hooks (anthropic.h) ---- */

struct ibex_provider_stream *
ibex_anthropic_stream_open_reference(const struct ibex_provider *p,
                                     const struct ibex_chat_request *chat, struct ibex_arena *arena,
                                     const struct ibex_provider_stream *twin)
{
    struct anth_stream *s = (struct anth_stream *)stream_open(p, chat, arena);
    s->reference = true;
    if (twin)
        s->created = ((const struct anth_stream *)twin)->created;
    return &s->h;
}

uint64_t ibex_anthropic_stream_fast_events(const struct ibex_provider_stream *s)
{
    return ((const struct anth_stream *)s)->fast_events;
}
