/* src/core/lru.c: hits and misses, expiry (now >= expires is a miss that drops the entry), epoch
 * staleness, eviction of the least recently used entry (a get refreshes, a put of an existing
 * key refreshes), dispose on replace, drop, evict and free (counted; values own malloc'd memory
 * so ASan reports any value the cache forgets), capacity 1 and 0, and many keys in one bucket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/lru.h"

/* A value that owns heap memory: dispose frees it and records what it freed. */
struct val {
    int n;
    char *owned; /* malloc'd, or NULL */
};

static int disposed;
static int last_disposed_n;

static void dispose_val(void *v)
{
    struct val *x = v;
    disposed++;
    last_disposed_n = x->n;
    free(x->owned);
    x->owned = NULL;
}

static struct val mkval(int n)
{
    struct val v = {n, malloc(16)};
    assert_non_null(v.owned);
    memset(v.owned, 'x', 16);
    return v;
}

/* A key whose first 8 bytes (the bucket hash) come from `hash` and last byte from `tail`. */
static void mkkey(uint8_t key[IBEX_LRU_KEY_LEN], uint64_t hash, uint8_t tail)
{
    memset(key, 0xAB, IBEX_LRU_KEY_LEN);
    memcpy(key, &hash, sizeof(hash));
    key[IBEX_LRU_KEY_LEN - 1] = tail;
}

static int reset(void **state)
{
    disposed = 0;
    last_disposed_n = -1;
    return 0;
}

static struct ibex_lru_stats stats(const struct ibex_lru *c)
{
    struct ibex_lru_stats s;
    ibex_lru_stats(c, &s);
    return s;
}

/* The int stored under key, or -1 on a miss. */
static int get_n(struct ibex_lru *c, const uint8_t *key, int64_t now, int64_t epoch)
{
    struct val *v = ibex_lru_get(c, key, now, epoch);
    return v ? v->n : -1;
}

static void test_hit_miss_counting(void **state)
{
    struct ibex_lru *c = ibex_lru_new(4, sizeof(int), NULL);
    uint8_t k1[IBEX_LRU_KEY_LEN], k2[IBEX_LRU_KEY_LEN];
    mkkey(k1, 1, 1);
    mkkey(k2, 2, 2);
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.hits + s.misses + s.evictions + s.size, 0);

    assert_null(ibex_lru_get(c, k1, 0, 0));
    s = stats(c);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.hits, 0);

    int v = 42;
    ibex_lru_put(c, k1, &v, 1000, 0);
    v = 7; /* the cache keeps a copy, not the caller's object */
    int *got = ibex_lru_get(c, k1, 0, 0);
    assert_non_null(got);
    assert_int_equal(*got, 42);
    /* the stored value is writable in place and the change persists */
    *got = 43;
    got = ibex_lru_get(c, k1, 1, 0);
    assert_int_equal(*got, 43);
    assert_null(ibex_lru_get(c, k2, 0, 0));
    s = stats(c);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.size, 1);
    assert_int_equal(s.evictions, 0);
    ibex_lru_free(c);
}

static void test_value_alignment_and_size(void **state)
{
    /* values of an odd size that hold doubles and pointers come back aligned and intact */
    struct odd {
        double d;
        void *p;
        char tail[3];
    };
    struct ibex_lru *c = ibex_lru_new(8, sizeof(struct odd), NULL);
    for (int i = 0; i < 8; i++) {
        uint8_t k[IBEX_LRU_KEY_LEN];
        mkkey(k, (uint64_t)i * 977, (uint8_t)i);
        struct odd o = {i * 1.5, &o, {(char)i, 'b', 'c'}};
        ibex_lru_put(c, k, &o, 100, 0);
    }
    for (int i = 0; i < 8; i++) {
        uint8_t k[IBEX_LRU_KEY_LEN];
        mkkey(k, (uint64_t)i * 977, (uint8_t)i);
        struct odd *o = ibex_lru_get(c, k, 0, 0);
        assert_non_null(o);
        assert_int_equal((uintptr_t)o % _Alignof(max_align_t), 0);
        assert_true(o->d == i * 1.5);
        assert_int_equal(o->tail[0], i);
        assert_int_equal(o->tail[2], 'c');
    }
    ibex_lru_free(c);
}

