/* tune/sweep_spec.c — a sweep's spec read into the controller: its keys
 * checked, the trial kind (function, command, actor), the resources per
 * trial, the limits, and the space, search and scheduler built from it. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/tune.h"
#include "tune/sched.h"
#include "tune/search.h"
#include "tune/space.h"
#include "tune/track.h"
#include "tune/sweep_internal.h"
#include "tune/tune_internal.h"
#include "tune/util.h"

/* ---- the spec ---------------------------------------------------------------- */

/* LOOM_EINVAL, with "WHAT: unknown key \"KEY\"" as the last error, when o
 * has a key not in allowed. */
static int check_keys(loom_sweep *s, const json_t *o, const char *what, const char *const *allowed)
{
    (void)s;
    return tune_check_keys(o, allowed, what, sweep_err, sizeof sweep_err);
}

static int parse_resources(loom_sweep *s, const json_t *res)
{
    static const char *const keys[] = {"cpus", "gpus", "memory", "bundles", "strategy", NULL};
    s->cpus = 1;
    s->gpus = 0;
    if (!res) return LOOM_OK;
    if (!json_is_object(res)) return sweep_fail(s, LOOM_EINVAL, "resources: want an object");
    int rc = check_keys(s, res, "resources", keys);
    if (rc) return rc;
    s->cpus = sweep_num(res, "cpus", 1);
    s->gpus = sweep_num(res, "gpus", 0);
    if (s->cpus < 0 || s->gpus < 0) return sweep_fail(s, LOOM_EINVAL, "resources: cpus and gpus must be >= 0");
    json_t *b = json_object_get(res, "bundles");
    if (b) {
        if (!json_is_array(b) || !json_array_size(b) || json_array_size(b) > 64)
            return sweep_fail(s, LOOM_EINVAL, "resources.bundles: want 1..64 bundles");
        s->cpus = s->gpus = 0;
        size_t i;
        json_t *e;
        json_array_foreach(b, i, e) {
            if (!json_is_object(e)) return sweep_fail(s, LOOM_EINVAL, "resources.bundles[%zu]: want an object", i);
            s->cpus += sweep_num(e, "cpus", 0);
            s->gpus += sweep_num(e, "gpus", 0);
        }
    }
    const char *st = json_string_value(json_object_get(res, "strategy"));
    if (st && strcmp(st, "PACK") && strcmp(st, "SPREAD") && strcmp(st, "STRICT_PACK") &&
        strcmp(st, "STRICT_SPREAD"))
        return sweep_fail(s, LOOM_EINVAL, "resources.strategy: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD");
    return LOOM_OK;
}

static int parse_limits(loom_sweep *s, const json_t *l)
{
    static const char *const keys[] = {"trials", "concurrent", "gpu_hours", "cpu_hours", "wall_seconds",
                                       "max_failures", NULL};
    s->concurrent = 1;
    s->max_failures = 2;
    if (!l) return LOOM_OK;
    if (!json_is_object(l)) return sweep_fail(s, LOOM_EINVAL, "limits: want an object");
    int rc = check_keys(s, l, "limits", keys);
    if (rc) return rc;
    s->max_trials = (int64_t)sweep_num(l, "trials", 0);
    s->concurrent = (int64_t)sweep_num(l, "concurrent", 1);
    s->gpu_hours_limit = sweep_num(l, "gpu_hours", 0);
    s->cpu_hours_limit = sweep_num(l, "cpu_hours", 0);
    s->wall_limit_s = sweep_num(l, "wall_seconds", 0);
    s->max_failures = (int64_t)sweep_num(l, "max_failures", 2);
    if (s->max_trials < 0 || s->max_trials > MAX_TRIALS_HARD || s->concurrent < 1 || s->concurrent > 10000 ||
        s->gpu_hours_limit < 0 || s->cpu_hours_limit < 0 || s->wall_limit_s < 0 || s->max_failures < 0)
        return sweep_fail(s, LOOM_EINVAL, "limits: trials 0..%d, concurrent 1..10000, budgets >= 0",
                    MAX_TRIALS_HARD);
    return LOOM_OK;
}

