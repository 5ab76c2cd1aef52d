/* Writing OpenAI's answer objects: a chat.completion, the chat.completion.chunk events of a
 * stream and the usage object. The translating providers (anthropic.c, gemini.c) and the mock
 * write their answers with these, so every provider's answer has the same bytes around its
 * content: one choice (index 0), keys in OpenAI's order, "data: {...}\n\n" events, and a
 * stream that ends with the usage chunk (when asked for) and "data: [DONE]\n\n".
 *
 * Every function appends to out and never fails (allocation failure aborts, STYLE 11). Text
 * passed as struct ibex_str is escaped; finish reasons are OpenAI's own words, written as
 * they are. */
#ifndef IBEX_PROVIDERS_OPENAI_OUT_H
#define IBEX_PROVIDERS_OPENAI_OUT_H

#include <stdint.h>

#include "../core/buf.h"
#include "../core/str.h"

/* A token count no real answer reaches: a provider's larger report is clamped to it, so the sums
 * made by the translators and the gateway (prompt + completion) cannot overflow. */
#define IBEX_TOKENS_MAX ((int64_t)1 << 48)

/* A usage object's counts, each >= 0. cached_tokens and reasoning_tokens are written (as
 * prompt_tokens_details.cached_tokens and completion_tokens_details.reasoning_tokens) only when
 * >= 0. */
struct ibex_openai_usage {
    int64_t prompt_tokens, completion_tokens, total_tokens;
    int64_t cached_tokens, reasoning_tokens;
};

/* {"id":<id>,"object":"<object>","created":<created>,"model":<model> -- the object left open.
 * object is "chat.completion" or "chat.completion.chunk". */
void ibex_openai_out_head(struct ibex_buf *out, struct ibex_str id, const char *object,
                          int64_t created, struct ibex_str model);

/* A chat.completion's one choice: message_begin writes
 * ,"choices":[{"index":0,"message":{"role":"assistant","content": and the caller writes the
 * content's value and any further message members; choice_end closes the message and the choice
 * with "logprobs" (the JSON text in logprobs, or null when NULL) and "finish_reason" (null when
 * finish is NULL), then the choices array. The caller closes the object, after the usage if
 * any. */
void ibex_openai_out_message_begin(struct ibex_buf *out);
void ibex_openai_out_choice_end(struct ibex_buf *out, const struct ibex_buf *logprobs,
                                const char *finish);

/* What every chunk of one stream starts with: "data: " then the chunk head (object
 * chat.completion.chunk) then ,"choices": -- written once into prefix, copied into each chunk. */
void ibex_openai_out_chunk_prefix(struct ibex_buf *prefix, struct ibex_str id, int64_t created,
                                  struct ibex_str model);
/* A chunk whose one choice carries a delta: chunk_begin writes the prefix and opens the delta,
 * the caller writes the delta's members, chunk_end closes it as choice_end does and ends the
 * event. */
void ibex_openai_out_chunk_begin(struct ibex_buf *out, const struct ibex_buf *prefix);
void ibex_openai_out_chunk_end(struct ibex_buf *out, const struct ibex_buf *logprobs,
                               const char *finish);
/* The first chunk of a stream: delta {"role":"assistant","content":""}. */
void ibex_openai_out_role_chunk(struct ibex_buf *out, const struct ibex_buf *prefix);
/* The chunk that ends the choice: an empty delta and finish_reason. */
void ibex_openai_out_finish_chunk(struct ibex_buf *out, const struct ibex_buf *prefix,
                                  const char *finish);

/* "usage":{...}, a member of a chat.completion or of the usage chunk. */
void ibex_openai_out_usage(struct ibex_buf *out, const struct ibex_openai_usage *u);

/* The end of a stream: the usage chunk ("choices":[] and "usage") unless u is NULL, then
 * data: [DONE]. */
void ibex_openai_out_stream_end(struct ibex_buf *out, const struct ibex_buf *prefix,
                                const struct ibex_openai_usage *u);

#endif
