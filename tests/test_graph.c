/* tests/test_graph.c — the graph builder (loom_graph_* of loom/loom.h) and the
 * JSON graph reader (api/graph_json.h): validation, refs, ownership, argument
 * forms, topological reordering, cycles, and each error with its message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "loom/loom.h"
#include "loom/value.h"
#include "api/graph_internal.h"
#include "api/graph_json.h"
#include "runtime/util.h"
#include "tests/testutil.h"

static loom_ref some_lib(void)
{
    loom_ref r;
    for (int i = 0; i < LOOM_ID_LEN; i++) r.id[i] = (uint8_t)(0xa0 + i);
    return r;
}

/* ---- builder ------------------------------------------------------------ */

static void test_builder_validation(void)
{
    loom_graph *g = NULL;
    CHECK_RC(loom_graph_new(NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_new(&g), 0);
    REQUIRE(g);
    CHECK(loom_graph_size(g) == 0);
    loom_ref lib = some_lib();
    char long_fn[300];
    memset(long_fn, 'a', sizeof long_fn);
    long_fn[256] = 0;
    CHECK_RC(loom_graph_task(NULL, lib, "f", NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_task(g, lib, NULL, NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_task(g, lib, "", NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_task(g, lib, "a-b", NULL), LOOM_EINVAL);
    CHECK_RC(loom_graph_task(g, lib, long_fn, NULL), LOOM_EINVAL);
    long_fn[255] = 0;
    CHECK_RC(loom_graph_task(g, lib, long_fn, NULL), 0);          /* 255 chars is fine */

    loom_task_opts o;
    memset(&o, 0, sizeof o);
    o.num_cpus = -1;
    CHECK_RC(loom_graph_task(g, lib, "f", &o), LOOM_EINVAL);
    o.num_cpus = 1024.5;
    CHECK_RC(loom_graph_task(g, lib, "f", &o), LOOM_EINVAL);
    o.num_cpus = NAN;
    CHECK_RC(loom_graph_task(g, lib, "f", &o), LOOM_EINVAL);
    o.num_cpus = 0;
    o.name = "";
    CHECK_RC(loom_graph_task(g, lib, "f", &o), LOOM_EINVAL);
    o.name = "two\nlines";
    CHECK_RC(loom_graph_task(g, lib, "f", &o), LOOM_EINVAL);
    CHECK(loom_graph_size(g) == 1);                               /* failures add nothing */

    o.name = NULL;
    o.memory = 123;
    CHECK_RC(loom_graph_task(g, lib, "f", &o), 1);
    CHECK(g->nodes[1].num_cpus == 1);                              /* 0 means 1 */
    CHECK(g->nodes[1].memory == 123);
    CHECK(strcmp(loom_graph_node_name(g, 1), "f") == 0);
    CHECK(memcmp(&g->nodes[1].lib, &lib, sizeof lib) == 0);
    CHECK_RC(loom_graph_task(g, lib, "f", NULL), 2);
    CHECK(g->nodes[2].num_cpus == 1);
    o.num_cpus = 0.5;
    o.name = "half";
    CHECK_RC(loom_graph_task(g, lib, "f", &o), 3);
    CHECK(g->nodes[3].num_cpus == 0.5);
    CHECK(loom_graph_find(g, "half") == 3);
    CHECK(loom_graph_find(g, "f") == 1);                           /* the first of two */
    CHECK(loom_graph_find(g, "nope") == LOOM_ENOTFOUND);
    CHECK(loom_graph_node_name(g, 4) == NULL);
    CHECK(loom_graph_node_name(g, -1) == NULL);

    const char *argv[] = {"/usr/bin/wc", "-l"};
    const char *env[] = {"A=1", "NOEQ", "=x"};
    const char *outs[] = {"n.txt", "a/b", ".", "..", ""};
    loom_command cmd;
    memset(&cmd, 0, sizeof cmd);
    CHECK_RC(loom_graph_command(g, &cmd, NULL), LOOM_EINVAL);      /* argc 0 */
    cmd.argv = argv;
    cmd.argc = 2;
    cmd.env = env;
    cmd.nenv = 2;
    CHECK_RC(loom_graph_command(g, &cmd, NULL), LOOM_EINVAL);      /* "NOEQ" */
    cmd.env = env + 2;
    cmd.nenv = 1;
    CHECK_RC(loom_graph_command(g, &cmd, NULL), LOOM_EINVAL);      /* "=x" */
    cmd.env = env;
    cmd.nenv = 1;
    for (int k = 1; k < 5; k++) {
        cmd.outputs = outs + k;
        cmd.noutputs = 1;
        CHECK_RC(loom_graph_command(g, &cmd, NULL), LOOM_EINVAL);
    }
    cmd.outputs = outs;
    cmd.cwd = "";
    CHECK_RC(loom_graph_command(g, &cmd, NULL), LOOM_EINVAL);
    cmd.cwd = "/tmp";
    CHECK(loom_graph_size(g) == 4);
    CHECK_RC(loom_graph_command(g, &cmd, NULL), 4);
    CHECK(strcmp(loom_graph_node_name(g, 4), "wc") == 0);          /* basename of argv[0] */
    loom_graph_node *n = &g->nodes[4];
    CHECK(n->kind == LOOM_GNODE_COMMAND && n->argc == 2 && strcmp(n->argv[1], "-l") == 0);
    CHECK(n->nenv == 1 && strcmp(n->env[0], "A=1") == 0);
    CHECK(n->noutputs == 1 && strcmp(n->outputs[0], "n.txt") == 0);
    CHECK(strcmp(n->cwd, "/tmp") == 0 && n->cwd != cmd.cwd);       /* copied */
    CHECK(loom__graph_node_noutputs(n) == 2);
    CHECK(loom__graph_node_noutputs(&g->nodes[0]) == 1);

    const char *odd[] = {"bin/tab\there/"};
    loom_command oddcmd = {odd, 1, NULL, 0, NULL, NULL, 0};
    CHECK_RC(loom_graph_command(g, &oddcmd, NULL), 5);
    CHECK(strcmp(loom_graph_node_name(g, 5), "bin/tab?here/") == 0);

    loom_graph_destroy(&g);
    CHECK(g == NULL);
    loom_graph_destroy(&g);
    loom_graph_destroy(NULL);
    CHECK(loom_graph_size(NULL) == LOOM_EINVAL);
}

static void test_builder_refs_and_args(void)
{
    loom_graph *g = NULL;
    REQUIRE(loom_graph_new(&g) == 0);
    loom_ref lib = some_lib(), r0, r1, other;
    const char *argv[] = {"sh"};
    const char *outs[] = {"a.txt", "b.txt"};
    loom_command cmd = {argv, 1, NULL, 0, NULL, outs, 2};
    CHECK_RC(loom_graph_command(g, &cmd, NULL), 0);
    CHECK_RC(loom_graph_task(g, lib, "use", NULL), 1);

    /* Outputs share the 16-byte task id and differ in the big-endian index. */
    CHECK_RC(loom_graph_ref(g, 0, 0, &r0), 0);
    CHECK_RC(loom_graph_ref(g, 0, 2, &r1), 0);
    CHECK(memcmp(r0.id, g->nodes[0].task_id, LOOM_TASK_ID_LEN) == 0);
    CHECK(memcmp(r0.id, r1.id, LOOM_TASK_ID_LEN) == 0);
    CHECK(memcmp(r0.id + 16, "\0\0\0\0", 4) == 0);
    CHECK(memcmp(r1.id + 16, "\0\0\0\2", 4) == 0);
    CHECK_RC(loom_graph_ref(g, 0, 3, &r1), LOOM_EINVAL);
    CHECK_RC(loom_graph_ref(g, 0, -1, &r1), LOOM_EINVAL);
    CHECK_RC(loom_graph_ref(g, 2, 0, &r1), LOOM_EINVAL);
    CHECK_RC(loom_graph_ref(g, 1, 1, &r1), LOOM_EINVAL);      /* functions have one output */
    CHECK_RC(loom_graph_ref(g, 1, 0, &other), 0);
    CHECK(memcmp(other.id, r0.id, LOOM_TASK_ID_LEN) != 0);     /* random ids differ */

    CHECK_RC(loom_graph_arg_node(g, 1, 0, 2), 0);
    CHECK_RC(loom_graph_arg_node(g, 1, 0, 3), LOOM_EINVAL);   /* no such output */
    CHECK_RC(loom_graph_arg_node(g, 1, 1, 0), LOOM_EINVAL);   /* src must be earlier */
    CHECK_RC(loom_graph_arg_node(g, 0, 1, 0), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_node(g, 1, -1, 0), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_value(g, 1, "xyz", 3), 0);
    CHECK_RC(loom_graph_arg_value(g, 1, NULL, 0), 0);
    CHECK_RC(loom_graph_arg_value(g, 1, NULL, 1), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_value(g, 5, "x", 1), LOOM_EINVAL);
    CHECK_RC(loom_graph_arg_ref(g, 1, other), 0);
    CHECK_RC(loom_graph_arg_ref(g, -1, other), LOOM_EINVAL);

    loom_graph_node *n = &g->nodes[1];
    REQUIRE(n->nargs == 4);
    CHECK(n->args[0].kind == LOOM_GARG_NODE && n->args[0].src == 0 && n->args[0].output == 2);
    loom_ref want;
    loom_graph_ref(g, 0, 2, &want);
    CHECK(memcmp(&n->args[0].ref, &want, sizeof want) == 0);
    CHECK(n->args[1].kind == LOOM_GARG_VALUE && n->args[1].len == 3 &&
          memcmp(n->args[1].data, "xyz", 3) == 0);
    CHECK(n->args[2].kind == LOOM_GARG_VALUE && n->args[2].len == 0);
    CHECK(n->args[3].kind == LOOM_GARG_REF && memcmp(&n->args[3].ref, &other, sizeof other) == 0);

    /* The argument limit. */
    for (int i = n->nargs; i < LOOM_GRAPH_MAX_ARGS; i++) CHECK_RC(loom_graph_arg_ref(g, 1, other), 0);
    CHECK_RC(loom_graph_arg_ref(g, 1, other), LOOM_ETOOBIG);
    CHECK_RC(loom_graph_arg_value(g, 1, "x", 1), LOOM_ETOOBIG);
    CHECK(g->nodes[1].nargs == LOOM_GRAPH_MAX_ARGS);
    loom_graph_destroy(&g);
}

/* ---- JSON --------------------------------------------------------------- */

typedef struct lib_calls {
    int n;
    char last[512];
    int fail_with;
} lib_calls;

static int fixed_lib(void *arg, const char *path, loom_ref *out)
{
    lib_calls *calls = arg;
    calls->n++;
    snprintf(calls->last, sizeof calls->last, "%s", path);
    if (calls->fail_with) return calls->fail_with;
    *out = some_lib();
    return 0;
}

static char tmpdir[64];

static void make_tmpdir(void)
{
    REQUIRE(loom__make_temp_dir(NULL, "loom-test-graph", tmpdir, sizeof tmpdir) == LOOM_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/words", tmpdir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("apple\nbanana\ncherry\n", f);
    fclose(f);
}

static void remove_tmpdir(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/words", tmpdir);
    unlink(path);
    rmdir(tmpdir);
}

static int parse(const char *json, lib_calls *calls, loom_graph **g, char *err, size_t errlen)
{
    return loom__graph_from_json(json, strlen(json), tmpdir, fixed_lib, calls, g, err, errlen);
}

/* The JSON text of a graph argument holding msgpack. */
static int arg_json_is(const loom_graph_arg *a, const char *want)
{
    char *json = NULL;
    int ok = a->kind == LOOM_GARG_VALUE &&
             loom_msgpack_to_json(a->data, a->len, &json) == 0 && strcmp(json, want) == 0;
    if (!ok) fprintf(stderr, "  arg json %s, want %s\n", json ? json : "(none)", want);
    free(json);
    return ok;
}

static const char example[] =
    "{\n"
    "  \"name\": \"wordcount\",\n"
    "  \"library\": \"build/examples/libwordcount.so\",\n"
    "  \"tasks\": [\n"
    "    {\"name\": \"split\", \"function\": \"split_text\", \"args\": [{\"file\": \"words\"}, 8]},\n"
    "    {\"name\": \"count0\", \"function\": \"count\", \"args\": [{\"ref\": \"split\", \"output\": 0}],"
    " \"num_cpus\": 1, \"memory\": \"64M\"},\n"
    "    {\"name\": \"lines\", \"command\": [\"sh\", \"-c\", \"wc -l < \\\"$LOOM_ARG_0\\\" > n.txt\"],\n"
    "     \"env\": {\"LC_ALL\": \"C\"}, \"cwd\": \"/tmp\", \"outputs\": [\"n.txt\"],"
    " \"args\": [{\"ref\": \"split\"}], \"check\": true}\n"
    "  ]\n"
    "}\n";

static void test_json_example(void)
{
    lib_calls calls = {0};
    loom_graph *g = NULL;
    char err[256] = "";
    CHECK_RC(parse(example, &calls, &g, err, sizeof err), 0);
    REQUIRE(g);
    CHECK(err[0] == 0);
    CHECK(loom_graph_size(g) == 3);
    CHECK(calls.n == 1);                        /* one library, loaded once */
    char want_lib[256];
    snprintf(want_lib, sizeof want_lib, "%s/build/examples/libwordcount.so", tmpdir);
    CHECK(strcmp(calls.last, want_lib) == 0);

    loom_ref lib = some_lib(), split0;
    const loom_graph_node *split = &g->nodes[0], *count = &g->nodes[1], *lines = &g->nodes[2];
    CHECK(strcmp(split->name, "split") == 0 && split->kind == LOOM_GNODE_FUNCTION);
    CHECK(strcmp(split->function, "split_text") == 0);
    CHECK(memcmp(&split->lib, &lib, sizeof lib) == 0);
    REQUIRE(split->nargs == 2);
    CHECK(split->args[0].kind == LOOM_GARG_VALUE && split->args[0].len == 20 &&
          memcmp(split->args[0].data, "apple\nbanana\ncherry\n", 20) == 0);
    CHECK(split->args[1].len == 1 && split->args[1].data[0] == 8);   /* msgpack 8 */
    CHECK(split->num_cpus == 1 && split->memory == 0);

    loom_graph_ref(g, 0, 0, &split0);
    CHECK(strcmp(count->name, "count0") == 0 && strcmp(count->function, "count") == 0);
    CHECK(count->memory == 64ull << 20);
    REQUIRE(count->nargs == 1);
    CHECK(count->args[0].kind == LOOM_GARG_NODE && count->args[0].src == 0 &&
          count->args[0].output == 0);
    CHECK(memcmp(&count->args[0].ref, &split0, sizeof split0) == 0);

    CHECK(strcmp(lines->name, "lines") == 0 && lines->kind == LOOM_GNODE_COMMAND);
    CHECK(lines->argc == 3 && strcmp(lines->argv[0], "sh") == 0 &&
          strcmp(lines->argv[2], "wc -l < \"$LOOM_ARG_0\" > n.txt") == 0);
    CHECK(lines->nenv == 1 && strcmp(lines->env[0], "LC_ALL=C") == 0);
    CHECK(lines->cwd && strcmp(lines->cwd, "/tmp") == 0);
    CHECK(lines->noutputs == 1 && strcmp(lines->outputs[0], "n.txt") == 0);
    CHECK(lines->nocheck == 0);
    REQUIRE(lines->nargs == 1);
    CHECK(lines->args[0].kind == LOOM_GARG_NODE && lines->args[0].src == 0);
    loom_graph_destroy(&g);

    char name[8];
    CHECK_RC(loom__graph_json_name(example, strlen(example), name, sizeof name), 0);
    CHECK(strcmp(name, "wordcou") == 0);                 /* truncated to fit */
    CHECK_RC(loom__graph_json_name("{\"tasks\": []}", 13, name, sizeof name), 0);
    CHECK(name[0] == 0);
    CHECK_RC(loom__graph_json_name("{}", 2, NULL, 0), LOOM_EINVAL);
}

static void test_json_arg_forms(void)
{
    lib_calls calls = {0};
    loom_graph *g = NULL;
    char err[256] = "";
    const char *json =
        "{\"tasks\": [{\"function\": \"f\", \"library_ref\": "
        "\"000102030405060708090a0b0c0d0e0f10111213\", \"args\": ["
        "\"text\", \"a\\u0000b\", -5, 1.5, true, null, [1, \"x\"], {\"k\": {\"n\": [] }},"
        "{\"msgpack\": \"s\"}, {\"msgpack\": {\"file\": 1}},"
        "{\"ref_hex\": \"ffffffffffffffffffffffffffffffffffffffff\"}]}]}";
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), 0);
    REQUIRE(g);
    CHECK(calls.n == 0);                         /* library_ref needs no loading */
    const loom_graph_node *n = &g->nodes[0];
    CHECK(strcmp(n->name, "task0") == 0);        /* the default name */
    CHECK(n->lib.id[0] == 0 && n->lib.id[19] == 0x13);
    REQUIRE(n->nargs == 11);
    CHECK(n->args[0].len == 4 && memcmp(n->args[0].data, "text", 4) == 0);
    CHECK(n->args[1].len == 3 && memcmp(n->args[1].data, "a\0b", 3) == 0);
    CHECK(arg_json_is(&n->args[2], "-5"));
    CHECK(arg_json_is(&n->args[3], "1.5"));
    CHECK(n->args[3].len == 9 && n->args[3].data[0] == 0xcb);  /* float64 */
    CHECK(arg_json_is(&n->args[4], "true"));
    CHECK(arg_json_is(&n->args[5], "null"));
    CHECK(arg_json_is(&n->args[6], "[1,\"x\"]"));
    CHECK(arg_json_is(&n->args[7], "{\"k\":{\"n\":[]}}"));
    CHECK(arg_json_is(&n->args[8], "\"s\""));
    CHECK(arg_json_is(&n->args[9], "{\"file\":1}"));
    CHECK(n->args[10].kind == LOOM_GARG_REF && n->args[10].ref.id[0] == 0xff);
    loom_graph_destroy(&g);

    /* A library_ref works without any lib_fn. */
    json = "{\"tasks\": [{\"function\": \"f\", \"library_ref\": "
           "\"000102030405060708090a0b0c0d0e0f10111213\"}]}";
    CHECK_RC(loom__graph_from_json(json, strlen(json), NULL, NULL, NULL, &g, err, sizeof err), 0);
    loom_graph_destroy(&g);
}

static void test_json_options(void)
{
    lib_calls calls = {0};
    loom_graph *g = NULL;
    char err[256] = "";
    const char *json =
        "{\"library\": \"/abs/lib.so\", \"tasks\": ["
        "{\"function\": \"a\", \"memory\": 1024, \"num_cpus\": 0},"
        "{\"function\": \"b\", \"memory\": \"2k\", \"num_cpus\": 2.5},"
        "{\"function\": \"c\", \"memory\": \"1G\", \"library\": \"other.so\"},"
        "{\"function\": \"d\", \"library\": \"/abs/lib.so\"},"
        "{\"command\": [\"true\"], \"check\": false}]}";
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), 0);
    REQUIRE(g && loom_graph_size(g) == 5);
    CHECK(calls.n == 2);                          /* /abs/lib.so once, other.so once */
    CHECK(g->nodes[0].memory == 1024 && g->nodes[0].num_cpus == 1);
    CHECK(g->nodes[1].memory == 2048 && g->nodes[1].num_cpus == 2.5);
    CHECK(g->nodes[2].memory == 1ull << 30);
    CHECK(strcmp(g->nodes[3].name, "task3") == 0);
    CHECK(g->nodes[4].nocheck == 1 && strcmp(g->nodes[4].name, "task4") == 0);
    CHECK(g->nodes[4].cwd == NULL);
    loom_graph_destroy(&g);
}

/* Tasks listed after the tasks that use them are added first. */
static void test_json_reorder(void)
{
    lib_calls calls = {0};
    loom_graph *g = NULL;
    char err[256] = "";
    const char *json =
        "{\"library\": \"l.so\", \"tasks\": ["
        "{\"name\": \"last\", \"function\": \"f\", \"args\": [{\"ref\": \"mid\"}, {\"ref\": \"first\"}]},"
        "{\"name\": \"mid\", \"command\": [\"x\"], \"outputs\": [\"o\"], \"args\": [{\"ref\": \"first\"}]},"
        "{\"name\": \"first\", \"function\": \"f\"},"
        "{\"name\": \"alone\", \"function\": \"f\"},"
        "{\"name\": \"usemid\", \"function\": \"f\", \"args\": [{\"ref\": \"mid\", \"output\": 1}]}]}";
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), 0);
    REQUIRE(g && loom_graph_size(g) == 5);
    int first = loom_graph_find(g, "first"), mid = loom_graph_find(g, "mid"),
        last = loom_graph_find(g, "last"), usemid = loom_graph_find(g, "usemid");
    CHECK(first == 0 && mid == 1 && last == 2 && loom_graph_find(g, "alone") == 3 && usemid == 4);
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nargs; j++)
            if (g->nodes[i].args[j].kind == LOOM_GARG_NODE) CHECK(g->nodes[i].args[j].src < i);
    CHECK(g->nodes[last].args[0].src == mid && g->nodes[last].args[1].src == first);
    CHECK(g->nodes[usemid].args[0].src == mid && g->nodes[usemid].args[0].output == 1);
    loom_graph_destroy(&g);

    /* A graph already in order keeps its numbering. */
    json = "{\"library\": \"l.so\", \"tasks\": [{\"name\": \"a\", \"function\": \"f\"},"
           "{\"name\": \"b\", \"function\": \"f\", \"args\": [{\"ref\": \"a\"}]},"
           "{\"name\": \"c\", \"function\": \"f\"}]}";
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), 0);
    REQUIRE(g);
    CHECK(loom_graph_find(g, "a") == 0 && loom_graph_find(g, "b") == 1 &&
          loom_graph_find(g, "c") == 2);
    loom_graph_destroy(&g);
}

