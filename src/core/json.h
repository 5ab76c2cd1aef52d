/* Small json-c conveniences shared by the format translators (providers/anthropic.c,
 * gateway/messages.c): typed member reads that treat a JSON null like an absent member, and
 * appending values to a buffer as JSON text.
 *
 * Pure functions; nothing here keeps state or takes a reference. */
#ifndef IBEX_CORE_JSON_H
#define IBEX_CORE_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The member key of o, or NULL when o is not an object, or the member is absent or null. */
json_object *ibex_json_get(json_object *o, const char *key);
/* The member as a string (its length in *len when len is not NULL), or NULL when it is not
 * one. */
const char *ibex_json_get_str(json_object *o, const char *key, size_t *len);
/* Whether v is the string s. */
bool ibex_json_is_str(json_object *v, const char *s);
/* Appends v as compact JSON text (numbers keep the text they were parsed from; "/" is not
 * escaped). */
void ibex_json_append(struct ibex_buf *out, json_object *v);
/* Appends the string s (a json_type_string) as a JSON string literal. */
void ibex_json_append_str(struct ibex_buf *out, json_object *s);

#endif
