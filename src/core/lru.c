/* The LRU: buckets of singly linked chains (the key is a digest, so its first bytes are the
 * hash) plus one doubly linked recency list, most recent at the head. */
#include "lru.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

struct entry {
    uint8_t key[IBEX_LRU_KEY_LEN];
    int64_t expires_ms;
    int64_t epoch;
    struct entry *chain;       /* next in the bucket */
    struct entry *prev, *next; /* recency list */
    max_align_t value[];
};

struct ibex_lru {
    struct entry **buckets;
    size_t mask;
    size_t capacity, size, value_size;
    ibex_lru_dispose_fn dispose;
    struct entry *head, *tail;
    struct ibex_lru_stats stats;
};

struct ibex_lru *ibex_lru_new(size_t capacity, size_t value_size, ibex_lru_dispose_fn dispose)
{
    struct ibex_lru *c = ibex_xcalloc(1, sizeof(*c));
    c->dispose = dispose;
    c->capacity = capacity ? capacity : 1;
    c->value_size = value_size;
    size_t n = 16;
    while (n < c->capacity * 2)
        n *= 2;
    c->buckets = ibex_xcalloc(n, sizeof(*c->buckets));
    c->mask = n - 1;
    return c;
}

void ibex_lru_free(struct ibex_lru *c)
{
    if (c == NULL)
        return;
    for (struct entry *e = c->head, *next; e; e = next) {
        next = e->next;
        if (c->dispose)
            c->dispose(e->value);
        free(e);
    }
    free(c->buckets);
    free(c);
}

static size_t bucket_of(const struct ibex_lru *c, const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)h & c->mask;
}

static void list_unlink(struct ibex_lru *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(struct ibex_lru *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void chain_unlink(struct ibex_lru *c, struct entry *e)
{
    struct entry **pp = &c->buckets[bucket_of(c, e->key)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
}

static struct entry *find(struct ibex_lru *c, const uint8_t *key)
{
    for (struct entry *e = c->buckets[bucket_of(c, key)]; e; e = e->chain)
        if (memcmp(e->key, key, IBEX_LRU_KEY_LEN) == 0)
            return e;
    return NULL;
}

static void drop(struct ibex_lru *c, struct entry *e)
{
    chain_unlink(c, e);
    list_unlink(c, e);
    if (c->dispose)
        c->dispose(e->value);
    free(e);
    c->size--;
}

void *ibex_lru_get(struct ibex_lru *c, const uint8_t key[IBEX_LRU_KEY_LEN], int64_t now_ms,
                   int64_t epoch)
{
    struct entry *e = find(c, key);
    if (e && (now_ms >= e->expires_ms || e->epoch < epoch)) {
        drop(c, e);
        e = NULL;
    }
    if (e == NULL) {
        c->stats.misses++;
        return NULL;
    }
    c->stats.hits++;
    if (c->head != e) {
        list_unlink(c, e);
        list_push_front(c, e);
    }
    return e->value;
}

void ibex_lru_put(struct ibex_lru *c, const uint8_t key[IBEX_LRU_KEY_LEN], const void *value,
                  int64_t expires_ms, int64_t epoch)
{
    struct entry *e = find(c, key);
    if (e) {
        list_unlink(c, e);
        if (c->dispose)
            c->dispose(e->value);
    } else {
        if (c->size < c->capacity) {
            e = ibex_xmalloc(sizeof(*e) + c->value_size);
            c->size++;
        } else {
            e = c->tail;
            chain_unlink(c, e);
            list_unlink(c, e);
            if (c->dispose)
                c->dispose(e->value);
            c->stats.evictions++;
        }
        memcpy(e->key, key, IBEX_LRU_KEY_LEN);
        size_t b = bucket_of(c, key);
        e->chain = c->buckets[b];
        c->buckets[b] = e;
    }
    e->expires_ms = expires_ms;
    e->epoch = epoch;
    memcpy(e->value, value, c->value_size);
    list_push_front(c, e);
}

void ibex_lru_stats(const struct ibex_lru *c, struct ibex_lru_stats *out)
{
    *out = c->stats;
    out->size = c->size;
}
