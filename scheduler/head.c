/* scheduler/head.c — the head: who is in the cluster (nodes, clients), what
 * must run (tasks, jobs), where objects are (the object directory), and
 * placement of ready tasks on nodes whose free CPUs and memory fit.
 *
 * One thread, one libuv loop, one ROUTER socket.  Every peer must first say
 * HELLO with the cluster secret.  Every frame is decoded and validated by
 * runtime/wire.c before a handler sees it; a bad frame gets an ERROR reply and
 * a log line.  Tables are in memory and written through to LMDB (headdb.c) in
 * one transaction per loop turn.
 *
 * Object lifetime: an object's `refs` counts its holders — clients (or a
 * detached job) that submitted or put it, and tasks waiting to consume it.
 * When it drops to zero and the object is final, the copies on nodes are
 * deleted and the entry freed.  A task's record lives while any of its
 * outputs does. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/secret.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "scheduler/head.h"
#include "scheduler/headdb.h"
#include "scheduler/pool.h"

#define LOG_INDEX 0xFFFFFFFFu
#define MAX_IDENT 32

enum { O_PENDING = 0, O_READY, O_FAILED };
enum { T_WAITING = 0, T_QUEUED, T_RUNNING, T_DONE, T_FAILED };
static const char *task_state_names[] = {"waiting", "queued", "running", "finished", "failed"};

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
};

enum { A_PENDING = 0, A_ALIVE, A_DEAD };
static const char *actor_state_names[] = {"pending", "alive", "dead"};

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
    int has_pg, bundle;
    uint8_t pg[16];
    obj *ready_obj;              /* its creation task's output 0, held by the actor */
};

enum { PG_PENDING = 0, PG_CREATED, PG_INFEASIBLE, PG_REMOVED };
static const char *pg_state_names[] = {"pending", "created", "infeasible", "removed"};

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
    char secret[LOOM_SECRET_HEX + 1];
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
} head;

/* ---- small helpers ------------------------------------------------------ */

static int grow_array(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return 0;
    int ncap = *cap ? *cap * 2 : 4;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return LOOM_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static void send_to(head *h, const uint8_t *ident, size_t identlen, const loom_msg *m)
{
    if (loom_zsend_msg(h->router, ident, identlen, m, h->out))
        LOG_DEBUG("send %s: peer gone", loom_msg_type_name(m->type));
}

static void reply_error(head *h, const uint8_t *ident, size_t identlen, uint64_t req, int code,
                        const char *text)
{
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_ERROR, req);
    m.code = code;
    m.text = (char *)text;
    send_to(h, ident, identlen, &m);
}

/* An answer that says something was recorded (a submission, a put, a key):
 * sent after the group commit of its batch of messages (commit_and_answer),
 * so that what a client was told exists survives a head restart, at one
 * commit per batch rather than one per message. */
typedef struct pending_ack {
    uint8_t ident[MAX_IDENT];
    size_t identlen;
    void *data;
    size_t len;
} pending_ack;

static void send_after_commit(head *h, const uint8_t *ident, size_t identlen, const loom_msg *m)
{
    pending_ack *a = NULL;
    if (identlen <= MAX_IDENT && loom_wire_encode(m, h->out) == 0 &&
        !grow_array((void **)&h->acks, &h->cap_acks, h->nacks + 1, sizeof(*h->acks))) {
        a = &h->acks[h->nacks];
        a->len = loom_pack_size(h->out);
        a->data = malloc(a->len ? a->len : 1);
    }
    if (!a || !a->data) { /* out of memory: commit now and answer now */
        headdb_commit(h->db);
        send_to(h, ident, identlen, m);
        return;
    }
    memcpy(a->data, loom_pack_data(h->out), a->len);
    memcpy(a->ident, ident, identlen);
    a->identlen = identlen;
    h->nacks++;
}

static void commit_and_answer(head *h)
{
    headdb_commit(h->db);
    for (int i = 0; i < h->nacks; i++) {
        pending_ack *a = &h->acks[i];
        if (loom_zsend(h->router, a->ident, a->identlen, a->data, a->len)) LOG_DEBUG("send an answer: peer gone");
        free(a->data);
    }
    h->nacks = 0;
}

static void reply_ok(head *h, client *c, uint64_t req)
{
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_OK, req);
    send_to(h, c->ident, c->identlen, &m);
}

static node *node_get(head *h, uint32_t id)
{
    return loom_hmap_get(&h->nodes, &id, sizeof(id));
}

static client *client_by_id(head *h, uint32_t id)
{
    return loom_hmap_get(&h->clients_by_id, &id, sizeof(id));
}

/* ---- persistence -------------------------------------------------------- */

static void persist_task(head *h, task *t)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 5);
    loom_wire_pack_task(p, &t->spec);
    loom_pack_u64(p, (uint64_t)t->state);
    loom_pack_i64(p, t->code);
    loom_pack_cstr(p, t->error ? t->error : "");
    loom_pack_u64(p, t->node);
    headdb_put(h->db, HEADDB_TASKS, t->id, 16, loom_pack_data(p), loom_pack_size(p));
}

static void persist_obj(head *h, obj *o)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 6);
    loom_pack_u64(p, (uint64_t)o->state);
    loom_pack_i64(p, o->code);
    loom_pack_cstr(p, o->error ? o->error : "");
    loom_pack_u64(p, o->size);
    loom_pack_bin(p, o->value, o->value ? o->size : 0);
    loom_pack_array(p, (uint32_t)o->nlocs);
    for (int i = 0; i < o->nlocs; i++) loom_pack_u64(p, o->locs[i]);
    headdb_put(h->db, HEADDB_OBJECTS, o->ref.id, LOOM_ID_LEN, loom_pack_data(p), loom_pack_size(p));
}

/* Unix time in ms (jobs are listed by it, across head restarts). */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void persist_job(head *h, job *j)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 6);
    loom_pack_cstr(p, j->name);
    loom_pack_bool(p, j->detached);
    loom_pack_u64(p, j->owner);
    loom_pack_array(p, (uint32_t)j->ntasks);
    for (int i = 0; i < j->ntasks; i++) loom_pack_bin(p, j->tasks[i] ? j->tasks[i]->id : NULL, j->tasks[i] ? 16 : 0);
    loom_pack_cstr(p, j->label ? j->label : "");
    loom_pack_i64(p, j->t_wall_ms);
    headdb_put(h->db, HEADDB_JOBS, j->id, strlen(j->id), loom_pack_data(p), loom_pack_size(p));
}

static void persist_node(head *h, node *n)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 4);
    loom_pack_cstr(p, n->info.hostname);
    loom_pack_cstr(p, n->info.data_addr);
    loom_pack_f64(p, n->info.num_cpus);
    loom_pack_bool(p, n->alive);
    headdb_put(h->db, HEADDB_NODES, &n->id, sizeof(n->id), loom_pack_data(p), loom_pack_size(p));
}

/* ---- objects ------------------------------------------------------------ */

static void unpark_into(head *h, obj *o);

/* A new, pending object; subscriptions that asked for it before it existed
 * (park_sub) become its subscribers. */
static obj *obj_new(head *h, const loom_ref *ref)
{
    obj *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->ref = *ref;
    if (loom_hmap_put(&h->objs, ref->id, LOOM_ID_LEN, o)) {
        free(o);
        return NULL;
    }
    if (h->nparked) unpark_into(h, o);
    return o;
}

static obj *obj_get(head *h, const loom_ref *ref)
{
    return loom_hmap_get(&h->objs, ref->id, LOOM_ID_LEN);
}

static void obj_add_loc(obj *o, uint32_t node_id)
{
    for (int i = 0; i < o->nlocs; i++)
        if (o->locs[i] == node_id) return;
    if (grow_array((void **)&o->locs, &o->cap_locs, o->nlocs + 1, sizeof(uint32_t))) return;
    o->locs[o->nlocs++] = node_id;
}

static void notify_ready(head *h, obj *o, uint32_t client_id);
static void task_maybe_free(head *h, task *t);
static void task_fail(head *h, task *t, int code, const char *msg);
static void queue_task(head *h, task *t);
static void defer_unref(head *h, const loom_ref *ref);
static void actor_dispatch(head *h, actor *a);
static void actor_creation_failed(head *h, task *t, int code, const char *msg);

static void obj_destroy(head *h, obj *o)
{
    /* tell every node holding a copy to drop it */
    for (int i = 0; i < o->nlocs; i++) {
        node *n = node_get(h, o->locs[i]);
        if (!n || !n->alive) continue;
        loom_msg m;
        loom_msg_init(&m, LOOM_MSG_DELETE_OBJS, 0);
        m.refs = &o->ref;
        m.nrefs = 1;
        send_to(h, n->ident, n->identlen, &m);
    }
    headdb_del(h->db, HEADDB_OBJECTS, o->ref.id, LOOM_ID_LEN);
    loom_hmap_del(&h->objs, o->ref.id, LOOM_ID_LEN);
    free(o->error);
    free(o->value);
    free(o->locs);
    free(o->subs);
    free(o->waiters);
    free(o);
}

/* Free o when nothing holds it any more and it is final (not a log: logs go
 * with their task). */
static void obj_maybe_free(head *h, obj *o)
{
    if (o->refs > 0 || o->state == O_PENDING || o->is_log || o->nsubs) return;
    task *t = o->producer;
    if (t) {
        for (int i = 0; i < t->nouts; i++)
            if (t->outs[i] == o) t->outs[i] = NULL;
        t->live_outs--;
    }
    obj_destroy(h, o);
    if (t) task_maybe_free(h, t);
}

static void obj_unref(head *h, obj *o)
{
    if (!o) return;
    if (o->refs > 0) o->refs--;
    obj_maybe_free(h, o);
}

static void obj_finish(head *h, obj *o)
{
    /* wake subscribers */
    int nsubs = o->nsubs;
    o->nsubs = 0;
    for (int i = 0; i < nsubs; i++) notify_ready(h, o, o->subs[i]);
    /* wake or fail the tasks waiting on it.  Failing one waiter can free
     * other tasks and drop the refs that keep o alive: take the waiter list,
     * look each task up by id (a freed one is gone from h->tasks), and hold
     * o until the end. */
    int nwait = o->nwait;
    uint8_t (*waiters)[16] = o->waiters;
    o->waiters = NULL;
    o->nwait = o->cap_wait = 0;
    o->refs++;
    for (int i = 0; i < nwait; i++) {
        task *t = loom_hmap_get(&h->tasks, waiters[i], 16);
        if (!t || t->state != T_WAITING) continue;
        if (o->state == O_READY) {
            if (--t->pending_deps == 0) queue_task(h, t);
        } else {
            char msg[1024];
            const char *dep = o->producer ? o->producer->spec.name : "put object";
            loom_snprintf(msg, sizeof(msg), "dependency '%s' failed: %s", dep,
                          o->error ? o->error : loom_strerror(o->code));
            task_fail(h, t, o->code == LOOM_ECANCELLED ? LOOM_ECANCELLED : LOOM_EDEP, msg);
        }
    }
    free(waiters);
    persist_obj(h, o);
    obj_unref(h, o);
}

static void obj_set_ready(head *h, obj *o, uint64_t size, const void *value, size_t vlen,
                          uint32_t node_id)
{
    if (o->state != O_PENDING) return;
    o->state = O_READY;
    o->size = size;
    if (vlen || size == 0) {
        o->value = malloc(vlen ? vlen : 1);
        if (o->value && vlen) memcpy(o->value, value, vlen);
    } else if (node_id) {
        obj_add_loc(o, node_id);
    }
    obj_finish(h, o);
}

static void obj_set_failed(head *h, obj *o, int code, const char *msg)
{
    if (o->state != O_PENDING) return;
    o->state = O_FAILED;
    o->code = code;
    o->error = strdup(msg ? msg : loom_strerror(code));
    obj_finish(h, o);
}

static void notify_ready(head *h, obj *o, uint32_t client_id)
{
    client *c = client_by_id(h, client_id);
    if (!c) return;
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_OBJ_READY, 0);
    m.ref = o->ref;
    m.u0 = o->size;
    loom_wire_loc locs[16];
    if (o->state == O_FAILED) {
        m.code = o->code;
        m.text = o->error;
    } else if (o->value) {
        m.data.p = o->value;
        m.data.n = o->size;
    } else {
        for (int i = 0; i < o->nlocs && m.nlocs < 16; i++) {
            node *n = node_get(h, o->locs[i]);
            if (!n || (!n->alive && !n->awaiting)) continue;
            locs[m.nlocs].node = n->id;
            locs[m.nlocs].addr = n->info.data_addr;
            m.nlocs++;
        }
        m.locs = locs;
        if (m.nlocs == 0) {
            m.code = LOOM_ENODE;
            m.text = "every copy of the object was lost with its node";
        }
    }
    send_to(h, c->ident, c->identlen, &m);
}

/* ---- tasks -------------------------------------------------------------- */

static void job_free(head *h, job *j)
{
    loom_hmap_del(&h->jobs, j->id, strlen(j->id));
    headdb_del(h->db, HEADDB_JOBS, j->id, strlen(j->id));
    for (int i = 0; i < j->ntasks; i++)
        if (j->tasks[i]) j->tasks[i]->job = NULL;
    free(j->tasks);
    free(j->name);
    free(j->label);
    free(j);
}

static void task_free(head *h, task *t)
{
    if (t->deps_held) {
        t->deps_held = 0;
        if (t->spec.kind == LOOM_TASK_FUNCTION && t->spec.actor_op != LOOM_ACTOR_CALL) defer_unref(h, &t->spec.lib.ref);
        for (uint32_t i = 0; i < t->spec.nargs; i++)
            if (t->spec.args[i].kind == LOOM_WARG_REF) defer_unref(h, &t->spec.args[i].ref);
    }
    loom_hmap_del(&h->tasks, t->id, 16);
    headdb_del(h->db, HEADDB_TASKS, t->id, 16);
    if (t->job) {
        job *j = t->job;
        for (int i = 0; i < j->ntasks; i++)
            if (j->tasks[i] == t) j->tasks[i] = NULL;
        /* a driver's job goes when its last task does; a detached one waits for delete */
        if (--j->live == 0 && !j->detached) job_free(h, j);
    }
    for (int i = 0; i < t->nouts; i++) {
        obj *o = t->outs[i];
        if (!o) continue;
        o->producer = NULL;
        if (o->is_log) obj_destroy(h, o);
    }
    free(t->outs);
    free(t->error);
    free(t->grant);
    free(t->history);
    loom_arena_free(&t->arena);
    free(t);
}

static void task_maybe_free(head *h, task *t)
{
    if (t->pinned || t->live_outs > 0 || t->state < T_DONE || t->state == T_RUNNING) return;
    task_free(h, t);
}

static void task_release_deps(head *h, task *t)
{
    if (!t->deps_held) return;
    t->deps_held = 0;
    if (t->spec.kind == LOOM_TASK_FUNCTION) obj_unref(h, obj_get(h, &t->spec.lib.ref));
    for (uint32_t i = 0; i < t->spec.nargs; i++)
        if (t->spec.args[i].kind == LOOM_WARG_REF) obj_unref(h, obj_get(h, &t->spec.args[i].ref));
}

/* A finished task keeps its arguments alive while its outputs live, so a
 * lost output can be rebuilt (lineage).  When the task goes, the refs are
 * dropped after the current handler: dropping one can free a chain of
 * upstream tasks, and doing that iteratively keeps the stack flat. */
static void defer_unref(head *h, const loom_ref *ref)
{
    if (grow_array((void **)&h->unrefs, &h->cap_unrefs, h->nunrefs + 1, sizeof(loom_ref))) return;
    h->unrefs[h->nunrefs++] = *ref;
}

static void drain_unrefs(head *h)
{
    for (int rounds = 0; h->nunrefs && rounds < 100000000; rounds++) {
        loom_ref r = h->unrefs[--h->nunrefs];
        obj_unref(h, obj_get(h, &r));
    }
}

static void task_set_state(head *h, task *t, int state)
{
    t->state = state;
    h->counts[state]++;
    persist_task(h, t);
}

static void task_finish_outputs_failed(head *h, task *t, int code, const char *msg)
{
    for (int i = 0; i < t->nouts; i++) {
        obj *o = t->outs[i];
        if (!o) continue;
        if (o->is_log && o->state == O_PENDING) obj_set_ready(h, o, 0, NULL, 0, 0);
        else obj_set_failed(h, o, code, msg);
    }
}

/* Fail a task that is not running (waiting or queued, or cancelled). */
static void task_fail(head *h, task *t, int code, const char *msg)
{
    if (t->state >= T_DONE) return;
    int was_waiting = t->state == T_WAITING || t->state == T_QUEUED;
    t->code = code;
    free(t->error);
    t->error = strdup(msg);
    t->t_end = loom_now_ms();
    task_set_state(h, t, T_FAILED);
    /* failing an output can free it and with the last one t: not before the end */
    t->pinned++;
    if (was_waiting) task_release_deps(h, t);
    task_finish_outputs_failed(h, t, code, msg);
    if (t->spec.actor_op == LOOM_ACTOR_CREATE) actor_creation_failed(h, t, code, msg);
    t->pinned--;
    task_maybe_free(h, t);
}

/* ---- retries ------------------------------------------------------------ */

/* Whether a run of t that failed with code gets another attempt: its executor
 * or node died (or, if it asked, the task itself failed), and its retries are
 * not used up.  Actors have their own restarts. */
static int task_should_retry(const task *t, int code)
{
    if (t->cancelled || t->spec.actor_op != LOOM_ACTOR_NONE) return 0;
    int system = code == LOOM_EWORKER || code == LOOM_ENODE;
    int app = code == LOOM_ETASK && t->spec.retry_on_error;
    return (system || app) && t->attempts < t->spec.max_retries;
}

static void history_add(task *t, uint32_t node_id, const char *msg)
{
    char line[1200];
    loom_snprintf(line, sizeof(line), "%sattempt %u on node %u: %s", t->history ? "; " : "", t->attempts + 1,
                  node_id, msg);
    size_t old = t->history ? strlen(t->history) : 0;
    if (old > 16384) return; /* enough to say what happened */
    char *h = realloc(t->history, old + strlen(line) + 1);
    if (!h) return;
    memcpy(h + old, line, strlen(line) + 1);
    t->history = h;
}

