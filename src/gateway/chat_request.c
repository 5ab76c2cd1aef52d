/* Chat request validation. Checks what a gateway must rely on (model, messages and their roles,
 * stream flags, the types of common sampling fields) and leaves every other field untouched so
 * providers receive what the client sent. Nesting is bounded by json-c's tokener depth. */
#include "chat_request.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function"};

/* One tokener per thread, reset for each body: a fresh one (its nesting stack is over 1 KB)
 * per request made glibc consolidate its free lists on every call. Freed when the thread
 * exits. */
static pthread_key_t tokener_key;
static pthread_once_t tokener_once = PTHREAD_ONCE_INIT;

static void tokener_free(void *tok)
{
    json_tokener_free(tok);
}

static void tokener_key_init(void)
{
    pthread_key_create(&tokener_key, tokener_free);
}

static json_tokener *thread_tokener(void)
{
    pthread_once(&tokener_once, tokener_key_init);
    json_tokener *tok = pthread_getspecific(tokener_key);
    if (tok == NULL) {
        tok = json_tokener_new_ex(MAX_DEPTH);
        if (tok == NULL)
            abort(); /* allocation failure of internal state (STYLE 11) */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
        pthread_setspecific(tokener_key, tok);
    } else {
        json_tokener_reset(tok);
    }
    return tok;
}

/* After a failed parse the thread's tokener is dropped, not reset: json-c 0.16's reset keeps a
 * high surrogate that a text cut inside "\ud83d\u..." left pending, and the next body parsed on
 * the thread would get a U+FFFD before its first \u escape (tests/unit/chat_request_test.c). */
static void thread_tokener_drop(json_tokener *tok)
{
    json_tokener_free(tok);
    pthread_setspecific(tokener_key, NULL);
}

void ibex_chat_error_init(struct ibex_chat_error *e)
{
    e->code = NULL;
    e->message[0] = '\0';
    e->param[0] = '\0';
    ibex_buf_init(&e->field_errors);
}

void ibex_chat_error_dispose(struct ibex_chat_error *e)
{
    ibex_buf_dispose(&e->field_errors);
}

int ibex_chat_error_add(struct ibex_chat_error *e, const char *field, const char *message)
{
    if (e == NULL)
        return -1;
    e->code = "VALIDATION_ERROR";
    if (e->field_errors.len == 0) {
        ibex_buf_append_cstr(&e->field_errors, "[");
        snprintf(e->param, sizeof(e->param), "%s", field);
        snprintf(e->message, sizeof(e->message), "%s: %s", field, message);
    } else {
        e->field_errors.p[--e->field_errors.len] = '\0'; /* the array's ']' */
        ibex_buf_append_cstr(&e->field_errors, ",");
    }
    ibex_buf_append_cstr(&e->field_errors, "{\"field\":");
    ibex_buf_append_json_str(&e->field_errors, field, strlen(field));
    ibex_buf_append_cstr(&e->field_errors, ",\"message\":");
    ibex_buf_append_json_str(&e->field_errors, message, strlen(message));
    ibex_buf_append_cstr(&e->field_errors, "}]");
    return -1;
}

static bool is_number(json_object *o)
{
    return json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double);
}

static void check_messages(json_object *msgs, struct ibex_chat_error *e, size_t *count)
{
    *count = 0;
    if (msgs == NULL) {
        ibex_chat_error_add(e, "messages", "is required");
        return;
    }
    if (!json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) == 0) {
        ibex_chat_error_add(e, "messages", "must be a non-empty array");
        return;
    }
    size_t n = json_object_array_length(msgs);
    *count = n;
    for (size_t i = 0; i < n; i++) {
        char field[48];
        json_object *m = json_object_array_get_idx(msgs, i);
        if (!json_object_is_type(m, json_type_object)) {
            snprintf(field, sizeof(field), "messages[%zu]", i);
            ibex_chat_error_add(e, field, "must be an object");
            continue;
        }
        json_object *role = NULL, *content = NULL;
        json_object_object_get_ex(m, "role", &role);
        snprintf(field, sizeof(field), "messages[%zu].role", i);
        if (!json_object_is_type(role, json_type_string)) {
            ibex_chat_error_add(e, field, "is required and must be a string");
        } else {
            const char *r = json_object_get_string(role);
            bool known = false;
            for (size_t k = 0; k < sizeof(roles) / sizeof(roles[0]); k++)
                known |= strcmp(r, roles[k]) == 0;
            if (!known)
                ibex_chat_error_add(
                    e, field, "must be one of system, developer, user, assistant, tool, function");
        }
        if (json_object_object_get_ex(m, "content", &content) && content != NULL &&
            !json_object_is_type(content, json_type_string) &&
            !json_object_is_type(content, json_type_array)) {
            snprintf(field, sizeof(field), "messages[%zu].content", i);
            ibex_chat_error_add(e, field, "must be a string, an array of content parts, or null");
        }
    }
}

