/* src/gateway/answer.c: non-streaming bodies (content, tool calls, null content, usage or not,
 * rejected bodies), and SSE streams fed in every split (LF, CRLF and CR line ends), usage
 * chunks, tool call deltas merged by index, other choices ignored, [DONE], comments, malformed
 * and oversized lines skipped, max_bytes truncation, UTF-8 split across feeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/gateway/answer.h"
#include "testutil.h"

#define MiB ((size_t)1 << 20)

static void assert_content(const struct ibex_answer *a, const char *want)
{
    size_t n = strlen(want);
    if (a->content.len != n || (n > 0 && memcmp(a->content.p, want, n) != 0))
        fail_msg("content is \"%.*s\" (%zu bytes), want \"%s\"", (int)a->content.len,
                 a->content.p ? a->content.p : "", a->content.len, want);
}

static void assert_tool_calls(const struct ibex_answer *a, const char *want)
{
    size_t n = strlen(want);
    if (a->tool_calls.len != n || (n > 0 && memcmp(a->tool_calls.p, want, n) != 0))
        fail_msg("tool_calls is %.*s, want %s", (int)a->tool_calls.len,
                 a->tool_calls.p ? a->tool_calls.p : "", want);
}

/* Every observable field of two answers is the same. */
static void assert_same(const struct ibex_answer *x, const struct ibex_answer *y, const char *what)
{
    if (x->content.len != y->content.len ||
        (x->content.len && memcmp(x->content.p, y->content.p, x->content.len) != 0) ||
        x->tool_calls.len != y->tool_calls.len ||
        (x->tool_calls.len && memcmp(x->tool_calls.p, y->tool_calls.p, x->tool_calls.len) != 0) ||
        strcmp(x->finish_reason, y->finish_reason) != 0 || strcmp(x->model, y->model) != 0 ||
        x->prompt_tokens != y->prompt_tokens || x->completion_tokens != y->completion_tokens ||
        x->total_tokens != y->total_tokens || x->done != y->done || x->truncated != y->truncated ||
        x->skipped != y->skipped)
        fail_msg("answers differ: %s (content %zu/%zu bytes, tool_calls %zu/%zu, skipped "
                 "%llu/%llu)",
                 what, x->content.len, y->content.len, x->tool_calls.len, y->tool_calls.len,
                 (unsigned long long)x->skipped, (unsigned long long)y->skipped);
}

static void feed_str(struct ibex_answer *a, const char *s)
{
    ibex_answer_feed_sse(a, s, strlen(s));
}

/* lines joined by eol; a NULL entry stands for the empty line that ends an event. */
static void build(struct ibex_buf *out, const char *const *lines, size_t n, const char *eol)
{
    for (size_t i = 0; i < n; i++) {
        if (lines[i])
            ibex_buf_append_cstr(out, lines[i]);
        ibex_buf_append_cstr(out, eol);
    }
}

#define CHUNK(fields)                                                                              \
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"             \
    "\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp\"," fields "}"
/* A chunk with one delta for choice 0, and extra fields (",\"usage\":null") after choices. */
#define DELTAX(d, finish, extra)                                                                   \
    CHUNK("\"choices\":[{\"index\":0,\"delta\":" d ",\"logprobs\":null,\"finish_reason\":" finish  \
          "}]" extra)
#define DELTA(d, finish) DELTAX(d, finish, "")

/* ---- non-streaming ---- */

static void test_json_content(void **state)
{
    const char *body =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-"
        "mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello "
        "\\\"there\\\"\\n\\u00e9\xE6\x97\xA5\",\"refusal\":null},\"logprobs\":null,\"finish_"
        "reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_"
        "tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":0}}}";
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    assert_int_equal(ibex_answer_from_json(&a, body, strlen(body)), 0);
    assert_content(&a, "Hello \"there\"\n\xC3\xA9\xE6\x97\xA5");
    assert_int_equal(a.tool_calls.len, 0);
    assert_string_equal(a.finish_reason, "stop");
    assert_string_equal(a.model, "gpt-4o-mini");
    assert_int_equal(a.prompt_tokens, 12);
    assert_int_equal(a.completion_tokens, 5);
    assert_int_equal(a.total_tokens, 17);
    assert_false(a.done);
    assert_false(a.truncated);
    ibex_answer_dispose(&a);
    assert_null(a.content.p);
}

static void test_json_tool_calls(void **state)
{
    const char *body =
        "{\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{"
        "\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_a\",\"type\":"
        "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":"
        "\\\"Paris\\\"}\"}},{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_time\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{"
        "\"prompt_tokens\":30,\"completion_tokens\":20,\"total_tokens\":50}}";
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    assert_int_equal(ibex_answer_from_json(&a, body, strlen(body)), 0);
    assert_int_equal(a.content.len, 0);
    assert_tool_calls(&a, "[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":"
                          "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
                          "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":"
                          "\"get_time\",\"arguments\":\"{}\"}}]");
    json_object *calls = tu_parse_json(a.tool_calls.p, a.tool_calls.len);
    assert_non_null(calls);
    assert_string_equal(tu_json_str(json_object_array_get_idx(calls, 0), "function.arguments"),
                        "{\"city\":\"Paris\"}");
    json_object_put(calls);
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_int_equal(a.total_tokens, 50);
    ibex_answer_dispose(&a);
}

