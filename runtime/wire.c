/* runtime/wire.c — encoding and validated decoding of loom's messages (see
 * wire.h for the frame layout).  Each type's field list is written once in
 * encode_fields and once in decode_fields, in the same order. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "base/errf.h"
#include "runtime/wire.h"

/* ---- decoding ----------------------------------------------------------- */

typedef struct dec {
    loom_unpack u;
    loom_arena *arena;
    char *err;
    size_t errlen;
    int rc;
} dec;

static int fail(dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(dec *d, const char *fmt, ...)
{
    if (d->rc == 0) {
        va_list ap;
        va_start(ap, fmt);
        loom_verrf(d->err, d->errlen, LOOM_EPROTO, fmt, ap);
        va_end(ap);
    }
    if (d->rc == 0) d->rc = LOOM_EPROTO;
    return d->rc;
}

static int rd_u64(dec *d, uint64_t *v, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_u64(&d->u, v)) return fail(d, "%s: want an unsigned integer", what);
    return 0;
}

static int rd_u32(dec *d, uint32_t *v, const char *what)
{
    uint64_t x = 0;
    if (rd_u64(d, &x, what)) return d->rc;
    if (x > UINT32_MAX) return fail(d, "%s: out of range", what);
    *v = (uint32_t)x;
    return 0;
}

static int rd_i32(dec *d, int32_t *v, const char *what)
{
    int64_t x = 0;
    if (d->rc) return d->rc;
    if (loom_unpack_i64(&d->u, &x) || x < INT32_MIN || x > INT32_MAX)
        return fail(d, "%s: want a 32-bit integer", what);
    *v = (int32_t)x;
    return 0;
}

static int rd_f64(dec *d, double *v, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_f64(&d->u, v) || !isfinite(*v)) return fail(d, "%s: want a finite number", what);
    return 0;
}

static int rd_bool(dec *d, int *v, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_bool(&d->u, v)) return fail(d, "%s: want a boolean", what);
    return 0;
}

static int rd_str(dec *d, char **out, const char *what)
{
    const char *s;
    size_t n;
    if (d->rc) return d->rc;
    if (loom_unpack_str(&d->u, &s, &n)) return fail(d, "%s: want a string", what);
    if (memchr(s, 0, n)) return fail(d, "%s: string holds a NUL byte", what);
    *out = loom_arena_strndup(d->arena, s, n);
    if (!*out) return d->rc = LOOM_ENOMEM;
    return 0;
}

static int rd_bin(dec *d, loom_bytes *b, const char *what)
{
    const void *p;
    size_t n;
    if (d->rc) return d->rc;
    if (loom_unpack_bin(&d->u, &p, &n)) return fail(d, "%s: want bytes", what);
    b->p = p;
    b->n = n;
    return 0;
}

static int rd_fixed(dec *d, uint8_t *out, size_t want, const char *what)
{
    loom_bytes b = {0};
    if (rd_bin(d, &b, what)) return d->rc;
    if (b.n != want) return fail(d, "%s: want %zu bytes, got %zu", what, want, b.n);
    memcpy(out, b.p, want);
    return 0;
}

static int rd_ref(dec *d, loom_ref *r, const char *what)
{
    return rd_fixed(d, r->id, LOOM_ID_LEN, what);
}

/* Read an array header and allocate n elements of size sz in the arena. */
static int rd_list(dec *d, uint32_t *n, size_t sz, void **out, const char *what)
{
    if (d->rc) return d->rc;
    if (loom_unpack_array(&d->u, n)) return fail(d, "%s: want an array", what);
    if (*n > LOOM_WIRE_MAX_LIST) return fail(d, "%s: %u elements is too many", what, *n);
    /* every element takes at least one byte: reject counts the frame can't hold */
    if (*n > d->u.len - d->u.pos) return fail(d, "%s: truncated", what);
    *out = NULL;
    if (*n == 0) return 0;
    *out = loom_arena_alloc(d->arena, (size_t)*n * sz);
    if (!*out) return d->rc = LOOM_ENOMEM;
    return 0;
}

static int rd_strlist(dec *d, char ***out, uint32_t *n, const char *what)
{
    void *arr;
    if (rd_list(d, n, sizeof(char *), &arr, what)) return d->rc;
    *out = arr;
    for (uint32_t i = 0; i < *n; i++)
        if (rd_str(d, &(*out)[i], what)) return d->rc;
    return 0;
}

static int rd_tuple(dec *d, uint32_t want, const char *what)
{
    uint32_t n;
    if (d->rc) return d->rc;
    if (loom_unpack_array(&d->u, &n) || n != want)
        return fail(d, "%s: want an array of %u fields", what, want);
    return 0;
}

static int rd_loc(dec *d, loom_wire_loc *l)
{
    if (rd_tuple(d, 2, "loc")) return d->rc;
    rd_u32(d, &l->node, "loc.node");
    return rd_str(d, &l->addr, "loc.addr");
}

static int rd_locs(dec *d, loom_wire_loc **out, uint32_t *n)
{
    void *arr;
    if (rd_list(d, n, sizeof(loom_wire_loc), &arr, "locs")) return d->rc;
    *out = arr;
    for (uint32_t i = 0; i < *n && !d->rc; i++) rd_loc(d, &(*out)[i]);
    return d->rc;
}

static int rd_arg(dec *d, loom_wire_arg *a)
{
    if (rd_tuple(d, 5, "arg")) return d->rc;
    rd_u32(d, &a->kind, "arg.kind");
    rd_bin(d, &a->value, "arg.value");
    loom_bytes r = {0};
    rd_bin(d, &r, "arg.ref");
    rd_u64(d, &a->size, "arg.size");
    rd_locs(d, &a->locs, &a->nlocs);
    if (d->rc) return d->rc;
    if (a->kind > LOOM_WARG_REF) return fail(d, "arg.kind: unknown kind %u", a->kind);
    if (a->kind == LOOM_WARG_REF) {
        if (r.n != LOOM_ID_LEN) return fail(d, "arg.ref: want %d bytes", LOOM_ID_LEN);
        memcpy(a->ref.id, r.p, LOOM_ID_LEN);
    }
    return 0;
}

