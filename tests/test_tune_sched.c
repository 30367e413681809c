/* tests/test_tune_sched.c — tune/sched.c: the spec parser's refusals and
 * defaults; FIFO (never stops, or stops at max_t); the median stopping rule
 * (stops a clearly bad trial after grace_period and min_samples, never a
 * good one); ASHA rung decisions on hand-computed scenarios, with brackets;
 * synchronous Hyperband (bracket sizes, pause at the milestone, halving,
 * each promoted trial returned once by next_paused, remove() and complete()
 * unblocking a bracket); edge cases (unknown ids, results after a stop,
 * non-increasing t, NaN losses); determinism; and a simulation of ASHA on
 * 81 synthetic learning curves. */
#include <math.h>
#include <stdint.h>
#include "loom/loom.h"
#include "tune/sched.h"
#include "testutil.h"

/* CHECK_RC would need loom_strerror from the runtime library; this test
 * links only tune/sched.c, so return codes are checked with CHECK. */

static int make(const char *spec_text, tune_sched **out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *spec = json_loads(spec_text, 0, &jerr);
    REQUIRE(spec != NULL);
    int rc = tune_sched_new(spec, out, err, errlen);
    json_decref(spec);
    return rc;
}

static tune_sched *must(const char *spec_text)
{
    tune_sched *s = NULL;
    char err[256];
    int rc = make(spec_text, &s, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "spec %s: %s\n", spec_text, err);
    REQUIRE(rc == 0 && s != NULL);
    return s;
}

static void test_spec_errors(void)
{
    static const char *const bad[] = {
        "[]", "{}", "{\"type\": 3}", "{\"type\": \"pbt\"}",
        "{\"type\": \"fifo\", \"grace_period\": 1}",
        "{\"type\": \"fifo\", \"max_t\": \"9\"}",
        "{\"type\": \"fifo\", \"max_t\": 0}",
        "{\"type\": \"fifo\", \"max_t\": -3}",
        "{\"type\": \"median\", \"grace_period\": 0}",
        "{\"type\": \"median\", \"grace_period\": true}",
        "{\"type\": \"median\", \"min_samples\": 0}",
        "{\"type\": \"median\", \"min_samples\": 1.5}",
        "{\"type\": \"median\", \"min_samples\": \"3\"}",
        "{\"type\": \"median\", \"grace_period\": 10, \"max_t\": 5}",
        "{\"type\": \"median\", \"reduction_factor\": 3}",
        "{\"type\": \"asha\", \"max_t\": null}",
        "{\"type\": \"asha\", \"max_t\": -1}",
        "{\"type\": \"asha\", \"grace_period\": -0.5}",
        "{\"type\": \"asha\", \"reduction_factor\": 1}",
        "{\"type\": \"asha\", \"reduction_factor\": 1.5}",
        "{\"type\": \"asha\", \"reduction_factor\": 0}",
        "{\"type\": \"asha\", \"brackets\": 0}",
        "{\"type\": \"asha\", \"brackets\": 2.0}",
        "{\"type\": \"asha\", \"brackets\": 65}",
        "{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 10}",
        "{\"type\": \"asha\", \"min_samples\": 3}",
        "{\"type\": \"hyperband\", \"grace_period\": 1}",
        "{\"type\": \"hyperband\", \"brackets\": 2}",
        "{\"type\": \"hyperband\", \"reduction_factor\": 1}",
        "{\"type\": \"hyperband\", \"max_t\": 0}",
        "{\"type\": \"hyperband\", \"max_t\": [81]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tune_sched *s = (tune_sched *)1;
        char err[256] = "";
        int rc = make(bad[i], &s, err, sizeof err);
        CHECK(rc == LOOM_EINVAL);
        CHECK(s == NULL);
        CHECK(err[0] != '\0');
        if (rc != LOOM_EINVAL)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
    }
    /* the messages name the problem */
    char err[256];
    tune_sched *s = NULL;
    CHECK(make("{\"type\": \"asha\", \"brakets\": 2}", &s, err, sizeof err) == LOOM_EINVAL);
    CHECK(strstr(err, "brakets") != NULL);
    CHECK(make("{\"type\": \"asha\", \"reduction_factor\": 1}", &s, err, sizeof err) == LOOM_EINVAL);
    CHECK(strstr(err, "reduction_factor") != NULL);
    CHECK(make("{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 10}", &s, err, sizeof err) == LOOM_EINVAL);
    CHECK(strstr(err, "grace_period") != NULL && strstr(err, "max_t") != NULL);
    /* no error buffer, and no spec */
    CHECK(make("{\"type\": \"nope\"}", &s, NULL, 0) == LOOM_EINVAL && s == NULL);
    CHECK(tune_sched_new(NULL, &s, err, sizeof err) == LOOM_EINVAL && s == NULL);
    CHECK(tune_sched_new(NULL, NULL, err, sizeof err) == LOOM_EINVAL);
}

