/* loom/loom.h — the driver-side public API of loom.
 *
 * A driver connects to a cluster (or starts a local one), loads task libraries,
 * puts objects, submits tasks or whole graphs, and gets results.  Every function
 * returns 0 (LOOM_OK) or a negative LOOM_E* code; loom_strerror() names the code
 * and loom_last_error() gives the detailed message of the client's last failure
 * (for a failed task: the task's own error message).
 *
 * Ownership: handles made by x_new/x_connect/x_get are freed by the matching
 * x_destroy/x_disconnect/x_release, which take a pointer to the handle and set it
 * to NULL.  A loom_client is not thread-safe: use one per thread.
 */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H

#include "loom/export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_VERSION_STRING "0.1.0"

/* Error codes.  All negative; 0 is success. */
enum {
    LOOM_OK = 0,
    LOOM_EINVAL = -1,      /* invalid argument */
    LOOM_ENOMEM = -2,      /* out of memory */
    LOOM_ETIMEOUT = -3,    /* timed out */
    LOOM_ECONN = -4,       /* cannot reach the cluster */
    LOOM_EAUTH = -5,       /* cluster secret missing or wrong */
    LOOM_ENOTFOUND = -6,   /* no such object, task, job or function */
    LOOM_ETASK = -7,       /* the task failed (message in loom_last_error) */
    LOOM_ECANCELLED = -8,  /* the task was cancelled */
    LOOM_ESTOREFULL = -9,  /* the object store cannot hold the object */
    LOOM_EPROTO = -10,     /* malformed or unexpected message */
    LOOM_EIO = -11,        /* file or socket I/O failed */
    LOOM_ETOOBIG = -12,    /* value larger than a limit */
    LOOM_EDEP = -13,       /* a dependency of the task failed */
    LOOM_ENODE = -14,      /* the node running the task died */
    LOOM_EINFEASIBLE = -15,/* no node can ever satisfy the request */
    LOOM_ESYS = -16,       /* system call failed (see loom_last_error) */
    LOOM_ESTATE = -17,     /* operation not valid in the current state */
    LOOM_EFULL = -18,      /* a queue or table is full; retry later */
    LOOM_EACTOR = -19,     /* the actor died, was killed, or its init failed */
    LOOM_EWORKER = -20     /* the executor running the task died (crash, kill, OOM) */
};

/* Human-readable name of an error code.  Never NULL; static storage. */
LOOM_API const char *loom_strerror(int err);

/* SHA-256 of len bytes at data as 64 lowercase hex digits and a NUL. */
LOOM_API void loom_sha256_hex(const void *data, size_t len, char out[65]);

#define LOOM_ID_LEN 20
/* A reference to an immutable object in the cluster: a put value or a task output.
 * The first 16 bytes name the task (or put), the last 4 the output index. */
typedef struct loom_ref {
    uint8_t id[LOOM_ID_LEN];
} loom_ref;

/* Hex form of a ref (40 chars + NUL) and back. */
LOOM_API void loom_ref_to_hex(const loom_ref *ref, char out[2 * LOOM_ID_LEN + 1]);
LOOM_API int loom_ref_from_hex(const char *hex, loom_ref *out);

/* ---- connecting -------------------------------------------------------- */

typedef struct loom_client loom_client;

/* What a node of a local cluster offers besides CPUs (see loom_connect_opts). */
typedef struct loom_node_spec {
    int num_gpus;             /* GPUs the node reports (simulated where there are
                                 none); -1: the GPUs found on the machine */
    uint64_t gpu_memory;      /* bytes per GPU to report (0: as found, or unknown) */
    const char *resources;    /* custom resources "NAME=AMOUNT,..." or NULL */
    const char *labels;       /* labels "KEY=VALUE,..." or NULL */
} loom_node_spec;

