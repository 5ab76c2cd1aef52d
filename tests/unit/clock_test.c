/* src/core/clock.c: RFC 3339 formatting of known instants, clock sanity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../src/core/clock.h"

static void assert_rfc3339(uint64_t ms, const char *want)
{
    char out[25];
    memset(out, 'X', sizeof(out));
    ibex_clock_rfc3339(ms, out);
    assert_int_equal(out[24], '\0');
    assert_string_equal(out, want);
}

static void test_rfc3339_known_instants(void **state)
{
    assert_rfc3339(0, "1970-01-01T00:00:00.000Z");
    assert_rfc3339(1, "1970-01-01T00:00:00.001Z");
    assert_rfc3339(999, "1970-01-01T00:00:00.999Z");
    assert_rfc3339(1000, "1970-01-01T00:00:01.000Z");
    assert_rfc3339(1700000000123ull, "2023-11-14T22:13:20.123Z");
    assert_rfc3339(951782400000ull, "2000-02-29T00:00:00.000Z"); /* leap day */
    assert_rfc3339(951868799999ull, "2000-02-29T23:59:59.999Z");
    assert_rfc3339(4102444799999ull, "2099-12-31T23:59:59.999Z"); /* past 2038 */
    assert_rfc3339(253402300799999ull, "9999-12-31T23:59:59.999Z");
}

static void test_rfc3339_matches_gmtime(void **state)
{
    /* A spread of instants against the libc reference. */
    for (uint64_t s = 0; s < 4000000000ull; s += 86399ull * 997ull) {
        uint64_t ms = s * 1000 + s % 1000;
        time_t t = (time_t)s;
        struct tm tm;
        gmtime_r(&t, &tm);
        char date[32], want[64];
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want, sizeof(want), "%s.%03uZ", date, (unsigned)(ms % 1000));
        assert_rfc3339(ms, want);
    }
}

static void test_clocks(void **state)
{
    uint64_t wall = ibex_clock_wall_ms();
    uint64_t now = (uint64_t)time(NULL) * 1000;
    assert_true(wall + 2000 > now && wall < now + 2000);
    uint64_t prev = ibex_clock_mono_ns();
    for (int i = 0; i < 10000; i++) {
        uint64_t t = ibex_clock_mono_ns();
        assert_true(t >= prev);
        prev = t;
    }
    struct timespec ts = {0, 2000000};
    uint64_t a = ibex_clock_mono_ns();
    nanosleep(&ts, NULL);
    assert_true(ibex_clock_mono_ns() - a >= 2000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_known_instants),
        cmocka_unit_test(test_rfc3339_matches_gmtime),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
