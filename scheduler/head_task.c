/* scheduler/head_task.c — the head's objects and tasks: the object directory
 * (creation, locations, refs, readiness, freeing), task state and lifetime,
 * retries, the ready queue, submissions and puts, subscriptions (also to
 * objects not known yet), releases, cancellation and finished tasks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/audit.h"
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

/* ---- objects ------------------------------------------------------------ */

static void unpark_into(head *h, obj *o);

/* A new, pending object; subscriptions that asked for it before it existed
 * (park_sub) become its subscribers. */
obj *loom__head_obj_new(head *h, const loom_ref *ref)
{
    obj *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->ref = *ref;
    if (loom__hmap_put(&h->objs, ref->id, LOOM_ID_LEN, o)) {
        free(o);
        return NULL;
    }
    if (h->nparked) unpark_into(h, o);
    return o;
}

obj *loom__head_obj_get(head *h, const loom_ref *ref)
{
    return loom__hmap_get(&h->objs, ref->id, LOOM_ID_LEN);
}

void loom__head_obj_add_loc(obj *o, uint32_t node_id)
{
    for (int i = 0; i < o->nlocs; i++)
        if (o->locs[i] == node_id) return;
    if (loom__head_grow_array((void **)&o->locs, &o->cap_locs, o->nlocs + 1, sizeof(uint32_t))) return;
    o->locs[o->nlocs++] = node_id;
}

static void notify_ready(head *h, obj *o, uint32_t client_id);
static void defer_unref(head *h, const loom_ref *ref);

static void obj_destroy(head *h, obj *o)
{
    /* tell every node holding a copy to drop it */
    for (int i = 0; i < o->nlocs; i++) {
        node *n = loom__head_node_get(h, o->locs[i]);
        if (!n || !n->alive) continue;
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_DELETE_OBJS, 0);
        m.refs = &o->ref;
        m.nrefs = 1;
        loom__head_send_to(h, n->ident, n->identlen, &m);
    }
    loom__headdb_del(h->db, HEADDB_OBJECTS, o->ref.id, LOOM_ID_LEN);
    loom__hmap_del(&h->objs, o->ref.id, LOOM_ID_LEN);
    free(o->error);
    free(o->value);
    free(o->locs);
    free(o->subs);
    free(o->waiters);
    free(o);
}

/* Free o when nothing holds it any more and it is final (not a log: logs go
 * with their task). */
void loom__head_obj_maybe_free(head *h, obj *o)
{
    if (o->refs > 0 || o->state == O_PENDING || o->is_log || o->nsubs) return;
    task *t = o->producer;
    if (t) {
        for (int i = 0; i < t->nouts; i++)
            if (t->outs[i] == o) t->outs[i] = NULL;
        t->live_outs--;
    }
    obj_destroy(h, o);
    if (t) loom__head_task_maybe_free(h, t);
}