static void test_json_null_content_no_usage(void **state)
{
    const char *bodies[] = {
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null},"
        "\"finish_reason\":\"length\"}]}",
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null},"
        "\"finish_reason\":\"length\"}],\"usage\":null}",
        /* wrong types are ignored, not fatal */
        "{\"model\":7,\"choices\":[{\"index\":0,\"message\":{\"content\":3,\"tool_calls\":{}},"
        "\"finish_reason\":\"length\"},2],\"usage\":{\"prompt_tokens\":\"9\",\"total_tokens\":-4}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct ibex_answer a;
        ibex_answer_init(&a, MiB);
        assert_int_equal(ibex_answer_from_json(&a, bodies[i], strlen(bodies[i])), 0);
        assert_int_equal(a.content.len, 0);
        assert_int_equal(a.tool_calls.len, 0);
        assert_string_equal(a.finish_reason, "length");
        assert_string_equal(a.model, "");
        assert_int_equal(a.prompt_tokens, -1);
        assert_int_equal(a.completion_tokens, -1);
        assert_int_equal(a.total_tokens, -1);
        ibex_answer_dispose(&a);
    }
}

static void test_json_usage_partial(void **state)
{
    const char *body = "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":0}}";
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    assert_int_equal(ibex_answer_from_json(&a, body, strlen(body)), 0);
    assert_int_equal(a.prompt_tokens, 4);
    assert_int_equal(a.completion_tokens, 0);
    assert_int_equal(a.total_tokens, -1); /* not reported, not invented */
    assert_string_equal(a.finish_reason, "");
    ibex_answer_dispose(&a);
}

static void test_json_only_choice_zero(void **state)
{
    const char *body =
        "{\"choices\":[{\"index\":1,\"message\":{\"content\":\"second\"},\"finish_reason\":"
        "\"length\"},{\"index\":0,\"message\":{\"content\":\"first\"},\"finish_reason\":"
        "\"stop\"}]}";
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    assert_int_equal(ibex_answer_from_json(&a, body, strlen(body)), 0);
    assert_content(&a, "first");
    assert_string_equal(a.finish_reason, "stop");
    ibex_answer_dispose(&a);
}

