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

/* Returns 0, or -1 with e filled. max_depth bounds JSON nesting. */
int ibex_chat_request_parse(struct ibex_chat_request *chat, const char *body, size_t len,
                            struct ibex_chat_error *e);
void ibex_chat_request_dispose(struct ibex_chat_request *chat);
/* Sets "model" in the document and serialises it into out (for aliases). */
void ibex_chat_request_serialize_with_model(struct ibex_chat_request *chat, const char *model,
                                            struct ibex_buf *out);

#endif
