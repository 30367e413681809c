/* tune/sched.c — the trial schedulers of tune/sched.h: FIFO, the median
 * stopping rule, ASHA (async Hyperband when it has several brackets) and
 * synchronous Hyperband with pause and resume.
 *
 * One table of trials serves every type: a growable array in order of first
 * appearance, found through an open-addressing hash on the caller's id.  Each
 * type adds its own state: the median rule keeps each trial's results with
 * running sums; ASHA keeps the sorted losses recorded at each rung of each
 * bracket; Hyperband keeps its bracket instances and a queue of promoted
 * trials.  Nothing depends on a clock, randomness or memory addresses, and
 * ties are broken by order of first appearance, so replaying the same calls
 * gives the same answers.
 *
 * Choices the header leaves open:
 *  - A result whose t is not greater than the trial's last t (or is NaN) is
 *    not recorded; the answer is CONTINUE.  A NaN loss counts as the worst.
 *  - A result or completion for an unknown id adds the trial first.  A
 *    result for a trial the scheduler stopped, or one that completed or was
 *    removed, is answered STOP; one for a trial paused and not yet promoted,
 *    PAUSE.  A promoted trial that reports before tune_sched_next_paused
 *    returned it counts as resumed (next_paused will not return it), so
 *    replaying only the recorded results rebuilds the same state.
 *  - ASHA: at a rung holding n losses (the trial's own included) a trial goes
 *    on when fewer than max(1, floor(n/rf)) of them are strictly lower than
 *    its own: the best 1/rf, and the first trial at a rung always goes on.
 *    A result that jumps over several rungs is recorded at the highest only
 *    (as Ray does), so a late, low loss does not tighten the lower rungs.
 *  - Hyperband: a halving keeps max(1, floor(m/rf)) of the m trials paused at
 *    the milestone, best first into the resume queue; after its first
 *    halving a bracket takes no new trials.  The trial whose pause completes
 *    a halving is answered STOP when it loses, PAUSE when it goes on (then
 *    next_paused returns it like the others).  Halving does not wait for a
 *    bracket to be full: the caller should tune_sched_add trials as soon as
 *    it creates them, or brackets halve early.
 *  - tune_sched_stopped counts each trial once when the scheduler answers it
 *    STOP (reaching max_t included) or it loses a halving; not pauses,
 *    completions or removals.
 *  - Out of memory after tune_sched_new: a trial that cannot be tracked is
 *    answered as FIFO with max_t would; a result that cannot be kept is
 *    dropped. */
#include "tune/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "tune/util.h"

#define NONE SIZE_MAX
#define MAX_BRACKETS 64
#define MAX_COUNT 1000000000

typedef enum sched_kind { KIND_FIFO, KIND_MEDIAN, KIND_ASHA, KIND_HYPERBAND } sched_kind;

typedef enum trial_state {
    ST_PENDING,    /* added, no result yet */
    ST_RUNNING,
    ST_PAUSED,     /* Hyperband: waiting at its bracket's milestone */
    ST_PROMOTED,   /* Hyperband: won a halving, in the resume queue */
    ST_STOPPED,    /* decided by the scheduler */
    ST_COMPLETED,
    ST_REMOVED
} trial_state;

typedef struct point {
    double t;
    double sum;   /* losses of this result and all before it */
} point;

typedef struct trial_rec {
    int64_t id;
    trial_state state;
    double last_t;        /* progress of its last recorded result, 0 before any */
    double best;          /* best recorded loss, +inf before any */
    size_t bracket;       /* ASHA bracket, or Hyperband bracket instance */
    size_t rung;          /* ASHA: rungs of its bracket already passed */
    double pause_loss;    /* Hyperband: loss on reaching the milestone */
    size_t qprev, qnext;  /* Hyperband: links in the resume queue */
    point *hist;          /* median: recorded results, t increasing (owned) */
    size_t nhist, caphist;
} trial_rec;

typedef struct rung {
    double at;
    double *loss;   /* recorded losses, ascending (owned) */
    size_t n, cap;
} rung;

