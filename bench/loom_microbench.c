/* bench/loom_microbench.c — the task-runtime microbenchmark workloads of the
 * reference peer (../shared/peers/dask_microbench.py) run against loom, so the
 * two can be compared metric by metric.
 *
 *   loom_microbench [--nodes K] [--cpus N] [--scale X] [--json FILE]
 *                   [--address HOST:PORT|local] [--lib PATH] [--only NAME,...]
 *
 * By default it starts a local cluster (loom_connect("local")) of 1 node with
 * 2 CPUs.  Each workload is run once as a warm-up, then 3 times; the figure is
 * the median rate, like the peer's median_rate().  One line per metric:
 * "NAME VALUE UNIT", with the peer's metric names; --json writes
 * {"metric": value, ...} for the metrics that were measured.  Exits 1 if a
 * workload failed (its line says so; the others still run).
 *
 * Workloads (n scaled by --scale, at least 1):
 *   single_client_tasks_sync   500 × (loom_submit noop(i); loom_get) — one at a time
 *   single_client_tasks_async  5000 × loom_submit noop(i), then loom_wait on all
 *                              and loom_get each (the peer: c.map + c.gather)
 *   graph_tree_reduce_tasks    ONE graph (loom_graph_*): 2048 leaves value(i) and
 *                              pairwise add tasks, 2*leaves-1 tasks; get the root
 *   1_1_actor_calls_sync       500 × (loom_actor_call Counter.add; loom_get)
 *   1_1_actor_calls_async      2000 × loom_actor_call, then loom_wait and get each
 *   single_client_put_calls    500 × loom_put of 100 bytes
 *   single_client_get_calls    500 × loom_get of one put 100-byte object
 *   single_client_put_gigabytes  loom_put of one 256 MiB buffer (GB = 1e9 bytes)
 * Extra metrics (not in the peer):
 *   single_client_task_p50_us / _p99_us  round trip of one sync task (submit+get)
 *   single_client_tasks_async_graph      the async workload as one graph of n
 *                                        independent tasks (one message, like
 *                                        Dask's c.map sends one update_graph)
 *   single_client_get_calls_first        500 × the first loom_get of a put
 *                                        object (a round trip to the head; later
 *                                        gets of a ref hit the client's copy)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <loom/loom.h>
#include <loom/value.h>

#ifndef LOOM_EXAMPLES_LIB
#define LOOM_EXAMPLES_LIB "libloom_examples.so"
#endif

#define REPEATS 3
#define GET_TIMEOUT_MS 600000
#define MAX_METRICS 32

typedef struct bench {
    loom_client *c;
    loom_ref lib;
    double scale;
    loom_pack *pack;
    /* sync-task round trips (µs) of the timed repeats, for p50/p99 */
    double *lat;
    int nlat, cap_lat;
    int record_lat;
    loom_actor actor;           /* a Counter (examples/tasks.c) for the actor workloads */
} bench;

typedef struct metric {
    const char *name;
    double value;
    const char *unit;
} metric;

static metric metrics[MAX_METRICS];
static int nmetrics;
static const char *only; /* --only: comma-separated metric names to run, or NULL for all */

