/* The CPU cost of the Anthropic translation (src/providers/anthropic.c) on one thread, with the
 * thread's CPU clock: build_request on a ~4 KB chat body (system prompt, a few turns, a tool
 * call and its result, two tools), translate_answer on a text + tool_use answer, and the stream
 * decoder over a 40-delta text stream. The OpenAI pass-through does none of this, so these are
 * the extra costs per request (the budget is 15 us for a request and its answer).
 *
 * Usage: anthropic_bench [iterations]; prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/core/arena.h"
#include "../../src/providers/provider.h"

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char lorem[] = "The quick brown fox jumps over the lazy dog while the gateway "
                            "translates every field it knows and refuses the ones it cannot. ";

static void request_body(struct ibex_buf *b)
{
    ibex_buf_append_cstr(b, "{\"model\":\"claude-sonnet\",\"max_tokens\":1024,\"temperature\":0.2,"
                            "\"messages\":[{\"role\":\"system\",\"content\":\"");
    for (int i = 0; i < 8; i++)
        ibex_buf_append_cstr(b, lorem);
    ibex_buf_append_cstr(b, "\"}");
    for (int t = 0; t < 6; t++) {
        ibex_buf_append_cstr(b, ",{\"role\":\"user\",\"content\":\"");
        for (int i = 0; i < 2; i++)
            ibex_buf_append_cstr(b, lorem);
        ibex_buf_append_cstr(b, "\"},{\"role\":\"assistant\",\"content\":\"");
        ibex_buf_append_cstr(b, lorem);
        ibex_buf_append_cstr(b, "\"}");
    }
    ibex_buf_append_cstr(
        b, ",{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\",\"content\":null,"
           "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
           "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"role\":\"tool\","
           "\"tool_call_id\":\"call_1\",\"content\":\"sunny, 21 C\"}],\"tools\":[{\"type\":"
           "\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\","
           "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
           "\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"now\"}}],"
           "\"tool_choice\":\"auto\"}");
}

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
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    if (iterations < 1)
        return 2;
    struct ibex_provider_config cfg = {
        .name = "claude", .type = IBEX_PROVIDER_ANTHROPIC, .base_url = "https://x"};
    struct ibex_provider p = {.ops = &ibex_provider_anthropic,
                              .cfg = &cfg,
                              .chat_url = "https://x/v1/messages",
                              .auth_header = "x-api-key: k"};
    struct ibex_buf body, out, sse;
    ibex_buf_init(&body);
    ibex_buf_init(&out);
    ibex_buf_init(&sse);
    request_body(&body);
    stream_text(&sse);
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(&chat, body.p, body.len, &e) != 0) {
        fprintf(stderr, "bench body rejected: %s\n", e.message);
        return 1;
    }
    struct ibex_arena *arena = ibex_arena_new(16384);
    long failures = 0;

    double t0 = cpu_ns();
    for (long i = 0; i < iterations; i++) {
        struct ibex_upstream_request ur;
        failures += p.ops->build_request(&p, &chat, body.p, body.len, NULL, arena, &ur, &e) != 0;
        ibex_arena_reset(arena);
    }
    double req_ns = (cpu_ns() - t0) / (double)iterations;

    t0 = cpu_ns();
    for (long i = 0; i < iterations; i++) {
        ibex_buf_reset(&out);
        failures += p.ops->translate_answer(&p, &chat, answer, sizeof(answer) - 1, &out) != 0;
    }
    double answer_ns = (cpu_ns() - t0) / (double)iterations;

    chat.stream = true;
    t0 = cpu_ns();
    for (long i = 0; i < iterations; i++) {
        ibex_buf_reset(&out);
        struct ibex_provider_stream *s = p.ops->stream_open(&p, &chat, arena);
        failures += p.ops->stream_feed(s, sse.p, sse.len, &out) != 0;
        failures += p.ops->stream_end(s, &out) != 0;
        ibex_arena_reset(arena);
    }
    double stream_ns = (cpu_ns() - t0) / (double)iterations;

    printf("{\"bench\":\"anthropic_translation\",\"iterations\":%ld,\"request_bytes\":%zu,"
           "\"ns_per_request\":%.0f,\"ns_per_answer\":%.0f,\"stream_events\":44,"
           "\"ns_per_stream\":%.0f,\"ns_per_event\":%.0f}\n",
           iterations, body.len, req_ns, answer_ns, stream_ns, stream_ns / 44);
    ibex_arena_free(arena);
    ibex_chat_error_dispose(&e);
    ibex_chat_request_dispose(&chat);
    ibex_buf_dispose(&body);
    ibex_buf_dispose(&out);
    ibex_buf_dispose(&sse);
    return failures == 0 ? 0 : 1;
}
