/* bench/tune_search_bench.c — how well loom's search algorithms find the
 * minimum of standard test functions with a fixed number of trials, over many
 * seeds: random search and TPE (tune/search.c) on Branin (2-d, minimum
 * 0.397887) and Hartmann-6 (6-d, minimum -3.32237).  Prints one JSON line per
 * (function, algorithm) with the mean and median best value found, for
 * bench/tune_bench.sh to put beside Optuna's samplers on the same problems.
 *
 *   tune_search_bench [--seeds N (40)] [--trials N (60)] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/loom.h"
#include "tune/search.h"
#include "tune/space.h"

typedef struct problem {
    const char *name, *space;
    double (*f)(const json_t *config);
} problem;

static double param(const json_t *c, const char *k) { return json_number_value(json_object_get(c, k)); }

static double branin(const json_t *c)
{
    const double pi = 3.14159265358979323846;
    double x1 = param(c, "x1"), x2 = param(c, "x2");
    double q = x2 - 5.1 / (4 * pi * pi) * x1 * x1 + 5 / pi * x1 - 6;
    return q * q + 10 * (1 - 1 / (8 * pi)) * cos(x1) + 10;
}

static double hartmann6(const json_t *c)
{
    static const double a[4] = {1.0, 1.2, 3.0, 3.2};
    static const double A[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                   {0.05, 10, 17, 0.1, 8, 14},
                                   {3, 3.5, 1.7, 10, 17, 8},
                                   {17, 8, 0.05, 10, 0.1, 14}};
    static const double P[4][6] = {{1312, 1696, 5569, 124, 8283, 5886},
                                   {2329, 4135, 8307, 3736, 1004, 9991},
                                   {2348, 1451, 3522, 2883, 3047, 6650},
                                   {4047, 8828, 8732, 5743, 1091, 381}};
    double x[6], sum = 0;
    for (int j = 0; j < 6; j++) {
        char k[4] = {'x', (char)('1' + j), 0};
        x[j] = param(c, k);
    }
    for (int i = 0; i < 4; i++) {
        double e = 0;
        for (int j = 0; j < 6; j++) e += A[i][j] * (x[j] - P[i][j] * 1e-4) * (x[j] - P[i][j] * 1e-4);
        sum += a[i] * exp(-e);
    }
    return -sum;
}

static const problem problems[] = {
    {"branin", "{\"x1\": {\"type\": \"uniform\", \"lower\": -5, \"upper\": 10},"
               " \"x2\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 15}}", branin},
    {"hartmann6", "{\"x1\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1},"
                  " \"x2\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1},"
                  " \"x3\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1},"
                  " \"x4\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1},"
                  " \"x5\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1},"
                  " \"x6\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1}}", hartmann6},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Best value found by algo with `trials` trials and this seed. */
static double run_one(const problem *p, const tune_space *space, const char *algo, uint64_t seed, int trials)
{
    char err[256];
    tune_search *s = NULL;
    if (tune_search_new(algo, space, seed, NULL, &s, err, sizeof(err))) {
        fprintf(stderr, "tune_search_bench: %s\n", err);
        exit(1);
    }
    double best = INFINITY;
    for (int i = 0; i < trials; i++) {
        json_t *c = NULL;
        if (tune_search_next(s, i, &c)) break;
        double v = p->f(c);
        tune_search_observe(s, c, v);
        if (v < best) best = v;
        json_decref(c);
    }
    tune_search_destroy(&s);
    return best;
}

int main(int argc, char **argv)
{
    int seeds = 40, trials = 60;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seeds")) seeds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--trials")) trials = atoi(argv[i + 1]);
    }
    if (seeds < 1 || trials < 1) {
        fprintf(stderr, "usage: tune_search_bench [--seeds N] [--trials N]\n");
        return 2;
    }
    const char *algos[] = {"random", "tpe"};
    double *best = malloc(sizeof(double) * (size_t)seeds);
    for (size_t p = 0; p < sizeof(problems) / sizeof(*problems); p++) {
        char err[256];
        json_t *spec = json_loads(problems[p].space, 0, NULL);
        tune_space *space = NULL;
        if (!spec || tune_space_parse(spec, &space, err, sizeof(err))) {
            fprintf(stderr, "tune_search_bench: %s\n", err);
            return 1;
        }
        for (int a = 0; a < 2; a++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            double sum = 0;
            for (int k = 0; k < seeds; k++) sum += best[k] = run_one(&problems[p], space, algos[a], (uint64_t)k + 1, trials);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            qsort(best, (size_t)seeds, sizeof(double), cmp_double);
            double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
            printf("{\"impl\": \"loom\", \"function\": \"%s\", \"algorithm\": \"%s\", \"seeds\": %d, \"trials\": %d, "
                   "\"mean_best\": %.6f, \"median_best\": %.6f, \"suggest_ms\": %.4f}\n",
                   problems[p].name, algos[a], seeds, trials, sum / seeds,
                   seeds % 2 ? best[seeds / 2] : (best[seeds / 2 - 1] + best[seeds / 2]) / 2,
                   ms / ((double)seeds * trials));
        }
        tune_space_destroy(&space);
        json_decref(spec);
    }
    free(best);
    return 0;
}
