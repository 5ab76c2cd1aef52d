/* Collects a chat completion answer from a response body or from SSE bytes in flight.
 * Invariants:
 * - content.len + tool_calls.len <= max_bytes; once an append does not fit, truncated is set
 *   and neither buffer changes again (the answer is a prefix of the real one).
 * - tool_calls is kept rendered as a valid JSON array at all times; calls[] records, for each
 *   call in index order, where its object starts and the escaped length of its four fields, so
 *   a delta is spliced in place: the common case (arguments of the last call) touches only the
 *   bytes it adds, never re-rendering the array.
 * - Streams are handled a data line at a time (core/sse.c). */
#include "answer.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/json.h"
#include "chat_request.h"

/* The text of one call: HEAD id SEP_TYPE type SEP_NAME name SEP_ARGS arguments TAIL. */
#define HEAD "{\"id\":\""
#define SEP_TYPE "\",\"type\":\""
#define SEP_NAME "\",\"function\":{\"name\":\""
#define SEP_ARGS "\",\"arguments\":\""
#define TAIL "\"}}"
#define DEFAULT_TYPE "function"
#define SKELETON HEAD SEP_TYPE DEFAULT_TYPE SEP_NAME SEP_ARGS TAIL
#define LIT_LEN(s) (sizeof(s) - 1)

enum { F_ID, F_TYPE, F_NAME, F_ARGS, NFIELDS };

struct ibex_answer_call {
    int64_t index;
    size_t start;        /* offset of the call's '{' in tool_calls */
    size_t len[NFIELDS]; /* escaped length of each field's text */
};

void ibex_answer_init(struct ibex_answer *a, size_t max_bytes)
{
    memset(a, 0, sizeof(*a));
    ibex_buf_init(&a->content);
    ibex_buf_init(&a->tool_calls);
    ibex_sse_init(&a->sse);
    ibex_buf_init(&a->scratch);
    a->prompt_tokens = a->completion_tokens = a->total_tokens = -1;
    a->max_bytes = max_bytes;
}

void ibex_answer_dispose(struct ibex_answer *a)
{
    ibex_buf_dispose(&a->content);
    ibex_buf_dispose(&a->tool_calls);
    ibex_sse_dispose(&a->sse);
    ibex_buf_dispose(&a->scratch);
    free(a->calls);
    size_t max_bytes = a->max_bytes;
    ibex_answer_init(a, max_bytes);
}

static size_t room(const struct ibex_answer *a)
{
    return a->max_bytes - a->content.len - a->tool_calls.len;
}

/* The longest prefix of s no longer than max that does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

static void copy_field(char *dst, size_t cap, const char *s, size_t len)
{
    len = utf8_cut(s, len, cap - 1);
    memcpy(dst, s, len);
    dst[len] = '\0';
}

static void append_content(struct ibex_answer *a, const char *s, size_t len)
{
    if (a->truncated || len == 0)
        return;
    size_t n = utf8_cut(s, len, room(a));
    if (n < len)
        a->truncated = true;
    if (n > 0)
        ibex_buf_append(&a->content, s, n);
}

/* Appends s to out as the inside of a JSON string literal (the rules of
 * ibex_buf_append_json_str: invalid UTF-8 becomes U+FFFD), as far as whole escapes fit in
 * max bytes. Returns whether all of s went in. */
static bool escape_fit(struct ibex_buf *out, const char *s, size_t len, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t used = 0, i = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            size_t start = i;
            while (i < len && i - start < max - used && u[i] >= 0x20 && u[i] != '"' &&
                   u[i] != '\\' && u[i] < 0x80)
                i++;
            if (i == start)
                return false;
            ibex_buf_append(out, s + start, i - start);
            used += i - start;
            continue;
        }
        char unit[6] = {'\\', 0, 0, 0, 0, 0};
        const char *src = unit;
        size_t n = 2, consumed = 1;
        if (c >= 0x80) {
            consumed = ibex_utf8_seq_len(u + i, len - i);
            if (consumed == 0) { /* parsed text is UTF-8 checked; kept so tool_calls stays JSON */
                src = "\xEF\xBF\xBD";
                n = 3;
                consumed = 1;
            } else {
                src = s + i;
                n = consumed;
            }
        } else if (c == '"' || c == '\\') {
            unit[1] = (char)c;
        } else if (c == '\n') {
            unit[1] = 'n';
        } else if (c == '\r') {
            unit[1] = 'r';
        } else if (c == '\t') {
            unit[1] = 't';
        } else {
            unit[1] = 'u';
            unit[2] = '0';
            unit[3] = '0';
            unit[4] = hex[c >> 4];
            unit[5] = hex[c & 15];
            n = 6;
        }
        if (n > max - used)
            return false;
        ibex_buf_append(out, src, n);
        used += n;
        i += consumed;
    }
    return true;
}

