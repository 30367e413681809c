/* tests/test_api_failures.c — how task failures reach the driver, on a real
 * local cluster: a task that fails with a message, one that returns an error
 * code, one that crashes its executor (which the daemon replaces), a function
 * missing from the library, a failed dependency, and a library file that is
 * not a shared object. */
#include <errno.h>
#include <sys/stat.h>
#include "runtime/util.h"
#include "test_api_util.h"

static void test_task_fail(loom_client *c, loom_ref lib)
{
    loom_ref r;
    loom_value *v = (loom_value *)1;
    CHECK_RC(loom_submit(c, lib, "fail", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ETASK);
    CHECK(v == NULL);
    CHECK_ERR_HAS(c, "fails on purpose");
    CHECK_ERR_HAS(c, "fail");
    /* the failure is kept: a second get gives the same */
    CHECK_RC(loom_get(c, r, 0, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "fails on purpose");

    CHECK_RC(loom_submit(c, lib, "return_error", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "returned 42");

    /* a task rejecting its arguments */
    loom_arg bad = loom_arg_value("\xa3" "abc", 4); /* a msgpack string */
    CHECK_RC(loom_submit(c, lib, "add", &bad, 1, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "not an integer");

    /* a later success clears nothing it should not: results still come */
    loom_ref ok;
    CHECK_RC(t_submit_i64(c, lib, "value", 9, &ok), LOOM_OK);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, ok, 30000, &x), LOOM_OK);
    CHECK(x == 9);
}

static void test_crash(loom_client *c, loom_ref lib, int cpus)
{
    loom_ref r;
    loom_value *v = NULL;
    CHECK_RC(loom_submit(c, lib, "crash", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_EWORKER);
    CHECK_ERR_HAS(c, "crashed");
    CHECK_ERR_HAS(c, "crash");
    CHECK_ERR_HAS(c, "failed after 4 attempts"); /* the default: 3 retries */
    /* crash every executor at once; each is replaced */
    loom_ref many[8];
    loom_task_opts once;
    memset(&once, 0, sizeof once);
    once.max_retries = LOOM_NO_RETRY;
    for (int i = 0; i < cpus; i++) CHECK_RC(loom_submit(c, lib, "crash", NULL, 0, &once, &many[i]), LOOM_OK);
    for (int i = 0; i < cpus; i++) {
        CHECK_RC(loom_get(c, many[i], 30000, &v), LOOM_EWORKER);
        CHECK_ERR_HAS(c, "crashed");
    }
    /* tasks still run, on all executors */
    loom_ref after[8];
    int64_t t0 = t_now_ms();
    for (int i = 0; i < cpus; i++) CHECK_RC(t_submit_i64(c, lib, "sleep_ms", 1000, &after[i]), LOOM_OK);
    for (int i = 0; i < cpus; i++) {
        int64_t x = 0;
        CHECK_RC(t_get_i64(c, after[i], 30000, &x), LOOM_OK);
        CHECK(x == 1000);
    }
    CHECK(t_now_ms() - t0 < 1000 * cpus - 200); /* in parallel */
    /* a dependent of a crashed task fails with EDEP */
    loom_ref crashed, dep;
    CHECK_RC(loom_submit(c, lib, "crash", NULL, 0, &once, &crashed), LOOM_OK);
    loom_arg a = loom_arg_ref(crashed);
    CHECK_RC(loom_submit(c, lib, "length", &a, 1, NULL, &dep), LOOM_OK);
    CHECK_RC(loom_get(c, dep, 30000, &v), LOOM_EDEP);
    CHECK_ERR_HAS(c, "crash");
}

static void test_missing_function(loom_client *c, loom_ref lib)
{
    loom_ref r;
    loom_value *v = NULL;
    CHECK_RC(loom_submit(c, lib, "no_such_function_here", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ENOTFOUND);
    CHECK_ERR_HAS(c, "no_such_function_here");
    /* and its dependents */
    loom_ref dep;
    loom_arg a = loom_arg_ref(r);
    CHECK_RC(loom_submit(c, lib, "echo", &a, 1, NULL, &dep), LOOM_OK);
    CHECK_RC(loom_get(c, dep, 30000, &v), LOOM_EDEP);
    CHECK_ERR_HAS(c, "no_such_function_here");
}

static void test_dependency(loom_client *c, loom_ref lib)
{
    /* fail -> add -> add: every level reports the root cause */
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    loom_task_opts fo = {.name = "the-failing-one"};
    int f = loom_graph_task(g, lib, "fail", &fo);
    int ok = loom_graph_task(g, lib, "value", NULL);
    t_int three = t_i64(3);
    CHECK_RC(loom_graph_arg_value(g, ok, three.b, three.n), LOOM_OK);
    int a1 = loom_graph_task(g, lib, "add", NULL);
    CHECK_RC(loom_graph_arg_node(g, a1, f, 0), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, a1, ok, 0), LOOM_OK);
    int a2 = loom_graph_task(g, lib, "add", NULL);
    CHECK_RC(loom_graph_arg_node(g, a2, a1, 0), LOOM_OK);
    CHECK(f >= 0 && ok >= 0 && a1 >= 0 && a2 >= 0);
    char job[LOOM_JOB_ID_LEN];
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    loom_ref rf, rok, r1, r2;
    loom_graph_ref(g, f, 0, &rf);
    loom_graph_ref(g, ok, 0, &rok);
    loom_graph_ref(g, a1, 0, &r1);
    loom_graph_ref(g, a2, 0, &r2);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r2, 30000, &v), LOOM_EDEP);
    CHECK_ERR_HAS(c, "the-failing-one");
    CHECK_ERR_HAS(c, "fails on purpose");
    CHECK_RC(loom_get(c, r1, 30000, &v), LOOM_EDEP);
    CHECK_ERR_HAS(c, "dependency 'the-failing-one' failed");
    CHECK_RC(loom_get(c, rf, 30000, &v), LOOM_ETASK);
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, rok, 30000, &x), LOOM_OK);
    CHECK(x == 3);
    /* the job's table says which failed and why */
    char *json = NULL;
    CHECK_RC(loom_job_json(c, job, &json), LOOM_OK);
    CHECK(t_has(json, "\"failed\""));
    CHECK(t_has(json, "fails on purpose"));
    CHECK(t_has(json, "\"finished\""));
    free(json);
    loom_graph_destroy(&g);

    /* a dependent submitted after its dependency failed fails at once */
    loom_arg a = loom_arg_ref(rf);
    loom_ref late;
    CHECK_RC(loom_submit(c, lib, "length", &a, 1, NULL, &late), LOOM_OK);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_get(c, late, 30000, &v), LOOM_EDEP);
    CHECK(t_now_ms() - t0 < 2000);
    CHECK_ERR_HAS(c, "fails on purpose");
}

