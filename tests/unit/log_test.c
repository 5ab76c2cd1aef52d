/* src/core/log.c: one valid JSON object per line on the configured fd, level filtering,
 * escaping of every string, and the begin/emit pair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>

#include "../../src/core/id.h"
#include "../../src/core/log.h"
#include "testutil.h"

static int fds[2];

static int setup(void **state)
{
    if (pipe2(fds, O_NONBLOCK) != 0)
        return -1;
    ibex_log_set_fd(fds[1]);
    ibex_log_set_level(IBEX_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    ibex_log_set_fd(2);
    ibex_log_set_level(IBEX_LOG_INFO);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

/* Everything written since the last call (the pipe is non-blocking). */
static size_t drain(char *out, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return len;
}

/* Reads exactly one line, checks it is a JSON object, and returns it. */
static json_object *read_one_line(void)
{
    static char buf[65536];
    size_t len = drain(buf, sizeof(buf));
    assert_true(len > 0);
    assert_int_equal(buf[len - 1], '\n');
    assert_ptr_equal(memchr(buf, '\n', len), buf + len - 1); /* exactly one line */
    json_object *o = tu_parse_json(buf, len - 1);
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_object));
    return o;
}

static void assert_ts(json_object *o)
{
    const char *ts = tu_json_str(o, "ts");
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[4], '-');
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
}

static void test_line_fields(void **state)
{
    ibex_log(IBEX_LOG_INFO, "listening", "addr", "127.0.0.1:8080", "workers", "2", NULL);
    json_object *o = read_one_line();
    assert_ts(o);
    assert_string_equal(tu_json_str(o, "level"), "info");
    assert_string_equal(tu_json_str(o, "msg"), "listening");
    assert_string_equal(tu_json_str(o, "addr"), "127.0.0.1:8080");
    assert_string_equal(tu_json_str(o, "workers"), "2");
    assert_int_equal(json_object_object_length(o), 5);
    json_object_put(o);
}

static void test_null_value_and_no_fields(void **state)
{
    ibex_log(IBEX_LOG_WARN, "bare", NULL);
    json_object *o = read_one_line();
    assert_string_equal(tu_json_str(o, "level"), "warn");
    assert_int_equal(json_object_object_length(o), 3);
    json_object_put(o);

    ibex_log(IBEX_LOG_ERROR, "with null", "upstream", (const char *)NULL, NULL);
    o = read_one_line();
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, "upstream", &v));
    assert_null(v); /* JSON null */
    assert_string_equal(tu_json_str(o, "level"), "error");
    json_object_put(o);
}

static void test_strings_escaped(void **state)
{
    const char *nasty = "quote\" backslash\\ newline\n cr\r tab\t bell\x07 nul-free \x1f";
    ibex_log(IBEX_LOG_INFO, "msg with \"quotes\"\nand a newline", "k\"ey\n", nasty, "bad-utf8",
             "\xFF\xC3(", NULL);
    json_object *o = read_one_line();
    assert_string_equal(tu_json_str(o, "msg"), "msg with \"quotes\"\nand a newline");
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, "k\"ey\n", &v));
    assert_string_equal(json_object_get_string(v), nasty);
    /* invalid UTF-8 does not break the line; valid text around it survives */
    const char *bad = tu_json_str(o, "bad-utf8");
    assert_non_null(bad);
    assert_non_null(strstr(bad, "\xEF\xBF\xBD"));
    assert_int_equal(bad[strlen(bad) - 1], '(');
    json_object_put(o);
}

static void test_level_filter(void **state)
{
    char buf[4096];
    ibex_log_set_level(IBEX_LOG_WARN);
    assert_false(ibex_log_enabled(IBEX_LOG_DEBUG));
    assert_false(ibex_log_enabled(IBEX_LOG_INFO));
    assert_true(ibex_log_enabled(IBEX_LOG_WARN));
    assert_true(ibex_log_enabled(IBEX_LOG_ERROR));
    ibex_log(IBEX_LOG_DEBUG, "hidden", NULL);
    ibex_log(IBEX_LOG_INFO, "hidden", NULL);
    assert_int_equal(drain(buf, sizeof(buf)), 0);
    ibex_log(IBEX_LOG_WARN, "shown", NULL);
    json_object *o = read_one_line();
    assert_string_equal(tu_json_str(o, "msg"), "shown");
    json_object_put(o);
    ibex_log(IBEX_LOG_ERROR, "shown too", NULL);
    o = read_one_line();
    assert_string_equal(tu_json_str(o, "level"), "error");
    json_object_put(o);

    ibex_log_set_level(IBEX_LOG_ERROR);
    ibex_log(IBEX_LOG_WARN, "hidden", NULL);
    assert_int_equal(drain(buf, sizeof(buf)), 0);
    ibex_log_set_level(IBEX_LOG_DEBUG);
    ibex_log(IBEX_LOG_DEBUG, "debug shown", NULL);
    o = read_one_line();
    assert_string_equal(tu_json_str(o, "level"), "debug");
    json_object_put(o);
}

