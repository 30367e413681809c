/* tests/test_tune_search.c — tune/space.c and tune/search.c: the search
 * space parser's refusals (each with LOOM_EINVAL and a message naming the
 * parameter), the seeded generator, every kind's samples (bounds, integer
 * type, quantization to exact decimals), grid enumeration (order, size,
 * num_samples, exhaustion), reproducibility per (seed, index), option
 * validation, TPE's configs on a space of every kind, and — the property TPE
 * exists for — that TPE finds lower Branin values than random search, on
 * average and on most seeds. */
#include <math.h>
#include <stdint.h>
#include "loom/loom.h"
#include "tune/search.h"
#include "tune/space.h"
#include "testutil.h"

static json_t *parse_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j)
        fprintf(stderr, "bad test JSON: %s: %s\n", text, jerr.text);
    REQUIRE(j);
    return j;
}

static tune_space *space_from(const char *text)
{
    json_t *spec = parse_json(text);
    tune_space *s = NULL;
    char err[256] = "";
    int rc = tune_space_parse(spec, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "parse failed: %s: %s\n", text, err);
    REQUIRE(rc == 0 && s);
    json_decref(spec);
    return s;
}

static tune_search *search_from(const char *algo, const tune_space *sp, uint64_t seed,
                                const char *options)
{
    json_t *o = options ? parse_json(options) : NULL;
    tune_search *s = NULL;
    char err[256] = "";
    int rc = tune_search_new(algo, sp, seed, o, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "search_new(%s, %s) failed: %s\n", algo, options ? options : "NULL", err);
    REQUIRE(rc == 0 && s);
    json_decref(o);
    return s;
}

static json_t *next_config(tune_search *s, int64_t index)
{
    json_t *c = NULL;
    CHECK_RC(tune_search_next(s, index, &c), 0);
    REQUIRE(c);
    return c;
}

static const char *header_example =
    "{\"lr\": {\"type\": \"loguniform\", \"lower\": 1e-4, \"upper\": 1e-1},"
    " \"hidden\": {\"type\": \"choice\", \"values\": [32, 64, 128]},"
    " \"layers\": {\"type\": \"grid\", \"values\": [1, 2, 3]},"
    " \"dropout\": {\"type\": \"uniform\", \"lower\": 0.0, \"upper\": 0.5},"
    " \"batch\": {\"type\": \"randint\", \"lower\": 16, \"upper\": 128},"
    " \"wd\": {\"type\": \"qloguniform\", \"lower\": 1e-6, \"upper\": 1e-2, \"q\": 1e-6},"
    " \"width\": {\"type\": \"qrandint\", \"lower\": 8, \"upper\": 256, \"q\": 8},"
    " \"mom\": {\"type\": \"quniform\", \"lower\": 0.8, \"upper\": 0.99, \"q\": 0.01},"
    " \"seed\": 7}";

/* ---- parsing ------------------------------------------------------------ */

