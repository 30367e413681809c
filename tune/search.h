/* tune/search.h — search algorithms: which config the next trial gets.
 *
 *   grid    every point of the grid params (tune/space.h), num_samples times
 *           (the non-grid params drawn anew each time); then exhausted.  With
 *           "shuffle": true each round visits the points in a seeded random
 *           order (asynchronous early stopping judges a trial against those
 *           before it, so an ordered grid would put all of one corner first).
 *   random  every param drawn independently (grid params: uniformly among
 *           their values); never exhausted.
 *   tpe     Tree-structured Parzen Estimator (Bergstra et al. 2011): the first
 *           n_startup trials random, then each config is the candidate, among
 *           n_candidates drawn from the "good" density l(x), that maximises
 *           l(x)/g(x), where the good set is the best gamma fraction of the
 *           observed trials.  Per parameter: Parzen windows (truncated
 *           Gaussians; in log space for log kinds) for numeric params,
 *           smoothed category frequencies for choice/grid.
 *
 * Reproducible: trial `index`'s config depends only on (seed, index, the
 * space, and — for tpe — the observations made before the call, in order).
 * Resuming a sweep re-observes its finished trials and asks for new indices.
 *
 * Options (JSON object, may be NULL):
 *   grid:   {"num_samples": 1, "shuffle": false}
 *   tpe:    {"n_startup": 10, "n_candidates": 24, "gamma": 0.25}
 * Unknown options are an error (LOOM_EINVAL).
 *
 * Losses are normalised by the caller: lower is better (a "max" objective is
 * passed negated).  NaN or infinite losses are ignored. */
#ifndef LOOM_TUNE_SEARCH_H
#define LOOM_TUNE_SEARCH_H

#include <jansson.h>
#include <stdint.h>

#include "tune/space.h"

typedef struct tune_search tune_search;

/* algo: "grid", "random" or "tpe".  The search keeps a pointer to space,
 * which must outlive it. */
int tune_search_new(const char *algo, const tune_space *space, uint64_t seed,
                    const json_t *options, tune_search **out, char *err, size_t errlen);
void tune_search_destroy(tune_search **s);

/* The config for trial `index` (0, 1, 2, …): 0 and a new reference in
 * *config, or LOOM_ENOTFOUND when the search is exhausted (grid). */
int tune_search_next(tune_search *s, int64_t index, json_t **config);

/* The trial with this config finished (or was stopped) with this loss. */
void tune_search_observe(tune_search *s, const json_t *config, double loss);

/* Trials the search can give in all: grid size × num_samples, or -1 when
 * unbounded. */
int64_t tune_search_total(const tune_search *s);

#endif
