/* src/core/buf.c: growth, formatted appends, JSON string escaping, consume, steal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <inttypes.h>

#include "../../src/core/buf.h"
#include "testutil.h"

/* The invariant every operation keeps: NUL after the last byte, and room for it. */
static void assert_terminated(const struct ibex_buf *b)
{
    assert_non_null(b->p);
    assert_true(b->len < b->cap);
    assert_int_equal(b->p[b->len], '\0');
}

static void test_init_is_empty(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    ibex_buf_append(&b, "", 0);
    assert_terminated(&b);
    assert_int_equal(b.len, 0);
    ibex_buf_dispose(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_append_grows_and_keeps_bytes(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    /* One byte at a time across many doublings, with embedded NULs. */
    for (size_t i = 0; i < 70000; i++) {
        char c = (char)(i % 251);
        ibex_buf_append(&b, &c, 1);
    }
    assert_int_equal(b.len, 70000);
    assert_terminated(&b);
    for (size_t i = 0; i < 70000; i++)
        assert_int_equal((unsigned char)b.p[i], i % 251);
    /* One append much larger than the capacity. */
    char big[100000];
    memset(big, 'z', sizeof(big));
    ibex_buf_append(&b, big, sizeof(big));
    assert_int_equal(b.len, 170000);
    assert_terminated(&b);
    assert_memory_equal(b.p + 70000, big, sizeof(big));
    assert_int_equal((unsigned char)b.p[69999], 69999 % 251);
    ibex_buf_dispose(&b);
}

static void test_append_cstr_and_str(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "abc");
    ibex_buf_append_str(&b, (struct ibex_str){"defXYZ", 3});
    ibex_buf_append_str(&b, IBEX_STR_NULL);
    assert_string_equal(b.p, "abcdef");
    assert_int_equal(b.len, 6);
    ibex_buf_dispose(&b);
}

static void test_appendf_matches_snprintf_at_every_length(void **state)
{
    /* Prefix and formatted lengths straddle every growth boundary (64, 128, 256...). */
    char arg[600];
    memset(arg, 'x', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = '\0';
    for (size_t prefix = 0; prefix < 140; prefix += 7) {
        for (size_t n = 0; n < 300; n++) {
            struct ibex_buf b;
            ibex_buf_init(&b);
            for (size_t i = 0; i < prefix; i++)
                ibex_buf_append(&b, "p", 1);
            ibex_buf_appendf(&b, "<%.*s|%d>", (int)n, arg, (int)n);
            char want[1024];
            int wn = snprintf(want, sizeof(want), "<%.*s|%d>", (int)n, arg, (int)n);
            assert_int_equal(b.len, prefix + (size_t)wn);
            assert_terminated(&b);
            assert_memory_equal(b.p + prefix, want, (size_t)wn);
            ibex_buf_dispose(&b);
        }
    }
}

static void test_appendf_long_output(void **state)
{
    char arg[5000];
    memset(arg, 'q', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = '\0';
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_appendf(&b, "%s", "head:");
    ibex_buf_appendf(&b, "%s:%s", arg, arg);
    assert_int_equal(b.len, 5 + 2 * 4999 + 1);
    assert_terminated(&b);
    assert_memory_equal(b.p, "head:qqq", 8);
    assert_int_equal(b.p[5 + 4999], ':');
    ibex_buf_dispose(&b);
}

static void test_append_u64(void **state)
{
    const uint64_t vals[] = {0,         1, 9, 10, 99, 100, 4294967295u, 4294967296u, UINT64_MAX - 1,
                             UINT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct ibex_buf b;
        ibex_buf_init(&b);
        ibex_buf_append_cstr(&b, "n=");
        ibex_buf_append_u64(&b, vals[i]);
        char want[32];
        snprintf(want, sizeof(want), "n=%" PRIu64, vals[i]);
        assert_string_equal(b.p, want);
        assert_int_equal(b.len, strlen(want));
        ibex_buf_dispose(&b);
    }
}

/* Escapes s and checks the literal is valid JSON (UTF-8 validated) with no raw control byte. */
static json_object *escape_and_parse(const char *s, size_t len, struct ibex_buf *b)
{
    ibex_buf_init(b);
    ibex_buf_append_json_str(b, s, len);
    assert_terminated(b);
    assert_true(b->len >= 2);
    assert_int_equal(b->p[0], '"');
    assert_int_equal(b->p[b->len - 1], '"');
    for (size_t i = 0; i < b->len; i++)
        assert_true((unsigned char)b->p[i] >= 0x20);
    json_object *o = tu_parse_json(b->p, b->len);
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_string));
    return o;
}

static void assert_roundtrip(const char *s, size_t len)
{
    struct ibex_buf b;
    json_object *o = escape_and_parse(s, len, &b);
    assert_int_equal(json_object_get_string_len(o), len);
    assert_memory_equal(json_object_get_string(o), s, len);
    json_object_put(o);
    ibex_buf_dispose(&b);
}

static void test_json_str_escapes_specials(void **state)
{
    assert_roundtrip("", 0);
    assert_roundtrip("plain text", 10);
    assert_roundtrip("say \"hi\"", 8);
    assert_roundtrip("back\\slash\\", 11);
    assert_roundtrip("a\nb\rc\td", 7);
    assert_roundtrip("/path/</script>", 15);
    /* Every control character, NUL included, survives the round trip. */
    char ctl[32];
    for (int i = 0; i < 32; i++)
        ctl[i] = (char)i;
    assert_roundtrip(ctl, sizeof(ctl));
    assert_roundtrip("\x7f", 1);

    /* The short escapes JSON defines are used for quote, backslash and newline. */
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append_json_str(&b, "\"\\\n", 3);
    assert_string_equal(b.p, "\"\\\"\\\\\\n\"");
    ibex_buf_dispose(&b);
}

static void test_json_str_appends_after_existing(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "{\"k\":");
    ibex_buf_append_json_str(&b, "v\x01", 2);
    ibex_buf_append_cstr(&b, "}");
    json_object *o = tu_parse_json(b.p, b.len);
    assert_non_null(o);
    assert_string_equal(tu_json_str(o, "k"), "v\x01");
    json_object_put(o);
    ibex_buf_dispose(&b);
}

