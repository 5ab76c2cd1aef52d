/* json-c conveniences for the translators. A JSON null reads as absent everywhere, so a client
 * that sends "field": null gets what it gets without the field. */
#include "json.h"

#include <string.h>

json_object *ibex_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

const char *ibex_json_get_str(json_object *o, const char *key, size_t *len)
{
    json_object *v = ibex_json_get(o, key);
    if (!json_object_is_type(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

bool ibex_json_is_str(json_object *v, const char *s)
{
    return json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), s) == 0;
}

void ibex_json_append(struct ibex_buf *out, json_object *v)
{
    size_t len;
    const char *s = json_object_to_json_string_length(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    ibex_buf_append(out, s, len);
}

void ibex_json_append_str(struct ibex_buf *out, json_object *s)
{
    ibex_buf_append_json_str(out, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}
