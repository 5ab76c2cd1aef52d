/* POST /v1/messages: Anthropic's Messages API translated to OpenAI's chat completions and back
 * (docs/providers.md, "Anthropic-compatible ingress"), so any provider serves Anthropic clients.
 *
 * Invariants:
 * - Nothing that would change the answer is dropped: a field, block type or value with no
 *   equivalent in OpenAI's format, or one this file does not know, is a 400 naming it.
 * - Output JSON is written with ibex_buf_append*; client and provider values go through
 *   ibex_buf_append_json_str or json-c's serialiser, so every body and event is valid JSON.
 * - The stream translator holds its SSE line buffer and a fixed state; its output does not
 *   depend on how the bytes are split, and every event is "event: <type>\ndata: <JSON>\n\n"
 *   whose data has that "type". */
#include "messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../providers/anthropic_format.h"

/* Larger token counts are clamped to it (no real answer reaches it), so sums cannot overflow. */
#define TOKENS_MAX ((int64_t)1 << 48)

static bool is_number(json_object *v)
{
    return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

/* A non-negative integer member, clamped to TOKENS_MAX, or -1. */
static int64_t get_tokens(json_object *o, const char *key)
{
    json_object *v = ibex_json_get(o, key);
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
        return -1;
    int64_t n = json_object_get_int64(v);
    return n > TOKENS_MAX ? TOKENS_MAX : n;
}

/* Whether every member of o is one of the names (a NULL-terminated list) or null. Sets *bad to
 * the first other member. */
static bool only_members(json_object *o, const char *const *names, const char **bad)
{
    json_object_object_foreach(o, key, val)
    {
        if (val == NULL)
            continue;
        const char *const *n = names;
        while (*n && strcmp(*n, key) != 0)
            n++;
        if (*n == NULL) {
            *bad = key;
            return false;
        }
    }
    return true;
}

/* ---- request ---- */

struct mreq {
    struct ibex_chat_error *e;
    struct ibex_buf *out;
    size_t nmsgs;            /* OpenAI messages written */
    struct ibex_buf scratch; /* a data: URL on its way out */
};

#define NOT_SUPPORTED "is not supported by /v1/messages (ibex serves it in OpenAI's format)"

static void msg_begin(struct mreq *r, const char *role)
{
    ibex_buf_append_cstr(r->out, r->nmsgs++ ? ",{\"role\":\"" : "{\"role\":\"");
    ibex_buf_append_cstr(r->out, role);
    ibex_buf_append_cstr(r->out, "\",\"content\":");
}

static void text_part(struct ibex_buf *out, bool first, json_object *text)
{
    ibex_buf_append_cstr(out,
                         first ? "{\"type\":\"text\",\"text\":" : ",{\"type\":\"text\",\"text\":");
    ibex_json_append_str(out, text);
    ibex_buf_append_cstr(out, "}");
}

/* The text of a text block, or NULL (e filled) when block is not one. */
static json_object *text_of(struct mreq *r, json_object *block, const char *field)
{
    json_object *text = ibex_json_get(block, "text");
    if (!ibex_json_is_str(ibex_json_get(block, "type"), "text") ||
        !json_object_is_type(text, json_type_string)) {
        ibex_chat_error_add(r->e, field, "must be a text block with a string text");
        return NULL;
    }
    return text;
}

/* Text blocks (an array) as one message content: a string for one block, text parts for
 * several, "" for none. */
static int text_content(struct mreq *r, json_object *blocks, const char *what)
{
    size_t n = json_object_array_length(blocks);
    char field[96];
    for (size_t j = 0; j < n; j++) {
        snprintf(field, sizeof(field), "%s[%zu]", what, j);
        if (text_of(r, json_object_array_get_idx(blocks, j), field) == NULL)
            return -1;
    }
    if (n == 0) {
        ibex_buf_append_cstr(r->out, "\"\"");
    } else if (n == 1) {
        ibex_json_append_str(r->out, ibex_json_get(json_object_array_get_idx(blocks, 0), "text"));
    } else {
        ibex_buf_append_cstr(r->out, "[");
        for (size_t j = 0; j < n; j++)
            text_part(r->out, j == 0, ibex_json_get(json_object_array_get_idx(blocks, j), "text"));
        ibex_buf_append_cstr(r->out, "]");
    }
    return 0;
}

/* system: a string, or text blocks; one system message, first (empty: none). */
static int write_system(struct mreq *r, json_object *sys)
{
    if (sys == NULL)
        return 0;
    if (json_object_is_type(sys, json_type_string)) {
        if (json_object_get_string_len(sys) == 0)
            return 0;
        msg_begin(r, "system");
        ibex_json_append_str(r->out, sys);
        ibex_buf_append_cstr(r->out, "}");
        return 0;
    }
    if (!json_object_is_type(sys, json_type_array))
        return ibex_chat_error_add(r->e, "system", "must be a string or an array of text blocks");
    if (json_object_array_length(sys) == 0)
        return 0;
    msg_begin(r, "system");
    if (text_content(r, sys, "system") != 0)
        return -1;
    ibex_buf_append_cstr(r->out, "}");
    return 0;
}

/* "data:<media type>;base64,<data>" as a JSON string. */
static int data_url(struct mreq *r, json_object *src, const char *field)
{
    size_t mlen = 0, dlen = 0;
    const char *media = ibex_json_get_str(src, "media_type", &mlen);
    const char *data = ibex_json_get_str(src, "data", &dlen);
    /* ';' or ',' in the media type would change where a reader finds the data */
    if (media == NULL || data == NULL || mlen == 0 || dlen == 0 || strpbrk(media, ";,") != NULL)
        return ibex_chat_error_add(r->e, field,
                                   "a base64 source needs a media_type and data strings");
    ibex_buf_reset(&r->scratch);
    ibex_buf_append_cstr(&r->scratch, "data:");
    ibex_buf_append(&r->scratch, media, mlen);
    ibex_buf_append_cstr(&r->scratch, ";base64,");
    ibex_buf_append(&r->scratch, data, dlen);
    ibex_buf_append_json_str(r->out, r->scratch.p, r->scratch.len);
    return 0;
}

/* image block: an image_url part with a data: URL (base64 source) or the URL (url source). */
static int image_part(struct mreq *r, json_object *block, const char *field, bool first)
{
    char sfield[112];
    json_object *src = ibex_json_get(block, "source");
    json_object *type = ibex_json_get(src, "type");
    snprintf(sfield, sizeof(sfield), "%s.source", field);
    ibex_buf_append_cstr(r->out, first ? "{\"type\":\"image_url\",\"image_url\":{\"url\":"
                                       : ",{\"type\":\"image_url\",\"image_url\":{\"url\":");
    if (ibex_json_is_str(type, "base64")) {
        if (data_url(r, src, sfield) != 0)
            return -1;
    } else if (ibex_json_is_str(type, "url") &&
               json_object_is_type(ibex_json_get(src, "url"), json_type_string)) {
        ibex_json_append_str(r->out, ibex_json_get(src, "url"));
    } else {
        return ibex_chat_error_add(r->e, sfield,
                                   "must be a base64 or a url source (file ids are Anthropic's)");
    }
    ibex_buf_append_cstr(r->out, "}}");
    return 0;
}

/* document block: a PDF (base64) becomes a file part, plain text (a text source) a text part. */
static int document_part(struct mreq *r, json_object *block, const char *field, bool first)
{
    char sfield[112];
    json_object *src = ibex_json_get(block, "source");
    json_object *type = ibex_json_get(src, "type");
    snprintf(sfield, sizeof(sfield), "%s.source", field);
    if (ibex_json_is_str(type, "text") &&
        json_object_is_type(ibex_json_get(src, "data"), json_type_string)) {
        text_part(r->out, first, ibex_json_get(src, "data"));
        return 0;
    }
    if (!ibex_json_is_str(type, "base64") ||
        !ibex_json_is_str(ibex_json_get(src, "media_type"), "application/pdf"))
        return ibex_chat_error_add(r->e, sfield,
                                   "documents must be base64 PDFs or text sources here");
    json_object *title = ibex_json_get(block, "title");
    ibex_buf_append_cstr(r->out, first ? "{\"type\":\"file\",\"file\":{\"filename\":"
                                       : ",{\"type\":\"file\",\"file\":{\"filename\":");
    if (json_object_is_type(title, json_type_string) && json_object_get_string_len(title) > 0)
        ibex_json_append_str(r->out, title);
    else
        ibex_buf_append_cstr(r->out, "\"document.pdf\"");
    ibex_buf_append_cstr(r->out, ",\"file_data\":");
    if (data_url(r, src, sfield) != 0)
        return -1;
    ibex_buf_append_cstr(r->out, "}}");
    return 0;
}

/* tool_result block: an OpenAI tool message. is_error has no equivalent: the result's text,
 * which says what went wrong, goes as it is. */
static int tool_message(struct mreq *r, json_object *block, const char *field)
{
    char sfield[112];
    json_object *id = ibex_json_get(block, "tool_use_id");
    json_object *content = ibex_json_get(block, "content");
    if (!json_object_is_type(id, json_type_string) || json_object_get_string_len(id) == 0) {
        snprintf(sfield, sizeof(sfield), "%s.tool_use_id", field);
        return ibex_chat_error_add(r->e, sfield, "is required and must be a non-empty string");
    }
    msg_begin(r, "tool");
    snprintf(sfield, sizeof(sfield), "%s.content", field);
    if (content == NULL) {
        ibex_buf_append_cstr(r->out, "\"\"");
    } else if (json_object_is_type(content, json_type_string)) {
        ibex_json_append_str(r->out, content);
    } else if (!json_object_is_type(content, json_type_array)) {
        return ibex_chat_error_add(r->e, sfield, "must be a string or an array of text blocks");
    } else if (text_content(r, content, sfield) != 0) {
        return -1; /* images in tool results have no OpenAI equivalent */
    }
    ibex_buf_append_cstr(r->out, ",\"tool_call_id\":");
    ibex_json_append_str(r->out, id);
    ibex_buf_append_cstr(r->out, "}");
    return 0;
}

/* A user message's blocks: its tool results first, as tool messages (they answer the previous
 * assistant turn's calls, which OpenAI wants right before them), then one user message with the
 * rest (none when only tool results are left). */
static int user_blocks(struct mreq *r, json_object *content, size_t i)
{
    size_t n = json_object_array_length(content), nparts = 0, ntext = 0;
    char field[96];
    for (size_t j = 0; j < n; j++) {
        json_object *b = json_object_array_get_idx(content, j);
        json_object *type = ibex_json_get(b, "type");
        snprintf(field, sizeof(field), "messages[%zu].content[%zu]", i, j);
        if (ibex_json_is_str(type, "tool_result")) {
            if (tool_message(r, b, field) != 0)
                return -1;
        } else if (ibex_json_is_str(type, "text")) {
            if (text_of(r, b, field) == NULL)
                return -1;
            nparts++;
            ntext++;
        } else if (ibex_json_is_str(type, "image") || ibex_json_is_str(type, "document")) {
            nparts++;
        } else {
            snprintf(field, sizeof(field), "messages[%zu].content[%zu].type", i, j);
            return ibex_chat_error_add(r->e, field,
                                       json_object_is_type(type, json_type_string)
                                           ? "this block type " NOT_SUPPORTED " in user messages"
                                           : "must be a string");
        }
    }
    if (nparts == 0)
        return 0;
    msg_begin(r, "user");
    if (nparts == 1 && ntext == 1) {
        for (size_t j = 0; j < n; j++) {
            json_object *b = json_object_array_get_idx(content, j);
            if (ibex_json_is_str(ibex_json_get(b, "type"), "text"))
                ibex_json_append_str(r->out, ibex_json_get(b, "text"));
        }
        ibex_buf_append_cstr(r->out, "}");
        return 0;
    }
    ibex_buf_append_cstr(r->out, "[");
    bool first = true;
    for (size_t j = 0; j < n; j++) {
        json_object *b = json_object_array_get_idx(content, j);
        json_object *type = ibex_json_get(b, "type");
        snprintf(field, sizeof(field), "messages[%zu].content[%zu]", i, j);
        int rc = 0;
        if (ibex_json_is_str(type, "text"))
            text_part(r->out, first, ibex_json_get(b, "text"));
        else if (ibex_json_is_str(type, "image"))
            rc = image_part(r, b, field, first);
        else if (ibex_json_is_str(type, "document"))
            rc = document_part(r, b, field, first);
        else
            continue; /* tool_result: written above */
        if (rc != 0)
            return -1;
        first = false;
    }
    ibex_buf_append_cstr(r->out, "]}");
    return 0;
}

/* An assistant message's blocks: text as its content, tool_use blocks as its tool_calls. */
static int assistant_blocks(struct mreq *r, json_object *content, size_t i)
{
    size_t n = json_object_array_length(content), ntext = 0, ntools = 0;
    char field[112];
    for (size_t j = 0; j < n; j++) {
        json_object *b = json_object_array_get_idx(content, j);
        json_object *type = ibex_json_get(b, "type");
        snprintf(field, sizeof(field), "messages[%zu].content[%zu]", i, j);
        if (ibex_json_is_str(type, "text")) {
            if (text_of(r, b, field) == NULL)
                return -1;
            ntext++;
        } else if (ibex_json_is_str(type, "tool_use")) {
            json_object *id = ibex_json_get(b, "id"), *name = ibex_json_get(b, "name");
            json_object *input = ibex_json_get(b, "input");
            if (!json_object_is_type(id, json_type_string) ||
                !json_object_is_type(name, json_type_string) ||
                json_object_get_string_len(id) == 0 || json_object_get_string_len(name) == 0)
                return ibex_chat_error_add(r->e, field,
                                           "a tool_use block needs a non-empty id and name");
            if (input != NULL && !json_object_is_type(input, json_type_object)) {
                snprintf(field, sizeof(field), "messages[%zu].content[%zu].input", i, j);
                return ibex_chat_error_add(r->e, field, "must be an object");
            }
            ntools++;
        } else {
            snprintf(field, sizeof(field), "messages[%zu].content[%zu].type", i, j);
            return ibex_chat_error_add(
                r->e, field,
                ibex_json_is_str(type, "thinking") || ibex_json_is_str(type, "redacted_thinking")
                    ? "thinking blocks are not supported by /v1/messages (no extended thinking)"
                : json_object_is_type(type, json_type_string) ? "this block type " NOT_SUPPORTED
                                                                " in assistant messages"
                                                              : "must be a string");
        }
    }
    msg_begin(r, "assistant");
    if (ntext == 0) {
        ibex_buf_append_cstr(r->out, ntools ? "null" : "\"\"");
    } else {
        ibex_buf_append_cstr(r->out, ntext > 1 ? "[" : "");
        size_t k = 0;
        for (size_t j = 0; j < n; j++) {
            json_object *b = json_object_array_get_idx(content, j);
            if (!ibex_json_is_str(ibex_json_get(b, "type"), "text"))
                continue;
            if (ntext > 1)
                text_part(r->out, k++ == 0, ibex_json_get(b, "text"));
            else
                ibex_json_append_str(r->out, ibex_json_get(b, "text"));
        }
        ibex_buf_append_cstr(r->out, ntext > 1 ? "]" : "");
    }
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        json_object *b = json_object_array_get_idx(content, j);
        if (!ibex_json_is_str(ibex_json_get(b, "type"), "tool_use"))
            continue;
        ibex_buf_append_cstr(r->out, k++ ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":");
        ibex_json_append_str(r->out, ibex_json_get(b, "id"));
        ibex_buf_append_cstr(r->out, ",\"type\":\"function\",\"function\":{\"name\":");
        ibex_json_append_str(r->out, ibex_json_get(b, "name"));
        ibex_buf_append_cstr(r->out, ",\"arguments\":");
        json_object *input = ibex_json_get(b, "input");
        if (input == NULL) {
            ibex_buf_append_cstr(r->out, "\"{}\"");
        } else {
            size_t len;
            const char *s = json_object_to_json_string_length(
                input, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
            ibex_buf_append_json_str(r->out, s, len);
        }
        ibex_buf_append_cstr(r->out, "}}");
    }
    ibex_buf_append_cstr(r->out, k ? "]}" : "}");
    return 0;
}

static int write_messages(struct mreq *r, json_object *msgs)
{
    static const char *const members[] = {"role", "content", NULL};
    size_t n = json_object_array_length(msgs);
    char field[96];
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        const char *bad = NULL;
        if (!json_object_is_type(m, json_type_object)) {
            snprintf(field, sizeof(field), "messages[%zu]", i);
            return ibex_chat_error_add(r->e, field, "must be an object");
        }
        if (!only_members(m, members, &bad)) {
            snprintf(field, sizeof(field), "messages[%zu].%.40s", i, bad[0] ? bad : "\"\"");
            return ibex_chat_error_add(r->e, field, "is not a field of a message");
        }
        json_object *role = ibex_json_get(m, "role"), *content = ibex_json_get(m, "content");
        bool user = ibex_json_is_str(role, "user");
        if (!user && !ibex_json_is_str(role, "assistant")) {
            snprintf(field, sizeof(field), "messages[%zu].role", i);
            return ibex_chat_error_add(r->e, field, "must be user or assistant");
        }
        if (json_object_is_type(content, json_type_string)) {
            msg_begin(r, user ? "user" : "assistant");
            ibex_json_append_str(r->out, content);
            ibex_buf_append_cstr(r->out, "}");
        } else if (!json_object_is_type(content, json_type_array)) {
            snprintf(field, sizeof(field), "messages[%zu].content", i);
            return ibex_chat_error_add(r->e, field,
                                       "is required: a string or an array of content blocks");
        } else if ((user ? user_blocks(r, content, i) : assistant_blocks(r, content, i)) != 0) {
            return -1;
        }
    }
    return 0;
}

