/* tests/test_api_placement.c — resources and placement on a real local
 * cluster of three heterogeneous nodes (2 CPUs each):
 *   node 1: 2 GPUs of 16 GiB, zone=a
 *   node 2: no GPU, custom resources nvlink=1 and licence=2, zone=b
 *   node 3: 1 GPU of 8 GiB, zone=b
 * Real tasks (node_id, gpu_ids, sleep_ms, echo), actors (Counter.where) and
 * placement groups, and checks of where each ran and what it saw
 * (CUDA_VISIBLE_DEVICES), of what the head reports (loom_status_json:
 * gpus_used, cpus_used, resources, the infeasible list) and of the errors
 * (LOOM_EINFEASIBLE with a reason, LOOM_EINVAL for bad requests).  Every wait
 * is bounded. */
#include <math.h>
#include "test_api_util.h"

static char state_dir[4096];
static loom_ref lib;
static const uint64_t GiB = (uint64_t)1 << 30;

#define WAIT_MS 20000   /* the longest any single get may take */

/* ---- status JSON ---------------------------------------------------------- */

static char *status(loom_client *c)
{
    char *json = NULL;
    int rc = loom_status_json(c, &json);
    if (rc) fprintf(stderr, "loom_status_json: %s: %s\n", loom_strerror(rc), loom_last_error(c));
    return json;
}

static void dump_status(loom_client *c, const char *why)
{
    char *s = status(c);
    fprintf(stderr, "  [%s] status: %s\n", why, s ? s : "(none)");
    free(s);
}

/* The text of node `id`'s object in status JSON, copied into out ("" if absent).
 * Node objects begin with "id" (the head packs it first). */
static void node_obj(const char *json, int id, char *out, size_t outlen)
{
    out[0] = 0;
    const char *nodes = json ? strstr(json, "\"nodes\":[") : NULL;
    if (!nodes) return;
    char pat[32];
    snprintf(pat, sizeof pat, "{\"id\":%d,", id);
    const char *p = strstr(nodes, pat);
    if (!p) return;
    const char *end = strstr(p + 1, "{\"id\":");
    const char *tail = strstr(p, "],\"tasks\"");
    if (!end || (tail && tail < end)) end = tail;
    size_t n = end ? (size_t)(end - p) : strlen(p);
    snprintf(out, outlen, "%.*s", (int)(n < outlen ? n : outlen - 1), p);
}

/* A number after "key": in s (NAN when absent). */
static double num_after(const char *s, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    if (!p) return NAN;
    p += strlen(pat);
    if (*p == '[') p++;
    char *e;
    double v = strtod(p, &e);
    return e == p ? NAN : v;
}

/* A numeric field of node id from a fresh status. */
static double node_num(loom_client *c, int id, const char *key)
{
    char *s = status(c), obj[4096];
    node_obj(s, id, obj, sizeof obj);
    free(s);
    return num_after(obj, key);
}

/* Sum of a numeric field over nodes 1..3. */
static double sum_num(loom_client *c, const char *key)
{
    char *s = status(c), obj[4096];
    double t = 0;
    for (int id = 1; id <= 3; id++) {
        node_obj(s, id, obj, sizeof obj);
        t += num_after(obj, key);
    }
    free(s);
    return t;
}

/* The amount of custom resource `name` in use on node id (NAN if it has none). */
static double res_used(loom_client *c, int id, const char *name)
{
    char *s = status(c), obj[4096], pat[96];
    node_obj(s, id, obj, sizeof obj);
    free(s);
    snprintf(pat, sizeof pat, "\"%s\":[", name);
    const char *p = strstr(obj, pat);
    if (!p) return NAN;
    p = strchr(p + strlen(pat), ',');
    return p ? strtod(p + 1, NULL) : NAN;
}

/* Poll until resource `name` in use on node id equals want. */
static int wait_res(loom_client *c, int id, const char *name, double want, int timeout_ms)
{
    int64_t end = t_now_ms() + timeout_ms;
    for (;;) {
        double v = res_used(c, id, name);
        if (v == want) return 1;
        if (t_now_ms() >= end) {
            fprintf(stderr, "  node %d uses %g of '%s', want %g\n", id, v, name, want);
            return 0;
        }
        usleep(20000);
    }
}


static int near(double a, double b) { return a == a && b == b && (a - b < 1e-6 && b - a < 1e-6); }

/* Poll until node id's field equals want (id 0: the sum over all nodes). */
static int wait_num(loom_client *c, int id, const char *key, double want, int timeout_ms)
{
    int64_t end = t_now_ms() + timeout_ms;
    for (;;) {
        double v = id ? node_num(c, id, key) : sum_num(c, key);
        if (near(v, want)) return 1;
        if (t_now_ms() >= end) {
            fprintf(stderr, "  node %d %s = %g, want %g\n", id, key, v, want);
            return 0;
        }
        usleep(20000);
    }
}

/* ---- running tasks -------------------------------------------------------- */