static void test_parse_errors(void)
{
    /* every spec here is wrong about parameter "pp" */
    static const char *bad[] = {
        "{\"pp\": {\"type\": \"gaussian\", \"lower\": 0, \"upper\": 1}}",
        "{\"pp\": {\"lower\": 0, \"upper\": 1}}",
        "{\"pp\": {\"type\": 3}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": 1, \"upper\": 1}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": 2, \"upper\": 1}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": 0}}",
        "{\"pp\": {\"type\": \"uniform\", \"upper\": 1}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": \"0\", \"upper\": 1}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": true, \"upper\": 1}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1, \"q\": 0.1}}",
        "{\"pp\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1, \"typo\": 1}}",
        "{\"pp\": {\"type\": \"loguniform\", \"lower\": 0, \"upper\": 1}}",
        "{\"pp\": {\"type\": \"loguniform\", \"lower\": -1, \"upper\": 1}}",
        "{\"pp\": {\"type\": \"qloguniform\", \"lower\": 0, \"upper\": 1, \"q\": 0.1}}",
        "{\"pp\": {\"type\": \"quniform\", \"lower\": 0, \"upper\": 1, \"q\": 0}}",
        "{\"pp\": {\"type\": \"quniform\", \"lower\": 0, \"upper\": 1, \"q\": -0.5}}",
        "{\"pp\": {\"type\": \"quniform\", \"lower\": 0, \"upper\": 1}}",
        "{\"pp\": {\"type\": \"quniform\", \"lower\": 0.1, \"upper\": 0.2, \"q\": 1}}",
        "{\"pp\": {\"type\": \"randint\", \"lower\": 0.5, \"upper\": 4}}",
        "{\"pp\": {\"type\": \"randint\", \"lower\": 4, \"upper\": 4}}",
        "{\"pp\": {\"type\": \"randint\", \"lower\": 0, \"upper\": 4, \"q\": 2}}",
        "{\"pp\": {\"type\": \"qrandint\", \"lower\": 0, \"upper\": 10, \"q\": 2.5}}",
        "{\"pp\": {\"type\": \"qrandint\", \"lower\": 3, \"upper\": 5, \"q\": 8}}",
        "{\"pp\": {\"type\": \"qrandint\", \"lower\": 0, \"upper\": 10, \"q\": 0}}",
        "{\"pp\": {\"type\": \"choice\", \"values\": []}}",
        "{\"pp\": {\"type\": \"choice\", \"values\": \"abc\"}}",
        "{\"pp\": {\"type\": \"choice\"}}",
        "{\"pp\": {\"type\": \"choice\", \"values\": [1], \"lower\": 0}}",
        "{\"pp\": {\"type\": \"grid\", \"values\": []}}",
        "{\"pp\": {\"type\": \"grid\", \"values\": {\"a\": 1}}}",
        "{\"pp\": {\"type\": \"const\"}}",
        "{\"ok\": 1, \"pp\": {\"type\": \"uniform\", \"lower\": [0], \"upper\": 1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *spec = parse_json(bad[i]);
        tune_space *s = (tune_space *)1;
        char err[256] = "";
        int rc = tune_space_parse(spec, &s, err, sizeof err);
        CHECK(rc == LOOM_EINVAL);
        CHECK(s == NULL);
        CHECK(strstr(err, "'pp'") != NULL);
        if (rc != LOOM_EINVAL || !strstr(err, "'pp'"))
            fprintf(stderr, "  spec %s: rc %d, err \"%s\"\n", bad[i], rc, err);
        json_decref(spec);
    }
    /* spec-level errors */
    static const char *bad_spec[] = {"[1, 2]", "3", "\"x\"", "{\"\": 1}"};
    for (size_t i = 0; i < sizeof bad_spec / sizeof bad_spec[0]; i++) {
        json_t *spec = parse_json(bad_spec[i]);
        tune_space *s = NULL;
        char err[256] = "";
        CHECK_RC(tune_space_parse(spec, &s, err, sizeof err), LOOM_EINVAL);
        CHECK(s == NULL && err[0] != '\0');
        json_decref(spec);
    }
    tune_space *s = NULL;
    char err[64] = "";
    CHECK_RC(tune_space_parse(NULL, &s, err, sizeof err), LOOM_EINVAL);
    CHECK(err[0] != '\0');
    /* a tiny error buffer truncates the message, NULL skips it */
    json_t *spec = parse_json("{\"a\": {\"type\": \"nope\"}}");
    char tiny[4] = "zzz";
    CHECK_RC(tune_space_parse(spec, &s, tiny, sizeof tiny), LOOM_EINVAL);
    CHECK(strlen(tiny) == 3);
    CHECK_RC(tune_space_parse(spec, &s, NULL, 0), LOOM_EINVAL);
    json_decref(spec);
}

