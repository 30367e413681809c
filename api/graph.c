/* api/graph.c — the task-graph builder (loom_graph_* in loom/loom.h).
 *
 * A graph is an array of nodes in the order they are added.  Every node gets a
 * random 16-byte task id, so the refs of its outputs (task id ++ be32(index))
 * are known before submission.  An argument may only name an earlier node, so
 * a graph is acyclic by construction.  Adding a node or an argument either
 * succeeds or leaves the graph unchanged; every string and value is copied and
 * owned by the graph until loom_graph_destroy.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "api/graph_internal.h"
#include "runtime/ids.h"

#define LOOM_FUNCTION_NAME_MAX 255
#define LOOM_MAX_CPUS 1024.0

/* ---- small helpers ------------------------------------------------------ */

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* A copy of at most max bytes of s, cut on a UTF-8 character boundary. */
static char *dup_name_truncated(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    }
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void free_strv(char **v, int n)
{
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Copy n strings; *out is NULL when n is 0. */
static int dup_strv(const char *const *v, int n, char ***out)
{
    *out = NULL;
    if (n == 0) return LOOM_OK;
    char **d = calloc((size_t)n, sizeof *d);
    if (!d) return LOOM_ENOMEM;
    for (int i = 0; i < n; i++) {
        d[i] = dup_str(v[i]);
        if (!d[i]) {
            free_strv(d, i);
            return LOOM_ENOMEM;
        }
    }
    *out = d;
    return LOOM_OK;
}

static int valid_function_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > LOOM_FUNCTION_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_';
        if (!ok) return 0;
    }
    return 1;
}

/* A node name: 1..LOOM_NAME_MAX-1 bytes, no control characters (names end up
 * in logs and status tables, one per line). */
static int valid_node_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n >= LOOM_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

