/* tests/test_metrics.c — the Prometheus metrics registry (gateway/metrics.c):
 * the text exposition format line by line, cumulative histogram buckets,
 * label validation and escaping, errors, and updates from 4 threads. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "gateway/metrics.h"
#include "testutil.h"

/* The lines of text (modified in place), at most max. */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *p = text; *p && n < max;) {
        char *nl = strchr(p, '\n');
        if (!nl) { lines[n++] = p; break; }
        *nl = 0;
        lines[n++] = p;
        p = nl + 1;
    }
    return n;
}

static int has_line(char **lines, int n, const char *want)
{
    for (int i = 0; i < n; i++)
        if (strcmp(lines[i], want) == 0) return 1;
    return 0;
}

static int index_of(char **lines, int n, const char *want)
{
    for (int i = 0; i < n; i++)
        if (strcmp(lines[i], want) == 0) return i;
    return -1;
}

static void test_format(void)
{
    loom_metrics *m = loom_metrics_new();
    REQUIRE(m);
    CHECK_RC(loom_metrics_counter_add(m, "req_total", "Requests.", "code=\"200\"", 1), 0);
    CHECK_RC(loom_metrics_counter_add(m, "req_total", "ignored later help", "code=\"200\"", 2), 0);
    CHECK_RC(loom_metrics_counter_add(m, "req_total", NULL, "code=\"404\"", 1), 0);
    CHECK_RC(loom_metrics_gauge_set(m, "temp", "A gauge\nwith \\ newline.", NULL, -1.5), 0);
    CHECK_RC(loom_metrics_gauge_add(m, "temp", NULL, NULL, 0.25), 0);
    CHECK_RC(loom_metrics_gauge_set(m, "big", "", NULL, 1e21), 0);
    char *text = NULL;
    size_t len = 0;
    CHECK_RC(loom_metrics_render(m, &text, &len), 0);
    REQUIRE(text);
    CHECK(len == strlen(text));
    CHECK(len > 0 && text[len - 1] == '\n');
    char *lines[64];
    int n = split_lines(text, lines, 64);
    const char *want[] = {
        "# HELP req_total Requests.",
        "# TYPE req_total counter",
        "req_total{code=\"200\"} 3",
        "req_total{code=\"404\"} 1",
        "# HELP temp A gauge\\nwith \\\\ newline.",
        "# TYPE temp gauge",
        "temp -1.25",
        "# HELP big ",
        "# TYPE big gauge",
        "big 1e+21",
    };
    CHECK(n == (int)(sizeof(want) / sizeof(want[0])));
    for (int i = 0; i < n && i < (int)(sizeof(want) / sizeof(want[0])); i++) {
        if (strcmp(lines[i], want[i]) != 0)
            fprintf(stderr, "line %d: got '%s' want '%s'\n", i, lines[i], want[i]);
        CHECK(strcmp(lines[i], want[i]) == 0);
    }
    free(text);
    double v = 0;
    CHECK_RC(loom_metrics_value(m, "req_total", "code=\"200\"", &v), 0);
    CHECK(v == 3);
    CHECK_RC(loom_metrics_value(m, "req_total", "code=\"500\"", &v), LOOM_ENOTFOUND);
    CHECK_RC(loom_metrics_value(m, "nope", NULL, &v), LOOM_ENOTFOUND);
    loom_metrics_free(&m);
    CHECK(m == NULL);
    loom_metrics_free(&m);           /* NULL-safe */
}