static void test_json_rejected(void **state)
{
    const char *bad[] = {
        "",
        "null",
        "[]",
        "\"choices\"",
        "{\"choices\":[]",
        "{\"choices\":[]} x",
        "{\"choices\":{}}",
        "{\"object\":\"chat.completion\"}",
        "{\"error\":{\"message\":\"rate limited\",\"type\":\"rate_limit\"}}",
        "{\"model\":\"m\",\"choices\":[{\"message\":{\"content\":\"\xC3\"}}]}", /* bad UTF-8 */
        "data: {\"choices\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ibex_answer a;
        ibex_answer_init(&a, MiB);
        if (ibex_answer_from_json(&a, bad[i], strlen(bad[i])) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(a.content.len, 0);
        assert_int_equal(a.tool_calls.len, 0);
        assert_string_equal(a.model, "");
        assert_string_equal(a.finish_reason, "");
        assert_int_equal(a.prompt_tokens, -1);
        ibex_answer_dispose(&a);
    }
}

/* ---- streaming ---- */

/* A realistic stream: role chunk, text in pieces (multi-byte characters included), two tool
 * calls in pieces, finish chunk, include_usage chunk, comments and other fields, [DONE]. */
static const char *const realistic[] = {
    ": OPENROUTER PROCESSING",
    NULL,
    "event: message",
    "id: 1",
    "retry: 3000",
    DELTAX("{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}", "null", ",\"usage\":null"),
    NULL,
    DELTA("{\"content\":\"Bonjour, \"}", "null"),
    NULL,
    DELTA("{\"content\":\"\xC3\xA7\xC3\xA0 va \xE2\x9C\x93 \xF0\x9F\x98\x80\"}", "null"),
    NULL,
    ":",
    NULL,
    DELTA("{\"content\":\" \\\"quoted\\\"\\n\\u65e5\"}", "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{"
          "\"name\":\"get_weather\",\"arguments\":\"\"}}]}",
          "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]}", "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":\\\"Par\"}}]}",
          "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"is\\\"}\"}}]}", "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{"
          "\"name\":\"get_time\",\"arguments\":\"\"}}]}",
          "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"tz\\\":\"}}]}", "null"),
    NULL,
    DELTA("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\"CET\\\"}\"}}]}", "null"),
    NULL,
    DELTA("{}", "\"tool_calls\""),
    NULL,
    CHUNK("\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":17,\"total_"
          "tokens\":48,\"completion_tokens_details\":{\"reasoning_tokens\":0}}"),
    NULL,
    ": keep-alive",
    "data: [DONE]",
    NULL,
};

#define REALISTIC_CONTENT                                                                          \
    "Bonjour, \xC3\xA7\xC3\xA0 va \xE2\x9C\x93 \xF0\x9F\x98\x80 \"quoted\"\n\xE6\x97\xA5"
#define REALISTIC_CALLS                                                                            \
    "[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","            \
    "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"call_b\",\"type\":\"function\","   \
    "\"function\":{\"name\":\"get_time\",\"arguments\":\"{\\\"tz\\\":\\\"CET\\\"}\"}}]"

static void check_realistic(const struct ibex_answer *a)
{
    assert_content(a, REALISTIC_CONTENT);
    assert_tool_calls(a, REALISTIC_CALLS);
    assert_string_equal(a->finish_reason, "tool_calls");
    assert_string_equal(a->model, "gpt-4o-2024-08-06");
    assert_int_equal(a->prompt_tokens, 31);
    assert_int_equal(a->completion_tokens, 17);
    assert_int_equal(a->total_tokens, 48);
    assert_true(a->done);
    assert_false(a->truncated);
    assert_int_equal(a->skipped, 0);
    assert_int_equal(a->sse.line.len, 0);
}

static void test_stream_every_split(void **state)
{
    static const char *const eols[] = {"\n", "\r\n", "\r"};
    for (size_t e = 0; e < 3; e++) {
        struct ibex_buf s;
        ibex_buf_init(&s);
        build(&s, realistic, sizeof(realistic) / sizeof(realistic[0]), eols[e]);

        struct ibex_answer whole;
        ibex_answer_init(&whole, MiB);
        ibex_answer_feed_sse(&whole, s.p, s.len);
        check_realistic(&whole);

        for (size_t i = 0; i <= s.len; i++) {
            struct ibex_answer a;
            ibex_answer_init(&a, MiB);
            ibex_answer_feed_sse(&a, s.p, i);
            ibex_answer_feed_sse(&a, s.p + i, s.len - i);
            char what[64];
            snprintf(what, sizeof(what), "eol %zu, split at %zu", e, i);
            assert_same(&whole, &a, what);
            ibex_answer_dispose(&a);
        }
        /* three pieces around each CR/LF pair, and one byte at a time */
        for (size_t i = 1; i + 1 < s.len; i += 7) {
            struct ibex_answer a;
            ibex_answer_init(&a, MiB);
            ibex_answer_feed_sse(&a, s.p, i);
            ibex_answer_feed_sse(&a, s.p + i, 1);
            ibex_answer_feed_sse(&a, s.p + i + 1, s.len - i - 1);
            assert_same(&whole, &a, "three pieces");
            ibex_answer_dispose(&a);
        }
        struct ibex_answer bytes;
        ibex_answer_init(&bytes, MiB);
        for (size_t i = 0; i < s.len; i++)
            ibex_answer_feed_sse(&bytes, s.p + i, 1);
        assert_same(&whole, &bytes, "one byte at a time");
        ibex_answer_feed_sse(&bytes, "", 0);
        assert_same(&whole, &bytes, "empty feed");
        ibex_answer_dispose(&bytes);
        ibex_answer_dispose(&whole);
        ibex_buf_dispose(&s);
    }
}

static void test_stream_matches_json(void **state)
{
    /* The same answer as one body and as a stream gives the same content and tool_calls. */
    const char *body =
        "{\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\"Bonjour, \xC3\xA7\xC3\xA0 va \xE2\x9C\x93 \xF0\x9F\x98\x80 "
        "\\\"quoted\\\"\\n\xE6\x97\xA5\",\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
        "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","
        "\"arguments\":\"{\\\"tz\\\":\\\"CET\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":17,\"total_tokens\":48}}";
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    assert_int_equal(ibex_answer_from_json(&a, body, strlen(body)), 0);
    a.done = true; /* the only field a body cannot give */
    struct ibex_buf s;
    ibex_buf_init(&s);
    build(&s, realistic, sizeof(realistic) / sizeof(realistic[0]), "\n");
    struct ibex_answer b;
    ibex_answer_init(&b, MiB);
    ibex_answer_feed_sse(&b, s.p, s.len);
    assert_same(&a, &b, "body and stream");
    ibex_answer_dispose(&a);
    ibex_answer_dispose(&b);
    ibex_buf_dispose(&s);
}

static void test_stream_include_usage(void **state)
{
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    feed_str(&a, DELTAX("{\"role\":\"assistant\",\"content\":\"Hi\"}", "null",
                        ",\"usage\":null") "\n\n");
    assert_int_equal(a.total_tokens, -1);
    feed_str(&a, DELTAX("{}", "\"stop\"", ",\"usage\":null") "\n\n");
    assert_string_equal(a.finish_reason, "stop");
    assert_int_equal(a.prompt_tokens, -1);
    feed_str(&a, CHUNK("\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,"
                       "\"total_tokens\":10}") "\n\n");
    assert_int_equal(a.prompt_tokens, 9);
    assert_int_equal(a.completion_tokens, 1);
    assert_int_equal(a.total_tokens, 10);
    assert_false(a.done);
    feed_str(&a, "data: [DONE]\n\n");
    assert_true(a.done);
    assert_content(&a, "Hi");
    assert_string_equal(a.finish_reason, "stop"); /* the usage chunk has no choice */
    assert_int_equal(a.skipped, 0);
    ibex_answer_dispose(&a);

    /* Without include_usage: no usage at all. */
    ibex_answer_init(&a, MiB);
    feed_str(&a, DELTA("{\"content\":\"Hi\"}", "null") "\n\n" DELTA("{}", "\"stop\"") "\n\n"
                                                                                      "data: "
                                                                                      "[DONE]\n\n");
    assert_int_equal(a.prompt_tokens, -1);
    assert_int_equal(a.completion_tokens, -1);
    assert_int_equal(a.total_tokens, -1);
    assert_true(a.done);
    ibex_answer_dispose(&a);
}

static void test_stream_tool_call_deltas(void **state)
{
    /* Two calls by index, arguments in pieces, the pieces of both interleaved and index 1
     * announced first; a repeated id and an id-less type-less call. */
    const char *const lines[] = {
        DELTA("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":1,\"id\":"
              "\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"b\",\"arguments\":\"\"}}"
              "]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"function\":{\"name\":\"a\","
              "\"arguments\":\"[1,\"}},{\"index\":1,\"function\":{\"arguments\":\"{\\\"k\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"arguments\":"
              "\"\\\":\\\"v\\\\n\\\"\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"2]\"}},{\"index\":1,"
              "\"function\":{\"name\":null,\"arguments\":\"}\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":3,\"type\":\"custom\",\"function\":{\"arguments\":"
              "\"\\u0001\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":-1,\"id\":\"x\"},{\"index\":\"2\",\"id\":\"y\"},7]}",
              "null"),
        DELTA("{}", "\"tool_calls\""),
    };
    struct ibex_buf s;
    ibex_buf_init(&s);
    build(&s, lines, sizeof(lines) / sizeof(lines[0]), "\n\n");
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    ibex_answer_feed_sse(&a, s.p, s.len);
    /* A call with a non-integer index takes its position in the delta's array (1: call_b). */
    assert_tool_calls(&a, "[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"a\","
                          "\"arguments\":\"[1,2]\"}},{\"id\":\"y\",\"type\":\"function\","
                          "\"function\":{\"name\":\"b\",\"arguments\":\"{\\\"k\\\":\\\"v\\\\n"
                          "\\\"}\"}},{\"id\":\"\",\"type\":\"custom\",\"function\":{\"name\":"
                          "\"\",\"arguments\":\"\\u0001\"}}]");
    json_object *calls = tu_parse_json(a.tool_calls.p, a.tool_calls.len);
    assert_non_null(calls);
    assert_int_equal(json_object_array_length(calls), 3);
    assert_string_equal(tu_json_str(json_object_array_get_idx(calls, 1), "function.arguments"),
                        "{\"k\":\"v\\n\"}");
    json_object_put(calls);
    assert_int_equal(a.content.len, 0);
    assert_string_equal(a.finish_reason, "tool_calls");
    assert_int_equal(a.skipped, 0);

    for (size_t i = 0; i <= s.len; i++) {
        struct ibex_answer b;
        ibex_answer_init(&b, MiB);
        ibex_answer_feed_sse(&b, s.p, i);
        ibex_answer_feed_sse(&b, s.p + i, s.len - i);
        assert_same(&a, &b, "tool call split");
        ibex_answer_dispose(&b);
    }
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&s);
}

