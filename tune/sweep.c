/* tune/sweep.c — the sweep controller: runs a sweep's trials on the cluster.
 *
 * One driver runs a sweep (loom_sweep_run).  Each tick it reads the reports
 * of its running trials (the key-value layout of tune_internal.h), asks the
 * scheduler what each trial does next and answers it, notices trials that
 * ended, starts paused trials the scheduler promotes and new trials the
 * search suggests while the limits allow, and accounts for what the trials
 * hold (CPU and GPU seconds, from a trial's submission to its end, as the
 * driver sees them; the wall time of the sweep across all its runs).
 *
 * Trials are detached one-task jobs (function or command trials) or detached
 * actors called step by step (actor trials), so they outlive their driver.
 * Every change is written to the key-value table before the trial is
 * answered: a sweep whose driver or head died is resumed by opening it again
 * — the scheduler and search are rebuilt by replaying the recorded events in
 * order, running trials are adopted (or restarted from their checkpoint when
 * they did not survive).
 *
 * This file: the controller loop and the trials' lifecycle (launching,
 * reports and decisions, limits); the spec is read by sweep_spec.c, the
 * records, creating, opening (resuming) and reading sweeps are in
 * sweep_state.c, and what they share is in sweep_internal.h. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errf.h"
#include "loom/tune.h"
#include "tune/sched.h"
#include "tune/search.h"
#include "tune/space.h"
#include "tune/sweep_internal.h"
#include "tune/track.h"
#include "tune/tune_internal.h"
#include "tune/util.h"

/* ---- small helpers --------------------------------------------------------- */

/* The reason of the last failure, per thread (loom_sweep_last_error). */
__thread char sweep_err[512];

int sweep_fail(loom_sweep *s, int rc, const char *fmt, ...)
{
    (void)s;
    va_list ap;
    va_start(ap, fmt);
    loom__verrf(sweep_err, sizeof(sweep_err), rc, fmt, ap);
    va_end(ap);
    return rc;
}

const char *loom_sweep_last_error(void) { return sweep_err; }

double sweep_num(const json_t *o, const char *k, double dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

void sweep_key_sweep(const char *id, char *out, size_t cap) { snprintf(out, cap, "tune/s/%s/sweep", id); }
void sweep_key_trial(const char *id, int64_t n, char *out, size_t cap)
{
    snprintf(out, cap, "tune/s/%s/t/%lld", id, (long long)n);
}

/* The loss the scheduler and search see: lower is better. */
double sweep_loss_of(const loom_sweep *s, double v) { return s->maximize ? -v : v; }

static int better(const loom_sweep *s, double a, double b) { return s->maximize ? a > b : a < b; }

const char *sweep_trial_state(const trial *t) { return json_string_value(json_object_get(t->rec, "state")); }

static void set_state(trial *t, const char *st)
{
    json_object_set_new(t->rec, "state", json_string(st));
    t->dirty = 1;
}

/* ---- trials ------------------------------------------------------------------ */

trial *sweep_trial_add(loom_sweep *s, int64_t id, json_t *rec)
{
    if (s->ntrials == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        trial **nt = realloc(s->trials, (size_t)cap * sizeof(*nt));
        if (!nt) return NULL;
        s->trials = nt;
        s->cap = cap;
    }
    trial *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->id = id;
    t->rec = rec;
    t->last_t = 0;
    s->trials[s->ntrials++] = t;
    return t;
}

static json_t *new_trial_record(int64_t id, json_t *config)
{
    char name[32];
    snprintf(name, sizeof(name), "trial_%04lld", (long long)id);
    return json_pack("{s:I, s:s, s:o, s:s, s:[], s:n, s:n, s:n, s:f, s:f, s:i, s:[]}", "id", (json_int_t)id,
                     "name", name, "config", config, "state", "pending", "results", "best", "best_t", "last",
                     "cpu_seconds", 0.0, "gpu_seconds", 0.0, "attempts", 0, "artifacts");
}

/* The library to load for this sweep's trials: the user's, or this one
 * (its tune_command runs command trials). */
static int ensure_library(loom_sweep *s)
{
    if (s->has_lib) return LOOM_OK;
    const char *path = json_string_value(json_object_get(json_object_get(s->spec, "trial"), "library"));
    Dl_info info;
    if (s->kind == KIND_COMMAND) {
        if (!dladdr((void *)&loom_sweep_create, &info) || !info.dli_fname)
            return sweep_fail(s, LOOM_ENOTFOUND, "cannot find libloom_tune.so's path");
        path = info.dli_fname;
    }
    int rc = loom_library_load(s->c, path, &s->lib);
    if (rc) return sweep_fail(s, rc, "cannot load the trial library %s: %s", path, loom_last_error(s->c));
    s->has_lib = 1;
    return LOOM_OK;
}

static json_t *trial_context(loom_sweep *s, trial *t)
{
    json_t *ctx = json_pack("{s:s, s:I, s:I, s:s}", "sweep", s->id, "trial", (json_int_t)t->id, "attempt",
                            (json_int_t)t->attempt, "metric", s->metric);
    json_t *ck = json_object_get(t->rec, "checkpoint");
    if (json_is_object(ck)) json_object_set(ctx, "resume", ck);
    if (t->has_pg) {
        char hex[33];
        for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", t->pg.id[i]);
        json_object_set_new(ctx, "placement_group", json_string(hex));
    }
    if (s->kind == KIND_COMMAND) {
        const json_t *tr = json_object_get(s->spec, "trial");
        json_t *cmd = json_pack("{s:O}", "argv", json_object_get(tr, "command"));
        if (json_object_get(tr, "env")) json_object_set(cmd, "env", json_object_get(tr, "env"));
        if (json_object_get(tr, "cwd")) json_object_set(cmd, "cwd", json_object_get(tr, "cwd"));
        json_object_set_new(ctx, "command", cmd);
    }
    return ctx;
}

static int strategy_of(const char *st)
{
    if (!st || !strcmp(st, "PACK")) return LOOM_PG_PACK;
    if (!strcmp(st, "SPREAD")) return LOOM_PG_SPREAD;
    if (!strcmp(st, "STRICT_PACK")) return LOOM_PG_STRICT_PACK;
    return LOOM_PG_STRICT_SPREAD;
}

/* A placement group for a trial with bundles (multi-worker trials). */
static int make_pg(loom_sweep *s, trial *t)
{
    const json_t *res = json_object_get(s->spec, "resources");
    json_t *b = json_object_get(res, "bundles");
    if (!b) return LOOM_OK;
    size_t n = json_array_size(b);
    loom_bundle bundles[64];
    memset(bundles, 0, sizeof(bundles));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(b, i);
        bundles[i].num_cpus = sweep_num(e, "cpus", 0);
        bundles[i].num_gpus = sweep_num(e, "gpus", 0);
        bundles[i].memory = (uint64_t)sweep_num(e, "memory", 0);
    }
    char name[96];
    snprintf(name, sizeof(name), "tune-%.16s-%lld-%lld", s->id, (long long)t->id, (long long)t->attempt);
    int rc = loom_pg_create(s->c, bundles, (int)n, strategy_of(json_string_value(json_object_get(res, "strategy"))),
                            name, &t->pg);
    if (rc) return sweep_fail(s, rc, "placement group: %s", loom_last_error(s->c));
    t->has_pg = 1;
    return LOOM_OK;
}

