/* tune/search.c — search algorithms (tune/search.h): which config trial
 * `index` gets under grid, random or TPE search.
 *
 * Every draw for trial `index` comes from a generator seeded with
 * tune_rng_mix(seed, index, stream), so a config depends only on the seed,
 * the index, the space and (TPE) the observations made so far — never on
 * the order in which indices are asked for.
 *
 * TPE (Bergstra et al., "Algorithms for Hyper-Parameter Optimization", 2011)
 * keeps every finite (config, loss) observation.  For a new trial it splits
 * them into the best gamma fraction ("good") and the rest ("bad"), fits per
 * parameter a density l(x) to the good values and g(x) to the bad ones, draws
 * n_candidates configs from l and returns the one maximising
 * Σ_params log l(x) − log g(x).  Numeric parameters use Parzen windows:
 * Gaussians truncated to the bounds, centred on the observed values (log
 * values for log kinds) with widths from the gaps to their neighbours, plus a
 * wide prior component over the whole range; quantized and integer kinds are
 * scored by the mass of their bucket.  Categorical parameters (choice, grid)
 * use category counts smoothed by a prior weight. */
#include "tune/search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "tune/util.h"

/* Generator streams of one trial index. */
enum { STREAM_SAMPLE = 0, STREAM_TPE = 1, STREAM_SHUFFLE = 2 };
#define GRID_SHUFFLE_MAX (1 << 22)

#define TPE_PRIOR_WEIGHT 1.0      /* weight of the prior among the kernels */
#define TPE_MAX_SIGMA_STEPS 100.0 /* narrowest kernel: range / this */
#define TPE_LOG_FLOOR (-1000.0)   /* log of a density or mass that underflows */
#define TPE_MAX_CANDIDATES 100000
#define TPE_MAX_REJECTIONS 64

typedef enum { ALGO_GRID, ALGO_RANDOM, ALGO_TPE } search_algo;

struct tune_search {
    search_algo algo;
    const tune_space *space;
    uint64_t seed;
    int64_t grid_size, num_samples; /* grid */
    int shuffle;                    /* grid: each round in a seeded order */
    int64_t *perm, perm_round;      /* the order of round perm_round */
    int n_startup, n_candidates;    /* tpe */
    double gamma;
    /* Observations with a finite loss, in the order made: loss[i], and
     * coord[i * nparams + j] = param j's value in TPE coordinates (see
     * axis), NaN when the config lacks it. */
    size_t nobs, cap;
    double *loss;
    double *coord;
};

/* ---- options ------------------------------------------------------------ */

static int check_option_keys(const char *algo, const json_t *options,
                             const char *const *allowed, char *err, size_t errlen)
{
    const char *key = tune_unknown_key(options, allowed);
    return key ? tune_fail(err, errlen, "%s search: unknown option '%s'", algo, key) : 0;
}

/* An integer option in [min, max]; absent leaves *out as it is. */
static int int_option(const char *algo, const json_t *options, const char *key,
                      int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(options, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        return tune_fail(err, errlen, "%s search: option '%s' must be an integer in [%lld, %lld]",
                         algo, key, (long long)min, (long long)max);
    }
    *out = json_integer_value(v);
    return 0;
}

static int grid_options(tune_search *s, const json_t *options, char *err, size_t errlen)
{
    static const char *const allowed[] = {"num_samples", "shuffle", NULL};
    int rc = check_option_keys("grid", options, allowed, err, errlen);
    if (rc)
        return rc;
    json_t *sh = json_object_get(options, "shuffle");
    if (sh && !json_is_boolean(sh))
        return tune_fail(err, errlen, "grid search: option 'shuffle' must be true or false");
    s->shuffle = json_is_true(sh);
    s->perm_round = -1;
    if (s->shuffle && tune_space_grid_size(s->space) > GRID_SHUFFLE_MAX)
        return tune_fail(err, errlen, "grid search: 'shuffle' takes grids of at most %d points",
                         GRID_SHUFFLE_MAX);
    s->num_samples = 1;
    s->grid_size = tune_space_grid_size(s->space);
    return int_option("grid", options, "num_samples", 1, INT64_MAX / s->grid_size,
                      &s->num_samples, err, errlen);
}

