/* loom/tune.h — hyperparameter sweeps (libloom_tune.so): the driver side that
 * runs a sweep, and the trial side that trials report through.
 *
 * A sweep is described by a JSON spec (README "Sweeps"; tune/README.md):
 *
 *   {"name": "digits-asha", "metric": "accuracy", "mode": "max",
 *    "space": {"lr": {"type": "loguniform", "lower": 1e-3, "upper": 0.5}, ...},
 *    "search": {"algorithm": "random"|"grid"|"tpe", "seed": 1, ...options},
 *    "scheduler": {"type": "fifo"|"median"|"asha"|"hyperband", ...},
 *    "trial": {"command": ["python3", "train.py", "--lr", "{lr}"]}
 *           | {"library": "libmytrials.so", "function": "train"}
 *           | {"library": "libmytrials.so", "actor": "Trainer"},
 *    "resources": {"cpus": 1, "gpus": 0,
 *                  "bundles": [{"cpus": 1, "gpus": 1}, ...], "strategy": "PACK"},
 *    "limits": {"trials": 50, "concurrent": 4, "gpu_hours": 2.0,
 *               "cpu_hours": 10, "wall_seconds": 3600},
 *    "output": "tune-results/digits-asha", "data": ["digits.csv"],
 *    "register": {"name": "digits", "artifact": "model.safetensors"}}
 *
 * Every state change of a sweep is written to the cluster's key-value table,
 * which the head keeps in LMDB: a sweep outlives its head (restarted) and its
 * driver (loom_sweep_open + run again resumes it).
 *
 * Trials report results (a progress "t" and metrics) and are answered
 * continue, stop or pause by the sweep's scheduler.  A trial that is a task
 * function reads its config and reports with loom_tune_trial_*; a command
 * reports through lines on stdout or a socket (tune/README.md, "Protocol").
 */
#ifndef LOOM_TUNE_H
#define LOOM_TUNE_H

#include "loom/export.h"

#include <stddef.h>
#include <stdint.h>

#include "loom/loom.h"
#include "loom/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- trial side: inside a task function started by a sweep ------------- */

enum { LOOM_TUNE_CONTINUE = 0, LOOM_TUNE_STOP = 1, LOOM_TUNE_PAUSE = 2 };

typedef struct loom_tune_trial loom_tune_trial;

/* The trial this task function runs (its arguments 0 and 1, as the sweep
 * passes them).  LOOM_EINVAL when the task was not started by a sweep. */
LOOM_API int loom_tune_trial_open(loom_task_ctx *ctx, loom_tune_trial **out);
LOOM_API void loom_tune_trial_close(loom_tune_trial **t);

/* The config as JSON text, and one parameter by name (LOOM_ENOTFOUND when
 * absent, LOOM_EINVAL when of another type; integers read as f64 too). */
LOOM_API const char *loom_tune_trial_config(const loom_tune_trial *t);
LOOM_API int loom_tune_trial_f64(const loom_tune_trial *t, const char *name, double *out);
LOOM_API int loom_tune_trial_i64(const loom_tune_trial *t, const char *name, int64_t *out);
LOOM_API int loom_tune_trial_str(const loom_tune_trial *t, const char *name, const char **out);
/* A trial whose spec asks for "bundles" runs in bundle 0 of a placement
 * group made for it; the group, for its other workers (loom_task_opts.pg,
 * .bundle).  LOOM_ENOTFOUND when it has none. */
LOOM_API int loom_tune_trial_pg(const loom_tune_trial *t, loom_pg *out);

/* Sweep id (hex) and trial number. */
LOOM_API const char *loom_tune_trial_sweep(const loom_tune_trial *t);
LOOM_API int64_t loom_tune_trial_id(const loom_tune_trial *t);

/* The checkpoint to go on from (a paused trial resumed, or a trial restarted
 * after its node or the head died): its bytes and the t it was taken at.
 * *len = 0 and *t = 0 when the trial starts afresh.  Valid until close. */
LOOM_API int loom_tune_trial_checkpoint(const loom_tune_trial *t, const void **data, size_t *len,
                               double *at);

