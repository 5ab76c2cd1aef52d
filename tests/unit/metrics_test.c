/* src/telemetry/metrics.c: two registered workers record; one render sums them. Metric state is
 * process-wide, so every check compares a render after recording with one taken before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/telemetry/metrics.h"
#include "../../src/upstream/upstream.h"

static const char *const providers[] = {"openai", "local-vllm"};
static struct ibex_metrics *w1, *w2;

static int group_setup(void **state)
{
    ibex_metrics_set_providers(providers, 2);
    w1 = ibex_metrics_register();
    w2 = ibex_metrics_register();
    return w1 && w2 && w1 != w2 ? 0 : -1;
}

static const char *outcome_name(int outcome)
{
    return ibex_upstream_result_name((enum ibex_upstream_result)outcome);
}

static char *render(void)
{
    struct ibex_buf b;
    ibex_buf_init(&b);
    ibex_metrics_render(&b, outcome_name);
    return ibex_buf_steal(&b, NULL);
}

/* The value of the sample whose name and labels are exactly key, or 0 when absent (counters
 * with nothing counted are not rendered). */
static double sample(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    }
    return 0;
}

static bool has_sample(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, key, n) == 0 && l[n] == ' ')
            return true;
    return false;
}

static double delta(const char *before, const char *after, const char *key)
{
    return sample(after, key) - sample(before, key);
}

static void test_request_counters_summed(void **state)
{
    char *before = render();
    for (int i = 0; i < 3; i++)
        ibex_metrics_request(w1, IBEX_ROUTE_CHAT, 200, 100, 1000);
    for (int i = 0; i < 2; i++)
        ibex_metrics_request(w2, IBEX_ROUTE_CHAT, 200, 10, 20);
    ibex_metrics_request(w2, IBEX_ROUTE_CHAT, 429, 1, 2);
    ibex_metrics_request(w1, IBEX_ROUTE_MODELS, 404, 0, 0);
    ibex_metrics_request(w1, IBEX_ROUTE_HEALTH, 418, 0, 0); /* not a tracked status */
    ibex_metrics_request(w2, IBEX_ROUTE_HEALTH, 302, 0, 0);
    char *after = render();
    assert_int_equal(
        delta(before, after, "ibex_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"),
        5);
    assert_int_equal(
        delta(before, after, "ibex_requests_total{route=\"/v1/chat/completions\",status=\"429\"}"),
        1);
    assert_int_equal(
        delta(before, after, "ibex_requests_total{route=\"/v1/models\",status=\"404\"}"), 1);
    assert_int_equal(
        delta(before, after, "ibex_requests_total{route=\"/health\",status=\"other\"}"), 2);
    assert_false(has_sample(after, "ibex_requests_total{route=\"/health\",status=\"418\"}"));
    assert_int_equal(delta(before, after, "ibex_http_bytes_received_total"), 3 * 100 + 2 * 10 + 1);
    assert_int_equal(delta(before, after, "ibex_http_bytes_sent_total"), 3 * 1000 + 2 * 20 + 2);
    /* nothing counted for a route: no sample at all */
    assert_false(has_sample(after, "ibex_requests_total{route=\"/ready\",status=\"200\"}"));
    free(before);
    free(after);
}

/* Usage per provider and per (tenant, agent), summed over the workers; past three quarters of
 * a worker's table, new pairs count as tenant "_other". */
