/* OpenAI chat.completion objects, chunk events and usage (openai_out.h).
 *
 * Invariants:
 * - The framing of an answer (head, choices, logprobs, finish_reason, usage, event ends,
 *   [DONE]) is spelled only here: a change of key order changes every provider's bytes at once,
 *   and the providers' unit tests compare those bytes.
 * - Chunks are on the hot path of every translated stream: a chunk costs the copy of its
 *   prefix and a few literal appends (no strlen, no formatted print). */
#include "openai_out.h"

/* A string literal, without strlen at run time. */
#define LIT(out, s) ibex_buf_append((out), (s), sizeof(s) - 1)

void ibex_openai_out_head(struct ibex_buf *out, struct ibex_str id, const char *object,
                          int64_t created, struct ibex_str model)
{
    LIT(out, "{\"id\":");
    ibex_buf_append_json_str(out, id.p, id.len);
    LIT(out, ",\"object\":\"");
    ibex_buf_append_cstr(out, object);
    LIT(out, "\",\"created\":");
    ibex_buf_append_u64(out, (uint64_t)created);
    LIT(out, ",\"model\":");
    ibex_buf_append_json_str(out, model.p, model.len);
}

void ibex_openai_out_message_begin(struct ibex_buf *out)
{
    LIT(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
}

void ibex_openai_out_choice_end(struct ibex_buf *out, const struct ibex_buf *logprobs,
                                const char *finish)
{
    if (logprobs) {
        LIT(out, "},\"logprobs\":");
        ibex_buf_append(out, logprobs->p, logprobs->len);
        LIT(out, ",\"finish_reason\":");
    } else {
        LIT(out, "},\"logprobs\":null,\"finish_reason\":");
    }
    if (finish == NULL) {
        LIT(out, "null}]");
        return;
    }
    LIT(out, "\"");
    ibex_buf_append_cstr(out, finish);
    LIT(out, "\"}]");
}

void ibex_openai_out_chunk_prefix(struct ibex_buf *prefix, struct ibex_str id, int64_t created,
                                  struct ibex_str model)
{
    LIT(prefix, "data: ");
    ibex_openai_out_head(prefix, id, "chat.completion.chunk", created, model);
    LIT(prefix, ",\"choices\":");
}

void ibex_openai_out_chunk_begin(struct ibex_buf *out, const struct ibex_buf *prefix)
{
    ibex_buf_append(out, prefix->p, prefix->len);
    LIT(out, "[{\"index\":0,\"delta\":{");
}

void ibex_openai_out_chunk_end(struct ibex_buf *out, const struct ibex_buf *logprobs,
                               const char *finish)
{
    ibex_openai_out_choice_end(out, logprobs, finish);
    LIT(out, "}\n\n");
}

void ibex_openai_out_role_chunk(struct ibex_buf *out, const struct ibex_buf *prefix)
{
    ibex_openai_out_chunk_begin(out, prefix);
    LIT(out, "\"role\":\"assistant\",\"content\":\"\"");
    ibex_openai_out_chunk_end(out, NULL, NULL);
}

void ibex_openai_out_finish_chunk(struct ibex_buf *out, const struct ibex_buf *prefix,
                                  const char *finish)
{
    ibex_openai_out_chunk_begin(out, prefix);
    ibex_openai_out_chunk_end(out, NULL, finish);
}

#define COUNT(out, key, v) (LIT(out, key), ibex_buf_append_u64((out), (uint64_t)(v)))

void ibex_openai_out_usage(struct ibex_buf *out, const struct ibex_openai_usage *u)
{
    COUNT(out, "\"usage\":{\"prompt_tokens\":", u->prompt_tokens);
    COUNT(out, ",\"completion_tokens\":", u->completion_tokens);
    COUNT(out, ",\"total_tokens\":", u->total_tokens);
    if (u->cached_tokens >= 0) {
        COUNT(out, ",\"prompt_tokens_details\":{\"cached_tokens\":", u->cached_tokens);
        LIT(out, "}");
    }
    if (u->reasoning_tokens >= 0) {
        COUNT(out, ",\"completion_tokens_details\":{\"reasoning_tokens\":", u->reasoning_tokens);
        LIT(out, "}");
    }
    LIT(out, "}");
}

void ibex_openai_out_stream_end(struct ibex_buf *out, const struct ibex_buf *prefix,
                                const struct ibex_openai_usage *u)
{
    if (u) {
        ibex_buf_append(out, prefix->p, prefix->len);
        LIT(out, "[],");
        ibex_openai_out_usage(out, u);
        LIT(out, "}\n\n");
    }
    LIT(out, "data: [DONE]\n\n");
}
