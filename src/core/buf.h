/* Growable byte buffer. Internal growth aborts on OOM (STYLE 11); callers that hold bytes sized
 * by a peer check their own cap before appending. The contents are always NUL-terminated for
 * convenience at libc boundaries, but the NUL is not counted in len. */
#ifndef IBEX_CORE_BUF_H
#define IBEX_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "str.h"

struct ibex_buf {
    char *p;
    size_t len;
    size_t cap;
};

void ibex_buf_init(struct ibex_buf *b);
void ibex_buf_dispose(struct ibex_buf *b);
/* Makes room for extra more bytes (and the NUL); ibex_buf_reserve's slow path. */
void ibex_buf_grow(struct ibex_buf *b, size_t extra);

/* Reserve and append are inline: a translator appends many short pieces, most of them literals
 * whose length the compiler then knows. */
static inline void ibex_buf_reserve(struct ibex_buf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap)
        ibex_buf_grow(b, extra);
}

static inline void ibex_buf_append(struct ibex_buf *b, const void *data, size_t len)
{
    ibex_buf_reserve(b, len);
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static inline void ibex_buf_append_cstr(struct ibex_buf *b, const char *s)
{
    ibex_buf_append(b, s, strlen(s));
}

void ibex_buf_append_str(struct ibex_buf *b, struct ibex_str s);
void ibex_buf_appendf(struct ibex_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ibex_buf_vappendf(struct ibex_buf *b, const char *fmt, va_list ap);
void ibex_buf_append_u64(struct ibex_buf *b, uint64_t v);
/* Appends v / 1000 with exactly three decimals ("12.045"), without printf. */
void ibex_buf_append_milli(struct ibex_buf *b, uint64_t v);
/* Appends s as a JSON string literal, quotes included. Invalid UTF-8 bytes become U+FFFD. */
void ibex_buf_append_json_str(struct ibex_buf *b, const char *s, size_t len);
/* The same without the quotes: the inside of the literal. */
void ibex_buf_append_json_inner(struct ibex_buf *b, const char *s, size_t len);
/* Drops the first n bytes. */
void ibex_buf_consume(struct ibex_buf *b, size_t n);
void ibex_buf_reset(struct ibex_buf *b);
/* Hands the bytes to the caller (free with free()) and leaves b empty. */
char *ibex_buf_steal(struct ibex_buf *b, size_t *len);

#endif
