/* libFuzzer target: the HTTP request parser (src/http/parser.c) fed arbitrary bytes in
 * arbitrary splits. The first input byte picks the split size, so the corpus also covers
 * requests cut at every boundary. Invariants checked: a completed request has a method, a
 * path, and a body within the limit; the parser never consumes more than it was given. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "../../src/core/arena.h"
#include "../../src/http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    struct ibex_http_limits limits = {
        .max_header_bytes = 2048, .max_headers = 16, .max_body_bytes = 4096};
    struct ibex_http_parser p;
    struct ibex_arena *arena = ibex_arena_new(4096);
    ibex_http_parser_init(&p, &limits);
    ibex_http_parser_set_arena(&p, arena);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < split ? size - off : split;
        size_t used = 0;
        enum ibex_http_parse_result r =
            ibex_http_parser_feed(&p, (const char *)data + off, n, &used);
        assert(used <= n);
        if (r == IBEX_HTTP_PARSE_ERROR) {
            assert(p.error_status == 400 || p.error_status == 413 || p.error_status == 431);
            break;
        }
        off += used;
        if (r == IBEX_HTTP_PARSE_COMPLETE) {
            struct ibex_req *req = ibex_http_parser_take(&p);
            assert(req->method.p != NULL && req->path.p != NULL);
            assert(req->body.len <= limits.max_body_bytes);
            assert(req->nheaders <= limits.max_headers);
            ibex_arena_reset(arena);
        }
    }
    ibex_http_parser_dispose(&p);
    ibex_arena_free(arena);
    return 0;
}