/* The final error of a task that was retried: every attempt, then the last. */
static const char *with_history(const task *t, const char *msg, char *buf, size_t len)
{
    if (!t->history) return msg;
    loom_snprintf(buf, len, "failed after %u attempts: %s; attempt %u on node %u: %s", t->attempts + 1,
                  t->history, t->attempts + 1, t->node, msg);
    return buf;
}

static void release_node_resources(head *h, task *t);

/* Put t (whose arguments it still holds) back to wait for them: queued at
 * once when every one is ready, else waiting on those being rebuilt.  A
 * failed or vanished argument fails it. */
static void task_requeue(head *h, task *t)
{
    t->state = T_WAITING;
    t->pending_deps = 0;
    const char *failed = NULL;
    int failed_code = 0;
    for (uint32_t k = 0; k < t->spec.nargs && !failed; k++) {
        loom_wire_arg *a = &t->spec.args[k];
        if (a->kind != LOOM_WARG_REF) continue;
        obj *o = obj_get(h, &a->ref);
        if (!o) {
            failed = "an argument is gone (freed), so the task cannot run again";
            failed_code = LOOM_ENODE;
        } else if (o->state == O_FAILED) {
            failed = o->error ? o->error : loom_strerror(o->code);
            failed_code = o->code == LOOM_ECANCELLED ? LOOM_ECANCELLED : LOOM_EDEP;
        } else if (o->state == O_PENDING &&
                   !grow_array((void **)&o->waiters, &o->cap_wait, o->nwait + 1, sizeof(*o->waiters))) {
            memcpy(o->waiters[o->nwait++], t->id, 16);
            t->pending_deps++;
        }
    }
    if (failed) {
        char msg[1200], full[20000];
        loom_snprintf(msg, sizeof(msg), "a dependency failed: %s", failed);
        task_fail(h, t, failed_code, with_history(t, msg, full, sizeof(full)));
        return;
    }
    if (t->pending_deps == 0) queue_task(h, t);
    persist_task(h, t);
}

/* Whether every stored argument of t is ready (and has a copy somewhere). */
static int deps_ready(head *h, const task *t)
{
    for (uint32_t k = 0; k < t->spec.nargs; k++) {
        const loom_wire_arg *a = &t->spec.args[k];
        if (a->kind != LOOM_WARG_REF) continue;
        obj *o = obj_get(h, &a->ref);
        if (!o || o->state != O_READY) return 0;
    }
    return 1;
}

/* Run t again: note the failed attempt, free what it held, requeue it. */
static void task_retry(head *h, task *t, uint32_t node_id, const char *msg)
{
    history_add(t, node_id, msg);
    t->attempts++;
    LOG_INFO("task '%s' failed on node %u (%s): attempt %u of %u", t->spec.name, node_id, msg, t->attempts + 1,
             t->spec.max_retries + 1);
    release_node_resources(h, t);
    task_requeue(h, t);
}

static void queue_task(head *h, task *t)
{
    if (t->spec.actor_op == LOOM_ACTOR_CALL) {
        /* calls go to their actor's node in their callers' order, not through
           the ready queue */
        t->state = T_QUEUED;
        actor *a = loom_hmap_get(&h->actors, t->spec.actor, 16);
        if (a) actor_dispatch(h, a);
        return;
    }
    t->state = T_QUEUED;
    t->pinned++; /* the ready queue holds t until schedule() unlinks it */
    t->qnext = NULL;
    if (h->q_tail) h->q_tail->qnext = t;
    else h->q_head = t;
    h->q_tail = t;
}

/* Bytes of t's stored (non-inline) arguments that node n already holds. */
static uint64_t local_bytes(head *h, task *t, uint32_t node_id)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i <= t->spec.nargs; i++) {
        loom_wire_arg *a = i < t->spec.nargs ? &t->spec.args[i] : &t->spec.lib;
        if (a->kind != LOOM_WARG_REF) continue;
        obj *o = obj_get(h, &a->ref);
        if (!o || o->value) continue;
        for (int k = 0; k < o->nlocs; k++)
            if (o->locs[k] == node_id) sum += o->size;
    }
    return sum;
}

/* ---- resources and placement ------------------------------------------- */

/* What a task asks for, as the pool arithmetic wants it. */
static void spec_request(const loom_wire_task *s, loom_request *r)
{
    memset(r, 0, sizeof(*r));
    r->cpus = s->num_cpus;
    r->memory = s->memory;
    r->gpus = s->num_gpus;
    r->gpu_memory = s->gpu_memory;
    for (uint32_t i = 0; i < s->nres && i < LOOM_POOL_MAX_RES; i++) {
        loom_snprintf(r->res[r->nres].name, sizeof(r->res[0].name), "%s", s->res[i].name);
        r->res[r->nres++].amount = s->res[i].amount;
    }
}

static int labels_match(const node *n, const loom_wire_task *s)
{
    for (uint32_t i = 0; i < s->nlabels; i++) {
        int found = 0;
        for (uint32_t k = 0; k < n->info.nlabels && !found; k++)
            found = !strcmp(n->info.labels[k].key, s->labels[i].key) &&
                    !strcmp(n->info.labels[k].value, s->labels[i].value);
        if (!found) return 0;
    }
    return 1;
}

/* Keep the latest reasons requests were infeasible, for `loom status`. */
static void note_infeasible(head *h, const char *msg)
{
    free(h->infeasible[h->ninfeasible_next]);
    h->infeasible[h->ninfeasible_next] = strdup(msg);
    h->ninfeasible_next = (h->ninfeasible_next + 1) % 16;
    h->ninfeasible++;
}

static node *place_in_pg(head *h, task *t, const loom_request *r, loom_pool **pool, int *bundle)
{
    pgroup *g = loom_hmap_get(&h->pgs, t->spec.pg, 16);
    if (!g || g->state != PG_CREATED) return NULL;
    int lo = t->spec.bundle >= 0 ? t->spec.bundle : 0;
    int hi = t->spec.bundle >= 0 ? t->spec.bundle + 1 : g->nb;
    for (int b = lo; b < hi && b < g->nb; b++) {
        node *n = node_get(h, g->bnode[b]);
        if (!n || !n->alive || !loom_pool_fits(&g->bpool[b], r)) continue;
        *pool = &g->bpool[b];
        *bundle = b;
        return n;
    }
    return NULL;
}

/* Choose where t runs now: a node, and the pool it takes from (the node's,
 * or a bundle of its placement group).  NULL when nothing fits now. */
static node *place(head *h, task *t, const loom_request *r, loom_pool **pool, int *bundle)
{
    *bundle = -1;
    if (t->spec.has_pg) return place_in_pg(h, t, r, pool, bundle);
    for (int i = 0; i < h->nnode_list; i++) {
        node *n = h->node_list[i];
        loom_candidate *c = &h->cands[i];
        c->node_id = n->id;
        c->pool = &n->pool;
        c->eligible = n->alive && !n->draining && !n->reconciling && labels_match(n, &t->spec);
        c->local_bytes = c->eligible && t->spec.nargs ? local_bytes(h, t, n->id) : 0;
    }
    int k = loom_choose_node(h->cands, h->nnode_list, r, (int)t->spec.strategy, t->spec.affinity_node,
                             t->spec.soft, &h->rr);
    if (k < 0) return NULL;
    *pool = &h->node_list[k]->pool;
    return h->node_list[k];
}

/* Whether t can never run as the cluster stands (1, with the reason in why)
 * or may run once resources free up (0).  With no live node the answer is 0:
 * daemons may still be joining. */
static int infeasible_reason(head *h, task *t, const loom_request *r, char *why, size_t whylen)
{
    char one[256];
    why[0] = 0;
    if (t->spec.has_pg) {
        pgroup *g = loom_hmap_get(&h->pgs, t->spec.pg, 16);
        if (!g) {
            loom_snprintf(why, whylen, "its placement group does not exist (removed?)");
            return 1;
        }
        if (g->state == PG_INFEASIBLE) {
            loom_snprintf(why, whylen, "its placement group is infeasible: %s", g->reason ? g->reason : "");
            return 1;
        }
        if (g->state != PG_CREATED) return 0;
        if (t->spec.bundle >= g->nb) {
            loom_snprintf(why, whylen, "bundle %d does not exist (the placement group has %d)", t->spec.bundle, g->nb);
            return 1;
        }
        int lo = t->spec.bundle >= 0 ? t->spec.bundle : 0, hi = t->spec.bundle >= 0 ? t->spec.bundle + 1 : g->nb;
        for (int b = lo; b < hi; b++)
            if (loom_pool_could_fit(&g->bpool[b], r, one, sizeof(one))) return 0;
        loom_snprintf(why, whylen, "it needs more than %s of its placement group holds (%s)",
                      t->spec.bundle >= 0 ? "the bundle" : "any bundle", one);
        return 1;
    }
    int live = 0, labeled = 0;
    size_t used = 0;
    for (int i = 0; i < h->nnode_list; i++) {
        node *n = h->node_list[i];
        if (!n->alive || n->draining) continue;
        live++;
        if (!labels_match(n, &t->spec)) continue;
        labeled++;
        if (t->spec.strategy == LOOM_SCHED_NODE && !t->spec.soft && n->id != t->spec.affinity_node) continue;
        if (loom_pool_could_fit(&n->pool, r, one, sizeof(one))) return 0;
        if (used + 64 < whylen) {
            loom_snprintf(why + used, whylen - used, "%snode %u %s", used ? "; " : "", n->id, one);
            used = strlen(why);
        }
    }
    if (!live) return 0;
    if (t->spec.strategy == LOOM_SCHED_NODE && !t->spec.soft) {
        node *n = node_get(h, t->spec.affinity_node);
        if (n && n->alive && n->draining) {
            loom_snprintf(why, whylen, "it must run on node %u, which is draining", t->spec.affinity_node);
            return 1;
        }
        if (!n || !n->alive) {
            loom_snprintf(why, whylen, "it must run on node %u, which is %s", t->spec.affinity_node,
                          n ? "dead" : "not in the cluster");
            return 1;
        }
        if (!labels_match(n, &t->spec)) {
            loom_snprintf(why, whylen, "it must run on node %u, which lacks the labels it asks for",
                          t->spec.affinity_node);
            return 1;
        }
    }
    if (!labeled) {
        loom_snprintf(why, whylen, "no node has the labels");
        for (uint32_t i = 0; i < t->spec.nlabels && strlen(why) + 64 < whylen; i++) {
            used = strlen(why);
            loom_snprintf(why + used, whylen - used, " %s=%s", t->spec.labels[i].key, t->spec.labels[i].value);
        }
    }
    return 1;
}

/* Give back what t (or an actor) took: to its bundle while its placement
 * group stands, else to its node. */
static void give_grant(head *h, uint32_t node_id, const uint8_t *pg, int bundle, const loom_request *r,
                       loom_grant **g)
{
    if (!*g) return;
    loom_pool *pool = NULL;
    if (bundle >= 0 && pg) {
        pgroup *grp = loom_hmap_get(&h->pgs, pg, 16);
        if (grp && grp->state == PG_CREATED && bundle < grp->nb) pool = &grp->bpool[bundle];
    } else {
        node *n = node_get(h, node_id);
        if (n && n->alive) pool = &n->pool;
    }
    if (pool) loom_pool_give(pool, r, *g);
    free(*g);
    *g = NULL;
}

/* Resolve an argument for ASSIGN: inline values travel in the message, others
 * as refs with the addresses of the nodes holding them. */
static void resolve_arg(head *h, loom_arena *a, loom_wire_arg *dst, const loom_wire_arg *src)
{
    *dst = *src;
    if (src->kind != LOOM_WARG_REF) return;
    obj *o = obj_get(h, &src->ref);
    if (!o) return;
    dst->size = o->size;
    if (o->value) {
        dst->kind = LOOM_WARG_VALUE;
        dst->value.p = o->value;
        dst->value.n = o->size;
        return;
    }
    dst->locs = loom_arena_alloc(a, (size_t)(o->nlocs ? o->nlocs : 1) * sizeof(loom_wire_loc));
    if (!dst->locs) return;
    for (int i = 0; i < o->nlocs; i++) {
        node *n = node_get(h, o->locs[i]);
        if (!n || (!n->alive && !n->awaiting)) continue;
        dst->locs[dst->nlocs].node = n->id;
        dst->locs[dst->nlocs].addr = n->info.data_addr;
        dst->nlocs++;
    }
}

/* Hand t to node n, taking r from pool (NULL for an actor call: the actor
 * holds the resources). */
static void assign(head *h, task *t, node *n, const loom_request *r, loom_pool *pool, int bundle)
{
    loom_arena a = {0};
    loom_wire_task wt = t->spec;
    char gpu_ids[128] = "";
    wt.args = t->spec.nargs ? loom_arena_alloc(&a, t->spec.nargs * sizeof(loom_wire_arg)) : NULL;
    if (t->spec.nargs && !wt.args) {
        loom_arena_free(&a);
        return;
    }
    resolve_arg(h, &a, &wt.lib, &t->spec.lib);
    if (t->spec.kind == LOOM_TASK_FUNCTION && t->spec.actor_op != LOOM_ACTOR_CALL &&
        wt.lib.kind == LOOM_WARG_VALUE && wt.lib.value.n == 0) {
        /* an empty object cannot be a library, and the daemon would refuse
         * the ASSIGN (leaving the task running forever): fail it here */
        loom_arena_free(&a);
        task_fail(h, t, LOOM_ETASK, "cannot load the task library: it is empty (0 bytes)");
        return;
    }
    if (pool) {
        t->grant = malloc(sizeof(loom_grant));
        if (!t->grant || loom_pool_take(pool, r, t->grant)) {
            free(t->grant);
            t->grant = NULL;
            loom_arena_free(&a);
            task_fail(h, t, LOOM_ENOMEM, "cannot take the resources the task was placed with");
            return;
        }
        t->bundle = bundle;
        loom_grant_gpu_ids(pool, t->grant, gpu_ids, sizeof(gpu_ids));
    }
    wt.gpu_ids = gpu_ids;
    for (uint32_t i = 0; i < t->spec.nargs; i++) resolve_arg(h, &a, &wt.args[i], &t->spec.args[i]);
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_ASSIGN, 0);
    m.tasks = &wt;
    m.ntasks = 1;
    send_to(h, n->ident, n->identlen, &m);
    loom_arena_free(&a);
    t->node = n->id;
    t->t_start = loom_now_ms();
    n->running++;
    task_set_state(h, t, T_RUNNING);
}

static void pg_retry_pending(head *h);

static void unlink_queued(head *h, task *prev, task *t)
{
    if (prev) prev->qnext = t->qnext;
    else h->q_head = t->qnext;
    if (h->q_tail == t) h->q_tail = prev;
    t->pinned--;
}

/* A request only CPUs and memory decide, placed by the default policy: when
 * one such task found no node, any other that asks as much or more would not
 * either, in the same pass. */
static int plain_request(const task *t, const loom_request *r)
{
    return r->gpus == 0 && r->nres == 0 && !t->spec.has_pg && t->spec.nlabels == 0 &&
           t->spec.strategy == LOOM_SCHED_DEFAULT && t->spec.actor_op == LOOM_ACTOR_NONE;
}

static void schedule(head *h)
{
    if (h->pending_pgs) pg_retry_pending(h);
    task *prev = NULL, *t = h->q_head;
    int misses = 0;
    double missed_cpus = -1; /* the smallest plain request that found no node, this pass */
    uint64_t missed_mem = 0;
    while (t && misses < 256) {
        task *next = t->qnext;
        if (t->state != T_QUEUED) { /* cancelled while queued: unlink */
            unlink_queued(h, prev, t);
            task_maybe_free(h, t);
            t = next;
            continue;
        }
        loom_request r;
        spec_request(&t->spec, &r);
        int plain = plain_request(t, &r);
        if (plain && missed_cpus >= 0 && r.cpus >= missed_cpus && r.memory >= missed_mem &&
            t->feasible_epoch == h->nodes_epoch) {
            misses++;
            prev = t;
            t = next;
            continue;
        }
        loom_pool *pool = NULL;
        int bundle = -1;
        node *n = place(h, t, &r, &pool, &bundle);
        char why[1024];
        /* whether it could ever run: asked again only when nodes went away */
        if (!n && t->feasible_epoch != h->nodes_epoch && infeasible_reason(h, t, &r, why, sizeof(why))) {
            /* no node could ever run it: fail it (LOOM_EINFEASIBLE) with the
             * reason rather than leave it queued forever */
            unlink_queued(h, prev, t);
            char msg[1400];
            loom_snprintf(msg, sizeof(msg), "task '%s' is infeasible: %s", t->spec.name, why);
            note_infeasible(h, msg);
            LOG_WARN("%s", msg);
            task_fail(h, t, LOOM_EINFEASIBLE, msg);
            t = next;
            continue;
        }
        if (!n) {
            t->feasible_epoch = h->nodes_epoch;
            if (plain && (missed_cpus < 0 || r.cpus < missed_cpus)) {
                missed_cpus = r.cpus;
                missed_mem = r.memory;
            } else if (plain && r.cpus == missed_cpus && r.memory < missed_mem) {
                missed_mem = r.memory;
            }
            misses++;
            prev = t;
            t = next;
            continue;
        }
        unlink_queued(h, prev, t);
        if (t->spec.actor_op == LOOM_ACTOR_NONE && !deps_ready(h, t)) {
            task_requeue(h, t); /* an argument was lost and is being rebuilt */
            t = next;
            continue;
        }
        assign(h, t, n, &r, pool, bundle);
        t = next;
    }
}

/* ---- clients and nodes -------------------------------------------------- */

static void client_hold(client *c, const loom_ref *ref)
{
    uintptr_t cnt = (uintptr_t)loom_hmap_get(&c->held, ref->id, LOOM_ID_LEN);
    loom_hmap_put(&c->held, ref->id, LOOM_ID_LEN, (void *)(cnt + 1));
}

static int client_unhold(client *c, const loom_ref *ref)
{
    uintptr_t cnt = (uintptr_t)loom_hmap_get(&c->held, ref->id, LOOM_ID_LEN);
    if (!cnt) return 0;
    if (cnt == 1) loom_hmap_del(&c->held, ref->id, LOOM_ID_LEN);
    else loom_hmap_put(&c->held, ref->id, LOOM_ID_LEN, (void *)(cnt - 1));
    return 1;
}

