/* scheduler/head_actor.c — actors: creation, their calls in submission
 * order, restarts, death, kill, names, draining nodes and the actor
 * messages (lookup, kill, died). */
#include <stdlib.h>
#include <string.h>
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

/* ---- actors ------------------------------------------------------------- */

/* Names (actor names, keys) are longer than the map's keys: map their hash. */
void loom__head_name_key(const char *name, uint8_t out[32])
{
    loom__sha256(name, strlen(name), out);
}

actor *loom__head_actor_by_name(head *h, const char *name)
{
    uint8_t k[32];
    loom__head_name_key(name, k);
    return loom__hmap_get(&h->actor_names, k, sizeof(k));
}

/* The actor that creation task t makes, owned by client owner (0: none
 * known, as after a head restart); NULL when out of memory. */
actor *loom__head_actor_new_owned(head *h, task *t, uint32_t owner)
{
    actor *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    memcpy(a->id, t->id, 16);
    a->name = loom__head_dupstr(t->spec.actor_name);
    a->cls = loom__head_dupstr(t->spec.function);
    a->owner = owner;
    a->detached = t->spec.detached || !owner;
    a->max_concurrency = t->spec.max_concurrency ? t->spec.max_concurrency : 1;
    a->max_restarts = t->spec.max_restarts;
    a->max_task_retries = t->spec.max_task_retries;
    a->t_created = loom__now_ms();
    a->bundle = -1;
    a->ready_obj = t->outs[0];
    if (loom__hmap_put(&h->actors, a->id, 16, a)) {
        free(a->name); free(a->cls); free(a);
        return NULL;
    }
    if (a->name[0]) {
        uint8_t k[32];
        loom__head_name_key(a->name, k);
        loom__hmap_put(&h->actor_names, k, sizeof(k), a);
    }
    return a;
}

void loom__head_actor_new(head *h, task *t, client *c)
{
    loom__head_actor_new_owned(h, t, c->id);
}

void loom__head_actor_add_call(head *h, task *t)
{
    actor *a = loom__hmap_get(&h->actors, t->spec.actor, 16);
    if (!a || loom__head_grow_array((void **)&a->calls, &a->cap_calls, a->ncalls + 1, sizeof(*a->calls))) return;
    if (!t->seq) t->seq = ++a->next_seq; /* a reloaded call keeps its number (the reload raised next_seq) */
    memcpy(a->calls[a->ncalls++], t->id, 16);
}

