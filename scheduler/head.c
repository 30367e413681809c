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

#define LOG_INDEX 0xFFFFFFFFu
#define MAX_IDENT 32

enum { O_PENDING = 0, O_READY, O_FAILED };
enum { T_WAITING = 0, T_QUEUED, T_RUNNING, T_DONE, T_FAILED };
static const char *task_state_names[] = {"waiting", "queued", "running", "finished", "failed"};

typedef struct task task;
typedef struct job job;

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
};

typedef struct node {
    uint32_t id;
    uint8_t ident[MAX_IDENT];
    size_t identlen;
    loom_wire_node info;         /* strings owned (malloc) */
    double cpus_used;
    uint64_t mem_used;
    uint64_t store_used, reported_running;
    uint64_t running;            /* tasks assigned here and not yet done */
    int alive;
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
};

typedef struct head {
    uv_loop_t *loop;
    void *zctx, *router, *monitor;
    loom_zwatch *watch, *monitor_watch;
    uv_timer_t tick;
    uv_check_t commit;
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
    uint64_t counts[5];          /* tasks by state, ever */
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

static void persist_job(head *h, job *j)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 4);
    loom_pack_cstr(p, j->name);
    loom_pack_bool(p, j->detached);
    loom_pack_u64(p, j->owner);
    loom_pack_array(p, (uint32_t)j->ntasks);
    for (int i = 0; i < j->ntasks; i++) loom_pack_bin(p, j->tasks[i] ? j->tasks[i]->id : NULL, j->tasks[i] ? 16 : 0);
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

static obj *obj_new(head *h, const loom_ref *ref)
{
    obj *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->ref = *ref;
    if (loom_hmap_put(&h->objs, ref->id, LOOM_ID_LEN, o)) {
        free(o);
        return NULL;
    }
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
            if (!n || !n->alive) continue;
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
    free(j);
}

static void task_free(head *h, task *t)
{
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
    if (t->spec.kind == LOOM_TASK_FUNCTION) obj_unref(h, obj_get(h, &t->spec.lib.ref));
    for (uint32_t i = 0; i < t->spec.nargs; i++)
        if (t->spec.args[i].kind == LOOM_WARG_REF) obj_unref(h, obj_get(h, &t->spec.args[i].ref));
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
    t->pinned--;
    task_maybe_free(h, t);
}

static void queue_task(head *h, task *t)
{
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

/* Choose a node for t: among live nodes whose free CPUs and memory fit, the one
 * holding most argument bytes, then the one with most free CPUs. */
static node *place(head *h, task *t)
{
    node *best = NULL;
    uint64_t best_local = 0;
    double best_free = -1;
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->nodes, &it, &v)) {
        node *n = v;
        if (!n->alive) continue;
        double free_cpus = n->info.num_cpus - n->cpus_used;
        if (free_cpus + 1e-9 < t->spec.num_cpus) continue;
        if (t->spec.memory && n->mem_used + t->spec.memory > n->info.memory) continue;
        uint64_t local = t->spec.nargs ? local_bytes(h, t, n->id) : 0;
        if (!best || local > best_local || (local == best_local && free_cpus > best_free)) {
            best = n;
            best_local = local;
            best_free = free_cpus;
        }
    }
    return best;
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
        if (!n || !n->alive) continue;
        dst->locs[dst->nlocs].node = n->id;
        dst->locs[dst->nlocs].addr = n->info.data_addr;
        dst->nlocs++;
    }
}

