/* Google Gemini (the Generative Language API, v1beta): OpenAI chat requests become
 * generateContent bodies, and Gemini's answers come back as chat.completion objects or
 * chat.completion.chunk streams. docs/providers.md has the mapping table and the 400 list.
 *
 * Invariants:
 * - Nothing the client asked for is lost silently: a field or part with no Gemini equivalent
 *   that could change the answer is a 400 (VALIDATION_ERROR naming the field); only fields that
 *   cannot change the answer are dropped, and unknown fields are refused.
 * - JSON is written with ibex_buf appends (the OpenAI framing of answers and chunks with
 *   openai_out.h); json-c only parses, and serialises sub-documents the client or Gemini wrote
 *   (schemas, function arguments, numbers) as they are. A refused request gets one error,
 *   recorded with ibex_chat_error_add like the validator's.
 * - A stream's common events (one candidate's text, finishReason, usage) are read in place by a
 *   scanner that allocates nothing and writes what the json-c path writes, byte for byte; every
 *   other event, and any doubt, goes through json-c (see "the fast path" below).
 * - A stream decoder holds O(1) state besides its partial SSE line (bounded by line_max) and the
 *   translated logprobs of one event (within a constant factor of that line); every data line
 *   is one GenerateContentResponse translated on its own, so the output does not depend on how
 *   the bytes were split, and its size is within a constant factor of the input.
 * - Tool call ids are "call_<base>_<n>", base the responseId (or random when Gemini sends none).
 *   Thought signatures ride in tool_calls[].extra_content.google.thought_signature both ways,
 *   the convention of Google's own OpenAI-compatible endpoint. */
#include "provider.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../core/id.h"
#include "../core/json.h"
#include "../core/sse.h"
#include "gemini.h"
#include "openai_out.h"

#define PROVIDER "the gemini provider"
#define NOT_SUPPORTED "is not supported by " PROVIDER
#define MODEL_MAX 128    /* longest model name accepted in the URL path */
#define NAME_MAX_LEN 128 /* responseId / modelVersion longer than this are not echoed */
#define BASE_MAX 64      /* longest responseId used as the base of tool call ids */
#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- small json-c helpers ---- */

/* The member, or NULL when absent or JSON null. */
static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static bool is(json_object *o, enum json_type t)
{
    return o != NULL && json_object_is_type(o, t);
}

static bool is_number(json_object *o)
{
    return is(o, json_type_int) || is(o, json_type_double);
}

static bool str_is(json_object *o, const char *s)
{
    return is(o, json_type_string) && strcmp(json_object_get_string(o), s) == 0;
}

/* A string as a struct ibex_str; {NULL, 0} when v is not a string. */
static struct ibex_str str_of(json_object *v)
{
    if (!is(v, json_type_string))
        return IBEX_STR_NULL;
    return (struct ibex_str){json_object_get_string(v), (size_t)json_object_get_string_len(v)};
}

static bool str_eq(struct ibex_str s, const char *lit)
{
    return s.p != NULL && ibex_str_eq_cstr(s, lit);
}

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* Whether s is the text of one JSON object (strict, as the gateway parses bodies). */
static bool json_object_text(const char *s, size_t len)
{
    json_object *o = NULL;
    char msg[8];
    bool ok = ibex_json_parse(s, len, &o, msg, sizeof(msg)) == 0 && is(o, json_type_object);
    json_object_put(o);
    return ok;
}

/* ---- request errors ---- */