static int rd_name(dec *d, char **out, size_t maxlen, int allow_empty, const char *what)
{
    if (rd_str(d, out, what)) return d->rc;
    size_t n = strlen(*out);
    if ((!allow_empty && n == 0) || n > maxlen) return fail(d, "%s: want 1..%zu bytes", what, maxlen);
    return 0;
}

static int rd_res(dec *d, loom_wire_res *r)
{
    if (rd_tuple(d, 2, "resource")) return d->rc;
    rd_name(d, &r->name, 63, 0, "resource.name");
    rd_f64(d, &r->amount, "resource.amount");
    if (!d->rc && (r->amount <= 0 || r->amount > 1e12)) return fail(d, "resource '%s': amount out of range", r->name);
    return d->rc;
}

static int rd_label(dec *d, loom_wire_label *l)
{
    if (rd_tuple(d, 2, "label")) return d->rc;
    rd_name(d, &l->key, 63, 0, "label.key");
    return rd_name(d, &l->value, 255, 1, "label.value");
}

static int rd_reslist(dec *d, loom_wire_res **out, uint32_t *n)
{
    void *arr;
    if (rd_list(d, n, sizeof(loom_wire_res), &arr, "resources")) return d->rc;
    if (*n > LOOM_WIRE_MAX_RES) return fail(d, "resources: at most %d", LOOM_WIRE_MAX_RES);
    *out = arr;
    for (uint32_t i = 0; i < *n && !d->rc; i++) rd_res(d, &(*out)[i]);
    for (uint32_t i = 0; i < *n && !d->rc; i++)
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp((*out)[i].name, (*out)[k].name))
                return fail(d, "resources: '%s' named twice", (*out)[i].name);
    return d->rc;
}

static int rd_labels(dec *d, loom_wire_label **out, uint32_t *n)
{
    void *arr;
    if (rd_list(d, n, sizeof(loom_wire_label), &arr, "labels")) return d->rc;
    if (*n > LOOM_WIRE_MAX_LABELS) return fail(d, "labels: at most %d", LOOM_WIRE_MAX_LABELS);
    *out = arr;
    for (uint32_t i = 0; i < *n && !d->rc; i++) rd_label(d, &(*out)[i]);
    return d->rc;
}

/* A GPU count: 0, a fraction in (0,1), or a whole number up to the limit. */
static int check_gpus(dec *d, double g, const char *what)
{
    if (g < 0 || g > LOOM_WIRE_MAX_GPUS) return fail(d, "%s: out of range", what);
    if (g > 1 && g != (double)(int64_t)g) return fail(d, "%s: more than one GPU must be a whole number", what);
    return 0;
}

static int rd_id16(dec *d, uint8_t *out, int *present, const char *what)
{
    loom_bytes b = {0};
    if (rd_bin(d, &b, what)) return d->rc;
    if (b.n != 0 && b.n != 16) return fail(d, "%s: want 0 or 16 bytes", what);
    if (present) *present = b.n == 16;
    if (b.n) memcpy(out, b.p, 16);
    else memset(out, 0, 16);
    return 0;
}

static int rd_sched(dec *d, loom_wire_task *t)
{
    if (rd_tuple(d, 12, "task.sched")) return d->rc;
    rd_f64(d, &t->num_gpus, "task.num_gpus");
    rd_u64(d, &t->gpu_memory, "task.gpu_memory");
    rd_reslist(d, &t->res, &t->nres);
    rd_labels(d, &t->labels, &t->nlabels);
    rd_u32(d, &t->strategy, "task.strategy");
    rd_u32(d, &t->affinity_node, "task.node");
    rd_bool(d, &t->soft, "task.soft");
    rd_id16(d, t->pg, &t->has_pg, "task.pg");
    rd_i32(d, &t->bundle, "task.bundle");
    rd_str(d, &t->gpu_ids, "task.gpu_ids");
    rd_u32(d, &t->max_retries, "task.max_retries");
    rd_bool(d, &t->retry_on_error, "task.retry_on_error");
    if (d->rc) return d->rc;
    if (t->max_retries > 1000) return fail(d, "task.max_retries: at most 1000");
    if (check_gpus(d, t->num_gpus, "task.num_gpus")) return d->rc;
    if (t->strategy > LOOM_SCHED_NODE) return fail(d, "task.strategy: unknown strategy %u", t->strategy);
    if (t->bundle < -1 || t->bundle >= LOOM_WIRE_MAX_BUNDLES) return fail(d, "task.bundle: out of range");
    if (t->gpu_memory && t->num_gpus <= 0) return fail(d, "task.gpu_memory: needs num_gpus");
    return 0;
}

static int rd_actor(dec *d, loom_wire_task *t)
{
    if (rd_tuple(d, 7, "task.actor")) return d->rc;
    rd_u32(d, &t->actor_op, "actor.op");
    rd_id16(d, t->actor, NULL, "actor.id");
    rd_u32(d, &t->max_concurrency, "actor.max_concurrency");
    rd_bool(d, &t->detached, "actor.detached");
    rd_name(d, &t->actor_name, 255, 1, "actor.name");
    rd_i32(d, &t->max_restarts, "actor.max_restarts");
    rd_u32(d, &t->max_task_retries, "actor.max_task_retries");
    if (d->rc) return d->rc;
    if (t->max_restarts < -1 || t->max_restarts > 100000) return fail(d, "actor.max_restarts: out of range");
    if (t->max_task_retries > 1000) return fail(d, "actor.max_task_retries: at most 1000");
    if (t->actor_op > LOOM_ACTOR_CALL) return fail(d, "actor.op: unknown op %u", t->actor_op);
    if (t->max_concurrency > 1024) return fail(d, "actor.max_concurrency: at most 1024");
    return 0;
}