static void test_parse_ok(void)
{
    tune_space *s = space_from(header_example);
    static const char *names[] = {"lr", "hidden", "layers", "dropout", "batch",
                                  "wd", "width", "mom", "seed"};
    static const tune_param_kind kinds[] = {TUNE_LOGUNIFORM, TUNE_CHOICE, TUNE_GRID,
                                            TUNE_UNIFORM, TUNE_RANDINT, TUNE_QLOGUNIFORM,
                                            TUNE_QRANDINT, TUNE_QUNIFORM, TUNE_CONST};
    CHECK(s->nparams == 9);
    for (int i = 0; i < s->nparams && i < 9; i++) {
        CHECK(!strcmp(s->params[i].name, names[i])); /* the spec's order */
        CHECK(s->params[i].kind == kinds[i]);
    }
    CHECK(s->params[0].lower == 1e-4 && s->params[0].upper == 1e-1 && s->params[0].q == 0);
    CHECK(s->params[6].q == 8 && s->params[7].q == 0.01);
    CHECK(json_integer_value(s->params[8].values) == 7);
    CHECK(json_array_size(s->params[1].values) == 3);
    CHECK(tune_space_grid_size(s) == 3);
    tune_space_destroy(&s);
    CHECK(s == NULL);
    tune_space_destroy(&s); /* twice is harmless */

    /* the parsed space owns copies: the spec may go away */
    json_t *spec = parse_json("{\"c\": {\"type\": \"choice\", \"values\": [[1], {\"k\": 2}]},"
                              " \"n\": null, \"o\": {\"type\": \"const\", \"value\": {\"a\": 1}},"
                              " \"w\": {\"type\": \"qrandint\", \"lower\": 0, \"upper\": 9}}");
    char err[128];
    CHECK_RC(tune_space_parse(spec, &s, err, sizeof err), 0);
    json_decref(spec);
    REQUIRE(s);
    CHECK(s->params[1].kind == TUNE_CONST && json_is_null(s->params[1].values));
    CHECK(s->params[2].kind == TUNE_CONST && json_is_object(s->params[2].values));
    CHECK(s->params[3].q == 1); /* qrandint's q defaults to 1 */
    CHECK(tune_space_grid_size(s) == 1);
    tune_rng r;
    tune_rng_seed(&r, 1);
    json_t *c = tune_space_config(s, 0, &r);
    REQUIRE(c);
    CHECK(json_is_null(json_object_get(c, "n")));
    CHECK(json_integer_value(json_object_get(json_object_get(c, "o"), "a")) == 1);
    json_decref(c);
    tune_space_destroy(&s);

    s = space_from("{}");
    CHECK(s->nparams == 0 && tune_space_grid_size(s) == 1);
    tune_space_destroy(&s);
}

/* ---- generator ------------------------------------------------------------ */

static void test_rng(void)
{
    tune_rng a, b;
    tune_rng_seed(&a, 42);
    tune_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= tune_rng_next(&a) == tune_rng_next(&b);
    CHECK(same);
    tune_rng_seed(&b, 43);
    CHECK(tune_rng_next(&a) != tune_rng_next(&b));
    /* a fixed value: the same on every machine */
    tune_rng_seed(&a, 0);
    uint64_t first = tune_rng_next(&a);
    tune_rng_seed(&b, 0);
    CHECK(tune_rng_next(&b) == first && first != 0);

    double sum = 0, min = 1, max = 0;
    tune_rng_seed(&a, 7);
    for (int i = 0; i < 100000; i++) {
        double u = tune_rng_uniform(&a);
        sum += u;
        min = fmin(min, u);
        max = fmax(max, u);
    }
    CHECK(min >= 0 && max < 1 && min < 1e-3 && max > 1 - 1e-3);
    CHECK(fabs(sum / 100000 - 0.5) < 0.01);

    CHECK(tune_rng_mix(1, 2, 3) == tune_rng_mix(1, 2, 3));
    CHECK(tune_rng_mix(1, 2, 3) != tune_rng_mix(1, 3, 2));
    CHECK(tune_rng_mix(1, 2, 3) != tune_rng_mix(2, 2, 3));
    CHECK(tune_rng_mix(1, 2, 3) != tune_rng_mix(1, 2, 4));
    CHECK(tune_rng_mix(0, 0, 0) != tune_rng_mix(0, 1, 0));
}

/* ---- sampling and quantization ------------------------------------------ */

/* x is k·q for a whole k, to within rounding. */
static int is_multiple(double x, double q)
{
    double k = x / q;
    return fabs(k - nearbyint(k)) < 1e-6;
}

/* x is the double nearest to its own `digits`-decimal rendering. */
static int is_clean_decimal(double x, int digits)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", digits, x);
    return strtod(buf, NULL) == x;
}

