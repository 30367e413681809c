/* tests/test_api_graph.c — task graphs on a real three-node local cluster
 * (three node daemons of one CPU each): the graph builder, a 10,000-task tree
 * reduction, tasks spread over the nodes and run in parallel, large objects
 * moving between nodes (and to the driver), detached jobs and the job
 * inspection calls. */
#include "test_api_util.h"

#define NODES 3

static void test_builder(loom_ref lib)
{
    loom_graph *g = NULL;
    CHECK_RC(loom_graph_new(NULL), LOOM_EINVAL);
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    CHECK(loom_graph_size(g) == 0);
    loom_task_opts o = {.name = "first"};
    int a = loom_graph_task(g, lib, "value", &o);
    int b = loom_graph_task(g, lib, "add", NULL);
    CHECK(a == 0 && b == 1 && loom_graph_size(g) == 2);
    CHECK(!strcmp(loom_graph_node_name(g, a), "first"));
    CHECK(!strcmp(loom_graph_node_name(g, b), "add"));
    CHECK(loom_graph_node_name(g, 2) == NULL && loom_graph_node_name(g, -1) == NULL);
    CHECK(loom_graph_find(g, "first") == a);
    CHECK(loom_graph_find(g, "add") == b);
    CHECK(loom_graph_find(g, "nope") == LOOM_ENOTFOUND);
    /* args: only earlier nodes, existing outputs */
    CHECK_RC(loom_graph_arg_node(g, b, a, 0), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, a, b, 0), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_node(g, b, b, 0), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_node(g, b, a, 1), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_node(g, 7, a, 0), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_value(g, 7, "x", 1), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_value(g, a, NULL, 1), LOOM_EINVAL);
    loom_ref r0, r1;
    CHECK_RC(loom_graph_ref(g, a, 0, &r0), LOOM_OK);
    CHECK_RC(loom_graph_ref(g, b, 0, &r1), LOOM_OK);
    CHECK(memcmp(r0.id, r1.id, LOOM_ID_LEN) != 0);
    CHECK_RC(loom_graph_ref(g, a, 1, &r0), LOOM_EINVAL);
    CHECK_RC(loom_graph_ref(g, 9, 0, &r0), LOOM_EINVAL);
    CHECK(loom_graph_task(g, lib, "bad name", NULL) == LOOM_EINVAL);
    CHECK(loom_graph_task(NULL, lib, "value", NULL) == LOOM_EINVAL);
    CHECK(loom_graph_size(g) == 2);
    loom_graph_destroy(&g);
    CHECK(g == NULL);
    loom_graph_destroy(&g);
}

static void test_small_graph(loom_client *c, loom_ref lib)
{
    /* (1 + 2) + echo-length("hello"), with a large inline value argument */
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    t_int one = t_i64(1), two = t_i64(2);
    int v1 = loom_graph_task(g, lib, "value", NULL);
    loom_graph_arg_value(g, v1, one.b, one.n);
    int v2 = loom_graph_task(g, lib, "value", NULL);
    loom_graph_arg_value(g, v2, two.b, two.n);
    int e = loom_graph_task(g, lib, "echo", NULL);
    loom_graph_arg_value(g, e, "hello", 5);
    int l = loom_graph_task(g, lib, "length", NULL);
    CHECK_RC(loom_graph_arg_node(g, l, e, 0), LOOM_OK);
    size_t bign = 200 * 1024;
    char *big = malloc(bign);
    memset(big, 'z', bign);
    int lb = loom_graph_task(g, lib, "length", NULL);
    CHECK_RC(loom_graph_arg_value(g, lb, big, bign), LOOM_OK);
    free(big);
    loom_task_opts so = {.name = "total"};
    int s = loom_graph_task(g, lib, "add", &so);
    CHECK_RC(loom_graph_arg_node(g, s, v1, 0), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, s, v2, 0), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, s, l, 0), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, s, lb, 0), LOOM_OK);
    char job[LOOM_JOB_ID_LEN] = "";
    loom_submit_opts sopt = {.job_name = "small"};
    CHECK_RC(loom_graph_submit(c, g, &sopt, job), LOOM_OK);
    CHECK(strlen(job) > 0);
    loom_ref root;
    loom_graph_ref(g, s, 0, &root);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, root, 30000, &x), LOOM_OK);
    CHECK(x == 3 + 5 + (int64_t)bign);
    /* the graph stays usable after submission, its refs valid */
    loom_ref er;
    loom_graph_ref(g, e, 0, &er);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, er, 30000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == 5 && !memcmp(loom_value_data(v), "hello", 5));
    loom_value_release(&v);
    /* job inspection */
    char *json = NULL;
    CHECK_RC(loom_job_json(c, job, &json), LOOM_OK);
    CHECK(t_has(json, "\"small\""));
    CHECK(t_has(json, "\"total\""));
    CHECK(t_has(json, "\"finished\""));
    free(json);
    loom_ref jr;
    CHECK_RC(loom_job_ref(c, job, "total", 0, &jr), LOOM_OK);
    CHECK(!memcmp(jr.id, root.id, LOOM_ID_LEN));
    CHECK_RC(loom_job_ref(c, job, "total", 1, &jr), LOOM_ENOTFOUND);
    CHECK_RC(loom_job_ref(c, job, "no-such-task", 0, &jr), LOOM_ENOTFOUND);
    CHECK_RC(loom_job_ref(c, "0000000000000000", "total", 0, &jr), LOOM_ENOTFOUND);
    CHECK_RC(loom_job_json(c, "0000000000000000", &json), LOOM_ENOTFOUND);
    /* a graph submitted twice is the same job (a client sends a submission
       again when its connection closed before the answer): nothing runs twice */
    char again[LOOM_JOB_ID_LEN];
    CHECK_RC(loom_graph_submit(c, g, NULL, again), LOOM_OK);
    CHECK(!strcmp(again, job));
    loom_graph_destroy(&g);

    /* a graph naming an unknown ref is refused whole: nothing of it runs */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    int ok = loom_graph_task(g, lib, "value", NULL);
    loom_graph_arg_value(g, ok, one.b, one.n);
    int bad = loom_graph_task(g, lib, "length", NULL);
    loom_ref bogus;
    memset(&bogus, 0x3c, sizeof bogus);
    loom_graph_arg_ref(g, bad, bogus);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_ENOTFOUND);
    loom_ref okr;
    loom_graph_ref(g, ok, 0, &okr);
    CHECK_RC(loom_get(c, okr, 2000, &v), LOOM_ENOTFOUND);
    loom_graph_destroy(&g);
}