/* Report a result: progress `step` (> the previous one), metrics as a JSON
 * object text ({"accuracy": 0.93, "loss": 0.2}), and optionally a checkpoint
 * (ckpt, ckpt_len; up to 64 MiB) to resume from should the trial be paused.
 * Waits for the scheduler: returns LOOM_TUNE_CONTINUE, LOOM_TUNE_STOP or
 * LOOM_TUNE_PAUSE (>= 0; on the last two the function should return at once),
 * or a negative error. */
LOOM_API int loom_tune_trial_report(loom_tune_trial *t, double step, const char *metrics_json,
                           const void *ckpt, size_t ckpt_len);

/* Keep a file the trial made (a model) as an artifact of the trial: its
 * bytes are stored with the sweep (up to 64 MiB), listed in the results and
 * the trial's lineage, and registered when the sweep registers its best. */
LOOM_API int loom_tune_trial_artifact(loom_tune_trial *t, const char *name, const void *data,
                             size_t len);

/* ---- driver side -------------------------------------------------------- */

typedef struct loom_sweep loom_sweep;

/* Check spec_json and create a sweep (not started): its id is new, its spec
 * and state are stored in the cluster.  Errors: LOOM_EINVAL and others, with
 * the reason in loom_sweep_last_error(). */
LOOM_API int loom_sweep_create(loom_client *c, const char *spec_json, loom_sweep **out);
/* Open a stored sweep to resume it (or to read it).  LOOM_ENOTFOUND. */
LOOM_API int loom_sweep_open(loom_client *c, const char *sweep_id, loom_sweep **out);
LOOM_API void loom_sweep_destroy(loom_sweep **s);

LOOM_API const char *loom_sweep_id(const loom_sweep *s);

/* Why the last loom_sweep_* call of this thread failed ("" if none). */
LOOM_API const char *loom_sweep_last_error(void);

/* A snapshot for progress views. */
typedef struct loom_sweep_progress {
    int64_t trials;         /* created so far */
    int running, paused;
    int64_t completed, stopped, failed;
    int has_best;
    double best;            /* best objective value so far (metric's own sign) */
    int64_t best_trial;
    double wall_s, gpu_hours, cpu_hours; /* used */
    double wall_limit_s, gpu_hours_limit, cpu_hours_limit; /* 0: none */
    int64_t trials_limit;   /* 0: none */
    int64_t iterations;     /* results reported by all trials */
    int done;               /* 1 once the sweep has ended */
    const char *state;      /* "running", "completed", "stopped", "budget", "failed" */
} loom_sweep_progress;

typedef void (*loom_sweep_progress_fn)(const loom_sweep_progress *p, void *arg);

/* Run (or resume) the sweep until it ends: all trials done, a limit reached,
 * or a stop asked (loom_sweep_request_stop, here or from another client).
 * progress (may be NULL) is called about every interval_ms and at the end.
 * Returns 0 when the sweep ended (its state says how), or an error. */
LOOM_API int loom_sweep_run(loom_sweep *s, loom_sweep_progress_fn progress, void *arg,
                   int interval_ms);

/* Make loom_sweep_run return soon (async-signal-safe: a signal handler may
 * call it).  The trials go on without a driver; loom_sweep_open and
 * loom_sweep_run take the sweep up again. */
LOOM_API void loom_sweep_interrupt(loom_sweep *s);

/* The sweep's record with all its trials, as JSON ({"sweep", "trials"}).
 * Caller frees. */
LOOM_API int loom_sweep_json(loom_sweep *s, char **json);

/* Ask a sweep to stop: its driver stops its trials and ends it; when no driver
 * runs it (it died), this stops its trials and ends it now. */
LOOM_API int loom_sweep_request_stop(loom_client *c, const char *sweep_id);

/* Sweeps stored in the cluster, newest first: [{"id","name","state",
 * "created_ms","trials","best"}].  Caller frees. */
LOOM_API int loom_sweeps_json(loom_client *c, char **json);

#ifdef __cplusplus
}
#endif
#endif