static int tpe_options(tune_search *s, const json_t *options, char *err, size_t errlen)
{
    static const char *const allowed[] = {"n_startup", "n_candidates", "gamma", NULL};
    int64_t n_startup = 10, n_candidates = 24;
    int rc = check_option_keys("tpe", options, allowed, err, errlen);
    if (rc ||
        (rc = int_option("tpe", options, "n_startup", 0, INT32_MAX, &n_startup, err, errlen)) ||
        (rc = int_option("tpe", options, "n_candidates", 1, TPE_MAX_CANDIDATES,
                         &n_candidates, err, errlen)))
        return rc;
    s->n_startup = (int)n_startup;
    s->n_candidates = (int)n_candidates;
    s->gamma = 0.25;
    json_t *g = json_object_get(options, "gamma");
    if (g) {
        if (!json_is_number(g) || !(json_number_value(g) > 0 && json_number_value(g) < 1))
            return tune_fail(err, errlen, "tpe search: option 'gamma' must be a number in (0, 1)");
        s->gamma = json_number_value(g);
    }
    return 0;
}

static int parse_algo(const char *algo, search_algo *out)
{
    if (!strcmp(algo, "grid"))
        *out = ALGO_GRID;
    else if (!strcmp(algo, "random"))
        *out = ALGO_RANDOM;
    else if (!strcmp(algo, "tpe"))
        *out = ALGO_TPE;
    else
        return -1;
    return 0;
}

