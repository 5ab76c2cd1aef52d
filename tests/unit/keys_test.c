/* src/auth/keys.c: the shape of generated keys (mark, 40 base62 characters), their uniqueness
 * and the spread of their characters (no modulo bias), the well-formedness check at its length
 * bounds and with bad bytes, the lookup prefix, SHA-256 against known vectors, and the
 * constant-time comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/auth/keys.h"

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int b62_index(char c)
{
    const char *p = c ? strchr(base62, c) : NULL;
    return p ? (int)(p - base62) : -1;
}

/* "ibex_sk_" followed by n copies of fill (n <= 120), NUL-terminated. */
static void key_of(char *out, size_t cap, size_t n, char fill)
{
    assert_true(IBEX_KEY_MARK_LEN + n + 1 <= cap);
    memcpy(out, IBEX_KEY_MARK, IBEX_KEY_MARK_LEN);
    memset(out + IBEX_KEY_MARK_LEN, fill, n);
    out[IBEX_KEY_MARK_LEN + n] = '\0';
}

static void test_constants(void **state)
{
    assert_int_equal(IBEX_KEY_LEN, 48);
    assert_int_equal(IBEX_KEY_PREFIX_LEN, 20);
    assert_int_equal(IBEX_KEY_MAX_LEN, 108);
    assert_int_equal(strlen(IBEX_KEY_MARK), IBEX_KEY_MARK_LEN);
}

static void test_generate_shape(void **state)
{
    for (int i = 0; i < 200; i++) {
        char k[IBEX_KEY_LEN + 1];
        memset(k, '!', sizeof(k));
        ibex_key_generate(k);
        assert_int_equal(strlen(k), IBEX_KEY_LEN);
        assert_memory_equal(k, "ibex_sk_", 8);
        for (size_t j = IBEX_KEY_MARK_LEN; j < IBEX_KEY_LEN; j++)
            if (b62_index(k[j]) < 0)
                fail_msg("byte %zu of %s is not base62", j, k);
        assert_true(ibex_key_well_formed(k, strlen(k)));
    }
}

static int cmp_keys(const void *a, const void *b)
{
    return memcmp(a, b, IBEX_KEY_LEN + 1);
}

static void test_generate_unique_and_spread(void **state)
{
    enum { N = 10000 };
    char(*keys)[IBEX_KEY_LEN + 1] = calloc(N, sizeof(*keys));
    assert_non_null(keys);
    size_t count[62] = {0}, first[62] = {0};
    for (int i = 0; i < N; i++) {
        ibex_key_generate(keys[i]);
        first[b62_index(keys[i][IBEX_KEY_MARK_LEN])]++;
        for (size_t j = IBEX_KEY_MARK_LEN; j < IBEX_KEY_LEN; j++)
            count[b62_index(keys[i][j])]++;
    }
    /* no two keys alike, nor two lookup prefixes */
    qsort(keys, N, sizeof(*keys), cmp_keys);
    for (int i = 1; i < N; i++) {
        assert_memory_not_equal(keys[i - 1], keys[i], IBEX_KEY_LEN);
        assert_memory_not_equal(keys[i - 1], keys[i], IBEX_KEY_PREFIX_LEN);
    }
    /* 400000 characters, 6451.6 expected per symbol (sd ~80): every symbol within +-10%. A
     * plain `byte % 62` would give '0'..'7' 25% more than the rest and fail this. */
    double expected = (double)N * IBEX_KEY_RANDOM_LEN / 62, chi2 = 0;
    for (int c = 0; c < 62; c++) {
        if (count[c] < expected * 0.9 || count[c] > expected * 1.1)
            fail_msg("'%c' drawn %zu times, expected about %.0f", base62[c], count[c], expected);
        chi2 += (count[c] - expected) * (count[c] - expected) / expected;
        /* the first random character is as random as the rest (161 expected, sd ~13) */
        assert_true(first[c] > 60 && first[c] < 300);
    }
    /* 61 degrees of freedom: mean 61, sd 11; 140 is beyond p = 1e-7 */
    if (chi2 > 140)
        fail_msg("chi-square %.1f: the characters are not uniform", chi2);
    free(keys);
}

static void test_well_formed_lengths(void **state)
{
    char k[200];
    /* 20..100 random characters: 28..108 bytes in all */
    key_of(k, sizeof(k), 19, 'a');
    assert_int_equal(strlen(k), 27);
    assert_false(ibex_key_well_formed(k, 27));
    key_of(k, sizeof(k), 20, 'a');
    assert_true(ibex_key_well_formed(k, 28));
    key_of(k, sizeof(k), 40, 'Z');
    assert_true(ibex_key_well_formed(k, 48));
    key_of(k, sizeof(k), 100, '9');
    assert_true(ibex_key_well_formed(k, 108));
    key_of(k, sizeof(k), 101, '9');
    assert_false(ibex_key_well_formed(k, 109));
    key_of(k, sizeof(k), 150, '9');
    assert_false(ibex_key_well_formed(k, strlen(k)));
    /* the mark alone, nothing, and short strings (no read past len: ASan would see it) */
    assert_false(ibex_key_well_formed("ibex_sk_", 8));
    assert_false(ibex_key_well_formed("", 0));
    char *shortk = malloc(3);
    memcpy(shortk, "ibe", 3);
    assert_false(ibex_key_well_formed(shortk, 3));
    free(shortk);
    /* len is what counts, not the NUL: a valid key followed by junk, checked over its length */
    char buf[64];
    snprintf(buf, sizeof(buf), "ibex_sk_%s!!", "abcdefghijABCDEFGHIJ0123456789abcdefghij");
    assert_true(ibex_key_well_formed(buf, 48));
    assert_false(ibex_key_well_formed(buf, 49));
    /* and a key cut short by len is judged on what len covers */
    assert_true(ibex_key_well_formed(buf, 28));
    assert_false(ibex_key_well_formed(buf, 27));
}