typedef struct asha_bracket {
    rung *rungs;    /* ascending at (owned) */
    size_t nrungs;
} asha_bracket;

typedef struct hb_bracket {
    int s;            /* bracket index: s_max .. 0 */
    double size;      /* n = ceil((s_max+1) / (s+1) * rf^s) */
    size_t members;
    int stage;        /* current milestone: max_t * rf^(stage - s) */
    int closed;       /* takes no more trials */
    size_t active;    /* live members that have not reached the milestone */
} hb_bracket;

typedef struct ranked {
    double loss;
    size_t idx;
} ranked;

struct tune_sched {
    sched_kind kind;
    double max_t;          /* 0: none */
    double grace;
    double rf;
    int64_t min_samples;
    size_t nasha;          /* ASHA brackets */
    int s_max;             /* Hyperband */

    trial_rec *trials;     /* trials, scratch and hb hold cap entries (owned) */
    size_t ntrials, cap;
    size_t *slots;         /* hash: trial index + 1, 0 when empty */
    size_t nslots;         /* a power of two, at least 2 * cap */
    ranked *scratch;       /* work space for a median or a halving */
    hb_bracket *hb;        /* Hyperband bracket instances, in order */
    size_t nhb;

    asha_bracket *asha;    /* nasha entries (owned) */
    size_t qhead, qtail;   /* Hyperband resume queue, through trial links */
    int64_t stopped;
};

/* ---- spec ---- */

/* An optional positive number; *out keeps its default when the key is absent. */
static int get_positive(const json_t *spec, const char *key, double *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(spec, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return tune_fail(err, errlen, "scheduler: \"%s\" must be a number", key);
    double d = json_number_value(v);
    if (!(d > 0) || !isfinite(d))
        return tune_fail(err, errlen, "scheduler: \"%s\" must be positive (got %g)", key, d);
    *out = d;
    return 0;
}

/* An optional integer in [1, max]. */
static int get_count(const json_t *spec, const char *key, int64_t max, int64_t *out,
                     char *err, size_t errlen)
{
    const json_t *v = json_object_get(spec, key);
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return tune_fail(err, errlen, "scheduler: \"%s\" must be an integer", key);
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > max)
        return tune_fail(err, errlen, "scheduler: \"%s\" must be between 1 and %lld (got %lld)",
                         key, (long long)max, (long long)n);
    *out = (int64_t)n;
    return 0;
}

static int get_reduction_factor(const json_t *spec, double *rf, char *err, size_t errlen)
{
    int rc = get_positive(spec, "reduction_factor", rf, err, errlen);
    if (rc == 0 && *rf < 2)
        return tune_fail(err, errlen, "scheduler: \"reduction_factor\" must be at least 2 (got %g)", *rf);
    return rc;
}

static int check_grace(double grace, double max_t, char *err, size_t errlen)
{
    if (max_t > 0 && grace > max_t)
        return tune_fail(err, errlen, "scheduler: \"grace_period\" (%g) exceeds \"max_t\" (%g)",
                         grace, max_t);
    return 0;
}

static int parse_fifo(tune_sched *s, const json_t *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"type", "max_t", NULL};
    int rc = tune_check_keys(spec, keys, "scheduler \"fifo\"", err, errlen);
    if (rc == 0)
        rc = get_positive(spec, "max_t", &s->max_t, err, errlen);
    return rc;
}

static int parse_median(tune_sched *s, const json_t *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"type", "grace_period", "min_samples", "max_t", NULL};
    s->grace = 1;
    s->min_samples = 3;
    int rc = tune_check_keys(spec, keys, "scheduler \"median\"", err, errlen);
    if (rc == 0)
        rc = get_positive(spec, "grace_period", &s->grace, err, errlen);
    if (rc == 0)
        rc = get_count(spec, "min_samples", MAX_COUNT, &s->min_samples, err, errlen);
    if (rc == 0)
        rc = get_positive(spec, "max_t", &s->max_t, err, errlen);
    if (rc == 0)
        rc = check_grace(s->grace, s->max_t, err, errlen);
    return rc;
}