/* Replaces del bytes at offset at of b with n bytes of ins. */
static void splice(struct ibex_buf *b, size_t at, size_t del, const char *ins, size_t n)
{
    if (n > del)
        ibex_buf_reserve(b, n - del);
    memmove(b->p + at + n, b->p + at + del, b->len - at - del);
    if (n > 0)
        memcpy(b->p + at, ins, n);
    b->len = b->len - del + n;
    b->p[b->len] = '\0';
}

static size_t field_at(const struct ibex_answer_call *c, int f)
{
    static const size_t before[NFIELDS] = {LIT_LEN(HEAD), LIT_LEN(SEP_TYPE), LIT_LEN(SEP_NAME),
                                           LIT_LEN(SEP_ARGS)};
    size_t at = c->start;
    for (int i = 0; i < f; i++)
        at += before[i] + c->len[i];
    return at + before[f];
}

/* Puts s into field f of call k: replacing the field's text, or appended to it. */
static void set_field(struct ibex_answer *a, size_t k, int f, const char *s, size_t len,
                      bool replace)
{
    struct ibex_answer_call *c = &a->calls[k];
    size_t at = field_at(c, f), del = replace ? c->len[f] : 0;
    if (!replace)
        at += c->len[f];
    ibex_buf_reset(&a->scratch);
    if (!escape_fit(&a->scratch, s, len, room(a) + del)) {
        a->truncated = true;
        if (replace) /* half an id or a name is no use */
            return;
    }
    size_t n = a->scratch.len;
    if (n == del && (n == 0 || memcmp(a->tool_calls.p + at, a->scratch.p, n) == 0))
        return;
    splice(&a->tool_calls, at, del, a->scratch.p, n);
    c->len[f] = c->len[f] - del + n;
    for (size_t i = k + 1; i < a->ncalls; i++)
        a->calls[i].start = a->calls[i].start - del + n;
}

/* The position of the call with this index, created (in index order) if need be; -1 when a new
 * call does not fit. */
static ptrdiff_t find_call(struct ibex_answer *a, int64_t index)
{
    size_t lo = 0, hi = a->ncalls;
    if (hi > 0 && a->calls[hi - 1].index < index) {
        lo = hi; /* the usual case: a call after the last */
    } else {
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (a->calls[mid].index < index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < a->ncalls && a->calls[lo].index == index)
            return (ptrdiff_t)lo;
    }
    size_t cost = LIT_LEN(SKELETON) + (a->ncalls == 0 ? 2 : 1);
    if (cost > room(a)) {
        a->truncated = true;
        return -1;
    }
    size_t start;
    if (a->ncalls == 0) {
        ibex_buf_append_cstr(&a->tool_calls, "[" SKELETON "]");
        start = 1;
    } else if (lo == a->ncalls) {
        start = a->tool_calls.len; /* after the comma, before the ']' */
        splice(&a->tool_calls, a->tool_calls.len - 1, 0, "," SKELETON, cost);
    } else {
        start = a->calls[lo].start;
        splice(&a->tool_calls, start, 0, SKELETON ",", cost);
        for (size_t i = lo; i < a->ncalls; i++)
            a->calls[i].start += cost;
    }
    if (a->ncalls == a->calls_cap) {
        a->calls_cap = a->calls_cap ? a->calls_cap * 2 : 4;
        a->calls = ibex_xrealloc(a->calls, a->calls_cap * sizeof(*a->calls));
    }
    memmove(&a->calls[lo + 1], &a->calls[lo], (a->ncalls - lo) * sizeof(*a->calls));
    a->ncalls++;
    a->calls[lo] = (struct ibex_answer_call){
        .index = index, .start = start, .len = {0, LIT_LEN(DEFAULT_TYPE), 0, 0}};
    return (ptrdiff_t)lo;
}