/* An output is a file the command leaves in its working directory. */
static int valid_output_name(const char *s)
{
    if (!s || !*s || strchr(s, '/')) return 0;
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* "NAME=VALUE" with a non-empty NAME. */
static int valid_env_entry(const char *s)
{
    return s && s[0] != '=' && strchr(s, '=') != NULL;
}

/* Resources shared by both node kinds.  opts NULL and num_cpus 0 mean 1 CPU. */
void loom__graph_extra_free(loom_graph_extra *e)
{
    if (!e) return;
    for (int i = 0; i < e->nres; i++) free(e->res_name[i]);
    for (int i = 0; i < e->nlabels; i++) {
        free(e->label_key[i]);
        free(e->label_value[i]);
    }
    free(e->actor_name);
    free(e);
}

static int wants_extra(const loom_task_opts *o)
{
    return o->num_gpus != 0 || o->gpu_memory || o->nresources || o->nlabels || o->strategy || o->pg ||
           o->max_retries || o->retry_on_error;
}

static int valid_label_part(const char *s, size_t max, int allow_empty)
{
    if (!s) return 0;
    size_t n = strlen(s);
    return (allow_empty || n > 0) && n <= max;
}

int loom__graph_apply_extra(loom_graph_node *n, const loom_task_opts *o)
{
    if (!o || !wants_extra(o)) return LOOM_OK;
    double g = o->num_gpus;
    if (isnan(g) || g < 0 || g > 16 || (g > 1 && g != floor(g))) return LOOM_EINVAL;
    if (o->gpu_memory && g <= 0) return LOOM_EINVAL;
    if (o->nresources < 0 || o->nresources > LOOM_GRAPH_MAX_RES || (o->nresources && !o->resources)) return LOOM_EINVAL;
    if (o->nlabels < 0 || o->nlabels > LOOM_GRAPH_MAX_LABELS || (o->nlabels && !o->labels)) return LOOM_EINVAL;
    if (o->strategy < LOOM_SCHED_DEFAULT || o->strategy > LOOM_SCHED_NODE) return LOOM_EINVAL;
    if (o->pg && (o->bundle < -1 || o->bundle >= 256)) return LOOM_EINVAL;
    if (o->max_retries < LOOM_NO_RETRY || o->max_retries > 1000) return LOOM_EINVAL;
    for (int i = 0; i < o->nresources; i++) {
        const loom_resource *r = &o->resources[i];
        if (!valid_label_part(r->name, 63, 0) || isnan(r->amount) || r->amount <= 0 || r->amount > 1e12)
            return LOOM_EINVAL;
        for (int k = 0; k < i; k++)
            if (!strcmp(r->name, o->resources[k].name)) return LOOM_EINVAL;
    }
    for (int i = 0; i < o->nlabels; i++)
        if (!valid_label_part(o->labels[i].key, 63, 0) || !valid_label_part(o->labels[i].value, 255, 1))
            return LOOM_EINVAL;
    loom_graph_extra *e = calloc(1, sizeof(*e));
    if (!e) return LOOM_ENOMEM;
    e->num_gpus = g;
    e->gpu_memory = o->gpu_memory;
    e->strategy = o->strategy;
    e->node = o->node;
    e->soft = o->soft ? 1 : 0;
    e->bundle = -1;
    e->max_retries = o->max_retries == 0 ? LOOM_DEFAULT_RETRIES : o->max_retries < 0 ? 0 : (uint32_t)o->max_retries;
    e->retry_on_error = o->retry_on_error ? 1 : 0;
    if (o->pg) {
        e->has_pg = 1;
        memcpy(e->pg, o->pg->id, 16);
        e->bundle = o->bundle;
    }
    int rc = LOOM_OK;
    for (int i = 0; i < o->nresources && !rc; i++) {
        e->res_name[i] = dup_str(o->resources[i].name);
        e->res_amount[i] = o->resources[i].amount;
        e->nres++;
        if (!e->res_name[i]) rc = LOOM_ENOMEM;
    }
    for (int i = 0; i < o->nlabels && !rc; i++) {
        e->label_key[i] = dup_str(o->labels[i].key);
        e->label_value[i] = dup_str(o->labels[i].value);
        e->nlabels++;
        if (!e->label_key[i] || !e->label_value[i]) rc = LOOM_ENOMEM;
    }
    if (rc) {
        loom__graph_extra_free(e);
        return rc;
    }
    n->extra = e;
    return LOOM_OK;
}

static int apply_opts(loom_graph_node *n, const loom_task_opts *opts)
{
    n->num_cpus = 1;
    if (!opts) return LOOM_OK;
    double cpus = opts->num_cpus;
    if (isnan(cpus) || cpus < 0 || cpus > LOOM_MAX_CPUS) return LOOM_EINVAL;
    if (opts->name && !valid_node_name(opts->name)) return LOOM_EINVAL;
    n->num_cpus = cpus == 0 ? 1 : cpus;
    n->memory = opts->memory;
    n->nocheck = opts->nocheck ? 1 : 0;
    return loom__graph_apply_extra(n, opts);
}

static void node_free(loom_graph_node *n)
{
    free(n->name);
    free(n->function);
    free_strv(n->argv, n->argc);
    free_strv(n->env, n->nenv);
    free(n->cwd);
    free_strv(n->outputs, n->noutputs);
    for (int i = 0; i < n->nargs; i++) free(n->args[i].data);
    free(n->args);
    loom__graph_extra_free(n->extra);
    memset(n, 0, sizeof *n);
}

static int graph_reserve_node(loom_graph *g)
{
    if (g->nnodes >= LOOM_GRAPH_MAX_NODES) return LOOM_ETOOBIG;
    if (g->nnodes < g->cap_nodes) return LOOM_OK;
    int cap = g->cap_nodes ? g->cap_nodes * 2 : 16;
    if (cap > LOOM_GRAPH_MAX_NODES) cap = LOOM_GRAPH_MAX_NODES;
    loom_graph_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
    if (!nodes) return LOOM_ENOMEM;
    g->nodes = nodes;
    g->cap_nodes = cap;
    return LOOM_OK;
}

/* Append a fully built node (the graph takes ownership on success). */
static int graph_append(loom_graph *g, loom_graph_node *n)
{
    int rc = graph_reserve_node(g);
    if (rc) return rc;
    loom__random_bytes(n->task_id, LOOM_TASK_ID_LEN);
    g->nodes[g->nnodes] = *n;
    return g->nnodes++;
}

static int node_reserve_arg(loom_graph_node *n)
{
    if (n->nargs >= LOOM_GRAPH_MAX_ARGS) return LOOM_ETOOBIG;
    if (n->nargs < n->cap_args) return LOOM_OK;
    int cap = n->cap_args ? n->cap_args * 2 : 4;
    if (cap > LOOM_GRAPH_MAX_ARGS) cap = LOOM_GRAPH_MAX_ARGS;
    loom_graph_arg *args = realloc(n->args, (size_t)cap * sizeof *args);
    if (!args) return LOOM_ENOMEM;
    n->args = args;
    n->cap_args = cap;
    return LOOM_OK;
}

static loom_graph_node *node_at(const loom_graph *g, int node)
{
    if (!g || node < 0 || node >= g->nnodes) return NULL;
    return &g->nodes[node];
}

/* ---- graph -------------------------------------------------------------- */

int loom_graph_new(loom_graph **out)
{
    if (!out) return LOOM_EINVAL;
    *out = calloc(1, sizeof **out);
    return *out ? LOOM_OK : LOOM_ENOMEM;
}

void loom_graph_destroy(loom_graph **g)
{
    if (!g || !*g) return;
    for (int i = 0; i < (*g)->nnodes; i++) node_free(&(*g)->nodes[i]);
    free((*g)->nodes);
    free(*g);
    *g = NULL;
}

int loom_graph_size(const loom_graph *g)
{
    return g ? g->nnodes : LOOM_EINVAL;
}

int loom__graph_node_noutputs(const loom_graph_node *n)
{
    if (!n) return 0;
    return n->kind == LOOM_GNODE_COMMAND ? 1 + n->noutputs : 1;
}

int loom_graph_task(loom_graph *g, loom_ref lib, const char *function,
                    const loom_task_opts *opts)
{
    if (!g || !function || !valid_function_name(function)) return LOOM_EINVAL;
    loom_graph_node n;
    memset(&n, 0, sizeof n);
    n.kind = LOOM_GNODE_FUNCTION;
    n.lib = lib;
    int rc = apply_opts(&n, opts);
    if (rc) return rc;
    n.function = dup_str(function);
    n.name = dup_str(opts && opts->name ? opts->name : function);
    rc = n.function && n.name ? graph_append(g, &n) : LOOM_ENOMEM;
    if (rc < 0) node_free(&n);
    return rc;
}

static int valid_command(const loom_command *cmd)
{
    if (!cmd->argv || cmd->argc < 1 || cmd->nenv < 0 || cmd->noutputs < 0) return LOOM_EINVAL;
    if (cmd->argc > LOOM_GRAPH_MAX_ARGS || cmd->nenv > LOOM_GRAPH_MAX_ARGS ||
        cmd->noutputs > LOOM_GRAPH_MAX_ARGS)
        return LOOM_ETOOBIG;
    if ((cmd->nenv && !cmd->env) || (cmd->noutputs && !cmd->outputs)) return LOOM_EINVAL;
    if (!cmd->argv[0] || !cmd->argv[0][0]) return LOOM_EINVAL;
    for (int i = 1; i < cmd->argc; i++)
        if (!cmd->argv[i]) return LOOM_EINVAL;
    for (int i = 0; i < cmd->nenv; i++)
        if (!valid_env_entry(cmd->env[i])) return LOOM_EINVAL;
    for (int i = 0; i < cmd->noutputs; i++)
        if (!valid_output_name(cmd->outputs[i])) return LOOM_EINVAL;
    if (cmd->cwd && !cmd->cwd[0]) return LOOM_EINVAL;
    return LOOM_OK;
}

/* The default name of a command node: the last path component of argv[0],
 * made a valid node name (cut to size, control characters as '?'). */
static char *command_name(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');
    const char *base = slash ? slash + 1 : argv0;
    if (!*base) base = argv0;   /* "dir/": keep it whole */
    char *name = dup_name_truncated(base, LOOM_NAME_MAX - 1);
    for (char *p = name; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return name;
}

static int copy_command(loom_graph_node *n, const loom_command *cmd)
{
    n->argc = cmd->argc;
    if (dup_strv(cmd->argv, cmd->argc, &n->argv)) return LOOM_ENOMEM;
    n->nenv = cmd->nenv;
    if (dup_strv(cmd->env, cmd->nenv, &n->env)) return LOOM_ENOMEM;
    n->noutputs = cmd->noutputs;
    if (dup_strv(cmd->outputs, cmd->noutputs, &n->outputs)) return LOOM_ENOMEM;
    if (cmd->cwd && !(n->cwd = dup_str(cmd->cwd))) return LOOM_ENOMEM;
    return LOOM_OK;
}

int loom_graph_command(loom_graph *g, const loom_command *cmd, const loom_task_opts *opts)
{
    if (!g || !cmd) return LOOM_EINVAL;
    int rc = valid_command(cmd);
    if (rc) return rc;
    loom_graph_node n;
    memset(&n, 0, sizeof n);
    n.kind = LOOM_GNODE_COMMAND;
    rc = apply_opts(&n, opts);
    if (rc) return rc;
    rc = copy_command(&n, cmd);
    if (!rc) {
        n.name = opts && opts->name ? dup_str(opts->name) : command_name(cmd->argv[0]);
        rc = n.name ? graph_append(g, &n) : LOOM_ENOMEM;
    }
    if (rc < 0) node_free(&n);   /* a vector that failed to copy is NULL: free_strv skips it */
    return rc;
}

/* ---- arguments ---------------------------------------------------------- */

static int append_arg(loom_graph *g, int node, const loom_graph_arg *arg)
{
    loom_graph_node *n = node_at(g, node);
    if (!n) return LOOM_EINVAL;
    int rc = node_reserve_arg(n);
    if (rc) return rc;
    n->args[n->nargs++] = *arg;
    return LOOM_OK;
}

int loom_graph_arg_value(loom_graph *g, int node, const void *data, size_t len)
{
    if (!node_at(g, node) || (!data && len)) return LOOM_EINVAL;
    loom_graph_arg a;
    memset(&a, 0, sizeof a);
    a.kind = LOOM_GARG_VALUE;
    a.data = malloc(len ? len : 1);
    if (!a.data) return LOOM_ENOMEM;
    if (len) memcpy(a.data, data, len);
    a.len = len;
    int rc = append_arg(g, node, &a);
    if (rc) free(a.data);
    return rc;
}

int loom_graph_arg_ref(loom_graph *g, int node, loom_ref ref)
{
    loom_graph_arg a;
    memset(&a, 0, sizeof a);
    a.kind = LOOM_GARG_REF;
    a.ref = ref;
    return append_arg(g, node, &a);
}

int loom_graph_arg_node(loom_graph *g, int node, int src, int output)
{
    if (!node_at(g, node) || src < 0 || src >= node) return LOOM_EINVAL;
    loom_graph_arg a;
    memset(&a, 0, sizeof a);
    int rc = loom_graph_ref(g, src, output, &a.ref);
    if (rc) return rc;
    a.kind = LOOM_GARG_NODE;
    a.src = src;
    a.output = output;
    return append_arg(g, node, &a);
}

/* ---- lookups ------------------------------------------------------------ */

int loom_graph_ref(const loom_graph *g, int node, int output, loom_ref *out)
{
    const loom_graph_node *n = node_at(g, node);
    if (!n || !out || output < 0 || output >= loom__graph_node_noutputs(n)) return LOOM_EINVAL;
    loom__ref_make(n->task_id, (uint32_t)output, out);
    return LOOM_OK;
}

const char *loom_graph_node_name(const loom_graph *g, int node)
{
    const loom_graph_node *n = node_at(g, node);
    return n ? n->name : NULL;
}

int loom_graph_find(const loom_graph *g, const char *name)
{
    if (!g || !name) return LOOM_EINVAL;
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return LOOM_ENOTFOUND;
}