/* The request's one error: what is wrong with the field named by fmt. Returns -1. */
static int invalid(struct ibex_chat_error *e, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int invalid(struct ibex_chat_error *e, const char *what, const char *fmt, ...)
{
    char field[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(field, sizeof(field), fmt, ap);
    va_end(ap);
    return ibex_chat_error_add(e, field, what);
}

/* ---- request: messages ---- */

struct req {
    struct ibex_buf *b;  /* the body: contents first */
    struct ibex_buf sys; /* systemInstruction parts */
    struct ibex_chat_error *e;
    json_object *msgs;
    size_t nsys;      /* parts in sys */
    size_t ncontents; /* contents written */
    size_t nparts;    /* parts of the content being written */
    bool tool_turn;   /* a user content of functionResponse parts is open */
};

/* Starts a part of the open content (the comma between parts). */
static void part(struct req *r)
{
    if (r->nparts++ > 0)
        ibex_buf_append_cstr(r->b, ",");
}

static void open_content(struct req *r, const char *role)
{
    ibex_buf_append_cstr(r->b, r->ncontents++ ? ",{\"role\":\"" : "{\"role\":\"");
    ibex_buf_append_cstr(r->b, role);
    ibex_buf_append_cstr(r->b, "\",\"parts\":[");
    r->nparts = 0;
}

static void close_tool_turn(struct req *r)
{
    if (r->tool_turn)
        ibex_buf_append_cstr(r->b, "]}");
    r->tool_turn = false;
}

static void text_part(struct req *r, const char *s, size_t len)
{
    if (len == 0) /* Gemini refuses empty text; an empty string says nothing */
        return;
    part(r);
    ibex_buf_append_cstr(r->b, "{\"text\":");
    ibex_buf_append_json_str(r->b, s, len);
    ibex_buf_append_cstr(r->b, "}");
}

static void inline_part(struct req *r, const char *mime, size_t mime_len, const char *data,
                        size_t len)
{
    part(r);
    ibex_buf_append_cstr(r->b, "{\"inlineData\":{\"mimeType\":");
    ibex_buf_append_json_str(r->b, mime, mime_len);
    ibex_buf_append_cstr(r->b, ",\"data\":");
    ibex_buf_append_json_str(r->b, data, len);
    ibex_buf_append_cstr(r->b, "}}");
}

/* MIME type by file extension (of a URL's path or a file name), or NULL. */
static const char *mime_of(const char *s, size_t len)
{
    static const char *const table[][2] = {{"png", "image/png"},   {"jpg", "image/jpeg"},
                                           {"jpeg", "image/jpeg"}, {"webp", "image/webp"},
                                           {"gif", "image/gif"},   {"heic", "image/heic"},
                                           {"heif", "image/heif"}, {"pdf", "application/pdf"}};
    size_t end = 0;
    while (end < len && s[end] != '?' && s[end] != '#')
        end++;
    size_t dot = end;
    while (dot > 0 && s[dot - 1] != '.' && s[dot - 1] != '/')
        dot--;
    if (dot == 0 || s[dot - 1] != '.')
        return NULL;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strlen(table[i][0]) == end - dot && strncasecmp(s + dot, table[i][0], end - dot) == 0)
            return table[i][1];
    return NULL;
}

/* "data:<mime>[;params];base64,<data>" as inlineData. */
static int data_url_part(struct req *r, const char *url, size_t len, const char *field)
{
    const char *comma = memchr(url, ',', len);
    size_t meta = comma ? (size_t)(comma - url) : 0;
    if (comma == NULL || meta < 5 + 7 || memcmp(url + meta - 7, ";base64", 7) != 0)
        return invalid(r->e, "must be a base64 data: URL", "%s", field);
    size_t mime = 5;
    while (mime < meta && url[mime] != ';')
        mime++;
    if (mime == 5)
        return invalid(r->e, "must name a MIME type", "%s", field);
    inline_part(r, url + 5, mime - 5, comma + 1, len - meta - 1);
    return 0;
}

static int image_part(struct req *r, json_object *img, size_t i, size_t j)
{
    char field[96];
    snprintf(field, sizeof(field), "messages[%zu].content[%zu].image_url", i, j);
    json_object *url = is(img, json_type_string) ? img : get(img, "url");
    if (!is(url, json_type_string))
        return invalid(r->e, "must be an object with a url string", "%s", field);
    const char *s = json_object_get_string(url);
    size_t len = (size_t)json_object_get_string_len(url);
    if (len >= 5 && strncasecmp(s, "data:", 5) == 0)
        return data_url_part(r, s, len, field);
    if (strncasecmp(s, "https://", 8) != 0 && strncasecmp(s, "http://", 7) != 0)
        return invalid(r->e, "must be a data: URL or an http(s) URL", "%s.url", field);
    const char *mime = mime_of(s, len);
    if (mime == NULL)
        return invalid(r->e,
                       "has no file extension " PROVIDER " can take a MIME type from "
                       "(png, jpg, jpeg, webp, gif, heic, heif, pdf); send a data: URL",
                       "%s.url", field);
    part(r);
    ibex_buf_append_cstr(r->b, "{\"fileData\":{\"mimeType\":\"");
    ibex_buf_append_cstr(r->b, mime);
    ibex_buf_append_cstr(r->b, "\",\"fileUri\":");
    ibex_json_append_str(r->b, url);
    ibex_buf_append_cstr(r->b, "}}");
    return 0;
}

static int audio_part(struct req *r, json_object *audio, size_t i, size_t j)
{
    static const char *const formats[] = {"wav", "mp3", "aiff", "aac", "ogg", "flac"};
    json_object *data = get(audio, "data"), *format = get(audio, "format");
    if (!is(data, json_type_string) || !is(format, json_type_string))
        return invalid(r->e, "must be an object with data and format strings",
                       "messages[%zu].content[%zu].input_audio", i, j);
    for (size_t k = 0; k < sizeof(formats) / sizeof(formats[0]); k++) {
        if (str_is(format, formats[k])) {
            char mime[16];
            int n = snprintf(mime, sizeof(mime), "audio/%s", formats[k]);
            inline_part(r, mime, (size_t)n, json_object_get_string(data),
                        (size_t)json_object_get_string_len(data));
            return 0;
        }
    }
    return invalid(r->e, "must be one of wav, mp3, aiff, aac, ogg, flac",
                   "messages[%zu].content[%zu].input_audio.format", i, j);
}

static int file_part(struct req *r, json_object *file, size_t i, size_t j)
{
    char field[96];
    snprintf(field, sizeof(field), "messages[%zu].content[%zu].file", i, j);
    json_object *data = get(file, "file_data"), *name = get(file, "filename");
    if (get(file, "file_id") != NULL && data == NULL)
        return invalid(r->e, "OpenAI file ids are not supported by " PROVIDER "; send file_data",
                       "%s.file_id", field);
    if (!is(data, json_type_string))
        return invalid(r->e, "must be an object with a file_data string", "%s", field);
    const char *s = json_object_get_string(data);
    size_t len = (size_t)json_object_get_string_len(data);
    if (len >= 5 && strncasecmp(s, "data:", 5) == 0)
        return data_url_part(r, s, len, field);
    const char *mime =
        is(name, json_type_string)
            ? mime_of(json_object_get_string(name), (size_t)json_object_get_string_len(name))
            : NULL;
    if (mime == NULL)
        return invalid(r->e,
                       "must be a data: URL, or come with a filename whose extension "
                       "names its type",
                       "%s.file_data", field);
    inline_part(r, mime, strlen(mime), s, len);
    return 0;
}

/* Parts of a user message's content (a string or an array of parts). */
static int user_parts(struct req *r, json_object *content, size_t i)
{
    if (content == NULL)
        return 0;
    if (is(content, json_type_string)) {
        text_part(r, json_object_get_string(content), (size_t)json_object_get_string_len(content));
        return 0;
    }
    size_t n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++) {
        json_object *p = json_object_array_get_idx(content, j);
        json_object *type = get(p, "type"), *v;
        int rc = 0;
        if (str_is(type, "text") && is(v = get(p, "text"), json_type_string))
            text_part(r, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        else if (str_is(type, "image_url"))
            rc = image_part(r, get(p, "image_url"), i, j);
        else if (str_is(type, "input_audio"))
            rc = audio_part(r, get(p, "input_audio"), i, j);
        else if (str_is(type, "file"))
            rc = file_part(r, get(p, "file"), i, j);
        else if (str_is(type, "text"))
            rc = invalid(r->e, "must have a text string", "messages[%zu].content[%zu]", i, j);
        else
            rc = invalid(r->e, NOT_SUPPORTED, "messages[%zu].content[%zu].type", i, j);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The text of a content that may only hold text (system, assistant, tool): a string, or an
 * array of text (and, for the assistant, refusal) parts; each piece goes to fn. */
static int text_pieces(struct req *r, json_object *content, size_t i, bool refusals,
                       void (*fn)(void *, const char *, size_t), void *ctx)
{
    if (content == NULL)
        return 0;
    if (is(content, json_type_string)) {
        fn(ctx, json_object_get_string(content), (size_t)json_object_get_string_len(content));
        return 0;
    }
    size_t n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++) {
        json_object *p = json_object_array_get_idx(content, j);
        json_object *type = get(p, "type");
        const char *key = str_is(type, "text")                  ? "text"
                          : refusals && str_is(type, "refusal") ? "refusal"
                                                                : NULL;
        json_object *v = key ? get(p, key) : NULL;
        if (key == NULL)
            return invalid(r->e, NOT_SUPPORTED " in this role", "messages[%zu].content[%zu].type",
                           i, j);
        if (!is(v, json_type_string))
            return invalid(r->e, "must be a string", "messages[%zu].content[%zu].%s", i, j, key);
        fn(ctx, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    }
    return 0;
}

static void sys_piece(void *ctx, const char *s, size_t len)
{
    struct req *r = ctx;
    if (len == 0)
        return;
    ibex_buf_append_cstr(&r->sys, r->nsys++ ? ",{\"text\":" : "{\"text\":");
    ibex_buf_append_json_str(&r->sys, s, len);
    ibex_buf_append_cstr(&r->sys, "}");
}

/* Function arguments (JSON text of an object; empty means none) as the functionCall's args. */
static int put_args(struct req *r, json_object *args, const char *field)
{
    if (args == NULL) {
        ibex_buf_append_cstr(r->b, "{}");
        return 0;
    }
    if (!is(args, json_type_string))
        return invalid(r->e, "must be a string of JSON", "%s", field);
    const char *s = json_object_get_string(args);
    size_t len = (size_t)json_object_get_string_len(args);
    if (blank(s, len)) {
        ibex_buf_append_cstr(r->b, "{}");
        return 0;
    }
    if (!json_object_text(s, len))
        return invalid(r->e, "must be the JSON text of an object", "%s", field);
    ibex_buf_append(r->b, s, len); /* strictly valid JSON: goes in as it is */
    return 0;
}

static int call_part(struct req *r, json_object *fn, json_object *signature, const char *field)
{
    json_object *name = get(fn, "name");
    char sub[128];
    if (!is(name, json_type_string) || json_object_get_string_len(name) == 0)
        return invalid(r->e, "must be a non-empty string", "%s.name", field);
    part(r);
    ibex_buf_append_cstr(r->b, "{\"functionCall\":{\"name\":");
    ibex_json_append_str(r->b, name);
    ibex_buf_append_cstr(r->b, ",\"args\":");
    snprintf(sub, sizeof(sub), "%s.arguments", field);
    if (put_args(r, get(fn, "arguments"), sub) != 0)
        return -1;
    ibex_buf_append_cstr(r->b, "}");
    if (is(signature, json_type_string)) {
        ibex_buf_append_cstr(r->b, ",\"thoughtSignature\":");
        ibex_json_append_str(r->b, signature);
    }
    ibex_buf_append_cstr(r->b, "}");
    return 0;
}

static void assistant_piece(void *ctx, const char *s, size_t len)
{
    text_part(ctx, s, len);
}

static int assistant_parts(struct req *r, json_object *m, size_t i)
{
    json_object *refusal = get(m, "refusal");
    if (get(m, "audio") != NULL)
        return invalid(r->e, NOT_SUPPORTED, "messages[%zu].audio", i);
    if (text_pieces(r, get(m, "content"), i, true, assistant_piece, r) != 0)
        return -1;
    if (is(refusal, json_type_string))
        text_part(r, json_object_get_string(refusal), (size_t)json_object_get_string_len(refusal));
    json_object *calls = get(m, "tool_calls");
    if (calls != NULL && !is(calls, json_type_array))
        return invalid(r->e, "must be an array", "messages[%zu].tool_calls", i);
    size_t n = calls ? json_object_array_length(calls) : 0;
    char field[96];
    for (size_t j = 0; j < n; j++) {
        json_object *tc = json_object_array_get_idx(calls, j);
        json_object *type = get(tc, "type"), *fn = get(tc, "function");
        if (type != NULL && !str_is(type, "function"))
            return invalid(r->e, NOT_SUPPORTED, "messages[%zu].tool_calls[%zu].type", i, j);
        if (!is(fn, json_type_object))
            return invalid(r->e, "must be an object", "messages[%zu].tool_calls[%zu].function", i,
                           j);
        json_object *sig = get(get(get(tc, "extra_content"), "google"), "thought_signature");
        snprintf(field, sizeof(field), "messages[%zu].tool_calls[%zu].function", i, j);
        if (call_part(r, fn, sig, field) != 0)
            return -1;
    }
    json_object *legacy = get(m, "function_call");
    if (legacy != NULL) {
        if (!is(legacy, json_type_object))
            return invalid(r->e, "must be an object", "messages[%zu].function_call", i);
        snprintf(field, sizeof(field), "messages[%zu].function_call", i);
        if (call_part(r, legacy, NULL, field) != 0)
            return -1;
    }
    return 0;
}

/* The function name of the tool call with this id, from the nearest assistant message before
 * message i, or NULL. */
static json_object *tool_call_name(json_object *msgs, size_t i, json_object *id)
{
    for (size_t k = i; k-- > 0;) {
        json_object *m = json_object_array_get_idx(msgs, k);
        if (!str_is(get(m, "role"), "assistant"))
            continue;
        json_object *calls = get(m, "tool_calls");
        size_t n = is(calls, json_type_array) ? json_object_array_length(calls) : 0;
        for (size_t j = 0; j < n; j++) {
            json_object *tc = json_object_array_get_idx(calls, j);
            json_object *tid = get(tc, "id");
            if (is(tid, json_type_string) &&
                json_object_get_string_len(tid) == json_object_get_string_len(id) &&
                memcmp(json_object_get_string(tid), json_object_get_string(id),
                       (size_t)json_object_get_string_len(id)) == 0) {
                json_object *name = get(get(tc, "function"), "name");
                return is(name, json_type_string) ? name : NULL;
            }
        }
    }
    return NULL;
}

static void tool_piece(void *ctx, const char *s, size_t len)
{
    ibex_buf_append(ctx, s, len);
}

/* A tool (or legacy function) message as a functionResponse part of the open tool turn: a
 * content that is the JSON text of an object is the response itself, any other content is
 * {"content": "<text>"}. */
static int tool_part(struct req *r, json_object *m, json_object *name, size_t i)
{
    json_object *content = get(m, "content");
    const char *s = "";
    size_t len = 0;
    struct ibex_buf joined;
    ibex_buf_init(&joined);
    if (is(content, json_type_string)) {
        s = json_object_get_string(content);
        len = (size_t)json_object_get_string_len(content);
    } else if (content != NULL) {
        if (text_pieces(r, content, i, false, tool_piece, &joined) != 0) {
            ibex_buf_dispose(&joined);
            return -1;
        }
        s = joined.p ? joined.p : "";
        len = joined.len;
    }
    if (!r->tool_turn) {
        open_content(r, "user");
        r->tool_turn = true;
    }
    part(r);
    ibex_buf_append_cstr(r->b, "{\"functionResponse\":{\"name\":");
    ibex_json_append_str(r->b, name);
    ibex_buf_append_cstr(r->b, ",\"response\":");
    size_t k = 0;
    while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r'))
        k++;
    if (k < len && s[k] == '{' && json_object_text(s, len)) {
        ibex_buf_append(r->b, s, len);
    } else {
        ibex_buf_append_cstr(r->b, "{\"content\":");
        ibex_buf_append_json_str(r->b, s, len);
        ibex_buf_append_cstr(r->b, "}");
    }
    ibex_buf_append_cstr(r->b, "}}");
    ibex_buf_dispose(&joined);
    return 0;
}

static int put_messages(struct req *r)
{
    size_t n = json_object_array_length(r->msgs);
    ibex_buf_append_cstr(r->b, "{\"contents\":[");
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(r->msgs, i);
        const char *role = json_object_get_string(get(m, "role"));
        json_object *content = get(m, "content");
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            if (text_pieces(r, content, i, false, sys_piece, r) != 0)
                return -1;
            continue;
        }
        if (!strcmp(role, "tool") || !strcmp(role, "function")) {
            json_object *name;
            if (!strcmp(role, "function")) {
                name = get(m, "name");
                if (!is(name, json_type_string) || json_object_get_string_len(name) == 0)
                    return invalid(r->e, "must be a non-empty string", "messages[%zu].name", i);
            } else {
                json_object *id = get(m, "tool_call_id");
                if (!is(id, json_type_string))
                    return invalid(r->e, "is required and must be a string",
                                   "messages[%zu].tool_call_id", i);
                name = tool_call_name(r->msgs, i, id);
                if (name == NULL)
                    return invalid(r->e,
                                   "does not match a tool call of an earlier assistant message "
                                   "(" PROVIDER " needs the function's name)",
                                   "messages[%zu].tool_call_id", i);
            }
            if (tool_part(r, m, name, i) != 0)
                return -1;
            continue;
        }
        close_tool_turn(r);
        /* A message that yields no part (an empty assistant turn) is left out whole. */
        size_t mark = r->b->len;
        open_content(r, !strcmp(role, "assistant") ? "model" : "user");
        int rc = !strcmp(role, "assistant") ? assistant_parts(r, m, i) : user_parts(r, content, i);
        if (rc != 0)
            return -1;
        if (r->nparts == 0) {
            r->b->len = mark;
            r->b->p[mark] = '\0';
            r->ncontents--;
        } else {
            ibex_buf_append_cstr(r->b, "]}");
        }
    }
    close_tool_turn(r);
    ibex_buf_append_cstr(r->b, "]");
    if (r->nsys > 0) {
        ibex_buf_append_cstr(r->b, ",\"systemInstruction\":{\"parts\":[");
        ibex_buf_append(r->b, r->sys.p, r->sys.len);
        ibex_buf_append_cstr(r->b, "]}");
    }
    return 0;
}

/* ---- request: top-level fields ---- */

enum field {
    F_PASS = 1, /* read elsewhere: model, messages, stream, stream_options */
    F_DROP,     /* cannot change the answer */
    F_REFUSE,   /* no Gemini equivalent */
    F_MAX_TOKENS,
    F_MAX_COMPLETION_TOKENS,
    F_TEMPERATURE,
    F_TOP_P,
    F_TOP_K,
    F_STOP,
    F_N,
    F_SEED,
    F_PRESENCE_PENALTY,
    F_FREQUENCY_PENALTY,
    F_RESPONSE_FORMAT,
    F_LOGPROBS,
    F_TOP_LOGPROBS,
    F_TOOLS,
    F_TOOL_CHOICE,
    F_PARALLEL_TOOL_CALLS,
    F_MODALITIES,
    F_LOGIT_BIAS,
    NFIELDS
};

static const struct {
    const char *name;
    enum field f;
} fields[] = {
    {"model", F_PASS},
    {"messages", F_PASS},
    {"stream", F_PASS},
    {"stream_options", F_PASS},
    {"max_tokens", F_MAX_TOKENS},
    {"max_completion_tokens", F_MAX_COMPLETION_TOKENS},
    {"temperature", F_TEMPERATURE},
    {"top_p", F_TOP_P},
    {"top_k", F_TOP_K},
    {"stop", F_STOP},
    {"n", F_N},
    {"seed", F_SEED},
    {"presence_penalty", F_PRESENCE_PENALTY},
    {"frequency_penalty", F_FREQUENCY_PENALTY},
    {"response_format", F_RESPONSE_FORMAT},
    {"logprobs", F_LOGPROBS},
    {"top_logprobs", F_TOP_LOGPROBS},
    {"tools", F_TOOLS},
    {"tool_choice", F_TOOL_CHOICE},
    {"parallel_tool_calls", F_PARALLEL_TOOL_CALLS},
    {"modalities", F_MODALITIES},
    {"logit_bias", F_LOGIT_BIAS},
    {"user", F_DROP},
    {"metadata", F_DROP},
    {"store", F_DROP},
    {"service_tier", F_DROP},
    {"safety_identifier", F_DROP},
    {"prompt_cache_key", F_DROP},
    {"prompt_cache_retention", F_DROP},
};

static void gen_key(struct ibex_buf *b, bool *any, const char *key)
{
    ibex_buf_append_cstr(b, *any ? ",\"" : ",\"generationConfig\":{\"");
    ibex_buf_append_cstr(b, key);
    ibex_buf_append_cstr(b, "\":");
    *any = true;
}

static int put_tools(struct req *r, json_object *tools)
{
    if (!is(tools, json_type_array))
        return invalid(r->e, "must be an array", "tools");
    size_t n = json_object_array_length(tools);
    ibex_buf_append_cstr(r->b, ",\"tools\":[{\"functionDeclarations\":[");
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        json_object *fn = get(t, "function");
        if (!str_is(get(t, "type"), "function"))
            return invalid(r->e, NOT_SUPPORTED " (function tools only)", "tools[%zu].type", i);
        json_object *name = get(fn, "name"), *desc = get(fn, "description");
        json_object *params = get(fn, "parameters");
        if (!is(name, json_type_string) || json_object_get_string_len(name) == 0)
            return invalid(r->e, "must be a non-empty string", "tools[%zu].function.name", i);
        if (desc != NULL && !is(desc, json_type_string))
            return invalid(r->e, "must be a string", "tools[%zu].function.description", i);
        if (params != NULL && !is(params, json_type_object))
            return invalid(r->e, "must be a JSON Schema object", "tools[%zu].function.parameters",
                           i);
        ibex_buf_append_cstr(r->b, i ? ",{\"name\":" : "{\"name\":");
        ibex_json_append_str(r->b, name);
        if (desc) {
            ibex_buf_append_cstr(r->b, ",\"description\":");
            ibex_json_append_str(r->b, desc);
        }
        if (params) {
            /* JSON Schema as clients write it: parametersJsonSchema takes it whole, where
             * parameters would take only Gemini's OpenAPI subset. */
            ibex_buf_append_cstr(r->b, ",\"parametersJsonSchema\":");
            ibex_json_append(r->b, params);
        }
        ibex_buf_append_cstr(r->b, "}");
    }
    ibex_buf_append_cstr(r->b, "]}]");
    return 0;
}