static int wanted(const char *name)
{
    if (!only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The peer's s(n): max(1, int(n * scale)). */
static int scaled(const bench *b, int n)
{
    double v = (double)n * b->scale;
    return v < 1 ? 1 : (int)v;
}

static int fail(bench *b, const char *what, int rc)
{
    fprintf(stderr, "loom_microbench: %s: %s: %s\n", what, loom_strerror(rc), loom_last_error(b->c));
    return rc;
}

static const void *pack_i64(bench *b, int64_t v, size_t *len)
{
    loom_pack_reset(b->pack);
    loom_pack_i64(b->pack, v);
    *len = loom_pack_size(b->pack);
    return loom_pack_data(b->pack);
}

static int cmp_double(const void *a, const void *b);

/* ---- workloads: each returns 0 or a loom error ---------------------------- */

typedef int (*workload_fn)(bench *b, int n);

static int get_and_release(bench *b, loom_ref ref)
{
    loom_value *v;
    int rc = loom_get(b->c, ref, GET_TIMEOUT_MS, &v);
    if (rc) return fail(b, "get", rc);
    loom_value_release(&v);
    loom_release(b->c, ref);
    return LOOM_OK;
}

static int tasks_sync(bench *b, int n)
{
    for (int i = 0; i < n; i++) {
        double t0 = now();
        size_t len;
        const void *d = pack_i64(b, i, &len);
        loom_arg arg = loom_arg_value(d, len);
        loom_ref ref;
        int rc = loom_submit(b->c, b->lib, "noop", &arg, 1, NULL, &ref);
        if (rc) return fail(b, "submit noop", rc);
        if ((rc = get_and_release(b, ref))) return rc;
        if (b->record_lat && b->nlat < b->cap_lat) b->lat[b->nlat++] = (now() - t0) * 1e6;
    }
    return LOOM_OK;
}

static int gather(bench *b, loom_ref *refs, int n)
{
    int rc = loom_wait(b->c, refs, n, n, GET_TIMEOUT_MS, NULL);
    if (rc < 0) return fail(b, "wait", rc);
    for (int i = 0; i < n; i++)
        if ((rc = get_and_release(b, refs[i]))) return rc;
    return LOOM_OK;
}

static int tasks_async(bench *b, int n)
{
    loom_ref *refs = malloc(sizeof(loom_ref) * (size_t)n);
    if (!refs) return LOOM_ENOMEM;
    int rc = LOOM_OK;
    for (int i = 0; !rc && i < n; i++) {
        size_t len;
        const void *d = pack_i64(b, i, &len);
        loom_arg arg = loom_arg_value(d, len);
        rc = loom_submit(b->c, b->lib, "noop", &arg, 1, NULL, &refs[i]);
        if (rc) fail(b, "submit noop", rc);
    }
    if (!rc) rc = gather(b, refs, n);
    free(refs);
    return rc;
}

static int actor_calls_sync(bench *b, int n)
{
    for (int i = 0; i < n; i++) {
        loom_ref ref;
        int rc = loom_actor_call(b->c, b->actor, "add", NULL, 0, &ref);
        if (rc) return fail(b, "actor call", rc);
        if ((rc = get_and_release(b, ref))) return rc;
    }
    return LOOM_OK;
}

static int actor_calls_async(bench *b, int n)
{
    loom_ref *refs = malloc(sizeof(loom_ref) * (size_t)n);
    if (!refs) return LOOM_ENOMEM;
    int rc = LOOM_OK;
    for (int i = 0; !rc && i < n; i++)
        if ((rc = loom_actor_call(b->c, b->actor, "add", NULL, 0, &refs[i]))) fail(b, "actor call", rc);
    if (!rc) rc = gather(b, refs, n);
    free(refs);
    return rc;
}

static int tasks_async_graph(bench *b, int n)
{
    loom_graph *g;
    int rc = loom_graph_new(&g);
    if (rc) return rc;
    loom_ref *refs = malloc(sizeof(loom_ref) * (size_t)n);
    if (!refs) rc = LOOM_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        int t = loom_graph_task(g, b->lib, "noop", NULL);
        size_t len;
        const void *d = pack_i64(b, i, &len);
        rc = t < 0 ? t : loom_graph_arg_value(g, t, d, len);
        if (!rc) rc = loom_graph_ref(g, t, 0, &refs[i]);
    }
    if (!rc && (rc = loom_graph_submit(b->c, g, NULL, NULL))) fail(b, "graph submit", rc);
    if (!rc) rc = gather(b, refs, n);
    free(refs);
    loom_graph_destroy(&g);
    return rc;
}

/* n is the number of leaves; the graph has 2n-1 tasks. */
static int tree_reduce(bench *b, int leaves)
{
    loom_graph *g;
    int rc = loom_graph_new(&g);
    if (rc) return rc;
    int *level = malloc(sizeof(int) * (size_t)leaves);
    if (!level) rc = LOOM_ENOMEM;
    for (int i = 0; !rc && i < leaves; i++) {
        level[i] = loom_graph_task(g, b->lib, "value", NULL);
        size_t len;
        const void *d = pack_i64(b, i, &len);
        rc = level[i] < 0 ? level[i] : loom_graph_arg_value(g, level[i], d, len);
    }
    int n = leaves;
    while (!rc && n > 1) {
        int m = 0;
        for (int i = 0; !rc && i + 1 < n; i += 2) {
            int t = loom_graph_task(g, b->lib, "add", NULL);
            rc = t < 0 ? t : loom_graph_arg_node(g, t, level[i], 0);
            if (!rc) rc = loom_graph_arg_node(g, t, level[i + 1], 0);
            level[m++] = t;
        }
        if (n % 2) level[m++] = level[n - 1];
        n = m;
    }
    loom_ref root;
    if (!rc && loom_graph_size(g) != 2 * leaves - 1) rc = LOOM_EINVAL;
    if (!rc) rc = loom_graph_ref(g, level[0], 0, &root);
    if (!rc && (rc = loom_graph_submit(b->c, g, NULL, NULL))) fail(b, "graph submit", rc);
    if (!rc) {
        loom_value *v;
        rc = loom_get(b->c, root, GET_TIMEOUT_MS, &v);
        if (rc) {
            fail(b, "get root", rc);
        } else {
            loom_unpack u;
            int64_t sum = -1;
            loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
            loom_unpack_i64(&u, &sum);
            int64_t want = (int64_t)leaves * (leaves - 1) / 2;
            if (sum != want) {
                fprintf(stderr, "loom_microbench: tree reduce: sum %lld, expected %lld\n", (long long)sum,
                        (long long)want);
                rc = LOOM_ETASK;
            }
            loom_value_release(&v);
        }
    }
    /* drop the client's hold on every node's output */
    for (int i = 0; i < loom_graph_size(g); i++) {
        loom_ref r;
        if (loom_graph_ref(g, i, 0, &r) == 0) loom_release(b->c, r);
    }
    free(level);
    loom_graph_destroy(&g);
    return rc;
}

static char small_obj[100];

static int put_calls(bench *b, int n)
{
    loom_ref *refs = malloc(sizeof(loom_ref) * (size_t)n);
    if (!refs) return LOOM_ENOMEM;
    int rc = LOOM_OK, k = 0;
    for (; k < n; k++)
        if ((rc = loom_put(b->c, small_obj, sizeof(small_obj), &refs[k]))) {
            fail(b, "put", rc);
            break;
        }
    for (int i = 0; i < k; i++) loom_release(b->c, refs[i]);
    free(refs);
    return rc;
}

static loom_ref get_target;

static int get_calls(bench *b, int n)
{
    for (int i = 0; i < n; i++) {
        loom_value *v;
        int rc = loom_get(b->c, get_target, GET_TIMEOUT_MS, &v);
        if (rc) return fail(b, "get", rc);
        if (loom_value_size(v) != sizeof(small_obj)) {
            loom_value_release(&v);
            return LOOM_EPROTO;
        }
        loom_value_release(&v);
    }
    return LOOM_OK;
}

/* The first loom_get of each of n put objects: the client has not seen them
 * yet, so each get is a round trip to the head (subscribe, OBJ_READY with the
 * value inline).  Later gets of a ref are answered from the client's copy,
 * which is what single_client_get_calls measures.  Puts are not timed. */
static int get_first_calls(bench *b, int n, double *rate)
{
    loom_ref *refs = malloc(sizeof(loom_ref) * (size_t)n);
    if (!refs) return LOOM_ENOMEM;
    double rates[REPEATS];
    int rc = LOOM_OK;
    for (int r = -1; !rc && r < REPEATS; r++) { /* r = -1: the warm-up */
        int k = 0;
        for (; k < n; k++)
            if ((rc = loom_put(b->c, small_obj, sizeof(small_obj), &refs[k]))) {
                fail(b, "put", rc);
                break;
            }
        double t0 = now();
        for (int i = 0; !rc && i < k; i++) {
            loom_value *v;
            if ((rc = loom_get(b->c, refs[i], GET_TIMEOUT_MS, &v))) fail(b, "get", rc);
            else loom_value_release(&v);
        }
        if (r >= 0) rates[r] = n / (now() - t0);
        for (int i = 0; i < k; i++) loom_release(b->c, refs[i]);
    }
    free(refs);
    if (rc) return rc;
    qsort(rates, REPEATS, sizeof(double), cmp_double);
    *rate = rates[REPEATS / 2];
    return LOOM_OK;
}

static unsigned char *big_buf;
static size_t big_len;

static int put_big(bench *b, int n)
{
    (void)n;
    loom_ref ref;
    int rc = loom_put(b->c, big_buf, big_len, &ref);
    if (rc) return fail(b, "put 256 MiB", rc);
    loom_release(b->c, ref);
    return LOOM_OK;
}

/* ---- timing ------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The peer's median_rate: one warm-up run, then REPEATS timed runs; the
 * median of count/seconds.  Returns 0 and *rate, or the workload's error. */
static int median_rate(bench *b, workload_fn fn, int n, double count, double *rate)
{
    int rc = fn(b, n);
    if (rc) return rc;
    double rates[REPEATS];
    b->record_lat = 1; /* tasks_sync keeps its round trips of the timed runs */
    for (int r = 0; r < REPEATS; r++) {
        double t0 = now();
        if ((rc = fn(b, n))) break;
        rates[r] = count / (now() - t0);
    }
    b->record_lat = 0;
    if (rc) return rc;
    qsort(rates, REPEATS, sizeof(double), cmp_double);
    *rate = rates[REPEATS / 2];
    return LOOM_OK;
}

static void report(const char *name, double value, const char *unit)
{
    printf("%s %.1f %s\n", name, value, unit);
    fflush(stdout);
    if (nmetrics < MAX_METRICS) metrics[nmetrics++] = (metric){name, value, unit};
}

static int nfailed;

static void report_failed(const char *name, int rc)
{
    nfailed++;
    printf("%s failed (%s)\n", name, loom_strerror(rc));
    fflush(stdout);
}

static void run(bench *b, const char *name, workload_fn fn, int n, double count, const char *unit)
{
    if (!wanted(name)) return;
    double rate;
    int rc = median_rate(b, fn, n, count, &rate);
    if (rc) report_failed(name, rc);
    else report(name, rate, unit);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, int n, double p)
{
    int k = (int)(p / 100.0 * n + 0.999999) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

static int write_json(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fprintf(f, "{");
    for (int i = 0; i < nmetrics; i++)
        fprintf(f, "%s\n \"%s\": %.3f", i ? "," : "", metrics[i].name, metrics[i].value);
    fprintf(f, "\n}\n");
    return fclose(f) ? -1 : 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loom_microbench [--nodes K] [--cpus N] [--scale X] [--json FILE]\n"
            "                       [--address HOST:PORT|local] [--lib PATH] [--only NAME,...]\n"
            "  --nodes K     node daemons of the local cluster (default 1)\n"
            "  --cpus N      CPUs per node of the local cluster (default 2)\n"
            "  --scale X     multiply workload sizes (default 1)\n"
            "  --json FILE   also write {\"metric\": value, ...} to FILE\n"
            "  --address A   use the running cluster at HOST:PORT (default: start a local one)\n"
            "  --lib PATH    the example task library (default: %s)\n"
            "  --only LIST   run only these metrics (comma-separated names), e.g. to profile one\n",
            LOOM_EXAMPLES_LIB);
}

int main(int argc, char **argv)
{
    int nodes = 1, cpus = 2;
    double scale = 1.0;
    const char *json = NULL, *address = "local", *lib_path = LOOM_EXAMPLES_LIB;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--nodes")) nodes = atoi(v);
        else if (!strcmp(a, "--cpus")) cpus = atoi(v);
        else if (!strcmp(a, "--scale")) scale = atof(v);
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--address")) address = v;
        else if (!strcmp(a, "--lib")) lib_path = v;
        else if (!strcmp(a, "--only")) only = v;
        else {
            usage();
            return 2;
        }
    }
    if (nodes < 1 || cpus < 1 || !(scale > 0)) {
        usage();
        return 2;
    }

    bench b = {.scale = scale};
    big_len = (size_t)scaled(&b, 256) << 20;
    /* room for a few big objects in flight while released ones are deleted */
    uint64_t store = (uint64_t)1 << 30;
    if (store < 4 * (uint64_t)big_len) store = 4 * (uint64_t)big_len;
    loom_connect_opts co = {.num_nodes = nodes, .num_cpus = cpus, .store_bytes = store};
    int rc = loom_connect(address, &co, &b.c);
    if (rc) {
        fprintf(stderr, "loom_microbench: cannot connect to %s: %s\n", address, loom_strerror(rc));
        return 1;
    }
    if ((rc = loom_library_load(b.c, lib_path, &b.lib))) {
        fail(&b, "load the task library", rc);
        loom_disconnect(&b.c);
        return 1;
    }
    b.pack = loom_pack_new();
    memset(small_obj, 'x', sizeof(small_obj));

    int n = scaled(&b, 500);
    b.cap_lat = REPEATS * n;
    b.lat = malloc(sizeof(double) * (size_t)b.cap_lat);
    run(&b, "single_client_tasks_sync", tasks_sync, n, n, "per_s");

    n = scaled(&b, 5000);
    run(&b, "single_client_tasks_async", tasks_async, n, n, "per_s");

    int leaves = scaled(&b, 2048);
    run(&b, "graph_tree_reduce_tasks", tree_reduce, leaves, 2.0 * leaves - 1, "per_s");

    if (wanted("1_1_actor_calls_sync") || wanted("1_1_actor_calls_async")) {
        if ((rc = loom_actor_create(b.c, b.lib, "Counter", NULL, 0, NULL, &b.actor)) ||
            (rc = loom_actor_wait_ready(b.c, b.actor, GET_TIMEOUT_MS))) {
            fail(&b, "create the Counter actor", rc);
            report_failed("1_1_actor_calls_sync", rc);
            report_failed("1_1_actor_calls_async", rc);
        } else {
            n = scaled(&b, 500);
            run(&b, "1_1_actor_calls_sync", actor_calls_sync, n, n, "per_s");
            n = scaled(&b, 2000);
            run(&b, "1_1_actor_calls_async", actor_calls_async, n, n, "per_s");
            loom_actor_kill(b.c, b.actor);
        }
    }

    n = scaled(&b, 500);
    run(&b, "single_client_put_calls", put_calls, n, n, "per_s");
    if (!wanted("single_client_get_calls")) {
        /* skipped */
    } else if ((rc = loom_put(b.c, small_obj, sizeof(small_obj), &get_target))) {
        fail(&b, "put", rc);
        report_failed("single_client_get_calls", rc);
    } else {
        run(&b, "single_client_get_calls", get_calls, n, n, "per_s");
        loom_release(b.c, get_target);
    }

    if (wanted("single_client_get_calls_first")) {
        double rate;
        if ((rc = get_first_calls(&b, n, &rate))) report_failed("single_client_get_calls_first", rc);
        else report("single_client_get_calls_first", rate, "per_s");
    }

    big_buf = wanted("single_client_put_gigabytes") ? malloc(big_len) : NULL;
    if (!wanted("single_client_put_gigabytes")) {
        /* skipped */
    } else if (!big_buf) {
        report_failed("single_client_put_gigabytes", LOOM_ENOMEM);
    } else {
        memset(big_buf, 1, big_len); /* like np.ones: touched, so no page faults in the timing */
        run(&b, "single_client_put_gigabytes", put_big, 1, (double)big_len / 1e9, "GB/s");
        free(big_buf);
    }

    if (b.nlat > 0) {
        qsort(b.lat, (size_t)b.nlat, sizeof(double), cmp_double);
        report("single_client_task_p50_us", percentile(b.lat, b.nlat, 50), "us");
        report("single_client_task_p99_us", percentile(b.lat, b.nlat, 99), "us");
    }

    n = scaled(&b, 5000);
    run(&b, "single_client_tasks_async_graph", tasks_async_graph, n, n, "per_s");

    free(b.lat);
    loom_pack_destroy(&b.pack);
    loom_disconnect(&b.c);
    if (json && write_json(json)) return 1;
    return nfailed ? 1 : 0;
}
