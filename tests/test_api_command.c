/* tests/test_api_command.c — command tasks (loom_graph_command) on a real
 * local cluster: argv, env and cwd; stdout and stderr kept as the task's log;
 * the exit status as output 0 and named files as outputs 1..n; arguments
 * materialised as files ($LOOM_ARG_i); failures (non-zero exit unless
 * nocheck, a missing output file, a command that does not exist, a signal);
 * cancelling a running command; and a command -> function -> command
 * pipeline. */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include "runtime/util.h"
#include "test_api_util.h"

static char tmpdir[4096];

/* Add `sh -c script` with the given outputs and options; returns the node. */
static int add_sh(loom_graph *g, const char *script, const char *const *outputs, int noutputs,
                  const char *const *env, int nenv, const char *cwd, const loom_task_opts *o)
{
    const char *argv[] = {"sh", "-c", script, "sh", "first-arg", "second arg"};
    loom_command cmd = {argv, 6, env, nenv, cwd, outputs, noutputs};
    return loom_graph_command(g, &cmd, o);
}

/* Submit g, and return the value of (node, output) in *v. */
static int get_out(loom_client *c, loom_graph *g, int node, int output, loom_value **v)
{
    loom_ref r;
    int rc = loom_graph_ref(g, node, output, &r);
    if (rc) return rc;
    return loom_get(c, r, 30000, v);
}

static int value_is(const loom_value *v, const char *s)
{
    return v && loom_value_size(v) == strlen(s) && !memcmp(loom_value_data(v), s, strlen(s));
}

static char *logs_of(loom_client *c, loom_graph *g, int node)
{
    loom_ref r;
    loom_graph_ref(g, node, 0, &r);
    char *log = NULL;
    size_t n = 0;
    int rc = loom_logs(c, r, &log, &n);
    if (rc) {
        fprintf(stderr, "loom_logs: %s: %s\n", loom_strerror(rc), loom_last_error(c));
        return NULL;
    }
    if (strlen(log) != n) {
        free(log);
        return NULL;
    }
    return log;
}

static void test_basics(loom_client *c)
{
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *env[] = {"FOO=foo value", "BAR=bar=value"};
    const char *outs[] = {"where.txt", "args.txt"};
    char cwd[4200];
    snprintf(cwd, sizeof cwd, "%s/work", tmpdir);
    REQUIRE(mkdir(cwd, 0700) == 0);
    int n = add_sh(g,
                   "echo \"out:$FOO\"; echo \"err:$BAR\" >&2; pwd > where.txt;"
                   " printf '%s|%s' \"$1\" \"$2\" > args.txt; echo kept > left-behind.txt",
                   outs, 2, env, 2, cwd, NULL);
    CHECK(n == 0);
    CHECK(!strcmp(loom_graph_node_name(g, n), "sh"));
    loom_ref r;
    CHECK_RC(loom_graph_ref(g, n, 2, &r), LOOM_OK);
    CHECK_RC(loom_graph_ref(g, n, 3, &r), LOOM_EINVAL);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    loom_value *v = NULL;
    /* output 0: the exit status as a msgpack integer */
    CHECK_RC(get_out(c, g, n, 0, &v), LOOM_OK);
    CHECK(v && t_value_i64(v) == 0);
    loom_value_release(&v);
    /* outputs 1..n: the named files */
    char want[4300];
    snprintf(want, sizeof want, "%s\n", cwd);
    CHECK_RC(get_out(c, g, n, 1, &v), LOOM_OK);
    CHECK(value_is(v, want));
    loom_value_release(&v);
    CHECK_RC(get_out(c, g, n, 2, &v), LOOM_OK);
    CHECK(value_is(v, "first-arg|second arg"));
    loom_value_release(&v);
    /* stdout and stderr are the log */
    char *log = logs_of(c, g, n);
    CHECK(t_has(log, "out:foo value\n"));
    CHECK(t_has(log, "err:bar=value\n"));
    free(log);
    /* a cwd given is used as is and left in place */
    char path[4400];
    snprintf(path, sizeof path, "%s/left-behind.txt", cwd);
    CHECK(access(path, F_OK) == 0);
    loom_graph_destroy(&g);

    /* without cwd: a fresh directory per task, removed afterwards */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *pw[] = {"pwd.txt"};
    int a = add_sh(g, "pwd > pwd.txt; ls -A | grep -v pwd.txt | wc -l > count.txt", pw, 1, NULL, 0, NULL, NULL);
    int b = add_sh(g, "pwd > pwd.txt", pw, 1, NULL, 0, NULL, NULL);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    loom_value *va = NULL, *vb = NULL;
    CHECK_RC(get_out(c, g, a, 1, &va), LOOM_OK);
    CHECK_RC(get_out(c, g, b, 1, &vb), LOOM_OK);
    CHECK(va && vb && (loom_value_size(va) != loom_value_size(vb) ||
                       memcmp(loom_value_data(va), loom_value_data(vb), loom_value_size(va))));
    if (va && loom_value_size(va) > 1 && loom_value_size(va) < sizeof path) {
        memcpy(path, loom_value_data(va), loom_value_size(va) - 1);
        path[loom_value_size(va) - 1] = 0;
        struct stat st;
        CHECK(stat(path, &st) != 0 && errno == ENOENT);
    }
    loom_value_release(&va);
    loom_value_release(&vb);
    loom_graph_destroy(&g);
}