void loom__head_obj_unref(head *h, obj *o)
{
    if (!o) return;
    if (o->refs > 0) o->refs--;
    loom__head_obj_maybe_free(h, o);
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
        task *t = loom__hmap_get(&h->tasks, waiters[i], 16);
        if (!t || t->state != T_WAITING) continue;
        if (o->state == O_READY) {
            if (--t->pending_deps == 0) loom__head_queue_task(h, t);
        } else {
            char msg[1024];
            const char *dep = o->producer ? o->producer->spec.name : "put object";
            loom__snprintf(msg, sizeof(msg), "dependency '%s' failed: %s", dep,
                           o->error ? o->error : loom_strerror(o->code));
            loom__head_task_fail(h, t, o->code == LOOM_ECANCELLED ? LOOM_ECANCELLED : LOOM_EDEP, msg);
        }
    }
    free(waiters);
    loom__head_persist_obj(h, o);
    loom__head_obj_unref(h, o);
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
        loom__head_obj_add_loc(o, node_id);
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
    client *c = loom__head_client_by_id(h, client_id);
    if (!c) return;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_OBJ_READY, 0);
    m.ref = o->ref;
    m.size = o->size;
    loom_wire_loc locs[16];
    if (o->state == O_FAILED) {
        m.code = o->code;
        m.text = o->error;
    } else if (o->value) {
        m.data.p = o->value;
        m.data.n = o->size;
    } else {
        for (int i = 0; i < o->nlocs && m.nlocs < 16; i++) {
            node *n = loom__head_node_get(h, o->locs[i]);
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
    loom__head_send_to(h, c->ident, c->identlen, &m);
}

/* ---- tasks -------------------------------------------------------------- */

void loom__head_job_free(head *h, job *j)
{
    loom__head_usage_job_gone(h, j->id);
    loom__head_usage_tasks_gone(h, j->label, (uint32_t)j->live);   /* its tasks lose their job now */
    loom__hmap_del(&h->jobs, j->id, strlen(j->id));
    loom__headdb_del(h->db, HEADDB_JOBS, j->id, strlen(j->id));
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
    loom__hmap_del(&h->tasks, t->id, 16);
    loom__headdb_del(h->db, HEADDB_TASKS, t->id, 16);
    if (t->job) {
        job *j = t->job;
        loom__head_usage_tasks_gone(h, j->label, 1);
        for (int i = 0; i < j->ntasks; i++)
            if (j->tasks[i] == t) j->tasks[i] = NULL;
        /* a driver's job goes when its last task does; a detached one waits for delete */
        if (--j->live == 0 && !j->detached) loom__head_job_free(h, j);
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
    free(t->acct);
    loom__arena_free(&t->arena);
    free(t);
}

void loom__head_task_maybe_free(head *h, task *t)
{
    if (t->pinned || t->live_outs > 0 || t->state < T_DONE || t->state == T_RUNNING) return;
    task_free(h, t);
}

void loom__head_task_release_deps(head *h, task *t)
{
    if (!t->deps_held) return;
    t->deps_held = 0;
    if (t->spec.kind == LOOM_TASK_FUNCTION) loom__head_obj_unref(h, loom__head_obj_get(h, &t->spec.lib.ref));
    for (uint32_t i = 0; i < t->spec.nargs; i++)
        if (t->spec.args[i].kind == LOOM_WARG_REF) loom__head_obj_unref(h, loom__head_obj_get(h, &t->spec.args[i].ref));
}

/* A finished task keeps its arguments alive while its outputs live, so a
 * lost output can be rebuilt (lineage).  When the task goes, the refs are
 * dropped after the current handler: dropping one can free a chain of
 * upstream tasks, and doing that iteratively keeps the stack flat. */
static void defer_unref(head *h, const loom_ref *ref)
{
    if (loom__head_grow_array((void **)&h->unrefs, &h->cap_unrefs, h->nunrefs + 1, sizeof(loom_ref))) return;
    h->unrefs[h->nunrefs++] = *ref;
}

void loom__head_drain_unrefs(head *h)
{
    for (int rounds = 0; h->nunrefs && rounds < 100000000; rounds++) {
        loom_ref r = h->unrefs[--h->nunrefs];
        loom__head_obj_unref(h, loom__head_obj_get(h, &r));
    }
}

void loom__head_task_set_state(head *h, task *t, int state)
{
    t->state = state;
    h->counts[state]++;
    loom__head_persist_task(h, t);
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
void loom__head_task_fail(head *h, task *t, int code, const char *msg)
{
    if (t->state >= T_DONE) return;
    int was_waiting = t->state == T_WAITING || t->state == T_QUEUED;
    t->code = code;
    free(t->error);
    t->error = strdup(msg);
    t->t_end = loom__now_ms();
    loom__head_task_set_state(h, t, T_FAILED);
    /* failing an output can free it and with the last one t: not before the end */
    t->pinned++;
    if (was_waiting) loom__head_task_release_deps(h, t);
    task_finish_outputs_failed(h, t, code, msg);
    if (t->spec.actor_op == LOOM_ACTOR_CREATE) loom__head_actor_creation_failed(h, t, code, msg);
    t->pinned--;
    loom__head_task_maybe_free(h, t);
}

/* ---- retries ------------------------------------------------------------ */

/* Whether a run of t that failed with code gets another attempt: its executor
 * or node died (or, if it asked, the task itself failed), and its retries are
 * not used up.  Actors have their own restarts. */
int loom__head_task_should_retry(const task *t, int code)
{
    if (t->cancelled || t->spec.actor_op != LOOM_ACTOR_NONE) return 0;
    int system = code == LOOM_EWORKER || code == LOOM_ENODE;
    int app = code == LOOM_ETASK && t->spec.retry_on_error;
    return (system || app) && t->attempts < t->spec.max_retries;
}

void loom__head_history_add(task *t, uint32_t node_id, const char *msg)
{
    char line[1200];
    loom__snprintf(line, sizeof(line), "%sattempt %u on node %u: %s", t->history ? "; " : "", t->attempts + 1,
                   node_id, msg);
    size_t old = t->history ? strlen(t->history) : 0;
    if (old > 16384) return; /* enough to say what happened */
    char *h = realloc(t->history, old + strlen(line) + 1);
    if (!h) return;
    memcpy(h + old, line, strlen(line) + 1);
    t->history = h;
}

/* The final error of a task that was retried: every attempt, then the last. */
const char *loom__head_with_history(const task *t, const char *msg, char *buf, size_t len)
{
    if (!t->history) return msg;
    loom__snprintf(buf, len, "failed after %u attempts: %s; attempt %u on node %u: %s", t->attempts + 1,
                   t->history, t->attempts + 1, t->node, msg);
    return buf;
}

/* Put t (whose arguments it still holds) back to wait for them: queued at
 * once when every one is ready, else waiting on those being rebuilt.  A
 * failed or vanished argument fails it. */
void loom__head_task_requeue(head *h, task *t)
{
    t->state = T_WAITING;
    t->pending_deps = 0;
    const char *failed = NULL;
    int failed_code = 0;
    for (uint32_t k = 0; k < t->spec.nargs && !failed; k++) {
        loom_wire_arg *a = &t->spec.args[k];
        if (a->kind != LOOM_WARG_REF) continue;
        obj *o = loom__head_obj_get(h, &a->ref);
        if (!o) {
            failed = "an argument is gone (freed), so the task cannot run again";
            failed_code = LOOM_ENODE;
        } else if (o->state == O_FAILED) {
            failed = o->error ? o->error : loom_strerror(o->code);
            failed_code = o->code == LOOM_ECANCELLED ? LOOM_ECANCELLED : LOOM_EDEP;
        } else if (o->state == O_PENDING &&
                   !loom__head_grow_array((void **)&o->waiters, &o->cap_wait, o->nwait + 1, sizeof(*o->waiters))) {
            memcpy(o->waiters[o->nwait++], t->id, 16);
            t->pending_deps++;
        }
    }
    if (failed) {
        char msg[1200], full[20000];
        loom__snprintf(msg, sizeof(msg), "a dependency failed: %s", failed);
        loom__head_task_fail(h, t, failed_code, loom__head_with_history(t, msg, full, sizeof(full)));
        return;
    }
    if (t->pending_deps == 0) loom__head_queue_task(h, t);
    loom__head_persist_task(h, t);
}

/* Whether every stored argument of t is ready (and has a copy somewhere). */
int loom__head_deps_ready(head *h, const task *t)
{
    for (uint32_t k = 0; k < t->spec.nargs; k++) {
        const loom_wire_arg *a = &t->spec.args[k];
        if (a->kind != LOOM_WARG_REF) continue;
        obj *o = loom__head_obj_get(h, &a->ref);
        if (!o || o->state != O_READY) return 0;
    }
    return 1;
}

/* Run t again: note the failed attempt, free what it held, requeue it. */
void loom__head_task_retry(head *h, task *t, uint32_t node_id, const char *msg)
{
    loom__head_history_add(t, node_id, msg);
    t->attempts++;
    LOG_INFO("task '%s' failed on node %u (%s): attempt %u of %u", t->spec.name, node_id, msg, t->attempts + 1,
             t->spec.max_retries + 1);
    loom__head_release_node_resources(h, t);
    loom__head_task_requeue(h, t);
}

void loom__head_queue_task(head *h, task *t)
{
    if (t->spec.actor_op == LOOM_ACTOR_CALL) {
        /* calls go to their actor's node in their callers' order, not through
           the ready queue */
        t->state = T_QUEUED;
        actor *a = loom__hmap_get(&h->actors, t->spec.actor, 16);
        if (a) loom__head_actor_dispatch(h, a);
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
uint64_t loom__head_local_bytes(head *h, task *t, uint32_t node_id)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i <= t->spec.nargs; i++) {
        loom_wire_arg *a = i < t->spec.nargs ? &t->spec.args[i] : &t->spec.lib;
        if (a->kind != LOOM_WARG_REF) continue;
        obj *o = loom__head_obj_get(h, &a->ref);
        if (!o || o->value) continue;
        for (int k = 0; k < o->nlocs; k++)
            if (o->locs[k] == node_id) sum += o->size;
    }
    return sum;
}

/* Check a submission before changing anything: every ref it consumes exists
 * (or is made by an earlier task of the same submission); ids are new. */
static int validate_submit(head *h, loom_msg *m, char *err, size_t errlen)
{
    loom_hmap seen = {0};
    int rc = 0;
    for (uint32_t i = 0; i < m->ntasks && !rc; i++) {
        loom_wire_task *t = &m->tasks[i];
        if (loom__hmap_get(&h->tasks, t->task_id, 16) || loom__hmap_get(&seen, t->task_id, 16)) {
            loom__snprintf(err, errlen, "task '%s': its id is already in use", t->name);
            rc = LOOM_EINVAL;
            break;
        }
        if (t->actor_op == LOOM_ACTOR_CALL) {
            if (!loom__hmap_get(&h->actors, t->actor, 16)) {
                loom__snprintf(err, errlen, "task '%s': no such actor", t->name);
                rc = LOOM_ENOTFOUND;
                break;
            }
        } else if (t->actor_op == LOOM_ACTOR_CREATE && t->actor_name[0] && loom__head_actor_by_name(h, t->actor_name)) {
            loom__snprintf(err, errlen, "an actor named '%s' already exists", t->actor_name);
            rc = LOOM_EINVAL;
            break;
        }
        if (t->has_pg && !loom__hmap_get(&h->pgs, t->pg, 16)) {
            loom__snprintf(err, errlen, "task '%s': no such placement group", t->name);
            rc = LOOM_ENOTFOUND;
            break;
        }
        if (t->kind == LOOM_TASK_FUNCTION && t->actor_op != LOOM_ACTOR_CALL && t->lib.kind != LOOM_WARG_REF) {
            loom__snprintf(err, errlen, "task '%s': the library must be a ref (loom_library_load)", t->name);
            rc = LOOM_EINVAL;
            break;
        }
        for (uint32_t k = 0; k <= t->nargs && !rc; k++) {
            loom_wire_arg *a = k < t->nargs ? &t->args[k] : &t->lib;
            if (a->kind != LOOM_WARG_REF) continue;
            if (k == t->nargs && t->kind != LOOM_TASK_FUNCTION) continue;
            if (loom__head_obj_get(h, &a->ref)) continue;
            uintptr_t nout = (uintptr_t)loom__hmap_get(&seen, a->ref.id, 16);
            uint32_t idx = loom__ref_index(&a->ref);
            if (nout && (idx < nout - 1 || idx == LOG_INDEX)) continue;
            char hex[41];
            loom_ref_to_hex(&a->ref, hex);
            loom__snprintf(err, errlen, "task '%s': %s %s is not known to the cluster", t->name,
                           k == t->nargs ? "library" : "argument ref", hex);
            rc = LOOM_ENOTFOUND;
        }
        uintptr_t nout = 1 + (t->kind == LOOM_TASK_COMMAND ? t->noutputs : 0);
        if (!rc && loom__hmap_put(&seen, t->task_id, 16, (void *)(nout + 1))) rc = LOOM_ENOMEM;
    }
    loom__hmap_free(&seen);
    return rc;
}

static task *task_create(head *h, const loom_wire_task *spec, job *j, client *c)
{
    task *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    memcpy(t->id, spec->task_id, 16);
    if (loom__wire_task_copy(&t->arena, &t->spec, spec)) goto oom;
    if (t->spec.num_cpus <= 0 && spec->actor_op != LOOM_ACTOR_CREATE) t->spec.num_cpus = 1;
    if (spec->actor_op == LOOM_ACTOR_CALL) t->spec.num_cpus = 0; /* the actor holds the resources */
    int nouts = 1 + (spec->kind == LOOM_TASK_COMMAND ? (int)spec->noutputs : 0);
    t->outs = calloc((size_t)nouts + 1, sizeof(obj *));
    if (!t->outs) goto oom;
    t->nouts = nouts + 1;
    t->job = j;
    t->t_submit = loom__now_ms();
    t->caller = c->id;
    t->bundle = -1;
    if (t->spec.num_cpus <= 0 && spec->actor_op == LOOM_ACTOR_CREATE) t->spec.num_cpus = 0; /* actors: 0 by default */
    if (loom__hmap_put(&h->tasks, t->id, 16, t)) goto oom;
    for (int i = 0; i <= nouts; i++) {
        loom_ref r;
        loom__ref_make(t->id, i == nouts ? LOG_INDEX : (uint32_t)i, &r);
        obj *o = loom__head_obj_new(h, &r);
        if (!o) continue;
        o->producer = t;
        o->is_log = i == nouts;
        t->outs[i] = o;
        if (o->is_log) continue;
        t->live_outs++;
        o->refs = 1; /* the client's, the detached job's, or (a creation) the actor's */
        if (!j->detached && spec->actor_op != LOOM_ACTOR_CREATE) loom__head_client_hold(c, &r);
    }
    return t;
oom:
    loom__arena_free(&t->arena);
    free(t->outs);
    free(t);
    return NULL;
}

void loom__head_task_link_deps(head *h, task *t)
{
    const char *failed_msg = NULL;
    int failed_code = 0;
    t->deps_held = 1;
    for (uint32_t k = 0; k <= t->spec.nargs; k++) {
        loom_wire_arg *a = k < t->spec.nargs ? &t->spec.args[k] : &t->spec.lib;
        if (a->kind != LOOM_WARG_REF) continue;
        if (k == t->spec.nargs && t->spec.kind != LOOM_TASK_FUNCTION) continue;
        obj *o = loom__head_obj_get(h, &a->ref);
        if (!o) continue;
        o->refs++;
        if (o->state == O_PENDING) {
            if (!loom__head_grow_array((void **)&o->waiters, &o->cap_wait, o->nwait + 1, sizeof(*o->waiters))) {
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
        loom__snprintf(msg, sizeof(msg), "a dependency failed: %s", failed_msg);
        loom__head_task_fail(h, t, failed_code == LOOM_ECANCELLED ? LOOM_ECANCELLED : LOOM_EDEP, msg);
    } else if (t->pending_deps == 0) {
        loom__head_queue_task(h, t);
    }
    if (t->state < T_DONE) loom__head_persist_task(h, t);
}

/* The job a submission already made, when every one of its tasks is known and
 * in that one job: a client sends a request again when its connection closed
 * before the answer came (the head may have read it before it died). */
static job *repeated_submit(head *h, const loom_msg *m)
{
    if (m->ntasks == 0) return NULL;
    task *first = loom__hmap_get(&h->tasks, m->tasks[0].task_id, 16);
    if (!first || !first->job) return NULL;
    for (uint32_t i = 1; i < m->ntasks; i++) {
        task *t = loom__hmap_get(&h->tasks, m->tasks[i].task_id, 16);
        if (!t || t->job != first->job) return NULL;
    }
    return first->job;
}

/* Who a job's label says did it: its user ("alice" of "alice|proj"), or the
 * cluster (the holder of its keys). */
static const char *audit_actor(const char *label)
{
    static char user[128];
    size_t n = label ? strcspn(label, "|") : 0;
    if (n >= sizeof(user)) n = sizeof(user) - 1;
    memcpy(user, label ? label : "", n);
    user[n] = 0;
    return n ? user : "cluster";
}

void loom__head_on_submit(head *h, client *c, loom_msg *m)
{
    char err[512];
    job *again = repeated_submit(h, m);
    if (again) {
        loom_msg r;
        loom__msg_init(&r, LOOM_MSG_SUBMITTED, m->req);
        r.job = again->id;
        loom__head_send_after_commit(h, c->ident, c->identlen, &r);
        return;
    }
    int rc = validate_submit(h, m, err, sizeof(err));
    if (!rc) rc = loom__head_usage_keep_tasks(h, m->label, m->ntasks, err, sizeof(err));
    if (rc) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, rc, err);
        return;
    }
    job *j = calloc(1, sizeof(*j));
    if (!j) return;
    uint8_t raw[8];
    loom__random_bytes(raw, sizeof(raw));
    loom__hex_encode(raw, sizeof(raw), j->id);
    j->name = loom__head_dupstr(m->job_name[0] ? m->job_name : "graph");
    j->label = loom__head_dupstr(m->label ? m->label : "");
    j->detached = m->detached != 0;
    j->owner = c->id;
    j->t_submit = loom__now_ms();
    j->t_wall_ms = loom__wall_ms(); /* Unix ms: jobs are listed by it, across head restarts */
    j->tasks = calloc(m->ntasks ? m->ntasks : 1, sizeof(task *));
    if (!j->tasks) { free(j->name); free(j->label); free(j); return; }
    loom__hmap_put(&h->jobs, j->id, strlen(j->id), j);
    char detail[300];
    loom__snprintf(detail, sizeof(detail), "name=%s tasks=%u", j->name, m->ntasks);
    loom__audit(audit_actor(j->label), "job.submit", j->id, detail);
    for (uint32_t i = 0; i < m->ntasks; i++) {
        task *t = task_create(h, &m->tasks[i], j, c);
        if (t) {
            j->tasks[j->ntasks++] = t;
            j->live++;
            if (t->spec.actor_op == LOOM_ACTOR_CREATE) loom__head_actor_new(h, t, c);
            else if (t->spec.actor_op == LOOM_ACTOR_CALL) loom__head_actor_add_call(h, t);
        }
    }
    /* link after all are created so refs to earlier tasks of this graph resolve */
    for (int i = 0; i < j->ntasks; i++) {
        j->tasks[i]->state = T_WAITING;
        h->counts[T_WAITING]++;
        loom__head_task_link_deps(h, j->tasks[i]);
    }
    loom__head_persist_job(h, j);
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_SUBMITTED, m->req);
    r.job = j->id;
    loom__head_send_after_commit(h, c->ident, c->identlen, &r);
    loom__head_schedule(h);
}

/* A put object whose every copy went with its nodes: failed as lost (no
 * lineage to rebuild it from), or still READY in a table reloaded before the
 * nodes were declared gone. */
static int put_obj_lost(head *h, const obj *o)
{
    if (o->producer) return 0;
    if (o->state == O_FAILED) return o->code == LOOM_ENODE;
    if (o->state != O_READY || o->value) return 0;
    for (int i = 0; i < o->nlocs; i++) {
        node *n = loom__head_node_get(h, o->locs[i]);
        if (n && (n->alive || n->awaiting)) return 0;
    }
    return 1;
}

/* The same ref put again after it was lost (a task library uploaded again
 * once the nodes that held it died): the new copy makes it live again, in
 * the tables and in LMDB, instead of a failure kept for good. */
static void put_obj_revive(head *h, obj *o, const loom_msg *m)
{
    char hex[2 * LOOM_ID_LEN + 1];
    loom__hex_encode(o->ref.id, LOOM_ID_LEN, hex);
    LOG_INFO("object %s was lost and is put again: live again", hex);
    o->state = O_PENDING;
    o->code = 0;
    free(o->error);
    o->error = NULL;
    free(o->value);
    o->value = NULL;
    o->nlocs = 0;
    obj_set_ready(h, o, m->size, m->data.p, m->data.n, m->node);
}

/* A put's bytes are in the message, or on a live node. */
static int put_source_ok(head *h, const loom_msg *m)
{
    if (m->size <= LOOM_INLINE_MAX && m->data.n == m->size) return 1;
    node *n = loom__head_node_get(h, m->node);
    return n && n->alive;
}

void loom__head_on_put_done(head *h, client *c, loom_msg *m)
{
    obj *o = loom__head_obj_get(h, &m->ref);
    if ((!o || put_obj_lost(h, o)) && !put_source_ok(h, m)) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such node");
        return;
    }
    if (o && put_obj_lost(h, o)) put_obj_revive(h, o, m);
    if (!o) {
        o = loom__head_obj_new(h, &m->ref);
        if (!o) {
            loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
            return;
        }
        o->refs = 1;
        loom__head_client_hold(c, &m->ref);
        obj_set_ready(h, o, m->size, m->data.p, m->data.n, m->node);
    } else if (!m->keep && loom__hmap_get(&c->held, m->ref.id, LOOM_ID_LEN)) {
        /* the same put sent again after a closed connection: a put's ref is
           random, so only its putter can hold it already; counted once */
    } else {
        o->refs++;
        loom__head_client_hold(c, &m->ref);
    }
    /* A content-addressed object (a task library) is never freed while the head
     * runs: another driver may put the same bytes under the same ref at any time,
     * and a put of an id already in a store is a no-op, so a delete in flight
     * would remove the new copy. */
    if (m->keep && !o->kept) {
        o->kept = 1;
        o->refs++;
    }
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_OK, m->req);
    loom__head_send_after_commit(h, c->ident, c->identlen, &r);
}

