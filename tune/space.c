/* tune/space.c — a sweep's search space (tune/space.h): parsing and strict
 * validation of the JSON spec, the seeded generator every search draws from
 * (splitmix64 seeding xoshiro256**, identical on every machine), sampling
 * and quantization of one parameter, and enumeration of the grid part.
 *
 * Quantized values are snapped to the multiples of q that lie inside
 * [lower, upper] and rounded to the decimal digits q itself has, so that
 * q = 0.1 gives 0.3 rather than 0.30000000000000004. */
#include "tune/space.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "tune/util.h"

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: integers exact in a double */
#define MAX_GRID_SIZE ((int64_t)1 << 53)
#define QUANT_EPS 1e-9                   /* slack for x/q that should be whole */
#define MAX_DECIMALS 22                  /* 10^22 is the last exact power of 10 */

/* ---- the generator ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tune_rng_seed(tune_rng *r, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&state);
}

uint64_t tune_rng_next(tune_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tune_rng_uniform(tune_rng *r)
{
    return (double)(tune_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t tune_rng_mix(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t state = seed;
    uint64_t h = splitmix64(&state);
    state = h ^ a;
    h = splitmix64(&state);
    state = h ^ (b * 0xd1b54a32d192ed03ULL + 0x2545f4914f6cdd1dULL);
    return splitmix64(&state);
}

/* Uniform integer in [0, n), n > 0, without modulo bias. */
static uint64_t rng_below(tune_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = tune_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* ---- parsing ------------------------------------------------------------ */

static const struct {
    const char *name;
    tune_param_kind kind;
} kind_names[] = {
    {"const", TUNE_CONST},           {"choice", TUNE_CHOICE},
    {"grid", TUNE_GRID},             {"uniform", TUNE_UNIFORM},
    {"quniform", TUNE_QUNIFORM},     {"loguniform", TUNE_LOGUNIFORM},
    {"qloguniform", TUNE_QLOGUNIFORM}, {"randint", TUNE_RANDINT},
    {"qrandint", TUNE_QRANDINT},
};

static int kind_from_name(const char *name, tune_param_kind *kind)
{
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (!strcmp(kind_names[i].name, name)) {
            *kind = kind_names[i].kind;
            return 0;
        }
    return -1;
}

static int is_log_kind(tune_param_kind k)
{
    return k == TUNE_LOGUNIFORM || k == TUNE_QLOGUNIFORM;
}

static int is_int_kind(tune_param_kind k)
{
    return k == TUNE_RANDINT || k == TUNE_QRANDINT;
}

/* The keys a param object of this kind may have ("type" among them). */
static const char *const *allowed_keys(tune_param_kind k)
{
    static const char *const values[] = {"type", "values", NULL};
    static const char *const value[] = {"type", "value", NULL};
    static const char *const bounds[] = {"type", "lower", "upper", NULL};
    static const char *const qbounds[] = {"type", "lower", "upper", "q", NULL};
    switch (k) {
    case TUNE_CONST: return value;
    case TUNE_CHOICE:
    case TUNE_GRID: return values;
    case TUNE_UNIFORM:
    case TUNE_LOGUNIFORM:
    case TUNE_RANDINT: return bounds;
    default: return qbounds;
    }
}

static int check_keys(const char *name, const json_t *obj, tune_param_kind k,
                      char *err, size_t errlen)
{
    const char *key = tune_unknown_key(obj, allowed_keys(k));
    return key ? tune_fail(err, errlen, "parameter '%s': unknown key '%s'", name, key) : 0;
}

/* A finite number under `key`; `required` says whether it may be absent. */
static int get_number(const char *name, const json_t *obj, const char *key,
                      int required, double *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return tune_fail(err, errlen, "parameter '%s': missing \"%s\"", name, key);
        return 1;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return tune_fail(err, errlen, "parameter '%s': \"%s\" must be a finite number", name, key);
    *out = json_number_value(v);
    return 0;
}

static int is_whole(double x)
{
    return x == floor(x) && fabs(x) <= MAX_EXACT_INT;
}

static int parse_values(const char *name, const json_t *obj, tune_param *p,
                        char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, "values");
    if (!v)
        return tune_fail(err, errlen, "parameter '%s': missing \"values\"", name);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return tune_fail(err, errlen, "parameter '%s': \"values\" must be a non-empty array", name);
    p->values = json_deep_copy(v);
    return p->values ? 0 : LOOM_ENOMEM;
}

