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

#define LOOM_GRAPH_MAX_RES 16
#define LOOM_GRAPH_MAX_LABELS 32
/* Options beyond CPUs and memory (GPUs, custom resources, labels, strategy,
 * placement group) and actor fields: allocated only for nodes that use them. */
typedef struct loom_graph_extra {
    double num_gpus;
    uint64_t gpu_memory;
    int nres;
    char *res_name[LOOM_GRAPH_MAX_RES];      /* owned */
    double res_amount[LOOM_GRAPH_MAX_RES];
    int nlabels;
    char *label_key[LOOM_GRAPH_MAX_LABELS];  /* owned */
    char *label_value[LOOM_GRAPH_MAX_LABELS];
    int strategy;
    uint32_t node;
    int soft;
    int has_pg;
    uint8_t pg[16];
    int bundle;
    int actor_op;                            /* LOOM_ACTOR_* of runtime/wire.h */
    uint8_t actor[16];
    uint32_t max_concurrency;
    int detached;
    char *actor_name;                        /* owned or NULL */
    uint32_t max_retries;                    /* resolved: LOOM_DEFAULT_RETRIES unless set */
    int retry_on_error;
    int32_t max_restarts;
    uint32_t max_task_retries;
} loom_graph_extra;

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
    loom_graph_extra *extra;             /* owned, or NULL */
    loom_graph_arg *args; int nargs, cap_args;
} loom_graph_node;

/* Fill n->extra from opts (GPUs, resources, labels, strategy, placement
 * group) when opts asks for any of them.  0 or LOOM_EINVAL / LOOM_ENOMEM. */
int loom__graph_apply_extra(loom_graph_node *n, const loom_task_opts *opts);
void loom__graph_extra_free(loom_graph_extra *e);

struct loom_graph {
    loom_graph_node *nodes;
    int nnodes, cap_nodes;
};

/* Number of outputs of a node: 1 for a function, 1 + noutputs for a command. */
int loom__graph_node_noutputs(const loom_graph_node *n);

/* Make the ref of output `index` of a task. */
void loom__ref_make(const uint8_t task_id[LOOM_TASK_ID_LEN], uint32_t index, loom_ref *out);

#endif