static void test_arg_files(loom_client *c, loom_ref lib)
{
    /* three kinds of argument: an inline value, a stored put object, and an
     * earlier node's output */
    size_t bign = 1u << 20;
    char *big = malloc(bign);
    for (size_t i = 0; i < bign; i++) big[i] = (char)('a' + i % 26);
    loom_ref bigref;
    CHECK_RC(loom_put(c, big, bign, &bigref), LOOM_OK);
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    int e = loom_graph_task(g, lib, "echo", NULL);
    loom_graph_arg_value(g, e, "from-echo", 9);
    const char *outs[] = {"cat.out", "n.out", "sizes.out"};
    int n = add_sh(g,
                   "cat \"$LOOM_ARG_0\" \"$LOOM_ARG_2\" > cat.out; echo \"$LOOM_NARGS\" > n.out;"
                   " wc -c < \"$LOOM_ARG_1\" | tr -d ' ' > sizes.out",
                   outs, 3, NULL, 0, NULL, NULL);
    CHECK_RC(loom_graph_arg_value(g, n, "inline-", 7), LOOM_OK);
    CHECK_RC(loom_graph_arg_ref(g, n, bigref), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, n, e, 0), LOOM_OK);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(get_out(c, g, n, 1, &v), LOOM_OK);
    CHECK(value_is(v, "inline-from-echo"));
    loom_value_release(&v);
    CHECK_RC(get_out(c, g, n, 2, &v), LOOM_OK);
    CHECK(value_is(v, "3\n"));
    loom_value_release(&v);
    CHECK_RC(get_out(c, g, n, 3, &v), LOOM_OK);
    CHECK(value_is(v, "1048576\n"));
    loom_value_release(&v);
    loom_graph_destroy(&g);

    /* a large output file and a large log travel through the store */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *bo[] = {"big.out"};
    n = add_sh(g, "cat \"$LOOM_ARG_0\" > big.out; head -c 100000 /dev/zero | tr '\\0' x", bo, 1, NULL, 0, NULL, NULL);
    loom_graph_arg_ref(g, n, bigref);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, n, 1, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == bign && !memcmp(loom_value_data(v), big, bign));
    loom_value_release(&v);
    char *log = logs_of(c, g, n);
    CHECK(log && strlen(log) == 100000 && log[0] == 'x' && log[99999] == 'x');
    free(log);
    loom_graph_destroy(&g);
    free(big);
    loom_release(c, bigref);
}