static void test_expiry(void **state)
{
    struct ibex_lru *c = ibex_lru_new(4, sizeof(struct val), dispose_val);
    uint8_t k[IBEX_LRU_KEY_LEN];
    mkkey(k, 5, 5);
    struct val v = mkval(1);
    ibex_lru_put(c, k, &v, 1000, 0);
    assert_int_equal(get_n(c, k, 999, 0), 1);
    assert_int_equal(disposed, 0);
    /* now == expires is already a miss, and it drops the entry (disposing it once) */
    assert_int_equal(get_n(c, k, 1000, 0), -1);
    assert_int_equal(disposed, 1);
    assert_int_equal(last_disposed_n, 1);
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.size, 0);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.evictions, 0); /* an expiry is not an eviction */
    /* dropped, not merely hidden: an earlier clock does not bring it back */
    assert_int_equal(get_n(c, k, 0, 0), -1);
    assert_int_equal(disposed, 1);
    /* the key can be stored again */
    v = mkval(2);
    ibex_lru_put(c, k, &v, 2000, 0);
    assert_int_equal(get_n(c, k, 1500, 0), 2);
    /* far past expiry too */
    assert_int_equal(get_n(c, k, INT64_MAX, 0), -1);
    assert_int_equal(disposed, 2);
    ibex_lru_free(c);
    assert_int_equal(disposed, 2);
}

static void test_epoch(void **state)
{
    struct ibex_lru *c = ibex_lru_new(4, sizeof(struct val), dispose_val);
    uint8_t k[IBEX_LRU_KEY_LEN];
    mkkey(k, 9, 9);
    struct val v = mkval(1);
    ibex_lru_put(c, k, &v, 1000, 5);
    assert_int_equal(get_n(c, k, 0, 5), 1); /* same epoch */
    assert_int_equal(get_n(c, k, 0, 3), 1); /* an older epoch asked: still fresh */
    assert_int_equal(disposed, 0);
    /* the caller's epoch moved past the entry's: stale, a miss, dropped */
    assert_int_equal(get_n(c, k, 0, 6), -1);
    assert_int_equal(disposed, 1);
    assert_int_equal(stats(c).size, 0);
    assert_int_equal(get_n(c, k, 0, 0), -1); /* gone for every epoch */
    /* stored again at the new epoch, it is fresh for that epoch */
    v = mkval(2);
    ibex_lru_put(c, k, &v, 1000, 6);
    assert_int_equal(get_n(c, k, 0, 6), 2);
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.hits, 3);
    assert_int_equal(s.misses, 2);
    ibex_lru_free(c);
    assert_int_equal(disposed, 2);
}