static int rd_task(dec *d, loom_wire_task *t)
{
    if (rd_tuple(d, 16, "task")) return d->rc;
    rd_fixed(d, t->task_id, 16, "task.id");
    rd_u32(d, &t->kind, "task.kind");
    rd_str(d, &t->name, "task.name");
    rd_arg(d, &t->lib);
    rd_str(d, &t->function, "task.function");
    rd_strlist(d, &t->argv, &t->argc, "task.argv");
    rd_strlist(d, &t->env, &t->nenv, "task.env");
    rd_str(d, &t->cwd, "task.cwd");
    rd_strlist(d, &t->outputs, &t->noutputs, "task.outputs");
    rd_bool(d, &t->nocheck, "task.nocheck");
    rd_f64(d, &t->num_cpus, "task.num_cpus");
    rd_u64(d, &t->memory, "task.memory");
    void *arr;
    if (rd_list(d, &t->nargs, sizeof(loom_wire_arg), &arr, "task.args")) return d->rc;
    t->args = arr;
    for (uint32_t i = 0; i < t->nargs && !d->rc; i++) rd_arg(d, &t->args[i]);
    rd_sched(d, t);
    rd_actor(d, t);
    if (d->rc) return d->rc;
    if (t->kind > LOOM_TASK_COMMAND) return fail(d, "task.kind: unknown kind %u", t->kind);
    if (t->actor_op && t->kind != LOOM_TASK_FUNCTION) return fail(d, "task: an actor task must be a function task");
    if (t->actor_op && (!t->function[0] || strstr(t->function, "__")))
        return fail(d, "task: an actor class or method needs a name without \"__\"");
    /* the head may resolve a small library to an inline value in ASSIGN; an
       actor call has none (its actor has the library) */
    if (t->kind == LOOM_TASK_FUNCTION && t->actor_op != LOOM_ACTOR_CALL &&
        (!t->function[0] || (t->lib.kind == LOOM_WARG_VALUE && t->lib.value.n == 0)))
        return fail(d, "task: a function task needs a library and a function name");
    if (t->kind == LOOM_TASK_COMMAND && t->argc == 0)
        return fail(d, "task: a command task needs argv");
    if (t->num_cpus < 0 || t->num_cpus > 1024) return fail(d, "task.num_cpus: out of range");
    if (t->noutputs > 1024) return fail(d, "task.outputs: too many");
    for (uint32_t i = 0; i < t->noutputs; i++)
        if (!t->outputs[i][0] || strchr(t->outputs[i], '/') || !strcmp(t->outputs[i], "..") ||
            !strcmp(t->outputs[i], "."))
            return fail(d, "task.outputs: '%s' is not a plain file name", t->outputs[i]);
    for (uint32_t i = 0; i < t->nenv; i++)
        if (!strchr(t->env[i], '=') || t->env[i][0] == '=')
            return fail(d, "task.env: '%s' is not NAME=VALUE", t->env[i]);
    return 0;
}

static int rd_node(dec *d, loom_wire_node *nd)
{
    if (rd_tuple(d, 12, "node")) return d->rc;
    rd_u32(d, &nd->id, "node.id");
    rd_str(d, &nd->hostname, "node.hostname");
    rd_str(d, &nd->data_addr, "node.data_addr");
    rd_str(d, &nd->store_dir, "node.store_dir");
    rd_str(d, &nd->spill_dir, "node.spill_dir");
    rd_f64(d, &nd->num_cpus, "node.num_cpus");
    rd_u64(d, &nd->memory, "node.memory");
    rd_u64(d, &nd->capacity, "node.capacity");
    rd_u32(d, &nd->num_gpus, "node.num_gpus");
    rd_u64(d, &nd->gpu_memory, "node.gpu_memory");
    rd_reslist(d, &nd->res, &nd->nres);
    rd_labels(d, &nd->labels, &nd->nlabels);
    if (!d->rc && nd->num_gpus > LOOM_WIRE_MAX_GPUS) return fail(d, "node.num_gpus: at most %d", LOOM_WIRE_MAX_GPUS);
    return d->rc;
}

static int rd_bundle(dec *d, loom_wire_bundle *b)
{
    if (rd_tuple(d, 5, "bundle")) return d->rc;
    rd_f64(d, &b->num_cpus, "bundle.num_cpus");
    rd_u64(d, &b->memory, "bundle.memory");
    rd_f64(d, &b->num_gpus, "bundle.num_gpus");
    rd_u64(d, &b->gpu_memory, "bundle.gpu_memory");
    rd_reslist(d, &b->res, &b->nres);
    if (d->rc) return d->rc;
    if (b->num_cpus < 0 || b->num_cpus > 1024) return fail(d, "bundle.num_cpus: out of range");
    if (check_gpus(d, b->num_gpus, "bundle.num_gpus")) return d->rc;
    if (b->num_cpus == 0 && b->num_gpus == 0 && b->memory == 0 && b->nres == 0)
        return fail(d, "bundle: an empty bundle reserves nothing");
    return 0;
}

static int rd_output(dec *d, loom_wire_output *o)
{
    if (rd_tuple(d, 3, "output")) return d->rc;
    rd_u32(d, &o->index, "output.index");
    rd_u64(d, &o->size, "output.size");
    rd_bin(d, &o->value, "output.value");
    if (!d->rc && o->value.n && o->value.n != o->size)
        return fail(d, "output: inline value of %zu bytes for size %llu", o->value.n,
                    (unsigned long long)o->size);
    return d->rc;
}

static int rd_ref_list_elem(dec *d, loom_ref *r)
{
    return rd_ref(d, r, "refs[]");
}

