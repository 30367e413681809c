/* tune/sweep_internal.h — what the files of the sweep controller share
 * (sweep.c: the controller loop, trials, reports, limits; sweep_spec.c: the
 * spec; sweep_state.c: the records in the key-value table, creating, opening
 * and resuming a sweep, reading sweeps): the sweep's and its trials' state
 * and the functions one file calls in another.  Not a public interface. */
#ifndef LOOM_TUNE_SWEEP_INTERNAL_H
#define LOOM_TUNE_SWEEP_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>

#include "loom/tune.h"
#include "tune/sched.h"
#include "tune/search.h"
#include "tune/space.h"

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

/* sweep.c */
/* The reason of the last failure, per thread (loom_sweep_last_error). */
extern __thread char sweep_err[512];
/* Record why (loom_sweep_last_error); returns rc. */
int sweep_fail(loom_sweep *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
double sweep_num(const json_t *o, const char *k, double dflt);
void sweep_key_sweep(const char *id, char *out, size_t cap);
void sweep_key_trial(const char *id, int64_t n, char *out, size_t cap);
double sweep_loss_of(const loom_sweep *s, double v);
const char *sweep_trial_state(const trial *t);
trial *sweep_trial_add(loom_sweep *s, int64_t id, json_t *rec);
int sweep_trial_launch(loom_sweep *s, trial *t);
void sweep_mark_end(loom_sweep *s, trial *t, const char *state, const char *event);
double sweep_best_loss(const loom_sweep *s, const trial *t);
void sweep_stop_all(loom_sweep *s);
trial *sweep_find_trial(loom_sweep *s, int64_t id);
void sweep_collect_promoted(loom_sweep *s);
void sweep_update_best(loom_sweep *s);
void sweep_finish(loom_sweep *s, const char *state);

/* sweep_spec.c */
/* Read s->spec into s (kind, resources, limits, space, search, scheduler). */
int sweep_load_spec(loom_sweep *s);

/* sweep_state.c */
double sweep_running_seconds(const loom_sweep *s, double per_trial, int64_t now);
double sweep_wall_used(const loom_sweep *s, int64_t now);
void sweep_update_usage(loom_sweep *s);
int sweep_save_sweep(loom_sweep *s);
int sweep_save_trial(loom_sweep *s, trial *t);
int sweep_load_trial(loom_client *c, const char *id, int64_t n, json_t **out);
void sweep_adopt(loom_sweep *s, trial *t);

#endif
