/* tests/fuzz/fuzz_graph_json.c — fuzz target for the JSON graph reader
 * (api/graph_json.c): any bytes must give either a well-formed acyclic graph
 * or an error with a one-line message, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "api/graph_internal.h"
#include "api/graph_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fixed_lib(void *arg, const char *path, loom_ref *out)
{
    memset(out->id, 0x5a, sizeof out->id);
    return 0;
}

/* What a successful parse promises the client that encodes the graph. */
static void check_graph(const loom_graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        const loom_graph_node *n = &g->nodes[i];
        if (!n->name || !n->name[0]) abort();
        if (n->kind == LOOM_GNODE_FUNCTION && !n->function) abort();
        if (n->kind == LOOM_GNODE_COMMAND && (n->argc < 1 || !n->argv[0])) abort();
        for (int j = 0; j < n->nargs; j++) {
            const loom_graph_arg *a = &n->args[j];
            if (a->kind != LOOM_GARG_NODE) continue;
            if (a->src < 0 || a->src >= i) abort();
            if (a->output < 0 || a->output >= loom__graph_node_noutputs(&g->nodes[a->src])) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_graph *g = NULL;
    char err[256];
    int rc = loom__graph_from_json((const char *)data, size, NULL, fixed_lib, NULL, &g,
                                   err, sizeof err);
    if (rc == 0) {
        if (!g) abort();
        check_graph(g);
    } else {
        if (g || !err[0] || strchr(err, '\n')) abort();
    }
    loom_graph_destroy(&g);
    return 0;
}