static void actors_on_dead_node(head *h, node *n, const char *msg);
static void task_requeue(head *h, task *t);

/* Why an object lost with its node cannot be rebuilt from its lineage (NULL:
 * it can, by running its task again). */
static const char *lineage_blocker(const obj *o)
{
    const task *p = o->producer;
    if (o->is_log) return "a task's log is not rebuilt";
    if (!p) return "it was put by a driver, and no copy is left";
    if (p->spec.actor_op != LOOM_ACTOR_NONE) return "it was made by an actor, whose results are not rebuilt";
    if (p->state == T_DONE && !p->deps_held) return "its task no longer holds its inputs";
    if (p->rebuilds >= 10) return "its task was already re-run 10 times to rebuild it";
    return NULL;
}

/* Objects whose every copy went with a dead node: rebuild those whose task
 * can run again (recursively: inputs lost too are rebuilt first, since their
 * waiters wait for them), fail the others with the reason. */
static void rebuild_lost(head *h, obj **lost, int nl, const char *msg)
{
    task **redo = NULL;
    int nr = 0, cap = 0;
    for (int i = 0; i < nl; i++) {
        obj *o = lost[i];
        const char *why = lineage_blocker(o);
        if (why) {
            char text[1200];
            loom_snprintf(text, sizeof(text), "the object was lost (%s) and cannot be rebuilt: %s", msg, why);
            o->state = O_FAILED;
            o->code = LOOM_ENODE;
            free(o->error);
            o->error = strdup(text);
            persist_obj(h, o);
            continue;
        }
        o->state = O_PENDING;
        persist_obj(h, o);
        task *p = o->producer;
        if (p->state != T_DONE) continue; /* already running again */
        int seen = 0;
        for (int k = 0; k < nr && !seen; k++) seen = redo[k] == p;
        if (!seen && !grow_array((void **)&redo, &cap, nr + 1, sizeof(task *))) {
            p->pinned++;
            redo[nr++] = p;
        }
    }
    for (int i = 0; i < nr; i++) {
        task *p = redo[i];
        p->rebuilds++;
        p->node = 0;
        LOG_INFO("task '%s' runs again to rebuild what was lost (%s)", p->spec.name, msg);
        task_requeue(h, p);
        p->pinned--;
        task_maybe_free(h, p);
    }
    free(redo);
}

static void node_dead(head *h, node *n, const char *why)
{
    h->nodes_epoch++;
    if (!n->alive) return;
    n->alive = 0;
    LOG_WARN("node %u (%s) is dead: %s", n->id, n->info.hostname, why);
    persist_node(h, n);
    char msg[512];
    loom_snprintf(msg, sizeof(msg), "node %u (%s) died: %s", n->id, n->info.hostname, why);
    /* fail what ran there (retries come with fault tolerance) */
    size_t it = 0;
    void *v;
    task **victims = NULL;
    int nv = 0, cap = 0;
    while (loom_hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        /* calls go with their actor (actors_on_dead_node): it may restart */
        if (t->state == T_RUNNING && t->node == n->id && t->spec.actor_op != LOOM_ACTOR_CALL &&
            !grow_array((void **)&victims, &cap, nv + 1, sizeof(task *)))
            victims[nv++] = t;
    }
    for (int i = 0; i < nv; i++) {
        task *t = victims[i];
        free(t->grant); /* the node's pool goes with the node */
        t->grant = NULL;
        actor *a = t->spec.actor_op == LOOM_ACTOR_CREATE ? loom_hmap_get(&h->actors, t->id, 16) : NULL;
        if (a && a->state == A_PENDING && (a->max_restarts < 0 || a->restarts < (uint32_t)a->max_restarts)) {
            /* an actor (re)starting there: one more restart, elsewhere */
            a->restarts++;
            LOG_INFO("actor %s %s was starting on node %u: restart %u", a->cls, a->name, n->id, a->restarts);
            task_requeue(h, t);
            continue;
        }
        if (task_should_retry(t, LOOM_ENODE)) {
            task_retry(h, t, n->id, msg);
            continue;
        }
        char full[20000];
        t->state = T_QUEUED; /* not running any more: fail it like a queued task */
        task_fail(h, t, LOOM_ENODE, with_history(t, msg, full, sizeof(full)));
    }
    free(victims);
    n->running = 0;
    actors_on_dead_node(h, n, msg);
    /* forget its copies; objects left with none are lost */
    it = 0;
    obj **lost = NULL;
    int nl = 0, capl = 0;
    while (loom_hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        for (int i = 0; i < o->nlocs; i++)
            if (o->locs[i] == n->id) {
                o->locs[i] = o->locs[--o->nlocs];
                if (o->nlocs == 0 && !o->value && o->state == O_READY &&
                    !grow_array((void **)&lost, &capl, nl + 1, sizeof(obj *)))
                    lost[nl++] = o;
                else persist_obj(h, o);
                break;
            }
    }
    rebuild_lost(h, lost, nl, msg);
    free(lost);
}

static void cancel_jobs_of(head *h, uint32_t client_id);
static void kill_actors_of(head *h, uint32_t client_id);
static void remove_pgs_of(head *h, uint32_t client_id);
static void kv_expire(head *h, uint32_t drop_client);

static void client_drop(head *h, client *c)
{
    /* what a driver submitted stops with it (detached jobs and actors go on) */
    if (c->role == LOOM_ROLE_DRIVER) {
        cancel_jobs_of(h, c->id);
        kill_actors_of(h, c->id);
        remove_pgs_of(h, c->id);
        kv_expire(h, c->id);
    }
    /* release everything it held */
    size_t it = 0;
    loom_hmap_slot *s;
    loom_ref *refs = NULL;
    uintptr_t *counts = NULL;
    size_t n = c->held.count, k = 0;
    if (n) {
        refs = malloc(n * sizeof(*refs));
        counts = malloc(n * sizeof(*counts));
    }
    if (n && refs && counts) {
        for (it = 0; it < c->held.cap; it++) {
            s = &c->held.slots[it];
            if (!s->hash) continue;
            memcpy(refs[k].id, s->key, LOOM_ID_LEN);
            counts[k++] = (uintptr_t)s->val;
        }
    }
    loom_hmap_free(&c->held);
    for (size_t i = 0; i < k; i++) {
        obj *o = obj_get(h, &refs[i]);
        for (uintptr_t j = 0; o && j < counts[i]; j++) {
            if (o->refs > 0) o->refs--;
        }
        if (o) obj_maybe_free(h, o);
    }
    free(refs);
    free(counts);
    if (c->role == LOOM_ROLE_NODE) {
        node *nd = node_get(h, c->node_id);
        if (nd) node_dead(h, nd, "it left the cluster");
    }
    loom_hmap_del(&h->clients, c->ident, c->identlen);
    loom_hmap_del(&h->clients_by_id, &c->id, sizeof(c->id));
    free(c);
}

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

static void node_info_free(loom_wire_node *info)
{
    free(info->hostname); free(info->data_addr); free(info->store_dir); free(info->spill_dir);
    for (uint32_t i = 0; i < info->nres; i++) free(info->res[i].name);
    for (uint32_t i = 0; i < info->nlabels; i++) {
        free(info->labels[i].key);
        free(info->labels[i].value);
    }
    free(info->res);
    free(info->labels);
}

/* Copy a joining node's resources and labels, build its pool, and list it
 * (unless it is listed: a node rejoining). */
static int node_init_resources(head *h, node *n, const loom_wire_node *w)
{
    int listed = 0;
    for (int i = 0; i < h->nnode_list && !listed; i++) listed = h->node_list[i] == n;
    n->info.res = NULL;
    n->info.labels = NULL;
    n->info.nres = n->info.nlabels = 0;
    loom_pool_init(&n->pool, w->num_cpus, w->memory, (int)w->num_gpus, w->gpu_memory);
    if (w->nres) n->info.res = calloc(w->nres, sizeof(loom_wire_res));
    if (w->nlabels) n->info.labels = calloc(w->nlabels, sizeof(loom_wire_label));
    if ((w->nres && !n->info.res) || (w->nlabels && !n->info.labels)) return LOOM_ENOMEM;
    for (uint32_t i = 0; i < w->nres; i++) {
        n->info.res[i].name = dupstr(w->res[i].name);
        n->info.res[i].amount = w->res[i].amount;
        n->info.nres++;
        if (loom_pool_add_res(&n->pool, w->res[i].name, w->res[i].amount)) return LOOM_EINVAL;
    }
    for (uint32_t i = 0; i < w->nlabels; i++) {
        n->info.labels[i].key = dupstr(w->labels[i].key);
        n->info.labels[i].value = dupstr(w->labels[i].value);
        n->info.nlabels++;
    }
    if (listed) return LOOM_OK;
    if (grow_array((void **)&h->node_list, &h->cap_node_list, h->nnode_list + 1, sizeof(node *)))
        return LOOM_ENOMEM;
    loom_candidate *cands = realloc(h->cands, (size_t)h->cap_node_list * sizeof(*cands));
    if (!cands) return LOOM_ENOMEM;
    h->cands = cands;
    h->node_list[h->nnode_list++] = n;
    return LOOM_OK;
}

static void welcome(head *h, client *c, uint64_t req)
{
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_WELCOME, req);
    m.id = c->role == LOOM_ROLE_NODE ? c->node_id : c->id;
    loom_wire_node *list = calloc(h->nodes.count + 1, sizeof(*list));
    size_t it = 0;
    void *v;
    while (list && loom_hmap_next(&h->nodes, &it, &v)) {
        node *n = v;
        if (n->alive) list[m.nnodes++] = n->info;
    }
    m.nodes = list;
    send_to(h, c->ident, c->identlen, &m);
    free(list);
}

static void actor_requeue_call(head *h, actor *a, task *t);
static void actor_lost(head *h, actor *a, const char *why);
static void actors_gc(head *h);
static void actor_dispatch(head *h, actor *a);

/* A node the head knew before it restarted says hello again with its id:
 * take its new description; until it lists what it still runs (RUNNING),
 * nothing new is placed there. */
static int node_rejoin(head *h, node *n, const uint8_t *ident, size_t identlen, const loom_wire_node *w)
{
    node_info_free(&n->info);
    memset(&n->info, 0, sizeof(n->info));
    n->info = *w;
    n->info.id = n->id;
    n->info.hostname = dupstr(w->hostname);
    n->info.data_addr = dupstr(w->data_addr);
    n->info.store_dir = dupstr(w->store_dir);
    n->info.spill_dir = dupstr(w->spill_dir);
    if (node_init_resources(h, n, w)) return LOOM_EINVAL;
    memcpy(n->ident, ident, identlen);
    n->identlen = identlen;
    n->awaiting = 0;
    n->reconciling = 1;
    n->alive = 1;
    n->running = 0;
    n->last_seen = loom_now_ms();
    persist_node(h, n);
    LOG_INFO("node %u (%s) rejoined after the head restarted", n->id, n->info.hostname);
    return LOOM_OK;
}

/* What a rejoined node still runs: those tasks keep running there (their
 * resources taken again); the others it ran for the old head are lost (their
 * reports went to it) and run again. */
static void on_running(head *h, client *c, loom_msg *m)
{
    node *n = node_get(h, c->node_id);
    if (!n || !n->reconciling) return;
    n->reconciling = 0;
    loom_hmap still = {0};
    for (uint32_t i = 0; i < m->nrefs; i++) loom_hmap_put(&still, m->refs[i].id, 16, (void *)1);
    uint8_t (*lost)[16] = NULL;
    int nl = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->state != T_RUNNING || t->node != n->id) continue;
        if (t->spec.actor_op == LOOM_ACTOR_CALL && loom_hmap_get(&still, t->id, 16)) {
            actor *a = loom_hmap_get(&h->actors, t->spec.actor, 16);
            if (a) a->running++;
            n->running++;
        } else if (loom_hmap_get(&still, t->id, 16)) {
            loom_request r;
            spec_request(&t->spec, &r);
            t->grant = malloc(sizeof(loom_grant));
            if (t->grant && loom_pool_take(&n->pool, &r, t->grant)) {
                free(t->grant);
                t->grant = NULL;
            }
            t->bundle = -1;
            n->running++;
        } else if (!grow_array((void **)&lost, &cap, nl + 1, 16)) {
            memcpy(lost[nl++], t->id, 16);
        }
    }
    for (int i = 0; i < nl; i++) {
        task *t = loom_hmap_get(&h->tasks, lost[i], 16);
        if (!t || t->state != T_RUNNING) continue;
        if (t->spec.actor_op == LOOM_ACTOR_CALL) {
            actor *a = loom_hmap_get(&h->actors, t->spec.actor, 16);
            if (a && a->state != A_DEAD && t->attempts < a->max_task_retries) {
                history_add(t, n->id, "its result was lost when the head restarted");
                actor_requeue_call(h, a, t);
            } else {
                t->state = T_QUEUED;
                task_fail(h, t, LOOM_EACTOR, "the call ran when the head went down and its result was lost");
            }
            continue;
        }
        LOG_INFO("task '%s' ran on node %u when the head went down: it runs again", t->spec.name, n->id);
        task_requeue(h, t);
    }
    free(lost);
    /* the actors it hosted: take their resources again, or they are gone */
    actor *gone[256];
    int ng = 0;
    it = 0;
    while (loom_hmap_next(&h->actors, &it, &v)) {
        actor *a = v;
        if (a->state != A_ALIVE || a->node != n->id) continue;
        if (loom_hmap_get(&still, a->id, 16) && a->req) {
            a->grant = malloc(sizeof(loom_grant));
            if (a->grant && loom_pool_take(&n->pool, a->req, a->grant)) {
                free(a->grant);
                a->grant = NULL;
            }
        } else if (ng < 256) {
            gone[ng++] = a;
        }
    }
    loom_hmap_free(&still);
    for (int i = 0; i < ng; i++) actor_lost(h, gone[i], "its process was gone when the head restarted");
    it = 0;
    while (loom_hmap_next(&h->actors, &it, &v))
        if (((actor *)v)->node == n->id) actor_dispatch(h, v);
    schedule(h);
}

static void on_hello(head *h, const uint8_t *ident, size_t identlen, loom_msg *m)
{
    if (!loom_secret_equal(m->secret, h->secret)) {
        LOG_WARN("refused a %s from %s: wrong cluster secret",
                 m->role == LOOM_ROLE_NODE ? "node" : "driver", m->hostname);
        reply_error(h, ident, identlen, m->req, LOOM_EAUTH, "wrong cluster secret");
        return;
    }
    if (m->role == LOOM_ROLE_NODE && m->nnodes != 1) {
        reply_error(h, ident, identlen, m->req, LOOM_EPROTO, "a node's hello must describe it");
        return;
    }
    if (m->role == LOOM_ROLE_EXECUTOR) {
        reply_error(h, ident, identlen, m->req, LOOM_EPROTO, "executors talk to their daemon");
        return;
    }
    client *old = loom_hmap_get(&h->clients, ident, identlen);
    if (old && old->role == LOOM_ROLE_DRIVER && m->role == LOOM_ROLE_DRIVER) {
        /* the same connection says hello again (a driver that saw several
           "say hello" answers after a head restart): the same client, with
           its holds and jobs */
        welcome(h, old, m->req);
        return;
    }
    if (old) client_drop(h, old);
    client *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->id = ++h->next_client_id;
    memcpy(c->ident, ident, identlen);
    c->identlen = identlen;
    c->role = (int)m->role;
    node *prev = m->role == LOOM_ROLE_NODE && m->nodes[0].id ? node_get(h, m->nodes[0].id) : NULL;
    if (prev && prev->awaiting) {
        if (node_rejoin(h, prev, ident, identlen, &m->nodes[0])) {
            free(c);
            reply_error(h, ident, identlen, m->req, LOOM_EINVAL, "bad node resources");
            return;
        }
        c->node_id = prev->id;
    } else if (m->role == LOOM_ROLE_NODE) {
        node *n = calloc(1, sizeof(*n));
        if (!n) { free(c); return; }
        n->id = ++h->next_node_id;
        memcpy(n->ident, ident, identlen);
        n->identlen = identlen;
        n->info = m->nodes[0];
        n->info.id = n->id;
        n->info.hostname = dupstr(m->nodes[0].hostname);
        n->info.data_addr = dupstr(m->nodes[0].data_addr);
        n->info.store_dir = dupstr(m->nodes[0].store_dir);
        n->info.spill_dir = dupstr(m->nodes[0].spill_dir);
        if (node_init_resources(h, n, &m->nodes[0])) {
            node_info_free(&n->info);
            free(n);
            free(c);
            reply_error(h, ident, identlen, m->req, LOOM_EINVAL, "bad node resources");
            return;
        }
        n->alive = 1;
        n->last_seen = loom_now_ms();
        loom_hmap_put(&h->nodes, &n->id, sizeof(n->id), n);
        c->node_id = n->id;
        persist_node(h, n);
        LOG_INFO("node %u joined: %s, %.1f CPUs, %llu MiB memory, data at %s", n->id,
                 n->info.hostname, n->info.num_cpus,
                 (unsigned long long)(n->info.memory >> 20), n->info.data_addr);
    }
    loom_hmap_put(&h->clients, c->ident, c->identlen, c);
    loom_hmap_put(&h->clients_by_id, &c->id, sizeof(c->id), c);
    welcome(h, c, m->req);
    if (m->role == LOOM_ROLE_NODE) schedule(h);
}

static actor *actor_by_name(head *h, const char *name);

/* Check a submission before changing anything: every ref it consumes exists
 * (or is made by an earlier task of the same submission); ids are new. */