static void assign(head *h, task *t, node *n)
{
    loom_arena a = {0};
    loom_wire_task wt = t->spec;
    wt.args = t->spec.nargs ? loom_arena_alloc(&a, t->spec.nargs * sizeof(loom_wire_arg)) : NULL;
    if (t->spec.nargs && !wt.args) {
        loom_arena_free(&a);
        return;
    }
    resolve_arg(h, &a, &wt.lib, &t->spec.lib);
    if (t->spec.kind == LOOM_TASK_FUNCTION && wt.lib.kind == LOOM_WARG_VALUE && wt.lib.value.n == 0) {
        /* an empty object cannot be a library, and the daemon would refuse
         * the ASSIGN (leaving the task running forever): fail it here */
        loom_arena_free(&a);
        task_fail(h, t, LOOM_ETASK, "cannot load the task library: it is empty (0 bytes)");
        return;
    }
    for (uint32_t i = 0; i < t->spec.nargs; i++) resolve_arg(h, &a, &wt.args[i], &t->spec.args[i]);
    loom_msg m;
    loom_msg_init(&m, LOOM_MSG_ASSIGN, 0);
    m.tasks = &wt;
    m.ntasks = 1;
    send_to(h, n->ident, n->identlen, &m);
    loom_arena_free(&a);
    t->node = n->id;
    t->t_start = loom_now_ms();
    n->cpus_used += t->spec.num_cpus;
    n->mem_used += t->spec.memory;
    n->running++;
    task_set_state(h, t, T_RUNNING);
}

/* Whether some live node could run t once idle.  With no live node the
 * answer is yes: daemons may still be joining. */
static int feasible(head *h, const task *t)
{
    int live = 0;
    size_t it = 0;
    void *v;
    while (loom_hmap_next(&h->nodes, &it, &v)) {
        const node *n = v;
        if (!n->alive) continue;
        live++;
        if (n->info.num_cpus + 1e-9 >= t->spec.num_cpus && t->spec.memory <= n->info.memory) return 1;
    }
    return live == 0;
}

static void schedule(head *h)
{
    task *prev = NULL, *t = h->q_head;
    int misses = 0;
    while (t && misses < 256) {
        task *next = t->qnext;
        if (t->state != T_QUEUED) { /* cancelled while queued: unlink */
            if (prev) prev->qnext = next;
            else h->q_head = next;
            if (h->q_tail == t) h->q_tail = prev;
            t->pinned--;
            task_maybe_free(h, t);
            t = next;
            continue;
        }
        node *n = place(h, t);
        if (!n && !feasible(h, t)) {
            /* no node could ever run it: fail it (LOOM_EINFEASIBLE) rather
             * than leave it queued forever */
            if (prev) prev->qnext = next;
            else h->q_head = next;
            if (h->q_tail == t) h->q_tail = prev;
            t->pinned--;
            char msg[512];
            loom_snprintf(msg, sizeof(msg), "task '%s' needs %g CPUs and %llu bytes of memory; no node of the cluster has that much",
                          t->spec.name, t->spec.num_cpus, (unsigned long long)t->spec.memory);
            task_fail(h, t, LOOM_EINFEASIBLE, msg);
            t = next;
            continue;
        }
        if (!n) {
            misses++;
            prev = t;
            t = next;
            continue;
        }
        if (prev) prev->qnext = next;
        else h->q_head = next;
        if (h->q_tail == t) h->q_tail = prev;
        t->pinned--;
        assign(h, t, n);
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

static void node_dead(head *h, node *n, const char *why)
{
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
        if (t->state == T_RUNNING && t->node == n->id &&
            !grow_array((void **)&victims, &cap, nv + 1, sizeof(task *)))
            victims[nv++] = t;
    }
    for (int i = 0; i < nv; i++) {
        task *t = victims[i];
        t->state = T_QUEUED; /* not running any more: fail it like a queued task */
        task_fail(h, t, LOOM_ENODE, msg);
    }
    free(victims);
    n->running = 0;
    n->cpus_used = 0;
    n->mem_used = 0;
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
                break;
            }
    }
    for (int i = 0; i < nl; i++) {
        lost[i]->state = O_FAILED;
        lost[i]->code = LOOM_ENODE;
        free(lost[i]->error);
        lost[i]->error = strdup(msg);
        persist_obj(h, lost[i]);
    }
    free(lost);
}

static void cancel_jobs_of(head *h, uint32_t client_id);

