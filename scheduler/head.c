/* scheduler/head.c — the head's loop, message dispatch and membership: who is
 * in the cluster (HELLO/WELCOME, nodes, clients), what happens when a node
 * dies or a client goes away, the small helpers every part uses (sending,
 * errors, answers after commit), write-through of the tables to LMDB, and
 * the table of handlers dispatch() routes each message to.
 *
 * One thread, one libuv loop, one ROUTER socket, a CURVE server whose ZAP
 * handler (runtime/curve.c, its own thread) lets in only the cluster's client
 * keys; every peer must then say HELLO.  Every frame is decoded and validated by
 * runtime/wire.c before a handler sees it; a bad frame gets an ERROR reply and
 * a log line.  Tables are in memory and written through to LMDB (headdb.c) in
 * one transaction per loop turn.
 *
 * The rest of the head is split by concern (scheduler/head_internal.h holds
 * the shared structs): head_task.c (objects, tasks, retries, submissions,
 * subscriptions), head_place.c (resources, placement, schedule),
 * head_actor.c, head_pg.c (placement groups), head_kv.c (key-value table),
 * head_inspect.c (status and listings), head_reload.c (restart from LMDB). */
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
#include "runtime/curve.h"
#include "runtime/audit.h"
#include "runtime/secret.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "runtime/zloop.h"
#include "scheduler/head.h"
#include "scheduler/head_internal.h"
#include "scheduler/headdb.h"
#include "scheduler/pool.h"

/* ---- small helpers ------------------------------------------------------ */

int loom__head_grow_array(void **arr, int *cap, int need, size_t elem)
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

void loom__head_send_to(head *h, const uint8_t *ident, size_t identlen, const loom_msg *m)
{
    if (loom__zsend_msg(h->router, ident, identlen, m, h->out))
        LOG_DEBUG("send %s: peer gone", loom__msg_type_name(m->type));
}

void loom__head_reply_error(head *h, const uint8_t *ident, size_t identlen, uint64_t req, int code,
                            const char *text)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_ERROR, req);
    m.code = code;
    m.text = (char *)text;
    loom__head_send_to(h, ident, identlen, &m);
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

void loom__head_send_after_commit(head *h, const uint8_t *ident, size_t identlen, const loom_msg *m)
{
    pending_ack *a = NULL;
    if (identlen <= MAX_IDENT && loom__wire_encode(m, h->out) == 0 &&
        !loom__head_grow_array((void **)&h->acks, &h->cap_acks, h->nacks + 1, sizeof(*h->acks))) {
        a = &h->acks[h->nacks];
        a->len = loom_pack_size(h->out);
        a->data = malloc(a->len ? a->len : 1);
    }
    if (!a || !a->data) { /* out of memory: commit now and answer now */
        loom__headdb_commit(h->db);
        loom__head_send_to(h, ident, identlen, m);
        return;
    }
    memcpy(a->data, loom_pack_data(h->out), a->len);
    memcpy(a->ident, ident, identlen);
    a->identlen = identlen;
    h->nacks++;
}

static void commit_and_answer(head *h)
{
    loom__headdb_commit(h->db);
    for (int i = 0; i < h->nacks; i++) {
        pending_ack *a = &h->acks[i];
        if (loom__zsend(h->router, a->ident, a->identlen, a->data, a->len)) LOG_DEBUG("send an answer: peer gone");
        free(a->data);
    }
    h->nacks = 0;
}

void loom__head_reply_ok(head *h, client *c, uint64_t req)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_OK, req);
    loom__head_send_to(h, c->ident, c->identlen, &m);
}

node *loom__head_node_get(head *h, uint32_t id)
{
    return loom__hmap_get(&h->nodes, &id, sizeof(id));
}

client *loom__head_client_by_id(head *h, uint32_t id)
{
    return loom__hmap_get(&h->clients_by_id, &id, sizeof(id));
}

/* ---- persistence -------------------------------------------------------- */

void loom__head_persist_task(head *h, task *t)
{
    loom_pack *p = h->rec;
    if (!p) return;
    loom_pack_reset(p);
    loom_pack_array(p, 6);
    loom__wire_pack_task(p, &t->spec);
    loom_pack_u64(p, (uint64_t)t->state);
    loom_pack_i64(p, t->code);
    loom_pack_cstr(p, t->error ? t->error : "");
    loom_pack_u64(p, t->node);
    loom_pack_u64(p, t->seq); /* an actor call's place among its actor's calls */
    loom__headdb_put(h->db, HEADDB_TASKS, t->id, 16, loom_pack_data(p), loom_pack_size(p));
}

