/* libFuzzer target: the Anthropic provider's translators (src/providers/anthropic.c). The first
 * byte picks the stream_options, the next two pick split points; the rest goes to all three:
 * - as an OpenAI request body: when chat_request accepts it, build_request gives either one
 *   strict JSON object or a VALIDATION_ERROR that names a field;
 * - as a Messages answer: a translation is one JSON object the answer collector accepts;
 * - as an Anthropic event stream, fed whole, in three pieces and (when short) a byte at a time:
 *   the same chunks every time (created aside), each one "data: <JSON object>\n\n", "[DONE]"
 *   only last and only after a clean end, read by the answer collector without a skipped line;
 *   and whole through the json-c-only twin (anthropic.h): the same bytes, tokens and result.
 * Everything is freed leak-free (arena hooks included). */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/core/arena.h"
#include "../../src/gateway/answer.h"
#include "../../src/providers/anthropic.h"
#include "../../src/providers/provider.h"

static struct ibex_provider_config cfg = {
    .name = "claude", .type = IBEX_PROVIDER_ANTHROPIC, .base_url = "http://127.0.0.1:9"};
static struct ibex_provider prov = {.ops = &ibex_provider_anthropic,
                                    .cfg = &cfg,
                                    .chat_url = "http://127.0.0.1:9/v1/messages",
                                    .auth_header = "x-api-key: fuzz"};

static bool json_object_text(const char *s, size_t len)
{
    json_object *o = NULL;
    char msg[8];
    if (ibex_json_parse(s, len, &o, msg, sizeof(msg)) != 0)
        return false;
    bool ok = json_object_is_type(o, json_type_object);
    json_object_put(o);
    return ok;
}

static void check_request(const char *p, size_t n)
{
    struct ibex_chat_request chat;
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_chat_request_parse(&chat, p, n, &e) == 0) {
        ibex_chat_error_dispose(&e);
        ibex_chat_error_init(&e);
        struct ibex_arena *arena = ibex_arena_new(512);
        struct ibex_upstream_request out;
        if (prov.ops->build_request(&prov, &chat, p, n, NULL, arena, &out, &e) == 0) {
            assert(json_object_text(out.body, out.body_len));
            assert(out.headers[0] && out.url == prov.chat_url);
        } else {
            assert(e.code && strcmp(e.code, "VALIDATION_ERROR") == 0 && e.param[0] != '\0');
            json_object *fe = NULL;
            char msg[8];
            assert(ibex_json_parse(e.field_errors.p, e.field_errors.len, &fe, msg, sizeof(msg)) ==
                   0);
            assert(json_object_is_type(fe, json_type_array));
            json_object_put(fe);
        }
        ibex_arena_free(arena);
        ibex_chat_request_dispose(&chat);
    }
    ibex_chat_error_dispose(&e);
}

static void check_answer(const struct ibex_chat_request *chat, const char *p, size_t n)
{
    struct ibex_buf out;
    ibex_buf_init(&out);
    if (prov.ops->translate_answer(&prov, chat, p, n, &out) == 0) {
        assert(json_object_text(out.p, out.len));
        struct ibex_answer a;
        ibex_answer_init(&a, (size_t)1 << 20);
        assert(ibex_answer_from_json(&a, out.p, out.len) == 0);
        ibex_answer_dispose(&a);
    } else {
        assert(out.len == 0);
    }
    ibex_buf_dispose(&out);
}

/* "created":<digits> -> "created":0 */
static void normalise(struct ibex_buf *b)
{
    static const char key[] = "\"created\":";
    size_t w = 0;
    for (size_t r = 0; r < b->len;) {
        if (b->len - r >= sizeof(key) - 1 && memcmp(b->p + r, key, sizeof(key) - 1) == 0) {
            memmove(b->p + w, key, sizeof(key) - 1);
            w += sizeof(key) - 1;
            r += sizeof(key) - 1;
            b->p[w++] = '0';
            while (r < b->len && b->p[r] >= '0' && b->p[r] <= '9')
                r++;
            continue;
        }
        b->p[w++] = b->p[r++];
    }
    b->len = w;
}

struct run {
    int rc; /* 0: the stream ended cleanly */
    int64_t prompt, completion;
};