static loom_task_opts topts(void)
{
    loom_task_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

/* Run fn (no argument, or one integer when x >= 0) and get its integer result;
 * INT64_MIN on failure with the code in *rc. */
static int64_t run_i64(loom_client *c, const char *fn, int64_t x, const loom_task_opts *o, int *rc_out)
{
    t_int a = t_i64(x < 0 ? 0 : x);
    loom_arg arg = t_arg_i64(&a);
    loom_ref r;
    int64_t out = INT64_MIN;
    int rc = loom_submit(c, lib, fn, x >= 0 ? &arg : NULL, x >= 0 ? 1 : 0, o, &r);
    if (!rc) {
        rc = t_get_i64(c, r, WAIT_MS, &out);
        loom_release(c, r);
    }
    if (rc) out = INT64_MIN;
    if (rc_out) *rc_out = rc;
    return out;
}

/* The node a node_id task ran on (-code when it failed). */
static int64_t where_task(loom_client *c, const loom_task_opts *o)
{
    int rc;
    int64_t n = run_i64(c, "node_id", -1, o, &rc);
    if (rc) {
        fprintf(stderr, "  node_id failed: %s: %s\n", loom_strerror(rc), loom_last_error(c));
        return rc;
    }
    return n;
}

/* A msgpack string result into out; the get's code. */
static int get_str(loom_client *c, loom_ref r, char *out, size_t outlen)
{
    loom_value *v = NULL;
    out[0] = 0;
    int rc = loom_get(c, r, WAIT_MS, &v);
    if (rc) return rc;
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    const char *s;
    size_t n;
    if (loom_unpack_str(&u, &s, &n)) rc = LOOM_EPROTO;
    else snprintf(out, outlen, "%.*s", (int)n, s);
    loom_value_release(&v);
    return rc;
}

/* gpu_ids() under o: "NODE:CUDA_VISIBLE_DEVICES" into out; the code. */
static int run_gpu_ids(loom_client *c, const loom_task_opts *o, char *out, size_t outlen)
{
    loom_ref r;
    int rc = loom_submit(c, lib, "gpu_ids", NULL, 0, o, &r);
    if (rc) return rc;
    rc = get_str(c, r, out, outlen);
    loom_release(c, r);
    if (rc) fprintf(stderr, "  gpu_ids failed: %s: %s\n", loom_strerror(rc), loom_last_error(c));
    return rc;
}

/* Submit under o and expect the task to fail with LOOM_EINFEASIBLE at once,
 * naming `needle` in the reason. */
static void expect_infeasible(loom_client *c, const char *what, const loom_task_opts *o, const char *needle)
{
    int64_t t0 = t_now_ms();
    loom_ref r;
    int rc = loom_submit(c, lib, "node_id", NULL, 0, o, &r);
    if (rc == 0) {
        loom_value *v = NULL;
        rc = loom_get(c, r, 5000, &v);
        if (!rc) loom_value_release(&v);
        loom_release(c, r);
    }
    int64_t ms = t_now_ms() - t0;
    loom_test_checks++;
    if (rc != LOOM_EINFEASIBLE) {
        fprintf(stderr, "%s:%d: %s: got %d (%s), want LOOM_EINFEASIBLE; last error '%s'\n", __FILE__, __LINE__,
                what, rc, loom_strerror(rc), loom_last_error(c));
        loom_test_failures++;
        return;
    }
    printf("  %s: infeasible in %lld ms: %s\n", what, (long long)ms, loom_last_error(c));
    CHECK(ms < 3000);
    CHECK_ERR_HAS(c, needle);
}

/* ---- the cluster ---------------------------------------------------------- */

static loom_client *start_cluster(void)
{
    t_setup_env();
    static const loom_node_spec specs[3] = {
        {.num_gpus = 2, .gpu_memory = (uint64_t)16 << 30, .resources = NULL, .labels = "zone=a"},
        {.num_gpus = 0, .gpu_memory = 0, .resources = "nvlink=1,licence=2", .labels = "zone=b"},
        {.num_gpus = 1, .gpu_memory = (uint64_t)8 << 30, .resources = NULL, .labels = "zone=b"},
    };
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.num_nodes = 3;
    o.num_cpus = 2;
    o.state_dir = state_dir;
    o.store_bytes = (uint64_t)256 << 20;
    o.nodes = specs;
    loom_client *c = NULL;
    int rc = loom_connect("local", &o, &c);
    if (rc) fprintf(stderr, "loom_connect(local): %s\n", loom_strerror(rc));
    REQUIRE(rc == LOOM_OK && c);
    return c;
}

/* Node ids must be 1, 2, 3 in the order of the specs: everything below
 * relies on it. */
static void check_nodes(loom_client *c)
{
    char *s = NULL, obj[3][4096];
    int ok = 0;
    for (int tries = 0; tries < 250 && !ok; tries++) {
        free(s);
        s = status(c);
        ok = 1;
        for (int id = 1; id <= 3; id++) {
            node_obj(s, id, obj[id - 1], sizeof obj[0]);
            ok &= t_has(obj[id - 1], "\"state\":\"alive\"");
        }
        if (!ok) usleep(20000);
    }
    int good = ok && num_after(obj[0], "gpus") == 2 && num_after(obj[1], "gpus") == 0 &&
               num_after(obj[2], "gpus") == 1 && num_after(obj[0], "gpu_memory") == (double)(16 * GiB) &&
               num_after(obj[2], "gpu_memory") == (double)(8 * GiB) && num_after(obj[0], "cpus") == 2 &&
               t_has(obj[0], "\"zone\":\"a\"") && t_has(obj[1], "\"zone\":\"b\"") &&
               t_has(obj[2], "\"zone\":\"b\"") && t_has(obj[1], "\"nvlink\":[1") &&
               t_has(obj[1], "\"licence\":[2") && !t_has(obj[0], "nvlink") && !t_has(obj[2], "nvlink");
    if (!good) {
        fprintf(stderr, "the local cluster's nodes are not ids 1,2,3 with the specs given (in order):\n%s\n",
                s ? s : "(no status)");
        free(s);
        exit(1);
    }
    free(s);
    CHECK(good);
}

/* ---- GPUs ----------------------------------------------------------------- */

static void test_gpus(loom_client *c)
{
    printf("GPU placement\n");
    loom_task_opts o = topts();
    char out[256];
    /* one GPU: node 1 or 3, one device; spread them to see both nodes */
    int seen[4] = {0}, ok = 1;
    o.num_gpus = 1;
    for (int i = 0; i < 6; i++) {
        o.strategy = i % 2 ? LOOM_SCHED_SPREAD : LOOM_SCHED_DEFAULT;
        int rc = run_gpu_ids(c, &o, out, sizeof out);
        CHECK_RC(rc, 0);
        int node = atoi(out);
        const char *dev = strchr(out, ':');
        int one_dev = dev && strlen(dev + 1) == 1 && dev[1] >= '0' && dev[1] <= '1';
        if (node == 3 && dev && strcmp(dev + 1, "0")) one_dev = 0;
        if (!((node == 1 || node == 3) && one_dev)) {
            fprintf(stderr, "  num_gpus 1 ran as '%s'\n", out);
            ok = 0;
        }
        if (node >= 1 && node <= 3) seen[node]++;
    }
    CHECK(ok);
    printf("  num_gpus 1: node 1 x%d, node 3 x%d\n", seen[1], seen[3]);
    CHECK(seen[2] == 0);
    /* two GPUs: only node 1 has them */
    o = topts();
    o.num_gpus = 2;
    CHECK_RC(run_gpu_ids(c, &o, out, sizeof out), 0);
    if (strcmp(out, "1:0,1")) fprintf(stderr, "  num_gpus 2 ran as '%s'\n", out);
    CHECK(!strcmp(out, "1:0,1"));
    /* no GPU asked: the task sees none */
    o = topts();
    CHECK_RC(run_gpu_ids(c, &o, out, sizeof out), 0);
    const char *cvd = strchr(out, ':');
    if (!(cvd && (!strcmp(cvd, ":") || !strcmp(cvd, ":(unset)"))))
        fprintf(stderr, "  a CPU task sees CUDA_VISIBLE_DEVICES '%s'\n", out);
    CHECK(cvd && (!strcmp(cvd, ":") || !strcmp(cvd, ":(unset)")));
    /* three GPUs: no node has them */
    o = topts();
    o.num_gpus = 3;
    o.name = "three-gpus";
    expect_infeasible(c, "num_gpus 3", &o, "GPU");
    char *s = status(c);
    const char *inf = s ? strstr(s, "\"infeasible\"") : NULL;
    if (!t_has(inf, "three-gpus")) fprintf(stderr, "  status lacks the infeasible task: %s\n", s ? s : "");
    CHECK(t_has(inf, "three-gpus"));
    free(s);
    /* 12 GiB of device memory: only node 1's GPUs have it */
    o = topts();
    o.num_gpus = 1;
    o.gpu_memory = 12 * GiB;
    ok = 1;
    for (int i = 0; i < 4; i++) {
        o.strategy = i % 2 ? LOOM_SCHED_SPREAD : LOOM_SCHED_DEFAULT;
        CHECK_RC(run_gpu_ids(c, &o, out, sizeof out), 0);
        if (strncmp(out, "1:", 2)) {
            fprintf(stderr, "  gpu_memory 12 GiB ran as '%s'\n", out);
            ok = 0;
        }
    }
    CHECK(ok);
    o.gpu_memory = 20 * GiB;
    o.name = "too-much-gpu-memory";
    o.strategy = 0;
    expect_infeasible(c, "gpu_memory 20 GiB", &o, "memory");
    CHECK(wait_num(c, 0, "gpus_used", 0, 5000));
}

static int actor_where(loom_client *c, loom_actor a, char *out, size_t outlen)
{
    loom_ref r;
    int rc = loom_actor_call(c, a, "where", NULL, 0, &r);
    if (rc) return rc;
    rc = get_str(c, r, out, outlen);
    loom_release(c, r);
    return rc;
}

/* Four tasks of half a GPU on node 1 share its two devices; a fifth waits.
 * Command tasks show the CUDA_VISIBLE_DEVICES they got while they hold it. */
static void test_fractional(loom_client *c)
{
    printf("fractional GPUs\n");
    enum { N = 5, HOLD_MS = 1500 };
    loom_graph *g = NULL;
    REQUIRE(loom_graph_new(&g) == 0);
    const char *argv[] = {"sh", "-c", "echo \"$LOOM_NODE_ID:$CUDA_VISIBLE_DEVICES\" > cvd.txt; sleep 1.5"};
    const char *outs[] = {"cvd.txt"};
    loom_command cmd = {argv, 3, NULL, 0, NULL, outs, 1};
    loom_task_opts o = topts();
    o.num_gpus = 0.5;
    o.num_cpus = 0.25;
    o.strategy = LOOM_SCHED_NODE;
    o.node = 1;
    int nodes[N];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "half-%d", i);
        o.name = name;
        nodes[i] = loom_graph_command(g, &cmd, &o);
        REQUIRE(nodes[i] >= 0);
    }
    loom_ref status_ref[N], cvd_ref[N];
    for (int i = 0; i < N; i++) {
        REQUIRE(loom_graph_ref(g, nodes[i], 0, &status_ref[i]) == 0);
        REQUIRE(loom_graph_ref(g, nodes[i], 1, &cvd_ref[i]) == 0);
    }
    char job[LOOM_JOB_ID_LEN];
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_graph_submit(c, g, NULL, job), 0);
    loom_graph_destroy(&g);
    /* while they run: both GPUs of node 1 fully used, one task still queued */
    int held = wait_num(c, 1, "gpus_used", 2.0, 3000);
    CHECK(held);
    char *js = NULL;
    int running = 0, queued = 0;
    if (loom_job_json(c, job, &js) == 0) {
        for (const char *p = js; (p = strstr(p, "\"state\":\"running\"")); p++) running++;
        for (const char *p = js; (p = strstr(p, "\"state\":\"queued\"")); p++) queued++;
    }
    printf("  while held: %d running, %d queued (node 1 gpus_used 2)\n", running, queued);
    if (running != 4 || queued != 1) fprintf(stderr, "  job: %s\n", js ? js : "");
    CHECK(running == 4 && queued == 1);
    free(js);
    /* the devices they saw: each of 0 and 1 twice among the first four */
    char cvd[N][64];
    int64_t done_ms[N];
    int per_dev[2] = {0, 0}, bad = 0;
    for (int i = 0; i < N; i++) {
        loom_value *v = NULL;
        int rc = loom_get(c, cvd_ref[i], WAIT_MS, &v);
        done_ms[i] = t_now_ms() - t0;
        CHECK_RC(rc, 0);
        if (rc) {
            fprintf(stderr, "  half-%d: %s\n", i, loom_last_error(c));
            cvd[i][0] = 0;
            continue;
        }
        snprintf(cvd[i], sizeof cvd[i], "%.*s", (int)strcspn(loom_value_data(v), "\n"),
                 (const char *)loom_value_data(v));
        loom_value_release(&v);
        if (!strcmp(cvd[i], "1:0")) per_dev[0]++;
        else if (!strcmp(cvd[i], "1:1")) per_dev[1]++;
        else bad++;
    }
    printf("  seen: %s %s %s %s %s; done at %lld %lld %lld %lld %lld ms\n", cvd[0], cvd[1], cvd[2], cvd[3],
           cvd[4], (long long)done_ms[0], (long long)done_ms[1], (long long)done_ms[2], (long long)done_ms[3],
           (long long)done_ms[4]);
    CHECK(!bad && per_dev[0] + per_dev[1] == N && per_dev[0] >= 2 && per_dev[1] >= 2);
    /* the fifth ended only after one of the first four ended and freed its share */
    CHECK(done_ms[4] >= 2 * HOLD_MS - 100);
    /* the first four really ran together: node 1's daemon has one executor
     * per CPU (2), so 0.25-CPU tasks the head counts as running wait in the
     * daemon's queue, holding their GPU share (known bug) */
    int64_t first4 = 0;
    for (int i = 0; i < 4; i++) first4 = done_ms[i] > first4 ? done_ms[i] : first4;
    CHECK(first4 < HOLD_MS + 1200);
    for (int i = 0; i < N; i++) {
        loom_release(c, status_ref[i]);
        loom_release(c, cvd_ref[i]);
    }
    CHECK(wait_num(c, 1, "gpus_used", 0, 5000));

    /* the same with actors (a process each): four half-GPU actors pinned to
     * node 1 live at once, two per device; a fifth waits for a share */
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.res.num_gpus = 0.5;
    ao.res.strategy = LOOM_SCHED_NODE;
    ao.res.node = 1;
    loom_actor act[N];
    for (int i = 0; i < N; i++) CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &act[i]), 0);
    int dev_of[N], per[2] = {0, 0};
    bad = 0;
    for (int i = 0; i < 4; i++) {
        char w[256] = "";
        CHECK_RC(loom_actor_wait_ready(c, act[i], WAIT_MS), 0);
        CHECK_RC(actor_where(c, act[i], w, sizeof w), 0);
        const char *d = strrchr(w, ':');
        dev_of[i] = atoi(w) == 1 && d && (!strcmp(d, ":0") || !strcmp(d, ":1")) ? d[1] - '0' : -1;
        if (dev_of[i] < 0) {
            fprintf(stderr, "  half-GPU actor %d: '%s'\n", i, w);
            bad++;
        } else {
            per[dev_of[i]]++;
        }
    }
    printf("  half-GPU actors: %d on device 0, %d on device 1\n", per[0], per[1]);
    CHECK(!bad && per[0] == 2 && per[1] == 2);
    CHECK(wait_num(c, 1, "gpus_used", 2, 2000));
    CHECK_RC(loom_actor_wait_ready(c, act[4], 500), LOOM_ETIMEOUT);
    CHECK_RC(loom_actor_kill(c, act[1]), 0);
    CHECK_RC(loom_actor_wait_ready(c, act[4], WAIT_MS), 0);
    char w[256] = "";
    CHECK_RC(actor_where(c, act[4], w, sizeof w), 0);
    char want[16];
    snprintf(want, sizeof want, "1:%d", dev_of[1]);
    printf("  fifth actor after one was killed: %s (the freed share was %s)\n", w, want);
    CHECK(!strncmp(w, want, 2) && dev_of[1] >= 0 && w[strlen(w) - 1] == want[2]);
    for (int i = 0; i < N; i++)
        if (i != 1) CHECK_RC(loom_actor_kill(c, act[i]), 0);
    CHECK(wait_num(c, 1, "gpus_used", 0, 5000));
}

