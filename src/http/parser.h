/* HTTP/1.x request parser: llhttp plus the limits llhttp does not enforce (header bytes,
 * header count, body bytes). Pure: no I/O, so the server and the fuzz target drive it alike.
 *
 * Feed bytes; when a request is complete the parser pauses and hands back a struct ibex_req
 * built in the caller's arena. Call ibex_http_parser_next() before feeding the following
 * (pipelined) request. After an error the parser is dead: the connection must close. */
#ifndef IBEX_HTTP_PARSER_H
#define IBEX_HTTP_PARSER_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/buf.h"
#include "server.h"

enum ibex_http_parse_result {
    IBEX_HTTP_PARSE_MORE = 0,     /* everything consumed, request not complete */
    IBEX_HTTP_PARSE_COMPLETE = 1, /* a request is complete; *consumed bytes were used */
    IBEX_HTTP_PARSE_ERROR = 2,    /* see error_status and error_code */
};

struct ibex_http_limits {
    size_t max_header_bytes;
    size_t max_headers;
    size_t max_body_bytes;
};

struct ibex_http_parser {
    llhttp_t llhttp;
    struct ibex_http_limits limits;
    struct ibex_req *req; /* the request being built, or NULL before its first byte */
    struct ibex_arena *arena;
    struct ibex_buf field; /* header name being read */
    struct ibex_buf value; /* header value, or the URL before the headers */
    struct ibex_buf body;  /* chunked bodies: size unknown until the end */
    char *fixed_body;      /* Content-Length bodies: allocated once in the arena */
    size_t fixed_len;
    size_t header_bytes;
    size_t headers_cap;
    bool headers_done;    /* request line and headers read (body may follow) */
    bool expect_continue; /* client sent Expect: 100-continue */
    bool complete;
    int error_status;       /* 400, 413 or 431 after IBEX_HTTP_PARSE_ERROR */
    const char *error_code; /* BAD_REQUEST, TOO_MANY_HEADERS, BODY_TOO_LARGE, HEADERS_TOO_LARGE */
    const char *error_reason;
};

void ibex_http_parser_init(struct ibex_http_parser *p, const struct ibex_http_limits *limits);
void ibex_http_parser_dispose(struct ibex_http_parser *p);
/* The next request's pieces are allocated in arena (the caller resets it between requests). */
void ibex_http_parser_set_arena(struct ibex_http_parser *p, struct ibex_arena *arena);
enum ibex_http_parse_result ibex_http_parser_feed(struct ibex_http_parser *p, const char *data,
                                                  size_t len, size_t *consumed);
/* Whether any byte of the current request has been seen. */
bool ibex_http_parser_started(const struct ibex_http_parser *p);
/* Returns the completed request (owned by the arena) and readies the parser for the next one. */
struct ibex_req *ibex_http_parser_take(struct ibex_http_parser *p);

#endif
