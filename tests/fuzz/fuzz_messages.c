/* libFuzzer target: the /v1/messages translators (src/gateway/messages.c). The first two bytes
 * pick split points; the rest goes to all three:
 * - as a Messages request: either an OpenAI body that chat_request accepts (so the pipeline can
 *   run it), or INVALID_JSON, or a VALIDATION_ERROR that names a field; the buffer it was
 *   appended to is left as it was on failure;
 * - as a chat.completion: a translation is one JSON object of type "message" with a content
 *   array, or nothing at all;
 * - as an OpenAI event stream, fed whole, in three pieces and (when short) a byte at a time,
 *   then ended: the same bytes every time, each event "event: T\ndata: <JSON object of type
 *   T>\n\n", at most one message_start (first) and nothing after message_stop or error.
 * Everything is freed leak-free. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/gateway/messages.h"

static json_object *parse(const char *s, size_t len)
{
    json_object *o = NULL;
    char msg[8];
    if (ibex_json_parse(s, len, &o, msg, sizeof(msg)) != 0)
        return NULL;
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static void check_request(const char *p, size_t n)
{
    struct ibex_buf out;
    ibex_buf_init(&out);
    ibex_buf_append_cstr(&out, "x");
    struct ibex_chat_error e;
    ibex_chat_error_init(&e);
    if (ibex_messages_request(p, n, &out, &e) == 0) {
        struct ibex_chat_request chat;
        struct ibex_chat_error ce;
        ibex_chat_error_init(&ce);
        int rc = ibex_chat_request_parse(&chat, out.p + 1, out.len - 1, &ce);
        assert(rc == 0);
        (void)rc;
        ibex_chat_request_dispose(&chat);
        ibex_chat_error_dispose(&ce);
    } else {
        assert(out.len == 1 && out.p[0] == 'x' && out.p[1] == '\0');
        assert(e.code && e.message[0]);
        if (strcmp(e.code, "VALIDATION_ERROR") == 0) {
            assert(e.param[0] != '\0');
            json_object *fe = NULL;
            char msg[8];
            assert(ibex_json_parse(e.field_errors.p, e.field_errors.len, &fe, msg, sizeof(msg)) ==
                   0);
            assert(json_object_is_type(fe, json_type_array));
            json_object_put(fe);
        } else {
            assert(strcmp(e.code, "INVALID_JSON") == 0);
        }
    }
    ibex_chat_error_dispose(&e);
    ibex_buf_dispose(&out);
}

static void check_answer(const char *p, size_t n)
{
    struct ibex_buf out;
    ibex_buf_init(&out);
    if (ibex_messages_answer(p, n, "fuzz", 4, &out) == 0) {
        json_object *m = parse(out.p, out.len), *v = NULL;
        assert(m != NULL);
        assert(json_object_object_get_ex(m, "type", &v) &&
               strcmp(json_object_get_string(v), "message") == 0);
        assert(json_object_object_get_ex(m, "content", &v) &&
               json_object_is_type(v, json_type_array));
        json_object_put(m);
    } else {
        assert(out.len == 0);
    }
    ibex_buf_dispose(&out);
}

static void run_stream(const char *p, size_t n, const size_t *cuts, size_t ncuts,
                       struct ibex_buf *out)
{
    struct ibex_messages_stream s;
    ibex_messages_stream_init(&s, "fuzz", 4);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        ibex_messages_stream_feed(&s, p + at, to - at, out);
        at = to;
    }
    ibex_messages_stream_end(&s, out);
    ibex_messages_stream_dispose(&s);
}

static void check_events(const struct ibex_buf *out)
{
    size_t off = 0, nevents = 0;
    bool over = false;
    while (off < out->len) {
        assert(!over); /* nothing after message_stop or error */
        const char *ev = out->p + off;
        const char *end = memmem(ev, out->len - off, "\n\n", 2);
        const char *nl = memchr(ev, '\n', out->len - off);
        assert(end != NULL && nl != NULL && nl <= end);
        assert(out->len - off > 7 && memcmp(ev, "event: ", 7) == 0);
        assert((size_t)(end - nl) > 6 && memcmp(nl + 1, "data: ", 6) == 0);
        size_t tlen = (size_t)(nl - ev) - 7, dlen = (size_t)(end - nl) - 7;
        assert(memchr(nl + 7, '\n', dlen) == NULL && memchr(nl + 7, '\r', dlen) == NULL);
        json_object *d = parse(nl + 7, dlen), *t = NULL;
        assert(d != NULL && json_object_object_get_ex(d, "type", &t));
        const char *type = json_object_get_string(t);
        assert(strlen(type) == tlen && memcmp(type, ev + 7, tlen) == 0);
        assert((nevents == 0) == (strcmp(type, "message_start") == 0) ||
               strcmp(type, "error") == 0);
        over = strcmp(type, "message_stop") == 0 || strcmp(type, "error") == 0;
        json_object_put(d);
        nevents++;
        off = (size_t)(end - out->p) + 2;
    }
    assert(over); /* every stream ends with message_stop or an error */
}

static void check_stream(const uint8_t *data, const char *p, size_t n)
{
    struct ibex_buf whole, pieces;
    ibex_buf_init(&whole);
    ibex_buf_init(&pieces);
    run_stream(p, n, NULL, 0, &whole);
    check_events(&whole);
    size_t cuts[2];
    cuts[0] = data[0] % (n + 1);
    cuts[1] = cuts[0] + data[1] % (n - cuts[0] + 1);
    run_stream(p, n, cuts, 2, &pieces);
    assert(pieces.len == whole.len && memcmp(pieces.p, whole.p, whole.len) == 0);
    if (n <= 512) {
        size_t every[512];
        for (size_t i = 0; i < n; i++)
            every[i] = i;
        ibex_buf_reset(&pieces);
        run_stream(p, n, every, n, &pieces);
        assert(pieces.len == whole.len && memcmp(pieces.p, whole.p, whole.len) == 0);
    }
    ibex_buf_dispose(&whole);
    ibex_buf_dispose(&pieces);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *p = (const char *)data + 2;
    size_t n = size - 2;
    check_request(p, n);
    check_answer(p, n);
    check_stream(data, p, n);
    return 0;
}
