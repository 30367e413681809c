/* tests/test_api_retries.c — retries on a real local cluster: a task whose
 * executor dies runs again up to max_retries times (exactly: the attempts are
 * counted in a file the task appends to), application errors are retried
 * only when asked, the final error names every attempt, and a task on a node
 * that dies (its daemon killed with SIGKILL) runs again on another node. */
#include <signal.h>
#include "runtime/util.h"
#include "test_api_util.h"

static char dir[4096];

static int64_t attempts_in(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int64_t n = 0;
    for (int ch; (ch = fgetc(f)) != EOF;) n += ch == '\n';
    fclose(f);
    return n;
}

/* Submit fn(path[, k]) with opts; path is a fresh file under dir. */
static loom_ref submit_marked(loom_client *c, loom_ref lib, const char *fn, const char *name, int64_t k,
                              const loom_task_opts *o, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    unlink(path);
    loom_pack *p = loom_pack_new();
    loom_pack_cstr(p, path);
    size_t n1 = loom_pack_size(p);
    loom_pack_i64(p, k);
    const uint8_t *d = loom_pack_data(p);
    loom_arg args[2] = {loom_arg_value(d, n1), loom_arg_value(d + n1, loom_pack_size(p) - n1)};
    loom_ref r;
    CHECK_RC(loom_submit(c, lib, fn, args, 2, o, &r), 0);
    loom_pack_destroy(&p);
    return r;
}

static void test_crash_retries(loom_client *c, loom_ref lib)
{
    char path[4200];
    loom_value *v = NULL;
    loom_task_opts o;
    /* default: 3 retries, 4 attempts */
    loom_ref r = submit_marked(c, lib, "crash_marked", "crash-default", 0, NULL, path, sizeof path);
    CHECK_RC(loom_get(c, r, 60000, &v), LOOM_EWORKER);
    CHECK(attempts_in(path) == 4);
    CHECK_ERR_HAS(c, "failed after 4 attempts");
    CHECK_ERR_HAS(c, "attempt 1 on node");
    CHECK_ERR_HAS(c, "attempt 4 on node");
    /* max_retries 1: exactly 2 attempts */
    memset(&o, 0, sizeof o);
    o.max_retries = 1;
    r = submit_marked(c, lib, "crash_marked", "crash-1", 0, &o, path, sizeof path);
    CHECK_RC(loom_get(c, r, 60000, &v), LOOM_EWORKER);
    CHECK(attempts_in(path) == 2);
    CHECK_ERR_HAS(c, "failed after 2 attempts");
    /* no retries */
    o.max_retries = LOOM_NO_RETRY;
    r = submit_marked(c, lib, "crash_marked", "crash-0", 0, &o, path, sizeof path);
    CHECK_RC(loom_get(c, r, 60000, &v), LOOM_EWORKER);
    CHECK(attempts_in(path) == 1);
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &(loom_task_opts){.max_retries = 1001}, &r), LOOM_EINVAL);
}

static void test_error_retries(loom_client *c, loom_ref lib)
{
    char path[4200];
    loom_value *v = NULL;
    loom_task_opts o;
    memset(&o, 0, sizeof o);
    /* an application error is not retried unless asked */
    loom_ref r = submit_marked(c, lib, "fail_until", "err-default", 3, NULL, path, sizeof path);
    CHECK_RC(loom_get(c, r, 60000, &v), LOOM_ETASK);
    CHECK(attempts_in(path) == 1);
    /* asked: it succeeds on its third attempt */
    o.retry_on_error = 1;
    r = submit_marked(c, lib, "fail_until", "err-3", 3, &o, path, sizeof path);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, r, 60000, &x), 0);
    CHECK(x == 3 && attempts_in(path) == 3);
    /* ... but not beyond max_retries: 2 retries, 3 attempts, the 4th would succeed */
    o.max_retries = 2;
    r = submit_marked(c, lib, "fail_until", "err-4", 4, &o, path, sizeof path);
    CHECK_RC(loom_get(c, r, 60000, &v), LOOM_ETASK);
    CHECK(attempts_in(path) == 3);
    CHECK_ERR_HAS(c, "attempt 3 fails on purpose");
    CHECK_ERR_HAS(c, "failed after 3 attempts");
}

/* The node of an actor's "where" ("node:pid:gpus"), or -1. */
static int actor_node(loom_client *c, loom_actor a)
{
    loom_ref r;
    loom_value *v = NULL;
    if (loom_actor_call(c, a, "where", NULL, 0, &r) || loom_get(c, r, 60000, &v)) {
        fprintf(stderr, "where: %s\n", loom_last_error(c));
        return -1;
    }
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    const char *s;
    size_t n;
    int node = -1;
    if (loom_unpack_str(&u, &s, &n) == 0) node = atoi(s);
    loom_value_release(&v);
    return node;
}

/* A task on a node whose daemon is killed runs again on the other node; an
 * actor that may restart comes back on the other node. */