#define RD_LIST(d, field, count, type, reader, what)                          \
    do {                                                                       \
        void *arr_;                                                            \
        if (rd_list(d, &(count), sizeof(type), &arr_, what)) break;            \
        (field) = arr_;                                                        \
        for (uint32_t i_ = 0; i_ < (count) && !(d)->rc; i_++) reader(d, &(field)[i_]); \
    } while (0)

/* The number of fields after [version, type, req] for each type. */
static int field_count(int type)
{
    switch (type) {
    case LOOM_MSG_ERROR: return 2;
    case LOOM_MSG_OK: case LOOM_MSG_STATUS: case LOOM_MSG_BYE: return 0;
    case LOOM_MSG_HELLO: return 5;
    case LOOM_MSG_WELCOME: return 2;
    case LOOM_MSG_HEARTBEAT: return 2;
    case LOOM_MSG_SUBMIT: return 4;
    case LOOM_MSG_JOBS: return 3;
    case LOOM_MSG_SUBMITTED: case LOOM_MSG_JOB_INFO: case LOOM_MSG_JOB_DELETE: return 1;
    case LOOM_MSG_PUT_DONE: return 5;
    case LOOM_MSG_SUBSCRIBE: case LOOM_MSG_RELEASE: case LOOM_MSG_DELETE_OBJS: return 1;
    case LOOM_MSG_OBJ_READY: return 6;
    case LOOM_MSG_CANCEL: case LOOM_MSG_REF: case LOOM_MSG_CANCEL_TASK: return 1;
    case LOOM_MSG_INFO: return 1;
    case LOOM_MSG_JOB_REF: return 3;
    case LOOM_MSG_ASSIGN: case LOOM_MSG_RUN: return 1;
    case LOOM_MSG_TASK_DONE: return 5;
    case LOOM_MSG_KV_PUT: return 2;
    case LOOM_MSG_KV_GET: return 2;
    case LOOM_MSG_KV_DEL: case LOOM_MSG_ACTOR_LOOKUP: return 1;
    case LOOM_MSG_ACTOR_KILL: case LOOM_MSG_PG_REMOVE: case LOOM_MSG_PG_INFO: return 1;
    case LOOM_MSG_ACTOR_DIED: return 3;
    case LOOM_MSG_ACTORS: return 0;
    case LOOM_MSG_DRAIN: return 1;
    case LOOM_MSG_RUNNING: return 1;
    case LOOM_MSG_PG_CREATE: return 3;
    case LOOM_MSG_OBJ_ADDED: return 2;
    case LOOM_MSG_FETCH: return 3;
    case LOOM_MSG_CHUNK: case LOOM_MSG_PUSH: return 4;
    default: return -1;
    }
}

