/* src/core/str.c: equality, case-insensitive compare, trim, integer parsing, glob prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "../../src/core/str.h"

static struct ibex_str S(const char *s) {
    return ibex_str_from(s);
}

static void
test_from_and_eq(void **state)
{
    assert_int_equal(ibex_str_from(NULL).len, 0);
    assert_int_equal(S("abc").len, 3);
    assert_true(ibex_str_eq(S("abc"), IBEX_STR_LIT("abc")));
    assert_false(ibex_str_eq(S("abc"), S("abd")));
    assert_false(ibex_str_eq(S("abc"), S("ab")));
    assert_false(ibex_str_eq(S("ab"), S("abc")));
    assert_true(ibex_str_eq(IBEX_STR_NULL, S("")));
    assert_false(ibex_str_eq(S("ABC"), S("abc")));
    /* Length-carrying: bytes past len do not count, embedded NULs do. */
    assert_true(ibex_str_eq_cstr((struct ibex_str){"abcdef", 3}, "abc"));
    assert_false(ibex_str_eq_cstr((struct ibex_str){"ab\0", 3}, "ab"));
    assert_true(ibex_str_eq((struct ibex_str){"a\0b", 3}, (struct ibex_str){"a\0bX", 3}));
    assert_false(ibex_str_eq((struct ibex_str){"a\0b", 3}, (struct ibex_str){"a\0c", 3}));
}

static void test_caseeq(void **state)
{
    assert_true(ibex_str_caseeq_cstr(S("Content-Length"), "content-length"));
    assert_true(ibex_str_caseeq_cstr(S("X-REQUEST-ID"), "x-request-id"));
    assert_true(ibex_str_caseeq_cstr(S("x-request-id"), "X-Request-Id"));
    assert_true(ibex_str_caseeq_cstr(S(""), ""));
    assert_false(ibex_str_caseeq_cstr(S("content-length"), "content-lengt"));
    assert_false(ibex_str_caseeq_cstr(S("content-lengt"), "content-length"));
    assert_false(ibex_str_caseeq_cstr(S("abc"), "abd"));
    /* Only ASCII letters fold: '@'/'`', '['/'{', '^'/'~' differ by 0x20 but are not letters. */
    assert_false(ibex_str_caseeq_cstr(S("@"), "`"));
    assert_false(ibex_str_caseeq_cstr(S("["), "{"));
    assert_false(ibex_str_caseeq_cstr(S("^"), "~"));
    assert_false(ibex_str_caseeq_cstr(S("\xC3\xA9"), "\xC3\x89")); /* no UTF-8 folding */
    /* Bytes past len are ignored. */
    assert_true(ibex_str_caseeq_cstr((struct ibex_str){"HostXYZ", 4}, "host"));
}

static void test_has_prefix(void **state)
{
    assert_true(ibex_str_has_prefix(S("Bearer abc"), "Bearer "));
    assert_true(ibex_str_has_prefix(S("abc"), ""));
    assert_true(ibex_str_has_prefix(S("abc"), "abc"));
    assert_false(ibex_str_has_prefix(S("ab"), "abc"));
    assert_false(ibex_str_has_prefix(S("bearer abc"), "Bearer "));
    assert_false(ibex_str_has_prefix((struct ibex_str){"abcdef", 2}, "abc"));
}

static void assert_trim(const char *in, const char *want)
{
    struct ibex_str t = ibex_str_trim(S(in));
    assert_int_equal(t.len, strlen(want));
    assert_memory_equal(t.p, want, t.len);
}

static void test_trim(void **state)
{
    assert_trim("  value  ", "value");
    assert_trim("\t value\t", "value");
    assert_trim("a b\tc", "a b\tc"); /* inner whitespace kept */
    assert_trim("value", "value");
    assert_trim("   ", "");
    assert_trim("\t\t", "");
    assert_trim("", "");
    assert_trim(" x", "x");
    assert_trim("x ", "x");
    /* The result points into the input. */
    const char *in = "  abc ";
    struct ibex_str t = ibex_str_trim(S(in));
    assert_ptr_equal(t.p, in + 2);
    /* Only within len: a trailing space past len is not seen. */
    t = ibex_str_trim((struct ibex_str){" ab cd", 3});
    assert_int_equal(t.len, 2);
    assert_memory_equal(t.p, "ab", 2);
}

static int to_u64(const char *s, uint64_t max, uint64_t *out)
{
    return ibex_str_to_u64(S(s), max, out);
}