static void test_tool_call_escaping(void **state)
{
    /* Arguments are JSON text inside a JSON string: every piece is re-escaped, multi-byte
     * characters kept, a lone surrogate (U+FFFD from json-c) included. */
    const char *const lines[] = {
        DELTA("{\"tool_calls\":[{\"index\":0,\"id\":\"c\\\"1\",\"function\":{\"name\":"
              "\"f\",\"arguments\":\"\xC3\xA9\xE6\x97\xA5\\n\\r\\t\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\u0000\\ud800"
              "\\\\\\/\xF0\x9F\x98\x80\"}}]}",
              "null"),
    };
    struct ibex_buf s;
    ibex_buf_init(&s);
    build(&s, lines, 2, "\n");
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    ibex_answer_feed_sse(&a, s.p, s.len);
    assert_tool_calls(&a, "[{\"id\":\"c\\\"1\",\"type\":\"function\",\"function\":{\"name\":"
                          "\"f\",\"arguments\":\"\xC3\xA9\xE6\x97\xA5\\n\\r\\t\\u0000"
                          "\xEF\xBF\xBD\\\\/\xF0\x9F\x98\x80\"}}]");
    json_object *calls = tu_parse_json(a.tool_calls.p, a.tool_calls.len);
    assert_non_null(calls);
    json_object *args = NULL;
    json_object_object_get_ex(json_object_array_get_idx(calls, 0), "function", &args);
    json_object_object_get_ex(args, "arguments", &args);
    assert_int_equal(json_object_get_string_len(args), 18);
    assert_memory_equal(json_object_get_string(args),
                        "\xC3\xA9\xE6\x97\xA5\n\r\t\0\xEF\xBF\xBD\\/\xF0\x9F\x98\x80", 18);
    json_object_put(calls);
    size_t full = a.tool_calls.len;
    ibex_answer_dispose(&a);

    /* Each cap cuts between whole escapes and whole characters: still a valid array. */
    for (size_t max = 0; max <= full; max++) {
        ibex_answer_init(&a, max);
        ibex_answer_feed_sse(&a, s.p, s.len);
        assert_true(a.tool_calls.len <= max);
        assert_true(a.truncated == (max < full));
        json_object *o = a.tool_calls.len ? tu_parse_json(a.tool_calls.p, a.tool_calls.len) : NULL;
        if (a.tool_calls.len > 0 && o == NULL)
            fail_msg("not JSON at max %zu: %s", max, a.tool_calls.p);
        json_object_put(o);
        ibex_answer_dispose(&a);
    }
    ibex_buf_dispose(&s);
}

static void test_stream_multiple_choices(void **state)
{
    const char *const lines[] = {
        CHUNK("\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"A\"}},"
              "{\"index\":1,\"delta\":{\"role\":\"assistant\",\"content\":\"X\"}}]"),
        CHUNK("\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Y\",\"tool_calls\":[{\"index\":"
              "0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]"),
        CHUNK("\"choices\":[{\"index\":0,\"delta\":{\"content\":\"B\"}}]"),
        CHUNK("\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]"),
        CHUNK("\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]"),
        CHUNK("\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"tool_calls\"}]"),
        "data: [DONE]",
    };
    struct ibex_buf s;
    ibex_buf_init(&s);
    build(&s, lines, sizeof(lines) / sizeof(lines[0]), "\n\n");
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    ibex_answer_feed_sse(&a, s.p, s.len);
    assert_content(&a, "AB");
    assert_int_equal(a.tool_calls.len, 0);
    assert_string_equal(a.finish_reason, "stop");
    assert_true(a.done);
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&s);
}

