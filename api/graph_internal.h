/* api/graph_internal.h — the in-memory form of a task graph, shared by the graph
 * builder (graph.c), the JSON reader (graph_json.c) and the client, which
 * encodes it into one SUBMIT message (client.c).  Not a public header. */
#ifndef LOOM_API_GRAPH_INTERNAL_H
#define LOOM_API_GRAPH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "loom/loom.h"

#ifndef LOOM_TASK_ID_LEN
#define LOOM_TASK_ID_LEN 16
#endif
#define LOOM_GRAPH_MAX_NODES (1 << 22)
#define LOOM_GRAPH_MAX_ARGS 4096
#define LOOM_NAME_MAX 256

enum { LOOM_GARG_VALUE = 0, LOOM_GARG_REF = 1, LOOM_GARG_NODE = 2 };

typedef struct loom_graph_arg {
    int kind;
    uint8_t *data;       /* VALUE: owned copy */
    size_t len;
    loom_ref ref;        /* REF; for NODE: filled with the source's output ref */
    int src, output;     /* NODE */
} loom_graph_arg;

enum { LOOM_GNODE_FUNCTION = 0, LOOM_GNODE_COMMAND = 1 };

typedef struct loom_graph_node {
    int kind;
    uint8_t task_id[LOOM_TASK_ID_LEN];  /* random; output i's ref = task_id ++ be32(i) */
    char *name;                          /* owned; never NULL */
    /* FUNCTION */
    loom_ref lib;
    char *function;                      /* owned */
    /* COMMAND */
    char **argv; int argc;               /* owned */
    char **env; int nenv;                /* owned, "K=V" */
    char *cwd;                           /* owned or NULL */
    char **outputs; int noutputs;        /* owned */
    int nocheck;
    /* both */
    double num_cpus;
    uint64_t memory;
    loom_graph_arg *args; int nargs, cap_args;
} loom_graph_node;

struct loom_graph {
    loom_graph_node *nodes;
    int nnodes, cap_nodes;
};

/* Number of outputs of a node: 1 for a function, 1 + noutputs for a command. */
int loom_graph_node_noutputs(const loom_graph_node *n);

/* Make the ref of output `index` of a task. */
void loom_ref_make(const uint8_t task_id[LOOM_TASK_ID_LEN], uint32_t index, loom_ref *out);

#endif
