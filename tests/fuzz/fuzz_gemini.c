/* libFuzzer target: the Gemini provider's translators (src/providers/gemini.c). The first four
 * bytes choose two split points and flags; the rest is used four ways (with flag 4, the
 * stream is the rest's lines, each made a data line: events to mutate, not SSE framing):
 * - as an OpenAI chat request body: when the gateway's validator takes it, build_request either
 *   refuses it with a VALIDATION_ERROR and a field_errors array, or writes a strict JSON object
 *   to a URL that stays under the models/ path;
 * - as a generateContent answer: when translated, the result is a strict JSON chat.completion
 *   the answer collector reads;
 * - as a streamGenerateContent SSE stream, fed whole, in three pieces and (when short) a byte at
 *   a time: the results agree, and every output is SSE whose data lines the answer collector
 *   parses without skipping one, with no partial line left over;
 * - and the same stream, whole and in the three pieces, through the decoder and its json-c-only
 *   reference twin (gemini.h): after every piece both have written the same bytes and are in
 *   the same state, so the fast scanner never writes what json-c would not. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "../../src/core/arena.h"
#include "../../src/gateway/answer.h"
#include "../../src/providers/gemini.h"
#include "../../src/providers/provider.h"

static struct ibex_provider_config cfg = {
    .name = "gem", .type = IBEX_PROVIDER_GEMINI, .base_url = "https://gl.test"};
static const struct ibex_provider prov = {
    .ops = &ibex_provider_gemini, .cfg = &cfg, .auth_header = "x-goog-api-key: k"};

static bool strict_json(const char *s, size_t len, enum json_type type)
{
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    bool ok = json_tokener_get_error(tok) == json_tokener_success &&
              json_tokener_get_parse_end(tok) == len && json_object_is_type(o, type);
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

static void request(const char *p, size_t n, bool stream)
{
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(&chat, p, n, &e) != 0) {
        ibex_chat_error_dispose(&e);
        return;
    }
    chat.stream = stream;
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_upstream_request out;
    if (prov.ops->build_request(&prov, &chat, p, n, NULL, arena, &out, &e) == 0) {
        assert(strict_json(out.body, out.body_len, json_type_object));
        const char *prefix = "https://gl.test/v1beta/models/";
        assert(strncmp(out.url, prefix, strlen(prefix)) == 0);
        const char *model = out.url + strlen(prefix), *colon = strchr(model, ':');
        assert(colon != NULL && colon > model);
        for (const char *c = model; c < colon; c++) /* the name stays one path segment */
            assert(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                          *c) != NULL);
        assert(strcmp(colon, stream ? ":streamGenerateContent?alt=sse" : ":generateContent") == 0);
        assert(out.streaming == stream);
    } else {
        assert(e.code && strcmp(e.code, "VALIDATION_ERROR") == 0);
        assert(e.param[0] != '\0' && e.message[0] != '\0');
        assert(strict_json(e.field_errors.p, e.field_errors.len, json_type_array));
    }
    ibex_arena_free(arena);
    ibex_chat_request_dispose(&chat);
    ibex_chat_error_dispose(&e);
}

static void answer(const struct ibex_chat_request *chat, const char *p, size_t n)
{
    struct ibex_buf out;
    ibex_buf_init(&out);
    if (prov.ops->translate_answer(&prov, chat, p, n, &out) == 0) {
        assert(strict_json(out.p, out.len, json_type_object));
        struct ibex_answer a;
        ibex_answer_init(&a, (size_t)1 << 20);
        assert(ibex_answer_from_json(&a, out.p, out.len) == 0);
        ibex_answer_dispose(&a);
    }
    ibex_buf_dispose(&out);
}

struct result {
    int rc;
    const char *error;
    int64_t prompt, completion;
    struct ibex_answer a;
};

/* Feeds p cut at the offsets in cuts (ascending), ends the stream, collects the output. */
static void stream(const struct ibex_chat_request *chat, const char *p, size_t n,
                   const size_t *cuts, size_t ncuts, struct result *r)
{
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_provider_stream *s = prov.ops->stream_open(&prov, chat, arena);
    struct ibex_buf out;
    ibex_buf_init(&out);
    r->rc = 0;
    size_t off = 0;
    for (size_t i = 0; i <= ncuts && r->rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        r->rc = prov.ops->stream_feed(s, p + off, end - off, &out);
        off = end;
    }
    if (r->rc == 0)
        r->rc = prov.ops->stream_end(s, &out);
    r->error = s->error;
    r->prompt = s->prompt_tokens;
    r->completion = s->completion_tokens;
    assert((r->rc != 0) == (r->error != NULL));
    ibex_answer_init(&r->a, (size_t)1 << 24);
    if (out.len > 0)
        ibex_answer_feed_sse(&r->a, out.p, out.len);
    assert(r->a.skipped == 0 && r->a.sse.skipped == 0 && r->a.sse.line.len == 0);
    assert(r->a.done == (r->rc == 0));
    if (r->rc == 0) {
        assert(out.len >= 14 && memcmp(out.p + out.len - 14, "data: [DONE]\n\n", 14) == 0);
        assert(r->a.finish_reason[0] != '\0');
    }
    ibex_buf_dispose(&out);
    ibex_arena_free(arena);
}