static void test_stream_done(void **state)
{
    const char *variants[] = {"data: [DONE]\n", "data:[DONE]\r\n", "data: [DONE]\r"};
    for (size_t i = 0; i < 3; i++) {
        struct ibex_answer a;
        ibex_answer_init(&a, MiB);
        feed_str(&a, DELTA("{\"content\":\"x\"}", "\"stop\"") "\n\n");
        assert_false(a.done);
        feed_str(&a, variants[i]);
        assert_true(a.done);
        assert_int_equal(a.skipped, 0);
        ibex_answer_dispose(&a);
    }
    /* Not [DONE]: a line without its end yet, and lookalikes. */
    const char *not_done[] = {"data: [DONE]",   "data:  [DONE]\n", "data: [DONE] \n",
                              "data: [done]\n", "event: [DONE]\n", ": data: [DONE]\n",
                              "Data: [DONE]\n"};
    for (size_t i = 0; i < sizeof(not_done) / sizeof(not_done[0]); i++) {
        struct ibex_answer a;
        ibex_answer_init(&a, MiB);
        feed_str(&a, not_done[i]);
        if (a.done)
            fail_msg("done after %s", not_done[i]);
        ibex_answer_dispose(&a);
    }
}

static void test_stream_comments_and_fields(void **state)
{
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    feed_str(&a, ": keep-alive\n\n:\n\n: OPENROUTER PROCESSING\r\n\r\nevent: ping\ndata: \n\n"
                 "id: 42\nretry: 10\ndata\n\ndata:\n\nevent: error\nfoo: {\"choices\":1}\n\n"
                 "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}\n\n"
                 ": {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"no\"}}]}\n\n");
    assert_content(&a, "ok");
    assert_int_equal(a.skipped, 0);
    assert_false(a.done);
    ibex_answer_dispose(&a);
}

static void test_stream_malformed_skipped(void **state)
{
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    feed_str(&a, DELTA("{\"content\":\"one \"}", "null") "\n\n"
                                                         "data: {\"choices\":[{\"index\":0,"
                                                         "\"delta\":{\"content\":\"lost\"}}\n\n"
                                                         "data: [1,2]\n\n"
                                                         "data: null\n\n"
                                                         "data: \"text\"\n\n"
                                                         "data: {\"a\":1} {\"b\":2}\n\n"
                                                         "data: {\"content\":\"\xFF\"}\n\n"
                                                         "data: {\"choices\":\n"
                                                         "data: []}\n\n");
    feed_str(&a, DELTA("{\"content\":\"two\"}", "\"stop\"") "\n\n"
                                                            "data: {\"error\":{\"message\":\"x\"}}"
                                                            "\n\ndata: [DONE]\n\n");
    assert_content(&a, "one two");
    assert_int_equal(a.skipped, 8);
    assert_string_equal(a.finish_reason, "stop");
    assert_true(a.done);
    ibex_answer_dispose(&a);
}

#define LONG_HEAD "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
#define LONG_TAIL "\"}}]}"
#define LONG_OVERHEAD (sizeof(LONG_HEAD LONG_TAIL) - 1)

/* A data line whose JSON is valid, whose content is len - LONG_OVERHEAD bytes of 'x' and whose
 * total length is exactly len bytes. */
static void long_line(struct ibex_buf *out, size_t len)
{
    size_t fill = len - LONG_OVERHEAD;
    ibex_buf_append_cstr(out, LONG_HEAD);
    ibex_buf_reserve(out, fill);
    memset(out->p + out->len, 'x', fill);
    out->len += fill;
    ibex_buf_append_cstr(out, LONG_TAIL);
}

static void test_stream_oversized(void **state)
{
    struct ibex_buf s;
    ibex_buf_init(&s);
    ibex_buf_append_cstr(&s, DELTA("{\"content\":\"a\"}", "null") "\n\n");
    long_line(&s, IBEX_SSE_LINE_MAX + 1);
    ibex_buf_append_cstr(&s, "\n\n" DELTA("{\"content\":\"b\"}", "null") "\n\n");
    long_line(&s, IBEX_SSE_LINE_MAX); /* at the bound: kept */
    ibex_buf_append_cstr(&s, "\r\n");
    long_line(&s, 3 * IBEX_SSE_LINE_MAX);
    ibex_buf_append_cstr(&s, "\r" DELTA("{\"content\":\"c\"}", "\"stop\"") "\r\rdata: [DONE]\r");

    size_t piece_sizes[] = {s.len, 65536, 1000003};
    for (size_t k = 0; k < sizeof(piece_sizes) / sizeof(piece_sizes[0]); k++) {
        struct ibex_answer a;
        ibex_answer_init(&a, 2 * IBEX_SSE_LINE_MAX);
        size_t most = 0;
        for (size_t off = 0; off < s.len; off += piece_sizes[k]) {
            size_t n = s.len - off < piece_sizes[k] ? s.len - off : piece_sizes[k];
            ibex_answer_feed_sse(&a, s.p + off, n);
            most = a.sse.line.cap > most ? a.sse.line.cap : most;
        }
        assert_int_equal(a.sse.skipped, 2);
        assert_int_equal(a.skipped, 0);
        assert_int_equal(a.content.len, 3 + IBEX_SSE_LINE_MAX - LONG_OVERHEAD);
        assert_memory_equal(a.content.p, "abxxx", 5);
        assert_int_equal(a.content.p[a.content.len - 1], 'c');
        assert_true(a.done);
        assert_string_equal(a.finish_reason, "stop");
        assert_true(most <= 2 * IBEX_SSE_LINE_MAX + 64); /* one line, not the stream */
        ibex_answer_dispose(&a);
    }
    ibex_buf_dispose(&s);
}