static int validate_submit(head *h, loom_msg *m, char *err, size_t errlen)
{
    loom_hmap seen = {0};
    int rc = 0;
    for (uint32_t i = 0; i < m->ntasks && !rc; i++) {
        loom_wire_task *t = &m->tasks[i];
        if (loom_hmap_get(&h->tasks, t->task_id, 16) || loom_hmap_get(&seen, t->task_id, 16)) {
            loom_snprintf(err, errlen, "task '%s': its id is already in use", t->name);
            rc = LOOM_EINVAL;
            break;
        }
        if (t->actor_op == LOOM_ACTOR_CALL) {
            if (!loom_hmap_get(&h->actors, t->actor, 16)) {
                loom_snprintf(err, errlen, "task '%s': no such actor", t->name);
                rc = LOOM_ENOTFOUND;
                break;
            }
        } else if (t->actor_op == LOOM_ACTOR_CREATE && t->actor_name[0] && actor_by_name(h, t->actor_name)) {
            loom_snprintf(err, errlen, "an actor named '%s' already exists", t->actor_name);
            rc = LOOM_EINVAL;
            break;
        }
        if (t->has_pg && !loom_hmap_get(&h->pgs, t->pg, 16)) {
            loom_snprintf(err, errlen, "task '%s': no such placement group", t->name);
            rc = LOOM_ENOTFOUND;
            break;
        }
        if (t->kind == LOOM_TASK_FUNCTION && t->actor_op != LOOM_ACTOR_CALL && t->lib.kind != LOOM_WARG_REF) {
            loom_snprintf(err, errlen, "task '%s': the library must be a ref (loom_library_load)", t->name);
            rc = LOOM_EINVAL;
            break;
        }
        for (uint32_t k = 0; k <= t->nargs && !rc; k++) {
            loom_wire_arg *a = k < t->nargs ? &t->args[k] : &t->lib;
            if (a->kind != LOOM_WARG_REF) continue;
            if (k == t->nargs && t->kind != LOOM_TASK_FUNCTION) continue;
            if (obj_get(h, &a->ref)) continue;
            uintptr_t nout = (uintptr_t)loom_hmap_get(&seen, a->ref.id, 16);
            uint32_t idx = loom_ref_index(&a->ref);
            if (nout && (idx < nout - 1 || idx == LOG_INDEX)) continue;
            char hex[41];
            loom_ref_to_hex(&a->ref, hex);
            loom_snprintf(err, errlen, "task '%s': %s %s is not known to the cluster", t->name,
                          k == t->nargs ? "library" : "argument ref", hex);
            rc = LOOM_ENOTFOUND;
        }
        uintptr_t nout = 1 + (t->kind == LOOM_TASK_COMMAND ? t->noutputs : 0);
        if (!rc && loom_hmap_put(&seen, t->task_id, 16, (void *)(nout + 1))) rc = LOOM_ENOMEM;
    }
    loom_hmap_free(&seen);
    return rc;
}

static task *task_create(head *h, const loom_wire_task *spec, job *j, client *c)
{
    task *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    memcpy(t->id, spec->task_id, 16);
    if (loom_wire_task_copy(&t->arena, &t->spec, spec)) goto oom;
    if (t->spec.num_cpus <= 0 && spec->actor_op != LOOM_ACTOR_CREATE) t->spec.num_cpus = 1;
    if (spec->actor_op == LOOM_ACTOR_CALL) t->spec.num_cpus = 0; /* the actor holds the resources */
    int nouts = 1 + (spec->kind == LOOM_TASK_COMMAND ? (int)spec->noutputs : 0);
    t->outs = calloc((size_t)nouts + 1, sizeof(obj *));
    if (!t->outs) goto oom;
    t->nouts = nouts + 1;
    t->job = j;
    t->t_submit = loom_now_ms();
    t->caller = c->id;
    t->bundle = -1;
    if (t->spec.num_cpus <= 0 && spec->actor_op == LOOM_ACTOR_CREATE) t->spec.num_cpus = 0; /* actors: 0 by default */
    if (loom_hmap_put(&h->tasks, t->id, 16, t)) goto oom;
    for (int i = 0; i <= nouts; i++) {
        loom_ref r;
        loom_ref_make(t->id, i == nouts ? LOG_INDEX : (uint32_t)i, &r);
        obj *o = obj_new(h, &r);
        if (!o) continue;
        o->producer = t;
        o->is_log = i == nouts;
        t->outs[i] = o;
        if (o->is_log) continue;
        t->live_outs++;
        o->refs = 1; /* the client's, the detached job's, or (a creation) the actor's */
        if (!j->detached && spec->actor_op != LOOM_ACTOR_CREATE) client_hold(c, &r);
    }
    return t;
oom:
    loom_arena_free(&t->arena);
    free(t->outs);
    free(t);
    return NULL;
}

static void task_link_deps(head *h, task *t)
{
    const char *failed_msg = NULL;
    int failed_code = 0;
    t->deps_held = 1;
    for (uint32_t k = 0; k <= t->spec.nargs; k++) {
        loom_wire_arg *a = k < t->spec.nargs ? &t->spec.args[k] : &t->spec.lib;
        if (a->kind != LOOM_WARG_REF) continue;
        if (k == t->spec.nargs && t->spec.kind != LOOM_TASK_FUNCTION) continue;
        obj *o = obj_get(h, &a->ref);
        if (!o) continue;
        o->refs++;
        if (o->state == O_PENDING) {
            if (!grow_array((void **)&o->waiters, &o->cap_wait, o->nwait + 1, sizeof(*o->waiters))) {
                memcpy(o->waiters[o->nwait++], t->id, 16);
                t->pending_deps++;
            }
        } else if (o->state == O_FAILED && !failed_msg) {
            failed_msg = o->error;
            failed_code = o->code;
        }
    }
    if (failed_msg) {
        char msg[1024];
        loom_snprintf(msg, sizeof(msg), "a dependency failed: %s", failed_msg);
        task_fail(h, t, failed_code == LOOM_ECANCELLED ? LOOM_ECANCELLED : LOOM_EDEP, msg);
    } else if (t->pending_deps == 0) {
        queue_task(h, t);
    }
    if (t->state < T_DONE) persist_task(h, t);
}

static void actor_new(head *h, task *t, client *c);
static void actor_add_call(head *h, task *t);
static actor *actor_by_name(head *h, const char *name);
static void actor_created(head *h, task *t);
static void actor_requeue_call(head *h, actor *a, task *t);

/* The job a submission already made, when every one of its tasks is known and
 * in that one job: a client sends a request again when its connection closed
 * before the answer came (the head may have read it before it died). */
static job *repeated_submit(head *h, const loom_msg *m)
{
    if (m->ntasks == 0) return NULL;
    task *first = loom_hmap_get(&h->tasks, m->tasks[0].task_id, 16);
    if (!first || !first->job) return NULL;
    for (uint32_t i = 1; i < m->ntasks; i++) {
        task *t = loom_hmap_get(&h->tasks, m->tasks[i].task_id, 16);
        if (!t || t->job != first->job) return NULL;
    }
    return first->job;
}

static void on_submit(head *h, client *c, loom_msg *m)
{
    char err[512];
    job *again = repeated_submit(h, m);
    if (again) {
        loom_msg r;
        loom_msg_init(&r, LOOM_MSG_SUBMITTED, m->req);
        r.name = again->id;
        send_after_commit(h, c->ident, c->identlen, &r);
        return;
    }
    int rc = validate_submit(h, m, err, sizeof(err));
    if (rc) {
        reply_error(h, c->ident, c->identlen, m->req, rc, err);
        return;
    }
    job *j = calloc(1, sizeof(*j));
    if (!j) return;
    uint8_t raw[8];
    loom_random_bytes(raw, sizeof(raw));
    loom_hex_encode(raw, sizeof(raw), j->id);
    j->name = dupstr(m->name[0] ? m->name : "graph");
    j->label = dupstr(m->text ? m->text : "");
    j->detached = m->flag != 0;
    j->owner = c->id;
    j->t_submit = loom_now_ms();
    j->t_wall_ms = wall_ms();
    j->tasks = calloc(m->ntasks ? m->ntasks : 1, sizeof(task *));
    if (!j->tasks) { free(j->name); free(j->label); free(j); return; }
    loom_hmap_put(&h->jobs, j->id, strlen(j->id), j);
    for (uint32_t i = 0; i < m->ntasks; i++) {
        task *t = task_create(h, &m->tasks[i], j, c);
        if (t) {
            j->tasks[j->ntasks++] = t;
            j->live++;
            if (t->spec.actor_op == LOOM_ACTOR_CREATE) actor_new(h, t, c);
            else if (t->spec.actor_op == LOOM_ACTOR_CALL) actor_add_call(h, t);
        }
    }
    /* link after all are created so refs to earlier tasks of this graph resolve */
    for (int i = 0; i < j->ntasks; i++) {
        j->tasks[i]->state = T_WAITING;
        h->counts[T_WAITING]++;
        task_link_deps(h, j->tasks[i]);
    }
    persist_job(h, j);
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_SUBMITTED, m->req);
    r.name = j->id;
    send_after_commit(h, c->ident, c->identlen, &r);
    schedule(h);
}

static void on_put_done(head *h, client *c, loom_msg *m)
{
    obj *o = obj_get(h, &m->ref);
    if (!o) {
        if (m->u0 > LOOM_INLINE_MAX || m->data.n != m->u0) {
            node *n = node_get(h, m->id);
            if (!n || !n->alive) {
                reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such node");
                return;
            }
        }
        o = obj_new(h, &m->ref);
        if (!o) {
            reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
            return;
        }
        o->refs = 1;
        client_hold(c, &m->ref);
        obj_set_ready(h, o, m->u0, m->data.p, m->data.n, m->id);
    } else if (!m->flag && loom_hmap_get(&c->held, m->ref.id, LOOM_ID_LEN)) {
        /* the same put sent again after a closed connection: a put's ref is
           random, so only its putter can hold it already; counted once */
    } else {
        o->refs++;
        client_hold(c, &m->ref);
    }
    /* A content-addressed object (a task library) is never freed while the head
     * runs: another driver may put the same bytes under the same ref at any time,
     * and a put of an id already in a store is a no-op, so a delete in flight
     * would remove the new copy. */
    if (m->flag && !o->kept) {
        o->kept = 1;
        o->refs++;
    }
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_OK, m->req);
    send_after_commit(h, c->ident, c->identlen, &r);
}

/* ---- subscriptions to objects not known yet -------------------------------
 * loom_put and loom_submit do not wait for the head, so a driver handed a ref
 * by another driver (out of band) may ask for it before the put or submission
 * that makes it arrives.  The answer "no such object" therefore waits up to
 * UNKNOWN_GRACE_MS for the object to appear (obj_new). */

#define UNKNOWN_GRACE_MS 250
#define MAX_PARKED 65536

typedef struct parked_sub {
    uint32_t client;
    loom_ref ref;
    int64_t deadline;
} parked_sub;

static void send_not_found(head *h, client *c, const loom_ref *ref)
{
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_OBJ_READY, 0);
    r.ref = *ref;
    r.code = LOOM_ENOTFOUND;
    r.text = "no such object (never made, or already released)";
    send_to(h, c->ident, c->identlen, &r);
}

static void arm_park_timer(head *h);

static void park_sub(head *h, client *c, const loom_ref *ref)
{
    if (h->nparked >= MAX_PARKED ||
        grow_array((void **)&h->parked, &h->cap_parked, h->nparked + 1, sizeof(parked_sub))) {
        send_not_found(h, c, ref);
        return;
    }
    h->parked[h->nparked++] = (parked_sub){c->id, *ref, loom_now_ms() + UNKNOWN_GRACE_MS};
    if (!uv_is_active((uv_handle_t *)&h->park_timer)) arm_park_timer(h);
}

/* o was just made: the drivers that asked for it early subscribe to it (it
 * is pending; obj_finish tells them when it is ready). */
static void unpark_into(head *h, obj *o)
{
    for (int i = 0; i < h->nparked;) {
        if (memcmp(h->parked[i].ref.id, o->ref.id, LOOM_ID_LEN) != 0) {
            i++;
            continue;
        }
        if (!grow_array((void **)&o->subs, &o->cap_subs, o->nsubs + 1, sizeof(uint32_t)))
            o->subs[o->nsubs++] = h->parked[i].client;
        h->parked[i] = h->parked[--h->nparked];
    }
}

static void on_park_timer(uv_timer_t *tm)
{
    head *h = tm->data;
    int64_t now = loom_now_ms();
    for (int i = 0; i < h->nparked;) {
        if (h->parked[i].deadline > now) { i++; continue; }
        client *c = client_by_id(h, h->parked[i].client);
        if (c) send_not_found(h, c, &h->parked[i].ref);
        h->parked[i] = h->parked[--h->nparked];
    }
    if (h->nparked) arm_park_timer(h);
}

static void arm_park_timer(head *h)
{
    int64_t first = h->parked[0].deadline;
    for (int i = 1; i < h->nparked; i++)
        if (h->parked[i].deadline < first) first = h->parked[i].deadline;
    int64_t wait = first - loom_now_ms();
    uv_timer_start(&h->park_timer, on_park_timer, wait > 0 ? (uint64_t)wait : 0, 0);
}

static void on_subscribe(head *h, client *c, loom_msg *m)
{
    for (uint32_t i = 0; i < m->nrefs; i++) {
        obj *o = obj_get(h, &m->refs[i]);
        if (!o) {
            park_sub(h, c, &m->refs[i]);
        } else if (o->state != O_PENDING) {
            notify_ready(h, o, c->id);
        } else {
            int already = 0; /* clients ask again now and then: once is enough */
            for (int k = 0; k < o->nsubs && !already; k++) already = o->subs[k] == c->id;
            if (!already && !grow_array((void **)&o->subs, &o->cap_subs, o->nsubs + 1, sizeof(uint32_t)))
                o->subs[o->nsubs++] = c->id;
        }
    }
}

static void on_release(head *h, client *c, loom_msg *m)
{
    for (uint32_t i = 0; i < m->nrefs; i++) {
        if (!client_unhold(c, &m->refs[i])) continue;
        obj_unref(h, obj_get(h, &m->refs[i]));
    }
}

static void cancel_task(head *h, task *t)
{
    if (t->state >= T_DONE || t->cancelled) return;
    if (t->state == T_RUNNING) {
        node *n = node_get(h, t->node);
        t->cancelled = 1;
        if (n && n->alive) {
            loom_msg m;
            loom_msg_init(&m, LOOM_MSG_CANCEL_TASK, 0);
            loom_ref_make(t->id, 0, &m.ref);
            send_to(h, n->ident, n->identlen, &m);
        }
        task_finish_outputs_failed(h, t, LOOM_ECANCELLED, "cancelled");
        if (t->spec.actor_op == LOOM_ACTOR_CREATE) actor_creation_failed(h, t, LOOM_ECANCELLED, "cancelled");
        return;
    }
    task_fail(h, t, LOOM_ECANCELLED, "cancelled");
}

/* Cancel the unfinished tasks of a driver's (non-detached) jobs.  Works from
 * task ids: cancelling one task can free others. */
static void cancel_jobs_of(head *h, uint32_t client_id)
{
    uint8_t (*ids)[16] = NULL;
    size_t n = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->jobs, &it, &v)) {
        job *j = v;
        if (j->owner != client_id || j->detached) continue;
        for (int i = 0; i < j->ntasks; i++) {
            task *t = j->tasks[i];
            if (!t || t->state >= T_DONE) continue;
            if (t->spec.actor_op == LOOM_ACTOR_CREATE && t->spec.detached) continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                void *p = realloc(ids, ncap * 16);
                if (!p) break;
                ids = p;
                cap = ncap;
            }
            memcpy(ids[n++], t->id, 16);
        }
    }
    for (size_t i = 0; i < n; i++) {
        task *t = loom_hmap_get(&h->tasks, ids[i], 16);
        if (t) cancel_task(h, t);
    }
    if (n) LOG_INFO("cancelled %zu unfinished tasks of driver %u", n, client_id);
    free(ids);
}

static void on_cancel(head *h, client *c, loom_msg *m)
{
    task *t = loom_hmap_get(&h->tasks, m->ref.id, 16);
    if (!t) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such task");
        return;
    }
    cancel_task(h, t);
    reply_ok(h, c, m->req);
}

static void release_node_resources(head *h, task *t)
{
    node *n = node_get(h, t->node);
    if (n && n->running) n->running--;
    if (!t->grant) return;
    loom_request r;
    spec_request(&t->spec, &r);
    give_grant(h, t->node, t->spec.has_pg ? t->spec.pg : NULL, t->bundle, &r, &t->grant);
}

static void on_task_done(head *h, client *c, loom_msg *m)
{
    task *t = loom_hmap_get(&h->tasks, m->ref.id, 16);
    if (!t || t->state != T_RUNNING || t->node != c->node_id) {
        LOG_DEBUG("TASK_DONE for a task not running on node %u: ignored", c->node_id);
        return;
    }
    if (m->code && task_should_retry(t, m->code)) {
        task_retry(h, t, c->node_id, m->text[0] ? m->text : loom_strerror(m->code));
        schedule(h);
        return;
    }
    if (m->code == LOOM_EACTOR && t->spec.actor_op == LOOM_ACTOR_CALL && !t->cancelled) {
        actor *a = loom_hmap_get(&h->actors, t->spec.actor, 16);
        /* the daemon fails the calls of an actor whose process died, then
           says ACTOR_DIED; a call submitted in between (the ROUTER reads its
           peers in turn) must not go to the dead process: the actor is lost
           now, and its running calls, this one too, are retried or failed */
        if (a && a->state == A_ALIVE && a->node == c->node_id) {
            t->pinned++;
            actor_lost(h, a, m->text[0] ? m->text : "its process exited");
            actors_gc(h);
            int handled = t->state != T_RUNNING;
            t->pinned--;
            if (handled) {
                task_maybe_free(h, t);
                schedule(h);
                return;
            }
        }
    }
    t->pinned++; /* setting an output can free it and with the last one t */
    if (t->spec.actor_op == LOOM_ACTOR_CALL) {
        actor *a = loom_hmap_get(&h->actors, t->spec.actor, 16);
        if (a) {
            if (a->running) a->running--;
            if (m->code || t->cancelled) a->calls_failed++;
            else a->calls_done++;
        }
    }
    int created = t->spec.actor_op == LOOM_ACTOR_CREATE && !m->code && !t->cancelled;
    if (created) actor_created(h, t); /* the actor keeps the task's resources */
    release_node_resources(h, t);
    t->t_end = loom_now_ms();
    /* a finished task keeps its arguments for lineage (and an actor that may
       restart its creation's); calls and failed tasks let them go */
    int keep = !m->code && !t->cancelled && t->spec.actor_op != LOOM_ACTOR_CALL &&
               (t->spec.actor_op != LOOM_ACTOR_CREATE || t->spec.max_restarts != 0);
    if (!keep) task_release_deps(h, t);
    /* the log, even of a failed task */
    for (uint32_t i = 0; i < m->noutputs; i++) {
        loom_wire_output *out = &m->outputs[i];
        if (out->index != LOG_INDEX) continue;
        obj *o = t->outs[t->nouts - 1];
        if (o) obj_set_ready(h, o, out->size, out->value.p, out->value.n, c->node_id);
    }
    if (t->cancelled) {
        t->code = LOOM_ECANCELLED;
        t->error = strdup("cancelled");
        task_set_state(h, t, T_FAILED);
    } else if (m->code) {
        char full[20000];
        t->code = m->code;
        t->error = strdup(with_history(t, m->text[0] ? m->text : loom_strerror(m->code), full, sizeof(full)));
        task_set_state(h, t, T_FAILED);
        task_finish_outputs_failed(h, t, m->code, t->error);
        if (t->spec.actor_op == LOOM_ACTOR_CREATE) actor_creation_failed(h, t, m->code, t->error);
    } else {
        task_set_state(h, t, T_DONE);
        for (uint32_t i = 0; i < m->noutputs; i++) {
            loom_wire_output *out = &m->outputs[i];
            if (out->index == LOG_INDEX || (int)out->index >= t->nouts - 1) continue;
            obj *o = t->outs[out->index];
            if (o) obj_set_ready(h, o, out->size, out->value.p, out->value.n, c->node_id);
        }
        task_finish_outputs_failed(h, t, LOOM_EPROTO, "the executor reported no such output");
    }
    t->pinned--;
    task_maybe_free(h, t);
    schedule(h);
}

