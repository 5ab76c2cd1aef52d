/* src/core/json.c: the in-place scanner (whitespace, strings, any value, bounded nesting) and
 * the canonical re-escaping of a string's inside, checked against json-c as ibex_json_parse
 * runs it: whatever the scanner accepts json-c accepts, and decodes to the text that
 * ibex_json_append_canonical writes again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/core/json.h"
#include "../../src/gateway/chat_request.h"
#include "testutil.h"

static size_t skip_at(const char *s, unsigned depth)
{
    return ibex_json_skip_value(s, strlen(s), 0, depth);
}

static void test_skip_ws(void **state)
{
    assert_int_equal(ibex_json_skip_ws(" \t\r\nx", 5, 0), 4);
    assert_int_equal(ibex_json_skip_ws("  ", 2, 0), 2);
    assert_int_equal(ibex_json_skip_ws("\fx", 2, 0), 0); /* not JSON whitespace */
    assert_int_equal(ibex_json_skip_ws("ab", 2, 2), 2);
}

static void test_scan_str(void **state)
{
    bool esc = true;
    assert_int_equal(ibex_json_scan_str("\"abc\",", 6, 0, &esc), 5);
    assert_false(esc);
    assert_int_equal(ibex_json_scan_str("\"\"", 2, 0, &esc), 2);
    assert_false(esc);
    assert_int_equal(ibex_json_scan_str("x\"caf\xc3\xa9\"", 8, 1, &esc), 8);
    assert_false(esc);
    static const char *const good[] = {
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\u00E9\"",
        "\"\\u0000\"",
        "\"\\ud83d\\ude00\"",
        "\"\\uD83D\\uDE00x\"",
        "\"\\uffff\"",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        esc = false;
        assert_int_equal(ibex_json_scan_str(good[i], strlen(good[i]), 0, &esc), strlen(good[i]));
        assert_true(esc);
    }
    static const char *const bad[] = {
        "abc",
        "\"abc",
        "\"a\\\"",
        "\"\\x\"",
        "\"\\'\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\ud83d\"",
        "\"\\ude00\"",
        "\"\\ud83dx\"",
        "\"\\ud83d\\n\"",
        "\"\\ud83d\\u0041\"",
        "\"a\tb\"",
        "\"a\x01\"",
        "\"\\",
        "\"\\u",
        /* UTF-8 as ibex_json_text_invalid_at reads it: truncated, stray, overlong, surrogates */
        "\"\xc3\"",
        "\"\xa9\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xff\"",
        "\"\xe2\x82\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ibex_json_scan_str(bad[i], strlen(bad[i]), 0, NULL) != 0)
            fail_msg("accepted %s", bad[i]);
}

static void test_skip_value(void **state)
{
    static const char *const good[] = {
        "0",
        "-0",
        "12",
        "-1.5e+10",
        "1E2",
        "0.25",
        "99999999999999999999999",
        "1e999",
        "true",
        "false",
        "null",
        "\"s\"",
        "[]",
        "{}",
        "[1, \"a\", [true], {\"k\": null}]",
        "{\"a\" : {\"b\\u0041\": [ {} ]} , \"c\":\t-2}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (skip_at(good[i], 8) != strlen(good[i]))
            fail_msg("did not skip %s", good[i]);
    /* a value ends where the grammar does: what follows is the caller's */
    assert_int_equal(skip_at("01", 8), 1);
    assert_int_equal(skip_at("1x", 8), 1);
    assert_int_equal(skip_at("truex", 8), 4);
    assert_int_equal(skip_at("", 8), 0);
    static const char *const bad[] = {
        "-",   "1.",     ".5",      "+1",        "1.5e",       "NaN",       "Infinity", "tru",
        "nul", "'a'",    "[1,]",    "[1 2]",     "{\"a\":1,}", "{\"a\" 1}", "{a:1}",    "[",
        "{",   "{\"a\"", "{\"a\":", "[\"a\t\"]", "}",          "{,}",       "[,1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (skip_at(bad[i], 8) == strlen(bad[i]))
            fail_msg("skipped %s", bad[i]);
    /* nesting: depth counts the value itself */
    assert_int_equal(skip_at("[[1]]", 2), 5);
    assert_int_equal(skip_at("[[1]]", 1), 0);
    assert_int_equal(skip_at("{\"a\":[{}]}", 3), 10);
    assert_int_equal(skip_at("{\"a\":[{}]}", 2), 0);
    assert_int_equal(skip_at("1", 0), 1);
    assert_int_equal(skip_at("[]", 0), 0);
}

/* Whether s is JSON text json-c takes (strict, as ibex_json_parse runs it). */
static bool json_c_takes(const char *s, size_t len, json_object **out)
{
    char msg[64];
    *out = NULL;
    return ibex_json_parse(s, len, out, msg, sizeof(msg)) == 0;
}

/* What a string literal decodes to in json-c, written as ibex writes text. */
static void json_c_canonical(const char *lit, size_t len, struct ibex_buf *out)
{
    json_object *o;
    if (!json_c_takes(lit, len, &o) || !json_object_is_type(o, json_type_string))
        fail_msg("json-c refused the literal %.*s", (int)len, lit);
    ibex_buf_append_json_inner(out, json_object_get_string(o),
                               (size_t)json_object_get_string_len(o));
    json_object_put(o);
}

static void check_canonical(const char *lit, size_t len)
{
    struct ibex_buf want, got;
    ibex_buf_init(&want);
    ibex_buf_init(&got);
    assert_int_equal(ibex_json_scan_str(lit, len, 0, NULL), len);
    json_c_canonical(lit, len, &want);
    ibex_json_append_canonical(&got, lit + 1, len - 2);
    if (got.len != want.len || (got.len > 0 && memcmp(got.p, want.p, got.len) != 0))
        fail_msg("%.*s: json-c %s, scanner %s", (int)len, lit, want.p, got.p ? got.p : "");
    ibex_buf_dispose(&want);
    ibex_buf_dispose(&got);
}

static void test_canonical_matches_json_c(void **state)
{
    static const char *const lits[] = {
        "\"\"",
        "\"plain text\"",
        "\"\\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
        "\"\\u0000\\u0001\\u001F\\u001f \\u007f\"",
        "\"\\u0022\\u005c\\u002F\\u0009\\u000A\"",
        "\"\\u003cb\\u003e \\u0026 \\u003d \\u0027\"",
        "\"\\u00e9\\u00C9 \\u20ac \\uFFFD \\uffff\"",
        "\"\\ud83d\\ude00 \\uDBFF\\uDFFF \\uD800\\uDC00\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "\"a\\\\\\\\b\\\\\"",
        "\"\\\\u0041\"",
    };
    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++)
        check_canonical(lits[i], strlen(lits[i]));
}

/* Random literals from pieces that stress the escapes: every one the scanner accepts decodes in
 * json-c to what ibex_json_append_canonical writes; every one it refuses is one json-c refuses
 * or one the scanner leaves to it on purpose (a lone surrogate, a raw control). */
static void test_canonical_random(void **state)
{
    static const char *const pieces[] = {
        "a",       " ",       "\\\"",         "\\\\",
        "\\/",     "\\b",     "\\f",          "\\n",
        "\\r",     "\\t",     "\\u0000",      "\\u001f",
        "\\u0041", "\\u00e9", "\\u20AC",      "\\ud83d",
        "\\ude00", "\\uDBFF", "\\u12",        "\\x",
        "\t",      "\x01",    "\xc3\xa9",     "\xf0\x9f\x98\x80",
        "\\",      "\"",      "\\u",          "\\ud83d\\ude00",
        "\xc3",    "\xa9",    "\xed\xa0\x80",
    };
    const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    struct ibex_buf lit;
    ibex_buf_init(&lit);
    size_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        ibex_buf_reset(&lit);
        ibex_buf_append(&lit, "\"", 1);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (size_t)(seed >> 60);
        for (size_t k = 0; k < n; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            ibex_buf_append_cstr(&lit, pieces[(seed >> 33) % npieces]);
        }
        ibex_buf_append(&lit, "\"", 1);
        bool esc;
        if (ibex_json_scan_str(lit.p, lit.len, 0, &esc) == lit.len) {
            accepted++;
            check_canonical(lit.p, lit.len);
            assert_true(esc == (memchr(lit.p, '\\', lit.len) != NULL));
        }
    }
    assert_true(accepted > 1000);
    ibex_buf_dispose(&lit);
}

/* Values the scanner skips are values json-c takes, at every depth it allows. */
static void test_skip_agrees_with_json_c(void **state)
{
    static const char *const values[] = {
        "[1, -0, 2.5e-3, 1E+400, true, false, null, \"\\u00e9\"]",
        "{\"a\": {\"b\": [[], {}], \"c\\\"\": \"d\"}, \"e\": 99999999999999999999}",
        "[[[[[[[[]]]]]]]]",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t len = strlen(values[i]);
        assert_int_equal(skip_at(values[i], 8), len);
        json_object *o;
        assert_true(json_c_takes(values[i], len, &o));
        json_object_put(o);
    }
    assert_int_equal(skip_at("[[[[[[[[[]]]]]]]]]", 8), 0); /* nine deep */
}

/* ibex_json_append writes what json-c's plain serializer writes, for values as ibex_json_parse
 * makes them (numbers keep their text; the scalars take a path of their own) and as ibex code
 * builds them. */
static void test_append_matches_json_c(void **state)
{
    static const char *const values[] = {
        "0",
        "-0",
        "7",
        "-42",
        "9223372036854775806",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "99999999999999999999",
        "0.10",
        "-0.0",
        "1e2",
        "2.5E-3",
        "1E+400",
        "0.2",
        "true",
        "false",
        "null",
        "\"a/b \\u00e9\\n\"",
        "[1, 0.50, {\"k\": false}]",
        "{\"a\": -1.0, \"b\": [], \"c\": \"/\"}",
    };
    json_object *built[] = {json_object_new_double(0.5), json_object_new_double(1.0 / 3),
                            json_object_new_int64(INT64_MIN), json_object_new_uint64(UINT64_MAX),
                            json_object_new_boolean(1)};
    struct ibex_buf got;
    ibex_buf_init(&got);
    const size_t nvalues = sizeof(values) / sizeof(values[0]);
    for (size_t i = 0; i < nvalues + sizeof(built) / sizeof(built[0]); i++) {
        json_object *o = NULL;
        if (i < nvalues)
            assert_true(json_c_takes(values[i], strlen(values[i]), &o));
        else
            o = built[i - nvalues];
        ibex_buf_reset(&got);
        ibex_buf_append_cstr(&got, "<");
        ibex_json_append(&got, o);
        const char *want = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
        if (strlen(want) != got.len - 1 || memcmp(want, got.p + 1, got.len - 1) != 0)
            fail_msg("value %zu: json-c %s, ibex_json_append %s", i, want, got.p + 1);
        json_object_put(o);
    }
    ibex_buf_dispose(&got);
}

/* The cursor: counts as json-c reads them into an int64 (or declined), null, members and
 * elements with their separators, escaped keys declined. */
static void test_cursor(void **state)
{
    static const struct {
        const char *text;
        bool ok;
        int64_t n;
    } counts[] = {
        {"0", true, 0},
        {" 42,", true, 42},
        {"999999999999999999", true, 999999999999999999},
        {"9999999999999999999", false, 0}, /* 19 digits: declined */
        {"01", false, 0},
        {"-1", false, 0},
        {"1.0", false, 0},
        {"1e2", false, 0},
        {"\"1\"", false, 0},
        {"", false, 0},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        struct ibex_json_cursor c = {counts[i].text, strlen(counts[i].text), 0};
        int64_t n = -7;
        if (ibex_json_cur_count(&c, &n) != counts[i].ok)
            fail_msg("count %s", counts[i].text);
        if (counts[i].ok)
            assert_int_equal(n, counts[i].n);
    }
    struct ibex_json_cursor c = {" null", 5, 0};
    assert_true(ibex_json_cur_null(&c));
    assert_true(ibex_json_cur_end(&c));
    c = (struct ibex_json_cursor){"nul", 3, 0};
    assert_false(ibex_json_cur_null(&c));

    const char *obj = "{ \"a\" : [1, {\"b\":2}], \"c\":\"x\\ny\" , \"d\" :null}  ";
    c = (struct ibex_json_cursor){obj, strlen(obj), 0};
    bool first = true, escaped = false, efirst = true;
    struct ibex_str k, v;
    assert_true(ibex_json_cur_ch(&c, '{'));
    assert_int_equal(ibex_json_cur_member(&c, &first, &k), 1);
    assert_true(IBEX_JSON_KEY_IS(k, "a"));
    assert_true(ibex_json_cur_ch(&c, '['));
    assert_int_equal(ibex_json_cur_element(&c, &efirst), 1);
    assert_true(ibex_json_cur_skip(&c, 1));
    assert_int_equal(ibex_json_cur_element(&c, &efirst), 1);
    assert_false(ibex_json_cur_skip(&(struct ibex_json_cursor){c.s, c.len, c.at}, 0)); /* depth */
    assert_true(ibex_json_cur_skip(&c, 1));
    assert_int_equal(ibex_json_cur_element(&c, &efirst), 0);
    assert_int_equal(ibex_json_cur_member(&c, &first, &k), 1);
    assert_true(IBEX_JSON_KEY_IS(k, "c"));
    assert_true(ibex_json_cur_str(&c, &v, &escaped));
    assert_true(escaped);
    assert_int_equal(v.len, 4);
    assert_int_equal(ibex_json_cur_member(&c, &first, &k), 1);
    assert_true(IBEX_JSON_KEY_IS(k, "d"));
    assert_true(ibex_json_cur_null(&c));
    assert_int_equal(ibex_json_cur_member(&c, &first, &k), 0);
    assert_true(ibex_json_cur_end(&c));

    /* a key with an escape, a raw control or a byte above ASCII is left to json-c */
    const char *bad[] = {"{\"a\" 1}", "{\"a\":1 \"b\":2}", "{\"\\u0061\":1}",
                         "{1:2}",     "{\"k\xc3\xa9\":1}", "{\"a\tb\":1}",
                         "{\"ab"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = (struct ibex_json_cursor){bad[i], strlen(bad[i]), 0};
        first = true;
        assert_true(ibex_json_cur_ch(&c, '{'));
        int r = ibex_json_cur_member(&c, &first, &k);
        if (r == 1 && ibex_json_cur_skip(&c, 1))
            r = ibex_json_cur_member(&c, &first, &k);
        if (r != -1)
            fail_msg("%s: member read %d", bad[i], r);
    }
    unsigned seen = 0;
    assert_true(ibex_json_once(&seen, 4));
    assert_false(ibex_json_once(&seen, 4));

    /* peek: the next byte after whitespace, unread; '\0' at the end */
    c = (struct ibex_json_cursor){" \n null", 8, 0};
    assert_int_equal(ibex_json_cur_peek(&c), 'n');
    assert_true(ibex_json_cur_null(&c));
    assert_int_equal(ibex_json_cur_peek(&c), '\0');

    static const char *const keys[] = {"total", "total_tokens", "to"};
    assert_int_equal(ibex_json_key_index((struct ibex_str){"total_tokens", 12}, keys, 3), 1);
    assert_int_equal(ibex_json_key_index((struct ibex_str){"to", 2}, keys, 3), 2);
    assert_int_equal(ibex_json_key_index((struct ibex_str){"tot", 3}, keys, 3), 3);
    assert_int_equal(ibex_json_key_index((struct ibex_str){"total_tokens", 5}, keys, 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_ws),          cmocka_unit_test(test_scan_str),
        cmocka_unit_test(test_skip_value),       cmocka_unit_test(test_canonical_matches_json_c),
        cmocka_unit_test(test_canonical_random), cmocka_unit_test(test_skip_agrees_with_json_c),
        cmocka_unit_test(test_cursor),           cmocka_unit_test(test_append_matches_json_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
