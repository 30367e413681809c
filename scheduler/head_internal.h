/* scheduler/head_internal.h — the head's tables (objects, tasks, jobs,
 * actors, placement groups, nodes, clients, the key-value table) and the
 * functions the head's files share.  Internal to scheduler/head*.c (and
 * white-box tests such as tests/test_place.c); the public entry point is
 * scheduler/head.h.
 *
 * Object lifetime: an object's `refs` counts its holders — clients (or a
 * detached job) that submitted or put it, and tasks waiting to consume it.
 * When it drops to zero and the object is final, the copies on nodes are
 * deleted and the entry freed.  A task's record lives while any of its
 * outputs does. */
#ifndef LOOM_SCHEDULER_HEAD_INTERNAL_H
#define LOOM_SCHEDULER_HEAD_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/secret.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "scheduler/headdb.h"
#include "scheduler/pool.h"

#define LOG_INDEX 0xFFFFFFFFu
#define MAX_IDENT 32

enum { O_PENDING = 0, O_READY, O_FAILED };
enum { T_WAITING = 0, T_QUEUED, T_RUNNING, T_DONE, T_FAILED };

typedef struct task task;
typedef struct job job;
typedef struct actor actor;
typedef struct pgroup pgroup;

typedef struct obj {
    loom_ref ref;
    int state;
    int32_t code;
    char *error;
    uint64_t size;
    uint8_t *value;              /* inline copy when size <= LOOM_INLINE_MAX */
    uint32_t *locs;              /* node ids holding a copy */
    int nlocs, cap_locs;
    int64_t refs;
    task *producer;
    int is_log;
    int kept;                    /* content-addressed (a library): one hold for the head's life */
    uint32_t *subs;              /* client ids waiting for OBJ_READY */
    int nsubs, cap_subs;
    uint8_t (*waiters)[16];      /* ids of tasks whose dependency this is (ids,
                                    not pointers: a waiter may be freed first) */
    int nwait, cap_wait;
} obj;

struct task {
    uint8_t id[16];
    loom_arena arena;
    loom_wire_task spec;
    int state;
    int cancelled;
    int pending_deps;
    int pinned;                  /* > 0 while a handler still uses t: not freed */
    uint32_t node;
    job *job;
    int32_t code;
    char *error;
    task *qnext;
    obj **outs;                  /* outputs, then the log object last */
    int nouts;
    int live_outs;               /* non-log outputs not yet freed */
    int64_t t_submit, t_start, t_end;
    uint32_t caller;             /* client that submitted it (actor call order) */
    loom_grant *grant;           /* resources held while running (NULL: none) */
    int bundle;                  /* the grant came from this bundle of spec.pg; -1: the node */
    uint32_t attempts;           /* runs that failed and were retried */
    uint64_t seq;                /* an actor call: its place among the actor's calls */
    int deps_held;               /* it holds refs to its arguments (until it is freed: lineage) */
    uint32_t rebuilds;           /* re-runs to rebuild outputs lost with a node */
    char *history;               /* "attempt 1 on node 2: ...; attempt 2 ..." (malloc) */
    uint32_t feasible_epoch;     /* the head's nodes_epoch when some node could run it */
    char *acct;                  /* while it holds a grant: its job's label, for accounting
                                    (the job may go first: a delete cancels what runs) */
};

enum { A_PENDING = 0, A_ALIVE, A_DEAD };

/* An actor: its creation task's id is its id.  Calls wait in `calls` (ids, in
 * submission order) until they are ready and their caller's earlier calls
 * have been handed to the actor's node. */
struct actor {
    uint8_t id[16];
    char *name, *cls;
    int state;
    uint32_t node;
    uint32_t owner;              /* client that created it */
    int detached;
    uint32_t max_concurrency;
    uint8_t (*calls)[16];
    int ncalls, cap_calls;
    uint64_t calls_done, calls_failed;
    int32_t max_restarts;        /* -1: always */
    uint32_t max_task_retries;
    uint32_t restarts;
    int deps_held;               /* its creation's arguments are kept for restarts */
    uint64_t next_seq;           /* numbers its calls in submission order */
    int running;                 /* calls handed to the node, not yet done */
    char *error;                 /* why it died */
    int64_t t_created, t_ready, t_died;
    loom_grant *grant;           /* the resources it holds while alive */
    loom_request *req;
    char *usage_label;           /* whose they are (its creation's job label), for accounting */
    int64_t usage_since;         /* since when it holds them */
    int has_pg, bundle;
    uint8_t pg[16];
    obj *ready_obj;              /* its creation task's output 0, held by the actor */
};