static void test_tree_reduce(loom_client *c, loom_ref lib)
{
    const int leaves = 5001; /* 2 * leaves - 1 = 10,001 tasks */
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    int *level = malloc(sizeof(int) * (size_t)leaves);
    for (int i = 0; i < leaves; i++) {
        level[i] = loom_graph_task(g, lib, "value", NULL);
        REQUIRE(level[i] >= 0);
        t_int v = t_i64(i + 1);
        REQUIRE(loom_graph_arg_value(g, level[i], v.b, v.n) == LOOM_OK);
    }
    int n = leaves;
    while (n > 1) {
        int m = 0;
        for (int i = 0; i + 1 < n; i += 2) {
            int t = loom_graph_task(g, lib, "add", NULL);
            REQUIRE(t >= 0);
            REQUIRE(loom_graph_arg_node(g, t, level[i], 0) == LOOM_OK);
            REQUIRE(loom_graph_arg_node(g, t, level[i + 1], 0) == LOOM_OK);
            level[m++] = t;
        }
        if (n % 2) level[m++] = level[n - 1];
        n = m;
    }
    CHECK(loom_graph_size(g) == 2 * leaves - 1);
    loom_ref root;
    loom_graph_ref(g, level[0], 0, &root);
    char job[LOOM_JOB_ID_LEN];
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    int64_t sum = 0;
    CHECK_RC(t_get_i64(c, root, 120000, &sum), LOOM_OK);
    int64_t dt = t_now_ms() - t0;
    printf("tree reduction: %d tasks on %d nodes in %lld ms\n", loom_graph_size(g), NODES, (long long)dt);
    CHECK(sum == (int64_t)leaves * (leaves + 1) / 2);
    /* every node ran some of it */
    int nodes = t_job_distinct_nodes(c, job);
    printf("tree reduction ran on %d nodes\n", nodes);
    CHECK(nodes == NODES);
    /* and the head counted them */
    char *json = NULL;
    CHECK_RC(loom_status_json(c, &json), LOOM_OK);
    int64_t fin[4];
    CHECK(t_json_ints(json, "finished", fin, 4) >= 1 && fin[t_json_ints(json, "finished", fin, 4) - 1] >= 2 * leaves - 1);
    free(json);
    /* releasing the whole graph's outputs frees them */
    for (int i = 0; i < loom_graph_size(g); i++) {
        loom_ref r;
        loom_graph_ref(g, i, 0, &r);
        loom_release(c, r);
    }
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, root, 5000, &v), LOOM_ENOTFOUND);
    free(level);
    loom_graph_destroy(&g);
}