static void test_stream_line_max_lowered(void **state)
{
    /* Lowered line_max, a line one byte over it split in every place. */
    struct ibex_buf s;
    ibex_buf_init(&s);
    long_line(&s, 80);
    ibex_buf_append_cstr(&s, "\n");
    long_line(&s, 81);
    ibex_buf_append_cstr(&s, "\r\n");
    long_line(&s, 79);
    ibex_buf_append_cstr(&s, "\n");
    for (size_t i = 0; i <= s.len; i++) {
        for (size_t j = i; j <= s.len; j += 5) {
            struct ibex_answer a;
            ibex_answer_init(&a, MiB);
            a.sse.line_max = 80;
            ibex_answer_feed_sse(&a, s.p, i);
            ibex_answer_feed_sse(&a, s.p + i, j - i);
            ibex_answer_feed_sse(&a, s.p + j, s.len - j);
            assert_int_equal(a.sse.skipped, 1);
            assert_int_equal(a.content.len, (80 - LONG_OVERHEAD) + (79 - LONG_OVERHEAD));
            assert_int_equal(a.sse.line.len, 0);
            ibex_answer_dispose(&a);
        }
    }
    ibex_buf_dispose(&s);
}

static void test_truncation_content(void **state)
{
    struct ibex_answer a;
    ibex_answer_init(&a, 10);
    feed_str(&a, DELTA("{\"content\":\"hello \"}", "null") "\n\n");
    assert_false(a.truncated);
    /* "w" + "\xC3\xA9" fits in 9 bytes, the next "\xC3\xA9" would end at byte 11: cut before
     * it, not inside it. */
    feed_str(&a, DELTA("{\"content\":\"w\xC3\xA9\xC3\xA9\"}", "null") "\n\n");
    assert_true(a.truncated);
    assert_content(&a, "hello w\xC3\xA9");
    /* Truncation sticks even for a piece that would fit. */
    feed_str(&a, DELTA("{\"content\":\"!\",\"tool_calls\":[{\"index\":0,\"id\":\"c\"}]}",
                       "\"length\"") "\n\n");
    assert_content(&a, "hello w\xC3\xA9");
    assert_int_equal(a.tool_calls.len, 0);
    assert_string_equal(a.finish_reason, "length"); /* the rest is still collected */
    ibex_answer_dispose(&a);

    /* Exactly max_bytes: not truncated. */
    ibex_answer_init(&a, 5);
    feed_str(&a, DELTA("{\"content\":\"hello\"}", "null") "\n\n");
    assert_content(&a, "hello");
    assert_false(a.truncated);
    feed_str(&a, DELTA("{\"content\":\"\"}", "null") "\n\n");
    assert_false(a.truncated);
    ibex_answer_dispose(&a);

    /* A body over the cap. */
    const char *body = "{\"choices\":[{\"message\":{\"content\":\"0123456789abc\"}}]}";
    ibex_answer_init(&a, 8);
    assert_int_equal(ibex_answer_from_json(&a, body, strlen(body)), 0);
    assert_content(&a, "01234567");
    assert_true(a.truncated);
    ibex_answer_dispose(&a);
}

static void test_truncation_tool_calls(void **state)
{
    const char *const lines[] = {
        DELTA("{\"content\":\"hi\",\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":"
              "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"q\\\":\\\"\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"abcdefghij\\\"}\"}}]}",
              "null"),
        DELTA("{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"g\"}}]}",
              "null"),
    };
    struct ibex_buf s;
    ibex_buf_init(&s);
    build(&s, lines, sizeof(lines) / sizeof(lines[0]), "\n\n");
    const char *full = "[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                       "\"arguments\":\"{\\\"q\\\":\\\"abcdefghij\\\"}\"}},{\"id\":\"call_b\","
                       "\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"\"}}]";
    /* Every cap from nothing to enough: the result is a valid JSON array within the cap, and
     * truncated says whether anything was lost. */
    for (size_t max = 0; max <= 2 + strlen(full) + 1; max++) {
        struct ibex_answer a;
        ibex_answer_init(&a, max);
        ibex_answer_feed_sse(&a, s.p, s.len);
        assert_true(a.content.len + a.tool_calls.len <= max);
        bool whole = a.content.len == 2 && a.tool_calls.len == strlen(full);
        assert_true(a.truncated == !whole);
        if (a.tool_calls.len > 0) {
            json_object *calls = tu_parse_json(a.tool_calls.p, a.tool_calls.len);
            if (calls == NULL)
                fail_msg("not JSON at max %zu: %s", max, a.tool_calls.p);
            json_object_put(calls);
        }
        if (whole)
            assert_tool_calls(&a, full);
        ibex_answer_dispose(&a);
    }
    ibex_buf_dispose(&s);
}