enum { PG_PENDING = 0, PG_CREATED, PG_INFEASIBLE, PG_REMOVED };

/* A placement group: bundles carved out of nodes' pools, all at once. */
struct pgroup {
    uint8_t id[16];
    char *name;
    int strategy;
    int state;
    uint32_t owner;
    int nb;
    loom_request *breq;          /* what each bundle asks for */
    loom_pool *bpool;            /* each bundle's pool, once created */
    loom_grant *bgrant;          /* what each bundle took from its node */
    uint32_t *bnode;
    char *reason;                /* infeasible: why */
    int64_t t_created, t_placed;
};

/* A key of the key-value table and the clients waiting for it. */
typedef struct kv_wait {
    uint32_t client;
    uint64_t req;
    int64_t deadline;
    char *key;
    struct kv_wait *next;
} kv_wait;

typedef struct node {
    uint32_t id;
    uint8_t ident[MAX_IDENT];
    size_t identlen;
    loom_wire_node info;         /* strings owned (malloc), labels included */
    loom_pool pool;              /* CPUs, memory, GPUs, custom resources */
    uint64_t store_used, reported_running;
    uint64_t running;            /* tasks assigned here and not yet done */
    int alive;
    int draining;                /* `loom drain`: nothing new is placed here */
    int awaiting;                /* loaded from disk by a restarted head: its daemon has not rejoined yet */
    int reconciling;             /* rejoined; its list of running tasks has not come yet */
    int64_t last_seen;
} node;

typedef struct client {
    uint32_t id;
    uint8_t ident[MAX_IDENT];
    size_t identlen;
    int role;
    uint32_t node_id;            /* role NODE */
    loom_hmap held;              /* ref -> (uintptr_t) count */
} client;

struct job {
    char id[LOOM_JOB_ID_LEN];
    char *name;
    int detached;
    uint32_t owner;
    task **tasks;
    int ntasks;
    int live;                    /* tasks not yet freed */
    int64_t t_submit;
    char *label;                 /* the submitter's tag (the gateway's user); "" if none */
    int64_t t_wall_ms;           /* Unix time of the submission (listing order) */
};

typedef struct head {
    uv_loop_t *loop;
    void *zctx, *router, *monitor;
    loom_zwatch *watch, *monitor_watch;
    uv_timer_t tick;
    uv_check_t commit;
    struct pending_ack *acks;    /* answers sent once this loop turn's writes are committed */
    int nacks, cap_acks;
    uv_signal_t sigint, sigterm;
    headdb *db;
    uint64_t hs_refused;         /* CURVE handshakes that failed, and when that was last logged */
    int64_t hs_logged;
    struct loom_curve_zap *zap;  /* lets in the cluster's CURVE client keys (runtime/curve.h) */
    int hb_timeout_ms;
    loom_pack *out;              /* scratch encoder for messages */
    loom_pack *rec;              /* scratch encoder for table records */
    loom_hmap objs;              /* ref (20) -> obj */
    loom_hmap tasks;             /* task id (16) -> task */
    loom_hmap clients;           /* ident -> client */
    loom_hmap clients_by_id;     /* u32 -> client */
    loom_hmap nodes;             /* u32 -> node */
    loom_hmap jobs;              /* job id string -> job */
    task *q_head, *q_tail;       /* ready queue */
    uint32_t next_client_id, next_node_id;
    uint32_t nodes_epoch;        /* moves on when a node dies or drains (feasibility may change) */
    uint64_t counts[5];          /* tasks by state, ever */
    node **node_list;            /* every node in id order (placement scans it) */
    int nnode_list, cap_node_list;
    loom_candidate *cands;       /* scratch for placement, cap_node_list long */
    /* which listed nodes have the labels the last labelled placement asked
     * for (head_place.c): valid while labels_version and the label set are
     * the same; a placement on a thousand nodes compared their labels again
     * for every task otherwise */
    uint8_t *labels_ok;          /* nnode_list entries, or NULL */
    int labels_ok_n;             /* nodes it covers */
    uint32_t labels_version;     /* moves on when a node is listed or its labels set */
    uint32_t labels_ok_version;
    loom_wire_label *labels_ok_for;  /* the label set it is for (owned copies) */
    uint32_t labels_ok_nfor;
    uint32_t rr;                 /* SPREAD round robin */
    loom_hmap actors;            /* actor id (16) -> actor */
    loom_hmap actor_names;       /* name -> actor (pending or alive) */
    int dead_actors;
    loom_hmap pgs;               /* pg id (16) -> pgroup */
    int pending_pgs;
    loom_hmap kv;                /* key -> loom_buf* */
    loom_ref *unrefs;            /* refs to drop once the current handler is done */
    int nunrefs, cap_unrefs;
    kv_wait *kv_waits;
    struct parked_sub *parked;   /* subscriptions to objects not known yet (park_sub) */
    int nparked, cap_parked;
    uv_timer_t park_timer;
    char *infeasible[16];        /* the latest reasons a request was infeasible */
    int ninfeasible_next;
    uint64_t ninfeasible;
    struct head_usage *usage;    /* accounting (head_usage.c); NULL until first used */
} head;