static void test_spec_defaults(void)
{
    static const struct { const char *spec, *type; double max_t; } ok[] = {
        {"{\"type\": \"fifo\"}", "fifo", 0},
        {"{\"type\": \"fifo\", \"max_t\": 5}", "fifo", 5},
        {"{\"type\": \"median\"}", "median", 0},
        {"{\"type\": \"median\", \"grace_period\": 2.5, \"min_samples\": 1, \"max_t\": 50}", "median", 50},
        {"{\"type\": \"asha\"}", "asha", 100},
        {"{\"type\": \"asha\", \"max_t\": 81, \"grace_period\": 1, \"reduction_factor\": 3, "
         "\"brackets\": 3}", "asha", 81},
        {"{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 9}", "asha", 9},
        {"{\"type\": \"asha\", \"reduction_factor\": 2.5}", "asha", 100},
        {"{\"type\": \"hyperband\"}", "hyperband", 81},
        {"{\"type\": \"hyperband\", \"max_t\": 27, \"reduction_factor\": 3}", "hyperband", 27},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        tune_sched *s = must(ok[i].spec);
        CHECK(!strcmp(tune_sched_type(s), ok[i].type));
        CHECK(tune_sched_max_t(s) == ok[i].max_t);
        CHECK(tune_sched_stopped(s) == 0);
        CHECK(tune_sched_next_paused(s) == -1);
        tune_sched_destroy(&s);
        CHECK(s == NULL);
    }
    tune_sched_destroy(NULL);
}

static void test_fifo(void)
{
    tune_sched *s = must("{\"type\": \"fifo\"}");
    int stops = 0;
    for (int t = 1; t <= 200; t++)
        for (int64_t id = 0; id < 10; id++)
            stops += tune_sched_result(s, id * 1000003, t, id == 3 ? NAN : 1e6 * (double)id) != TUNE_CONTINUE;
    CHECK(stops == 0 && tune_sched_stopped(s) == 0);
    tune_sched_destroy(&s);

    s = must("{\"type\": \"fifo\", \"max_t\": 5}");
    tune_sched_add(s, 7);
    for (int t = 1; t < 5; t++)
        CHECK(tune_sched_result(s, 7, t, 1.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 7, 5, 1.0) == TUNE_STOP);
    CHECK(tune_sched_result(s, 7, 6, 1.0) == TUNE_STOP);     /* after the stop */
    CHECK(tune_sched_result(s, 8, 12, 1.0) == TUNE_STOP);    /* unknown, past max_t */
    CHECK(tune_sched_stopped(s) == 2);
    tune_sched_destroy(&s);
}

/* Trials 0, 1, 2 report constant losses 1, 2, 3 for t = 1..10 and complete. */
static void median_baseline(tune_sched *s)
{
    for (int64_t id = 0; id < 3; id++) {
        for (int t = 1; t <= 10; t++)
            CHECK(tune_sched_result(s, id, t, 1.0 + (double)id) == TUNE_CONTINUE);
        tune_sched_complete(s, id, 10, 1.0 + (double)id);
    }
}