/* The decoder and its reference twin, fed the same pieces: same return codes, same bytes, same
 * state after each. */
static void differential(const struct ibex_chat_request *chat, const char *p, size_t n,
                         const size_t *cuts, size_t ncuts)
{
    struct ibex_arena *arena = ibex_arena_new(1024);
    struct ibex_provider_stream *f = prov.ops->stream_open(&prov, chat, arena);
    struct ibex_provider_stream *r = ibex_gemini_stream_open_reference(&prov, chat, arena, f);
    struct ibex_buf fo, ro;
    ibex_buf_init(&fo);
    ibex_buf_init(&ro);
    int rc = 0;
    size_t off = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        rc = prov.ops->stream_feed(f, p + off, end - off, &fo);
        assert(prov.ops->stream_feed(r, p + off, end - off, &ro) == rc);
        assert(fo.len == ro.len && (fo.len == 0 || memcmp(fo.p, ro.p, fo.len) == 0));
        assert(ibex_gemini_stream_same(f, r));
        off = end;
    }
    if (rc == 0) {
        rc = prov.ops->stream_end(f, &fo);
        assert(prov.ops->stream_end(r, &ro) == rc);
        assert(fo.len == ro.len && (fo.len == 0 || memcmp(fo.p, ro.p, fo.len) == 0));
        assert(ibex_gemini_stream_same(f, r));
    }
    assert(ibex_gemini_stream_fast_events(r) == 0);
    ibex_buf_dispose(&fo);
    ibex_buf_dispose(&ro);
    ibex_arena_free(arena);
}

/* Each line of p as a data line of its own ("data: <line>\n\n"). */
static void as_events(const char *p, size_t n, struct ibex_buf *out)
{
    size_t off = 0;
    while (off < n) {
        const char *nl = memchr(p + off, '\n', n - off);
        size_t end = nl ? (size_t)(nl - p) : n;
        ibex_buf_append(out, "data: ", 6);
        ibex_buf_append(out, p + off, end - off);
        ibex_buf_append(out, "\n\n", 2);
        off = end + 1;
    }
}

/* Tool call ids may hold a random part (no usable responseId): compare their lengths only. */
static void same(const struct result *x, const struct result *y)
{
    assert(x->rc == y->rc);
    assert((x->error == NULL) == (y->error == NULL));
    assert(x->error == NULL || strcmp(x->error, y->error) == 0);
    assert(x->prompt == y->prompt && x->completion == y->completion);
    assert(x->a.content.len == y->a.content.len);
    assert(x->a.content.len == 0 || memcmp(x->a.content.p, y->a.content.p, x->a.content.len) == 0);
    assert(x->a.tool_calls.len == y->a.tool_calls.len);
    assert(strcmp(x->a.finish_reason, y->a.finish_reason) == 0);
    assert(strcmp(x->a.model, y->a.model) == 0);
    assert(x->a.prompt_tokens == y->a.prompt_tokens);
    assert(x->a.completion_tokens == y->a.completion_tokens);
    assert(x->a.total_tokens == y->a.total_tokens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const char *p = (const char *)data + 4;
    size_t n = size - 4;

    request(p, n, data[3] & 1);

    static const char body[] = "{\"model\":\"gemini-2.5-flash\",\"messages\":[{\"role\":\"user\","
                               "\"content\":\"x\"}]}";
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(&chat, body, sizeof(body) - 1, &e) != 0)
        __builtin_trap();
    ibex_chat_error_dispose(&e);
    chat.stream = true;
    chat.include_usage = data[3] & 2;

    answer(&chat, p, n);

    struct ibex_buf events;
    ibex_buf_init(&events);
    if (data[3] & 4) {
        as_events(p, n, &events);
        p = events.p ? events.p : "";
        n = events.len;
    }
    size_t cuts[2];
    cuts[0] = data[1] % (n + 1);
    cuts[1] = cuts[0] + data[2] % (n - cuts[0] + 1);
    struct result whole, pieces;
    stream(&chat, p, n, NULL, 0, &whole);
    stream(&chat, p, n, cuts, 2, &pieces);
    same(&whole, &pieces);
    differential(&chat, p, n, NULL, 0);
    differential(&chat, p, n, cuts, 2);
    ibex_answer_dispose(&pieces.a);
    if (n <= 512) {
        size_t every[512];
        for (size_t i = 0; i + 1 < n; i++)
            every[i] = i + 1;
        struct result bytes;
        stream(&chat, p, n, every, n > 0 ? n - 1 : 0, &bytes);
        same(&whole, &bytes);
        ibex_answer_dispose(&bytes.a);
    }
    ibex_answer_dispose(&whole.a);
    ibex_buf_dispose(&events);
    ibex_chat_request_dispose(&chat);
    return 0;
}