static void decode_fields(dec *d, loom_msg *m)
{
    switch (m->type) {
    case LOOM_MSG_ERROR:
        rd_i32(d, &m->code, "code");
        rd_str(d, &m->text, "text");
        break;
    case LOOM_MSG_HELLO:
        rd_u32(d, &m->role, "role");
        rd_str(d, &m->secret, "secret");
        rd_str(d, &m->hostname, "hostname");
        rd_u32(d, &m->id, "pid");
        RD_LIST(d, m->nodes, m->nnodes, loom_wire_node, rd_node, "nodes");
        if (!d->rc && (m->role < LOOM_ROLE_DRIVER || m->role > LOOM_ROLE_EXECUTOR))
            fail(d, "role: unknown role %u", m->role);
        if (!d->rc && m->nnodes > 1) fail(d, "nodes: a hello describes at most one node");
        break;
    case LOOM_MSG_WELCOME:
        rd_u32(d, &m->id, "id");
        RD_LIST(d, m->nodes, m->nnodes, loom_wire_node, rd_node, "nodes");
        break;
    case LOOM_MSG_HEARTBEAT:
        rd_u64(d, &m->u0, "store_used");
        rd_u64(d, &m->u1, "running");
        break;
    case LOOM_MSG_SUBMIT:
        rd_str(d, &m->name, "job_name");
        rd_u32(d, &m->flag, "detached");
        RD_LIST(d, m->tasks, m->ntasks, loom_wire_task, rd_task, "tasks");
        rd_str(d, &m->text, "label");
        break;
    case LOOM_MSG_JOBS:
        rd_str(d, &m->text, "label");
        rd_u64(d, &m->u0, "offset");
        rd_u64(d, &m->u1, "limit");
        break;
    case LOOM_MSG_SUBMITTED: case LOOM_MSG_JOB_INFO: case LOOM_MSG_JOB_DELETE:
        rd_str(d, &m->name, "job");
        break;
    case LOOM_MSG_PUT_DONE:
        rd_ref(d, &m->ref, "ref");
        rd_u64(d, &m->u0, "size");
        rd_u32(d, &m->id, "node");
        rd_bin(d, &m->data, "value");
        rd_u32(d, &m->flag, "keep");
        if (!d->rc && m->data.n && m->data.n != m->u0) fail(d, "value: size mismatch");
        break;
    case LOOM_MSG_SUBSCRIBE: case LOOM_MSG_RELEASE: case LOOM_MSG_DELETE_OBJS: case LOOM_MSG_RUNNING:
        RD_LIST(d, m->refs, m->nrefs, loom_ref, rd_ref_list_elem, "refs");
        break;
    case LOOM_MSG_OBJ_READY:
        rd_ref(d, &m->ref, "ref");
        rd_i32(d, &m->code, "code");
        rd_u64(d, &m->u0, "size");
        rd_bin(d, &m->data, "value");
        rd_locs(d, &m->locs, &m->nlocs);
        rd_str(d, &m->text, "text");
        break;
    case LOOM_MSG_CANCEL: case LOOM_MSG_REF: case LOOM_MSG_CANCEL_TASK:
        rd_ref(d, &m->ref, "ref");
        break;
    case LOOM_MSG_INFO:
        rd_bin(d, &m->data, "info");
        break;
    case LOOM_MSG_JOB_REF:
        rd_str(d, &m->name, "job");
        rd_str(d, &m->text, "task");
        rd_u64(d, &m->u0, "output");
        break;
    case LOOM_MSG_ASSIGN: case LOOM_MSG_RUN:
        RD_LIST(d, m->tasks, m->ntasks, loom_wire_task, rd_task, "tasks");
        if (!d->rc && m->ntasks != 1) fail(d, "tasks: want exactly one task");
        break;
    case LOOM_MSG_TASK_DONE:
        rd_ref(d, &m->ref, "task");
        rd_i32(d, &m->code, "code");
        rd_str(d, &m->text, "text");
        RD_LIST(d, m->outputs, m->noutputs, loom_wire_output, rd_output, "outputs");
        rd_u64(d, &m->u0, "log_size");
        break;
    case LOOM_MSG_OBJ_ADDED:
        rd_ref(d, &m->ref, "ref");
        rd_u64(d, &m->u0, "size");
        break;
    case LOOM_MSG_FETCH:
        rd_ref(d, &m->ref, "ref");
        rd_u64(d, &m->u0, "offset");
        rd_u64(d, &m->u1, "length");
        break;
    case LOOM_MSG_KV_PUT:
        rd_name(d, &m->name, 512, 0, "key");
        rd_bin(d, &m->data, "value");
        if (!d->rc && m->data.n > (1u << 20)) fail(d, "value: at most 1 MiB");
        break;
    case LOOM_MSG_KV_GET:
        rd_name(d, &m->name, 512, 0, "key");
        rd_u64(d, &m->u0, "wait_ms");
        break;
    case LOOM_MSG_KV_DEL:
        rd_name(d, &m->name, 512, 0, "key");
        break;
    case LOOM_MSG_ACTOR_LOOKUP:
        rd_name(d, &m->name, 255, 0, "name");
        break;
    case LOOM_MSG_ACTOR_KILL: case LOOM_MSG_PG_REMOVE: case LOOM_MSG_PG_INFO:
        rd_ref(d, &m->ref, "ref");
        break;
    case LOOM_MSG_DRAIN:
        rd_u32(d, &m->id, "node");
        break;
    case LOOM_MSG_ACTOR_DIED:
        rd_ref(d, &m->ref, "actor");
        rd_i32(d, &m->code, "code");
        rd_str(d, &m->text, "text");
        break;
    case LOOM_MSG_PG_CREATE:
        rd_name(d, &m->name, 255, 1, "name");
        rd_u32(d, &m->flag, "strategy");
        RD_LIST(d, m->bundles, m->nbundles, loom_wire_bundle, rd_bundle, "bundles");
        if (!d->rc && m->flag > 3) fail(d, "strategy: unknown placement strategy %u", m->flag);
        if (!d->rc && (m->nbundles == 0 || m->nbundles > LOOM_WIRE_MAX_BUNDLES))
            fail(d, "bundles: want 1..%d", LOOM_WIRE_MAX_BUNDLES);
        break;
    case LOOM_MSG_CHUNK: case LOOM_MSG_PUSH:
        rd_ref(d, &m->ref, "ref");
        rd_u64(d, &m->u0, "offset");
        rd_u64(d, &m->u1, "total");
        rd_bin(d, &m->data, "data");
        if (!d->rc && (m->u0 > m->u1 || m->data.n > m->u1 - m->u0))
            fail(d, "chunk: %zu bytes at %llu overrun a total of %llu", m->data.n,
                 (unsigned long long)m->u0, (unsigned long long)m->u1);
        break;
    default:
        break;
    }
}

int loom_wire_decode(const void *buf, size_t len, loom_msg *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    dec d = {.arena = &m->arena, .err = err, .errlen = errlen};
    if (err && errlen) err[0] = 0;
    if (!buf && len) return fail(&d, "no data");
    loom_unpack_init(&d.u, buf, len);
    uint32_t n;
    uint64_t version = 0, type = 0;
    if (loom_unpack_array(&d.u, &n) || n < 3) return fail(&d, "not a loom message (want an array)");
    if (loom_unpack_u64(&d.u, &version) || version != LOOM_PROTO_VERSION)
        return fail(&d, "protocol version %llu is not %d", (unsigned long long)version,
                    LOOM_PROTO_VERSION);
    if (loom_unpack_u64(&d.u, &type) || type == 0 || type >= LOOM_MSG_TYPE_MAX)
        return fail(&d, "unknown message type %llu", (unsigned long long)type);
    m->type = (int)type;
    if (loom_unpack_u64(&d.u, &m->req)) return fail(&d, "req: want an unsigned integer");
    if ((int)n - 3 != field_count(m->type))
        return fail(&d, "%s: want %d fields, got %u", loom_msg_type_name(m->type),
                    field_count(m->type), n - 3);
    decode_fields(&d, m);
    if (!d.rc && !loom_unpack_done(&d.u)) fail(&d, "trailing bytes after the message");
    if (d.rc) {
        loom_arena_free(&m->arena);
        return d.rc;
    }
    return 0;
}

void loom_msg_free(loom_msg *m)
{
    if (m) loom_arena_free(&m->arena);
}

void loom_msg_init(loom_msg *m, int type, uint64_t req)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->req = req;
}

int loom_wire_unpack_task(loom_unpack *u, loom_arena *arena, loom_wire_task *t, char *err, size_t errlen)
{
    dec d = {.u = *u, .arena = arena, .err = err, .errlen = errlen};
    memset(t, 0, sizeof(*t));
    rd_task(&d, t);
    if (!d.rc) *u = d.u;
    return d.rc;
}

/* ---- encoding ----------------------------------------------------------- */

static int pk_str(loom_pack *p, const char *s)
{
    return loom_pack_cstr(p, s ? s : "");
}

