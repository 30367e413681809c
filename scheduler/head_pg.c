/* scheduler/head_pg.c — placement groups: reserving every bundle at once,
 * retrying pending groups, creation and removal (with their tasks and
 * actors). */
#include <stdlib.h>
#include <string.h>
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

/* ---- placement groups --------------------------------------------------- */

static void pg_free(head *h, pgroup *g)
{
    loom__hmap_del(&h->pgs, g->id, 16);
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
    if (loom__pg_place(pools, n, g->breq, g->nb, g->strategy, 0, assign_to, why, sizeof(why)) == 0) {
        int b = 0;
        for (; b < g->nb; b++)
            if (loom__pool_carve(&nodes[assign_to[b]]->pool, &g->breq[b], &g->bpool[b], &g->bgrant[b])) break;
        if (b < g->nb) { /* cannot happen when pg_place said yes; undo */
            while (b-- > 0) loom__pool_give(&nodes[assign_to[b]]->pool, &g->breq[b], &g->bgrant[b]);
            goto out;
        }
        for (b = 0; b < g->nb; b++) g->bnode[b] = nodes[assign_to[b]]->id;
        g->state = PG_CREATED;
        g->t_placed = loom__now_ms();
        h->pending_pgs--;
        changed = 1;
        LOG_INFO("placement group %s placed (%d bundles, %s)", g->name, g->nb, loom__pg_strategy_name(g->strategy));
    } else if (loom__pg_place(pools, n, g->breq, g->nb, g->strategy, 1, assign_to, why, sizeof(why)) != 0) {
        char msg[700];
        g->state = PG_INFEASIBLE;
        g->reason = strdup(why);
        h->pending_pgs--;
        changed = 1;
        loom__snprintf(msg, sizeof(msg), "placement group '%s' is infeasible: %s", g->name, why);
        loom__head_note_infeasible(h, msg);
        LOG_WARN("%s", msg);
    }
out:
    free(pools);
    free(nodes);
    free(assign_to);
    return changed;
}

void loom__head_pg_retry_pending(head *h)
{
    size_t it = 0;
    void *v;
    while (h->pending_pgs && loom__hmap_next(&h->pgs, &it, &v)) pg_try_place(h, v);
}

void loom__head_on_pg_create(head *h, client *c, loom_msg *m)
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
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
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
            loom__snprintf(r->res[r->nres].name, sizeof(r->res[0].name), "%s", wb->res[i].name);
            r->res[r->nres++].amount = wb->res[i].amount;
        }
        char err[256];
        if (loom__request_check(r, err, sizeof(err))) {
            char msg[300];
            loom__snprintf(msg, sizeof(msg), "bundle %d: %s", b, err);
            free(g->breq); free(g->bpool); free(g->bgrant); free(g->bnode); free(g);
            loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_EINVAL, msg);
            return;
        }
    }
    loom__random_bytes(g->id, 16);
    g->name = loom__head_dupstr(m->name[0] ? m->name : "pg");
    g->strategy = (int)m->strategy;
    g->owner = c->id;
    g->t_created = loom__now_ms();
    if (loom__hmap_put(&h->pgs, g->id, 16, g)) {
        g->state = PG_REMOVED;
        pg_free(h, g);
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    h->pending_pgs++;
    pg_try_place(h, g);
    loom_msg r;
    loom__msg_init(&r, LOOM_MSG_REF, m->req);
    loom__ref_make(g->id, 0, &r.ref);
    loom__head_send_to(h, c->ident, c->identlen, &r);
    loom__head_schedule(h);
}

/* Remove a group: cancel its tasks, kill its actors, give its bundles back. */
static void pg_remove(head *h, pgroup *g)
{
    uint8_t (*ids)[16] = NULL;
    int n = 0, cap = 0;
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->state < T_DONE && t->spec.has_pg && !memcmp(t->spec.pg, g->id, 16) &&
            t->spec.actor_op != LOOM_ACTOR_CALL && !loom__head_grow_array((void **)&ids, &cap, n + 1, 16))
            memcpy(ids[n++], t->id, 16);
    }
    for (int i = 0; i < n; i++) {
        task *t = loom__hmap_get(&h->tasks, ids[i], 16);
        if (t) loom__head_cancel_task(h, t);
    }
    free(ids);
    loom__head_actors_apply(h, loom__head_in_pg, g->id, loom__head_actor_kill, "its placement group was removed");
    if (g->state == PG_CREATED)
        for (int b = 0; b < g->nb; b++) {
            node *nd = loom__head_node_get(h, g->bnode[b]);
            if (nd && nd->alive) loom__pool_give(&nd->pool, &g->breq[b], &g->bgrant[b]);
        }
    if (g->state == PG_PENDING) h->pending_pgs--;
    g->state = PG_REMOVED;
    pg_free(h, g);
}

void loom__head_on_pg_remove(head *h, client *c, loom_msg *m)
{
    pgroup *g = loom__hmap_get(&h->pgs, m->ref.id, 16);
    if (!g) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such placement group");
        return;
    }
    pg_remove(h, g);
    loom__head_reply_ok(h, c, m->req);
    loom__head_schedule(h);
}

void loom__head_remove_pgs_of(head *h, uint32_t client_id)
{
    pgroup *victims[64];
    int nv;
    do {
        nv = 0;
        size_t it = 0;
        void *v;
        while (loom__hmap_next(&h->pgs, &it, &v) && nv < 64)
            if (((pgroup *)v)->owner == client_id) victims[nv++] = v;
        for (int i = 0; i < nv; i++) pg_remove(h, victims[i]);
    } while (nv == 64);
}
