/* examples/tree_reduce.c — a numeric tree reduction as one task graph:
 * N leaf tasks value(i) and N-1 add tasks that sum them pairwise, submitted in
 * one message.  The answer must be N(N+1)/2.
 *
 *   tree_reduce [--leaves N] [--nodes K] [--address HOST:PORT|local] [--lib PATH]
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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int leaves = 1000, nodes = 1;
    const char *address = "local", *lib_path = LOOM_EXAMPLES_LIB;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--leaves")) leaves = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--nodes")) nodes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--address")) address = argv[i + 1];
        else if (!strcmp(argv[i], "--lib")) lib_path = argv[i + 1];
    }
    if (leaves < 1) leaves = 1;
    loom_connect_opts co = {.num_nodes = nodes};
    loom_client *c;
    int rc = loom_connect(address, &co, &c);
    if (rc) {
        fprintf(stderr, "connect: %s\n", loom_strerror(rc));
        return 1;
    }
    loom_ref lib;
    if ((rc = loom_library_load(c, lib_path, &lib))) {
        fprintf(stderr, "library: %s\n", loom_last_error(c));
        loom_disconnect(&c);
        return 1;
    }
    double t0 = now();
    loom_graph *g;
    loom_graph_new(&g);
    int *level = malloc(sizeof(int) * (size_t)leaves);
    loom_pack *p = loom_pack_new();
    for (int i = 0; i < leaves; i++) {
        level[i] = loom_graph_task(g, lib, "value", NULL);
        loom_pack_reset(p);
        loom_pack_i64(p, i + 1);
        loom_graph_arg_value(g, level[i], loom_pack_data(p), loom_pack_size(p));
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
    loom_ref root;
    loom_graph_ref(g, level[0], 0, &root);
    int ntasks = loom_graph_size(g);
    rc = loom_graph_submit(c, g, NULL, NULL);
    if (rc) {
        fprintf(stderr, "submit: %s\n", loom_last_error(c));
        return 1;
    }
    loom_value *v;
    rc = loom_get(c, root, 600000, &v);
    double dt = now() - t0;
    int ok = 0;
    if (rc) {
        fprintf(stderr, "get: %s: %s\n", loom_strerror(rc), loom_last_error(c));
    } else {
        loom_unpack u;
        int64_t sum = 0;
        loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
        loom_unpack_i64(&u, &sum);
        int64_t want = (int64_t)leaves * (leaves + 1) / 2;
        ok = sum == want;
        printf("tree_reduce: %d tasks on %s: sum %lld (%s, expected %lld) in %.3f s, %.0f tasks/s\n",
               ntasks, strcmp(address, "local") ? address : (nodes > 1 ? "a local cluster of several nodes" : "a local cluster"), (long long)sum, ok ? "correct" : "WRONG", (long long)want, dt, ntasks / dt);
        loom_value_release(&v);
    }
    loom_pack_destroy(&p);
    free(level);
    loom_graph_destroy(&g);
    loom_disconnect(&c);
    return ok ? 0 : 1;
}