/* ---- subscriptions to objects not known yet -------------------------------
 * loom_put and loom_submit do not wait for the head, so a driver handed a ref
 * by another driver (out of band) may ask for it before the put or submission
 * that makes it arrives.  The answer "no such object" therefore waits up to
 * UNKNOWN_GRACE_MS for the object to appear (loom__head_obj_new). */

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
    loom__msg_init(&r, LOOM_MSG_OBJ_READY, 0);
    r.ref = *ref;
    r.code = LOOM_ENOTFOUND;
    r.text = "no such object (never made, or already released)";
    loom__head_send_to(h, c->ident, c->identlen, &r);
}

static void arm_park_timer(head *h);

static void park_sub(head *h, client *c, const loom_ref *ref)
{
    if (h->nparked >= MAX_PARKED ||
        loom__head_grow_array((void **)&h->parked, &h->cap_parked, h->nparked + 1, sizeof(parked_sub))) {
        send_not_found(h, c, ref);
        return;
    }
    h->parked[h->nparked++] = (parked_sub){c->id, *ref, loom__now_ms() + UNKNOWN_GRACE_MS};
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
        if (!loom__head_grow_array((void **)&o->subs, &o->cap_subs, o->nsubs + 1, sizeof(uint32_t)))
            o->subs[o->nsubs++] = h->parked[i].client;
        h->parked[i] = h->parked[--h->nparked];
    }
}