/* A key of the key-value table and its value (h->kv, by the key's hash). */
typedef struct kv_entry {
    char *key;
    uint8_t *val;
    size_t len;
} kv_entry;

/* loom__head_actors_apply: which actors, and what to do to each. */
typedef int (*actor_match_fn)(const actor *a, const void *arg);
typedef void (*actor_fn)(head *h, actor *a, const char *why);

/* ---- head.c ---- */
int loom__head_grow_array(void **arr, int *cap, int need, size_t elem);
void loom__head_send_to(head *h, const uint8_t *ident, size_t identlen, const loom_msg *m);
void loom__head_reply_error(head *h, const uint8_t *ident, size_t identlen, uint64_t req, int code,
                            const char *text);
void loom__head_send_after_commit(head *h, const uint8_t *ident, size_t identlen, const loom_msg *m);
void loom__head_reply_ok(head *h, client *c, uint64_t req);
node *loom__head_node_get(head *h, uint32_t id);
client *loom__head_client_by_id(head *h, uint32_t id);
void loom__head_persist_task(head *h, task *t);
void loom__head_persist_obj(head *h, obj *o);
void loom__head_persist_job(head *h, job *j);
void loom__head_client_hold(client *c, const loom_ref *ref);
int loom__head_client_unhold(client *c, const loom_ref *ref);
void loom__head_rebuild_lost(head *h, obj **lost, int nl, const char *msg);
char *loom__head_dupstr(const char *s);
void loom__head_node_info_free(loom_wire_node *info);
int loom__head_node_init_resources(head *h, node *n, const loom_wire_node *w);

/* ---- head_task.c ---- */
obj *loom__head_obj_new(head *h, const loom_ref *ref);
obj *loom__head_obj_get(head *h, const loom_ref *ref);
void loom__head_obj_add_loc(obj *o, uint32_t node_id);
void loom__head_obj_maybe_free(head *h, obj *o);
void loom__head_obj_unref(head *h, obj *o);
void loom__head_job_free(head *h, job *j);
void loom__head_task_maybe_free(head *h, task *t);
void loom__head_task_release_deps(head *h, task *t);
void loom__head_drain_unrefs(head *h);
void loom__head_task_set_state(head *h, task *t, int state);
void loom__head_task_fail(head *h, task *t, int code, const char *msg);
int loom__head_task_should_retry(const task *t, int code);
void loom__head_history_add(task *t, uint32_t node_id, const char *msg);
const char *loom__head_with_history(const task *t, const char *msg, char *buf, size_t len);
void loom__head_task_requeue(head *h, task *t);
int loom__head_deps_ready(head *h, const task *t);
void loom__head_task_retry(head *h, task *t, uint32_t node_id, const char *msg);
void loom__head_queue_task(head *h, task *t);
uint64_t loom__head_local_bytes(head *h, task *t, uint32_t node_id);
void loom__head_task_link_deps(head *h, task *t);
void loom__head_on_submit(head *h, client *c, loom_msg *m);
void loom__head_on_put_done(head *h, client *c, loom_msg *m);
void loom__head_on_subscribe(head *h, client *c, loom_msg *m);
void loom__head_on_release(head *h, client *c, loom_msg *m);
void loom__head_cancel_task(head *h, task *t);
void loom__head_cancel_jobs_of(head *h, uint32_t client_id);
void loom__head_on_cancel(head *h, client *c, loom_msg *m);
void loom__head_release_node_resources(head *h, task *t);
void loom__head_on_task_done(head *h, client *c, loom_msg *m);
void loom__head_on_obj_added(head *h, client *c, loom_msg *m);