/* tools: client tools ({name, description, input_schema}) become function tools. */
static int write_tools(struct mreq *r, json_object *tools, size_t *ntools)
{
    static const char *const members[] = {
        "name", "description", "input_schema", "cache_control", "type", "strict", NULL};
    *ntools = 0;
    if (!json_object_is_type(tools, json_type_array))
        return ibex_chat_error_add(r->e, "tools", "must be an array");
    size_t n = json_object_array_length(tools);
    char field[96];
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        json_object *name = ibex_json_get(t, "name"), *desc = ibex_json_get(t, "description");
        json_object *schema = ibex_json_get(t, "input_schema"), *type = ibex_json_get(t, "type");
        json_object *strict = ibex_json_get(t, "strict");
        const char *bad = NULL;
        snprintf(field, sizeof(field), "tools[%zu]", i);
        if (!json_object_is_type(t, json_type_object))
            return ibex_chat_error_add(r->e, field, "must be an object");
        if (type != NULL && !ibex_json_is_str(type, "custom")) {
            snprintf(field, sizeof(field), "tools[%zu].type", i);
            return ibex_chat_error_add(r->e, field,
                                       "server tools " NOT_SUPPORTED ": only client tools");
        }
        if (!only_members(t, members, &bad)) {
            snprintf(field, sizeof(field), "tools[%zu].%.40s", i, bad[0] ? bad : "\"\"");
            return ibex_chat_error_add(r->e, field, NOT_SUPPORTED);
        }
        if (!json_object_is_type(name, json_type_string) || json_object_get_string_len(name) == 0)
            return ibex_chat_error_add(r->e, field, "name must be a non-empty string");
        if (desc != NULL && !json_object_is_type(desc, json_type_string))
            return ibex_chat_error_add(r->e, field, "description must be a string");
        if (!json_object_is_type(schema, json_type_object))
            return ibex_chat_error_add(r->e, field, "input_schema must be an object");
        if (strict != NULL && !json_object_is_type(strict, json_type_boolean))
            return ibex_chat_error_add(r->e, field, "strict must be a boolean");
        ibex_buf_append_cstr(r->out, i ? ",{\"type\":\"function\",\"function\":{\"name\":"
                                       : ",\"tools\":[{\"type\":\"function\",\"function\":{"
                                         "\"name\":");
        ibex_json_append_str(r->out, name);
        if (desc) {
            ibex_buf_append_cstr(r->out, ",\"description\":");
            ibex_json_append_str(r->out, desc);
        }
        ibex_buf_append_cstr(r->out, ",\"parameters\":");
        ibex_json_append(r->out, schema);
        if (strict && json_object_get_boolean(strict))
            ibex_buf_append_cstr(r->out, ",\"strict\":true");
        ibex_buf_append_cstr(r->out, "}}");
    }
    if (n > 0)
        ibex_buf_append_cstr(r->out, "]");
    *ntools = n;
    return 0;
}

