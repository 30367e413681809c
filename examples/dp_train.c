/* examples/dp_train.c — data-parallel training with actors and an allreduce:
 * N Trainer actors (dp_tasks.c), placed together in a placement group of one
 * CPU each spread over the nodes, each hold a shard of the digits training
 * set and train the same MLP (dp_model.h), all-reducing gradients every step.
 * Then the driver runs the same training alone, on the whole training set,
 * and checks that
 *   - the loss fell, round after round;
 *   - every Trainer ended with bit-identical weights;
 *   - they match the single-worker weights: max |w_dist - w_single| is at
 *     most --tol * max(1, max |w_single|).  The two runs do the same
 *     arithmetic except the order in which per-sample gradients are summed
 *     (shard by shard, then across ranks, instead of row by row), so they
 *     differ by rounding only: about 1e-15 after 200 steps at lr 1 (measured
 *     with 2 to 8 shards, and still ~3e-15 after 2000 steps).  The default
 *     tolerance 1e-9 leaves six orders of margin yet catches any real
 *     difference (a lost shard, a stale or doubled gradient moves weights
 *     by 1e-4 or more).  A learning rate past the stable range (2 and up)
 *     makes the training chaotic and amplifies rounding to ~1e-5: the
 *     check then fails, rightly — the runs no longer agree;
 *   - both reach at least --min-accuracy on the test rows.
 * Exits 0 when all hold, 1 otherwise (2 on usage or setup errors).
 *
 *   dp_train [--workers N] [--steps S] [--rounds R] [--lr LR] [--seed SEED]
 *            [--data digits.csv] [--address HOST:PORT|local] [--nodes K]
 *            [--lib PATH] [--tol T] [--min-accuracy A] [--single-only]
 *
 * --data defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/loom/data/digits.csv,
 * where scripts/get_digits.sh puts it.  With no --address the driver starts
 * a local cluster of --nodes (default 2) nodes.  --single-only trains in
 * this process only (no cluster). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <loom/loom.h>
#include <loom/value.h>
#include "dp_model.h"

#ifndef LOOM_DP_EXAMPLES_LIB
#define LOOM_DP_EXAMPLES_LIB "libloom_dp_examples.so"
#endif
#define MAX_WORKERS 64
#define MAX_ROUNDS 1024
#define TIMEOUT_MS 300000

typedef struct options {
    int workers, steps, rounds, nodes, single_only;
    double lr, tol, min_accuracy;
    uint64_t seed;
    const char *data, *address, *lib;
} options;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: dp_train [--workers N] [--steps S] [--rounds R] [--lr LR] [--seed SEED]\n"
            "                [--data digits.csv] [--address HOST:PORT|local] [--nodes K]\n"
            "                [--lib PATH] [--tol T] [--min-accuracy A] [--single-only]\n");
    exit(2);
}

static void parse_options(int argc, char **argv, options *o)
{
    *o = (options){.workers = 2, .steps = 200, .rounds = 10, .nodes = 2, .lr = 1.0,
                   .tol = 1e-9, .min_accuracy = 0.85, .seed = 1, .address = "local",
                   .lib = LOOM_DP_EXAMPLES_LIB};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--single-only")) {
            o->single_only = 1;
            continue;
        }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--workers")) o->workers = atoi(v);
        else if (!strcmp(a, "--steps")) o->steps = atoi(v);
        else if (!strcmp(a, "--rounds")) o->rounds = atoi(v);
        else if (!strcmp(a, "--lr")) o->lr = atof(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "--address")) o->address = v;
        else if (!strcmp(a, "--nodes")) o->nodes = atoi(v);
        else if (!strcmp(a, "--lib")) o->lib = v;
        else if (!strcmp(a, "--tol")) o->tol = atof(v);
        else if (!strcmp(a, "--min-accuracy")) o->min_accuracy = atof(v);
        else usage();
    }
    if (o->workers < 1 || o->workers > MAX_WORKERS || o->steps < 1 || o->rounds < 1 ||
        o->nodes < 1 || !(o->lr > 0)) {
        fprintf(stderr, "dp_train: want 1..%d workers, steps, rounds and nodes >= 1, lr > 0\n",
                MAX_WORKERS);
        exit(2);
    }
    if (o->rounds > o->steps) o->rounds = o->steps;
    if (o->rounds > MAX_ROUNDS) o->rounds = MAX_ROUNDS;
}

/* The default data path (where scripts/get_digits.sh puts it); static storage. */
static const char *default_data_path(void)
{
    static char path[4096];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(path, sizeof(path), "%s/loom/data/digits.csv", xdg);
    else snprintf(path, sizeof(path), "%s/.cache/loom/data/digits.csv", home ? home : ".");
    return path;
}