typedef struct loom_connect_opts {
    const char *secret;       /* cluster secret; default: read secret_file */
    const char *secret_file;  /* default: $LOOM_SECRET_FILE or <state_dir>/secret */
    const char *state_dir;    /* "local": where the cluster keeps its files;
                                 default: $LOOM_STATE_DIR or /tmp/loom-<uid> */
    int num_nodes;            /* "local": node daemons to start (default 1) */
    int num_cpus;             /* "local": CPUs per node (default: online CPUs) */
    uint64_t store_bytes;     /* "local": object store size per node (default 1 GiB) */
    const loom_node_spec *nodes; /* "local": num_nodes entries, or NULL: every node
                                    reports the machine's GPUs and nothing else */
    int heartbeat_timeout_ms;  /* "local": a node silent this long is dead (default 10000) */
    int64_t store_wait_ms;     /* a put that finds the store full waits this long for
                                  room (backpressure): 0 = the default (10000),
                                  -1 = fail at once with LOOM_ESTOREFULL */
} loom_connect_opts;

/* Connect to "HOST:PORT" (the head), or to "local": start a head and
 * opts->num_nodes daemons on this machine, stopped again by loom_disconnect (or
 * when this process exits).  NULL or "" means $LOOM_ADDRESS, else the address
 * file of a running `loom start --head` in the default state dir, else "local".
 * opts may be NULL. */
LOOM_API int loom_connect(const char *address, const loom_connect_opts *opts, loom_client **out);

/* Release everything the client holds, say goodbye to the head, stop a local
 * cluster the client started.  Tasks of the client's graphs that have not
 * finished are cancelled (detached graphs go on); the head does the same when
 * a driver's connection closes without a goodbye.  Sets *c to NULL.  NULL-safe. */
LOOM_API void loom_disconnect(loom_client **c);

/* Detailed message of the last failed call on this client ("" if none). */
LOOM_API const char *loom_last_error(const loom_client *c);

/* ---- task libraries ----------------------------------------------------- */

/* Upload a shared library of task functions (see loom/task.h) to the cluster.
 * *lib names it in loom_submit/loom_graph_task; it is content-addressed, so
 * loading the same file twice gives the same ref. */
LOOM_API int loom_library_load(loom_client *c, const char *path, loom_ref *lib);

/* ---- objects ------------------------------------------------------------ */

/* Copy len bytes into the cluster's object store.  The client holds a ref to
 * the object until loom_release or disconnect.  The bytes are stored (in the
 * node's store, or in the message for small ones) before it returns, but it
 * does not wait for the head's answer: the head reads the put before anything
 * this client sends after it, and if it refuses the put, loom_get of *out
 * returns why.  This client's own loom_get and loom_wait of *out answer at
 * once, without the head; another client that is handed the ref sees the
 * object once the head has read the put (after any later request of this
 * client's that the head answered). */
LOOM_API int loom_put(loom_client *c, const void *data, size_t len, loom_ref *out);

/* loom_put of the concatenation of n parts (a header and the buffers of an
 * array, say) without joining them first: when this machine has a node,
 * the parts are copied once, straight into its store. */
typedef struct loom_part {
    const void *data;
    size_t len;
} loom_part;
LOOM_API int loom_put_parts(loom_client *c, const loom_part *parts, int n, loom_ref *out);

/* A value got from the store.  When the object is on this machine's node the
 * bytes are mapped zero-copy from the store; the mapping stays valid until
 * loom_value_release. */
typedef struct loom_value loom_value;
LOOM_API const void *loom_value_data(const loom_value *v);
LOOM_API size_t loom_value_size(const loom_value *v);
LOOM_API void loom_value_release(loom_value **v);

/* Wait up to timeout_ms (-1: forever) for ref to be ready and return its value.
 * A failed task gives its error code (LOOM_ETASK, LOOM_EDEP, LOOM_ECANCELLED, …)
 * with the task's message in loom_last_error. */
LOOM_API int loom_get(loom_client *c, loom_ref ref, int64_t timeout_ms, loom_value **out);