static int parse_asha(tune_sched *s, const json_t *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"type", "max_t", "grace_period", "reduction_factor",
                                       "brackets", NULL};
    int64_t brackets = 1;
    s->max_t = 100;
    s->grace = 1;
    s->rf = 3;
    int rc = tune_check_keys(spec, keys, "scheduler \"asha\"", err, errlen);
    if (rc == 0)
        rc = get_positive(spec, "max_t", &s->max_t, err, errlen);
    if (rc == 0)
        rc = get_positive(spec, "grace_period", &s->grace, err, errlen);
    if (rc == 0)
        rc = get_reduction_factor(spec, &s->rf, err, errlen);
    if (rc == 0)
        rc = get_count(spec, "brackets", MAX_BRACKETS, &brackets, err, errlen);
    if (rc == 0)
        rc = check_grace(s->grace, s->max_t, err, errlen);
    s->nasha = (size_t)brackets;
    return rc;
}

static int parse_hyperband(tune_sched *s, const json_t *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"type", "max_t", "reduction_factor", NULL};
    s->max_t = 81;
    s->rf = 3;
    int rc = tune_check_keys(spec, keys, "scheduler \"hyperband\"", err, errlen);
    if (rc == 0)
        rc = get_positive(spec, "max_t", &s->max_t, err, errlen);
    if (rc == 0)
        rc = get_reduction_factor(spec, &s->rf, err, errlen);
    return rc;
}

static int parse_spec(tune_sched *s, const json_t *spec, char *err, size_t errlen)
{
    if (!json_is_object(spec))
        return tune_fail(err, errlen, "scheduler: the spec must be a JSON object");
    const json_t *type = json_object_get(spec, "type");
    if (!type)
        return tune_fail(err, errlen, "scheduler: \"type\" is missing");
    if (!json_is_string(type))
        return tune_fail(err, errlen, "scheduler: \"type\" must be a string");
    const char *name = json_string_value(type);
    if (!strcmp(name, "fifo")) {
        s->kind = KIND_FIFO;
        return parse_fifo(s, spec, err, errlen);
    }
    if (!strcmp(name, "median")) {
        s->kind = KIND_MEDIAN;
        return parse_median(s, spec, err, errlen);
    }
    if (!strcmp(name, "asha")) {
        s->kind = KIND_ASHA;
        return parse_asha(s, spec, err, errlen);
    }
    if (!strcmp(name, "hyperband")) {
        s->kind = KIND_HYPERBAND;
        return parse_hyperband(s, spec, err, errlen);
    }
    return tune_fail(err, errlen,
                     "scheduler: unknown type \"%s\" (fifo, median, asha, hyperband)", name);
}

/* ---- ASHA rungs and Hyperband brackets: shapes ---- */

/* Rungs of ASHA bracket b: grace * rf^(b+k) below max_t. */
static int asha_build(tune_sched *s)
{
    s->asha = calloc(s->nasha, sizeof *s->asha);
    if (!s->asha)
        return LOOM_ENOMEM;
    for (size_t b = 0; b < s->nasha; b++) {
        double first = s->grace * pow(s->rf, (double)b);
        size_t n = 0;
        for (double at = first; at < s->max_t; at *= s->rf)
            n++;
        if (n == 0)
            continue;
        asha_bracket *ab = &s->asha[b];
        ab->rungs = calloc(n, sizeof *ab->rungs);
        if (!ab->rungs)
            return LOOM_ENOMEM;
        ab->nrungs = n;
        double at = first;
        for (size_t k = 0; k < n; k++, at *= s->rf)
            ab->rungs[k].at = at;
    }
    return 0;
}

/* floor(log_rf(max_t)), tolerant of rounding (81 with rf 3 gives 4). */
static int hb_s_max(double max_t, double rf)
{
    int s = 0;
    for (double p = rf; p <= max_t * (1 + 1e-9); p *= rf)
        s++;
    return s;
}

static double hb_size(int s_max, int s, double rf)
{
    double n = (double)(s_max + 1) * pow(rf, s) / (double)(s + 1);
    return ceil(n * (1 - 1e-9));
}

