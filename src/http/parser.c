/* llhttp glue with limits. Invariants: header_bytes counts the request line and every header
 * byte seen so far and never exceeds max_header_bytes without an error; the body buffer never
 * grows past max_body_bytes. Lenient flags are all off: Content-Length together with chunked
 * encoding and bare LF are rejected (request smuggling); obsolete line folding is replaced by
 * a space, as RFC 9112 5.2 allows. Header names must be tokens (llhttp 8.1 lets a space
 * before the colon through; RFC 9112 5.1 requires a 400). */
#include "parser.h"

#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/arena.h"

static struct ibex_http_parser *self(llhttp_t *h)
{
    return (struct ibex_http_parser *)h->data;
}

static int fail(struct ibex_http_parser *p, int status, const char *code, const char *reason)
{
    p->error_status = status;
    p->error_code = code;
    p->error_reason = reason;
    return HPE_USER;
}

static int begin_request(struct ibex_http_parser *p)
{
    struct ibex_req *req = ibex_arena_calloc(p->arena, sizeof(*req));
    req->arena = p->arena;
    p->req = req;
    p->header_bytes = 0;
    p->headers_cap = 0;
    p->headers_done = false;
    p->expect_continue = false;
    p->complete = false;
    p->fixed_body = NULL;
    p->fixed_len = 0;
    ibex_buf_reset(&p->field);
    ibex_buf_reset(&p->value);
    ibex_buf_reset(&p->body);
    return 0;
}

static int on_message_begin(llhttp_t *h)
{
    return begin_request(self(h));
}

static int count_header_bytes(struct ibex_http_parser *p, size_t len)
{
    p->header_bytes += len;
    if (p->header_bytes > p->limits.max_header_bytes)
        return fail(p, 431, "HEADERS_TOO_LARGE", "request headers are too large");
    return 0;
}

static int on_url(llhttp_t *h, const char *at, size_t len)
{
    struct ibex_http_parser *p = self(h);
    if (count_header_bytes(p, len))
        return HPE_USER;
    ibex_buf_append(&p->value, at, len);
    return 0;
}

static int on_url_complete(llhttp_t *h)
{
    struct ibex_http_parser *p = self(h);
    struct ibex_req *req = p->req;
    char *url = ibex_arena_strndup(p->arena, p->value.p ? p->value.p : "", p->value.len);
    size_t len = p->value.len;
    char *q = memchr(url, '?', len);
    req->path.p = url;
    req->path.len = q ? (size_t)(q - url) : len;
    req->query.p = q ? q + 1 : url + len;
    req->query.len = q ? len - (size_t)(q - url) - 1 : 0;
    const char *m = llhttp_method_name((llhttp_method_t)h->method);
    req->method = ibex_str_from(m);
    ibex_buf_reset(&p->value);
    return 0;
}

static int on_header_field(llhttp_t *h, const char *at, size_t len)
{
    struct ibex_http_parser *p = self(h);
    if (count_header_bytes(p, len))
        return HPE_USER;
    ibex_buf_append(&p->field, at, len);
    return 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t len)
{
    struct ibex_http_parser *p = self(h);
    if (count_header_bytes(p, len))
        return HPE_USER;
    ibex_buf_append(&p->value, at, len);
    return 0;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_token(const char *s, size_t len)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (ch != '\0' && strchr(extra, ch) != NULL)))
            return false;
    }
    return true;
}

static int on_header_value_complete(llhttp_t *h)
{
    struct ibex_http_parser *p = self(h);
    struct ibex_req *req = p->req;
    if (!is_token(p->field.p, p->field.len))
        return fail(p, 400, "BAD_REQUEST", "invalid header name");
    if (req->nheaders == p->limits.max_headers)
        return fail(p, 400, "TOO_MANY_HEADERS", "too many request headers");
    if (req->nheaders == p->headers_cap) {
        size_t cap = p->headers_cap ? p->headers_cap * 2 : 16;
        struct ibex_header *hs = ibex_arena_alloc(p->arena, cap * sizeof(*hs));
        if (req->nheaders)
            memcpy(hs, req->headers, req->nheaders * sizeof(*hs));
        req->headers = hs;
        p->headers_cap = cap;
    }
    struct ibex_header *hd = &req->headers[req->nheaders++];
    hd->name.len = p->field.len;
    hd->name.p = ibex_arena_strndup(p->arena, p->field.p ? p->field.p : "", p->field.len);
    struct ibex_str v =
        ibex_str_trim((struct ibex_str){p->value.p ? p->value.p : "", p->value.len});
    hd->value.p = ibex_arena_strndup(p->arena, v.p, v.len);
    hd->value.len = v.len;
    if (ibex_str_caseeq_cstr(hd->name, "expect") && ibex_str_caseeq_cstr(hd->value, "100-continue"))
        p->expect_continue = true;
    ibex_buf_reset(&p->field);
    ibex_buf_reset(&p->value);
    return 0;
}

