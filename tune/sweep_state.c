/* tune/sweep_state.c — a sweep in the cluster's key-value table: saving the
 * sweep and trial records (results in blocks) and the usage they account,
 * creating a sweep, opening one again (the scheduler and search rebuilt by
 * replaying the recorded events, running trials adopted or restarted), and
 * reading sweeps (loom_sweep_json, loom_sweeps_json, a stop request). */
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

/* ---- persistence ------------------------------------------------------------ */

double sweep_running_seconds(const loom_sweep *s, double per_trial, int64_t now)
{
    double sum = 0;
    for (int64_t i = 0; i < s->ntrials; i++)
        if (s->trials[i]->running) sum += per_trial * (double)(now - s->trials[i]->start_ms) / 1000.0;
    return sum;
}

double sweep_wall_used(const loom_sweep *s, int64_t now)
{
    return s->wall_before_s + (double)(now - s->session_ms) / 1000.0;
}

void sweep_update_usage(loom_sweep *s)
{
    int64_t now = loom__wall_ms();
    json_t *u = json_pack("{s:f, s:f, s:f, s:I, s:I}", "wall_s", sweep_wall_used(s, now), "gpu_hours",
                          (s->gpu_s_done + sweep_running_seconds(s, s->gpus, now)) / 3600.0, "cpu_hours",
                          (s->cpu_s_done + sweep_running_seconds(s, s->cpus, now)) / 3600.0, "trials",
                          (json_int_t)s->ntrials, "iterations", (json_int_t)s->iterations);
    json_object_set_new(s->sweep, "usage", u);
    json_object_set_new(s->sweep, "gpu_s_done", json_real(s->gpu_s_done));
    json_object_set_new(s->sweep, "cpu_s_done", json_real(s->cpu_s_done));
    json_object_set_new(s->sweep, "gseq", json_integer(s->gseq));
}

int sweep_save_sweep(loom_sweep *s)
{
    char key[TUNE_KEY_MAX];
    sweep_update_usage(s);
    json_object_set_new(s->sweep, "driver_ms", json_integer(loom__wall_ms()));
    sweep_key_sweep(s->id, key, sizeof(key));
    return tune_kv_put_json(s->c, key, s->sweep);
}

/* A trial's results are kept in blocks of RESULTS_BLOCK beside its record
 * (tune/s/<S>/t/<N>/res/<b>): a report rewrites the record and its block, not
 * every result so far, and no value outgrows the table's 1 MiB. */
static void key_block(const char *id, int64_t n, int64_t b, char *out, size_t cap)
{
    snprintf(out, cap, "tune/s/%s/t/%lld/res/%lld", id, (long long)n, (long long)b);
}

int sweep_save_trial(loom_sweep *s, trial *t)
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
    sweep_key_trial(s->id, t->id, key, sizeof(key));
    rc = tune_kv_put_json(s->c, key, rec);
    json_decref(rec);
    if (!rc) t->dirty = 0;
    return (int)rc;
}

/* A trial's record with its results put back (loom_sweep_open). */
int sweep_load_trial(loom_client *c, const char *id, int64_t n, json_t **out)
{
    char key[TUNE_KEY_MAX];
    json_t *rec = NULL, *res = json_array();
    sweep_key_trial(id, n, key, sizeof(key));
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
        uint64_t x = (uint64_t)loom__wall_ms() ^ ((uint64_t)getpid() << 32);
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
        rc = sweep_fail(s, LOOM_EINVAL, "the sweep spec is not JSON: %s (line %d)", e.text, e.line);
        sweep_free(s);
        return rc;
    }
    const char *name = json_string_value(json_object_get(spec, "name"));
    s->sweep = json_pack("{s:s, s:s, s:o, s:I, s:s, s:n, s:I, s:f}", "id", s->id, "name", name ? name : "sweep",
                         "spec", spec, "created_ms", (json_int_t)loom__wall_ms(), "state", "created", "best_trial",
                         "next_trial", (json_int_t)0, "wall_before_s", 0.0);
    if (!s->sweep) {
        sweep_free(s);
        return LOOM_ENOMEM;
    }
    s->spec = json_object_get(s->sweep, "spec");
    if ((rc = sweep_load_spec(s))) {
        sweep_free(s);
        return rc;
    }
    json_object_set_new(s->sweep, "output", json_string(s->out_dir));
    snprintf(s->state, sizeof(s->state), "created");
    s->session_ms = loom__wall_ms();
    if ((rc = sweep_save_sweep(s)) || (rc = index_add(c, s->id))) {
        sweep_fail(s, rc, "cannot store the sweep: %s", loom_last_error(c));
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
            double step = sweep_num(r, "t", 0);
            if (step > t->last_t) t->last_t = step;
            s->iterations++;
            if (!json_is_number(v)) continue;
            ev[n++] = (event){(int64_t)sweep_num(r, "g", 0), t->id, 0, step, sweep_loss_of(s, json_number_value(v))};
        }
        const char *end = json_string_value(json_object_get(t->rec, "end_event"));
        if (end && strcmp(end, "sched_stop")) {
            json_t *last = json_object_get(json_object_get(t->rec, "last"), s->metric);
            ev[n++] = (event){(int64_t)sweep_num(t->rec, "end_g", 0), t->id, !strcmp(end, "complete") ? 1 : 2, t->last_t,
                              json_is_number(last) ? sweep_loss_of(s, json_number_value(last)) : NAN};
        }
    }
    qsort(ev, n, sizeof(*ev), cmp_event);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].g > s->gseq) s->gseq = ev[i].g;
        if (ev[i].kind == 0) tune_sched_result(s->sched, ev[i].trial, ev[i].t, ev[i].loss);
        else if (ev[i].kind == 1) tune_sched_complete(s->sched, ev[i].trial, ev[i].t, ev[i].loss);
        else tune_sched_remove(s->sched, ev[i].trial);
        sweep_collect_promoted(s);
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
        tune_search_observe(s->search, json_object_get(t->rec, "config"), sweep_best_loss(s, t));
    }
    free(ev);
    /* promoted trials that were resumed already are not promoted again */
    int k = 0;
    for (int i = 0; i < s->npromoted; i++) {
        trial *t = sweep_find_trial(s, s->promoted[i]);
        if (t && !strcmp(sweep_trial_state(t), "paused")) s->promoted[k++] = s->promoted[i];
    }
    s->npromoted = k;
    return LOOM_OK;
}