static void task_opts(const loom_sweep *s, const trial *t, loom_task_opts *o, char *name, size_t cap)
{
    const json_t *res = json_object_get(s->spec, "resources");
    memset(o, 0, sizeof(*o));
    snprintf(name, cap, "trial");
    o->name = name;
    o->max_retries = LOOM_NO_RETRY; /* the controller restarts from the checkpoint itself */
    if (t->has_pg) {
        json_t *b0 = json_array_get(json_object_get(res, "bundles"), 0);
        o->pg = &t->pg;
        o->bundle = 0;
        o->num_cpus = sweep_num(b0, "cpus", 0) > 0 ? sweep_num(b0, "cpus", 0) : 0.001;
        o->num_gpus = sweep_num(b0, "gpus", 0);
    } else {
        o->num_cpus = s->cpus > 0 ? s->cpus : 0.001;
        o->num_gpus = s->gpus;
        o->memory = (uint64_t)sweep_num(res, "memory", 0);
    }
}

static int launch_task(loom_sweep *s, trial *t, const char *config, const char *ctx)
{
    loom_graph *g = NULL;
    loom_task_opts o;
    char name[32];
    task_opts(s, t, &o, name, sizeof(name));
    int rc = loom_graph_new(&g);
    int node = rc ? rc : loom_graph_task(g, s->lib, s->kind == KIND_COMMAND ? "tune_command" : s->function, &o);
    if (node < 0) rc = node;
    if (!rc) rc = loom_graph_arg_value(g, node, config, strlen(config));
    if (!rc) rc = loom_graph_arg_value(g, node, ctx, strlen(ctx));
    if (!rc) rc = loom_graph_ref(g, node, 0, &t->ref);
    char jobname[96], label[64];
    snprintf(jobname, sizeof(jobname), "tune-%.8s-trial-%lld", s->id, (long long)t->id);
    snprintf(label, sizeof(label), "tune:%s", s->id);
    loom_submit_opts so = {.job_name = jobname, .detached = 1, .label = label};
    if (!rc) rc = loom_graph_submit(s->c, g, &so, t->job);
    loom_graph_destroy(&g);
    if (rc) return sweep_fail(s, rc, "cannot submit trial %lld: %s", (long long)t->id, loom_last_error(s->c));
    return LOOM_OK;
}

static int launch_actor(loom_sweep *s, trial *t, const char *config)
{
    loom_actor_opts o;
    char name[32];
    memset(&o, 0, sizeof(o));
    task_opts(s, t, &o.res, name, sizeof(name));
    o.detached = 1;
    const void *ck = NULL;
    void *ckbuf = NULL;
    size_t cklen = 0;
    json_t *cp = json_object_get(t->rec, "checkpoint");
    if (json_is_object(cp)) {
        const char *key = json_string_value(json_object_get(cp, "key"));
        if (key && !loom_kv_get_blob(s->c, key, &ckbuf, &cklen)) ck = ckbuf;
    }
    loom_arg args[2] = {loom_arg_value(config, strlen(config)), loom_arg_value(ck ? ck : "", cklen)};
    int rc = loom_actor_create(s->c, s->lib, s->actor_cls, args, 2, &o, &t->actor);
    free(ckbuf);
    if (!rc) rc = loom_actor_call(s->c, t->actor, "step", NULL, 0, &t->call);
    if (rc) return sweep_fail(s, rc, "cannot start actor trial %lld: %s", (long long)t->id, loom_last_error(s->c));
    char hex[33];
    loom_actor_to_hex(&t->actor, hex);
    json_object_set_new(t->rec, "actor", json_string(hex));
    t->call_out = 1;
    t->job[0] = 0;
    return LOOM_OK;
}