/* tool_choice: auto, any, tool and none become OpenAI's auto, required, a named function and
 * none; disable_parallel_tool_use becomes parallel_tool_calls: false. Without tools, auto and
 * none mean nothing and are dropped. */
static int write_tool_choice(struct mreq *r, json_object *tc, size_t ntools)
{
    static const char *const members[] = {"type", "name", "disable_parallel_tool_use", NULL};
    const char *bad = NULL;
    if (!json_object_is_type(tc, json_type_object))
        return ibex_chat_error_add(r->e, "tool_choice", "must be an object");
    if (!only_members(tc, members, &bad)) {
        char field[64];
        snprintf(field, sizeof(field), "tool_choice.%.40s", bad[0] ? bad : "\"\"");
        return ibex_chat_error_add(r->e, field, NOT_SUPPORTED);
    }
    json_object *type = ibex_json_get(tc, "type"), *name = ibex_json_get(tc, "name");
    json_object *serial = ibex_json_get(tc, "disable_parallel_tool_use");
    if (serial != NULL && !json_object_is_type(serial, json_type_boolean))
        return ibex_chat_error_add(r->e, "tool_choice.disable_parallel_tool_use",
                                   "must be a boolean");
    bool named = ibex_json_is_str(type, "tool");
    if (named &&
        (!json_object_is_type(name, json_type_string) || json_object_get_string_len(name) == 0))
        return ibex_chat_error_add(r->e, "tool_choice.name", "is required with type tool");
    if (!named && !ibex_json_is_str(type, "auto") && !ibex_json_is_str(type, "any") &&
        !ibex_json_is_str(type, "none"))
        return ibex_chat_error_add(r->e, "tool_choice.type", "must be auto, any, tool or none");
    if (ntools == 0) {
        if (named || ibex_json_is_str(type, "any"))
            return ibex_chat_error_add(r->e, "tool_choice", "requires tools");
        return 0;
    }
    if (named) {
        ibex_buf_append_cstr(r->out, ",\"tool_choice\":{\"type\":\"function\",\"function\":{"
                                     "\"name\":");
        ibex_json_append_str(r->out, name);
        ibex_buf_append_cstr(r->out, "}}");
    } else {
        ibex_buf_append_cstr(r->out, ",\"tool_choice\":\"");
        ibex_buf_append_cstr(r->out, ibex_json_is_str(type, "any") ? "required"
                                                                   : json_object_get_string(type));
        ibex_buf_append_cstr(r->out, "\"");
    }
    if (serial && json_object_get_boolean(serial))
        ibex_buf_append_cstr(r->out, ",\"parallel_tool_calls\":false");
    return 0;
}