/* Steps of round r (0-based) of R over S steps in all. */
static int round_steps(const options *o, int r)
{
    return (int)((int64_t)(r + 1) * o->steps / o->rounds - (int64_t)r * o->steps / o->rounds);
}

static double max_abs(const double *w, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(w[i]));
    return m;
}

static void print_round(int round, int step, double loss, double seconds)
{
    printf("  round %2d  step %5d  loss %.6f  %7.3f s\n", round, step, loss, seconds);
    fflush(stdout);
}

static void print_initial(double loss0)
{
    printf("  round %2d  step %5d  loss %.6f  (initial)\n", 0, 0, loss0);
    fflush(stdout);
}

/* ---- the distributed run ------------------------------------------------ */

typedef struct dist_result {
    double loss0;              /* in: the loss at the initial weights (printed) */
    double loss[MAX_ROUNDS];   /* global mean loss of each round's last step */
    double w[DP_NPARAMS];      /* rank 0's weights */
    int identical;             /* every rank's weights equal rank 0's, bit for bit */
    double accuracy;           /* rank 0's evaluate() */
    double seconds;            /* training rounds only */
} dist_result;

static int fail(loom_client *c, const char *what)
{
    fprintf(stderr, "dp_train: %s: %s\n", what, loom_last_error(c));
    return -1;
}

/* Get a ref's value into a malloc'd copy. */
static int get_copy(loom_client *c, loom_ref ref, void **data, size_t *len)
{
    loom_value *v;
    if (loom_get(c, ref, TIMEOUT_MS, &v)) return -1;
    *len = loom_value_size(v);
    *data = malloc(*len ? *len : 1);
    if (*data) memcpy(*data, loom_value_data(v), *len);
    loom_value_release(&v);
    return *data ? 0 : -1;
}

/* A step() result: {"loss": f64, "steps": i64}. */
static int parse_step(const void *data, size_t len, double *loss, int64_t *steps)
{
    loom_unpack u;
    uint32_t n;
    int found = 0;
    loom_unpack_init(&u, data, len);
    if (loom_unpack_map(&u, &n)) return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        if (loom_unpack_str(&u, &k, &kn)) return -1;
        if (kn == 4 && !memcmp(k, "loss", 4) && !loom_unpack_f64(&u, loss)) found |= 1;
        else if (kn == 5 && !memcmp(k, "steps", 5) && !loom_unpack_i64(&u, steps)) found |= 2;
        else if (loom_unpack_skip(&u)) return -1;
    }
    return found == 3 ? 0 : -1;
}

/* Call method on every actor with the same args; refs[i] get the results.
 * Returns how many calls were made (n unless one failed). */
static int call_all(loom_client *c, const loom_actor *a, int n, const char *method,
                    const loom_arg *args, int nargs, loom_ref *refs)
{
    for (int i = 0; i < n; i++)
        if (loom_actor_call(c, a[i], method, args, nargs, &refs[i])) return i;
    return n;
}

/* Trainer i's step() result: the loss it reports, after checking that it has
 * run `done` steps in all. */