/* Start (or restart, from the record's checkpoint) a trial. */
int sweep_trial_launch(loom_sweep *s, trial *t)
{
    int rc = ensure_library(s);
    if (rc) return rc;
    t->attempt++;
    t->next_seq = 0;
    t->has_pg = 0;
    json_t *ck = json_object_get(t->rec, "checkpoint");
    t->last_t = json_is_object(ck) ? sweep_num(ck, "t", 0) : 0;
    if ((rc = make_pg(s, t))) return rc;
    char *config = json_dumps(json_object_get(t->rec, "config"), JSON_COMPACT | JSON_SORT_KEYS);
    json_t *ctxj = trial_context(s, t);
    char *ctx = ctxj ? json_dumps(ctxj, JSON_COMPACT) : NULL;
    json_decref(ctxj);
    if (!config || !ctx) rc = LOOM_ENOMEM;
    else if (s->kind == KIND_ACTOR) rc = launch_actor(s, t, config);
    else rc = launch_task(s, t, config, ctx);
    free(config);
    free(ctx);
    if (rc) {
        if (t->has_pg) loom_pg_remove(s->c, t->pg);
        t->has_pg = 0;
        return rc;
    }
    t->running = 1;
    t->start_ms = loom__wall_ms();
    if (!json_is_integer(json_object_get(t->rec, "start_ms")))
        json_object_set_new(t->rec, "start_ms", json_integer(t->start_ms));
    json_object_del(t->rec, "end_ms");
    set_state(t, "running");
    return sweep_save_trial(s, t);
}

/* The trial's attempt is over: free what it holds, account for it. */
static void trial_release(loom_sweep *s, trial *t)
{
    if (!t->running) return;
    if (s->kind == KIND_ACTOR) loom_actor_kill(s->c, t->actor);
    else if (t->job[0]) loom_job_delete(s->c, t->job);
    if (t->has_pg) loom_pg_remove(s->c, t->pg);
    t->has_pg = 0;
    t->running = 0;
    t->ending = 0;
    t->call_out = 0;
    int64_t now = loom__wall_ms();
    double secs = (double)(now - t->start_ms) / 1000.0;
    s->cpu_s_done += s->cpus * secs;
    s->gpu_s_done += s->gpus * secs;
    json_object_set_new(t->rec, "cpu_seconds", json_real(sweep_num(t->rec, "cpu_seconds", 0) + s->cpus * secs));
    json_object_set_new(t->rec, "gpu_seconds", json_real(sweep_num(t->rec, "gpu_seconds", 0) + s->gpus * secs));
    json_object_set_new(t->rec, "end_ms", json_integer(now));
    t->dirty = 1;
}

/* Record how the trial ended (for the replay of a resumed sweep). */
/* mkdir -p for the directory part of path. */
static int make_parents(char *path)
{
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        int bad = mkdir(path, 0755) && errno != EEXIST;
        *p = '/';
        if (bad) return -1;
    }
    return 0;
}

/* An ended trial's artifacts move from the key-value table (the head's
 * memory) to OUT/artifacts/trial_NNNN/NAME; its checkpoint is dropped. */
static void trial_cleanup(loom_sweep *s, trial *t)
{
    json_t *ck = json_object_get(t->rec, "checkpoint");
    if (json_is_object(ck)) {
        const char *key = json_string_value(json_object_get(ck, "key"));
        if (key) loom_kv_del_blob(s->c, key);
        json_object_set_new(t->rec, "checkpoint", json_null());
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(t->rec, "artifacts"), i, a) {
        const char *key = json_string_value(json_object_get(a, "key"));
        const char *name = json_string_value(json_object_get(a, "name"));
        size_t bytes = 0;
        void *data = NULL;
        char path[PATH_MAX + 64];
        if (!key || !name || json_object_get(a, "path")) continue;
        snprintf(path, sizeof(path), "%s/artifacts/trial_%04lld/%s", s->out_dir, (long long)t->id, name);
        int rc = loom_kv_get_blob(s->c, key, &data, &bytes);
        if (rc) {
            fprintf(stderr, "loom tune: artifact %s of trial %lld cannot be read: %s\n", name, (long long)t->id,
                    loom_strerror(rc));
            continue;
        }
        FILE *f = make_parents(path) ? NULL : fopen(path, "wb");
        int ok = f && fwrite(data, 1, bytes, f) == bytes;
        if (f && fclose(f)) ok = 0;
        free(data);
        if (!ok) {
            fprintf(stderr, "loom tune: cannot write %s: %s (the artifact stays in the cluster)\n", path, strerror(errno));
            continue;
        }
        char *real = realpath(path, NULL);
        json_object_set_new(a, "path", json_string(real ? real : path));
        free(real);
        char meta[TUNE_KEY_MAX + 16];
        snprintf(meta, sizeof(meta), "%s/meta", key);
        loom_kv_del_blob(s->c, key);
        loom_kv_del(s->c, meta);
        json_object_del(a, "key");
    }
}

void sweep_mark_end(loom_sweep *s, trial *t, const char *state, const char *event)
{
    set_state(t, state);
    json_object_set_new(t->rec, "end_g", json_integer(++s->gseq));
    json_object_set_new(t->rec, "end_event", json_string(event));
    trial_cleanup(s, t);
}

double sweep_best_loss(const loom_sweep *s, const trial *t)
{
    json_t *b = json_object_get(t->rec, "best");
    return json_is_number(b) ? sweep_loss_of(s, json_number_value(b)) : NAN;
}

