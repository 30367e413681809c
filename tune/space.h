/* tune/space.h — a sweep's search space: parsed from JSON, sampled, enumerated.
 *
 * The space is a JSON object, one entry per hyperparameter:
 *   {"lr":      {"type": "loguniform", "lower": 1e-4, "upper": 1e-1},
 *    "hidden":  {"type": "choice", "values": [32, 64, 128]},
 *    "layers":  {"type": "grid", "values": [1, 2, 3]},
 *    "dropout": {"type": "uniform", "lower": 0.0, "upper": 0.5},
 *    "batch":   {"type": "randint", "lower": 16, "upper": 128},      // [lower, upper)
 *    "wd":      {"type": "qloguniform", "lower": 1e-6, "upper": 1e-2, "q": 1e-6},
 *    "width":   {"type": "qrandint", "lower": 8, "upper": 256, "q": 8}, // inclusive upper
 *    "mom":     {"type": "quniform", "lower": 0.8, "upper": 0.99, "q": 0.01},
 *    "seed":    7}                                         // a constant: any JSON value
 * Types: choice, grid, uniform, quniform, loguniform, qloguniform, randint,
 * qrandint.  Quantized values are round(x / q) * q, clipped into [lower, upper].
 * A config is a JSON object with one value per name (integers for randint and
 * qrandint, numbers for the others, the listed JSON value for choice/grid).
 *
 * Errors: LOOM_EINVAL with a message naming the parameter in err.
 * Ownership: tune_space_parse copies what it needs from spec; the space is
 * freed with tune_space_destroy. */
#ifndef LOOM_TUNE_SPACE_H
#define LOOM_TUNE_SPACE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tune_param_kind {
    TUNE_CONST = 0,
    TUNE_CHOICE,
    TUNE_GRID,
    TUNE_UNIFORM,
    TUNE_QUNIFORM,
    TUNE_LOGUNIFORM,
    TUNE_QLOGUNIFORM,
    TUNE_RANDINT,
    TUNE_QRANDINT
} tune_param_kind;

typedef struct tune_param {
    char *name;
    tune_param_kind kind;
    double lower, upper, q;  /* numeric kinds (q = 0: not quantized) */
    json_t *values;          /* choice/grid: the array (owned); const: the value */
} tune_param;

typedef struct tune_space {
    tune_param *params;
    int nparams;
} tune_space;

int tune_space_parse(const json_t *spec, tune_space **out, char *err, size_t errlen);
void tune_space_destroy(tune_space **s);

/* Number of points of the grid part (product of the grid params' sizes; 1
 * when there is none). */
int64_t tune_space_grid_size(const tune_space *s);

/* A small seeded generator (splitmix64 seeding xoshiro256**): the same seed
 * gives the same sequence on every machine. */
typedef struct tune_rng {
    uint64_t s[4];
} tune_rng;
void tune_rng_seed(tune_rng *r, uint64_t seed);
uint64_t tune_rng_next(tune_rng *r);
double tune_rng_uniform(tune_rng *r); /* [0, 1) */
/* A seed derived from (seed, a, b): independent streams per trial. */
uint64_t tune_rng_mix(uint64_t seed, uint64_t a, uint64_t b);

/* Draw one value of param p (not for grid: those come from the grid index). */
json_t *tune_param_sample(const tune_param *p, tune_rng *r);
/* Apply p's quantization and bounds to x (numeric kinds). */
double tune_param_quantize(const tune_param *p, double x);

/* The config of grid point grid_index (0 .. grid_size-1, the first grid
 * param varying slowest), with every non-grid param drawn from r. */
json_t *tune_space_config(const tune_space *s, int64_t grid_index, tune_rng *r);

#endif
