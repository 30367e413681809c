/* api/client_actor.c — the driver side of actors (create, call, wait until
 * ready, look up by name, kill), placement groups, draining a node, and the
 * cluster's key-value table; each a request to the head over the client's
 * connection (client.c).  The client's state is in client_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>
#include "api/client_internal.h"
#include "api/graph_internal.h"
#include "runtime/hmap.h"
#include "runtime/ids.h"
#include "runtime/util.h"
#include "runtime/wire.h"
#include "loom/value.h"

/* ---- actors ------------------------------------------------------------- */

void loom_actor_to_hex(const loom_actor *a, char out[33])
{
    loom__hex_encode(a->id, 16, out);
}

int loom_actor_from_hex(const char *hex, loom_actor *out)
{
    if (!hex || !out || strlen(hex) != 32) return LOOM_EINVAL;
    return loom__hex_decode(hex, out->id, 16) ? LOOM_EINVAL : LOOM_OK;
}

static int valid_member_name(const char *s)
{
    if (!s || !*s || strlen(s) > 200 || strstr(s, "__")) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return !(*s >= '0' && *s <= '9');
}

/* Submit a one-node graph whose node is an actor's creation or call. */
static int submit_actor_task(loom_client *c, loom_ref lib, const char *fn, const loom_arg *args, int nargs,
                             const loom_task_opts *res, const loom_graph_extra *actor_fields,
                             const char *job_name, uint8_t task_id[16])
{
    loom_graph *g;
    int rc = loom_graph_new(&g);
    if (rc) return loom__client_set_error(c, rc, "out of memory");
    loom_task_opts o;
    memset(&o, 0, sizeof(o));
    if (res) o = *res;
    o.name = NULL;
    double cpus = o.num_cpus;
    int node = loom_graph_task(g, lib, fn, &o);
    rc = node < 0 ? node : LOOM_OK;
    if (rc) loom__client_set_error(c, rc, "invalid options for actor '%s': num_cpus 0..1024, num_gpus a fraction "
                                   "below 1 or a whole number up to 16, resources with names of 1..63 characters "
                                   "and amounts > 0", fn);
    loom_graph_node *n = rc ? NULL : &g->nodes[node];
    if (n) {
        n->num_cpus = cpus; /* actors: 0 unless asked (the head applies defaults) */
        if (!n->extra) {
            if ((n->extra = calloc(1, sizeof(*n->extra)))) {
                n->extra->bundle = -1;
                n->extra->max_retries = LOOM_DEFAULT_RETRIES;
            } else {
                rc = LOOM_ENOMEM;
            }
        }
    }
    if (!rc) {
        loom_graph_extra *e = n->extra;
        e->actor_op = actor_fields->actor_op;
        memcpy(e->actor, actor_fields->actor, 16);
        e->max_concurrency = actor_fields->max_concurrency;
        e->detached = actor_fields->detached;
        e->max_restarts = actor_fields->max_restarts;
        e->max_task_retries = actor_fields->max_task_retries;
        if (actor_fields->actor_name && !(e->actor_name = strdup(actor_fields->actor_name))) rc = LOOM_ENOMEM;
        if (e->actor_op == LOOM_ACTOR_CREATE) memcpy(e->actor, n->task_id, 16);
    }
    for (int i = 0; !rc && i < nargs; i++)
        rc = args[i].kind == LOOM_ARG_REF ? loom_graph_arg_ref(g, node, args[i].ref)
                                          : loom_graph_arg_value(g, node, args[i].data, args[i].len);
    if (!rc) {
        loom_submit_opts so = {.job_name = job_name};
        loom_ref out;
        /* a call is sent without waiting for the head, as loom_submit is
           (calls of one client stay in order: one socket, and resent in
           order after a head restart); a refusal is the result's error */
        if (actor_fields->actor_op == LOOM_ACTOR_CALL && !(rc = loom_graph_ref(g, node, 0, &out)))
            rc = loom__client_graph_send_unacked(c, g, &so, &out);
        else if (!rc)
            rc = loom_graph_submit(c, g, &so, NULL);
    }
    if (!rc) memcpy(task_id, g->nodes[node].task_id, 16);
    loom_graph_destroy(&g);
    return rc;
}

