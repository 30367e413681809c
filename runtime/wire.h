/* runtime/wire.h — every message loom's processes exchange, and their msgpack
 * encoding.
 *
 * A message is one ZeroMQ frame holding a msgpack array
 *     [LOOM_PROTO_VERSION, type, req, field...]
 * whose fields are positional and fixed per type.  `req` is a request number
 * that a reply echoes (0 for notifications).  loom__wire_decode validates a
 * whole frame — version, type, every field's type, counts and lengths —
 * into a loom_msg before any handler sees it, so handlers work only with
 * well-formed values; anything else is LOOM_EPROTO with a reason.  Strings
 * are copied NUL-terminated into the message's arena; byte strings point
 * into the frame (keep the frame alive while using the message).
 */
#ifndef LOOM_RUNTIME_WIRE_H
#define LOOM_RUNTIME_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "loom/loom.h"
#include "loom/value.h"
#include "runtime/util.h"

#define LOOM_PROTO_VERSION 1
#define LOOM_INLINE_MAX (16 * 1024)     /* results this small travel inside messages */
#define LOOM_CHUNK_SIZE (4u << 20)      /* node-to-node transfer chunk */
#define LOOM_WIRE_MAX_LIST (1u << 22)   /* bound on any array in a message */

/* The message types.  Each one's fields — their order on the wire, the
 * loom_msg member each lands in, and the checks beyond their types — are listed
 * once, in the schema table in wire.c (`schema[]`); the loom_msg members below
 * say which message uses which name. */
enum loom_msg_type {
    LOOM_MSG_ERROR = 1,      /* a request failed */
    LOOM_MSG_OK,             /* a request succeeded */
    LOOM_MSG_HELLO,          /* a driver, node or executor introduces itself */
    LOOM_MSG_WELCOME,        /* reply to HELLO */
    LOOM_MSG_HEARTBEAT,      /* node -> head: its load */
    LOOM_MSG_SUBMIT,         /* driver -> head: a job's tasks; reply SUBMITTED */
    LOOM_MSG_SUBMITTED,      /* the new job's id */
    LOOM_MSG_PUT_DONE,       /* an object was stored */
    LOOM_MSG_SUBSCRIBE,      /* tell me when these objects are ready */
    LOOM_MSG_OBJ_READY,      /* an object is ready (or failed) */
    LOOM_MSG_RELEASE,        /* the driver no longer holds these refs */
    LOOM_MSG_CANCEL,         /* cancel the task making an object */
    LOOM_MSG_STATUS,         /* reply INFO: the cluster */
    LOOM_MSG_INFO,           /* a msgpack map (reply to STATUS, JOB_INFO, ...) */
    LOOM_MSG_JOB_INFO,       /* reply INFO: a job */
    LOOM_MSG_JOB_REF,        /* reply REF: a job's task output */
    LOOM_MSG_REF,            /* reply to JOB_REF, ACTOR_LOOKUP, PG_CREATE */
    LOOM_MSG_JOB_DELETE,
    LOOM_MSG_BYE,
    LOOM_MSG_ASSIGN,         /* head -> daemon: run one task (args resolved) */
    LOOM_MSG_CANCEL_TASK,    /* head -> daemon */
    LOOM_MSG_DELETE_OBJS,    /* head -> daemon */
    LOOM_MSG_TASK_DONE,      /* a task finished */
    LOOM_MSG_OBJ_ADDED,      /* a daemon stored an object */
    LOOM_MSG_FETCH,          /* node -> node: ask for a chunk; reply CHUNK */
    LOOM_MSG_CHUNK,          /* a chunk of an object */
    LOOM_MSG_PUSH,           /* a chunk of a remote put */
    LOOM_MSG_RUN,            /* daemon -> executor: run one task */
    LOOM_MSG_KV_PUT,
    LOOM_MSG_KV_GET,         /* reply INFO (data = value) */
    LOOM_MSG_KV_DEL,
    LOOM_MSG_ACTOR_LOOKUP,   /* reply REF (actor id ++ 0) */
    LOOM_MSG_ACTOR_KILL,     /* driver -> head, head -> daemon */
    LOOM_MSG_ACTOR_DIED,     /* daemon -> head */
    LOOM_MSG_ACTORS,         /* reply INFO */
    LOOM_MSG_PG_CREATE,      /* reply REF (pg id ++ 0) */
    LOOM_MSG_PG_REMOVE,
    LOOM_MSG_PG_INFO,        /* reply INFO */
    LOOM_MSG_DRAIN,          /* place nothing new on a node */
    LOOM_MSG_RUNNING,        /* what a node that joined again still runs */
    LOOM_MSG_JOBS,           /* reply INFO: the jobs, a page of them */
    LOOM_MSG_TYPE_MAX
};

