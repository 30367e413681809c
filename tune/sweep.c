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
 * they did not survive). */
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

#include "loom/tune.h"
#include "tune/sched.h"
#include "tune/search.h"
#include "tune/space.h"
#include "tune/track.h"
#include "tune/tune_internal.h"
#include "tune/util.h"

#define TICK_MS 5
#define HEARTBEAT_MS 1000
#define DRIVER_STALE_MS 5000
#define STOP_MARGIN_S 0.5     /* a limit is acted on this long before it is reached */
#define MAX_TRIALS_HARD 100000
#define END_GRACE_MS 1000
#define RESULTS_BLOCK 64

enum { KIND_FUNCTION, KIND_COMMAND, KIND_ACTOR };
/* How a trial told to end does end: stopped, paused, or completed (max_t). */
enum { END_STOP = LOOM_TUNE_STOP, END_PAUSE = LOOM_TUNE_PAUSE, END_COMPLETE = 3 };

typedef struct trial {
    int64_t id;
    json_t *rec;            /* the trial record (tune/track.h), owned */
    int running;            /* a task or actor is out for it */
    int64_t attempt, next_seq;
    char job[LOOM_JOB_ID_LEN];
    loom_ref ref;
    loom_pg pg;
    int has_pg;
    loom_actor actor;
    loom_ref call;          /* actor trials: the step call under way */
    int call_out;
    int64_t start_ms;       /* this attempt's submission */
    int ending;             /* told to end (END_*): waiting for its task, until end_by */
    int64_t end_by;
    double last_t;
    int64_t saved_results;  /* results already in their blocks */
    int dirty;
} trial;

struct loom_sweep {
    loom_client *c;
    char id[40];
    json_t *sweep;          /* the sweep record, owned; spec inside */
    const json_t *spec;
    tune_space *space;
    tune_search *search;
    tune_sched *sched;
    trial **trials;
    int64_t ntrials, cap;
    const char *metric;
    int maximize, kind;
    const char *function, *actor_cls;
    loom_ref lib;
    int has_lib;
    double cpus, gpus;      /* per trial, bundles included */
    int64_t max_trials, concurrent, max_failures;
    double gpu_hours_limit, cpu_hours_limit, wall_limit_s;
    double wall_before_s;   /* wall time of earlier runs of the sweep */
    int64_t session_ms;     /* this run's start */
    double cpu_s_done, gpu_s_done; /* of attempts that ended */
    int64_t gseq, iterations;
    int64_t *promoted;      /* paused trials the scheduler let go on */
    int npromoted, cappromoted;
    int exhausted, stop_asked, budget_hit;
    volatile sig_atomic_t interrupt;
    char state[16];
    char out_dir[PATH_MAX];
    int64_t last_beat, last_stop_check;
};

/* ---- small helpers --------------------------------------------------------- */

static int fail(loom_sweep *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The reason of the last failure, per thread (loom_sweep_last_error). */
static __thread char sweep_err[512];

static int fail(loom_sweep *s, int rc, const char *fmt, ...)
{
    (void)s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sweep_err, sizeof(sweep_err), fmt, ap);
    va_end(ap);
    return rc;
}

const char *loom_sweep_last_error(void) { return sweep_err; }

static double num(const json_t *o, const char *k, double dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static void key_sweep(const char *id, char *out, size_t cap) { snprintf(out, cap, "tune/s/%s/sweep", id); }
static void key_trial(const char *id, int64_t n, char *out, size_t cap)
{
    snprintf(out, cap, "tune/s/%s/t/%lld", id, (long long)n);
}

/* The loss the scheduler and search see: lower is better. */
static double loss_of(const loom_sweep *s, double v) { return s->maximize ? -v : v; }

static int better(const loom_sweep *s, double a, double b) { return s->maximize ? a > b : a < b; }

static const char *trial_state(const trial *t) { return json_string_value(json_object_get(t->rec, "state")); }

static void set_state(trial *t, const char *st)
{
    json_object_set_new(t->rec, "state", json_string(st));
    t->dirty = 1;
}

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
    if (!json_is_object(res)) return fail(s, LOOM_EINVAL, "resources: want an object");
    int rc = check_keys(s, res, "resources", keys);
    if (rc) return rc;
    s->cpus = num(res, "cpus", 1);
    s->gpus = num(res, "gpus", 0);
    if (s->cpus < 0 || s->gpus < 0) return fail(s, LOOM_EINVAL, "resources: cpus and gpus must be >= 0");
    json_t *b = json_object_get(res, "bundles");
    if (b) {
        if (!json_is_array(b) || !json_array_size(b) || json_array_size(b) > 64)
            return fail(s, LOOM_EINVAL, "resources.bundles: want 1..64 bundles");
        s->cpus = s->gpus = 0;
        size_t i;
        json_t *e;
        json_array_foreach(b, i, e) {
            if (!json_is_object(e)) return fail(s, LOOM_EINVAL, "resources.bundles[%zu]: want an object", i);
            s->cpus += num(e, "cpus", 0);
            s->gpus += num(e, "gpus", 0);
        }
    }
    const char *st = json_string_value(json_object_get(res, "strategy"));
    if (st && strcmp(st, "PACK") && strcmp(st, "SPREAD") && strcmp(st, "STRICT_PACK") &&
        strcmp(st, "STRICT_SPREAD"))
        return fail(s, LOOM_EINVAL, "resources.strategy: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD");
    return LOOM_OK;
}

