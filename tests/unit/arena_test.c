/* src/core/arena.c: alignment, chunk growth, big allocations, reset, cleanup hooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/arena.h"

static void test_alignment(void **state)
{
    struct ibex_arena *a = ibex_arena_new(1024);
    for (size_t n = 1; n < 300; n++) {
        void *p = ibex_arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
        void *q = ibex_arena_calloc(a, n);
        assert_int_equal((uintptr_t)q % _Alignof(max_align_t), 0);
    }
    char *s = ibex_arena_strndup(a, "abc", 3);
    void *after = ibex_arena_alloc(a, 8);
    assert_int_equal((uintptr_t)after % _Alignof(max_align_t), 0);
    assert_string_equal(s, "abc");
    ibex_arena_free(a);
}

/* Many allocations of mixed sizes never overlap: each keeps the pattern written into it. */
static void test_allocations_do_not_overlap(void **state)
{
    enum { N = 2000 };
    struct ibex_arena *a = ibex_arena_new(256);
    unsigned char *ptrs[N];
    size_t sizes[N];
    for (size_t i = 0; i < N; i++) {
        sizes[i] = (i * 37) % 700 + 1;
        ptrs[i] = ibex_arena_alloc(a, sizes[i]);
        memset(ptrs[i], (int)(i & 0xFF), sizes[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal(ptrs[i][j], i & 0xFF);
    ibex_arena_free(a);
}

static void test_big_allocations(void **state)
{
    struct ibex_arena *a = ibex_arena_new(256);
    char *small1 = ibex_arena_alloc(a, 16);
    memset(small1, 'a', 16);
    /* Far larger than a chunk: the whole block is usable (ASan checks the bounds). */
    size_t big = 4u << 20;
    char *p = ibex_arena_alloc(a, big);
    memset(p, 'b', big);
    char *small2 = ibex_arena_alloc(a, 100);
    memset(small2, 'c', 100);
    char *p2 = ibex_arena_alloc(a, big + 1);
    memset(p2, 'd', big + 1);
    assert_int_equal(small1[15], 'a');
    assert_int_equal(p[0], 'b');
    assert_int_equal(p[big - 1], 'b');
    assert_int_equal(small2[99], 'c');
    assert_int_equal(p2[big], 'd');
    /* Reset frees the extra chunks (leak detection would notice otherwise) and stays usable. */
    ibex_arena_reset(a);
    char *again = ibex_arena_alloc(a, big);
    memset(again, 'e', big);
    ibex_arena_free(a);
}

static void test_calloc_zeroes_reused_memory(void **state)
{
    struct ibex_arena *a = ibex_arena_new(4096);
    for (int i = 0; i < 8; i++)
        memset(ibex_arena_alloc(a, 400), 0xAB, 400);
    ibex_arena_reset(a);
    for (int i = 0; i < 8; i++) {
        unsigned char *z = ibex_arena_calloc(a, 400);
        for (size_t j = 0; j < 400; j++)
            assert_int_equal(z[j], 0);
    }
    ibex_arena_free(a);
}

static void test_strndup(void **state)
{
    struct ibex_arena *a = ibex_arena_new(0);
    const char *src = "hello world";
    char *s = ibex_arena_strndup(a, src, 5);
    assert_string_equal(s, "hello");
    assert_ptr_not_equal(s, src);
    char *e = ibex_arena_strndup(a, "", 0);
    assert_string_equal(e, "");
    char *n = ibex_arena_strndup(a, "a\0b", 3); /* copies n bytes even past a NUL */
    assert_memory_equal(n, "a\0b", 4);
    ibex_arena_free(a);
}

static void test_reset_reuses_first_chunk(void **state)
{
    struct ibex_arena *a = ibex_arena_new(1024);
    void *first = ibex_arena_alloc(a, 32);
    for (int i = 0; i < 100; i++)
        ibex_arena_alloc(a, 200); /* spill into more chunks */
    ibex_arena_reset(a);
    assert_ptr_equal(ibex_arena_alloc(a, 32), first);
    ibex_arena_free(a);
}

struct hook_log {
    int order[16];
    int n;
};

struct hook {
    struct hook_log *log;
    int id;
};

static void hook_fn(void *data)
{
    struct hook *h = data;
    assert_true(h->log->n < 16);
    h->log->order[h->log->n++] = h->id;
}

static void test_cleanup_hooks_newest_first_on_free(void **state)
{
    struct hook_log log = {{0}, 0};
    struct hook hooks[4] = {{&log, 1}, {&log, 2}, {&log, 3}, {&log, 4}};
    struct ibex_arena *a = ibex_arena_new(256);
    for (int i = 0; i < 4; i++) {
        ibex_arena_on_free(a, hook_fn, &hooks[i]);
        ibex_arena_alloc(a, 300); /* hooks spread over several chunks */
    }
    assert_int_equal(log.n, 0);
    ibex_arena_free(a);
    assert_int_equal(log.n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(log.order[i], 4 - i);
}

static void test_cleanup_hooks_run_once_on_reset(void **state)
{
    struct hook_log log = {{0}, 0};
    struct hook h1 = {&log, 1}, h2 = {&log, 2}, h3 = {&log, 3};
    struct ibex_arena *a = ibex_arena_new(256);
    ibex_arena_on_free(a, hook_fn, &h1);
    ibex_arena_on_free(a, hook_fn, &h2);
    ibex_arena_reset(a);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.order[0], 2);
    assert_int_equal(log.order[1], 1);
    ibex_arena_reset(a); /* already run: not again */
    assert_int_equal(log.n, 2);
    ibex_arena_on_free(a, hook_fn, &h3);
    ibex_arena_free(a);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.order[2], 3);
}

/* The typical use: a hook frees heap memory owned by the request. */
static void test_cleanup_hook_frees_heap(void **state)
{
    struct ibex_arena *a = ibex_arena_new(256);
    for (int i = 0; i < 10; i++)
        ibex_arena_on_free(a, free, malloc(100));
    ibex_arena_reset(a);
    ibex_arena_on_free(a, free, malloc(100));
    ibex_arena_free(a);
    ibex_arena_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_allocations_do_not_overlap),
        cmocka_unit_test(test_big_allocations),
        cmocka_unit_test(test_calloc_zeroes_reused_memory),
        cmocka_unit_test(test_strndup),
        cmocka_unit_test(test_reset_reuses_first_chunk),
        cmocka_unit_test(test_cleanup_hooks_newest_first_on_free),
        cmocka_unit_test(test_cleanup_hooks_run_once_on_reset),
        cmocka_unit_test(test_cleanup_hook_frees_heap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