enum loom_role { LOOM_ROLE_DRIVER = 1, LOOM_ROLE_NODE = 2, LOOM_ROLE_EXECUTOR = 3 };

typedef struct loom_bytes {
    const uint8_t *p;
    size_t n;
} loom_bytes;

/* Where an object is: a node and its data port address. */
typedef struct loom_wire_loc {
    uint32_t node;
    char *addr;
} loom_wire_loc;

/* A task argument: an inline value, or a ref (with size and locations once the
 * head resolved it). */
enum { LOOM_WARG_VALUE = 0, LOOM_WARG_REF = 1 };
typedef struct loom_wire_arg {
    uint32_t kind;
    loom_bytes value;
    loom_ref ref;
    uint64_t size;
    loom_wire_loc *locs;
    uint32_t nlocs;
} loom_wire_arg;

/* A custom resource amount, a node label, a placement-group bundle. */
#define LOOM_WIRE_MAX_RES 16        /* custom resources per node, task or bundle */
#define LOOM_WIRE_MAX_LABELS 32
#define LOOM_WIRE_MAX_BUNDLES 256
#define LOOM_WIRE_MAX_GPUS 16
typedef struct loom_wire_res {
    char *name;               /* 1..63 bytes */
    double amount;            /* > 0 */
} loom_wire_res;
typedef struct loom_wire_label {
    char *key;                /* 1..63 bytes */
    char *value;              /* 0..255 bytes */
} loom_wire_label;
typedef struct loom_wire_bundle {
    double num_cpus;
    uint64_t memory;
    double num_gpus;
    uint64_t gpu_memory;
    loom_wire_res *res;       uint32_t nres;
} loom_wire_bundle;

enum { LOOM_TASK_FUNCTION = 0, LOOM_TASK_COMMAND = 1 };
/* What a function task is to an actor. */
enum { LOOM_ACTOR_NONE = 0, LOOM_ACTOR_CREATE = 1, LOOM_ACTOR_CALL = 2 };
typedef struct loom_wire_task {
    uint8_t task_id[16];
    uint32_t kind;
    char *name;
    loom_wire_arg lib;        /* FUNCTION: a REF to the library object */
    char *function;
    char **argv;    uint32_t argc;
    char **env;     uint32_t nenv;
    char *cwd;                /* "" = a fresh directory */
    char **outputs; uint32_t noutputs;
    int nocheck;
    double num_cpus;
    uint64_t memory;
    loom_wire_arg *args;
    uint32_t nargs;
    /* scheduling: [num_gpus, gpu_memory, res, labels, strategy, node, soft,
       pg, bundle, gpu_ids, max_retries, retry_on_error] */
    double num_gpus;
    uint64_t gpu_memory;
    loom_wire_res *res;       uint32_t nres;
    loom_wire_label *labels;  uint32_t nlabels;   /* the node must have all of them */
    uint32_t strategy;        /* LOOM_SCHED_* */
    uint32_t affinity_node;
    int soft;
    int has_pg;
    uint8_t pg[16];
    int32_t bundle;           /* -1: any bundle */
    char *gpu_ids;            /* set by the head in ASSIGN: "0,1" */
    uint32_t max_retries;     /* after the executor or node died (0: never) */
    int retry_on_error;       /* application errors too */
    /* actor: [op, actor id, max_concurrency, detached, name, max_restarts,
       max_task_retries].  CREATE: the
       task's id is the actor's, function = class; CALL: function = method,
       no library (the actor has it). */
    uint32_t actor_op;
    uint8_t actor[16];
    uint32_t max_concurrency;
    int detached;
    char *actor_name;
    int32_t max_restarts;     /* -1: always */
    uint32_t max_task_retries;
} loom_wire_task;

typedef struct loom_wire_output {
    uint32_t index;
    uint64_t size;
    loom_bytes value;          /* inline when size <= LOOM_INLINE_MAX, else empty */
} loom_wire_output;

typedef struct loom_wire_node {
    uint32_t id;
    char *hostname, *data_addr, *store_dir, *spill_dir;
    double num_cpus;
    uint64_t memory, capacity;
    uint32_t num_gpus;
    uint64_t gpu_memory;      /* per device */
    loom_wire_res *res;       uint32_t nres;
    loom_wire_label *labels;  uint32_t nlabels;
} loom_wire_node;

/* A decoded message, or one being built.  The scalar and string slots are
 * shared by many types: each is a union of the names its messages give it,
 * so a handler reads m->store_used.  A slot has no generic name: every use
 * names the field of the message it builds or reads, as the schema in wire.c
 * does. */