static void write_track(loom_sweep *s, trial *t)
{
    char err[512];
    if (tune_track_trial(s->out_dir, s->sweep, t->rec, err, sizeof(err)))
        fprintf(stderr, "loom tune: results of trial %lld not written: %s\n", (long long)t->id, err);
}

/* A trial ended by itself (its task or actor finished). */
static void trial_completed(loom_sweep *s, trial *t)
{
    trial_release(s, t);
    sweep_mark_end(s, t, "completed", "complete");
    json_t *last = json_object_get(t->rec, "last");
    json_t *v = json_object_get(last, s->metric);
    tune_sched_complete(s->sched, t->id, t->last_t, json_is_number(v) ? sweep_loss_of(s, json_number_value(v)) : NAN);
    tune_search_observe(s->search, json_object_get(t->rec, "config"), sweep_best_loss(s, t));
    sweep_save_trial(s, t);
    write_track(s, t);
}

/* The scheduler stopped or paused it, or the sweep ends it. */
static void trial_ended_by_us(loom_sweep *s, trial *t, int decision, int by_sched)
{
    trial_release(s, t);
    if (decision == LOOM_TUNE_PAUSE) {
        set_state(t, "paused");
        json_object_set_new(t->rec, "pause_g", json_integer(++s->gseq));
    } else {
        sweep_mark_end(s, t, "stopped", by_sched ? "sched_stop" : "remove");
        if (!by_sched) tune_sched_remove(s->sched, t->id);
        tune_search_observe(s->search, json_object_get(t->rec, "config"), sweep_best_loss(s, t));
    }
    sweep_save_trial(s, t);
    if (decision != LOOM_TUNE_PAUSE) write_track(s, t);
}

static void trial_failed(loom_sweep *s, trial *t, int rc, const char *msg)
{
    trial_release(s, t);
    int64_t failures = json_integer_value(json_object_get(t->rec, "failures")) + 1;
    json_object_set_new(t->rec, "failures", json_integer(failures));
    if (failures <= s->max_failures && (rc == LOOM_ENODE || rc == LOOM_EWORKER || rc == LOOM_EACTOR ||
                                          rc == LOOM_ECANCELLED || rc == LOOM_ECONN || rc == LOOM_ENOTFOUND)) {
        fprintf(stderr, "loom tune: trial %lld lost its executor (%s); restarting it from its checkpoint\n",
                (long long)t->id, msg);
        if (!sweep_trial_launch(s, t)) return;
    }
    json_object_set_new(t->rec, "error", json_string(msg));
    sweep_mark_end(s, t, "failed", "remove");
    tune_sched_remove(s->sched, t->id);
    sweep_save_trial(s, t);
    write_track(s, t);
}

/* ---- reports ----------------------------------------------------------------- */

static void note_best(loom_sweep *s, trial *t, double v, double step)
{
    json_t *b = json_object_get(t->rec, "best");
    if (!json_is_number(b) || better(s, v, json_number_value(b))) {
        json_object_set_new(t->rec, "best", json_real(v));
        json_object_set_new(t->rec, "best_t", json_real(step));
    }
}

/* Keep the report's checkpoint as the trial's (dropping the one before). */
static void keep_checkpoint(loom_sweep *s, trial *t, const json_t *ck, double step)
{
    json_t *old = json_object_get(t->rec, "checkpoint");
    const char *old_key = json_is_object(old) ? json_string_value(json_object_get(old, "key")) : NULL;
    if (old_key) loom_kv_del_blob(s->c, old_key);
    json_t *n = json_deep_copy(ck);
    json_object_set_new(n, "t", json_real(step));
    json_object_set_new(t->rec, "checkpoint", n);
}

static void keep_artifact(loom_sweep *s, trial *t, const char *name)
{
    char key[TUNE_KEY_MAX];
    json_t *meta = NULL;
    snprintf(key, sizeof(key), "tune/s/%s/t/%lld/art/%s/meta", s->id, (long long)t->id, name);
    if (tune_kv_get_json(s->c, key, 0, &meta)) return;
    json_t *arts = json_object_get(t->rec, "artifacts");
    size_t i;
    json_t *a;
    json_array_foreach(arts, i, a) if (!strcmp(json_string_value(json_object_get(a, "name")) ?: "", name)) {
        json_array_remove(arts, i);
        break;
    }
    json_array_append_new(arts, meta);
}

/* One result of a trial: record it and decide.  Returns LOOM_TUNE_*. */
static int on_result(loom_sweep *s, trial *t, const json_t *rep)
{
    double step = sweep_num(rep, "t", t->last_t + 1);
    json_t *metrics = json_object_get(rep, "metrics");
    const char *art = json_string_value(json_object_get(rep, "artifact"));
    if (art) keep_artifact(s, t, art);
    if (step <= t->last_t) return LOOM_TUNE_CONTINUE; /* replayed after a restart */
    t->last_t = step;
    s->iterations++;
    json_t *r = json_pack("{s:f, s:O, s:I, s:I}", "t", step, "metrics", metrics ? metrics : json_object(),
                          "time_ms", (json_int_t)sweep_num(rep, "time_ms", (double)loom__wall_ms()), "g",
                          (json_int_t)++s->gseq);
    json_array_append_new(json_object_get(t->rec, "results"), r);
    json_object_set(t->rec, "last", metrics ? metrics : json_null());
    json_t *ck = json_object_get(rep, "ckpt");
    if (json_is_object(ck)) keep_checkpoint(s, t, ck, step);
    json_t *v = json_object_get(metrics, s->metric);
    t->dirty = 1;
    if (!json_is_number(v)) return LOOM_TUNE_CONTINUE;
    note_best(s, t, json_number_value(v), step);
    tune_decision d = tune_sched_result(s->sched, t->id, step, sweep_loss_of(s, json_number_value(v)));
    return d == TUNE_STOP ? LOOM_TUNE_STOP : d == TUNE_PAUSE ? LOOM_TUNE_PAUSE : LOOM_TUNE_CONTINUE;
}


