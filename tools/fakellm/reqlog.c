/* The log of recent requests behind GET /_fakellm/requests: a ring of pre-rendered JSON
 * entries, so a test can see exactly what the gateway sent upstream.
 *
 * Invariants: at most LOG_MAX entries and LOG_MAX_BYTES of rendered JSON are kept, the oldest
 * going first; entries are heap copies, independent of the request arena they came from. */
#include <stdlib.h>

#include "fakellm.h"

#define LOG_MAX 1000
#define LOG_MAX_BYTES ((size_t)256 << 20)

struct entry {
    char *json;
    size_t len;
};

static struct entry ring[LOG_MAX];
static size_t head; /* the oldest entry */
static size_t count;
static size_t bytes;

static void drop_oldest(void)
{
    free(ring[head].json);
    bytes -= ring[head].len;
    ring[head] = (struct entry){NULL, 0};
    head = (head + 1) % LOG_MAX;
    count--;
}

static void append_lower_json_str(struct ibex_buf *b, struct ibex_buf *tmp, struct ibex_str s)
{
    ibex_buf_reset(tmp);
    ibex_buf_append_str(tmp, s);
    for (size_t i = 0; i < tmp->len; i++)
        if (tmp->p[i] >= 'A' && tmp->p[i] <= 'Z')
            tmp->p[i] = (char)(tmp->p[i] + 32);
    ibex_buf_append_json_str(b, tmp->p, tmp->len);
}

static bool same_name(struct ibex_str a, struct ibex_str b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        char x = a.p[i], y = b.p[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

/* {"name":"value",...}; repeated names are joined with ", " as HTTP allows. */
static void append_headers(struct ibex_buf *b, const struct ibex_req *req)
{
    struct ibex_buf tmp, val;
    bool first = true;

    ibex_buf_init(&tmp);
    ibex_buf_init(&val);
    ibex_buf_append_cstr(b, "{");
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct ibex_header *h = &req->headers[i];
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = same_name(req->headers[k].name, h->name);
        if (seen)
            continue;
        ibex_buf_reset(&val);
        ibex_buf_append_str(&val, h->value);
        for (size_t k = i + 1; k < req->nheaders; k++) {
            if (same_name(req->headers[k].name, h->name)) {
                ibex_buf_append_cstr(&val, ", ");
                ibex_buf_append_str(&val, req->headers[k].value);
            }
        }
        if (!first)
            ibex_buf_append_cstr(b, ",");
        first = false;
        append_lower_json_str(b, &tmp, h->name);
        ibex_buf_append_cstr(b, ":");
        ibex_buf_append_json_str(b, val.p ? val.p : "", val.len);
    }
    ibex_buf_append_cstr(b, "}");
    ibex_buf_dispose(&tmp);
    ibex_buf_dispose(&val);
}

void fakellm_reqlog_add(const struct ibex_req *req, json_object *body)
{
    struct ibex_buf b;
    struct entry e;

    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "{\"method\":");
    ibex_buf_append_json_str(&b, req->method.p ? req->method.p : "", req->method.len);
    ibex_buf_append_cstr(&b, ",\"path\":");
    ibex_buf_append_json_str(&b, req->path.p ? req->path.p : "", req->path.len);
    ibex_buf_append_cstr(&b, ",\"query\":");
    ibex_buf_append_json_str(&b, req->query.p ? req->query.p : "", req->query.len);
    ibex_buf_append_cstr(&b, ",\"headers\":");
    append_headers(&b, req);
    ibex_buf_append_cstr(&b, ",\"body\":");
    if (body != NULL) {
        size_t len = 0;
        const char *s = json_object_to_json_string_length(
            body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        ibex_buf_append(&b, s, len);
    } else {
        ibex_buf_append_json_str(&b, req->body.p ? req->body.p : "", req->body.len);
    }
    ibex_buf_append_cstr(&b, "}");

    e.json = ibex_buf_steal(&b, &e.len);
    while (count == LOG_MAX || (count > 0 && bytes + e.len > LOG_MAX_BYTES))
        drop_oldest();
    ring[(head + count) % LOG_MAX] = e;
    count++;
    bytes += e.len;
}

void fakellm_reqlog_render(struct ibex_buf *b)
{
    ibex_buf_reserve(b, bytes + count + 16);
    ibex_buf_append_cstr(b, "{\"requests\":[");
    for (size_t i = 0; i < count; i++) {
        const struct entry *e = &ring[(head + i) % LOG_MAX];
        if (i > 0)
            ibex_buf_append_cstr(b, ",");
        ibex_buf_append(b, e->json, e->len);
    }
    ibex_buf_append_cstr(b, "]}");
}

void fakellm_reqlog_clear(void)
{
    while (count > 0)
        drop_oldest();
    head = 0;
}