static int on_headers_complete(llhttp_t *h)
{
    struct ibex_http_parser *p = self(h);
    p->headers_done = true;
    if ((h->flags & F_CONTENT_LENGTH) && h->content_length > p->limits.max_body_bytes)
        return fail(p, 413, "BODY_TOO_LARGE", "request body is too large");
    /* A known length gets its buffer once, from the arena: no growth, no malloc per request. */
    if ((h->flags & F_CONTENT_LENGTH) && h->content_length > 0)
        p->fixed_body = ibex_arena_alloc(p->arena, (size_t)h->content_length + 1);
    return 0;
}

static int on_body(llhttp_t *h, const char *at, size_t len)
{
    struct ibex_http_parser *p = self(h);
    if (p->fixed_body) { /* llhttp never delivers more than Content-Length */
        memcpy(p->fixed_body + p->fixed_len, at, len);
        p->fixed_len += len;
        return 0;
    }
    if (p->body.len + len > p->limits.max_body_bytes)
        return fail(p, 413, "BODY_TOO_LARGE", "request body is too large");
    ibex_buf_append(&p->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *h)
{
    struct ibex_http_parser *p = self(h);
    struct ibex_req *req = p->req;
    req->keep_alive = llhttp_should_keep_alive(h) != 0;
    if (p->fixed_body) {
        p->fixed_body[p->fixed_len] = '\0';
        req->body.p = p->fixed_body;
        req->body.len = p->fixed_len;
    } else if (p->body.len > 0) {
        size_t len;
        char *body = ibex_buf_steal(&p->body, &len);
        ibex_arena_on_free(p->arena, free, body);
        req->body.p = body;
        req->body.len = len;
    } else {
        req->body = IBEX_STR_LIT("");
    }
    p->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void ibex_http_parser_init(struct ibex_http_parser *p, const struct ibex_http_limits *limits)
{
    memset(p, 0, sizeof(*p));
    llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
    p->llhttp.data = p;
    p->limits = *limits;
    ibex_buf_init(&p->field);
    ibex_buf_init(&p->value);
    ibex_buf_init(&p->body);
}

void ibex_http_parser_dispose(struct ibex_http_parser *p)
{
    ibex_buf_dispose(&p->field);
    ibex_buf_dispose(&p->value);
    ibex_buf_dispose(&p->body);
}

void ibex_http_parser_set_arena(struct ibex_http_parser *p, struct ibex_arena *arena)
{
    p->arena = arena;
}

bool ibex_http_parser_started(const struct ibex_http_parser *p)
{
    return p->req != NULL;
}

enum ibex_http_parse_result ibex_http_parser_feed(struct ibex_http_parser *p, const char *data,
                                                  size_t len, size_t *consumed)
{
    *consumed = 0;
    if (p->error_status)
        return IBEX_HTTP_PARSE_ERROR;
    llhttp_errno_t err = llhttp_execute(&p->llhttp, data, len);
    if (err == HPE_OK) {
        *consumed = len;
        return IBEX_HTTP_PARSE_MORE;
    }
    if (err == HPE_PAUSED && p->complete) {
        *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - data);
        return IBEX_HTTP_PARSE_COMPLETE;
    }
    if (!p->error_status) {
        p->error_status = 400;
        p->error_code = "BAD_REQUEST";
        p->error_reason = llhttp_get_error_reason(&p->llhttp);
        if (p->error_reason == NULL)
            p->error_reason = "malformed HTTP request";
    }
    return IBEX_HTTP_PARSE_ERROR;
}

struct ibex_req *ibex_http_parser_take(struct ibex_http_parser *p)
{
    struct ibex_req *req = p->req;
    p->req = NULL;
    p->complete = false;
    llhttp_resume(&p->llhttp);
    return req;
}
