/* Allocation that cannot fail: internal allocations abort with a message when memory runs out
 * (STYLE 11). Anything sized by a client, an upstream or a database is capped by its caller
 * before it reaches these functions. */
#ifndef IBEX_CORE_ALLOC_H
#define IBEX_CORE_ALLOC_H

#include <stddef.h>

void *ibex_xmalloc(size_t n);
void *ibex_xcalloc(size_t count, size_t size);
void *ibex_xrealloc(void *p, size_t n);
char *ibex_xstrdup(const char *s);
char *ibex_xstrndup(const char *s, size_t n);

#endif
