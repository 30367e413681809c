/* scheduler/head_inspect.c — inspection: the answers to STATUS, ACTORS,
 * PG_INFO, JOB_INFO, JOBS, JOB_REF and JOB_DELETE (msgpack maps the CLI and
 * the gateway turn into text and JSON). */
#include <stdlib.h>
#include <string.h>
#include "runtime/audit.h"
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

static const char *task_state_names[] = {"waiting", "queued", "running", "finished", "failed"};
static const char *actor_state_names[] = {"pending", "alive", "dead"};
static const char *pg_state_names[] = {"pending", "created", "infeasible", "removed"};

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
    loom__msg_init(&r, LOOM_MSG_INFO, req);
    r.data.p = loom_pack_data(p);
    r.data.n = loom_pack_size(p);
    loom__head_send_to(h, c->ident, c->identlen, &r);
}

static int node_hosts_actors(head *h, uint32_t node_id)
{
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->actors, &it, &v))
        if (loom__head_alive_on_node(v, &node_id)) return 1;
    return 0;
}

static int node_cmp(const void *a, const void *b)
{
    const node *x = *(node *const *)a, *y = *(node *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

void loom__head_on_status(head *h, client *c, loom_msg *m)
{
    loom_pack *p = loom_pack_new();
    if (!p) return;
    uint64_t by_state[5] = {0};
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->tasks, &it, &v)) by_state[((task *)v)->state]++;
    loom_pack_map(p, 7);
    node **sorted = calloc(h->nodes.count + 1, sizeof(node *));
    size_t nn = 0;
    it = 0;
    while (sorted && loom__hmap_next(&h->nodes, &it, &v)) sorted[nn++] = v;
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
        pack_kv_f64(p, "utilization", loom__pool_utilization(&n->pool));
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
    while (loom__hmap_next(&h->actors, &it, &v)) by_actor_state[((actor *)v)->state]++;
    loom_pack_cstr(p, "actors");
    loom_pack_map(p, 3);
    for (int a = 0; a < 3; a++) pack_kv_u64(p, actor_state_names[a], by_actor_state[a]);
    uint64_t by_pg_state[4] = {0};
    it = 0;
    while (loom__hmap_next(&h->pgs, &it, &v)) by_pg_state[((pgroup *)v)->state]++;
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
    loom__hex_encode(id, 16, hex);
    pack_kv_str(p, k, hex);
}

void loom__head_on_actors(head *h, client *c, loom_msg *m)
{
    loom_pack *p = loom_pack_new();
    if (!p) return;
    loom_pack_array(p, (uint32_t)h->actors.count);
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->actors, &it, &v)) {
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
            loom__hex_encode(a->pg, 16, hex);
            loom_pack_cstr(p, hex);
        } else {
            loom_pack_nil(p);
        }
    }
    send_info(h, c, m->req, p);
    loom_pack_destroy(&p);
}

