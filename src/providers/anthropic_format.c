/* The two directions of the stop reason and the error types of Anthropic's API, kept side by
 * side so a change to one direction is seen next to the other. */
#include "anthropic_format.h"

#include <stddef.h>
#include <string.h>

/* pause_turn only follows server tools, which a translated request never enables: the turn is
 * over as far as the client knows. */
const char *ibex_anthropic_finish_reason(const char *stop)
{
    if (stop == NULL)
        return "stop";
    if (!strcmp(stop, "max_tokens") || !strcmp(stop, "model_context_window_exceeded"))
        return "length";
    if (!strcmp(stop, "tool_use"))
        return "tool_calls";
    if (!strcmp(stop, "refusal"))
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn and any newer reason */
}

const char *ibex_anthropic_stop_reason(const char *finish)
{
    if (finish == NULL)
        return "end_turn";
    if (!strcmp(finish, "length"))
        return "max_tokens";
    if (!strcmp(finish, "tool_calls") || !strcmp(finish, "function_call"))
        return "tool_use";
    if (!strcmp(finish, "content_filter"))
        return "refusal";
    return "end_turn"; /* stop, and any newer reason */
}

/* Anthropic documents 400, 401, 403, 404, 413, 429, 500 and 529, and uses invalid_request_error
 * for any other 4xx; its SDKs also know conflict_error and timeout_error. ibex's 503 (every
 * deployment out, a store that cannot answer) asks the client to come back, as 529 does. */
const char *ibex_anthropic_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
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
    case 503:
    case 529:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}