static int parse_limits(loom_sweep *s, const json_t *l)
{
    static const char *const keys[] = {"trials", "concurrent", "gpu_hours", "cpu_hours", "wall_seconds",
                                       "max_failures", NULL};
    s->concurrent = 1;
    s->max_failures = 2;
    if (!l) return LOOM_OK;
    if (!json_is_object(l)) return fail(s, LOOM_EINVAL, "limits: want an object");
    int rc = check_keys(s, l, "limits", keys);
    if (rc) return rc;
    s->max_trials = (int64_t)num(l, "trials", 0);
    s->concurrent = (int64_t)num(l, "concurrent", 1);
    s->gpu_hours_limit = num(l, "gpu_hours", 0);
    s->cpu_hours_limit = num(l, "cpu_hours", 0);
    s->wall_limit_s = num(l, "wall_seconds", 0);
    s->max_failures = (int64_t)num(l, "max_failures", 2);
    if (s->max_trials < 0 || s->max_trials > MAX_TRIALS_HARD || s->concurrent < 1 || s->concurrent > 10000 ||
        s->gpu_hours_limit < 0 || s->cpu_hours_limit < 0 || s->wall_limit_s < 0 || s->max_failures < 0)
        return fail(s, LOOM_EINVAL, "limits: trials 0..%d, concurrent 1..10000, budgets >= 0",
                    MAX_TRIALS_HARD);
    return LOOM_OK;
}

static int parse_trial(loom_sweep *s, const json_t *t)
{
    static const char *const keys[] = {"command", "env", "cwd", "library", "function", "actor", NULL};
    if (!json_is_object(t)) return fail(s, LOOM_EINVAL, "trial: want an object");
    int rc = check_keys(s, t, "trial", keys);
    if (rc) return rc;
    json_t *cmd = json_object_get(t, "command");
    const char *lib = json_string_value(json_object_get(t, "library"));
    s->function = json_string_value(json_object_get(t, "function"));
    s->actor_cls = json_string_value(json_object_get(t, "actor"));
    if (cmd) {
        if (!json_is_array(cmd) || !json_array_size(cmd)) return fail(s, LOOM_EINVAL, "trial.command: want argv");
        for (size_t i = 0; i < json_array_size(cmd); i++)
            if (!json_is_string(json_array_get(cmd, i)))
                return fail(s, LOOM_EINVAL, "trial.command[%zu]: want a string", i);
        if (lib || s->function || s->actor_cls)
            return fail(s, LOOM_EINVAL, "trial: a command, or a library with a function or actor, not both");
        s->kind = KIND_COMMAND;
        return LOOM_OK;
    }
    if (!lib || (!s->function == !s->actor_cls))
        return fail(s, LOOM_EINVAL, "trial: want {\"command\": [...]}, or \"library\" with \"function\" or \"actor\"");
    s->kind = s->function ? KIND_FUNCTION : KIND_ACTOR;
    return LOOM_OK;
}

/* Build space, search and scheduler from the spec (created or loaded). */
static int load_spec(loom_sweep *s)
{
    static const char *const keys[] = {"name", "metric", "mode", "space", "search", "scheduler", "trial",
                                       "resources", "limits", "output", "data", "register", NULL};
    const json_t *sp = s->spec;
    char err[512] = "";
    if (!json_is_object(sp)) return fail(s, LOOM_EINVAL, "the sweep spec must be a JSON object");
    int rc = check_keys(s, sp, "spec", keys);
    if (rc) return rc;
    s->metric = json_string_value(json_object_get(sp, "metric"));
    const char *mode = json_string_value(json_object_get(sp, "mode"));
    if (!s->metric || !*s->metric) return fail(s, LOOM_EINVAL, "spec: \"metric\" (a name) is required");
    if (mode && strcmp(mode, "min") && strcmp(mode, "max")) return fail(s, LOOM_EINVAL, "spec: mode is min or max");
    s->maximize = mode && !strcmp(mode, "max");
    if ((rc = tune_space_parse(json_object_get(sp, "space"), &s->space, err, sizeof(err))))
        return fail(s, rc, "space: %s", err);
    json_t *search = json_object_get(sp, "search"), *opts = json_object();
    const char *algo = "random";
    uint64_t seed = 0;
    if (search && !json_is_object(search)) rc = fail(s, LOOM_EINVAL, "search: want an object");
    const char *k;
    json_t *v;
    json_object_foreach(search, k, v) {
        if (!strcmp(k, "algorithm")) algo = json_string_value(v) ? json_string_value(v) : "";
        else if (!strcmp(k, "seed")) seed = (uint64_t)json_integer_value(v);
        else json_object_set(opts, k, v);
    }
    if (!rc && (rc = tune_search_new(algo, s->space, seed, opts, &s->search, err, sizeof(err))))
        rc = fail(s, rc, "search: %s", err);
    json_decref(opts);
    if (rc) return rc;
    json_t *sched = json_object_get(sp, "scheduler"), *fifo = json_pack("{s:s}", "type", "fifo");
    rc = tune_sched_new(sched ? sched : fifo, &s->sched, err, sizeof(err));
    json_decref(fifo);
    if (rc) return fail(s, rc, "scheduler: %s", err);
    if ((rc = parse_trial(s, json_object_get(sp, "trial"))) ||
        (rc = parse_resources(s, json_object_get(sp, "resources"))) ||
        (rc = parse_limits(s, json_object_get(sp, "limits"))))
        return rc;
    static const char *const reg_keys[] = {"name", "artifact", "gateway", "public", "token_env", NULL};
    json_t *reg = json_object_get(sp, "register");
    if (reg && (!json_is_object(reg) || !json_is_string(json_object_get(reg, "name"))))
        return fail(s, LOOM_EINVAL, "register: want {\"name\": MODEL, \"artifact\": FILE, \"gateway\": HOST:PORT}");
    if (reg && (rc = check_keys(s, reg, "register", reg_keys))) return rc;
    const char *out = json_string_value(json_object_get(sp, "output"));
    const char *name = json_string_value(json_object_get(sp, "name"));
    if (out) snprintf(s->out_dir, sizeof(s->out_dir), "%s", out);
    else snprintf(s->out_dir, sizeof(s->out_dir), "tune-results/%s-%.8s", name ? name : "sweep", s->id);
    return LOOM_OK;
}