/* Wait until at least num_ready of the n refs are done (succeeded or failed), or
 * timeout_ms passes.  ready[i] is set to 1 for each done ref, 0 otherwise.
 * Returns the number done (>= 0), or a negative error. */
LOOM_API int loom_wait(loom_client *c, const loom_ref *refs, int n, int num_ready,
              int64_t timeout_ms, int *ready);

/* Cancel the task that produces ref (queued: dropped; running: killed).  Its
 * outputs and those of tasks depending on it fail with LOOM_ECANCELLED. */
LOOM_API int loom_cancel(loom_client *c, loom_ref ref);

/* Drop the client's reference; the object is freed when nothing needs it. */
LOOM_API int loom_release(loom_client *c, loom_ref ref);
/* The same for n refs, in messages of up to 10,000 refs (one message per
 * ref kept a head busy for a while after a million results). */
LOOM_API int loom_release_many(loom_client *c, const loom_ref *refs, int n);

/* ---- tasks -------------------------------------------------------------- */

/* A custom resource amount ({"nvlink", 1}) and a node label (key=value). */
typedef struct loom_resource {
    const char *name;
    double amount;
} loom_resource;
typedef struct loom_label {
    const char *key;
    const char *value;
} loom_label;

/* Scheduling strategies of a task or actor. */
enum {
    LOOM_SCHED_DEFAULT = 0, /* data locality first (the node holding most argument
                               bytes), else pack onto a node until it is busy, then spread */
    LOOM_SCHED_SPREAD = 1,  /* the least loaded node, round-robin among equals */
    LOOM_SCHED_NODE = 2     /* node affinity: the node `node`; soft = 1 falls back
                               to the default when it cannot run there */
};

/* A placement group: bundles of resources reserved together (loom_pg_create). */
typedef struct loom_pg {
    uint8_t id[16];
} loom_pg;
#define LOOM_ANY_BUNDLE (-1)

typedef struct loom_task_opts {
    const char *name;   /* shown in status and logs; default: the function */
    double num_cpus;    /* tasks: default 1 (0 means 1); actors: default 0 */
    uint64_t memory;    /* bytes reserved on the node; default 0 */
    int nocheck;        /* command tasks: 0 (default) = a non-zero exit status
                           fails the task; 1 = keep it as output 0 */
    double num_gpus;    /* GPUs: a fraction in (0,1) shares a device, or a whole number */
    uint64_t gpu_memory;/* bytes of device memory needed on each GPU */
    const loom_resource *resources; int nresources;  /* custom resources */
    const loom_label *labels; int nlabels;  /* run only on nodes with all these labels */
    int strategy;       /* LOOM_SCHED_* */
    uint32_t node;      /* LOOM_SCHED_NODE: the node id (loom status) */
    int soft;           /* LOOM_SCHED_NODE: 1 = prefer, 0 = only there */
    const loom_pg *pg;  /* run inside this placement group (NULL: none) */
    int bundle;         /* with pg: bundle index, or LOOM_ANY_BUNDLE */
    int max_retries;    /* runs again after its executor or node died, up to this
                           many times: 0 = the default (3), LOOM_NO_RETRY = never */
    int retry_on_error; /* 1: application errors (the task failed) are retried too */
} loom_task_opts;
#define LOOM_NO_RETRY (-1)
#define LOOM_DEFAULT_RETRIES 3

enum { LOOM_ARG_VALUE = 0, LOOM_ARG_REF = 1 };
typedef struct loom_arg {
    int kind;          /* LOOM_ARG_VALUE: data/len copied in; LOOM_ARG_REF: ref */
    const void *data;
    size_t len;
    loom_ref ref;
} loom_arg;

static inline loom_arg loom_arg_value(const void *data, size_t len) {
    loom_arg a = {LOOM_ARG_VALUE, data, len, {{0}}};
    return a;
}
static inline loom_arg loom_arg_ref(loom_ref ref) {
    loom_arg a = {LOOM_ARG_REF, NULL, 0, ref};
    return a;
}