/* reference: the json-c-only twin (anthropic.h) instead of the decoder. */
static struct run run_stream(const struct ibex_chat_request *chat, const char *p, size_t n,
                             const size_t *cuts, size_t ncuts, bool reference, struct ibex_buf *out)
{
    struct ibex_arena *arena = ibex_arena_new(512);
    struct ibex_provider_stream *s =
        reference ? ibex_anthropic_stream_open_reference(&prov, chat, arena, NULL)
                  : prov.ops->stream_open(&prov, chat, arena);
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        rc = prov.ops->stream_feed(s, p + at, to - at, out);
        at = to;
    }
    if (rc == 0)
        rc = prov.ops->stream_end(s, out);
    assert(rc == 0 || s->error != NULL);
    struct run r = {rc, s->prompt_tokens, s->completion_tokens};
    ibex_arena_free(arena);
    normalise(out);
    return r;
}

static void check_chunks(const struct ibex_buf *out, int rc)
{
    size_t off = 0;
    bool done = false;
    while (off < out->len) {
        assert(!done); /* nothing after [DONE] */
        const char *ev = out->p + off;
        const char *end = memmem(ev, out->len - off, "\n\n", 2);
        assert(end != NULL && out->len - off >= 6 && memcmp(ev, "data: ", 6) == 0);
        size_t len = (size_t)(end - ev) - 6;
        assert(memchr(ev + 6, '\n', len) == NULL && memchr(ev + 6, '\r', len) == NULL);
        if (len == 6 && memcmp(ev + 6, "[DONE]", 6) == 0)
            done = true;
        else
            assert(json_object_text(ev + 6, len));
        off = (size_t)(end - out->p) + 2;
    }
    assert(done == (rc == 0));
    struct ibex_answer a;
    ibex_answer_init(&a, (size_t)1 << 20);
    if (out->len > 0) /* an empty buffer has no bytes to point at */
        ibex_answer_feed_sse(&a, out->p, out->len);
    assert(a.skipped == 0 && a.sse.skipped == 0 && a.sse.line.len == 0 && a.done == done);
    ibex_answer_dispose(&a);
}

static void same(const struct ibex_buf *x, struct run rx, const struct ibex_buf *y, struct run ry)
{
    assert(x->len == y->len && (x->len == 0 || memcmp(x->p, y->p, x->len) == 0));
    assert(rx.rc == ry.rc && rx.prompt == ry.prompt && rx.completion == ry.completion);
}

static void check_stream(const struct ibex_chat_request *chat, const uint8_t *data, const char *p,
                         size_t n)
{
    struct ibex_buf whole, pieces;
    ibex_buf_init(&whole);
    ibex_buf_init(&pieces);
    struct run rw = run_stream(chat, p, n, NULL, 0, false, &whole);
    check_chunks(&whole, rw.rc);
    struct run rr = run_stream(chat, p, n, NULL, 0, true, &pieces);
    same(&whole, rw, &pieces, rr);
    ibex_buf_reset(&pieces);
    size_t cuts[2];
    cuts[0] = data[1] % (n + 1);
    cuts[1] = cuts[0] + data[2] % (n - cuts[0] + 1);
    struct run rp = run_stream(chat, p, n, cuts, 2, false, &pieces);
    same(&whole, rw, &pieces, rp);
    if (n <= 512) {
        size_t every[512];
        for (size_t i = 0; i < n; i++)
            every[i] = i;
        ibex_buf_reset(&pieces);
        rp = run_stream(chat, p, n, every, n, false, &pieces);
        same(&whole, rw, &pieces, rp);
    }
    ibex_buf_dispose(&whole);
    ibex_buf_dispose(&pieces);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ibex_chat_request chats[2];
    static bool ready;
    if (!ready) {
        static const char *const bodies[2] = {
            "{\"model\":\"claude-x\",\"stream\":true,\"messages\":[{\"role\":\"user\","
            "\"content\":\"q\"}]}",
            "{\"model\":\"claude-x\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
            "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}"};
        for (int i = 0; i < 2; i++) {
            struct ibex_chat_error e;
            ibex_chat_error_init(&e);
            int rc = ibex_chat_request_parse(&chats[i], bodies[i], strlen(bodies[i]), &e);
            assert(rc == 0);
            (void)rc;
            ibex_chat_error_dispose(&e);
        }
        ready = true;
    }
    if (size < 3)
        return 0;
    const struct ibex_chat_request *chat = &chats[data[0] & 1];
    const char *p = (const char *)data + 3;
    size_t n = size - 3;
    check_request(p, n);
    check_answer(chat, p, n);
    check_stream(chat, data, p, n);
    return 0;
}