int ibex_json_parse(const char *body, size_t len, json_object **out, char *msg, size_t msglen)
{
    *out = NULL;
    if (len > INT32_MAX) {
        snprintf(msg, msglen, "request body is too large to parse");
        return -1;
    }
    /* JSON text is UTF-8 (RFC 8259 8.1) and has no raw control characters; json-c lets
     * overlong forms, surrogates and raw controls inside strings through, and those would
     * reach providers and logs. */
    size_t bad = ibex_json_text_invalid_at(body, len);
    if (bad != len) {
        snprintf(msg, msglen, "request body is not valid JSON: %s at byte %zu",
                 (unsigned char)body[bad] < 0x20 ? "control character" : "invalid UTF-8", bad);
        return -1;
    }
    json_tokener *tok = thread_tokener();
    json_object *root = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t offset = json_tokener_get_parse_end(tok);
    if (root == NULL && jerr == json_tokener_continue) {
        /* A bare number or literal ("42", "true") only ends at end of input: say so. */
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        offset = len;
    }
    if (jerr == json_tokener_continue)
        jerr = json_tokener_error_parse_eof;
    /* Trailing bytes other than whitespace make the body invalid too. */
    while (jerr == json_tokener_success && offset < len &&
           (body[offset] == ' ' || body[offset] == '\n' || body[offset] == '\r' ||
            body[offset] == '\t'))
        offset++;
    /* json-c represents a JSON null as NULL: success is the tokener's verdict, not root. */
    if (jerr != json_tokener_success || offset != len) {
        if (jerr != json_tokener_success)
            thread_tokener_drop(tok);
        json_object_put(root);
        snprintf(msg, msglen, "request body is not valid JSON: %s at byte %zu",
                 jerr == json_tokener_success ? "unexpected data after the JSON value"
                                              : json_tokener_error_desc(jerr),
                 offset);
        return -1;
    }
    *out = root;
    return 0;
}

int ibex_chat_request_parse(struct ibex_chat_request *chat, const char *body, size_t len,
                            struct ibex_chat_error *e)
{
    memset(chat, 0, sizeof(*chat));
    json_object *root;
    if (ibex_json_parse(body, len, &root, e->message, sizeof(e->message)) != 0) {
        e->code = "INVALID_JSON";
        return -1;
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return ibex_chat_error_add(e, "(body)", "must be a JSON object");
    }

    json_object *v = NULL;
    if (!json_object_object_get_ex(root, "model", &v) ||
        !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
        ibex_chat_error_add(e, "model", "is required and must be a non-empty string");
    else {
        chat->model = json_object_get_string(v);
        chat->model_len = (size_t)json_object_get_string_len(v);
    }
    v = NULL;
    json_object_object_get_ex(root, "messages", &v);
    check_messages(v, e, &chat->nmessages);

    if (json_object_object_get_ex(root, "stream", &v) && v != NULL) {
        if (!json_object_is_type(v, json_type_boolean))
            ibex_chat_error_add(e, "stream", "must be a boolean");
        else
            chat->stream = json_object_get_boolean(v);
    }
    if (json_object_object_get_ex(root, "stream_options", &v) && v != NULL) {
        json_object *iu = NULL;
        if (!json_object_is_type(v, json_type_object))
            ibex_chat_error_add(e, "stream_options", "must be an object");
        else if (json_object_object_get_ex(v, "include_usage", &iu) && iu != NULL) {
            if (!json_object_is_type(iu, json_type_boolean))
                ibex_chat_error_add(e, "stream_options.include_usage", "must be a boolean");
            else
                chat->include_usage = json_object_get_boolean(iu);
        }
    }
    static const char *const numeric[] = {"temperature",           "top_p", "max_tokens",
                                          "max_completion_tokens", "n",     "presence_penalty",
                                          "frequency_penalty",     "seed"};
    for (size_t i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++)
        if (json_object_object_get_ex(root, numeric[i], &v) && v != NULL && !is_number(v))
            ibex_chat_error_add(e, numeric[i], "must be a number");

    if (e->field_errors.len) {
        json_object_put(root);
        memset(chat, 0, sizeof(*chat));
        return -1;
    }
    chat->root = root;
    return 0;
}

void ibex_chat_request_dispose(struct ibex_chat_request *chat)
{
    json_object_put(chat->root);
    memset(chat, 0, sizeof(*chat));
}

void ibex_chat_request_set_model(struct ibex_chat_request *chat, const char *model)
{
    json_object_object_add(chat->root, "model", json_object_new_string(model));
    json_object *v = NULL;
    json_object_object_get_ex(chat->root, "model", &v);
    chat->model = json_object_get_string(v);
    chat->model_len = strlen(chat->model);
}

static bool is_system_role(json_object *msg)
{
    json_object *role = NULL;
    if (!json_object_object_get_ex(msg, "role", &role))
        return false;
    const char *r = json_object_get_string(role);
    return strcmp(r, "system") == 0 || strcmp(r, "developer") == 0;
}

void ibex_chat_request_add_directive(struct ibex_chat_request *chat, const char *directive,
                                     bool replace)
{
    json_object *old = NULL;
    json_object_object_get_ex(chat->root, "messages", &old);
    size_t n = json_object_array_length(old);
    json_object *msgs = json_object_new_array_ext((int)n + 1);
    json_object *sys = json_object_new_object();
    json_object_object_add(sys, "role", json_object_new_string("system"));
    json_object_object_add(sys, "content", json_object_new_string(directive));
    json_object_array_add(msgs, sys);
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(old, i);
        if (replace && is_system_role(m))
            continue;
        json_object_array_add(msgs, json_object_get(m));
    }
    chat->nmessages = json_object_array_length(msgs);
    json_object_object_add(chat->root, "messages", msgs);
}

void ibex_chat_request_serialize(const struct ibex_chat_request *chat, struct ibex_buf *out)
{
    size_t len;
    const char *s = json_object_to_json_string_length(
        chat->root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    ibex_buf_append(out, s, len);
}
