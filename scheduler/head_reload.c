/* scheduler/head_reload.c — reloading the head's tables from its state dir
 * (LMDB) after a restart: nodes (expected to rejoin), objects, tasks,
 * actors, keys and jobs. */
#include <stdlib.h>
#include <string.h>
#include "runtime/log.h"
#include "runtime/util.h"
#include "scheduler/head_internal.h"

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
    if (!host || !addr || loom_unpack_f64(&u, &cpus) || loom_unpack_bool(&u, &alive) || loom__head_node_get(h, id)) {
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
    nd->info.store_dir = loom__head_dupstr("");
    nd->info.spill_dir = loom__head_dupstr("");
    nd->info.num_cpus = cpus;
    loom_wire_node w = {.num_cpus = cpus};
    if (loom__head_node_init_resources(h, nd, &w) || loom__hmap_put(&h->nodes, &nd->id, sizeof(nd->id), nd)) {
        loom__head_node_info_free(&nd->info);
        free(nd);
        return 0;
    }
    nd->awaiting = alive;
    nd->last_seen = loom__now_ms();
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
        loom__head_obj_get(h, &ref)) {
        free(error);
        return 0;
    }
    obj *o = loom__head_obj_new(h, &ref);
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
        loom__head_obj_add_loc(o, (uint32_t)loc);
    }
    return 0;
}