static int put_tool_choice(struct req *r, json_object *choice, size_t ntools)
{
    const char *mode = NULL;
    json_object *name = NULL;
    if (str_is(choice, "none")) {
        mode = "NONE";
    } else if (str_is(choice, "auto")) {
        mode = "AUTO";
    } else if (str_is(choice, "required")) {
        mode = "ANY";
    } else if (is(choice, json_type_object) && str_is(get(choice, "type"), "function")) {
        mode = "ANY";
        name = get(get(choice, "function"), "name");
        if (!is(name, json_type_string))
            return invalid(r->e, "must be a string", "tool_choice.function.name");
    } else if (is(choice, json_type_object) && is(get(choice, "type"), json_type_string)) {
        return invalid(r->e, NOT_SUPPORTED, "tool_choice.type");
    } else {
        return invalid(r->e, "must be none, auto, required or a function", "tool_choice");
    }
    if (ntools == 0) {
        if (strcmp(mode, "ANY") == 0)
            return invalid(r->e, "asks for a tool call but the request has no tools",
                           "tool_choice");
        return 0; /* none or auto without tools: what Gemini does anyway */
    }
    ibex_buf_append_cstr(r->b, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"");
    ibex_buf_append_cstr(r->b, mode);
    ibex_buf_append_cstr(r->b, "\"");
    if (name) {
        ibex_buf_append_cstr(r->b, ",\"allowedFunctionNames\":[");
        ibex_json_append_str(r->b, name);
        ibex_buf_append_cstr(r->b, "]");
    }
    ibex_buf_append_cstr(r->b, "}}");
    return 0;
}