/* ---- persistence ------------------------------------------------------------ */

static double running_seconds(const loom_sweep *s, double per_trial, int64_t now)
{
    double sum = 0;
    for (int64_t i = 0; i < s->ntrials; i++)
        if (s->trials[i]->running) sum += per_trial * (double)(now - s->trials[i]->start_ms) / 1000.0;
    return sum;
}

static double wall_used(const loom_sweep *s, int64_t now)
{
    return s->wall_before_s + (double)(now - s->session_ms) / 1000.0;
}

static void update_usage(loom_sweep *s)
{
    int64_t now = tune_wall_ms();
    json_t *u = json_pack("{s:f, s:f, s:f, s:I, s:I}", "wall_s", wall_used(s, now), "gpu_hours",
                          (s->gpu_s_done + running_seconds(s, s->gpus, now)) / 3600.0, "cpu_hours",
                          (s->cpu_s_done + running_seconds(s, s->cpus, now)) / 3600.0, "trials",
                          (json_int_t)s->ntrials, "iterations", (json_int_t)s->iterations);
    json_object_set_new(s->sweep, "usage", u);
    json_object_set_new(s->sweep, "gpu_s_done", json_real(s->gpu_s_done));
    json_object_set_new(s->sweep, "cpu_s_done", json_real(s->cpu_s_done));
    json_object_set_new(s->sweep, "gseq", json_integer(s->gseq));
}

static int save_sweep(loom_sweep *s)
{
    char key[TUNE_KEY_MAX];
    update_usage(s);
    json_object_set_new(s->sweep, "driver_ms", json_integer(tune_wall_ms()));
    key_sweep(s->id, key, sizeof(key));
    return tune_kv_put_json(s->c, key, s->sweep);
}

/* A trial's results are kept in blocks of RESULTS_BLOCK beside its record
 * (tune/s/<S>/t/<N>/res/<b>): a report rewrites the record and its block, not
 * every result so far, and no value outgrows the table's 1 MiB. */
static void key_block(const char *id, int64_t n, int64_t b, char *out, size_t cap)
{
    snprintf(out, cap, "tune/s/%s/t/%lld/res/%lld", id, (long long)n, (long long)b);
}

static int save_trial(loom_sweep *s, trial *t)
{
    char key[TUNE_KEY_MAX];
    json_object_set_new(t->rec, "attempts", json_integer(t->attempt));
    json_object_set_new(t->rec, "next_seq", json_integer(t->next_seq));
    json_object_set_new(t->rec, "job", json_string(t->job));
    json_t *res = json_object_get(t->rec, "results");
    int64_t n = (int64_t)json_array_size(res), rc = LOOM_OK;
    for (int64_t b = t->saved_results / RESULTS_BLOCK; !rc && b * RESULTS_BLOCK < n; b++) {
        json_t *blk = json_array();
        for (int64_t k = b * RESULTS_BLOCK; k < n && k < (b + 1) * RESULTS_BLOCK; k++)
            json_array_append(blk, json_array_get(res, (size_t)k));
        key_block(s->id, t->id, b, key, sizeof(key));
        rc = tune_kv_put_json(s->c, key, blk);
        json_decref(blk);
    }
    if (rc) return (int)rc;
    t->saved_results = n;
    json_t *rec = json_copy(t->rec); /* the record without its results */
    json_object_del(rec, "results");
    json_object_set_new(rec, "nresults", json_integer(n));
    key_trial(s->id, t->id, key, sizeof(key));
    rc = tune_kv_put_json(s->c, key, rec);
    json_decref(rec);
    if (!rc) t->dirty = 0;
    return (int)rc;
}

/* A trial's record with its results put back (loom_sweep_open). */
static int load_trial(loom_client *c, const char *id, int64_t n, json_t **out)
{
    char key[TUNE_KEY_MAX];
    json_t *rec = NULL, *res = json_array();
    key_trial(id, n, key, sizeof(key));
    int rc = tune_kv_get_json(c, key, 0, &rec);
    int64_t nres = rc ? 0 : json_integer_value(json_object_get(rec, "nresults"));
    for (int64_t b = 0; !rc && b * RESULTS_BLOCK < nres; b++) {
        json_t *blk = NULL;
        key_block(id, n, b, key, sizeof(key));
        if (!(rc = tune_kv_get_json(c, key, 0, &blk))) json_array_extend(res, blk);
        json_decref(blk);
    }
    if (!rc && (int64_t)json_array_size(res) < nres) rc = LOOM_EPROTO;
    if (rc) {
        json_decref(rec);
        json_decref(res);
        return rc;
    }
    json_object_del(rec, "nresults");
    json_object_set_new(rec, "results", res);
    *out = rec;
    return LOOM_OK;
}

/* ---- trials ------------------------------------------------------------------ */

