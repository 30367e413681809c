/* tune/sched.h — trial schedulers: act on a trial's intermediate results.
 *
 * Each result a trial reports carries its progress t (the trial's iteration,
 * epoch, or another increasing "time" attribute; t >= 1 for the first) and
 * the objective as a loss (lower is better: the caller negates a "max"
 * metric).  The scheduler answers continue, stop (the trial ends now and its
 * resources are freed), or pause (the trial ends now but keeps its last
 * checkpoint; tune_sched_next_paused later says when it may go on from it).
 *
 * Spec (JSON object; unknown keys are an error):
 *   {"type": "fifo"}                          every trial runs to its end
 *   {"type": "median", "grace_period": 1, "min_samples": 3}
 *       median stopping rule (Golovin et al. 2017, Google Vizier): at t >=
 *       grace_period, stop a trial whose best loss so far is worse than the
 *       median of the other trials' running-average losses up to t, once at
 *       least min_samples other trials have reached t.
 *   {"type": "asha", "max_t": 81, "grace_period": 1, "reduction_factor": 3,
 *    "brackets": 1}
 *       asynchronous successive halving (Li et al. 2020): rungs at
 *       grace_period * rf^k (< max_t), per bracket; a trial reaching a rung
 *       goes on only if its loss is in the best 1/rf of those recorded at
 *       that rung so far (itself included); stop at max_t.  With brackets
 *       b > 1 trials are assigned round-robin to brackets whose first rung is
 *       grace_period * rf^i, i < b (async Hyperband).
 *   {"type": "hyperband", "max_t": 81, "reduction_factor": 3}
 *       synchronous Hyperband (Li et al. 2018): brackets s = s_max .. 0,
 *       s_max = floor(log_rf(max_t)), bracket s holding
 *       n = ceil((s_max+1) / (s+1) * rf^s) trials starting with resource
 *       r = max_t * rf^-s.  New trials fill the current bracket, then the
 *       next (after s = 0, start again at s_max).  A trial reaching its
 *       bracket's current milestone is paused; when every live trial of the
 *       bracket has reached it (or ended), the best floor(n/rf) (at least 1)
 *       go on to the next milestone (tune_sched_next_paused) and the rest
 *       stop.  At max_t a trial stops.
 * max_t: trials are stopped when t reaches it (all types but fifo; fifo
 * takes an optional max_t too).
 *
 * Deterministic: the same calls in the same order give the same answers, so
 * a resumed sweep rebuilds its scheduler by replaying its recorded results.
 * Trial ids are the caller's (>= 0), any order. */
#ifndef LOOM_TUNE_SCHED_H
#define LOOM_TUNE_SCHED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tune_decision {
    TUNE_CONTINUE = 0,
    TUNE_STOP = 1,
    TUNE_PAUSE = 2
} tune_decision;

typedef struct tune_sched tune_sched;

int tune_sched_new(const json_t *spec, tune_sched **out, char *err, size_t errlen);
void tune_sched_destroy(tune_sched **s);
/* "fifo", "median", "asha", "hyperband". */
const char *tune_sched_type(const tune_sched *s);
/* max_t of the spec, 0 when none. */
double tune_sched_max_t(const tune_sched *s);

/* A new trial (before its first result). */
void tune_sched_add(tune_sched *s, int64_t trial);
/* A result of a running trial. */
tune_decision tune_sched_result(tune_sched *s, int64_t trial, double t, double loss);
/* The trial ended by itself (its last result was t, loss; NaN when none). */
void tune_sched_complete(tune_sched *s, int64_t trial, double t, double loss);
/* The trial failed or was stopped from outside (budget, user): forget it as
 * a live trial (its recorded results still count for the others). */
void tune_sched_remove(tune_sched *s, int64_t trial);
/* A paused trial that should go on now, or -1.  Each one is returned once;
 * the caller resumes it from its checkpoint (or stops it when it cannot). */
int64_t tune_sched_next_paused(tune_sched *s);

/* Counts for a progress view: trials decided stopped or paused by the
 * scheduler so far. */
int64_t tune_sched_stopped(const tune_sched *s);

#endif