static void test_sample_bounds(void)
{
    tune_space *s = space_from(header_example);
    tune_rng r;
    tune_rng_seed(&r, 2024);
    int bad = 0, batch_lo = 0, batch_hi = 0, width_lo = 0, width_hi = 0, low_lr = 0;
    int hidden_seen[3] = {0};
    enum { N = 4000 };
    for (int i = 0; i < N; i++) {
        json_t *c = tune_space_config(s, i % 3, &r);
        REQUIRE(c);
        double lr = json_real_value(json_object_get(c, "lr"));
        bad += !json_is_real(json_object_get(c, "lr")) || lr < 1e-4 || lr > 1e-1;
        low_lr += lr < 1e-3; /* log-uniform: a third of the decades lie below 1e-3 */
        json_int_t h = json_integer_value(json_object_get(c, "hidden"));
        bad += !(h == 32 || h == 64 || h == 128);
        hidden_seen[h == 32 ? 0 : h == 64 ? 1 : 2] = 1;
        bad += json_integer_value(json_object_get(c, "layers")) != i % 3 + 1;
        double d = json_real_value(json_object_get(c, "dropout"));
        bad += !json_is_real(json_object_get(c, "dropout")) || d < 0 || d > 0.5;
        json_t *bj = json_object_get(c, "batch");
        json_int_t b = json_integer_value(bj);
        bad += !json_is_integer(bj) || b < 16 || b >= 128;
        batch_lo += b == 16;
        batch_hi += b == 127;
        double wd = json_real_value(json_object_get(c, "wd"));
        bad += wd < 1e-6 || wd > 1e-2 || !is_multiple(wd, 1e-6) || !is_clean_decimal(wd, 6);
        json_t *wj = json_object_get(c, "width");
        json_int_t w = json_integer_value(wj);
        bad += !json_is_integer(wj) || w < 8 || w > 256 || w % 8;
        width_lo += w == 8;
        width_hi += w == 256;
        double m = json_real_value(json_object_get(c, "mom"));
        bad += m < 0.8 || m > 0.99 || !is_multiple(m, 0.01) || !is_clean_decimal(m, 2);
        bad += json_integer_value(json_object_get(c, "seed")) != 7;
        bad += json_object_size(c) != 9;
        json_decref(c);
    }
    CHECK(bad == 0);
    CHECK(batch_lo > 0 && batch_hi > 0);  /* randint: [lower, upper) */
    CHECK(width_lo > 0 && width_hi > 0);  /* qrandint: upper included */
    CHECK(hidden_seen[0] && hidden_seen[1] && hidden_seen[2]);
    CHECK(low_lr > N / 3 - N / 15 && low_lr < N / 3 + N / 15);
    CHECK(tune_space_config(s, 3, &r) == NULL && tune_space_config(s, -1, &r) == NULL);
    tune_space_destroy(&s);
}