static void on_park_timer(uv_timer_t *tm)
{
    head *h = tm->data;
    int64_t now = loom__now_ms();
    for (int i = 0; i < h->nparked;) {
        if (h->parked[i].deadline > now) { i++; continue; }
        client *c = loom__head_client_by_id(h, h->parked[i].client);
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
    int64_t wait = first - loom__now_ms();
    uv_timer_start(&h->park_timer, on_park_timer, wait > 0 ? (uint64_t)wait : 0, 0);
}

void loom__head_on_subscribe(head *h, client *c, loom_msg *m)
{
    for (uint32_t i = 0; i < m->nrefs; i++) {
        obj *o = loom__head_obj_get(h, &m->refs[i]);
        if (!o) {
            park_sub(h, c, &m->refs[i]);
        } else if (o->state != O_PENDING) {
            notify_ready(h, o, c->id);
        } else {
            int already = 0; /* clients ask again now and then: once is enough */
            for (int k = 0; k < o->nsubs && !already; k++) already = o->subs[k] == c->id;
            if (!already && !loom__head_grow_array((void **)&o->subs, &o->cap_subs, o->nsubs + 1, sizeof(uint32_t)))
                o->subs[o->nsubs++] = c->id;
        }
    }
}

void loom__head_on_release(head *h, client *c, loom_msg *m)
{
    for (uint32_t i = 0; i < m->nrefs; i++) {
        if (!loom__head_client_unhold(c, &m->refs[i])) continue;
        loom__head_obj_unref(h, loom__head_obj_get(h, &m->refs[i]));
    }
}

void loom__head_cancel_task(head *h, task *t)
{
    if (t->state >= T_DONE || t->cancelled) return;
    if (t->state == T_RUNNING) {
        node *n = loom__head_node_get(h, t->node);
        t->cancelled = 1;
        if (n && n->alive) {
            loom_msg m;
            loom__msg_init(&m, LOOM_MSG_CANCEL_TASK, 0);
            loom__ref_make(t->id, 0, &m.ref);
            loom__head_send_to(h, n->ident, n->identlen, &m);
        }
        task_finish_outputs_failed(h, t, LOOM_ECANCELLED, "cancelled");
        if (t->spec.actor_op == LOOM_ACTOR_CREATE) loom__head_actor_creation_failed(h, t, LOOM_ECANCELLED, "cancelled");
        return;
    }
    loom__head_task_fail(h, t, LOOM_ECANCELLED, "cancelled");
}

/* Cancel the unfinished tasks of a driver's (non-detached) jobs.  Works from
 * task ids: cancelling one task can free others. */
void loom__head_cancel_jobs_of(head *h, uint32_t client_id)
{
    uint8_t (*ids)[16] = NULL;
    size_t n = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->jobs, &it, &v)) {
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
        task *t = loom__hmap_get(&h->tasks, ids[i], 16);
        if (t) loom__head_cancel_task(h, t);
    }
    if (n) LOG_INFO("cancelled %zu unfinished tasks of driver %u", n, client_id);
    free(ids);
}