int loom_actor_create(loom_client *c, loom_ref lib, const char *cls, const loom_arg *args, int nargs,
                      const loom_actor_opts *opts, loom_actor *out)
{
    if (!c || !out || nargs < 0 || (nargs && !args)) return LOOM_EINVAL;
    if (!valid_member_name(cls))
        return loom__client_set_error(c, LOOM_EINVAL,
                                      "'%s' is not a valid actor class name (a C identifier without \"__\")",
                                      cls ? cls : "(null)");
    if (opts && opts->name && (!*opts->name || strlen(opts->name) > 255))
        return loom__client_set_error(c, LOOM_EINVAL, "an actor name has 1 to 255 characters");
    if (opts && (opts->max_concurrency < 0 || opts->max_concurrency > 1024))
        return loom__client_set_error(c, LOOM_EINVAL, "max_concurrency must be 1..1024");
    if (opts && (opts->max_restarts < -1 || opts->max_restarts > 100000 || opts->max_task_retries < 0 ||
                 opts->max_task_retries > 1000))
        return loom__client_set_error(c, LOOM_EINVAL, "max_restarts must be -1..100000 and max_task_retries 0..1000");
    loom_graph_extra f;
    memset(&f, 0, sizeof(f));
    f.actor_op = LOOM_ACTOR_CREATE;
    f.max_concurrency = opts && opts->max_concurrency > 0 ? (uint32_t)opts->max_concurrency : 1;
    f.detached = opts && opts->detached ? 1 : 0;
    f.actor_name = opts && opts->name ? (char *)opts->name : NULL;
    f.max_restarts = opts ? opts->max_restarts : 0;
    f.max_task_retries = opts ? (uint32_t)opts->max_task_retries : 0;
    char job[300];
    loom__snprintf(job, sizeof(job), "actor %s", cls);
    return submit_actor_task(c, lib, cls, args, nargs, opts ? &opts->res : NULL, &f, job, out->id);
}

int loom_actor_call(loom_client *c, loom_actor a, const char *method, const loom_arg *args, int nargs,
                    loom_ref *out)
{
    if (!c || !out || nargs < 0 || (nargs && !args)) return LOOM_EINVAL;
    if (!valid_member_name(method) || !strcmp(method, "init") || !strcmp(method, "destroy"))
        return loom__client_set_error(c, LOOM_EINVAL, "'%s' is not a method that can be called",
                                      method ? method : "(null)");
    loom_graph_extra f;
    memset(&f, 0, sizeof(f));
    f.actor_op = LOOM_ACTOR_CALL;
    memcpy(f.actor, a.id, 16);
    loom_ref none;
    memset(&none, 0, sizeof(none));
    uint8_t id[16];
    int rc = submit_actor_task(c, none, method, args, nargs, NULL, &f, "call", id);
    if (!rc) loom__ref_make(id, 0, out);
    return rc;
}

int loom_actor_wait_ready(loom_client *c, loom_actor a, int64_t timeout_ms)
{
    if (!c) return LOOM_EINVAL;
    loom_ref ready;
    loom__ref_make(a.id, 0, &ready);
    loom_value *v = NULL;
    int rc = loom_get(c, ready, timeout_ms, &v);
    loom_value_release(&v);
    loom__client_ready_drop(loom__hmap_del(&c->ready, ready.id, LOOM_ID_LEN));
    return rc;
}

int loom_actor_lookup(loom_client *c, const char *name, loom_actor *out)
{
    if (!c || !name || !*name || !out) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_ACTOR_LOOKUP, 0);
    m.name = (char *)name;
    zmq_msg_t f;
    loom_msg r;
    int rc = loom__client_request(c, &m, LOOM_MSG_REF, &f, &r);
    if (rc) return rc;
    memcpy(out->id, r.ref.id, 16);
    loom__msg_free(&r);
    zmq_msg_close(&f);
    return LOOM_OK;
}

int loom_actor_kill(loom_client *c, loom_actor a)
{
    if (!c) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_ACTOR_KILL, 0);
    loom__ref_make(a.id, 0, &m.ref);
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}

int loom_actors_json(loom_client *c, char **json)
{
    if (!c || !json) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_ACTORS, 0);
    return loom__client_info_json(c, &m, json);
}

/* ---- placement groups --------------------------------------------------- */