static int put_generation(struct req *r, json_object *const *v)
{
    struct ibex_buf *b = r->b;
    bool any = false;
    json_object *max = v[F_MAX_COMPLETION_TOKENS] ? v[F_MAX_COMPLETION_TOKENS] : v[F_MAX_TOKENS];
    if (max) {
        gen_key(b, &any, "maxOutputTokens");
        ibex_json_append(b, max);
    }
    static const struct {
        enum field f;
        const char *key;
    } plain[] = {{F_TEMPERATURE, "temperature"},
                 {F_TOP_P, "topP"},
                 {F_TOP_K, "topK"},
                 {F_SEED, "seed"},
                 {F_PRESENCE_PENALTY, "presencePenalty"},
                 {F_FREQUENCY_PENALTY, "frequencyPenalty"}};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (v[plain[i].f]) {
            gen_key(b, &any, plain[i].key);
            ibex_json_append(b, v[plain[i].f]);
        }
    }
    json_object *stop = v[F_STOP];
    if (is(stop, json_type_string)) {
        gen_key(b, &any, "stopSequences");
        ibex_buf_append_cstr(b, "[");
        ibex_json_append_str(b, stop);
        ibex_buf_append_cstr(b, "]");
    } else if (is(stop, json_type_array) && json_object_array_length(stop) > 0) {
        gen_key(b, &any, "stopSequences");
        for (size_t i = 0; i < json_object_array_length(stop); i++) {
            json_object *s = json_object_array_get_idx(stop, i);
            if (!is(s, json_type_string))
                return invalid(r->e, "must be a string", "stop[%zu]", i);
            ibex_buf_append_cstr(b, i ? "," : "[");
            ibex_json_append_str(b, s);
        }
        ibex_buf_append_cstr(b, "]");
    } else if (stop != NULL && !is(stop, json_type_array)) {
        return invalid(r->e, "must be a string or an array of strings", "stop");
    }
    json_object *rf = v[F_RESPONSE_FORMAT];
    if (rf != NULL) {
        json_object *type = get(rf, "type");
        if (str_is(type, "json_object")) {
            gen_key(b, &any, "responseMimeType");
            ibex_buf_append_cstr(b, "\"application/json\"");
        } else if (str_is(type, "json_schema")) {
            json_object *js = get(rf, "json_schema");
            json_object *schema = get(js, "schema");
            if (!is(js, json_type_object))
                return invalid(r->e, "must be an object", "response_format.json_schema");
            if (schema != NULL && !is(schema, json_type_object))
                return invalid(r->e, "must be a JSON Schema object",
                               "response_format.json_schema.schema");
            gen_key(b, &any, "responseMimeType");
            ibex_buf_append_cstr(b, "\"application/json\"");
            if (schema) {
                gen_key(b, &any, "responseJsonSchema");
                ibex_json_append(b, schema);
            }
        } else if (!str_is(type, "text")) {
            return invalid(r->e, "must be text, json_object or json_schema",
                           "response_format.type");
        }
    }
    json_object *lp = v[F_LOGPROBS], *top = v[F_TOP_LOGPROBS];
    if (lp != NULL && !is(lp, json_type_boolean))
        return invalid(r->e, "must be a boolean", "logprobs");
    if (top != NULL && !is(top, json_type_int))
        return invalid(r->e, "must be an integer", "top_logprobs");
    if (lp && json_object_get_boolean(lp)) {
        gen_key(b, &any, "responseLogprobs");
        ibex_buf_append_cstr(b, "true");
        if (top) {
            gen_key(b, &any, "logprobs");
            ibex_json_append(b, top);
        }
    }
    if (any)
        ibex_buf_append_cstr(b, "}");
    return 0;
}

/* Checks the fields that only need a look, then writes tools, toolConfig, generationConfig. */
static int put_options(struct req *r, json_object *root)
{
    json_object *v[NFIELDS] = {0};
    json_object_object_foreach(root, key, val)
    {
        if (val == NULL)
            continue; /* a JSON null is an absent field */
        enum field f = F_REFUSE;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            if (fields[i].name[0] == key[0] && strcmp(fields[i].name, key) == 0) {
                f = fields[i].f;
                break;
            }
        }
        if (f == F_REFUSE)
            return invalid(r->e, NOT_SUPPORTED, "%s", key[0] ? key : "\"\"");
        v[f] = val;
    }
    if (v[F_TOP_K] && !is_number(v[F_TOP_K]))
        return invalid(r->e, "must be a number", "top_k");
    if (v[F_N] && !(is_number(v[F_N]) && json_object_get_double(v[F_N]) == 1.0))
        return invalid(r->e, "must be 1: " PROVIDER " answers with one choice", "n");
    if (v[F_LOGIT_BIAS] &&
        !(is(v[F_LOGIT_BIAS], json_type_object) && json_object_object_length(v[F_LOGIT_BIAS]) == 0))
        return invalid(r->e, NOT_SUPPORTED, "logit_bias");
    json_object *mod = v[F_MODALITIES];
    if (mod && !(is(mod, json_type_array) && json_object_array_length(mod) == 1 &&
                 str_is(json_object_array_get_idx(mod, 0), "text")))
        return invalid(r->e, NOT_SUPPORTED " (text output only)", "modalities");
    json_object *tools = v[F_TOOLS];
    size_t ntools = is(tools, json_type_array) ? json_object_array_length(tools) : 0;
    json_object *par = v[F_PARALLEL_TOOL_CALLS];
    if (par && !is(par, json_type_boolean))
        return invalid(r->e, "must be a boolean", "parallel_tool_calls");
    if (par && !json_object_get_boolean(par) && ntools > 0)
        return invalid(r->e, "false " NOT_SUPPORTED " (Gemini may call several functions at once)",
                       "parallel_tool_calls");
    if (tools && (ntools > 0 || !is(tools, json_type_array)) && put_tools(r, tools) != 0)
        return -1;
    if (v[F_TOOL_CHOICE] && put_tool_choice(r, v[F_TOOL_CHOICE], ntools) != 0)
        return -1;
    return put_generation(r, v);
}

/* The model name for the URL path: "models/" prefix taken off, then 1-128 of [A-Za-z0-9._-],
 * so the name can neither leave the path segment nor change the method after ':'. */
