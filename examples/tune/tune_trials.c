/* examples/tune/tune_trials.c — example sweep trials (libloom_tune_examples.so),
 * used by tests/sys_tune*.sh and the README's tour of `loom tune`.
 *
 *   curve   (function) a synthetic learning curve: at step t it reports
 *           "loss" = a + b / t, sleeping step_ms per step, up to max_t steps;
 *           checkpoints its step so a paused or restarted trial goes on
 *   branin  (function) reports "value" = Branin(x1, x2) once
 *   Curve   (actor) the curve as a class: init(config, checkpoint), step()
 *           returns {"t", "loss", "done"}, save() returns the checkpoint
 *   pg_trial (function) a two-worker trial: runs pg_worker in bundle 1 of
 *           the trial's placement group, reports "workers": 2 when it ran in
 *           another process
 *
 * Config of curve and Curve: {"a": number, "b": number, "step_ms": int
 * (default 10), "max_t": int (default 9)}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/task.h"
#include "loom/tune.h"

typedef struct curve {
    double a, b;
    int64_t step_ms, max_t, t;
} curve;

static void curve_config(const loom_tune_trial *tr, curve *c)
{
    c->step_ms = 10;
    c->max_t = 9;
    loom_tune_trial_f64(tr, "a", &c->a);
    loom_tune_trial_f64(tr, "b", &c->b);
    loom_tune_trial_i64(tr, "step_ms", &c->step_ms);
    loom_tune_trial_i64(tr, "max_t", &c->max_t);
}

LOOM_TASK(curve)
{
    loom_tune_trial *tr;
    int rc = loom_tune_trial_open(ctx, &tr);
    if (rc) return loom_task_fail(ctx, "curve: not started by a sweep (%s)", loom_strerror(rc));
    curve c = {0};
    curve_config(tr, &c);
    const void *ck;
    size_t cklen;
    double at;
    loom_tune_trial_checkpoint(tr, &ck, &cklen, &at);
    if (cklen == sizeof(int64_t)) memcpy(&c.t, ck, sizeof(int64_t));
    while (c.t < c.max_t) {
        usleep((useconds_t)c.step_ms * 1000);
        c.t++;
        char m[128];
        snprintf(m, sizeof(m), "{\"loss\": %.17g}", c.a + c.b / (double)c.t);
        rc = loom_tune_trial_report(tr, (double)c.t, m, &c.t, sizeof(c.t));
        if (rc != LOOM_TUNE_CONTINUE) break;
    }
    loom_tune_trial_close(&tr);
    if (rc < 0) return loom_task_fail(ctx, "curve: report failed: %s", loom_strerror(rc));
    return loom_task_return_i64(ctx, c.t);
}

static double branin(double x1, double x2)
{
    const double pi = 3.14159265358979323846;
    double b = 5.1 / (4 * pi * pi), c = 5 / pi, t = 1 / (8 * pi);
    double q = x2 - b * x1 * x1 + c * x1 - 6;
    return q * q + 10 * (1 - t) * cos(x1) + 10;
}

LOOM_TASK(branin)
{
    loom_tune_trial *tr;
    int rc = loom_tune_trial_open(ctx, &tr);
    if (rc) return loom_task_fail(ctx, "branin: not started by a sweep (%s)", loom_strerror(rc));
    double x1 = 0, x2 = 0;
    if (loom_tune_trial_f64(tr, "x1", &x1) || loom_tune_trial_f64(tr, "x2", &x2)) {
        loom_tune_trial_close(&tr);
        return loom_task_fail(ctx, "branin: want numbers x1 and x2 in the config");
    }
    char m[96];
    snprintf(m, sizeof(m), "{\"value\": %.17g}", branin(x1, x2));
    rc = loom_tune_trial_report(tr, 1, m, NULL, 0);
    loom_tune_trial_close(&tr);
    return rc < 0 ? loom_task_fail(ctx, "branin: report failed: %s", loom_strerror(rc)) : loom_task_return_i64(ctx, 0);
}

/* ---- the actor form ------------------------------------------------------- */