/* Put a call that was running back among the waiting ones, in its place. */
void loom__head_actor_requeue_call(head *h, actor *a, task *t)
{
    if (loom__head_grow_array((void **)&a->calls, &a->cap_calls, a->ncalls + 1, sizeof(*a->calls))) return;
    int at = a->ncalls;
    for (int i = 0; i < a->ncalls; i++) {
        task *o = loom__hmap_get(&h->tasks, a->calls[i], 16);
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
    loom__head_persist_task(h, t); /* not running any more: a restarted head must not wait for it */
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
void loom__head_actor_dispatch(head *h, actor *a)
{
    if (a->state == A_PENDING) return;
    node *n = a->state == A_ALIVE ? loom__head_node_get(h, a->node) : NULL;
    uint32_t blocked[64];
    int nb = 0, w = 0;
    char msg[700];
    for (int i = 0; i < a->ncalls; i++) {
        task *t = loom__hmap_get(&h->tasks, a->calls[i], 16);
        if (!t || t->state >= T_RUNNING) continue; /* gone, or already handed over */
        int is_blocked = nb == 64 || caller_in(blocked, nb, t->caller);
        if (t->state == T_QUEUED && a->state == A_DEAD) {
            loom__snprintf(msg, sizeof(msg), "actor %s%s%s is dead: %s", a->cls, a->name[0] ? " " : "",
                           a->name, a->error ? a->error : "");
            a->calls_failed++;
            loom__head_task_fail(h, t, LOOM_EACTOR, msg);
            continue;
        }
        /* not to a node that rejoined and has not yet said what it still
         * runs: a call handed over before its RUNNING list would look lost
         * there (not in the list) and run a second time */
        if (!is_blocked && t->state == T_QUEUED && n && n->alive && !n->reconciling) {
            a->running++;
            loom__head_assign(h, t, n, NULL, NULL, -1);
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
    while (loom__hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->state == T_RUNNING && t->spec.actor_op == LOOM_ACTOR_CALL && !memcmp(t->spec.actor, a->id, 16) &&
            !loom__head_grow_array((void **)ids, &cap, n + 1, 16))
            memcpy((*ids)[n++], t->id, 16);
    }
    return n;
}

/* An actor gives back its grant: its user is charged for the time it held it. */
static void actor_usage_end(head *h, actor *a)
{
    if (!a->grant || !a->usage_label || !a->req) return;
    loom__head_usage_actor_end(h, a->usage_label, a->req, a->usage_since);
    free(a->usage_label);
    a->usage_label = NULL;
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
    a->t_died = loom__now_ms();
    h->dead_actors++;
    LOG_INFO("actor %s %s is dead: %s", a->cls, a->name, why);
    if (a->name[0] && loom__head_actor_by_name(h, a->name) == a) {
        uint8_t k[32];
        loom__head_name_key(a->name, k);
        loom__hmap_del(&h->actor_names, k, sizeof(k));
    }
    actor_usage_end(h, a);
    if (a->grant) loom__head_give_grant(h, a->node, a->has_pg ? a->pg : NULL, a->bundle, a->req, &a->grant);
    free(a->req);
    a->req = NULL;
    /* its creation, if still under way */
    task *ct = loom__hmap_get(&h->tasks, a->id, 16);
    if (ct && ct->state < T_DONE) loom__head_cancel_task(h, ct);
    if (a->deps_held && ct) {
        a->deps_held = 0;
        loom__head_task_release_deps(h, ct);
    }
    /* calls handed to its node: fail them now (the node's reports come too late) */
    if (was_alive) {
        uint8_t (*ids)[16] = NULL;
        int n = running_calls(h, a, &ids);
        char msg[700];
        loom__snprintf(msg, sizeof(msg), "actor %s%s%s died while running the call: %s", a->cls,
                       a->name[0] ? " " : "", a->name, why);
        for (int i = 0; i < n; i++) {
            task *t = loom__hmap_get(&h->tasks, ids[i], 16);
            if (!t || t->state != T_RUNNING) continue;
            loom__head_release_node_resources(h, t);
            t->state = T_QUEUED;
            a->calls_failed++;
            loom__head_task_fail(h, t, LOOM_EACTOR, msg);
        }
        free(ids);
        a->running = 0;
    }
    loom__head_actor_dispatch(h, a);
}

/* The actor's process or node died and it may restart: give back what it
 * held, put calls that were running back in line (or fail those out of
 * retries), and run its creation again with the same arguments. */
static void actor_restart(head *h, actor *a, const char *why)
{
    task *ct = loom__hmap_get(&h->tasks, a->id, 16);
    a->restarts++;
    a->state = A_PENDING;
    free(a->error);
    a->error = strdup(why);
    actor_usage_end(h, a);
    if (a->grant) loom__head_give_grant(h, a->node, a->has_pg ? a->pg : NULL, a->bundle, a->req, &a->grant);
    LOG_INFO("actor %s %s died (%s): restart %u%s", a->cls, a->name, why, a->restarts,
             a->max_restarts < 0 ? "" : " of its limit");
    /* calls handed to its node */
    uint8_t (*ids)[16] = NULL;
    int n = running_calls(h, a, &ids);
    char msg[700];
    loom__snprintf(msg, sizeof(msg), "actor %s%s%s died while running the call: %s", a->cls, a->name[0] ? " " : "",
                   a->name, why);
    for (int i = 0; i < n; i++) {
        task *t = loom__hmap_get(&h->tasks, ids[i], 16);
        if (!t || t->state != T_RUNNING) continue;
        loom__head_release_node_resources(h, t);
        if (t->attempts < a->max_task_retries) {
            loom__head_history_add(t, t->node, msg);
            loom__head_actor_requeue_call(h, a, t);
        } else {
            t->state = T_QUEUED;
            a->calls_failed++;
            char full[20000];
            loom__head_task_fail(h, t, LOOM_EACTOR, loom__head_with_history(t, msg, full, sizeof(full)));
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
    loom__head_queue_task(h, ct);
    loom__head_persist_task(h, ct);
}

/* The actor's process or node died: restart it if it may, else it is dead. */
void loom__head_actor_lost(head *h, actor *a, const char *why)
{
    if (a->state == A_ALIVE && (a->max_restarts < 0 || a->restarts < (uint32_t)a->max_restarts)) {
        actor_restart(h, a, why);
        return;
    }
    char msg[800];
    if (a->restarts) {
        loom__snprintf(msg, sizeof(msg), "%s (after %u restarts)", why, a->restarts);
        why = msg;
    }
    actor_die(h, a, why);
}

/* Forget dead actors beyond the newest few hundred (listing keeps those). */
void loom__head_actors_gc(head *h)
{
    while (h->dead_actors > 256) {
        actor *oldest = NULL;
        size_t it = 0;
        void *v;
        while (loom__hmap_next(&h->actors, &it, &v)) {
            actor *a = v;
            if (a->state == A_DEAD && a->ncalls == 0 && (!oldest || a->t_died < oldest->t_died)) oldest = a;
        }
        if (!oldest) return;
        loom__hmap_del(&h->actors, oldest->id, 16);
        h->dead_actors--;
        obj *o = oldest->ready_obj;
        free(oldest->name); free(oldest->cls); free(oldest->calls); free(oldest->error);
        free(oldest);
        if (o && loom__head_obj_get(h, &o->ref) == o) loom__head_obj_unref(h, o);
    }
}

/* Tell the actor's node, if alive, to end the actor's process. */
static void send_actor_kill(head *h, const actor *a)
{
    node *n = loom__head_node_get(h, a->node);
    if (!n || !n->alive) return;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_ACTOR_KILL, 0);
    loom__ref_make(a->id, 0, &m.ref);
    loom__head_send_to(h, n->ident, n->identlen, &m);
}

/* Kill an actor: its node ends its process. */
void loom__head_actor_kill(head *h, actor *a, const char *why)
{
    if (a->state == A_DEAD) return;
    if (a->state == A_ALIVE) send_actor_kill(h, a);
    actor_die(h, a, why);
    loom__head_actors_gc(h);
}

/* Its creation task finished well: the actor is alive on that node and keeps
 * the resources the task was given. */
void loom__head_actor_created(head *h, task *t)
{
    actor *a = loom__hmap_get(&h->actors, t->id, 16);
    if (!a || a->state != A_PENDING) return;
    a->state = A_ALIVE;
    a->node = t->node;
    a->t_ready = loom__now_ms();
    a->grant = t->grant;
    t->grant = NULL;
    /* the grant's accounting goes with it: charged when the actor gives it back */
    free(a->usage_label);
    a->usage_label = a->grant ? strdup(t->job && t->job->label ? t->job->label : "") : NULL;
    a->usage_since = t->t_start;
    a->bundle = t->bundle;
    a->has_pg = t->spec.has_pg;
    memcpy(a->pg, t->spec.pg, 16);
    if (!a->req) a->req = malloc(sizeof(loom_request));
    if (a->req) loom__head_spec_request(&t->spec, a->req);
    if (a->max_restarts != 0) a->deps_held = 1; /* loom__head_on_task_done keeps them for restarts */
    loom__head_actor_dispatch(h, a);
}

void loom__head_actor_creation_failed(head *h, task *t, int code, const char *msg)
{
    actor *a = loom__hmap_get(&h->actors, t->id, 16);
    if (!a) return;
    char why[1200];
    loom__snprintf(why, sizeof(why), "%s%s", code == LOOM_ECANCELLED ? "" : "its init failed: ", msg);
    actor_die(h, a, why);
    loom__head_actors_gc(h);
}

/* Apply fn to every actor match() accepts; in batches, since fn can change
 * the table. */

void loom__head_actors_apply(head *h, actor_match_fn match, const void *arg, actor_fn fn, const char *why)
{
    actor *victims[256];
    int nv;
    do {
        nv = 0;
        size_t it = 0;
        void *v;
        while (loom__hmap_next(&h->actors, &it, &v) && nv < 256)
            if (match(v, arg)) victims[nv++] = v;
        for (int i = 0; i < nv; i++) fn(h, victims[i], why);
    } while (nv == 256);
}

int loom__head_alive_on_node(const actor *a, const void *arg)
{
    return a->state == A_ALIVE && a->node == *(const uint32_t *)arg;
}

static int owned_by(const actor *a, const void *arg)
{
    return a->state != A_DEAD && a->owner == *(const uint32_t *)arg && !a->detached;
}

int loom__head_in_pg(const actor *a, const void *arg)
{
    return a->state != A_DEAD && a->has_pg && !memcmp(a->pg, arg, 16);
}

void loom__head_actors_on_dead_node(head *h, node *n, const char *msg)
{
    loom__head_actors_apply(h, loom__head_alive_on_node, &n->id, loom__head_actor_lost, msg);
    loom__head_actors_gc(h);
}

void loom__head_kill_actors_of(head *h, uint32_t client_id)
{
    loom__head_actors_apply(h, owned_by, &client_id, loom__head_actor_kill, "the client that created it disconnected");
}

/* arg: the head; a node that will not rejoin (dead before a restart) */
int loom__head_alive_on_gone_node(const actor *a, const void *arg)
{
    node *on = loom__head_node_get((head *)arg, a->node);
    return a->state == A_ALIVE && (!on || !on->awaiting);
}

static int restartable_on_node(const actor *a, const void *arg)
{
    return loom__head_alive_on_node(a, arg) && (a->max_restarts < 0 || a->restarts < (uint32_t)a->max_restarts);
}

/* Move an actor off a draining node: end its process there and restart it
 * elsewhere (its calls in flight follow its max_task_retries). */
static void actor_move(head *h, actor *a, const char *why)
{
    send_actor_kill(h, a);
    actor_restart(h, a, why);
}

/* `loom drain NODE`: place nothing new on the node; what runs there
 * finishes; actors that may restart move to other nodes.  The node reads
 * "drained" in `loom status` once nothing runs there; stopping its daemon is
 * then safe (what only it held is rebuilt from lineage). */
void loom__head_on_drain(head *h, client *c, loom_msg *m)
{
    node *n = loom__head_node_get(h, m->node);
    if (!n || !n->alive) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such live node");
        return;
    }
    if (!n->draining) {
        n->draining = 1;
        h->nodes_epoch++;
        LOG_INFO("node %u (%s) is draining", n->id, n->info.hostname);
        char why[128];
        loom__snprintf(why, sizeof(why), "node %u is draining", n->id);
        loom__head_actors_apply(h, restartable_on_node, &n->id, actor_move, why);
    }
    loom__head_reply_ok(h, c, m->req);
    loom__head_schedule(h);
}

void loom__head_on_actor_lookup(head *h, client *c, loom_msg *m)
{
    actor *a = loom__head_actor_by_name(h, m->name);
    if (!a) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no live actor has that name");
        return;
    }
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_REF, m->req);
    loom__ref_make(a->id, 0, &r.ref);
    loom__head_send_to(h, c->ident, c->identlen, &r);
}

void loom__head_on_actor_kill(head *h, client *c, loom_msg *m)
{
    actor *a = loom__hmap_get(&h->actors, m->ref.id, 16);
    if (!a) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such actor");
        return;
    }
    loom__head_actor_kill(h, a, "killed");
    loom__head_reply_ok(h, c, m->req);
    loom__head_schedule(h);
}

void loom__head_on_actor_died(head *h, client *c, loom_msg *m)
{
    actor *a = loom__hmap_get(&h->actors, m->ref.id, 16);
    if (!a || a->state != A_ALIVE || a->node != c->node_id) return;
    loom__head_actor_lost(h, a, m->text[0] ? m->text : "its process exited");
    loom__head_actors_gc(h);
    loom__head_schedule(h);
}