void loom__head_persist_obj(head *h, obj *o)
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
    loom__headdb_put(h->db, HEADDB_OBJECTS, o->ref.id, LOOM_ID_LEN, loom_pack_data(p), loom_pack_size(p));
}

void loom__head_persist_job(head *h, job *j)
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
    loom__headdb_put(h->db, HEADDB_JOBS, j->id, strlen(j->id), loom_pack_data(p), loom_pack_size(p));
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
    loom__headdb_put(h->db, HEADDB_NODES, &n->id, sizeof(n->id), loom_pack_data(p), loom_pack_size(p));
}

/* ---- clients and nodes -------------------------------------------------- */

void loom__head_client_hold(client *c, const loom_ref *ref)
{
    uintptr_t cnt = (uintptr_t)loom__hmap_get(&c->held, ref->id, LOOM_ID_LEN);
    loom__hmap_put(&c->held, ref->id, LOOM_ID_LEN, (void *)(cnt + 1));
}

int loom__head_client_unhold(client *c, const loom_ref *ref)
{
    uintptr_t cnt = (uintptr_t)loom__hmap_get(&c->held, ref->id, LOOM_ID_LEN);
    if (!cnt) return 0;
    if (cnt == 1) loom__hmap_del(&c->held, ref->id, LOOM_ID_LEN);
    else loom__hmap_put(&c->held, ref->id, LOOM_ID_LEN, (void *)(cnt - 1));
    return 1;
}

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
void loom__head_rebuild_lost(head *h, obj **lost, int nl, const char *msg)
{
    task **redo = NULL;
    int nr = 0, cap = 0;
    for (int i = 0; i < nl; i++) {
        obj *o = lost[i];
        const char *why = lineage_blocker(o);
        if (why) {
            char text[1200];
            loom__snprintf(text, sizeof(text), "the object was lost (%s) and cannot be rebuilt: %s", msg, why);
            o->state = O_FAILED;
            o->code = LOOM_ENODE;
            free(o->error);
            o->error = strdup(text);
            loom__head_persist_obj(h, o);
            continue;
        }
        o->state = O_PENDING;
        loom__head_persist_obj(h, o);
        task *p = o->producer;
        if (p->state != T_DONE) continue; /* already running again */
        int seen = 0;
        for (int k = 0; k < nr && !seen; k++) seen = redo[k] == p;
        if (!seen && !loom__head_grow_array((void **)&redo, &cap, nr + 1, sizeof(task *))) {
            p->pinned++;
            redo[nr++] = p;
        }
    }
    for (int i = 0; i < nr; i++) {
        task *p = redo[i];
        p->rebuilds++;
        p->node = 0;
        LOG_INFO("task '%s' runs again to rebuild what was lost (%s)", p->spec.name, msg);
        loom__head_task_requeue(h, p);
        p->pinned--;
        loom__head_task_maybe_free(h, p);
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
    loom__snprintf(msg, sizeof(msg), "node %u (%s) died: %s", n->id, n->info.hostname, why);
    /* fail what ran there (retries come with fault tolerance) */
    size_t it = 0;
    void *v;
    task **victims = NULL;
    int nv = 0, cap = 0;
    while (loom__hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        /* calls go with their actor (loom__head_actors_on_dead_node): it may restart */
        if (t->state == T_RUNNING && t->node == n->id && t->spec.actor_op != LOOM_ACTOR_CALL &&
            !loom__head_grow_array((void **)&victims, &cap, nv + 1, sizeof(task *)))
            victims[nv++] = t;
    }
    for (int i = 0; i < nv; i++) {
        task *t = victims[i];
        free(t->grant); /* the node's pool goes with the node */
        t->grant = NULL;
        actor *a = t->spec.actor_op == LOOM_ACTOR_CREATE ? loom__hmap_get(&h->actors, t->id, 16) : NULL;
        if (a && a->state == A_PENDING && (a->max_restarts < 0 || a->restarts < (uint32_t)a->max_restarts)) {
            /* an actor (re)starting there: one more restart, elsewhere */
            a->restarts++;
            LOG_INFO("actor %s %s was starting on node %u: restart %u", a->cls, a->name, n->id, a->restarts);
            loom__head_task_requeue(h, t);
            continue;
        }
        if (loom__head_task_should_retry(t, LOOM_ENODE)) {
            loom__head_task_retry(h, t, n->id, msg);
            continue;
        }
        char full[20000];
        t->state = T_QUEUED; /* not running any more: fail it like a queued task */
        loom__head_task_fail(h, t, LOOM_ENODE, loom__head_with_history(t, msg, full, sizeof(full)));
    }
    free(victims);
    n->running = 0;
    loom__head_actors_on_dead_node(h, n, msg);
    /* forget its copies; objects left with none are lost */
    it = 0;
    obj **lost = NULL;
    int nl = 0, capl = 0;
    while (loom__hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        for (int i = 0; i < o->nlocs; i++)
            if (o->locs[i] == n->id) {
                o->locs[i] = o->locs[--o->nlocs];
                if (o->nlocs == 0 && !o->value && o->state == O_READY &&
                    !loom__head_grow_array((void **)&lost, &capl, nl + 1, sizeof(obj *)))
                    lost[nl++] = o;
                else loom__head_persist_obj(h, o);
                break;
            }
    }
    loom__head_rebuild_lost(h, lost, nl, msg);
    free(lost);
}

static void client_drop(head *h, client *c)
{
    /* what a driver submitted stops with it (detached jobs and actors go on) */
    if (c->role == LOOM_ROLE_DRIVER) {
        loom__head_cancel_jobs_of(h, c->id);
        loom__head_kill_actors_of(h, c->id);
        loom__head_remove_pgs_of(h, c->id);
        loom__head_kv_expire(h, c->id);
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
    loom__hmap_free(&c->held);
    for (size_t i = 0; i < k; i++) {
        obj *o = loom__head_obj_get(h, &refs[i]);
        for (uintptr_t j = 0; o && j < counts[i]; j++) {
            if (o->refs > 0) o->refs--;
        }
        if (o) loom__head_obj_maybe_free(h, o);
    }
    free(refs);
    free(counts);
    if (c->role == LOOM_ROLE_NODE) {
        node *nd = loom__head_node_get(h, c->node_id);
        if (nd) node_dead(h, nd, "it left the cluster");
    }
    loom__hmap_del(&h->clients, c->ident, c->identlen);
    loom__hmap_del(&h->clients_by_id, &c->id, sizeof(c->id));
    free(c);
}

char *loom__head_dupstr(const char *s)
{
    return strdup(s ? s : "");
}

void loom__head_node_info_free(loom_wire_node *info)
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
int loom__head_node_init_resources(head *h, node *n, const loom_wire_node *w)
{
    int listed = 0;
    for (int i = 0; i < h->nnode_list && !listed; i++) listed = h->node_list[i] == n;
    n->info.res = NULL;
    n->info.labels = NULL;
    n->info.nres = n->info.nlabels = 0;
    loom__pool_init(&n->pool, w->num_cpus, w->memory, (int)w->num_gpus, w->gpu_memory);
    if (w->nres) n->info.res = calloc(w->nres, sizeof(loom_wire_res));
    if (w->nlabels) n->info.labels = calloc(w->nlabels, sizeof(loom_wire_label));
    if ((w->nres && !n->info.res) || (w->nlabels && !n->info.labels)) return LOOM_ENOMEM;
    for (uint32_t i = 0; i < w->nres; i++) {
        n->info.res[i].name = loom__head_dupstr(w->res[i].name);
        n->info.res[i].amount = w->res[i].amount;
        n->info.nres++;
        if (loom__pool_add_res(&n->pool, w->res[i].name, w->res[i].amount)) return LOOM_EINVAL;
    }
    for (uint32_t i = 0; i < w->nlabels; i++) {
        n->info.labels[i].key = loom__head_dupstr(w->labels[i].key);
        n->info.labels[i].value = loom__head_dupstr(w->labels[i].value);
        n->info.nlabels++;
    }
    h->labels_version++;   /* placement's cache of label matches is stale */
    if (listed) return LOOM_OK;
    if (loom__head_grow_array((void **)&h->node_list, &h->cap_node_list, h->nnode_list + 1, sizeof(node *)))
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
    loom__msg_init(&m, LOOM_MSG_WELCOME, req);
    m.assigned_id = c->role == LOOM_ROLE_NODE ? c->node_id : c->id;
    loom_wire_node *list = calloc(h->nodes.count + 1, sizeof(*list));
    size_t it = 0;
    void *v;
    while (list && loom__hmap_next(&h->nodes, &it, &v)) {
        node *n = v;
        if (n->alive) list[m.nnodes++] = n->info;
    }
    m.nodes = list;
    loom__head_send_to(h, c->ident, c->identlen, &m);
    free(list);
}

/* A node the head knew before it restarted says hello again with its id:
 * take its new description; until it lists what it still runs (RUNNING),
 * nothing new is placed there. */
static int node_rejoin(head *h, node *n, const uint8_t *ident, size_t identlen, const loom_wire_node *w)
{
    loom__head_node_info_free(&n->info);
    memset(&n->info, 0, sizeof(n->info));
    n->info = *w;
    n->info.id = n->id;
    n->info.hostname = loom__head_dupstr(w->hostname);
    n->info.data_addr = loom__head_dupstr(w->data_addr);
    n->info.store_dir = loom__head_dupstr(w->store_dir);
    n->info.spill_dir = loom__head_dupstr(w->spill_dir);
    if (loom__head_node_init_resources(h, n, w)) return LOOM_EINVAL;
    memcpy(n->ident, ident, identlen);
    n->identlen = identlen;
    n->awaiting = 0;
    n->reconciling = 1;
    n->alive = 1;
    n->running = 0;
    n->last_seen = loom__now_ms();
    persist_node(h, n);
    LOG_INFO("node %u (%s) rejoined after the head restarted", n->id, n->info.hostname);
    return LOOM_OK;
}

/* What a rejoined node still runs: those tasks keep running there (their
 * resources taken again); the others it ran for the old head are lost (their
 * reports went to it) and run again. */
static void on_running(head *h, client *c, loom_msg *m)
{
    node *n = loom__head_node_get(h, c->node_id);
    if (!n || !n->reconciling) return;
    n->reconciling = 0;
    loom_hmap still = {0};
    for (uint32_t i = 0; i < m->nrefs; i++) loom__hmap_put(&still, m->refs[i].id, 16, (void *)1);
    uint8_t (*lost)[16] = NULL;
    int nl = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->state != T_RUNNING || t->node != n->id) continue;
        if (t->spec.actor_op == LOOM_ACTOR_CALL && loom__hmap_get(&still, t->id, 16)) {
            actor *a = loom__hmap_get(&h->actors, t->spec.actor, 16);
            if (a) a->running++;
            n->running++;
        } else if (loom__hmap_get(&still, t->id, 16)) {
            loom_request r;
            loom__head_spec_request(&t->spec, &r);
            t->grant = malloc(sizeof(loom_grant));
            if (t->grant && loom__pool_take(&n->pool, &r, t->grant)) {
                free(t->grant);
                t->grant = NULL;
            }
            t->bundle = -1;
            n->running++;
        } else if (!loom__head_grow_array((void **)&lost, &cap, nl + 1, 16)) {
            memcpy(lost[nl++], t->id, 16);
        }
    }
    for (int i = 0; i < nl; i++) {
        task *t = loom__hmap_get(&h->tasks, lost[i], 16);
        if (!t || t->state != T_RUNNING) continue;
        if (t->spec.actor_op == LOOM_ACTOR_CALL) {
            actor *a = loom__hmap_get(&h->actors, t->spec.actor, 16);
            if (a && a->state != A_DEAD && t->attempts < a->max_task_retries) {
                loom__head_history_add(t, n->id, "its result was lost when the head restarted");
                loom__head_actor_requeue_call(h, a, t);
            } else {
                t->state = T_QUEUED;
                loom__head_task_fail(h, t, LOOM_EACTOR, "the call ran when the head went down and its result was lost");
            }
            continue;
        }
        LOG_INFO("task '%s' ran on node %u when the head went down: it runs again", t->spec.name, n->id);
        loom__head_task_requeue(h, t);
    }
    free(lost);
    /* the actors it hosted: take their resources again, or they are gone */
    actor *gone[256];
    int ng = 0;
    it = 0;
    while (loom__hmap_next(&h->actors, &it, &v)) {
        actor *a = v;
        if (a->state != A_ALIVE || a->node != n->id) continue;
        if (loom__hmap_get(&still, a->id, 16) && a->req) {
            a->grant = malloc(sizeof(loom_grant));
            if (a->grant && loom__pool_take(&n->pool, a->req, a->grant)) {
                free(a->grant);
                a->grant = NULL;
            }
        } else if (ng < 256) {
            gone[ng++] = a;
        }
    }
    loom__hmap_free(&still);
    for (int i = 0; i < ng; i++) loom__head_actor_lost(h, gone[i], "its process was gone when the head restarted");
    it = 0;
    while (loom__hmap_next(&h->actors, &it, &v))
        if (((actor *)v)->node == n->id) loom__head_actor_dispatch(h, v);
    loom__head_schedule(h);
}