static void on_obj_added(head *h, client *c, loom_msg *m)
{
    obj *o = obj_get(h, &m->ref);
    if (o && o->state == O_READY && !o->value) {
        obj_add_loc(o, c->node_id);
        persist_obj(h, o); /* a restarted head knows every copy */
    }
}

/* ---- actors ------------------------------------------------------------- */

/* Names (actor names, keys) are longer than the map's keys: map their hash. */
static void name_key(const char *name, uint8_t out[32])
{
    loom_sha256(name, strlen(name), out);
}

static actor *actor_by_name(head *h, const char *name)
{
    uint8_t k[32];
    name_key(name, k);
    return loom_hmap_get(&h->actor_names, k, sizeof(k));
}

/* The actor that creation task t makes, owned by client owner (0: none
 * known, as after a head restart); NULL when out of memory. */
static actor *actor_new_owned(head *h, task *t, uint32_t owner)
{
    actor *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    memcpy(a->id, t->id, 16);
    a->name = dupstr(t->spec.actor_name);
    a->cls = dupstr(t->spec.function);
    a->owner = owner;
    a->detached = t->spec.detached || !owner;
    a->max_concurrency = t->spec.max_concurrency ? t->spec.max_concurrency : 1;
    a->max_restarts = t->spec.max_restarts;
    a->max_task_retries = t->spec.max_task_retries;
    a->t_created = loom_now_ms();
    a->bundle = -1;
    a->ready_obj = t->outs[0];
    if (loom_hmap_put(&h->actors, a->id, 16, a)) {
        free(a->name); free(a->cls); free(a);
        return NULL;
    }
    if (a->name[0]) {
        uint8_t k[32];
        name_key(a->name, k);
        loom_hmap_put(&h->actor_names, k, sizeof(k), a);
    }
    return a;
}

static void actor_new(head *h, task *t, client *c)
{
    actor_new_owned(h, t, c->id);
}

static void actor_add_call(head *h, task *t)
{
    actor *a = loom_hmap_get(&h->actors, t->spec.actor, 16);
    if (!a || grow_array((void **)&a->calls, &a->cap_calls, a->ncalls + 1, sizeof(*a->calls))) return;
    t->seq = ++a->next_seq;
    memcpy(a->calls[a->ncalls++], t->id, 16);
}

/* Put a call that was running back among the waiting ones, in its place. */
static void actor_requeue_call(head *h, actor *a, task *t)
{
    if (grow_array((void **)&a->calls, &a->cap_calls, a->ncalls + 1, sizeof(*a->calls))) return;
    int at = a->ncalls;
    for (int i = 0; i < a->ncalls; i++) {
        task *o = loom_hmap_get(&h->tasks, a->calls[i], 16);
        if (o && o->seq > t->seq) {
            at = i;
            break;
        }
    }
    memmove(&a->calls[at + 1], &a->calls[at], (size_t)(a->ncalls - at) * sizeof(*a->calls));
    memcpy(a->calls[at], t->id, 16);
    a->ncalls++;
    t->state = T_QUEUED;
    t->attempts++;
    persist_task(h, t); /* not running any more: a restarted head must not wait for it */
}

static int caller_in(const uint32_t *list, int n, uint32_t id)
{
    for (int i = 0; i < n; i++)
        if (list[i] == id) return 1;
    return 0;
}

/* Hand the actor's ready calls to its node, in order: a call goes only when
 * every earlier call of the same caller has gone.  Calls of a dead actor
 * fail as they become ready. */
static void actor_dispatch(head *h, actor *a)
{
    if (a->state == A_PENDING) return;
    node *n = a->state == A_ALIVE ? node_get(h, a->node) : NULL;
    uint32_t blocked[64];
    int nb = 0, w = 0;
    char msg[700];
    for (int i = 0; i < a->ncalls; i++) {
        task *t = loom_hmap_get(&h->tasks, a->calls[i], 16);
        if (!t || t->state >= T_RUNNING) continue; /* gone, or already handed over */
        int is_blocked = nb == 64 || caller_in(blocked, nb, t->caller);
        if (t->state == T_QUEUED && a->state == A_DEAD) {
            loom_snprintf(msg, sizeof(msg), "actor %s%s%s is dead: %s", a->cls, a->name[0] ? " " : "",
                          a->name, a->error ? a->error : "");
            a->calls_failed++;
            task_fail(h, t, LOOM_EACTOR, msg);
            continue;
        }
        if (!is_blocked && t->state == T_QUEUED && n && n->alive) {
            a->running++;
            assign(h, t, n, NULL, NULL, -1);
            continue;
        }
        if (!is_blocked) blocked[nb++] = t->caller;
        memcpy(a->calls[w++], a->calls[i], 16);
    }
    a->ncalls = w;
}

/* The ids of the calls of a that its node is running (malloc'd in *ids). */
static int running_calls(head *h, const actor *a, uint8_t (**ids)[16])
{
    int n = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->state == T_RUNNING && t->spec.actor_op == LOOM_ACTOR_CALL && !memcmp(t->spec.actor, a->id, 16) &&
            !grow_array((void **)ids, &cap, n + 1, 16))
            memcpy((*ids)[n++], t->id, 16);
    }
    return n;
}

/* The actor is dead: free its resources and name, fail its calls. */
static void actor_die(head *h, actor *a, const char *why)
{
    if (a->state == A_DEAD) return;
    int was_alive = a->state == A_ALIVE;
    a->state = A_DEAD;
    char *prev = a->error; /* a restart's reason; why may point into it */
    a->error = strdup(why);
    free(prev);
    a->t_died = loom_now_ms();
    h->dead_actors++;
    LOG_INFO("actor %s %s is dead: %s", a->cls, a->name, why);
    if (a->name[0] && actor_by_name(h, a->name) == a) {
        uint8_t k[32];
        name_key(a->name, k);
        loom_hmap_del(&h->actor_names, k, sizeof(k));
    }
    if (a->grant) give_grant(h, a->node, a->has_pg ? a->pg : NULL, a->bundle, a->req, &a->grant);
    free(a->req);
    a->req = NULL;
    /* its creation, if still under way */
    task *ct = loom_hmap_get(&h->tasks, a->id, 16);
    if (ct && ct->state < T_DONE) cancel_task(h, ct);
    if (a->deps_held && ct) {
        a->deps_held = 0;
        task_release_deps(h, ct);
    }
    /* calls handed to its node: fail them now (the node's reports come too late) */
    if (was_alive) {
        uint8_t (*ids)[16] = NULL;
        int n = running_calls(h, a, &ids);
        char msg[700];
        loom_snprintf(msg, sizeof(msg), "actor %s%s%s died while running the call: %s", a->cls,
                      a->name[0] ? " " : "", a->name, why);
        for (int i = 0; i < n; i++) {
            task *t = loom_hmap_get(&h->tasks, ids[i], 16);
            if (!t || t->state != T_RUNNING) continue;
            release_node_resources(h, t);
            t->state = T_QUEUED;
            a->calls_failed++;
            task_fail(h, t, LOOM_EACTOR, msg);
        }
        free(ids);
        a->running = 0;
    }
    actor_dispatch(h, a);
}

/* The actor's process or node died and it may restart: give back what it
 * held, put calls that were running back in line (or fail those out of
 * retries), and run its creation again with the same arguments. */
static void actor_restart(head *h, actor *a, const char *why)
{
    task *ct = loom_hmap_get(&h->tasks, a->id, 16);
    a->restarts++;
    a->state = A_PENDING;
    free(a->error);
    a->error = strdup(why);
    if (a->grant) give_grant(h, a->node, a->has_pg ? a->pg : NULL, a->bundle, a->req, &a->grant);
    LOG_INFO("actor %s %s died (%s): restart %u%s", a->cls, a->name, why, a->restarts,
             a->max_restarts < 0 ? "" : " of its limit");
    /* calls handed to its node */
    uint8_t (*ids)[16] = NULL;
    int n = running_calls(h, a, &ids);
    char msg[700];
    loom_snprintf(msg, sizeof(msg), "actor %s%s%s died while running the call: %s", a->cls, a->name[0] ? " " : "",
                  a->name, why);
    for (int i = 0; i < n; i++) {
        task *t = loom_hmap_get(&h->tasks, ids[i], 16);
        if (!t || t->state != T_RUNNING) continue;
        release_node_resources(h, t);
        if (t->attempts < a->max_task_retries) {
            history_add(t, t->node, msg);
            actor_requeue_call(h, a, t);
        } else {
            t->state = T_QUEUED;
            a->calls_failed++;
            char full[20000];
            task_fail(h, t, LOOM_EACTOR, with_history(t, msg, full, sizeof(full)));
        }
    }
    free(ids);
    a->running = 0;
    /* its creation again: the task record and its arguments were kept */
    if (!ct) {
        actor_die(h, a, "cannot restart: its creation record is gone");
        return;
    }
    ct->t_start = ct->t_end = 0;
    queue_task(h, ct);
    persist_task(h, ct);
}

/* The actor's process or node died: restart it if it may, else it is dead. */
static void actor_lost(head *h, actor *a, const char *why)
{
    if (a->state == A_ALIVE && (a->max_restarts < 0 || a->restarts < (uint32_t)a->max_restarts)) {
        actor_restart(h, a, why);
        return;
    }
    char msg[800];
    if (a->restarts) {
        loom_snprintf(msg, sizeof(msg), "%s (after %u restarts)", why, a->restarts);
        why = msg;
    }
    actor_die(h, a, why);
}

/* Forget dead actors beyond the newest few hundred (listing keeps those). */
static void actors_gc(head *h)
{
    while (h->dead_actors > 256) {
        actor *oldest = NULL;
        size_t it = 0;
        void *v;
        while (loom_hmap_next(&h->actors, &it, &v)) {
            actor *a = v;
            if (a->state == A_DEAD && a->ncalls == 0 && (!oldest || a->t_died < oldest->t_died)) oldest = a;
        }
        if (!oldest) return;
        loom_hmap_del(&h->actors, oldest->id, 16);
        h->dead_actors--;
        obj *o = oldest->ready_obj;
        free(oldest->name); free(oldest->cls); free(oldest->calls); free(oldest->error);
        free(oldest);
        if (o && obj_get(h, &o->ref) == o) obj_unref(h, o);
    }
}

/* Kill an actor: its node ends its process. */
static void actor_kill(head *h, actor *a, const char *why)
{
    if (a->state == A_DEAD) return;
    if (a->state == A_ALIVE) {
        node *n = node_get(h, a->node);
        if (n && n->alive) {
            loom_msg m;
            loom_msg_init(&m, LOOM_MSG_ACTOR_KILL, 0);
            loom_ref_make(a->id, 0, &m.ref);
            send_to(h, n->ident, n->identlen, &m);
        }
    }
    actor_die(h, a, why);
    actors_gc(h);
}

/* Its creation task finished well: the actor is alive on that node and keeps
 * the resources the task was given. */
static void actor_created(head *h, task *t)
{
    actor *a = loom_hmap_get(&h->actors, t->id, 16);
    if (!a || a->state != A_PENDING) return;
    a->state = A_ALIVE;
    a->node = t->node;
    a->t_ready = loom_now_ms();
    a->grant = t->grant;
    t->grant = NULL;
    a->bundle = t->bundle;
    a->has_pg = t->spec.has_pg;
    memcpy(a->pg, t->spec.pg, 16);
    if (!a->req) a->req = malloc(sizeof(loom_request));
    if (a->req) spec_request(&t->spec, a->req);
    if (a->max_restarts != 0) a->deps_held = 1; /* on_task_done keeps them for restarts */
    actor_dispatch(h, a);
}

static void actor_creation_failed(head *h, task *t, int code, const char *msg)
{
    actor *a = loom_hmap_get(&h->actors, t->id, 16);
    if (!a) return;
    char why[1200];
    loom_snprintf(why, sizeof(why), "%s%s", code == LOOM_ECANCELLED ? "" : "its init failed: ", msg);
    actor_die(h, a, why);
    actors_gc(h);
}

/* Apply fn to every actor match() accepts; in batches, since fn can change
 * the table. */
typedef int (*actor_match_fn)(const actor *a, const void *arg);
typedef void (*actor_fn)(head *h, actor *a, const char *why);

static void actors_apply(head *h, actor_match_fn match, const void *arg, actor_fn fn, const char *why)
{
    actor *victims[256];
    int nv;
    do {
        nv = 0;
        size_t it = 0;
        void *v;
        while (loom_hmap_next(&h->actors, &it, &v) && nv < 256)
            if (match(v, arg)) victims[nv++] = v;
        for (int i = 0; i < nv; i++) fn(h, victims[i], why);
    } while (nv == 256);
}

static int alive_on_node(const actor *a, const void *arg)
{
    return a->state == A_ALIVE && a->node == *(const uint32_t *)arg;
}

static int owned_by(const actor *a, const void *arg)
{
    return a->state != A_DEAD && a->owner == *(const uint32_t *)arg && !a->detached;
}

static int in_pg(const actor *a, const void *arg)
{
    return a->state != A_DEAD && a->has_pg && !memcmp(a->pg, arg, 16);
}

static void actors_on_dead_node(head *h, node *n, const char *msg)
{
    actors_apply(h, alive_on_node, &n->id, actor_lost, msg);
    actors_gc(h);
}

static void kill_actors_of(head *h, uint32_t client_id)
{
    actors_apply(h, owned_by, &client_id, actor_kill, "the client that created it disconnected");
}

/* arg: the head; a node that will not rejoin (dead before a restart) */
static int alive_on_gone_node(const actor *a, const void *arg)
{
    node *on = node_get((head *)arg, a->node);
    return a->state == A_ALIVE && (!on || !on->awaiting);
}

static int restartable_on_node(const actor *a, const void *arg)
{
    return alive_on_node(a, arg) && (a->max_restarts < 0 || a->restarts < (uint32_t)a->max_restarts);
}

/* Move an actor off a draining node: end its process there and restart it
 * elsewhere (its calls in flight follow its max_task_retries). */
static void actor_move(head *h, actor *a, const char *why)
{
    node *n = node_get(h, a->node);
    if (n && n->alive) {
        loom_msg m;
        loom_msg_init(&m, LOOM_MSG_ACTOR_KILL, 0);
        loom_ref_make(a->id, 0, &m.ref);
        send_to(h, n->ident, n->identlen, &m);
    }
    actor_restart(h, a, why);
}

/* `loom drain NODE`: place nothing new on the node; what runs there
 * finishes; actors that may restart move to other nodes.  The node reads
 * "drained" in `loom status` once nothing runs there; stopping its daemon is
 * then safe (what only it held is rebuilt from lineage). */
static void on_drain(head *h, client *c, loom_msg *m)
{
    node *n = node_get(h, m->id);
    if (!n || !n->alive) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such live node");
        return;
    }
    if (!n->draining) {
        n->draining = 1;
        h->nodes_epoch++;
        LOG_INFO("node %u (%s) is draining", n->id, n->info.hostname);
        char why[128];
        loom_snprintf(why, sizeof(why), "node %u is draining", n->id);
        actors_apply(h, restartable_on_node, &n->id, actor_move, why);
    }
    reply_ok(h, c, m->req);
    schedule(h);
}

static void on_actor_lookup(head *h, client *c, loom_msg *m)
{
    actor *a = actor_by_name(h, m->name);
    if (!a) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no live actor has that name");
        return;
    }
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_REF, m->req);
    loom_ref_make(a->id, 0, &r.ref);
    send_to(h, c->ident, c->identlen, &r);
}

static void on_actor_kill(head *h, client *c, loom_msg *m)
{
    actor *a = loom_hmap_get(&h->actors, m->ref.id, 16);
    if (!a) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such actor");
        return;
    }
    actor_kill(h, a, "killed");
    reply_ok(h, c, m->req);
    schedule(h);
}

static void on_actor_died(head *h, client *c, loom_msg *m)
{
    actor *a = loom_hmap_get(&h->actors, m->ref.id, 16);
    if (!a || a->state != A_ALIVE || a->node != c->node_id) return;
    actor_lost(h, a, m->text[0] ? m->text : "its process exited");
    actors_gc(h);
    schedule(h);
}

/* ---- placement groups --------------------------------------------------- */

static void pg_free(head *h, pgroup *g)
{
    loom_hmap_del(&h->pgs, g->id, 16);
    free(g->name); free(g->breq); free(g->bpool); free(g->bgrant); free(g->bnode); free(g->reason);
    free(g);
}