void loom__head_on_cancel(head *h, client *c, loom_msg *m)
{
    task *t = loom__hmap_get(&h->tasks, m->ref.id, 16);
    if (!t) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such task");
        return;
    }
    loom__audit(audit_actor(t->job ? t->job->label : NULL), "task.cancel", t->job ? t->job->id : "",
                t->spec.name);
    loom__head_cancel_task(h, t);
    loom__head_reply_ok(h, c, m->req);
}

void loom__head_release_node_resources(head *h, task *t)
{
    node *n = loom__head_node_get(h, t->node);
    if (n && n->running) n->running--;
    if (!t->grant) return;
    loom_request r;
    loom__head_spec_request(&t->spec, &r);
    loom__head_usage_end(h, t, &r);
    loom__head_give_grant(h, t->node, t->spec.has_pg ? t->spec.pg : NULL, t->bundle, &r, &t->grant);
}

void loom__head_on_task_done(head *h, client *c, loom_msg *m)
{
    task *t = loom__hmap_get(&h->tasks, m->ref.id, 16);
    if (!t || t->state != T_RUNNING || t->node != c->node_id) {
        LOG_DEBUG("TASK_DONE for a task not running on node %u: ignored", c->node_id);
        return;
    }
    if (m->code && loom__head_task_should_retry(t, m->code)) {
        loom__head_task_retry(h, t, c->node_id, m->text[0] ? m->text : loom_strerror(m->code));
        loom__head_schedule(h);
        return;
    }
    if (m->code == LOOM_EACTOR && t->spec.actor_op == LOOM_ACTOR_CALL && !t->cancelled) {
        actor *a = loom__hmap_get(&h->actors, t->spec.actor, 16);
        /* the daemon fails the calls of an actor whose process died, then
           says ACTOR_DIED; a call submitted in between (the ROUTER reads its
           peers in turn) must not go to the dead process: the actor is lost
           now, and its running calls, this one too, are retried or failed */
        if (a && a->state == A_ALIVE && a->node == c->node_id) {
            t->pinned++;
            loom__head_actor_lost(h, a, m->text[0] ? m->text : "its process exited");
            loom__head_actors_gc(h);
            int handled = t->state != T_RUNNING;
            t->pinned--;
            if (handled) {
                loom__head_task_maybe_free(h, t);
                loom__head_schedule(h);
                return;
            }
        }
    }
    t->pinned++; /* setting an output can free it and with the last one t */
    if (t->spec.actor_op == LOOM_ACTOR_CALL) {
        actor *a = loom__hmap_get(&h->actors, t->spec.actor, 16);
        if (a) {
            if (a->running) a->running--;
            if (m->code || t->cancelled) a->calls_failed++;
            else a->calls_done++;
        }
    }
    int created = t->spec.actor_op == LOOM_ACTOR_CREATE && !m->code && !t->cancelled;
    if (created) loom__head_actor_created(h, t); /* the actor keeps the task's resources */
    loom__head_release_node_resources(h, t);
    t->t_end = loom__now_ms();
    /* a finished task keeps its arguments for lineage (and an actor that may
       restart its creation's); calls and failed tasks let them go */
    int keep = !m->code && !t->cancelled && t->spec.actor_op != LOOM_ACTOR_CALL &&
               (t->spec.actor_op != LOOM_ACTOR_CREATE || t->spec.max_restarts != 0);
    if (!keep) loom__head_task_release_deps(h, t);
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
        loom__head_task_set_state(h, t, T_FAILED);
    } else if (m->code) {
        char full[20000];
        t->code = m->code;
        t->error =
            strdup(loom__head_with_history(t, m->text[0] ? m->text : loom_strerror(m->code), full, sizeof(full)));
        loom__head_task_set_state(h, t, T_FAILED);
        task_finish_outputs_failed(h, t, m->code, t->error);
        if (t->spec.actor_op == LOOM_ACTOR_CREATE) loom__head_actor_creation_failed(h, t, m->code, t->error);
    } else {
        loom__head_task_set_state(h, t, T_DONE);
        for (uint32_t i = 0; i < m->noutputs; i++) {
            loom_wire_output *out = &m->outputs[i];
            if (out->index == LOG_INDEX || (int)out->index >= t->nouts - 1) continue;
            obj *o = t->outs[out->index];
            if (o) obj_set_ready(h, o, out->size, out->value.p, out->value.n, c->node_id);
        }
        task_finish_outputs_failed(h, t, LOOM_EPROTO, "the executor reported no such output");
    }
    t->pinned--;
    loom__head_task_maybe_free(h, t);
    loom__head_schedule(h);
}

void loom__head_on_obj_added(head *h, client *c, loom_msg *m)
{
    obj *o = loom__head_obj_get(h, &m->ref);
    if (o && o->state == O_READY && !o->value) {
        loom__head_obj_add_loc(o, c->node_id);
        loom__head_persist_obj(h, o); /* a restarted head knows every copy */
    }
}