static void test_well_formed_bad_bytes(void **state)
{
    const char bad[] = {'_', '-', ' ', '+', '/', '=', '.', '\n', '\0', '\x7f', '\xc3', '\xff'};
    for (size_t i = 0; i < sizeof(bad); i++) {
        for (size_t pos = IBEX_KEY_MARK_LEN; pos < IBEX_KEY_LEN; pos += 13) {
            char k[IBEX_KEY_LEN + 1];
            key_of(k, sizeof(k), IBEX_KEY_RANDOM_LEN, 'q');
            k[pos] = bad[i];
            if (ibex_key_well_formed(k, IBEX_KEY_LEN))
                fail_msg("byte 0x%02x at %zu accepted", (unsigned char)bad[i], pos);
        }
    }
    /* the last byte is checked too */
    char k[IBEX_KEY_LEN + 1];
    key_of(k, sizeof(k), IBEX_KEY_RANDOM_LEN, 'q');
    k[IBEX_KEY_LEN - 1] = '-';
    assert_false(ibex_key_well_formed(k, IBEX_KEY_LEN));
}

static void test_well_formed_wrong_mark(void **state)
{
    const char *marks[] = {"ibex_pk_", "IBEX_SK_", "ibex-sk_", "ibex_sk-", "xbex_sk_", "ibex_ska"};
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        char k[IBEX_KEY_LEN + 1];
        key_of(k, sizeof(k), IBEX_KEY_RANDOM_LEN, 'q');
        memcpy(k, marks[i], 8);
        if (ibex_key_well_formed(k, IBEX_KEY_LEN))
            fail_msg("mark %s accepted", marks[i]);
    }
    /* a key with the mark somewhere other than the start */
    char k[IBEX_KEY_LEN + 2];
    k[0] = 'x';
    key_of(k + 1, sizeof(k) - 1, IBEX_KEY_RANDOM_LEN, 'q');
    assert_false(ibex_key_well_formed(k, strlen(k)));
    /* a bearer token of another kind */
    const char *jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    assert_false(ibex_key_well_formed(jwt, strlen(jwt)));
}

static void test_prefix(void **state)
{
    char k[IBEX_KEY_LEN + 1], p[IBEX_KEY_PREFIX_LEN + 1];
    ibex_key_generate(k);
    memset(p, '#', sizeof(p));
    ibex_key_prefix(k, p);
    assert_int_equal(strlen(p), IBEX_KEY_PREFIX_LEN);
    assert_memory_equal(p, k, IBEX_KEY_PREFIX_LEN);
    assert_memory_equal(p, "ibex_sk_", 8);
    ibex_key_prefix("ibex_sk_ABCDEFGHIJKLmnopqrstuvwxyz", p);
    assert_string_equal(p, "ibex_sk_ABCDEFGHIJKL");
}

static void test_sha256(void **state)
{
    char hex[IBEX_SHA256_HEX_LEN + 1];
    memset(hex, '#', sizeof(hex));
    ibex_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ibex_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ibex_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* len is honoured: bytes past it and embedded NULs */
    ibex_sha256_hex("abcdef", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char with_nul[IBEX_SHA256_HEX_LEN + 1];
    ibex_sha256_hex("ab\0c", 4, with_nul);
    assert_string_not_equal(with_nul, hex);
    /* the raw digest is the hex, decoded */
    uint8_t d[32];
    ibex_sha256("abc", 3, d);
    assert_int_equal(d[0], 0xba);
    assert_int_equal(d[1], 0x78);
    assert_int_equal(d[31], 0xad);
}

static void test_const_time_eq(void **state)
{
    uint8_t a[64], b[64];
    for (int i = 0; i < 64; i++)
        a[i] = b[i] = (uint8_t)(i * 37);
    assert_true(ibex_const_time_eq(a, b, 64));
    assert_true(ibex_const_time_eq(a, b, 0));
    b[0] ^= 1;
    assert_false(ibex_const_time_eq(a, b, 64));
    assert_true(ibex_const_time_eq(a + 1, b + 1, 63));
    b[0] ^= 1;
    b[63] ^= 0x80;
    assert_false(ibex_const_time_eq(a, b, 64));
    /* only n bytes are compared */
    assert_true(ibex_const_time_eq(a, b, 63));
    assert_true(ibex_const_time_eq("abcX", "abcY", 3));
    assert_false(ibex_const_time_eq("abcX", "abcY", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constants),
        cmocka_unit_test(test_generate_shape),
        cmocka_unit_test(test_generate_unique_and_spread),
        cmocka_unit_test(test_well_formed_lengths),
        cmocka_unit_test(test_well_formed_bad_bytes),
        cmocka_unit_test(test_well_formed_wrong_mark),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_const_time_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
