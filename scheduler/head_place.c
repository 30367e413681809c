/* scheduler/head_place.c — resources and placement: what a task asks for,
 * which node (or placement-group bundle) it runs on now, why it never could
 * (infeasible), handing it to its node (ASSIGN) and the scheduling pass over
 * the ready queue.  The pool arithmetic itself is scheduler/pool.c. */
#include <stdlib.h>
#include <string.h>
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

/* ---- resources and placement ------------------------------------------- */

/* What a task asks for, as the pool arithmetic wants it. */
void loom__head_spec_request(const loom_wire_task *s, loom_request *r)
{
    memset(r, 0, sizeof(*r));
    r->cpus = s->num_cpus;
    r->memory = s->memory;
    r->gpus = s->num_gpus;
    r->gpu_memory = s->gpu_memory;
    for (uint32_t i = 0; i < s->nres && i < LOOM_POOL_MAX_RES; i++) {
        loom__snprintf(r->res[r->nres].name, sizeof(r->res[0].name), "%s", s->res[i].name);
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

void loom__head_labels_cache_free(head *h)
{
    for (uint32_t i = 0; i < h->labels_ok_nfor; i++) {
        free(h->labels_ok_for[i].key);
        free(h->labels_ok_for[i].value);
    }
    free(h->labels_ok_for);
    free(h->labels_ok);
    h->labels_ok_for = NULL;
    h->labels_ok = NULL;
    h->labels_ok_nfor = 0;
    h->labels_ok_n = 0;
}

static int same_label_set(const loom_wire_label *a, uint32_t na, const loom_wire_label *b, uint32_t nb)
{
    if (na != nb) return 0;
    for (uint32_t i = 0; i < na; i++)
        if (strcmp(a[i].key, b[i].key) || strcmp(a[i].value, b[i].value)) return 0;
    return 1;
}

/* For each listed node, whether it has t's labels: from the cache when it
 * is for the same label set and nothing was listed or relabelled since,
 * else computed and kept.  NULL when memory ran out (the caller matches
 * labels itself). */
static const uint8_t *labels_ok(head *h, const task *t)
{
    if (h->labels_ok && h->labels_ok_n == h->nnode_list && h->labels_ok_version == h->labels_version &&
        same_label_set(h->labels_ok_for, h->labels_ok_nfor, t->spec.labels, t->spec.nlabels))
        return h->labels_ok;
    loom__head_labels_cache_free(h);
    uint8_t *ok = malloc((size_t)h->nnode_list + 1);
    loom_wire_label *copy = calloc(t->spec.nlabels, sizeof(*copy));
    if (!ok || !copy) {
        free(ok);
        free(copy);
        return NULL;
    }
    h->labels_ok_for = copy;
    for (uint32_t i = 0; i < t->spec.nlabels; i++) {
        copy[i].key = strdup(t->spec.labels[i].key);
        copy[i].value = strdup(t->spec.labels[i].value);
        h->labels_ok_nfor++;
        if (!copy[i].key || !copy[i].value) {
            free(ok);
            loom__head_labels_cache_free(h);
            return NULL;
        }
    }
    for (int i = 0; i < h->nnode_list; i++) ok[i] = (uint8_t)labels_match(h->node_list[i], &t->spec);
    h->labels_ok = ok;
    h->labels_ok_n = h->nnode_list;
    h->labels_ok_version = h->labels_version;
    return ok;
}

/* Keep the latest reasons requests were infeasible, for `loom status`. */
void loom__head_note_infeasible(head *h, const char *msg)
{
    free(h->infeasible[h->ninfeasible_next]);
    h->infeasible[h->ninfeasible_next] = strdup(msg);
    h->ninfeasible_next = (h->ninfeasible_next + 1) % 16;
    h->ninfeasible++;
}

static node *place_in_pg(head *h, task *t, const loom_request *r, loom_pool **pool, int *bundle)
{
    pgroup *g = loom__hmap_get(&h->pgs, t->spec.pg, 16);
    if (!g || g->state != PG_CREATED) return NULL;
    int lo = t->spec.bundle >= 0 ? t->spec.bundle : 0;
    int hi = t->spec.bundle >= 0 ? t->spec.bundle + 1 : g->nb;
    for (int b = lo; b < hi && b < g->nb; b++) {
        node *n = loom__head_node_get(h, g->bnode[b]);
        if (!n || !n->alive || !loom__pool_fits(&g->bpool[b], r)) continue;
        *pool = &g->bpool[b];
        *bundle = b;
        return n;
    }
    return NULL;
}

/* Choose where t runs now: a node, and the pool it takes from (the node's,
 * or a bundle of its placement group).  NULL when nothing fits now. */
node *loom__head_place(head *h, task *t, const loom_request *r, loom_pool **pool, int *bundle)
{
    *bundle = -1;
    if (t->spec.has_pg) return place_in_pg(h, t, r, pool, bundle);
    const uint8_t *lok = t->spec.nlabels ? labels_ok(h, t) : NULL;
    for (int i = 0; i < h->nnode_list; i++) {
        node *n = h->node_list[i];
        loom_candidate *c = &h->cands[i];
        c->node_id = n->id;
        c->pool = &n->pool;
        c->eligible = n->alive && !n->draining && !n->reconciling &&
                      (!t->spec.nlabels || (lok ? lok[i] : labels_match(n, &t->spec)));
        c->local_bytes = c->eligible && t->spec.nargs ? loom__head_local_bytes(h, t, n->id) : 0;
    }
    int k = loom__choose_node(h->cands, h->nnode_list, r, (int)t->spec.strategy, t->spec.affinity_node,
                              t->spec.soft, &h->rr);
    if (k < 0) return NULL;
    *pool = &h->node_list[k]->pool;
    return h->node_list[k];
}

/* Whether t can never run as the cluster stands (1, with the reason in why)
 * or may run once resources free up (0).  With no live node the answer is 0:
 * daemons may still be joining. */
int loom__head_infeasible_reason(head *h, task *t, const loom_request *r, char *why, size_t whylen)
{
    char one[256];
    why[0] = 0;
    if (t->spec.has_pg) {
        pgroup *g = loom__hmap_get(&h->pgs, t->spec.pg, 16);
        if (!g) {
            loom__snprintf(why, whylen, "its placement group does not exist (removed?)");
            return 1;
        }
        if (g->state == PG_INFEASIBLE) {
            loom__snprintf(why, whylen, "its placement group is infeasible: %s", g->reason ? g->reason : "");
            return 1;
        }
        if (g->state != PG_CREATED) return 0;
        if (t->spec.bundle >= g->nb) {
            loom__snprintf(why, whylen, "bundle %d does not exist (the placement group has %d)", t->spec.bundle, g->nb);
            return 1;
        }
        int lo = t->spec.bundle >= 0 ? t->spec.bundle : 0, hi = t->spec.bundle >= 0 ? t->spec.bundle + 1 : g->nb;
        for (int b = lo; b < hi; b++)
            if (loom__pool_could_fit(&g->bpool[b], r, one, sizeof(one))) return 0;
        loom__snprintf(why, whylen, "it needs more than %s of its placement group holds (%s)",
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
        if (loom__pool_could_fit(&n->pool, r, one, sizeof(one))) return 0;
        if (used + 64 < whylen) {
            loom__snprintf(why + used, whylen - used, "%snode %u %s", used ? "; " : "", n->id, one);
            used = strlen(why);
        }
    }
    if (!live) return 0;
    if (t->spec.strategy == LOOM_SCHED_NODE && !t->spec.soft) {
        node *n = loom__head_node_get(h, t->spec.affinity_node);
        if (n && n->alive && n->draining) {
            loom__snprintf(why, whylen, "it must run on node %u, which is draining", t->spec.affinity_node);
            return 1;
        }
        if (!n || !n->alive) {
            loom__snprintf(why, whylen, "it must run on node %u, which is %s", t->spec.affinity_node,
                           n ? "dead" : "not in the cluster");
            return 1;
        }
        if (!labels_match(n, &t->spec)) {
            loom__snprintf(why, whylen, "it must run on node %u, which lacks the labels it asks for",
                           t->spec.affinity_node);
            return 1;
        }
    }
    if (!labeled) {
        loom__snprintf(why, whylen, "no node has the labels");
        for (uint32_t i = 0; i < t->spec.nlabels && strlen(why) + 64 < whylen; i++) {
            used = strlen(why);
            loom__snprintf(why + used, whylen - used, " %s=%s", t->spec.labels[i].key, t->spec.labels[i].value);
        }
    }
    return 1;
}

/* Give back what t (or an actor) took: to its bundle while its placement
 * group stands, else to its node. */
void loom__head_give_grant(head *h, uint32_t node_id, const uint8_t *pg, int bundle, const loom_request *r,
                           loom_grant **g)
{
    if (!*g) return;
    loom_pool *pool = NULL;
    if (bundle >= 0 && pg) {
        pgroup *grp = loom__hmap_get(&h->pgs, pg, 16);
        if (grp && grp->state == PG_CREATED && bundle < grp->nb) pool = &grp->bpool[bundle];
    } else {
        node *n = loom__head_node_get(h, node_id);
        if (n && n->alive) pool = &n->pool;
    }
    if (pool) loom__pool_give(pool, r, *g);
    free(*g);
    *g = NULL;
}

/* Resolve an argument for ASSIGN: inline values travel in the message, others
 * as refs with the addresses of the nodes holding them. */
static void resolve_arg(head *h, loom_arena *a, loom_wire_arg *dst, const loom_wire_arg *src)
{
    *dst = *src;
    if (src->kind != LOOM_WARG_REF) return;
    obj *o = loom__head_obj_get(h, &src->ref);
    if (!o) return;
    dst->size = o->size;
    if (o->value) {
        dst->kind = LOOM_WARG_VALUE;
        dst->value.p = o->value;
        dst->value.n = o->size;
        return;
    }
    dst->locs = loom__arena_alloc(a, (size_t)(o->nlocs ? o->nlocs : 1) * sizeof(loom_wire_loc));
    if (!dst->locs) return;
    for (int i = 0; i < o->nlocs; i++) {
        node *n = loom__head_node_get(h, o->locs[i]);
        if (!n || (!n->alive && !n->awaiting)) continue;
        dst->locs[dst->nlocs].node = n->id;
        dst->locs[dst->nlocs].addr = n->info.data_addr;
        dst->nlocs++;
    }
}

/* Hand t to node n, taking r from pool (NULL for an actor call: the actor
 * holds the resources). */
void loom__head_assign(head *h, task *t, node *n, const loom_request *r, loom_pool *pool, int bundle)
{
    loom_arena a = {0};
    loom_wire_task wt = t->spec;
    char gpu_ids[128] = "";
    wt.args = t->spec.nargs ? loom__arena_alloc(&a, t->spec.nargs * sizeof(loom_wire_arg)) : NULL;
    if (t->spec.nargs && !wt.args) {
        loom__arena_free(&a);
        return;
    }
    resolve_arg(h, &a, &wt.lib, &t->spec.lib);
    if (t->spec.kind == LOOM_TASK_FUNCTION && t->spec.actor_op != LOOM_ACTOR_CALL &&
        wt.lib.kind == LOOM_WARG_VALUE && wt.lib.value.n == 0) {
        /* an empty object cannot be a library, and the daemon would refuse
         * the ASSIGN (leaving the task running forever): fail it here */
        loom__arena_free(&a);
        loom__head_task_fail(h, t, LOOM_ETASK, "cannot load the task library: it is empty (0 bytes)");
        return;
    }
    if (pool) {
        t->grant = malloc(sizeof(loom_grant));
        if (!t->grant || loom__pool_take(pool, r, t->grant)) {
            free(t->grant);
            t->grant = NULL;
            loom__arena_free(&a);
            loom__head_task_fail(h, t, LOOM_ENOMEM, "cannot take the resources the task was placed with");
            return;
        }
        t->bundle = bundle;
        loom__grant_gpu_ids(pool, t->grant, gpu_ids, sizeof(gpu_ids));
        loom__head_usage_begin(h, t, r);
    }
    wt.gpu_ids = gpu_ids;
    for (uint32_t i = 0; i < t->spec.nargs; i++) resolve_arg(h, &a, &wt.args[i], &t->spec.args[i]);
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_ASSIGN, 0);
    m.tasks = &wt;
    m.ntasks = 1;
    loom__head_send_to(h, n->ident, n->identlen, &m);
    loom__arena_free(&a);
    t->node = n->id;
    t->t_start = loom__now_ms();
    n->running++;
    loom__head_task_set_state(h, t, T_RUNNING);
}

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

/* Tasks that found no node in this pass, by what decided it: their request,
 * labels and strategy.  A pass only takes resources, so a later task of the
 * same shape cannot find one either and is skipped without looking at every
 * node again (with a thousand nodes and a queue of like tasks, that look
 * was nearly all of the head's time). */
#define MISSED_SHAPES 8
typedef struct missed_shapes {
    const task *t[MISSED_SHAPES];
    loom_request r[MISSED_SHAPES];
    int n;
} missed_shapes;

static int shape_applies(const task *t)
{
    return !t->spec.has_pg && t->spec.actor_op != LOOM_ACTOR_CALL;
}

static int same_shape(const task *a, const loom_request *ra, const task *b, const loom_request *rb)
{
    if (ra->cpus != rb->cpus || ra->memory != rb->memory || ra->gpus != rb->gpus ||
        ra->gpu_memory != rb->gpu_memory || ra->nres != rb->nres || a->spec.strategy != b->spec.strategy ||
        a->spec.affinity_node != b->spec.affinity_node || a->spec.soft != b->spec.soft ||
        a->spec.nlabels != b->spec.nlabels)
        return 0;
    for (int i = 0; i < ra->nres; i++)
        if (ra->res[i].amount != rb->res[i].amount || strcmp(ra->res[i].name, rb->res[i].name)) return 0;
    for (uint32_t i = 0; i < a->spec.nlabels; i++)
        if (strcmp(a->spec.labels[i].key, b->spec.labels[i].key) ||
            strcmp(a->spec.labels[i].value, b->spec.labels[i].value))
            return 0;
    return 1;
}

static int shape_missed(const missed_shapes *m, const task *t, const loom_request *r)
{
    if (!shape_applies(t)) return 0;
    for (int i = 0; i < m->n; i++)
        if (same_shape(m->t[i], &m->r[i], t, r)) return 1;
    return 0;
}

static void shape_note(missed_shapes *m, const task *t, const loom_request *r)
{
    if (!shape_applies(t) || m->n == MISSED_SHAPES || shape_missed(m, t, r)) return;
    m->t[m->n] = t;
    m->r[m->n++] = *r;
}

void loom__head_schedule(head *h)
{
    if (h->pending_pgs) loom__head_pg_retry_pending(h);
    task *prev = NULL, *t = h->q_head;
    int misses = 0, quota_waits = 0;
    double missed_cpus = -1; /* the smallest plain request that found no node, this pass */
    uint64_t missed_mem = 0;
    missed_shapes shapes = {.n = 0};
    while (t && misses < 256) {
        task *next = t->qnext;
        if (t->state != T_QUEUED) { /* cancelled while queued: unlink */
            unlink_queued(h, prev, t);
            loom__head_task_maybe_free(h, t);
            t = next;
            continue;
        }
        loom_request r;
        loom__head_spec_request(&t->spec, &r);
        int plain = plain_request(t, &r);
        if (t->feasible_epoch == h->nodes_epoch &&
            ((plain && missed_cpus >= 0 && r.cpus >= missed_cpus && r.memory >= missed_mem) ||
             shape_missed(&shapes, t, &r))) {
            misses++;
            prev = t;
            t = next;
            continue;
        }
        char why[1024];
        if (t->spec.actor_op != LOOM_ACTOR_CALL && !loom__head_usage_allows(h, t, &r, why, sizeof(why))) {
            /* over its user's or project's quota: it waits; bounded like misses */
            if (++quota_waits > 4096) break;
            prev = t;
            t = next;
            continue;
        }
        loom_pool *pool = NULL;
        int bundle = -1;
        node *n = loom__head_place(h, t, &r, &pool, &bundle);
        /* whether it could ever run: asked again only when nodes went away */
        if (!n && t->feasible_epoch != h->nodes_epoch && loom__head_infeasible_reason(h, t, &r, why, sizeof(why))) {
            /* no node could ever run it: fail it (LOOM_EINFEASIBLE) with the
             * reason rather than leave it queued forever */
            unlink_queued(h, prev, t);
            char msg[1400];
            loom__snprintf(msg, sizeof(msg), "task '%s' is infeasible: %s", t->spec.name, why);
            loom__head_note_infeasible(h, msg);
            LOG_WARN("%s", msg);
            loom__head_task_fail(h, t, LOOM_EINFEASIBLE, msg);
            t = next;
            continue;
        }
        if (!n) {
            t->feasible_epoch = h->nodes_epoch;
            shape_note(&shapes, t, &r);
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
        if (t->spec.actor_op == LOOM_ACTOR_NONE && !loom__head_deps_ready(h, t)) {
            loom__head_task_requeue(h, t); /* an argument was lost and is being rebuilt */
            t = next;
            continue;
        }
        loom__head_assign(h, t, n, &r, pool, bundle);
        t = next;
    }
}