static void test_usage_by_tenant_and_agent(void **state)
{
    char *before = render();
    ibex_metrics_usage(w1, 0, "t-usage", "a1", 100, 20, 3000);
    ibex_metrics_usage(w2, 0, "t-usage", "a1", 50, 5, 1500);
    ibex_metrics_usage(w2, 1, "t-usage", NULL, 7, -1, -1);
    char *after = render();
    const char *pair = "tenant=\"t-usage\",agent=\"a1\"";
    char key[160];
    snprintf(key, sizeof(key), "ibex_usage_requests_total{%s}", pair);
    assert_true(delta(before, after, key) == 2);
    snprintf(key, sizeof(key), "ibex_usage_tokens_total{%s,kind=\"prompt\"}", pair);
    assert_true(delta(before, after, key) == 150);
    snprintf(key, sizeof(key), "ibex_usage_tokens_total{%s,kind=\"completion\"}", pair);
    assert_true(delta(before, after, key) == 25);
    snprintf(key, sizeof(key), "ibex_usage_cost_usd_total{%s}", pair);
    assert_true(fabs(delta(before, after, key) - 4.5e-6) < 1e-12);
    assert_true(delta(before, after,
                      "ibex_usage_tokens_total{tenant=\"t-usage\",agent=\"\",kind=\"prompt\"}") ==
                7);
    assert_true(delta(before, after, "ibex_tokens_total{provider=\"openai\",kind=\"prompt\"}") ==
                150);
    assert_true(delta(before, after, "ibex_cost_usd_total{provider=\"local-vllm\"}") == 0);
    free(after);
    /* fill w1's table: the pairs beyond its bound land in _other */
    char tenant[40];
    for (int i = 0; i < IBEX_METRICS_USAGE_SLOTS; i++) {
        snprintf(tenant, sizeof(tenant), "t-fill-%d", i);
        ibex_metrics_usage(w1, 0, tenant, "a", 1, 1, 0);
    }
    after = render();
    double others = delta(before, after, "ibex_usage_requests_total{tenant=\"_other\",agent=\"\"}");
    assert_true(others > 0 && others < IBEX_METRICS_USAGE_SLOTS / 2);
    assert_true(has_sample(after, "ibex_usage_requests_total{tenant=\"t-fill-0\",agent=\"a\"}"));
    free(before);
    free(after);
}

static void test_gauges_summed(void **state)
{
    char *before = render();
    ibex_metrics_gauge_add(&w1->in_flight, 2);
    ibex_metrics_gauge_add(&w2->in_flight, 3);
    ibex_metrics_gauge_add(&w2->in_flight, -1);
    ibex_metrics_gauge_add(&w1->streams_open, 1);
    ibex_metrics_gauge_add(&w2->streams_open, 1);
    char *after = render();
    assert_int_equal(delta(before, after, "ibex_requests_in_flight"), 4);
    assert_int_equal(delta(before, after, "ibex_streams_open"), 2);
    ibex_metrics_gauge_add(&w1->in_flight, -2);
    ibex_metrics_gauge_add(&w2->in_flight, -2);
    ibex_metrics_gauge_add(&w1->streams_open, -1);
    ibex_metrics_gauge_add(&w2->streams_open, -1);
    char *back = render();
    assert_int_equal(delta(before, back, "ibex_requests_in_flight"), 0);
    assert_int_equal(delta(before, back, "ibex_streams_open"), 0);
    free(before);
    free(after);
    free(back);
}

static void test_upstream_outcomes_by_provider(void **state)
{
    char *before = render();
    ibex_metrics_upstream(w1, 0, IBEX_UPSTREAM_OK, 1000000, 0);
    ibex_metrics_upstream(w2, 0, IBEX_UPSTREAM_OK, 2000000, 0);
    ibex_metrics_upstream(w2, 1, IBEX_UPSTREAM_HEADER_TIMEOUT, 3000000, 0);
    ibex_metrics_upstream(w1, 1, IBEX_UPSTREAM_RESET, 3000000, 0);
    ibex_metrics_upstream(w2, 1, IBEX_UPSTREAM_RESET, 3000000, 0);
    /* out of range: ignored */
    ibex_metrics_upstream(w1, IBEX_METRICS_MAX_PROVIDERS, IBEX_UPSTREAM_OK, 1, 0);
    ibex_metrics_upstream(w1, 0, IBEX_METRICS_NOUTCOME, 1, 0);
    ibex_metrics_upstream(w1, 0, -1, 1, 0);
    char *after = render();
    assert_int_equal(
        delta(before, after, "ibex_upstream_requests_total{provider=\"openai\",outcome=\"ok\"}"),
        2);
    assert_int_equal(delta(before, after,
                           "ibex_upstream_requests_total{provider=\"local-vllm\",outcome=\""
                           "header_timeout\"}"),
                     1);
    assert_int_equal(
        delta(before, after,
              "ibex_upstream_requests_total{provider=\"local-vllm\",outcome=\"reset\"}"),
        2);
    assert_int_equal(
        delta(before, after, "ibex_upstream_duration_seconds_count{provider=\"openai\"}"), 2);
    assert_int_equal(
        delta(before, after, "ibex_upstream_duration_seconds_count{provider=\"local-vllm\"}"), 3);
    free(before);
    free(after);
}