static int json_num(const char *js, size_t n, const char *key, double *out)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = memmem(js, n, pat, strlen(pat));
    if (!p) return -1;
    p = memchr(p, ':', n - (size_t)(p - js));
    if (!p) return -1;
    *out = strtod(p + 1, NULL);
    return 0;
}

LOOM_ACTOR_INIT(Curve)
{
    const void *cfg, *ck;
    size_t n, cklen;
    if (loom_task_arg(ctx, 0, &cfg, &n) || loom_task_arg(ctx, 1, &ck, &cklen))
        return loom_task_fail(ctx, "Curve: want (config, checkpoint)");
    curve *c = calloc(1, sizeof(*c));
    if (!c) return loom_task_fail(ctx, "Curve: out of memory");
    double v;
    c->step_ms = 10;
    c->max_t = 9;
    if (!json_num(cfg, n, "a", &v)) c->a = v;
    if (!json_num(cfg, n, "b", &v)) c->b = v;
    if (!json_num(cfg, n, "step_ms", &v)) c->step_ms = (int64_t)v;
    if (!json_num(cfg, n, "max_t", &v)) c->max_t = (int64_t)v;
    if (cklen == sizeof(int64_t)) memcpy(&c->t, ck, sizeof(int64_t));
    loom_actor_set_state(ctx, c);
    return 0;
}

LOOM_ACTOR_METHOD(Curve, step)
{
    curve *c = loom_actor_state(ctx);
    usleep((useconds_t)c->step_ms * 1000);
    c->t++;
    char m[160];
    int len = snprintf(m, sizeof(m), "{\"t\": %lld, \"loss\": %.17g, \"done\": %s}", (long long)c->t,
                       c->a + c->b / (double)c->t, c->t >= c->max_t ? "true" : "false");
    return loom_task_return(ctx, m, (size_t)len);
}

LOOM_ACTOR_METHOD(Curve, save)
{
    curve *c = loom_actor_state(ctx);
    return loom_task_return(ctx, &c->t, sizeof(c->t));
}

LOOM_ACTOR_DESTROY(Curve) { free(state); }

/* ---- a multi-worker trial: its placement group's bundle 1 -------------------- */

/* A worker of pg_trial: returns its process id. */
LOOM_TASK(pg_worker) { return loom_task_return_i64(ctx, (int64_t)getpid()); }

/* Runs pg_worker in bundle 1 of the trial's placement group (the library's
 * path is the config's "lib") and reports {"loss": 1, "workers": 2}. */
LOOM_TASK(pg_trial)
{
    loom_tune_trial *tr;
    int rc = loom_tune_trial_open(ctx, &tr);
    if (rc) return loom_task_fail(ctx, "pg_trial: not started by a sweep (%s)", loom_strerror(rc));
    loom_pg pg;
    const char *lib = NULL;
    loom_ref libref, out;
    loom_client *c = loom_task_client(ctx);
    loom_value *v = NULL;
    if ((rc = loom_tune_trial_pg(tr, &pg)) || (rc = loom_tune_trial_str(tr, "lib", &lib)) ||
        (rc = loom_library_load(c, lib, &libref))) {
        loom_tune_trial_close(&tr);
        return loom_task_fail(ctx, "pg_trial: no placement group or library (%s)", loom_strerror(rc));
    }
    loom_task_opts o = {.num_cpus = 1, .pg = &pg, .bundle = 1};
    rc = loom_submit(c, libref, "pg_worker", NULL, 0, &o, &out);
    if (!rc) rc = loom_get(c, out, 30000, &v);
    int64_t pid = 0;
    if (!rc) {
        loom_unpack u;
        loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
        loom_unpack_i64(&u, &pid);
    }
    loom_value_release(&v);
    char m[96];
    snprintf(m, sizeof(m), "{\"loss\": 1, \"workers\": %d}", !rc && pid > 0 && pid != getpid() ? 2 : 1);
    rc = loom_tune_trial_report(tr, 1, m, NULL, 0);
    loom_tune_trial_close(&tr);
    return rc < 0 ? loom_task_fail(ctx, "pg_trial: %s", loom_strerror(rc)) : loom_task_return_i64(ctx, 0);
}