/* Every connection got here through CURVE with a key the ZAP handler let in
 * (user is its "User-Id"): the secret is no longer in HELLO.  Task code
 * (loom_task_client, the task key) may be a driver, never a node. */
static void on_hello(head *h, const uint8_t *ident, size_t identlen, loom_msg *m, const char *user)
{
    if (m->role == LOOM_ROLE_NODE && (!user || strcmp(user, LOOM_CURVE_USER_NODE) != 0)) {
        LOG_WARN("refused a node from %s: its key is not the cluster's node key", m->hostname);
        loom__head_reply_error(h, ident, identlen, m->req, LOOM_EAUTH, "this key may not join as a node");
        return;
    }
    if (m->role == LOOM_ROLE_NODE && m->nnodes != 1) {
        loom__head_reply_error(h, ident, identlen, m->req, LOOM_EPROTO, "a node's hello must describe it");
        return;
    }
    if (m->role == LOOM_ROLE_EXECUTOR) {
        loom__head_reply_error(h, ident, identlen, m->req, LOOM_EPROTO, "executors talk to their daemon");
        return;
    }
    client *old = loom__hmap_get(&h->clients, ident, identlen);
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
    node *prev = m->role == LOOM_ROLE_NODE && m->nodes[0].id ? loom__head_node_get(h, m->nodes[0].id) : NULL;
    if (prev && prev->awaiting) {
        if (node_rejoin(h, prev, ident, identlen, &m->nodes[0])) {
            free(c);
            loom__head_reply_error(h, ident, identlen, m->req, LOOM_EINVAL, "bad node resources");
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
        n->info.hostname = loom__head_dupstr(m->nodes[0].hostname);
        n->info.data_addr = loom__head_dupstr(m->nodes[0].data_addr);
        n->info.store_dir = loom__head_dupstr(m->nodes[0].store_dir);
        n->info.spill_dir = loom__head_dupstr(m->nodes[0].spill_dir);
        if (loom__head_node_init_resources(h, n, &m->nodes[0])) {
            loom__head_node_info_free(&n->info);
            free(n);
            free(c);
            loom__head_reply_error(h, ident, identlen, m->req, LOOM_EINVAL, "bad node resources");
            return;
        }
        n->alive = 1;
        n->last_seen = loom__now_ms();
        loom__hmap_put(&h->nodes, &n->id, sizeof(n->id), n);
        c->node_id = n->id;
        persist_node(h, n);
        LOG_INFO("node %u joined: %s, %.1f CPUs, %llu MiB memory, data at %s", n->id,
                 n->info.hostname, n->info.num_cpus,
                 (unsigned long long)(n->info.memory >> 20), n->info.data_addr);
    }
    loom__hmap_put(&h->clients, c->ident, c->identlen, c);
    loom__hmap_put(&h->clients_by_id, &c->id, sizeof(c->id), c);
    welcome(h, c, m->req);
    if (m->role == LOOM_ROLE_NODE) loom__head_schedule(h);
}

/* ---- dispatch ----------------------------------------------------------- */

static void on_heartbeat(head *h, client *c, loom_msg *m)
{
    int is_node = c->role == LOOM_ROLE_NODE;
    if (is_node) {
        node *n = loom__head_node_get(h, c->node_id);
        if (n && !n->alive) {
            /* declared dead (a cut link that came back): its work went
               elsewhere; it joins again as a new node */
            loom__head_reply_error(h, c->ident, c->identlen, 0, LOOM_ESTATE,
                                   "this node was declared dead: say hello again to rejoin");
            client_drop(h, c);
            return;
        }
        if (n) {
            n->last_seen = loom__now_ms();
            n->store_used = m->store_used;
            n->reported_running = m->running;
        }
    }
}

static void on_bye(head *h, client *c, loom_msg *m)
{
    client_drop(h, c);
}

/* Who may send a message: a bitmask of roles (role_bit). */
#define R_DRIVER (1u << LOOM_ROLE_DRIVER)
#define R_NODE (1u << LOOM_ROLE_NODE)
#define R_EXECUTOR (1u << LOOM_ROLE_EXECUTOR)
#define R_ANY (R_DRIVER | R_NODE | R_EXECUTOR)

typedef void (*handler_fn)(head *h, client *c, loom_msg *m);

typedef struct handler {
    uint32_t roles;
    handler_fn fn;
} handler;

/* Every message a client may send the head, by type: who may send it and
 * what handles it.  A type not here, or from a role not allowed, gets an
 * ERROR. */
static const handler handlers[LOOM_MSG_TYPE_MAX] = {
    [LOOM_MSG_HEARTBEAT] = {R_ANY, on_heartbeat}, /* ignored unless from a node */
    [LOOM_MSG_SUBMIT] = {R_ANY, loom__head_on_submit},
    [LOOM_MSG_PUT_DONE] = {R_ANY, loom__head_on_put_done},
    [LOOM_MSG_SUBSCRIBE] = {R_ANY, loom__head_on_subscribe},
    [LOOM_MSG_RELEASE] = {R_ANY, loom__head_on_release},
    [LOOM_MSG_CANCEL] = {R_ANY, loom__head_on_cancel},
    [LOOM_MSG_STATUS] = {R_ANY, loom__head_on_status},
    [LOOM_MSG_JOB_INFO] = {R_ANY, loom__head_on_job_info},
    [LOOM_MSG_JOBS] = {R_ANY, loom__head_on_jobs},
    [LOOM_MSG_JOB_REF] = {R_ANY, loom__head_on_job_ref},
    [LOOM_MSG_JOB_DELETE] = {R_ANY, loom__head_on_job_delete},
    [LOOM_MSG_BYE] = {R_ANY, on_bye},
    [LOOM_MSG_TASK_DONE] = {R_NODE, loom__head_on_task_done},
    [LOOM_MSG_OBJ_ADDED] = {R_NODE, loom__head_on_obj_added},
    [LOOM_MSG_ACTOR_DIED] = {R_NODE, loom__head_on_actor_died},
    [LOOM_MSG_ACTOR_LOOKUP] = {R_ANY, loom__head_on_actor_lookup},
    [LOOM_MSG_ACTOR_KILL] = {R_ANY, loom__head_on_actor_kill},
    [LOOM_MSG_ACTORS] = {R_ANY, loom__head_on_actors},
    [LOOM_MSG_PG_CREATE] = {R_ANY, loom__head_on_pg_create},
    [LOOM_MSG_PG_REMOVE] = {R_ANY, loom__head_on_pg_remove},
    [LOOM_MSG_PG_INFO] = {R_ANY, loom__head_on_pg_info},
    [LOOM_MSG_DRAIN] = {R_ANY, loom__head_on_drain},
    [LOOM_MSG_RUNNING] = {R_NODE, on_running},
    [LOOM_MSG_KV_PUT] = {R_ANY, loom__head_on_kv_put},
    [LOOM_MSG_KV_GET] = {R_ANY, loom__head_on_kv_get},
    [LOOM_MSG_KV_DEL] = {R_ANY, loom__head_on_kv_del},
};

static uint32_t role_bit(int role)
{
    return role >= LOOM_ROLE_DRIVER && role <= LOOM_ROLE_EXECUTOR ? 1u << role : 0;
}

static void dispatch(head *h, client *c, loom_msg *m)
{
    const handler *hd = m->type > 0 && m->type < LOOM_MSG_TYPE_MAX ? &handlers[m->type] : NULL;
    if (hd && hd->fn && (hd->roles & role_bit(c->role))) {
        hd->fn(h, c, m);
        return;
    }
    loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_EPROTO, "unexpected message for the head");
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
    if (loom__wire_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), &m, err, sizeof(err))) {
        LOG_WARN("rejected a malformed message: %s", err);
        loom__head_reply_error(h, ident, identlen, frame_req(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1])),
                               LOOM_EPROTO, err);
        return;
    }
    if (m.type == LOOM_MSG_HELLO) {
        on_hello(h, ident, identlen, &m, zmq_msg_gets(&frames[1], "User-Id"));
    } else {
        client *c = loom__hmap_get(&h->clients, ident, identlen);
        /* ESTATE, not EAUTH: a peer of a head that restarted joins again */
        if (!c)
            loom__head_reply_error(h, ident, identlen, m.req, LOOM_ESTATE, "say hello first");
        else
            dispatch(h, c, &m);
    }
    loom__msg_free(&m);
    loom__head_drain_unrefs(h);
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
    loom__msg_init(&m, LOOM_MSG_OK, 0);
    if (loom__wire_encode(&m, h->out)) return;
    while (loom__hmap_next(&h->clients, &it, &v) && n < 256) {
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
    if (n) loom__head_schedule(h);
}