static int parse_trial(loom_sweep *s, const json_t *t)
{
    static const char *const keys[] = {"command", "env", "cwd", "library", "function", "actor", NULL};
    if (!json_is_object(t)) return sweep_fail(s, LOOM_EINVAL, "trial: want an object");
    int rc = check_keys(s, t, "trial", keys);
    if (rc) return rc;
    json_t *cmd = json_object_get(t, "command");
    const char *lib = json_string_value(json_object_get(t, "library"));
    s->function = json_string_value(json_object_get(t, "function"));
    s->actor_cls = json_string_value(json_object_get(t, "actor"));
    if (cmd) {
        if (!json_is_array(cmd) || !json_array_size(cmd)) return sweep_fail(s, LOOM_EINVAL, "trial.command: want argv");
        for (size_t i = 0; i < json_array_size(cmd); i++)
            if (!json_is_string(json_array_get(cmd, i)))
                return sweep_fail(s, LOOM_EINVAL, "trial.command[%zu]: want a string", i);
        if (lib || s->function || s->actor_cls)
            return sweep_fail(s, LOOM_EINVAL, "trial: a command, or a library with a function or actor, not both");
        s->kind = KIND_COMMAND;
        return LOOM_OK;
    }
    if (!lib || (!s->function == !s->actor_cls))
        return sweep_fail(s, LOOM_EINVAL, "trial: want {\"command\": [...]}, or \"library\" with \"function\" or \"actor\"");
    s->kind = s->function ? KIND_FUNCTION : KIND_ACTOR;
    return LOOM_OK;
}

/* Build space, search and scheduler from the spec (created or loaded). */
int sweep_load_spec(loom_sweep *s)
{
    static const char *const keys[] = {"name", "metric", "mode", "space", "search", "scheduler", "trial",
                                       "resources", "limits", "output", "data", "register", NULL};
    const json_t *sp = s->spec;
    char err[512] = "";
    if (!json_is_object(sp)) return sweep_fail(s, LOOM_EINVAL, "the sweep spec must be a JSON object");
    int rc = check_keys(s, sp, "spec", keys);
    if (rc) return rc;
    s->metric = json_string_value(json_object_get(sp, "metric"));
    const char *mode = json_string_value(json_object_get(sp, "mode"));
    if (!s->metric || !*s->metric) return sweep_fail(s, LOOM_EINVAL, "spec: \"metric\" (a name) is required");
    if (mode && strcmp(mode, "min") && strcmp(mode, "max")) return sweep_fail(s, LOOM_EINVAL, "spec: mode is min or max");
    s->maximize = mode && !strcmp(mode, "max");
    if ((rc = tune_space_parse(json_object_get(sp, "space"), &s->space, err, sizeof(err))))
        return sweep_fail(s, rc, "space: %s", err);
    json_t *search = json_object_get(sp, "search"), *opts = json_object();
    const char *algo = "random";
    uint64_t seed = 0;
    if (search && !json_is_object(search)) rc = sweep_fail(s, LOOM_EINVAL, "search: want an object");
    const char *k;
    json_t *v;
    json_object_foreach(search, k, v) {
        if (!strcmp(k, "algorithm")) algo = json_string_value(v) ? json_string_value(v) : "";
        else if (!strcmp(k, "seed")) seed = (uint64_t)json_integer_value(v);
        else json_object_set(opts, k, v);
    }
    if (!rc && (rc = tune_search_new(algo, s->space, seed, opts, &s->search, err, sizeof(err))))
        rc = sweep_fail(s, rc, "search: %s", err);
    json_decref(opts);
    if (rc) return rc;
    json_t *sched = json_object_get(sp, "scheduler"), *fifo = json_pack("{s:s}", "type", "fifo");
    rc = tune_sched_new(sched ? sched : fifo, &s->sched, err, sizeof(err));
    json_decref(fifo);
    if (rc) return sweep_fail(s, rc, "scheduler: %s", err);
    if ((rc = parse_trial(s, json_object_get(sp, "trial"))) ||
        (rc = parse_resources(s, json_object_get(sp, "resources"))) ||
        (rc = parse_limits(s, json_object_get(sp, "limits"))))
        return rc;
    static const char *const reg_keys[] = {"name", "artifact", "gateway", "public", "token_env", NULL};
    json_t *reg = json_object_get(sp, "register");
    if (reg && (!json_is_object(reg) || !json_is_string(json_object_get(reg, "name"))))
        return sweep_fail(s, LOOM_EINVAL, "register: want {\"name\": MODEL, \"artifact\": FILE, \"gateway\": HOST:PORT}");
    if (reg && (rc = check_keys(s, reg, "register", reg_keys))) return rc;
    const char *out = json_string_value(json_object_get(sp, "output"));
    const char *name = json_string_value(json_object_get(sp, "name"));
    if (out) snprintf(s->out_dir, sizeof(s->out_dir), "%s", out);
    else snprintf(s->out_dir, sizeof(s->out_dir), "tune-results/%s-%.8s", name ? name : "sweep", s->id);
    return LOOM_OK;
}
