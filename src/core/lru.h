/* A bounded LRU map from a 32-byte key to a fixed-size value, with a time to live
 * and an epoch per entry: an entry older than the epoch the caller passes, or past its expiry,
 * is a miss and is dropped. Entries are allocated as they are first needed, so an idle cache
 * costs only its bucket array; at capacity the least recently used entry is reused. The map
 * hashes a key by its first 8 bytes, so those must be uniform: a SHA-256 digest's, or random
 * bytes.
 *
 * Thread: one owner (a worker's loop); no locks. */
#ifndef IBEX_CORE_LRU_H
#define IBEX_CORE_LRU_H

#include <stddef.h>
#include <stdint.h>

#define IBEX_LRU_KEY_LEN 32

struct ibex_lru;

struct ibex_lru_stats {
    uint64_t hits, misses, evictions;
    size_t size;
};

/* Releases what a value owns (may be NULL): called when a value is replaced, evicted, dropped
 * or freed with the cache. */
typedef void (*ibex_lru_dispose_fn)(void *value);

/* capacity >= 1 entries of value_size bytes each. */
struct ibex_lru *ibex_lru_new(size_t capacity, size_t value_size, ibex_lru_dispose_fn dispose);
void ibex_lru_free(struct ibex_lru *c);
/* The value stored under key, or NULL (counted as a miss) when absent, expired (now_ms >=
 * its expiry) or older than epoch. A hit becomes the most recently used. */
void *ibex_lru_get(struct ibex_lru *c, const uint8_t key[IBEX_LRU_KEY_LEN], int64_t now_ms,
                   int64_t epoch);
/* Stores value under key (replacing any), valid until expires_ms, for epoch. */
void ibex_lru_put(struct ibex_lru *c, const uint8_t key[IBEX_LRU_KEY_LEN], const void *value,
                  int64_t expires_ms, int64_t epoch);
void ibex_lru_stats(const struct ibex_lru *c, struct ibex_lru_stats *out);

#endif