static void test_utf8_split_across_feeds(void **state)
{
    /* U+1F600 and U+65E5 raw in the JSON, the feed boundary inside each sequence. */
    const char *line = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xF0\x9F\x98\x80"
                       "\xE6\x97\xA5\"}}]}\n";
    size_t at = strlen("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    for (size_t cut = at; cut <= at + 7; cut++) {
        struct ibex_answer a;
        ibex_answer_init(&a, MiB);
        ibex_answer_feed_sse(&a, line, cut);
        assert_int_equal(a.content.len, 0);
        ibex_answer_feed_sse(&a, line + cut, strlen(line) - cut);
        assert_content(&a, "\xF0\x9F\x98\x80\xE6\x97\xA5");
        assert_int_equal(a.skipped, 0);
        ibex_answer_dispose(&a);
    }
}

static void test_model_and_finish_bounds(void **state)
{
    char model[300];
    memset(model, 'm', sizeof(model) - 1);
    model[sizeof(model) - 1] = '\0';
    model[126] = '\xC3'; /* a two-byte character across the cap: left out whole */
    model[127] = '\xA9';
    struct ibex_buf s;
    ibex_buf_init(&s);
    ibex_buf_appendf(&s,
                     "data: {\"model\":\"\",\"choices\":[]}\n"
                     "data: {\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{},"
                     "\"finish_reason\":\"a_finish_reason_longer_than_the_field\"}]}\n"
                     "data: {\"model\":\"other\",\"choices\":[]}\n",
                     model);
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    ibex_answer_feed_sse(&a, s.p, s.len);
    assert_int_equal(strlen(a.model), 126);
    assert_int_equal(a.model[125], 'm');
    assert_string_equal(a.finish_reason, "a_finish_reason_longer_than_the");
    ibex_answer_dispose(&a);
    ibex_buf_dispose(&s);
}

/* ---- the in-place path against json-c ---- */

/* Each body goes through ibex_answer_from_json, and as one data line through
 * ibex_answer_feed_sse (with "message" renamed "delta"), on both paths; the answers must be the
 * same, and fast says whether the in-place path must have taken it (1), declined it (0). */
static const struct {
    const char *body;
    int fast;
} shapes[] = {
    {"{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
     "\"finish_reason\":\"stop\"}],\"model\":\"m-1\",\"usage\":{\"prompt_tokens\":3,"
     "\"completion_tokens\":1,\"total_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
     1},
    /* escapes decoded the way json-c decodes them */
    {"{\"choices\":[{\"message\":{\"content\":\"a\\nb\\\"c\\\\d\\/e\\u00e9\\ud83d\\ude00\\u0000f"
     "\\t\"}}]}",
     1},
    {"  {\"model\":\"\",\"choices\":[]}\r\n", 1},
    {"{\"model\":null,\"usage\":null,\"choices\":[{\"message\":null,\"finish_reason\":null}]}", 1},
    {"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":null}}],\"usage\":"
     "{\"prompt_tokens\":null,\"total_tokens\":7}}",
     1},
    /* only index 0 counts, by position when the index is absent */
    {"{\"choices\":[{\"index\":1,\"message\":{\"content\":\"no\"},\"finish_reason\":\"length\"},"
     "{\"message\":{\"content\":\"not by position\"}},{\"message\":{\"content\":\"x\"},"
     "\"index\":0,\"finish_reason\":\"stop\"}]}",
     1},
    {"{\"choices\":[{\"message\":{\"content\":\"one\"}},{\"index\":0,\"message\":{\"content\":"
     "\"two\"},\"finish_reason\":\"\"}]}",
     1},
    /* members stepped over, whatever they hold */
    {"{\"id\":\"x\",\"created\":1e3,\"obj\":{\"a\":[1,{\"b\":[true,false,null]}]},\"choices\":"
     "[{\"logprobs\":{\"content\":[]},\"message\":{\"refusal\":null,\"annotations\":[],"
     "\"content\":\"t\"}}]}",
     1},
    /* declined: json-c decides */
    {"{\"choices\":[{\"message\":{\"content\":\"a\",\"tool_calls\":[{\"index\":0,\"id\":\"c\","
     "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}",
     0},
    {"{\"model\":\"m\\u0031\",\"choices\":[]}", 0},
    {"{\"choices\":[{\"message\":{\"content\":\"a\"},\"finish_reason\":\"st\\u006fp\"}]}", 0},
    {"{\"model\":\"a\",\"model\":\"b\",\"choices\":[]}", 0},
    {"{\"choices\":[{\"message\":{\"content\":\"a\",\"content\":\"b\"}}]}", 0},
    {"{\"choices\":[{\"message\":{\"content\":7}}]}", 0},
    {"{\"choices\":[{\"index\":0.0,\"message\":{\"content\":\"a\"}}]}", 0},
    {"{\"choices\":[{\"index\":-1,\"message\":{\"content\":\"a\"}}]}", 0},
    {"{\"usage\":{\"prompt_tokens\":-1},\"choices\":[]}", 0},
    {"{\"usage\":{\"prompt_tokens\":12345678901234567890},\"choices\":[]}", 0},
    {"{\"usage\":{\"total_tokens\":2.0},\"choices\":[]}", 0},
    {"{\"choices\":[7]}", 0},
    {"{\"choices\":{}}", 0},
    {"{\"choices\":[{\"message\":\"text\"}]}", 0},
    {"{\"choices\":[{\"message\":{\"content\":\"a\"}},{\"message\":{\"content\":\"b\"},\"index\":0}"
     ","
     "{\"message\":{\"content\":\"c\"},\"index\":0},{\"message\":{\"content\":\"d\"},\"index\":0},"
     "{\"message\":{\"content\":\"e\"},\"index\":0}]}",
     0},
    {"{\"choices\":[{\"message\":{\"content\":\"\\ud800\"}}]}", 0},
    {"{\"choices\":[{\"message\":{\"\\u0063ontent\":\"a\"}}]}", 0},
    {"{\"choices\":[],\"x\":[[[[[[[[[[1]]]]]]]]]]}", 0},
    /* not answers at all: both paths refuse or skip */
    {"{\"choices\":[]} x", 0},
    {"{\"choices\":[{\"message\":{\"content\":\"a\x01\"}}]}", 0},
    {"[1]", 0},
    {"{\"model\":\"m\"}", 0},
};