/* output_config.format (structured outputs) becomes response_format json_schema. */
static int write_output_config(struct mreq *r, json_object *oc)
{
    static const char *const members[] = {"format", NULL};
    const char *bad = NULL;
    if (!json_object_is_type(oc, json_type_object))
        return ibex_chat_error_add(r->e, "output_config", "must be an object");
    if (!only_members(oc, members, &bad)) {
        char field[64];
        snprintf(field, sizeof(field), "output_config.%.40s", bad[0] ? bad : "\"\"");
        return ibex_chat_error_add(r->e, field, NOT_SUPPORTED);
    }
    json_object *format = ibex_json_get(oc, "format");
    if (format == NULL)
        return 0;
    json_object *schema = ibex_json_get(format, "schema");
    if (!ibex_json_is_str(ibex_json_get(format, "type"), "json_schema") ||
        !json_object_is_type(schema, json_type_object))
        return ibex_chat_error_add(r->e, "output_config.format",
                                   "must be {\"type\":\"json_schema\",\"schema\":{...}}");
    ibex_buf_append_cstr(r->out, ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                                 "{\"name\":\"output\",\"schema\":");
    ibex_json_append(r->out, schema);
    ibex_buf_append_cstr(r->out, "}}");
    return 0;
}

static int write_metadata(struct mreq *r, json_object *md)
{
    static const char *const members[] = {"user_id", NULL};
    const char *bad = NULL;
    if (!json_object_is_type(md, json_type_object))
        return ibex_chat_error_add(r->e, "metadata", "must be an object");
    if (!only_members(md, members, &bad)) {
        char field[64];
        snprintf(field, sizeof(field), "metadata.%.40s", bad[0] ? bad : "\"\"");
        return ibex_chat_error_add(r->e, field, "is not a field of metadata (only user_id)");
    }
    json_object *user = ibex_json_get(md, "user_id");
    if (user == NULL)
        return 0;
    if (!json_object_is_type(user, json_type_string))
        return ibex_chat_error_add(r->e, "metadata.user_id", "must be a string");
    ibex_buf_append_cstr(r->out, ",\"user\":");
    ibex_json_append_str(r->out, user);
    return 0;
}

/* A sampling number within [0, 1], copied as it was written. */
static int write_unit(struct mreq *r, json_object *v, const char *name)
{
    if (v == NULL)
        return 0;
    double d = json_object_get_double(v);
    if (!is_number(v) || d < 0 || d > 1)
        return ibex_chat_error_add(r->e, name, "must be a number between 0 and 1");
    ibex_buf_append_cstr(r->out, ",\"");
    ibex_buf_append_cstr(r->out, name);
    ibex_buf_append_cstr(r->out, "\":");
    ibex_json_append(r->out, v);
    return 0;
}

/* Top-level fields and what the translation does with them. */
static const char *const used_fields[] = {
    "model", "max_tokens", "messages", "system", "stream", "stop_sequences", "temperature", "top_p",
    "top_k", "metadata", "tools", "tool_choice", "thinking", "output_config",
    /* dropped: they do not change the answer (capacity tier, prompt caching hints) */
    "service_tier", "cache_control", NULL};