static void end_now(loom_sweep *s, trial *t, int how)
{
    t->ending = 0;
    if (how == END_COMPLETE) trial_completed(s, t);
    else trial_ended_by_us(s, t, how, 1);
}

/* A task trial told stop or pause returns by itself within milliseconds, and
 * its executor serves the next trial; one that does not is cancelled after
 * END_GRACE_MS.  Actor trials end at once. */
static void apply_decision(loom_sweep *s, trial *t, int d)
{
    if (d == LOOM_TUNE_CONTINUE) return;
    double max_t = tune_sched_max_t(s->sched);
    int how = d == LOOM_TUNE_STOP && max_t > 0 && t->last_t >= max_t ? END_COMPLETE : d;
    if (d == LOOM_TUNE_PAUSE && !json_is_object(json_object_get(t->rec, "checkpoint")))
        fprintf(stderr, "loom tune: trial %lld paused without a checkpoint: it will start over\n",
                (long long)t->id);
    if (s->kind == KIND_ACTOR) {
        end_now(s, t, how);
        return;
    }
    t->ending = how;
    t->end_by = loom__wall_ms() + END_GRACE_MS;
}

/* Read and answer the reports of a task trial; returns how many. */
static int poll_reports(loom_sweep *s, trial *t)
{
    int n = 0;
    while (t->running && !t->ending && n < 64) {
        char key[TUNE_KEY_MAX + 64];
        json_t *rep = NULL;
        snprintf(key, sizeof(key), "tune/s/%s/t/%lld/a%lld/r/%lld", s->id, (long long)t->id,
                 (long long)t->attempt, (long long)t->next_seq);
        if (tune_kv_get_json(s->c, key, 0, &rep)) break;
        int64_t seq = t->next_seq++;
        n++;
        int d = seq == 0 ? LOOM_TUNE_CONTINUE : on_result(s, t, rep);
        json_decref(rep);
        json_object_set_new(t->rec, "last_answer", json_integer(d));
        sweep_save_trial(s, t); /* recorded before it is answered */
        loom_kv_del(s->c, key);
        if (seq == 0) continue;
        snprintf(key, sizeof(key), "tune/s/%s/t/%lld/a%lld/d/%lld", s->id, (long long)t->id,
                 (long long)t->attempt, (long long)seq);
        const char *ans = d == LOOM_TUNE_STOP ? "stop" : d == LOOM_TUNE_PAUSE ? "pause" : "continue";
        loom_kv_put(s->c, key, ans, strlen(ans));
        apply_decision(s, t, d);
    }
    return n;
}

/* An actor trial: its step call came back. */
static void poll_actor(loom_sweep *s, trial *t)
{
    int ready = 0;
    if (!t->call_out || loom_wait(s->c, &t->call, 1, 1, 0, &ready) < 1 || !ready) return;
    loom_value *v = NULL;
    int rc = loom_get(s->c, t->call, 0, &v);
    loom_release(s->c, t->call);
    t->call_out = 0;
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s: %s", loom_strerror(rc), loom_last_error(s->c));
        trial_failed(s, t, rc, msg);
        return;
    }
    json_error_t e;
    const char *text = loom_value_data(v);
    size_t len = loom_value_size(v);
    /* a msgpack string (fixstr/str8/16/32) or raw JSON bytes */
    if (len && ((uint8_t)text[0] & 0xe0) == 0xa0) text++, len--;
    else if (len > 2 && (uint8_t)text[0] == 0xd9) text += 2, len -= 2;
    else if (len > 3 && (uint8_t)text[0] == 0xda) text += 3, len -= 3;
    else if (len > 5 && (uint8_t)text[0] == 0xdb) text += 5, len -= 5;
    json_t *m = json_loadb(text, len, 0, &e);
    loom_value_release(&v);
    if (!json_is_object(m)) {
        json_decref(m);
        trial_failed(s, t, LOOM_EPROTO, "step: want a JSON object of metrics");
        return;
    }
    int done = json_is_true(json_object_get(m, "done"));
    json_t *rep = json_pack("{s:O}", "t", json_object_get(m, "t") ? json_object_get(m, "t") : json_real(t->last_t + 1));
    json_object_del(m, "t");
    json_object_del(m, "done");
    json_object_set_new(rep, "metrics", m);
    int d = on_result(s, t, rep);
    json_decref(rep);
    if (d == LOOM_TUNE_PAUSE) { /* keep its state to resume from */
        loom_ref sref;
        loom_value *sv = NULL;
        char prefix[TUNE_KEY_MAX];
        snprintf(prefix, sizeof(prefix), "tune/s/%s/t/%lld/a%lld/c/actor", s->id, (long long)t->id,
                 (long long)t->attempt);
        if (!loom_actor_call(s->c, t->actor, "save", NULL, 0, &sref) && !loom_get(s->c, sref, 60000, &sv) &&
            !loom_kv_put_blob(s->c, prefix, loom_value_data(sv), loom_value_size(sv))) {
            json_t *ck = json_pack("{s:s, s:I}", "key", prefix, "bytes", (json_int_t)loom_value_size(sv));
            keep_checkpoint(s, t, ck, t->last_t);
            json_decref(ck);
        }
        loom_value_release(&sv);
    }
    sweep_save_trial(s, t);
    if (d != LOOM_TUNE_CONTINUE) apply_decision(s, t, d);
    else if (done) trial_completed(s, t);
    else if ((rc = loom_actor_call(s->c, t->actor, "step", NULL, 0, &t->call))) trial_failed(s, t, rc, "step call failed");
    else t->call_out = 1;
}