static json_object *member(json_object *o, const char *key, enum json_type type)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
        return NULL;
    return v;
}

/* A non-empty string member, or NULL. */
static json_object *nonempty(json_object *o, const char *key)
{
    json_object *v = member(o, key, json_type_string);
    return v && json_object_get_string_len(v) > 0 ? v : NULL;
}

static void merge_call(struct ibex_answer *a, int64_t index, json_object *tc)
{
    if (a->truncated || index < 0)
        return;
    ptrdiff_t k = find_call(a, index);
    if (k < 0)
        return;
    json_object *fn = member(tc, "function", json_type_object), *v;
    if ((v = nonempty(tc, "id")) != NULL)
        set_field(a, (size_t)k, F_ID, json_object_get_string(v),
                  (size_t)json_object_get_string_len(v), true);
    if (!a->truncated && (v = nonempty(tc, "type")) != NULL)
        set_field(a, (size_t)k, F_TYPE, json_object_get_string(v),
                  (size_t)json_object_get_string_len(v), true);
    if (!a->truncated && fn && (v = nonempty(fn, "name")) != NULL)
        set_field(a, (size_t)k, F_NAME, json_object_get_string(v),
                  (size_t)json_object_get_string_len(v), true);
    if (!a->truncated && fn && (v = nonempty(fn, "arguments")) != NULL)
        set_field(a, (size_t)k, F_ARGS, json_object_get_string(v),
                  (size_t)json_object_get_string_len(v), false);
}

static void take_usage(struct ibex_answer *a, json_object *usage)
{
    static const char *const keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    int64_t *dst[] = {&a->prompt_tokens, &a->completion_tokens, &a->total_tokens};
    for (size_t i = 0; i < 3; i++) {
        json_object *v = member(usage, keys[i], json_type_int);
        if (v && json_object_get_int64(v) >= 0)
            *dst[i] = json_object_get_int64(v);
    }
}

/* One chat.completion (msgkey "message") or chat.completion.chunk ("delta"). */
static void take(struct ibex_answer *a, json_object *root, const char *msgkey, bool stream)
{
    json_object *v;
    if (a->model[0] == '\0' && (v = nonempty(root, "model")) != NULL)
        copy_field(a->model, sizeof(a->model), json_object_get_string(v),
                   (size_t)json_object_get_string_len(v));
    if ((v = member(root, "usage", json_type_object)) != NULL)
        take_usage(a, v);
    json_object *choices = member(root, "choices", json_type_array);
    size_t n = choices ? json_object_array_length(choices) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *choice = json_object_array_get_idx(choices, i);
        if (!json_object_is_type(choice, json_type_object))
            continue;
        json_object *idx = member(choice, "index", json_type_int);
        if ((idx ? json_object_get_int64(idx) : (int64_t)i) != 0)
            continue;
        json_object *msg = member(choice, msgkey, json_type_object);
        if (msg && (v = member(msg, "content", json_type_string)) != NULL)
            append_content(a, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        json_object *calls = msg ? member(msg, "tool_calls", json_type_array) : NULL;
        size_t ncalls = calls ? json_object_array_length(calls) : 0;
        for (size_t j = 0; j < ncalls; j++) {
            json_object *tc = json_object_array_get_idx(calls, j);
            if (!json_object_is_type(tc, json_type_object))
                continue;
            /* A stream names the call each delta belongs to; a message lists them in order. */
            json_object *ti = stream ? member(tc, "index", json_type_int) : NULL;
            merge_call(a, ti ? json_object_get_int64(ti) : (int64_t)j, tc);
        }
        if ((v = nonempty(choice, "finish_reason")) != NULL)
            copy_field(a->finish_reason, sizeof(a->finish_reason), json_object_get_string(v),
                       (size_t)json_object_get_string_len(v));
    }
}

/* ---- the fast path ----
 * Nearly every answer and stream chunk is text: one choice with its content, a finish reason,
 * the model, the usage. fast_take reads that shape in place with the JSON cursor (core/json.h),
 * keys in any order, members it has no use for stepped over, and applies what take() would.
 * Anything else (tool calls, an escaped model or finish reason, a repeated member it reads, a
 * member it reads holding another type, counts that are not small integers, more index-0
 * choices than it keeps) is declined before anything changes, and json-c takes the bytes. The
 * differential checks in tests/unit/answer_test.c and tests/fuzz/fuzz_answer.c run both paths
 * (json_c_only) on the same bytes and compare the answers. */