static void test_to_u64_accepts(void **state)
{
    uint64_t v = 12345;
    assert_int_equal(to_u64("0", UINT64_MAX, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(to_u64("42", UINT64_MAX, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(to_u64("0042", 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(to_u64("18446744073709551615", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(to_u64("100", 100, &v), 0); /* max itself is allowed */
    assert_int_equal(v, 100);
    assert_int_equal(to_u64("0", 0, &v), 0);
    assert_int_equal(v, 0);
    /* only len bytes are read */
    assert_int_equal(ibex_str_to_u64((struct ibex_str){"12x", 2}, UINT64_MAX, &v), 0);
    assert_int_equal(v, 12);
}

static void test_to_u64_rejects_overflow_and_bounds(void **state)
{
    uint64_t v = 7;
    assert_int_equal(to_u64("18446744073709551616", UINT64_MAX, &v), -1);
    assert_int_equal(to_u64("18446744073709551620", UINT64_MAX, &v), -1);
    assert_int_equal(to_u64("99999999999999999999", UINT64_MAX, &v), -1);
    assert_int_equal(to_u64("184467440737095516150", UINT64_MAX, &v), -1);
    assert_int_equal(to_u64("101", 100, &v), -1);
    assert_int_equal(to_u64("1000", 100, &v), -1);
    assert_int_equal(to_u64("4294967296", 4294967295u, &v), -1);
}

/* A digit larger than a small max (below 9) must be rejected like any larger number.
 * Known bug at the time of writing: (max - d) wraps around when d > max. */
static void test_to_u64_rejects_digit_above_small_max(void **state)
{
    uint64_t v = 0;
    assert_int_equal(to_u64("1", 0, &v), -1);
    assert_int_equal(to_u64("09", 5, &v), -1);
    assert_int_equal(to_u64("9", 5, &v), -1);
    assert_int_equal(to_u64("6", 5, &v), -1);
    assert_int_equal(to_u64("19", 15, &v), -1);
    assert_int_equal(to_u64("5", 5, &v), 0);
    assert_int_equal(v, 5);
}

static void test_to_u64_rejects_garbage(void **state)
{
    uint64_t v = 7;
    const char *bad[] = {"",   "-1",   "+1",  " 1",  "1 ",          "1a",
                         "a1", "0x10", "1.0", "1e3", "\xEF\xBC\x91"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(to_u64(bad[i], UINT64_MAX, &v), -1);
    assert_int_equal(ibex_str_to_u64(IBEX_STR_NULL, UINT64_MAX, &v), -1);
    assert_int_equal(ibex_str_to_u64((struct ibex_str){"1\0002", 3}, UINT64_MAX, &v), -1);
}

static void test_glob_prefix(void **state)
{
    assert_true(ibex_str_glob_prefix(S("X-IBEX-Agent-ID"), "x-ibex-*"));
    assert_true(ibex_str_glob_prefix(S("x-ibex-"), "x-ibex-*"));
    assert_false(ibex_str_glob_prefix(S("x-ibe"), "x-ibex-*"));
    assert_false(ibex_str_glob_prefix(S("y-ibex-a"), "x-ibex-*"));
    assert_true(ibex_str_glob_prefix(S("anything"), "*"));
    assert_true(ibex_str_glob_prefix(S(""), "*"));
    /* without '*': whole-string case-insensitive match */
    assert_true(ibex_str_glob_prefix(S("OpenAI-Organization"), "openai-organization"));
    assert_false(ibex_str_glob_prefix(S("openai-organization-x"), "openai-organization"));
    assert_false(ibex_str_glob_prefix(S("openai-org"), "openai-organization"));
    assert_true(ibex_str_glob_prefix(S(""), ""));
    assert_false(ibex_str_glob_prefix(S("a"), ""));
    /* only a trailing '*' is special */
    assert_false(ibex_str_glob_prefix(S("abc"), "a*c"));
    assert_true(ibex_str_glob_prefix(S("a*c"), "a*c"));
}

static size_t seq_len(const char *s, size_t left)
{
    return ibex_utf8_seq_len((const unsigned char *)s, left);
}

static void test_utf8_seq_len(void **state)
{
    assert_int_equal(seq_len("a", 1), 1);
    assert_int_equal(seq_len("\x7F", 1), 1);
    assert_int_equal(seq_len("\xC2\x80", 2), 2);         /* U+0080 */
    assert_int_equal(seq_len("\xDF\xBF", 2), 2);         /* U+07FF */
    assert_int_equal(seq_len("\xE0\xA0\x80", 3), 3);     /* U+0800 */
    assert_int_equal(seq_len("\xED\x9F\xBF", 3), 3);     /* U+D7FF */
    assert_int_equal(seq_len("\xEE\x80\x80", 3), 3);     /* U+E000 */
    assert_int_equal(seq_len("\xF0\x90\x80\x80", 4), 4); /* U+10000 */
    assert_int_equal(seq_len("\xF4\x8F\xBF\xBF", 4), 4); /* U+10FFFF */
    assert_int_equal(seq_len("\x80", 1), 0);             /* continuation alone */
    assert_int_equal(seq_len("\xC0\xAF", 2), 0);         /* overlong */
    assert_int_equal(seq_len("\xC1\xBF", 2), 0);
    assert_int_equal(seq_len("\xE0\x9F\xBF", 3), 0); /* overlong 3-byte */
    assert_int_equal(seq_len("\xED\xA0\x80", 3), 0); /* surrogates */
    assert_int_equal(seq_len("\xED\xBF\xBF", 3), 0);
    assert_int_equal(seq_len("\xF0\x8F\xBF\xBF", 4), 0); /* overlong 4-byte */
    assert_int_equal(seq_len("\xF4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    assert_int_equal(seq_len("\xF5\x80\x80\x80", 4), 0);
    assert_int_equal(seq_len("\xFF", 1), 0);
    assert_int_equal(seq_len("\xC3\x28", 2), 0);     /* bad continuation */
    assert_int_equal(seq_len("\xE2\x82\xAC", 2), 0); /* cut short by left */
    assert_int_equal(seq_len("\xF0\x9F\x98\x80", 3), 0);
}

static void test_json_text_invalid_at(void **state)
{
    assert_int_equal(ibex_json_text_invalid_at("", 0), 0);
    assert_int_equal(ibex_json_text_invalid_at("plain", 5), 5);
    assert_int_equal(ibex_json_text_invalid_at("caf\xC3\xA9 \xE2\x82\xAC\xF0\x9F\x98\x80", 13), 13);
    assert_int_equal(ibex_json_text_invalid_at("ab\xFF"
                                               "cd",
                                               5),
                     2);
    assert_int_equal(ibex_json_text_invalid_at("\xC3\xA9\xED\xA0\x80", 5), 2);
    assert_int_equal(ibex_json_text_invalid_at("abc\xE2\x82", 5), 3); /* truncated at the end */
    assert_int_equal(ibex_json_text_invalid_at("a\0b", 3), 1); /* a raw NUL is not JSON text */
    assert_int_equal(ibex_json_text_invalid_at("{\t\"a\"\r\n:1}", 10), 10); /* whitespace */
    /* only len bytes are examined */
    assert_int_equal(ibex_json_text_invalid_at("ok\xFF", 2), 2);
}

/* The scan takes eight bytes at a time: a bad byte must be found at every offset of a block,
 * and a valid multi-byte sequence must pass wherever a block boundary cuts it. */
static void test_json_text_invalid_at_every_offset(void **state)
{
    char buf[40];
    static const unsigned char bad[] = {0x00, 0x01, 0x0b, 0x1f, 0x80, 0xFF};
    for (size_t b = 0; b < sizeof(bad); b++) {
        for (size_t pos = 0; pos < 24; pos++) {
            memset(buf, 'x', sizeof(buf));
            buf[pos] = (char)bad[b];
            size_t got = ibex_json_text_invalid_at(buf, 32);
            if (got != pos)
                fail_msg("byte 0x%02x at %zu found at %zu", bad[b], pos, got);
        }
    }
    for (size_t pos = 0; pos < 24; pos++) {
        memset(buf, 'x', sizeof(buf));
        memcpy(buf + pos, "\xF0\x9F\x98\x80", 4); /* U+1F600 across any boundary */
        assert_int_equal(ibex_json_text_invalid_at(buf, 32), 32);
    }
    memset(buf, 'x', sizeof(buf));
    buf[31] = 0x7f; /* DEL is allowed in JSON strings */
    assert_int_equal(ibex_json_text_invalid_at(buf, 32), 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_and_eq),
        cmocka_unit_test(test_caseeq),
        cmocka_unit_test(test_has_prefix),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_to_u64_accepts),
        cmocka_unit_test(test_to_u64_rejects_overflow_and_bounds),
        cmocka_unit_test(test_to_u64_rejects_digit_above_small_max),
        cmocka_unit_test(test_to_u64_rejects_garbage),
        cmocka_unit_test(test_glob_prefix),
        cmocka_unit_test(test_utf8_seq_len),
        cmocka_unit_test(test_json_text_invalid_at),
        cmocka_unit_test(test_json_text_invalid_at_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
