/* tune/track.h — a sweep's results on disk: the table of trials (CSV and
 * JSON), the best trial, each trial as an MLflow run in the file-store layout
 * (OUT/mlruns/, readable by `mlflow ui --backend-store-uri OUT/mlruns`), and
 * each trial as a W3C PROV-JSON document (OUT/prov/).
 *
 * Records (jansson objects, as the sweep controller keeps them):
 *
 *   sweep: {"id": "9f0c…" (hex), "name": "digits-asha",
 *           "spec": {... the sweep spec: "metric", "mode" ("min"|"max"),
 *                    "space", "search", "scheduler", "trial", "data"?...},
 *           "created_ms": epoch ms, "ended_ms": epoch ms or absent,
 *           "state": "running"|"completed"|"stopped"|"failed"|"budget",
 *           "best_trial": id or null,
 *           "usage": {"wall_s", "gpu_hours", "cpu_hours", "trials",
 *                     "iterations"}}
 *   trial: {"id": 3, "name": "trial_0003", "config": {...},
 *           "state": "pending"|"running"|"paused"|"completed"|"stopped"|
 *                    "failed"|"cancelled",
 *           "results": [{"t": 1, "metrics": {"accuracy": 0.91, ...},
 *                        "time_ms": epoch ms}, ...],
 *           "best": the best objective value reported (in the metric's own
 *                   sign) or null, "best_t": its t,
 *           "last": the last metrics object or null,
 *           "start_ms", "end_ms" (absent while running),
 *           "cpu_seconds", "gpu_seconds": resources held × time,
 *           "attempts": times started (resumes included),
 *           "error": message (failed trials),
 *           "artifacts": [{"name": "model.safetensors", "sha256": hex,
 *                          "bytes": n}] (optional)}
 *
 * The spec's "trial" holds what ran: {"command": [argv...]} or {"library":
 * path, "function": name} or {"library": path, "actor": class}; "data" (optional) is
 * an array of dataset references (paths or URIs) the trials read.  PROV
 * records them as the code and data entities used, with sha256 digests of
 * the files that exist locally.
 *
 * Idempotent: writing a trial again replaces its run and document (run ids
 * are derived from the sweep id and trial id), so a resumed sweep rewrites
 * rather than duplicates.  Errors: LOOM_EIO / LOOM_EINVAL with a message in
 * err. */
#ifndef LOOM_TUNE_TRACK_H
#define LOOM_TUNE_TRACK_H

#include <jansson.h>
#include <stddef.h>

/* OUT/mlruns/<experiment>/<run>/… and OUT/prov/trial_NNNN.json for one trial. */
int tune_track_trial(const char *out_dir, const json_t *sweep, const json_t *trial,
                     char *err, size_t errlen);

/* OUT/results.csv (one row per trial: id, state, t, the objective, best,
 * cpu/gpu seconds, then config.NAME and metric columns), OUT/results.json
 * ({"sweep": sweep, "trials": [...]}), OUT/best.json (the best trial, or
 * null) and OUT/prov/sweep.json (the sweep as an activity that started every
 * trial).  trials is an array of trial records. */
int tune_track_results(const char *out_dir, const json_t *sweep, const json_t *trials,
                       char *err, size_t errlen);

/* The MLflow run id of a trial (32 hex chars + NUL). */
void tune_track_run_id(const char *sweep_id, long long trial_id, char out[33]);

#endif