static int pk_ref(loom_pack *p, const loom_ref *r)
{
    return loom_pack_bin(p, r->id, LOOM_ID_LEN);
}

static int pk_strlist(loom_pack *p, char *const *v, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = pk_str(p, v[i]);
    return rc;
}

static int pk_locs(loom_pack *p, const loom_wire_loc *l, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 2);
        if (!rc) rc = loom_pack_u64(p, l[i].node);
        if (!rc) rc = pk_str(p, l[i].addr);
    }
    return rc;
}

static int pk_arg(loom_pack *p, const loom_wire_arg *a)
{
    int rc = loom_pack_array(p, 5);
    if (!rc) rc = loom_pack_u64(p, a->kind);
    if (!rc) rc = loom_pack_bin(p, a->value.p, a->value.n);
    if (!rc) rc = a->kind == LOOM_WARG_REF ? pk_ref(p, &a->ref) : loom_pack_bin(p, NULL, 0);
    if (!rc) rc = loom_pack_u64(p, a->size);
    if (!rc) rc = pk_locs(p, a->locs, a->nlocs);
    return rc;
}

static int pk_reslist(loom_pack *p, const loom_wire_res *r, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 2);
        if (!rc) rc = pk_str(p, r[i].name);
        if (!rc) rc = loom_pack_f64(p, r[i].amount);
    }
    return rc;
}

static int pk_labels(loom_pack *p, const loom_wire_label *l, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 2);
        if (!rc) rc = pk_str(p, l[i].key);
        if (!rc) rc = pk_str(p, l[i].value);
    }
    return rc;
}

static int pk_id16(loom_pack *p, const uint8_t *id, int present)
{
    return loom_pack_bin(p, present ? id : NULL, present ? 16 : 0);
}

static int pk_sched(loom_pack *p, const loom_wire_task *t)
{
    int rc = loom_pack_array(p, 12);
    if (!rc) rc = loom_pack_f64(p, t->num_gpus);
    if (!rc) rc = loom_pack_u64(p, t->gpu_memory);
    if (!rc) rc = pk_reslist(p, t->res, t->nres);
    if (!rc) rc = pk_labels(p, t->labels, t->nlabels);
    if (!rc) rc = loom_pack_u64(p, t->strategy);
    if (!rc) rc = loom_pack_u64(p, t->affinity_node);
    if (!rc) rc = loom_pack_bool(p, t->soft);
    if (!rc) rc = pk_id16(p, t->pg, t->has_pg);
    if (!rc) rc = loom_pack_i64(p, t->bundle);
    if (!rc) rc = pk_str(p, t->gpu_ids);
    if (!rc) rc = loom_pack_u64(p, t->max_retries);
    if (!rc) rc = loom_pack_bool(p, t->retry_on_error);
    return rc;
}

static int pk_actor(loom_pack *p, const loom_wire_task *t)
{
    int rc = loom_pack_array(p, 7);
    if (!rc) rc = loom_pack_u64(p, t->actor_op);
    if (!rc) rc = pk_id16(p, t->actor, t->actor_op != LOOM_ACTOR_NONE);
    if (!rc) rc = loom_pack_u64(p, t->max_concurrency);
    if (!rc) rc = loom_pack_bool(p, t->detached);
    if (!rc) rc = pk_str(p, t->actor_name);
    if (!rc) rc = loom_pack_i64(p, t->max_restarts);
    if (!rc) rc = loom_pack_u64(p, t->max_task_retries);
    return rc;
}

int loom_wire_pack_task(loom_pack *p, const loom_wire_task *t)
{
    int rc = loom_pack_array(p, 16);
    if (!rc) rc = loom_pack_bin(p, t->task_id, 16);
    if (!rc) rc = loom_pack_u64(p, t->kind);
    if (!rc) rc = pk_str(p, t->name);
    if (!rc) rc = pk_arg(p, &t->lib);
    if (!rc) rc = pk_str(p, t->function);
    if (!rc) rc = pk_strlist(p, t->argv, t->argc);
    if (!rc) rc = pk_strlist(p, t->env, t->nenv);
    if (!rc) rc = pk_str(p, t->cwd);
    if (!rc) rc = pk_strlist(p, t->outputs, t->noutputs);
    if (!rc) rc = loom_pack_bool(p, t->nocheck);
    if (!rc) rc = loom_pack_f64(p, t->num_cpus);
    if (!rc) rc = loom_pack_u64(p, t->memory);
    if (!rc) rc = loom_pack_array(p, t->nargs);
    for (uint32_t i = 0; i < t->nargs && !rc; i++) rc = pk_arg(p, &t->args[i]);
    if (!rc) rc = pk_sched(p, t);
    if (!rc) rc = pk_actor(p, t);
    return rc;
}

static int pk_node(loom_pack *p, const loom_wire_node *nd)
{
    int rc = loom_pack_array(p, 12);
    if (!rc) rc = loom_pack_u64(p, nd->id);
    if (!rc) rc = pk_str(p, nd->hostname);
    if (!rc) rc = pk_str(p, nd->data_addr);
    if (!rc) rc = pk_str(p, nd->store_dir);
    if (!rc) rc = pk_str(p, nd->spill_dir);
    if (!rc) rc = loom_pack_f64(p, nd->num_cpus);
    if (!rc) rc = loom_pack_u64(p, nd->memory);
    if (!rc) rc = loom_pack_u64(p, nd->capacity);
    if (!rc) rc = loom_pack_u64(p, nd->num_gpus);
    if (!rc) rc = loom_pack_u64(p, nd->gpu_memory);
    if (!rc) rc = pk_reslist(p, nd->res, nd->nres);
    if (!rc) rc = pk_labels(p, nd->labels, nd->nlabels);
    return rc;
}

