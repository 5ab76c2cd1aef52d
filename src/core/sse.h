/* Server-Sent Events, the reading side: splits a byte stream, fed in arbitrary pieces, into the
 * values of its "data:" lines. Every provider that streams (OpenAI, Anthropic, Gemini) sends its
 * events as data lines; the answer collector and the providers' stream translators read them
 * through this one splitter.
 *
 * The result does not depend on how the bytes are split: a piece may end mid-line, mid-UTF-8
 * sequence or between CR and LF. CRLF, LF and CR all end a line. Comments (":...") and other
 * fields (event:, id:, retry:) are ignored; an empty data line (a keep-alive) is not reported.
 * Memory is bounded by line_max: a longer line is skipped and counted, never buffered. */
#ifndef IBEX_CORE_SSE_H
#define IBEX_CORE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Default bound of one line. */
#define IBEX_SSE_LINE_MAX ((size_t)1 << 20)

struct ibex_sse {
    size_t line_max;  /* may be lowered after init, before any feed */
    uint64_t skipped; /* lines over line_max */
    /* private */
    struct ibex_buf line; /* the partial line a feed ended in */
    bool skipping_line;   /* the current line went over line_max: drop it up to its end */
};

/* Called with each data line's value (after "data:" and one optional space), len > 0. The
 * value is valid during the call only. */
typedef void ibex_sse_data_fn(void *data, const char *value, size_t len);

void ibex_sse_init(struct ibex_sse *s);
void ibex_sse_dispose(struct ibex_sse *s);
/* A last line without its line end stays buffered: the next feed may complete it. */
void ibex_sse_feed(struct ibex_sse *s, const char *p, size_t len, ibex_sse_data_fn *on_data,
                   void *data);

#endif