/* Submit one call of `function` from library lib.  *out is its result.
 * Returns once the submission is sent, without waiting for the head: what
 * the head refuses (an unknown ref or library, say) is the error loom_get or
 * loom_wait report for *out.  The client keeps the submission until the head
 * answers and sends it again if the connection closes or the head restarts
 * (a repeated submission is recognised by its task id: it never runs twice).
 * Bad arguments (LOOM_EINVAL) are still returned at once. */
LOOM_API int loom_submit(loom_client *c, loom_ref lib, const char *function,
                const loom_arg *args, int nargs, const loom_task_opts *opts,
                loom_ref *out);

/* ---- graphs ------------------------------------------------------------- */

/* A graph is built locally and submitted in one message.  Nodes are numbered
 * from 0 in the order they are added. */
typedef struct loom_graph loom_graph;

LOOM_API int loom_graph_new(loom_graph **out);
LOOM_API void loom_graph_destroy(loom_graph **g);
LOOM_API int loom_graph_size(const loom_graph *g);

/* Add a function task; returns its node number (>= 0) or an error. */
LOOM_API int loom_graph_task(loom_graph *g, loom_ref lib, const char *function,
                    const loom_task_opts *opts);

/* A command task: argv[0] is looked up in PATH.  env entries are "NAME=VALUE"
 * added to the daemon's environment; cwd NULL means a fresh directory per task.
 * Arguments of a command task are written to files in its working directory;
 * their paths are in $LOOM_ARG_0, $LOOM_ARG_1, … ($LOOM_NARGS of them).
 * Outputs: 0 is the exit status (msgpack integer), 1..noutputs the contents of
 * the named files after the command exits.  stdout and stderr are its logs. */
typedef struct loom_command {
    const char *const *argv;   int argc;
    const char *const *env;    int nenv;
    const char *cwd;
    const char *const *outputs; int noutputs;
} loom_command;
LOOM_API int loom_graph_command(loom_graph *g, const loom_command *cmd, const loom_task_opts *opts);

/* Append an argument to node `node`: an inline value, an existing ref, or output
 * `output` of an earlier node `src` of the same graph. */
LOOM_API int loom_graph_arg_value(loom_graph *g, int node, const void *data, size_t len);
LOOM_API int loom_graph_arg_ref(loom_graph *g, int node, loom_ref ref);
LOOM_API int loom_graph_arg_node(loom_graph *g, int node, int src, int output);

/* The ref of output `output` of node `node` (known before submission). */
LOOM_API int loom_graph_ref(const loom_graph *g, int node, int output, loom_ref *out);
/* Name of a node (opts->name or the function or argv[0]); NULL if out of range. */
LOOM_API const char *loom_graph_node_name(const loom_graph *g, int node);
/* Find a node by name; returns its number or LOOM_ENOTFOUND. */
LOOM_API int loom_graph_find(const loom_graph *g, const char *name);

#define LOOM_JOB_ID_LEN 24   /* hex chars + NUL */
typedef struct loom_submit_opts {
    const char *job_name; /* default "graph" */
    int detached;         /* 1: outputs are kept by the job (until `loom delete`),
                             not by this client; used by `loom submit` */
    const char *label;    /* a tag kept with the job and shown in listings, e.g. its
                             owner (the HTTP gateway puts its user here); NULL: none */
} loom_submit_opts;

/* Submit the whole graph in one message.  The client holds refs to every
 * node's outputs (unless detached).  job_id (may be NULL) receives the job's id. */
LOOM_API int loom_graph_submit(loom_client *c, loom_graph *g, const loom_submit_opts *opts,
                      char job_id[LOOM_JOB_ID_LEN]);

/* ---- actors ------------------------------------------------------------- */

