/* Chunked bump allocator. Invariant: a->head is the chunk being carved; large requests get a
 * chunk of their own so a single big body does not waste the rest of a regular chunk. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

struct chunk {
    struct chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct cleanup {
    struct cleanup *next;
    ibex_arena_cleanup_fn fn;
    void *data;
};

struct ibex_arena {
    struct chunk *head;
    struct chunk *first;
    struct cleanup *cleanups;
    size_t chunk_size;
};

static struct chunk *chunk_new(size_t size)
{
    struct chunk *c = ibex_xmalloc(sizeof(*c) + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

struct ibex_arena *ibex_arena_new(size_t first_chunk)
{
    struct ibex_arena *a = ibex_xmalloc(sizeof(*a));
    a->chunk_size = first_chunk < 256 ? 256 : first_chunk;
    a->first = a->head = chunk_new(a->chunk_size);
    a->cleanups = NULL;
    return a;
}

static void run_cleanups(struct ibex_arena *a)
{
    while (a->cleanups) {
        struct cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->data);
    }
}

void ibex_arena_reset(struct ibex_arena *a)
{
    run_cleanups(a);
    struct chunk *c = a->head;
    while (c != a->first) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = a->first;
    a->first->used = 0;
}

void ibex_arena_free(struct ibex_arena *a)
{
    if (a == NULL)
        return;
    ibex_arena_reset(a);
    free(a->first);
    free(a);
}

void *ibex_arena_alloc(struct ibex_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->head->size - a->head->used < n) {
        size_t size = n > a->chunk_size / 2 ? n : a->chunk_size;
        struct chunk *c = chunk_new(size);
        c->next = a->head;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

void *ibex_arena_calloc(struct ibex_arena *a, size_t n)
{
    void *p = ibex_arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *ibex_arena_strndup(struct ibex_arena *a, const char *s, size_t n)
{
    char *p = ibex_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ibex_arena_on_free(struct ibex_arena *a, ibex_arena_cleanup_fn fn, void *data)
{
    struct cleanup *c = ibex_arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
}