static void test_parse_level(void **state)
{
    const enum ibex_log_level levels[] = {IBEX_LOG_DEBUG, IBEX_LOG_INFO, IBEX_LOG_WARN,
                                          IBEX_LOG_ERROR};
    const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        enum ibex_log_level l = IBEX_LOG_ERROR;
        assert_int_equal(ibex_log_parse_level(names[i], &l), 0);
        assert_int_equal(l, levels[i]);
        assert_string_equal(ibex_log_level_name(levels[i]), names[i]);
    }
    enum ibex_log_level l = IBEX_LOG_WARN;
    assert_int_equal(ibex_log_parse_level("verbose", &l), -1);
    assert_int_equal(ibex_log_parse_level("", &l), -1);
    assert_int_equal(ibex_log_parse_level("inf", &l), -1);
    assert_int_equal(ibex_log_parse_level("infos", &l), -1);
    assert_int_equal(l, IBEX_LOG_WARN);
}

static void test_begin_emit(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_log_begin(&b, IBEX_LOG_INFO, "request");
    ibex_buf_appendf(&b, ",\"status\":%d,\"path\":", 200);
    ibex_buf_append_json_str(&b, "/v1/\"x\"", 7);
    ibex_log_emit(&b);
    ibex_buf_dispose(&b);
    json_object *o = read_one_line();
    assert_ts(o);
    assert_string_equal(tu_json_str(o, "msg"), "request");
    assert_string_equal(tu_json_str(o, "path"), "/v1/\"x\"");
    json_object *st = NULL;
    assert_true(json_object_object_get_ex(o, "status", &st));
    assert_int_equal(json_object_get_int(st), 200);
    json_object_put(o);
}

/* The access log's batching: several lines built with begin/end, written at once. */
static void test_batched_lines(void **state)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    for (int i = 0; i < 3; i++) {
        ibex_log_begin(&b, IBEX_LOG_INFO, "request");
        ibex_buf_appendf(&b, ",\"n\":%d", i);
        ibex_log_end(&b);
    }
    ibex_log_write(b.p, b.len);
    ibex_buf_dispose(&b);
    static char buf[8192];
    size_t len = drain(buf, sizeof(buf));
    char *line = buf;
    for (int i = 0; i < 3; i++) {
        char *nl = memchr(line, '\n', len - (size_t)(line - buf));
        assert_non_null(nl);
        json_object *o = tu_parse_json(line, (size_t)(nl - line));
        assert_non_null(o);
        json_object *n = NULL;
        assert_true(json_object_object_get_ex(o, "n", &n));
        assert_int_equal(json_object_get_int(n), i);
        json_object_put(o);
        line = nl + 1;
    }
    assert_ptr_equal(line, buf + len); /* nothing else */
}

/* A long line (bigger than a pipe write might split) is still one intact line. */
static void test_long_line(void **state)
{
    static char val[40000];
    for (size_t i = 0; i < sizeof(val) - 1; i++)
        val[i] = (char)('a' + i % 26);
    val[sizeof(val) - 1] = '\0';
    ibex_log(IBEX_LOG_INFO, "long", "v", val, NULL);
    json_object *o = read_one_line();
    assert_string_equal(tu_json_str(o, "v"), val);
    json_object_put(o);
}

/* A closed fd must not crash or block the caller. */
static void test_unwritable_fd(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    close(p[1]);
    ibex_log_set_fd(p[1]);
    ibex_log(IBEX_LOG_ERROR, "goes nowhere", "k", "v", NULL);
    ibex_log_set_fd(fds[1]);
    ibex_log(IBEX_LOG_INFO, "back", NULL);
    json_object *o = read_one_line();
    assert_string_equal(tu_json_str(o, "msg"), "back");
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_value_and_no_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_emit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_fd, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