int loom_pg_create(loom_client *c, const loom_bundle *bundles, int n, int strategy, const char *name,
                   loom_pg *out)
{
    if (!c || !bundles || !out || n < 1 || n > LOOM_WIRE_MAX_BUNDLES) return LOOM_EINVAL;
    if (strategy < LOOM_PG_PACK || strategy > LOOM_PG_STRICT_SPREAD)
        return loom__client_set_error(c, LOOM_EINVAL, "unknown placement strategy %d", strategy);
    loom_arena a = {0};
    loom_wire_bundle *wb = loom__arena_alloc(&a, (size_t)n * sizeof(*wb));
    int rc = wb ? LOOM_OK : LOOM_ENOMEM;
    for (int b = 0; !rc && b < n; b++) {
        const loom_bundle *in = &bundles[b];
        if (in->nresources < 0 || in->nresources > LOOM_WIRE_MAX_RES || (in->nresources && !in->resources)) {
            rc = loom__client_set_error(c, LOOM_EINVAL, "bundle %d: bad resources", b);
            break;
        }
        double g = in->num_gpus;
        if (!(in->num_cpus >= 0 && in->num_cpus <= 1024) || !(g >= 0 && g <= 16) || (g > 1 && g != (double)(int)g) ||
            (in->gpu_memory && g <= 0)) {
            rc = loom__client_set_error(c, LOOM_EINVAL, "bundle %d: num_cpus must be 0..1024, num_gpus a fraction "
                                        "below 1 or a whole number up to 16, gpu_memory only with GPUs", b);
            break;
        }
        if (in->num_cpus == 0 && g == 0 && in->memory == 0 && in->nresources == 0) {
            rc = loom__client_set_error(c, LOOM_EINVAL, "bundle %d reserves nothing", b);
            break;
        }
        wb[b].num_cpus = in->num_cpus;
        wb[b].memory = in->memory;
        wb[b].num_gpus = in->num_gpus;
        wb[b].gpu_memory = in->gpu_memory;
        wb[b].nres = (uint32_t)in->nresources;
        wb[b].res = in->nresources ? loom__arena_alloc(&a, (size_t)in->nresources * sizeof(loom_wire_res)) : NULL;
        if (in->nresources && !wb[b].res) rc = LOOM_ENOMEM;
        for (int i = 0; !rc && i < in->nresources; i++) {
            const loom_resource *r = &in->resources[i];
            if (!r->name || !*r->name || strlen(r->name) > 63 || !(r->amount > 0 && r->amount <= 1e12)) {
                rc = loom__client_set_error(c, LOOM_EINVAL, "bundle %d: a resource needs a name of 1..63 characters "
                                            "and an amount > 0", b);
                break;
            }
            wb[b].res[i].name = (char *)in->resources[i].name;
            wb[b].res[i].amount = in->resources[i].amount;
        }
    }
    if (!rc) {
        loom_msg m;
        loom__msg_init(&m, LOOM_MSG_PG_CREATE, 0);
        m.name = (char *)(name ? name : "");
        m.strategy = (uint32_t)strategy;
        m.bundles = wb;
        m.nbundles = (uint32_t)n;
        zmq_msg_t f;
        loom_msg r;
        rc = loom__client_request(c, &m, LOOM_MSG_REF, &f, &r);
        if (!rc) {
            memcpy(out->id, r.ref.id, 16);
            loom__msg_free(&r);
            zmq_msg_close(&f);
        }
    }
    loom__arena_free(&a);
    return rc;
}

/* The group's state ("pending", "created", ...) and reason, from PG_INFO. */
static int pg_state(loom_client *c, loom_pg pg, char *state, size_t slen, char *reason, size_t rlen)
{
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_PG_INFO, 0);
    loom__ref_make(pg.id, 0, &m.ref);
    zmq_msg_t f;
    loom_msg r;
    int rc = loom__client_request(c, &m, LOOM_MSG_INFO, &f, &r);
    if (rc) return rc;
    /* the reply is a map; find "state" and "reason" */
    loom_unpack u;
    loom_unpack_init(&u, r.data.p, r.data.n);
    uint32_t n = 0;
    state[0] = reason[0] = 0;
    if (loom_unpack_map(&u, &n) == 0) {
        for (uint32_t i = 0; i < n; i++) {
            const char *k, *v;
            size_t kn, vn;
            if (loom_unpack_str(&u, &k, &kn)) break;
            if (loom_unpack_peek(&u) == LOOM_TYPE_STR && !loom_unpack_str(&u, &v, &vn)) {
                if (kn == 5 && !memcmp(k, "state", 5)) loom__snprintf(state, slen, "%.*s", (int)vn, v);
                if (kn == 6 && !memcmp(k, "reason", 6)) loom__snprintf(reason, rlen, "%.*s", (int)vn, v);
            } else if (loom_unpack_skip(&u)) {
                break;
            }
        }
    }
    loom__msg_free(&r);
    zmq_msg_close(&f);
    return LOOM_OK;
}

