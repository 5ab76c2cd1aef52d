/* The built-in mock model: a deterministic answer, with usage, as one chat.completion or as an
 * SSE stream, so `make run` works with no key and no network. The reply never echoes the
 * prompt; prompt_tokens is the prompt's character count / 4, like a rough tokenizer. */
#include "provider.h"

#include <string.h>
#include <time.h>

static const char *const words[] = {"This ",      "is ", "the ",      "ibex ", "mock ", "model. ",
                                    "Configure ", "a ",  "provider ", "for ",  "real ", "answers."};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static size_t prompt_chars(const struct ibex_chat_request *chat)
{
    json_object *msgs = NULL;
    size_t chars = 0;
    if (!json_object_object_get_ex(chat->root, "messages", &msgs))
        return 0;
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *c = NULL;
        if (json_object_object_get_ex(json_object_array_get_idx(msgs, i), "content", &c) &&
            json_object_is_type(c, json_type_string))
            chars += (size_t)json_object_get_string_len(c);
    }
    return chars;
}

static void append_head(struct ibex_buf *out, const char *object,
                        const struct ibex_chat_request *chat)
{
    ibex_buf_appendf(out, "{\"id\":\"chatcmpl-mock\",\"object\":\"%s\",\"created\":%lld,\"model\":",
                     object, (long long)time(NULL));
    ibex_buf_append_json_str(out, chat->model, chat->model_len);
}

static void append_usage(struct ibex_buf *out, size_t prompt)
{
    ibex_buf_appendf(
        out, "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}",
        prompt, NWORDS, prompt + NWORDS);
}

static void answer(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                   struct ibex_buf *out)
{
    size_t prompt = prompt_chars(chat) / 4;
    if (prompt == 0)
        prompt = 1;
    if (!chat->stream) {
        append_head(out, "chat.completion", chat);
        ibex_buf_append_cstr(
            out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"");
        for (size_t i = 0; i < NWORDS; i++)
            ibex_buf_append_cstr(out, words[i]);
        ibex_buf_append_cstr(out, "\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
        append_usage(out, prompt);
        ibex_buf_append_cstr(out, "}");
        return;
    }
    for (size_t i = 0; i < NWORDS; i++) {
        ibex_buf_append_cstr(out, "data: ");
        append_head(out, "chat.completion.chunk", chat);
        ibex_buf_appendf(out,
                         ",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"%s\"},"
                         "\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                         i == 0 ? "\"role\":\"assistant\"," : "", words[i]);
    }
    ibex_buf_append_cstr(out, "data: ");
    append_head(out, "chat.completion.chunk", chat);
    ibex_buf_append_cstr(out, ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_"
                              "reason\":\"stop\"}]}\n\n");
    if (chat->include_usage) {
        ibex_buf_append_cstr(out, "data: ");
        append_head(out, "chat.completion.chunk", chat);
        ibex_buf_append_cstr(out, ",\"choices\":[],");
        append_usage(out, prompt);
        ibex_buf_append_cstr(out, "}\n\n");
    }
    ibex_buf_append_cstr(out, "data: [DONE]\n\n");
}

const struct ibex_provider_ops ibex_provider_mock = {
    .type = "mock",
    .build_request = NULL,
    .answer = answer,
};
