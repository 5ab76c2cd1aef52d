/* src/core/id.c: UUIDv4 and v7 text (format, version and variant bits, uniqueness), a UUID's
 * bytes, is_uuid, random. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "../../src/core/id.h"

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void assert_uuid4_text(const char *u)
{
    assert_int_equal(strlen(u), IBEX_UUID_LEN);
    for (size_t i = 0; i < IBEX_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(u[i], '-');
        else
            assert_true(is_lower_hex(u[i]));
    }
    assert_int_equal(u[14], '4');           /* version 4 */
    assert_non_null(strchr("89ab", u[19])); /* variant 10xx (RFC 4122) */
}

static void test_uuid4_format(void **state)
{
    for (int i = 0; i < 2000; i++) {
        char u[IBEX_UUID_LEN + 1];
        memset(u, 'Z', sizeof(u));
        ibex_id_uuid4(u);
        assert_uuid4_text(u);
        assert_true(ibex_id_is_uuid(u, strlen(u)));
    }
}

static int cmp_uuid(const void *a, const void *b)
{
    return memcmp(a, b, IBEX_UUID_LEN + 1);
}

static void test_uuid4_unique_and_random(void **state)
{
    enum { N = 20000 };
    char(*ids)[IBEX_UUID_LEN + 1] = malloc(N * sizeof(*ids));
    for (int i = 0; i < N; i++)
        ibex_id_uuid4(ids[i]);
    /* Every random position takes many values across the set (not stuck, not zeroed). */
    for (size_t pos = 0; pos < IBEX_UUID_LEN; pos++) {
        if (pos == 8 || pos == 13 || pos == 14 || pos == 18 || pos == 23)
            continue;
        bool seen[16] = {false};
        int distinct = 0;
        for (int i = 0; i < N; i++) {
            char c = ids[i][pos];
            int v = c <= '9' ? c - '0' : c - 'a' + 10;
            if (!seen[v]) {
                seen[v] = true;
                distinct++;
            }
        }
        assert_int_equal(distinct, pos == 19 ? 4 : 16);
    }
    qsort(ids, N, sizeof(*ids), cmp_uuid);
    for (int i = 1; i < N; i++)
        assert_int_not_equal(memcmp(ids[i - 1], ids[i], IBEX_UUID_LEN), 0);
    free(ids);
}

/* UUIDv7: canonical form, version 7, variant 10, the milliseconds in the first 48 bits, and ids
 * made later sort after earlier ones as text: in a later millisecond, in the same one, and when
 * the clock goes back. */
static void test_uuid7(void **state)
{
    char a[IBEX_UUID_LEN + 1], b[IBEX_UUID_LEN + 1], c[IBEX_UUID_LEN + 1];
    uint64_t ms = 0x0189abcdef01ull;
    ibex_id_uuid7(ms, a);
    assert_true(ibex_id_is_uuid(a, strlen(a)));
    assert_int_equal(a[14], '7');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_memory_equal(a, "0189abcd-ef01-7", 15);
    for (int i = 0; i < 5000; i++) { /* same millisecond, past the 4096 of its counter */
        ibex_id_uuid7(ms, b);
        assert_true(strcmp(b, a) > 0);
        memcpy(a, b, sizeof(a));
    }
    ibex_id_uuid7(ms + 2, c);
    assert_true(strcmp(c, a) > 0);
    assert_memory_equal(c, "0189abcd-ef03-7", 15);
    ibex_id_uuid7(ms + 256, c);
    assert_true(strcmp(c, a) > 0);
    ibex_id_uuid7(ms, b); /* the clock went back */
    assert_true(strcmp(b, c) > 0);
}