static void test_json_str_keeps_valid_utf8(void **state)
{
    const char *valid[] = {
        "\xC2\x80",         /* U+0080, smallest 2-byte */
        "caf\xC3\xA9",      /* U+00E9 */
        "\xDF\xBF",         /* U+07FF */
        "\xE0\xA0\x80",     /* U+0800, smallest 3-byte */
        "\xE2\x82\xAC",     /* U+20AC euro */
        "\xED\x9F\xBF",     /* U+D7FF, just below the surrogates */
        "\xEE\x80\x80",     /* U+E000, just above them */
        "\xEF\xBF\xBF",     /* U+FFFF */
        "\xF0\x90\x80\x80", /* U+10000, smallest 4-byte */
        "\xF0\x9F\x98\x80", /* U+1F600 emoji */
        "\xF4\x8F\xBF\xBF", /* U+10FFFF, the last code point */
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        struct ibex_buf b;
        ibex_buf_init(&b);
        ibex_buf_append_json_str(&b, valid[i], strlen(valid[i]));
        /* kept byte for byte, not \u-escaped */
        assert_int_equal(b.len, strlen(valid[i]) + 2);
        assert_memory_equal(b.p + 1, valid[i], strlen(valid[i]));
        ibex_buf_dispose(&b);
        assert_roundtrip(valid[i], strlen(valid[i]));
    }
}

#define FFFD "\xEF\xBF\xBD"

static void assert_replaced(const char *in, size_t len, const char *want)
{
    struct ibex_buf b;
    json_object *o = escape_and_parse(in, len, &b);
    assert_string_equal(json_object_get_string(o), want);
    json_object_put(o);
    ibex_buf_dispose(&b);
}

static void test_json_str_replaces_invalid_utf8(void **state)
{
    /* Each invalid byte becomes one U+FFFD; valid neighbours are kept. */
    assert_replaced("\xFF", 1, FFFD);
    assert_replaced("a\xFE"
                    "b",
                    3, "a" FFFD "b");
    assert_replaced("\x80", 1, FFFD);                            /* lone continuation */
    assert_replaced("\xC3", 1, FFFD);                            /* truncated at the end */
    assert_replaced("x\xC3", 2, "x" FFFD);                       /* truncated at the end */
    assert_replaced("\xC0\xAF", 2, FFFD FFFD);                   /* overlong '/' */
    assert_replaced("\xC1\xBF", 2, FFFD FFFD);                   /* overlong */
    assert_replaced("\xE0\x80\xAF", 3, FFFD FFFD FFFD);          /* overlong 3-byte */
    assert_replaced("\xED\xA0\x80", 3, FFFD FFFD FFFD);          /* surrogate U+D800 */
    assert_replaced("\xED\xBF\xBF", 3, FFFD FFFD FFFD);          /* surrogate U+DFFF */
    assert_replaced("\xF0\x80\x80\x80", 4, FFFD FFFD FFFD FFFD); /* overlong 4-byte */
    assert_replaced("\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD); /* above U+10FFFF */
    assert_replaced("\xF5\x80\x80\x80", 4, FFFD FFFD FFFD FFFD);
    assert_replaced("\xE2\x82"
                    "A",
                    3, FFFD FFFD "A"); /* cut short by ASCII */
    assert_replaced("\"\xFF\"", 3, "\"" FFFD "\"");
    assert_replaced("\xC3\xA9\xFF\xC3\xA9", 5, "\xC3\xA9" FFFD "\xC3\xA9");
}

/* What the escaper must write for the lone byte c between ASCII letters. */
static void expected_escape(unsigned char c, struct ibex_buf *want)
{
    char tmp[8];
    if (c >= 0x80)
        ibex_buf_append_cstr(want, FFFD); /* alone, never valid UTF-8 */
    else if (c == '"' || c == '\\')
        ibex_buf_append(want, (char[]){'\\', (char)c}, 2);
    else if (c == '\n' || c == '\r' || c == '\t')
        ibex_buf_append(want, (char[]){'\\', c == '\n' ? 'n' : c == '\r' ? 'r' : 't'}, 2);
    else if (c < 0x20)
        ibex_buf_append(want, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c));
    else
        ibex_buf_append(want, &c, 1);
}