static int read_step(loom_client *c, loom_ref ref, int i, int done, double *loss)
{
    void *d;
    size_t len;
    int64_t steps = -1;
    if (get_copy(c, ref, &d, &len)) {
        fprintf(stderr, "dp_train: Trainer %d: step: %s\n", i, loom_last_error(c));
        return -1;
    }
    int rc = parse_step(d, len, loss, &steps);
    free(d);
    if (rc || steps != done) {
        fprintf(stderr, "dp_train: Trainer %d: bad step result (steps %lld, want %d)\n", i,
                (long long)steps, done);
        return -1;
    }
    return 0;
}

/* One round: step(k, lr) on every Trainer.  Results are read as they come,
 * so a Trainer that dies fails the round at once, not when the others'
 * allreduce times out.  *loss: the global loss, which all must report. */
static int step_round(loom_client *c, const options *o, const loom_actor *a, int k, int done,
                      double *loss)
{
    loom_ref refs[MAX_WORKERS];
    int n = o->workers, ready[MAX_WORKERS], got[MAX_WORKERS] = {0}, have = 0, rc = 0;
    loom_pack *p = loom_pack_new();
    loom_pack_i64(p, k);
    size_t split = loom_pack_size(p);
    loom_pack_f64(p, o->lr);
    const uint8_t *b = loom_pack_data(p);
    loom_arg args[2] = {loom_arg_value(b, split),
                        loom_arg_value(b + split, loom_pack_size(p) - split)};
    int called = call_all(c, a, n, "step", args, 2, refs);
    if (called < n) rc = fail(c, "call step");
    loom_pack_destroy(&p);
    while (!rc && have < n) {
        int e = loom_wait(c, refs, n, have + 1, TIMEOUT_MS, ready);
        if (e <= have) {
            rc = e < 0 ? fail(c, "wait for step") : -1;
            if (e >= 0) fprintf(stderr, "dp_train: step: no answer in %d s\n", TIMEOUT_MS / 1000);
            break;
        }
        for (int i = 0; i < n && !rc; i++) {
            if (!ready[i] || got[i]) continue;
            double l;
            got[i] = 1;
            rc = read_step(c, refs[i], i, done, &l);
            if (!rc && have++ == 0) {
                *loss = l;
            } else if (!rc && l != *loss) {
                fprintf(stderr, "dp_train: Trainer %d reports loss %.17g, another %.17g\n", i, l,
                        *loss);
                rc = -1;
            }
        }
    }
    for (int i = 0; i < called; i++) loom_release(c, refs[i]);
    return rc;
}

static int run_rounds(loom_client *c, const options *o, const loom_actor *a, dist_result *r)
{
    int rc = 0, done = 0;
    print_initial(r->loss0);
    double t0 = now(), t = t0;
    for (int round = 0; round < o->rounds && !rc; round++) {
        int k = round_steps(o, round);
        done += k;
        rc = step_round(c, o, a, k, done, &r->loss[round]);
        if (!rc) print_round(round + 1, done, r->loss[round], now() - t);
        t = now();
    }
    r->seconds = now() - t0;
    return rc;
}

/* Fetch every actor's weights into r->w (rank 0) and compare the others. */
static int fetch_weights(loom_client *c, const options *o, const loom_actor *a, dist_result *r)
{
    loom_ref refs[MAX_WORKERS];
    if (call_all(c, a, o->workers, "weights", NULL, 0, refs) < o->workers)
        return fail(c, "call weights");
    r->identical = 1;
    for (int i = 0; i < o->workers; i++) {
        void *d;
        size_t len;
        const void *bin;
        size_t n;
        if (get_copy(c, refs[i], &d, &len)) return fail(c, "weights");
        loom_unpack u;
        loom_unpack_init(&u, d, len);
        int bad = loom_unpack_bin(&u, &bin, &n) || n != sizeof(r->w);
        if (!bad && i == 0) memcpy(r->w, bin, n);
        else if (!bad && memcmp(r->w, bin, n)) r->identical = 0;
        free(d);
        loom_release(c, refs[i]);
        if (bad) {
            fprintf(stderr, "dp_train: worker %d: weights are not %zu bytes of float64\n", i,
                    sizeof(r->w));
            return -1;
        }
    }
    return 0;
}