static double hb_milestone(const tune_sched *s, const hb_bracket *b)
{
    return s->max_t / pow(s->rf, b->s - b->stage);
}

/* ---- the trial table ---- */

static uint64_t hash_id(int64_t id)
{
    uint64_t x = (uint64_t)id + 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t *slot_of(const tune_sched *s, int64_t id)
{
    size_t mask = s->nslots - 1;
    for (size_t h = (size_t)hash_id(id) & mask;; h = (h + 1) & mask) {
        size_t *slot = &s->slots[h];
        if (*slot == 0 || s->trials[*slot - 1].id == id)
            return slot;
    }
}

static size_t trial_lookup(const tune_sched *s, int64_t id)
{
    if (id < 0 || s->nslots == 0)
        return NONE;
    size_t slot = *slot_of(s, id);
    return slot ? slot - 1 : NONE;
}

static int rehash(tune_sched *s, size_t nslots)
{
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return LOOM_ENOMEM;
    free(s->slots);
    s->slots = slots;
    s->nslots = nslots;
    for (size_t i = 0; i < s->ntrials; i++)
        *slot_of(s, s->trials[i].id) = i + 1;
    return 0;
}

/* Room for one more trial in every per-trial array. */
static int reserve_trial(tune_sched *s)
{
    if (s->ntrials < s->cap)
        return 0;
    size_t cap = s->cap ? s->cap * 2 : 16;
    if (cap > SIZE_MAX / 4 / sizeof(trial_rec))
        return LOOM_ENOMEM;
    trial_rec *trials = realloc(s->trials, cap * sizeof *trials);
    if (!trials)
        return LOOM_ENOMEM;
    s->trials = trials;
    ranked *scratch = realloc(s->scratch, cap * sizeof *scratch);
    if (!scratch)
        return LOOM_ENOMEM;
    s->scratch = scratch;
    if (s->kind == KIND_HYPERBAND) {
        hb_bracket *hb = realloc(s->hb, cap * sizeof *hb);
        if (!hb)
            return LOOM_ENOMEM;
        s->hb = hb;
    }
    if (rehash(s, cap * 2) != 0)
        return LOOM_ENOMEM;
    s->cap = cap;
    return 0;
}

/* Puts a new trial in the current Hyperband bracket, opening the next
 * bracket (s_max .. 0, then s_max again) when it is full or has halved. */
static void hb_assign(tune_sched *s, trial_rec *tr)
{
    hb_bracket *b = s->nhb ? &s->hb[s->nhb - 1] : NULL;
    if (!b || b->closed) {
        int next = !b || b->s == 0 ? s->s_max : b->s - 1;
        b = &s->hb[s->nhb++];
        *b = (hb_bracket){.s = next, .size = hb_size(s->s_max, next, s->rf)};
    }
    tr->bracket = (size_t)(b - s->hb);
    b->members++;
    b->active++;
    if ((double)b->members >= b->size)
        b->closed = 1;
}

static size_t trial_add(tune_sched *s, int64_t id)
{
    if (reserve_trial(s) != 0)
        return NONE;
    size_t i = s->ntrials++;
    trial_rec *tr = &s->trials[i];
    *tr = (trial_rec){.id = id, .state = ST_PENDING, .best = INFINITY, .qprev = NONE, .qnext = NONE};
    *slot_of(s, id) = i + 1;
    if (s->kind == KIND_ASHA)
        tr->bracket = i % s->nasha;
    else if (s->kind == KIND_HYPERBAND)
        hb_assign(s, tr);
    return i;
}

/* The trial's index, adding it when unknown; NONE when it cannot be tracked. */
static size_t trial_touch(tune_sched *s, int64_t id)
{
    if (id < 0)
        return NONE;
    size_t i = trial_lookup(s, id);
    return i != NONE ? i : trial_add(s, id);
}

static int is_ended(trial_state st)
{
    return st == ST_STOPPED || st == ST_COMPLETED || st == ST_REMOVED;
}

/* Live and not yet at its Hyperband bracket's milestone. */
static int is_active(trial_state st)
{
    return st == ST_PENDING || st == ST_RUNNING || st == ST_PROMOTED;
}

/* ---- the Hyperband resume queue (a list through the trials) ---- */

static void queue_push(tune_sched *s, size_t i)
{
    trial_rec *tr = &s->trials[i];
    tr->qprev = s->qtail;
    tr->qnext = NONE;
    if (s->qtail != NONE)
        s->trials[s->qtail].qnext = i;
    else
        s->qhead = i;
    s->qtail = i;
}

static void queue_unlink(tune_sched *s, size_t i)
{
    trial_rec *tr = &s->trials[i];
    if (tr->qprev != NONE)
        s->trials[tr->qprev].qnext = tr->qnext;
    else
        s->qhead = tr->qnext;
    if (tr->qnext != NONE)
        s->trials[tr->qnext].qprev = tr->qprev;
    else
        s->qtail = tr->qprev;
    tr->qprev = tr->qnext = NONE;
}

/* ---- Hyperband halving ---- */

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->loss != y->loss)
        return x->loss < y->loss ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Every live member of bracket bi reached its milestone: the best
 * max(1, floor(m/rf)) of the m paused go on, the rest stop. */
