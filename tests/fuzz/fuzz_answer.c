/* libFuzzer target: chat completion answers (src/gateway/answer.c). The first four bytes choose
 * max_bytes, line_max and two split points; the rest is fed as SSE in three pieces, in one
 * piece and (when short) a byte at a time, which must all give the same answer, and is parsed
 * as a response body. Both, the stream and the body, also go through json-c alone
 * (json_c_only), which must give the same answer as the in-place path. Every answer stays
 * within max_bytes, keeps tool_calls a valid JSON array and is freed leak-free. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "../../src/gateway/answer.h"

static void check(const struct ibex_answer *a)
{
    assert(a->content.len + a->tool_calls.len <= a->max_bytes);
    assert(memchr(a->finish_reason, '\0', sizeof(a->finish_reason)) != NULL);
    assert(memchr(a->model, '\0', sizeof(a->model)) != NULL);
    assert(a->prompt_tokens >= -1 && a->completion_tokens >= -1 && a->total_tokens >= -1);
    assert(a->sse.line.len <= a->sse.line_max);
    if (a->tool_calls.len > 0) {
        json_tokener *tok = json_tokener_new();
        json_object *o = json_tokener_parse_ex(tok, a->tool_calls.p, (int)a->tool_calls.len);
        assert(json_tokener_get_error(tok) == json_tokener_success);
        assert(json_tokener_get_parse_end(tok) == a->tool_calls.len);
        assert(json_object_is_type(o, json_type_array) && json_object_array_length(o) > 0);
        json_object_put(o);
        json_tokener_free(tok);
    }
}

static void same(const struct ibex_answer *x, const struct ibex_answer *y)
{
    assert(x->content.len == y->content.len);
    assert(x->content.len == 0 || memcmp(x->content.p, y->content.p, x->content.len) == 0);
    assert(x->tool_calls.len == y->tool_calls.len);
    assert(x->tool_calls.len == 0 ||
           memcmp(x->tool_calls.p, y->tool_calls.p, x->tool_calls.len) == 0);
    assert(strcmp(x->finish_reason, y->finish_reason) == 0 && strcmp(x->model, y->model) == 0);
    assert(x->prompt_tokens == y->prompt_tokens && x->completion_tokens == y->completion_tokens &&
           x->total_tokens == y->total_tokens);
    assert(x->done == y->done && x->truncated == y->truncated && x->skipped == y->skipped);
    assert(x->sse.skipped == y->sse.skipped && x->sse.line.len == y->sse.line.len);
}

static void start(struct ibex_answer *a, const uint8_t *data)
{
    /* Small caps reach truncation and the oversized-line path; 255 means the defaults. */
    ibex_answer_init(a, data[0] == 255 ? (size_t)1 << 20 : (size_t)data[0] * 4);
    if (data[1] != 255)
        a->sse.line_max = 16 + (size_t)data[1] * 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const char *p = (const char *)data + 4;
    size_t n = size - 4;
    size_t s1 = data[2] % (n + 1);
    size_t s2 = s1 + data[3] % (n - s1 + 1);

    struct ibex_answer pieces, whole;
    start(&pieces, data);
    ibex_answer_feed_sse(&pieces, p, s1);
    ibex_answer_feed_sse(&pieces, p + s1, s2 - s1);
    ibex_answer_feed_sse(&pieces, p + s2, n - s2);
    check(&pieces);
    start(&whole, data);
    ibex_answer_feed_sse(&whole, p, n);
    check(&whole);
    same(&pieces, &whole);
    if (n <= 512) {
        struct ibex_answer bytes;
        start(&bytes, data);
        for (size_t i = 0; i < n; i++)
            ibex_answer_feed_sse(&bytes, p + i, 1);
        same(&bytes, &whole);
        ibex_answer_dispose(&bytes);
    }
    struct ibex_answer twin;
    start(&twin, data);
    twin.json_c_only = true;
    ibex_answer_feed_sse(&twin, p, n);
    same(&twin, &whole);
    ibex_answer_dispose(&twin);
    ibex_answer_dispose(&pieces);
    ibex_answer_dispose(&whole);

    struct ibex_answer body;
    start(&body, data);
    int rc = ibex_answer_from_json(&body, p, n);
    if (rc != 0) {
        assert(body.content.len == 0 && body.tool_calls.len == 0 && body.model[0] == '\0' &&
               body.finish_reason[0] == '\0' && body.prompt_tokens == -1 && !body.truncated);
    }
    check(&body);
    start(&twin, data);
    twin.json_c_only = true;
    assert(ibex_answer_from_json(&twin, p, n) == rc);
    same(&twin, &body);
    ibex_answer_dispose(&twin);
    ibex_answer_dispose(&body);
    return 0;
}