#define FAST_TEXTS 4
#define FAST_SKIP_DEPTH 8 /* nesting of a member stepped over (json-c allows 64 in all) */

struct fast_text {
    struct ibex_str s; /* as written in the JSON text */
    bool escaped;
};

struct fast_answer {
    struct ibex_str model, reason; /* {NULL, 0}: absent or empty (take() skips those) */
    int64_t usage[3];              /* prompt, completion, total; -1: absent */
    bool have_choices;
    struct fast_text text[FAST_TEXTS];
    size_t ntext;
};

/* A count, or null (which take() ignores, as it ignores an absent member): -1. */
static bool fast_count(struct ibex_json_cursor *c, int64_t *n)
{
    if (ibex_json_cur_peek(c) == 'n') {
        *n = -1;
        return ibex_json_cur_null(c);
    }
    return ibex_json_cur_count(c, n);
}

/* An unescaped string, or null: {NULL, 0} for null and for "". */
static bool fast_name(struct ibex_json_cursor *c, struct ibex_str *v)
{
    bool escaped;
    *v = IBEX_STR_NULL;
    if (ibex_json_cur_peek(c) == 'n')
        return ibex_json_cur_null(c);
    if (!ibex_json_cur_str(c, v, &escaped) || escaped)
        return false;
    if (v->len == 0)
        *v = IBEX_STR_NULL;
    return true;
}

static bool fast_usage(struct ibex_json_cursor *c, int64_t usage[3])
{
    static const char *const keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    if (ibex_json_cur_peek(c) == 'n')
        return ibex_json_cur_null(c);
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k;
    int r;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        size_t i = ibex_json_key_index(k, keys, 3);
        if (i < 3 ? !ibex_json_once(&seen, 1u << i) || !fast_count(c, &usage[i])
                  : !ibex_json_cur_skip(c, FAST_SKIP_DEPTH))
            return false;
    }
    return r == 0;
}

/* The message (or delta) of a choice: its content; null or an object without tool calls. */
static bool fast_message(struct ibex_json_cursor *c, struct fast_text *t)
{
    if (ibex_json_cur_peek(c) == 'n')
        return ibex_json_cur_null(c);
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k;
    int r;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        bool ok;
        if (IBEX_JSON_KEY_IS(k, "content")) {
            ok = ibex_json_once(&seen, 1) &&
                 (ibex_json_cur_peek(c) == 'n' ? ibex_json_cur_null(c)
                                               : ibex_json_cur_str(c, &t->s, &t->escaped));
        } else if (IBEX_JSON_KEY_IS(k, "tool_calls")) {
            ok = ibex_json_once(&seen, 2) && ibex_json_cur_null(c);
        } else {
            ok = ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        }
        if (!ok)
            return false;
    }
    return r == 0;
}