int tune_search_new(const char *algo, const tune_space *space, uint64_t seed,
                    const json_t *options, tune_search **out, char *err, size_t errlen)
{
    if (!out || !space || !algo)
        return tune_fail(err, errlen, "a search needs an algorithm, a space and an output");
    *out = NULL;
    search_algo a;
    if (parse_algo(algo, &a) < 0)
        return tune_fail(err, errlen, "unknown search algorithm '%s' (grid, random or tpe)", algo);
    if (json_is_null(options))
        options = NULL;
    if (options && !json_is_object(options))
        return tune_fail(err, errlen, "%s search: options must be a JSON object", algo);
    tune_search *s = calloc(1, sizeof *s);
    if (!s)
        return LOOM_ENOMEM;
    s->algo = a;
    s->space = space;
    s->seed = seed;
    static const char *const none[] = {NULL};
    int rc = a == ALGO_GRID ? grid_options(s, options, err, errlen)
           : a == ALGO_TPE  ? tpe_options(s, options, err, errlen)
                            : check_option_keys(algo, options, none, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void tune_search_destroy(tune_search **sp)
{
    if (!sp || !*sp)
        return;
    free((*sp)->loss);
    free((*sp)->coord);
    free((*sp)->perm);
    free(*sp);
    *sp = NULL;
}

int64_t tune_search_total(const tune_search *s)
{
    return s->algo == ALGO_GRID ? s->grid_size * s->num_samples : -1;
}

/* ---- TPE coordinates ----------------------------------------------------- */

/* How TPE sees one parameter.  Numeric kinds live on a line y (log x for log
 * kinds) whose prior range is [lo, hi]; quantized and integer kinds have
 * buckets of half-width `half` around each value (in x).  Choice and grid are
 * categories 0 .. ncat-1; constants are skipped. */
typedef struct axis {
    int skip, categorical, log;
    size_t ncat;
    double lo, hi, half;
} axis;

static axis axis_of(const tune_param *p)
{
    axis a = {0};
    switch (p->kind) {
    case TUNE_CONST: a.skip = 1; break;
    case TUNE_CHOICE:
    case TUNE_GRID:
        a.categorical = 1;
        a.ncat = json_array_size(p->values);
        break;
    case TUNE_UNIFORM:
    case TUNE_QUNIFORM:
        a.lo = p->lower;
        a.hi = p->upper;
        a.half = p->q / 2;
        break;
    case TUNE_LOGUNIFORM:
    case TUNE_QLOGUNIFORM:
        a.log = 1;
        a.lo = log(p->lower);
        a.hi = log(p->upper);
        a.half = p->q / 2;
        break;
    case TUNE_RANDINT:
        a.lo = p->lower - 0.5;
        a.hi = p->upper - 0.5;
        a.half = 0.5;
        break;
    case TUNE_QRANDINT:
        a.half = p->q / 2;
        a.lo = tune_param_quantize(p, p->lower) - a.half;
        a.hi = tune_param_quantize(p, p->upper) + a.half;
        break;
    }
    return a;
}

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

static double category_of(const tune_param *p, const json_t *v)
{
    for (size_t i = 0; i < json_array_size(p->values); i++)
        if (json_equal(json_array_get(p->values, i), (json_t *)v))
            return (double)i;
    return NAN;
}

/* Param p's value v of an observed config as a TPE coordinate (NaN: none). */
static double coord_of(const tune_param *p, const json_t *v)
{
    axis a = axis_of(p);
    if (a.skip || !v)
        return NAN;
    if (a.categorical)
        return category_of(p, v);
    if (!json_is_number(v))
        return NAN;
    double x = json_number_value(v);
    if (a.log)
        x = x > 0 ? log(x) : NAN;
    return isfinite(x) ? clamp(x, a.lo, a.hi) : NAN;
}

static int grow_observations(tune_search *s, int nparams)
{
    if (s->nobs < s->cap)
        return 0;
    size_t cap = s->cap ? 2 * s->cap : 16;
    double *loss = realloc(s->loss, cap * sizeof *loss);
    if (!loss)
        return LOOM_ENOMEM;
    s->loss = loss;
    double *coord = realloc(s->coord, cap * (size_t)(nparams ? nparams : 1) * sizeof *coord);
    if (!coord)
        return LOOM_ENOMEM;
    s->coord = coord;
    s->cap = cap;
    return 0;
}

void tune_search_observe(tune_search *s, const json_t *config, double loss)
{
    if (!s || !json_is_object(config) || !isfinite(loss))
        return;
    int np = s->space->nparams;
    if (grow_observations(s, np))
        return; /* out of memory: the observation is lost, the search goes on */
    double *row = s->coord + s->nobs * (size_t)np;
    for (int j = 0; j < np; j++) {
        const tune_param *p = &s->space->params[j];
        row[j] = coord_of(p, json_object_get(config, p->name));
    }
    s->loss[s->nobs++] = loss;
}

/* ---- Parzen estimator ---------------------------------------------------- */

/* A mixture of Gaussians truncated to [lo, hi]: kernel k has centre mu[k],
 * width sigma[k], log weight logw[k] and log truncation mass logz[k]. */
typedef struct parzen {
    int n;
    double lo, hi;
    double *mu, *sigma, *logw, *logz;
} parzen;

static double upper_tail(double z) /* P(Z > z) */
{
    return 0.5 * erfc(z / M_SQRT2);
}

/* P(za < Z < zb) for a standard normal Z, accurate in both tails. */
static double normal_mass(double za, double zb)
{
    if (za >= 0)
        return upper_tail(za) - upper_tail(zb);
    if (zb <= 0)
        return upper_tail(-zb) - upper_tail(-za);
    return 1 - upper_tail(-za) - upper_tail(zb);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Widths from the gaps to the neighbours (the larger of the two), clipped to
 * [range / min(100, n + 1), range]; the prior keeps the whole range. */
static void parzen_widths(parzen *pz, int prior, int nobs)
{
    double range = pz->hi - pz->lo;
    double minsigma = range / fmin(TPE_MAX_SIGMA_STEPS, 1.0 + nobs);
    for (int k = 0; k < pz->n; k++) {
        double left = k > 0 ? pz->mu[k] - pz->mu[k - 1] : 0;
        double right = k + 1 < pz->n ? pz->mu[k + 1] - pz->mu[k] : 0;
        pz->sigma[k] = k == prior ? range : clamp(fmax(left, right), minsigma, range);
    }
}

/* Fit to the m values ys (sorted in place) plus a prior kernel at the middle
 * of [lo, hi]; pz's arrays must hold m + 1 entries. */
static void parzen_fit(parzen *pz, double *ys, int m, double lo, double hi)
{
    qsort(ys, (size_t)m, sizeof *ys, cmp_double);
    pz->lo = lo;
    pz->hi = hi;
    pz->n = m + 1;
    double mid = (lo + hi) / 2;
    int prior = 0;
    while (prior < m && ys[prior] < mid)
        prior++;
    for (int k = 0, i = 0; k < pz->n; k++)
        pz->mu[k] = k == prior ? mid : ys[i++];
    parzen_widths(pz, prior, m);
    double total = m + TPE_PRIOR_WEIGHT;
    for (int k = 0; k < pz->n; k++) {
        double w = k == prior ? TPE_PRIOR_WEIGHT : 1.0;
        pz->logw[k] = log(w / total);
        double z = normal_mass((lo - pz->mu[k]) / pz->sigma[k], (hi - pz->mu[k]) / pz->sigma[k]);
        pz->logz[k] = log(z);
    }
}

static double normal_draw(tune_rng *r)
{
    double u1 = 1.0 - tune_rng_uniform(r); /* (0, 1] */
    double u2 = tune_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static double parzen_sample(const parzen *pz, tune_rng *r)
{
    double u = tune_rng_uniform(r), acc = 0;
    int k = 0;
    for (; k < pz->n - 1; k++) {
        acc += exp(pz->logw[k]);
        if (u < acc)
            break;
    }
    for (int t = 0; t < TPE_MAX_REJECTIONS; t++) {
        double y = pz->mu[k] + pz->sigma[k] * normal_draw(r);
        if (y >= pz->lo && y <= pz->hi)
            return y;
    }
    return pz->lo + tune_rng_uniform(r) * (pz->hi - pz->lo);
}

static double log_sum_exp(const double *t, int n)
{
    double max = -INFINITY;
    for (int k = 0; k < n; k++)
        max = fmax(max, t[k]);
    if (!isfinite(max))
        return TPE_LOG_FLOOR;
    double sum = 0;
    for (int k = 0; k < n; k++)
        sum += exp(t[k] - max);
    return fmax(max + log(sum), TPE_LOG_FLOOR);
}

/* log density at y; scratch holds pz->n entries. */
static double parzen_log_pdf(const parzen *pz, double y, double *scratch)
{
    for (int k = 0; k < pz->n; k++) {
        double z = (y - pz->mu[k]) / pz->sigma[k];
        scratch[k] = pz->logw[k] - pz->logz[k] - log(pz->sigma[k]) - 0.5 * log(2 * M_PI) -
                     0.5 * z * z;
    }
    return log_sum_exp(scratch, pz->n);
}

/* log of the mass on [a, b] (a < b, both inside [lo, hi]). */
static double parzen_log_mass(const parzen *pz, double a, double b, double *scratch)
{
    for (int k = 0; k < pz->n; k++) {
        double m = normal_mass((a - pz->mu[k]) / pz->sigma[k], (b - pz->mu[k]) / pz->sigma[k]);
        scratch[k] = m > 0 ? pz->logw[k] - pz->logz[k] + log(m) : -INFINITY;
    }
    return log_sum_exp(scratch, pz->n);
}

/* ---- TPE suggestion ------------------------------------------------------ */

/* Scratch of one suggestion, sized for n observations and c candidates. */
typedef struct ranked {
    double loss;
    size_t i;
} ranked;

typedef struct tpe_work {
    ranked *order;    /* observations, best loss first */
    size_t ngood;
    double *ys;       /* values of one param in one set */
    parzen good, bad;
    double *scratch;  /* n + 1 */
    double *cand;     /* c × nparams: x value or category index */
    double *score;    /* c */
} tpe_work;

static void tpe_work_free(tpe_work *w)
{
    free(w->order);
    free(w->ys);
    free(w->good.mu);
    free(w->cand);
    free(w->score);
}

static int tpe_work_alloc(tpe_work *w, size_t n, int c, int nparams)
{
    memset(w, 0, sizeof *w);
    size_t k = n + 1;
    w->order = malloc(n ? n * sizeof *w->order : 1);
    w->ys = malloc(k * sizeof *w->ys);
    /* the two estimators' arrays and the scratch share one block */
    double *block = malloc(9 * k * sizeof *block);
    w->cand = calloc((size_t)c * (size_t)(nparams ? nparams : 1), sizeof *w->cand);
    w->score = calloc((size_t)c, sizeof *w->score);
    if (!w->order || !w->ys || !block || !w->cand || !w->score) {
        free(block);
        tpe_work_free(w);
        return LOOM_ENOMEM;
    }
    parzen *pz[2] = {&w->good, &w->bad};
    for (int i = 0; i < 2; i++) {
        pz[i]->mu = block + (4 * i + 0) * k;
        pz[i]->sigma = block + (4 * i + 1) * k;
        pz[i]->logw = block + (4 * i + 2) * k;
        pz[i]->logz = block + (4 * i + 3) * k;
    }
    w->scratch = block + 8 * k;
    return 0;
}

/* Observations ranked by loss, ties by the order they were made. */
static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->loss != y->loss)
        return x->loss < y->loss ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void rank_observations(const tune_search *s, tpe_work *w)
{
    for (size_t i = 0; i < s->nobs; i++)
        w->order[i] = (ranked){s->loss[i], i};
    qsort(w->order, s->nobs, sizeof *w->order, cmp_ranked);
    size_t ngood = (size_t)ceil(s->gamma * (double)s->nobs);
    w->ngood = ngood < 1 ? 1 : ngood > s->nobs ? s->nobs : ngood;
}

/* Param j's known coordinates among ranked observations [from, to) into w->ys. */
static int gather(const tune_search *s, const tpe_work *w, int j, size_t from, size_t to)
{
    int m = 0;
    int np = s->space->nparams;
    for (size_t r = from; r < to; r++) {
        double v = s->coord[w->order[r].i * (size_t)np + (size_t)j];
        if (!isnan(v))
            w->ys[m++] = v;
    }
    return m;
}

/* Smoothed category log probabilities of one set into logp[0 .. ncat). */
static void category_log_probs(const double *ys, int m, size_t ncat, double *logp)
{
    for (size_t c = 0; c < ncat; c++)
        logp[c] = TPE_PRIOR_WEIGHT;
    for (int i = 0; i < m; i++)
        logp[(size_t)ys[i]] += 1;
    double total = m + TPE_PRIOR_WEIGHT * (double)ncat;
    for (size_t c = 0; c < ncat; c++)
        logp[c] = log(logp[c] / total);
}

static size_t category_draw(const double *logp, size_t ncat, tune_rng *r)
{
    double u = tune_rng_uniform(r), acc = 0;
    for (size_t c = 0; c + 1 < ncat; c++) {
        acc += exp(logp[c]);
        if (u < acc)
            return c;
    }
    return ncat - 1;
}

static int tpe_categorical(const tune_search *s, tpe_work *w, int j, size_t ncat, tune_rng *r)
{
    double *lg = malloc(2 * ncat * sizeof *lg);
    if (!lg)
        return LOOM_ENOMEM;
    double *lb = lg + ncat;
    int m = gather(s, w, j, 0, w->ngood);
    category_log_probs(w->ys, m, ncat, lg);
    m = gather(s, w, j, w->ngood, s->nobs);
    category_log_probs(w->ys, m, ncat, lb);
    int np = s->space->nparams;
    for (int c = 0; c < s->n_candidates; c++) {
        size_t cat = category_draw(lg, ncat, r);
        w->cand[(size_t)c * (size_t)np + (size_t)j] = (double)cat;
        w->score[c] += lg[cat] - lb[cat];
    }
    free(lg);
    return 0;
}

static double to_y(const axis *a, double x)
{
    return a->log ? log(x) : x;
}

/* log l − log g at the (quantized) value x. */
static double numeric_score(const tpe_work *w, const axis *a, double x)
{
    if (a->half > 0) {
        double lo = x - a->half, hi = x + a->half;
        double ya = lo > 0 || !a->log ? clamp(to_y(a, lo), a->lo, a->hi) : a->lo;
        double yb = clamp(to_y(a, hi), a->lo, a->hi);
        if (yb > ya)
            return parzen_log_mass(&w->good, ya, yb, w->scratch) -
                   parzen_log_mass(&w->bad, ya, yb, w->scratch);
    }
    double y = clamp(to_y(a, x), a->lo, a->hi);
    return parzen_log_pdf(&w->good, y, w->scratch) - parzen_log_pdf(&w->bad, y, w->scratch);
}

static void tpe_numeric(const tune_search *s, tpe_work *w, int j, const axis *a, tune_rng *r)
{
    const tune_param *p = &s->space->params[j];
    int m = gather(s, w, j, 0, w->ngood);
    parzen_fit(&w->good, w->ys, m, a->lo, a->hi);
    m = gather(s, w, j, w->ngood, s->nobs);
    parzen_fit(&w->bad, w->ys, m, a->lo, a->hi);
    int np = s->space->nparams;
    for (int c = 0; c < s->n_candidates; c++) {
        double y = parzen_sample(&w->good, r);
        double x = tune_param_quantize(p, a->log ? exp(y) : y);
        w->cand[(size_t)c * (size_t)np + (size_t)j] = x;
        w->score[c] += numeric_score(w, a, x);
    }
}

static json_t *candidate_value(const tune_param *p, const axis *a, double v)
{
    if (a->skip)
        return json_deep_copy(p->values);
    if (a->categorical)
        return json_deep_copy(json_array_get(p->values, (size_t)v));
    if (p->kind == TUNE_RANDINT || p->kind == TUNE_QRANDINT)
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *candidate_config(const tune_space *sp, const double *row)
{
    json_t *config = json_object();
    for (int j = 0; config && j < sp->nparams; j++) {
        const tune_param *p = &sp->params[j];
        axis a = axis_of(p);
        if (json_object_set_new(config, p->name, candidate_value(p, &a, row[j])) < 0) {
            json_decref(config);
            config = NULL;
        }
    }
    return config;
}

static int tpe_suggest(const tune_search *s, int64_t index, json_t **config)
{
    tpe_work w;
    int np = s->space->nparams;
    int rc = tpe_work_alloc(&w, s->nobs, s->n_candidates, np);
    if (rc)
        return rc;
    rank_observations(s, &w);
    tune_rng r;
    tune_rng_seed(&r, tune_rng_mix(s->seed, (uint64_t)index, STREAM_TPE));
    for (int j = 0; !rc && j < np; j++) {
        axis a = axis_of(&s->space->params[j]);
        if (a.categorical)
            rc = tpe_categorical(s, &w, j, a.ncat, &r);
        else if (!a.skip)
            tpe_numeric(s, &w, j, &a, &r);
    }
    if (!rc) {
        int best = 0;
        for (int c = 1; c < s->n_candidates; c++)
            if (w.score[c] > w.score[best])
                best = c;
        *config = candidate_config(s->space, w.cand + (size_t)best * (size_t)np);
        if (!*config)
            rc = LOOM_ENOMEM;
    }
    tpe_work_free(&w);
    return rc;
}

/* ---- next ------------------------------------------------------------------ */

static json_t *random_config(const tune_space *sp, tune_rng *r)
{
    json_t *config = json_object();
    for (int j = 0; config && j < sp->nparams; j++) {
        const tune_param *p = &sp->params[j];
        if (json_object_set_new(config, p->name, tune_param_sample(p, r)) < 0) {
            json_decref(config);
            config = NULL;
        }
    }
    return config;
}

/* Grid point of trial `index`: in order, or (shuffle) in the seeded order of
 * its round. */
static int64_t grid_point(tune_search *s, int64_t index)
{
    int64_t round = index / s->grid_size, j = index % s->grid_size;
    if (!s->shuffle)
        return j;
    if (!s->perm && !(s->perm = malloc((size_t)s->grid_size * sizeof(*s->perm))))
        return -1;
    if (s->perm_round != round) {
        tune_rng r;
        tune_rng_seed(&r, tune_rng_mix(s->seed, (uint64_t)round, STREAM_SHUFFLE));
        for (int64_t i = 0; i < s->grid_size; i++)
            s->perm[i] = i;
        for (int64_t i = s->grid_size - 1; i > 0; i--) {
            int64_t k = (int64_t)(tune_rng_next(&r) % (uint64_t)(i + 1)), t = s->perm[i];
            s->perm[i] = s->perm[k];
            s->perm[k] = t;
        }
        s->perm_round = round;
    }
    return s->perm[j];
}

int tune_search_next(tune_search *s, int64_t index, json_t **config)
{
    if (!s || !config || index < 0)
        return LOOM_EINVAL;
    *config = NULL;
    if (s->algo == ALGO_GRID && index >= tune_search_total(s))
        return LOOM_ENOTFOUND;
    if (s->algo == ALGO_TPE && s->nobs >= (size_t)s->n_startup && s->nobs > 0)
        return tpe_suggest(s, index, config);
    tune_rng r;
    tune_rng_seed(&r, tune_rng_mix(s->seed, (uint64_t)index, STREAM_SAMPLE));
    if (s->algo == ALGO_GRID) {
        int64_t point = grid_point(s, index);
        *config = point < 0 ? NULL : tune_space_config(s->space, point, &r);
    }
    else
        *config = random_config(s->space, &r);
    return *config ? 0 : LOOM_ENOMEM;
}