/* Try to reserve every bundle now.  1 when the group changed state. */
static int pg_try_place(head *h, pgroup *g)
{
    if (g->state != PG_PENDING) return 0;
    const loom_pool **pools = calloc((size_t)h->nnode_list + 1, sizeof(*pools));
    node **nodes = calloc((size_t)h->nnode_list + 1, sizeof(*nodes));
    int *assign_to = calloc((size_t)g->nb, sizeof(int));
    int n = 0, changed = 0;
    char why[512] = "";
    if (!pools || !nodes || !assign_to) goto out;
    for (int i = 0; i < h->nnode_list; i++)
        if (h->node_list[i]->alive && !h->node_list[i]->draining) {
            nodes[n] = h->node_list[i];
            pools[n++] = &h->node_list[i]->pool;
        }
    if (n == 0) goto out;
    if (loom_pg_place(pools, n, g->breq, g->nb, g->strategy, 0, assign_to, why, sizeof(why)) == 0) {
        int b = 0;
        for (; b < g->nb; b++)
            if (loom_pool_carve(&nodes[assign_to[b]]->pool, &g->breq[b], &g->bpool[b], &g->bgrant[b])) break;
        if (b < g->nb) { /* cannot happen when pg_place said yes; undo */
            while (b-- > 0) loom_pool_give(&nodes[assign_to[b]]->pool, &g->breq[b], &g->bgrant[b]);
            goto out;
        }
        for (b = 0; b < g->nb; b++) g->bnode[b] = nodes[assign_to[b]]->id;
        g->state = PG_CREATED;
        g->t_placed = loom_now_ms();
        h->pending_pgs--;
        changed = 1;
        LOG_INFO("placement group %s placed (%d bundles, %s)", g->name, g->nb, loom_pg_strategy_name(g->strategy));
    } else if (loom_pg_place(pools, n, g->breq, g->nb, g->strategy, 1, assign_to, why, sizeof(why)) != 0) {
        char msg[700];
        g->state = PG_INFEASIBLE;
        g->reason = strdup(why);
        h->pending_pgs--;
        changed = 1;
        loom_snprintf(msg, sizeof(msg), "placement group '%s' is infeasible: %s", g->name, why);
        note_infeasible(h, msg);
        LOG_WARN("%s", msg);
    }
out:
    free(pools);
    free(nodes);
    free(assign_to);
    return changed;
}

static void pg_retry_pending(head *h)
{
    size_t it = 0;
    void *v;
    while (h->pending_pgs && loom_hmap_next(&h->pgs, &it, &v)) pg_try_place(h, v);
}

static void on_pg_create(head *h, client *c, loom_msg *m)
{
    pgroup *g = calloc(1, sizeof(*g));
    if (!g) return;
    g->nb = (int)m->nbundles;
    g->breq = calloc(m->nbundles, sizeof(loom_request));
    g->bpool = calloc(m->nbundles, sizeof(loom_pool));
    g->bgrant = calloc(m->nbundles, sizeof(loom_grant));
    g->bnode = calloc(m->nbundles, sizeof(uint32_t));
    if (!g->breq || !g->bpool || !g->bgrant || !g->bnode) {
        free(g->breq); free(g->bpool); free(g->bgrant); free(g->bnode); free(g);
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    for (int b = 0; b < g->nb; b++) {
        loom_wire_bundle *wb = &m->bundles[b];
        loom_request *r = &g->breq[b];
        r->cpus = wb->num_cpus;
        r->memory = wb->memory;
        r->gpus = wb->num_gpus;
        r->gpu_memory = wb->gpu_memory;
        for (uint32_t i = 0; i < wb->nres && i < LOOM_POOL_MAX_RES; i++) {
            loom_snprintf(r->res[r->nres].name, sizeof(r->res[0].name), "%s", wb->res[i].name);
            r->res[r->nres++].amount = wb->res[i].amount;
        }
        char err[256];
        if (loom_request_check(r, err, sizeof(err))) {
            char msg[300];
            loom_snprintf(msg, sizeof(msg), "bundle %d: %s", b, err);
            free(g->breq); free(g->bpool); free(g->bgrant); free(g->bnode); free(g);
            reply_error(h, c->ident, c->identlen, m->req, LOOM_EINVAL, msg);
            return;
        }
    }
    loom_random_bytes(g->id, 16);
    g->name = dupstr(m->name[0] ? m->name : "pg");
    g->strategy = (int)m->flag;
    g->owner = c->id;
    g->t_created = loom_now_ms();
    if (loom_hmap_put(&h->pgs, g->id, 16, g)) {
        g->state = PG_REMOVED;
        pg_free(h, g);
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    h->pending_pgs++;
    pg_try_place(h, g);
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_REF, m->req);
    loom_ref_make(g->id, 0, &r.ref);
    send_to(h, c->ident, c->identlen, &r);
    schedule(h);
}

/* Remove a group: cancel its tasks, kill its actors, give its bundles back. */
static void pg_remove(head *h, pgroup *g)
{
    uint8_t (*ids)[16] = NULL;
    int n = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->state < T_DONE && t->spec.has_pg && !memcmp(t->spec.pg, g->id, 16) &&
            t->spec.actor_op != LOOM_ACTOR_CALL && !grow_array((void **)&ids, &cap, n + 1, 16))
            memcpy(ids[n++], t->id, 16);
    }
    for (int i = 0; i < n; i++) {
        task *t = loom_hmap_get(&h->tasks, ids[i], 16);
        if (t) cancel_task(h, t);
    }
    free(ids);
    actors_apply(h, in_pg, g->id, actor_kill, "its placement group was removed");
    if (g->state == PG_CREATED)
        for (int b = 0; b < g->nb; b++) {
            node *nd = node_get(h, g->bnode[b]);
            if (nd && nd->alive) loom_pool_give(&nd->pool, &g->breq[b], &g->bgrant[b]);
        }
    if (g->state == PG_PENDING) h->pending_pgs--;
    g->state = PG_REMOVED;
    pg_free(h, g);
}

static void on_pg_remove(head *h, client *c, loom_msg *m)
{
    pgroup *g = loom_hmap_get(&h->pgs, m->ref.id, 16);
    if (!g) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such placement group");
        return;
    }
    pg_remove(h, g);
    reply_ok(h, c, m->req);
    schedule(h);
}

static void remove_pgs_of(head *h, uint32_t client_id)
{
    pgroup *victims[64];
    int nv;
    do {
        nv = 0;
        size_t it = 0;
        void *v;
        while (loom_hmap_next(&h->pgs, &it, &v) && nv < 64)
            if (((pgroup *)v)->owner == client_id) victims[nv++] = v;
        for (int i = 0; i < nv; i++) pg_remove(h, victims[i]);
    } while (nv == 64);
}

/* ---- key-value table ---------------------------------------------------- */

typedef struct kv_entry {
    char *key;
    uint8_t *val;
    size_t len;
} kv_entry;

#define KV_MAX_KEYS 100000

static void kv_reply(head *h, uint32_t client_id, uint64_t req, const kv_entry *e)
{
    client *c = client_by_id(h, client_id);
    if (!c) return;
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_INFO, req);
    r.data.p = e->val;
    r.data.n = e->len;
    send_to(h, c->ident, c->identlen, &r);
}

static void kv_entry_free(kv_entry *e)
{
    if (!e) return;
    free(e->key);
    free(e->val);
    free(e);
}

/* A key's record: [name, value], under the key's hash (LMDB keys are short). */
static void persist_kv(head *h, const uint8_t k[32], const kv_entry *e)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 2);
    loom_pack_cstr(p, e->key);
    loom_pack_bin(p, e->val, e->len);
    headdb_put(h->db, HEADDB_KV, k, 32, loom_pack_data(p), loom_pack_size(p));
}

static void on_kv_put(head *h, client *c, loom_msg *m)
{
    uint8_t k[32];
    name_key(m->name, k);
    kv_entry *e = loom_hmap_get(&h->kv, k, sizeof(k));
    if (!e && h->kv.count >= KV_MAX_KEYS) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_EFULL, "the key-value table is full");
        return;
    }
    uint8_t *val = malloc(m->data.n ? m->data.n : 1);
    kv_entry *ne = e ? e : calloc(1, sizeof(*ne));
    if (!val || !ne || (!e && !(ne->key = strdup(m->name))) || (!e && loom_hmap_put(&h->kv, k, sizeof(k), ne))) {
        free(val);
        if (!e) kv_entry_free(ne);
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    if (m->data.n) memcpy(val, m->data.p, m->data.n);
    free(ne->val);
    ne->val = val;
    ne->len = m->data.n;
    persist_kv(h, k, ne);
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_OK, m->req);
    send_after_commit(h, c->ident, c->identlen, &r);
    for (kv_wait **pw = &h->kv_waits; *pw;) {
        kv_wait *w = *pw;
        if (strcmp(w->key, m->name)) {
            pw = &w->next;
            continue;
        }
        kv_reply(h, w->client, w->req, ne);
        *pw = w->next;
        free(w->key);
        free(w);
    }
}

static void on_kv_get(head *h, client *c, loom_msg *m)
{
    uint8_t k[32];
    name_key(m->name, k);
    kv_entry *e = loom_hmap_get(&h->kv, k, sizeof(k));
    if (e) {
        kv_reply(h, c->id, m->req, e);
        return;
    }
    if (m->u0 == 0) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such key");
        return;
    }
    kv_wait *w = calloc(1, sizeof(*w));
    if (!w || !(w->key = strdup(m->name))) {
        free(w);
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    w->client = c->id;
    w->req = m->req;
    w->deadline = loom_now_ms() + (int64_t)(m->u0 > 3600000 ? 3600000 : m->u0);
    w->next = h->kv_waits;
    h->kv_waits = w;
}

static void on_kv_del(head *h, client *c, loom_msg *m)
{
    uint8_t k[32];
    name_key(m->name, k);
    kv_entry_free(loom_hmap_del(&h->kv, k, sizeof(k)));
    headdb_del(h->db, HEADDB_KV, k, sizeof(k));
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_OK, m->req);
    send_after_commit(h, c->ident, c->identlen, &r);
}

/* Answer waiters whose time is up (client_id 0), or drop a client's. */
static void kv_expire(head *h, uint32_t drop_client)
{
    int64_t now = loom_now_ms();
    for (kv_wait **pw = &h->kv_waits; *pw;) {
        kv_wait *w = *pw;
        int gone = drop_client ? w->client == drop_client : now >= w->deadline;
        if (!gone) {
            pw = &w->next;
            continue;
        }
        if (!drop_client) {
            client *c = client_by_id(h, w->client);
            char msg[700];
            loom_snprintf(msg, sizeof(msg), "key '%s' did not appear in time", w->key);
            if (c) reply_error(h, c->ident, c->identlen, w->req, LOOM_ETIMEOUT, msg);
        }
        *pw = w->next;
        free(w->key);
        free(w);
    }
}

/* ---- inspection --------------------------------------------------------- */

static void pack_kv_str(loom_pack *p, const char *k, const char *v)
{
    loom_pack_cstr(p, k);
    loom_pack_cstr(p, v ? v : "");
}

static void pack_kv_u64(loom_pack *p, const char *k, uint64_t v)
{
    loom_pack_cstr(p, k);
    loom_pack_u64(p, v);
}

static void pack_kv_f64(loom_pack *p, const char *k, double v)
{
    loom_pack_cstr(p, k);
    loom_pack_f64(p, v);
}

static void send_info(head *h, client *c, uint64_t req, loom_pack *p)
{
    loom_msg r;
    loom_msg_init(&r, LOOM_MSG_INFO, req);
    r.data.p = loom_pack_data(p);
    r.data.n = loom_pack_size(p);
    send_to(h, c->ident, c->identlen, &r);
}

static int node_hosts_actors(head *h, uint32_t node_id)
{
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->actors, &it, &v))
        if (alive_on_node(v, &node_id)) return 1;
    return 0;
}

static int node_cmp(const void *a, const void *b)
{
    const node *x = *(node *const *)a, *y = *(node *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void on_status(head *h, client *c, loom_msg *m)
{
    loom_pack *p = loom_pack_new();
    if (!p) return;
    uint64_t by_state[5] = {0};
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->tasks, &it, &v)) by_state[((task *)v)->state]++;
    loom_pack_map(p, 7);
    node **sorted = calloc(h->nodes.count + 1, sizeof(node *));
    size_t nn = 0;
    it = 0;
    while (sorted && loom_hmap_next(&h->nodes, &it, &v)) sorted[nn++] = v;
    if (sorted) qsort(sorted, nn, sizeof(node *), node_cmp);
    loom_pack_cstr(p, "nodes");
    loom_pack_array(p, (uint32_t)nn);
    for (size_t k = 0; k < nn; k++) {
        node *n = sorted[k];
        loom_pack_map(p, 17);
        pack_kv_u64(p, "id", n->id);
        pack_kv_str(p, "hostname", n->info.hostname);
        pack_kv_str(p, "address", n->info.data_addr);
        pack_kv_str(p, "state", !n->alive ? "dead" : !n->draining ? "alive"
                                : n->running || node_hosts_actors(h, n->id) ? "draining" : "drained");
        pack_kv_f64(p, "cpus", n->pool.cpus);
        pack_kv_f64(p, "cpus_used", n->pool.cpus_used);
        pack_kv_u64(p, "memory", n->pool.memory);
        pack_kv_u64(p, "memory_used", n->pool.memory_used);
        pack_kv_u64(p, "gpus", (uint64_t)n->pool.ngpus);
        double gused = 0;
        for (int g = 0; g < n->pool.ngpus; g++) gused += 1.0 - n->pool.gpu_free[g];
        pack_kv_f64(p, "gpus_used", gused < 1e-9 ? 0 : gused);
        pack_kv_u64(p, "gpu_memory", n->pool.gpu_memory);
        loom_pack_cstr(p, "resources");
        loom_pack_map(p, (uint32_t)n->pool.nres);
        for (int r = 0; r < n->pool.nres; r++) {
            loom_pack_cstr(p, n->pool.res[r].name);
            loom_pack_array(p, 2);
            loom_pack_f64(p, n->pool.res[r].amount);
            loom_pack_f64(p, n->pool.res_used[r]);
        }
        loom_pack_cstr(p, "labels");
        loom_pack_map(p, n->info.nlabels);
        for (uint32_t l = 0; l < n->info.nlabels; l++) pack_kv_str(p, n->info.labels[l].key, n->info.labels[l].value);
        pack_kv_u64(p, "store_capacity", n->info.capacity);
        pack_kv_u64(p, "store_used", n->store_used);
        pack_kv_u64(p, "running", n->running);
        pack_kv_f64(p, "utilization", loom_pool_utilization(&n->pool));
    }
    free(sorted);
    loom_pack_cstr(p, "tasks");
    loom_pack_map(p, 5);
    for (int s = 0; s < 5; s++) pack_kv_u64(p, task_state_names[s], by_state[s]);
    loom_pack_cstr(p, "total");
    loom_pack_map(p, 2);
    pack_kv_u64(p, "finished", h->counts[T_DONE]);
    pack_kv_u64(p, "failed", h->counts[T_FAILED]);
    pack_kv_u64(p, "objects", h->objs.count);
    uint64_t by_actor_state[3] = {0};
    it = 0;
    while (loom_hmap_next(&h->actors, &it, &v)) by_actor_state[((actor *)v)->state]++;
    loom_pack_cstr(p, "actors");
    loom_pack_map(p, 3);
    for (int a = 0; a < 3; a++) pack_kv_u64(p, actor_state_names[a], by_actor_state[a]);
    uint64_t by_pg_state[4] = {0};
    it = 0;
    while (loom_hmap_next(&h->pgs, &it, &v)) by_pg_state[((pgroup *)v)->state]++;
    loom_pack_cstr(p, "placement_groups");
    loom_pack_map(p, 3);
    for (int g = 0; g < 3; g++) pack_kv_u64(p, pg_state_names[g], by_pg_state[g]);
    /* the latest infeasible requests, newest first */
    loom_pack_cstr(p, "infeasible");
    loom_pack_map(p, 2);
    pack_kv_u64(p, "count", h->ninfeasible);
    uint32_t nrecent = 0;
    for (int i = 0; i < 16; i++) nrecent += h->infeasible[i] != NULL;
    loom_pack_cstr(p, "recent");
    loom_pack_array(p, nrecent);
    for (int i = 1; i <= 16; i++) {
        const char *msg = h->infeasible[(h->ninfeasible_next - i + 32) % 16];
        if (msg) loom_pack_cstr(p, msg);
    }
    send_info(h, c, m->req, p);
    loom_pack_destroy(&p);
}

static void pack_hex16(loom_pack *p, const char *k, const uint8_t *id)
{
    char hex[33];
    loom_hex_encode(id, 16, hex);
    pack_kv_str(p, k, hex);
}

static void on_actors(head *h, client *c, loom_msg *m)
{
    loom_pack *p = loom_pack_new();
    if (!p) return;
    loom_pack_array(p, (uint32_t)h->actors.count);
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->actors, &it, &v)) {
        actor *a = v;
        loom_pack_map(p, 14);
        pack_hex16(p, "id", a->id);
        pack_kv_str(p, "class", a->cls);
        pack_kv_str(p, "name", a->name);
        pack_kv_str(p, "state", actor_state_names[a->state]);
        pack_kv_u64(p, "node", a->state == A_PENDING ? 0 : a->node);
        pack_kv_u64(p, "owner", a->owner);
        loom_pack_cstr(p, "detached");
        loom_pack_bool(p, a->detached);
        pack_kv_u64(p, "max_concurrency", a->max_concurrency);
        pack_kv_u64(p, "calls_waiting", (uint64_t)a->ncalls);
        pack_kv_u64(p, "calls_running", (uint64_t)a->running);
        pack_kv_u64(p, "calls_done", a->calls_done);
        pack_kv_u64(p, "calls_failed", a->calls_failed);
        pack_kv_str(p, "error", a->error);
        loom_pack_cstr(p, "pg");
        if (a->has_pg) {
            char hex[33];
            loom_hex_encode(a->pg, 16, hex);
            loom_pack_cstr(p, hex);
        } else {
            loom_pack_nil(p);
        }
    }
    send_info(h, c, m->req, p);
    loom_pack_destroy(&p);
}