static void test_median(void)
{
    tune_sched *s = must("{\"type\": \"median\", \"grace_period\": 2}");
    /* fewer than min_samples (3) others: even a bad trial goes on */
    for (int64_t id = 0; id < 2; id++)
        for (int t = 1; t <= 10; t++)
            tune_sched_result(s, id, t, 1.0 + (double)id);
    for (int t = 1; t <= 10; t++)
        CHECK(tune_sched_result(s, 50, t, 100.0) == TUNE_CONTINUE);
    CHECK(tune_sched_stopped(s) == 0);
    tune_sched_destroy(&s);

    s = must("{\"type\": \"median\", \"grace_period\": 2}");
    median_baseline(s);
    /* bad: goes on before grace_period, stops at it (median 2 < 10) */
    CHECK(tune_sched_result(s, 3, 1, 10.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 3, 2, 10.0) == TUNE_STOP);
    CHECK(tune_sched_result(s, 3, 3, 0.0) == TUNE_STOP);
    CHECK(tune_sched_stopped(s) == 1);
    /* good (1.5 < median 2, and < 2.5 while trial 3 counts at t = 2): never stopped */
    for (int t = 1; t <= 10; t++)
        CHECK(tune_sched_result(s, 4, t, 1.5) == TUNE_CONTINUE);
    /* its best loss counts, not its last */
    CHECK(tune_sched_result(s, 5, 1, 5.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 5, 2, 0.5) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 5, 3, 4.0) == TUNE_CONTINUE);
    /* NaN losses are the worst */
    CHECK(tune_sched_result(s, 6, 1, NAN) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 6, 2, NAN) == TUNE_STOP);
    CHECK(tune_sched_stopped(s) == 2);
    tune_sched_destroy(&s);

    /* max_t applies to the median rule too */
    s = must("{\"type\": \"median\", \"max_t\": 4}");
    CHECK(tune_sched_result(s, 1, 3, 1.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 1, 4, 1.0) == TUNE_STOP);
    tune_sched_destroy(&s);
}

/* rf 3, grace 1, max_t 9: rungs at 1 and 3; keep max(1, floor(n/3)). */
static void test_asha_rungs(void)
{
    tune_sched *s = must("{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 1, \"reduction_factor\": 3}");
    CHECK(tune_sched_result(s, 0, 1, 5.0) == TUNE_CONTINUE);   /* n 1: alone */
    CHECK(tune_sched_result(s, 1, 1, 3.0) == TUNE_CONTINUE);   /* n 2, keep 1: best */
    CHECK(tune_sched_result(s, 2, 1, 4.0) == TUNE_STOP);       /* n 3, keep 1: 2nd */
    CHECK(tune_sched_result(s, 3, 1, 6.0) == TUNE_STOP);       /* n 4, keep 1: 4th */
    CHECK(tune_sched_result(s, 4, 1, 1.0) == TUNE_CONTINUE);   /* n 5, keep 1: best */
    CHECK(tune_sched_result(s, 5, 1, 3.5) == TUNE_STOP);       /* n 6, keep 2: 3rd */
    CHECK(tune_sched_result(s, 6, 1, 2.0) == TUNE_CONTINUE);   /* n 7, keep 2: 2nd */
    CHECK(tune_sched_result(s, 0, 2, 9.0) == TUNE_CONTINUE);   /* between rungs */
    CHECK(tune_sched_result(s, 0, 3, 4.0) == TUNE_CONTINUE);   /* rung 3, n 1 */
    CHECK(tune_sched_result(s, 1, 3, 2.0) == TUNE_CONTINUE);   /* n 2: best */
    CHECK(tune_sched_result(s, 4, 3, 4.5) == TUNE_STOP);       /* n 3: 3rd */
    CHECK(tune_sched_result(s, 0, 5, 1.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 0, 9, 1.0) == TUNE_STOP);       /* max_t */
    CHECK(tune_sched_result(s, 2, 2, 0.0) == TUNE_STOP);       /* already stopped */
    CHECK(tune_sched_stopped(s) == 5);
    /* a jump from nothing to t 5 is recorded at rung 3 only (n 4: 4th) */
    CHECK(tune_sched_result(s, 7, 5, 100.0) == TUNE_STOP);
    /* rung 1 still holds 7 losses: n 8, keep 2, 2.5 is 3rd (it would be kept
     * as 3rd of 9 had trial 7 been recorded there too) */
    CHECK(tune_sched_result(s, 8, 1, 2.5) == TUNE_STOP);
    /* ties go on: 1.0 ties the best at rung 1 (n 9, keep 3) */
    CHECK(tune_sched_result(s, 9, 1, 1.0) == TUNE_CONTINUE);
    /* non-increasing t is ignored, a NaN loss is the worst */
    CHECK(tune_sched_result(s, 9, 1, 50.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 9, 0.5, 50.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 9, NAN, 50.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 9, 3, NAN) == TUNE_STOP);       /* rung 3: n 5, keep 1 */
    CHECK(tune_sched_stopped(s) == 8);
    tune_sched_destroy(&s);
}