static void test_failures(loom_client *c)
{
    loom_graph *g;
    loom_value *v = NULL;
    /* a non-zero exit fails the task, with the status and the output's tail */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *o1[] = {"partial.txt"};
    int n = add_sh(g, "echo partial > partial.txt; echo 'something went wrong' >&2; exit 3", o1, 1, NULL, 0, NULL, NULL);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, n, 0, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "status 3");
    CHECK_ERR_HAS(c, "something went wrong");
    CHECK_RC(get_out(c, g, n, 1, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "status 3");
    /* its log is kept even so */
    char *log = logs_of(c, g, n);
    CHECK(t_has(log, "something went wrong"));
    free(log);
    loom_graph_destroy(&g);

    /* ... unless nocheck: the status is output 0, the files are outputs */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    loom_task_opts nc = {.nocheck = 1, .name = "tolerant"};
    n = add_sh(g, "echo partial > partial.txt; exit 3", o1, 1, NULL, 0, NULL, &nc);
    CHECK(!strcmp(loom_graph_node_name(g, n), "tolerant"));
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, n, 0, &v), LOOM_OK);
    CHECK(v && t_value_i64(v) == 3);
    loom_value_release(&v);
    CHECK_RC(get_out(c, g, n, 1, &v), LOOM_OK);
    CHECK(value_is(v, "partial\n"));
    loom_value_release(&v);
    loom_graph_destroy(&g);

    /* an output file the command did not write */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *o2[] = {"written.txt", "never-written.txt"};
    n = add_sh(g, "echo yes > written.txt", o2, 2, NULL, 0, NULL, NULL);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, n, 2, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "never-written.txt");
    CHECK_RC(get_out(c, g, n, 0, &v), LOOM_ETASK);
    loom_graph_destroy(&g);

    /* a command that does not exist */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *argv[] = {"loom-no-such-command-xyz", "--flag"};
    loom_command cmd = {argv, 2, NULL, 0, NULL, NULL, 0};
    n = loom_graph_command(g, &cmd, NULL);
    CHECK(n == 0 && !strcmp(loom_graph_node_name(g, n), "loom-no-such-command-xyz"));
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, n, 0, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "loom-no-such-command-xyz");
    CHECK_ERR_HAS(c, "cannot run");
    loom_graph_destroy(&g);

    /* killed by a signal */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    n = add_sh(g, "kill -9 $$", NULL, 0, NULL, 0, NULL, NULL);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, n, 0, &v), LOOM_ETASK);
    CHECK_ERR_HAS(c, "signal 9");
    loom_graph_destroy(&g);

    /* the builder refuses malformed commands */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *ok_argv[] = {"true"};
    const char *bad_env[] = {"NOEQUALS"};
    const char *bad_out[] = {"../escape"};
    loom_command bad1 = {ok_argv, 0, NULL, 0, NULL, NULL, 0};
    loom_command bad2 = {ok_argv, 1, bad_env, 1, NULL, NULL, 0};
    loom_command bad3 = {ok_argv, 1, NULL, 0, NULL, bad_out, 1};
    loom_command bad4 = {ok_argv, 1, NULL, 0, "", NULL, 0};
    CHECK(loom_graph_command(g, &bad1, NULL) == LOOM_EINVAL);
    CHECK(loom_graph_command(g, &bad2, NULL) == LOOM_EINVAL);
    CHECK(loom_graph_command(g, &bad3, NULL) == LOOM_EINVAL);
    CHECK(loom_graph_command(g, &bad4, NULL) == LOOM_EINVAL);
    CHECK(loom_graph_command(g, NULL, NULL) == LOOM_EINVAL);
    CHECK(loom_graph_size(g) == 0);
    loom_graph_destroy(&g);
}

/* Whether any process has `needle` in its command line. */
static int process_running(const char *needle)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!buf[i]) buf[i] = ' ';
        buf[n] = 0;
        if (strstr(buf, needle)) found = 1;
    }
    closedir(d);
    return found;
}