/* qsort: tasks by their actor-call number (0 for other tasks) */
static int by_seq(const void *x, const void *y)
{
    const task *a = *(task *const *)x, *b = *(task *const *)y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int load_task(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    if (klen != 16 || loom__hmap_get(&h->tasks, key, 16)) return 0;
    loom_unpack u;
    loom_unpack_init(&u, val, vlen);
    uint32_t n;
    uint64_t state, node_id;
    int64_t code;
    loom_arena tmp = {0};
    loom_wire_task spec;
    char err[256];
    /* 6 fields; records written before actor calls kept their number have 5 */
    if (loom_unpack_array(&u, &n) || (n != 5 && n != 6) || loom__wire_unpack_task(&u, &tmp, &spec, err, sizeof(err)) ||
        loom_unpack_u64(&u, &state) || state > T_FAILED || loom_unpack_i64(&u, &code)) {
        loom__arena_free(&tmp);
        return 0;
    }
    char *error = unpack_cstr(&u);
    task *t = calloc(1, sizeof(*t));
    uint64_t seq = 0;
    if (!error || loom_unpack_u64(&u, &node_id) || (n == 6 && loom_unpack_u64(&u, &seq)) || !t ||
        loom__wire_task_copy(&t->arena, &t->spec, &spec)) {
        free(error);
        if (t) loom__arena_free(&t->arena);
        free(t);
        loom__arena_free(&tmp);
        return 0;
    }
    loom__arena_free(&tmp);
    memcpy(t->id, key, 16);
    t->state = (int)state;
    t->code = (int32_t)code;
    if (error[0]) t->error = error;
    else free(error);
    t->node = (uint32_t)node_id;
    t->seq = seq;
    t->bundle = -1;
    int nouts = 1 + (t->spec.kind == LOOM_TASK_COMMAND ? (int)t->spec.noutputs : 0);
    t->outs = calloc((size_t)nouts + 1, sizeof(obj *));
    if (!t->outs || loom__hmap_put(&h->tasks, t->id, 16, t)) {
        free(t->outs);
        free(t->error);
        loom__arena_free(&t->arena);
        free(t);
        return 0;
    }
    t->nouts = nouts + 1;
    for (int i = 0; i <= nouts; i++) {
        loom_ref r;
        loom__ref_make(t->id, i == nouts ? LOG_INDEX : (uint32_t)i, &r);
        obj *o = loom__head_obj_get(h, &r);
        if (!o) o = loom__head_obj_new(h, &r);
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
    actor *a = loom__head_actor_new_owned(h, t, 0);
    if (!a) return;
    a->state = t->state == T_DONE ? A_ALIVE : A_PENDING;
    a->node = t->node;
    if (a->state == A_ALIVE) {
        a->req = malloc(sizeof(loom_request));
        if (a->req) loom__head_spec_request(&t->spec, a->req);
        a->deps_held = a->max_restarts != 0;
    }
}

static void hold_deps(head *h, task *t)
{
    t->deps_held = 1;
    if (t->spec.kind == LOOM_TASK_FUNCTION && t->spec.actor_op != LOOM_ACTOR_CALL) {
        obj *o = loom__head_obj_get(h, &t->spec.lib.ref);
        if (o) o->refs++;
    }
    for (uint32_t i = 0; i < t->spec.nargs; i++) {
        if (t->spec.args[i].kind != LOOM_WARG_REF) continue;
        obj *o = loom__head_obj_get(h, &t->spec.args[i].ref);
        if (o) o->refs++;
    }
}

static int load_kv(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    head *h = arg;
    if (klen != 32 || loom__hmap_get(&h->kv, key, klen)) return 0;
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
    if (!e || !e->val || loom__hmap_put(&h->kv, key, klen, e)) {
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
    if (klen == 0 || klen >= LOOM_JOB_ID_LEN || loom__hmap_get(&h->jobs, key, klen)) return 0;
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
    j->t_submit = loom__now_ms();
    for (uint32_t i = 0; i < ntasks; i++) {
        const void *id;
        size_t idn;
        if (loom_unpack_bin(&u, &id, &idn)) break;
        task *t = idn == 16 ? loom__hmap_get(&h->tasks, id, 16) : NULL;
        if (!t || t->job) continue;
        t->job = j;
        j->tasks[j->ntasks++] = t;
        j->live++;
    }
    int64_t wall = 0;
    j->label = n == 6 ? unpack_cstr(&u) : NULL;
    if (n == 6 && j->label && loom_unpack_i64(&u, &wall) == 0) j->t_wall_ms = wall;
    if (!j->label) j->label = loom__head_dupstr("");
    loom__hmap_put(&h->jobs, j->id, strlen(j->id), j);
    loom__head_persist_job(h, j);
    return 0;
}

/* Rebuild the tables from the state dir: nodes wait for their daemons,
 * finished results stay, tasks that waited wait again, tasks that ran keep
 * running (their nodes say so when they rejoin, else they run again). */
void loom__head_load_tables(head *h)
{
    loom__headdb_foreach(h->db, HEADDB_NODES, load_node, h);
    loom__headdb_foreach(h->db, HEADDB_OBJECTS, load_obj, h);
    loom__headdb_foreach(h->db, HEADDB_TASKS, load_task, h);
    /* objects no task makes (puts, libraries): held as their drivers held them */
    size_t it = 0;
    void *v;
    while (loom__hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        if (!o->producer && o->refs == 0) o->refs = 1;
    }
    /* actors, from their creation tasks (their state is theirs) */
    it = 0;
    while (loom__hmap_next(&h->tasks, &it, &v)) {
        task *t = v;
        if (t->spec.actor_op == LOOM_ACTOR_CREATE && t->state != T_FAILED) actor_reload(h, t);
    }
    /* what each task holds and waits for */
    size_t ntasks = h->tasks.count, k = 0;
    task **all = calloc(ntasks + 1, sizeof(task *));
    it = 0;
    while (all && loom__hmap_next(&h->tasks, &it, &v)) all[k++] = v;
    /* actor calls go back among their actor's calls in the order they were
       made (the task table's order is its hash map's, not theirs) */
    if (all) qsort(all, k, sizeof(*all), by_seq);
    for (size_t i = 0; i < k; i++) {
        task *t = all[i];
        t->pinned++;
        /* running on a node that was dead already: no daemon will say what
           became of it, so it waits (and runs) again */
        node *on = t->state == T_RUNNING ? loom__head_node_get(h, t->node) : NULL;
        if (t->state == T_RUNNING && (!on || !on->awaiting)) {
            loom__head_history_add(t, t->node, "its node was gone when the head restarted");
            t->attempts++;
            t->state = T_WAITING;
        }
        actor *a = t->spec.actor_op == LOOM_ACTOR_CALL ? loom__hmap_get(&h->actors, t->spec.actor, 16) : NULL;
        if (a && t->seq > a->next_seq) a->next_seq = t->seq; /* new calls come after every old one */
        if (t->state == T_DONE || t->state == T_RUNNING) {
            hold_deps(h, t);
        } else if (t->state == T_WAITING || t->state == T_QUEUED) {
            t->state = T_WAITING;
            if (a) loom__head_actor_add_call(h, t); /* in the order they were made */
            loom__head_task_link_deps(h, t);
        }
        if (t->spec.actor_op == LOOM_ACTOR_CALL && !a && t->state < T_DONE) {
            if (t->state == T_RUNNING) t->state = T_QUEUED;
            loom__head_task_fail(h, t, LOOM_EACTOR, "its actor is gone (the head restarted)");
        }
        t->pinned--;
    }
    free(all);
    loom__headdb_foreach(h->db, HEADDB_JOBS, load_job, h);
    loom__headdb_foreach(h->db, HEADDB_KV, load_kv, h);
    /* actors alive on a node that was dead already: restarted, as any lost actor */
    loom__head_actors_apply(h, loom__head_alive_on_gone_node, h, loom__head_actor_lost,
                            "its node was gone when the head restarted");
    /* objects whose copies were all on nodes already dead: lost, rebuilt
       from their lineage where it allows */
    obj **gone = NULL;
    int ngone = 0, capg = 0;
    it = 0;
    while (loom__hmap_next(&h->objs, &it, &v)) {
        obj *o = v;
        if (o->state != O_READY || o->value || o->is_log) continue;
        int live = 0;
        for (int i = 0; i < o->nlocs && !live; i++) {
            node *on = loom__head_node_get(h, o->locs[i]);
            live = on && on->awaiting;
        }
        if (!live && !loom__head_grow_array((void **)&gone, &capg, ngone + 1, sizeof(obj *))) gone[ngone++] = o;
    }
    if (ngone) loom__head_rebuild_lost(h, gone, ngone, "its nodes were gone when the head restarted");
    free(gone);
    if (h->nodes.count || h->tasks.count || h->objs.count || h->kv.count)
        LOG_INFO("reloaded the tables: %zu nodes (waiting for them to rejoin), %zu tasks, %zu objects, %zu jobs, "
                 "%zu keys",
                 h->nodes.count, h->tasks.count, h->objs.count, h->jobs.count, h->kv.count);
}
