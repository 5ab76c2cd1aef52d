/* src/providers/openai_out.c: the exact bytes of a chat.completion and of a chunk stream (head,
 * choice, logprobs, finish, usage with and without details, [DONE]), escaping of ids and model
 * names, and both read back by the answer collector (src/gateway/answer.c) the way the gateway
 * reads every provider's answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/gateway/answer.h"
#include "../../src/providers/openai_out.h"
#include "testutil.h"

static void assert_bytes(const struct ibex_buf *b, const char *want)
{
    if (b->len != strlen(want) || memcmp(b->p, want, b->len) != 0)
        fail_msg("got  %.*s\nwant %s", (int)b->len, b->p ? b->p : "", want);
}

/* What the answer collector read: the text, finish reason "stop", the model and the usage. */
static void assert_read(const struct ibex_answer *a, const char *content, const char *model,
                        int64_t prompt, int64_t total)
{
    assert_int_equal(a->content.len, strlen(content));
    assert_memory_equal(a->content.p, content, strlen(content));
    assert_string_equal(a->finish_reason, "stop");
    assert_string_equal(a->model, model);
    assert_int_equal(a->prompt_tokens, prompt);
    assert_int_equal(a->total_tokens, total);
}

static const struct ibex_openai_usage plain_usage = {.prompt_tokens = 9,
                                                     .completion_tokens = 4,
                                                     .total_tokens = 13,
                                                     .cached_tokens = -1,
                                                     .reasoning_tokens = -1};

static void test_completion(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_openai_out_head(&b, IBEX_STR_LIT("id-1"), "chat.completion", 1700000000,
                         IBEX_STR_LIT("m\"x"));
    ibex_openai_out_message_begin(&b);
    ibex_buf_append_cstr(&b, "\"hi\"");
    ibex_openai_out_choice_end(&b, NULL, "stop");
    ibex_buf_append_cstr(&b, ",");
    ibex_openai_out_usage(&b, &plain_usage);
    ibex_buf_append_cstr(&b, "}");
    assert_bytes(&b, "{\"id\":\"id-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
                     "\"model\":\"m\\\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                     "\"assistant\",\"content\":\"hi\"},\"logprobs\":null,\"finish_reason\":"
                     "\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,"
                     "\"total_tokens\":13}}");

    struct ibex_answer a;
    ibex_answer_init(&a, 1 << 20);
    assert_int_equal(ibex_answer_from_json(&a, b.p, b.len), 0);
    assert_read(&a, "hi", "m\"x", 9, 13);
    assert_int_equal(a.completion_tokens, 4);
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&b);
}

static void test_choice_end_logprobs_and_null_finish(void **state)
{
    struct ibex_buf b, lp;
    ibex_buf_init(&b);
    ibex_buf_init(&lp);
    ibex_buf_append_cstr(&lp, "{\"content\":[]}");
    ibex_openai_out_choice_end(&b, &lp, NULL);
    assert_bytes(&b, "},\"logprobs\":{\"content\":[]},\"finish_reason\":null}]");
    ibex_buf_reset(&b);
    ibex_openai_out_choice_end(&b, &lp, "length");
    assert_bytes(&b, "},\"logprobs\":{\"content\":[]},\"finish_reason\":\"length\"}]");
    ibex_buf_reset(&b);
    ibex_openai_out_choice_end(&b, NULL, NULL);
    assert_bytes(&b, "},\"logprobs\":null,\"finish_reason\":null}]");
    ibex_buf_dispose(&lp);
    ibex_buf_dispose(&b);
}

static void test_usage_details(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    /* cached_tokens 0 is written (a provider reported no cache hit); -1 is not */
    struct ibex_openai_usage u = {.prompt_tokens = 0,
                                  .completion_tokens = 0,
                                  .total_tokens = 0,
                                  .cached_tokens = 0,
                                  .reasoning_tokens = -1};
    ibex_openai_out_usage(&b, &u);
    assert_bytes(&b, "\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":0}}");
    ibex_buf_reset(&b);
    u = (struct ibex_openai_usage){.prompt_tokens = 5,
                                   .completion_tokens = 31,
                                   .total_tokens = 40, /* a provider's own total stays */
                                   .cached_tokens = 2,
                                   .reasoning_tokens = 19};
    ibex_openai_out_usage(&b, &u);
    assert_bytes(&b, "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":31,\"total_tokens\":40,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":2},"
                     "\"completion_tokens_details\":{\"reasoning_tokens\":19}}");
    ibex_buf_dispose(&b);
}

#define PREFIX                                                                                     \
    "data: {\"id\":\"c\\u0001\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":"     \
    "\"m\",\"choices\":"

/* One stream as a provider writes it: role, text, a tool call with logprobs, finish, usage. */
static void write_stream(struct ibex_buf *out, const struct ibex_openai_usage *u)
{
    struct ibex_buf prefix, lp;
    ibex_buf_init(&prefix);
    ibex_buf_init(&lp);
    ibex_openai_out_chunk_prefix(&prefix, (struct ibex_str){"c\x01", 2}, 7, IBEX_STR_LIT("m"));
    ibex_openai_out_role_chunk(out, &prefix);
    ibex_openai_out_chunk_begin(out, &prefix);
    ibex_buf_append_cstr(out, "\"content\":\"Hel\"");
    ibex_openai_out_chunk_end(out, NULL, NULL);
    ibex_buf_append_cstr(&lp, "{\"content\":[]}");
    ibex_openai_out_chunk_begin(out, &prefix);
    ibex_buf_append_cstr(out, "\"content\":\"lo\"");
    ibex_openai_out_chunk_end(out, &lp, NULL);
    ibex_openai_out_finish_chunk(out, &prefix, "stop");
    ibex_openai_out_stream_end(out, &prefix, u);
    ibex_buf_dispose(&lp);
    ibex_buf_dispose(&prefix);
}

/* Feeds a whole stream to a fresh answer collector, which must take every event. */
static void read_stream(const struct ibex_buf *b, struct ibex_answer *a)
{
    ibex_answer_init(a, 1 << 20);
    ibex_answer_feed_sse(a, b->p, b->len);
    assert_true(a->done);
    assert_int_equal(a->skipped, 0);
}

static void test_stream(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    write_stream(&b, &plain_usage);
    assert_bytes(&b, PREFIX
                 "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                 "\"logprobs\":null,\"finish_reason\":null}]}\n\n" PREFIX
                 "[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,"
                 "\"finish_reason\":null}]}\n\n" PREFIX
                 "[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"logprobs\":{\"content\":[]},"
                 "\"finish_reason\":null}]}\n\n" PREFIX
                 "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}"
                 "\n\n" PREFIX "[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,"
                 "\"total_tokens\":13}}\n\ndata: [DONE]\n\n");

    struct ibex_answer a;
    read_stream(&b, &a);
    assert_read(&a, "Hello", "m", 9, 13);
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&b);
}

static void test_stream_without_usage(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    write_stream(&b, NULL);
    static const char tail[] = "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    assert_true(b.len > sizeof(tail));
    assert_string_equal(b.p + b.len - (sizeof(tail) - 1), tail);
    struct ibex_answer a;
    read_stream(&b, &a);
    assert_read(&a, "Hello", "m", -1, -1);
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_choice_end_logprobs_and_null_finish),
        cmocka_unit_test(test_usage_details),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_without_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