static void test_cancel(loom_client *c)
{
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *argv[] = {"sleep", "31.4159"};
    loom_command cmd = {argv, 2, NULL, 0, NULL, NULL, 0};
    int n = loom_graph_command(g, &cmd, NULL);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    int64_t end = t_now_ms() + 10000;
    while (!process_running("sleep 31.4159") && t_now_ms() < end) usleep(20000);
    CHECK(process_running("sleep 31.4159"));
    loom_ref r;
    loom_graph_ref(g, n, 0, &r);
    int64_t t0 = t_now_ms();
    CHECK_RC(loom_cancel(c, r), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c, r, 5000, &v), LOOM_ECANCELLED);
    CHECK(t_now_ms() - t0 < 2000);
    /* the command itself was killed, not only the executor */
    end = t_now_ms() + 5000;
    while (process_running("sleep 31.4159") && t_now_ms() < end) usleep(20000);
    CHECK(!process_running("sleep 31.4159"));
    loom_graph_destroy(&g);
}

static void test_pipeline(loom_client *c, loom_ref lib)
{
    /* command writes a file -> length(output 1) -> command reads both */
    loom_graph *g;
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    const char *o1[] = {"greeting.txt"};
    loom_task_opts w = {.name = "write"};
    int a = add_sh(g, "printf 'hello, world' > greeting.txt", o1, 1, NULL, 0, NULL, &w);
    int l = loom_graph_task(g, lib, "length", NULL);
    CHECK_RC(loom_graph_arg_node(g, l, a, 1), LOOM_OK);
    const char *o2[] = {"report.txt"};
    loom_task_opts rd = {.name = "report"};
    int b = add_sh(g, "{ cat \"$LOOM_ARG_0\"; printf ' '; od -An -tu1 \"$LOOM_ARG_1\" | tr -d ' \\n'; } > report.txt",
                   o2, 1, NULL, 0, NULL, &rd);
    CHECK_RC(loom_graph_arg_node(g, b, a, 1), LOOM_OK);
    CHECK_RC(loom_graph_arg_node(g, b, l, 0), LOOM_OK);
    char job[LOOM_JOB_ID_LEN];
    CHECK_RC(loom_graph_submit(c, g, NULL, job), LOOM_OK);
    loom_value *v = NULL;
    int64_t len = 0;
    loom_ref lr;
    loom_graph_ref(g, l, 0, &lr);
    CHECK_RC(t_get_i64(c, lr, 30000, &len), LOOM_OK);
    CHECK(len == 12);
    CHECK_RC(get_out(c, g, b, 1, &v), LOOM_OK);
    CHECK(value_is(v, "hello, world 12")); /* msgpack 12 is the single byte 12 */
    loom_value_release(&v);
    /* the job's outputs by name */
    loom_ref jr;
    CHECK_RC(loom_job_ref(c, job, "write", 1, &jr), LOOM_OK);
    CHECK_RC(loom_get(c, jr, 30000, &v), LOOM_OK);
    CHECK(value_is(v, "hello, world"));
    loom_value_release(&v);
    CHECK_RC(loom_job_ref(c, job, "write", 2, &jr), LOOM_ENOTFOUND);
    loom_graph_destroy(&g);

    /* a failing command fails the function after it */
    REQUIRE(loom_graph_new(&g) == LOOM_OK);
    a = add_sh(g, "exit 7", o1, 1, NULL, 0, NULL, &w);
    l = loom_graph_task(g, lib, "length", NULL);
    loom_graph_arg_node(g, l, a, 1);
    CHECK_RC(loom_graph_submit(c, g, NULL, NULL), LOOM_OK);
    CHECK_RC(get_out(c, g, l, 0, &v), LOOM_EDEP);
    CHECK_ERR_HAS(c, "write");
    CHECK_ERR_HAS(c, "status 7");
    loom_graph_destroy(&g);
}

int main(void)
{
    REQUIRE(t_temp_dir("loom-test-command", tmpdir, sizeof tmpdir) == 0);
    loom_client *c = t_connect(1, 2, NULL);
    loom_ref lib = t_lib(c);
    test_basics(c);
    test_arg_files(c, lib);
    test_failures(c);
    test_cancel(c);
    test_pipeline(c, lib);
    loom_disconnect(&c);
    if (t_rm_rf(tmpdir)) fprintf(stderr, "cannot remove %s\n", tmpdir);
    return TEST_DONE();
}