/* Replaces every "message" key with "delta", into out. */
static void as_delta(const char *body, struct ibex_buf *out)
{
    ibex_buf_reset(out);
    for (const char *p = body; *p;) {
        if (strncmp(p, "\"message\"", 9) == 0) {
            ibex_buf_append_cstr(out, "\"delta\"");
            p += 9;
        } else {
            ibex_buf_append(out, p++, 1);
        }
    }
}

static void test_in_place_matches_json_c(void **state)
{
    struct ibex_buf line;
    ibex_buf_init(&line);
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const char *body = shapes[i].body;
        struct ibex_answer fast, ref;
        ibex_answer_init(&fast, MiB);
        ibex_answer_init(&ref, MiB);
        ref.json_c_only = true;
        int rf = ibex_answer_from_json(&fast, body, strlen(body));
        int rr = ibex_answer_from_json(&ref, body, strlen(body));
        if (rf != rr)
            fail_msg("shape %zu: from_json %d, json-c %d", i, rf, rr);
        assert_same(&fast, &ref, body);
        if (fast.fast_events != (uint64_t)shapes[i].fast)
            fail_msg("shape %zu: read in place %llu times, want %d", i,
                     (unsigned long long)fast.fast_events, shapes[i].fast);
        ibex_answer_dispose(&fast);
        ibex_answer_dispose(&ref);

        /* the same as a stream: a data line, then a second one appending to the first */
        as_delta(body, &line);
        ibex_buf_append_cstr(&line, "\n\n");
        ibex_answer_init(&fast, MiB);
        ibex_answer_init(&ref, MiB);
        ref.json_c_only = true;
        for (int k = 0; k < 2; k++) {
            feed_str(&fast, "data: ");
            ibex_answer_feed_sse(&fast, line.p, line.len);
            feed_str(&ref, "data: ");
            ibex_answer_feed_sse(&ref, line.p, line.len);
        }
        assert_same(&fast, &ref, line.p);
        assert_true(ref.fast_events == 0);
        if (shapes[i].fast && fast.fast_events != 2)
            fail_msg("shape %zu: stream read in place %llu times, want 2", i,
                     (unsigned long long)fast.fast_events);
        ibex_answer_dispose(&fast);
        ibex_answer_dispose(&ref);
    }
    ibex_buf_dispose(&line);

    /* the decoded text itself, not only the two paths' agreement */
    struct ibex_answer a;
    ibex_answer_init(&a, MiB);
    assert_int_equal(ibex_answer_from_json(&a, shapes[1].body, strlen(shapes[1].body)), 0);
    assert_int_equal(a.fast_events, 1);
    static const char want[] = "a\nb\"c\\d/e\xc3\xa9\xf0\x9f\x98\x80\0f\t";
    assert_int_equal(a.content.len, sizeof(want) - 1);
    assert_memory_equal(a.content.p, want, sizeof(want) - 1);
    ibex_answer_dispose(&a);
}

/* Truncation at max_bytes falls at the same byte on both paths, escapes included. */
static void test_in_place_truncates_like_json_c(void **state)
{
    static const char body[] =
        "{\"choices\":[{\"message\":{\"content\":\"ab\\u00e9cd\\nef\"}}],\"model\":\"m\"}";
    for (size_t max = 0; max < 12; max++) {
        struct ibex_answer fast, ref;
        ibex_answer_init(&fast, max);
        ibex_answer_init(&ref, max);
        ref.json_c_only = true;
        assert_int_equal(ibex_answer_from_json(&fast, body, sizeof(body) - 1), 0);
        assert_int_equal(ibex_answer_from_json(&ref, body, sizeof(body) - 1), 0);
        assert_int_equal(fast.fast_events, 1);
        assert_same(&fast, &ref, "truncated");
        ibex_answer_dispose(&fast);
        ibex_answer_dispose(&ref);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_content),
        cmocka_unit_test(test_json_tool_calls),
        cmocka_unit_test(test_json_null_content_no_usage),
        cmocka_unit_test(test_json_usage_partial),
        cmocka_unit_test(test_json_only_choice_zero),
        cmocka_unit_test(test_json_rejected),
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_matches_json),
        cmocka_unit_test(test_stream_include_usage),
        cmocka_unit_test(test_stream_tool_call_deltas),
        cmocka_unit_test(test_tool_call_escaping),
        cmocka_unit_test(test_stream_multiple_choices),
        cmocka_unit_test(test_stream_done),
        cmocka_unit_test(test_stream_comments_and_fields),
        cmocka_unit_test(test_stream_malformed_skipped),
        cmocka_unit_test(test_stream_oversized),
        cmocka_unit_test(test_stream_line_max_lowered),
        cmocka_unit_test(test_truncation_content),
        cmocka_unit_test(test_truncation_tool_calls),
        cmocka_unit_test(test_utf8_split_across_feeds),
        cmocka_unit_test(test_model_and_finish_bounds),
        cmocka_unit_test(test_in_place_matches_json_c),
        cmocka_unit_test(test_in_place_truncates_like_json_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