/* A peer whose CURVE handshake failed never reached on_frames: say so in
 * the log (now and then: a refused peer retries every 100 ms). */
static void log_refused_handshake(head *h)
{
    h->hs_refused++;
    int64_t now = loom__now_ms();
    if (h->hs_logged && now - h->hs_logged < 10000) return;
    h->hs_logged = now;
    LOG_WARN("refused a connection whose CURVE handshake failed: wrong cluster secret, or not a loom peer "
             "(%llu so far)", (unsigned long long)h->hs_refused);
}

static void on_monitor(void *arg, zmq_msg_t *frames, int n)
{
    head *h = arg;
    if (n < 1 || zmq_msg_size(&frames[0]) < 2) return;
    uint16_t event;
    memcpy(&event, zmq_msg_data(&frames[0]), sizeof(event));
    if (event == ZMQ_EVENT_DISCONNECTED) probe_drivers(h);
    if (loom__curve_handshake_event(event) < 0) log_refused_handshake(h);
}

static void watch_disconnects(head *h)
{
    char ep[64];
    loom__snprintf(ep, sizeof(ep), "inproc://head-monitor-%p", (void *)h);
    if (zmq_socket_monitor(h->router, ep, ZMQ_EVENT_DISCONNECTED | LOOM_CURVE_HS_EVENTS) != 0) return;
    h->monitor = zmq_socket(h->zctx, ZMQ_PAIR);
    if (!h->monitor || zmq_connect(h->monitor, ep) != 0 ||
        loom__zwatch_start(h->loop, h->monitor, on_monitor, h, &h->monitor_watch) != 0)
        LOG_WARN("cannot watch for closed connections: drivers that crash keep their refs");
}