/* A task trial's task ended: completed, or failed (restart or record). */
static void poll_task_end(loom_sweep *s, trial *t)
{
    int ready = 0;
    if (loom_wait(s->c, &t->ref, 1, 1, 0, &ready) < 1 || !ready) {
        if (t->ending && loom__wall_ms() >= t->end_by) end_now(s, t, t->ending);
        return;
    }
    if (t->ending) {
        end_now(s, t, t->ending);
        return;
    }
    poll_reports(s, t); /* what it said before it ended */
    if (!t->running) return;
    loom_value *v = NULL;
    int rc = loom_get(s->c, t->ref, 0, &v);
    loom_value_release(&v);
    if (!rc) {
        trial_completed(s, t);
        return;
    }
    char msg[600];
    snprintf(msg, sizeof(msg), "%s: %s", loom_strerror(rc), loom_last_error(s->c));
    trial_failed(s, t, rc, msg);
}

/* ---- limits ------------------------------------------------------------------ */

/* 1 when a limit is reached or about to be (within STOP_MARGIN_S of what the
 * running trials will use by the next look). */
static int over_budget(loom_sweep *s, int64_t now, const char **which)
{
    int running = 0;
    for (int64_t i = 0; i < s->ntrials; i++) running += s->trials[i]->running;
    if (s->wall_limit_s > 0 && sweep_wall_used(s, now) + STOP_MARGIN_S >= s->wall_limit_s) {
        *which = "wall time";
        return 1;
    }
    double gpu_s = s->gpu_s_done + sweep_running_seconds(s, s->gpus, now) + s->gpus * running * STOP_MARGIN_S;
    if (s->gpu_hours_limit > 0 && gpu_s >= s->gpu_hours_limit * 3600.0) {
        *which = "GPU hours";
        return 1;
    }
    double cpu_s = s->cpu_s_done + sweep_running_seconds(s, s->cpus, now) + s->cpus * running * STOP_MARGIN_S;
    if (s->cpu_hours_limit > 0 && cpu_s >= s->cpu_hours_limit * 3600.0) {
        *which = "CPU hours";
        return 1;
    }
    return 0;
}

/* Would one more trial fit the budgets for at least a moment? */
static int room_for_one(loom_sweep *s, int64_t now)
{
    int running = 0;
    for (int64_t i = 0; i < s->ntrials; i++) running += s->trials[i]->running;
    double margin = 2 * STOP_MARGIN_S;
    if (s->gpu_hours_limit > 0 && s->gpus > 0 &&
        s->gpu_s_done + sweep_running_seconds(s, s->gpus, now) + s->gpus * (running + 1) * margin >= s->gpu_hours_limit * 3600.0)
        return 0;
    if (s->cpu_hours_limit > 0 && s->cpus > 0 &&
        s->cpu_s_done + sweep_running_seconds(s, s->cpus, now) + s->cpus * (running + 1) * margin >= s->cpu_hours_limit * 3600.0)
        return 0;
    if (s->wall_limit_s > 0 && sweep_wall_used(s, now) + margin >= s->wall_limit_s) return 0;
    return 1;
}

void sweep_stop_all(loom_sweep *s)
{
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        if (t->running && t->ending) end_now(s, t, t->ending);
        else if (t->running) trial_ended_by_us(s, t, LOOM_TUNE_STOP, 0);
        else if (!strcmp(sweep_trial_state(t), "paused") || !strcmp(sweep_trial_state(t), "pending")) {
            sweep_mark_end(s, t, !strcmp(sweep_trial_state(t), "paused") ? "stopped" : "cancelled", "remove");
            tune_sched_remove(s->sched, t->id);
            sweep_save_trial(s, t);
            write_track(s, t);
        }
    }
}

/* ---- starting trials --------------------------------------------------------- */

static int count_running(const loom_sweep *s)
{
    int n = 0;
    for (int64_t i = 0; i < s->ntrials; i++) n += s->trials[i]->running;
    return n;
}

trial *sweep_find_trial(loom_sweep *s, int64_t id)
{
    return id >= 0 && id < s->ntrials ? s->trials[id] : NULL;
}

void sweep_collect_promoted(loom_sweep *s)
{
    int64_t id;
    while ((id = tune_sched_next_paused(s->sched)) >= 0) {
        if (s->npromoted == s->cappromoted) {
            int cap = s->cappromoted ? s->cappromoted * 2 : 16;
            int64_t *np = realloc(s->promoted, (size_t)cap * sizeof(*np));
            if (!np) return;
            s->promoted = np;
            s->cappromoted = cap;
        }
        s->promoted[s->npromoted++] = id;
    }
}

/* Create the next trial from the search (pending, not started); *out is
 * NULL when the search is exhausted. */