static trial *trial_add(loom_sweep *s, int64_t id, json_t *rec)
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
            return fail(s, LOOM_ENOTFOUND, "cannot find libloom_tune.so's path");
        path = info.dli_fname;
    }
    int rc = loom_library_load(s->c, path, &s->lib);
    if (rc) return fail(s, rc, "cannot load the trial library %s: %s", path, loom_last_error(s->c));
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
        bundles[i].num_cpus = num(e, "cpus", 0);
        bundles[i].num_gpus = num(e, "gpus", 0);
        bundles[i].memory = (uint64_t)num(e, "memory", 0);
    }
    char name[96];
    snprintf(name, sizeof(name), "tune-%.16s-%lld-%lld", s->id, (long long)t->id, (long long)t->attempt);
    int rc = loom_pg_create(s->c, bundles, (int)n, strategy_of(json_string_value(json_object_get(res, "strategy"))),
                            name, &t->pg);
    if (rc) return fail(s, rc, "placement group: %s", loom_last_error(s->c));
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
        o->num_cpus = num(b0, "cpus", 0) > 0 ? num(b0, "cpus", 0) : 0.001;
        o->num_gpus = num(b0, "gpus", 0);
    } else {
        o->num_cpus = s->cpus > 0 ? s->cpus : 0.001;
        o->num_gpus = s->gpus;
        o->memory = (uint64_t)num(res, "memory", 0);
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
    if (rc) return fail(s, rc, "cannot submit trial %lld: %s", (long long)t->id, loom_last_error(s->c));
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
    if (rc) return fail(s, rc, "cannot start actor trial %lld: %s", (long long)t->id, loom_last_error(s->c));
    char hex[33];
    loom_actor_to_hex(&t->actor, hex);
    json_object_set_new(t->rec, "actor", json_string(hex));
    t->call_out = 1;
    t->job[0] = 0;
    return LOOM_OK;
}

/* Start (or restart, from the record's checkpoint) a trial. */
static int trial_launch(loom_sweep *s, trial *t)
{
    int rc = ensure_library(s);
    if (rc) return rc;
    t->attempt++;
    t->next_seq = 0;
    t->has_pg = 0;
    json_t *ck = json_object_get(t->rec, "checkpoint");
    t->last_t = json_is_object(ck) ? num(ck, "t", 0) : 0;
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
    t->start_ms = tune_wall_ms();
    if (!json_is_integer(json_object_get(t->rec, "start_ms")))
        json_object_set_new(t->rec, "start_ms", json_integer(t->start_ms));
    json_object_del(t->rec, "end_ms");
    set_state(t, "running");
    return save_trial(s, t);
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
    int64_t now = tune_wall_ms();
    double secs = (double)(now - t->start_ms) / 1000.0;
    s->cpu_s_done += s->cpus * secs;
    s->gpu_s_done += s->gpus * secs;
    json_object_set_new(t->rec, "cpu_seconds", json_real(num(t->rec, "cpu_seconds", 0) + s->cpus * secs));
    json_object_set_new(t->rec, "gpu_seconds", json_real(num(t->rec, "gpu_seconds", 0) + s->gpus * secs));
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

static void mark_end(loom_sweep *s, trial *t, const char *state, const char *event)
{
    set_state(t, state);
    json_object_set_new(t->rec, "end_g", json_integer(++s->gseq));
    json_object_set_new(t->rec, "end_event", json_string(event));
    trial_cleanup(s, t);
}

static double best_loss(const loom_sweep *s, const trial *t)
{
    json_t *b = json_object_get(t->rec, "best");
    return json_is_number(b) ? loss_of(s, json_number_value(b)) : NAN;
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
    mark_end(s, t, "completed", "complete");
    json_t *last = json_object_get(t->rec, "last");
    json_t *v = json_object_get(last, s->metric);
    tune_sched_complete(s->sched, t->id, t->last_t, json_is_number(v) ? loss_of(s, json_number_value(v)) : NAN);
    tune_search_observe(s->search, json_object_get(t->rec, "config"), best_loss(s, t));
    save_trial(s, t);
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
        mark_end(s, t, "stopped", by_sched ? "sched_stop" : "remove");
        if (!by_sched) tune_sched_remove(s->sched, t->id);
        tune_search_observe(s->search, json_object_get(t->rec, "config"), best_loss(s, t));
    }
    save_trial(s, t);
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
        if (!trial_launch(s, t)) return;
    }
    json_object_set_new(t->rec, "error", json_string(msg));
    mark_end(s, t, "failed", "remove");
    tune_sched_remove(s->sched, t->id);
    save_trial(s, t);
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
    double step = num(rep, "t", t->last_t + 1);
    json_t *metrics = json_object_get(rep, "metrics");
    const char *art = json_string_value(json_object_get(rep, "artifact"));
    if (art) keep_artifact(s, t, art);
    if (step <= t->last_t) return LOOM_TUNE_CONTINUE; /* replayed after a restart */
    t->last_t = step;
    s->iterations++;
    json_t *r = json_pack("{s:f, s:O, s:I, s:I}", "t", step, "metrics", metrics ? metrics : json_object(),
                          "time_ms", (json_int_t)num(rep, "time_ms", (double)tune_wall_ms()), "g",
                          (json_int_t)++s->gseq);
    json_array_append_new(json_object_get(t->rec, "results"), r);
    json_object_set(t->rec, "last", metrics ? metrics : json_null());
    json_t *ck = json_object_get(rep, "ckpt");
    if (json_is_object(ck)) keep_checkpoint(s, t, ck, step);
    json_t *v = json_object_get(metrics, s->metric);
    t->dirty = 1;
    if (!json_is_number(v)) return LOOM_TUNE_CONTINUE;
    note_best(s, t, json_number_value(v), step);
    tune_decision d = tune_sched_result(s->sched, t->id, step, loss_of(s, json_number_value(v)));
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
    t->end_by = tune_wall_ms() + END_GRACE_MS;
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
        save_trial(s, t); /* recorded before it is answered */
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
    save_trial(s, t);
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
        if (t->ending && tune_wall_ms() >= t->end_by) end_now(s, t, t->ending);
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
    if (s->wall_limit_s > 0 && wall_used(s, now) + STOP_MARGIN_S >= s->wall_limit_s) {
        *which = "wall time";
        return 1;
    }
    double gpu_s = s->gpu_s_done + running_seconds(s, s->gpus, now) + s->gpus * running * STOP_MARGIN_S;
    if (s->gpu_hours_limit > 0 && gpu_s >= s->gpu_hours_limit * 3600.0) {
        *which = "GPU hours";
        return 1;
    }
    double cpu_s = s->cpu_s_done + running_seconds(s, s->cpus, now) + s->cpus * running * STOP_MARGIN_S;
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
        s->gpu_s_done + running_seconds(s, s->gpus, now) + s->gpus * (running + 1) * margin >= s->gpu_hours_limit * 3600.0)
        return 0;
    if (s->cpu_hours_limit > 0 && s->cpus > 0 &&
        s->cpu_s_done + running_seconds(s, s->cpus, now) + s->cpus * (running + 1) * margin >= s->cpu_hours_limit * 3600.0)
        return 0;
    if (s->wall_limit_s > 0 && wall_used(s, now) + margin >= s->wall_limit_s) return 0;
    return 1;
}