/* ---- custom resources and labels ------------------------------------------ */

static void test_resources(loom_client *c)
{
    printf("custom resources\n");
    loom_resource nv = {"nvlink", 1};
    loom_task_opts o = topts();
    o.resources = &nv;
    o.nresources = 1;
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        o.strategy = i == 1 ? LOOM_SCHED_SPREAD : LOOM_SCHED_DEFAULT;
        int64_t n = where_task(c, &o);
        if (n != 2) {
            fprintf(stderr, "  nvlink task ran on node %lld\n", (long long)n);
            ok = 0;
        }
    }
    CHECK(ok);
    /* two at once: the one nvlink lets one run at a time */
    int64_t t0 = t_now_ms();
    loom_ref r[2];
    t_int ms = t_i64(500);
    loom_arg arg = t_arg_i64(&ms);
    for (int i = 0; i < 2; i++) CHECK_RC(loom_submit(c, lib, "sleep_ms", &arg, 1, &o, &r[i]), 0);
    CHECK(wait_res(c, 2, "nvlink", 1, 2000));
    for (int i = 0; i < 2; i++) {
        int64_t x;
        CHECK_RC(t_get_i64(c, r[i], WAIT_MS, &x), 0);
        loom_release(c, r[i]);
    }
    int64_t el = t_now_ms() - t0;
    printf("  two nvlink tasks of 500 ms: %lld ms\n", (long long)el);
    CHECK(el >= 950);
    /* more licences than any node has, and a resource nobody has */
    loom_resource lic = {"licence", 3}, unk = {"quantum", 1};
    o = topts();
    o.resources = &lic;
    o.nresources = 1;
    expect_infeasible(c, "licence 3", &o, "licence");
    lic.amount = 2;
    CHECK(where_task(c, &o) == 2);
    o.resources = &unk;
    expect_infeasible(c, "unknown resource", &o, "quantum");
}