static int model_name(const struct ibex_chat_request *chat, const char **name, size_t *len,
                      struct ibex_chat_error *e)
{
    const char *s = chat->model;
    size_t n = chat->model_len;
    if (n > 7 && memcmp(s, "models/", 7) == 0) {
        s += 7;
        n -= 7;
    }
    bool ok = n > 0 && n <= MODEL_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok)
        return invalid(e,
                       "must be 1-128 letters, digits, '.', '_' or '-' for " PROVIDER
                       " (optionally after models/)",
                       "model");
    *name = s;
    *len = n;
    return 0;
}

/* The generateContent body of chat into b. Returns 0 or -1 with e filled. */
static int translate_request(const struct ibex_chat_request *chat, struct ibex_buf *b,
                             struct ibex_chat_error *e)
{
    struct req r = {.b = b, .e = e, .msgs = get(chat->root, "messages")};
    ibex_buf_init(&r.sys);
    int rc = put_messages(&r);
    if (rc == 0)
        rc = put_options(&r, chat->root);
    if (rc == 0)
        ibex_buf_append_cstr(b, "}");
    ibex_buf_dispose(&r.sys);
    return rc;
}

static int build_request(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                         const char *body, size_t body_len, const char *const *extra_headers,
                         struct ibex_arena *arena, struct ibex_upstream_request *out,
                         struct ibex_chat_error *e)
{
    (void)body;
    (void)body_len;
    const char *model = NULL;
    size_t model_len = 0;
    if (model_name(chat, &model, &model_len, e) != 0)
        return -1;
    struct ibex_buf b;
    ibex_buf_init(&b);
    if (translate_request(chat, &b, e) != 0) {
        ibex_buf_dispose(&b);
        return -1;
    }
    struct ibex_str json;
    json.p = ibex_buf_steal(&b, &json.len);
    ibex_arena_on_free(arena, free, (char *)json.p);

    static const char path[] = "/v1beta/models/";
    const char *method = chat->stream ? ":streamGenerateContent?alt=sse" : ":generateContent";
    size_t base = strlen(p->cfg->base_url), mlen = strlen(method);
    char *url = ibex_arena_alloc(arena, base + sizeof(path) - 1 + model_len + mlen + 1);
    char *w = url;
    memcpy(w, p->cfg->base_url, base);
    w += base;
    memcpy(w, path, sizeof(path) - 1);
    w += sizeof(path) - 1;
    memcpy(w, model, model_len);
    w += model_len;
    memcpy(w, method, mlen + 1);
    /* the key goes in its header, "x-goog-api-key: ..." (providers.c): never in the URL */
    ibex_provider_fill_request(p, chat, url, json, NULL, extra_headers, arena, out);
    return 0;
}

/* ---- answers: shared pieces ---- */

struct names {
    struct ibex_str id, model; /* JSON-escaped on output */
    char idbuf[9 + 16 + 1];    /* "chatcmpl-" + random hex, when Gemini sends no responseId */
    char base[BASE_MAX + 1];   /* of tool call ids */
};

static void random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    ibex_id_random(r, nbytes);
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

/* id: responseId, or chatcmpl-<random>; model: modelVersion, or the request's model. rid and
 * mv are the answer's strings ({NULL, 0} when absent or not strings); random, when not NULL,
 * is the 16 hex digits to use when rid cannot be the base of tool call ids. */
static void take_names(struct ibex_str rid, struct ibex_str mv, const char *random,
                       const struct ibex_chat_request *chat, struct names *n)
{
    size_t rlen = rid.len;
    bool plain = rlen > 0 && rlen <= BASE_MAX;
    for (size_t i = 0; plain && i < rlen; i++) {
        char c = rid.p[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-';
    }
    if (plain) {
        memcpy(n->base, rid.p, rlen);
        n->base[rlen] = '\0';
    } else if (random) {
        memcpy(n->base, random, 16);
        n->base[16] = '\0';
    } else {
        random_hex(n->base, 8);
    }
    if (rlen > 0 && rlen <= NAME_MAX_LEN) {
        n->id = rid;
    } else {
        snprintf(n->idbuf, sizeof(n->idbuf), "chatcmpl-%.16s", n->base);
        n->id = ibex_str_from(n->idbuf);
    }
    if (mv.len > 0 && mv.len <= NAME_MAX_LEN)
        n->model = mv;
    else
        n->model = (struct ibex_str){chat->model, chat->model_len};
}

/* The candidate with index 0 (an absent index is 0), or NULL. */
static json_object *first_candidate(json_object *root)
{
    json_object *cands = get(root, "candidates");
    size_t n = is(cands, json_type_array) ? json_object_array_length(cands) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cands, i);
        json_object *ix = get(c, "index");
        if (is(c, json_type_object) &&
            (ix == NULL || (is(ix, json_type_int) && json_object_get_int64(ix) == 0)))
            return c;
    }
    return NULL;
}

static json_object *parts_of(json_object *cand)
{
    json_object *parts = get(get(cand, "content"), "parts");
    return is(parts, json_type_array) ? parts : NULL;
}

/* Text of the answer: not thought summaries (thought: true). */
static json_object *answer_text(json_object *part)
{
    json_object *t = get(part, "text"), *thought = get(part, "thought");
    if (!is(t, json_type_string) || json_object_get_string_len(t) == 0)
        return NULL;
    if (is(thought, json_type_boolean) && json_object_get_boolean(thought))
        return NULL;
    return t;
}

static json_object *function_call(json_object *part)
{
    json_object *fc = get(part, "functionCall");
    return is(fc, json_type_object) ? fc : NULL;
}