/* Failures in graphs whose refs the driver has already released: the head
 * frees tasks and objects as soon as nothing needs them, also in the middle
 * of propagating a failure. */
static void test_released_refs(loom_client *c, loom_ref lib)
{
    t_int ms = t_i64(300);
    loom_arg sa = t_arg_i64(&ms);
    loom_ref slow, late_fail, slow2;
    /* a fails after 300 ms (fail ignores its argument but waits for it) */
    CHECK_RC(loom_submit(c, lib, "sleep_ms", &sa, 1, NULL, &slow), LOOM_OK);
    loom_arg fa = loom_arg_ref(slow);
    CHECK_RC(loom_submit(c, lib, "fail", &fa, 1, NULL, &late_fail), LOOM_OK);
    t_int ms2 = t_i64(800);
    loom_arg sb = t_arg_i64(&ms2);
    CHECK_RC(loom_submit(c, lib, "sleep_ms", &sb, 1, NULL, &slow2), LOOM_OK);
    /* a task waiting on the failing one and on a slower one, released */
    loom_arg both[2] = {loom_arg_ref(late_fail), loom_arg_ref(slow2)};
    loom_ref w;
    CHECK_RC(loom_submit(c, lib, "add", both, 2, NULL, &w), LOOM_OK);
    CHECK_RC(loom_release(c, w), LOOM_OK);
    /* two tasks waiting only on the failing one, released, and the failing
     * one's own output released too */
    loom_arg one = loom_arg_ref(late_fail);
    loom_ref w1, w2;
    CHECK_RC(loom_submit(c, lib, "length", &one, 1, NULL, &w1), LOOM_OK);
    CHECK_RC(loom_submit(c, lib, "length", &one, 1, NULL, &w2), LOOM_OK);
    CHECK_RC(loom_release(c, w1), LOOM_OK);
    CHECK_RC(loom_release(c, w2), LOOM_OK);
    CHECK_RC(loom_release(c, late_fail), LOOM_OK);
    /* let everything finish, then check the head still answers */
    int64_t x = 0;
    CHECK_RC(t_get_i64(c, slow2, 30000, &x), LOOM_OK);
    CHECK(x == 800);
    loom_ref probe;
    CHECK_RC(t_submit_i64(c, lib, "value", 11, &probe), LOOM_OK);
    CHECK_RC(t_get_i64(c, probe, 30000, &x), LOOM_OK);
    CHECK(x == 11);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, w, 5000, &v), LOOM_ENOTFOUND);
    char *json = NULL;
    CHECK_RC(loom_status_json(c, &json), LOOM_OK);
    free(json);
}