static void hb_halve(tune_sched *s, size_t bi)
{
    hb_bracket *b = &s->hb[bi];
    size_t m = 0;
    for (size_t i = 0; i < s->ntrials; i++)
        if (s->trials[i].bracket == bi && s->trials[i].state == ST_PAUSED)
            s->scratch[m++] = (ranked){s->trials[i].pause_loss, i};
    if (m == 0)
        return;
    qsort(s->scratch, m, sizeof *s->scratch, cmp_ranked);
    size_t keep = (size_t)floor((double)m / s->rf);
    if (keep < 1)
        keep = 1;
    for (size_t k = 0; k < m; k++) {
        size_t i = s->scratch[k].idx;
        if (k < keep) {
            s->trials[i].state = ST_PROMOTED;
            queue_push(s, i);
        } else {
            s->trials[i].state = ST_STOPPED;
            s->stopped++;
        }
    }
    b->stage++;
    b->active = keep;
    b->closed = 1;
}

/* An active member of bracket bi reached the milestone or ended. */
static void hb_leave(tune_sched *s, size_t bi)
{
    hb_bracket *b = &s->hb[bi];
    if (b->active > 0 && --b->active == 0)
        hb_halve(s, bi);
}

/* ---- decisions shared by every type ---- */

static void end_trial(tune_sched *s, size_t i, trial_state to)
{
    trial_rec *tr = &s->trials[i];
    trial_state from = tr->state;
    if (is_ended(from))
        return;
    if (from == ST_PROMOTED)
        queue_unlink(s, i);
    tr->state = to;
    if (to == ST_STOPPED)
        s->stopped++;
    if (s->kind == KIND_HYPERBAND && is_active(from))
        hb_leave(s, tr->bracket);
}

static tune_decision stop_trial(tune_sched *s, size_t i)
{
    end_trial(s, i, ST_STOPPED);
    return TUNE_STOP;
}

static int past_max_t(const tune_sched *s, double t)
{
    return s->max_t > 0 && t >= s->max_t;
}

static void hist_append(trial_rec *tr, double t, double loss)
{
    if (tr->nhist == tr->caphist) {
        size_t cap = tr->caphist ? tr->caphist * 2 : 8;
        point *hist = realloc(tr->hist, cap * sizeof *hist);
        if (!hist)
            return;
        tr->hist = hist;
        tr->caphist = cap;
    }
    double before = tr->nhist ? tr->hist[tr->nhist - 1].sum : 0;
    tr->hist[tr->nhist++] = (point){t, before + loss};
}

static void record_result(tune_sched *s, trial_rec *tr, double t, double loss)
{
    tr->last_t = t;
    if (loss < tr->best)
        tr->best = loss;
    if (s->kind == KIND_MEDIAN)
        hist_append(tr, t, loss);
}

/* ---- median stopping rule ---- */