struct bucket {
    double le;
    double count;
};

/* The buckets of one histogram series: prefix is "name_bucket{labels" (no closing brace). */
static size_t buckets(const char *text, const char *prefix, struct bucket *out, size_t cap)
{
    size_t n = 0, plen = strlen(prefix);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, prefix, plen) != 0)
            continue;
        const char *le = l + plen;
        if (*le == ',')
            le++;
        if (strncmp(le, "le=\"", 4) != 0)
            continue;
        assert_true(n < cap);
        out[n].le = strtod(le + 4, NULL);
        const char *sp = strstr(le, "} ");
        assert_non_null(sp);
        out[n].count = strtod(sp + 2, NULL);
        n++;
    }
    return n;
}

/* Checks a histogram series against the observations (seconds) recorded between two renders:
 * each bucket grew by the number of observations <= le, +Inf by all of them and equals
 * _count, buckets are cumulative, and _sum grew by their total. */
static void check_histogram(const char *before, const char *after, const char *name,
                            const char *labels, const double *obs, size_t nobs)
{
    char prefix[256], key[256];
    snprintf(prefix, sizeof(prefix), "%s_bucket{%s", name, labels);
    struct bucket b0[64], b1[64];
    size_t n0 = buckets(before, prefix, b0, 64), n1 = buckets(after, prefix, b1, 64);
    assert_int_equal(n0, n1);
    assert_true(n1 >= 2);
    assert_true(isinf(b1[n1 - 1].le)); /* the last bucket is +Inf */
    double total = 0;
    for (size_t j = 0; j < nobs; j++)
        total += obs[j];
    for (size_t i = 0; i < n1; i++) {
        assert_true(b0[i].le == b1[i].le);
        if (i > 0) {
            assert_true(b1[i].le > b1[i - 1].le);
            assert_true(b1[i].count >= b1[i - 1].count); /* cumulative */
        }
        size_t want = 0;
        for (size_t j = 0; j < nobs; j++)
            want += obs[j] <= b1[i].le;
        if (b1[i].count - b0[i].count != (double)want)
            fail_msg("%s le=%g grew by %g, want %zu", prefix, b1[i].le, b1[i].count - b0[i].count,
                     want);
    }
    snprintf(key, sizeof(key), "%s_count{%s}", name, labels);
    assert_true(sample(after, key) == b1[n1 - 1].count);
    assert_int_equal(delta(before, after, key), nobs);
    snprintf(key, sizeof(key), "%s_sum{%s}", name, labels);
    assert_true(fabs(delta(before, after, key) - total) < 1e-6);
}

