/* What Anthropic's Messages API and OpenAI's Chat Completions call the same things, in both
 * directions: the anthropic provider (OpenAI in front, Anthropic upstream) and the /v1/messages
 * ingress (Anthropic in front, any provider upstream) read the same tables.
 *
 * Pure functions returning static strings. */
#ifndef IBEX_PROVIDERS_ANTHROPIC_FORMAT_H
#define IBEX_PROVIDERS_ANTHROPIC_FORMAT_H

/* OpenAI's finish_reason for Anthropic's stop_reason (NULL: "stop"). */
const char *ibex_anthropic_finish_reason(const char *stop_reason);
/* Anthropic's stop_reason for OpenAI's finish_reason (NULL: "end_turn"). OpenAI's "stop" does
 * not say whether a stop sequence ended the answer: it is "end_turn". */
const char *ibex_anthropic_stop_reason(const char *finish_reason);
/* Anthropic's error type for an HTTP status ("invalid_request_error", "overloaded_error"...). */
const char *ibex_anthropic_error_type(int status);

#endif