/* Parse json and expect failure rc with a message containing want. */
static void expect_error(const char *json, int want_rc, const char *want)
{
    lib_calls calls = {0};
    loom_graph *g = (loom_graph *)&calls;   /* must be reset to NULL */
    char err[256] = "";
    int rc = parse(json, &calls, &g, err, sizeof err);
    CHECK_RC(rc, want_rc);
    CHECK(g == NULL);
    CHECK(strstr(err, want) != NULL);
    CHECK(strchr(err, '\n') == NULL);
    if (!strstr(err, want)) fprintf(stderr, "  message \"%s\", want \"%s\"\n", err, want);
}

#define FN "\"function\": \"f\""

static void test_json_errors(void)
{
    expect_error("{\"tasks\": [}", LOOM_EINVAL, "line 1 column 12: ");
    expect_error("{\n  \"tasks\": [\n    {\"name\": 1,}\n]}", LOOM_EINVAL, "line 3 column ");
    expect_error("[]", LOOM_EINVAL, "top level: must be an object");
    expect_error("{\"taks\": []}", LOOM_EINVAL, "top level: unknown key 'taks'");
    expect_error("{}", LOOM_EINVAL, "tasks: must be an array");
    expect_error("{\"name\": 3, \"tasks\": []}", LOOM_EINVAL, "name: must be a string");
    expect_error("{\"tasks\": [3]}", LOOM_EINVAL, "tasks[0]: must be an object");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"num_cpu\": 2}]}", LOOM_EINVAL,
                 "tasks[0]: unknown key 'num_cpu'");
    expect_error("{\"tasks\": [{\"name\": \"x\"}]}", LOOM_EINVAL,
                 "tasks[0]: give exactly one of \"function\" or \"command\"");
    expect_error("{\"tasks\": [{" FN ", \"command\": [\"a\"]}]}", LOOM_EINVAL,
                 "tasks[0]: give exactly one of");
    expect_error("{\"tasks\": [{" FN "}]}", LOOM_EINVAL,
                 "tasks[0]: function task without a library");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"function\": \"a.b\"}]}", LOOM_EINVAL,
                 "tasks[0].function: must be 1-255 characters of [A-Za-z0-9_]");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"env\": {}}]}", LOOM_EINVAL,
                 "tasks[0].env: only for command tasks");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"library\": \"l\"}]}", LOOM_EINVAL,
                 "tasks[0].library: only for function tasks");
    expect_error("{\"tasks\": [{\"command\": []}]}", LOOM_EINVAL,
                 "tasks[0].command: must be a non-empty array of strings");
    expect_error("{\"tasks\": [{\"command\": [\"a\", 2]}]}", LOOM_EINVAL,
                 "tasks[0].command[1]: must be a string");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"outputs\": [\"x/y\"]}]}", LOOM_EINVAL,
                 "tasks[0].outputs[0]: must be a plain file name");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"outputs\": [\"..\"]}]}", LOOM_EINVAL,
                 "tasks[0].outputs[0]: must be a plain file name");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"env\": {\"A\": 1}}]}", LOOM_EINVAL,
                 "tasks[0].env.A: must be a string");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"env\": {\"A=B\": \"1\"}}]}", LOOM_EINVAL,
                 "tasks[0].env: bad variable name 'A=B'");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"check\": 1}]}", LOOM_EINVAL,
                 "tasks[0].check: must be true or false");
    expect_error("{\"tasks\": [{\"command\": [\"a\"], \"cwd\": \"\"}]}", LOOM_EINVAL,
                 "tasks[0].cwd: must not be empty");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"memory\": \"12Q\"}]}", LOOM_EINVAL,
                 "tasks[0].memory: must be a non-negative integer or a string like \"64M\"");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"memory\": -1}]}", LOOM_EINVAL,
                 "tasks[0].memory: must be");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"memory\": \"99999999999T\"}]}",
                 LOOM_EINVAL, "tasks[0].memory: must be");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"num_cpus\": 2000}]}", LOOM_EINVAL,
                 "tasks[0].num_cpus: must be a number from 0 to 1024");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"num_cpus\": \"2\"}]}", LOOM_EINVAL,
                 "tasks[0].num_cpus: must be a number");
    expect_error("{\"tasks\": [{" FN ", \"library_ref\": \"abc\"}]}", LOOM_EINVAL,
                 "tasks[0].library_ref: must be 40 hex characters");
    expect_error("{\"tasks\": [{" FN ", \"library\": \"a\", \"library_ref\": \"abc\"}]}",
                 LOOM_EINVAL, "tasks[0]: give \"library\" or \"library_ref\", not both");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"name\": \"a\", " FN "},"
                 " {\"name\": \"a\", " FN "}]}", LOOM_EINVAL,
                 "tasks[1].name: duplicate task name 'a'");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"name\": \"task1\", " FN "}, {" FN "}]}",
                 LOOM_EINVAL, "tasks[1].name: duplicate task name 'task1'");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"name\": \"\", " FN "}]}", LOOM_EINVAL,
                 "tasks[0].name: must not be empty");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"name\": \"a\\nb\", " FN "}]}", LOOM_EINVAL,
                 "tasks[0].name: must be 1-255 bytes without control characters");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"args\": 1}]}", LOOM_EINVAL,
                 "tasks[0].args: must be an array");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN "}, {" FN ", \"args\": [1, {\"ref\": \"foo\"}]}]}",
                 LOOM_EINVAL, "tasks[1].args[1]: unknown task 'foo' in ref");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN "}, {" FN ", \"args\": [{\"ref\": \"task0\", \"output\": 1}]}]}",
                 LOOM_EINVAL, "tasks[1].args[0]: task 'task0' has no output 1 (it has 1)");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN "}, {" FN ", \"args\": [{\"ref\": \"task0\", \"output\": \"0\"}]}]}",
                 LOOM_EINVAL, "tasks[1].args[0].output: must be an integer");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN "}, {" FN ", \"args\": [{\"ref\": \"task0\", \"ouput\": 0}]}]}",
                 LOOM_EINVAL, "tasks[1].args[0]: unknown key 'ouput'");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"args\": [{\"file\": \"words\", \"x\": 1}]}]}",
                 LOOM_EINVAL, "tasks[0].args[0]: unknown key 'x'");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"args\": [{\"ref_hex\": \"zz\"}]}]}",
                 LOOM_EINVAL, "tasks[0].args[0]: must be 40 hex characters");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"args\": [{\"msgpack\": 1, \"b\": 2}]}]}",
                 LOOM_EINVAL, "tasks[0].args[0]: unknown key 'b'");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"args\": [{\"file\": \"missing\"}]}]}",
                 LOOM_EINVAL, "/missing': No such file or directory");
    expect_error("{\"library\": \"l\", \"tasks\": [{" FN ", \"args\": [{\"file\": \"/\"}]}]}",
                 LOOM_EINVAL, "tasks[0].args[0]: cannot read '/': not a regular file");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"name\": \"a\", " FN ", \"args\": [{\"ref\": \"a\"}]}]}",
                 LOOM_EINVAL, "tasks[0]: dependency cycle: 'a' needs 'a'");
    expect_error("{\"library\": \"l\", \"tasks\": ["
                 "{\"name\": \"top\", " FN ", \"args\": [{\"ref\": \"a\"}]},"
                 "{\"name\": \"a\", " FN ", \"args\": [{\"ref\": \"b\"}]},"
                 "{\"name\": \"b\", " FN ", \"args\": [{\"ref\": \"c\"}]},"
                 "{\"name\": \"c\", " FN ", \"args\": [{\"ref\": \"a\"}]}]}",
                 LOOM_EINVAL, "dependency cycle: '");
    expect_error("{\"tasks\": [], \"tasks\": []}", LOOM_EINVAL, "duplicate object key");
    expect_error("{\"tasks\": [{\"name\": \"x\\u0000y\", \"command\": [\"a\"]}]}", LOOM_EINVAL,
                 "tasks[0].name: contains a NUL byte");
    expect_error("{\"library\": \"l\", \"tasks\": [{\"bad\\nkey\": 1}]}", LOOM_EINVAL,
                 "tasks[0]: unknown key 'bad?key'");
}

