/* Growable buffer. Invariant: p is NULL with cap 0, or p[len] == '\0' and len < cap. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void ibex_buf_init(struct ibex_buf *b)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

void ibex_buf_dispose(struct ibex_buf *b)
{
    free(b->p);
    ibex_buf_init(b);
}

void ibex_buf_grow(struct ibex_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->p = ibex_xrealloc(b->p, cap);
    b->cap = cap;
}

void ibex_buf_append_str(struct ibex_buf *b, struct ibex_str s)
{
    ibex_buf_append(b, s.p, s.len);
}

void ibex_buf_vappendf(struct ibex_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    ibex_buf_reserve(b, 64);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        ibex_buf_reserve(b, (size_t)n);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap2);
    }
    b->len += (size_t)n;
    va_end(ap2);
}

void ibex_buf_appendf(struct ibex_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ibex_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void ibex_buf_append_u64(struct ibex_buf *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ibex_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void ibex_buf_append_milli(struct ibex_buf *b, uint64_t v)
{
    ibex_buf_append_u64(b, v / 1000);
    char frac[4] = {'.', (char)('0' + v / 100 % 10), (char)('0' + v / 10 % 10),
                    (char)('0' + v % 10)};
    ibex_buf_append(b, frac, 4);
}

void ibex_buf_append_json_str(struct ibex_buf *b, const char *s, size_t len)
{
    ibex_buf_reserve(b, len + 2);
    b->p[b->len++] = '"';
    ibex_buf_append_json_inner(b, s, len);
    ibex_buf_append(b, "\"", 1);
}

void ibex_buf_append_json_inner(struct ibex_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t run = ibex_json_plain_len(s + i, len - i);
        if (run > 0) {
            ibex_buf_append(b, s + i, run);
            i += run;
            continue;
        }
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t n = ibex_utf8_seq_len(u + i, len - i);
            if (n == 0) {
                ibex_buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                ibex_buf_append(b, s + i, n);
                i += n;
            }
            continue;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        ibex_buf_append(b, esc, n);
        i++;
    }
}

void ibex_buf_consume(struct ibex_buf *b, size_t n)
{
    if (n >= b->len) {
        ibex_buf_reset(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

void ibex_buf_reset(struct ibex_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

char *ibex_buf_steal(struct ibex_buf *b, size_t *len)
{
    char *p = b->p;
    if (len)
        *len = b->len;
    ibex_buf_init(b);
    return p;
}