static int write_body(struct mreq *r, json_object *root)
{
    if (!json_object_is_type(root, json_type_object))
        return ibex_chat_error_add(r->e, "(body)", "must be a JSON object");
    json_object *model = ibex_json_get(root, "model"), *mt = ibex_json_get(root, "max_tokens");
    json_object *msgs = ibex_json_get(root, "messages"), *v;
    const char *bad = NULL;
    if (!json_object_is_type(model, json_type_string) || json_object_get_string_len(model) == 0)
        return ibex_chat_error_add(r->e, "model", "is required and must be a non-empty string");
    if (!json_object_is_type(mt, json_type_int) || json_object_get_int64(mt) < 1)
        return ibex_chat_error_add(r->e, "max_tokens",
                                   "is required and must be a positive integer");
    if (!json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) == 0)
        return ibex_chat_error_add(r->e, "messages", "is required and must be a non-empty array");
    if (!only_members(root, used_fields, &bad)) {
        char field[64];
        snprintf(field, sizeof(field), "%.60s", bad[0] ? bad : "\"\"");
        return ibex_chat_error_add(r->e, field, NOT_SUPPORTED);
    }
    json_object *stream = ibex_json_get(root, "stream");
    if (stream != NULL && !json_object_is_type(stream, json_type_boolean))
        return ibex_chat_error_add(r->e, "stream", "must be a boolean");
    json_object *thinking = ibex_json_get(root, "thinking");
    if (thinking != NULL && !ibex_json_is_str(ibex_json_get(thinking, "type"), "disabled"))
        return ibex_chat_error_add(r->e, "thinking",
                                   "extended thinking " NOT_SUPPORTED "; omit it or send "
                                   "{\"type\":\"disabled\"}");

    struct ibex_buf *out = r->out;
    ibex_buf_append_cstr(out, "{\"model\":");
    ibex_json_append_str(out, model);
    ibex_buf_append_cstr(out, ",\"messages\":[");
    if (write_system(r, ibex_json_get(root, "system")) != 0 || write_messages(r, msgs) != 0)
        return -1;
    if (r->nmsgs == 0)
        return ibex_chat_error_add(r->e, "messages", "has no content to send");
    ibex_buf_append_cstr(out, "],\"max_completion_tokens\":");
    ibex_buf_append_u64(out, (uint64_t)json_object_get_int64(mt));
    /* the usage chunk gives the stream's output_tokens */
    if (stream && json_object_get_boolean(stream))
        ibex_buf_append_cstr(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    if (write_unit(r, ibex_json_get(root, "temperature"), "temperature") != 0 ||
        write_unit(r, ibex_json_get(root, "top_p"), "top_p") != 0)
        return -1;
    if ((v = ibex_json_get(root, "top_k")) != NULL) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1)
            return ibex_chat_error_add(r->e, "top_k", "must be a positive integer");
        ibex_buf_append_cstr(out, ",\"top_k\":");
        ibex_json_append(out, v);
    }
    if ((v = ibex_json_get(root, "stop_sequences")) != NULL) {
        bool ok = json_object_is_type(v, json_type_array);
        size_t n = ok ? json_object_array_length(v) : 0;
        for (size_t i = 0; i < n && ok; i++)
            ok = json_object_is_type(json_object_array_get_idx(v, i), json_type_string);
        if (!ok)
            return ibex_chat_error_add(r->e, "stop_sequences", "must be an array of strings");
        if (n > 0) {
            ibex_buf_append_cstr(out, ",\"stop\":");
            ibex_json_append(out, v);
        }
    }
    size_t ntools = 0;
    if ((v = ibex_json_get(root, "tools")) != NULL && write_tools(r, v, &ntools) != 0)
        return -1;
    if ((v = ibex_json_get(root, "tool_choice")) != NULL && write_tool_choice(r, v, ntools) != 0)
        return -1;
    if ((v = ibex_json_get(root, "metadata")) != NULL && write_metadata(r, v) != 0)
        return -1;
    if ((v = ibex_json_get(root, "output_config")) != NULL && write_output_config(r, v) != 0)
        return -1;
    ibex_buf_append_cstr(out, "}");
    return 0;
}

int ibex_messages_request(const char *body, size_t len, struct ibex_buf *out,
                          struct ibex_chat_error *e)
{
    json_object *root = NULL;
    if (ibex_json_parse(body, len, &root, e->message, sizeof(e->message)) != 0) {
        e->code = "INVALID_JSON";
        return -1;
    }
    size_t mark = out->len;
    struct mreq r = {.e = e, .out = out};
    ibex_buf_init(&r.scratch);
    int rc = write_body(&r, root);
    ibex_buf_dispose(&r.scratch);
    json_object_put(root);
    if (rc != 0) {
        out->len = mark;
        if (out->p)
            out->p[mark] = '\0';
    }
    return rc;
}

/* ---- answer ---- */

struct usage {
    int64_t prompt, completion, cached; /* -1: not reported */
};

static void read_usage(struct usage *u, json_object *usage)
{
    int64_t v;
    if ((v = get_tokens(usage, "prompt_tokens")) >= 0)
        u->prompt = v;
    if ((v = get_tokens(usage, "completion_tokens")) >= 0)
        u->completion = v;
    if ((v = get_tokens(ibex_json_get(usage, "prompt_tokens_details"), "cached_tokens")) >= 0)
        u->cached = v;
}

/* Anthropic's input_tokens leave out what was read from the cache, which OpenAI's prompt_tokens
 * include. */
static void append_usage(struct ibex_buf *out, const struct usage *u, bool input)
{
    int64_t cached = u->cached > 0 ? u->cached : 0;
    int64_t in = u->prompt > cached ? u->prompt - cached : 0;
    ibex_buf_append_cstr(out, "{");
    if (input) {
        ibex_buf_append_cstr(out, "\"input_tokens\":");
        ibex_buf_append_u64(out, (uint64_t)in);
        ibex_buf_append_cstr(out, ",");
    }
    ibex_buf_append_cstr(out, "\"output_tokens\":");
    ibex_buf_append_u64(out, (uint64_t)(u->completion > 0 ? u->completion : 0));
    if (input && u->cached >= 0) {
        ibex_buf_append_cstr(out, ",\"cache_read_input_tokens\":");
        ibex_buf_append_u64(out, (uint64_t)u->cached);
    }
    ibex_buf_append_cstr(out, "}");
}

/* "msg_" and the answer's id (kept as it is when it is one already), cut to ID_MAX. */
static void append_msg_id(struct ibex_buf *out, const char *id, size_t len)
{
    char buf[4 + IBEX_MESSAGES_ID_MAX];
    size_t n = 0;
    if (id == NULL || len == 0) {
        id = "ibex";
        len = 4;
    }
    if (len < 4 || memcmp(id, "msg_", 4) != 0) {
        memcpy(buf, "msg_", 4);
        n = 4;
    }
    if (len > IBEX_MESSAGES_ID_MAX)
        len = IBEX_MESSAGES_ID_MAX;
    memcpy(buf + n, id, len);
    ibex_buf_append_json_str(out, buf, n + len);
}