static void stop_all(loom_sweep *s)
{
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        if (t->running && t->ending) end_now(s, t, t->ending);
        else if (t->running) trial_ended_by_us(s, t, LOOM_TUNE_STOP, 0);
        else if (!strcmp(trial_state(t), "paused") || !strcmp(trial_state(t), "pending")) {
            mark_end(s, t, !strcmp(trial_state(t), "paused") ? "stopped" : "cancelled", "remove");
            tune_sched_remove(s->sched, t->id);
            save_trial(s, t);
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

static trial *find_trial(loom_sweep *s, int64_t id)
{
    return id >= 0 && id < s->ntrials ? s->trials[id] : NULL;
}

static void collect_promoted(loom_sweep *s)
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
    if (rc) return fail(s, rc, "the search failed");
    json_t *rec = new_trial_record(id, config);
    trial *t = rec ? trial_add(s, id, rec) : NULL;
    if (!t) {
        json_decref(rec);
        return LOOM_ENOMEM;
    }
    tune_sched_add(s->sched, id);
    json_object_set_new(s->sweep, "next_trial", json_integer(s->ntrials));
    if ((rc = save_trial(s, t)) || (rc = save_sweep(s))) return rc;
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
        if (!strcmp(trial_state(s->trials[i]), "pending")) return s->trials[i];
    return NULL;
}

/* Start promoted paused trials first, then pending ones, then new ones, up
 * to the limits. */
static int start_trials(loom_sweep *s, int64_t now)
{
    collect_promoted(s);
    int rc = create_up_front(s);
    while (!rc && count_running(s) < s->concurrent && room_for_one(s, now)) {
        if (s->npromoted) {
            trial *t = find_trial(s, s->promoted[0]);
            memmove(s->promoted, s->promoted + 1, (size_t)--s->npromoted * sizeof(*s->promoted));
            if (t && !strcmp(trial_state(t), "paused")) rc = trial_launch(s, t);
            continue;
        }
        trial *t = first_pending(s);
        if (!t && may_create(s) && (rc = create_trial(s, &t))) break;
        if (!t) break;
        rc = trial_launch(s, t);
    }
    return rc;
}

/* ---- progress ------------------------------------------------------------------ */

static void fill_progress(loom_sweep *s, loom_sweep_progress *p)
{
    memset(p, 0, sizeof(*p));
    int64_t now = tune_wall_ms();
    p->trials = s->ntrials;
    p->best_trial = -1;
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        const char *st = trial_state(t);
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
    p->wall_s = wall_used(s, now);
    p->gpu_hours = (s->gpu_s_done + running_seconds(s, s->gpus, now)) / 3600.0;
    p->cpu_hours = (s->cpu_s_done + running_seconds(s, s->cpus, now)) / 3600.0;
    p->wall_limit_s = s->wall_limit_s;
    p->gpu_hours_limit = s->gpu_hours_limit;
    p->cpu_hours_limit = s->cpu_hours_limit;
    p->trials_limit = s->max_trials;
    p->iterations = s->iterations;
    p->state = s->state;
    p->done = strcmp(s->state, "running") != 0;
}

/* ---- creating and opening --------------------------------------------------- */

static void sweep_free(loom_sweep *s)
{
    for (int64_t i = 0; i < s->ntrials; i++) {
        json_decref(s->trials[i]->rec);
        free(s->trials[i]);
    }
    free(s->trials);
    free(s->promoted);
    tune_search_destroy(&s->search);
    tune_sched_destroy(&s->sched);
    tune_space_destroy(&s->space);
    json_decref(s->sweep);
    free(s);
}

void loom_sweep_destroy(loom_sweep **ps)
{
    if (!ps || !*ps) return;
    sweep_free(*ps);
    *ps = NULL;
}

const char *loom_sweep_id(const loom_sweep *s) { return s ? s->id : NULL; }

static void new_id(char out[33])
{
    uint8_t b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(b, 1, sizeof(b), f) != sizeof(b)) {
        uint64_t x = (uint64_t)tune_wall_ms() ^ ((uint64_t)getpid() << 32);
        for (int i = 0; i < 16; i++) b[i] = (uint8_t)((x >> ((i % 8) * 8)) ^ (uint64_t)i * 131u);
    }
    if (f) fclose(f);
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int index_add(loom_client *c, const char *id)
{
    json_t *idx = NULL;
    if (tune_kv_get_json(c, "tune/index", 0, &idx) || !json_is_array(idx)) {
        json_decref(idx);
        idx = json_array();
    }
    json_array_append_new(idx, json_string(id));
    int rc = tune_kv_put_json(c, "tune/index", idx);
    json_decref(idx);
    return rc;
}

int loom_sweep_create(loom_client *c, const char *spec_json, loom_sweep **out)
{
    if (!c || !spec_json || !out) return LOOM_EINVAL;
    *out = NULL;
    loom_sweep *s = calloc(1, sizeof(*s));
    if (!s) return LOOM_ENOMEM;
    s->c = c;
    new_id(s->id);
    json_error_t e;
    json_t *spec = json_loads(spec_json, 0, &e);
    int rc;
    if (!spec) {
        rc = fail(s, LOOM_EINVAL, "the sweep spec is not JSON: %s (line %d)", e.text, e.line);
        sweep_free(s);
        return rc;
    }
    const char *name = json_string_value(json_object_get(spec, "name"));
    s->sweep = json_pack("{s:s, s:s, s:o, s:I, s:s, s:n, s:I, s:f}", "id", s->id, "name", name ? name : "sweep",
                         "spec", spec, "created_ms", (json_int_t)tune_wall_ms(), "state", "created", "best_trial",
                         "next_trial", (json_int_t)0, "wall_before_s", 0.0);
    if (!s->sweep) {
        sweep_free(s);
        return LOOM_ENOMEM;
    }
    s->spec = json_object_get(s->sweep, "spec");
    if ((rc = load_spec(s))) {
        sweep_free(s);
        return rc;
    }
    json_object_set_new(s->sweep, "output", json_string(s->out_dir));
    snprintf(s->state, sizeof(s->state), "created");
    s->session_ms = tune_wall_ms();
    if ((rc = save_sweep(s)) || (rc = index_add(c, s->id))) {
        fail(s, rc, "cannot store the sweep: %s", loom_last_error(c));
        sweep_free(s);
        return rc;
    }
    *out = s;
    return LOOM_OK;
}

/* Replay the recorded events in order: results, ends; then the search's
 * observations.  Rebuilds the scheduler and the search as they were. */
typedef struct event {
    int64_t g;
    int64_t trial;
    int kind; /* 0 result, 1 complete, 2 remove, 3 sched_stop (replayed by its result) */
    double t, loss;
} event;

static int cmp_event(const void *a, const void *b)
{
    const event *x = a, *y = b;
    return x->g < y->g ? -1 : x->g > y->g;
}

static int replay(loom_sweep *s)
{
    size_t n = 0, cap = 64;
    event *ev = malloc(cap * sizeof(*ev));
    if (!ev) return LOOM_ENOMEM;
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        tune_sched_add(s->sched, t->id);
        size_t k;
        json_t *r;
        json_t *res = json_object_get(t->rec, "results");
        size_t need = json_array_size(res) + 1;
        if (n + need > cap) {
            cap = (n + need) * 2;
            event *ne = realloc(ev, cap * sizeof(*ev));
            if (!ne) {
                free(ev);
                return LOOM_ENOMEM;
            }
            ev = ne;
        }
        json_array_foreach(res, k, r) {
            json_t *v = json_object_get(json_object_get(r, "metrics"), s->metric);
            double step = num(r, "t", 0);
            if (step > t->last_t) t->last_t = step;
            s->iterations++;
            if (!json_is_number(v)) continue;
            ev[n++] = (event){(int64_t)num(r, "g", 0), t->id, 0, step, loss_of(s, json_number_value(v))};
        }
        const char *end = json_string_value(json_object_get(t->rec, "end_event"));
        if (end && strcmp(end, "sched_stop")) {
            json_t *last = json_object_get(json_object_get(t->rec, "last"), s->metric);
            ev[n++] = (event){(int64_t)num(t->rec, "end_g", 0), t->id, !strcmp(end, "complete") ? 1 : 2, t->last_t,
                              json_is_number(last) ? loss_of(s, json_number_value(last)) : NAN};
        }
    }
    qsort(ev, n, sizeof(*ev), cmp_event);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].g > s->gseq) s->gseq = ev[i].g;
        if (ev[i].kind == 0) tune_sched_result(s->sched, ev[i].trial, ev[i].t, ev[i].loss);
        else if (ev[i].kind == 1) tune_sched_complete(s->sched, ev[i].trial, ev[i].t, ev[i].loss);
        else tune_sched_remove(s->sched, ev[i].trial);
        collect_promoted(s);
    }
    /* the search sees ended trials in the order they ended */
    for (int64_t i = 0; i < s->ntrials; i++) {
        json_t *eg = json_object_get(s->trials[i]->rec, "end_g");
        if (json_is_integer(eg)) ev[i] = (event){json_integer_value(eg), i, 0, 0, 0};
        else ev[i] = (event){INT64_MAX, i, 0, 0, 0};
        if (json_is_integer(eg) && json_integer_value(eg) > s->gseq) s->gseq = json_integer_value(eg);
        json_t *pg = json_object_get(s->trials[i]->rec, "pause_g");
        if (json_is_integer(pg) && json_integer_value(pg) > s->gseq) s->gseq = json_integer_value(pg);
    }
    qsort(ev, (size_t)s->ntrials, sizeof(*ev), cmp_event);
    for (int64_t i = 0; i < s->ntrials && ev[i].g != INT64_MAX; i++) {
        trial *t = s->trials[ev[i].trial];
        tune_search_observe(s->search, json_object_get(t->rec, "config"), best_loss(s, t));
    }
    free(ev);
    /* promoted trials that were resumed already are not promoted again */
    int k = 0;
    for (int i = 0; i < s->npromoted; i++) {
        trial *t = find_trial(s, s->promoted[i]);
        if (t && !strcmp(trial_state(t), "paused")) s->promoted[k++] = s->promoted[i];
    }
    s->npromoted = k;
    return LOOM_OK;
}