static void client_drop(head *h, client *c)
{
    /* what a driver submitted stops with it (detached jobs go on) */
    if (c->role == LOOM_ROLE_DRIVER) cancel_jobs_of(h, c->id);
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
    if (old) client_drop(h, old);
    client *c = calloc(1, sizeof(*c));
    if (!c) return;
    c->id = ++h->next_client_id;
    memcpy(c->ident, ident, identlen);
    c->identlen = identlen;
    c->role = (int)m->role;
    if (m->role == LOOM_ROLE_NODE) {
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
        if (t->kind == LOOM_TASK_FUNCTION && t->lib.kind != LOOM_WARG_REF) {
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
    if (t->spec.num_cpus <= 0) t->spec.num_cpus = 1;
    int nouts = 1 + (spec->kind == LOOM_TASK_COMMAND ? (int)spec->noutputs : 0);
    t->outs = calloc((size_t)nouts + 1, sizeof(obj *));
    if (!t->outs) goto oom;
    t->nouts = nouts + 1;
    t->job = j;
    t->t_submit = loom_now_ms();
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
        o->refs = 1;
        if (!j->detached) client_hold(c, &r);
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

static void on_submit(head *h, client *c, loom_msg *m)
{
    char err[512];
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
    j->detached = m->flag != 0;
    j->owner = c->id;
    j->t_submit = loom_now_ms();
    j->tasks = calloc(m->ntasks ? m->ntasks : 1, sizeof(task *));
    if (!j->tasks) { free(j->name); free(j); return; }
    loom_hmap_put(&h->jobs, j->id, strlen(j->id), j);
    for (uint32_t i = 0; i < m->ntasks; i++) {
        task *t = task_create(h, &m->tasks[i], j, c);
        if (t) {
            j->tasks[j->ntasks++] = t;
            j->live++;
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
    send_to(h, c->ident, c->identlen, &r);
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
    reply_ok(h, c, m->req);
}

static void on_subscribe(head *h, client *c, loom_msg *m)
{
    for (uint32_t i = 0; i < m->nrefs; i++) {
        obj *o = obj_get(h, &m->refs[i]);
        if (!o) {
            loom_msg r;
            loom_msg_init(&r, LOOM_MSG_OBJ_READY, 0);
            r.ref = m->refs[i];
            r.code = LOOM_ENOTFOUND;
            r.text = "no such object (never made, or already released)";
            send_to(h, c->ident, c->identlen, &r);
        } else if (o->state != O_PENDING) {
            notify_ready(h, o, c->id);
        } else if (!grow_array((void **)&o->subs, &o->cap_subs, o->nsubs + 1, sizeof(uint32_t))) {
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
    if (!n) return;
    n->cpus_used -= t->spec.num_cpus;
    if (n->cpus_used < 1e-9) n->cpus_used = 0;
    n->mem_used = n->mem_used >= t->spec.memory ? n->mem_used - t->spec.memory : 0;
    if (n->running) n->running--;
}

static void on_task_done(head *h, client *c, loom_msg *m)
{
    task *t = loom_hmap_get(&h->tasks, m->ref.id, 16);
    if (!t || t->state != T_RUNNING || t->node != c->node_id) {
        LOG_DEBUG("TASK_DONE for a task not running on node %u: ignored", c->node_id);
        return;
    }
    release_node_resources(h, t);
    t->t_end = loom_now_ms();
    t->pinned++; /* setting an output can free it and with the last one t */
    task_release_deps(h, t);
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
        t->code = m->code;
        t->error = strdup(m->text[0] ? m->text : loom_strerror(m->code));
        task_set_state(h, t, T_FAILED);
        task_finish_outputs_failed(h, t, m->code, t->error);
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
    if (o && o->state == O_READY && !o->value) obj_add_loc(o, c->node_id);
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
    loom_pack_map(p, 4);
    node **sorted = calloc(h->nodes.count + 1, sizeof(node *));
    size_t nn = 0;
    it = 0;
    while (sorted && loom_hmap_next(&h->nodes, &it, &v)) sorted[nn++] = v;
    if (sorted) qsort(sorted, nn, sizeof(node *), node_cmp);
    loom_pack_cstr(p, "nodes");
    loom_pack_array(p, (uint32_t)nn);
    for (size_t k = 0; k < nn; k++) {
        node *n = sorted[k];
        loom_pack_map(p, 11);
        pack_kv_u64(p, "id", n->id);
        pack_kv_str(p, "hostname", n->info.hostname);
        pack_kv_str(p, "address", n->info.data_addr);
        pack_kv_str(p, "state", n->alive ? "alive" : "dead");
        pack_kv_f64(p, "cpus", n->info.num_cpus);
        pack_kv_f64(p, "cpus_used", n->cpus_used);
        pack_kv_u64(p, "memory", n->info.memory);
        pack_kv_u64(p, "memory_used", n->mem_used);
        pack_kv_u64(p, "store_capacity", n->info.capacity);
        pack_kv_u64(p, "store_used", n->store_used);
        pack_kv_u64(p, "running", n->running);
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
    loom_pack_map(p, 4);
    pack_kv_str(p, "id", j->id);
    pack_kv_str(p, "name", j->name);
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
    case LOOM_MSG_JOB_REF: on_job_ref(h, c, m); return;
    case LOOM_MSG_JOB_DELETE: on_job_delete(h, c, m); return;
    case LOOM_MSG_BYE: client_drop(h, c); return;
    case LOOM_MSG_TASK_DONE:
        if (is_node) { on_task_done(h, c, m); return; }
        break;
    case LOOM_MSG_OBJ_ADDED:
        if (is_node) { on_obj_added(h, c, m); return; }
        break;
    default:
        break;
    }
    reply_error(h, c->ident, c->identlen, m->req, LOOM_EPROTO, "unexpected message for the head");
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
        reply_error(h, ident, identlen, 0, LOOM_EPROTO, err);
        return;
    }
    if (m.type == LOOM_MSG_HELLO) {
        on_hello(h, ident, identlen, &m);
    } else {
        client *c = loom_hmap_get(&h->clients, ident, identlen);
        if (!c) reply_error(h, ident, identlen, m.req, LOOM_EAUTH, "say hello with the cluster secret first");
        else dispatch(h, c, &m);
    }
    loom_msg_free(&m);
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

/* ---- loop --------------------------------------------------------------- */

static void on_tick(uv_timer_t *tm)
{
    head *h = tm->data;
    int64_t now = loom_now_ms();
    size_t it = 0;
    void *v;
    node *dead[64];
    int nd = 0;
    while (loom_hmap_next(&h->nodes, &it, &v) && nd < 64) {
        node *n = v;
        if (n->alive && now - n->last_seen > h->hb_timeout_ms) dead[nd++] = n;
    }
    for (int i = 0; i < nd; i++) node_dead(h, dead[i], "missed heartbeats");
    headdb_commit(h->db);
    headdb_sync(h->db);
    if (nd) schedule(h);
}

static void on_commit(uv_check_t *ck)
{
    head *h = ck->data;
    headdb_commit(h->db);
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
    if (!strcmp(o->bind_host, "0.0.0.0") || !strcmp(o->bind_host, "*")) {
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
        free(n->info.hostname); free(n->info.data_addr); free(n->info.store_dir);
        free(n->info.spill_dir);
        free(n);
    }
    it = 0;
    while (loom_hmap_next(&h->jobs, &it, &v)) {
        job *j = v;
        free(j->tasks); free(j->name); free(j);
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
    if (!opts.secret || strlen(opts.secret) != LOOM_SECRET_HEX) return LOOM_EAUTH;
    memcpy(h.secret, opts.secret, LOOM_SECRET_HEX + 1);
    int rc = headdb_open(opts.state_dir, &h.db);
    if (rc) return rc;
    h.out = loom_pack_new();
    h.rec = loom_pack_new();
    h.loop = uv_default_loop();
    h.zctx = zmq_ctx_new();
    h.router = zmq_socket(h.zctx, ZMQ_ROUTER);
    loom_zsock_setup(h.router, ZMQ_ROUTER);
    char addr[512];
    rc = bind_router(&h, &opts, addr, sizeof(addr));
    if (!rc) rc = loom_zwatch_start(h.loop, h.router, on_frames, &h, &h.watch);
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
    uv_timer_init(h.loop, &h.tick);
    h.tick.data = &h;
    uv_timer_start(&h.tick, on_tick, 1000, 1000);
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
    zmq_close(h.router);
    zmq_ctx_term(h.zctx);
    headdb_close(&h.db);
    head_free_tables(&h);
    loom_pack_destroy(&h.out);
    loom_pack_destroy(&h.rec);
    return rc;
}
