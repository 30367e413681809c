/* cli/tune_cmd.c — `loom tune`: run a hyperparameter sweep from a JSON spec
 * with a live progress view, and look at, stop or resume sweeps stored in
 * the cluster (tune/, loom/tune.h). */
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/tune_cmd.h"
#include "loom/tune.h"

typedef struct view {
    int tty, quiet;
    int64_t last_line_ms;
} view;

static volatile sig_atomic_t interrupted;
static loom_sweep *driven; /* the sweep the signal handler interrupts */
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    if (driven) loom_sweep_interrupt(driven);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "3.2/10" or "3.2" when there is no limit. */
static void with_limit(char *buf, size_t cap, const char *fmt, double used, double limit)
{
    int n = snprintf(buf, cap, fmt, used);
    if (limit > 0 && n > 0 && (size_t)n < cap) {
        buf[n] = '/';
        snprintf(buf + n + 1, cap - (size_t)n - 1, fmt, limit);
    }
}

static void show_progress(const loom_sweep_progress *p, void *arg)
{
    view *v = arg;
    if (v->quiet && !p->done) return;
    char wall[64], gpu[64], cpu[64], trials[64], best[96];
    with_limit(wall, sizeof(wall), "%.1f", p->wall_s, p->wall_limit_s);
    with_limit(gpu, sizeof(gpu), "%.4f", p->gpu_hours, p->gpu_hours_limit);
    with_limit(cpu, sizeof(cpu), "%.4f", p->cpu_hours, p->cpu_hours_limit);
    with_limit(trials, sizeof(trials), "%.0f", (double)p->trials, (double)p->trials_limit);
    if (p->has_best) snprintf(best, sizeof(best), "%.6g (trial %lld)", p->best, (long long)p->best_trial);
    else snprintf(best, sizeof(best), "-");
    char line[512];
    snprintf(line, sizeof(line),
             "trials %s  running %d  paused %d  done %lld  stopped %lld  failed %lld  best %s  "
             "wall %ss  gpu-h %s  cpu-h %s",
             trials, p->running, p->paused, (long long)p->completed, (long long)p->stopped, (long long)p->failed,
             best, wall, gpu, cpu);
    if (v->tty && !p->done) {
        fprintf(stderr, "\r\033[K%s", line);
        fflush(stderr);
        return;
    }
    int64_t t = now_ms();
    if (!p->done && t - v->last_line_ms < 2000) return;
    v->last_line_ms = t;
    fprintf(stderr, "%s%s\n", v->tty ? "\r\033[K" : "", line);
}

/* A relative "library" of the spec is relative to the spec file. */
static char *resolve_spec(const char *path, const char *text, char *err, size_t errlen)
{
    json_error_t e;
    json_t *spec = json_loads(text, 0, &e);
    if (!spec) {
        snprintf(err, errlen, "%s: not JSON: %s (line %d)", path, e.text, e.line);
        return NULL;
    }
    json_t *trial = json_object_get(spec, "trial");
    const char *lib = json_string_value(json_object_get(trial, "library"));
    if (lib && lib[0] != '/') {
        char dir[PATH_MAX], full[PATH_MAX * 2], *slash;
        snprintf(dir, sizeof(dir), "%s", path);
        slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof(dir), ".");
        snprintf(full, sizeof(full), "%s/%s", dir, lib);
        char *real = realpath(full, NULL);
        json_object_set_new(trial, "library", json_string(real ? real : full));
        free(real);
    }
    char *out = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    return out;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 && n < (64 << 20) ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