/* reason: the finishReason string ({NULL, 0} when it is not one). */
static const char *finish_of(struct ibex_str reason, bool calls)
{
    static const char *const filtered[] = {
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"};
    if (str_eq(reason, "MAX_TOKENS"))
        return "length";
    for (size_t i = 0; i < sizeof(filtered) / sizeof(filtered[0]); i++)
        if (str_eq(reason, filtered[i]))
            return "content_filter";
    return calls ? "tool_calls" : "stop";
}

/* One tool call object; with_index for stream deltas. The arguments are the JSON text of the
 * functionCall's args ("{}" when it has none). */
static void put_call(struct ibex_buf *b, const char *base, int64_t k, json_object *part,
                     json_object *fc, bool with_index)
{
    if (with_index)
        ibex_buf_appendf(b, "{\"index\":%lld,\"id\":\"call_%s_%lld\"", (long long)k, base,
                         (long long)k);
    else
        ibex_buf_appendf(b, "{\"id\":\"call_%s_%lld\"", base, (long long)k);
    ibex_buf_append_cstr(b, ",\"type\":\"function\",\"function\":{\"name\":");
    json_object *name = get(fc, "name"), *args = get(fc, "args");
    if (is(name, json_type_string))
        ibex_json_append_str(b, name);
    else
        ibex_buf_append_cstr(b, "\"\"");
    ibex_buf_append_cstr(b, ",\"arguments\":");
    if (is(args, json_type_object)) {
        size_t len;
        const char *s = json_object_to_json_string_length(args, JSON_OUT, &len);
        ibex_buf_append_json_str(b, s, len);
    } else {
        ibex_buf_append_cstr(b, "\"{}\"");
    }
    ibex_buf_append_cstr(b, "}");
    json_object *sig = get(part, "thoughtSignature");
    if (is(sig, json_type_string)) {
        ibex_buf_append_cstr(b, ",\"extra_content\":{\"google\":{\"thought_signature\":");
        ibex_json_append_str(b, sig);
        ibex_buf_append_cstr(b, "}}");
    }
    ibex_buf_append_cstr(b, "}");
}

struct usage {
    int64_t prompt, candidates, thoughts, total, cached;
    bool have, have_total;
};

/* proto3 JSON leaves zero counts out: an absent count is 0; a huge one is IBEX_TOKENS_MAX. */
static int64_t count(json_object *u, const char *key, bool *present)
{
    json_object *v = get(u, key);
    if (present)
        *present = is(v, json_type_int);
    if (!is(v, json_type_int) || json_object_get_int64(v) < 0)
        return 0;
    int64_t n = json_object_get_int64(v);
    return n > IBEX_TOKENS_MAX ? IBEX_TOKENS_MAX : n;
}

static void take_usage(json_object *u, struct usage *out)
{
    out->prompt = count(u, "promptTokenCount", NULL);
    out->candidates = count(u, "candidatesTokenCount", NULL);
    out->thoughts = count(u, "thoughtsTokenCount", NULL);
    out->cached = count(u, "cachedContentTokenCount", NULL);
    out->total = count(u, "totalTokenCount", &out->have_total);
    out->have = true;
}

static int64_t completion_tokens(const struct usage *u)
{
    return u->candidates + u->thoughts; /* thinking is billed as output */
}

/* The usage object's counts; the details only when not 0. */
static struct ibex_openai_usage openai_usage(const struct usage *u)
{
    int64_t completion = completion_tokens(u);
    return (struct ibex_openai_usage){
        .prompt_tokens = u->prompt,
        .completion_tokens = completion,
        .total_tokens = u->have_total ? u->total : u->prompt + completion,
        .cached_tokens = u->cached > 0 ? u->cached : -1,
        .reasoning_tokens = u->thoughts > 0 ? u->thoughts : -1,
    };
}

/* {"token":..,"logprob":..,"bytes":[..]} of one Gemini logprobs candidate, without the '}'. */
static void put_token(struct ibex_buf *b, json_object *c)
{
    json_object *tok = get(c, "token"), *lp = get(c, "logProbability");
    const char *s = is(tok, json_type_string) ? json_object_get_string(tok) : "";
    size_t len = is(tok, json_type_string) ? (size_t)json_object_get_string_len(tok) : 0;
    ibex_buf_append_cstr(b, "{\"token\":");
    ibex_buf_append_json_str(b, s, len);
    ibex_buf_append_cstr(b, ",\"logprob\":");
    if (is_number(lp))
        ibex_json_append(b, lp);
    else
        ibex_buf_append_cstr(b, "0");
    ibex_buf_append_cstr(b, ",\"bytes\":[");
    for (size_t i = 0; i < len; i++)
        ibex_buf_appendf(b, i ? ",%u" : "%u", (unsigned)(unsigned char)s[i]);
    ibex_buf_append_cstr(b, "]");
}

/* The candidate's logprobsResult as OpenAI's logprobs value, {"content":[...]}, in b (emptied
 * first) for ibex_openai_out_choice_end; NULL (OpenAI's null) when it has none. */
static const struct ibex_buf *put_logprobs(struct ibex_buf *b, json_object *cand)
{
    json_object *lr = get(cand, "logprobsResult");
    json_object *chosen = get(lr, "chosenCandidates"), *top = get(lr, "topCandidates");
    if (!is(chosen, json_type_array))
        return NULL;
    size_t n = json_object_array_length(chosen);
    size_t ntop = is(top, json_type_array) ? json_object_array_length(top) : 0;
    ibex_buf_reset(b);
    ibex_buf_append_cstr(b, "{\"content\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            ibex_buf_append_cstr(b, ",");
        put_token(b, json_object_array_get_idx(chosen, i));
        ibex_buf_append_cstr(b, ",\"top_logprobs\":[");
        json_object *alts = i < ntop ? get(json_object_array_get_idx(top, i), "candidates") : NULL;
        size_t nalts = is(alts, json_type_array) ? json_object_array_length(alts) : 0;
        for (size_t j = 0; j < nalts; j++) {
            if (j)
                ibex_buf_append_cstr(b, ",");
            put_token(b, json_object_array_get_idx(alts, j));
            ibex_buf_append_cstr(b, "}");
        }
        ibex_buf_append_cstr(b, "]}");
    }
    ibex_buf_append_cstr(b, "]}");
    return b;
}

/* ---- non-streaming answers ---- */

static int translate_answer(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                            const char *body, size_t len, struct ibex_buf *out)
{
    (void)p;
    json_object *root;
    char msg[8];
    if (ibex_json_parse(body, len, &root, msg, sizeof(msg)) != 0)
        return -1;
    json_object *cands = get(root, "candidates"), *feedback = get(root, "promptFeedback");
    if (!is(root, json_type_object) || get(root, "error") != NULL ||
        (!is(cands, json_type_array) && !is(feedback, json_type_object))) {
        json_object_put(root);
        return -1;
    }
    struct names names;
    take_names(str_of(get(root, "responseId")), str_of(get(root, "modelVersion")), NULL, chat,
               &names);
    json_object *cand = first_candidate(root), *parts = parts_of(cand);
    size_t nparts = parts ? json_object_array_length(parts) : 0;

    ibex_openai_out_head(out, names.id, "chat.completion", (int64_t)time(NULL), names.model);
    ibex_openai_out_message_begin(out);
    bool text = false;
    for (size_t i = 0; i < nparts; i++) {
        json_object *t = answer_text(json_object_array_get_idx(parts, i));
        if (t == NULL)
            continue;
        ibex_buf_append_cstr(out, text ? "" : "\"");
        ibex_buf_append_json_inner(out, json_object_get_string(t),
                                   (size_t)json_object_get_string_len(t));
        text = true;
    }
    ibex_buf_append_cstr(out, text ? "\"" : "null");
    int64_t ncalls = 0;
    for (size_t i = 0; i < nparts; i++) {
        json_object *part = json_object_array_get_idx(parts, i), *fc = function_call(part);
        if (fc == NULL)
            continue;
        ibex_buf_append_cstr(out, ncalls ? "," : ",\"tool_calls\":[");
        put_call(out, names.base, ncalls++, part, fc, false);
    }
    if (ncalls)
        ibex_buf_append_cstr(out, "]");
    const char *finish = cand ? finish_of(str_of(get(cand, "finishReason")), ncalls > 0)
                         : get(feedback, "blockReason") ? "content_filter"
                                                        : "stop";
    struct ibex_buf logprobs;
    ibex_buf_init(&logprobs);
    ibex_openai_out_choice_end(out, put_logprobs(&logprobs, cand), finish);
    ibex_buf_dispose(&logprobs);
    json_object *um = get(root, "usageMetadata");
    if (is(um, json_type_object)) {
        struct usage u;
        take_usage(um, &u);
        struct ibex_openai_usage ou = openai_usage(&u);
        ibex_buf_append_cstr(out, ",");
        ibex_openai_out_usage(out, &ou);
    }
    ibex_buf_append_cstr(out, "}");
    json_object_put(root);
    return 0;
}

/* ---- streaming answers ---- */

struct gstream {
    struct ibex_provider_stream s; /* first: what the gateway sees */
    const struct ibex_chat_request *chat;
    struct ibex_sse sse;
    struct ibex_buf prefix;   /* of every chunk (openai_out.h), once the first event came */
    struct ibex_buf logprobs; /* an event's logprobs, on their way into its text chunk */
    struct ibex_buf *out;     /* during a feed */
    struct names names;
    struct usage usage;
    struct ibex_buf shape;    /* the last text event read in place, its text cut out (same_shape) */
    size_t shape_text;        /* where in shape the text's string literal was; 0: no shape yet */
    struct usage shape_usage; /* that event's usageMetadata */
    int64_t created, ncalls;
    uint64_t fast_events;  /* events the fast scanner read (gemini.h) */
    uint64_t shape_events; /* those of them read by their shape alone (gemini.h) */
    char random[17];       /* hex: the base of tool call ids when the responseId cannot be */
    bool started, finished;
    bool reference; /* every event through json-c (gemini.h) */
};

static void stream_cleanup(void *data)
{
    struct gstream *g = data;
    ibex_sse_dispose(&g->sse);
    ibex_buf_dispose(&g->prefix);
    ibex_buf_dispose(&g->logprobs);
    ibex_buf_dispose(&g->shape);
}

static struct ibex_provider_stream *stream_open(const struct ibex_provider *p,
                                                const struct ibex_chat_request *chat,
                                                struct ibex_arena *arena)
{
    (void)p;
    struct gstream *g = ibex_arena_calloc(arena, sizeof(*g));
    g->s.prompt_tokens = g->s.completion_tokens = -1;
    g->chat = chat;
    ibex_sse_init(&g->sse);
    ibex_buf_init(&g->prefix);
    ibex_buf_init(&g->logprobs);
    ibex_buf_init(&g->shape);
    g->created = (int64_t)time(NULL);
    random_hex(g->random, 8); /* drawn here, not at the first event: a reference twin shares it */
    ibex_arena_on_free(arena, stream_cleanup, g);
    return &g->s;
}

static void fail(struct gstream *g, const char *why)
{
    if (g->s.error == NULL)
        g->s.error = why;
}

/* The first event names the stream (rid, mv as take_names reads them) and opens it. */
static void start(struct gstream *g, struct ibex_str rid, struct ibex_str mv)
{
    g->started = true;
    take_names(rid, mv, g->random, g->chat, &g->names);
    ibex_openai_out_chunk_prefix(&g->prefix, g->names.id, g->created, g->names.model);
    ibex_openai_out_role_chunk(g->out, &g->prefix);
}

static void set_usage(struct gstream *g, const struct usage *u)
{
    g->usage = *u;
    g->s.prompt_tokens = u->prompt;
    g->s.completion_tokens = completion_tokens(u);
}

static void text_open(struct gstream *g)
{
    ibex_openai_out_chunk_begin(g->out, &g->prefix);
    ibex_buf_append_cstr(g->out, "\"content\":\"");
}

static void finish(struct gstream *g, const char *reason)
{
    g->finished = true;
    ibex_openai_out_finish_chunk(g->out, &g->prefix, reason);
}

/* Any event, through json-c: the reference the fast path below must match. */
static void slow_event(struct gstream *g, const char *p, size_t len)
{
    json_object *root;
    char msg[8];
    if (ibex_json_parse(p, len, &root, msg, sizeof(msg)) != 0 || !is(root, json_type_object)) {
        json_object_put(root);
        fail(g, "the provider sent a stream event that is not a JSON object");
        return;
    }
    if (get(root, "error") != NULL) {
        json_object_put(root);
        fail(g, "the provider's stream reported an error");
        return;
    }
    if (!g->started)
        start(g, str_of(get(root, "responseId")), str_of(get(root, "modelVersion")));
    json_object *um = get(root, "usageMetadata");
    if (is(um, json_type_object)) {
        struct usage u;
        take_usage(um, &u);
        set_usage(g, &u);
    }
    json_object *cand = first_candidate(root), *parts = parts_of(cand);
    size_t nparts = parts ? json_object_array_length(parts) : 0;
    bool text = false;
    for (size_t i = 0; i < nparts; i++) {
        json_object *t = answer_text(json_object_array_get_idx(parts, i));
        if (t == NULL)
            continue;
        if (!text)
            text_open(g);
        ibex_buf_append_json_inner(g->out, json_object_get_string(t),
                                   (size_t)json_object_get_string_len(t));
        text = true;
    }
    if (text) {
        ibex_buf_append_cstr(g->out, "\"");
        ibex_openai_out_chunk_end(g->out, put_logprobs(&g->logprobs, cand), NULL);
    }
    bool calls = false;
    for (size_t i = 0; i < nparts; i++) {
        json_object *part = json_object_array_get_idx(parts, i), *fc = function_call(part);
        if (fc == NULL)
            continue;
        if (!calls) {
            ibex_openai_out_chunk_begin(g->out, &g->prefix);
            ibex_buf_append_cstr(g->out, "\"tool_calls\":[");
        } else {
            ibex_buf_append_cstr(g->out, ",");
        }
        put_call(g->out, g->names.base, g->ncalls++, part, fc, true);
        calls = true;
    }
    if (calls) {
        ibex_buf_append_cstr(g->out, "]");
        ibex_openai_out_chunk_end(g->out, NULL, NULL);
    }
    json_object *reason = get(cand, "finishReason");
    if (!g->finished && cand && reason)
        finish(g, finish_of(str_of(reason), g->ncalls > 0));
    else if (!g->finished && cand == NULL &&
             get(get(root, "promptFeedback"), "blockReason") != NULL)
        finish(g, "content_filter"); /* the prompt was blocked: no candidate comes */
    json_object_put(root);
}

/* ---- streaming answers: the fast path ----
 * Nearly every event of a stream is one candidate's text, with finishReason and usageMetadata
 * on the last, in the shape Google writes:
 *   {"candidates": [{"content": {"parts": [{"text": "..."}],"role": "model"},"index": 0}],
 *    "usageMetadata": {...},"modelVersion": "...","responseId": "..."}
 * fast_scan reads that shape in place, keys in any order, members it has no use for stepped
 * over (ibex_json_skip_value), and fast_emit writes what slow_event would, byte for byte.
 * Anything else (function calls, thoughts, logprobs, errors, blocked prompts, other than one
 * candidate, escaped keys, a member the json-c path reads holding another type or null, counts
 * that are not small integers) is declined before anything is written, and slow_event takes
 * the event. The differential checks in tests/unit/gemini_test.c and tests/fuzz/fuzz_gemini.c
 * run both paths on the same bytes and compare output and state. */

#define FAST_TEXTS 8      /* text parts of one event */
#define FAST_SKIP_DEPTH 8 /* nesting of a member stepped over (json-c allows 64 in all) */

struct fast_event {
    struct ibex_str text[FAST_TEXTS]; /* the non-empty text parts, as escaped in the event */
    bool escaped[FAST_TEXTS];
    size_t ntext;
    struct ibex_str reason, id, model; /* {NULL, 0} when absent; as they are (no escapes) */
    struct usage usage;                /* usage.have: usageMetadata came */
    bool cand;                         /* the candidate came */
};

/* A count as count() reads it: clamped. */
static bool scan_count(struct ibex_json_cursor *c, int64_t *n)
{
    if (!ibex_json_cur_count(c, n))
        return false;
    if (*n > IBEX_TOKENS_MAX)
        *n = IBEX_TOKENS_MAX;
    return true;
}

/* "index": 0, the only one first_candidate takes as it is. */
static bool scan_zero(struct ibex_json_cursor *c)
{
    int64_t n;
    return ibex_json_cur_peek(c) == '0' && scan_count(c, &n);
}

static bool scan_usage(struct ibex_json_cursor *c, struct usage *u)
{
    static const char *const keys[] = {"promptTokenCount", "candidatesTokenCount",
                                       "thoughtsTokenCount", "cachedContentTokenCount",
                                       "totalTokenCount"};
    int64_t *counts[] = {&u->prompt, &u->candidates, &u->thoughts, &u->cached, &u->total};
    *u = (struct usage){0};
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k;
    int r;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        size_t i = ibex_json_key_index(k, keys, 5);
        if (i < 5 ? !ibex_json_once(&seen, 1u << i) || !scan_count(c, counts[i])
                  : !ibex_json_cur_skip(c, FAST_SKIP_DEPTH))
            return false;
    }
    u->have = true;
    u->have_total = seen & (1u << 4);
    return r == 0;
}

