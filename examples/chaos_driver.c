/* examples/chaos_driver.c — the driver of the chaos tests (tests/sys_chaos.sh):
 * a workload meant to survive executors, node daemons (and, once supported, the
 * head) being killed with SIGKILL while it runs.
 *
 * It submits ONE graph of about 10,000 tasks, every task with the default
 * retries:
 *   - a tree reduction like tree_reduce.c: N leaves slow_value(ms, i) (i = 1..N)
 *     summed pairwise by N-1 add tasks;
 *   - K "blob" command tasks, each writing a deterministic file of B bytes
 *     (larger than the 16 KiB that travel inline with messages, so the bytes
 *     live only in a node's object store and are lost with that node unless
 *     lineage rebuilds them), each read by a length task;
 *   - a root add(tree, length_1 .. length_K), which must be N(N+1)/2 + K*B.
 * While it runs, a second thread (its own client) drives a Counter actor
 * (max_restarts -1, max_task_retries 3) with a paced stream of add(1) calls.
 *
 * Checks, one line each, then "chaos_driver: OK" (exit 0) or a FAIL line and
 * exit 1:
 *   - the root's sum is exactly right;
 *   - "no object reported done was lost": the driver fetches some leaf results
 *     and every blob as soon as each is done and keeps the bytes; at the end a
 *     fresh client (no cached values) gets each again and must get the same
 *     bytes — rebuilt from lineage if the node holding them died;
 *   - the actor: every call returns an integer (no call lost), and a get after
 *     the storm works.  A restart runs init again, so the total restarts from 0:
 *     the calls' values need not be one running count; the number of restarts
 *     seen (a value not above the previous one) is printed.
 *
 *   chaos_driver --address HOST:PORT [--leaves N] [--leaf-ms MS] [--blobs K]
 *                [--blob-bytes B] [--early E] [--calls MAX] [--call-ms MS]
 *                [--timeout-s S] [--lib PATH]
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <loom/loom.h>
#include <loom/value.h>

#ifndef LOOM_EXAMPLES_LIB
#define LOOM_EXAMPLES_LIB "libloom_examples.so"
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double t_start;
static int failures;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&out_lock);
    printf("[%7.2f] ", now() - t_start);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say("%s %s", ok ? "ok  " : "FAIL", buf);
    if (!ok) __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
}

static int value_i64(const loom_value *v, int64_t *x)
{
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    return loom_unpack_i64(&u, x);
}

/* ---- options ------------------------------------------------------------ */

static const char *address = NULL, *lib_path = LOOM_EXAMPLES_LIB;
static int leaves = 5000, leaf_ms = 2, nblobs = 8, blob_bytes = 40000, nearly = 8;
static int max_calls = 3000, call_ms = 20, timeout_s = 300;

/* ---- the actor workload (its own thread and client) --------------------- */

static volatile int graph_done;   /* set by main when the root is in */

typedef struct actor_report {
    int ok;                       /* the thread ran to its end */
    int calls, good, resets;
    int64_t last, final;
    char error[700];
} actor_report;

static int get_i64(loom_client *c, loom_ref r, int64_t timeout_ms, int64_t *x, char *err, size_t errlen)
{
    loom_value *v = NULL;
    int rc = loom_get(c, r, timeout_ms, &v);
    if (rc) {
        char hex[2 * LOOM_ID_LEN + 1];
        loom_ref_to_hex(&r, hex);
        snprintf(err, errlen, "%s: %s (object %s)", loom_strerror(rc), loom_last_error(c), hex);
        return rc;
    }
    rc = value_i64(v, x);
    if (rc) snprintf(err, errlen, "not an integer (%zu bytes)", loom_value_size(v));
    loom_value_release(&v);
    return rc;
}