/* Two brackets: bracket 0 rungs 1 and 3, bracket 1 rung 3; round-robin in
 * order of first appearance, whatever the ids. */
static void test_asha_brackets(void)
{
    tune_sched *s = must("{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 1, "
                         "\"reduction_factor\": 3, \"brackets\": 2}");
    tune_sched_add(s, 700);                                    /* bracket 0 */
    tune_sched_add(s, 12);                                     /* bracket 1 */
    tune_sched_add(s, 700);                                    /* known: no-op */
    CHECK(tune_sched_result(s, 700, 1, 5.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 3, 1, 9.0) == TUNE_STOP);       /* bracket 0, 2nd */
    CHECK(tune_sched_result(s, 12, 1, 100.0) == TUNE_CONTINUE); /* no rung at 1 */
    CHECK(tune_sched_result(s, 40, 1, 200.0) == TUNE_CONTINUE);   /* bracket 1 */
    CHECK(tune_sched_result(s, 12, 3, 7.0) == TUNE_CONTINUE);  /* bracket 1 rung 3, n 1 */
    CHECK(tune_sched_result(s, 40, 3, 8.0) == TUNE_STOP);      /* n 2: 2nd */
    CHECK(tune_sched_result(s, 700, 3, 10.0) == TUNE_CONTINUE); /* bracket 0 rung 3, n 1 */
    CHECK(tune_sched_stopped(s) == 2);
    tune_sched_destroy(&s);

    /* a bracket whose first rung is not below max_t runs to max_t */
    s = must("{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 1, "
             "\"reduction_factor\": 3, \"brackets\": 3}");
    CHECK(tune_sched_result(s, 0, 1, 1.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 1, 1, 1.0) == TUNE_CONTINUE);
    int cont = 0;
    for (int t = 1; t < 9; t++)
        cont += tune_sched_result(s, 2, t, 1e9) == TUNE_CONTINUE;
    CHECK(cont == 8);
    CHECK(tune_sched_result(s, 2, 9, 1e9) == TUNE_STOP);
    tune_sched_destroy(&s);

    /* a completed trial's last result still counts at its rung */
    s = must("{\"type\": \"asha\", \"max_t\": 9, \"grace_period\": 1, \"reduction_factor\": 3}");
    tune_sched_add(s, 0);
    tune_sched_complete(s, 0, 1, 1.0);
    CHECK(tune_sched_result(s, 1, 1, 2.0) == TUNE_STOP);       /* n 2: 2nd */
    CHECK(tune_sched_result(s, 0, 2, 0.0) == TUNE_STOP);       /* completed */
    tune_sched_remove(s, 12345);                               /* unknown: nothing */
    tune_sched_complete(s, 2, NAN, NAN);                       /* nothing recorded */
    CHECK(tune_sched_result(s, 3, 1, 1.5) == TUNE_STOP);       /* n 3: 2nd */
    CHECK(tune_sched_stopped(s) == 2);
    tune_sched_destroy(&s);
}

/* Runs a trial from t = 1 until it is told anything but continue; returns
 * that t (or 0 past limit). */
static int run_until(tune_sched *s, int64_t id, double loss, int limit, tune_decision *last)
{
    for (int t = 1; t <= limit; t++) {
        *last = tune_sched_result(s, id, t, loss);
        if (*last != TUNE_CONTINUE)
            return t;
    }
    return 0;
}

/* max_t 27, rf 3: s_max 3; brackets s = 3, 2, 1, 0 hold ceil(4/(s+1) * 3^s)
 * = 27, 12, 6, 4 trials starting at r = 1, 3, 9, 27; then s = 3 again. */