static int evaluate(loom_client *c, const loom_actor *a, const char *path, double *acc)
{
    loom_pack *p = loom_pack_new();
    loom_pack_cstr(p, path);
    loom_arg arg = loom_arg_value(loom_pack_data(p), loom_pack_size(p));
    loom_ref ref;
    void *d = NULL;
    size_t len;
    int rc = loom_actor_call(c, a[0], "evaluate", &arg, 1, &ref) || get_copy(c, ref, &d, &len);
    loom_pack_destroy(&p);
    if (rc) return fail(c, "evaluate");
    loom_unpack u;
    loom_unpack_init(&u, d, len);
    rc = loom_unpack_f64(&u, acc) ? -1 : 0;
    free(d);
    loom_release(c, ref);
    return rc;
}

/* Print the node each Trainer was placed on (from loom_actors_json) and
 * return how many distinct nodes they use, or -1. */
static int print_placement(loom_client *c, const loom_actor *a, int n)
{
    char *text;
    if (loom_actors_json(c, &text)) return fail(c, "actors");
    json_t *all = json_loads(text, 0, NULL);
    free(text);
    uint64_t nodes[MAX_WORKERS];
    int distinct = 0;
    printf("dp_train: Trainers 0..%d on nodes", n - 1);
    for (int i = 0; i < n; i++) {
        char hex[33];
        size_t k;
        json_t *e;
        loom_actor_to_hex(&a[i], hex);
        nodes[i] = 0;
        json_array_foreach(all, k, e) {
            const char *id = json_string_value(json_object_get(e, "id"));
            if (id && !strcmp(id, hex))
                nodes[i] = (uint64_t)json_integer_value(json_object_get(e, "node"));
        }
        printf(" %llu", (unsigned long long)nodes[i]);
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= nodes[j] == nodes[i];
        distinct += !seen;
    }
    printf(" (%d distinct)\n", distinct);
    json_decref(all);
    return distinct;
}

/* Create Trainer i of o->workers in bundle i of pg: init(data, i, workers,
 * seed, group).  *created counts those made. */
static int create_trainers(loom_client *c, const options *o, loom_ref lib, const loom_pg *pg,
                           const char *data, const char *group, loom_actor *actors, int *created)
{
    loom_pack *p = loom_pack_new();
    int rc = p ? 0 : -1;
    for (int i = 0; i < o->workers && !rc; i++) {
        /* five msgpack values in one buffer, cut into five arguments */
        size_t at[6] = {0};
        loom_pack_reset(p);
        loom_pack_cstr(p, data);
        at[1] = loom_pack_size(p);
        loom_pack_i64(p, i);
        at[2] = loom_pack_size(p);
        loom_pack_i64(p, o->workers);
        at[3] = loom_pack_size(p);
        loom_pack_i64(p, (int64_t)o->seed);
        at[4] = loom_pack_size(p);
        loom_pack_cstr(p, group);
        at[5] = loom_pack_size(p);
        const uint8_t *b = loom_pack_data(p);
        loom_arg args[5];
        for (int k = 0; k < 5; k++) args[k] = loom_arg_value(b + at[k], at[k + 1] - at[k]);
        loom_actor_opts ao = {.res = {.num_cpus = 1, .pg = pg, .bundle = i}};
        if (loom_actor_create(c, lib, "Trainer", args, 5, &ao, &actors[i]))
            rc = fail(c, "create a Trainer");
        else
            (*created)++;
    }
    loom_pack_destroy(&p);
    return rc;
}

/* Reserve the whole gang first: a Trainer's init waits for all the others to
 * join the group, so a partial start would only time out.  One bundle of a
 * CPU per Trainer, spread over the nodes; a gang the cluster can never hold
 * fails at once (LOOM_EINFEASIBLE) with the reason. */