static int pk_bundles(loom_pack *p, const loom_wire_bundle *b, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 5);
        if (!rc) rc = loom_pack_f64(p, b[i].num_cpus);
        if (!rc) rc = loom_pack_u64(p, b[i].memory);
        if (!rc) rc = loom_pack_f64(p, b[i].num_gpus);
        if (!rc) rc = loom_pack_u64(p, b[i].gpu_memory);
        if (!rc) rc = pk_reslist(p, b[i].res, b[i].nres);
    }
    return rc;
}

static int pk_nodes(loom_pack *p, const loom_wire_node *nd, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = pk_node(p, &nd[i]);
    return rc;
}

static int pk_tasks(loom_pack *p, const loom_wire_task *t, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = loom_wire_pack_task(p, &t[i]);
    return rc;
}

static int pk_refs(loom_pack *p, const loom_ref *r, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) rc = pk_ref(p, &r[i]);
    return rc;
}

static int pk_outputs(loom_pack *p, const loom_wire_output *o, uint32_t n)
{
    int rc = loom_pack_array(p, n);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = loom_pack_array(p, 3);
        if (!rc) rc = loom_pack_u64(p, o[i].index);
        if (!rc) rc = loom_pack_u64(p, o[i].size);
        if (!rc) rc = loom_pack_bin(p, o[i].value.p, o[i].value.n);
    }
    return rc;
}

static int encode_fields(const loom_msg *m, loom_pack *p)
{
    int rc = 0;
    switch (m->type) {
    case LOOM_MSG_ERROR:
        rc = loom_pack_i64(p, m->code);
        if (!rc) rc = pk_str(p, m->text);
        return rc;
    case LOOM_MSG_HELLO:
        rc = loom_pack_u64(p, m->role);
        if (!rc) rc = pk_str(p, m->secret);
        if (!rc) rc = pk_str(p, m->hostname);
        if (!rc) rc = loom_pack_u64(p, m->id);
        if (!rc) rc = pk_nodes(p, m->nodes, m->nnodes);
        return rc;
    case LOOM_MSG_WELCOME:
        rc = loom_pack_u64(p, m->id);
        if (!rc) rc = pk_nodes(p, m->nodes, m->nnodes);
        return rc;
    case LOOM_MSG_HEARTBEAT:
        rc = loom_pack_u64(p, m->u0);
        if (!rc) rc = loom_pack_u64(p, m->u1);
        return rc;
    case LOOM_MSG_SUBMIT:
        rc = pk_str(p, m->name);
        if (!rc) rc = loom_pack_u64(p, m->flag);
        if (!rc) rc = pk_tasks(p, m->tasks, m->ntasks);
        if (!rc) rc = pk_str(p, m->text);
        return rc;
    case LOOM_MSG_JOBS:
        rc = pk_str(p, m->text);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        if (!rc) rc = loom_pack_u64(p, m->u1);
        return rc;
    case LOOM_MSG_SUBMITTED: case LOOM_MSG_JOB_INFO: case LOOM_MSG_JOB_DELETE:
        return pk_str(p, m->name);
    case LOOM_MSG_PUT_DONE:
        rc = pk_ref(p, &m->ref);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        if (!rc) rc = loom_pack_u64(p, m->id);
        if (!rc) rc = loom_pack_bin(p, m->data.p, m->data.n);
        if (!rc) rc = loom_pack_u64(p, m->flag);
        return rc;
    case LOOM_MSG_SUBSCRIBE: case LOOM_MSG_RELEASE: case LOOM_MSG_DELETE_OBJS: case LOOM_MSG_RUNNING:
        return pk_refs(p, m->refs, m->nrefs);
    case LOOM_MSG_OBJ_READY:
        rc = pk_ref(p, &m->ref);
        if (!rc) rc = loom_pack_i64(p, m->code);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        if (!rc) rc = loom_pack_bin(p, m->data.p, m->data.n);
        if (!rc) rc = pk_locs(p, m->locs, m->nlocs);
        if (!rc) rc = pk_str(p, m->text);
        return rc;
    case LOOM_MSG_CANCEL: case LOOM_MSG_REF: case LOOM_MSG_CANCEL_TASK:
        return pk_ref(p, &m->ref);
    case LOOM_MSG_INFO:
        return loom_pack_bin(p, m->data.p, m->data.n);
    case LOOM_MSG_JOB_REF:
        rc = pk_str(p, m->name);
        if (!rc) rc = pk_str(p, m->text);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        return rc;
    case LOOM_MSG_ASSIGN: case LOOM_MSG_RUN:
        return pk_tasks(p, m->tasks, m->ntasks);
    case LOOM_MSG_TASK_DONE:
        rc = pk_ref(p, &m->ref);
        if (!rc) rc = loom_pack_i64(p, m->code);
        if (!rc) rc = pk_str(p, m->text);
        if (!rc) rc = pk_outputs(p, m->outputs, m->noutputs);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        return rc;
    case LOOM_MSG_OBJ_ADDED:
        rc = pk_ref(p, &m->ref);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        return rc;
    case LOOM_MSG_FETCH: case LOOM_MSG_CHUNK: case LOOM_MSG_PUSH:
        rc = pk_ref(p, &m->ref);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        if (!rc) rc = loom_pack_u64(p, m->u1);
        if (!rc && m->type != LOOM_MSG_FETCH) rc = loom_pack_bin(p, m->data.p, m->data.n);
        return rc;
    case LOOM_MSG_KV_PUT:
        rc = pk_str(p, m->name);
        if (!rc) rc = loom_pack_bin(p, m->data.p, m->data.n);
        return rc;
    case LOOM_MSG_KV_GET:
        rc = pk_str(p, m->name);
        if (!rc) rc = loom_pack_u64(p, m->u0);
        return rc;
    case LOOM_MSG_KV_DEL: case LOOM_MSG_ACTOR_LOOKUP:
        return pk_str(p, m->name);
    case LOOM_MSG_ACTOR_KILL: case LOOM_MSG_PG_REMOVE: case LOOM_MSG_PG_INFO:
        return pk_ref(p, &m->ref);
    case LOOM_MSG_DRAIN:
        return loom_pack_u64(p, m->id);
    case LOOM_MSG_ACTOR_DIED:
        rc = pk_ref(p, &m->ref);
        if (!rc) rc = loom_pack_i64(p, m->code);
        if (!rc) rc = pk_str(p, m->text);
        return rc;
    case LOOM_MSG_PG_CREATE:
        rc = pk_str(p, m->name);
        if (!rc) rc = loom_pack_u64(p, m->flag);
        if (!rc) rc = pk_bundles(p, m->bundles, m->nbundles);
        return rc;
    default:
        return 0;
    }
}

