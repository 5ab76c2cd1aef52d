/* The CPU cost of the Gemini translation (src/providers/gemini.c) on one thread, with the
 * thread's CPU clock, on the same ~4 KB chat body as anthropic_bench.c: build_request (the
 * generateContent body and its URL), translate_answer on a text + functionCall answer, and the
 * stream decoder over a streamGenerateContent?alt=sse answer of 40 text events and a last one
 * with finishReason and usageMetadata (41 events, CRLF-framed as Gemini sends them). The OpenAI
 * pass-through does none of this, so these are the extra costs per request (the budget is 15 us
 * for a request and its answer). The body, the loops and the JSON line are translation_bench.h's.
 *
 * Usage: gemini_bench [iterations]; prints one JSON line. */
#include "translation_bench.h"

static const char answer[] =
    "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"It is sunny in Paris, 21 degrees. Let "
    "me also check the time for you.\"},{\"functionCall\":{\"name\":\"now\",\"args\":{\"tz\":"
    "\"Europe/Paris\"}},\"thoughtSignature\":\"c2lnbmF0dXJl\"}],\"role\":\"model\"},"
    "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":1021,"
    "\"candidatesTokenCount\":42,\"totalTokenCount\":1063},\"modelVersion\":\"gemini-2.5-flash\","
    "\"responseId\":\"mKdfaKbLHqSb1dkPu7bVsA8\"}";

static void stream_text(struct ibex_buf *b)
{
    for (int i = 0; i < 40; i++)
        ibex_buf_append_cstr(b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"some "
                                "words of the answer \"}],\"role\":\"model\"},\"index\":0}],"
                                "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":"
                                "\"mKdfaKbLHqSb1dkPu7bVsA8\"}\r\n\r\n");
    ibex_buf_append_cstr(
        b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},"
           "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":1021,"
           "\"candidatesTokenCount\":160,\"totalTokenCount\":1181},\"modelVersion\":"
           "\"gemini-2.5-flash\",\"responseId\":\"mKdfaKbLHqSb1dkPu7bVsA8\"}\r\n\r\n");
}

int main(int argc, char **argv)
{
    struct ibex_buf sse;
    ibex_buf_init(&sse);
    stream_text(&sse);
    struct translation_bench tb = {
        .name = "gemini_translation",
        .model = "gemini-2.5-flash",
        .ops = &ibex_provider_gemini,
        .cfg = {.name = "gemini",
                .type = IBEX_PROVIDER_GEMINI,
                .base_url = "https://generativelanguage.googleapis.com"},
        .chat_url = "https://generativelanguage.googleapis.com",
        .auth_header = "x-goog-api-key: k",
        .answer = answer,
        .answer_len = sizeof(answer) - 1,
        .stream = &sse,
    };
    int rc = translation_bench_run(&tb, argc, argv);
    ibex_buf_dispose(&sse);
    return rc;
}