/* ---- loop --------------------------------------------------------------- */

static void on_tick(uv_timer_t *tm)
{
    head *h = tm->data;
    int64_t now = loom__now_ms();
    loom__head_usage_flush(h);
    loom__audit_sync();
    size_t it = 0;
    void *v;
    node *dead[64];
    int nd = 0;
    int gone = 0;
    while (loom__hmap_next(&h->nodes, &it, &v) && nd < 64) {
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
    if (h->kv_waits) loom__head_kv_expire(h, 0);
    loom__head_drain_unrefs(h);
    loom__headdb_commit(h->db);
    loom__headdb_sync(h->db);
    if (nd) loom__head_schedule(h);
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
    loom__head_usage_flush(h);   /* the last second's accounting */
    loom__headdb_commit(h->db);
    uv_stop(h->loop);
}

/* The router is a CURVE server with the cluster's server key; its ZAP
 * handler (started first: without one, libzmq lets every CURVE client in)
 * admits the node key and the task key, nothing else. */
static int curve_router(head *h, const loom_curve_keys *k)
{
    loom_curve_allow allow[] = {{k->node.pub, LOOM_CURVE_USER_NODE}, {k->task.pub, LOOM_CURVE_USER_TASK}};
    int rc = loom__curve_zap_start(h->zctx, allow, 2, &h->zap);
    if (!rc) rc = loom__curve_server(h->router, &k->server);
    if (rc) LOG_ERROR("cannot set up CURVE on the head's socket: %s", loom_strerror(rc));
    return rc;
}

static int bind_router(head *h, const loom_head_opts *o, char *addr, size_t addrlen)
{
    char ep[512];
    if (o->port > 0) loom__snprintf(ep, sizeof(ep), "tcp://%s:%d", o->bind_host, o->port);
    else loom__snprintf(ep, sizeof(ep), "tcp://%s:*", o->bind_host);
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
        loom__snprintf(host, sizeof(host), "%s", o->advertise_host);
    } else if (!strcmp(o->bind_host, "0.0.0.0") || !strcmp(o->bind_host, "*")) {
        if (gethostname(host, sizeof(host)) != 0) loom__snprintf(host, sizeof(host), "127.0.0.1");
    } else {
        loom__snprintf(host, sizeof(host), "%s", o->bind_host);
    }
    loom__snprintf(addr, addrlen, "%s:%s", host, port ? port + 1 : "0");
    return LOOM_OK;
}