static void test_labels(loom_client *c)
{
    printf("labels\n");
    loom_label zb = {"zone", "b"}, zc = {"zone", "c"}, za = {"zone", "a"};
    loom_task_opts o = topts();
    o.labels = &zb;
    o.nlabels = 1;
    o.strategy = LOOM_SCHED_SPREAD;
    int seen[4] = {0}, ok = 1;
    for (int i = 0; i < 6; i++) {
        int64_t n = where_task(c, &o);
        if (n != 2 && n != 3) ok = 0;
        else seen[n]++;
    }
    printf("  zone=b: node 2 x%d, node 3 x%d\n", seen[2], seen[3]);
    CHECK(ok);
    o.labels = &za;
    o.strategy = 0;
    CHECK(where_task(c, &o) == 1);
    o.labels = &zc;
    expect_infeasible(c, "zone=c", &o, "labels");
    /* labels and GPUs together: zone=b with a GPU is node 3 only */
    o.labels = &zb;
    o.num_gpus = 1;
    CHECK(where_task(c, &o) == 3);
}

/* ---- strategies ----------------------------------------------------------- */

static void test_strategies(loom_client *c)
{
    printf("strategies\n");
    CHECK(wait_num(c, 0, "cpus_used", 0, 5000));
    /* SPREAD: six 1-CPU tasks at once go to all three nodes, two each */
    loom_graph *g = NULL;
    REQUIRE(loom_graph_new(&g) == 0);
    loom_task_opts o = topts();
    o.strategy = LOOM_SCHED_SPREAD;
    t_int ms = t_i64(400);
    for (int i = 0; i < 6; i++) {
        int k = loom_graph_task(g, lib, "sleep_ms", &o);
        REQUIRE(k >= 0);
        CHECK_RC(loom_graph_arg_value(g, k, ms.b, ms.n), 0);
    }
    loom_ref last;
    REQUIRE(loom_graph_ref(g, 5, 0, &last) == 0);
    char job[LOOM_JOB_ID_LEN];
    CHECK_RC(loom_graph_submit(c, g, NULL, job), 0);
    loom_graph_destroy(&g);
    int64_t x;
    CHECK_RC(t_get_i64(c, last, WAIT_MS, &x), 0);
    char *js = NULL;
    CHECK_RC(loom_job_json(c, job, &js), 0);
    int64_t nodes[16];
    int n = t_json_ints(js, "node", nodes, 16), per[4] = {0};
    for (int i = 0; i < n && i < 16; i++)
        if (nodes[i] >= 1 && nodes[i] <= 3) per[nodes[i]]++;
    printf("  SPREAD x6: node 1 x%d, node 2 x%d, node 3 x%d\n", per[1], per[2], per[3]);
    if (!(per[1] == 2 && per[2] == 2 && per[3] == 2)) fprintf(stderr, "  job: %s\n", js ? js : "");
    CHECK(per[1] == 2 && per[2] == 2 && per[3] == 2);
    free(js);
    /* let the whole job end */
    CHECK(wait_num(c, 0, "cpus_used", 0, 5000));
    /* DEFAULT packs: two short tasks one after the other on an idle cluster */
    o = topts();
    int64_t a = where_task(c, &o), b = where_task(c, &o);
    printf("  DEFAULT x2: nodes %lld, %lld\n", (long long)a, (long long)b);
    CHECK(a >= 1 && a <= 3 && a == b);
    /* hard affinity */
    o.strategy = LOOM_SCHED_NODE;
    o.node = 3;
    CHECK(where_task(c, &o) == 3);
    o.node = 2;
    CHECK(where_task(c, &o) == 2);
    o.node = 99;
    o.name = "on-node-99";
    expect_infeasible(c, "hard affinity to node 99", &o, "node 99");
    /* hard affinity to a node that lacks the GPU asked for */
    o.node = 2;
    o.num_gpus = 1;
    o.name = "gpu-on-node-2";
    expect_infeasible(c, "hard affinity to node 2 with a GPU", &o, "GPU");
    /* soft affinity to a node that does not exist, or cannot hold it: runs elsewhere */
    o = topts();
    o.strategy = LOOM_SCHED_NODE;
    o.soft = 1;
    o.node = 99;
    int64_t w = where_task(c, &o);
    CHECK(w >= 1 && w <= 3);
    o.node = 2;
    o.num_gpus = 1;
    w = where_task(c, &o);
    CHECK(w == 1 || w == 3);
    /* soft affinity to a busy node: node 3 is full of sleepers */
    loom_task_opts pin = topts();
    pin.strategy = LOOM_SCHED_NODE;
    pin.node = 3;
    t_int long_ms = t_i64(2000);
    loom_arg larg = t_arg_i64(&long_ms);
    loom_ref sleepers[2];
    for (int i = 0; i < 2; i++) CHECK_RC(loom_submit(c, lib, "sleep_ms", &larg, 1, &pin, &sleepers[i]), 0);
    CHECK(wait_num(c, 3, "cpus_used", 2, 3000));
    o = topts();
    o.strategy = LOOM_SCHED_NODE;
    o.soft = 1;
    o.node = 3;
    int64_t t0 = t_now_ms();
    w = where_task(c, &o);
    int64_t el = t_now_ms() - t0;
    printf("  soft affinity to busy node 3: ran on node %lld in %lld ms\n", (long long)w, (long long)el);
    CHECK((w == 1 || w == 2) && el < 1500);
    /* while node 3 is busy, hard affinity to it waits its turn */
    o.soft = 0;
    t0 = t_now_ms();
    w = where_task(c, &o);
    el = t_now_ms() - t0;
    printf("  hard affinity to busy node 3: ran on node %lld after %lld ms\n", (long long)w, (long long)el);
    CHECK(w == 3 && el >= 1000);
    for (int i = 0; i < 2; i++) {
        CHECK_RC(t_get_i64(c, sleepers[i], WAIT_MS, &x), 0);
        loom_release(c, sleepers[i]);
    }
}