/* A trial that was running when the last driver stopped: adopt its task if
 * it is still there, else start it again from its checkpoint. */
void sweep_adopt(loom_sweep *s, trial *t)
{
    t->attempt = json_integer_value(json_object_get(t->rec, "attempts"));
    t->next_seq = json_integer_value(json_object_get(t->rec, "next_seq"));
    snprintf(t->job, sizeof(t->job), "%s", json_string_value(json_object_get(t->rec, "job")) ?: "");
    t->start_ms = loom__wall_ms();
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
                    t->end_by = loom__wall_ms() + END_GRACE_MS;
                }
            }
            return;
        }
    }
    if (t->job[0]) loom_job_delete(s->c, t->job);
    loom_actor old; /* an actor trial goes on from its last checkpoint in a new actor */
    const char *ahex = json_string_value(json_object_get(t->rec, "actor"));
    if (s->kind == KIND_ACTOR && ahex && !loom_actor_from_hex(ahex, &old)) loom_actor_kill(s->c, old);
    if (sweep_trial_launch(s, t)) {
        json_object_set_new(t->rec, "error", json_string(sweep_err));
        sweep_mark_end(s, t, "failed", "remove");
        tune_sched_remove(s->sched, t->id);
        sweep_save_trial(s, t);
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
    sweep_key_sweep(s->id, key, sizeof(key));
    int rc = tune_kv_get_json(c, key, 0, &s->sweep);
    if (rc) {
        sweep_fail(s, rc, "no sweep %s", sweep_id);
        sweep_free(s);
        return rc;
    }
    s->spec = json_object_get(s->sweep, "spec");
    if ((rc = sweep_load_spec(s))) {
        sweep_free(s);
        return rc;
    }
    const char *out_dir = json_string_value(json_object_get(s->sweep, "output"));
    if (out_dir) snprintf(s->out_dir, sizeof(s->out_dir), "%s", out_dir);
    snprintf(s->state, sizeof(s->state), "%s", json_string_value(json_object_get(s->sweep, "state")) ?: "created");
    json_t *u = json_object_get(s->sweep, "usage");
    s->wall_before_s = sweep_num(u, "wall_s", 0);
    s->gpu_s_done = sweep_num(s->sweep, "gpu_s_done", 0);
    s->cpu_s_done = sweep_num(s->sweep, "cpu_s_done", 0);
    s->session_ms = loom__wall_ms();
    int64_t n = (int64_t)sweep_num(s->sweep, "next_trial", 0);
    for (int64_t i = 0; i < n && !rc; i++) {
        json_t *rec = NULL;
        sweep_key_trial(s->id, i, key, sizeof(key));
        if ((rc = sweep_load_trial(c, s->id, i, &rec))) sweep_fail(s, rc, "trial %lld of sweep %s is missing", (long long)i, s->id);
        else if (!sweep_trial_add(s, i, rec)) {
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

/* ---- reading ------------------------------------------------------------------- */

int loom_sweep_json(loom_sweep *s, char **json)
{
    if (!s || !json) return LOOM_EINVAL;
    sweep_update_usage(s);
    sweep_update_best(s);
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
    sweep_key_sweep(sweep_id, key, sizeof(key));
    int rc = tune_kv_get_json(c, key, 0, &sw);
    if (rc) return sweep_fail(NULL, rc, "no sweep %s", sweep_id);
    snprintf(key, sizeof(key), "tune/s/%s/stop", sweep_id);
    rc = loom_kv_put(c, key, "1", 1);
    const char *st = json_string_value(json_object_get(sw, "state"));
    int orphan = st && !strcmp(st, "running") &&
                 loom__wall_ms() - (int64_t)sweep_num(sw, "driver_ms", 0) >= DRIVER_STALE_MS;
    json_decref(sw);
    if (rc || !orphan) return rc;
    /* nobody drives it: end it here */
    loom_sweep *s = NULL;
    if ((rc = loom_sweep_open(c, sweep_id, &s))) return rc;
    for (int64_t i = 0; i < s->ntrials; i++) {
        trial *t = s->trials[i];
        if (strcmp(sweep_trial_state(t), "running")) continue;
        snprintf(t->job, sizeof(t->job), "%s", json_string_value(json_object_get(t->rec, "job")) ?: "");
        t->running = 1;
        t->start_ms = loom__wall_ms();
    }
    sweep_stop_all(s);
    sweep_finish(s, "stopped");
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
        sweep_key_sweep(id, key, sizeof(key));
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