static void head_free_tables(head *h)
{
    size_t it = 0;
    void *v;
    loom__head_usage_free(h);
    while (loom__hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        free(t->outs);
        free(t->error);
        free(t->grant);
        free(t->acct);
        free(t->history);
        loom__arena_free(&t->arena);
        free(t);
    }
    it = 0;
    while (loom__hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        free(o->error); free(o->value); free(o->locs); free(o->subs); free(o->waiters);
        free(o);
    }
    it = 0;
    while (loom__hmap_next(&h->clients, &it, &v)) {
        client *c = v;
        loom__hmap_free(&c->held);
        free(c);
    }
    it = 0;
    while (loom__hmap_next(&h->nodes, &it, &v)) {
        node *n = v;
        loom__head_node_info_free(&n->info);
        free(n);
    }
    free(h->node_list);
    free(h->cands);
    loom__head_labels_cache_free(h);
    it = 0;
    while (loom__hmap_next(&h->actors, &it, &v)) {
        actor *a = v;
        free(a->name); free(a->cls); free(a->calls); free(a->error); free(a->grant); free(a->req); free(a->usage_label);
        free(a);
    }
    it = 0;
    while (loom__hmap_next(&h->pgs, &it, &v)) {
        pgroup *g = v;
        free(g->name); free(g->breq); free(g->bpool); free(g->bgrant); free(g->bnode); free(g->reason);
        free(g);
    }
    it = 0;
    while (loom__hmap_next(&h->kv, &it, &v)) loom__head_kv_entry_free(v);
    while (h->kv_waits) {
        kv_wait *w = h->kv_waits;
        h->kv_waits = w->next;
        free(w->key);
        free(w);
    }
    for (int i = 0; i < 16; i++) free(h->infeasible[i]);
    free(h->unrefs);
    free(h->parked);
    loom__hmap_free(&h->actors); loom__hmap_free(&h->actor_names); loom__hmap_free(&h->pgs);
    loom__hmap_free(&h->kv);
    it = 0;
    while (loom__hmap_next(&h->jobs, &it, &v)) {
        job *j = v;
        free(j->tasks); free(j->name); free(j->label); free(j);
    }
    loom__hmap_free(&h->tasks); loom__hmap_free(&h->objs); loom__hmap_free(&h->clients);
    loom__hmap_free(&h->clients_by_id); loom__hmap_free(&h->nodes); loom__hmap_free(&h->jobs);
}