static void on_pg_info(head *h, client *c, loom_msg *m)
{
    pgroup *g = loom_hmap_get(&h->pgs, m->ref.id, 16);
    if (!g) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such placement group (removed?)");
        return;
    }
    loom_pack *p = loom_pack_new();
    if (!p) return;
    loom_pack_map(p, 6);
    pack_hex16(p, "id", g->id);
    pack_kv_str(p, "name", g->name);
    pack_kv_str(p, "strategy", loom_pg_strategy_name(g->strategy));
    pack_kv_str(p, "state", pg_state_names[g->state]);
    pack_kv_str(p, "reason", g->reason);
    loom_pack_cstr(p, "bundles");
    loom_pack_array(p, (uint32_t)g->nb);
    for (int b = 0; b < g->nb; b++) {
        char ids[128] = "";
        if (g->state == PG_CREATED) {
            node *nd = node_get(h, g->bnode[b]);
            if (nd) loom_grant_gpu_ids(&nd->pool, &g->bgrant[b], ids, sizeof(ids));
        }
        loom_pack_map(p, 6);
        pack_kv_u64(p, "node", g->state == PG_CREATED ? g->bnode[b] : 0);
        pack_kv_f64(p, "cpus", g->breq[b].cpus);
        pack_kv_f64(p, "gpus", g->breq[b].gpus);
        pack_kv_u64(p, "memory", g->breq[b].memory);
        pack_kv_str(p, "gpu_ids", ids);
        pack_kv_f64(p, "cpus_used", g->state == PG_CREATED ? g->bpool[b].cpus_used : 0);
    }
    send_info(h, c, m->req, p);
    loom_pack_destroy(&p);
}

static job *find_job(head *h, client *c, loom_msg *m)
{
    job *j = loom_hmap_get(&h->jobs, m->name, strlen(m->name));
    if (!j) reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such job");
    return j;
}

static void on_job_info(head *h, client *c, loom_msg *m)
{
    job *j = find_job(h, c, m);
    if (!j) return;
    loom_pack *p = loom_pack_new();
    if (!p) return;
    loom_pack_map(p, 6);
    pack_kv_str(p, "id", j->id);
    pack_kv_str(p, "name", j->name);
    pack_kv_str(p, "label", j->label ? j->label : "");
    pack_kv_u64(p, "submitted_ms", (uint64_t)j->t_wall_ms);
    loom_pack_cstr(p, "detached");
    loom_pack_bool(p, j->detached);
    loom_pack_cstr(p, "tasks");
    int live = 0;
    for (int i = 0; i < j->ntasks; i++) live += j->tasks[i] != NULL;
    loom_pack_array(p, (uint32_t)live);
    for (int i = 0; i < j->ntasks; i++) {
        task *t = j->tasks[i];
        if (!t) continue;
        char hex[41];
        loom_ref r;
        loom_ref_make(t->id, 0, &r);
        loom_ref_to_hex(&r, hex);
        loom_pack_map(p, 7);
        pack_kv_str(p, "name", t->spec.name);
        pack_kv_str(p, "state", task_state_names[t->state]);
        pack_kv_str(p, "ref", hex);
        pack_kv_u64(p, "node", t->node);
        pack_kv_str(p, "error", t->error);
        pack_kv_u64(p, "outputs", (uint64_t)(t->nouts - 1));
        pack_kv_u64(p, "ms", t->t_end && t->t_start ? (uint64_t)(t->t_end - t->t_start) : 0);
    }
    send_info(h, c, m->req, p);
    loom_pack_destroy(&p);
}

/* Newest first, then by id (a stable order for pages). */
static int job_newer(const void *a, const void *b)
{
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    if (x->t_wall_ms != y->t_wall_ms) return x->t_wall_ms > y->t_wall_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static void pack_job_summary(loom_pack *p, const job *j)
{
    uint64_t by_state[5] = {0};
    for (int i = 0; i < j->ntasks; i++)
        if (j->tasks[i]) by_state[j->tasks[i]->state]++;
    loom_pack_map(p, 7);
    pack_kv_str(p, "id", j->id);
    pack_kv_str(p, "name", j->name);
    pack_kv_str(p, "label", j->label ? j->label : "");
    loom_pack_cstr(p, "detached");
    loom_pack_bool(p, j->detached);
    pack_kv_u64(p, "submitted_ms", (uint64_t)j->t_wall_ms);
    pack_kv_u64(p, "tasks", (uint64_t)j->live);
    loom_pack_cstr(p, "states");
    loom_pack_map(p, 5);
    for (int s = 0; s < 5; s++) pack_kv_u64(p, task_state_names[s], by_state[s]);
}

/* A page of the jobs (with label m->text, if given), newest first. */
static void on_jobs(head *h, client *c, loom_msg *m)
{
    job **all = malloc((h->jobs.count ? h->jobs.count : 1) * sizeof(job *));
    loom_pack *p = loom_pack_new();
    if (!all || !p) {
        free(all);
        loom_pack_destroy(&p);
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    size_t n = 0, it = 0;
    void *v;
    while (loom_hmap_next(&h->jobs, &it, &v)) {
        job *j = v;
        if (!m->text || !m->text[0] || (j->label && !strcmp(j->label, m->text))) all[n++] = j;
    }
    qsort(all, n, sizeof(job *), job_newer);
    uint64_t off = m->u0 < n ? m->u0 : n, limit = m->u1 ? (m->u1 < 1000 ? m->u1 : 1000) : 100;
    uint64_t end = n - off < limit ? n : off + limit;
    loom_pack_map(p, 4);
    pack_kv_u64(p, "total", n);
    pack_kv_u64(p, "offset", off);
    pack_kv_u64(p, "limit", limit);
    loom_pack_cstr(p, "jobs");
    loom_pack_array(p, (uint32_t)(end - off));
    for (uint64_t i = off; i < end; i++) pack_job_summary(p, all[i]);
    send_info(h, c, m->req, p);
    loom_pack_destroy(&p);
    free(all);
}

static void on_job_ref(head *h, client *c, loom_msg *m)
{
    job *j = find_job(h, c, m);
    if (!j) return;
    for (int i = 0; i < j->ntasks; i++) {
        task *t = j->tasks[i];
        if (!t || strcmp(t->spec.name, m->text)) continue;
        if (m->u0 >= (uint64_t)(t->nouts - 1) && m->u0 != LOG_INDEX) {
            reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such output");
            return;
        }
        loom_msg r;
        loom_msg_init(&r, LOOM_MSG_REF, m->req);
        loom_ref_make(t->id, (uint32_t)m->u0, &r.ref);
        send_to(h, c->ident, c->identlen, &r);
        return;
    }
    reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such task in the job");
}

static void on_job_delete(head *h, client *c, loom_msg *m)
{
    job *j = find_job(h, c, m);
    if (!j) return;
    /* Work from task ids, never from task pointers kept across a call that
     * can free tasks: cancelling one task fails (and may free) its
     * dependents in the job, and dropping a task's last output frees it. */
    int detached = j->detached, n = 0;
    uint8_t (*ids)[16] = malloc((size_t)(j->ntasks ? j->ntasks : 1) * 16);
    if (!ids) {
        reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    for (int i = 0; i < j->ntasks; i++)
        if (j->tasks[i]) memcpy(ids[n++], j->tasks[i]->id, 16);
    job_free(h, j); /* clears every task's job pointer */
    for (int i = 0; i < n; i++) {
        task *t = loom_hmap_get(&h->tasks, ids[i], 16);
        if (t) cancel_task(h, t);
    }
    /* a detached job held one ref to each output; the task goes with the
     * last, so look it up again after each */
    task *t;
    for (int i = 0; detached && i < n; i++)
        for (int k = 0; (t = loom_hmap_get(&h->tasks, ids[i], 16)) && k < t->nouts; k++) {
            obj *o = t->outs[k];
            if (o && !o->is_log) obj_unref(h, o);
        }
    free(ids);
    reply_ok(h, c, m->req);
}

/* ---- dispatch ----------------------------------------------------------- */

static void dispatch(head *h, client *c, loom_msg *m)
{
    int is_node = c->role == LOOM_ROLE_NODE;
    switch (m->type) {
    case LOOM_MSG_HEARTBEAT:
        if (is_node) {
            node *n = node_get(h, c->node_id);
            if (n && !n->alive) {
                /* declared dead (a cut link that came back): its work went
                   elsewhere; it joins again as a new node */
                reply_error(h, c->ident, c->identlen, 0, LOOM_ESTATE,
                            "this node was declared dead: say hello again to rejoin");
                client_drop(h, c);
                return;
            }
            if (n) {
                n->last_seen = loom_now_ms();
                n->store_used = m->u0;
                n->reported_running = m->u1;
            }
        }
        return;
    case LOOM_MSG_SUBMIT: on_submit(h, c, m); return;
    case LOOM_MSG_PUT_DONE: on_put_done(h, c, m); return;
    case LOOM_MSG_SUBSCRIBE: on_subscribe(h, c, m); return;
    case LOOM_MSG_RELEASE: on_release(h, c, m); return;
    case LOOM_MSG_CANCEL: on_cancel(h, c, m); return;
    case LOOM_MSG_STATUS: on_status(h, c, m); return;
    case LOOM_MSG_JOB_INFO: on_job_info(h, c, m); return;
    case LOOM_MSG_JOBS: on_jobs(h, c, m); return;
    case LOOM_MSG_JOB_REF: on_job_ref(h, c, m); return;
    case LOOM_MSG_JOB_DELETE: on_job_delete(h, c, m); return;
    case LOOM_MSG_BYE: client_drop(h, c); return;
    case LOOM_MSG_TASK_DONE:
        if (is_node) { on_task_done(h, c, m); return; }
        break;
    case LOOM_MSG_OBJ_ADDED:
        if (is_node) { on_obj_added(h, c, m); return; }
        break;
    case LOOM_MSG_ACTOR_DIED:
        if (is_node) { on_actor_died(h, c, m); return; }
        break;
    case LOOM_MSG_ACTOR_LOOKUP: on_actor_lookup(h, c, m); return;
    case LOOM_MSG_ACTOR_KILL: on_actor_kill(h, c, m); return;
    case LOOM_MSG_ACTORS: on_actors(h, c, m); return;
    case LOOM_MSG_PG_CREATE: on_pg_create(h, c, m); return;
    case LOOM_MSG_PG_REMOVE: on_pg_remove(h, c, m); return;
    case LOOM_MSG_PG_INFO: on_pg_info(h, c, m); return;
    case LOOM_MSG_DRAIN: on_drain(h, c, m); return;
    case LOOM_MSG_RUNNING:
        if (is_node) { on_running(h, c, m); return; }
        break;
    case LOOM_MSG_KV_PUT: on_kv_put(h, c, m); return;
    case LOOM_MSG_KV_GET: on_kv_get(h, c, m); return;
    case LOOM_MSG_KV_DEL: on_kv_del(h, c, m); return;
    default:
        break;
    }
    reply_error(h, c->ident, c->identlen, m->req, LOOM_EPROTO, "unexpected message for the head");
}

/* The request number of a frame that did not decode, when its head
 * [version, type, req, ...] can still be read (so the sender gets its answer). */
static uint64_t frame_req(const void *buf, size_t len)
{
    loom_unpack u;
    uint32_t n;
    uint64_t version, type, req;
    loom_unpack_init(&u, buf, len);
    if (loom_unpack_array(&u, &n) || n < 3 || loom_unpack_u64(&u, &version) || loom_unpack_u64(&u, &type) ||
        loom_unpack_u64(&u, &req))
        return 0;
    return req;
}

static void on_frames(void *arg, zmq_msg_t *frames, int n)
{
    head *h = arg;
    if (n != 2) {
        LOG_WARN("dropped a message of %d frames", n);
        return;
    }
    const uint8_t *ident = zmq_msg_data(&frames[0]);
    size_t identlen = zmq_msg_size(&frames[0]);
    if (identlen == 0 || identlen > MAX_IDENT) return;
    loom_msg m;
    char err[256];
    if (loom_wire_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), &m, err, sizeof(err))) {
        LOG_WARN("rejected a malformed message: %s", err);
        reply_error(h, ident, identlen, frame_req(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1])),
                    LOOM_EPROTO, err);
        return;
    }
    if (m.type == LOOM_MSG_HELLO) {
        on_hello(h, ident, identlen, &m);
    } else {
        client *c = loom_hmap_get(&h->clients, ident, identlen);
        /* ESTATE, not EAUTH: a peer of a head that restarted joins again */
        if (!c) reply_error(h, ident, identlen, m.req, LOOM_ESTATE, "say hello with the cluster secret first");
        else dispatch(h, c, &m);
    }
    loom_msg_free(&m);
    drain_unrefs(h);
}

/* ---- drivers that go away ---------------------------------------------- */

/* A driver that dies without saying BYE would hold its refs for ever.  When a
 * connection closes (the socket monitor says so), probe every driver: a send
 * to a peer whose connection is gone fails (ROUTER_MANDATORY), and that
 * driver is dropped like one that said BYE.  Nodes are judged by heartbeats. */
static void probe_drivers(head *h)
{
    client *gone[256];
    int n = 0;
    size_t it = 0;
    void *v;
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_OK, 0);
    if (loom_wire_encode(&m, h->out)) return;
    while (loom_hmap_next(&h->clients, &it, &v) && n < 256) {
        client *c = v;
        if (c->role != LOOM_ROLE_DRIVER) continue;
        /* only "no route" means gone; a full pipe (EAGAIN) is a busy driver */
        if (zmq_send(h->router, c->ident, c->identlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (errno == EHOSTUNREACH) gone[n++] = c;
            continue;
        }
        zmq_send(h->router, loom_pack_data(h->out), loom_pack_size(h->out), ZMQ_DONTWAIT);
    }
    for (int i = 0; i < n; i++) {
        LOG_INFO("driver %u went away without saying goodbye: releasing what it held", gone[i]->id);
        client_drop(h, gone[i]);
    }
    if (n) schedule(h);
}

static void on_monitor(void *arg, zmq_msg_t *frames, int n)
{
    head *h = arg;
    if (n < 1 || zmq_msg_size(&frames[0]) < 2) return;
    uint16_t event;
    memcpy(&event, zmq_msg_data(&frames[0]), sizeof(event));
    if (event == ZMQ_EVENT_DISCONNECTED) probe_drivers(h);
}

static void watch_disconnects(head *h)
{
    char ep[64];
    loom_snprintf(ep, sizeof(ep), "inproc://head-monitor-%p", (void *)h);
    if (zmq_socket_monitor(h->router, ep, ZMQ_EVENT_DISCONNECTED) != 0) return;
    h->monitor = zmq_socket(h->zctx, ZMQ_PAIR);
    if (!h->monitor || zmq_connect(h->monitor, ep) != 0 ||
        loom_zwatch_start(h->loop, h->monitor, on_monitor, h, &h->monitor_watch) != 0)
        LOG_WARN("cannot watch for closed connections: drivers that crash keep their refs");
}


/* ---- reloading the tables (a head restarted with its state dir) --------- */

static char *unpack_cstr(loom_unpack *u)
{
    const char *s;
    size_t n;
    if (loom_unpack_str(u, &s, &n)) return NULL;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = 0;
    }
    return out;
}

/* A node of the old head: it is expected to rejoin (its daemon reconnects by
 * itself); until then its objects are still served from its data port. */
static int load_node(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    uint32_t id, n;
    double cpus = 0;
    int alive = 0;
    if (klen != sizeof(id)) return 0;
    memcpy(&id, key, sizeof(id));
    loom_unpack u;
    loom_unpack_init(&u, val, vlen);
    if (loom_unpack_array(&u, &n) || n != 4) return 0;
    char *host = unpack_cstr(&u), *addr = unpack_cstr(&u);
    if (!host || !addr || loom_unpack_f64(&u, &cpus) || loom_unpack_bool(&u, &alive) || node_get(h, id)) {
        free(host);
        free(addr);
        return 0;
    }
    node *nd = calloc(1, sizeof(*nd));
    if (!nd) {
        free(host);
        free(addr);
        return 0;
    }
    nd->id = id;
    nd->info.id = id;
    nd->info.hostname = host;
    nd->info.data_addr = addr;
    nd->info.store_dir = dupstr("");
    nd->info.spill_dir = dupstr("");
    nd->info.num_cpus = cpus;
    loom_wire_node w = {.num_cpus = cpus};
    if (node_init_resources(h, nd, &w) || loom_hmap_put(&h->nodes, &nd->id, sizeof(nd->id), nd)) {
        node_info_free(&nd->info);
        free(nd);
        return 0;
    }
    nd->awaiting = alive;
    nd->last_seen = loom_now_ms();
    if (id > h->next_node_id) h->next_node_id = id;
    return 0;
}

static int load_obj(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    if (klen != LOOM_ID_LEN) return 0;
    loom_ref ref;
    memcpy(ref.id, key, LOOM_ID_LEN);
    loom_unpack u;
    loom_unpack_init(&u, val, vlen);
    uint32_t n, nlocs;
    uint64_t state, size;
    int64_t code;
    const void *value;
    size_t vn;
    if (loom_unpack_array(&u, &n) || n != 6 || loom_unpack_u64(&u, &state) || state > O_FAILED ||
        loom_unpack_i64(&u, &code))
        return 0;
    char *error = unpack_cstr(&u);
    if (!error || loom_unpack_u64(&u, &size) || loom_unpack_bin(&u, &value, &vn) || loom_unpack_array(&u, &nlocs) ||
        obj_get(h, &ref)) {
        free(error);
        return 0;
    }
    obj *o = obj_new(h, &ref);
    if (!o) {
        free(error);
        return 0;
    }
    o->state = (int)state;
    o->code = (int32_t)code;
    o->size = size;
    if (error[0]) o->error = error;
    else free(error);
    if (vn || (state == O_READY && size == 0)) {
        o->value = malloc(vn ? vn : 1);
        if (o->value && vn) memcpy(o->value, value, vn);
    }
    for (uint32_t i = 0; i < nlocs; i++) {
        uint64_t loc;
        if (loom_unpack_u64(&u, &loc)) break;
        obj_add_loc(o, (uint32_t)loc);
    }
    return 0;
}