static void *actor_main(void *arg)
{
    actor_report *rep = arg;
    loom_client *c = NULL;
    loom_ref lib;
    loom_actor a;
    int rc = loom_connect(address, NULL, &c);
    if (rc) {
        snprintf(rep->error, sizeof rep->error, "connect: %s", loom_strerror(rc));
        return NULL;
    }
    if ((rc = loom_library_load(c, lib_path, &lib))) {
        snprintf(rep->error, sizeof rep->error, "library: %s", loom_last_error(c));
        loom_disconnect(&c);
        return NULL;
    }
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.name = NULL;
    ao.max_restarts = -1;
    ao.max_task_retries = 3;
    uint8_t zero = 0; /* msgpack 0: Counter starts at 0 */
    loom_arg init = loom_arg_value(&zero, 1);
    if ((rc = loom_actor_create(c, lib, "Counter", &init, 1, &ao, &a)) ||
        (rc = loom_actor_wait_ready(c, a, 120000))) {
        snprintf(rep->error, sizeof rep->error, "Counter: %s: %s", loom_strerror(rc), loom_last_error(c));
        loom_disconnect(&c);
        return NULL;
    }
    char hex[33];
    loom_actor_to_hex(&a, hex);
    say("actor Counter %s is ready (max_restarts -1, max_task_retries 3)", hex);
    uint8_t one = 1; /* msgpack 1 */
    loom_arg add1 = loom_arg_value(&one, 1);
    enum { WINDOW = 8 };
    loom_ref win[WINDOW];
    int head = 0, n_out = 0, failed = 0, gone = 0;
    int64_t prev = 0;
    /* a paced stream of calls while the graph runs, at most WINDOW outstanding;
       each result is checked in call order */
    for (;;) {
        int more = !graph_done && !gone && rep->calls < max_calls;
        if (more && n_out < WINDOW) {
            rc = loom_actor_call(c, a, "add", &add1, 1, &win[(head + n_out) % WINDOW]);
            if (rc) {
                snprintf(rep->error, sizeof rep->error, "call %d: %s: %s", rep->calls + 1, loom_strerror(rc),
                         loom_last_error(c));
                break;
            }
            n_out++;
            rep->calls++;
            if (call_ms > 0) usleep((useconds_t)call_ms * 1000);
            continue;
        }
        if (n_out == 0) break;
        int64_t x = 0;
        int idx = rep->calls - n_out + 1;
        char err[512];
        rc = get_i64(c, win[head], (int64_t)timeout_s * 1000, &x, err, sizeof err);
        loom_release(c, win[head]);
        head = (head + 1) % WINDOW;
        n_out--;
        if (rc) {
            /* go on: count what else comes back, but the check fails; an
               actor that is dead for good gets no more calls */
            if (++failed <= 3) say("actor call %d failed: %s", idx, err);
            if (rc == LOOM_EACTOR) gone = 1;
            if (!rep->error[0]) snprintf(rep->error, sizeof rep->error, "call %d: %s", idx, err);
            continue;
        }
        rep->good++;
        if (x <= prev) {
            rep->resets++;
            say("actor call %d returned %lld after %lld: the actor restarted (its state was reset by init)", idx,
                (long long)x, (long long)prev);
        }
        prev = x;
        rep->last = x;
    }
    {
        loom_ref r;
        char err[512];
        rc = loom_actor_call(c, a, "get", NULL, 0, &r);
        if (rc) snprintf(err, sizeof err, "%s: %s", loom_strerror(rc), loom_last_error(c));
        else rc = get_i64(c, r, (int64_t)timeout_s * 1000, &rep->final, err, sizeof err);
        if (rc == 0) rep->ok = 1;
        else if (!rep->error[0]) snprintf(rep->error, sizeof rep->error, "get: %s", err);
    }
    loom_actor_kill(c, a);
    loom_disconnect(&c);
    return NULL;
}

/* ---- the graph ---------------------------------------------------------- */