int loom_pg_wait(loom_client *c, loom_pg pg, int64_t timeout_ms)
{
    if (!c) return LOOM_EINVAL;
    int64_t deadline = timeout_ms < 0 ? -1 : loom__now_ms() + timeout_ms;
    int sleep_us = 2000;
    for (;;) {
        char state[32], reason[600];
        int rc = pg_state(c, pg, state, sizeof(state), reason, sizeof(reason));
        if (rc) return rc;
        if (!strcmp(state, "created")) return LOOM_OK;
        if (!strcmp(state, "infeasible"))
            return loom__client_set_error(c, LOOM_EINFEASIBLE, "the placement group is infeasible: %s", reason);
        if (deadline >= 0 && loom__now_ms() >= deadline)
            return loom__client_set_error(c, LOOM_ETIMEOUT,
                                          "the placement group was not placed within %lld ms (state %s)",
                                          (long long)timeout_ms, state);
        usleep((useconds_t)sleep_us);
        if (sleep_us < 50000) sleep_us *= 2;
    }
}

int loom_pg_remove(loom_client *c, loom_pg pg)
{
    if (!c) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_PG_REMOVE, 0);
    loom__ref_make(pg.id, 0, &m.ref);
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}

int loom_pg_json(loom_client *c, loom_pg pg, char **json)
{
    if (!c || !json) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_PG_INFO, 0);
    loom__ref_make(pg.id, 0, &m.ref);
    return loom__client_info_json(c, &m, json);
}

/* ---- nodes -------------------------------------------------------------- */

int loom_node_drain(loom_client *c, uint32_t node)
{
    if (!c || !node) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_DRAIN, 0);
    m.node = node;
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}

/* ---- key-value table ---------------------------------------------------- */

int loom_kv_put(loom_client *c, const char *key, const void *data, size_t len)
{
    if (!c || !key || !*key || strlen(key) > 512 || (len && !data)) return LOOM_EINVAL;
    if (len > (1u << 20)) return loom__client_set_error(c, LOOM_ETOOBIG, "a value holds at most 1 MiB");
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_KV_PUT, 0);
    m.key = (char *)key;
    m.data.p = data;
    m.data.n = len;
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}

int loom_kv_get(loom_client *c, const char *key, int64_t timeout_ms, void **data, size_t *len)
{
    if (!c || !key || !*key || strlen(key) > 512 || !data) return LOOM_EINVAL;
    if (timeout_ms < 0 || timeout_ms > 3600000) timeout_ms = 3600000;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_KV_GET, 0);
    m.key = (char *)key;
    m.wait_ms = (uint64_t)timeout_ms;
    zmq_msg_t f;
    loom_msg r;
    /* the head answers when the key appears or the wait ends (its clock ticks each second) */
    int rc = loom__client_request_within(c, &m, LOOM_MSG_INFO, timeout_ms + REQUEST_TIMEOUT_MS, &f, &r);
    if (rc) return rc;
    *data = malloc(r.data.n ? r.data.n : 1);
    if (*data && r.data.n) memcpy(*data, r.data.p, r.data.n);
    if (len) *len = r.data.n;
    loom__msg_free(&r);
    zmq_msg_close(&f);
    return *data ? LOOM_OK : LOOM_ENOMEM;
}

int loom_kv_del(loom_client *c, const char *key)
{
    if (!c || !key || !*key || strlen(key) > 512) return LOOM_EINVAL;
    loom_msg m;
    loom__msg_init(&m, LOOM_MSG_KV_DEL, 0);
    m.key = (char *)key;
    return loom__client_request(c, &m, LOOM_MSG_OK, NULL, NULL);
}