/* A trial that was running when the last driver stopped: adopt its task if
 * it is still there, else start it again from its checkpoint. */
static void adopt(loom_sweep *s, trial *t)
{
    t->attempt = json_integer_value(json_object_get(t->rec, "attempts"));
    t->next_seq = json_integer_value(json_object_get(t->rec, "next_seq"));
    snprintf(t->job, sizeof(t->job), "%s", json_string_value(json_object_get(t->rec, "job")) ?: "");
    t->start_ms = tune_wall_ms();
    if (s->kind != KIND_ACTOR && t->job[0] && !loom_job_ref(s->c, t->job, "trial", 0, &t->ref)) {
        int ready = 0;
        loom_wait(s->c, &t->ref, 1, 1, 0, &ready);
        loom_value *v = NULL;
        int rc = ready ? loom_get(s->c, t->ref, 0, &v) : 0;
        loom_value_release(&v);
        if (!ready || !rc) {
            t->running = 1;
            /* it may wait on an answer the last driver recorded but did not send */
            if (t->next_seq > 1) {
                char key[TUNE_KEY_MAX + 64];
                json_int_t d = json_integer_value(json_object_get(t->rec, "last_answer"));
                const char *ans = d == LOOM_TUNE_STOP ? "stop" : d == LOOM_TUNE_PAUSE ? "pause" : "continue";
                snprintf(key, sizeof(key), "tune/s/%s/t/%lld/a%lld/d/%lld", s->id, (long long)t->id,
                         (long long)t->attempt, (long long)(t->next_seq - 1));
                loom_kv_put(s->c, key, ans, strlen(ans));
                if (d == LOOM_TUNE_STOP || d == LOOM_TUNE_PAUSE) { /* it was told to end */
                    double max_t = tune_sched_max_t(s->sched);
                    t->ending = d == LOOM_TUNE_STOP && max_t > 0 && t->last_t >= max_t ? END_COMPLETE : (int)d;
                    t->end_by = tune_wall_ms() + END_GRACE_MS;
                }
            }
            return;
        }
    }
    if (t->job[0]) loom_job_delete(s->c, t->job);
    loom_actor old; /* an actor trial goes on from its last checkpoint in a new actor */
    const char *ahex = json_string_value(json_object_get(t->rec, "actor"));
    if (s->kind == KIND_ACTOR && ahex && !loom_actor_from_hex(ahex, &old)) loom_actor_kill(s->c, old);
    if (trial_launch(s, t)) {
        json_object_set_new(t->rec, "error", json_string(sweep_err));
        mark_end(s, t, "failed", "remove");
        tune_sched_remove(s->sched, t->id);
        save_trial(s, t);
    }
}