static void test_quantize(void)
{
    tune_space *s = space_from(
        "{\"a\": {\"type\": \"quniform\", \"lower\": 0, \"upper\": 1, \"q\": 0.1},"
        " \"b\": {\"type\": \"quniform\", \"lower\": 0.8, \"upper\": 0.99, \"q\": 0.01},"
        " \"c\": {\"type\": \"qloguniform\", \"lower\": 1e-6, \"upper\": 1e-2, \"q\": 1e-6},"
        " \"d\": {\"type\": \"qrandint\", \"lower\": 3, \"upper\": 20, \"q\": 8},"
        " \"e\": {\"type\": \"randint\", \"lower\": 0, \"upper\": 10},"
        " \"f\": {\"type\": \"uniform\", \"lower\": -1, \"upper\": 1},"
        " \"g\": {\"type\": \"quniform\", \"lower\": 0.15, \"upper\": 0.5, \"q\": 0.1},"
        " \"h\": {\"type\": \"quniform\", \"lower\": 0, \"upper\": 2, \"q\": 0.25}}");
    const tune_param *p = s->params;
    CHECK(tune_param_quantize(&p[0], 0.29) == 0.3);   /* not 0.30000000000000004 */
    CHECK(tune_param_quantize(&p[0], 0.7) == 0.7);
    CHECK(tune_param_quantize(&p[0], 3 * 0.1) == 0.3);
    CHECK(tune_param_quantize(&p[0], -4) == 0 && tune_param_quantize(&p[0], 4) == 1);
    CHECK(tune_param_quantize(&p[1], 0.8123) == 0.81);
    CHECK(tune_param_quantize(&p[1], 0) == 0.8 && tune_param_quantize(&p[1], 2) == 0.99);
    CHECK(tune_param_quantize(&p[2], 3.4e-6) == 3e-6);
    CHECK(tune_param_quantize(&p[2], 0) == 1e-6); /* log kinds stay positive */
    CHECK(tune_param_quantize(&p[3], 0) == 8 && tune_param_quantize(&p[3], 100) == 16);
    CHECK(tune_param_quantize(&p[3], 13) == 16);
    CHECK(tune_param_quantize(&p[4], 9.7) == 9 && tune_param_quantize(&p[4], -3) == 0);
    CHECK(tune_param_quantize(&p[4], 4.4) == 4);
    CHECK(tune_param_quantize(&p[5], 0.123) == 0.123 && tune_param_quantize(&p[5], 5) == 1);
    /* quantized values stay on multiples of q inside the bounds */
    CHECK(tune_param_quantize(&p[6], 0) == 0.2 && tune_param_quantize(&p[6], 1) == 0.5);
    CHECK(tune_param_quantize(&p[7], 1.3) == 1.25 && tune_param_quantize(&p[7], 1.4) == 1.5);

    tune_rng r;
    tune_rng_seed(&r, 5);
    int bad = 0, seen[11] = {0}, d_seen[2] = {0};
    for (int i = 0; i < 2000; i++) {
        json_t *v = tune_param_sample(&p[0], &r);
        double x = json_real_value(v);
        int k = (int)nearbyint(x * 10);
        bad += k < 0 || k > 10 || x != k / 10.0;
        if (k >= 0 && k <= 10)
            seen[k] = 1;
        json_decref(v);
        v = tune_param_sample(&p[3], &r);
        bad += !json_is_integer(v) || (json_integer_value(v) != 8 && json_integer_value(v) != 16);
        d_seen[json_integer_value(v) == 16] = 1;
        json_decref(v);
        v = tune_param_sample(&p[6], &r);
        x = json_real_value(v);
        bad += !(x == 0.2 || x == 0.3 || x == 0.4 || x == 0.5);
        json_decref(v);
    }
    CHECK(bad == 0);
    int all = 1;
    for (int k = 0; k <= 10; k++)
        all &= seen[k];
    CHECK(all && d_seen[0] && d_seen[1]);
    tune_space_destroy(&s);
}

/* ---- grid search -------------------------------------------------------- */

static void test_grid_search(void)
{
    tune_space *sp = space_from("{\"a\": {\"type\": \"grid\", \"values\": [1, 2, 3]},"
                                " \"u\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1},"
                                " \"b\": {\"type\": \"grid\", \"values\": [\"x\", \"y\"]}}");
    CHECK(tune_space_grid_size(sp) == 6);
    tune_search *s = search_from("grid", sp, 9, "{\"num_samples\": 2}");
    CHECK(tune_search_total(s) == 12);
    static const int want_a[] = {1, 1, 2, 2, 3, 3};
    static const char *want_b[] = {"x", "y", "x", "y", "x", "y"};
    double u_first[6];
    int order_ok = 1, redrawn = 0;
    for (int i = 0; i < 12; i++) {
        json_t *c = next_config(s, i);
        order_ok &= json_integer_value(json_object_get(c, "a")) == want_a[i % 6];
        order_ok &= !strcmp(json_string_value(json_object_get(c, "b")), want_b[i % 6]);
        double u = json_real_value(json_object_get(c, "u"));
        order_ok &= u >= 0 && u <= 1;
        if (i < 6)
            u_first[i] = u;
        else
            redrawn += u != u_first[i - 6];
        json_decref(c);
    }
    CHECK(order_ok);
    CHECK(redrawn == 6); /* the second pass draws the non-grid params anew */
    json_t *c = (json_t *)1;
    CHECK_RC(tune_search_next(s, 12, &c), LOOM_ENOTFOUND);
    CHECK(c == NULL);
    CHECK_RC(tune_search_next(s, 1000, &c), LOOM_ENOTFOUND);
    CHECK_RC(tune_search_next(s, -1, &c), LOOM_EINVAL);
    CHECK_RC(tune_search_next(s, 0, NULL), LOOM_EINVAL);
    tune_search_destroy(&s);
    CHECK(s == NULL);

    s = search_from("grid", sp, 9, NULL); /* num_samples defaults to 1 */
    CHECK(tune_search_total(s) == 6);
    c = next_config(s, 5);
    json_decref(c);
    CHECK_RC(tune_search_next(s, 6, &c), LOOM_ENOTFOUND);
    tune_search_destroy(&s);
    tune_space_destroy(&sp);

    /* no grid params: num_samples random configs */
    sp = space_from("{\"u\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 1}}");
    s = search_from("grid", sp, 1, "{\"num_samples\": 3}");
    CHECK(tune_search_total(s) == 3);
    json_t *c0 = next_config(s, 0), *c1 = next_config(s, 1);
    CHECK(!json_equal(c0, c1));
    json_decref(c0);
    json_decref(c1);
    CHECK_RC(tune_search_next(s, 3, &c), LOOM_ENOTFOUND);
    tune_search_destroy(&s);
    tune_space_destroy(&sp);
}