int loom_wire_encode(const loom_msg *m, loom_pack *p)
{
    int nf = field_count(m->type);
    if (nf < 0) return LOOM_EINVAL;
    loom_pack_reset(p);
    int rc = loom_pack_array(p, (uint32_t)(3 + nf));
    if (!rc) rc = loom_pack_u64(p, LOOM_PROTO_VERSION);
    if (!rc) rc = loom_pack_u64(p, (uint64_t)m->type);
    if (!rc) rc = loom_pack_u64(p, m->req);
    if (!rc) rc = encode_fields(m, p);
    return rc;
}

const char *loom_msg_type_name(int type)
{
    static const char *names[] = {
        "?", "ERROR", "OK", "HELLO", "WELCOME", "HEARTBEAT", "SUBMIT", "SUBMITTED",
        "PUT_DONE", "SUBSCRIBE", "OBJ_READY", "RELEASE", "CANCEL", "STATUS", "INFO",
        "JOB_INFO", "JOB_REF", "REF", "JOB_DELETE", "BYE", "ASSIGN", "CANCEL_TASK",
        "DELETE_OBJS", "TASK_DONE", "OBJ_ADDED", "FETCH", "CHUNK", "PUSH", "RUN", "KV_PUT",
        "KV_GET", "KV_DEL", "ACTOR_LOOKUP", "ACTOR_KILL", "ACTOR_DIED", "ACTORS", "PG_CREATE",
        "PG_REMOVE", "PG_INFO", "DRAIN", "RUNNING", "JOBS"};
    if (type <= 0 || type >= LOOM_MSG_TYPE_MAX) return "?";
    return names[type];
}

/* ---- deep copy ---------------------------------------------------------- */

static char *cp_str(loom_arena *a, const char *s)
{
    return loom_arena_strndup(a, s ? s : "", s ? strlen(s) : 0);
}

static char **cp_strlist(loom_arena *a, char *const *v, uint32_t n)
{
    if (!n) return NULL;
    char **out = loom_arena_alloc(a, n * sizeof(char *));
    if (!out) return NULL;
    for (uint32_t i = 0; i < n; i++)
        if (!(out[i] = cp_str(a, v[i]))) return NULL;
    return out;
}

static int cp_arg(loom_arena *a, loom_wire_arg *dst, const loom_wire_arg *src)
{
    *dst = *src;
    dst->locs = NULL;
    dst->nlocs = 0;
    if (src->value.n) {
        uint8_t *p = loom_arena_alloc(a, src->value.n);
        if (!p) return LOOM_ENOMEM;
        memcpy(p, src->value.p, src->value.n);
        dst->value.p = p;
    }
    return LOOM_OK;
}

int loom_wire_task_copy(loom_arena *a, loom_wire_task *dst, const loom_wire_task *src)
{
    *dst = *src;
    dst->name = cp_str(a, src->name);
    dst->function = cp_str(a, src->function);
    dst->cwd = cp_str(a, src->cwd);
    dst->argv = cp_strlist(a, src->argv, src->argc);
    dst->env = cp_strlist(a, src->env, src->nenv);
    dst->outputs = cp_strlist(a, src->outputs, src->noutputs);
    if (!dst->name || !dst->function || !dst->cwd || (src->argc && !dst->argv) ||
        (src->nenv && !dst->env) || (src->noutputs && !dst->outputs))
        return LOOM_ENOMEM;
    if (cp_arg(a, &dst->lib, &src->lib)) return LOOM_ENOMEM;
    dst->gpu_ids = cp_str(a, src->gpu_ids);
    dst->actor_name = cp_str(a, src->actor_name);
    if (!dst->gpu_ids || !dst->actor_name) return LOOM_ENOMEM;
    dst->res = NULL;
    if (src->nres) {
        dst->res = loom_arena_alloc(a, src->nres * sizeof(loom_wire_res));
        if (!dst->res) return LOOM_ENOMEM;
        for (uint32_t i = 0; i < src->nres; i++) {
            dst->res[i].amount = src->res[i].amount;
            if (!(dst->res[i].name = cp_str(a, src->res[i].name))) return LOOM_ENOMEM;
        }
    }
    dst->labels = NULL;
    if (src->nlabels) {
        dst->labels = loom_arena_alloc(a, src->nlabels * sizeof(loom_wire_label));
        if (!dst->labels) return LOOM_ENOMEM;
        for (uint32_t i = 0; i < src->nlabels; i++) {
            dst->labels[i].key = cp_str(a, src->labels[i].key);
            dst->labels[i].value = cp_str(a, src->labels[i].value);
            if (!dst->labels[i].key || !dst->labels[i].value) return LOOM_ENOMEM;
        }
    }
    dst->args = NULL;
    if (src->nargs) {
        dst->args = loom_arena_alloc(a, src->nargs * sizeof(loom_wire_arg));
        if (!dst->args) return LOOM_ENOMEM;
        for (uint32_t i = 0; i < src->nargs; i++)
            if (cp_arg(a, &dst->args[i], &src->args[i])) return LOOM_ENOMEM;
    }
    return LOOM_OK;
}