static void print_summary(loom_sweep *s)
{
    char *json = NULL;
    if (loom_sweep_json(s, &json)) return;
    json_error_t e;
    json_t *o = json_loads(json, 0, &e);
    free(json);
    json_t *sw = json_object_get(o, "sweep");
    const char *metric = json_string_value(json_object_get(json_object_get(sw, "spec"), "metric"));
    json_t *bt = json_object_get(sw, "best_trial");
    printf("sweep %s: %s\n", loom_sweep_id(s), json_string_value(json_object_get(sw, "state")));
    if (json_is_integer(bt)) {
        json_t *t = json_array_get(json_object_get(o, "trials"), (size_t)json_integer_value(bt));
        char *cfg = json_dumps(json_object_get(t, "config"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("best: trial %lld  %s = %.6g at t = %g  config %s\n", (long long)json_integer_value(bt),
               metric ? metric : "?", json_number_value(json_object_get(t, "best")),
               json_number_value(json_object_get(t, "best_t")), cfg ? cfg : "{}");
        free(cfg);
    } else {
        printf("best: none (no trial reported %s)\n", metric ? metric : "the metric");
    }
    json_t *u = json_object_get(sw, "usage");
    printf("used: %lld trials, %lld results, wall %.2f s, %.6f GPU-hours, %.6f CPU-hours\n",
           (long long)json_integer_value(json_object_get(u, "trials")),
           (long long)json_integer_value(json_object_get(u, "iterations")),
           json_number_value(json_object_get(u, "wall_s")), json_number_value(json_object_get(u, "gpu_hours")),
           json_number_value(json_object_get(u, "cpu_hours")));
    printf("results: %s/results.csv (mlruns/, prov/, best.json beside it)\n",
           json_string_value(json_object_get(sw, "output")));
    json_decref(o);
}

static int drive(loom_client *c, loom_sweep *s, const tune_cli_opts *o)
{
    view v = {.tty = isatty(2), .quiet = o->quiet};
    printf("sweep %s\n", loom_sweep_id(s));
    fflush(stdout);
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    (void)c;
    driven = s;
    int rc = loom_sweep_run(s, show_progress, &v, 250);
    driven = NULL;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc) {
        fprintf(stderr, "loom tune: %s\n", loom_sweep_last_error());
        return 1;
    }
    if (interrupted) {
        fprintf(stderr, "loom tune: interrupted; the sweep's trials go on without a driver: "
                        "`loom tune resume %s` takes it up again, `loom tune stop %s` ends it\n",
                loom_sweep_id(s), loom_sweep_id(s));
        return 130;
    }
    print_summary(s);
    return 0;
}

static int tune_run(loom_client *c, const tune_cli_opts *o)
{
    char err[600];
    char *text = read_text(o->arg);
    if (!text) {
        fprintf(stderr, "loom tune run: cannot read %s\n", o->arg);
        return 2;
    }
    char *spec = resolve_spec(o->arg, text, err, sizeof(err));
    free(text);
    if (!spec) {
        fprintf(stderr, "loom tune run: %s\n", err);
        return 2;
    }
    if (o->output || o->gateway) { /* --output overrides the spec's; the cluster's gateway */
        json_error_t e;
        json_t *j = json_loads(spec, 0, &e);
        if (o->output) json_object_set_new(j, "output", json_string(o->output));
        json_t *reg = json_object_get(j, "register");
        if (o->gateway && json_is_object(reg) && !json_object_get(reg, "gateway"))
            json_object_set_new(reg, "gateway", json_string(o->gateway));
        free(spec);
        spec = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    loom_sweep *s = NULL;
    int rc = loom_sweep_create(c, spec, &s);
    free(spec);
    if (rc) {
        fprintf(stderr, "loom tune run: %s\n", loom_sweep_last_error());
        return 2;
    }
    rc = drive(c, s, o);
    loom_sweep_destroy(&s);
    return rc;
}

static int tune_resume(loom_client *c, const tune_cli_opts *o)
{
    loom_sweep *s = NULL;
    if (loom_sweep_open(c, o->arg, &s)) {
        fprintf(stderr, "loom tune resume: %s\n", loom_sweep_last_error());
        return 1;
    }
    int rc = drive(c, s, o);
    loom_sweep_destroy(&s);
    return rc;
}

static void print_trials(json_t *trials, const char *metric)
{
    printf("%-6s %-10s %8s %12s %12s %4s  %s\n", "trial", "state", "t", metric, "best", "att", "config");
    size_t i;
    json_t *t;
    json_array_foreach(trials, i, t) {
        json_t *last = json_object_get(json_object_get(t, "last"), metric);
        json_t *res = json_object_get(t, "results");
        json_t *lr = json_array_get(res, json_array_size(res) - 1);
        char *cfg = json_dumps(json_object_get(t, "config"), JSON_COMPACT | JSON_SORT_KEYS);
        char lastv[32] = "-", bestv[32] = "-";
        if (json_is_number(last)) snprintf(lastv, sizeof(lastv), "%.6g", json_number_value(last));
        if (json_is_number(json_object_get(t, "best")))
            snprintf(bestv, sizeof(bestv), "%.6g", json_number_value(json_object_get(t, "best")));
        printf("%-6lld %-10s %8g %12s %12s %4lld  %s\n", (long long)json_integer_value(json_object_get(t, "id")),
               json_string_value(json_object_get(t, "state")), lr ? json_number_value(json_object_get(lr, "t")) : 0,
               lastv, bestv, (long long)json_integer_value(json_object_get(t, "attempts")), cfg ? cfg : "");
        free(cfg);
    }
}

static int tune_status(loom_client *c, const tune_cli_opts *o)
{
    char *json = NULL;
    if (!o->arg) {
        if (loom_sweeps_json(c, &json)) return 1;
        if (o->json) {
            printf("%s\n", json);
        } else {
            json_error_t e;
            json_t *a = json_loads(json, 0, &e);
            size_t i;
            json_t *s;
            printf("%-32s %-20s %-10s %6s %12s\n", "sweep", "name", "state", "trials", "best");
            json_array_foreach(a, i, s) {
                char best[32] = "-";
                if (json_is_number(json_object_get(s, "best")))
                    snprintf(best, sizeof(best), "%.6g", json_number_value(json_object_get(s, "best")));
                printf("%-32s %-20s %-10s %6lld %12s\n", json_string_value(json_object_get(s, "id")),
                       json_string_value(json_object_get(s, "name")), json_string_value(json_object_get(s, "state")),
                       (long long)json_integer_value(json_object_get(s, "trials")), best);
            }
            json_decref(a);
        }
        free(json);
        return 0;
    }
    loom_sweep *s = NULL;
    if (loom_sweep_open(c, o->arg, &s)) {
        fprintf(stderr, "loom tune status: %s\n", loom_sweep_last_error());
        return 1;
    }
    int rc = loom_sweep_json(s, &json);
    if (!rc && o->json) {
        printf("%s\n", json);
    } else if (!rc) {
        json_error_t e;
        json_t *j = json_loads(json, 0, &e);
        print_summary(s);
        print_trials(json_object_get(j, "trials"),
                     json_string_value(json_object_get(json_object_get(json_object_get(j, "sweep"), "spec"), "metric")));
        json_decref(j);
    }
    free(json);
    loom_sweep_destroy(&s);
    return rc ? 1 : 0;
}

int tune_cli(loom_client *c, const char *op, const tune_cli_opts *o)
{
    if (!strcmp(op, "run")) return tune_run(c, o);
    if (!strcmp(op, "resume")) return tune_resume(c, o);
    if (!strcmp(op, "status")) return tune_status(c, o);
    if (!strcmp(op, "stop")) {
        if (loom_sweep_request_stop(c, o->arg)) {
            fprintf(stderr, "loom tune stop: %s\n", loom_sweep_last_error());
            return 1;
        }
        printf("stop asked for sweep %s\n", o->arg);
        return 0;
    }
    fprintf(stderr, "loom tune: unknown operation '%s' (run, status, stop, resume)\n", op);
    return 2;
}
