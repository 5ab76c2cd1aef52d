/* The CPU cost of the Anthropic translation (src/providers/anthropic.c) on one thread, with the
 * thread's CPU clock: build_request on a ~4 KB chat body (system prompt, a few turns, a tool
 * call and its result, two tools), translate_answer on a text + tool_use answer, and the stream
 * decoder over a 40-delta text stream (45 events). The OpenAI pass-through does none of this, so
 * these are the extra costs per request (the budget is 15 us for a request and its answer).
 * The body, the loops and the JSON line are translation_bench.h's, shared with gemini_bench.c.
 *
 * Usage: anthropic_bench [iterations]; prints one JSON line. */
#include "translation_bench.h"

static const char answer[] =
    "{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-sonnet-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"It is sunny in "
    "Paris, 21 degrees. Let me also check the time for you.\"},{\"type\":\"tool_use\",\"id\":"
    "\"toolu_01\",\"name\":\"now\",\"input\":{\"tz\":\"Europe/Paris\"}}],\"stop_reason\":"
    "\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":1021,"
    "\"cache_read_input_tokens\":0,\"output_tokens\":42}}";

static void stream_text(struct ibex_buf *b)
{
    ibex_buf_append_cstr(
        b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\","
           "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":"
           "\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{"
           "\"input_tokens\":1021,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: "
           "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
           "\"text\":\"\"}}\n\n");
    for (int i = 0; i < 40; i++)
        ibex_buf_append_cstr(b,
                             "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                             "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"some "
                             "words of the answer \"}}\n\n");
    ibex_buf_append_cstr(
        b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
           "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
           "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":160}}\n\n"
           "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

int main(int argc, char **argv)
{
    struct ibex_buf sse;
    ibex_buf_init(&sse);
    stream_text(&sse);
    struct translation_bench tb = {
        .name = "anthropic_translation",
        .model = "claude-sonnet",
        .ops = &ibex_provider_anthropic,
        .cfg = {.name = "claude", .type = IBEX_PROVIDER_ANTHROPIC, .base_url = "https://x"},
        .chat_url = "https://x/v1/messages",
        .auth_header = "x-api-key: k",
        .answer = answer,
        .answer_len = sizeof(answer) - 1,
        .stream = &sse,
    };
    int rc = translation_bench_run(&tb, argc, argv);
    ibex_buf_dispose(&sse);
    return rc;
}