static bool scan_part(struct ibex_json_cursor *c, struct fast_event *ev)
{
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k;
    int r;
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        if (IBEX_JSON_KEY_IS(k, "text")) {
            struct ibex_str t;
            bool escaped;
            if (!ibex_json_once(&seen, 1) || !ibex_json_cur_str(c, &t, &escaped))
                return false;
            if (t.len == 0) /* answer_text skips it */
                continue;
            if (ev->ntext == FAST_TEXTS)
                return false;
            ev->escaped[ev->ntext] = escaped;
            ev->text[ev->ntext++] = t;
        } else if (IBEX_JSON_KEY_IS(k, "thought") || IBEX_JSON_KEY_IS(k, "functionCall")) {
            return false;
        } else if (!ibex_json_cur_skip(c, FAST_SKIP_DEPTH)) {
            return false;
        }
    }
    return r == 0;
}

static bool scan_parts(struct ibex_json_cursor *c, struct fast_event *ev)
{
    bool first = true;
    int r;
    if (!ibex_json_cur_ch(c, '['))
        return false;
    while ((r = ibex_json_cur_element(c, &first)) == 1)
        if (!scan_part(c, ev))
            return false;
    return r == 0;
}

static bool scan_content(struct ibex_json_cursor *c, struct fast_event *ev)
{
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k;
    int r;
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        bool ok = IBEX_JSON_KEY_IS(k, "parts") ? ibex_json_once(&seen, 1) && scan_parts(c, ev)
                                               : ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    return r == 0;
}

/* "candidates": one candidate, its index 0 or absent. */
static bool scan_candidates(struct ibex_json_cursor *c, struct fast_event *ev)
{
    unsigned seen = 0;
    bool first = true, escaped;
    struct ibex_str k;
    int r;
    if (!ibex_json_cur_ch(c, '[') || !ibex_json_cur_ch(c, '{'))
        return false;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        bool ok;
        if (IBEX_JSON_KEY_IS(k, "content"))
            ok = ibex_json_once(&seen, 1) && scan_content(c, ev);
        else if (IBEX_JSON_KEY_IS(k, "finishReason"))
            ok =
                ibex_json_once(&seen, 2) && ibex_json_cur_str(c, &ev->reason, &escaped) && !escaped;
        else if (IBEX_JSON_KEY_IS(k, "index"))
            ok = ibex_json_once(&seen, 4) && scan_zero(c);
        else if (IBEX_JSON_KEY_IS(k, "logprobsResult"))
            ok = false;
        else
            ok = ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    ev->cand = true;
    return r == 0 && ibex_json_cur_ch(c, ']'); /* one candidate only */
}

/* responseId, modelVersion: only the first event's are read (unescaped, as take_names needs). */
static bool scan_name(struct ibex_json_cursor *c, bool started, struct ibex_str *v)
{
    bool escaped;
    return ibex_json_cur_str(c, v, &escaped) && (started || !escaped);
}

/* Reads the event s[0..len) into *ev when it has the common shape; false, having written
 * nothing, for anything else. */