/* One element of "choices" (the pos-th); what take() reads of it when its index is 0. */
static bool fast_choice(struct ibex_json_cursor *c, const char *msgkey, size_t pos,
                        struct fast_answer *f)
{
    if (!ibex_json_cur_ch(c, '{'))
        return false;
    unsigned seen = 0;
    bool first = true;
    struct ibex_str k, reason = IBEX_STR_NULL;
    struct fast_text t = {IBEX_STR_NULL, false};
    int64_t index = -1;
    int r;
    while ((r = ibex_json_cur_member(c, &first, &k)) == 1) {
        bool ok;
        if (IBEX_JSON_KEY_IS(k, "index"))
            ok = ibex_json_once(&seen, 1) && ibex_json_cur_count(c, &index);
        else if (k.len == strlen(msgkey) && memcmp(k.p, msgkey, k.len) == 0)
            ok = ibex_json_once(&seen, 2) && fast_message(c, &t);
        else if (IBEX_JSON_KEY_IS(k, "finish_reason"))
            ok = ibex_json_once(&seen, 4) && fast_name(c, &reason);
        else
            ok = ibex_json_cur_skip(c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    if (r != 0)
        return false;
    if ((seen & 1 ? index : (int64_t)pos) != 0)
        return true;
    if (t.s.len > 0) {
        if (f->ntext == FAST_TEXTS)
            return false;
        f->text[f->ntext++] = t;
    }
    if (reason.p)
        f->reason = reason;
    return true;
}

static bool fast_choices(struct ibex_json_cursor *c, const char *msgkey, struct fast_answer *f)
{
    bool first = true;
    int r;
    if (!ibex_json_cur_ch(c, '['))
        return false;
    for (size_t pos = 0; (r = ibex_json_cur_element(c, &first)) == 1; pos++)
        if (!fast_choice(c, msgkey, pos, f))
            return false;
    f->have_choices = true;
    return r == 0;
}

/* Reads s[0..len) into *f when it has the common shape; false for anything else. */
static bool fast_scan(const char *s, size_t len, const char *msgkey, struct fast_answer *f)
{
    struct ibex_json_cursor c = {s, len, 0};
    unsigned seen = 0;
    bool first = true, ok;
    struct ibex_str k;
    int r;
    *f = (struct fast_answer){.usage = {-1, -1, -1}};
    if (!ibex_json_cur_ch(&c, '{'))
        return false;
    while ((r = ibex_json_cur_member(&c, &first, &k)) == 1) {
        if (IBEX_JSON_KEY_IS(k, "model"))
            ok = ibex_json_once(&seen, 1) && fast_name(&c, &f->model);
        else if (IBEX_JSON_KEY_IS(k, "usage"))
            ok = ibex_json_once(&seen, 2) && fast_usage(&c, f->usage);
        else if (IBEX_JSON_KEY_IS(k, "choices"))
            ok = ibex_json_once(&seen, 4) && fast_choices(&c, msgkey, f);
        else
            ok = ibex_json_cur_skip(&c, FAST_SKIP_DEPTH);
        if (!ok)
            return false;
    }
    return r == 0 && ibex_json_cur_end(&c);
}

/* What take() does with the same event. */
static void fast_apply(struct ibex_answer *a, const struct fast_answer *f)
{
    if (a->model[0] == '\0' && f->model.p)
        copy_field(a->model, sizeof(a->model), f->model.p, f->model.len);
    int64_t *dst[] = {&a->prompt_tokens, &a->completion_tokens, &a->total_tokens};
    for (size_t i = 0; i < 3; i++)
        if (f->usage[i] >= 0)
            *dst[i] = f->usage[i];
    for (size_t i = 0; i < f->ntext; i++) {
        const struct fast_text *t = &f->text[i];
        if (!t->escaped) {
            append_content(a, t->s.p, t->s.len);
            continue;
        }
        ibex_buf_reset(&a->scratch);
        ibex_json_append_decoded(&a->scratch, t->s.p, t->s.len);
        append_content(a, a->scratch.p, a->scratch.len);
    }
    if (f->reason.p)
        copy_field(a->finish_reason, sizeof(a->finish_reason), f->reason.p, f->reason.len);
}

int ibex_answer_from_json(struct ibex_answer *a, const char *body, size_t len)
{
    struct fast_answer f;
    if (!a->json_c_only && fast_scan(body, len, "message", &f) && f.have_choices) {
        a->fast_events++;
        fast_apply(a, &f);
        return 0;
    }
    json_object *root;
    char msg[8];
    if (ibex_json_parse(body, len, &root, msg, sizeof(msg)) != 0)
        return -1;
    if (!json_object_is_type(root, json_type_object) ||
        member(root, "choices", json_type_array) == NULL) {
        json_object_put(root);
        return -1;
    }
    take(a, root, "message", false);
    json_object_put(root);
    return 0;
}

static void on_data(void *data, const char *s, size_t len)
{
    struct ibex_answer *a = data;
    if (len == 6 && memcmp(s, "[DONE]", 6) == 0) {
        a->done = true;
        return;
    }
    struct fast_answer f;
    if (!a->json_c_only && fast_scan(s, len, "delta", &f)) {
        a->fast_events++;
        fast_apply(a, &f);
        return;
    }
    json_object *root;
    char msg[8];
    if (ibex_json_parse(s, len, &root, msg, sizeof(msg)) != 0 ||
        !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        a->skipped++;
        return;
    }
    take(a, root, "delta", true);
    json_object_put(root);
}

void ibex_answer_feed_sse(struct ibex_answer *a, const char *p, size_t len)
{
    ibex_sse_feed(&a->sse, p, len, on_data, a);
}