/* The escaper reads 8 bytes at a time: every byte value, at every offset in and around two
 * words and in strings of every length up to three words, must be seen and written as
 * expected_escape says, with the plain bytes around it untouched. */
static void test_json_inner_every_byte_at_every_offset(void **state)
{
    char in[24];
    struct ibex_buf got, want;
    ibex_buf_init(&got);
    ibex_buf_init(&want);
    for (unsigned int c = 0; c < 256; c++) {
        for (size_t len = 1; len <= sizeof(in); len++) {
            for (size_t at = 0; at < len; at++) {
                memset(in, 'a' + (int)(len % 26), len);
                in[at] = (char)c;
                ibex_buf_reset(&got);
                ibex_buf_reset(&want);
                ibex_buf_append_json_inner(&got, in, len);
                ibex_buf_append(&want, in, at);
                expected_escape((unsigned char)c, &want);
                ibex_buf_append(&want, in + at + 1, len - at - 1);
                assert_int_equal(got.len, want.len);
                assert_memory_equal(got.p, want.p, want.len);
                assert_terminated(&got);
            }
        }
    }
    /* A valid sequence across a word boundary is kept whole. */
    for (size_t at = 4; at < 12; at++) {
        memset(in, 'x', sizeof(in));
        memcpy(in + at, "\xF0\x9F\x98\x80", 4);
        ibex_buf_reset(&got);
        ibex_buf_append_json_inner(&got, in, sizeof(in));
        assert_int_equal(got.len, sizeof(in));
        assert_memory_equal(got.p, in, sizeof(in));
    }
    ibex_buf_dispose(&got);
    ibex_buf_dispose(&want);
}

static void test_consume(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append_cstr(&b, "hello world");
    ibex_buf_consume(&b, 0);
    assert_string_equal(b.p, "hello world");
    ibex_buf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.p, "world");
    assert_terminated(&b);
    ibex_buf_append_cstr(&b, "!");
    assert_string_equal(b.p, "world!");
    ibex_buf_consume(&b, 6);
    assert_int_equal(b.len, 0);
    assert_terminated(&b);
    ibex_buf_append_cstr(&b, "xy");
    ibex_buf_consume(&b, 1000);
    assert_int_equal(b.len, 0);
    assert_terminated(&b);
    ibex_buf_append_cstr(&b, "again");
    assert_string_equal(b.p, "again");
    ibex_buf_dispose(&b);
}

static void test_reset_keeps_capacity(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append(&b, "0123456789", 10);
    size_t cap = b.cap;
    ibex_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_terminated(&b);
    ibex_buf_reset(&b);
    ibex_buf_dispose(&b);
    ibex_buf_reset(&b); /* on an empty buffer: no crash */
    assert_int_equal(b.len, 0);
}

static void test_steal(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_buf_append(&b, "ab\0cd", 5);
    size_t len = 0;
    char *p = ibex_buf_steal(&b, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "ab\0cd", 6); /* NUL-terminated as well */
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* The buffer is reusable and independent of the stolen bytes. */
    ibex_buf_append_cstr(&b, "new");
    assert_string_equal(b.p, "new");
    assert_memory_equal(p, "ab\0cd", 6);
    free(p);
    char *q = ibex_buf_steal(&b, NULL);
    assert_string_equal(q, "new");
    free(q);
    ibex_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_grows_and_keeps_bytes),
        cmocka_unit_test(test_append_cstr_and_str),
        cmocka_unit_test(test_appendf_matches_snprintf_at_every_length),
        cmocka_unit_test(test_appendf_long_output),
        cmocka_unit_test(test_append_u64),
        cmocka_unit_test(test_json_str_escapes_specials),
        cmocka_unit_test(test_json_str_appends_after_existing),
        cmocka_unit_test(test_json_str_keeps_valid_utf8),
        cmocka_unit_test(test_json_str_replaces_invalid_utf8),
        cmocka_unit_test(test_json_inner_every_byte_at_every_offset),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_reset_keeps_capacity),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
