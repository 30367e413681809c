/* tune/track_mlflow.c — a sweep as an MLflow file store (OUT/mlruns/): the
 * experiments' meta.yaml, and per trial a run folder with meta.yaml, params/,
 * metrics/, tags/ and artifacts/, in the layout of mlflow/store/tracking/
 * file_store.py (see tune/track.c). */
#include "tune/track_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loom/loom.h"

/* MLflow's RunStatus and SourceType codes (mlflow/entities). */
enum { RUN_RUNNING = 1, RUN_SCHEDULED = 2, RUN_FINISHED = 3, RUN_FAILED = 4, RUN_KILLED = 5 };
enum { SOURCE_LOCAL = 4 };

static int run_status(const char *state)
{
    static const struct { const char *state; int status; } map[] = {
        {"pending", RUN_SCHEDULED}, {"paused", RUN_SCHEDULED}, {"running", RUN_RUNNING},
        {"completed", RUN_FINISHED}, {"stopped", RUN_FINISHED}, /* early stopping is an end */
        {"failed", RUN_FAILED}, {"cancelled", RUN_KILLED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(state, map[i].state))
            return map[i].status;
    return RUN_RUNNING;
}

/* The spec's "trial" as one line for MLflow's source name. */
static void source_name(const track_ctx *c, loom_buf *b)
{
    const json_t *trial = json_object_get(c->spec, "trial");
    const json_t *argv = json_object_get(trial, "command");
    const char *lib = json_string_value(json_object_get(trial, "library"));
    for (size_t i = 0; i < json_array_size(argv); i++) {
        if (i)
            loom__buf_puts(b, " ");
        track_value_text(b, json_array_get(argv, i));
    }
    if (lib) {
        const char *fn = json_string_value(json_object_get(trial, "function"));
        const char *actor = json_string_value(json_object_get(trial, "actor"));
        loom__buf_appendf(b, "%s%s%s", lib, fn || actor ? ":" : "", fn ? fn : actor ? actor : "");
    }
}

/* ---- MLflow file store ----------------------------------------------------- */

static int mlflow_experiment_meta(track_ctx *c, const char *exp_id, const char *name,
                                  long long created, long long updated)
{
    char dir[PATH_MAX], path[PATH_MAX];
    int rc = track_path_fmt(c, dir, "%s/mlruns/%s", c->out, exp_id);
    if (!rc)
        rc = track_path_fmt(c, path, "%s/meta.yaml", dir);
    if (!rc)
        rc = track_mkdir_p(c, dir);
    if (rc)
        return rc;
    loom_buf uri = {0}, b = {0};
    track_file_uri(&uri, dir);
    track_yaml_kv(&b, "artifact_location", uri.p ? uri.p : "");
    loom__buf_appendf(&b, "creation_time: %lld\n", created);
    track_yaml_kv(&b, "experiment_id", exp_id);
    loom__buf_appendf(&b, "last_update_time: %lld\n", updated);
    loom__buf_puts(&b, "lifecycle_stage: active\n");
    track_yaml_kv(&b, "name", name);
    if (uri.oom)
        b.oom = 1;
    rc = track_write_sbuf(c, dir, path, &b);
    loom__buf_free(&uri);
    loom__buf_free(&b);
    return rc;
}

/* mlruns/ with the Default experiment (kept if there), the trash folder
 * MLflow makes on opening, and this sweep's experiment. */
int track_mlflow_experiments(track_ctx *c)
{
    char path[PATH_MAX], name[64];
    struct stat st;
    int rc = track_path_fmt(c, path, "%s/mlruns/.trash", c->out);
    if (!rc)
        rc = track_mkdir_p(c, path);
    if (!rc)
        rc = track_path_fmt(c, path, "%s/mlruns/0/meta.yaml", c->out);
    if (!rc && stat(path, &st))
        rc = mlflow_experiment_meta(c, "0", "Default", c->created_ms, c->created_ms);
    if (rc)
        return rc;
    if (!c->name || !*c->name)
        snprintf(name, sizeof name, "sweep-%.40s", c->sweep_id);
    long long updated = c->has_ended && c->ended_ms > c->created_ms ? c->ended_ms : c->created_ms;
    return mlflow_experiment_meta(c, c->exp_id, c->name && *c->name ? c->name : name,
                                  c->created_ms, updated);
}

static int mlflow_run_meta(track_ctx *c, const trial_info *t, const char *run_dir)
{
    char path[PATH_MAX], art[PATH_MAX];
    int rc = track_path_fmt(c, path, "%s/meta.yaml", run_dir);
    if (!rc)
        rc = track_path_fmt(c, art, "%s/artifacts", run_dir);
    if (rc)
        return rc;
    loom_buf uri = {0}, b = {0};
    track_file_uri(&uri, art);
    track_yaml_kv(&b, "artifact_uri", uri.p ? uri.p : "");
    if (t->has_end)
        loom__buf_appendf(&b, "end_time: %lld\n", t->end_ms);
    else
        loom__buf_puts(&b, "end_time: null\n");
    loom__buf_puts(&b, "entry_point_name: ''\n");
    track_yaml_kv(&b, "experiment_id", c->exp_id);
    loom__buf_puts(&b, "lifecycle_stage: active\n");
    track_yaml_kv(&b, "run_id", t->run_id);
    track_yaml_kv(&b, "run_name", t->name);
    track_yaml_kv(&b, "run_uuid", t->run_id);
    loom__buf_puts(&b, "source_name: ''\n");
    loom__buf_appendf(&b, "source_type: %d\n", SOURCE_LOCAL);
    loom__buf_puts(&b, "source_version: ''\n");
    loom__buf_appendf(&b, "start_time: %lld\n", track_trial_start_ms(c, t));
    loom__buf_appendf(&b, "status: %d\n", run_status(t->state));
    loom__buf_puts(&b, "tags: []\n");
    track_yaml_kv(&b, "user_id", c->user);
    if (uri.oom)
        b.oom = 1;
    rc = track_write_sbuf(c, run_dir, path, &b);
    loom__buf_free(&uri);
    loom__buf_free(&b);
    return rc;
}

/* Write text as run_dir/sub/file (its temporary in run_dir, which MLflow
 * does not list); keep collects the file names written. */
static int mlflow_write_value(track_ctx *c, const char *run_dir, const char *sub,
                              const char *file, const loom_buf *text, json_t *keep)
{
    char path[PATH_MAX];
    int rc = track_path_fmt(c, path, "%s/%s/%s", run_dir, sub, file);
    if (!rc)
        rc = track_write_sbuf(c, run_dir, path, text);
    if (!rc && json_object_set_new(keep, file, json_true()))
        rc = track_fail(c, LOOM_ENOMEM, "out of memory");
    return rc;
}

/* The end of writing run_dir/sub (params, metrics) after its values, when
 * rc is 0: remove the files not in keep.  Frees keys, names and keep; returns
 * rc or the pruning's error. */
static int mlflow_values_done(track_ctx *c, const char *run_dir, const char *sub, int rc,
                              const char **keys, json_t *names, json_t *keep)
{
    char dir[PATH_MAX];
    if (!rc)
        rc = track_path_fmt(c, dir, "%s/%s", run_dir, sub);
    if (!rc)
        rc = track_prune_dir(c, dir, keep, NULL);
    free(keys);
    json_decref(names);
    json_decref(keep);
    return rc;
}

static int mlflow_params(track_ctx *c, const trial_info *t, const char *run_dir)
{
    const char **keys = NULL;
    size_t n = 0;
    json_t *names = NULL, *keep = json_object();
    int rc = keep ? track_sorted_keys(t->config, &keys, &n) : LOOM_ENOMEM;
    if (!rc)
        rc = track_safe_names(keys, n, &names);
    if (rc)
        rc = track_fail(c, rc, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        loom_buf b = {0};
        track_value_text(&b, json_object_get(t->config, keys[i]));
        rc = mlflow_write_value(c, run_dir, "params",
                                json_string_value(json_object_get(names, keys[i])), &b, keep);
        loom__buf_free(&b);
    }
    return mlflow_values_done(c, run_dir, "params", rc, keys, names, keep);
}

/* "<timestamp_ms> <value> <step>" lines of one metric; step is the result's
 * t (rounded down when fractional: MLflow steps are integers). */
static void metric_lines(const track_ctx *c, const trial_info *t, const char *name, loom_buf *b)
{
    long long fallback = track_trial_start_ms(c, t);
    for (size_t i = 0; i < json_array_size(t->results); i++) {
        const json_t *r = json_array_get(t->results, i);
        const json_t *v = json_object_get(track_result_metrics(t, i), name);
        if (!json_is_number(v))
            continue;
        long long ms = fallback, step = (long long)i + 1;
        track_get_ll(r, "time_ms", &ms);
        const json_t *tv = json_object_get(r, "t");
        if (json_is_integer(tv))
            step = (long long)json_integer_value(tv);
        else if (json_is_real(tv) && fabs(json_real_value(tv)) < 9.2e18)
            step = (long long)floor(json_real_value(tv));
        char num[40];
        track_number_text(v, num);
        loom__buf_appendf(b, "%lld %s %lld\n", ms < 0 ? 0 : ms, num, step);
    }
}

static int mlflow_metrics(track_ctx *c, const trial_info *t, const char *run_dir)
{
    const char **keys = NULL;
    size_t n = 0;
    json_t *set = track_metric_names(t), *names = NULL, *keep = json_object();
    int rc = set && keep ? track_sorted_keys(set, &keys, &n) : LOOM_ENOMEM;
    if (!rc)
        rc = track_safe_names(keys, n, &names);
    if (rc)
        rc = track_fail(c, rc, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        loom_buf b = {0};
        metric_lines(c, t, keys[i], &b);
        rc = mlflow_write_value(c, run_dir, "metrics",
                                json_string_value(json_object_get(names, keys[i])), &b, keep);
        loom__buf_free(&b);
    }
    rc = mlflow_values_done(c, run_dir, "metrics", rc, keys, names, keep);
    json_decref(set);
    return rc;
}

static int mlflow_tag(track_ctx *c, const char *run_dir, const char *name, const char *value,
                      json_t *keep)
{
    loom_buf b = {0};
    loom__buf_puts(&b, value);
    int rc = mlflow_write_value(c, run_dir, "tags", name, &b, keep);
    loom__buf_free(&b);
    return rc;
}

/* MLflow's system tags and loom's; stale loom.* tags are removed, others
 * (a note written in the MLflow UI) kept. */
static int mlflow_tags(track_ctx *c, const trial_info *t, const char *run_dir)
{
    json_t *keep = json_object();
    if (!keep)
        return track_fail(c, LOOM_ENOMEM, "out of memory");
    char id[32];
    snprintf(id, sizeof id, "%lld", t->id);
    loom_buf src = {0};
    source_name(c, &src);
    const char *error = json_string_value(json_object_get(t->rec, "error"));
    int rc = src.oom ? track_fail(c, LOOM_ENOMEM, "out of memory") : 0;
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.runName", t->name, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.user", c->user, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.source.name", src.p ? src.p : "", keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "mlflow.source.type", "LOCAL", keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "loom.sweep_id", c->sweep_id, keep);
    if (!rc && c->name)
        rc = mlflow_tag(c, run_dir, "loom.sweep_name", c->name, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "loom.trial_id", id, keep);
    if (!rc)
        rc = mlflow_tag(c, run_dir, "loom.trial_state", t->state, keep);
    if (!rc && error)
        rc = mlflow_tag(c, run_dir, "loom.error", error, keep);
    char dir[PATH_MAX];
    if (!rc)
        rc = track_path_fmt(c, dir, "%s/tags", run_dir);
    if (!rc)
        rc = track_prune_dir(c, dir, keep, "loom.");
    loom__buf_free(&src);
    json_decref(keep);
    return rc;
}

/* The run's files; meta.yaml last, so a run listed is a run complete. */
int track_mlflow_run(track_ctx *c, const trial_info *t)
{
    static const char *const subs[] = {"params", "metrics", "tags", "artifacts"};
    char run_dir[PATH_MAX], dir[PATH_MAX];
    int rc = track_path_fmt(c, run_dir, "%s/mlruns/%s/%s", c->out, c->exp_id, t->run_id);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0] && !rc; i++) {
        rc = track_path_fmt(c, dir, "%s/%s", run_dir, subs[i]);
        if (!rc)
            rc = track_mkdir_p(c, dir);
    }
    if (!rc)
        rc = mlflow_params(c, t, run_dir);
    if (!rc)
        rc = mlflow_metrics(c, t, run_dir);
    if (!rc)
        rc = mlflow_tags(c, t, run_dir);
    if (!rc)
        rc = mlflow_run_meta(c, t, run_dir);
    return rc;
}