static void test_json_cycle_names_its_members(void)
{
    lib_calls calls = {0};
    loom_graph *g = NULL;
    char err[256] = "";
    const char *json =
        "{\"library\": \"l\", \"tasks\": ["
        "{\"name\": \"top\", \"function\": \"f\", \"args\": [{\"ref\": \"a\"}]},"
        "{\"name\": \"a\", \"function\": \"f\", \"args\": [{\"ref\": \"b\"}]},"
        "{\"name\": \"b\", \"function\": \"f\", \"args\": [{\"ref\": \"c\"}]},"
        "{\"name\": \"c\", \"function\": \"f\", \"args\": [{\"ref\": \"a\"}]}]}";
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), LOOM_EINVAL);
    /* The walk may start anywhere on the cycle; 'top' is not on it. */
    CHECK(strstr(err, "'top'") == NULL);
    CHECK(strstr(err, "'a' needs 'b' needs 'c' needs 'a'") ||
          strstr(err, "'b' needs 'c' needs 'a' needs 'b'") ||
          strstr(err, "'c' needs 'a' needs 'b' needs 'c'"));
    if (!strstr(err, "needs")) fprintf(stderr, "  message: %s\n", err);
}

static void test_json_library_errors(void)
{
    lib_calls calls = {0};
    loom_graph *g = NULL;
    char err[256] = "";
    const char *json = "{\"library\": \"l.so\", \"tasks\": [{\"function\": \"f\"}]}";
    calls.fail_with = LOOM_ENOTFOUND;
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), LOOM_ENOTFOUND);
    CHECK(strstr(err, "tasks[0]: cannot load library '") && strstr(err, "/l.so': not found"));
    CHECK(g == NULL);
    CHECK_RC(loom__graph_from_json(json, strlen(json), NULL, NULL, NULL, &g, err, sizeof err),
             LOOM_EINVAL);
    CHECK(strstr(err, "library 'l.so' cannot be loaded here; give \"library_ref\""));
    /* Command-only graphs never load the top-level library. */
    calls.n = 0;
    calls.fail_with = 0;
    json = "{\"library\": \"l.so\", \"tasks\": [{\"command\": [\"true\"]}]}";
    CHECK_RC(parse(json, &calls, &g, err, sizeof err), 0);
    CHECK(calls.n == 0);
    loom_graph_destroy(&g);
    /* Bad arguments of the call itself, and a small err buffer. */
    CHECK_RC(loom__graph_from_json(NULL, 3, NULL, NULL, NULL, &g, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(loom__graph_from_json("{}", 2, NULL, NULL, NULL, NULL, err, sizeof err), LOOM_EINVAL);
    CHECK_RC(loom__graph_from_json("{}", 2, NULL, NULL, NULL, &g, err, 4), LOOM_EINVAL);
    CHECK(strlen(err) == 3);
    CHECK_RC(loom__graph_from_json("{}", 2, NULL, NULL, NULL, &g, NULL, 0), LOOM_EINVAL);
    json = "{\"tasks\": []}";
    CHECK_RC(loom__graph_from_json(json, strlen(json), NULL, NULL, NULL, &g, NULL, 0), 0);
    CHECK(g && loom_graph_size(g) == 0);
    loom_graph_destroy(&g);
}

int main(void)
{
    make_tmpdir();
    test_builder_validation();
    test_builder_refs_and_args();
    test_json_example();
    test_json_arg_forms();
    test_json_options();
    test_json_reorder();
    test_json_errors();
    test_json_cycle_names_its_members();
    test_json_library_errors();
    remove_tmpdir();
    return TEST_DONE();
}