static int load_task(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    if (klen != 16 || loom_hmap_get(&h->tasks, key, 16)) return 0;
    loom_unpack u;
    loom_unpack_init(&u, val, vlen);
    uint32_t n;
    uint64_t state, node_id;
    int64_t code;
    loom_arena tmp = {0};
    loom_wire_task spec;
    char err[256];
    if (loom_unpack_array(&u, &n) || n != 5 || loom_wire_unpack_task(&u, &tmp, &spec, err, sizeof(err)) ||
        loom_unpack_u64(&u, &state) || state > T_FAILED || loom_unpack_i64(&u, &code)) {
        loom_arena_free(&tmp);
        return 0;
    }
    char *error = unpack_cstr(&u);
    task *t = calloc(1, sizeof(*t));
    if (!error || loom_unpack_u64(&u, &node_id) || !t || loom_wire_task_copy(&t->arena, &t->spec, &spec)) {
        free(error);
        if (t) loom_arena_free(&t->arena);
        free(t);
        loom_arena_free(&tmp);
        return 0;
    }
    loom_arena_free(&tmp);
    memcpy(t->id, key, 16);
    t->state = (int)state;
    t->code = (int32_t)code;
    if (error[0]) t->error = error;
    else free(error);
    t->node = (uint32_t)node_id;
    t->bundle = -1;
    int nouts = 1 + (t->spec.kind == LOOM_TASK_COMMAND ? (int)t->spec.noutputs : 0);
    t->outs = calloc((size_t)nouts + 1, sizeof(obj *));
    if (!t->outs || loom_hmap_put(&h->tasks, t->id, 16, t)) {
        free(t->outs);
        free(t->error);
        loom_arena_free(&t->arena);
        free(t);
        return 0;
    }
    t->nouts = nouts + 1;
    for (int i = 0; i <= nouts; i++) {
        loom_ref r;
        loom_ref_make(t->id, i == nouts ? LOG_INDEX : (uint32_t)i, &r);
        obj *o = obj_get(h, &r);
        if (!o) o = obj_new(h, &r);
        if (!o) continue;
        o->producer = t;
        o->is_log = i == nouts;
        t->outs[i] = o;
        if (o->is_log) continue;
        t->live_outs++;
        o->refs++; /* its job's (a restarted head does not know the drivers' holds) */
    }
    return 0;
}

/* An actor of the old head, from its creation task: alive on its node if
 * that ran (its daemon confirms it when it rejoins), else still starting.
 * Its creator's connection is not known any more: it lives until killed. */
static void actor_reload(head *h, task *t)
{
    actor *a = actor_new_owned(h, t, 0);
    if (!a) return;
    a->state = t->state == T_DONE ? A_ALIVE : A_PENDING;
    a->node = t->node;
    if (a->state == A_ALIVE) {
        a->req = malloc(sizeof(loom_request));
        if (a->req) spec_request(&t->spec, a->req);
        a->deps_held = a->max_restarts != 0;
    }
}

static void hold_deps(head *h, task *t)
{
    t->deps_held = 1;
    if (t->spec.kind == LOOM_TASK_FUNCTION && t->spec.actor_op != LOOM_ACTOR_CALL) {
        obj *o = obj_get(h, &t->spec.lib.ref);
        if (o) o->refs++;
    }
    for (uint32_t i = 0; i < t->spec.nargs; i++) {
        if (t->spec.args[i].kind != LOOM_WARG_REF) continue;
        obj *o = obj_get(h, &t->spec.args[i].ref);
        if (o) o->refs++;
    }
}

static int load_kv(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    if (klen != 32 || loom_hmap_get(&h->kv, key, klen)) return 0;
    loom_unpack u;
    loom_unpack_init(&u, val, vlen);
    uint32_t n;
    const void *data;
    size_t dn;
    if (loom_unpack_array(&u, &n) || n != 2) return 0;
    char *name = unpack_cstr(&u);
    if (!name || loom_unpack_bin(&u, &data, &dn)) {
        free(name);
        return 0;
    }
    kv_entry *e = calloc(1, sizeof(*e));
    if (e) e->val = malloc(dn ? dn : 1);
    if (!e || !e->val || loom_hmap_put(&h->kv, key, klen, e)) {
        if (e) free(e->val);
        free(e);
        free(name);
        return 0;
    }
    e->key = name;
    if (dn) memcpy(e->val, data, dn);
    e->len = dn;
    return 0;
}

static int load_job(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    if (klen == 0 || klen >= LOOM_JOB_ID_LEN || loom_hmap_get(&h->jobs, key, klen)) return 0;
    loom_unpack u;
    loom_unpack_init(&u, val, vlen);
    uint32_t n, ntasks;
    int detached;
    uint64_t owner;
    if (loom_unpack_array(&u, &n) || (n != 4 && n != 6)) return 0;   /* 4: before labels */
    char *name = unpack_cstr(&u);
    if (!name || loom_unpack_bool(&u, &detached) || loom_unpack_u64(&u, &owner) || loom_unpack_array(&u, &ntasks)) {
        free(name);
        return 0;
    }
    job *j = calloc(1, sizeof(*j));
    if (j) j->tasks = calloc(ntasks ? ntasks : 1, sizeof(task *));
    if (!j || !j->tasks) {
        if (j) free(j->tasks);
        free(j);
        free(name);
        return 0;
    }
    memcpy(j->id, key, klen);
    j->id[klen] = 0;
    j->name = name;
    /* its driver's holds are not known any more: the job holds its outputs
       until `loom delete` */
    j->detached = 1;
    j->t_submit = loom_now_ms();
    for (uint32_t i = 0; i < ntasks; i++) {
        const void *id;
        size_t idn;
        if (loom_unpack_bin(&u, &id, &idn)) break;
        task *t = idn == 16 ? loom_hmap_get(&h->tasks, id, 16) : NULL;
        if (!t || t->job) continue;
        t->job = j;
        j->tasks[j->ntasks++] = t;
        j->live++;
    }
    int64_t wall = 0;
    j->label = n == 6 ? unpack_cstr(&u) : NULL;
    if (n == 6 && j->label && loom_unpack_i64(&u, &wall) == 0) j->t_wall_ms = wall;
    if (!j->label) j->label = dupstr("");
    loom_hmap_put(&h->jobs, j->id, strlen(j->id), j);
    persist_job(h, j);
    return 0;
}

/* Rebuild the tables from the state dir: nodes wait for their daemons,
 * finished results stay, tasks that waited wait again, tasks that ran keep
 * running (their nodes say so when they rejoin, else they run again). */
static void load_tables(head *h)
{
    headdb_foreach(h->db, HEADDB_NODES, load_node, h);
    headdb_foreach(h->db, HEADDB_OBJECTS, load_obj, h);
    headdb_foreach(h->db, HEADDB_TASKS, load_task, h);
    /* objects no task makes (puts, libraries): held as their drivers held them */
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        if (!o->producer && o->refs == 0) o->refs = 1;
    }
    /* actors, from their creation tasks (their state is theirs) */
    it = 0;
    while (loom_hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->spec.actor_op == LOOM_ACTOR_CREATE && t->state != T_FAILED) actor_reload(h, t);
    }
    /* what each task holds and waits for */
    size_t ntasks = h->tasks.count, k = 0;
    task **all = calloc(ntasks + 1, sizeof(task *));
    it = 0;
    while (all && loom_hmap_next(&h->tasks, &it, &v)) all[k++] = v;
    for (size_t i = 0; i < k; i++) {
        task *t = all[i];
        t->pinned++;
        /* running on a node that was dead already: no daemon will say what
           became of it, so it waits (and runs) again */
        node *on = t->state == T_RUNNING ? node_get(h, t->node) : NULL;
        if (t->state == T_RUNNING && (!on || !on->awaiting)) {
            history_add(t, t->node, "its node was gone when the head restarted");
            t->attempts++;
            t->state = T_WAITING;
        }
        actor *a = t->spec.actor_op == LOOM_ACTOR_CALL ? loom_hmap_get(&h->actors, t->spec.actor, 16) : NULL;
        if (t->state == T_DONE || t->state == T_RUNNING) {
            hold_deps(h, t);
        } else if (t->state == T_WAITING || t->state == T_QUEUED) {
            t->state = T_WAITING;
            if (a) actor_add_call(h, t); /* in the order the table lists them */
            task_link_deps(h, t);
        }
        if (t->spec.actor_op == LOOM_ACTOR_CALL && !a && t->state < T_DONE) {
            if (t->state == T_RUNNING) t->state = T_QUEUED;
            task_fail(h, t, LOOM_EACTOR, "its actor is gone (the head restarted)");
        }
        t->pinned--;
    }
    free(all);
    headdb_foreach(h->db, HEADDB_JOBS, load_job, h);
    headdb_foreach(h->db, HEADDB_KV, load_kv, h);
    /* actors alive on a node that was dead already: restarted, as any lost actor */
    actors_apply(h, alive_on_gone_node, h, actor_lost, "its node was gone when the head restarted");
    /* objects whose copies were all on nodes already dead: lost, rebuilt
       from their lineage where it allows */
    obj **gone = NULL;
    int ngone = 0, capg = 0;
    it = 0;
    while (loom_hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        if (o->state != O_READY || o->value || o->is_log) continue;
        int live = 0;
        for (int i = 0; i < o->nlocs && !live; i++) {
            node *on = node_get(h, o->locs[i]);
            live = on && on->awaiting;
        }
        if (!live && !grow_array((void **)&gone, &capg, ngone + 1, sizeof(obj *))) gone[ngone++] = o;
    }
    if (ngone) rebuild_lost(h, gone, ngone, "its nodes were gone when the head restarted");
    free(gone);
    if (h->nodes.count || h->tasks.count || h->objs.count || h->kv.count)
        LOG_INFO("reloaded the tables: %zu nodes (waiting for them to rejoin), %zu tasks, %zu objects, %zu jobs, "
                 "%zu keys",
                 h->nodes.count, h->tasks.count, h->objs.count, h->jobs.count, h->kv.count);
}

/* ---- loop --------------------------------------------------------------- */

static void on_tick(uv_timer_t *tm)
{
    head *h = tm->data;
    int64_t now = loom_now_ms();
    size_t it = 0;
    void *v;
    node *dead[64];
    int nd = 0;
    int gone = 0;
    while (loom_hmap_next(&h->nodes, &it, &v) && nd < 64) {
        node *n = v;
        if ((n->alive || n->awaiting) && now - n->last_seen > h->hb_timeout_ms) dead[nd++] = n;
    }
    for (int i = 0; i < nd; i++) {
        if (dead[i]->awaiting) {
            /* node_dead works on live nodes: it fails or reruns what ran there */
            dead[i]->awaiting = 0;
            dead[i]->alive = 1;
            node_dead(h, dead[i], "it did not rejoin after the head restarted");
            gone++;
        } else {
            node_dead(h, dead[i], "missed heartbeats");
        }
    }
    (void)gone;
    if (h->kv_waits) kv_expire(h, 0);
    drain_unrefs(h);
    headdb_commit(h->db);
    headdb_sync(h->db);
    if (nd) schedule(h);
}

/* After each batch of messages, and each loop turn: commit what changed,
 * then answer. */
static void after_batch(void *arg)
{
    commit_and_answer(arg);
}

static void on_commit(uv_check_t *ck)
{
    commit_and_answer(ck->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    head *h = s->data;
    LOG_INFO("signal %d: stopping", signum);
    uv_stop(h->loop);
}

static int bind_router(head *h, const loom_head_opts *o, char *addr, size_t addrlen)
{
    char ep[512];
    if (o->port > 0) loom_snprintf(ep, sizeof(ep), "tcp://%s:%d", o->bind_host, o->port);
    else loom_snprintf(ep, sizeof(ep), "tcp://%s:*", o->bind_host);
    if (zmq_bind(h->router, ep) != 0) {
        LOG_ERROR("cannot listen on %s: %s", ep, zmq_strerror(errno));
        return LOOM_ECONN;
    }
    char last[512];
    size_t sz = sizeof(last);
    zmq_getsockopt(h->router, ZMQ_LAST_ENDPOINT, last, &sz);
    const char *port = strrchr(last, ':');
    char host[256];
    if (o->advertise_host && *o->advertise_host) {
        loom_snprintf(host, sizeof(host), "%s", o->advertise_host);
    } else if (!strcmp(o->bind_host, "0.0.0.0") || !strcmp(o->bind_host, "*")) {
        if (gethostname(host, sizeof(host)) != 0) loom_snprintf(host, sizeof(host), "127.0.0.1");
    } else {
        loom_snprintf(host, sizeof(host), "%s", o->bind_host);
    }
    loom_snprintf(addr, addrlen, "%s:%s", host, port ? port + 1 : "0");
    return LOOM_OK;
}

static void head_free_tables(head *h)
{
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        free(t->outs);
        free(t->error);
        free(t->grant);
        loom_arena_free(&t->arena);
        free(t);
    }
    it = 0;
    while (loom_hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        free(o->error); free(o->value); free(o->locs); free(o->subs); free(o->waiters);
        free(o);
    }
    it = 0;
    while (loom_hmap_next(&h->clients, &it, &v)) {
        client *c = v;
        loom_hmap_free(&c->held);
        free(c);
    }
    it = 0;
    while (loom_hmap_next(&h->nodes, &it, &v)) {
        node *n = v;
        node_info_free(&n->info);
        free(n);
    }
    free(h->node_list);
    free(h->cands);
    it = 0;
    while (loom_hmap_next(&h->actors, &it, &v)) {
        actor *a = v;
        free(a->name); free(a->cls); free(a->calls); free(a->error); free(a->grant); free(a->req);
        free(a);
    }
    it = 0;
    while (loom_hmap_next(&h->pgs, &it, &v)) {
        pgroup *g = v;
        free(g->name); free(g->breq); free(g->bpool); free(g->bgrant); free(g->bnode); free(g->reason);
        free(g);
    }
    it = 0;
    while (loom_hmap_next(&h->kv, &it, &v)) kv_entry_free(v);
    while (h->kv_waits) {
        kv_wait *w = h->kv_waits;
        h->kv_waits = w->next;
        free(w->key);
        free(w);
    }
    for (int i = 0; i < 16; i++) free(h->infeasible[i]);
    free(h->unrefs);
    free(h->parked);
    loom_hmap_free(&h->actors); loom_hmap_free(&h->actor_names); loom_hmap_free(&h->pgs);
    loom_hmap_free(&h->kv);
    it = 0;
    while (loom_hmap_next(&h->jobs, &it, &v)) {
        job *j = v;
        free(j->tasks); free(j->name); free(j->label); free(j);
    }
    loom_hmap_free(&h->tasks); loom_hmap_free(&h->objs); loom_hmap_free(&h->clients);
    loom_hmap_free(&h->clients_by_id); loom_hmap_free(&h->nodes); loom_hmap_free(&h->jobs);
}

static void close_walk(uv_handle_t *hd, void *arg)
{
    (void)arg;
    if (!uv_is_closing(hd)) uv_close(hd, NULL);
}

int loom_head_run(const loom_head_opts *o)
{
    head h;
    memset(&h, 0, sizeof(h));
    loom_head_opts opts = *o;
    if (!opts.bind_host) opts.bind_host = "127.0.0.1";
    h.hb_timeout_ms = opts.heartbeat_timeout_ms > 0 ? opts.heartbeat_timeout_ms : 10000;
    h.nodes_epoch = 1; /* tasks start at 0: each is checked for feasibility once */
    if (!opts.secret || strlen(opts.secret) != LOOM_SECRET_HEX) return LOOM_EAUTH;
    memcpy(h.secret, opts.secret, LOOM_SECRET_HEX + 1);
    int rc = headdb_open(opts.db_dir ? opts.db_dir : opts.state_dir, &h.db);
    if (rc) return rc;
    h.out = loom_pack_new();
    h.rec = loom_pack_new();
    load_tables(&h);
    headdb_commit(h.db);
    h.loop = uv_default_loop();
    h.zctx = zmq_ctx_new();
    h.router = zmq_socket(h.zctx, ZMQ_ROUTER);
    loom_zsock_setup(h.router, ZMQ_ROUTER);
    char addr[512];
    rc = bind_router(&h, &opts, addr, sizeof(addr));
    if (!rc) rc = loom_zwatch_start(h.loop, h.router, on_frames, &h, &h.watch);
    if (!rc) loom_zwatch_after_batch(h.watch, after_batch);
    if (!rc) watch_disconnects(&h);
    if (rc) goto out;
    char path[4096];
    loom_snprintf(path, sizeof(path), "%s/address", opts.state_dir);
    loom_write_file(path, addr, strlen(addr), 0600);
    LOG_INFO("head listening on %s (state in %s)", addr, opts.state_dir);
    if (opts.ready_fd >= 0) {
        char line[600];
        loom_snprintf(line, sizeof(line), "%s\n", addr);
        ssize_t w = write(opts.ready_fd, line, strlen(line));
        (void)w;
        close(opts.ready_fd);
    }
    if (opts.on_listening) opts.on_listening(opts.on_listening_arg, addr);
    uv_timer_init(h.loop, &h.tick);
    h.tick.data = &h;
    uv_timer_start(&h.tick, on_tick, 1000, 1000);
    uv_timer_init(h.loop, &h.park_timer);
    h.park_timer.data = &h;
    uv_check_init(h.loop, &h.commit);
    h.commit.data = &h;
    uv_check_start(&h.commit, on_commit);
    uv_signal_init(h.loop, &h.sigint);
    uv_signal_init(h.loop, &h.sigterm);
    h.sigint.data = h.sigterm.data = &h;
    uv_signal_start(&h.sigint, on_signal, SIGINT);
    uv_signal_start(&h.sigterm, on_signal, SIGTERM);
    uv_run(h.loop, UV_RUN_DEFAULT);
    LOG_INFO("head stopped");
out:
    loom_zwatch_stop(&h.watch);
    loom_zwatch_stop(&h.monitor_watch);
    if (h.monitor) zmq_close(h.monitor);
    uv_walk(h.loop, close_walk, NULL);
    uv_run(h.loop, UV_RUN_DEFAULT);
    uv_loop_close(h.loop);
    for (int i = 0; i < h.nacks; i++) free(h.acks[i].data);
    free(h.acks);
    zmq_close(h.router);
    zmq_ctx_term(h.zctx);
    headdb_close(&h.db);
    head_free_tables(&h);
    loom_pack_destroy(&h.out);
    loom_pack_destroy(&h.rec);
    return rc;
}