static int create_trial(loom_sweep *s, trial **out)
{
    json_t *config = NULL;
    int64_t id = s->ntrials;
    *out = NULL;
    int rc = tune_search_next(s->search, id, &config);
    if (rc == LOOM_ENOTFOUND) {
        s->exhausted = 1;
        return LOOM_OK;
    }
    if (rc) return sweep_fail(s, rc, "the search failed");
    json_t *rec = new_trial_record(id, config);
    trial *t = rec ? sweep_trial_add(s, id, rec) : NULL;
    if (!t) {
        json_decref(rec);
        return LOOM_ENOMEM;
    }
    tune_sched_add(s->sched, id);
    json_object_set_new(s->sweep, "next_trial", json_integer(s->ntrials));
    if ((rc = sweep_save_trial(s, t)) || (rc = sweep_save_sweep(s))) return rc;
    *out = t;
    return LOOM_OK;
}

static int may_create(const loom_sweep *s)
{
    return !s->exhausted && (!s->max_trials || s->ntrials < s->max_trials);
}

/* Hyperband fills a bracket with the trials that exist when its first ones
 * reach their milestone: so its trials are all created up front (when their
 * number is bounded), pending until there is room to start them. */
static int create_up_front(loom_sweep *s)
{
    if (strcmp(tune_sched_type(s->sched), "hyperband")) return LOOM_OK;
    int64_t total = tune_search_total(s->search);
    if (!s->max_trials && total < 0) return LOOM_OK;
    int rc = LOOM_OK;
    trial *t;
    while (!rc && may_create(s)) rc = create_trial(s, &t);
    return rc;
}

static trial *first_pending(loom_sweep *s)
{
    for (int64_t i = 0; i < s->ntrials; i++)
        if (!strcmp(sweep_trial_state(s->trials[i]), "pending")) return s->trials[i];
    return NULL;
}

/* Start promoted paused trials first, then pending ones, then new ones, up
 * to the limits. */
static int start_trials(loom_sweep *s, int64_t now)
{
    sweep_collect_promoted(s);
    int rc = create_up_front(s);
    while (!rc && count_running(s) < s->concurrent && room_for_one(s, now)) {
        if (s->npromoted) {
            trial *t = sweep_find_trial(s, s->promoted[0]);
            memmove(s->promoted, s->promoted + 1, (size_t)--s->npromoted * sizeof(*s->promoted));
            if (t && !strcmp(sweep_trial_state(t), "paused")) rc = sweep_trial_launch(s, t);
            continue;
        }
        trial *t = first_pending(s);
        if (!t && may_create(s) && (rc = create_trial(s, &t))) break;
        if (!t) break;
        rc = sweep_trial_launch(s, t);
    }
    return rc;
}

/* ---- progress ------------------------------------------------------------------ */

static void fill_progress(loom_sweep *s, loom_sweep_progress *p)
{
    memset(p, 0, sizeof(*p));
    int64_t now = loom__wall_ms();
    p->trials = s->ntrials;
    p->best_trial = -1;
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        const char *st = sweep_trial_state(t);
        if (!strcmp(st, "running")) p->running++;
        else if (!strcmp(st, "paused")) p->paused++;
        else if (!strcmp(st, "completed")) p->completed++;
        else if (!strcmp(st, "stopped")) p->stopped++;
        else if (!strcmp(st, "failed")) p->failed++;
        json_t *b = json_object_get(t->rec, "best");
        if (json_is_number(b) && (!p->has_best || better(s, json_number_value(b), p->best))) {
            p->has_best = 1;
            p->best = json_number_value(b);
            p->best_trial = t->id;
        }
    }
    p->wall_s = sweep_wall_used(s, now);
    p->gpu_hours = (s->gpu_s_done + sweep_running_seconds(s, s->gpus, now)) / 3600.0;
    p->cpu_hours = (s->cpu_s_done + sweep_running_seconds(s, s->cpus, now)) / 3600.0;
    p->wall_limit_s = s->wall_limit_s;
    p->gpu_hours_limit = s->gpu_hours_limit;
    p->cpu_hours_limit = s->cpu_hours_limit;
    p->trials_limit = s->max_trials;
    p->iterations = s->iterations;
    p->state = s->state;
    p->done = strcmp(s->state, "running") != 0;
}

/* ---- running ------------------------------------------------------------------- */

static void check_stop(loom_sweep *s, int64_t now)
{
    if (now - s->last_stop_check < 200) return;
    s->last_stop_check = now;
    char key[TUNE_KEY_MAX];
    void *d = NULL;
    size_t n;
    snprintf(key, sizeof(key), "tune/s/%s/stop", s->id);
    if (!loom_kv_get(s->c, key, 0, &d, &n)) s->stop_asked = 1;
    free(d);
}

void sweep_update_best(loom_sweep *s)
{
    loom_sweep_progress p;
    fill_progress(s, &p);
    json_object_set_new(s->sweep, "best_trial", p.has_best ? json_integer(p.best_trial) : json_null());
    json_object_set_new(s->sweep, "best", p.has_best ? json_real(p.best) : json_null());
}

/* The spec's "register": the best trial's artifact into the model registry. */
static void register_best(loom_sweep *s)
{
    json_t *bt = json_object_get(s->sweep, "best_trial");
    if (!json_object_get(s->spec, "register") || !json_is_integer(bt)) return;
    trial *t = sweep_find_trial(s, json_integer_value(bt));
    json_t *r = NULL;
    char err[600];
    if (!t) return;
    if (tune_register_best(s->c, s->sweep, t->rec, &r, err, sizeof(err))) {
        fprintf(stderr, "loom tune: the best model was not registered: %s\n", err);
        json_object_set_new(s->sweep, "register_error", json_string(err));
        return;
    }
    fprintf(stderr, "loom tune: registered trial %lld's model as %s version %lld\n", (long long)t->id,
            json_string_value(json_object_get(r, "name")), (long long)json_integer_value(json_object_get(r, "version")));
    json_object_set_new(s->sweep, "registered", r);
}