/* An actor is a stateful worker: one executor process on a node, hosting an
 * instance of a class from a task library (see LOOM_ACTOR_* in loom/task.h).
 * Its methods are called like tasks; calls from one caller run in the order
 * they were made.  A handle is 16 bytes and can be passed to tasks and other
 * actors (loom_arg_actor), which call it with their own client
 * (loom_task_client). */
typedef struct loom_actor {
    uint8_t id[16];
} loom_actor;

typedef struct loom_actor_opts {
    const char *name;        /* register under this name, unique in the cluster
                                (loom_actor_lookup); NULL: anonymous */
    int detached;            /* 0 (default): killed when the creating client
                                disconnects; 1: lives until loom_actor_kill */
    int max_concurrency;     /* calls run at once on threads; default 1: one at a
                                time, in order */
    int max_restarts;        /* restarted (init run again with the same arguments)
                                after its process or node died, up to this many
                                times; 0 (default): never; -1: always */
    int max_task_retries;    /* calls running or queued when it died: sent again to
                                the restarted actor up to this many times; 0
                                (default): they fail with LOOM_EACTOR */
    loom_task_opts res;      /* resources, strategy, labels, placement group */
} loom_actor_opts;

/* Create an instance of class `cls` of library lib: runs cls's init with args
 * on a node chosen for opts->res.  Returns at once; calls made before init
 * finishes wait for it, and fail with LOOM_EACTOR if it fails. */
LOOM_API int loom_actor_create(loom_client *c, loom_ref lib, const char *cls, const loom_arg *args,
                      int nargs, const loom_actor_opts *opts, loom_actor *out);
/* Wait up to timeout_ms until the actor's init has run: 0, or its error. */
LOOM_API int loom_actor_wait_ready(loom_client *c, loom_actor a, int64_t timeout_ms);
/* Call method `method`; *out is its result.  Returns at once: the call is
 * sent without waiting for the head (calls of one client run in the order
 * made), and a refusal (no such actor, say) is what loom_get of *out returns. */
LOOM_API int loom_actor_call(loom_client *c, loom_actor a, const char *method, const loom_arg *args,
                    int nargs, loom_ref *out);
/* Find a named actor. LOOM_ENOTFOUND if none is alive under that name. */
LOOM_API int loom_actor_lookup(loom_client *c, const char *name, loom_actor *out);
/* Kill an actor: its process ends, calls not finished fail with LOOM_EACTOR,
 * its resources are freed and its name released. */
LOOM_API int loom_actor_kill(loom_client *c, loom_actor a);
/* Every actor the head knows (alive and recently dead) as JSON.  Caller frees. */
LOOM_API int loom_actors_json(loom_client *c, char **json);

/* Hex form of an actor id (32 chars + NUL) and back. */
LOOM_API void loom_actor_to_hex(const loom_actor *a, char out[33]);
LOOM_API int loom_actor_from_hex(const char *hex, loom_actor *out);

/* An actor handle as a task argument (16 bytes, read with loom_task_arg_actor). */
static inline loom_arg loom_arg_actor(const loom_actor *a) {
    loom_arg r = {LOOM_ARG_VALUE, a->id, sizeof(a->id), {{0}}};
    return r;
}

/* ---- placement groups --------------------------------------------------- */

typedef struct loom_bundle {
    double num_cpus;
    uint64_t memory;
    double num_gpus;
    uint64_t gpu_memory;
    const loom_resource *resources; int nresources;
} loom_bundle;

enum {
    LOOM_PG_PACK = 0,          /* as few nodes as possible */
    LOOM_PG_SPREAD = 1,        /* as many nodes as possible */
    LOOM_PG_STRICT_PACK = 2,   /* all on one node, or not at all */
    LOOM_PG_STRICT_SPREAD = 3  /* each bundle on its own node, or not at all */
};

/* Reserve n bundles atomically across the cluster's nodes.  Returns at once:
 * the group is placed as soon as resources allow (loom_pg_wait).  A group no
 * cluster of these nodes could hold fails with LOOM_EINFEASIBLE and a reason. */