static void append_model(struct ibex_buf *out, json_object *model, const char *fallback,
                         size_t fallback_len)
{
    size_t len = 0;
    const char *m =
        json_object_is_type(model, json_type_string) ? json_object_get_string(model) : NULL;
    if (m && (len = (size_t)json_object_get_string_len(model)) > 0) {
        ibex_buf_append_json_str(out, m,
                                 len < IBEX_MESSAGES_MODEL_MAX ? len : IBEX_MESSAGES_MODEL_MAX);
        return;
    }
    ibex_buf_append_json_str(out, fallback ? fallback : "",
                             fallback_len < IBEX_MESSAGES_MODEL_MAX ? fallback_len
                                                                    : IBEX_MESSAGES_MODEL_MAX);
}

static void text_block(struct ibex_buf *out, size_t *nblocks, json_object *text)
{
    if (!json_object_is_type(text, json_type_string) || json_object_get_string_len(text) == 0)
        return;
    ibex_buf_append_cstr(out, (*nblocks)++ ? ",{\"type\":\"text\",\"text\":"
                                           : "{\"type\":\"text\",\"text\":");
    ibex_json_append_str(out, text);
    ibex_buf_append_cstr(out, "}");
}

/* A tool call's input: its arguments parsed; arguments that are not JSON are kept as their text
 * (a string) rather than lost. */
static void append_input(struct ibex_buf *out, json_object *args)
{
    size_t len = 0;
    const char *text =
        json_object_is_type(args, json_type_string) ? json_object_get_string(args) : NULL;
    if (text == NULL || (len = (size_t)json_object_get_string_len(args)) == 0) {
        ibex_buf_append_cstr(out, "{}");
        return;
    }
    json_object *v = NULL;
    char msg[8];
    if (ibex_json_parse(text, len, &v, msg, sizeof(msg)) == 0 && v != NULL)
        ibex_json_append(out, v);
    else
        ibex_buf_append_json_str(out, text, len);
    json_object_put(v);
}

/* Anthropic says tool_use when the answer calls tools; some OpenAI-compatible servers say
 * "stop" then. */
static const char *stop_reason(const char *finish, bool tools)
{
    const char *stop = ibex_anthropic_stop_reason(finish);
    return tools && !strcmp(stop, "end_turn") ? "tool_use" : stop;
}