/* ---- head_place.c ---- */
void loom__head_spec_request(const loom_wire_task *s, loom_request *r);
void loom__head_note_infeasible(head *h, const char *msg);
node *loom__head_place(head *h, task *t, const loom_request *r, loom_pool **pool, int *bundle);
/* Free placement's cache of which nodes have a label set (at head exit). */
void loom__head_labels_cache_free(head *h);
int loom__head_infeasible_reason(head *h, task *t, const loom_request *r, char *why, size_t whylen);
void loom__head_give_grant(head *h, uint32_t node_id, const uint8_t *pg, int bundle, const loom_request *r,
                           loom_grant **g);
void loom__head_assign(head *h, task *t, node *n, const loom_request *r, loom_pool *pool, int bundle);
void loom__head_schedule(head *h);

/* ---- head_actor.c ---- */
void loom__head_name_key(const char *name, uint8_t out[32]);
actor *loom__head_actor_by_name(head *h, const char *name);
actor *loom__head_actor_new_owned(head *h, task *t, uint32_t owner);
void loom__head_actor_new(head *h, task *t, client *c);
void loom__head_actor_add_call(head *h, task *t);
void loom__head_actor_requeue_call(head *h, actor *a, task *t);
void loom__head_actor_dispatch(head *h, actor *a);
void loom__head_actor_lost(head *h, actor *a, const char *why);
void loom__head_actors_gc(head *h);
void loom__head_actor_kill(head *h, actor *a, const char *why);
void loom__head_actor_created(head *h, task *t);
void loom__head_actor_creation_failed(head *h, task *t, int code, const char *msg);
void loom__head_actors_apply(head *h, actor_match_fn match, const void *arg, actor_fn fn, const char *why);
int loom__head_alive_on_node(const actor *a, const void *arg);
int loom__head_in_pg(const actor *a, const void *arg);
void loom__head_actors_on_dead_node(head *h, node *n, const char *msg);
void loom__head_kill_actors_of(head *h, uint32_t client_id);
int loom__head_alive_on_gone_node(const actor *a, const void *arg);
void loom__head_on_drain(head *h, client *c, loom_msg *m);
void loom__head_on_actor_lookup(head *h, client *c, loom_msg *m);
void loom__head_on_actor_kill(head *h, client *c, loom_msg *m);
void loom__head_on_actor_died(head *h, client *c, loom_msg *m);

/* ---- head_pg.c ---- */
void loom__head_pg_retry_pending(head *h);
void loom__head_on_pg_create(head *h, client *c, loom_msg *m);
void loom__head_on_pg_remove(head *h, client *c, loom_msg *m);
void loom__head_remove_pgs_of(head *h, uint32_t client_id);

/* ---- head_kv.c ---- */
void loom__head_kv_entry_free(kv_entry *e);
int loom__head_kv_set(head *h, const char *key, const void *val, size_t len);
void loom__head_kv_unset(head *h, const char *key);

/* head_usage.c: accounting and quotas (see the file's top). */
void loom__head_usage_begin(head *h, task *t, const loom_request *r);
void loom__head_usage_end(head *h, task *t, const loom_request *r);
void loom__head_usage_actor_end(head *h, const char *label, const loom_request *r, int64_t since_ms);
int loom__head_usage_allows(head *h, const task *t, const loom_request *r, char *why, size_t whylen);
void loom__head_usage_flush(head *h);
void loom__head_usage_job_gone(head *h, const char *job_id);
void loom__head_usage_free(head *h);
/* Tasks the head keeps per labelled user (a REST user), finished ones until
 * their job is deleted: the head's memory stays bounded whatever one token
 * submits.  keep: 0, or LOOM_EFULL with why. */
#define LOOM_HEAD_TASKS_PER_USER 50000
int loom__head_usage_keep_tasks(head *h, const char *label, uint32_t n, char *why, size_t whylen);
void loom__head_usage_tasks_gone(head *h, const char *label, uint32_t n);
void loom__head_on_kv_put(head *h, client *c, loom_msg *m);
void loom__head_on_kv_get(head *h, client *c, loom_msg *m);
void loom__head_on_kv_del(head *h, client *c, loom_msg *m);
void loom__head_kv_expire(head *h, uint32_t drop_client);

/* ---- head_inspect.c ---- */
void loom__head_on_status(head *h, client *c, loom_msg *m);
void loom__head_on_actors(head *h, client *c, loom_msg *m);
void loom__head_on_pg_info(head *h, client *c, loom_msg *m);
void loom__head_on_job_info(head *h, client *c, loom_msg *m);
void loom__head_on_jobs(head *h, client *c, loom_msg *m);
void loom__head_on_job_ref(head *h, client *c, loom_msg *m);
void loom__head_on_job_delete(head *h, client *c, loom_msg *m);

/* ---- head_reload.c ---- */
void loom__head_load_tables(head *h);

#endif