/* The mean of a trial's losses up to t, when it has results both at or
 * before t and at or after it. */
static int running_mean(const trial_rec *tr, double t, double *mean)
{
    if (tr->nhist == 0 || tr->hist[tr->nhist - 1].t < t || tr->hist[0].t > t)
        return 0;
    size_t lo = 0, hi = tr->nhist;   /* last index with hist[].t <= t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tr->hist[mid].t <= t)
            lo = mid;
        else
            hi = mid;
    }
    double m = tr->hist[lo].sum / (double)(lo + 1);
    *mean = isnan(m) ? INFINITY : m;
    return 1;
}

static double median_of(ranked *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_ranked);
    if (n % 2)
        return v[n / 2].loss;
    double lo = v[n / 2 - 1].loss, hi = v[n / 2].loss;
    return lo == hi ? lo : lo / 2 + hi / 2;
}

static tune_decision median_result(tune_sched *s, size_t i, double t)
{
    if (t < s->grace)
        return TUNE_CONTINUE;
    size_t n = 0;
    for (size_t j = 0; j < s->ntrials; j++) {
        double mean;
        if (j != i && running_mean(&s->trials[j], t, &mean))
            s->scratch[n++] = (ranked){mean, j};
    }
    if ((int64_t)n < s->min_samples)
        return TUNE_CONTINUE;
    double median = median_of(s->scratch, n);
    return s->trials[i].best > median ? stop_trial(s, i) : TUNE_CONTINUE;
}

/* ---- ASHA ---- */

/* The highest rung of the trial's bracket newly reached at t, or NONE;
 * marks the rungs up to it passed. */
static rung *asha_reached(tune_sched *s, trial_rec *tr, double t)
{
    asha_bracket *b = &s->asha[tr->bracket];
    size_t k = tr->rung;
    while (k < b->nrungs && b->rungs[k].at <= t)
        k++;
    if (k == tr->rung)
        return NULL;
    tr->rung = k;
    return &b->rungs[k - 1];
}

/* How many recorded losses are strictly lower than loss. */
static size_t rung_rank(const rung *r, double loss)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->loss[mid] < loss)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void rung_insert(rung *r, size_t at, double loss)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        double *v = realloc(r->loss, cap * sizeof *v);
        if (!v)
            return;
        r->loss = v;
        r->cap = cap;
    }
    memmove(r->loss + at + 1, r->loss + at, (r->n - at) * sizeof *r->loss);
    r->loss[at] = loss;
    r->n++;
}

/* Records loss at the rung; whether it is in the best 1/rf there. */
static int rung_admits(rung *r, double loss, double rf)
{
    size_t better = rung_rank(r, loss);
    size_t n = r->n + 1;
    size_t keep = (size_t)floor((double)n / rf);
    if (keep < 1)
        keep = 1;
    rung_insert(r, better, loss);
    return better < keep;
}

static tune_decision asha_result(tune_sched *s, size_t i, double t, double loss)
{
    rung *r = asha_reached(s, &s->trials[i], t);
    if (!r || rung_admits(r, loss, s->rf))
        return TUNE_CONTINUE;
    return stop_trial(s, i);
}

/* ---- Hyperband ---- */

static tune_decision hb_result(tune_sched *s, size_t i, double t, double loss)
{
    trial_rec *tr = &s->trials[i];
    const hb_bracket *b = &s->hb[tr->bracket];
    double milestone = hb_milestone(s, b);
    if (b->stage >= b->s || t < milestone * (1 - 1e-9))
        return TUNE_CONTINUE;
    tr->state = ST_PAUSED;
    tr->pause_loss = loss;
    hb_leave(s, tr->bracket);
    return tr->state == ST_STOPPED ? TUNE_STOP : TUNE_PAUSE;
}

/* ---- the API ---- */