/* DEFAULT prefers the node holding most of a task's argument bytes. */
static void test_locality(loom_client *c)
{
    printf("data locality\n");
    size_t len = (size_t)4 << 20;
    char *big = malloc(len);
    REQUIRE(big);
    for (size_t i = 0; i < len; i++) big[i] = (char)(i * 7);
    loom_ref put, onnode[2];
    CHECK_RC(loom_put(c, big, len, &put), 0);
    free(big);
    /* copies of it made by echo on nodes 2 and 3 (new objects, each on one node) */
    loom_task_opts pin = topts();
    pin.strategy = LOOM_SCHED_NODE;
    loom_arg arg = loom_arg_ref(put);
    for (int i = 0; i < 2; i++) {
        pin.node = (uint32_t)(2 + i);
        CHECK_RC(loom_submit(c, lib, "echo", &arg, 1, &pin, &onnode[i]), 0);
        int rdy = 0;
        CHECK(loom_wait(c, &onnode[i], 1, 1, WAIT_MS, &rdy) == 1 && rdy);
    }
    loom_release(c, put);
    /* tasks reading each copy, default strategy, one after the other */
    loom_task_opts o = topts();
    for (int i = 0; i < 2; i++) {
        int ok = 1;
        for (int k = 0; k < 3; k++) {
            loom_arg a = loom_arg_ref(onnode[i]);
            loom_ref r;
            int64_t n = INT64_MIN;
            CHECK_RC(loom_submit(c, lib, "node_id", &a, 1, &o, &r), 0);
            CHECK_RC(t_get_i64(c, r, WAIT_MS, &n), 0);
            loom_release(c, r);
            if (n != 2 + i) {
                fprintf(stderr, "  a reader of the 4 MiB object on node %d ran on node %lld\n", 2 + i, (long long)n);
                ok = 0;
            }
        }
        CHECK(ok);
    }
    /* a reader that cannot run there (it wants a GPU) still runs, elsewhere */
    o.num_gpus = 1;
    loom_arg a = loom_arg_ref(onnode[0]);
    loom_ref r;
    int64_t n = INT64_MIN;
    CHECK_RC(loom_submit(c, lib, "node_id", &a, 1, &o, &r), 0);
    CHECK_RC(t_get_i64(c, r, WAIT_MS, &n), 0);
    loom_release(c, r);
    CHECK(n == 1 || n == 3);
    for (int i = 0; i < 2; i++) loom_release(c, onnode[i]);
}