static int parse_const_value(const char *name, const json_t *obj, tune_param *p,
                             char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, "value");
    if (!v)
        return tune_fail(err, errlen, "parameter '%s': missing \"value\"", name);
    p->values = json_deep_copy(v);
    return p->values ? 0 : LOOM_ENOMEM;
}

/* Multiples of q in [lower, upper]: k from *kmin to *kmax (log kinds: k >= 1). */
static void quant_range(const tune_param *p, double *kmin, double *kmax)
{
    *kmin = ceil(p->lower / p->q - QUANT_EPS);
    *kmax = floor(p->upper / p->q + QUANT_EPS);
    if (is_log_kind(p->kind) && *kmin < 1)
        *kmin = 1;
}

static int check_numeric(const char *name, tune_param *p, int has_q, char *err, size_t errlen)
{
    if (!(p->lower < p->upper))
        return tune_fail(err, errlen, "parameter '%s': lower (%g) must be below upper (%g)",
                         name, p->lower, p->upper);
    if (is_log_kind(p->kind) && !(p->lower > 0))
        return tune_fail(err, errlen, "parameter '%s': %s needs positive bounds (lower is %g)",
                         name, p->kind == TUNE_LOGUNIFORM ? "loguniform" : "qloguniform", p->lower);
    if (is_int_kind(p->kind) && (!is_whole(p->lower) || !is_whole(p->upper)))
        return tune_fail(err, errlen, "parameter '%s': bounds must be integers (at most 2^53)", name);
    if (has_q && !(p->q > 0))
        return tune_fail(err, errlen, "parameter '%s': q must be positive (is %g)", name, p->q);
    if (p->kind == TUNE_QRANDINT && !is_whole(p->q))
        return tune_fail(err, errlen, "parameter '%s': q must be an integer (is %g)", name, p->q);
    if (p->q > 0) {
        double kmin, kmax;
        quant_range(p, &kmin, &kmax);
        if (kmin > kmax)
            return tune_fail(err, errlen, "parameter '%s': no multiple of q (%g) in [%g, %g]",
                             name, p->q, p->lower, p->upper);
        if (fabs(kmin) > MAX_EXACT_INT || fabs(kmax) > MAX_EXACT_INT)
            return tune_fail(err, errlen, "parameter '%s': q (%g) too small for the bounds", name, p->q);
    }
    return 0;
}

static int parse_bounds(const char *name, const json_t *obj, tune_param *p,
                        char *err, size_t errlen)
{
    int rc;
    if ((rc = get_number(name, obj, "lower", 1, &p->lower, err, errlen)) ||
        (rc = get_number(name, obj, "upper", 1, &p->upper, err, errlen)))
        return rc;
    int has_q = 0;
    p->q = 0;
    if (p->kind == TUNE_QUNIFORM || p->kind == TUNE_QLOGUNIFORM || p->kind == TUNE_QRANDINT) {
        int required = p->kind != TUNE_QRANDINT; /* qrandint: q defaults to 1 */
        p->q = 1;
        rc = get_number(name, obj, "q", required, &p->q, err, errlen);
        if (rc < 0)
            return rc;
        has_q = 1;
    }
    return check_numeric(name, p, has_q, err, errlen);
}

