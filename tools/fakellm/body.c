/* Request reading shared by fakellm's wire formats: the bearer credential, typed body lookups,
 * the character counts behind prompt token usage, and the 400 every format gives for a malformed
 * field.
 *
 * Invariants: nothing here allocates or keeps a reference; a NULL or mistyped json_object is
 * treated as absent, so callers chain lookups without checking each step. Counting is by UTF-8
 * code point, the same in every format, so one prompt gives one prompt_tokens everywhere. */
#include <string.h>

#include "fakellm.h"

bool fakellm_body_bearer(const struct ibex_req *req)
{
    struct ibex_str auth = ibex_str_trim(ibex_req_header(req, "authorization"));
    static const char scheme[] = "bearer ";
    size_t n = sizeof(scheme) - 1;

    if (auth.p == NULL || auth.len <= n ||
        !ibex_str_caseeq_cstr((struct ibex_str){auth.p, n}, scheme))
        return false;
    return ibex_str_trim((struct ibex_str){auth.p + n, auth.len - n}).len > 0;
}

uint64_t fakellm_body_chars(json_object *s)
{
    const char *p;
    size_t len;
    uint64_t n = 0;

    if (!json_object_is_type(s, json_type_string))
        return 0;
    p = json_object_get_string(s);
    len = (size_t)json_object_get_string_len(s);
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80)
            n++;
    return n;
}

uint64_t fakellm_body_text_chars(json_object *content)
{
    uint64_t n = 0;

    if (json_object_is_type(content, json_type_string))
        return fakellm_body_chars(content);
    if (!json_object_is_type(content, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(content); i++)
        n += fakellm_body_chars(
            fakellm_body_get(json_object_array_get_idx(content, i), "text", json_type_string));
    return n;
}

uint64_t fakellm_body_tokens(uint64_t chars)
{
    return chars / 4 > 0 ? chars / 4 : 1;
}

bool fakellm_body_true(json_object *o, const char *key)
{
    json_object *v = fakellm_body_get(o, key, json_type_boolean);

    return v != NULL && json_object_get_boolean(v);
}

json_object *fakellm_body_get(json_object *o, const char *key, enum json_type t)
{
    json_object *v;

    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, t))
        return NULL;
    return v;
}

bool fakellm_body_opt(json_object *o, const char *key, enum json_type t)
{
    json_object *v;

    /* json-c represents a JSON null as NULL: an explicit null counts as absent. */
    return !json_object_object_get_ex(o, key, &v) || v == NULL || json_object_is_type(v, t);
}

bool fakellm_body_number_in(json_object *v, double lo, double hi)
{
    double d;

    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return false;
    d = json_object_get_double(v);
    return d >= lo && d <= hi;
}

bool fakellm_body_strings(json_object *a)
{
    if (!json_object_is_type(a, json_type_array))
        return false;
    for (size_t i = 0; i < json_object_array_length(a); i++)
        if (!json_object_is_type(json_object_array_get_idx(a, i), json_type_string))
            return false;
    return true;
}

bool fakellm_body_named(json_object *items, const char *inner, const char *name)
{
    for (size_t i = 0;
         json_object_is_type(items, json_type_array) && i < json_object_array_length(items); i++) {
        json_object *item = json_object_array_get_idx(items, i);
        json_object *n;
        if (inner != NULL)
            item = fakellm_body_get(item, inner, json_type_object);
        n = fakellm_body_get(item, "name", json_type_string);
        if (n != NULL && strcmp(json_object_get_string(n), name) == 0)
            return true;
    }
    return false;
}

void fakellm_error_message(struct ibex_buf *b, const struct fakellm_error *err)
{
    struct ibex_buf msg;

    ibex_buf_init(&msg);
    if (err->param != NULL && strncmp(err->message, err->param, strlen(err->param)) != 0)
        ibex_buf_appendf(&msg, "%s: ", err->param);
    ibex_buf_append_cstr(&msg, err->message);
    ibex_buf_append_json_str(b, msg.p, msg.len);
    ibex_buf_dispose(&msg);
}

int fakellm_body_invalid(struct fakellm_error *err, const char *message, const char *param)
{
    *err = (struct fakellm_error){
        .status = 400,
        .code = "invalid_request",
        .message = message,
        .param = param,
    };
    return -1;
}