typedef struct loom_msg {
    int type;
    uint64_t req;
    int32_t code;               /* ERROR, OBJ_READY, TASK_DONE, ACTOR_DIED: a LOOM_E* code */
    uint32_t role;              /* HELLO: LOOM_ROLE_* */
    union {
        uint32_t pid;           /* HELLO: the sender's process id */
        uint32_t assigned_id;   /* WELCOME: the sender's node id (a node) or client id */
        uint32_t node;          /* PUT_DONE: the node holding the object; DRAIN: the node */
    };
    union {
        uint32_t detached;      /* SUBMIT: the job outlives its driver */
        uint32_t keep;          /* PUT_DONE: 1 = content-addressed, kept while the head runs */
        uint32_t strategy;      /* PG_CREATE: the placement strategy (0..3) */
    };
    union {
        uint64_t store_used;    /* HEARTBEAT: store bytes used */
        uint64_t size;          /* PUT_DONE, OBJ_READY, OBJ_ADDED: the object's size */
        uint64_t output;        /* JOB_REF: the output's index */
        uint64_t log_size;      /* TASK_DONE: the task's log size */
        uint64_t offset;        /* FETCH, CHUNK, PUSH: byte offset; JOBS: jobs to skip */
        uint64_t wait_ms;       /* KV_GET: how long to wait for the key */
    };
    union {
        uint64_t running;       /* HEARTBEAT: tasks running */
        uint64_t length;        /* FETCH: bytes wanted */
        uint64_t total;         /* CHUNK, PUSH: the object's size */
        uint64_t limit;         /* JOBS: jobs at most */
    };
    char *secret;               /* HELLO: the cluster secret */
    char *hostname;             /* HELLO */
    union {
        char *name;             /* ACTOR_LOOKUP: actor name; PG_CREATE: group name */
        char *job_name;         /* SUBMIT */
        char *job;              /* SUBMITTED, JOB_INFO, JOB_REF, JOB_DELETE: the job id */
        char *key;              /* KV_PUT, KV_GET, KV_DEL */
    };
    union {
        char *text;             /* ERROR, OBJ_READY, TASK_DONE, ACTOR_DIED: the error text */
        char *label;            /* SUBMIT: the job's label; JOBS: the label listed ("": all) */
        char *task_name;        /* JOB_REF */
    };
    loom_ref ref;               /* an object; TASK_DONE, CANCEL_TASK: task id ++ 0;
                                   ACTOR_KILL, ACTOR_DIED: actor id ++ 0;
                                   PG_REMOVE, PG_INFO: pg id ++ 0; REF: the answer */
    loom_bytes data;            /* PUT_DONE, OBJ_READY: inline value; INFO: msgpack map;
                                   CHUNK, PUSH: bytes at offset; KV_PUT: the value */
    loom_ref *refs;             uint32_t nrefs;     /* SUBSCRIBE, RELEASE, DELETE_OBJS, RUNNING */
    loom_wire_loc *locs;        uint32_t nlocs;     /* OBJ_READY: where the object is */
    loom_wire_task *tasks;      uint32_t ntasks;    /* SUBMIT; ASSIGN, RUN: exactly one */
    loom_wire_output *outputs;  uint32_t noutputs;  /* TASK_DONE */
    loom_wire_node *nodes;      uint32_t nnodes;    /* HELLO: 0..1 (a node describes itself);
                                                       WELCOME: the cluster's nodes */
    loom_wire_bundle *bundles;  uint32_t nbundles;  /* PG_CREATE: 1..LOOM_WIRE_MAX_BUNDLES */
    loom_arena arena;           /* owns every decoded string and array */
} loom_msg;

/* Decode one frame.  On success the message owns an arena: free it with
 * loom__msg_free.  On failure returns LOOM_EPROTO (or LOOM_ENOMEM) and writes the
 * reason into err (may be NULL); nothing needs freeing. */
int loom__wire_decode(const void *buf, size_t len, loom_msg *m, char *err, size_t errlen);
void loom__msg_free(loom_msg *m);
/* Zero a message for building one to encode. */
void loom__msg_init(loom_msg *m, int type, uint64_t req);

/* Encode m (its type's fields) into p (reset first).  0 or LOOM_ENOMEM. */
int loom__wire_encode(const loom_msg *m, loom_pack *p);
/* Encode a task on its own (also used inside SUBMIT/ASSIGN/RUN). */
int loom__wire_pack_task(loom_pack *p, const loom_wire_task *t);
/* Decode one task tuple from u (as loom__wire_pack_task wrote it); strings
 * and lists go into arena, byte strings point into u's buffer.  0 or
 * LOOM_EPROTO with the reason in err. */
int loom__wire_unpack_task(loom_unpack *u, loom_arena *arena, loom_wire_task *t, char *err, size_t errlen);

/* Deep-copy a task (strings, lists, inline values; not arg locations) into a. */
int loom__wire_task_copy(loom_arena *a, loom_wire_task *dst, const loom_wire_task *src);

const char *loom__msg_type_name(int type);

#endif