static void test_bad_library(loom_client *c, const char *dir)
{
    /* a file that is not a shared object loads (it is just bytes) but its
     * tasks fail with the loader's reason */
    char path[4200];
    snprintf(path, sizeof path, "%s/not-a-library.so", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("this is a text file, not an ELF shared object\n", f);
    fclose(f);
    loom_ref bad;
    CHECK_RC(loom_library_load(c, path, &bad), LOOM_OK);
    loom_ref r;
    loom_value *v = NULL;
    CHECK_RC(loom_submit(c, bad, "noop", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "cannot load the task library");
    /* and the executor survives it */
    loom_ref lib = t_lib(c);
    CHECK_RC(loom_submit(c, lib, "noop", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_OK);
    loom_value_release(&v);

    /* an empty file */
    snprintf(path, sizeof path, "%s/empty.so", dir);
    f = fopen(path, "w");
    REQUIRE(f);
    fclose(f);
    CHECK_RC(loom_library_load(c, path, &bad), LOOM_OK);
    CHECK_RC(loom_submit(c, bad, "noop", NULL, 0, NULL, &r), LOOM_OK);
    CHECK_RC(loom_get(c, r, 30000, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "cannot load the task library");

    /* a path that does not exist */
    snprintf(path, sizeof path, "%s/missing.so", dir);
    int rc = loom_library_load(c, path, &bad);
    CHECK(rc == LOOM_ENOTFOUND);
    CHECK_ERR_HAS(c, "missing.so");
    /* a directory */
    rc = loom_library_load(c, dir, &bad);
    CHECK(rc < 0);
    CHECK_ERR_HAS(c, dir);
}

static void add_sanitizer_option(const char *var, const char *opt)
{
    const char *old = getenv(var);
    if (old && strstr(old, "handle_segv")) return;
    char buf[2048];
    snprintf(buf, sizeof buf, "%s%s%s", old && *old ? old : "", old && *old ? ":" : "", opt);
    setenv(var, buf, 1);
}

int main(void)
{
    /* The crash test raises SIGSEGV in an executor on purpose.  In a
     * sanitized build, let that signal kill the executor (as in a plain
     * build) instead of turning it into a sanitizer report and exit(1). */
    add_sanitizer_option("ASAN_OPTIONS", "handle_segv=0");
    add_sanitizer_option("UBSAN_OPTIONS", "handle_segv=0");
    char dir[128];
    REQUIRE(t_temp_dir("loom-test-failures", dir, sizeof dir) == 0);
    const int cpus = 2;
    loom_client *c = t_connect(1, cpus, NULL);
    loom_ref lib = t_lib(c);
    test_task_fail(c, lib);
    test_crash(c, lib, cpus);
    test_missing_function(c, lib);
    test_dependency(c, lib);
    test_released_refs(c, lib);
    test_bad_library(c, dir);
    loom_disconnect(&c);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
    return TEST_DONE();
}