/* ---- options ------------------------------------------------------------ */

static void expect_search_error(const char *algo, const tune_space *sp, const char *options)
{
    json_t *o = options ? parse_json(options) : NULL;
    tune_search *s = (tune_search *)1;
    char err[256] = "";
    int rc = tune_search_new(algo, sp, 1, o, &s, err, sizeof err);
    CHECK(rc == LOOM_EINVAL && s == NULL && err[0] != '\0');
    if (rc != LOOM_EINVAL)
        fprintf(stderr, "  search_new(%s, %s) gave %d\n", algo, options ? options : "NULL", rc);
    json_decref(o);
}

static void test_options(void)
{
    tune_space *sp = space_from(header_example);
    expect_search_error("tpe", sp, "{\"n_startup\": -1}");
    expect_search_error("tpe", sp, "{\"n_startup\": 2.5}");
    expect_search_error("tpe", sp, "{\"n_candidates\": 0}");
    expect_search_error("tpe", sp, "{\"n_candidates\": \"24\"}");
    expect_search_error("tpe", sp, "{\"gamma\": 0}");
    expect_search_error("tpe", sp, "{\"gamma\": 1}");
    expect_search_error("tpe", sp, "{\"gamma\": -0.1}");
    expect_search_error("tpe", sp, "{\"gamma\": \"0.25\"}");
    expect_search_error("tpe", sp, "{\"foo\": 1}");
    expect_search_error("tpe", sp, "{\"num_samples\": 2}");
    expect_search_error("tpe", sp, "[1]");
    expect_search_error("grid", sp, "{\"num_samples\": 0}");
    expect_search_error("grid", sp, "{\"num_samples\": -2}");
    expect_search_error("grid", sp, "{\"num_samples\": \"2\"}");
    expect_search_error("grid", sp, "{\"n_startup\": 2}");
    expect_search_error("random", sp, "{\"num_samples\": 2}");
    expect_search_error("annealing", sp, NULL);
    expect_search_error("TPE", sp, NULL);
    tune_search *s = NULL;
    CHECK_RC(tune_search_new("random", NULL, 1, NULL, &s, NULL, 0), LOOM_EINVAL);
    CHECK_RC(tune_search_new("random", sp, 1, NULL, NULL, NULL, 0), LOOM_EINVAL);

    /* valid options, including an explicit JSON null and an empty object */
    s = search_from("tpe", sp, 1, "{\"n_startup\": 0, \"n_candidates\": 5, \"gamma\": 0.5}");
    json_t *c = next_config(s, 0); /* nothing observed yet: still a config */
    json_decref(c);
    tune_search_destroy(&s);
    s = search_from("tpe", sp, 1, "{\"gamma\": 1e-3}");
    tune_search_destroy(&s);
    s = search_from("random", sp, 1, "null");
    CHECK(tune_search_total(s) == -1);
    c = next_config(s, 1000000); /* random is never exhausted */
    json_decref(c);
    tune_search_destroy(&s);
    s = search_from("random", sp, 1, "{}");
    tune_search_destroy(&s);
    tune_space_destroy(&sp);
}

/* ---- reproducibility ---------------------------------------------------- */

/* A deterministic loss of any config of the header's space. */
static double toy_loss(const json_t *c)
{
    double lr = log10(json_real_value(json_object_get(c, "lr"))) + 2.5;
    double d = json_real_value(json_object_get(c, "dropout")) - 0.1;
    double b = ((double)json_integer_value(json_object_get(c, "batch")) - 40) / 50;
    return lr * lr + d * d + b * b + (json_integer_value(json_object_get(c, "hidden")) == 64 ? 0 : 0.3);
}