LOOM_API int loom_pg_create(loom_client *c, const loom_bundle *bundles, int n, int strategy,
                   const char *name, loom_pg *out);
/* Wait until the group is placed: 0, LOOM_ETIMEOUT, LOOM_EINFEASIBLE (reason
 * in loom_last_error) or LOOM_ENOTFOUND (removed). */
LOOM_API int loom_pg_wait(loom_client *c, loom_pg pg, int64_t timeout_ms);
/* Free the group's resources; tasks running in it are cancelled and actors in
 * it killed. */
LOOM_API int loom_pg_remove(loom_client *c, loom_pg pg);
/* The group as JSON (state, strategy, bundles and their nodes).  Caller frees. */
LOOM_API int loom_pg_json(loom_client *c, loom_pg pg, char **json);

/* ---- nodes -------------------------------------------------------------- */

/* Drain a node (its id in loom_status_json): nothing new is placed there,
 * what runs there finishes, actors that may restart move elsewhere.  Its state
 * reads "draining", then "drained" once idle; stopping its daemon is then
 * safe. */
LOOM_API int loom_node_drain(loom_client *c, uint32_t node);

/* ---- key-value table ---------------------------------------------------- */

/* A small table in the head, for rendezvous (collective groups) and
 * coordination.  Values up to 1 MiB. */
LOOM_API int loom_kv_put(loom_client *c, const char *key, const void *data, size_t len);
/* Wait up to timeout_ms (0: do not wait) for key; *data is malloc'd. */
LOOM_API int loom_kv_get(loom_client *c, const char *key, int64_t timeout_ms, void **data, size_t *len);
LOOM_API int loom_kv_del(loom_client *c, const char *key);

/* Values of any size up to 1 GiB: KEY holds a small header (and the bytes,
 * when they fit in one value), KEY/0, KEY/1, … chunks of up to 1,000,000
 * bytes hold the rest.  The header is written after the chunks and deleted
 * before them, and a read checks the bytes against the sha256 it records:
 * a value half written or half deleted reads as LOOM_EPROTO, never as data.
 * get: *data malloc'd, LOOM_ENOTFOUND when KEY is absent. */
LOOM_API int loom_kv_put_blob(loom_client *c, const char *key, const void *data, size_t len);
LOOM_API int loom_kv_get_blob(loom_client *c, const char *key, void **data, size_t *len);
LOOM_API int loom_kv_del_blob(loom_client *c, const char *key);

/* ---- inspection --------------------------------------------------------- */

/* Logs (stdout then stderr) of the task producing ref; *out is malloc'd and
 * NUL-terminated, freed by the caller. */
LOOM_API int loom_logs(loom_client *c, loom_ref ref, char **out, size_t *len);

/* Cluster state as JSON text (nodes, resources, task counts).  Caller frees. */
LOOM_API int loom_status_json(loom_client *c, char **json);

/* A job's state as JSON text (tasks, their states, refs).  Caller frees. */
LOOM_API int loom_job_json(loom_client *c, const char *job_id, char **json);

/* A page of the jobs the head knows, newest first, as JSON text:
 * {"total", "offset", "limit", "jobs": [{"id", "name", "label", "detached",
 * "submitted_ms", "tasks", "states": {state: count}}]}.  label: only jobs
 * with that label (NULL or "": all); limit 0 means 100, at most 1000.
 * Caller frees. */
LOOM_API int loom_jobs_json(loom_client *c, const char *label, uint64_t offset, uint64_t limit, char **json);

/* Ref of output `output` of the task named `task` in job `job_id`. */
LOOM_API int loom_job_ref(loom_client *c, const char *job_id, const char *task, int output,
                 loom_ref *out);

/* Drop a detached job's hold on its outputs (and cancel what still runs). */
LOOM_API int loom_job_delete(loom_client *c, const char *job_id);

#ifdef __cplusplus
}
#endif
#endif