static void test_hyperband_brackets(void)
{
    tune_sched *s = must("{\"type\": \"hyperband\", \"max_t\": 27, \"reduction_factor\": 3}");
    static const struct { int count, first; } want[] = {{27, 1}, {12, 3}, {6, 9}, {4, 27}, {3, 1}};
    /* added up front, as a sweep should: a bracket halves as soon as all its
     * live trials reached the milestone, full or not */
    for (int64_t id = 1000; id < 1000 + 7 * 52; id += 7)
        tune_sched_add(s, id);
    int64_t id = 1000;
    for (size_t b = 0; b < sizeof want / sizeof want[0]; b++) {
        int right = 0;
        for (int k = 0; k < want[b].count; k++, id += 7) {
            tune_decision d;
            int t = run_until(s, id, 1.0 + (double)k, 30, &d);
            right += t == want[b].first && (want[b].first == 27 ? d == TUNE_STOP : d != TUNE_CONTINUE);
        }
        CHECK(right == want[b].count);
        if (right != want[b].count)
            fprintf(stderr, "  bracket %zu: %d of %d trials stopped first at %d\n", b, right,
                    want[b].count, want[b].first);
    }
    /* every bracket halved when its last trial paused: s = 3 keeps 9 of 27,
     * s = 2 keeps 4 of 12, s = 1 keeps 2 of 6; s = 0 stopped its 4 at max_t;
     * the second s = 3 holds only the last 3 added and keeps 1 */
    CHECK(tune_sched_stopped(s) == 18 + 8 + 4 + 4 + 2);
    int resumed = 0;
    while (tune_sched_next_paused(s) >= 0)
        resumed++;
    CHECK(resumed == 9 + 4 + 2 + 1);
    tune_sched_destroy(&s);

    /* max_t 9, rf 3: 9, 5 (ceil 4.5), 3 */
    s = must("{\"type\": \"hyperband\", \"max_t\": 9}");
    int firsts[18];
    for (int k = 0; k < 18; k++)
        tune_sched_add(s, k);
    for (int k = 0; k < 18; k++) {
        tune_decision d;
        firsts[k] = run_until(s, k, 1.0, 10, &d);
    }
    CHECK(firsts[0] == 1 && firsts[8] == 1 && firsts[9] == 3 && firsts[13] == 3);
    CHECK(firsts[14] == 9 && firsts[16] == 9 && firsts[17] == 1);
    tune_sched_destroy(&s);
}