static void close_walk(uv_handle_t *hd, void *arg)
{
    (void)arg;
    if (!uv_is_closing(hd)) uv_close(hd, NULL);
}

int loom__head_run(const loom_head_opts *o)
{
    head h;
    memset(&h, 0, sizeof(h));
    loom_head_opts opts = *o;
    if (!opts.bind_host) opts.bind_host = "127.0.0.1";
    h.hb_timeout_ms = opts.heartbeat_timeout_ms > 0 ? opts.heartbeat_timeout_ms : 10000;
    h.nodes_epoch = 1; /* tasks start at 0: each is checked for feasibility once */
    loom_curve_keys keys;
    if (loom__curve_derive(opts.secret, &keys)) return LOOM_EAUTH;
    int rc = loom__headdb_open(opts.db_dir ? opts.db_dir : opts.state_dir, &h.db);
    if (rc) return rc;
    if (loom__audit_open(opts.state_dir) != 0) LOG_WARN("cannot open %s/audit.log: no audit log", opts.state_dir);
    h.out = loom_pack_new();
    h.rec = loom_pack_new();
    loom__head_load_tables(&h);
    loom__headdb_commit(h.db);
    h.loop = uv_default_loop();
    h.zctx = zmq_ctx_new();
    h.router = zmq_socket(h.zctx, ZMQ_ROUTER);
    loom__zsock_setup(h.router, ZMQ_ROUTER);
    char addr[512];
    rc = curve_router(&h, &keys);
    memset(&keys, 0, sizeof(keys));
    if (!rc) rc = bind_router(&h, &opts, addr, sizeof(addr));
    if (!rc) rc = loom__zwatch_start(h.loop, h.router, on_frames, &h, &h.watch);
    if (!rc) loom__zwatch_after_batch(h.watch, after_batch);
    if (!rc) watch_disconnects(&h);
    if (rc) goto out;
    char path[4096];
    loom__snprintf(path, sizeof(path), "%s/address", opts.state_dir);
    loom__write_file(path, addr, strlen(addr), 0600);
    LOG_INFO("head listening on %s (state in %s)", addr, opts.state_dir);
    if (opts.ready_fd >= 0) {
        char line[600];
        loom__snprintf(line, sizeof(line), "%s\n", addr);
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
    loom__zwatch_stop(&h.watch);
    loom__zwatch_stop(&h.monitor_watch);
    if (h.monitor) zmq_close(h.monitor);
    uv_walk(h.loop, close_walk, NULL);
    uv_run(h.loop, UV_RUN_DEFAULT);
    uv_loop_close(h.loop);
    for (int i = 0; i < h.nacks; i++) free(h.acks[i].data);
    free(h.acks);
    zmq_close(h.router);
    loom__curve_zap_stop(&h.zap);
    zmq_ctx_term(h.zctx);
    loom__headdb_close(&h.db);
    loom__audit_close();
    head_free_tables(&h);
    loom_pack_destroy(&h.out);
    loom_pack_destroy(&h.rec);
    return rc;
}
