/* Server-Sent Events line splitting.
 * Invariants: a line that lies whole inside one feed is reported where it lies, never copied;
 * only the line a feed ends inside of is buffered, and the buffer never grows past line_max. */
#include "sse.h"

#include <string.h>

void ibex_sse_init(struct ibex_sse *s)
{
    memset(s, 0, sizeof(*s));
    ibex_buf_init(&s->line);
    s->line_max = IBEX_SSE_LINE_MAX;
}

void ibex_sse_dispose(struct ibex_sse *s)
{
    ibex_buf_dispose(&s->line);
}

static void on_line(const char *s, size_t len, ibex_sse_data_fn *on_data, void *data)
{
    if (len == 0 || s[0] == ':')
        return;
    const char *colon = memchr(s, ':', len);
    size_t name = colon ? (size_t)(colon - s) : len;
    if (name != 4 || memcmp(s, "data", 4) != 0)
        return;
    size_t off = colon ? name + 1 : len;
    if (off < len && s[off] == ' ')
        off++;
    if (off < len)
        on_data(data, s + off, len - off);
}

/* The first CR or LF in [p, end), or end. *cr is the first CR at or after some point before
 * p (NULL: none up to end), moved on when p has passed it: a stream whose lines end with LF
 * alone looks for a CR once per feed, not once per line. */
static const char *line_end(const char *p, const char *end, const char **cr)
{
    if (*cr != NULL && *cr < p)
        *cr = memchr(p, '\r', (size_t)(end - p));
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (*cr != NULL && (lf == NULL || *cr < lf))
        return *cr;
    return lf ? lf : end;
}

void ibex_sse_feed(struct ibex_sse *s, const char *p, size_t len, ibex_sse_data_fn *on_data,
                   void *data)
{
    if (len == 0)
        return;
    const char *end = p + len;
    const char *cr = memchr(p, '\r', len);
    /* CR, LF and CRLF all end a line: treating CR and LF each as a line end turns CRLF into a
     * line and an empty one, and empty lines (event boundaries) report nothing, so a CRLF split
     * across feeds needs no state. */
    while (p < end) {
        const char *eol = line_end(p, end, &cr);
        size_t n = (size_t)(eol - p);
        if (eol == end) {
            if (s->skipping_line)
                return;
            if (n > s->line_max - s->line.len) {
                ibex_buf_reset(&s->line);
                s->skipping_line = true;
                s->skipped++;
                return;
            }
            ibex_buf_append(&s->line, p, n);
            return;
        }
        if (s->skipping_line) {
            s->skipping_line = false;
        } else if (n > s->line_max - s->line.len) {
            s->skipped++;
        } else if (s->line.len == 0) {
            on_line(p, n, on_data, data);
        } else {
            ibex_buf_append(&s->line, p, n);
            on_line(s->line.p, s->line.len, on_data, data);
        }
        ibex_buf_reset(&s->line);
        p = eol + 1;
    }
}