int ibex_messages_answer(const char *body, size_t len, const char *model, size_t model_len,
                         struct ibex_buf *out)
{
    json_object *root = NULL;
    char msg[8];
    if (ibex_json_parse(body, len, &root, msg, sizeof(msg)) != 0)
        return -1;
    json_object *choices = ibex_json_get(root, "choices");
    json_object *choice =
        json_object_is_type(choices, json_type_array) && json_object_array_length(choices) > 0
            ? json_object_array_get_idx(choices, 0)
            : NULL;
    json_object *m = ibex_json_get(choice, "message");
    if (!json_object_is_type(m, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    size_t idlen = 0;
    const char *id = ibex_json_get_str(root, "id", &idlen);
    ibex_buf_append_cstr(out, "{\"id\":");
    append_msg_id(out, id, idlen);
    ibex_buf_append_cstr(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    append_model(out, ibex_json_get(root, "model"), model, model_len);
    ibex_buf_append_cstr(out, ",\"content\":[");
    size_t nblocks = 0;
    json_object *content = ibex_json_get(m, "content");
    if (json_object_is_type(content, json_type_array)) {
        size_t n = json_object_array_length(content);
        for (size_t i = 0; i < n; i++) {
            json_object *part = json_object_array_get_idx(content, i);
            if (ibex_json_is_str(ibex_json_get(part, "type"), "text"))
                text_block(out, &nblocks, ibex_json_get(part, "text"));
        }
    } else {
        text_block(out, &nblocks, content);
    }
    text_block(out, &nblocks, ibex_json_get(m, "refusal"));
    json_object *calls = ibex_json_get(m, "tool_calls");
    size_t ncalls =
        json_object_is_type(calls, json_type_array) ? json_object_array_length(calls) : 0;
    for (size_t i = 0; i < ncalls; i++) {
        json_object *tc = json_object_array_get_idx(calls, i);
        json_object *fn = ibex_json_get(tc, "function");
        size_t n = 0;
        const char *s;
        ibex_buf_append_cstr(out, nblocks++ ? ",{\"type\":\"tool_use\",\"id\":"
                                            : "{\"type\":\"tool_use\",\"id\":");
        s = ibex_json_get_str(tc, "id", &n);
        ibex_buf_append_json_str(out, s ? s : "", n);
        ibex_buf_append_cstr(out, ",\"name\":");
        n = 0;
        s = ibex_json_get_str(fn, "name", &n);
        ibex_buf_append_json_str(out, s ? s : "", n);
        ibex_buf_append_cstr(out, ",\"input\":");
        append_input(out, ibex_json_get(fn, "arguments"));
        ibex_buf_append_cstr(out, "}");
    }
    ibex_buf_append_cstr(out, "],\"stop_reason\":\"");
    ibex_buf_append_cstr(out,
                         stop_reason(ibex_json_get_str(choice, "finish_reason", NULL), ncalls > 0));
    ibex_buf_append_cstr(out, "\",\"stop_sequence\":null,\"usage\":");
    struct usage u = {-1, -1, -1};
    read_usage(&u, ibex_json_get(root, "usage"));
    append_usage(out, &u, true);
    ibex_buf_append_cstr(out, "}");
    json_object_put(root);
    return 0;
}

/* ---- errors ---- */

void ibex_messages_append_error(struct ibex_buf *b, int status, const char *code,
                                const char *message, const char *param,
                                const char *field_errors_json, const char *request_id)
{
    ibex_buf_append_cstr(b, "{\"type\":\"error\",\"error\":{\"type\":\"");
    ibex_buf_append_cstr(b, ibex_anthropic_error_type(status));
    ibex_buf_append_cstr(b, "\",\"message\":");
    ibex_buf_append_json_str(b, message, strlen(message));
    ibex_buf_append_cstr(b, ",\"code\":");
    ibex_buf_append_json_str(b, code, strlen(code));
    ibex_buf_append_cstr(b, "},\"request_id\":");
    if (request_id)
        ibex_buf_append_json_str(b, request_id, strlen(request_id));
    else
        ibex_buf_append_cstr(b, "null");
    ibex_buf_append_cstr(b, "}");
}

/* ---- stream ---- */

void ibex_messages_stream_init(struct ibex_messages_stream *s, const char *model, size_t model_len)
{
    memset(s, 0, sizeof(*s));
    ibex_sse_init(&s->sse);
    s->model_len = model_len < IBEX_MESSAGES_MODEL_MAX ? model_len : IBEX_MESSAGES_MODEL_MAX;
    if (s->model_len)
        memcpy(s->model, model, s->model_len);
    s->tool = s->last_tool = -1;
    s->input_tokens = s->output_tokens = s->cached_tokens = -1;
}

void ibex_messages_stream_dispose(struct ibex_messages_stream *s)
{
    ibex_sse_dispose(&s->sse);
}

/* "event: <type>\ndata: {"type":"<type>"": the caller writes the rest of the object, then
 * event_end. */
static void event_begin(struct ibex_buf *out, const char *type)
{
    ibex_buf_append_cstr(out, "event: ");
    ibex_buf_append_cstr(out, type);
    ibex_buf_append_cstr(out, "\ndata: {\"type\":\"");
    ibex_buf_append_cstr(out, type);
    ibex_buf_append_cstr(out, "\"");
}

static void event_end(struct ibex_buf *out)
{
    ibex_buf_append_cstr(out, "}\n\n");
}

static void error_event(struct ibex_messages_stream *s, struct ibex_buf *out, int status,
                        const char *code, const char *message, const char *request_id)
{
    if (s->failed || s->stopped)
        return;
    s->failed = true;
    ibex_buf_append_cstr(out, "event: error\ndata: ");
    ibex_messages_append_error(out, status, code, message, NULL, NULL, request_id);
    ibex_buf_append_cstr(out, "\n\n");
}

static struct usage stream_usage(const struct ibex_messages_stream *s)
{
    return (struct usage){s->input_tokens, s->output_tokens, s->cached_tokens};
}

static void message_start(struct ibex_messages_stream *s, json_object *chunk)
{
    s->started = true;
    size_t idlen = 0;
    const char *id = ibex_json_get_str(chunk, "id", &idlen);
    event_begin(s->out, "message_start");
    ibex_buf_append_cstr(s->out, ",\"message\":{\"id\":");
    append_msg_id(s->out, id, idlen);
    ibex_buf_append_cstr(s->out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    append_model(s->out, ibex_json_get(chunk, "model"), s->model, s->model_len);
    /* OpenAI reports usage in the last chunk only: the counts come with message_delta */
    ibex_buf_append_cstr(s->out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                                 "\"usage\":");
    struct usage u = stream_usage(s);
    append_usage(s->out, &u, true);
    ibex_buf_append_cstr(s->out, "}");
    event_end(s->out);
}

static void block_stop(struct ibex_messages_stream *s)
{
    if (s->open == IBEX_MESSAGES_BLOCK_NONE)
        return;
    s->open = IBEX_MESSAGES_BLOCK_NONE;
    event_begin(s->out, "content_block_stop");
    ibex_buf_append_cstr(s->out, ",\"index\":");
    ibex_buf_append_u64(s->out, s->blocks - 1);
    event_end(s->out);
}

static void block_start(struct ibex_messages_stream *s, enum ibex_messages_block kind)
{
    block_stop(s);
    s->open = kind;
    event_begin(s->out, "content_block_start");
    ibex_buf_append_cstr(s->out, ",\"index\":");
    ibex_buf_append_u64(s->out, s->blocks++);
    ibex_buf_append_cstr(s->out, ",\"content_block\":");
}

static void delta_begin(struct ibex_messages_stream *s, const char *type)
{
    event_begin(s->out, "content_block_delta");
    ibex_buf_append_cstr(s->out, ",\"index\":");
    ibex_buf_append_u64(s->out, s->blocks - 1);
    ibex_buf_append_cstr(s->out, ",\"delta\":{\"type\":\"");
    ibex_buf_append_cstr(s->out, type);
    ibex_buf_append_cstr(s->out, "\",");
}

static void text_delta(struct ibex_messages_stream *s, json_object *text)
{
    if (!json_object_is_type(text, json_type_string) || json_object_get_string_len(text) == 0)
        return;
    if (s->open != IBEX_MESSAGES_BLOCK_TEXT) {
        block_start(s, IBEX_MESSAGES_BLOCK_TEXT);
        ibex_buf_append_cstr(s->out, "{\"type\":\"text\",\"text\":\"\"}");
        event_end(s->out);
    }
    delta_begin(s, "text_delta");
    ibex_buf_append_cstr(s->out, "\"text\":");
    ibex_json_append_str(s->out, text);
    ibex_buf_append_cstr(s->out, "}");
    event_end(s->out);
}

/* One entry of delta.tool_calls: a call with a new index opens a tool_use block, its argument
 * pieces are input_json_delta events. OpenAI streams calls one after the other; a piece of a
 * call that was already closed cannot be placed and ends the stream with an error. */
static void tool_delta(struct ibex_messages_stream *s, json_object *tc)
{
    json_object *fn = ibex_json_get(tc, "function"), *index = ibex_json_get(tc, "index");
    int64_t k = json_object_is_type(index, json_type_int) ? json_object_get_int64(index) : -1;
    if (k < 0) /* no index: the open call's piece, or the next call */
        k = s->open == IBEX_MESSAGES_BLOCK_TOOL ? s->tool : s->last_tool + 1;
    if (s->open != IBEX_MESSAGES_BLOCK_TOOL || k != s->tool) {
        if (k <= s->last_tool) {
            error_event(s, s->out, 502, "UPSTREAM_STREAM_ERROR",
                        "the provider's stream interleaves tool calls", NULL);
            return;
        }
        size_t n = 0;
        const char *str;
        block_start(s, IBEX_MESSAGES_BLOCK_TOOL);
        s->tool = s->last_tool = k;
        ibex_buf_append_cstr(s->out, "{\"type\":\"tool_use\",\"id\":");
        str = ibex_json_get_str(tc, "id", &n);
        ibex_buf_append_json_str(s->out, str ? str : "", n);
        ibex_buf_append_cstr(s->out, ",\"name\":");
        n = 0;
        str = ibex_json_get_str(fn, "name", &n);
        ibex_buf_append_json_str(s->out, str ? str : "", n);
        ibex_buf_append_cstr(s->out, ",\"input\":{}}");
        event_end(s->out);
    }
    json_object *args = ibex_json_get(fn, "arguments");
    if (!json_object_is_type(args, json_type_string) || json_object_get_string_len(args) == 0)
        return;
    delta_begin(s, "input_json_delta");
    ibex_buf_append_cstr(s->out, "\"partial_json\":");
    ibex_json_append_str(s->out, args);
    ibex_buf_append_cstr(s->out, "}");
    event_end(s->out);
}

/* The answer is complete: the open block closes, message_delta carries the stop reason and the
 * usage, message_stop ends the message. */
static void message_stop(struct ibex_messages_stream *s)
{
    if (!s->started)
        message_start(s, NULL);
    block_stop(s);
    event_begin(s->out, "message_delta");
    ibex_buf_append_cstr(s->out, ",\"delta\":{\"stop_reason\":\"");
    const char *stop = s->stop ? s->stop : "end_turn";
    /* Anthropic says tool_use when the answer calls tools; some servers say "stop" then */
    ibex_buf_append_cstr(s->out,
                         s->last_tool >= 0 && !strcmp(stop, "end_turn") ? "tool_use" : stop);
    ibex_buf_append_cstr(s->out, "\",\"stop_sequence\":null},\"usage\":");
    struct usage u = stream_usage(s);
    append_usage(s->out, &u, s->input_tokens >= 0);
    event_end(s->out);
    event_begin(s->out, "message_stop");
    event_end(s->out);
    s->stopped = true;
}

static void on_chunk(struct ibex_messages_stream *s, json_object *chunk)
{
    if (ibex_json_get(chunk, "error") != NULL) {
        /* the provider's words stay out of the client's stream, as with chat streams */
        error_event(s, s->out, 502, "UPSTREAM_STREAM_ERROR",
                    "the provider's stream reported an error", NULL);
        return;
    }
    if (!s->started)
        message_start(s, chunk);
    json_object *usage = ibex_json_get(chunk, "usage");
    if (usage) {
        struct usage u = stream_usage(s);
        read_usage(&u, usage);
        s->input_tokens = u.prompt;
        s->output_tokens = u.completion;
        s->cached_tokens = u.cached;
    }
    json_object *choices = ibex_json_get(chunk, "choices");
    size_t n =
        json_object_is_type(choices, json_type_array) ? json_object_array_length(choices) : 0;
    for (size_t i = 0; i < n && !s->failed; i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        json_object *index = ibex_json_get(c, "index");
        if (index != NULL &&
            !(json_object_is_type(index, json_type_int) && json_object_get_int64(index) == 0))
            continue; /* one choice is asked for; others are not the answer */
        json_object *delta = ibex_json_get(c, "delta");
        text_delta(s, ibex_json_get(delta, "content"));
        text_delta(s, ibex_json_get(delta, "refusal"));
        json_object *calls = ibex_json_get(delta, "tool_calls");
        size_t ncalls =
            json_object_is_type(calls, json_type_array) ? json_object_array_length(calls) : 0;
        for (size_t k = 0; k < ncalls && !s->failed; k++)
            tool_delta(s, json_object_array_get_idx(calls, k));
        const char *finish = ibex_json_get_str(c, "finish_reason", NULL);
        if (finish && !s->failed) {
            block_stop(s);
            if (s->stop == NULL)
                s->stop = ibex_anthropic_stop_reason(finish);
        }
    }
}

#define LINE_TOO_LONG "the provider's stream has a line over the size limit"

static void on_line(void *data, const char *value, size_t len)
{
    struct ibex_messages_stream *s = data;
    if (s->sse.skipped > 0)
        error_event(s, s->out, 502, "UPSTREAM_STREAM_ERROR", LINE_TOO_LONG, NULL);
    if (s->failed || s->stopped)
        return;
    if (len == 6 && memcmp(value, "[DONE]", 6) == 0) {
        message_stop(s);
        return;
    }
    json_object *chunk = NULL;
    char msg[8];
    if (ibex_json_parse(value, len, &chunk, msg, sizeof(msg)) != 0 ||
        !json_object_is_type(chunk, json_type_object)) {
        json_object_put(chunk);
        s->skipped++;
        return;
    }
    on_chunk(s, chunk);
    json_object_put(chunk);
}

void ibex_messages_stream_feed(struct ibex_messages_stream *s, const char *p, size_t len,
                               struct ibex_buf *out)
{
    if (len == 0 || s->failed || s->stopped)
        return;
    s->out = out;
    ibex_sse_feed(&s->sse, p, len, on_line, s);
    if (s->sse.skipped > 0)
        error_event(s, out, 502, "UPSTREAM_STREAM_ERROR", LINE_TOO_LONG, NULL);
    s->out = NULL;
}

void ibex_messages_stream_end(struct ibex_messages_stream *s, struct ibex_buf *out)
{
    ibex_messages_stream_feed(s, "\n", 1, out); /* a last line without its line end counts */
    if (s->failed || s->stopped)
        return;
    s->out = out;
    if (s->stop) /* a server that ends its stream without [DONE] */
        message_stop(s);
    else
        error_event(s, out, 502, "UPSTREAM_STREAM_ERROR",
                    "the provider's stream ended before its end", NULL);
    s->out = NULL;
}

void ibex_messages_stream_error(struct ibex_messages_stream *s, int status, const char *code,
                                const char *message, const char *request_id, struct ibex_buf *out)
{
    error_event(s, out, status, code, message, request_id);
}

/* ---- the dialect chat.c runs ---- */

static int dialect_answer(const struct ibex_chat_request *chat, const char *body, size_t len,
                          struct ibex_buf *out)
{
    return ibex_messages_answer(body, len, chat->model, chat->model_len, out);
}

static void stream_cleanup(void *s)
{
    ibex_messages_stream_dispose(s);
}

static void *dialect_stream_open(const struct ibex_chat_request *chat, struct ibex_arena *arena)
{
    struct ibex_messages_stream *s = ibex_arena_alloc(arena, sizeof(*s));
    ibex_messages_stream_init(s, chat->model, chat->model_len);
    ibex_arena_on_free(arena, stream_cleanup, s);
    return s;
}

static void dialect_stream_feed(void *s, const char *p, size_t len, struct ibex_buf *out)
{
    ibex_messages_stream_feed(s, p, len, out);
}

static void dialect_stream_end(void *s, struct ibex_buf *out)
{
    ibex_messages_stream_end(s, out);
}

static void dialect_stream_error(void *s, int status, const char *code, const char *message,
                                 const char *request_id, struct ibex_buf *out)
{
    ibex_messages_stream_error(s, status, code, message, request_id, out);
}

const struct ibex_chat_dialect ibex_messages_dialect = {
    .route = IBEX_ROUTE_MESSAGES,
    .api_key_header = true,
    .error_body = ibex_messages_append_error,
    .translate_request = ibex_messages_request,
    .translate_answer = dialect_answer,
    .stream_open = dialect_stream_open,
    .stream_feed = dialect_stream_feed,
    .stream_end = dialect_stream_end,
    .stream_error = dialect_stream_error,
};
