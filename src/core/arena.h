/* Per-request arena (STYLE 13): bump allocation from chunks, released at once when the request
 * ends, with cleanup hooks for resources that live exactly as long as the request. Not
 * thread-safe: an arena belongs to the worker thread that made it. */
#ifndef IBEX_CORE_ARENA_H
#define IBEX_CORE_ARENA_H

#include <stddef.h>

struct ibex_arena;

typedef void (*ibex_arena_cleanup_fn)(void *data);

struct ibex_arena *ibex_arena_new(size_t first_chunk);
/* Runs the cleanup hooks, newest first, then frees every chunk. */
void ibex_arena_free(struct ibex_arena *a);
/* Forgets everything but keeps the first chunk, for reuse by the next request. */
void ibex_arena_reset(struct ibex_arena *a);
void *ibex_arena_alloc(struct ibex_arena *a, size_t n);
void *ibex_arena_calloc(struct ibex_arena *a, size_t n);
char *ibex_arena_strndup(struct ibex_arena *a, const char *s, size_t n);
void ibex_arena_on_free(struct ibex_arena *a, ibex_arena_cleanup_fn fn, void *data);

#endif