void loom__head_on_pg_info(head *h, client *c, loom_msg *m)
{
    pgroup *g = loom__hmap_get(&h->pgs, m->ref.id, 16);
    if (!g) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such placement group (removed?)");
        return;
    }
    loom_pack *p = loom_pack_new();
    if (!p) return;
    loom_pack_map(p, 6);
    pack_hex16(p, "id", g->id);
    pack_kv_str(p, "name", g->name);
    pack_kv_str(p, "strategy", loom__pg_strategy_name(g->strategy));
    pack_kv_str(p, "state", pg_state_names[g->state]);
    pack_kv_str(p, "reason", g->reason);
    loom_pack_cstr(p, "bundles");
    loom_pack_array(p, (uint32_t)g->nb);
    for (int b = 0; b < g->nb; b++) {
        char ids[128] = "";
        if (g->state == PG_CREATED) {
            node *nd = loom__head_node_get(h, g->bnode[b]);
            if (nd) loom__grant_gpu_ids(&nd->pool, &g->bgrant[b], ids, sizeof(ids));
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
    job *j = loom__hmap_get(&h->jobs, m->job, strlen(m->job));
    if (!j) loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such job");
    return j;
}

void loom__head_on_job_info(head *h, client *c, loom_msg *m)
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
        loom__ref_make(t->id, 0, &r);
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

/* Does a job's label "USER[|PROJECT]" match a filter: the same label, or
 * the user alone ("alice" lists "alice|proj-x" too)? */
static int label_matches(const char *label, const char *want)
{
    if (!label) return 0;
    size_t n = strlen(want);
    return !strncmp(label, want, n) && (label[n] == 0 || (label[n] == '|' && !strchr(want, '|')));
}

/* A page of the jobs (with label m->text, if given), newest first. */
void loom__head_on_jobs(head *h, client *c, loom_msg *m)
{
    job **all = malloc((h->jobs.count ? h->jobs.count : 1) * sizeof(job *));
    loom_pack *p = loom_pack_new();
    if (!all || !p) {
        free(all);
        loom_pack_destroy(&p);
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    size_t n = 0, it = 0;
    void *v;
    while (loom__hmap_next(&h->jobs, &it, &v)) {
        job *j = v;
        if (!m->label || !m->label[0] || label_matches(j->label, m->label)) all[n++] = j;
    }
    qsort(all, n, sizeof(job *), job_newer);
    uint64_t off = m->offset < n ? m->offset : n, limit = m->limit ? (m->limit < 1000 ? m->limit : 1000) : 100;
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

void loom__head_on_job_ref(head *h, client *c, loom_msg *m)
{
    job *j = find_job(h, c, m);
    if (!j) return;
    for (int i = 0; i < j->ntasks; i++) {
        task *t = j->tasks[i];
        if (!t || strcmp(t->spec.name, m->task_name)) continue;
        if (m->output >= (uint64_t)(t->nouts - 1) && m->output != LOG_INDEX) {
            loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such output");
            return;
        }
        loom_msg r;
        loom__msg_init(&r, LOOM_MSG_REF, m->req);
        loom__ref_make(t->id, (uint32_t)m->output, &r.ref);
        loom__head_send_to(h, c->ident, c->identlen, &r);
        return;
    }
    loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOTFOUND, "no such task in the job");
}

void loom__head_on_job_delete(head *h, client *c, loom_msg *m)
{
    job *j = find_job(h, c, m);
    if (!j) return;
    /* Work from task ids, never from task pointers kept across a call that
     * can free tasks: cancelling one task fails (and may free) its
     * dependents in the job, and dropping a task's last output frees it. */
    int detached = j->detached, n = 0;
    uint8_t (*ids)[16] = malloc((size_t)(j->ntasks ? j->ntasks : 1) * 16);
    if (!ids) {
        loom__head_reply_error(h, c->ident, c->identlen, m->req, LOOM_ENOMEM, "out of memory");
        return;
    }
    for (int i = 0; i < j->ntasks; i++)
        if (j->tasks[i]) memcpy(ids[n++], j->tasks[i]->id, 16);
    char who[128];
    loom__snprintf(who, sizeof(who), "%.*s", (int)strcspn(j->label ? j->label : "", "|"), j->label ? j->label : "");
    loom__audit(who[0] ? who : "cluster", "job.delete", j->id, j->name);
    loom__head_job_free(h, j); /* clears every task's job pointer */
    for (int i = 0; i < n; i++) {
        task *t = loom__hmap_get(&h->tasks, ids[i], 16);
        if (t) loom__head_cancel_task(h, t);
    }
    /* a detached job held one ref to each output; the task goes with the
     * last, so look it up again after each */
    task *t;
    for (int i = 0; detached && i < n; i++)
        for (int k = 0; (t = loom__hmap_get(&h->tasks, ids[i], 16)) && k < t->nouts; k++) {
            obj *o = t->outs[k];
            if (o && !o->is_log) loom__head_obj_unref(h, o);
        }
    free(ids);
    loom__head_reply_ok(h, c, m->req);
}