static void test_node_death(loom_client *c, loom_ref lib)
{
    /* find node 2's daemon: a task pinned there tells its parent's pid */
    loom_task_opts on2;
    memset(&on2, 0, sizeof on2);
    on2.strategy = LOOM_SCHED_NODE;
    on2.node = 2;
    loom_ref r;
    CHECK_RC(loom_submit(c, lib, "daemon_pid", NULL, 0, &on2, &r), 0);
    int64_t pid = 0;
    CHECK_RC(t_get_i64(c, r, 30000, &pid), 0);
    REQUIRE(pid > 1);
    /* a slow task on node 2 (soft affinity: it may run elsewhere later) */
    on2.soft = 1;
    t_int ms = t_i64(4000), val = t_i64(42);
    loom_arg args[2] = {t_arg_i64(&ms), t_arg_i64(&val)};
    CHECK_RC(loom_submit(c, lib, "slow_value", args, 2, &on2, &r), 0);
    /* and an actor there that may restart once */
    loom_actor_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.max_restarts = 1;
    ao.res.strategy = LOOM_SCHED_NODE;
    ao.res.node = 2;
    ao.res.soft = 1;
    loom_actor a;
    CHECK_RC(loom_actor_create(c, lib, "Counter", NULL, 0, &ao, &a), 0);
    CHECK(actor_node(c, a) == 2);
    /* objects that live only on node 2: A, and B = echo(A), both 200 KB */
    t_int n200k = t_i64(200000), seven = t_i64(7);
    loom_arg bargs[2] = {t_arg_i64(&n200k), t_arg_i64(&seven)};
    loom_ref A, B;
    CHECK_RC(loom_submit(c, lib, "bytes", bargs, 2, &on2, &A), 0);
    loom_arg aarg = loom_arg_ref(A);
    CHECK_RC(loom_submit(c, lib, "echo", &aarg, 1, &on2, &B), 0);
    loom_value *bv = NULL;
    CHECK_RC(loom_get(c, B, 30000, &bv), 0);
    CHECK(bv && loom_value_size(bv) == 200000);
    loom_value_release(&bv);
    char *where = NULL;
    /* once the task runs there, kill the node */
    char *json = NULL;
    int running = 0;
    for (int i = 0; i < 100 && !running; i++) {
        usleep(20000);
        free(json);
        json = NULL;
        if (loom_status_json(c, &json)) continue;
        int64_t run[4] = {0};
        running = t_json_ints(json, "running", run, 4) >= 2 && run[1] > 0;
    }
    free(json);
    CHECK(running);
    int64_t t0 = t_now_ms();
    CHECK(kill((pid_t)pid, SIGKILL) == 0);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, r, 60000, &x), 0);
    CHECK(x == 42);
    printf("a task on a killed node finished elsewhere %lld ms after the kill\n", (long long)(t_now_ms() - t0));
    CHECK(actor_node(c, a) == 1);
    /* lineage: B was lost with node 2; getting it again rebuilds A, then B, on node 1 */
    t0 = t_now_ms();
    CHECK_RC(loom_get(c, B, 60000, &bv), 0);
    if (!bv) fprintf(stderr, "get B: %s\n", loom_last_error(c));
    int same = bv && loom_value_size(bv) == 200000;
    for (size_t i = 0; same && i < 200000; i++) same = ((const uint8_t *)loom_value_data(bv))[i] == 7;
    CHECK(same);
    loom_value_release(&bv);
    printf("a 2-task lineage lost with its node rebuilt in %lld ms\n", (long long)(t_now_ms() - t0));
    loom_ref len;
    CHECK_RC(loom_submit(c, lib, "length", &aarg, 1, NULL, &len), 0);
    int64_t alen = 0;
    CHECK_RC(t_get_i64(c, len, 60000, &alen), 0);
    CHECK(alen == 200000);
    (void)where;
    char *actors = NULL;
    CHECK_RC(loom_actors_json(c, &actors), 0);
    CHECK(t_has(actors, "\"alive\""));
    free(actors);
    loom_actor_kill(c, a);
    /* and its record says it ran on node 1 in the end: a task pinned hard to
       node 2 now fails, the cluster keeps working */
    on2.soft = 0;
    loom_value *v = NULL;
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, &on2, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EINFEASIBLE);
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, NULL, &r), 0);
    CHECK_RC(loom_get(c, r, 30000, &v), 0);
    loom_value_release(&v);
}

int main(void)
{
    t_setup_env();
    REQUIRE(t_temp_dir("loom-test-retries", dir, sizeof dir) == 0);
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.num_nodes = 2;
    o.num_cpus = 2;
    o.heartbeat_timeout_ms = 1500;
    loom_client *c = NULL;
    REQUIRE(loom_connect("local", &o, &c) == 0);
    loom_ref lib = t_lib(c);
    test_crash_retries(c, lib);
    test_error_retries(c, lib);
    test_node_death(c, lib);
    loom_disconnect(&c);
    t_rm_rf(dir);
    return TEST_DONE();
}
