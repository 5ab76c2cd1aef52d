/* The built-in mock model: a deterministic answer, with usage, as one chat.completion or as an
 * SSE stream (written with openai_out.h, like a translated provider's), so `make run` works with
 * no key and no network. The reply never echoes the prompt; prompt_tokens is the prompt's
 * character count / 4, like a rough tokenizer. Every chunk of a stream has the same created. */
#include "provider.h"

#include <time.h>

#include "openai_out.h"

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

static void answer(const struct ibex_provider *p, const struct ibex_chat_request *chat,
                   struct ibex_buf *out)
{
    size_t prompt = prompt_chars(chat) / 4;
    if (prompt == 0)
        prompt = 1;
    struct ibex_str id = IBEX_STR_LIT("chatcmpl-mock"), model = {chat->model, chat->model_len};
    int64_t created = (int64_t)time(NULL);
    struct ibex_openai_usage usage = {.prompt_tokens = (int64_t)prompt,
                                      .completion_tokens = NWORDS,
                                      .total_tokens = (int64_t)(prompt + NWORDS),
                                      .cached_tokens = -1,
                                      .reasoning_tokens = -1};
    if (!chat->stream) {
        ibex_openai_out_head(out, id, "chat.completion", created, model);
        ibex_openai_out_message_begin(out);
        ibex_buf_append_cstr(out, "\"");
        for (size_t i = 0; i < NWORDS; i++)
            ibex_buf_append_cstr(out, words[i]);
        ibex_buf_append_cstr(out, "\"");
        ibex_openai_out_choice_end(out, NULL, "stop");
        ibex_buf_append_cstr(out, ",");
        ibex_openai_out_usage(out, &usage);
        ibex_buf_append_cstr(out, "}");
        return;
    }
    struct ibex_buf prefix;
    ibex_buf_init(&prefix);
    ibex_openai_out_chunk_prefix(&prefix, id, created, model);
    for (size_t i = 0; i < NWORDS; i++) {
        ibex_openai_out_chunk_begin(out, &prefix);
        ibex_buf_append_cstr(out,
                             i == 0 ? "\"role\":\"assistant\",\"content\":\"" : "\"content\":\"");
        ibex_buf_append_cstr(out, words[i]);
        ibex_buf_append_cstr(out, "\"");
        ibex_openai_out_chunk_end(out, NULL, NULL);
    }
    ibex_openai_out_finish_chunk(out, &prefix, "stop");
    ibex_openai_out_stream_end(out, &prefix, chat->include_usage ? &usage : NULL);
    ibex_buf_dispose(&prefix);
}

const struct ibex_provider_ops ibex_provider_mock = {
    .type = "mock",
    .build_request = NULL,
    .answer = answer,
};