static void test_histogram(void)
{
    loom_metrics *m = loom_metrics_new();
    REQUIRE(m);
    const double b[] = { 0.1, 0.5, 1 };
    double obs[] = { 0.05, 0.1, 0.3, 0.7, 2, 5 };
    for (int i = 0; i < 6; i++)
        CHECK_RC(loom_metrics_histogram_observe(m, "lat_seconds", "Latency.", "route=\"x\"", b, 3,
                                                obs[i]), 0);
    /* other buckets for the same family: refused */
    const double b2[] = { 0.1, 0.5 };
    CHECK_RC(loom_metrics_histogram_observe(m, "lat_seconds", NULL, NULL, b2, 2, 1), LOOM_EINVAL);
    /* bad buckets */
    const double bad[] = { 1, 0.5 };
    CHECK_RC(loom_metrics_histogram_observe(m, "h2", NULL, NULL, bad, 2, 1), LOOM_EINVAL);
    const double inf[] = { 1, INFINITY };
    CHECK_RC(loom_metrics_histogram_observe(m, "h2", NULL, NULL, inf, 2, 1), LOOM_EINVAL);
    /* default buckets */
    CHECK_RC(loom_metrics_histogram_observe(m, "d_seconds", "Default.", NULL, NULL, 0, 0.003), 0);
    char *text = NULL;
    CHECK_RC(loom_metrics_render(m, &text, NULL), 0);
    REQUIRE(text);
    char *lines[64];
    int n = split_lines(text, lines, 64);
    CHECK(has_line(lines, n, "# TYPE lat_seconds histogram"));
    int i0 = index_of(lines, n, "lat_seconds_bucket{route=\"x\",le=\"0.1\"} 2");
    CHECK(i0 > 0);
    if (i0 > 0 && i0 + 5 < n) {
        CHECK(strcmp(lines[i0 + 1], "lat_seconds_bucket{route=\"x\",le=\"0.5\"} 3") == 0);
        CHECK(strcmp(lines[i0 + 2], "lat_seconds_bucket{route=\"x\",le=\"1\"} 4") == 0);
        CHECK(strcmp(lines[i0 + 3], "lat_seconds_bucket{route=\"x\",le=\"+Inf\"} 6") == 0);
        CHECK(strcmp(lines[i0 + 4], "lat_seconds_sum{route=\"x\"} 8.15") == 0);
        CHECK(strcmp(lines[i0 + 5], "lat_seconds_count{route=\"x\"} 6") == 0);
    }
    CHECK(has_line(lines, n, "d_seconds_bucket{le=\"0.005\"} 1"));
    CHECK(has_line(lines, n, "d_seconds_bucket{le=\"10\"} 1"));
    CHECK(has_line(lines, n, "d_seconds_bucket{le=\"+Inf\"} 1"));
    CHECK(has_line(lines, n, "d_seconds_count 1"));
    /* cumulative: every bucket line of a series is >= the one before */
    double prev = -1;
    int monotonic = 1;
    for (int i = 0; i < n; i++) {
        if (strncmp(lines[i], "d_seconds_bucket", 16) != 0) continue;
        double v = atof(strrchr(lines[i], ' ') + 1);
        if (v < prev) monotonic = 0;
        prev = v;
    }
    CHECK(monotonic);
    free(text);
    double count = 0;
    CHECK_RC(loom_metrics_value(m, "lat_seconds", "route=\"x\"", &count), 0);
    CHECK(count == 6);
    loom_metrics_free(&m);
}