static void test_lru_order(void **state)
{
    struct ibex_lru *c = ibex_lru_new(3, sizeof(struct val), dispose_val);
    uint8_t a[IBEX_LRU_KEY_LEN], b[IBEX_LRU_KEY_LEN], cc[IBEX_LRU_KEY_LEN], d[IBEX_LRU_KEY_LEN],
        e[IBEX_LRU_KEY_LEN], f[IBEX_LRU_KEY_LEN];
    mkkey(a, 100, 'a');
    mkkey(b, 200, 'b');
    mkkey(cc, 300, 'c');
    mkkey(d, 400, 'd');
    mkkey(e, 500, 'e');
    mkkey(f, 600, 'f');
    struct val v;
    v = mkval('a');
    ibex_lru_put(c, a, &v, 1000, 0);
    v = mkval('b');
    ibex_lru_put(c, b, &v, 1000, 0);
    v = mkval('c');
    ibex_lru_put(c, cc, &v, 1000, 0);
    /* recency c, b, a: a get makes a the most recent, so b is now the oldest */
    assert_int_equal(get_n(c, a, 0, 0), 'a');
    v = mkval('d');
    ibex_lru_put(c, d, &v, 1000, 0);
    assert_int_equal(disposed, 1);
    assert_int_equal(last_disposed_n, 'b');
    assert_int_equal(stats(c).evictions, 1);
    assert_int_equal(stats(c).size, 3);
    assert_int_equal(get_n(c, b, 0, 0), -1); /* a miss leaves the order alone */
    /* recency d, a, c: the next put evicts c */
    v = mkval('e');
    ibex_lru_put(c, e, &v, 1000, 0);
    assert_int_equal(last_disposed_n, 'c');
    /* recency e, d, a: a put over an existing key refreshes it too, so d goes next */
    v = mkval('A');
    ibex_lru_put(c, a, &v, 1000, 0);
    assert_int_equal(disposed, 3); /* c evicted, old a replaced */
    assert_int_equal(last_disposed_n, 'a');
    v = mkval('f');
    ibex_lru_put(c, f, &v, 1000, 0);
    assert_int_equal(last_disposed_n, 'd');
    assert_int_equal(disposed, 4);
    assert_int_equal(stats(c).evictions, 3);
    assert_int_equal(get_n(c, cc, 0, 0), -1);
    assert_int_equal(get_n(c, d, 0, 0), -1);
    assert_int_equal(get_n(c, a, 0, 0), 'A');
    assert_int_equal(get_n(c, e, 0, 0), 'e');
    assert_int_equal(get_n(c, f, 0, 0), 'f');
    ibex_lru_free(c);
    assert_int_equal(disposed, 7);
}

static void test_replace_disposes_old(void **state)
{
    struct ibex_lru *c = ibex_lru_new(4, sizeof(struct val), dispose_val);
    uint8_t k[IBEX_LRU_KEY_LEN];
    mkkey(k, 77, 1);
    struct val v = mkval(1);
    ibex_lru_put(c, k, &v, 1000, 1);
    v = mkval(2);
    ibex_lru_put(c, k, &v, 5000, 3);
    assert_int_equal(disposed, 1);
    assert_int_equal(last_disposed_n, 1);
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.size, 1);
    assert_int_equal(s.evictions, 0);
    /* the replacement carries its own expiry and epoch */
    assert_int_equal(get_n(c, k, 4000, 3), 2);
    assert_int_equal(get_n(c, k, 4000, 4), -1);
    assert_int_equal(disposed, 2);
    assert_int_equal(last_disposed_n, 2);
    ibex_lru_free(c);
    assert_int_equal(disposed, 2);
}

static void test_replace_shortens_expiry(void **state)
{
    struct ibex_lru *c = ibex_lru_new(2, sizeof(int), NULL);
    uint8_t k[IBEX_LRU_KEY_LEN];
    mkkey(k, 3, 3);
    int v = 1;
    ibex_lru_put(c, k, &v, 10000, 0);
    v = 2;
    ibex_lru_put(c, k, &v, 100, 0);
    assert_null(ibex_lru_get(c, k, 100, 0));
    assert_int_equal(stats(c).size, 0);
    ibex_lru_free(c);
}

static void test_dispose_on_evict_and_free(void **state)
{
    struct ibex_lru *c = ibex_lru_new(2, sizeof(struct val), dispose_val);
    for (int i = 0; i < 10; i++) {
        uint8_t k[IBEX_LRU_KEY_LEN];
        mkkey(k, (uint64_t)i, (uint8_t)i);
        struct val v = mkval(i);
        ibex_lru_put(c, k, &v, 1000, 0);
        assert_int_equal(disposed, i < 2 ? 0 : i - 1);
        if (i >= 2)
            assert_int_equal(last_disposed_n, i - 2);
    }
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.size, 2);
    assert_int_equal(s.evictions, 8);
    ibex_lru_free(c);
    assert_int_equal(disposed, 10);
    ibex_lru_free(NULL); /* a no-op */
}