/* ---- actors --------------------------------------------------------------- */

static void test_actors(loom_client *c)
{
    printf("actors with resources\n");
    CHECK(wait_num(c, 0, "gpus_used", 0, 5000));
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.res.num_gpus = 1;
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a), 0);
    CHECK_RC(loom_actor_wait_ready(c, a, WAIT_MS), 0);
    char w[256] = "";
    CHECK_RC(actor_where(c, a, w, sizeof w), 0);
    int node = atoi(w);
    const char *dev = strrchr(w, ':');
    printf("  GPU actor: %s\n", w);
    CHECK((node == 1 || node == 3) && dev && strlen(dev + 1) == 1 && (dev[1] == '0' || dev[1] == '1'));
    if (node == 1 || node == 3) {
        CHECK(wait_num(c, node, "gpus_used", 1, 3000));
        CHECK(wait_num(c, 0, "gpus_used", 1, 100));
    }
    CHECK_RC(loom_actor_kill(c, a), 0);
    if (node == 1 || node == 3) CHECK(wait_num(c, node, "gpus_used", 0, 5000));
    /* an actor on labels and a custom resource */
    memset(&ao, 0, sizeof ao);
    loom_resource nv = {"nvlink", 1};
    ao.res.resources = &nv;
    ao.res.nresources = 1;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a), 0);
    CHECK_RC(actor_where(c, a, w, sizeof w), 0);
    CHECK(atoi(w) == 2);
    CHECK(wait_res(c, 2, "nvlink", 1, 2000));
    /* while it holds nvlink, a task wanting it waits */
    loom_task_opts o = topts();
    o.resources = &nv;
    o.nresources = 1;
    loom_ref r;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), 0);
    int rdy = 0;
    CHECK_RC(loom_wait(c, &r, 1, 1, 500, &rdy), 0);
    CHECK(!rdy);
    CHECK_RC(loom_actor_kill(c, a), 0);
    int64_t n = 0;
    CHECK_RC(t_get_i64(c, r, WAIT_MS, &n), 0);
    CHECK(n == 2);
    loom_release(c, r);
    /* an actor no node can host */
    memset(&ao, 0, sizeof ao);
    ao.res.num_gpus = 4;
    int rc = loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a);
    if (rc == 0) rc = loom_actor_wait_ready(c, a, 5000);
    if (rc != LOOM_EINFEASIBLE) fprintf(stderr, "  actor wanting 4 GPUs: %s: %s\n", loom_strerror(rc), loom_last_error(c));
    CHECK(rc == LOOM_EINFEASIBLE);
}

/* ---- placement groups ----------------------------------------------------- */

/* The nodes of a group's bundles from loom_pg_json; the count of bundles. */
static int pg_nodes(loom_client *c, loom_pg pg, int64_t *nodes, int max, char *state, size_t slen)
{
    char *js = NULL;
    int rc = loom_pg_json(c, pg, &js);
    if (rc) {
        fprintf(stderr, "  loom_pg_json: %s: %s\n", loom_strerror(rc), loom_last_error(c));
        return -1;
    }
    int n = t_json_ints(js, "node", nodes, max);
    if (state) {
        state[0] = 0;
        const char *p = strstr(js, "\"state\":\"");
        if (p) snprintf(state, slen, "%.*s", (int)strcspn(p + 9, "\""), p + 9);
    }
    free(js);
    return n;
}