static void test_hyperband_halving(void)
{
    tune_sched *s = must("{\"type\": \"hyperband\", \"max_t\": 9, \"reduction_factor\": 3}");
    static const double loss[9] = {5, 3, 8, 1, 9, 2, 7, 4, 6};
    int64_t id[9];
    for (int k = 0; k < 9; k++) {
        id[k] = 900 - 10 * k;
        tune_sched_add(s, id[k]);
    }
    /* all but the last pause at milestone 1 and wait */
    for (int k = 0; k < 8; k++)
        CHECK(tune_sched_result(s, id[k], 1, loss[k]) == TUNE_PAUSE);
    CHECK(tune_sched_next_paused(s) == -1);
    CHECK(tune_sched_result(s, id[0], 2, 0.0) == TUNE_PAUSE);   /* paused: still */
    CHECK(tune_sched_stopped(s) == 0);
    /* the last one completes the halving; it loses (6 is 6th) */
    CHECK(tune_sched_result(s, id[8], 1, loss[8]) == TUNE_STOP);
    CHECK(tune_sched_stopped(s) == 6);
    /* floor(9/3) = 3 go on, best first, each once */
    CHECK(tune_sched_next_paused(s) == id[3]);
    CHECK(tune_sched_next_paused(s) == id[5]);
    CHECK(tune_sched_next_paused(s) == id[1]);
    CHECK(tune_sched_next_paused(s) == -1);
    CHECK(tune_sched_result(s, id[0], 2, 0.0) == TUNE_STOP);    /* a loser */
    /* the three go on to milestone 3 */
    CHECK(tune_sched_result(s, id[3], 2, 0.9) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, id[3], 3, 0.8) == TUNE_PAUSE);
    CHECK(tune_sched_result(s, id[3], 4, 0.1) == TUNE_PAUSE);
    CHECK(tune_sched_result(s, id[5], 3, 0.5) == TUNE_PAUSE);
    CHECK(tune_sched_result(s, id[1], 2, 0.1) == TUNE_CONTINUE);
    CHECK(tune_sched_next_paused(s) == -1);
    /* removing the last running one unblocks the bracket: max(1, floor(2/3)) */
    tune_sched_remove(s, id[1]);
    CHECK(tune_sched_stopped(s) == 7);
    CHECK(tune_sched_next_paused(s) == id[5]);
    CHECK(tune_sched_next_paused(s) == -1);
    CHECK(tune_sched_result(s, id[3], 5, 0.0) == TUNE_STOP);
    CHECK(tune_sched_result(s, id[1], 3, 0.0) == TUNE_STOP);    /* removed */
    int cont = 0;
    for (int t = 4; t < 9; t++)
        cont += tune_sched_result(s, id[5], t, 0.4) == TUNE_CONTINUE;
    CHECK(cont == 5);
    CHECK(tune_sched_result(s, id[5], 9, 0.3) == TUNE_STOP);    /* max_t */
    CHECK(tune_sched_stopped(s) == 8);
    /* the next bracket (s = 1, r 3) does not wait to be full: a lone trial
     * halves with itself and goes on; the bracket then takes no more */
    CHECK(tune_sched_result(s, 5000, 2, 1.0) == TUNE_CONTINUE);
    CHECK(tune_sched_result(s, 5000, 3, 1.0) == TUNE_PAUSE);
    CHECK(tune_sched_next_paused(s) == 5000);
    CHECK(tune_sched_result(s, 5001, 3, 1.0) == TUNE_CONTINUE);  /* s = 0: r 9 */
    CHECK(tune_sched_result(s, 5001, 9, 1.0) == TUNE_STOP);
    tune_sched_destroy(&s);
}

/* complete() and remove() of a trial that never reported count as reached;
 * a promoted trial that reports before next_paused counts as resumed, and
 * one removed before its turn is not returned. */
static void test_hyperband_unblock(void)
{
    tune_sched *s = must("{\"type\": \"hyperband\", \"max_t\": 9}");
    for (int64_t k = 0; k < 9; k++)
        tune_sched_add(s, k);
    for (int64_t k = 0; k < 8; k++)
        CHECK(tune_sched_result(s, k, 1, 10.0 - (double)k) == TUNE_PAUSE);
    tune_sched_complete(s, 8, NAN, NAN);
    CHECK(tune_sched_stopped(s) == 6);                         /* floor(8/3) = 2 go on: 7, 6 */
    CHECK(tune_sched_result(s, 6, 2, 1.0) == TUNE_CONTINUE);   /* resumed by itself */
    tune_sched_remove(s, 7);                                   /* removed before its turn */
    CHECK(tune_sched_next_paused(s) == -1);
    CHECK(tune_sched_stopped(s) == 6);
    tune_sched_destroy(&s);

    s = must("{\"type\": \"hyperband\", \"max_t\": 9}");
    for (int64_t k = 0; k < 9; k++)
        tune_sched_add(s, k);
    for (int64_t k = 1; k < 9; k++)
        CHECK(tune_sched_result(s, k, 1, (double)k) == TUNE_PAUSE);
    CHECK(tune_sched_next_paused(s) == -1);
    tune_sched_remove(s, 0);                                   /* never started */
    CHECK(tune_sched_next_paused(s) == 1);
    CHECK(tune_sched_next_paused(s) == 2);
    CHECK(tune_sched_next_paused(s) == -1);
    /* the other one removed while running: the lone paused one goes on */
    CHECK(tune_sched_result(s, 1, 3, 0.0) == TUNE_PAUSE);
    tune_sched_remove(s, 2);
    CHECK(tune_sched_next_paused(s) == 1);
    CHECK(tune_sched_stopped(s) == 6);
    tune_sched_destroy(&s);
}

/* A fixed pseudo-random sequence of calls on 24 ids. */
typedef struct lcg { uint64_t x; } lcg;