int tune_sched_new(const json_t *spec, tune_sched **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return tune_fail(err, errlen, "scheduler: no place for the result");
    *out = NULL;
    tune_sched *s = calloc(1, sizeof *s);
    if (!s)
        return LOOM_ENOMEM;
    s->qhead = s->qtail = NONE;
    int rc = parse_spec(s, spec, err, errlen);
    if (rc == 0 && s->kind == KIND_ASHA)
        rc = asha_build(s);
    if (rc == 0 && s->kind == KIND_HYPERBAND)
        s->s_max = hb_s_max(s->max_t, s->rf);
    if (rc == 0)
        rc = reserve_trial(s);
    if (rc == LOOM_ENOMEM && err && errlen)
        snprintf(err, errlen, "scheduler: out of memory");
    if (rc != 0) {
        tune_sched_destroy(&s);
        return rc;
    }
    *out = s;
    return 0;
}

void tune_sched_destroy(tune_sched **sp)
{
    if (!sp || !*sp)
        return;
    tune_sched *s = *sp;
    for (size_t i = 0; i < s->ntrials; i++)
        free(s->trials[i].hist);
    if (s->asha) {
        for (size_t b = 0; b < s->nasha; b++) {
            for (size_t k = 0; k < s->asha[b].nrungs; k++)
                free(s->asha[b].rungs[k].loss);
            free(s->asha[b].rungs);
        }
    }
    free(s->asha);
    free(s->trials);
    free(s->slots);
    free(s->scratch);
    free(s->hb);
    free(s);
    *sp = NULL;
}

const char *tune_sched_type(const tune_sched *s)
{
    static const char *const names[] = {"fifo", "median", "asha", "hyperband"};
    return s ? names[s->kind] : NULL;
}

double tune_sched_max_t(const tune_sched *s)
{
    return s ? s->max_t : 0;
}

void tune_sched_add(tune_sched *s, int64_t trial_id)
{
    if (s)
        trial_touch(s, trial_id);
}

tune_decision tune_sched_result(tune_sched *s, int64_t trial_id, double t, double loss)
{
    size_t i = s ? trial_touch(s, trial_id) : NONE;
    if (i == NONE)
        return s && past_max_t(s, t) ? TUNE_STOP : TUNE_CONTINUE;
    trial_rec *tr = &s->trials[i];
    if (is_ended(tr->state))
        return TUNE_STOP;
    if (tr->state == ST_PAUSED)
        return TUNE_PAUSE;
    if (tr->state == ST_PROMOTED)
        queue_unlink(s, i);
    tr->state = ST_RUNNING;
    if (!(t > tr->last_t))
        return TUNE_CONTINUE;
    if (isnan(loss))
        loss = INFINITY;
    record_result(s, tr, t, loss);
    if (past_max_t(s, t))
        return stop_trial(s, i);
    switch (s->kind) {
    case KIND_MEDIAN:
        return median_result(s, i, t);
    case KIND_ASHA:
        return asha_result(s, i, t, loss);
    case KIND_HYPERBAND:
        return hb_result(s, i, t, loss);
    case KIND_FIFO:
        break;
    }
    return TUNE_CONTINUE;
}

void tune_sched_complete(tune_sched *s, int64_t trial_id, double t, double loss)
{
    size_t i = s ? trial_touch(s, trial_id) : NONE;
    if (i == NONE)
        return;
    trial_rec *tr = &s->trials[i];
    if (is_active(tr->state) && t > tr->last_t && !isnan(loss)) {
        record_result(s, tr, t, loss);
        rung *r = s->kind == KIND_ASHA ? asha_reached(s, tr, t) : NULL;
        if (r)
            rung_insert(r, rung_rank(r, loss), loss);
    }
    end_trial(s, i, ST_COMPLETED);
}

void tune_sched_remove(tune_sched *s, int64_t trial_id)
{
    size_t i = s ? trial_lookup(s, trial_id) : NONE;
    if (i != NONE)
        end_trial(s, i, ST_REMOVED);
}

int64_t tune_sched_next_paused(tune_sched *s)
{
    if (!s || s->qhead == NONE)
        return -1;
    size_t i = s->qhead;
    queue_unlink(s, i);
    s->trials[i].state = ST_RUNNING;
    return s->trials[i].id;
}

int64_t tune_sched_stopped(const tune_sched *s)
{
    return s ? s->stopped : 0;
}