static int parse_spec_object(const char *name, const json_t *obj, tune_param *p,
                             char *err, size_t errlen)
{
    json_t *type = json_object_get(obj, "type");
    if (!type)
        return tune_fail(err, errlen, "parameter '%s': missing \"type\"", name);
    if (!json_is_string(type))
        return tune_fail(err, errlen, "parameter '%s': \"type\" must be a string", name);
    if (kind_from_name(json_string_value(type), &p->kind) < 0)
        return tune_fail(err, errlen,
                         "parameter '%s': unknown type '%s' (choice, grid, uniform, quniform, "
                         "loguniform, qloguniform, randint, qrandint or const)",
                         name, json_string_value(type));
    int rc = check_keys(name, obj, p->kind, err, errlen);
    if (rc)
        return rc;
    switch (p->kind) {
    case TUNE_CONST: return parse_const_value(name, obj, p, err, errlen);
    case TUNE_CHOICE:
    case TUNE_GRID: return parse_values(name, obj, p, err, errlen);
    default: return parse_bounds(name, obj, p, err, errlen);
    }
}

/* One entry of the spec: an object is a typed parameter, anything else a constant. */
static int parse_param(const char *name, const json_t *value, tune_param *p,
                       char *err, size_t errlen)
{
    if (!name[0])
        return tune_fail(err, errlen, "parameter names must not be empty");
    p->name = strdup(name);
    if (!p->name)
        return LOOM_ENOMEM;
    if (!json_is_object(value)) {
        p->kind = TUNE_CONST;
        p->values = json_deep_copy(value);
        return p->values ? 0 : LOOM_ENOMEM;
    }
    return parse_spec_object(name, value, p, err, errlen);
}

static int check_grid_size(const tune_space *s, char *err, size_t errlen)
{
    int64_t size = 1;
    for (int i = 0; i < s->nparams; i++) {
        if (s->params[i].kind != TUNE_GRID)
            continue;
        int64_t n = (int64_t)json_array_size(s->params[i].values);
        if (size > MAX_GRID_SIZE / n)
            return tune_fail(err, errlen, "parameter '%s': the grid has too many points",
                             s->params[i].name);
        size *= n;
    }
    return 0;
}