static void test_capacity_one(void **state)
{
    struct ibex_lru *c = ibex_lru_new(1, sizeof(struct val), dispose_val);
    uint8_t a[IBEX_LRU_KEY_LEN], b[IBEX_LRU_KEY_LEN];
    mkkey(a, 1, 'a');
    mkkey(b, 2, 'b');
    struct val v = mkval('a');
    ibex_lru_put(c, a, &v, 1000, 0);
    assert_int_equal(get_n(c, a, 0, 0), 'a');
    v = mkval('b');
    ibex_lru_put(c, b, &v, 1000, 0);
    assert_int_equal(disposed, 1);
    assert_int_equal(last_disposed_n, 'a');
    assert_int_equal(get_n(c, a, 0, 0), -1);
    assert_int_equal(get_n(c, b, 0, 0), 'b');
    /* replacing the single entry is a replace, not an eviction */
    v = mkval('B');
    ibex_lru_put(c, b, &v, 1000, 0);
    assert_int_equal(disposed, 2);
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.evictions, 1);
    assert_int_equal(s.size, 1);
    assert_int_equal(get_n(c, b, 0, 0), 'B');
    /* expiring the only entry empties the cache; the next put allocates again */
    assert_int_equal(get_n(c, b, 5000, 0), -1);
    assert_int_equal(stats(c).size, 0);
    v = mkval('a');
    ibex_lru_put(c, a, &v, 1000, 0);
    assert_int_equal(get_n(c, a, 0, 0), 'a');
    ibex_lru_free(c);
    assert_int_equal(disposed, 4);
}

static void test_capacity_zero_means_one(void **state)
{
    struct ibex_lru *c = ibex_lru_new(0, sizeof(int), NULL);
    uint8_t a[IBEX_LRU_KEY_LEN], b[IBEX_LRU_KEY_LEN];
    mkkey(a, 1, 'a');
    mkkey(b, 2, 'b');
    int v = 1;
    ibex_lru_put(c, a, &v, 1000, 0);
    v = 2;
    ibex_lru_put(c, b, &v, 1000, 0);
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.size, 1);
    assert_int_equal(s.evictions, 1);
    assert_null(ibex_lru_get(c, a, 0, 0));
    assert_int_equal(*(int *)ibex_lru_get(c, b, 0, 0), 2);
    ibex_lru_free(c);
}

/* Keys that share their first 8 bytes land in one bucket chain; they differ only in the last
 * byte, so a comparison of fewer than 32 bytes would confuse them. */
static void test_bucket_collisions(void **state)
{
    enum { N = 40 };
    struct ibex_lru *c = ibex_lru_new(N, sizeof(struct val), dispose_val);
    uint8_t k[N][IBEX_LRU_KEY_LEN];
    for (int i = 0; i < N; i++) {
        mkkey(k[i], 0x1122334455667788ull, (uint8_t)i);
        struct val v = mkval(i);
        ibex_lru_put(c, k[i], &v, 1000 + i, 0);
    }
    assert_int_equal(stats(c).size, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(get_n(c, k[i], 0, 0), i);
    /* drop entries from the middle, the head and the tail of the chain by expiry */
    assert_int_equal(get_n(c, k[20], 1020, 0), -1);
    assert_int_equal(get_n(c, k[0], 1000, 0), -1);
    assert_int_equal(get_n(c, k[N - 1], 1000 + N - 1, 0), -1);
    assert_int_equal(disposed, 3);
    for (int i = 0; i < N; i++)
        assert_int_equal(get_n(c, k[i], 0, 0), i == 0 || i == 20 || i == N - 1 ? -1 : i);
    /* refill to capacity, then evict through the chain: every key still finds its own value */
    for (int i = N; i < N + 3 + 10; i++) {
        uint8_t extra[IBEX_LRU_KEY_LEN];
        mkkey(extra, 0x1122334455667788ull, (uint8_t)i);
        struct val v = mkval(i);
        ibex_lru_put(c, extra, &v, 5000, 0);
    }
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.size, N);
    assert_int_equal(s.evictions, 10);
    /* the 10 least recently used (1..10, skipping dropped 0) were evicted */
    for (int i = 1; i <= 10; i++)
        assert_int_equal(get_n(c, k[i], 0, 0), -1);
    for (int i = 11; i < N - 1; i++)
        if (i != 20)
            assert_int_equal(get_n(c, k[i], 0, 0), i);
    for (int i = N; i < N + 13; i++) {
        uint8_t extra[IBEX_LRU_KEY_LEN];
        mkkey(extra, 0x1122334455667788ull, (uint8_t)i);
        assert_int_equal(get_n(c, extra, 0, 0), i);
    }
    /* a key equal in its first 31 bytes but not the last is a different key */
    uint8_t other[IBEX_LRU_KEY_LEN];
    mkkey(other, 0x1122334455667788ull, 0xFF);
    assert_null(ibex_lru_get(c, other, 0, 0));
    ibex_lru_free(c);
    assert_int_equal(disposed, N + 13);
}