static bool fast_scan(const char *s, size_t len, bool started, struct fast_event *ev)
{
    struct ibex_json_cursor c = {s, len, 0};
    unsigned seen = 0;
    bool first = true, ok;
    struct ibex_str k;
    int r;
    ev->ntext = 0;
    ev->reason = ev->id = ev->model = IBEX_STR_NULL;
    ev->usage.have = false;
    ev->cand = false;
    if (!ibex_json_cur_ch(&c, '{'))
        return false;
    while ((r = ibex_json_cur_member(&c, &first, &k)) == 1) {
        if (IBEX_JSON_KEY_IS(k, "candidates"))
            ok = ibex_json_once(&seen, 1) && scan_candidates(&c, ev);
        else if (IBEX_JSON_KEY_IS(k, "usageMetadata"))
            ok = ibex_json_once(&seen, 2) && scan_usage(&c, &ev->usage);
        else if (IBEX_JSON_KEY_IS(k, "responseId"))
            ok = ibex_json_once(&seen, 4) && scan_name(&c, started, &ev->id);
        else if (IBEX_JSON_KEY_IS(k, "modelVersion"))
            ok = ibex_json_once(&seen, 8) && scan_name(&c, started, &ev->model);
        else if (IBEX_JSON_KEY_IS(k, "error") || IBEX_JSON_KEY_IS(k, "promptFeedback"))
            ok = false;
        else
            ok = ibex_json_cur_skip(&c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    return r == 0 && ibex_json_cur_end(&c);
}

/* What slow_event writes for such an event. Text without escapes is written as it came
 * (ibex_json_scan_str: it is what ibex would write for itself); escaped text is escaped again
 * ibex's way. */
static void fast_emit(struct gstream *g, const struct fast_event *ev)
{
    if (!g->started)
        start(g, ev->id, ev->model);
    if (ev->usage.have)
        set_usage(g, &ev->usage);
    for (size_t i = 0; i < ev->ntext; i++) {
        if (i == 0)
            text_open(g);
        if (ev->escaped[i])
            ibex_json_append_canonical(g->out, ev->text[i].p, ev->text[i].len);
        else
            ibex_buf_append(g->out, ev->text[i].p, ev->text[i].len);
    }
    if (ev->ntext > 0) {
        ibex_buf_append_cstr(g->out, "\"");
        ibex_openai_out_chunk_end(g->out, NULL, NULL); /* no logprobsResult: declined */
    }
    if (!g->finished && ev->cand && ev->reason.p)
        finish(g, finish_of(ev->reason, g->ncalls > 0));
}

/* ---- streams: an event read by its shape ----
 * Within a stream, the text events differ only in their text: Google repeats every other member
 * (role, index, modelVersion, responseId, and on some endpoints usageMetadata, createTime) byte
 * for byte, in whatever order and spacing it writes them. So once fast_scan has read an event
 * with one text part and no finishReason, its bytes before and after that text's string literal
 * are kept as the stream's shape. An event holding the same bytes around one string literal
 * means what that event meant with the new text: fast_scan would walk the same bytes to the
 * same results, and the literal is checked as fast_scan checks it (ibex_json_scan_str). Such an
 * event is read with two memcmps and one string scan; any other goes to fast_scan, which keeps
 * its shape when it has one. The shape was read once started, or under fast_scan's stricter
 * rules for the first event, so it reads alike on every later event. */

static void keep_shape(struct gstream *g, const char *s, size_t len, const struct fast_event *ev)
{
    if (ev->ntext != 1 || !ev->cand || ev->reason.p != NULL)
        return;
    size_t open = (size_t)(ev->text[0].p - s) - 1, close = open + 1 + ev->text[0].len;
    ibex_buf_reset(&g->shape);
    ibex_buf_append(&g->shape, s, open);
    ibex_buf_append(&g->shape, s + close + 1, len - close - 1);
    g->shape_text = open;
    g->shape_usage = ev->usage;
}

static bool same_shape(const struct gstream *g, const char *s, size_t len, struct fast_event *ev)
{
    size_t head = g->shape_text, tail = g->shape.len - head;
    bool escaped;
    if (head == 0 || len < head + 2 + tail || memcmp(s, g->shape.p, head) != 0 ||
        memcmp(s + len - tail, g->shape.p + head, tail) != 0 ||
        ibex_json_scan_str(s, len - tail, head, &escaped) != len - tail)
        return false;
    struct ibex_str text = {s + head + 1, len - tail - head - 2};
    ev->ntext = text.len > 0; /* an empty text is no part, as in scan_part */
    ev->text[0] = text;
    ev->escaped[0] = escaped;
    ev->reason = ev->id = ev->model = IBEX_STR_NULL;
    ev->usage = g->shape_usage;
    ev->cand = true;
    return true;
}

static void on_event(void *data, const char *p, size_t len)
{
    struct gstream *g = data;
    if (g->s.error)
        return;
    struct fast_event ev;
    if (g->reference) {
        slow_event(g, p, len);
        return;
    }
    if (same_shape(g, p, len, &ev)) {
        g->shape_events++;
    } else if (fast_scan(p, len, g->started, &ev)) {
        keep_shape(g, p, len, &ev);
    } else {
        slow_event(g, p, len);
        return;
    }
    g->fast_events++;
    fast_emit(g, &ev);
}

static int check(struct gstream *g)
{
    if (g->sse.skipped > 0)
        fail(g, "the provider sent a stream event over the size limit");
    return g->s.error ? -1 : 0;
}

static int stream_feed(struct ibex_provider_stream *s, const char *p, size_t len,
                       struct ibex_buf *out)
{
    struct gstream *g = (struct gstream *)s;
    if (g->s.error)
        return -1;
    g->out = out;
    ibex_sse_feed(&g->sse, p, len, on_event, g);
    g->out = NULL;
    return check(g);
}

static int stream_end(struct ibex_provider_stream *s, struct ibex_buf *out)
{
    struct gstream *g = (struct gstream *)s;
    if (g->s.error)
        return -1;
    g->out = out;
    ibex_sse_feed(&g->sse, "\n", 1, on_event, g); /* a last line without its line end */
    g->out = NULL;
    if (check(g) != 0)
        return -1;
    if (!g->finished) {
        fail(g, "the provider's stream ended before its end");
        return -1;
    }
    bool with_usage = g->chat->include_usage && g->usage.have;
    struct ibex_openai_usage u =
        with_usage ? openai_usage(&g->usage) : (struct ibex_openai_usage){0};
    ibex_openai_out_stream_end(out, &g->prefix, with_usage ? &u : NULL);
    return 0;
}

const struct ibex_provider_ops ibex_provider_gemini = {
    .type = "gemini",
    .build_request = build_request,
    .translate_answer = translate_answer,
    .stream_open = stream_open,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
};

/* ---- testing hooks (gemini.h) ---- */

struct ibex_provider_stream *
ibex_gemini_stream_open_reference(const struct ibex_provider *p,
                                  const struct ibex_chat_request *chat, struct ibex_arena *arena,
                                  const struct ibex_provider_stream *twin)
{
    struct gstream *g = (struct gstream *)stream_open(p, chat, arena);
    g->reference = true;
    if (twin) {
        const struct gstream *t = (const struct gstream *)twin;
        memcpy(g->random, t->random, sizeof(g->random));
        g->created = t->created;
    }
    return &g->s;
}

uint64_t ibex_gemini_stream_fast_events(const struct ibex_provider_stream *s)
{
    return ((const struct gstream *)s)->fast_events;
}

uint64_t ibex_gemini_stream_shape_events(const struct ibex_provider_stream *s)
{
    return ((const struct gstream *)s)->shape_events;
}

static bool buf_eq(const struct ibex_buf *a, const struct ibex_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

bool ibex_gemini_stream_same(const struct ibex_provider_stream *a,
                             const struct ibex_provider_stream *b)
{
    const struct gstream *x = (const struct gstream *)a, *y = (const struct gstream *)b;
    const struct usage *u = &x->usage, *v = &y->usage;
    return x->s.prompt_tokens == y->s.prompt_tokens &&
           x->s.completion_tokens == y->s.completion_tokens &&
           (x->s.error == NULL) == (y->s.error == NULL) &&
           (x->s.error == NULL || strcmp(x->s.error, y->s.error) == 0) &&
           x->started == y->started && x->finished == y->finished && x->ncalls == y->ncalls &&
           u->prompt == v->prompt && u->candidates == v->candidates && u->thoughts == v->thoughts &&
           u->total == v->total && u->cached == v->cached && u->have == v->have &&
           u->have_total == v->have_total &&
           (!x->started || strcmp(x->names.base, y->names.base) == 0) &&
           buf_eq(&x->prefix, &y->prefix) && x->sse.skipped == y->sse.skipped &&
           x->sse.skipping_line == y->sse.skipping_line && buf_eq(&x->sse.line, &y->sse.line);
}