static void test_latency_histograms(void **state)
{
    /* seconds; 0.001 sits exactly on a boundary (le is inclusive); 90 s is past every bound */
    const double lat0[] = {0.0003, 0.001, 0.0042, 0.2, 3.0, 90.0};
    const double lat1[] = {0.05};
    const double ttft0[] = {0.0007, 1.5};
    char *before = render();
    for (size_t i = 0; i < 6; i++) {
        struct ibex_metrics *w = i % 2 ? w2 : w1;
        uint64_t ns = (uint64_t)llround(lat0[i] * 1e9);
        uint64_t ttft = i < 2 ? (uint64_t)llround(ttft0[i] * 1e9) : 0; /* 0: not streamed */
        ibex_metrics_upstream(w, 0, IBEX_UPSTREAM_OK, ns, ttft);
    }
    ibex_metrics_upstream(w2, 1, IBEX_UPSTREAM_IDLE_TIMEOUT, 50000000, 0);
    char *after = render();
    check_histogram(before, after, "ibex_upstream_duration_seconds", "provider=\"openai\"", lat0,
                    6);
    check_histogram(before, after, "ibex_upstream_duration_seconds", "provider=\"local-vllm\"",
                    lat1, 1);
    check_histogram(before, after, "ibex_upstream_ttft_seconds", "provider=\"openai\"", ttft0, 2);
    check_histogram(before, after, "ibex_upstream_ttft_seconds", "provider=\"local-vllm\"", NULL,
                    0);
    free(before);
    free(after);
}

static void test_overhead_histogram(void **state)
{
    const double obs[] = {0.000005, 0.00001, 0.00003, 0.0004, 0.02, 0.5};
    char *before = render();
    for (size_t i = 0; i < 6; i++)
        ibex_metrics_overhead(i % 2 ? w2 : w1, (uint64_t)llround(obs[i] * 1e9));
    char *after = render();
    check_histogram(before, after, "ibex_gateway_overhead_seconds", "", obs, 6);
    free(before);
    free(after);
}

/* Every sample belongs to a family declared with # HELP and # TYPE before it. */
static void test_exposition_format(void **state)
{
    ibex_metrics_request(w1, IBEX_ROUTE_METRICS, 200, 1, 1);
    char *text = render();
    char declared[64][96];
    size_t ndecl = 0;
    for (char *l = text; *l;) {
        char *nl = strchr(l, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        *nl = '\0';
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[96], type[32];
            assert_int_equal(sscanf(l + 7, "%95s %31s", name, type), 2);
            assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                        !strcmp(type, "histogram"));
            assert_true(ndecl < 64);
            memcpy(declared[ndecl++], name, sizeof(name));
        } else if (strncmp(l, "# HELP ", 7) == 0) {
            assert_true(strlen(l) > 8);
        } else {
            bool found = false;
            for (size_t i = 0; i < ndecl && !found; i++) {
                size_t dl = strlen(declared[i]);
                if (strncmp(l, declared[i], dl) != 0)
                    continue;
                const char *rest = l + dl;
                static const char *const suffixes[] = {"", "_bucket", "_sum", "_count"};
                for (size_t k = 0; k < 4 && !found; k++) {
                    size_t sl = strlen(suffixes[k]);
                    found =
                        strncmp(rest, suffixes[k], sl) == 0 && (rest[sl] == '{' || rest[sl] == ' ');
                }
            }
            if (!found)
                fail_msg("sample of an undeclared family: %s", l);
            char *sp = strrchr(l, ' ');
            assert_non_null(sp);
            char *end;
            strtod(sp + 1, &end);
            assert_true(end != sp + 1 && *end == '\0');
        }
        l = nl + 1;
    }
    free(text);
    assert_string_equal(ibex_metrics_route_name(IBEX_ROUTE_CHAT), "/v1/chat/completions");
    assert_string_equal(ibex_metrics_route_name(IBEX_ROUTE_OTHER), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_counters_summed),
        cmocka_unit_test(test_gauges_summed),
        cmocka_unit_test(test_usage_by_tenant_and_agent),
        cmocka_unit_test(test_upstream_outcomes_by_provider),
        cmocka_unit_test(test_latency_histograms),
        cmocka_unit_test(test_overhead_histogram),
        cmocka_unit_test(test_exposition_format),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