/* Keys that differ only in bits above the bucket mask share a bucket too. */
static void test_bucket_collisions_high_bits(void **state)
{
    struct ibex_lru *c = ibex_lru_new(4, sizeof(int), NULL);
    uint8_t k[8][IBEX_LRU_KEY_LEN];
    for (int i = 0; i < 8; i++) {
        mkkey(k[i], ((uint64_t)i << 40) | 0x5, 0);
        int v = i;
        ibex_lru_put(c, k[i], &v, 1000, 0);
    }
    /* capacity 4: the first four were evicted, the last four hold their own values */
    for (int i = 0; i < 8; i++) {
        int *v = ibex_lru_get(c, k[i], 0, 0);
        if (i < 4)
            assert_null(v);
        else
            assert_int_equal(*v, i);
    }
    assert_int_equal(stats(c).evictions, 4);
    ibex_lru_free(c);
}

static void test_many_keys_churn(void **state)
{
    /* many more puts than capacity, with gets in between: size stays bounded, the counters add
     * up, and every value is disposed exactly once by the end (ASan checks the memory) */
    enum { CAP = 64, KEYS = 256, ROUNDS = 4000 };
    struct ibex_lru *c = ibex_lru_new(CAP, sizeof(struct val), dispose_val);
    unsigned seed = 12345;
    int puts = 0, replaced_or_evicted = 0;
    for (int r = 0; r < ROUNDS; r++) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 8) % KEYS;
        uint8_t k[IBEX_LRU_KEY_LEN];
        mkkey(k, i % 7, (uint8_t)i);
        k[10] = (uint8_t)(i >> 8);
        if (seed & 1) {
            int before = disposed;
            struct val v = mkval((int)i);
            ibex_lru_put(c, k, &v, 1000000, 0);
            puts++;
            replaced_or_evicted += disposed - before;
        } else {
            int n = get_n(c, k, 0, 0);
            assert_true(n == -1 || n == (int)i);
        }
        assert_true(stats(c).size <= CAP);
    }
    struct ibex_lru_stats s = stats(c);
    assert_int_equal(s.hits + s.misses, ROUNDS - puts);
    assert_int_equal(puts - replaced_or_evicted, (int)s.size);
    ibex_lru_free(c);
    assert_int_equal(disposed, puts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hit_miss_counting, reset),
        cmocka_unit_test_setup(test_value_alignment_and_size, reset),
        cmocka_unit_test_setup(test_expiry, reset),
        cmocka_unit_test_setup(test_epoch, reset),
        cmocka_unit_test_setup(test_lru_order, reset),
        cmocka_unit_test_setup(test_replace_disposes_old, reset),
        cmocka_unit_test_setup(test_replace_shortens_expiry, reset),
        cmocka_unit_test_setup(test_dispose_on_evict_and_free, reset),
        cmocka_unit_test_setup(test_capacity_one, reset),
        cmocka_unit_test_setup(test_capacity_zero_means_one, reset),
        cmocka_unit_test_setup(test_bucket_collisions, reset),
        cmocka_unit_test_setup(test_bucket_collisions_high_bits, reset),
        cmocka_unit_test_setup(test_many_keys_churn, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