static void test_pgs(loom_client *c)
{
    printf("placement groups\n");
    CHECK(wait_num(c, 0, "cpus_used", 0, 5000));
    int64_t nodes[8];
    char state[32];
    /* STRICT_SPREAD of 3: three distinct nodes; tasks in bundle i run there */
    loom_bundle one[4];
    memset(one, 0, sizeof one);
    for (int i = 0; i < 4; i++) one[i].num_cpus = 1;
    loom_pg ss;
    CHECK_RC(loom_pg_create(c, one, 3, LOOM_PG_STRICT_SPREAD, "ss3", &ss), 0);
    CHECK_RC(loom_pg_wait(c, ss, 10000), 0);
    int n = pg_nodes(c, ss, nodes, 8, state, sizeof state);
    printf("  STRICT_SPREAD x3: nodes %lld %lld %lld (%s)\n", (long long)nodes[0], (long long)nodes[1],
           (long long)nodes[2], state);
    CHECK(n == 3 && !strcmp(state, "created"));
    int distinct = n == 3 && nodes[0] != nodes[1] && nodes[1] != nodes[2] && nodes[0] != nodes[2];
    for (int i = 0; i < n && i < 3; i++) distinct &= nodes[i] >= 1 && nodes[i] <= 3;
    CHECK(distinct);
    CHECK(wait_num(c, 0, "cpus_used", 3, 2000));
    loom_task_opts o = topts();
    o.pg = &ss;
    int ok = 1;
    for (int b = 0; b < 3 && n == 3; b++) {
        o.bundle = b;
        int64_t w = where_task(c, &o);
        if (w != nodes[b]) {
            fprintf(stderr, "  a task of bundle %d ran on node %lld, the bundle is on %lld\n", b, (long long)w,
                    (long long)nodes[b]);
            ok = 0;
        }
    }
    CHECK(ok);
    o.bundle = LOOM_ANY_BUNDLE;
    int64_t w = where_task(c, &o);
    CHECK(w >= 1 && w <= 3);
    /* a task asking more than its bundle holds */
    o.bundle = 0;
    o.num_cpus = 2;
    o.name = "too-big-for-bundle";
    expect_infeasible(c, "2 CPUs in a 1-CPU bundle", &o, "bundle");
    o.num_cpus = 0;
    o.bundle = 7;
    o.name = "no-such-bundle";
    expect_infeasible(c, "bundle 7 of 3", &o, "bundle");
    CHECK_RC(loom_pg_remove(c, ss), 0);
    CHECK(wait_num(c, 0, "cpus_used", 0, 3000));
    /* a task in a removed group: refused at submit, or infeasible */
    o.bundle = 0;
    o.name = "in-removed-group";
    {
        loom_ref r;
        int rc = loom_submit(c, lib, "node_id", NULL, 0, &o, &r);
        if (rc == 0) {
            loom_value *v = NULL;
            rc = loom_get(c, r, 5000, &v);
            loom_release(c, r);
        }
        printf("  task in a removed group: %s: %s\n", loom_strerror(rc), loom_last_error(c));
        CHECK(rc == LOOM_ENOTFOUND || rc == LOOM_EINFEASIBLE);
        CHECK_ERR_HAS(c, "placement group");
    }

    /* STRICT_PACK of 2: one node */
    loom_pg sp;
    CHECK_RC(loom_pg_create(c, one, 2, LOOM_PG_STRICT_PACK, "sp2", &sp), 0);
    CHECK_RC(loom_pg_wait(c, sp, 10000), 0);
    n = pg_nodes(c, sp, nodes, 8, NULL, 0);
    printf("  STRICT_PACK x2: nodes %lld %lld\n", (long long)nodes[0], (long long)nodes[1]);
    CHECK(n == 2 && nodes[0] == nodes[1] && nodes[0] >= 1 && nodes[0] <= 3);
    if (n == 2) CHECK(wait_num(c, (int)nodes[0], "cpus_used", 2, 2000));
    CHECK_RC(loom_pg_remove(c, sp), 0);
    /* STRICT_SPREAD of 4 on 3 nodes: infeasible, with a reason */
    loom_pg s4;
    int64_t t0 = t_now_ms();
    int rc = loom_pg_create(c, one, 4, LOOM_PG_STRICT_SPREAD, "ss4", &s4);
    if (rc == 0) rc = loom_pg_wait(c, s4, 5000);
    printf("  STRICT_SPREAD x4: %s in %lld ms: %s\n", loom_strerror(rc), (long long)(t_now_ms() - t0),
           loom_last_error(c));
    CHECK(rc == LOOM_EINFEASIBLE);
    CHECK(strlen(loom_last_error(c)) > strlen("the placement group is infeasible: "));
    CHECK(t_now_ms() - t0 < 3000);
    /* STRICT_PACK needing 3 CPUs on 2-CPU nodes: infeasible */
    loom_bundle two[2];
    memset(two, 0, sizeof two);
    two[0].num_cpus = 2;
    two[1].num_cpus = 1;
    rc = loom_pg_create(c, two, 2, LOOM_PG_STRICT_PACK, "sp3cpu", &s4);
    if (rc == 0) rc = loom_pg_wait(c, s4, 5000);
    CHECK(rc == LOOM_EINFEASIBLE);
    CHECK(wait_num(c, 0, "cpus_used", 0, 3000));

    /* PACK that does not fit now: pending, nothing reserved, placed when room frees */
    loom_bundle big[3];
    memset(big, 0, sizeof big);
    for (int i = 0; i < 3; i++) big[i].num_cpus = 1.5;
    loom_pg filler, later;
    CHECK_RC(loom_pg_create(c, big, 3, LOOM_PG_STRICT_SPREAD, "filler", &filler), 0);
    CHECK_RC(loom_pg_wait(c, filler, 10000), 0);
    CHECK(wait_num(c, 0, "cpus_used", 4.5, 2000));
    loom_bundle mixed[2];
    memset(mixed, 0, sizeof mixed);
    mixed[0].num_cpus = 0.5;   /* would fit now on its own */
    mixed[1].num_cpus = 1;     /* does not */
    CHECK_RC(loom_pg_create(c, mixed, 2, LOOM_PG_PACK, "later", &later), 0);
    rc = loom_pg_wait(c, later, 500);
    CHECK(rc == LOOM_ETIMEOUT);
    pg_nodes(c, later, nodes, 8, state, sizeof state);
    CHECK(!strcmp(state, "pending"));
    double used = sum_num(c, "cpus_used");
    if (!near(used, 4.5)) dump_status(c, "pending PACK group reserved part of itself");
    CHECK(near(used, 4.5));
    CHECK_RC(loom_pg_remove(c, filler), 0);
    t0 = t_now_ms();
    CHECK_RC(loom_pg_wait(c, later, 5000), 0);
    printf("  pending PACK placed %lld ms after the filler was removed\n", (long long)(t_now_ms() - t0));
    n = pg_nodes(c, later, nodes, 8, state, sizeof state);
    CHECK(n == 2 && !strcmp(state, "created"));
    CHECK(wait_num(c, 0, "cpus_used", 1.5, 2000));
    CHECK_RC(loom_pg_remove(c, later), 0);
    CHECK(wait_num(c, 0, "cpus_used", 0, 3000));
    CHECK_RC(loom_pg_wait(c, later, 1000), LOOM_ENOTFOUND);

    /* a bundle with nvlink goes to node 2; an actor in it lives there */
    loom_resource nv = {"nvlink", 1};
    loom_bundle withnv[2];
    memset(withnv, 0, sizeof withnv);
    withnv[0].num_cpus = 1;
    withnv[0].resources = &nv;
    withnv[0].nresources = 1;
    withnv[1].num_cpus = 1;
    loom_pg gnv;
    CHECK_RC(loom_pg_create(c, withnv, 2, LOOM_PG_SPREAD, "nv", &gnv), 0);
    CHECK_RC(loom_pg_wait(c, gnv, 10000), 0);
    n = pg_nodes(c, gnv, nodes, 8, NULL, 0);
    printf("  SPREAD {nvlink}, {cpu}: nodes %lld %lld\n", (long long)nodes[0], (long long)nodes[1]);
    CHECK(n == 2 && nodes[0] == 2 && nodes[1] != 2);
    CHECK(wait_res(c, 2, "nvlink", 1, 2000));
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.res.pg = &gnv;
    ao.res.bundle = 0;
    loom_actor a0, a1;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a0), 0);
    ao.res.bundle = 1;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a1), 0);
    char wh[256];
    CHECK_RC(actor_where(c, a0, wh, sizeof wh), 0);
    printf("  actor in bundle 0: %s\n", wh);
    CHECK(atoi(wh) == 2);
    CHECK_RC(actor_where(c, a1, wh, sizeof wh), 0);
    CHECK(n == 2 && atoi(wh) == nodes[1]);
    /* a task of bundle 0 wanting nvlink: the bundle holds it */
    o = topts();
    o.pg = &gnv;
    o.bundle = 0;
    o.resources = &nv;
    o.nresources = 1;
    CHECK(where_task(c, &o) == 2);
    /* removing the group frees its CPUs and kills its actors */
    CHECK_RC(loom_pg_remove(c, gnv), 0);
    CHECK(wait_num(c, 0, "cpus_used", 0, 3000));
    CHECK(wait_res(c, 2, "nvlink", 0, 3000));
    loom_ref r;
    loom_value *v = NULL;
    CHECK_RC(loom_actor_call(c, a0, "get", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, WAIT_MS, &v), LOOM_EACTOR);
    printf("  call after the group's removal: %s\n", loom_last_error(c));
    CHECK_RC(loom_actor_call(c, a1, "get", NULL, 0, &r), 0);
    CHECK_RC(loom_get(c, r, WAIT_MS, &v), LOOM_EACTOR);

    /* GPU bundles: a half-GPU bundle, its task sees the device */
    loom_bundle gb;
    memset(&gb, 0, sizeof gb);
    gb.num_cpus = 1;
    gb.num_gpus = 1;
    gb.gpu_memory = 12 * GiB;
    loom_pg gpg;
    CHECK_RC(loom_pg_create(c, &gb, 1, LOOM_PG_PACK, "gpu", &gpg), 0);
    CHECK_RC(loom_pg_wait(c, gpg, 10000), 0);
    n = pg_nodes(c, gpg, nodes, 8, NULL, 0);
    CHECK(n == 1 && nodes[0] == 1);
    CHECK(wait_num(c, 1, "gpus_used", 1, 2000));
    o = topts();
    o.pg = &gpg;
    o.bundle = 0;
    o.num_gpus = 1;
    char out[128];
    CHECK_RC(run_gpu_ids(c, &o, out, sizeof out), 0);
    printf("  task in a GPU bundle: %s\n", out);
    CHECK(!strcmp(out, "1:0") || !strcmp(out, "1:1"));
    CHECK_RC(loom_pg_remove(c, gpg), 0);
    CHECK(wait_num(c, 1, "gpus_used", 0, 3000));
}