static void test_parallel(loom_client *c, loom_ref lib)
{
    /* 12 tasks of 250 ms on 3 one-CPU nodes: ~1 s in parallel, 3 s serially */
    const int n = 12;
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    t_int ms = t_i64(250);
    for (int i = 0; i < n; i++) {
        loom_task_opts o = {.num_cpus = 1};
        int t = loom_graph_task(g, lib, "sleep_ms", &o);
        loom_graph_arg_value(g, t, ms.b, ms.n);
    }
    char job[LOOM_JOB_ID_LEN];
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    loom_ref refs[12];
    for (int i = 0; i < n; i++) loom_graph_ref(g, i, 0, &refs[i]);
    CHECK(loom_wait(c, refs, n, n, 30000, NULL) == n);
    int64_t dt = t_now_ms() - t0;
    printf("%d x sleep_ms(250) on %d one-CPU nodes: %lld ms\n", n, NODES, (long long)dt);
    CHECK(dt >= 250 * n / NODES - 50);
    CHECK(dt < 250 * n * 2 / 3);
    CHECK(t_job_distinct_nodes(c, job) == NODES);
    /* a task that needs more CPUs than any node has would never run; two
     * CPUs on one-CPU nodes stays queued (the head does not oversubscribe) */
    loom_graph_destroy(&g);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
}

static void test_transfer(loom_client *c, loom_ref lib)
{
    const size_t n = 20u << 20;
    uint8_t *buf = malloc(n);
    REQUIRE(buf);
    fill(buf, n, 42);
    loom_ref big;
    CHECK_RC(loom_put(c, buf, n, &big), LOOM_OK);

    /* six tasks consume the object at once; one node has it and one CPU, so
     * the others must fetch it */
    const int k = 6;
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    for (int i = 0; i < k; i++) {
        int t = loom_graph_task(g, lib, "length", NULL);
        loom_graph_arg_ref(g, t, big);
    }
    char job[LOOM_JOB_ID_LEN];
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    for (int i = 0; i < k; i++) {
        loom_ref r;
        loom_graph_ref(g, i, 0, &r);
        int64_t len = 0;
        CHECK_RC(t_get_i64(c, r, 60000, &len), LOOM_OK);
        CHECK(len == (int64_t)n);
    }
    printf("%d x length(20 MB) on %d nodes: %lld ms\n", k, NODES, (long long)(t_now_ms() - t0));
    int nodes = t_job_distinct_nodes(c, job);
    CHECK(nodes >= 2);
    loom_graph_destroy(&g);

    /* echo makes 20 MB results on every node; the driver gets each (from
     * its own node zero-copy, from the others over the network) and they are
     * consumed again across nodes */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    int echo[6], len[6];
    for (int i = 0; i < k; i++) {
        echo[i] = loom_graph_task(g, lib, "echo", NULL);
        loom_graph_arg_ref(g, echo[i], big);
    }
    for (int i = 0; i < k; i++) {
        len[i] = loom_graph_task(g, lib, "length", NULL);
        loom_graph_arg_node(g, len[i], echo[(i + 1) % k], 0);
    }
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    for (int i = 0; i < k; i++) {
        loom_ref r;
        loom_graph_ref(g, len[i], 0, &r);
        int64_t l = 0;
        CHECK_RC(t_get_i64(c, r, 60000, &l), LOOM_OK);
        CHECK(l == (int64_t)n);
        loom_graph_ref(g, echo[i], 0, &r);
        loom_value *v = NULL;
        CHECK_RC(loom_get(c, r, 60000, &v), LOOM_OK);
        CHECK(v && loom_value_size(v) == n);
        CHECK(v && memcmp(loom_value_data(v), buf, n) == 0);
        loom_value_release(&v);
        loom_release(c, r);
    }
    CHECK(t_job_distinct_nodes(c, job) >= 2);
    loom_graph_destroy(&g);
    CHECK_RC(loom_release(c, big), LOOM_OK);
    free(buf);
}

/* The head's count of objects it knows. */
static int64_t status_objects(loom_client *c)
{
    char *json = NULL;
    if (loom_status_json(c, &json)) return -1;
    int64_t n[2] = {-1, -1};
    t_json_ints(json, "objects", n, 2);
    free(json);
    return n[0];
}