/* Configs 0..n-1 of a sequential run (next, then observe) as a JSON array. */
static json_t *run_sequence(const char *algo, const tune_space *sp, uint64_t seed, int n,
                            int with_noise)
{
    tune_search *s = search_from(algo, sp, seed, "{}");
    json_t *all = json_array();
    for (int i = 0; i < n; i++) {
        json_t *c = next_config(s, i);
        if (with_noise) { /* ignored observations must change nothing */
            tune_search_observe(s, c, NAN);
            tune_search_observe(s, c, INFINITY);
            tune_search_observe(s, c, -INFINITY);
            tune_search_observe(s, NULL, 1.0);
        }
        tune_search_observe(s, c, toy_loss(c));
        json_array_append_new(all, c);
    }
    tune_search_destroy(&s);
    return all;
}

static void test_reproducible(void)
{
    tune_space *sp = space_from(header_example);
    static const char *algos[] = {"random", "tpe"};
    for (int a = 0; a < 2; a++) {
        json_t *x = run_sequence(algos[a], sp, 11, 30, 0);
        json_t *y = run_sequence(algos[a], sp, 11, 30, 1);
        json_t *z = run_sequence(algos[a], sp, 12, 30, 0);
        CHECK(json_equal(x, y));
        int differ = 0;
        for (size_t i = 0; i < 30; i++)
            differ += !json_equal(json_array_get(x, i), json_array_get(z, i));
        CHECK(differ == 30);
        json_decref(x);
        json_decref(y);
        json_decref(z);
    }

    /* random and grid: a config depends on its index, not on the order asked */
    static const char *stateless[] = {"random", "grid"};
    for (int a = 0; a < 2; a++) {
        tune_search *s1 = search_from(stateless[a], sp, 3, NULL);
        tune_search *s2 = search_from(stateless[a], sp, 3, NULL);
        json_t *late = next_config(s2, 2);
        json_t *c0 = next_config(s1, 0), *c1 = next_config(s1, 1), *c2 = next_config(s1, 2);
        json_t *again = next_config(s1, 0);
        CHECK(json_equal(late, c2) && json_equal(again, c0) && !json_equal(c0, c1));
        json_decref(late);
        json_decref(c0);
        json_decref(c1);
        json_decref(c2);
        json_decref(again);
        tune_search_destroy(&s1);
        tune_search_destroy(&s2);
    }

    /* random search picks grid params uniformly */
    tune_search *s = search_from("random", sp, 4, NULL);
    int counts[3] = {0};
    for (int i = 0; i < 3000; i++) {
        json_t *c = next_config(s, i);
        json_int_t l = json_integer_value(json_object_get(c, "layers"));
        if (l >= 1 && l <= 3)
            counts[l - 1]++;
        json_decref(c);
    }
    CHECK(counts[0] > 850 && counts[1] > 850 && counts[2] > 850);
    tune_search_destroy(&s);
    tune_space_destroy(&sp);
}

/* ---- TPE on a space of every kind ----------------------------------------- */

static int config_valid(const json_t *c)
{
    double lr = json_real_value(json_object_get(c, "lr"));
    json_int_t h = json_integer_value(json_object_get(c, "hidden"));
    json_int_t l = json_integer_value(json_object_get(c, "layers"));
    double d = json_real_value(json_object_get(c, "dropout"));
    json_t *bj = json_object_get(c, "batch"), *wj = json_object_get(c, "width");
    json_int_t b = json_integer_value(bj), w = json_integer_value(wj);
    double wd = json_real_value(json_object_get(c, "wd"));
    double m = json_real_value(json_object_get(c, "mom"));
    return json_object_size(c) == 9 && lr >= 1e-4 && lr <= 1e-1 &&
           (h == 32 || h == 64 || h == 128) && l >= 1 && l <= 3 && d >= 0 && d <= 0.5 &&
           json_is_integer(bj) && b >= 16 && b < 128 && json_is_integer(wj) && w >= 8 &&
           w <= 256 && w % 8 == 0 && wd >= 1e-6 && wd <= 1e-2 && is_clean_decimal(wd, 6) &&
           m >= 0.8 && m <= 0.99 && is_clean_decimal(m, 2) &&
           json_integer_value(json_object_get(c, "seed")) == 7;
}