static void test_labels_and_errors(void)
{
    loom_metrics *m = loom_metrics_new();
    REQUIRE(m);
    char labels[128];
    CHECK_RC(loom_metrics_labels(labels, sizeof labels, "path", "a\"b\\c\nd", "code", "200", NULL), 0);
    CHECK(strcmp(labels, "path=\"a\\\"b\\\\c\\nd\",code=\"200\"") == 0);
    CHECK_RC(loom_metrics_counter_add(m, "esc_total", "Escaped.", labels, 1), 0);
    char *text = NULL;
    CHECK_RC(loom_metrics_render(m, &text, NULL), 0);
    REQUIRE(text);
    CHECK(strstr(text, "esc_total{path=\"a\\\"b\\\\c\\nd\",code=\"200\"} 1\n") != NULL);
    free(text);
    char tiny[8];
    CHECK_RC(loom_metrics_labels(tiny, sizeof tiny, "path", "long value", NULL), LOOM_ETOOBIG);
    CHECK_RC(loom_metrics_labels(labels, sizeof labels, "bad-name", "x", NULL), LOOM_EINVAL);
    CHECK_RC(loom_metrics_labels(labels, sizeof labels, NULL), 0);
    CHECK(labels[0] == 0);

    /* bad names, labels, values, type clashes */
    CHECK_RC(loom_metrics_counter_add(m, "1bad", NULL, NULL, 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "has space", NULL, NULL, 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "ok:colon_total", NULL, NULL, 1), 0);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "code=200", 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "code=\"2\"0\"", 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "code=\"a\nb\"", 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "code=\"x\\q\"", 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "code=\"x\",", 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "a:b=\"x\"", 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, "a=\"x\",b=\"y\"", 1), 0);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, NULL, -1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_counter_add(m, "c_total", NULL, NULL, NAN), LOOM_EINVAL);
    CHECK_RC(loom_metrics_gauge_set(m, "c_total", NULL, NULL, 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_gauge_set(m, "g", NULL, NULL, INFINITY), 0);
    CHECK_RC(loom_metrics_render(m, &text, NULL), 0);
    REQUIRE(text);
    CHECK(strstr(text, "\ng +Inf\n") != NULL);
    free(text);
    CHECK_RC(loom_metrics_counter_add(NULL, "x", NULL, NULL, 1), LOOM_EINVAL);
    CHECK_RC(loom_metrics_render(NULL, &text, NULL), LOOM_EINVAL);

    /* the cardinality bound */
    int rc = 0;
    for (int i = 0; i <= LOOM_METRICS_MAX_SERIES && rc == 0; i++) {
        char l[32];
        snprintf(l, sizeof l, "i=\"%d\"", i);
        rc = loom_metrics_counter_add(m, "many_total", NULL, l, 1);
    }
    CHECK(rc == LOOM_EFULL);
    loom_metrics_free(&m);
}

#define THREADS 4
#define PER_THREAD 20000

static void *hammer(void *arg)
{
    loom_metrics *m = arg;
    const double b[] = { 1, 2 };
    for (int i = 0; i < PER_THREAD; i++) {
        loom_metrics_counter_add(m, "hits_total", "Hits.", i % 2 ? "k=\"odd\"" : "k=\"even\"", 1);
        loom_metrics_gauge_add(m, "level", "Level.", NULL, 1);
        loom_metrics_histogram_observe(m, "obs", "Obs.", NULL, b, 2, (double)(i % 3));
        if (i % 1000 == 0) {
            char *t = NULL;
            if (loom_metrics_render(m, &t, NULL) == 0) free(t);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    loom_metrics *m = loom_metrics_new();
    REQUIRE(m);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&th[i], NULL, hammer, m) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    double odd = 0, even = 0, level = 0, count = 0;
    CHECK_RC(loom_metrics_value(m, "hits_total", "k=\"odd\"", &odd), 0);
    CHECK_RC(loom_metrics_value(m, "hits_total", "k=\"even\"", &even), 0);
    CHECK_RC(loom_metrics_value(m, "level", NULL, &level), 0);
    CHECK_RC(loom_metrics_value(m, "obs", NULL, &count), 0);
    CHECK(odd == THREADS * PER_THREAD / 2);
    CHECK(even == THREADS * PER_THREAD / 2);
    CHECK(level == THREADS * PER_THREAD);
    CHECK(count == THREADS * PER_THREAD);
    char *text = NULL;
    CHECK_RC(loom_metrics_render(m, &text, NULL), 0);
    REQUIRE(text);
    char want[64];
    snprintf(want, sizeof want, "obs_bucket{le=\"+Inf\"} %d\n", THREADS * PER_THREAD);
    CHECK(strstr(text, want) != NULL);
    free(text);
    loom_metrics_free(&m);
}

int main(void)
{
    test_format();
    test_histogram();
    test_labels_and_errors();
    test_threads();
    return TEST_DONE();
}