static void test_detached(loom_client *c, loom_ref lib)
{
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    loom_task_opts o = {.name = "answer"};
    int t = loom_graph_task(g, lib, "value", &o);
    t_int v42 = t_i64(42);
    loom_graph_arg_value(g, t, v42.b, v42.n);
    loom_task_opts so = {.name = "slow"};
    int s = loom_graph_task(g, lib, "sleep_ms", &so);
    t_int long_ms = t_i64(20000);
    loom_graph_arg_value(g, s, long_ms.b, long_ms.n);
    /* dependents of the running task, in the same job: deleting the job
     * cancels the task, which fails them */
    loom_task_opts ao = {.name = "after-slow"};
    int d1 = loom_graph_task(g, lib, "add", &ao);
    loom_graph_arg_node(g, d1, s, 0);
    loom_graph_arg_node(g, d1, t, 0);
    int d2 = loom_graph_task(g, lib, "length", NULL);
    loom_graph_arg_node(g, d2, d1, 0);
    char job[LOOM_JOB_ID_LEN];
    loom_submit_opts sub = {.job_name = "kept", .detached = 1};
    CHECK_RC(loom_graph_submit(c, g, &sub, job), LOOM_OK);
    loom_ref r, slow;
    CHECK_RC(loom_job_ref(c, job, "answer", 0, &r), LOOM_OK);
    CHECK_RC(loom_job_ref(c, job, "slow", 0, &slow), LOOM_OK);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, r, 30000, &x), LOOM_OK);
    CHECK(x == 42);
    char *json = NULL;
    CHECK_RC(loom_job_json(c, job, &json), LOOM_OK);
    CHECK(t_has(json, "\"kept\""));
    CHECK(t_has(json, "\"detached\": true") || t_has(json, "\"detached\":true"));
    free(json);
    /* deleting the job drops its outputs and cancels what still runs */
    int64_t before = status_objects(c);
    CHECK_RC(loom_job_delete(c, job), LOOM_OK);
    loom_value *v = NULL;
    int64_t t0 = t_now_ms();
    int rc = loom_get(c, slow, 5000, &v);
    CHECK(rc == LOOM_ECANCELLED || rc == LOOM_ENOTFOUND);
    CHECK(t_now_ms() - t0 < 3000);
    CHECK_RC(loom_job_json(c, job, &json), LOOM_ENOTFOUND);
    CHECK_RC(loom_job_ref(c, job, "answer", 0, &r), LOOM_ENOTFOUND);
    CHECK_RC(loom_job_delete(c, job), LOOM_ENOTFOUND);
    loom_graph_destroy(&g);
    /* the objects went, and every CPU is free again (the killed executor's
     * report frees its CPU a moment after the cancel) */
    int free_now = 0;
    for (int64_t end = t_now_ms() + 5000; !free_now && t_now_ms() < end;) {
        CHECK_RC(loom_status_json(c, &json), LOOM_OK);
        double used[NODES] = {-1, -1, -1};
        const char *p = json;
        for (int i = 0; i < NODES && p && (p = strstr(p, "\"cpus_used\"")); i++, p++)
            sscanf(strchr(p, ':') + 1, " %lf", &used[i]);
        free(json);
        free_now = 1;
        for (int i = 0; i < NODES; i++) free_now &= used[i] == 0;
        if (!free_now) usleep(50 * 1000);
    }
    CHECK(free_now);
    int64_t after = status_objects(c);
    CHECK(after < before);

    /* deleting a driver's own (not detached) job cancels what runs; the
     * driver keeps its refs, which now say cancelled */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    s = loom_graph_task(g, lib, "sleep_ms", &so);
    loom_graph_arg_value(g, s, long_ms.b, long_ms.n);
    d1 = loom_graph_task(g, lib, "add", &ao);
    loom_graph_arg_node(g, d1, s, 0);
    t = loom_graph_task(g, lib, "value", &o);
    loom_graph_arg_value(g, t, v42.b, v42.n);
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    loom_ref rs, rd, rv;
    loom_graph_ref(g, s, 0, &rs);
    loom_graph_ref(g, d1, 0, &rd);
    loom_graph_ref(g, t, 0, &rv);
    CHECK_RC(t_get_i64(c, rv, 30000, &x), LOOM_OK);
    CHECK(x == 42);
    CHECK_RC(loom_job_delete(c, job), LOOM_OK);
    CHECK_RC(loom_get(c, rs, 5000, &v), LOOM_ECANCELLED);
    CHECK_RC(loom_get(c, rd, 5000, &v), LOOM_ECANCELLED);
    CHECK_RC(t_get_i64(c, rv, 5000, &x), LOOM_OK);
    CHECK(x == 42);
    CHECK_RC(loom_job_json(c, job, &json), LOOM_ENOTFOUND);
    loom_graph_destroy(&g);
    /* the head is well after all that */
    loom_ref ok;
    CHECK_RC(t_submit_i64(c, lib, "value", 7, &ok), LOOM_OK);
    CHECK_RC(t_get_i64(c, ok, 30000, &x), LOOM_OK);
    CHECK(x == 7);
}

int main(void)
{
    loom_client *c = t_connect(NODES, 1, NULL);
    loom_ref lib = t_lib(c);
    char *json = NULL;
    CHECK_RC(loom_status_json(c, &json), LOOM_OK);
    int64_t ids[8];
    CHECK(t_json_ints(json, "id", ids, 8) == NODES);
    free(json);
    test_builder(lib);
    test_small_graph(c, lib);
    test_parallel(c, lib);
    test_tree_reduce(c, lib);
    test_transfer(c, lib);
    test_detached(c, lib);
    loom_disconnect(&c);
    return TEST_DONE();
}