static uint32_t lcg_next(lcg *g)
{
    g->x = g->x * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g->x >> 33);
}

static void test_determinism(void)
{
    static const char *const specs[] = {
        "{\"type\": \"fifo\", \"max_t\": 20}",
        "{\"type\": \"median\", \"min_samples\": 2}",
        "{\"type\": \"asha\", \"max_t\": 27, \"brackets\": 3}",
        "{\"type\": \"hyperband\", \"max_t\": 27}",
    };
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        tune_sched *a = must(specs[k]), *b = must(specs[k]);
        lcg g = {k + 1};
        double t[24] = {0};
        int differ = 0, nontrivial = 0;
        for (int step = 0; step < 4000; step++) {
            uint32_t r = lcg_next(&g);
            int64_t id = (int64_t)(r % 24) * 977;
            double *tp = &t[r % 24];
            uint32_t op = (r >> 8) % 100;
            if (op < 85) {
                *tp += (r >> 16) % 4 == 0 ? 0 : 1;   /* sometimes not increasing */
                double loss = (r >> 20) % 50 == 0 ? NAN : (double)((r >> 12) % 97) / *tp;
                tune_decision da = tune_sched_result(a, id, *tp, loss);
                tune_decision db = tune_sched_result(b, id, *tp, loss);
                differ += da != db;
                nontrivial += da != TUNE_CONTINUE;
            } else if (op < 90) {
                tune_sched_complete(a, id, *tp, 1.0);
                tune_sched_complete(b, id, *tp, 1.0);
            } else if (op < 93) {
                tune_sched_remove(a, id);
                tune_sched_remove(b, id);
            } else {
                differ += tune_sched_next_paused(a) != tune_sched_next_paused(b);
            }
        }
        CHECK(differ == 0);
        CHECK(tune_sched_stopped(a) == tune_sched_stopped(b));
        CHECK(k == 0 || nontrivial > 0);
        tune_sched_destroy(&a);
        tune_sched_destroy(&b);
    }
}

/* 81 trials with loss(t) = a_i + b_i / t, distinct a_i, run one after the
 * other under ASHA (max_t 27, rf 3, grace 1), each until it is stopped. */
static void test_asha_simulation(void)
{
    enum { N = 81, MAX_T = 27 };
    tune_sched *s = must("{\"type\": \"asha\", \"max_t\": 27, \"grace_period\": 1, \"reduction_factor\": 3}");
    double a[N], b[N];
    int best = 0;
    for (int i = 0; i < N; i++) {
        /* a permutation of k/81 (the best is trial 23, so the rungs already
         * hold others when it comes) and slopes that make curves cross */
        a[i] = (double)((i * 37 + 40) % N) / N;
        b[i] = 0.2 + 0.8 * (double)((i * 53) % N) / N;
        if (a[i] < a[best])
            best = i;
    }
    int reached[N];
    long used = 0;
    int full = 0;
    for (int i = 0; i < N; i++) {
        tune_sched_add(s, i);
        reached[i] = MAX_T;
        for (int t = 1; t <= MAX_T; t++) {
            if (tune_sched_result(s, i, t, a[i] + b[i] / t) != TUNE_CONTINUE) {
                reached[i] = t;
                break;
            }
        }
        used += reached[i];
        full += reached[i] == MAX_T;
    }
    printf("asha simulation: %d trials, best a (trial %d) ran to t=%d, %d ran to max_t, "
           "resource %ld of %d (%.1f%%), stopped %lld\n",
           N, best, reached[best], full, used, N * MAX_T, 100.0 * (double)used / (N * MAX_T),
           (long long)tune_sched_stopped(s));
    CHECK(reached[best] == MAX_T);
    CHECK(used < N * MAX_T / 3);
    CHECK(tune_sched_stopped(s) == N);                   /* everyone stopped, max_t included */
    tune_sched_destroy(&s);
}

int main(void)
{
    test_spec_errors();
    test_spec_defaults();
    test_fifo();
    test_median();
    test_asha_rungs();
    test_asha_brackets();
    test_hyperband_brackets();
    test_hyperband_halving();
    test_hyperband_unblock();
    test_determinism();
    test_asha_simulation();
    return TEST_DONE();
}