/* ---- bad input ------------------------------------------------------------ */

static void test_bad_input(loom_client *c)
{
    printf("bad input\n");
    loom_ref r;
    loom_task_opts o = topts();
    o.num_gpus = 1.5;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    printf("  num_gpus 1.5: last error '%s'\n", loom_last_error(c));
    /* loom_submit keeps an older failure's message (known bug) */
    CHECK_ERR_HAS(c, "num_gpus");
    o.num_gpus = -1;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    o = topts();
    o.gpu_memory = GiB;   /* device memory without a GPU */
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    loom_resource neg = {"nvlink", -1};
    o = topts();
    o.resources = &neg;
    o.nresources = 1;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    loom_resource noname = {"", 1};
    o.resources = &noname;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    o = topts();
    o.num_cpus = -2;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    o = topts();
    o.strategy = 7;
    CHECK_RC(loom_submit(c, lib, "node_id", NULL, 0, &o, &r), LOOM_EINVAL);
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.res.num_gpus = 2.5;
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a), LOOM_EINVAL);
    loom_bundle b;
    memset(&b, 0, sizeof b);
    b.num_cpus = 1;
    loom_pg pg;
    CHECK_RC(loom_pg_create(c, &b, 0, LOOM_PG_PACK, "empty", &pg), LOOM_EINVAL);
    CHECK_RC(loom_pg_create(c, &b, 1, 9, "badstrategy", &pg), LOOM_EINVAL);
    /* bad amounts in a bundle: the client sends them, the head's decoder
     * rejects the message and answers with request id 0, so the client waits
     * 30 s and says LOOM_ECONN (known bug) */
    {
        b.num_cpus = -1;
        int64_t t0 = t_now_ms();
        CHECK_RC(loom_pg_create(c, &b, 1, LOOM_PG_PACK, "negative", &pg), LOOM_EINVAL);
        b.num_cpus = 1;
        b.num_gpus = 1.5;
        CHECK_RC(loom_pg_create(c, &b, 1, LOOM_PG_PACK, "halfgpu", &pg), LOOM_EINVAL);
        CHECK(t_now_ms() - t0 < 2000);
    }
    /* nothing of that was reserved */
    CHECK(wait_num(c, 0, "cpus_used", 0, 3000));
}

int main(void)
{
    snprintf(state_dir, sizeof state_dir, "/tmp/loom-test-placement-%d", (int)getpid());
    int64_t t0 = t_now_ms();
    loom_client *c = start_cluster();
    check_nodes(c);
    lib = t_lib(c);
    printf("cluster up in %lld ms\n", (long long)(t_now_ms() - t0));
    struct {
        const char *name;
        void (*fn)(loom_client *);
    } parts[] = {
        {"gpus", test_gpus},         {"fractional", test_fractional}, {"resources", test_resources},
        {"labels", test_labels},     {"strategies", test_strategies}, {"locality", test_locality},
        {"actors", test_actors},     {"pgs", test_pgs},               {"bad_input", test_bad_input},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int64_t s = t_now_ms();
        int f0 = loom_test_failures;
        parts[i].fn(c);
        printf("  -> %s: %lld ms%s\n", parts[i].name, (long long)(t_now_ms() - s),
               loom_test_failures > f0 ? " (FAILED)" : "");
        if (loom_test_failures > f0) dump_status(c, parts[i].name);
    }
    loom_disconnect(&c);
    rmdir(state_dir);
    printf("total %lld ms\n", (long long)(t_now_ms() - t0));
    return TEST_DONE();
}