void sweep_finish(loom_sweep *s, const char *state)
{
    snprintf(s->state, sizeof(s->state), "%s", state);
    json_object_set_new(s->sweep, "state", json_string(state));
    json_object_set_new(s->sweep, "ended_ms", json_integer(loom__wall_ms()));
    sweep_update_best(s);
    register_best(s);
    sweep_save_sweep(s);
    json_t *all = json_array();
    for (int64_t i = 0; i < s->ntrials; i++) json_array_append(all, s->trials[i]->rec);
    char err[512];
    for (int64_t i = 0; i < s->ntrials; i++) write_track(s, s->trials[i]);
    if (tune_track_results(s->out_dir, s->sweep, all, err, sizeof(err)))
        fprintf(stderr, "loom tune: results not written: %s\n", err);
    json_decref(all);
}

/* May this driver run the sweep?  Not when it has ended, nor while another
 * driver beats: a beat seen recently is watched until it stops (a killed
 * driver) or moves (a live one). */
static int may_drive(loom_sweep *s)
{
    const char *st = json_string_value(json_object_get(s->sweep, "state"));
    if (st && strcmp(st, "running") && strcmp(st, "created"))
        return sweep_fail(s, LOOM_ESTATE, "sweep %s has ended (%s)", s->id, st);
    if (!st || strcmp(st, "running")) return LOOM_OK;
    int64_t beat = (int64_t)sweep_num(s->sweep, "driver_ms", 0);
    char key[TUNE_KEY_MAX];
    sweep_key_sweep(s->id, key, sizeof(key));
    while (loom__wall_ms() - beat < DRIVER_STALE_MS) {
        usleep(250 * 1000);
        json_t *now = NULL;
        if (tune_kv_get_json(s->c, key, 0, &now)) continue;
        int64_t b = (int64_t)sweep_num(now, "driver_ms", 0);
        json_decref(now);
        if (b != beat)
            return sweep_fail(s, LOOM_ESTATE, "sweep %s is being run by another driver", s->id);
    }
    return LOOM_OK;
}

int loom_sweep_run(loom_sweep *s, loom_sweep_progress_fn progress, void *arg, int interval_ms)
{
    if (!s) return LOOM_EINVAL;
    int rc = may_drive(s);
    if (rc) return rc;
    s->session_ms = loom__wall_ms();
    snprintf(s->state, sizeof(s->state), "running");
    json_object_set_new(s->sweep, "state", json_string("running"));
    json_object_set_new(s->sweep, "opened_ms", json_integer(s->session_ms));
    if ((rc = sweep_save_sweep(s))) return sweep_fail(s, rc, "cannot store the sweep: %s", loom_last_error(s->c));
    for (int64_t i = 0; i < s->ntrials; i++)
        if (!strcmp(sweep_trial_state(s->trials[i]), "running")) sweep_adopt(s, s->trials[i]);
    if (mkdir(s->out_dir, 0755) && errno != EEXIST) {
        /* track.c makes parents; this only checks early that the place is writable */
    }
    int64_t last_progress = 0, last_busy = 0;
    const char *why = NULL, *end_state = NULL;
    s->interrupt = 0;
    while (!end_state && !s->interrupt) {
        int64_t now = loom__wall_ms();
        check_stop(s, now);
        int busy = 0;
        for (int64_t i = 0; i < s->ntrials; i++) {
            trial *t = s->trials[i];
            if (!t->running) continue;
            if (s->kind == KIND_ACTOR) poll_actor(s, t);
            else {
                if (!t->ending) busy += poll_reports(s, t);
                if (t->running) poll_task_end(s, t);
            }
        }
        now = loom__wall_ms();
        if (s->stop_asked) end_state = "stopped";
        else if (over_budget(s, now, &why)) {
            end_state = "budget";
            fprintf(stderr, "loom tune: sweep %s: the %s limit is reached; stopping its trials\n", s->id, why);
        } else if ((rc = start_trials(s, now))) {
            fprintf(stderr, "loom tune: %s\n", sweep_err);
            end_state = "failed";
        } else if (!count_running(s) && !s->npromoted &&
                   ((!may_create(s) && !first_pending(s)) || !room_for_one(s, now))) {
            end_state = room_for_one(s, now) ? "completed" : "budget";
        }
        if (end_state) sweep_stop_all(s);
        if (now - s->last_beat >= HEARTBEAT_MS || end_state) {
            s->last_beat = now;
            sweep_update_best(s);
            sweep_save_sweep(s);
        }
        if (end_state) sweep_finish(s, end_state);
        if (progress && (end_state || now - last_progress >= interval_ms)) {
            loom_sweep_progress p;
            fill_progress(s, &p);
            progress(&p, arg);
            last_progress = now;
        }
        if (busy) last_busy = now;
        /* look often while trials report, less when they are quiet */
        if (!busy && !end_state) usleep(now - last_busy < 200 ? 500 : TICK_MS * 1000);
    }
    return !strcmp(s->state, "failed") ? LOOM_ETASK : LOOM_OK;
}

void loom_sweep_interrupt(loom_sweep *s)
{
    if (s) s->interrupt = 1;
}