int loom_sweep_open(loom_client *c, const char *sweep_id, loom_sweep **out)
{
    if (!c || !sweep_id || !out || strlen(sweep_id) > 32) return LOOM_EINVAL;
    *out = NULL;
    loom_sweep *s = calloc(1, sizeof(*s));
    if (!s) return LOOM_ENOMEM;
    s->c = c;
    snprintf(s->id, sizeof(s->id), "%s", sweep_id);
    char key[TUNE_KEY_MAX];
    key_sweep(s->id, key, sizeof(key));
    int rc = tune_kv_get_json(c, key, 0, &s->sweep);
    if (rc) {
        fail(s, rc, "no sweep %s", sweep_id);
        sweep_free(s);
        return rc;
    }
    s->spec = json_object_get(s->sweep, "spec");
    if ((rc = load_spec(s))) {
        sweep_free(s);
        return rc;
    }
    const char *out_dir = json_string_value(json_object_get(s->sweep, "output"));
    if (out_dir) snprintf(s->out_dir, sizeof(s->out_dir), "%s", out_dir);
    snprintf(s->state, sizeof(s->state), "%s", json_string_value(json_object_get(s->sweep, "state")) ?: "created");
    json_t *u = json_object_get(s->sweep, "usage");
    s->wall_before_s = num(u, "wall_s", 0);
    s->gpu_s_done = num(s->sweep, "gpu_s_done", 0);
    s->cpu_s_done = num(s->sweep, "cpu_s_done", 0);
    s->session_ms = tune_wall_ms();
    int64_t n = (int64_t)num(s->sweep, "next_trial", 0);
    for (int64_t i = 0; i < n && !rc; i++) {
        json_t *rec = NULL;
        key_trial(s->id, i, key, sizeof(key));
        if ((rc = load_trial(c, s->id, i, &rec))) fail(s, rc, "trial %lld of sweep %s is missing", (long long)i, s->id);
        else if (!trial_add(s, i, rec)) {
            json_decref(rec);
            rc = LOOM_ENOMEM;
        } else {
            s->trials[i]->saved_results = (int64_t)json_array_size(json_object_get(rec, "results"));
        }
    }
    if (!rc) rc = replay(s);
    if (rc) {
        sweep_free(s);
        return rc;
    }
    *out = s;
    return LOOM_OK;
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

static void update_best(loom_sweep *s)
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
    trial *t = find_trial(s, json_integer_value(bt));
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

static void finish(loom_sweep *s, const char *state)
{
    snprintf(s->state, sizeof(s->state), "%s", state);
    json_object_set_new(s->sweep, "state", json_string(state));
    json_object_set_new(s->sweep, "ended_ms", json_integer(tune_wall_ms()));
    update_best(s);
    register_best(s);
    save_sweep(s);
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
        return fail(s, LOOM_ESTATE, "sweep %s has ended (%s)", s->id, st);
    if (!st || strcmp(st, "running")) return LOOM_OK;
    int64_t beat = (int64_t)num(s->sweep, "driver_ms", 0);
    char key[TUNE_KEY_MAX];
    key_sweep(s->id, key, sizeof(key));
    while (tune_wall_ms() - beat < DRIVER_STALE_MS) {
        usleep(250 * 1000);
        json_t *now = NULL;
        if (tune_kv_get_json(s->c, key, 0, &now)) continue;
        int64_t b = (int64_t)num(now, "driver_ms", 0);
        json_decref(now);
        if (b != beat)
            return fail(s, LOOM_ESTATE, "sweep %s is being run by another driver", s->id);
    }
    return LOOM_OK;
}

int loom_sweep_run(loom_sweep *s, loom_sweep_progress_fn progress, void *arg, int interval_ms)
{
    if (!s) return LOOM_EINVAL;
    int rc = may_drive(s);
    if (rc) return rc;
    s->session_ms = tune_wall_ms();
    snprintf(s->state, sizeof(s->state), "running");
    json_object_set_new(s->sweep, "state", json_string("running"));
    json_object_set_new(s->sweep, "opened_ms", json_integer(s->session_ms));
    if ((rc = save_sweep(s))) return fail(s, rc, "cannot store the sweep: %s", loom_last_error(s->c));
    for (int64_t i = 0; i < s->ntrials; i++)
        if (!strcmp(trial_state(s->trials[i]), "running")) adopt(s, s->trials[i]);
    if (mkdir(s->out_dir, 0755) && errno != EEXIST) {
        /* track.c makes parents; this only checks early that the place is writable */
    }
    int64_t last_progress = 0, last_busy = 0;
    const char *why = NULL, *end_state = NULL;
    s->interrupt = 0;
    while (!end_state && !s->interrupt) {
        int64_t now = tune_wall_ms();
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
        now = tune_wall_ms();
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
        if (end_state) stop_all(s);
        if (now - s->last_beat >= HEARTBEAT_MS || end_state) {
            s->last_beat = now;
            update_best(s);
            save_sweep(s);
        }
        if (end_state) finish(s, end_state);
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

/* ---- reading ------------------------------------------------------------------- */

int loom_sweep_json(loom_sweep *s, char **json)
{
    if (!s || !json) return LOOM_EINVAL;
    update_usage(s);
    update_best(s);
    json_t *all = json_array();
    for (int64_t i = 0; i < s->ntrials; i++) json_array_append(all, s->trials[i]->rec);
    json_t *o = json_pack("{s:O, s:o}", "sweep", s->sweep, "trials", all);
    *json = o ? json_dumps(o, JSON_INDENT(1)) : NULL;
    json_decref(o);
    return *json ? LOOM_OK : LOOM_ENOMEM;
}

int loom_sweep_request_stop(loom_client *c, const char *sweep_id)
{
    if (!c || !sweep_id || strlen(sweep_id) > 32) return LOOM_EINVAL;
    char key[TUNE_KEY_MAX];
    json_t *sw = NULL;
    key_sweep(sweep_id, key, sizeof(key));
    int rc = tune_kv_get_json(c, key, 0, &sw);
    if (rc) return fail(NULL, rc, "no sweep %s", sweep_id);
    snprintf(key, sizeof(key), "tune/s/%s/stop", sweep_id);
    rc = loom_kv_put(c, key, "1", 1);
    const char *st = json_string_value(json_object_get(sw, "state"));
    int orphan = st && !strcmp(st, "running") && tune_wall_ms() - (int64_t)num(sw, "driver_ms", 0) >= DRIVER_STALE_MS;
    json_decref(sw);
    if (rc || !orphan) return rc;
    /* nobody drives it: end it here */
    loom_sweep *s = NULL;
    if ((rc = loom_sweep_open(c, sweep_id, &s))) return rc;
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        if (strcmp(trial_state(t), "running")) continue;
        snprintf(t->job, sizeof(t->job), "%s", json_string_value(json_object_get(t->rec, "job")) ?: "");
        t->running = 1;
        t->start_ms = tune_wall_ms();
    }
    stop_all(s);
    finish(s, "stopped");
    loom_sweep_destroy(&s);
    return LOOM_OK;
}

int loom_sweeps_json(loom_client *c, char **json)
{
    if (!c || !json) return LOOM_EINVAL;
    json_t *idx = NULL, *out = json_array();
    if (tune_kv_get_json(c, "tune/index", 0, &idx) || !json_is_array(idx)) {
        json_decref(idx);
        idx = json_array();
    }
    for (size_t i = json_array_size(idx); i-- > 0;) {
        const char *id = json_string_value(json_array_get(idx, i));
        char key[TUNE_KEY_MAX];
        json_t *sw = NULL;
        if (!id) continue;
        key_sweep(id, key, sizeof(key));
        if (tune_kv_get_json(c, key, 0, &sw)) continue;
        json_array_append_new(out, json_pack("{s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "id", id, "name",
                                             json_object_get(sw, "name"), "state", json_object_get(sw, "state"),
                                             "created_ms", json_object_get(sw, "created_ms"), "trials",
                                             json_object_get(sw, "next_trial"), "best", json_object_get(sw, "best"),
                                             "best_trial", json_object_get(sw, "best_trial")));
        json_decref(sw);
    }
    json_decref(idx);
    *json = json_dumps(out, JSON_INDENT(1));
    json_decref(out);
    return *json ? LOOM_OK : LOOM_ENOMEM;
}