/* The milliseconds read back from a v7 id, upper case too; -1 for other versions and junk. */
static void test_uuid7_ms(void **state)
{
    char a[IBEX_UUID_LEN + 1], v4[IBEX_UUID_LEN + 1];
    ibex_id_uuid7(0x0289abcdef01ull, a);
    assert_int_equal(ibex_id_uuid7_ms(a), 0x0289abcdef01ll);
    for (char *p = a; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    assert_int_equal(ibex_id_uuid7_ms(a), 0x0289abcdef01ll);
    ibex_id_uuid7(0xffffffffffffull, a);
    assert_int_equal(ibex_id_uuid7_ms(a), 0xffffffffffffll);
    ibex_id_uuid4(v4);
    assert_int_equal(ibex_id_uuid7_ms(v4), -1);
    assert_int_equal(ibex_id_uuid7_ms("0189abcd-ef01-7"), -1);
    assert_int_equal(ibex_id_uuid7_ms(""), -1);
    assert_int_equal(ibex_id_uuid7_ms("0189abcd-ef01-7xyz-8000-000000000000"), -1);
}

/* A UUID's 16 bytes from its text, either case; the text made from them again. */
static void test_uuid_bytes(void **state)
{
    uint8_t b[16];
    ibex_id_uuid_bytes("0123abcd-ABCD-7f09-8a00-ff10e2d3c4b5", b);
    const uint8_t want[16] = {0x01, 0x23, 0xab, 0xcd, 0xab, 0xcd, 0x7f, 0x09,
                              0x8a, 0x00, 0xff, 0x10, 0xe2, 0xd3, 0xc4, 0xb5};
    assert_memory_equal(b, want, sizeof(want));
    for (int i = 0; i < 100; i++) {
        char u[IBEX_UUID_LEN + 1], back[IBEX_UUID_LEN + 1];
        ibex_id_uuid7((uint64_t)i * 7919, u);
        ibex_id_uuid_bytes(u, b);
        size_t o = 0;
        for (int k = 0; k < 16; k++) {
            if (k == 4 || k == 6 || k == 8 || k == 10)
                back[o++] = '-';
            o += (size_t)snprintf(back + o, 3, "%02x", b[k]);
        }
        assert_string_equal(back, u);
    }
}

static void test_is_uuid(void **state)
{
    const char *good[] = {
        "123e4567-e89b-12d3-a456-426614174000",
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "aBcDeF01-2345-6789-abcd-ef0123456789",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(ibex_id_is_uuid(good[i], strlen(good[i])));
    const char *bad[] = {
        "",
        "123e4567-e89b-12d3-a456-42661417400",   /* 35 chars */
        "123e4567-e89b-12d3-a456-4266141740000", /* 37 chars */
        "123e4567e89b-12d3-a456-426614174000-",  /* dash moved */
        "123e4567-e89b-12d3-a456_426614174000",  /* wrong separator */
        "123e4567-e89b-12d3-a456-42661417400g",  /* not hex */
        "123e4567-e89b-12d3-a4560426614174000",  /* dash replaced by a digit */
        "{23e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-42661417400 ",
        "123e4567 e89b 12d3 a456 426614174000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ibex_id_is_uuid(bad[i], strlen(bad[i])));
    /* len is what counts, not the NUL */
    const char *longer = "123e4567-e89b-12d3-a456-426614174000XYZ";
    assert_true(ibex_id_is_uuid(longer, IBEX_UUID_LEN));
    assert_false(ibex_id_is_uuid(longer, IBEX_UUID_LEN + 1));
    char withnul[IBEX_UUID_LEN];
    memcpy(withnul, good[0], IBEX_UUID_LEN);
    withnul[20] = '\0';
    assert_false(ibex_id_is_uuid(withnul, IBEX_UUID_LEN));
}

static bool has_zero_run(const unsigned char *p, size_t n, size_t run)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++) {
        z = p[i] == 0 ? z + 1 : 0;
        if (z >= run)
            return true;
    }
    return false;
}

static void test_random_bytes(void **state)
{
    /* Sizes that cross the refill boundary of the internal pool; consecutive draws differ and
     * none contains a long zero run (which would mean consumed pool bytes were handed out). */
    static unsigned char a[10000], b[10000];
    for (int round = 0; round < 5; round++) {
        ibex_id_random(a, sizeof(a));
        ibex_id_random(b, 4095);
        ibex_id_random(b + 4095, 1);
        ibex_id_random(b + 4096, sizeof(b) - 4096);
        assert_false(has_zero_run(a, sizeof(a), 32));
        assert_false(has_zero_run(b, sizeof(b), 32));
        assert_int_not_equal(memcmp(a, b, sizeof(a)), 0);
    }
    size_t ones = 0;
    for (size_t i = 0; i < sizeof(a); i++)
        ones += (size_t)__builtin_popcount(a[i]);
    /* 80000 fair bits: the mean is 40000, sigma ~141; allow 10 sigma. */
    assert_in_range(ones, 38600, 41400);
    ibex_id_random(a, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid4_format), cmocka_unit_test(test_uuid4_unique_and_random),
        cmocka_unit_test(test_uuid7),        cmocka_unit_test(test_uuid7_ms),
        cmocka_unit_test(test_uuid_bytes),   cmocka_unit_test(test_is_uuid),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