static void test_tpe_every_kind(void)
{
    tune_space *sp = space_from(header_example);
    tune_search *s = search_from("tpe", sp, 21, "{\"n_startup\": 5}");
    int valid = 1;
    double best_early = INFINITY, best_late = INFINITY;
    for (int i = 0; i < 80; i++) {
        json_t *c = next_config(s, i);
        valid &= config_valid(c);
        double loss = toy_loss(c);
        if (i < 20)
            best_early = fmin(best_early, loss);
        else
            best_late = fmin(best_late, loss);
        tune_search_observe(s, c, loss);
        json_decref(c);
    }
    CHECK(valid);
    CHECK(best_late < best_early);
    /* configs it cannot place (missing, wrong types, out of range) are harmless */
    json_t *odd = parse_json("{\"lr\": -1, \"hidden\": 65, \"batch\": \"x\", \"mom\": 9,"
                             " \"layers\": [1], \"extra\": true}");
    tune_search_observe(s, odd, 0.0);
    tune_search_observe(s, odd, -1e9);
    json_decref(odd);
    json_t *c = next_config(s, 80);
    CHECK(config_valid(c));
    json_decref(c);
    tune_search_destroy(&s);
    tune_space_destroy(&sp);
}

/* ---- TPE against random search on Branin ------------------------------- */

static double branin(double x1, double x2)
{
    const double b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, t = 1 / (8 * M_PI);
    double a = x2 - b * x1 * x1 + c * x1 - 6;
    return a * a + 10 * (1 - t) * cos(x1) + 10;
}

/* The lowest Branin value a sweep of n sequential trials finds. */
static double branin_best(const char *algo, const tune_space *sp, uint64_t seed, int n)
{
    tune_search *s = search_from(algo, sp, seed, NULL);
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
        json_t *c = next_config(s, i);
        double f = branin(json_real_value(json_object_get(c, "x1")),
                          json_real_value(json_object_get(c, "x2")));
        best = fmin(best, f);
        tune_search_observe(s, c, f);
        json_decref(c);
    }
    tune_search_destroy(&s);
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void test_tpe_beats_random_on_branin(void)
{
    enum { SEEDS = 40, TRIALS = 60 };
    CHECK(fabs(branin(M_PI, 2.275) - 0.397887) < 1e-6); /* the global minimum */
    tune_space *sp = space_from("{\"x1\": {\"type\": \"uniform\", \"lower\": -5, \"upper\": 10},"
                                " \"x2\": {\"type\": \"uniform\", \"lower\": 0, \"upper\": 15}}");
    double tpe[SEEDS], rnd[SEEDS], tpe_mean = 0, rnd_mean = 0;
    int wins = 0;
    for (int k = 0; k < SEEDS; k++) {
        uint64_t seed = 1000 + (uint64_t)k;
        tpe[k] = branin_best("tpe", sp, seed, TRIALS);
        rnd[k] = branin_best("random", sp, seed, TRIALS);
        wins += tpe[k] < rnd[k];
        tpe_mean += tpe[k] / SEEDS;
        rnd_mean += rnd[k] / SEEDS;
    }
    double tpe_median = median(tpe, SEEDS), rnd_median = median(rnd, SEEDS);
    printf("branin, %d seeds x %d trials (minimum 0.397887):\n"
           "  tpe    mean best %.4f  median best %.4f\n"
           "  random mean best %.4f  median best %.4f\n"
           "  tpe better on %d of %d seeds\n",
           SEEDS, TRIALS, tpe_mean, tpe_median, rnd_mean, rnd_median, wins, SEEDS);
    CHECK(tpe_mean < rnd_mean);
    CHECK(tpe_median < rnd_median);
    CHECK(wins * 10 >= SEEDS * 7); /* at least 70% of the seeds */
    CHECK(tpe_mean < 0.8 * rnd_mean);
    tune_space_destroy(&sp);
}

int main(void)
{
    test_parse_errors();
    test_parse_ok();
    test_rng();
    test_sample_bounds();
    test_quantize();
    test_grid_search();
    test_options();
    test_reproducible();
    test_tpe_every_kind();
    test_tpe_beats_random_on_branin();
    return TEST_DONE();
}