int tune_space_parse(const json_t *spec, tune_space **out, char *err, size_t errlen)
{
    if (!out)
        return tune_fail(err, errlen, "no output for the search space");
    *out = NULL;
    if (!json_is_object(spec))
        return tune_fail(err, errlen, "search space must be a JSON object");
    tune_space *s = calloc(1, sizeof *s);
    size_t n = json_object_size(spec);
    if (!s || (n && !(s->params = calloc(n, sizeof *s->params)))) {
        free(s);
        return LOOM_ENOMEM;
    }
    const char *key;
    json_t *value;
    int rc = 0;
    json_object_foreach((json_t *)spec, key, value) {
        rc = parse_param(key, value, &s->params[s->nparams++], err, errlen);
        if (rc)
            break;
    }
    if (!rc)
        rc = check_grid_size(s, err, errlen);
    if (rc) {
        if (rc == LOOM_ENOMEM)
            tune_fail(err, errlen, "out of memory parsing the search space");
        tune_space_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

void tune_space_destroy(tune_space **sp)
{
    if (!sp || !*sp)
        return;
    tune_space *s = *sp;
    for (int i = 0; i < s->nparams; i++) {
        free(s->params[i].name);
        json_decref(s->params[i].values);
    }
    free(s->params);
    free(s);
    *sp = NULL;
}

int64_t tune_space_grid_size(const tune_space *s)
{
    int64_t size = 1;
    for (int i = 0; s && i < s->nparams; i++)
        if (s->params[i].kind == TUNE_GRID)
            size *= (int64_t)json_array_size(s->params[i].values);
    return size;
}

/* ---- quantization and sampling ------------------------------------------- */

/* Decimal digits of q (0.01 → 2, 0.25 → 2, 8 → 0), or -1 when q has more
 * than can be rounded to exactly. */
static int q_decimals(double q)
{
    double scale = 1;
    for (int d = 0; d <= MAX_DECIMALS; d++, scale *= 10) {
        double s = q * scale;
        if (fabs(s - round(s)) <= QUANT_EPS * s)
            return d;
    }
    return -1;
}

/* k·q, as the double nearest to its decimal value when q is a short decimal
 * (an integer divided by an exact power of ten rounds correctly). */
static double multiple_of_q(double k, double q)
{
    double v = k * q;
    int d = q_decimals(q);
    if (d <= 0)
        return v;
    double scale = 1;
    for (int i = 0; i < d; i++)
        scale *= 10;
    double m = round(v * scale);
    if (fabs(m) > MAX_EXACT_INT)
        return v;
    return m / scale;
}

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

double tune_param_quantize(const tune_param *p, double x)
{
    switch (p->kind) {
    case TUNE_UNIFORM:
    case TUNE_LOGUNIFORM: return clamp(x, p->lower, p->upper);
    case TUNE_RANDINT: return clamp(round(x), p->lower, p->upper - 1);
    case TUNE_QUNIFORM:
    case TUNE_QLOGUNIFORM:
    case TUNE_QRANDINT: {
        double kmin, kmax;
        quant_range(p, &kmin, &kmax);
        double k = clamp(round(x / p->q), kmin, kmax);
        return p->kind == TUNE_QRANDINT ? k * p->q : multiple_of_q(k, p->q);
    }
    default: return x;
    }
}

static double sample_log_uniform(const tune_param *p, tune_rng *r)
{
    double a = log(p->lower), b = log(p->upper);
    return exp(a + tune_rng_uniform(r) * (b - a));
}

static json_t *sample_qrandint(const tune_param *p, tune_rng *r)
{
    double kmin, kmax;
    quant_range(p, &kmin, &kmax);
    uint64_t k = rng_below(r, (uint64_t)(kmax - kmin) + 1);
    return json_integer((json_int_t)((kmin + (double)k) * p->q));
}

static json_t *sample_array_item(const json_t *values, tune_rng *r)
{
    size_t i = (size_t)rng_below(r, json_array_size(values));
    return json_deep_copy(json_array_get(values, i));
}

json_t *tune_param_sample(const tune_param *p, tune_rng *r)
{
    double u;
    switch (p->kind) {
    case TUNE_CONST: return json_deep_copy(p->values);
    case TUNE_CHOICE:
    case TUNE_GRID: return sample_array_item(p->values, r);
    case TUNE_UNIFORM:
        u = tune_rng_uniform(r);
        return json_real(clamp(p->lower + u * (p->upper - p->lower), p->lower, p->upper));
    case TUNE_QUNIFORM:
        u = tune_rng_uniform(r);
        return json_real(tune_param_quantize(p, p->lower + u * (p->upper - p->lower)));
    case TUNE_LOGUNIFORM: return json_real(tune_param_quantize(p, sample_log_uniform(p, r)));
    case TUNE_QLOGUNIFORM: return json_real(tune_param_quantize(p, sample_log_uniform(p, r)));
    case TUNE_RANDINT:
        return json_integer((json_int_t)p->lower +
                            (json_int_t)rng_below(r, (uint64_t)(p->upper - p->lower)));
    case TUNE_QRANDINT: return sample_qrandint(p, r);
    }
    return NULL;
}

/* The value grid param p takes at grid point grid_index, given the product
 * `stride` of the sizes of the grid params after it. */
static json_t *grid_value(const tune_param *p, int64_t grid_index, int64_t stride)
{
    int64_t n = (int64_t)json_array_size(p->values);
    return json_deep_copy(json_array_get(p->values, (size_t)((grid_index / stride) % n)));
}

json_t *tune_space_config(const tune_space *s, int64_t grid_index, tune_rng *r)
{
    int64_t size = tune_space_grid_size(s);
    if (grid_index < 0 || grid_index >= size)
        return NULL;
    json_t *config = json_object();
    int64_t stride = size;
    for (int i = 0; config && i < s->nparams; i++) {
        const tune_param *p = &s->params[i];
        json_t *v;
        if (p->kind == TUNE_GRID) {
            stride /= (int64_t)json_array_size(p->values);
            v = grid_value(p, grid_index, stride);
        } else {
            v = tune_param_sample(p, r);
        }
        if (json_object_set_new(config, p->name, v) < 0) {
            json_decref(config);
            config = NULL;
        }
    }
    return config;
}