static int reserve_gang(loom_client *c, int n, loom_pg *pg, int *have_pg)
{
    loom_bundle bundles[MAX_WORKERS];
    for (int i = 0; i < n; i++) bundles[i] = (loom_bundle){.num_cpus = 1};
    *have_pg = loom_pg_create(c, bundles, n, LOOM_PG_SPREAD, NULL, pg) == 0;
    if (*have_pg && loom_pg_wait(c, *pg, TIMEOUT_MS) == 0) return 0;
    fprintf(stderr, "dp_train: reserve %d CPUs for the Trainers: %s\n", n, loom_last_error(c));
    return -1;
}

static int wait_trainers(loom_client *c, const loom_actor *actors, int n)
{
    for (int i = 0; i < n; i++) {
        int e = loom_actor_wait_ready(c, actors[i], TIMEOUT_MS);
        if (e) {
            fprintf(stderr, "dp_train: Trainer %d: %s: %s\n", i, loom_strerror(e),
                    loom_last_error(c));
            return -1;
        }
    }
    return 0;
}

static int run_distributed(const options *o, const char *data, dist_result *r)
{
    loom_connect_opts co = {.num_nodes = o->nodes};
    loom_client *c;
    int e = loom_connect(o->address, &co, &c);
    if (e) {
        fprintf(stderr, "dp_train: connect %s: %s\n", o->address, loom_strerror(e));
        return -1;
    }
    /* a group name of this run only: the head's key-value table outlives runs */
    char group[64];
    snprintf(group, sizeof(group), "dp_train-%ld-%.0f", (long)getpid(), now() * 1e6);
    loom_ref lib;
    loom_actor actors[MAX_WORKERS];
    loom_pg pg;
    int created = 0, have_pg = 0, rc = 0;
    if (loom_library_load(c, o->lib, &lib)) rc = fail(c, "load the task library");
    if (!rc) rc = reserve_gang(c, o->workers, &pg, &have_pg);
    if (!rc) rc = create_trainers(c, o, lib, &pg, data, group, actors, &created);
    if (!rc) rc = wait_trainers(c, actors, created);
    if (!rc && print_placement(c, actors, created) < 0) rc = -1;
    if (!rc) rc = run_rounds(c, o, actors, r);
    if (!rc) rc = fetch_weights(c, o, actors, r);
    if (!rc) rc = evaluate(c, actors, data, &r->accuracy);
    for (int i = 0; i < created; i++) loom_actor_kill(c, actors[i]);
    if (have_pg) loom_pg_remove(c, pg);
    loom_disconnect(&c);
    return rc;
}

/* ---- the single-worker run and the checks ------------------------------- */

/* The same training in this process, round by round, from the same init;
 * loss[r] after round r.  0, or -1 out of memory. */
static int run_single(const options *o, const dp_data *train, double *w, double *loss,
                      double *seconds)
{
    double t0 = now(), t = t0;
    int done = 0;
    for (int r = 0; r < o->rounds; r++) {
        if (dp_train_steps(w, train, round_steps(o, r), o->lr, &loss[r])) return -1;
        done += round_steps(o, r);
        if (o->single_only) print_round(r + 1, done, loss[r], now() - t);
        t = now();
    }
    *seconds = now() - t0;
    return 0;
}

/* Compare the distributed run with the single-worker one (w, loss); print
 * the report; 1 when every check holds. */
static int compare(const options *o, const dist_result *dist, const double *w,
                   const double *loss, double seconds, const dp_data *test)
{
    double diff = 0, dloss = 0, scale = fmax(1.0, max_abs(w, DP_NPARAMS));
    for (int i = 0; i < DP_NPARAMS; i++) diff = fmax(diff, fabs(dist->w[i] - w[i]));
    for (int r = 0; r < o->rounds; r++) dloss = fmax(dloss, fabs(dist->loss[r] - loss[r]));
    printf("dp_train: training time: distributed %.3f s, single-worker %.3f s\n", dist->seconds,
           seconds);
    printf("dp_train: single-worker loss %.6f; max |loss_dist - loss_single| over the rounds "
           "= %.3g\n", loss[o->rounds - 1], dloss);
    printf("dp_train: the %d workers' weights are %s\n", o->workers,
           dist->identical ? "bitwise identical" : "NOT identical");
    int match = diff <= o->tol * scale;
    printf("dp_train: max |w_dist - w_single| = %.3g (max |w| %.3f, tolerance %.3g): %s\n", diff,
           max_abs(w, DP_NPARAMS), o->tol * scale, match ? "match" : "MISMATCH");
    int ok = dist->identical && match;
    double acc_local = dp_accuracy(dist->w, test);
    if (acc_local != dist->accuracy) {
        printf("dp_train: worker 0 evaluates %.4f, its weights here %.4f\n", dist->accuracy,
               acc_local);
        ok = 0;
    }
    return ok;
}

