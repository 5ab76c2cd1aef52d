/* Parsing and validation of an OpenAI chat completion request body. Pure (no I/O), so the fuzz
 * target drives it directly.
 *
 * On success chat->root owns the parsed document (json_object_put it, or let
 * ibex_chat_request_dispose do it); model points into it. */
#ifndef IBEX_GATEWAY_CHAT_REQUEST_H
#define IBEX_GATEWAY_CHAT_REQUEST_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/buf.h"

struct ibex_chat_request {
    json_object *root;
    const char *model;
    size_t model_len;
    size_t nmessages;
    bool stream;
    bool include_usage;
};

struct ibex_chat_error {
    const char *code; /* INVALID_JSON or VALIDATION_ERROR */
    char message[160];
    char param[48];               /* the first offending field, or "" */
    struct ibex_buf field_errors; /* JSON array, empty when not a validation error */
};

void ibex_chat_error_init(struct ibex_chat_error *e);
void ibex_chat_error_dispose(struct ibex_chat_error *e);
/* Records that field is invalid (message says why, without the field's name): code becomes
 * VALIDATION_ERROR and {"field","message"} joins field_errors, which stays a complete JSON
 * array; the first error also sets param and message ("<field>: <message>", both cut to fit).
 * The chat validator records every error of a body; a provider's build_request records one.
 * Returns -1, so a provider can return it; with e NULL it only returns -1. */
int ibex_chat_error_add(struct ibex_chat_error *e, const char *field, const char *message);

/* Parses a request body as one JSON value (strict: UTF-8 checked, no control bytes, nothing
 * after the value but whitespace, nesting bounded). Returns 0 with *out (NULL for a JSON null;
 * json_object_put it), or -1 with a message naming the byte. */
int ibex_json_parse(const char *body, size_t len, json_object **out, char *msg, size_t msglen);

/* Returns 0, or -1 with e filled. max_depth bounds JSON nesting. */
int ibex_chat_request_parse(struct ibex_chat_request *chat, const char *body, size_t len,
                            struct ibex_chat_error *e);
void ibex_chat_request_dispose(struct ibex_chat_request *chat);
/* Rewrites of the document before it goes upstream; ibex_chat_request_serialize writes the
 * result. set_model renames the model (an alias); add_directive puts an agent's directive first
 * as a system message and, with replace, drops the caller's system and developer messages. */
void ibex_chat_request_set_model(struct ibex_chat_request *chat, const char *model);
void ibex_chat_request_add_directive(struct ibex_chat_request *chat, const char *directive,
                                     bool replace);
void ibex_chat_request_serialize(const struct ibex_chat_request *chat, struct ibex_buf *out);

#endif