typedef struct early {
    loom_ref ref;
    const char *what;
    int index;
    int got;
    void *bytes;
    size_t len;
    double at;
} early;

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--address")) address = argv[i + 1];
        else if (!strcmp(argv[i], "--lib")) lib_path = argv[i + 1];
        else if (!strcmp(argv[i], "--leaves")) leaves = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--leaf-ms")) leaf_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--blobs")) nblobs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--blob-bytes")) blob_bytes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--early")) nearly = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--calls")) max_calls = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--call-ms")) call_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout-s")) timeout_s = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "chaos_driver: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (leaves < 2) leaves = 2;
    if (nblobs < 0) nblobs = 0;
    if (nearly < 0) nearly = 0;
    if (nearly > leaves) nearly = leaves;
    if (blob_bytes < 1) blob_bytes = 1;
    t_start = now();

    loom_client *c;
    int rc = loom_connect(address, NULL, &c);
    if (rc) {
        fprintf(stderr, "chaos_driver: connect %s: %s\n", address ? address : "(default)", loom_strerror(rc));
        return 1;
    }
    loom_ref lib;
    if ((rc = loom_library_load(c, lib_path, &lib))) {
        fprintf(stderr, "chaos_driver: library: %s\n", loom_last_error(c));
        loom_disconnect(&c);
        return 1;
    }

    /* the graph: blobs first (so they are done early and sit in stores while
       the faults come), then the tree */
    loom_graph *g;
    loom_graph_new(&g);
    loom_pack *p = loom_pack_new();
    int nearly_all = nearly + nblobs;
    early *ea = calloc((size_t)(nearly_all ? nearly_all : 1), sizeof(early));
    int *lens = calloc((size_t)(nblobs ? nblobs : 1), sizeof(int));
    char script[256];
    snprintf(script, sizeof script, "yes \"chaos blob $0\" | head -c %d > blob", blob_bytes);
    for (int b = 0; b < nblobs; b++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%d", b);
        const char *av[] = {"sh", "-c", script, idx};
        const char *outs[] = {"blob"};
        loom_command cmd = {.argv = av, .argc = 4, .outputs = outs, .noutputs = 1};
        char name[64];
        snprintf(name, sizeof name, "blob-%d", b);
        loom_task_opts o = {.name = name};
        int t = loom_graph_command(g, &cmd, &o);
        if (t < 0) {
            fprintf(stderr, "chaos_driver: graph_command: %s\n", loom_strerror(t));
            return 1;
        }
        snprintf(name, sizeof name, "blob-length-%d", b);
        lens[b] = loom_graph_task(g, lib, "length", &o);
        loom_graph_arg_node(g, lens[b], t, 1);
        loom_graph_ref(g, t, 1, &ea[nearly + b].ref);
        ea[nearly + b].what = "blob";
        ea[nearly + b].index = b;
    }
    int *level = malloc(sizeof(int) * (size_t)leaves);
    for (int i = 0; i < leaves; i++) {
        level[i] = loom_graph_task(g, lib, "slow_value", NULL);
        loom_pack_reset(p);
        loom_pack_i64(p, leaf_ms);
        loom_graph_arg_value(g, level[i], loom_pack_data(p), loom_pack_size(p));
        loom_pack_reset(p);
        loom_pack_i64(p, i + 1);
        loom_graph_arg_value(g, level[i], loom_pack_data(p), loom_pack_size(p));
    }
    /* early-fetched leaves: spread over the leaves */
    for (int e = 0; e < nearly; e++) {
        int i = (int)((int64_t)e * leaves / nearly);
        loom_graph_ref(g, level[i], 0, &ea[e].ref);
        ea[e].what = "leaf";
        ea[e].index = i;
    }
    int n = leaves;
    while (n > 1) {
        int m = 0;
        for (int i = 0; i + 1 < n; i += 2) {
            int t = loom_graph_task(g, lib, "add", NULL);
            loom_graph_arg_node(g, t, level[i], 0);
            loom_graph_arg_node(g, t, level[i + 1], 0);
            level[m++] = t;
        }
        if (n % 2) level[m++] = level[n - 1];
        n = m;
    }
    int root = level[0];
    if (nblobs > 0) {
        root = loom_graph_task(g, lib, "add", &(loom_task_opts){.name = "root"});
        loom_graph_arg_node(g, root, level[0], 0);
        for (int b = 0; b < nblobs; b++) loom_graph_arg_node(g, root, lens[b], 0);
    }
    loom_ref root_ref;
    loom_graph_ref(g, root, 0, &root_ref);
    int ntasks = loom_graph_size(g);
    int64_t want = (int64_t)leaves * (leaves + 1) / 2 + (int64_t)nblobs * blob_bytes;

    /* the actor workload starts first, so its calls overlap the whole graph */
    actor_report arep;
    memset(&arep, 0, sizeof arep);
    pthread_t th;
    int have_thread = pthread_create(&th, NULL, actor_main, &arep) == 0;
    if (!have_thread) check(0, "start the actor thread");

    char job[LOOM_JOB_ID_LEN];
    rc = loom_graph_submit(c, g, &(loom_submit_opts){.job_name = "chaos"}, job);
    if (rc) {
        fprintf(stderr, "chaos_driver: submit: %s\n", loom_last_error(c));
        return 1;
    }
    say("submitted job %s: %d tasks (%d leaves of %d ms, %d blobs of %d bytes), every task with the default "
        "retries",
        job, ntasks, leaves, leaf_ms, nblobs, blob_bytes);

    /* fetch the early objects as soon as each is done (a driver reading
       intermediate results while the graph runs) */
    loom_ref *wrefs = calloc((size_t)(nearly_all ? nearly_all : 1), sizeof(loom_ref));
    int *widx = calloc((size_t)(nearly_all ? nearly_all : 1), sizeof(int));
    int *ready = calloc((size_t)(nearly_all ? nearly_all : 1), sizeof(int));
    int fetched = 0, early_err = 0;
    double deadline = now() + timeout_s;
    while (fetched < nearly_all && now() < deadline) {
        int nw = 0;
        for (int e = 0; e < nearly_all; e++)
            if (!ea[e].got) {
                wrefs[nw] = ea[e].ref;
                widx[nw++] = e;
            }
        rc = loom_wait(c, wrefs, nw, 1, 1000, ready);
        if (rc < 0 && rc != LOOM_ETIMEOUT) {
            say("wait for the early objects: %s: %s", loom_strerror(rc), loom_last_error(c));
            early_err++;
            break;
        }
        for (int k = 0; k < nw; k++) {
            if (!ready[k]) continue;
            early *x = &ea[widx[k]];
            loom_value *v = NULL;
            rc = loom_get(c, x->ref, 60000, &v);
            x->got = 1;
            fetched++;
            if (rc) {
                x->got = -1;
                early_err++;
                say("early get of %s %d failed: %s: %s", x->what, x->index, loom_strerror(rc), loom_last_error(c));
                continue;
            }
            x->len = loom_value_size(v);
            x->bytes = malloc(x->len ? x->len : 1);
            memcpy(x->bytes, loom_value_data(v), x->len);
            x->at = now() - t_start;
            loom_value_release(&v);
        }
    }
    say("fetched %d early objects (%d leaves, %d blobs) as they finished", fetched, nearly, nblobs);
    for (int e = 0; e < nearly_all; e++)
        if (!ea[e].got) {
            char hex[2 * LOOM_ID_LEN + 1];
            loom_ref_to_hex(&ea[e].ref, hex);
            say("not fetched: %s %d (object %s)", ea[e].what, ea[e].index, hex);
        }

    /* the root */
    loom_value *v = NULL;
    double left = deadline - now();
    rc = loom_get(c, root_ref, (int64_t)((left > 1 ? left : 1) * 1000), &v);
    double dt = now() - t_start;
    graph_done = 1;
    if (rc) {
        check(0, "the root of the %d-task graph: %s: %s (after %.1f s)", ntasks, loom_strerror(rc),
              loom_last_error(c), dt);
    } else {
        int64_t sum = 0;
        int bad = value_i64(v, &sum);
        check(!bad && sum == want, "the %d-task graph's sum is %lld (expected %lld) after %.1f s", ntasks,
              (long long)sum, (long long)want, dt);
        loom_value_release(&v);
    }

    /* the actor */
    if (have_thread) pthread_join(th, NULL);
    check(arep.calls > 0 && arep.good == arep.calls && !arep.error[0],
          "actor: %d add calls, %d returned an integer (no call lost)%s%s", arep.calls, arep.good,
          arep.error[0] ? "; error: " : "", arep.error);
    if (arep.ok == 1)
        check(1, "actor: get after the storm works: total %lld (last add returned %lld); it restarted %d time(s) "
                 "as seen by the calls (a restart runs init again: the state restarts from 0, so the total "
                 "counts only the calls since the last restart)",
              (long long)arep.final, (long long)arep.last, arep.resets);

    /* no object reported done was lost: a fresh client (nothing cached) gets
       every early object again and must see the same bytes */
    check(early_err == 0 && fetched == nearly_all, "fetched all %d early objects while the graph ran (%d errors)",
          nearly_all, early_err);
    loom_client *c2 = NULL;
    rc = loom_connect(address, NULL, &c2);
    if (rc) {
        check(0, "connect a second client to re-read the early objects: %s", loom_strerror(rc));
    } else {
        int same = 0, lost = 0;
        for (int e = 0; e < nearly_all; e++) {
            early *x = &ea[e];
            if (x->got != 1) continue;
            loom_value *w = NULL;
            rc = loom_get(c2, x->ref, 120000, &w);
            if (rc) {
                lost++;
                say("FAIL %s %d (done at %.1f s) is gone: %s: %s", x->what, x->index, x->at, loom_strerror(rc),
                    loom_last_error(c2));
                continue;
            }
            if (loom_value_size(w) == x->len && !memcmp(loom_value_data(w), x->bytes, x->len)) same++;
            else {
                lost++;
                say("FAIL %s %d: %zu bytes now, %zu when first read", x->what, x->index, loom_value_size(w), x->len);
            }
            loom_value_release(&w);
        }
        check(lost == 0, "no object reported done was lost: %d of %d early objects read again with the same bytes "
                         "(%d blobs of %d bytes live only in node stores)",
              same, fetched - early_err, nblobs, blob_bytes);
        loom_disconnect(&c2);
    }

    for (int e = 0; e < nearly_all; e++) free(ea[e].bytes);
    free(ea);
    free(lens);
    free(level);
    free(wrefs);
    free(widx);
    free(ready);
    loom_pack_destroy(&p);
    loom_graph_destroy(&g);
    loom_disconnect(&c);
    if (failures) {
        say("chaos_driver: FAILED (%d check(s))", failures);
        return 1;
    }
    say("chaos_driver: OK");
    return 0;
}