/* Train (distributed unless --single-only, then single-worker) and check;
 * the exit status. */
static int run(const options *o, const char *data, const dp_data *train, const dp_data *test)
{
    static double w[DP_NPARAMS], acc[DP_ACC_LEN], loss[MAX_ROUNDS];
    static dist_result dist;
    dp_init(w, o->seed);
    dp_grad_sum(w, train, acc);
    double loss0 = acc[DP_ACC_LOSS] / acc[DP_ACC_COUNT], seconds;
    printf("dp_train: %d training rows, %d test rows, %d parameters; %d steps at lr %g, seed "
           "%llu\n", train->n, test->n, DP_NPARAMS, o->steps, o->lr,
           (unsigned long long)o->seed);
    if (o->single_only) {
        printf("dp_train: single-worker only\n");
        print_initial(loss0);
    } else {
        printf("dp_train: %d workers (shards of ~%d rows) on %s%s\n", o->workers,
               train->n / o->workers, o->address,
               strcmp(o->address, "local") ? "" : " (a local cluster)");
        dist.loss0 = loss0;
        if (run_distributed(o, data, &dist)) return 1;
    }
    if (run_single(o, train, w, loss, &seconds)) {
        fprintf(stderr, "dp_train: out of memory\n");
        return 1;
    }

    const double *l = o->single_only ? loss : dist.loss;
    /* a round reports the loss its last step started from, so a first round
     * of one step reports loss0 itself */
    int falling = l[o->rounds - 1] < loss0;
    for (int r = 1; r < o->rounds; r++)
        if (!(l[r] < l[r - 1])) falling = 0;
    printf("dp_train: loss %.6f -> %.6f: %s\n", loss0, l[o->rounds - 1],
           falling ? "falls every round" : "did NOT fall every round");
    int ok = falling;
    double acc_single = dp_accuracy(w, test);
    if (o->single_only) {
        printf("dp_train: single-worker %.3f s, test accuracy %.4f (floor %.2f)\n", seconds,
               acc_single, o->min_accuracy);
    } else {
        ok &= compare(o, &dist, w, loss, seconds, test);
        printf("dp_train: test accuracy: distributed %.4f, single-worker %.4f (floor %.2f)\n",
               dist.accuracy, acc_single, o->min_accuracy);
        ok &= dist.accuracy >= o->min_accuracy;
    }
    ok &= acc_single >= o->min_accuracy;
    printf("dp_train: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    options o;
    parse_options(argc, argv, &o);
    const char *data = o.data ? o.data : default_data_path();
    char err[512], real[4096];
    dp_data train, test = {0};
    if (dp_data_load(data, 0, DP_TRAIN_ROWS, &train, err, sizeof(err)) ||
        dp_data_load(data, DP_TRAIN_ROWS, -1, &test, err, sizeof(err))) {
        fprintf(stderr, "dp_train: %s\n", err);
        if (!o.data)
            fprintf(stderr, "dp_train: fetch the dataset first: scripts/get_digits.sh "
                            "(or pass --data PATH)\n");
        dp_data_free(&train);
        return 2;
    }
    if (realpath(data, real)) data = real;   /* the actors may run in another directory */
    int status = run(&o, data, &train, &test);
    dp_data_free(&train);
    dp_data_free(&test);
    return status;
}
